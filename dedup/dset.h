/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dset.h -- a set of digests (open addressing; digests are uniformly
 * distributed, so their first bytes are the hash). Used by verify and stats
 * to visit each stored chunk once.
 */
#ifndef DD_DSET_H
#define DD_DSET_H

#include <stdbool.h>
#include <stddef.h>

#include "dedup/digest.h"

typedef struct dd_dset dd_dset;

dd_dset *dd_dset_new(void);
dd_dset *dd_dset_free(dd_dset *s);
static inline void dd_dset_freep(dd_dset **s)
{
        dd_dset_free(*s);
}

/* 1 when added, 0 when already there, -ENOMEM. The null digest is refused (-EINVAL). */
int dd_dset_add(dd_dset *s, const dd_digest *d);
bool dd_dset_contains(const dd_dset *s, const dd_digest *d);
size_t dd_dset_size(const dd_dset *s);

/* Copies the members into a new array (any order). */
int dd_dset_to_array(const dd_dset *s, dd_digest **ret, size_t *ret_n);

#endif
