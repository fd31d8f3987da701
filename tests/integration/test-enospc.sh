#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A full file system: a backup that does not fit fails with code 7 and
# commits nothing, what was there stays intact, gc cleans up; a restore to a
# full file system fails with 7 and leaves no target.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

mounts=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        local m
        for m in "${mounts[@]}"; do
                umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
}
trap cleanup EXIT
trap 'exit 143' TERM INT

mount_tmpfs() { # DIR SIZE
        mkdir -p "$1"
        mount -t tmpfs -o "size=$2,mode=0755" vbak-test "$1" || skip "cannot mount a tmpfs on $1"
        mounts+=("$1")
}

used_kib() {
        df -k --output=used "$1" | tail -n1 | tr -d ' '
}

mount_tmpfs "$WORK/fs" 24m
pool=$WORK/fs/pool

for fsync in always none; do
        info "pool with --fsync $fsync"
        rm -rf "$pool"
        pool_init "$pool" --fsync "$fsync"

        make_image fits.img 64
        id1=$(backup_json "$pool" vm1 vda fits.img | json_get id)
        used1=$(used_kib "$WORK/fs")

        # 32 MiB of random data does not fit in what is left of 24 MiB.
        truncate -s 48M big.img
        write_random big.img $((4 * MiB)) $((32 * MiB))
        expect_exit 7 "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source big.img
        grep -qi 'full' "$LAST_ERR" || die "message of a backup into a full pool does not say the file system is full:
$(show_last)"
        expect_exit 7 "$VBAK" pool backup "$pool" --vm vm2 --disk vda --source big.img --json
        assert_eq 7 "$(json_get code <"$LAST_OUT")" "backup --json into a full pool: error.code"
        assert_eq "$id1" "$(list_ids "$pool")" "restore points after backups that did not fit"

        # The first restore point is intact.
        expect_exit 0 "$VBAK" pool verify "$pool"
        restore_cmp "$pool" "$id1" vda fits.img

        # gc frees what the failed backups left.
        expect_exit 0 "$VBAK" pool gc "$pool" --grace 0 --json
        info "gc: $(tr -d ' \n' <"$LAST_OUT")"
        n=$(find "$pool/vms" -mindepth 3 -maxdepth 3 -type d '!' -exec test -e '{}/manifest.json' ';' -print | wc -l)
        assert_eq 0 "$n" "restore point folders without manifest.json after gc"
        assert_cmp -le "$(find "$pool/tmp" -type f | wc -l)" 1 "files left in tmp/ after gc"
        used2=$(used_kib "$WORK/fs")
        assert_cmp -le "$used2" $((used1 + 256)) "KiB used on the pool's file system after gc (it was $used1 KiB before the failed backups)"
        expect_exit 0 "$VBAK" pool verify "$pool"
        restore_cmp "$pool" "$id1" vda fits.img

        # And there is room again for a backup that fits.
        make_image fits2.img 32
        id2=$(backup_json "$pool" vm1 vda fits2.img | json_get id)
        restore_cmp "$pool" "$id2" vda fits2.img
done

info "restore to a full file system"
mount_tmpfs "$WORK/small" 2m
expect_exit 7 "$VBAK" pool restore "$pool" "$id1" --disk vda --target "$WORK/small/r.img"
grep -qi 'full\|space' "$LAST_ERR" || die "message of a restore to a full file system: $(show_last)"
[[ ! -e $WORK/small/r.img ]] || die "a restore that ran out of space left its target $WORK/small/r.img"
expect_exit 7 "$VBAK" pool restore "$pool" "$id1" --disk vda --target "$WORK/small/r.img" --json
assert_eq 7 "$(json_get code <"$LAST_OUT")" "restore --json to a full file system: error.code"
[[ ! -e $WORK/small/r.img ]] || die "a restore that ran out of space left its target $WORK/small/r.img"
exit 0
