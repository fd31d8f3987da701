#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-libvirt.sh -- the libvirt/KVM platform through vbakd, on a private
# real libvirtd with real QEMU (TCG, no guest OS) and the host's vbak-cvd:
# - registration (vbak platform add --type libvirt --uri) and the
#   inventory: titles, uuids, states, disks, sizes, storage pools;
# - a running two-disk domain (lv1) and a shut-off one (lv2): a full run,
#   writes (HMP qemu-io into lv1's disks, qemu-io into lv2's file), an
#   incremental that reads only the dirty extents (lv1 through libvirt's
#   pull-mode backup, lv2 through vbak-cvd), lv1 destroyed and started
#   again (its checkpoints survive), lv2 started (the checkpoint made
#   offline goes on online), writes, a third run, incremental again;
# - only one vbak checkpoint per domain is left after each run, and no
#   backup job;
# - every restore point restored into a new domain whose disks compare
#   identical to the source disks at backup time; one disk restored as a
#   new disk of a running domain; a domain restored to its original path;
# - a deleted checkpoint: the next run of that domain is a full, and says why;
# - a libvirt job and a CAS job of the simulator run at once into one pool.
# test-timeout: 600
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
source "$(dirname "${BASH_SOURCE[0]}")/libvirtd.sh"

VBAKD=$(dirname "$VBAK")/vbakd
CVD=$(dirname "$VBAK")/vbak-cvd
SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $VBAKD && -x $CVD && -x $SIM ]] || die "vbakd, vbak-cvd or vbak-cvm-sim is not built (make all builds them)"
need_qemu
need_libvirtd
need_cmd curl

STATE=$WORK/state
export VBAK_SOCKET=$STATE/vbakd.sock
DPID='' CVD_PID='' SIM_PID=''
stop_all_here() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        [[ -n $CVD_PID ]] && kill "$CVD_PID" 2>/dev/null && wait "$CVD_PID" 2>/dev/null
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        stop_libvirtd
        stop_all
        return 0
}
trap stop_all_here EXIT
trap 'exit 143' TERM INT

