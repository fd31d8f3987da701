/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * retention.c -- the keep rules of prune (see retention.h).
 */
#include "storagepool/retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/util.h"

typedef enum period {
        PERIOD_DAY,
        PERIOD_WEEK,
        PERIOD_MONTH
} period;

static void period_key(int64_t t, period p, char buf[16])
{
        time_t tt = (time_t)t;
        struct tm tm;

        localtime_r(&tt, &tm);
        switch (p) {
        case PERIOD_DAY:
                strftime(buf, 16, "%Y-%m-%d", &tm);
                break;
        case PERIOD_WEEK:
                strftime(buf, 16, "%G-W%V", &tm);
                break;
        case PERIOD_MONTH:
                strftime(buf, 16, "%Y-%m", &tm);
                break;
        }
}

/* order[] lists indices newest first. */
static void keep_periods(dd_manifest *const *v, const size_t *order, size_t n, period p, unsigned count, bool *keep)
{
        char last[16] = "";

        for (size_t k = 0; k < n && count > 0; k++) {
                char key[16];

                period_key(v[order[k]]->time_start, p, key);
                if (streq(key, last))
                        continue;
                snprintf(last, sizeof(last), "%s", key);
                keep[order[k]] = true;
                count--;
        }
}

static int cmp_newest_first(const void *a, const void *b, void *userdata)
{
        dd_manifest *const *v = userdata;
        const dd_manifest *x = v[*(const size_t *)a], *y = v[*(const size_t *)b];

        /* Ids order restore points by start (storagepool/fs.c), as list does. */
        return -strcmp(x->id, y->id);
}

static void keep_with_ancestors(dd_manifest *const *v, size_t n, size_t i, bool *keep)
{
        /* Walk parent links; a chain is at most n long, so this ends even on a loop. */
        for (size_t steps = 0; steps <= n; steps++) {
                const char *parent;
                size_t j;

                keep[i] = true;
                parent = v[i]->type == DD_BACKUP_INCREMENTAL ? v[i]->parent : NULL;
                if (!parent)
                        return;
                for (j = 0; j < n; j++)
                        if (streq(v[j]->id, parent))
                                break;
                if (j == n)
                        return;
                i = j;
        }
}

int sp_retention_select(dd_manifest *const *v, size_t n, const sp_keep *keep, const char *const *protect,
                        size_t n_protect, bool *ret_keep)
{
        _cleanup_free_ size_t *order = NULL;
        _cleanup_free_ bool *k = NULL;

        if (!keep || !sp_keep_any(keep) || (n && (!v || !ret_keep)))
                return -EINVAL;
        if (n == 0)
                return 0;
        order = malloc(n * sizeof(*order));
        k = calloc(n, sizeof(*k));
        if (!order || !k)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                order[i] = i;
        qsort_r(order, n, sizeof(*order), cmp_newest_first, (void *)v);

        for (size_t i = 0; i < n && i < keep->last; i++)
                k[order[i]] = true;
        keep_periods(v, order, n, PERIOD_DAY, keep->daily, k);
        keep_periods(v, order, n, PERIOD_WEEK, keep->weekly, k);
        keep_periods(v, order, n, PERIOD_MONTH, keep->monthly, k);
        for (size_t i = 0; i < n; i++)
                for (size_t p = 0; p < n_protect; p++)
                        if (streq(v[i]->id, protect[p]))
                                k[i] = true;
        for (size_t i = 0; i < n; i++)
                ret_keep[i] = false;
        for (size_t i = 0; i < n; i++)
                if (k[i])
                        keep_with_ancestors(v, n, i, ret_keep);
        return 0;
}
