#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# demo.sh -- what `make demo` runs: vbak's main job end to end on the
# built-in simulator of an H3C CAS platform (vbak-cvm-sim, with real QEMU
# VMs and each host's real disk service, vbak-cvd):
#
#   a Debian root file system (debootstrap) as the disk of three VMs on two
#   hosts -> vbakd on a private state directory -> the platform, a pool and
#   a job registered -> a full backup -> the guests write -> an incremental
#   backup (only what changed is read) -> one VM restored as a new VM on the
#   other host, its disk compared with the original -> a summary.
#
# Everything it starts is stopped at the end and its files removed; the
# debootstrap image is kept in BUILD_DIR/demo-cache for the next run.
#
# Usage: scripts/demo.sh BUILD_DIR    (VBAK_DEMO_KEEP=1 keeps the work dir)
set -euo pipefail

build=$(cd "${1:-build}" && pwd)
vbak=$build/vbak
cache=$build/demo-cache
work=$(mktemp -d /tmp/vbak-demo.XXXXXX)
cd "$work"

step() { printf '\n== %s\n' "$*"; }
run() {
        printf '$ %s\n' "$*"
        "$@"
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
jq_py() { python3 -c "import json, sys; j = json.load(sys.stdin); $1"; }

sim_pid='' vbakd_pid=''
stop_all() {
        [[ -n $vbakd_pid ]] && kill "$vbakd_pid" 2>/dev/null && wait "$vbakd_pid" 2>/dev/null
        [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
        vbakd_pid='' sim_pid=''
        cd /
        [[ ${VBAK_DEMO_KEEP:-} == 1 ]] || rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 143' TERM INT
t_start=$(now)

step "A Debian root file system as the VMs' disk"
if [[ ! -s $cache/rootfs.qcow2 ]]; then
        mkdir -p "$cache"
        # shellcheck disable=SC1091 # the host's own release
        . /etc/os-release
        mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
        [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
        # The root tree is built outside the build dir: its *.d folders would
        # look like dependency files to make.
        root=$work/root
        echo "debootstrap --variant=minbase ${VERSION_CODENAME:-bookworm} from ${mirror:-?} (about a minute, once)"
        if debootstrap --variant=minbase "${VERSION_CODENAME:-bookworm}" "$root" ${mirror:+"$mirror"} \
                >"$cache/debootstrap.log" 2>&1; then
                label=debian
        else
                echo "debootstrap failed (see $cache/debootstrap.log): using a copy of /usr/share instead"
                rm -rf "$root"
                mkdir -p "$root"
                cp -a /usr/share/doc /usr/include "$root/" 2>/dev/null || true
                label=files
        fi
        mkfs.ext4 -q -F -L "$label" -d "$root" "$work/rootfs.img" 2G
        qemu-img convert -O qcow2 "$work/rootfs.img" "$cache/rootfs.qcow2.new"
        mv "$cache/rootfs.qcow2.new" "$cache/rootfs.qcow2"
        rm -rf "$root" "$work/rootfs.img"
fi
qemu-img info "$cache/rootfs.qcow2" | grep -E "virtual size|disk size"

step "The simulated CAS platform: two hosts, three VMs (two running)"
mkdir -p sim/pools/h1 sim/pools/h2
cp "$cache/rootfs.qcow2" sim/pools/h1/web01-vda.qcow2
cp "$cache/rootfs.qcow2" sim/pools/h1/db01-vda.qcow2
cp "$cache/rootfs.qcow2" sim/pools/h2/app01-vda.qcow2
echo demo-password >password
cat >topology.json <<'EOF'
{"hostPools": [{"id": 1, "name": "hp", "clusters": [{"id": 1, "name": "c1", "hosts": [
  {"id": 1, "name": "cvk01", "ip": "127.0.91.1",
   "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h1"}],
   "vms": [{"id": 11, "name": "web01", "title": "网站", "status": "running", "memory": 64,
            "disks": [{"file": "web01-vda.qcow2", "format": "qcow2", "size": 2048}]},
           {"id": 12, "name": "db01", "title": "数据库", "status": "shutOff", "memory": 64,
            "disks": [{"file": "db01-vda.qcow2", "format": "qcow2", "size": 2048},
                      {"file": "db01-vdb.qcow2", "format": "qcow2", "size": 512}]}]},
  {"id": 2, "name": "cvk02", "ip": "127.0.92.1",
   "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h2"}],
   "vms": [{"id": 21, "name": "app01", "title": "应用", "status": "running", "memory": 64,
            "disks": [{"file": "app01-vda.qcow2", "format": "qcow2", "size": 2048}]}]}]}]}]}
EOF
cvm=127.0.0.1:$(free_port)
cvd_port=$(free_port)
"$build/vbak-cvm-sim" serve --topology topology.json --http "$cvm" --user admin --password-file password \
        --state-dir sim --cvd-port "$cvd_port" >sim.out 2>sim.err &
