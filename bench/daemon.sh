#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/daemon.sh -- the daemon part of `make bench`: one vbakd job run over
# 16 VMs of the CAS simulator (real QEMU VMs, each host's real vbak-cvd),
# and how fast vbakd's control API answers while the run goes.
#
#   topology  4 hosts of 4 VMs, one VM of each host running (QEMU, TCG), the
#             others shut off so that the CPU goes to the backup; every VM
#             has two qcow2 disks, vda (128 MiB, 64 MiB of data) and vdb
#             (64 MiB, 32 MiB of data), written before the simulator starts
#   data      per 1 MiB-aligned region, so that the pool's 1 MiB chunks see
#             what real VMs give them: vda 0-16 MiB random and 16-32
#             MiB text the same in every VM (the system a template gives all
#             its clones), 32-48 MiB random and 48-64 MiB text of the VM's
#             own; vdb 0-16 MiB text, 16-24 MiB random, then one 1 MiB text
#             block written 8 times. "random" is /dev/urandom
#             (incompressible), "text" random bytes mapped onto 16 letters
#             and blanks (zstd halves it). 1536 MiB to read, 944 MiB unique.
#   job       full, parallel_vms 8, parallel_vms_per_host 2, parallel_disks 2,
#             retries 0, into a fresh dedup pool with default options
#   API       from the start request to the end of the run, one curl after
#             another, each asking GET /v1/version, GET /v1/runs/ID/progress
#             and GET /v1/runs?limit=5 on one connection; each request's
#             time_total is a sample. Before the run, 100 rounds of the first
#             and the last on the idle daemon give the baseline.
#
# Usage: bench/daemon.sh BUILD_DIR [STORE_DIR]
#   BUILD_DIR  holds vbak, vbakd, vbak-cvm-sim and vbak-cvd (make all)
#   STORE_DIR  where the pool goes (bench/run.sh passes its scratch file
#              system); default the work dir
# Environment: VBAK_BENCH_DATA (default /var/tmp/vbak-bench): the work dir is
# $VBAK_BENCH_DATA/run/daemon, emptied at the start; VBAK_BENCH_STRICT=1:
# exit 3 when the latency target does not hold.
# Output: the results on stdout, progress on stderr, the same as JSON in
# WORK/result.json; logs (simulator, vbakd, the samples) stay in WORK, the
# images and the pool are deleted at the end. Exit 77 when QEMU or curl is
# missing. Needs no network and no python.
set -euo pipefail

BUILD=${1:?usage: bench/daemon.sh BUILD_DIR [STORE_DIR]}
BUILD=$(cd "$BUILD" && pwd)
DATA=${VBAK_BENCH_DATA:-/var/tmp/vbak-bench}
WORK=$DATA/run/daemon
STORE=${2:-$WORK}
STRICT=${VBAK_BENCH_STRICT:-0}
POOL=$STORE/vbak-daemon-pool
SIM=$WORK/sim
STATE=$WORK/state
SOCK=$STATE/vbakd.sock
MiB=1048576

HOSTS=4
VMS_PER_HOST=4
VDA_SIZE=128 # MiB, virtual
VDB_SIZE=64
DATA_PER_VM=$((64 + 32)) # MiB written into the two disks
PARALLEL_VMS=8
PARALLEL_PER_HOST=2
PARALLEL_DISKS=2
P99_TARGET_MS=50
RUN_TIMEOUT=240 # seconds: a run that takes longer is stopped and the bench fails
IDLE_ROUNDS=100

log() { printf '[bench daemon] %s\n' "$*" >&2; }
die() {
        printf '\n[bench daemon] ERROR: %s\n\n' "$*" >&2
        exit 1
}
skip() {
        printf '[bench daemon] skipped: %s\n' "$*" >&2
        exit 77
}

for b in vbak vbakd vbak-cvm-sim vbak-cvd; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b not found: build it first (make all)"
done
VBAK=$BUILD/vbak
for c in qemu-system-x86_64 qemu-img qemu-io curl; do
        command -v "$c" >/dev/null 2>&1 || skip "missing command: $c (run scripts/deps.sh)"
done
for c in awk sort tr head; do
        command -v "$c" >/dev/null 2>&1 || die "missing command: $c"