py() { python3 -c "import json, sys; j = json.load(open('$1')); $2"; }
api() { # api METHOD PATH [BODY]: the answer in api.out and on stdout, the HTTP status in ./status
        local m=$1 p=$2
        shift 2
        curl -s --unix-socket "$VBAK_SOCKET" -X "$m" -o api.out -w '%{http_code}' \
                ${1:+-H 'Content-Type: application/json' --data "$1"} "http://vbakd$p" >status
        cat api.out
}
# same A B [WHAT]: qemu-img compare of two images (either may be in use)
same() {
        qemu-img compare -U "$1" "$2" >cmp.out 2>&1 || die "${3:-$2} differs from $1: $(cat cmp.out)"
}
# keep NAME: copies of lv1's and lv2's disks as they are now, as NAME-<file>
keep() {
        local f d
        # What a running domain wrote may still sit in its QEMU (qcow2 metadata).
        for d in lv1 lv2; do
                [[ $(lv domstate "$d") == running ]] || continue
                lv_flush "$d" 0
                [[ $d == lv1 ]] && lv_flush "$d" 1
        done
        for f in lv1-vda.qcow2 lv1-vdb.qcow2 lv2-vda.qcow2; do
                qemu-img convert -U -O qcow2 "images/$f" "copies/$1-$f"
        done
}
# checkpoints DOMAIN: its checkpoints' names, sorted, on one line
checkpoints() { lv checkpoint-list "$1" --name | sort | tr '\n' ' ' | sed 's/ $//'; }
# run_job JOB OUT: starts a run of JOB, follows it, its VMs' JSON in OUT
run_job() {
        "$VBAK" job start "$1" --follow >"$2.follow" 2>"$2.err" || die "run of $1 failed: $(cat "$2.err" "$2.follow")"
        local id
        id=$("$VBAK" run list --job "$1" --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
        "$VBAK" run show "$id" --vms --json >"$2"
}
vmv() { py "$1" "v = [v for v in j if v['vm'] == '$2'][0]; print($3)"; }

info "a private libvirtd, two storage pools, two domains"
start_libvirtd
mkdir -p images restored copies run
lv pool-define-as images dir --target "$WORK/images" >/dev/null
lv pool-start images >/dev/null
lv pool-define-as restored dir --target "$WORK/restored" >/dev/null
lv pool-start restored >/dev/null
qemu-img create -q -f qcow2 images/lv1-vda.qcow2 64M
qemu-img create -q -f qcow2 images/lv1-vdb.qcow2 32M
qemu-img create -q -f qcow2 images/lv2-vda.qcow2 48M
qemu-io -f qcow2 -c "write -P 0x11 0 3M" -c "write -P 0x12 40M 1M" images/lv1-vda.qcow2 >/dev/null
qemu-io -f qcow2 -c "write -P 0x21 1M 2M" images/lv1-vdb.qcow2 >/dev/null
qemu-io -f qcow2 -c "write -P 0x31 0 5M" images/lv2-vda.qcow2 >/dev/null
lv_domain lv1 "$WORK/images/lv1-vda.qcow2" "$WORK/images/lv1-vdb.qcow2"
lv_domain lv2 "$WORK/images/lv2-vda.qcow2"
lv start lv1 >/dev/null

info "the CAS simulator (one host, one VM), the libvirt host's disk service and vbakd"
# vbakd has one disk service port and token for every platform: the
# libvirt host's vbak-cvd listens on 127.0.0.1 at the port the simulated
# CVK host's listens on at 127.0.81.1, with the simulator's token.
mkdir -p sim
echo 's3cret-pw' >password
cat >topology.json <<'EOF'
{"hostPools": [{"id": 1, "name": "hp", "clusters": [{"id": 1, "name": "c1", "hosts": [
  {"id": 1, "name": "cvk01", "ip": "127.0.81.1",
   "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h1"}],
   "vms": [{"id": 11, "name": "casvm", "title": "casvm", "status": "shutOff", "memory": 64,
            "disks": [{"file": "casvm-vda.qcow2", "format": "qcow2", "size": 8}]}]}]}]}]}
EOF
SPORT=$(free_port)
CVD_PORT=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$SPORT" --user admin --password-file password \
        --state-dir "$WORK/sim" --cvd-port "$CVD_PORT" >sim.out 2>sim.err &
SIM_PID=$!
for _ in $(seq 600); do
        grep -q "listening on" sim.out 2>/dev/null && break
        kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
"$CVD" --listen "127.0.0.1:$CVD_PORT" --images images --images restored --token-file sim/cvd.token \
        --port-range 32100-32199 2>cvd.log &
CVD_PID=$!
for _ in $(seq 100); do
        grep -qs "listening on" cvd.log && break
        kill -0 "$CVD_PID" 2>/dev/null || die "vbak-cvd exited: $(cat cvd.log)"
        sleep 0.1
done
grep -q "listening on" cvd.log || die "vbak-cvd did not start: $(cat cvd.log)"
cat >vbakd.conf <<EOF
cvd_port = $CVD_PORT
cvd_token_file = $WORK/sim/cvd.token
runtime_dir = $WORK/run
EOF
"$VBAKD" --config vbakd.conf --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
DPID=$!
for _ in $(seq 200); do
        "$VBAK" status >/dev/null 2>&1 && break
        sleep 0.05
done
"$VBAK" status >/dev/null 2>&1 || die "vbakd did not start: $(cat vbakd.err)"

