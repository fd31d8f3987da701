/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sp.h -- the storage pool interface: one vtable per pool type (dedup,
 * standard; object and tape later), capability bits, and the wrappers every
 * caller uses.
 *
 * DESIGN: a restore point is written through an sp_writer: one
 * sp_disk_writer per disk, fed chunk by chunk by the pipeline
 * (storagepool/pipeline.h). chunk_prepare runs on a worker thread, for
 * several chunks at once; chunk_commit and chunk_skip run on the caller's
 * thread, strictly in chunk order, once per chunk of the disk. A restore
 * point becomes visible only in commit, when its manifest is written; until
 * then abort (or a crash) leaves nothing a reader can see, and gc removes
 * what was left behind.
 */
#ifndef SP_H
#define SP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dedup/blob.h"
#include "dedup/digest.h"
#include "dedup/extent.h"
#include "dedup/manifest.h"

#define SP_CAP_RANDOM_READ 0x01u /* a chunk of any restore point can be read at any time */
#define SP_CAP_DEDUP 0x02u       /* chunks are shared between restore points */
#define SP_CAP_APPEND_ONLY 0x04u /* restore points are written sequentially (tape) */

#define SP_POOL_FILE "pool.json"
#define SP_POOL_FORMAT "vbak-pool"
#define SP_POOL_VERSION 1
#define SP_CHUNK_SIZE_MIN (1u << 20)
#define SP_CHUNK_SIZE_MAX (4u << 20)
#define SP_CHUNK_SIZE_DEFAULT (1u << 20) /* why: docs/formats.md, "Chunk size" */

typedef enum sp_fsync {
        SP_FSYNC_ALWAYS, /* every blob and index is fsync'd before it is renamed; the pool before a manifest */
        SP_FSYNC_NONE,   /* nothing is fsync'd: a crash may lose or damage recent data (tests, scratch pools) */
        _SP_FSYNC_MAX,
        _SP_FSYNC_INVALID = -1,
} sp_fsync;

const char *sp_fsync_to_string(sp_fsync f);
sp_fsync sp_fsync_from_string(const char *s);

typedef struct sp_options {
        const char *type;    /* driver name: "dedup", "standard", "object", "tape" */
        uint32_t chunk_size; /* SP_CHUNK_SIZE_MIN..MAX, a power of two */
        int compression;     /* 0 none, 1-19 zstd level (blob.h) */
        sp_fsync fsync;
        /* object pools: the bucket (created when missing), a key prefix
         * (NULL: none), the access key id and the file holding the secret */
        const char *endpoint, *bucket, *region, *prefix, *access_key, *secret_key_file;
        const char *secret_key; /* instead of secret_key_file: kept by the caller (vbakd's credential store) */
        unsigned requests;      /* requests in flight; 0: the default */
        uint64_t part_size;     /* multipart threshold and part size; 0: the default */
        uint64_t rate;          /* bytes/s to and from the store, all requests together; 0: unlimited */
        /* tape pools: the drive (/dev/nstN), or a folder of file-backed
         * volumes; the media pool's volume labels, in the order they are
         * used; a file-backed volume's capacity in bytes */
        const char *device;
        const char *const *volumes;
        size_t n_volumes;
        uint64_t volume_size;
} sp_options;

#define SP_OPTIONS_DEFAULT                                                                                             \
        ((sp_options){ .type = "dedup",                                                                                \
                       .chunk_size = SP_CHUNK_SIZE_DEFAULT,                                                            \
                       .compression = DD_COMPRESSION_FAST,                                                             \
                       .fsync = SP_FSYNC_ALWAYS })

struct sp_driver;

/* An open pool. Drivers embed it first in their own struct. */
typedef struct sp_pool {
        const struct sp_driver *drv;
        char *path;
        int dirfd; /* the pool's root folder */
        char uuid[37];
        sp_options opts; /* opts.type points at drv->name */
} sp_pool;

typedef struct sp_writer {
        sp_pool *pool;
        dd_manifest *m; /* filled as the restore point is written */
} sp_writer;

typedef struct sp_disk_writer {
        sp_writer *w;
        uint64_t size;
        uint32_t chunk_size;
        uint64_t bytes_read; /* set by the caller before disk_end: bytes read from the source */
} sp_disk_writer;

typedef struct sp_disk_reader {
        sp_pool *pool;
        uint64_t size;
        uint32_t chunk_size;
} sp_disk_reader;

/* One chunk of a disk on its way into (or out of) a pool. The pipeline owns
 * the buffers; a slot is used by one thread at a time. */
