/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * schedule.c -- job schedules: the text and JSON forms and the calculator
 * of firing times (see schedule.h for the design, docs/schedules.md for the
 * grammar).
 *
 * Calendar days are counted as days since 1970-01-01 in the proleptic
 * Gregorian calendar; that arithmetic (a day's weekday, a month's length)
 * knows nothing of zones and is done here. Everything that depends on a
 * zone -- which instant a wall time names, which day an instant falls on --
 * goes through an ICU calendar opened on the schedule's zone, set to the
 * two DST rules of schedule.h (UCAL_WALLTIME_NEXT_VALID for skipped wall
 * times, UCAL_WALLTIME_FIRST for repeated ones).
 *
 * Internal functions report errors as a message in a caller's buffer
 * (MSG_MAX) and -EINVAL; only the public entry points allocate the
 * caller's copy.
 */
#include "daemon/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unicode/ucal.h>
#include <unicode/uenum.h>
#include <unicode/ustring.h>

#include "daemon/util.h"

#define MSG_MAX 512
#define MAX_WORDS 64
#define SPEC_MAX 1024
#define DAY_MINUTES 1440
#define ALL_MONTHS 0xfffu
#define ALL_WEEKDAYS 0x7fu
#define YEAR_MIN 1970
#define YEAR_MAX 9999
/* 10000-01-01T00:00:00Z: the calculator answers nothing after it. */
#define INSTANT_MAX INT64_C(253402300800)
/* The Gregorian calendar repeats every 400 years: a valid schedule fires
 * well within that (a 29th of February only within 8 years). */
#define SCAN_DAYS (400 * 366 + 7)

DEFINE_TRIVIAL_CLEANUP_FUNC(UCalendar *, ucal_close);
DEFINE_TRIVIAL_CLEANUP_FUNC(UEnumeration *, uenum_close);

static const char *const kind_names[_VB_SCHEDULE_KIND_MAX] = {
        [VB_SCHEDULE_MANUAL] = "manual",   [VB_SCHEDULE_IMMEDIATELY] = "immediately",
        [VB_SCHEDULE_ONCE] = "once",       [VB_SCHEDULE_HOURLY] = "hourly",
        [VB_SCHEDULE_DAILY] = "daily",     [VB_SCHEDULE_WEEKLY] = "weekly",
        [VB_SCHEDULE_MONTHLY] = "monthly",
};

static const char *const weekday_names[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
static const char *const weekday_long[7] = { "monday", "tuesday",  "wednesday", "thursday",
                                             "friday", "saturday", "sunday" };
static const char *const month_names[12] = { "jan", "feb", "mar", "apr", "may", "jun",
                                             "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const month_long[12] = { "january", "february", "march",     "april",   "may",      "june",
                                            "july",    "august",   "september", "october", "november", "december" };
static const char *const ordinal_names[5] = { NULL, "1st", "2nd", "3rd", "4th" };
static const char *const ordinal_long[5] = { NULL, "first", "second", "third", "fourth" };

#define WEEKDAYS_EXPECTED "mon, tue, wed, thu, fri, sat or sun"
#define MONTHS_EXPECTED "jan, feb, mar, apr, may, jun, jul, aug, sep, oct, nov or dec"
#define ORDINALS_EXPECTED "1st, 2nd, 3rd, 4th or last"

const char *vb_schedule_kind_to_string(vb_schedule_kind k)
{
        if (k < 0 || k >= _VB_SCHEDULE_KIND_MAX)
                return NULL;
        return kind_names[k];
}

vb_schedule_kind vb_schedule_kind_from_string(const char *s)
{
        for (int k = 0; s && k < _VB_SCHEDULE_KIND_MAX; k++)
                if (strcasecmp(s, kind_names[k]) == 0)
                        return k;
        return _VB_SCHEDULE_KIND_INVALID;
}

static int fail(char *msg, const char *fmt, ...) _printf_(2, 3);
static int fail(char *msg, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, MSG_MAX, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void set_error(char **ret_error, const char *msg)
{
        if (ret_error)
                *ret_error = strdup(msg);
}

/* ---- calendar days (no zone) ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *ret_y, int *ret_m, int *ret_d)
{
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);

        *ret_d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *ret_m = m;
        *ret_y = (int)(yoe + era * 400 + (m <= 2));
}

/* 0 Monday .. 6 Sunday; 1970-01-01 was a Thursday. */
static int weekday_of(int64_t day)
{
        return (int)(((day % 7) + 7 + 3) % 7);
}

static bool is_leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
        static const int n[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && is_leap(y) ? 29 : n[m - 1];
}

static int64_t date_days(const vb_schedule_date *d)
{
        return days_from_civil(d->year, d->month, d->day);
}

/* ---- zones (ICU) ---- */

static bool zone_chars_ok(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n >= VB_SCHEDULE_TZ_MAX)
                return false;
        for (const char *p = name; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p))
                        return false;
        return true;
}

static bool zone_is_system(const char *name)
{
        UChar id[VB_SCHEDULE_TZ_MAX], canon[VB_SCHEDULE_TZ_MAX];
        UErrorCode st = U_ZERO_ERROR;
        UBool is_system = false;

        u_charsToUChars(name, id, (int32_t)strlen(name) + 1);
        ucal_getCanonicalTimeZoneID(id, -1, canon, VB_SCHEDULE_TZ_MAX, &is_system, &st);
        return U_SUCCESS(st) && is_system;
}

/* Resolves a zone name as the user wrote it into ICU's spelling of the
 * same IANA id (case is forgiven: "europe/berlin" is "Europe/Berlin").
 * Aliases stay as written ("Asia/Kolkata" is not turned into ICU's
 * canonical "Asia/Calcutta"). Offsets such as "GMT+05:00" are refused: a
 * schedule names a zone, whose rules follow DST. */
static int zone_resolve(const char *name, char ret[VB_SCHEDULE_TZ_MAX], char *msg)
{
        if (zone_chars_ok(name)) {
                if (zone_is_system(name)) {
                        strcpy(ret, name);
                        return 0;
                }

                UErrorCode st = U_ZERO_ERROR;
                _cleanup_(uenum_closep) UEnumeration *e =
                        ucal_openTimeZoneIDEnumeration(UCAL_ZONE_TYPE_ANY, NULL, NULL, &st);
                const char *id;
                int32_t len;

                if (U_FAILURE(st))
                        return fail(msg, "cannot list time zones: %s", u_errorName(st));
                while ((id = uenum_next(e, &len, &st)) && U_SUCCESS(st))
                        if (strcasecmp(id, name) == 0 && len < VB_SCHEDULE_TZ_MAX) {
                                strcpy(ret, id);
                                return 0;
                        }
        }
        return fail(msg,
                    "unknown time zone '%s': expected an IANA zone name such as Europe/Berlin, Asia/Shanghai or UTC",
                    name);
}

