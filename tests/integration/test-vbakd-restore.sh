#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd-restore.sh -- restores through vbakd against vbak-cvm-sim with
# real QEMU VMs and each host's real vbak-cvd:
# - the full restore point of a two-disk VM restored as a new VM on another
#   host with new settings (storage pool, sub-directory, preallocation,
#   CPUs, cores, CPU mode, memory, NIC): its disks compare identical to the
#   disks at backup time and the CVM shows the settings;
# - the incremental restore point restored to the original path of the
#   running VM (shut down, redefined with its MAC, started): identical to
#   the disks at the incremental; refused without confirmation, by the API
#   and by the command line;
# - disk restores: to a running VM (shut down, written, restarted), to a
#   disk that was detached and deleted (re-created, attached), to a new disk
#   of another VM;
# - ten VMs restored at once with limits 4 VMs / 2 per host: the recorded
#   concurrency stays within them and every disk is identical;
# - a restore started by hand, one at a set time with a pre-script, one
#   skipped by its precondition;
# - a cut of every connection to the host mid-restore (shorter than the
#   reconnect window): the restore resumes and is identical;
# - a damaged chunk: the restore fails naming the disk and the offset, the
#   volume is reported incomplete, and no VM is defined.
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
mkdir -p "$SIMSTATE"
echo 's3cret-pw' >password
export VBAK_SOCKET=$STATE/vbakd.sock

# Host 1: app (two disks, shut off), web (two disks, running) and p1-p4;
# host 2: other, p5-p7 and a second storage pool; host 3: p8-p10.
python3 - >topology.json <<'EOF'
import json
def vm(vid, name, status="shutOff", disks=(("vda", 4),)):
    return {"id": vid, "name": name, "title": name, "status": status, "memory": 64,
            "disks": [{"file": "%s-%s.qcow2" % (name, d), "format": "qcow2", "size": s} for d, s in disks]}
hosts = [
    {"id": 1, "name": "cvk01", "ip": "127.0.81.1",
     "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h1"}],
     "vms": [vm(11, "app", disks=(("vda", 16), ("vdb", 8))), vm(12, "web", "running", (("vda", 8), ("vdb", 4)))]
            + [vm(30 + i, "p%d" % i) for i in range(1, 5)]},
    {"id": 2, "name": "cvk02", "ip": "127.0.82.1",
     "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h2"},
                      {"name": "fast", "type": "dir", "path": "pools/h2fast"}],
     "vms": [vm(21, "other")] + [vm(30 + i, "p%d" % i) for i in range(5, 8)]},
    {"id": 3, "name": "cvk03", "ip": "127.0.83.1",
     "storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h3"}],
     "vms": [vm(30 + i, "p%d" % i) for i in range(8, 11)]},
]
print(json.dumps({"hostPools": [{"id": 1, "name": "hp", "clusters": [{"id": 1, "name": "c1", "hosts": hosts}]}]}))
EOF

SIM_PID='' DPID=''
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
cas() { "$VBAK" cas "$@" --cvm "$CVM" --user admin --password-file password; }
# casapi METHOD PATH [JSON]: the CVM's REST API
casapi() {
        curl -sf --digest -u admin:s3cret-pw -H 'Accept: application/json' -X "$1" \
                ${3:+-H 'Content-Type: application/json' --data "$3"} "$CVM/cas/casrs/$2"
}

cat >vbakd.conf <<EOF
cvd_port = $CVD_PORT
cvd_token_file = $SIMSTATE/cvd.token
EOF
"$VBAKD" --config vbakd.conf --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
DPID=$!
for _ in $(seq 200); do
        "$VBAK" status >/dev/null 2>&1 && break
        sleep 0.05
done
"$VBAK" status >/dev/null 2>&1 || die "vbakd did not start: $(cat vbakd.err)"

