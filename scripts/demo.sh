#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# demo.sh -- what `make demo` runs: builds a disk image with a real ext4 file
# system in it, backs it up into a dedup pool, changes it, backs it up
# incrementally (reading only the changed extents), restores both restore
# points, compares them byte for byte with the originals, verifies the pool
# and prints its stats. Then the same disk as a VM of a simulated H3C CAS
# platform (vbak-cvm-sim): vbakd backs the VM up through the platform and
# its host's disk service, restores it as a new VM, and the new VM's disk
# is compared with the original.
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

step "The disk as a VM of a simulated CAS platform, backed up and restored by vbakd"
bindir=$(dirname "$vbak")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rm -rf sim state vmpool
mkdir -p sim/pools/h1
qemu-img convert -O qcow2 disk-v2.img sim/pools/h1/demo-vda.qcow2
echo demo-password >sim.password
cat >sim.topology <<EOF
{"hostPools": [{"id": 1, "name": "hp", "clusters": [{"id": 1, "name": "c1", "hosts": [
  {"id": 1, "name": "cvk01", "ip": "127.0.0.1",
   "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h1"}],
   "vms": [{"id": 1, "name": "demo", "title": "演示虚拟机", "status": "shutOff", "memory": 512,
            "disks": [{"file": "demo-vda.qcow2", "format": "qcow2", "size": 512}]}]}]}]}]}
EOF
cvm=http://127.0.0.1:$(free_port)
cvd_port=$(free_port)
sim_pid='' vbakd_pid=''
stop_demo() {
        [[ -n $vbakd_pid ]] && kill "$vbakd_pid" 2>/dev/null && wait "$vbakd_pid" 2>/dev/null
        [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
        return 0
}
trap stop_demo EXIT
"$bindir/vbak-cvm-sim" serve --topology sim.topology --http "${cvm#http://}" --user admin \
        --password-file sim.password --state-dir sim --cvd-port "$cvd_port" >sim.out 2>sim.err &
sim_pid=$!
for _ in $(seq 300); do grep -q "listening on" sim.out 2>/dev/null && break; sleep 0.1; done
printf 'cvd_port = %s\ncvd_token_file = %s\n' "$cvd_port" "$work/sim/cvd.token" >vbakd.conf
export VBAK_SOCKET=$work/state/vbakd.sock
"$bindir/vbakd" --config vbakd.conf --state-dir state >vbakd.out 2>vbakd.err &
vbakd_pid=$!
for _ in $(seq 100); do "$vbak" status >/dev/null 2>&1 && break; sleep 0.1; done
run "$vbak" platform add cas1 --type cas --cvm "$cvm" --user admin --password-file sim.password
run "$vbak" pool add main --path "$work/vmpool"
run "$vbak" job create demo --platform cas1 --pool main --select vm:demo --set min_free_bytes=1G --set retries=0
run "$vbak" job start demo --follow
rp=$("$vbak" restore-point list --vm demo --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
run "$vbak" restore vm "$rp" --name demo-restored --yes --follow
run "$vbak" cas vm --cvm "$cvm" --user admin --password-file sim.password --vm demo-restored
qemu-img compare sim/pools/h1/demo-vda.qcow2 sim/pools/h1/demo-restored-vda.qcow2 &&
        echo "restored VM demo-restored: its disk is identical to the original VM's"
stop_demo
trap - EXIT
printf '\nDemo finished in %s\n' "$work"
