#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sim-down.sh -- what `make sim-down` runs: stops the simulator that
# scripts/sim-up.sh started for the state dir (SIGTERM: it stops its QEMUs and
# vbak-cvds itself; SIGKILL after 30 s, when its watchdog stops them) and
# waits until its children are gone too. It removes only sim-up's pid and
# env files: the images, logs, password and token stay for the next sim-up.
#
# Usage: scripts/sim-down.sh [BUILD_DIR]    (SIM_STATE as for sim-up.sh)
set -euo pipefail

build=${1:-build}
state=${SIM_STATE:-$build/sim-state}
if [[ ! -d $state ]]; then
        echo "sim-down: vbak-cvm-sim is not running (no state dir $state)"
        exit 0
fi
state=$(cd "$state" && pwd)
pidfile=$state/sim.pid

alive() {
        [[ -n $1 && -r /proc/$1/cmdline ]] || return 1
        tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$state" &&
                [[ $(cat "/proc/$1/comm" 2>/dev/null) == vbak-cvm-sim ]]
}

# running PID: not gone and not a zombie
running() {
        local st
        st=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
        [[ -n $st && $st != Z && $st != X ]]
}

pid=$(cat "$pidfile" 2>/dev/null || true)
if ! alive "$pid"; then
        echo "sim-down: vbak-cvm-sim is not running (state $state)"
        rm -f "$pidfile" "$state/sim.env"
        exit 0
fi
# Its children (the watchdog, the vbak-cvds) and the QEMUs it started, to wait for.
others=$(pgrep -P "$pid" || true)
for f in "$state"/run/*.pid; do
        q=$(cat "$f" 2>/dev/null || true)
        [[ -n $q && $(cat "/proc/$q/comm" 2>/dev/null) == qemu-system* ]] && others="$others $q"
done
kill -TERM "$pid"
for _ in $(seq 300); do
        running "$pid" || break
        sleep 0.1
done
if running "$pid"; then
        echo "sim-down: vbak-cvm-sim $pid did not stop in 30 s: killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
fi
for p in $others; do
        for _ in $(seq 100); do
                running "$p" || break
                sleep 0.1
        done
        running "$p" && echo "sim-down: process $p is still running" >&2
done
rm -f "$pidfile" "$state/sim.env"
echo "sim-down: vbak-cvm-sim stopped (state $state kept)"
