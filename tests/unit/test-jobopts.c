/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-jobopts.c -- tests for daemon/jobopts.c: every option of product §2
 * with its default and range (written out here from the product text, not
 * read from the table), both ends of every range and one past each, every
 * choice, every unit of sizes and durations, the JSON form (unknown keys,
 * wrong types, null, partial updates, round trips), the rules between
 * options, the help text and docs/job-options.md staying in step with the
 * table.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/jobopts.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

/* The directory the runner started in (the repository root under make). */
static char start_dir[PATH_MAX];

__attribute__((constructor)) static void remember_start_dir(void)
{
        if (!getcwd(start_dir, sizeof(start_dir)))
                start_dir[0] = 0;
}

/* The product's options (product.md §2): key, default, the range's ends as
 * accepted text and their canonical form, and one past each end (NULL: no
 * value below the minimum exists in that syntax). */
static const struct expect {
        const char *key, *def;
        const char *min, *max;
        const char *min_canon, *max_canon;
        const char *below, *above;
} numeric[] = {
        { "compression_level", "none", "1", "19", "1", "19", "0", "20" },
        { "parallel_vms", "2", "1", "32", "1", "32", "0", "33" },
        { "parallel_vms_per_host", "2", "1", "10", "1", "10", "0", "11" },
        { "parallel_disks", "1", "1", "5", "1", "5", "0", "6" },
        { "streams_per_disk", "1", "1", "5", "1", "5", "0", "6" },
        { "min_free_percent", "10%", "0%", "100%", "0%", "100%", "-1", "101%" },
        { "min_free_bytes", "500G", "0", "1024T", "0", "1024T", "-1", "1125899906842625" },
        { "reconnect_window", "10m", "1m", "60m", "1m", "1h", "59s", "3601s" },
        { "resume_buffer", "10M", "1M", "1G", "1M", "1G", "1048575", "1073741825" },
        { "script_timeout", "1h", "1s", "24h", "1s", "24h", "0s", "86401s" },
        { "read_buffer", "1M", "64K", "8M", "64K", "8M", "32K", "16M" },
        { "network_timeout", "10m", "1m", "10m", "1m", "10m", "59s", "601s" },
        { "retries", "3", "0", "10", "0", "10", "-1", "11" },
        { "retry_interval", "10m", "0m", "120m", "0m", "2h", "-1s", "7201s" },
};

static const struct choice {
        const char *key, *def;
        const char *values[5];
} choices[] = {
        { "compression", "fast", { "none", "fast", "adjustable" } },
        { "dedup_mode", "source-side", { "source-side", "server-side" } },
        { "non_cbt_vm", "full", { "full", "fail", "skip" } },
        { "network", "adaptive", { "adaptive", "backup", "storage", "management" } },
        { "transport_log_level", "info", { "info", "warning", "error" } },
        { "snapshot", "adaptive", { "adaptive", "external", "internal" } },
        { "cbt", "on", { "on", "off" } },
        { "shutdown_for_backup", "off", { "on", "off" } },
        { "valid_data_only", "on", { "on", "off" } },
        { "quiesce", "on", { "on", "off" } },
};

static const char *const texts[] = { "transfer_rate", "disk_read_rate", "precondition", "pre_script", "post_script" };

static const char *get(const vb_jobopts *o, const char *key, char *buf, size_t size)
{
        const vb_jobopt *k = vb_jobopt_find(key);

        if (!k)
                TEST_FAIL_("no option %s", key);
        ASSERT_OK(vb_jobopts_format(o, k, buf, size));
        return buf;
}

static void assert_value(const vb_jobopts *o, const char *key, const char *want)
{
        char buf[VB_JOBOPTS_TEXT_MAX];

        if (!streq(get(o, key, buf, sizeof(buf)), want))
                TEST_FAIL_("%s is \"%s\", expected \"%s\"", key, buf, want);
}

static void set_ok(vb_jobopts *o, const char *key, const char *value)
{
        _cleanup_free_ char *err = NULL;
        int r = vb_jobopts_set(o, key, value, &err);

        if (r < 0)
                TEST_FAIL_("set %s=\"%s\": %d %s", key, value, r, err ? err : "(no message)");
        ASSERT_TRUE(err == NULL);
}

/* Asserts that a message starts with "KEY: " and holds every one of the
 * NULL-terminated fragments. */
static void assert_message_v(const char *what, const char *err, const char *key, va_list ap)
{
        const char *frag;

        if (!err)
                TEST_FAIL_("%s: no message", what);
        if (strncmp(err, key, strlen(key)) != 0 || strncmp(err + strlen(key), ": ", 2) != 0)
                TEST_FAIL_("%s: message \"%s\" does not start with \"%s: \"", what, err, key);
        while ((frag = va_arg(ap, const char *)))
                if (!strstr(err, frag))
                        TEST_FAIL_("%s: message \"%s\" lacks \"%s\"", what, err, frag);
}

/* Asserts that setting key to value fails with -error, leaves o as it was,
 * and says why in a message starting with the key that holds every
 * fragment. */
static void set_fails(vb_jobopts *o, const char *key, const char *value, int error, ...)
{
        _cleanup_free_ char *err = NULL;
        vb_jobopts before = *o;
        char what[256];
        va_list ap;

        snprintf(what, sizeof(what), "set %s=\"%s\"", key, value);
        ASSERT_ERR(vb_jobopts_set(o, key, value, &err), error);
        ASSERT_TRUE(vb_jobopts_equal(o, &before));
        va_start(ap, error);
        assert_message_v(what, err, key, ap);
        va_end(ap);
}

static json_t *parse_json(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);

        if (!j)
                TEST_FAIL_("bad test JSON %s: %s", text, e.text);
        return j;
}

static void json_ok(vb_jobopts *o, const char *text)
{
        _cleanup_free_ char *err = NULL;
        json_t *j = parse_json(text);
        int r = vb_jobopts_from_json(o, j, &err);

        json_decref(j);
        if (r < 0)
                TEST_FAIL_("from_json %s: %d %s", text, r, err ? err : "(no message)");
}

/* As set_fails(), for a JSON object. */
static void json_fails(vb_jobopts *o, const char *text, int error, const char *key, ...)
{
        _cleanup_free_ char *err = NULL;
        vb_jobopts before = *o;
        json_t *j = parse_json(text);
        char what[256];
        va_list ap;

        snprintf(what, sizeof(what), "from_json %s", text);
        ASSERT_ERR(vb_jobopts_from_json(o, j, &err), error);
        json_decref(j);
        ASSERT_TRUE(vb_jobopts_equal(o, &before));
        va_start(ap, key);
        assert_message_v(what, err, key, ap);
        va_end(ap);
}

