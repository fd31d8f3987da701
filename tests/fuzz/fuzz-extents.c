/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-extents.c -- fuzz target for extent lists: the first 8 bytes of the
 * input (little endian) are a disk size, the rest is "OFFSET LENGTH" text.
 *
 * Besides not crashing, it checks what the module promises: a parse error
 * names a line of the text; normalize refuses exactly the lists with an
 * extent past the size, and otherwise gives sorted, separate extents whose
 * union is the union of the input's; and the walk (4 KiB chunks, at most 4
 * pieces each) visits exactly the chunks the extents touch, in increasing
 * order, each with 1-4 pieces inside it: the exact parts of the extents
 * when there are at most 4, covering spans that begin and end on data when
 * there are more. The walk is checked over its first 65536 chunks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/extent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

#define CHUNK 4096u
#define MAX_PIECES 4
#define MAX_STEPS 65536

typedef unsigned __int128 u128;

static void extents_clearp(dd_extents *e)
{
        dd_extents_clear(e);
}

static u128 end_of(const dd_extent *x)
{
        return (u128)x->offset + x->length;
}

static int cmp_offset(const void *a, const void *b)
{
        const dd_extent *x = a, *y = b;

        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Normalized e is the union of the raw list in, merged independently here. */
static void check_normalized(const dd_extents *e, dd_extents *in, uint64_t disk)
{
        size_t j = 0;

        for (size_t i = 0; i < e->n; i++) {
                FUZZ_ASSERT(e->v[i].length > 0);
                FUZZ_ASSERT(end_of(&e->v[i]) <= disk);
                if (i > 0)
                        FUZZ_ASSERT(end_of(&e->v[i - 1]) < e->v[i].offset);
        }
        qsort(in->v, in->n, sizeof(*in->v), cmp_offset);
        for (size_t k = 0; k < in->n;) {
                uint64_t start = in->v[k].offset;
                u128 stop = end_of(&in->v[k]);

                for (k++; k < in->n && in->v[k].offset <= stop; k++)
                        stop = MAX(stop, end_of(&in->v[k]));
                FUZZ_ASSERT(j < e->n);
                FUZZ_ASSERT(e->v[j].offset == start && end_of(&e->v[j]) == stop);
                j++;
        }
        FUZZ_ASSERT(j == e->n);
}

/* An independent split of e at chunk boundaries. */
typedef struct split {
        const dd_extents *e;
        size_t i;
        uint64_t pos;
} split;

static bool split_next(split *s, uint64_t *ret_chunk, dd_extent *ret)
{
        const dd_extent *x;
        uint64_t start;
        u128 stop;

        if (s->i >= s->e->n)
                return false;
        x = &s->e->v[s->i];
        start = MAX(s->pos, x->offset);
        *ret_chunk = start / CHUNK;
        stop = MIN(((u128)*ret_chunk + 1) * CHUNK, end_of(x));
        *ret = (dd_extent){ start, (uint64_t)(stop - start) };
        if (stop == end_of(x)) {
                s->i++;
                s->pos = 0;
        } else
                s->pos = (uint64_t)stop;
        return true;
}

static bool in_parts(const dd_extent *v, size_t n, uint64_t b)
{
        for (size_t k = 0; k < n; k++)
                if (b >= v[k].offset && b - v[k].offset < v[k].length)
                        return true;
        return false;
}

static void check_walk(const dd_extents *e)
{
        /* A chunk holds at most CHUNK / 2 + 1 separate parts. */
        static dd_extent group[CHUNK / 2 + 1];
        dd_extent got[MAX_PIECES];
        dd_extent_walk w;
        split s = { e, 0, 0 };
        uint64_t next_chunk = 0, prev = 0;
        dd_extent next;
        bool have_next = split_next(&s, &next_chunk, &next);

        dd_extent_walk_init(&w, e, CHUNK);
        for (unsigned step = 0; step < MAX_STEPS; step++) {
                uint64_t index = UINT64_MAX;
                size_t n = SIZE_MAX, gn = 0;
                int r = dd_extent_walk_next(&w, &index, got, MAX_PIECES, &n);

                if (r == 0) {
                        FUZZ_ASSERT(!have_next);
                        return;
                }
                FUZZ_ASSERT(r == 1);
                FUZZ_ASSERT(n >= 1 && n <= MAX_PIECES);
                FUZZ_ASSERT(step == 0 || index > prev);
                FUZZ_ASSERT(have_next && index == next_chunk);
                while (have_next && next_chunk == index) {
                        FUZZ_ASSERT(gn < ELEMENTSOF(group));
                        group[gn++] = next;
                        have_next = split_next(&s, &next_chunk, &next);
                }
                u128 cstart = (u128)index * CHUNK, cend = cstart + CHUNK;
                for (size_t k = 0; k < n; k++) {
                        FUZZ_ASSERT(got[k].length > 0);
                        FUZZ_ASSERT(got[k].offset >= cstart && end_of(&got[k]) <= cend);
                        FUZZ_ASSERT(k == 0 || end_of(&got[k - 1]) <= got[k].offset);
                }
                if (gn <= MAX_PIECES) {
                        FUZZ_ASSERT(n == gn);
                        for (size_t k = 0; k < n; k++)
                                FUZZ_ASSERT(got[k].offset == group[k].offset && got[k].length == group[k].length);
                } else {
                        for (size_t g = 0; g < gn; g++) {
                                bool covered = false;
                                for (size_t k = 0; k < n && !covered; k++)
                                        covered = group[g].offset >= got[k].offset &&
                                                  end_of(&group[g]) <= end_of(&got[k]);
                                FUZZ_ASSERT(covered);
                        }
                        for (size_t k = 0; k < n; k++) {
                                FUZZ_ASSERT(in_parts(group, gn, got[k].offset));
                                FUZZ_ASSERT(in_parts(group, gn, got[k].offset + got[k].length - 1));
                        }
                }
                prev = index;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(extents_clearp) dd_extents e = DD_EXTENTS_INIT, in = DD_EXTENTS_INIT;
        const char *text;
        unsigned line = 0, lines = 1;
        uint64_t disk;
        size_t len;
        int r;

        if (size < 8)
                return 0;
        disk = get_le64(data);
        text = (const char *)data + 8;
        len = size - 8;
        for (size_t i = 0; i < len; i++)
                lines += text[i] == '\n';

        r = dd_extents_parse(text, len, &e, &line);
        if (r < 0) {
                FUZZ_ASSERT(r == -EINVAL);
                FUZZ_ASSERT(line >= 1 && line <= lines);
                return 0;
        }
        for (size_t i = 0; i < e.n; i++) {
                FUZZ_ASSERT(e.v[i].length > 0);
                FUZZ_ASSERT(end_of(&e.v[i]) <= UINT64_MAX);
                FUZZ_ASSERT(dd_extents_add(&in, e.v[i].offset, e.v[i].length) == 0);
        }

        r = dd_extents_normalize(&e, disk);
        bool past_end = false;
        for (size_t i = 0; i < in.n; i++)
                past_end |= end_of(&in.v[i]) > disk;
        if (r < 0) {
                FUZZ_ASSERT(r == -ERANGE && past_end);
                return 0;
        }
        FUZZ_ASSERT(!past_end);
        check_normalized(&e, &in, disk);
        u128 sum = 0;
        for (size_t i = 0; i < in.n; i++)
                sum += in.v[i].length;
        FUZZ_ASSERT(dd_extents_total(&e) <= sum);
        check_walk(&e);
        return 0;
}
