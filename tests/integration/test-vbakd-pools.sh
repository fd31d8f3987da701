#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd-pools.sh -- pools registered with vbakd and the restore points
# it knows: `vbak pool add` creates a pool in a missing or empty folder and
# registers one made with `vbak pool init` as it is (its type read from it,
# its restore points in the catalog at once); `vbak restore-point list|show`
# with their filters; `vbak pool show` with the live stats; a taken name or
# folder is 14; the API's 400s name the field (relative path, a folder that
# holds other files, a type the pool does not have); rescan picks up a new
# backup; remove leaves the data, and is refused (19) while a job uses the
# pool; the catalog survives a restart; `vbak pool list PATH` still reads a
# pool directly.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VBAKD=$(dirname "$VBAK")/vbakd
[[ -x $VBAKD ]] || die "vbakd is not built (make all builds it)"
need_cmd curl python3

STATE=$WORK/state
export VBAK_SOCKET=$STATE/vbakd.sock

# stop_daemon: SIGTERM, and fails with vbakd's exit code when that is not 0
# (under the sanitizers, what they found).
DPID=
stop_daemon() {
        local rc=0
        if [[ -n $DPID ]]; then
                kill "$DPID" 2>/dev/null || true
                wait "$DPID" 2>/dev/null || rc=$?
        fi
        DPID=
        return "$rc"
}
trap 'stop_daemon || true' EXIT
trap 'exit 143' TERM INT

start_daemon() {
        "$VBAKD" --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
        DPID=$!
        for _ in $(seq 100); do
                [[ -S $VBAK_SOCKET ]] && return 0
                kill -0 "$DPID" 2>/dev/null || die "vbakd exited: $(cat vbakd.err)"
                sleep 0.05
        done
        die "vbakd did not start: $(cat vbakd.err)"
}