static int cal_open(const char *tz, UCalendar **ret)
{
        UChar id[VB_SCHEDULE_TZ_MAX];
        UErrorCode st = U_ZERO_ERROR;
        UCalendar *c;

        if (!zone_chars_ok(tz))
                return -EINVAL;
        u_charsToUChars(tz, id, (int32_t)strlen(tz) + 1);
        c = ucal_open(id, -1, "en_US_POSIX", UCAL_GREGORIAN, &st);
        if (U_FAILURE(st))
                return st == U_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EIO;
        ucal_setAttribute(c, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);
        ucal_setAttribute(c, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
        *ret = c;
        return 0;
}

/* The instant that wall time `minute` (may pass 1439: the next days) of
 * calendar day `day` names in c's zone, with the DST rules set by
 * cal_open(). */
static int wall_to_instant(UCalendar *c, int64_t day, int minute, int64_t *ret)
{
        UErrorCode st = U_ZERO_ERROR;
        int y, m, d;
        UDate ms;

        day += minute / DAY_MINUTES;
        minute %= DAY_MINUTES;
        civil_from_days(day, &y, &m, &d);
        ucal_clear(c);
        ucal_setDateTime(c, y, m - 1, d, minute / 60, minute % 60, 0, &st);
        ms = ucal_getMillis(c, &st);
        if (U_FAILURE(st))
                return -EIO;
        int64_t whole = (int64_t)ms;
        *ret = whole >= 0 ? whole / 1000 : -((-whole + 999) / 1000);
        return 0;
}

/* Reads c's fields after ucal_setMillis(). */
static int cal_get(UCalendar *c, UCalendarDateFields f, int *ret)
{
        UErrorCode st = U_ZERO_ERROR;
        int32_t v = ucal_get(c, f, &st);

        if (U_FAILURE(st))
                return -EIO;
        *ret = v;
        return 0;
}

/* The calendar day (days since 1970-01-01) of instant t in c's zone. */
static int instant_to_day(UCalendar *c, int64_t t, int64_t *ret)
{
        UErrorCode st = U_ZERO_ERROR;
        int y, m, d, r;

        ucal_setMillis(c, (UDate)t * 1000.0, &st);
        if (U_FAILURE(st))
                return -EIO;
        if ((r = cal_get(c, UCAL_EXTENDED_YEAR, &y)) < 0 || (r = cal_get(c, UCAL_MONTH, &m)) < 0 ||
            (r = cal_get(c, UCAL_DATE, &d)) < 0)
                return r;
        *ret = days_from_civil(y, m + 1, d);
        return 0;
}

int vb_schedule_system_tz(char *buf, size_t size)
{
        UChar id[VB_SCHEDULE_TZ_MAX];
        UErrorCode st = U_ZERO_ERROR;
        char name[VB_SCHEDULE_TZ_MAX] = "UTC";
        int32_t n;

        if (!buf)
                return -EINVAL;
        n = ucal_getDefaultTimeZone(id, VB_SCHEDULE_TZ_MAX, &st);
        if (U_SUCCESS(st) && st != U_STRING_NOT_TERMINATED_WARNING && n > 0 && n < VB_SCHEDULE_TZ_MAX) {
                char tmp[VB_SCHEDULE_TZ_MAX];
                bool ascii = true;

                for (int32_t i = 0; i < n; i++)
                        ascii = ascii && id[i] < 0x80;
                if (ascii) {
                        u_UCharsToChars(id, tmp, n);
                        tmp[n] = 0;
                        /* ICU says "Etc/Unknown" when it cannot tell. */
                        if (zone_chars_ok(tmp) && zone_is_system(tmp))
                                strcpy(name, tmp);
                }
        }
        if (strlen(name) >= size)
                return -ENOBUFS;
        strcpy(buf, name);
        return (int)strlen(name);
}

int vb_schedule_local_time(const char *tz, time_t t, char *buf, size_t size)
{
        _cleanup_(ucal_closep) UCalendar *c = NULL;
        UErrorCode st = U_ZERO_ERROR;
        int y, mo, d, h, mi, s, zo, dst, r;

        if (!tz || !buf || !zone_chars_ok(tz) || !zone_is_system(tz))
                return -EINVAL;
        r = cal_open(tz, &c);
        if (r < 0)
                return r;
        ucal_setMillis(c, (UDate)t * 1000.0, &st);
        if (U_FAILURE(st))
                return -EIO;
        if ((r = cal_get(c, UCAL_EXTENDED_YEAR, &y)) < 0 || (r = cal_get(c, UCAL_MONTH, &mo)) < 0 ||
            (r = cal_get(c, UCAL_DATE, &d)) < 0 || (r = cal_get(c, UCAL_HOUR_OF_DAY, &h)) < 0 ||
            (r = cal_get(c, UCAL_MINUTE, &mi)) < 0 || (r = cal_get(c, UCAL_SECOND, &s)) < 0 ||
            (r = cal_get(c, UCAL_ZONE_OFFSET, &zo)) < 0 || (r = cal_get(c, UCAL_DST_OFFSET, &dst)) < 0)
                return r;
        int off = (zo + dst) / 60000;
        int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", y, mo + 1, d, h, mi, s,
                         off < 0 ? '-' : '+', abs(off) / 60, abs(off) % 60);
        if (n < 0 || (size_t)n >= size)
                return -ENOBUFS;
        return n;
}

/* ---- words: times, dates, names, lists ---- */

static bool all_digits(const char *s, size_t n)
{
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isdigit((unsigned char)s[i]))
                        return false;
        return true;
}

static int digits_value(const char *s, size_t n)
{
        int v = 0;

        for (size_t i = 0; i < n; i++)
                v = v > 99999999 ? v : v * 10 + (s[i] - '0');
        return v;
}

/* "HH:MM" (or "H:MM") into minutes after midnight. -EBADMSG when w does
 * not look like a time at all (the caller says what it expected there),
 * -EINVAL with msg when it does but is out of range. */
static int parse_time_word(const char *w, int *ret, char *msg)
{
        const char *colon = strchr(w, ':');
        int h, m;

        if (!colon || !all_digits(w, colon - w) || colon - w > 2 || !all_digits(colon + 1, strlen(colon + 1)) ||
            strlen(colon + 1) != 2)
                return -EBADMSG;
        h = digits_value(w, colon - w);
        m = digits_value(colon + 1, 2);
        if (h > 23)
                return fail(msg, "'%s' is not a time: the hour must be 00-23 (a day runs from 00:00 to 23:59)", w);
        if (m > 59)
                return fail(msg, "'%s' is not a time: the minutes must be 00-59", w);
        *ret = h * 60 + m;
        return 0;
}

static int check_date(const vb_schedule_date *d, char *msg)
{
        if (d->year < YEAR_MIN || d->year > YEAR_MAX)
                return fail(msg, "year %d is out of range: expected %d-%d", d->year, YEAR_MIN, YEAR_MAX);
        if (d->month < 1 || d->month > 12)
                return fail(msg, "month %d is out of range: expected 01-12", d->month);
        if (d->day < 1 || d->day > days_in_month(d->year, d->month))
                return fail(msg, "%04d-%02d-%02d is not a date: %c%s %d has %d days", d->year, d->month, d->day,
                            toupper(month_long[d->month - 1][0]), month_long[d->month - 1] + 1, d->year,
                            days_in_month(d->year, d->month));
        return 0;
}

/* "YYYY-MM-DD". -EBADMSG / -EINVAL as parse_time_word(). */
static int parse_date_word(const char *w, vb_schedule_date *ret, char *msg)
{
        vb_schedule_date d;
        int r;

        if (strlen(w) != 10 || !all_digits(w, 4) || w[4] != '-' || !all_digits(w + 5, 2) || w[7] != '-' ||
            !all_digits(w + 8, 2))
                return -EBADMSG;
        d = (vb_schedule_date){ digits_value(w, 4), digits_value(w + 5, 2), digits_value(w + 8, 2) };
        r = check_date(&d, msg);
        if (r < 0)
                return r;
        *ret = d;
        return 0;
}

/* Index of the n characters at w in names[] or long_names[], any case; -1. */
static int name_index(const char *w, size_t n, const char *const *names, const char *const *long_names, int count)
{
        for (int i = 0; i < count; i++) {
                if (names[i] && strlen(names[i]) == n && strncasecmp(w, names[i], n) == 0)
                        return i;
                if (long_names[i] && strlen(long_names[i]) == n && strncasecmp(w, long_names[i], n) == 0)
                        return i;
        }
        return -1;
}

