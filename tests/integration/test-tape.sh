#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Tape pools on file-backed volumes: three restore points of a dedup pool
# copied to a tape pool whose first volume fills up during the copy, listed
# with their volume and file, restored byte for byte; a full media pool, a
# restore point larger than a volume, a copy back to a dedup pool, usage
# errors. (Real drives, /dev/nstN, are not available to the tests.)
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for i in 1 2 3; do
        rm -f img$i
        head -c $((4 * MiB)) /dev/urandom >img$i
done

dd=$WORK/pool-dedup
pool_init "$dd" --fsync none
for i in 1 2 3; do
        backup_json "$dd" vm$i vda img$i >b$i.json
done

# Each restore point takes about 4.3 MiB on tape: two fit on a 10 MiB volume.
tape=$WORK/pool-tape
pool_init "$tape" --type tape --device "$WORK/vols" --volumes V1,V2 --volume-size 10M --fsync none
[[ -f $tape/tape.json ]] || die "init --type tape wrote no tape.json"

info "copy dedup -> tape"
expect_exit 0 "$VBAK" pool copy "$dd" "$tape" --all --json
cp "$LAST_OUT" copy.json
assert_contains copy.json '"volume": "V1"' "copy --json"
assert_contains copy.json '"volume": "V2"' "copy --json: the third restore point on the second volume"
[[ -f $WORK/vols/V1.vtape && -f $WORK/vols/V2.vtape ]] || die "no volume files in $WORK/vols"
assert_cmp -le "$(stat -c %s "$WORK/vols/V1.vtape")" $((10 * MiB)) "V1 stays within its capacity"
assert_contains "$tape/tape.json" '"full": true' "V1 is marked full"

info "list of the tape pool"
expect_exit 0 "$VBAK" pool list "$tape"
cp "$LAST_OUT" list.txt
assert_contains list.txt "(volume V1 file 1)" "list: first restore point"
assert_contains list.txt "(volume V1 file 2)" "list: second restore point"
assert_contains list.txt "(volume V2 file 1)" "list: third restore point"
for i in 1 2 3; do
        assert_eq 1 "$(grep -c " vm$i " list.txt)" "list: vm$i"
done
expect_exit 0 "$VBAK" pool list "$tape" --json
cp "$LAST_OUT" list.json
assert_contains list.json '"file": 2' "list --json: file numbers"

info "restore from tape"
for i in 1 2 3; do
        restore_cmp "$tape" "$(list_ids "$tape" --vm vm$i)" vda img$i
done
restore_cmp "$tape" latest vda img3

info "the media pool is full"
expect_exit 0 "$VBAK" pool copy "$dd" "$tape" "$(json_get id <b1.json)"
assert_contains "$LAST_OUT" "volume V2 file 2" "a fourth restore point fills V2"
expect_exit 7 "$VBAK" pool copy "$dd" "$tape" "$(json_get id <b2.json)"
assert_contains "$LAST_ERR" "the media pool is full: add volumes" "copy into a full media pool"
assert_eq 4 "$(list_ids "$tape" | wc -l)" "nothing was added by the failed copy"
restore_cmp "$tape" latest vda img1

info "a restore point larger than a volume"
small=$WORK/pool-small
pool_init "$small" --type tape --device "$WORK/vols-small" --volumes S1 --volume-size 2M --fsync none
expect_exit 7 "$VBAK" pool copy "$dd" "$small" "$(json_get id <b2.json)"
assert_contains "$LAST_ERR" "does not fit on a whole volume" "copy larger than a volume"
assert_eq "" "$(list_ids "$small")" "nothing committed to the small pool"

info "copy tape -> dedup"
back=$WORK/pool-back
pool_init "$back" --fsync none
expect_exit 0 "$VBAK" pool copy "$tape" "$back" latest --vm vm2
assert_contains "$LAST_OUT" "Copied" "copy back"
restore_cmp "$back" latest vda img2

info "verify and stats of the tape pool"
expect_exit 0 "$VBAK" pool verify "$tape"
expect_exit 0 "$VBAK" pool stats "$tape" --json
assert_eq 4 "$(json_get restore_points <"$LAST_OUT")" "stats: restore points"

info "usage"
expect_exit 0 "$VBAK" pool copy --help
assert_contains "$LAST_OUT" "Usage: vbak pool copy" "copy --help"
expect_exit 2 "$VBAK" pool copy "$dd" "$tape"
expect_exit 2 "$VBAK" pool copy "$dd" "$tape" --all "$(json_get id <b1.json)"
expect_exit 3 "$VBAK" pool copy "$dd" "$back" nosuchid
expect_exit 2 "$VBAK" pool init "$WORK/p2" --type tape --volumes V1
expect_exit 2 "$VBAK" pool init "$WORK/p2" --type tape --device "$WORK/v2" --volumes V1,V1
expect_exit 2 "$VBAK" pool init "$WORK/p2" --device "$WORK/v2"
info "ok"
