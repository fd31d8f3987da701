/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crc32c.c -- CRC-32C over stored chunk bytes.
 *
 * The hardware path uses the SSE4.2 crc32 instruction, 8 bytes at a time;
 * the portable path is a slicing-by-8 table built once. Both are checked
 * against each other and against the RFC 3720 test vectors in the unit tests.
 */
#include "dedup/crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
        for (uint32_t n = 0; n < 256; n++) {
                uint32_t c = n;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
                table[0][n] = c;
        }
        for (uint32_t n = 0; n < 256; n++)
                for (int k = 1; k < 8; k++)
                        table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
        pthread_once(&table_once, table_init);
        while (len >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                w ^= crc;
                crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
                      table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
                      table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
                p += 8;
                len -= 8;
        }
        while (len--)
                crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
        return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
        uint64_t c = crc;

        while (len >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                c = __builtin_ia32_crc32di(c, w);
                p += 8;
                len -= 8;
        }
        while (len--)
                c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        return (uint32_t)c;
}

static bool have_hw(void)
{
        static int cached = -1;

        if (cached < 0) {
                __builtin_cpu_init();
                cached = __builtin_cpu_supports("sse4.2");
        }
        return cached;
}
#endif

/* Exposed to the unit tests so both paths can be compared. */
uint32_t dd_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t dd_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
        return ~crc32c_sw(~crc, buf, len);
}

uint32_t dd_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
        if (have_hw())
                return ~crc32c_hw(~crc, buf, len);
#endif
        return dd_crc32c_sw(crc, buf, len);
}
