/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pipeline.c -- the backup and restore pipelines of one disk (see
 * pipeline.h for the design).
 *
 * Backup slots are used as a ring: they are filled in chunk order and
 * committed from the head only when done, so commits follow chunk order
 * while the worker pool completes them in any order.
 */
#include "storagepool/pipeline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/util.h"
#include "dedup/index.h"

#define MAX_PIECES 64

struct transfer;

typedef struct slot {
        uv_work_t req; /* first: the request is embedded in its slot */
        struct transfer *t;
        sp_chunk c;
        dd_extent pieces[MAX_PIECES];
        bool zero;        /* restore: the chunk was all zero */
        unsigned reading; /* asynchronous I/O of this slot still in flight */
        int r;
        bool done;
} slot;

typedef struct transfer {
        uv_loop_t *loop;
        bool restore;
        sp_disk_writer *dw;
        sp_disk_reader *rd;
        sp_source src;
        sp_target dst;
        sp_pipeline_opts o;
        sp_transfer_done_fn done;
        void *userdata;

        dd_extent_walk walk;
        bool walk_done;
        uint64_t count;       /* chunks of the disk */
        uint64_t next_chunk;  /* restore: next chunk to hand out */
        uint64_t next_commit; /* backup: next chunk to commit or skip */
        uint32_t chunk_size;
        uint64_t size;

        slot *slots;
        unsigned window;
        unsigned head;    /* oldest slot in use */
        unsigned used;    /* slots in use (queued or done, not yet committed) */
        unsigned running; /* slots queued on the worker pool */
        int error;
        bool flushed; /* restore: flush_async was started */
        bool finished;
        uint64_t start_ns;
        sp_transfer_result res;
} transfer;

static void transfer_free(transfer *t)
{
        for (unsigned i = 0; t->slots && i < t->window; i++) {
                dd_blob_ctx_free(t->slots[i].c.ctx);
                free(t->slots[i].c.data);
                free(t->slots[i].c.scratch);
                free(t->slots[i].c.aux);
        }
        free(t->slots);
        free(t);
}

static int transfer_new(uv_loop_t *loop, const sp_pipeline_opts *o, uint32_t chunk_size, uint64_t size, transfer **ret)
{
        transfer *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->loop = loop;
        if (o)
                t->o = *o;
        t->window = t->o.window ? MIN(t->o.window, SP_PIPELINE_WINDOW_MAX) : SP_PIPELINE_WINDOW_DEFAULT;
        t->chunk_size = chunk_size;
        t->size = size;
        t->count = dd_chunk_count(size, chunk_size);
        t->slots = calloc(t->window, sizeof(*t->slots));
        if (!t->slots)
                goto fail;
        for (unsigned i = 0; i < t->window; i++) {
                sp_chunk *c = &t->slots[i].c;

                t->slots[i].t = t;
                t->slots[i].req.data = &t->slots[i];
                c->ctx = dd_blob_ctx_new();
                c->data = malloc(chunk_size);
                c->scratch_size = dd_blob_bound(chunk_size);
                c->scratch = malloc(c->scratch_size);
                c->aux_size = dd_blob_bound(chunk_size) + DD_BLOCK_SIZE;
                if (!c->ctx || !c->data || !c->scratch)
                        goto fail;
        }
        t->start_ns = vb_now_ns();
        *ret = t;
        return 0;
fail:
        transfer_free(t);
        return -ENOMEM;
}

static void finish(transfer *t)
{
        if (t->finished)
                return;
        t->finished = true;
        t->res.seconds_ns = vb_now_ns() - t->start_ns;
        t->done(t->userdata, t->error, &t->res);
        transfer_free(t);
}

static void progress(transfer *t)
{
        if (t->o.progress)
                t->o.progress(t->o.userdata, t->res.bytes_done, t->res.bytes_total);
}

/* --- backup ------------------------------------------------------------ */

/* Zeroes the bytes the pieces do not cover inside every 64 KiB block
 * (DD_BLOCK_SIZE) they touch: the pool hashes those blocks whole, and bytes
 * not read are zero there (sp_chunk.data). Blocks no piece touches are left
 * alone. Cheap: a whole chunk has no gap at all. */
