#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/run.sh -- the `make bench` harness: builds the data set once
# (bench/mkdata.sh), then times vbak against zstd, borg and restic on the
# same images and prints one table, with the targets and whether they hold.
# Restores over NBD are in bench/restore.sh, which this script sources.
# docs/performance.md explains every number.
#
# Usage: bench/run.sh BUILD_DIR        (BUILD_DIR holds the vbak binary)
# Environment:
#   VBAK_BENCH_DATA    data set and scratch folder (default /var/tmp/vbak-bench)
#   VBAK_BENCH_REPEAT  rounds of the timed single-image rows; the table shows
#                      the median (default 3)
#   VBAK_BENCH_ONLY    a subset of "vbak restore nbd object zstd borg restic dedup
#                      chunks daemon" (default: all; restore runs the vbak rows too)
#   VBAK_BENCH_STRICT  1: exit 3 when a target does not hold
#   VBAK_BENCH_STORE_FS 0: keep repositories on the file system of
#                      VBAK_BENCH_DATA instead of a fresh loop-mounted ext4
# Output: the table on stdout, progress on stderr, the same results as JSON
# in $VBAK_BENCH_DATA/last-run.json, logs in $VBAK_BENCH_DATA/run/log.
set -euo pipefail

BUILD=${1:?usage: bench/run.sh BUILD_DIR}
BUILD_ABS=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=${VBAK_BENCH_DATA:-/var/tmp/vbak-bench}
ONLY=${VBAK_BENCH_ONLY:-vbak restore nbd object zstd borg restic dedup chunks daemon}
REPEAT=${VBAK_BENCH_REPEAT:-3}
STRICT=${VBAK_BENCH_STRICT:-0}
RUN=$DATA/run
LOG=$RUN/log
MiB=1048576
BENCH_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
        printf '\n[bench] ERROR: %s\n\n' "$*" >&2
        exit 1
}
want() { [[ " $ONLY " == *" $1 "* ]]; }

case $REPEAT in
[1-9] | [1-9][0-9]) ;;
*) die "VBAK_BENCH_REPEAT must be a number from 1 to 99" ;;
esac
VBAK=
if want vbak || want restore || want dedup || want chunks || want object; then
        [ -x "$BUILD/vbak" ] || die "$BUILD/vbak not found: build it first (make all)"
        VBAK=$(cd "$BUILD" && pwd)/vbak
fi
for c in zstd borg restic cmp du awk sort find; do
        command -v "$c" >/dev/null 2>&1 || die "missing command: $c (run scripts/deps.sh)"
done
[ -x /usr/bin/time ] || die "missing /usr/bin/time (apt-get install time)"
if want restore || want nbd; then
        for c in qemu-nbd qemu-img qemu-io nbdcopy; do
                command -v "$c" >/dev/null 2>&1 || die "missing command: $c (run scripts/deps.sh)"
        done
fi

"$HERE/mkdata.sh"

IMGS=(base clone1 clone2 clone3 clone4)
alloc_of() { echo $(($(stat -c '%b * %B' "$1"))); }
LOGICAL=$(stat -c %s "$DATA/base.img")
ALLOC_BASE=$(alloc_of "$DATA/base.img")
ALLOC_CHANGED=$(alloc_of "$DATA/changed.img")
ALLOC_FIVE=0
for i in "${IMGS[@]}"; do
        ALLOC_FIVE=$((ALLOC_FIVE + $(alloc_of "$DATA/$i.img")))
