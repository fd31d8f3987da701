/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jobopts.c -- the table of job options and everything built on it (see
 * jobopts.h).
 *
 * DESIGN
 * A value, whether text from --set, a JSON value or a default, is parsed
 * into a struct value (a number or a text) and checked against its row by
 * check_number() or the text checks; store() then writes it at the row's
 * offset. vb_jobopts_check() reads each member back through the same checks,
 * so a struct filled by code or read from the catalog is held to the same
 * ranges as a user's input. The row macros take the member's name as the
 * key (#member), so the key and the member cannot drift apart, and check
 * the member's C type at compile time.
 */
#include "daemon/jobopts.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "daemon/util.h"
#include "dedup/blob.h"
#include "transport/nbd.h"
#include "transport/rate.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)
#define MINUTE UINT64_C(60)
#define HOUR (60 * MINUTE)

/* ENUM members are read and written as int. */
_Static_assert(sizeof(vb_job_compression) == sizeof(int), "enum size");
_Static_assert(sizeof(vb_job_dedup_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(vb_job_non_cbt) == sizeof(int), "enum size");
_Static_assert(sizeof(vb_job_network) == sizeof(int), "enum size");
_Static_assert(sizeof(vb_snapshot_type) == sizeof(int), "enum size");

/* offsetof(vb_jobopts, member), and a compile error (distinct pointer types
 * under -Werror) when member is not of type ctype. */
#define FIELD(member, ctype) (offsetof(vb_jobopts, member) + 0 * sizeof(&((vb_jobopts *)0)->member == (ctype *)0))
#define FIELD_TEXT(member)                                                                                             \
        (offsetof(vb_jobopts, member) + 0 * sizeof(&((vb_jobopts *)0)->member == (char(*)[VB_JOBOPTS_TEXT_MAX])0))

#define OPT_BOOL(member, def_, desc_)                                                                                  \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_BOOL, .def = def_, .offset = FIELD(member, bool),                    \
                .description = desc_,                                                                                  \
        }
#define OPT_UINT(member, flags_, min_, max_, def_, desc_)                                                              \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_UINT, .flags = flags_, .min = min_, .max = max_, .def = def_,        \
                .offset = FIELD(member, unsigned), .description = desc_,                                               \
        }
#define OPT_PERCENT(member, min_, max_, def_, desc_)                                                                   \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_PERCENT, .min = min_, .max = max_, .def = def_,                      \
                .offset = FIELD(member, unsigned), .description = desc_,                                               \
        }
#define OPT_SIZE(member, flags_, min_, max_, def_, desc_)                                                              \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_SIZE, .flags = flags_, .min = min_, .max = max_, .def = def_,        \
                .offset = FIELD(member, uint64_t), .description = desc_,                                               \
        }
#define OPT_DURATION(member, unit_, min_, max_, def_, desc_)                                                           \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_DURATION, .unit = unit_, .min = min_, .max = max_, .def = def_,      \
                .offset = FIELD(member, uint64_t), .description = desc_,                                               \
        }
#define OPT_ENUM(member, ctype, names_, def_, desc_)                                                                   \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_ENUM, .names = names_, .def = def_, .offset = FIELD(member, ctype),  \
                .description = desc_,                                                                                  \
        }
#define OPT_RATE(member, desc_)                                                                                        \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_RATE, .def = "none", .offset = FIELD_TEXT(member),                   \
                .description = desc_,                                                                                  \
        }
#define OPT_COMMAND(member, desc_)                                                                                     \
        {                                                                                                              \
                .key = #member, .type = VB_JOBOPT_COMMAND, .def = "none", .offset = FIELD_TEXT(member),                \
                .description = desc_,                                                                                  \
        }

static const vb_jobopt_name compressions[] = {
        { "none", VB_JOB_COMPRESSION_NONE },
        { "fast", VB_JOB_COMPRESSION_FAST },
        { "adjustable", VB_JOB_COMPRESSION_ADJUSTABLE },
        { NULL, 0 },
};

static const vb_jobopt_name dedup_modes[] = {
        { "source-side", VB_JOB_DEDUP_SOURCE },
        { "server-side", VB_JOB_DEDUP_SERVER },
        { "source", VB_JOB_DEDUP_SOURCE },
        { "server", VB_JOB_DEDUP_SERVER },
        { NULL, 0 },
};

static const vb_jobopt_name non_cbt_rules[] = {
        { "full", VB_JOB_NON_CBT_FULL },
        { "fail", VB_JOB_NON_CBT_FAIL },
        { "skip", VB_JOB_NON_CBT_SKIP },
        { NULL, 0 },
};

static const vb_jobopt_name networks[] = {
        { "adaptive", VB_JOB_NETWORK_ADAPTIVE },
        { "backup", VB_JOB_NETWORK_BACKUP },
        { "storage", VB_JOB_NETWORK_STORAGE },
        { "management", VB_JOB_NETWORK_MANAGEMENT },
        { NULL, 0 },
};

