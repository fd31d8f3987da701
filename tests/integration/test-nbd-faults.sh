#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Network faults between vbak and qemu-nbd, through tcp-proxy.py:
# - the data connections are cut three times mid-stream: the backup
#   completes, reconnecting each time, re-reads at most the resume buffer per
#   cut, and its restore point restores byte-identical;
# - the export stays unreachable longer than the reconnect window: the backup
#   fails with the network error (17), says why, and commits nothing;
# - a rate limit of 20 MiB/s holds within 10 % over a 200 MiB transfer.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/integration/vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
need_qemu
trap stop_all EXIT
trap 'exit 143' TERM INT

jget() {
        "$VM_PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# 200 MiB of incompressible data in a 256 MiB raw disk.
truncate -s 256M disk.raw
head -c 200M /dev/urandom | dd of=disk.raw conv=notrunc status=none
"$VBAK" pool init pool --compression none >/dev/null
nbd_port=$(free_port)
start_qemu_nbd disk.raw "$nbd_port" -r -x vda
proxy_port=$(free_port)
ctl=$WORK/proxy.ctl
start_proxy "$proxy_port" "127.0.0.1:$nbd_port" "$ctl"
url=nbd://127.0.0.1:$proxy_port/vda

info "three cuts mid-stream"
resume=$((4 * MiB))
"$VBAK" pool backup pool --vm vm1 --disk vda --source "$url" --connections 2 --resume-buffer 4M \
        --rate 50MiB/s --json >cut.json 2>cut.err &
backup=$!
# Each cut lands while data flows: after 30 MiB more went to vbak.
for i in 1 2 3; do
        proxy_cmd "$ctl" "cut-after $((30 * MiB))" >/dev/null
        tries=200
        until [[ $(proxy_cmd "$ctl" stats | json_get cuts) -ge $i ]]; do
                ((tries-- > 0)) || die "cut $i did not happen"
                sleep 0.05
        done
done
wait "$backup" || die "the backup did not survive the cuts: $(cat cut.err)"
cuts=$(jget cut.json 'd["transport"]["cuts"]')
resent=$(jget cut.json 'd["transport"]["bytes_resent"]')
assert_cmp -ge "$cuts" 3 "connections lost"
assert_cmp -ge "$(jget cut.json 'd["transport"]["reconnects"]')" 3 "reconnects"
assert_cmp -le "$resent" $((cuts * resume)) "bytes read again ($resent) within the resume buffer per cut"
assert_eq 209715200 "$(jget cut.json 'd["transport"]["bytes_received"]')" "answered bytes: each read once"
info "$cuts cuts, $resent bytes sent again"
"$VBAK" pool restore pool latest --disk vda --target restored.raw >/dev/null 2>restore.err ||
        die "restore: $(cat restore.err)"
cmp restored.raw disk.raw || die "the restore after the cuts differs"

info "a cut longer than the reconnect window"
before=$("$VBAK" pool list pool --json | grep -c '"id"')
"$VBAK" pool backup pool --vm vm1 --disk vda --source "$url" --rate 50MiB/s --reconnect-window 2s \
        >down.out 2>down.err &
backup=$!
sleep 0.8
proxy_cmd "$ctl" "down 6" >/dev/null
rc=0
wait "$backup" || rc=$?
assert_eq 17 "$rc" "exit code"
assert_contains down.err "reconnect window" "the error"
assert_contains down.err "nothing was committed" "the error"
assert_eq "$before" "$("$VBAK" pool list pool --json | grep -c '"id"')" "restore points after the failure"
proxy_cmd "$ctl" up >/dev/null

info "a rate limit of 20 MiB/s over 200 MiB"
start=$(date +%s.%N)
"$VBAK" pool backup pool --vm vm2 --disk vda --source "nbd://127.0.0.1:$nbd_port/vda" --rate 20MiB/s --json \
        >rate.json 2>rate.err || die "rate-limited backup: $(cat rate.err)"
end=$(date +%s.%N)
secs=$(jget rate.json 'd["seconds"]')
info "200 MiB at 20 MiB/s took $secs s (command: $(echo "$end - $start" | bc 2>/dev/null || echo '?') s)"
"$VM_PYTHON" -c 'import sys; s = float(sys.argv[1]); sys.exit(not (9.0 <= s <= 11.0))' "$secs" ||
        die "200 MiB at 20 MiB/s took $secs s, not 10 s +- 10 %"
info "ok"
