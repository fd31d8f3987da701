#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd-run.sh -- vbakd running jobs against vbak-cvm-sim with real
# QEMU VMs and each host's real vbak-cvd:
# - a job over 12 VMs on 3 hosts with two disks each, limits job 4, host 2,
#   VM 2 disks: the runner's recorded concurrency never exceeds them, an
#   excluded title is skipped, and every restore point restores
#   byte-identical;
# - an incremental run after guest writes reads only what changed, and a VM
#   added to the host pool since is picked up;
# - faults (a snapshot that fails, a host that stops answering, a storage
#   pool nearly full): those VMs fail with their codes, the others succeed;
#   `vbak run retry --failed` after the faults are cleared brings the run to
#   all succeeded, with each VM's attempts and history; a retry while the
#   job runs, or of a deleted job, is refused;
# - kill -9 of vbakd mid-run: on restart no snapshot is left on the
#   platform, no partial restore point is in the pool, the VMs are failed
#   (E15) and a retry succeeds;
# - a precondition that fails skips the run; the pre-script runs with the
#   job's name and run id; a failing post-script fails the run (E21); a
#   VM that fails is retried after retry_interval; a retry of a VM the job
#   now excludes is refused;
# - a 1-minute hourly schedule really fires.
# test-timeout: 600
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

VBAKD=$(dirname "$VBAK")/vbakd
SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $VBAKD && -x $SIM ]] || die "vbakd or vbak-cvm-sim is not built (make all builds them)"
need_qemu
need_cmd curl
command -v python3 >/dev/null || skip "no python3"

SIMSTATE=$WORK/sim
STATE=$WORK/state
POOL=$WORK/pool
mkdir -p "$SIMSTATE"
echo 's3cret-pw' >password
export VBAK_SOCKET=$STATE/vbakd.sock

# 3 hosts of 4 VMs (two disks each; half running) in cluster c1, and a host
# with one VM in cluster c2 for the scheduled job. Addresses of their own.
python3 - >topology.json <<'EOF'
import json
hosts = []
for h in range(1, 5):
    vms = []
    for i in range(1, 5 if h < 4 else 2):
        vid = h * 10 + i
        name = "vm%d%d" % (h, i)
        vms.append({"id": vid, "name": name,
                    "title": "skip-me" if vid == 24 else "标题%d" % vid,
                    "status": "running" if i % 2 else "shutOff", "memory": 64,
                    "disks": [{"file": name + "-vda.qcow2", "format": "qcow2", "size": 8},
                              {"file": name + "-vdb.qcow2", "format": "qcow2", "size": 4}]})
    hosts.append({"id": h, "name": "cvk0%d" % h, "ip": "127.0.8%d.1" % h,
                  "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h%d" % h}],
                  "vms": vms})
print(json.dumps({"hostPools": [{"id": 1, "name": "hp", "clusters": [
    {"id": 1, "name": "c1", "hosts": hosts[:3]},
    {"id": 2, "name": "c2", "hosts": hosts[3:]}]}]}))
EOF

SIM_PID= DPID=
stop_all_here() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        return 0
}
trap stop_all_here EXIT
trap 'exit 143' TERM INT

port=$(free_port)
CVD_PORT=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
        --state-dir "$SIMSTATE" --cvd-port "$CVD_PORT" >sim.out 2>sim.err &
SIM_PID=$!
for _ in $(seq 600); do
        grep -q "listening on" sim.out 2>/dev/null && break
        kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
CVM=http://127.0.0.1:$port
ctl() { "$SIM" ctl --state-dir "$SIMSTATE" "$@" >/dev/null; }

cat >vbakd.conf <<EOF
cvd_port = $CVD_PORT
cvd_token_file = $SIMSTATE/cvd.token
EOF
start_daemon() {
        "$VBAKD" --config vbakd.conf --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
        DPID=$!
        for _ in $(seq 200); do
                "$VBAK" status >/dev/null 2>&1 && return 0
                sleep 0.05
        done
        die "vbakd did not start: $(cat vbakd.err)"
}
start_daemon

# Data on every disk (the running VMs through their guests, the others in
# their image files), so that disks take a while to read.
for h in 1 2 3 4; do
        for i in 1 2 3 4; do
                [[ $h == 4 && $i -gt 1 ]] && continue
                for d in vda:2M vdb:1M; do
                        if ((i % 2)); then
                                ctl write "vm$h$i" "${d%:*}" 0 "${d#*:}" "0x$h$i"
                        else
                                qemu-io -f qcow2 -c "write -P 0x$h$i 0 ${d#*:}" \
                                        "$SIMSTATE/pools/h$h/vm$h$i-${d%:*}.qcow2" >/dev/null
                        fi
                done
        done
done