static const vb_jobopt_name log_levels[] = {
        { "info", LOG_INFO },
        { "warning", LOG_WARNING },
        { "error", LOG_ERR },
        { NULL, 0 },
};

static const vb_jobopt_name snapshot_types[] = {
        { "adaptive", VB_SNAPSHOT_ADAPTIVE },
        { "external", VB_SNAPSHOT_EXTERNAL },
        { "internal", VB_SNAPSHOT_INTERNAL },
        { NULL, 0 },
};

/* The table, in the order of product §2. */
const vb_jobopt vb_jobopts_table[] = {
        OPT_ENUM(compression, vb_job_compression, compressions, "fast",
                 "how chunks are compressed: none, fast (zstd at a low level) or adjustable (zstd at "
                 "compression_level)"),
        OPT_UINT(compression_level, VB_JOBOPT_OPTIONAL, 1, DD_COMPRESSION_LEVEL_MAX, "none",
                 "zstd level; required with compression adjustable, none otherwise"),
        OPT_ENUM(dedup_mode, vb_job_dedup_mode, dedup_modes, "source-side",
                 "dedup pools: source-side sends only chunks the pool lacks, server-side sends everything and the "
                 "pool dedups"),
        OPT_UINT(parallel_vms, 0, 1, 32, "2", "VMs of the job backed up at the same time"),
        OPT_UINT(parallel_vms_per_host, 0, 1, 10, "2", "VMs of one host backed up at the same time"),
        OPT_UINT(parallel_disks, 0, 1, 5, "1", "disks of one VM read at the same time"),
        OPT_UINT(streams_per_disk, 0, 1, 5, "1",
                 "read streams of one disk; a disk gets max(parallel_disks, streams_per_disk) connections"),
        OPT_PERCENT(min_free_percent, 0, 100, "10%",
                    "a VM fails before its snapshot when its storage has less free space than this share (0: "
                    "not checked)"),
        OPT_SIZE(min_free_bytes, 0, 0, 1024 * TIB, "500G",
                 "a VM fails before its snapshot when its storage has less free space than this (0: not checked)"),
        OPT_BOOL(cbt, "on", "full backups enable changed-block tracking, which incremental backups need"),
        OPT_ENUM(non_cbt_vm, vb_job_non_cbt, non_cbt_rules, "full",
                 "incremental job, VM without usable CBT: back it up in full, fail it with an alert, or skip it "
                 "silently"),
        OPT_ENUM(network, vb_job_network, networks, "adaptive",
                 "host network the data flows over; adaptive: backup, else storage, else management; vswitch0 when "
                 "the type is absent"),
        OPT_BOOL(shutdown_for_backup, "off",
                 "safely shut down VMs that cannot snapshot online, for the backup; when that fails they are not "
                 "backed up"),
        OPT_BOOL(valid_data_only, "on",
                 "read only allocated extents (the whole volume when the allocation query fails); off: the whole "
                 "volume"),
        OPT_DURATION(reconnect_window, MINUTE, 1 * MINUTE, 60 * MINUTE, "10m",
                     "a broken connection re-opened within this time resumes where it stopped"),
        OPT_SIZE(resume_buffer, 0, 1 * MIB, 1 * GIB, "10M",
                 "bytes in flight kept so that a resumed stream loses nothing; at least read_buffer"),
        OPT_RATE(transfer_rate, "transfer speed limit per time window"),
        OPT_RATE(disk_read_rate, "disk read speed limit per time window"),
        OPT_COMMAND(precondition, "command run before the job; a non-zero exit skips the run (idle, not failed)"),
        OPT_COMMAND(pre_script, "command run before the first VM"),
        OPT_COMMAND(post_script, "command run after the last VM"),
        OPT_DURATION(script_timeout, 0, 1, 24 * HOUR, "1h",
                     "how long the precondition and each script may run before they are killed"),
        OPT_SIZE(read_buffer, VB_JOBOPT_POW2, TP_NBD_REQUEST_MIN, TP_NBD_REQUEST_MAX, "1M",
                 "bytes per read request of a disk"),
        OPT_ENUM(transport_log_level, int, log_levels, "info", "least level written to the transport's own log file"),
        OPT_DURATION(network_timeout, MINUTE, 1 * MINUTE, 10 * MINUTE, "10m",
                     "a disk connection that does not answer for this long fails"),
        OPT_ENUM(snapshot, vb_snapshot_type, snapshot_types, "adaptive",
                 "snapshot type; adaptive: the platform's default; a VM that cannot take the chosen type fails"),
        OPT_UINT(retries, 0, 0, 10, "3", "times a failed VM is tried again"),
        OPT_DURATION(retry_interval, MINUTE, 0, 120 * MINUTE, "10m", "wait before each retry"),
        OPT_BOOL(quiesce, "on",
                 "freeze the guest's file systems through its agent for the snapshot; without an answer: "
                 "crash-consistent, said in the VM's result"),
};

