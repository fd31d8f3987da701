/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api-jobs.c -- backup jobs:
 *
 *   GET    /v1/jobs                 list (?deleted=true: deleted jobs too)
 *   POST   /v1/jobs                 create
 *   GET    /v1/jobs/{name}          one (a number is a job id: deleted jobs too)
 *   PATCH  /v1/jobs/{name}          modify (options are merged key by key)
 *   DELETE /v1/jobs/{name}          delete (kept for its runs; the name is free again)
 *   POST   /v1/jobs/{name}/clone    a copy under a new name
 *
 * Starting and stopping a job are runs (api-runs.c).
 *
 * DESIGN
 * - Each request is one op whose whole work runs on the daemon's lane: the
 *   checks need the catalog (platform and pool names) and ICU (schedules),
 *   and the answer's next run time needs ICU too. A refusal is recorded in
 *   the op (status, code, field, message) and answered on the loop.
 * - Writes that read the job first (modify, clone, delete) hold jobs_lock
 *   from the read to the write, so two modifications of one job never lose
 *   each other's changes; a modification is checked whole before the one
 *   catalog update, so it applies all or nothing.
 * - Options are stored as the full canonical object (vb_jobopts_to_json):
 *   a job keeps the values it was given even if a later version changes a
 *   default. The schedule is stored as its JSON form; a job without one is
 *   manual ({"kind": "manual"}).
 * - A changed schedule, or a job enabled again, starts counting from now:
 *   its last check becomes now - 1, so firings that fell before the change
 *   are not run as missed ones (an `immediately` set now still fires).
 * - Answers add to the catalog's job "schedule_text" (the canonical text)
 *   and "next_run" (seconds since the epoch; null when manual, disabled,
 *   deleted or past its last firing).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "daemon/jobopts.h"
#include "daemon/jobspec.h"
#include "daemon/log.h"
#include "daemon/schedule.h"
#include "daemon/util.h"
#include "dedup/manifest.h"

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct op {
        vb_daemon *d;
        vb_api_call *call;
        char *key;      /* the job's name from the path */
        int64_t key_id; /* the key as a job id when it is all digits, else 0 */
        bool include_deleted;
        time_t now;
        vb_job job;
        json_t *out; /* the answer */
        int status;  /* its HTTP status */
        /* A refusal, answered as it is. */
        bool refused;
        int rstatus;
        vb_error rcode;
        char *rfield;
        char *rmessage;
        char why[256]; /* what failed, for a -errno without a refusal */
} op;

static op *op_new(vb_daemon *d, vb_api_call *call)
{
        op *o = calloc(1, sizeof(*o));
        const char *k;

        if (!o) {
                vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                return NULL;
        }
        o->d = d;
        o->call = call;
        if (call->n_params > 0) {
                k = call->params[0];
                o->key = strdup(k);
                if (!o->key) {
                        vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                        free(o);
                        return NULL;
                }
                /* Job names are never all digits (see check_name), so a
                 * number can only be an id; one out of range names no job. */
                if (k[0] && strspn(k, "0123456789") == strlen(k)) {
                        long long n;

                        errno = 0;
                        n = strtoll(k, NULL, 10);
                        o->key_id = errno != 0 || n <= 0 ? INT64_MAX : (int64_t)n;
                }
        }
        return o;
}

static void op_free(op *o)
{
        free(o->key);
        vb_job_clear(&o->job);
        json_decref(o->out);
        free(o->rfield);
        free(o->rmessage);
        free(o);
}

/* Records a refusal; returns -EINVAL for the work function to return. */
static int refuse(op *o, int status, vb_error code, const char *field, const char *fmt, ...) _printf_(5, 6);
static int refuse(op *o, int status, vb_error code, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (o->refused)
                return -EINVAL;
        o->refused = true;
        o->rstatus = status;
        o->rcode = code;
        o->rfield = field ? strdup(field) : NULL;
        va_start(ap, fmt);
        if (vasprintf(&o->rmessage, fmt, ap) < 0)
                o->rmessage = NULL;
        va_end(ap);
        return -EINVAL;
}

