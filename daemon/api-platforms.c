/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api-platforms.c -- the platforms a daemon backs up, and their inventory:
 *
 *   GET    /v1/platforms                    list
 *   POST   /v1/platforms                    register (checks the credentials first)
 *   GET    /v1/platforms/{name}             one
 *   PATCH  /v1/platforms/{name}             update
 *   DELETE /v1/platforms/{name}             unregister (not while a job uses it)
 *   GET    /v1/platforms/{name}/inventory   the platform's tree, read now
 *
 * DESIGN: each request is one op: the catalog and the credential store on
 * the daemon's lane (daemon.h), the platform's driver (a connection per request) on the
 * loop. Passwords go into the credential store, never into the catalog or
 * an answer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/hypervisor.h"
#include "daemon/log.h"
#include "daemon/util.h"
#include "dedup/manifest.h"

typedef struct op {
        vb_daemon *d;
        vb_api_call *call;
        char *key;      /* the platform's name from the path */
        vb_platform p;  /* read, or to add / update */
        char *password; /* to store, or read for a connection */
        char *new_name; /* PATCH: a rename */
        bool set_password;
        vb_platform *list; /* GET /v1/platforms */
        size_t n_list;
        const vb_hv_driver *drv; /* the platform type's */
        vb_hv *hv;
        json_t *out;
        int r;         /* the catalog's -errno */
        char why[256]; /* what went wrong, when r says too little */
} op;

static op *op_new(vb_daemon *d, vb_api_call *call)
{
        op *o = calloc(1, sizeof(*o));

        if (!o) {
                vb_api_reply_error(call, 500, VB_E_FAILED, NULL, "out of memory");
                return NULL;
        }
        o->d = d;
        o->call = call;
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
        vb_platform_clear(&o->p);
        vb_credstore_password_free(o->password);
        free(o->new_name);
        vb_platforms_free(o->list, o->n_list);
        json_decref(o->out);
        free(o);
}

/* Answers a catalog error and frees o. */
static void reply_errno(op *o, int r)
{
        switch (r) {
        case -ENOENT:
                vb_api_reply_error(o->call, 404, VB_E_NOT_FOUND, NULL, "no platform %s", o->key ?: o->p.name);
                break;
        case -EEXIST:
                vb_api_reply_error(o->call, 409, VB_E_EXISTS, "name", "a platform named %s exists already",
                                   o->new_name ?: o->p.name);
                break;
        case -ENOTEMPTY:
                vb_api_reply_error(o->call, 409, VB_E_REFUSED, NULL,
                                   "platform %s is used by a job; remove the job first", o->key);
                break;
        default:
                vb_api_reply_error(o->call, 500, vb_error_from_errno(r), NULL, "%s%s%s", o->why, *o->why ? ": " : "",
                                   strerror(-r));
        }
        op_free(o);
}

static void reply_platform(op *o, int status)
{
        json_t *j = vb_platform_to_json(&o->p);

        vb_api_reply_json(o->call, status, j);
        op_free(o);
}

static int queue(op *o, vb_work_fn fn, vb_work_done_fn done)
{
        int r = vb_lane_queue(o->d->lane, fn, done, o);

        if (r < 0)
                reply_errno(o, r);
        return r;
}

/* ---- validation ---- */

/* Reads the members of body into o->p (and o->password); for an update,
 * only those given. 0 or an answered 400 (-EINVAL, o freed). */