static int weekday_index(const char *w, size_t n)
{
        return name_index(w, n, weekday_names, weekday_long, 7);
}

static int month_index(const char *w, size_t n)
{
        return name_index(w, n, month_names, month_long, 12);
}

/* "15", "15th", "1st": the number, else -1. */
static int number_with_suffix(const char *w, size_t n)
{
        size_t d = 0;

        while (d < n && isdigit((unsigned char)w[d]))
                d++;
        if (d == 0 || d > 6)
                return -1;
        if (d != n && !(n - d == 2 && (strncasecmp(w + d, "st", 2) == 0 || strncasecmp(w + d, "nd", 2) == 0 ||
                                       strncasecmp(w + d, "rd", 2) == 0 || strncasecmp(w + d, "th", 2) == 0)))
                return -1;
        return digits_value(w, d);
}

/* An ordinal of a weekday: 1st..4th (any number for the caller to range
 * check), first..fourth, or last (VB_SCHEDULE_NTH_LAST); 0 when w is none. */
static int ordinal_value(const char *w)
{
        int i;

        if (strcasecmp(w, "last") == 0)
                return VB_SCHEDULE_NTH_LAST;
        i = name_index(w, strlen(w), ordinal_names, ordinal_long, 5);
        if (i > 0)
                return i;
        i = number_with_suffix(w, strlen(w));
        return i > 0 ? i : 0;
}

/* The items of a comma list: what they are called, their names for
 * messages, and how to read one (an index, or -1). */
typedef struct list_type {
        const char *what;
        const char *expected;
        int min, max; /* item values */
        int (*item)(const char *w, size_t n);
} list_type;

static int day_item(const char *w, size_t n)
{
        int d;

        if (n == 4 && strncasecmp(w, "last", 4) == 0)
                return VB_SCHEDULE_LAST_DAY;
        d = number_with_suffix(w, n);
        return d == 0 ? 1000 : d; /* day 0 is out of range, not the last day */
}

static const list_type weekday_list = { "weekday", WEEKDAYS_EXPECTED, 0, 6, weekday_index };
static const list_type month_list = { "month", MONTHS_EXPECTED, 0, 11, month_index };
static const list_type day_list = { "day", "1-31 or last", 0, 31, day_item };

/* "mon,wed,fri", "mon-fri", "1,15,last", "jan-mar,oct" into a bit mask.
 * -EBADMSG when w looks like a time (a missing list), -EINVAL with msg. */
static int parse_list(const char *w, const list_type *t, uint32_t *ret, char *msg)
{
        uint32_t mask = 0;
        const char *p = w;

        if (strchr(w, ':'))
                return -EBADMSG;
        for (;;) {
                size_t n = strcspn(p, ",");
                const char *dash = memchr(p, '-', n);
                size_t a_n = dash ? (size_t)(dash - p) : n, b_n = dash ? n - a_n - 1 : n;
                const char *b_w = dash ? dash + 1 : p, *bad = NULL;
                int a, b;

                if (n == 0)
                        return fail(msg, "empty item in '%s': expected %ss separated by commas", w, t->what);
                a = t->item(p, a_n);
                b = dash ? t->item(b_w, b_n) : a;
                if (a < t->min || a > t->max)
                        bad = p;
                else if (b < t->min || b > t->max) {
                        bad = b_w;
                        a_n = b_n;
                }
                if (bad && t == &day_list && all_digits(bad, a_n))
                        return fail(msg, "day %.*s is out of range in '%s': expected 1-31 or last", (int)a_n, bad, w);
                if (bad)
                        return fail(msg, "unknown %s '%.*s' in '%s': expected %s", t->what, (int)a_n, bad, w,
                                    t->expected);
                if (dash && t == &day_list && (a == VB_SCHEDULE_LAST_DAY || b == VB_SCHEDULE_LAST_DAY))
                        return fail(msg, "'last' cannot be part of a range in '%s'", w);
                if (a > b)
                        return fail(msg, "the range '%.*s' in '%s' goes backwards: write it from first to last", (int)n,
                                    p, w);
                for (int i = a; i <= b; i++)
                        mask |= UINT32_C(1) << i;
                if (!p[n])
                        break;
                p += n + 1;
        }
        *ret = mask;
        return 0;
}

/* ---- checking a whole schedule ---- */

static int check_tz(const char *tz, char *msg)
{
        if (!zone_chars_ok(tz) || !zone_is_system(tz))
                return fail(msg,
                            "unknown time zone '%s': expected an IANA zone name such as Europe/Berlin, "
                            "Asia/Shanghai or UTC",
                            tz);
        return 0;
}

static int check_minutes(int m, const char *what, char *msg)
{
        if (m < 0 || m >= DAY_MINUTES)
                return fail(msg, "%s %d is out of range: expected 0-1439 minutes after midnight", what, m);
        return 0;
}

static int check_every(const vb_schedule *s, char *msg)
{
        switch (s->kind) {
        case VB_SCHEDULE_HOURLY:
                if (s->every < 1 || s->every > VB_SCHEDULE_HOURLY_EVERY_MAX)
                        return fail(msg, "every %d minutes is out of range: expected 1m to 24h", s->every);
                return 0;
        case VB_SCHEDULE_DAILY:
                if (s->every < 1 || s->every > VB_SCHEDULE_DAILY_EVERY_MAX)
                        return fail(msg, "every %d days is out of range: expected 1-%d days", s->every,
                                    VB_SCHEDULE_DAILY_EVERY_MAX);
                return 0;
        case VB_SCHEDULE_WEEKLY:
                if (s->every < 1 || s->every > VB_SCHEDULE_WEEKLY_EVERY_MAX)
                        return fail(msg, "every %d weeks is out of range: expected 1-%d weeks", s->every,
                                    VB_SCHEDULE_WEEKLY_EVERY_MAX);
                return 0;
        default:
                return 0;
        }
}

/* Every day chosen must occur in at least one chosen month (a 30th in
 * February alone would never fire). */
static int check_days_in_months(const vb_schedule *s, char *msg)
{
        int longest = 0;
        char names[64] = "";

        for (int m = 0; m < 12; m++)
                if (s->months & (1u << m)) {
                        longest = MAX(longest, m == 1 ? 29 : days_in_month(2001, m + 1));
                        size_t l = strlen(names);
                        snprintf(names + l, sizeof(names) - l, "%s%s", l ? "," : "", month_names[m]);
                }
        for (int d = longest + 1; d <= 31; d++)
                if (s->days & (UINT32_C(1) << d))
                        return fail(msg,
                                    "day %d never occurs in the chosen months (%s): use 'last' for a month's last day",
                                    d, names);
        return 0;
}

