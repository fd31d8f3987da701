#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-install.sh -- `make install` into a DESTDIR puts the binaries, the
# units, the configuration, the logrotate file and the man pages in place and
# the installed tree runs (vbakd --version, vbak --help, vbakd on the
# installed configuration answers vbak status); `make uninstall` removes
# exactly what install put there and leaves what was there before; a second
# install keeps an edited configuration (the new one goes beside it as
# vbakd.conf.dist) and uninstall then leaves the edited file; `make dist`
# gives a reproducible tarball under vbak-VERSION/ whose .sha256 checks.
# It installs the binaries already built (B=the build dir under test).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd make sha256sum tar
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(dirname "$VBAK")
ROOT=$WORK/root
VERSION=$(sed -n 's/^#define VB_VERSION "\(.*\)"$/\1/p' "$REPO/daemon/version.h")
[[ -n $VERSION ]] || die "no VB_VERSION in daemon/version.h"
VARS=(DESTDIR="$ROOT" PREFIX=/usr SYSCONFDIR=/etc B="$BUILD")
CONF=$ROOT/etc/vbak/vbakd.conf
MANIFEST=$ROOT/usr/share/vbak/install-manifest

DPID=
stop_daemon() {
        [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
        DPID=
        return 0
}
trap stop_daemon EXIT
trap 'exit 143' TERM INT

# mk TARGET: make -C REPO TARGET with the install variables; its output in $LAST_OUT/$LAST_ERR
mk() {
        expect_exit 0 make --no-print-directory -C "$REPO" "$1" "${VARS[@]}"
}

# tree: every path under $ROOT (relative, sorted, directories with a slash)
tree() {
        (cd "$ROOT" && find . -mindepth 1 \( -type d -printf '%P/\n' \) -o \( -printf '%P\n' \)) | LC_ALL=C sort
}

# A directory and a file of someone else's before vbak comes.
mkdir -p "$ROOT/usr/bin"
echo "not vbak's" >"$ROOT/usr/bin/other-tool"
tree >before.txt

info "install into a DESTDIR"
mk install
for f in usr/bin/vbak usr/sbin/vbakd usr/sbin/vbak-cvd; do
        [[ -x $ROOT/$f && -f $ROOT/$f ]] || die "$f is not installed as an executable"
        assert_same "$BUILD/${f##*/}" "$ROOT/$f" "installed $f"
done
assert_same "$REPO/etc/vbakd.conf" "$CONF" "installed configuration"
assert_same "$REPO/etc/vbak.logrotate" "$ROOT/etc/logrotate.d/vbak" "installed logrotate file"
for m in man1/vbak.1 man8/vbakd.8 man8/vbak-cvd.8; do
        assert_same "$REPO/man/${m#*/}" "$ROOT/usr/share/man/$m" "installed man page $m"
done
for u in vbakd.service vbak-cvd.service; do
        [[ -f $REPO/systemd/$u ]] || continue
        got=$(cd "$ROOT" && find . -path "*/systemd/system/$u" -printf '%P\n')
        [[ -n $got ]] || die "unit $u is not installed"
        assert_contains "$ROOT/$got" "ExecStart=/usr/sbin/" "installed $u"
done
[[ -f $MANIFEST ]] || die "no install manifest"
assert_eq 644 "$(stat -c %a "$CONF")" "mode of the configuration"
assert_eq 755 "$(stat -c %a "$ROOT/usr/sbin/vbakd")" "mode of vbakd"
# The manifest lists the configuration with its checksum, never as a plain file.
assert_contains "$MANIFEST" "c $(sha256sum <"$REPO/etc/vbakd.conf" | cut -d' ' -f1) /etc/vbak/vbakd.conf"
assert_not_contains "$MANIFEST" "f /etc/vbak/vbakd.conf"
assert_not_contains "$MANIFEST" "d /usr/bin" "manifest (usr/bin existed before)"
assert_contains "$MANIFEST" "d /usr/sbin" "manifest"

info "the installed tree runs"
expect_exit 0 "$ROOT/usr/sbin/vbakd" --version
assert_eq "vbakd $VERSION" "$(cat "$LAST_OUT")" "vbakd --version"
expect_exit 0 "$ROOT/usr/bin/vbak" --help
assert_contains "$LAST_OUT" "Usage: vbak COMMAND"
expect_exit 0 "$ROOT/usr/sbin/vbak-cvd" --version
assert_contains "$LAST_OUT" "$VERSION" "vbak-cvd --version"
# The shipped configuration is accepted as it is.
"$ROOT/usr/sbin/vbakd" --config "$CONF" --state-dir "$WORK/state" >vbakd.out 2>vbakd.err &
DPID=$!
for _ in $(seq 100); do
        [[ -S $WORK/state/vbakd.sock ]] && break
        kill -0 "$DPID" 2>/dev/null || die "vbakd with the installed configuration exited: $(cat vbakd.err)"
        sleep 0.05
done
expect_exit 0 "$ROOT/usr/bin/vbak" status --socket "$WORK/state/vbakd.sock" --json
assert_eq "$VERSION" "$(json_get version <"$LAST_OUT")" "version vbak status reports"
stop_daemon
if command -v groff >/dev/null; then
        for m in "$ROOT"/usr/share/man/man*/*; do
                groff -man -Tutf8 -ww "$m" >/dev/null 2>groff.err || die "groff failed on $m"
                [[ ! -s groff.err ]] || die "groff warns about ${m##*/}: $(cat groff.err)"
        done
