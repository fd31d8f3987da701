/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dedup.c -- the dedup pool on a local file system: content-addressed chunk
 * blobs shared by every restore point, one fixed index per disk.
 *
 * DESIGN
 *
 * Chunks live at chunks/<2 hex>/<2 hex>/<digest>. A new blob is written to
 * tmp/ and later renamed into place with RENAME_NOREPLACE, so an existing
 * digest is never rewritten. New blobs of a disk are published in batches:
 * with fsync=always one syncfs() makes a whole batch durable before any of
 * it is renamed, so a name under chunks/ always holds complete bytes, at the
 * cost of one flush per batch instead of one per chunk; a flusher thread per
 * disk does that while the next chunks are prepared. Until it is published
 * a blob is known only to its writer (the pending lists), and the index that
 * references it is not committed. The zero chunk is never stored.
 *
 * Garbage collection and concurrent backups (mtime protocol). Every chunk a
 * writer relies on gets its mtime set to "now": a chunk it stores is new,
 * a chunk it finds already stored (dedup hit) or inherits from its parent
 * is touched with utimensat(). gc:
 *   1. takes locks/gc.lock and touches it: T_gc, in the file system's clock;
 *   2. reads the start of every running writer (the mtime of its lock file,
 *      which exists and is held from before the writer looks at any chunk):
 *      T_w = the oldest;
 *   3. marks: touches every chunk referenced by a committed index (an index
 *      it cannot read stops gc: it could not know what that one needs);
 *   4. sweeps chunks whose mtime is older than cutoff = min(T_gc, T_w) -
 *      grace. A marked chunk, and any chunk a writer touched or stored
 *      since it started, is at least as new as the cutoff.
 * The sweep of one chunk is rename to tmp/, check the mtime again, unlink:
 * a writer that touched the chunk before the rename is seen by the second
 * check (the chunk is put back), one that comes after finds no chunk and
 * stores it again (it has the data). Either way nothing it counts on goes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include "daemon/util.h"
#include "dedup/dset.h"
#include "dedup/index.h"
#include "storagepool/chunkprep.h"
#include "storagepool/fs.h"
#include "storagepool/sp.h"

#define CHUNK_PATH_MAX (sizeof("chunks/00/00/") + DD_DIGEST_HEX_SIZE)
#define PUBLISH_BATCH 64 /* new blobs made durable and renamed together */
#define NAME_MAX_LEN 256

typedef struct dedup_pool {
        sp_pool base;
} dedup_pool;

typedef struct dedup_writer {
        sp_writer base;
        sp_fs_rp rp;
        dd_manifest *parent; /* for incrementals */
} dedup_writer;

typedef struct pending_blob {
        dd_digest digest;
        char *tmp; /* its temp file, relative to the pool root */
} pending_blob;

typedef struct dedup_disk_writer {
        sp_disk_writer base;
        char *name;
        sp_disk_index x; /* the index, and the parent's of this disk when it has one */
        /* New blobs wait in pending (filled by prepare, on several threads),
         * then in flushing while the flusher thread makes them durable and
         * renames them into place (fsync=always), so that no prepare waits
         * for the flush. */
        pthread_mutex_t lock; /* guards everything below */
        pthread_cond_t cond;
        pending_blob pending[PUBLISH_BATCH];
        size_t n_pending;
        pending_blob flushing[PUBLISH_BATCH];
        size_t n_flushing;
        int flush_error;
        bool flusher_running, stop;
        pthread_t flusher;
} dedup_disk_writer;

static void chunk_path(const dd_digest *d, char out[CHUNK_PATH_MAX])
{
        char hex[DD_DIGEST_HEX_SIZE];

        dd_digest_to_hex(d, hex);
        snprintf(out, CHUNK_PATH_MAX, "chunks/%.2s/%.2s/%s", hex, hex + 2, hex);
}

/* 1 when the chunk exists (and now carries a fresh mtime), 0 when not. */
static int chunk_touch(sp_pool *p, const dd_digest *d)
{
        char path[CHUNK_PATH_MAX];

        chunk_path(d, path);
        if (utimensat(p->dirfd, path, NULL, 0) == 0)
                return 1;
        return errno == ENOENT ? 0 : -errno;
}

/* Reads a chunk's blob into buf; -ENODATA when it is missing. */
static ssize_t chunk_load(sp_pool *p, const dd_digest *d, uint8_t *buf, size_t size)
{
        char path[CHUNK_PATH_MAX];
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        chunk_path(d, path);
        fd = openat(p->dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ENODATA : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size > size)
                return -EBADMSG;
        r = vb_pread_all(fd, buf, (size_t)st.st_size, 0);
        if (r < 0)
                return r;
        return (ssize_t)st.st_size;
}

