/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmrestore.c -- one restore point put back on a platform; what each kind
 * and path does, and in which order, is in vmrestore.h.
 *
 * DESIGN: one struct carries the restore. Resolution is a chain of driver
 * calls (the target VM, then each disk's volume) that ends in the plan;
 * the plan alone is answered by vb_vmrestore_plan(), while
 * vb_vmrestore_start() goes on: the target made ready (shut down, deleted),
 * the disks written (parallel_disks at a time, each volume -> disk target
 * -> transport -> restore pipeline -> close), then the VM defined or the
 * disk attached, then power. fail() keeps the first error; the restore
 * ends once no disk is in flight. A shutdown that outlives its timeout
 * fails the restore at once: the driver's late answer goes to a small
 * struct of its own (pw) so nothing is kept waiting for it.
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

#define FREE_NAME_TRIES 50

typedef struct vmr vmr;

typedef enum disk_action {
        DA_CREATE,    /* a new volume */
        DA_RECREATE,  /* the original file, gone: made again where it was */
        DA_OVERWRITE, /* the original file, written in place */
        DA_VOLUME,    /* an existing volume chosen by the user */
} disk_action;

static const char *const action_names[] = {
        [DA_CREATE] = "create",
        [DA_RECREATE] = "recreate",
        [DA_OVERWRITE] = "overwrite",
        [DA_VOLUME] = "write-volume",
};

typedef struct rdisk {
        vmr *x;
        const dd_manifest_disk *md;
        const char *device; /* md's device (or name) */
        vb_hv_disk was;     /* as captured, borrowed from the manifest's configuration */
        disk_action action;
        char *pool, *subdir, *name; /* a new volume */
        char *path;                 /* the file written (known once created) */
        const char *format;
        vb_prealloc prealloc;
        bool explicit_name;
        unsigned tries; /* free-name search */
        bool attach;    /* disk restore: attached to the VM afterwards */
        /* Writing. */
        tp_disk *d;
        sp_disk_reader *rd;
        uint64_t done;
} rdisk;

/* A power operation whose answer may come after the restore gave up on it. */
typedef struct pw {
        vmr *x; /* NULL once abandoned */
        uv_timer_t *timer;
        void (*next)(vmr *x);
} pw;

struct vmr {
        uv_loop_t *loop;
        vb_vmrestore_opts o;
        bool plan_only;
        vb_vmrestore_plan_fn plan_done;
        vb_vmrestore_done_fn done;
        void *userdata;
        vb_vmrestore_result res;
        dd_manifest *m;
        char *target_name, *host_id;
        vb_hv_vm vm; /* the target VM as it is, when it exists */
        bool exists, running;
        rdisk *disks;
        size_t n_disks, cur;
        json_t *plan, *actions, *warnings;
        bool overwrites;
        /* Executing. */
        size_t next, active;
        uint64_t total;
        json_t *config;
        pw *power;
        uint64_t t0;
};

static void step(vmr *x, const char *fmt, ...) _printf_(2, 3);
static void step(vmr *x, const char *fmt, ...)
{
        char what[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        log_debug("restore of %s to %s: %s", x->res.restore_point, x->target_name ?: "?", what);
        if (x->o.step)
                x->o.step(x->o.userdata, what);
}

static void note(json_t *list, const char *fmt, ...) _printf_(2, 3);
static void note(json_t *list, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n >= 0)
                json_array_append_new(list, json_string(s));
        free(s);
}

static void strv_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static int strv_push(char ***v, size_t *n, const char *s)
{
        char **nv = realloc(*v, (*n + 1) * sizeof(**v));

        if (!nv)
                return -ENOMEM;
        *v = nv;
        if (!(nv[*n] = strdup(s)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

static void strv_remove(char **v, size_t *n, const char *s)
{
        for (size_t i = 0; i < *n; i++)
                if (streq(v[i], s)) {
                        free(v[i]);
                        memmove(v + i, v + i + 1, (*n - i - 1) * sizeof(*v));
                        (*n)--;
                        return;
                }
}

static void vmr_free(vmr *x)
{
        if (x->power)
                x->power->x = NULL;
        for (size_t i = 0; i < x->n_disks; i++) {
                free(x->disks[i].pool);
                free(x->disks[i].subdir);
                free(x->disks[i].name);
                free(x->disks[i].path);
        }
        free(x->disks);
        strv_free(x->res.incomplete, x->res.n_incomplete);
        strv_free(x->res.volumes, x->res.n_volumes);
        free(x->res.vm_id);
        json_decref(x->plan);
        json_decref(x->actions);
        json_decref(x->warnings);
        json_decref(x->config);
        vb_hv_vm_clear(&x->vm);
        free(x->target_name);
        free(x->host_id);
        dd_manifest_free(x->m);
        free(x);
}

static void finish(vmr *x)
{
        x->res.seconds_ns = vb_now_ns() - x->t0;
        x->res.bytes_total = x->total;
        x->res.vm_name = x->target_name;
        if (x->plan_only) {
                json_t *plan = x->res.r == VB_OK ? x->plan : NULL;

                x->plan_done(x->userdata, x->res.r, x->res.message, plan);
        } else
                x->done(x->userdata, &x->res);
        vmr_free(x);
}

/* The first error wins; the restore ends once no disk is in flight. */
static void fail(vmr *x, vb_error r, const char *fmt, ...) _printf_(3, 4);
static void fail(vmr *x, vb_error r, const char *fmt, ...)
{
        va_list ap;
        size_t n;

        if (x->res.r == VB_OK) {
                x->res.r = r;
                va_start(ap, fmt);
                vsnprintf(x->res.message, sizeof(x->res.message), fmt, ap);
                va_end(ap);
        }
        if (x->active)
                return;
        /* The incomplete target: say where it is. */
        n = strlen(x->res.message);
        for (size_t i = 0; i < x->res.n_incomplete && n < sizeof(x->res.message); i++) {
                snprintf(x->res.message + n, sizeof(x->res.message) - n, "%s%s",
                         i ? ", " : "; left incomplete: ", x->res.incomplete[i]);
                n = strlen(x->res.message);
        }
        finish(x);
}

static vb_error errno_code(int k)
{
        return k == -EINVAL ? VB_E_USAGE : k == -ESHUTDOWN ? VB_E_INTERRUPTED : vb_error_from_errno(k);
}

static void fail_errno(vmr *x, int k, const char *what)
{
        fail(x, errno_code(k), "%s: %s", what, strerror(-k));
}

static const rdisk *disk_of(const vmr *x, const char *device)
{
        for (size_t i = 0; i < x->n_disks; i++)
                if (streq(x->disks[i].device, device))
                        return &x->disks[i];
        return NULL;
}

/* The settings of a disk: its own entry, else the entry for every disk. */
static const vb_restore_disk *disk_opts(const vmr *x, const char *device)
{
        static const vb_restore_disk none = { 0 };
        const vb_restore_disk *all = NULL;

        if (x->o.kind == VB_RESTORE_DISK)
                return x->o.n_disks ? &x->o.disks[0] : &none;
        for (size_t i = 0; i < x->o.n_disks; i++) {
                if (streq_ptr(x->o.disks[i].device, device))
                        return &x->o.disks[i];
                if (!x->o.disks[i].device)
                        all = &x->o.disks[i];
        }
        return all ?: &none;
}

/* The VM the drivers reach disks through: the target's name and host. */
static vb_hv_vm target_ref(vmr *x)
{
        return (vb_hv_vm){ .id = x->exists ? x->vm.id : x->res.vm_id,
                           .name = x->target_name,
                           .host_id = x->host_id,
                           .state = x->running ? VB_VM_RUNNING : VB_VM_SHUT_OFF };
}

/* ==== power, with the shutdown timeout ==== */

static void pw_free(pw *p)
{
        if (p->timer)
                uv_close((uv_handle_t *)p->timer, (uv_close_cb)free);
        free(p);
}

static void pw_answered(void *userdata, vb_error r, const char *msg)
{
        pw *p = userdata;
        vmr *x = p->x;
        void (*next)(vmr *) = p->next;

        pw_free(p);
        if (!x)
                return; /* the restore gave up on it already */
        x->power = NULL;
        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        next(x);
}

static void pw_timeout(uv_timer_t *t)
{
        pw *p = t->data;
        vmr *x = p->x;

        if (!x)
                return;
        p->x = NULL;
        x->power = NULL;
        fail(x, VB_E_REFUSED,
             "vm %s did not shut down within %u s (a VM without an operating system cannot): shut it down "
             "first; nothing was written",
             x->target_name, (x->o.shutdown_timeout_ms ?: VB_RESTORE_SHUTDOWN_TIMEOUT_MS) / 1000);
}

static void power(vmr *x, vb_power_op op, void (*next)(vmr *x))
{
        vb_hv_vm vm = target_ref(x);
        pw *p = calloc(1, sizeof(*p));
        int k;

        if (!p)
                return fail_errno(x, -ENOMEM, "power");
        p->x = x;
        p->next = next;
        if (op == VB_POWER_SHUTDOWN) {
                p->timer = malloc(sizeof(*p->timer));
                if (!p->timer) {
                        free(p);
                        return fail_errno(x, -ENOMEM, "power");
                }
                uv_timer_init(x->loop, p->timer);
                p->timer->data = p;
                uv_timer_start(p->timer, pw_timeout, x->o.shutdown_timeout_ms ?: VB_RESTORE_SHUTDOWN_TIMEOUT_MS, 0);
        }
        x->power = p;
        k = x->o.drv->power(x->o.hv, &vm, op, pw_answered, p);
        if (k < 0) {
                x->power = NULL;
                pw_free(p);
                fail_errno(x, k, op == VB_POWER_START ? "starting the VM" : "shutting the VM down");
        }
}

/* ==== the end: define, attach, start ==== */

static void done_ok(vmr *x)
{
        step(x, "done");
        finish(x);
}

static void start_vm(vmr *x)
{
        step(x, "starting vm %s", x->target_name);
        power(x, VB_POWER_START, done_ok);
}

static void vm_created(void *userdata, vb_error r, const char *msg, const char *id)
{
        vmr *x = userdata;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        x->res.vm_id = strdup(id);
        if (!x->res.vm_id)
                return fail_errno(x, -ENOMEM, "result");
        x->running = false;
        if (x->o.power_on)
                return start_vm(x);
        done_ok(x);
}

static void define_vm(vmr *x)
{
        vb_hv_vm_settings s = {
                .name = x->target_name,
                .title = x->o.original ? x->m->vm.title : NULL,
                .host_id = x->host_id,
                .keep_identity = x->o.original && x->o.keep_mac,
        };
        const char **devices = calloc(x->n_disks, sizeof(*devices));
        int k;

        if (!devices)
                return fail_errno(x, -ENOMEM, "the VM's configuration");
        for (size_t i = 0; i < x->n_disks; i++)
                devices[i] = x->disks[i].device;
        s.devices = devices;
        s.n_devices = x->n_disks;
        if (!x->o.original) {
                s.cpu_sockets = x->o.cpu_sockets;
                s.cpu_cores = x->o.cpu_cores;
                s.cpu_mode = x->o.cpu_mode;
                s.memory_mb = x->o.memory_mb;
                s.nics = x->o.nics;
                s.n_nics = x->o.n_nics;
                s.nics_set = x->o.nics_set;
        }
        errno = 0;
        x->config = x->o.drv->config_new(x->m->config, &s);
        free(devices);
        if (!x->config)
                return fail_errno(x, errno == EINVAL ? -EINVAL : -ENOMEM, "the VM's configuration");
        for (size_t i = 0; i < x->n_disks; i++) {
                const rdisk *rd = &x->disks[i];

                k = x->o.drv->config_disk(x->config, rd->device, rd->path, rd->pool, NULL);
                if (k < 0)
                        return fail_errno(x, k, "the VM's configuration");
        }
        step(x, "defining vm %s on host %s", x->target_name, x->host_id);
        k = x->o.drv->vm_create(x->o.hv, x->config, vm_created, x);
        if (k < 0)
                fail_errno(x, k, "defining the VM");
}

static void attach_next(vmr *x);

static void attached(void *userdata, vb_error r, const char *msg)
{
        vmr *x = userdata;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        x->cur++;
        attach_next(x);
}

static void restart_off(vmr *x)
{
        x->running = false;
        start_vm(x);
}

/* Disk restore: attach what needs it, then restart on request. */
static void attach_next(vmr *x)
{
        vb_hv_vm vm = target_ref(x);
        vb_hv_disk disk;
        rdisk *rd;
        int k;

        for (; x->cur < x->n_disks && !x->disks[x->cur].attach; x->cur++)
                ;
        if (x->cur == x->n_disks) {
                if (!x->o.restart)
                        return done_ok(x);
                if (x->running) {
                        step(x, "shutting down vm %s to restart it", x->target_name);
                        return power(x, VB_POWER_SHUTDOWN, restart_off);
                }
                return start_vm(x);
        }
        rd = &x->disks[x->cur];
        disk = (vb_hv_disk){
                .device = (char *)rd->was.device, .path = rd->path, .format = (char *)rd->format, .bus = rd->was.bus
        };
        /* The captured device name only when the VM has not given it to another disk. */
        for (size_t i = 0; i < x->vm.n_disks; i++)
                if (streq_ptr(x->vm.disks[i].device, disk.device))
                        disk.device = NULL;
        if (x->o.kind == VB_RESTORE_DISK && !x->o.original)
                disk.device = NULL;
        step(x, "attaching %s to vm %s", rd->path, x->target_name);
        k = x->o.drv->disk_attach(x->o.hv, &vm, &disk, attached, x);
        if (k < 0)
                fail_errno(x, k, "attaching the disk");
}

static void disks_written(vmr *x)
{
        if (x->o.kind == VB_RESTORE_VM)
                return define_vm(x);
        x->cur = 0;
        attach_next(x);
}

/* ==== the disks ==== */

static void disks_next(vmr *x);

static void disk_closed(void *userdata)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;

        x->active--;
        if (x->res.r != VB_OK)
                return fail(x, x->res.r, "%s", x->res.message);
        disks_next(x);
}

static void disk_end(rdisk *rd)
{
        tp_disk *d = TAKE_PTR(rd->d);

        if (rd->rd) {
                rd->x->o.pool->drv->reader_close(rd->rd);
                rd->rd = NULL;
        }
        if (d)
                return tp_disk_close(d, disk_closed, rd);
        disk_closed(rd);
}

/* A disk's error: kept as the restore's (the first), the disk closed. */
static void disk_fail(rdisk *rd, vb_error r, const char *fmt, ...) _printf_(3, 4);
static void disk_fail(rdisk *rd, vb_error r, const char *fmt, ...)
{
        vmr *x = rd->x;
        va_list ap;

        if (x->res.r == VB_OK) {
                x->res.r = r;
                va_start(ap, fmt);
                vsnprintf(x->res.message, sizeof(x->res.message), fmt, ap);
                va_end(ap);
        }
        disk_end(rd);
}

static void progress(void *userdata, uint64_t done, uint64_t total)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;
        uint64_t sum = 0;

        (void)total;
        rd->done = done;
        for (size_t i = 0; i < x->n_disks; i++)
                sum += x->disks[i].done;
        if (x->o.progress)
                x->o.progress(x->o.userdata, sum, x->total);
}

static void written(void *userdata, int r, const sp_transfer_result *res)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;

        x->o.pool->drv->reader_close(rd->rd);
        rd->rd = NULL;
        if (r < 0) {
                if (r == -EBADMSG || r == -ENODATA)
                        return disk_fail(rd, vb_error_from_errno(r),
                                         "restore point %s, disk %s, offset %" PRIu64 ": the chunk is %s",
                                         x->res.restore_point, rd->device, res->failed_offset,
                                         r == -ENODATA ? "missing" : "damaged");
                return disk_fail(rd, r == -ENOSPC ? VB_E_NO_SPACE : VB_E_TARGET,
                                 "restore point %s, disk %s: writing %s: %s", x->res.restore_point, rd->device,
                                 rd->path,
                                 rd->d && tp_disk_nbd(rd->d) ? tp_nbd_error_message(tp_disk_nbd(rd->d)) ?: strerror(-r)
                                                             : strerror(-r));
        }
        x->res.bytes_written += res->bytes_done;
        rd->done = rd->md->size;
        step(x, "disk %s written to %s", rd->device, rd->path);
        strv_remove(x->res.incomplete, &x->res.n_incomplete, rd->path);
        if (strv_push(&x->res.volumes, &x->res.n_volumes, rd->path) < 0)
                return disk_fail(rd, VB_E_FAILED, "result: %s", strerror(ENOMEM));
        disk_end(rd);
}

static void target_opened(void *userdata, int r, vb_error code, tp_disk *d, const char *message)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;
        sp_pipeline_opts po = { .window = 16, .progress = progress, .userdata = rd };
        sp_target t;
        int k;

        if (r < 0)
                return disk_fail(rd, code != VB_OK ? code : VB_E_TARGET, "disk %s: opening %s: %s", rd->device,
                                 rd->path, message ?: strerror(-r));
        rd->d = d;
        if (tp_disk_size(d) < rd->md->size)
                return disk_fail(rd, VB_E_TARGET,
                                 "disk %s: %s is smaller than the disk (%" PRIu64 " < %" PRIu64 " bytes)", rd->device,
                                 rd->path, tp_disk_size(d), rd->md->size);
        k = x->o.pool->drv->reader_open(x->o.pool, x->m, rd->md->name, &rd->rd);
        if (k < 0)
                return disk_fail(rd, vb_error_from_errno(k), "restore point %s, disk %s: %s", x->res.restore_point,
                                 rd->device, strerror(-k));
        tp_disk_target(d, &t);
        k = sp_restore_start(x->loop, rd->rd, &t, &po, written, rd);
        if (k < 0)
                disk_fail(rd, errno_code(k), "disk %s: starting the transfer: %s", rd->device, strerror(-k));
}

