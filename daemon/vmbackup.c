/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmbackup.c -- one VM backed up end to end through a platform driver; the
 * steps and why they come in this order are in vmbackup.h.
 *
 * DESIGN: one struct (vmb) carries the whole run; each step is a function
 * that starts an asynchronous call whose callback starts the next step.
 * fail() records the first error and jumps to the cleanup chain (close the
 * disks, delete the snapshot, start the VM again), which always runs to
 * its end and then reports. Finding the parent (reading manifests) and the
 * commit (writing and fsyncing the manifest) run on the worker pool; begin,
 * disk_begin and disk_end are short file operations left on the loop.
 */
#include "daemon/vmbackup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "daemon/work.h"
#include "storagepool/fs.h"
#include "storagepool/pipeline.h"

typedef struct vb_vmbackup vmb;

typedef struct vmb_disk {
        vmb *b;
        const vb_hv_disk *hv; /* in vmb.res.vm */
        vb_hv_disk_source src;
        tp_disk *d;
        dd_extents plan;
        bool incremental; /* what its plan is */
        bool retried;     /* opened again without `since` */
        sp_disk_writer *dw;
        uint64_t done; /* bytes read so far */
} vmb_disk;

struct vb_vmbackup {
        uv_loop_t *loop;
        vb_vmbackup_opts o;
        vb_vmbackup_done_fn done;
        void *userdata;
        vb_vmbackup_result res;
        char *notes[VB_VMBACKUP_NOTES_MAX];
        size_t n_notes;
        dd_manifest *parent;
        char *since; /* the parent's checkpoint, when the disks may have it */
        bool want_incremental;
        bool cbt_valid;
        bool was_running; /* shut down for the backup: start again */
        bool shut_down;
        vb_hv_snapshot snap;
        bool have_snap;
        bool checkpoints_settled; /* checkpoint_commit was asked */
        char *snap_name;          /* chosen before the snapshot is asked for */
        vmb_disk *disks;
        size_t n_disks, cur;
        size_t next;     /* the next disk to read */
        unsigned active; /* disks being read or ended */
        bool all_read;
        /* Disks read, waiting for disk_end (on the worker pool, one at a
         * time: each adds its entry to the writer's manifest). */
        vmb_disk **to_end;
        size_t n_to_end;
        bool ending;
        sp_writer *w;
        uint64_t plan_total;
        void (*persist_next)(vmb *b);
        uint64_t t0;
};

static void step(vmb *b, const char *fmt, ...) _printf_(2, 3);
static void step(vmb *b, const char *fmt, ...)
{
        char what[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        log_debug("vm %s: %s", b->res.vm.name ?: b->o.vm, what);
        if (b->o.step)
                b->o.step(b->o.userdata, what);
}

static void note(vmb *b, const char *fmt, ...) _printf_(2, 3);
static void note(vmb *b, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (b->n_notes >= VB_VMBACKUP_NOTES_MAX)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) >= 0)
                b->notes[b->n_notes++] = s;
        va_end(ap);
}

static void cleanup_start(vmb *b);

/* The first error wins; then the cleanup runs. */
static void fail(vmb *b, vb_error r, const char *fmt, ...) _printf_(3, 4);
static void fail(vmb *b, vb_error r, const char *fmt, ...)
{
        va_list ap;

        if (b->res.r == VB_OK) {
                b->res.r = r;
                va_start(ap, fmt);
                vsnprintf(b->res.message, sizeof(b->res.message), fmt, ap);
                va_end(ap);
        }
        /* Disks still being read drain first; the last one starts the cleanup. */
        if (b->active == 0)
                cleanup_start(b);
}

static void fail_start(vmb *b, int k, const char *what)
{
        fail(b, k == -EINVAL ? VB_E_USAGE : vb_error_from_net_errno(k), "vm %s: %s: %s", b->res.vm.name ?: b->o.vm,
             what, strerror(-k));
}

/* ---- the end ---- */

static void finish(vmb *b)
{
        b->res.seconds_ns = vb_now_ns() - b->t0;
        for (size_t i = 0; i < b->n_notes; i++)
                b->res.notes[i] = b->notes[i];
        b->done(b->userdata, &b->res);

        for (size_t i = 0; i < b->n_notes; i++)
                free(b->notes[i]);
        for (size_t i = 0; i < b->n_disks; i++) {
                vb_hv_disk_source_clear(&b->disks[i].src);
                dd_extents_clear(&b->disks[i].plan);
        }
        free(b->disks);
        free(b->to_end);
        for (size_t i = 0; i < b->res.n_disks; i++)
                free(b->res.disks[i].name);
        free(b->res.disks);
        dd_manifest_free(b->res.m);
        dd_manifest_free(b->parent);
        vb_hv_vm_clear(&b->res.vm);
        vb_hv_snapshot_clear(&b->snap);
        free(b->res.snapshot);
        free(b->res.cleanup_error);
        free(b->since);
        free(b->snap_name);
        free(b);
}

