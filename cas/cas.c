/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cas.c -- the H3C CAS driver (daemon/hypervisor.h) on the CVM REST API.
 *
 * DESIGN
 * - Every REST call goes through call_start(): the response is mapped to a
 *   vbak error by cas_http_error() and its body parsed by cas_doc_parse(), so
 *   the operations below only ever see a normalised tree (cas/doc.h) or an
 *   error with its message.
 * - A VM is the merge of two views (cas-api.md §3.2): view A (`vm/{id}`)
 *   carries the placement (hostId, clusterId, hostPoolId), the numeric status
 *   and each disk's poolName; view B (`vm/detail/{id}`) carries what a
 *   restore needs (disks with path, format and size in MB, NICs, cpu,
 *   memory) but no hostId. vm_fetch reads A, then B by A's id (so a uuid
 *   works too), and merges: placement and status from A, everything else
 *   from B, the pool of a disk from A's storage[] entry with the same path.
 *   The captured configuration is B as parsed plus hostId, clusterId and
 *   hostPoolId from A.
 * - The inventory reads the four lists (host pools, clusters, hosts, the
 *   vmList pages, §3.1, §1.4) in parallel, then fetches the VMs with at most
 *   CAS_INVENTORY_PARALLEL in flight. The first error stops new requests;
 *   the callback runs once the requests in flight have completed.
 * - Operations that answer a taskMsg (power §3.3, snapshots §3.4, volumes
 *   §3.6, vm/add and devices §3.7) go through task_start(): message/{msgId}
 *   is polled 300 ms after, then every second (§2.2) until completed or the
 *   task timeout. result 1 is a failure even though the HTTP status is 200.
 * - Request bodies are built as JSON trees and rendered as the platform
 *   talks (cas_doc_render: XML under the entity's root, or bare JSON).
 * - Snapshots: adaptive is external (snapshotMode 2), whose base the disk
 *   service reads with changed-block tracking while the VM writes to the
 *   overlay; the checkpoint a backup leaves is named after its snapshot.
 *   snapshot_delete lists the VM's snapshots first: one that is not there
 *   (a create that failed) is nothing to delete.
 * - disconnect cancels what is in flight: pending requests and polls
 *   complete with VB_E_INTERRUPTED, then the client and the platform are
 *   freed once the loop has closed their handles.
 */
#include "cas/cas.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cas/doc.h"
#include "cas/http.h"
#include "daemon/log.h"
#include "daemon/util.h"

#define MSG_MAX 1024
#define TASK_FIRST_POLL_MS 300
#define TASK_POLL_MS 1000
#define TASK_FOLLOW_MIN_MS (60u * 1000u)

typedef struct task_op task_op;

/* A snapshot create task that outlived its timeout: the snapshot may still
 * appear, so deleting it waits for the task first. */
typedef struct abandoned {
        struct abandoned *next;
        char *vm_id, *name;
        int64_t msg_id;
} abandoned;

struct vb_hv {
        uv_loop_t *loop;
        cas_http *http;
        char *cvm; /* "HOST:PORT" */
        bool xml;  /* request bodies in XML (the Accept header follows) */
        unsigned cvd_port;
        char *network; /* preferred host network: adaptive, backup, storage, management */
        uint64_t task_timeout_ms;
        task_op *tasks; /* polls in progress, cancelled by disconnect */
        abandoned *abandoned;
        bool closing;
        vb_hv_connect_fn connect_done;
        void *connect_userdata;
};

/* ---- messages ---- */

/* cas_http_error()'s message without its "CVM HOST:PORT: " lead, which ours repeat. */
static const char *detail_of(const vb_hv *hv, const char *msg)
{
        size_t n = strlen(hv->cvm);

        if (strncmp(msg, "CVM ", 4) == 0 && strncmp(msg + 4, hv->cvm, n) == 0 && strncmp(msg + 4 + n, ": ", 2) == 0)
                return msg + 4 + n + 2;
        return msg;
}

/* "CVM HOST:PORT: vm NAME (id ID): STEP: DETAIL"; name and id may be NULL. */
_printf_(6, 7) static void vm_msg(char *buf, size_t size, const vb_hv *hv, const char *name, const char *id,
                                  const char *fmt, ...)
{
        size_t n;
        va_list ap;

        if (name && id)
                n = (size_t)snprintf(buf, size, "CVM %s: vm %s (id %s): ", hv->cvm, name, id);
        else if (name || id)
                n = (size_t)snprintf(buf, size, "CVM %s: vm %s%s: ", hv->cvm, id ? "id " : "", name ?: id);
        else
                n = (size_t)snprintf(buf, size, "CVM %s: ", hv->cvm);
        if (n >= size)
                return;
        va_start(ap, fmt);
        vsnprintf(buf + n, size - n, fmt, ap);
        va_end(ap);
}

/* The VM an operation is about, for its paths and messages; a copy, as the
 * callers' VMs live only during the call. */
typedef struct vm_ref {
        char *id, *name;
} vm_ref;

static void vm_ref_clear(vm_ref *r)
{
        free(r->id);
        free(r->name);
        *r = (vm_ref){};
}

static int vm_ref_set(vm_ref *r, const char *id, const char *name)
{
        r->id = id ? strdup(id) : NULL;
        r->name = name ? strdup(name) : NULL;
        if ((id && !r->id) || (name && !r->name)) {
                vm_ref_clear(r);
                return -ENOMEM;
        }
        return 0;
}

/* ---- one REST call ---- */

typedef void (*call_fn)(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp);

typedef struct call {
        call_fn fn;
        void *ctx;
} call;

static void call_done(void *userdata, const cas_http_response *resp)
{
        call *c = userdata;
        char msg[MSG_MAX];
        json_t *doc = NULL;
        vb_error r = cas_http_error(resp, msg, sizeof(msg));

        if (r == VB_OK) {
                _cleanup_free_ char *err = NULL;
                int k = cas_doc_parse(resp->body, resp->body_len, resp->content_type, &doc, &err);

                if (k < 0) {
                        r = k == -ENOMEM ? VB_E_FAILED : VB_E_PROTOCOL;
                        snprintf(msg, sizeof(msg), "CVM %s: %s %s: unreadable answer: %s", resp->cvm, resp->method,
                                 resp->path, err ?: strerror(-k));
                }
        }
        c->fn(c->ctx, r, msg, doc, resp);
        json_decref(doc);
        free(c);
}

/* 0 (fn will be called once, later) or -errno (it will not). body (may be
 * NULL) is sent as content_type (NULL: after the Accept setting). */
static int call_send(vb_hv *hv, const char *method, const char *path, const char *body, const char *content_type,
                     call_fn fn, void *ctx)
{
        call *c;
        int r;

        if (hv->closing)
                return -ESHUTDOWN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fn = fn;
        c->ctx = ctx;
        r = cas_http_request(hv->http, method, path, body, content_type, call_done, c);
        if (r < 0)
                free(c);
        return r;
}

static int call_start(vb_hv *hv, const char *method, const char *path, call_fn fn, void *ctx)
{
        return call_send(hv, method, path, NULL, NULL, fn, ctx);
}

/* A request whose body is obj (borrowed) rendered as the platform talks:
 * XML under root, or JSON (cas-api.md §1.3). */
static int call_body(vb_hv *hv, const char *method, const char *path, json_t *obj, const char *root, call_fn fn,
                     void *ctx)
{
        _cleanup_free_ char *body = NULL;
        int r = cas_doc_render(obj, root, hv->xml, &body);

        if (r < 0)
                return r;
        return call_send(hv, method, path, body, NULL, fn, ctx);
}

/* ---- freeing what callbacks get ---- */

static void group_done(vb_hv_group *g)
{
        free(g->id);
        free(g->name);
        free(g->parent_id);
}

static void host_done(vb_hv_host *h)
{
        free(h->id);
        free(h->name);
        free(h->cluster_id);
        free(h->pool_id);
        free(h->addr_management);
        free(h->addr_storage);
        free(h->addr_backup);
}

static void vm_done(vb_hv_vm *vm)
{
        vb_hv_vm_clear(vm);
}

static void inventory_done(vb_hv_inventory *inv)
{
        for (size_t i = 0; i < inv->n_pools; i++)
                group_done(&inv->pools[i]);
        free(inv->pools);
        for (size_t i = 0; i < inv->n_clusters; i++)
                group_done(&inv->clusters[i]);
        free(inv->clusters);
        for (size_t i = 0; i < inv->n_hosts; i++)
                host_done(&inv->hosts[i]);
        free(inv->hosts);
        for (size_t i = 0; i < inv->n_vms; i++)
                vm_done(&inv->vms[i]);
        free(inv->vms);
        *inv = (vb_hv_inventory){};
}

/* A copy of obj[key] as a string (numbers rendered), NULL when absent or "".
 * *oom is set when memory ran out. */
static char *dup_str(json_t *obj, const char *key, bool *oom)
{
        const char *s = cas_get_str(obj, key);
        char *d;

        if (!s || !*s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

static uint64_t get_mb(json_t *obj, const char *key)
{
        int64_t i;
        double d;

        if (cas_get_i64(obj, key, &i) == 0)
                return i > 0 ? (uint64_t)i << 20 : 0;
        if (cas_get_double(obj, key, &d) == 0 && d > 0)
                return (uint64_t)(d * 1048576.0 + 0.5);
        return 0;
}

/* ---- the merge of view A and view B (cas-api.md §3.2) ---- */

static vb_vm_state state_of(json_t *a, json_t *b)
{
        int64_t st;
        const char *s;

        /* A: 0 template, 1 unknown, 2 running, 3 shut off, 4 paused. */
        if (cas_get_i64(a, "status", &st) == 0) {
                if (st == 2)
                        return VB_VM_RUNNING;
                if (st == 3)
                        return VB_VM_SHUT_OFF;
                if (st == 4)
                        return VB_VM_PAUSED;
        }
        s = cas_get_str(b, "status"); /* B: a string (vmList's vmStatus too) */
        if (streq_ptr(s, "running"))
                return VB_VM_RUNNING;
        if (streq_ptr(s, "shutOff") || streq_ptr(s, "shutoff"))
                return VB_VM_SHUT_OFF;
        if (streq_ptr(s, "paused"))
                return VB_VM_PAUSED;
        return VB_VM_UNKNOWN;
}

/* Fills *vm from the two views (borrowed; b is copied into config). 0,
 * -ENOMEM or -EBADMSG (no id, a disk without a path). */
static int vm_merge(json_t *a, json_t *b, vb_hv_vm *vm)
{
        json_t *a_disks, *b_disks, *nics, *cpu, *mem, *item;
        bool oom = false;
        int64_t v;
        size_t i, n;

        vm->id = dup_str(a, "id", &oom);
        if (!vm->id && !oom)
                vm->id = dup_str(b, "id", &oom);
        vm->uuid = dup_str(b, "uuid", &oom) ?: dup_str(a, "uuid", &oom);
        vm->name = dup_str(b, "name", &oom) ?: dup_str(a, "name", &oom);
        vm->title = dup_str(b, "title", &oom) ?: dup_str(a, "title", &oom);
        vm->host_id = dup_str(a, "hostId", &oom);
        vm->cluster_id = dup_str(a, "clusterId", &oom);
        vm->pool_id = dup_str(a, "hostPoolId", &oom);
        if (oom)
                return -ENOMEM;
        if (!vm->id || !vm->name)
                return -EBADMSG;
        vm->state = state_of(a, b);

        cpu = cas_get_obj(b, "cpu");
        if (cpu && cas_get_i64(cpu, "cpuSockets", &v) == 0 && v > 0)
                vm->cpu_sockets = (unsigned)v;
        if (cpu && cas_get_i64(cpu, "cpuCores", &v) == 0 && v > 0)
                vm->cpu_cores = (unsigned)v;
        mem = cas_get_obj(b, "memory");
        if (mem && cas_get_i64(mem, "size", &v) == 0 && v > 0)
                vm->memory_mb = (uint64_t)v;
        else if (cas_get_i64(a, "memory", &v) == 0 && v > 0)
                vm->memory_mb = (uint64_t)v;

        a_disks = cas_get_list(a, "storage");
        b_disks = cas_get_list(b, "storage");
        if (!a_disks || !b_disks)
                return -ENOMEM;
        n = json_array_size(b_disks);
        vm->disks = calloc(n ?: 1, sizeof(*vm->disks));
        if (!vm->disks)
                return -ENOMEM;
        json_array_foreach(b_disks, i, item)
        {
                vb_hv_disk *d = &vm->disks[vm->n_disks];
                const char *kind = cas_get_str(item, "device");
                json_t *ai;
                size_t j;

                /* CD-ROMs and floppies are no disks to back up. */
                if (kind && !streq(kind, "disk"))
                        continue;
                vm->n_disks++;
                d->device = dup_str(item, "deviceName", &oom);
                d->path = dup_str(item, "path", &oom);
                d->format = dup_str(item, "format", &oom);
                d->bus = dup_str(item, "targetBus", &oom);
                d->size = get_mb(item, "size");
                if (oom)
                        return -ENOMEM;
                if (!d->path)
                        return -EBADMSG;
                json_array_foreach(a_disks, j, ai) if (streq_ptr(cas_get_str(ai, "storeFile"), d->path))
                {
                        d->pool = dup_str(ai, "poolName", &oom);
                        if (!d->size)
                                d->size = get_mb(ai, "capacity");
                        break;
                }
                if (oom)
                        return -ENOMEM;
        }

        nics = cas_get_list(b, "network");
        if (!nics)
                return -ENOMEM;
        vm->nics = calloc(json_array_size(nics) ?: 1, sizeof(*vm->nics));
        if (!vm->nics)
                return -ENOMEM;
        json_array_foreach(nics, i, item)
        {
                vb_hv_nic *nic = &vm->nics[vm->n_nics++];

                nic->mac = dup_str(item, "mac", &oom);
                nic->vswitch = dup_str(item, "vsName", &oom);
                nic->profile = dup_str(item, "profileName", &oom);
                nic->model = dup_str(item, "deviceModel", &oom);
                if (oom)
                        return -ENOMEM;
        }

        /* Enough to recreate the VM: view B (normalised above) and where it ran. */
        vm->config = json_deep_copy(b);
        if (!vm->config)
                return -ENOMEM;
        if ((vm->host_id && json_object_set_new(vm->config, "hostId", json_string(vm->host_id)) < 0) ||
            (vm->cluster_id && json_object_set_new(vm->config, "clusterId", json_string(vm->cluster_id)) < 0) ||
            (vm->pool_id && json_object_set_new(vm->config, "hostPoolId", json_string(vm->pool_id)) < 0))
                return -ENOMEM;
        /* And the storage pool of each disk, which view B lacks (from A). */
        json_array_foreach(cas_get_list(vm->config, "storage"), i, item)
        {
                for (size_t j = 0; j < vm->n_disks; j++)
                        if (vm->disks[j].pool && streq_ptr(cas_get_str(item, "path"), vm->disks[j].path) &&
                            json_object_set_new(item, "poolName", json_string(vm->disks[j].pool)) < 0)
                                return -ENOMEM;
        }
        return 0;
}

/* ---- reading one VM: view A, then view B ---- */

typedef void (*vm_fetch_fn)(void *ctx, vb_error r, const char *msg);

typedef struct vm_fetch {
        vb_hv *hv;
        char *key;   /* id or uuid, as asked */
        char *label; /* the name, when known, for messages */
        json_t *a;
        vb_hv_vm *out;
        vm_fetch_fn fn;
        void *ctx;
} vm_fetch;

static void vm_fetch_finish(vm_fetch *f, vb_error r, const char *msg)
{
        f->fn(f->ctx, r, msg);
        free(f->key);
        free(f->label);
        json_decref(f->a);
        free(f);
}

static void vm_fetch_b(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        vm_fetch *f = ctx;
        const char *name = cas_get_str(f->a, "name") ?: f->label;
        const char *id = cas_get_str(f->a, "id");
        char buf[MSG_MAX];
        int k;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), f->hv, name, id, "reading its detail (view B): %s", detail_of(f->hv, msg));
                return vm_fetch_finish(f, r, buf);
        }
        k = vm_merge(f->a, doc, f->out);
        if (k < 0) {
                vm_msg(buf, sizeof(buf), f->hv, name, id, "merging vm/{id} and vm/detail/{id}: %s",
                       k == -EBADMSG ? "no id, name or disk path" : strerror(-k));
                return vm_fetch_finish(f, k == -EBADMSG ? VB_E_PROTOCOL : VB_E_FAILED, buf);
        }
        vm_fetch_finish(f, VB_OK, "");
}

