#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sim-up.sh -- what `make sim-up` runs: starts the CAS simulator
# (BUILD_DIR/vbak-cvm-sim) in the background with the default topology
# (tests/sim/topology-default.json), waits until it listens, and prints how
# to reach it, first these lines (a shell can eval them):
#
#     CVM_URL=http://ADDR:PORT
#     CVM_USER=admin
#     CVM_PASSWORD_FILE=/abs/path
#     CVD_TOKEN_FILE=/abs/path
#     CVD_PORT=N
#
# then SIM_PID, SIM_STATE and SIM_LOG. `make sim-down` (scripts/sim-down.sh)
# stops it. Started twice, it says so and prints the same lines again.
#
# Usage: scripts/sim-up.sh [BUILD_DIR]      (default build)
# Environment:
#   SIM_STATE     the state dir: images, QMP sockets, logs, the password and
#                 token files (default BUILD_DIR/sim-state)
#   SIM_HTTP      ADDR:PORT of the REST API (default 127.0.0.1:8080, or a free
#                 port when 8080 is taken)
#   SIM_CVD_PORT  the control port of every host's vbak-cvd (default 8192, or
#                 a free port when 8192 is taken)
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || {
        echo "sim-up: no build dir ${1:-build} (make all)" >&2
        exit 1
}
sim=$build/vbak-cvm-sim
[[ -x $sim && -x $build/vbak-cvd ]] || {
        echo "sim-up: $sim or $build/vbak-cvd is not built (make all)" >&2
        exit 1
}
state=${SIM_STATE:-$build/sim-state}
mkdir -p "$state"
state=$(cd "$state" && pwd)
pidfile=$state/sim.pid
envfile=$state/sim.env
log=$state/sim.log

# alive PID: a running vbak-cvm-sim serving this state dir
alive() {
        [[ -n $1 && -r /proc/$1/cmdline ]] || return 1
        tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$state" &&
                [[ $(cat "/proc/$1/comm" 2>/dev/null) == vbak-cvm-sim ]]
}

if [[ -s $pidfile ]] && alive "$(cat "$pidfile")"; then
        echo "sim-up: vbak-cvm-sim already runs (pid $(cat "$pidfile"), state $state)" >&2
        cat "$envfile"
        exit 0
fi

# free ADDR PORT: nothing listens there (a bind on the wildcard address also
# fails when something listens on any address of that port)
free() {
        python3 - "$1" "$2" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0" if sys.argv[1] == "any" else sys.argv[1], int(sys.argv[2])))
EOF
}

# a_free_port: a port the kernel hands out now (the vbak-cvd data ports above it are not checked)
a_free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}

http=${SIM_HTTP:-}
if [[ -z $http ]]; then
        http=127.0.0.1:8080
        free 127.0.0.1 8080 || http=127.0.0.1:$(a_free_port)
fi
cvd_port=${SIM_CVD_PORT:-}
if [[ -z $cvd_port ]]; then
        cvd_port=8192
        free any 8192 || cvd_port=$(a_free_port)
fi
[[ $http =~ ^[0-9.]+:[0-9]+$ ]] || {
        echo "sim-up: SIM_HTTP must be ADDR:PORT (IPv4), not $http" >&2
        exit 1
}
[[ $cvd_port =~ ^[0-9]+$ ]] || {
        echo "sim-up: SIM_CVD_PORT must be a port number, not $cvd_port" >&2
        exit 1
}

password=$state/cvm-password
if [[ ! -s $password ]]; then
        (umask 077 && head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$password" && echo >>"$password")
fi

rm -f "$pidfile" "$envfile"
# Its own session, so that it outlives make and the terminal; the simulator
# stops its QEMUs and vbak-cvds on SIGTERM (sim-down), and its watchdog does
# when it is killed.
setsid "$sim" serve --topology "$here/tests/sim/topology-default.json" --http "$http" --user admin \
        --password-file "$password" --state-dir "$state" --cvd-port "$cvd_port" </dev/null >"$log" 2>&1 &
pid=$!
for _ in $(seq 600); do
        grep -q "listening on" "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
done
if ! grep -q "listening on" "$log" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        echo "sim-up: the simulator did not start; its log ($log):" >&2
        sed -n '1,40s/^/    /p' "$log" >&2
        exit 1
fi
echo "$pid" >"$pidfile"
cat >"$envfile" <<EOF
CVM_URL=http://$http
CVM_USER=admin
CVM_PASSWORD_FILE=$password
CVD_TOKEN_FILE=$state/cvd.token
CVD_PORT=$cvd_port
SIM_PID=$pid
SIM_STATE=$state
SIM_LOG=$log
EOF
cat "$envfile"
