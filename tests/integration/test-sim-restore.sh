#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-sim-restore.sh -- vbak-cvm-sim's restore side, checked with curl:
# storage volumes (list from the real files, create as a task and the old
# synchronous way, delete), vm/add from an existing image or a new volume
# (XML, typed and legacy JSON; a wrong driveType fails the task), the new VM
# in every view, started as QEMU and served by its host's vbak-cvd,
# addDevice (hot-plugged into a running VM, seen through QMP) and delDevice,
# vm/delete and vm/deleteVm (the files stay or go), executeCmd with and
# without the guest-agent knob and the quiesced flag of snapshots, the
# renderings in typed mode, and scripts/sim-up.sh / sim-down.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

BUILD=$(dirname "$VBAK")
SIM=$BUILD/vbak-cvm-sim
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
need_qemu
need_cmd curl

UP_STATE=$WORK/up-state
cleanup() {
        [[ -f $UP_STATE/sim.pid ]] && SIM_STATE=$UP_STATE "$REPO/scripts/sim-down.sh" "$BUILD" >/dev/null 2>&1
        stop_all
}
trap cleanup EXIT
trap 'exit 143' TERM INT

STATE=$WORK/state
POOL1=$STATE/pools/h1
DATA1=$STATE/pools/h1-data
POOL2=$STATE/pools/h2
mkdir -p "$STATE"
echo 's3cret-pw' >password
# Addresses of their own, so a simulator of another test does not collide.
cat >topology.json <<'EOF'
{ "hostPools": [ { "id": 1, "name": "hp", "clusters": [ { "id": 1, "name": "c1", "hosts": [
  { "id": 1, "name": "cvk01", "ip": "127.0.51.1",
    "networks": [ { "role": "backup", "vsName": "vswitch-bak", "ip": "127.0.53.1" } ],
    "storagePools": [ { "name": "defaultpool", "path": "pools/h1" }, { "name": "data", "path": "pools/h1-data" } ],
    "vms": [ { "id": 11, "name": "run01", "status": "running",
               "disks": [ { "file": "run01-vda.qcow2", "format": "qcow2", "size": 16 } ] },
             { "id": 12, "name": "off01",
               "disks": [ { "file": "off01-vda.qcow2", "format": "qcow2", "size": 16 } ] } ] },
  { "id": 2, "name": "cvk02", "ip": "127.0.51.2",
    "storagePools": [ { "name": "defaultpool", "path": "pools/h2" } ] } ] } ] } ] }
EOF

# start_sim ARGS...: the simulator on a free port; sets URL and SIM_PID
start_sim() {
        local port
        port=$(free_port)
        "$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
                --state-dir "$STATE" "$@" >sim.out 2>>sim.err &
        SIM_PID=$!
        track "$SIM_PID" vbak-cvm-sim
        for _ in $(seq 200); do
                grep -q "listening on" sim.out 2>/dev/null && break
                running "$SIM_PID" || die "the simulator exited: $(cat sim.err)"
                sleep 0.05
        done
        grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
        URL=http://127.0.0.1:$port/cas/casrs
}

# stop_sim: SIGTERM, and wait until it is gone
stop_sim() {
        kill -TERM "$SIM_PID"
        for _ in $(seq 100); do running "$SIM_PID" || break; sleep 0.1; done
        running "$SIM_PID" && die "the simulator did not exit on SIGTERM"
        return 0
}

# cas METHOD PATH [curl args...]: body to body.out, headers to headers.out, prints the status
cas() {
        local method=$1 path=$2
        shift 2
        curl -s --digest -u admin:s3cret-pw -X "$method" -D headers.out -o body.out -w '%{http_code}' "$@" \
                "$URL/$path"
}

xml_post() {
        cas "$1" "$2" -H 'Content-Type: application/xml' --data "$3"
}

json_post() {
        cas "$1" "$2" -H 'Content-Type: application/json' -H 'Accept: application/json' --data "$3"
}

header() {
        tr -d '\r' <headers.out | awk -v h="$(echo "$1" | tr '[:upper:]' '[:lower:]')" -F': ' \
                'tolower($1) == h { v = substr($0, length($1) + 3) } END { print v }'
}

