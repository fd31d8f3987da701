/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-blob.c -- tests for dedup/blob.[ch]: encode/decode round trips at
 * every kind of level for compressible, random and empty data, the choice
 * of stored vs zstd payload, the header layout, the digest check, every
 * single-bit flip and every truncation of small blobs, a too small output
 * buffer, dd_blob_peek/dd_blob_check, and the compression level strings.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/blob.h"
#include "dedup/crc32c.h"
#include "tests/unit/test.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)rng();
}

static void fill_text(uint8_t *p, size_t n)
{
        static const char words[] = "the quick brown fox jumps over the lazy dog; vbak backs up virtual disks. ";

        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)words[i % (sizeof(words) - 1)];
}

/* Encodes, checks the header, decodes with and without the digest; returns
 * the flags. */
static unsigned round_trip(dd_blob_ctx *ctx, int level, const uint8_t *plain, size_t len)
{
        size_t bound = dd_blob_bound(len);
        _cleanup_free_ uint8_t *blob = malloc(bound);
        _cleanup_free_ uint8_t *out = malloc(len + 1);
        dd_blob_info info;
        dd_digest d;
        ssize_t n;

        ASSERT_TRUE(blob && out);
        ASSERT_TRUE(bound >= DD_BLOB_HEADER_SIZE + len);
        n = dd_blob_encode(ctx, level, plain, len, blob, bound);
        ASSERT_OK(n);
        ASSERT_TRUE((size_t)n >= DD_BLOB_HEADER_SIZE && (size_t)n <= bound);
        /* Never bigger than stored plain (plus the block table, in the block layout). */
        if (dd_block_count(len) >= 2)
                ASSERT_TRUE((size_t)n <= DD_BLOB_HEADER_SIZE + len + (dd_block_count(len) + 7) / 8 +
                                                 dd_block_count(len) * (4 + DD_DIGEST_SIZE));
        else
                ASSERT_TRUE((size_t)n <= DD_BLOB_HEADER_SIZE + len);

        ASSERT_MEMEQ(blob, DD_BLOB_MAGIC, 4);
        ASSERT_EQ(blob[4], DD_BLOB_VERSION);
        ASSERT_EQ(blob[6], 0);
        ASSERT_EQ(blob[7], 0);
        ASSERT_UEQ(get_le32(blob + 8), len);
        ASSERT_UEQ(get_le32(blob + 12), dd_crc32c(0, blob + DD_BLOB_HEADER_SIZE, (size_t)n - DD_BLOB_HEADER_SIZE));
        if (!(blob[5] & (DD_BLOB_FLAG_ZSTD | DD_BLOB_FLAG_BLOCKS))) {
                ASSERT_UEQ((size_t)n, DD_BLOB_HEADER_SIZE + len);
                ASSERT_MEMEQ(blob + DD_BLOB_HEADER_SIZE, plain, len);
        }

        ASSERT_OK(dd_blob_peek(blob, (size_t)n, &info));
        ASSERT_UEQ(info.plain_len, len);
        ASSERT_EQ(info.flags, blob[5]);
        ASSERT_OK(dd_blob_peek(blob, DD_BLOB_HEADER_SIZE, NULL)); /* the header alone is enough */
        memset(&info, 0, sizeof(info));
        ASSERT_OK(dd_blob_check(blob, (size_t)n, &info));
        ASSERT_UEQ(info.plain_len, len);
        ASSERT_UEQ(info.crc, get_le32(blob + 12));

        ASSERT_OK(dd_chunk_digest(plain, len, &d));
        memset(out, 0xaa, len + 1);
        ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, len, &d), (ssize_t)len);
        ASSERT_MEMEQ(out, plain, len);
        memset(out, 0xaa, len + 1);
        ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, len + 1, NULL), (ssize_t)len);
        ASSERT_MEMEQ(out, plain, len);
        ASSERT_EQ(out[len], 0xaa); /* nothing written past the plain length */
        return blob[5];
}