done
LOGICAL_FIVE=$((5 * LOGICAL))
# Bytes changed between base.img and changed.img: the union of the extents.
CHANGED_BYTES=$(sort -n "$DATA/changed.extents" | awk '
        { s = $1; e = $1 + $2
          if (n && s <= ce) { if (e > ce) ce = e; next }
          if (n) t += ce - cs
          cs = s; ce = e; n = 1 }
        END { if (n) t += ce - cs; print t + 0 }')

# Repositories, pools and restore targets go to STORE: a fresh ext4 file
# system with a journal, loop-mounted, the same for every tool, as a backup
# store would be. (This machine's root file system has no journal; there,
# ext4 looks at every recently deleted inode when it creates a file, which
# slows whatever creates many files right after the bench deleted many.)
# VBAK_BENCH_STORE_FS=0 keeps everything on the file system of $RUN.
STORE=$RUN/store
STORE_IMG=$DATA/store.img
if mountpoint -q "$STORE" 2>/dev/null; then
        umount "$STORE"
fi
rm -rf "$RUN"
mkdir -p "$LOG" "$RUN/src" "$STORE"
STORE_FS="$(df --output=fstype "$RUN" | tail -n 1) of $RUN"
# One trap for everything the bench leaves running or mounted.
# shellcheck disable=SC2317 # called by the trap
on_exit() {
        if declare -F nbd_stop >/dev/null; then nbd_stop; fi
        if declare -F object_stop >/dev/null; then object_stop; fi
        if [ -n "${STORE_MOUNTED:-}" ]; then
                umount "$STORE" 2>/dev/null
                rm -f "$STORE_IMG"
        fi
}
trap on_exit EXIT
if [ "${VBAK_BENCH_STORE_FS:-1}" != 0 ]; then
        rm -f "$STORE_IMG"
        if truncate -s 16G "$STORE_IMG" && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$STORE_IMG" && mount -o loop "$STORE_IMG" "$STORE"; then
                STORE_MOUNTED=1
                STORE_FS="a fresh ext4 with a journal (16 GiB image, loop-mounted)"
        else
                log "could not mount a scratch file system; the repositories stay on $STORE_FS"
                rm -f "$STORE_IMG"
        fi
fi

# borg and restic never prompt and keep their caches in the scratch folder.
export BORG_BASE_DIR=$STORE/borg-home
export BORG_PASSPHRASE=
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_DISPLAY_PASSPHRASE=no
export RESTIC_PASSWORD=vbak-bench
export RESTIC_CACHE_DIR=$STORE/restic-cache
unset BORG_REPO RESTIC_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND

# ------------------------------------------------------------------ helpers

# The first value of a key in a JSON file (no jq on a fresh machine).
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
dir_bytes() { du -sb "$1" | cut -f 1; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
mib() { calc "$1 / $MiB" "${2:-1}"; }
median() { tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }

# Every timed command reads its image with the same page cache state: the
# image is read once right before, and earlier writes are flushed first.
warm() {
        local f
        for f; do cat "$f" >/dev/null; done
        sync
}

# timed NAME OUT CMD...: runs CMD (stdout to OUT, stderr to the log); sets
# T_SEC (wall seconds) and T_RSS (peak RSS in KiB, from /usr/bin/time).
# A failing command stops the bench.
T_SEC=0
T_RSS=0
POOL_DEFAULTS=
VBAK_MAX_RSS=0
VBAK_MAX_RSS_WHAT=
timed() {
        local name=$1 out=$2 t0 t1
        shift 2
        t0=$(date +%s%N)
        if ! /usr/bin/time -f '%M' -o "$LOG/$name.rss" "$@" >"$out" 2>"$LOG/$name.err"; then
                tail -n 20 "$LOG/$name.err" >&2
                die "$name failed: $*"
        fi
        t1=$(date +%s%N)
        T_SEC=$(calc "($t1 - $t0) / 1e9")
        T_RSS=$(tail -n 1 "$LOG/$name.rss")
        if [ "$1" = "$VBAK" ] && [ "$T_RSS" -gt "$VBAK_MAX_RSS" ]; then
                VBAK_MAX_RSS=$T_RSS
                VBAK_MAX_RSS_WHAT=$name
        fi
}

# Rows of the main table, by key, in first-seen order; each round adds its
# seconds (the table shows the median) and peak RSS (the table shows the max).
R_KEYS=()
declare -A R_TOOL R_OP R_LOG R_ALLOC R_GROW R_NOTE R_SECS R_RSS
row() { # row KEY TOOL OPERATION LOGICAL_BYTES ALLOC_BYTES REPO_GROWTH NOTE  (uses T_SEC, T_RSS)
        local k=$1
        if [ -z "${R_TOOL[$k]:-}" ]; then
                R_KEYS+=("$k")
                R_SECS[$k]=
                R_RSS[$k]=0
        fi
        R_TOOL[$k]=$2 R_OP[$k]=$3 R_LOG[$k]=$4 R_ALLOC[$k]=$5 R_GROW[$k]=$6 R_NOTE[$k]=$7
        R_SECS[$k]+=" $T_SEC"
        R_RSS[$k]=$(max "${R_RSS[$k]}" "$T_RSS")
        log "    $2 $3: $T_SEC s, peak RSS $((T_RSS / 1024)) MiB"
}
sec_of() { if [ -n "${R_SECS[$1]:-}" ]; then median "${R_SECS[$1]}"; fi; }

# ------------------------------------------------------------------ vbak

# vbak_full_incr POOL TAG ROWS: full backup of base.img, then the incremental
# of changed.img; sets I_FULL_SEC, I_SEC, I_READ, I_NEW, I_ID, I_RSS (the
# larger peak RSS) and adds the main table's rows when ROWS is 1.
vbak_full_incr() {
        local pool=$1 tag=$2 rows=$3 g0 g1 out
        warm "$DATA/base.img"
        g0=$(dir_bytes "$pool")
        out=$LOG/$tag-full.json
        timed "$tag-full" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$DATA/base.img" --json
        g1=$(dir_bytes "$pool")
        I_FULL_SEC=$T_SEC
        I_RSS=$T_RSS
        if [ "$rows" = 1 ]; then
                row vbak-full vbak "full backup base.img" "$LOGICAL" "$ALLOC_BASE" $((g1 - g0)) \
                        "read $(mib "$(need "$(jnum bytes_read "$out")" "bytes_read in $out")") MiB"
        fi

        warm "$DATA/changed.img"
        g0=$g1
        out=$LOG/$tag-incr.json
        timed "$tag-incr" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$DATA/changed.img" \
                --changed "$DATA/changed.extents" --parent latest --json
        g1=$(dir_bytes "$pool")
        I_SEC=$T_SEC
        I_RSS=$(max "$I_RSS" "$T_RSS")
        I_READ=$(need "$(jnum bytes_read "$out")" "bytes_read in $out")
        I_NEW=$(need "$(jnum bytes_new "$out")" "bytes_new in $out")
        I_ID=$(need "$(jstr id "$out")" "id in $out")
        [ "$(jstr type "$out")" = incremental ] || die "$tag: the backup with --changed was not an incremental ($out)"
        if [ "$rows" = 1 ]; then
                row vbak-incr vbak "incremental changed.img" "$LOGICAL" "$ALLOC_CHANGED" $((g1 - g0)) \
                        "read $(mib "$I_READ") MiB, new $(mib "$I_NEW") MiB"
        fi
}

round_vbak() { # round_vbak ROUND
        local pool=$STORE/vbak-main tag=r$1-vbak target=$STORE/vbak-restore.img init=$LOG/r$1-vbak-init.json full_id
        log "  vbak: full backup, incremental, restore (pool with default options)"
        rm -rf "$pool"
        "$VBAK" pool init "$pool" --json >"$init"
        POOL_DEFAULTS="type $(jstr type "$init"), chunk size $(jnum chunk_size "$init")"
        POOL_DEFAULTS+=", compression $(jstr compression "$init"), fsync $(jstr fsync "$init")"
        vbak_full_incr "$pool" "$tag" 1
        full_id=$(need "$(jstr id "$LOG/$tag-full.json")" "id in $LOG/$tag-full.json")
        if want restore; then restore_file "$pool" "$full_id" "$tag"; fi
        sync
        timed "$tag-restore" "$LOG/$tag-restore.json" "$VBAK" pool restore "$pool" "$I_ID" --disk vda \
                --target "$target" --json
        row vbak-restore vbak "restore incr to file" "$LOGICAL" "$ALLOC_CHANGED" 0 \
                "wrote $(mib "$(alloc_of "$target")") MiB allocated"
        if ! cmp "$DATA/changed.img" "$target" >"$LOG/$tag-cmp.out" 2>&1; then
                cat "$LOG/$tag-cmp.out" >&2
                die "VBAK RESTORE DIFFERS FROM changed.img: restore point $I_ID of pool $pool, restored to $target"
        fi
        rm -f "$target"
        if want restore; then round_restore "$pool" "$full_id" "$I_ID" "$1"; fi
        rm -rf "$pool"
}

# ------------------------------------------------------------------ restore

# shellcheck source=bench/restore.sh
. "$HERE/restore.sh"

# ------------------------------------------------------------------ nbd

# The same images over NBD on loopback TCP, served by qemu-nbd: nbdcopy of
# the export to /dev/null (what the transfer alone costs), vbak's full backup
# of base.img, and its incremental of a qcow2 holding changed.img whose
# persistent bitmap b1 marks the changed extents (built once: base.img as
# qcow2, bitmap b1 added, the changed extents written into it).
NBD_PID=
nbd_prepare() {
        local dir=$DATA/nbd i=0 off len args=()
        [ -f "$dir/ready" ] && return 0
        log "  nbd: building changed.qcow2 with bitmap b1 (once)"
        rm -rf "$dir"
        mkdir -p "$dir/pieces"
        qemu-img convert -O qcow2 "$DATA/base.img" "$dir/changed.qcow2"
        qemu-img bitmap --add "$dir/changed.qcow2" b1
        while read -r off len; do
                dd if="$DATA/changed.img" of="$dir/pieces/$i" bs=64K iflag=skip_bytes,count_bytes skip="$off"                         count="$len" status=none
                args+=(-c "write -q -s $dir/pieces/$i $off $len")
                i=$((i + 1))
        done <"$DATA/changed.extents"
        qemu-io -f qcow2 "${args[@]}" "$dir/changed.qcow2" >"$LOG/nbd-prepare.out"
        rm -rf "$dir/pieces"
        qemu-img compare -q -f qcow2 -F raw "$dir/changed.qcow2" "$DATA/changed.img" ||
                die "nbd: changed.qcow2 does not hold changed.img"
        touch "$dir/ready"
}

nbd_serve() { # nbd_serve IMAGE FORMAT ARGS...: qemu-nbd on 127.0.0.1:$NBD_PORT
        local image=$1 fmt=$2 tries=200
        shift 2
        qemu-nbd -r -t --shared=8 -b 127.0.0.1 -p "$NBD_PORT" -x vda -f "$fmt" "$@" "$image" \
                >>"$LOG/qemu-nbd.log" 2>&1 &
        NBD_PID=$!
        until (: <>"/dev/tcp/127.0.0.1/$NBD_PORT") 2>/dev/null; do
                ((tries-- > 0)) || die "qemu-nbd does not listen on $NBD_PORT"
                sleep 0.05
        done
}

nbd_stop() {
        if [ -n "$NBD_PID" ]; then
                kill "$NBD_PID" 2>/dev/null || true
                wait "$NBD_PID" 2>/dev/null || true
                NBD_PID=
        fi
}

round_nbd() { # round_nbd ROUND
        local pool=$STORE/vbak-nbd tag=r$1-nbd url out g0 g1
        NBD_PORT=$((20000 + RANDOM % 10000))
        url=nbd://127.0.0.1:$NBD_PORT/vda
        nbd_prepare
        log "  nbd: nbdcopy, full and incremental backups over NBD (qemu-nbd, loopback TCP)"
        rm -rf "$pool"
        "$VBAK" pool init "$pool" >/dev/null
        warm "$DATA/base.img"
        nbd_serve "$DATA/base.img" raw
        timed "$tag-nbdcopy" /dev/null nbdcopy --connections=2 "$url" null:
        row nbdcopy nbdcopy "export to null: (2 conns)" "$LOGICAL" "$ALLOC_BASE" 0 "the transfer alone"
        g0=$(dir_bytes "$pool")
        out=$LOG/$tag-full.json
        timed "$tag-full" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$url" \
                --connections 2 --checkpoint b1 --json
        g1=$(dir_bytes "$pool")
        row vbak-nbd-full vbak "full over NBD (2 conns)" "$LOGICAL" "$ALLOC_BASE" $((g1 - g0)) \
                "read $(mib "$(need "$(jnum bytes_read "$out")" "bytes_read in $out")") MiB"
        nbd_stop
        warm "$DATA/nbd/changed.qcow2"
        nbd_serve "$DATA/nbd/changed.qcow2" qcow2 -B b1
        out=$LOG/$tag-incr.json
        timed "$tag-incr" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$url" \
                --bitmap b1 --parent latest --json
        [ "$(jstr type "$out")" = incremental ] || die "nbd: the backup with --bitmap was not an incremental ($out)"
        g0=$g1
        g1=$(dir_bytes "$pool")
        row vbak-nbd-incr vbak "incremental over NBD" "$LOGICAL" "$ALLOC_CHANGED" $((g1 - g0)) \
                "read $(mib "$(need "$(jnum bytes_read "$out")" "bytes_read in $out")") MiB (dirty bitmap)"
        nbd_stop
        if [ "$1" = 1 ]; then
                "$VBAK" pool restore "$pool" latest --disk vda --target "$STORE/nbd-restore.img" >/dev/null
                cmp "$DATA/changed.img" "$STORE/nbd-restore.img" || die "the NBD incremental restores different data"
                rm -f "$STORE/nbd-restore.img"
        fi
        rm -rf "$pool"
}

# ------------------------------------------------------------------ zstd

round_zstd() {
        log "  zstd -1 -T2 of base.img"
        warm "$DATA/base.img"
        timed "r$1-zstd" "$STORE/zstd.out" zstd -1 -T2 -q -c "$DATA/base.img"
        row zstd zstd "zstd -1 -T2 base.img" "$LOGICAL" "$ALLOC_BASE" 0 \
                "output $(mib "$(stat -c %s "$STORE/zstd.out")") MiB (not kept)"
        rm -f "$STORE/zstd.out"
}

# ------------------------------------------------------------------ borg

# The image is hard-linked to the same path for both runs, so the second
# run finds a modified file (other inode, ctime and mtime) at that path.
round_borg() {
        local repo=$STORE/borg-repo tag=r$1-borg g0 g1
        log "  borg: create, create after the change, extract"
        rm -rf "$repo" "$BORG_BASE_DIR" "$STORE/borg-restore"
        borg init -e none "$repo" >"$LOG/$tag-init.out" 2>&1
        cd "$RUN/src"
        ln -f "$DATA/base.img" disk.img
        warm disk.img
        g0=$(dir_bytes "$repo")
        timed "$tag-1" "$LOG/$tag-1.json" borg create --compression zstd,3 --json "$repo::run1" disk.img
        g1=$(dir_bytes "$repo")
        row borg-1 borg "create #1 base.img" "$LOGICAL" "$ALLOC_BASE" $((g1 - g0)) "read $(mib "$LOGICAL" 0) MiB"
        ln -f "$DATA/changed.img" disk.img
        warm disk.img
        g0=$g1
        timed "$tag-2" "$LOG/$tag-2.json" borg create --compression zstd,3 --json "$repo::run2" disk.img
        g1=$(dir_bytes "$repo")
        row borg-2 borg "create #2 changed.img" "$LOGICAL" "$ALLOC_CHANGED" $((g1 - g0)) \
                "read $(mib "$LOGICAL" 0) MiB"
        rm -f disk.img
        mkdir -p "$STORE/borg-restore"
        cd "$STORE/borg-restore"
        sync
        timed "$tag-extract" "$LOG/$tag-extract.out" borg extract --sparse "$repo::run2"
        row borg-extract borg "extract #2 (--sparse)" "$LOGICAL" "$ALLOC_CHANGED" 0 \
                "wrote $(mib "$(alloc_of disk.img)") MiB allocated"
        if [ "$1" = 1 ]; then
                cmp "$DATA/changed.img" disk.img || die "borg extract differs from changed.img"
        fi
        cd "$RUN"
        rm -rf "$repo" "$BORG_BASE_DIR" "$STORE/borg-restore"
}

# ------------------------------------------------------------------ restic

round_restic() {
        local tag=r$1-restic g0 g1 snap file
        export RESTIC_REPOSITORY=$STORE/restic-repo
        log "  restic: backup, backup after the change, restore"
        rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$STORE/restic-restore"
        restic init >"$LOG/$tag-init.out" 2>&1
        cd "$RUN/src"
        ln -f "$DATA/base.img" disk.img
        warm disk.img
        g0=$(dir_bytes "$RESTIC_REPOSITORY")
        timed "$tag-1" "$LOG/$tag-1.json" restic backup --host bench --json -q disk.img
        g1=$(dir_bytes "$RESTIC_REPOSITORY")
        row restic-1 restic "backup #1 base.img" "$LOGICAL" "$ALLOC_BASE" $((g1 - g0)) "read $(mib "$LOGICAL" 0) MiB"
        ln -f "$DATA/changed.img" disk.img
        warm disk.img
        g0=$g1
        timed "$tag-2" "$LOG/$tag-2.json" restic backup --host bench --json -q disk.img
        g1=$(dir_bytes "$RESTIC_REPOSITORY")
        grep -q '"files_changed":1' "$LOG/$tag-2.json" || die "restic's second run did not see disk.img as changed"
        row restic-2 restic "backup #2 changed.img" "$LOGICAL" "$ALLOC_CHANGED" $((g1 - g0)) \
                "read $(mib "$LOGICAL" 0) MiB"
        rm -f disk.img
        snap=$(need "$(jstr snapshot_id "$LOG/$tag-2.json")" "restic's snapshot id")
        cd "$RUN"
        sync
        timed "$tag-restore" "$LOG/$tag-restore.out" restic restore -q "$snap" --target "$STORE/restic-restore"
        file=$(find "$STORE/restic-restore" -name disk.img -type f | head -n 1)
        [ -n "$file" ] || die "restic restore wrote no disk.img"
        row restic-restore restic "restore #2" "$LOGICAL" "$ALLOC_CHANGED" 0 \
                "wrote $(mib "$(alloc_of "$file")") MiB allocated (not sparse)"
        if [ "$1" = 1 ]; then
                cmp "$DATA/changed.img" "$file" || die "restic restore differs from changed.img"
        fi
        rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$STORE/restic-restore"
        unset RESTIC_REPOSITORY
}

# ------------------------------------------------------------------ the rounds

# The tools take turns within each round, so that a busy moment on the
# machine does not fall on one tool only.
# shellcheck source=bench/object.sh
source "$HERE/object.sh"
if want object; then object_start; fi
for ((round = 1; round <= REPEAT; round++)); do
        log "round $round of $REPEAT"
        if want vbak || want restore; then round_vbak "$round"; fi
        if want nbd; then round_nbd "$round"; fi
        if want object; then round_object "$round"; fi
        if want zstd; then round_zstd "$round"; fi
        if want borg; then round_borg "$round"; fi
        if want restic; then round_restic "$round"; fi
done

# ------------------------------------------------------------------ dedup

# Each tool backs up the five images, one restore point / archive / snapshot
# per image, into one fresh repository. Sets D_* for the table.
D_TOOLS=()
declare -A D_SEC D_RSS D_READ D_UNIQUE D_STORED D_DISK D_OWN
dedup_vbak() { # dedup_vbak POOL TAG: the five images into an initialised pool
        local pool=$1 tag=$2 i sec=0 rss=0 read=0
        for i in "${IMGS[@]}"; do
                warm "$DATA/$i.img"
                timed "$tag-$i" "$LOG/$tag-$i.json" "$VBAK" pool backup "$pool" --vm "$i" --disk vda \
                        --source "$DATA/$i.img" --json
                read=$((read + $(need "$(jnum bytes_read "$LOG/$tag-$i.json")" "bytes_read of $tag-$i")))
                sec=$(calc "$sec + $T_SEC")
                rss=$(max "$rss" "$T_RSS")
        done
        "$VBAK" pool stats "$pool" --json >"$LOG/$tag-stats.json"
        F_SEC=$sec F_RSS=$rss F_READ=$read F_STATS=$LOG/$tag-stats.json
}

if want dedup; then
        log "dedup over the five images: vbak (default options)"
        pool=$STORE/vbak-five
        "$VBAK" pool init "$pool" >"$LOG/five-vbak-init.out"
        dedup_vbak "$pool" five-vbak
        D_TOOLS+=(vbak)
        D_SEC[vbak]=$F_SEC D_RSS[vbak]=$F_RSS D_READ[vbak]=$F_READ
        D_UNIQUE[vbak]=$(need "$(jnum unique_bytes "$F_STATS")" "unique_bytes in $F_STATS")
        D_STORED[vbak]=$(need "$(jnum stored_bytes "$F_STATS")" "stored_bytes in $F_STATS")
        D_OWN[vbak]=$(calc "$(need "$(jnum dedup_ratio "$F_STATS")" "dedup_ratio in $F_STATS")" 2)
        D_DISK[vbak]=$(dir_bytes "$pool")
        rm -rf "$pool"

        log "dedup over the five images: borg"
        repo=$STORE/borg-five
        borg init -e none "$repo" >"$LOG/five-borg-init.out" 2>&1
        cd "$DATA"
        sec=0 rss=0
        for i in "${IMGS[@]}"; do
                warm "$i.img"
                timed "five-borg-$i" "$LOG/five-borg-$i.json" borg create --compression zstd,3 --json \
                        "$repo::$i" "$i.img"
                sec=$(calc "$sec + $T_SEC")
                rss=$(max "$rss" "$T_RSS")
        done
        cd "$RUN"
        info=$LOG/five-borg-info.json
        borg info --json "$repo" >"$info"
        D_TOOLS+=(borg)
        D_SEC[borg]=$sec D_RSS[borg]=$rss
        D_READ[borg]=$(need "$(jnum total_size "$info")" "total_size in $info")
        D_UNIQUE[borg]=$(need "$(jnum unique_size "$info")" "unique_size in $info")
        D_STORED[borg]=$(need "$(jnum unique_csize "$info")" "unique_csize in $info")
        D_OWN[borg]=$(calc "${D_READ[borg]} / ${D_UNIQUE[borg]}" 2)
        D_DISK[borg]=$(dir_bytes "$repo")
        rm -rf "$repo" "$BORG_BASE_DIR"

        log "dedup over the five images: restic"
        export RESTIC_REPOSITORY=$STORE/restic-five
        restic init >"$LOG/five-restic-init.out" 2>&1
        cd "$DATA"
        sec=0 rss=0 added=0 read=0
        for i in "${IMGS[@]}"; do
                warm "$i.img"
                out=$LOG/five-restic-$i.json
                timed "five-restic-$i" "$out" restic backup --host bench --json -q "$i.img"
                sec=$(calc "$sec + $T_SEC")
                rss=$(max "$rss" "$T_RSS")
                added=$((added + $(need "$(jnum data_added "$out")" "data_added in $out")))
                read=$((read + $(need "$(jnum total_bytes_processed "$out")" "total_bytes_processed in $out")))
        done
        cd "$RUN"
        stats=$LOG/five-restic-stats.json
        restic stats --mode raw-data --json >"$stats"
        D_TOOLS+=(restic)
        D_SEC[restic]=$sec D_RSS[restic]=$rss D_READ[restic]=$read D_UNIQUE[restic]=$added
        D_STORED[restic]=$(need "$(jnum total_size "$stats")" "total_size in $stats")
        D_OWN[restic]=-
        D_DISK[restic]=$(dir_bytes "$RESTIC_REPOSITORY")
        rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
        unset RESTIC_REPOSITORY
fi

# ------------------------------------------------------------------ chunk sizes

C_SIZES=()
declare -A C_FULL C_INCR C_READ C_NEW C_OWN C_UNIQUE C_STORED C_RSS
if want chunks; then
        for cs in 1M 2M 4M; do
                full='' incr='' rss=0
                for ((round = 1; round <= REPEAT; round++)); do
                        log "chunk size $cs, round $round of $REPEAT: full backup and incremental"
                        pool=$STORE/vbak-$cs
                        rm -rf "$pool"
                        "$VBAK" pool init "$pool" --chunk-size "$cs" >"$LOG/c$cs-r$round-init.out"
                        vbak_full_incr "$pool" "c$cs-r$round" 0
                        full+=" $I_FULL_SEC" incr+=" $I_SEC"
                        rss=$(max "$rss" "$I_RSS")
                        rm -rf "$pool"
                done
                log "chunk size $cs: the five images"
                "$VBAK" pool init "$pool-five" --chunk-size "$cs" >"$LOG/c$cs-five-init.out"
                dedup_vbak "$pool-five" "c$cs-five"
                rm -rf "$pool-five"
                C_SIZES+=("$cs")
                C_FULL[$cs]=$(median "$full") C_INCR[$cs]=$(median "$incr") C_READ[$cs]=$I_READ C_NEW[$cs]=$I_NEW
                C_RSS[$cs]=$(max "$rss" "$F_RSS")
                C_OWN[$cs]=$(calc "$(need "$(jnum dedup_ratio "$F_STATS")" "dedup_ratio in $F_STATS")" 2)
                C_UNIQUE[$cs]=$(need "$(jnum unique_bytes "$F_STATS")" "unique_bytes in $F_STATS")
                C_STORED[$cs]=$(need "$(jnum stored_bytes "$F_STATS")" "stored_bytes in $F_STATS")
        done
fi

# ------------------------------------------------------------------ daemon

# bench/daemon.sh: a vbakd job run over 16 VMs of the CAS simulator, and the
# control API's latency while it goes. Its lines go into the table as they
# are, its JSON into last-run.json; exit 77 (no QEMU) leaves it out.
DAEMON_LINES='' DAEMON_JSON=''
if want daemon; then
        log "vbakd: a job run over 16 simulated VMs, API latency while it runs (bench/daemon.sh)"
        rc=0
        VBAK_BENCH_DATA=$DATA VBAK_BENCH_STRICT=0 "$HERE/daemon.sh" "$BUILD_ABS" "$STORE" >"$LOG/daemon.out" || rc=$?
        case $rc in
        0) DAEMON_LINES=$(cat "$LOG/daemon.out") DAEMON_JSON=$RUN/daemon/result.json ;;
        77) log "  vbakd: skipped" ;;
        *) die "bench/daemon.sh failed (exit $rc); its logs are in $RUN/daemon" ;;
        esac