# expect_409 CODE STATUS WHAT: STATUS is 409 with Error-Code CODE
expect_409() {
        assert_eq 409 "$2" "$3"
        assert_eq "$1" "$(header Error-Code)" "$3: Error-Code"
}

xml_get() {
        grep -o "<$1>[^<]*</$1>" body.out | head -1 | sed -E "s|</?$1>||g"
}

jq_py() {
        python3 -c "import json; j = json.load(open('body.out')); print($1)"
}

# msg_id: the msgId of the taskMsg in body.out (XML or JSON)
msg_id() {
        local id
        id=$(grep -o '"msgId":"[0-9]*"\|"msgId":[0-9]*\|<msgId>[0-9]*</msgId>' body.out | grep -o '[0-9]*' | head -1)
        [[ -n $id ]] || die "no msgId in $(cat body.out)"
        echo "$id"
}

# wait_task MSGID: polls until completed; prints the result; the failMsg in
# failmsg.out, the final taskMsg (XML) in task.out
wait_task() {
        for _ in $(seq 150); do
                assert_eq 200 "$(cas GET "message/$1")" "message/$1"
                if [[ $(xml_get completed) == true ]]; then
                        cp body.out task.out
                        xml_get failMsg >failmsg.out
                        xml_get result
                        return 0
                fi
                sleep 0.1
        done
        die "task $1 did not complete"
}

# task STATUS: STATUS is 200 with a taskMsg; waits for it, prints the result
task() {
        assert_eq 200 "$1" "task request: $(cat body.out)"
        wait_task "$(msg_id)"
}

ctl() {
        "$SIM" ctl --state-dir "$STATE" "$@"
}

img_format() {
        qemu-img info -U --output=json "$1" | sed -n 's/.*"format": "\(.*\)".*/\1/p' | head -1
}

img_size() {
        qemu-img info -U --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -1
}

cvd_port=$(free_port)
start_sim --cvd-port "$cvd_port"
for p in $(pgrep -P "$SIM_PID" -x vbak-cvd); do track "$p" vbak-cvd; done
track "$(cat "$STATE/run/run01.pid")" "qemu run01"
TOKEN=$STATE/cvd.token

info "storage/volume lists the pool's files"
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool')" "volume list"
assert_eq 2 "$(header Total)" "Total"
assert_contains body.out "<storageVolume><name>off01-vda.qcow2</name><path>$POOL1/off01-vda.qcow2</path><size>16.00</size>"
assert_contains body.out '<format>qcow2</format><type>file</type><users>off01</users><backingStore></backingStore><level>0</level><storagePoolName>defaultpool</storagePoolName>'
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool&offset=1&pageSize=1' -H 'Accept: application/json')" \
        "volume page"
assert_eq 2 "$(header Total)" "Total of a page"
assert_eq run01-vda.qcow2 "$(jq_py 'j["storageVolume"]["name"]')" "one volume is an object (legacy)"
assert_eq run01 "$(jq_py 'j["storageVolume"]["users"]')" "users"
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool&volumeName=off01-vda.qcow2')" "by name"
assert_eq 1 "$(header Total)" "one by name"
expect_409 11 "$(cas GET 'storage/volume?hostId=1&poolName=nosuch')" "unknown pool"
expect_409 402 "$(cas GET 'storage/volume?hostId=9&poolName=defaultpool')" "unknown host"

info "POST storage/volume: a task, then the file"
body='<volAddParameter><hostId>1</hostId><spName>defaultpool</spName><volName>rest1.qcow2</volName><capacity>32</capacity><format>qcow2</format></volAddParameter>'
assert_eq 200 "$(xml_post POST storage/volume "$body")" "volume create"
msg=$(msg_id)
[[ ! -e $POOL1/rest1.qcow2 ]] || die "the volume exists before its task completes"
assert_contains body.out '<targetName>rest1.qcow2</targetName>'
expect_409 11 "$(xml_post POST storage/volume "$body")" "a volume being created"
assert_eq 0 "$(wait_task "$msg")" "volume create task"
assert_eq qcow2 "$(img_format "$POOL1/rest1.qcow2")" "format"
assert_eq $((32 * MiB)) "$(img_size "$POOL1/rest1.qcow2")" "capacity in MB"
expect_409 11 "$(xml_post POST storage/volume "$body")" "an existing volume"
body='{"volAddParameter":{"hostId":1,"spName":"data","volName":"rest2.raw","capacity":8,"format":"raw","preallocation":"full","secDir":"sub"}}'
assert_eq 0 "$(task "$(json_post POST storage/volume "$body")")" "JSON volume create"
assert_eq raw "$(img_format "$DATA1/sub/rest2.raw")" "raw volume in secDir"
assert_cmp -ge "$(allocated_bytes "$DATA1/sub/rest2.raw")" $((8 * MiB)) "preallocation full"
for bad in '../x' 'a/b' '.hidden' ''; do
        expect_409 11 "$(xml_post POST storage/volume "<volAddParameter><hostId>1</hostId><spName>defaultpool</spName><volName>$bad</volName><capacity>8</capacity></volAddParameter>")" \
                "volume name '$bad'"