static ssize_t blob_load(void *userdata, const dd_digest *d, uint8_t *buf, size_t size)
{
        return chunk_load(userdata, d, buf, size);
}

/* Loads, checks and decodes chunk d into out (exactly len plain bytes). */
static int chunk_read(sp_pool *p, const dd_digest *d, sp_chunk *c, uint8_t *out, uint32_t len)
{
        ssize_t n = chunk_load(p, d, c->scratch, c->scratch_size);

        if (n < 0)
                return (int)n;
        return sp_chunk_decode(c, d, c->scratch, (size_t)n, out, len);
}

static int dedup_create(const char *path, const sp_options *o)
{
        return sp_fs_create(path, o);
}

static int dedup_open(sp_pool *base, sp_pool **ret)
{
        dedup_pool *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->base = *base;
        *ret = &p->base;
        return 0;
}

static void dedup_close(sp_pool *p)
{
        sp_fs_pool_done(p);
        free(container_of(p, dedup_pool, base));
}

static int dedup_begin(sp_pool *p, const dd_manifest *tmpl, sp_writer **ret)
{
        dedup_writer *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->rp.dirfd = w->rp.lock_fd = -1;
        w->base.pool = p;
        r = dd_manifest_copy(tmpl, &w->base.m);
        if (r < 0)
                goto fail;
        free(w->base.m->pool_type);
        w->base.m->pool_type = strdup(p->drv->name);
        if (!w->base.m->pool_type) {
                r = -ENOMEM;
                goto fail;
        }
        if (tmpl->parent) {
                r = sp_fs_find(p, tmpl, tmpl->parent, &w->parent);
                if (r < 0)
                        goto fail;
        }
        r = sp_fs_rp_begin(p, w->base.m, &w->rp);
        if (r < 0)
                goto fail;
        *ret = &w->base;
        return 0;
fail:
        dd_manifest_free(w->base.m);
        dd_manifest_free(w->parent);
        free(w);
        return r;
}

static void writer_free(dedup_writer *w)
{
        dd_manifest_free(w->base.m);
        dd_manifest_free(w->parent);
        free(w);
}

static int dedup_disk_begin(sp_writer *base, const char *disk, uint64_t size, sp_disk_writer **ret)
{
        dedup_writer *w = container_of(base, dedup_writer, base);
        sp_pool *p = base->pool;
        dedup_disk_writer *dw;
        _cleanup_free_ char *index = NULL;
        int r;

        if (!dd_disk_name_is_safe(disk))
                return -EINVAL;
        if (dd_manifest_find_disk(base->m, disk))
                return -EEXIST;
        if (asprintf(&index, "%s" DD_INDEX_SUFFIX, disk) < 0)
                return -ENOMEM;
        dw = calloc(1, sizeof(*dw));
        if (!dw)
                return -ENOMEM;
        pthread_mutex_init(&dw->lock, NULL);
        pthread_cond_init(&dw->cond, NULL);
        dw->base = (sp_disk_writer){ .w = base, .size = size, .chunk_size = p->opts.chunk_size };
        dw->name = strdup(disk);
        if (!dw->name) {
                r = -ENOMEM;
                goto fail;
        }
        if (w->parent) {
                const dd_manifest_disk *pd = dd_manifest_find_disk(w->parent, disk);
                _cleanup_close_ int pdir = -1;

                if (pd) {
                        if (pd->chunk_size != p->opts.chunk_size) {
                                r = -EINVAL;
                                goto fail;
                        }
                        r = sp_fs_rp_open(p, w->parent, &pdir);
                        if (r >= 0)
                                r = dd_index_open_at(pdir, pd->index, &dw->x.parent);
                        if (r >= 0 && !dd_digest_eq(&dd_index_get_header(dw->x.parent)->checksum, &pd->index_checksum))
                                r = -EBADMSG;
                        if (r < 0)
                                goto fail;
                        dw->x.parent_count = dd_index_get_header(dw->x.parent)->chunk_count;
                }
        }
        r = dd_index_writer_new(w->rp.dirfd, index, size, p->opts.chunk_size, &dw->x.iw);
        if (r < 0)
                goto fail;
        *ret = &dw->base;
        return 0;
fail:
        dd_index_free(dw->x.parent);
        pthread_cond_destroy(&dw->cond);
        pthread_mutex_destroy(&dw->lock);
        free(dw->name);
        free(dw);
        return r;
}

/* Makes a batch of new blobs durable (one syncfs for all) and renames them
 * into place. Frees the batch's names. */