static void cleanup_error(vmb *b, const char *msg)
{
        if (b->res.cleanup_error)
                return;
        b->res.cleanup_error = strdup(msg);
        log_warning("%s", msg);
}

static void restarted(void *userdata, vb_error r, const char *msg)
{
        vmb *b = userdata;

        if (r != VB_OK)
                cleanup_error(b, msg);
        finish(b);
}

static void cleanup_restart(vmb *b)
{
        int k;

        if (!b->shut_down)
                return finish(b);
        b->shut_down = false;
        step(b, "starting the VM again");
        k = b->o.drv->power(b->o.hv, &b->res.vm, VB_POWER_START, restarted, b);
        if (k < 0) {
                char msg[512];

                snprintf(msg, sizeof(msg), "vm %s: starting it again: %s", b->res.vm.name, strerror(-k));
                cleanup_error(b, msg);
                finish(b);
        }
}

static void checkpoints_settled(void *userdata, vb_error r, const char *msg)
{
        vmb *b = userdata;

        if (r != VB_OK)
                cleanup_error(b, msg);
        cleanup_restart(b);
}

/* Drivers with checkpoints of their own (libvirt) learn which one is now
 * the VM's newest and which one goes: the parent's after a commit, the
 * snapshot's own after a failure. */
static void cleanup_checkpoints(vmb *b)
{
        bool made = b->res.snapshot && b->snap.type == VB_SNAPSHOT_EXTERNAL;
        const char *keep = NULL, *drop = NULL;
        int k;

        if (!b->o.drv->checkpoint_commit || b->checkpoints_settled || !made)
                return cleanup_restart(b);
        b->checkpoints_settled = true;
        if (b->res.m) {
                keep = b->res.snapshot;
                drop = b->since && !streq(b->since, keep) ? b->since : NULL;
        } else {
                drop = b->res.snapshot;
        }
        k = b->o.drv->checkpoint_commit(b->o.hv, &b->res.vm, keep, drop, checkpoints_settled, b);
        if (k < 0) {
                char msg[512];

                snprintf(msg, sizeof(msg), "vm %s: checkpoints: %s", b->res.vm.name, strerror(-k));
                checkpoints_settled(b, VB_E_FAILED, msg);
        }
}

static void snapshot_deleted(void *userdata, vb_error r, const char *msg)
{
        vmb *b = userdata;

        if (r != VB_OK)
                cleanup_error(b, msg);
        b->have_snap = false;
        cleanup_checkpoints(b);
}

static void cleanup_snapshot(vmb *b)
{
        int k;

        if (!b->have_snap)
                return cleanup_checkpoints(b);
        step(b, "deleting snapshot %s", b->snap.name);
        k = b->o.drv->snapshot_delete(b->o.hv, &b->res.vm, b->snap.name, snapshot_deleted, b);
        if (k < 0) {
                char msg[512];

                snprintf(msg, sizeof(msg), "vm %s: deleting snapshot %s: %s", b->res.vm.name, b->snap.name,
                         strerror(-k));
                b->have_snap = false;
                cleanup_error(b, msg);
                cleanup_checkpoints(b);
        }
}

static void cleanup_close_next(vmb *b);

static void disk_closed(void *userdata)
{
        cleanup_close_next(userdata);
}

/* Closes the disks one by one (their exports hold the images the snapshot
 * delete commits into), then the snapshot goes. */
static void cleanup_close_next(vmb *b)
{
        for (size_t i = 0; i < b->n_disks; i++)
                if (b->disks[i].d) {
                        tp_disk *d = b->disks[i].d;

                        b->disks[i].d = NULL;
                        tp_disk_close(d, disk_closed, b);
                        return;
                }
        cleanup_snapshot(b);
}

static void cleanup_start(vmb *b)
{
        for (size_t i = 0; i < b->n_disks; i++)
                if (b->disks[i].dw) {
                        b->o.pool->drv->disk_abort(b->disks[i].dw);
                        b->disks[i].dw = NULL;
                }
        if (b->w) {
                b->o.pool->drv->abort(b->w);
                b->w = NULL;
        }
        cleanup_close_next(b);
}

/* ---- after the commit: the snapshot goes, the checkpoints move on ---- */

static void commit_next(vmb *b);

static void committed_snapshot_deleted(void *userdata, vb_error r, const char *msg)
{
        vmb *b = userdata;

        if (r != VB_OK)
                cleanup_error(b, msg);
        b->have_snap = false;
        b->cur = 0;
        commit_next(b);
}