api() { # api METHOD PATH [BODY]: the answer on stdout, the HTTP status in $WORK/status
        local m=$1 p=$2
        shift 2
        curl -s --unix-socket "$VBAK_SOCKET" -X "$m" -o api.out -w '%{http_code}' \
                ${1:+-H 'Content-Type: application/json' --data "$1"} "http://vbakd$p" >status
        cat api.out
}
py() { python3 -c "import json, sys; j = json.load(open('$1')); $2"; }

# snapshots VMID: how many snapshots the CVM lists for the VM
snapshots() {
        curl -sf --digest -u admin:s3cret-pw -H 'Accept: application/json' "$CVM/cas/casrs/vm/snapshot/$1" |
                python3 -c 'import json, sys
d = json.load(sys.stdin)
s = d.get("snapshot", [])
print(len(s if isinstance(s, list) else [s]))'
}

info "platform, pool, jobs"
expect_exit 0 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file password
expect_exit 0 "$VBAK" pool add main --path "$POOL"
api POST /v1/jobs '{"name": "main", "platform": "cas1", "pool": "main", "selection": ["cluster:c1"],
        "exclusions": ["skip-*"], "type": "incremental",
        "options": {"parallel_vms": 4, "parallel_vms_per_host": 2, "parallel_disks": 2, "streams_per_disk": 2,
                    "retries": 0}}' >/dev/null
assert_eq "$(cat status)" 201 "job main created: $(cat api.out)"
# The scheduled job: every minute, on the VM of its own cluster.
api POST /v1/jobs '{"name": "minutely", "platform": "cas1", "pool": "main", "selection": ["cluster:c2"],
        "type": "full", "schedule": "hourly every 1m"}' >/dev/null
assert_eq "$(cat status)" 201 "job minutely created: $(cat api.out)"
SCHED_FROM=$(date +%s)

