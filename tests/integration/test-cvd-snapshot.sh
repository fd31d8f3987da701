#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# An internal snapshot of a RUNNING VM through vbak-cvd. A QEMU VM (TCG, no
# guest OS) writes to its qcow2 disk (which carries a checkpoint, so its
# bitmap is "in-use" in the image) through HMP qemu-io; HMP `savevm s1`
# takes the snapshot; the VM goes on writing: over the snapshot's clusters
# (whole and partial), into new clusters, zeroes over snapshot data. Then:
# - `vbak cvd open ...?snapshot=s1` answers running: true with a read-only
#   export, served by a qemu-nbd child of vbak-cvd, that reads exactly the
#   disk at savevm time and goes with the session;
# - `vbak pool backup --source cvd://...?snapshot=s1`, while the VM keeps
#   writing, restores byte-identical to the disk at savevm time;
# - a missing snapshot is not-found (3), with the backup as well; with a
#   checkpoint or --since it is invalid (2), and no checkpoint is made;
#   read-write on the running VM stays refused (19);
# - the VM runs throughout; once it quits, its image checks clean, s1 still
#   holds the disk at savevm time and the live disk every later write.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/integration/vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
need_qemu
need_cmd nbdcopy nbdinfo cmp pgrep
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

# both BYTE OFFSET LENGTH: the VM writes, and the live reference follows
both() {
        vm_write qmp/vm1.qmp "$@"
        put ref-live.raw "$@"
}

# hmp COMMAND: an HMP command that must answer nothing (qemu-io's own
# errors go to QEMU's stdout, see vm_write)
hmp() {
        local out
        out=$(qmp qmp/vm1.qmp --hmp "$1") || die "HMP $1: $out"
        [[ -z $out ]] || die "HMP $1: $out"
}

vm_running() {
        qmp qmp/vm1.qmp '{"execute":"query-status"}' >status.json || die "query-status failed"
        assert_contains status.json '"status": "running"' "VM state ($1)"
}

# wait_until WHAT COMMAND...: within 10 s
wait_until() {
        local what=$1 i
        shift
        for ((i = 0; i < 100; i++)); do
                "$@" && return 0
                sleep 0.1
        done
        die "$what: not after 10 s"
}

no_qemu_nbd() {
        ! pgrep -P "$cvd_pid" -x qemu-nbd >/dev/null
}

port_closed() {
        ! port_open 127.0.0.1 "$1"
}

gone() {
        ! running "$1"
}

# The VM writes 64 KiB into slot j (0-31) of 64-128 MiB with byte 0x60+j,
# round robin, until the file stop-writer appears; one line in `writes` for
# each write done.
writer() {
        local i=0 j
        while [[ ! -e stop-writer ]]; do
                j=$((i % 32))
                vm_write qmp/vm1.qmp $((0x60 + j)) $((64 * 1024 + j * 64))k 64k
                echo "$j" >>writes
                i=$((i + 1))
        done
}

mkdir -p img qmp
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >token
T=(--token-file token)
cvd_port=$(free_port)
"$CVD" --listen "127.0.0.1:$cvd_port" --port-range 20000-29999 --images "$WORK/img" --qmp-dir "$WORK/qmp" \
        --token-file token --timeout 20 >cvd.log 2>&1 &
cvd_pid=$!
track "$cvd_pid" vbak-cvd
wait_port 127.0.0.1 "$cvd_port"
"$VBAK" pool init pool >/dev/null

info "a running VM writes, then savevm s1"
qemu-img create -q -f qcow2 img/vm1-vda.qcow2 128M
qemu-img bitmap --add img/vm1-vda.qcow2 c0
truncate -s 128M ref-live.raw
start_qemu_vm vm1 img/vm1-vda.qcow2 qmp/vm1.qmp
both 0x11 0 2M
both 0x12 5M 64k
both 0x13 100M 1M
both 0x14 127M 1M
url=cvd://127.0.0.1:$cvd_port/vm1$WORK/img/vm1-vda.qcow2
surl="$url?snapshot=s1"
hmp "savevm s1"
vm_running "after savevm"
cp ref-live.raw ref-s1.raw
qmp qmp/vm1.qmp --hmp "info snapshots" >snapshots.txt
assert_contains snapshots.txt " s1 " "info snapshots"
# The image says the same to another reader, with force-share.
qemu-img convert -U -l snapshot.name=s1 -O raw img/vm1-vda.qcow2 s1-at-savevm.raw
assert_same ref-s1.raw s1-at-savevm.raw "the snapshot read by qemu-img right after savevm"

info "the VM goes on writing"
both 0x21 0 1M   # over the snapshot's clusters
both 0x22 5M 4k  # part of a snapshot cluster
both 0x23 60M 256k
hmp "qemu-io -d $VM_BACKEND \"write -z 100M 512k\""
put ref-live.raw 0 100M 512k
vm_running "after the later writes"

