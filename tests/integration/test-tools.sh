#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The test tools themselves: qemu-nbd behind tcp-proxy.py copies exactly, the
# proxy's cut-after, cut and down break transfers and it carries on after
# them; a QEMU VM takes a bitmap through qmp.py and guest-like writes through
# vm_write, and its NBD export shows exactly those writes as dirty.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/integration/vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
need_qemu
trap stop_all EXIT
trap 'exit 143' TERM INT

# stat_of CONTROL KEY: one number from the proxy's stats
stat_of() {
        proxy_cmd "$1" stats | json_get "$2"
}

# wait_stat CONTROL KEY VALUE: until the proxy's stats say so (closing a
# connection takes the proxy a moment after its client went), at most 5 s
wait_stat() {
        local tries=100
        until [[ $(stat_of "$1" "$2") == "$3" ]]; do
                ((tries-- > 0)) || die "proxy stats: $2 is $(stat_of "$1" "$2"), expected $3"
                sleep 0.05
        done
}

info "qemu-nbd behind the proxy"
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x5a 1M 6M" -c "write -P 0xa5 20M 10M" -c "write -P 0x11 63M 1M" disk.qcow2 >/dev/null
qemu-img convert -O raw disk.qcow2 ref.raw
nbd_port=$(free_port)
start_qemu_nbd disk.qcow2 "$nbd_port" -r
proxy_port=$(free_port)
ctl=$WORK/proxy.ctl
start_proxy "$proxy_port" "127.0.0.1:$nbd_port" "$ctl"
url=nbd://127.0.0.1:$proxy_port

expect_exit 0 nbdcopy "$url" copy.raw
assert_same ref.raw copy.raw "nbdcopy through the proxy"
assert_cmp -ge "$(stat_of "$ctl" server_to_client)" $((17 * MiB)) "bytes server->client after a copy"
assert_cmp -gt "$(stat_of "$ctl" client_to_server)" 0 "bytes client->server after a copy"
assert_eq 0 "$(stat_of "$ctl" cuts)" "cuts before any"

info "cut-after 4 MiB breaks a copy mid-way, then the proxy carries on"
s2c=$(stat_of "$ctl" server_to_client)
assert_eq ok "$(proxy_cmd "$ctl" "cut-after $((4 * MiB))")"
rm -f copy.raw
expect_exit 1 nbdcopy "$url" copy.raw
assert_eq 1 "$(stat_of "$ctl" cuts)" "cuts after cut-after"
assert_cmp -ge "$(stat_of "$ctl" connections_cut)" 1 "connections cut"
got=$(($(stat_of "$ctl" server_to_client) - s2c))
assert_cmp -ge "$got" $((4 * MiB)) "bytes server->client before the cut"
assert_cmp -lt "$got" $((17 * MiB)) "bytes server->client before the cut"
expect_exit 0 nbdcopy "$url" copy.raw
assert_same ref.raw copy.raw "nbdcopy after a cut"
assert_eq 1 "$(stat_of "$ctl" cuts)" "cuts after a clean copy"

info "down refuses connections until up"
assert_eq ok "$(proxy_cmd "$ctl" "down 30")"
assert_eq true "$(stat_of "$ctl" down)"
expect_exit 1 nbdinfo --size "$url"
assert_cmp -ge "$(stat_of "$ctl" refused)" 1 "connections refused while down"
assert_eq ok "$(proxy_cmd "$ctl" up)"
assert_eq "$((64 * MiB))" "$(run_ok nbdinfo --size "$url")" "export size after up"
assert_eq ok "$(proxy_cmd "$ctl" "down 0.3")"
sleep 0.5
assert_eq false "$(stat_of "$ctl" down)"
expect_exit 0 nbdinfo --size "$url"

info "cut resets an open connection"
# A client that connects and waits: its read fails when the proxy cuts.
"$VM_PYTHON" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(1 << 16)  # the NBD greeting
sys.stdout.write("connected\n"); sys.stdout.flush()
try:
    s.settimeout(10)
    data = s.recv(1 << 16)
    print("eof" if not data else "data")