done

# ------------------------------------------------------------------ helpers

# The first value of a key in a JSON file (no jq or python needed).
jnum() {
        grep -o "\"$1\"[[:space:]]*:[[:space:]]*-\{0,1\}[0-9][0-9.eE+-]*" "$2" | head -n 1 |
                sed 's/.*:[[:space:]]*//' || true
}
jstr() {
        grep -o "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" "$2" | head -n 1 |
                sed 's/.*:[[:space:]]*"//; s/"$//' || true
}
need() { # need VALUE WHAT: stops when a value could not be read
        [ -n "$1" ] || die "could not read $2"
        echo "$1"
}
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
mib() { calc "$1 / $MiB" "${2:-1}"; }
now_ns() { date +%s%N; }
# cpu_ticks STAT_FILE: utime + stime of a /proc/PID/stat or task stat file
cpu_ticks() {
        local f
        read -r -a f <<<"$(sed 's/^.*) //' "$1")"
        echo $((f[11] + f[12]))
}

# pct FILE P: the P-th percentile (nearest rank) of the seconds in FILE, in ms
pct() {
        sort -g "$1" | awk -v p="$2" '{ a[NR] = $1 }
                END { if (!NR) { print "n/a"; exit }
                      i = int((p * NR + 99) / 100); if (i < 1) i = 1; if (i > NR) i = NR
                      printf "%.1f", a[i] * 1000 }'
}

