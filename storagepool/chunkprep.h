/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * chunkprep.h -- what the pools that share chunks by digest (the dedup pool
 * on a file system, the object pool) do alike with a chunk before they
 * store it: patch a partly read chunk of an incremental onto its parent's,
 * hash the blocks that changed, and build the blob (carrying the parent's
 * untouched blocks over without decoding them); and, when reading, decode
 * a blob checked against its digest.
 *
 * DESIGN: the caller loads blobs (a file, an object) through a callback;
 * everything else is here. Runs on the pipeline's worker threads.
 */
#ifndef SP_CHUNKPREP_H
#define SP_CHUNKPREP_H

#include <stdint.h>
#include <sys/types.h>

#include "dedup/blob.h"
#include "dedup/index.h"
#include "storagepool/sp.h"

/* Reads the stored blob of digest d into buf (at most size bytes): its
 * length, -ENODATA when it is missing, -EBADMSG when it is larger than size. */
typedef ssize_t (*sp_blob_load_fn)(void *userdata, const dd_digest *d, uint8_t *buf, size_t size);

/* The parent restore point's index of the disk, for incrementals. */
typedef struct sp_chunk_parent {
        dd_index *idx; /* NULL: no parent */
        uint64_t count;
        uint32_t chunk_size;
        sp_blob_load_fn load;
        void *userdata;
} sp_chunk_parent;

/* The parent's blocks a chunk carries over, filled by sp_chunk_digest and
 * used by sp_chunk_encode. */
typedef struct sp_chunk_carry {
        dd_blob_block v[SP_CHUNK_SIZE_MAX / DD_BLOCK_SIZE];
} sp_chunk_carry;

/* Sets c->digest (null for an all-zero chunk) and c->blocks, patching a
 * partly read chunk onto the parent's first (every parent block checked). */
int sp_chunk_digest(sp_chunk *c, const sp_chunk_parent *parent, sp_chunk_carry *carry);

/* The blob of c (after sp_chunk_digest) in c->scratch; its length. */
ssize_t sp_chunk_encode(sp_chunk *c, int compression, sp_chunk_carry *carry);

/* Decodes the blob (n bytes) of digest d into out, exactly len plain bytes,
 * checked against d: -EBADMSG when it does not match. */
int sp_chunk_decode(sp_chunk *c, const dd_digest *d, const uint8_t *blob, size_t n, uint8_t *out, uint32_t len);

/* A disk's fixed index as a dedup-style pool writes it, with the parent's
 * index an incremental inherits unread chunks from, and the counts the
 * manifest records. */
typedef struct sp_disk_index {
        dd_index_writer *iw;
        dd_index *parent; /* NULL: none */
        uint64_t parent_count;
        uint64_t bytes_new, bytes_data;
} sp_disk_index;

/* chunk_commit: appends the prepared chunk's digest and counts it. */
int sp_disk_index_commit(sp_disk_index *x, const sp_chunk *c);
/* chunk_skip, first half: the digest the chunk inherits from the parent
 * (null when none: a zero chunk). */
int sp_disk_index_inherited(sp_disk_index *x, uint64_t index, dd_digest *ret);
/* chunk_skip, second half: appends it, counting what it holds. */
int sp_disk_index_skip(sp_disk_index *x, const sp_disk_writer *dw, uint64_t index, const dd_digest *d);

/* A reader of a disk by its fixed index (dedup and object pools). */
typedef struct sp_index_reader {
        sp_disk_reader base;
        dd_index *idx;
} sp_index_reader;

/* Takes idx over (freed on failure too). */
int sp_index_reader_new(sp_pool *p, const dd_manifest_disk *md, dd_index *idx, sp_disk_reader **ret);
/* The digest of chunk c->index into c->digest: 0 for a zero chunk (c->data
 * zero-filled, *ret_zero set), 1 when its blob is to be loaded. */
int sp_index_reader_lookup(sp_disk_reader *r, sp_chunk *c, bool *ret_zero);
void sp_index_reader_free(sp_disk_reader *r);

#endif
