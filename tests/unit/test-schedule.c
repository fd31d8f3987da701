/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-schedule.c -- tests for daemon/schedule.c: successive firing times
 * of each of the seven kinds across month ends (31st, February, a leap
 * year), both DST changes in Europe/Berlin and America/New_York, a zone
 * without DST (Asia/Shanghai) and a zone that skipped a whole day
 * (Pacific/Apia), hourly windows (inside a day, past midnight, every 1m),
 * "every N" counted from the anchor, nth and last weekdays, chosen months,
 * missed runs, the canonical text and JSON forms, and every parse error.
 *
 * Expected instants are written as UTC epoch seconds with the local wall
 * time they stand for in a comment; they were worked out from the zones'
 * rules (Berlin: CET +01, CEST +02 from the last Sunday of March 02:00 to
 * the last Sunday of October 03:00; New York: EST -05, EDT -04 from the
 * second Sunday of March 02:00 to the first Sunday of November 02:00;
 * Shanghai: +08 all year).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/schedule.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

/* 2026-05-01 12:00 UTC: the creation time when a test does not care. */
#define CREATED 1777636800

static void parse_ok(const char *spec, time_t created, vb_schedule *s)
{
        _cleanup_free_ char *err = NULL;
        int r = vb_schedule_parse(spec, created, s, &err);

        if (r < 0)
                TEST_FAIL_("parse \"%s\": %d: %s", spec, r, err ? err : "(no message)");
}

static const char *local(const vb_schedule *s, time_t t, char *buf, size_t size)
{
        if (vb_schedule_local_time(s->tz[0] ? s->tz : "UTC", t, buf, size) < 0)
                snprintf(buf, size, "?");
        return buf;
}

/* Asserts that spec, after `after`, fires at want[0], then want[1], ...
 * and that each of them is also the next firing one second before it. */
static void assert_times(const char *spec, time_t after, const time_t *want, size_t n)
{
        vb_schedule s;

        parse_ok(spec, CREATED, &s);
        for (size_t i = 0; i < n; i++) {
                char a[64], b[64];
                time_t t = 0, u = 0;
                int r = vb_schedule_next(&s, after, &t);

                if (r < 0 || t != want[i])
                        TEST_FAIL_("\"%s\": firing %zu after %lld (%s): got %d, %lld (%s), want %lld (%s)", spec, i,
                                   (long long)after, local(&s, after, a, sizeof(a)), r, (long long)t,
                                   local(&s, t, b, sizeof(b)), (long long)want[i], local(&s, want[i], a, sizeof(a)));
                ASSERT_OK(vb_schedule_next(&s, want[i] - 1, &u));
                ASSERT_EQ(u, want[i]);
                after = t;
        }
}

#define ASSERT_TIMES(spec, after, ...)                                                                                 \
        do {                                                                                                           \
                const time_t want_[] = { __VA_ARGS__ };                                                                \
                assert_times(spec, after, want_, ELEMENTSOF(want_));                                                   \
        } while (0)

static void assert_no_more(const char *spec, time_t after)
{
        vb_schedule s;
        time_t t = 0;

        parse_ok(spec, CREATED, &s);
        ASSERT_ERR(vb_schedule_next(&s, after, &t), ENOENT);
}

/* ---- manual, immediately, once ---- */

TEST(manual_never_fires)
{
        vb_schedule s;
        time_t t;

        parse_ok("manual", CREATED, &s);
        ASSERT_EQ(s.kind, VB_SCHEDULE_MANUAL);
        ASSERT_STREQ(s.tz, "");
        ASSERT_ERR(vb_schedule_next(&s, 0, &t), ENOENT);
        ASSERT_ERR(vb_schedule_next(&s, CREATED, &t), ENOENT);
        ASSERT_TRUE(!vb_schedule_missed(&s, 0, CREATED));
}

TEST(immediately_fires_once_at_creation)
{
        vb_schedule s;
        time_t t = 0;

        parse_ok("immediately", CREATED, &s);
        ASSERT_EQ(s.kind, VB_SCHEDULE_IMMEDIATELY);
        ASSERT_EQ(s.at, CREATED);
        /* The first run is asked for from one second before creation. */
        ASSERT_OK(vb_schedule_next(&s, CREATED - 1, &t));
        ASSERT_EQ(t, CREATED);
        ASSERT_ERR(vb_schedule_next(&s, CREATED, &t), ENOENT);
        ASSERT_ERR(vb_schedule_next(&s, CREATED + 86400, &t), ENOENT);
        ASSERT_TRUE(vb_schedule_missed(&s, CREATED - 1, CREATED));
        ASSERT_TRUE(!vb_schedule_missed(&s, CREATED, CREATED + 3600));
}

TEST(once_fires_once)
{
        /* 2026-12-01 02:00 CET = 01:00 UTC. */
        ASSERT_TIMES("once 2026-12-01 02:00 tz Europe/Berlin", 1795993200 /* 2026-11-30 00:00 CET */,
                     1796086800 /* 2026-12-01 02:00 CET */);
        assert_no_more("once 2026-12-01 02:00 tz Europe/Berlin", 1796086800);
        assert_no_more("once 2026-12-01 02:00 tz Europe/Berlin", 1796086800 + 86400 * 365);
        /* The same wall time in Shanghai (+08) is 7 hours earlier. */
        ASSERT_TIMES("once 2026-12-01 02:00 tz Asia/Shanghai", 0, 1796061600 /* 2026-12-01 02:00 CST = 11-30 18:00Z */);
}

TEST(once_in_dst_gap_and_overlap)
{
        /* Berlin 2026-03-29 02:30 does not exist: the first instant after
         * the gap, 03:00 CEST (01:00 UTC). */
        ASSERT_TIMES("once 2026-03-29 02:30 tz Europe/Berlin", 0, 1774746000 /* 2026-03-29 03:00 CEST */);
        /* New York 2026-11-01 01:30 happens twice: the first, EDT (05:30Z). */
        ASSERT_TIMES("once 2026-11-01 01:30 tz America/New_York", 0, 1793511000 /* 2026-11-01 01:30 EDT */);
        /* Asked for between the two occurrences: it has already fired. */
        assert_no_more("once 2026-11-01 01:30 tz America/New_York", 1793511000 + 1800);
}

/* ---- hourly ---- */

TEST(hourly_window_every_2h_across_month_end)
{
        ASSERT_TIMES(
                "hourly 08:00-20:00 every 2h from 2026-01-01 tz Asia/Shanghai", 1769850000 /* 2026-01-31 17:00 CST */,
                1769853600 /* 2026-01-31 18:00 */, 1769860800 /* 2026-01-31 20:00 (the end is included) */,
                1769904000 /* 2026-02-01 08:00 */, 1769911200 /* 2026-02-01 10:00 */, 1769918400 /* 2026-02-01 12:00 */,
                1769925600 /* 2026-02-01 14:00 */, 1769932800 /* 2026-02-01 16:00 */, 1769940000 /* 2026-02-01 18:00 */,
                1769947200 /* 2026-02-01 20:00 */, 1769990400 /* 2026-02-02 08:00 */);
}

