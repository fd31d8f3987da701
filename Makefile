# SPDX-License-Identifier: LGPL-2.1-or-later
# Makefile -- builds vbak: one internal static library (build/libvbak.a) with
# every module, the binaries, the unit test runner, the fuzz targets.
# `make list` prints the targets.

PKG_CONFIG ?= pkg-config
CC ?= cc
INSTALL ?= install
INSTALL_PROGRAM ?= $(INSTALL) -m 755
INSTALL_DATA ?= $(INSTALL) -m 644

DESTDIR ?=
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR ?= $(PREFIX)/share/man
# Where the units go: systemd's own answer, else Debian's default. Computed once.
ifeq ($(origin SYSTEMDUNITDIR),undefined)
SYSTEMDUNITDIR := $(or $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
endif
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
PKGDATADIR ?= $(PREFIX)/share/vbak
# The version, from the one place it is written (daemon/version.h).
VERSION := $(shell sed -n 's/^\#define VB_VERSION "\(.*\)"$$/\1/p' daemon/version.h)

DEPS = libuv jansson libzstd libcrypto libssl libnbd libxml-2.0 libcurl sqlite3 icu-i18n libh2o libvirt
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS) 2>/dev/null || echo -luv -ljansson -lzstd -lssl -lcrypto -lnbd -lxml2 -lcurl -lsqlite3 -licui18n -licuuc -lh2o -lvirt)

OPT ?= -O2 -g
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
STD = -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
FINAL_CFLAGS = $(STD) $(WARN) $(OPT) -I. $(DEP_CFLAGS) $(CFLAGS)
FINAL_LDFLAGS = $(LDFLAGS)
FINAL_LIBS = $(DEP_LIBS) -lpthread $(LIBS)

