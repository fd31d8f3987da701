#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# install.sh -- installs, upgrades or removes vbak on a backup host. A console
# serves it; run it as root:
#
#     curl -fsSL https://CONSOLE/vbak/install.sh | sh -s -- [OPTIONS]
#
# Options:
#     --console URL     where the release is downloaded from (required unless
#                       DEFAULT_CONSOLE below is filled in by the console)
#     --access-key KEY  after installing, register this host with the console
#     --insecure        do not verify the console's TLS certificate (only on a
#                       network you trust)
#     --rm              remove vbak instead of installing it
#     -h, --help        print this help
#
# What the console serves, under URL/vbak/ (the output of `make dist` plus one
# file naming the current version):
#     URL/vbak/VERSION                      one line: the version, e.g. 0.1.0
#     URL/vbak/vbak-VERSION.tar.gz          the release tarball
#     URL/vbak/vbak-VERSION.tar.gz.sha256   its checksum, as `make dist` wrote it
#
# Installing: checks the OS (Debian 11/12, Ubuntu 16.04-24.04; CentOS 7,
# Kylin V10 and openEuler 22.03 without the automatic package installation),
# downloads the tarball and its checksum, verifies the SHA-256 BEFORE
# unpacking anything, installs the build and runtime packages with the
# tarball's own scripts/deps.sh (apt), builds, runs `make install PREFIX=/usr
# SYSCONFDIR=/etc`, then enables and (re)starts vbakd when systemd runs. Run
# again, it is an upgrade: the configuration is kept when it was edited (make
# install puts the new one beside it as vbakd.conf.dist), the catalog in
# /var/lib/vbak is not touched, and vbakd is restarted.
#
# Registration (--access-key): one call,
#     POST URL/api/v1/backup-hosts
#     Content-Type: application/json
#     {"hostname": "HOST", "version": "VERSION", "access_key": "KEY"}
# any answer other than 2xx is an error (the installation stays).
#
# Removing (--rm): stops and disables vbakd when systemd runs, removes what
# the install manifest (/usr/share/vbak/install-manifest) lists, except a
# configuration edited since it was installed; /var/lib/vbak (the catalog)
# and /var/log/vbak stay. It says what it kept.
#
# Test hooks (environment variables; not for production use):
#     VBAK_INSTALL_ROOT=DIR           install into DIR (make install's DESTDIR)
#                                     and remove from it; default /. Anything
#                                     but / implies VBAK_INSTALL_SKIP_SYSTEMD.
#     VBAK_INSTALL_SKIP_OS_CHECK=1    accept any OS
#     VBAK_INSTALL_SKIP_PACKAGES=1    do not run scripts/deps.sh
#     VBAK_INSTALL_SKIP_SYSTEMD=1     never call systemctl
#     VBAK_INSTALL_DOWNLOAD_ONLY=1    stop once the tarball is downloaded and
#                                     its checksum verified
#
# POSIX sh (it is piped to sh): no bash features. Needs curl, tar, gzip and
# sha256sum to get the release; the rest comes with the packages.
set -eu

# A console that serves this script may write its own URL here.
DEFAULT_CONSOLE=""
PROG=vbak-install
PREFIX=/usr
SYSCONFDIR=/etc
MANIFEST=$PREFIX/share/vbak/install-manifest
CONF=$SYSCONFDIR/vbak/vbakd.conf
STATE_DIR=/var/lib/vbak
LOG_DIR=/var/log/vbak

die() {
        echo "$PROG: error: $*" >&2
        exit 1
}

say() {
        echo "$PROG: $*"
}

usage() {
        cat <<EOF
Usage: curl -fsSL URL | sh -s -- [--console URL] [--access-key KEY] [--insecure] [--rm]

Installs (or upgrades) vbak on this backup host and starts vbakd.
  --console URL     the console to download vbak from
  --access-key KEY  register this host with the console after installing
  --insecure        do not verify the console's TLS certificate
  --rm              remove vbak (an edited configuration and $STATE_DIR stay)
  -h, --help        this help
EOF
}

