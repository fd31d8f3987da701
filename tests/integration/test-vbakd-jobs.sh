#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-vbakd-jobs.sh -- backup jobs in vbakd (a platform on vbak-cvm-sim, a
# pool): `vbak job create` with a selection, exclusions, options and a
# schedule (canonical text, next run); list and show (only the options
# that differ from the defaults); an out-of-range option is exit 2 and,
# through the API, 400 naming the option; an unknown option, an unknown
# field, malformed JSON and a bad schedule are 400 naming their field;
# modify merges options key by key and is all or nothing; clone; remove
# frees the name while `job list --all` still shows the deleted job, which
# a number (its id) still names; the jobs survive a restart of the daemon.
# No schedule here can fire during the test (manual, or from 2099 on).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

VBAKD=$(dirname "$VBAK")/vbakd
SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $VBAKD && -x $SIM ]] || die "vbakd or vbak-cvm-sim is not built (make all builds them)"
need_qemu
need_cmd curl

cp "$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim" && pwd)/topology-default.json" topology.json
echo 's3cret-pw' >password
mkdir -p sim
STATE=$WORK/state
export VBAK_SOCKET=$STATE/vbakd.sock

SIM_PID='' DPID=''
stop_all_here() {
        if [[ -n $DPID ]]; then
                kill "$DPID" 2>/dev/null && { wait "$DPID" 2>/dev/null || true; }
        fi
        if [[ -n $SIM_PID ]]; then
                kill "$SIM_PID" 2>/dev/null && { wait "$SIM_PID" 2>/dev/null || true; }
        fi
        return 0
}
trap stop_all_here EXIT
trap 'exit 143' TERM INT

# jval FILE EXPR: the value of the Python expression EXPR on the JSON
# document d of FILE (strings as they are, the rest as JSON).
jval() {
        "$VM_PYTHON" -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v, sort_keys=True, ensure_ascii=False))' "$1" "$2"
}

# api ARGS...: curl on the daemon's socket; the body goes to body.json, the
# HTTP status to stdout.
api() {
        curl -s -o body.json -w '%{http_code}' --unix-socket "$VBAK_SOCKET" -H 'Content-Type: application/json' "$@"
}

port=$(free_port)
"$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
        --state-dir "$WORK/sim" --cvd-port 0 >sim.out 2>sim.err &
SIM_PID=$!
for _ in $(seq 300); do
        grep -q "listening on" sim.out 2>/dev/null && break
        kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
        sleep 0.05
done
CVM=http://127.0.0.1:$port

start_daemon() {
        "$VBAKD" --state-dir "$STATE" >>vbakd.out 2>>vbakd.err &
        DPID=$!
        for _ in $(seq 100); do
                [[ -S $VBAK_SOCKET ]] && return 0
                sleep 0.05
        done
        die "vbakd did not start: $(cat vbakd.err)"
}
start_daemon

# stop_daemon: SIGTERM, and a clean exit (a sanitizer's report is not one).
stop_daemon() {
        local rc=0
        kill "$DPID"
        wait "$DPID" || rc=$?
        DPID=
        [[ $rc == 0 ]] || die "vbakd exited $rc when stopped: $(tail -n 30 vbakd.err)"
}