/* The answer, on the loop; frees o. */
static void done(void *ctx, int r)
{
        op *o = ctx;

        if (o->refused)
                vb_api_reply_error(o->call, o->rstatus, o->rcode, o->rfield, "%s", o->rmessage ?: "refused");
        else if (r < 0)
                vb_api_reply_error(o->call, 0, vb_error_from_errno(r), NULL, "%s%s%s", o->why, *o->why ? ": " : "",
                                   strerror(-r));
        else
                vb_api_reply_json(o->call, o->status, TAKE_PTR(o->out));
        op_free(o);
}

static void queue(op *o, vb_work_fn fn)
{
        int r = vb_lane_queue(o->d->lane, fn, done, o);

        if (r < 0)
                done(o, r);
}

/* ---- the answer's form ---- */

/* The schedule stored for j ({"kind": "manual"} when there is none). */
static int job_schedule(const vb_job *j, vb_schedule *ret, char **err)
{
        if (!j->schedule || json_is_null(j->schedule))
                return vb_schedule_parse("manual", j->created, ret, err);
        return vb_schedule_from_json(j->schedule, j->created, ret, err);
}

/* The options stored for j on top of the defaults. */
static int job_options(const vb_job *j, vb_jobopts *ret, char **err)
{
        json_t *empty = NULL;
        int r;

        vb_jobopts_defaults(ret);
        if (!j->options) {
                empty = json_object();
                if (!empty)
                        return -ENOMEM;
        }
        r = vb_jobopts_from_json(ret, j->options ?: empty, err);
        json_decref(empty);
        return r;
}

/* When the scheduler starts j next: after its last check, or from its
 * creation on; 0 for none. */
static time_t next_run(const vb_job *j, const vb_schedule *s)
{
        time_t t;

        if (!j->enabled || j->deleted || s->kind == VB_SCHEDULE_MANUAL)
                return 0;
        if (vb_schedule_next(s, (time_t)MAX(j->last_check, j->created - 1), &t) < 0)
                return 0;
        return t;
}

/* The API's form of j: the catalog's, with the options in full, the
 * schedule, its text and the next run. NULL when out of memory. */
static json_t *job_json(const vb_job *j)
{
        json_t *out = vb_job_to_json(j), *sj = NULL;
        vb_jobopts opts;
        vb_schedule s;
        char text[VB_SCHEDULE_FORMAT_MAX];
        time_t t;
        int r;

        if (!out)
                return NULL;
        {
                _cleanup_free_ char *err = NULL;

                r = job_options(j, &opts, &err);
                if (r >= 0)
                        json_object_set_new(out, "options", vb_jobopts_to_json(&opts));
                else
                        log_warning("job %s: its stored options are not valid (%s); shown as stored", j->name,
                                    err ?: strerror(-r));
        }
        {
                _cleanup_free_ char *err = NULL;

                r = job_schedule(j, &s, &err);
                if (r >= 0)
                        r = vb_schedule_to_json(&s, &sj);
                if (r >= 0)
                        r = vb_schedule_format(&s, text, sizeof(text));
                if (r < 0) {
                        log_warning("job %s: its stored schedule is not valid (%s)", j->name, err ?: strerror(-r));
                        json_decref(sj);
                        json_object_set_new(out, "schedule_text", json_null());
                        json_object_set_new(out, "next_run", json_null());
                        return out;
                }
        }
        t = next_run(j, &s);
        json_object_set_new(out, "schedule", sj);
        json_object_set_new(out, "schedule_text", json_string(text));
        json_object_set_new(out, "next_run", t ? json_integer((json_int_t)t) : json_null());
        return out;
}

/* Reads the job id into o->job and makes the answer of it. */
static int answer_job(op *o, int64_t id, int status)
{
        int r;

        vb_job_clear(&o->job);
        r = vb_catalog_job_get(o->d->catalog, id, NULL, &o->job);
        if (r < 0)
                return r;
        o->out = job_json(&o->job);
        o->status = status;
        return o->out ? 0 : -ENOMEM;
}

