/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * digest.c -- SHA-256 through OpenSSL EVP, hex conversion, zero detection.
 */
#include "dedup/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

#define MIN_HEAD(len) ((len) < 64 ? (len) : 64)

int dd_digest_compute(const void *data, size_t len, dd_digest *ret)
{
        unsigned int n = 0;

        if (EVP_Digest(data, len, ret->b, &n, EVP_sha256(), NULL) != 1 || n != DD_DIGEST_SIZE)
                return -EIO;
        return 0;
}

int dd_block_digest(const void *data, size_t len, dd_digest *ret)
{
        if (len > DD_BLOCK_SIZE)
                return -EINVAL;
        if (dd_is_zero(data, len)) {
                *ret = DD_DIGEST_NULL;
                return 0;
        }
        return dd_digest_compute(data, len, ret);
}

int dd_chunk_digest_combine(const dd_digest *blocks, size_t len, dd_digest *ret)
{
        _cleanup_(dd_hasher_freep) dd_hasher *h = NULL;
        size_t n = dd_block_count(len);
        uint8_t le[8];
        bool zero = true;
        int r;

        for (size_t i = 0; i < n && zero; i++)
                zero = dd_digest_is_null(&blocks[i]);
        if (zero) {
                *ret = DD_DIGEST_NULL;
                return 0;
        }
        h = dd_hasher_new();
        if (!h)
                return -ENOMEM;
        put_le64(le, len);
        r = dd_hasher_update(h, le, sizeof(le));
        if (r >= 0)
                r = dd_hasher_update(h, blocks, n * sizeof(*blocks));
        if (r >= 0)
                r = dd_hasher_final(h, ret);
        return r;
}

int dd_chunk_digest(const void *data, size_t len, dd_digest *ret)
{
        const uint8_t *p = data;
        size_t n = dd_block_count(len);
        _cleanup_free_ dd_digest *blocks = NULL;
        int r;

        if (!p && len)
                return -EINVAL;
        blocks = malloc(MAX(n, 1) * sizeof(*blocks));
        if (!blocks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = dd_block_digest(p + i * DD_BLOCK_SIZE, MIN(DD_BLOCK_SIZE, len - i * DD_BLOCK_SIZE), &blocks[i]);
                if (r < 0)
                        return r;
        }
        return dd_chunk_digest_combine(blocks, len, ret);
}

struct dd_hasher {
        EVP_MD_CTX *ctx;
};

dd_hasher *dd_hasher_new(void)
{
        dd_hasher *h = calloc(1, sizeof(*h));

        if (!h)
                return NULL;
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
                return dd_hasher_free(h);
        return h;
}

int dd_hasher_update(dd_hasher *h, const void *data, size_t len)
{
        if (!h)
                return -EINVAL;
        return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -EIO;
}

int dd_hasher_final(dd_hasher *h, dd_digest *ret)
{
        unsigned int n = 0;

        if (!h)
                return -EINVAL;
        if (EVP_DigestFinal_ex(h->ctx, ret->b, &n) != 1 || n != DD_DIGEST_SIZE)
                return -EIO;
        return 0;
}

dd_hasher *dd_hasher_free(dd_hasher *h)
{
        if (h) {
                EVP_MD_CTX_free(h->ctx);
                free(h);
        }
        return NULL;
}

char *dd_digest_to_hex(const dd_digest *d, char buf[DD_DIGEST_HEX_SIZE])
{
        static const char hex[] = "0123456789abcdef";

        for (int i = 0; i < DD_DIGEST_SIZE; i++) {
                buf[2 * i] = hex[d->b[i] >> 4];
                buf[2 * i + 1] = hex[d->b[i] & 15];
        }
        buf[2 * DD_DIGEST_SIZE] = 0;
        return buf;
}

static int unhex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int dd_digest_from_hex(const char *s, dd_digest *ret)
{
        dd_digest d;

        if (!s || strlen(s) != 2 * DD_DIGEST_SIZE)
                return -EINVAL;
        for (int i = 0; i < DD_DIGEST_SIZE; i++) {
                int hi = unhex(s[2 * i]), lo = unhex(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                d.b[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret = d;
        return 0;
}

bool dd_digest_is_null(const dd_digest *d)
{
        return dd_is_zero(d->b, DD_DIGEST_SIZE);
}

bool dd_is_zero(const void *data, size_t len)
{
        const uint8_t *p = data;
        size_t head = MIN_HEAD(len);

        /* Check a short head byte by byte, then compare the buffer with itself
         * shifted by that head: memcmp runs vectorised over the rest. */
        for (size_t i = 0; i < head; i++)
                if (p[i])
                        return false;
        return len <= head || memcmp(p, p + head, len - head) == 0;
}
