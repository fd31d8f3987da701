#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 during a backup, at several points: no restore point appears, the
# pool still verifies, the next backup works, gc removes the leftovers.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd strace pgrep

# 4 KiB of data every 64 KiB over 64 MiB: 1024 small reads, each slowed by
# 20 ms under strace, so the backup takes several seconds.
make_fragmented_image frag.img 96 64
make_image good.img 64
pool=$WORK/pool
pool_init "$pool" --fsync always
base_id=$(backup_json "$pool" vm1 vda good.img | json_get id)

# slow_backup POOL SOURCE [ARGS...]: starts a slowed backup in the background;
# sets slow_pid (the strace) and vbak_pid (the traced vbak)
slow_backup() {
        local pool=$1 src=$2
        shift 2
        strace -f -o /dev/null -e trace=pread64 -e inject=pread64:delay_exit=20000 \
                "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source "$src" "$@" >slow.out 2>slow.err &
        slow_pid=$!
        vbak_pid=
        # strace's child once it has become vbak: the process itself, not
        # one of its threads, and not the fork before its exec.
        for _ in $(seq 100); do
                for p in $(pgrep -P "$slow_pid" || true); do
                        [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$(readlink -f "$VBAK")" ]] &&
                                grep -qx "Tgid:[[:space:]]*$p" "/proc/$p/status" 2>/dev/null && vbak_pid=$p
                done
                [[ -n $vbak_pid ]] && return 0
                sleep 0.02
        done
        die "strace (pid $slow_pid) started no vbak"
}

# list_dirs_without_manifest POOL: restore point folders that have no manifest
partial_dirs() {
        find "$1/vms" -mindepth 3 -maxdepth 3 -type d '!' -exec test -e '{}/manifest.json' ';' -print
}

killed=0
for delay in 0.2 0.5 1; do
        info "kill -9 after $delay s"
        slow_backup "$pool" frag.img
        sleep "$delay"
        if ! kill -9 "$vbak_pid" 2>/dev/null; then
                ps -o pid,ppid,stat,comm -p "$vbak_pid","$slow_pid" >&2 || true
                die "the slowed backup (pid [$vbak_pid]) ended before it was killed after $delay s: $(cat slow.out slow.err)"
        fi
        rc=0
        wait "$slow_pid" 2>/dev/null || rc=$?
        [[ $rc != 0 ]] || die "the killed backup's strace exited 0"
        killed=$((killed + 1))

        # No new restore point; what exists still verifies and restores.
        assert_eq "$base_id" "$(list_ids "$pool")" "restore points after a backup killed after $delay s"
        expect_exit 0 "$VBAK" pool verify "$pool"
        info "left behind: $(partial_dirs "$pool" | wc -l) unfinished restore point folders," \
                "$(find "$pool/tmp" -type f | wc -l) temp files, $(find "$pool/chunks" -type f | wc -l) chunks"
done
[[ -n $(partial_dirs "$pool") ]] ||
        die "no unfinished restore point folder under $pool/vms after $killed killed backups (was the kill too early?)"

info "the next backup after the crashes"
id2=$(backup_json "$pool" vm1 vda frag.img | json_get id)
restore_cmp "$pool" "$id2" vda frag.img
restore_cmp "$pool" "$base_id" vda good.img
expect_exit 0 "$VBAK" pool verify "$pool"

info "gc removes the leftovers"
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --json
cp "$LAST_OUT" gc.json
partial=$(json_get partial_removed <gc.json)
assert_cmp -ge "$partial" 1 "gc partial_removed after $killed killed backups"
left=$(partial_dirs "$pool")
[[ -z $left ]] || die "gc left restore point folders without manifest.json: $left"
ntmp=$(find "$pool/tmp" -type f | wc -l)
assert_cmp -le "$ntmp" 1 "files left in tmp/ after gc --grace 0"
nlocks=$(find "$pool/locks" -name 'writer-*' | wc -l)
assert_eq 0 "$nlocks" "writer lock files left in locks/ after gc (no writer runs)"
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$id2" vda frag.img
restore_cmp "$pool" "$base_id" vda good.img

# gc once more: nothing left to do
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --json
assert_eq 0 "$(json_get partial_removed <"$LAST_OUT")" "partial_removed of a second gc"
assert_eq 0 "$(json_get chunks_removed <"$LAST_OUT")" "chunks_removed of a second gc"

info "a killed incremental"
# 4 KiB every 64 KiB over 32 MiB: 512 reads (the image is the same, only the
# number of reads matters here)
seq 0 511 | awk '{ print $1 * 65536, 4096 }' >changes.txt
slow_backup "$pool" frag.img --changed changes.txt --parent "$id2"
sleep 0.3
kill -9 "$vbak_pid" 2>/dev/null || die "the slowed incremental ended before it was killed: $(cat slow.err)"
wait "$slow_pid" 2>/dev/null || true
assert_eq "$base_id $id2" "$(list_ids "$pool" | tr '\n' ' ' | sed 's/ $//')" "restore points after a killed incremental"
expect_exit 0 "$VBAK" pool verify "$pool"
id3=$(backup_json "$pool" vm1 vda frag.img --changed changes.txt --parent "$id2" | json_get id)
restore_cmp "$pool" "$id3" vda frag.img
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$id3" vda frag.img
exit 0
