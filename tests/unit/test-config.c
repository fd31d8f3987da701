/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-config.c -- tests for daemon/config.c: the table, the defaults,
 * every value type (with rows of the test's own for types the daemon has no
 * key of), bounds, the file parser's errors with line numbers, all-or-nothing
 * loading, and etc/vbakd.conf staying in step with the table.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "dedup/blob.h"
#include "storagepool/sp.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

/* The directory the runner started in (the repository root under make). */
static char start_dir[PATH_MAX];

__attribute__((constructor)) static void remember_start_dir(void)
{
        if (!getcwd(start_dir, sizeof(start_dir)))
                start_dir[0] = 0;
}

static void write_text(const char *path, const char *text)
{
        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, path, text, strlen(text), false));
}

static const char *format_key(const struct vb_config *c, const char *name, char *buf, size_t size)
{
        const struct vb_config_key *k = vb_config_find(name);

        ASSERT_TRUE(k != NULL);
        ASSERT_OK(vb_config_format_value(c, k, buf, size));
        return buf;
}

/* Asserts that setting key to value fails with -err and a message that
 * contains every one of the NULL-terminated fragments. */
static void assert_set_fails(struct vb_config *c, const char *key, const char *value, int err, ...)
{
        _cleanup_free_ char *error = NULL;
        va_list ap;
        const char *frag;

        ASSERT_ERR(vb_config_set(c, key, value, &error), err);
        ASSERT_TRUE(error != NULL);
        va_start(ap, err);
        while ((frag = va_arg(ap, const char *)))
                if (!strstr(error, frag))
                        TEST_FAIL_("set %s = \"%s\": message \"%s\" lacks \"%s\"", key, value, error, frag);
        va_end(ap);
}

static void assert_load_fails(struct vb_config *c, const char *path, int err, const char *want)
{
        _cleanup_free_ char *error = NULL;

        ASSERT_ERR(vb_config_load(c, path, &error), err);
        ASSERT_TRUE(error != NULL);
        if (!strstr(error, want))
                TEST_FAIL_("load %s: message \"%s\" lacks \"%s\"", path, error, want);
}

TEST(config_table)
{
        char buf[256];

        ASSERT_TRUE(vb_config_n_keys >= 9);
        VB_CONFIG_FOREACH_KEY(k) {
                ASSERT_TRUE(k->name && k->name[0]);
                for (const char *s = k->name; *s; s++)
                        ASSERT_TRUE(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_');
                ASSERT_TRUE(k->description && k->description[0]);
                ASSERT_TRUE(k->default_value != NULL);
                ASSERT_TRUE(k->type >= 0 && k->type < _VB_CONFIG_TYPE_MAX);
                ASSERT_TRUE(k->offset < sizeof(struct vb_config));
                ASSERT_TRUE(vb_config_find(k->name) == k);
                ASSERT_TRUE(k->min <= k->max);
                if (k->type == VB_CONFIG_ENUM)
                        ASSERT_TRUE(k->values && k->values[0].name);
                if (k->type == VB_CONFIG_STRING)
                        ASSERT_TRUE(k->allowed != NULL);
                ASSERT_TRUE(vb_config_format_allowed(k, buf, sizeof(buf)) > 0);
                for (const struct vb_config_key *j = vb_config_keys; j < k; j++)
                        ASSERT_TRUE(!streq(j->name, k->name));
        }
        ASSERT_TRUE(vb_config_find("no_such_key") == NULL);
        ASSERT_TRUE(vb_config_find("") == NULL);
        ASSERT_TRUE(vb_config_find(NULL) == NULL);
        ASSERT_TRUE(vb_config_find("worker_threads")->needs_restart);
        ASSERT_TRUE(!vb_config_find("log_level")->needs_restart);
}

TEST(config_defaults)
{
        struct vb_config c;
        char buf[256];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_EQ(c.log_level, LOG_INFO);
        ASSERT_STREQ(c.state_dir, "/var/lib/vbak");
        ASSERT_STREQ(c.runtime_dir, "/run/vbak");
        ASSERT_EQ(c.worker_threads, 4);
        ASSERT_UEQ(c.chunk_size, VB_CONFIG_CHUNK_SIZE_DEFAULT);
        ASSERT_UEQ(c.chunk_size, 1024 * 1024);
        ASSERT_STREQ(c.compression, "fast");
        ASSERT_EQ(c.fsync, SP_FSYNC_ALWAYS);
        ASSERT_UEQ(c.gc_grace, 3600);
        ASSERT_EQ(c.transport_log_level, LOG_INFO);

        ASSERT_STREQ(format_key(&c, "log_level", buf, sizeof(buf)), "info");
        ASSERT_STREQ(format_key(&c, "chunk_size", buf, sizeof(buf)), "1M");
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "1h");
        ASSERT_STREQ(format_key(&c, "fsync", buf, sizeof(buf)), "always");
        ASSERT_STREQ(format_key(&c, "worker_threads", buf, sizeof(buf)), "4");

        /* Every default is accepted by the setter, as text and as formatted. */
        VB_CONFIG_FOREACH_KEY(k) {
                _cleanup_free_ char *error = NULL;
                char before[256], after[256];

                ASSERT_OK(vb_config_format_value(&c, k, before, sizeof(before)));
                ASSERT_OK(vb_config_set(&c, k->name, k->default_value, &error));
                ASSERT_TRUE(error == NULL);
                ASSERT_OK(vb_config_set(&c, k->name, before, NULL));
                ASSERT_OK(vb_config_format_value(&c, k, after, sizeof(after)));
                ASSERT_STREQ(before, after);
        }
        vb_config_free(&c);
        ASSERT_TRUE(c.state_dir == NULL && c.runtime_dir == NULL && c.compression == NULL);
        vb_config_free(&c);
        vb_config_free(NULL);
        ASSERT_ERR(vb_config_init_defaults(NULL), EINVAL);
}

