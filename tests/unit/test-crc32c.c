/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-crc32c.c -- tests for dedup/crc32c.[ch]: the RFC 3720 test vectors,
 * the table path against the dispatching one (hardware when the CPU has
 * SSE4.2) on every length 0-300 at every alignment, and incremental use.
 */
#include <stdint.h>
#include <string.h>

#include "dedup/crc32c.h"
#include "tests/unit/test.h"

/* Defined in dedup/crc32c.c, exposed for this test only. */
extern uint32_t dd_crc32c_sw(uint32_t crc, const void *buf, size_t len);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

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

TEST(crc32c_rfc3720_vectors)
{
        uint8_t buf[32];

        memset(buf, 0, sizeof(buf));
        ASSERT_UEQ(dd_crc32c(0, buf, sizeof(buf)), 0x8a9136aau);
        ASSERT_UEQ(dd_crc32c_sw(0, buf, sizeof(buf)), 0x8a9136aau);

        memset(buf, 0xff, sizeof(buf));
        ASSERT_UEQ(dd_crc32c(0, buf, sizeof(buf)), 0x62a8ab43u);
        ASSERT_UEQ(dd_crc32c_sw(0, buf, sizeof(buf)), 0x62a8ab43u);

        for (int i = 0; i < 32; i++)
                buf[i] = (uint8_t)i;
        ASSERT_UEQ(dd_crc32c(0, buf, sizeof(buf)), 0x46dd794eu);
        ASSERT_UEQ(dd_crc32c_sw(0, buf, sizeof(buf)), 0x46dd794eu);

        /* 31 down to 0 (RFC 3720 B.4, the descending vector). */
        for (int i = 0; i < 32; i++)
                buf[i] = (uint8_t)(31 - i);
        ASSERT_UEQ(dd_crc32c(0, buf, sizeof(buf)), 0x113fdb5cu);
        ASSERT_UEQ(dd_crc32c_sw(0, buf, sizeof(buf)), 0x113fdb5cu);

        ASSERT_UEQ(dd_crc32c(0, "123456789", 9), 0xe3069283u);
        ASSERT_UEQ(dd_crc32c_sw(0, "123456789", 9), 0xe3069283u);
}

TEST(crc32c_empty)
{
        ASSERT_UEQ(dd_crc32c(0, "", 0), 0);
        ASSERT_UEQ(dd_crc32c_sw(0, "", 0), 0);
        /* No bytes leave any running value unchanged. */
        ASSERT_UEQ(dd_crc32c(0x12345678u, "x", 0), 0x12345678u);
        ASSERT_UEQ(dd_crc32c_sw(0xdeadbeefu, "x", 0), 0xdeadbeefu);
}

TEST(crc32c_sw_equals_dispatch)
{
        uint8_t buf[300 + 16];

        for (int round = 0; round < 4; round++) {
                fill_random(buf, sizeof(buf));
                for (size_t align = 0; align < 16; align++)
                        for (size_t len = 0; len <= 300; len++) {
                                uint32_t a = dd_crc32c(0, buf + align, len);
                                uint32_t b = dd_crc32c_sw(0, buf + align, len);

                                if (a != b)
                                        TEST_FAIL_("len %zu align %zu: %08x != %08x", len, align, a, b);
                                /* And from a non-zero running value. */
                                a = dd_crc32c(0xa5a5a5a5u, buf + align, len);
                                b = dd_crc32c_sw(0xa5a5a5a5u, buf + align, len);
                                if (a != b)
                                        TEST_FAIL_("seeded len %zu align %zu: %08x != %08x", len, align, a, b);
                        }
        }
}

TEST(crc32c_incremental)
{
        uint8_t buf[4096 + 7];

        fill_random(buf, sizeof(buf));
        for (size_t len = 0; len <= 300; len++)
                for (size_t cut = 0; cut <= len; cut += 1 + cut / 8) {
                        uint32_t whole = dd_crc32c(0, buf, len);

                        ASSERT_UEQ(dd_crc32c(dd_crc32c(0, buf, cut), buf + cut, len - cut), whole);
                        ASSERT_UEQ(dd_crc32c_sw(dd_crc32c_sw(0, buf, cut), buf + cut, len - cut), whole);
                        /* Mixing the two paths gives the same value. */
                        ASSERT_UEQ(dd_crc32c_sw(dd_crc32c(0, buf, cut), buf + cut, len - cut), whole);
                }

        /* Byte by byte over a big unaligned buffer. */
        uint32_t c = 0;
        for (size_t i = 0; i < sizeof(buf); i++)
                c = dd_crc32c(c, buf + i, 1);
        ASSERT_UEQ(c, dd_crc32c(0, buf, sizeof(buf)));
        ASSERT_UEQ(c, dd_crc32c_sw(0, buf, sizeof(buf)));
}

TEST(crc32c_detects_changes)
{
        uint8_t buf[256];
        uint32_t base;

        fill_random(buf, sizeof(buf));
        base = dd_crc32c(0, buf, sizeof(buf));
        for (size_t i = 0; i < sizeof(buf); i++)
                for (int bit = 0; bit < 8; bit++) {
                        buf[i] ^= (uint8_t)(1u << bit);
                        ASSERT_NE(dd_crc32c(0, buf, sizeof(buf)), base);
                        buf[i] ^= (uint8_t)(1u << bit);
                }
        ASSERT_UEQ(dd_crc32c(0, buf, sizeof(buf)), base);
}