/* Reads the job of the path into o->job; a refusal when it is not there,
 * or (unless deleted_ok) when it was deleted. */
static int get_key(op *o, bool deleted_ok)
{
        int r = vb_catalog_job_get(o->d->catalog, o->key_id, o->key_id ? NULL : o->key, &o->job);

        if (r == -ENOENT)
                return refuse(o, 404, VB_E_NOT_FOUND, NULL, "no job %s", o->key);
        if (r < 0)
                return r;
        if (o->job.deleted && !deleted_ok)
                return refuse(o, 409, VB_E_REFUSED, NULL, "job %s (id %" PRId64 ") was deleted", o->job.name,
                              o->job.id);
        return 0;
}

/* ---- checks ---- */

static int check_name(op *o, const json_t *v)
{
        const char *s = json_string_value(v);

        if (!s || !dd_name_is_safe(s))
                return refuse(o, 400, VB_E_USAGE, "name", "name: use 1-64 letters, digits, '.', '_' or '-'");
        if (strspn(s, "0123456789") == strlen(s))
                return refuse(o, 400, VB_E_USAGE, "name",
                              "name: must not be only digits (a number names a job by its id)");
        return 0;
}

/* The option an error message of jobopts is about: the key it starts with. */
static const char *option_of(const char *msg)
{
        for (size_t i = 0; msg && i < vb_jobopts_n; i++) {
                size_t n = strlen(vb_jobopts_table[i].key);

                if (strncmp(msg, vb_jobopts_table[i].key, n) == 0 && msg[n] == ':')
                        return vb_jobopts_table[i].key;
        }
        return NULL;
}

