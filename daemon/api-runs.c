/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api-runs.c -- starting and stopping jobs, their runs, each run's VMs,
 * retries and live progress:
 *
 *   POST /v1/jobs/{name}/start         a run now (201, the run)
 *   POST /v1/jobs/{name}/stop          stops the job's run
 *   POST /v1/jobs/{name}/retry         retries VMs of the job's latest finished run
 *   GET  /v1/runs                      ?job=NAME&status=failed,partial&limit=N
 *   GET  /v1/runs/{id}                 the run with its VMs (and live progress)
 *   GET  /v1/runs/{id}/vms             its VMs
 *   POST /v1/runs/{id}/retry           {"failed": true} or {"vms": [names]}
 *   GET  /v1/runs/{id}/progress        ?since=GENERATION waits for the next change
 *
 * DESIGN: the runner (runner.h) does the work; this file turns requests
 * into its calls and its answers into JSON, reading the catalog on the
 * daemon's lane. Progress is pushed by long polling: a request that gives
 * the generation it last saw is answered at the next change of any run
 * (or after PROGRESS_WAIT_MS with the same state), so a client sees every
 * change without polling in a loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/runner.h"
#include "daemon/util.h"

#define PROGRESS_WAIT_MS 10000

typedef struct op op;

struct op {
        vb_daemon *d;
        vb_api_call *call;
        char *key; /* the job's name or the run's id from the path */
        int64_t run_id;
        vb_job job;
        vb_run run;
        vb_run_vm *vms;
        size_t n_vms;
        vb_run *runs;
        size_t n_runs;
        vb_run_filter filter;
        char *job_filter;
        bool with_vms;
        /* A retry. */
        char **names;
        size_t n_names;
        bool failed_only;
        /* A progress wait. */
        op *next;
        uv_timer_t *timer;
        uint64_t since;
        int status; /* of the answer to come */
};

static op *waiters;

static op *op_new(vb_daemon *d, vb_api_call *call)
{
        op *o = calloc(1, sizeof(*o));

        if (!o || (call->n_params > 0 && !(o->key = strdup(call->params[0])))) {
                free(o);
                vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                return NULL;
        }
        o->d = d;
        o->call = call;
        return o;
}

static void op_free(op *o)
{
        free(o->key);
        vb_job_clear(&o->job);
        vb_run_clear(&o->run);
        vb_run_vms_free(o->vms, o->n_vms);
        vb_runs_free(o->runs, o->n_runs);
        free(o->job_filter);
        for (size_t i = 0; i < o->n_names; i++)
                free(o->names[i]);
        free(o->names);
        free(o);
}

static void reply_errno(op *o, int r, const char *what)
{
        if (r == -ENOENT)
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no %s %s", what, o->key ?: "");
        else
                vb_api_reply_error(o->call, 500, vb_error_from_errno(r), NULL, "%s %s: %s", what, o->key ?: "",
                                   strerror(-r));
        op_free(o);
}

static void queue(op *o, vb_work_fn fn, vb_work_done_fn done)
{
        int r = vb_lane_queue(o->d->lane, fn, done, o);

        if (r < 0)
                reply_errno(o, r, "request");
}

/* A run id from the path: digits only. */
static bool take_run_id(op *o)
{
        char *end;

        errno = 0;
        o->run_id = strtoll(o->key, &end, 10);
        if (errno || *end || o->run_id <= 0) {
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no run %s", o->key);
                op_free(o);
                return false;
        }
        return true;
}

/* ---- one run ---- */

static int run_work(void *ctx)
{
        op *o = ctx;
        int k = vb_catalog_run_get(o->d->catalog, o->run_id, &o->run);

        if (k >= 0 && o->with_vms)
                k = vb_catalog_run_vm_list(o->d->catalog, o->run_id, &o->vms, &o->n_vms);
        return k;
}

static json_t *vms_json(const op *o)
{
        json_t *a = json_array();

        for (size_t i = 0; i < o->n_vms; i++)
                json_array_append_new(a, vb_run_vm_to_json(&o->vms[i]));
        return a;
}

static void run_read(void *ctx, int k)
{
        op *o = ctx;
        json_t *j, *live;

        if (k < 0)
                return reply_errno(o, k, "run");
        j = vb_run_to_json(&o->run);
        if (j && o->with_vms)
                json_object_set_new(j, "results", vms_json(o));
        live = vb_runner_progress(o->d->runner, o->run_id);
        if (j)
                json_object_set_new(j, "progress", live ?: json_null());
        vb_api_reply_json(o->call, o->status ?: 200, j);
        op_free(o);
}

static void reply_run(op *o, int status, bool with_vms)
{
        o->status = status;
        o->with_vms = with_vms;
        queue(o, run_work, run_read);
}

static void h_run(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_run_id(o))
                reply_run(o, 200, true);
}