info "registration and inventory"
expect_exit 2 "$VBAK" platform add bad --type libvirt --uri /not/a/uri
expect_exit 17 "$VBAK" platform add gone --type libvirt --uri "qemu:///system?socket=$WORK/no-such-socket"
assert_contains "$LAST_ERR" "no-such-socket"
expect_exit 0 "$VBAK" platform add kvm --type libvirt --uri "$LV_URI"
"$VBAK" inventory kvm --json >inv.json || die "inventory failed"
assert_eq "$(py inv.json 'print(len(j["hosts"]))')" 1 "one host per libvirt connection"
assert_eq "$(py inv.json 'print(sorted(v["name"] for v in j["vms"]))')" "['lv1', 'lv2']" "the domains"
assert_eq "$(py inv.json 'v = [v for v in j["vms"] if v["name"] == "lv1"][0]; print(v["title"], v["state"], len(v["disks"]))')" \
        "lv1 的标题 running 2" "lv1's title, state and disks"
assert_eq "$(py inv.json 'v = [v for v in j["vms"] if v["name"] == "lv1"][0]; d = v["disks"][1]; print(d["device"], d["format"], d["size"], d["pool"])')" \
        "vdb qcow2 33554432 images" "lv1's second disk"
assert_eq "$(py inv.json 'v = [v for v in j["vms"] if v["name"] == "lv2"][0]; print(v["state"], v["uuid"] == v["id"])')" \
        "shut off True" "lv2 is shut off, its id is its uuid"
"$VBAK" inventory kvm >inv.txt || die "inventory (text) failed"
assert_contains inv.txt "lv2"

info "the first run: a full backup of a running and a shut-off domain"
expect_exit 0 "$VBAK" pool add main --path "$WORK/pool"
api POST /v1/jobs '{"name": "kvm", "platform": "kvm", "pool": "main", "selection": ["vm:lv1", "vm:lv2"],
        "type": "incremental", "options": {"parallel_vms": 2, "parallel_disks": 2, "retries": 0, "min_free_bytes": "1G"}}' >/dev/null
assert_eq "$(cat status)" 201 "job kvm created: $(cat api.out)"
run_job kvm vms1.json
keep rp1
assert_eq "$(py vms1.json 'print(sorted((v["vm"], v["status"]) for v in j))')" \
        "[('lv1', 'succeeded'), ('lv2', 'succeeded')]" "run 1"
vmv vms1.json lv1 'v["notes"]' >notes.out
assert_contains notes.out "the guest agent did not freeze" "lv1 without a guest agent"
expect_exit 0 "$VBAK" restore-point show "$(vmv vms1.json lv1 'v["restore_point"]')" --json
assert_eq "$(py "$LAST_OUT" 'print(j["consistency"])')" crash "lv1's first restore point"
cp1=$(checkpoints lv1)
[[ $cp1 == vbak-* && $cp1 != *" "* ]] || die "lv1 should have one vbak checkpoint, has '$cp1'"
lv domjobinfo lv1 >job.out 2>&1 || true
assert_contains job.out "None" "no job left on lv1"
[[ -z $(ls run) ]] || die "a backup socket was left: $(ls run)"
! compgen -G "images/*.scratch" >/dev/null || die "a scratch file was left: $(ls images)"
qemu-img info -U images/lv2-vda.qcow2 >info2.out
assert_contains info2.out "vbak-" "lv2's file has the checkpoint's bitmap"
assert_eq "$(checkpoints lv2)" "$(sed -n 's/^ *name: \(vbak-.*\)$/\1/p' info2.out)" \
        "libvirt knows lv2's offline checkpoint"

info "writes, then the second run reads only them"
lv_write lv1 0 0x41 1M 64k
lv_write lv1 0 0x42 50M 128k
lv_write lv1 1 0x43 0 4k
qemu-io -f qcow2 -c "write -P 0x44 10M 64k" images/lv2-vda.qcow2 >/dev/null
run_job kvm vms2.json
keep rp2
read1=$(vmv vms2.json lv1 'v["bytes_read"]')
read2=$(vmv vms2.json lv2 'v["bytes_read"]')
info "incremental reads: lv1 $read1 bytes (256 KiB written), lv2 $read2 bytes (64 KiB written)"
((read1 >= 262144 && read1 <= 1048576)) || die "lv1's incremental read $read1 bytes"
((read2 >= 65536 && read2 <= 1048576)) || die "lv2's incremental read $read2 bytes"
for vm in lv1 lv2; do
        rp=$(vmv vms2.json $vm 'v["restore_point"]')
        expect_exit 0 "$VBAK" restore-point show "$rp" --json
        assert_eq "$(py "$LAST_OUT" 'print(j["type"])')" incremental "$vm's second restore point"