static int publish(sp_pool *p, pending_blob *v, size_t n)
{
        int r = 0;

        if (n > 0 && p->opts.fsync == SP_FSYNC_ALWAYS && syncfs(p->dirfd) < 0)
                r = -errno;
        for (size_t i = 0; i < n; i++) {
                char path[CHUNK_PATH_MAX];
                int k;

                if (r < 0) {
                        unlinkat(p->dirfd, v[i].tmp, 0);
                } else {
                        chunk_path(&v[i].digest, path);
                        k = sp_fs_publish(p, v[i].tmp, path);
                        if (k == 0) /* stored by another writer meanwhile: keep that one fresh */
                                k = chunk_touch(p, &v[i].digest) > 0 ? 0 : -ENODATA;
                        if (k < 0)
                                r = k;
                }
                free(v[i].tmp);
                v[i].tmp = NULL;
        }
        return r;
}

static void *flusher_main(void *userdata)
{
        dedup_disk_writer *dw = userdata;

        pthread_mutex_lock(&dw->lock);
        for (;;) {
                size_t n;
                int r;

                while (dw->n_flushing == 0 && !dw->stop)
                        pthread_cond_wait(&dw->cond, &dw->lock);
                if (dw->n_flushing == 0)
                        break;
                n = dw->n_flushing;
                pthread_mutex_unlock(&dw->lock);
                r = publish(dw->base.w->pool, dw->flushing, n); /* only this thread touches flushing now */
                pthread_mutex_lock(&dw->lock);
                if (r < 0 && dw->flush_error == 0)
                        dw->flush_error = r;
                dw->n_flushing = 0;
                pthread_cond_broadcast(&dw->cond);
        }
        pthread_mutex_unlock(&dw->lock);
        return NULL;
}

/* With the lock held: hands the pending batch to the flusher, after the
 * previous one is done (so at most two batches wait). */
static int hand_over_locked(dedup_disk_writer *dw)
{
        while (dw->n_flushing > 0)
                pthread_cond_wait(&dw->cond, &dw->lock);
        if (dw->n_pending == 0)
                return dw->flush_error;
        if (!dw->flusher_running) {
                int r = pthread_create(&dw->flusher, NULL, flusher_main, dw);
                if (r != 0)
                        return -r;
                dw->flusher_running = true;
        }
        memcpy(dw->flushing, dw->pending, dw->n_pending * sizeof(*dw->pending));
        dw->n_flushing = dw->n_pending;
        dw->n_pending = 0;
        pthread_cond_broadcast(&dw->cond);
        return dw->flush_error;
}

/* Publishes everything pending and waits for it (from the caller's thread). */
static int flush_pending(dedup_disk_writer *dw)
{
        int r;

        pthread_mutex_lock(&dw->lock);
        r = hand_over_locked(dw);
        while (dw->n_flushing > 0)
                pthread_cond_wait(&dw->cond, &dw->lock);
        if (r >= 0)
                r = dw->flush_error;
        pthread_mutex_unlock(&dw->lock);
        return r;
}

/* Adds a new blob's temp file to be published (at once with fsync=none, in
 * batches with fsync=always). 0 when added, 1 when the same digest was
 * already on its way. */
static int add_pending(dedup_disk_writer *dw, const dd_digest *d, char *tmp)
{
        sp_pool *p = dw->base.w->pool;
        pending_blob one = { *d, tmp };
        int r = 0;

        if (p->opts.fsync != SP_FSYNC_ALWAYS)
                return publish(p, &one, 1); /* nothing to wait for: name it now */
        pthread_mutex_lock(&dw->lock);
        while (dw->n_pending == PUBLISH_BATCH) /* full: being handed over */
                pthread_cond_wait(&dw->cond, &dw->lock);
        for (size_t i = 0; i < dw->n_pending + dw->n_flushing; i++) {
                const pending_blob *b = i < dw->n_pending ? &dw->pending[i] : &dw->flushing[i - dw->n_pending];
                if (dd_digest_eq(&b->digest, d)) {
                        pthread_mutex_unlock(&dw->lock);
                        unlinkat(p->dirfd, tmp, 0);
                        free(tmp);
                        return 1;
                }
        }
        dw->pending[dw->n_pending++] = one;
        if (dw->n_pending == PUBLISH_BATCH)
                r = hand_over_locked(dw);
        pthread_mutex_unlock(&dw->lock);
        return r;
}