except ConnectionResetError:
    print("reset")
' "$proxy_port" >client.out &
client=$!
for _ in $(seq 100); do
        grep -q connected client.out && break
        sleep 0.05
done
assert_contains client.out connected "the waiting client"
wait_stat "$ctl" active 1
assert_eq ok "$(proxy_cmd "$ctl" cut)"
wait "$client"
assert_contains client.out reset "the waiting client after a cut"
assert_eq 0 "$(stat_of "$ctl" active)" "active connections right after a cut"
expect_exit 1 proxy_cmd "$ctl" "bogus"
assert_contains "$LAST_OUT" "error: unknown command"

info "a QEMU VM: bitmap, writes, NBD export"
qemu-img create -q -f qcow2 vm.qcow2 64M
qmp_sock=$WORK/vm1.qmp
start_qemu_vm vm1 "$WORK/vm.qcow2" "$qmp_sock"
expect_exit 0 qmp "$qmp_sock" '{"execute":"query-status"}'
assert_contains "$LAST_OUT" '"status": "running"'
expect_exit 0 qmp "$qmp_sock" \
        "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"$VM_NODE\",\"name\":\"b0\",\"persistent\":true}}"
assert_eq "{}" "$(cat "$LAST_OUT")" "block-dirty-bitmap-add's return"
# A QMP error: exit 1 and its desc.
expect_exit 1 qmp "$qmp_sock" \
        "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"$VM_NODE\",\"name\":\"b0\"}}"
assert_contains "$LAST_ERR" "Bitmap already exists: b0"
vm_write "$qmp_sock" 0x5a 1M 64k
vm_write "$qmp_sock" 0xa5 10M 192k
expect_exit 0 qmp "$qmp_sock" --hmp "info block"
assert_contains "$LAST_OUT" "vm.qcow2"

vm_port=$(free_port)
expect_exit 0 qmp "$qmp_sock" \
        "{\"execute\":\"transaction\",\"arguments\":{\"actions\":[
          {\"type\":\"block-dirty-bitmap-add\",\"data\":{\"node\":\"$VM_NODE\",\"name\":\"b0-exp\",\"disabled\":true}},
          {\"type\":\"block-dirty-bitmap-merge\",\"data\":{\"node\":\"$VM_NODE\",\"target\":\"b0-exp\",\"bitmaps\":[\"b0\"]}}]}}" \
        "{\"execute\":\"nbd-server-start\",\"arguments\":{\"addr\":{\"type\":\"inet\",
          \"data\":{\"host\":\"127.0.0.1\",\"port\":\"$vm_port\"}}}}" \
        "{\"execute\":\"block-export-add\",\"arguments\":{\"type\":\"nbd\",\"id\":\"exp0\",\"node-name\":\"$VM_NODE\",
          \"name\":\"disk\",\"writable\":false,\"bitmaps\":[\"b0-exp\"]}}"
assert_eq 3 "$(wc -l <"$LAST_OUT")" "returns of 3 commands"
wait_port 127.0.0.1 "$vm_port"
expect_exit 0 nbdinfo --map=qemu:dirty-bitmap:b0-exp "nbd://127.0.0.1:$vm_port/disk"
dirty=$(awk '$3 == 1 { print $1, $2 }' "$LAST_OUT" | tr '\n' ' ')
assert_eq "1048576 65536 10485760 196608 " "$dirty" "dirty extents"

# The written bytes, read back through a second proxy.
vm_proxy_port=$(free_port)
start_proxy "$vm_proxy_port" "127.0.0.1:$vm_port" "$WORK/proxy2.ctl"
expect_exit 0 nbdcopy "nbd://127.0.0.1:$vm_proxy_port/disk" vm.raw
head -c $((64 * KiB)) /dev/zero | tr '\0' '\132' >want.bin
cmp -s want.bin <(dd if=vm.raw bs=64K skip=16 count=1 status=none) || die "0x5a not at 1M in the VM's disk"
assert_eq $((64 * MiB)) "$(stat -c %s vm.raw)" "size of the VM's disk copy"
info "ok"
