#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# demo.sh -- what `make demo` runs: builds a disk image with a real ext4 file
# system in it, backs it up into a dedup pool, changes it, backs it up
# incrementally (reading only the changed extents), restores both restore
# points, compares them byte for byte with the originals, verifies the pool
# and prints its stats.
#
# Usage: scripts/demo.sh BUILD_DIR    (VBAK_DEMO_DIR: where to work, default a temp dir)
set -euo pipefail

build=${1:-build}
vbak=$(cd "$build" && pwd)/vbak
work=${VBAK_DEMO_DIR:-$(mktemp -d /tmp/vbak-demo.XXXXXX)}
mkdir -p "$work"
cd "$work"
rm -rf pool tree disk.img disk-v1.img disk-v2.img restored-*.img changed.extents

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A 512 MiB disk image with an ext4 file system holding real files"
mkdir -p tree
cp -a /usr/include tree/ 2>/dev/null || true
cp -a /usr/share/doc tree/ 2>/dev/null || true
mkfs.ext4 -q -F -L demo -d tree disk.img 512M
printf 'apparent %s, allocated %s\n' "$(du -h --apparent-size disk.img | cut -f1)" "$(du -h disk.img | cut -f1)"
cp --sparse=always disk.img disk-v1.img

step "A dedup pool and a full backup (only allocated data is read)"
run "$vbak" pool init pool --type dedup
run "$vbak" pool backup pool --vm demo-vm --title "演示虚拟机" --disk vda --source disk.img --json | tee full.json
full_id=$(sed -n 's/.*"id": "\([^"]*\)".*/\1/p' full.json)

step "The VM writes: 40 random 64 KiB writes, their extents recorded as CBT would"
: >changed.extents
size=$(stat -c %s disk.img)
for i in $(seq 1 40); do
        off=$(((RANDOM * 32768 + RANDOM) % (size / 65536) * 65536))
        dd if=/dev/urandom of=disk.img bs=64K count=1 seek=$((off / 65536)) conv=notrunc status=none
        echo "$off 65536" >>changed.extents
done
cp --sparse=always disk.img disk-v2.img

step "An incremental backup: reads only the changed extents"
run "$vbak" pool backup pool --vm demo-vm --disk vda --source disk.img \
        --changed changed.extents --parent latest --json | tee incr.json
incr_id=$(sed -n 's/.*"id": "\([^"]*\)".*/\1/p' incr.json)

step "Restore both restore points and compare them with the originals"
run "$vbak" pool restore pool "$full_id" --disk vda --target restored-full.img
run "$vbak" pool restore pool "$incr_id" --disk vda --target restored-incr.img
cmp disk-v1.img restored-full.img && echo "full restore point:        identical to the original"
cmp disk-v2.img restored-incr.img && echo "incremental restore point: identical to the original"

step "List, verify and stats"
run "$vbak" pool list pool
run "$vbak" pool verify pool
run "$vbak" pool stats pool
printf '\nDemo finished in %s\n' "$work"
