/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * digest.h -- chunk digests (SHA-256 of the plain data, through OpenSSL
 * EVP), their hex form, and fast all-zero detection.
 *
 * The null digest (32 zero bytes) is the index's marker for a chunk that is
 * all zeros or unallocated: such a chunk is never stored.
 *
 * DESIGN: a chunk's digest is a two-level SHA-256: SHA-256 over the chunk's
 * length (8 bytes, little endian) and the digests of its 64 KiB blocks, a
 * block's digest being SHA-256 of its bytes, or the null digest when it is
 * all zero. A small write into a large chunk then costs the hashing of the
 * blocks it touched, not of the whole chunk, and zero blocks are never
 * hashed at all; the digest still names the chunk's bytes exactly.
 */
#ifndef DD_DIGEST_H
#define DD_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DD_DIGEST_SIZE 32
#define DD_DIGEST_HEX_SIZE (2 * DD_DIGEST_SIZE + 1)

typedef struct dd_digest {
        uint8_t b[DD_DIGEST_SIZE];
} dd_digest;

#define DD_DIGEST_NULL ((dd_digest){ { 0 } })

/* SHA-256 of data. Returns 0 or -EIO when OpenSSL fails. */
int dd_digest_compute(const void *data, size_t len, dd_digest *ret);

#define DD_BLOCK_SIZE (64u * 1024)

/* Number of blocks of a chunk of len bytes. */
static inline size_t dd_block_count(size_t len)
{
        return (len + DD_BLOCK_SIZE - 1) / DD_BLOCK_SIZE;
}

/* The digest of one block (at most DD_BLOCK_SIZE bytes): SHA-256 of it, or
 * the null digest when it is all zero. */
int dd_block_digest(const void *data, size_t len, dd_digest *ret);

/* The chunk digest of a chunk of len bytes from its dd_block_count(len)
 * block digests; the null digest when every block is null (a zero chunk). */
int dd_chunk_digest_combine(const dd_digest *blocks, size_t len, dd_digest *ret);

/* The chunk digest of data (see DESIGN); null for an all-zero chunk. */
int dd_chunk_digest(const void *data, size_t len, dd_digest *ret);

/* Incremental SHA-256, for checksums over many digests. */
typedef struct dd_hasher dd_hasher;
dd_hasher *dd_hasher_new(void);
int dd_hasher_update(dd_hasher *h, const void *data, size_t len);
int dd_hasher_final(dd_hasher *h, dd_digest *ret);
dd_hasher *dd_hasher_free(dd_hasher *h);
static inline void dd_hasher_freep(dd_hasher **h)
{
        dd_hasher_free(*h);
}

/* Writes the 64 lower-case hex digits and a NUL into buf; returns buf. */
char *dd_digest_to_hex(const dd_digest *d, char buf[DD_DIGEST_HEX_SIZE]);

/* Parses exactly 64 hex digits. -EINVAL otherwise. */
int dd_digest_from_hex(const char *s, dd_digest *ret);

bool dd_digest_is_null(const dd_digest *d);

static inline bool dd_digest_eq(const dd_digest *a, const dd_digest *b)
{
        for (int i = 0; i < DD_DIGEST_SIZE; i++)
                if (a->b[i] != b->b[i])
                        return false;
        return true;
}

/* True when all len bytes are zero (vectorised through memcmp). */
bool dd_is_zero(const void *data, size_t len);

#endif
