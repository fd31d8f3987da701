/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rate.c -- speed limit schedules (parse, look up, format) and the token
 * bucket that applies them. rate.h has the syntax and the design.
 *
 * DESIGN: the parser is a small recursive descent over the text with a
 * cursor, so every error names the position (1-based) where it found what
 * it did not expect. Rates are computed in integers (a decimal mantissa and
 * a power of ten, rounded to the byte), and the formatter picks the shortest
 * text that parses back to the same byte count, so format(parse(x)) is a
 * fixed point.
 */
#include "transport/rate.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "daemon/util.h"

#define NSEC_PER_SEC UINT64_C(1000000000)
#define MAX_DIGITS 15 /* before the point: more is out of range whatever the unit */
#define MAX_DECIMALS 6

typedef unsigned __int128 u128;

static const char *const day_names[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

/* Largest first: the formatter uses the first one that keeps the rate exact. */
static const struct {
        const char *name;
        uint64_t factor;
} units[] = {
        { "GiB/s", UINT64_C(1) << 30 },
        { "MiB/s", UINT64_C(1) << 20 },
        { "KiB/s", UINT64_C(1) << 10 },
        { "B/s", 1 },
};

static const char *const unlimited_words[] = { "unlimited", "none" };

typedef struct parser {
        const char *spec;
        const char *p;
        char **err;
} parser;

/* What ends an item of a window: a space, ';' or the end. */
static bool is_sep(char c)
{
        return c == '\0' || c == ';' || isspace((unsigned char)c);
}

static void skip_space(parser *ps)
{
        while (isspace((unsigned char)*ps->p))
                ps->p++;
}

/* For messages: the item at `at` in quotes (up to a space, ';', ',' or '-'),
 * "a space" or "the end". */
static const char *got(const char *at, char *buf, size_t size)
{
        size_t n = 0;

        if (*at == '\0')
                return "the end";
        if (isspace((unsigned char)*at))
                return "a space";
        while (at[n] && !isspace((unsigned char)at[n]) && !strchr(";,-", at[n]) && n < 24)
                n++;
        snprintf(buf, size, "'%.*s'", (int)MAX(n, 1), at);
        return buf;
}

#define GOT(at) got((at), (char[32]){ 0 }, 32)

static int fail(parser *ps, const char *at, const char *fmt, ...) _printf_(3, 4);
static int fail(parser *ps, const char *at, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        if (!ps->err)
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                msg = NULL;
                return -ENOMEM;
        }
        if (asprintf(ps->err, "position %zu: %s", (size_t)(at - ps->spec) + 1, msg) < 0) {
                *ps->err = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* The length of "unlimited" or "none" (any case) at p when it stands alone,
 * else 0. */
static size_t unlimited_word_at(const char *p)
{
        for (size_t i = 0; i < ELEMENTSOF(unlimited_words); i++) {
                size_t l = strlen(unlimited_words[i]);

                if (strncasecmp(p, unlimited_words[i], l) == 0 && is_sep(p[l]))
                        return l;
        }
        return 0;
}

/* The day (0 Monday .. 6 Sunday) whose name is the whole word at p, or -1. */
static int day_at(const char *p)
{
        size_t n = 0;

        while (isalpha((unsigned char)p[n]))
                n++;
        if (n != 3)
                return -1;
        for (int i = 0; i < 7; i++)
                if (strncasecmp(p, day_names[i], 3) == 0)
                        return i;
        return -1;
}

/* DAY[-DAY][,DAY[-DAY]]... */
static int parse_days(parser *ps, uint8_t *ret)
{
        uint8_t days = 0;

        for (;;) {
                const char *item = ps->p;
                uint8_t bits = 0;
                int a, b;

                a = day_at(ps->p);
                if (a < 0)
                        return fail(ps, ps->p, "expected a day (mon, tue, wed, thu, fri, sat, sun), got %s",
                                    GOT(ps->p));
                ps->p += 3;
                b = a;
                if (*ps->p == '-') {
                        ps->p++;
                        b = day_at(ps->p);
                        if (b < 0)
                                return fail(ps, ps->p, "expected a day to end the range (mon..sun), got %s",
                                            GOT(ps->p));
                        ps->p += 3;
                }
                /* A range may wrap over the week end: fri-mon. */
                for (int d = a;; d = (d + 1) % 7) {
                        bits |= 1u << d;
                        if (d == b)
                                break;
                }
                if (days & bits)
                        return fail(ps, item, "'%.*s' repeats a day listed before it", (int)(ps->p - item), item);
                days |= bits;
                if (*ps->p != ',')
                        break;
                ps->p++;
        }
        if (!is_sep(*ps->p))
                return fail(ps, ps->p, "expected ',' or a space after the days, got %s", GOT(ps->p));
        *ret = days;
        return 0;
}

/* Digits then ':': what starts a time range rather than a rate. */
static bool time_at(const char *p)
{
        while (isdigit((unsigned char)*p))
                p++;
        return *p == ':';
}

/* HH:MM or H:MM, as minutes since midnight; 24:00 only as an end. */
static int parse_time(parser *ps, bool end, uint16_t *ret)
{
        const char *at = ps->p, *p = ps->p;
        unsigned h = 0, m;
        int n = 0;

        while (isdigit((unsigned char)*p) && n < 3) {
                h = h * 10 + (unsigned)(*p++ - '0');
                n++;
        }
        if (n == 0 || n > 2 || p[0] != ':' || !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
            isdigit((unsigned char)p[3]))
                return fail(ps, at, "expected a time HH:MM, got %s", GOT(at));
        m = (unsigned)(p[1] - '0') * 10 + (unsigned)(p[2] - '0');
        if (m > 59)
                return fail(ps, at, "minute %02u is out of range (00-59)", m);
        if (h == 24 && m == 0 && !end)
                return fail(ps, at, "24:00 is only valid as the end of a time range");
        if (h > 23 && !(h == 24 && m == 0))
                return fail(ps, at, "hour %02u is out of range (00-23, or 24:00 as an end)", h);
        ps->p = p + 3;
        *ret = (uint16_t)(h * 60 + m);
        return 0;
}

/* FROM-TO */
static int parse_times(parser *ps, uint16_t *ret_from, uint16_t *ret_to)
{
        const char *at = ps->p;
        uint16_t from, to;
        int r;

        r = parse_time(ps, false, &from);
        if (r < 0)
                return r;
        if (*ps->p != '-')
                return fail(ps, ps->p, "expected '-' and an end time after the start time, got %s", GOT(ps->p));
        ps->p++;
        r = parse_time(ps, true, &to);
        if (r < 0)
                return r;
        if (from == to)
                return fail(ps, at,
                            "the time range %.*s is empty (it ends where it starts; 00:00-24:00 is a whole day)",
                            (int)(ps->p - at), at);
        if (!is_sep(*ps->p))
                return fail(ps, ps->p, "expected a space after the time range, got %s", GOT(ps->p));
        *ret_from = from;
        *ret_to = to;
        return 0;
}

/* NUMBER[.DIGITS][ ]UNIT or unlimited/none. `expected` names what may stand
 * at this point, for the message when nothing fits. */
static int parse_rate(parser *ps, const char *expected, uint64_t *ret)
{
        const char *at = ps->p;
        u128 mant = 0, rate;
        uint64_t pow = 1;
        size_t l;
        int digits = 0;

        l = unlimited_word_at(at);
        if (l > 0) {
                ps->p += l;
                *ret = 0;
                return 0;
        }
        if (!isdigit((unsigned char)*at))
                return fail(ps, at, "expected %s, got %s", expected, GOT(at));
        while (isdigit((unsigned char)*ps->p)) {
                if (++digits > MAX_DIGITS)
                        return fail(ps, at, "the rate is above the maximum of 1024GiB/s");
                mant = mant * 10 + (unsigned)(*ps->p++ - '0');
        }
        if (*ps->p == '.') {
                ps->p++;
                if (!isdigit((unsigned char)*ps->p))
                        return fail(ps, ps->p, "expected digits after the decimal point, got %s", GOT(ps->p));
                for (digits = 0; isdigit((unsigned char)*ps->p); digits++) {
                        if (digits == MAX_DECIMALS)
                                return fail(ps, ps->p, "too many decimals (at most %d)", MAX_DECIMALS);
                        mant = mant * 10 + (unsigned)(*ps->p++ - '0');
                        pow *= 10;
                }
        }
        skip_space(ps); /* "50 MiB/s" reads as well */
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                l = strlen(units[i].name);
                /* "MiB/sec" is no unit; "MiB/s," is one with junk after it. */
                if (strncmp(ps->p, units[i].name, l) != 0 || isalnum((unsigned char)ps->p[l]))
                        continue;
                rate = (mant * units[i].factor + pow / 2) / pow;
                if (rate == 0)
                        return fail(ps, at, "the rate must be at least 1B/s (write 'unlimited' for no limit)");
                if (rate > TP_RATE_MAX)
                        return fail(ps, at, "the rate is above the maximum of 1024GiB/s");
                ps->p += l;
                *ret = (uint64_t)rate;
                return 0;
        }
        return fail(ps, ps->p, "expected a unit (B/s, KiB/s, MiB/s or GiB/s) after the number, got %s", GOT(ps->p));
}

/* [DAYS] [FROM-TO] RATE, up to the next ';' or the end. */
static int parse_window(parser *ps, tp_rate_window *w)
{
        const char *expected = "days (e.g. mon-fri), a time range (e.g. 08:00-18:00) or a rate (e.g. 50MiB/s)";
        int r;

        *w = (tp_rate_window){ .days = TP_RATE_ALL_DAYS, .from = 0, .to = TP_RATE_DAY_MINUTES };
        skip_space(ps);
        if (*ps->p == '\0' || *ps->p == ';')
                return fail(ps, ps->p, "expected a window (e.g. mon-fri 08:00-18:00 50MiB/s)%s, got %s",
                            ps->p > ps->spec ? " after ';'" : "", GOT(ps->p));
        if (day_at(ps->p) >= 0) {
                r = parse_days(ps, &w->days);
                if (r < 0)
                        return r;
                skip_space(ps);
                expected = "a time range (e.g. 08:00-18:00) or a rate (e.g. 50MiB/s) after the days";
        }
        if (time_at(ps->p)) {
                r = parse_times(ps, &w->from, &w->to);
                if (r < 0)
                        return r;
                skip_space(ps);
                expected = "a rate (e.g. 50MiB/s or unlimited) after the time range";
        }
        r = parse_rate(ps, expected, &w->rate);
        if (r < 0)
                return r;
        skip_space(ps);
        if (*ps->p != '\0' && *ps->p != ';')
                return fail(ps, ps->p, "expected ';' or the end after the rate, got %s", GOT(ps->p));
        return 0;
}

int tp_rate_schedule_parse(const char *spec, tp_rate_schedule *ret, char **err)
{
        parser ps = { .spec = spec, .p = spec, .err = err };
        _cleanup_free_ tp_rate_window *v = NULL;
        size_t n = 0, l;
        int r;

        if (err)
                *err = NULL;
        if (!spec || !ret)
                return -EINVAL;
        skip_space(&ps);
        l = unlimited_word_at(ps.p);
        ps.p += l;
        skip_space(&ps);
        if (*ps.p == '\0') {
                *ret = (tp_rate_schedule){ 0 };
                return 0;
        }
        ps.p = spec;
        for (;;) {
                tp_rate_window w, *nv;

                r = parse_window(&ps, &w);
                if (r < 0)
                        return r;
                nv = reallocarray(v, n + 1, sizeof(*v));
                if (!nv)
                        return -ENOMEM;
                v = nv;
                v[n++] = w;
                if (*ps.p == '\0')
                        break;
                ps.p++; /* ';' */
        }
        *ret = (tp_rate_schedule){ .v = TAKE_PTR(v), .n = n };
        return 0;
}

static bool window_matches(const tp_rate_window *w, unsigned day, unsigned minute)
{
        unsigned prev = (day + 6) % 7;

        if (w->from < w->to)
                return (w->days >> day & 1) && minute >= w->from && minute < w->to;
        /* Across midnight: the evening of a listed day, or the morning after one. */
        return ((w->days >> day & 1) && minute >= w->from) || ((w->days >> prev & 1) && minute < w->to);
}

uint64_t tp_rate_schedule_at(const tp_rate_schedule *s, time_t t)
{
        struct tm tm;
        unsigned day, minute;

        if (!s || s->n == 0 || !localtime_r(&t, &tm))
                return 0;
        day = (unsigned)(tm.tm_wday + 6) % 7; /* tm_wday counts from Sunday */
        minute = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
        for (size_t i = 0; i < s->n; i++)
                if (window_matches(&s->v[i], day, minute))
                        return s->v[i].rate;
        return 0;
}

void tp_rate_schedule_clear(tp_rate_schedule *s)
{
        if (!s)
                return;
        free(s->v);
        *s = (tp_rate_schedule){ 0 };
}

/* Runs of 3 days or more as ranges, shorter ones as lists: "mon-fri,sun".
 * days is neither 0 nor all seven. */
static void format_days(FILE *f, uint8_t days)
{
        unsigned first = 0;
        bool comma = false;

        /* Monday first, unless a run crosses the week end (fri-mon): then
         * that run comes first, as one range. */
        if ((days & 1) && (days >> 6 & 1))
                for (first = 6; first > 0 && (days >> (first - 1) & 1); first--)
                        ;
        for (unsigned k = 0; k < 7;) {
                unsigned d = (first + k) % 7, len = 0;

                if (!(days >> d & 1)) {
                        k++;
                        continue;
                }
                while (k + len < 7 && (days >> ((d + len) % 7) & 1))
                        len++;
                if (len >= 3) {
                        fprintf(f, "%s%s-%s", comma ? "," : "", day_names[d], day_names[(d + len - 1) % 7]);
                } else {
                        for (unsigned n = 0; n < len; n++)
                                fprintf(f, "%s%s", comma || n > 0 ? "," : "", day_names[(d + n) % 7]);
                }
                comma = true;
                k += len;
        }
}

/* The shortest text in the largest unit that parses back to rate. */
static void format_rate(FILE *f, uint64_t rate)
{
        if (rate == 0) {
                fputs("unlimited", f);
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t factor = units[i].factor, pow = 1;

                if (rate < factor)
                        continue;
                for (int d = 0; d <= MAX_DECIMALS; d++, pow *= 10) {
                        u128 v = ((u128)rate * pow + factor / 2) / factor;

                        if ((v * factor + pow / 2) / pow != rate)
                                continue;
                        if (d == 0)
                                fprintf(f, "%" PRIu64 "%s", (uint64_t)v, units[i].name);
                        else
                                fprintf(f, "%" PRIu64 ".%0*" PRIu64 "%s", (uint64_t)(v / pow), d, (uint64_t)(v % pow),
                                        units[i].name);
                        return;
                }
        }
}

char *tp_rate_schedule_format(const tp_rate_schedule *s)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        if (!s || s->n == 0)
                fputs("unlimited", f);
        for (size_t i = 0; s && i < s->n; i++) {
                const tp_rate_window *w = &s->v[i];

                if (i > 0)
                        fputs("; ", f);
                if ((w->days & TP_RATE_ALL_DAYS) != TP_RATE_ALL_DAYS) {
                        format_days(f, w->days & TP_RATE_ALL_DAYS);
                        fputc(' ', f);
                }
                if (w->from != 0 || w->to != TP_RATE_DAY_MINUTES)
                        fprintf(f, "%02u:%02u-%02u:%02u ", w->from / 60u, w->from % 60u, w->to / 60u, w->to % 60u);
                format_rate(f, w->rate);
        }
        if (ferror(f)) {
                fclose(f);
                free(buf);
                return NULL;
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

void tp_bucket_init(tp_bucket *b, const tp_rate_schedule *s)
{
        *b = (tp_bucket){ .schedule = s };
}

static void bucket_set_rate(tp_bucket *b, uint64_t rate, uint64_t now_ns)
{
        if (b->have_rate && rate == b->rate)
                return;
        if (b->have_rate && b->rate > 0 && rate > 0 && b->paid_ns > now_ns)
                /* The debt is bytes, not time: what was owed at the old rate
                 * is paid at the new one from now on. */
                b->paid_ns = now_ns + (uint64_t)((u128)(b->paid_ns - now_ns) * b->rate / rate);
        else
                /* From or to unlimited: start afresh. */
                b->paid_ns = now_ns;
        b->rem = 0;
        b->rate = rate;
}

uint64_t tp_bucket_take(tp_bucket *b, uint64_t n, uint64_t now_ns, time_t now)
{
        u128 cost;
        uint64_t burst;

        if (!b->schedule)
                return 0;
        if (!b->have_rate || now != b->checked) {
                bucket_set_rate(b, tp_rate_schedule_at(b->schedule, now), now_ns);
                b->have_rate = true;
                b->checked = now;
        }
        if (b->rate == 0)
                return 0;
        if (b->paid_ns < now_ns) {
                /* Idle time earns no credit beyond the burst. */
                b->paid_ns = now_ns;
                b->rem = 0;
        }
        cost = (u128)n * NSEC_PER_SEC + b->rem;
        b->rem = (uint64_t)(cost % b->rate);
        cost /= b->rate;
        /* A single request larger than the burst may still go at once when
         * the bucket is paid up: the next one waits for it. */
        burst = (uint64_t)MIN(MAX(cost, (u128)TP_BUCKET_BURST_NS), (u128)UINT64_MAX / 4);
        b->paid_ns = (uint64_t)MIN(b->paid_ns + cost, (u128)UINT64_MAX / 2);
        return b->paid_ns > now_ns + burst ? b->paid_ns - now_ns - burst : 0;
}
