#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Incrementals from an extents file: only the changed bytes are read, every
# restore point of a chain of 3 incrementals restores byte for byte, bad
# extents and bad parents are refused.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

size=$((64 * MiB))
make_image img 64

# change KIND OFFSET LENGTH: changes img and records the extent in changes.txt
change() {
        case $1 in
        random) write_random img "$2" "$3" ;;
        zeros) write_zeros img "$2" "$3" ;;
        esac
        echo "$2 $3" >>changes.txt
        changed=$((changed + $3))
}

# incremental POOL PARENT_ARG EXPECTED_PARENT_ID: backs up changes.txt, checks
# bytes_read and the parent; sets inc_id
incremental() {
        backup_json "$1" vm1 vda img --changed changes.txt --parent "$2" >inc.json
        assert_eq incremental "$(json_get type <inc.json)" "$type: type of the incremental"
        assert_eq "$3" "$(json_get parent <inc.json)" "$type: parent of the incremental"
        assert_eq "$changed" "$(json_get bytes_read <inc.json)" \
                "$type: bytes_read of an incremental (the sum of the changed lengths in changes.txt: $(tr '\n' ',' <changes.txt))"
        inc_id=$(json_get id <inc.json)
}

for type in dedup standard; do
        info "pool type $type"
        pool=$WORK/pool-$type
        make_image img 64
        cp --sparse=always img img.0
        pool_init "$pool" --type "$type" --fsync none
        full_id=$(backup_json "$pool" vm1 vda img | json_get id)

        # 1: small writes inside chunks, one across a chunk boundary (8 MiB is
        # one for 1, 2 and 4 MiB chunks), zeros over data, data in a hole.
        : >changes.txt
        changed=0
        change random $((1 * MiB + 1000)) 3000
        change random $((8 * MiB - 5000)) 10000
        change zeros $((20 * MiB + 64 * KiB)) $((128 * KiB))
        change random $((40 * MiB + 12345)) 70000
        cp --sparse=always img img.1
        incremental "$pool" latest "$full_id"
        id1=$inc_id

        # 2: a whole aligned 4 MiB region, the last bytes of the disk.
        : >changes.txt
        changed=0
        change random $((28 * MiB)) $((4 * MiB))
        change random $((size - 100)) 100
        cp --sparse=always img img.2
        incremental "$pool" "$id1" "$id1"
        id2=$inc_id

        # 3: the first byte, a data region zeroed entirely, a write into the
        # region changed by 2.
        : >changes.txt
        changed=0
        change random 0 1
        change zeros $((1 * MiB)) $((1 * MiB))
        change random $((30 * MiB + 7)) 4093
        cp --sparse=always img img.3
        incremental "$pool" "$id2" "$id2"
        id3=$inc_id

        # Every restore point of the chain restores as the image was then.
        restore_cmp "$pool" "$full_id" vda img.0
        restore_cmp "$pool" "$id1" vda img.1
        restore_cmp "$pool" "$id2" vda img.2
        restore_cmp "$pool" "$id3" vda img.3
        expect_exit 0 "$VBAK" pool verify "$pool"

        # An incremental with no changes at all reads nothing.
        : >changes.txt
        changed=0
        incremental "$pool" "$id3" "$id3"
        restore_cmp "$pool" "$inc_id" vda img.3

        # Bad extents: past the end of the disk, or not numbers -> usage (2).
        echo "$((size - 1000)) 2000" >bad.txt
        expect_exit 2 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --changed bad.txt --parent latest
        assert_contains "$LAST_ERR" "bad.txt" "$type: message for an extent past the end"
        echo "$size 1" >bad.txt
        expect_exit 2 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --changed bad.txt --parent latest
        echo "twelve 1" >bad.txt
        expect_exit 2 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --changed bad.txt --parent latest

        # Bad parents -> 11.
        echo "0 4096" >ok.txt
        expect_exit 11 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --changed ok.txt \
                --parent 20000101T000000Z-abcdef
        assert_contains "$LAST_ERR" "20000101T000000Z-abcdef" "$type: message for an unknown parent"
        expect_exit 11 "$VBAK" pool backup "$pool" --vm vm2 --disk vda --source img --changed ok.txt --parent latest
        expect_exit 11 "$VBAK" pool backup "$pool" --vm vm2 --disk vda --source img --changed ok.txt --parent "$id1"
        expect_exit 11 "$VBAK" pool backup "$pool" --vm vm1 --disk vdb --source img --changed ok.txt --parent "$id1"
        cp --sparse=always img bigger.img
        truncate -s $((size + 2 * MiB)) bigger.img
        expect_exit 11 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source bigger.img --changed ok.txt \
                --parent "$id1"

        # None of the refused ones left a restore point.
        assert_eq 5 "$(list_ids "$pool" | wc -l)" "$type: restore points after the refused incrementals"
        rm -f img.0 img.1 img.2 img.3 bigger.img
done
exit 0
