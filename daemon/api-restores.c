/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api-restores.c -- restores, their plans and their live progress:
 *
 *   POST /v1/restores/plan             what a request would do (200 {"plan": ...}); nothing changes
 *   POST /v1/restores                  creates one ("confirm": true; 201, the restore with its items)
 *   GET  /v1/restores                  ?status=failed,partial&limit=N, newest first
 *   GET  /v1/restores/{id}             the restore with its items (and live progress)
 *   POST /v1/restores/{id}/start       starts a manual one, or a "once" one before its time (202)
 *   POST /v1/restores/{id}/stop        stops a running one (202)
 *   GET  /v1/restores/{id}/progress    ?since=GENERATION waits for the next change
 *
 * DESIGN: the restorer (restorer.h) checks the request, plans and runs;
 * this file turns requests into its calls and its answers into JSON,
 * reading the catalog on the daemon's lane. A request without "confirm":
 * true is answered as the restorer refuses it (E2 on field "confirm") with
 * the plan beside the error, so that a console shows what it would confirm
 * from that one answer. Progress is long-polled as the runs' is
 * (api-runs.c): a request that gives the generation it last saw is answered
 * at the next change of that restore, or after PROGRESS_WAIT_MS with the
 * same state; once the restore is not running, its record is the answer.
 * A restore is shown with its item counts as "counts" (the catalog's
 * "items"): "items" is the array of the items themselves.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/restorer.h"
#include "daemon/util.h"

#define PROGRESS_WAIT_MS 10000

typedef struct op op;

struct op {
        vb_daemon *d;
        vb_api_call *call;
        char *key; /* the restore's id from the path */
        int64_t id;
        vb_restore restore;
        vb_restore_item *items;
        size_t n_items;
        vb_restore *list;
        size_t n_list;
        unsigned statuses, limit;
        json_t *plan; /* a created restore's, added to the answer */
        bool with_items;
        bool stopping; /* answering a stop */
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
        vb_restore_clear(&o->restore);
        vb_restore_items_free(o->items, o->n_items);
        vb_restores_free(o->list, o->n_list);
        json_decref(o->plan);
        free(o);
}

static void reply_errno(op *o, int r, const char *what)
{
        if (r == -ENOENT)
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no %s %s", what, o->key ?: "");
        else
                vb_api_reply_error(o->call, 0, vb_error_from_errno(r), NULL, "%s %s: %s", what, o->key ?: "",
                                   strerror(-r));
        op_free(o);
}

/* The restorer's refusal, in the API's error document; plan (borrowed, may
 * be NULL) goes beside "error" as "plan". vb_api_reply_error() has no room
 * for it, so the document is made here in the same shape. */
static void reply_refusal(vb_api_call *call, vb_error e, const char *message, const char *field, json_t *plan)
{
        json_t *err, *doc;

        if (e == VB_OK) /* a refusal without a code would read as success */
                e = VB_E_FAILED;
        if (!plan)
                return vb_api_reply_error(call, 0, e, field, "%s", message ?: vb_error_name(e));
        err = json_pack("{s:i, s:s, s:s}", "code", e, "name", vb_error_name(e), "message", message ?: vb_error_name(e));
        if (err && field)
                json_object_set_new(err, "field", json_string(field));
        doc = err ? json_pack("{s:o, s:O}", "error", err, "plan", plan) : NULL;
        vb_api_reply_json(call, vb_api_status_of(e), doc);
}

static void queue(op *o, vb_work_fn fn, vb_work_done_fn done)
{
        int r = vb_lane_queue(o->d->lane, fn, done, o);

        if (r < 0)
                reply_errno(o, r, "request");
}

/* A restore id from the path: digits only. */
static bool take_id(op *o)
{
        char *end;

        errno = 0;
        o->id = strtoll(o->key, &end, 10);
        if (errno || *end || o->id <= 0) {
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no restore %s", o->key);
                op_free(o);
                return false;
        }
        return true;
}

/* ---- one restore ---- */

static int restore_work(void *ctx)
{
        op *o = ctx;
        int k = vb_catalog_restore_get(o->d->catalog, o->id, &o->restore);

        if (k >= 0 && o->with_items)
                k = vb_catalog_restore_item_list(o->d->catalog, o->id, &o->items, &o->n_items);
        return k;
}