fi

# ------------------------------------------------------------------ targets

T_NAMES=() T_OK=() T_DETAIL=()
target() { T_NAMES+=("$1") T_OK+=("$2") T_DETAIL+=("$3"); }
yes_if_le() { if awk "BEGIN { exit !($1 <= $2) }"; then echo yes; else echo no; fi; }

S_FULL=$(sec_of vbak-full) S_INCR=$(sec_of vbak-incr) S_RESTORE=$(sec_of vbak-restore)
S_ZSTD=$(sec_of zstd) S_BORG2=$(sec_of borg-2) S_RESTIC_RESTORE=$(sec_of restic-restore)
name="full backup at least as fast as zstd -1 -T2"
if [ -n "$S_FULL" ] && [ -n "$S_ZSTD" ]; then
        target "$name" "$(yes_if_le "$S_FULL" "$S_ZSTD")" "vbak $S_FULL s, zstd $S_ZSTD s"
else target "$name" n/a "not measured"; fi
S_NBD_FULL=$(sec_of vbak-nbd-full) S_NBDCOPY=$(sec_of nbdcopy)
name="full backup over NBD within 10 % of the file-source backup"
if [ -n "$S_NBD_FULL" ] && [ -n "$S_FULL" ]; then
        target "$name" "$(yes_if_le "$S_NBD_FULL" "$(calc "$S_FULL * 1.1")")" \
                "over NBD $S_NBD_FULL s, from the file $S_FULL s, nbdcopy $S_NBDCOPY s"
