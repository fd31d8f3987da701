/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api-pools.c -- the storage pools a daemon writes into, and the restore
 * points they hold:
 *
 *   GET    /v1/pools                  list
 *   POST   /v1/pools                  register a pool (or create one)
 *   GET    /v1/pools/{name}           one, with the pool's live stats
 *   DELETE /v1/pools/{name}           unregister (the data stays; not while a job uses it)
 *   POST   /v1/pools/{name}/rescan    read the pool's restore points into the catalog again
 *   GET    /v1/restore-points         list (?pool=, ?vm=, ?platform=), oldest first
 *   GET    /v1/restore-points/{id}    one (?pool=)
 *
 * DESIGN
 * - Each request is one op, and all its work (the catalog, pool.json,
 *   every manifest of a rescan, a pool's stats) runs on the daemon's lane:
 *   a pool on a slow NAS must not stall the loop. The worker builds the
 *   answer; the loop only sends it.
 * - POST /v1/pools registers a folder that holds a pool as it is (its type
 *   is read from pool.json) and creates one only in a missing or empty
 *   folder: a folder with other files in it is refused rather than mixed
 *   with a pool. lost+found does not count, so the root of a freshly made
 *   file system can be a pool.
 * - A pool is registered under its resolved path (realpath), and one folder
 *   under one name only: two names for the same pool would list every
 *   restore point twice.
 * - Registering is all or nothing: the restore points are read into the
 *   catalog at once, and when that (or the catalog) fails, the pool leaves
 *   the catalog again and a pool made by this request is removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/util.h"
#include "dedup/manifest.h"
#include "storagepool/sp.h"

typedef struct op {
        vb_daemon *d;
        vb_api_call *call;
        const char *what;                 /* "pool", "restore point": for a 404 */
        char *key;                        /* the pool's name or the restore point's id from the path */
        vb_pool p;                        /* to add, or read */
        char *type;                       /* POST: the type asked for; NULL: any (dedup when created) */
        json_t *object;                   /* POST: an object pool's store (endpoint, bucket, keys...) */
        bool create;                      /* POST: a missing or empty folder may become a pool */
        char *q_pool, *q_vm, *q_platform; /* restore points: the filters */
        json_t *out;                      /* the answer the worker built */
        int status;                       /* its HTTP status */
        /* An answer of the worker's own (a bad path...), when code is set. */
        int fail_status;
        vb_error code;
        const char *field;
        char why[512];
} op;

static op *op_new(vb_daemon *d, vb_api_call *call, const char *what)
{
        op *o = calloc(1, sizeof(*o));

        if (!o) {
                vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                return NULL;
        }
        o->d = d;
        o->call = call;
        o->what = what;
        o->status = 200;
        o->create = true;
        if (call->n_params > 0 && !(o->key = strdup(call->params[0]))) {
                vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                free(o);
                return NULL;
        }
        return o;
}

static void op_free(op *o)
{
        free(o->key);
        vb_pool_clear(&o->p);
        free(o->type);
        json_decref(o->object);
        free(o->q_pool);
        free(o->q_vm);
        free(o->q_platform);
        json_decref(o->out);
        free(o);
}

/* Records the answer a worker chose; returns -EINVAL for the worker to return. */
_printf_(5, 6) static int fail(op *o, int status, vb_error code, const char *field, const char *fmt, ...)
{
        va_list ap;

        o->fail_status = status;
        o->code = code;
        o->field = field;
        va_start(ap, fmt);
        vsnprintf(o->why, sizeof(o->why), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* The answer for an error of sp_pool_open() on path. */
static int fail_open(op *o, int r, const char *field, const char *path)
{
        switch (r) {
        case -ENOENT:
                return fail(o, 0, VB_E_NOT_FOUND, field, "%s: no pool here (pool.json not found)", path);
        case -EBADMSG:
                return fail(o, 0, VB_E_POOL_FORMAT, field, "%s: pool.json is damaged", path);
        case -EPROTONOSUPPORT:
                return fail(o, 0, VB_E_POOL_FORMAT, field, "%s: pool format version or type not supported", path);
        default:
                return fail(o, 0, vb_error_from_errno(r), field, "%s: %s", path, strerror(-r));
        }
}

/* Answers an error and frees o. */
static void reply_errno(op *o, int r)
{
        if (o->code != VB_OK) {
                vb_api_reply_error(o->call, o->fail_status, o->code, o->field, "%s", o->why);
                return op_free(o);
        }
        switch (r) {
        case -ENOENT:
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no %s %s", o->what, o->key ?: o->p.name);
                break;
        case -EEXIST:
                vb_api_reply_error(o->call, 409, VB_E_EXISTS, "name", "a pool named %s exists already", o->p.name);
                break;
        case -ENOTEMPTY:
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL, "pool %s is used by a job; remove the job first",
                                   o->key);
                break;
        default:
                vb_api_reply_error(o->call, 500, vb_error_from_errno(r), NULL, "%s%s%s", o->why, *o->why ? ": " : "",
                                   strerror(-r));
        }
        op_free(o);
}

static void done(void *ctx, int r)
{
        op *o = ctx;

        if (r >= 0 && !o->out)
                r = -ENOMEM;
        if (r < 0)
                return reply_errno(o, r);
        vb_api_reply_json(o->call, o->status, TAKE_PTR(o->out));
        op_free(o);
}

static void queue(op *o, vb_work_fn fn)
{
        int r = vb_lane_queue(o->d->lane, fn, done, o);

        if (r < 0)
                reply_errno(o, r);
}

/* How many restore points of pool_id the catalog has. */
static int count_restore_points(vb_catalog *c, int64_t pool_id, size_t *ret)
{
        vb_rp_filter f = { .pool_id = pool_id };
        vb_restore_point *v = NULL;
        size_t n = 0;
        int r = vb_catalog_restore_point_list(c, &f, &v, &n);

        if (r < 0)
                return r;
        vb_restore_points_free(v, n);
        *ret = n;
        return 0;
}

/* The pool's JSON with "restore_points": n. */
static json_t *pool_json(const vb_pool *p, size_t n)
{
        json_t *j = vb_pool_to_json(p);

        if (j && json_object_set_new(j, "restore_points", json_integer((json_int_t)n)) < 0)
                return json_decref(j), NULL;
        return j;
}

/* ---- list, show ---- */

static int list_work(void *ctx)
{
        op *o = ctx;
        vb_pool *v = NULL;
        vb_restore_point *rps = NULL;
        size_t n = 0, n_rps = 0;
        int r;

        r = vb_catalog_pool_list(o->d->catalog, &v, &n);
        if (r < 0)
                return r;
        /* One read of the restore points for every pool's count. */
        r = vb_catalog_restore_point_list(o->d->catalog, NULL, &rps, &n_rps);
        if (r < 0)
                goto out;
        o->out = json_array();
        for (size_t i = 0; o->out && i < n; i++) {
                size_t count = 0;

                for (size_t k = 0; k < n_rps; k++)
                        count += rps[k].pool_id == v[i].id;
                if (json_array_append_new(o->out, pool_json(&v[i], count)) < 0)
                        r = -ENOMEM;
        }
out:
        vb_restore_points_free(rps, n_rps);
        vb_pools_free(v, n);
        return r;
}

static void h_list(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "pool");

        if (o)
                queue(o, list_work);
}

static json_t *stats_json(const sp_stats *s)
{
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "restore_points", (json_int_t)s->restore_points, "chunks",
                         (json_int_t)s->chunks, "logical_bytes", (json_int_t)s->logical_bytes, "data_bytes",
                         (json_int_t)s->data_bytes, "unique_bytes", (json_int_t)s->unique_bytes, "stored_bytes",
                         (json_int_t)s->stored_bytes);
}

