#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-installer.sh -- systemd/install.sh, the script a console serves,
# against a stand-in console (https-server.py) serving `make dist` output on
# 127.0.0.1, installing into a throwaway root (VBAK_INSTALL_ROOT, with the OS,
# package and systemd steps turned off): it installs a tree that runs; run
# again it upgrades and keeps an edited configuration; it refuses a tarball
# whose checksum is wrong and installs nothing; it refuses a self-signed
# HTTPS console unless --insecure; --access-key registers the host (the POST
# is recorded); --rm removes what the manifest lists and keeps the edited
# configuration.
# test-timeout: 300
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd make sha256sum tar curl python3 git
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
INSTALLER=$REPO/systemd/install.sh
git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || skip "not a git checkout: make dist needs one"
VERSION=$(sed -n 's/^#define VB_VERSION "\(.*\)"$/\1/p' "$REPO/daemon/version.h")
[[ -n $VERSION ]] || die "no VB_VERSION in daemon/version.h"
TGZ=vbak-$VERSION.tar.gz
ROOT=$WORK/root
CONF=$ROOT/etc/vbak/vbakd.conf
MANIFEST=$ROOT/usr/share/vbak/install-manifest

PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${PIDS[@]}"; do
                wait "$p" 2>/dev/null || true
        done
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# serve NAME DIR [ARGS...]: https-server.py on DIR; sets PORT
serve() {
        local name=$1 dir=$2
        shift 2
        rm -f "$WORK/$name.port"
        python3 "$HERE/https-server.py" "$dir" "$WORK/$name.port" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
        PIDS+=($!)
        for _ in $(seq 100); do
                [[ -s $WORK/$name.port ]] && break
                running "${PIDS[-1]}" || die "$name server exited: $(cat "$WORK/$name.err")"
                sleep 0.05
        done
        [[ -s $WORK/$name.port ]] || die "$name server did not start"
        PORT=$(cat "$WORK/$name.port")
}

# installer [ARGS...]: install.sh piped to sh as a console's users run it, into $ROOT
installer() {
        VBAK_INSTALL_ROOT=$ROOT VBAK_INSTALL_SKIP_OS_CHECK=1 VBAK_INSTALL_SKIP_PACKAGES=1 \
                VBAK_INSTALL_SKIP_SYSTEMD=1 sh -s -- "$@" <"$INSTALLER"
}

# tree: every path under $ROOT (relative, sorted, directories with a slash)
tree() {
        (cd "$ROOT" && find . -mindepth 1 \( -type d -printf '%P/\n' \) -o \( -printf '%P\n' \)) | LC_ALL=C sort
}

info "the console's files: make dist output and VERSION"
mkdir -p srv/vbak
expect_exit 0 make --no-print-directory -C "$REPO" dist DISTDIR="$WORK/srv/vbak"
echo "$VERSION" >srv/vbak/VERSION
# A second console whose checksum file does not match its tarball.
mkdir -p bad/vbak
cp srv/vbak/VERSION srv/vbak/"$TGZ" bad/vbak/
echo "$(printf '%064d' 0)  $TGZ" >bad/vbak/"$TGZ".sha256
serve http "$WORK/srv" --record "$WORK/posts.jsonl"
URL=http://127.0.0.1:$PORT
serve bad "$WORK/bad"
BAD_URL=http://127.0.0.1:$PORT

info "the help and the option checks"
expect_exit 0 sh "$INSTALLER" --help
assert_contains "$LAST_OUT" "--access-key KEY"
expect_exit 1 sh "$INSTALLER" --bogus
assert_contains "$LAST_ERR" "unknown option '--bogus'"
expect_exit 1 installer
assert_contains "$LAST_ERR" "no console URL"
expect_exit 1 installer --console "$URL" --access-key 'a"b'
assert_contains "$LAST_ERR" "the access key has characters"
[[ ! -e $ROOT ]] || die "a refused run created $ROOT"

info "a tarball whose checksum does not match is refused"
mkdir -p "$ROOT"
tree >before.txt
expect_exit 1 installer --console "$BAD_URL"
assert_contains "$LAST_ERR" "SHA-256 checksum mismatch for $TGZ"
assert_contains "$LAST_ERR" "nothing was installed"
tree >after.txt
diff before.txt after.txt >tree.diff || die "a refused tarball changed the root: $(cat tree.diff)"
leftover=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'vbak-install.*' -newer before.txt 2>/dev/null || true)
[[ -z $leftover ]] || die "the refused run left its temp dir: $leftover"