TEST(blob_round_trip)
{
        static const size_t sizes[] = { 0, 1, 2, 15, 16, 17, 100, 4096, 65536, 1 << 20 };
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST, 3, DD_COMPRESSION_LEVEL_MAX };
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        _cleanup_free_ uint8_t *text = malloc(1 << 20), *rnd = malloc(1 << 20), *zero = calloc(1, 1 << 20);

        ASSERT_TRUE(ctx && text && rnd && zero);
        fill_text(text, 1 << 20);
        fill_random(rnd, 1 << 20);
        for (size_t l = 0; l < ELEMENTSOF(levels); l++)
                for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
                        size_t len = sizes[s];
                        int level = levels[l];
                        unsigned f;

                        /* Level 19 on a whole MiB is slow: keep it to the smaller sizes. */
                        if (level == DD_COMPRESSION_LEVEL_MAX && len > 65536)
                                continue;
                        /* Chunks of two or more blocks have the block layout, whose
                         * blocks carry their own zstd flag. */
                        bool blocks = len > DD_BLOCK_SIZE;

                        f = round_trip(ctx, level, text, len);
                        if (blocks)
                                ASSERT_EQ(f, DD_BLOB_FLAG_BLOCKS);
                        else if (level == DD_COMPRESSION_NONE || len == 0)
                                ASSERT_EQ(f, 0);
                        else if (len >= 4096)
                                ASSERT_EQ(f, DD_BLOB_FLAG_ZSTD);
                        /* Random data never compresses: stored as is. */
                        ASSERT_EQ(round_trip(ctx, level, rnd, len), blocks ? DD_BLOB_FLAG_BLOCKS : 0);
                        f = round_trip(ctx, level, zero, len);
                        if (len > DD_BLOCK_SIZE) /* the block layout; zero blocks are left out */
                                ASSERT_EQ(f, DD_BLOB_FLAG_BLOCKS);
                        else if (level > DD_COMPRESSION_NONE && len >= 100)
                                ASSERT_EQ(f, DD_BLOB_FLAG_ZSTD);
                }
}

TEST(blob_compresses)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        _cleanup_free_ uint8_t *text = malloc(65536), *blob = malloc(dd_blob_bound(65536));
        ssize_t fast, best, none;

        ASSERT_TRUE(ctx && text && blob);
        fill_text(text, 65536);
        none = dd_blob_encode(ctx, DD_COMPRESSION_NONE, text, 65536, blob, dd_blob_bound(65536));
        fast = dd_blob_encode(ctx, DD_COMPRESSION_FAST, text, 65536, blob, dd_blob_bound(65536));
        best = dd_blob_encode(ctx, DD_COMPRESSION_LEVEL_MAX, text, 65536, blob, dd_blob_bound(65536));
        ASSERT_EQ(none, DD_BLOB_HEADER_SIZE + 65536);
        ASSERT_TRUE(fast > DD_BLOB_HEADER_SIZE && fast < 65536 / 10);
        ASSERT_TRUE(best > DD_BLOB_HEADER_SIZE && best <= fast);
}

TEST(blob_encode_refuses)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t plain[100] = { 0 }, out[256];

        ASSERT_TRUE(ctx);
        ASSERT_ERR(dd_blob_encode(NULL, 1, plain, sizeof(plain), out, sizeof(out)), EINVAL);
        ASSERT_ERR(dd_blob_encode(ctx, 1, NULL, sizeof(plain), out, sizeof(out)), EINVAL);
        ASSERT_ERR(dd_blob_encode(ctx, 1, plain, sizeof(plain), NULL, sizeof(out)), EINVAL);
        /* The output must hold the bound, even when the result would fit. */
        ASSERT_ERR(dd_blob_encode(ctx, 1, plain, sizeof(plain), out, dd_blob_bound(sizeof(plain)) - 1), EINVAL);
        ASSERT_ERR(dd_blob_encode(ctx, 1, plain, (size_t)DD_BLOB_PLAIN_MAX + 1, out, SIZE_MAX), EINVAL);
}

/* No data needs no pointer: the check only refuses NULL with a length. */
TEST(blob_encode_empty_null)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t blob[256], out[16];
        dd_digest d;

        ASSERT_TRUE(ctx);
        ASSERT_OK(dd_chunk_digest("", 0, &d));
        for (int level = DD_COMPRESSION_NONE; level <= 3; level++) {
                ssize_t n = dd_blob_encode(ctx, level, NULL, 0, blob, sizeof(blob));
                ASSERT_EQ(n, DD_BLOB_HEADER_SIZE);
                ASSERT_EQ(blob[5], 0);
                ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &d), 0);
        }
}