sim_pid=$!
for _ in $(seq 600); do
        grep -q "listening on" sim.out 2>/dev/null && break
        kill -0 "$sim_pid" 2>/dev/null || { cat sim.err; exit 1; }
        sleep 0.1
done
# The database's data disk holds some rows.
qemu-io -f qcow2 -c "write -P 0x42 0 64M" sim/pools/h1/db01-vdb.qcow2 >/dev/null
echo "CVM http://$cvm; hosts cvk01 (127.0.91.1) and cvk02 (127.0.92.1), each with its vbak-cvd on port $cvd_port"

step "vbakd on a private state directory"
printf 'cvd_port = %s\ncvd_token_file = %s\n' "$cvd_port" "$work/sim/cvd.token" >vbakd.conf
export VBAK_SOCKET=$work/state/vbakd.sock
"$build/vbakd" --config vbakd.conf --state-dir state >vbakd.out 2>vbakd.err &
vbakd_pid=$!
for _ in $(seq 100); do
        "$vbak" status >/dev/null 2>&1 && break
        sleep 0.1
done
run "$vbak" status

step "Register the platform, a pool and a job"
run "$vbak" platform add cas1 --type cas --cvm "http://$cvm" --user admin --password-file password
run "$vbak" inventory cas1
run "$vbak" pool add main --path "$work/pool"
run "$vbak" job create nightly --platform cas1 --pool main --select cluster:c1 --type incremental \
        --set parallel_vms=3 --set min_free_bytes=1G --set retries=0 --json >/dev/null
run "$vbak" job show nightly

step "The first run: a full backup of the three VMs"
t=$(now)
run "$vbak" job start nightly --follow
t_full=$(since "$t")

step "The guests write: web01 and app01 through their guests, db01 into its data disk"
for off in 100M 700M 1300M 1900M; do "$build/vbak-cvm-sim" ctl --state-dir sim write web01 vda "$off" 1M 0x5a >/dev/null; done
"$build/vbak-cvm-sim" ctl --state-dir sim write app01 vda 512M 4M 0x33 >/dev/null
qemu-io -f qcow2 -c "write -P 0x43 64M 8M" sim/pools/h1/db01-vdb.qcow2 >/dev/null
echo "web01: 4 MiB written; app01: 4 MiB; db01: 8 MiB"

step "The second run: an incremental, reading only what changed"
t=$(now)
run "$vbak" job start nightly --follow
t_incr=$(since "$t")

step "web01 restored as a new VM on the other host, then compared with the original"
rp=$("$vbak" restore-point list --vm web01 --json | jq_py 'print(j[-1]["id"])')
t=$(now)
run "$vbak" restore vm "$rp" --name web01-restored --host 2 --yes --follow
t_restore=$(since "$t")
run "$vbak" cas vm --cvm "http://$cvm" --user admin --password-file password --vm web01-restored
qemu-img compare -U sim/pools/h1/web01-vda.qcow2 sim/pools/h2/web01-restored-vda.qcow2
echo "web01-restored: its disk is identical to web01's"

step "Summary"
runs=$("$vbak" run list --job nightly --json)
pool=$("$vbak" pool show main --json)
python3 - "$runs" "$pool" "$t_full" "$t_incr" "$t_restore" "$(since "$t_start")" <<'EOF'
import json, sys
runs = sorted(json.loads(sys.argv[1]), key=lambda r: r["id"])
pool = json.loads(sys.argv[2])
st = pool.get("stats") or {}
mib = lambda b: "%.1f MiB" % (b / 1048576)
print("VMs backed up:      %d per run, %d runs, all %s" % (runs[0]["vms"]["total"], len(runs),
      "succeeded" if all(r["status"] == "succeeded" for r in runs) else "NOT succeeded"))
print("full backup:        read %s, stored new %s, in %s" % (mib(runs[0]["bytes_read"]), mib(runs[0]["bytes_new"]), sys.argv[3]))
print("incremental:        read %s, stored new %s, in %s" % (mib(runs[-1]["bytes_read"]), mib(runs[-1]["bytes_new"]), sys.argv[4]))
print("restore of web01:   %s" % sys.argv[5])
if st:
    print("pool:               %d restore points, disks %s, data %s, unique %s, stored %s" % (
        st["restore_points"], mib(st["logical_bytes"]), mib(st["data_bytes"]), mib(st["unique_bytes"]), mib(st["stored_bytes"])))
    print("dedup ratio:        %.2f (data / unique)" % (st["data_bytes"] / max(st["unique_bytes"], 1)))
    print("compression ratio:  %.2f (unique / stored)" % (st["unique_bytes"] / max(st["stored_bytes"], 1)))
print("demo time:          %s" % sys.argv[6])
EOF