static void vm_fetch_a(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        vm_fetch *f = ctx;
        char buf[MSG_MAX], path[256];
        const char *id;
        int k;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), f->hv, f->label, f->key, "reading it (view A): %s", detail_of(f->hv, msg));
                return vm_fetch_finish(f, r, buf);
        }
        f->a = json_incref(doc);
        id = cas_get_str(doc, "id");
        if (!id || !*id || strspn(id, "0123456789") != strlen(id)) {
                vm_msg(buf, sizeof(buf), f->hv, f->label, f->key, "reading it (view A): the answer has no id");
                return vm_fetch_finish(f, VB_E_PROTOCOL, buf);
        }
        snprintf(path, sizeof(path), "/vm/detail/%s", id);
        k = call_start(f->hv, "GET", path, vm_fetch_b, f);
        if (k < 0) {
                vm_msg(buf, sizeof(buf), f->hv, cas_get_str(doc, "name"), id, "reading its detail: %s", strerror(-k));
                return vm_fetch_finish(f, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
        }
}

/* Reads the VM key (an id or a uuid) into *out. 0 (fn is called once,
 * later) or -errno. */
static int vm_fetch_start(vb_hv *hv, const char *key, const char *label, vb_hv_vm *out, vm_fetch_fn fn, void *ctx)
{
        vm_fetch *f;
        char path[256];
        int r;

        if (strlen(key) > 128 || strpbrk(key, "/?&#% \t\r\n"))
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        *f = (vm_fetch){
                .hv = hv, .key = strdup(key), .label = label ? strdup(label) : NULL, .out = out, .fn = fn, .ctx = ctx
        };
        if (!f->key || (label && !f->label)) {
                r = -ENOMEM;
                goto fail;
        }
        snprintf(path, sizeof(path), "/vm/%s", key); /* an id or a uuid (§3.2 A) */
        r = call_start(hv, "GET", path, vm_fetch_a, f);
        if (r < 0)
                goto fail;
        return 0;
fail:
        free(f->key);
        free(f->label);
        free(f);
        return r;
}

/* ---- connect ---- */

static void hv_free(vb_hv *hv)
{
        for (abandoned *a = hv->abandoned, *next; a; a = next) {
                next = a->next;
                free(a->vm_id);
                free(a->name);
                free(a);
        }
        free(hv->cvm);
        free(hv->network);
        free(hv);
}

static void hv_closed(void *userdata)
{
        hv_free(userdata);
}

static void connect_tested(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        vb_hv *hv = ctx;

        (void)doc;
        (void)resp;
        if (r != VB_OK) {
                hv->connect_done(hv->connect_userdata, r, msg, NULL);
                hv->closing = true;
                cas_http_close(hv->http, hv_closed, hv);
                return;
        }
        log_debug("CVM %s: connected", hv->cvm);
        hv->connect_done(hv->connect_userdata, VB_OK, "", hv);
}

static int cas_connect(uv_loop_t *loop, const vb_hv_opts *o, vb_hv_connect_fn done, void *userdata)
{
        cas_http_options ho = {
                .url = o->address,
                .user = o->user,
                .password = o->password ?: "",
                .insecure = o->insecure,
                .timeout_ms = o->timeout_ms > UINT32_MAX ? UINT32_MAX : (unsigned)o->timeout_ms,
                .xml = o->xml,
        };
        vb_hv *hv;
        int r;

        if (!o->address || !o->user || !done)
                return -EINVAL;
        hv = calloc(1, sizeof(*hv));
        if (!hv)
                return -ENOMEM;
        hv->loop = loop;
        hv->xml = o->xml;
        hv->cvd_port = o->cvd_port ?: CAS_CVD_PORT_DEFAULT;
        hv->task_timeout_ms = CAS_TASK_TIMEOUT_MS_DEFAULT;
        if (o->network && !(hv->network = strdup(o->network))) {
                free(hv);
                return -ENOMEM;
        }
        hv->connect_done = done;
        hv->connect_userdata = userdata;
        r = cas_http_new(loop, &ho, &hv->http);
        if (r < 0) {
                hv_free(hv);
                return r;
        }
        hv->cvm = strdup(cas_http_cvm(hv->http));
        if (!hv->cvm) {
                r = -ENOMEM;
                goto fail;
        }
        /* The liveness probe answers 204 once Digest passed (§1.1). */
        r = call_start(hv, "GET", "/operator/test", connect_tested, hv);
        if (r < 0)
                goto fail;
        return 0;
fail:
        hv->closing = true;
        cas_http_close(hv->http, hv_closed, hv);
        return r;
}

void cas_set_task_timeout(vb_hv *hv, uint64_t ms)
{
        hv->task_timeout_ms = ms ?: CAS_TASK_TIMEOUT_MS_DEFAULT;
}

/* ---- tasks (§2.1-§2.2) ---- */

/* A finished task: t is the final message/{msgId} (NULL on failure). */
typedef void (*task_fn)(void *ctx, vb_error r, const char *msg, const cas_task *t);

struct task_op {
        vb_hv *hv;
        task_op *next;
        uv_timer_t timer;
        vm_ref vm;
        char *step; /* "start", "snapshot vbak-...", ... */
        int64_t msg_id;
        uint64_t deadline_ns;
        bool in_request; /* the request that started it or a poll is in flight */
        task_fn fn;
        void *ctx;
};

static void task_free_cb(uv_handle_t *h)
{
        task_op *p = h->data;

        vm_ref_clear(&p->vm);
        free(p->step);
        free(p);
}