static int show_work(void *ctx)
{
        op *o = ctx;
        _cleanup_(sp_pool_closep) sp_pool *sp = NULL;
        sp_stats s = {};
        size_t n = 0;
        json_t *stats = NULL;
        char problem[512] = "";
        int r;

        r = vb_catalog_pool_get(o->d->catalog, 0, o->key, &o->p);
        if (r < 0)
                return r;
        r = count_restore_points(o->d->catalog, o->p.id, &n);
        if (r < 0)
                return r;
        /* The pool itself may be out of reach (an unmounted share): the
         * catalog's view is still worth showing, with the reason. */
        r = sp_pool_open(o->p.path, &sp);
        if (r < 0)
                snprintf(problem, sizeof(problem), "%s",
                         r == -ENOENT    ? "no pool here (pool.json not found)"
                         : r == -EBADMSG ? "pool.json is damaged"
                                         : strerror(-r));
        else if ((r = sp_pool_stats(sp, &s)) < 0) {
                if (r != -EOPNOTSUPP)
                        snprintf(problem, sizeof(problem), "stats: %s", strerror(-r));
        } else if (!(stats = stats_json(&s)))
                return -ENOMEM;
        o->out = pool_json(&o->p, n);
        if (!o->out || json_object_set_new(o->out, "stats", stats ?: json_null()) < 0)
                return -ENOMEM;
        if (*problem && json_object_set_new(o->out, "stats_error", json_string(problem)) < 0)
                return -ENOMEM;
        return 0;
}