done
cp2=$(checkpoints lv1)
[[ $cp2 == vbak-* && $cp2 != "$cp1" && $cp2 != *" "* ]] || die "lv1: the old checkpoint should be gone: '$cp2'"

info "lv1 destroyed and started again, lv2 started: the checkpoints go on"
lv destroy lv1 >/dev/null
lv start lv1 >/dev/null
lv start lv2 >/dev/null
assert_eq "$(checkpoints lv1)" "$cp2" "lv1's checkpoint survived the restart"
lv_write lv1 0 0x51 20M 64k
lv_write lv2 0 0x52 30M 64k
run_job kvm vms3.json
keep rp3
for vm in lv1 lv2; do
        assert_eq "$(vmv vms3.json $vm 'v["status"]')" succeeded "$vm in run 3"
        rp=$(vmv vms3.json $vm 'v["restore_point"]')
        expect_exit 0 "$VBAK" restore-point show "$rp" --json
        assert_eq "$(py "$LAST_OUT" 'print(j["type"])')" incremental "$vm's third restore point"
        r=$(vmv vms3.json $vm 'v["bytes_read"]')
        ((r >= 65536 && r <= 1048576)) || die "$vm's third run read $r bytes"
done

info "every restore point restores into a new domain, identical"
n=0
for i in 1 2 3; do
        for vm in lv1 lv2; do
                rp=$(vmv "vms$i.json" $vm 'v["restore_point"]')
                n=$((n + 1))
                expect_exit 0 "$VBAK" restore vm "$rp" --name "r$n-$vm" --storage-pool restored --yes --follow
                for dev in vda vdb; do
                        [[ $vm == lv2 && $dev == vdb ]] && continue
                        same "copies/rp$i-$vm-$dev.qcow2" "restored/r$n-$vm-$dev.qcow2" "r$n-$vm $dev"
                done
                lv dumpxml "r$n-$vm" >new.xml
                assert_contains new.xml "$WORK/restored/r$n-$vm-vda.qcow2" "r$n-$vm's disk"
                assert_not_contains new.xml "$(lv domuuid $vm)" "r$n-$vm has a uuid of its own"
        done
done
lv start r6-lv2 >/dev/null || die "a restored domain does not start"

info "one disk restored as a new disk of a running domain"
rp=$(vmv vms1.json lv1 'v["restore_point"]')
expect_exit 0 "$VBAK" restore disk "$rp" --disk vdb --new --vm r6-lv2 --storage-pool restored --name extra.qcow2 \
        --yes --follow
same copies/rp1-lv1-vdb.qcow2 restored/extra.qcow2 "the restored disk"
lv dumpxml r6-lv2 >r6.xml
assert_contains r6.xml "$WORK/restored/extra.qcow2" "r6-lv2's running definition"
lv dumpxml r6-lv2 --inactive >r6.xml
assert_contains r6.xml "$WORK/restored/extra.qcow2" "r6-lv2's persistent definition"

info "a deleted checkpoint makes the next backup a full, with the reason"
lv checkpoint-delete lv1 "$(checkpoints lv1)" >/dev/null
lv_write lv1 1 0x61 5M 64k
run_job kvm vms4.json
rp=$(vmv vms4.json lv1 'v["restore_point"]')
expect_exit 0 "$VBAK" restore-point show "$rp" --json
assert_eq "$(py "$LAST_OUT" 'print(j["type"])')" full "lv1 after its checkpoint was deleted"
vmv vms4.json lv1 'v["notes"]' >notes.out
assert_contains notes.out "is not on the domain" "lv1's notes"
expect_exit 0 "$VBAK" restore vm "$rp" --name r7-lv1 --storage-pool restored --yes --follow
lv destroy lv1 >/dev/null
same images/lv1-vda.qcow2 restored/r7-lv1-vda.qcow2 "r7-lv1 vda"
same images/lv1-vdb.qcow2 restored/r7-lv1-vdb.qcow2 "r7-lv1 vdb"
lv start lv1 >/dev/null