static void release_next(vmb *b);

static void released(void *userdata, int r, const char *msg)
{
        vmb *b = userdata;

        if (r < 0)
                log_warning("vm %s: disk %s: closing its export: %s", b->res.vm.name, b->disks[b->cur].hv->device,
                            msg ?: strerror(-r));
        b->cur++;
        release_next(b);
}

/* The exports close first: deleting an external snapshot commits the
 * overlay into the images they read, whose checkpoints can only be removed
 * once the images are writable again. */
static void release_next(vmb *b)
{
        int k;

        while (b->cur < b->n_disks) {
                k = tp_disk_release(b->disks[b->cur].d, released, b);
                if (k >= 0)
                        return;
                b->cur++;
        }
        step(b, "deleting snapshot %s", b->snap.name);
        k = b->o.drv->snapshot_delete(b->o.hv, &b->res.vm, b->snap.name, committed_snapshot_deleted, b);
        if (k < 0) {
                char msg[512];

                snprintf(msg, sizeof(msg), "vm %s: deleting snapshot %s: %s", b->res.vm.name, b->snap.name,
                         strerror(-k));
                committed_snapshot_deleted(b, VB_E_FAILED, msg);
        }
}

static void disk_committed(void *userdata, int r, const char *msg)
{
        vmb *b = userdata;

        /* The restore point exists: a checkpoint left behind is only untidy. */
        if (r < 0) {
                char buf[512];

                snprintf(buf, sizeof(buf), "vm %s: disk %s: restore point %s committed, but %s", b->res.vm.name,
                         b->disks[b->cur].hv->device, b->res.m->id, msg ?: strerror(-r));
                cleanup_error(b, buf);
        }
        b->cur++;
        commit_next(b);
}

static void commit_next(vmb *b)
{
        while (b->cur < b->n_disks) {
                int k = tp_disk_commit(b->disks[b->cur].d, disk_committed, b);

                if (k >= 0)
                        return;
                b->cur++;
        }
        cleanup_start(b);
}

/* ---- the data ---- */

static void persist(vmb *b, vb_backup_step st, const char *snapshot, const char *temp_dir, void (*next)(vmb *b))
{
        if (!b->o.persist)
                return next(b);
        b->persist_next = next;
        b->o.persist(b->o.userdata, b, st, snapshot, temp_dir);
}

void vb_vmbackup_persisted(vb_vmbackup *b, int r)
{
        if (r < 0)
                return fail(b, vb_error_from_errno(r), "vm %s: recording its progress in the catalog: %s",
                            b->res.vm.name ?: b->o.vm, strerror(-r));
        b->persist_next(b);
}

static void disks_pump(vmb *b);

static void progress(void *userdata, uint64_t done, uint64_t total)
{
        vmb_disk *vd = userdata;
        vmb *b = vd->b;
        uint64_t sum = 0;

        (void)total;
        vd->done = done;
        if (!b->o.progress)
                return;
        for (size_t i = 0; i < b->n_disks; i++)
                sum += b->disks[i].done;
        b->o.progress(b->o.userdata, sum, b->plan_total);
}

static void end_next(vmb *b);

/* After a failure the disks waiting for their end are only dropped: the
 * cleanup aborts them. Not while an end is in flight: its return does it. */
static void drop_waiting(vmb *b)
{
        if (b->ending)
                return;
        b->active -= (unsigned)b->n_to_end;
        b->n_to_end = 0;
}

/* A disk is out after another one failed; the last one starts the cleanup. */
static void drained(vmb *b)
{
        drop_waiting(b);
        if (b->active == 0)
                cleanup_start(b);
}

/* Finishing a disk's index waits for its last chunks to be written and
 * synced: off the loop. */
static int disk_end_work(void *ctx)
{
        vmb_disk *vd = ctx;

        return vd->b->o.pool->drv->disk_end(vd->dw);
}

static void disk_ended(void *ctx, int k)
{
        vmb_disk *vd = ctx;
        vmb *b = vd->b;
        vb_vmbackup_disk *out = &b->res.disks[vd - b->disks];
        dd_manifest_disk *md;

        vd->dw = NULL; /* disk_end frees it, also on failure */
        b->ending = false;
        b->active--;
        if (k < 0) {
                drop_waiting(b);
                return fail(b, vb_error_from_errno(k), "vm %s: disk %s: finishing its index: %s", b->res.vm.name,
                            vd->hv->device, strerror(-k));
        }
        if (b->res.r != VB_OK)
                return drained(b);
        /* What the disk was on the platform, for restores. */
        md = (dd_manifest_disk *)dd_manifest_find_disk(b->w->m, vd->hv->device);
        if (md) {
                out->bytes_new = md->bytes_new;
                if ((!md->device && !(md->device = strdup(vd->hv->device))) ||
                    (vd->hv->format && !md->format && !(md->format = strdup(vd->hv->format)))) {
                        drop_waiting(b);
                        return fail_start(b, -ENOMEM, "manifest");
                }
        }
        end_next(b);
        disks_pump(b);
}

