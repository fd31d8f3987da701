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

DEPS = libuv jansson libzstd libcrypto libssl libnbd libxml-2.0 libcurl sqlite3 icu-i18n libh2o
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS) 2>/dev/null || echo -luv -ljansson -lzstd -lssl -lcrypto -lnbd -lxml2 -lcurl -lsqlite3 -licui18n -licuuc -lh2o)

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

## install: install the binaries (PREFIX, DESTDIR, BINDIR)
install: $(BINS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL_PROGRAM) $(B)/vbak $(DESTDIR)$(BINDIR)/vbak
	$(INSTALL) -d $(DESTDIR)$(SBINDIR)
	$(INSTALL_PROGRAM) $(B)/vbak-cvd $(DESTDIR)$(SBINDIR)/vbak-cvd

## uninstall: remove what install installed
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vbak $(DESTDIR)$(SBINDIR)/vbak-cvd

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