static void check_fails(const vb_jobopts *o, const char *key, ...)
{
        _cleanup_free_ char *err = NULL;
        va_list ap;

        ASSERT_ERR(vb_jobopts_check(o, &err), EINVAL);
        va_start(ap, key);
        assert_message_v("check", err, key, ap);
        va_end(ap);
}

TEST(jobopts_table_is_the_product)
{
        size_t n = ELEMENTSOF(numeric) + ELEMENTSOF(choices) + ELEMENTSOF(texts);

        /* Every option of the product is in the table, and nothing else. */
        ASSERT_EQ(vb_jobopts_n, n);
        for (size_t i = 0; i < ELEMENTSOF(numeric); i++)
                ASSERT_TRUE(vb_jobopt_find(numeric[i].key) != NULL);
        for (size_t i = 0; i < ELEMENTSOF(choices); i++)
                ASSERT_TRUE(vb_jobopt_find(choices[i].key) != NULL);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                ASSERT_TRUE(vb_jobopt_find(texts[i]) != NULL);
        ASSERT_TRUE(vb_jobopt_find("parallel_vmz") == NULL);
        ASSERT_TRUE(vb_jobopt_find("type") == NULL); /* the backup type is the job's, not an option */
        ASSERT_TRUE(vb_jobopt_find(NULL) == NULL);

        for (size_t i = 0; i < vb_jobopts_n; i++) {
                const vb_jobopt *k = &vb_jobopts_table[i];

                ASSERT_TRUE(k->key && k->key[0] && k->description && k->description[0] && k->def);
                for (const char *p = k->key; *p; p++)
                        ASSERT_TRUE((*p >= 'a' && *p <= 'z') || *p == '_');
                ASSERT_TRUE(!strchr(k->description, '\n'));
                for (size_t j = 0; j < i; j++)
                        ASSERT_TRUE(!streq(k->key, vb_jobopts_table[j].key));
        }
}

TEST(jobopts_defaults_are_the_product)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        ASSERT_OK(vb_jobopts_check(&o, NULL));
        for (size_t i = 0; i < ELEMENTSOF(numeric); i++)
                assert_value(&o, numeric[i].key, numeric[i].def);
        for (size_t i = 0; i < ELEMENTSOF(choices); i++)
                assert_value(&o, choices[i].key, choices[i].def);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                assert_value(&o, texts[i], "none");

        /* The members themselves, in their units. */
        ASSERT_EQ(o.compression, VB_JOB_COMPRESSION_FAST);
        ASSERT_EQ(o.compression_level, 0);
        ASSERT_EQ(o.dedup_mode, VB_JOB_DEDUP_SOURCE);
        ASSERT_EQ(o.parallel_vms, 2);
        ASSERT_EQ(o.parallel_vms_per_host, 2);
        ASSERT_EQ(o.parallel_disks, 1);
        ASSERT_EQ(o.streams_per_disk, 1);
        ASSERT_EQ(o.min_free_percent, 10);
        ASSERT_UEQ(o.min_free_bytes, 500 * GiB);
        ASSERT_TRUE(o.cbt);
        ASSERT_EQ(o.non_cbt_vm, VB_JOB_NON_CBT_FULL);
        ASSERT_EQ(o.network, VB_JOB_NETWORK_ADAPTIVE);
        ASSERT_TRUE(!o.shutdown_for_backup);
        ASSERT_TRUE(o.valid_data_only);
        ASSERT_UEQ(o.reconnect_window, 600);
        ASSERT_UEQ(o.resume_buffer, 10 * MiB);
        ASSERT_STREQ(o.transfer_rate, "");
        ASSERT_STREQ(o.disk_read_rate, "");
        ASSERT_STREQ(o.precondition, "");
        ASSERT_STREQ(o.pre_script, "");
        ASSERT_STREQ(o.post_script, "");
        ASSERT_UEQ(o.script_timeout, 3600);
        ASSERT_UEQ(o.read_buffer, 1 * MiB);
        ASSERT_EQ(o.transport_log_level, LOG_INFO);
        ASSERT_UEQ(o.network_timeout, 600);
        ASSERT_EQ(o.snapshot, VB_SNAPSHOT_ADAPTIVE);
        ASSERT_EQ(o.retries, 3);
        ASSERT_UEQ(o.retry_interval, 600);
        ASSERT_TRUE(o.quiesce);
        ASSERT_EQ(vb_jobopts_compression_level(&o), 1);
        ASSERT_EQ(vb_jobopts_connections_per_disk(&o), 1);

        /* The table's default texts are canonical: what format shows. */
        for (size_t i = 0; i < vb_jobopts_n; i++)
                assert_value(&o, vb_jobopts_table[i].key, vb_jobopts_table[i].def);
}

TEST(jobopts_range_ends)
{
        for (size_t i = 0; i < ELEMENTSOF(numeric); i++) {
                const struct expect *e = &numeric[i];
                const vb_jobopt *k = vb_jobopt_find(e->key);
                const char *why = k->flags & VB_JOBOPT_POW2 ? "is not one of" : "is out of range";
                vb_jobopts o;
                char range[256];

                vb_jobopts_defaults(&o);
                ASSERT_TRUE(vb_jobopt_format_range(k, range, sizeof(range)) > 0);
                set_ok(&o, e->key, e->min);
                assert_value(&o, e->key, e->min_canon);
                set_ok(&o, e->key, e->max);
                assert_value(&o, e->key, e->max_canon);
                set_fails(&o, e->key, e->below, EINVAL, why, range, NULL);
                set_fails(&o, e->key, e->above, EINVAL, why, range, NULL);
        }
}