static void clear_gaps(sp_chunk *c)
{
        uint64_t pos = 0;

        if (c->whole)
                return;
        for (size_t i = 0; i < c->n_pieces; i++) {
                uint64_t rel = c->pieces[i].offset - c->offset, end = rel + c->pieces[i].length;
                uint64_t block_end = MIN(DIV_ROUND_UP(end, DD_BLOCK_SIZE) * DD_BLOCK_SIZE, (uint64_t)c->length);
                uint64_t next = i + 1 < c->n_pieces ? c->pieces[i + 1].offset - c->offset : UINT64_MAX;
                uint64_t limit = MIN(block_end, next);

                pos = MAX(pos, rel / DD_BLOCK_SIZE * DD_BLOCK_SIZE);
                if (pos < rel)
                        memset(c->data + pos, 0, rel - pos);
                pos = MAX(pos, end);
                if (pos < limit) {
                        memset(c->data + pos, 0, limit - pos);
                        pos = limit;
                }
        }
}

/* Chunks are bulk work: the worker threads that hash and compress them run
 * at a lower priority than the loop, so that on a busy machine the loop
 * (the daemon's API, the network) still gets the CPU when it needs it. */
#define WORKER_NICE 10

static void worker_yield_to_loop(void)
{
        static __thread bool done;

        if (done)
                return;
        done = true;
        /* Linux: a thread's own nice value; failure only costs latency. */
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);
}

static void backup_work(uv_work_t *req)
{
        slot *s = req->data;
        transfer *t = s->t;
        sp_chunk *c = &s->c;
        int r = 0;

        worker_yield_to_loop();
        if (t->src.read) {
                clear_gaps(c);
                for (size_t i = 0; i < c->n_pieces && r >= 0; i++)
                        r = t->src.read(t->src.userdata, c->pieces[i].offset,
                                        c->data + (c->pieces[i].offset - c->offset), c->pieces[i].length);
        }
        if (r >= 0)
                r = t->dw->w->pool->drv->chunk_prepare(t->dw, c);
        s->r = r;
}

static void backup_pump(transfer *t);
static void backup_after(uv_work_t *req, int status);

/* One piece of an asynchronous read landed: when the slot's last piece is
 * in, its chunk goes to the worker pool (or, on error, straight to commit,
 * which stops the backup). */
static void backup_read_done(void *cb_data, int r)
{
        slot *s = cb_data;
        transfer *t = s->t;

        if (r < 0 && s->r >= 0)
                s->r = r;
        if (--s->reading > 0)
                return;
        if (s->r >= 0 && t->error == 0) {
                r = uv_queue_work(t->loop, &s->req, backup_work, backup_after);
                if (r >= 0)
                        return;
                s->r = r;
        } else if (s->r >= 0) {
                s->r = -ECANCELED; /* another chunk failed first */
        }
        s->done = true;
        t->running--;
        backup_pump(t);
}

/* Starts the reads of one slot on the loop thread. A read that cannot
 * even start stops the backup here; the ones already started drain. */
static void backup_read_start(transfer *t, slot *s)
{
        sp_chunk *c = &s->c;
        size_t issued = 0;

        clear_gaps(c);
        s->reading = (unsigned)c->n_pieces;
        for (; issued < c->n_pieces; issued++) {
                int r = t->src.read_async(t->src.userdata, c->pieces[issued].offset,
                                          c->data + (c->pieces[issued].offset - c->offset), c->pieces[issued].length,
                                          backup_read_done, s);
                if (r < 0) {
                        s->r = r;
                        t->error = r;
                        t->res.failed_offset = c->pieces[issued].offset;
                        break;
                }
        }
        s->reading -= (unsigned)(c->n_pieces - issued);
        if (s->reading == 0) {
                s->done = true;
                t->running--;
        }
}

