/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * runner.c -- vbakd's runs, retries, scheduler and crash cleanup; the
 * order of a run's steps and the rules are in runner.h.
 *
 * DESIGN: every catalog call runs on the daemon's lane (vb_lane_queue) with
 * the run or the VM as its context; the driver, the transport and the
 * scripts run on the loop. Each VM moves through phases:
 *
 *   queued -> starting (lock, attempt begun) -> active (vmbackup)
 *          -> finishing (result recorded) -> done, or -> waiting (its
 *          retry_interval) -> queued
 *
 * A VM counts against the limits from starting to finishing. The run ends
 * when every VM is done; nothing is freed while a worker-pool call on it is
 * in flight (the phases say which).
 */
#include "daemon/runner.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/jobopts.h"
#include "daemon/jobspec.h"
#include "daemon/log.h"
#include "daemon/progress.h"
#include "daemon/schedule.h"
#include "daemon/script.h"
#include "daemon/util.h"
#include "daemon/vmbackup.h"
#include "daemon/work.h"

typedef struct run run;

typedef enum rvm_phase {
        RVM_QUEUED,
        RVM_STARTING,
        RVM_ACTIVE,
        RVM_FINISHING,
        RVM_WAITING, /* for its next attempt */
        RVM_DONE,
} rvm_phase;

static const char *const phase_names[] = { "waiting", "starting", "running", "finishing", "retry-wait", "done" };

typedef struct rvm {
        run *run;
        int64_t id; /* its run_vms row */
        char *vm_id, *name, *title, *host_id;
        rvm_phase phase;
        unsigned tries; /* attempts begun in this pass */
        int64_t holder; /* the run holding its lock, when busy */
        vb_vmbackup *b;
        uv_timer_t *timer; /* while waiting for the next attempt */
        char step[160];
        /* Progress. */
        uint64_t done, total;
        vb_rate_meter meter;
        /* A step to persist. */
        vb_backup_step p_step;
        char *p_snapshot;
        json_t *p_temp;
        /* The attempt's result, to record. */
        vb_run_vm_status st;
        int code;
        char *message, *rp;
        uint64_t bytes_read, bytes_new;
        json_t *notes;
        dd_manifest *m;
        bool again; /* failed, and another attempt is due */
} rvm;

struct run {
        vb_runner *rn;
        run *next;
        int64_t id;
        char id_text[24];
        vb_run_kind kind;
        char *job_key;
        /* A retry: the VMs asked for. */
        bool retry, failed_only;
        char **retry_vms;
        size_t n_retry_vms;
        vb_run_vm *rows; /* the run's VMs as they were */
        size_t n_rows;
        /* Loaded. */
        vb_job job;
        vb_platform platform;
        vb_pool pool;
        char *password;
        vb_jobopts opts;
        sp_pool *sp;
        const vb_hv_driver *drv;
        vb_hv *hv;
        tp_disk_opts transfer;
        vb_transfer_limits limits; /* transfer_rate and disk_read_rate, shared by every disk of the run */
        rvm *vms;
        size_t n_vms;
        /* Going. */
        unsigned active, max_active, max_per_host, max_disks;
        bool stopping, answered, skipped;
        vb_runner_started_fn started;
        void *userdata;
        vb_error err; /* of the run as a whole */
        char message[1024];
};

struct vb_runner {
        vb_daemon *d;
        run *runs;
        uv_timer_t tick;
        bool ticking, checking, shut;
        uint64_t generation;
        void (*on_change)(void *userdata, int64_t run_id);
        void *on_change_userdata;
        /* Recovery. */
        vb_run_vm *lost;
        size_t n_lost, cur_lost;
        vb_platform lost_platform;
        char *lost_password;
        vb_hv *lost_hv;
        const vb_hv_driver *lost_drv;
        char lost_note[512];
        void (*recovered)(void *userdata, int r);
        void *recovered_userdata;
};

static void changed(run *r)
{
        r->rn->generation++;
        if (r->rn->on_change)
                r->rn->on_change(r->rn->on_change_userdata, r->id);
}

static void queue(run *r, vb_work_fn fn, vb_work_done_fn done, void *ctx)
{
        int k = vb_lane_queue(r->rn->d->lane, fn, done, ctx);

        if (k < 0) /* only when the loop is closing: nothing more can happen */
                log_error("run %" PRId64 ": cannot queue work: %s", r->id, strerror(-k));
}

/* ---- the end of a run ---- */

static void timer_drop(rvm *v);

static void rvm_clear(rvm *v)
{
        timer_drop(v);
        free(v->vm_id);
        free(v->name);
        free(v->title);
        free(v->host_id);
        free(v->p_snapshot);
        json_decref(v->p_temp);
        free(v->message);
        free(v->rp);
        json_decref(v->notes);
        dd_manifest_free(v->m);
}

static void run_free(run *r)
{
        for (run **p = &r->rn->runs; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        break;
                }
        for (size_t i = 0; i < r->n_vms; i++)
                rvm_clear(&r->vms[i]);
        free(r->vms);
        if (r->hv)
                r->drv->disconnect(r->hv);
        sp_pool_close(r->sp);
        free(r->job_key);
        for (size_t i = 0; i < r->n_retry_vms; i++)
                free(r->retry_vms[i]);
        free(r->retry_vms);
        vb_run_vms_free(r->rows, r->n_rows);
        vb_job_clear(&r->job);
        vb_platform_clear(&r->platform);
        vb_pool_clear(&r->pool);
        vb_credstore_password_free(r->password);
        vb_transfer_limits_clear(&r->limits);
        free(r);
}

/* Answers the caller of start or retry once. */
static void answer(run *r, vb_error e, const char *fmt, ...) _printf_(3, 4);
static void answer(run *r, vb_error e, const char *fmt, ...)
{
        char msg[1024] = "";
        va_list ap;

        if (r->answered)
                return;
        r->answered = true;
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
        }
        if (r->started)
                r->started(r->userdata, e, e == VB_OK ? NULL : msg, e == VB_OK ? r->id : 0);
}

/* The run's own error (before or around its VMs); the first one stays. */
static void run_error(run *r, vb_error e, const char *fmt, ...) _printf_(3, 4);
static void run_error(run *r, vb_error e, const char *fmt, ...)
{
        va_list ap;

        if (r->err != VB_OK)
                return;
        r->err = e;
        va_start(ap, fmt);
        vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
        log_error("run %" PRId64 ": %s", r->id, r->message);
}

static int finish_work(void *ctx)
{
        run *r = ctx;
        vb_run info = { 0 };
        vb_run_status st;
        int k;

        k = vb_catalog_run_get(r->rn->d->catalog, r->id, &info);
        if (k < 0)
                return k;
        st = vb_run_status_from_vms(&info);
        if (r->stopping)
                st = VB_RUN_STOPPED;
        else if (r->skipped && !r->retry)
                st = VB_RUN_SKIPPED;
        else if (r->err != VB_OK && (!r->retry || info.n_succeeded == 0))
                st = VB_RUN_FAILED;
        vb_run_clear(&info);
        k = vb_catalog_run_finish(r->rn->d->catalog, r->id, st, r->err, r->message[0] ? r->message : NULL);
        if (k >= 0)
                log_info("run %" PRId64 " (job %s) ended %s; at most %u VMs at once, %u on one host, %u disks of a "
                         "VM (limits %u, %u, %u)",
                         r->id, r->job.name, vb_run_status_to_string(st), r->max_active, r->max_per_host, r->max_disks,
                         r->opts.parallel_vms, r->opts.parallel_vms_per_host, r->opts.parallel_disks);
        return k;
}