api() { # api METHOD PATH [BODY]: the answer in api.out and on stdout, the HTTP status in ./status
        local m=$1 p=$2
        shift 2
        curl -s --unix-socket "$VBAK_SOCKET" -X "$m" -o api.out -w '%{http_code}' \
                ${1:+-H 'Content-Type: application/json' --data "$1"} "http://vbakd$p" >status
        cat api.out
}
py() { python3 -c "import json, sys; j = json.load(open('$1')); $2"; }
img() { echo "$SIMSTATE/pools/h$1/$2"; }
# same A B [WHAT]: qemu-img compare of two images (either may be in use)
same() {
        qemu-img compare -U "$1" "$2" >cmp.out 2>&1 || die "${3:-$2} differs from $1: $(cat cmp.out)"
}
# restore BODY: creates a confirmed restore, waits for its end; its record in restore.json
restore() {
        api POST /v1/restores "$1" >/dev/null
        assert_eq "$(cat status)" 201 "restore created: $(cat api.out)"
        local id
        id=$(py api.out 'print(j["id"])')
        for _ in $(seq 1200); do
                api GET "/v1/restores/$id" >restore.json
                case $(py restore.json 'print(j["status"])') in
                waiting | running) sleep 0.1 ;;
                *) return 0 ;;
                esac
        done
        die "restore $id did not end: $(cat restore.json)"
}
item() { py restore.json "it = j['items'][${2:-0}]; print($1)"; }
vm_json() { cas vm --vm "$1" --json >"$2" 2>vm.err || die "vm $1: $(cat vm.err)"; }

# Data on every disk: the shut-off VMs in their files, web through its guest.
qio() { qemu-io -f qcow2 -c "write -P $3 $4 $5" "$(img "$1" "$2")" >/dev/null; }
qio 1 app-vda.qcow2 0x11 0 3M
qio 1 app-vda.qcow2 0x12 9M 1M
qio 1 app-vdb.qcow2 0x13 1M 2M
ctl write web vda 0 2M 0x21
ctl write web vdb 512k 1M 0x22
for i in $(seq 1 10); do
        h=$((i <= 4 ? 1 : i <= 7 ? 2 : 3))
        qio $h "p$i-vda.qcow2" "0x$((40 + i))" $((i * 64))k 2M
done

info "backups: a full of every VM, then an incremental of app after writes"
expect_exit 0 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file password
expect_exit 0 "$VBAK" pool add main --path "$WORK/pool"
api POST /v1/jobs '{"name": "all", "platform": "cas1", "pool": "main", "selection": ["cluster:c1"],
        "type": "incremental", "options": {"parallel_vms": 4, "retries": 0}}' >/dev/null
assert_eq "$(cat status)" 201 "job created: $(cat api.out)"
"$VBAK" job start all --follow >follow1.out 2>follow1.err || die "the full run failed: $(cat follow1.err)"
mkdir -p at
for d in vda vdb; do
        cp "$(img 1 "app-$d.qcow2")" "at/app-full-$d.qcow2"
        qemu-img convert -U -O qcow2 "$(img 1 "web-$d.qcow2")" "at/web-full-$d.qcow2"
done
rp_of() { # rp_of VM [N]: the VM's Nth newest restore point (1: the newest)
        "$VBAK" restore-point list --vm "$1" --json | python3 -c "import json, sys; print(json.load(sys.stdin)[-${2:-1}]['id'])"
}
APP_FULL=$(rp_of app)
WEB_FULL=$(rp_of web)
qio 1 app-vda.qcow2 0x31 5M 1M
qio 1 app-vdb.qcow2 0x32 0 64k
api POST /v1/jobs '{"name": "app", "platform": "cas1", "pool": "main", "selection": ["vm:app"],
        "type": "incremental"}' >/dev/null