info "install from the console (download, verify, build, make install)"
start=$SECONDS
expect_exit 0 installer --console "$URL"
info "installed in $((SECONDS - start))s"
assert_contains "$LAST_OUT" "SHA-256 of $TGZ verified"
assert_contains "$LAST_OUT" "start vbakd with"
[[ -f $MANIFEST ]] || die "no install manifest"
expect_exit 0 "$ROOT/usr/sbin/vbakd" --version
assert_eq "vbakd $VERSION" "$(cat "$LAST_OUT")" "installed vbakd --version"
expect_exit 0 "$ROOT/usr/bin/vbak" --help
assert_same "$REPO/etc/vbakd.conf" "$CONF" "installed configuration"

info "a second run upgrades, keeps the edited configuration and registers the host (--access-key)"
echo "log_level = debug" >>"$CONF"
cp "$CONF" edited.conf
mkdir -p "$ROOT/var/lib/vbak"
echo catalog >"$ROOT/var/lib/vbak/catalog.db"
: >posts.jsonl
expect_exit 0 installer --console "$URL" --access-key k3y-abc
assert_contains "$LAST_OUT" "kept $CONF"
assert_contains "$LAST_OUT" "registered $(uname -n) with $URL"
assert_same edited.conf "$CONF" "configuration after the upgrade"
assert_same "$REPO/etc/vbakd.conf" "$CONF.dist" "the new configuration beside it"
assert_eq catalog "$(cat "$ROOT/var/lib/vbak/catalog.db")" "catalog after the upgrade"
expect_exit 0 "$ROOT/usr/sbin/vbakd" --version
info "the registration call"
assert_eq 1 "$(wc -l <posts.jsonl)" "POSTs recorded"
python3 - "$(uname -n)" "$VERSION" posts.jsonl <<'EOF2' || die "the registration call: $(cat posts.jsonl)"
import json, sys
host, version, path = sys.argv[1:4]
rec = json.loads(open(path).readline())
assert rec["path"] == "/api/v1/backup-hosts", rec
body = json.loads(rec["body"])
assert body == {"hostname": host, "version": version, "access_key": "k3y-abc"}, body
EOF2

info "a self-signed HTTPS console: refused without --insecure"
need_cmd openssl
expect_exit 0 openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem
serve https "$WORK/srv" --cert cert.pem --key key.pem
HTTPS_URL=https://127.0.0.1:$PORT
cp "$MANIFEST" manifest.before
expect_exit 1 installer --console "$HTTPS_URL"
assert_contains "$LAST_ERR" "TLS verification of $HTTPS_URL/vbak/VERSION failed ("
assert_contains "$LAST_ERR" "pass --insecure only if you trust this network"
assert_same manifest.before "$MANIFEST" "manifest after a refused HTTPS run"
info "accepted with --insecure (download and checksum only)"
VBAK_INSTALL_DOWNLOAD_ONLY=1 expect_exit 0 installer --console "$HTTPS_URL" --insecure
assert_contains "$LAST_OUT" "SHA-256 of $TGZ verified"
assert_contains "$LAST_OUT" "VBAK_INSTALL_DOWNLOAD_ONLY=1"
# A console that is not there: a clear message, nothing registered.
: >posts.jsonl
expect_exit 1 installer --console "$BAD_URL/nowhere" --access-key k3y-abc
assert_contains "$LAST_ERR" "could not download $BAD_URL/nowhere/vbak/VERSION"
[[ ! -s posts.jsonl ]] || die "a failed run registered the host"

info "--rm removes what the manifest lists and keeps the edited configuration"
sed -n 's/^f //p' "$MANIFEST" >files.txt
[[ -s files.txt ]] || die "the manifest lists no files"
expect_exit 0 installer --rm
assert_contains "$LAST_OUT" "kept $CONF"
assert_contains "$LAST_OUT" "kept $ROOT/var/lib/vbak"
while IFS= read -r f; do
        [[ ! -e $ROOT$f ]] || die "--rm left $f"
done <files.txt
[[ ! -e $MANIFEST ]] || die "--rm left the manifest"
assert_same edited.conf "$CONF" "the edited configuration after --rm"
tree >after.txt
printf '%s\n' etc/ etc/vbak/ etc/vbak/vbakd.conf var/ var/lib/ var/lib/vbak/ var/lib/vbak/catalog.db >expected.txt
diff expected.txt after.txt >tree.diff || die "after --rm: $(cat tree.diff)"
expect_exit 1 installer --rm
assert_contains "$LAST_ERR" "vbak is not installed here"
