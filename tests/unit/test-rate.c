/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-rate.c -- tests for transport/rate.[ch]: every valid form of a speed
 * limit schedule and its canonical text, every syntax error with its
 * message, the rate in force at chosen times (in UTC), across midnight and
 * the week end, and the token bucket driven by synthetic clocks.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/rate.h"

#define MiB (UINT64_C(1) << 20)
#define NSEC_PER_SEC UINT64_C(1000000000)
/* 2024-01-01 00:00:00 UTC, a Monday. */
#define MONDAY0 ((time_t)1704067200)

static void use_utc(void)
{
        ASSERT_OK(setenv("TZ", "UTC", 1));
        tzset();
}

/* Wall time on day 0 (Monday) .. 6 (Sunday) of the first week of 2024,
 * or later weeks with day >= 7. */
static time_t at(int day, int hour, int minute)
{
        return MONDAY0 + (time_t)day * 86400 + hour * 3600 + minute * 60;
}

static void assert_canonical(const char *spec, const char *canonical)
{
        tp_rate_schedule s = { 0 }, s2 = { 0 };
        _cleanup_free_ char *err = NULL, *text = NULL, *text2 = NULL;
        int r;

        r = tp_rate_schedule_parse(spec, &s, &err);
        if (r < 0)
                TEST_FAIL_("parsing \"%s\" failed: %s", spec, err ? err : "(no message)");
        ASSERT_TRUE(err == NULL);
        text = tp_rate_schedule_format(&s);
        ASSERT_TRUE(text);
        if (!streq(text, canonical))
                TEST_FAIL_("\"%s\" formats as \"%s\", expected \"%s\"", spec, text, canonical);
        /* The canonical text is a fixed point with the same windows. */
        ASSERT_OK(tp_rate_schedule_parse(text, &s2, NULL));
        ASSERT_EQ(s2.n, s.n);
        for (size_t i = 0; i < s.n; i++) {
                ASSERT_EQ(s2.v[i].days, s.v[i].days);
                ASSERT_EQ(s2.v[i].from, s.v[i].from);
                ASSERT_EQ(s2.v[i].to, s.v[i].to);
                ASSERT_UEQ(s2.v[i].rate, s.v[i].rate);
        }
        text2 = tp_rate_schedule_format(&s2);
        ASSERT_STREQ(text2, canonical);
        tp_rate_schedule_clear(&s);
        tp_rate_schedule_clear(&s2);
        ASSERT_TRUE(s.v == NULL && s.n == 0);
}