static void task_finish(task_op *p, vb_error r, const char *msg, const cas_task *t)
{
        task_op **pp;

        for (pp = &p->hv->tasks; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        uv_timer_stop(&p->timer);
        p->fn(p->ctx, r, msg, t);
        uv_close((uv_handle_t *)&p->timer, task_free_cb);
}

static void task_fail(task_op *p, vb_error r, const char *fmt, ...) _printf_(3, 4);
static void task_fail(task_op *p, vb_error r, const char *fmt, ...)
{
        char detail[MSG_MAX], buf[MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        vm_msg(buf, sizeof(buf), p->hv, p->vm.name, p->vm.id, "%s: %s", p->step, detail);
        task_finish(p, r, buf, NULL);
}

static void task_tick(uv_timer_t *t);

static void task_polled(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        task_op *p = ctx;
        cas_task task;
        int k;

        (void)resp;
        p->in_request = false;
        if (r != VB_OK)
                return task_fail(p, r, "polling task %" PRId64 ": %s", p->msg_id, detail_of(p->hv, msg));
        k = cas_task_from_json(doc, &task);
        if (k < 0)
                return task_fail(p, k == -ENOMEM ? VB_E_FAILED : VB_E_PROTOCOL, "task %" PRId64 ": unreadable",
                                 p->msg_id);
        if (task.completed) {
                /* result 1 is a failure even though the HTTP status is 200 (§2.2). */
                if (task.result == CAS_TASK_FAIL)
                        task_fail(p, VB_E_REFUSED, "task failed: %s", task.fail_msg ?: task.detail ?: "no reason given");
                else
                        task_finish(p, VB_OK, "", &task);
                cas_task_done(&task);
                return;
        }
        cas_task_done(&task);
        if (vb_now_ns() >= p->deadline_ns) {
                /* Not completed is not failed: the caller gets the task's id,
                 * the operation may still happen. */
                cas_task stub = { .msg_id = p->msg_id,
                                  .progress = -1,
                                  .result = CAS_TASK_RESULT_NONE,
                                  .target_id = -1,
                                  .event_type = -1 };
                char buf[MSG_MAX];

                vm_msg(buf, sizeof(buf), p->hv, p->vm.name, p->vm.id,
                       "%s: task %" PRId64 " did not complete in %" PRIu64 " s", p->step, p->msg_id,
                       p->hv->task_timeout_ms / 1000);
                return task_finish(p, VB_E_NETWORK, buf, &stub);
        }
        uv_timer_start(&p->timer, task_tick, TASK_POLL_MS, 0);
}

static void task_tick(uv_timer_t *t)
{
        task_op *p = t->data;
        char path[64];
        int k;

        snprintf(path, sizeof(path), "/message/%" PRId64, p->msg_id);
        k = call_start(p->hv, "GET", path, task_polled, p);
        if (k < 0)
                return task_fail(p, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, "polling: %s", strerror(-k));
        p->in_request = true;
}

static void task_started(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        task_op *p = ctx;
        cas_task task;
        int k;

        (void)resp;
        p->in_request = false;
        if (r != VB_OK)
                return task_fail(p, r, "%s", detail_of(p->hv, msg));
        k = cas_task_from_json(doc, &task);
        if (k < 0)
                return task_fail(p, k == -ENOMEM ? VB_E_FAILED : VB_E_PROTOCOL, "the answer is no taskMsg");
        p->msg_id = task.msg_id;
        cas_task_done(&task);
        p->deadline_ns = vb_now_ns() + p->hv->task_timeout_ms * 1000000ull;
        uv_timer_start(&p->timer, task_tick, TASK_FIRST_POLL_MS, 0);
}

static task_op *task_new(vb_hv *hv, const char *vm_name, const char *vm_id, const char *step, task_fn fn, void *ctx)
{
        task_op *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        *p = (task_op){ .hv = hv, .step = strdup(step), .fn = fn, .ctx = ctx };
        if (vm_ref_set(&p->vm, vm_id, vm_name) < 0 || !p->step) {
                vm_ref_clear(&p->vm);
                free(p->step);
                free(p);
                return NULL;
        }
        return p;
}

static void task_link(task_op *p)
{
        uv_timer_init(p->hv->loop, &p->timer);
        p->timer.data = p;
        p->next = p->hv->tasks;
        p->hv->tasks = p;
}

/* Starts an operation that answers a taskMsg and follows it to its end:
 * fn is called once, later, with the final message (0), or not at all
 * (-errno). body (borrowed, may be NULL) is rendered under root. step
 * names the operation in messages. A task still running at the timeout
 * ends with VB_E_NETWORK and a task whose completed is false. */
static int task_start(vb_hv *hv, const char *method, const char *path, json_t *body, const char *root,
                      const char *vm_name, const char *vm_id, const char *step, task_fn fn, void *ctx)
{
        task_op *p = task_new(hv, vm_name, vm_id, step, fn, ctx);
        int r;

        if (!p)
                return -ENOMEM;
        r = body ? call_body(hv, method, path, body, root, task_started, p)
                 : call_start(hv, method, path, task_started, p);
        if (r < 0) {
                vm_ref_clear(&p->vm);
                free(p->step);
                free(p);
                return r;
        }
        p->in_request = true;
        task_link(p);
        return 0;
}

/* Follows a task started earlier (by its msgId) to its end, as task_start. */
static int task_follow(vb_hv *hv, int64_t msg_id, const char *vm_name, const char *vm_id, const char *step, task_fn fn,
                       void *ctx)
{
        task_op *p;

        if (hv->closing)
                return -ESHUTDOWN;
        p = task_new(hv, vm_name, vm_id, step, fn, ctx);
        if (!p)
                return -ENOMEM;
        p->msg_id = msg_id;
        /* It already outlived one timeout: give it a long while more. */
        p->deadline_ns = vb_now_ns() + MAX(3 * hv->task_timeout_ms, TASK_FOLLOW_MIN_MS) * 1000000ull;
        task_link(p);
        uv_timer_start(&p->timer, task_tick, 0, 0);
        return 0;
}

/* ids go into paths as they are: digits (or a uuid) only. */
static bool id_ok(const char *id)
{
        return id && *id && strlen(id) <= 128 && !strpbrk(id, "/?&#% \t\r\n");
}

/* ---- power (§3.3) ---- */

typedef struct done_op {
        vb_hv_done_fn done;
        void *userdata;
} done_op;

static void done_op_task(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        done_op *d = ctx;

        (void)t;
        d->done(d->userdata, r, msg);
        free(d);
}

/* A task whose caller only wants to know how it ended. */
static int task_simple(vb_hv *hv, const char *method, const char *path, json_t *body, const char *root,
                       const vb_hv_vm *vm, const char *step, vb_hv_done_fn done, void *userdata)
{
        done_op *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        *d = (done_op){ done, userdata };
        r = task_start(hv, method, path, body, root, vm ? vm->name : NULL, vm ? vm->id : NULL, step, done_op_task, d);
        if (r < 0)
                free(d);
        return r;
}

static int cas_power(vb_hv *hv, const vb_hv_vm *vm, vb_power_op op, vb_hv_done_fn done, void *userdata)
{
        static const char *const verbs[] = {
                [VB_POWER_START] = "start", [VB_POWER_SHUTDOWN] = "stop", [VB_POWER_OFF] = "powerOff"
        };
        static const char *const steps[] = {
                [VB_POWER_START] = "start", [VB_POWER_SHUTDOWN] = "shutdown", [VB_POWER_OFF] = "power off"
        };
        char path[256];

        if ((unsigned)op > VB_POWER_OFF || !id_ok(vm->id))
                return -EINVAL;
        snprintf(path, sizeof(path), "/vm/%s/%s", verbs[op], vm->id);
        return task_simple(hv, "PUT", path, NULL, NULL, vm, steps[op], done, userdata);
}

static void cas_disconnect(vb_hv *hv)
{
        if (!hv)
                return;
        hv->closing = true;
        /* Polls waiting on their timer; those with a request in flight end with it below. */
        for (task_op *p = hv->tasks, *next; p; p = next) {
                next = p->next;
                if (!p->in_request)
                        task_fail(p, VB_E_INTERRUPTED, "disconnected");
        }
        cas_http_close(hv->http, hv_closed, hv);
}

/* ---- inventory ---- */

typedef struct inv_op {
        vb_hv *hv;
        vb_hv_inventory inv;
        vb_hv_inventory_fn done;
        void *userdata;
        json_t *vm_ids; /* from vmList, in its order */
        size_t pending; /* requests and VM fetches in flight */
        bool vms_phase;
        size_t next_vm;
        vb_error r;
        char msg[MSG_MAX];
} inv_op;

static void inv_fail(inv_op *op, vb_error r, const char *msg)
{
        if (op->r != VB_OK)
                return;
        op->r = r;
        snprintf(op->msg, sizeof(op->msg), "%s", msg);
}

static void inv_fail_errno(inv_op *op, int k, const char *step)
{
        char buf[MSG_MAX];

        snprintf(buf, sizeof(buf), "CVM %s: inventory: %s: %s", op->hv->cvm, step, strerror(-k));
        inv_fail(op, k == -ESHUTDOWN ? VB_E_INTERRUPTED : k == -EBADMSG ? VB_E_PROTOCOL : VB_E_FAILED, buf);
}

static void inv_pump(inv_op *op);

typedef struct inv_vm {
        inv_op *op;
        size_t i;
} inv_vm;

/* A VM the CVM lists but cannot show (its host stopped answering: 402, or
 * it went away since the list: 1001) stays in the inventory as the list
 * has it, so that a backup of it fails on its own, with its reason. */
static int inv_vm_stub(inv_op *op, size_t i)
{
        json_t *item = json_array_get(op->vm_ids, i);
        vb_hv_vm *vm = &op->inv.vms[i];
        bool oom = false;

        vb_hv_vm_clear(vm);
        vm->id = dup_str(item, "id", &oom);
        vm->uuid = dup_str(item, "uuid", &oom);
        vm->name = dup_str(item, "name", &oom);
        vm->title = dup_str(item, "title", &oom);
        vm->host_id = dup_str(item, "hostId", &oom);
        vm->cluster_id = dup_str(item, "clusterId", &oom);
        vm->pool_id = dup_str(item, "hostPoolId", &oom);
        vm->state = VB_VM_UNKNOWN;
        return oom ? -ENOMEM : 0;
}

static void inv_vm_done(void *ctx, vb_error r, const char *msg)
{
        inv_vm *x = ctx;
        inv_op *op = x->op;

        op->pending--;
        if (r == VB_E_NOT_FOUND) {
                log_warning("%s: listed as it is in the VM list only", msg);
                if (inv_vm_stub(op, x->i) < 0)
                        inv_fail_errno(op, -ENOMEM, "VMs");
        } else if (r != VB_OK) {
                inv_fail(op, r, msg);
        }
        free(x);
        inv_pump(op);
}

static void inv_pump(inv_op *op)
{
        if (op->r == VB_OK && !op->vms_phase && op->pending == 0) {
                op->vms_phase = true;
                op->inv.vms = calloc(json_array_size(op->vm_ids) ?: 1, sizeof(*op->inv.vms));
                if (!op->inv.vms)
                        inv_fail_errno(op, -ENOMEM, "VMs");
                else
                        op->inv.n_vms = json_array_size(op->vm_ids);
        }
        while (op->r == VB_OK && op->vms_phase && op->pending < CAS_INVENTORY_PARALLEL && op->next_vm < op->inv.n_vms) {
                size_t i = op->next_vm++;
                json_t *d = json_array_get(op->vm_ids, i);
                inv_vm *x = malloc(sizeof(*x));
                int k = x ? 0 : -ENOMEM;

                if (x) {
                        *x = (inv_vm){ .op = op, .i = i };
                        k = vm_fetch_start(op->hv, cas_get_str(d, "id"), cas_get_str(d, "name"), &op->inv.vms[i],
                                           inv_vm_done, x);
                        if (k < 0)
                                free(x);
                }
                if (k < 0)
                        inv_fail_errno(op, k, "reading a VM");
                else
                        op->pending++;
        }
        if (op->pending > 0)
                return;
        if (op->r != VB_OK || op->next_vm >= op->inv.n_vms) {
                op->done(op->userdata, op->r, op->r == VB_OK ? "" : op->msg, op->r == VB_OK ? &op->inv : NULL);
                inventory_done(&op->inv);
                json_decref(op->vm_ids);
                free(op);
        }
}

/* Shared head of the list callbacks: the list under key, or NULL after an error. */
static json_t *inv_list(inv_op *op, vb_error r, const char *msg, json_t *doc, const char *key)
{
        json_t *l;

        op->pending--;
        if (r != VB_OK) {
                inv_fail(op, r, msg);
                return NULL;
        }
        l = cas_get_list(doc, key);
        if (!l)
                inv_fail_errno(op, -ENOMEM, key);
        return l;
}

static int groups_from(json_t *l, const char *parent_key, vb_hv_group **ret, size_t *n_ret)
{
        json_t *item;
        size_t i;
        bool oom = false;

        *ret = calloc(json_array_size(l) ?: 1, sizeof(**ret));
        if (!*ret)
                return -ENOMEM;
        json_array_foreach(l, i, item)
        {
                vb_hv_group *g = &(*ret)[(*n_ret)++];

                g->id = dup_str(item, "id", &oom);
                g->name = dup_str(item, "name", &oom);
                g->parent_id = parent_key ? dup_str(item, parent_key, &oom) : NULL;
                if (oom)
                        return -ENOMEM;
                if (!g->id)
                        return -EBADMSG;
        }
        return 0;
}

static void inv_pools(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        inv_op *op = ctx;
        json_t *l = inv_list(op, r, msg, doc, "hostPool");
        int k;

        (void)resp;
        if (l && (k = groups_from(l, NULL, &op->inv.pools, &op->inv.n_pools)) < 0)
                inv_fail_errno(op, k, "host pools");
        inv_pump(op);
}

static void inv_clusters(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        inv_op *op = ctx;
        json_t *l = inv_list(op, r, msg, doc, "cluster");
        int k;

        (void)resp;
        if (l && (k = groups_from(l, "hostPoolId", &op->inv.clusters, &op->inv.n_clusters)) < 0)
                inv_fail_errno(op, k, "clusters");
        inv_pump(op);
}

static void inv_hosts(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        inv_op *op = ctx;
        json_t *l = inv_list(op, r, msg, doc, "host"), *item;
        bool oom = false;
        size_t i;

        (void)resp;
        if (!l)
                return inv_pump(op);
        op->inv.hosts = calloc(json_array_size(l) ?: 1, sizeof(*op->inv.hosts));
        if (!op->inv.hosts) {
                inv_fail_errno(op, -ENOMEM, "hosts");
                return inv_pump(op);
        }
        json_array_foreach(l, i, item)
        {
                vb_hv_host *h = &op->inv.hosts[op->inv.n_hosts++];
                int64_t st;

                h->id = dup_str(item, "id", &oom);
                h->name = dup_str(item, "name", &oom);
                h->cluster_id = dup_str(item, "clusterId", &oom);
                h->pool_id = dup_str(item, "hostPoolId", &oom);
                /* The host list gives the management address only. */
                h->addr_management = dup_str(item, "ip", &oom);
                /* status: 1 active, 0 inactive, -1 unknown (§3.1). */
                h->up = cas_get_i64(item, "status", &st) == 0 && st == 1;
                if (oom || !h->id) {
                        inv_fail_errno(op, oom ? -ENOMEM : -EBADMSG, "hosts");
                        break;
                }
        }
        inv_pump(op);
}

static int inv_vmlist_page(inv_op *op, size_t offset);

static void inv_vmlist(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        inv_op *op = ctx;
        json_t *l = inv_list(op, r, msg, doc, "domain"), *item;
        size_t i;
        int k;

        if (!l)
                return inv_pump(op);
        json_array_foreach(l, i, item)
        {
                const char *id = cas_get_str(item, "id");

                if (!id || !*id) {
                        inv_fail_errno(op, -EBADMSG, "vmList");
                        return inv_pump(op);
                }
                if (json_array_append(op->vm_ids, item) < 0) { /* the whole item: see inv_vm_stub() */
                        inv_fail_errno(op, -ENOMEM, "vmList");
                        return inv_pump(op);
                }
        }
        /* Paging (§1.4): Total counts every VM; an empty page ends it anyway. */
        if (json_array_size(l) > 0 && resp->total > 0 && json_array_size(op->vm_ids) < (size_t)resp->total) {
                k = inv_vmlist_page(op, json_array_size(op->vm_ids));
                if (k < 0)
                        inv_fail_errno(op, k, "vmList");
        }
        inv_pump(op);
}

static int inv_vmlist_page(inv_op *op, size_t offset)
{
        char path[128];
        int k;

        snprintf(path, sizeof(path), "/vm/vmList?offset=%zu&limit=%u", offset, CAS_VMLIST_LIMIT);
        k = call_start(op->hv, "GET", path, inv_vmlist, op);
        if (k >= 0)
                op->pending++;
        return k;
}

static int cas_inventory(vb_hv *hv, vb_hv_inventory_fn done, void *userdata)
{
        static const struct {
                const char *path;
                call_fn fn;
        } lists[] = {
                { "/hostpool/all", inv_pools },
                { "/cluster/clusters", inv_clusters },
                { "/host", inv_hosts },
        };
        inv_op *op = calloc(1, sizeof(*op));
        int k;

        if (!op)
                return -ENOMEM;
        *op = (inv_op){ .hv = hv, .done = done, .userdata = userdata, .vm_ids = json_array() };
        if (!op->vm_ids) {
                free(op);
                return -ENOMEM;
        }
        k = inv_vmlist_page(op, 0);
        if (k < 0) {
                json_decref(op->vm_ids);
                free(op);
                return k;
        }
        /* From here on the callbacks own op: a failure is reported through done. */
        for (size_t i = 0; i < ELEMENTSOF(lists) && op->r == VB_OK; i++) {
                k = call_start(hv, "GET", lists[i].path, lists[i].fn, op);
                if (k < 0)
                        inv_fail_errno(op, k, lists[i].path + 1);
                else
                        op->pending++;
        }
        return 0;
}

/* ---- vm_get ---- */

typedef struct get_op {
        vb_hv *hv;
        char *key;
        vb_hv_vm vm;
        size_t offset; /* the vmList page searched for a name */
        vb_hv_vm_fn done;
        void *userdata;
} get_op;

static void get_finish(get_op *g, vb_error r, const char *msg)
{
        g->done(g->userdata, r, msg, r == VB_OK ? &g->vm : NULL);
        vm_done(&g->vm);
        free(g->key);
        free(g);
}

static void get_fetched(void *ctx, vb_error r, const char *msg)
{
        get_finish(ctx, r, msg);
}

static void get_fetch(get_op *g, const char *id, const char *name)
{
        char buf[MSG_MAX];
        int k = vm_fetch_start(g->hv, id, name, &g->vm, get_fetched, g);

        if (k < 0) {
                vm_msg(buf, sizeof(buf), g->hv, name, id, "reading it: %s", strerror(-k));
                get_finish(g, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
        }
}

static int get_page(get_op *g);

static void get_searched(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        get_op *g = ctx;
        json_t *l, *item, *by_title = NULL;
        char buf[MSG_MAX];
        size_t i;
        int k;

        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), g->hv, g->key, NULL, "looking for it in vmList: %s", detail_of(g->hv, msg));
                return get_finish(g, r, buf);
        }
        l = cas_get_list(doc, "domain");
        if (!l) {
                vm_msg(buf, sizeof(buf), g->hv, g->key, NULL, "looking for it in vmList: %s", strerror(ENOMEM));
                return get_finish(g, VB_E_FAILED, buf);
        }
        json_array_foreach(l, i, item)
        {
                if (streq_ptr(cas_get_str(item, "name"), g->key))
                        return get_fetch(g, cas_get_str(item, "id") ?: "", g->key);
                if (!by_title && streq_ptr(cas_get_str(item, "title"), g->key))
                        by_title = item;
        }
        g->offset += json_array_size(l);
        if (json_array_size(l) > 0 && resp->total > 0 && g->offset < (size_t)resp->total) {
                k = get_page(g);
                if (k < 0) {
                        vm_msg(buf, sizeof(buf), g->hv, g->key, NULL, "looking for it in vmList: %s", strerror(-k));
                        return get_finish(g, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
                }
                return;
        }
        /* Names are unique; titles only when the user picked them so. The
         * first title match of the last page only: a fall back for people
         * who know their VMs by title. */
        if (by_title)
                return get_fetch(g, cas_get_str(by_title, "id") ?: "", cas_get_str(by_title, "name"));
        vm_msg(buf, sizeof(buf), g->hv, g->key, NULL, "no VM of that name, id or uuid");
        get_finish(g, VB_E_NOT_FOUND, buf);
}

static int get_page(get_op *g)
{
        char path[128];

        snprintf(path, sizeof(path), "/vm/vmList?offset=%zu&limit=%u", g->offset, CAS_VMLIST_LIMIT);
        return call_start(g->hv, "GET", path, get_searched, g);
}

static bool is_uuid(const char *s)
{
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++)
                if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
                        return false;
        return true;
}