# port_free PORT [ADDR]: nothing accepts connections there now
port_free() { ! (: <>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# free_port: a port of 20000-59999 free on 127.0.0.1 and on every host's
# address (a vbak-cvd listens there)
free_port() {
        local p h ok
        while :; do
                p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
                ok=1
                port_free "$p" || ok=0
                for ((h = 1; h <= HOSTS; h++)); do
                        port_free "$p" "$(host_ip "$h")" || ok=0
                done
                [ "$ok" = 0 ] || break
        done
        echo "$p"
}

# Hosts listen on addresses of their own (Linux routes all of 127/8 to lo),
# apart from the ones the integration tests use.
host_ip() { echo "127.0.16$1.1"; }

# ------------------------------------------------------------------ cleanup

SIM_PID='' DPID=''
stop_all() {
        if [ -n "$DPID" ]; then
                kill "$DPID" 2>/dev/null || true
                wait "$DPID" 2>/dev/null || true
                DPID=
        fi
        # SIGTERM: the simulator stops its QEMUs (QMP quit) and vbak-cvds.
        if [ -n "$SIM_PID" ]; then
                kill "$SIM_PID" 2>/dev/null || true
                wait "$SIM_PID" 2>/dev/null || true
                SIM_PID=
        fi
}
trap stop_all EXIT
trap 'exit 143' TERM INT

# ------------------------------------------------------------------ the images

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$WORK"
[ "$STORE" = "$WORK" ] || rm -rf "$POOL"
mkdir -p "$WORK/gen" "$SIM" "$STATE"
cd "$WORK"

# 256 bytes: every byte value maps onto one of 16 letters and blanks, about
# 4 bits of entropy a byte, as far from random as ordinary text and logs.
TEXT_MAP=$(for _ in $(seq 16); do printf 'etaoin shrdlu cm'; done)
random_file() { head -c "$(($2 * MiB))" /dev/urandom >"$1"; }
text_file() { head -c "$(($2 * MiB))" /dev/urandom | tr '\000-\377' "$TEXT_MAP" >"$1"; }

vm_name() { echo "vm$1$2"; }
running() { [ "$2" = 1 ]; } # running HOST I: the first VM of each host runs

log "writing $((HOSTS * VMS_PER_HOST)) VMs x 2 qcow2 disks ($DATA_PER_VM MiB of data a VM) into $SIM/pools"
G=$WORK/gen
random_file "$G/shared-random" 16
text_file "$G/shared-text" 16
for ((h = 1; h <= HOSTS; h++)); do
        dir=$SIM/pools/h$h
        mkdir -p "$dir"
        # The simulator's mark of a pool folder it made: it then reports the
        # topology's capacity (2 TiB) rather than this file system's free space.
        : >"$dir/.vbak-sim-pool"
        for ((i = 1; i <= VMS_PER_HOST; i++)); do
                vm=$(vm_name "$h" "$i")
                random_file "$G/random" 16
                text_file "$G/text" 16
                qemu-img create -q -f qcow2 "$dir/$vm-vda.qcow2" "${VDA_SIZE}M"
                qemu-io -f qcow2 -c "write -q -s $G/shared-random 0 16M" -c "write -q -s $G/shared-text 16M 16M" \
                        -c "write -q -s $G/random 32M 16M" -c "write -q -s $G/text 48M 16M" "$dir/$vm-vda.qcow2"
                random_file "$G/random" 8
                text_file "$G/text" 16
                text_file "$G/block" 1
                qemu-img create -q -f qcow2 "$dir/$vm-vdb.qcow2" "${VDB_SIZE}M"
                args=(-c "write -q -s $G/text 0 16M" -c "write -q -s $G/random 16M 8M")
                for ((k = 24; k < 32; k++)); do
                        args+=(-c "write -q -s $G/block ${k}M 1M")
                done
                qemu-io -f qcow2 "${args[@]}" "$dir/$vm-vdb.qcow2"
        done
done
rm -rf "$G"
log "images written in $(($(date +%s) - START)) s"

# One host pool, one cluster, HOSTS hosts.
{
        printf '{"hostPools": [{"id": 1, "name": "hp", "clusters": [{"id": 1, "name": "c1", "hosts": ['
        for ((h = 1; h <= HOSTS; h++)); do
                [ "$h" = 1 ] || printf ','
                printf '\n  {"id": %d, "name": "cvk0%d", "ip": "%s", ' "$h" "$h" "$(host_ip "$h")"
                printf '"storagePools": [{"name": "defaultpool", "type": "dir", "path": "pools/h%d"}], "vms": [' "$h"
                for ((i = 1; i <= VMS_PER_HOST; i++)); do
                        vm=$(vm_name "$h" "$i")
                        status=shutOff
                        if running "$h" "$i"; then status=running; fi
                        [ "$i" = 1 ] || printf ','
                        printf '\n    {"id": %d, "name": "%s", "title": "bench-%s", "status": "%s", "memory": 64, ' \
                                "$((h * 10 + i))" "$vm" "$vm" "$status"
                        printf '"disks": [{"file": "%s-vda.qcow2", "format": "qcow2", "size": %d}, ' "$vm" "$VDA_SIZE"
                        printf '{"file": "%s-vdb.qcow2", "format": "qcow2", "size": %d}]}' "$vm" "$VDB_SIZE"
                done
                printf ']}'
        done
        printf ']}]}]}\n'
} >topology.json

# ------------------------------------------------------------------ simulator and vbakd

head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >cvm-password
chmod 600 cvm-password
sim_start() {
        local tries
        HTTP_PORT=$(free_port)
        CVD_PORT=$(free_port)
        "$BUILD/vbak-cvm-sim" serve --topology topology.json --http "127.0.0.1:$HTTP_PORT" --user admin \
                --password-file cvm-password --state-dir "$SIM" --cvd-port "$CVD_PORT" >sim.out 2>sim.err &
        SIM_PID=$!
        for ((tries = 0; tries < 1200; tries++)); do
                grep -q "listening on" sim.out 2>/dev/null && return 0
                kill -0 "$SIM_PID" 2>/dev/null || break
                sleep 0.05
        done
        stop_all
        return 1
}
log "starting the simulator ($HOSTS hosts, $HOSTS VMs running) and vbakd"
# A port taken between the check and the listen (another test) stops the
# start: try other ports.
sim_start || sim_start || die "the simulator did not start: $(tail -n 5 sim.err)"

cat >vbakd.conf <<EOF
cvd_port = $CVD_PORT
cvd_token_file = $SIM/cvd.token
EOF
export VBAK_SOCKET=$SOCK
"$BUILD/vbakd" --config vbakd.conf --state-dir "$STATE" >vbakd.out 2>vbakd.err &
DPID=$!
for _ in $(seq 200); do
        "$VBAK" status >/dev/null 2>&1 && break
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.05
done
"$VBAK" status >/dev/null 2>&1 || die "vbakd did not start: $(tail -n 5 vbakd.err)"

"$VBAK" platform add cas1 --type cas --cvm "http://127.0.0.1:$HTTP_PORT" --user admin \
        --password-file cvm-password >platform.out 2>&1 || die "vbak platform add failed: $(cat platform.out)"
"$VBAK" pool add bench --path "$POOL" >pool.out 2>&1 || die "vbak pool add failed: $(cat pool.out)"

# api METHOD PATH [BODY]: the answer in api.out, the HTTP status on stdout
api() {
        local m=$1 p=$2
        shift 2
        curl -s --unix-socket "$SOCK" -X "$m" -o api.out -w '%{http_code}' \
                ${1:+-H 'Content-Type: application/json' --data "$1"} "http://vbakd$p" || true
}
code=$(api POST /v1/jobs "{\"name\": \"bench\", \"platform\": \"cas1\", \"pool\": \"bench\",
        \"selection\": [\"hostpool:hp\"], \"type\": \"full\",
        \"options\": {\"parallel_vms\": $PARALLEL_VMS, \"parallel_vms_per_host\": $PARALLEL_PER_HOST,
                      \"parallel_disks\": $PARALLEL_DISKS, \"retries\": 0}}")
[ "$code" = 201 ] || die "creating the job: HTTP $code: $(cat api.out)"

# ------------------------------------------------------------------ latency

URL=http://vbakd
FORMAT='%{url_effective} %{http_code} %{time_total} %{time_connect} %{time_starttransfer}\n'
# requests OUT PROGRESS_OUT URL...: one curl, one connection, each URL in
# turn; appends "URL HTTP_CODE TOTAL CONNECT FIRST_BYTE" (seconds) per
# request to OUT. The progress answer goes to PROGRESS_OUT, the others
# nowhere.
requests() {
        local out=$1 prog=$2 u args=()
        shift 2
        for u; do
                if [[ $u == */progress ]]; then args+=(-o "$prog" "$u"); else args+=(-o /dev/null "$u"); fi
        done
        curl -s --unix-socket "$SOCK" -w "$FORMAT" "${args[@]}" >>"$out" || true
}

log "API latency on the idle daemon ($IDLE_ROUNDS rounds)"
: >idle.samples
for ((n = 0; n < IDLE_ROUNDS; n++)); do
        requests idle.samples /dev/null "$URL/v1/version" "$URL/v1/runs?limit=5"
done

log "starting the run: full, parallel_vms $PARALLEL_VMS, per host $PARALLEL_PER_HOST, disks $PARALLEL_DISKS"
# vbakd's CPU time, all threads and the main thread (the libuv loop, which
# answers the API), so that a slow answer can be told apart from a busy loop.
CPU0=$(cpu_ticks "/proc/$DPID/stat") LOOP0=$(cpu_ticks "/proc/$DPID/task/$DPID/stat")
T0=$(now_ns)
code=$(api POST /v1/jobs/bench/start)
[ "$code" = 201 ] || die "starting the job: HTTP $code: $(cat api.out)"
RUN_ID=$(need "$(jnum id api.out)" "the run's id in $(cat api.out)")
: >run.samples
rounds=0
while :; do
        requests run.samples progress.json "$URL/v1/version" "$URL/v1/runs/$RUN_ID/progress" "$URL/v1/runs?limit=5"
        rounds=$((rounds + 1))
        # While the run goes, its progress carries a generation; once it
        # ended, the answer is the run itself.
        if ! grep -q '"generation"' progress.json 2>/dev/null; then
                st=$(jstr status progress.json)
                case $st in
                waiting | running | "") ;;
                *) break ;;
                esac
        fi
        if (($(now_ns) - T0 > RUN_TIMEOUT * 1000000000)); then
                api POST /v1/jobs/bench/stop >/dev/null
                die "the run did not end within $RUN_TIMEOUT s (logs in $WORK)"
        fi
