#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-cas-backup.sh -- `vbak cas backup` end to end against vbak-cvm-sim
# with real QEMU VMs and each host's real vbak-cvd: a running VM with two
# disks, written to through QEMU, backed up full and then incrementally
# (only the written extents read), every restore point restored
# byte-identical by `vbak pool restore`, and as a new VM by `vbak cas
# restore`; an incremental after a power cycle
# becomes a full and says why; the driver in every rendering (legacy JSON,
# typed JSON, XML) and over HTTPS; every fault knob of the simulator gives
# its clear error (or, for a session that expires, is ridden out) and
# leaves no snapshot and no restore point behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
need_qemu
need_cmd curl
need_cmd openssl
command -v python3 >/dev/null || skip "no python3"

STATE=$WORK/state
POOLDIR=$STATE/pools/h1
mkdir -p "$STATE"
echo 's3cret-pw' >password
# Addresses of their own, so that the simulator of another test does not collide.
cat >topology.json <<'EOF'
{ "hostPools": [ { "id": 1, "name": "hp", "hosts": [
  { "id": 1, "name": "cvk01", "ip": "127.0.71.1",
    "networks": [ { "role": "management", "vsName": "vswitch0", "ip": "127.0.71.1" },
                  { "role": "backup", "vsName": "vswitch-bak", "ip": "127.0.73.1" } ],
    "storagePools": [ { "name": "defaultpool", "type": "dir", "path": "pools/h1" } ],
    "vms": [ { "id": 11, "name": "web01", "title": "网站服务器", "status": "running",
               "disks": [ { "file": "web01-vda.qcow2", "format": "qcow2", "size": 64 },
                          { "file": "web01-vdb.qcow2", "format": "qcow2", "size": 32 } ] },
             { "id": 12, "name": "raw01", "status": "shutOff",
               "disks": [ { "file": "raw01-vda.raw", "format": "raw", "size": 16 } ] } ] },
  { "id": 2, "name": "cvk02", "ip": "127.0.71.2",
    "storagePools": [ { "name": "defaultpool", "type": "dir", "path": "pools/h2" } ],
    "vms": [ { "id": 21, "name": "app01", "status": "running",
               "disks": [ { "file": "app01-vda.qcow2", "format": "qcow2", "size": 16 } ] } ] } ] } ] }
EOF
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=cvm.example \
        >/dev/null 2>&1 || die "openssl could not make a certificate"

SIM_PID=
stop_sim() {
        # SIGTERM lets the simulator stop its QEMUs and vbak-cvds; wait until it has.
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        SIM_PID=
        return 0
}
trap stop_sim EXIT
trap 'exit 143' TERM INT

CVD_PORT=$(free_port)
# start_sim ARGS...: the simulator on free ports, state in $STATE; sets CVM (and CVMS with --https).
start_sim() {
        local port sport
        stop_sim
        port=$(free_port)
        sport=$(free_port)
        "$SIM" serve --topology topology.json --http "127.0.0.1:$port" --https "127.0.0.1:$sport" \
                --cert cert.pem --key key.pem --user admin --password-file password --state-dir "$STATE" \
                --cvd-port "$CVD_PORT" "$@" >sim.out 2>sim.err &
        SIM_PID=$!
        for _ in $(seq 400); do
                grep -q "listening on http://127.0.0.1:$port" sim.out 2>/dev/null && break
                kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
                sleep 0.05
        done
        grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
        CVM=http://127.0.0.1:$port
        CVMS=https://127.0.0.1:$sport
}

ctl() { "$SIM" ctl --state-dir "$STATE" "$@"; }

# backup ARGS...: vbak cas backup of the simulator's CVM with the test's credentials
backup() {
        "$VBAK" cas backup --cvm "$CVM" --user admin --password-file password --pool pool \
                --cvd-port "$CVD_PORT" --cvd-token-file "$STATE/cvd.token" --json "$@"
}

# py EXPR: a python expression on the JSON document in $LAST_OUT (as j)
py() {
        python3 -c "import json; j = json.load(open('$LAST_OUT')); print($1)"
}