static int cas_vm_get(vb_hv *hv, const char *vm, vb_hv_vm_fn done, void *userdata)
{
        get_op *g;
        int k;

        if (!vm || !*vm || strlen(vm) > 256)
                return -EINVAL;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        *g = (get_op){ .hv = hv, .key = strdup(vm), .done = done, .userdata = userdata };
        if (!g->key) {
                free(g);
                return -ENOMEM;
        }
        /* vm/{id} takes an id or a uuid (§3.2 A); a name needs the list (§3.1). */
        if (strspn(vm, "0123456789") == strlen(vm) || is_uuid(vm))
                k = vm_fetch_start(hv, vm, NULL, &g->vm, get_fetched, g);
        else
                k = get_page(g);
        if (k < 0) {
                free(g->key);
                free(g);
        }
        return k;
}

/* ---- storage_free (§3.6) ---- */

typedef struct free_op {
        vb_hv *hv;
        vm_ref vm;
        char **paths;
        size_t n_paths;
        vb_hv_space_fn done;
        void *userdata;
} free_op;

static void free_op_free(free_op *f)
{
        for (size_t i = 0; i < f->n_paths; i++)
                free(f->paths[i]);
        free(f->paths);
        vm_ref_clear(&f->vm);
        free(f);
}

/* The pool whose path is the longest directory prefix of path, or NULL. */
static json_t *pool_of(json_t *pools, const char *path)
{
        json_t *item, *best = NULL;
        size_t i, best_len = 0;

        json_array_foreach(pools, i, item)
        {
                const char *p = cas_get_str(item, "path");
                size_t n;

                if (!p || !*p)
                        continue;
                n = strlen(p);
                while (n > 1 && p[n - 1] == '/')
                        n--;
                if (strncmp(path, p, n) == 0 && (path[n] == '/' || (n == 1 && p[0] == '/')) && n > best_len) {
                        best = item;
                        best_len = n;
                }
        }
        return best;
}