done
expect_409 11 "$(xml_post POST storage/volume '<volAddParameter><hostId>1</hostId><spName>nosuch</spName><volName>x</volName><capacity>8</capacity></volAddParameter>')" \
        "unknown pool"
expect_409 11 "$(xml_post POST storage/volume '<volAddParameter><hostId>1</hostId><spName>data</spName><volName>x.raw</volName><capacity>8</capacity><format>raw</format><preallocation>metadata</preallocation></volAddParameter>')" \
        "metadata preallocation of a raw volume"
[[ ! -e $POOL1/x && ! -e $DATA1/x.raw ]] || die "a refused create made a file"

info "POST storage/volume/add: synchronous"
for v in sync1.qcow2 extra.qcow2; do
        assert_eq 200 "$(xml_post POST storage/volume/add "<volAddParameter><hostId>1</hostId><spName>defaultpool</spName><volName>$v</volName><capacity>8</capacity></volAddParameter>")" \
                "volume/add $v"
        [[ ! -s body.out ]] || die "volume/add answered a body: $(cat body.out)"
        [[ -f $POOL1/$v ]] || die "volume/add made no $v"
done
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool')" "volume list"
assert_eq 5 "$(header Total)" "5 volumes"
assert_contains body.out '<name>rest1.qcow2</name>'
assert_eq 200 "$(cas GET 'storage/info?hostId=1&poolName=defaultpool')" "storage/info"
# 2 TiB less the two VM disks (16 MB each) and the three loose volumes (32 + 8 + 8).
assert_eq 2097152 "$(xml_get totalSize)" "totalSize"
assert_eq $((2097152 - 32 - 48)) "$(xml_get freeSize)" "freeSize"

info "DELETE storage/volume/delete"
assert_eq 204 "$(cas DELETE storage/volume/delete/1/defaultpool/sync1.qcow2)" "delete"
[[ ! -e $POOL1/sync1.qcow2 ]] || die "the deleted volume is still there"
expect_409 11 "$(cas DELETE storage/volume/delete/1/defaultpool/sync1.qcow2)" "delete a missing volume"
expect_409 11 "$(cas DELETE storage/volume/delete/1/defaultpool/run01-vda.qcow2)" "delete a volume in use"
[[ -f $POOL1/run01-vda.qcow2 ]] || die "a volume in use was deleted"
expect_409 402 "$(cas DELETE storage/volume/delete/9/defaultpool/x)" "unknown host"