# Every .c under the module folders is a library module, except the mains.
MODULE_DIRS = daemon dedup storagepool transport cas libvirt
MAIN_SRCS = daemon/vbak.c daemon/vbakd.c transport/vbak-cvd.c
LIB_SRCS = $(filter-out $(MAIN_SRCS),$(foreach d,$(MODULE_DIRS),$(wildcard $(d)/*.c)))
UNIT_SRCS = tests/unit/runner.c $(wildcard tests/unit/test-*.c)
FUZZ_SRCS = $(wildcard tests/fuzz/fuzz-*.c)
# The CAS simulator (tests only): its own sources and HTTP server library.
SIM_SRCS = $(wildcard tests/sim/*.c)
SIM_CFLAGS := $(shell $(PKG_CONFIG) --cflags libmicrohttpd 2>/dev/null)
SIM_LIBS := $(shell $(PKG_CONFIG) --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz-%.c,%,$(FUZZ_SRCS))

# Build flavours: build/ (normal) and build/asan/ (ASan+UBSan).
B ?= build
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

LIB_OBJS = $(patsubst %.c,$(B)/%.o,$(LIB_SRCS))
UNIT_OBJS = $(patsubst %.c,$(B)/%.o,$(UNIT_SRCS))
BINS = $(B)/vbak $(B)/vbakd $(B)/vbak-cvd
SIM_BIN = $(if $(SIM_SRCS),$(B)/vbak-cvm-sim)

.PHONY: all check test unit asan asan-unit fuzz-replay integration bench demo install uninstall clean format \
	format-check list deps sim-up sim-down

## all: build the binaries and the test programs
all: $(BINS) $(SIM_BIN) $(B)/test-unit $(patsubst %,$(B)/fuzz-%,$(FUZZ_TARGETS))

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libvbak.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/vbak: $(B)/daemon/vbak.o $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(B)/vbak-cvd: $(B)/transport/vbak-cvd.o $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(B)/vbakd: $(B)/daemon/vbakd.o $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(B)/tests/sim/%.o: tests/sim/%.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(SIM_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/vbak-cvm-sim: $(patsubst %.c,$(B)/%.o,$(SIM_SRCS)) $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(SIM_LIBS) $(FINAL_LIBS)

$(B)/test-unit: $(UNIT_OBJS) $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(B)/fuzz-%: $(B)/tests/fuzz/fuzz-%.o $(B)/tests/fuzz/regression-main.o $(B)/libvbak.a
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)

## deps: install build and test dependencies (apt, idempotent)
deps:
	@scripts/deps.sh

## unit: run the unit tests
unit: $(B)/test-unit
	$(B)/test-unit

## fuzz-replay: replay every fuzz corpus through its target
fuzz-replay: $(patsubst %,$(B)/fuzz-%,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
		echo "replay $$t: $$(ls tests/fuzz/corpus/$$t | wc -l) inputs"; \
		$(B)/fuzz-$$t tests/fuzz/corpus/$$t/* || exit 1; \
	done

## asan: build and run the unit tests and fuzz replay with ASan+UBSan
asan:
	$(MAKE) B=build/asan OPT="-O1 -g" CFLAGS="$(SAN_FLAGS) $(CFLAGS)" LDFLAGS="$(SAN_FLAGS) $(LDFLAGS)" unit fuzz-replay

## integration: run tests/integration/*.sh against the built binaries
integration: all
	@tests/integration/run.sh $(B)

## check: install what is missing, build, run every test (unit, ASan+UBSan, fuzz replay, integration, formatting)
check: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-replay
	$(MAKE) asan
	$(MAKE) integration
	$(MAKE) format-check

test: check

## bench: build the benchmark data once and compare vbak with zstd, borg and restic
bench: deps
	$(MAKE) all
	bench/run.sh $(B)

## demo: back up a generated disk image, change it, back up incrementally, restore and compare
demo: deps
	$(MAKE) all
	scripts/demo.sh $(B)

## sim-up: start the CAS simulator in the background (SIM_STATE, SIM_HTTP, SIM_CVD_PORT); prints CVM_URL=...
sim-up: $(B)/vbak-cvm-sim $(B)/vbak-cvd $(B)/vbak
	@scripts/sim-up.sh $(B)

## sim-down: stop the simulator sim-up started (its files stay)
sim-down:
	@scripts/sim-down.sh $(B)

# install / uninstall: PREFIX, DESTDIR, BINDIR, SBINDIR, SYSCONFDIR, MANDIR,
# SYSTEMDUNITDIR, LOGROTATEDIR; B picks the build to install from.
#
# install builds the binaries only when they are missing: it never rebuilds
# stale ones, so run `make` first after changing the sources (and `sudo make
# install` in a built tree compiles nothing as root). The systemd units are
# installed when systemd/ has them. etc/vbak.logrotate becomes
# $(LOGROTATEDIR)/vbak (a source folder etc/logrotate.d would match the
# *.d of .gitignore).
#
# Every file install writes, and every directory it had to create, is
# recorded in $(PKGDATADIR)/install-manifest (paths without DESTDIR), one
# per line: "f PATH" a file, "d PATH" a directory, "c SHA256 PATH" the
# configuration as shipped. A later install keeps the earlier entries, so
# uninstall also removes what an older version put there.
#
# The configuration, $(SYSCONFDIR)/vbak/vbakd.conf, is never overwritten:
# when it exists and differs from etc/vbakd.conf (the user edited it, or an
# older version shipped it), it stays, the new one is installed beside it as
# vbakd.conf.dist and install says so. When it is missing or identical to
# etc/vbakd.conf, etc/vbakd.conf is installed (and a stale vbakd.conf.dist
# removed). uninstall removes the configuration only when it is still
# byte-for-byte a version vbak installed (its SHA-256 is in the manifest);
# an edited one stays, and so does its directory. Empty directories that
# install created are removed; directories that existed before stay.
MAN_PAGES = man/vbak.1 man/vbakd.8 man/vbak-cvd.8
UNITS = $(wildcard systemd/vbakd.service systemd/vbak-cvd.service)
INSTALL_VARS = DESTDIR='$(DESTDIR)' B='$(B)' BINDIR='$(BINDIR)' SBINDIR='$(SBINDIR)' SYSCONFDIR='$(SYSCONFDIR)' \
	MANDIR='$(MANDIR)' SYSTEMDUNITDIR='$(SYSTEMDUNITDIR)' LOGROTATEDIR='$(LOGROTATEDIR)' \
	PKGDATADIR='$(PKGDATADIR)' INSTALL='$(INSTALL)' UNITS='$(UNITS)' MAN_PAGES='$(MAN_PAGES)'

# The install script (sh; run with the variables above in its environment).
define INSTALL_SH
set -eu
manifest=$PKGDATADIR/install-manifest
list=$(mktemp)
trap 'rm -f "$list"' EXIT
# Entries of an earlier install stay in the manifest.
[ ! -f "$DESTDIR$manifest" ] || cat "$DESTDIR$manifest" >"$list"
# inst_dir D: creates D under DESTDIR, recording each level that did not exist.
inst_dir() {
        d=$1
        while [ "$d" != / ] && [ ! -d "$DESTDIR$d" ]; do
                echo "d $d" >>"$list"
                d=$(dirname "$d")
        done
        $INSTALL -d "$DESTDIR$1"
}
# inst_file MODE SOURCE DIR [NAME]: installs SOURCE as DIR/NAME (default: its base name).
inst_file() {
        inst_dir "$3"
        t=$3/${4:-$(basename "$2")}
        $INSTALL -m "$1" "$2" "$DESTDIR$t"
        echo "f $t" >>"$list"
        echo "installed $DESTDIR$t"
}
for p in vbak vbakd vbak-cvd; do
        [ -x "$B/$p" ] || { echo "install: $B/$p is not built (run make first)" >&2; exit 1; }
done
inst_file 755 "$B/vbak" "$BINDIR"
inst_file 755 "$B/vbakd" "$SBINDIR"
inst_file 755 "$B/vbak-cvd" "$SBINDIR"
# The units name the binaries and the configuration where PREFIX=/usr and
# SYSCONFDIR=/etc put them; other places are written into the installed copy.
unit=$(mktemp)
trap 'rm -f "$list" "$unit"' EXIT
for u in $UNITS; do
        sed -e "s|/usr/sbin/|$SBINDIR/|g" -e "s|/usr/bin/|$BINDIR/|g" -e "s|/etc/vbak/|$SYSCONFDIR/vbak/|g" "$u" >"$unit"
        inst_file 644 "$unit" "$SYSTEMDUNITDIR" "$(basename "$u")"
done
inst_file 644 etc/vbak.logrotate "$LOGROTATEDIR" vbak
for m in $MAN_PAGES; do inst_file 644 "$m" "$MANDIR/man${m##*.}"; done
conf=$SYSCONFDIR/vbak/vbakd.conf
if [ ! -e "$DESTDIR$conf" ] || cmp -s etc/vbakd.conf "$DESTDIR$conf"; then
        # Recorded with its checksum, not as a plain file: uninstall leaves it once edited.
        inst_dir "$SYSCONFDIR/vbak"
        $INSTALL -m 644 etc/vbakd.conf "$DESTDIR$conf"
        echo "c $(sha256sum <etc/vbakd.conf | cut -d' ' -f1) $conf" >>"$list"
        echo "installed $DESTDIR$conf"
        rm -f "$DESTDIR$conf.dist"
else
        inst_file 644 etc/vbakd.conf "$SYSCONFDIR/vbak" vbakd.conf.dist
        echo "kept $DESTDIR$conf (it differs from this version's); the new one is $DESTDIR$conf.dist"
fi
inst_dir "$PKGDATADIR"
LC_ALL=C sort -u "$list" >"$DESTDIR$manifest.tmp"
chmod 644 "$DESTDIR$manifest.tmp"
mv -f "$DESTDIR$manifest.tmp" "$DESTDIR$manifest"
echo "installed $DESTDIR$manifest"
endef

# The uninstall script: removes what the manifest lists.
define UNINSTALL_SH
set -eu
manifest=$PKGDATADIR/install-manifest
if [ ! -f "$DESTDIR$manifest" ]; then
        echo "uninstall: no $DESTDIR$manifest: vbak is not installed there (same PREFIX and DESTDIR as install?)" >&2
        exit 0
fi
while read -r kind rest; do
        case $kind in
        f)
                if [ -e "$DESTDIR$rest" ] || [ -L "$DESTDIR$rest" ]; then
                        rm -f "$DESTDIR$rest"
                        echo "removed $DESTDIR$rest"
                fi
                ;;
        c)
                sum=${rest%% *} path=${rest#* }
                if [ -f "$DESTDIR$path" ] && [ "$(sha256sum <"$DESTDIR$path" | cut -d' ' -f1)" = "$sum" ]; then
                        rm -f "$DESTDIR$path"
                        echo "removed $DESTDIR$path"
                fi
                ;;
        esac
done <"$DESTDIR$manifest"
sed -n 's/^c [^ ]* //p' "$DESTDIR$manifest" | LC_ALL=C sort -u | while IFS= read -r path; do
        [ ! -e "$DESTDIR$path" ] || echo "kept $DESTDIR$path (changed since it was installed)"
done
dirs=$(sed -n 's/^d //p' "$DESTDIR$manifest" | LC_ALL=C sort -ru)
rm -f "$DESTDIR$manifest"
echo "removed $DESTDIR$manifest"
# Deepest first; a directory that is not empty stays.
printf '%s\n' "$dirs" | while IFS= read -r d; do
        [ -z "$d" ] || rmdir "$DESTDIR$d" 2>/dev/null || true
done
endef

## install: install binaries, units, config (never overwritten), logrotate file, man pages (PREFIX, DESTDIR...)
install: export VB_INSTALL_SH = $(value INSTALL_SH)
install: $(if $(filter-out $(wildcard $(BINS)),$(BINS)),$(BINS))
	@$(INSTALL_VARS) sh -c "$$VB_INSTALL_SH"

## uninstall: remove exactly what install installed (an edited config stays)
uninstall: export VB_UNINSTALL_SH = $(value UNINSTALL_SH)
uninstall:
	@$(INSTALL_VARS) sh -c "$$VB_UNINSTALL_SH"

# dist: the sources git tracks (as they are in the working tree) under
# vbak-$(VERSION)/, with fixed owners, order and times, so the same tree gives
# the same tarball; the .sha256 file checks with `sha256sum -c` in DISTDIR
# (build/). Files git does not track yet are not in it.
DISTDIR ?= build
DIST = $(DISTDIR)/vbak-$(VERSION).tar.gz
.PHONY: dist

## dist: build build/vbak-VERSION.tar.gz and its .sha256 from the files git tracks (DISTDIR)
dist:
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "dist: needs a git checkout" >&2; exit 1; }
	@mkdir -p $(DISTDIR)
	@git ls-files | while IFS= read -r f; do [ ! -e "$$f" ] || printf '%s\n' "$$f"; done | \
		tar --create --verbatim-files-from --files-from=- --transform 's,^,vbak-$(VERSION)/,S' \
		--sort=name --owner=0 --group=0 --numeric-owner --mode=u+w,go-w \
		--mtime=@$$(git log -1 --format=%ct 2>/dev/null || echo 0) --file=$(DIST).tar
	@gzip -n -9 -c $(DIST).tar >$(DIST).tmp && rm -f $(DIST).tar && mv -f $(DIST).tmp $(DIST)
	@cd $(dir $(DIST)) && sha256sum $(notdir $(DIST)) >$(notdir $(DIST)).sha256
	@echo "$(DIST) $$(cut -d' ' -f1 $(DIST).sha256)"

## clean: remove build products
clean:
	rm -rf build

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

## format: reformat the sources with clang-format
format:
	clang-format -i $(FORMAT_SRCS)

## format-check: fail when a source differs from clang-format's output
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS)

## list: print the targets
list:
	@sed -n 's/^## //p' Makefile
