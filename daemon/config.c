/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.c -- the settings table and the vbakd.conf parser.
 *
 * DESIGN
 * vb_config_keys[] holds one row per key. parse_value() turns a text value
 * into a typed one and checks it against the row (type, bounds, names,
 * check function), writing a message into a caller's buffer on failure;
 * store_value() puts it into struct vb_config at the row's offset. Defaults,
 * file lines and `config set` all take that path. vb_config_load() applies a
 * file to a deep copy and swaps it in only when every line was good.
 * vb_config_text_set() edits the text of a file for `config set`: it
 * touches only the key's own line, so comments and layout stay, and it
 * checks the result with the same loader before anything is written.
 */
#include "daemon/config.h"
#include "dedup/blob.h"
#include "storagepool/sp.h"

#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <syslog.h>
#include <sys/stat.h>

#include "daemon/util.h"

/* A configuration file larger than this is refused. */
#define CONFIG_FILE_MAX (1024 * 1024)

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* offsetof(struct vb_config, field), and a compile error (distinct pointer
 * types under -Werror) when field is not of type ctype. */
#define FIELD(field, ctype)                                                                                            \
        (offsetof(struct vb_config, field) + 0 * sizeof(&((struct vb_config *)0)->field == (ctype *)0))

#define KEY_BOOL(name_, field_, def_, restart_, desc_)                                                                 \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_BOOL, .default_value = def_, .offset = FIELD(field_, bool),           \
                .needs_restart = restart_, .description = desc_,                                                       \
        }
#define KEY_INT(name_, field_, min_, max_, def_, restart_, desc_)                                                      \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_INT, .min = min_, .max = max_, .default_value = def_,                 \
                .offset = FIELD(field_, int), .needs_restart = restart_, .description = desc_,                         \
        }
#define KEY_SIZE(name_, field_, min_, max_, def_, restart_, desc_)                                                     \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_SIZE, .min = min_, .max = max_, .default_value = def_,                \
                .offset = FIELD(field_, uint64_t), .needs_restart = restart_, .description = desc_,                    \
        }
#define KEY_DURATION(name_, field_, min_, max_, def_, restart_, desc_)                                                 \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_DURATION, .min = min_, .max = max_, .default_value = def_,            \
                .offset = FIELD(field_, uint64_t), .needs_restart = restart_, .description = desc_,                    \
        }
#define KEY_STRING(name_, field_, check_, allowed_, def_, restart_, desc_)                                             \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_STRING, .default_value = def_, .offset = FIELD(field_, char *),       \
                .needs_restart = restart_, .description = desc_, .check = check_, .allowed = allowed_,                 \
        }
#define KEY_ENUM(name_, field_, values_, def_, restart_, desc_)                                                        \
        {                                                                                                              \
                .name = name_, .type = VB_CONFIG_ENUM, .default_value = def_, .offset = FIELD(field_, int),            \
                .needs_restart = restart_, .description = desc_, .values = values_,                                    \
        }

#define MIB (INT64_C(1) << 20)
#define MINUTE INT64_C(60)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

static const struct vb_config_enum_value log_levels[] = {
        { "debug", LOG_DEBUG },
        { "info", LOG_INFO },
        { "notice", LOG_NOTICE },
        { "warning", LOG_WARNING },
        { "warn", LOG_WARNING },
        { "error", LOG_ERR },
        { "err", LOG_ERR },
        { "crit", LOG_CRIT },
        { "alert", LOG_ALERT },
        { "emerg", LOG_EMERG },
        { NULL, 0 },
};

static const struct vb_config_enum_value transport_log_levels[] = {
        { "info", LOG_INFO },
        { "warning", LOG_WARNING },
        { "error", LOG_ERR },
        { NULL, 0 },
};

static const struct vb_config_enum_value fsync_modes[] = {
        { "always", SP_FSYNC_ALWAYS },
        { "none", SP_FSYNC_NONE },
        { NULL, 0 },
};

#define COMPRESSION_ALLOWED                                                                                            \
        "none, fast or zstd:N with N "                                                                                 \
        "1-" STRINGIFY(DD_COMPRESSION_LEVEL_MAX)

