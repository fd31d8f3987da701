#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vbak-cvd against real images, driven by `vbak cvd` and a small python3
# client of the protocol: ping; a wrong token (18); paths outside the image
# folders, directly and through a symlink (19); an export read with nbdinfo
# while the session holds it, and gone once the session ends (normally, by
# a kill, by the idle timeout, by SIGTERM of vbak-cvd); bitmaps added,
# listed, removed; the changes since a checkpoint as a dirty-bitmap context;
# read-write refused while the disk is open; the 65th client refused (19)
# while 64 are held, and served once they leave.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd qemu-img qemu-io qemu-nbd nbdinfo python3 timeout
CVD=$(dirname "$VBAK")/vbak-cvd
[[ -x $CVD ]] || die "$CVD is not built"

pids=()
cleanup() {
        local p
        for p in "${pids[@]}"; do
                kill -KILL "$p" 2>/dev/null || true
        done
        wait 2>/dev/null || true
}
trap cleanup EXIT

# A python3 client of the protocol, for what `vbak cvd` does not do on
# purpose: many sessions at once, and a session that goes silent.
cat >cvdpy.py <<'EOF'
import hashlib, hmac, json, socket, struct, sys, time

def send(s, o):
    b = json.dumps(o).encode()
    s.sendall(struct.pack(">I", len(b)) + b)

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed by vbak-cvd")
        b += c
    return b

def recv(s):
    n = struct.unpack(">I", recv_exact(s, 4))[0]
    return json.loads(recv_exact(s, n))

