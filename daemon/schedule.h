/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * schedule.h -- when a job runs: the seven kinds of schedule (manual,
 * immediately, once, hourly, daily, weekly, monthly), parsed from the
 * one-line text that `vbak job create --schedule SPEC` takes and from the
 * JSON that the API and the catalog carry, written back in a canonical text
 * form, and the calculator of firing times. docs/schedules.md is the user's
 * description of the grammar and of the rules below.
 *
 * DESIGN
 * A schedule is a plain struct (copy it, compare it with memcmp after
 * parsing: unused fields are zero). Times of day and dates are wall-clock
 * values in the schedule's own IANA time zone; the zone is per schedule and
 * never the process's: the conversions go through ICU's calendar
 * (ucal_open with the zone's id), one calendar per call, so any thread may
 * compute at any time and nothing touches TZ or localtime().
 *
 * A schedule stands for a set of firing instants. Repeating kinds produce,
 * in wall-clock order, one or more wall times per matching day; each wall
 * time becomes the instant it names in the zone, with two DST rules:
 *   - a wall time that does not exist (spring forward) fires at the first
 *     valid instant after the gap (02:30 on a 02:00->03:00 day fires at
 *     03:00); several such wall times collapse into that one instant;
 *   - a wall time that occurs twice (fall back) fires once, at its first
 *     occurrence.
 * The mapping from wall time to instant is then non-decreasing, so the
 * first wall time whose instant is after a given instant is found by a scan
 * of days and a binary search within a day, never by stepping through
 * minutes.
 *
 * The `from` day of repeating kinds is both the first day the schedule may
 * fire and the day "every N days/weeks" counts from (a week runs Monday to
 * Sunday; the week holding `from` is week 0).
 */
#ifndef VB_SCHEDULE_H
#define VB_SCHEDULE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Room for an IANA zone id (the longest is about 32 characters). */
#define VB_SCHEDULE_TZ_MAX 64
/* Room for any canonical text form and its NUL. */
#define VB_SCHEDULE_FORMAT_MAX 512

/* Ranges of the `every` values. */
#define VB_SCHEDULE_HOURLY_EVERY_MAX 1440 /* minutes (24h) */
#define VB_SCHEDULE_DAILY_EVERY_MAX 365   /* days */
#define VB_SCHEDULE_WEEKLY_EVERY_MAX 52   /* weeks */

typedef enum vb_schedule_kind {
        VB_SCHEDULE_MANUAL,      /* never fires: started by hand only */
        VB_SCHEDULE_IMMEDIATELY, /* fires once, at `at` (the creation time) */
        VB_SCHEDULE_ONCE,        /* fires once, at date + time */
        VB_SCHEDULE_HOURLY,      /* each day from `from`: time, time + every, ... up to end */
        VB_SCHEDULE_DAILY,       /* every `every` days from `from`, at time */
        VB_SCHEDULE_WEEKLY,      /* on weekdays, every `every` weeks from `from`'s week, at time */
        VB_SCHEDULE_MONTHLY,     /* in months, on days or on the nth weekday, at time */
        _VB_SCHEDULE_KIND_MAX,
        _VB_SCHEDULE_KIND_INVALID = -1,
} vb_schedule_kind;

/* A calendar day: year 1970-9999, month 1-12, day 1-31. */
typedef struct vb_schedule_date {
        int year;
        int month;
        int day;
} vb_schedule_date;

/* Bits of vb_schedule.days: bit d is day d of the month (1-31); bit 0 is
 * the last day of the month, whatever its number. */
#define VB_SCHEDULE_LAST_DAY 0
/* vb_schedule.nth for the last such weekday of the month. */
#define VB_SCHEDULE_NTH_LAST (-1)

typedef struct vb_schedule {
        vb_schedule_kind kind;
        char tz[VB_SCHEDULE_TZ_MAX]; /* IANA zone id; empty for manual and immediately */
        int64_t at;                  /* immediately: when it fires, seconds since the epoch */
        vb_schedule_date date;       /* once: the day */
        vb_schedule_date from;       /* hourly, daily, weekly, monthly: first day, anchor of every */
        int time;                    /* minutes after midnight (0-1439): once, daily, weekly, monthly;
                                        hourly: the window's start */
        int end;                     /* hourly: the window's end (0-1439), inclusive; before time: the
                                        window ends on the next day */
        int every;                   /* hourly: minutes (1-1440); daily: days (1-365); weekly: weeks (1-52) */
        unsigned weekdays;           /* weekly: bit 0 Monday .. bit 6 Sunday */
        uint32_t days;               /* monthly by day: bits 1-31 and VB_SCHEDULE_LAST_DAY */
        int nth;                     /* monthly by weekday: 1-4 or VB_SCHEDULE_NTH_LAST; 0: by day */
        int weekday;                 /* monthly by weekday: 0 Monday .. 6 Sunday */
        unsigned months;             /* monthly: bit 0 January .. bit 11 December */
} vb_schedule;

const char *vb_schedule_kind_to_string(vb_schedule_kind k);
vb_schedule_kind vb_schedule_kind_from_string(const char *s);

/* Parses a one-line schedule (docs/schedules.md), e.g. "daily 02:00 every 2
 * days tz Europe/Berlin". created is the job's creation (or modification)
 * time: `immediately` fires at it and a missing `from` is its day in the
 * schedule's zone. A missing `tz` is the system's zone
 * (vb_schedule_system_tz()). Returns 0, -EINVAL for a bad schedule (then
 * *ret_error, when ret_error is not NULL, gets a message to free that names
 * the offending word and what was expected; it may stay NULL when memory
 * runs out), or -ENOMEM. *ret is written only on success. */
int vb_schedule_parse(const char *spec, time_t created, vb_schedule *ret, char **ret_error);

/* Writes the canonical text form of s, which vb_schedule_parse() reads back
 * into the same struct (given the same created for `immediately`). Returns
 * the length, -EINVAL for an invalid s, or -ENOBUFS when buf is too small
 * (VB_SCHEDULE_FORMAT_MAX is always enough). */
int vb_schedule_format(const vb_schedule *s, char *buf, size_t size);

/* The JSON form (docs/schedules.md): an object with "kind" and the kind's
 * fields, every one written. Returns 0, -EINVAL for an invalid s, -ENOMEM. */
int vb_schedule_to_json(const vb_schedule *s, json_t **ret);

/* Reads the JSON form back; missing optional fields take the same defaults
 * as in the text form (created as for vb_schedule_parse()). A JSON string
 * is taken as the text form. Unknown fields, wrong types and bad values are
 * -EINVAL with *ret_error naming the field; -ENOMEM. */
int vb_schedule_from_json(const json_t *j, time_t created, vb_schedule *ret, char **ret_error);

/* Checks every field of s (ranges, a known zone, an existing date, days
 * that occur in the chosen months). Returns 0 or -EINVAL with *ret_error
 * (when ret_error) as for vb_schedule_parse(). */
int vb_schedule_check(const vb_schedule *s, char **ret_error);

/* The first firing instant strictly after `after`. Returns 0 and *ret;
 * -ENOENT when s never fires after it (manual, a past once or immediately);
 * -EINVAL for an invalid s; -ENOMEM or -EIO when ICU fails. A job's first
 * run is vb_schedule_next(s, created - 1): instants from the creation time
 * on count, so `immediately` fires at once. */
int vb_schedule_next(const vb_schedule *s, time_t after, time_t *ret);

/* Whether s had a firing instant in (last_check, now]: the daemon was down
 * over it, and the job runs once at start-up however many were missed. */
bool vb_schedule_missed(const vb_schedule *s, time_t last_check, time_t now);

/* The system's time zone as an IANA id (ICU reads TZ, then /etc/localtime);
 * "UTC" when it cannot be told. Returns the length or -ENOBUFS. */
int vb_schedule_system_tz(char *buf, size_t size);

/* Writes t as local time in zone tz, ISO 8601 with the offset:
 * "2026-03-29T03:00:00+02:00". Returns the length, -EINVAL for an unknown
 * zone, -ENOBUFS, or -EIO. */
int vb_schedule_local_time(const char *tz, time_t t, char *buf, size_t size);

#endif