const size_t vb_jobopts_n = ELEMENTSOF(vb_jobopts_table);

#define OPTS_END (vb_jobopts_table + ELEMENTSOF(vb_jobopts_table))

/* A parsed value before it is stored. */
typedef struct optval {
        uint64_t n;                     /* BOOL, UINT, PERCENT, SIZE, DURATION, ENUM */
        char text[VB_JOBOPTS_TEXT_MAX]; /* RATE, COMMAND */
} optval;

const vb_jobopt *vb_jobopt_find(const char *key)
{
        if (!key)
                return NULL;
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++)
                if (streq(k->key, key))
                        return k;
        return NULL;
}

static void *member(vb_jobopts *o, const vb_jobopt *k)
{
        return (char *)o + k->offset;
}

static const void *cmember(const vb_jobopts *o, const vb_jobopt *k)
{
        return (const char *)o + k->offset;
}

static bool is_text(const vb_jobopt *k)
{
        return k->type == VB_JOBOPT_RATE || k->type == VB_JOBOPT_COMMAND;
}

static uint64_t get_number(const vb_jobopts *o, const vb_jobopt *k)
{
        const void *p = cmember(o, k);

        switch (k->type) {
        case VB_JOBOPT_BOOL:
                return *(const bool *)p;
        case VB_JOBOPT_UINT:
        case VB_JOBOPT_PERCENT:
                return *(const unsigned *)p;
        case VB_JOBOPT_SIZE:
        case VB_JOBOPT_DURATION:
                return *(const uint64_t *)p;
        case VB_JOBOPT_ENUM: {
                int e = *(const int *)p;
                return (uint64_t)(int64_t)e;
        }
        default:
                return 0;
        }
}

static void store(vb_jobopts *o, const vb_jobopt *k, const optval *v)
{
        void *p = member(o, k);

        switch (k->type) {
        case VB_JOBOPT_BOOL:
                *(bool *)p = v->n != 0;
                break;
        case VB_JOBOPT_UINT:
        case VB_JOBOPT_PERCENT:
                *(unsigned *)p = (unsigned)v->n;
                break;
        case VB_JOBOPT_SIZE:
        case VB_JOBOPT_DURATION:
                *(uint64_t *)p = v->n;
                break;
        case VB_JOBOPT_ENUM:
                *(int *)p = (int)v->n;
                break;
        case VB_JOBOPT_RATE:
        case VB_JOBOPT_COMMAND:
                /* The whole array, so that no stale bytes follow the NUL. */
                memcpy(p, v->text, VB_JOBOPTS_TEXT_MAX);
                break;
        }
}

/* snprintf that reports truncation as -ENOBUFS and returns the length. */
static int format_into(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static int format_into(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (!buf || size == 0)
                return -EINVAL;
        va_start(ap, fmt);
        n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= size)
                return -ENOBUFS;
        return n;
}

/* Sizes in the largest binary unit that keeps them exact: "10M", "500G". */
static int format_size(uint64_t v, char *buf, size_t size)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = { { "T", TIB }, { "G", GIB }, { "M", MIB }, { "K", KIB } };

        for (size_t i = 0; v > 0 && i < ELEMENTSOF(units); i++)
                if (v % units[i].factor == 0)
                        return format_into(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
        return format_into(buf, size, "%" PRIu64, v);
}

/* Durations in the largest unit up to hours that keeps them exact: "90s",
 * "10m", "24h". Zero in the row's unit. */
static int format_duration(uint64_t v, uint64_t unit, char *buf, size_t size)
{
        if (v == 0)
                return format_into(buf, size, "0%s", unit == MINUTE ? "m" : "s");
        if (v % HOUR == 0)
                return format_into(buf, size, "%" PRIu64 "h", v / HOUR);
        if (v % MINUTE == 0)
                return format_into(buf, size, "%" PRIu64 "m", v / MINUTE);
        return format_into(buf, size, "%" PRIu64 "s", v);
}

/* The canonical name of an enum value: the first with that value. */
static const char *enum_name(const vb_jobopt *k, int value)
{
        for (const vb_jobopt_name *e = k->names; e->name; e++)
                if (e->value == value)
                        return e->name;
        return NULL;
}