static int take_body(op *o, bool adding)
{
        static const char *const known[] = { "name",     "type",     "address",     "user",
                                             "password", "insecure", "backup_host", "tags" };
        json_t *b = o->call->body, *v;
        const char *k;

        if (!b) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, NULL, "a JSON object is needed");
                goto bad;
        }
        json_object_foreach(b, k, v)
        {
                bool ok = false;

                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        ok = ok || streq(k, known[i]);
                if (!ok) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: unknown field", k);
                        goto bad;
                }
                if (streq(k, "insecure") ? !json_is_boolean(v)
                    : streq(k, "tags")   ? !json_is_array(v)
                                         : !json_is_string(v)) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, k, "%s: must be a %s", k,
                                           streq(k, "insecure") ? "boolean"
                                           : streq(k, "tags")   ? "list of strings"
                                                                : "string");
                        goto bad;
                }
        }
        if ((v = json_object_get(b, "name"))) {
                if (!dd_name_is_safe(json_string_value(v))) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "name",
                                           "name: use 1-64 letters, digits, '.', '_' or '-'");
                        goto bad;
                }
                if (adding)
                        o->p.name = strdup(json_string_value(v));
                else
                        o->new_name = strdup(json_string_value(v));
        } else if (adding) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "name", "name: required");
                goto bad;
        }
        if ((v = json_object_get(b, "type"))) {
                int t = vb_platform_type_from_string(json_string_value(v));

                if (t < 0 || !adding) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "type",
                                           adding ? "type: cas or libvirt" : "type: cannot be changed");
                        goto bad;
                }
                o->p.type = (vb_platform_type)t;
        } else if (adding) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "type", "type: required (cas or libvirt)");
                goto bad;
        }
        if ((v = json_object_get(b, "address"))) {
                const char *a = json_string_value(v);

                if (o->p.type == VB_PLATFORM_CAS && strncmp(a, "http://", 7) != 0 && strncmp(a, "https://", 8) != 0) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "address",
                                           "address: the CVM's URL, http://HOST:8080 or https://HOST:8443");
                        goto bad;
                }
                if (o->p.type == VB_PLATFORM_LIBVIRT && !strstr(a, "://")) {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "address",
                                           "address: a libvirt URI, qemu:///system or qemu+ssh://HOST/system");
                        goto bad;
                }
                free(o->p.address);
                o->p.address = strdup(a);
        } else if (adding) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, "address", "address: required");
                goto bad;
        }
        if ((v = json_object_get(b, "user"))) {
                free(o->p.user);
                o->p.user = strdup(json_string_value(v));
        }
        if ((v = json_object_get(b, "password"))) {
                o->password = strdup(json_string_value(v));
                o->set_password = true;
        }
        if (adding && o->p.type == VB_PLATFORM_CAS && (!o->p.user || !o->password)) {
                vb_api_reply_error(o->call, 400, VB_E_USAGE, o->p.user ? "password" : "user",
                                   "%s: required for a CAS platform", o->p.user ? "password" : "user");
                goto bad;
        }
        if ((v = json_object_get(b, "insecure")))
                o->p.insecure = json_is_true(v);
        if ((v = json_object_get(b, "backup_host"))) {
                free(o->p.backup_host);
                o->p.backup_host = strdup(json_string_value(v));
        }
        if ((v = json_object_get(b, "tags"))) {
                size_t i;
                json_t *t;

                json_array_foreach(v, i, t) if (!json_is_string(t))
                {
                        vb_api_reply_error(o->call, 400, VB_E_USAGE, "tags", "tags: must be a list of strings");
                        goto bad;
                }
                json_decref(o->p.tags);
                o->p.tags = json_incref(v);
        }
        return 0;
bad:
        op_free(o);
        return -EINVAL;
}

/* ---- list, show ---- */

static int list_work(void *ctx)
{
        op *o = ctx;

        return vb_catalog_platform_list(o->d->catalog, &o->list, &o->n_list);
}

static void list_done(void *ctx, int r)
{
        op *o = ctx;
        json_t *a;

        if (r < 0)
                return reply_errno(o, r);
        a = json_array();
        for (size_t i = 0; a && i < o->n_list; i++)
                json_array_append_new(a, vb_platform_to_json(&o->list[i]));
        vb_api_reply_json(o->call, 200, a);
        op_free(o);
}

static void h_list(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, list_work, list_done);
}

static int get_work(void *ctx)
{
        op *o = ctx;

        return vb_catalog_platform_get(o->d->catalog, 0, o->key, &o->p);
}

static void get_done(void *ctx, int r)
{
        op *o = ctx;

        if (r < 0)
                return reply_errno(o, r);
        reply_platform(o, 200);
}

static void h_show(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, get_work, get_done);
}

/* ---- add ---- */