info "a libvirt job and a CAS job at once, into one pool"
qemu-io -f qcow2 -c "write -P 0x71 0 2M" "$WORK/sim/pools/h1/casvm-vda.qcow2" >/dev/null
expect_exit 0 "$VBAK" platform add cas --type cas --cvm "http://127.0.0.1:$SPORT" --user admin --password-file password
api POST /v1/jobs '{"name": "cas", "platform": "cas", "pool": "main", "selection": ["vm:casvm"], "type": "full", "options": {"min_free_bytes": "1G"}}' >/dev/null
assert_eq "$(cat status)" 201 "job cas created: $(cat api.out)"
lv_write lv1 0 0x72 7M 64k
"$VBAK" job start kvm --follow >both-kvm.out 2>&1 &
kvm_pid=$!
run_job cas vms-cas.json
wait "$kvm_pid" || die "the libvirt job failed: $(cat both-kvm.out)"
assert_eq "$(vmv vms-cas.json casvm 'v["status"]')" succeeded "the CAS VM"
keep rp5
id=$("$VBAK" run list --job kvm --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$VBAK" run show "$id" --vms --json >vms5.json
assert_eq "$(py vms5.json 'print(sorted((v["vm"], v["status"]) for v in j))')" \
        "[('lv1', 'succeeded'), ('lv2', 'succeeded')]" "the libvirt run beside the CAS one"
rp=$(vmv vms-cas.json casvm 'v["restore_point"]')
expect_exit 0 "$VBAK" pool restore "$WORK/pool" "$rp" --disk vda --target cas.raw
qemu-img compare -U -F raw "$WORK/sim/pools/h1/casvm-vda.qcow2" cas.raw >cmp.out 2>&1 ||
        die "the CAS VM's restore point differs: $(cat cmp.out)"
rp=$(vmv vms5.json lv1 'v["restore_point"]')
expect_exit 0 "$VBAK" restore vm "$rp" --name r8-lv1 --storage-pool restored --yes --follow
lv destroy lv1 >/dev/null
same copies/rp5-lv1-vda.qcow2 restored/r8-lv1-vda.qcow2 "r8-lv1 vda"
for d in lv1 lv2; do
        assert_eq "$(checkpoints $d | wc -w)" 1 "$d keeps one checkpoint"
done

info "a job's transfer rate holds for backups"
api POST /v1/jobs '{"name": "slow", "platform": "kvm", "pool": "main", "selection": ["vm:lv2"], "type": "full",
        "options": {"transfer_rate": "1MiB/s", "min_free_bytes": "1G", "retries": 0}}' >/dev/null
assert_eq "$(cat status)" 201 "job slow created: $(cat api.out)"
run_job slow vms-slow.json
read=$(vmv vms-slow.json lv2 'v["bytes_read"]')
took=$(vmv vms-slow.json lv2 'v["ended"] - v["started"]')
info "lv2 read $read bytes at 1 MiB/s in $took s"
assert_cmp -ge "$read" $((5 * MiB)) "lv2's full backup"
assert_cmp -ge "$took" $((read / MiB - 1)) "the backup kept to 1 MiB/s"

info "the original path: lv2 put back as it was at its second restore point"
lv destroy lv2 >/dev/null
rp=$(vmv vms2.json lv2 'v["restore_point"]')
expect_exit 2 "$VBAK" restore vm "$rp" --original
expect_exit 0 "$VBAK" restore vm "$rp" --original --keep-mac --yes --follow
same copies/rp2-lv2-vda.qcow2 images/lv2-vda.qcow2 "lv2 restored in place"
assert_eq "$(lv domstate lv2)" "shut off" "lv2 after its restore"
info "done"