static int dedup_chunk_prepare(sp_disk_writer *base, sp_chunk *c)
{
        dedup_disk_writer *dw = container_of(base, dedup_disk_writer, base);
        sp_pool *p = base->w->pool;
        sp_chunk_parent parent = { .idx = dw->x.parent,
                                   .count = dw->x.parent_count,
                                   .chunk_size = base->chunk_size,
                                   .load = blob_load,
                                   .userdata = p };
        sp_chunk_carry carry;
        char hex[DD_DIGEST_HEX_SIZE];
        char *tmp = NULL;
        ssize_t n;
        int r;

        r = sp_chunk_digest(c, &parent, &carry);
        if (r < 0)
                return r;
        if (dd_digest_is_null(&c->digest))
                return 0; /* a zero chunk is never stored */
        r = chunk_touch(p, &c->digest);
        if (r != 0)
                return r < 0 ? r : 0; /* stored already: dedup hit */
        n = sp_chunk_encode(c, p->opts.compression, &carry);
        if (n < 0)
                return (int)n;
        dd_digest_to_hex(&c->digest, hex);
        r = sp_fs_write_tmp(p, hex, c->scratch, (size_t)n, false, &tmp);
        if (r < 0)
                return r;
        r = add_pending(dw, &c->digest, tmp);
        if (r < 0)
                return r;
        if (r == 0) {
                c->bytes_new = c->length;
                c->bytes_stored = (uint64_t)n;
        }
        return 0;
}

static int dedup_chunk_commit(sp_disk_writer *base, sp_chunk *c)
{
        return sp_disk_index_commit(&container_of(base, dedup_disk_writer, base)->x, c);
}

static int dedup_chunk_skip(sp_disk_writer *base, uint64_t index)
{
        dedup_disk_writer *dw = container_of(base, dedup_disk_writer, base);
        dd_digest d;
        int r = sp_disk_index_inherited(&dw->x, index, &d);

        if (r < 0)
                return r;
        /* Inherited: it must outlive a gc that runs now (see DESIGN). */
        if (!dd_digest_is_null(&d)) {
                r = chunk_touch(base->w->pool, &d);
                if (r <= 0)
                        return r < 0 ? r : -ENODATA;
        }
        return sp_disk_index_skip(&dw->x, base, index, &d);
}

static void disk_writer_free(dedup_disk_writer *dw)
{
        if (dw->flusher_running) {
                pthread_mutex_lock(&dw->lock);
                dw->stop = true;
                pthread_cond_broadcast(&dw->cond);
                pthread_mutex_unlock(&dw->lock);
                pthread_join(dw->flusher, NULL);
        }
        for (size_t i = 0; i < dw->n_pending; i++) {
                unlinkat(dw->base.w->pool->dirfd, dw->pending[i].tmp, 0);
                free(dw->pending[i].tmp);
        }
        pthread_cond_destroy(&dw->cond);
        pthread_mutex_destroy(&dw->lock);
        dd_index_writer_free(dw->x.iw);
        free(dw->name);
        dd_index_free(dw->x.parent);
        free(dw);
}

static int dedup_disk_end(sp_disk_writer *base)
{
        dedup_disk_writer *dw = container_of(base, dedup_disk_writer, base);
        sp_pool *p = base->w->pool;
        dd_index_header h;
        int r;

        r = flush_pending(dw);
        if (r >= 0)
                r = dd_index_writer_finish(dw->x.iw, p->opts.fsync == SP_FSYNC_ALWAYS, &h);
        if (r >= 0)
                r = sp_manifest_add_index_disk(base, dw->name, &h.checksum, dw->x.bytes_new, dw->x.bytes_data);
        disk_writer_free(dw);
        return r;
}

static void dedup_disk_abort(sp_disk_writer *base)
{
        disk_writer_free(container_of(base, dedup_disk_writer, base));
}

static int dedup_commit(sp_writer *base, dd_manifest **ret)
{
        dedup_writer *w = container_of(base, dedup_writer, base);
        sp_pool *p = base->pool;
        int r;

        r = sp_fs_rp_commit(p, &w->rp, base->m);
        if (r >= 0 && ret)
                *ret = TAKE_PTR(base->m);
        writer_free(w);
        return r;
}

static void dedup_abort(sp_writer *base)
{
        dedup_writer *w = container_of(base, dedup_writer, base);

        sp_fs_rp_abort(base->pool, &w->rp);
        writer_free(w);
}

/* Opens and checks the index of one disk of a committed restore point. */
static int open_disk_index(sp_pool *p, const dd_manifest *m, const dd_manifest_disk *md, dd_index **ret)
{
        _cleanup_(dd_index_freep) dd_index *idx = NULL;
        _cleanup_close_ int dirfd = -1;
        const dd_index_header *h;
        int r;

        r = sp_fs_rp_open(p, m, &dirfd);
        if (r < 0)
                return r;
        r = dd_index_open_at(dirfd, md->index, &idx);
        if (r < 0)
                return r == -ENOENT ? -EBADMSG : r;
        h = dd_index_get_header(idx);
        if (h->disk_size != md->size || h->chunk_size != md->chunk_size ||
            !dd_digest_eq(&h->checksum, &md->index_checksum))
                return -EBADMSG;
        *ret = TAKE_PTR(idx);
        return 0;
}