static void h_show(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "pool");

        if (o)
                queue(o, show_work);
}

/* ---- add ---- */

static char *secret_key_of(const char *path)
{
        char *k;

        return asprintf(&k, "pool:%s", path) < 0 ? NULL : k;
}

static int pool_secret_set(op *o, const char *path, const char *secret)
{
        _cleanup_free_ char *key = secret_key_of(path);

        if (!key)
                return -ENOMEM;
        return vb_credstore_set(o->d->creds, key, secret);
}

int vb_daemon_pool_secret(void *userdata, const char *path, char **ret)
{
        vb_daemon *d = userdata;
        _cleanup_free_ char *key = secret_key_of(path);
        int r;

        if (!key)
                return -ENOMEM;
        r = vb_credstore_get(d->creds, key, ret);
        return r == -ENOENT ? -ENOKEY : r;
}

/* The "object" member: strings only, endpoint, bucket, access_key and
 * secret_key required; 0 or an answered 400 (-EINVAL). */
static int take_object(op *o, json_t *v)
{
        static const char *const keys[] = { "endpoint", "bucket", "region", "prefix", "access_key", "secret_key" };
        json_t *m;
        const char *k;

        if (!json_is_object(v)) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "object", "object: must be an object");
                return -EINVAL;
        }
        json_object_foreach(v, k, m)
        {
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        known = known || streq(k, keys[i]);
                if (!known || !json_is_string(m)) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "object", "object.%s: %s", k,
                                           known ? "must be a string" : "unknown field");
                        return -EINVAL;
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (streq(keys[i], "region") || streq(keys[i], "prefix") || json_object_get(v, keys[i]))
                        continue;
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "object", "object.%s: required", keys[i]);
                return -EINVAL;
        }
        if (strncmp(json_string_value(json_object_get(v, "endpoint")), "http://", 7) != 0 &&
            strncmp(json_string_value(json_object_get(v, "endpoint")), "https://", 8) != 0) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "object",
                                   "object.endpoint: http://HOST[:PORT] or https://...");
                return -EINVAL;
        }
        o->object = json_incref(v);
        return 0;
}

/* Reads the body into o; 0 or an answered 400 (-EINVAL, o freed). */
static int take_body(op *o)
{
        json_t *b = o->call->body, *v;
        const char *k;

        if (!b) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, NULL, "a JSON object is needed");
                goto bad;
        }
        json_object_foreach(b, k, v)
        {
                bool is_bool = streq(k, "create");

                if (!streq(k, "name") && !streq(k, "path") && !streq(k, "type") && !streq(k, "object") && !is_bool) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: unknown field", k);
                        goto bad;
                }
                if (streq(k, "object")) {
                        if (take_object(o, v) < 0)
                                goto bad;
                        continue;
                }
                if (is_bool ? !json_is_boolean(v) : !json_is_string(v)) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: must be a %s", k,
                                           is_bool ? "boolean" : "string");
                        goto bad;
                }
        }
        v = json_object_get(b, "name");
        if (!v) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "name", "name: required");
                goto bad;
        }
        if (!dd_name_is_safe(json_string_value(v))) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "name", "name: use 1-64 letters, digits, '.', '_' or '-'");
                goto bad;
        }
        o->p.name = strdup(json_string_value(v));
        v = json_object_get(b, "path");
        if (!v && o->object && o->p.name) {
                /* An object pool's local folder: its settings and caches. */
                char *path;

                if (asprintf(&path, "%s/object-pools/%s", o->d->cfg.state_dir, o->p.name) < 0)
                        goto bad;
                json_object_set_new(b, "path", json_string(path));
                free(path);
                v = json_object_get(b, "path");
        }
        if (!v) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "path", "path: required");
                goto bad;
        }
        /* The daemon's working directory means nothing to its clients. */
        if (json_string_value(v)[0] != '/' || strlen(json_string_value(v)) >= PATH_MAX) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "path", "path: must be an absolute path");
                goto bad;
        }
        o->p.path = strdup(json_string_value(v));
        if ((v = json_object_get(b, "type"))) {
                if (!sp_driver_find(json_string_value(v))) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "type", "type: dedup, standard, object or tape");
                        goto bad;
                }
                o->type = strdup(json_string_value(v));
        }
        if ((v = json_object_get(b, "create")))
                o->create = json_is_true(v);
        if (!o->object != !streq_ptr(o->type, "object")) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, o->object ? "type" : "object",
                                   o->object ? "type: must be object with an object member"
                                             : "object: required for an object pool (endpoint, bucket, access_key, "
                                               "secret_key)");
                goto bad;
        }
        if (!o->p.name || !o->p.path || (json_object_get(b, "type") && !o->type)) {
                vb_api_reply_error(o->call, 500, VB_E_FAILED, NULL, "out of memory");
                goto bad;
        }
        return 0;