/* The catalog's form of r, its item counts moved from "items" to "counts":
 * "items" is the array of the items themselves where they are shown. */
static json_t *restore_to_json(const vb_restore *r)
{
        json_t *j = vb_restore_to_json(r), *counts;

        if (j && (counts = json_object_get(j, "items")) && json_is_object(counts)) {
                json_object_set(j, "counts", counts);
                json_object_del(j, "items");
        }
        return j;
}

static json_t *restore_json(const op *o)
{
        json_t *j = restore_to_json(&o->restore), *a;

        if (!j || !o->with_items)
                return j;
        a = json_array();
        for (size_t i = 0; i < o->n_items; i++)
                json_array_append_new(a, vb_restore_item_to_json(&o->items[i]));
        json_object_set_new(j, "items", a);
        return j;
}

static void restore_read(void *ctx, int k)
{
        op *o = ctx;
        json_t *j;

        if (k < 0)
                return reply_errno(o, k, "restore");
        j = restore_json(o);
        if (j && o->plan)
                json_object_set(j, "plan", o->plan);
        if (j && o->stopping)
                json_object_set_new(j, "stopping", json_true());
        if (j)
                json_object_set_new(j, "progress", vb_restorer_progress(o->d->restorer, o->id) ?: json_null());
        vb_api_reply_json(o->call, o->status ?: 200, j);
        op_free(o);
}

static void reply_restore(op *o, int status)
{
        o->status = status;
        o->with_items = true;
        queue(o, restore_work, restore_read);
}

static void h_restore(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_id(o))
                reply_restore(o, 200);
}

/* ---- the list ---- */

static int list_work(void *ctx)
{
        op *o = ctx;

        return vb_catalog_restore_list(o->d->catalog, o->statuses, o->limit, &o->list, &o->n_list);
}

static void list_read(void *ctx, int k)
{
        op *o = ctx;
        json_t *a;

        if (k < 0)
                return reply_errno(o, k, "restores");
        a = json_array();
        for (size_t i = 0; i < o->n_list; i++)
                json_array_append_new(a, restore_to_json(&o->list[i]));
        vb_api_reply_json(o->call, 200, a);
        op_free(o);
}