static void backup_after(uv_work_t *req, int status)
{
        slot *s = req->data;
        transfer *t = s->t;

        s->done = true;
        if (status < 0 && s->r >= 0)
                s->r = status;
        t->running--;
        backup_pump(t);
}

static int backup_skip_to(transfer *t, uint64_t index)
{
        const sp_driver *drv = t->dw->w->pool->drv;

        while (t->next_commit < index) {
                int r = drv->chunk_skip(t->dw, t->next_commit);
                if (r < 0)
                        return r;
                t->next_commit++;
        }
        return 0;
}

static void backup_pump(transfer *t)
{
        const sp_driver *drv = t->dw->w->pool->drv;

        /* Commit finished chunks in order. */
        while (t->error == 0 && t->used > 0 && t->slots[t->head].done) {
                slot *s = &t->slots[t->head];
                int r = s->r;

                if (r >= 0)
                        r = backup_skip_to(t, s->c.index);
                if (r >= 0)
                        r = drv->chunk_commit(t->dw, &s->c);
                if (r < 0) {
                        t->error = r;
                        t->res.failed_offset = s->c.offset;
                        break;
                }
                t->next_commit++;
                for (size_t i = 0; i < s->c.n_pieces; i++)
                        t->res.bytes_done += s->c.pieces[i].length;
                t->res.bytes_new += s->c.bytes_new;
                t->res.bytes_stored += s->c.bytes_stored;
                t->res.chunks++;
                s->done = false;
                t->head = (t->head + 1) % t->window;
                t->used--;
                progress(t);
        }

        /* Hand out more chunks. */
        while (t->error == 0 && t->used < t->window && !t->walk_done) {
                slot *s = &t->slots[(t->head + t->used) % t->window];
                sp_chunk *c = &s->c;
                uint64_t index;
                size_t n;
                int r;

                if (!dd_extent_walk_next(&t->walk, &index, s->pieces, MAX_PIECES, &n)) {
                        t->walk_done = true;
                        break;
                }
                c->index = index;
                c->offset = index * t->chunk_size;
                c->length = dd_chunk_length(t->size, t->chunk_size, index);
                c->pieces = s->pieces;
                c->n_pieces = n;
                c->whole = n == 1 && s->pieces[0].offset == c->offset && s->pieces[0].length == c->length;
                c->driver_data = NULL;
                s->done = false;
                s->r = 0;
                t->used++;
                t->running++;
                if (t->src.read_async) {
                        backup_read_start(t, s);
                        continue;
                }
                r = uv_queue_work(t->loop, &s->req, backup_work, backup_after);
                if (r < 0) {
                        t->used--;
                        t->running--;
                        t->error = r;
                        break;
                }
        }

        if (t->error != 0) {
                if (t->running == 0)
                        finish(t);
                return;
        }
        if (t->walk_done && t->used == 0) {
                int r = backup_skip_to(t, t->count);
                if (r < 0)
                        t->error = r;
                finish(t);
        }
}

int sp_backup_start(uv_loop_t *loop, sp_disk_writer *dw, const sp_source *src, const dd_extents *extents,
                    const sp_pipeline_opts *o, sp_transfer_done_fn done, void *userdata)
{
        transfer *t;
        int r;

        if (!loop || !dw || !src || !src->read == !src->read_async || !extents || !done)
                return -EINVAL;
        if (extents->n > 0 && extents->v[extents->n - 1].offset + extents->v[extents->n - 1].length > dw->size)
                return -ERANGE;
        r = transfer_new(loop, o, dw->chunk_size, dw->size, &t);
        if (r < 0)
                return r;
        t->dw = dw;
        t->src = *src;
        t->done = done;
        t->userdata = userdata;
        t->res.bytes_total = dd_extents_total(extents);
        dd_extent_walk_init(&t->walk, extents, dw->chunk_size);
        backup_pump(t);
        return 0;
}

/* --- restore ----------------------------------------------------------- */