static void finish_done(void *ctx, int k)
{
        run *r = ctx;

        if (k < 0)
                log_error("run %" PRId64 ": recording its end: %s", r->id, strerror(-k));
        answer(r, r->err ?: VB_E_FAILED, "%s", r->message[0] ? r->message : "the run could not start");
        changed(r);
        run_free(r);
}

static void run_finish(run *r)
{
        if (r->id <= 0) { /* it never existed in the catalog */
                answer(r, r->err ?: VB_E_FAILED, "%s", r->message);
                run_free(r);
                return;
        }
        queue(r, finish_work, finish_done, r);
}

static char **script_env(run *r, char *buf, size_t size, char **env)
{
        int n = snprintf(buf, size, "VBAK_JOB=%s", r->job.name ?: "");

        env[0] = buf;
        env[1] = buf + n + 1;
        snprintf(buf + n + 1, size - (size_t)n - 1, "VBAK_RUN=%" PRId64, r->id);
        env[2] = NULL;
        return env;
}

/* A pre- or post-script that did not succeed fails the run (E21). */
static void script_check(run *r, const char *what, int k, const vb_script_result *res)
{
        if (k < 0)
                run_error(r, VB_E_SCRIPT, "job %s: %s could not start: %s", r->job.name, what, strerror(-k));
        else if (res->timed_out)
                run_error(r, VB_E_SCRIPT, "job %s: %s outlived its timeout (%" PRIu64 " s)", r->job.name, what,
                          r->opts.script_timeout);
        else if (res->exit_status != 0)
                run_error(r, VB_E_SCRIPT, "job %s: %s exited %d: %s", r->job.name, what, res->exit_status, res->output);
}

static void post_done(void *userdata, int k, const vb_script_result *res)
{
        run *r = userdata;

        script_check(r, "post-script", k, res);
        run_finish(r);
}

/* Every VM is done: the post-script, then the end. */
static void run_end(run *r)
{
        char buf[512], *env[3];
        int k;

        if (!r->opts.post_script[0] || r->skipped || r->n_vms == 0)
                return run_finish(r);
        snprintf(buf, sizeof(buf), "job %s: post-script", r->job.name);
        k = vb_script_run(r->rn->d->loop, buf, r->opts.post_script, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, post_done, r);
        if (k < 0)
                post_done(r, k, NULL);
}

/* ---- one VM ---- */

static void pump(run *r);
static void vm_start(rvm *v);

static unsigned host_load(run *r, const char *host)
{
        unsigned n = 0;

        for (size_t i = 0; i < r->n_vms; i++) {
                rvm *v = &r->vms[i];

                if ((v->phase == RVM_STARTING || v->phase == RVM_ACTIVE || v->phase == RVM_FINISHING) &&
                    streq_ptr(v->host_id, host))
                        n++;
        }
        return n;
}

static void result_set(rvm *v, vb_run_vm_status st, int code, const char *fmt, ...) _printf_(4, 5);
static void result_set(rvm *v, vb_run_vm_status st, int code, const char *fmt, ...)
{
        va_list ap;

        v->st = st;
        v->code = code;
        free(v->message);
        v->message = NULL;
        if (fmt) {
                va_start(ap, fmt);
                if (vasprintf(&v->message, fmt, ap) < 0)
                        v->message = NULL;
                va_end(ap);
        }
}

static int vm_finish_work(void *ctx)
{
        rvm *v = ctx;
        run *r = v->run;
        vb_catalog *c = r->rn->d->catalog;
        vb_run_vm_result res = { .status = v->st,
                                 .error_code = v->code,
                                 .message = v->message,
                                 .restore_point = v->rp,
                                 .bytes_read = v->bytes_read,
                                 .bytes_new = v->bytes_new,
                                 .notes = v->notes };
        int k;

        if (v->m) {
                k = vb_catalog_restore_point_add(c, r->pool.id, r->platform.id, v->m);
                if (k < 0)
                        log_error("run %" PRId64 ": vm %s: restore point %s: recording it: %s", r->id, v->name,
                                  v->m->id, strerror(-k));
        }
        k = vb_catalog_run_vm_finish(c, v->id, &res);
        if (k < 0)
                return k;
        if (!v->again && v->holder == 0)
                vb_catalog_vm_unlock(c, r->platform.id, v->vm_id, r->id);
        return 0;
}

static void timer_closed(uv_handle_t *h)
{
        free(h);
}

static void timer_drop(rvm *v)
{
        if (!v->timer)
                return;
        uv_timer_stop(v->timer);
        uv_close((uv_handle_t *)TAKE_PTR(v->timer), timer_closed);
}

static void retry_due(uv_timer_t *t)
{
        rvm *v = t->data;

        timer_drop(v);
        v->phase = RVM_QUEUED;
        pump(v->run);
}

static void vm_finished(void *ctx, int k)
{
        rvm *v = ctx;
        run *r = v->run;

        if (k < 0)
                log_error("run %" PRId64 ": vm %s: recording its result: %s", r->id, v->name, strerror(-k));
        log_info("run %" PRId64 ": vm %s %s%s%s", r->id, v->name, vb_run_vm_status_to_string(v->st),
                 v->message ? ": " : "", v->message ?: "");
        r->active--;
        dd_manifest_free(TAKE_PTR(v->m));
        if (v->again && !r->stopping) {
                v->phase = RVM_WAITING;
                snprintf(v->step, sizeof(v->step), "attempt %u failed: next in %" PRIu64 " s", v->tries,
                         r->opts.retry_interval);
                v->timer = malloc(sizeof(*v->timer));
                if (v->timer) {
                        uv_timer_init(r->rn->d->loop, v->timer);
                        v->timer->data = v;
                        uv_timer_start(v->timer, retry_due, r->opts.retry_interval * 1000, 0);
                } else {
                        v->phase = RVM_QUEUED; /* at once, then */
                }
        } else {
                v->phase = RVM_DONE;
                v->step[0] = '\0';
        }
        changed(r);
        pump(r);
}

static void vm_record(rvm *v)
{
        v->phase = RVM_FINISHING;
        queue(v->run, vm_finish_work, vm_finished, v);
}

static void backed_up(void *userdata, const vb_vmbackup_result *res)
{
        rvm *v = userdata;
        run *r = v->run;

        v->b = NULL;
        v->bytes_read = v->bytes_new = 0;
        for (size_t i = 0; i < res->n_disks; i++) {
                v->bytes_read += res->disks[i].bytes_read;
                v->bytes_new += res->disks[i].bytes_new;
        }
        if (res->max_parallel_disks > r->max_disks)
                r->max_disks = res->max_parallel_disks;
        json_decref(v->notes);
        v->notes = json_array();
        for (const char *const *n = res->notes; *n; n++)
                json_array_append_new(v->notes, json_string(*n));
        if (res->cleanup_error)
                json_array_append_new(v->notes, json_string(res->cleanup_error));
        free(v->rp);
        v->rp = NULL;
        v->again = false;
        if (res->r == VB_OK && res->skipped) {
                result_set(v, VB_RUN_VM_SKIPPED, 0, "%s", res->notes[0] ?: "skipped");
        } else if (res->r == VB_OK) {
                result_set(v, VB_RUN_VM_SUCCEEDED, 0, NULL);
                v->rp = strdup(res->m->id);
                if (dd_manifest_copy(res->m, &v->m) < 0)
                        v->m = NULL; /* a rescan of the pool finds it */
        } else {
                result_set(v, VB_RUN_VM_FAILED, res->r, "%s", res->message);
                v->again = v->tries <= r->opts.retries && !r->stopping;
        }
        vm_record(v);
}