TEST(jobopts_range_messages)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        set_fails(&o, "parallel_vms", "40", EINVAL, NULL);
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_ERR(vb_jobopts_set(&o, "parallel_vms", "40", &err), EINVAL);
                ASSERT_STREQ(err, "parallel_vms: 40 is out of range (1-32)");
        }
        set_fails(&o, "parallel_vms_per_host", "11", EINVAL, "11 is out of range (1-10)", NULL);
        set_fails(&o, "reconnect_window", "2h", EINVAL, "2h is out of range (1m-60m)", NULL);
        set_fails(&o, "network_timeout", "30s", EINVAL, "30s is out of range (1m-10m)", NULL);
        set_fails(&o, "retry_interval", "3h", EINVAL, "3h is out of range (0m-120m)", NULL);
        set_fails(&o, "min_free_percent", "150%", EINVAL, "150% is out of range (0%-100%)", NULL);
        set_fails(&o, "read_buffer", "3M", EINVAL, "3M is not one of 64K, 128K, 256K, 512K, 1M, 2M, 4M, 8M", NULL);
        set_fails(&o, "read_buffer", "65537", EINVAL, "is not one of", NULL);
        set_fails(&o, "retries", "99999999999999999999999", EINVAL, "is out of range (0-10)", NULL);
        set_fails(&o, "compression_level", "-3", EINVAL, "-3 is out of range (1-19, or none)", NULL);
        /* Without a value, or an unknown key. */
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_ERR(vb_jobopts_set(&o, "parallel_vmz", "2", &err), ENOENT);
                ASSERT_STREQ(err, "parallel_vmz: unknown option");
        }
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_ERR(vb_jobopts_set(&o, "parallel_vms", NULL, &err), EINVAL);
                ASSERT_STREQ(err, "parallel_vms: no value");
        }
        /* A key with control characters is shown tamed. */
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_ERR(vb_jobopts_set(&o, "a\nb", "2", &err), ENOENT);
                ASSERT_STREQ(err, "a?b: unknown option");
        }
        /* No err pointer: the same results. */
        ASSERT_ERR(vb_jobopts_set(&o, "parallel_vms", "40", NULL), EINVAL);
        ASSERT_OK(vb_jobopts_set(&o, "parallel_vms", "4", NULL));
        ASSERT_EQ(o.parallel_vms, 4);
}

TEST(jobopts_numbers)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        set_ok(&o, "parallel_vms", "17");
        ASSERT_EQ(o.parallel_vms, 17);
        set_ok(&o, "parallel_vms", "007");
        ASSERT_EQ(o.parallel_vms, 7);
        set_fails(&o, "parallel_vms", "abc", EINVAL, "'abc' is not a whole number", NULL);
        set_fails(&o, "parallel_vms", "1.5", EINVAL, "not a whole number", NULL);
        set_fails(&o, "parallel_vms", "+3", EINVAL, "not a whole number", NULL);
        set_fails(&o, "parallel_vms", " 3", EINVAL, "not a whole number", NULL);
        set_fails(&o, "parallel_vms", "", EINVAL, "not a whole number", NULL);
        set_fails(&o, "retries", "3\n", EINVAL, "control character", NULL);

        /* Percentages, with or without the sign. */
        set_ok(&o, "min_free_percent", "15");
        ASSERT_EQ(o.min_free_percent, 15);
        set_ok(&o, "min_free_percent", "20%");
        ASSERT_EQ(o.min_free_percent, 20);
        set_ok(&o, "min_free_percent", "25 %");
        ASSERT_EQ(o.min_free_percent, 25);
        set_ok(&o, "min_free_percent", "0");
        ASSERT_EQ(o.min_free_percent, 0);
        set_fails(&o, "min_free_percent", "10%%", EINVAL, "not a percentage", NULL);
        set_fails(&o, "min_free_percent", "%", EINVAL, "not a percentage", NULL);
        set_fails(&o, "min_free_percent", "ten", EINVAL, "not a percentage", NULL);

        /* compression_level: none unsets it, 0 is no level. */
        set_ok(&o, "compression_level", "12");
        ASSERT_EQ(o.compression_level, 12);
        set_ok(&o, "compression_level", "none");
        ASSERT_EQ(o.compression_level, 0);
        assert_value(&o, "compression_level", "none");
        set_ok(&o, "compression_level", "12");
        set_ok(&o, "compression_level", "");
        ASSERT_EQ(o.compression_level, 0);
        set_fails(&o, "compression_level", "0", EINVAL, "0 is out of range", NULL);
        /* Only optional rows take none. */
        set_fails(&o, "parallel_vms", "none", EINVAL, "not a whole number", NULL);
}

TEST(jobopts_sizes)
{
        static const struct {
                const char *key, *text;
                uint64_t bytes;
        } ok[] = {
                { "resume_buffer", "1048576", 1 * MiB },    { "resume_buffer", "1048576B", 1 * MiB },
                { "resume_buffer", "2048K", 2 * MiB },      { "resume_buffer", "3072KiB", 3 * MiB },
                { "resume_buffer", "10M", 10 * MiB },       { "resume_buffer", "20MiB", 20 * MiB },
                { "resume_buffer", "30 MiB", 30 * MiB },    { "resume_buffer", "1G", 1 * GiB },
                { "resume_buffer", "1GiB", 1 * GiB },       { "min_free_bytes", "500G", 500 * GiB },
                { "min_free_bytes", "400 GiB", 400 * GiB }, { "min_free_bytes", "2T", 2 * TiB },
                { "min_free_bytes", "3TiB", 3 * TiB },      { "min_free_bytes", "0", 0 },
                { "min_free_bytes", "12345", 12345 },       { "read_buffer", "64KiB", 64 * KiB },
                { "read_buffer", "131072", 128 * KiB },     { "read_buffer", "256K", 256 * KiB },
                { "read_buffer", "512K", 512 * KiB },       { "read_buffer", "2M", 2 * MiB },
                { "read_buffer", "4MiB", 4 * MiB },         { "read_buffer", "8M", 8 * MiB },
        };
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                const vb_jobopt *k = vb_jobopt_find(ok[i].key);

                set_ok(&o, ok[i].key, ok[i].text);
                ASSERT_UEQ(*(const uint64_t *)((const char *)&o + k->offset), ok[i].bytes);
        }
        assert_value(&o, "min_free_bytes", "12345");
        set_ok(&o, "min_free_bytes", "1536M");
        assert_value(&o, "min_free_bytes", "1536M");
        set_ok(&o, "min_free_bytes", "1048576K");
        assert_value(&o, "min_free_bytes", "1G");

        set_fails(&o, "resume_buffer", "10MB", EINVAL, "'10MB' is not a size", NULL);
        set_fails(&o, "resume_buffer", "1.5G", EINVAL, "not a size", NULL);
        set_fails(&o, "resume_buffer", "M", EINVAL, "not a size", NULL);
        set_fails(&o, "resume_buffer", "10 M B", EINVAL, "not a size", NULL);
        set_fails(&o, "resume_buffer", "lots", EINVAL, "not a size", NULL);
        set_fails(&o, "min_free_bytes", "99999999999T", EINVAL, "out of range", NULL);
}