static void target_got(void *userdata, vb_error r, const char *msg, const vb_hv_disk_source *src)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;
        tp_disk_opts o = *x->o.transfer;
        _cleanup_free_ char *err = NULL;
        int k;

        if (r != VB_OK)
                return disk_fail(rd, r, "%s", msg);
        o.source = src->url;
        o.write = true;
        o.nbd.keep_allocation = rd->prealloc == VB_PREALLOC_LAZY || rd->prealloc == VB_PREALLOC_EAGER;
        o.since = NULL;
        o.checkpoint = NULL;
        step(x, "writing disk %s to %s", rd->device, rd->path);
        k = tp_disk_open(x->loop, &o, target_opened, rd, &err);
        if (k < 0)
                disk_fail(rd, VB_E_USAGE, "%s: %s", src->url, err ?: strerror(-k));
}

static void disk_write(rdisk *rd)
{
        vmr *x = rd->x;
        vb_hv_vm vm = target_ref(x);
        vb_hv_disk disk = { .device = (char *)rd->device, .path = rd->path, .format = (char *)rd->format };
        _cleanup_free_ char *alone = NULL;
        int k;

        /* A volume not attached yet belongs to no VM: the host's disk
         * service serves it as a file, even when the VM it is for runs. */
        if (rd->attach) {
                if (asprintf(&alone, "restore-%s", strrchr(rd->path, '/') ? strrchr(rd->path, '/') + 1 : rd->path) < 0)
                        return disk_fail(rd, VB_E_FAILED, "result: %s", strerror(ENOMEM));
                vm.id = NULL;
                vm.name = alone;
                vm.state = VB_VM_SHUT_OFF;
        }

        /* Named incomplete before the first byte goes in. */
        if (strv_push(&x->res.incomplete, &x->res.n_incomplete, rd->path) < 0)
                return disk_fail(rd, VB_E_FAILED, "result: %s", strerror(ENOMEM));
        if (x->o.volume)
                x->o.volume(x->o.userdata, rd->path);
        k = x->o.drv->disk_target(x->o.hv, &vm, &disk, target_got, rd);
        if (k < 0)
                disk_fail(rd, errno_code(k), "disk %s: its target: %s", rd->device, strerror(-k));
}