static void progress(void *userdata, uint64_t done, uint64_t total)
{
        rvm *v = userdata;

        v->done = done;
        v->total = total;
        if (vb_rate_meter_update(&v->meter, done))
                changed(v->run);
}

static void step(void *userdata, const char *what)
{
        rvm *v = userdata;

        snprintf(v->step, sizeof(v->step), "%s", what);
        log_info("run %" PRId64 ": vm %s: %s", v->run->id, v->name, what);
        changed(v->run);
}

static int persist_work(void *ctx)
{
        rvm *v = ctx;

        return vb_catalog_vm_state_set(v->run->rn->d->catalog, v->id, v->p_step, v->p_snapshot, v->p_temp);
}

static void persisted(void *ctx, int k)
{
        rvm *v = ctx;

        vb_vmbackup_persisted(v->b, k);
}

static void persist(void *userdata, vb_vmbackup *b, vb_backup_step st, const char *snapshot, const char *temp_dir)
{
        rvm *v = userdata;

        v->b = b;
        v->p_step = st;
        free(v->p_snapshot);
        v->p_snapshot = snapshot ? strdup(snapshot) : NULL;
        json_decref(v->p_temp);
        v->p_temp = temp_dir ? json_pack("[s]", temp_dir) : NULL;
        if ((snapshot && !v->p_snapshot) || (temp_dir && !v->p_temp))
                return vb_vmbackup_persisted(b, -ENOMEM);
        queue(v->run, persist_work, persisted, v);
}

static void vm_backup(rvm *v)
{
        run *r = v->run;
        vb_vmbackup_opts o = {
                .drv = r->drv,
                .hv = r->hv,
                .pool = r->sp,
                .vm = v->vm_id,
                .incremental = r->job.backup_type == DD_BACKUP_INCREMENTAL,
                .non_cbt = r->opts.non_cbt_vm,
                .snapshot = r->opts.snapshot,
                .quiesce = r->opts.quiesce,
                .shutdown = r->opts.shutdown_for_backup,
                .min_free_percent = r->opts.min_free_percent,
                .min_free_bytes = r->opts.min_free_bytes,
                .transfer = &r->transfer,
                .platform = r->platform.name,
                .job = r->job.name,
                .run = r->id_text,
                .parallel_disks = r->opts.parallel_disks,
                .progress = progress,
                .step = step,
                .persist = persist,
                .userdata = v,
        };
        int k;

        v->phase = RVM_ACTIVE;
        v->done = v->total = 0;
        v->meter = (vb_rate_meter){ 0 };
        k = vb_vmbackup_start(r->rn->d->loop, &o, backed_up, v);
        if (k < 0) {
                result_set(v, VB_RUN_VM_FAILED, vb_error_from_errno(k), "vm %s: cannot start its backup: %s", v->name,
                           strerror(-k));
                vm_record(v);
        }
}

static int vm_begin_work(void *ctx)
{
        rvm *v = ctx;
        run *r = v->run;
        vb_catalog *c = r->rn->d->catalog;
        int k;

        v->holder = 0;
        k = vb_catalog_vm_lock(c, r->platform.id, v->vm_id, r->id, &v->holder);
        if (k == -EEXIST)
                return vb_catalog_run_vm_begin(c, v->id, v->host_id) < 0 ? -EIO : -EEXIST;
        v->holder = 0;
        if (k < 0)
                return k;
        return vb_catalog_run_vm_begin(c, v->id, v->host_id);
}

static void vm_begun(void *ctx, int k)
{
        rvm *v = ctx;

        if (k == -EEXIST) {
                result_set(v, VB_RUN_VM_FAILED, VB_E_BUSY, "vm %s is being backed up by run %" PRId64 " now", v->name,
                           v->holder);
                return vm_record(v);
        }
        if (k < 0) {
                result_set(v, VB_RUN_VM_FAILED, vb_error_from_errno(k), "vm %s: beginning its attempt: %s", v->name,
                           strerror(-k));
                return vm_record(v);
        }
        v->tries++;
        vm_backup(v);
}

static void vm_start(rvm *v)
{
        run *r = v->run;

        v->phase = RVM_STARTING;
        snprintf(v->step, sizeof(v->step), "starting");
        r->active++;
        if (r->active > r->max_active)
                r->max_active = r->active;
        if (host_load(r, v->host_id) > r->max_per_host)
                r->max_per_host = host_load(r, v->host_id);
        queue(r, vm_begin_work, vm_begun, v);
}

/* VMs not started when the run stops fail. */
static int stop_work(void *ctx)
{
        rvm *v = ctx;
        vb_run_vm_result res = { .status = VB_RUN_VM_FAILED,
                                 .error_code = VB_E_INTERRUPTED,
                                 .message = "the run was stopped before this VM's backup began" };

        return vb_catalog_run_vm_finish(v->run->rn->d->catalog, v->id, &res);
}

static void stop_done(void *ctx, int k)
{
        rvm *v = ctx;

        if (k < 0)
                log_error("run %" PRId64 ": vm %s: %s", v->run->id, v->name, strerror(-k));
        v->phase = RVM_DONE;
        v->run->active--;
        pump(v->run);
}

/* Starts what the limits allow; ends the run once every VM is done. */
static void pump(run *r)
{
        bool all_done = true;

        for (size_t i = 0; i < r->n_vms; i++) {
                rvm *v = &r->vms[i];

                if (v->phase == RVM_WAITING && r->stopping) {
                        timer_drop(v);
                        v->phase = RVM_DONE; /* its last attempt's failure stands */
                }
                if (v->phase == RVM_QUEUED && r->stopping) {
                        v->phase = RVM_FINISHING;
                        r->active++; /* until recorded */
                        queue(r, stop_work, stop_done, v);
                }
                if (v->phase == RVM_QUEUED && r->active < r->opts.parallel_vms &&
                    host_load(r, v->host_id) < r->opts.parallel_vms_per_host)
                        vm_start(v);
                if (v->phase != RVM_DONE)
                        all_done = false;
        }
        if (all_done && r->active == 0)
                run_end(r);
}

/* ---- the run's VMs ---- */

static bool excluded(const run *r, const char *name, const char *title, const char **rule)
{
        *rule = vb_jobspec_excluded(r->job.exclusions, name, title);
        return *rule != NULL;
}

/* The id a selection item asks for (an integer id as text), or NULL when
 * it names its object. */
static const char *item_id(const json_t *sel, char *buf, size_t size)
{
        const json_t *id = json_object_get(sel, "id");

        if (json_is_integer(id)) {
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
                return buf;
        }
        return json_string_value(id);
}

/* Whether the host pool or cluster `id` is the one the item picks. */
static bool group_matches(const vb_hv_group *g, size_t n, const char *id, const json_t *sel)
{
        const char *name = json_string_value(json_object_get(sel, "name"));
        char buf[32];
        const char *want = item_id(sel, buf, sizeof(buf));

        if (!id)
                return false;
        if (want)
                return streq(want, id);
        for (size_t i = 0; i < n; i++)
                if (streq_ptr(g[i].id, id) && streq_ptr(g[i].name, name))
                        return true;
        return false;
}

static bool host_matches(const vb_hv_inventory *inv, const char *id, const json_t *sel)
{
        const char *name = json_string_value(json_object_get(sel, "name"));
        char buf[32];
        const char *want = item_id(sel, buf, sizeof(buf));

        if (!id)
                return false;
        if (want)
                return streq(want, id);
        for (size_t i = 0; i < inv->n_hosts; i++)
                if (streq_ptr(inv->hosts[i].id, id) && streq_ptr(inv->hosts[i].name, name))
                        return true;
        return false;
}