TEST(jobopts_durations)
{
        static const struct {
                const char *text;
                uint64_t seconds;
        } ok[] = {
                { "90s", 90 },   { "1s", 1 },     { "10m", 600 },   { "10min", 600 }, { "1h", 3600 },
                { "2 h", 7200 }, { "1d", 86400 }, { "24h", 86400 }, { "150m", 9000 }, { "3599s", 3599 },
        };
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                set_ok(&o, "script_timeout", ok[i].text);
                ASSERT_UEQ(o.script_timeout, ok[i].seconds);
        }
        /* Canonical: the largest exact unit up to hours. */
        set_ok(&o, "script_timeout", "90s");
        assert_value(&o, "script_timeout", "90s");
        set_ok(&o, "script_timeout", "120s");
        assert_value(&o, "script_timeout", "2m");
        set_ok(&o, "script_timeout", "1d");
        assert_value(&o, "script_timeout", "24h");
        set_ok(&o, "retry_interval", "0s");
        assert_value(&o, "retry_interval", "0m");
        ASSERT_UEQ(o.retry_interval, 0);

        /* A bare number could be seconds or minutes: refused. */
        set_fails(&o, "retry_interval", "10", EINVAL, "'10' needs a unit (like 90s, 10m, 1h)", NULL);
        set_fails(&o, "script_timeout", "1w", EINVAL, "out of range (1s-24h)", NULL);
        set_fails(&o, "script_timeout", "1.5h", EINVAL, "'1.5h' is not a duration", NULL);
        set_fails(&o, "script_timeout", "10x", EINVAL, "not a duration", NULL);
        set_fails(&o, "script_timeout", "h", EINVAL, "not a duration", NULL);
        /* Minute rows take any second within range. */
        set_ok(&o, "reconnect_window", "90s");
        ASSERT_UEQ(o.reconnect_window, 90);
        assert_value(&o, "reconnect_window", "90s");
        set_ok(&o, "network_timeout", "150s");
        ASSERT_UEQ(o.network_timeout, 150);
        set_ok(&o, "network_timeout", "600s");
        assert_value(&o, "network_timeout", "10m");
        set_fails(&o, "network_timeout", "1h", EINVAL, "1h is out of range (1m-10m)", NULL);
}

TEST(jobopts_choices)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        for (size_t i = 0; i < ELEMENTSOF(choices); i++) {
                const struct choice *c = &choices[i];
                char range[256] = "";

                for (size_t v = 0; v < ELEMENTSOF(c->values) && c->values[v]; v++) {
                        set_ok(&o, c->key, c->values[v]);
                        assert_value(&o, c->key, c->values[v]);
                        snprintf(range + strlen(range), sizeof(range) - strlen(range), "%s%s", v ? ", " : "",
                                 c->values[v]);
                }
                /* The range lists exactly the product's values. */
                {
                        char have[256];

                        ASSERT_TRUE(vb_jobopt_format_range(vb_jobopt_find(c->key), have, sizeof(have)) > 0);
                        ASSERT_STREQ(have, range);
                }
                set_fails(&o, c->key, "bogus", EINVAL, "'bogus' is not", NULL);
                set_fails(&o, c->key, "", EINVAL, "is not", NULL);
        }

        /* The members get the right values. */
        set_ok(&o, "compression", "none");
        ASSERT_EQ(o.compression, VB_JOB_COMPRESSION_NONE);
        ASSERT_EQ(vb_jobopts_compression_level(&o), 0);
        set_ok(&o, "dedup_mode", "server-side");
        ASSERT_EQ(o.dedup_mode, VB_JOB_DEDUP_SERVER);
        set_ok(&o, "dedup_mode", "source");
        ASSERT_EQ(o.dedup_mode, VB_JOB_DEDUP_SOURCE);
        set_ok(&o, "dedup_mode", "server");
        assert_value(&o, "dedup_mode", "server-side");
        set_ok(&o, "non_cbt_vm", "fail");
        ASSERT_EQ(o.non_cbt_vm, VB_JOB_NON_CBT_FAIL);
        set_ok(&o, "non_cbt_vm", "skip");
        ASSERT_EQ(o.non_cbt_vm, VB_JOB_NON_CBT_SKIP);
        set_ok(&o, "network", "management");
        ASSERT_EQ(o.network, VB_JOB_NETWORK_MANAGEMENT);
        set_ok(&o, "network", "Storage");
        ASSERT_EQ(o.network, VB_JOB_NETWORK_STORAGE);
        set_ok(&o, "transport_log_level", "warning");
        ASSERT_EQ(o.transport_log_level, LOG_WARNING);
        set_ok(&o, "transport_log_level", "error");
        ASSERT_EQ(o.transport_log_level, LOG_ERR);
        set_ok(&o, "snapshot", "external");
        ASSERT_EQ(o.snapshot, VB_SNAPSHOT_EXTERNAL);
        set_ok(&o, "snapshot", "internal");
        ASSERT_EQ(o.snapshot, VB_SNAPSHOT_INTERNAL);
        set_fails(&o, "network", "vswitch0", EINVAL,
                  "network: 'vswitch0' is not one of adaptive, backup, storage, management", NULL);
        set_fails(&o, "transport_log_level", "debug", EINVAL, "is not one of info, warning, error", NULL);
}

TEST(jobopts_booleans)
{
        static const char *const yes[] = { "on", "true", "yes", "1", "ON", "True" };
        static const char *const no[] = { "off", "false", "no", "0", "OFF", "False" };
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                set_ok(&o, "shutdown_for_backup", yes[i]);
                ASSERT_TRUE(o.shutdown_for_backup);
                set_ok(&o, "shutdown_for_backup", no[i]);
                ASSERT_TRUE(!o.shutdown_for_backup);
        }
        set_ok(&o, "cbt", "off");
        ASSERT_TRUE(!o.cbt);
        set_ok(&o, "valid_data_only", "off");
        ASSERT_TRUE(!o.valid_data_only);
        set_ok(&o, "quiesce", "off");
        ASSERT_TRUE(!o.quiesce);
        assert_value(&o, "quiesce", "off");
        set_fails(&o, "cbt", "maybe", EINVAL, "'maybe' is not on or off", NULL);
        set_fails(&o, "cbt", "2", EINVAL, "not on or off", NULL);
        set_fails(&o, "cbt", "", EINVAL, "not on or off", NULL);
}