else target "$name" n/a "not measured"; fi
name="incremental at least 20x faster than borg's second run"
if [ -n "$S_INCR" ] && [ -n "$S_BORG2" ]; then
        target "$name" "$(yes_if_le "$(calc "$S_INCR * 20")" "$S_BORG2")" \
                "vbak $S_INCR s, borg $S_BORG2 s: $(calc "$S_BORG2 / $S_INCR" 1)x"
else target "$name" n/a "not measured"; fi
name="restore at least as fast as restic's"
if [ -n "$S_RESTORE" ] && [ -n "$S_RESTIC_RESTORE" ]; then
        target "$name" "$(yes_if_le "$S_RESTORE" "$S_RESTIC_RESTORE")" \
                "vbak $S_RESTORE s, restic $S_RESTIC_RESTORE s"
else target "$name" n/a "not measured"; fi
restore_ratios
S_RESTORE_NBD=$(sec_of vbak-restore-nbd-incr)
name="restore over NBD at least as fast as restic's"
if [ -n "$S_RESTORE_NBD" ] && [ -n "$S_RESTIC_RESTORE" ]; then
        target "$name" "$(yes_if_le "$S_RESTORE_NBD" "$S_RESTIC_RESTORE")" \
                "over NBD $S_RESTORE_NBD s, restic $S_RESTIC_RESTORE s, to a file $S_RESTORE s"
