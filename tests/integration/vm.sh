# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vm.sh -- helpers for the integration tests that need real peers: a QEMU VM
# (TCG, no guest OS), qemu-nbd, the fault-injecting TCP proxy and QMP.
# Sourced after lib.sh; a test that starts anything sets
#     trap stop_all EXIT
#     trap 'exit 143' TERM INT
# (the second so that run.sh's timeout runs the first: a daemonized QEMU is
# not in the test's process group).
#
# Every process started here is recorded in $WORK/.vm-pids (one "PID START
# WHAT" a line, START its start time), so stop_all finds them even when they
# were started in a subshell, and never kills another process that got a
# recorded pid again.
# The VM's disk is the qcow2 node "fmt0" on the file node "file0", behind
# virtio-blk-pci "vd0" (the names QMP and HMP commands use).

VM_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The system's python3 (Debian's package) when there is one: it starts
# faster than a version manager's shim, and the tools need only its standard
# library.
VM_PYTHON=python3
[[ -x /usr/bin/python3 ]] && VM_PYTHON=/usr/bin/python3
VM_PIDS=$WORK/.vm-pids
readonly VM_NODE=fmt0
readonly VM_BACKEND=/machine/peripheral/vd0/virtio-backend

need_qemu() {
        local c
        for c in qemu-system-x86_64 qemu-img qemu-io qemu-nbd; do
                command -v "$c" >/dev/null || skip "needs $c (QEMU)"
        done
}

# proc_start PID: the process's start time (clock ticks since boot)
proc_start() {
        local stat
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        # The fields after "PID (COMM) ", which may hold spaces: starttime is the 20th.
        read -r -a stat <<<"${stat##*) }"
        echo "${stat[19]}"
}

# track PID WHAT: stop_all stops PID
track() {
        echo "$1 $(proc_start "$1" || echo gone) $2" >>"$VM_PIDS"
}