static bool vm_matches(const vb_hv_vm *vm, const json_t *sel)
{
        const char *name = json_string_value(json_object_get(sel, "name"));
        char buf[32];
        const char *want = item_id(sel, buf, sizeof(buf));

        if (want)
                return streq_ptr(vm->id, want) || streq_ptr(vm->uuid, want);
        return name && (streq_ptr(vm->name, name) || streq_ptr(vm->title, name));
}

static bool selected(const vb_hv_inventory *inv, const vb_hv_vm *vm, const json_t *sel)
{
        const char *level = json_string_value(json_object_get(sel, "level"));

        if (streq_ptr(level, "vm"))
                return vm_matches(vm, sel);
        if (streq_ptr(level, "host"))
                return host_matches(inv, vm->host_id, sel);
        if (streq_ptr(level, "cluster"))
                return group_matches(inv->clusters, inv->n_clusters, vm->cluster_id, sel);
        if (streq_ptr(level, "hostpool"))
                return group_matches(inv->pools, inv->n_pools, vm->pool_id, sel);
        return false;
}

static rvm *rvm_add(run *r, const char *id, const char *name, const char *title, const char *host)
{
        rvm *n = realloc(r->vms, (r->n_vms + 1) * sizeof(*r->vms));
        rvm *v;

        if (!n)
                return NULL;
        r->vms = n;
        v = &r->vms[r->n_vms];
        *v = (rvm){ .run = r, .phase = RVM_QUEUED };
        v->vm_id = strdup(id ?: "");
        v->name = strdup(name ?: id ?: "");
        v->title = title ? strdup(title) : NULL;
        v->host_id = host ? strdup(host) : NULL;
        if (!v->vm_id || !v->name || (title && !v->title) || (host && !v->host_id)) {
                rvm_clear(v);
                return NULL;
        }
        r->n_vms++;
        return v;
}

/* The VMs of a new run: every VM any selection item picks, in the
 * inventory's order; the excluded ones are recorded skipped, and a VM the
 * selection names that is not there any more is recorded failed. */
static int resolve(run *r, const vb_hv_inventory *inv)
{
        json_t *sel = r->job.selection;

        for (size_t i = 0; i < inv->n_vms; i++) {
                const vb_hv_vm *vm = &inv->vms[i];
                const char *rule;
                bool pick = false;
                rvm *v;

                for (size_t k = 0; k < json_array_size(sel) && !pick; k++)
                        pick = selected(inv, vm, json_array_get(sel, k));
                if (!pick)
                        continue;
                v = rvm_add(r, vm->id, vm->name, vm->title, vm->host_id);
                if (!v)
                        return -ENOMEM;
                if (excluded(r, vm->name, vm->title, &rule)) {
                        result_set(v, VB_RUN_VM_SKIPPED, 0, "excluded by the job's rule '%s'", rule);
                        v->phase = RVM_DONE;
                }
        }
        for (size_t k = 0; k < json_array_size(sel); k++) {
                const json_t *s = json_array_get(sel, k);
                bool found = false;

                if (!streq_ptr(json_string_value(json_object_get(s, "level")), "vm"))
                        continue;
                for (size_t i = 0; i < inv->n_vms && !found; i++)
                        found = vm_matches(&inv->vms[i], s);
                if (!found) {
                        const char *what = json_string_value(json_object_get(s, "name"));
                        rvm *v = rvm_add(r, what ?: "?", what ?: "?", NULL, NULL);

                        if (!v)
                                return -ENOMEM;
                        result_set(v, VB_RUN_VM_FAILED, VB_E_NOT_FOUND, "vm %s is not on platform %s any more", v->name,
                                   r->platform.name);
                        v->phase = RVM_DONE;
                }
        }
        return 0;
}