static int add_work(void *ctx)
{
        op *o = ctx;
        int64_t id;
        int r = vb_catalog_platform_add(o->d->catalog, &o->p, &id);

        if (r < 0)
                return r;
        r = vb_credstore_set(o->d->creds, o->p.name, o->password ?: "");
        if (r < 0) {
                snprintf(o->why, sizeof(o->why), "storing the password");
                (void)vb_catalog_platform_remove(o->d->catalog, id);
                return r;
        }
        free(o->key);
        o->key = strdup(o->p.name);
        vb_platform_clear(&o->p);
        return o->key ? get_work(o) : -ENOMEM;
}

static void add_done(void *ctx, int r)
{
        op *o = ctx;

        if (r < 0)
                return reply_errno(o, r);
        log_info("platform %s (%s, %s) registered", o->p.name, vb_platform_type_to_string(o->p.type), o->p.address);
        reply_platform(o, 201);
}

/* Connects to the platform o->p with o->password. */
static int platform_connect(op *o, vb_hv_connect_fn fn)
{
        vb_hv_opts ho = { .name = o->p.name,
                          .address = o->p.address,
                          .user = o->p.user,
                          .password = o->password,
                          .insecure = o->p.insecure,
                          .runtime_dir = o->d->cfg.runtime_dir,
                          .cvd_port = (unsigned)o->d->cfg.cvd_port };

        o->drv = vb_hv_driver_find(vb_platform_type_to_string(o->p.type));
        if (!o->drv)
                return -EPROTONOSUPPORT;
        return o->drv->connect(o->d->loop, &ho, fn, o);
}

static void hv_disconnect(op *o)
{
        if (o->hv)
                o->drv->disconnect(TAKE_PTR(o->hv));
}

static void add_checked(void *userdata, vb_error r, const char *message, vb_hv *hv)
{
        op *o = userdata;

        if (r != VB_OK) {
                vb_api_reply_error(o->call, 0, r, "address", "%s", message);
                return op_free(o);
        }
        o->hv = hv;
        hv_disconnect(o);
        queue(o, add_work, add_done);
}

static void h_add(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);
        int r;

        if (!o || take_body(o, true) < 0)
                return;
        /* A platform is registered only with credentials that work. */
        r = platform_connect(o, add_checked);
        if (r < 0) {
                vb_api_reply_error(call, 400, VB_E_USAGE, "address", "address: %s is not a usable %s (%s)",
                                   o->p.address, o->p.type == VB_PLATFORM_CAS ? "CVM URL" : "libvirt URI",
                                   strerror(-r));
                op_free(o);
        }
}

/* ---- update, remove ---- */

static int update_work(void *ctx)
{
        op *o = ctx;
        vb_platform cur = {};
        json_t *b = o->call->body;
        int r = vb_catalog_platform_get(o->d->catalog, 0, o->key, &cur);

        if (r < 0)
                return r;
                /* What the body did not name stays as it is. */
#define KEEP(field, key)                                                                                               \
        do {                                                                                                           \
                if (!json_object_get(b, key)) {                                                                        \
                        free(o->p.field);                                                                              \
                        o->p.field = TAKE_PTR(cur.field);                                                              \
                }                                                                                                      \
        } while (0)
        KEEP(address, "address");
        KEEP(user, "user");
        KEEP(backup_host, "backup_host");
#undef KEEP
        if (!json_object_get(b, "insecure"))
                o->p.insecure = cur.insecure;
        if (!json_object_get(b, "tags")) {
                json_decref(o->p.tags);
                o->p.tags = json_incref(cur.tags);
        }
        o->p.id = cur.id;
        o->p.type = cur.type;
        free(o->p.name);
        o->p.name = strdup(o->new_name ?: cur.name);
        vb_platform_clear(&cur);
        if (!o->p.name)
                return -ENOMEM;
        r = vb_catalog_platform_update(o->d->catalog, &o->p);
        if (r < 0)
                return r;
        if (o->new_name && !streq(o->new_name, o->key)) {
                r = vb_credstore_rename(o->d->creds, o->key, o->new_name);
                if (r < 0 && r != -ENOENT)
                        return snprintf(o->why, sizeof(o->why), "renaming the password"), r;
                free(o->key);
                o->key = strdup(o->new_name);
        }
        if (o->set_password) {
                r = vb_credstore_set(o->d->creds, o->p.name, o->password);
                if (r < 0)
                        return snprintf(o->why, sizeof(o->why), "storing the password"), r;
        }
        vb_platform_clear(&o->p);
        return get_work(o);
}