static void volume_made(void *userdata, vb_error r, const char *msg, const char *path)
{
        rdisk *rd = userdata;

        if (r != VB_OK)
                return disk_fail(rd, r, "%s", msg);
        free(rd->path);
        rd->path = strdup(path);
        if (!rd->path)
                return disk_fail(rd, VB_E_FAILED, "result: %s", strerror(ENOMEM));
        disk_write(rd);
}

static void disk_go(rdisk *rd)
{
        vmr *x = rd->x;
        vb_hv_volume v = {
                .host_id = x->host_id, .format = rd->format, .size = rd->md->size, .prealloc = rd->prealloc
        };
        int k;

        if (rd->action == DA_OVERWRITE || rd->action == DA_VOLUME)
                return disk_write(rd);
        if (rd->action == DA_RECREATE) {
                v.path = rd->path;
                v.pool = rd->pool;
                step(x, "re-creating %s", rd->path);
        } else {
                v.pool = rd->pool;
                v.subdir = rd->subdir;
                v.name = rd->name;
                step(x, "creating volume %s%s%s in storage pool %s", rd->subdir ?: "", rd->subdir ? "/" : "", rd->name,
                     rd->pool);
        }
        k = x->o.drv->volume_create(x->o.hv, &v, volume_made, rd);
        if (k < 0)
                disk_fail(rd, errno_code(k), "disk %s: creating its volume: %s", rd->device, strerror(-k));
}