static int dedup_reader_open(sp_pool *p, const dd_manifest *m, const char *disk, sp_disk_reader **ret)
{
        const dd_manifest_disk *md = dd_manifest_find_disk(m, disk);
        dd_index *idx;
        int r;

        if (!md)
                return -ENOENT;
        r = open_disk_index(p, m, md, &idx);
        return r < 0 ? r : sp_index_reader_new(p, md, idx, ret);
}

static int dedup_reader_read(sp_disk_reader *base, sp_chunk *c, bool *ret_zero)
{
        int r = sp_index_reader_lookup(base, c, ret_zero);

        return r <= 0 ? r : chunk_read(base->pool, &c->digest, c, c->data, c->length);
}

/* --- verify ------------------------------------------------------------ */

struct verify_job {
        sp_pool *p;
        const dd_digest *digests;
        size_t n;
        atomic_size_t next;
        atomic_uint_fast64_t bytes;
        atomic_uint_fast64_t done;
        int *status; /* per digest: 0 good, -ENODATA, -EBADMSG, ... */
        uint32_t max_plain;
};

static void *verify_thread(void *userdata)
{
        struct verify_job *job = userdata;
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        _cleanup_free_ uint8_t *scratch = malloc(dd_blob_bound(job->max_plain));
        _cleanup_free_ uint8_t *plain = malloc(job->max_plain);

        for (;;) {
                size_t i = atomic_fetch_add(&job->next, 1);
                ssize_t n;

                if (i >= job->n)
                        break;
                if (!ctx || !scratch || !plain) {
                        job->status[i] = -ENOMEM;
                        continue;
                }
                n = chunk_load(job->p, &job->digests[i], scratch, dd_blob_bound(job->max_plain));
                if (n >= 0) {
                        atomic_fetch_add(&job->bytes, (uint64_t)n);
                        n = dd_blob_decode(ctx, scratch, (size_t)n, plain, job->max_plain, &job->digests[i]);
                }
                job->status[i] = n < 0 ? (n == -ENOBUFS ? -EBADMSG : (int)n) : 0;
                atomic_fetch_add(&job->done, 1);
        }
        return NULL;
}

struct bad_chunk {
        const char **rps;
        size_t n_rps;
        char where[160];
};