static void h_update(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (!o || take_body(o, false) < 0)
                return;
        queue(o, update_work, get_done);
}

static int remove_work(void *ctx)
{
        op *o = ctx;
        int r = vb_catalog_platform_get(o->d->catalog, 0, o->key, &o->p);

        if (r >= 0)
                r = vb_catalog_platform_remove(o->d->catalog, o->p.id);
        if (r >= 0) {
                r = vb_credstore_remove(o->d->creds, o->key);
                if (r == -ENOENT)
                        r = 0;
        }
        return r;
}

static void remove_done(void *ctx, int r)
{
        op *o = ctx;

        if (r < 0)
                return reply_errno(o, r);
        log_info("platform %s unregistered", o->key);
        vb_api_reply_json(o->call, 200, json_pack("{s:s, s:b}", "name", o->key, "removed", 1));
        op_free(o);
}

static void h_remove(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, remove_work, remove_done);
}

/* ---- inventory ---- */

static int creds_work(void *ctx)
{
        op *o = ctx;
        int r = vb_catalog_platform_get(o->d->catalog, 0, o->key, &o->p);

        if (r < 0)
                return r;
        r = vb_credstore_get(o->d->creds, o->p.name, &o->password);
        if (r < 0)
                snprintf(o->why, sizeof(o->why), "reading platform %s's password", o->p.name);
        return r == -ENOENT ? -EIO : r;
}

static void inventory_read(void *userdata, vb_error r, const char *message, const vb_hv_inventory *inv)
{
        op *o = userdata;

        if (r != VB_OK)
                vb_api_reply_error(o->call, 0, r, NULL, "%s", message);
        else
                vb_api_reply_json(o->call, 200, vb_hv_inventory_to_json(inv));
        o->call = NULL;
        hv_disconnect(o); /* the driver allows it from its own callback */
        op_free(o);
}

static void inventory_connected(void *userdata, vb_error r, const char *message, vb_hv *hv)
{
        op *o = userdata;
        int k;

        if (r != VB_OK) {
                vb_api_reply_error(o->call, 0, r, NULL, "%s", message);
                return op_free(o);
        }
        o->hv = hv;
        k = o->drv->inventory(hv, inventory_read, o);
        if (k < 0) {
                vb_api_reply_error(o->call, 500, VB_E_FAILED, NULL, "inventory: %s", strerror(-k));
                hv_disconnect(o);
                op_free(o);
        }
}

static void creds_done(void *ctx, int r)
{
        op *o = ctx;
        int k;

        if (r < 0)
                return reply_errno(o, r);
        k = platform_connect(o, inventory_connected);
        if (k < 0) {
                vb_api_reply_error(o->call, 500, VB_E_FAILED, NULL, "platform %s: %s", o->p.name, strerror(-k));
                op_free(o);
        }
}

static void h_inventory(void *userdata, vb_api_call *call)
{
        op *o = op_new(userdata, call);

        if (o)
                queue(o, creds_work, creds_done);
}

int vb_api_platforms_register(vb_daemon *d)
{
        if (vb_api_route(d->api, "GET", "/v1/platforms", h_list, d) < 0 ||
            vb_api_route(d->api, "POST", "/v1/platforms", h_add, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/platforms/{}", h_show, d) < 0 ||
            vb_api_route(d->api, "PATCH", "/v1/platforms/{}", h_update, d) < 0 ||
            vb_api_route(d->api, "DELETE", "/v1/platforms/{}", h_remove, d) < 0 ||
            vb_api_route(d->api, "GET", "/v1/platforms/{}/inventory", h_inventory, d) < 0)
                return -ENOMEM;
        return 0;
}