info "vm/add (XML) from an existing image"
body="<domain><name>rest-vm1</name><title>rest-vm1</title><hostId>1</hostId><memory>256</memory><memoryInit>256</memoryInit><memoryUnit>MB</memoryUnit><cpuSockets>1</cpuSockets><cpuCores>2</cpuCores><cpuMode>host-model</cpuMode><system>1</system><osVersion>CentOS 6/7(64-bit)</osVersion><network><vsId>1</vsId><vsName>vswitch0</vsName><profileId>1</profileId><deviceModel>virtio</deviceModel><mac>0c:da:41:1d:aa:01</mac></network><storage><device>disk</device><storeFile>$POOL1/rest1.qcow2</storeFile><capacity>32</capacity><targetBus>virtio</targetBus><type>file</type><driveType>qcow2</driveType><cacheType>directsync</cacheType></storage></domain>"
assert_eq 200 "$(xml_post POST vm/add "$body")" "vm/add"
msg=$(msg_id)
assert_eq 0 "$(xml_get targetId)" "targetId while the VM does not exist"
expect_409 1002 "$(xml_post POST vm/add "$body")" "the same name while the add runs"
assert_eq 0 "$(wait_task "$msg")" "vm/add task"
assert_eq 13 "$(grep -o '<targetId>[0-9]*' task.out | grep -o '[0-9]*$')" "the final task's targetId is the new VM"
assert_contains task.out '<eventType>20</eventType>'
expect_409 1002 "$(xml_post POST vm/add "$body")" "a VM of that name exists"
assert_eq 200 "$(cas GET vm/vmList)" "vmList"
assert_contains body.out '<id>13</id><hostId>1</hostId><clusterId>1</clusterId><hostPoolId>1</hostPoolId><name>rest-vm1</name>'
assert_eq 200 "$(cas GET vm/13)" "vm/13"
assert_eq 3 "$(xml_get status)" "a new VM is shut off"
assert_contains body.out "<storeFile>$POOL1/rest1.qcow2</storeFile>"
assert_eq 200 "$(cas GET vm/detail/13)" "vm/detail/13"
assert_contains body.out '<cpuMode>host-model</cpuMode>'
assert_contains body.out '<mac>0c:da:41:1d:aa:01</mac>'
assert_contains body.out '<deviceName>vda</deviceName><fileType>file</fileType>'
assert_eq 200 "$(cas GET 'cluster/hosts?clusterId=1')" "cluster/hosts"
assert_contains body.out '<name>cvk01</name><vmNum>3</vmNum><vmRunCount>1</vmRunCount><vmShutoff>2</vmShutoff>'
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool&volumeName=rest1.qcow2')" "volume"
assert_contains body.out '<users>rest-vm1</users>'

info "vm/add (typed JSON, cluster only) with a new volume and a raw image"
body="{\"domain\":{\"name\":\"rest-vm2\",\"title\":\"恢复的虚拟机\",\"clusterId\":1,\"memory\":256,\"cpuSockets\":1,\"cpuCores\":1,\"network\":[{\"vsId\":1,\"vsName\":\"vswitch0\",\"profileId\":1,\"deviceModel\":\"virtio\"}],\"storage\":[{\"device\":\"disk\",\"storeFile\":\"rest-vm2-vda.qcow2\",\"capacity\":24,\"driveType\":\"qcow2\",\"poolName\":\"defaultpool\",\"targetBus\":\"virtio\",\"type\":\"file\"},{\"device\":\"disk\",\"storeFile\":\"$DATA1/sub/rest2.raw\",\"driveType\":\"raw\",\"targetBus\":\"ide\"},{\"device\":\"cdrom\",\"storeFile\":\"/vms/isos/castools.iso\"}]}}"
assert_eq 0 "$(task "$(json_post POST vm/add "$body")")" "typed JSON vm/add"
assert_contains task.out '<targetId>14</targetId>'
assert_eq $((24 * MiB)) "$(img_size "$POOL2/rest-vm2-vda.qcow2")" "a volume made in the least loaded host's pool"
assert_eq 200 "$(cas GET vm/14 -H 'Accept: application/json')" "vm/14"
assert_eq 2 "$(jq_py 'j["hostId"]')" "placed on cvk02 (no VM yet)"
assert_eq 恢复的虚拟机 "$(jq_py 'j["title"]')" "title"
assert_eq 2 "$(jq_py 'len(j["storage"])')" "two disks (the cdrom is not a disk)"
assert_eq "$DATA1/sub/rest2.raw" "$(jq_py 'j["storage"][1]["storeFile"]')" "the raw image"
# cvk02's vbak-cvd now serves cvk01's data folder too (the disk is outside cvk02's pools).
for p in $(pgrep -P "$SIM_PID" -x vbak-cvd); do track "$p" vbak-cvd; done
"$VBAK" cvd open "cvd://127.0.51.2:$cvd_port/rest-vm2$DATA1/sub/rest2.raw" --token-file "$TOKEN" --json >open.out 2>&1 ||
        die "cvk02 does not export rest-vm2's disk: $(cat open.out)"