TEST(hourly_every_30m_across_berlin_dst)
{
        /* Spring forward: 02:00 and 02:30 do not exist and fold into 03:00
         * CEST, which fires once. */
        ASSERT_TIMES("hourly every 30m from 2026-03-01 tz Europe/Berlin", 1774742400 /* 2026-03-29 01:00 CET */,
                     1774744200 /* 01:30 CET */, 1774746000 /* 03:00 CEST */, 1774747800 /* 03:30 CEST */);
        /* Fall back: 02:00-02:59 happen twice; each slot fires at its
         * first occurrence, the second pass is not run again. */
        ASSERT_TIMES("hourly every 30m from 2026-03-01 tz Europe/Berlin", 1792885500 /* 2026-10-25 01:45 CEST */,
                     1792886400 /* 02:00 CEST */, 1792888200 /* 02:30 CEST */, 1792893600 /* 03:00 CET */,
                     1792895400 /* 03:30 CET */);
        /* Asked for during the second pass (02:10 CET): next is 03:00 CET. */
        ASSERT_TIMES("hourly every 30m from 2026-03-01 tz Europe/Berlin", 1792890000 + 600 /* 02:10 CET */,
                     1792893600 /* 03:00 CET */);
}

TEST(hourly_every_1h_across_new_york_dst)
{
        ASSERT_TIMES("hourly 00:00-23:59 every 1h from 2026-03-01 tz America/New_York",
                     1772949600 /* 2026-03-08 01:00 EST */, 1772953200 /* 03:00 EDT (02:00 does not exist) */,
                     1772956800 /* 04:00 EDT */);
        ASSERT_TIMES("hourly 00:00-23:59 every 1h from 2026-03-01 tz America/New_York",
                     1793507400 /* 2026-11-01 00:30 EDT */, 1793509200 /* 01:00 EDT */,
                     1793516400 /* 02:00 EST, two hours later: 01:00 EST is the repeat */, 1793520000 /* 03:00 EST */);
}

TEST(hourly_window_past_midnight_leap_year)
{
        ASSERT_TIMES("hourly 22:00-02:00 every 1h from 2028-02-27 tz America/New_York",
                     1835404200 /* 2028-02-28 21:30 EST */, 1835406000 /* 02-28 22:00 */, 1835409600 /* 02-28 23:00 */,
                     1835413200 /* 02-29 00:00 */, 1835416800 /* 02-29 01:00 */,
                     1835420400 /* 02-29 02:00 (the end is included) */, 1835492400 /* 02-29 22:00 */,
                     1835496000 /* 02-29 23:00 */, 1835499600 /* 03-01 00:00 */, 1835503200 /* 03-01 01:00 */,
                     1835506800 /* 03-01 02:00 */, 1835578800 /* 03-01 22:00 */);
        /* The first window opens on the from day: the early hours of 02-27
         * belong to the window of 02-26, which is before it. */
        ASSERT_TIMES("hourly 22:00-02:00 every 1h from 2028-02-27 tz America/New_York",
                     1835197200 /* 2028-02-26 12:00 EST */, 1835319600 /* 2028-02-27 22:00 EST */);
}

TEST(hourly_every_90m_stops_at_window_end)
{
        ASSERT_TIMES("hourly 08:00-12:00 every 90m from 2026-01-01 tz UTC", 1768003200 /* 2026-01-10 00:00 */,
                     1768032000 /* 08:00 */, 1768037400 /* 09:30 */, 1768042800 /* 11:00 (12:30 is past 12:00) */,
                     1768118400 /* 2026-01-11 08:00 */);
}

TEST(hourly_every_1m)
{
        ASSERT_TIMES("hourly every 1m from 2026-01-01 tz UTC", 1782813630 /* 2026-06-30 10:00:30 */,
                     1782813660 /* 10:01:00 */, 1782813720 /* 10:02:00 */);
        ASSERT_TIMES("hourly every 1m from 2026-01-01 tz UTC", 1782863890 /* 2026-06-30 23:58:10 */,
                     1782863940 /* 23:59 */, 1782864000 /* 2026-07-01 00:00 */, 1782864060 /* 00:01 */);
}

/* ---- daily ---- */

TEST(daily_every_2_days_leap_february_and_dst)
{
        /* Counted from 2028-02-25; 2028-03-12 is New York's spring forward,
         * so 02:00 that day fires at 03:00 EDT. */
        ASSERT_TIMES(
                "daily 02:00 every 2 days from 2028-02-25 tz America/New_York", 1835067600 /* 2028-02-25 00:00 EST */,
                1835074800 /* 02-25 02:00 EST */, 1835247600 /* 02-27 02:00 EST */, 1835420400 /* 02-29 02:00 EST */,
                1835593200 /* 03-02 02:00 EST */, 1835766000 /* 03-04 02:00 EST */, 1835938800 /* 03-06 02:00 EST */,
                1836111600 /* 03-08 02:00 EST */, 1836284400 /* 03-10 02:00 EST */, 1836457200 /* 03-12 03:00 EDT */,
                1836626400 /* 03-14 02:00 EDT */);
}

TEST(daily_across_berlin_dst)
{
        ASSERT_TIMES("daily 02:30 from 2026-03-01 tz Europe/Berlin", 1774663200 /* 2026-03-28 03:00 CET */,
                     1774746000 /* 03-29 03:00 CEST (02:30 does not exist) */, 1774830600 /* 03-30 02:30 CEST */);
        ASSERT_TIMES("daily 02:30 from 2026-03-01 tz Europe/Berlin", 1792803600 /* 2026-10-24 03:00 CEST */,
                     1792888200 /* 10-25 02:30 CEST, the first of the two */, 1792978200 /* 10-26 02:30 CET */);
}

TEST(daily_shanghai_no_dst)
{
        /* On Berlin's and New York's change days nothing moves: 24 hours
         * apart, 18:30 UTC the evening before. */
        ASSERT_TIMES("daily 02:30 from 2026-03-01 tz Asia/Shanghai", 1774670400 /* 2026-03-28 12:00 CST */,
                     1774722600 /* 03-29 02:30 CST */, 1774809000 /* 03-30 02:30 CST */);
        ASSERT_TIMES("daily 02:30 from 2026-03-01 tz Asia/Shanghai", 1792814400 /* 2026-10-24 12:00 CST */,
                     1792866600 /* 10-25 02:30 CST */, 1792953000 /* 10-26 02:30 CST */);
}

