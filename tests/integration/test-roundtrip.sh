#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Full backup and restore through dedup and standard pools: byte for byte,
# sparse, dedup of a second full, list/stats JSON, --help and usage errors.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

make_image img 64
data_bytes_max=$((6 * MiB)) # make_image writes about 4.2 MiB

for type in dedup standard; do
        info "pool type $type"
        pool=$WORK/pool-$type
        pool_init "$pool" --type "$type" --fsync none

        # Full backup.
        backup_json "$pool" vm1 vda img >b1.json
        assert_eq full "$(json_get type <b1.json)" "$type: type of the first backup"
        assert_eq null "$(json_get parent <b1.json)" "$type: parent of a full backup"
        assert_eq $((64 * MiB)) "$(json_get logical_size <b1.json)" "$type: logical_size"
        id1=$(json_get id <b1.json)
        read1=$(json_get bytes_read <b1.json)
        assert_cmp -gt "$read1" 0 "$type: bytes_read of a full backup"
        assert_cmp -le "$read1" "$data_bytes_max" "$type: bytes_read of a full backup reads only allocated data"

        # Restore: the same bytes, sparse.
        expect_exit 0 "$VBAK" pool restore "$pool" "$id1" --disk vda --target r1.img
        assert_same img r1.img "$type: restore of the full backup"
        [[ ! -e r1.img.partial ]] || die "$type: restore left r1.img.partial"
        assert_eq "$(stat -c %s img)" "$(stat -c %s r1.img)" "$type: apparent size of the restored file"
        alloc=$(allocated_bytes r1.img)
        assert_cmp -le "$alloc" "$data_bytes_max" "$type: restored file is sparse (allocated bytes vs ~4 MiB of data in a 64 MiB image)"
        rm -f r1.img

        # A second full of the same image.
        backup_json "$pool" vm1 vda img >b2.json
        id2=$(json_get id <b2.json)
        [[ $id1 != "$id2" ]] || die "$type: second backup got the same id $id1"
        if [[ $type == dedup ]]; then
                assert_eq 0 "$(json_get bytes_new <b2.json)" "dedup: bytes_new of a second full backup of the same image"
        fi
        restore_cmp "$pool" latest vda img
        restore_cmp "$pool" "$id1" vda img

        # list --json
        expect_exit 0 "$VBAK" pool list "$pool" --json
        cp "$LAST_OUT" list.json
        for f in '"id": ' '"vm": "vm1"' '"disks": [' '"name": "vda"' '"type": "full"' '"parent": null'; do
                assert_contains list.json "$f" "$type: list --json"
        done
        # (their order is checked below, "order of restore points")
        assert_eq "$(printf '%s\n' "$id1" "$id2" | sort)" "$(json_ids <list.json | sort)" "$type: list --json ids"
        # list of another VM: empty
        assert_eq "" "$(list_ids "$pool" --vm nosuchvm)" "$type: list --vm nosuchvm"
        expect_exit 0 "$VBAK" pool list "$pool"
        assert_contains "$LAST_OUT" "$id2" "$type: list (text)"

        # stats --json
        expect_exit 0 "$VBAK" pool stats "$pool" --json
        cp "$LAST_OUT" stats.json
        assert_eq "$type" "$(json_get type <stats.json)" "$type: stats type"
        assert_eq 2 "$(json_get restore_points <stats.json)" "$type: stats restore_points"
        dr=$(json_get dedup_ratio <stats.json)
        cr=$(json_get compression_ratio <stats.json)
        if [[ $type == dedup ]]; then
                # Two identical restore points share every chunk: 2.0.
                awk -v r="$dr" 'BEGIN { exit !(r > 1.9 && r < 2.1) }' ||
                        die "dedup: stats dedup_ratio: expected ~2.0 (two identical fulls), got $dr"
        else
                awk -v r="$dr" 'BEGIN { exit !(r > 0.9 && r < 1.1) }' ||
                        die "standard: stats dedup_ratio: expected ~1.0 (no dedup), got $dr"
        fi
        # 1 MiB of text among ~3 MiB of random data compresses.
        awk -v r="$cr" 'BEGIN { exit !(r > 1.05) }' ||
                die "$type: stats compression_ratio: expected > 1.05 (1 MiB of text in the image), got $cr"

        expect_exit 0 "$VBAK" pool verify "$pool"