static int add_rp(struct bad_chunk *b, const char *id)
{
        const char **v;

        for (size_t i = 0; i < b->n_rps; i++)
                if (streq(b->rps[i], id))
                        return 0;
        v = realloc(b->rps, (b->n_rps + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        b->rps = v;
        b->rps[b->n_rps++] = id;
        return 0;
}

static bool selected(const sp_verify_opts *o, const char *id)
{
        if (!o->ids)
                return true;
        for (size_t i = 0; i < o->n_ids; i++)
                if (streq(o->ids[i], id))
                        return true;
        return false;
}

struct problem_counter {
        const sp_verify_opts *o;
        uint64_t n;
};

static void count_problem(void *userdata, const sp_problem *pr)
{
        struct problem_counter *pc = userdata;

        pc->n++;
        if (pc->o->problem)
                pc->o->problem(pc->o->userdata, pr);
}

static int dedup_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret)
{
        struct problem_counter pc = { .o = o };
        _cleanup_(dd_dset_freep) dd_dset *all = dd_dset_new();
        _cleanup_(dd_dset_freep) dd_dset *bad = dd_dset_new();
        _cleanup_free_ dd_digest *digests = NULL, *sample = NULL;
        _cleanup_free_ int *status = NULL;
        _cleanup_free_ bool *rp_broken = NULL;
        dd_manifest **v = NULL;
        size_t n = 0, n_digests = 0, n_sample = 0;
        struct bad_chunk *bads = NULL;
        dd_digest *bad_digests = NULL;
        size_t n_bad = 0;
        sp_verify_result res = { 0 };
        uint64_t salt;
        unsigned threads = o->threads ? MIN(o->threads, 64u) : 4;
        int r;

        if (!all || !bad)
                return -ENOMEM;
        r = sp_fs_list(p, NULL, count_problem, &pc, &v, &n);
        if (r < 0)
                return r;
        rp_broken = calloc(MAX(n, 1), sizeof(bool));
        if (!rp_broken) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t k = 0; k < o->n_ids && o->ids; k++) {
                bool found = false;
                for (size_t i = 0; i < n; i++)
                        found = found || streq(v[i]->id, o->ids[k]);
                if (!found) {
                        r = -ENOENT;
                        goto out;
                }
        }

        /* Every index of the selected restore points, and the chunks they need. */
        for (size_t i = 0; i < n; i++) {
                if (!selected(o, v[i]->id))
                        continue;
                res.restore_points++;
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        _cleanup_(dd_index_freep) dd_index *idx = NULL;
                        const dd_manifest_disk *md = &v[i]->disks[k];
                        _cleanup_free_ char *rp_path = NULL, *what = NULL;
                        const char *ids[1] = { v[i]->id };

                        r = open_disk_index(p, v[i], md, &idx);
                        if (r < 0) {
                                sp_problem pr = { "index-corrupt", NULL, NULL, ids, 1 };
                                if (sp_fs_rp_path(v[i], &rp_path) < 0 ||
                                    asprintf(&what, "%s/%s", rp_path, md->index) < 0) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                pr.object = what;
                                pr.detail = strerror(-r);
                                count_problem(&pc, &pr);
                                rp_broken[i] = true;
                                continue;
                        }
                        for (uint64_t c = 0; c < dd_index_get_header(idx)->chunk_count; c++) {
                                dd_digest d;
                                r = dd_index_get(idx, c, &d);
                                if (r < 0)
                                        goto out;
                                if (!dd_digest_is_null(&d) && dd_dset_add(all, &d) < 0) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                        }
                }
        }

        /* Pick the sample and check it in parallel. */
        r = dd_dset_to_array(all, &digests, &n_digests);
        if (r < 0)
                goto out;
        r = vb_random_bytes(&salt, sizeof(salt));
        if (r < 0)
                goto out;
        sample = malloc(MAX(n_digests, 1) * sizeof(*sample));
        status = calloc(MAX(n_digests, 1), sizeof(*status));
        if (!sample || !status) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_digests; i++) {
                uint64_t h;
                memcpy(&h, digests[i].b + 8, sizeof(h));
                if (o->sample_percent == 0 || o->sample_percent >= 100 || (h ^ salt) % 100 < o->sample_percent)
                        sample[n_sample++] = digests[i];
        }
        {
                struct verify_job job = {
                        .p = p, .digests = sample, .n = n_sample, .status = status, .max_plain = SP_CHUNK_SIZE_MAX
                };
                pthread_t tids[64];
                unsigned started = 0;

                for (; started < threads; started++)
                        if (pthread_create(&tids[started], NULL, verify_thread, &job) != 0)
                                break;
                if (started == 0)
                        verify_thread(&job);
                for (unsigned t = 0; t < started; t++)
                        pthread_join(tids[t], NULL);
                res.chunks_checked = n_sample;
                res.bytes_checked = job.bytes;
        }
        for (size_t i = 0; i < n_sample; i++) {
                if (status[i] == -ENOMEM) {
                        r = -ENOMEM;
                        goto out;
                }
                if (status[i] < 0 && dd_dset_add(bad, &sample[i]) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }

        /* Name every restore point a bad chunk breaks, and where. */
        r = dd_dset_to_array(bad, &bad_digests, &n_bad);
        if (r < 0)
                goto out;
        bads = calloc(MAX(n_bad, 1), sizeof(*bads));
        if (!bads) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; n_bad > 0 && i < n; i++) {
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        _cleanup_(dd_index_freep) dd_index *idx = NULL;
                        const dd_manifest_disk *md = &v[i]->disks[k];

                        if (open_disk_index(p, v[i], md, &idx) < 0)
                                continue;
                        for (uint64_t c = 0; c < dd_index_get_header(idx)->chunk_count; c++) {
                                dd_digest d;
                                if (dd_index_get(idx, c, &d) < 0 || !dd_dset_contains(bad, &d))
                                        continue;
                                for (size_t b = 0; b < n_bad; b++) {
                                        if (!dd_digest_eq(&bad_digests[b], &d))
                                                continue;
                                        if (bads[b].n_rps == 0)
                                                snprintf(bads[b].where, sizeof(bads[b].where),
                                                         "first used by restore point %s, disk %s, offset %" PRIu64,
                                                         v[i]->id, md->name, c * md->chunk_size);
                                        if (add_rp(&bads[b], v[i]->id) < 0) {
                                                r = -ENOMEM;
                                                goto out;
                                        }
                                        rp_broken[i] = true;
                                }
                        }
                }
        }
        for (size_t b = 0; b < n_bad; b++) {
                char hex[DD_DIGEST_HEX_SIZE], detail[256];
                int st = 0;

                for (size_t i = 0; i < n_sample; i++)
                        if (dd_digest_eq(&sample[i], &bad_digests[b]))
                                st = status[i];
                snprintf(detail, sizeof(detail), "%s; %s",
                         st == -ENODATA ? "missing" : "damaged (digest or CRC mismatch)", bads[b].where);
                sp_problem pr = { st == -ENODATA ? "chunk-missing" : "chunk-corrupt",
                                  dd_digest_to_hex(&bad_digests[b], hex), detail, bads[b].rps, bads[b].n_rps };
                count_problem(&pc, &pr);
        }
        for (size_t i = 0; i < n; i++)
                res.broken_restore_points += rp_broken[i];
        res.problems = pc.n;
        *ret = res;
        r = (int)MIN(pc.n, (uint64_t)INT32_MAX);
