# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/object.sh -- the object pool on OpenStack Swift (s3api) on loopback,
# sourced by bench/run.sh (section "object"): the same full backup of
# base.img, incremental of changed.img and restore of the incremental as the
# vbak rows on the file-system dedup pool, so that the table shows what the
# store costs. Swift runs single-node from tests/integration/swift.sh, its
# devices folder on STORE like every repository; one proxy process (Python)
# serves every request, which is the limit here, not vbak.
#
# Uses run.sh's helpers and variables: timed, row, warm, die, log, need,
# jnum, jstr, mib, dir_bytes, VBAK, DATA, STORE, LOG, LOGICAL, ALLOC_BASE,
# ALLOC_CHANGED.

OBJ_WORK=
# The helpers swift.sh expects from the tests' vm.sh.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { (: <>"/dev/tcp/$1/$2") 2>/dev/null; }
running() { kill -0 "$1" 2>/dev/null; }
track() { :; }
skip() { die "$*"; }

object_start() {
        OBJ_WORK=$STORE/object-bench
        rm -rf "$OBJ_WORK"
        mkdir -p "$OBJ_WORK"
        WORK=$OBJ_WORK
        # shellcheck source=tests/integration/swift.sh
        source "$HERE/../tests/integration/swift.sh"
        need_swift
        start_swift >"$LOG/swift-start.log" 2>&1 || die "Swift did not start (see $LOG/swift-start.log)"
        printf '%s\n' "$S3_ACCESS" >"$OBJ_WORK/access.key"
        printf '%s\n' "$S3_SECRET" >"$OBJ_WORK/secret.key"
        chmod 600 "$OBJ_WORK/access.key" "$OBJ_WORK/secret.key"
}

object_stop() {
        if declare -F stop_swift >/dev/null && [ -n "$OBJ_WORK" ]; then stop_swift; fi
        OBJ_WORK=
}

round_object() { # round_object ROUND
        local pool=$OBJ_WORK/pool-r$1 tag=r$1-object target=$STORE/object-restore.img out g0 g1 id
        log "  vbak: the same backups and restore into an object pool on Swift"
        "$VBAK" pool init "$pool" --type object --endpoint "$S3_ENDPOINT" --bucket bench --prefix "r$1" \
                --region "$S3_REGION" --access-key-file "$OBJ_WORK/access.key" \
                --secret-key-file "$OBJ_WORK/secret.key" >"$LOG/$tag-init.out" 2>&1 ||
                die "object pool init failed (see $LOG/$tag-init.out)"
        warm "$DATA/base.img"
        g0=$(dir_bytes "$SWIFT_DIR/srv")
        out=$LOG/$tag-full.json
        timed "$tag-full" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$DATA/base.img" --json
        g1=$(dir_bytes "$SWIFT_DIR/srv")
        row obj-full vbak "object: full backup base.img" "$LOGICAL" "$ALLOC_BASE" $((g1 - g0)) \
                "Swift on loopback; read $(mib "$(need "$(jnum bytes_read "$out")" "bytes_read in $out")") MiB"
        warm "$DATA/changed.img"
        g0=$g1
        out=$LOG/$tag-incr.json
        timed "$tag-incr" "$out" "$VBAK" pool backup "$pool" --vm bench --disk vda --source "$DATA/changed.img" \
                --changed "$DATA/changed.extents" --parent latest --json
        g1=$(dir_bytes "$SWIFT_DIR/srv")
        id=$(need "$(jstr id "$out")" "id in $out")
        row obj-incr vbak "object: incremental changed.img" "$LOGICAL" "$ALLOC_CHANGED" $((g1 - g0)) \
                "read $(mib "$(jnum bytes_read "$out")") MiB, new $(mib "$(jnum bytes_new "$out")") MiB"
        rm -f "$target"
        sync
        timed "$tag-restore" "$LOG/$tag-restore.json" "$VBAK" pool restore "$pool" "$id" --disk vda \
                --target "$target" --json
        row obj-restore vbak "object: restore incr to file" "$LOGICAL" "$ALLOC_CHANGED" 0 "from Swift on loopback"
        cmp "$DATA/changed.img" "$target" >"$LOG/$tag-cmp.out" 2>&1 ||
                die "OBJECT POOL RESTORE DIFFERS FROM changed.img: restore point $id of $pool"
        rm -f "$target"
}
