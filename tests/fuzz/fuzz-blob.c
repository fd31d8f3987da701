/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-blob.c -- fuzz target for chunk blob decoding: the input is a blob.
 *
 * Besides not crashing, it checks what decode promises: a blob that
 * decodes without a digest decodes to the same bytes with their digest and
 * fails with any other; whatever decodes with an expected digest hashes to
 * it; a failure is -EBADMSG, -EPROTONOSUPPORT, or -ENOBUFS when the buffer
 * is below the plain length the header gives; and the input itself, encoded
 * as plain data, decodes back unchanged.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

/* Plain lengths above this are decoded into a buffer this big, which must fail. */
#define OUT_CAP (1u << 20)

static bool is_decode_error(ssize_t r)
{
        return r == -EBADMSG || r == -EPROTONOSUPPORT;
}

static void check_decoded(dd_blob_ctx *ctx, const uint8_t *data, size_t size, const uint8_t *out, size_t n,
                          size_t out_size)
{
        _cleanup_free_ uint8_t *again = malloc(MAX(out_size, 1));
        dd_blob_info info;
        dd_digest d, wrong;
        ssize_t r;

        FUZZ_ASSERT(again);
        /* A blob that decodes is whole, and says how long it is. */
        FUZZ_ASSERT(dd_blob_check(data, size, &info) == 0);
        FUZZ_ASSERT(info.plain_len == n);
        FUZZ_ASSERT(dd_chunk_digest(out, n, &d) == 0);

        r = dd_blob_decode(ctx, data, size, again, out_size, &d);
        FUZZ_ASSERT(r == (ssize_t)n);
        FUZZ_ASSERT(memcmp(again, out, n) == 0);

        wrong = d;
        wrong.b[n % DD_DIGEST_SIZE] ^= 0x01;
        FUZZ_ASSERT(dd_blob_decode(ctx, data, size, again, out_size, &wrong) == -EBADMSG);
        wrong = DD_DIGEST_NULL; /* the digest of all-zero data only */
        if (!dd_digest_is_null(&d))
                FUZZ_ASSERT(dd_blob_decode(ctx, data, size, again, out_size, &wrong) == -EBADMSG);
        /* One byte short of the plain length is never enough. */
        if (n > 0)
                FUZZ_ASSERT(dd_blob_decode(ctx, data, size, again, n - 1, NULL) == -ENOBUFS);
}

static void decode_input(dd_blob_ctx *ctx, const uint8_t *data, size_t size)
{
        _cleanup_free_ uint8_t *out = NULL;
        dd_blob_info info = { 0 };
        size_t out_size = 64;
        dd_digest d;
        ssize_t r;

        if (dd_blob_peek(data, size, &info) == 0)
                out_size = MIN(info.plain_len, OUT_CAP);
        out = malloc(MAX(out_size, 1));
        FUZZ_ASSERT(out);

        r = dd_blob_decode(ctx, data, size, out, out_size, NULL);
        if (r >= 0) {
                FUZZ_ASSERT((size_t)r <= out_size);
                check_decoded(ctx, data, size, out, (size_t)r, out_size);
        } else {
                FUZZ_ASSERT(is_decode_error(r) || (r == -ENOBUFS && out_size < info.plain_len));
                /* With a digest it fails too. */
                memset(&d, 0, sizeof(d));
                if (size >= DD_DIGEST_SIZE)
                        memcpy(d.b, data + size - DD_DIGEST_SIZE, DD_DIGEST_SIZE);
                FUZZ_ASSERT(dd_blob_decode(ctx, data, size, out, out_size, &d) < 0);
        }

        /* Any digest taken from the input: success means it is the output's. */
        if (size >= DD_DIGEST_SIZE) {
                memcpy(d.b, data, DD_DIGEST_SIZE);
                r = dd_blob_decode(ctx, data, size, out, out_size, &d);
                if (r >= 0) {
                        dd_digest got;
                        FUZZ_ASSERT(dd_chunk_digest(out, (size_t)r, &got) == 0);
                        FUZZ_ASSERT(dd_digest_eq(&got, &d));
                }
        }
}

/* The input as plain data: encode, check, decode. */
static void encode_input(dd_blob_ctx *ctx, const uint8_t *data, size_t size)
{
        static const int levels[] = { DD_COMPRESSION_NONE, DD_COMPRESSION_FAST, 3 };
        size_t bound = dd_blob_bound(size);
        _cleanup_free_ uint8_t *blob = malloc(bound), *out = malloc(MAX(size, 1));
        int level = levels[size % ELEMENTSOF(levels)];
        dd_digest d;
        ssize_t n;

        FUZZ_ASSERT(blob && out);
        n = dd_blob_encode(ctx, level, data, size, blob, bound);
        FUZZ_ASSERT(n >= DD_BLOB_HEADER_SIZE && (size_t)n <= DD_BLOB_HEADER_SIZE + size);
        FUZZ_ASSERT(dd_blob_check(blob, (size_t)n, NULL) == 0);
        FUZZ_ASSERT(dd_chunk_digest(data, size, &d) == 0);
        FUZZ_ASSERT(dd_blob_decode(ctx, blob, (size_t)n, out, size, &d) == (ssize_t)size);
        FUZZ_ASSERT(memcmp(out, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static dd_blob_ctx *ctx;

        if (!ctx)
                ctx = dd_blob_ctx_new();
        FUZZ_ASSERT(ctx);
        decode_input(ctx, data, size);
        if (size <= OUT_CAP)
                encode_input(ctx, data, size);
        return 0;
}