static int apply_options(op *o, json_t *v, vb_jobopts *opts)
{
        _cleanup_free_ char *err = NULL;
        const char *key;
        json_t *x;
        int r;

        if (json_is_null(v)) {
                vb_jobopts_defaults(opts);
                return 0;
        }
        if (!json_is_object(v))
                return refuse(o, 400, VB_E_USAGE, "options", "options: expected an object of KEY: VALUE");
        /* The field of an unknown key is the key as it was sent. */
        json_object_foreach(v, key, x) if (!vb_jobopt_find(key))
        {
                return refuse(o, 400, VB_E_USAGE, key, "%s: unknown option (vbak job create --help lists them)", key);
        }
        r = vb_jobopts_from_json(opts, v, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return refuse(o, 400, VB_E_USAGE, option_of(err) ?: "options", "%s", err ?: "options: not valid");
        return 0;
}

static int apply_schedule(op *o, json_t *v, vb_job *j)
{
        _cleanup_free_ char *err = NULL;
        char text[VB_SCHEDULE_FORMAT_MAX];
        json_t *sj = NULL;
        vb_schedule s;
        time_t t;
        int r;

        if (json_is_null(v))
                r = vb_schedule_parse("manual", o->now, &s, &err);
        else if (json_is_string(v) || json_is_object(v))
                r = vb_schedule_from_json(v, o->now, &s, &err);
        else
                return refuse(o, 400, VB_E_USAGE, "schedule",
                              "schedule: expected a text such as 'daily 02:00' or an object, got something else");
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return refuse(o, 400, VB_E_USAGE, "schedule", "schedule: %s", err ?: "not valid");
        /* A one-off in the past would never run: surely a mistake. */
        if (s.kind == VB_SCHEDULE_ONCE && vb_schedule_next(&s, o->now - 1, &t) == -ENOENT) {
                if (vb_schedule_format(&s, text, sizeof(text)) < 0)
                        snprintf(text, sizeof(text), "once");
                return refuse(o, 400, VB_E_USAGE, "schedule", "schedule: '%s' is in the past", text);
        }
        r = vb_schedule_to_json(&s, &sj);
        if (r < 0)
                return r;
        json_decref(j->schedule);
        j->schedule = sj;
        return 0;
}

/* What a create or modify body may set, and what answers hold that cannot
 * be set (named as such rather than as unknown). */
static const char *const settable[] = { "name",        "platform", "pool",    "selection", "exclusions",
                                        "backup_type", "type",     "options", "schedule",  "enabled" };
static const char *const readonly[] = { "id",      "platform_id", "pool_id",       "deleted", "last_check",
                                        "created", "modified",    "schedule_text", "next_run" };

static bool in(const char *const *list, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (streq(list[i], s))
                        return true;
        return false;
}

/* Applies the body to j and *opts, which hold the job's current values (or
 * the defaults, when creating); *schedule_set tells whether it set the
 * schedule. 0 or a refusal (or -errno). */
static int apply_body(op *o, vb_job *j, vb_jobopts *opts, bool creating, bool *schedule_set)
{
        static const char *const required[] = { "name", "platform", "pool", "selection" };
        json_t *b = o->call->body, *v;
        const char *k;
        int r;

        *schedule_set = false;
        if (!b)
                return refuse(o, 400, VB_E_USAGE, NULL, "a JSON object is needed");
        json_object_foreach(b, k, v)
        {
                if (in(readonly, ELEMENTSOF(readonly), k))
                        return refuse(o, 400, VB_E_USAGE, k, "%s: cannot be set", k);
                if (!in(settable, ELEMENTSOF(settable), k))
                        return refuse(o, 400, VB_E_USAGE, k, "%s: unknown field", k);
        }
        for (size_t i = 0; creating && i < ELEMENTSOF(required); i++)
                if (!json_object_get(b, required[i]))
                        return refuse(o, 400, VB_E_USAGE, required[i], "%s: required", required[i]);
        if ((v = json_object_get(b, "name"))) {
                if (check_name(o, v) < 0)
                        return -EINVAL;
                free(j->name);
                j->name = strdup(json_string_value(v));
                if (!j->name)
                        return -ENOMEM;
        }
        if ((v = json_object_get(b, "platform"))) {
                vb_platform p = {};

                if (!json_is_string(v))
                        return refuse(o, 400, VB_E_USAGE, "platform", "platform: expected a platform's name");
                r = vb_catalog_platform_get(o->d->catalog, 0, json_string_value(v), &p);
                if (r == -ENOENT)
                        return refuse(o, 400, VB_E_NOT_FOUND, "platform", "no platform %s (vbak platform list)",
                                      json_string_value(v));
                if (r < 0)
                        return snprintf(o->why, sizeof(o->why), "reading platform %s", json_string_value(v)), r;
                j->platform_id = p.id;
                vb_platform_clear(&p);
        }
        if ((v = json_object_get(b, "pool"))) {
                vb_pool p = {};

                if (!json_is_string(v))
                        return refuse(o, 400, VB_E_USAGE, "pool", "pool: expected a pool's name");
                r = vb_catalog_pool_get(o->d->catalog, 0, json_string_value(v), &p);
                if (r == -ENOENT)
                        return refuse(o, 400, VB_E_NOT_FOUND, "pool", "no pool %s (vbak pool list)",
                                      json_string_value(v));
                if (r < 0)
                        return snprintf(o->why, sizeof(o->why), "reading pool %s", json_string_value(v)), r;
                j->pool_id = p.id;
                vb_pool_clear(&p);
        }
        if ((v = json_object_get(b, "selection"))) {
                _cleanup_free_ char *err = NULL;
                json_t *sel = NULL;

                r = vb_jobspec_selection_from_json(v, &sel, &err);
                if (r == -EINVAL)
                        return refuse(o, 400, VB_E_USAGE, "selection", "%s", err ?: "selection: not valid");
                if (r < 0)
                        return r;
                json_decref(j->selection);
                j->selection = sel;
        }
        if ((v = json_object_get(b, "exclusions"))) {
                _cleanup_free_ char *err = NULL;
                json_t *ex = NULL;

                r = vb_jobspec_exclusions_from_json(v, &ex, &err);
                if (r == -EINVAL)
                        return refuse(o, 400, VB_E_USAGE, "exclusions", "%s", err ?: "exclusions: not valid");
                if (r < 0)
                        return r;
                json_decref(j->exclusions);
                j->exclusions = ex;
        }
        if (json_object_get(b, "type") && json_object_get(b, "backup_type"))
                return refuse(o, 400, VB_E_USAGE, "type", "type: give type or backup_type, not both");
        if ((v = json_object_get(b, "type")) || (v = json_object_get(b, "backup_type"))) {
                const char *f = json_object_get(b, "type") ? "type" : "backup_type";
                dd_backup_type t = dd_backup_type_from_string(json_string_value(v));

                if (t < 0)
                        return refuse(o, 400, VB_E_USAGE, f, "%s: full or incremental", f);
                j->backup_type = t;
        }
        if ((v = json_object_get(b, "options")) && apply_options(o, v, opts) < 0)
                return o->refused ? -EINVAL : -ENOMEM;
        if ((v = json_object_get(b, "schedule"))) {
                r = apply_schedule(o, v, j);
                if (r < 0)
                        return r;
                *schedule_set = true;
        }
        if ((v = json_object_get(b, "enabled"))) {
                if (!json_is_boolean(v))
                        return refuse(o, 400, VB_E_USAGE, "enabled", "enabled: expected true or false");
                j->enabled = json_is_true(v);
        }
        return 0;
}

/* Sets j->options to the canonical form of opts. */
static int set_options(vb_job *j, const vb_jobopts *opts)
{
        json_t *x = vb_jobopts_to_json(opts);

        if (!x)
                return -ENOMEM;
        json_decref(j->options);
        j->options = x;
        return 0;
}

/* After a change of schedule, or enabling: count from now on. */
static void restart_schedule(op *o, int64_t id)
{
        int r = vb_catalog_job_set_last_check(o->d->catalog, id, (int64_t)o->now - 1);

        if (r < 0)
                log_warning_errno(r, "job %" PRId64 ": recording its schedule's start: %m", id);
}

/* ---- list, show ---- */

static int list_work(void *ctx)
{
        op *o = ctx;
        vb_job *list = NULL;
        size_t n = 0;
        int r = vb_catalog_job_list(o->d->catalog, o->include_deleted, &list, &n);

        if (r < 0)
                return r;
        o->out = json_array();
        for (size_t i = 0; o->out && i < n; i++)
                if (json_array_append_new(o->out, job_json(&list[i])) < 0)
                        r = -ENOMEM;
        vb_jobs_free(list, n);
        o->status = 200;
        return o->out ? r : -ENOMEM;
}

static void h_list(void *userdata, vb_api_call *call)
{
        _cleanup_free_ char *deleted = vb_api_query(call, "deleted");
        op *o;

        if (deleted && !streq(deleted, "true") && !streq(deleted, "false") && !streq(deleted, "1") &&
            !streq(deleted, "0"))
                return vb_api_reply_error(call, 400, VB_E_USAGE, "deleted", "deleted: true or false");
        o = op_new(userdata, call);
        if (!o)
                return;
        o->include_deleted = deleted && (streq(deleted, "true") || streq(deleted, "1"));
        queue(o, list_work);
}

static int show_work(void *ctx)
{
        op *o = ctx;
        int r = get_key(o, true);

        if (r < 0)
                return r;
        return answer_job(o, o->job.id, 200);
}

static void h_show(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, show_work);
}

