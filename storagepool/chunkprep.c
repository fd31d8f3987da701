/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * chunkprep.c -- a chunk's digest and blob, alike for every pool that
 * shares chunks (storagepool/chunkprep.h).
 */
#include "storagepool/chunkprep.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

/* Marks the blocks of c that its pieces touch. */
static void mark_touched(const sp_chunk *c, bool *touched)
{
        size_t n = dd_block_count(c->length);

        for (size_t i = 0; i < n; i++)
                touched[i] = c->whole;
        for (size_t k = 0; !c->whole && k < c->n_pieces; k++) {
                uint64_t first = c->pieces[k].offset - c->offset;
                uint64_t last = first + c->pieces[k].length - 1;

                for (uint64_t b = first / DD_BLOCK_SIZE; b <= last / DD_BLOCK_SIZE; b++)
                        touched[b] = true;
        }
}

/* Copies the parts of c's pieces that fall into [at, at + len) of the chunk
 * from c->data into buf (which holds those len bytes). */
static void overlay_pieces(const sp_chunk *c, uint64_t at, size_t len, uint8_t *buf)
{
        for (size_t i = 0; i < c->n_pieces; i++) {
                uint64_t s = MAX(c->pieces[i].offset - c->offset, at);
                uint64_t e = MIN(c->pieces[i].offset - c->offset + c->pieces[i].length, at + len);

                if (s < e)
                        memcpy(buf + (s - at), c->data + s, e - s);
        }
}

/* Marks block b touched; a block no piece touched is undefined in c->data
 * (sp_chunk.data) and is zeroed first. */
static void touch_block(sp_chunk *c, bool *touched, size_t b)
{
        if (!touched[b])
                memset(c->data + b * DD_BLOCK_SIZE, 0, MIN(DD_BLOCK_SIZE, c->length - b * DD_BLOCK_SIZE));
        touched[b] = true;
}

/* For a partly read chunk of an incremental whose parent has data there:
 * makes c->data hold the new bytes of every block the pieces touch (the
 * parent's block with the pieces on top), and fills carry[] with the
 * parent's stored blocks that nothing touched, to be carried over without
 * decoding them. The parent's block digests are checked against its chunk
 * digest; every block decoded is checked against its own. */
static int patch_from_parent(const sp_chunk_parent *p, sp_chunk *c, bool *touched, dd_blob_block *carry)
{
        dd_blob_block pb[SP_CHUNK_SIZE_MAX / DD_BLOCK_SIZE];
        dd_digest pdig[ELEMENTSOF(pb)], pd, check;
        size_t nb = dd_block_count(c->length), pnb;
        uint8_t *aux, *tmp;
        uint32_t plen;
        ssize_t n;
        int r;

        if (c->whole || !p || !p->idx || c->index >= p->count)
                return 0;
        r = dd_index_get(p->idx, c->index, &pd);
        if (r < 0)
                return r;
        if (dd_digest_is_null(&pd))
                return 0; /* the parent had zeros there: the zero-filled buffer is right */
        aux = sp_chunk_aux(c);
        if (!aux)
                return -ENOMEM;
        tmp = aux + c->aux_size - DD_BLOCK_SIZE; /* a block's room after the blob's */
        plen = dd_chunk_length(dd_index_get_header(p->idx)->disk_size, p->chunk_size, c->index);
        pnb = dd_block_count(plen);
        n = p->load(p->userdata, &pd, aux, c->aux_size - DD_BLOCK_SIZE);
        if (n < 0)
                return (int)n;
        if (pnb < 2) {
                /* A one-block chunk (the disk's short end): decode it whole. */
                n = dd_blob_decode(c->ctx, aux, (size_t)n, tmp, plen, &pd);
                if (n < 0)
                        return n == -ENOBUFS ? -EBADMSG : (int)n;
                overlay_pieces(c, 0, plen, tmp);
                for (size_t b = 0; b < nb; b++)
                        touch_block(c, touched, b);
                memcpy(c->data, tmp, MIN(plen, c->length));
                return 0;
        }
        r = dd_blob_blocks(aux, (size_t)n, pb, ELEMENTSOF(pb), NULL);
        if (r < 0)
                return r == -EMEDIUMTYPE ? -EBADMSG : r;
        for (size_t b = 0; b < pnb; b++)
                pdig[b] = pb[b].digest;
        r = dd_chunk_digest_combine(pdig, plen, &check);
        if (r < 0)
                return r;
        if (!dd_digest_eq(&check, &pd))
                return -EBADMSG;
        for (size_t b = 0; b < nb && b < pnb; b++) {
                uint64_t at = (uint64_t)b * DD_BLOCK_SIZE;
                size_t pbl = MIN(DD_BLOCK_SIZE, plen - at);

                if (!touched[b] && pbl == MIN(DD_BLOCK_SIZE, c->length - at)) {
                        carry[b] = pb[b]; /* unchanged: its frame goes over as it is */
                        continue;
                }
                touch_block(c, touched, b);
                if (!pb[b].frame)
                        continue; /* zeros in the parent: c->data is right */
                r = dd_blob_decode_block(c->ctx, &pb[b], tmp, pbl);
                if (r < 0)
                        return r;
                overlay_pieces(c, at, pbl, tmp);
                memcpy(c->data + at, tmp, pbl);
        }
        for (size_t b = pnb; b < nb; b++)
                touch_block(c, touched, b); /* the disk grew: past the parent's end */
        return 0;
}