# snapshots VMID: the number of snapshots the CVM lists for the VM
snapshots() {
        curl -sf --digest -u admin:s3cret-pw -H 'Accept: application/json' "$CVM/cas/casrs/vm/snapshot/$1" |
                python3 -c 'import json, sys
d = json.load(sys.stdin)
s = d.get("snapshot", [])
print(len(s if isinstance(s, list) else [s]))'
}

# restore_check ID: every disk of web01's restore point ID restored and
# compared with the VM's image as it is now (no write since the backup)
restore_check() {
        local d
        for d in vda vdb; do
                rm -f "restored-$d.raw"
                expect_exit 0 "$VBAK" pool restore pool "$1" --disk "$d" --target "restored-$d.raw"
                qemu-img compare -U -f qcow2 -F raw "$POOLDIR/web01-$d.qcow2" "restored-$d.raw" >cmp.out 2>&1 ||
                        die "restore point $1 disk $d differs from the VM's disk: $(cat cmp.out)"
        done
}

count_points() {
        "$VBAK" pool list pool --json | json_ids | wc -l
}

"$VBAK" pool init pool >/dev/null
expect_exit 0 "$VBAK" cas --help
assert_contains "$LAST_OUT" "backup --vm NAME|ID|UUID --pool PATH"
expect_exit 2 "$VBAK" cas backup --cvm http://127.0.0.1:1 --user admin --password-file password --vm web01
assert_contains "$LAST_ERR" "--pool"

start_sim --json-quirks legacy

info "full backup of a running two-disk VM (legacy JSON)"
ctl write web01 vda 1M 256k 0x11 >/dev/null
ctl write web01 vdb 3M 128k 0x22 >/dev/null
expect_exit 0 backup --vm web01
assert_eq full "$(py 'j["type"]')" "first backup"
assert_eq 网站服务器 "$(py 'j["title"]')" "title"
assert_eq 0 "$(snapshots 11)" "snapshot deleted after the backup"
assert_contains <(py 'j["notes"]') "crash-consistent"
full=$(py 'j["id"]')
restore_check "$full"
manifest=$(find pool -path "*/$full/manifest.json")
[[ -f $manifest ]] || die "no manifest for $full"
assert_contains "$manifest" '"platform": "cas"'
assert_contains "$manifest" '"consistency": "crash"'
assert_contains "$manifest" '"host_id": "1"'
assert_contains "$manifest" '"format": "qcow2"'
# The captured configuration a restore recreates the VM from.
assert_contains "$manifest" 'web01-vdb.qcow2'

info "incremental after writes (XML)"
ctl write web01 vda 8M 64k 0x33 >/dev/null
ctl write web01 vdb 20M 128k 0x44 >/dev/null
expect_exit 0 backup --vm 网站服务器 --type incremental --xml
assert_eq "incremental $full" "$(py 'j["type"], j["parent"]')" "incremental"
assert_eq "65536 131072" "$(py 'j["disks"][0]["bytes_plan"], j["disks"][1]["bytes_plan"]')" "only the written extents"
assert_eq "65536 131072" "$(py 'j["disks"][0]["bytes_read"], j["disks"][1]["bytes_read"]')" "only they were read"
assert_eq None "$(py 'j["cleanup_error"]')" "no cleanup error"
incr=$(py 'j["id"]')
restore_check "$incr"
assert_eq 0 "$(snapshots 11)" "snapshot deleted"

info "the incremental restored as a new, running VM"
expect_exit 0 "$VBAK" cas restore "$incr" --cvm "$CVM" --user admin --password-file password --pool pool \
        --cvd-port "$CVD_PORT" --cvd-token-file "$STATE/cvd.token" --name web01-copy --power-on --json
assert_eq 2 "$(py 'len(j["volumes"])')" "two new volumes"
for d in vda vdb; do
        qemu-img compare -U "$POOLDIR/web01-$d.qcow2" "$POOLDIR/web01-copy-$d.qcow2" >cmp.out 2>&1 ||
                die "the new VM's disk $d differs: $(cat cmp.out)"