info "vm/add (legacy JSON: strings, one-item lists as objects); failures"
body='{"name":"rest-vm3","title":"rest-vm3","hostId":"1","memory":"128","cpuSockets":"1","cpuCores":"1","system":"0","network":{"vsId":"1","vsName":"vswitch0","profileId":"1","deviceModel":"e1000"},"storage":{"device":"disk","storeFile":"rest-vm3-vda.raw","capacity":"8","driveType":"raw","poolName":"data"}}'
assert_eq 0 "$(task "$(json_post POST vm/add "$body")")" "legacy JSON vm/add"
assert_eq raw "$(img_format "$DATA1/rest-vm3-vda.raw")" "raw volume"
assert_eq 200 "$(cas GET vm/detail/15 -H 'Accept: application/json')" "vm/detail/15"
assert_eq e1000 "$(jq_py 'j["network"]["deviceModel"]')" "NIC model"
assert_eq raw "$(jq_py 'j["storage"]["format"]')" "disk format"
body="<domain><name>rest-bad</name><hostId>1</hostId><storage><storeFile>$POOL1/extra.qcow2</storeFile><driveType>raw</driveType></storage></domain>"
assert_eq 1 "$(task "$(xml_post POST vm/add "$body")")" "driveType raw for a qcow2 file"
assert_contains failmsg.out qcow2
assert_contains task.out '<targetId>0</targetId>'
body="<domain><name>rest-bad</name><hostId>1</hostId><storage><storeFile>$POOL1/nosuch.qcow2</storeFile><driveType>qcow2</driveType></storage><storage><storeFile>rest-bad-vdb.qcow2</storeFile><capacity>8</capacity></storage></domain>"
assert_eq 1 "$(task "$(xml_post POST vm/add "$body")")" "a missing storeFile"
[[ ! -e $POOL1/rest-bad-vdb.qcow2 ]] || die "a failed vm/add left its volume"
assert_eq 200 "$(cas GET vm/vmList)" "vmList"
assert_not_contains body.out rest-bad
expect_409 11 "$(xml_post POST vm/add '<domain><name>bad/name</name><hostId>1</hostId></domain>')" "bad VM name"
expect_409 402 "$(xml_post POST vm/add '<domain><name>x1</name><hostId>9</hostId></domain>')" "unknown host"
expect_409 11 "$(xml_post POST vm/add '<domain><name>x1</name><clusterId>9</clusterId></domain>')" "unknown cluster"
expect_409 11 "$(xml_post POST vm/add '<domain><name>x1</name><hostId>1</hostId><storage><storeFile>x.qcow2</storeFile><capacity>8</capacity><poolName>nosuch</poolName></storage></domain>')" \
        "unknown pool for a new volume"

info "the new VM starts, and addDevice hot-plugs into it"
assert_eq 0 "$(task "$(cas PUT vm/start/13)")" "start rest-vm1"
qemu=$(cat "$STATE/run/rest-vm1.pid")
running "$qemu" || die "rest-vm1's QEMU does not run"
track "$qemu" "qemu rest-vm1"
assert_eq 200 "$(cas GET 'vm/vmList?hostId=1')" "vmList"
assert_contains body.out '<name>rest-vm1</name><title>rest-vm1</title><hostName>cvk01</hostName><description></description><memory>256</memory><cpu>2</cpu><cpuRate>3.00</cpuRate><memRate>12.00</memRate><vmStatus>running</vmStatus>'
body='<domain><id>13</id><storage><device>disk</device><poolName>defaultpool</poolName><fileName>rest-vm1-vdb.qcow2</fileName><size>16</size><format>qcow2</format><targetBus>virtio</targetBus><pathType>2</pathType></storage></domain>'
assert_eq 0 "$(task "$(xml_post PUT vm/addDevice "$body")")" "addDevice to a running VM"
assert_eq $((16 * MiB)) "$(img_size "$POOL1/rest-vm1-vdb.qcow2")" "the new disk's volume"
nodes=$(qmp "$STATE/qmp/rest-vm1.qmp" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}')
for n in file1 fmt1; do
        assert_contains <(echo "$nodes") "\"node-name\": \"$n\""
