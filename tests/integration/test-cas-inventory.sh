#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-cas-inventory.sh -- `vbak cas inventory` (the CAS driver's connect and
# inventory: host pools, clusters, hosts, VMs merged from vm/{id} and
# vm/detail/{id}) against vbak-cvm-sim in both JSON quirk modes and in XML
# (the same document as JSON); `vbak cas
# vm` and `vbak cas power` (vm_get, storage_free, power tasks); a wrong
# password and a closed port give their exit codes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

SIM=$(dirname "$VBAK")/vbak-cvm-sim
[[ -x $SIM ]] || die "vbak-cvm-sim is not built (make all builds it)"
need_qemu
command -v python3 >/dev/null || skip "no python3"
cp "$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim" && pwd)/topology-default.json" topology.json
echo 's3cret-pw' >password
echo 'wrong' >wrong

SIM_PID=
stop_sim() {
        # SIGTERM lets the simulator stop its QEMUs; wait until it has.
        [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
        SIM_PID=
        return 0
}
trap stop_sim EXIT
trap 'exit 143' TERM INT

# start_sim ARGS...: the simulator on a free port with its state in $WORK/state; sets CVM.
start_sim() {
        local port
        stop_sim
        port=$(free_port)
        mkdir -p state
        "$SIM" serve --topology topology.json --http "127.0.0.1:$port" --user admin --password-file password \
                --state-dir "$WORK/state" "$@" --cvd-port 0 >sim.out 2>sim.err &
        SIM_PID=$!
        for _ in $(seq 300); do
                grep -q "listening on http://127.0.0.1:$port" sim.out 2>/dev/null && break
                kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat sim.err)"
                sleep 0.05
        done
        grep -q "listening on" sim.out || die "the simulator did not start: $(cat sim.err)"
        CVM=http://127.0.0.1:$port
}

# py EXPR: a python expression on the JSON document in $LAST_OUT (as j)
py() {
        python3 -c "import json; j = json.load(open('$LAST_OUT')); vm = {v['name']: v for v in j.get('vms', [])}; print($1)"
}

check_inventory() {
        local mode=$1
        info "inventory ($mode quirks)"
        expect_exit 0 "$VBAK" cas inventory --cvm "$CVM" --user admin --password-file password --json
        assert_eq 6 "$(py 'len(j["vms"])')" "VMs ($mode)"
        assert_eq 2 "$(py 'len(j["hostPools"])')" "host pools ($mode)"
        assert_eq 1 "$(py 'len(j["clusters"])')" "clusters ($mode)"
        assert_eq 3 "$(py 'len(j["hosts"])')" "hosts ($mode)"
        assert_eq "1 1 1" "$(py '" ".join([j["hosts"][0]["clusterId"], j["hosts"][0]["hostPoolId"], j["clusters"][0]["hostPoolId"]])')" \
                "host placement ($mode)"
        assert_eq "cvk03 None 2" "$(py '" ".join(str(h.get("clusterId")) if k == "c" else h[k] for h in j["hosts"] if h["name"] == "cvk03" for k in ("name", "c", "hostPoolId"))')" \
                "a host directly in a pool ($mode)"
        assert_eq 数据库服务器 "$(py 'vm["db01"]["title"]')" "Chinese title ($mode)"
        assert_eq "1 shut off 2 1 512" "$(py '" ".join(str(x) for x in (vm["db01"]["hostId"], vm["db01"]["state"], vm["db01"]["cpuSockets"], vm["db01"]["cpuCores"], vm["db01"]["memoryMB"]))')" \
                "db01 merged from both views ($mode)"
        assert_eq running "$(py 'vm["web01"]["state"]')" "running VM ($mode)"
        assert_eq 2 "$(py 'len(vm["test01"]["disks"])')" "two disks ($mode)"
        assert_eq "vda qcow2 67108864 defaultpool" \
                "$(py '" ".join(str(vm["test01"]["disks"][0][k]) for k in ("device", "format", "size", "pool"))')" \
                "first disk ($mode)"
        assert_eq "vdb raw 33554432 data" \
                "$(py '" ".join(str(vm["test01"]["disks"][1][k]) for k in ("device", "format", "size", "pool"))')" \
                "second disk ($mode)"
        assert_eq "$WORK/state/pools/cvk03-data/test01-vdb.raw" "$(py 'vm["test01"]["disks"][1]["path"]')" "disk path ($mode)"
        assert_eq "3 2 db01" "$(py '" ".join(str(x) for x in (vm["test01"]["config"]["hostId"], len(vm["test01"]["config"]["storage"]), vm["db01"]["config"]["name"]))')" \
                "captured configuration ($mode)"
        assert_eq 1 "$(py 'len(vm["db01"]["config"]["storage"])')" "one-disk configuration is a list ($mode)"
        expect_exit 0 "$VBAK" cas inventory --cvm "$CVM" --user admin --password-file password
        assert_contains "$LAST_OUT" "vm 数据库服务器 (db01), id 102, shut off"
        assert_contains "$LAST_OUT" "2 host pools, 1 clusters, 3 hosts, 6 VMs"
}

expect_exit 0 "$VBAK" cas --help
assert_contains "$LAST_OUT" "--password-file"
expect_exit 2 "$VBAK" cas inventory --cvm http://127.0.0.1:1

start_sim --json-quirks legacy
check_inventory legacy

info "the same inventory in XML"
expect_exit 0 "$VBAK" cas inventory --cvm "$CVM" --user admin --password-file password --json
cp "$LAST_OUT" inventory-json.json
expect_exit 0 "$VBAK" cas inventory --cvm "$CVM" --user admin --password-file password --json --xml
python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' \
        inventory-json.json "$LAST_OUT" || die "the XML inventory differs from the JSON one"

info "vm_get, storage_free, power"
expect_exit 0 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm 数据库服务器 --json
assert_eq 102 "$(py 'j["id"]')" "VM by title"
assert_cmp -gt "$(py 'j["storageFree"]')" 0 "free space"
expect_exit 0 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm 0b7c8a52-1f3e-4d6a-9c1b-000000000105 --json
assert_eq test01 "$(py 'j["name"]')" "VM by uuid"
expect_exit 3 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm 999
assert_contains "$LAST_ERR" "vm id 999"
expect_exit 0 "$VBAK" cas power --cvm "$CVM" --user admin --password-file password --vm db01 start
expect_exit 19 "$VBAK" cas power --cvm "$CVM" --user admin --password-file password --vm db01 start
assert_contains "$LAST_ERR" "vm db01 (id 102): start: task failed"
expect_exit 0 "$VBAK" cas power --cvm "$CVM" --user admin --password-file password --vm 102 off
expect_exit 0 "$VBAK" cas vm --cvm "$CVM" --user admin --password-file password --vm db01 --json
assert_eq "shut off" "$(py 'j["state"]')" "powered off"

info "errors"
expect_exit 18 "$VBAK" cas inventory --cvm "$CVM" --user admin --password-file wrong
assert_contains "$LAST_ERR" "401 unauthorized: check the user and password"
closed=$(free_port)
expect_exit 17 "$VBAK" cas inventory --cvm "http://127.0.0.1:$closed" --user admin --password-file password
assert_contains "$LAST_ERR" "CVM 127.0.0.1:$closed"

start_sim --json-quirks typed
check_inventory typed
stop_sim
info "ok"