TEST(daily_every_3_days_from_anchor_across_month_ends)
{
        /* From 2026-01-30: 01-30, 02-02 (January has 31 days), 02-05 ... */
        ASSERT_TIMES("daily 02:30 every 3 days from 2026-01-30 tz Asia/Shanghai", 1769616000 /* 2026-01-29 00:00 CST */,
                     1769711400 /* 01-30 02:30 */, 1769970600 /* 02-02 02:30 */, 1770229800 /* 02-05 02:30 */);
        /* ... 02-26, then 03-01 (February 2026 has 28 days), 03-04. */
        ASSERT_TIMES("daily 02:30 every 3 days from 2026-01-30 tz Asia/Shanghai", 1771948800 /* 2026-02-25 00:00 */,
                     1772044200 /* 02-26 02:30 */, 1772303400 /* 03-01 02:30 */, 1772562600 /* 03-04 02:30 */);
}

TEST(daily_does_not_fire_before_from)
{
        ASSERT_TIMES("daily 02:30 every 3 days from 2026-01-30 tz Asia/Shanghai", 0, 1769711400 /* 2026-01-30 02:30 */);
}

TEST(daily_across_a_skipped_day)
{
        /* Pacific/Apia went from UTC-10 to UTC+14 at the end of 2011-12-29:
         * 2011-12-30 never happened, its 12:00 fires at the first instant
         * after the gap, 2011-12-31 00:00 +14. */
        ASSERT_TIMES("daily 12:00 from 2011-12-28 tz Pacific/Apia", 1325109600 /* 2011-12-28 12:00 -10 */,
                     1325196000 /* 12-29 12:00 -10 */, 1325239200 /* 12-31 00:00 +14 */,
                     1325282400 /* 12-31 12:00 +14 */, 1325368800 /* 2012-01-01 12:00 +14 */);
}

/* ---- weekly ---- */

TEST(weekly_every_2_weeks_from_anchor_across_dst)
{
        /* From Wednesday 2026-03-25: its week (03-23..03-29) is week 0, so
         * weeks 0, 2, 4...; Monday 03-23 is before the start. */
        ASSERT_TIMES("weekly mon,wed,fri 02:00 every 2 weeks from 2026-03-25 tz Europe/Berlin",
                     1774306800 /* 2026-03-24 00:00 CET */, 1774400400 /* Wed 03-25 02:00 CET */,
                     1774573200 /* Fri 03-27 02:00 CET */, 1775433600 /* Mon 04-06 02:00 CEST */,
                     1775606400 /* Wed 04-08 02:00 CEST */, 1775779200 /* Fri 04-10 02:00 CEST */,
                     1776643200 /* Mon 04-20 02:00 CEST */);
}

TEST(weekly_on_dst_sundays)
{
        ASSERT_TIMES("weekly sun 02:30 from 2026-03-01 tz Europe/Berlin", 1774144800 /* 2026-03-22 03:00 CET */,
                     1774746000 /* 03-29 03:00 CEST (gap) */, 1775349000 /* 04-05 02:30 CEST */);
        ASSERT_TIMES("weekly sun 02:30 from 2026-03-01 tz Europe/Berlin", 1792792800 /* 2026-10-24 00:00 CEST */,
                     1792888200 /* 10-25 02:30 CEST (first) */, 1793496600 /* 11-01 02:30 CET */);
}

TEST(weekly_every_3_weeks_leap_year_new_york)
{
        /* From Sunday 2028-02-20: week 0 is 02-14..02-20 (Saturday 02-19
         * is before the start), week 3 is 03-06..03-12, week 6 03-27..04-02. */
        ASSERT_TIMES("weekly sat,sun 23:00 every 3 weeks from 2028-02-20 tz America/New_York",
                     1832994000 /* 2028-02-01 00:00 EST */, 1834718400 /* Sun 02-20 23:00 EST */,
                     1836446400 /* Sat 03-11 23:00 EST */, 1836529200 /* Sun 03-12 23:00 EDT */,
                     1838257200 /* Sat 04-01 23:00 EDT */, 1838343600 /* Sun 04-02 23:00 EDT */);
        ASSERT_TIMES("weekly tue 23:00 from 2028-02-01 tz UTC", 1834617600 /* 2028-02-20 00:00 */,
                     1834873200 /* Tue 02-22 23:00 */, 1835478000 /* Tue 02-29 23:00 */,
                     1836082800 /* Tue 03-07 23:00 */);
}

/* ---- monthly ---- */

TEST(monthly_31st_skips_short_months)
{
        ASSERT_TIMES("monthly 31 02:00 from 2026-01-01 tz Asia/Shanghai", 1767196800 /* 2026-01-01 00:00 CST */,
                     1769796000 /* 01-31 02:00 */, 1774893600 /* 03-31 02:00 */, 1780164000 /* 05-31 02:00 */,
                     1785434400 /* 07-31 02:00 */, 1788112800 /* 08-31 02:00 */);
}

TEST(monthly_29_february_leap_years_only)
{
        ASSERT_TIMES("monthly 29 02:00 months feb from 2026-01-01 tz UTC", 1767225600 /* 2026-01-01 00:00 */,
                     1835402400 /* 2028-02-29 02:00 */, 1961632800 /* 2032-02-29 02:00 */);
}

TEST(monthly_days_in_chosen_months_across_dst)
{
        ASSERT_TIMES("monthly 1,15 02:00 months jan,jul from 2026-01-01 tz Europe/Berlin",
                     1767232800 /* 2026-01-01 03:00 CET (01-01 02:00 has passed) */, 1768438800 /* 01-15 02:00 CET */,
                     1782864000 /* 07-01 02:00 CEST */, 1784073600 /* 07-15 02:00 CEST */,
                     1798765200 /* 2027-01-01 02:00 CET */);
}

TEST(monthly_last_day)
{
        ASSERT_TIMES("monthly last 23:00 from 2028-01-01 tz UTC", 1830297600 /* 2028-01-01 00:00 */,
                     1832972400 /* 01-31 23:00 */, 1835478000 /* 02-29 23:00 */, 1838156400 /* 03-31 23:00 */,
                     1840748400 /* 04-30 23:00 */);
}

TEST(monthly_nth_weekday)
{
        ASSERT_TIMES("monthly 2nd sat 03:00 from 2026-01-01 tz America/New_York", 1767243600 /* 2026-01-01 00:00 EST */,
                     1768032000 /* 01-10 03:00 EST */, 1771056000 /* 02-14 03:00 EST */,
                     1773471600 /* 03-14 03:00 EDT */, 1775890800 /* 04-11 03:00 EDT */);
        ASSERT_TIMES("monthly 1st mon 06:00 months jan-mar,oct from 2026-01-01 tz Europe/Berlin",
                     1767222000 /* 2026-01-01 00:00 CET */, 1767589200 /* 01-05 06:00 CET */,
                     1770008400 /* 02-02 06:00 CET */, 1772427600 /* 03-02 06:00 CET */,
                     1791172800 /* 10-05 06:00 CEST */, 1799038800 /* 2027-01-04 06:00 CET */);
}