static void free_answered(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        free_op *f = ctx;
        char buf[MSG_MAX];
        vb_hv_space space = { .free = UINT64_MAX };
        json_t *pools;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), f->hv, f->vm.name, f->vm.id, "free space: %s", detail_of(f->hv, msg));
                goto out;
        }
        pools = cas_get_list(doc, "storagePool");
        if (!pools) {
                r = VB_E_FAILED;
                vm_msg(buf, sizeof(buf), f->hv, f->vm.name, f->vm.id, "free space: %s", strerror(ENOMEM));
                goto out;
        }
        /* Snapshots grow in the pool of each disk: the fullest pool bounds them all. */
        for (size_t i = 0; i < f->n_paths; i++) {
                json_t *p = pool_of(pools, f->paths[i]);
                uint64_t b;

                if (!p) {
                        r = VB_E_NOT_FOUND;
                        vm_msg(buf, sizeof(buf), f->hv, f->vm.name, f->vm.id,
                               "free space: no storage pool of its host holds %s", f->paths[i]);
                        goto out;
                }
                b = get_mb(p, "freeSize");
                if (b < space.free) {
                        space.free = b;
                        space.total = get_mb(p, "totalSize");
                        space.pool = cas_get_str(p, "name");
                }
        }
        buf[0] = 0;
out:
        f->done(f->userdata, r, buf, r == VB_OK ? &space : NULL);
        free_op_free(f);
}

static int cas_storage_free(vb_hv *hv, const vb_hv_vm *vm, vb_hv_space_fn done, void *userdata)
{
        char path[256];
        free_op *f;
        int k;

        if (!vm->host_id || strpbrk(vm->host_id, "/?&#% ") || strlen(vm->host_id) > 64 || vm->n_disks == 0)
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        *f = (free_op){ .hv = hv, .done = done, .userdata = userdata };
        f->paths = calloc(vm->n_disks, sizeof(*f->paths));
        if (vm_ref_set(&f->vm, vm->id, vm->name) < 0 || !f->paths) {
                k = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < vm->n_disks; i++) {
                if (!vm->disks[i].path) {
                        k = -EINVAL;
                        goto fail;
                }
                f->paths[f->n_paths] = strdup(vm->disks[i].path);
                if (!f->paths[f->n_paths]) {
                        k = -ENOMEM;
                        goto fail;
                }
                f->n_paths++;
        }
        snprintf(path, sizeof(path), "/storage/pool?hostId=%s", vm->host_id);
        k = call_start(hv, "GET", path, free_answered, f);
        if (k < 0)
                goto fail;
        return 0;
fail:
        free_op_free(f);
        return k;
}

/* ---- snapshots (§3.4) and guest quiesce (§3.8) ---- */

typedef struct snap_op {
        vb_hv *hv;
        vm_ref vm;
        vb_hv_snapshot s;
        bool quiesce, frozen;
        vb_error r; /* the snapshot's own result, kept while the guest thaws */
        bool maybe; /* failed, but the snapshot may still appear: the caller deletes it */
        char msg[MSG_MAX];
        vb_hv_snapshot_fn done;
        void *userdata;
} snap_op;

static void snap_finish(snap_op *o)
{
        o->done(o->userdata, o->r, o->msg, o->r == VB_OK || o->maybe ? &o->s : NULL);
        vb_hv_snapshot_clear(&o->s);
        vm_ref_clear(&o->vm);
        free(o);
}

static void snap_fail_errno(snap_op *o, int k, const char *step)
{
        o->r = k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED;
        vm_msg(o->msg, sizeof(o->msg), o->hv, o->vm.name, o->vm.id, "%s: %s", step, strerror(-k));
        snap_finish(o);
}

/* A guest agent command through the CVM (`POST vm/{id}/executeCmd`, §3.8);
 * its body is JSON whatever the platform's format. */
static int guest_command(snap_op *o, const char *command, call_fn fn)
{
        _cleanup_free_ char *body = NULL;
        char path[256];
        json_t *j = json_pack("{s:s}", "command", command);

        if (!j)
                return -ENOMEM;
        body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!body)
                return -ENOMEM;
        snprintf(path, sizeof(path), "/vm/%s/executeCmd", o->vm.id);
        return call_send(o->hv, "POST", path, body, "application/json", fn, o);
}

/* An answer in rsResult form may still say no (state 1, §2.3). */
static bool guest_refused(json_t *doc, char **why)
{
        cas_rs_result rs;

        if (!json_object_get(doc, "state") || cas_rs_result_from_json(doc, &rs) < 0)
                return false;
        if (rs.state == 0) {
                cas_rs_result_done(&rs);
                return false;
        }
        *why = rs.message ? strdup(rs.message) : NULL;
        cas_rs_result_done(&rs);
        return true;
}

static void snap_thawed(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        snap_op *o = ctx;
        _cleanup_free_ char *why = NULL;

        (void)resp;
        if (r == VB_OK && guest_refused(doc, &why))
                r = VB_E_REFUSED;
        /* The guest's agent thaws by itself after its own timeout; say so, go on. */
        if (r != VB_OK)
                log_warning("CVM %s: vm %s (id %s): thawing the guest's file systems: %s", o->hv->cvm, o->vm.name,
                            o->vm.id, why ?: detail_of(o->hv, msg));
        snap_finish(o);
}

static void snap_taken(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        snap_op *o = ctx;
        abandoned *a;
        int k;

        if (r != VB_OK && t && !t->completed && (a = calloc(1, sizeof(*a)))) {
                /* Timed out: remember the task, so a delete waits for it. */
                *a = (abandoned){ .next = o->hv->abandoned,
                                  .vm_id = strdup(o->vm.id),
                                  .name = strdup(o->s.name),
                                  .msg_id = t->msg_id };
                if (a->vm_id && a->name) {
                        o->hv->abandoned = a;
                        o->maybe = true;
                } else {
                        free(a->vm_id);
                        free(a->name);
                        free(a);
                }
        }
        o->r = r;
        snprintf(o->msg, sizeof(o->msg), "%s", msg);
        if (!o->frozen)
                return snap_finish(o);
        k = guest_command(o, "{\"execute\":\"guest-fsfreeze-thaw\"}", snap_thawed);
        if (k < 0) {
                log_warning("CVM %s: vm %s (id %s): cannot ask the guest to thaw: %s", o->hv->cvm, o->vm.name, o->vm.id,
                            strerror(-k));
                snap_finish(o);
        }
}

static void snap_take(snap_op *o)
{
        char step[128];
        json_t *body;
        int k;

        /* snapshotMode 1 internal, 2 external; no memory state (§3.4). */
        body = json_pack("{s:s, s:s, s:s, s:b, s:i}", "vmId", o->vm.id, "name", o->s.name, "desc", "vbak backup",
                         "snapMem", 0, "snapshotMode", o->s.type == VB_SNAPSHOT_INTERNAL ? 1 : 2);
        snprintf(step, sizeof(step), "%s snapshot %s", vb_snapshot_type_to_string(o->s.type), o->s.name);
        k = body ? task_start(o->hv, "POST", "/vm/snapshot", body, "snapshot", o->vm.name, o->vm.id, step, snap_taken,
                              o)
                 : -ENOMEM;
        json_decref(body);
        if (k < 0)
                snap_fail_errno(o, k, step);
}

static void snap_frozen(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        snap_op *o = ctx;
        _cleanup_free_ char *why = NULL;

        (void)resp;
        if (r == VB_E_INTERRUPTED) {
                o->r = r;
                snprintf(o->msg, sizeof(o->msg), "%s", msg);
                return snap_finish(o);
        }
        if (r == VB_OK && !guest_refused(doc, &why)) {
                o->frozen = true;
                o->s.quiesced = true;
        } else if (asprintf(&o->s.note, "the guest agent did not freeze the file systems (%s): crash-consistent",
                            why
                                    ?: r == VB_OK ? "refused"
                                                  : detail_of(o->hv, msg)) < 0) {
                o->s.note = NULL;
        }
        snap_take(o);
}

static int cas_snapshot_create(vb_hv *hv, const vb_hv_vm *vm, vb_snapshot_type type, bool quiesce, const char *name,
                               const char *since, vb_hv_snapshot_fn done, void *userdata)
{
        snap_op *o;
        int k;

        if (!id_ok(vm->id) || (unsigned)type > VB_SNAPSHOT_EXTERNAL)
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        /* Adaptive is external: its base is frozen while the VM writes to the
         * overlay, the disk service reads the base with changed-block
         * tracking, and deleting the snapshot commits the overlay back (which
         * the new checkpoint records). An internal snapshot of a running VM
         * can only be read whole. */
        *o = (snap_op){ .hv = hv,
                        .s = { .type = type == VB_SNAPSHOT_INTERNAL ? VB_SNAPSHOT_INTERNAL : VB_SNAPSHOT_EXTERNAL },
                        .quiesce = quiesce && vm->state == VB_VM_RUNNING,
                        .done = done,
                        .userdata = userdata };
        if (name)
                k = (o->s.name = strdup(name)) ? 0 : -ENOMEM;
        else
                k = vb_hv_snapshot_name(&o->s.name);
        if (k >= 0)
                k = vm_ref_set(&o->vm, vm->id, vm->name);
        if (k < 0) {
                goto fail;
        }
        if (!o->quiesce) {
                if (quiesce && asprintf(&o->s.note, "the VM is not running: crash-consistent") < 0)
                        o->s.note = NULL;
                snap_take(o);
                return 0;
        }
        k = guest_command(o, "{\"execute\":\"guest-fsfreeze-freeze\"}", snap_frozen);
        if (k < 0)
                goto fail;
        return 0;
fail:
        vb_hv_snapshot_clear(&o->s);
        vm_ref_clear(&o->vm);
        free(o);
        return k;
}

typedef struct unsnap_op {
        vb_hv *hv;
        vm_ref vm;
        char *name;
        bool waited; /* for the create task that had timed out */
        vb_hv_done_fn done;
        void *userdata;
} unsnap_op;

static void unsnap_free(unsnap_op *o)
{
        vm_ref_clear(&o->vm);
        free(o->name);
        free(o);
}

static void unsnap_deleted(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        unsnap_op *o = ctx;

        (void)t;
        o->done(o->userdata, r, msg);
        unsnap_free(o);
}

/* The snapshot list is a tree: each one's children under `snapshots` (§3.4). */
static bool snapshot_listed(json_t *list, const char *name, int depth)
{
        json_t *item;
        size_t i;

        if (!list || depth > 64)
                return false;
        json_array_foreach(list, i, item)
        {
                if (streq_ptr(cas_get_str(item, "name"), name))
                        return true;
                if (snapshot_listed(cas_get_list(cas_get_obj(item, "snapshots"), "snapshot"), name, depth + 1))
                        return true;
        }
        return false;
}

static void unsnap_listed(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp);

static void unsnap_waited(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        unsnap_op *o = ctx;
        char path[256], buf[MSG_MAX];
        int k;

        (void)t;
        /* However it ended, the list tells whether there is a snapshot to delete. */
        if (r != VB_OK)
                log_info("%s", msg);
        snprintf(path, sizeof(path), "/vm/snapshot/%s", o->vm.id);
        k = call_start(o->hv, "GET", path, unsnap_listed, o);
        if (k < 0) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "deleting snapshot %s: %s", o->name,
                       strerror(-k));
                o->done(o->userdata, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
                unsnap_free(o);
        }
}