TEST(jobopts_rates)
{
        static const char *const keys[] = { "transfer_rate", "disk_read_rate" };
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *key = keys[i];

                set_ok(&o, key, "mon-fri 08:00-18:00 50MiB/s; 22:00-06:00 1GiB/s");
                assert_value(&o, key, "mon-fri 08:00-18:00 50MiB/s; 22:00-06:00 1GiB/s");
                /* Kept as canonical text. */
                set_ok(&o, key, "MON-FRI 08:00-18:00 51200KiB/s");
                assert_value(&o, key, "mon-fri 08:00-18:00 50MiB/s");
                set_ok(&o, key, "20 MiB/s");
                assert_value(&o, key, "20MiB/s");
                set_ok(&o, key, "none");
                assert_value(&o, key, "none");
                set_ok(&o, key, "512KiB/s");
                set_ok(&o, key, "unlimited");
                assert_value(&o, key, "none");
                set_ok(&o, key, "512KiB/s");
                set_ok(&o, key, "");
                assert_value(&o, key, "none");
                set_fails(&o, key, "mon-fri 8h 50MiB/s", EINVAL, "'mon-fri 8h 50MiB/s': position", NULL);
                set_fails(&o, key, "50 parsecs", EINVAL, "position", NULL);
                set_fails(&o, key, "0MiB/s", EINVAL, "position", NULL);
        }
        set_ok(&o, "transfer_rate", "sat,sun 200MiB/s");
        ASSERT_STREQ(o.transfer_rate, "sat,sun 200MiB/s");
        ASSERT_STREQ(o.disk_read_rate, "");
        ASSERT_OK(vb_jobopts_check(&o, NULL));
}

TEST(jobopts_commands)
{
        char longest[VB_JOBOPTS_TEXT_MAX + 1];
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        set_ok(&o, "precondition", "test -e /run/backup-window");
        ASSERT_STREQ(o.precondition, "test -e /run/backup-window");
        set_ok(&o, "pre_script", "/usr/local/bin/app-freeze --all");
        ASSERT_STREQ(o.pre_script, "/usr/local/bin/app-freeze --all");
        set_ok(&o, "post_script", "logger 'backup done'");
        assert_value(&o, "post_script", "logger 'backup done'");
        set_ok(&o, "post_script", "none");
        ASSERT_STREQ(o.post_script, "");
        set_ok(&o, "pre_script", "");
        ASSERT_STREQ(o.pre_script, "");
        set_ok(&o, "pre_script", "   ");
        ASSERT_STREQ(o.pre_script, "");
        set_fails(&o, "precondition", "true\nrm -rf /", EINVAL, "control character", NULL);
        set_fails(&o, "precondition", "a\tb", EINVAL, "control character", NULL);

        memset(longest, 'x', sizeof(longest));
        longest[VB_JOBOPTS_TEXT_MAX - 1] = 0;
        set_ok(&o, "pre_script", longest);
        ASSERT_EQ(strlen(o.pre_script), VB_JOBOPTS_TEXT_MAX - 1);
        longest[VB_JOBOPTS_TEXT_MAX - 1] = 'x';
        longest[VB_JOBOPTS_TEXT_MAX] = 0;
        set_fails(&o, "pre_script", longest, EINVAL, "too long (at most 1023 bytes)", NULL);
        ASSERT_OK(vb_jobopts_check(&o, NULL));
}

TEST(jobopts_json_values)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        /* Numbers as JSON integers (bytes, seconds) or as text. */
        json_ok(&o, "{\"parallel_vms\": 8, \"min_free_bytes\": 1073741824, \"reconnect_window\": 120,"
                    " \"min_free_percent\": 5, \"retries\": \"4\", \"resume_buffer\": \"64M\","
                    " \"network_timeout\": \"5m\", \"read_buffer\": 2097152}");
        ASSERT_EQ(o.parallel_vms, 8);
        ASSERT_UEQ(o.min_free_bytes, 1 * GiB);
        ASSERT_UEQ(o.reconnect_window, 120);
        ASSERT_EQ(o.min_free_percent, 5);
        ASSERT_EQ(o.retries, 4);
        ASSERT_UEQ(o.resume_buffer, 64 * MiB);
        ASSERT_UEQ(o.network_timeout, 300);
        ASSERT_UEQ(o.read_buffer, 2 * MiB);
        /* Booleans as JSON booleans or text; choices, schedules and commands as text. */
        json_ok(&o, "{\"cbt\": false, \"quiesce\": \"off\", \"network\": \"backup\","
                    " \"transfer_rate\": \"22:00-06:00 1GiB/s\", \"post_script\": \"sync\"}");
        ASSERT_TRUE(!o.cbt);
        ASSERT_TRUE(!o.quiesce);
        ASSERT_EQ(o.network, VB_JOB_NETWORK_BACKUP);
        ASSERT_STREQ(o.transfer_rate, "22:00-06:00 1GiB/s");
        ASSERT_STREQ(o.post_script, "sync");
        /* An empty object changes nothing. */
        {
                vb_jobopts before = o;

                json_ok(&o, "{}");
                ASSERT_TRUE(vb_jobopts_equal(&o, &before));
        }
        /* Out of range, by JSON number. */
        json_fails(&o, "{\"parallel_vms\": 40}", EINVAL, "parallel_vms", "40 is out of range (1-32)", NULL);
        json_fails(&o, "{\"retries\": -1}", EINVAL, "retries", "-1 is out of range (0-10)", NULL);
        json_fails(&o, "{\"reconnect_window\": 30}", EINVAL, "reconnect_window", "30 is out of range (1m-60m)", NULL);
        json_fails(&o, "{\"min_free_percent\": 101}", EINVAL, "min_free_percent", "out of range", NULL);
        json_fails(&o, "{\"compression_level\": 0}", EINVAL, "compression_level", "out of range", NULL);
        json_fails(&o, "{\"read_buffer\": 1000000}", EINVAL, "read_buffer", "is not one of", NULL);
        json_fails(&o, "{\"parallel_vms\": 9223372036854775807}", EINVAL, "parallel_vms", "out of range", NULL);
        json_fails(&o, "{\"network\": \"wifi\"}", EINVAL, "network", "'wifi' is not one of", NULL);
}