static int check(const vb_schedule *s, char *msg)
{
        int r;

        if (s->kind < 0 || s->kind >= _VB_SCHEDULE_KIND_MAX)
                return fail(msg, "unknown schedule kind %d", (int)s->kind);
        switch (s->kind) {
        case VB_SCHEDULE_MANUAL:
        case VB_SCHEDULE_IMMEDIATELY:
                return 0;
        case VB_SCHEDULE_ONCE:
                if ((r = check_tz(s->tz, msg)) < 0 || (r = check_date(&s->date, msg)) < 0)
                        return r;
                return check_minutes(s->time, "time", msg);
        default:
                break;
        }
        if ((r = check_tz(s->tz, msg)) < 0 || (r = check_date(&s->from, msg)) < 0 ||
            (r = check_minutes(s->time, "time", msg)) < 0 || (r = check_every(s, msg)) < 0)
                return r;
        switch (s->kind) {
        case VB_SCHEDULE_HOURLY:
                if ((r = check_minutes(s->end, "the window's end", msg)) < 0)
                        return r;
                if (s->end == s->time)
                        return fail(msg, "the window %02d:%02d-%02d:%02d is empty: its end must differ from its start",
                                    s->time / 60, s->time % 60, s->end / 60, s->end % 60);
                return 0;
        case VB_SCHEDULE_WEEKLY:
                if (s->weekdays == 0 || (s->weekdays & ~ALL_WEEKDAYS))
                        return fail(msg, "a weekly schedule needs one or more weekdays: %s", WEEKDAYS_EXPECTED);
                return 0;
        case VB_SCHEDULE_MONTHLY:
                if (s->months == 0 || (s->months & ~ALL_MONTHS))
                        return fail(msg, "a monthly schedule needs one or more months: %s", MONTHS_EXPECTED);
                if (s->nth == 0) {
                        if (s->days == 0)
                                return fail(msg,
                                            "a monthly schedule needs days of the month (1-31 or last) or "
                                            "a weekday with its ordinal (%s)",
                                            ORDINALS_EXPECTED);
                        return check_days_in_months(s, msg);
                }
                if (s->days != 0)
                        return fail(msg, "a monthly schedule takes either days of the month or an ordinal weekday, "
                                         "not both");
                if (s->nth != VB_SCHEDULE_NTH_LAST && (s->nth < 1 || s->nth > 4))
                        return fail(msg, "the weekday's ordinal must be %s", ORDINALS_EXPECTED);
                if (s->weekday < 0 || s->weekday > 6)
                        return fail(msg, "weekday %d is out of range: expected %s", s->weekday, WEEKDAYS_EXPECTED);
                return 0;
        default:
                return 0;
        }
}

int vb_schedule_check(const vb_schedule *s, char **ret_error)
{
        char msg[MSG_MAX];
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!s)
                return -EINVAL;
        r = check(s, msg);
        if (r < 0)
                set_error(ret_error, msg);
        return r;
}

/* Fills what the user left out: the system's zone, the day of creation in
 * the schedule's zone as `from`, the firing time of `immediately`. */
static int apply_defaults(vb_schedule *s, bool has_tz, bool has_from, time_t created, char *msg)
{
        _cleanup_(ucal_closep) UCalendar *c = NULL;
        int64_t day;
        int r;

        if (s->kind == VB_SCHEDULE_MANUAL)
                return 0;
        if (s->kind == VB_SCHEDULE_IMMEDIATELY) {
                s->at = created;
                return 0;
        }
        if (!has_tz) {
                r = vb_schedule_system_tz(s->tz, sizeof(s->tz));
                if (r < 0)
                        return fail(msg, "cannot tell the system's time zone: %s", strerror(-r));
        }
        if (s->kind == VB_SCHEDULE_ONCE || has_from)
                return 0;
        r = cal_open(s->tz, &c);
        if (r >= 0)
                r = instant_to_day(c, created, &day);
        if (r < 0)
                return fail(msg, "cannot compute the day of creation in %s: %s", s->tz, strerror(-r));
        civil_from_days(day, &s->from.year, &s->from.month, &s->from.day);
        return 0;
}

/* ---- the text form ---- */

typedef struct parser {
        char *words[MAX_WORDS];
        size_t n, i;
        char *msg;
        vb_schedule s;
        bool has_every, has_months, has_from, has_tz;
} parser;

/* The words before the current one, for messages: "after 'daily 02:00'". */
static const char *context(const parser *p, char *buf, size_t size)
{
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < p->i && i < p->n; i++) {
                int n = snprintf(buf + len, size - len, "%s%s", i ? " " : "", p->words[i]);
                if (n < 0 || (size_t)n >= size - len) {
                        snprintf(buf + size - 5, 5, "...");
                        break;
                }
                len += n;
        }
        return buf;
}

/* The current word is missing or is not what was expected. */
static int expected(const parser *p, const char *what)
{
        char ctx[160];

        context(p, ctx, sizeof(ctx));
        if (p->i < p->n)
                return fail(p->msg, "unexpected '%s' after '%s': expected %s", p->words[p->i], ctx, what);
        return fail(p->msg, "expected %s after '%s'", what, ctx);
}

static const char *cur(const parser *p)
{
        return p->i < p->n ? p->words[p->i] : NULL;
}

static int take_time(parser *p, int *ret)
{
        int r;

        if (!cur(p))
                return expected(p, "a time HH:MM");
        r = parse_time_word(cur(p), ret, p->msg);
        if (r == -EBADMSG)
                return expected(p, "a time HH:MM");
        if (r < 0)
                return r;
        p->i++;
        return 0;
}

static int take_date(parser *p, vb_schedule_date *ret)
{
        int r;

        if (!cur(p))
                return expected(p, "a date YYYY-MM-DD");
        r = parse_date_word(cur(p), ret, p->msg);
        if (r == -EBADMSG)
                return expected(p, "a date YYYY-MM-DD");
        if (r < 0)
                return r;
        p->i++;
        return 0;
}

static int take_list(parser *p, const list_type *t, const char *what, uint32_t *ret)
{
        int r;

        if (!cur(p))
                return expected(p, what);
        r = parse_list(cur(p), t, ret, p->msg);
        if (r == -EBADMSG)
                return expected(p, what);
        if (r < 0)
                return r;
        p->i++;
        return 0;
}

/* Whether w is one of the space-separated words of list, in any case. */
static bool word_in(const char *w, const char *list)
{
        size_t n = strlen(w);

        for (const char *p = list; *p;) {
                size_t l = strcspn(p, " ");
                if (l == n && strncasecmp(p, w, n) == 0)
                        return true;
                p += l;
                p += strspn(p, " ");
        }
        return false;
}

/* "08:00-20:00", the window of an hourly schedule. */
static int take_window(parser *p)
{
        const char *w = cur(p);
        const char *dash = strchr(w, '-');
        char start[16];
        int r;

        if (!dash || (size_t)(dash - w) >= sizeof(start))
                return expected(p, "a window HH:MM-HH:MM");
        memcpy(start, w, dash - w);
        start[dash - w] = 0;
        r = parse_time_word(start, &p->s.time, p->msg);
        if (r >= 0)
                r = parse_time_word(dash + 1, &p->s.end, p->msg);
        if (r == -EBADMSG)
                return expected(p, "a window HH:MM-HH:MM");
        if (r < 0)
                return r;
        if (p->s.time == p->s.end)
                return fail(p->msg, "the window '%s' is empty: its end must differ from its start", w);
        p->i++;
        return 0;
}

/* "every 2h", "every 30m", "every 2 days", "every 3 weeks" (after the word
 * `every`): a number, then the unit attached or as the next word. */