done
T1=$(now_ns)
LOAD_RUN=$(cut -d' ' -f1-3 /proc/loadavg)
CPU1=$(cpu_ticks "/proc/$DPID/stat") LOOP1=$(cpu_ticks "/proc/$DPID/task/$DPID/stat")
WALL=$(calc "($T1 - $T0) / 1e9")
HZ=$(getconf CLK_TCK)
CPU_SEC=$(calc "($CPU1 - $CPU0) / $HZ" 1)
LOOP_SEC=$(calc "($LOOP1 - $LOOP0) / $HZ" 1)
LOOP_PCT=$(calc "100 * $LOOP_SEC / $WALL" 0)
log "run $RUN_ID ended after $WALL s ($rounds rounds of requests)"

# ------------------------------------------------------------------ results

"$VBAK" run show "$RUN_ID" --json >run.json 2>run.err || die "vbak run show failed: $(cat run.err)"
"$VBAK" run show "$RUN_ID" --vms --json >vms.json 2>run.err || die "vbak run show --vms failed: $(cat run.err)"
RUN_STATUS=$(jstr status run.json)
VMS_TOTAL=$(need "$(jnum total run.json)" "the run's VM count in run.json")
VMS_OK=$(need "$(jnum succeeded run.json)" "the run's succeeded count in run.json")
BYTES_READ=$(need "$(jnum bytes_read run.json)" "bytes_read in run.json")
BYTES_NEW=$(need "$(jnum bytes_new run.json)" "bytes_new in run.json")
STARTED=$(need "$(jnum started run.json)" "started in run.json")
ENDED=$(need "$(jnum ended run.json)" "ended in run.json")
# Each VM's bytes_read, added up: the run's own number must be their sum.
VMS_READ=$(grep -o '"bytes_read"[[:space:]]*:[[:space:]]*[0-9]*' vms.json | sed 's/.*://' | awk '{ s += $1 } END { print s + 0 }')
if [ "$RUN_STATUS" != succeeded ] || [ "$VMS_OK" != "$((HOSTS * VMS_PER_HOST))" ]; then
        grep -o '"message"[[:space:]]*:[[:space:]]*"[^"]*"' vms.json | sort | uniq -c | head -n 5 >&2 || true
        die "run $RUN_ID is $RUN_STATUS, $VMS_OK of $VMS_TOTAL VMs succeeded (logs in $WORK)"