TEST(jobopts_json_errors)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        /* Unknown keys. */
        json_fails(&o, "{\"parallel_vmz\": 3}", ENOENT, "parallel_vmz", "unknown option", NULL);
        json_fails(&o, "{\"parallel_vms\": 3, \"type\": \"full\"}", ENOENT, "type", "unknown option", NULL);
        /* Wrong types. */
        json_fails(&o, "{\"parallel_vms\": [1]}", EINVAL, "parallel_vms",
                   "expected a whole number or a string, got an array", NULL);
        json_fails(&o, "{\"parallel_vms\": {}}", EINVAL, "parallel_vms", "got an object", NULL);
        json_fails(&o, "{\"parallel_vms\": true}", EINVAL, "parallel_vms", "got a boolean", NULL);
        json_fails(&o, "{\"parallel_vms\": 2.5}", EINVAL, "parallel_vms", "2.5 is not a whole number", NULL);
        json_fails(&o, "{\"min_free_bytes\": 1e12}", EINVAL, "min_free_bytes", "not a whole number", NULL);
        json_fails(&o, "{\"cbt\": 1}", EINVAL, "cbt", "expected true or false, got a number", NULL);
        json_fails(&o, "{\"cbt\": \"sometimes\"}", EINVAL, "cbt", "not on or off", NULL);
        json_fails(&o, "{\"network\": 2}", EINVAL, "network", "expected a string, got a number", NULL);
        json_fails(&o, "{\"snapshot\": false}", EINVAL, "snapshot", "expected a string, got a boolean", NULL);
        json_fails(&o, "{\"pre_script\": [\"a\"]}", EINVAL, "pre_script", "expected a string, got an array", NULL);
        json_fails(&o, "{\"transfer_rate\": 1048576}", EINVAL, "transfer_rate", "expected a string", NULL);
        json_fails(&o, "{\"retry_interval\": \"10\"}", EINVAL, "retry_interval", "needs a unit", NULL);
        /* A string with a NUL inside. */
        {
                _cleanup_free_ char *err = NULL;
                json_t *j = json_object();

                ASSERT_OK(json_object_set_new(j, "pre_script", json_stringn("ls\0rm", 5)));
                ASSERT_ERR(vb_jobopts_from_json(&o, j, &err), EINVAL);
                json_decref(j);
                ASSERT_TRUE(err && strncmp(err, "pre_script: ", 12) == 0);
                ASSERT_STREQ(o.pre_script, "");
        }
        /* Not an object at all. */
        {
                _cleanup_free_ char *err = NULL;
                json_t *j = json_array();

                ASSERT_ERR(vb_jobopts_from_json(&o, j, &err), EINVAL);
                json_decref(j);
                ASSERT_STREQ(err, "options: expected an object, got an array");
        }
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_ERR(vb_jobopts_from_json(&o, NULL, &err), EINVAL);
                ASSERT_TRUE(err != NULL);
        }
        /* All or nothing: the good keys before a bad one are not applied. */
        json_fails(&o, "{\"retries\": 5, \"parallel_disks\": 4, \"parallel_vms\": 40}", EINVAL, "parallel_vms", NULL);
        ASSERT_EQ(o.retries, 3);
        ASSERT_EQ(o.parallel_disks, 1);
}

TEST(jobopts_json_null_and_partial)
{
        vb_jobopts o, before, defaults;

        vb_jobopts_defaults(&defaults);
        o = defaults;
        json_ok(&o, "{\"parallel_vms\": 7, \"pre_script\": \"echo hi\", \"disk_read_rate\": \"100MiB/s\","
                    " \"network\": \"storage\", \"retry_interval\": \"1h\", \"quiesce\": false}");
        ASSERT_TRUE(!vb_jobopts_equal(&o, &defaults));

        /* Partial: only the keys given change. */
        before = o;
        json_ok(&o, "{\"retries\": 5}");
        ASSERT_EQ(o.retries, 5);
        before.retries = 5;
        ASSERT_TRUE(vb_jobopts_equal(&o, &before));
        ASSERT_EQ(o.parallel_vms, 7);
        ASSERT_STREQ(o.pre_script, "echo hi");

        /* null: back to the default, whatever the type. */
        json_ok(&o, "{\"parallel_vms\": null, \"pre_script\": null, \"disk_read_rate\": null, \"network\": null,"
                    " \"retry_interval\": null, \"quiesce\": null, \"retries\": null}");
        ASSERT_TRUE(vb_jobopts_equal(&o, &defaults));

        /* null for an unknown key is still an unknown key. */
        json_fails(&o, "{\"bogus\": null}", ENOENT, "bogus", "unknown option", NULL);
}

/* Options with every key away from its default. */
static void set_everything(vb_jobopts *o)
{
        static const char *const kv[][2] = {
                { "compression", "adjustable" },
                { "compression_level", "7" },
                { "dedup_mode", "server-side" },
                { "parallel_vms", "32" },
                { "parallel_vms_per_host", "10" },
                { "parallel_disks", "3" },
                { "streams_per_disk", "5" },
                { "min_free_percent", "0" },
                { "min_free_bytes", "1536M" },
                { "cbt", "off" },
                { "non_cbt_vm", "skip" },
                { "network", "management" },
                { "shutdown_for_backup", "on" },
                { "valid_data_only", "off" },
                { "reconnect_window", "90s" },
                { "resume_buffer", "16M" },
                { "transfer_rate", "mon-fri 08:00-18:00 50MiB/s; 22:00-06:00 1GiB/s" },
                { "disk_read_rate", "sat,sun 200MiB/s" },
                { "precondition", "test -e /run/ok" },
                { "pre_script", "sync" },
                { "post_script", "logger \"done\" | cat" },
                { "script_timeout", "45s" },
                { "read_buffer", "8M" },
                { "transport_log_level", "error" },
                { "network_timeout", "2m" },
                { "snapshot", "internal" },
                { "retries", "0" },
                { "retry_interval", "0m" },
                { "quiesce", "off" },
        };
        vb_jobopts defaults;

        vb_jobopts_defaults(o);
        defaults = *o;
        ASSERT_EQ(ELEMENTSOF(kv), vb_jobopts_n);
        for (size_t i = 0; i < ELEMENTSOF(kv); i++) {
                const vb_jobopt *k = vb_jobopt_find(kv[i][0]);
                char a[VB_JOBOPTS_TEXT_MAX], b[VB_JOBOPTS_TEXT_MAX];

                set_ok(o, kv[i][0], kv[i][1]);
                ASSERT_OK(vb_jobopts_format(o, k, a, sizeof(a)));
                ASSERT_OK(vb_jobopts_format(&defaults, k, b, sizeof(b)));
                if (streq(a, b))
                        TEST_FAIL_("%s=%s is its default", kv[i][0], kv[i][1]);
        }
        ASSERT_OK(vb_jobopts_check(o, NULL));
}