# py EXPR: EXPR of the JSON document on stdin (d), printed
py() {
        python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

api() { curl -s -o body.json -w '%{http_code}' --unix-socket "$VBAK_SOCKET" -H 'Content-Type: application/json' "$@"; }

info "a pool made with vbak pool init, holding restore points"
make_image img 32
pool_init "$WORK/old" --type standard --fsync none
backup_json "$WORK/old" vm1 vda img >/dev/null
backup_json "$WORK/old" vm1 vda img >/dev/null
backup_json "$WORK/old" vm2 vda img >b3.json
id3=$(json_get id <b3.json)

start_daemon
expect_exit 0 "$VBAK" pool add --help
assert_contains "$LAST_OUT" "--path PATH"
expect_exit 0 "$VBAK" restore-point --help
expect_exit 0 "$VBAK" pool --help
assert_contains "$LAST_OUT" "rescan NAME"
expect_exit 0 "$VBAK" pool list
assert_contains "$LAST_OUT" "no pool registered"

info "add: a new pool in a missing folder, and in an empty one"
expect_exit 0 "$VBAK" pool add fresh --path "$WORK/fresh" --json
assert_eq true "$(json_get created <"$LAST_OUT")" "fresh: created"
assert_eq dedup "$(json_get type <"$LAST_OUT")" "fresh: the default type"
assert_eq 0 "$(json_get restore_points <"$LAST_OUT")" "fresh: restore points"
assert_eq "$WORK/fresh" "$(json_get path <"$LAST_OUT")" "fresh: path"
[[ -f $WORK/fresh/pool.json ]] || die "no pool made in $WORK/fresh"
mkdir empty
expect_exit 0 "$VBAK" pool add empty --path empty --type standard # relative: against the caller's folder
assert_contains "$LAST_OUT" "pool empty: created a standard pool at $WORK/empty, 0 restore points"
expect_exit 0 "$VBAK" pool list "$WORK/empty" --json # a pool indeed
assert_eq "[]" "$(tr -d ' \n' <"$LAST_OUT")" "the new pool is empty"

info "add: an existing pool keeps its type and its restore points"
expect_exit 0 "$VBAK" pool add old --path "$WORK/old" --json
assert_eq false "$(json_get created <"$LAST_OUT")" "old: registered, not created"
assert_eq standard "$(json_get type <"$LAST_OUT")" "old: type read from the pool"
assert_eq 3 "$(json_get restore_points <"$LAST_OUT")" "old: restore points scanned"
expect_exit 0 "$VBAK" restore-point list --json
assert_eq 3 "$(py 'len(d)' <"$LAST_OUT")" "restore points in the catalog"
assert_eq "vm1 vm1 vm2" "$(py '" ".join(r["vm"] for r in d)' <"$LAST_OUT")" "their VMs, oldest first"
assert_eq "old old old" "$(py '" ".join(r["pool"] for r in d)' <"$LAST_OUT")" "their pool"
expect_exit 0 "$VBAK" restore-point list --vm vm1 --json
assert_eq 2 "$(py 'len(d)' <"$LAST_OUT")" "--vm vm1"
expect_exit 0 "$VBAK" restore-point list --pool fresh --json
assert_eq 0 "$(py 'len(d)' <"$LAST_OUT")" "--pool fresh"
expect_exit 0 "$VBAK" restore-point list --pool old --vm vm2
assert_contains "$LAST_OUT" "$id3"
assert_contains "$LAST_OUT" "ID"
assert_not_contains "$LAST_OUT" " vm1 "
expect_exit 3 "$VBAK" restore-point list --pool nothing
expect_exit 3 "$VBAK" restore-point list --platform nothing
expect_exit 0 "$VBAK" restore-point show "$id3" --json
assert_eq "$id3" "$(json_get id <"$LAST_OUT")" "show: id"
assert_eq vm2 "$(json_get vm <"$LAST_OUT")" "show: vm"
assert_eq full "$(json_get type <"$LAST_OUT")" "show: type"
assert_eq $((32 * MiB)) "$(json_get size <"$LAST_OUT")" "show: size"
expect_exit 0 "$VBAK" restore-point show "$id3" --pool old
assert_contains "$LAST_OUT" "restore point $id3 in pool old"
expect_exit 3 "$VBAK" restore-point show "$id3" --pool fresh
expect_exit 3 "$VBAK" restore-point show 20000101T000000Z-nothing
expect_exit 2 "$VBAK" restore-point show "$id3" --vm vm2

info "show: the pool's live stats"
expect_exit 0 "$VBAK" pool show old --json
assert_eq 3 "$(py 'd["stats"]["restore_points"]' <"$LAST_OUT")" "stats: restore points"
assert_cmp -gt "$(py 'd["stats"]["stored_bytes"]' <"$LAST_OUT")" 0 "stats: stored bytes"
assert_eq $((3 * 32 * MiB)) "$(py 'd["stats"]["logical_bytes"]' <"$LAST_OUT")" "stats: logical bytes"
expect_exit 0 "$VBAK" pool show old
assert_contains "$LAST_OUT" "old: standard pool at $WORK/old, 3 restore points"
assert_contains "$LAST_OUT" "chunks:"
expect_exit 3 "$VBAK" pool show nothing

info "taken names and folders"
expect_exit 14 "$VBAK" pool add old --path "$WORK/other"
[[ ! -e $WORK/other ]] || die "a pool was made for a taken name"
expect_exit 14 "$VBAK" pool add old-again --path "$WORK/old/"
assert_contains "$LAST_ERR" "is pool old already"

info "the API names the field"
mkdir full std2
echo data >full/notes.txt
pool_init "$WORK/std2" --type standard --fsync none
assert_eq 400 "$(api -X POST --data '{"name":"x","path":"relative/pool"}' http://vbakd/v1/pools)" "relative path"
assert_contains body.json '"field": "path"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/full\"}" http://vbakd/v1/pools)" "not empty"
assert_contains body.json '"field": "path"'
assert_contains body.json '"code": 2'
[[ ! -e full/pool.json ]] || die "a pool was made in a folder that holds files"
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/img\"}" http://vbakd/v1/pools)" "a file"
assert_contains body.json '"field": "path"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/std2\",\"type\":\"dedup\"}" http://vbakd/v1/pools)" \
        "type not the pool's"
assert_contains body.json '"field": "type"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/new\",\"type\":\"floppy\"}" http://vbakd/v1/pools)" \
        "unknown type"
assert_contains body.json '"field": "type"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/new\",\"type\":\"tape\"}" http://vbakd/v1/pools)" \
        "a new tape pool through the API"
assert_contains body.json '"field": "type"'
assert_contains body.json 'vbak pool init'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/new\",\"color\":\"red\"}" http://vbakd/v1/pools)" \
        "unknown field"
assert_contains body.json '"field": "color"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"x\",\"path\":\"$WORK/new\",\"create\":false}" http://vbakd/v1/pools)" \
        "create false"
assert_contains body.json '"field": "path"'
assert_eq 400 "$(api -X POST --data "{\"name\":\"../x\",\"path\":\"$WORK/new\"}" http://vbakd/v1/pools)" "bad name"
assert_contains body.json '"field": "name"'
[[ ! -e $WORK/new ]] || die "a refused request made $WORK/new"
expect_exit 2 "$VBAK" pool add x --path "$WORK/std2" --type dedup
assert_contains "$LAST_ERR" "type: "
assert_eq 404 "$(api http://vbakd/v1/pools/nothing)" "unknown pool"
assert_eq 404 "$(api 'http://vbakd/v1/restore-points?platform=nothing')" "unknown platform"
assert_contains body.json '"field": "platform"'
assert_eq 404 "$(api http://vbakd/v1/restore-points/nothing)" "unknown restore point"

info "rescan picks up a new backup"
backup_json "$WORK/old" vm2 vda img >b4.json
id4=$(json_get id <b4.json)
expect_exit 0 "$VBAK" restore-point list --pool old --json
assert_eq 3 "$(py 'len(d)' <"$LAST_OUT")" "before the rescan"
expect_exit 0 "$VBAK" pool rescan old --json
assert_eq 4 "$(json_get restore_points <"$LAST_OUT")" "rescan: restore points"
expect_exit 0 "$VBAK" pool rescan old
assert_contains "$LAST_OUT" "pool old: 4 restore points"
expect_exit 0 "$VBAK" restore-point list --pool old --json
assert_eq 4 "$(py 'len(d)' <"$LAST_OUT")" "after the rescan"
assert_eq "$id4" "$(py 'd[-1]["id"]' <"$LAST_OUT")" "the new one, last"
expect_exit 3 "$VBAK" pool rescan nothing

info "list: the daemon's pools, or a pool directly"
expect_exit 0 "$VBAK" pool list --json
assert_eq "empty fresh old" "$(py '" ".join(p["name"] for p in d)' <"$LAST_OUT")" "pool list"
assert_eq "0 0 4" "$(py '" ".join(str(p["restore_points"]) for p in d)' <"$LAST_OUT")" "pool list: restore points"
expect_exit 0 "$VBAK" pool list
assert_contains "$LAST_OUT" "$WORK/old"
expect_exit 0 "$VBAK" pool list "$WORK/old" --json
assert_eq 4 "$(json_ids <"$LAST_OUT" | wc -l)" "pool list PATH, directly"
expect_exit 0 "$VBAK" pool list --vm vm1 "$WORK/old"
assert_contains "$LAST_OUT" "PARENT"
VBAK_SOCKET=$WORK/nothing.sock expect_exit 0 "$VBAK" pool list "$WORK/old"
VBAK_SOCKET=$WORK/nothing.sock expect_exit 17 "$VBAK" pool list

info "remove leaves the data"
expect_exit 0 "$VBAK" pool remove empty
assert_contains "$LAST_OUT" "pool empty removed"
[[ -f $WORK/empty/pool.json ]] || die "remove deleted the pool's data"
expect_exit 3 "$VBAK" pool show empty
expect_exit 3 "$VBAK" pool remove empty
# The folder is free for a name again.
expect_exit 0 "$VBAK" pool add empty2 --path "$WORK/empty" --json
assert_eq false "$(json_get created <"$LAST_OUT")" "registered again"

info "the catalog survives a restart"
stop_daemon || die "vbakd exited with $? on SIGTERM: $(tail -n 30 vbakd.err)"
# A job that writes into pool old, put in the catalog behind the daemon's
# back (a job needs a platform, and a platform a CVM).
have_sqlite=
if command -v sqlite3 >/dev/null; then
        have_sqlite=1
        sqlite3 "$STATE/catalog.db" "INSERT INTO jobs (name, pool_id, created, modified)
                SELECT 'uses-old', id, 0, 0 FROM pools WHERE name = 'old'"
fi
start_daemon
expect_exit 0 "$VBAK" pool list --json
assert_eq "empty2 fresh old" "$(py '" ".join(p["name"] for p in d)' <"$LAST_OUT")" "pools after a restart"
expect_exit 0 "$VBAK" restore-point list --json
assert_eq 4 "$(py 'len(d)' <"$LAST_OUT")" "restore points after a restart"
if [[ -n $have_sqlite ]]; then
        expect_exit 19 "$VBAK" pool remove old
        assert_contains "$LAST_ERR" "used by a job"
        sqlite3 "$STATE/catalog.db" "UPDATE jobs SET deleted = 1 WHERE name = 'uses-old'"
fi
expect_exit 0 "$VBAK" pool remove old
expect_exit 0 "$VBAK" restore-point list --json
assert_eq 0 "$(py 'len(d)' <"$LAST_OUT")" "restore points of a removed pool"
expect_exit 0 "$VBAK" pool list "$WORK/old" --json
assert_eq 4 "$(json_ids <"$LAST_OUT" | wc -l)" "the removed pool's restore points stay in it"
stop_daemon || die "vbakd exited with $? on SIGTERM: $(tail -n 30 vbakd.err)"
# Under the sanitizers: what vbakd found (the command line's own findings fail its exit code).
assert_not_contains vbakd.err "Sanitizer" "vbakd's log"
assert_not_contains vbakd.err "runtime error" "vbakd's log"
info "ok"