def session(port, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    w = recv(s)
    assert w.get("op") == "welcome", w
    proof = hmac.new(token, w["nonce"].encode(), hashlib.sha256).hexdigest()
    send(s, {"id": 1, "op": "hello", "version": 1, "client": "test",
             "auth": {"method": "token", "proof": proof}})
    r = recv(s)
    assert r.get("ok"), r
    return s

mode, port, token_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = open(token_file, "rb").read().split(b"\n")[0].strip()
if mode == "hold":          # hold N authenticated sessions
    socks = [session(port, token) for _ in range(int(sys.argv[4]))]
    print("ready", flush=True)
    time.sleep(120)
elif mode == "silent-open":  # open a disk, then never speak again
    s = session(port, token)
    send(s, {"id": 2, "op": "disk.open", "vm": sys.argv[4], "path": sys.argv[5], "mode": "read"})
    print(json.dumps(recv(s)), flush=True)
    time.sleep(120)
EOF

# start_cvd LOG ARGS...: starts vbak-cvd on a free port; sets cvd_pid, port
start_cvd() {
        local log=$1 i
        shift
        "$CVD" --listen 127.0.0.1:0 --images img --token-file token "$@" 2>"$log" &
        cvd_pid=$!
        pids+=("$cvd_pid")
        for ((i = 0; i < 100; i++)); do
                port=$(sed -n 's/^vbak-cvd: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
                [[ -n $port ]] && return 0
                running "$cvd_pid" || die "vbak-cvd did not start: $(cat "$log")"
                sleep 0.1
        done
        die "vbak-cvd did not say it listens: $(cat "$log")"
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT
port_open() {
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_port_closed PORT WHAT: within 10 s
wait_port_closed() {
        local i
        for ((i = 0; i < 100; i++)); do
                port_open "$1" || return 0
                sleep 0.1
        done
        die "$2: data port $1 still open"
}

# wait_file_has FILE TEXT WHAT: within 20 s
wait_file_has() {
        local i
        for ((i = 0; i < 200; i++)); do
                grep -qF -- "$2" "$1" 2>/dev/null && return 0
                sleep 0.1
        done
        die "$3: '$2' did not appear in $1: $(cat "$1")"
}

# The images: a qcow2 with data at 1 MiB (64 KiB) and 10 MiB (192 KiB).
mkdir img
qemu-img create -q -f qcow2 img/disk.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x5a 1M 64k" -c "write -P 0xa5 10M 192k" img/disk.qcow2 >/dev/null
ln -s /etc/passwd img/escape.qcow2
disk=$(realpath img/disk.qcow2)
head -c 24 /dev/urandom | base64 >token
chmod 600 token
echo "not-the-right-token-at-all" >badtoken

start_cvd cvd.log --port-range 31000-31099
base=cvd://127.0.0.1:$port
url=$base/vm1$disk
T=(--token-file token)

info "ping"
expect_exit 0 "$VBAK" cvd ping "$base" "${T[@]}"
assert_contains "$LAST_OUT" "vbak-cvd/"
expect_exit 0 "$VBAK" cvd ping "$base" "${T[@]}" --json
assert_eq 1 "$(json_get version <"$LAST_OUT")" "protocol version"
assert_eq 600 "$(json_get timeout <"$LAST_OUT")" "idle timeout"
expect_exit 0 "$VBAK" cvd --help
expect_exit 0 "$VBAK" cvd open --help
expect_exit 2 "$VBAK" cvd ping "$base"
assert_contains "$LAST_ERR" "give --token-file"

info "a wrong token: 18"
expect_exit 18 "$VBAK" cvd ping "$base" --token-file badtoken
assert_contains "$LAST_ERR" "vbak-cvd at 127.0.0.1:$port refused the token: wrong token"
expect_exit 18 "$VBAK" cvd ping "$base" --token-file badtoken --json
assert_contains "$LAST_OUT" '"name":"auth"'

info "paths outside the image folders: 19"
expect_exit 19 "$VBAK" cvd open "$base/vm1/etc/passwd" "${T[@]}"
assert_contains "$LAST_ERR" "vbak-cvd at 127.0.0.1:$port refused disk.open of /etc/passwd (vm vm1): /etc/passwd is outside the served image folders"
expect_exit 19 "$VBAK" cvd open "$base/vm1$(realpath -s img)/escape.qcow2" "${T[@]}"
assert_contains "$LAST_ERR" "escape.qcow2 is outside the served image folders"
expect_exit 19 "$VBAK" cvd open "$base/vm1$(realpath img)/../../../etc/passwd" "${T[@]}"
expect_exit 19 "$VBAK" cvd bitmap add "$base/vm1/etc/passwd" cp0 "${T[@]}"
expect_exit 3 "$VBAK" cvd open "$base/vm1$(realpath img)/missing.qcow2" "${T[@]}"
assert_not_contains cvd.log "opened /etc/passwd"

info "an export while the session holds it"
"$VBAK" cvd open "$url" "${T[@]}" --json --hold 30 >open.json 2>open.err &
holder=$!
pids+=("$holder")
wait_file_has open.json '"running"' "disk.open"
assert_eq $((64 * MiB)) "$(json_get size <open.json)" "size"
assert_eq qcow2 "$(json_get format <open.json)" "format"
assert_eq 65536 "$(json_get cluster_size <open.json)" "cluster size"
uri=$(json_get uri <open.json)
dport=$(json_get port <open.json)
assert_cmp -ge "$dport" 31000 "data port within the range"
assert_cmp -le "$dport" 31099 "data port within the range"
nbdinfo --map "$uri" >map.txt
grep -qE '^ +1048576 +65536 +0 +data$' map.txt || die "nbdinfo --map: no 64 KiB of data at 1 MiB: $(cat map.txt)"
grep -qE '^ +10485760 +196608 +0 +data$' map.txt || die "nbdinfo --map: no 192 KiB of data at 10 MiB: $(cat map.txt)"
nbdinfo "$uri" >nbdinfo.txt
assert_contains nbdinfo.txt "is_read_only: true"

info "read-write while the disk is open: 19"
expect_exit 19 "$VBAK" cvd open "$url" "${T[@]}" --mode read-write
assert_contains "$LAST_ERR" "is open for reading in another session"

info "the session ends: the export is torn down"
kill -KILL "$holder"
wait "$holder" 2>/dev/null || true
wait_port_closed "$dport" "after the client was killed"
assert_contains cvd.log "ended: closing handle"

# A normal end: --hold runs out, disk.close.
expect_exit 0 "$VBAK" cvd open "$url" "${T[@]}" --json --hold 1
dport=$(json_get port <"$LAST_OUT")
wait_port_closed "$dport" "after disk.close"

info "bitmaps"
expect_exit 0 "$VBAK" cvd bitmap list "$url" "${T[@]}" --json
assert_not_contains "$LAST_OUT" '"cp1"'
expect_exit 0 "$VBAK" cvd bitmap add "$url" cp1 "${T[@]}"
assert_contains "$LAST_OUT" "Created bitmap cp1"
expect_exit 14 "$VBAK" cvd bitmap add "$url" cp1 "${T[@]}"
expect_exit 0 "$VBAK" cvd bitmap add "$url" old "${T[@]}"
expect_exit 0 "$VBAK" cvd bitmap list "$url" "${T[@]}" --json
assert_contains "$LAST_OUT" '"name": "cp1"'
assert_contains "$LAST_OUT" '"name": "old"'
expect_exit 0 "$VBAK" cvd bitmap remove "$url" old "${T[@]}"
expect_exit 3 "$VBAK" cvd bitmap remove "$url" old "${T[@]}"
expect_exit 0 "$VBAK" cvd bitmap list "$url" "${T[@]}"
assert_contains "$LAST_OUT" "cp1"
assert_not_contains "$LAST_OUT" "old"
expect_exit 2 "$VBAK" cvd bitmap add "$url" "-bad" "${T[@]}"

info "changes since a checkpoint"
qemu-io -f qcow2 -c "write -P 0x77 32M 4k" img/disk.qcow2 >/dev/null
"$VBAK" cvd open "$url" "${T[@]}" --since cp1 --checkpoint cp2 --json --hold 30 >since.json 2>since.err &
holder=$!
pids+=("$holder")
wait_file_has since.json '"running"' "disk.open --since"
assert_contains since.json '"qemu:dirty-bitmap:cp1"'
assert_eq 65536 "$(json_get granularity <since.json)" "granularity of cp1"
uri=$(json_get uri <since.json)
dport=$(json_get port <since.json)
nbdinfo --list "$uri" >list.txt
assert_contains list.txt "qemu:dirty-bitmap:cp1"
nbdinfo --map=qemu:dirty-bitmap:cp1 "$uri" >dirty.txt
grep -qE '^ +33554432 +65536 +1 +dirty$' dirty.txt || die "dirty-bitmap map: no dirty 64 KiB at 32 MiB: $(cat dirty.txt)"
assert_eq 1 "$(grep -cE ' 1 +dirty$' dirty.txt)" "dirty extents since cp1"
kill -TERM "$holder"
wait "$holder" 2>/dev/null || true
wait_port_closed "$dport" "after the --since session ended"
expect_exit 0 "$VBAK" cvd bitmap list "$url" "${T[@]}" --json
assert_contains "$LAST_OUT" '"name": "cp2"'
# Idempotent: the same checkpoint again is fine.
expect_exit 0 "$VBAK" cvd open "$url" "${T[@]}" --checkpoint cp2

info "the 65th client: 19, while 64 are held"
python3 cvdpy.py hold "$port" token 64 >hold.out 2>hold.err &
holder=$!
pids+=("$holder")
wait_file_has hold.out ready "64 sessions"
expect_exit 19 "$VBAK" cvd ping "$base" "${T[@]}"
assert_contains "$LAST_ERR" "vbak-cvd at 127.0.0.1:$port refused the connection: vbak-cvd serves at most 64 clients"
kill -KILL "$holder"
wait "$holder" 2>/dev/null || true
for ((i = 0; i < 50; i++)); do
        "$VBAK" cvd ping "$base" "${T[@]}" >/dev/null 2>&1 && break
        sleep 0.1
done
expect_exit 0 "$VBAK" cvd ping "$base" "${T[@]}"

info "SIGTERM closes every export"
"$VBAK" cvd open "$url" "${T[@]}" --json --hold 60 >term.json 2>term.err &
holder=$!
pids+=("$holder")
wait_file_has term.json '"running"' "disk.open before SIGTERM"
dport=$(json_get port <term.json)
port_open "$dport" || die "data port $dport is not open"
kill -TERM "$cvd_pid"
rc=0
wait "$cvd_pid" || rc=$?
assert_eq 0 "$rc" "exit code of vbak-cvd after SIGTERM"
wait_port_closed "$dport" "after SIGTERM"
rc=0
wait "$holder" || rc=$?
assert_eq 17 "$rc" "exit code of the session holder when vbak-cvd went away"
assert_contains term.err "connection lost"

info "the idle timeout tears a silent session's exports down"
start_cvd cvd2.log --port-range 31100-31199 --timeout 2
python3 cvdpy.py silent-open "$port" token vm1 "$disk" >silent.out 2>silent.err &
holder=$!
pids+=("$holder")
wait_file_has silent.out '"ok": true' "disk.open of the silent session"
dport=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["port"])' <silent.out)
port_open "$dport" || die "data port $dport is not open"
sleep 1.5
wait_port_closed "$dport" "after the idle timeout"
assert_contains cvd2.log "nothing heard for 2 s"

info "refuses to start without authentication or folders"
expect_exit 2 "$CVD" --listen 127.0.0.1:0 --images img
assert_contains "$LAST_ERR" "never serves without authentication"
expect_exit 2 "$CVD" --listen 127.0.0.1:0 --token-file token
expect_exit 2 "$CVD" --listen 127.0.0.1:0 --images img --token-file badtoken --timeout 0
echo short >shorttoken
expect_exit 2 "$CVD" --listen 127.0.0.1:0 --images img --token-file shorttoken
assert_contains "$LAST_ERR" "at least 16 bytes"