TEST(blob_wrong_digest)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t plain[5000], blob[8192], out[5000];
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST };

        ASSERT_TRUE(ctx);
        fill_text(plain, sizeof(plain));
        for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                ssize_t n = dd_blob_encode(ctx, levels[l], plain, sizeof(plain), blob, sizeof(blob));
                dd_digest d, other;

                ASSERT_OK(n);
                ASSERT_OK(dd_chunk_digest(plain, sizeof(plain), &d));
                ASSERT_OK(dd_chunk_digest(plain, sizeof(plain) - 1, &other));
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &other), EBADMSG);
                for (int i = 0; i < DD_DIGEST_SIZE; i++) {
                        other = d;
                        other.b[i] ^= 0x01;
                        ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &other), EBADMSG);
                }
                other = DD_DIGEST_NULL;
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &other), EBADMSG);
                ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &d), sizeof(plain));
        }

        /* The empty blob too: its chunk digest is the null digest (no data). */
        ssize_t n = dd_blob_encode(ctx, DD_COMPRESSION_FAST, "", 0, blob, sizeof(blob));
        dd_digest d;
        ASSERT_EQ(n, DD_BLOB_HEADER_SIZE);
        ASSERT_OK(dd_digest_compute("x", 1, &d));
        ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), &d), EBADMSG);
        ASSERT_OK(dd_chunk_digest("", 0, &d));
        ASSERT_TRUE(dd_digest_is_null(&d));
        ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, 0, &d), 0);
}

/* Flips every bit of a blob in turn: decoding must fail with -EBADMSG or
 * -EPROTONOSUPPORT, with and without the expected digest, into a buffer as
 * big as any blob can need. Into a buffer of exactly the plain length, a
 * plain length grown by the flip is -ENOBUFS: that header field is not under
 * the CRC, and the pools map -ENOBUFS to -EBADMSG. */
static void flip_every_bit(dd_blob_ctx *ctx, int level, const uint8_t *plain, size_t len, unsigned want_flags)
{
        uint8_t blob[1024], copy[1024];
        _cleanup_free_ uint8_t *out = malloc(DD_BLOB_PLAIN_MAX);
        ssize_t n = dd_blob_encode(ctx, level, plain, len, blob, sizeof(blob));
        dd_digest d;

        ASSERT_TRUE(out);
        ASSERT_OK(n);
        ASSERT_EQ(blob[5], want_flags);
        ASSERT_OK(dd_chunk_digest(plain, len, &d));
        for (size_t i = 0; i < (size_t)n; i++)
                for (int bit = 0; bit < 8; bit++) {
                        memcpy(copy, blob, (size_t)n);
                        copy[i] ^= (uint8_t)(1u << bit);
                        ssize_t r1 = dd_blob_decode(ctx, copy, (size_t)n, out, DD_BLOB_PLAIN_MAX, &d);
                        ssize_t r2 = dd_blob_decode(ctx, copy, (size_t)n, out, DD_BLOB_PLAIN_MAX, NULL);
                        ssize_t r3 = dd_blob_decode(ctx, copy, (size_t)n, out, len, &d);
                        int c = dd_blob_check(copy, (size_t)n, NULL);
                        bool grown =
                                i >= 8 && i < 12 && get_le32(copy + 8) > len && get_le32(copy + 8) <= DD_BLOB_PLAIN_MAX;

                        if (r1 != -EBADMSG && r1 != -EPROTONOSUPPORT)
                                TEST_FAIL_("level %d, %zu plain bytes, byte %zu bit %d: decode with digest gave %zd",
                                           level, len, i, bit, r1);
                        if (r2 != -EBADMSG && r2 != -EPROTONOSUPPORT)
                                TEST_FAIL_("level %d, %zu plain bytes, byte %zu bit %d: decode gave %zd", level, len, i,
                                           bit, r2);
                        if (r3 != -EBADMSG && r3 != -EPROTONOSUPPORT && !(grown && r3 == -ENOBUFS))
                                TEST_FAIL_("level %d, %zu plain bytes, byte %zu bit %d: decode into %zu bytes "
                                           "gave %zd",
                                           level, len, i, bit, len, r3);
                        /* The payload is covered by the CRC: check alone sees it. */
                        if (i >= DD_BLOB_HEADER_SIZE && c != -EBADMSG)
                                TEST_FAIL_("byte %zu bit %d: check gave %d", i, bit, c);
                }
}