static int check_absolute_path(const char *value)
{
        if (value[0] != '/' || strlen(value) >= PATH_MAX)
                return -EINVAL;
        return 0;
}

static int check_compression(const char *value)
{
        int level;

        return dd_compression_from_string(value, &level);
}

/* The table: keep it in the order of etc/vbakd.conf. */
const struct vb_config_key vb_config_keys[] = {
        KEY_ENUM("log_level", log_level, log_levels, VB_CONFIG_LOG_LEVEL_DEFAULT, false,
                 "the daemon's log level; VBAK_LOG_LEVEL in the environment overrides it"),
        KEY_STRING("state_dir", state_dir, check_absolute_path, "an absolute path", VB_CONFIG_STATE_DIR_DEFAULT, true,
                   "directory of the catalog and other persistent state"),
        KEY_STRING("runtime_dir", runtime_dir, check_absolute_path, "an absolute path", VB_CONFIG_RUNTIME_DIR_DEFAULT,
                   true, "directory of the control socket and other runtime files"),
        KEY_INT("worker_threads", worker_threads, 1, 64, VB_CONFIG_WORKER_THREADS_DEFAULT, true,
                "threads hashing, compressing and doing file I/O"),
        KEY_SIZE("chunk_size", chunk_size, 1 * MIB, 4 * MIB, STRINGIFY(VB_CONFIG_CHUNK_SIZE_DEFAULT), false,
                 "size of the fixed chunks new backups are cut into"),
        KEY_STRING("compression", compression, check_compression, COMPRESSION_ALLOWED, VB_CONFIG_COMPRESSION_DEFAULT,
                   false, "chunk compression: none, fast (zstd, low level) or zstd:N"),
        KEY_ENUM("fsync", fsync, fsync_modes, VB_CONFIG_FSYNC_DEFAULT, false,
                 "always: fsync chunks, indexes and the catalog before a backup counts as done; none: never"),
        KEY_DURATION("gc_grace", gc_grace, 0, 30 * DAY, VB_CONFIG_GC_GRACE_DEFAULT, false,
                     "age an unreferenced chunk must reach before garbage collection removes it"),
        KEY_ENUM("transport_log_level", transport_log_level, transport_log_levels,
                 VB_CONFIG_TRANSPORT_LOG_LEVEL_DEFAULT, false, "level of the transport's own log file"),
        KEY_INT("cvd_port", cvd_port, 1, 65535, "8192", false, "the port of the disk service (vbak-cvd) on the hosts"),
        KEY_STRING("cvd_token_file", cvd_token_file, check_absolute_path, "an absolute path", "/etc/vbak/cvd.token",
                   false, "the token the disk services on the hosts share with the backup host"),
};

const size_t vb_config_n_keys = ELEMENTSOF(vb_config_keys);

/* A parsed value before it is stored. */
union value {
        bool b;
        int i;
        uint64_t u;
        char *s;
};

const struct vb_config_key *vb_config_find(const char *name)
{
        if (!name)
                return NULL;
        VB_CONFIG_FOREACH_KEY(k)
                if (streq(k->name, name))
                        return k;
        return NULL;
}

/* The helpers below work on any struct a row's offset points into (base). */
static void *field_ptr(void *base, const struct vb_config_key *k)
{
        return (char *)base + k->offset;
}

static const void *field_cptr(const void *base, const struct vb_config_key *k)
{
        return (const char *)base + k->offset;
}

/* snprintf that reports truncation as -ENOBUFS and returns the length. */
static int format_into(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static int format_into(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= size)
                return -ENOBUFS;
        return n;
}

static int format_size(uint64_t v, char *buf, size_t size)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "T", UINT64_C(1) << 40 },
                { "G", UINT64_C(1) << 30 },
                { "M", UINT64_C(1) << 20 },
                { "K", UINT64_C(1) << 10 },
        };

        for (size_t i = 0; v > 0 && i < ELEMENTSOF(units); i++)
                if (v % units[i].factor == 0)
                        return format_into(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
        return format_into(buf, size, "%" PRIu64, v);
}

