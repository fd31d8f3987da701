#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/mkdata.sh -- builds the vbak benchmark data set once, outside the
# repository, in ${VBAK_BENCH_DATA:-/var/tmp/vbak-bench}:
#   root/            debootstrap --variant=minbase bookworm
#   base.img         2 GiB ext4 image of root/ (sparse, ~180 MiB allocated)
#   clone1..4.img    base.img with a small unique file and 32 random 4 KiB
#                    block writes inside the allocated area (fixed seeds)
#   changed.img      base.img after 1,000 random 64 KiB writes (fixed seed)
#   changed.extents  "OFFSET LENGTH" per write of changed.img
#   bin/mkchange     the helper that makes those writes (bench/mkchange.c)
#   complete         stamp, written last; when it matches, nothing is rebuilt
# Needs root, debootstrap, e2fsprogs and a C compiler.
# Usage: bench/mkdata.sh            (VBAK_BENCH_MIRROR overrides the mirror)
set -euo pipefail

DATA=${VBAK_BENCH_DATA:-/var/tmp/vbak-bench}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Bump when the recipe below changes, so that old data sets are rebuilt.
DATA_VERSION="vbak-bench-data 2"
SIZE=2G
SUITE=bookworm
FS_UUID=6f1e2d3c-4b5a-4697-8887-a9b0c1d2e3f4
CHANGE_SEED=20240601
CHANGE_COUNT=1000
CHANGE_BYTES=65536
CLONE_WRITES=32
# A fixed time for the file system's own timestamps (mkfs, debugfs).
EPOCH=1700000000

log() { printf '[mkdata] %s\n' "$*" >&2; }
die() {
        printf '[mkdata] ERROR: %s\n' "$*" >&2
        exit 1
}