TEST(blob_bit_flips)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t text[300], rnd[200];

        ASSERT_TRUE(ctx);
        fill_text(text, sizeof(text));
        fill_random(rnd, sizeof(rnd));
        flip_every_bit(ctx, DD_COMPRESSION_NONE, text, sizeof(text), 0);
        flip_every_bit(ctx, DD_COMPRESSION_FAST, text, sizeof(text), DD_BLOB_FLAG_ZSTD);
        flip_every_bit(ctx, DD_COMPRESSION_LEVEL_MAX, text, sizeof(text), DD_BLOB_FLAG_ZSTD);
        flip_every_bit(ctx, DD_COMPRESSION_FAST, rnd, sizeof(rnd), 0);
        flip_every_bit(ctx, DD_COMPRESSION_NONE, rnd, 1, 0);
}

/* The empty blob: with the zstd flag flipped on, an empty payload is no
 * zstd frame, yet decodes to nothing, which is what the blob held. */
TEST(blob_bit_flips_empty)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t blob[256], copy[256], out[64];
        ssize_t n = dd_blob_encode(ctx, DD_COMPRESSION_FAST, "", 0, blob, sizeof(blob));
        dd_digest d;

        ASSERT_TRUE(ctx);
        ASSERT_EQ(n, DD_BLOB_HEADER_SIZE);
        ASSERT_OK(dd_chunk_digest("", 0, &d));
        for (size_t i = 0; i < (size_t)n; i++)
                for (int bit = 0; bit < 8; bit++) {
                        memcpy(copy, blob, (size_t)n);
                        copy[i] ^= (uint8_t)(1u << bit);
                        ssize_t r = dd_blob_decode(ctx, copy, (size_t)n, out, sizeof(out), &d);
                        if (r >= 0 && r != 0)
                                TEST_FAIL_("byte %zu bit %d: decoded %zd bytes from an empty blob", i, bit, r);
                        if (r < 0 && r != -EBADMSG && r != -EPROTONOSUPPORT)
                                TEST_FAIL_("byte %zu bit %d: decode gave %zd", i, bit, r);
                }
}

/* A flipped plain length into a buffer that holds the true length. */
TEST(blob_plain_length_grown)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t text[300], blob[1024], out[300];
        ssize_t n;

        ASSERT_TRUE(ctx);
        fill_text(text, sizeof(text));
        n = dd_blob_encode(ctx, DD_COMPRESSION_FAST, text, sizeof(text), blob, sizeof(blob));
        ASSERT_OK(n);
        ASSERT_EQ(blob[5], DD_BLOB_FLAG_ZSTD);
        blob[9] ^= 0x10; /* plain length 300 -> 4396 */
        ASSERT_OK(dd_blob_check(blob, (size_t)n, NULL));
        ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), NULL), ENOBUFS);
        blob[9] ^= 0x10;
        blob[8] ^= 0x01; /* 300 -> 301: the frame holds 300 */
        uint8_t big[400];
        ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, big, sizeof(big), NULL), EBADMSG);
        blob[8] ^= 0x03; /* 300 -> 302 -> 298 */
        ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, big, sizeof(big), NULL), EBADMSG);
}

TEST(blob_truncated)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST };
        uint8_t text[3000], blob[4096], out[3000];

        ASSERT_TRUE(ctx);
        fill_text(text, sizeof(text));
        for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                ssize_t n = dd_blob_encode(ctx, levels[l], text, sizeof(text), blob, sizeof(blob));
                dd_digest d;

                ASSERT_OK(n);
                ASSERT_OK(dd_chunk_digest(text, sizeof(text), &d));
                for (size_t len = 0; len < (size_t)n; len++) {
                        ssize_t r = dd_blob_decode(ctx, blob, len, out, sizeof(out), &d);
                        if (r != -EBADMSG)
                                TEST_FAIL_("level %d: %zu of %zd bytes decoded to %zd", levels[l], len, n, r);
                        ASSERT_ERR(dd_blob_check(blob, len, NULL), EBADMSG);
                        ASSERT_ERR(dd_blob_decode(ctx, blob, len, out, sizeof(out), NULL), EBADMSG);
                }
                /* Trailing garbage is damage too. */
                blob[n] = 0;
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n + 1, out, sizeof(out), &d), EBADMSG);
                ASSERT_ERR(dd_blob_check(blob, (size_t)n + 1, NULL), EBADMSG);
        }
        ASSERT_ERR(dd_blob_peek(blob, DD_BLOB_HEADER_SIZE - 1, NULL), EBADMSG);
        ASSERT_ERR(dd_blob_peek(NULL, 100, NULL), EBADMSG);
        ASSERT_ERR(dd_blob_check(NULL, 0, NULL), EBADMSG);
}