static void assert_round_trip(const vb_jobopts *o, const vb_jobopts *start)
{
        vb_jobopts back = *start;
        _cleanup_free_ char *err = NULL, *text1 = NULL, *text2 = NULL;
        json_t *j = vb_jobopts_to_json(o), *j2;

        ASSERT_TRUE(j != NULL);
        ASSERT_EQ(json_object_size(j), vb_jobopts_n);
        for (size_t i = 0; i < vb_jobopts_n; i++)
                ASSERT_TRUE(json_object_get(j, vb_jobopts_table[i].key) != NULL);
        if (vb_jobopts_from_json(&back, j, &err) < 0)
                TEST_FAIL_("round trip: %s", err ? err : "?");
        ASSERT_TRUE(vb_jobopts_equal(&back, o));
        j2 = vb_jobopts_to_json(&back);
        ASSERT_TRUE(json_equal(j, j2));
        /* Through text too, as the API sends it. */
        text1 = json_dumps(j, JSON_COMPACT);
        text2 = json_dumps(j2, JSON_COMPACT);
        ASSERT_STREQ(text1, text2);
        json_decref(j);
        json_decref(j2);
}

TEST(jobopts_json_round_trip)
{
        vb_jobopts defaults, all;
        json_t *j;

        vb_jobopts_defaults(&defaults);
        set_everything(&all);
        assert_round_trip(&defaults, &all);
        assert_round_trip(&all, &defaults);
        ASSERT_TRUE(!vb_jobopts_equal(&defaults, &all));

        /* The canonical values. */
        j = vb_jobopts_to_json(&all);
        ASSERT_STREQ(json_string_value(json_object_get(j, "compression")), "adjustable");
        ASSERT_EQ(json_integer_value(json_object_get(j, "compression_level")), 7);
        ASSERT_EQ(json_integer_value(json_object_get(j, "parallel_vms")), 32);
        ASSERT_EQ(json_integer_value(json_object_get(j, "min_free_percent")), 0);
        ASSERT_STREQ(json_string_value(json_object_get(j, "min_free_bytes")), "1536M");
        ASSERT_TRUE(json_is_false(json_object_get(j, "cbt")));
        ASSERT_STREQ(json_string_value(json_object_get(j, "reconnect_window")), "90s");
        ASSERT_STREQ(json_string_value(json_object_get(j, "post_script")), "logger \"done\" | cat");
        ASSERT_STREQ(json_string_value(json_object_get(j, "read_buffer")), "8M");
        ASSERT_STREQ(json_string_value(json_object_get(j, "retry_interval")), "0m");
        json_decref(j);
        j = vb_jobopts_to_json(&defaults);
        ASSERT_TRUE(json_is_null(json_object_get(j, "compression_level")));
        ASSERT_TRUE(json_is_null(json_object_get(j, "transfer_rate")));
        ASSERT_TRUE(json_is_null(json_object_get(j, "precondition")));
        ASSERT_TRUE(json_is_true(json_object_get(j, "quiesce")));
        ASSERT_STREQ(json_string_value(json_object_get(j, "min_free_bytes")), "500G");
        json_decref(j);
        ASSERT_TRUE(vb_jobopts_to_json(NULL) == NULL);
}

TEST(jobopts_compression_rule)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        /* adjustable needs a level; a level needs adjustable. */
        json_fails(&o, "{\"compression\": \"adjustable\"}", EINVAL, "compression_level",
                   "required with compression adjustable (1-19)", NULL);
        json_fails(&o, "{\"compression_level\": 5}", EINVAL, "compression_level",
                   "5 needs compression adjustable (compression is fast)", NULL);
        json_fails(&o, "{\"compression\": \"none\", \"compression_level\": 5}", EINVAL, "compression_level",
                   "compression is none", NULL);
        json_fails(&o, "{\"compression_level\": 5, \"compression\": \"fast\"}", EINVAL, "compression_level", NULL);
        json_ok(&o, "{\"compression\": \"adjustable\", \"compression_level\": 19}");
        ASSERT_EQ(o.compression, VB_JOB_COMPRESSION_ADJUSTABLE);
        ASSERT_EQ(vb_jobopts_compression_level(&o), 19);
        /* Changing the level alone, then dropping to fast without naming the level. */
        json_ok(&o, "{\"compression_level\": \"3\"}");
        ASSERT_EQ(vb_jobopts_compression_level(&o), 3);
        json_ok(&o, "{\"compression\": \"fast\"}");
        ASSERT_EQ(o.compression_level, 0);
        ASSERT_EQ(vb_jobopts_compression_level(&o), 1);
        /* Unsetting the level under adjustable is refused. */
        json_ok(&o, "{\"compression\": \"adjustable\", \"compression_level\": 4}");
        json_fails(&o, "{\"compression_level\": null}", EINVAL, "compression_level", "required", NULL);

        /* --set: any order, checked at the end. */
        vb_jobopts_defaults(&o);
        set_ok(&o, "compression_level", "9");
        check_fails(&o, "compression_level", "9 needs compression adjustable", NULL);
        set_ok(&o, "compression", "adjustable");
        ASSERT_OK(vb_jobopts_check(&o, NULL));
        ASSERT_EQ(vb_jobopts_compression_level(&o), 9);
        set_ok(&o, "compression", "none");
        ASSERT_EQ(o.compression_level, 0);
        ASSERT_OK(vb_jobopts_check(&o, NULL));
        set_ok(&o, "compression", "adjustable");
        check_fails(&o, "compression_level", "required", NULL);
}

TEST(jobopts_buffer_and_connection_rules)
{
        vb_jobopts o;

        vb_jobopts_defaults(&o);
        json_fails(&o, "{\"read_buffer\": \"8M\", \"resume_buffer\": \"4M\"}", EINVAL, "resume_buffer",
                   "4M is less than read_buffer (8M)", NULL);
        json_fails(&o, "{\"read_buffer\": \"2M\", \"resume_buffer\": \"1M\"}", EINVAL, "resume_buffer", NULL);
        json_ok(&o, "{\"read_buffer\": \"8M\", \"resume_buffer\": \"8M\"}");
        json_fails(&o, "{\"resume_buffer\": \"7M\"}", EINVAL, "resume_buffer", "less than read_buffer", NULL);
        ASSERT_UEQ(o.resume_buffer, 8 * MiB);

        /* Connections per disk: the larger of the two, at most 5 by their ranges. */
        vb_jobopts_defaults(&o);
        json_ok(&o, "{\"parallel_disks\": 5, \"streams_per_disk\": 1}");
        ASSERT_EQ(vb_jobopts_connections_per_disk(&o), 5);
        json_ok(&o, "{\"parallel_disks\": 2, \"streams_per_disk\": 3}");
        ASSERT_EQ(vb_jobopts_connections_per_disk(&o), 3);
        json_ok(&o, "{\"parallel_disks\": 5, \"streams_per_disk\": 5}");
        ASSERT_EQ(vb_jobopts_connections_per_disk(&o), VB_JOBOPTS_CONNECTIONS_MAX);
        json_fails(&o, "{\"streams_per_disk\": 6}", EINVAL, "streams_per_disk", "out of range (1-5)", NULL);
}