TEST(config_int)
{
        struct vb_config c;
        char buf[64];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_set(&c, "worker_threads", "1", NULL));
        ASSERT_EQ(c.worker_threads, 1);
        ASSERT_OK(vb_config_set(&c, "worker_threads", "64", NULL));
        ASSERT_EQ(c.worker_threads, 64);
        ASSERT_OK(vb_config_set(&c, "worker_threads", "+8", NULL));
        ASSERT_EQ(c.worker_threads, 8);
        ASSERT_STREQ(format_key(&c, "worker_threads", buf, sizeof(buf)), "8");

        assert_set_fails(&c, "worker_threads", "0", EINVAL, "worker_threads", "\"0\"", "out of range", "1-64", NULL);
        assert_set_fails(&c, "worker_threads", "65", EINVAL, "out of range", "allowed: 1-64", NULL);
        assert_set_fails(&c, "worker_threads", "-1", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "worker_threads", "99999999999999999999", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "worker_threads", "4294967297", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "worker_threads", "four", EINVAL, "not an integer", "1-64", NULL);
        assert_set_fails(&c, "worker_threads", "4x", EINVAL, "not an integer", NULL);
        assert_set_fails(&c, "worker_threads", "0x10", EINVAL, "not an integer", NULL);
        assert_set_fails(&c, "worker_threads", " 4", EINVAL, "not an integer", NULL);
        assert_set_fails(&c, "worker_threads", "", EINVAL, "empty value", NULL);
        assert_set_fails(&c, "worker_threads", "-", EINVAL, "not an integer", NULL);
        ASSERT_EQ(c.worker_threads, 8);
        vb_config_free(&c);
}

TEST(config_size)
{
        struct vb_config c;
        char buf[64];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_set(&c, "chunk_size", "1M", NULL));
        ASSERT_UEQ(c.chunk_size, 1 << 20);
        ASSERT_OK(vb_config_set(&c, "chunk_size", "4MiB", NULL));
        ASSERT_UEQ(c.chunk_size, 4 << 20);
        ASSERT_OK(vb_config_set(&c, "chunk_size", "1536K", NULL));
        ASSERT_UEQ(c.chunk_size, 1536 << 10);
        ASSERT_STREQ(format_key(&c, "chunk_size", buf, sizeof(buf)), "1536K");
        ASSERT_OK(vb_config_set(&c, "chunk_size", "3145728", NULL));
        ASSERT_STREQ(format_key(&c, "chunk_size", buf, sizeof(buf)), "3M");
        ASSERT_OK(vb_config_set(&c, "chunk_size", "1048577", NULL));
        ASSERT_STREQ(format_key(&c, "chunk_size", buf, sizeof(buf)), "1048577");

        assert_set_fails(&c, "chunk_size", "1023K", EINVAL, "chunk_size", "out of range", "allowed: 1M-4M", NULL);
        assert_set_fails(&c, "chunk_size", "4097K", EINVAL, "out of range", "1M-4M", NULL);
        assert_set_fails(&c, "chunk_size", "1G", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "chunk_size", "99999999999T", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "chunk_size", "2X", EINVAL, "not a size", "1M-4M", NULL);
        assert_set_fails(&c, "chunk_size", "-2M", EINVAL, "not a size", NULL);
        assert_set_fails(&c, "chunk_size", "M", EINVAL, "not a size", NULL);
        ASSERT_STREQ(format_key(&c, "chunk_size", buf, sizeof(buf)), "1048577");
        vb_config_free(&c);
}

TEST(config_duration)
{
        struct vb_config c;
        char buf[64];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_set(&c, "gc_grace", "0", NULL));
        ASSERT_UEQ(c.gc_grace, 0);
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "0s");
        ASSERT_OK(vb_config_set(&c, "gc_grace", "30d", NULL));
        ASSERT_UEQ(c.gc_grace, 30 * 86400);
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "30d");
        ASSERT_OK(vb_config_set(&c, "gc_grace", "720h", NULL));
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "30d");
        ASSERT_OK(vb_config_set(&c, "gc_grace", "90s", NULL));
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "90s");
        ASSERT_OK(vb_config_set(&c, "gc_grace", "120", NULL));
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "2m");
        ASSERT_OK(vb_config_set(&c, "gc_grace", "2w", NULL));
        ASSERT_STREQ(format_key(&c, "gc_grace", buf, sizeof(buf)), "14d");

        assert_set_fails(&c, "gc_grace", "31d", EINVAL, "gc_grace", "out of range", "allowed: 0s-30d", NULL);
        assert_set_fails(&c, "gc_grace", "2592001", EINVAL, "out of range", NULL);
        assert_set_fails(&c, "gc_grace", "1y", EINVAL, "not a duration", "0s-30d", NULL);
        assert_set_fails(&c, "gc_grace", "1h30m", EINVAL, "not a duration", NULL);
        assert_set_fails(&c, "gc_grace", "-1s", EINVAL, "not a duration", NULL);
        ASSERT_UEQ(c.gc_grace, 14 * 86400);
        vb_config_free(&c);
}

TEST(config_string)
{
        struct vb_config c;
        char buf[64];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_set(&c, "state_dir", "/srv/vbak state", NULL));
        ASSERT_STREQ(c.state_dir, "/srv/vbak state");
        ASSERT_OK(vb_config_set(&c, "runtime_dir", "/tmp/x", NULL));
        ASSERT_STREQ(format_key(&c, "runtime_dir", buf, sizeof(buf)), "/tmp/x");
        assert_set_fails(&c, "state_dir", "relative/dir", EINVAL, "state_dir", "not allowed", "an absolute path", NULL);
        assert_set_fails(&c, "state_dir", "", EINVAL, "empty value", NULL);
        assert_set_fails(&c, "state_dir", "/a\tb", EINVAL, "control character", "\"/a?b\"", NULL);
        assert_set_fails(&c, "state_dir", "/a\nb", EINVAL, "control character", NULL);
        ASSERT_STREQ(c.state_dir, "/srv/vbak state");
        vb_config_free(&c);
}