TEST(blob_out_too_small)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST };
        uint8_t text[3000], blob[4096], out[3000];

        ASSERT_TRUE(ctx);
        fill_text(text, sizeof(text));
        for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                ssize_t n = dd_blob_encode(ctx, levels[l], text, sizeof(text), blob, sizeof(blob));

                ASSERT_OK(n);
                memset(out, 0x5a, sizeof(out));
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out) - 1, NULL), ENOBUFS);
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, 0, NULL), ENOBUFS);
                ASSERT_EQ(out[0], 0x5a);
                ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), NULL), sizeof(text));
        }
        ASSERT_ERR(dd_blob_decode(NULL, blob, 100, out, sizeof(out), NULL), EINVAL);
        ASSERT_ERR(dd_blob_decode(ctx, blob, 100, NULL, sizeof(out), NULL), EINVAL);
}

/* Builds a blob by hand with a valid CRC over payload. */
static size_t make_blob(uint8_t *b, uint8_t version, uint8_t flags, uint16_t reserved, uint32_t plain_len,
                        const void *payload, size_t n)
{
        memcpy(b, DD_BLOB_MAGIC, 4);
        b[4] = version;
        b[5] = flags;
        put_le16(b + 6, reserved);
        put_le32(b + 8, plain_len);
        memcpy(b + DD_BLOB_HEADER_SIZE, payload, n);
        put_le32(b + 12, dd_crc32c(0, b + DD_BLOB_HEADER_SIZE, n));
        return DD_BLOB_HEADER_SIZE + n;
}

TEST(blob_peek_and_check)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t b[256], out[256];
        dd_blob_info info;
        size_t n;

        ASSERT_TRUE(ctx);
        n = make_blob(b, DD_BLOB_VERSION, 0, 0, 5, "hello", 5);
        ASSERT_OK(dd_blob_check(b, n, &info));
        ASSERT_EQ(info.plain_len, 5);
        ASSERT_EQ(info.flags, 0);
        ASSERT_EQ(info.crc, dd_crc32c(0, "hello", 5));
        ASSERT_EQ(dd_blob_decode(ctx, b, n, out, sizeof(out), NULL), 5);
        ASSERT_MEMEQ(out, "hello", 5);

        /* Unknown version and flags: not supported rather than damaged. */
        n = make_blob(b, 2, 0, 0, 5, "hello", 5);
        ASSERT_ERR(dd_blob_peek(b, n, &info), EPROTONOSUPPORT);
        ASSERT_ERR(dd_blob_check(b, n, &info), EPROTONOSUPPORT);
        ASSERT_ERR(dd_blob_decode(ctx, b, n, out, sizeof(out), NULL), EPROTONOSUPPORT);
        n = make_blob(b, 0, 0, 0, 5, "hello", 5);
        ASSERT_ERR(dd_blob_peek(b, n, NULL), EPROTONOSUPPORT);
        n = make_blob(b, DD_BLOB_VERSION, DD_BLOB_FLAG_ENCRYPTED, 0, 5, "hello", 5);
        ASSERT_ERR(dd_blob_check(b, n, NULL), EPROTONOSUPPORT);
        ASSERT_ERR(dd_blob_decode(ctx, b, n, out, sizeof(out), NULL), EPROTONOSUPPORT);
        for (int bit = 3; bit < 8; bit++) {
                n = make_blob(b, DD_BLOB_VERSION, (uint8_t)(1u << bit), 0, 5, "hello", 5);
                ASSERT_ERR(dd_blob_peek(b, n, NULL), EPROTONOSUPPORT);
        }

        /* The block layout is for chunks of two or more blocks only. */
        n = make_blob(b, DD_BLOB_VERSION, DD_BLOB_FLAG_BLOCKS, 0, 5, "\x01hello", 6);
        ASSERT_ERR(dd_blob_decode(ctx, b, n, out, sizeof(out), NULL), EBADMSG);

        /* Damaged header fields. */
        n = make_blob(b, DD_BLOB_VERSION, 0, 1, 5, "hello", 5);
        ASSERT_ERR(dd_blob_peek(b, n, NULL), EBADMSG);
        n = make_blob(b, DD_BLOB_VERSION, 0, 0, 4, "hello", 5);
        ASSERT_OK(dd_blob_peek(b, n, NULL));
        ASSERT_ERR(dd_blob_check(b, n, NULL), EBADMSG); /* stored length differs */
        n = make_blob(b, DD_BLOB_VERSION, 0, 0, DD_BLOB_PLAIN_MAX + 1, "hello", 5);
        ASSERT_ERR(dd_blob_peek(b, n, NULL), EBADMSG);
        n = make_blob(b, DD_BLOB_VERSION, DD_BLOB_FLAG_ZSTD, 0, UINT32_MAX, "hello", 5);
        ASSERT_ERR(dd_blob_peek(b, n, NULL), EBADMSG);
        n = make_blob(b, DD_BLOB_VERSION, 0, 0, 5, "hello", 5);
        b[0] = 'X';
        ASSERT_ERR(dd_blob_peek(b, n, NULL), EBADMSG);
        n = make_blob(b, DD_BLOB_VERSION, 0, 0, 5, "hello", 5);
        b[12] ^= 1;
        ASSERT_OK(dd_blob_peek(b, n, NULL)); /* peek does not read the payload */
        ASSERT_ERR(dd_blob_check(b, n, NULL), EBADMSG);

        /* A payload flagged zstd that is no zstd frame. */
        n = make_blob(b, DD_BLOB_VERSION, DD_BLOB_FLAG_ZSTD, 0, 5, "hello", 5);
        ASSERT_OK(dd_blob_check(b, n, NULL));
        ASSERT_ERR(dd_blob_decode(ctx, b, n, out, sizeof(out), NULL), EBADMSG);
}