done
expect_exit 0 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm web01-copy --json
assert_eq "running 2 web01-copy" "$(py 'j["state"], len(j["disks"]), j["title"]')" "the new VM"
assert_contains <(py 'j["config"]') "'cpuSockets'"
# A second restore under the same name is refused before anything is made.
expect_exit 14 "$VBAK" cas restore "$incr" --cvm "$CVM" --user admin --password-file password --pool pool \
        --cvd-port "$CVD_PORT" --cvd-token-file "$STATE/cvd.token" --name web01-copy
assert_contains "$LAST_ERR" "a VM named web01-copy exists"
[[ ! -e $POOLDIR/web01-copy-vda-2.qcow2 ]] || die "a refused restore made a volume"
# And deleted again, with its disks (a running VM is refused first).
expect_exit 19 "$VBAK" cas delete --cvm "$CVM" --user admin --password-file password --vm web01-copy --with-disks
assert_contains "$LAST_ERR" "vm web01-copy (id "
expect_exit 0 "$VBAK" cas power --cvm "$CVM" --user admin --password-file password --vm web01-copy off
expect_exit 0 "$VBAK" cas delete --cvm "$CVM" --user admin --password-file password --vm web01-copy --with-disks
expect_exit 3 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm web01-copy
[[ ! -e $POOLDIR/web01-copy-vda.qcow2 && ! -e $POOLDIR/web01-copy-vdb.qcow2 ]] || die "the new VM's disks are still there"

info "quiesced through the guest agent when it answers"
ctl fault guest-agent web01 on >/dev/null
expect_exit 0 backup --vm web01
assert_eq True "$(py 'j["quiesced"]')" "quiesced"
assert_not_contains <(py 'j["notes"]') "crash-consistent"
manifest=$(find pool -path "*/$(py 'j["id"]')/manifest.json")
assert_contains "$manifest" '"consistency": "application"'
status=$(curl -sf --digest -u admin:s3cret-pw -H 'Accept: application/json' -H 'Content-Type: application/json' \
        --data '{"command":"{\"execute\":\"guest-fsfreeze-status\"}"}' "$CVM/cas/casrs/vm/11/executeCmd")
assert_contains <(echo "$status") thawed
ctl fault guest-agent web01 off >/dev/null

info "an incremental after a power cycle is a full, and says why"
ctl power-cycle web01 >/dev/null
ctl write web01 vda 12M 64k 0x55 >/dev/null
expect_exit 0 backup --vm web01
assert_eq full "$(py 'j["type"]')" "power cycle: full"
assert_contains <(py 'j["notes"]') "checkCbtBackup is false"
restore_check "$(py 'j["id"]')"
# The next one is an incremental again (the full left a checkpoint).
ctl write web01 vdb 1M 64k 0x66 >/dev/null
expect_exit 0 backup --vm web01
assert_eq "incremental 0 65536" "$(py 'j["type"], j["disks"][0]["bytes_read"], j["disks"][1]["bytes_read"]')" \
        "incremental after the full"
restore_check "$(py 'j["id"]')"

info "a shut-off VM with a raw disk: no CBT, a full each time"
expect_exit 0 backup --vm raw01
expect_exit 0 backup --vm raw01
assert_eq full "$(py 'j["type"]')" "raw disk"
assert_contains <(py 'j["notes"]') "supportCbt is false"
assert_eq 0 "$(snapshots 12)" "raw01: snapshot deleted"

info "internal snapshot of the running VM: read whole"
expect_exit 0 backup --vm web01 --snapshot internal
assert_eq full "$(py 'j["type"]')" "internal"
restore_check "$(py 'j["id"]')"
assert_eq 0 "$(snapshots 11)" "internal snapshot deleted"

points=$(count_points)