static int format_duration(uint64_t v, char *buf, size_t size)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "d", 86400 },
                { "h", 3600 },
                { "m", 60 },
        };

        for (size_t i = 0; v > 0 && i < ELEMENTSOF(units); i++)
                if (v % units[i].factor == 0)
                        return format_into(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
        return format_into(buf, size, "%" PRIu64 "s", v);
}

/* The name shown for an enum value: the first one in the list. */
static const char *enum_name(const struct vb_config_key *k, int value)
{
        for (const struct vb_config_enum_value *e = k->values; e->name; e++)
                if (e->value == value)
                        return e->name;
        return NULL;
}

int vb_config_format_allowed(const struct vb_config_key *k, char *buf, size_t size)
{
        char lo[32], hi[32];
        size_t len = 0;

        if (!k || !buf || size == 0)
                return -EINVAL;
        switch (k->type) {
        case VB_CONFIG_BOOL:
                return format_into(buf, size, "yes or no");
        case VB_CONFIG_INT:
                return format_into(buf, size, "%" PRId64 "-%" PRId64, k->min, k->max);
        case VB_CONFIG_SIZE:
                format_size((uint64_t)k->min, lo, sizeof(lo));
                format_size((uint64_t)k->max, hi, sizeof(hi));
                return format_into(buf, size, "%s-%s", lo, hi);
        case VB_CONFIG_DURATION:
                format_duration((uint64_t)k->min, lo, sizeof(lo));
                format_duration((uint64_t)k->max, hi, sizeof(hi));
                return format_into(buf, size, "%s-%s", lo, hi);
        case VB_CONFIG_STRING:
                return format_into(buf, size, "%s", k->allowed ? k->allowed : "any text");
        case VB_CONFIG_ENUM:
                buf[0] = 0;
                for (const struct vb_config_enum_value *e = k->values; e->name; e++) {
                        int n;

                        if (enum_name(k, e->value) != e->name)
                                continue; /* an alias */
                        n = format_into(buf + len, size - len, "%s%s", len > 0 ? ", " : "", e->name);
                        if (n < 0)
                                return n;
                        len += (size_t)n;
                }
                return (int)len;
        default:
                return -EINVAL;
        }
}

int vb_config_key_format(const struct vb_config_key *k, const void *base, char *buf, size_t size)
{
        const void *p;

        if (!k || !base || !buf || size == 0)
                return -EINVAL;
        p = field_cptr(base, k);

        switch (k->type) {
        case VB_CONFIG_BOOL:
                return format_into(buf, size, "%s", *(const bool *)p ? "yes" : "no");
        case VB_CONFIG_INT:
                return format_into(buf, size, "%d", *(const int *)p);
        case VB_CONFIG_SIZE:
                return format_size(*(const uint64_t *)p, buf, size);
        case VB_CONFIG_DURATION:
                return format_duration(*(const uint64_t *)p, buf, size);
        case VB_CONFIG_STRING: {
                const char *s = *(char *const *)p;
                return format_into(buf, size, "%s", s ? s : "");
        }
        case VB_CONFIG_ENUM: {
                const char *name = enum_name(k, *(const int *)p);
                if (!name)
                        return -EINVAL;
                return format_into(buf, size, "%s", name);
        }
        default:
                return -EINVAL;
        }
}