static void h_restores(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        _cleanup_free_ char *status = NULL, *limit = NULL;

        if (!o)
                return;
        status = vb_api_query(call, "status");
        limit = vb_api_query(call, "limit");
        if (status) {
                char *save = NULL;

                for (char *w = strtok_r(status, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                        vb_run_status st = vb_run_status_from_string(w);

                        if (st < 0) {
                                vb_api_reply_error(call, 400, VB_E_USAGE, "status", "status: no restore status '%s'",
                                                   w);
                                return op_free(o);
                        }
                        o->statuses |= 1u << st;
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
                o->limit = (unsigned)n;
        }
        queue(o, list_work, list_read);
}

/* ---- plan, create ---- */

/* Both take the request as the body; NULL (no body) is refused here. */
static bool take_request(vb_api_call *call)
{
        if (call->body)
                return true;
        vb_api_reply_error(call, 400, VB_E_USAGE, "items",
                           "the body is the restore request: {\"items\": [{\"restore_point\": ID}...], ...}");
        return false;
}

/* A -errno the restorer answered at once (nothing will come through done). */
static void reply_call_errno(vb_api_call *call, int r)
{
        vb_error e = r == -EINVAL ? VB_E_USAGE : r == -ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(r);

        vb_api_reply_error(call, 0, e, NULL, "restore: %s", strerror(-r));
}

static void planned(void *userdata, vb_error e, const char *message, const char *field, json_t *plan)
{
        vb_api_call *call = userdata;

        if (e != VB_OK)
                return reply_refusal(call, e, message, field, plan);
        if (!plan)
                return vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "the restorer made no plan");
        vb_api_reply_json(call, 200, json_pack("{s:O}", "plan", plan));
}

static void h_plan(void *userdata, vb_api_call *call)
{
        vb_daemon *d = userdata;
        int k;

        if (!take_request(call))
                return;
        k = vb_restorer_plan(d->restorer, call->body, planned, call);
        if (k < 0)
                reply_call_errno(call, k);
}

static void created(void *userdata, vb_error e, const char *message, const char *field, json_t *plan, int64_t id)
{
        op *o = userdata;

        if (e != VB_OK || id <= 0) {
                reply_refusal(o->call, e, message ?: "the restore was not created", field, plan);
                return op_free(o);
        }
        o->id = id;
        o->plan = json_incref(plan);
        reply_restore(o, 201);
}

static void h_create(void *userdata, vb_api_call *call)
{
        op *o;
        int k;

        if (!take_request(call) || !(o = op_new(userdata, call)))
                return;
        k = vb_restorer_create(o->d->restorer, call->body, created, o);
        if (k < 0) {
                reply_call_errno(call, k);
                op_free(o);
        }
}

/* ---- start, stop ---- */

static void started(void *userdata, vb_error e, const char *message)
{
        op *o = userdata;

        if (e != VB_OK) {
                vb_api_reply_error(o->call, 0, e, NULL, "%s", message ?: vb_error_name(e));
                return op_free(o);
        }
        reply_restore(o, 202);
}

static bool no_body(op *o, const char *verb)
{
        const char *k;

        if (!o->call->body || json_object_size(o->call->body) == 0)
                return true;
        k = json_object_iter_key(json_object_iter(o->call->body));
        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: unknown field (%s takes no body)", k, verb);
        op_free(o);
        return false;
}

static void h_start(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        int k;

        if (!o || !take_id(o) || !no_body(o, "start"))
                return;
        k = vb_restorer_start(o->d->restorer, o->id, started, o);
        if (k < 0)
                reply_errno(o, k, "restore");
}

static int get_work(void *ctx)
{
        op *o = ctx;

        return vb_catalog_restore_get(o->d->catalog, o->id, &o->restore);
}

/* The restore exists (read first, for a 404 that says so); stop it. */
static void stop_read(void *ctx, int k)
{
        op *o = ctx;

        if (k < 0)
                return reply_errno(o, k, "restore");
        k = vb_restorer_stop(o->d->restorer, o->id);
        if (k == -ENOENT) {
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL, "restore %" PRId64 " is not running (%s)", o->id,
                                   vb_run_status_to_string(o->restore.status) ?: "?");
                return op_free(o);
        }
        if (k < 0)
                return reply_errno(o, k, "restore");
        vb_restore_clear(&o->restore);
        o->stopping = true;
        reply_restore(o, 202);
}

static void h_stop(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o && take_id(o) && no_body(o, "stop"))
                queue(o, get_work, stop_read);
}

/* ---- progress ---- */

static void progress_reply(op *o)
{
        json_t *live = vb_restorer_progress(o->d->restorer, o->id);

        if (!live) /* not running (any more, or not yet): the restore as recorded */
                return reply_restore(o, 200);
        json_object_set_new(live, "generation", json_integer((json_int_t)vb_restorer_generation(o->d->restorer)));
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

static void on_change(void *userdata, int64_t id)
{
        (void)userdata;
        for (op *o = waiters, *next; o; o = next) {
                next = o->next;
                if (o->id == id)
                        waiter_wake(o);
        }
}

static bool running(vb_restorer *rs, int64_t id)
{
        json_t *live = vb_restorer_progress(rs, id);

        json_decref(live);
        return live != NULL;
}

static void h_progress(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        _cleanup_free_ char *since = vb_api_query(call, "since");

        if (!o || !take_id(o))
                return;
        if (since) {
                char *end;

                errno = 0;
                o->since = strtoull(since, &end, 10);
                if (errno || *end || !since[0]) {
                        vb_api_reply_error(call, 400, VB_E_USAGE, "since", "since: '%s' is not a generation", since);
                        return op_free(o);
                }
        }
        if (!since || o->since != vb_restorer_generation(o->d->restorer) || !running(o->d->restorer, o->id))
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

int vb_api_restores_register(vb_daemon *d)
{
        vb_restorer_on_change(d->restorer, on_change, d);
        /* "/v1/restores/plan" before "/v1/restores/{}": the first route that matches wins. */
        if (vb_api_route(d->api, "POST", "/v1/restores/plan", h_plan, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/restores", h_create, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/restores", h_restores, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/restores/{}", h_restore, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/restores/{}/start", h_start, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/restores/{}/stop", h_stop, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/restores/{}/progress", h_progress, d) < 0)
                return -ENOMEM;
        return 0;
}