static void disks_next(vmr *x)
{
        unsigned width = x->o.parallel_disks ? x->o.parallel_disks : 1;

        while (x->res.r == VB_OK && x->next < x->n_disks && x->active < width) {
                x->active++;
                disk_go(&x->disks[x->next++]);
        }
        if (x->active)
                return;
        if (x->res.r != VB_OK)
                return fail(x, x->res.r, "%s", x->res.message);
        disks_written(x);
}

/* ==== the target made ready ==== */

static void target_deleted(void *userdata, vb_error r, const char *msg)
{
        vmr *x = userdata;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        x->exists = false; /* a new one is defined in its place */
        free(x->vm.id);
        x->vm.id = NULL;
        disks_next(x);
}

static void target_off(vmr *x)
{
        int k;

        x->running = false;
        if (x->o.kind == VB_RESTORE_DISK)
                return disks_next(x);
        step(x, "deleting vm %s (id %s), keeping its files", x->target_name, x->vm.id);
        k = x->o.drv->vm_delete(x->o.hv, &x->vm, false, target_deleted, x);
        if (k < 0)
                fail_errno(x, k, "deleting the VM");
}

static void execute(vmr *x)
{
        bool touch = x->exists && (x->o.kind == VB_RESTORE_VM || x->o.original);

        for (size_t i = 0; i < x->n_disks; i++)
                x->total += x->disks[i].md->size;
        if (touch && x->running) {
                step(x, "shutting down vm %s", x->target_name);
                return power(x, VB_POWER_SHUTDOWN, target_off);
        }
        if (touch)
                return target_off(x);
        disks_next(x);
}