int vb_jobopt_format_range(const vb_jobopt *k, char *buf, size_t size)
{
        char lo[32], hi[32];
        size_t len = 0;
        int n;

        if (!k || !buf || size == 0)
                return -EINVAL;
        buf[0] = 0;
        switch (k->type) {
        case VB_JOBOPT_BOOL:
                return format_into(buf, size, "on, off");
        case VB_JOBOPT_UINT:
                return format_into(buf, size, "%" PRIu64 "-%" PRIu64 "%s", k->min, k->max,
                                   k->flags & VB_JOBOPT_OPTIONAL ? ", or none" : "");
        case VB_JOBOPT_PERCENT:
                return format_into(buf, size, "%" PRIu64 "%%-%" PRIu64 "%%", k->min, k->max);
        case VB_JOBOPT_SIZE:
                if (k->flags & VB_JOBOPT_POW2) {
                        for (uint64_t v = k->min; v && v <= k->max; v <<= 1) {
                                format_size(v, lo, sizeof(lo));
                                n = format_into(buf + len, size - len, "%s%s", len > 0 ? ", " : "", lo);
                                if (n < 0)
                                        return n;
                                len += (size_t)n;
                        }
                        return (int)len;
                }
                format_size(k->min, lo, sizeof(lo));
                format_size(k->max, hi, sizeof(hi));
                return format_into(buf, size, "%s-%s", lo, hi);
        case VB_JOBOPT_DURATION:
                if (k->unit == MINUTE)
                        return format_into(buf, size, "%" PRIu64 "m-%" PRIu64 "m", k->min / MINUTE, k->max / MINUTE);
                format_duration(k->min, k->unit, lo, sizeof(lo));
                format_duration(k->max, k->unit, hi, sizeof(hi));
                return format_into(buf, size, "%s-%s", lo, hi);
        case VB_JOBOPT_ENUM:
                for (const vb_jobopt_name *e = k->names; e->name; e++) {
                        if (enum_name(k, e->value) != e->name)
                                continue; /* an alias */
                        n = format_into(buf + len, size - len, "%s%s", len > 0 ? ", " : "", e->name);
                        if (n < 0)
                                return n;
                        len += (size_t)n;
                }
                return (int)len;
        case VB_JOBOPT_RATE:
                return format_into(buf, size, "none, or \"[DAYS] [FROM-TO] RATE; ...\"");
        case VB_JOBOPT_COMMAND:
                return format_into(buf, size, "none, or a shell command");
        }
        return -EINVAL;
}

int vb_jobopts_format(const vb_jobopts *o, const vb_jobopt *k, char *buf, size_t size)
{
        const char *s;
        uint64_t v;

        if (!o || !k || !buf || size == 0)
                return -EINVAL;
        if (is_text(k)) {
                s = cmember(o, k);
                if (!memchr(s, 0, VB_JOBOPTS_TEXT_MAX))
                        return -EINVAL;
                return format_into(buf, size, "%s", s[0] ? s : "none");
        }
        v = get_number(o, k);
        switch (k->type) {
        case VB_JOBOPT_BOOL:
                return format_into(buf, size, "%s", v ? "on" : "off");
        case VB_JOBOPT_UINT:
                if (v == 0 && (k->flags & VB_JOBOPT_OPTIONAL))
                        return format_into(buf, size, "none");
                return format_into(buf, size, "%" PRIu64, v);
        case VB_JOBOPT_PERCENT:
                return format_into(buf, size, "%" PRIu64 "%%", v);
        case VB_JOBOPT_SIZE:
                return format_size(v, buf, size);
        case VB_JOBOPT_DURATION:
                return format_duration(v, k->unit, buf, size);
        case VB_JOBOPT_ENUM:
                s = enum_name(k, (int)(int64_t)v);
                return s ? format_into(buf, size, "%s", s) : -EINVAL;
        default:
                return -EINVAL;
        }
}

/* A value for a message: control characters as '?', long ones cut with
 * "...". Returns buf. */
#define SHOWN_MAX 72
static const char *show_text(const char *s, char *buf, size_t size)
{
        size_t n = 0;

        for (; *s && n < size - 4; s++)
                buf[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
        if (*s) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = 0;
        return buf;
}

/* Sets *err to "KEY: <message>" and returns r. */
static int fail(char **err, int r, const char *key, const char *fmt, ...) _printf_(4, 5);
static int fail(char **err, int r, const char *key, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        char shown[SHOWN_MAX];
        va_list ap;

        if (!err)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg || asprintf(err, "%s: %s", show_text(key, shown, sizeof(shown)), msg) < 0)
                *err = NULL;
        return r;
}

static int fail_range(char **err, const vb_jobopt *k, const char *shown)
{
        char range[256];

        if (vb_jobopt_format_range(k, range, sizeof(range)) < 0)
                snprintf(range, sizeof(range), "?");
        if (k->type == VB_JOBOPT_ENUM || (k->type == VB_JOBOPT_SIZE && (k->flags & VB_JOBOPT_POW2)))
                return fail(err, -EINVAL, k->key, "%s is not one of %s", shown, range);
        return fail(err, -EINVAL, k->key, "%s is out of range (%s)", shown, range);
}

/* Checks a number against k; shown is how the user wrote it. stored: n
 * comes from a struct, where 0 is how an OPTIONAL row holds none (a user
 * writes none, or null in JSON: 0 is out of range). */