TEST(config_compression)
{
        static const char *const good[] = { "none", "fast", "zstd:1", "zstd:3", "zstd:10", "zstd:19" };
        static const char *const bad[] = {
                "",         "zstd",    "zstd:",   "zstd:0",  "zstd:20",
                "zstd:01",  "zstd:+5", "zstd: 5", "zstd:5 ", "zstd:-1",
                "zstd:1.5", "ZSTD:3",  "Fast",    "lz4",     "zstd:99999999999999999999",
        };
        struct vb_config c;
        int level;

        ASSERT_OK(dd_compression_from_string("none", &level));
        ASSERT_EQ(level, 0);
        ASSERT_OK(dd_compression_from_string("fast", &level));
        ASSERT_EQ(level, DD_COMPRESSION_FAST);
        ASSERT_OK(dd_compression_from_string("zstd:19", &level));
        ASSERT_EQ(level, 19);
        ASSERT_OK(dd_compression_from_string("zstd:7", &level));
        ASSERT_EQ(level, 7);
        ASSERT_ERR(dd_compression_from_string(NULL, &level), EINVAL);
        ASSERT_ERR(dd_compression_from_string("fast", NULL), EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                level = -42;
                if (dd_compression_from_string(bad[i], &level) != -EINVAL)
                        TEST_FAIL_("compression \"%s\" accepted", bad[i]);
                ASSERT_EQ(level, -42);
        }

        ASSERT_OK(vb_config_init_defaults(&c));
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ASSERT_OK(vb_config_set(&c, "compression", good[i], NULL));
                ASSERT_STREQ(c.compression, good[i]);
        }
        assert_set_fails(&c, "compression", "zstd:20", EINVAL, "compression", "\"zstd:20\"",
                         "none, fast or zstd:N with N 1-19", NULL);
        assert_set_fails(&c, "compression", "gzip", EINVAL, "not allowed", NULL);
        ASSERT_STREQ(c.compression, "zstd:19");
        vb_config_free(&c);
}

TEST(config_enum)
{
        struct vb_config c;
        char buf[64];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_set(&c, "fsync", "none", NULL));
        ASSERT_EQ(c.fsync, SP_FSYNC_NONE);
        ASSERT_STREQ(format_key(&c, "fsync", buf, sizeof(buf)), "none");
        assert_set_fails(&c, "fsync", "sometimes", EINVAL, "fsync = \"sometimes\"", "allowed: always, none", NULL);
        assert_set_fails(&c, "fsync", "Always", EINVAL, "not allowed", NULL);
        ASSERT_EQ(c.fsync, SP_FSYNC_NONE);

        static const struct {
                const char *name;
                int level;
                const char *shown;
        } levels[] = {
                { "debug", LOG_DEBUG, "debug" },    { "info", LOG_INFO, "info" },
                { "notice", LOG_NOTICE, "notice" }, { "warning", LOG_WARNING, "warning" },
                { "warn", LOG_WARNING, "warning" }, { "error", LOG_ERR, "error" },
                { "err", LOG_ERR, "error" },        { "crit", LOG_CRIT, "crit" },
                { "alert", LOG_ALERT, "alert" },    { "emerg", LOG_EMERG, "emerg" },
        };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                ASSERT_OK(vb_config_set(&c, "log_level", levels[i].name, NULL));
                ASSERT_EQ(c.log_level, levels[i].level);
                ASSERT_STREQ(format_key(&c, "log_level", buf, sizeof(buf)), levels[i].shown);
        }
        assert_set_fails(&c, "log_level", "verbose", EINVAL,
                         "allowed: debug, info, notice, warning, error, crit, alert, emerg", NULL);

        ASSERT_OK(vb_config_set(&c, "transport_log_level", "warning", NULL));
        ASSERT_EQ(c.transport_log_level, LOG_WARNING);
        ASSERT_OK(vb_config_set(&c, "transport_log_level", "error", NULL));
        ASSERT_EQ(c.transport_log_level, LOG_ERR);
        assert_set_fails(&c, "transport_log_level", "debug", EINVAL, "allowed: info, warning, error", NULL);
        vb_config_free(&c);
}

/* Rows of the test's own, for the generic vb_config_key_*() functions and
 * the types the daemon's table has no key of. */
struct demo {
        bool flag;
        int count;
        uint64_t bytes;
        uint64_t wait;
        char *name;
        int mode;
};

static const struct vb_config_enum_value demo_modes[] = {
        { "off", 0 }, { "on", 1 }, { "auto", 2 }, { "automatic", 2 }, { NULL, 0 },
};

static const struct vb_config_key demo_keys[] = {
        { .name = "flag", .type = VB_CONFIG_BOOL, .offset = offsetof(struct demo, flag), .description = "d" },
        { .name = "count",
          .type = VB_CONFIG_INT,
          .min = -5,
          .max = 5,
          .offset = offsetof(struct demo, count),
          .description = "d" },
        { .name = "bytes",
          .type = VB_CONFIG_SIZE,
          .min = 0,
          .max = INT64_MAX,
          .offset = offsetof(struct demo, bytes),
          .description = "d" },
        { .name = "wait",
          .type = VB_CONFIG_DURATION,
          .min = 60,
          .max = 3600,
          .offset = offsetof(struct demo, wait),
          .description = "d" },
        { .name = "name", .type = VB_CONFIG_STRING, .offset = offsetof(struct demo, name), .description = "d" },
        { .name = "mode",
          .type = VB_CONFIG_ENUM,
          .offset = offsetof(struct demo, mode),
          .values = demo_modes,
          .description = "d" },
};

static void demo_set_fails(const struct vb_config_key *k, struct demo *d, const char *value, const char *frag)
{
        _cleanup_free_ char *error = NULL;
        struct demo before = *d;

        ASSERT_ERR(vb_config_key_set(k, d, value, &error), EINVAL);
        ASSERT_TRUE(error != NULL);
        if (!strstr(error, frag))
                TEST_FAIL_("%s = \"%s\": message \"%s\" lacks \"%s\"", k->name, value, error, frag);
        ASSERT_MEMEQ(&before, d, sizeof(before));
}