done
assert_contains <(qmp "$STATE/qmp/rest-vm1.qmp" '{"execute":"query-block"}') '"qdev": "/machine/peripheral/vd1/virtio-backend"'
assert_eq ok "$(ctl write rest-vm1 vdb 0 4k)" "ctl write into the hot-plugged disk"
assert_eq 200 "$(cas GET vm/detail/13)" "vm/detail"
assert_contains body.out "<deviceName>vdb</deviceName><fileType>file</fileType><path>$POOL1/rest-vm1-vdb.qcow2</path>"
"$VBAK" cvd open "cvd://127.0.53.1:$cvd_port/rest-vm1$POOL1/rest-vm1-vdb.qcow2" --token-file "$TOKEN" --json \
        >open.out 2>&1 || die "cvk01 does not export the hot-plugged disk: $(cat open.out)"
body="{\"domain\":{\"uuid\":\"5a1d0000-0000-4000-8000-000000000012\",\"storage\":{\"device\":\"disk\",\"path\":\"$POOL1/extra.qcow2\",\"format\":\"qcow2\",\"targetBus\":\"virtio\"}}}"
assert_eq 0 "$(task "$(json_post PUT vm/addDevice "$body")")" "addDevice (JSON, by uuid) to a shut-off VM"
assert_eq 200 "$(cas GET vm/12/storage)" "vm/12/storage"
assert_contains body.out "<storeFile>$POOL1/extra.qcow2</storeFile><capacity>8</capacity><device>vdb</device>"
body="<domain><id>12</id><storage><device>disk</device><path>$POOL1/rest1.qcow2</path><format>raw</format></storage></domain>"
assert_eq 1 "$(task "$(xml_post PUT vm/addDevice "$body")")" "addDevice with the wrong format"
expect_409 11 "$(xml_post PUT vm/addDevice '<domain><id>12</id><storage><deviceName>vda</deviceName><path>/x</path></storage></domain>')" \
        "a device name in use"
expect_409 1001 "$(xml_post PUT vm/addDevice '<domain><id>999</id><storage><path>/x</path></storage></domain>')" \
        "addDevice to an unknown VM"

info "delDevice"
assert_eq 1 "$(task "$(xml_post PUT vm/delDevice '<domain><id>13</id><storage><deviceName>vdb</deviceName></storage></domain>')")" \
        "delDevice on a running VM fails"
assert_contains failmsg.out 热拔出
assert_eq 0 "$(task "$(xml_post PUT vm/delDevice '<domain><id>12</id><name>off01</name><storage><deviceName>vdb</deviceName></storage></domain>')")" \
        "delDevice on a shut-off VM"
assert_eq 200 "$(cas GET vm/detail/12)" "vm/detail/12"
assert_not_contains body.out '<deviceName>vdb</deviceName>'
[[ -f $POOL1/extra.qcow2 ]] || die "delDevice removed the file"
expect_409 11 "$(xml_post PUT vm/delDevice '<domain><id>12</id><storage><deviceName>vdq</deviceName></storage></domain>')" \
        "delDevice of a missing disk"

info "executeCmd and the guest-agent knob"
cmd='{"command":"{\"execute\":\"guest-ping\"}"}'
expect_409 11 "$(json_post POST vm/13/executeCmd "$cmd")" "no guest agent"
assert_eq 虚拟机的qemu-guest-agent未运行。 "$(header Error-Message)" "Error-Message"
assert_eq ok "$(ctl fault guest-agent rest-vm1 on)" "knob"
assert_eq 200 "$(json_post POST vm/13/executeCmd "$cmd")" "guest-ping"
assert_eq 0 "$(jq_py 'j["state"]')" "state"
assert_eq '{"return":{}}' "$(jq_py 'j["data"]')" "ping reply"
expect_409 11 "$(json_post POST vm/12/executeCmd "$cmd")" "a shut-off VM"
freeze='<vmCommand><command>{"execute":"guest-fsfreeze-freeze"}</command></vmCommand>'
uuid=$(cas GET vm/13 >/dev/null && xml_get uuid)
assert_eq 200 "$(xml_post POST "vm/$uuid/executeCmd/" "$freeze")" "freeze (XML, by uuid)"
assert_contains body.out '<rsResult><state>0</state><errorCode>0</errorCode><message></message><data>{"return":1}</data></rsResult>'
assert_eq 200 "$(xml_post POST vm/13/executeCmd "$freeze")" "freeze again"
assert_eq 1 "$(xml_get state)" "a second freeze fails"
assert_contains body.out 'frozen state'
status='{"command":"{\"execute\":\"guest-fsfreeze-status\"}"}'
assert_eq 200 "$(json_post POST vm/13/executeCmd "$status")" "status"
assert_eq '{"return":"frozen"}' "$(jq_py 'j["data"]')" "frozen"
assert_eq 0 "$(task "$(xml_post POST vm/snapshot '<snapshot><vmId>13</vmId><name>q1</name><snapshotMode>2</snapshotMode></snapshot>')")" \
        "snapshot while frozen"