else target "$name" n/a "not measured"; fi
# The same dedup ratio for every tool: allocated bytes of the five images
# over the unique plain bytes the tool keeps.
dedup_of() { calc "$ALLOC_FIVE / ${D_UNIQUE[$1]}" "${2:-2}"; }
name="dedup ratio over the five images no worse than borg's"
if [ -n "${D_UNIQUE[vbak]:-}" ] && [ -n "${D_UNIQUE[borg]:-}" ]; then
        target "$name" "$(yes_if_le "$(dedup_of borg)" "$(dedup_of vbak)")" \
                "vbak $(dedup_of vbak), borg $(dedup_of borg) (allocated / unique)"
else target "$name" n/a "not measured"; fi
name="vbak peak memory under 256 MiB"
if [ -n "$VBAK_MAX_RSS_WHAT" ]; then
        target "$name" "$(yes_if_le "$VBAK_MAX_RSS" $((256 * 1024 - 1)))" \
                "max $(calc "$VBAK_MAX_RSS / 1024" 1) MiB ($VBAK_MAX_RSS_WHAT)"
else target "$name" n/a "not measured"; fi

name="vbakd API p99 under 50 ms while a run is going"
if [ -n "$DAEMON_JSON" ]; then
        ok=no
        if grep -q '"pass": true' "$DAEMON_JSON"; then ok=yes; fi
        detail="p99 $(jnum api_p99_ms "$DAEMON_JSON") ms, p50 $(jnum api_p50_ms "$DAEMON_JSON") ms,"
        target "$name" "$ok" "$detail $(jnum api_requests "$DAEMON_JSON") requests in $(jnum wall_seconds "$DAEMON_JSON") s"