static const char *demo_format(const struct vb_config_key *k, const struct demo *d, char *buf, size_t size)
{
        ASSERT_OK(vb_config_key_format(k, d, buf, size));
        return buf;
}

TEST(config_every_type)
{
        const struct vb_config_key *flag = &demo_keys[0], *count = &demo_keys[1], *bytes = &demo_keys[2],
                                   *wait = &demo_keys[3], *name = &demo_keys[4], *mode = &demo_keys[5];
        struct demo d = { 0 };
        char buf[64];

        static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
        static const char *const no[] = { "no", "false", "off", "0", "NO", "Off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                d.flag = false;
                ASSERT_OK(vb_config_key_set(flag, &d, yes[i], NULL));
                ASSERT_TRUE(d.flag);
                ASSERT_STREQ(demo_format(flag, &d, buf, sizeof(buf)), "yes");
                ASSERT_OK(vb_config_key_set(flag, &d, no[i], NULL));
                ASSERT_TRUE(!d.flag);
                ASSERT_STREQ(demo_format(flag, &d, buf, sizeof(buf)), "no");
        }
        demo_set_fails(flag, &d, "maybe", "not a boolean; allowed: yes or no");
        demo_set_fails(flag, &d, "2", "not a boolean");

        ASSERT_OK(vb_config_key_set(count, &d, "-5", NULL));
        ASSERT_EQ(d.count, -5);
        ASSERT_STREQ(demo_format(count, &d, buf, sizeof(buf)), "-5");
        ASSERT_OK(vb_config_key_set(count, &d, "5", NULL));
        demo_set_fails(count, &d, "-6", "allowed: -5-5");
        demo_set_fails(count, &d, "6", "out of range");

        ASSERT_OK(vb_config_key_set(bytes, &d, "0", NULL));
        ASSERT_STREQ(demo_format(bytes, &d, buf, sizeof(buf)), "0");
        ASSERT_OK(vb_config_key_set(bytes, &d, "3T", NULL));
        ASSERT_UEQ(d.bytes, 3ULL << 40);
        ASSERT_STREQ(demo_format(bytes, &d, buf, sizeof(buf)), "3T");
        ASSERT_OK(vb_config_key_set(bytes, &d, "64KiB", NULL));
        ASSERT_STREQ(demo_format(bytes, &d, buf, sizeof(buf)), "64K");
        ASSERT_OK(vb_config_key_set(bytes, &d, "2G", NULL));
        ASSERT_STREQ(demo_format(bytes, &d, buf, sizeof(buf)), "2G");
        /* Above INT64_MAX bytes is out of range even though it parses. */
        demo_set_fails(bytes, &d, "8388608T", "out of range");
        demo_set_fails(bytes, &d, "18446744073709551615", "out of range");

        ASSERT_OK(vb_config_key_set(wait, &d, "1m", NULL));
        ASSERT_UEQ(d.wait, 60);
        ASSERT_OK(vb_config_key_set(wait, &d, "1h", NULL));
        ASSERT_STREQ(demo_format(wait, &d, buf, sizeof(buf)), "1h");
        demo_set_fails(wait, &d, "59", "allowed: 1m-1h");

        ASSERT_OK(vb_config_key_set(name, &d, "first", NULL));
        ASSERT_OK(vb_config_key_set(name, &d, "any text at all", NULL));
        ASSERT_STREQ(d.name, "any text at all");
        ASSERT_STREQ(demo_format(name, &d, buf, sizeof(buf)), "any text at all");
        ASSERT_ERR(vb_config_key_format(name, &d, buf, 4), ENOBUFS);
        demo_set_fails(name, &d, "bell\a", "control character");
        free(d.name);
        d.name = NULL;
        ASSERT_STREQ(demo_format(name, &d, buf, sizeof(buf)), "");

        ASSERT_OK(vb_config_key_set(mode, &d, "automatic", NULL));
        ASSERT_EQ(d.mode, 2);
        ASSERT_STREQ(demo_format(mode, &d, buf, sizeof(buf)), "auto");
        demo_set_fails(mode, &d, "sometimes", "allowed: off, on, auto");
        d.mode = 7;
        ASSERT_ERR(vb_config_key_format(mode, &d, buf, sizeof(buf)), EINVAL);

        ASSERT_ERR(vb_config_key_set(NULL, &d, "x", NULL), EINVAL);
        ASSERT_ERR(vb_config_key_set(flag, NULL, "x", NULL), EINVAL);
        ASSERT_ERR(vb_config_key_set(flag, &d, NULL, NULL), EINVAL);
        ASSERT_ERR(vb_config_key_format(flag, &d, buf, 0), EINVAL);
}

TEST(config_format)
{
        struct vb_config c;
        char buf[256], small[3];

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_EQ(vb_config_format_value(&c, vb_config_find("state_dir"), buf, sizeof(buf)), strlen("/var/lib/vbak"));
        ASSERT_ERR(vb_config_format_value(&c, vb_config_find("state_dir"), small, sizeof(small)), ENOBUFS);
        ASSERT_ERR(vb_config_format_value(&c, NULL, buf, sizeof(buf)), EINVAL);
        ASSERT_ERR(vb_config_format_value(NULL, vb_config_find("state_dir"), buf, sizeof(buf)), EINVAL);
        ASSERT_ERR(vb_config_format_value(&c, &demo_keys[0], buf, sizeof(buf)), EINVAL);

        ASSERT_OK(vb_config_format_allowed(vb_config_find("worker_threads"), buf, sizeof(buf)));
        ASSERT_STREQ(buf, "1-64");
        ASSERT_OK(vb_config_format_allowed(vb_config_find("chunk_size"), buf, sizeof(buf)));
        ASSERT_STREQ(buf, "1M-4M");
        ASSERT_OK(vb_config_format_allowed(vb_config_find("gc_grace"), buf, sizeof(buf)));
        ASSERT_STREQ(buf, "0s-30d");
        ASSERT_OK(vb_config_format_allowed(vb_config_find("fsync"), buf, sizeof(buf)));
        ASSERT_STREQ(buf, "always, none");
        ASSERT_OK(vb_config_format_allowed(vb_config_find("state_dir"), buf, sizeof(buf)));
        ASSERT_STREQ(buf, "an absolute path");
        ASSERT_OK(vb_config_format_allowed(&demo_keys[0], buf, sizeof(buf)));
        ASSERT_STREQ(buf, "yes or no");
        ASSERT_OK(vb_config_format_allowed(&demo_keys[4], buf, sizeof(buf)));
        ASSERT_STREQ(buf, "any text");
        ASSERT_ERR(vb_config_format_allowed(vb_config_find("log_level"), small, sizeof(small)), ENOBUFS);
        ASSERT_ERR(vb_config_format_allowed(NULL, buf, sizeof(buf)), EINVAL);
        vb_config_free(&c);
}