static int vms_add_work(void *ctx)
{
        run *r = ctx;
        vb_catalog *c = r->rn->d->catalog;

        for (size_t i = 0; i < r->n_vms; i++) {
                rvm *v = &r->vms[i];
                vb_run_vm row = { .platform_id = r->platform.id,
                                  .vm_id = v->vm_id,
                                  .vm_name = v->name,
                                  .title = v->title,
                                  .host_id = v->host_id };
                int k = vb_catalog_run_vm_add(c, r->id, &row, &v->id);

                if (k < 0)
                        return k;
                if (v->phase == RVM_DONE) { /* decided already: excluded, or gone */
                        vb_run_vm_result res = { .status = v->st, .error_code = v->code, .message = v->message };

                        k = vb_catalog_run_vm_finish(c, v->id, &res);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

static void vms_added(void *ctx, int k)
{
        run *r = ctx;

        if (k < 0) {
                run_error(r, vb_error_from_errno(k), "recording the run's VMs: %s", strerror(-k));
                for (size_t i = 0; i < r->n_vms; i++)
                        r->vms[i].phase = RVM_DONE;
        }
        changed(r);
        pump(r);
}

static int retry_begin_work(void *ctx)
{
        run *r = ctx;

        return vb_catalog_run_start(r->rn->d->catalog, r->id);
}

static void scripts_start(run *r);

static void retry_begun(void *ctx, int k)
{
        run *r = ctx;

        if (k < 0) {
                answer(r, k == -EALREADY ? VB_E_REFUSED : vb_error_from_errno(k), "run %" PRId64 ": %s", r->id,
                       k == -EALREADY ? "it is running" : strerror(-k));
                r->id = 0; /* nothing of it to record */
                return run_finish(r);
        }
        log_info("run %" PRId64 " (job %s): retrying %zu VM(s)", r->id, r->job.name, r->n_vms);
        answer(r, VB_OK, NULL);
        changed(r);
        scripts_start(r);
}

/* A retry: the chosen VMs of the run, each still on the platform and not
 * excluded; anything else refuses the whole retry before it begins. */
static int pick_retry(run *r, const vb_hv_inventory *inv, vb_run_vm *rows, size_t n_rows, char *why, size_t size)
{
        for (size_t i = 0; i < n_rows; i++) {
                vb_run_vm *row = &rows[i];
                bool want = false;
                const char *rule;
                bool there = false;

                if (r->failed_only)
                        want = row->status == VB_RUN_VM_FAILED || row->status == VB_RUN_VM_WAITING ||
                               row->status == VB_RUN_VM_RUNNING;
                for (size_t k = 0; k < r->n_retry_vms && !want; k++)
                        want = streq_ptr(r->retry_vms[k], row->vm_name) || streq_ptr(r->retry_vms[k], row->vm_id) ||
                               streq_ptr(r->retry_vms[k], row->title);
                if (!want)
                        continue;
                for (size_t k = 0; k < inv->n_vms && !there; k++)
                        there = streq_ptr(inv->vms[k].id, row->vm_id);
                if (!there) {
                        snprintf(why, size, "vm %s has been deleted from platform %s since run %" PRId64, row->vm_name,
                                 r->platform.name, r->id);
                        return -ENOENT;
                }
                if (excluded(r, row->vm_name, row->title, &rule)) {
                        snprintf(why, size, "vm %s is now excluded by job %s's rule '%s'", row->vm_name, r->job.name,
                                 rule);
                        return -EPERM;
                }
                for (size_t k = 0; k < inv->n_vms; k++)
                        if (streq_ptr(inv->vms[k].id, row->vm_id)) {
                                rvm *v = rvm_add(r, row->vm_id, inv->vms[k].name, inv->vms[k].title,
                                                 inv->vms[k].host_id);

                                if (!v)
                                        return -ENOMEM;
                                v->id = row->id;
                                break;
                        }
        }
        for (size_t k = 0; k < r->n_retry_vms; k++) {
                bool found = false;

                for (size_t i = 0; i < n_rows && !found; i++)
                        found = streq_ptr(r->retry_vms[k], rows[i].vm_name) ||
                                streq_ptr(r->retry_vms[k], rows[i].vm_id) || streq_ptr(r->retry_vms[k], rows[i].title);
                if (!found) {
                        snprintf(why, size, "vm %s is not in run %" PRId64, r->retry_vms[k], r->id);
                        return -ENOENT;
                }
        }
        if (r->n_vms == 0) {
                snprintf(why, size, "run %" PRId64 " has no failed VM to retry", r->id);
                return -ENOENT;
        }
        return 0;
}

static void inventory_read(void *userdata, vb_error e, const char *msg, const vb_hv_inventory *inv)
{
        run *r = userdata;
        char why[512];
        int k;

        if (e != VB_OK && r->retry) {
                answer(r, e, "platform %s: %s", r->platform.name, msg);
                r->id = 0;
                return run_finish(r);
        }
        if (e != VB_OK) {
                run_error(r, e, "platform %s: %s", r->platform.name, msg);
                return pump(r);
        }
        if (r->retry) {
                k = pick_retry(r, inv, r->rows, r->n_rows, why, sizeof(why));
                if (k < 0) {
                        answer(r, k == -ENOMEM ? VB_E_FAILED : VB_E_REFUSED, "%s", why);
                        r->id = 0;
                        return run_finish(r);
                }
                return queue(r, retry_begin_work, retry_begun, r);
        }
        k = resolve(r, inv);
        if (k < 0) {
                run_error(r, VB_E_FAILED, "selecting the VMs: %s", strerror(-k));
                return pump(r);
        }
        log_info("run %" PRId64 " (job %s): %zu VM(s) selected", r->id, r->job.name, r->n_vms);
        queue(r, vms_add_work, vms_added, r);
}

/* ---- connecting, scripts ---- */

static void connected(void *userdata, vb_error e, const char *msg, vb_hv *hv)
{
        run *r = userdata;
        int k;

        if (e != VB_OK)
                return inventory_read(r, e, msg, NULL);
        r->hv = hv;
        k = r->drv->inventory(hv, inventory_read, r);
        if (k < 0)
                inventory_read(r, vb_error_from_net_errno(k), strerror(-k), NULL);
}

static const char *network_name(vb_job_network n)
{
        switch (n) {
        case VB_JOB_NETWORK_BACKUP:
                return "backup";
        case VB_JOB_NETWORK_STORAGE:
                return "storage";
        case VB_JOB_NETWORK_MANAGEMENT:
                return "management";
        default:
                return "adaptive";
        }
}

static void platform_connect(run *r)
{
        vb_hv_opts ho = { .name = r->platform.name,
                          .address = r->platform.address,
                          .user = r->platform.user,
                          .password = r->password,
                          .insecure = r->platform.insecure,
                          .network = network_name(r->opts.network),
                          .timeout_ms = r->opts.network_timeout * 1000,
                          .cvd_port = (unsigned)r->rn->d->cfg.cvd_port,
                          .runtime_dir = r->rn->d->cfg.runtime_dir };
        int k;

        r->drv = vb_hv_driver_find(vb_platform_type_to_string(r->platform.type));
        k = r->drv ? r->drv->connect(r->rn->d->loop, &ho, connected, r) : -EPROTONOSUPPORT;
        if (k < 0)
                inventory_read(r, vb_error_from_net_errno(k), strerror(-k), NULL);
}

/* After the scripts: a new run finds its VMs; a retry has them. */
static void scripts_done(run *r)
{
        if (r->err != VB_OK || r->skipped) {
                /* Nothing is backed up; a retry's chosen VMs keep their results. */
                for (size_t i = 0; i < r->n_vms; i++)
                        r->vms[i].phase = RVM_DONE;
                return pump(r);
        }
        if (r->retry)
                return pump(r);
        platform_connect(r);
}

static void pre_done(void *userdata, int k, const vb_script_result *res)
{
        run *r = userdata;

        script_check(r, "pre-script", k, res);
        scripts_done(r);
}

static void pre_start(run *r)
{
        char buf[512], label[256], *env[3];
        int k;

        if (!r->opts.pre_script[0])
                return scripts_done(r);
        snprintf(label, sizeof(label), "run %" PRId64 ": job %s: pre-script", r->id, r->job.name);
        k = vb_script_run(r->rn->d->loop, label, r->opts.pre_script, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, pre_done, r);
        if (k < 0)
                pre_done(r, k, NULL);
}

static void precondition_done(void *userdata, int k, const vb_script_result *res)
{
        run *r = userdata;

        if (k < 0) {
                run_error(r, VB_E_SCRIPT, "job %s: precondition could not start: %s", r->job.name, strerror(-k));
                return scripts_done(r);
        }
        if (res->timed_out || res->exit_status != 0) {
                r->skipped = true;
                snprintf(r->message, sizeof(r->message), "job %s: precondition %s%s%s: the run is skipped", r->job.name,
                         res->timed_out ? "outlived its timeout" : "did not pass", res->output[0] ? ": " : "",
                         res->output);
                log_info("run %" PRId64 ": %s", r->id, r->message);
                return scripts_done(r);
        }
        pre_start(r);
}

static void scripts_start(run *r)
{
        char buf[512], label[256], *env[3];
        int k;

        if (!r->opts.precondition[0])
                return pre_start(r);
        snprintf(label, sizeof(label), "run %" PRId64 ": job %s: precondition", r->id, r->job.name);
        k = vb_script_run(r->rn->d->loop, label, r->opts.precondition, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, precondition_done, r);
        if (k < 0)
                precondition_done(r, k, NULL);
}

/* ---- starting: the job, its platform and pool, the run ---- */

static bool all_digits(const char *s)
{
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

static int load_work(void *ctx)
{
        run *r = ctx;
        vb_catalog *c = r->rn->d->catalog;
        _cleanup_free_ char *err = NULL;
        int k;

        if (r->retry) {
                vb_run info = { 0 };

                k = vb_catalog_run_get(c, r->id, &info);
                if (k < 0) {
                        snprintf(r->message, sizeof(r->message), "no run %" PRId64, r->id);
                        return k;
                }
                k = vb_catalog_job_get(c, info.job_id, NULL, &r->job);
                vb_run_clear(&info);
                if (k >= 0 && r->job.deleted) {
                        snprintf(r->message, sizeof(r->message), "job %s was deleted: its runs cannot be retried",
                                 r->job.name);
                        return -EPERM;
                }
                if (k >= 0)
                        k = vb_catalog_run_vm_list(c, r->id, &r->rows, &r->n_rows);
        } else if (all_digits(r->job_key)) {
                k = vb_catalog_job_get(c, strtoll(r->job_key, NULL, 10), NULL, &r->job);
                if (k >= 0 && r->job.deleted)
                        k = -ENOENT;
        } else {
                k = vb_catalog_job_get(c, 0, r->job_key, &r->job);
        }
        if (k < 0) {
                if (!r->message[0])
                        snprintf(r->message, sizeof(r->message), "no job %s", r->job_key ?: "");
                return k;
        }
        k = vb_catalog_platform_get(c, r->job.platform_id, NULL, &r->platform);
        if (k >= 0)
                k = vb_catalog_pool_get(c, r->job.pool_id, NULL, &r->pool);
        if (k < 0) {
                snprintf(r->message, sizeof(r->message), "job %s: its platform or pool is gone", r->job.name);
                return k;
        }
        k = vb_credstore_get(r->rn->d->creds, r->platform.name, &r->password);
        if (k < 0 && k != -ENOENT) {
                snprintf(r->message, sizeof(r->message), "platform %s: reading its password: %s", r->platform.name,
                         strerror(-k));
                return k;
        }
        vb_jobopts_defaults(&r->opts);
        k = vb_jobopts_from_json(&r->opts, r->job.options, &err);
        if (k < 0) {
                snprintf(r->message, sizeof(r->message), "job %s: %s", r->job.name, err ?: "bad options");
                return -EINVAL;
        }
        return 0;
}

static int open_work(void *ctx)
{
        run *r = ctx;
        int k;

        if (!r->retry) {
                k = vb_catalog_run_add(r->rn->d->catalog, r->job.id, r->kind, 0, &r->id);
                if (k < 0)
                        return k;
                k = vb_catalog_run_start(r->rn->d->catalog, r->id);
                if (k < 0)
                        return k;
        }
        k = sp_pool_open(r->pool.path, &r->sp);
        if (k < 0)
                return k == -ENOENT ? -ENOTDIR : k;
        return 0;
}

static void opened(void *ctx, int k)
{
        run *r = ctx;

        snprintf(r->id_text, sizeof(r->id_text), "%" PRId64, r->id);
        if (k < 0 && r->id <= 0) {
                answer(r, vb_error_from_errno(k), "job %s: starting a run: %s", r->job.name, strerror(-k));
                return run_finish(r);
        }
        if (!r->retry) {
                log_info("run %" PRId64 " (job %s, %s) started", r->id, r->job.name, vb_run_kind_to_string(r->kind));
                answer(r, VB_OK, NULL);
                changed(r);
        }
        if (k < 0) {
                run_error(r, k == -ENOTDIR ? VB_E_POOL_FORMAT : vb_error_from_errno(k), "pool %s (%s): %s",
                          r->pool.name, r->pool.path, k == -ENOTDIR ? "there is no pool there" : strerror(-k));
                if (r->retry) {
                        answer(r, r->err, "%s", r->message);
                        r->id = 0;
                }
                return pump(r);
        }
        if (r->retry)
                return platform_connect(r); /* the VMs are checked before the retry begins */
        scripts_start(r);
}

static bool job_running(vb_runner *rn, int64_t job_id, const run *except)
{
        for (run *r = rn->runs; r; r = r->next)
                if (r != except && r->job.id == job_id)
                        return true;
        return false;
}

static void loaded(void *ctx, int k)
{
        run *r = ctx;
        vb_daemon *d = r->rn->d;
        tp_disk_opts *t = &r->transfer;
        _cleanup_free_ char *why = NULL;
        const char *field = NULL;

        if (k < 0) {
                vb_error e = k == -ENOENT ? VB_E_NOT_FOUND : k == -EPERM ? VB_E_REFUSED : vb_error_from_errno(k);

                answer(r, e, "%s", r->message[0] ? r->message : strerror(-k));
                r->id = 0;
                return run_finish(r);
        }
        if (job_running(r->rn, r->job.id, r)) {
                answer(r, r->retry ? VB_E_REFUSED : VB_E_BUSY, "job %s is running%s", r->job.name,
                       r->retry ? ": retry once its run ended" : "");
                r->id = 0;
                r->job.id = 0; /* not the running one */
                return run_finish(r);
        }
        k = vb_transfer_setup(&r->opts, d->cfg.cvd_token_file, &r->limits, t, &field, &why);
        if (k < 0) {
                /* The job's options were checked when it was saved: only a
                 * schedule this version no longer reads gets here. */
                answer(r, VB_E_USAGE, "job %s: option %s: %s", r->job.name, field, why ?: "?");
                r->id = 0;
                return run_finish(r);
        }
        r->message[0] = '\0';
        queue(r, open_work, opened, r);
}

static run *run_new(vb_runner *rn, vb_runner_started_fn done, void *userdata)
{
        run *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        r->rn = rn;
        r->started = done;
        r->userdata = userdata;
        /* On the list from the start: a second start of the job sees it once loaded. */
        r->next = rn->runs;
        rn->runs = r;
        return r;
}

int vb_runner_start(vb_runner *rn, const char *job, vb_run_kind kind, vb_runner_started_fn done, void *userdata)
{
        run *r;

        if (!rn || !job)
                return -EINVAL;
        r = run_new(rn, done, userdata);
        if (!r)
                return -ENOMEM;
        r->kind = kind;
        if (!(r->job_key = strdup(job))) {
                run_free(r);
                return -ENOMEM;
        }
        queue(r, load_work, loaded, r);
        return 0;
}

int vb_runner_retry(vb_runner *rn, int64_t run_id, const char *const *vms, size_t n_vms, bool failed_only,
                    vb_runner_started_fn done, void *userdata)
{
        run *r;

        if (!rn || run_id <= 0 || (!failed_only && n_vms == 0))
                return -EINVAL;
        for (run *x = rn->runs; x; x = x->next)
                if (x->id == run_id)
                        return -EALREADY;
        r = run_new(rn, done, userdata);
        if (!r)
                return -ENOMEM;
        r->id = run_id;
        r->kind = VB_RUN_RETRY;
        r->retry = true;
        r->failed_only = failed_only;
        if (n_vms && !(r->retry_vms = calloc(n_vms, sizeof(char *)))) {
                run_free(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_vms; i++) {
                if (!(r->retry_vms[i] = strdup(vms[i]))) {
                        r->n_retry_vms = i;
                        run_free(r);
                        return -ENOMEM;
                }
        }
        r->n_retry_vms = n_vms;
        queue(r, load_work, loaded, r);
        return 0;
}

int64_t vb_runner_stop(vb_runner *rn, int64_t job_id)
{
        for (run *r = rn->runs; r; r = r->next)
                if (r->job.id == job_id && r->id > 0 && r->answered) {
                        if (!r->stopping)
                                log_info("run %" PRId64 " (job %s): stopping", r->id, r->job.name);
                        r->stopping = true;
                        changed(r);
                        pump(r);
                        return r->id;
                }
        return -ENOENT;
}

bool vb_runner_job_running(vb_runner *rn, int64_t job_id)
{
        return job_running(rn, job_id, NULL);
}

/* ---- progress ---- */

json_t *vb_runner_progress(vb_runner *rn, int64_t run_id)
{
        run *r;
        json_t *vms, *out;
        uint64_t done = 0, total = 0;
        double rate = 0;

        for (r = rn->runs; r; r = r->next)
                if (r->id == run_id && r->answered)
                        break;
        if (!r)
                return NULL;
        vms = json_array();
        for (size_t i = 0; i < r->n_vms; i++) {
                rvm *v = &r->vms[i];
                bool live = v->phase == RVM_ACTIVE;

                done += v->phase == RVM_DONE ? v->total : v->done;
                total += v->total;
                if (live)
                        rate += v->meter.rate;
                json_array_append_new(
                        vms,
                        json_pack("{s:I, s:s, s:s?, s:s?, s:s, s:s, s:i, s:I, s:I, s:f, s:o}", "id", (json_int_t)v->id,
                                  "vm", v->name, "title", v->title, "host", v->host_id, "status",
                                  v->phase == RVM_DONE ? vb_run_vm_status_to_string(v->st) : phase_names[v->phase],
                                  "step", v->step, "attempt", (int)v->tries, "bytes_done", (json_int_t)v->done,
                                  "bytes_total", (json_int_t)v->total, "rate", live ? v->meter.rate : 0.0, "eta",
                                  live ? vb_eta_json(v->done, v->total, v->meter.rate) : json_null()));
        }
        out = json_pack("{s:I, s:s, s:b, s:I, s:I, s:f, s:o, s:o, s:{s:i, s:i, s:i}}", "run", (json_int_t)r->id, "job",
                        r->job.name, "stopping", r->stopping, "bytes_done", (json_int_t)done, "bytes_total",
                        (json_int_t)total, "rate", rate, "eta", vb_eta_json(done, total, rate), "vms", vms,
                        "concurrency", "vms", (int)r->max_active, "per_host", (int)r->max_per_host, "disks",
                        (int)r->max_disks);
        return out;
}

bool vb_runner_progress_live(vb_runner *rn, int64_t run_id)
{
        for (run *r = rn->runs; r; r = r->next)
                if (r->id == run_id && r->answered)
                        return true;
        return false;
}

uint64_t vb_runner_generation(vb_runner *rn)
{
        return rn->generation;
}

void vb_runner_on_change(vb_runner *rn, void (*fn)(void *userdata, int64_t run_id), void *userdata)
{
        rn->on_change = fn;
        rn->on_change_userdata = userdata;
}

/* ---- the scheduler ---- */

static void tick_arm(vb_runner *rn, uint64_t ms);

typedef struct tick {
        vb_runner *rn;
        char **due;
        size_t n_due;
        time_t next; /* the earliest next firing of any job; 0: none */
} tick;

static int tick_work(void *ctx)
{
        tick *t = ctx;
        vb_catalog *c = t->rn->d->catalog;
        vb_job *jobs = NULL;
        size_t n = 0;
        time_t now = time(NULL);
        int k;

        k = vb_catalog_job_list(c, false, &jobs, &n);
        if (k < 0)
                return k;
        t->due = calloc(n ?: 1, sizeof(char *));
        if (!t->due) {
                vb_jobs_free(jobs, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                vb_job *j = &jobs[i];
                _cleanup_free_ char *err = NULL;
                vb_schedule s;
                time_t after = j->last_check ? j->last_check : j->created - 1, next;

                if (!j->enabled || !j->schedule || json_is_null(j->schedule))
                        continue;
                if (vb_schedule_from_json(j->schedule, j->created, &s, &err) < 0) {
                        log_warning("job %s: its schedule cannot be read (%s): not started", j->name, err ?: "?");
                        continue;
                }
                if (vb_schedule_missed(&s, after, now) && (t->due[t->n_due] = strdup(j->name)))
                        t->n_due++;
                vb_catalog_job_set_last_check(c, j->id, now);
                if (vb_schedule_next(&s, now, &next) >= 0 && (t->next == 0 || next < t->next))
                        t->next = next;
        }
        vb_jobs_free(jobs, n);
        return 0;
}

static void scheduled(void *userdata, vb_error e, const char *msg, int64_t run_id)
{
        (void)userdata;
        if (e == VB_OK)
                log_info("run %" PRId64 " started on schedule", run_id);
        else
                log_warning("a scheduled run did not start: %s", msg);
}

static void tick_done(void *ctx, int k)
{
        tick *t = ctx;
        vb_runner *rn = t->rn;
        uint64_t ms = VB_RUNNER_TICK_SECONDS * 1000;
        time_t now = time(NULL);

        rn->checking = false;
        if (k < 0)
                log_error("scheduler: reading the jobs: %s", strerror(-k));
        for (size_t i = 0; i < t->n_due; i++) {
                if (vb_runner_start(rn, t->due[i], VB_RUN_SCHEDULED, scheduled, rn) < 0)
                        log_error("job %s: cannot start its scheduled run", t->due[i]);
                free(t->due[i]);
        }
        free(t->due);
        /* Wake up at the next firing when it comes before the next look. */
        if (t->next > now && (uint64_t)(t->next - now) * 1000 < ms)
                ms = (uint64_t)(t->next - now) * 1000 + 100;
        free(t);
        if (rn->ticking)
                tick_arm(rn, ms);
}

static void on_tick(uv_timer_t *timer)
{
        vb_runner *rn = timer->data;
        tick *t;

        if (rn->checking)
                return;
        t = calloc(1, sizeof(*t));
        if (!t) {
                tick_arm(rn, VB_RUNNER_TICK_SECONDS * 1000);
                return;
        }
        t->rn = rn;
        rn->checking = true;
        if (vb_lane_queue(rn->d->lane, tick_work, tick_done, t) < 0) {
                rn->checking = false;
                free(t);
        }
}

static void tick_arm(vb_runner *rn, uint64_t ms)
{
        uv_timer_start(&rn->tick, on_tick, ms, 0);
}

/* ---- after a crash ---- */

static void lost_next(vb_runner *rn);

static bool is_restore_point_folder_partial(const char *path)
{
        _cleanup_free_ char *m = NULL;
        struct stat st;

        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return false;
        if (asprintf(&m, "%s/manifest.json", path) < 0)
                return false;
        return access(m, F_OK) < 0;
}

static int lost_finish_work(void *ctx)
{
        vb_runner *rn = ctx;
        vb_run_vm *v = &rn->lost[rn->cur_lost];
        unsigned removed = 0;
        char msg[1024];
        vb_run_vm_result res = { .status = VB_RUN_VM_FAILED, .error_code = VB_E_INTERRUPTED, .message = msg };

        for (size_t i = 0; i < json_array_size(v->temp_files); i++) {
                const char *p = json_string_value(json_array_get(v->temp_files, i));

                /* Only an unfinished restore point: a committed one stays. */
                if (p && is_restore_point_folder_partial(p) && vb_rm_rf_at(AT_FDCWD, p) >= 0)
                        removed++;
        }
        snprintf(msg, sizeof(msg),
                 "vbakd stopped during this VM's backup (step %s)%s%s; %u unfinished folder(s) removed",
                 vb_backup_step_to_string(v->state), rn->lost_note[0] ? "; " : "", rn->lost_note, removed);
        log_warning("run %" PRId64 ": vm %s: %s", v->run_id, v->vm_name, msg);
        return vb_catalog_run_vm_finish(rn->d->catalog, v->id, &res);
}

static void lost_finished(void *ctx, int k)
{
        vb_runner *rn = ctx;

        if (k < 0)
                log_error("run %" PRId64 ": vm %s: recording it failed: %s", rn->lost[rn->cur_lost].run_id,
                          rn->lost[rn->cur_lost].vm_name, strerror(-k));
        rn->cur_lost++;
        lost_next(rn);
}

static void lost_record(vb_runner *rn)
{
        if (rn->lost_hv)
                rn->lost_drv->disconnect(TAKE_PTR(rn->lost_hv));
        if (vb_lane_queue(rn->d->lane, lost_finish_work, lost_finished, rn) < 0)
                lost_finished(rn, -ECANCELED);
}

static void lost_checkpoint_dropped(void *userdata, vb_error e, const char *msg)
{
        vb_runner *rn = userdata;
        size_t n = strlen(rn->lost_note);

        if (e != VB_OK)
                snprintf(rn->lost_note + n, sizeof(rn->lost_note) - n, "; its checkpoint stays: %s", msg);
        lost_record(rn);
}

static void lost_snapshot_deleted(void *userdata, vb_error e, const char *msg)
{
        vb_runner *rn = userdata;
        vb_run_vm *v = &rn->lost[rn->cur_lost];
        vb_hv_vm vm = { .id = v->vm_id, .name = v->vm_name };
        int k;

        if (e == VB_OK)
                snprintf(rn->lost_note, sizeof(rn->lost_note), "snapshot %s deleted", v->snapshot);
        else
                snprintf(rn->lost_note, sizeof(rn->lost_note), "snapshot %s could not be deleted: %s", v->snapshot,
                         msg);
        /* No restore point was committed: the checkpoint the snapshot made
         * (a driver's own, libvirt's) leads nowhere. */
        if (!rn->lost_hv || !rn->lost_drv->checkpoint_commit || v->state >= VB_STEP_COMMITTING)
                return lost_record(rn);
        k = rn->lost_drv->checkpoint_commit(rn->lost_hv, &vm, NULL, v->snapshot, lost_checkpoint_dropped, rn);
        if (k < 0)
                lost_record(rn);
}

static void lost_connected(void *userdata, vb_error e, const char *msg, vb_hv *hv)
{
        vb_runner *rn = userdata;
        vb_run_vm *v = &rn->lost[rn->cur_lost];
        vb_hv_vm vm = { .id = v->vm_id, .name = v->vm_name };
        int k;

        if (e != VB_OK)
                return lost_snapshot_deleted(rn, e, msg);
        rn->lost_hv = hv;
        k = rn->lost_drv->snapshot_delete(hv, &vm, v->snapshot, lost_snapshot_deleted, rn);
        if (k < 0)
                lost_snapshot_deleted(rn, VB_E_FAILED, strerror(-k));
}

static int lost_load_work(void *ctx)
{
        vb_runner *rn = ctx;
        vb_run_vm *v = &rn->lost[rn->cur_lost];
        int k;

        vb_platform_clear(&rn->lost_platform);
        vb_credstore_password_free(TAKE_PTR(rn->lost_password));
        k = vb_catalog_platform_get(rn->d->catalog, v->platform_id, NULL, &rn->lost_platform);
        if (k < 0)
                return k;
        k = vb_credstore_get(rn->d->creds, rn->lost_platform.name, &rn->lost_password);
        return k == -ENOENT ? 0 : k;
}

static void lost_loaded(void *ctx, int k)
{
        vb_runner *rn = ctx;
        vb_run_vm *v = &rn->lost[rn->cur_lost];
        vb_hv_opts ho = { .name = rn->lost_platform.name,
                          .address = rn->lost_platform.address,
                          .user = rn->lost_platform.user,
                          .password = rn->lost_password,
                          .insecure = rn->lost_platform.insecure,
                          .cvd_port = (unsigned)rn->d->cfg.cvd_port,
                          .runtime_dir = rn->d->cfg.runtime_dir };

        if (k < 0) {
                snprintf(rn->lost_note, sizeof(rn->lost_note), "snapshot %s could not be deleted: its platform: %s",
                         v->snapshot, strerror(-k));
                return lost_record(rn);
        }
        rn->lost_drv = vb_hv_driver_find(vb_platform_type_to_string(rn->lost_platform.type));
        if (!rn->lost_drv) {
                snprintf(rn->lost_note, sizeof(rn->lost_note), "snapshot %s could not be deleted: no driver for %s",
                         v->snapshot, vb_platform_type_to_string(rn->lost_platform.type) ?: "?");
                return lost_record(rn);
        }
        k = rn->lost_drv->connect(rn->d->loop, &ho, lost_connected, rn);
        if (k < 0)
                lost_connected(rn, vb_error_from_net_errno(k), strerror(-k), NULL);
}

static int lost_runs_work(void *ctx)
{
        vb_runner *rn = ctx;
        vb_run_filter f = { .statuses = 1u << VB_RUN_WAITING | 1u << VB_RUN_RUNNING };
        vb_run *runs = NULL;
        size_t n = 0;
        int k;

        k = vb_catalog_run_list(rn->d->catalog, &f, &runs, &n);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++) {
                vb_run_status st = vb_run_status_from_vms(&runs[i]);

                log_warning("run %" PRId64 " (job %s) was cut short by a stop of vbakd: %s", runs[i].id,
                            runs[i].job_name, vb_run_status_to_string(st));
                vb_catalog_run_finish(rn->d->catalog, runs[i].id, st, VB_E_INTERRUPTED, "vbakd stopped during the run");
        }
        vb_runs_free(runs, n);
        k = vb_catalog_vm_locks_clear(rn->d->catalog);
        return k < 0 ? k : 0;
}

static void lost_runs_done(void *ctx, int k)
{
        vb_runner *rn = ctx;

        if (k < 0)
                log_error("finishing the runs a stop cut short: %s", strerror(-k));
        vb_run_vms_free(rn->lost, rn->n_lost);
        rn->lost = NULL;
        rn->n_lost = rn->cur_lost = 0;
        vb_platform_clear(&rn->lost_platform);
        vb_credstore_password_free(TAKE_PTR(rn->lost_password));
        if (!rn->shut) {
                rn->ticking = true;
                tick_arm(rn, 0);
        }
        if (rn->recovered)
                rn->recovered(rn->recovered_userdata, k < 0 ? k : 0);
}

static void lost_next(vb_runner *rn)
{
        vb_run_vm *v;

        if (rn->cur_lost == rn->n_lost) {
                if (vb_lane_queue(rn->d->lane, lost_runs_work, lost_runs_done, rn) < 0)
                        lost_runs_done(rn, -ECANCELED);
                return;
        }
        v = &rn->lost[rn->cur_lost];
        rn->lost_note[0] = '\0';
        if (!v->snapshot || !v->snapshot[0]) {
                if (vb_lane_queue(rn->d->lane, lost_finish_work, lost_finished, rn) < 0)
                        lost_finished(rn, -ECANCELED);
                return;
        }
        if (vb_lane_queue(rn->d->lane, lost_load_work, lost_loaded, rn) < 0)
                lost_loaded(rn, -ECANCELED);
}

static int lost_list_work(void *ctx)
{
        vb_runner *rn = ctx;

        return vb_catalog_unfinished_vms(rn->d->catalog, &rn->lost, &rn->n_lost);
}

static void lost_listed(void *ctx, int k)
{
        vb_runner *rn = ctx;

        if (k < 0) {
                log_error("reading the VMs a stop of vbakd left unfinished: %s", strerror(-k));
                rn->n_lost = 0;
        } else if (rn->n_lost > 0) {
                log_warning("%zu VM backup(s) were cut short by a stop of vbakd: cleaning up", rn->n_lost);
        }
        rn->cur_lost = 0;
        lost_next(rn);
}

void vb_runner_recover(vb_runner *rn, void (*done)(void *userdata, int r), void *userdata)
{
        rn->recovered = done;
        rn->recovered_userdata = userdata;
        if (vb_lane_queue(rn->d->lane, lost_list_work, lost_listed, rn) < 0)
                lost_listed(rn, -ECANCELED);
}

/* ---- the runner ---- */

int vb_runner_new(vb_daemon *d, vb_runner **ret)
{
        vb_runner *rn = calloc(1, sizeof(*rn));

        if (!rn)
                return -ENOMEM;
        rn->d = d;
        uv_timer_init(d->loop, &rn->tick);
        rn->tick.data = rn;
        *ret = rn;
        return 0;
}

void vb_runner_free(vb_runner *rn)
{
        /* A run still going keeps the runner: its memory goes with the process. */
        if (rn && !rn->runs)
                free(rn);
}

void vb_runner_shutdown(vb_runner *rn)
{
        if (!rn)
                return;
        rn->ticking = false;
        rn->shut = true;
        uv_timer_stop(&rn->tick);
        uv_close((uv_handle_t *)&rn->tick, NULL);
}
