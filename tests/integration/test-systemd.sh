#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-systemd.sh -- vbakd and vbak-cvd as Type=notify services, under a
# stand-in for systemd's notify socket (notify-socket.py): each sends
# READY=1 from its own pid only once it serves (vbak status answers at
# once), then STOPPING=1 on SIGTERM and exits 0; with a path socket and an
# abstract one ('@name'); a notify socket nobody listens on changes nothing.
# The unit files pass `systemd-analyze verify` without a single warning
# (their ExecStart pointed at the built binaries), agree with vbakd's
# defaults, and verify does catch a broken unit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "$(dirname "$VBAK")" && pwd)
VBAKD=$BUILD/vbakd
CVD=$BUILD/vbak-cvd
[[ -x $VBAKD && -x $CVD ]] || die "vbakd and vbak-cvd are not built (make all builds them)"
need_cmd python3

PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${PIDS[@]}"; do
                wait "$p" 2>/dev/null || true
        done
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# start_listener ADDRESS LOG: notify-socket.py on ADDRESS; sets LPID
start_listener() {
        : >"$2"
        python3 "$HERE/notify-socket.py" "$1" "$2" --timeout 120 >"$2.out" 2>"$2.err" &
        LPID=$!
        PIDS+=("$LPID")
        for _ in $(seq 200); do
                grep -q '^notify-socket: ready$' "$2.out" && return 0
                running "$LPID" || die "notify-socket.py $1 exited: $(cat "$2.err")"
                sleep 0.05
        done
        die "notify-socket.py $1 did not start"
}

stop_listener() {
        kill "$LPID"
        wait "$LPID" || true
}

# wait_notify LOG LINE PID: waits (10 s) for LINE ("PID VAR=VALUE") while PID runs
wait_notify() {
        for _ in $(seq 200); do
                grep -qxF -- "$2" "$1" && return 0
                running "$3" || die "pid $3 exited before sending '$2'; notifications: $(cat "$1")"
                sleep 0.05
        done
        die "no '$2' within 10 s; notifications: $(cat "$1")"
}

# line_of LOG TEXT: the number of the first line holding TEXT
line_of() {
        grep -n -m1 -F -- "$2" "$1" | cut -d: -f1
}

# stop_expect_zero PID WHAT: SIGTERM, and the exit code must be 0
stop_expect_zero() {
        local rc=0
        kill -TERM "$1"
        wait "$1" || rc=$?
        assert_eq 0 "$rc" "$2 exit code after SIGTERM"
}

# check_vbakd ADDRESS NAME: vbakd's notifications through ADDRESS
check_vbakd() {
        local addr=$1 log=$WORK/notify.$2.log state=$WORK/state.$2 dpid
        start_listener "$addr" "$log"
        NOTIFY_SOCKET=$addr "$VBAKD" --state-dir "$state" >"vbakd.$2.out" 2>"vbakd.$2.err" &
        dpid=$!
        PIDS+=("$dpid")
        wait_notify "$log" "$dpid READY=1" "$dpid"
        # Ready means serving: the API answers now, without a retry.
        expect_exit 0 "$VBAK" status --socket "$state/vbakd.sock" --json
        assert_eq "$dpid" "$(json_get pid <"$LAST_OUT")" "pid of the daemon that said READY"
        assert_contains "$log" "$dpid STATUS=serving the API on $state/vbakd.sock"
        assert_cmp -lt "$(line_of "$log" "STATUS=cleaning up")" "$(line_of "$log" "READY=1")" \
                "the clean-up status comes before READY"
        assert_not_contains "$log" "STOPPING=1"
        assert_eq 1 "$(grep -c "READY=1" "$log")" "READY=1 messages"
        stop_expect_zero "$dpid" vbakd
        assert_contains "$log" "$dpid STOPPING=1"
        assert_cmp -gt "$(line_of "$log" "STOPPING=1")" "$(line_of "$log" "READY=1")" "STOPPING after READY"
        ! grep -qv "^$dpid " "$log" || die "a notification not from vbakd's pid $dpid: $(cat "$log")"
        [[ ! -e $state/vbakd.sock ]] || die "vbakd left its socket behind"
        stop_listener
}

info "vbakd, path notify socket"
check_vbakd "$WORK/notify.sock" path

info "vbakd, abstract notify socket"
check_vbakd "@vbak-test-notify-$$-$RANDOM" abstract

