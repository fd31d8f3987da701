/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-retention.c -- prune's keep rules and the chain rule.
 */
#include <stdlib.h>
#include <time.h>

#include "daemon/util.h"
#include "storagepool/retention.h"
#include "tests/unit/test.h"

#define DAY 86400

/* Restore points at the given times (seconds after a Monday noon, UTC);
 * parents[i] is the index of i's parent or -1. */
static dd_manifest **make(const int64_t *times, const int *parents, size_t n)
{
        dd_manifest **v = calloc(n, sizeof(*v));
        char id[32];

        ASSERT_TRUE(v);
        for (size_t i = 0; i < n; i++) {
                v[i] = dd_manifest_new();
                snprintf(id, sizeof(id), "rp%02zu", i);
                v[i]->id = strdup(id);
                v[i]->time_start = 1763985600 /* 2025-11-24 12:00 UTC, a Monday */ + times[i];
                v[i]->type = parents[i] < 0 ? DD_BACKUP_FULL : DD_BACKUP_INCREMENTAL;
                if (parents[i] >= 0) {
                        snprintf(id, sizeof(id), "rp%02d", parents[i]);
                        v[i]->parent = strdup(id);
                }
        }
        return v;
}

static void free_all(dd_manifest **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                dd_manifest_free(v[i]);
        free(v);
}

TEST(keep_last)
{
        int64_t t[] = { 0, 10, 20, 30, 40 };
        int par[] = { -1, -1, -1, -1, -1 };
        dd_manifest **v = make(t, par, 5);
        sp_keep k = { .last = 2 };
        bool keep[5];

        setenv("TZ", "UTC", 1);
        tzset();
        ASSERT_OK(sp_retention_select(v, 5, &k, NULL, 0, keep));
        ASSERT_TRUE(!keep[0] && !keep[1] && !keep[2] && keep[3] && keep[4]);
        free_all(v, 5);
}

TEST(no_rule_is_refused)
{
        sp_keep k = { 0 };
        bool keep[1];

        ASSERT_ERR(sp_retention_select(NULL, 0, &k, NULL, 0, keep), EINVAL);
}

TEST(daily_weekly_monthly_keep_the_newest_of_each_period)
{
        /* Two a day for 40 days. */
        int64_t t[80];
        int par[80];
        bool keep[80];
        size_t n = 80, kept = 0;

        setenv("TZ", "UTC", 1);
        tzset();
        for (size_t i = 0; i < n; i++) {
                t[i] = (int64_t)(i / 2) * DAY + (int64_t)(i % 2) * 3600;
                par[i] = -1;
        }
        dd_manifest **v = make(t, par, n);
        sp_keep k = { .daily = 3 };
        ASSERT_OK(sp_retention_select(v, n, &k, NULL, 0, keep));
        for (size_t i = 0; i < n; i++)
                kept += keep[i];
        ASSERT_EQ(kept, 3);
        ASSERT_TRUE(keep[79] && keep[77] && keep[75] && !keep[78]);

        k = (sp_keep){ .weekly = 2 };
        ASSERT_OK(sp_retention_select(v, n, &k, NULL, 0, keep));
        kept = 0;
        for (size_t i = 0; i < n; i++)
                kept += keep[i];
        ASSERT_EQ(kept, 2);
        ASSERT_TRUE(keep[79]);
        /* Day 39 is Friday 2026-01-02; the week before ends on Sunday, day 34. */
        ASSERT_TRUE(keep[69]);

        k = (sp_keep){ .monthly = 5 };
        ASSERT_OK(sp_retention_select(v, n, &k, NULL, 0, keep));
        kept = 0;
        for (size_t i = 0; i < n; i++)
                kept += keep[i];
        ASSERT_EQ(kept, 3); /* 2025-11, 2025-12 and 2026-01 */
        /* The newest of 2026-01-02 (day 39), 2025-12-31 (day 37), 2025-11-30 (day 6). */
        ASSERT_TRUE(keep[79] && keep[75] && keep[13]);
        free_all(v, n);
}

TEST(a_kept_incremental_keeps_its_chain)
{
        int64_t t[] = { 0, 10, 20, 30, 40, 50 };
        int par[] = { -1, 0, 1, 2, -1, 4 };
        dd_manifest **v = make(t, par, 6);
        sp_keep k = { .last = 1 };
        bool keep[6];

        ASSERT_OK(sp_retention_select(v, 6, &k, NULL, 0, keep));
        ASSERT_TRUE(!keep[0] && !keep[1] && !keep[2] && !keep[3] && keep[4] && keep[5]);
        k.last = 3;
        ASSERT_OK(sp_retention_select(v, 6, &k, NULL, 0, keep));
        for (int i = 0; i < 6; i++)
                ASSERT_TRUE(keep[i]); /* rp03 is kept, so its chain 0-1-2 is too */
        free_all(v, 6);
}

TEST(protected_ids_are_kept_with_their_ancestors)
{
        int64_t t[] = { 0, 10, 20, 30 };
        int par[] = { -1, 0, -1, -1 };
        dd_manifest **v = make(t, par, 4);
        sp_keep k = { .last = 1 };
        const char *protect[] = { "rp01" };
        bool keep[4];

        ASSERT_OK(sp_retention_select(v, 4, &k, protect, 1, keep));
        ASSERT_TRUE(keep[0] && keep[1] && !keep[2] && keep[3]);
        free_all(v, 4);
}

TEST(a_parent_loop_ends)
{
        int64_t t[] = { 0, 10 };
        int par[] = { 1, 0 };
        dd_manifest **v = make(t, par, 2);
        sp_keep k = { .last = 1 };
        bool keep[2];

        ASSERT_OK(sp_retention_select(v, 2, &k, NULL, 0, keep));
        ASSERT_TRUE(keep[0] && keep[1]);
        free_all(v, 2);
}