static void end_next(vmb *b)
{
        vmb_disk *vd;
        int k;

        if (b->ending || b->n_to_end == 0)
                return;
        vd = b->to_end[0];
        memmove(b->to_end, b->to_end + 1, --b->n_to_end * sizeof(*b->to_end));
        b->ending = true;
        k = vb_work_queue(b->loop, disk_end_work, disk_ended, vd);
        if (k < 0)
                disk_ended(vd, disk_end_work(vd));
}

static void disk_transferred(void *userdata, int r, const sp_transfer_result *res)
{
        vmb_disk *vd = userdata;
        vmb *b = vd->b;
        vb_vmbackup_disk *out = &b->res.disks[vd - b->disks];
        const char *why;

        out->bytes_read = res->bytes_done;
        out->bytes_stored = res->bytes_stored;
        if (r < 0) {
                b->active--;
                drop_waiting(b);
                why = tp_disk_nbd(vd->d) ? tp_nbd_error_message(tp_disk_nbd(vd->d)) : NULL;
                if (r == -ENODATA || r == -EBADMSG)
                        fail(b, vb_error_from_errno(r),
                             "vm %s: disk %s offset %" PRIu64 ": the parent's chunk there is %s", b->res.vm.name,
                             vd->hv->device, res->failed_offset, r == -ENODATA ? "missing" : "damaged");
                else if (r == -ENOSPC || r == -EDQUOT)
                        fail(b, VB_E_NO_SPACE, "vm %s: disk %s: the pool's file system is full", b->res.vm.name,
                             vd->hv->device);
                else
                        fail(b, vb_error_from_net_errno(r), "vm %s: disk %s: %s", b->res.vm.name, vd->hv->device,
                             why ?: strerror(-r));
                return;
        }
        if (b->res.r != VB_OK) {
                /* Another disk failed: this one only had to drain. */
                b->active--;
                return drained(b);
        }
        out->transport = *tp_disk_stats(vd->d);
        vd->dw->bytes_read = res->bytes_done;
        b->to_end[b->n_to_end++] = vd;
        end_next(b);
}

/* The manifest is written and fsync'd: off the loop. */
static int commit_work(void *ctx)
{
        vmb *b = ctx;

        return b->o.pool->drv->commit(b->w, &b->res.m);
}

static void cleaning(vmb *b)
{
        b->cur = 0;
        release_next(b);
}

static void committed(void *ctx, int r)
{
        vmb *b = ctx;

        b->w = NULL; /* commit frees the writer, also on failure */
        if (r < 0)
                return fail(b, vb_error_from_errno(r), "vm %s: committing the restore point: %s", b->res.vm.name,
                            strerror(-r));
        persist(b, VB_STEP_CLEANING, NULL, NULL, cleaning);
}

static void commit_start(vmb *b)
{
        int k;

        step(b, "committing the restore point");
        b->w->m->time_end = time(NULL);
        k = vb_work_queue(b->loop, commit_work, committed, b);
        if (k < 0)
                fail_start(b, k, "committing the restore point");
}

static int disk_start(vmb *b, vmb_disk *vd)
{
        sp_source src;
        sp_pipeline_opts po = { .window = 16, .progress = progress, .userdata = vd };
        int k;

        step(b, "disk %s", vd->hv->device);
        k = b->o.pool->drv->disk_begin(b->w, vd->hv->device, tp_disk_size(vd->d), &vd->dw);
        if (k < 0) {
                fail(b, k == -EBADMSG ? VB_E_PARENT : vb_error_from_errno(k), "vm %s: disk %s: %s", b->res.vm.name,
                     vd->hv->device, k == -EBADMSG ? "the parent's index is damaged" : strerror(-k));
                return k;
        }
        tp_disk_source(vd->d, &src);
        /* Counted first: a disk with nothing to read is done before
         * sp_backup_start() returns. */
        b->active++;
        if (b->active > b->res.max_parallel_disks)
                b->res.max_parallel_disks = b->active;
        k = sp_backup_start(b->loop, vd->dw, &src, &vd->plan, &po, disk_transferred, vd);
        if (k < 0) {
                b->active--;
                fail_start(b, k, "starting the transfer");
                return k;
        }
        return 0;
}