info "vbak cvd open of the snapshot: running, read-only, the disk at savevm time"
"$VBAK" cvd open "$surl" "${T[@]}" --json --hold 60 >open.json 2>open.err &
holder=$!
track "$holder" "vbak cvd open"
wait_until "disk.open of s1 ($(cat open.err 2>/dev/null))" grep -q '"running"' open.json
assert_eq true "$(json_get running <open.json)" "reply: running"
assert_eq qcow2 "$(json_get format <open.json)" "reply: format"
assert_eq $((128 * MiB)) "$(json_get size <open.json)" "reply: size"
assert_eq 0 "$(json_get granularity <open.json)" "reply: granularity"
assert_eq "['base:allocation']" "$(jget open.json 'd["contexts"]')" "reply: contexts"
uri=$(json_get uri <open.json)
dport=$(json_get port <open.json)
nbdinfo "$uri" >nbdinfo.txt
assert_contains nbdinfo.txt "is_read_only: true"
assert_eq 1 "$(pgrep -P "$cvd_pid" -x qemu-nbd | wc -l)" "qemu-nbd children of vbak-cvd"
vm_write qmp/vm1.qmp 0x24 2M 64k # while it is exported
put ref-live.raw 0x24 2M 64k
nbdcopy "$uri" export.raw
assert_same ref-s1.raw export.raw "the export of s1"
kill -TERM "$holder"
wait "$holder" 2>/dev/null || true
wait_until "qemu-nbd gone with the session" no_qemu_nbd
wait_until "data port $dport closed" port_closed "$dport"
vm_running "after the export"

info "backup of the snapshot while the VM writes"
rm -f stop-writer
: >writes
writer >writer.log 2>&1 &
writer_pid=$!
track "$writer_pid" writer
wait_until "the writer's first write ($(cat writer.log))" test -s writes
"$VBAK" pool backup pool --json "${T[@]}" --vm vm1 --disk vda --source "$surl" --rate 2MiB/s >backup.json \
        2>backup.err || die "backup of s1: $(cat backup.err backup.json)"
during=$(wc -l <writes)
touch stop-writer
wait "$writer_pid" || die "the writer failed: $(cat writer.log)"
writes=$(wc -l <writes)
info "$during writes before the backup ended, $writes in all"
assert_cmp -ge "$during" 3 "writes while the backup ran"
for ((j = 0; j < 32 && j < writes; j++)); do
        put ref-live.raw $((0x60 + j)) $((64 * 1024 + j * 64))k 64k
done
assert_eq full "$(jget backup.json 'd["type"]')" "backup type"
assert_cmp -le "$(jget backup.json 'd["transport"]["bytes_received"]')" $((5 * MiB)) \
        "bytes read (allocated data only)"
restore_cmp pool "$(jget backup.json 'd["id"]')" vda ref-s1.raw
vm_running "after the backup"
no_qemu_nbd || die "a qemu-nbd of vbak-cvd is left after the backup"

info "what stays refused"
expect_exit 3 "$VBAK" cvd open "$url?snapshot=nope" "${T[@]}"
assert_contains "$LAST_ERR" "no internal snapshot nope"
expect_exit 3 "$VBAK" pool backup pool "${T[@]}" --vm vm1 --disk vda --source "$url?snapshot=nope"
assert_contains "$LAST_ERR" "no internal snapshot nope"
expect_exit 2 "$VBAK" cvd open "$surl" "${T[@]}" --checkpoint c9
assert_contains "$LAST_ERR" "checkpoint c9 would start now, not at snapshot s1"
expect_exit 2 "$VBAK" cvd open "$surl" "${T[@]}" --since c0
expect_exit 2 "$VBAK" cvd open "$surl" "${T[@]}" --mode read-write
expect_exit 19 "$VBAK" cvd open "$url" "${T[@]}" --mode read-write
assert_contains "$LAST_ERR" "running"
expect_exit 0 "$VBAK" cvd bitmap list "$url" "${T[@]}" --json
assert_contains "$LAST_OUT" '"c0"' "the checkpoint made before"
assert_not_contains "$LAST_OUT" '"c9"' "no checkpoint from a refused open"
no_qemu_nbd || die "a qemu-nbd of vbak-cvd is left after the refusals"
vm_running "at the end"

info "the VM quits: a clean image, s1 unchanged, every later write in the live disk"
qemu_pid=$(cat vm1.qemu.pid)
qmp qmp/vm1.qmp '{"execute":"quit"}' >/dev/null
wait_until "QEMU exits" gone "$qemu_pid"
qemu-img check -q img/vm1-vda.qcow2 || die "qemu-img check found problems: $(qemu-img check img/vm1-vda.qcow2)"
qemu-img convert -l snapshot.name=s1 -O raw img/vm1-vda.qcow2 s1-end.raw
assert_same ref-s1.raw s1-end.raw "s1 after the VM quit"
qemu-img convert -O raw img/vm1-vda.qcow2 live-end.raw
assert_same ref-live.raw live-end.raw "the live disk after the VM quit"
info "ok"