else target "$name" n/a "not measured"; fi

# ------------------------------------------------------------------ report

NPROC=$(nproc)
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
V_ZSTD=$(zstd --version 2>/dev/null | head -n 1 | sed 's/^\*\*\* //; s/, by.*//')
V_BORG=$(borg --version 2>/dev/null | head -n 1)
V_RESTIC=$(restic version 2>/dev/null | head -n 1 | cut -d' ' -f1-2)
ELAPSED=$(($(date +%s) - BENCH_START))
mibps() { calc "$1 / $MiB / $2" 0; }

{
        echo "vbak benchmark, $NOW: $NPROC cores, Linux $(uname -r)"
        echo "load average: $LOAD_START at the start, $LOAD_END at the end"
        echo "tools: $V_ZSTD; $V_BORG; $V_RESTIC"
        echo "repositories, pools and restore targets on $STORE_FS"
        [ -z "$POOL_DEFAULTS" ] || echo "vbak pool defaults: $POOL_DEFAULTS"
        echo "data: $DATA: images of $(mib "$LOGICAL" 0) MiB; base.img $(mib "$ALLOC_BASE") MiB allocated," \
                "changed.img $(mib "$ALLOC_CHANGED") MiB allocated, $(mib "$CHANGED_BYTES") MiB changed"
        if [ ${#R_KEYS[@]} -gt 0 ]; then
                echo
                echo "One image: seconds = median of $REPEAT rounds (min-max); MiB/s over the logical and the"
                echo "allocated size of the image; peak RSS; growth of the repository"
                printf '%-7s %-24s %7s %12s %8s %8s %8s %9s  %s\n' tool operation seconds range "MiB/s" \
                        "alloc/s" "RSS MiB" "repo MiB" note
                for k in "${R_KEYS[@]}"; do
                        s=$(median "${R_SECS[$k]}")
                        printf '%-7s %-24s %7s %12s %8s %8s %8s %9s  %s\n' "${R_TOOL[$k]}" "${R_OP[$k]}" "$s" \
                                "$(spread "${R_SECS[$k]}")" "$(mibps "${R_LOG[$k]}" "$s")" \
                                "$(mibps "${R_ALLOC[$k]}" "$s")" "$(calc "${R_RSS[$k]} / 1024" 1)" \
                                "$(mib "${R_GROW[$k]}")" "${R_NOTE[$k]}"
                done
        fi
        if [ ${#D_TOOLS[@]} -gt 0 ]; then
                echo
                echo "Dedup over the five images (base + 4 clones): $(mib "$LOGICAL_FIVE" 0) MiB logical," \
                        "$(mib "$ALLOC_FIVE") MiB allocated"
                printf '%-7s %8s %8s %10s %10s %10s %10s %7s %7s %7s\n' tool seconds "RSS MiB" "read MiB" \
                        "unique MiB" "stored MiB" "disk MiB" dedup total own
                for t in "${D_TOOLS[@]}"; do
                        printf '%-7s %8s %8s %10s %10s %10s %10s %7s %7s %7s\n' "$t" "${D_SEC[$t]}" \
                                "$(calc "${D_RSS[$t]} / 1024" 1)" "$(mib "${D_READ[$t]}")" "$(mib "${D_UNIQUE[$t]}")" \
                                "$(mib "${D_STORED[$t]}")" "$(mib "${D_DISK[$t]}")" "$(dedup_of "$t")" \
                                "$(calc "$ALLOC_FIVE / ${D_DISK[$t]}" 2)" "${D_OWN[$t]}"
                done
                echo "  dedup = allocated / unique (plain bytes, before compression); total = allocated / disk;"
                echo "  own = the tool's own ratio (vbak: data_bytes / unique_bytes; borg: total_size / unique_size)"
        fi
        if [ ${#C_SIZES[@]} -gt 0 ]; then
                echo
                echo "vbak chunk size: seconds = median of $REPEAT rounds; amplification = incremental"
                echo "bytes_new / $(mib "$CHANGED_BYTES") MiB changed; dedup, own, stored: over the five images"
                printf '%-6s %7s %7s %9s %9s %7s %7s %7s %10s %8s\n' chunk "full s" "incr s" "read MiB" \
                        "new MiB" amplif dedup own "stored MiB" "RSS MiB"
                for cs in "${C_SIZES[@]}"; do
                        printf '%-6s %7s %7s %9s %9s %7s %7s %7s %10s %8s\n' "$cs" "${C_FULL[$cs]}" \
                                "${C_INCR[$cs]}" "$(mib "${C_READ[$cs]}")" "$(mib "${C_NEW[$cs]}")" \
                                "$(calc "${C_NEW[$cs]} / $CHANGED_BYTES" 1)" \
                                "$(calc "$ALLOC_FIVE / ${C_UNIQUE[$cs]}" 2)" "${C_OWN[$cs]}" \
                                "$(mib "${C_STORED[$cs]}")" "$(calc "${C_RSS[$cs]} / 1024" 1)"
                done
        fi
        if [ -n "$DAEMON_LINES" ]; then
                echo
                printf '%s\n' "$DAEMON_LINES"
        fi
        echo
        echo "Targets"
        for k in "${!T_NAMES[@]}"; do
                printf '  %-4s %-55s %s\n' "${T_OK[$k]}" "${T_NAMES[$k]}" "${T_DETAIL[$k]}"
        done
        echo
        echo "bench time: $ELAPSED s (data set ready)"
} | tee "$RUN/table.txt"

# The same results as JSON.
jesc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
jlist() { printf '%s' "$1" | awk '{ for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? ", " : ""), $i }'; }
{
        printf '{\n  "date": "%s",\n  "cores": %s,\n  "kernel": "%s",\n' "$NOW" "$NPROC" "$(uname -r)"
        printf '  "load_average_start": "%s",\n  "load_average_end": "%s",\n  "rounds": %s,\n' \
                "$LOAD_START" "$LOAD_END" "$REPEAT"
        printf '  "tools": {"zstd": "%s", "borg": "%s", "restic": "%s"},\n' "$(jesc "$V_ZSTD")" "$(jesc "$V_BORG")" \
                "$(jesc "$V_RESTIC")"
        printf '  "vbak_pool_defaults": "%s",\n' "$(jesc "$POOL_DEFAULTS")"
        printf '  "data": {"path": "%s", "logical_bytes": %s, "base_allocated_bytes": %s, ' "$(jesc "$DATA")" \
                "$LOGICAL" "$ALLOC_BASE"
        printf '"changed_allocated_bytes": %s, "changed_bytes": %s, "five_logical_bytes": %s, ' "$ALLOC_CHANGED" \
                "$CHANGED_BYTES" "$LOGICAL_FIVE"
        printf '"five_allocated_bytes": %s},\n  "rows": [' "$ALLOC_FIVE"
        sep=
        for k in "${R_KEYS[@]}"; do
                printf '%s\n    {"key": "%s", "tool": "%s", "operation": "%s", "seconds": %s, "seconds_all": [%s], ' \
                        "$sep" "$k" "${R_TOOL[$k]}" "$(jesc "${R_OP[$k]}")" "$(median "${R_SECS[$k]}")" \
                        "$(jlist "${R_SECS[$k]}")"
                printf '"logical_bytes": %s, "allocated_bytes": %s, "peak_rss_kib": %s, "repo_growth_bytes": %s, ' \
                        "${R_LOG[$k]}" "${R_ALLOC[$k]}" "${R_RSS[$k]}" "${R_GROW[$k]}"
                printf '"note": "%s"}' "$(jesc "${R_NOTE[$k]}")"
                sep=,
        done
        printf '\n  ],\n  "dedup": ['
        sep=
        for t in "${D_TOOLS[@]}"; do
                own=${D_OWN[$t]}
                [ "$own" != - ] || own=null
                printf '%s\n    {"tool": "%s", "seconds": %s, "peak_rss_kib": %s, "read_bytes": %s, ' "$sep" "$t" \
                        "${D_SEC[$t]}" "${D_RSS[$t]}" "${D_READ[$t]}"
                printf '"unique_bytes": %s, "stored_bytes": %s, "on_disk_bytes": %s, "dedup_ratio": %s, ' \
                        "${D_UNIQUE[$t]}" "${D_STORED[$t]}" "${D_DISK[$t]}" "$(dedup_of "$t" 4)"
                printf '"total_ratio": %s, "own_ratio": %s}' "$(calc "$ALLOC_FIVE / ${D_DISK[$t]}" 4)" "$own"
                sep=,
        done
        printf '\n  ],\n  "chunk_sizes": ['
        sep=
        for cs in "${C_SIZES[@]}"; do
                printf '%s\n    {"chunk_size": "%s", "full_seconds": %s, "incremental_seconds": %s, ' "$sep" "$cs" \
                        "${C_FULL[$cs]}" "${C_INCR[$cs]}"
                printf '"incremental_bytes_read": %s, "incremental_bytes_new": %s, "amplification": %s, ' \
                        "${C_READ[$cs]}" "${C_NEW[$cs]}" "$(calc "${C_NEW[$cs]} / $CHANGED_BYTES" 4)"
                printf '"dedup_ratio": %s, "own_dedup_ratio": %s, "unique_bytes": %s, "stored_bytes": %s, ' \
                        "$(calc "$ALLOC_FIVE / ${C_UNIQUE[$cs]}" 4)" "${C_OWN[$cs]}" "${C_UNIQUE[$cs]}" \
                        "${C_STORED[$cs]}"
                printf '"peak_rss_kib": %s}' "${C_RSS[$cs]}"
                sep=,
        done
        printf '\n  ],\n  "restore_speed_ratios": {"nbd_full_vs_file": %s, "nbd_incremental_vs_file": %s, ' \
                "${RR_FULL_FILE:-null}" "${RR_INCR_FILE:-null}"
        printf '"nbd_incremental_vs_restic": %s},\n  "daemon": ' "${RR_INCR_RESTIC:-null}"
        if [ -n "$DAEMON_JSON" ]; then sed '$ s/$/,/' "$DAEMON_JSON"; else printf 'null,\n'; fi
        printf '  "targets": ['
        sep=
        for k in "${!T_NAMES[@]}"; do
                printf '%s\n    {"target": "%s", "holds": "%s", "detail": "%s"}' "$sep" "$(jesc "${T_NAMES[$k]}")" \
                        "${T_OK[$k]}" "$(jesc "${T_DETAIL[$k]}")"
                sep=,
        done
        printf '\n  ],\n  "bench_seconds": %s\n}\n' "$ELAPSED"
} >"$DATA/last-run.json.tmp"
mv "$DATA/last-run.json.tmp" "$DATA/last-run.json"
log "results: $DATA/last-run.json (logs in $LOG)"

if [ "$STRICT" = 1 ]; then
        for ok in "${T_OK[@]}"; do
                if [ "$ok" = no ]; then
                        log "a target does not hold (VBAK_BENCH_STRICT=1)"
                        exit 3
                fi
        done
fi
exit 0