static int take_every(parser *p)
{
        vb_schedule_kind k = p->s.kind;
        const char *units = k == VB_SCHEDULE_HOURLY  ? "h or m (every 2h, every 30m)"
                            : k == VB_SCHEDULE_DAILY ? "days (every 2 days)"
                                                     : "weeks (every 2 weeks)";
        const char *w = cur(p), *unit;
        char shown[64];
        size_t d = 0;
        int n, mult = 0;

        if (!w)
                return expected(p, "a number and a unit");
        while (isdigit((unsigned char)w[d]))
                d++;
        if (d == 0)
                return expected(p, "a number and a unit");
        n = digits_value(w, d);
        if (w[d]) {
                unit = w + d;
                snprintf(shown, sizeof(shown), "every %s", w);
        } else {
                p->i++;
                if (!cur(p))
                        return expected(p, units);
                unit = cur(p);
                snprintf(shown, sizeof(shown), "every %s %s", w, unit);
        }
        if (k == VB_SCHEDULE_HOURLY && word_in(unit, "h hr hrs hour hours"))
                mult = 60;
        else if (k == VB_SCHEDULE_HOURLY && word_in(unit, "m min mins minute minutes"))
                mult = 1;
        else if ((k == VB_SCHEDULE_DAILY && word_in(unit, "d day days")) ||
                 (k == VB_SCHEDULE_WEEKLY && word_in(unit, "w week weeks")))
                mult = 1;
        if (!mult)
                return fail(p->msg, "unknown unit '%s' in '%s': %s schedules count in %s", unit, shown, kind_names[k],
                            units);
        if (k == VB_SCHEDULE_HOURLY && (n == 0 || n > VB_SCHEDULE_HOURLY_EVERY_MAX / mult))
                return fail(p->msg, "'%s' is out of range: expected 1m to 24h", shown);
        if (k == VB_SCHEDULE_DAILY && (n == 0 || n > VB_SCHEDULE_DAILY_EVERY_MAX))
                return fail(p->msg, "'%s' is out of range: expected 1 to %d days", shown, VB_SCHEDULE_DAILY_EVERY_MAX);
        if (k == VB_SCHEDULE_WEEKLY && (n == 0 || n > VB_SCHEDULE_WEEKLY_EVERY_MAX))
                return fail(p->msg, "'%s' is out of range: expected 1 to %d weeks", shown,
                            VB_SCHEDULE_WEEKLY_EVERY_MAX);
        p->s.every = n * mult;
        p->i++;
        return 0;
}

/* monthly: "1,15,last" or "2nd sat" / "last fri". */
static int take_monthly_days(parser *p)
{
        const char *w = cur(p), *next = p->i + 1 < p->n ? p->words[p->i + 1] : NULL;
        uint32_t days;
        int nth;

        if (w && next && !strchr(w, ',') && (nth = ordinal_value(w)) != 0 &&
            weekday_index(next, strcspn(next, ",-")) >= 0) {
                if (nth != VB_SCHEDULE_NTH_LAST && (nth < 1 || nth > 4))
                        return fail(p->msg, "'%s %s': the weekday's ordinal must be %s", w, next, ORDINALS_EXPECTED);
                p->i++;
                if (next[strcspn(next, ",-")])
                        return fail(p->msg, "'%s %s': a monthly schedule takes one weekday after its ordinal", w, next);
                p->s.nth = nth;
                p->s.weekday = weekday_index(next, strlen(next));
                p->i++;
                return 0;
        }
        if (take_list(p, &day_list, "days of the month (1,15 or last) or an ordinal weekday (2nd sat, last fri)",
                      &days) < 0)
                return -EINVAL;
        p->s.days = days;
        return 0;
}

static int parse_words(parser *p)
{
        vb_schedule *s = &p->s;
        const char *options;
        uint32_t mask = 0;
        int r;

        if (p->n == 0)
                return fail(p->msg, "empty schedule: expected manual, immediately, once, hourly, daily, weekly or "
                                    "monthly");
        s->kind = vb_schedule_kind_from_string(p->words[0]);
        if (s->kind < 0)
                return fail(p->msg,
                            "unknown schedule '%s': expected manual, immediately, once, hourly, daily, "
                            "weekly or monthly",
                            p->words[0]);
        p->i = 1;
        switch (s->kind) {
        case VB_SCHEDULE_MANUAL:
        case VB_SCHEDULE_IMMEDIATELY:
                options = "the end";
                break;
        case VB_SCHEDULE_ONCE:
                if ((r = take_date(p, &s->date)) < 0 || (r = take_time(p, &s->time)) < 0)
                        return r;
                options = "'tz' or the end";
                break;
        case VB_SCHEDULE_HOURLY:
                s->time = 0;
                s->end = DAY_MINUTES - 1;
                if (cur(p) && strchr(cur(p), ':') && (r = take_window(p)) < 0)
                        return r;
                options = "'every', 'from', 'tz' or the end";
                break;
        case VB_SCHEDULE_DAILY:
                if ((r = take_time(p, &s->time)) < 0)
                        return r;
                options = "'every', 'from', 'tz' or the end";
                break;
        case VB_SCHEDULE_WEEKLY:
                if ((r = take_list(p, &weekday_list, "weekdays (mon,wed,fri or mon-fri)", &mask)) < 0 ||
                    (r = take_time(p, &s->time)) < 0)
                        return r;
                s->weekdays = mask;
                options = "'every', 'from', 'tz' or the end";
                break;
        case VB_SCHEDULE_MONTHLY:
                if ((r = take_monthly_days(p)) < 0 || (r = take_time(p, &s->time)) < 0)
                        return r;
                options = "'months', 'from', 'tz' or the end";
                break;
        default:
                return -EINVAL;
        }

        while (cur(p)) {
                const char *w = cur(p);
                bool repeating = s->kind >= VB_SCHEDULE_HOURLY;
                bool *seen;

                if (strcasecmp(w, "every") == 0 && repeating && s->kind != VB_SCHEDULE_MONTHLY)
                        seen = &p->has_every;
                else if (strcasecmp(w, "months") == 0 && s->kind == VB_SCHEDULE_MONTHLY)
                        seen = &p->has_months;
                else if (strcasecmp(w, "from") == 0 && repeating)
                        seen = &p->has_from;
                else if (strcasecmp(w, "tz") == 0 && s->kind >= VB_SCHEDULE_ONCE)
                        seen = &p->has_tz;
                else
                        return expected(p, options);
                if (*seen)
                        return fail(p->msg, "'%s' is given twice", w);
                *seen = true;
                p->i++;
                if (seen == &p->has_every)
                        r = take_every(p);
                else if (seen == &p->has_months) {
                        r = take_list(p, &month_list, "months (jan,jul or jan-mar)", &mask);
                        s->months = mask;
                } else if (seen == &p->has_from)
                        r = take_date(p, &s->from);
                else if (!cur(p))
                        r = expected(p, "a time zone such as Europe/Berlin");
                else {
                        r = zone_resolve(cur(p), s->tz, p->msg);
                        p->i++;
                }
                if (r < 0)
                        return r;
        }
        if (!p->has_every)
                s->every = s->kind == VB_SCHEDULE_HOURLY ? 60 : s->kind >= VB_SCHEDULE_DAILY ? 1 : 0;
        if (!p->has_months && s->kind == VB_SCHEDULE_MONTHLY)
                s->months = ALL_MONTHS;
        if (s->kind == VB_SCHEDULE_MONTHLY)
                s->every = 0;
        return 0;
}

int vb_schedule_parse(const char *spec, time_t created, vb_schedule *ret, char **ret_error)
{
        _cleanup_free_ char *copy = NULL;
        char msg[MSG_MAX] = "";
        parser p = { .msg = msg };
        char *save = NULL;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!spec || !ret)
                return -EINVAL;
        if (strlen(spec) > SPEC_MAX) {
                set_error(ret_error, "the schedule is too long");
                return -EINVAL;
        }
        copy = strdup(spec);
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
                if (p.n == MAX_WORDS) {
                        set_error(ret_error, "the schedule has too many words");
                        return -EINVAL;
                }
                p.words[p.n++] = w;
        }
        r = parse_words(&p);
        if (r >= 0)
                r = apply_defaults(&p.s, p.has_tz, p.has_from, created, msg);
        if (r >= 0)
                r = check(&p.s, msg);
        if (r < 0) {
                set_error(ret_error, msg);
                return r;
        }
        *ret = p.s;
        return 0;
}