bad:
        op_free(o);
        return -EINVAL;
}

/* Whether the folder path holds nothing (lost+found aside). */
static int folder_is_empty(const char *path)
{
        DIR *dir = opendir(path);
        struct dirent *de;
        bool empty = true;

        if (!dir)
                return -errno;
        errno = 0;
        while (empty && (de = readdir(dir)))
                empty = streq(de->d_name, ".") || streq(de->d_name, "..") || streq(de->d_name, "lost+found");
        if (empty && errno) {
                int r = -errno;
                closedir(dir);
                return r;
        }
        closedir(dir);
        return empty;
}

/* Removes what sp_pool_create made in path (pool.json first: then it is
 * no pool any more, whatever is left), and the folder when it made that
 * too. Only the names a pool has are touched, and the folder only while
 * empty: nothing else could have been there. */
static void undo_create(const char *path, bool made_folder)
{
        static const char *const made[] = { SP_POOL_FILE, "vms", "tmp", "locks", "chunks" };
        _cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = dirfd < 0 ? -errno : 0;

        for (size_t i = 0; i < ELEMENTSOF(made) && r >= 0; i++)
                r = vb_rm_rf_at(dirfd, made[i]);
        if (r >= 0 && made_folder && rmdir(path) < 0)
                r = -errno;
        if (r < 0)
                log_warning_errno(r, "%s: cannot remove the pool made for a failed registration: %m", path);
}

/* 409 when a registered pool is the folder real (a resolved path). */
static int check_not_registered(op *o, const char *real)
{
        vb_pool *v = NULL;
        size_t n = 0;
        int r = vb_catalog_pool_list(o->d->catalog, &v, &n);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                char other[PATH_MAX];

                if (!realpath(v[i].path, other))
                        snprintf(other, sizeof(other), "%s", v[i].path);
                if (streq(other, real))
                        r = fail(o, 409, VB_E_EXISTS, "path", "%s is pool %s already", o->p.path, v[i].name);
        }
        vb_pools_free(v, n);
        return r;
}

/* The answer for a failed system call on o's path (errno). */
static int fail_path_errno(op *o, const char *doing)
{
        int e = errno;

        return fail(o, 0, vb_error_from_errno(-e), "path", "%s%s: %s", doing, o->p.path, strerror(e));
}