int vb_config_format_value(const struct vb_config *c, const struct vb_config_key *k, char *buf, size_t size)
{
        if (!c || !k || k < vb_config_keys || k >= vb_config_keys + vb_config_n_keys)
                return -EINVAL;
        return vb_config_key_format(k, c, buf, size);
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

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

static int parse_int64(const char *s, int64_t *ret)
{
        char *end;
        long long v;

        if (!isdigit((unsigned char)s[0]) && !((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1])))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || *end != 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Text from a file for a message: cut after SHOWN_MAX - 4 bytes (ending in
 * "..."), control characters as '?'. Returns buf. */
#define SHOWN_MAX 72
static const char *show_text(const char *s, char *buf, size_t size)
{
        size_t n = 0;

        assert(size >= 4);
        for (; *s && n < size - 4; s++)
                buf[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
        if (*s) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = 0;
        return buf;
}

/* Parses value for k into *ret (a new string for STRING keys). On failure
 * writes a message naming key, value and what is allowed into msg. */
static int parse_value(const struct vb_config_key *k, const char *value, union value *ret, char *msg, size_t msg_size)
{
        char allowed[256], shown[SHOWN_MAX];
        const char *problem;
        int64_t i = 0;
        uint64_t u = 0;
        bool b = false;
        int r;

        if (value[0] == 0) {
                problem = "empty value";
                goto fail;
        }
        for (const char *s = value; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f) {
                        problem = "control character in value";
                        goto fail;
                }

        switch (k->type) {
        case VB_CONFIG_BOOL:
                if (parse_bool(value, &b) < 0) {
                        problem = "not a boolean";
                        goto fail;
                }
                ret->b = b;
                return 0;
        case VB_CONFIG_INT:
                r = parse_int64(value, &i);
                if (r == -ERANGE || (r >= 0 && (i < k->min || i > k->max))) {
                        problem = "out of range";
                        goto fail;
                }
                if (r < 0) {
                        problem = "not an integer";
                        goto fail;
                }
                ret->i = (int)i;
                return 0;
        case VB_CONFIG_SIZE:
        case VB_CONFIG_DURATION:
                if (k->type == VB_CONFIG_SIZE)
                        r = vb_parse_size(value, &u);
                else
                        r = vb_parse_duration(value, &u);
                if (r == -ERANGE || (r >= 0 && (u > INT64_MAX || (int64_t)u < k->min || (int64_t)u > k->max))) {
                        problem = "out of range";
                        goto fail;
                }
                if (r < 0) {
                        problem = k->type == VB_CONFIG_SIZE ? "not a size (like 4M, 64KiB, 4096)"
                                                            : "not a duration (like 30s, 10m, 2h, 7d)";
                        goto fail;
                }
                ret->u = u;
                return 0;
        case VB_CONFIG_STRING:
                if (k->check && k->check(value) < 0) {
                        problem = "not allowed";
                        goto fail;
                }
                ret->s = strdup(value);
                if (!ret->s) {
                        snprintf(msg, msg_size, "%s: out of memory", k->name);
                        return -ENOMEM;
                }
                return 0;
        case VB_CONFIG_ENUM:
                for (const struct vb_config_enum_value *e = k->values; e->name; e++)
                        if (streq(value, e->name)) {
                                ret->i = e->value;
                                return 0;
                        }
                problem = "not allowed";
                goto fail;
        default:
                snprintf(msg, msg_size, "%s: key of unknown type %d", k->name, (int)k->type);
                return -EINVAL;
        }

fail:
        if (vb_config_format_allowed(k, allowed, sizeof(allowed)) < 0)
                snprintf(allowed, sizeof(allowed), "?");
        snprintf(msg, msg_size, "%s = \"%s\": %s; allowed: %s", k->name, show_text(value, shown, sizeof(shown)),
                 problem, allowed);
        return -EINVAL;
}

static void store_value(void *base, const struct vb_config_key *k, union value *v)
{
        void *p = field_ptr(base, k);

        switch (k->type) {
        case VB_CONFIG_BOOL:
                *(bool *)p = v->b;
                break;
        case VB_CONFIG_INT:
        case VB_CONFIG_ENUM:
                *(int *)p = v->i;
                break;
        case VB_CONFIG_SIZE:
        case VB_CONFIG_DURATION:
                *(uint64_t *)p = v->u;
                break;
        case VB_CONFIG_STRING:
                free(*(char **)p);
                *(char **)p = TAKE_PTR(v->s);
                break;
        default:
                assert(!"unknown config key type");
                abort();
        }
}

void vb_config_free(struct vb_config *c)
{
        if (!c)
                return;
        VB_CONFIG_FOREACH_KEY(k)
                if (k->type == VB_CONFIG_STRING) {
                        char **p = field_ptr(c, k);
                        free(*p);
                        *p = NULL;
                }
}

int vb_config_init_defaults(struct vb_config *c)
{
        char msg[512];

        if (!c)
                return -EINVAL;
        memset(c, 0, sizeof(*c));
        VB_CONFIG_FOREACH_KEY(k) {
                union value v;
                int r = parse_value(k, k->default_value, &v, msg, sizeof(msg));

                if (r < 0) {
                        vb_config_free(c);
                        return r;
                }
                store_value(c, k, &v);
        }
        return 0;
}

/* A deep copy of src into *dst. On failure *dst holds no allocation. */
static int config_copy(struct vb_config *dst, const struct vb_config *src)
{
        *dst = *src;
        VB_CONFIG_FOREACH_KEY(k)
                if (k->type == VB_CONFIG_STRING)
                        *(char **)field_ptr(dst, k) = NULL;
        VB_CONFIG_FOREACH_KEY(k) {
                const char *s;
                char *copy;

                if (k->type != VB_CONFIG_STRING)
                        continue;
                s = *(char *const *)field_cptr(src, k);
                if (!s)
                        continue;
                copy = strdup(s);
                if (!copy) {
                        vb_config_free(dst);
                        return -ENOMEM;
                }
                *(char **)field_ptr(dst, k) = copy;
        }
        return 0;
}

static void set_error(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static void set_error(char **ret_error, const char *fmt, ...)
{
        va_list ap;

        if (!ret_error)
                return;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
}

int vb_config_key_set(const struct vb_config_key *k, void *base, const char *value, char **ret_error)
{
        char msg[512];
        union value v;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!k || !base || !value)
                return -EINVAL;
        r = parse_value(k, value, &v, msg, sizeof(msg));
        if (r < 0) {
                set_error(ret_error, "%s", msg);
                return r;
        }
        store_value(base, k, &v);
        return 0;
}

int vb_config_set(struct vb_config *c, const char *key, const char *value, char **ret_error)
{
        const struct vb_config_key *k;

        if (ret_error)
                *ret_error = NULL;
        if (!c || !key || !value)
                return -EINVAL;
        k = vb_config_find(key);
        if (!k) {
                char shown[SHOWN_MAX];
                set_error(ret_error, "unknown key \"%s\"", show_text(key, shown, sizeof(shown)));
                return -ENOENT;
        }
        return vb_config_key_set(k, c, value, ret_error);
}

static char *skip_space(char *s)
{
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v')
                s++;
        return s;
}

static void trim_end(char *s)
{
        size_t n = strlen(s);

        while (n > 0 &&
               (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\f' || s[n - 1] == '\v'))
                s[--n] = 0;
}

/* Applies the text buf (len bytes, NUL at buf[len]; its lines are cut up
 * in place) to c, all or nothing; path names it in messages. When lines is
 * not NULL (vb_config_n_keys entries) each key's entry gets the number of
 * the line that set it, 0 for none. */
static int load_text(struct vb_config *c, const char *path, char *buf, size_t len, unsigned *lines, char **ret_error)
{
        struct vb_config copy;
        char msg[512];
        unsigned line_no = 0;
        char *p, *end, *nl;
        int r;

        if (lines)
                memset(lines, 0, vb_config_n_keys * sizeof(*lines));
        r = config_copy(&copy, c);
        if (r < 0) {
                set_error(ret_error, "%s: out of memory", path);
                return r;
        }

        for (p = buf, end = buf + len; p < end; p = nl + 1) {
                const struct vb_config_key *k;
                char *eq, *key, *value;
                union value v;

                line_no++;
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        nl = end; /* buf[len] is the NUL vb_read_file_at() adds */
                if (memchr(p, 0, (size_t)(nl - p))) {
                        set_error(ret_error, "%s:%u: NUL byte in line", path, line_no);
                        r = -EINVAL;
                        goto fail;
                }
                *nl = 0;

                key = skip_space(p);
                if (key[0] == 0 || key[0] == '#')
                        continue;
                eq = strchr(key, '=');
                if (!eq) {
                        set_error(ret_error, "%s:%u: expected \"key = value\"", path, line_no);
                        r = -EINVAL;
                        goto fail;
                }
                *eq = 0;
                trim_end(key);
                value = skip_space(eq + 1);
                trim_end(value);
                if (key[0] == 0) {
                        set_error(ret_error, "%s:%u: expected \"key = value\", found no key", path, line_no);
                        r = -EINVAL;
                        goto fail;
                }
                k = vb_config_find(key);
                if (!k) {
                        char shown[SHOWN_MAX];
                        set_error(ret_error, "%s:%u: unknown key \"%s\"", path, line_no,
                                  show_text(key, shown, sizeof(shown)));
                        r = -EINVAL;
                        goto fail;
                }
                r = parse_value(k, value, &v, msg, sizeof(msg));
                if (r < 0) {
                        set_error(ret_error, "%s:%u: %s", path, line_no, msg);
                        goto fail;
                }
                store_value(&copy, k, &v);
                if (lines)
                        lines[k - vb_config_keys] = line_no;
        }

        vb_config_free(c);
        *c = copy;
        return 0;

fail:
        vb_config_free(&copy);
        if (lines)
                memset(lines, 0, vb_config_n_keys * sizeof(*lines));
        return r;
}

int vb_config_load_lines(struct vb_config *c, const char *path, unsigned *lines, char **ret_error)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!c || !path)
                return -EINVAL;
        r = vb_read_file_at(AT_FDCWD, path, CONFIG_FILE_MAX, &buf, &len);
        if (r < 0) {
                set_error(ret_error, "%s: %s", path, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
                return r;
        }
        return load_text(c, path, buf, len, lines, ret_error);
}

int vb_config_load(struct vb_config *c, const char *path, char **ret_error)
{
        return vb_config_load_lines(c, path, NULL, ret_error);
}

/* ---- close matches, and `config set` on the text of a file ---- */

/* The edit distance between a and b (insertions, deletions, substitutions),
 * or SIZE_MAX for names too long to bother. */
static size_t edit_distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), row[65];

        if (la > 64 || lb > 64)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];

                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        diag = up;
                        row[j] = best;
                }
        }
        return row[lb];
}