/* Keeps parallel_disks disks reading; once all are read, the commit. */
static void disks_pump(vmb *b)
{
        unsigned most = b->o.parallel_disks ?: 1;

        /* A disk may finish inside disk_start() (nothing to read) and pump
         * again from there: the checks below hold for both levels. */
        while (b->res.r == VB_OK && !b->ending && b->next < b->n_disks && b->active < most)
                if (disk_start(b, &b->disks[b->next++]) < 0)
                        return;
        if (b->res.r == VB_OK && b->next == b->n_disks && b->active == 0 && !b->all_read) {
                b->all_read = true;
                persist(b, VB_STEP_COMMITTING, NULL, NULL, commit_start);
        }
}

static int manifest_begin(vmb *b)
{
        const vb_hv_vm *vm = &b->res.vm;
        _cleanup_(dd_manifest_freep) dd_manifest *t = dd_manifest_new();
        bool oom = !t;

#define DUP(dst, src)                                                                                                  \
        do {                                                                                                           \
                if (!oom && (src) && !((dst) = strdup(src)))                                                           \
                        oom = true;                                                                                    \
        } while (0)
        if (t) {
                DUP(t->vm.platform, b->o.platform ?: b->o.drv->name);
                DUP(t->vm.id, vm->id);
                DUP(t->vm.uuid, vm->uuid);
                DUP(t->vm.name, vm->name);
                DUP(t->vm.title, vm->title);
                DUP(t->vm.host_id, vm->host_id);
                DUP(t->consistency, b->snap.quiesced ? "application" : "crash");
                DUP(t->job, b->o.job);
                DUP(t->run, b->o.run);
                if (b->snap.type == VB_SNAPSHOT_EXTERNAL)
                        DUP(t->checkpoint, b->snap.name);
                if (b->res.incremental)
                        DUP(t->parent, b->parent->id);
                if (!oom && vm->config && !(t->config = json_deep_copy(vm->config)))
                        oom = true;
        }
#undef DUP
        if (oom)
                return -ENOMEM;
        t->type = b->res.incremental ? DD_BACKUP_INCREMENTAL : DD_BACKUP_FULL;
        t->time_start = time(NULL);
        return b->o.pool->drv->begin(b->o.pool, t, &b->w);
}

static void write_start(vmb *b)
{
        int k;

        b->res.disks = calloc(b->n_disks ?: 1, sizeof(*b->res.disks));
        if (!b->res.disks)
                return fail_start(b, -ENOMEM, "result");
        b->res.n_disks = b->n_disks;
        b->plan_total = 0;
        for (size_t i = 0; i < b->n_disks; i++) {
                b->res.disks[i].name = strdup(b->disks[i].hv->device);
                b->res.disks[i].size = tp_disk_size(b->disks[i].d);
                b->res.disks[i].bytes_plan = dd_extents_total(&b->disks[i].plan);
                b->plan_total += b->res.disks[i].bytes_plan;
                if (!b->res.disks[i].name)
                        return fail_start(b, -ENOMEM, "result");
        }
        k = manifest_begin(b);
        if (k < 0)
                return fail(b, vb_error_from_errno(k), "vm %s: starting the restore point: %s", b->res.vm.name,
                            strerror(-k));
        b->next = 0;
        step(b, "reading %" PRIu64 " bytes from %zu disk(s)", b->plan_total, b->n_disks);
        {
                _cleanup_free_ char *rel = NULL, *dir = NULL;

                /* The restore point's folder is what a crash would leave. */
                if (sp_fs_rp_path(b->w->m, &rel) < 0 || asprintf(&dir, "%s/%s", b->o.pool->path, rel) < 0)
                        return fail_start(b, -ENOMEM, "the restore point's folder");
                persist(b, VB_STEP_READING, NULL, dir, disks_pump);
        }
}

/* ---- opening and planning every disk ---- */

static void open_next(vmb *b);
static void open_disk(vmb *b);

static void replan_next(vmb *b);

static void replanned(void *userdata, int r, const char *msg)
{
        vmb *b = userdata;
        vmb_disk *vd = &b->disks[b->cur];

        if (r < 0)
                return fail(b, vb_error_from_net_errno(r), "vm %s: disk %s: mapping its data: %s", b->res.vm.name,
                            vd->hv->device, msg ?: strerror(-r));
        vd->incremental = false;
        b->cur++;
        replan_next(b);
}

/* One disk could not be incremental: the restore point is a full one, so
 * the disks planned as incrementals read all their data instead. */
static void replan_next(vmb *b)
{
        while (b->cur < b->n_disks && !b->disks[b->cur].incremental)
                b->cur++;
        if (b->cur == b->n_disks)
                return write_start(b);
        {
                vmb_disk *vd = &b->disks[b->cur];
                bool is_incremental;
                int k;

                dd_extents_clear(&vd->plan);
                k = tp_disk_plan(vd->d, false, &vd->plan, &is_incremental, replanned, b);
                if (k < 0)
                        fail_start(b, k, "mapping a disk");
        }
}