/* ==== resolution and the plan ==== */

static void resolve_next(vmr *x);

static void plan_ready(vmr *x)
{
        json_t *disks = json_array(), *target;

        if (!disks)
                return fail_errno(x, -ENOMEM, "plan");
        for (size_t i = 0; i < x->n_disks; i++) {
                const rdisk *rd = &x->disks[i];
                json_t *d =
                        json_pack("{s:s, s:I, s:s?, s:s, s:s?, s:s?, s:s?, s:s?}", "device", rd->device, "size",
                                  (json_int_t)rd->md->size, "format", rd->format, "action", action_names[rd->action],
                                  "pool", rd->pool, "subdir", rd->subdir, "path", rd->path ?: rd->name, "prealloc",
                                  rd->action == DA_CREATE ? vb_prealloc_to_string(rd->prealloc) : NULL);

                if (!d || json_array_append_new(disks, d) < 0) {
                        json_decref(disks);
                        return fail_errno(x, -ENOMEM, "plan");
                }
        }
        target = json_pack("{s:s, s:s, s:b, s:s?, s:s?}", "name", x->target_name, "host", x->host_id, "exists",
                           x->exists, "id", x->exists ? x->vm.id : NULL, "state",
                           x->exists ? vb_vm_state_to_string(x->vm.state) : NULL);
        x->plan = json_pack("{s:s, s:s, s:s, s:s?, s:o?, s:o, s:O, s:O, s:b}", "kind",
                            x->o.kind == VB_RESTORE_VM ? "vm" : "disk", "path", x->o.original ? "original" : "new",
                            "restore_point", x->res.restore_point, "vm", x->m->vm.name, "target", target, "disks",
                            disks, "actions", x->actions, "warnings", x->warnings, "overwrites", x->overwrites);
        if (!x->plan)
                return fail_errno(x, -ENOMEM, "plan");
        if (x->plan_only)
                return finish(x);
        execute(x);
}

/* "define vm NAME on host H", with what changes of the captured settings. */
static void plan_define(vmr *x)
{
        char what[512] = "";
        size_t n = 0;

        if (!x->o.original) {
                if (x->o.cpu_sockets)
                        n += snprintf(what + n, sizeof(what) - n, ", %u CPUs", x->o.cpu_sockets);
                if (x->o.cpu_cores && n < sizeof(what))
                        n += snprintf(what + n, sizeof(what) - n, ", %u cores each", x->o.cpu_cores);
                if (x->o.cpu_mode && n < sizeof(what))
                        n += snprintf(what + n, sizeof(what) - n, ", CPU mode %s", x->o.cpu_mode);
                if (x->o.memory_mb && n < sizeof(what))
                        n += snprintf(what + n, sizeof(what) - n, ", %" PRIu64 " MB of memory", x->o.memory_mb);
                for (size_t i = 0; x->o.nics_set && i < x->o.n_nics && n < sizeof(what); i++)
                        n += snprintf(what + n, sizeof(what) - n, ", a NIC on %s%s%s", x->o.nics[i].vswitch ?: "?",
                                      x->o.nics[i].profile ? " with profile " : "", x->o.nics[i].profile ?: "");
                if (x->o.nics_set && x->o.n_nics == 0 && n < sizeof(what))
                        snprintf(what + n, sizeof(what) - n, ", no NIC");
        } else if (x->o.keep_mac)
                snprintf(what, sizeof(what), ", its MAC addresses kept");
        note(x->actions, "define vm %s on host %s%s%s", x->target_name, x->host_id, what[0] ? " with" : "",
             what[0] ? what + 1 : "");
}