"$VBAK" job start app --follow >follow2.out 2>follow2.err || die "the app run failed: $(cat follow2.err)"
APP_INCR=$(rp_of app)
[[ $APP_INCR != "$APP_FULL" ]] || die "no new restore point of app"
for d in vda vdb; do cp "$(img 1 "app-$d.qcow2")" "at/app-incr-$d.qcow2"; done
# Changes after the last backup, which restores to the original path undo.
qio 1 app-vda.qcow2 0x77 0 1M
qio 1 app-vdb.qcow2 0x77 0 1M

info "the full restore point as a new VM on another host, with new settings"
restore '{"items": [{"restore_point": "'"$APP_FULL"'", "pool": "main", "name": "app-new"}], "path": "new",
        "host": "2", "storage_pool": "fast", "subdir": "restored", "preallocation": "eager",
        "cpu_sockets": 2, "cpu_cores": 2, "cpu_mode": "host-match", "memory_mb": 256,
        "nics": [{"vswitch": "vswitch0"}], "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "new-path restore: $(item 'it["message"]')"
for d in vda vdb; do
        same "at/app-full-$d.qcow2" "$SIMSTATE/pools/h2fast/restored/app-new-$d.qcow2" "app-new's $d"
done
vm_json app-new new.json
assert_eq "$(py new.json 'print(j["hostId"], j["cpuSockets"], j["cpuCores"], j["memoryMB"], j["state"])')" \
        "2 2 2 256 shut off" "app-new's host, CPUs, cores, memory, state"
assert_eq "$(py new.json 'print(j["config"]["cpu"]["cpuMode"])')" host-model "app-new's CPU mode"
assert_eq "$(py new.json 'print(j["nics"][0]["vswitch"])')" vswitch0 "app-new's NIC"
# Eager-zeroed: every byte of the new volume is allocated.
alloc=$(du -k --apparent-size "$SIMSTATE/pools/h2fast/restored/app-new-vdb.qcow2" | cut -f1)
used=$(du -k "$SIMSTATE/pools/h2fast/restored/app-new-vdb.qcow2" | cut -f1)
((used >= 8192)) || die "app-new's vdb is not preallocated: $used KiB used of $alloc"

info "the original path: refused without confirmation"
expect_exit 0 cas power --vm app start
api POST /v1/restores '{"items": [{"restore_point": "'"$APP_INCR"'"}], "path": "original", "keep_mac": true}' >/dev/null
assert_eq "$(cat status)" 400 "no confirmation: $(cat api.out)"
assert_eq "$(py api.out 'print(j["error"]["field"] if "error" in j else j["field"])')" confirm "the field named"
expect_exit 2 "$VBAK" restore vm "$APP_INCR" --original </dev/null
api POST /v1/restores/plan '{"items": [{"restore_point": "'"$APP_INCR"'"}], "path": "original"}' >/dev/null
assert_eq "$(cat status)" 200 "plan: $(cat api.out)"
assert_eq "$(py api.out 'print(j["plan"]["overwrites"])')" True "the plan says it overwrites"
assert_contains api.out "shut down vm app"
rc=0
qemu-img compare -U at/app-incr-vda.qcow2 "$(img 1 app-vda.qcow2)" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 1 "app's disk still differs from the incremental (nothing restored without confirmation)"

info "the incremental restore point to the original path of the running VM"
vm_json app before.json
restore '{"items": [{"restore_point": "'"$APP_INCR"'"}], "path": "original", "keep_mac": true,
        "power_on": true, "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "original-path restore: $(item 'it["message"]')"
for d in vda vdb; do same "at/app-incr-$d.qcow2" "$(img 1 "app-$d.qcow2")" "app's $d"; done
vm_json app after.json
assert_eq "$(py after.json 'print(j["state"], j["hostId"], len(j["disks"]))')" "running 1 2" "app after"
assert_eq "$(py after.json 'print(j["nics"][0]["mac"])')" "$(py before.json 'print(j["nics"][0]["mac"])')" \
        "app keeps its MAC"

