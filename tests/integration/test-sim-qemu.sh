#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-sim-qemu.sh -- vbak-cvm-sim's real side: disk images created at
# start, running VMs as QEMU processes with QMP under <state>/qmp/, power
# tasks that stop and start QEMU, external snapshots (overlays, backfilepath,
# commit back on delete, with the data written in between landing in the
# base), internal snapshots of a shut-off VM (qemu-img snapshot -l), 409 on
# a duplicate name, and no QEMU left after SIGTERM.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
need_qemu
need_cmd curl

trap stop_all EXIT
trap 'exit 143' TERM INT

STATE=$WORK/state
POOL=$STATE/pools/h1
mkdir -p "$STATE"
echo 's3cret-pw' >password
cat >topology.json <<'EOF'
{ "hostPools": [ { "id": 1, "name": "hp", "hosts": [ {
  "id": 1, "name": "cvk01", "ip": "127.0.0.1",
  "storagePools": [ { "name": "defaultpool", "type": "dir", "path": "pools/h1" } ],
  "vms": [
    { "id": 11, "name": "run01", "status": "running",
      "disks": [ { "file": "run01-vda.qcow2", "format": "qcow2", "size": 64 },
                 { "file": "run01-vdb.qcow2", "format": "qcow2", "size": 64 } ] },
    { "id": 12, "name": "off01", "status": "shutOff",
      "disks": [ { "file": "off01-vda.qcow2", "format": "qcow2", "size": 64 } ] } ] } ] } ] }
EOF

port=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
        --state-dir "$STATE" --cvd-port 0 >sim.out 2>sim.err &
SIM_PID=$!
track "$SIM_PID" vbak-cvm-sim
for _ in $(seq 200); do
        grep -q "listening on" sim.out 2>/dev/null && break
        running "$SIM_PID" || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
URL=http://127.0.0.1:$port/cas/casrs

# cas METHOD PATH [curl args...]: body to body.out, prints the status
cas() {
        local method=$1 path=$2
        shift 2
        curl -s --digest -u admin:s3cret-pw -X "$method" -o body.out -w '%{http_code}' "$@" "$URL/$path"
}

# xml_get TAG: the first <TAG> value of body.out
xml_get() {
        grep -o "<$1>[^<]*</$1>" body.out | head -1 | sed -E "s|</?$1>||g"
}

# task METHOD PATH [curl args...]: runs an asynchronous call, polls
# message/{msgId} until completed, prints the result (0 ok); the failMsg in failmsg.out
task() {
        local msg
        assert_eq 200 "$(cas "$@")" "$1 $2"
        msg=$(xml_get msgId)
        [[ -n $msg ]] || die "$1 $2: no msgId in $(cat body.out)"
        for _ in $(seq 100); do
                assert_eq 200 "$(cas GET "message/$msg")" "message/$msg"
                if [[ $(xml_get completed) == true ]]; then
                        xml_get failMsg >failmsg.out
                        xml_get result
                        return 0
                fi
                sleep 0.2
        done
        die "task $msg ($1 $2) did not complete"
}

qemu_pid() {
        cat "$STATE/run/$1.pid" 2>/dev/null || true
}

info "images and QEMU at start"
for f in run01-vda.qcow2 run01-vdb.qcow2 off01-vda.qcow2; do
        [[ -f $POOL/$f ]] || die "no image $POOL/$f"
        assert_eq qcow2 "$(qemu-img info -U --output=json "$POOL/$f" | sed -n 's/.*"format": "\(.*\)".*/\1/p' | head -1)" "$f format"
done
assert_eq 67108864 "$(qemu-img info -U --output=json "$POOL/off01-vda.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" "size 64 MB"
pid=$(qemu_pid run01)
[[ -n $pid ]] && running "$pid" || die "run01's QEMU does not run"
track "$pid" "qemu run01"
[[ -S $STATE/qmp/run01.qmp ]] || die "no QMP socket $STATE/qmp/run01.qmp"
[[ ! -e $STATE/qmp/off01.qmp ]] || die "off01 is shut off but has a QMP socket"
assert_contains <(qmp "$STATE/qmp/run01.qmp" '{"execute":"query-status"}') '"running"'
nodes=$(qmp "$STATE/qmp/run01.qmp" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}')
for n in file0 fmt0 file1 fmt1; do
        assert_contains <(echo "$nodes") "\"node-name\": \"$n\""
done
assert_eq 200 "$(cas GET vm/11)" "vm/11"
assert_eq 2 "$(xml_get status)" "run01 running"

info "stop and start through tasks"
assert_eq 0 "$(task PUT vm/stop/11)" "stop task"
for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
running "$pid" && die "QEMU $pid still runs after stop"
assert_eq 200 "$(cas GET vm/11)" "vm/11"
assert_eq 3 "$(xml_get status)" "run01 shut off"
assert_eq 1 "$(task PUT vm/stop/11)" "stopping a stopped VM fails"
assert_eq 0 "$(task PUT vm/start/11)" "start task"
pid=$(qemu_pid run01)
[[ -n $pid ]] && running "$pid" || die "run01's QEMU did not come back"
track "$pid" "qemu run01"
assert_eq 200 "$(cas GET vm/11)" "vm/11"
assert_eq 2 "$(xml_get status)" "run01 running again"
assert_eq 0 "$(task PUT vm/powerOff/11)" "powerOff task"
running "$pid" && die "QEMU $pid still runs after powerOff"
assert_eq 0 "$(task PUT vm/start/11)" "start task"
pid=$(qemu_pid run01)
track "$pid" "qemu run01"