static int vms_work(void *ctx)
{
        op *o = ctx;
        vb_run r = { 0 };
        int k = vb_catalog_run_get(o->d->catalog, o->run_id, &r);

        vb_run_clear(&r);
        if (k < 0)
                return k;
        return vb_catalog_run_vm_list(o->d->catalog, o->run_id, &o->vms, &o->n_vms);
}

static void vms_read(void *ctx, int k)
{
        op *o = ctx;

        if (k < 0)
                return reply_errno(o, k, "run");
        vb_api_reply_json(o->call, 200, vms_json(o));
        op_free(o);
}

static void h_run_vms(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_run_id(o))
                queue(o, vms_work, vms_read);
}

/* ---- the list ---- */

static int runs_work(void *ctx)
{
        op *o = ctx;
        int k;

        if (o->job_filter) {
                k = vb_catalog_job_get(o->d->catalog, 0, o->job_filter, &o->job);
                if (k < 0)
                        return k;
                o->filter.job_id = o->job.id;
        }
        return vb_catalog_run_list(o->d->catalog, &o->filter, &o->runs, &o->n_runs);
}

static void runs_read(void *ctx, int k)
{
        op *o = ctx;
        json_t *a;

        if (k < 0) {
                free(o->key);
                o->key = TAKE_PTR(o->job_filter);
                return reply_errno(o, k, "job");
        }
        a = json_array();
        for (size_t i = 0; i < o->n_runs; i++)
                json_array_append_new(a, vb_run_to_json(&o->runs[i]));
        vb_api_reply_json(o->call, 200, a);
        op_free(o);
}

static void h_runs(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        _cleanup_free_ char *status = NULL, *limit = NULL;

        if (!o)
                return;
        o->job_filter = vb_api_query(call, "job");
        status = vb_api_query(call, "status");
        limit = vb_api_query(call, "limit");
        if (status) {
                char *save = NULL;

                for (char *w = strtok_r(status, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                        vb_run_status st = vb_run_status_from_string(w);

                        if (st < 0) {
                                vb_api_reply_error(call, 400, VB_E_USAGE, "status", "status: no run status '%s'", w);
                                return op_free(o);
                        }
                        o->filter.statuses |= 1u << st;
                }
        }
        if (limit) {
                char *end;
                long n = strtol(limit, &end, 10);

                if (*end || n < 1 || n > 100000) {
                        vb_api_reply_error(call, 400, VB_E_USAGE, "limit", "limit: '%s' is not a count 1-100000",
                                           limit);
                        return op_free(o);
                }
                o->filter.limit = (unsigned)n;
        }
        queue(o, runs_work, runs_read);
}

/* ---- start, stop ---- */

static void answered_run(void *userdata, vb_error e, const char *msg, int64_t run_id)
{
        op *o = userdata;

        if (e != VB_OK) {
                vb_api_reply_error(o->call, vb_api_status_of(e), e, NULL, "%s", msg);
                return op_free(o);
        }
        o->run_id = run_id;
        reply_run(o, o->status, false);
}

static void h_start(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        int k;

        if (!o)
                return;
        if (call->body && json_object_size(call->body) > 0) {
                vb_api_reply_error(call, 400, VB_E_USAGE, json_object_iter_key(json_object_iter(call->body)),
                                   "%s: unknown field (start takes no body)",
                                   json_object_iter_key(json_object_iter(call->body)));
                return op_free(o);
        }
        o->status = 201;
        k = vb_runner_start(o->d->runner, o->key, VB_RUN_MANUAL, answered_run, o);
        if (k < 0)
                reply_errno(o, k, "job");
}

static int job_work(void *ctx)
{
        op *o = ctx;

        return vb_catalog_job_get(o->d->catalog, 0, o->key, &o->job);
}

static void stop_job_read(void *ctx, int k)
{
        op *o = ctx;
        int64_t id;

        if (k < 0)
                return reply_errno(o, k, "job");
        id = vb_runner_stop(o->d->runner, o->job.id);
        if (id < 0) {
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL, "job %s has no run going", o->job.name);
                return op_free(o);
        }
        vb_api_reply_json(o->call, 200,
                          json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id, "job", o->job.name, "stopping", true));
        op_free(o);
}

static void h_stop(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, job_work, stop_job_read);
}

/* ---- retry ---- */

/* {"failed": true} or {"vms": ["name"...]}: 0, or answered 400. */
static int take_retry_body(op *o)
{
        json_t *b = o->call->body, *v;
        const char *k;

        json_object_foreach(b, k, v)
        {
                if (streq(k, "failed")) {
                        if (!json_is_boolean(v))
                                goto bad_type;
                        o->failed_only = json_is_true(v);
                } else if (streq(k, "vms")) {
                        size_t i;
                        json_t *e;

                        if (!json_is_array(v))
                                goto bad_type;
                        o->names = calloc(json_array_size(v) + 1, sizeof(char *));
                        if (!o->names)
                                goto oom;
                        json_array_foreach(v, i, e)
                        {
                                if (!json_is_string(e) || !json_string_value(e)[0])
                                        goto bad_type;
                                if (!(o->names[o->n_names] = strdup(json_string_value(e))))
                                        goto oom;
                                o->n_names++;
                        }
                } else {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: unknown field", k);
                        goto fail;
                }
        }
        if (!o->failed_only && o->n_names == 0) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "vms",
                                   "vms: name the VMs to retry, or give \"failed\": true");
                goto fail;
        }
        return 0;
