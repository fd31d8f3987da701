/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * digest.c -- SHA-256 through OpenSSL EVP, hex conversion, zero detection.
 */
#include "dedup/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MIN_HEAD(len) ((len) < 64 ? (len) : 64)

int dd_digest_compute(const void *data, size_t len, dd_digest *ret)
{
        unsigned int n = 0;

        if (EVP_Digest(data, len, ret->b, &n, EVP_sha256(), NULL) != 1 || n != DD_DIGEST_SIZE)
                return -EIO;
        return 0;
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
