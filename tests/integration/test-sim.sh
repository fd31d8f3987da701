#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-sim.sh -- vbak-cvm-sim, the CAS CVM REST simulator, checked with curl:
# Digest auth, XML and JSON renderings in both quirk modes, paging, power
# tasks through message/{msgId}, 409 business errors in UTF-8 and GBK.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIM=$(dirname "$VBAK")/vbak-cvm-sim
TOPOLOGY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim" && pwd)/topology-default.json
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
command -v curl >/dev/null || die "no curl (scripts/deps.sh installs it)"
command -v python3 >/dev/null || skip "no python3"
command -v iconv >/dev/null || skip "no iconv"

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo 's3cret-pw' >password
SIM_PID=
cleanup() {
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        return 0
}
trap cleanup EXIT

# start_sim ARGS...: starts the simulator on a free port, sets URL.
start_sim() {
        cleanup
        local port
        port=$(free_port)
        "$SIM" serve --topology "$TOPOLOGY" --http "127.0.0.1:$port" --user admin --password-file password \
                --state-dir "$WORK" "$@" --cvd-port 0 >sim.out 2>sim.err &
        SIM_PID=$!
        for _ in $(seq 100); do
                grep -q "listening on http://127.0.0.1:$port" sim.out 2>/dev/null && break
                kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
                sleep 0.05
        done
        grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
        URL=http://127.0.0.1:$port/cas/casrs
}

# cas METHOD PATH [curl args...]: body to body.out, headers to headers.out, prints the status
cas() {
        local method=$1 path=$2
        shift 2
        curl -s --digest -u admin:s3cret-pw -X "$method" -D headers.out -o body.out -w '%{http_code}' "$@" \
                "$URL/$path"
}

# header NAME: the value of a response header from headers.out (the last response)
header() {
        tr -d '\r' <headers.out | awk -v h="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' \
                'tolower($1) == h { v = substr($0, length($1) + 3) } END { print v }'
}

# jq_py EXPR: evaluates a python expression on the JSON body (as j)
jq_py() {
        python3 -c "import json; j = json.load(open('body.out')); print($1)"
}

mkdir -p pools/cvk01
start_sim

info "--help"
expect_exit 0 "$SIM" --help
assert_contains "$LAST_OUT" "--json-quirks"

info "Digest auth"
code=$(curl -s -o /dev/null -D headers.out -w '%{http_code}' "$URL/operator/test")
assert_eq 401 "$code" "no credentials"
assert_contains headers.out 'Digest realm="VMC RESTful Web Services"'
assert_contains headers.out 'qop="auth"'
code=$(curl -s -o /dev/null --digest -u admin:wrong -w '%{http_code}' "$URL/operator/test")
assert_eq 401 "$code" "wrong password"
code=$(curl -s -o /dev/null --digest -u nobody:s3cret-pw -w '%{http_code}' "$URL/operator/test")
assert_eq 401 "$code" "wrong user"
assert_eq 204 "$(cas GET operator/test)" "operator/test"
assert_eq 404 "$(cas GET no/such/thing)" "unknown path"

info "XML vmList and paging"
assert_eq 200 "$(cas GET vm/vmList)" "vmList"
assert_eq 6 "$(grep -o '<domain>' body.out | wc -l)" "domains in vmList"
assert_eq 6 "$(header Total)" "Total header"
assert_contains body.out '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><list><domain>'
assert_contains body.out '<title>数据库服务器</title>'
assert_eq 200 "$(cas GET 'vm/vmList?offset=2&limit=2')" "vmList page"
assert_eq 2 "$(grep -o '<domain>' body.out | wc -l)" "domains in a page"
assert_eq 6 "$(header Total)" "Total header of a page"
assert_contains body.out '<id>103</id>'
assert_contains body.out '<id>104</id>'
assert_eq 200 "$(cas GET 'vm/vmList?hostId=3')" "vmList by host"
assert_eq 2 "$(header Total)" "VMs on host 3"
assert_eq 200 "$(cas GET 'vm/vmList?clusterId=1')" "vmList by cluster"
assert_eq 4 "$(header Total)" "VMs in cluster 1"
assert_eq 200 "$(cas GET host)" "host list"
assert_contains body.out '<host type="kvm"><id>1</id>'
assert_eq 200 "$(cas GET 'cluster/hosts?clusterId=1&offset=1&limit=5')" "cluster/hosts"
assert_eq 2 "$(header Total)" "hosts in cluster 1"
assert_eq 1 "$(grep -o '<host>' body.out | wc -l)" "hosts in the page"
assert_eq 200 "$(cas GET hostpool/2/allChildNode)" "allChildNode"
assert_contains body.out '<nodeList><hostList type="kvm"><id>3</id>'