/* A zstd frame whose content is longer or shorter than the header says. */
TEST(blob_zstd_length_mismatch)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t text[1000], blob[2048], b[2048], out[2048];
        ssize_t n;

        ASSERT_TRUE(ctx);
        fill_text(text, sizeof(text));
        n = dd_blob_encode(ctx, DD_COMPRESSION_FAST, text, sizeof(text), blob, sizeof(blob));
        ASSERT_OK(n);
        ASSERT_EQ(blob[5], DD_BLOB_FLAG_ZSTD);
        for (uint32_t plain = 0; plain < 1100; plain += plain < 990 ? 97 : 1) {
                size_t m;

                if (plain == sizeof(text))
                        continue;
                m = make_blob(b, DD_BLOB_VERSION, DD_BLOB_FLAG_ZSTD, 0, plain, blob + DD_BLOB_HEADER_SIZE,
                              (size_t)n - DD_BLOB_HEADER_SIZE);
                ASSERT_OK(dd_blob_check(b, m, NULL));
                ASSERT_ERR(dd_blob_decode(ctx, b, m, out, sizeof(out), NULL), EBADMSG);
        }
}

TEST(blob_compression_strings)
{
        int level;
        char buf[32];

        level = -1;
        ASSERT_OK(dd_compression_from_string("none", &level));
        ASSERT_EQ(level, DD_COMPRESSION_NONE);
        ASSERT_OK(dd_compression_from_string("fast", &level));
        ASSERT_EQ(level, DD_COMPRESSION_FAST);
        ASSERT_OK(dd_compression_from_string("zstd:1", &level));
        ASSERT_EQ(level, 1);
        ASSERT_OK(dd_compression_from_string("zstd:3", &level));
        ASSERT_EQ(level, 3);
        ASSERT_OK(dd_compression_from_string("zstd:19", &level));
        ASSERT_EQ(level, 19);

        static const char *const bad[] = {
                "zstd:0",   "zstd:20", "zstd:",   "zstd:1x", "gzip",  "",     "zstd", "zstd:-1",
                "zstd:+1",  "zstd: 1", "zstd:1 ", " none",   "none ", "NONE", "Fast", "zstd:99999999999999999999",
                "zstd:0x3", "lz4",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                level = 42;
                if (dd_compression_from_string(bad[i], &level) != -EINVAL)
                        TEST_FAIL_("\"%s\" accepted", bad[i]);
                ASSERT_EQ(level, 42);
        }
        ASSERT_ERR(dd_compression_from_string(NULL, &level), EINVAL);

        ASSERT_STREQ(dd_compression_to_string(DD_COMPRESSION_NONE, buf, sizeof(buf)), "none");
        ASSERT_STREQ(dd_compression_to_string(DD_COMPRESSION_FAST, buf, sizeof(buf)), "fast");
        ASSERT_STREQ(dd_compression_to_string(7, buf, sizeof(buf)), "zstd:7");
        ASSERT_STREQ(dd_compression_to_string(19, buf, sizeof(buf)), "zstd:19");
        for (int l = 0; l <= DD_COMPRESSION_LEVEL_MAX; l++) {
                level = -1;
                ASSERT_OK(dd_compression_from_string(dd_compression_to_string(l, buf, sizeof(buf)), &level));
                ASSERT_EQ(level, l);
        }
}

