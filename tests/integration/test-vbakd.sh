#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd.sh -- vbakd's life and its control API: a private daemon with
# --state-dir answers `vbak status` on DIR/vbakd.sock (found via
# --socket or $VBAK_SOCKET), the owner only; a second daemon on the same state dir is
# refused; unknown resources and methods get JSON errors; the TCP listener
# needs TLS and the bearer token (401 without it or with a wrong one);
# SIGTERM stops it cleanly and removes the socket; no daemon gives exit 17.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

VBAKD=$(dirname "$VBAK")/vbakd
[[ -x $VBAKD ]] || die "vbakd is not built (make all builds it)"
need_cmd curl
need_cmd openssl

STATE=$WORK/state
SOCK=$STATE/vbakd.sock
DPID=
stop_daemon() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        DPID=
        return 0
}
trap stop_daemon EXIT
trap 'exit 143' TERM INT

# start_daemon ARGS...: vbakd on $STATE, waiting for its socket
start_daemon() {
        "$VBAKD" --state-dir "$STATE" "$@" >vbakd.out 2>vbakd.err &
        DPID=$!
        for _ in $(seq 100); do
                [[ -S $SOCK ]] && return 0
                kill -0 "$DPID" 2>/dev/null || die "vbakd exited: $(cat vbakd.err)"
                sleep 0.05
        done
        die "vbakd did not create its socket: $(cat vbakd.err)"
}

expect_exit 0 "$VBAKD" --help
assert_contains "$LAST_OUT" "--state-dir"
expect_exit 0 "$VBAK" status --help
expect_exit 17 "$VBAK" status --socket "$WORK/nothing.sock"
assert_contains "$LAST_ERR" "cannot reach vbakd at $WORK/nothing.sock"

info "a private daemon"
start_daemon
mode=$(stat -c %a "$SOCK")
[[ $mode == ?00 ]] || die "the socket is open to others (mode $mode)"
expect_exit 0 "$VBAK" status --socket "$SOCK" --json
assert_eq "$DPID" "$(json_get pid <"$LAST_OUT")" "pid"
assert_eq "$STATE" "$(json_get state_dir <"$LAST_OUT")" "state dir"
VBAK_SOCKET=$SOCK expect_exit 0 "$VBAK" status
assert_contains "$LAST_OUT" "vbakd 0.1.0, pid $DPID"

info "one daemon per state dir"
expect_exit 10 "$VBAKD" --state-dir "$STATE"
assert_contains "$LAST_ERR" "another vbakd uses state dir $STATE"
expect_exit 0 "$VBAK" status --socket "$SOCK"

info "errors are JSON documents"
code=$(curl -s -o body.json -w '%{http_code}' --unix-socket "$SOCK" http://vbakd/v1/nothing)
assert_eq 404 "$code" "unknown resource"
assert_contains body.json '"name": "not-found"'
code=$(curl -s -o body.json -w '%{http_code}' -X DELETE --unix-socket "$SOCK" http://vbakd/v1/version)
assert_eq 405 "$code" "wrong method"

info "SIGTERM"
kill -TERM "$DPID"
wait "$DPID" || die "vbakd exited with $? on SIGTERM"
DPID=
[[ ! -e $SOCK ]] || die "the socket is left behind"

info "TCP with TLS and a bearer token"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost \
        >/dev/null 2>&1 || die "openssl could not make a certificate"
echo 'a-console-token-0123456789' >token
chmod 600 token
port=$(free_port)
start_daemon --listen "127.0.0.1:$port" --tls-cert cert.pem --tls-key key.pem --token-file token
for _ in $(seq 100); do port_open 127.0.0.1 "$port" && break; sleep 0.05; done
code=$(curl -sk -o body.json -w '%{http_code}' "https://127.0.0.1:$port/v1/version")
assert_eq 401 "$code" "no token"
assert_contains body.json '"name": "auth"'
code=$(curl -sk -o body.json -w '%{http_code}' -H 'Authorization: Bearer a-console-token-012345678X' \
        "https://127.0.0.1:$port/v1/version")
assert_eq 401 "$code" "wrong token"
code=$(curl -sk -o body.json -w '%{http_code}' -H 'Authorization: Bearer a-console-token-0123456789' \
        "https://127.0.0.1:$port/v1/version")
assert_eq 200 "$code" "right token"
assert_contains body.json '"version"'
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/version" || true)
assert_eq 000 "$code" "plain HTTP on the TLS port"
# The local socket needs no token.
expect_exit 0 "$VBAK" status --socket "$SOCK"
stop_daemon
info "ok"