TEST(jobopts_check_members)
{
        vb_jobopts o;

        /* check() holds a struct filled by code to the same ranges. */
        vb_jobopts_defaults(&o);
        o.parallel_vms = 40;
        check_fails(&o, "parallel_vms", "40 is out of range (1-32)", NULL);
        vb_jobopts_defaults(&o);
        o.retry_interval = 121 * 60;
        check_fails(&o, "retry_interval", "out of range (0m-120m)", NULL);
        vb_jobopts_defaults(&o);
        o.read_buffer = 3 * MiB;
        check_fails(&o, "read_buffer", "3M is not one of", NULL);
        vb_jobopts_defaults(&o);
        o.network = (vb_job_network)9;
        check_fails(&o, "network", "9 is not one of adaptive, backup, storage, management", NULL);
        vb_jobopts_defaults(&o);
        o.transport_log_level = LOG_DEBUG;
        check_fails(&o, "transport_log_level", "is not one of info, warning, error", NULL);
        vb_jobopts_defaults(&o);
        o.compression_level = 25;
        o.compression = VB_JOB_COMPRESSION_ADJUSTABLE;
        check_fails(&o, "compression_level", "25 is out of range", NULL);
        vb_jobopts_defaults(&o);
        strcpy(o.pre_script, "a\nb");
        check_fails(&o, "pre_script", "control character", NULL);
        vb_jobopts_defaults(&o);
        strcpy(o.post_script, "none");
        check_fails(&o, "post_script", "'none' is not a value", NULL);
        vb_jobopts_defaults(&o);
        strcpy(o.transfer_rate, "fast please");
        check_fails(&o, "transfer_rate", "position", NULL);
        vb_jobopts_defaults(&o);
        memset(o.disk_read_rate, 'x', sizeof(o.disk_read_rate));
        check_fails(&o, "disk_read_rate", "not NUL-terminated", NULL);
        ASSERT_TRUE(vb_jobopts_to_json(&o) == NULL);
        ASSERT_ERR(vb_jobopts_check(NULL, NULL), EINVAL);
}

TEST(jobopts_equal)
{
        vb_jobopts a, b;

        vb_jobopts_defaults(&a);
        vb_jobopts_defaults(&b);
        ASSERT_TRUE(vb_jobopts_equal(&a, &b));
        for (size_t i = 0; i < vb_jobopts_n; i++) {
                vb_jobopts all;
                const vb_jobopt *k = &vb_jobopts_table[i];
                char v[VB_JOBOPTS_TEXT_MAX];

                /* Each option alone makes a difference. */
                set_everything(&all);
                b = a;
                ASSERT_OK(vb_jobopts_format(&all, k, v, sizeof(v)));
                set_ok(&b, k->key, v);
                if (vb_jobopts_equal(&a, &b))
                        TEST_FAIL_("%s=%s does not count in equal()", k->key, v);
        }
        /* Bytes after a text's NUL do not count. */
        b = a;
        b.pre_script[5] = 'x';
        ASSERT_TRUE(vb_jobopts_equal(&a, &b));
}

static char *capture(void (*fn)(FILE *))
{
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        ASSERT_TRUE(f != NULL);
        fn(f);
        ASSERT_EQ(fclose(f), 0);
        return text;
}

TEST(jobopts_help)
{
        _cleanup_free_ char *help = capture(vb_jobopts_help);

        for (size_t i = 0; i < vb_jobopts_n; i++) {
                const vb_jobopt *k = &vb_jobopts_table[i];
                char range[256], want[512];
                const char *row, *end, *p;

                ASSERT_TRUE(vb_jobopt_format_range(k, range, sizeof(range)) > 0);
                /* KEY DEFAULT VALUES on one line, whatever the padding. */
                snprintf(want, sizeof(want), "  %s ", k->key);
                row = strstr(help, want);
                if (!row)
                        TEST_FAIL_("help lacks %s", k->key);
                end = strchr(row, '\n');
                ASSERT_TRUE(end != NULL);
                snprintf(want, sizeof(want), " %s  ", k->def);
                p = strstr(row, want);
                ASSERT_TRUE(p && p < end);
                p = strstr(row, range);
                ASSERT_TRUE(p && p < end);
                /* The description on the next line. */
                ASSERT_TRUE(strncmp(end + 1, "      ", 6) == 0);
        }
        ASSERT_TRUE(strstr(help, "parallel_vms_per_host  2 ") != NULL);
        ASSERT_TRUE(strstr(help, "read_buffer") && strstr(help, "64K, 128K, 256K, 512K, 1M, 2M, 4M, 8M"));
        /* Lines fit a terminal. */
        for (const char *p = help; *p;) {
                const char *nl = strchr(p, '\n');

                ASSERT_TRUE(nl != NULL);
                if (nl - p > 80)
                        TEST_FAIL_("help line too long: %.*s", (int)(nl - p), p);
                p = nl + 1;
        }
}

TEST(jobopts_docs_match_table)
{
        _cleanup_free_ char *table = capture(vb_jobopts_markdown), *doc = NULL, *path = NULL;
        size_t len;

        _cleanup_free_ char *header = NULL;

        ASSERT_TRUE(asprintf(&header, "%s/daemon/jobopts.h", start_dir) > 0);
        if (access(header, R_OK) < 0) {
                fprintf(stderr, "the runner did not start in the repository (%s)\n", start_dir);
                exit(EXIT_TEST_SKIP);
        }
        ASSERT_TRUE(asprintf(&path, "%s/docs/job-options.md", start_dir) > 0);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, path, 1 << 20, &doc, &len));
        if (!strstr(doc, table))
                TEST_FAIL_("docs/job-options.md does not hold the table; it should hold:\n%s", table);
        /* One row per option, and the header. */
        {
                size_t rows = 0;

                for (const char *p = table; (p = strchr(p, '\n')); p++)
                        rows++;
                ASSERT_EQ(rows, vb_jobopts_n + 2);
        }
}