TEST(config_set_errors)
{
        _cleanup_free_ char *error = NULL;
        struct vb_config c;

        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_ERR(vb_config_set(&c, "no_such_key", "1", &error), ENOENT);
        ASSERT_STREQ(error, "unknown key \"no_such_key\"");
        ASSERT_ERR(vb_config_set(&c, "no_such_key", "1", NULL), ENOENT);
        free(error);
        error = NULL;
        ASSERT_ERR(vb_config_set(&c, "bad\x01key", "1", &error), ENOENT);
        ASSERT_STREQ(error, "unknown key \"bad?key\"");
        ASSERT_ERR(vb_config_set(&c, "worker_threads", "0", NULL), EINVAL);
        ASSERT_ERR(vb_config_set(NULL, "worker_threads", "1", NULL), EINVAL);
        ASSERT_ERR(vb_config_set(&c, NULL, "1", NULL), EINVAL);
        ASSERT_ERR(vb_config_set(&c, "worker_threads", NULL, NULL), EINVAL);

        /* A long bad value is cut in the message. */
        char big[400];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        free(error);
        error = NULL;
        ASSERT_ERR(vb_config_set(&c, "fsync", big, &error), EINVAL);
        ASSERT_TRUE(strlen(error) < 200);
        ASSERT_TRUE(strstr(error, "...\"") != NULL);
        vb_config_free(&c);
}

TEST(config_load_file)
{
        struct vb_config c;
        char *error = (char *)"untouched";

        write_text("vbakd.conf", "# a comment\n"
                                 "\n"
                                 "   # an indented comment\n"
                                 "worker_threads = 8\n"
                                 "chunk_size=1M\n"
                                 "\tcompression\t=\tzstd:5\t\n"
                                 "state_dir = /srv/a=b\r\n"
                                 "fsync = none   \n"
                                 "gc_grace = 2d\n"
                                 "log_level = debug\n"
                                 "worker_threads = 16\n"
                                 "transport_log_level = error");
        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_load(&c, "vbakd.conf", &error));
        ASSERT_TRUE(error == NULL);
        ASSERT_EQ(c.worker_threads, 16);
        ASSERT_UEQ(c.chunk_size, 1 << 20);
        ASSERT_STREQ(c.compression, "zstd:5");
        ASSERT_STREQ(c.state_dir, "/srv/a=b");
        ASSERT_STREQ(c.runtime_dir, "/run/vbak");
        ASSERT_EQ(c.fsync, SP_FSYNC_NONE);
        ASSERT_UEQ(c.gc_grace, 2 * 86400);
        ASSERT_EQ(c.log_level, LOG_DEBUG);
        ASSERT_EQ(c.transport_log_level, LOG_ERR);

        /* A second file applies on top of the first. */
        write_text("more.conf", "worker_threads = 2\n");
        ASSERT_OK(vb_config_load(&c, "more.conf", NULL));
        ASSERT_EQ(c.worker_threads, 2);
        ASSERT_UEQ(c.chunk_size, 1 << 20);

        /* Empty files and comment-only files change nothing. */
        write_text("empty.conf", "");
        ASSERT_OK(vb_config_load(&c, "empty.conf", NULL));
        write_text("comments.conf", "#\n# worker_threads = 3\n\n  \n\t\n");
        ASSERT_OK(vb_config_load(&c, "comments.conf", NULL));
        ASSERT_EQ(c.worker_threads, 2);
        vb_config_free(&c);
}