static void unsnap_listed(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        unsnap_op *o = ctx;
        char buf[MSG_MAX], path[512], step[128];
        int k;

        (void)resp;
        snprintf(step, sizeof(step), "deleting snapshot %s", o->name);
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "%s: listing snapshots: %s", step,
                       detail_of(o->hv, msg));
                o->done(o->userdata, r, buf);
                return unsnap_free(o);
        }
        /* Not there yet, but its create task timed out: wait for that task,
         * then look again. */
        if (!o->waited && !snapshot_listed(cas_get_list(doc, "snapshot"), o->name, 0)) {
                for (abandoned **pp = &o->hv->abandoned, *a; (a = *pp); pp = &a->next) {
                        if (!streq(a->vm_id, o->vm.id) || !streq(a->name, o->name))
                                continue;
                        *pp = a->next;
                        o->waited = true;
                        snprintf(step, sizeof(step), "waiting for the task creating snapshot %s", o->name);
                        k = task_follow(o->hv, a->msg_id, o->vm.name, o->vm.id, step, unsnap_waited, o);
                        free(a->vm_id);
                        free(a->name);
                        free(a);
                        if (k < 0) {
                                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "%s: %s", step, strerror(-k));
                                o->done(o->userdata, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
                                unsnap_free(o);
                        }
                        return;
                }
        }
        /* Gone already (a create that failed, a second cleanup): nothing to do. */
        if (!snapshot_listed(cas_get_list(doc, "snapshot"), o->name, 0)) {
                log_debug("CVM %s: vm %s: snapshot %s is not there", o->hv->cvm, o->vm.name, o->name);
                o->done(o->userdata, VB_OK, "");
                return unsnap_free(o);
        }
        snprintf(path, sizeof(path), "/vm/snapshot/%s/%s", o->vm.id, o->name);
        k = task_start(o->hv, "DELETE", path, NULL, NULL, o->vm.name, o->vm.id, step, unsnap_deleted, o);
        if (k < 0) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "%s: %s", step, strerror(-k));
                o->done(o->userdata, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf);
                unsnap_free(o);
        }
}

static int cas_snapshot_delete(vb_hv *hv, const vb_hv_vm *vm, const char *name, vb_hv_done_fn done, void *userdata)
{
        char path[256];
        unsnap_op *o;
        int k;

        if (!id_ok(vm->id) || !name || !*name || strlen(name) > 64 || strpbrk(name, "/?&#% \"'\\"))
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *o = (unsnap_op){ .hv = hv, .name = strdup(name), .done = done, .userdata = userdata };
        if (vm_ref_set(&o->vm, vm->id, vm->name) < 0 || !o->name) {
                unsnap_free(o);
                return -ENOMEM;
        }
        snprintf(path, sizeof(path), "/vm/snapshot/%s", vm->id);
        k = call_start(hv, "GET", path, unsnap_listed, o);
        if (k < 0)
                unsnap_free(o);
        return k;
}

/* ---- CBT (§3.5) ---- */

typedef struct cbt_op {
        vb_hv *hv;
        vm_ref vm;
        vb_hv_cbt_fn done;
        void *userdata;
} cbt_op;

static void cbt_finish(cbt_op *o, vb_error r, const char *msg, bool valid, const char *why)
{
        o->done(o->userdata, r, msg, valid, why);
        vm_ref_clear(&o->vm);
        free(o);
}

static void cbt_checked(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        cbt_op *o = ctx;
        char buf[MSG_MAX];
        const char *s;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "checkCbtBackup: %s", detail_of(o->hv, msg));
                return cbt_finish(o, r, buf, false, NULL);
        }
        /* A bare true/false (§3.5); a string when served as text. */
        s = json_is_string(doc) ? json_string_value(doc) : NULL;
        if (json_is_true(doc) || streq_ptr(s, "true"))
                return cbt_finish(o, VB_OK, "", true, NULL);
        if (json_is_false(doc) || streq_ptr(s, "false"))
                return cbt_finish(o, VB_OK, "", false,
                                  "CAS reports the VM's changed-block tracking invalid (checkCbtBackup is false: "
                                  "the VM was power-cycled, migrated or its disks changed)");
        vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "checkCbtBackup: neither true nor false");
        cbt_finish(o, VB_E_PROTOCOL, buf, false, NULL);
}

static void cbt_capable(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        cbt_op *o = ctx;
        char buf[MSG_MAX], path[256];
        bool b;
        int k;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "capabilities: %s", detail_of(o->hv, msg));
                return cbt_finish(o, r, buf, false, NULL);
        }
        if (cas_get_bool(doc, "supportCbt", &b) == 0 && !b)
                return cbt_finish(o, VB_OK, "", false,
                                  "the VM does not support changed-block tracking (supportCbt is false: a disk "
                                  "is not qcow2)");
        snprintf(path, sizeof(path), "/vm/checkCbtBackup/%s", o->vm.id);
        k = call_start(o->hv, "PUT", path, cbt_checked, o);
        if (k < 0) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "checkCbtBackup: %s", strerror(-k));
                cbt_finish(o, k == -ESHUTDOWN ? VB_E_INTERRUPTED : VB_E_FAILED, buf, false, NULL);
        }
}

static int cas_cbt_check(vb_hv *hv, const vb_hv_vm *vm, vb_hv_cbt_fn done, void *userdata)
{
        char path[256];
        cbt_op *o;
        int k;

        if (!id_ok(vm->id))
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *o = (cbt_op){ .hv = hv, .done = done, .userdata = userdata };
        k = vm_ref_set(&o->vm, vm->id, vm->name);
        if (k < 0)
                goto fail;
        snprintf(path, sizeof(path), "/vm/%s/capabilities", vm->id);
        k = call_start(hv, "GET", path, cbt_capable, o);
        if (k < 0)
                goto fail;
        return 0;
fail:
        vm_ref_clear(&o->vm);
        free(o);
        return k;
}

/* ---- disks through the host's disk service (§4) ---- */

typedef struct src_op {
        vb_hv *hv;
        vm_ref vm;
        char *device, *path;
        char *snapshot; /* internal: read this snapshot */
        char *since, *checkpoint;
        bool write;
        vb_hv_source_fn done;
        void *userdata;
} src_op;

static void src_free(src_op *o)
{
        vm_ref_clear(&o->vm);
        free(o->device);
        free(o->path);
        free(o->snapshot);
        free(o->since);
        free(o->checkpoint);
        free(o);
}

/* The host's address on the preferred network (design: adaptive tries
 * backup, then storage, then management); the pNIC on vswitch0 when no NIC
 * carries that network, the host's ip last. Host detail lists one pNIC per
 * network with vsName, ipAddr and usage (the simulator's names for fields
 * CAS does not document publicly). */
static const char *host_address(json_t *host, const char *network)
{
        static const char *const adaptive[] = { "backup", "storage", "management" };
        json_t *nics = cas_get_list(host, "pNIC"), *nic;
        size_t i;

        for (size_t k = 0; k < ELEMENTSOF(adaptive); k++) {
                const char *want = network && !streq(network, "adaptive") ? network : adaptive[k];

                json_array_foreach(nics, i, nic) if (streq_ptr(cas_get_str(nic, "usage"), want) &&
                                                     cas_get_str(nic, "ipAddr")) return cas_get_str(nic, "ipAddr");
                if (network && !streq(network, "adaptive"))
                        break;
        }
        json_array_foreach(nics, i, nic) if (streq_ptr(cas_get_str(nic, "vsName"), "vswitch0") &&
                                             cas_get_str(nic, "ipAddr")) return cas_get_str(nic, "ipAddr");
        return cas_get_str(host, "ip");
}

static void src_host(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        src_op *o = ctx;
        vb_hv_disk_source src = {};
        const char *addr;
        char buf[MSG_MAX];
        bool v6;

        (void)resp;
        if (r != VB_OK) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "disk %s: finding its host: %s",
                       o->device ?: o->path, detail_of(o->hv, msg));
                o->done(o->userdata, r, buf, NULL);
                return src_free(o);
        }
        addr = host_address(doc, o->hv->network);
        if (!addr || !*addr) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "disk %s: its host has no address",
                       o->device ?: o->path);
                o->done(o->userdata, VB_E_PROTOCOL, buf, NULL);
                return src_free(o);
        }
        v6 = strchr(addr, ':') != NULL;
        if (asprintf(&src.url, "cvd://%s%s%s:%u/%s%s%s%s", v6 ? "[" : "", addr, v6 ? "]" : "", o->hv->cvd_port,
                     o->vm.name, o->path, o->snapshot ? "?snapshot=" : "", o->snapshot ?: "") < 0) {
                vm_msg(buf, sizeof(buf), o->hv, o->vm.name, o->vm.id, "disk %s: %s", o->device ?: o->path,
                       strerror(ENOMEM));
                o->done(o->userdata, VB_E_FAILED, buf, NULL);
                return src_free(o);
        }
        src.since = o->snapshot ? NULL : o->since;
        src.checkpoint = o->checkpoint;
        if (o->snapshot && o->since)
                src.note = (char *)"an internal snapshot carries no changed-block tracking: reading all allocated "
                                   "data (external snapshots allow incrementals)";
        o->done(o->userdata, VB_OK, "", &src);
        free(src.url);
        src_free(o);
}

static int src_start(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, const vb_hv_snapshot *s, const char *since,
                     bool write, vb_hv_source_fn done, void *userdata)
{
        char path[256];
        src_op *o;
        bool oom = false;
        int k;

        /* A restore writes the disks of a VM that does not exist yet: no id. */
        if ((!write && !id_ok(vm->id)) || !id_ok(vm->host_id) || !vm->name || !disk->path || disk->path[0] != '/')
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *o = (src_op){ .hv = hv, .write = write, .done = done, .userdata = userdata };
        o->path = strdup(disk->path);
        oom = vm_ref_set(&o->vm, vm->id, vm->name) < 0 || !o->path;
        if (disk->device && !(o->device = strdup(disk->device)))
                oom = true;
        if (s && s->type == VB_SNAPSHOT_INTERNAL) {
                /* Read the snapshot itself; its changes since a checkpoint are not known. */
                if (!(o->snapshot = strdup(s->name)))
                        oom = true;
                if (since && !(o->since = strdup(since)))
                        oom = true;
        } else if (s && streq_ptr(disk->format, "qcow2")) {
                /* External: the base (the disk's path before the snapshot) is
                 * frozen. Checkpoints are qcow2 dirty bitmaps: a raw disk
                 * has none and is read whole. */
                if ((since && !(o->since = strdup(since))) || !(o->checkpoint = strdup(s->name)))
                        oom = true;
        }
        if (oom) {
                src_free(o);
                return -ENOMEM;
        }
        snprintf(path, sizeof(path), "/host/id/%s", vm->host_id);
        k = call_start(hv, "GET", path, src_host, o);
        if (k < 0)
                src_free(o);
        return k;
}

static int cas_disk_source(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, const vb_hv_snapshot *s,
                           const char *since, vb_hv_source_fn done, void *userdata)
{
        return src_start(hv, vm, disk, s, since, false, done, userdata);
}