static void planned(void *userdata, int r, const char *msg)
{
        vmb *b = userdata;
        vmb_disk *vd = &b->disks[b->cur];

        if (r < 0)
                return fail(b, vb_error_from_net_errno(r), "vm %s: disk %s: mapping its data: %s", b->res.vm.name,
                            vd->hv->device, msg ?: strerror(-r));
        r = dd_extents_normalize(&vd->plan, tp_disk_size(vd->d));
        if (r < 0)
                return fail(b, VB_E_SOURCE, "vm %s: disk %s: the disk service's extent map is out of range",
                            b->res.vm.name, vd->hv->device);
        for (const char *const *n = tp_disk_notes(vd->d); *n; n++)
                note(b, "disk %s: %s", vd->hv->device, *n);
        b->cur++;
        open_next(b);
}

static void disk_opened(void *userdata, int r, vb_error code, tp_disk *d, const char *message)
{
        vmb *b = userdata;
        vmb_disk *vd = &b->disks[b->cur];
        bool incremental;
        int k;

        if (r < 0 && code == VB_E_NOT_FOUND && vd->src.since && !vd->retried) {
                /* The checkpoint is not on the disk (replaced, restored, never
                 * made): read it all, and say so. */
                note(b, "disk %s: checkpoint %s is missing (%s): reading all allocated data", vd->hv->device,
                     vd->src.since, message ?: "not found");
                free(vd->src.since);
                vd->src.since = NULL;
                vd->retried = true;
                return open_disk(b);
        }
        if (r < 0)
                return fail(b, code != VB_OK ? code : vb_error_from_net_errno(r), "vm %s: disk %s: opening %s: %s",
                            b->res.vm.name, vd->hv->device, vd->src.url, message ?: strerror(-r));
        vd->d = d;
        if (vd->src.note)
                note(b, "disk %s: %s", vd->hv->device, vd->src.note);
        /* Whether the parent has this disk at this size. */
        incremental = b->want_incremental && b->cbt_valid && vd->src.since;
        if (incremental) {
                const dd_manifest_disk *pd = dd_manifest_find_disk(b->parent, vd->hv->device);

                if (!pd) {
                        note(b, "disk %s is not in restore point %s: reading all allocated data", vd->hv->device,
                             b->parent->id);
                        incremental = false;
                } else if (pd->size != tp_disk_size(d)) {
                        note(b,
                             "disk %s changed size since restore point %s (%" PRIu64 " -> %" PRIu64
                             " bytes): reading all allocated data",
                             vd->hv->device, b->parent->id, pd->size, tp_disk_size(d));
                        incremental = false;
                }
        }
        k = tp_disk_plan(d, incremental, &vd->plan, &vd->incremental, planned, b);
        if (k < 0)
                fail_start(b, k, "mapping a disk");
}

static void open_disk(vmb *b)
{
        vmb_disk *vd = &b->disks[b->cur];
        tp_disk_opts o = *b->o.transfer;
        _cleanup_free_ char *err = NULL;
        int k;

        o.source = vd->src.url;
        o.write = false;
        o.since = vd->src.since;
        o.checkpoint = vd->src.checkpoint;
        k = tp_disk_open(b->loop, &o, disk_opened, b, &err);
        if (k < 0)
                fail(b, k == -EINVAL ? VB_E_USAGE : vb_error_from_net_errno(k), "vm %s: disk %s: %s: %s",
                     b->res.vm.name, vd->hv->device, vd->src.url, err ?: strerror(-k));
}

static void sourced(void *userdata, vb_error r, const char *msg, const vb_hv_disk_source *src)
{
        vmb *b = userdata;
        vmb_disk *vd = &b->disks[b->cur];
        int k;

        if (r != VB_OK)
                return fail(b, r, "%s", msg);
        k = vb_hv_disk_source_copy(src, &vd->src);
        if (k < 0)
                return fail_start(b, k, "disk source");
        step(b, "opening disk %s (%s)", vd->hv->device, vd->src.url);
        open_disk(b);
}

static void open_next(vmb *b)
{
        int k;

        if (b->cur == b->n_disks) {
                bool all = b->want_incremental && b->n_disks > 0;

                for (size_t i = 0; i < b->n_disks; i++)
                        all = all && b->disks[i].incremental;
                b->res.incremental = all;
                b->cur = 0;
                if (!all)
                        return replan_next(b);
                return write_start(b);
        }
        /* With CBT invalid too: the old checkpoint is removed once the
         * restore point is committed, not left on the disk forever. */
        k = b->o.drv->disk_source(b->o.hv, &b->res.vm, b->disks[b->cur].hv, &b->snap, b->since, sourced, b);
        if (k < 0)
                fail_start(b, k, "disk source");
}

