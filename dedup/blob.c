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
        return DD_BLOB_HEADER_SIZE + DD_BLOB_BITMAP_MAX + MAX(ZSTD_compressBound(plain_len), plain_len);
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

static size_t block_len(size_t len, size_t b)
{
        return MIN(DD_BLOCK_SIZE, len - b * DD_BLOCK_SIZE);
}

/* Compresses the blocks of plain marked in map (all when map is NULL) as one
 * zstd frame into out. Returns the frame's size, 0 when it would not be
 * smaller than total, -errno. */
static ssize_t compress_blocks(dd_blob_ctx *ctx, int level, const uint8_t *plain, size_t len, const uint8_t *map,
                               size_t total, uint8_t *out, size_t out_size)
{
        ZSTD_outBuffer ob = { out, out_size, 0 };
        size_t nb = dd_block_count(len), last = 0, z;

        if (!ctx->cctx) {
                ctx->cctx = ZSTD_createCCtx();
                if (!ctx->cctx)
                        return -ENOMEM;
        }
        ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_only);
        if (ZSTD_isError(ZSTD_CCtx_setParameter(ctx->cctx, ZSTD_c_compressionLevel,
                                                MIN(level, DD_COMPRESSION_LEVEL_MAX))) ||
            ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(ctx->cctx, total)))
                return -EIO;
        for (size_t b = 0; b < nb; b++)
                if (!map || map[b / 8] & (1u << (b % 8)))
                        last = b;
        for (size_t b = 0; b < nb; b++) {
                ZSTD_inBuffer ib = { plain + b * DD_BLOCK_SIZE, block_len(len, b), 0 };
                ZSTD_EndDirective end = b == last ? ZSTD_e_end : ZSTD_e_continue;

                if (map && !(map[b / 8] & (1u << (b % 8))))
                        continue;
                do {
                        z = ZSTD_compressStream2(ctx->cctx, &ob, &ib, end);
                        if (ZSTD_isError(z))
                                return -EIO;
                        if (ob.pos >= total)
                                return 0; /* not worth it */
                } while (ib.pos < ib.size || (end == ZSTD_e_end && z != 0));
        }
        return (ssize_t)ob.pos;
}

ssize_t dd_blob_encode(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size)
{
        const uint8_t *p = plain;
        uint8_t *o = out, *payload, map[DD_BLOB_BITMAP_MAX] = { 0 };
        size_t nb = dd_block_count(len), map_len = 0, total = 0, n_zero = 0, size;
        unsigned flags = 0;
        ssize_t z = 0;

        if (!ctx || (!plain && len) || !out || len > DD_BLOB_PLAIN_MAX || out_size < dd_blob_bound(len))
                return -EINVAL;
        /* Zero blocks are left out of the payload (the sparse layout). */
        for (size_t b = 0; b < nb; b++) {
                if (dd_is_zero(p + b * DD_BLOCK_SIZE, block_len(len, b))) {
                        n_zero++;
                        continue;
                }
                map[b / 8] |= (uint8_t)(1u << (b % 8));
                total += block_len(len, b);
        }
        if (nb > 1 && n_zero > 0) {
                flags |= DD_BLOB_FLAG_SPARSE;
                map_len = (nb + 7) / 8;
        } else
                total = len;
        payload = o + DD_BLOB_HEADER_SIZE;
        memcpy(payload, map, map_len);
        size = map_len;
        if (level > DD_COMPRESSION_NONE && total > 0) {
                z = compress_blocks(ctx, level, p, len, map_len ? map : NULL, total, payload + map_len,
                                    out_size - DD_BLOB_HEADER_SIZE - map_len);
                if (z < 0)
                        return z;
        }
        if (z > 0) {
                flags |= DD_BLOB_FLAG_ZSTD;
                size += (size_t)z;
        } else
                for (size_t b = 0; b < nb; b++) {
                        if (map_len && !(map[b / 8] & (1u << (b % 8))))
                                continue;
                        memcpy(payload + size, p + b * DD_BLOCK_SIZE, block_len(len, b));
                        size += block_len(len, b);
                }
        write_header(o, flags, (uint32_t)len, dd_crc32c(0, payload, size));
        return (ssize_t)(DD_BLOB_HEADER_SIZE + size);
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
        if (info.flags & ~(DD_BLOB_FLAG_ZSTD | DD_BLOB_FLAG_SPARSE))
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
        if (!(info.flags & (DD_BLOB_FLAG_ZSTD | DD_BLOB_FLAG_SPARSE)) && len - DD_BLOB_HEADER_SIZE != info.plain_len)
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
        const uint8_t *payload = (const uint8_t *)blob + DD_BLOB_HEADER_SIZE, *map = NULL;
        size_t payload_len, nb, total;
        uint8_t *o = out;
        dd_blob_info info;
        int r;

        if (!ctx || !out)
                return -EINVAL;
        r = dd_blob_check(blob, len, &info);
        if (r < 0)
                return r;
        if (out_size < info.plain_len)
                return -ENOBUFS;
        payload_len = len - DD_BLOB_HEADER_SIZE;
        nb = dd_block_count(info.plain_len);
        total = info.plain_len;
        if (info.flags & DD_BLOB_FLAG_SPARSE) {
                size_t map_len = (nb + 7) / 8;

                if (nb < 2 || payload_len < map_len)
                        return -EBADMSG;
                map = payload;
                payload += map_len;
                payload_len -= map_len;
                total = 0;
                for (size_t b = 0; b < nb; b++)
                        if (map[b / 8] & (1u << (b % 8)))
                                total += block_len(info.plain_len, b);
                for (size_t b = nb; b < map_len * 8; b++)
                        if (map[b / 8] & (1u << (b % 8)))
                                return -EBADMSG;
        }
        if (info.flags & DD_BLOB_FLAG_ZSTD) {
                size_t z;

                if (!ctx->dctx) {
                        ctx->dctx = ZSTD_createDCtx();
                        if (!ctx->dctx)
                                return -ENOMEM;
                }
                z = ZSTD_decompressDCtx(ctx->dctx, o, total, payload, payload_len);
                if (ZSTD_isError(z) || z != total)
                        return -EBADMSG;
        } else {
                if (payload_len != total)
                        return -EBADMSG;
                memcpy(o, payload, total);
        }
        if (map) {
                /* Spread the stored blocks out to their places, last first, and
                 * zero the others. */
                size_t at = total;
                for (size_t b = nb; b-- > 0;) {
                        size_t bl = block_len(info.plain_len, b);
                        if (map[b / 8] & (1u << (b % 8))) {
                                at -= bl;
                                memmove(o + b * DD_BLOCK_SIZE, o + at, bl);
                        } else
                                memset(o + b * DD_BLOCK_SIZE, 0, bl);
                }
        }
        if (expect) {
                dd_digest d;

                r = dd_chunk_digest(out, info.plain_len, &d);
                if (r < 0)
                        return r;
                if (!dd_digest_eq(&d, expect))
                        return -EBADMSG;
        }
        return (ssize_t)info.plain_len;
}
