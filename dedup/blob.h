/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blob.h -- the chunk blob: how one chunk is stored.
 *
 *   offset size  field
 *        0    4  magic "VBKC"
 *        4    1  format version (1)
 *        5    1  flags: bit 0 zstd, bit 1 encrypted (reserved, refused), bit 2 sparse
 *        6    2  reserved, zero
 *        8    4  plain length (little endian)
 *       12    4  CRC-32C of the payload (the stored bytes after the header)
 *       16    -  payload: a zstd frame, or the plain bytes
 *
 * Sparse blobs (a chunk of several 64 KiB blocks, some of them all zero)
 * leave the zero blocks out: the payload starts with a bitmap of
 * ceil(blocks / 8) bytes, bit b set (bit b % 8 of byte b / 8) when block b is
 * stored, followed by the stored blocks in order, as one zstd frame or plain.
 *
 * zstd is kept only when it is smaller than the plain data. The digest of a
 * chunk (dd_chunk_digest of its plain data) is not stored in the blob: it is the
 * blob's name, and every decode checks it.
 */
#ifndef DD_BLOB_H
#define DD_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dedup/digest.h"

#define DD_BLOB_MAGIC "VBKC"
#define DD_BLOB_VERSION 1
#define DD_BLOB_HEADER_SIZE 16
#define DD_BLOB_FLAG_ZSTD 0x01u
#define DD_BLOB_FLAG_ENCRYPTED 0x02u
#define DD_BLOB_FLAG_SPARSE 0x04u
#define DD_BLOB_PLAIN_MAX (64u << 20)
#define DD_BLOB_BITMAP_MAX (DD_BLOB_PLAIN_MAX / DD_BLOCK_SIZE / 8)

/* Compression levels: 0 = none, 1-19 = zstd level. "fast" is level 1. */
#define DD_COMPRESSION_NONE 0
#define DD_COMPRESSION_FAST 1
#define DD_COMPRESSION_LEVEL_MAX 19

/* Parses "none", "fast" or "zstd:N" (N 1-19) into a level. -EINVAL otherwise. */
int dd_compression_from_string(const char *s, int *ret_level);
/* Formats a level back ("none", "fast", "zstd:N") into buf. */
const char *dd_compression_to_string(int level, char *buf, size_t size);

/* Per-thread codec state (zstd contexts). Not thread-safe: one per worker. */
typedef struct dd_blob_ctx dd_blob_ctx;
dd_blob_ctx *dd_blob_ctx_new(void);
dd_blob_ctx *dd_blob_ctx_free(dd_blob_ctx *ctx);
static inline void dd_blob_ctx_freep(dd_blob_ctx **ctx)
{
        dd_blob_ctx_free(*ctx);
}

/* Bytes a blob of plain_len bytes may need at most. */
size_t dd_blob_bound(size_t plain_len);

/* Encodes plain data into out (out_size >= dd_blob_bound(len)). Returns the
 * blob's size, or -EINVAL/-ENOMEM/-EIO. */
ssize_t dd_blob_encode(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size);

/* Header fields of a blob (len may be just the header), checked for magic,
 * version and flags only. */
typedef struct dd_blob_info {
        uint32_t plain_len;
        unsigned flags;
        uint32_t crc;
} dd_blob_info;
int dd_blob_peek(const void *blob, size_t len, dd_blob_info *ret);

/* Checks the CRC of the stored bytes without decompressing: 0, -EBADMSG
 * (damaged), -EPROTONOSUPPORT (unknown version or flags). */
int dd_blob_check(const void *blob, size_t len, dd_blob_info *ret);

/* Decodes a blob into out (out_size >= plain length) and, when expect is not
 * NULL, checks that the chunk digest (digest.h) of the result equals it. Returns the plain length,
 * -EBADMSG when anything does not match, -EPROTONOSUPPORT for a version or
 * flag this build does not know. */
ssize_t dd_blob_decode(dd_blob_ctx *ctx, const void *blob, size_t len, void *out, size_t out_size,
                       const dd_digest *expect);

#endif
