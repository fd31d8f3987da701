/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * retention.h -- which restore points prune keeps: the last N, the newest
 * of each of the last N days, ISO weeks and months (local time), and every
 * ancestor of a kept incremental, so that pruning never breaks a chain.
 */
#ifndef SP_RETENTION_H
#define SP_RETENTION_H

#include <stdbool.h>
#include <stddef.h>

#include "dedup/manifest.h"

typedef struct sp_keep {
        unsigned last, daily, weekly, monthly;
} sp_keep;

static inline bool sp_keep_any(const sp_keep *k)
{
        return k->last || k->daily || k->weekly || k->monthly;
}

/* Decides for each of the n restore points (any order; one VM's) whether it
 * is kept: ret_keep[i]. protect (may be NULL) lists ids that must be kept
 * whatever the rules say (parents of running backups); their ancestors are
 * kept too. -EINVAL when no rule is set. */
int sp_retention_select(dd_manifest *const *v, size_t n, const sp_keep *keep, const char *const *protect,
                        size_t n_protect, bool *ret_keep);

#endif
