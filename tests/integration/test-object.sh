#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-object.sh -- the object pool on a real OpenStack Swift with s3api,
# which checks every request's signature and payload hash:
# - a full and an incremental backup, both restored byte for byte; verify;
# - a wrong secret: a clear error naming what the store said;
# - a proxy that drops 10 % of the connections: the backup completes;
# - an index larger than the multipart threshold goes up in parts;
# - two vbak processes ("two backup hosts", each with its own local folder)
#   back up two VMs with shared chunks into one bucket at once; then gc:
#   every restore point verifies and restores;
# - prune then gc in two rounds: the first only lists, the second deletes
#   the chunks only the pruned restore point had; what is left verifies.
# test-timeout: 300
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
source "$(dirname "${BASH_SOURCE[0]}")/swift.sh"

need_swift
trap 'stop_swift; stop_all' EXIT
trap 'exit 143' TERM INT
start_swift

printf '%s\n' "$S3_ACCESS" >access.key
printf '%s\n' "$S3_SECRET" >secret.key
printf 'not-the-secret\n' >wrong.key
chmod 600 access.key secret.key wrong.key
# obj_init PATH [OPTIONS...]: an object pool in the bucket "backups"
obj_init() {
        local path=$1
        shift
        "$VBAK" pool init "$path" --type object --endpoint "$S3_ENDPOINT" --bucket backups --region "$S3_REGION" \
                --access-key-file access.key "$@"
}
# jq-free JSON: py FILE EXPR
py() { python3 -c "import json, sys; j = json.load(open('$1')); print($2)"; }

info "a full and an incremental backup, restored byte for byte"
make_image vm1.img 64
cp --sparse=always vm1.img vm1.0
obj_init pool-a --secret-key-file secret.key --prefix main >init.out 2>init.err ||
        die "init failed: $(cat init.err)"
backup_json pool-a vm1 vda vm1.img >full.json
full=$(json_get id <full.json)
write_random vm1.img $((3 * MiB)) $((128 * KiB))
write_random vm1.img $((40 * MiB)) $((64 * KiB))
printf '%s %s\n' $((3 * MiB)) $((128 * KiB)) $((40 * MiB)) $((64 * KiB)) >changes.txt
cp --sparse=always vm1.img vm1.1
backup_json pool-a vm1 vda vm1.img --changed changes.txt --parent latest >inc.json
inc=$(json_get id <inc.json)
assert_eq incremental "$(json_get type <inc.json)" "the second backup"
restore_cmp pool-a "$full" vda vm1.0
restore_cmp pool-a "$inc" vda vm1.1
expect_exit 0 "$VBAK" pool verify pool-a --json
assert_eq 0 "$(py "$LAST_OUT" 'j["problems"]')" "problems after two backups"
expect_exit 0 "$VBAK" pool list pool-a --json
assert_eq 2 "$(json_ids <"$LAST_OUT" | wc -l)" "restore points listed"

info "a wrong secret"
expect_exit 18 obj_init pool-bad --secret-key-file wrong.key --prefix main
assert_contains "$LAST_ERR" "SignatureDoesNotMatch" "the error names what the store said"
[[ ! -e pool-bad/pool.json ]] || die "a pool was left behind by a refused init"

info "a proxy that drops 10 % of the connections"
port=$(free_port)
start_proxy "$port" "${S3_ENDPOINT#http://}" "$WORK/proxy.sock"
proxy_cmd "$WORK/proxy.sock" "drop 10" >/dev/null
"$VBAK" pool init pool-p --type object --endpoint "http://127.0.0.1:$port" --bucket backups \
        --region "$S3_REGION" --access-key-file access.key --secret-key-file secret.key --prefix flaky \
        >/dev/null 2>init-p.err || die "init through the proxy failed: $(cat init-p.err)"
rm -f vm3.img
truncate -s 64M vm3.img
write_random vm3.img 0 $((48 * MiB))
# Kept-alive connections are reused: cut them five times a second, so that
# the client keeps opening new ones, of which the proxy drops one in ten.
(while :; do
        proxy_cmd "$WORK/proxy.sock" cut >/dev/null || true
        sleep 0.2
done) &
cutter=$!
backup_json pool-p vm3 vda vm3.img >p.json
kill "$cutter"
wait "$cutter" 2>/dev/null || true
restore_cmp pool-p "$(json_get id <p.json)" vda vm3.img
dropped=$(proxy_cmd "$WORK/proxy.sock" stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["dropped"])')
info "the proxy dropped $dropped connections"
assert_cmp -ge "$dropped" 2 "connections dropped"

info "an index in parts"
rm -f big.img
truncate -s 170G big.img
write_random big.img $((100 * MiB)) $((2 * MiB))
obj_init pool-big --secret-key-file secret.key --prefix big --part-size 5M >/dev/null 2>big.err ||
        die "init failed: $(cat big.err)"
backup_json pool-big big vda big.img >big.json
expect_exit 0 "$VBAK" pool verify pool-big --json
assert_eq 0 "$(py "$LAST_OUT" 'j["problems"]')" "problems with a 5.4 MiB index"

