/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-routes.c -- the endpoints: a table of method + path pattern (segments
 * after /cas/casrs/, "*" matches one segment) and one handler each. The
 * handlers fill a sim_reply; sim-http.c renders it.
 *
 * DESIGN: a handler that meets an unknown entity answers the 409 business
 * error with the Error-Code CAS uses for it (cas-api.md §5: 1001 VM, 402
 * host, 304 host pool, 11 otherwise); only an unknown path or task is a 404
 * (§2.2: S4 reads 404 on message/{id} as "task does not exist"). Request
 * bodies are parsed once into a tree of objects, arrays and strings whatever
 * the client sent (XML; JSON bare or wrapped in the root's name; typed or
 * string scalars; a one-item list as an object or an array), so a handler
 * reads every form the same way. The restore endpoints (volumes, vm/add,
 * devices, delete) and executeCmd live in sim-volumes.c, sim-restore.c and
 * sim-agent.c; the table below lists them all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "daemon/util.h"
#include "tests/sim/sim.h"

#define MAX_SEGS SIM_MAX_SEGS

typedef sim_route_ctx route_ctx;

static const char *str0(const char *s)
{
        return s ? s : "";
}

typedef void (*route_fn)(route_ctx *c);

void sim_reply_error(sim_reply *rep, int code, const char *message)
{
        rep->status = 409;
        rep->error_code = code;
        rep->error_message = message;
}

void sim_reply_tree(sim_reply *rep, const char *root, json_t *tree)
{
        rep->status = 200;
        rep->root = root;
        rep->tree = tree;
}

bool sim_route_arg_id(route_ctx *c, const char *key, int64_t *out)
{
        return sim_parse_id(sim_request_arg(c->req, key), out);
}

static void err_no_vm(route_ctx *c)
{
        sim_reply_error(c->rep, 1001, "虚拟机不存在。");
}

static void err_no_host(route_ctx *c)
{
        sim_reply_error(c->rep, 402, "主机不存在。");
}

/* {"<child>": items[offset..offset+limit)} with the Total header (§1.4:
 * offset is 0-based, no limit means everything). */
static void reply_page(route_ctx *c, const char *child, json_t *items)
{
        json_t *list = json_object(), *page = json_array();
        int64_t offset = 0, limit = -1;
        size_t n = json_array_size(items);

        (void)sim_route_arg_id(c, "offset", &offset);
        (void)sim_route_arg_id(c, "limit", &limit);
        for (size_t i = (size_t)MAX(offset, 0); i < n && (limit < 0 || (int64_t)json_array_size(page) < limit); i++)
                json_array_append(page, json_array_get(items, i));
        json_decref(items);
        json_object_set_new(list, child, page);
        sim_reply_tree(c->rep, "list", list);
        c->rep->total = (int64_t)n;
}

static void r_operator_test(route_ctx *c)
{
        c->rep->status = 204;
}

static void r_hostpool_all(route_ctx *c)
{
        json_t *list = json_object(), *a = json_array();

        for (size_t i = 0; i < c->m->n_hostpools; i++)
                json_array_append_new(a, sim_view_hostpool(c->m, &c->m->hostpools[i]));
        json_object_set_new(list, "hostPool", a);
        sim_reply_tree(c->rep, "list", list);
}

/* <nodeList> with clusterList[] and hostList[] (hosts placed directly in the pool) (§2.4). */
static void r_hostpool_children(route_ctx *c)
{
        json_t *o, *clusters, *hosts;
        int64_t id;

        if (!sim_parse_id(c->seg[0], &id) || !sim_model_hostpool(c->m, id))
                return sim_reply_error(c->rep, 304, "主机池不存在。");
        o = json_object();
        clusters = json_array();
        hosts = json_array();
        for (size_t i = 0; i < c->m->n_clusters; i++)
                if (c->m->clusters[i].hostpool_id == id)
                        json_array_append_new(clusters, sim_view_cluster(c->m, &c->m->clusters[i]));
        for (size_t i = 0; i < c->m->n_hosts; i++)
                if (c->m->hosts[i].hostpool_id == id && c->m->hosts[i].cluster_id == 0)
                        json_array_append_new(hosts, sim_view_host_brief(&c->m->hosts[i]));
        json_object_set_new(o, "clusterList", clusters);
        json_object_set_new(o, "hostList", hosts);
        sim_reply_tree(c->rep, "nodeList", o);
}

