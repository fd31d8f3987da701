/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blob.h -- the chunk blob: how one chunk is stored.
 *
 *   offset size  field
 *        0    4  magic "VBKC"
 *        4    1  format version (1)
 *        5    1  flags: bit 0 zstd, bit 1 encrypted (reserved, refused), bit 2 blocks
 *        6    2  reserved, zero
 *        8    4  plain length (little endian)
 *       12    4  CRC-32C of the payload (the stored bytes after the header)
 *       16    -  payload: a zstd frame, or the plain bytes
 *
 * That is the simple layout, for chunks of one 64 KiB block (digest.h). A
 * chunk of two or more blocks has the block layout (flags exactly "blocks"):
 *
 *   ceil(blocks / 8) bytes  bitmap: bit b % 8 of byte b / 8 set when block b
 *                           is stored; all-zero blocks are not
 *   36 bytes per stored block, in block order: 4 bytes frame length, its top
 *                           bit set when the frame is zstd (else plain), then
 *                           the block's digest (32 bytes)
 *   the frames              each stored block on its own, in block order
 *
 * Blocks are independent, so an incremental that changes a few bytes of a
 * chunk re-encodes only the blocks it touched and carries the others' frames
 * over as they are (dd_blob_build); zero blocks cost nothing.
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
#define DD_BLOB_FLAG_BLOCKS 0x04u
#define DD_BLOB_PLAIN_MAX (16u << 20)

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

/* The same, and the chunk digest of plain (digest.h) into *ret_digest,
 * hashing every block once for both. */
ssize_t dd_blob_encode_digest(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size,
                              dd_digest *ret_digest);

/* Header fields of a blob (len may be just the header), checked for magic,
 * version and flags only. */
typedef struct dd_blob_info {
        uint32_t plain_len;
        unsigned flags;
        uint32_t crc;
} dd_blob_info;
int dd_blob_peek(const void *blob, size_t len, dd_blob_info *ret);

/* One block of a blob in the block layout. frame is NULL for a zero block
 * (whose digest is the null digest). */
typedef struct dd_blob_block {
        const uint8_t *frame;
        uint32_t frame_len;
        bool zstd;
        dd_digest digest;
} dd_blob_block;

/* Builds a blob of the block layout for a chunk of len bytes (two or more
 * blocks): block b is left out when blocks[b].digest is null, carried over
 * from blocks[b].frame when that is set, else encoded from plain (which may
 * then not be NULL). The digests are trusted: they must be those of the
 * blocks. Returns the blob's size or -errno. */
ssize_t dd_blob_build(dd_blob_ctx *ctx, int level, const void *plain, size_t len, const dd_blob_block *blocks,
                      void *out, size_t out_size);

/* Splits a blob of the block layout (CRC checked) into its
 * dd_block_count(plain length) blocks, pointing into blob. -EMEDIUMTYPE for
 * a blob of the simple layout, -EBADMSG when damaged, -ENOBUFS when max is
 * too small. The block digests are as stored: check them against the chunk
 * digest (dd_chunk_digest_combine) before relying on them. */
int dd_blob_blocks(const void *blob, size_t len, dd_blob_block *blocks, size_t max, dd_blob_info *ret_info);

/* Decodes one block into out (its len bytes) and checks its digest. */
int dd_blob_decode_block(dd_blob_ctx *ctx, const dd_blob_block *block, void *out, size_t len);

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
