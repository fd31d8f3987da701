/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * extent.h -- lists of byte ranges of a disk: the allocated extents of a
 * file (SEEK_DATA/SEEK_HOLE), the changed extents of an incremental (CBT, or
 * a text file of "OFFSET LENGTH" lines), and their walk chunk by chunk.
 */
#ifndef DD_EXTENT_H
#define DD_EXTENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct dd_extent {
        uint64_t offset;
        uint64_t length;
} dd_extent;

typedef struct dd_extents {
        dd_extent *v;
        size_t n;
        size_t cap;
} dd_extents;

#define DD_EXTENTS_INIT ((dd_extents){ NULL, 0, 0 })

int dd_extents_add(dd_extents *e, uint64_t offset, uint64_t length);
void dd_extents_clear(dd_extents *e);

/* Sorts, merges overlapping and adjacent extents, drops empty ones; -ERANGE
 * when an extent ends past size (or overflows). */
int dd_extents_normalize(dd_extents *e, uint64_t size);

/* Sum of the lengths. */
uint64_t dd_extents_total(const dd_extents *e);

/* Parses "OFFSET LENGTH" lines (decimal or 0x hex, '#' comments, blank
 * lines). -EINVAL with *ret_line set to the first bad line. */
int dd_extents_parse(const char *text, size_t len, dd_extents *e, unsigned *ret_line);

/* The allocated extents of an open file of the given size, by SEEK_DATA and
 * SEEK_HOLE; a file system without them yields one extent over the file. */
int dd_extents_from_fd(int fd, uint64_t size, dd_extents *e);

/* Walks normalized extents chunk by chunk. dd_extent_walk_next() returns 1
 * with the next chunk that the extents touch (*ret_index) and the part of
 * the extents inside it (in ret, absolute offsets; *ret_n of them, at most
 * max), 0 at the end. A chunk touched by more than max pieces is reported
 * with its pieces merged into spans that cover them. */
typedef struct dd_extent_walk {
        const dd_extents *e;
        uint32_t chunk_size;
        size_t i;     /* current extent */
        uint64_t pos; /* first byte of it not yet reported */
} dd_extent_walk;

void dd_extent_walk_init(dd_extent_walk *w, const dd_extents *e, uint32_t chunk_size);
int dd_extent_walk_next(dd_extent_walk *w, uint64_t *ret_index, dd_extent *ret, size_t max, size_t *ret_n);

#endif