bad_type:
        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: %s", k,
                           streq(k, "failed") ? "true or false" : "an array of VM names");
        goto fail;
oom:
        vb_api_reply_error(o->call, 500, VB_E_FAILED, NULL, "out of memory");
fail:
        op_free(o);
        return -EINVAL;
}

static void retry_now(op *o)
{
        int k;

        o->status = 202;
        k = vb_runner_retry(o->d->runner, o->run_id, (const char *const *)o->names, o->n_names, o->failed_only,
                            answered_run, o);
        if (k == -EALREADY) {
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL, "run %" PRId64 " is running", o->run_id);
                op_free(o);
        } else if (k < 0) {
                reply_errno(o, k, "run");
        }
}

static void h_retry(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_run_id(o) && take_retry_body(o) == 0)
                retry_now(o);
}

static int latest_run_work(void *ctx)
{
        op *o = ctx;
        int k = vb_catalog_job_get(o->d->catalog, 0, o->key, &o->job);

        if (k < 0)
                return k;
        o->filter = (vb_run_filter){ .job_id = o->job.id, .limit = 1 };
        return vb_catalog_run_list(o->d->catalog, &o->filter, &o->runs, &o->n_runs);
}

static void latest_run_read(void *ctx, int k)
{
        op *o = ctx;

        if (k < 0)
                return reply_errno(o, k, "job");
        if (o->n_runs == 0) {
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL, "job %s has not run yet", o->job.name);
                return op_free(o);
        }
        o->run_id = o->runs[0].id;
        retry_now(o);
}

static void h_job_retry(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_retry_body(o) == 0)
                queue(o, latest_run_work, latest_run_read);
}

/* ---- progress ---- */

static void progress_reply(op *o)
{
        json_t *live = vb_runner_progress(o->d->runner, o->run_id);

        if (!live) { /* not running (any more): the run as recorded */
                o->with_vms = true;
                o->status = 200;
                return queue(o, run_work, run_read);
        }
        json_object_set_new(live, "generation", json_integer((json_int_t)vb_runner_generation(o->d->runner)));
        vb_api_reply_json(o->call, 200, live);
        op_free(o);
}

static void timer_closed(uv_handle_t *h)
{
        free(h);
}

static void waiter_wake(op *o)
{
        for (op **p = &waiters; *p; p = &(*p)->next)
                if (*p == o) {
                        *p = o->next;
                        break;
                }
        uv_timer_stop(o->timer);
        uv_close((uv_handle_t *)TAKE_PTR(o->timer), timer_closed);
        progress_reply(o);
}

static void waited_long(uv_timer_t *t)
{
        waiter_wake(t->data);
}

static void on_change(void *userdata, int64_t run_id)
{
        (void)userdata;
        for (op *o = waiters, *next; o; o = next) {
                next = o->next;
                if (o->run_id == run_id)
                        waiter_wake(o);
        }
}

static void h_progress(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        _cleanup_free_ char *since = vb_api_query(call, "since");

        if (!o || !take_run_id(o))
                return;
        if (since) {
                char *end;

                errno = 0;
                o->since = strtoull(since, &end, 10);
                if (errno || *end) {
                        vb_api_reply_error(call, 400, VB_E_USAGE, "since", "since: '%s' is not a generation", since);
                        return op_free(o);
                }
        }
        if (!since || o->since != vb_runner_generation(o->d->runner) ||
            !vb_runner_progress_live(o->d->runner, o->run_id))
                return progress_reply(o);
        o->timer = malloc(sizeof(*o->timer));
        if (!o->timer)
                return progress_reply(o);
        uv_timer_init(o->d->loop, o->timer);
        o->timer->data = o;
        uv_timer_start(o->timer, waited_long, PROGRESS_WAIT_MS, 0);
        o->next = waiters;
        waiters = o;
}

int vb_api_runs_register(vb_daemon *d)
{
        vb_runner_on_change(d->runner, on_change, d);
        if (vb_api_route(d->api, "POST", "/v1/jobs/{}/start", h_start, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/jobs/{}/stop", h_stop, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/jobs/{}/retry", h_job_retry, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/runs", h_runs, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/runs/{}", h_run, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/runs/{}/vms", h_run_vms, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/runs/{}/retry", h_retry, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/runs/{}/progress", h_progress, d) < 0)
                return -ENOMEM;
        return 0;
}