typedef struct out {
        char *buf;
        size_t size, len;
        bool full;
} out;

static void out_printf(out *o, const char *fmt, ...) _printf_(2, 3);
static void out_printf(out *o, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (o->full)
                return;
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= o->size - o->len)
                o->full = true;
        else
                o->len += n;
}

/* A bit mask as a list, runs of three or more as ranges: "mon-fri,sun",
 * "1,15", "jan-mar,oct". names NULL: the bits are day numbers. */
static void out_list(out *o, uint32_t mask, int min, int max, const char *const *names)
{
        bool first = true;

        for (int i = min; i <= max; i++) {
                int j = i;

                if (!(mask & (UINT32_C(1) << i)))
                        continue;
                while (j < max && (mask & (UINT32_C(1) << (j + 1))))
                        j++;
                if (j - i < 2)
                        j = i;
                if (names)
                        out_printf(o, "%s%s", first ? "" : ",", names[i]);
                else
                        out_printf(o, "%s%d", first ? "" : ",", i);
                if (j > i) {
                        if (names)
                                out_printf(o, "-%s", names[j]);
                        else
                                out_printf(o, "-%d", j);
                }
                first = false;
                i = j;
        }
}

static void out_time(out *o, const char *prefix, int minutes)
{
        out_printf(o, "%s%02d:%02d", prefix, minutes / 60, minutes % 60);
}

static void out_date(out *o, const char *prefix, const vb_schedule_date *d)
{
        out_printf(o, "%s%04d-%02d-%02d", prefix, d->year, d->month, d->day);
}

int vb_schedule_format(const vb_schedule *s, char *buf, size_t size)
{
        char msg[MSG_MAX];
        out o = { buf, size, 0, false };

        if (!s || !buf || size == 0 || check(s, msg) < 0)
                return -EINVAL;
        buf[0] = 0;
        out_printf(&o, "%s", kind_names[s->kind]);
        switch (s->kind) {
        case VB_SCHEDULE_MANUAL:
        case VB_SCHEDULE_IMMEDIATELY:
                break;
        case VB_SCHEDULE_ONCE:
                out_date(&o, " ", &s->date);
                out_time(&o, " ", s->time);
                break;
        case VB_SCHEDULE_HOURLY:
                out_time(&o, " ", s->time);
                out_time(&o, "-", s->end);
                if (s->every % 60 == 0)
                        out_printf(&o, " every %dh", s->every / 60);
                else
                        out_printf(&o, " every %dm", s->every);
                break;
        case VB_SCHEDULE_DAILY:
                out_time(&o, " ", s->time);
                if (s->every > 1)
                        out_printf(&o, " every %d days", s->every);
                break;
        case VB_SCHEDULE_WEEKLY:
                out_printf(&o, " ");
                out_list(&o, s->weekdays, 0, 6, weekday_names);
                out_time(&o, " ", s->time);
                if (s->every > 1)
                        out_printf(&o, " every %d weeks", s->every);
                break;
        case VB_SCHEDULE_MONTHLY:
                if (s->nth)
                        out_printf(&o, " %s %s", s->nth > 0 ? ordinal_names[s->nth] : "last",
                                   weekday_names[s->weekday]);
                else {
                        out_printf(&o, " ");
                        out_list(&o, s->days & ~(UINT32_C(1) << VB_SCHEDULE_LAST_DAY), 1, 31, NULL);
                        if (s->days & (UINT32_C(1) << VB_SCHEDULE_LAST_DAY))
                                out_printf(&o, "%slast", s->days == 1 ? "" : ",");
                }
                out_time(&o, " ", s->time);
                if (s->months != ALL_MONTHS) {
                        out_printf(&o, " months ");
                        out_list(&o, s->months, 0, 11, month_names);
                }
                break;
        default:
                return -EINVAL;
        }
        if (s->kind >= VB_SCHEDULE_HOURLY)
                out_date(&o, " from ", &s->from);
        if (s->kind >= VB_SCHEDULE_ONCE)
                out_printf(&o, " tz %s", s->tz);
        return o.full ? -ENOBUFS : (int)o.len;
}

/* ---- the JSON form ---- */