info "two backup hosts at once, one bucket"
make_image vm2.img 64
dd if=vm1.img of=vm2.img bs=1M count=24 conv=notrunc status=none # shared chunks
obj_init host1 --secret-key-file secret.key --prefix shared >/dev/null 2>h1.err || die "$(cat h1.err)"
obj_init host2 --secret-key-file secret.key --prefix shared >/dev/null 2>h2.err || die "$(cat h2.err)"
"$VBAK" pool backup host1 --vm vm1 --disk vda --source vm1.img --json >h1.json 2>h1.err &
p1=$!
"$VBAK" pool backup host2 --vm vm2 --disk vda --source vm2.img --json >h2.json 2>h2.err &
p2=$!
wait "$p1" || die "host 1's backup failed: $(cat h1.err)"
wait "$p2" || die "host 2's backup failed: $(cat h2.err)"
"$VBAK" pool backup host1 --vm vm2 --disk vda --source vm2.img --json >h3.json 2>h3.err &
p1=$!
"$VBAK" pool gc host2 --grace 0 --json >gc1.json 2>gc1.err &
p2=$!
wait "$p1" || die "host 1's second backup failed: $(cat h3.err)"
wait "$p2" || die "gc failed: $(cat gc1.err)"
expect_exit 0 "$VBAK" pool gc host1 --grace 0 --json
expect_exit 0 "$VBAK" pool verify host2 --json
assert_eq 0 "$(py "$LAST_OUT" 'j["problems"]')" "problems after two hosts and gc"
assert_eq 3 "$(py "$LAST_OUT" 'j["restore_points"]')" "restore points of both hosts"
restore_cmp host2 "$(json_get id <h1.json)" vda vm1.img
restore_cmp host1 "$(json_get id <h2.json)" vda vm2.img
restore_cmp host2 "$(json_get id <h3.json)" vda vm2.img

info "prune, then gc in two rounds"
make_image vm4.img 32
backup_json pool-a vm4 vda vm4.img >vm4a.json
make_image vm4.img 32 # new random data: the first restore point's chunks are its own
backup_json pool-a vm4 vda vm4.img >vm4b.json
expect_exit 0 "$VBAK" pool prune pool-a --vm vm4 --keep-last 1
expect_exit 0 "$VBAK" pool list pool-a --vm vm4 --json
assert_eq "$(json_get id <vm4b.json)" "$(json_ids <"$LAST_OUT")" "the restore point prune kept"
sleep 1.1 # the store's LastModified counts whole seconds
expect_exit 0 "$VBAK" pool gc pool-a --grace 0 --json
assert_eq 0 "$(py "$LAST_OUT" 'j["chunks_removed"]')" "the first round deletes nothing"
expect_exit 0 "$VBAK" pool gc pool-a --grace 0 --json
removed=$(py "$LAST_OUT" 'j["chunks_removed"]')
info "the second round deleted $removed chunks"
assert_cmp -ge "$removed" 3 "the second round deleted the pruned restore point's chunks"
expect_exit 0 "$VBAK" pool verify pool-a --json
assert_eq 0 "$(py "$LAST_OUT" 'j["problems"]')" "problems after gc"
restore_cmp pool-a "$(json_get id <vm4b.json)" vda vm4.img
restore_cmp pool-a "$inc" vda vm1.1
info "an object pool registered with vbakd: the secret in its credential store"
VBAKD=$(dirname "$VBAK")/vbakd
export VBAK_SOCKET=$WORK/state/vbakd.sock
"$VBAKD" --state-dir "$WORK/state" --config /dev/null >vbakd.out 2>vbakd.err &
DPID=$!
trap 'kill $DPID 2>/dev/null; wait $DPID 2>/dev/null; stop_swift; stop_all' EXIT
for _ in $(seq 200); do
        "$VBAK" status >/dev/null 2>&1 && break
        sleep 0.05
done
expect_exit 2 "$VBAK" pool add s3 --type object --endpoint "$S3_ENDPOINT" --bucket backups
assert_contains "$LAST_ERR" "object.access_key: required" "a missing key"
expect_exit 0 "$VBAK" pool add s3 --type object --endpoint "$S3_ENDPOINT" --bucket backups --prefix main \
        --region "$S3_REGION" --access-key-file access.key --secret-key-file secret.key --json
assert_eq "$WORK/state/object-pools/s3" "$(py "$LAST_OUT" 'j["path"]')" "the local folder"
assert_eq 3 "$(py "$LAST_OUT" 'j["restore_points"]')" "the bucket's restore points, read at once"
assert_not_contains "$WORK/state/object-pools/s3/object.json" "secret" "object.json"
assert_not_contains "$WORK/state/object-pools/s3/object.json" "$S3_SECRET" "object.json"
assert_contains "$WORK/state/credentials.json" "pool:$WORK/state/object-pools/s3" "the credential store"
expect_exit 0 "$VBAK" pool show s3 --json
assert_eq 3 "$(py "$LAST_OUT" 'j["stats"]["restore_points"]')" "pool show opens the pool with the stored secret"
info "done"