console=$DEFAULT_CONSOLE
access_key=
insecure=0
remove=0
while [ $# -gt 0 ]; do
        case $1 in
        --console)
                [ $# -ge 2 ] || die "--console needs a URL"
                console=$2
                shift 2
                ;;
        --console=*)
                console=${1#*=}
                shift
                ;;
        --access-key)
                [ $# -ge 2 ] || die "--access-key needs a key"
                access_key=$2
                shift 2
                ;;
        --access-key=*)
                access_key=${1#*=}
                shift
                ;;
        --insecure)
                insecure=1
                shift
                ;;
        --rm)
                remove=1
                shift
                ;;
        -h | --help)
                usage
                exit 0
                ;;
        *)
                usage >&2
                die "unknown option '$1'"
                ;;
        esac
done

ROOT=${VBAK_INSTALL_ROOT:-/}
case $ROOT in
/*) ;;
*) die "VBAK_INSTALL_ROOT must be an absolute path, not '$ROOT'" ;;
esac
# DESTDIR: the root without its trailing slash ("" for /).
DESTDIR=$(printf '%s' "$ROOT" | sed 's|/*$||')
use_systemd=1
if [ "${VBAK_INSTALL_SKIP_SYSTEMD:-0}" = 1 ] || [ -n "$DESTDIR" ]; then
        use_systemd=0
elif [ ! -d /run/systemd/system ]; then
        # The test sd_booted(3) makes: systemd is PID 1.
        use_systemd=0
fi

# Only root can write the system's directories; a test root may be anyone's.
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (curl ... | sudo sh -s -- ...)"
fi

# The tmp dir, removed however the script ends.
TMP=
cleanup() {
        if [ -n "$TMP" ]; then
                rm -rf "$TMP"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- removal --

# remove_vbak: what the Makefile's uninstall does, from the manifest alone (the
# sources are not here any more), plus stopping the service.
remove_vbak() {
        if [ "$use_systemd" = 1 ] && command -v systemctl >/dev/null 2>&1; then
                if systemctl is-enabled --quiet vbakd 2>/dev/null || systemctl is-active --quiet vbakd 2>/dev/null; then
                        systemctl disable --now vbakd || die "could not stop vbakd (systemctl disable --now vbakd)"
                        say "stopped and disabled vbakd"
                fi
        fi
        m=$DESTDIR$MANIFEST
        [ -f "$m" ] || die "vbak is not installed here: no $m"
        kept=
        while read -r kind rest; do
                case $kind in
                f)
                        if [ -e "$DESTDIR$rest" ] || [ -L "$DESTDIR$rest" ]; then
                                rm -f "$DESTDIR$rest"
                                say "removed $DESTDIR$rest"
                        fi
                        ;;
                c)
                        # The configuration, with the checksum of the version installed:
                        # removed only while it is still that version.
                        sum=${rest%% *}
                        path=${rest#* }
                        if [ -f "$DESTDIR$path" ]; then
                                if [ "$(sha256sum <"$DESTDIR$path" | cut -d' ' -f1)" = "$sum" ]; then
                                        rm -f "$DESTDIR$path"
                                        say "removed $DESTDIR$path"
                                fi
                        fi
                        ;;
                esac
        done <"$m"
        # A configuration listed with several checksums (upgrades) is kept
        # when it matches none of them: report each path once.
        while IFS= read -r path; do
                if [ -n "$path" ] && [ -e "$DESTDIR$path" ]; then
                        kept="$kept $DESTDIR$path"
                        say "kept $DESTDIR$path (edited since it was installed)"
                fi
        done <<EOF
$(sed -n 's/^c [^ ]* //p' "$m" | LC_ALL=C sort -u)
EOF
        dirs=$(sed -n 's/^d //p' "$m" | LC_ALL=C sort -ru)
        rm -f "$m"
        say "removed $m"
        # Deepest first; a directory that is not empty stays.
        while IFS= read -r d; do
                [ -z "$d" ] || rmdir "$DESTDIR$d" 2>/dev/null || true
        done <<EOF
$dirs
EOF
        [ "$use_systemd" = 0 ] || systemctl daemon-reload 2>/dev/null || true
        for d in "$STATE_DIR" "$LOG_DIR"; do
                if [ -d "$DESTDIR$d" ]; then
                        kept="$kept $DESTDIR$d"
                        say "kept $DESTDIR$d (remove it by hand when its data is no longer needed)"
                fi
        done
        say "vbak is removed${kept:+; kept:$kept}"
}

if [ "$remove" = 1 ]; then
        remove_vbak
        exit 0
fi

# ----------------------------------------------------------------- checks --

[ -n "$console" ] || die "no console URL: pass --console URL"
case $console in
https://*) ;;
http://*) say "warning: $console is plain HTTP: the download is not encrypted (its checksum is still checked)" ;;
*) die "--console must be an http:// or https:// URL, not '$console'" ;;
esac
console=$(printf '%s' "$console" | sed 's|/*$||')
if [ -n "$access_key" ]; then
        # It goes into a JSON string as it is: no quotes, backslashes or spaces.
        printf '%s' "$access_key" | grep -Eq '^[A-Za-z0-9._~+/=:-]+$' ||
                die "the access key has characters a key does not have (allowed: letters, digits, ._~+/=:-)"
fi

for c in curl tar gzip sha256sum; do
        command -v "$c" >/dev/null 2>&1 || die "$c is needed to download vbak; install it first (e.g. apt-get install $c)"
done

# check_os: the supported backup hosts. Sets pkg_auto=1 where apt installs the packages.
pkg_auto=0
check_os() {
        if [ "${VBAK_INSTALL_SKIP_OS_CHECK:-0}" = 1 ]; then
                say "not checking the OS (VBAK_INSTALL_SKIP_OS_CHECK=1)"
                pkg_auto=1
                return 0
        fi
        [ -r /etc/os-release ] || die "no /etc/os-release: cannot tell which OS this is"
        # shellcheck disable=SC1091 # the host's file, not ours
        os_id=$(. /etc/os-release && echo "${ID:-}")
        # shellcheck disable=SC1091
        os_ver=$(. /etc/os-release && echo "${VERSION_ID:-}")
        # shellcheck disable=SC1091
        os_name=$(. /etc/os-release && echo "${PRETTY_NAME:-$os_id $os_ver}")
        arch=$(uname -m)
        [ "$arch" = x86_64 ] || die "vbak supports x86-64 backup hosts only; this one is $arch"
        case "$os_id $os_ver" in
        "debian 11" | "debian 12" | "ubuntu 16.04" | "ubuntu 18.04" | "ubuntu 20.04" | "ubuntu 22.04" | "ubuntu 24.04")
                pkg_auto=1
                ;;
        "centos 7" | "centos 7."* | "kylin V10" | "kylin v10" | "openEuler 22.03" | "openEuler 22.03"*)
                say "$os_name: install the packages scripts/deps.sh lists with yum/dnf yourself; the build says what is missing"
                ;;
        *)
                die "$os_name is not a supported backup host (Debian 11/12, Ubuntu 16.04-24.04, CentOS 7, Kylin V10, openEuler 22.03)"
                ;;
        esac
        say "OS: $os_name"
}
check_os

# ---------------------------------------------------------------- download --

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vbak-install.XXXXXX")
CURL_OPTS="-fsS --proto =https,http --retry 2 --connect-timeout 20"
[ "$insecure" = 0 ] || CURL_OPTS="$CURL_OPTS -k"

# fetch URL FILE: downloads URL into FILE; a TLS failure and any other failure
# say which URL and why.
fetch() {
        rc=0
        # shellcheck disable=SC2086 # CURL_OPTS is a list of words
        curl $CURL_OPTS -o "$2" "$1" 2>"$TMP/curl.err" || rc=$?
        [ "$rc" -ne 0 ] || return 0
        why=$(head -n 1 "$TMP/curl.err" | sed 's/^curl: ([0-9]*) //; s/ *$//')
        case $rc in
        # curl's TLS and certificate errors (SSL connect, peer certificate,
        # CA certificate, issuer, pinned key, certificate status).
        35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91)
                die "TLS verification of $1 failed ($why); pass --insecure only if you trust this network"
                ;;
        esac
        die "could not download $1 (curl exit $rc: $why)"
}

base=$console/vbak
fetch "$base/VERSION" "$TMP/VERSION"
version=$(head -n 1 "$TMP/VERSION" | tr -d ' \r\t')
printf '%s' "$version" | grep -Eq '^[0-9A-Za-z][0-9A-Za-z.+~-]*$' ||
        die "$base/VERSION does not hold a version (got '$version')"
tarball=vbak-$version.tar.gz
say "downloading vbak $version from $base"
fetch "$base/$tarball" "$TMP/$tarball"
fetch "$base/$tarball.sha256" "$TMP/$tarball.sha256"

# The checksum, before anything is unpacked.
want=$(cut -d' ' -f1 "$TMP/$tarball.sha256" | head -n 1)
printf '%s' "$want" | grep -Eq '^[0-9a-f]{64}$' || die "$base/$tarball.sha256 holds no SHA-256"
got=$(sha256sum <"$TMP/$tarball" | cut -d' ' -f1)
[ "$got" = "$want" ] ||
        die "SHA-256 checksum mismatch for $tarball: expected $want, got $got; nothing was installed"
say "SHA-256 of $tarball verified"
if [ "${VBAK_INSTALL_DOWNLOAD_ONLY:-0}" = 1 ]; then
        say "downloaded and verified; stopping here (VBAK_INSTALL_DOWNLOAD_ONLY=1)"
        exit 0
fi

# ----------------------------------------------------------- build, install --

tar -xzf "$TMP/$tarball" -C "$TMP" || die "could not unpack $tarball"
src=$TMP/vbak-$version
[ -f "$src/Makefile" ] || die "$tarball has no vbak-$version/Makefile"

if [ "${VBAK_INSTALL_SKIP_PACKAGES:-0}" = 1 ]; then
        say "not installing packages (VBAK_INSTALL_SKIP_PACKAGES=1)"
elif [ "$pkg_auto" = 1 ]; then
        say "installing the packages vbak needs (apt)"
        command -v bash >/dev/null 2>&1 || die "bash is needed to install the packages"
        bash "$src/scripts/deps.sh" || die "installing the packages failed (see above)"
fi

jobs=$(nproc 2>/dev/null || echo 1)
say "building vbak $version (make -j$jobs all)"
make -C "$src" -j"$jobs" all >"$TMP/build.log" 2>&1 || {
        tail -n 30 "$TMP/build.log" >&2
        die "the build failed (the last lines are above)"
}
say "installing into ${DESTDIR:-/}"
make -C "$src" install DESTDIR="$DESTDIR" PREFIX="$PREFIX" SYSCONFDIR="$SYSCONFDIR" >"$TMP/install.log" 2>&1 || {
        cat "$TMP/install.log" >&2
        die "make install failed"
}
grep '^kept ' "$TMP/install.log" | sed "s/^/$PROG: /" || true
say "installed vbak $version (the list of files: $DESTDIR$MANIFEST)"

if [ "$use_systemd" = 1 ]; then
        command -v systemctl >/dev/null 2>&1 || die "systemd runs but there is no systemctl"
        systemctl daemon-reload || die "systemctl daemon-reload failed"
        systemctl enable vbakd || die "systemctl enable vbakd failed"
        # restart, not start: on an upgrade the old daemon is running.
        systemctl restart vbakd || die "vbakd did not start: see journalctl -u vbakd"
        say "vbakd is enabled and running (systemctl status vbakd)"
else
        say "systemd is not managing this host: start vbakd with"
        say "    $PREFIX/sbin/vbakd --config $CONF"
fi

# ----------------------------------------------------------- registration --

if [ -n "$access_key" ]; then
        host=$(uname -n)
        printf '%s' "$host" | grep -Eq '^[A-Za-z0-9._-]+$' || die "the host name '$host' cannot be registered"
        url=$console/api/v1/backup-hosts
        body=$(printf '{"hostname": "%s", "version": "%s", "access_key": "%s"}' "$host" "$version" "$access_key")
        rc=0
        # The key goes in the body only, read from a file: never on the command line.
        printf '%s' "$body" >"$TMP/register.json"
        # shellcheck disable=SC2086 # CURL_OPTS is a list of words
        curl $CURL_OPTS -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/register.json" \
                -o "$TMP/register.out" "$url" 2>"$TMP/curl.err" || rc=$?
        if [ "$rc" -ne 0 ]; then
                why=$(head -n 1 "$TMP/curl.err" | sed 's/^curl: ([0-9]*) //; s/ *$//')
                die "registering $host with $url failed ($why); vbak is installed: run this again with --access-key to retry"
        fi
        say "registered $host with $console"
fi
