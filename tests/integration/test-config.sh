#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-config.sh -- `vbak config show|set` on a copy of etc/vbakd.conf: show
# lists every key of the table (as many as the shipped file documents),
# with defaults and their source; set changes exactly one line per key (a
# [restart] key and one that is not, each told so), refuses a bad value and
# an unknown key (exit 2, file unchanged), reports a bad file with its line,
# creates a missing file, gives E9 without permission; vbakd starts with the
# rewritten file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VBAKD=$(dirname "$VBAK")/vbakd
[[ -x $VBAKD ]] || die "vbakd is not built (make all builds it)"
SHIPPED=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/etc/vbakd.conf
[[ -f $SHIPPED ]] || die "no $SHIPPED"

F=$WORK/vbakd.conf
cp "$SHIPPED" "$F"
STATE=$WORK/state
SOCK=$STATE/vbakd.sock
DPID=
stop_daemon() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        DPID=
        return 0
}
trap stop_daemon EXIT
trap 'exit 143' TERM INT

# changed_lines A B: how many lines of A were replaced in B (same length)
changed_lines() {
        diff "$1" "$2" | grep -c '^>' || true
}

expect_exit 0 "$VBAK" config --help
assert_contains "$LAST_OUT" "vbak config set KEY VALUE"
expect_exit 0 "$VBAK" config show --help
assert_contains "$LAST_OUT" "--config FILE"
expect_exit 0 "$VBAK" config set --help
assert_contains "$LAST_OUT" "atomically"
expect_exit 2 "$VBAK" config
expect_exit 2 "$VBAK" config frobnicate
expect_exit 2 "$VBAK" config set worker_threads
expect_exit 0 "$VBAK" --help
assert_contains "$LAST_OUT" "config     vbakd's settings"

info "show: every key, all defaults in the shipped file"
documented=$(grep -cE '^# [a-z_0-9]+ = ' "$SHIPPED")
assert_cmp -ge "$documented" 9 "keys documented in $SHIPPED"
expect_exit 0 "$VBAK" config show --config "$F" --json
assert_eq "$documented" "$(grep -c '"key": ' "$LAST_OUT")" "keys shown"
assert_eq "$documented" "$(grep -c '"source": "default"' "$LAST_OUT")" "keys from defaults"
assert_eq "$F" "$(json_get file <"$LAST_OUT")" "file"
assert_eq true "$(json_get exists <"$LAST_OUT")" "exists"
VBAK_CONFIG=$F expect_exit 0 "$VBAK" config show
assert_contains "$LAST_OUT" "# $F"
assert_eq $((documented + 2)) "$(wc -l <"$LAST_OUT")" "lines of show"
grep -qE '^worker_threads +4 +default +yes +1-64$' "$LAST_OUT" || die "worker_threads row: $(cat "$LAST_OUT")"
expect_exit 0 "$VBAK" config show --config "$WORK/missing.conf"
assert_contains "$LAST_OUT" "does not exist: every key has its built-in default"

info "set: a [restart] key and one that is not, one line each"
cp "$F" before.conf
expect_exit 0 "$VBAK" config set worker_threads 8 --config "$F"
assert_eq "worker_threads = 8; restart vbakd to apply (systemctl restart vbakd)" "$(cat "$LAST_OUT")" "set output"
assert_eq 1 "$(changed_lines before.conf "$F")" "lines changed by set worker_threads"
assert_eq "$(wc -l <before.conf)" "$(wc -l <"$F")" "line count"
grep -qx 'worker_threads = 8' "$F" || die "no active worker_threads line"
cp "$F" middle.conf
expect_exit 0 "$VBAK" config set fsync none --config "$F" --json
assert_eq false "$(json_get needs_restart <"$LAST_OUT")" "fsync needs_restart"
assert_eq uncommented "$(json_get edit <"$LAST_OUT")" "edit"
expect_exit 0 "$VBAK" config set fsync none --config "$F"
assert_contains "$LAST_OUT" "fsync = none; applies to new work"
assert_eq 1 "$(changed_lines middle.conf "$F")" "lines changed by set fsync"
assert_eq 2 "$(changed_lines before.conf "$F")" "lines changed in all"
expect_exit 0 "$VBAK" config show --config "$F"
grep -qE '^worker_threads +8 +file:[0-9]+ +yes ' "$LAST_OUT" || die "worker_threads row: $(cat "$LAST_OUT")"
grep -qE '^fsync +none +file:[0-9]+ +no ' "$LAST_OUT" || die "fsync row: $(cat "$LAST_OUT")"

info "refused: bad values and unknown keys leave the file as it was"
cp "$F" after.conf
expect_exit 2 "$VBAK" config set worker_threads 100 --config "$F"
assert_contains "$LAST_ERR" 'worker_threads = "100": out of range; allowed: 1-64'
expect_exit 2 "$VBAK" config set chunk_size 8M --config "$F" --json
assert_contains "$LAST_OUT" '"code":2'
assert_contains "$LAST_ERR" "allowed: 1M-4M"
expect_exit 2 "$VBAK" config set fsync sometimes --config "$F"
expect_exit 2 "$VBAK" config set worker_thread 8 --config "$F"
assert_contains "$LAST_ERR" 'unknown key "worker_thread"; did you mean worker_threads?'
expect_exit 2 "$VBAK" config set no_such_thing 8 --config "$F"
assert_contains "$LAST_ERR" "vbak config show lists the keys"
cmp -s after.conf "$F" || die "a refused set changed the file"
for t in "$WORK"/*.tmp-*; do
        [[ -e $t ]] && die "a temp file is left behind: $t"
done

info "a bad file: show names the file, the line and what is allowed"
printf '# x\nlog_level = debug\ngc_grace = 99d\n' >bad.conf
expect_exit 2 "$VBAK" config show --config bad.conf
assert_contains "$LAST_ERR" 'bad.conf:3: gc_grace = "99d": out of range; allowed: 0s-30d'

info "a missing file is created; a missing directory is an error"
expect_exit 0 "$VBAK" config set cvd_port 9000 --config new.conf
assert_eq 644 "$(stat -c %a new.conf)" "mode of a new file"
assert_eq "cvd_port = 9000" "$(cat new.conf)" "new file"
expect_exit 3 "$VBAK" config set cvd_port 9000 --config "$WORK/nodir/new.conf"
assert_contains "$LAST_ERR" "directory $WORK/nodir does not exist"

if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
        info "permission denied is E9"
        mkdir locked
        cp "$SHIPPED" locked/vbakd.conf
        chmod 755 locked
        chmod 755 "$WORK"
        expect_exit 9 setpriv --reuid=nobody --regid=nogroup --clear-groups "$VBAK" config set fsync none \
                --config "$WORK/locked/vbakd.conf"
        cmp -s "$SHIPPED" locked/vbakd.conf || die "a refused set changed the file"
fi

info "vbakd starts with the rewritten file"
"$VBAKD" --config "$F" --state-dir "$STATE" >vbakd.out 2>vbakd.err &
DPID=$!
for _ in $(seq 100); do
        [[ -S $SOCK ]] && break
        kill -0 "$DPID" 2>/dev/null || die "vbakd exited: $(cat vbakd.err)"
        sleep 0.05
done
[[ -S $SOCK ]] || die "vbakd did not create its socket: $(cat vbakd.err)"
expect_exit 0 "$VBAK" status --socket "$SOCK" --json
assert_eq "$DPID" "$(json_get pid <"$LAST_OUT")" "pid"
stop_daemon
# ...and refuses the file vbak config show refuses.
expect_exit 2 "$VBAKD" --config bad.conf --state-dir "$STATE"
info "ok"
