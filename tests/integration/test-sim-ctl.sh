#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-sim-ctl.sh -- vbak-cvm-sim's per-host disk service and control
# channel: every host's vbak-cvd answers a ping on its backup address, a
# running VM's disk is exported through its host's service, `ctl write`
# changes the data the export shows, `ctl power-cycle` makes checkCbtBackup
# false, every fault knob shows its effect through the REST API, `ctl
# migrate` and `ctl hostid` change the inventory, and the simulator leaves
# no QEMU and no vbak-cvd behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
need_qemu
need_cmd curl
need_cmd nbdcopy

trap stop_all EXIT
trap 'exit 143' TERM INT

STATE=$WORK/state
POOL1=$STATE/pools/h1
mkdir -p "$STATE"
echo 's3cret-pw' >password
# Addresses of their own, so a simulator of another test does not collide.
cat >topology.json <<'EOF'
{ "hostPools": [ { "id": 1, "name": "hp", "hosts": [
  { "id": 1, "name": "cvk01", "ip": "127.0.41.1",
    "networks": [ { "role": "management", "vsName": "vswitch0", "ip": "127.0.41.1" },
                  { "role": "backup", "vsName": "vswitch-bak", "ip": "127.0.43.1" } ],
    "storagePools": [ { "name": "defaultpool", "type": "dir", "path": "pools/h1" } ],
    "vms": [ { "id": 11, "name": "run01", "status": "running",
               "disks": [ { "file": "run01-vda.qcow2", "format": "qcow2", "size": 16 } ] } ] },
  { "id": 2, "name": "cvk02", "ip": "127.0.41.2",
    "storagePools": [ { "name": "defaultpool", "type": "dir", "path": "pools/h2" } ],
    "vms": [ { "id": 12, "name": "off01", "status": "shutOff",
               "disks": [ { "file": "off01-vda.qcow2", "format": "qcow2", "size": 16 } ] } ] } ] } ] }
EOF

port=$(free_port)
cvd_port=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
        --state-dir "$STATE" --cvd-port "$cvd_port" >sim.out 2>sim.err &
SIM_PID=$!
track "$SIM_PID" vbak-cvm-sim
for _ in $(seq 200); do
        grep -q "listening on" sim.out 2>/dev/null && break
        running "$SIM_PID" || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
URL=http://127.0.0.1:$port/cas/casrs
TOKEN=$STATE/cvd.token
CVD1=cvd://127.0.43.1:$cvd_port # cvk01: its backup network
CVD2=cvd://127.0.41.2:$cvd_port # cvk02: no backup network, the host's ip

cas() {
        local method=$1 path=$2
        shift 2
        curl -s --digest -u admin:s3cret-pw -X "$method" -o body.out -w '%{http_code}' "$@" "$URL/$path"
}

xml_get() {
        grep -o "<$1>[^<]*</$1>" body.out | head -1 | sed -E "s|</?$1>||g"
}

ctl() {
        "$SIM" ctl --state-dir "$STATE" "$@"
}

# task_msg METHOD PATH: starts an asynchronous call, prints its msgId
task_msg() {
        assert_eq 200 "$(cas "$@")" "$1 $2"
        xml_get msgId
}

# task_wait MSGID: polls until completed, prints the result; failMsg in failmsg.out
task_wait() {
        for _ in $(seq 150); do
                assert_eq 200 "$(cas GET "message/$1")" "message/$1"
                if [[ $(xml_get completed) == true ]]; then
                        xml_get failMsg >failmsg.out
                        xml_get result
                        return 0
                fi
                sleep 0.1
        done
        die "task $1 did not complete"
}

cvd_pids() {
        pgrep -P "$SIM_PID" -x vbak-cvd || true
}

info "a vbak-cvd per host, on its backup (else management) address"
[[ $(cvd_pids | wc -l) -eq 2 ]] || die "expected 2 vbak-cvd children, got: $(cvd_pids)"
for p in $(cvd_pids); do track "$p" vbak-cvd; done
[[ -s $TOKEN ]] || die "no token file $TOKEN"
"$VBAK" cvd ping "$CVD1" --token-file "$TOKEN" >ping1.out || die "ping cvk01: $(cat ping1.out)"
"$VBAK" cvd ping "$CVD2" --token-file "$TOKEN" >ping2.out || die "ping cvk02: $(cat ping2.out)"
assert_eq 200 "$(cas GET host/id/1)" "host detail"
assert_contains body.out "<ipAddr>127.0.43.1</ipAddr>"
assert_contains body.out "<usage>backup</usage>"
assert_contains body.out "<enableBackupNetwork>true</enableBackupNetwork>"