TEST(rate_parse_valid_forms)
{
        static const char *const cases[][2] = {
                /* no limit */
                { "", "unlimited" },
                { "   ", "unlimited" },
                { "none", "unlimited" },
                { "unlimited", "unlimited" },
                { " UNLIMITED ", "unlimited" },
                { "None", "unlimited" },
                /* rates and units */
                { "50MiB/s", "50MiB/s" },
                { "  50MiB/s  ", "50MiB/s" },
                { "50 MiB/s", "50MiB/s" },
                { "1.5MiB/s", "1.5MiB/s" },
                { "1536KiB/s", "1.5MiB/s" },
                { "1024KiB/s", "1MiB/s" },
                { "0.5GiB/s", "512MiB/s" },
                { "1.3MiB/s", "1.3MiB/s" },
                { "1.25GiB/s", "1.25GiB/s" },
                { "100B/s", "100B/s" },
                { "1B/s", "1B/s" },
                { "0.1KiB/s", "102B/s" },
                { "2KiB/s", "2KiB/s" },
                { "1GiB/s", "1GiB/s" },
                { "1024GiB/s", "1024GiB/s" },
                { "007MiB/s", "7MiB/s" },
                /* days */
                { "mon 1MiB/s", "mon 1MiB/s" },
                { "Mon-FRI 5MiB/s", "mon-fri 5MiB/s" },
                { "mon-sun 5MiB/s", "5MiB/s" },
                { "mon-mon 5MiB/s", "mon 5MiB/s" },
                { "fri-mon 10MiB/s", "fri-mon 10MiB/s" },
                { "sat,sun,mon,fri 10MiB/s", "fri-mon 10MiB/s" },
                { "sun-tue 10MiB/s", "sun-tue 10MiB/s" },
                { "sun,mon 5MiB/s", "sun,mon 5MiB/s" },
                { "sat,sun 5MiB/s", "sat,sun 5MiB/s" },
                { "mon,wed,fri 1KiB/s", "mon,wed,fri 1KiB/s" },
                { "mon,tue,thu-sat 1MiB/s", "mon,tue,thu-sat 1MiB/s" },
                { "thu-tue 1MiB/s", "thu-tue 1MiB/s" },
                /* times */
                { "08:00-18:00 1MiB/s", "08:00-18:00 1MiB/s" },
                { "8:00-9:30 1MiB/s", "08:00-09:30 1MiB/s" },
                { "22:00-06:00 1GiB/s", "22:00-06:00 1GiB/s" },
                { "00:00-24:00 7MiB/s", "7MiB/s" },
                { "12:00-24:00 7MiB/s", "12:00-24:00 7MiB/s" },
                { "23:59-00:00 7MiB/s", "23:59-00:00 7MiB/s" },
                /* whole schedules */
                { "mon-fri 08:00-18:00 50MiB/s; sat,sun 00:00-24:00 200MiB/s",
                  "mon-fri 08:00-18:00 50MiB/s; sat,sun 200MiB/s" },
                { "mon 2MiB/s;tue 3MiB/s", "mon 2MiB/s; tue 3MiB/s" },
                { "mon-fri\t08:00-18:00\t50MiB/s ;\nsun 1MiB/s", "mon-fri 08:00-18:00 50MiB/s; sun 1MiB/s" },
                { "mon 12:00-24:00 unlimited; 10MiB/s", "mon 12:00-24:00 unlimited; 10MiB/s" },
                { "sat none; 10MiB/s", "sat unlimited; 10MiB/s" },
                { "unlimited; 10MiB/s", "unlimited; 10MiB/s" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_canonical(cases[i][0], cases[i][1]);
}

TEST(rate_parse_fields)
{
        tp_rate_schedule s = { 0 };

        ASSERT_OK(tp_rate_schedule_parse(
                "mon-fri 08:00-18:00 50MiB/s; sat,sun 00:00-24:00 1.5KiB/s; 22:00-06:00 1GiB/s", &s, NULL));
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.v[0].days, 0x1f);
        ASSERT_EQ(s.v[0].from, 8 * 60);
        ASSERT_EQ(s.v[0].to, 18 * 60);
        ASSERT_UEQ(s.v[0].rate, 50 * MiB);
        ASSERT_EQ(s.v[1].days, 0x60);
        ASSERT_EQ(s.v[1].from, 0);
        ASSERT_EQ(s.v[1].to, 1440);
        ASSERT_UEQ(s.v[1].rate, 1536);
        ASSERT_EQ(s.v[2].days, TP_RATE_ALL_DAYS);
        ASSERT_EQ(s.v[2].from, 22 * 60);
        ASSERT_EQ(s.v[2].to, 6 * 60);
        ASSERT_UEQ(s.v[2].rate, 1024 * MiB);
        tp_rate_schedule_clear(&s);

        ASSERT_OK(tp_rate_schedule_parse("fri-mon 1.3MiB/s", &s, NULL));
        ASSERT_EQ(s.n, 1);
        ASSERT_EQ(s.v[0].days, 0x71);     /* fri sat sun mon */
        ASSERT_UEQ(s.v[0].rate, 1363149); /* 1.3 * 2^20 = 1363148.8, rounded */
        tp_rate_schedule_clear(&s);

        ASSERT_OK(tp_rate_schedule_parse("1024GiB/s", &s, NULL));
        ASSERT_UEQ(s.v[0].rate, TP_RATE_MAX);
        tp_rate_schedule_clear(&s);

        ASSERT_OK(tp_rate_schedule_parse("none", &s, NULL));
        ASSERT_EQ(s.n, 0);
        ASSERT_TRUE(s.v == NULL);
        tp_rate_schedule_clear(&s);
        tp_rate_schedule_clear(NULL);

        _cleanup_free_ char *empty = tp_rate_schedule_format(NULL);
        ASSERT_STREQ(empty, "unlimited");
}

TEST(rate_parse_errors)
{
        static const char *const cases[][2] = {
                { "50MB/s", "position 3: expected a unit (B/s, KiB/s, MiB/s or GiB/s) after the number, got 'MB/s'" },
                { "50MiB/sec",
                  "position 3: expected a unit (B/s, KiB/s, MiB/s or GiB/s) after the number, got 'MiB/sec'" },
                { "50", "position 3: expected a unit (B/s, KiB/s, MiB/s or GiB/s) after the number, got the end" },
                { "50 mon", "position 4: expected a unit (B/s, KiB/s, MiB/s or GiB/s) after the number, got 'mon'" },
                { "0MiB/s", "position 1: the rate must be at least 1B/s (write 'unlimited' for no limit)" },
                { "0.4B/s", "position 1: the rate must be at least 1B/s (write 'unlimited' for no limit)" },
                { "1025GiB/s", "position 1: the rate is above the maximum of 1024GiB/s" },
                { "1024.001GiB/s", "position 1: the rate is above the maximum of 1024GiB/s" },
                { "1234567890123456B/s", "position 1: the rate is above the maximum of 1024GiB/s" },
                { "1.MiB/s", "position 3: expected digits after the decimal point, got 'MiB/s'" },
                { "1.1234567MiB/s", "position 9: too many decimals (at most 6)" },
                { "-5MiB/s",
                  "position 1: expected days (e.g. mon-fri), a time range (e.g. 08:00-18:00) or a rate (e.g. 50MiB/s), "
                  "got '-'" },
                { "monday 5MiB/s",
                  "position 1: expected days (e.g. mon-fri), a time range (e.g. 08:00-18:00) or a rate (e.g. 50MiB/s), "
                  "got 'monday'" },
                { "mon-fri", "position 8: expected a time range (e.g. 08:00-18:00) or a rate (e.g. 50MiB/s) after the "
                             "days, got the end" },
                { "mon-fri 08:00-18:00",
                  "position 20: expected a rate (e.g. 50MiB/s or unlimited) after the time range, got the end" },
                { "mon 08:00-18:00 sat 5MiB/s",
                  "position 17: expected a rate (e.g. 50MiB/s or unlimited) after the time range, got 'sat'" },
                { "mon-xyz 5MiB/s", "position 5: expected a day to end the range (mon..sun), got 'xyz'" },
                { "mon- 5MiB/s", "position 5: expected a day to end the range (mon..sun), got a space" },
                { "mon,xyz 5MiB/s", "position 5: expected a day (mon, tue, wed, thu, fri, sat, sun), got 'xyz'" },
                { "mon, 5MiB/s", "position 5: expected a day (mon, tue, wed, thu, fri, sat, sun), got a space" },
                { "mon-fri,wed 5MiB/s", "position 9: 'wed' repeats a day listed before it" },
                { "sat,fri-sun 5MiB/s", "position 5: 'fri-sun' repeats a day listed before it" },
                { "mon-fri-sat 5MiB/s", "position 8: expected ',' or a space after the days, got '-'" },
                { "mon-fri08:00-18:00 5MiB/s", "position 8: expected ',' or a space after the days, got '08:00'" },
                { "25:00-06:00 5MiB/s", "position 1: hour 25 is out of range (00-23, or 24:00 as an end)" },
                { "08:00-24:30 5MiB/s", "position 7: hour 24 is out of range (00-23, or 24:00 as an end)" },
                { "08:60-09:00 5MiB/s", "position 1: minute 60 is out of range (00-59)" },
                { "24:00-06:00 5MiB/s", "position 1: 24:00 is only valid as the end of a time range" },
                { "8:0-9:00 1MiB/s", "position 1: expected a time HH:MM, got '8:0'" },
                { "008:00-9:00 1MiB/s", "position 1: expected a time HH:MM, got '008:00'" },
                { "08:00-9 1MiB/s", "position 7: expected a time HH:MM, got '9'" },
                { "08:00 5MiB/s", "position 6: expected '-' and an end time after the start time, got a space" },
                { "08:00-08:00 5MiB/s",
                  "position 1: the time range 08:00-08:00 is empty (it ends where it starts; 00:00-24:00 is a whole "
                  "day)" },
                { "08:00-18:00x 5MiB/s", "position 12: expected a space after the time range, got 'x'" },
                { "08:00-18:00 mon 5MiB/s",
                  "position 13: expected a rate (e.g. 50MiB/s or unlimited) after the time range, got 'mon'" },
                { "5MiB/s extra", "position 8: expected ';' or the end after the rate, got 'extra'" },
                { "mon 5MiB/s, tue 6MiB/s", "position 11: expected ';' or the end after the rate, got ','" },
                { "unlimited MiB/s", "position 11: expected ';' or the end after the rate, got 'MiB/s'" },
                { "5MiB/s;",
                  "position 8: expected a window (e.g. mon-fri 08:00-18:00 50MiB/s) after ';', got the end" },
                { ";5MiB/s", "position 1: expected a window (e.g. mon-fri 08:00-18:00 50MiB/s), got ';'" },
                { "5MiB/s;; 6MiB/s",
                  "position 8: expected a window (e.g. mon-fri 08:00-18:00 50MiB/s) after ';', got ';'" },
                { "unlimited;",
                  "position 11: expected a window (e.g. mon-fri 08:00-18:00 50MiB/s) after ';', got the end" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                tp_rate_schedule s = { .v = (tp_rate_window *)&s, .n = 42 };
                _cleanup_free_ char *err = NULL;

                if (tp_rate_schedule_parse(cases[i][0], &s, &err) != -EINVAL)
                        TEST_FAIL_("\"%s\" parsed, expected the error \"%s\"", cases[i][0], cases[i][1]);
                if (!err || !streq(err, cases[i][1]))
                        TEST_FAIL_("\"%s\": got the message \"%s\", expected \"%s\"", cases[i][0], err ? err : "(null)",
                                   cases[i][1]);
                /* A failed parse leaves *ret alone. */
                ASSERT_TRUE(s.v == (tp_rate_window *)&s && s.n == 42);
                /* And works without a message. */
                ASSERT_ERR(tp_rate_schedule_parse(cases[i][0], &s, NULL), EINVAL);
        }
        ASSERT_ERR(tp_rate_schedule_parse(NULL, &(tp_rate_schedule){ 0 }, NULL), EINVAL);
}

TEST(rate_at_chosen_times)
{
        tp_rate_schedule s = { 0 };

        use_utc();
        ASSERT_OK(tp_rate_schedule_parse("mon-fri 08:00-18:00 50MiB/s; sat,sun 200MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 7, 59)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 8, 0)), 50 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 12, 30) + 17), 50 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 17, 59) + 59), 50 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 18, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(4, 9, 0)), 50 * MiB); /* Friday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(4, 23, 59)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 0, 0)), 200 * MiB); /* Saturday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 9, 0)), 200 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 23, 59) + 59), 200 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7, 0, 0)), 0); /* Monday again */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7, 8, 0)), 50 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7 * 52, 10, 0)), 50 * MiB); /* 2024-12-30, a Monday */
        tp_rate_schedule_clear(&s);

        /* The first matching window wins. */
        ASSERT_OK(tp_rate_schedule_parse("mon 10:00-11:00 1MiB/s; mon 2MiB/s; 3MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 10, 30)), 1 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 11, 0)), 2 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(1, 10, 30)), 3 * MiB);
        tp_rate_schedule_clear(&s);

        /* An unlimited window lifts the ones after it. */
        ASSERT_OK(tp_rate_schedule_parse("sun unlimited; 3MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 12, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 12, 0)), 3 * MiB);
        tp_rate_schedule_clear(&s);

        /* No schedule, an empty one: no limit. */
        ASSERT_UEQ(tp_rate_schedule_at(NULL, at(0, 0, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 0, 0)), 0);

        /* Local time, not UTC: 08:00 in Berlin is 07:00 UTC in winter. */
        ASSERT_OK(tp_rate_schedule_parse("08:00-09:00 1MiB/s", &s, NULL));
        ASSERT_OK(setenv("TZ", "CET-1", 1));
        tzset();
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 7, 0)), 1 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 8, 0)), 0);
        tp_rate_schedule_clear(&s);
}

TEST(rate_at_across_midnight_and_week_end)
{
        tp_rate_schedule s = { 0 };

        use_utc();
        /* Every night. */
        ASSERT_OK(tp_rate_schedule_parse("22:00-06:00 1GiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 0, 0)), 1024 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 5, 59)), 1024 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 6, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 21, 59)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(0, 22, 0)), 1024 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 23, 30)), 1024 * MiB);
        tp_rate_schedule_clear(&s);

        /* A night belongs to the day it starts on: Friday 22:00 to Saturday
         * 06:00, and not Friday before 06:00 (Thursday's night). */
        ASSERT_OK(tp_rate_schedule_parse("fri 22:00-06:00 5MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(4, 3, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(4, 22, 0)), 5 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 5, 59)), 5 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 6, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 22, 0)), 0);
        tp_rate_schedule_clear(&s);

        /* Sunday night runs into Monday, over the week end. */
        ASSERT_OK(tp_rate_schedule_parse("sun 23:00-02:00 7MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 23, 0)), 7 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7, 1, 59)), 7 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7, 2, 0)), 0);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(1, 1, 0)), 0);
        tp_rate_schedule_clear(&s);

        /* A day range over the week end. */
        ASSERT_OK(tp_rate_schedule_parse("fri-mon 09:00-17:00 4MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(3, 10, 0)), 0);       /* Thursday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(4, 10, 0)), 4 * MiB); /* Friday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 10, 0)), 4 * MiB); /* Sunday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(7, 10, 0)), 4 * MiB); /* Monday */
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(8, 10, 0)), 0);       /* Tuesday */
        tp_rate_schedule_clear(&s);

        /* 24:00 as an end covers the last minute of the day. */
        ASSERT_OK(tp_rate_schedule_parse("sat 12:00-24:00 9MiB/s", &s, NULL));
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(5, 23, 59) + 59), 9 * MiB);
        ASSERT_UEQ(tp_rate_schedule_at(&s, at(6, 0, 0)), 0);
        tp_rate_schedule_clear(&s);
}

/* Sends total bytes in requests of req bytes through b, one stream that
 * waits what the bucket says before each send and sends in no time; wall
 * time is wall0 plus the fake monotonic clock. Returns the elapsed ns. */
static uint64_t simulate(tp_bucket *b, uint64_t total, uint64_t req, time_t wall0)
{
        uint64_t now = 0;

        for (uint64_t sent = 0; sent < total; sent += req)
                now += tp_bucket_take(b, req, now, wall0 + (time_t)(now / NSEC_PER_SEC));
        return now;
}

static void assert_near(uint64_t got_ns, double want_s, double tolerance)
{
        double got_s = (double)got_ns / 1e9;

        if (got_s < want_s * (1 - tolerance) || got_s > want_s * (1 + tolerance))
                TEST_FAIL_("took %.4f s, expected %.4f s +- %.0f %%", got_s, want_s, tolerance * 100);
}

TEST(bucket_holds_the_rate)
{
        tp_rate_schedule s = { 0 };
        tp_bucket b;
        uint64_t t;

        use_utc();
        ASSERT_OK(tp_rate_schedule_parse("20MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        t = simulate(&b, 200 * MiB, 1 * MiB, at(0, 12, 0));
        assert_near(t, 10.0, 0.02);
        /* The burst lets the first requests go at once, then they pace. */
        tp_bucket_init(&b, &s);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 0, at(0, 12, 0)), 0);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 0, at(0, 12, 0)), 50 * 1000 * 1000);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 0, at(0, 12, 0)), 100 * 1000 * 1000);

        /* Small requests: the same average, no rounding drift. */
        tp_bucket_init(&b, &s);
        t = simulate(&b, 20 * MiB, 4096 + 17, at(0, 12, 0));
        assert_near(t, (double)(20 * MiB) / (20 * MiB), 0.06);

        /* One request larger than the burst still goes at once when the
         * bucket is paid up; the next waits for it. */
        tp_bucket_init(&b, &s);
        ASSERT_UEQ(tp_bucket_take(&b, 40 * MiB, 0, at(0, 12, 0)), 0);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 0, at(0, 12, 0)), 2 * NSEC_PER_SEC);

        /* Idle time earns at most the burst: after a minute's pause the
         * second request of a back-to-back pair still waits. */
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 60 * NSEC_PER_SEC, at(0, 12, 1)), 0);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 60 * NSEC_PER_SEC, at(0, 12, 1)), 50 * 1000 * 1000);
        tp_rate_schedule_clear(&s);
}