typedef struct sp_chunk {
        /* set by the pipeline */
        uint64_t index;
        uint64_t offset;         /* index * chunk size */
        uint32_t length;         /* the last chunk of a disk may be short */
        uint8_t *data;           /* length bytes: in each 64 KiB block (DD_BLOCK_SIZE) a piece touches,
                                  * the bytes not read are zero; blocks no piece touches are undefined */
        const dd_extent *pieces; /* what was read from the source (absolute offsets, sorted) */
        size_t n_pieces;
        bool whole;       /* the pieces cover the whole chunk */
        dd_blob_ctx *ctx; /* codec state of this slot */
        uint8_t *scratch; /* dd_blob_bound(chunk size) bytes */
        size_t scratch_size;
        uint8_t *aux; /* aux_size bytes (at least a chunk), from sp_chunk_aux() */
        uint32_t aux_size;
        /* set by chunk_prepare */
        dd_digest digest;                                    /* dedup pools: the chunk's digest, null when all zero */
        dd_digest blocks[SP_CHUNK_SIZE_MAX / DD_BLOCK_SIZE]; /* dedup pools: its block digests */
        uint64_t bytes_new;                                  /* plain bytes newly stored */
        uint64_t bytes_stored;                               /* bytes written to the pool */
        void *driver_data;                                   /* driver's own result, consumed by chunk_commit */
} sp_chunk;

/* disk_end's last step for pools with a fixed index per disk: adds the
 * disk dw wrote to the manifest, its index named <disk>.fidx. */
int sp_manifest_add_index_disk(sp_disk_writer *dw, const char *disk, const dd_digest *index_checksum,
                               uint64_t bytes_new, uint64_t bytes_data);

/* A second chunk-sized buffer for drivers (allocated on first use). */
uint8_t *sp_chunk_aux(sp_chunk *c);

typedef struct sp_problem {
        const char *kind;                  /* "manifest-corrupt", dedup: "chunk-corrupt", "chunk-missing",
                                            * "index-corrupt"; standard: "stream-corrupt", "stream-missing",
                                            * "record-corrupt", "parent-missing" */
        const char *object;                /* the chunk digest, or the file's path in the pool */
        const char *detail;                /* what is wrong, in words */
        const char *const *restore_points; /* ids of the restore points it breaks */
        size_t n_restore_points;
} sp_problem;

typedef void (*sp_problem_fn)(void *userdata, const sp_problem *p);
typedef void (*sp_progress_fn)(void *userdata, uint64_t done, uint64_t total);

typedef struct sp_verify_opts {
        const char *const *ids; /* restore points to verify; NULL: all */
        size_t n_ids;
        unsigned sample_percent; /* 1-100: check this share of the chunks, chosen at random */
        unsigned threads;        /* parallel readers, 1-64 */
        sp_problem_fn problem;
        sp_progress_fn progress;
        void *userdata;
} sp_verify_opts;

typedef struct sp_verify_result {
        uint64_t restore_points;
        uint64_t chunks_checked;
        uint64_t bytes_checked;
        uint64_t problems;
        uint64_t broken_restore_points;
} sp_verify_result;

typedef struct sp_gc_opts {
        uint64_t grace_seconds; /* chunks younger than this are kept even when unreferenced */
        bool dry_run;
} sp_gc_opts;

typedef struct sp_gc_result {
        uint64_t chunks_marked;
        uint64_t chunks_kept;
        uint64_t chunks_removed;
        uint64_t bytes_removed;
        uint64_t partial_removed; /* restore points that were never committed */
        uint64_t tmp_removed;
} sp_gc_result;

typedef struct sp_stats {
        uint64_t restore_points;
        uint64_t chunks;        /* stored chunks (dedup) or records (standard) */
        uint64_t logical_bytes; /* sum of the disks' virtual sizes */
        uint64_t data_bytes;    /* sum of the non-zero data the restore points hold */
        uint64_t unique_bytes;  /* plain bytes stored once */
        uint64_t stored_bytes;  /* bytes on the pool's storage */
} sp_stats;

/* The driver vtable. Fields marked MUST are never NULL; MAY ones can be, and
 * the wrappers below answer -EOPNOTSUPP. Every function returns 0 (or a
 * count) on success and -errno on failure. */
