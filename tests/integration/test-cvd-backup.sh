#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Backups and restores through vbak-cvd over loopback TCP:
# - a stopped VM's qcow2 (qemu-nbd behind the service): a full backup that
#   creates checkpoint c1, an incremental since c1 that creates c2, reads no
#   more than 1.1x the dirty bytes and removes c1 once committed; a restore
#   through the service (read-write) into a new image, byte-identical;
# - a running VM (QEMU, TCG, no guest OS; QMP behind the service), written
#   through HMP qemu-io: full, then incremental since its checkpoint, both
#   restoring to exactly what was written;
# - the session's control connection is cut mid-backup (tcp-proxy.py in
#   front of port 8192): the export goes with it, vbak opens the disk again
#   in a new session and the backup completes, identical.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/integration/vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
need_qemu
CVD=$(dirname "$VBAK")/vbak-cvd
[[ -x $CVD ]] || die "no $CVD"
trap stop_all EXIT
trap 'exit 143' TERM INT

jget() {
        "$VM_PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# put FILE BYTE OFFSET LENGTH: the expected image gets LENGTH bytes BYTE at OFFSET
put() {
        "$VM_PYTHON" -c '
import sys
f, b, off, n = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3]), int(sys.argv[4])
with open(f, "r+b") as fh:
    fh.seek(off)
    fh.write(bytes([b]) * n)' "$1" "$2" "$(vm_bytes "$3")" "$(vm_bytes "$4")"
}

backup() {
        local out=$1
        shift
        "$VBAK" pool backup pool --json --token-file token "$@" >"$out" 2>"$out.err" ||
                die "backup $*: $(cat "$out.err" "$out")"
}

restore_check() { # ID DISK REF
        rm -f restored.raw
        "$VBAK" pool restore pool "$1" --disk "$2" --target restored.raw >/dev/null 2>restore.err ||
                die "restore $1: $(cat restore.err)"
        cmp restored.raw "$3" || die "restore point $1 differs from $3"
}

bitmaps() { # URL
        "$VBAK" cvd bitmap list "$1" --token-file token --json
}

mkdir -p img qmp
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >token
cvd_port=$(free_port)
"$CVD" --listen "127.0.0.1:$cvd_port" --port-range 20000-29999 --images "$WORK/img" --qmp-dir "$WORK/qmp" \
        --token-file token --timeout 20 >cvd.log 2>&1 &
track $! vbak-cvd
wait_port 127.0.0.1 "$cvd_port"
"$VBAK" pool init pool >/dev/null

info "stopped VM: full backup creating checkpoint c1"
qemu-img create -q -f qcow2 img/vm1-vda.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x5a 0 8M" -c "write -P 0xa5 100M 4M" img/vm1-vda.qcow2 >/dev/null
qemu-img convert -O raw img/vm1-vda.qcow2 ref1.raw
url=cvd://127.0.0.1:$cvd_port/vm1$WORK/img/vm1-vda.qcow2
backup full.json --vm vm1 --disk vda --source "$url" --checkpoint c1 --connections 2
assert_eq 12582912 "$(jget full.json 'd["transport"]["bytes_received"]')" "full: only allocated data read"
full_id=$(jget full.json 'd["id"]')

info "stopped VM: incremental since c1"
qemu-io -f qcow2 -c "write -P 0x77 1M 4k" -c "write -P 0x78 60M 1M" -c "write -P 0x79 200M 320k" \
        img/vm1-vda.qcow2 >/dev/null
qemu-img convert -O raw img/vm1-vda.qcow2 ref2.raw
backup inc.json --vm vm1 --disk vda --source "$url" --since c1 --checkpoint c2 --parent latest
assert_eq incremental "$(jget inc.json 'd["type"]')" "type"
dirty=$(jget inc.json 'd["bytes_dirty"]')
assert_eq $((64 * KiB + MiB + 320 * KiB)) "$dirty" "dirty bytes (64 KiB granularity)"
got=$(jget inc.json 'd["transport"]["bytes_received"]')
assert_cmp -le "$got" $((dirty * 11 / 10)) "bytes read ($got) vs 1.1 x dirty"
bitmaps "$url" >bm.json
assert_contains bm.json '"c2"' "the new checkpoint"
assert_not_contains bm.json '"c1"' "the checkpoint read from is removed after the commit"
restore_check "$full_id" vda ref1.raw
restore_check "$(jget inc.json 'd["id"]')" vda ref2.raw

