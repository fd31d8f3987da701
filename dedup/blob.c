/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blob.c -- chunk blob encode and decode (zstd, CRC-32C, digest check), in
 * the simple layout (one block) or the block layout (see blob.h).
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

#define ENTRY_SIZE (4 + DD_DIGEST_SIZE)
#define ENTRY_ZSTD 0x80000000u

size_t dd_blob_bound(size_t plain_len)
{
        size_t nb = dd_block_count(plain_len), last;

        if (nb < 2)
                return DD_BLOB_HEADER_SIZE + MAX(ZSTD_compressBound(plain_len), plain_len);
        last = plain_len - (nb - 1) * DD_BLOCK_SIZE;
        return DD_BLOB_HEADER_SIZE + (nb + 7) / 8 + nb * ENTRY_SIZE + (nb - 1) * ZSTD_compressBound(DD_BLOCK_SIZE) +
               ZSTD_compressBound(last);
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

/* zstd of in into out when smaller than in: its size; 0 when not worth it. */
static ssize_t compress(dd_blob_ctx *ctx, int level, const void *in, size_t len, void *out, size_t out_size)
{
        size_t z;

        if (level <= DD_COMPRESSION_NONE || len == 0)
                return 0;
        if (!ctx->cctx) {
                ctx->cctx = ZSTD_createCCtx();
                if (!ctx->cctx)
                        return -ENOMEM;
        }
        z = ZSTD_compressCCtx(ctx->cctx, out, out_size, in, len, MIN(level, DD_COMPRESSION_LEVEL_MAX));
        if (ZSTD_isError(z))
                return -EIO;
        return z < len ? (ssize_t)z : 0;
}

static ssize_t decompress(dd_blob_ctx *ctx, const void *in, size_t in_len, void *out, size_t len)
{
        size_t z;

        if (!ctx->dctx) {
                ctx->dctx = ZSTD_createDCtx();
                if (!ctx->dctx)
                        return -ENOMEM;
        }
        z = ZSTD_decompressDCtx(ctx->dctx, out, len, in, in_len);
        if (ZSTD_isError(z) || z != len)
                return -EBADMSG;
        return (ssize_t)z;
}

ssize_t dd_blob_build(dd_blob_ctx *ctx, int level, const void *plain, size_t len, const dd_blob_block *blocks,
                      void *out, size_t out_size)
{
        const uint8_t *p = plain;
        uint8_t *o = out, *payload = o + DD_BLOB_HEADER_SIZE, *map, *entry, *frame;
        size_t nb = dd_block_count(len), n_stored = 0, end;

        if (!ctx || !blocks || !out || len > DD_BLOB_PLAIN_MAX || nb < 2 || out_size < dd_blob_bound(len))
                return -EINVAL;
        for (size_t b = 0; b < nb; b++) {
                if (dd_digest_is_null(&blocks[b].digest))
                        continue;
                if (!blocks[b].frame && !p)
                        return -EINVAL;
                n_stored++;
        }
        map = payload;
        memset(map, 0, (nb + 7) / 8);
        entry = map + (nb + 7) / 8;
        frame = entry + n_stored * ENTRY_SIZE;
        end = (size_t)(o + out_size - frame);
        for (size_t b = 0; b < nb; b++) {
                const dd_blob_block *s = &blocks[b];
                uint32_t flen;
                ssize_t z;

                if (dd_digest_is_null(&s->digest))
                        continue;
                map[b / 8] |= (uint8_t)(1u << (b % 8));
                if (s->frame) { /* a stored block carried over as it is */
                        if (s->frame_len > end)
                                return -EINVAL;
                        memcpy(frame, s->frame, s->frame_len);
                        flen = s->frame_len | (s->zstd ? ENTRY_ZSTD : 0);
                } else {
                        z = compress(ctx, level, p + b * DD_BLOCK_SIZE, block_len(len, b), frame, end);
                        if (z < 0)
                                return z;
                        if (z > 0)
                                flen = (uint32_t)z | ENTRY_ZSTD;
                        else {
                                memcpy(frame, p + b * DD_BLOCK_SIZE, block_len(len, b));
                                flen = (uint32_t)block_len(len, b);
                        }
                }
                put_le32(entry, flen);
                memcpy(entry + 4, s->digest.b, DD_DIGEST_SIZE);
                entry += ENTRY_SIZE;
                frame += flen & ~ENTRY_ZSTD;
                end -= flen & ~ENTRY_ZSTD;
        }
        write_header(o, DD_BLOB_FLAG_BLOCKS, (uint32_t)len, dd_crc32c(0, payload, (size_t)(frame - payload)));
        return (ssize_t)(frame - o);
}

ssize_t dd_blob_encode_digest(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size,
                              dd_digest *ret_digest)
{
        const uint8_t *p = plain;
        uint8_t *o = out;
        size_t nb = dd_block_count(len);
        unsigned flags = 0;
        ssize_t z;
        int r;

        if (!ctx || (!plain && len) || !out || len > DD_BLOB_PLAIN_MAX || out_size < dd_blob_bound(len))
                return -EINVAL;
        if (nb >= 2) {
                /* The block digests serve both the blob and the chunk digest. */
                _cleanup_free_ dd_blob_block *blocks = calloc(nb, sizeof(*blocks));
                _cleanup_free_ dd_digest *digests = calloc(nb, sizeof(*digests));

                if (!blocks || !digests)
                        return -ENOMEM;
                for (size_t b = 0; b < nb; b++) {
                        r = dd_block_digest(p + b * DD_BLOCK_SIZE, block_len(len, b), &digests[b]);
                        if (r < 0)
                                return r;
                        blocks[b].digest = digests[b];
                }
                if (ret_digest) {
                        r = dd_chunk_digest_combine(digests, len, ret_digest);
                        if (r < 0)
                                return r;
                }
                return dd_blob_build(ctx, level, plain, len, blocks, out, out_size);
        }
        if (ret_digest) {
                r = dd_chunk_digest(plain, len, ret_digest);
                if (r < 0)
                        return r;
        }
        z = compress(ctx, level, plain, len, o + DD_BLOB_HEADER_SIZE, out_size - DD_BLOB_HEADER_SIZE);
        if (z < 0)
                return z;
        if (z > 0)
                flags |= DD_BLOB_FLAG_ZSTD;
        else {
                if (len > 0)
                        memcpy(o + DD_BLOB_HEADER_SIZE, plain, len);
                z = (ssize_t)len;
        }
        write_header(o, flags, (uint32_t)len, dd_crc32c(0, o + DD_BLOB_HEADER_SIZE, (size_t)z));
        return DD_BLOB_HEADER_SIZE + z;
}

ssize_t dd_blob_encode(dd_blob_ctx *ctx, int level, const void *plain, size_t len, void *out, size_t out_size)
{
        return dd_blob_encode_digest(ctx, level, plain, len, out, out_size, NULL);
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
        if (info.flags & ~(DD_BLOB_FLAG_ZSTD | DD_BLOB_FLAG_BLOCKS))
                return -EPROTONOSUPPORT;
        if (get_le16(h + 6) != 0)
                return -EBADMSG;
        info.plain_len = get_le32(h + 8);
        info.crc = get_le32(h + 12);
        if (info.plain_len > DD_BLOB_PLAIN_MAX)
                return -EBADMSG;
        /* The block layout is for chunks of two or more blocks, and only it. */
        if (!!(info.flags & DD_BLOB_FLAG_BLOCKS) != (dd_block_count(info.plain_len) >= 2) ||
            ((info.flags & DD_BLOB_FLAG_BLOCKS) && info.flags != DD_BLOB_FLAG_BLOCKS))
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
        if (info.flags == 0 && len - DD_BLOB_HEADER_SIZE != info.plain_len)
                return -EBADMSG;
        if (dd_crc32c(0, (const uint8_t *)blob + DD_BLOB_HEADER_SIZE, len - DD_BLOB_HEADER_SIZE) != info.crc)
                return -EBADMSG;
        if (ret)
                *ret = info;
        return 0;
}

int dd_blob_blocks(const void *blob, size_t len, dd_blob_block *blocks, size_t max, dd_blob_info *ret_info)
{
        const uint8_t *payload = (const uint8_t *)blob + DD_BLOB_HEADER_SIZE, *map, *entry, *frame, *end;
        dd_blob_info info;
        size_t nb, n_stored = 0;
        int r;

        r = dd_blob_check(blob, len, &info);
        if (r < 0)
                return r;
        if (info.flags != DD_BLOB_FLAG_BLOCKS)
                return -EMEDIUMTYPE;
        nb = dd_block_count(info.plain_len);
        if (!blocks || max < nb)
                return -ENOBUFS;
        end = (const uint8_t *)blob + len;
        map = payload;
        if ((size_t)(end - map) < (nb + 7) / 8)
                return -EBADMSG;
        for (size_t b = 0; b < (nb + 7) / 8 * 8; b++)
                if (map[b / 8] & (1u << (b % 8))) {
                        if (b >= nb)
                                return -EBADMSG;
                        n_stored++;
                }
        entry = map + (nb + 7) / 8;
        if ((size_t)(end - entry) < n_stored * ENTRY_SIZE)
                return -EBADMSG;
        frame = entry + n_stored * ENTRY_SIZE;
        for (size_t b = 0; b < nb; b++) {
                dd_blob_block *k = &blocks[b];
                uint32_t flen;

                *k = (dd_blob_block){ .digest = DD_DIGEST_NULL };
                if (!(map[b / 8] & (1u << (b % 8))))
                        continue;
                flen = get_le32(entry);
                k->zstd = flen & ENTRY_ZSTD;
                k->frame_len = flen & ~ENTRY_ZSTD;
                memcpy(k->digest.b, entry + 4, DD_DIGEST_SIZE);
                k->frame = frame;
                if (dd_digest_is_null(&k->digest) || k->frame_len > (size_t)(end - frame) ||
                    (!k->zstd && k->frame_len != block_len(info.plain_len, b)))
                        return -EBADMSG;
                frame += k->frame_len;
                entry += ENTRY_SIZE;
        }
        if (frame != end)
                return -EBADMSG;
        if (ret_info)
                *ret_info = info;
        return 0;
}

/* The plain bytes of one block, unchecked. */
static int block_plain(dd_blob_ctx *ctx, const dd_blob_block *k, uint8_t *out, size_t len)
{
        if (!k->frame) {
                memset(out, 0, len);
                return 0;
        }
        if (k->zstd) {
                ssize_t n = decompress(ctx, k->frame, k->frame_len, out, len);
                return n < 0 ? (int)n : 0;
        }
        if (k->frame_len != len)
                return -EBADMSG;
        memcpy(out, k->frame, len);
        return 0;
}

int dd_blob_decode_block(dd_blob_ctx *ctx, const dd_blob_block *k, void *out, size_t len)
{
        dd_digest d;
        int r;

        if (!ctx || !k || !out || len > DD_BLOCK_SIZE)
                return -EINVAL;
        r = block_plain(ctx, k, out, len);
        if (r < 0)
                return r;
        r = dd_block_digest(out, len, &d);
        if (r < 0)
                return r;
        return dd_digest_eq(&d, &k->digest) ? 0 : -EBADMSG;
}

ssize_t dd_blob_decode(dd_blob_ctx *ctx, const void *blob, size_t len, void *out, size_t out_size,
                       const dd_digest *expect)
{
        const uint8_t *payload = (const uint8_t *)blob + DD_BLOB_HEADER_SIZE;
        dd_blob_block blocks[DD_BLOB_PLAIN_MAX / DD_BLOCK_SIZE];
        uint8_t *o = out;
        dd_blob_info info;
        dd_digest d;
        int r;

        if (!ctx || !out)
                return -EINVAL;
        r = dd_blob_check(blob, len, &info);
        if (r < 0)
                return r;
        if (out_size < info.plain_len)
                return -ENOBUFS;
        if (info.flags == DD_BLOB_FLAG_BLOCKS) {
                size_t nb = dd_block_count(info.plain_len);

                r = dd_blob_blocks(blob, len, blocks, ELEMENTSOF(blocks), NULL);
                if (r < 0)
                        return r;
                for (size_t b = 0; b < nb; b++) {
                        size_t bl = block_len(info.plain_len, b);

                        r = expect ? dd_blob_decode_block(ctx, &blocks[b], o + b * DD_BLOCK_SIZE, bl)
                                   : block_plain(ctx, &blocks[b], o + b * DD_BLOCK_SIZE, bl);
                        if (r < 0)
                                return r;
                }
                if (expect) {
                        dd_digest digests[ELEMENTSOF(blocks)];
                        for (size_t b = 0; b < nb; b++)
                                digests[b] = blocks[b].digest;
                        r = dd_chunk_digest_combine(digests, info.plain_len, &d);
                        if (r < 0)
                                return r;
                        if (!dd_digest_eq(&d, expect))
                                return -EBADMSG;
                }
                return (ssize_t)info.plain_len;
        }
        if (info.flags & DD_BLOB_FLAG_ZSTD) {
                ssize_t n = decompress(ctx, payload, len - DD_BLOB_HEADER_SIZE, o, info.plain_len);
                if (n < 0)
                        return n;
        } else
                memcpy(o, payload, info.plain_len);
        if (expect) {
                r = dd_chunk_digest(out, info.plain_len, &d);
                if (r < 0)
                        return r;
                if (!dd_digest_eq(&d, expect))
                        return -EBADMSG;
        }
        return (ssize_t)info.plain_len;
}