TEST(config_load_errors)
{
        struct vb_config c;
        char *error = (char *)"untouched";
        char big[64];

        ASSERT_OK(vb_config_init_defaults(&c));

        ASSERT_ERR(vb_config_load(&c, "missing.conf", &error), ENOENT);
        ASSERT_TRUE(error && strstr(error, "missing.conf") && strstr(error, strerror(ENOENT)));
        free(error);
        ASSERT_ERR(vb_config_load(&c, "missing.conf", NULL), ENOENT);

        write_text("unknown.conf", "worker_threads = 8\n\n# comment\nbogus_key = 1\n");
        assert_load_fails(&c, "unknown.conf", EINVAL, "unknown.conf:4: unknown key \"bogus_key\"");
        /* All or nothing: line 1 was good but did not stick. */
        ASSERT_EQ(c.worker_threads, 4);

        write_text("range.conf", "# workers\nchunk_size = 4M\nworker_threads = 100\n");
        assert_load_fails(&c, "range.conf", EINVAL,
                          "range.conf:3: worker_threads = \"100\": out of range; allowed: 1-64");
        ASSERT_UEQ(c.chunk_size, VB_CONFIG_CHUNK_SIZE_DEFAULT);

        write_text("size.conf", "chunk_size = 8M\n");
        assert_load_fails(&c, "size.conf", EINVAL, "size.conf:1: chunk_size = \"8M\": out of range; allowed: 1M-4M");

        write_text("bad.conf", "\n\n\nfsync = sometimes\n");
        assert_load_fails(&c, "bad.conf", EINVAL,
                          "bad.conf:4: fsync = \"sometimes\": not allowed; allowed: always, none");

        write_text("noeq.conf", "worker_threads = 2\nworker_threads 8\n");
        assert_load_fails(&c, "noeq.conf", EINVAL, "noeq.conf:2: expected \"key = value\"");

        write_text("nokey.conf", "  = 8\n");
        assert_load_fails(&c, "nokey.conf", EINVAL, "nokey.conf:1: expected \"key = value\", found no key");

        write_text("empty-value.conf", "state_dir =\n");
        assert_load_fails(&c, "empty-value.conf", EINVAL, "empty-value.conf:1: state_dir = \"\": empty value");

        write_text("comment-after.conf", "worker_threads = 4 # four\n");
        assert_load_fails(&c, "comment-after.conf", EINVAL, "comment-after.conf:1: worker_threads = \"4 # four\"");

        write_text("case.conf", "Worker_Threads = 4\n");
        assert_load_fails(&c, "case.conf", EINVAL, "case.conf:1: unknown key \"Worker_Threads\"");

        static const char nul[] = "worker_threads = 2\nworker\0_threads = 3\n";
        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, "nul.conf", nul, sizeof(nul) - 1, false));
        assert_load_fails(&c, "nul.conf", EINVAL, "nul.conf:2: NUL byte in line");

        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "dir.conf", 0755));
        assert_load_fails(&c, "dir.conf", EISDIR, "dir.conf: ");

        /* Over 1 MiB is refused. */
        {
                _cleanup_free_ char *huge = malloc((1 << 20) + 100);
                ASSERT_TRUE(huge != NULL);
                memset(huge, '#', (1 << 20) + 100);
                ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, "huge.conf", huge, (1 << 20) + 100, false));
                assert_load_fails(&c, "huge.conf", EFBIG, "huge.conf: larger than 1 MiB");
        }

        ASSERT_ERR(vb_config_load(NULL, "x", NULL), EINVAL);
        ASSERT_ERR(vb_config_load(&c, NULL, NULL), EINVAL);

        /* Nothing above changed anything. */
        VB_CONFIG_FOREACH_KEY(k) {
                struct vb_config d;
                char want[256];

                ASSERT_OK(vb_config_init_defaults(&d));
                ASSERT_OK(vb_config_format_value(&d, k, want, sizeof(want)));
                ASSERT_OK(vb_config_format_value(&c, k, big, sizeof(big)));
                ASSERT_STREQ(big, want);
                vb_config_free(&d);
        }
        vb_config_free(&c);
}

/* etc/vbakd.conf loads, and documents every key as "# key = default". */
TEST(config_example_file)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        struct vb_config c;

        if (asprintf(&path, "%s/etc/vbakd.conf", start_dir) < 0)
                abort();
        if (access(path, R_OK) < 0) {
                fprintf(stderr, "%s not found, skipping\n", path);
                exit(EXIT_TEST_SKIP);
        }
        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_load(&c, path, NULL));
        ASSERT_OK(vb_read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL));
        VB_CONFIG_FOREACH_KEY(k) {
                char value[256], line[512], allowed[256];

                ASSERT_OK(vb_config_format_value(&c, k, value, sizeof(value)));
                snprintf(line, sizeof(line), "\n# %s = %s\n", k->name, value);
                if (!strstr(text, line))
                        TEST_FAIL_("%s lacks the line \"# %s = %s\"", path, k->name, value);
                ASSERT_OK(vb_config_format_allowed(k, allowed, sizeof(allowed)));
                if (!strstr(text, allowed))
                        TEST_FAIL_("%s does not say what %s allows (\"%s\")", path, k->name, allowed);
        }
        vb_config_free(&c);
}

/* ---- vbak config show / set ---- */

/* Sets key to value in text; asserts it works and returns the new text. */
static char *text_set_ok(const char *text, const char *key, const char *value, struct vb_config_edit *edit)
{
        _cleanup_free_ char *error = NULL;
        char *out = NULL;
        size_t len = 0;
        int r;

        r = vb_config_text_set("t.conf", text, strlen(text), key, value, &out, &len, edit, &error);
        if (r < 0)
                TEST_FAIL_("set %s = \"%s\": %s (%s)", key, value, strerror(-r), error ? error : "no message");
        ASSERT_TRUE(out != NULL);
        ASSERT_UEQ(len, strlen(out));
        return out;
}

static void assert_text_set_fails(const char *text, const char *key, const char *value, int err, const char *want)
{
        _cleanup_free_ char *error = NULL;
        char *out = (char *)"untouched";
        size_t len = 7;

        ASSERT_ERR(vb_config_text_set("t.conf", text, strlen(text), key, value, &out, &len, NULL, &error), err);
        ASSERT_STREQ(out, "untouched");
        ASSERT_TRUE(error != NULL);
        if (!strstr(error, want))
                TEST_FAIL_("set %s = \"%s\": message \"%s\" lacks \"%s\"", key, value, error, want);
}

TEST(config_iterate)
{
        _cleanup_free_ unsigned *lines = calloc(vb_config_n_keys, sizeof(*lines));
        struct vb_config c;
        size_t n = 0;

        VB_CONFIG_FOREACH_KEY(k) {
                ASSERT_TRUE(k == &vb_config_keys[n]);
                n++;
        }
        ASSERT_UEQ(n, vb_config_n_keys);

        /* Lines tell which line set each key in force; 0 for the others. */
        ASSERT_TRUE(lines != NULL);
        write_text("a.conf", "# comment\nworker_threads = 2\n\nfsync = none\nworker_threads = 3\n");
        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_load_lines(&c, "a.conf", lines, NULL));
        ASSERT_EQ(c.worker_threads, 3);
        VB_CONFIG_FOREACH_KEY(k) {
                unsigned want = streq(k->name, "worker_threads") ? 5 : streq(k->name, "fsync") ? 4 : 0;
                ASSERT_EQ(lines[k - vb_config_keys], want);
        }
        /* On failure every line is 0 and c unchanged. */
        write_text("b.conf", "log_level = debug\nfsync = sometimes\n");
        ASSERT_ERR(vb_config_load_lines(&c, "b.conf", lines, NULL), EINVAL);
        for (size_t i = 0; i < vb_config_n_keys; i++)
                ASSERT_EQ(lines[i], 0);
        ASSERT_EQ(c.log_level, LOG_INFO);
        ASSERT_ERR(vb_config_load_lines(&c, "missing.conf", lines, NULL), ENOENT);
        vb_config_free(&c);
}