# The Debian mirror apt uses: the first deb source for the suite in
# /etc/apt/sources.list (one-line format) or sources.list.d (*.list, deb822
# *.sources), skipping security archives and disabled stanzas.
find_mirror() {
        local f uri
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
                [ -r "$f" ] || continue
                uri=$(awk -v suite="$SUITE" '
                        $1 == "deb" {
                                i = 2
                                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                                if ($(i + 1) == suite && $i !~ /security/) { print $i; exit }
                        }' "$f")
                [ -n "$uri" ] && { echo "$uri"; return; }
        done
        for f in /etc/apt/sources.list.d/*.sources; do
                [ -r "$f" ] || continue
                uri=$(awk -v suite="$SUITE" '
                        function flush() {
                                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
                                    enabled != "no" && uris != "" && uris !~ /security/) {
                                        split(uris, u, " "); print u[1]; found = 1; exit
                                }
                                types = suites = uris = enabled = ""
                        }
                        /^[ \t]*#/ { next }
                        /^[ \t]*$/ { flush(); next }
                        {
                                key = tolower($1); sub(/:$/, "", key)
                                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                                if (key == "types") types = val
                                else if (key == "suites") suites = val
                                else if (key == "uris") uris = val
                                else if (key == "enabled") enabled = tolower(val)
                        }
                        END { if (!found) flush() }' "$f")
                [ -n "$uri" ] && { echo "$uri"; return; }
        done
        echo http://deb.debian.org/debian
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mkfs.ext4 -d with root-owned files)"
for c in debootstrap mkfs.ext4 debugfs cc cp; do
        command -v "$c" >/dev/null 2>&1 || die "missing command: $c (run scripts/deps.sh)"
done

mkdir -p "$DATA"
# One builder at a time.
exec 9>"$DATA/.lock"
flock 9

if [ -f "$DATA/complete" ] && [ "$(cat "$DATA/complete")" = "$DATA_VERSION" ]; then
        log "data set complete in $DATA (reused)"
        exit 0
fi
rm -f "$DATA/complete"
START=$(date +%s)

# The helper, compiled outside the repository.
mkdir -p "$DATA/bin"
if [ ! -x "$DATA/bin/mkchange" ] || [ "$HERE/mkchange.c" -nt "$DATA/bin/mkchange" ]; then
        log "compiling bench/mkchange.c"
        cc -O2 -o "$DATA/bin/mkchange.tmp" "$HERE/mkchange.c"
        mv "$DATA/bin/mkchange.tmp" "$DATA/bin/mkchange"
fi
MKCHANGE=$DATA/bin/mkchange

# 1. The root file system (the slow step; kept across data set versions).
if [ ! -f "$DATA/root.done" ]; then
        MIRROR=${VBAK_BENCH_MIRROR:-$(find_mirror)}
        log "debootstrap --variant=minbase $SUITE from $MIRROR (about 70 s)"
        rm -rf "$DATA/root" "$DATA/root.tmp"
        if ! debootstrap --variant=minbase "$SUITE" "$DATA/root.tmp" "$MIRROR" >"$DATA/debootstrap.log" 2>&1; then
                tail -n 20 "$DATA/debootstrap.log" >&2
                die "debootstrap failed (full log: $DATA/debootstrap.log)"
        fi
        # Drop the downloaded .debs: not part of an installed system.
        rm -f "$DATA/root.tmp"/var/cache/apt/archives/*.deb
        mv "$DATA/root.tmp" "$DATA/root"
        echo "$MIRROR" >"$DATA/root.done"
fi

# 2. base.img: fixed UUID, hash seed and time, so that the same root gives
# the same image.
log "base.img: mkfs.ext4 -d root ($SIZE)"
rm -f "$DATA"/*.img "$DATA"/*.tmp "$DATA"/*.sparse "$DATA/changed.extents"
E2FSPROGS_FAKE_TIME=$EPOCH SOURCE_DATE_EPOCH=$EPOCH \
        mkfs.ext4 -q -F -L rootfs -U "$FS_UUID" -E "hash_seed=$FS_UUID" -d "$DATA/root" \
        "$DATA/base.img.tmp" "$SIZE" >/dev/null
# mkfs leaves zero-filled blocks allocated (inode tables, journal); make them
# holes, as cp --sparse=always does for the copies below, so that every image
# has the same allocation layout where it holds the same data.
cp --sparse=always "$DATA/base.img.tmp" "$DATA/base.img.sparse"
rm "$DATA/base.img.tmp"
mv "$DATA/base.img.sparse" "$DATA/base.img"

# 3. Four clones: a small unique file each (written through the file system,
# so its inode, directory entry, bitmaps and data block change) plus a few
# dozen 4 KiB writes at seeded offsets inside the allocated area.
for n in 1 2 3 4; do
        log "clone$n.img"
        img=$DATA/clone$n.img.tmp
        cp --sparse=always "$DATA/base.img" "$img"
        {
                printf 'clone %s of the vbak benchmark image\n' "$n"
                printf 'hostname: bench-clone-%s\n' "$n"
                printf "%3000s" "" | tr " " "$n"
                printf '\n'
        } >"$DATA/clone-$n.txt"
        if ! E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -R "write $DATA/clone-$n.txt /etc/clone-$n" "$img" \
                >/dev/null 2>"$DATA/debugfs.log"; then
                die "debugfs write into clone$n failed: $(cat "$DATA/debugfs.log")"
        fi
        # debugfs reports some failures only in its output: check the file.
        debugfs -R "cat /etc/clone-$n" "$img" 2>/dev/null | cmp -s - "$DATA/clone-$n.txt" ||
                die "debugfs did not write /etc/clone-$n into clone$n: $(cat "$DATA/debugfs.log")"
        rm -f "$DATA/clone-$n.txt" "$DATA/debugfs.log"
        "$MKCHANGE" -a -s "$((1000 + n))" -n "$CLONE_WRITES" -b 4096 "$img"
        mv "$img" "$DATA/clone$n.img"
done

# 4. changed.img: the incremental's input, and its changed extents.
log "changed.img: $CHANGE_COUNT random writes of $CHANGE_BYTES bytes"
cp --sparse=always "$DATA/base.img" "$DATA/changed.img.tmp"
"$MKCHANGE" -s "$CHANGE_SEED" -n "$CHANGE_COUNT" -b "$CHANGE_BYTES" \
        -e "$DATA/changed.extents.tmp" "$DATA/changed.img.tmp"
mv "$DATA/changed.extents.tmp" "$DATA/changed.extents"
mv "$DATA/changed.img.tmp" "$DATA/changed.img"

sync
echo "$DATA_VERSION" >"$DATA/complete.tmp"
mv "$DATA/complete.tmp" "$DATA/complete"
log "data set built in $(($(date +%s) - START)) s: $DATA"