assert_eq 200 "$(json_post POST vm/13/executeCmd '{"command":"{\"execute\":\"guest-fsfreeze-thaw\"}"}')" "thaw"
assert_eq '{"return":1}' "$(jq_py 'j["data"]')" "thawed 1"
assert_eq 200 "$(json_post POST vm/13/executeCmd "$status")" "status"
assert_eq '{"return":"thawed"}' "$(jq_py 'j["data"]')" "thawed"
assert_eq 0 "$(task "$(xml_post POST vm/snapshot '<snapshot><vmId>13</vmId><name>q2</name><snapshotMode>2</snapshotMode></snapshot>')")" \
        "snapshot after the thaw"
assert_eq 200 "$(cas GET vm/snapshot/13)" "snapshot list"
assert_contains body.out '<name>q1</name><snapshotTitle>q1</snapshotTitle><desc></desc><isCurr>false</isCurr><snapMem>false</snapMem><snapshotMode>2</snapshotMode><quiesced>true</quiesced>'
assert_contains body.out '<name>q2</name><snapshotTitle>q2</snapshotTitle><desc></desc><isCurr>true</isCurr><snapMem>false</snapMem><snapshotMode>2</snapshotMode><quiesced>false</quiesced>'
assert_eq 200 "$(json_post POST vm/13/executeCmd '{"command":"{\"execute\":\"guest-exec\"}"}')" "unknown command"
assert_eq 1 "$(jq_py 'j["state"]')" "state of an unknown command"
assert_contains body.out CommandNotFound
assert_eq 1 "$(task "$(xml_post PUT vm/addDevice "<domain><id>13</id><storage><path>$POOL1/extra.qcow2</path></storage></domain>")")" \
        "addDevice to a VM with snapshots"

info "vm/delete and vm/deleteVm"
assert_eq 1 "$(task "$(cas DELETE vm/delete/13)")" "deleting a running VM fails"
assert_contains failmsg.out 正在运行
assert_eq 0 "$(task "$(cas PUT vm/powerOff/13)")" "powerOff"
running "$qemu" && die "QEMU $qemu still runs after powerOff"
expect_409 11 "$(cas DELETE 'vm/deleteVm?id=13&type=5')" "a bad type"
expect_409 1001 "$(cas DELETE 'vm/deleteVm?id=999&type=0')" "deleteVm of an unknown VM"
expect_409 1001 "$(cas DELETE vm/delete/999)" "delete of an unknown VM"
assert_eq 0 "$(task "$(cas DELETE 'vm/deleteVm?id=13&type=1')")" "deleteVm type 1"
assert_contains task.out '<eventType>21</eventType>'
for f in rest1.qcow2 rest1.qcow2.q1 rest1.qcow2.q2 rest-vm1-vdb.qcow2 rest-vm1-vdb.qcow2.q1; do
        [[ ! -e $POOL1/$f ]] || die "deleteVm type 1 left $f"
done
assert_eq 0 "$(task "$(cas DELETE vm/delete/14)")" "vm/delete"
[[ -f $POOL2/rest-vm2-vda.qcow2 && -f $DATA1/sub/rest2.raw ]] || die "vm/delete removed the files"
assert_eq 200 "$(cas GET vm/vmList)" "vmList"
assert_not_contains body.out rest-vm1
assert_not_contains body.out rest-vm2
expect_409 1001 "$(cas GET vm/13)" "a deleted VM"
assert_eq 204 "$(cas DELETE storage/volume/delete/2/defaultpool/rest-vm2-vda.qcow2)" "its volume is free now"
assert_eq 204 "$(cas DELETE 'storage/volume/delete/1/data/rest2.raw?secDir=sub')" "a volume in a secDir"
[[ ! -e $DATA1/sub/rest2.raw ]] || die "the secDir volume is still there"