static int check_number(const vb_jobopt *k, uint64_t n, const char *shown, bool stored, char **err)
{
        switch (k->type) {
        case VB_JOBOPT_BOOL:
                return n <= 1 ? 0 : fail(err, -EINVAL, k->key, "%s is not on or off", shown);
        case VB_JOBOPT_ENUM:
                if (!enum_name(k, (int)(int64_t)n))
                        return fail_range(err, k, shown);
                return 0;
        case VB_JOBOPT_UINT:
                if (n == 0 && (k->flags & VB_JOBOPT_OPTIONAL) && stored)
                        return 0;
                break;
        case VB_JOBOPT_SIZE:
                if ((k->flags & VB_JOBOPT_POW2) && (n & (n - 1)) != 0)
                        return fail_range(err, k, shown);
                break;
        default:
                break;
        }
        if (n < k->min || n > k->max)
                return fail_range(err, k, shown);
        return 0;
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "on", "true", "yes", "1" };
        static const char *const no[] = { "off", "false", "no", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static bool all_digits(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isdigit((unsigned char)*s))
                        return false;
        return true;
}

/* Parses digits, spaces and a unit ("10 MiB", "90s", "10%") with the
 * spaces between number and unit removed. -ERANGE when the number does not
 * fit, -EINVAL when it is not NUMBER[ ]UNIT. */
static int parse_with_unit(const char *s, int (*parse)(const char *, uint64_t *), uint64_t *ret)
{
        char buf[64];
        size_t n = 0;

        while (isdigit((unsigned char)*s) && n < sizeof(buf) - 1)
                buf[n++] = *s++;
        if (n == 0 || isdigit((unsigned char)*s))
                return isdigit((unsigned char)*s) ? -ERANGE : -EINVAL;
        while (*s == ' ')
                s++;
        if (strlen(s) >= sizeof(buf) - n)
                return -EINVAL;
        strcpy(buf + n, s);
        return parse(buf, ret);
}