static int add_work(void *ctx)
{
        op *o = ctx;
        _cleanup_(sp_pool_closep) sp_pool *sp = NULL;
        vb_pool cur = {};
        char real[PATH_MAX];
        bool made_folder = false, created = false;
        struct stat st;
        int64_t id = 0;
        int r, count;

        /* A taken name is refused before anything is made. */
        r = vb_catalog_pool_get(o->d->catalog, 0, o->p.name, &cur);
        vb_pool_clear(&cur);
        if (r >= 0)
                return -EEXIST;
        if (r != -ENOENT)
                return r;

        if (stat(o->p.path, &st) < 0) {
                if (errno != ENOENT)
                        return fail_path_errno(o, "");
                if (!o->create)
                        return fail(o, 400, VB_E_NOT_FOUND, "path", "%s does not exist (create is false)", o->p.path);
                made_folder = true;
        } else if (!S_ISDIR(st.st_mode))
                return fail(o, 400, VB_E_USAGE, "path", "%s is not a folder", o->p.path);
        else {
                r = sp_pool_open(o->p.path, &sp);
                if (r >= 0) {
                        if (o->type && !streq(o->type, sp->drv->name))
                                return fail(o, 400, VB_E_USAGE, "type", "type: %s holds a %s pool, not %s", o->p.path,
                                            sp->drv->name, o->type);
                } else if (r != -ENOENT)
                        return fail_open(o, r, "path", o->p.path);
                else if ((r = folder_is_empty(o->p.path)) < 0)
                        return fail(o, 0, vb_error_from_errno(r), "path", "%s: %s", o->p.path, strerror(-r));
                else if (r == 0)
                        return fail(o, 400, VB_E_USAGE, "path", "%s holds files but no pool; use an empty folder",
                                    o->p.path);
                else if (!o->create)
                        return fail(o, 400, VB_E_NOT_FOUND, "path", "%s holds no pool (create is false)", o->p.path);
        }

        if (!sp) {
                sp_options so = SP_OPTIONS_DEFAULT;

                so.type = o->type ?: "dedup";
                if (streq(so.type, "tape"))
                        return fail(o, 400, VB_E_USAGE, "type",
                                    "type: a tape pool needs its drive and volumes: make it with vbak pool init %s "
                                    "--type tape --device D --volumes L1,L2, then add it",
                                    o->p.path);
                if (o->object) {
#define OBJ(k) json_string_value(json_object_get(o->object, k))
                        so.endpoint = OBJ("endpoint");
                        so.bucket = OBJ("bucket");
                        so.region = OBJ("region");
                        so.prefix = OBJ("prefix");
                        so.access_key = OBJ("access_key");
                        so.secret_key = OBJ("secret_key");
#undef OBJ
                        /* Opening it asks for the secret by path (vb_daemon_pool_secret). */
                        r = pool_secret_set(o, o->p.path, so.secret_key);
                        if (r < 0)
                                return r;
                }
                r = sp_pool_create(o->p.path, &so);
                if (r < 0)
                        return fail(o, 0, vb_error_from_errno(r), "path", "creating a pool in %s: %s", o->p.path,
                                    strerror(-r));
                created = true;
                r = sp_pool_open(o->p.path, &sp);
                if (r < 0) {
                        fail_open(o, r, "path", o->p.path);
                        goto undo;
                }
        }
        if (!realpath(o->p.path, real)) {
                r = fail_path_errno(o, "");
                goto undo;
        }
        r = check_not_registered(o, real);
        if (r < 0)
                goto undo;

        if (o->object && !streq(real, o->p.path)) {
                r = pool_secret_set(o, real, json_string_value(json_object_get(o->object, "secret_key")));
                if (r < 0)
                        goto undo;
        }
        free(o->p.path);
        o->p.path = strdup(real);
        free(o->p.type);
        o->p.type = strdup(sp->drv->name);
        if (!o->p.path || !o->p.type) {
                r = -ENOMEM;
                goto undo;
        }
        r = vb_catalog_pool_add(o->d->catalog, &o->p, &id);
        if (r < 0)
                goto undo;
        count = vb_catalog_rescan_pool(o->d->catalog, o->p.name, sp);
        if (count < 0) {
                r = count;
                snprintf(o->why, sizeof(o->why), "reading the restore points of %s", o->p.path);
                (void)vb_catalog_pool_remove(o->d->catalog, id);
                goto undo;
        }
        vb_pool_clear(&o->p);
        r = vb_catalog_pool_get(o->d->catalog, id, NULL, &o->p);
        if (r < 0)
                return r;
        log_info("pool %s (%s, %s) %s, %d restore points", o->p.name, o->p.type, o->p.path,
                 created ? "created" : "registered", count);
        o->out = pool_json(&o->p, (size_t)count);
        if (o->out && json_object_set_new(o->out, "created", json_boolean(created)) < 0)
                return -ENOMEM;
        o->status = 201;
        return 0;
undo:
        if (created && o->p.path)
                undo_create(o->p.path, made_folder);
        return r;
}

static void h_add(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "pool");

        if (o && take_body(o) == 0)
                queue(o, add_work);
}

/* ---- remove, rescan ---- */

static int remove_work(void *ctx)
{
        op *o = ctx;
        int r = vb_catalog_pool_get(o->d->catalog, 0, o->key, &o->p);

        if (r >= 0)
                r = vb_catalog_pool_remove(o->d->catalog, o->p.id);
        if (r < 0)
                return r;
        log_info("pool %s unregistered (its data stays in %s)", o->p.name, o->p.path);
        o->out = json_pack("{s:s, s:s, s:b}", "name", o->p.name, "path", o->p.path, "removed", 1);
        return 0;
}

