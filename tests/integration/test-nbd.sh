#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Backups over NBD from real QEMU peers:
# - qemu-nbd serving a stopped qcow2 with a persistent bitmap: a full backup,
#   then an incremental from qemu:dirty-bitmap that reads no more than 1.1x
#   the dirty bytes (the bitmap's granularity rounds them up already);
# - a running QEMU (TCG, no guest OS) whose disk is written through HMP
#   qemu-io, exported over QMP with a disabled copy of its bitmap: a full and
#   an incremental backup;
# - a missing bitmap or a parent taken at another checkpoint falls back to a
#   full read and says so; a restore over NBD into a new qcow2 and every
#   restore point restored to a file are byte-identical to the disk at the
#   time of its backup.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/integration/vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
need_qemu
command -v nbdinfo >/dev/null || skip "needs nbdinfo (libnbd-bin)"
trap stop_all EXIT
trap 'exit 143' TERM INT

# jget FILE EXPR: a value from a JSON file (d is the document)
jget() {
        "$VM_PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# backup OUT ARGS...: vbak pool backup pool ARGS --json > OUT, must succeed
backup() {
        local out=$1
        shift
        "$VBAK" pool backup pool --vm vm1 --disk vda --json "$@" >"$out" 2>"$out.err" ||
                die "backup $*: $(cat "$out.err" "$out")"
}

# restore_check ID REF.raw: the restore point restores to exactly REF
restore_check() {
        rm -f restored.raw
        "$VBAK" pool restore pool "$1" --disk vda --target restored.raw >/dev/null 2>restore.err ||
                die "restore $1: $(cat restore.err)"
        cmp restored.raw "$2" || die "restore point $1 differs from $2"
}

# stop_pid PIDFILE-less: stop qemu-nbd on PORT (it is tracked; kill it now)
stop_nbd() {
        pkill -f -- "-p $1 " || true
        local tries=100
        while port_open 127.0.0.1 "$1"; do
                ((tries-- > 0)) || die "qemu-nbd on $1 does not stop"
                sleep 0.05
        done
}

"$VBAK" pool init pool >/dev/null

info "stopped disk through qemu-nbd: full backup"
qemu-img create -q -f qcow2 disk.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x5a 0 8M" -c "write -P 0xa5 100M 5M" -c "write -P 0x11 255M 1M" disk.qcow2 >/dev/null
qemu-img bitmap --add disk.qcow2 c1
qemu-img convert -O raw disk.qcow2 ref1.raw
port=$(free_port)
start_qemu_nbd disk.qcow2 "$port" -r -x vda
backup full.json --source "nbd://127.0.0.1:$port/vda" --checkpoint c1 --connections 2
assert_eq full "$(jget full.json 'd["type"]')" "type"
assert_eq c1 "$(jget full.json 'd["checkpoint"]')" "checkpoint"
assert_eq 14680064 "$(jget full.json 'd["transport"]["bytes_received"]')" "bytes read: the allocated 14 MiB only"
full_id=$(jget full.json 'd["id"]')
stop_nbd "$port"

info "stopped disk: incremental from the bitmap"
qemu-io -f qcow2 -c "write -P 0x77 1M 4k" -c "write -P 0x78 50M 1M" -c "write -P 0x79 200M 192k" \
        -c "write -P 0 100M 64k" disk.qcow2 >/dev/null
qemu-img bitmap --add disk.qcow2 c2
qemu-img convert -O raw disk.qcow2 ref2.raw
start_qemu_nbd disk.qcow2 "$port" -r -x vda -B c1
dirty=$(nbdinfo --map=qemu:dirty-bitmap:c1 "nbd://127.0.0.1:$port/vda" | awk '$3 == 1 { s += $2 } END { print s + 0 }')
assert_cmp -gt "$dirty" 0 "dirty bytes"
backup inc.json --source "nbd://127.0.0.1:$port/vda" --bitmap c1 --parent latest --checkpoint c2
assert_eq incremental "$(jget inc.json 'd["type"]')" "type"
assert_eq "$full_id" "$(jget inc.json 'd["parent"]')" "parent"
assert_eq "$dirty" "$(jget inc.json 'd["bytes_dirty"]')" "dirty bytes seen by vbak"
got=$(jget inc.json 'd["transport"]["bytes_received"]')
assert_cmp -le "$got" $((dirty * 11 / 10)) "bytes read for the incremental vs 1.1 x dirty ($dirty)"
info "incremental read $got bytes for $dirty dirty bytes"
inc_id=$(jget inc.json 'd["id"]')

info "a parent taken at another checkpoint is not trusted"
backup distrust.json --source "nbd://127.0.0.1:$port/vda" --bitmap c1 --parent "$full_id"
assert_eq incremental "$(jget distrust.json 'd["type"]')" "parent at c1 is fine"
backup distrust2.json --source "nbd://127.0.0.1:$port/vda" --bitmap c1 --parent "$inc_id"
assert_eq full "$(jget distrust2.json 'd["type"]')" "parent taken at c2, bitmap c1: full read"
assert_contains distrust2.json "not c1" "the note"
stop_nbd "$port"

info "a missing bitmap falls back to a full read"
start_qemu_nbd disk.qcow2 "$port" -r -x vda
backup nobitmap.json --source "nbd://127.0.0.1:$port/vda" --bitmap c2 --parent "$inc_id"
assert_eq full "$(jget nobitmap.json 'd["type"]')" "type without the bitmap"
assert_contains nobitmap.json "qemu:dirty-bitmap:c2" "the note"
stop_nbd "$port"

restore_check "$full_id" ref1.raw
restore_check "$inc_id" ref2.raw

info "restore over NBD into a new thin qcow2"
qemu-img create -q -f qcow2 new.qcow2 256M
start_qemu_nbd new.qcow2 "$port" -x vda
"$VBAK" pool restore pool "$inc_id" --disk vda --target "nbd://127.0.0.1:$port/vda" --connections 3 --json \
        >restore-nbd.json 2>restore-nbd.err || die "restore over NBD: $(cat restore-nbd.err)"
stop_nbd "$port"
qemu-img compare -q -f raw -F qcow2 ref2.raw new.qcow2 || die "the NBD restore differs"
alloc=$(qemu-img info --output=json new.qcow2 | sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p')
assert_cmp -lt "$alloc" $((64 * MiB)) "the restored qcow2 stays thin (zero chunks became write-zeroes)"

info "a running VM: bitmap, writes through QEMU, export over QMP"
qemu-img create -q -f qcow2 vm.qcow2 128M
qmp_sock=$WORK/vm1.qmp
start_qemu_vm vm1 vm.qcow2 "$qmp_sock"
vm_write "$qmp_sock" 0x21 0 3M
vm_write "$qmp_sock" 0x22 64M 2M
qmp "$qmp_sock" '{"execute":"block-dirty-bitmap-add","arguments":{"node":"fmt0","name":"v1","persistent":true}}' >/dev/null
vport=$(free_port)
qmp "$qmp_sock" "{\"execute\":\"nbd-server-start\",\"arguments\":{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"127.0.0.1\",\"port\":\"$vport\"}}}}" >/dev/null
qmp "$qmp_sock" '{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1","node-name":"fmt0","name":"vda","writable":false}}' >/dev/null
nbdcopy "nbd://127.0.0.1:$vport/vda" vm-ref1.raw
backup vfull.json --source "nbd://127.0.0.1:$vport/vda" --checkpoint v1
vfull_id=$(jget vfull.json 'd["id"]')
qmp "$qmp_sock" '{"execute":"block-export-del","arguments":{"id":"e1"}}' >/dev/null
sleep 0.2

vm_write "$qmp_sock" 0x31 1M 64k
vm_write "$qmp_sock" 0x32 90M 320k
# A frozen copy of v1 under its own name, on a private node (as vbak-cvd
# does), so the export offers qemu:dirty-bitmap:v1; v2 starts now.
qmp "$qmp_sock" '{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"h1","size":134217728}}' >/dev/null
qmp "$qmp_sock" '{"execute":"transaction","arguments":{"actions":[
  {"type":"block-dirty-bitmap-add","data":{"node":"h1","name":"v1","persistent":false,"disabled":true}},
  {"type":"block-dirty-bitmap-merge","data":{"node":"h1","target":"v1","bitmaps":[{"node":"fmt0","name":"v1"}]}},
  {"type":"block-dirty-bitmap-add","data":{"node":"fmt0","name":"v2","persistent":true}}]}}' >/dev/null
qmp "$qmp_sock" '{"execute":"block-export-add","arguments":{"type":"nbd","id":"e2","node-name":"fmt0","name":"vda","writable":false,"bitmaps":[{"node":"h1","name":"v1"}]}}' >/dev/null
nbdcopy "nbd://127.0.0.1:$vport/vda" vm-ref2.raw
vdirty=$(nbdinfo --map=qemu:dirty-bitmap:v1 "nbd://127.0.0.1:$vport/vda" | awk '$3 == 1 { s += $2 } END { print s + 0 }')
assert_eq $((64 * KiB + 320 * KiB)) "$vdirty" "dirty bytes of the running VM"
backup vinc.json --source "nbd://127.0.0.1:$vport/vda" --bitmap v1 --parent latest --checkpoint v2
assert_eq incremental "$(jget vinc.json 'd["type"]')" "type"
got=$(jget vinc.json 'd["transport"]["bytes_received"]')
assert_cmp -le "$got" $((vdirty * 11 / 10)) "bytes read for the running VM's incremental"
restore_check "$vfull_id" vm-ref1.raw
restore_check "$(jget vinc.json 'd["id"]')" vm-ref2.raw
info "ok"