int sp_chunk_digest(sp_chunk *c, const sp_chunk_parent *parent, sp_chunk_carry *carry)
{
        bool touched[ELEMENTSOF(c->blocks)];
        size_t nb = dd_block_count(c->length);
        int r;

        if (c->length > SP_CHUNK_SIZE_MAX)
                return -EINVAL;
        c->bytes_new = c->bytes_stored = 0;
        memset(carry->v, 0, nb * sizeof(*carry->v));
        mark_touched(c, touched);
        r = patch_from_parent(parent, c, touched, carry->v);
        if (r < 0)
                return r;
        /* Only touched blocks are hashed: the others are carried over from
         * the parent (their digests checked with it) or zeros never read. */
        for (size_t b = 0; b < nb; b++) {
                if (!touched[b]) {
                        c->blocks[b] = carry->v[b].digest;
                        continue;
                }
                r = dd_block_digest(c->data + b * DD_BLOCK_SIZE, MIN(DD_BLOCK_SIZE, c->length - b * DD_BLOCK_SIZE),
                                    &c->blocks[b]);
                if (r < 0)
                        return r;
        }
        return dd_chunk_digest_combine(c->blocks, c->length, &c->digest);
}

ssize_t sp_chunk_encode(sp_chunk *c, int compression, sp_chunk_carry *carry)
{
        size_t nb = dd_block_count(c->length);

        if (nb < 2)
                return dd_blob_encode(c->ctx, compression, c->data, c->length, c->scratch, c->scratch_size);
        for (size_t b = 0; b < nb; b++)
                carry->v[b].digest = c->blocks[b];
        return dd_blob_build(c->ctx, compression, c->data, c->length, carry->v, c->scratch, c->scratch_size);
}

int sp_chunk_decode(sp_chunk *c, const dd_digest *d, const uint8_t *blob, size_t n, uint8_t *out, uint32_t len)
{
        ssize_t k = dd_blob_decode(c->ctx, blob, n, out, len, d);

        if (k == -ENOBUFS)
                return -EBADMSG;
        if (k < 0)
                return (int)k;
        return (uint32_t)k == len ? 0 : -EBADMSG;
}

int sp_disk_index_commit(sp_disk_index *x, const sp_chunk *c)
{
        int r = dd_index_writer_append(x->iw, &c->digest);

        if (r < 0)
                return r;
        x->bytes_new += c->bytes_new;
        if (!dd_digest_is_null(&c->digest))
                x->bytes_data += c->length;
        return 0;
}

int sp_disk_index_inherited(sp_disk_index *x, uint64_t index, dd_digest *ret)
{
        *ret = DD_DIGEST_NULL;
        if (!x->parent || index >= x->parent_count)
                return 0;
        return dd_index_get(x->parent, index, ret);
}

int sp_disk_index_skip(sp_disk_index *x, const sp_disk_writer *dw, uint64_t index, const dd_digest *d)
{
        if (!dd_digest_is_null(d))
                x->bytes_data += dd_chunk_length(dw->size, dw->chunk_size, index);
        return dd_index_writer_append(x->iw, d);
}

int sp_index_reader_new(sp_pool *p, const dd_manifest_disk *md, dd_index *idx, sp_disk_reader **ret)
{
        sp_index_reader *rd = calloc(1, sizeof(*rd));

        if (!rd) {
                dd_index_free(idx);
                return -ENOMEM;
        }
        rd->base = (sp_disk_reader){ .pool = p, .size = md->size, .chunk_size = md->chunk_size };
        rd->idx = idx;
        *ret = &rd->base;
        return 0;
}

int sp_index_reader_lookup(sp_disk_reader *r, sp_chunk *c, bool *ret_zero)
{
        sp_index_reader *rd = container_of(r, sp_index_reader, base);
        int k = dd_index_get(rd->idx, c->index, &c->digest);

        if (k < 0)
                return k;
        *ret_zero = dd_digest_is_null(&c->digest);
        if (*ret_zero)
                memset(c->data, 0, c->length);
        return !*ret_zero;
}

void sp_index_reader_free(sp_disk_reader *r)
{
        sp_index_reader *rd = container_of(r, sp_index_reader, base);

        dd_index_free(rd->idx);
        free(rd);
}