/* The actions the plan lists, in the order they happen. */
static void plan_actions(vmr *x)
{
        char size[32];
        unsigned timeout = (x->o.shutdown_timeout_ms ?: VB_RESTORE_SHUTDOWN_TIMEOUT_MS) / 1000;
        bool touch = x->exists && (x->o.kind == VB_RESTORE_VM || x->o.original);

        if (touch && x->running)
                note(x->actions, "shut down vm %s (id %s, running; fails if it takes more than %u s)", x->target_name,
                     x->vm.id, timeout);
        if (touch && x->o.kind == VB_RESTORE_VM) {
                note(x->actions, "delete vm %s (id %s); its files stay", x->target_name, x->vm.id);
                x->overwrites = true;
        }
        for (size_t i = 0; i < x->n_disks; i++) {
                const rdisk *rd = &x->disks[i];

                vb_format_size(rd->md->size, size, sizeof(size));
                switch (rd->action) {
                case DA_CREATE:
                        note(x->actions, "create volume %s%s%s in storage pool %s (%s, %s, %s) and write disk %s",
                             rd->subdir ?: "", rd->subdir ? "/" : "", rd->name, rd->pool, rd->format, size,
                             vb_prealloc_to_string(rd->prealloc), rd->device);
                        break;
                case DA_RECREATE:
                        note(x->actions, "re-create %s (%s, %s) and write disk %s", rd->path, rd->format, size,
                             rd->device);
                        break;
                case DA_OVERWRITE:
                case DA_VOLUME:
                        note(x->actions, "overwrite %s with disk %s (%s)", rd->path, rd->device, size);
                        x->overwrites = true;
                        break;
                }
                if (rd->attach)
                        note(x->actions, "attach it to vm %s", x->target_name);
        }
        if (x->o.kind == VB_RESTORE_VM)
                plan_define(x);
        if (x->o.kind == VB_RESTORE_DISK && x->o.restart && x->running && !x->o.original)
                note(x->actions, "shut down vm %s (fails if it takes more than %u s)", x->target_name, timeout);
        if ((x->o.kind == VB_RESTORE_VM && x->o.power_on) || (x->o.kind == VB_RESTORE_DISK && x->o.restart))
                note(x->actions, "start vm %s", x->target_name);
}

static void resolved(rdisk *rd)
{
        rd->x->cur++;
        resolve_next(rd->x);
}

static int free_name(rdisk *rd);

/* A new volume's name: taken? then the next one. */
static void name_checked(void *userdata, vb_error r, const char *msg, const vb_hv_volume *v)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;
        int k;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        if (!v) {
                rd->path = NULL;
                return resolved(rd);
        }
        if (rd->explicit_name)
                return fail(x, VB_E_EXISTS, "disk %s: volume %s exists in storage pool %s (%s); choose another name",
                            rd->device, rd->name, rd->pool, v->path ?: "?");
        if (++rd->tries >= FREE_NAME_TRIES)
                return fail(x, VB_E_EXISTS, "disk %s: no free volume name like %s in storage pool %s", rd->device,
                            rd->name, rd->pool);
        k = free_name(rd);
        if (k < 0)
                fail_errno(x, k, "volume name");
}

/* stem.ext, stem-2.ext, stem-3.ext ... */
static int free_name(rdisk *rd)
{
        vmr *x = rd->x;
        vb_hv_volume v = { .host_id = x->host_id, .pool = rd->pool, .subdir = rd->subdir };
        const char *ext = streq(rd->format, "raw") ? "raw" : "qcow2";
        _cleanup_free_ char *stem = NULL;

        if (!rd->explicit_name) {
                free(rd->name);
                rd->name = NULL;
                if (rd->was.path && x->o.kind == VB_RESTORE_DISK) {
                        const char *base = strrchr(rd->was.path, '/') ? strrchr(rd->was.path, '/') + 1 : rd->was.path;
                        const char *dot = strrchr(base, '.');

                        stem = strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
                } else if (asprintf(&stem, "%s-%s", x->target_name, rd->device) < 0)
                        stem = NULL;
                if (!stem)
                        return -ENOMEM;
                if ((rd->tries ? asprintf(&rd->name, "%s-%u.%s", stem, rd->tries + 1, ext)
                               : asprintf(&rd->name, "%s.%s", stem, ext)) < 0) {
                        rd->name = NULL;
                        return -ENOMEM;
                }
                if (!vb_restore_name_ok(rd->name))
                        return -EINVAL;
        }
        v.name = rd->name;
        return x->o.drv->volume_stat(x->o.hv, &v, name_checked, rd);
}

/* A volume chosen by the user (raw disks on block pools). */
static void volume_checked(void *userdata, vb_error r, const char *msg, const vb_hv_volume *v)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        if (!v)
                return fail(x, VB_E_NOT_FOUND, "disk %s: volume %s does not exist on host %s", rd->device, rd->path,
                            x->host_id);
        if (v->format && !streq(v->format, rd->format))
                return fail(x, VB_E_USAGE, "disk %s is %s, volume %s is %s", rd->device, rd->format, rd->path,
                            v->format);
        if (v->size && v->size < rd->md->size)
                return fail(x, VB_E_USAGE,
                            "disk %s: volume %s is smaller than the disk (%" PRIu64 " < %" PRIu64 " bytes)", rd->device,
                            rd->path, v->size, rd->md->size);
        resolved(rd);
}

/* The original file: there (overwrite it) or gone (make it again). */
static void original_checked(void *userdata, vb_error r, const char *msg, const vb_hv_volume *v)
{
        rdisk *rd = userdata;
        vmr *x = rd->x;

        if (r != VB_OK)
                return fail(x, r, "%s", msg);
        if (!v) {
                rd->action = DA_RECREATE;
                return resolved(rd);
        }
        if (v->size && v->size < rd->md->size)
                return fail(x, VB_E_TARGET,
                            "disk %s: %s is smaller than the disk was (%" PRIu64 " < %" PRIu64 " bytes)", rd->device,
                            rd->path, v->size, rd->md->size);
        rd->action = DA_OVERWRITE;
        resolved(rd);
}

static bool vm_has_path(const vb_hv_vm *vm, const char *path)
{
        for (size_t i = 0; i < vm->n_disks; i++)
                if (streq_ptr(vm->disks[i].path, path))
                        return true;
        return false;
}

