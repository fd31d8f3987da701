#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# gc and prune: gc frees the chunks of pruned restore points, never removes a
# chunk a running backup needs, and prune never breaks an incremental chain.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

count_chunks() {
        find "$1/chunks" -type f | wc -l
}

info "(a) gc frees the chunks of a pruned restore point"
pool=$WORK/pool-a
pool_init "$pool" --fsync none
make_image x.img 64
idA=$(backup_json "$pool" vm1 vda x.img | json_get id)
make_image y.img 32
idB=$(backup_json "$pool" vm1 vda y.img | json_get id)
n_before=$(count_chunks "$pool")
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 1 --json
assert_contains "$LAST_OUT" "$idA" "prune --keep-last 1 --json names the removed restore point"
assert_eq "$idB" "$(list_ids "$pool")" "restore points after prune --keep-last 1"
assert_eq "$n_before" "$(count_chunks "$pool")" "chunks after prune (only gc removes chunks)"
# The default grace period keeps the fresh chunks.
expect_exit 0 "$VBAK" pool gc "$pool" --json
assert_eq 0 "$(json_get chunks_removed <"$LAST_OUT")" "chunks_removed by gc with the default grace (1h) of chunks just written"
# --dry-run counts but removes nothing.
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --dry-run --json
would=$(json_get chunks_removed <"$LAST_OUT")
assert_cmp -gt "$would" 0 "chunks_removed of gc --grace 0 --dry-run after a prune"
assert_eq "$n_before" "$(count_chunks "$pool")" "chunks after gc --dry-run"
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --json
cp "$LAST_OUT" gc.json
removed=$(json_get chunks_removed <gc.json)
assert_cmp -gt "$removed" 0 "chunks_removed of gc --grace 0 after a prune"
assert_eq "$would" "$removed" "chunks removed by gc vs counted by its --dry-run"
assert_cmp -gt "$(json_get bytes_removed <gc.json)" 0 "bytes_removed of gc --grace 0 after a prune"
assert_eq $((n_before - removed)) "$(count_chunks "$pool")" "chunks left after gc"
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$idB" vda y.img
# a second gc finds nothing to do
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --json
assert_eq 0 "$(json_get chunks_removed <"$LAST_OUT")" "chunks_removed of a second gc"

info "(b) gc during a backup removes nothing the backup needs"
need_cmd strace pgrep
pool=$WORK/pool-b
pool_init "$pool" --fsync none
# 4 KiB every 64 KiB over 48 MiB: many small reads, slowed under strace.
make_fragmented_image frag.img 64 48
idA=$(backup_json "$pool" vm1 vda frag.img | json_get id)
idT=$(backup_json "$pool" vm1 vda y.img | json_get id)
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 1
assert_eq "$idT" "$(list_ids "$pool")" "restore points after pruning A"
# A's chunks are unreferenced now, but still there; a new backup of the same
# image finds them (dedup hits) while gc runs.
strace -f -o /dev/null -e trace=pread64 -e inject=pread64:delay_exit=20000 \
        "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source frag.img --json >slow.json 2>slow.err &
slow_pid=$!
gc_removed=0
gc_runs=0
sleep 0.3
while running "$slow_pid"; do
        rc=0
        "$VBAK" pool gc "$pool" --grace 0 --json >gc.json 2>gc.err || rc=$?
        [[ $rc == 0 || $rc == 10 ]] || die "gc during a backup: exit $rc: $(cat gc.json gc.err)"
        if [[ $rc == 0 ]]; then
                gc_runs=$((gc_runs + 1))
                gc_removed=$((gc_removed + $(json_get chunks_removed <gc.json)))
        fi
        sleep 0.25
done
rc=0
wait "$slow_pid" || rc=$?
[[ $rc == 0 ]] || die "the backup that ran during gc failed: exit $rc: $(cat slow.json slow.err)"
info "$gc_runs gc runs during the backup removed $gc_removed chunks"
assert_cmp -ge "$gc_runs" 2 "gc runs while the backup ran (the backup was too fast?)"
idN=$(json_get id <slow.json)
expect_exit 0 "$VBAK" pool verify "$pool"
cat "$LAST_OUT"
restore_cmp "$pool" "$idN" vda frag.img
restore_cmp "$pool" "$idT" vda y.img
# and after one more gc
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$idN" vda frag.img

info "(c) prune keeps incremental chains"
pool=$WORK/pool-c
pool_init "$pool" --fsync none
make_image img 64
chain=("$(backup_json "$pool" vm1 vda img | json_get id)")
for i in 1 2 3; do
        write_random img $((i * 5 * MiB + 777)) 5000
        echo "$((i * 5 * MiB + 777)) 5000" >changes.txt
        chain+=("$(backup_json "$pool" vm1 vda img --changed changes.txt --parent "${chain[-1]}" | json_get id)")
done
cp img img.chain
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 1 --json
cp "$LAST_OUT" prune.json
assert_contains prune.json '"removed": []' "prune --keep-last 1 --json of a single chain"
assert_eq 4 "$(list_ids "$pool" | wc -l)" "restore points after prune --keep-last 1 of a full + 3 incrementals (the chain of the newest)"
restore_cmp "$pool" "${chain[3]}" vda img.chain
write_random img $((50 * MiB)) $((1 * MiB))
id2=$(backup_json "$pool" vm1 vda img | json_get id)
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 1 --dry-run --json
cp "$LAST_OUT" prune.json
assert_eq true "$(json_get dry_run <prune.json)" "prune --dry-run --json: dry_run"
# "removed": [ the 4 ids of the old chain ]
removed=$(sed -n '/"removed": \[/,/\]/p' prune.json)
for id in "${chain[@]}"; do
        grep -qF "$id" <<<"$removed" || die "prune --dry-run --json does not list $id of the old chain as removed: $(cat prune.json)"
done
grep -qF "$id2" <<<"$removed" && die "prune --dry-run --json would remove the newest restore point $id2: $(cat prune.json)"
assert_eq 5 "$(list_ids "$pool" | wc -l)" "restore points after prune --dry-run"
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 2
assert_eq 5 "$(list_ids "$pool" | wc -l)" "restore points after prune --keep-last 2 (the second newest is the chain's end)"
expect_exit 0 "$VBAK" pool prune "$pool" --vm vm1 --keep-last 1
assert_eq "$id2" "$(list_ids "$pool")" "restore points after prune --keep-last 1 with a newer full"
expect_exit 0 "$VBAK" pool gc "$pool" --grace 0
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$id2" vda img
exit 0