/* ---- create ---- */

static int create_locked(op *o)
{
        vb_job *j = &o->job;
        vb_jobopts opts;
        bool schedule_set;
        int64_t id;
        int r;

        *j = (vb_job){ .backup_type = DD_BACKUP_FULL, .enabled = true };
        vb_jobopts_defaults(&opts);
        r = apply_body(o, j, &opts, true, &schedule_set);
        if (r < 0)
                return r;
        if (!schedule_set) {
                json_t *manual = json_null();

                r = apply_schedule(o, manual, j);
                if (r < 0)
                        return r;
        }
        r = set_options(j, &opts);
        if (r < 0)
                return r;
        r = vb_catalog_job_add(o->d->catalog, j, &id);
        if (r == -EEXIST)
                return refuse(o, 409, VB_E_EXISTS, "name", "a job named %s exists already", j->name);
        if (r == -ENOENT)
                return refuse(o, 400, VB_E_NOT_FOUND, "platform", "the platform or the pool was just removed");
        if (r < 0)
                return snprintf(o->why, sizeof(o->why), "adding job %s", j->name), r;
        r = answer_job(o, id, 201);
        if (r >= 0)
                log_info("job %s (id %" PRId64 ") created: platform %s, pool %s, %s", o->job.name, id,
                         o->job.platform_name, o->job.pool_name,
                         json_string_value(json_object_get(o->out, "schedule_text")) ?: "?");
        return r;
}