info "disk restores: a running VM's disk, a deleted disk, a new disk of another VM"
ctl write web vdb 0 512k 0x99
restore '{"kind": "disk", "items": [{"restore_point": "'"$WEB_FULL"'"}], "path": "original", "disk": "vdb",
        "restart": true, "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "disk restore to the running VM: $(item 'it["message"]')"
same at/web-full-vdb.qcow2 "$(img 1 web-vdb.qcow2)" "web's vdb"
vm_json web web.json
assert_eq "$(py web.json 'print(j["state"])')" running "web restarted"
# vdb detached and its file deleted: re-created and attached.
expect_exit 0 cas power --vm web off
casapi PUT vm/delDevice '{"domain": {"id": 12, "storage": {"deviceName": "vdb"}}}' >/dev/null
for _ in $(seq 100); do
        vm_json web web.json
        [[ $(py web.json 'print(len(j["disks"]))') == 1 ]] && break
        sleep 0.1
done
assert_eq "$(py web.json 'print(len(j["disks"]))')" 1 "vdb detached"
casapi DELETE storage/volume/delete/1/defaultpool/web-vdb.qcow2 >/dev/null
[[ ! -e $(img 1 web-vdb.qcow2) ]] || die "web-vdb.qcow2 not deleted"
restore '{"kind": "disk", "items": [{"restore_point": "'"$WEB_FULL"'"}], "path": "original", "disk": "vdb",
        "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "disk restore of a deleted disk: $(item 'it["message"]')"
same at/web-full-vdb.qcow2 "$(img 1 web-vdb.qcow2)" "web's re-created vdb"
vm_json web web.json
assert_eq "$(py web.json 'print(len(j["disks"]), j["state"])')" "2 shut off" "vdb attached again"
# A new disk of another VM, on another host.
restore '{"kind": "disk", "items": [{"restore_point": "'"$APP_FULL"'", "name": "from-app.qcow2"}], "path": "new", "disk": "vda",
        "target_vm": "other", "storage_pool": "defaultpool", "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "disk restore to a new disk: $(item 'it["message"]')"
same at/app-full-vda.qcow2 "$(img 2 from-app.qcow2)" "other's new disk"
vm_json other other.json
assert_eq "$(py other.json 'print(sorted(d["path"] for d in j["disks"])[0].endswith("from-app.qcow2"))')" True \
        "the new disk is attached to other"

info "ten VMs at once, limits 4 VMs / 2 per host, through the command line"
rps=()
for i in $(seq 1 10); do rps+=("$(rp_of "p$i")"); done
"$VBAK" restore vm "${rps[@]}" --suffix -r --set parallel_vms=4 --set parallel_vms_per_host=2 --yes \
        --follow >ten.out 2>ten.err || die "the restore of ten VMs failed: $(cat ten.err)"
for i in $(seq 1 10); do
        h=$((i <= 4 ? 1 : i <= 7 ? 2 : 3))
        same "$(img $h "p$i-vda.qcow2")" "$(img $h "p$i-r-vda.qcow2")" "p$i-r's vda"
done
line=$(grep -E "restore [0-9]+ .*ended" vbakd.err | tail -n 1) || die "no end line for the restore"
read -r vms host <<<"$(sed -E 's/.*at most ([0-9]+) VMs at once, ([0-9]+) on one host.*/\1 \2/' <<<"$line")"
info "recorded concurrency: $vms VMs, $host per host"
((vms <= 4 && host <= 2)) || die "limits exceeded: $line"
((vms >= 2)) || die "the restore did not run in parallel: $line"

info "schedules and scripts: by hand, at a set time, a precondition, a pre-script"
"$VBAK" restore vm "$(rp_of p3)" --name p3-m --manual --yes --json >manual.json 2>manual.err ||
        die "manual restore: $(cat manual.err)"