info "JSON, legacy quirks"
assert_eq 200 "$(cas GET vm/detail/102 -H 'Accept: application/json')" "vm/detail JSON"
assert_eq dict "$(jq_py 'type(j["storage"]).__name__')" "one-disk storage is an object"
assert_eq str "$(jq_py 'type(j["id"]).__name__')" "legacy id type"
assert_eq 102 "$(jq_py 'j["id"]')" "id"
assert_eq qcow2 "$(jq_py 'j["storage"]["format"]')" "format"
assert_eq 64 "$(jq_py 'j["storage"]["size"]')" "size in MB"
assert_eq "$WORK/pools/cvk01/db01-vda.qcow2" "$(jq_py 'j["storage"]["path"]')" "path"
assert_eq False "$(jq_py '"hostId" in j')" "vm/detail has no hostId"
assert_eq 数据库服务器 "$(jq_py 'j["title"]')" "Chinese title"
assert_eq 200 "$(cas GET vm/detail/101 -H 'Accept: application/json')" "two-disk vm/detail"
assert_eq 2 "$(jq_py 'len(j["storage"])')" "two-disk storage is a list"
assert_eq 200 "$(cas GET host -H 'Accept: application/json')" "host JSON"
assert_eq kvm "$(jq_py 'j["host"][0]["@type"]')" "@type attribute key"
assert_eq 200 "$(cas GET 'storage/pool?hostId=1' -H 'Accept: application/json')" "storage/pool"
assert_eq dir "$(jq_py 'j["storagePool"]["type"]')" "one pool is an object"
want_free=$(($(stat -f -c '%a * %S' pools/cvk01) / 1048576))
got_free=$(jq_py 'j["storagePool"]["freeSize"]')
assert_cmp -le $((want_free - got_free)) 64 "freeSize from statvfs (MB)"
assert_cmp -ge $((want_free - got_free)) -64 "freeSize from statvfs (MB)"
assert_eq 200 "$(cas GET 'storage/info?hostId=3&poolName=data')" "storage/info"
assert_contains body.out '<title>数据存储</title>'
assert_contains body.out '<totalSize>2097152</totalSize>'
assert_contains body.out '<freeSize>2097120</freeSize>'

info "capabilities and checkCbtBackup"
assert_eq 200 "$(cas PUT vm/checkCbtBackup/101)" "checkCbtBackup"
assert_eq true "$(cat body.out)" "qcow2 VM supports CBT"
assert_eq 200 "$(cas PUT vm/checkCbtBackup/104)" "checkCbtBackup raw"
assert_eq false "$(cat body.out)" "raw VM does not support CBT"
assert_eq 200 "$(cas GET vm/104/capabilities)" "capabilities"
assert_contains body.out '<supportCbt>false</supportCbt>'
assert_eq 200 "$(cas GET vm/105/storage)" "vm/{id}/storage"
assert_contains body.out '<driverType>raw</driverType>'

info "power task"
assert_eq 200 "$(cas GET vm/102)" "vm/{id}"
assert_contains body.out '<status>3</status>'
assert_eq 200 "$(cas PUT vm/start/102 -H 'Accept: application/json')" "vm/start"
assert_eq false "$(jq_py 'j["completed"]')" "immediate taskMsg"
msg=$(jq_py 'j["msgId"]')
assert_cmp -gt "$msg" 4294967295 "msgId is a millisecond timestamp"
done=
for _ in $(seq 50); do
        assert_eq 200 "$(cas GET "message/$msg" -H 'Accept: application/json')" "message/{id}"
        if [[ $(jq_py 'j["completed"]') == true ]]; then
                done=1
                break
        fi
        sleep 0.1