TEST(blob_ctx_reuse)
{
        /* One context encodes and decodes many blobs of different levels in turn. */
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        uint8_t plain[2000], blob[4096], out[2000];

        ASSERT_TRUE(ctx);
        ASSERT_TRUE(dd_blob_ctx_free(NULL) == NULL);
        for (int i = 0; i < 50; i++) {
                size_t len = (size_t)(i * 37) % sizeof(plain);
                ssize_t n;

                fill_text(plain, len);
                plain[len / 2] = (uint8_t)i;
                n = dd_blob_encode(ctx, i % 6, plain, len, blob, sizeof(blob));
                ASSERT_OK(n);
                ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, sizeof(out), NULL), len);
                ASSERT_MEMEQ(out, plain, len);
        }
}

/* The block layout: zero blocks are left out, whatever their place, the
 * others are stored one by one with their digests, and all come back. */
TEST(blob_block_layout)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        size_t len = 5 * DD_BLOCK_SIZE + 1000, bound = dd_blob_bound(len);
        _cleanup_free_ uint8_t *plain = calloc(1, len), *blob = malloc(bound), *out = malloc(len);
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST };
        dd_blob_block k[6];
        dd_digest d, bd;

        ASSERT_TRUE(ctx && plain && blob && out);
        for (size_t i = 0; i < 4000; i++) /* block 1 */
                plain[DD_BLOCK_SIZE + i * 16] = (uint8_t)(i * 131 + 7);
        memset(plain + 3 * DD_BLOCK_SIZE, 'x', 100); /* block 3 */
        plain[len - 1] = 9;                          /* the short last block */
        ASSERT_OK(dd_chunk_digest(plain, len, &d));
        for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                ssize_t n = dd_blob_encode(ctx, levels[l], plain, len, blob, bound);

                ASSERT_OK(n);
                ASSERT_EQ(blob[5], DD_BLOB_FLAG_BLOCKS);
                ASSERT_EQ(blob[DD_BLOB_HEADER_SIZE], 0x2a); /* blocks 1, 3 and 5 */
                if (levels[l] == DD_COMPRESSION_NONE)
                        ASSERT_UEQ((size_t)n, DD_BLOB_HEADER_SIZE + 1 + 3 * 36 + 2 * DD_BLOCK_SIZE + 1000);
                memset(out, 0xee, len);
                ASSERT_EQ(dd_blob_decode(ctx, blob, (size_t)n, out, len, &d), len);
                ASSERT_MEMEQ(out, plain, len);

                /* Its blocks, one by one. */
                ASSERT_OK(dd_blob_blocks(blob, (size_t)n, k, ELEMENTSOF(k), NULL));
                ASSERT_TRUE(!k[0].frame && k[1].frame && !k[2].frame && k[3].frame && !k[4].frame && k[5].frame);
                ASSERT_EQ(k[3].zstd, levels[l] != DD_COMPRESSION_NONE);
                ASSERT_OK(dd_block_digest(plain + 3 * DD_BLOCK_SIZE, DD_BLOCK_SIZE, &bd));
                ASSERT_TRUE(dd_digest_eq(&bd, &k[3].digest));
                ASSERT_OK(dd_blob_decode_block(ctx, &k[3], out, DD_BLOCK_SIZE));
                ASSERT_MEMEQ(out, plain + 3 * DD_BLOCK_SIZE, DD_BLOCK_SIZE);
                ASSERT_ERR(dd_blob_decode_block(ctx, &k[1], out, DD_BLOCK_SIZE - 1), EBADMSG);

                /* A bit set past the last block is refused. */
                blob[DD_BLOB_HEADER_SIZE] |= 0x80;
                put_le32(blob + 12, dd_crc32c(0, blob + DD_BLOB_HEADER_SIZE, (size_t)n - DD_BLOB_HEADER_SIZE));
                ASSERT_ERR(dd_blob_decode(ctx, blob, (size_t)n, out, len, NULL), EBADMSG);
        }
}