info "vbakd, a notify socket nobody listens on"
NOTIFY_SOCKET=$WORK/nobody.sock "$VBAKD" --state-dir "$WORK/state.nobody" >vbakd.nobody.out 2>vbakd.nobody.err &
DPID=$!
PIDS+=("$DPID")
for _ in $(seq 200); do
        "$VBAK" status --socket "$WORK/state.nobody/vbakd.sock" >/dev/null 2>&1 && break
        running "$DPID" || die "vbakd exited: $(cat vbakd.nobody.err)"
        sleep 0.05
done
expect_exit 0 "$VBAK" status --socket "$WORK/state.nobody/vbakd.sock"
stop_expect_zero "$DPID" vbakd

info "vbak-cvd, path and abstract notify sockets"
mkdir img
head -c 24 /dev/urandom | base64 >token
chmod 600 token
for addr in "$WORK/cvd-notify.sock" "@vbak-test-cvd-$$-$RANDOM"; do
        log=$WORK/cvd-notify.log
        start_listener "$addr" "$log"
        NOTIFY_SOCKET=$addr "$CVD" --listen 127.0.0.1:0 --images img --token-file token >cvd.out 2>cvd.err &
        CPID=$!
        PIDS+=("$CPID")
        wait_notify "$log" "$CPID READY=1" "$CPID"
        port=$(sed -n "s/^$CPID STATUS=listening on port \([0-9]*\)$/\1/p" "$log")
        [[ -n $port ]] || die "vbak-cvd sent no listening status: $(cat "$log")"
        assert_contains cvd.err "vbak-cvd: listening on 127.0.0.1:$port"
        # Ready means listening: a connection succeeds at once.
        (exec 3<>"/dev/tcp/127.0.0.1/$port") || die "vbak-cvd said READY but port $port refuses"
        assert_not_contains "$log" "STOPPING=1"
        stop_expect_zero "$CPID" vbak-cvd
        assert_contains "$log" "$CPID STOPPING=1"
        stop_listener
done

info "the unit files"
for u in vbakd vbak-cvd; do
        f=$SRC/systemd/$u.service
        [[ -f $f ]] || die "no $f"
        assert_contains "$f" "Type=notify"
        assert_contains "$f" "ExecStart=/usr/sbin/$u "
done
# The unit's paths are vbakd's own defaults.
expect_exit 0 "$VBAKD" --help
assert_contains "$LAST_OUT" "default /etc/vbak/vbakd.conf"
assert_contains "$SRC/systemd/vbakd.service" "ExecStart=/usr/sbin/vbakd --config /etc/vbak/vbakd.conf"
assert_contains "$SRC/etc/vbakd.conf" "# state_dir = /var/lib/vbak"
assert_contains "$SRC/systemd/vbakd.service" "StateDirectory=vbak"
assert_contains "$SRC/etc/vbakd.conf" "# runtime_dir = /run/vbak"
assert_contains "$SRC/systemd/vbakd.service" "RuntimeDirectory=vbak"
assert_contains "$SRC/etc/vbakd.conf" "# cvd_token_file = /etc/vbak/cvd.token"
assert_contains "$SRC/systemd/vbak-cvd.service" "--token-file /etc/vbak/cvd.token"

command -v systemd-analyze >/dev/null || skip "needs systemd-analyze for the unit checks"
# verify wants ExecStart's binary to exist: point it at the built ones. The
# man pages of Documentation= are installed with the package, not here.
mkdir units
for u in vbakd vbak-cvd; do
        sed "s|^ExecStart=/usr/sbin/|ExecStart=$BUILD/|" "$SRC/systemd/$u.service" >"units/$u.service"
        assert_contains "units/$u.service" "ExecStart=$BUILD/$u "
done
(cd units && systemd-analyze verify --man=no vbakd.service vbak-cvd.service) >verify.out 2>&1 ||
        die "systemd-analyze verify failed: $(cat verify.out)"
[[ ! -s verify.out ]] || die "systemd-analyze verify warns: $(cat verify.out)"
# ... and it does catch a broken unit (so silence above means something).
sed 's/^ProtectSystem=strict$/ProtectSystem=strikt/' units/vbakd.service >units/broken.service
(cd units && systemd-analyze verify --man=no broken.service) >verify-broken.out 2>&1 || true
assert_contains verify-broken.out "broken.service:" "verify of a broken unit"
assert_contains verify-broken.out "strikt" "verify of a broken unit"
info "ok"
