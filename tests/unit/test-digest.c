/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-digest.c -- tests for dedup/digest.[ch]: SHA-256 known answers, the
 * incremental hasher against the one-shot digest, hex conversion both ways
 * and its refusals, the null digest, and dd_is_zero on every small length
 * with a single non-zero byte at every position, and on big buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/digest.h"
#include "tests/unit/test.h"

static const char sha_empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char sha_abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char sha_448[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
static const char sha_million_a[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
static const char msg_448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

static void assert_digest_hex(const dd_digest *d, const char *hex)
{
        char buf[DD_DIGEST_HEX_SIZE];

        ASSERT_STREQ(dd_digest_to_hex(d, buf), hex);
}

TEST(digest_known_vectors)
{
        dd_digest d;

        ASSERT_OK(dd_digest_compute("", 0, &d));
        assert_digest_hex(&d, sha_empty);
        ASSERT_OK(dd_digest_compute(NULL, 0, &d));
        assert_digest_hex(&d, sha_empty);
        ASSERT_OK(dd_digest_compute("abc", 3, &d));
        assert_digest_hex(&d, sha_abc);
        ASSERT_OK(dd_digest_compute(msg_448, strlen(msg_448), &d));
        assert_digest_hex(&d, sha_448);

        _cleanup_free_ char *a = malloc(1000000);
        ASSERT_TRUE(a);
        memset(a, 'a', 1000000);
        ASSERT_OK(dd_digest_compute(a, 1000000, &d));
        assert_digest_hex(&d, sha_million_a);
}

TEST(digest_hasher_equals_one_shot)
{
        uint8_t buf[5000];
        dd_digest one, inc;

        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 31 + (i >> 5));
        ASSERT_OK(dd_digest_compute(buf, sizeof(buf), &one));

        for (size_t step = 1; step <= 4097; step = step * 3 + 1) {
                _cleanup_(dd_hasher_freep) dd_hasher *h = dd_hasher_new();

                ASSERT_TRUE(h);
                for (size_t off = 0; off < sizeof(buf); off += step)
                        ASSERT_OK(dd_hasher_update(h, buf + off, MIN(step, sizeof(buf) - off)));
                ASSERT_OK(dd_hasher_update(h, buf, 0));
                ASSERT_OK(dd_hasher_final(h, &inc));
                ASSERT_TRUE(dd_digest_eq(&inc, &one));
        }

        /* The known answers through the hasher too. */
        _cleanup_(dd_hasher_freep) dd_hasher *h = dd_hasher_new();
        ASSERT_TRUE(h);
        ASSERT_OK(dd_hasher_update(h, "a", 1));
        ASSERT_OK(dd_hasher_update(h, "bc", 2));
        ASSERT_OK(dd_hasher_final(h, &inc));
        assert_digest_hex(&inc, sha_abc);

        _cleanup_(dd_hasher_freep) dd_hasher *e = dd_hasher_new();
        ASSERT_TRUE(e);
        ASSERT_OK(dd_hasher_final(e, &inc));
        assert_digest_hex(&inc, sha_empty);
}

TEST(digest_hasher_null_arguments)
{
        dd_digest d;

        ASSERT_ERR(dd_hasher_update(NULL, "x", 1), EINVAL);
        ASSERT_ERR(dd_hasher_final(NULL, &d), EINVAL);
        ASSERT_TRUE(dd_hasher_free(NULL) == NULL);
        dd_hasher *h = dd_hasher_new();
        ASSERT_TRUE(h);
        ASSERT_TRUE(dd_hasher_free(h) == NULL);
}

TEST(digest_hex_round_trip)
{
        char hex[DD_DIGEST_HEX_SIZE];
        dd_digest d, back;

        for (int round = 0; round < 64; round++) {
                for (int i = 0; i < DD_DIGEST_SIZE; i++)
                        d.b[i] = (uint8_t)(round * 37 + i * 11 + (i == round % 32 ? 0xf0 : 0));
                dd_digest_to_hex(&d, hex);
                ASSERT_EQ(strlen(hex), 64);
                for (int i = 0; i < 64; i++)
                        ASSERT_TRUE((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
                memset(&back, 0x55, sizeof(back));
                ASSERT_OK(dd_digest_from_hex(hex, &back));
                ASSERT_TRUE(dd_digest_eq(&d, &back));
        }

        /* Every byte value survives, and upper case is read too. */
        for (int v = 0; v < 256; v++) {
                memset(&d, v, sizeof(d));
                dd_digest_to_hex(&d, hex);
                ASSERT_OK(dd_digest_from_hex(hex, &back));
                ASSERT_TRUE(dd_digest_eq(&d, &back));
                for (int i = 0; i < 64; i++)
                        if (hex[i] >= 'a' && hex[i] <= 'f')
                                hex[i] = (char)(hex[i] - 'a' + 'A');
                ASSERT_OK(dd_digest_from_hex(hex, &back));
                ASSERT_TRUE(dd_digest_eq(&d, &back));
        }

        ASSERT_OK(dd_digest_from_hex(sha_abc, &back));
        ASSERT_EQ(back.b[0], 0xba);
        ASSERT_EQ(back.b[31], 0xad);
}

TEST(digest_from_hex_refuses)
{
        char s[80];
        dd_digest d, keep;

        memset(&keep, 0x77, sizeof(keep));
        d = keep;
        ASSERT_ERR(dd_digest_from_hex(NULL, &d), EINVAL);
        ASSERT_ERR(dd_digest_from_hex("", &d), EINVAL);
        ASSERT_ERR(dd_digest_from_hex("abc", &d), EINVAL);
        /* 63 and 65 digits. */
        ASSERT_ERR(dd_digest_from_hex(sha_abc + 1, &d), EINVAL);
        snprintf(s, sizeof(s), "%s0", sha_abc);
        ASSERT_ERR(dd_digest_from_hex(s, &d), EINVAL);
        snprintf(s, sizeof(s), " %s", sha_abc + 1);
        ASSERT_ERR(dd_digest_from_hex(s, &d), EINVAL);
        /* A non-hex character at every position. */
        static const char bad[] = { 'g', 'G', 'x', ' ', '-', '+', ':', '/', '@', '`', '\n' };
        for (int pos = 0; pos < 64; pos++)
                for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                        memcpy(s, sha_abc, sizeof(sha_abc));
                        s[pos] = bad[k];
                        ASSERT_ERR(dd_digest_from_hex(s, &d), EINVAL);
                }
        /* The out-parameter is untouched on failure. */
        ASSERT_TRUE(dd_digest_eq(&d, &keep));
}

TEST(digest_null)
{
        dd_digest d = DD_DIGEST_NULL;

        ASSERT_TRUE(dd_digest_is_null(&d));
        for (int i = 0; i < DD_DIGEST_SIZE; i++) {
                d = DD_DIGEST_NULL;
                d.b[i] = 1;
                ASSERT_TRUE(!dd_digest_is_null(&d));
                dd_digest z = DD_DIGEST_NULL;
                ASSERT_TRUE(!dd_digest_eq(&d, &z));
        }
        ASSERT_OK(dd_digest_compute("", 0, &d));
        ASSERT_TRUE(!dd_digest_is_null(&d));
}

TEST(digest_is_zero_small)
{
        uint8_t buf[200 + 8] = { 0 };

        ASSERT_TRUE(dd_is_zero(buf, 0));
        ASSERT_TRUE(dd_is_zero(NULL, 0));
        for (size_t align = 0; align < 8; align += 3)
                for (size_t len = 0; len <= 200; len++) {
                        uint8_t *p = buf + align;

                        memset(buf, 0, sizeof(buf));
                        /* Bytes around the range never count. */
                        if (align)
                                buf[align - 1] = 0xff;
                        if (align + len < sizeof(buf))
                                buf[align + len] = 0xff;
                        if (!dd_is_zero(p, len))
                                TEST_FAIL_("len %zu align %zu: all zero not seen as zero", len, align);
                        for (size_t pos = 0; pos < len; pos++) {
                                for (int v = 1; v < 256; v <<= 1) {
                                        p[pos] = (uint8_t)v;
                                        if (dd_is_zero(p, len))
                                                TEST_FAIL_("len %zu align %zu: byte %zu = %d seen as zero", len, align,
                                                           pos, v);
                                }
                                p[pos] = 0;
                        }
                }
}

TEST(digest_is_zero_big)
{
        static const size_t sizes[] = { 4095, 4096, 4097, 65536, 1 << 20, (4 << 20) + 3 };

        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                size_t n = sizes[k];
                _cleanup_free_ uint8_t *p = calloc(1, n);

                ASSERT_TRUE(p);
                ASSERT_TRUE(dd_is_zero(p, n));
                const size_t pos[] = { 0, 1, 63, 64, 65, 127, 128, n / 2, n - 65, n - 64, n - 2, n - 1 };
                for (size_t j = 0; j < ELEMENTSOF(pos); j++) {
                        p[pos[j]] = 0x80;
                        if (dd_is_zero(p, n))
                                TEST_FAIL_("size %zu: byte %zu set, seen as zero", n, pos[j]);
                        p[pos[j]] = 0;
                }
                /* A repeating non-zero pattern after a zero head (the shifted
                 * comparison must not take a period for zeros). */
                for (size_t i = 64; i < n; i++)
                        p[i] = (uint8_t)(i % 64 == 0);
                ASSERT_TRUE(!dd_is_zero(p, n));
                ASSERT_TRUE(dd_is_zero(p, 64));
        }
}

/* The chunk digest: SHA-256 over the length and the block digests, zero
 * blocks contributing the null digest, an all-zero chunk the null digest. */
TEST(chunk_digest_definition)
{
        size_t len = 3 * DD_BLOCK_SIZE + 100;
        uint8_t *data = calloc(1, len), le[8];
        dd_digest blocks[4], expect, got, again;
        dd_hasher *h;

        ASSERT_TRUE(data);
        ASSERT_OK(dd_chunk_digest(data, len, &got));
        ASSERT_TRUE(dd_digest_is_null(&got));
        data[DD_BLOCK_SIZE + 5] = 1;
        data[len - 1] = 7;
        ASSERT_OK(dd_chunk_digest(data, len, &got));
        ASSERT_TRUE(!dd_digest_is_null(&got));

        blocks[0] = blocks[2] = DD_DIGEST_NULL;
        ASSERT_OK(dd_digest_compute(data + DD_BLOCK_SIZE, DD_BLOCK_SIZE, &blocks[1]));
        ASSERT_OK(dd_digest_compute(data + 3 * DD_BLOCK_SIZE, 100, &blocks[3]));
        h = dd_hasher_new();
        ASSERT_TRUE(h);
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)((uint64_t)len >> (8 * i));
        ASSERT_OK(dd_hasher_update(h, le, 8));
        ASSERT_OK(dd_hasher_update(h, blocks, sizeof(blocks)));
        ASSERT_OK(dd_hasher_final(h, &expect));
        dd_hasher_free(h);
        ASSERT_TRUE(dd_digest_eq(&got, &expect));

        /* Combining the block digests gives the same; any changed byte changes it. */
        ASSERT_OK(dd_chunk_digest_combine(blocks, len, &again));
        ASSERT_TRUE(dd_digest_eq(&again, &got));
        for (size_t at = 0; at < len; at += 4099) {
                data[at] ^= 0x10;
                ASSERT_OK(dd_chunk_digest(data, len, &again));
                ASSERT_TRUE(!dd_digest_eq(&again, &got));
                data[at] ^= 0x10;
        }
        /* The length is part of it: a trailing zero byte makes another chunk. */
        ASSERT_OK(dd_chunk_digest(data, len - 1, &again));
        data[len - 1] = 0;
        ASSERT_OK(dd_chunk_digest(data, len, &got));
        ASSERT_TRUE(!dd_digest_eq(&again, &got));
        ASSERT_ERR(dd_block_digest(data, DD_BLOCK_SIZE + 1, &got), EINVAL);
        free(data);
}