TEST(monthly_last_weekday)
{
        ASSERT_TIMES("monthly last fri 03:00 from 2026-01-01 tz Europe/Berlin", 1767222000 /* 2026-01-01 00:00 CET */,
                     1769738400 /* 01-30 03:00 CET */, 1772157600 /* 02-27 03:00 CET */,
                     1774576800 /* 03-27 03:00 CET */, 1776992400 /* 04-24 03:00 CEST */,
                     1780016400 /* 05-29 03:00 CEST */);
}

TEST(monthly_nth_weekday_on_dst_days)
{
        /* New York springs forward on the 2nd Sunday of March at 02:00. */
        ASSERT_TIMES("monthly 2nd sun 02:30 months mar from 2026-01-01 tz America/New_York",
                     1767243600 /* 2026-01-01 00:00 EST */, 1772953200 /* 2026-03-08 03:00 EDT */,
                     1805007600 /* 2027-03-14 03:00 EDT */);
        /* ... and falls back on the 1st Sunday of November. */
        ASSERT_TIMES("monthly 1st sun 01:30 months nov from 2026-01-01 tz America/New_York",
                     1767243600 /* 2026-01-01 00:00 EST */, 1793511000 /* 2026-11-01 01:30 EDT */,
                     1825565400 /* 2027-11-07 01:30 EDT */);
}

/* ---- missed runs ---- */

TEST(missed)
{
        vb_schedule s;

        parse_ok("daily 02:00 from 2026-01-01 tz Asia/Shanghai", CREATED, &s);
        /* 2026-05-10 02:00 CST = 1778349600. */
        ASSERT_TRUE(vb_schedule_missed(&s, 1778346000 /* 01:00 */, 1778353200 /* 03:00 */));
        ASSERT_TRUE(vb_schedule_missed(&s, 1778346000, 1778349600));  /* now is the firing time */
        ASSERT_TRUE(!vb_schedule_missed(&s, 1778349600, 1778353200)); /* the firing at last_check was handled */
        ASSERT_TRUE(!vb_schedule_missed(&s, 1778353200, 1778435940 /* 05-11 01:59 */));
        ASSERT_TRUE(vb_schedule_missed(&s, 1778353200, 1778435940 + 60 /* 05-11 02:00 */));
        ASSERT_TRUE(vb_schedule_missed(&s, 1778346000, 1778346000 + 86400 * 30)); /* down for a month */
        ASSERT_TRUE(!vb_schedule_missed(&s, 1778353200, 1778353200));
        ASSERT_TRUE(!vb_schedule_missed(&s, 1778353200, 1778346000)); /* now before last_check */

        parse_ok("once 2026-12-01 02:00 tz Europe/Berlin", CREATED, &s);
        ASSERT_TRUE(vb_schedule_missed(&s, 1795993200 /* 11-30 00:00 CET */, 1796086800 + 3600));
        ASSERT_TRUE(!vb_schedule_missed(&s, 1796086800, 1796086800 + 86400));
        ASSERT_TRUE(!vb_schedule_missed(&s, 1795993200, 1796086800 - 1));

        /* Spring forward: 02:30 Berlin fired at 03:00 CEST = 01:00 UTC. */
        parse_ok("daily 02:30 from 2026-03-01 tz Europe/Berlin", CREATED, &s);
        ASSERT_TRUE(vb_schedule_missed(&s, 1774746000 - 1, 1774746000));
        ASSERT_TRUE(!vb_schedule_missed(&s, 1774746000, 1774746000 + 3600));
}

/* ---- default zone and from ---- */

TEST(defaults_system_zone_and_creation_day)
{
        char tz[VB_SCHEDULE_TZ_MAX];
        vb_schedule s;

        /* ICU reads TZ the first time it is asked (this test is a fresh
         * process). */
        ASSERT_OK(setenv("TZ", "Asia/Shanghai", 1));
        ASSERT_EQ(vb_schedule_system_tz(tz, sizeof(tz)), strlen("Asia/Shanghai"));
        ASSERT_STREQ(tz, "Asia/Shanghai");
        ASSERT_ERR(vb_schedule_system_tz(tz, 5), ENOBUFS);

        /* Created at 2026-01-31 20:00 UTC, which is already 2026-02-01 04:00
         * in Shanghai: from is the local day. */
        parse_ok("daily 02:00 every 2 days", 1769889600, &s);
        ASSERT_STREQ(s.tz, "Asia/Shanghai");
        ASSERT_EQ(s.from.year, 2026);
        ASSERT_EQ(s.from.month, 2);
        ASSERT_EQ(s.from.day, 1);
        ASSERT_EQ(s.every, 2);
        /* The same instant in New York is still 2026-01-31 15:00. */
        parse_ok("daily 02:00 tz America/New_York", 1769889600, &s);
        ASSERT_EQ(s.from.month, 1);
        ASSERT_EQ(s.from.day, 31);
        ASSERT_EQ(s.every, 1);
}

TEST(local_time)
{
        char b[64];

        ASSERT_EQ(vb_schedule_local_time("Europe/Berlin", 1774746000, b, sizeof(b)), 25);
        ASSERT_STREQ(b, "2026-03-29T03:00:00+02:00");
        ASSERT_OK(vb_schedule_local_time("America/New_York", 1793516400, b, sizeof(b)));
        ASSERT_STREQ(b, "2026-11-01T02:00:00-05:00");
        ASSERT_OK(vb_schedule_local_time("Asia/Kolkata", 0, b, sizeof(b)));
        ASSERT_STREQ(b, "1970-01-01T05:30:00+05:30");
        ASSERT_ERR(vb_schedule_local_time("Nowhere/Land", 0, b, sizeof(b)), EINVAL);
        ASSERT_ERR(vb_schedule_local_time("UTC", 0, b, 10), ENOBUFS);
}

/* ---- text and JSON forms ---- */

/* Canonical forms: each reads back to itself. */
static const char *const canonical[] = {
        "manual",
        "immediately",
        "once 2026-12-01 02:00 tz Europe/Berlin",
        "hourly 08:00-20:00 every 2h from 2026-01-05 tz Asia/Shanghai",
        "hourly 22:00-02:00 every 90m from 2026-01-05 tz America/New_York",
        "hourly 00:00-23:59 every 1m from 2026-01-05 tz UTC",
        "hourly 00:00-23:59 every 24h from 2026-01-05 tz UTC",
        "daily 02:00 from 2026-01-05 tz Europe/Berlin",
        "daily 02:00 every 365 days from 2026-01-05 tz Europe/Berlin",
        "weekly mon,wed,fri 02:00 every 2 weeks from 2026-01-05 tz Europe/Berlin",
        "weekly mon-fri,sun 23:59 from 2026-01-05 tz Asia/Kolkata",
        "weekly mon,tue,sat,sun 00:00 every 52 weeks from 2026-01-05 tz UTC",
        "monthly 1,15 02:00 months jan,jul from 2026-01-05 tz Europe/Berlin",
        "monthly 1-5,10,last 02:00 months jan-mar,oct from 2026-01-05 tz UTC",
        "monthly last 23:00 from 2026-01-05 tz UTC",
        "monthly 29 02:00 months feb from 2026-01-05 tz UTC",
        "monthly 2nd sat 03:00 from 2026-01-05 tz America/New_York",
        "monthly last fri 03:00 months dec from 2026-01-05 tz Europe/Berlin",
};