fi
[ "$VMS_READ" = "$BYTES_READ" ] || log "note: the VMs' bytes_read add up to $VMS_READ, the run says $BYTES_READ"
"$VBAK" pool stats "$POOL" --json >stats.json 2>stats.err || die "vbak pool stats failed: $(cat stats.err)"
UNIQUE=$(need "$(jnum unique_bytes stats.json)" "unique_bytes in stats.json")
STORED=$(need "$(jnum stored_bytes stats.json)" "stored_bytes in stats.json")
CONC=$(grep -o 'at most [0-9]* VMs at once, [0-9]* on one host, [0-9]* disks' vbakd.err | tail -n 1 || true)
CATALOG_SEC=$((ENDED - STARTED))
MIBPS=$(calc "$BYTES_READ / $MiB / $WALL" 1)

# samples FILE [URL_PART]: the seconds of FILE's HTTP 200 answers (of one URL)
samples() { awk -v u="${2:-}" '$2 == 200 && (u == "" || index($1, u)) { print $3 }' "$1"; }
samples run.samples >run.all
samples run.samples /v1/version >run.version
samples run.samples /progress >run.progress
samples run.samples '/v1/runs?limit' >run.list
samples idle.samples >idle.all
N=$(wc -l <run.all)
ERRORS=$(awk '$2 != 200' run.samples | wc -l)
[ "$N" -gt 0 ] || die "no API answer while the run went (run.samples)"
P50=$(pct run.all 50) P99=$(pct run.all 99) PMAX=$(pct run.all 100)
if awk "BEGIN { exit !($P99 < $P99_TARGET_MS) }" && [ "$ERRORS" = 0 ]; then OK=PASS; else OK=FAIL; fi
ELAPSED=$(($(date +%s) - START))