info "fault: snapshot-fail"
ctl fault snapshot-fail web01 on >/dev/null
expect_exit 19 backup --vm web01
assert_contains "$LAST_ERR" "vm web01 (id 11): external snapshot"
assert_contains "$LAST_ERR" "创建快照失败"
ctl fault snapshot-fail web01 off >/dev/null

info "fault: pool-full (the free-space check, at its defaults of 500 GiB and 10 %, fails)"
ctl fault pool-full web01 on >/dev/null
expect_exit 7 backup --vm web01
assert_contains "$LAST_ERR" "storage pool defaultpool has 1.0 MiB free"
ctl fault pool-full web01 off >/dev/null

info "fault: shutdown-hang with --shutdown"
ctl fault shutdown-hang web01 on >/dev/null
expect_exit 19 backup --vm web01 --shutdown
assert_contains "$LAST_ERR" "shutdown: task failed"
assert_contains "$LAST_ERR" "the VM is not backed up"
ctl fault shutdown-hang web01 off >/dev/null

info "fault: host-down"
ctl fault host-down app01 on >/dev/null
expect_exit 3 backup --vm app01
assert_contains "$LAST_ERR" "app01"
ctl fault host-down app01 off >/dev/null

info "fault: conn-reset"
ctl fault conn-reset on >/dev/null
expect_exit 17 backup --vm web01
assert_contains "$LAST_ERR" "CVM 127.0.0.1"
assert_eq "$points" "$(count_points)" "no restore point from the failures"
assert_eq 0 "$(snapshots 11)" "no snapshot left by the failures"
assert_eq 0 "$(snapshots 21)" "app01: no snapshot"

info "the preferred network: the management address, where no disk service listens"
expect_exit 17 backup --vm web01 --network management
assert_contains "$LAST_ERR" "cvd://127.0.71.1:$CVD_PORT/web01/"
assert_eq 0 "$(snapshots 11)" "snapshot deleted after a failed disk open"
assert_eq "$points" "$(count_points)" "no restore point"

info "fault: session-expiry is ridden out"
ctl fault session-expiry on >/dev/null
expect_exit 0 backup --vm web01
restore_check "$(py 'j["id"]')"

info "fault: task-slow with a short task timeout"
ctl fault task-slow raw01 on >/dev/null
expect_exit 17 "$VBAK" cas power --cvm "$CVM" --user admin --password-file password --vm raw01 start --timeout 2
assert_contains "$LAST_ERR" "did not complete in 2 s"
ctl fault task-slow raw01 off >/dev/null
# A snapshot whose task outlives the timeout is still made (10 s later):
# the cleanup waits for that task and deletes it.
points=$(count_points)
ctl fault task-slow web01 on >/dev/null
expect_exit 17 backup --vm web01 --timeout 3
assert_contains "$LAST_ERR" "external snapshot"
assert_contains "$LAST_ERR" "did not complete in 3 s"
ctl fault task-slow web01 off >/dev/null
# Its delete task was slow too: wait until it has run.
for _ in $(seq 30); do
        [[ $(snapshots 11) == 0 ]] && break
        sleep 1
done
assert_eq 0 "$(snapshots 11)" "the late snapshot was deleted"
assert_eq "$points" "$(count_points)" "no restore point from the timeout"

info "typed JSON over HTTPS"
start_sim --json-quirks typed --error-charset gbk
expect_exit 17 "$VBAK" cas inventory --cvm "$CVMS" --user admin --password-file password
ctl write web01 vdb 5M 64k 0x77 >/dev/null
CVM=$CVMS expect_exit 0 backup --vm web01 --insecure
# The simulator restarted: the checkpoints on the images survived it.
assert_eq incremental "$(py 'j["type"]')" "typed JSON over HTTPS"
restore_check "$(py 'j["id"]')"
ctl fault snapshot-fail web01 on >/dev/null
CVM=$CVMS expect_exit 19 backup --vm web01 --insecure
assert_contains "$LAST_ERR" "创建快照失败"
assert_eq 0 "$(snapshots 11)" "typed: no snapshot left"

stop_sim
info "ok"
