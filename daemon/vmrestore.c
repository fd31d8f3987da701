/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmrestore.c -- a restore point restored as a new VM; the steps and their
 * order are in vmrestore.h.
 *
 * DESIGN: like vmbackup.c, one struct carries the run and each callback
 * starts the next step; fail() records the first error, closes what is
 * open and reports.
 */
#include "daemon/vmrestore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "storagepool/pipeline.h"

typedef struct vmr {
        uv_loop_t *loop;
        vb_vmrestore_opts o;
        vb_vmrestore_done_fn done;
        void *userdata;
        vb_vmrestore_result res;
        dd_manifest *m;
        json_t *config; /* the captured configuration, edited for the new VM */
        size_t cur;
        char *vol_path; /* the current disk's new volume */
        tp_disk *d;
        sp_disk_reader *rd;
        uint64_t total, done_before;
        uint64_t t0;
        vb_hv_vm target; /* what the driver needs to reach the new disks: name and host */
} vmr;

static void step(vmr *x, const char *fmt, ...) _printf_(2, 3);
static void step(vmr *x, const char *fmt, ...)
{
        char what[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        log_debug("restore of %s as %s: %s", x->res.restore_point, x->o.name, what);
        if (x->o.step)
                x->o.step(x->o.userdata, what);
}

static void finish(vmr *x)
{
        x->res.seconds_ns = vb_now_ns() - x->t0;
        x->done(x->userdata, &x->res);
        for (size_t i = 0; i < x->res.n_volumes; i++)
                free(x->res.volumes[i]);
        free(x->res.volumes);
        free(x->res.vm_id);
        free(x->vol_path);
        json_decref(x->config);
        dd_manifest_free(x->m);
        free(x->target.name);
        free(x->target.host_id);
        free(x);
}

static void closed_then_finish(void *userdata)
{
        finish(userdata);
}

static void fail(vmr *x, vb_error r, const char *fmt, ...) _printf_(3, 4);
static void fail(vmr *x, vb_error r, const char *fmt, ...)
{
        va_list ap;
        size_t n;

        x->res.r = r;
        va_start(ap, fmt);
        vsnprintf(x->res.message, sizeof(x->res.message), fmt, ap);
        va_end(ap);
        /* The incomplete target: say where it is. */
        n = strlen(x->res.message);
        for (size_t i = 0; i < x->res.n_volumes && n < sizeof(x->res.message); i++) {
                snprintf(x->res.message + n, sizeof(x->res.message) - n, "%s%s",
                         i ? ", " : "; left incomplete: ", x->res.volumes[i]);
                n = strlen(x->res.message);
        }
        if (x->rd) {
                x->o.pool->drv->reader_close(x->rd);
                x->rd = NULL;
        }
        if (x->d) {
                tp_disk *d = x->d;

                x->d = NULL;
                tp_disk_close(d, closed_then_finish, x);
                return;
        }
        finish(x);
}

static void fail_errno(vmr *x, int k, const char *what)
{
        fail(x,
             k == -EINVAL      ? VB_E_USAGE
             : k == -ESHUTDOWN ? VB_E_INTERRUPTED
                               : vb_error_from_errno(k),
             "%s: %s", what, strerror(-k));
}

/* ---- the VM ---- */

static void powered(void *userdata, vb_error r, const char *msg)
{
        vmr *x = userdata;

        if (r != VB_OK)
                return fail(x, r, "%s (the VM is restored but did not start)", msg);
        finish(x);
}

static void vm_created(void *userdata, vb_error r, const char *msg, const char *id)
{
        vmr *x = userdata;
        vb_hv_vm vm = { .name = (char *)x->o.name };
        int k;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        x->res.vm_id = strdup(id);
        if (!x->res.vm_id)
                return fail_errno(x, -ENOMEM, "result");
        if (!x->o.power_on)
                return finish(x);
        step(x, "starting vm %s (id %s)", x->o.name, id);
        vm.id = x->res.vm_id;
        k = x->o.drv->power(x->o.hv, &vm, VB_POWER_START, powered, x);
        if (k < 0)
                fail_errno(x, k, "starting the VM");
}

static void define_vm(vmr *x)
{
        int k;

        step(x, "defining vm %s", x->o.name);
        k = x->o.drv->vm_create(x->o.hv, x->config, vm_created, x);
        if (k < 0)
                fail_errno(x, k, "defining the VM");
}

/* ---- the disks ---- */

static void disk_next(vmr *x);

static void disk_closed(void *userdata)
{
        vmr *x = userdata;

        x->cur++;
        disk_next(x);
}

static void progress(void *userdata, uint64_t done, uint64_t total)
{
        vmr *x = userdata;

        (void)total;
        if (x->o.progress)
                x->o.progress(x->o.userdata, x->done_before + done, x->total);
}

static void written(void *userdata, int r, const sp_transfer_result *res)
{
        vmr *x = userdata;
        const dd_manifest_disk *md = &x->m->disks[x->cur];
        tp_disk *d = x->d;

        x->o.pool->drv->reader_close(x->rd);
        x->rd = NULL;
        if (r < 0) {
                if (r == -EBADMSG || r == -ENODATA)
                        return fail(x, vb_error_from_errno(r),
                                    "restore point %s, disk %s, offset %" PRIu64 ": the chunk is %s",
                                    x->res.restore_point, md->name, res->failed_offset,
                                    r == -ENODATA ? "missing" : "damaged");
                return fail(x, r == -ENOSPC ? VB_E_NO_SPACE : VB_E_TARGET, "restore point %s, disk %s: writing %s: %s",
                            x->res.restore_point, md->name, x->vol_path,
                            tp_disk_nbd(d) ? tp_nbd_error_message(tp_disk_nbd(d)) ?: strerror(-r) : strerror(-r));
        }
        x->res.bytes_written += res->bytes_done;
        x->done_before += md->size;
        x->d = NULL;
        tp_disk_close(d, disk_closed, x);
}

static void target_opened(void *userdata, int r, vb_error code, tp_disk *d, const char *message)
{
        vmr *x = userdata;
        const dd_manifest_disk *md = &x->m->disks[x->cur];
        sp_pipeline_opts po = { .window = 16, .progress = progress, .userdata = x };
        sp_target t;
        int k;

        if (r < 0)
                return fail(x, code != VB_OK ? code : VB_E_TARGET, "disk %s: opening %s: %s", md->name, x->vol_path,
                            message ?: strerror(-r));
        x->d = d;
        if (tp_disk_size(d) < md->size)
                return fail(x, VB_E_TARGET,
                            "disk %s: the new volume %s is smaller than the disk (%" PRIu64 " < %" PRIu64 " bytes)",
                            md->name, x->vol_path, tp_disk_size(d), md->size);
        k = x->o.pool->drv->reader_open(x->o.pool, x->m, md->name, &x->rd);
        if (k < 0)
                return fail(x, vb_error_from_errno(k), "restore point %s, disk %s: %s", x->res.restore_point, md->name,
                            strerror(-k));
        tp_disk_target(d, &t);
        k = sp_restore_start(x->loop, x->rd, &t, &po, written, x);
        if (k < 0)
                fail_errno(x, k, "starting the transfer");
}

static void target_got(void *userdata, vb_error r, const char *msg, const vb_hv_disk_source *src)
{
        vmr *x = userdata;
        tp_disk_opts o = *x->o.transfer;
        _cleanup_free_ char *err = NULL;
        int k;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        o.source = src->url;
        o.write = true;
        o.since = NULL;
        o.checkpoint = NULL;
        step(x, "writing disk %s to %s", x->m->disks[x->cur].name, src->url);
        k = tp_disk_open(x->loop, &o, target_opened, x, &err);
        if (k < 0)
                fail(x, VB_E_USAGE, "%s: %s", src->url, err ?: strerror(-k));
}

static void volume_made(void *userdata, vb_error r, const char *msg, const char *path)
{
        vmr *x = userdata;
        const dd_manifest_disk *md = &x->m->disks[x->cur];
        vb_hv_disk disk = { .device = md->name, .path = (char *)path, .format = md->format };
        char **v;
        int k;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        v = realloc(x->res.volumes, (x->res.n_volumes + 1) * sizeof(*v));
        if (!v)
                return fail_errno(x, -ENOMEM, "result");
        x->res.volumes = v;
        if (!(v[x->res.n_volumes] = strdup(path)))
                return fail_errno(x, -ENOMEM, "result");
        x->res.n_volumes++;
        free(x->vol_path);
        x->vol_path = strdup(path);
        /* The new VM's disk. */
        k = x->o.drv->config_disk(x->config, md->name, path, x->o.storage_pool, NULL);
        if (k < 0)
                return fail_errno(x, k, "the new VM's configuration");
        k = x->o.drv->disk_target(x->o.hv, &x->target, &disk, target_got, x);
        if (k < 0)
                fail_errno(x, k, "disk target");
}

/* The pool the disk was in (captured), unless told otherwise. */
static const char *pool_of(vmr *x, const char *disk)
{
        const char *pool = NULL;

        if (x->o.storage_pool)
                return x->o.storage_pool;
        if (x->o.drv->config_disk(x->config, disk, NULL, NULL, &pool) < 0)
                return NULL;
        return pool;
}

static void disk_next(vmr *x)
{
        const dd_manifest_disk *md;
        _cleanup_free_ char *vol = NULL;
        const char *format, *pool;
        int k;

        if (x->cur == x->m->n_disks)
                return define_vm(x);
        md = &x->m->disks[x->cur];
        format = md->format && streq(md->format, "raw") ? "raw" : "qcow2";
        pool = pool_of(x, md->name);
        if (asprintf(&vol, "%s-%s.%s", x->o.name, md->name, format) < 0)
                return fail_errno(x, -ENOMEM, "volume name");
        step(x, "creating volume %s in storage pool %s", vol, pool);
        k = x->o.drv->volume_create(x->o.hv, x->target.host_id, pool, vol, format, md->size, volume_made, x);
        if (k < 0)
                fail_errno(x, k, "creating a volume");
}

int vb_vmrestore_start(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_done_fn done, void *userdata)
{
        vmr *x;
        int k;

        if (!o->drv || !o->hv || !o->pool || !o->restore_point || !o->name || !o->transfer || !done ||
            !o->drv->volume_create || !o->drv->disk_target || !o->drv->vm_create || !o->drv->config_new ||
            !o->drv->config_disk)
                return -EINVAL;
        if (!dd_name_is_safe(o->name))
                return -EINVAL;
        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->loop = loop;
        x->o = *o;
        x->done = done;
        x->userdata = userdata;
        x->t0 = vb_now_ns();
        k = sp_pool_find(o->pool, o->restore_point, o->vm, &x->m);
        if (k < 0)
                goto fail;
        x->res.restore_point = x->m->id;
        if (!x->m->config || !json_is_object(x->m->config) || x->m->n_disks == 0) {
                k = -EBADMSG;
                goto fail;
        }
        x->target.name = strdup(o->name);
        x->target.host_id = o->host_id ? strdup(o->host_id) : x->m->vm.host_id ? strdup(x->m->vm.host_id) : NULL;
        if (!x->target.name || !x->target.host_id) {
                k = x->target.name ? -EINVAL : -ENOMEM;
                goto fail;
        }
        x->config = o->drv->config_new(x->m->config, o->name, x->target.host_id);
        if (!x->config) {
                k = -ENOMEM;
                goto fail;
        }
        /* Every disk must have a pool to go to before anything is made. */
        for (size_t i = 0; i < x->m->n_disks; i++) {
                if (!pool_of(x, x->m->disks[i].name)) {
                        k = -EDESTADDRREQ;
                        goto fail;
                }
                x->total += x->m->disks[i].size;
        }
        disk_next(x);
        return 0;
fail:
        json_decref(x->config);
        dd_manifest_free(x->m);
        free(x->target.name);
        free(x->target.host_id);
        free(x);
        return k;
}