static void resolve_next(vmr *x)
{
        vb_hv_volume v = { .host_id = x->host_id };
        const vb_restore_disk *dopt;
        rdisk *rd;
        int k;

        if (x->cur == x->n_disks)
                return plan_actions(x), plan_ready(x);
        rd = &x->disks[x->cur];
        rd->format = rd->md->format && streq(rd->md->format, "raw") ? "raw" : "qcow2";
        if (x->o.original) {
                if (!rd->was.path || rd->was.path[0] != '/')
                        return fail(x, VB_E_PARENT, "restore point %s: disk %s has no original path captured",
                                    x->res.restore_point, rd->device);
                rd->path = strdup(rd->was.path);
                rd->pool = rd->was.pool ? strdup(rd->was.pool) : NULL;
                if (!rd->path || (rd->was.pool && !rd->pool))
                        return fail_errno(x, -ENOMEM, "plan");
                if (x->o.kind == VB_RESTORE_DISK && x->exists && vm_has_path(&x->vm, rd->path)) {
                        rd->action = DA_OVERWRITE;
                        return resolved(rd);
                }
                rd->attach = x->o.kind == VB_RESTORE_DISK;
                v.path = rd->path;
                v.pool = rd->pool;
                k = x->o.drv->volume_stat(x->o.hv, &v, original_checked, rd);
                if (k < 0)
                        fail_errno(x, k, "looking for the disk's file");
                return;
        }
        dopt = disk_opts(x, rd->device);
        rd->prealloc = dopt->prealloc;
        rd->attach = x->o.kind == VB_RESTORE_DISK;
        if (dopt->volume) {
                if (dopt->volume[0] != '/')
                        return fail(x, VB_E_USAGE, "disk %s: the volume must be an absolute path", rd->device);
                if (!streq(rd->format, "raw"))
                        return fail(x, VB_E_USAGE, "disk %s is %s: only raw disks go into an existing volume",
                                    rd->device, rd->format);
                rd->action = DA_VOLUME;
                rd->path = strdup(dopt->volume);
                if (!rd->path)
                        return fail_errno(x, -ENOMEM, "plan");
                v.path = rd->path;
                k = x->o.drv->volume_stat(x->o.hv, &v, volume_checked, rd);
                if (k < 0)
                        fail_errno(x, k, "looking for the volume");
                return;
        }
        rd->action = DA_CREATE;
        if (!dopt->pool && !rd->was.pool)
                return fail(x, VB_E_USAGE, "disk %s: its storage pool is not known: choose one", rd->device);
        if ((dopt->subdir && !vb_restore_name_ok(dopt->subdir)) || (dopt->name && !vb_restore_name_ok(dopt->name)))
                return fail(x, VB_E_USAGE,
                            "disk %s: a sub-directory or volume name may hold letters, digits, '-', "
                            "'_' and '.', not start with '-' or '.', and not be all digits",
                            rd->device);
        rd->pool = strdup(dopt->pool ?: rd->was.pool);
        rd->subdir = dopt->subdir ? strdup(dopt->subdir) : NULL;
        rd->explicit_name = dopt->name != NULL;
        rd->name = dopt->name ? strdup(dopt->name) : NULL;
        if (!rd->pool || (dopt->subdir && !rd->subdir) || (dopt->name && !rd->name))
                return fail_errno(x, -ENOMEM, "plan");
        k = free_name(rd);
        if (k < 0)
                fail_errno(x, k, "volume name");
}

/* Which disks, and what the plan warns about them. */
static int choose_disks(vmr *x)
{
        x->disks = calloc(x->m->n_disks, sizeof(*x->disks));
        if (!x->disks)
                return -ENOMEM;
        for (size_t i = 0; i < x->m->n_disks; i++) {
                const dd_manifest_disk *md = &x->m->disks[i];
                const char *device = md->device ?: md->name;
                bool chosen = x->o.n_devices == 0;
                rdisk *rd;

                if (x->o.kind == VB_RESTORE_DISK)
                        chosen = streq(device, x->o.disk) || streq(md->name, x->o.disk);
                for (size_t j = 0; j < x->o.n_devices; j++)
                        if (streq(x->o.devices[j], device) || streq(x->o.devices[j], md->name))
                                chosen = true;
                if (!chosen) {
                        if (x->o.kind == VB_RESTORE_VM)
                                note(x->warnings,
                                     x->o.original ? "%s is not restored: the VM is defined again without it; its file "
                                                     "is left as it is"
                                                   : "%s is not restored: the new VM has no such disk",
                                     device);
                        continue;
                }
                rd = &x->disks[x->n_disks++];
                rd->x = x;
                rd->md = md;
                rd->device = device;
                if (x->o.drv->config_disk(x->m->config, device, NULL, NULL, &rd->was) < 0)
                        rd->was = (vb_hv_disk){ .device = (char *)device };
        }
        /* Every disk named must be in the restore point. */
        for (size_t j = 0; j < x->o.n_devices; j++)
                if (!disk_of(x, x->o.devices[j]))
                        return -ENOENT;
        if (x->n_disks == 0)
                return -ENOENT;
        return 0;
}

static bool in_restore_point(const vmr *x, const char *device)
{
        for (size_t i = 0; device && i < x->m->n_disks; i++)
                if (streq_ptr(x->m->disks[i].device, device) || streq(x->m->disks[i].name, device))
                        return true;
        return false;
}