done

info "--help and usage errors"
expect_exit 0 "$VBAK" pool --help
assert_contains "$LAST_OUT" "Usage" "pool --help"
for verb in init backup restore list verify gc prune stats; do
        expect_exit 0 "$VBAK" pool "$verb" --help
        assert_contains "$LAST_OUT" "Usage: vbak pool $verb" "pool $verb --help"
done

pool=$WORK/pool-dedup
expect_exit 2 "$VBAK" pool
expect_exit 2 "$VBAK" pool frobnicate "$pool"
expect_exit 2 "$VBAK" pool init
expect_exit 2 "$VBAK" pool init "$WORK/p2" --chunk-size 3M
expect_exit 2 "$VBAK" pool init "$WORK/p2" --type nosuchtype
expect_exit 2 "$VBAK" pool init "$WORK/p2" --fsync sometimes
expect_exit 2 "$VBAK" pool init "$WORK/p2" --compression zstd:99
expect_exit 2 "$VBAK" pool init "$WORK/p2" --no-such-option
[[ ! -e $WORK/p2/pool.json ]] || die "a failed init left $WORK/p2/pool.json"
expect_exit 2 "$VBAK" pool backup "$pool"
expect_exit 2 "$VBAK" pool backup "$pool" --vm vm1 --disk vda
expect_exit 2 "$VBAK" pool backup "$pool" --vm 'bad/name' --disk vda --source img
expect_exit 2 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --parent latest
expect_exit 2 "$VBAK" pool restore "$pool" latest --disk vda
expect_exit 2 "$VBAK" pool restore "$pool" --disk vda --target x
expect_exit 2 "$VBAK" pool list a b
expect_exit 2 "$VBAK" pool verify "$pool" --sample 0
expect_exit 2 "$VBAK" pool gc "$pool" --grace soon
expect_exit 2 "$VBAK" pool prune "$pool" --vm vm1
expect_exit 2 "$VBAK" pool prune "$pool" --keep-last 1
expect_exit 2 "$VBAK" pool stats
# usage errors with --json still print an error object
expect_exit 2 "$VBAK" pool gc "$pool" --json --grace soon
assert_eq 2 "$(json_get code <"$LAST_OUT")" "gc --json usage error: error.code"

# other stable codes
expect_exit 14 "$VBAK" pool init "$pool"
expect_exit 3 "$VBAK" pool list "$WORK/nopool"
expect_exit 3 "$VBAK" pool restore "$pool" 20000101T000000Z-000000 --disk vda --target x.img
expect_exit 3 "$VBAK" pool restore "$pool" latest --disk vdz --target x.img
expect_exit 3 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source "$WORK/nosuchimage"
[[ ! -e x.img && ! -e x.img.partial ]] || die "a failed restore created x.img or x.img.partial"
info "order of restore points made within one second"
# Ids are the UTC time plus a random suffix; restore points made in the same
# second must still list oldest first, and 'latest' must be the newest.
truncate -s 32M small.img
write_random small.img $((3 * MiB)) $((64 * KiB))
pool_init "$WORK/pool-order" --fsync none
ids=()
for _ in 1 2 3 4 5 6; do
        ids+=("$(backup_json "$WORK/pool-order" vm1 vda small.img | json_get id)")
done
assert_eq "${ids[*]}" "$(list_ids "$WORK/pool-order" | tr '\n' ' ' | sed 's/ $//')" \
        "list --json of 6 restore points made one after the other (most in the same second): oldest first"
expect_exit 0 "$VBAK" pool restore "$WORK/pool-order" latest --disk vda --target latest.img --json
assert_eq "${ids[5]}" "$(json_get id <"$LAST_OUT")" "restore 'latest' picks the newest restore point"
exit 0