/* A blob built from another one's frames plus new blocks decodes to the
 * patched bytes, and the frames carried over are byte for byte the same. */
TEST(blob_build_carries_frames)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        size_t len = 4 * DD_BLOCK_SIZE, bound = dd_blob_bound(len);
        _cleanup_free_ uint8_t *plain = malloc(len), *a = malloc(bound), *b2 = malloc(bound), *out = malloc(len);
        dd_blob_block k[4], nk[4];
        dd_digest d;
        ssize_t n, m;

        ASSERT_TRUE(ctx && plain && a && b2 && out);
        for (size_t i = 0; i < len; i++)
                plain[i] = (uint8_t)("vbak blocks "[i % 12] + i / 4096);
        n = dd_blob_encode(ctx, DD_COMPRESSION_FAST, plain, len, a, bound);
        ASSERT_OK(n);
        ASSERT_OK(dd_blob_blocks(a, (size_t)n, k, ELEMENTSOF(k), NULL));
        /* Change block 2, keep the others' frames. */
        memset(plain + 2 * DD_BLOCK_SIZE + 10, 'Q', 50);
        for (size_t i = 0; i < 4; i++)
                nk[i] = k[i];
        nk[2] = (dd_blob_block){ 0 };
        ASSERT_OK(dd_block_digest(plain + 2 * DD_BLOCK_SIZE, DD_BLOCK_SIZE, &nk[2].digest));
        m = dd_blob_build(ctx, DD_COMPRESSION_FAST, plain, len, nk, b2, bound);
        ASSERT_OK(m);
        ASSERT_OK(dd_chunk_digest(plain, len, &d));
        ASSERT_EQ(dd_blob_decode(ctx, b2, (size_t)m, out, len, &d), len);
        ASSERT_MEMEQ(out, plain, len);
        ASSERT_OK(dd_blob_blocks(b2, (size_t)m, nk, ELEMENTSOF(nk), NULL));
        ASSERT_EQ(nk[0].frame_len, k[0].frame_len);
        ASSERT_MEMEQ(nk[0].frame, k[0].frame, k[0].frame_len);
        /* A carried digest that does not match its frame is caught on read. */
        nk[0] = k[1];
        nk[1] = k[1];
        nk[2] = k[2];
        nk[3] = k[3];
        nk[0].digest = k[0].digest;
        m = dd_blob_build(ctx, DD_COMPRESSION_FAST, NULL, len, nk, b2, bound);
        ASSERT_OK(m);
        ASSERT_ERR(dd_blob_decode(ctx, b2, (size_t)m, out, len, &d), EBADMSG);
        ASSERT_ERR(dd_blob_build(ctx, 1, plain, DD_BLOCK_SIZE, nk, b2, bound), EINVAL);
}

/* dd_blob_encode_digest gives the chunk digest dd_chunk_digest would, in
 * both layouts, and the same blob as dd_blob_encode. */
TEST(blob_encode_digest)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        static const size_t sizes[] = { 0, 1, 5000, DD_BLOCK_SIZE, DD_BLOCK_SIZE + 1, 3 * DD_BLOCK_SIZE + 7 };
        size_t max = 3 * DD_BLOCK_SIZE + 7, bound = dd_blob_bound(max);
        _cleanup_free_ uint8_t *plain = calloc(1, max), *a = malloc(bound), *b = malloc(bound);

        ASSERT_TRUE(ctx && plain && a && b);
        for (size_t i = 0; i < max; i += 3)
                plain[i] = (uint8_t)(i / 7);
        memset(plain + DD_BLOCK_SIZE, 0, DD_BLOCK_SIZE); /* a zero block in the middle */
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                dd_digest got, want;
                ssize_t n = dd_blob_encode_digest(ctx, DD_COMPRESSION_FAST, plain, sizes[k], a, bound, &got);
                ssize_t m = dd_blob_encode(ctx, DD_COMPRESSION_FAST, plain, sizes[k], b, bound);

                ASSERT_OK(n);
                ASSERT_EQ(n, m);
                ASSERT_MEMEQ(a, b, (size_t)n);
                ASSERT_OK(dd_chunk_digest(plain, sizes[k], &want));
                ASSERT_TRUE(dd_digest_eq(&got, &want));
        }
}