mid=$(py manual.json 'print(j["id"])')
api GET "/v1/restores/$mid" >restore.json
assert_eq "$(py restore.json 'print(j["status"])')" waiting "a manual restore waits"
"$VBAK" restore start "$mid" --follow >start.out 2>start.err || die "restore start: $(cat start.err)"
api GET "/v1/restores/$mid" >restore.json
assert_eq "$(item 'it["status"]')" succeeded "the manual restore, started"
same "$(img 1 p3-vda.qcow2)" "$(img 1 p3-m-vda.qcow2)" "p3-m's vda"
at=$(($(date +%s) + 2))
restore '{"items": [{"restore_point": "'"$(rp_of p4)"'", "name": "p4-at"}], "schedule": {"once": '"$at"'},
        "options": {"pre_script": "echo \"$VBAK_RESTORE\" >'"$WORK"'/pre.out"}, "confirm": true}'
assert_eq "$(item 'it["status"]')" succeeded "the restore at a set time"
(($(py restore.json 'print(j["started"])') >= at)) || die "the restore started before its time"
assert_eq "$(cat pre.out)" "$(py restore.json 'print(j["id"])')" "the pre-script got the restore's id"
restore '{"items": [{"restore_point": "'"$(rp_of p4)"'", "name": "p4-never"}],
        "options": {"precondition": "false"}, "confirm": true}'
assert_eq "$(py restore.json 'print(j["status"])')" skipped "a precondition that fails skips the restore"
expect_exit 3 cas vm --vm p4-never

info "a cut of every connection to the host mid-restore resumes"
restore_cut() {
        api POST /v1/restores '{"items": [{"restore_point": "'"$(rp_of p2)"'", "name": "p2-cut"}],
                "options": {"disk_write_rate": "512KiB/s", "reconnect_window": "1m"}, "confirm": true}' >/dev/null
        assert_eq "$(cat status)" 201 "restore created: $(cat api.out)"
}
restore_cut
id=$(py api.out 'print(j["id"])')
sleep 1.5
ss -K dst 127.0.81.1 >/dev/null 2>&1 || die "ss -K failed"
for _ in $(seq 600); do
        api GET "/v1/restores/$id" >restore.json
        [[ $(py restore.json 'print(j["status"])') == running ]] || break
        sleep 0.1
done
assert_eq "$(item 'it["status"]')" succeeded "the cut restore: $(item 'it["message"]')"
same "$(img 1 p2-vda.qcow2)" "$(img 1 p2-cut-vda.qcow2)" "p2-cut's vda"
grep -q "reconnect" vbakd.err || die "vbakd logged no reconnect"

info "a damaged chunk stops the restore, naming the disk and the offset"
expect_exit 0 "$VBAK" pool add bad --path "$WORK/bad"
api POST /v1/jobs '{"name": "bad", "platform": "cas1", "pool": "bad", "selection": ["vm:p1"], "type": "full"}' >/dev/null
"$VBAK" job start bad --follow >follow3.out 2>follow3.err || die "the bad run failed: $(cat follow3.err)"
chunk=$(find "$WORK/bad/chunks" -type f -printf '%s %p\n' | sort -n | tail -n1 | cut -d' ' -f2)
printf '\xff\xfe\xfd\xfc' | dd of="$chunk" bs=1 seek=$(($(stat -c %s "$chunk") / 2)) conv=notrunc status=none
restore '{"items": [{"restore_point": "'"$(rp_of p1)"'", "pool": "bad", "name": "p1-bad"}], "confirm": true}'
assert_eq "$(item 'it["status"], it["error_code"]')" "failed 5" "the damaged restore: $(item 'it["message"]')"
assert_contains <(item 'it["message"]') "disk vda, offset"
assert_contains <(item 'it["incomplete"]') "p1-bad-vda.qcow2"
expect_exit 3 cas vm --vm p1-bad

info "nothing left running"
api GET "/v1/restores?status=running,waiting" >/dev/null
assert_eq "$(py api.out 'print(len(j))')" 0 "no restore running"