TEST(canonical_round_trip)
{
        for (size_t i = 0; i < ELEMENTSOF(canonical); i++) {
                char buf[VB_SCHEDULE_FORMAT_MAX];
                vb_schedule s, t;
                json_t *j = NULL;
                _cleanup_free_ char *err = NULL;

                parse_ok(canonical[i], CREATED, &s);
                ASSERT_EQ(vb_schedule_format(&s, buf, sizeof(buf)), strlen(canonical[i]));
                ASSERT_STREQ(buf, canonical[i]);
                ASSERT_OK(vb_schedule_check(&s, NULL));
                /* format -> parse gives the very same struct. */
                parse_ok(buf, CREATED, &t);
                ASSERT_MEMEQ(&s, &t, sizeof(s));
                /* And so does JSON, with any other creation time. */
                ASSERT_OK(vb_schedule_to_json(&s, &j));
                memset(&t, 0xa5, sizeof(t));
                if (vb_schedule_from_json(j, CREATED + 86400 * 400, &t, &err) < 0)
                        TEST_FAIL_("from_json of \"%s\": %s", canonical[i], err);
                if (s.kind != VB_SCHEDULE_IMMEDIATELY)
                        ASSERT_MEMEQ(&s, &t, sizeof(s));
                json_decref(j);
                ASSERT_ERR(vb_schedule_format(&s, buf, strlen(canonical[i])), ENOBUFS);
        }
}

TEST(parse_normalizes)
{
        static const char *const cases[][2] = {
                { "Weekly MON,Wed,thursday 2:00 Every 2 Weeks From 2026-03-02 TZ europe/berlin",
                  "weekly mon,wed,thu 02:00 every 2 weeks from 2026-03-02 tz Europe/Berlin" },
                { "weekly Tuesday,mon,wed 02:00 every 1 week from 2026-03-02 tz UTC",
                  "weekly mon-wed 02:00 from 2026-03-02 tz UTC" },
                { "weekly sun,sat,tue,mon 02:00 every 2w from 2026-03-02 tz UTC",
                  "weekly mon,tue,sat,sun 02:00 every 2 weeks from 2026-03-02 tz UTC" },
                { "monthly 15th,1st 02:00 months JULY,january tz UTC from 2026-03-02",
                  "monthly 1,15 02:00 months jan,jul from 2026-03-02 tz UTC" },
                { "monthly first sunday 01:00 tz UTC from 2026-03-02", "monthly 1st sun 01:00 from 2026-03-02 tz UTC" },
                { "monthly 4 mon 01:00 tz UTC from 2026-03-02", "monthly 4th mon 01:00 from 2026-03-02 tz UTC" },
                { "monthly 1,2,3 04:05 months jan-dec from 2026-03-02 tz UTC",
                  "monthly 1-3 04:05 from 2026-03-02 tz UTC" },
                { "hourly every 120 minutes from 2026-03-02 tz UTC",
                  "hourly 00:00-23:59 every 2h from 2026-03-02 tz UTC" },
                { "hourly 8:00-20:00 every 1 hour tz UTC from 2026-03-02",
                  "hourly 08:00-20:00 every 1h from 2026-03-02 tz UTC" },
                { "hourly from 2026-03-02 tz UTC", "hourly 00:00-23:59 every 1h from 2026-03-02 tz UTC" },
                { "  daily\t02:00   every 1 day from 2026-03-02 tz UTC ", "daily 02:00 from 2026-03-02 tz UTC" },
                { "daily 02:00 every 7d from 2026-03-02 tz UTC", "daily 02:00 every 7 days from 2026-03-02 tz UTC" },
                { "once 2026-12-01 2:00 tz asia/shanghai", "once 2026-12-01 02:00 tz Asia/Shanghai" },
                { "MANUAL", "manual" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[VB_SCHEDULE_FORMAT_MAX];
                vb_schedule s;

                parse_ok(cases[i][0], CREATED, &s);
                ASSERT_OK(vb_schedule_format(&s, buf, sizeof(buf)));
                ASSERT_STREQ(buf, cases[i][1]);
        }
}

static void assert_json(const char *spec, const char *want)
{
        _cleanup_free_ char *text = NULL;
        vb_schedule s;
        json_t *j = NULL;

        parse_ok(spec, CREATED, &s);
        ASSERT_OK(vb_schedule_to_json(&s, &j));
        text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        ASSERT_STREQ(text, want);
}

TEST(json_form)
{
        assert_json("manual", "{\"kind\":\"manual\"}");
        assert_json("immediately", "{\"kind\":\"immediately\",\"at\":1777636800}");
        assert_json("once 2026-12-01 02:00 tz Europe/Berlin",
                    "{\"kind\":\"once\",\"date\":\"2026-12-01\",\"time\":\"02:00\",\"tz\":\"Europe/Berlin\"}");
        assert_json("hourly 08:00-20:00 every 2h from 2026-01-05 tz UTC",
                    "{\"kind\":\"hourly\",\"start\":\"08:00\",\"end\":\"20:00\",\"every_minutes\":120,"
                    "\"from\":\"2026-01-05\",\"tz\":\"UTC\"}");
        assert_json("daily 02:00 every 2 days from 2026-01-05 tz UTC",
                    "{\"kind\":\"daily\",\"time\":\"02:00\",\"every_days\":2,\"from\":\"2026-01-05\",\"tz\":\"UTC\"}");
        assert_json("weekly mon,fri 02:00 from 2026-01-05 tz UTC",
                    "{\"kind\":\"weekly\",\"weekdays\":[\"mon\",\"fri\"],\"time\":\"02:00\",\"every_weeks\":1,"
                    "\"from\":\"2026-01-05\",\"tz\":\"UTC\"}");
        assert_json("monthly 1,last 02:00 months jan,jul from 2026-01-05 tz UTC",
                    "{\"kind\":\"monthly\",\"days\":[1,\"last\"],\"time\":\"02:00\",\"months\":[\"jan\",\"jul\"],"
                    "\"from\":\"2026-01-05\",\"tz\":\"UTC\"}");
        assert_json(
                "monthly last fri 03:00 months dec from 2026-01-05 tz UTC",
                "{\"kind\":\"monthly\",\"nth\":\"last\",\"weekday\":\"fri\",\"time\":\"03:00\",\"months\":[\"dec\"],"
                "\"from\":\"2026-01-05\",\"tz\":\"UTC\"}");
}

static void from_json_text(const char *text, time_t created, vb_schedule *s)
{
        _cleanup_free_ char *err = NULL;
        json_error_t je;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &je);

        ASSERT_TRUE(j != NULL);
        if (vb_schedule_from_json(j, created, s, &err) < 0)
                TEST_FAIL_("from_json %s: %s", text, err ? err : "(no message)");
        json_decref(j);
}