out:
        for (size_t b = 0; bads && b < n_bad; b++)
                free(bads[b].rps);
        free(bads);
        free(bad_digests);
        sp_manifests_free(v, n);
        return r;
}

/* --- gc ---------------------------------------------------------------- */

struct mark_ctx {
        bool damaged;
};

static void mark_problem(void *userdata, const sp_problem *pr)
{
        ((struct mark_ctx *)userdata)->damaged = true;
}

static int gc_mark(sp_pool *p, sp_gc_result *res)
{
        struct mark_ctx mc = { false };
        dd_manifest **v = NULL;
        size_t n = 0;
        int r;

        r = sp_fs_list(p, NULL, mark_problem, &mc, &v, &n);
        if (r < 0)
                return r;
        if (mc.damaged) {
                r = -EBADMSG; /* an unreadable manifest: its chunks are unknown */
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        _cleanup_(dd_index_freep) dd_index *idx = NULL;

                        r = open_disk_index(p, v[i], &v[i]->disks[k], &idx);
                        if (r < 0)
                                goto out;
                        for (uint64_t c = 0; c < dd_index_get_header(idx)->chunk_count; c++) {
                                dd_digest d;
                                r = dd_index_get(idx, c, &d);
                                if (r < 0)
                                        goto out;
                                if (dd_digest_is_null(&d))
                                        continue;
                                r = chunk_touch(p, &d);
                                if (r < 0)
                                        goto out;
                                res->chunks_marked += (uint64_t)r;
                        }
                }
        }
        r = 0;
out:
        sp_manifests_free(v, n);
        return r;
}

/* Removes one chunk unless it is at least as new as the cutoff; see DESIGN. */
static int gc_sweep_one(sp_pool *p, int dirfd, const char *name, const char *path, const struct timespec *cutoff,
                        bool dry_run, sp_gc_result *res)
{
        _cleanup_free_ char *trash = NULL;
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISREG(st.st_mode) || timespec_cmp(&st.st_mtim, cutoff) >= 0) {
                res->chunks_kept++;
                return 0;
        }
        if (dry_run) {
                res->chunks_removed++;
                res->bytes_removed += (uint64_t)st.st_size;
                return 0;
        }
        if (asprintf(&trash, "tmp/gc-%s", name) < 0)
                return -ENOMEM;
        if (renameat(dirfd, name, p->dirfd, trash) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (fstatat(p->dirfd, trash, &st, 0) < 0)
                return -errno;
        if (timespec_cmp(&st.st_mtim, cutoff) >= 0) {
                /* Touched by a writer in between: put it back. */
                if (renameat2(p->dirfd, trash, p->dirfd, path, RENAME_NOREPLACE) < 0) {
                        if (errno != EEXIST)
                                return -errno;
                        unlinkat(p->dirfd, trash, 0); /* stored again meanwhile */
                }
                res->chunks_kept++;
                return 0;
        }
        if (unlinkat(p->dirfd, trash, 0) < 0)
                return -errno;
        res->chunks_removed++;
        res->bytes_removed += (uint64_t)st.st_size;
        return 0;
}

typedef int (*chunk_fn)(sp_pool *p, int dirfd, const char *name, const char *path, void *userdata);