typedef struct sp_driver {
        const char *name;
        unsigned caps;

        /* MUST: create a new pool at path (an empty or missing folder). */
        int (*create)(const char *path, const sp_options *o);
        /* MUST: open an existing pool (its pool.json already read into base). */
        int (*open)(sp_pool *base, sp_pool **ret);
        /* MUST: free the pool; accepts what open returned. */
        void (*close)(sp_pool *p);

        /* MUST: committed restore points (of one VM name, or all), oldest first.
         * Damaged manifests are reported through problem (may be NULL) and skipped. */
        int (*list)(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret,
                    size_t *ret_n);

        /* MUST: start a restore point; tmpl gives the VM identity, type, parent
         * id (already resolved) and the rest of the manifest but id and disks. */
        int (*begin)(sp_pool *p, const dd_manifest *tmpl, sp_writer **ret);
        /* MUST: start a disk of the restore point. */
        int (*disk_begin)(sp_writer *w, const char *disk, uint64_t size, sp_disk_writer **ret);
        /* MUST: on a worker thread: digest, compress, store (thread-safe). */
        int (*chunk_prepare)(sp_disk_writer *dw, sp_chunk *c);
        /* MUST: on the caller's thread, in chunk order: record a prepared chunk. */
        int (*chunk_commit)(sp_disk_writer *dw, sp_chunk *c);
        /* MUST: on the caller's thread, in chunk order: a chunk nothing was read
         * from (unallocated in a full backup, unchanged in an incremental). */
        int (*chunk_skip)(sp_disk_writer *dw, uint64_t index);
        /* MUST: finish the disk's files and add its entry to w->m (the manifest
         * has no entry for a disk before that); frees dw, also on failure. */
        int (*disk_end)(sp_disk_writer *dw);
        /* MUST: drop an unfinished disk, including chunks prepared but never
         * committed (the pipeline drops its slots after an error); frees dw. */
        void (*disk_abort)(sp_disk_writer *dw);
        /* MUST: make the restore point exist (write its manifest); frees w, also
         * on failure. ret (may be NULL) receives a copy of the manifest. */
        int (*commit)(sp_writer *w, dd_manifest **ret);
        /* MUST: drop the restore point; frees w. */
        void (*abort)(sp_writer *w);

        /* MUST: open a disk of a committed restore point for reading. */
        int (*reader_open)(sp_pool *p, const dd_manifest *m, const char *disk, sp_disk_reader **ret);
        /* MUST: thread-safe: the plain bytes of chunk c->index into c->data
         * (c->length bytes), every byte checked against its digest; *ret_zero
         * tells that the chunk is all zero (c->data is then zero-filled).
         * -EBADMSG for damaged data, -ENODATA for a missing chunk. */
        int (*reader_read)(sp_disk_reader *r, sp_chunk *c, bool *ret_zero);
        /* MUST */
        void (*reader_close)(sp_disk_reader *r);

        /* MAY: check stored data of the restore points (o->ids, or all) and
         * of everything they depend on; problems through o->problem. Returns
         * the number of problems; -ENOENT for an id that is not there. */
        int (*verify)(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret);
        /* MAY: remove what no restore point references (and unfinished leftovers). */
        int (*gc)(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret);
        /* MUST: delete a committed restore point (its manifest goes first). */
        int (*remove)(sp_pool *p, const dd_manifest *m);
        /* MAY */
        int (*stats)(sp_pool *p, sp_stats *ret);
} sp_driver;

extern const sp_driver sp_driver_dedup;
extern const sp_driver sp_driver_standard;
extern const sp_driver sp_driver_object;
extern const sp_driver sp_driver_tape;

/* Looks a driver up by name; NULL when unknown. */
const sp_driver *sp_driver_find(const char *name);

/* Creates a pool of o->type at path. */
int sp_pool_create(const char *path, const sp_options *o);
/* Opens the pool at path, whatever its type. -ENOENT when there is no
 * pool.json, -EBADMSG when it is damaged, -EPROTONOSUPPORT for an unknown
 * version or type. */
int sp_pool_open(const char *path, sp_pool **ret);
sp_pool *sp_pool_close(sp_pool *p);
static inline void sp_pool_closep(sp_pool **p)
{
        sp_pool_close(*p);
}

int sp_pool_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret, size_t *ret_n);
void sp_manifests_free(dd_manifest **v, size_t n);

/* A committed restore point by id, or "latest" (of vm; vm may be NULL then
 * for the newest of the pool). -ENOENT when there is none. */
int sp_pool_find(sp_pool *p, const char *id, const char *vm, dd_manifest **ret);

int sp_pool_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret);
int sp_pool_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret);
int sp_pool_remove(sp_pool *p, const dd_manifest *m);
int sp_pool_stats(sp_pool *p, sp_stats *ret);

static inline bool sp_pool_has_cap(const sp_pool *p, unsigned cap)
{
        return (p->drv->caps & cap) == cap;
}

#endif