info "typed JSON renderings"
stop_sim
start_sim --cvd-port 0 --json-quirks typed
assert_eq 200 "$(cas GET 'storage/volume?hostId=1&poolName=defaultpool&volumeName=extra.qcow2' -H 'Accept: application/json')" \
        "typed volume list"
assert_eq list "$(jq_py 'type(j["storageVolume"]).__name__')" "a typed list"
assert_eq float "$(jq_py 'type(j["storageVolume"][0]["size"]).__name__')" "size is a real"
assert_eq 8.0 "$(jq_py 'j["storageVolume"][0]["size"]')" "size MB"
assert_eq int "$(jq_py 'type(j["storageVolume"][0]["level"]).__name__')" "level"
assert_eq 200 "$(cas GET 'storage/info?hostId=1&poolName=defaultpool' -H 'Accept: application/json')" "storage/info"
assert_eq 2097152 "$(jq_py 'j["totalSize"]')" "a pool folder of an earlier run is still the simulator's"
assert_eq 200 "$(json_post POST vm/add '{"domain":{"name":"rest-vm9","hostId":1,"storage":[{"storeFile":"rest-vm9.qcow2","capacity":8}]}}')" \
        "typed vm/add"
assert_eq 0 "$(jq_py 'j["targetId"]')" "typed targetId"
assert_eq False "$(jq_py 'j["completed"]')" "typed completed"
stop_sim

info "scripts/sim-up.sh and sim-down.sh"
up_http=127.0.0.1:$(free_port)
up_cvd=$(free_port)
export SIM_STATE=$UP_STATE SIM_HTTP=$up_http SIM_CVD_PORT=$up_cvd
"$REPO/scripts/sim-up.sh" "$BUILD" >up.out 2>up.err || die "sim-up failed: $(cat up.out up.err)"
assert_eq "CVM_URL=http://$up_http" "$(sed -n 1p up.out)" "line 1"
assert_eq "CVM_USER=admin" "$(sed -n 2p up.out)" "line 2"
assert_eq "CVM_PASSWORD_FILE=$UP_STATE/cvm-password" "$(sed -n 3p up.out)" "line 3"
assert_eq "CVD_TOKEN_FILE=$UP_STATE/cvd.token" "$(sed -n 4p up.out)" "line 4"
assert_eq "CVD_PORT=$up_cvd" "$(sed -n 5p up.out)" "line 5"
up_pid=$(sed -n 's/^SIM_PID=//p' up.out)
track "$up_pid" "sim-up vbak-cvm-sim"
up_children=$(pgrep -P "$up_pid" || true)
up_qemus=$(cat "$UP_STATE"/run/*.pid)
[[ $(wc -w <<<"$up_qemus") == 2 ]] || die "the default topology runs 2 VMs, got: $up_qemus"
for p in $up_children $up_qemus; do track "$p" "sim-up child"; done
code=$(curl -s --digest -u "admin:$(cat "$UP_STATE/cvm-password")" -o /dev/null -w '%{http_code}' \
        "http://$up_http/cas/casrs/operator/test")
assert_eq 204 "$code" "the password file works"
"$VBAK" cvd ping "cvd://127.0.3.1:$up_cvd" --token-file "$UP_STATE/cvd.token" >ping.out || die "cvd ping: $(cat ping.out)"
"$REPO/scripts/sim-up.sh" "$BUILD" >up2.out 2>up2.err || die "a second sim-up failed: $(cat up2.err)"
assert_contains up2.err "already runs"
assert_eq "$(sed -n 1,5p up.out)" "$(sed -n 1,5p up2.out)" "the same lines again"
expect_exit 0 "$REPO/scripts/sim-down.sh" "$BUILD"
assert_contains "$LAST_OUT" stopped
for p in $up_pid $up_children $up_qemus; do
        running "$p" && die "process $p ($(cat "/proc/$p/comm" 2>/dev/null)) outlived sim-down"
done
[[ -f $UP_STATE/cvd.token && -d $UP_STATE/pools ]] || die "sim-down removed the state"
expect_exit 0 "$REPO/scripts/sim-down.sh" "$BUILD"
assert_contains "$LAST_OUT" "not running"
info "ok"