done
[[ -n $done ]] || die "the start task did not complete"
assert_eq 0 "$(jq_py 'j["result"]')" "task result"
assert_eq 100 "$(jq_py 'j["progress"]')" "task progress"
assert_eq 30 "$(jq_py 'j["eventType"]')" "start eventType"
assert_eq 200 "$(cas GET vm/102)" "vm/{id} after start"
assert_contains body.out '<status>2</status>'
assert_eq 200 "$(cas GET vm/detail/102)" "vm/detail after start"
assert_contains body.out '<status>running</status>'
assert_eq 404 "$(cas GET message/12345)" "unknown task"

info "business errors"
assert_eq 409 "$(cas GET vm/detail/999)" "unknown VM"
assert_eq 1001 "$(header Error-Code)" "Error-Code"
assert_eq 虚拟机不存在。 "$(header Error-Message)" "UTF-8 Error-Message"
assert_eq 409 "$(cas PUT vm/start/999)" "start an unknown VM"
assert_eq 1001 "$(header Error-Code)" "Error-Code of start"
assert_eq 409 "$(cas GET host/id/77)" "unknown host"
assert_eq 402 "$(header Error-Code)" "Error-Code of an unknown host"

info "typed quirks"
start_sim --json-quirks typed
assert_eq 200 "$(cas GET vm/detail/102 -H 'Accept: application/json')" "typed vm/detail"
assert_eq list "$(jq_py 'type(j["storage"]).__name__')" "typed storage is a list"
assert_eq int "$(jq_py 'type(j["id"]).__name__')" "typed id"
assert_eq int "$(jq_py 'type(j["storage"][0]["size"]).__name__')" "typed size"
assert_eq shutOff "$(jq_py 'j["status"]')" "a fresh simulator starts from the topology"
assert_eq 200 "$(cas GET host -H 'Accept: application/json')" "typed host"
assert_eq kvm "$(jq_py 'j["host"][0]["type"]')" "typed type key"
assert_eq 200 "$(cas PUT vm/checkCbtBackup/101 -H 'Accept: application/json')" "typed checkCbtBackup"
assert_eq 200 "$(cas GET 'storage/pool?hostId=2' -H 'Accept: application/json')" "typed pools"
assert_eq list "$(jq_py 'type(j["storagePool"]).__name__')" "typed one-pool list"
assert_eq 200 "$(cas GET host)" "typed host XML"
assert_contains body.out '<host><type>kvm</type>'

info "GBK error messages"
start_sim --error-charset gbk
assert_eq 409 "$(cas GET vm/999)" "unknown VM (gbk)"
assert_eq 1001 "$(header Error-Code)" "Error-Code (gbk)"
assert_eq GBK "$(header charset)" "charset header"
tr -d '\r' <headers.out | sed -n 's/^Error-Message: //p' >msg.gbk
assert_eq 虚拟机不存在。 "$(iconv -f GBK -t UTF-8 msg.gbk)" "GBK Error-Message"
! iconv -f UTF-8 -t UTF-8 msg.gbk >/dev/null 2>&1 || die "Error-Message is not GBK bytes"

info "HTTPS"
command -v openssl >/dev/null || die "no openssl (scripts/deps.sh installs it)"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 \
        >/dev/null 2>&1 || die "openssl req failed"
tls_port=$(free_port)
start_sim --https "127.0.0.1:$tls_port" --cert cert.pem --key key.pem
grep -q "listening on https://127.0.0.1:$tls_port" sim.out || die "no HTTPS listener: $(cat sim.out sim.err)"
code=$(curl -s --cacert cert.pem --digest -u admin:s3cret-pw -o body.out -w '%{http_code}' \
        "https://127.0.0.1:$tls_port/cas/casrs/hostpool/all")
assert_eq 200 "$code" "hostpool/all over HTTPS"
assert_eq 2 "$(grep -o '<hostPool>' body.out | wc -l)" "host pools"
info "ok"
