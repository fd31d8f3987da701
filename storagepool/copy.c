/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * copy.c -- a restore point from one pool into another, through the driver
 * vtables only: for each disk, a reader on the source and a disk writer on
 * the target, one chunk at a time on the caller's thread (memory: one
 * chunk). The target sees a full backup whose source is the restore point.
 */
#include "storagepool/copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/index.h"

/* The template: m without id, parent and disks, as a full restore point. */
static int make_template(const dd_manifest *m, dd_manifest **ret)
{
        dd_manifest *t = NULL;
        int r = dd_manifest_copy(m, &t);

        if (r < 0)
                return r;
        for (size_t i = 0; i < t->n_disks; i++) {
                free(t->disks[i].name);
                free(t->disks[i].device);
                free(t->disks[i].format);
                free(t->disks[i].index);
        }
        free(t->disks);
        t->disks = NULL;
        t->n_disks = 0;
        free(t->parent);
        t->parent = NULL;
        free(t->id);
        t->id = NULL;
        t->type = DD_BACKUP_FULL;
        *ret = t;
        return 0;
}

typedef struct copy_state {
        sp_progress_fn progress;
        void *userdata;
        uint64_t done, total;
} copy_state;

static int copy_disk(sp_pool *from, const dd_manifest *m, const dd_manifest_disk *md, sp_writer *w, copy_state *cs)
{
        sp_pool *to = w->pool;
        sp_disk_reader *rd = NULL;
        sp_disk_writer *dw = NULL;
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        _cleanup_free_ uint8_t *data = NULL, *scratch = NULL;
        sp_chunk c = { 0 };
        dd_extent piece;
        uint64_t count;
        int r;

        if (!ctx)
                return -ENOMEM;
        r = from->drv->reader_open(from, m, md->name, &rd);
        if (r < 0)
                return r;
        if (rd->chunk_size != to->opts.chunk_size) {
                /* Chunks go over as they are: the pools must cut disks alike. */
                from->drv->reader_close(rd);
                return -EXDEV;
        }
        data = malloc(rd->chunk_size);
        c.scratch_size = dd_blob_bound(rd->chunk_size);
        scratch = malloc(c.scratch_size);
        if (!data || !scratch) {
                from->drv->reader_close(rd);
                return -ENOMEM;
        }
        r = to->drv->disk_begin(w, md->name, md->size, &dw);
        if (r < 0) {
                from->drv->reader_close(rd);
                return r;
        }
        c.data = data;
        c.scratch = scratch;
        c.ctx = ctx;
        c.aux_size = (uint32_t)(dd_blob_bound(rd->chunk_size) + DD_BLOCK_SIZE);
        count = dd_chunk_count(md->size, rd->chunk_size);
        for (uint64_t i = 0; i < count && r >= 0; i++) {
                bool zero = false;

                c.index = i;
                c.offset = i * rd->chunk_size;
                c.length = dd_chunk_length(md->size, rd->chunk_size, i);
                piece = (dd_extent){ c.offset, c.length };
                c.pieces = &piece;
                c.n_pieces = 1;
                c.whole = true;
                r = from->drv->reader_read(rd, &c, &zero);
                if (r >= 0 && zero)
                        r = to->drv->chunk_skip(dw, i);
                else if (r >= 0) {
                        r = to->drv->chunk_prepare(dw, &c);
                        if (r >= 0)
                                r = to->drv->chunk_commit(dw, &c);
                }
                cs->done += c.length;
                if (r >= 0 && cs->progress)
                        cs->progress(cs->userdata, cs->done, cs->total);
        }
        from->drv->reader_close(rd);
        free(c.aux);
        if (r < 0) {
                to->drv->disk_abort(dw);
                return r;
        }
        dw->bytes_read = md->bytes_data;
        return to->drv->disk_end(dw);
}

/* The disk entry the target wrote gets the source's device and format. */
static int carry_disk_info(sp_writer *w, const dd_manifest_disk *md)
{
        for (size_t i = 0; i < w->m->n_disks; i++) {
                dd_manifest_disk *d = &w->m->disks[i];

                if (!streq(d->name, md->name))
                        continue;
                if (md->device && !d->device && !(d->device = strdup(md->device)))
                        return -ENOMEM;
                if (md->format && !d->format && !(d->format = strdup(md->format)))
                        return -ENOMEM;
        }
        return 0;
}

int sp_copy(sp_pool *from, const dd_manifest *m, sp_pool *to, sp_progress_fn progress, void *userdata,
            dd_manifest **ret)
{
        _cleanup_(dd_manifest_freep) dd_manifest *tmpl = NULL;
        copy_state cs = { progress, userdata, 0, 0 };
        sp_writer *w = NULL;
        int r;

        if (!from || !m || !to)
                return -EINVAL;
        for (size_t i = 0; i < m->n_disks; i++)
                cs.total += m->disks[i].size;
        r = make_template(m, &tmpl);
        if (r < 0)
                return r;
        r = to->drv->begin(to, tmpl, &w);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_disks && r >= 0; i++) {
                r = copy_disk(from, m, &m->disks[i], w, &cs);
                if (r >= 0)
                        r = carry_disk_info(w, &m->disks[i]);
        }
        if (r < 0) {
                to->drv->abort(w);
                return r;
        }
        return to->drv->commit(w, ret);
}