static int cas_disk_target(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_source_fn done, void *userdata)
{
        return src_start(hv, vm, disk, NULL, NULL, true, done, userdata);
}

/* ---- the restore side (§3.6, §3.7) ---- */

/* The new VM's id once its task is done (vm/add: targetId). */
typedef struct id_op {
        vb_hv *hv;
        vb_hv_id_fn done;
        void *userdata;
} id_op;

static void id_op_free(id_op *o)
{
        free(o);
}

static void vm_added(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        id_op *o = ctx;
        char id[32];

        if (r == VB_OK && t->target_id <= 0) {
                o->done(o->userdata, VB_E_PROTOCOL, "vm/add: the finished task names no new VM (targetId)", NULL);
                return id_op_free(o);
        }
        if (r == VB_OK)
                snprintf(id, sizeof(id), "%" PRId64, t->target_id);
        o->done(o->userdata, r, msg, r == VB_OK ? id : NULL);
        id_op_free(o);
}

/* vm/add's <domain> (§3.7) from a captured configuration (view B, §3.2,
 * possibly edited by the restore: name, title, hostId, disk paths). */
static json_t *domain_from_config(json_t *config)
{
        json_t *cpu = cas_get_obj(config, "cpu"), *mem = cas_get_obj(config, "memory"), *item;
        json_t *d, *nets = json_array(), *disks = json_array();
        int64_t v, sockets = 1, cores = 1, memory = 512;
        size_t i;

        if (!nets || !disks)
                goto oom;
        if (cpu && cas_get_i64(cpu, "cpuSockets", &v) == 0 && v > 0)
                sockets = v;
        if (cpu && cas_get_i64(cpu, "cpuCores", &v) == 0 && v > 0)
                cores = v;
        if (mem && cas_get_i64(mem, "size", &v) == 0 && v > 0)
                memory = v;
        else if (cas_get_i64(config, "memory", &v) == 0 && v > 0)
                memory = v;
        json_array_foreach(cas_get_list(config, "network"), i, item)
        {
                json_t *n = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "vsId", cas_get_str(item, "vsId"),
                                      "vsName", cas_get_str(item, "vsName"), "profileId",
                                      cas_get_str(item, "profileId"), "profileName", cas_get_str(item, "profileName"),
                                      "deviceModel", cas_get_str(item, "deviceModel"), "mac", cas_get_str(item, "mac"));
                if (!n || json_array_append_new(nets, n) < 0)
                        goto oom;
        }
        json_array_foreach(cas_get_list(config, "storage"), i, item)
        {
                const char *kind = cas_get_str(item, "device");
                json_t *s;

                if (kind && !streq(kind, "disk"))
                        continue;
                s = json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:s?, s:s?}", "device", "disk", "deviceName",
                              cas_get_str(item, "deviceName"), "storeFile", cas_get_str(item, "path"), "targetBus",
                              cas_get_str(item, "targetBus"), "type", cas_get_str(item, "fileType") ?: "file",
                              "driveType", cas_get_str(item, "format"), "cacheType", cas_get_str(item, "cacheType"));
                if (!s || json_array_append_new(disks, s) < 0)
                        goto oom;
                if (cas_get_i64(item, "size", &v) == 0)
                        json_object_set_new(s, "capacity", json_integer(v));
        }
        d = json_pack("{s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:I, s:s, s:i, s:i, s:o, s:o}", "name",
                      cas_get_str(config, "name"), "title", cas_get_str(config, "title"), "hostId",
                      cas_get_str(config, "hostId"), "hostPoolId", cas_get_str(config, "hostPoolId"), "memory",
                      (json_int_t)memory, "memoryInit", (json_int_t)memory, "cpuSockets", (json_int_t)sockets,
                      "cpuCores", (json_int_t)cores, "cpuMode", (cpu ? cas_get_str(cpu, "cpuMode") : NULL) ?: "custom",
                      "formatEnable", 1, "autoMigrate", 0, "network", nets, "storage", disks);
        if (d && cas_get_i64(config, "system", &v) == 0)
                json_object_set_new(d, "system", json_integer(v));
        return d;
oom:
        json_decref(nets);
        json_decref(disks);
        return NULL;
}

static int cas_vm_create(vb_hv *hv, json_t *config, vb_hv_id_fn done, void *userdata)
{
        json_t *domain;
        id_op *o;
        char step[160];
        int k;

        if (!json_is_object(config) || !cas_get_str(config, "name"))
                return -EINVAL;
        domain = domain_from_config(config);
        if (!domain)
                return -ENOMEM;
        o = calloc(1, sizeof(*o));
        if (!o) {
                json_decref(domain);
                return -ENOMEM;
        }
        *o = (id_op){ .hv = hv, .done = done, .userdata = userdata };
        snprintf(step, sizeof(step), "creating vm %s", cas_get_str(domain, "name"));
        k = task_start(hv, "POST", "/vm/add", domain, "domain", NULL, NULL, step, vm_added, o);
        json_decref(domain);
        if (k < 0)
                id_op_free(o);
        return k;
}

/* ---- volumes (§3.6) ---- */

/* volume_create and volume_stat: the host's pools first when the pool (or
 * the sub-directory) has to be found from a path, then the request. */
typedef struct vol_op {
        vb_hv *hv;
        vb_hv_id_fn created;     /* volume_create, or */
        vb_hv_volume_fn statted; /* volume_stat */
        void *userdata;
        char *host_id, *pool, *subdir, *name, *path, *format;
        uint64_t size;
        vb_prealloc prealloc;
} vol_op;

static void vol_op_free(vol_op *o)
{
        free(o->host_id);
        free(o->pool);
        free(o->subdir);
        free(o->name);
        free(o->path);
        free(o->format);
        free(o);
}

static void vol_fail(vol_op *o, vb_error r, const char *msg)
{
        if (o->created)
                o->created(o->userdata, r, msg, NULL);
        else
                o->statted(o->userdata, r, msg, NULL);
        vol_op_free(o);
}

static void vol_fail_errno(vol_op *o, int k)
{
        vol_fail(o, k == -ESHUTDOWN ? VB_E_INTERRUPTED : k == -ENOMEM ? VB_E_FAILED : VB_E_USAGE, strerror(-k));
}

/* Names that go into paths and queries as they are. */
static bool name_ok(const char *s)
{
        return s && *s && strlen(s) <= 128 && s[0] != '.' &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
                         "rstuvwxyz0123456789._-") == strlen(s);
}

/* Whether a listed volume is the one asked for: by path when known, else
 * by name in the sub-directory asked for (the listing holds the pool's
 * sub-directories too). */
static bool vol_match(const vol_op *o, json_t *item)
{
        const char *path = cas_get_str(item, "path"), *slash;
        char tail[300];
        size_t n, t;

        if (!path || !streq_ptr(cas_get_str(item, "name"), o->name))
                return false;
        if (o->path)
                return streq(path, o->path);
        if (o->subdir) {
                snprintf(tail, sizeof(tail), "/%s/%s", o->subdir, o->name);
                n = strlen(path);
                t = strlen(tail);
                return n >= t && streq(path + n - t, tail);
        }
        return (slash = strrchr(path, '/')) && streq(slash + 1, o->name);
}

static void vol_listed(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        vol_op *o = ctx;
        json_t *item, *best = NULL;
        size_t i;

        (void)resp;
        if (r != VB_OK)
                return vol_fail(o, r, msg);
        /* Several may match without a sub-directory: the shortest path is the pool's own folder. */
        json_array_foreach(cas_get_list(doc, "storageVolume"), i,
                           item) if (vol_match(o, item) &&
                                     (!best || strlen(cas_get_str(item, "path")) < strlen(cas_get_str(best, "path"))))
                best = item;
        if (o->created) {
                if (!best)
                        return vol_fail(o, VB_E_PROTOCOL, "storage/volume: the new volume is not listed");
                o->created(o->userdata, VB_OK, "", cas_get_str(best, "path"));
        } else {
                vb_hv_volume v = { .host_id = o->host_id, .pool = o->pool, .name = o->name };
                double mb = 0;

                if (best) {
                        v.path = cas_get_str(best, "path");
                        v.format = cas_get_str(best, "format");
                        if (cas_get_double(best, "size", &mb) == 0 && mb > 0)
                                v.size = (uint64_t)(mb * 1048576.0 + 0.5);
                }
                o->statted(o->userdata, VB_OK, "", best ? &v : NULL);
        }
        vol_op_free(o);
}

static int vol_list(vol_op *o)
{
        _cleanup_free_ char *path = NULL;

        if (!name_ok(o->pool) || !name_ok(o->name))
                return -EINVAL;
        if (asprintf(&path, "/storage/volume?hostId=%s&poolName=%s&volumeName=%s", o->host_id, o->pool, o->name) < 0)
                return -ENOMEM;
        return call_start(o->hv, "GET", path, vol_listed, o);
}

static void vol_created(void *ctx, vb_error r, const char *msg, const cas_task *t)
{
        vol_op *o = ctx;
        int k;

        (void)t;
        if (r != VB_OK)
                return vol_fail(o, r, msg);
        /* Its path, which writing and attaching it need. */
        k = vol_list(o);
        if (k < 0)
                vol_fail_errno(o, k);
}

static int vol_post(vol_op *o)
{
        /* S1's mode: 0 lazy-zeroed, 1 zeroed, 2 thin. */
        static const int modes[] = { [VB_PREALLOC_THIN] = 2, [VB_PREALLOC_LAZY] = 0, [VB_PREALLOC_EAGER] = 1 };
        json_t *body;
        char step[400];
        int k;

        if (!name_ok(o->pool) || !name_ok(o->name) || (o->subdir && !name_ok(o->subdir)))
                return -EINVAL;
        /* capacity in MB, rounded up (§3.6: sizes are MB). */
        body = json_pack("{s:s, s:s, s:s, s:I, s:s}", "hostId", o->host_id, "spName", o->pool, "volName", o->name,
                         "capacity", (json_int_t)((o->size + (1u << 20) - 1) >> 20), "format", o->format);
        if (!body)
                return -ENOMEM;
        if ((o->subdir && json_object_set_new(body, "secDir", json_string(o->subdir)) < 0) ||
            (o->prealloc != VB_PREALLOC_DEFAULT &&
             json_object_set_new(body, "mode", json_integer(modes[o->prealloc])) < 0)) {
                json_decref(body);
                return -ENOMEM;
        }
        snprintf(step, sizeof(step), "creating volume %s%s%s in pool %s of host %s", o->subdir ?: "",
                 o->subdir ? "/" : "", o->name, o->pool, o->host_id);
        k = task_start(o->hv, "POST", "/storage/volume", body, "volAddParameter", NULL, NULL, step, vol_created, o);
        json_decref(body);
        return k;
}

/* The pool whose folder holds o->path (directly, or in one sub-directory),
 * the one named first when several do. */
