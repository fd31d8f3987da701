/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * index.h -- the fixed index: one digest per chunk of a disk, in disk order.
 *
 *   offset size  field (integers little endian)
 *        0    8  magic "VBAKFIDX"
 *        8    4  format version (1)
 *       12    4  header size (4096)
 *       16   16  uuid of this index
 *       32    8  disk size in bytes
 *       40    4  chunk size in bytes
 *       44    4  flags (0)
 *       48    8  chunk count = ceil(disk size / chunk size)
 *       56    8  creation time, seconds since the epoch
 *       64   32  checksum: SHA-256 over all packed digests
 *       96    4  CRC-32C of bytes 0-95
 *      100 3996  zero
 *     4096  32n  the digests; 32 zero bytes mark a zero or unallocated chunk
 *
 * DESIGN: the digests are appended in disk order while a backup runs, to a
 * temp file; the checksum is computed as they go and written into the header
 * at the end, then the file is renamed into place. Readers check the header
 * CRC, the sizes and the checksum before they trust a single digest.
 */
#ifndef DD_INDEX_H
#define DD_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "dedup/digest.h"

#define DD_INDEX_MAGIC "VBAKFIDX"
#define DD_INDEX_VERSION 1
#define DD_INDEX_HEADER_SIZE 4096
#define DD_INDEX_SUFFIX ".fidx"

typedef struct dd_index_header {
        uint8_t uuid[16];
        uint64_t disk_size;
        uint32_t chunk_size;
        uint64_t chunk_count;
        uint64_t ctime;
        dd_digest checksum;
} dd_index_header;

/* Number of chunks of a disk. */
static inline uint64_t dd_chunk_count(uint64_t disk_size, uint32_t chunk_size)
{
        return disk_size / chunk_size + (disk_size % chunk_size != 0);
}

/* Length of chunk i (the last one may be short). */
static inline uint32_t dd_chunk_length(uint64_t disk_size, uint32_t chunk_size, uint64_t i)
{
        uint64_t off = i * chunk_size;
        return (uint32_t)(disk_size - off < chunk_size ? disk_size - off : chunk_size);
}

typedef struct dd_index_writer dd_index_writer;

/* Starts an index for dirfd/name, written to a temp file beside it. */
int dd_index_writer_new(int dirfd, const char *name, uint64_t disk_size, uint32_t chunk_size, dd_index_writer **ret);

/* Appends the next chunk's digest (NULL or the null digest: a zero chunk). */
int dd_index_writer_append(dd_index_writer *w, const dd_digest *d);

/* Writes the header, fsyncs when asked and renames the file into place.
 * Fails with -EINVAL when fewer or more digests than chunks were appended. */
int dd_index_writer_finish(dd_index_writer *w, bool do_sync, dd_index_header *ret_header);

/* Frees the writer; an unfinished temp file is removed. */
dd_index_writer *dd_index_writer_free(dd_index_writer *w);
static inline void dd_index_writer_freep(dd_index_writer **w)
{
        dd_index_writer_free(*w);
}

typedef struct dd_index dd_index;

/* Opens and fully checks an index (header CRC, sizes, checksum). -EBADMSG
 * when it is damaged, -EPROTONOSUPPORT for an unknown version. */
int dd_index_open_at(int dirfd, const char *name, dd_index **ret);
/* The same on an open file descriptor (taken over, closed by dd_index_free). */
int dd_index_open_fd(int fd, dd_index **ret);

const dd_index_header *dd_index_get_header(const dd_index *idx);

/* Digest of chunk i; thread-safe (pread). */
int dd_index_get(dd_index *idx, uint64_t i, dd_digest *ret);

dd_index *dd_index_free(dd_index *idx);
static inline void dd_index_freep(dd_index **idx)
{
        dd_index_free(*idx);
}

#endif