static int parse_plain(const char *s, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (!all_digits(s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_percent(const char *s, uint64_t *ret)
{
        size_t l = strlen(s);
        char buf[64];

        if (l > 0 && s[l - 1] == '%') {
                if (l >= sizeof(buf))
                        return -ERANGE;
                memcpy(buf, s, l - 1);
                buf[l - 1] = 0;
                s = buf;
        }
        return parse_plain(s, ret);
}

static int parse_duration(const char *s, uint64_t *ret)
{
        /* A bare number could mean seconds or minutes: ask for the unit. */
        if (all_digits(s))
                return -EINVAL;
        return vb_parse_duration(s, ret);
}

static bool is_none(const char *s)
{
        while (*s == ' ')
                s++;
        return *s == 0 || strcasecmp(s, "none") == 0;
}

static int parse_text(const vb_jobopt *k, const char *s, optval *v, char **err)
{
        char shown[SHOWN_MAX];
        int r;

        show_text(s, shown, sizeof(shown));
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return fail(err, -EINVAL, k->key, "'%s': control character in the value", shown);

        switch (k->type) {
        case VB_JOBOPT_BOOL: {
                bool b;

                if (parse_bool(s, &b) < 0)
                        return fail(err, -EINVAL, k->key, "'%s' is not on or off (on, off, true, false, yes, no)",
                                    shown);
                v->n = b;
                return 0;
        }
        case VB_JOBOPT_ENUM: {
                char range[256];

                for (const vb_jobopt_name *e = k->names; e->name; e++)
                        if (strcasecmp(s, e->name) == 0) {
                                v->n = (uint64_t)(int64_t)e->value;
                                return 0;
                        }
                vb_jobopt_format_range(k, range, sizeof(range));
                return fail(err, -EINVAL, k->key, "'%s' is not one of %s", shown, range);
        }
        case VB_JOBOPT_UINT:
        case VB_JOBOPT_PERCENT:
        case VB_JOBOPT_SIZE:
        case VB_JOBOPT_DURATION:
                if ((k->flags & VB_JOBOPT_OPTIONAL) && is_none(s)) {
                        v->n = 0;
                        return 0;
                }
                /* A negative number is a number, only out of range. */
                if (s[0] == '-' && isdigit((unsigned char)s[1]))
                        return fail_range(err, k, shown);
                if (k->type == VB_JOBOPT_UINT)
                        r = parse_plain(s, &v->n);
                else if (k->type == VB_JOBOPT_PERCENT)
                        r = parse_with_unit(s, parse_percent, &v->n);
                else if (k->type == VB_JOBOPT_SIZE)
                        r = parse_with_unit(s, vb_parse_size, &v->n);
                else
                        r = parse_with_unit(s, parse_duration, &v->n);
                if (r == -ERANGE)
                        return fail_range(err, k, shown);
                if (r < 0) {
                        if (k->type == VB_JOBOPT_DURATION && all_digits(s))
                                return fail(err, -EINVAL, k->key, "'%s' needs a unit (like 90s, 10m, 1h)", shown);
                        return fail(err, -EINVAL, k->key, "'%s' is not %s", shown,
                                    k->type == VB_JOBOPT_UINT      ? "a whole number"
                                    : k->type == VB_JOBOPT_PERCENT ? "a percentage (like 10 or 10%)"
                                    : k->type == VB_JOBOPT_SIZE    ? "a size (like 64K, 10M, 500G, 1TiB)"
                                                                   : "a duration (like 90s, 10m, 1h)");
                }
                return check_number(k, v->n, shown, false, err);
        case VB_JOBOPT_RATE: {
                tp_rate_schedule sched = { 0 };
                _cleanup_free_ char *why = NULL, *canonical = NULL;

                memset(v->text, 0, sizeof(v->text));
                r = tp_rate_schedule_parse(s, &sched, &why);
                if (r == -ENOMEM)
                        return fail(err, r, k->key, "out of memory");
                if (r < 0)
                        return fail(err, -EINVAL, k->key, "'%s': %s", shown, why ? why : "not a speed limit");
                if (sched.n == 0)
                        return 0; /* no limit */
                canonical = tp_rate_schedule_format(&sched);
                tp_rate_schedule_clear(&sched);
                if (!canonical)
                        return fail(err, -ENOMEM, k->key, "out of memory");
                if (strlen(canonical) >= VB_JOBOPTS_TEXT_MAX)
                        return fail(err, -EINVAL, k->key, "'%s': too long (at most %d bytes)", shown,
                                    VB_JOBOPTS_TEXT_MAX - 1);
                strcpy(v->text, canonical);
                return 0;
        }
        case VB_JOBOPT_COMMAND:
                memset(v->text, 0, sizeof(v->text));
                if (is_none(s))
                        return 0;
                if (strlen(s) >= VB_JOBOPTS_TEXT_MAX)
                        return fail(err, -EINVAL, k->key, "'%s': too long (at most %d bytes)", shown,
                                    VB_JOBOPTS_TEXT_MAX - 1);
                strcpy(v->text, s);
                return 0;
        }
        return fail(err, -EINVAL, k->key, "option of unknown type %d", (int)k->type);
}

void vb_jobopts_defaults(vb_jobopts *o)
{
        memset(o, 0, sizeof(*o));
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                optval v;

                /* The defaults need no memory ("none" schedules are not
                 * parsed into windows): only a bad table fails here, and
                 * the unit tests parse every default. */
                if (parse_text(k, k->def, &v, NULL) < 0)
                        abort();
                store(o, k, &v);
        }
}

/* Setting compression to anything but adjustable leaves no use for a level. */
static void compression_changed(vb_jobopts *o)
{
        if (o->compression != VB_JOB_COMPRESSION_ADJUSTABLE)
                o->compression_level = 0;
}

int vb_jobopts_set(vb_jobopts *o, const char *key, const char *value_text, char **err)
{
        const vb_jobopt *k;
        optval v;
        int r;

        if (err)
                *err = NULL;
        if (!o || !key)
                return -EINVAL;
        k = vb_jobopt_find(key);
        if (!k)
                return fail(err, -ENOENT, key, "unknown option");
        if (!value_text)
                return fail(err, -EINVAL, key, "no value");
        r = parse_text(k, value_text, &v, err);
        if (r < 0)
                return r;
        store(o, k, &v);
        if (k->offset == offsetof(vb_jobopts, compression))
                compression_changed(o);
        return 0;
}

static const char *json_type_name(const json_t *j)
{
        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "something else";
}

static int parse_json(const vb_jobopt *k, json_t *j, optval *v, char **err)
{
        bool number = k->type == VB_JOBOPT_UINT || k->type == VB_JOBOPT_PERCENT || k->type == VB_JOBOPT_SIZE ||
                      k->type == VB_JOBOPT_DURATION;
        char shown[64];

        if (json_is_null(j))
                return parse_text(k, k->def, v, err);
        if (json_is_string(j)) {
                if (strlen(json_string_value(j)) != json_string_length(j))
                        return fail(err, -EINVAL, k->key, "NUL character in the value");
                return parse_text(k, json_string_value(j), v, err);
        }
        if (json_is_boolean(j) && k->type == VB_JOBOPT_BOOL) {
                v->n = json_is_true(j);
                return 0;
        }
        if (json_is_integer(j) && number) {
                json_int_t n = json_integer_value(j);

                snprintf(shown, sizeof(shown), "%" JSON_INTEGER_FORMAT, n);
                if (n < 0)
                        return fail_range(err, k, shown);
                v->n = (uint64_t)n;
                return check_number(k, v->n, shown, false, err);
        }
        if (json_is_real(j) && number)
                return fail(err, -EINVAL, k->key, "%g is not a whole number", json_real_value(j));
        return fail(err, -EINVAL, k->key, "expected %s, got %s",
                    k->type == VB_JOBOPT_BOOL ? "true or false"
                    : number                  ? "a whole number or a string"
                                              : "a string",
                    json_type_name(j));
}

int vb_jobopts_from_json(vb_jobopts *o, json_t *obj, char **err)
{
        vb_jobopts tmp;
        const char *key;
        json_t *j;
        int r;

        if (err)
                *err = NULL;
        if (!o)
                return -EINVAL;
        if (!json_is_object(obj))
                return fail(err, -EINVAL, "options", "expected an object, got %s",
                            obj ? json_type_name(obj) : "nothing");
        tmp = *o;
        json_object_foreach(obj, key, j)
        {
                const vb_jobopt *k = vb_jobopt_find(key);
                optval v;

                if (!k)
                        return fail(err, -ENOENT, key, "unknown option");
                r = parse_json(k, j, &v, err);
                if (r < 0)
                        return r;
                store(&tmp, k, &v);
        }
        if (json_object_get(obj, "compression") && !json_object_get(obj, "compression_level"))
                compression_changed(&tmp);
        r = vb_jobopts_check(&tmp, err);
        if (r < 0)
                return r;
        *o = tmp;
        return 0;
}

json_t *vb_jobopts_to_json(const vb_jobopts *o)
{
        json_t *obj;

        if (!o)
                return NULL;
        obj = json_object();
        if (!obj)
                return NULL;
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                char buf[VB_JOBOPTS_TEXT_MAX];
                uint64_t n = get_number(o, k);
                json_t *j;

                switch (k->type) {
                case VB_JOBOPT_BOOL:
                        j = json_boolean(n);
                        break;
                case VB_JOBOPT_UINT:
                case VB_JOBOPT_PERCENT:
                        j = n == 0 && (k->flags & VB_JOBOPT_OPTIONAL) ? json_null() : json_integer((json_int_t)n);
                        break;
                case VB_JOBOPT_RATE:
                case VB_JOBOPT_COMMAND: {
                        const char *s = cmember(o, k);

                        j = !memchr(s, 0, VB_JOBOPTS_TEXT_MAX) ? NULL : s[0] ? json_string(s) : json_null();
                        break;
                }
                default:
                        j = vb_jobopts_format(o, k, buf, sizeof(buf)) < 0 ? NULL : json_string(buf);
                        break;
                }
                if (!j || json_object_set_new(obj, k->key, j) < 0) {
                        json_decref(obj);
                        return NULL;
                }
        }
        return obj;
}

static int check_text(const vb_jobopts *o, const vb_jobopt *k, char **err)
{
        const char *s = cmember(o, k);
        char shown[SHOWN_MAX];
        optval v;

        if (!memchr(s, 0, VB_JOBOPTS_TEXT_MAX))
                return fail(err, -EINVAL, k->key, "not NUL-terminated within %d bytes", VB_JOBOPTS_TEXT_MAX);
        if (!s[0])
                return 0;
        if (is_none(s))
                return fail(err, -EINVAL, k->key, "'%s' is not a value (none is stored as \"\")",
                            show_text(s, shown, sizeof(shown)));
        return parse_text(k, s, &v, err);
}

int vb_jobopts_check(const vb_jobopts *o, char **err)
{
        char a[64], b[64];
        int r;

        if (err)
                *err = NULL;
        if (!o)
                return -EINVAL;
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                uint64_t n;

                if (is_text(k)) {
                        r = check_text(o, k, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                n = get_number(o, k);
                if (vb_jobopts_format(o, k, a, sizeof(a)) < 0)
                        snprintf(a, sizeof(a), "%" PRId64, (int64_t)n);
                r = check_number(k, n, a, true, err);
                if (r < 0)
                        return r;
        }

        /* The rules between options. */
        if (o->compression == VB_JOB_COMPRESSION_ADJUSTABLE && o->compression_level == 0)
                return fail(err, -EINVAL, "compression_level", "required with compression adjustable (1-%d)",
                            DD_COMPRESSION_LEVEL_MAX);
        if (o->compression != VB_JOB_COMPRESSION_ADJUSTABLE && o->compression_level != 0)
                return fail(err, -EINVAL, "compression_level", "%u needs compression adjustable (compression is %s)",
                            o->compression_level, enum_name(vb_jobopt_find("compression"), (int)o->compression));
        if (o->resume_buffer < o->read_buffer) {
                format_size(o->resume_buffer, a, sizeof(a));
                format_size(o->read_buffer, b, sizeof(b));
                return fail(err, -EINVAL, "resume_buffer",
                            "%s is less than read_buffer (%s): it must hold at least one read", a, b);
        }
        /* The ranges of both keep this true; the transport relies on it. */
        if (vb_jobopts_connections_per_disk(o) > VB_JOBOPTS_CONNECTIONS_MAX)
                return fail(err, -EINVAL, "streams_per_disk", "more than %d connections per disk",
                            VB_JOBOPTS_CONNECTIONS_MAX);
        return 0;
}

bool vb_jobopts_equal(const vb_jobopts *a, const vb_jobopts *b)
{
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                if (is_text(k)) {
                        if (strncmp(cmember(a, k), cmember(b, k), VB_JOBOPTS_TEXT_MAX) != 0)
                                return false;
                } else if (get_number(a, k) != get_number(b, k))
                        return false;
        }
        return true;
}

int vb_jobopts_compression_level(const vb_jobopts *o)
{
        switch (o->compression) {
        case VB_JOB_COMPRESSION_NONE:
                return DD_COMPRESSION_NONE;
        case VB_JOB_COMPRESSION_ADJUSTABLE:
                return (int)o->compression_level;
        default:
                return DD_COMPRESSION_FAST;
        }
}

unsigned vb_jobopts_connections_per_disk(const vb_jobopts *o)
{
        return MAX(o->parallel_disks, o->streams_per_disk);
}

/* Writes text as lines of at most width columns (a longer word stands
 * alone), each indented by indent spaces. */
static void print_wrapped(FILE *f, int indent, int width, const char *text)
{
        const char *p = text;

        while (*p) {
                const char *end = p, *brk = NULL;
                int col = indent;

                while (*end && (col < width || !brk)) {
                        if (*end == ' ')
                                brk = end;
                        end++;
                        col++;
                }
                if (!*end || !brk || col < width)
                        brk = end;
                fprintf(f, "%*s%.*s\n", indent, "", (int)(brk - p), p);
                p = brk;
                while (*p == ' ')
                        p++;
        }
}

void vb_jobopts_help(FILE *f)
{
        int wk = 3, wd = 7;
        char range[256];

        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                wk = MAX(wk, (int)strlen(k->key));
                wd = MAX(wd, (int)strlen(k->def));
        }
        fprintf(f, "Job options, each given as --set KEY=VALUE: on/off; sizes like 64K, 10M, 500G;\n"
                   "durations like 90s, 10m, 1h; none unsets a command, a speed limit or\n"
                   "compression_level.\n");
        fprintf(f, "  %-*s  %-*s  %s\n", wk, "KEY", wd, "DEFAULT", "VALUES");
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                if (vb_jobopt_format_range(k, range, sizeof(range)) < 0)
                        range[0] = 0;
                fprintf(f, "  %-*s  %-*s  %s\n", wk, k->key, wd, k->def, range);
                print_wrapped(f, 6, 79, k->description);
        }
        fprintf(f, "Speed limits: windows separated by ';', each [DAYS] [HH:MM-HH:MM] RATE, RATE in\n"
                   "KiB/s, MiB/s or GiB/s; the first window that matches wins. For instance:\n"
                   "  'mon-fri 08:00-18:00 50MiB/s; 22:00-06:00 1GiB/s'\n");
}