info "ctl write, read back through the host's export"
assert_eq ok "$(ctl write run01 vda 1M 64k 0xa7)" "ctl write"
assert_eq ok "$(ctl write run01 vda 0 4k)" "ctl write (default byte)"
expect_exit 1 ctl write run01 vdz 0 4k
expect_exit 1 ctl write off01 vda 0 4k
"$VBAK" cvd open "$CVD1/run01$POOL1/run01-vda.qcow2" --token-file "$TOKEN" --json --hold 3 >open.out 2>open.err &
open_pid=$!
for _ in $(seq 60); do
        [[ -s open.out ]] && break
        sleep 0.05
done
nbd_uri=$(grep -o 'nbd://[^"]*' open.out | head -1)
[[ -n $nbd_uri ]] || die "no export: $(cat open.out open.err)"
nbdcopy "$nbd_uri" disk.raw
wait "$open_pid" || die "cvd open: $(cat open.err)"
cmp -n 4096 disk.raw <(head -c 4096 /dev/zero | tr '\0' '\132') || die "0x5a not at offset 0"
cmp -i 1048576:0 -n 65536 disk.raw <(head -c 65536 /dev/zero | tr '\0' '\247') || die "0xa7 not at 1M"

info "power-cycle invalidates CBT"
assert_eq 200 "$(cas PUT vm/checkCbtBackup/11)" "checkCbtBackup"
assert_eq true "$(cat body.out)" "CBT valid at start"
old_qemu=$(cat "$STATE/run/run01.pid")
assert_eq ok "$(ctl power-cycle run01)" "power-cycle"
new_qemu=$(cat "$STATE/run/run01.pid")
[[ $old_qemu != "$new_qemu" ]] || die "power-cycle kept QEMU $old_qemu"
running "$old_qemu" && die "the old QEMU $old_qemu still runs"
track "$new_qemu" "qemu run01"
assert_eq 200 "$(cas PUT vm/checkCbtBackup/11)" "checkCbtBackup"
assert_eq false "$(cat body.out)" "CBT invalid after a power cycle"
assert_eq 200 "$(cas GET vm/11/capabilities)" "capabilities"
assert_contains body.out "<cbtValid>false</cbtValid>"

info "fault snapshot-fail (on one VM)"
assert_eq ok "$(ctl fault snapshot-fail run01 on)" "knob"
body='<snapshot><vmId>11</vmId><name>s1</name></snapshot>'
assert_eq 1 "$(task_wait "$(task_msg POST vm/snapshot -H 'Content-Type: application/xml' --data "$body")")" "snapshot fails"
[[ -s failmsg.out ]] || die "no failMsg"
assert_eq ok "$(ctl fault snapshot-fail run01 off)" "knob off"

info "fault task-slow"
assert_eq ok "$(ctl fault task-slow on)" "knob"
msg=$(task_msg PUT vm/start/12)
sleep 1.2
assert_eq 200 "$(cas GET "message/$msg")" "message"
assert_eq false "$(xml_get completed)" "a slow task is not done after 1.2 s"
assert_eq ok "$(ctl fault task-slow off)" "knob off"
assert_eq 0 "$(task_wait "$msg")" "the slow start completes"
track "$(cat "$STATE/run/off01.pid")" "qemu off01"

info "fault shutdown-hang"
assert_eq ok "$(ctl fault shutdown-hang off01 on)" "knob"
msg=$(task_msg PUT vm/stop/12)
sleep 1.5
assert_eq 200 "$(cas GET "message/$msg")" "message"
assert_eq false "$(xml_get completed)" "the stop hangs"
assert_eq 50 "$(xml_get progress)" "at progress 50"
assert_eq 1 "$(task_wait "$msg")" "the hung stop fails at the timeout"
assert_eq 200 "$(cas GET vm/12)" "vm/12"
assert_eq 2 "$(xml_get status)" "off01 still runs"
assert_eq ok "$(ctl fault shutdown-hang off01 off)" "knob off"
assert_eq 0 "$(task_wait "$(task_msg PUT vm/powerOff/12)")" "powerOff"