info "restore through the service into a new image"
qemu-img create -q -f qcow2 img/vm9-vda.qcow2 256M
"$VBAK" pool restore pool latest --vm vm1 --disk vda --token-file token --connections 2 \
        --target "cvd://127.0.0.1:$cvd_port/vm9$WORK/img/vm9-vda.qcow2" >restore-cvd.out 2>restore-cvd.err ||
        die "restore through vbak-cvd: $(cat restore-cvd.err)"
qemu-img compare -q -f raw -F qcow2 ref2.raw img/vm9-vda.qcow2 || die "the restore through vbak-cvd differs"

info "running VM: full and incremental through QMP"
qemu-img create -q -f qcow2 img/vm2-vda.qcow2 128M
truncate -s 128M ref-vm2.raw
start_qemu_vm vm2 img/vm2-vda.qcow2 qmp/vm2.qmp
vm_write qmp/vm2.qmp 0x21 0 3M
put ref-vm2.raw 0x21 0 3M
vm_write qmp/vm2.qmp 0x22 64M 2M
put ref-vm2.raw 0x22 64M 2M
vurl=cvd://127.0.0.1:$cvd_port/vm2$WORK/img/vm2-vda.qcow2
backup vfull.json --vm vm2 --disk vda --source "$vurl" --checkpoint k1
restore_check "$(jget vfull.json 'd["id"]')" vda ref-vm2.raw
vm_write qmp/vm2.qmp 0x31 1M 64k
put ref-vm2.raw 0x31 1M 64k
vm_write qmp/vm2.qmp 0x32 90M 320k
put ref-vm2.raw 0x32 90M 320k
backup vinc.json --vm vm2 --disk vda --source "$vurl" --since k1 --checkpoint k2 --parent latest
assert_eq incremental "$(jget vinc.json 'd["type"]')" "running VM: type"
assert_eq $((64 * KiB + 320 * KiB)) "$(jget vinc.json 'd["bytes_dirty"]')" "running VM: dirty bytes"
assert_cmp -le "$(jget vinc.json 'd["transport"]["bytes_received"]')" $(((64 + 320) * KiB * 11 / 10)) \
        "running VM: bytes read"
restore_check "$(jget vinc.json 'd["id"]')" vda ref-vm2.raw
bitmaps "$vurl" >vbm.json
assert_contains vbm.json '"k2"' "running VM: the new checkpoint"
assert_not_contains vbm.json '"k1"' "running VM: the old checkpoint is removed"

info "the control connection is cut mid-backup: a new session, the same disk"
truncate -s 256M img/vm3-vda.raw
head -c 160M /dev/urandom | dd of=img/vm3-vda.raw conv=notrunc status=none
proxy_port=$(free_port)
start_proxy "$proxy_port" "127.0.0.1:$cvd_port" "$WORK/proxy.ctl"
purl=cvd://127.0.0.1:$proxy_port/vm3$WORK/img/vm3-vda.raw
"$VBAK" pool backup pool --json --token-file token --vm vm3 --disk vda --source "$purl" --rate 64MiB/s \
        --reconnect-window 30s >cut.json 2>cut.err &
backup_pid=$!
sleep 1
proxy_cmd "$WORK/proxy.ctl" cut >/dev/null
wait "$backup_pid" || die "the backup did not survive losing its session: $(cat cut.err)"
assert_cmp -ge "$(jget cut.json 'd["transport"]["reconnects"]')" 1 "reconnects"
restore_check "$(jget cut.json 'd["id"]')" vda img/vm3-vda.raw
info "ok"
