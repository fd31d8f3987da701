# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libvirtd.sh -- a private libvirtd for the tests of the libvirt platform,
# sourced after lib.sh and vm.sh.
#
# The daemon runs in a mount namespace of its own, where the test's folders
# are bound over /etc/libvirt, /run/libvirt, /var/lib/libvirt and
# /var/log/libvirt, and over /etc/passwd and /etc/group copies that add the
# user and group libvirt resolves before it reads qemu.conf (libvirt-qemu).
# So nothing of the machine's own libvirt is seen or changed, and no user
# is added to it. qemu.conf is the one of qemu-libvirt-recipes.md §2: QEMU
# as root, no security driver, no cgroups, QEMU's output to plain files (no
# virtlogd). The domains' QEMUs (TCG) are children of that libvirtd.
#
# Clients reach it at $LV_URI (qemu:///system?socket=...). QEMU's
# capabilities cache is kept beside the binaries under test, so that only
# the first test probes QEMU (several seconds).
#
#     start_libvirtd       starts it (sets LV_URI, LV_DIR, LV_PID)
#     lv ARGS...           virsh on it
#     stop_libvirtd        destroys and undefines every domain, stops it

LV_DIR=$WORK/libvirt
LV_URI=''
LV_PID=''

need_libvirtd() {
        local c
        for c in libvirtd virsh unshare; do
                command -v "$c" >/dev/null || skip "needs $c (scripts/deps.sh installs libvirt)"
        done
        [[ $(id -u) == 0 ]] || skip "a private libvirtd needs root (mount namespace, QEMU as root)"
}

lv() {
        virsh -q -c "$LV_URI" "$@"
}

start_libvirtd() {
        local cache d
        cache=$(cd "$(dirname "$VBAK")" && pwd)/libvirt-cache
        mkdir -p "$LV_DIR"/{etc,run,lib,log/qemu} "$cache"
        cat >"$LV_DIR/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
EOF
        : >"$LV_DIR/etc/libvirtd.conf"
        cp /etc/passwd "$LV_DIR/passwd"
        cp /etc/group "$LV_DIR/group"
        grep -q '^kvm:' "$LV_DIR/group" || echo 'kvm:x:64056:' >>"$LV_DIR/group"
        grep -q '^libvirt-qemu:' "$LV_DIR/group" || echo 'libvirt-qemu:x:64055:' >>"$LV_DIR/group"
        grep -q '^libvirt-qemu:' "$LV_DIR/passwd" ||
                echo 'libvirt-qemu:x:64055:64055:libvirt:/var/lib/libvirt:/usr/sbin/nologin' >>"$LV_DIR/passwd"
        for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
                mkdir -p "$d"
        done
        cat >"$LV_DIR/start.sh" <<EOF
set -e
mount --bind '$LV_DIR/etc' /etc/libvirt
mount --bind '$LV_DIR/run' /run/libvirt
mount --bind '$LV_DIR/lib' /var/lib/libvirt
mount --bind '$LV_DIR/log' /var/log/libvirt
mount --bind '$cache' /var/cache/libvirt
mount --bind '$LV_DIR/passwd' /etc/passwd
mount --bind '$LV_DIR/group' /etc/group
LIBVIRT_LOG_OUTPUTS='3:file:$LV_DIR/libvirtd.log' exec libvirtd
EOF
        unshare -m --propagation private sh "$LV_DIR/start.sh" >"$LV_DIR/out.log" 2>&1 &
        LV_PID=$!
        track "$LV_PID" libvirtd
        LV_URI="qemu:///system?socket=$LV_DIR/run/libvirt-sock"
        for _ in $(seq 300); do
                [[ -S $LV_DIR/run/libvirt-sock ]] && break
                kill -0 "$LV_PID" 2>/dev/null || die "libvirtd exited: $(cat "$LV_DIR/out.log")"
                sleep 0.05
        done
        [[ -S $LV_DIR/run/libvirt-sock ]] || die "libvirtd did not start: $(cat "$LV_DIR/out.log")"
        # The first call waits for QEMU's capabilities (probed, or from the cache).
        lv version >/dev/null || die "libvirtd does not answer: $(tail -5 "$LV_DIR/libvirtd.log")"
}

# stop_libvirtd: no domain is left behind, then the daemon goes.
stop_libvirtd() {
        local name
        [[ -n $LV_PID ]] || return 0
        if kill -0 "$LV_PID" 2>/dev/null; then
                while read -r name; do
                        [[ -n $name ]] || continue
                        lv destroy "$name" >/dev/null 2>&1 || true
                        lv undefine "$name" --checkpoints-metadata --snapshots-metadata >/dev/null 2>&1 || true
                done < <(lv list --all --name 2>/dev/null)
                kill "$LV_PID" 2>/dev/null || true
                for _ in $(seq 100); do
                        kill -0 "$LV_PID" 2>/dev/null || break
                        sleep 0.05
                done
        fi
        LV_PID=''
}

# lv_domain NAME DISK... : defines a TCG domain (no guest OS) with one
# virtio qcow2 or raw disk per image, vda, vdb..., and a NIC-less config.
lv_domain() {
        local name=$1 letters=abcdefghij i=0 img fmt
        shift
        {
                echo "<domain type='qemu'><name>$name</name><title>$name 的标题</title>"
                echo "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                echo "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
                echo "<devices><emulator>$(command -v qemu-system-x86_64)</emulator>"
                for img in "$@"; do
                        fmt=$(qemu-img info --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')
                        echo "<disk type='file' device='disk'><driver name='qemu' type='$fmt'/>"
                        echo "<source file='$img'/><target dev='vd${letters:i:1}' bus='virtio'/></disk>"
                        i=$((i + 1))
                done
                echo "<memballoon model='none'/></devices></domain>"
        } >"$LV_DIR/$name.xml"
        lv define "$LV_DIR/$name.xml" >/dev/null || die "defining domain $name failed"
}

# lv_write DOMAIN DEVINDEX PATTERN OFFSET LENGTH: a write into a running
# domain's disk, through HMP qemu-io on its virtio backend.
lv_write() {
        lv qemu-monitor-command "$1" --hmp \
                "qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend \"write -P $3 $4 $5\"" >/dev/null ||
                die "writing into domain $1 failed"
}

# lv_flush DOMAIN DEVINDEX: the domain's QEMU writes what it holds of that
# disk into its image, so that the file can be copied as the guest sees it.
lv_flush() {
        lv qemu-monitor-command "$1" --hmp \
                "qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend flush" >/dev/null ||
                die "flushing domain $1's disk $2 failed"
}
