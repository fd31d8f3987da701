#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Damage in a dedup pool is found and named: a flipped byte in a chunk, a
# missing chunk, a garbage pool.json, a truncated manifest, a truncated index.
# Restores of damaged restore points fail without leaving a target behind.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

make_image img 64
pool=$WORK/pool
pool_init "$pool" --fsync none
# Two restore points of the same image share every chunk; a third VM's does not.
idA=$(backup_json "$pool" vm1 vda img | json_get id)
idB=$(backup_json "$pool" vm1 vda img | json_get id)
truncate -s 32M other.img
write_random other.img $((5 * MiB)) $((300 * KiB))
idC=$(backup_json "$pool" vm2 vda other.img | json_get id)
expect_exit 0 "$VBAK" pool verify "$pool"

# The biggest chunk: random data, used once in the image.
chunk=$(find "$pool/chunks" -type f -printf '%s %p\n' | sort -n | tail -n1 | cut -d' ' -f2)
[[ -n $chunk ]] || die "no chunk files under $pool/chunks"
digest=${chunk##*/}
cp "$chunk" chunk.orig

flip_byte() { # FILE OFFSET
        local b
        b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
        printf '%b' "$(printf '\\%03o' $((b ^ 0x5a)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

info "a flipped byte in chunk $digest"
flip_byte "$chunk" $(($(stat -c %s "$chunk") / 2))
cmp -s "$chunk" chunk.orig && die "flip_byte did not change $chunk"
expect_exit 6 "$VBAK" pool verify "$pool"
cp "$LAST_OUT" verify.txt
assert_contains verify.txt "chunk-corrupt" "verify output for a flipped byte"
assert_contains verify.txt "$digest" "verify output names the damaged chunk"
assert_contains verify.txt "$idA" "verify output names restore point A that uses the chunk"
assert_contains verify.txt "$idB" "verify output names restore point B that uses the chunk"
assert_not_contains verify.txt "$idC" "verify output names only the restore points that use the chunk"
# where the chunk is used: "... disk vda, offset N"
where=$(grep -o 'disk vda, offset [0-9]*' verify.txt | sed -n 1p) ||
        die "verify output names no disk and offset for $digest: $(cat verify.txt)"
offset=${where##* }

expect_exit 6 "$VBAK" pool verify "$pool" --json
cp "$LAST_OUT" verify.json
assert_eq 1 "$(json_get problems <verify.json)" "verify --json: problems"
assert_eq 2 "$(json_get broken_restore_points <verify.json)" "verify --json: broken_restore_points"
assert_contains verify.json '"details": [' "verify --json: the problems array"
assert_contains verify.json '"kind": "chunk-corrupt"' "verify --json: the problem's kind"
assert_contains verify.json "\"object\": \"$digest\"" "verify --json: the problem's object"
assert_contains verify.json '"restore_points": [' "verify --json: the problem's restore points"
# verify of C alone is clean
expect_exit 0 "$VBAK" pool verify "$pool" "$idC"

expect_exit 5 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
assert_contains "$LAST_ERR" "vda" "restore message names the disk"
assert_contains "$LAST_ERR" "offset $offset" "restore message names the offset of the damaged chunk"
[[ ! -e restA.img ]] || die "a failed restore created its target restA.img under the final name"
# --json: the error object
expect_exit 5 "$VBAK" pool restore "$pool" "$idB" --disk vda --target restB.img --json
assert_eq 5 "$(json_get code <"$LAST_OUT")" "restore --json: error.code"
[[ ! -e restB.img ]] || die "a failed restore created its target restB.img under the final name"
restore_cmp "$pool" "$idC" vda other.img

cp chunk.orig "$chunk"
expect_exit 0 "$VBAK" pool verify "$pool"

info "a missing chunk"
rm "$chunk"
expect_exit 16 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
assert_contains "$LAST_ERR" "vda" "restore message for a missing chunk names the disk"
assert_contains "$LAST_ERR" "offset $offset" "restore message names the offset of the missing chunk"
[[ ! -e restA.img ]] || die "a failed restore created its target restA.img under the final name"
expect_exit 6 "$VBAK" pool verify "$pool"
assert_contains "$LAST_OUT" "chunk-missing" "verify output for a missing chunk"
assert_contains "$LAST_OUT" "$digest" "verify output names the missing chunk"
assert_contains "$LAST_OUT" "$idA" "verify output names restore point A"
assert_contains "$LAST_OUT" "$idB" "verify output names restore point B"
cp chunk.orig "$chunk"
expect_exit 0 "$VBAK" pool verify "$pool"
restore_cmp "$pool" "$idA" vda img

info "a truncated index"
fidxA=$(find "$pool/vms" -path "*/$idA/*" -name '*.fidx')
[[ -f $fidxA ]] || die "no .fidx for $idA under $pool/vms"
cp "$fidxA" fidx.orig
truncate -s $(($(stat -c %s "$fidxA") - 7)) "$fidxA"
expect_exit 6 "$VBAK" pool verify "$pool"
assert_contains "$LAST_OUT" "index-corrupt" "verify output for a truncated index"
assert_contains "$LAST_OUT" "$idA" "verify output names the restore point of the truncated index"
assert_not_contains "$LAST_OUT" "$idB" "verify output for A's index"
expect_exit 5 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
[[ ! -e restA.img ]] || die "a failed restore created its target restA.img under the final name"
restore_cmp "$pool" "$idB" vda img
# gc must not remove anything while an index cannot be read
expect_exit 5 "$VBAK" pool gc "$pool" --grace 0
truncate -s 100 "$fidxA"
expect_exit 6 "$VBAK" pool verify "$pool"
assert_contains "$LAST_OUT" "index-corrupt" "verify output for an index cut to 100 bytes"
expect_exit 5 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
cp fidx.orig "$fidxA"
expect_exit 0 "$VBAK" pool verify "$pool"

info "a truncated and a garbage manifest"
manB=$(find "$pool/vms" -path "*/$idB/manifest.json")
[[ -f $manB ]] || die "no manifest.json for $idB under $pool/vms"
cp "$manB" manifest.orig
truncate -s $(($(stat -c %s "$manB") / 2)) "$manB"
for garbage in truncated binary; do
        [[ $garbage == binary ]] && head -c 500 /dev/urandom >"$manB"
        expect_exit 0 "$VBAK" pool list "$pool" --json
        json_ids <"$LAST_OUT" >ids.txt
        assert_contains ids.txt "$idA" "list with a $garbage manifest of B still lists A"
        assert_not_contains ids.txt "$idB" "list skips the restore point with a $garbage manifest"
        assert_contains "$LAST_ERR" "warning" "list warns about the $garbage manifest"
        assert_contains "$LAST_ERR" "$idB" "list's warning names the damaged restore point (its folder)"
        expect_exit 6 "$VBAK" pool verify "$pool"
        assert_contains "$LAST_OUT" "manifest" "verify output for a $garbage manifest"
        assert_contains "$LAST_OUT" "$idB" "verify output names the damaged manifest's restore point (its folder)"
        expect_exit 0 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
        rm -f restA.img
done
# gc must not remove anything while a manifest cannot be read
nchunks=$(find "$pool/chunks" -type f | wc -l)
expect_exit 5 "$VBAK" pool gc "$pool" --grace 0
assert_eq "$nchunks" "$(find "$pool/chunks" -type f | wc -l)" "chunks after gc refused to run on a damaged pool"
cp manifest.orig "$manB"
expect_exit 0 "$VBAK" pool verify "$pool"

info "a garbage pool.json"
cp "$pool/pool.json" pool.json.orig
printf '{"format": "vbak-pool", "version": ' >"$pool/pool.json"
for verb in list verify stats; do
        expect_exit 4 "$VBAK" pool "$verb" "$pool"
        assert_contains "$LAST_ERR" "pool.json" "pool $verb with a garbage pool.json: message"
done
expect_exit 4 "$VBAK" pool restore "$pool" "$idA" --disk vda --target restA.img
expect_exit 4 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img
head -c 300 /dev/urandom >"$pool/pool.json"
expect_exit 4 "$VBAK" pool list "$pool"
assert_contains "$LAST_ERR" "pool.json" "pool list with a random pool.json: message"
echo '{"format": "vbak-pool", "version": 99}' >"$pool/pool.json"
expect_exit 4 "$VBAK" pool list "$pool"
: >"$pool/pool.json"
expect_exit 4 "$VBAK" pool list "$pool"
cp pool.json.orig "$pool/pool.json"
expect_exit 0 "$VBAK" pool verify "$pool"
[[ ! -e restA.img ]] || die "restA.img exists"
exit 0