static int set_field(json_t *o, const char *key, json_t *v)
{
        if (!v || json_object_set_new(o, key, v) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *time_json(int minutes)
{
        char b[8];

        snprintf(b, sizeof(b), "%02d:%02d", minutes / 60 % 100, minutes % 60);
        return json_string(b);
}

static json_t *date_json(const vb_schedule_date *d)
{
        char b[16];

        snprintf(b, sizeof(b), "%04d-%02d-%02d", d->year % 10000, d->month % 100, d->day % 100);
        return json_string(b);
}

static json_t *names_json(uint32_t mask, const char *const *names, int count)
{
        json_t *a = json_array();

        for (int i = 0; a && i < count; i++)
                if ((mask & (UINT32_C(1) << i)) && json_array_append_new(a, json_string(names[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *days_json(uint32_t days)
{
        json_t *a = json_array();

        for (int d = 1; a && d <= 32; d++) {
                int bit = d == 32 ? VB_SCHEDULE_LAST_DAY : d;
                if ((days & (UINT32_C(1) << bit)) &&
                    json_array_append_new(a, d == 32 ? json_string("last") : json_integer(d)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

int vb_schedule_to_json(const vb_schedule *s, json_t **ret)
{
        char msg[MSG_MAX];
        json_t *o;
        int r;

        if (!s || !ret || check(s, msg) < 0)
                return -EINVAL;
        o = json_object();
        if (!o)
                return -ENOMEM;
        r = set_field(o, "kind", json_string(kind_names[s->kind]));
        switch (s->kind) {
        case VB_SCHEDULE_MANUAL:
                break;
        case VB_SCHEDULE_IMMEDIATELY:
                r = r ?: set_field(o, "at", json_integer(s->at));
                break;
        case VB_SCHEDULE_ONCE:
                r = r ?: set_field(o, "date", date_json(&s->date));
                r = r ?: set_field(o, "time", time_json(s->time));
                break;
        case VB_SCHEDULE_HOURLY:
                r = r ?: set_field(o, "start", time_json(s->time));
                r = r ?: set_field(o, "end", time_json(s->end));
                r = r ?: set_field(o, "every_minutes", json_integer(s->every));
                break;
        case VB_SCHEDULE_DAILY:
                r = r ?: set_field(o, "time", time_json(s->time));
                r = r ?: set_field(o, "every_days", json_integer(s->every));
                break;
        case VB_SCHEDULE_WEEKLY:
                r = r ?: set_field(o, "weekdays", names_json(s->weekdays, weekday_names, 7));
                r = r ?: set_field(o, "time", time_json(s->time));
                r = r ?: set_field(o, "every_weeks", json_integer(s->every));
                break;
        case VB_SCHEDULE_MONTHLY:
                if (s->nth) {
                        r = r ?: set_field(o, "nth", json_string(s->nth > 0 ? ordinal_names[s->nth] : "last"));
                        r = r ?: set_field(o, "weekday", json_string(weekday_names[s->weekday]));
                } else
                        r = r ?: set_field(o, "days", days_json(s->days));
                r = r ?: set_field(o, "time", time_json(s->time));
                r = r ?: set_field(o, "months", names_json(s->months, month_names, 12));
                break;
        default:
                r = -EINVAL;
        }
        if (s->kind >= VB_SCHEDULE_HOURLY)
                r = r ?: set_field(o, "from", date_json(&s->from));
        if (s->kind >= VB_SCHEDULE_ONCE)
                r = r ?: set_field(o, "tz", json_string(s->tz));
        if (r < 0) {
                json_decref(o);
                return r;
        }
        *ret = o;
        return 0;
}

/* The fields each kind takes besides "kind". */
static const char *const json_fields[_VB_SCHEDULE_KIND_MAX][8] = {
        [VB_SCHEDULE_MANUAL] = { NULL },
        [VB_SCHEDULE_IMMEDIATELY] = { "at", NULL },
        [VB_SCHEDULE_ONCE] = { "date", "time", "tz", NULL },
        [VB_SCHEDULE_HOURLY] = { "start", "end", "every_minutes", "from", "tz", NULL },
        [VB_SCHEDULE_DAILY] = { "time", "every_days", "from", "tz", NULL },
        [VB_SCHEDULE_WEEKLY] = { "weekdays", "time", "every_weeks", "from", "tz", NULL },
        [VB_SCHEDULE_MONTHLY] = { "days", "nth", "weekday", "time", "months", "from", "tz", NULL },
};

static int json_string_field(const char *key, json_t *v, const char *what, const char **ret, char *msg)
{
        if (!json_is_string(v))
                return fail(msg, "field '%s' must be a string: %s", key, what);
        *ret = json_string_value(v);
        return 0;
}

/* Reads one string field with a word parser, prefixing its message. */
static int json_word(const char *key, json_t *v, const char *what, int (*parse)(const char *, void *, char *),
                     void *ret, char *msg)
{
        char inner[MSG_MAX];
        const char *w = NULL;
        int r;

        r = json_string_field(key, v, what, &w, msg);
        if (r < 0)
                return r;
        r = parse(w, ret, inner);
        if (r == -EBADMSG)
                return fail(msg, "field '%s': expected %s, got '%s'", key, what, w);
        if (r < 0)
                return fail(msg, "field '%s': %s", key, inner);
        return 0;
}

static int parse_time_any(const char *w, void *ret, char *msg)
{
        return parse_time_word(w, ret, msg);
}

static int parse_date_any(const char *w, void *ret, char *msg)
{
        return parse_date_word(w, ret, msg);
}

static int parse_zone_any(const char *w, void *ret, char *msg)
{
        return zone_resolve(w, ret, msg);
}

static int json_int_field(const char *key, json_t *v, int min, int max, const char *unit, int *ret, char *msg)
{
        json_int_t n;

        if (!json_is_integer(v))
                return fail(msg, "field '%s' must be an integer: %d-%d %s", key, min, max, unit);
        n = json_integer_value(v);
        if (n < min || n > max)
                return fail(msg, "field '%s': %" JSON_INTEGER_FORMAT " is out of range: expected %d-%d %s", key, n, min,
                            max, unit);
        *ret = (int)n;
        return 0;
}

/* An array of names ("weekdays", "months") or of days ("days"). */
static int json_list_field(const char *key, json_t *v, const list_type *t, uint32_t *ret, char *msg)
{
        uint32_t mask = 0;
        size_t i;
        json_t *e;

        if (!json_is_array(v) || json_array_size(v) == 0)
                return fail(msg, "field '%s' must be a non-empty array of %ss: %s", key, t->what, t->expected);
        json_array_foreach(v, i, e)
        {
                int x = -1;

                if (json_is_string(e))
                        x = t->item(json_string_value(e), strlen(json_string_value(e)));
                else if (t == &day_list && json_is_integer(e))
                        x = json_integer_value(e) >= 1 && json_integer_value(e) <= 31 ? (int)json_integer_value(e) : -1;
                if (x < t->min || x > t->max || (t == &day_list && json_is_string(e) && x != 0)) {
                        _cleanup_free_ char *shown = json_dumps(e, JSON_ENCODE_ANY);
                        return fail(msg, "field '%s': %s is not a %s: expected %s", key, shown ? shown : "?", t->what,
                                    t->expected);
                }
                mask |= UINT32_C(1) << x;
        }
        *ret = mask;
        return 0;
}

static int from_json(const json_t *j, time_t created, vb_schedule *s, char *msg)
{
        const char *key, *w = NULL;
        json_t *v;
        bool has_tz = false, has_from = false, has_time = false, has_weekday = false, has_months = false;
        uint32_t mask;
        int r;

        if (json_is_string(j)) {
                _cleanup_free_ char *e = NULL;
                r = vb_schedule_parse(json_string_value(j), created, s, &e);
                if (r == -EINVAL)
                        return fail(msg, "%s", e ? e : "bad schedule");
                return r;
        }
        if (!json_is_object(j))
                return fail(msg, "a schedule must be a JSON object or a string");
        v = json_object_get(j, "kind");
        if (!v)
                return fail(msg, "missing field 'kind': expected manual, immediately, once, hourly, daily, weekly or "
                                 "monthly");
        if (!json_is_string(v) || (s->kind = vb_schedule_kind_from_string(json_string_value(v))) < 0)
                return fail(msg, "field 'kind' must be manual, immediately, once, hourly, daily, weekly or monthly");
        json_object_foreach((json_t *)j, key, v)
        {
                const char *const *f = json_fields[s->kind];

                r = 0;
                if (streq(key, "kind"))
                        continue;
                while (*f && !streq(*f, key))
                        f++;
                if (!*f)
                        return fail(msg, "unknown field '%s' in a %s schedule", key, kind_names[s->kind]);
                if (streq(key, "at")) {
                        if (!json_is_integer(v))
                                return fail(msg, "field 'at' must be an integer: seconds since the epoch");
                        s->at = json_integer_value(v);
                } else if (streq(key, "date"))
                        r = json_word(key, v, "a date YYYY-MM-DD", parse_date_any, &s->date, msg);
                else if (streq(key, "from")) {
                        r = json_word(key, v, "a date YYYY-MM-DD", parse_date_any, &s->from, msg);
                        has_from = true;
                } else if (streq(key, "time") || streq(key, "start")) {
                        r = json_word(key, v, "a time HH:MM", parse_time_any, &s->time, msg);
                        has_time = true;
                } else if (streq(key, "end"))
                        r = json_word(key, v, "a time HH:MM", parse_time_any, &s->end, msg);
                else if (streq(key, "tz")) {
                        r = json_word(key, v, "an IANA time zone", parse_zone_any, s->tz, msg);
                        has_tz = true;
                } else if (streq(key, "every_minutes"))
                        r = json_int_field(key, v, 1, VB_SCHEDULE_HOURLY_EVERY_MAX, "minutes", &s->every, msg);
                else if (streq(key, "every_days"))
                        r = json_int_field(key, v, 1, VB_SCHEDULE_DAILY_EVERY_MAX, "days", &s->every, msg);
                else if (streq(key, "every_weeks"))
                        r = json_int_field(key, v, 1, VB_SCHEDULE_WEEKLY_EVERY_MAX, "weeks", &s->every, msg);
                else if (streq(key, "weekdays")) {
                        r = json_list_field(key, v, &weekday_list, &mask, msg);
                        s->weekdays = mask;
                } else if (streq(key, "months")) {
                        r = json_list_field(key, v, &month_list, &mask, msg);
                        s->months = mask;
                        has_months = true;
                } else if (streq(key, "days")) {
                        r = json_list_field(key, v, &day_list, &mask, msg);
                        s->days = mask;
                } else if (streq(key, "nth")) {
                        r = json_string_field(key, v, ORDINALS_EXPECTED, &w, msg);
                        if (r >= 0 && ((s->nth = ordinal_value(w)) == 0 || s->nth > 4))
                                r = fail(msg, "field 'nth': '%s' is not an ordinal: expected %s", w, ORDINALS_EXPECTED);
                } else if (streq(key, "weekday")) {
                        r = json_string_field(key, v, WEEKDAYS_EXPECTED, &w, msg);
                        if (r >= 0 && (s->weekday = weekday_index(w, strlen(w))) < 0)
                                r = fail(msg, "field 'weekday': unknown weekday '%s': expected %s", w,
                                         WEEKDAYS_EXPECTED);
                        has_weekday = true;
                }
                if (r < 0)
                        return r;
        }

        switch (s->kind) {
        case VB_SCHEDULE_ONCE:
                if (!json_object_get(j, "date"))
                        return fail(msg, "missing field 'date' in a once schedule: a date YYYY-MM-DD");
                break;
        case VB_SCHEDULE_HOURLY:
                if (!json_object_get(j, "start"))
                        s->time = 0;
                if (!json_object_get(j, "end"))
                        s->end = DAY_MINUTES - 1;
                if (!json_object_get(j, "every_minutes"))
                        s->every = 60;
                has_time = true;
                break;
        case VB_SCHEDULE_DAILY:
        case VB_SCHEDULE_WEEKLY:
                if (!s->every)
                        s->every = 1;
                if (s->kind == VB_SCHEDULE_WEEKLY && !json_object_get(j, "weekdays"))
                        return fail(msg, "missing field 'weekdays' in a weekly schedule: %s", WEEKDAYS_EXPECTED);
                break;
        case VB_SCHEDULE_MONTHLY:
                if (!has_months)
                        s->months = ALL_MONTHS;
                if (json_object_get(j, "days") && (s->nth || has_weekday))
                        return fail(msg, "fields 'days' and 'nth'/'weekday' exclude each other in a monthly "
                                         "schedule");
                if (s->nth && !has_weekday)
                        return fail(msg, "missing field 'weekday' in a monthly schedule with 'nth'");
                if (has_weekday && !s->nth)
                        return fail(msg, "missing field 'nth' in a monthly schedule with 'weekday'");
                if (!json_object_get(j, "days") && !s->nth)
                        return fail(msg, "missing field 'days' or 'nth' in a monthly schedule");
                break;
        default:
                has_time = true;
                break;
        }
        if (!has_time)
                return fail(msg, "missing field 'time' in a %s schedule: a time HH:MM", kind_names[s->kind]);
        if (s->kind == VB_SCHEDULE_IMMEDIATELY && json_object_get(j, "at"))
                return check(s, msg);
        r = apply_defaults(s, has_tz, has_from, created, msg);
        if (r < 0)
                return r;
        return check(s, msg);
}

int vb_schedule_from_json(const json_t *j, time_t created, vb_schedule *ret, char **ret_error)
{
        char msg[MSG_MAX] = "";
        vb_schedule s = {};
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!j || !ret)
                return -EINVAL;
        r = from_json(j, created, &s, msg);
        if (r < 0) {
                if (r == -EINVAL)
                        set_error(ret_error, msg);
                return r;
        }
        *ret = s;
        return 0;
}

/* ---- the calculator ---- */

static bool day_matches(const vb_schedule *s, int64_t day)
{
        int64_t from = date_days(&s->from);
        int y, m, d, dim, wd;

        if (day < from)
                return false;
        switch (s->kind) {
        case VB_SCHEDULE_HOURLY:
                return true;
        case VB_SCHEDULE_DAILY:
                return (day - from) % s->every == 0;
        case VB_SCHEDULE_WEEKLY:
                wd = weekday_of(day);
                if (!(s->weekdays & (1u << wd)))
                        return false;
                /* Whole weeks between the Mondays of from's week and day's. */
                return ((day - wd) - (from - weekday_of(from))) / 7 % s->every == 0;
        case VB_SCHEDULE_MONTHLY:
                civil_from_days(day, &y, &m, &d);
                if (!(s->months & (1u << (m - 1))))
                        return false;
                dim = days_in_month(y, m);
                if (s->nth == 0)
                        return (s->days & (UINT32_C(1) << d)) ||
                               (d == dim && (s->days & (UINT32_C(1) << VB_SCHEDULE_LAST_DAY)));
                if (weekday_of(day) != s->weekday)
                        return false;
                if (s->nth == VB_SCHEDULE_NTH_LAST)
                        return d + 7 > dim;
                return (d - 1) / 7 + 1 == s->nth;
        default:
                return false;
        }
}

int vb_schedule_next(const vb_schedule *s, time_t after, time_t *ret)
{
        _cleanup_(ucal_closep) UCalendar *c = NULL;
        char msg[MSG_MAX];
        int64_t first_day, t;
        int first = 0, step = 0, count = 1, r;

        if (!s || !ret || check(s, msg) < 0)
                return -EINVAL;
        switch (s->kind) {
        case VB_SCHEDULE_MANUAL:
                return -ENOENT;
        case VB_SCHEDULE_IMMEDIATELY:
                if (s->at <= after)
                        return -ENOENT;
                *ret = (time_t)s->at;
                return 0;
        default:
                break;
        }
        if (after >= INSTANT_MAX)
                return -ENOENT;
        r = cal_open(s->tz, &c);
        if (r < 0)
                return r;
        if (s->kind == VB_SCHEDULE_ONCE) {
                r = wall_to_instant(c, date_days(&s->date), s->time, &t);
                if (r < 0)
                        return r;
                if (t <= after)
                        return -ENOENT;
                *ret = (time_t)t;
                return 0;
        }

        /* The wall times of one matching day: `first`, then `count - 1`
         * more `step` minutes apart (an hourly window may run past
         * midnight into the next day). */
        first = s->time;
        if (s->kind == VB_SCHEDULE_HOURLY) {
                int len = s->end > s->time ? s->end - s->time : s->end + DAY_MINUTES - s->time;
                step = s->every;
                count = len / step + 1;
        }
        /* Start a day early: the window of the day before may still run.
         * Long before 1970 (where ICU's range ends) start at `from`:
         * starting early is always safe, the instants are compared. */
        first_day = date_days(&s->from);
        if (after > 0) {
                int64_t day;

                r = instant_to_day(c, after, &day);
                if (r < 0)
                        return r;
                first_day = MAX(day - 1, first_day);
        }
        for (int64_t day = first_day; day < first_day + SCAN_DAYS; day++) {
                int lo = 0, hi = count - 1;

                if (!day_matches(s, day))
                        continue;
                r = wall_to_instant(c, day, first + hi * step, &t);
                if (r < 0)
                        return r;
                if (t <= after)
                        continue;
                /* Wall time -> instant never goes backwards (schedule.h):
                 * the first slot after `after` is found by bisection. */
                while (lo < hi) {
                        int mid = lo + (hi - lo) / 2;
                        r = wall_to_instant(c, day, first + mid * step, &t);
                        if (r < 0)
                                return r;
                        if (t > after)
                                hi = mid;
                        else
                                lo = mid + 1;
                }
                r = wall_to_instant(c, day, first + lo * step, &t);
                if (r < 0)
                        return r;
                *ret = (time_t)t;
                return 0;
        }
        return -ENOENT;
}

bool vb_schedule_missed(const vb_schedule *s, time_t last_check, time_t now)
{
        time_t t;

        if (now <= last_check)
                return false;
        return vb_schedule_next(s, last_check, &t) >= 0 && t <= now;
}
