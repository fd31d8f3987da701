#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd-platforms.sh -- platforms registered with vbakd against
# vbak-cvm-sim: `vbak platform add` checks the credentials first (a wrong
# password is 18 and nothing is stored), a taken name is 14; list, show
# (never the password), update (rename, backup host), the password kept in
# the daemon's 0600 credential store, `vbak inventory` through the daemon,
# the catalog surviving a restart, remove; the API's 400s name the field
# (unknown field, wrong type, malformed JSON, a missing password).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

VBAKD=$(dirname "$VBAK")/vbakd
SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $VBAKD && -x $SIM ]] || die "vbakd or vbak-cvm-sim is not built (make all builds them)"
need_qemu
need_cmd curl

cp "$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim" && pwd)/topology-default.json" topology.json
echo 's3cret-pw' >password
echo 'wrong' >wrong
mkdir -p sim
STATE=$WORK/state
export VBAK_SOCKET=$STATE/vbakd.sock

SIM_PID= DPID=
stop_all_here() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        return 0
}
trap stop_all_here EXIT
trap 'exit 143' TERM INT

port=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
        --state-dir "$WORK/sim" --cvd-port 0 >sim.out 2>sim.err &
SIM_PID=$!
for _ in $(seq 300); do
        grep -q "listening on" sim.out 2>/dev/null && break
        kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
CVM=http://127.0.0.1:$port

start_daemon() {
        "$VBAKD" --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
        DPID=$!
        for _ in $(seq 100); do
                [[ -S $VBAK_SOCKET ]] && return 0
                sleep 0.05
        done
        die "vbakd did not start: $(cat vbakd.err)"
}
start_daemon

info "add"
expect_exit 0 "$VBAK" platform --help
expect_exit 18 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file wrong
assert_contains "$LAST_ERR" "401 unauthorized"
expect_exit 0 "$VBAK" platform list --json
assert_eq "[]" "$(tr -d ' \n' <"$LAST_OUT")" "nothing stored after a wrong password"
expect_exit 0 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file password --tag prod --json
assert_eq cas1 "$(json_get name <"$LAST_OUT")" "added"
assert_not_contains "$LAST_OUT" "s3cret"
expect_exit 14 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file password
expect_exit 17 "$VBAK" platform add cas9 --type cas --cvm "http://127.0.0.1:$(free_port)" --user admin \
        --password-file password
assert_eq 600 "$(stat -c %a "$STATE/credentials.json")" "credential store mode"
assert_contains "$STATE/credentials.json" "s3cret-pw"

info "the API names the field"
api() { curl -s -o body.json -w '%{http_code}' --unix-socket "$VBAK_SOCKET" -H 'Content-Type: application/json' "$@"; }
assert_eq 400 "$(api -X POST --data '{"name":"x","type":"cas","address":"http://h","user":"u","password":"p","color":"red"}' http://vbakd/v1/platforms)" "unknown field"
assert_contains body.json '"field": "color"'
assert_eq 400 "$(api -X POST --data '{"name":"x","type":"cas","address":"http://h","user":"u","password":"p","insecure":"yes"}' http://vbakd/v1/platforms)" "wrong type"
assert_contains body.json '"field": "insecure"'
assert_eq 400 "$(api -X POST --data '{"name":"x","type":"cas","address":"http://h","user":"u"}' http://vbakd/v1/platforms)" "no password"
assert_contains body.json '"field": "password"'
assert_eq 400 "$(api -X POST --data '{"name": ' http://vbakd/v1/platforms)" "malformed JSON"
assert_contains body.json '"name": "usage"'
assert_eq 404 "$(api http://vbakd/v1/platforms/nothing)" "unknown platform"

info "show, update, inventory"
expect_exit 0 "$VBAK" platform show cas1
assert_contains "$LAST_OUT" "cas1: cas $CVM, user admin, tags prod"
expect_exit 0 "$VBAK" inventory cas1
assert_contains "$LAST_OUT" "vm 数据库服务器 (db01), id 102, shut off"
assert_contains "$LAST_OUT" "2 host pools, 1 clusters, 3 hosts, 6 VMs"
expect_exit 0 "$VBAK" platform update cas1 --rename cas-prod --backup-host bk1 --json
assert_eq cas-prod "$(json_get name <"$LAST_OUT")" "renamed"
assert_eq bk1 "$(json_get backup_host <"$LAST_OUT")" "backup host"
expect_exit 0 "$VBAK" inventory cas-prod --json
assert_contains "$LAST_OUT" '"title": "数据库服务器"'
expect_exit 0 "$VBAK" platform update cas-prod --password-file wrong
expect_exit 18 "$VBAK" inventory cas-prod
expect_exit 0 "$VBAK" platform update cas-prod --password-file password

info "the catalog survives a restart"
kill "$DPID"
wait "$DPID" || true
DPID=
start_daemon
expect_exit 0 "$VBAK" platform list
assert_contains "$LAST_OUT" "cas-prod: cas $CVM, user admin, backup host bk1, tags prod"
expect_exit 0 "$VBAK" inventory cas-prod --json

info "remove"
expect_exit 0 "$VBAK" platform remove cas-prod
expect_exit 3 "$VBAK" platform show cas-prod
assert_not_contains "$STATE/credentials.json" "s3cret-pw"
stop_all_here
info "ok"
