#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The fsync policy is real. With --fsync always every new chunk is on stable
# storage before its name appears under chunks/ (an fdatasync of the chunk's
# file or a syncfs after it was written), the index is fsync'd before it is
# renamed, and a syncfs makes the chunk names durable before the manifest
# appears. With --fsync none a backup makes no fsync, fdatasync or syncfs call.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd strace

make_image img 64

# calls FILE SYSCALL: the call count of SYSCALL in an `strace -c` summary
calls() {
        awk -v s="$2" '$NF == s && $1 ~ /^[0-9.]+$/ { n = $4 } END { print n + 0 }' "$1"
}

for type in dedup standard; do
        info "$type pool, --fsync always"
        pool=$WORK/pool-$type-always
        pool_init "$pool" --type "$type" --fsync always --chunk-size 1M
        expect_exit 0 strace -f -c -o count.txt -e trace=fsync,fdatasync,syncfs \
                "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img
        n_fsync=$(calls count.txt fsync)
        n_fdatasync=$(calls count.txt fdatasync)
        n_syncfs=$(calls count.txt syncfs)
        info "fsync $n_fsync, fdatasync $n_fdatasync, syncfs $n_syncfs"
        assert_cmp -ge "$n_syncfs" 1 "$type --fsync always: syncfs calls of a backup (the pool is synced before the manifest)"
        # the index (or stream) and the manifest are each fsync'd
        assert_cmp -ge $((n_fsync + n_fdatasync)) 2 "$type --fsync always: fsync+fdatasync calls of a backup"

        # The order of things, from a trace of a backup into a fresh pool.
        rm -rf "$pool"
        pool_init "$pool" --type "$type" --fsync always --chunk-size 1M
        expect_exit 0 strace -f -y -o trace.txt \
                -e trace=close,fsync,fdatasync,syncfs,rename,renameat,renameat2 \
                "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img
        awk -f - trace.txt >order.txt <<'EOF'
# A syscall's effect counts when it has returned 0 (a complete line, or the
# "resumed" line of an unfinished one); a rename counts from its start.
function done_ok(line) { return line ~ /\) += 0$/ }
{
        pid = $1
        if ($2 ~ /^<\.\.\./) {                       # <... NAME resumed>
                name = $3
                if (done_ok($0) && (name == "syncfs")) syncfs_done()
                if (done_ok($0) && (name == "fsync" || name == "fdatasync") && (pid in pend)) synced_file[pend[pid]] = 1
                delete pend[pid]
                next
        }
        call = $2; sub(/\(.*/, "", call)
        unfinished = $0 ~ /<unfinished \.\.\.>$/
        if (call == "close" && match($0, /\/tmp\/[0-9a-f]+\.[0-9a-f]+>/)) {
                f = substr($0, RSTART + 5, RLENGTH - 6); closed[f] = NR
        } else if (call == "fsync" || call == "fdatasync") {
                f = ""
                if (match($0, /\/tmp\/[0-9a-f]+\.[0-9a-f]+>/)) f = substr($0, RSTART + 5, RLENGTH - 6)
                else if (match($0, /\/[^\/>]+\.(fidx|vstream)\.tmp[^>]*>/)) f = "index"
                else if (match($0, /manifest\.json\.tmp[^>]*>/)) f = "manifest"
                if (f != "") { if (unfinished) pend[pid] = f; else if (done_ok($0)) synced_file[f] = 1 }
        } else if (call == "syncfs") {
                if (!unfinished && done_ok($0)) syncfs_done()
        } else if (call ~ /^rename/) {
                if (match($0, /"tmp\/[0-9a-f]+\.[0-9a-f]+"/) && $0 ~ /"chunks\//) {
                        f = substr($0, RSTART + 5, RLENGTH - 6)
                        if (!(f in seen)) {
                                seen[f] = 1; chunks++
                                if (!(f in synced_file)) { bad++; print "chunk renamed before it was synced: " f }
                        }
                        last_chunk_rename = NR; durable_names = 0
                } else if ($0 ~ /\.(fidx|vstream)"/ && $0 ~ /\.tmp/) {
                        index_renamed++
                        if (!("index" in synced_file)) { bad++; print "index renamed before it was fsynced" }
                } else if ($0 ~ /"manifest\.json"/) {
                        manifest_renamed++
                        if (!("manifest" in synced_file)) { bad++; print "manifest renamed before it was fsynced" }
                        if (chunks > 0 && !durable_names) { bad++; print "manifest renamed before a syncfs after the last chunk rename" }
                }
        }
}
function syncfs_done(  f) {
        for (f in closed) synced_file[f] = 1
        durable_names = 1
}
END {
        printf "chunks %d index %d manifest %d bad %d\n", chunks, index_renamed, manifest_renamed, bad
}
EOF
        summary=$(tail -n1 order.txt)
        info "trace: $summary"
        if grep -v '^chunks ' order.txt >problems.txt; then
                die "$type --fsync always: durability order broken:
$(sed 's/^/    /' problems.txt)"
        fi
        read -r _ n_renamed _ n_index _ n_manifest _ <<<"$summary"
        if [[ $type == dedup ]]; then
                n_chunks=$(find "$pool/chunks" -type f | wc -l)
                assert_cmp -gt "$n_chunks" 0 "dedup: chunks stored"
                assert_eq "$n_chunks" "$n_renamed" "dedup --fsync always: chunk renames into chunks/ seen in the trace"
        fi
        assert_eq 1 "$n_index" "$type --fsync always: index renames seen in the trace"
        assert_eq 1 "$n_manifest" "$type --fsync always: manifest renames seen in the trace"

        info "$type pool, --fsync none"
        pool=$WORK/pool-$type-none
        pool_init "$pool" --type "$type" --fsync none
        expect_exit 0 strace -f -c -o count.txt -e trace=fsync,fdatasync,syncfs \
                "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img
        for s in fsync fdatasync syncfs; do
                assert_eq 0 "$(calls count.txt "$s")" "$type --fsync none: $s calls of a backup"
        done
        # an incremental too
        write_random img $((3 * MiB)) 4096
        echo "$((3 * MiB)) 4096" >changes.txt
        expect_exit 0 strace -f -c -o count.txt -e trace=fsync,fdatasync,syncfs \
                "$VBAK" pool backup "$pool" --vm vm1 --disk vda --source img --changed changes.txt --parent latest \
                --json
        inc_id=$(json_get id <"$LAST_OUT")
        for s in fsync fdatasync syncfs; do
                assert_eq 0 "$(calls count.txt "$s")" "$type --fsync none: $s calls of an incremental"
        done
        restore_cmp "$pool" "$inc_id" vda img
done
exit 0