static void r_cluster_all(route_ctx *c)
{
        json_t *list = json_object(), *a = json_array();

        for (size_t i = 0; i < c->m->n_clusters; i++)
                json_array_append_new(a, sim_view_cluster(c->m, &c->m->clusters[i]));
        json_object_set_new(list, "cluster", a);
        sim_reply_tree(c->rep, "list", list);
}

static void r_cluster_one(route_ctx *c)
{
        int64_t id;
        sim_cluster *cl;

        if (!sim_parse_id(c->seg[0], &id) || !(cl = sim_model_cluster(c->m, id)))
                return sim_reply_error(c->rep, 11, "集群不存在。");
        sim_reply_tree(c->rep, "cluster", sim_view_cluster(c->m, cl));
}

static void r_cluster_hosts(route_ctx *c)
{
        json_t *a = json_array();
        int64_t id;

        if (!sim_route_arg_id(c, "clusterId", &id) || !sim_model_cluster(c->m, id))
                return sim_reply_error(c->rep, 11, "集群不存在。");
        for (size_t i = 0; i < c->m->n_hosts; i++)
                if (c->m->hosts[i].cluster_id == id)
                        json_array_append_new(a, sim_view_cluster_host(c->m, &c->m->hosts[i]));
        reply_page(c, "host", a);
}

static void r_host_all(route_ctx *c)
{
        json_t *list = json_object(), *a = json_array();

        for (size_t i = 0; i < c->m->n_hosts; i++)
                json_array_append_new(a, sim_view_host_brief(&c->m->hosts[i]));
        json_object_set_new(list, "host", a);
        sim_reply_tree(c->rep, "list", list);
}

static void r_host_one(route_ctx *c)
{
        int64_t id;
        sim_host *h;

        if (!sim_parse_id(c->seg[0], &id) || !(h = sim_model_host(c->m, id)))
                return err_no_host(c);
        sim_reply_tree(c->rep, "host", sim_view_host_detail(h));
}

/* vm/vmList: every VM, or filtered by hostId / clusterId / hpId (§3.1). */
static void r_vm_list(route_ctx *c)
{
        json_t *a = json_array();
        int64_t host = 0, cluster = 0, hp = 0;

        (void)sim_route_arg_id(c, "hostId", &host);
        (void)sim_route_arg_id(c, "clusterId", &cluster);
        (void)sim_route_arg_id(c, "hpId", &hp);
        for (size_t i = 0; i < c->m->n_vms; i++) {
                sim_vm *vm = &c->m->vms[i];
                sim_host *h = sim_model_host(c->m, vm->host_id);

                if ((host && vm->host_id != host) || (cluster && h->cluster_id != cluster) ||
                    (hp && h->hostpool_id != hp))
                        continue;
                json_array_append_new(a, sim_view_vm_list_item(c->m, vm));
        }
        reply_page(c, "domain", a);
}

/* Fault host-down: the VM's host does not answer, and CAS says so with the
 * host error (§5: 402) on every call about the VM. */
static sim_vm *vm_reachable(route_ctx *c, sim_vm *vm)
{
        if (vm && sim_fault_host(SIM_FAULT_HOST_DOWN, sim_model_host(c->m, vm->host_id))) {
                sim_reply_error(c->rep, 402, "主机连接中断。");
                return NULL;
        }
        return vm;
}

sim_vm *sim_route_vm(route_ctx *c, const char *id_or_uuid)
{
        sim_vm *vm = sim_model_vm(c->m, str0(id_or_uuid));

        if (!vm)
                err_no_vm(c);
        return vm_reachable(c, vm);
}

static sim_vm *seg_vm(route_ctx *c, int i)
{
        return sim_route_vm(c, c->seg[i]);
}

static void r_vm_one(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (vm)
                sim_reply_tree(c->rep, "domain", sim_view_vm(c->m, vm));
}

static void r_vm_detail(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (vm)
                sim_reply_tree(c->rep, "domain", sim_view_vm_detail(c->m, vm));
}

static void r_vm_storage(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (vm)
                sim_reply_tree(c->rep, "list", sim_view_vm_storage(c->m, vm));
}