static void target_looked_up(void *userdata, vb_error r, const char *msg, const vb_hv_vm *vm)
{
        vmr *x = userdata;
        int k;

        if (r != VB_OK && r != VB_E_NOT_FOUND)
                return fail(x, r, "%s", msg);
        if (r == VB_OK) {
                k = vb_hv_vm_copy(vm, &x->vm);
                if (k < 0)
                        return fail_errno(x, k, "plan");
                x->exists = true;
                x->running = vm->state == VB_VM_RUNNING || vm->state == VB_VM_PAUSED;
        }
        if (x->o.kind == VB_RESTORE_DISK && !x->exists)
                return fail(x, VB_E_NOT_FOUND, "%s",
                            x->o.original ? "the VM no longer exists: restore the whole VM instead"
                                          : "the target VM does not exist");
        if (x->o.kind == VB_RESTORE_VM && !x->o.original && x->exists && !x->o.overwrite)
                return fail(x, VB_E_EXISTS, "a VM named %s exists (id %s): choose another name, or overwrite it",
                            x->target_name, x->vm.id);
        /* The host: the one asked for, else where the VM is now, else where it was. */
        free(x->host_id);
        if (x->o.kind == VB_RESTORE_DISK || (x->o.original && x->exists))
                x->host_id = x->vm.host_id ? strdup(x->vm.host_id) : NULL;
        else
                x->host_id = x->o.host_id ? strdup(x->o.host_id) : x->m->vm.host_id ? strdup(x->m->vm.host_id) : NULL;
        if (!x->host_id)
                return fail(x, VB_E_USAGE, "no host is known for vm %s: choose one", x->target_name);
        if (x->exists && x->o.kind == VB_RESTORE_VM && x->o.original && x->m->vm.uuid && x->vm.uuid &&
            !streq(x->m->vm.uuid, x->vm.uuid))
                note(x->warnings, "vm %s (uuid %s) is not the VM backed up (uuid %s), only of the same name",
                     x->target_name, x->vm.uuid, x->m->vm.uuid);
        if (x->exists && x->o.kind == VB_RESTORE_VM && x->o.original)
                for (size_t i = 0; i < x->vm.n_disks; i++)
                        if (!in_restore_point(x, x->vm.disks[i].device))
                                note(x->warnings,
                                     "vm %s's disk %s (%s) is not in the restore point: the VM is defined without it; "
                                     "its file stays",
                                     x->target_name, x->vm.disks[i].device ?: "?", x->vm.disks[i].path ?: "?");
        x->cur = 0;
        resolve_next(x);
}

bool vb_restore_name_ok(const char *s)
{
        size_t n;

        if (!s || !*s || s[0] == '-' || s[0] == '.' || (n = strlen(s)) > 128)
                return false;
        if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != n)
                return false;
        return strspn(s, "0123456789") != n;
}

static int begin(uv_loop_t *loop, const vb_vmrestore_opts *o, bool plan_only, vb_vmrestore_plan_fn plan_done,
                 vb_vmrestore_done_fn done, void *userdata)
{
        const char *key;
        vmr *x;
        int k;

        if (!o->drv || !o->hv || !o->pool || !o->restore_point || !o->transfer || !o->drv->vm_get ||
            !o->drv->volume_create || !o->drv->volume_stat || !o->drv->disk_target || !o->drv->vm_create ||
            !o->drv->config_new || !o->drv->config_disk || !o->drv->power || !o->drv->vm_delete ||
            !o->drv->disk_attach || o->parallel_disks > VB_RESTORE_PARALLEL_DISKS_MAX)
                return -EINVAL;
        if (o->kind == VB_RESTORE_DISK && (!o->disk || (!o->original && !o->target_vm)))
                return -EINVAL;
        if (o->name && !vb_restore_name_ok(o->name))
                return -EINVAL;
        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->loop = loop;
        x->o = *o;
        x->plan_only = plan_only;
        x->plan_done = plan_done;
        x->done = done;
        x->userdata = userdata;
        x->t0 = vb_now_ns();
        x->actions = json_array();
        x->warnings = json_array();
        if (!x->actions || !x->warnings) {
                k = -ENOMEM;
                goto fail;
        }
        k = sp_pool_find(o->pool, o->restore_point, o->vm, &x->m);
        if (k < 0)
                goto fail;
        x->res.restore_point = x->m->id;
        if (!x->m->config || !json_is_object(x->m->config) || x->m->n_disks == 0 || !x->m->vm.name) {
                k = -EBADMSG;
                goto fail;
        }
        k = choose_disks(x);
        if (k < 0)
                goto fail;
        /* The target VM: which name, and does it exist? */
        if (o->kind == VB_RESTORE_DISK)
                key = o->original ? x->m->vm.name : o->target_vm;
        else if (o->original)
                key = x->m->vm.name;
        else if (o->name)
                key = o->name;
        else
                key = NULL;
        if (key)
                x->target_name = strdup(key);
        else if (asprintf(&x->target_name, "%s%s%s", o->prefix ?: "", x->m->vm.name, o->suffix ?: "") < 0)
                x->target_name = NULL;
        if (!x->target_name) {
                k = -ENOMEM;
                goto fail;
        }
        if (o->kind == VB_RESTORE_VM && !vb_restore_name_ok(x->target_name)) {
                k = -EINVAL;
                goto fail;
        }
        k = o->drv->vm_get(o->hv, x->target_name, target_looked_up, x);
        if (k < 0)
                goto fail;
        return 0;
fail:
        vmr_free(x);
        return k;
}

int vb_vmrestore_plan(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_plan_fn done, void *userdata)
{
        if (!done)
                return -EINVAL;
        return begin(loop, o, true, done, NULL, userdata);
}

int vb_vmrestore_start(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_done_fn done, void *userdata)
{
        if (!done)
                return -EINVAL;
        return begin(loop, o, false, NULL, done, userdata);
}
