/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * extent.c -- extent lists, their parsing and their walk per chunk.
 */
#include "dedup/extent.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/util.h"

int dd_extents_add(dd_extents *e, uint64_t offset, uint64_t length)
{
        if (!e)
                return -EINVAL;
        if (length == 0)
                return 0;
        if (e->n == e->cap) {
                size_t cap = e->cap ? e->cap * 2 : 64;
                dd_extent *v = realloc(e->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                e->v = v;
                e->cap = cap;
        }
        e->v[e->n++] = (dd_extent){ offset, length };
        return 0;
}

void dd_extents_clear(dd_extents *e)
{
        if (!e)
                return;
        free(e->v);
        *e = DD_EXTENTS_INIT;
}

static int cmp_extent(const void *a, const void *b)
{
        const dd_extent *x = a, *y = b;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int dd_extents_normalize(dd_extents *e, uint64_t size)
{
        size_t out = 0;

        if (!e)
                return -EINVAL;
        for (size_t i = 0; i < e->n; i++)
                if (e->v[i].offset > size || e->v[i].length > size - e->v[i].offset)
                        return -ERANGE;
        if (e->n > 1)
                qsort(e->v, e->n, sizeof(*e->v), cmp_extent);
        for (size_t i = 0; i < e->n; i++) {
                dd_extent x = e->v[i];
                if (x.length == 0)
                        continue;
                if (out > 0 && x.offset <= e->v[out - 1].offset + e->v[out - 1].length) {
                        dd_extent *p = &e->v[out - 1];
                        uint64_t end = MAX(p->offset + p->length, x.offset + x.length);
                        p->length = end - p->offset;
                } else
                        e->v[out++] = x;
        }
        e->n = out;
        return 0;
}

uint64_t dd_extents_total(const dd_extents *e)
{
        uint64_t t = 0;

        for (size_t i = 0; e && i < e->n; i++)
                t += e->v[i].length;
        return t;
}

static int parse_u64(const char **p, const char *end, uint64_t *ret)
{
        const char *s = *p;
        unsigned base = 10;
        uint64_t v = 0;
        bool any = false;

        if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                base = 16;
                s += 2;
        }
        for (; s < end; s++) {
                int d;
                if (*s >= '0' && *s <= '9')
                        d = *s - '0';
                else if (base == 16 && *s >= 'a' && *s <= 'f')
                        d = *s - 'a' + 10;
                else if (base == 16 && *s >= 'A' && *s <= 'F')
                        d = *s - 'A' + 10;
                else
                        break;
                if (v > (UINT64_MAX - (uint64_t)d) / base)
                        return -ERANGE;
                v = v * base + (uint64_t)d;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *p = s;
        *ret = v;
        return 0;
}

int dd_extents_parse(const char *text, size_t len, dd_extents *e, unsigned *ret_line)
{
        const char *p = text, *end = text + len;
        unsigned line = 0;

        if (!text || !e)
                return -EINVAL;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                const char *le = eol ? eol : end;
                uint64_t off, length;
                int r;

                line++;
                while (p < le && isspace((unsigned char)*p))
                        p++;
                if (p == le || *p == '#') {
                        p = le + 1;
                        continue;
                }
                r = parse_u64(&p, le, &off);
                if (r >= 0 && (p == le || !isspace((unsigned char)*p)))
                        r = -EINVAL;
                while (r >= 0 && p < le && isspace((unsigned char)*p))
                        p++;
                if (r >= 0)
                        r = parse_u64(&p, le, &length);
                while (r >= 0 && p < le && isspace((unsigned char)*p))
                        p++;
                if (r >= 0 && p != le && *p != '#')
                        r = -EINVAL;
                if (r >= 0 && length > UINT64_MAX - off)
                        r = -ERANGE;
                if (r >= 0)
                        r = dd_extents_add(e, off, length);
                if (r < 0) {
                        if (ret_line)
                                *ret_line = line;
                        return r == -ENOMEM ? r : -EINVAL;
                }
                p = le + 1;
        }
        return 0;
}

int dd_extents_from_fd(int fd, uint64_t size, dd_extents *e)
{
        off_t pos = 0;

        if (fd < 0 || !e)
                return -EINVAL;
        while ((uint64_t)pos < size) {
                off_t data = lseek(fd, pos, SEEK_DATA), hole;
                int r;

                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        if (errno == EINVAL && pos == 0)
                                return dd_extents_add(e, 0, size); /* no SEEK_DATA here */
                        return -errno;
                }
                if ((uint64_t)data >= size)
                        break;
                hole = lseek(fd, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                if ((uint64_t)hole > size)
                        hole = (off_t)size;
                r = dd_extents_add(e, (uint64_t)data, (uint64_t)(hole - data));
                if (r < 0)
                        return r;
                pos = hole;
        }
        return dd_extents_normalize(e, size);
}

void dd_extent_walk_init(dd_extent_walk *w, const dd_extents *e, uint32_t chunk_size)
{
        *w = (dd_extent_walk){ .e = e, .chunk_size = chunk_size, .i = 0, .pos = e && e->n ? e->v[0].offset : 0 };
}

int dd_extent_walk_next(dd_extent_walk *w, uint64_t *ret_index, dd_extent *ret, size_t max, size_t *ret_n)
{
        const dd_extents *e = w->e;
        uint64_t index, cell_end;
        size_t n = 0;

        if (!e || w->i >= e->n || max == 0)
                return 0;
        index = w->pos / w->chunk_size;
        cell_end = index * w->chunk_size;
        cell_end = cell_end > UINT64_MAX - w->chunk_size ? UINT64_MAX : cell_end + w->chunk_size;
        while (w->i < e->n) {
                const dd_extent *x = &e->v[w->i];
                uint64_t x_end = x->offset + x->length;
                uint64_t start = MAX(w->pos, x->offset);
                uint64_t stop;

                if (start >= cell_end)
                        break;
                stop = MIN(x_end, cell_end);
                if (n == max) /* too many pieces: widen the last one */
                        ret[n - 1].length = stop - ret[n - 1].offset;
                else
                        ret[n++] = (dd_extent){ start, stop - start };
                if (stop == x_end) {
                        w->i++;
                        if (w->i < e->n)
                                w->pos = e->v[w->i].offset;
                } else {
                        w->pos = stop;
                        break;
                }
        }
        *ret_index = index;
        *ret_n = n;
        return 1;
}
