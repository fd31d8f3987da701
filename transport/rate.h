/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rate.h -- speed limits per time window and the token bucket that applies
 * them: the transfer rate and the disk read (or write) rate of a job.
 *
 * A schedule is a list of windows separated by ';', each "[DAYS] [FROM-TO] RATE":
 *
 *     50MiB/s                                              always
 *     mon-fri 08:00-18:00 50MiB/s; sat,sun 200MiB/s        weekdays' office hours, weekends
 *     22:00-06:00 1GiB/s                                   every night (crosses midnight)
 *     none | unlimited | (empty)                           no limit
 *
 * DAYS: mon tue wed thu fri sat sun (any case), ranges (mon-fri; fri-mon wraps
 * over the week end) and lists of both (mon,wed,fri-sun); no days: every day.
 * FROM-TO: HH:MM-HH:MM, 24:00 allowed as an end; no times: the whole day. A
 * range whose end comes before its start crosses midnight and belongs to the
 * day it starts on ("fri 22:00-06:00" is Friday night until Saturday 06:00).
 * RATE: an integer or decimal number and B/s, KiB/s, MiB/s or GiB/s (binary),
 * or "unlimited" (a window that lifts the limits after it). The first window
 * that matches wins; outside every window there is no limit.
 *
 * DESIGN: the bucket is a GCRA (a "virtual finish time"): each take moves the
 * time the bytes taken so far are paid for by n / rate and asks the caller to
 * wait until that time less a small burst. Tokens thus go into debt: a caller
 * that waits and then sends keeps the average exactly at the rate, however
 * large its requests, and several streams sharing one bucket share the rate.
 * The wall clock only picks the window (looked up once per second); the
 * monotonic clock does the accounting, so a wall clock step changes at most
 * the window, never the amount sent.
 */
#ifndef TP_RATE_H
#define TP_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TP_RATE_ALL_DAYS 0x7f
#define TP_RATE_DAY_MINUTES 1440
/* The highest rate a schedule accepts, bytes/s (1024GiB/s). */
#define TP_RATE_MAX (UINT64_C(1) << 40)
/* The bucket lets a stream that was idle send this much time's worth of
 * bytes at once (or one request, when that is larger). */
#define TP_BUCKET_BURST_NS (UINT64_C(50) * 1000 * 1000)

typedef struct tp_rate_window {
        uint8_t days;      /* bit 0 Monday .. bit 6 Sunday */
        uint16_t from, to; /* minutes 0..1440; to < from crosses midnight */
        uint64_t rate;     /* bytes/s; 0: unlimited */
} tp_rate_window;

typedef struct tp_rate_schedule {
        tp_rate_window *v;
        size_t n; /* 0: no limit at any time */
} tp_rate_schedule;

/* Parses spec (see above) into *ret, which the caller clears with
 * tp_rate_schedule_clear(). On a syntax error returns -EINVAL and, when err
 * is not NULL, sets *err to a message the caller frees, such as
 * "position 9: expected a time HH:MM, got '8h'"; *ret is left untouched. */
int tp_rate_schedule_parse(const char *spec, tp_rate_schedule *ret, char **err);

/* The rate in force at wall time t (local time), bytes/s; 0: no limit. s may
 * be NULL (no limit). */
uint64_t tp_rate_schedule_at(const tp_rate_schedule *s, time_t t);

void tp_rate_schedule_clear(tp_rate_schedule *s);

/* The canonical text of s, which parses back to the same schedule: windows
 * joined by "; ", days omitted when all seven, times omitted for the whole
 * day, rates in the largest unit that keeps them exact, "unlimited" for an
 * empty schedule. NULL when out of memory. The caller frees it. */
char *tp_rate_schedule_format(const tp_rate_schedule *s);

/* A token bucket shared by all streams of a job. It takes no lock: use it
 * from one thread only (the job's loop thread). */
typedef struct tp_bucket {
        const tp_rate_schedule *schedule; /* NULL: unlimited */
        uint64_t rate;                    /* the rate in force, bytes/s; 0: unlimited */
        bool have_rate;                   /* rate was looked up at wall second `checked` */
        time_t checked;
        uint64_t paid_ns; /* when everything taken so far is paid for at the rate */
        uint64_t rem;     /* the remainder of paid_ns's last increment, in 1/rate ns */
} tp_bucket;

/* s: NULL for no limit; not copied, it must outlive b. */
void tp_bucket_init(tp_bucket *b, const tp_rate_schedule *s);

/* Accounts n bytes about to be sent (or read) at monotonic time now_ns; the
 * wall clock `now` picks the window. Returns the nanoseconds the caller must
 * wait before sending them (0: go now). The bytes count as taken either way,
 * so the caller waits and then sends without asking again. When the window
 * changes, the new rate applies from that moment: debt owed at the old rate
 * is converted to the new one. */
uint64_t tp_bucket_take(tp_bucket *b, uint64_t n, uint64_t now_ns, time_t now);

#endif