info "external snapshot of the running VM"
body='<snapshot><vmId>11</vmId><name>ext1</name><snapshotMode>2</snapshotMode></snapshot>'
assert_eq 0 "$(task POST vm/snapshot -H 'Content-Type: application/xml' --data "$body")" "external snapshot"
for d in vda vdb; do
        [[ -f $POOL/run01-$d.qcow2.ext1 ]] || die "no overlay for $d"
done
assert_eq 200 "$(cas GET vm/11/backfilepath)" "backfilepath"
assert_contains body.out "<incfilepath>$POOL/run01-vda.qcow2.ext1</incfilepath><backfilepath>$POOL/run01-vda.qcow2</backfilepath>"
assert_contains body.out "<incfilepath>$POOL/run01-vdb.qcow2.ext1</incfilepath><backfilepath>$POOL/run01-vdb.qcow2</backfilepath>"
assert_eq 200 "$(cas GET vm/detail/11)" "vm/detail"
assert_contains body.out "<path>$POOL/run01-vda.qcow2.ext1</path>"
assert_eq 409 "$(cas POST vm/snapshot -H 'Content-Type: application/xml' --data "$body")" "duplicate snapshot name"
assert_eq 200 "$(cas GET vm/snapshot/11)" "snapshot list"
assert_contains body.out '<name>ext1</name>'
assert_contains body.out '<snapshotMode>2</snapshotMode>'

# Written into the overlay now; the commit must carry it into the bases.
qmp "$STATE/qmp/run01.qmp" --hmp 'qemu-io -d /machine/peripheral/vd0/virtio-backend "write -P 0x5a 1M 64k"' >w0.out
qmp "$STATE/qmp/run01.qmp" --hmp 'qemu-io -d /machine/peripheral/vd1/virtio-backend "write -P 0xa5 2M 128k"' >w1.out
[[ ! -s w0.out && ! -s w1.out ]] || die "qemu-io write: $(cat w0.out w1.out)"
assert_eq 0 "$(task DELETE vm/snapshot/11/ext1)" "delete the external snapshot (commit)"
[[ ! -e $POOL/run01-vda.qcow2.ext1 && ! -e $POOL/run01-vdb.qcow2.ext1 ]] || die "overlays left after the commit"
assert_eq 200 "$(cas GET vm/11/backfilepath)" "backfilepath after delete"
assert_contains body.out "<incfilepath>$POOL/run01-vda.qcow2</incfilepath>"
assert_not_contains body.out ".ext1"
assert_contains <(qmp "$STATE/qmp/run01.qmp" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}') \
        '"node-name": "fmt0"'

info "extenalSnap and simplifyImageChain"
assert_eq 0 "$(task PUT vm/extenalSnap -H 'Content-Type: application/xml' --data '<snapshot><vmId>11</vmId></snapshot>')" \
        "extenalSnap"
assert_eq 200 "$(cas GET vm/snapshot/11)" "snapshot list"
gen=$(xml_get name)
[[ -n $gen && -f $POOL/run01-vda.qcow2.$gen ]] || die "extenalSnap made no overlay ($gen)"
assert_eq 0 "$(task PUT vm/snapshot/simplifyImageChain/11)" "simplifyImageChain"
[[ ! -e $POOL/run01-vda.qcow2.$gen ]] || die "simplifyImageChain left the overlay"
assert_eq 200 "$(cas GET vm/snapshot/11)" "snapshot list"
assert_not_contains body.out "<name>"

info "internal snapshot of the shut-off VM"
body='{"vmId":12,"name":"int1","snapshotMode":1}'
assert_eq 0 "$(task POST vm/snapshot -H 'Content-Type: application/json' --data "$body")" "internal snapshot"
assert_contains <(qemu-img snapshot -l "$POOL/off01-vda.qcow2") int1
assert_eq 409 "$(cas POST vm/snapshot -H 'Content-Type: application/json' --data "$body")" "duplicate internal name"
assert_eq 409 "$(cas DELETE vm/snapshot/12/nosuch)" "unknown snapshot"
assert_eq 0 "$(task DELETE vm/snapshot/12/int1)" "delete the internal snapshot"
assert_not_contains <(qemu-img snapshot -l "$POOL/off01-vda.qcow2") int1
# A failure is a failed task, not an HTTP error: a name that is already a file.
touch "$POOL/off01-vda.qcow2.busy"
assert_eq 1 "$(task POST vm/snapshot --data '<snapshot><vmId>12</vmId><name>busy</name><snapshotMode>2</snapshotMode></snapshot>')" \
        "external snapshot over an existing file"
[[ -s failmsg.out ]] || die "a failed task without failMsg"

info "SIGTERM stops every QEMU"
kill -TERM "$SIM_PID"
for _ in $(seq 100); do running "$SIM_PID" || break; sleep 0.1; done
running "$SIM_PID" && die "the simulator did not exit on SIGTERM"
running "$pid" && die "QEMU $pid outlived the simulator"
[[ ! -S $STATE/qmp/run01.qmp ]] || die "QMP socket left behind"

info "the data written before the commit is in the bases"
qemu-io -r -f qcow2 -c "read -P 0x5a 1M 64k" -c "read -P 0 0 1M" "$POOL/run01-vda.qcow2" >r0.out ||
        die "base vda: $(cat r0.out)"
qemu-io -r -f qcow2 -c "read -P 0xa5 2M 128k" "$POOL/run01-vdb.qcow2" >r1.out || die "base vdb: $(cat r1.out)"
assert_not_contains r0.out "Pattern verification failed"
assert_not_contains r1.out "Pattern verification failed"
info "ok"