# ours PID START: PID is still the process that track recorded
ours() {
        running "$1" && [[ $(proc_start "$1") == "$2" ]]
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now
free_port() {
        "$VM_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_open HOST PORT: something accepts connections there now
port_open() {
        (: <>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_port HOST PORT [SECONDS]: until something accepts connections there
# (default 10 s). The probe connects and closes: only for servers that
# outlive a client (qemu-nbd -t, a QEMU NBD server).
wait_port() {
        local tries=$((${3:-10} * 20))
        until port_open "$1" "$2"; do
                ((tries-- > 0)) || die "nothing listens on $1:$2 after ${3:-10} s"
                sleep 0.05
        done
}

# start_qemu_vm NAME IMAGE QMPSOCK: a QEMU VM with IMAGE (qcow2) as its
# virtio disk and QMP on QMPSOCK; returns once QEMU runs (-daemonize).
start_qemu_vm() {
        local name=$1 image qmp pidfile=$WORK/$1.qemu.pid
        # Absolute: a daemonized QEMU works in /.
        image=$(realpath "$2") || die "start_qemu_vm: no image $2"
        qmp=$(realpath -m "$3")
        rm -f "$pidfile"
        qemu-system-x86_64 -name "$name" -machine pc,accel=tcg -nodefaults -display none -m 64 \
                -blockdev "driver=file,filename=$image,node-name=file0" \
                -blockdev "driver=qcow2,file=file0,node-name=$VM_NODE" \
                -device virtio-blk-pci,drive=$VM_NODE,id=vd0 \
                -qmp "unix:$qmp,server=on,wait=off" -daemonize -pidfile "$pidfile" \
                >"$WORK/$name.qemu.log" 2>&1 ||
                die "QEMU $name did not start: $(cat "$WORK/$name.qemu.log")"
        [[ -s $pidfile ]] || die "QEMU $name wrote no pid file"
        track "$(cat "$pidfile")" "qemu $name"
}

# qmp QMPSOCK JSON...: qmp.py (one JSON return a line)
qmp() {
        "$VM_PYTHON" "$VM_TOOLS/qmp.py" "$@"
}

# vm_bytes N[k|M|G]: bytes (qemu-io's binary suffixes)
vm_bytes() {
        [[ $1 =~ ^([0-9]+)([kKmMgG]?)$ ]] || return 1
        local n=${BASH_REMATCH[1]}
        case ${BASH_REMATCH[2]} in
        k | K) echo $((n * 1024)) ;;
        m | M) echo $((n * 1024 * 1024)) ;;
        g | G) echo $((n * 1024 * 1024 * 1024)) ;;
        *) echo $((10#$n)) ;;
        esac
}

# vm_write QMPSOCK PATTERN OFFSET LENGTH: the VM writes the byte PATTERN
# (0x5a or 90) at OFFSET, LENGTH bytes (N, Nk, NM, NG), to its disk as a
# guest would (it dirties the bitmaps). qemu-io reports its own errors on
# QEMU's stdout, which -daemonize sends to /dev/null: so the arguments are
# checked here against the disk's size, and any answer at all (an HMP error)
# fails.
vm_write() {
        local qmp=$1 pattern=$2 off len size out
        if ! [[ $pattern =~ ^(0x[0-9a-fA-F]{1,2}|0|[1-9][0-9]{0,2})$ ]] || ((pattern > 255)); then
                die "vm_write: bad pattern '$pattern'"
        fi
        off=$(vm_bytes "$3") || die "vm_write: bad offset '$3'"
        len=$(vm_bytes "$4") || die "vm_write: bad length '$4'"
        size=$(qmp "$qmp" '{"execute":"query-block"}' | grep -o '"virtual-size": [0-9]*' | sed -n '1s/.*: //p')
        [[ -n $size ]] || die "vm_write: no disk size from query-block"
        ((len > 0 && off + len <= size)) || die "vm_write: $off+$len is outside the disk ($size bytes)"
        out=$(qmp "$qmp" --hmp "qemu-io -d $VM_BACKEND \"write -P $pattern $off $len\"") || die "vm_write $*: $out"
        [[ -z $out ]] || die "vm_write $*: $out"
}

# start_qemu_nbd IMAGE PORT [ARGS...]: qemu-nbd serving IMAGE (qcow2 when
# its name ends in .qcow2, else raw) on 127.0.0.1:PORT, persistent (-t), up
# to 8 clients at once (--shared=8; ARGS may say otherwise), with the
# default export name "" unless ARGS say -x NAME
start_qemu_nbd() {
        local image=$1 port=$2 fmt=raw pid tries=200
        shift 2
        [[ $image == *.qcow2 ]] && fmt=qcow2
        qemu-nbd -t --shared=8 -b 127.0.0.1 -p "$port" -f "$fmt" "$@" "$image" >>"$WORK/qemu-nbd.$port.log" 2>&1 &
        pid=$!
        disown "$pid"
        track "$pid" "qemu-nbd $port"
        until port_open 127.0.0.1 "$port"; do
                running "$pid" || die "qemu-nbd on port $port exited: $(cat "$WORK/qemu-nbd.$port.log")"
                ((tries-- > 0)) || die "qemu-nbd does not listen on port $port after 10 s"
                sleep 0.05
        done
}

# start_proxy LISTENPORT TARGETHOST:PORT CONTROL: tcp-proxy.py from
# 127.0.0.1:LISTENPORT to the target, commands on the unix socket CONTROL;
# log in $WORK/proxy.LISTENPORT.log
start_proxy() {
        local port=$1 target=$2 control=$3 out=$WORK/proxy.$1.out pid tries=200
        "$VM_PYTHON" "$VM_TOOLS/tcp-proxy.py" --listen "127.0.0.1:$port" --target "$target" --control "$control" \
                --log "$WORK/proxy.$port.log" >"$out" 2>&1 &
        pid=$!
        disown "$pid"
        track "$pid" "proxy $port"
        until grep -q '^tcp-proxy: ready' "$out"; do
                running "$pid" || die "the proxy on port $port exited: $(cat "$out")"
                ((tries-- > 0)) || die "the proxy on port $port is not ready after 10 s"
                sleep 0.05
        done
}

# proxy_cmd CONTROL COMMAND: sends one command, prints the answer; fails
# when the answer is an error
proxy_cmd() {
        "$VM_PYTHON" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
answer = s.makefile().readline().strip()
print(answer)
sys.exit(answer.startswith("error") or not answer)' "$1" "$2"
}

# stop_all: stops everything started above (SIGTERM, then SIGKILL after 5 s)
stop_all() {
        local pid start what tries=100 left
        [[ -f $VM_PIDS ]] || return 0
        while read -r pid start what; do
                ours "$pid" "$start" && { kill -TERM "$pid" 2>/dev/null || true; }
        done <"$VM_PIDS"
        while ((tries-- > 0)); do
                left=0
                while read -r pid start what; do
                        ours "$pid" "$start" && left=1
                done <"$VM_PIDS"
                ((left)) || break
                sleep 0.05
        done
        while read -r pid start what; do
                if ours "$pid" "$start"; then
                        echo "# $what (pid $pid) ignored SIGTERM: killed" >&2
                        kill -KILL "$pid" 2>/dev/null || true
                fi
        done <"$VM_PIDS"
        rm -f "$VM_PIDS"
        return 0
}