info "the first run: 12 VMs, limits 4 / 2 per host / 2 disks"
"$VBAK" job start main --follow >follow1.out 2>follow1.err || die "run 1 failed: $(cat follow1.err)"
RUN1=$("$VBAK" run list --job main --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$VBAK" run show "$RUN1" --vms --json >vms1.json
assert_eq "$(py vms1.json 'print(len(j))')" 12 "run 1 has the 12 VMs of cluster c1"
assert_eq "$(py vms1.json 'print(sum(v["status"] == "succeeded" for v in j))')" 11 "11 VMs succeeded"
assert_eq "$(py vms1.json 'print([v["vm"] for v in j if v["status"] == "skipped"])')" "['vm24']" \
        "the excluded title is skipped"
line=$(grep "run $RUN1 (job main) ended" vbakd.err) || die "no end line for run $RUN1"
read -r vms host disks <<<"$(sed -E 's/.*at most ([0-9]+) VMs at once, ([0-9]+) on one host, ([0-9]+) disks.*/\1 \2 \3/' <<<"$line")"
info "recorded concurrency: $vms VMs, $host per host, $disks disks"
((vms <= 4 && host <= 2 && disks <= 2)) || die "limits exceeded: $line"
((vms >= 2 && disks == 2)) || die "the runner did not run in parallel: $line"

info "every restore point restores byte-identical"
py vms1.json 'print("\n".join(v["vm"] + " " + v["restore_point"] for v in j if v["restore_point"]))' >rps1
while read -r vm rp; do
        h=${vm:2:1}
        for d in vda vdb; do
                rm -f r.raw
                expect_exit 0 "$VBAK" pool restore "$POOL" "$rp" --disk "$d" --target r.raw
                qemu-img compare -U -f qcow2 -F raw "$SIMSTATE/pools/h$h/$vm-$d.qcow2" r.raw >cmp.out 2>&1 ||
                        die "$vm $d: restore point $rp differs: $(cat cmp.out)"
        done
done <rps1
assert_eq "$(wc -l <rps1)" 11 "11 restore points checked"
for id in 11 13 21 23 31 33; do
        assert_eq "$(snapshots $id)" 0 "no snapshot left on vm $id"
done

info "incremental after guest writes; a VM added since is picked up"
ctl write vm11 vda 1M 64k 0x11
ctl write vm11 vdb 0 4k 0x22
expect_exit 0 "$VBAK" cas restore --cvm "$CVM" --user admin --password-file password --pool "$POOL" \
        --cvd-port "$CVD_PORT" --cvd-token-file "$SIMSTATE/cvd.token" --name vmnew --host 2 \
        "$(py vms1.json 'print([v["restore_point"] for v in j if v["vm"] == "vm12"][0])')"
"$VBAK" job start main --follow >follow2.out 2>follow2.err || die "run 2 failed: $(cat follow2.err)"
RUN2=$("$VBAK" run list --job main --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$VBAK" run show "$RUN2" --vms --json >vms2.json
assert_eq "$(py vms2.json 'print(len(j))')" 13 "run 2 has 13 VMs"
assert_eq "$(py vms2.json 'print([v["status"] for v in j if v["vm"] == "vmnew"][0])')" succeeded "vmnew backed up"
read_11=$(py vms2.json 'print([v["bytes_read"] for v in j if v["vm"] == "vm11"][0])')
info "vm11 read $read_11 bytes after writing 68 KiB"
((read_11 >= 69632 && read_11 <= 1048576)) || die "vm11's incremental read $read_11 bytes"
rp=$(py vms2.json 'print([v["restore_point"] for v in j if v["vm"] == "vm11"][0])')
expect_exit 0 "$VBAK" pool list "$POOL" --vm vm11 --json
assert_eq "$(python3 -c "import json; print([m['type'] for m in json.load(open('$LAST_OUT')) if m['id'] == '$rp'][0])")" \
        incremental "vm11's second restore point is an incremental"
for d in vda vdb; do
        rm -f r.raw
        expect_exit 0 "$VBAK" pool restore "$POOL" "$rp" --disk "$d" --target r.raw
        qemu-img compare -U -f qcow2 -F raw "$SIMSTATE/pools/h1/vm11-$d.qcow2" r.raw >cmp.out 2>&1 ||
                die "vm11 $d: incremental $rp differs: $(cat cmp.out)"
done

info "faults: a snapshot fails, a host stops answering, a storage pool is nearly full"
ctl fault snapshot-fail vm11 on
ctl fault host-down cvk03 on
ctl fault pool-full cvk02 on
"$VBAK" job start main --follow >follow3.out 2>&1 && die "a run with failed VMs exited 0"
RUN3=$("$VBAK" run list --job main --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$VBAK" run show "$RUN3" --vms --json >vms3.json || true
py vms3.json 'print("\n".join("%s %s %s %s" % (v["vm"], v["status"], v["error"], v["message"]) for v in j))'
assert_eq "$(py vms3.json 'print([v["status"] for v in j if v["vm"] in ("vm12","vm13","vm14")])')" \
        "['succeeded', 'succeeded', 'succeeded']" "the VMs without faults succeed"
assert_eq "$(py vms3.json 'print([v["error"] for v in j if v["vm"] == "vm11"][0])')" refused "the failed snapshot"
assert_eq "$(py vms3.json 'print(sorted(set(v["error"] for v in j if v["vm"].startswith("vm3"))))')" "['not-found']" \
        "the host that does not answer"
assert_eq "$(py vms3.json 'print(sorted(set(v["error"] for v in j if v["vm"] in ("vm21", "vm22", "vm23", "vmnew"))))')" \
        "['no-space']" "the full storage pool"
assert_eq "$(py vms3.json 'print(sum(v["status"] == "failed" for v in j))')" 9 "9 VMs failed"

info "retry is refused while the job runs and after it is deleted"
ctl fault snapshot-fail vm11 off
ctl fault host-down cvk03 off
ctl fault pool-full cvk02 off
ctl fault task-slow vm12 on
expect_exit 0 "$VBAK" job start main
expect_exit 19 "$VBAK" run retry "$RUN3" --failed
expect_exit 0 "$VBAK" job stop main
for _ in $(seq 600); do
        [[ $("$VBAK" run list --job main --limit 1 --json | py /dev/stdin 'print(j[0]["status"])') != running ]] && break
        sleep 0.1
done
ctl fault task-slow vm12 off

info "retry --failed brings run $RUN3 to all succeeded"
expect_exit 0 "$VBAK" run retry "$RUN3" --failed --follow
"$VBAK" run show "$RUN3" --json >run3.json
assert_eq "$(py run3.json 'print(j["status"])')" succeeded "run $RUN3 succeeded after the retry"
"$VBAK" run show "$RUN3" --vms --json >vms3b.json
assert_eq "$(py vms3b.json 'print(sorted(set(v["attempts"] for v in j if v["vm"] == "vm11")))')" "[2]" \
        "vm11 has two attempts"
assert_eq "$(py vms3b.json 'print([v["history"][0]["status"] for v in j if v["vm"] == "vm11"][0])')" failed \
        "vm11's history keeps the failed attempt"
assert_eq "$(py vms3b.json 'print([v["attempts"] for v in j if v["vm"] == "vm12"][0])')" 1 \
        "a VM that succeeded was not retried"

info "kill -9 mid-run: the restart cleans up"
ctl fault task-slow vm21 on
"$VBAK" job start main --json >start4.json
RUN4=$(py start4.json 'print(j["id"])')
for _ in $(seq 600); do
        "$VBAK" run show "$RUN4" --vms --json >vms4.json
        [[ $(py vms4.json 'print([v["state"] for v in j if v["vm"] == "vm21"][0])') == snapshot ]] && break
        sleep 0.1
done
[[ $(py vms4.json 'print([v["state"] for v in j if v["vm"] == "vm21"][0])') == snapshot ]] ||
        die "vm21 never reached its snapshot step"
sleep 1 # the snapshot task is running on the platform
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
ctl fault task-slow vm21 off
sleep 11 # the slow snapshot task completes on the platform: a snapshot nobody deletes but the restart
start_daemon
for _ in $(seq 300); do
        [[ $("$VBAK" run show "$RUN4" --json | py /dev/stdin 'print(j["status"])') != running ]] && break
        sleep 0.1
done
"$VBAK" run show "$RUN4" --vms --json >vms4.json
assert_eq "$(py vms4.json 'print([v["error"] for v in j if v["vm"] == "vm21"][0])')" interrupted \
        "vm21 failed as interrupted"
grep -q "vm vm21: vbakd stopped during this VM's backup (step snapshot); snapshot vbak-[-0-9a-f]* deleted" vbakd.err ||
        die "the restart did not delete vm21's snapshot: $(grep vm21 vbakd.err | tail -3)"
for id in 11 13 21 23 31 33; do
        assert_eq "$(snapshots $id)" 0 "no snapshot left on vm $id after the restart"
done
partial=$(find "$POOL/vms" -mindepth 3 -maxdepth 3 -type d '!' -exec test -e '{}/manifest.json' ';' -print | wc -l)
assert_eq "$partial" 0 "no partial restore point in the pool"
expect_exit 0 "$VBAK" run retry "$RUN4" --failed --follow
assert_eq "$("$VBAK" run show "$RUN4" --json | py /dev/stdin 'print(j["status"])')" succeeded "the retry succeeded"

info "precondition, pre- and post-scripts, retries with an interval"
api POST /v1/jobs '{"name": "scripted", "platform": "cas1", "pool": "main", "selection": ["vm:vm12"], "type": "full",
        "options": {"precondition": "test -e '"$WORK"'/go", "pre_script": "echo $VBAK_JOB $VBAK_RUN >'"$WORK"'/pre.out",
                    "post_script": "echo post failing; exit 3", "retries": 1, "retry_interval": "3s"}}' >/dev/null
assert_eq "$(cat status)" 201 "job scripted created: $(cat api.out)"
expect_exit 0 "$VBAK" job start scripted --follow --json
assert_eq "$(tail -1 "$LAST_OUT" | py /dev/stdin 'print(j["status"], j["vms"]["total"])')" "skipped 0" \
        "a precondition that does not pass skips the run"
[[ ! -e pre.out ]] || die "the pre-script ran for a skipped run"
touch go
ctl fault snapshot-fail vm12 on
"$VBAK" job start scripted --json >start5.json
RUN5=$(py start5.json 'print(j["id"])')
for _ in $(seq 300); do
        "$VBAK" run show "$RUN5" --json >run5.json
        [[ $(py run5.json 'print((j["progress"] or {}).get("vms", [{}])[0].get("status"))') == retry-wait ]] && break
        sleep 0.1
done
ctl fault snapshot-fail vm12 off
for _ in $(seq 300); do
        "$VBAK" run show "$RUN5" --json >run5.json
        [[ $(py run5.json 'print(j["status"])') != running ]] && break
        sleep 0.1
done
assert_eq "$(cat pre.out)" "scripted $RUN5" "the pre-script ran with the job's name and run id"
assert_eq "$(py run5.json 'print(j["status"], j["error"])')" "failed script" "the post-script's failure fails the run"
assert_eq "$(py run5.json 'v = j["results"][0]; print(v["status"], v["attempts"], v["history"][0]["error_code"])')" \
        "succeeded 2 19" "vm12 succeeded at its second attempt"
api PATCH /v1/jobs/scripted '{"exclusions": ["vm1?"]}' >/dev/null
assert_eq "$(cat status)" 200 "exclusions changed"
expect_exit 19 "$VBAK" run retry "$RUN5" --vm vm12
assert_contains "$LAST_ERR" "now excluded"

info "the 1-minute schedule fired"
now=$(date +%s)
((now - SCHED_FROM < 62)) && sleep $((62 - (now - SCHED_FROM)))
for _ in $(seq 300); do
        n=$("$VBAK" run list --job minutely --json | py /dev/stdin 'print(sum(r["kind"] == "scheduled" for r in j))')
        ((n >= 1)) && break
        sleep 0.1
done
((n >= 1)) || die "the minutely job never ran: $(grep -i sched vbakd.err | tail -5)"

info "deleting the job: its runs cannot be retried"
expect_exit 0 "$VBAK" job remove main
expect_exit 19 "$VBAK" run retry "$RUN3" --vm vm11