/* A Markdown table cell: '|' escaped. */
static void md_cell(FILE *f, const char *s)
{
        fputs("| ", f);
        for (; *s; s++) {
                if (*s == '|')
                        fputc('\\', f);
                fputc(*s, f);
        }
        fputc(' ', f);
}

void vb_jobopts_markdown(FILE *f)
{
        char range[256], key[64];

        fputs("| key | default | range | meaning |\n|---|---|---|---|\n", f);
        for (const vb_jobopt *k = vb_jobopts_table; k < OPTS_END; k++) {
                if (vb_jobopt_format_range(k, range, sizeof(range)) < 0)
                        range[0] = 0;
                snprintf(key, sizeof(key), "`%s`", k->key);
                md_cell(f, key);
                md_cell(f, k->def);
                md_cell(f, range);
                md_cell(f, k->description);
                fputs("|\n", f);
        }
}

int vb_transfer_setup(const vb_jobopts *o, const char *token_file, vb_transfer_limits *lim, tp_disk_opts *t,
                      const char **field, char **why)
{
        *t = (tp_disk_opts){ 0 };
        t->nbd.connections = o->streams_per_disk;
        t->nbd.request_size = (uint32_t)o->read_buffer;
        t->nbd.resume_buffer = o->resume_buffer;
        t->nbd.reconnect_window_ms = o->reconnect_window * 1000;
        t->nbd.timeout_ms = o->network_timeout * 1000;
        t->auth.token_file = token_file;
        if (o->transfer_rate[0]) {
                if (tp_rate_schedule_parse(o->transfer_rate, &lim->transfer_s, why) < 0) {
                        *field = "transfer_rate";
                        return -EINVAL;
                }
                tp_bucket_init(&lim->transfer_b, &lim->transfer_s);
                t->nbd.transfer = &lim->transfer_b;
        }
        if (o->disk_read_rate[0]) {
                if (tp_rate_schedule_parse(o->disk_read_rate, &lim->disk_s, why) < 0) {
                        *field = "disk_read_rate";
                        return -EINVAL;
                }
                tp_bucket_init(&lim->disk_b, &lim->disk_s);
                t->nbd.disk = &lim->disk_b;
        }
        return 0;
}

void vb_transfer_limits_clear(vb_transfer_limits *lim)
{
        tp_rate_schedule_clear(&lim->transfer_s);
        tp_rate_schedule_clear(&lim->disk_s);
}