{
        echo "vbakd: one job run over $((HOSTS * VMS_PER_HOST)) VMs of the CAS simulator on $HOSTS hosts ($HOSTS" \
                "running), 2 qcow2 disks each, $DATA_PER_VM MiB of data a VM"
        echo "load average: $LOAD_START at the start, $LOAD_RUN when the run ended ($(nproc) cores)"
        echo "job: full, parallel_vms $PARALLEL_VMS, per host $PARALLEL_PER_HOST, disks $PARALLEL_DISKS;" \
                "${CONC:-concurrency not logged}"
        echo "run $RUN_ID: $RUN_STATUS, $VMS_OK of $VMS_TOTAL VMs; read $(mib "$BYTES_READ") MiB in $WALL s" \
                "(vbakd's record: $CATALOG_SEC s): $MIBPS MiB/s"
        echo "pool: new $(mib "$BYTES_NEW") MiB, unique $(mib "$UNIQUE") MiB, stored $(mib "$STORED") MiB;" \
                "vbakd CPU $CPU_SEC s, of it its loop thread $LOOP_SEC s ($LOOP_PCT % of the run's wall time)"
        echo "API while the run went: $N requests, p50 $P50 ms, p99 $P99 ms, max $PMAX ms, $ERRORS errors"
        echo "  GET /v1/version p50 $(pct run.version 50) p99 $(pct run.version 99) ms;" \
                "GET /v1/runs/$RUN_ID/progress p50 $(pct run.progress 50) p99 $(pct run.progress 99) ms;" \
                "GET /v1/runs?limit=5 p50 $(pct run.list 50) p99 $(pct run.list 99) ms"
        echo "API idle before the run: $(wc -l <idle.all) requests, p50 $(pct idle.all 50) ms," \
                "p99 $(pct idle.all 99) ms"
        echo "$OK  API p99 under $P99_TARGET_MS ms while a run is going (p99 $P99 ms, $ERRORS errors)"
} >summary.txt

{
        printf '{\n  "vms": %s, "hosts": %s, "running_vms": %s, "data_bytes_per_vm": %s,\n' \
                "$((HOSTS * VMS_PER_HOST))" "$HOSTS" "$HOSTS" "$((DATA_PER_VM * MiB))"
        printf '  "parallel_vms": %s, "parallel_vms_per_host": %s, "parallel_disks": %s,\n' "$PARALLEL_VMS" \
                "$PARALLEL_PER_HOST" "$PARALLEL_DISKS"
        printf '  "run": %s, "status": "%s", "vms_succeeded": %s, "bytes_read": %s, "bytes_new": %s,\n' \
                "$RUN_ID" "$RUN_STATUS" "$VMS_OK" "$BYTES_READ" "$BYTES_NEW"
        printf '  "unique_bytes": %s, "stored_bytes": %s, "wall_seconds": %s, "catalog_seconds": %s,\n' \
                "$UNIQUE" "$STORED" "$WALL" "$CATALOG_SEC"
        printf '  "mib_per_second": %s, "concurrency": "%s", "vbakd_cpu_seconds": %s, "loop_cpu_seconds": %s,\n' \
                "$MIBPS" "$CONC" "$CPU_SEC" "$LOOP_SEC"
        printf '  "api_requests": %s, "api_errors": %s, "api_p50_ms": %s, "api_p99_ms": %s, "api_max_ms": %s,\n' \
                "$N" "$ERRORS" "$P50" "$P99" "$PMAX"
        printf '  "api_version_p99_ms": %s, "api_progress_p99_ms": %s, "api_list_p99_ms": %s,\n' \
                "$(pct run.version 99)" "$(pct run.progress 99)" "$(pct run.list 99)"
        printf '  "api_idle_requests": %s, "api_idle_p50_ms": %s, "api_idle_p99_ms": %s,\n' "$(wc -l <idle.all)" \
                "$(pct idle.all 50)" "$(pct idle.all 99)"
        printf '  "load_average_start": "%s", "load_average_run_end": "%s",\n' "$LOAD_START" "$LOAD_RUN"
        printf '  "p99_target_ms": %s, "pass": %s, "bench_seconds": %s\n}\n' "$P99_TARGET_MS" \
                "$([ "$OK" = PASS ] && echo true || echo false)" "$ELAPSED"
} >result.json

stop_all
rm -rf "$SIM/pools" "$POOL"
cat summary.txt
log "done in $ELAPSED s; results: $WORK/result.json, logs in $WORK"
if [ "$STRICT" = 1 ] && [ "$OK" != PASS ]; then
        exit 3
fi
exit 0