static void r_vm_capabilities(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);
        json_t *o;

        if (!vm)
                return;
        o = json_object();
        json_object_set_new(o, "supportSnapshot", json_true());
        json_object_set_new(o, "supportCbt", json_boolean(sim_vm_supports_cbt(vm)));
        json_object_set_new(o, "supportFastBackup", json_false());
        /* Not a CAS field: the simulator's CBT validity (false after a power cycle). */
        json_object_set_new(o, "cbtValid", json_boolean(vm->cbt_valid));
        sim_reply_tree(c->rep, "vmCapabilities", o);
}

/* PUT vm/checkCbtBackup/{id}: a bare true/false body (§3.5). */
static void r_vm_check_cbt(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (!vm)
                return;
        c->rep->status = 200;
        c->rep->raw = strdup(sim_vm_supports_cbt(vm) && vm->cbt_valid ? "true" : "false");
}

static void power(route_ctx *c, sim_task_kind kind)
{
        sim_vm *vm = seg_vm(c, 0);
        json_t *t;

        if (!vm)
                return;
        t = sim_task_start(c->m, kind, vm);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

static void r_vm_start(route_ctx *c)
{
        power(c, SIM_TASK_START);
}

static void r_vm_stop(route_ctx *c)
{
        power(c, SIM_TASK_STOP);
}

static void r_vm_poweroff(route_ctx *c)
{
        power(c, SIM_TASK_POWEROFF);
}

/* A JSON value with every scalar as a string (typed and legacy JSON read alike). */
static json_t *json_normalise(json_t *v)
{
        const char *key;
        json_t *child, *out;
        char num[64];
        size_t i;

        if (json_is_object(v)) {
                out = json_object();
                json_object_foreach(v, key, child)
                {
                        if (!json_is_null(child))
                                json_object_set_new(out, key, json_normalise(child));
                }
                return out;
        }
        if (json_is_array(v)) {
                out = json_array();
                json_array_foreach(v, i, child) json_array_append_new(out, json_normalise(child));
                return out;
        }
        if (json_is_string(v))
                return json_incref(v);
        if (json_is_integer(v))
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        else
                snprintf(num, sizeof(num), "%s", json_is_true(v) ? "true" : "false");
        return json_string(num);
}

/* An XML element: its text when it has no child element, else an object of
 * its children, a repeated child name becoming an array. */
static json_t *xml_tree(xmlNode *e)
{
        json_t *o = NULL;

        for (xmlNode *n = e->children; n; n = n->next) {
                const char *name = (const char *)n->name;
                json_t *v, *old;

                if (n->type != XML_ELEMENT_NODE)
                        continue;
                o = o ? o : json_object();
                v = xml_tree(n);
                old = json_object_get(o, name);
                if (!old) {
                        json_object_set_new(o, name, v);
                } else if (json_is_array(old)) {
                        json_array_append_new(old, v);
                } else {
                        json_t *a = json_array();

                        json_array_append(a, old);
                        json_array_append_new(a, v);
                        json_object_set_new(o, name, a);
                }
        }
        if (!o) {
                xmlChar *text = xmlNodeGetContent(e);

                o = json_string(text ? (const char *)text : "");
                xmlFree(text);
        }
        return o;
}

json_t *sim_parse_body(const char *body, const char *root)
{
        json_t *out = NULL;

        while (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')
                body++;
        if (*body == '{') {
                json_t *doc = json_loads(body, 0, NULL), *o = json_object_get(doc, root);

                out = json_normalise(json_is_object(o) ? o : doc);
                json_decref(doc);
        } else if (*body == '<') {
                xmlDoc *x = xmlReadMemory(body, (int)strlen(body), "body.xml", NULL,
                                          XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
                xmlNode *e = x ? xmlDocGetRootElement(x) : NULL;

                out = e ? xml_tree(e) : NULL;
                xmlFreeDoc(x);
        }
        if (!json_is_object(out)) {
                json_decref(out);
                out = json_object();
        }
        return out;
}

const char *sim_body_str(json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

json_t *sim_body_list(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key), *a;

        if (json_is_array(v))
                return json_incref(v);
        a = json_array();
        if (json_is_object(v))
                json_array_append(a, v);
        return a;
}

static json_t *parse_body(const char *body)
{
        return sim_parse_body(body, "snapshot");
}

static const char *field(json_t *o, const char *key)
{
        return sim_body_str(o, key);
}

/* The VM a snapshot body names: vmId, else uuid (§3.4). */
static sim_vm *body_vm(route_ctx *c, json_t *b)
{
        const char *id = field(b, "vmId");
        sim_vm *vm = sim_model_vm(c->m, id ? id : str0(field(b, "uuid")));

        if (!vm)
                err_no_vm(c);
        return vm_reachable(c, vm);
}

static void snapshot_create(route_ctx *c, sim_vm *vm, const char *name, int mode, const char *desc)
{
        json_t *t;

        if (!name || !*name || strchr(name, '/'))
                return sim_reply_error(c->rep, 11, "快照名称无效。");
        if (sim_vm_snapshot(vm, name) || sim_task_snapshot_pending(vm, name))
                return sim_reply_error(c->rep, 11, "快照名称已存在。");
        t = sim_task_start_snapshot(c->m, SIM_TASK_SNAPSHOT, vm, name, mode, desc);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

/* POST vm/snapshot: snapshotMode 1 internal (default), 2 external (§3.4). */
static void r_snapshot_create(route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = parse_body(c->body);
        const char *mode = field(b, "snapshotMode");
        sim_vm *vm = body_vm(c, b);

        if (!vm)
                return;
        if (mode && !streq(mode, "1") && !streq(mode, "2"))
                return sim_reply_error(c->rep, 11, "快照模式无效。");
        snapshot_create(c, vm, field(b, "name"), mode && streq(mode, "2") ? 2 : 1, field(b, "desc"));
}

/* PUT vm/extenalSnap: an external snapshot with a name of the platform's
 * choosing (§3.4; the real naming scheme is unknown). */
static void r_snapshot_external(route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = parse_body(c->body);
        sim_vm *vm = body_vm(c, b);
        char name[48];

        if (!vm)
                return;
        snprintf(name, sizeof(name), "extenalSnap-%" PRId64, sim_now_ms());
        snapshot_create(c, vm, name, 2, "");
}

static void r_snapshot_list(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (vm)
                sim_reply_tree(c->rep, "list", sim_view_snapshots(vm));
}

static void r_snapshot_delete(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);
        json_t *t;

        if (!vm)
                return;
        if (!sim_vm_snapshot(vm, c->seg[1]))
                return sim_reply_error(c->rep, 11, "快照不存在。");
        t = sim_task_start_snapshot(c->m, SIM_TASK_SNAP_DELETE, vm, c->seg[1], 0, NULL);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

static void r_snapshot_simplify(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);
        json_t *t;

        if (!vm)
                return;
        t = sim_task_start_snapshot(c->m, SIM_TASK_SIMPLIFY, vm, NULL, 0, NULL);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

static void r_vm_backfilepath(route_ctx *c)
{
        sim_vm *vm = seg_vm(c, 0);

        if (vm)
                sim_reply_tree(c->rep, "backingfiles", sim_view_backfilepath(vm));
}

static void r_storage_pools(route_ctx *c)
{
        json_t *list, *a;
        int64_t id;
        sim_host *h;

        if (!sim_route_arg_id(c, "hostId", &id) || !(h = sim_model_host(c->m, id)))
                return err_no_host(c);
        list = json_object();
        a = json_array();
        for (size_t i = 0; i < h->n_pools; i++)
                json_array_append_new(a, sim_view_spool(c->m, h, &h->pools[i]));
        json_object_set_new(list, "storagePool", a);
        sim_reply_tree(c->rep, "list", list);
}

static void r_storage_info(route_ctx *c)
{
        const char *name = sim_request_arg(c->req, "poolName");
        int64_t id;
        sim_host *h;
        sim_spool *p;

        if (!sim_route_arg_id(c, "hostId", &id) || !(h = sim_model_host(c->m, id)))
                return err_no_host(c);
        if (!name || !(p = sim_model_spool(h, name)))
                return sim_reply_error(c->rep, 11, "存储池不存在。");
        sim_reply_tree(c->rep, "storagePool", sim_view_spool(c->m, h, p));
}

static void r_message(route_ctx *c)
{
        int64_t id;
        json_t *t;

        if (!sim_parse_id(c->seg[0], &id) || !(t = sim_task_view(id))) {
                c->rep->status = 404;
                return;
        }
        sim_reply_tree(c->rep, "taskMsg", t);
}

static const struct {
        const char *method, *pattern;
        route_fn fn;
} routes[] = {
        { "GET", "operator/test", r_operator_test },
        { "GET", "hostpool/all", r_hostpool_all },
        { "GET", "hostpool/*/allChildNode", r_hostpool_children },
        { "GET", "cluster/clusters", r_cluster_all },
        { "GET", "cluster/hosts", r_cluster_hosts },
        { "GET", "cluster/*", r_cluster_one },
        { "GET", "host", r_host_all },
        { "GET", "host/id/*", r_host_one },
        { "GET", "vm/vmList", r_vm_list },
        { "GET", "vm/detail/*", r_vm_detail },
        { "GET", "vm/*/storage", r_vm_storage },
        { "GET", "vm/*/capabilities", r_vm_capabilities },
        { "PUT", "vm/checkCbtBackup/*", r_vm_check_cbt },
        { "PUT", "vm/start/*", r_vm_start },
        { "PUT", "vm/stop/*", r_vm_stop },
        { "PUT", "vm/powerOff/*", r_vm_poweroff },
        { "GET", "vm/*/backfilepath", r_vm_backfilepath },
        { "POST", "vm/snapshot", r_snapshot_create },
        { "PUT", "vm/extenalSnap", r_snapshot_external },
        { "GET", "vm/snapshot/uuid/*", r_snapshot_list },
        { "GET", "vm/snapshot/*", r_snapshot_list },
        { "PUT", "vm/snapshot/simplifyImageChain/*", r_snapshot_simplify },
        { "DELETE", "vm/snapshot/uuid/*/*", r_snapshot_delete },
        { "DELETE", "vm/snapshot/*/*", r_snapshot_delete },
        { "GET", "vm/*", r_vm_one },
        { "GET", "storage/pool", r_storage_pools },
        { "GET", "storage/info", r_storage_info },
        { "GET", "storage/volume", sim_r_volume_list },
        { "POST", "storage/volume", sim_r_volume_create },
        { "POST", "storage/volume/add", sim_r_volume_add },
        { "DELETE", "storage/volume/delete/*/*/*", sim_r_volume_delete },
        { "POST", "vm/add", sim_r_vm_add },
        { "PUT", "vm/addDevice", sim_r_vm_add_device },
        { "PUT", "vm/delDevice", sim_r_vm_del_device },
        { "DELETE", "vm/delete/*", sim_r_vm_delete },
        { "DELETE", "vm/deleteVm", sim_r_vm_delete_vm },
        { "POST", "vm/*/executeCmd", sim_r_vm_execute_cmd },
        { "GET", "message/*", r_message },
};

/* Matches path segments against a pattern; "*" captures into seg[]. */
static bool match(const char *pattern, char **segs, size_t n, const char **captured)
{
        _cleanup_free_ char *p = strdup(pattern);
        char *save = NULL, *tok;
        size_t i = 0, k = 0;

        if (!p)
                return false;
        for (tok = strtok_r(p, "/", &save); tok; tok = strtok_r(NULL, "/", &save), i++) {
                if (i >= n)
                        return false;
                if (streq(tok, "*")) {
                        if (k < MAX_SEGS)
                                captured[k++] = segs[i];
                } else if (!streq(tok, segs[i])) {
                        return false;
                }
        }
        return i == n;
}

void sim_route(sim_request *req, const char *method, const char *path, const char *body, sim_reply *rep)
{
        _cleanup_free_ char *copy = strdup(path);
        char *segs[MAX_SEGS * 2], *save = NULL, *tok;
        size_t n = 0;
        bool path_known = false;

        rep->status = 404;
        rep->total = -1;
        if (!copy)
                return sim_reply_error(rep, 11, "内部错误。");
        /* "host/" and "host" are the same resource (S4 calls GET host/). */
        for (tok = strtok_r(copy, "/", &save); tok && n < ELEMENTSOF(segs); tok = strtok_r(NULL, "/", &save))
                segs[n++] = tok;
        if (tok)
                return;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                route_ctx c = { .req = req, .m = sim_cfg.model, .body = body, .rep = rep };

                if (!match(routes[i].pattern, segs, n, c.seg))
                        continue;
                path_known = true;
                if (!streq(routes[i].method, method))
                        continue;
                routes[i].fn(&c);
                return;
        }
        rep->status = path_known ? 405 : 404;
}