size_t vb_config_close_matches(const char *name, const struct vb_config_key **ret, size_t max)
{
        size_t dist[64], n = 0, limit;

        if (!name || !ret)
                return 0;
        if (max > ELEMENTSOF(dist))
                max = ELEMENTSOF(dist);
        /* A third of the name may be wrong; a part of at least 3 letters of a
         * key (or a key inside the name) counts too, after the typos. */
        limit = strlen(name) / 3 < 2 ? 2 : strlen(name) / 3;
        VB_CONFIG_FOREACH_KEY(k) {
                size_t d = edit_distance(name, k->name), i;

                if (d > limit) {
                        if (strlen(name) < 3 || (!strstr(k->name, name) && !strstr(name, k->name)))
                                continue;
                        d = limit + 1 + (d == SIZE_MAX ? 64 : d);
                }
                /* Insert sorted by distance, table order among equals. */
                for (i = n; i > 0 && dist[i - 1] > d; i--)
                        if (i < max) {
                                dist[i] = dist[i - 1];
                                ret[i] = ret[i - 1];
                        }
                if (i < max) {
                        dist[i] = d;
                        ret[i] = k;
                        if (n < max)
                                n++;
                }
        }
        return n;
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Whether the line p[0..n) sets key: "key = ..." or, commented, "# key =
 * ...", with any blanks around the parts. */
static bool line_sets_key(const char *p, size_t n, const char *key, bool commented)
{
        const char *end = p + n;
        size_t klen = strlen(key);

        while (p < end && is_blank(*p))
                p++;
        if (commented) {
                if (p == end || *p != '#')
                        return false;
                p++;
                while (p < end && is_blank(*p))
                        p++;
        }
        if ((size_t)(end - p) < klen || memcmp(p, key, klen) != 0)
                return false;
        p += klen;
        while (p < end && is_blank(*p))
                p++;
        return p < end && *p == '=';
}

/* The message for an unknown key, with the close matches. */
static void unknown_key_error(const char *key, char **ret_error)
{
        const struct vb_config_key *m[3];
        char shown[SHOWN_MAX], list[256] = "";
        size_t n = vb_config_close_matches(key, m, ELEMENTSOF(m)), len = 0;

        for (size_t i = 0; i < n; i++) {
                int w = format_into(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", m[i]->name);
                if (w < 0)
                        break;
                len += (size_t)w;
        }
        if (n > 0)
                set_error(ret_error, "unknown key \"%s\"; did you mean %s?", show_text(key, shown, sizeof(shown)),
                          list);
        else
                set_error(ret_error, "unknown key \"%s\"", show_text(key, shown, sizeof(shown)));
}

int vb_config_text_set(const char *path, const char *text, size_t len, const char *key, const char *value,
                       char **ret_text, size_t *ret_len, struct vb_config_edit *ret_edit, char **ret_error)
{
        _cleanup_free_ char *line = NULL, *out = NULL, *check = NULL;
        const struct vb_config_key *k;
        struct vb_config c;
        struct vb_config_edit edit = {};
        size_t at_start = 0, at_end = 0, out_len, line_len;
        unsigned line_no = 0, active = 0, commented = 0;
        bool cr = false;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!path || (!text && len > 0) || !key || !value || !ret_text || !ret_len)
                return -EINVAL;
        if (len > CONFIG_FILE_MAX) {
                set_error(ret_error, "%s: larger than 1 MiB", path);
                return -EFBIG;
        }
        k = vb_config_find(key);
        if (!k) {
                unknown_key_error(key, ret_error);
                return -ENOENT;
        }

        /* The daemon's own parser decides. The file drops blanks around a
         * value, so a value with them would not read back as given. */
        r = vb_config_init_defaults(&c);
        if (r < 0)
                return r;
        r = vb_config_key_set(k, &c, value, ret_error);
        vb_config_free(&c);
        if (r < 0)
                return r;
        if (is_blank(value[0]) || is_blank(value[strlen(value) - 1])) {
                set_error(ret_error, "%s: the value has blanks around it, which the file does not keep", k->name);
                return -EINVAL;
        }

        /* The last active line of the key, else its last commented one. */
        for (size_t p = 0; p < len;) {
                const char *nl = memchr(text + p, '\n', len - p);
                size_t e = nl ? (size_t)(nl - text) : len;

                line_no++;
                if (line_sets_key(text + p, e - p, k->name, false)) {
                        active = line_no;
                        at_start = p;
                        at_end = e;
                } else if (!active && line_sets_key(text + p, e - p, k->name, true)) {
                        commented = line_no;
                        at_start = p;
                        at_end = e;
                }
                p = e + 1;
        }
        if (active || commented)
                cr = at_end > at_start && text[at_end - 1] == '\r';

        if (asprintf(&line, "%s = %s%s", k->name, value, cr ? "\r" : "") < 0)
                return -ENOMEM;
        line_len = strlen(line);
        if (active || commented) {
                edit.line = active ? active : commented;
                edit.kind = active ? VB_CONFIG_EDIT_REPLACED : VB_CONFIG_EDIT_UNCOMMENTED;
                if (active && at_end - at_start == line_len && memcmp(text + at_start, line, line_len) == 0)
                        edit.kind = VB_CONFIG_EDIT_UNCHANGED;
        } else {
                /* A last line without its newline gets one first. */
                bool nl = len > 0 && text[len - 1] != '\n';

                edit.kind = VB_CONFIG_EDIT_APPENDED;
                edit.line = line_no + 1;
                at_start = at_end = len;
                free(line);
                line = NULL;
                if (asprintf(&line, "%s%s = %s\n", nl ? "\n" : "", k->name, value) < 0)
                        return -ENOMEM;
                line_len = strlen(line);
        }

        out_len = at_start + line_len + (len - at_end);
        out = malloc(out_len + 1);
        check = malloc(out_len + 1);
        if (!out || !check)
                return -ENOMEM;
        memcpy(out, text, at_start);
        memcpy(out + at_start, line, line_len);
        memcpy(out + at_start + line_len, text + at_end, len - at_end);
        out[out_len] = 0;

        /* The whole file must load as vbakd will load it: an earlier bad line
         * is reported now rather than when the daemon next starts. */
        memcpy(check, out, out_len + 1);
        r = vb_config_init_defaults(&c);
        if (r < 0)
                return r;
        r = load_text(&c, path, check, out_len, NULL, ret_error);
        vb_config_free(&c);
        if (r < 0)
                return r;

        if (ret_edit)
                *ret_edit = edit;
        *ret_text = TAKE_PTR(out);
        *ret_len = out_len;
        return 0;
}

/* Writes len bytes of data over target atomically with mode (and owner
 * uid:gid unless -1): a temp file next to it, fsync'd, renamed, the
 * directory fsync'd. */
static int replace_file(const char *target, const char *data, size_t len, mode_t mode, uid_t uid, gid_t gid,
                        char **ret_error)
{
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        _cleanup_close_ int fd = -1;
        char *slash;
        int r;

        dir = strdup(target);
        if (!dir || asprintf(&tmp, "%s.tmp-XXXXXX", target) < 0)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = 0;
        else if (slash)
                *slash = 0;
        else
                strcpy(dir, ".");

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT || r == -ENOTDIR)
                        set_error(ret_error, "%s: directory %s does not exist", target, dir);
                else
                        set_error(ret_error, "%s: cannot create a file in %s: %s", target, dir, strerror(-r));
                return r;
        }
        r = vb_write_all(fd, data, len);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        /* Root rewriting a file of another owner keeps that owner; anyone
         * else cannot give a file away, and becomes its owner. */
        if (r >= 0 && uid != (uid_t)-1 && (uid != geteuid() || gid != getegid()) && fchown(fd, uid, gid) < 0 &&
            errno != EPERM)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, target) < 0)
                r = -errno;
        if (r < 0) {
                set_error(ret_error, "%s: cannot write: %s", target, strerror(-r));
                unlink(tmp);
                return r;
        }
        r = vb_fsync_dir_at(AT_FDCWD, dir);
        if (r < 0) {
                set_error(ret_error, "%s: fsync of %s: %s", target, dir, strerror(-r));
                return r;
        }
        return 0;
}