static int create_work(void *ctx)
{
        op *o = ctx;
        int r;

        o->now = time(NULL);
        pthread_mutex_lock(&jobs_lock);
        r = create_locked(o);
        pthread_mutex_unlock(&jobs_lock);
        return r;
}

static void h_create(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, create_work);
}

/* ---- modify ---- */

static int modify_locked(op *o)
{
        _cleanup_free_ char *err = NULL;
        vb_job *j = &o->job;
        vb_jobopts opts;
        bool schedule_set, was_enabled;
        int r = get_key(o, false);

        if (r < 0)
                return r;
        r = job_options(j, &opts, &err);
        if (r == -EINVAL)
                return refuse(o, 500, VB_E_CORRUPT, "options", "job %s: its stored options are not valid: %s", j->name,
                              err ?: "?");
        if (r < 0)
                return r;
        was_enabled = j->enabled;
        r = apply_body(o, j, &opts, false, &schedule_set);
        if (r < 0)
                return r;
        r = set_options(j, &opts);
        if (r < 0)
                return r;
        r = vb_catalog_job_update(o->d->catalog, j);
        if (r == -EEXIST)
                return refuse(o, 409, VB_E_EXISTS, "name", "a job named %s exists already", j->name);
        if (r == -ENOENT)
                return refuse(o, 404, VB_E_NOT_FOUND, NULL, "no job %s", o->key);
        if (r < 0)
                return snprintf(o->why, sizeof(o->why), "updating job %s", o->key), r;
        if (schedule_set || (j->enabled && !was_enabled))
                restart_schedule(o, j->id);
        log_info("job %s (id %" PRId64 ") modified", j->name, j->id);
        return answer_job(o, j->id, 200);
}

static int modify_work(void *ctx)
{
        op *o = ctx;
        int r;

        o->now = time(NULL);
        pthread_mutex_lock(&jobs_lock);
        r = modify_locked(o);
        pthread_mutex_unlock(&jobs_lock);
        return r;
}

static void h_modify(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, modify_work);
}

/* ---- delete ---- */

static int delete_locked(op *o)
{
        vb_run_filter f = { .job_id = 0, .statuses = 1u << VB_RUN_WAITING | 1u << VB_RUN_RUNNING, .limit = 1 };
        vb_run *runs = NULL;
        size_t n = 0;
        int r = get_key(o, false);

        if (r < 0)
                return r;
        /* Its runs would lose their job's settings halfway. */
        f.job_id = o->job.id;
        r = vb_catalog_run_list(o->d->catalog, &f, &runs, &n);
        if (r < 0)
                return snprintf(o->why, sizeof(o->why), "reading job %s's runs", o->job.name), r;
        if (n > 0) {
                r = refuse(o, 409, VB_E_BUSY, NULL, "job %s is running (run %" PRId64 "); stop it first", o->job.name,
                           runs[0].id);
                vb_runs_free(runs, n);
                return r;
        }
        vb_runs_free(runs, n);
        r = vb_catalog_job_delete(o->d->catalog, o->job.id);
        if (r == -ENOENT)
                return refuse(o, 404, VB_E_NOT_FOUND, NULL, "no job %s", o->key);
        if (r < 0)
                return snprintf(o->why, sizeof(o->why), "deleting job %s", o->job.name), r;
        log_info("job %s (id %" PRId64 ") deleted", o->job.name, o->job.id);
        o->out = json_pack("{s:s, s:I, s:b}", "name", o->job.name, "id", (json_int_t)o->job.id, "deleted", 1);
        o->status = 200;
        return o->out ? 0 : -ENOMEM;
}