/* Calls fn for every file under chunks/<2>/<2>/. */
static int for_each_chunk(sp_pool *p, chunk_fn fn, void *userdata)
{
        _cleanup_close_ int top = openat(p->dirfd, "chunks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d1;
        struct dirent *e1;
        int r = 0;

        if (top < 0)
                return -errno;
        d1 = fdopendir(TAKE_FD(top));
        if (!d1)
                return -errno;
        while (r >= 0 && (e1 = readdir(d1))) {
                int fd2;
                DIR *d2;
                struct dirent *e2;

                if (e1->d_name[0] == '.')
                        continue;
                fd2 = openat(dirfd(d1), e1->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd2 < 0 || !(d2 = fdopendir(fd2))) {
                        if (fd2 >= 0)
                                close(fd2);
                        continue;
                }
                while (r >= 0 && (e2 = readdir(d2))) {
                        int fd3;
                        DIR *d3;
                        struct dirent *e3;

                        if (e2->d_name[0] == '.')
                                continue;
                        fd3 = openat(dirfd(d2), e2->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (fd3 < 0 || !(d3 = fdopendir(fd3))) {
                                if (fd3 >= 0)
                                        close(fd3);
                                continue;
                        }
                        while (r >= 0 && (e3 = readdir(d3))) {
                                char path[3 * NAME_MAX_LEN + 16];
                                dd_digest dg;

                                if (dd_digest_from_hex(e3->d_name, &dg) < 0)
                                        continue;
                                snprintf(path, sizeof(path), "chunks/%s/%s/%s", e1->d_name, e2->d_name, e3->d_name);
                                r = fn(p, dirfd(d3), e3->d_name, path, userdata);
                        }
                        closedir(d3);
                }
                closedir(d2);
        }
        closedir(d1);
        return r;
}

struct sweep_ctx {
        const struct timespec *cutoff;
        bool dry_run;
        sp_gc_result *res;
};

static int sweep_cb(sp_pool *p, int dirfd, const char *name, const char *path, void *userdata)
{
        struct sweep_ctx *ctx = userdata;

        return gc_sweep_one(p, dirfd, name, path, ctx->cutoff, ctx->dry_run, ctx->res);
}

static int dedup_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret)
{
        _cleanup_close_ int lock_fd = -1;
        _cleanup_free_ sp_fs_writer_info *writers = NULL;
        size_t n_writers = 0;
        struct timespec start, cutoff;
        sp_gc_result res = { 0 };
        struct sweep_ctx sc = { .cutoff = &cutoff, .dry_run = o->dry_run, .res = &res };
        int r;

        r = sp_fs_gc_lock(p, &start);
        if (r < 0)
                return r;
        lock_fd = r;
        r = sp_fs_active_writers(p, &writers, &n_writers);
        if (r < 0)
                return r;
        cutoff = start;
        for (size_t i = 0; i < n_writers; i++)
                if (timespec_cmp(&writers[i].start, &cutoff) < 0)
                        cutoff = writers[i].start;
        cutoff.tv_sec -= (time_t)MIN(o->grace_seconds, (uint64_t)cutoff.tv_sec);

        r = gc_mark(p, &res);
        if (r < 0)
                return r;
        r = sp_fs_cleanup(p, &cutoff, o->dry_run, &res.partial_removed, &res.tmp_removed);
        if (r < 0)
                return r;
        r = for_each_chunk(p, sweep_cb, &sc);
        if (r < 0)
                return r;
        *ret = res;
        return 0;
}

/* --- stats ------------------------------------------------------------- */

static int stats_cb(sp_pool *p, int dirfd, const char *name, const char *path, void *userdata)
{
        sp_stats *st = userdata;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        uint8_t h[DD_BLOB_HEADER_SIZE];
        dd_blob_info info;
        struct stat s;

        if (fd < 0 || fstat(fd, &s) < 0)
                return 0; /* removed meanwhile */
        st->chunks++;
        st->stored_bytes += (uint64_t)s.st_size;
        if (vb_pread_all(fd, h, sizeof(h), 0) >= 0 && dd_blob_peek(h, sizeof(h), &info) >= 0)
                st->unique_bytes += info.plain_len;
        return 0;
}

static int dedup_stats(sp_pool *p, sp_stats *ret)
{
        sp_stats st = { 0 };
        dd_manifest **v = NULL;
        size_t n = 0;
        int r;

        r = sp_fs_list(p, NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        st.restore_points = n;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        st.logical_bytes += v[i]->disks[k].size;
                        st.data_bytes += v[i]->disks[k].bytes_data;
                }
        sp_manifests_free(v, n);
        r = for_each_chunk(p, stats_cb, &st);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

const sp_driver sp_driver_dedup = {
        .name = "dedup",
        .caps = SP_CAP_RANDOM_READ | SP_CAP_DEDUP,
        .create = dedup_create,
        .open = dedup_open,
        .close = dedup_close,
        .list = sp_fs_list,
        .begin = dedup_begin,
        .disk_begin = dedup_disk_begin,
        .chunk_prepare = dedup_chunk_prepare,
        .chunk_commit = dedup_chunk_commit,
        .chunk_skip = dedup_chunk_skip,
        .disk_end = dedup_disk_end,
        .disk_abort = dedup_disk_abort,
        .commit = dedup_commit,
        .abort = dedup_abort,
        .reader_open = dedup_reader_open,
        .reader_read = dedup_reader_read,
        .reader_close = sp_index_reader_free,
        .verify = dedup_verify,
        .gc = dedup_gc,
        .remove = sp_fs_remove,
        .stats = dedup_stats,
};