info "fault session-expiry: one 401 with good credentials"
assert_eq ok "$(ctl fault session-expiry on)" "knob"
assert_eq 401 "$(cas GET vm/vmList)" "expired session"
assert_eq 200 "$(cas GET vm/vmList)" "the next request passes"

info "fault conn-reset: one connection closed without an answer"
assert_eq ok "$(ctl fault conn-reset on)" "knob"
expect_exit 52 curl -s --digest -u admin:s3cret-pw -o /dev/null "$URL/vm/vmList"
assert_eq 200 "$(cas GET vm/vmList)" "the next request passes"

info "fault pool-full"
assert_eq ok "$(ctl fault pool-full cvk01 on)" "knob"
assert_eq 200 "$(cas GET 'storage/info?hostId=1&poolName=defaultpool')" "storage/info"
assert_eq 1 "$(xml_get freeSize)" "1 MB free"
assert_eq 200 "$(cas GET 'storage/pool?hostId=2')" "storage/pool of cvk02"
[[ $(xml_get freeSize) -gt 1 ]] || die "cvk02's pool is not full"
assert_eq ok "$(ctl fault pool-full cvk01 off)" "knob off"
assert_eq 200 "$(cas GET 'storage/pool?hostId=1')" "storage/pool"
[[ $(xml_get freeSize) -gt 1 ]] || die "the pool stays full"

info "fault host-down"
assert_eq ok "$(ctl fault host-down cvk01 on)" "knob"
assert_eq 200 "$(cas GET host/id/1)" "host detail"
assert_eq 0 "$(xml_get status)" "host status 0"
assert_eq 409 "$(cas GET vm/11)" "VM on a down host"
assert_eq 402 "$(curl -s --digest -u admin:s3cret-pw -D - -o /dev/null "$URL/vm/11" | tr -d '\r' |
        sed -n 's/^Error-Code: //Ip')" "Error-Code"
expect_exit 17 "$VBAK" cvd ping "$CVD1" --token-file "$TOKEN" --timeout 2
assert_eq ok "$(ctl fault host-down cvk01 off)" "knob off"
assert_eq 200 "$(cas GET vm/11)" "the host is back"
"$VBAK" cvd ping "$CVD1" --token-file "$TOKEN" >/dev/null || die "cvk01's vbak-cvd did not come back"
for p in $(cvd_pids); do track "$p" vbak-cvd; done

info "migrate and hostid"
assert_eq ok "$(ctl migrate run01 cvk02)" "migrate"
assert_eq 200 "$(cas GET 'vm/vmList?hostId=2')" "vmList"
assert_contains body.out "<name>run01</name>"
# The disk stays in cvk01's pool; cvk02's service serves it now too.
"$VBAK" cvd open "$CVD2/run01$POOL1/run01-vda.qcow2" --token-file "$TOKEN" --json >open2.out 2>&1 ||
        die "cvk02 does not export run01's disk: $(cat open2.out)"
for p in $(cvd_pids); do track "$p" vbak-cvd; done
assert_eq ok "$(ctl hostid cvk02 7)" "hostid"
expect_exit 1 ctl hostid cvk01 7
assert_eq 200 "$(cas GET 'vm/vmList?hostId=7')" "vmList by the new id"
assert_contains body.out "<hostId>7</hostId>"
assert_eq 409 "$(cas GET host/id/2)" "the old id is gone"
assert_eq 200 "$(cas GET host/id/7)" "the new id"
expect_exit 1 ctl frobnicate

info "SIGTERM stops every QEMU and vbak-cvd"
cvds=$(cvd_pids)
qemu=$(cat "$STATE/run/run01.pid")
kill -TERM "$SIM_PID"
for _ in $(seq 100); do running "$SIM_PID" || break; sleep 0.1; done
running "$SIM_PID" && die "the simulator did not exit on SIGTERM"
running "$qemu" && die "QEMU $qemu outlived the simulator"
for p in $cvds; do running "$p" && die "vbak-cvd $p outlived the simulator"; done
[[ ! -S $STATE/ctl.sock ]] || die "ctl.sock left behind"
info "ok"