static void h_remove(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "pool");

        if (o)
                queue(o, remove_work);
}

static int rescan_work(void *ctx)
{
        op *o = ctx;
        _cleanup_(sp_pool_closep) sp_pool *sp = NULL;
        int r = vb_catalog_pool_get(o->d->catalog, 0, o->key, &o->p);

        if (r < 0)
                return r;
        r = sp_pool_open(o->p.path, &sp);
        if (r < 0)
                return fail_open(o, r, NULL, o->p.path);
        r = vb_catalog_rescan_pool(o->d->catalog, o->p.name, sp);
        if (r < 0) {
                snprintf(o->why, sizeof(o->why), "rescanning %s", o->p.path);
                return r;
        }
        o->out = json_pack("{s:o, s:i}", "pool", vb_pool_to_json(&o->p), "restore_points", r);
        return 0;
}

static void h_rescan(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "pool");

        if (o)
                queue(o, rescan_work);
}

/* ---- restore points ---- */

/* The ids of the pool and platform filters; 404 (through fail) for a name
 * that is not there. */
static int resolve_filters(op *o, int64_t *ret_pool, int64_t *ret_platform)
{
        int r;

        *ret_pool = *ret_platform = 0;
        if (o->q_pool) {
                vb_pool p = {};

                r = vb_catalog_pool_get(o->d->catalog, 0, o->q_pool, &p);
                *ret_pool = p.id;
                vb_pool_clear(&p);
                if (r == -ENOENT)
                        return fail(o, 404, VB_E_NOT_FOUND, "pool", "no pool %s", o->q_pool);
                if (r < 0)
                        return r;
        }
        if (o->q_platform) {
                vb_platform p = {};

                r = vb_catalog_platform_get(o->d->catalog, 0, o->q_platform, &p);
                *ret_platform = p.id;
                vb_platform_clear(&p);
                if (r == -ENOENT)
                        return fail(o, 404, VB_E_NOT_FOUND, "platform", "no platform %s", o->q_platform);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int rp_list_work(void *ctx)
{
        op *o = ctx;
        vb_rp_filter f = { .vm_name = o->q_vm };
        vb_restore_point *v = NULL;
        size_t n = 0;
        int r = resolve_filters(o, &f.pool_id, &f.platform_id);

        if (r < 0)
                return r;
        r = vb_catalog_restore_point_list(o->d->catalog, &f, &v, &n);
        if (r < 0)
                return r;
        o->out = json_array();
        for (size_t i = 0; o->out && i < n; i++)
                if (json_array_append_new(o->out, vb_restore_point_to_json(&v[i])) < 0)
                        r = -ENOMEM;
        vb_restore_points_free(v, n);
        return r;
}

static int rp_get_work(void *ctx)
{
        op *o = ctx;
        vb_restore_point rp = {};
        int64_t pool_id, platform_id;
        int r = resolve_filters(o, &pool_id, &platform_id);

        if (r < 0)
                return r;
        r = vb_catalog_restore_point_get(o->d->catalog, pool_id, o->key, &rp);
        if (r == -EINVAL) /* a blank id */
                r = -ENOENT;
        if (r < 0)
                return r;
        o->out = vb_restore_point_to_json(&rp);
        vb_restore_point_clear(&rp);
        return 0;
}

/* A query parameter; an empty value filters nothing, as if it were not given. */
static char *query(const op *o, const char *name)
{
        char *v = vb_api_query(o->call, name);

        if (v && !*v)
                v = (free(v), NULL);
        return v;
}

/* Reads the query's filters into o. */
static void take_query(op *o)
{
        o->q_pool = query(o, "pool");
        o->q_vm = query(o, "vm");
        o->q_platform = query(o, "platform");
}

static void h_rp_list(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "restore point");

        if (!o)
                return;
        take_query(o);
        queue(o, rp_list_work);
}

static void h_rp_get(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call, "restore point");

        if (!o)
                return;
        take_query(o);
        queue(o, rp_get_work);
}

int vb_api_pools_register(vb_daemon *d)
{
        if (vb_api_route(d->api, "GET", "/v1/pools", h_list, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/pools", h_add, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/pools/{}", h_show, d) < 0 ||
            vb_api_route(d->api, "DELETE", "/v1/pools/{}", h_remove, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/pools/{}/rescan", h_rescan, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/restore-points", h_rp_list, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/restore-points/{}", h_rp_get, d) < 0)
                return -ENOMEM;
        return 0;
}