static int delete_work(void *ctx)
{
        op *o = ctx;
        int r;

        pthread_mutex_lock(&jobs_lock);
        r = delete_locked(o);
        pthread_mutex_unlock(&jobs_lock);
        return r;
}

static void h_delete(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, delete_work);
}

/* ---- clone ---- */

static int clone_locked(op *o)
{
        _cleanup_free_ char *err = NULL;
        json_t *b = o->call->body, *v;
        vb_job *j = &o->job;
        vb_jobopts opts;
        vb_schedule s;
        const char *k;
        int64_t id;
        int r;

        if (!b)
                return refuse(o, 400, VB_E_USAGE, "name", "name: required (the new job's name)");
        json_object_foreach(b, k, v) if (!streq(k, "name"))
        {
                return refuse(o, 400, VB_E_USAGE, k, "%s: unknown field (a clone takes its name only)", k);
        }
        v = json_object_get(b, "name");
        if (!v)
                return refuse(o, 400, VB_E_USAGE, "name", "name: required (the new job's name)");
        if (check_name(o, v) < 0)
                return -EINVAL;
        r = get_key(o, true);
        if (r < 0)
                return r;
        if (j->platform_id <= 0 || j->pool_id <= 0)
                return refuse(o, 409, VB_E_REFUSED, NULL, "job %s: its %s was removed", j->name,
                              j->platform_id <= 0 ? "platform" : "pool");
        r = job_options(j, &opts, &err);
        if (r == -EINVAL)
                return refuse(o, 500, VB_E_CORRUPT, "options", "job %s: its stored options are not valid: %s", j->name,
                              err ?: "?");
        if (r >= 0)
                r = set_options(j, &opts);
        if (r < 0)
                return r;
        /* The copy is a new job: `immediately` fires when it is created. */
        r = job_schedule(j, &s, NULL);
        if (r >= 0 && s.kind == VB_SCHEDULE_IMMEDIATELY) {
                json_t *sj = NULL;

                s.at = o->now;
                if (vb_schedule_to_json(&s, &sj) >= 0) {
                        json_decref(j->schedule);
                        j->schedule = sj;
                }
        }
        log_debug("cloning job %s (id %" PRId64 ") as %s", j->name, j->id, json_string_value(v));
        free(j->name);
        j->name = strdup(json_string_value(v));
        if (!j->name)
                return -ENOMEM;
        r = vb_catalog_job_add(o->d->catalog, j, &id);
        if (r == -EEXIST)
                return refuse(o, 409, VB_E_EXISTS, "name", "a job named %s exists already", j->name);
        if (r == -ENOENT)
                return refuse(o, 409, VB_E_REFUSED, NULL, "job %s: its platform or pool was removed", o->key);
        if (r < 0)
                return snprintf(o->why, sizeof(o->why), "adding job %s", j->name), r;
        log_info("job %s (id %" PRId64 ") created as a copy of %s", j->name, id, o->key);
        return answer_job(o, id, 201);
}

static int clone_work(void *ctx)
{
        op *o = ctx;
        int r;

        o->now = time(NULL);
        pthread_mutex_lock(&jobs_lock);
        r = clone_locked(o);
        pthread_mutex_unlock(&jobs_lock);
        return r;
}

static void h_clone(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, clone_work);
}

int vb_api_jobs_register(vb_daemon *d)
{
        if (vb_api_route(d->api, "GET", "/v1/jobs", h_list, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/jobs", h_create, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/jobs/{}", h_show, d) < 0 ||
            vb_api_route(d->api, "PATCH", "/v1/jobs/{}", h_modify, d) < 0 ||
            vb_api_route(d->api, "DELETE", "/v1/jobs/{}", h_delete, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/jobs/{}/clone", h_clone, d) < 0)
                return -ENOMEM;
        return 0;
}