TEST(json_defaults_and_text)
{
        char buf[VB_SCHEDULE_FORMAT_MAX];
        vb_schedule s;

        /* from: the creation day in the zone; every: 1. */
        from_json_text("{\"kind\":\"daily\",\"time\":\"02:00\",\"tz\":\"America/New_York\"}", 1769889600, &s);
        ASSERT_OK(vb_schedule_format(&s, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "daily 02:00 from 2026-01-31 tz America/New_York");
        from_json_text("{\"kind\":\"hourly\",\"tz\":\"UTC\"}", 1769889600, &s);
        ASSERT_OK(vb_schedule_format(&s, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "hourly 00:00-23:59 every 1h from 2026-01-31 tz UTC");
        from_json_text("{\"kind\":\"monthly\",\"nth\":\"first\",\"weekday\":\"Sunday\",\"time\":\"01:00\","
                       "\"tz\":\"utc\",\"from\":\"2026-01-01\"}",
                       0, &s);
        ASSERT_OK(vb_schedule_format(&s, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "monthly 1st sun 01:00 from 2026-01-01 tz UTC");
        from_json_text("{\"kind\":\"immediately\"}", 1769889600, &s);
        ASSERT_EQ(s.at, 1769889600);
        from_json_text("{\"kind\":\"immediately\",\"at\":1234}", 1769889600, &s);
        ASSERT_EQ(s.at, 1234);
        /* A string is the text form. */
        from_json_text("\"weekly sat 03:00 from 2026-01-05 tz UTC\"", 0, &s);
        ASSERT_OK(vb_schedule_format(&s, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "weekly sat 03:00 from 2026-01-05 tz UTC");
}

/* Asserts that spec is refused with -EINVAL and a message holding every
 * one of the NULL-terminated fragments. */
static void assert_parse_fails(const char *spec, ...)
{
        _cleanup_free_ char *err = NULL;
        vb_schedule s;
        const char *frag;
        va_list ap;

        memset(&s, 0x5a, sizeof(s));
        ASSERT_ERR(vb_schedule_parse(spec, CREATED, &s, &err), EINVAL);
        if (!err)
                TEST_FAIL_("parse \"%s\": no message", spec);
        va_start(ap, spec);
        while ((frag = va_arg(ap, const char *)))
                if (!strstr(err, frag))
                        TEST_FAIL_("parse \"%s\": message \"%s\" lacks \"%s\"", spec, err, frag);
        va_end(ap);
        ASSERT_EQ(s.kind, 0x5a5a5a5a); /* untouched */
}

TEST(parse_errors_kind_and_structure)
{
        assert_parse_fails("", "empty schedule", "manual, immediately, once, hourly, daily, weekly or monthly", NULL);
        assert_parse_fails("   ", "empty schedule", NULL);
        assert_parse_fails("sometimes", "unknown schedule 'sometimes'", "expected manual", NULL);
        assert_parse_fails("manual tz UTC", "unexpected 'tz' after 'manual': expected the end", NULL);
        assert_parse_fails("immediately now", "unexpected 'now' after 'immediately': expected the end", NULL);
        assert_parse_fails("once 2026-12-01 02:00 from 2026-01-01",
                           "unexpected 'from' after 'once 2026-12-01 02:00': expected 'tz' or the end", NULL);
        assert_parse_fails("daily 02:00 sometimes",
                           "unexpected 'sometimes' after 'daily 02:00': expected 'every', 'from', 'tz' or the end",
                           NULL);
        assert_parse_fails("monthly 1 02:00 every 2 weeks",
                           "unexpected 'every' after 'monthly 1 02:00': expected 'months', 'from', 'tz' or the end",
                           NULL);
        assert_parse_fails("daily 02:00 tz UTC tz UTC", "'tz' is given twice", NULL);
        assert_parse_fails("daily 02:00 every 2 days every 3 days", "'every' is given twice", NULL);
        assert_parse_fails("daily 02:00 from 2026-01-01 from 2026-01-02", "'from' is given twice", NULL);
        assert_parse_fails("monthly 1 02:00 months jan months feb", "'months' is given twice", NULL);

        char many[400] = "daily 02:00";
        for (int i = 0; i < 70; i++)
                strcat(many, " x");
        assert_parse_fails(many, "too many words", NULL);
        char *long_spec = malloc(2000);
        ASSERT_TRUE(long_spec != NULL);
        memset(long_spec, 'a', 1999);
        long_spec[1999] = 0;
        assert_parse_fails(long_spec, "too long", NULL);
        free(long_spec);
}

TEST(parse_errors_times_and_dates)
{
        assert_parse_fails("daily", "expected a time HH:MM after 'daily'", NULL);
        assert_parse_fails("daily 2am", "unexpected '2am' after 'daily': expected a time HH:MM", NULL);
        assert_parse_fails("daily 25:00", "'25:00' is not a time", "hour must be 00-23", NULL);
        assert_parse_fails("daily 24:00", "'24:00' is not a time", NULL);
        assert_parse_fails("daily 02:60", "'02:60' is not a time", "minutes must be 00-59", NULL);
        assert_parse_fails("daily 02:0", "unexpected '02:0'", "expected a time HH:MM", NULL);
        assert_parse_fails("once", "expected a date YYYY-MM-DD after 'once'", NULL);
        assert_parse_fails("once 12/01/2026 02:00", "unexpected '12/01/2026' after 'once': expected a date YYYY-MM-DD",
                           NULL);
        assert_parse_fails("once 2026-12-01", "expected a time HH:MM after 'once 2026-12-01'", NULL);
        assert_parse_fails("once 2026-02-30 02:00", "2026-02-30 is not a date: February 2026 has 28 days", NULL);
        assert_parse_fails("once 2027-02-29 02:00", "2027-02-29 is not a date: February 2027 has 28 days", NULL);
        assert_parse_fails("once 2026-04-31 02:00", "April 2026 has 30 days", NULL);
        assert_parse_fails("once 2026-13-01 02:00", "month 13 is out of range", NULL);
        assert_parse_fails("once 2026-00-10 02:00", "month 0 is out of range", NULL);
        assert_parse_fails("once 2026-01-00 02:00", "2026-01-00 is not a date", NULL);
        assert_parse_fails("daily 02:00 from 1969-12-31", "year 1969 is out of range: expected 1970-9999", NULL);
        assert_parse_fails("daily 02:00 from tomorrow",
                           "unexpected 'tomorrow' after 'daily 02:00 from': expected a date YYYY-MM-DD", NULL);
        assert_parse_fails("daily 02:00 from", "expected a date YYYY-MM-DD after 'daily 02:00 from'", NULL);
}

TEST(parse_errors_every)
{
        assert_parse_fails("daily 02:00 every 0 days", "'every 0 days' is out of range", "1 to 365 days", NULL);
        assert_parse_fails("daily 02:00 every 366 days", "'every 366 days' is out of range", NULL);
        assert_parse_fails("daily 02:00 every 99999999999 days", "out of range", NULL);
        assert_parse_fails("daily 02:00 every 2h", "unknown unit 'h' in 'every 2h'", "days (every 2 days)", NULL);
        assert_parse_fails("daily 02:00 every two days",
                           "unexpected 'two' after 'daily 02:00 every': expected a number and a unit", NULL);
        assert_parse_fails("daily 02:00 every", "expected a number and a unit after 'daily 02:00 every'", NULL);
        assert_parse_fails("daily 02:00 every 2", "expected days (every 2 days) after 'daily 02:00 every 2'", NULL);
        assert_parse_fails("weekly mon 02:00 every 0w", "'every 0w' is out of range", "1 to 52 weeks", NULL);
        assert_parse_fails("weekly mon 02:00 every 53 weeks", "'every 53 weeks' is out of range", NULL);
        assert_parse_fails("weekly mon 02:00 every 2 days", "unknown unit 'days'", "weeks (every 2 weeks)", NULL);
        assert_parse_fails("hourly every 0m", "'every 0m' is out of range: expected 1m to 24h", NULL);
        assert_parse_fails("hourly every 25h", "'every 25h' is out of range", NULL);
        assert_parse_fails("hourly every 1441 minutes", "'every 1441 minutes' is out of range", NULL);
        assert_parse_fails("hourly every 2 days", "unknown unit 'days' in 'every 2 days'", "h or m", NULL);
        assert_parse_fails("hourly every 1.5h", "unknown unit '.5h'", NULL);
}

TEST(parse_errors_hourly_window)
{
        assert_parse_fails("hourly 08:00-08:00", "the window '08:00-08:00' is empty", NULL);
        assert_parse_fails("hourly 08:00-25:00", "'25:00' is not a time", "hour must be 00-23", NULL);
        assert_parse_fails("hourly 08:00 every 2h", "unexpected '08:00' after 'hourly': expected a window HH:MM-HH:MM",
                           NULL);
        assert_parse_fails("hourly 08:00-8pm", "unexpected '08:00-8pm' after 'hourly': expected a window", NULL);
        assert_parse_fails("hourly every 2h 08:00-20:00",
                           "unexpected '08:00-20:00' after 'hourly every 2h': expected 'every', 'from', 'tz' or the "
                           "end",
                           NULL);
}

TEST(parse_errors_weekdays_months_days)
{
        assert_parse_fails("weekly 02:00", "unexpected '02:00' after 'weekly': expected weekdays", NULL);
        assert_parse_fails("weekly", "expected weekdays (mon,wed,fri or mon-fri) after 'weekly'", NULL);
        assert_parse_fails("weekly mon,mox 02:00", "unknown weekday 'mox' in 'mon,mox'",
                           "expected mon, tue, wed, thu, fri, sat or sun", NULL);
        assert_parse_fails("weekly fri-mon 02:00", "the range 'fri-mon' in 'fri-mon' goes backwards", NULL);
        assert_parse_fails("weekly mon,,fri 02:00", "empty item in 'mon,,fri'", NULL);
        assert_parse_fails("weekly mon- 02:00", "unknown weekday '' in 'mon-'", NULL);
        assert_parse_fails("monthly 32 02:00", "day 32 is out of range in '32': expected 1-31 or last", NULL);
        assert_parse_fails("monthly 1,0 02:00", "day 0 is out of range in '1,0'", NULL);
        assert_parse_fails("monthly 5-40 02:00", "day 40 is out of range in '5-40'", NULL);
        assert_parse_fails("monthly 1,x 02:00", "unknown day 'x' in '1,x': expected 1-31 or last", NULL);
        assert_parse_fails("monthly 20-last 02:00", "'last' cannot be part of a range in '20-last'", NULL);
        assert_parse_fails("monthly 02:00", "unexpected '02:00' after 'monthly': expected days of the month", NULL);
        assert_parse_fails("monthly 1,15 02:00 months jan,jux", "unknown month 'jux' in 'jan,jux'", "expected jan, feb",
                           NULL);
        assert_parse_fails("monthly 1 02:00 months dec-jan", "goes backwards", NULL);
        assert_parse_fails("monthly 1 02:00 months", "expected months (jan,jul or jan-mar) after", NULL);
        assert_parse_fails("monthly 30 02:00 months feb", "day 30 never occurs in the chosen months (feb)",
                           "use 'last'", NULL);
        assert_parse_fails("monthly 1,31 02:00 months apr,jun,sep,nov",
                           "day 31 never occurs in the chosen months (apr,jun,sep,nov)", NULL);
        assert_parse_fails("monthly 5th sat 02:00",
                           "'5th sat': the weekday's ordinal must be 1st, 2nd, 3rd, 4th or last", NULL);
        assert_parse_fails("monthly 2nd sat,sun 02:00", "'2nd sat,sun': a monthly schedule takes one weekday", NULL);
        assert_parse_fails("monthly 2nd sat", "expected a time HH:MM after 'monthly 2nd sat'", NULL);
}

TEST(parse_errors_zone)
{
        assert_parse_fails("daily 02:00 tz Mars/Olympus", "unknown time zone 'Mars/Olympus'",
                           "IANA zone name such as Europe/Berlin", NULL);
        assert_parse_fails("daily 02:00 tz GMT+05:00", "unknown time zone 'GMT+05:00'", NULL);
        assert_parse_fails("daily 02:00 tz Etc/Unknown", "unknown time zone 'Etc/Unknown'", NULL);
        assert_parse_fails("daily 02:00 tz Europe/Berlin;rm", "unknown time zone 'Europe/Berlin;rm'", NULL);
        assert_parse_fails("daily 02:00 tz", "expected a time zone such as Europe/Berlin after 'daily 02:00 tz'", NULL);
}

/* As assert_parse_fails() for the JSON form. */
static void assert_json_fails(const char *text, const char *frag)
{
        _cleanup_free_ char *err = NULL;
        json_error_t je;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
        vb_schedule s;

        ASSERT_TRUE(j != NULL);
        ASSERT_ERR(vb_schedule_from_json(j, CREATED, &s, &err), EINVAL);
        json_decref(j);
        if (!err || !strstr(err, frag))
                TEST_FAIL_("from_json %s: message \"%s\" lacks \"%s\"", text, err ? err : "(none)", frag);
}

TEST(json_errors)
{
        assert_json_fails("42", "a schedule must be a JSON object or a string");
        assert_json_fails("{}", "missing field 'kind'");
        assert_json_fails("{\"kind\":\"yearly\"}", "field 'kind' must be manual, immediately");
        assert_json_fails("{\"kind\":3}", "field 'kind' must be");
        assert_json_fails("\"daily 25:00\"", "'25:00' is not a time");
        assert_json_fails("{\"kind\":\"manual\",\"tz\":\"UTC\"}", "unknown field 'tz' in a manual schedule");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"02:00\",\"weekdays\":[\"mon\"]}",
                          "unknown field 'weekdays' in a daily schedule");
        assert_json_fails("{\"kind\":\"daily\"}", "missing field 'time' in a daily schedule");
        assert_json_fails("{\"kind\":\"daily\",\"time\":2}", "field 'time' must be a string: a time HH:MM");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"2am\"}", "field 'time': expected a time HH:MM, got '2am'");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"25:00\"}", "field 'time': '25:00' is not a time");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"02:00\",\"every_days\":0}",
                          "field 'every_days': 0 is out of range: expected 1-365 days");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"02:00\",\"every_days\":\"2\"}",
                          "field 'every_days' must be an integer");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"02:00\",\"from\":\"2026-02-30\"}",
                          "field 'from': 2026-02-30 is not a date");
        assert_json_fails("{\"kind\":\"daily\",\"time\":\"02:00\",\"tz\":\"Nowhere/Land\"}",
                          "field 'tz': unknown time zone 'Nowhere/Land'");
        assert_json_fails("{\"kind\":\"once\",\"time\":\"02:00\"}", "missing field 'date' in a once schedule");
        assert_json_fails("{\"kind\":\"immediately\",\"at\":\"now\"}", "field 'at' must be an integer");
        assert_json_fails("{\"kind\":\"hourly\",\"start\":\"08:00\",\"end\":\"08:00\"}", "is empty");
        assert_json_fails("{\"kind\":\"hourly\",\"every_minutes\":1441}",
                          "field 'every_minutes': 1441 is out of range: expected 1-1440 minutes");
        assert_json_fails("{\"kind\":\"weekly\",\"time\":\"02:00\"}", "missing field 'weekdays' in a weekly schedule");
        assert_json_fails("{\"kind\":\"weekly\",\"weekdays\":[],\"time\":\"02:00\"}",
                          "field 'weekdays' must be a non-empty array of weekdays");
        assert_json_fails("{\"kind\":\"weekly\",\"weekdays\":[\"mon\",\"funday\"],\"time\":\"02:00\"}",
                          "field 'weekdays': \"funday\" is not a weekday");
        assert_json_fails("{\"kind\":\"weekly\",\"weekdays\":[\"mon\"],\"time\":\"02:00\",\"every_weeks\":53}",
                          "field 'every_weeks': 53 is out of range");
        assert_json_fails("{\"kind\":\"monthly\",\"days\":[1,32],\"time\":\"02:00\"}",
                          "field 'days': 32 is not a day: expected 1-31 or last");
        assert_json_fails("{\"kind\":\"monthly\",\"days\":[\"5\"],\"time\":\"02:00\"}",
                          "field 'days': \"5\" is not a day");
        assert_json_fails("{\"kind\":\"monthly\",\"days\":[1],\"time\":\"02:00\",\"months\":[\"jan\",\"jux\"]}",
                          "field 'months': \"jux\" is not a month");
        assert_json_fails("{\"kind\":\"monthly\",\"days\":[30],\"time\":\"02:00\",\"months\":[\"feb\"]}",
                          "day 30 never occurs in the chosen months (feb)");
        assert_json_fails("{\"kind\":\"monthly\",\"time\":\"02:00\"}", "missing field 'days' or 'nth'");
        assert_json_fails("{\"kind\":\"monthly\",\"nth\":\"5th\",\"weekday\":\"sat\",\"time\":\"03:00\"}",
                          "field 'nth': '5th' is not an ordinal: expected 1st, 2nd, 3rd, 4th or last");
        assert_json_fails("{\"kind\":\"monthly\",\"nth\":\"2nd\",\"time\":\"03:00\"}", "missing field 'weekday'");
        assert_json_fails("{\"kind\":\"monthly\",\"weekday\":\"sat\",\"time\":\"03:00\"}", "missing field 'nth'");
        assert_json_fails("{\"kind\":\"monthly\",\"nth\":\"2nd\",\"weekday\":\"caturday\",\"time\":\"03:00\"}",
                          "field 'weekday': unknown weekday 'caturday'");
        assert_json_fails("{\"kind\":\"monthly\",\"days\":[1],\"nth\":\"1st\",\"weekday\":\"mon\",\"time\":\"03:00\"}",
                          "exclude each other");
}