int vb_config_file_set(const char *path, const char *key, const char *value, struct vb_config_edit *ret_edit,
                       char **ret_error)
{
        _cleanup_free_ char *old = NULL, *text = NULL, *target = NULL;
        struct vb_config_edit edit = {};
        struct stat st = {};
        size_t len = 0, text_len = 0;
        bool exists = true;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!path || !key || !value)
                return -EINVAL;
        r = vb_read_file_at(AT_FDCWD, path, CONFIG_FILE_MAX, &old, &len);
        if (r == -ENOENT)
                exists = false;
        else if (r < 0) {
                set_error(ret_error, "%s: %s", path, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
                return r;
        }
        /* A symlink (a file kept elsewhere) stays one: its target is rewritten. */
        target = exists ? realpath(path, NULL) : strdup(path);
        if (!target || (exists && stat(target, &st) < 0)) {
                r = errno ? -errno : -ENOMEM;
                set_error(ret_error, "%s: %s", path, strerror(-r));
                return r;
        }
        r = vb_config_text_set(path, exists ? old : "", len, key, value, &text, &text_len, &edit, ret_error);
        if (r < 0)
                return r;
        edit.created = !exists;
        if (!exists || edit.kind != VB_CONFIG_EDIT_UNCHANGED) {
                r = replace_file(target, text, text_len, exists ? st.st_mode & 07777 : 0644,
                                 exists ? st.st_uid : (uid_t)-1, exists ? st.st_gid : (gid_t)-1, ret_error);
                if (r < 0)
                        return r;
        }
        if (ret_edit)
                *ret_edit = edit;
        return 0;
}