TEST(bucket_shared_by_streams)
{
        tp_rate_schedule s = { 0 };
        tp_bucket b;
        uint64_t next[4] = { 0 }, end = 0;

        use_utc();
        ASSERT_OK(tp_rate_schedule_parse("20MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        /* Four streams, each asking for its next request when its last one
         * went: together they keep to the one rate. */
        for (int i = 0; i < 200; i++) {
                size_t k = 0;

                for (size_t j = 1; j < ELEMENTSOF(next); j++)
                        if (next[j] < next[k])
                                k = j;
                next[k] += tp_bucket_take(&b, 1 * MiB, next[k], at(0, 12, 0) + (time_t)(next[k] / NSEC_PER_SEC));
                end = MAX(end, next[k]);
        }
        assert_near(end, 10.0, 0.02);
        tp_rate_schedule_clear(&s);
}

TEST(bucket_unlimited)
{
        tp_rate_schedule s = { 0 };
        tp_bucket b;

        use_utc();
        tp_bucket_init(&b, NULL);
        for (int i = 0; i < 1000; i++)
                ASSERT_UEQ(tp_bucket_take(&b, 8 * MiB, 0, at(0, 0, 0)), 0);
        ASSERT_OK(tp_rate_schedule_parse("none", &s, NULL));
        tp_bucket_init(&b, &s);
        for (int i = 0; i < 1000; i++)
                ASSERT_UEQ(tp_bucket_take(&b, 8 * MiB, 0, at(0, 0, 0)), 0);
        /* Outside every window. */
        ASSERT_OK(tp_rate_schedule_parse("sun 1KiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        for (int i = 0; i < 1000; i++)
                ASSERT_UEQ(tp_bucket_take(&b, 8 * MiB, 0, at(0, 0, 0)), 0);
        /* In the window: the first request goes, the second waits for it. */
        ASSERT_UEQ(tp_bucket_take(&b, 8 * MiB, 0, at(6, 0, 0)), 0);
        ASSERT_UEQ(tp_bucket_take(&b, 1024, 0, at(6, 0, 0)), 8 * 1024 * NSEC_PER_SEC);
        tp_rate_schedule_clear(&s);
}

TEST(bucket_rate_changes_with_the_window)
{
        tp_rate_schedule s = { 0 };
        tp_bucket b;
        uint64_t t;

        use_utc();
        /* 10 s at 10MiB/s (100 MiB), then 20MiB/s: 200 MiB take 15 s. */
        ASSERT_OK(tp_rate_schedule_parse("00:00-00:01 10MiB/s; 00:01-00:02 20MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        t = simulate(&b, 200 * MiB, 1 * MiB, at(0, 0, 0) + 50);
        assert_near(t, 15.0, 0.02);

        /* 10 s at 10MiB/s, then the window ends and nothing waits. */
        tp_rate_schedule_clear(&s);
        ASSERT_OK(tp_rate_schedule_parse("00:00-00:01 10MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        t = simulate(&b, 1000 * MiB, 1 * MiB, at(0, 0, 0) + 50);
        assert_near(t, 10.0, 0.02);

        /* From unlimited to limited: the limit starts when the window does. */
        tp_rate_schedule_clear(&s);
        ASSERT_OK(tp_rate_schedule_parse("00:01-00:02 10MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        ASSERT_UEQ(tp_bucket_take(&b, 100 * MiB, 0, at(0, 0, 0) + 59), 0);
        t = NSEC_PER_SEC + simulate(&b, 100 * MiB, 1 * MiB, at(0, 0, 1));
        assert_near(t, 11.0, 0.02);

        /* Debt owed at the old rate is paid at the new one: 1 s of debt at
         * 10MiB/s is 0.5 s at 20MiB/s. */
        tp_rate_schedule_clear(&s);
        ASSERT_OK(tp_rate_schedule_parse("00:00-00:01 10MiB/s; 20MiB/s", &s, NULL));
        tp_bucket_init(&b, &s);
        ASSERT_UEQ(tp_bucket_take(&b, 10 * MiB, 0, at(0, 0, 0) + 59), 0);
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, 0, at(0, 0, 0) + 59), NSEC_PER_SEC);
        /* Paid up at 1.1 s: at 1 s, 0.1 s at 10MiB/s is left, 0.05 s at
         * 20MiB/s; the next MiB adds 0.05 s, less the burst of 0.05 s. */
        ASSERT_UEQ(tp_bucket_take(&b, 1 * MiB, NSEC_PER_SEC, at(0, 0, 1)), 50 * 1000 * 1000);
        tp_rate_schedule_clear(&s);
}