expect_exit 0 "$VBAK" platform add cas1 --type cas --cvm "$CVM" --user admin --password-file password
assert_eq 201 "$(api -X POST --data "{\"name\":\"p1\",\"path\":\"$WORK/pool1\"}" http://vbakd/v1/pools)" "pool added"

info "help"
expect_exit 0 "$VBAK" job --help
assert_contains "$LAST_OUT" "create NAME --platform P --pool POOL --select LEVEL:NAME"
expect_exit 0 "$VBAK" job create --help
assert_contains "$LAST_OUT" "--select LEVEL:NAME"
assert_contains "$LAST_OUT" "parallel_vms_per_host"
assert_contains "$LAST_OUT" "1-32"
expect_exit 2 "$VBAK" job
expect_exit 2 "$VBAK" job frobnicate x
expect_exit 2 "$VBAK" job list --follow
assert_contains "$LAST_ERR" "vbak job list does not take --follow"
expect_exit 2 "$VBAK" job create onlyname
expect_exit 0 "$VBAK" job list
assert_contains "$LAST_OUT" "no job"

info "create"
# 2099-01-05 is a Monday: the first firing is that day at 02:00 in Berlin.
want_next=$(TZ=Europe/Berlin date -d '2099-01-05 02:00' +%s)
expect_exit 0 "$VBAK" job create nightly --platform cas1 --pool p1 --select hostpool:hp-prod --select vm:db01 \
        --exclude 'test-*' --exclude '*临时*' --schedule 'Weekly FRI,mon 2:00 from 2099-01-05 tz europe/berlin' \
        --set parallel_vms=4 --set min_free_bytes=200G --set retry_interval=20m --json
cp "$LAST_OUT" nightly.json
assert_eq nightly "$(json_get name <nightly.json)" "name"
assert_eq full "$(json_get backup_type <nightly.json)" "the default backup type"
assert_eq true "$(json_get enabled <nightly.json)" "enabled"
assert_eq cas1 "$(json_get platform <nightly.json)" "platform"
assert_eq p1 "$(json_get pool <nightly.json)" "pool"
assert_eq '[{"level": "hostpool", "name": "hp-prod"}, {"level": "vm", "name": "db01"}]' \
        "$(jval nightly.json 'd["selection"]')" "selection in the catalog's form"
assert_eq '["test-*", "*临时*"]' "$(jval nightly.json 'd["exclusions"]')" "exclusions"
assert_eq 4 "$(jval nightly.json 'd["options"]["parallel_vms"]')" "parallel_vms"
assert_eq 200G "$(jval nightly.json 'd["options"]["min_free_bytes"]')" "min_free_bytes"
assert_eq 20m "$(jval nightly.json 'd["options"]["retry_interval"]')" "retry_interval"
assert_eq fast "$(jval nightly.json 'd["options"]["compression"]')" "every option is in the answer"
assert_eq 29 "$(jval nightly.json 'len(d["options"])')" "all 29 options"
assert_eq "weekly mon,fri 02:00 from 2099-01-05 tz Europe/Berlin" "$(json_get schedule_text <nightly.json)" \
        "canonical schedule"
assert_eq weekly "$(jval nightly.json 'd["schedule"]["kind"]')" "schedule as JSON"
assert_eq '["mon", "fri"]' "$(jval nightly.json 'd["schedule"]["weekdays"]')" "weekdays"
assert_eq "$want_next" "$(json_get next_run <nightly.json)" "next run"

expect_exit 0 "$VBAK" job create manual1 --platform cas1 --pool p1 --select 'vm:数据库服务器' --type incremental \
        --disabled --json
assert_eq incremental "$(json_get backup_type <"$LAST_OUT")" "type"
assert_eq false "$(json_get enabled <"$LAST_OUT")" "--disabled"
assert_eq manual "$(json_get schedule_text <"$LAST_OUT")" "no schedule is manual"
assert_eq null "$(json_get next_run <"$LAST_OUT")" "a manual job has no next run"
assert_eq '{"kind": "manual"}' "$(jval "$LAST_OUT" 'd["schedule"]')" "manual as JSON"
expect_exit 14 "$VBAK" job create nightly --platform cas1 --pool p1 --select vm:db01

info "list, show"
expect_exit 0 "$VBAK" job list
assert_contains "$LAST_OUT" "SCHEDULE"
grep -E '^1 +nightly +cas1 +p1 +full +enabled +2099-01-05 .* weekly mon,fri 02:00' "$LAST_OUT" >/dev/null ||
        die "job list: no line for nightly in: $(cat "$LAST_OUT")"
grep -E '^2 +manual1 +cas1 +p1 +incremental +disabled +- +manual$' "$LAST_OUT" >/dev/null ||
        die "job list: no line for manual1 in: $(cat "$LAST_OUT")"
expect_exit 0 "$VBAK" job list --json
assert_eq '["manual1", "nightly"]' "$(jval "$LAST_OUT" '[j["name"] for j in d]')" "list by name"
expect_exit 0 "$VBAK" job show nightly
assert_contains "$LAST_OUT" "job nightly (id 1)"
assert_contains "$LAST_OUT" "  selection   hostpool:hp-prod, vm:db01"
assert_contains "$LAST_OUT" "  exclusions  test-*, *临时*"
assert_contains "$LAST_OUT" "  type        full"
assert_contains "$LAST_OUT" "  schedule    weekly mon,fri 02:00 from 2099-01-05 tz Europe/Berlin"
assert_contains "$LAST_OUT" "  next run    $(date -d "@$want_next" '+%Y-%m-%d %H:%M:%S %Z')"
assert_contains "$LAST_OUT" "  enabled     yes"
assert_contains "$LAST_OUT" "  options     parallel_vms=4"
assert_contains "$LAST_OUT" "min_free_bytes=200G"
assert_contains "$LAST_OUT" "retry_interval=20m"
assert_not_contains "$LAST_OUT" "compression" "options at their defaults are not shown"
expect_exit 0 "$VBAK" job show 1 --json
assert_eq nightly "$(json_get name <"$LAST_OUT")" "a number is a job id"
expect_exit 3 "$VBAK" job show nothing
assert_eq 404 "$(api http://vbakd/v1/jobs/nothing)" "unknown job"

info "option errors name the option"
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select vm:db01 --set parallel_vms=40
assert_contains "$LAST_ERR" "parallel_vms: 40 is out of range (1-32) [E2 usage]"
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select vm:db01 --set colour=red
assert_contains "$LAST_ERR" "colour: unknown option"
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select vm:db01 --set parallel_vms
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select rack:r1
assert_contains "$LAST_ERR" "unknown level 'rack'"
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select vm:db01 --schedule 'daily 25:00'
assert_contains "$LAST_ERR" "schedule: '25:00' is not a time"
expect_exit 2 "$VBAK" job create bad --platform cas1 --pool p1 --select vm:db01 --schedule 'once 2001-01-01 02:00'
assert_contains "$LAST_ERR" "in the past"
expect_exit 3 "$VBAK" job create bad --platform nope --pool p1 --select vm:db01
assert_contains "$LAST_ERR" "no platform nope"
expect_exit 3 "$VBAK" job create bad --platform cas1 --pool nope --select vm:db01

base='"name":"bad","pool":"p1"'
job="$base,\"platform\":\"cas1\",\"selection\":[\"vm:db01\"]"
assert_eq 400 "$(api -X POST --data "{$job,\"options\":{\"parallel_vms\":40}}" http://vbakd/v1/jobs)" "out of range"
assert_contains body.json '"field": "parallel_vms"'
assert_contains body.json '"message": "parallel_vms: 40 is out of range (1-32)"'
assert_eq 400 "$(api -X POST --data "{$job,\"options\":{\"parallel_vms\":\"many\"}}" http://vbakd/v1/jobs)" \
        "not a number"
assert_contains body.json '"field": "parallel_vms"'
assert_eq 400 "$(api -X POST --data "{$job,\"options\":{\"colour\":\"red\"}}" http://vbakd/v1/jobs)" "unknown option"
assert_contains body.json '"field": "colour"'
assert_eq 400 "$(api -X POST --data "{$job,\"options\":{\"compression\":\"adjustable\"}}" http://vbakd/v1/jobs)" \
        "a rule between options"
assert_contains body.json '"field": "compression_level"'
assert_eq 400 "$(api -X POST --data "{$job,\"colour\":\"red\"}" http://vbakd/v1/jobs)" "unknown field"
assert_contains body.json '"field": "colour"'
assert_eq 400 "$(api -X POST --data "{$job,\"id\":7}" http://vbakd/v1/jobs)" "read-only field"
assert_contains body.json '"field": "id"'
assert_eq 400 "$(api -X POST --data '{"name": ' http://vbakd/v1/jobs)" "malformed JSON"
assert_contains body.json '"name": "usage"'
assert_eq 400 "$(api -X POST --data "{$job,\"schedule\":\"daily at noon\"}" http://vbakd/v1/jobs)" "bad schedule text"
assert_contains body.json '"field": "schedule"'
assert_eq 400 "$(api -X POST --data "{$job,\"schedule\":{\"kind\":\"daily\",\"every_days\":0,\"time\":\"02:00\"}}" \
        http://vbakd/v1/jobs)" "bad schedule object"
assert_contains body.json '"field": "schedule"'
assert_contains body.json "every_days"
assert_eq 400 "$(api -X POST --data "{$base,\"platform\":\"cas1\",\"selection\":[]}" http://vbakd/v1/jobs)" "empty selection"
assert_contains body.json '"field": "selection"'
assert_eq 400 "$(api -X POST --data "{$job,\"exclusions\":[\"\"]}" http://vbakd/v1/jobs)" "empty pattern"
assert_contains body.json '"field": "exclusions"'
assert_eq 400 "$(api -X POST --data "{$job,\"type\":\"differential\"}" http://vbakd/v1/jobs)" "bad type"
assert_contains body.json '"field": "type"'
assert_eq 400 "$(api -X POST --data '{"name":"42","platform":"cas1","pool":"p1","selection":["vm:db01"]}' \
        http://vbakd/v1/jobs)" "a name of digits"
assert_contains body.json '"field": "name"'
assert_eq 400 "$(api -X POST --data '{"name":"bad","platform":"cas1","pool":"p1"}' http://vbakd/v1/jobs)" \
        "missing selection"
assert_contains body.json '"field": "selection"'
assert_eq 400 "$(api -X POST --data "{$base,\"platform\":\"nope\",\"selection\":[\"vm:db01\"]}" http://vbakd/v1/jobs)" "unknown platform"
assert_contains body.json '"field": "platform"'
assert_contains body.json '"name": "not-found"'
assert_eq 400 "$(api 'http://vbakd/v1/jobs?deleted=maybe')" "bad query"
# An API client may send selection objects, by name or by id.
assert_eq 201 "$(api -X POST --data '{"name":"byid","platform":"cas1","pool":"p1","selection":[{"level":"vm","id":102},{"level":"host","name":"cvk01"}],"options":{"parallel_vms":3,"cbt":false}}' \
        http://vbakd/v1/jobs)" "selection objects"
assert_eq '[{"id": 102, "level": "vm"}, {"level": "host", "name": "cvk01"}]' "$(jval body.json 'd["selection"]')" \
        "selection objects kept"
assert_eq false "$(jval body.json 'd["options"]["cbt"]')" "JSON option values"
expect_exit 0 "$VBAK" job list --json
assert_eq '["byid", "manual1", "nightly"]' "$(jval "$LAST_OUT" '[j["name"] for j in d]')" \
        "nothing created by the refused requests"

info "modify"
expect_exit 0 "$VBAK" job modify nightly --set compression=adjustable --set compression_level=9 --json
assert_eq adjustable "$(jval "$LAST_OUT" 'd["options"]["compression"]')" "compression set"
assert_eq 9 "$(jval "$LAST_OUT" 'd["options"]["compression_level"]')" "compression_level set"
assert_eq 4 "$(jval "$LAST_OUT" 'd["options"]["parallel_vms"]')" "parallel_vms kept"
assert_eq 200G "$(jval "$LAST_OUT" 'd["options"]["min_free_bytes"]')" "min_free_bytes kept"
assert_eq "weekly mon,fri 02:00 from 2099-01-05 tz Europe/Berlin" "$(json_get schedule_text <"$LAST_OUT")" \
        "schedule kept"
assert_eq '["test-*", "*临时*"]' "$(jval "$LAST_OUT" 'd["exclusions"]')" "exclusions kept"
expect_exit 0 "$VBAK" job modify nightly --set parallel_vms=default --set compression=fast --json
assert_eq 2 "$(jval "$LAST_OUT" 'd["options"]["parallel_vms"]')" "back to the default"
assert_eq null "$(jval "$LAST_OUT" 'd["options"]["compression_level"]')" "compression fast unsets the level"
assert_eq 200G "$(jval "$LAST_OUT" 'd["options"]["min_free_bytes"]')" "min_free_bytes still kept"
# All or nothing: the second option is out of range, so the first is not applied either.
expect_exit 2 "$VBAK" job modify nightly --set parallel_vms=8 --set streams_per_disk=9
assert_contains "$LAST_ERR" "streams_per_disk: 9 is out of range (1-5)"
expect_exit 2 "$VBAK" job modify nightly --set parallel_vms=8 --schedule 'weekly someday 02:00'
expect_exit 0 "$VBAK" job show nightly --json
assert_eq 2 "$(jval "$LAST_OUT" 'd["options"]["parallel_vms"]')" "a refused modification changes nothing"
assert_eq 200 "$(api -X PATCH --data '{"options":{"min_free_bytes":null}}' http://vbakd/v1/jobs/nightly)" \
        "PATCH with null"
expect_exit 0 "$VBAK" job show nightly --json
assert_eq 500G "$(jval "$LAST_OUT" 'd["options"]["min_free_bytes"]')" "null puts the default back"
assert_eq 20m "$(jval "$LAST_OUT" 'd["options"]["retry_interval"]')" "other options untouched by PATCH"
assert_eq 400 "$(api -X PATCH --data '{"options":{"parallel_vms":33}}' http://vbakd/v1/jobs/nightly)" "PATCH range"
assert_contains body.json '"field": "parallel_vms"'
assert_eq 400 "$(api -X PATCH --data '{"colour":1}' http://vbakd/v1/jobs/nightly)" "PATCH unknown field"
assert_contains body.json '"field": "colour"'
expect_exit 2 "$VBAK" job modify nightly
assert_contains "$LAST_ERR" "nothing to change"
# --select and --exclude replace the lists.
expect_exit 0 "$VBAK" job modify nightly --select cluster:cluster-a --exclude 'db0?' --type incremental --json
assert_eq '[{"level": "cluster", "name": "cluster-a"}]' "$(jval "$LAST_OUT" 'd["selection"]')" "selection replaced"
assert_eq '["db0?"]' "$(jval "$LAST_OUT" 'd["exclusions"]')" "exclusions replaced"
assert_eq incremental "$(json_get backup_type <"$LAST_OUT")" "type changed"
expect_exit 0 "$VBAK" job modify nightly --disable --json
assert_eq false "$(json_get enabled <"$LAST_OUT")" "disabled"
assert_eq null "$(json_get next_run <"$LAST_OUT")" "a disabled job has no next run"
expect_exit 0 "$VBAK" job modify nightly --enable --json
assert_eq "$want_next" "$(json_get next_run <"$LAST_OUT")" "enabled again"
expect_exit 0 "$VBAK" job modify manual1 --schedule 'daily 03:30 from 2099-02-01 tz UTC' --rename daily1 --json
assert_eq daily1 "$(json_get name <"$LAST_OUT")" "renamed"
assert_eq "daily 03:30 from 2099-02-01 tz UTC" "$(json_get schedule_text <"$LAST_OUT")" "schedule set"
assert_eq null "$(json_get next_run <"$LAST_OUT")" "still disabled"
expect_exit 3 "$VBAK" job show manual1
expect_exit 0 "$VBAK" job modify daily1 --schedule none --json
assert_eq manual "$(json_get schedule_text <"$LAST_OUT")" "--schedule none is manual"
expect_exit 14 "$VBAK" job modify daily1 --rename nightly
expect_exit 3 "$VBAK" job modify daily1 --pool nope

info "clone"
expect_exit 0 "$VBAK" job clone nightly copy --json
cp "$LAST_OUT" copy.json
expect_exit 0 "$VBAK" job show nightly --json
cp "$LAST_OUT" nightly.json
assert_eq copy "$(json_get name <copy.json)" "clone's name"
assert_cmp -ne "$(json_get id <copy.json)" "$(json_get id <nightly.json)" "clone's id"
for k in options selection exclusions schedule backup_type enabled platform pool next_run; do
        assert_eq "$(jval nightly.json "d['$k']")" "$(jval copy.json "d['$k']")" "clone's $k"
done
expect_exit 14 "$VBAK" job clone nightly copy
expect_exit 3 "$VBAK" job clone nothing copy2
assert_eq 400 "$(api -X POST --data '{"name":"copy3","pool":"p1"}' http://vbakd/v1/jobs/nightly/clone)" \
        "clone takes a name only"
assert_contains body.json '"field": "pool"'

info "remove"
copy_id=$(json_get id <copy.json)
expect_exit 0 "$VBAK" job remove copy
assert_contains "$LAST_OUT" "job copy removed"
expect_exit 3 "$VBAK" job show copy
expect_exit 3 "$VBAK" job remove copy
expect_exit 0 "$VBAK" job list
assert_not_contains "$LAST_OUT" " copy "
expect_exit 0 "$VBAK" job list --all
grep -E "^$copy_id +copy +cas1 +p1 +incremental +deleted " "$LAST_OUT" >/dev/null ||
        die "job list --all: no deleted copy in: $(cat "$LAST_OUT")"
expect_exit 0 "$VBAK" job list --all --json
assert_eq true "$(jval "$LAST_OUT" "[j['deleted'] for j in d if j['id'] == $copy_id][0]")" "deleted in the list"
expect_exit 0 "$VBAK" job show "$copy_id"
assert_contains "$LAST_OUT" "  deleted     yes"
expect_exit 19 "$VBAK" job modify "$copy_id" --enable
# The name is free again.
expect_exit 0 "$VBAK" job create copy --platform cas1 --pool p1 --select vm:web01 --json
assert_cmp -ne "$(json_get id <"$LAST_OUT")" "$copy_id" "a new job"
expect_exit 0 "$VBAK" job list --all --json
assert_eq 2 "$(jval "$LAST_OUT" "len([j for j in d if j['name'] == 'copy'])")" "both copies listed"

info "the jobs survive a restart"
expect_exit 0 "$VBAK" job list --all
cp "$LAST_OUT" list-before
expect_exit 0 "$VBAK" job show nightly
cp "$LAST_OUT" show-before
stop_daemon
start_daemon
expect_exit 0 "$VBAK" job list --all
assert_eq "$(cat list-before)" "$(cat "$LAST_OUT")" "job list after a restart"
expect_exit 0 "$VBAK" job show nightly
assert_eq "$(cat show-before)" "$(cat "$LAST_OUT")" "job show after a restart"

stop_daemon
stop_all_here
info "ok"
