/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blob.c -- chunk blob encode and decode (zstd, CRC-32C, digest check).
 */
#include "dedup/blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "daemon/util.h"
#include "dedup/crc32c.h"

struct dd_blob_ctx {
        ZSTD_CCtx *cctx;
        ZSTD_DCtx *dctx;
};

int dd_compression_from_string(const char *s, int *ret_level)
{
        char *end;
        long v;

        if (!s || !ret_level)
                return -EINVAL;
        if (streq(s, "none")) {
                *ret_level = DD_COMPRESSION_NONE;
                return 0;
        }
        if (streq(s, "fast")) {
                *ret_level = DD_COMPRESSION_FAST;
                return 0;
        }
        /* Decimal digits only: no space, sign or leading zero. */
        if (strncmp(s, "zstd:", 5) != 0 || s[5] < '1' || s[5] > '9')
                return -EINVAL;
        errno = 0;
        v = strtol(s + 5, &end, 10);
        if (errno || *end || v < 1 || v > DD_COMPRESSION_LEVEL_MAX)
                return -EINVAL;
        *ret_level = (int)v;
        return 0;
}

const char *dd_compression_to_string(int level, char *buf, size_t size)
{
        if (level <= DD_COMPRESSION_NONE)
                snprintf(buf, size, "none");
        else if (level == DD_COMPRESSION_FAST)
                snprintf(buf, size, "fast");
        else
                snprintf(buf, size, "zstd:%d", level);
        return buf;
}

dd_blob_ctx *dd_blob_ctx_new(void)
{
        return calloc(1, sizeof(dd_blob_ctx));
}

dd_blob_ctx *dd_blob_ctx_free(dd_blob_ctx *ctx)
{
        if (ctx) {
                ZSTD_freeCCtx(ctx->cctx);
                ZSTD_freeDCtx(ctx->dctx);
                free(ctx);
        }
        return NULL;
}

size_t dd_blob_bound(size_t plain_len)
{
        return DD_BLOB_HEADER_SIZE + MAX(ZSTD_compressBound(plain_len), plain_len);
}

static void write_header(uint8_t *h, unsigned flags, uint32_t plain_len, uint32_t crc)
{
        memcpy(h, DD_BLOB_MAGIC, 4);
        h[4] = DD_BLOB_VERSION;
        h[5] = (uint8_t)flags;
        put_le16(h + 6, 0);
        put_le32(h + 8, plain_len);
        put_le32(h + 12, crc);
}

ssize_t dd_blob_encode(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size)
{
        uint8_t *o = out;
        size_t payload = 0;
        unsigned flags = 0;

        if (!ctx || (!plain && len) || !out || len > DD_BLOB_PLAIN_MAX || out_size < dd_blob_bound(len))
                return -EINVAL;
        if (level > DD_COMPRESSION_NONE && len > 0) {
                size_t z;

                if (!ctx->cctx) {
                        ctx->cctx = ZSTD_createCCtx();
                        if (!ctx->cctx)
                                return -ENOMEM;
                }
                z = ZSTD_compressCCtx(ctx->cctx, o + DD_BLOB_HEADER_SIZE, out_size - DD_BLOB_HEADER_SIZE, plain, len,
                                      MIN(level, DD_COMPRESSION_LEVEL_MAX));
                if (ZSTD_isError(z))
                        return -EIO;
                if (z < len) {
                        payload = z;
                        flags |= DD_BLOB_FLAG_ZSTD;
                }
        }
        if (!(flags & DD_BLOB_FLAG_ZSTD)) {
                if (len > 0)
                        memcpy(o + DD_BLOB_HEADER_SIZE, plain, len);
                payload = len;
        }
        write_header(o, flags, (uint32_t)len, dd_crc32c(0, o + DD_BLOB_HEADER_SIZE, payload));
        return (ssize_t)(DD_BLOB_HEADER_SIZE + payload);
}

int dd_blob_peek(const void *blob, size_t len, dd_blob_info *ret)
{
        const uint8_t *h = blob;
        dd_blob_info info;

        if (!blob || len < DD_BLOB_HEADER_SIZE || memcmp(h, DD_BLOB_MAGIC, 4) != 0)
                return -EBADMSG;
        if (h[4] != DD_BLOB_VERSION)
                return -EPROTONOSUPPORT;
        info.flags = h[5];
        if (info.flags & ~DD_BLOB_FLAG_ZSTD)
                return -EPROTONOSUPPORT;
        if (get_le16(h + 6) != 0)
                return -EBADMSG;
        info.plain_len = get_le32(h + 8);
        info.crc = get_le32(h + 12);
        if (info.plain_len > DD_BLOB_PLAIN_MAX)
                return -EBADMSG;
        if (ret)
                *ret = info;
        return 0;
}

int dd_blob_check(const void *blob, size_t len, dd_blob_info *ret)
{
        dd_blob_info info;
        int r = dd_blob_peek(blob, len, &info);

        if (r < 0)
                return r;
        if (!(info.flags & DD_BLOB_FLAG_ZSTD) && len - DD_BLOB_HEADER_SIZE != info.plain_len)
                return -EBADMSG;
        if (dd_crc32c(0, (const uint8_t *)blob + DD_BLOB_HEADER_SIZE, len - DD_BLOB_HEADER_SIZE) != info.crc)
                return -EBADMSG;
        if (ret)
                *ret = info;
        return 0;
}

ssize_t dd_blob_decode(dd_blob_ctx *ctx, const void *blob, size_t len, void *out, size_t out_size,
                       const dd_digest *expect)
{
        const uint8_t *payload = (const uint8_t *)blob + DD_BLOB_HEADER_SIZE;
        dd_blob_info info;
        int r;

        if (!ctx || !out)
                return -EINVAL;
        r = dd_blob_check(blob, len, &info);
        if (r < 0)
                return r;
        if (out_size < info.plain_len)
                return -ENOBUFS;
        if (info.flags & DD_BLOB_FLAG_ZSTD) {
                size_t z;

                if (!ctx->dctx) {
                        ctx->dctx = ZSTD_createDCtx();
                        if (!ctx->dctx)
                                return -ENOMEM;
                }
                z = ZSTD_decompressDCtx(ctx->dctx, out, info.plain_len, payload, len - DD_BLOB_HEADER_SIZE);
                if (ZSTD_isError(z) || z != info.plain_len)
                        return -EBADMSG;
        } else
                memcpy(out, payload, info.plain_len);
        if (expect) {
                dd_digest d;

                r = dd_digest_compute(out, info.plain_len, &d);
                if (r < 0)
                        return r;
                if (!dd_digest_eq(&d, expect))
                        return -EBADMSG;
        }
        return (ssize_t)info.plain_len;
}
