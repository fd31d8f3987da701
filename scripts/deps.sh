#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# deps.sh -- installs with apt every package vbak needs to build and test,
# only the ones missing; prints nothing when all of them are already there.
#
# Runs as root, or through sudo when it is there. Waits for another apt or
# dpkg run to finish (up to VBAK_APT_LOCK_TIMEOUT seconds, default 600)
# instead of failing on its lock. Refuses on systems without apt.
#
# apt and dpkg take their locks with fcntl(2), which flock(1) does not see, so
# the waiting is left to apt itself (DPkg::Lock::Timeout) plus a retry loop for
# the lists lock that `apt-get update` takes.
set -euo pipefail

# Every package the build, the tests and the benchmarks use: add new ones here.
PACKAGES=(
        # build
        build-essential
        pkg-config
        libuv1-dev
        libjansson-dev
        libzstd-dev
        libssl-dev
        libsqlite3-dev
        libh2o-dev         # vbakd's control API (HTTP/1.1 on libuv, TLS with OpenSSL)
        libcurl4-openssl-dev
        libnbd-dev
        libvirt-dev        # the libvirt/KVM platform (libvirt/)
        libxml2-dev        # CAS REST responses in XML
        libmicrohttpd-dev  # the CAS simulator's HTTP(S) server with Digest auth
        libicu-dev         # job schedules: per-schedule time zones (ICU calendar)
        clang-format
        # tests and benchmarks
        strace
        e2fsprogs
        util-linux
        zstd
        borgbackup
        restic
        debootstrap
        groff-base  # the man pages are checked for warnings
        logrotate   # the shipped logrotate file is checked with logrotate -d
        diffutils # cmp
        procps
        time # /usr/bin/time
        curl               # the CAS simulator's tests
        openssl            # self-signed certificates in tests
        qemu-system-x86
        qemu-utils
        qemu-block-extra
        libnbd-bin # nbdinfo, nbdcopy
        libvirt-daemon              # the libvirt platform's tests run a private libvirtd
        libvirt-daemon-driver-qemu
        libvirt-clients             # virsh
        python3    # the tests' TCP fault proxy and QMP helper
        swift             # an S3 store that checks SigV4 for the object pool's tests:
        swift-proxy       # OpenStack Swift with s3api and tempauth
        swift-object
        swift-container
        swift-account
)

LOCK_TIMEOUT=${VBAK_APT_LOCK_TIMEOUT:-600}
PROG=${0##*/}

die() {
        echo "$PROG: $*" >&2
        exit 1
}

is_installed() {
        local status
        # shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not ours
        status=$(dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null) || return 1
        # One line per installed architecture; all must be fully installed.
        [ -n "$status" ] || return 1
        while IFS= read -r line; do
                case $line in
                *" ok installed") ;;
                *) return 1 ;;
                esac
        done <<<"$status"
}

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
        die "no apt-get/dpkg-query here: this script supports Debian and Ubuntu only." \
                "Install the equivalents of these packages by hand: ${PACKAGES[*]}"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; as root, run: apt-get install ${missing[*]}"
        SUDO=(sudo)
fi

errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT

# apt_get ARGS...: apt-get, non-interactive, retried while another process
# holds an apt or dpkg lock, for at most LOCK_TIMEOUT seconds in all.
apt_get() {
        local deadline=$((SECONDS + LOCK_TIMEOUT)) rc
        while :; do
                rc=0
                ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
                        apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" "$@" 2>"$errlog" || rc=$?
                if [ "$rc" -ne 0 ] && [ "$SECONDS" -lt "$deadline" ] &&
                        grep -qE 'Could not get lock|Unable to lock|Unable to acquire the dpkg' "$errlog"; then
                        sleep 5
                        continue
                fi
                cat "$errlog" >&2
                return "$rc"
        done
}

echo "$PROG: installing ${missing[*]}" >&2
apt_get -qq update || die "apt-get update failed"
apt_get -q -y --no-install-recommends install "${missing[@]}" || die "apt-get install failed"

still=()
for pkg in "${missing[@]}"; do
        is_installed "$pkg" || still+=("$pkg")
done
[ "${#still[@]}" -eq 0 ] || die "still not installed: ${still[*]}"