/* ---- snapshot ---- */

static void snapshot_taken(void *userdata, vb_error r, const char *msg, const vb_hv_snapshot *s)
{
        vmb *b = userdata;
        int k;

        if (r != VB_OK) {
                /* A create that timed out may still make its snapshot: the
                 * cleanup deletes it (the driver waits for the task). */
                if (s && s->name && vb_hv_snapshot_copy(s, &b->snap) >= 0)
                        b->have_snap = true;
                return fail(b, r, "%s", msg);
        }
        k = vb_hv_snapshot_copy(s, &b->snap);
        if (k < 0)
                return fail_start(b, k, "snapshot");
        b->have_snap = true;
        b->res.quiesced = s->quiesced;
        b->res.snapshot = strdup(s->name);
        if (s->note)
                note(b, "%s", s->note);
        b->disks = calloc(b->res.vm.n_disks ?: 1, sizeof(*b->disks));
        b->to_end = calloc(b->res.vm.n_disks ?: 1, sizeof(*b->to_end));
        if (!b->disks || !b->to_end || !b->res.snapshot)
                return fail_start(b, -ENOMEM, "disks");
        for (size_t i = 0; i < b->res.vm.n_disks; i++) {
                b->disks[b->n_disks].b = b;
                b->disks[b->n_disks++].hv = &b->res.vm.disks[i];
        }
        b->cur = 0;
        open_next(b);
}

static void snapshot_create(vmb *b)
{
        int k;

        step(b, "%s snapshot %s", vb_snapshot_type_to_string(b->o.snapshot), b->snap_name);
        k = b->o.drv->snapshot_create(b->o.hv, &b->res.vm, b->o.snapshot, b->o.quiesce, b->snap_name, b->since,
                                      snapshot_taken, b);
        if (k < 0)
                fail_start(b, k, "snapshot");
}

/* The name is recorded before the snapshot is asked for: after a crash the
 * daemon deletes what it may have made. */
static void snapshot_take(vmb *b)
{
        int k = vb_hv_snapshot_name(&b->snap_name);

        if (k < 0)
                return fail_start(b, k, "snapshot name");
        persist(b, VB_STEP_SNAPSHOT, b->snap_name, NULL, snapshot_create);
}

static void shut_down(void *userdata, vb_error r, const char *msg)
{
        vmb *b = userdata;

        if (r != VB_OK)
                return fail(b, r, "%s (the VM is not backed up)", msg);
        b->shut_down = true;
        snapshot_take(b);
}

static void maybe_shutdown(vmb *b)
{
        int k;

        if (!b->o.shutdown || b->res.vm.state != VB_VM_RUNNING)
                return snapshot_take(b);
        step(b, "shutting the VM down for the backup");
        k = b->o.drv->power(b->o.hv, &b->res.vm, VB_POWER_SHUTDOWN, shut_down, b);
        if (k < 0)
                fail_start(b, k, "shutdown");
}

/* ---- the parent and CBT ---- */

static void cbt_checked(void *userdata, vb_error r, const char *msg, bool valid, const char *why)
{
        vmb *b = userdata;

        if (r != VB_OK)
                return fail(b, r, "%s", msg);
        b->cbt_valid = valid;
        if (!valid) {
                why = why ?: "changed-block tracking is not valid";
                if (b->o.non_cbt == VB_JOB_NON_CBT_FAIL)
                        return fail(b, VB_E_PARENT, "vm %s: %s, and the job fails such VMs instead of a full backup",
                                    b->res.vm.name, why);
                if (b->o.non_cbt == VB_JOB_NON_CBT_SKIP) {
                        note(b, "%s: skipped, as the job asks", why);
                        b->res.skipped = true;
                        return cleanup_start(b);
                }
                note(b, "%s: a full backup", why);
        }
        maybe_shutdown(b);
}

static int parent_work(void *ctx);
static void parent_found(void *ctx, int k);

static void parent_find(vmb *b)
{
        int k;

        b->want_incremental = false;
        if (!b->o.incremental)
                return maybe_shutdown(b);
        /* Finding the latest reads the VM's manifests: off the loop. */
        k = vb_work_queue(b->loop, parent_work, parent_found, b);
        if (k < 0)
                fail_start(b, k, "the latest restore point");
}

static int parent_work(void *ctx)
{
        vmb *b = ctx;

        return sp_pool_find(b->o.pool, "latest", b->res.vm.name, &b->parent);
}