TEST(config_close_matches)
{
        const struct vb_config_key *m[3];
        size_t n;

        n = vb_config_close_matches("worker_thread", m, 3);
        ASSERT_TRUE(n >= 1);
        ASSERT_STREQ(m[0]->name, "worker_threads");
        n = vb_config_close_matches("chunksize", m, 3);
        ASSERT_TRUE(n >= 1);
        ASSERT_STREQ(m[0]->name, "chunk_size");
        n = vb_config_close_matches("threads", m, 3);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(m[0]->name, "worker_threads");
        /* Both log levels, the closer one first. */
        n = vb_config_close_matches("log_levl", m, 3);
        ASSERT_TRUE(n >= 1);
        ASSERT_STREQ(m[0]->name, "log_level");
        n = vb_config_close_matches("log_level", m, 1);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(m[0]->name, "log_level");
        ASSERT_EQ(vb_config_close_matches("zzzzzzzzzzzz", m, 3), 0);
        ASSERT_EQ(vb_config_close_matches("worker_threads", m, 0), 0);
        ASSERT_EQ(vb_config_close_matches(NULL, m, 3), 0);
}

TEST(config_text_set)
{
        static const char shipped[] = "# header\n"
                                      "\n"
                                      "# [restart] Threads: 1-64.\n"
                                      "# worker_threads = 4\n"
                                      "\n"
                                      "# Level: info, warning, error.\n"
                                      "# transport_log_level = info\n";
        struct vb_config_edit e;
        char *out;

        /* The commented default line is uncommented in place. */
        out = text_set_ok(shipped, "worker_threads", "8", &e);
        ASSERT_STREQ(out, "# header\n\n# [restart] Threads: 1-64.\nworker_threads = 8\n\n"
                          "# Level: info, warning, error.\n# transport_log_level = info\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_UNCOMMENTED);
        ASSERT_EQ(e.line, 4);
        ASSERT_TRUE(!e.created);

        /* Then its active line is replaced, the rest kept. */
        {
                _cleanup_free_ char *again = text_set_ok(out, "worker_threads", "16", &e);
                ASSERT_STREQ(again, "# header\n\n# [restart] Threads: 1-64.\nworker_threads = 16\n\n"
                                    "# Level: info, warning, error.\n# transport_log_level = info\n");
                ASSERT_EQ(e.kind, VB_CONFIG_EDIT_REPLACED);
                ASSERT_EQ(e.line, 4);
        }
        /* The same value again changes nothing. */
        {
                _cleanup_free_ char *same = text_set_ok(out, "worker_threads", "8", &e);
                ASSERT_STREQ(same, out);
                ASSERT_EQ(e.kind, VB_CONFIG_EDIT_UNCHANGED);
        }
        free(out);

        /* The line in force (the last) is the one replaced; blanks and an
         * indented key count; a key that is a prefix of another does not match. */
        out = text_set_ok("  worker_threads=2\ncvd_port = 1\nworker_threads\t= 3\n# worker_threads = 4\n",
                          "worker_threads", "5", &e);
        ASSERT_STREQ(out, "  worker_threads=2\ncvd_port = 1\nworker_threads = 5\n# worker_threads = 4\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_REPLACED);
        ASSERT_EQ(e.line, 3);
        free(out);
        out = text_set_ok("#log_level_extra = 1\n", "log_level", "debug", &e);
        ASSERT_STREQ(out, "#log_level_extra = 1\nlog_level = debug\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_APPENDED);
        free(out);

        /* Appended: to an empty text, after a last line without a newline. */
        out = text_set_ok("", "fsync", "none", &e);
        ASSERT_STREQ(out, "fsync = none\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_APPENDED);
        ASSERT_EQ(e.line, 1);
        free(out);
        out = text_set_ok("# fsync is about disks\ncvd_port = 9000", "fsync", "none", &e);
        ASSERT_STREQ(out, "# fsync is about disks\ncvd_port = 9000\nfsync = none\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_APPENDED);
        ASSERT_EQ(e.line, 3);
        free(out);

        /* A CRLF line keeps its CR. */
        out = text_set_ok("gc_grace = 1h\r\ncvd_port = 1\r\n", "gc_grace", "2d", &e);
        ASSERT_STREQ(out, "gc_grace = 2d\r\ncvd_port = 1\r\n");
        free(out);
        out = text_set_ok("# gc_grace is a duration=time\n#gc_grace=1h\n", "gc_grace", "0s", &e);
        ASSERT_STREQ(out, "# gc_grace is a duration=time\ngc_grace = 0s\n");
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_UNCOMMENTED);
        ASSERT_EQ(e.line, 2);
        free(out);
}

TEST(config_text_set_refuses)
{
        static const char text[] = "# x\nworker_threads = 2\n";

        assert_text_set_fails(text, "worker_thread", "8", ENOENT,
                              "unknown key \"worker_thread\"; did you mean worker_threads?");
        assert_text_set_fails(text, "nothing_alike_at_all", "8", ENOENT, "unknown key \"nothing_alike_at_all\"");
        assert_text_set_fails(text, "worker_threads", "100", EINVAL,
                              "worker_threads = \"100\": out of range; allowed: 1-64");
        assert_text_set_fails(text, "chunk_size", "8M", EINVAL, "allowed: 1M-4M");
        assert_text_set_fails(text, "fsync", "sometimes", EINVAL, "allowed: always, none");
        assert_text_set_fails(text, "state_dir", "relative", EINVAL, "allowed: an absolute path");
        assert_text_set_fails(text, "state_dir", "", EINVAL, "empty value");
        assert_text_set_fails(text, "state_dir", "/a\nfsync = none", EINVAL, "control character");
        assert_text_set_fails(text, "state_dir", "/srv/x ", EINVAL, "blanks");
        /* A bad line elsewhere is reported, with its line, before anything is written. */
        assert_text_set_fails("fsync = sometimes\n", "worker_threads", "2", EINVAL,
                              "t.conf:1: fsync = \"sometimes\": not allowed");
        /* ...but the bad line of the key itself is what set repairs. */
        {
                struct vb_config_edit e;
                _cleanup_free_ char *out = text_set_ok("worker_threads = 100\n", "worker_threads", "2", &e);
                ASSERT_STREQ(out, "worker_threads = 2\n");
        }
        {
                char *out;
                size_t len;
                ASSERT_ERR(vb_config_text_set(NULL, "", 0, "fsync", "none", &out, &len, NULL, NULL), EINVAL);
                ASSERT_ERR(vb_config_text_set("t", "", 0, NULL, "none", &out, &len, NULL, NULL), EINVAL);
                ASSERT_ERR(vb_config_text_set("t", "", 0, "fsync", NULL, &out, &len, NULL, NULL), EINVAL);
        }
}

/* Counts the lines of a and b that differ (same number of lines). */
static unsigned lines_differ(const char *a, const char *b)
{
        unsigned n = 0;

        while (*a || *b) {
                size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");

                if (la != lb || memcmp(a, b, la) != 0)
                        n++;
                a += la + (a[la] == '\n');
                b += lb + (b[lb] == '\n');
        }
        return n;
}

TEST(config_file_set)
{
        _cleanup_free_ char *shipped = NULL, *path = NULL, *before = NULL, *after = NULL, *error = NULL;
        struct vb_config_edit e;
        struct vb_config c;
        struct stat st;

        if (asprintf(&path, "%s/etc/vbakd.conf", start_dir) < 0)
                abort();
        if (vb_read_file_at(AT_FDCWD, path, 1 << 20, &shipped, NULL) < 0) {
                fprintf(stderr, "%s not found, skipping\n", path);
                exit(EXIT_TEST_SKIP);
        }

        /* On the shipped file: one line changes per key set. */
        write_text("vbakd.conf", shipped);
        ASSERT_OK(chmod("vbakd.conf", 0600));
        ASSERT_OK(vb_config_file_set("vbakd.conf", "worker_threads", "8", &e, NULL));
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_UNCOMMENTED);
        ASSERT_TRUE(!e.created);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "vbakd.conf", 1 << 20, &after, NULL));
        ASSERT_EQ(lines_differ(shipped, after), 1);
        ASSERT_TRUE(strstr(after, "\nworker_threads = 8\n") != NULL);
        ASSERT_TRUE(strstr(after, "\n# worker_threads = 4\n") == NULL);
        ASSERT_OK(stat("vbakd.conf", &st));
        ASSERT_EQ(st.st_mode & 07777, 0600);
        ASSERT_OK(vb_config_file_set("vbakd.conf", "gc_grace", "2h", &e, NULL));
        before = TAKE_PTR(after);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "vbakd.conf", 1 << 20, &after, NULL));
        ASSERT_EQ(lines_differ(before, after), 1);
        ASSERT_EQ(lines_differ(shipped, after), 2);
        ASSERT_OK(vb_config_init_defaults(&c));
        ASSERT_OK(vb_config_load(&c, "vbakd.conf", NULL));
        ASSERT_EQ(c.worker_threads, 8);
        ASSERT_UEQ(c.gc_grace, 7200);
        vb_config_free(&c);

        /* Refused: the file stays byte for byte, and no temp file is left. */
        ASSERT_ERR(vb_config_file_set("vbakd.conf", "worker_threads", "0", NULL, &error), EINVAL);
        ASSERT_TRUE(error && strstr(error, "allowed: 1-64"));
        ASSERT_ERR(vb_config_file_set("vbakd.conf", "no_such_key", "0", NULL, NULL), ENOENT);
        free(before);
        before = NULL;
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "vbakd.conf", 1 << 20, &before, NULL));
        ASSERT_STREQ(before, after);

        /* A missing file is created, 0644 whatever the umask. */
        umask(0077);
        ASSERT_OK(vb_config_file_set("new.conf", "cvd_port", "9000", &e, NULL));
        ASSERT_TRUE(e.created);
        ASSERT_EQ(e.kind, VB_CONFIG_EDIT_APPENDED);
        ASSERT_OK(stat("new.conf", &st));
        ASSERT_EQ(st.st_mode & 07777, 0644);
        free(after);
        after = NULL;
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "new.conf", 1 << 20, &after, NULL));
        ASSERT_STREQ(after, "cvd_port = 9000\n");

        /* ...in a directory that exists. */
        free(error);
        error = NULL;
        ASSERT_ERR(vb_config_file_set("nodir/new.conf", "cvd_port", "9000", NULL, &error), ENOENT);
        ASSERT_TRUE(error && strstr(error, "directory nodir does not exist"));

        /* A symlink stays one; its target changes. */
        ASSERT_OK(symlink("new.conf", "link.conf"));
        ASSERT_OK(vb_config_file_set("link.conf", "cvd_port", "9001", NULL, NULL));
        ASSERT_OK(lstat("link.conf", &st));
        ASSERT_TRUE(S_ISLNK(st.st_mode));
        free(after);
        after = NULL;
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "new.conf", 1 << 20, &after, NULL));
        ASSERT_STREQ(after, "cvd_port = 9001\n");

        /* Nothing but the files above is in the directory. */
        {
                DIR *d = opendir(".");
                struct dirent *de;
                ASSERT_TRUE(d != NULL);
                while ((de = readdir(d)))
                        ASSERT_TRUE(!strstr(de->d_name, ".tmp-"));
                closedir(d);
        }
}
