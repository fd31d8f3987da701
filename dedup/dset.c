/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dset.c -- open-addressing digest set; an empty slot is the null digest.
 */
#include "dedup/dset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

struct dd_dset {
        dd_digest *slots;
        size_t cap; /* a power of two */
        size_t n;
};

dd_dset *dd_dset_new(void)
{
        dd_dset *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->cap = 1024;
        s->slots = calloc(s->cap, sizeof(*s->slots));
        if (!s->slots) {
                free(s);
                return NULL;
        }
        return s;
}

dd_dset *dd_dset_free(dd_dset *s)
{
        if (s) {
                free(s->slots);
                free(s);
        }
        return NULL;
}

static size_t slot_of(const dd_dset *s, const dd_digest *d)
{
        uint64_t h;

        memcpy(&h, d->b, sizeof(h));
        for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1))
                if (dd_digest_is_null(&s->slots[i]) || dd_digest_eq(&s->slots[i], d))
                        return i;
}

static int grow(dd_dset *s)
{
        dd_dset bigger = { .cap = s->cap * 2 };

        bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
        if (!bigger.slots)
                return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
                if (!dd_digest_is_null(&s->slots[i]))
                        bigger.slots[slot_of(&bigger, &s->slots[i])] = s->slots[i];
        free(s->slots);
        s->slots = bigger.slots;
        s->cap = bigger.cap;
        return 0;
}

int dd_dset_add(dd_dset *s, const dd_digest *d)
{
        size_t i;

        if (!s || !d || dd_digest_is_null(d))
                return -EINVAL;
        if ((s->n + 1) * 4 > s->cap * 3) {
                int r = grow(s);
                if (r < 0)
                        return r;
        }
        i = slot_of(s, d);
        if (!dd_digest_is_null(&s->slots[i]))
                return 0;
        s->slots[i] = *d;
        s->n++;
        return 1;
}

bool dd_dset_contains(const dd_dset *s, const dd_digest *d)
{
        if (!s || !d || dd_digest_is_null(d))
                return false;
        return !dd_digest_is_null(&s->slots[slot_of(s, d)]);
}

size_t dd_dset_size(const dd_dset *s)
{
        return s ? s->n : 0;
}

int dd_dset_to_array(const dd_dset *s, dd_digest **ret, size_t *ret_n)
{
        dd_digest *v = malloc(MAX(s->n, 1) * sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
                if (!dd_digest_is_null(&s->slots[i]))
                        v[n++] = s->slots[i];
        *ret = v;
        *ret_n = n;
        return 0;
}