TEST(check_refuses_bad_structs)
{
        _cleanup_free_ char *err = NULL;
        char buf[VB_SCHEDULE_FORMAT_MAX];
        vb_schedule s;
        json_t *j = NULL;
        time_t t;

        parse_ok("daily 02:00 from 2026-01-01 tz UTC", CREATED, &s);
        s.every = 0;
        ASSERT_ERR(vb_schedule_check(&s, &err), EINVAL);
        ASSERT_TRUE(err && strstr(err, "every 0 days is out of range"));
        ASSERT_ERR(vb_schedule_next(&s, 0, &t), EINVAL);
        ASSERT_ERR(vb_schedule_format(&s, buf, sizeof(buf)), EINVAL);
        ASSERT_ERR(vb_schedule_to_json(&s, &j), EINVAL);
        ASSERT_TRUE(!vb_schedule_missed(&s, 0, CREATED));

        parse_ok("daily 02:00 from 2026-01-01 tz UTC", CREATED, &s);
        strcpy(s.tz, "Europe/Berlinn");
        ASSERT_ERR(vb_schedule_next(&s, 0, &t), EINVAL);
        s.kind = 99;
        ASSERT_ERR(vb_schedule_check(&s, NULL), EINVAL);
}

TEST(next_far_future)
{
        vb_schedule s;
        time_t t;

        parse_ok("daily 02:00 from 2026-01-01 tz UTC", CREATED, &s);
        /* 9999-12-31 00:00 UTC -> 02:00 UTC; nothing is answered past the
         * year 9999. */
        ASSERT_OK(vb_schedule_next(&s, INT64_C(253402214400), &t));
        ASSERT_EQ(t, INT64_C(253402221600));
        ASSERT_ERR(vb_schedule_next(&s, INT64_C(253402300800), &t), ENOENT);
        /* Long before the start: the first firing, 2026-01-01 02:00 UTC. */
        ASSERT_OK(vb_schedule_next(&s, -INT64_C(1000000000000), &t));
        ASSERT_EQ(t, 1767232800);
        ASSERT_OK(vb_schedule_next(&s, -1, &t));
        ASSERT_EQ(t, 1767232800);
}