static void parent_found(void *ctx, int k)
{
        vmb *b = ctx;

        if (k == -ENOENT) {
                note(b, "no earlier restore point of vm %s in the pool: a full backup", b->res.vm.name);
                return maybe_shutdown(b);
        }
        if (k < 0)
                return fail(b, vb_error_from_errno(k), "vm %s: the latest restore point: %s", b->res.vm.name,
                            strerror(-k));
        if (!b->parent->checkpoint) {
                note(b, "restore point %s left no checkpoint: a full backup", b->parent->id);
                return maybe_shutdown(b);
        }
        /* The identity rules: a VM whose id changed is another VM; one on
         * another host (migrated, or its host re-added with a new id) starts
         * a new chain there. */
        if (!streq_ptr(b->parent->vm.id, b->res.vm.id)) {
                note(b, "vm %s has id %s, restore point %s was of id %s: a full backup", b->res.vm.name,
                     b->res.vm.id ?: "?", b->parent->id, b->parent->vm.id ?: "?");
                return maybe_shutdown(b);
        }
        if (b->parent->vm.host_id && b->res.vm.host_id && !streq(b->parent->vm.host_id, b->res.vm.host_id)) {
                note(b, "vm %s is on host %s, restore point %s was made on host %s: a full backup", b->res.vm.name,
                     b->res.vm.host_id, b->parent->id, b->parent->vm.host_id);
                return maybe_shutdown(b);
        }
        b->since = strdup(b->parent->checkpoint);
        if (!b->since)
                return fail_start(b, -ENOMEM, "parent");
        b->want_incremental = true;
        b->cbt_valid = true;
        if (!b->o.drv->cbt_check)
                return maybe_shutdown(b);
        step(b, "checking changed-block tracking");
        k = b->o.drv->cbt_check(b->o.hv, &b->res.vm, cbt_checked, b);
        if (k < 0)
                fail_start(b, k, "CBT check");
}

static void space_checked(void *userdata, vb_error r, const char *msg, const vb_hv_space *s)
{
        vmb *b = userdata;
        char fb[32], tb[32], mb[32];

        if (r != VB_OK)
                return fail(b, r, "%s", msg);
        if (b->o.min_free_bytes && s->free < b->o.min_free_bytes)
                return fail(b, VB_E_NO_SPACE,
                            "vm %s: its storage pool %s has %s free, less than the %s a snapshot needs "
                            "(the VM is not backed up)",
                            b->res.vm.name, s->pool ?: "?", vb_format_size(s->free, fb, sizeof(fb)),
                            vb_format_size(b->o.min_free_bytes, mb, sizeof(mb)));
        if (b->o.min_free_percent && s->total && s->free < s->total / 100 * b->o.min_free_percent)
                return fail(b, VB_E_NO_SPACE,
                            "vm %s: its storage pool %s has %s free of %s, less than %u %% (the VM is not backed "
                            "up)",
                            b->res.vm.name, s->pool ?: "?", vb_format_size(s->free, fb, sizeof(fb)),
                            vb_format_size(s->total, tb, sizeof(tb)), b->o.min_free_percent);
        parent_find(b);
}

static void vm_got(void *userdata, vb_error r, const char *msg, const vb_hv_vm *vm)
{
        vmb *b = userdata;
        int k;

        if (r != VB_OK)
                return fail(b, r, "%s", msg);
        k = vb_hv_vm_copy(vm, &b->res.vm);
        if (k < 0)
                return fail_start(b, k, "VM");
        if (vm->n_disks == 0)
                return fail(b, VB_E_NOT_FOUND, "vm %s has no disk to back up", vm->name);
        for (size_t i = 0; i < vm->n_disks; i++)
                if (!vm->disks[i].device || !dd_disk_name_is_safe(vm->disks[i].device))
                        return fail(b, VB_E_PROTOCOL, "vm %s: a disk has no usable device name (%s)", vm->name,
                                    vm->disks[i].device ?: "none");
        if (!dd_name_is_safe(vm->name))
                return fail(b, VB_E_USAGE, "vm %s: the name cannot name restore points", vm->name);
        if (!b->o.min_free_bytes && !b->o.min_free_percent)
                return parent_find(b);
        step(b, "checking free space");
        k = b->o.drv->storage_free(b->o.hv, &b->res.vm, space_checked, b);
        if (k < 0)
                fail_start(b, k, "free space");
}

int vb_vmbackup_start(uv_loop_t *loop, const vb_vmbackup_opts *o, vb_vmbackup_done_fn done, void *userdata)
{
        vmb *b;
        int k;

        if (!o->drv || !o->hv || !o->pool || !o->vm || !o->transfer || !done || o->min_free_percent > 100)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->loop = loop;
        b->o = *o;
        b->done = done;
        b->userdata = userdata;
        b->t0 = vb_now_ns();
        step(b, "reading the VM's configuration");
        k = o->drv->vm_get(o->hv, o->vm, vm_got, b);
        if (k < 0)
                free(b);
        return k;
}