static void vol_pools_listed(void *ctx, vb_error r, const char *msg, json_t *doc, const cas_http_response *resp)
{
        vol_op *o = ctx;
        _cleanup_free_ char *dir = NULL;
        const char *pool = NULL, *sub = NULL;
        json_t *item;
        size_t i;
        int k;

        (void)resp;
        if (r != VB_OK)
                return vol_fail(o, r, msg);
        dir = strndup(o->path, strrchr(o->path, '/') - o->path);
        if (!dir)
                return vol_fail_errno(o, -ENOMEM);
        json_array_foreach(cas_get_list(doc, "storagePool"), i, item)
        {
                const char *name = cas_get_str(item, "name"), *pp = cas_get_str(item, "path"), *rest;
                size_t n;

                if (!name || !pp)
                        continue;
                n = strlen(pp);
                while (n > 1 && pp[n - 1] == '/')
                        n--;
                if (strncmp(dir, pp, n) != 0)
                        continue;
                rest = dir + n;
                if (*rest && (*rest != '/' || strchr(rest + 1, '/')))
                        continue; /* not this pool, or deeper than a sub-directory */
                if (!pool || streq_ptr(name, o->pool)) {
                        pool = name;
                        sub = *rest ? rest + 1 : NULL;
                }
        }
        if (!pool) {
                char m[600];

                snprintf(m, sizeof(m), "host %s has no storage pool holding %s", o->host_id, o->path);
                if (o->statted) { /* no pool holds it: it is not there */
                        o->statted(o->userdata, VB_OK, "", NULL);
                        return vol_op_free(o);
                }
                return vol_fail(o, VB_E_NOT_FOUND, m);
        }
        free(o->pool);
        o->pool = strdup(pool);
        if (!o->pool || (sub && !(o->subdir = strdup(sub))))
                return vol_fail_errno(o, -ENOMEM);
        k = o->created ? vol_post(o) : vol_list(o);
        if (k < 0)
                vol_fail_errno(o, k);
}

static int vol_start(vb_hv *hv, const vb_hv_volume *v, vb_hv_id_fn created, vb_hv_volume_fn statted, void *userdata)
{
        vol_op *o;
        const char *base;
        char path[256];
        int k;

        if (!id_ok(v->host_id) ||
            (v->path && (v->path[0] != '/' || !(base = strrchr(v->path, '/')) || !name_ok(base + 1))))
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *o = (vol_op){ .hv = hv,
                       .created = created,
                       .statted = statted,
                       .userdata = userdata,
                       .size = v->size,
                       .prealloc = v->prealloc };
        if (!(o->host_id = strdup(v->host_id)) || (v->pool && !(o->pool = strdup(v->pool))) ||
            (v->subdir && !(o->subdir = strdup(v->subdir))) || (v->path && !(o->path = strdup(v->path))) ||
            !(o->format = strdup(v->format ?: "qcow2")) ||
            !(o->name = strdup(v->path ? strrchr(v->path, '/') + 1 : v->name ?: ""))) {
                vol_op_free(o);
                return -ENOMEM;
        }
        if (o->path) {
                /* Which pool (and sub-directory) the path is in. */
                snprintf(path, sizeof(path), "/storage/pool?hostId=%s", o->host_id);
                k = call_start(hv, "GET", path, vol_pools_listed, o);
        } else
                k = created ? vol_post(o) : vol_list(o);
        if (k < 0)
                vol_op_free(o);
        return k;
}

static int cas_volume_create(vb_hv *hv, const vb_hv_volume *v, vb_hv_id_fn done, void *userdata)
{
        if (!v->format || (!streq(v->format, "qcow2") && !streq(v->format, "raw")) || v->size == 0 ||
            (unsigned)v->prealloc > VB_PREALLOC_EAGER || (!v->path && (!v->pool || !name_ok(v->name))))
                return -EINVAL;
        return vol_start(hv, v, done, NULL, userdata);
}

static int cas_volume_stat(vb_hv *hv, const vb_hv_volume *v, vb_hv_volume_fn done, void *userdata)
{
        if (!v->path && (!v->pool || !v->name))
                return -EINVAL;
        return vol_start(hv, v, NULL, done, userdata);
}

static int cas_disk_attach(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_done_fn done, void *userdata)
{
        json_t *body;
        char step[160];
        int k;

        if (!id_ok(vm->id) || !disk->path || disk->path[0] != '/')
                return -EINVAL;
        /* pathType 0: an existing file (§3.7). */
        body = json_pack("{s:s, s:s?, s:{s:s, s:s?, s:s, s:i, s:s?, s:s?, s:s}}", "id", vm->id, "name", vm->name,
                         "storage", "device", "disk", "deviceName", disk->device, "path", disk->path, "pathType", 0,
                         "format", disk->format, "driveType", disk->format, "targetBus", disk->bus ?: "virtio");
        if (!body)
                return -ENOMEM;
        snprintf(step, sizeof(step), "attaching disk %s", disk->device ?: disk->path);
        k = task_simple(hv, "PUT", "/vm/addDevice", body, "domain", vm, step, done, userdata);
        json_decref(body);
        return k;
}

static int cas_vm_delete(vb_hv *hv, const vb_hv_vm *vm, bool with_disks, vb_hv_done_fn done, void *userdata)
{
        char path[256];

        if (!id_ok(vm->id))
                return -EINVAL;
        /* deleteVm type 1 also removes the disks (§3.7). */
        if (with_disks)
                snprintf(path, sizeof(path), "/vm/deleteVm?id=%s&type=1", vm->id);
        else
                snprintf(path, sizeof(path), "/vm/delete/%s", vm->id);
        return task_simple(hv, "DELETE", path, NULL, NULL, vm, with_disks ? "deleting it and its disks" : "deleting it",
                           done, userdata);
}

/* The product's CPU modes as CAS names them. */
static const char *cpu_mode_to_cas(const char *mode)
{
        if (streq(mode, "compatible"))
                return "custom";
        if (streq(mode, "host-match"))
                return "host-model";
        if (streq(mode, "passthrough"))
                return "host-passthrough";
        return NULL;
}

static bool device_chosen(const vb_hv_vm_settings *s, const char *device)
{
        if (s->n_devices == 0)
                return true;
        for (size_t i = 0; i < s->n_devices; i++)
                if (streq_ptr(s->devices[i], device))
                        return true;
        return false;
}

/* The member object key of c, made when missing. */
static json_t *config_obj(json_t *c, const char *key)
{
        json_t *o = cas_get_obj(c, key);

        if (!o) {
                o = json_object();
                if (!o || json_object_set_new(c, key, o) < 0)
                        return NULL;
        }
        return o;
}

static int config_set(json_t *c, const char *obj, const char *key, json_t *v)
{
        json_t *o = config_obj(c, obj);

        return o && v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static json_t *cas_config_new(json_t *captured, const vb_hv_vm_settings *s)
{
        json_t *c = json_deep_copy(captured), *item, *kept = NULL, *nets = NULL;
        const char *mode = NULL;
        size_t i;

        if (!c || !json_is_object(c) || !s->name || !s->host_id)
                goto fail;
        if (s->cpu_mode && !(mode = cpu_mode_to_cas(s->cpu_mode))) {
                json_decref(c);
                errno = EINVAL;
                return NULL;
        }
        json_object_del(c, "id");
        json_object_del(c, "uuid");
        if (json_object_set_new(c, "name", json_string(s->name)) < 0 ||
            json_object_set_new(c, "title", json_string(s->title ?: s->name)) < 0 ||
            json_object_set_new(c, "hostId", json_string(s->host_id)) < 0)
                goto fail;
        if ((s->cpu_sockets && config_set(c, "cpu", "cpuSockets", json_integer(s->cpu_sockets)) < 0) ||
            (s->cpu_cores && config_set(c, "cpu", "cpuCores", json_integer(s->cpu_cores)) < 0) ||
            (mode && config_set(c, "cpu", "cpuMode", json_string(mode)) < 0) ||
            (s->memory_mb && config_set(c, "memory", "size", json_integer((json_int_t)s->memory_mb)) < 0))
                goto fail;
        if (s->nics_set) {
                const char *model = NULL;

                json_array_foreach(cas_get_list(c, "network"), i, item) if (!model) model =
                        cas_get_str(item, "deviceModel");
                nets = json_array();
                if (!nets)
                        goto fail;
                for (i = 0; i < s->n_nics; i++) {
                        const vb_hv_nic_setting *n = &s->nics[i];
                        bool numeric = n->profile && n->profile[strspn(n->profile, "0123456789")] == '\0';
                        json_t *o = json_pack("{s:s?, s:s?, s:s?, s:s}", "vsName", n->vswitch, "profileId",
                                              numeric ? n->profile : NULL, "profileName", numeric ? NULL : n->profile,
                                              "deviceModel", model ?: "virtio");

                        if (!o || json_array_append_new(nets, o) < 0)
                                goto fail;
                }
                if (json_object_set_new(c, "network", TAKE_PTR(nets)) < 0)
                        goto fail;
        } else if (!s->keep_identity)
                /* CAS gives the new VM its own MAC addresses (§3.7: mac is optional). */
                json_array_foreach(cas_get_list(c, "network"), i, item) json_object_del(item, "mac");
        /* Only the disks chosen. */
        kept = json_array();
        if (!kept)
                goto fail;
        json_array_foreach(cas_get_list(c, "storage"), i, item)
        {
                const char *kind = cas_get_str(item, "device");

                if ((kind && !streq(kind, "disk")) || device_chosen(s, cas_get_str(item, "deviceName")))
                        if (json_array_append(kept, item) < 0)
                                goto fail;
        }
        if (json_object_set_new(c, "storage", TAKE_PTR(kept)) < 0)
                goto fail;
        return c;
fail:
        json_decref(kept);
        json_decref(nets);
        json_decref(c);
        errno = ENOMEM;
        return NULL;
}

static int cas_config_disk(json_t *config, const char *device, const char *path, const char *pool, vb_hv_disk *was)
{
        json_t *item;
        size_t i;

        json_array_foreach(cas_get_list(config, "storage"), i,
                           item) if (streq_ptr(cas_get_str(item, "deviceName"), device))
        {
                if (was) {
                        double mb = 0;

                        *was = (vb_hv_disk){ .device = (char *)cas_get_str(item, "deviceName"),
                                             .path = (char *)cas_get_str(item, "path"),
                                             .format = (char *)cas_get_str(item, "format"),
                                             .bus = (char *)cas_get_str(item, "targetBus"),
                                             .pool = (char *)cas_get_str(item, "poolName") };
                        if (cas_get_double(item, "size", &mb) == 0 && mb > 0)
                                was->size = (uint64_t)(mb * 1048576.0 + 0.5);
                }
                if (path && json_object_set_new(item, "path", json_string(path)) < 0)
                        return -ENOMEM;
                if (pool && json_object_set_new(item, "poolName", json_string(pool)) < 0)
                        return -ENOMEM;
                return 0;
        }
        return -ENOENT;
}

const vb_hv_driver cas_driver = {
        .name = "cas",
        .connect = cas_connect,
        .disconnect = cas_disconnect,
        .inventory = cas_inventory,
        .vm_get = cas_vm_get,
        .storage_free = cas_storage_free,
        .cbt_check = cas_cbt_check,
        .snapshot_create = cas_snapshot_create,
        .snapshot_delete = cas_snapshot_delete,
        .disk_source = cas_disk_source,
        .disk_target = cas_disk_target,
        .power = cas_power,
        .vm_create = cas_vm_create,
        .volume_create = cas_volume_create,
        .volume_stat = cas_volume_stat,
        .disk_attach = cas_disk_attach,
        .vm_delete = cas_vm_delete,
        .config_new = cas_config_new,
        .config_disk = cas_config_disk,
};