fi
if command -v logrotate >/dev/null; then
        expect_exit 0 logrotate -d -s "$WORK/logrotate.status" "$ROOT/etc/logrotate.d/vbak"
        assert_contains "$LAST_ERR" "rotating pattern: /var/log/vbak/*.log"
fi

info "uninstall removes exactly what install put there"
mk uninstall
tree >after.txt
diff before.txt after.txt >tree.diff || die "uninstall left the tree different:
$(cat tree.diff)"
expect_exit 0 make --no-print-directory -C "$REPO" uninstall "${VARS[@]}"
assert_contains "$LAST_ERR" "not installed there" "a second uninstall"

info "a second install keeps an edited configuration"
mk install
echo "log_level = debug" >>"$CONF"
cp "$CONF" edited.conf
mk install
assert_contains "$LAST_OUT" "kept $CONF"
assert_same edited.conf "$CONF" "configuration after a second install"
assert_same "$REPO/etc/vbakd.conf" "$CONF.dist" "the new configuration beside it"
assert_contains "$MANIFEST" "f /etc/vbak/vbakd.conf.dist"
# A third install, the file back as shipped: it is vbak's again, the .dist goes.
cp "$REPO/etc/vbakd.conf" "$CONF"
mk install
[[ ! -e $CONF.dist ]] || die "vbakd.conf.dist stays though the configuration is the shipped one"
cp edited.conf "$CONF"

info "uninstall leaves the edited configuration"
mk uninstall
assert_contains "$LAST_OUT" "kept $CONF"
tree >after.txt
{
        cat before.txt
        printf '%s\n' etc/ etc/vbak/ etc/vbak/vbakd.conf
} | LC_ALL=C sort >expected.txt
diff expected.txt after.txt >tree.diff || die "after uninstall with an edited configuration:
$(cat tree.diff)"
assert_same edited.conf "$CONF" "the edited configuration after uninstall"

info "make dist"
if ! git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        info "not a git checkout: make dist is not tested"
        exit 0
fi
# What install reads must be committable: an ignored file (say, a folder
# named *.d) would be missing from a fresh clone and from the tarball.
for f in etc/vbakd.conf etc/vbak.logrotate man/vbak.1 man/vbakd.8 man/vbak-cvd.8; do
        ! git -C "$REPO" check-ignore -q "$f" || die "$f, which make install reads, is ignored by git"
done
expect_exit 0 make --no-print-directory -C "$REPO" dist DISTDIR="$WORK/dist"
tgz=vbak-$VERSION.tar.gz
[[ -f $WORK/dist/$tgz && -f $WORK/dist/$tgz.sha256 ]] || die "make dist did not write $tgz and $tgz.sha256"
(cd "$WORK/dist" && sha256sum -c --status "$tgz.sha256") || die "$tgz.sha256 does not verify"
tar -tzf "$WORK/dist/$tgz" >members.txt
assert_contains members.txt "vbak-$VERSION/Makefile"
assert_contains members.txt "vbak-$VERSION/daemon/vbakd.c"
assert_eq 0 "$(grep -cv "^vbak-$VERSION/" members.txt || true)" "members outside vbak-$VERSION/"
assert_eq 0 "$(grep -c "^vbak-$VERSION/build/" members.txt || true)" "build products in the tarball"
mkdir unpacked
tar -xzf "$WORK/dist/$tgz" -C unpacked
assert_same "$REPO/daemon/vbakd.c" "unpacked/vbak-$VERSION/daemon/vbakd.c" "daemon/vbakd.c in the tarball"
# The same tree gives the same tarball.
sum=$(cut -d' ' -f1 "$WORK/dist/$tgz.sha256")
expect_exit 0 make --no-print-directory -C "$REPO" dist DISTDIR="$WORK/dist"
assert_eq "$sum" "$(cut -d' ' -f1 "$WORK/dist/$tgz.sha256")" "checksum of a second make dist"