static void restore_work(uv_work_t *req)
{
        slot *s = req->data;
        transfer *t = s->t;
        sp_chunk *c = &s->c;
        int r;

        worker_yield_to_loop();
        r = t->rd->pool->drv->reader_read(t->rd, c, &s->zero);
        if (r >= 0 && t->dst.write) {
                if (!s->zero)
                        r = t->dst.write(t->dst.userdata, c->offset, c->data, c->length);
                else if (t->dst.zero)
                        r = t->dst.zero(t->dst.userdata, c->offset, c->length);
        }
        s->r = r;
}

static void restore_pump(transfer *t);

/* A slot's chunk is written (or failed): account for it, free the slot. */
static void restore_slot_done(slot *s)
{
        transfer *t = s->t;

        t->running--;
        t->used--;
        s->done = false;
        if (s->r < 0 && t->error == 0) {
                t->error = s->r;
                t->res.failed_offset = s->c.offset;
        } else if (s->r >= 0) {
                t->res.bytes_done += s->c.length;
                t->res.chunks++;
                progress(t);
        }
        restore_pump(t);
}

static void restore_write_done(void *cb_data, int r)
{
        slot *s = cb_data;

        if (r < 0 && s->r >= 0)
                s->r = r;
        restore_slot_done(s);
}

static void restore_after(uv_work_t *req, int status)
{
        slot *s = req->data;
        transfer *t = s->t;
        sp_chunk *c = &s->c;

        if (status < 0 && s->r >= 0)
                s->r = status;
        /* Asynchronous targets are written from the loop, once the chunk was
         * read and checked on the worker pool. */
        if (s->r >= 0 && !t->dst.write && t->error == 0) {
                int r = 0;

                if (!s->zero)
                        r = t->dst.write_async(t->dst.userdata, c->offset, c->data, c->length, restore_write_done, s);
                else if (t->dst.zero_async)
                        r = t->dst.zero_async(t->dst.userdata, c->offset, c->length, restore_write_done, s);
                else
                        r = 1; /* nothing to write */
                if (r == 0)
                        return;
                if (r < 0)
                        s->r = r;
        }
        restore_slot_done(s);
}

static void restore_flush_done(void *cb_data, int r)
{
        transfer *t = cb_data;

        t->running--;
        if (r < 0 && t->error == 0) {
                t->error = r;
                t->res.failed_offset = t->size;
        }
        restore_pump(t);
}

static void restore_pump(transfer *t)
{
        for (unsigned i = 0; t->error == 0 && i < t->window && t->next_chunk < t->count; i++) {
                slot *s = &t->slots[i];
                int r;

                if (s->done)
                        continue; /* in use */
                s->done = true;   /* marks the slot busy while it is queued */
                s->c.index = t->next_chunk++;
                s->c.offset = s->c.index * t->chunk_size;
                s->c.length = dd_chunk_length(t->size, t->chunk_size, s->c.index);
                s->r = 0;
                r = uv_queue_work(t->loop, &s->req, restore_work, restore_after);
                if (r < 0) {
                        s->done = false;
                        t->error = r;
                        break;
                }
                t->used++;
                t->running++;
        }
        if (t->running > 0 || (t->error == 0 && t->next_chunk < t->count))
                return;
        if (t->error == 0 && t->dst.flush_async && !t->flushed) {
                int r;

                t->flushed = true;
                t->running++;
                r = t->dst.flush_async(t->dst.userdata, restore_flush_done, t);
                if (r >= 0)
                        return;
                t->running--;
                t->error = r;
                t->res.failed_offset = t->size;
        }
        finish(t);
}

int sp_restore_start(uv_loop_t *loop, sp_disk_reader *rd, const sp_target *dst, const sp_pipeline_opts *o,
                     sp_transfer_done_fn done, void *userdata)
{
        transfer *t;
        int r;

        if (!loop || !rd || !dst || !done || !dst->write == !dst->write_async)
                return -EINVAL;
        r = transfer_new(loop, o, rd->chunk_size, rd->size, &t);
        if (r < 0)
                return r;
        t->restore = true;
        t->rd = rd;
        t->dst = *dst;
        t->done = done;
        t->userdata = userdata;
        t->res.bytes_total = rd->size;
        restore_pump(t);
        return 0;
}
