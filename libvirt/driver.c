/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * driver.c -- the libvirt/KVM platform driver (libvirt/driver.h).
 */
#include "libvirt/driver.h"

#include <errno.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/util.h"
#include "libvirt/domxml.h"

#define MSG_MAX 1024
#define STATE_POLL_MS 250

struct vb_hv {
        uv_loop_t *loop;
        virConnectPtr conn;
        char *uri;
        char *remote;   /* the URI's host, or NULL for a local URI */
        char *hostname; /* the host's own name: the inventory's single host */
        char *runtime_dir;
        char *user, *password;
        unsigned cvd_port;
        unsigned ops; /* operations in flight */
        bool closing;
};

typedef struct lv_op lv_op;

/* run: on a worker thread, fills the op's answer; end: on the loop, calls
 * the caller back. */
struct lv_op {
        uv_work_t work;
        uv_timer_t timer; /* power: polling the state after a shutdown */
        vb_hv *hv;
        void (*run)(lv_op *o);
        void (*end)(lv_op *o);
        void *cb;
        void *userdata;
        vb_error r;
        char msg[MSG_MAX];

        /* what was asked */
        vb_hv_vm vm;
        char *vm_ref; /* vm_get: name, uuid */
        vb_hv_disk disk;
        char *name, *since, *keep, *drop;
        bool quiesce, with_disks;
        vb_power_op power;
        uint64_t deadline_ns;
        json_t *config;
        char *pool, *subdir, *vol_name, *vol_path, *format, *host_id;
        uint64_t size;
        vb_prealloc prealloc;

        /* the answer */
        vb_hv *new_hv;
        vb_hv_inventory inv;
        vb_hv_vm out_vm;
        vb_hv_snapshot snap;
        vb_hv_disk_source src;
        vb_hv_space space;
        char *space_pool;
        bool valid;
        char *why;
        char *id;
        bool have_vol;
        char *out_path, *out_format, *out_pool;
        bool off; /* power: the domain is shut off */
};

/* ---- messages ---- */

static void vmsg(lv_op *o, vb_error r, const char *vm, const char *fmt, va_list ap)
{
        int n;

        o->r = r;
        if (vm)
                n = snprintf(o->msg, sizeof(o->msg), "libvirt %s: vm %s: ", o->hv->uri, vm);
        else
                n = snprintf(o->msg, sizeof(o->msg), "libvirt %s: ", o->hv->uri);
        if (n >= 0 && (size_t)n < sizeof(o->msg))
                vsnprintf(o->msg + n, sizeof(o->msg) - (size_t)n, fmt, ap);
}

static void _printf_(3, 4) fail(lv_op *o, vb_error r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vmsg(o, r, o->vm.name ?: o->vm_ref, fmt, ap);
        va_end(ap);
}

/* The stable code of libvirt's last error on this thread. */
static vb_error lv_code(void)
{
        virErrorPtr e = virGetLastError();

        if (!e)
                return VB_E_FAILED;
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_NO_STORAGE_POOL:
        case VIR_ERR_NO_STORAGE_VOL:
        case VIR_ERR_NO_DOMAIN_CHECKPOINT:
                return VB_E_NOT_FOUND;
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_AUTH_CANCELLED:
        case VIR_ERR_AUTH_UNAVAILABLE:
                return VB_E_AUTH;
        case VIR_ERR_RPC:
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_SYSTEM_ERROR:
                return VB_E_NETWORK;
        case VIR_ERR_OPERATION_INVALID:
        case VIR_ERR_OPERATION_DENIED:
        case VIR_ERR_OPERATION_UNSUPPORTED:
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_ACCESS_DENIED:
                return VB_E_REFUSED;
        default:
                return VB_E_FAILED;
        }
}

static const char *lv_error(void)
{
        return virGetLastErrorMessage();
}

/* libvirt's failure of the step: code and message from libvirt. */
static void lv_fail(lv_op *o, const char *step)
{
        fail(o, lv_code(), "%s: %s", step, lv_error());
}

static void quiet(void *userdata, virErrorPtr e)
{
        (void)userdata;
        (void)e;
}

/* ---- the op machinery ---- */

static void hv_free(vb_hv *hv)
{
        if (hv->conn)
                virConnectClose(hv->conn);
        free(hv->uri);
        free(hv->remote);
        free(hv->hostname);
        free(hv->runtime_dir);
        free(hv->user);
        if (hv->password)
                explicit_bzero(hv->password, strlen(hv->password));
        free(hv->password);
        free(hv);
}

static void disk_clear(vb_hv_disk *d)
{
        free(d->device);
        free(d->path);
        free(d->format);
        free(d->bus);
        free(d->pool);
        *d = (vb_hv_disk){ 0 };
}

static int disk_copy(const vb_hv_disk *src, vb_hv_disk *dst)
{
        *dst = (vb_hv_disk){ .size = src->size };
#define C(f)                                                                                                           \
        if (src->f && !(dst->f = strdup(src->f)))                                                                      \
                goto oom;
        C(device)
        C(path)
        C(format)
        C(bus)
        C(pool)
#undef C
        return 0;
oom:
        disk_clear(dst);
        return -ENOMEM;
}

static void inventory_clear(vb_hv_inventory *inv)
{
        for (size_t i = 0; i < inv->n_hosts; i++) {
                free(inv->hosts[i].id);
                free(inv->hosts[i].name);
                free(inv->hosts[i].addr_management);
        }
        free(inv->hosts);
        for (size_t i = 0; i < inv->n_vms; i++)
                vb_hv_vm_clear(&inv->vms[i]);
        free(inv->vms);
        *inv = (vb_hv_inventory){ 0 };
}

static void op_free(lv_op *o)
{
        vb_hv *hv = o->hv;

        vb_hv_vm_clear(&o->vm);
        free(o->vm_ref);
        disk_clear(&o->disk);
        free(o->name);
        free(o->since);
        free(o->keep);
        free(o->drop);
        json_decref(o->config);
        free(o->pool);
        free(o->subdir);
        free(o->vol_name);
        free(o->vol_path);
        free(o->format);
        free(o->host_id);
        inventory_clear(&o->inv);
        vb_hv_vm_clear(&o->out_vm);
        vb_hv_snapshot_clear(&o->snap);
        vb_hv_disk_source_clear(&o->src);
        free(o->space_pool);
        free(o->why);
        free(o->id);
        free(o->out_path);
        free(o->out_format);
        free(o->out_pool);
        free(o);
        if (hv && --hv->ops == 0 && hv->closing)
                hv_free(hv);
}

static void work_run(uv_work_t *w)
{
        lv_op *o = w->data;

        o->r = VB_OK;
        o->msg[0] = '\0';
        o->run(o);
}

static void work_end(uv_work_t *w, int status)
{
        lv_op *o = w->data;

        if (status == UV_ECANCELED && o->r == VB_OK)
                fail(o, VB_E_INTERRUPTED, "cancelled");
        o->end(o);
}

static int op_queue(lv_op *o)
{
        o->work.data = o;
        return uv_queue_work(o->hv->loop, &o->work, work_run, work_end);
}

static lv_op *op_new(vb_hv *hv, const vb_hv_vm *vm, void (*run)(lv_op *), void (*end)(lv_op *), void *cb,
                     void *userdata)
{
        lv_op *o = calloc(1, sizeof(*o));

        if (!o)
                return NULL;
        *o = (lv_op){ .hv = hv, .run = run, .end = end, .cb = cb, .userdata = userdata };
        if (vm && vb_hv_vm_copy(vm, &o->vm) < 0) {
                free(o);
                return NULL;
        }
        hv->ops++;
        return o;
}

/* Queues o, or frees it and answers why not. */
static int op_start(lv_op *o)
{
        int k = op_queue(o);

        if (k < 0)
                op_free(o);
        return k;
}

/* ---- domains ---- */

static bool looks_like_uuid(const char *s)
{
        size_t n = 0;

        for (; *s; s++) {
                if (*s == '-')
                        continue;
                if (!strchr("0123456789abcdefABCDEF", *s))
                        return false;
                n++;
        }
        return n == 32;
}

/* The domain o is about: by uuid (the VM's id), else by name. */
static virDomainPtr domain_of(lv_op *o)
{
        const char *ref = o->vm.uuid ?: o->vm.id;
        virDomainPtr d = NULL;

        if (ref && looks_like_uuid(ref))
                d = virDomainLookupByUUIDString(o->hv->conn, ref);
        if (!d && o->vm.name)
                d = virDomainLookupByName(o->hv->conn, o->vm.name);
        if (!d)
                fail(o, VB_E_NOT_FOUND, "no such domain (%s)", lv_error());
        return d;
}

static vb_vm_state state_of(virDomainPtr d)
{
        int st = VIR_DOMAIN_NOSTATE, reason;

        if (virDomainGetState(d, &st, &reason, 0) < 0)
                return VB_VM_UNKNOWN;
        switch (st) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
                return VB_VM_RUNNING;
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED:
                return VB_VM_PAUSED;
        case VIR_DOMAIN_SHUTOFF:
        case VIR_DOMAIN_CRASHED:
                return VB_VM_SHUT_OFF;
        default:
                return VB_VM_UNKNOWN;
        }
}

typedef struct pool_info {
        char *name, *target;
        virStoragePoolPtr p;
} pool_info;

typedef struct pool_list {
        pool_info *v;
        size_t n;
} pool_list;

static void pools_clear(pool_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].name);
                free(l->v[i].target);
                virStoragePoolFree(l->v[i].p);
        }
        free(l->v);
        *l = (pool_list){ 0 };
}

/* The host's active storage pools with a folder (dir, fs, netfs...). */
static int pools_load(virConnectPtr conn, pool_list *l)
{
        virStoragePoolPtr *ps = NULL;
        int n = virConnectListAllStoragePools(conn, &ps, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);

        *l = (pool_list){ 0 };
        if (n < 0)
                return -EIO;
        l->v = calloc((size_t)n + 1, sizeof(*l->v));
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *xml = virStoragePoolGetXMLDesc(ps[i], 0);
                char *type = NULL, *target = NULL, *err = NULL;
                const char *name = virStoragePoolGetName(ps[i]);

                if (!l->v || !xml || lv_pool_parse(xml, &type, &target, &err) < 0 || !target || !name) {
                        free(type);
                        free(target);
                        free(err);
                        virStoragePoolFree(ps[i]);
                        continue;
                }
                free(type);
                l->v[l->n++] = (pool_info){ .name = strdup(name), .target = target, .p = ps[i] };
        }
        free(ps);
        return l->v ? 0 : -ENOMEM;
}

/* The pool whose folder holds path directly. */
static pool_info *pool_holding(pool_list *l, const char *path)
{
        const char *slash = path ? strrchr(path, '/') : NULL;
        size_t dir;

        if (!slash)
                return NULL;
        dir = (size_t)(slash - path);
        for (size_t i = 0; i < l->n; i++) {
                size_t t = strlen(l->v[i].target);

                while (t > 1 && l->v[i].target[t - 1] == '/')
                        t--;
                if (t == dir && strncmp(l->v[i].target, path, dir) == 0)
                        return &l->v[i];
        }
        return NULL;
}

static pool_info *pool_named(pool_list *l, const char *name)
{
        for (size_t i = 0; i < l->n; i++)
                if (streq_ptr(l->v[i].name, name))
                        return &l->v[i];
        return NULL;
}

/* One domain as the interface describes it, with its captured
 * configuration when with_config. pools: for each disk's pool (may be
 * NULL). */
static int domain_read(lv_op *o, virDomainPtr d, pool_list *pools, bool with_config, vb_hv_vm *vm)
{
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, 0);
        _cleanup_free_ char *inactive = NULL;
        _cleanup_free_ char *err = NULL;
        int k;

        if (!xml) {
                lv_fail(o, "reading the domain's XML");
                return -EIO;
        }
        k = lv_domain_parse(xml, vm, &err);
        if (k < 0) {
                fail(o, VB_E_PROTOCOL, "its XML: %s", err ?: strerror(-k));
                return k;
        }
        vm->state = state_of(d);
        if (o->hv->hostname && !(vm->host_id = strdup(o->hv->hostname)))
                return -ENOMEM;
        for (size_t i = 0; i < vm->n_disks; i++) {
                vb_hv_disk *disk = &vm->disks[i];
                virDomainBlockInfo bi;
                pool_info *p = pools ? pool_holding(pools, disk->path) : NULL;

                if (p && !disk->pool && !(disk->pool = strdup(p->name)))
                        return -ENOMEM;
                if (disk->path && virDomainGetBlockInfo(d, disk->path, &bi, 0) == 0)
                        disk->size = bi.capacity;
        }
        if (!with_config)
                return 0;
        /* A restore recreates the persistent definition, not the running one. */
        if (virDomainIsPersistent(d) == 1)
                inactive = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
        vm->config = lv_config_capture(inactive ?: xml, vm);
        return vm->config ? 0 : -ENOMEM;
}

/* ---- connect ---- */

static int auth_cb(virConnectCredentialPtr cred, unsigned int ncred, void *cbdata)
{
        vb_hv *hv = cbdata;

        for (unsigned i = 0; i < ncred; i++) {
                const char *v = NULL;

                if (cred[i].type == VIR_CRED_AUTHNAME)
                        v = hv->user;
                else if (cred[i].type == VIR_CRED_PASSPHRASE || cred[i].type == VIR_CRED_NOECHOPROMPT)
                        v = hv->password;
                if (!v)
                        return -1;
                cred[i].result = strdup(v);
                if (!cred[i].result)
                        return -1;
                cred[i].resultlen = (unsigned)strlen(v);
        }
        return 0;
}

static void connect_run(lv_op *o)
{
        static int creds[] = { VIR_CRED_AUTHNAME, VIR_CRED_PASSPHRASE, VIR_CRED_NOECHOPROMPT };
        virConnectAuth auth = { creds, ELEMENTSOF(creds), auth_cb, o->new_hv };
        vb_hv *hv = o->new_hv;
        char *name;

        virSetErrorFunc(NULL, quiet);
        hv->conn = virConnectOpenAuth(hv->uri, &auth, 0);
        if (!hv->conn)
                return fail(o, lv_code() == VB_E_FAILED ? VB_E_NETWORK : lv_code(), "connecting: %s", lv_error());
        name = virConnectGetHostname(hv->conn);
        hv->hostname = name ? name : strdup(hv->remote ?: "localhost");
        if (!hv->hostname)
                fail(o, VB_E_FAILED, "%s", strerror(ENOMEM));
}

static void connect_end(lv_op *o)
{
        vb_hv_connect_fn done = (vb_hv_connect_fn)o->cb;
        vb_hv *hv = TAKE_PTR(o->new_hv);

        /* The op does not count: the caller gets hv only now. */
        hv->ops--;
        o->hv = NULL;

        if (o->r != VB_OK) {
                done(o->userdata, o->r, o->msg, NULL);
                hv_free(hv);
        } else {
                done(o->userdata, VB_OK, "", hv);
        }
        op_free(o);
}

/* The URI's host ("qemu+ssh://root@kvm1:22/system" -> kvm1), or NULL for a
 * local one ("qemu:///system"). */
static int uri_host(const char *uri, char **ret)
{
        const char *p = strstr(uri, "://"), *end;

        *ret = NULL;
        if (!p)
                return -EINVAL;
        p += 3;
        end = p + strcspn(p, "/?");
        if (memchr(p, '@', (size_t)(end - p)))
                p = (const char *)memchr(p, '@', (size_t)(end - p)) + 1;
        if (p == end)
                return 0;
        if (*p == '[') {
                const char *close = memchr(p, ']', (size_t)(end - p));

                if (!close)
                        return -EINVAL;
                *ret = strndup(p + 1, (size_t)(close - p - 1));
        } else {
                const char *colon = memchr(p, ':', (size_t)(end - p));

                *ret = strndup(p, (size_t)((colon ?: end) - p));
        }
        return *ret ? 0 : -ENOMEM;
}

static int lv_connect(uv_loop_t *loop, const vb_hv_opts *o, vb_hv_connect_fn done, void *userdata)
{
        vb_hv *hv;
        lv_op *op;
        int k;

        if (!o->address || !strstr(o->address, "://"))
                return -EINVAL;
        hv = calloc(1, sizeof(*hv));
        if (!hv)
                return -ENOMEM;
        hv->loop = loop;
        hv->cvd_port = o->cvd_port ?: LV_CVD_PORT_DEFAULT;
        hv->uri = strdup(o->address);
        hv->runtime_dir = strdup(o->runtime_dir ?: "/run/vbak");
        k = uri_host(o->address, &hv->remote);
        if ((o->user && !(hv->user = strdup(o->user))) || (o->password && !(hv->password = strdup(o->password))) ||
            !hv->uri || !hv->runtime_dir || k == -ENOMEM) {
                hv_free(hv);
                return -ENOMEM;
        }
        if (k < 0) {
                hv_free(hv);
                return k;
        }
        op = op_new(hv, NULL, connect_run, connect_end, (void *)done, userdata);
        if (!op) {
                hv_free(hv);
                return -ENOMEM;
        }
        op->new_hv = hv;
        k = op_queue(op);
        if (k < 0) {
                op->hv = NULL;
                op_free(op);
                hv_free(hv);
        }
        return k;
}

static void lv_disconnect(vb_hv *hv)
{
        if (!hv)
                return;
        hv->closing = true;
        if (hv->ops == 0)
                hv_free(hv);
}

/* ---- inventory, vm_get ---- */

static void inventory_run(lv_op *o)
{
        virDomainPtr *doms = NULL;
        pool_list pools;
        int n;

        n = virConnectListAllDomains(o->hv->conn, &doms, 0);
        if (n < 0)
                return lv_fail(o, "listing domains");
        (void)pools_load(o->hv->conn, &pools);
        o->inv.hosts = calloc(1, sizeof(*o->inv.hosts));
        o->inv.vms = calloc((size_t)n + 1, sizeof(*o->inv.vms));
        if (!o->inv.hosts || !o->inv.vms)
                goto oom;
        o->inv.hosts[0] = (vb_hv_host){ .id = strdup(o->hv->hostname),
                                        .name = strdup(o->hv->hostname),
                                        .addr_management = strdup(o->hv->remote ?: "127.0.0.1"),
                                        .up = true };
        o->inv.n_hosts = 1;
        if (!o->inv.hosts[0].id || !o->inv.hosts[0].name || !o->inv.hosts[0].addr_management)
                goto oom;
        for (int i = 0; i < n && o->r == VB_OK; i++) {
                vb_hv_vm *vm = &o->inv.vms[o->inv.n_vms];

                if (domain_read(o, doms[i], &pools, false, vm) == 0) {
                        o->inv.n_vms++;
                        continue;
                }
                /* A domain that went away while listing is simply not there. */
                vb_hv_vm_clear(vm);
                if (o->r == VB_OK)
                        fail(o, VB_E_FAILED, "inventory: %s", strerror(ENOMEM));
                else if (o->r == VB_E_NOT_FOUND)
                        o->r = VB_OK;
        }
        goto out;
oom:
        fail(o, VB_E_FAILED, "inventory: %s", strerror(ENOMEM));
out:
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
        pools_clear(&pools);
}

static void inventory_end(lv_op *o)
{
        vb_hv_inventory_fn done = (vb_hv_inventory_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->r == VB_OK ? &o->inv : NULL);
        op_free(o);
}

static int lv_inventory(vb_hv *hv, vb_hv_inventory_fn done, void *userdata)
{
        lv_op *o = op_new(hv, NULL, inventory_run, inventory_end, (void *)done, userdata);

        return o ? op_start(o) : -ENOMEM;
}

static void vm_get_run(lv_op *o)
{
        virDomainPtr d = NULL;
        pool_list pools;

        if (looks_like_uuid(o->vm_ref))
                d = virDomainLookupByUUIDString(o->hv->conn, o->vm_ref);
        if (!d)
                d = virDomainLookupByName(o->hv->conn, o->vm_ref);
        if (!d)
                return fail(o, VB_E_NOT_FOUND, "no such domain (%s)", lv_error());
        (void)pools_load(o->hv->conn, &pools);
        if (domain_read(o, d, &pools, true, &o->out_vm) < 0 && o->r == VB_OK)
                fail(o, VB_E_FAILED, "reading it: %s", strerror(ENOMEM));
        pools_clear(&pools);
        virDomainFree(d);
}

static void vm_end(lv_op *o)
{
        vb_hv_vm_fn done = (vb_hv_vm_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->r == VB_OK ? &o->out_vm : NULL);
        op_free(o);
}

static int lv_vm_get(vb_hv *hv, const char *vm, vb_hv_vm_fn done, void *userdata)
{
        lv_op *o;

        if (!vm || !*vm)
                return -EINVAL;
        o = op_new(hv, NULL, vm_get_run, vm_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        o->vm_ref = strdup(vm);
        if (!o->vm_ref) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* ---- storage_free, cbt_check ---- */

static void space_run(lv_op *o)
{
        pool_list pools;

        if (pools_load(o->hv->conn, &pools) < 0)
                return lv_fail(o, "listing storage pools");
        for (size_t i = 0; i < o->vm.n_disks; i++) {
                const vb_hv_disk *disk = &o->vm.disks[i];
                pool_info *p = disk->pool ? pool_named(&pools, disk->pool) : pool_holding(&pools, disk->path);
                virStoragePoolInfo info;

                if (!p || virStoragePoolRefresh(p->p, 0) < 0 || virStoragePoolGetInfo(p->p, &info) < 0)
                        continue;
                if (!o->space_pool || info.available < o->space.free) {
                        free(o->space_pool);
                        o->space_pool = strdup(p->name);
                        o->space.free = info.available;
                        o->space.total = info.capacity;
                }
        }
        pools_clear(&pools);
}

static void space_end(lv_op *o)
{
        vb_hv_space_fn done = (vb_hv_space_fn)o->cb;

        o->space.pool = o->space_pool;
        /* Disks in no storage pool of the host: nothing to check. */
        done(o->userdata, o->r, o->msg, o->r == VB_OK && o->space_pool ? &o->space : NULL);
        op_free(o);
}

static int lv_storage_free(vb_hv *hv, const vb_hv_vm *vm, vb_hv_space_fn done, void *userdata)
{
        lv_op *o = op_new(hv, vm, space_run, space_end, (void *)done, userdata);

        return o ? op_start(o) : -ENOMEM;
}

static void cbt_run(lv_op *o)
{
        o->valid = true;
        for (size_t i = 0; i < o->vm.n_disks; i++) {
                if (streq_ptr(o->vm.disks[i].format, "qcow2"))
                        continue;
                o->valid = false;
                if (asprintf(&o->why, "disk %s is %s: only qcow2 disks have checkpoints", o->vm.disks[i].device,
                             o->vm.disks[i].format ?: "raw") < 0)
                        o->why = NULL;
                return;
        }
}

static void cbt_end(lv_op *o)
{
        vb_hv_cbt_fn done = (vb_hv_cbt_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->valid, o->why);
        op_free(o);
}

static int lv_cbt_check(vb_hv *hv, const vb_hv_vm *vm, vb_hv_cbt_fn done, void *userdata)
{
        lv_op *o = op_new(hv, vm, cbt_run, cbt_end, (void *)done, userdata);

        return o ? op_start(o) : -ENOMEM;
}

/* ---- backups: the pull-mode job is the snapshot ---- */

static bool is_qcow2(const vb_hv_disk *d)
{
        return streq_ptr(d->format, "qcow2");
}

/* Where libvirt keeps a disk's point-in-time copy while the job runs:
 * beside the disk, as the folder has room for the disk's own growth. */
static char *scratch_path(const char *disk_path, const char *snapshot)
{
        char *p;

        return asprintf(&p, "%s.%s.scratch", disk_path, snapshot) < 0 ? NULL : p;
}

static char *socket_path(vb_hv *hv, const char *snapshot)
{
        char *p;

        return asprintf(&p, "%s/%s.nbd", hv->runtime_dir, snapshot) < 0 ? NULL : p;
}

/* Begins the pull-mode backup of every disk, incremental since `since`
 * when given; the checkpoint o->name is created with it. */
static int backup_begin(lv_op *o, virDomainPtr d, const char *since, char **err)
{
        size_t n = o->vm.n_disks;
        lv_backup_disk *bd = calloc(n + 1, sizeof(*bd));
        const char **bitmaps = calloc(n + 1, sizeof(*bitmaps)), **none = calloc(n + 1, sizeof(*none));
        char **scratch = calloc(n + 1, sizeof(*scratch));
        _cleanup_free_ char *sock = NULL, *bxml = NULL, *cxml = NULL;
        size_t nb = 0, nn = 0;
        unsigned port = 0;
        int k = -ENOMEM;

        if (!bd || !bitmaps || !none || !scratch)
                goto out;
        for (size_t i = 0; i < n; i++) {
                const vb_hv_disk *disk = &o->vm.disks[i];

                if (!disk->path) {
                        /* Only files are read through the job. */
                        bd[i] = (lv_backup_disk){ .device = disk->device, .skip = true };
                        none[nn++] = disk->device;
                        continue;
                }
                scratch[i] = scratch_path(disk->path, o->name);
                if (!scratch[i])
                        goto out;
                bd[i] = (lv_backup_disk){ .device = disk->device,
                                          .since = is_qcow2(disk) ? since : NULL,
                                          .scratch = scratch[i] };
                if (is_qcow2(disk))
                        bitmaps[nb++] = disk->device;
                else
                        none[nn++] = disk->device;
        }
        if (o->hv->remote) {
                port = LV_NBD_PORT_MIN + (unsigned)(random() % LV_NBD_PORT_SPAN);
        } else {
                (void)mkdir(o->hv->runtime_dir, 0700);
                sock = socket_path(o->hv, o->name);
                if (!sock)
                        goto out;
                (void)unlink(sock);
        }
        bxml = lv_backup_xml(sock, o->hv->remote, port, bd, n);
        cxml = lv_checkpoint_xml(o->name, bitmaps, nb, none, nn, NULL, 0);
        if (!bxml || !cxml)
                goto out;
        k = virDomainBackupBegin(d, bxml, nb > 0 ? cxml : NULL, 0) < 0 ? -EIO : 0;
        if (k < 0)
                *err = strdup(lv_error());
out:
        for (size_t i = 0; scratch && i < n; i++)
                free(scratch[i]);
        free(scratch);
        free(bd);
        free(bitmaps);
        free(none);
        return k;
}

static void snapshot_note(lv_op *o, const char *fmt, ...) _printf_(2, 3);
static void snapshot_note(lv_op *o, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (o->snap.note)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) >= 0)
                o->snap.note = s;
        va_end(ap);
}

static void snapshot_run(lv_op *o)
{
        _cleanup_free_ char *err = NULL;
        virDomainPtr d = domain_of(o);
        const char *since = o->since;
        bool frozen = false;
        vb_vm_state st;
        int k;

        if (!d)
                return;
        o->snap.name = strdup(o->name);
        o->snap.type = VB_SNAPSHOT_EXTERNAL;
        if (!o->snap.name) {
                fail(o, VB_E_FAILED, "snapshot: %s", strerror(ENOMEM));
                goto out;
        }
        st = state_of(d);
        if (st != VB_VM_RUNNING && st != VB_VM_PAUSED) {
                /* Nothing changes a shut-off domain's files: they are read
                 * as they are, and the disk service makes the checkpoint. */
                o->snap.quiesced = true;
                goto out;
        }
        if (since) {
                virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(d, since, 0);

                if (!cp) {
                        snapshot_note(o, "checkpoint %s is not on the domain: reading all allocated data", since);
                        since = NULL;
                }
                virDomainCheckpointFree(cp);
        }
        if (o->quiesce) {
                if (virDomainFSFreeze(d, NULL, 0, 0) >= 0)
                        frozen = true;
                else
                        snapshot_note(o, "the guest agent did not freeze the file systems (%s): crash-consistent",
                                      lv_error());
        }
        k = backup_begin(o, d, since, &err);
        if (k < 0 && since && err) {
                /* A disk replaced since the checkpoint has no bitmap of it. */
                snapshot_note(o,
                              "an incremental backup since checkpoint %s was refused (%s): reading all allocated data",
                              since, err);
                free(TAKE_PTR(err));
                k = backup_begin(o, d, NULL, &err);
        }
        if (k < 0)
                fail(o, k == -ENOMEM ? VB_E_FAILED : VB_E_SOURCE, "beginning the backup job: %s", err ?: strerror(-k));
        if (frozen && virDomainFSThaw(d, NULL, 0, 0) < 0)
                snapshot_note(o, "thawing the guest's file systems failed: %s", lv_error());
        o->snap.quiesced = frozen;
out:
        virDomainFree(d);
}

static void snapshot_end(lv_op *o)
{
        vb_hv_snapshot_fn done = (vb_hv_snapshot_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->r == VB_OK ? &o->snap : NULL);
        op_free(o);
}

static int lv_snapshot_create(vb_hv *hv, const vb_hv_vm *vm, vb_snapshot_type type, bool quiesce, const char *name,
                              const char *since, vb_hv_snapshot_fn done, void *userdata)
{
        _cleanup_free_ char *picked = NULL;
        lv_op *o;

        (void)type; /* a pull-mode job is neither: the checkpoint makes incrementals */
        if (!name) {
                if (vb_hv_snapshot_name(&picked) < 0)
                        return -ENOMEM;
                name = picked;
        }
        o = op_new(hv, vm, snapshot_run, snapshot_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        o->quiesce = quiesce;
        o->name = strdup(name);
        if (!o->name || (since && !(o->since = strdup(since)))) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* The domain's backup job when it is the one of snapshot `name`. */
static int job_of(virDomainPtr d, const char *name, lv_backup_info *info)
{
        _cleanup_free_ char *xml = virDomainBackupGetXMLDesc(d, 0);
        _cleanup_free_ char *err = NULL;
        bool ours = false;

        *info = (lv_backup_info){ 0 };
        if (!xml || lv_backup_parse(xml, info, &err) < 0)
                return -ENOENT;
        for (size_t i = 0; i < info->n_disks; i++)
                if (info->disks[i].scratch && strstr(info->disks[i].scratch, name))
                        ours = true;
        if (!ours) {
                lv_backup_info_clear(info);
                return -ENOENT;
        }
        return 0;
}

static void snapshot_delete_run(lv_op *o)
{
        virDomainPtr d = domain_of(o);
        lv_backup_info info;

        if (!d) {
                /* Gone with the domain. */
                o->r = VB_OK;
                return;
        }
        if (job_of(d, o->name, &info) == 0) {
                lv_backup_info_clear(&info);
                /* A job that ended by itself meanwhile is as good. */
                if (virDomainAbortJob(d) < 0 && job_of(d, o->name, &info) == 0) {
                        lv_fail(o, "ending the backup job");
                        lv_backup_info_clear(&info);
                }
        }
        if (!o->hv->remote) {
                _cleanup_free_ char *sock = socket_path(o->hv, o->name);

                if (sock)
                        (void)unlink(sock);
        }
        virDomainFree(d);
}

static void done_end(lv_op *o)
{
        vb_hv_done_fn done = (vb_hv_done_fn)o->cb;

        done(o->userdata, o->r, o->msg);
        op_free(o);
}

static int lv_snapshot_delete(vb_hv *hv, const vb_hv_vm *vm, const char *name, vb_hv_done_fn done, void *userdata)
{
        lv_op *o;

        if (!name)
                return -EINVAL;
        o = op_new(hv, vm, snapshot_delete_run, done_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        o->name = strdup(name);
        if (!o->name) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* cvd://HOST:PORT/VM/PATH on the domain's host: the disk service's names
 * allow letters, digits, '.', '_' and '-' only. */
static char *cvd_url(vb_hv *hv, const char *vm, const char *path)
{
        const char *host = hv->remote ?: "127.0.0.1";
        bool v6 = strchr(host, ':') != NULL;
        char name[65];
        size_t n = 0;
        char *url;

        for (const char *s = vm ?: "restore"; *s && n < sizeof(name) - 1; s++)
                name[n++] =
                        (strchr("._-", *s) || (*s >= '0' && *s <= '9') || ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z'))
                                ? *s
                                : '_';
        name[n] = '\0';
        if (asprintf(&url, "cvd://%s%s%s:%u/%s%s", v6 ? "[" : "", host, v6 ? "]" : "", hv->cvd_port, name, path) < 0)
                return NULL;
        return url;
}

static void source_run(lv_op *o)
{
        virDomainPtr d = domain_of(o);
        const lv_backup_export *e;
        lv_backup_info info;
        bool oom = false;

        if (!d)
                return;
        if (!o->disk.path) {
                fail(o, VB_E_SOURCE, "disk %s is not a file: it cannot be read", o->disk.device);
                goto out;
        }
        if (job_of(d, o->name, &info) < 0) {
                /* Shut off at the snapshot: the files, through the disk service. */
                o->src.url = cvd_url(o->hv, o->vm.uuid ?: o->vm.name, o->disk.path);
                if (is_qcow2(&o->disk)) {
                        if (o->since && !(o->src.since = strdup(o->since)))
                                oom = true;
                        if (!(o->src.checkpoint = strdup(o->name)))
                                oom = true;
                }
                if (!o->src.url || oom)
                        fail(o, VB_E_FAILED, "disk %s: %s", o->disk.device, strerror(ENOMEM));
                goto out;
        }
        e = lv_backup_find(&info, o->disk.device);
        if (!e) {
                fail(o, VB_E_SOURCE, "disk %s is not in backup job %s", o->disk.device, o->name);
        } else {
                int k = info.socket ? asprintf(&o->src.url, "nbd+unix:///%s?socket=%s", e->export_name, info.socket)
                                    : asprintf(&o->src.url, "nbd://%s%s%s:%u/%s", strchr(info.host, ':') ? "[" : "",
                                               info.host, strchr(info.host, ':') ? "]" : "", info.port, e->export_name);

                if (k < 0)
                        o->src.url = NULL;
                if (e->bitmap && !(o->src.since = strdup(e->bitmap)))
                        oom = true;
                if (!(o->src.checkpoint = strdup(o->name)))
                        oom = true;
                if (!o->src.url || oom)
                        fail(o, VB_E_FAILED, "disk %s: %s", o->disk.device, strerror(ENOMEM));
        }
        lv_backup_info_clear(&info);
out:
        virDomainFree(d);
}

static void source_end(lv_op *o)
{
        vb_hv_source_fn done = (vb_hv_source_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->r == VB_OK ? &o->src : NULL);
        op_free(o);
}

static int lv_disk_source(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, const vb_hv_snapshot *s,
                          const char *since, vb_hv_source_fn done, void *userdata)
{
        lv_op *o;

        if (!s || !s->name || !disk->device)
                return -EINVAL;
        o = op_new(hv, vm, source_run, source_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        if (disk_copy(disk, &o->disk) < 0 || !(o->name = strdup(s->name)) || (since && !(o->since = strdup(since)))) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* A restore writes through the disk service, whatever the domain. */
static void target_end(lv_op *o)
{
        vb_hv_source_fn done = (vb_hv_source_fn)o->cb;

        o->src.url = cvd_url(o->hv, o->vm.name ?: o->vm.uuid, o->disk.path);
        if (!o->src.url)
                fail(o, VB_E_FAILED, "disk %s: %s", o->disk.device ?: o->disk.path, strerror(ENOMEM));
        done(o->userdata, o->r, o->msg, o->r == VB_OK ? &o->src : NULL);
        op_free(o);
}

static void nothing_run(lv_op *o)
{
        (void)o;
}

static int lv_disk_target(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_source_fn done, void *userdata)
{
        lv_op *o;

        if (!disk->path || disk->path[0] != '/')
                return -EINVAL;
        o = op_new(hv, vm, nothing_run, target_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        if (disk_copy(disk, &o->disk) < 0) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* ---- checkpoints ---- */

/* The newest checkpoint of the domain other than `but`, or NULL. */
static char *newest_checkpoint(virDomainPtr d, const char *but, time_t *when)
{
        virDomainCheckpointPtr *cps = NULL;
        int n = virDomainListAllCheckpoints(d, &cps, 0);
        char *best = NULL;
        time_t best_t = 0;

        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *xml = virDomainCheckpointGetXMLDesc(cps[i], VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
                const char *name = virDomainCheckpointGetName(cps[i]);
                const char *ct = xml ? strstr(xml, "<creationTime>") : NULL;
                time_t t = ct ? (time_t)strtoll(ct + strlen("<creationTime>"), NULL, 10) : 0;

                if (name && !streq_ptr(name, but) && (!best || t >= best_t)) {
                        free(best);
                        best = strdup(name);
                        best_t = t;
                }
                virDomainCheckpointFree(cps[i]);
        }
        free(cps);
        *when = best_t;
        return best;
}

/* A checkpoint whose bitmaps the disk service made on the shut-off
 * domain's files: libvirt learns of it, after the newest it knows. */
static void checkpoint_redefine(lv_op *o, virDomainPtr d, const char *name)
{
        size_t n = o->vm.n_disks, nb = 0, nn = 0;
        const char **bitmaps = calloc(n + 1, sizeof(*bitmaps)), **none = calloc(n + 1, sizeof(*none));
        _cleanup_free_ char *xml = NULL, *parent = NULL;
        virDomainCheckpointPtr cp;
        time_t t;

        if (!bitmaps || !none)
                goto out;
        for (size_t i = 0; i < n; i++) {
                if (is_qcow2(&o->vm.disks[i]))
                        bitmaps[nb++] = o->vm.disks[i].device;
                else
                        none[nn++] = o->vm.disks[i].device;
        }
        parent = newest_checkpoint(d, name, &t);
        t = MAX(time(NULL), t + 1);
        xml = lv_checkpoint_xml(name, bitmaps, nb, none, nn, parent, t);
        if (!xml)
                goto out;
        cp = virDomainCheckpointCreateXML(d, xml, VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE);
        if (!cp)
                lv_fail(o, "recording checkpoint");
        virDomainCheckpointFree(cp);
out:
        free(bitmaps);
        free(none);
}

static void checkpoint_commit_run(lv_op *o)
{
        virDomainPtr d = domain_of(o);
        virDomainCheckpointPtr cp;
        bool active;

        if (!d)
                return;
        active = virDomainIsActive(d) == 1;
        if (o->keep) {
                cp = virDomainCheckpointLookupByName(d, o->keep, 0);
                if (!cp)
                        checkpoint_redefine(o, d, o->keep);
                virDomainCheckpointFree(cp);
        }
        if (o->drop && (cp = virDomainCheckpointLookupByName(d, o->drop, 0))) {
                /* Offline, libvirt cannot remove bitmaps; the disk service
                 * removed the parent's when the restore point was committed. */
                if (virDomainCheckpointDelete(cp, active ? 0 : VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0 &&
                    o->r == VB_OK)
                        fail(o, lv_code(), "removing checkpoint %s: %s", o->drop, lv_error());
                virDomainCheckpointFree(cp);
        }
        virDomainFree(d);
}

static int lv_checkpoint_commit(vb_hv *hv, const vb_hv_vm *vm, const char *keep, const char *drop, vb_hv_done_fn done,
                                void *userdata)
{
        lv_op *o = op_new(hv, vm, checkpoint_commit_run, done_end, (void *)done, userdata);

        if (!o)
                return -ENOMEM;
        if ((keep && !(o->keep = strdup(keep))) || (drop && !(o->drop = strdup(drop)))) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

/* ---- power ---- */

static void power_run(lv_op *o)
{
        virDomainPtr d = domain_of(o);
        vb_vm_state st;

        if (!d)
                return;
        st = state_of(d);
        switch (o->power) {
        case VB_POWER_START:
                if (st == VB_VM_PAUSED) {
                        if (virDomainResume(d) < 0)
                                lv_fail(o, "resume");
                } else if (st != VB_VM_RUNNING && virDomainCreate(d) < 0) {
                        lv_fail(o, "start");
                }
                break;
        case VB_POWER_SHUTDOWN:
                o->off = st == VB_VM_SHUT_OFF;
                /* Asked once; the loop then polls the state. */
                if (!o->off && o->deadline_ns == 0 && virDomainShutdown(d) < 0)
                        lv_fail(o, "shutdown");
                break;
        case VB_POWER_OFF:
                if (st != VB_VM_SHUT_OFF && virDomainDestroy(d) < 0)
                        lv_fail(o, "power off");
                break;
        }
        virDomainFree(d);
}

static void power_timer_closed(uv_handle_t *h)
{
        lv_op *o = h->data;

        done_end(o);
}

static void power_poll(uv_timer_t *t)
{
        lv_op *o = t->data;

        if (op_queue(o) < 0) {
                fail(o, VB_E_FAILED, "shutdown: polling its state failed");
                uv_close((uv_handle_t *)&o->timer, power_timer_closed);
        }
}

static void power_end(lv_op *o)
{
        bool polling = o->deadline_ns != 0;

        if (o->power != VB_POWER_SHUTDOWN || o->r != VB_OK || o->off) {
                if (!polling)
                        return done_end(o);
                return uv_close((uv_handle_t *)&o->timer, power_timer_closed);
        }
        if (!polling) {
                o->deadline_ns = vb_now_ns() + LV_SHUTDOWN_TIMEOUT_MS * 1000000ull;
                uv_timer_init(o->hv->loop, &o->timer);
                o->timer.data = o;
        } else if (vb_now_ns() > o->deadline_ns) {
                fail(o, VB_E_REFUSED, "shutdown: still running after %u s", LV_SHUTDOWN_TIMEOUT_MS / 1000);
                return uv_close((uv_handle_t *)&o->timer, power_timer_closed);
        }
        uv_timer_start(&o->timer, power_poll, STATE_POLL_MS, 0);
}

static int lv_power(vb_hv *hv, const vb_hv_vm *vm, vb_power_op op, vb_hv_done_fn done, void *userdata)
{
        lv_op *o;

        if ((unsigned)op > VB_POWER_OFF)
                return -EINVAL;
        o = op_new(hv, vm, power_run, power_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        o->power = op;
        return op_start(o);
}

/* ---- the restore side ---- */

static void vm_create_run(lv_op *o)
{
        const char *xml = lv_config_xml(o->config);
        char uuid[VIR_UUID_STRING_BUFLEN];
        virDomainPtr d;

        if (!xml)
                return fail(o, VB_E_USAGE, "defining the domain: the configuration has no XML");
        d = virDomainDefineXML(o->hv->conn, xml);
        if (!d)
                return lv_fail(o, "defining the domain");
        if (virDomainGetUUIDString(d, uuid) < 0 || !(o->id = strdup(uuid)))
                fail(o, VB_E_FAILED, "defining the domain: %s", lv_error());
        virDomainFree(d);
}

static void id_end(lv_op *o)
{
        vb_hv_id_fn done = (vb_hv_id_fn)o->cb;

        done(o->userdata, o->r, o->msg, o->r == VB_OK ? o->id : NULL);
        op_free(o);
}

static int lv_vm_create(vb_hv *hv, json_t *config, vb_hv_id_fn done, void *userdata)
{
        lv_op *o;

        if (!lv_config_xml(config))
                return -EINVAL;
        o = op_new(hv, NULL, vm_create_run, id_end, (void *)done, userdata);
        if (!o)
                return -ENOMEM;
        o->config = json_incref(config);
        return op_start(o);
}

/* The pool of a volume: by name, or the one holding the path's folder. */
static pool_info *volume_pool(lv_op *o, pool_list *pools)
{
        pool_info *p;

        if (pools_load(o->hv->conn, pools) < 0) {
                lv_fail(o, "listing storage pools");
                return NULL;
        }
        p = o->vol_path ? pool_holding(pools, o->vol_path) : pool_named(pools, o->pool);
        if (!p && o->vol_path) {
                const char *slash = strrchr(o->vol_path, '/');

                fail(o, VB_E_NOT_FOUND,
                     "no active storage pool of host %s holds folder %.*s (define one: virsh pool-define-as NAME dir "
                     "--target %.*s)",
                     o->hv->hostname, (int)(slash - o->vol_path), o->vol_path, (int)(slash - o->vol_path), o->vol_path);
        } else if (!p) {
                fail(o, VB_E_NOT_FOUND, "no active storage pool %s on host %s", o->pool ?: "?", o->hv->hostname);
        } else if (virStoragePoolRefresh(p->p, 0) < 0) {
                lv_fail(o, "refreshing storage pool");
                p = NULL;
        }
        return p;
}

static void volume_create_run(lv_op *o)
{
        const char *name = o->vol_path ? strrchr(o->vol_path, '/') + 1 : o->vol_name;
        _cleanup_free_ char *xml = NULL;
        virStorageVolPtr v;
        pool_list pools;
        pool_info *p;
        unsigned flags = 0;

        if (o->subdir && *o->subdir)
                return fail(o, VB_E_USAGE, "volume %s: libvirt storage pools have no sub-directories (%s)", name,
                            o->subdir);
        p = volume_pool(o, &pools);
        if (!p)
                goto out;
        v = virStorageVolLookupByName(p->p, name);
        if (v) {
                virStorageVolFree(v);
                fail(o, VB_E_EXISTS, "volume %s exists in storage pool %s", name, p->name);
                goto out;
        }
        xml = lv_volume_xml(name, o->format ?: "qcow2", o->size, o->prealloc);
        if (o->prealloc == VB_PREALLOC_LAZY && streq_ptr(o->format ?: "qcow2", "qcow2"))
                flags |= VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA;
        v = xml ? virStorageVolCreateXML(p->p, xml, flags) : NULL;
        if (!v) {
                fail(o, lv_code(), "creating volume %s in storage pool %s: %s", name, p->name,
                     xml ? lv_error() : strerror(ENOMEM));
                goto out;
        }
        o->id = virStorageVolGetPath(v);
        if (!o->id)
                lv_fail(o, "the new volume's path");
        virStorageVolFree(v);
out:
        pools_clear(&pools);
}

static int volume_op(vb_hv *hv, const vb_hv_volume *v, void (*run)(lv_op *), void (*end)(lv_op *), void *cb,
                     void *userdata)
{
        lv_op *o = op_new(hv, NULL, run, end, cb, userdata);
        bool oom = false;

        if (!o)
                return -ENOMEM;
#define DUP(dst, src)                                                                                                  \
        if ((src) && !((dst) = strdup(src)))                                                                           \
                oom = true;
        DUP(o->pool, v->pool)
        DUP(o->subdir, v->subdir)
        DUP(o->vol_name, v->name)
        DUP(o->vol_path, v->path)
        DUP(o->format, v->format)
        DUP(o->host_id, v->host_id)
#undef DUP
        o->size = v->size;
        o->prealloc = v->prealloc;
        if (oom) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

static int lv_volume_create(vb_hv *hv, const vb_hv_volume *v, vb_hv_id_fn done, void *userdata)
{
        if (v->path ? v->path[0] != '/' || !strrchr(v->path, '/')[1]
                    : !v->pool || !v->name || !*v->name || strchr(v->name, '/'))
                return -EINVAL;
        return volume_op(hv, v, volume_create_run, id_end, (void *)done, userdata);
}

static void volume_stat_run(lv_op *o)
{
        _cleanup_free_ char *xml = NULL, *err = NULL;
        virStorageVolPtr v = NULL;
        pool_list pools;
        pool_info *p;
        uint64_t cap = 0;
        int k;

        if (o->subdir && *o->subdir) {
                o->have_vol = false;
                return;
        }
        p = volume_pool(o, &pools);
        if (!p) {
                /* No pool holds it: as far as libvirt knows, there is none. */
                if (o->r == VB_E_NOT_FOUND)
                        o->r = VB_OK;
                goto out;
        }
        v = virStorageVolLookupByName(p->p, o->vol_path ? strrchr(o->vol_path, '/') + 1 : o->vol_name);
        if (!v)
                goto out;
        xml = virStorageVolGetXMLDesc(v, 0);
        k = xml ? lv_volume_parse(xml, &o->out_path, &o->out_format, &cap, &err) : -EIO;
        if (k < 0) {
                fail(o, VB_E_PROTOCOL, "volume %s: %s", o->vol_path ?: o->vol_name, err ?: lv_error());
                goto out;
        }
        o->size = cap;
        o->have_vol = true;
        o->out_pool = strdup(p->name);
out:
        virStorageVolFree(v);
        pools_clear(&pools);
}

static void volume_end(lv_op *o)
{
        vb_hv_volume_fn done = (vb_hv_volume_fn)o->cb;
        vb_hv_volume v = { .host_id = o->host_id,
                           .pool = o->out_pool,
                           .name = o->out_path ? strrchr(o->out_path, '/') + 1 : NULL,
                           .path = o->out_path,
                           .format = o->out_format,
                           .size = o->size };

        done(o->userdata, o->r, o->msg, o->r == VB_OK && o->have_vol ? &v : NULL);
        op_free(o);
}

static int lv_volume_stat(vb_hv *hv, const vb_hv_volume *v, vb_hv_volume_fn done, void *userdata)
{
        if (v->path ? v->path[0] != '/' : !v->pool || !v->name)
                return -EINVAL;
        return volume_op(hv, v, volume_stat_run, volume_end, (void *)done, userdata);
}

/* The first free target of the bus's kind: vda, vdb... for virtio, sdX for
 * scsi, sata and usb, hdX for ide. */
static char *free_target(virDomainPtr d, const char *bus)
{
        const char *prefix = !bus || streq(bus, "virtio") ? "vd" : streq(bus, "ide") ? "hd" : "sd";
        _cleanup_free_ char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
        _cleanup_free_ char *err = NULL;
        vb_hv_vm vm = { 0 };
        char *dev = NULL;

        if (!xml || lv_domain_parse(xml, &vm, &err) < 0)
                return NULL;
        for (char c = 'a'; c <= 'z' && !dev; c++) {
                char name[8];
                bool taken = false;

                snprintf(name, sizeof(name), "%s%c", prefix, c);
                for (size_t i = 0; i < vm.n_disks; i++)
                        taken = taken || streq_ptr(vm.disks[i].device, name);
                if (!taken)
                        dev = strdup(name);
        }
        vb_hv_vm_clear(&vm);
        return dev;
}

static void attach_run(lv_op *o)
{
        _cleanup_free_ char *xml = NULL;
        virDomainPtr d;
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;

        d = domain_of(o);
        if (!d)
                return;
        if (!o->disk.device && !(o->disk.device = free_target(d, o->disk.bus))) {
                fail(o, VB_E_TARGET, "attaching %s: no free disk name (%s)", o->disk.path ?: "a disk", lv_error());
                goto out;
        }
        xml = lv_disk_xml(&o->disk);
        if (!xml) {
                fail(o, VB_E_USAGE, "attaching a disk: its path is missing");
                goto out;
        }
        if (virDomainIsActive(d) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (virDomainAttachDeviceFlags(d, xml, flags) < 0)
                fail(o, lv_code(), "attaching disk %s: %s", o->disk.device, lv_error());
out:
        virDomainFree(d);
}

static int lv_disk_attach(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_done_fn done, void *userdata)
{
        lv_op *o = op_new(hv, vm, attach_run, done_end, (void *)done, userdata);

        if (!o)
                return -ENOMEM;
        if (disk_copy(disk, &o->disk) < 0) {
                op_free(o);
                return -ENOMEM;
        }
        return op_start(o);
}

static void vm_delete_run(lv_op *o)
{
        unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                         VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
        _cleanup_free_ char *xml = NULL, *err = NULL;
        virDomainPtr d = domain_of(o);
        vb_hv_vm vm = { 0 };

        if (!d)
                return;
        if (o->with_disks && (xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE)))
                (void)lv_domain_parse(xml, &vm, &err);
        if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0) {
                lv_fail(o, "power off");
                goto out;
        }
        if (virDomainUndefineFlags(d, flags) < 0) {
                lv_fail(o, "undefining it");
                goto out;
        }
        for (size_t i = 0; i < vm.n_disks; i++) {
                virStorageVolPtr v = vm.disks[i].path ? virStorageVolLookupByPath(o->hv->conn, vm.disks[i].path) : NULL;

                if (!v || virStorageVolDelete(v, 0) < 0) {
                        if (o->r == VB_OK)
                                fail(o, VB_E_FAILED, "deleting disk %s (%s): %s", vm.disks[i].device,
                                     vm.disks[i].path ?: "?", lv_error());
                }
                virStorageVolFree(v);
        }
out:
        vb_hv_vm_clear(&vm);
        virDomainFree(d);
}

static int lv_vm_delete(vb_hv *hv, const vb_hv_vm *vm, bool with_disks, vb_hv_done_fn done, void *userdata)
{
        lv_op *o = op_new(hv, vm, vm_delete_run, done_end, (void *)done, userdata);

        if (!o)
                return -ENOMEM;
        o->with_disks = with_disks;
        return op_start(o);
}

const vb_hv_driver libvirt_driver = {
        .name = "libvirt",
        .connect = lv_connect,
        .disconnect = lv_disconnect,
        .inventory = lv_inventory,
        .vm_get = lv_vm_get,
        .storage_free = lv_storage_free,
        .cbt_check = lv_cbt_check,
        .snapshot_create = lv_snapshot_create,
        .snapshot_delete = lv_snapshot_delete,
        .disk_source = lv_disk_source,
        .disk_target = lv_disk_target,
        .checkpoint_commit = lv_checkpoint_commit,
        .power = lv_power,
        .config_new = lv_config_new,
        .config_disk = lv_config_disk,
        .vm_create = lv_vm_create,
        .volume_create = lv_volume_create,
        .volume_stat = lv_volume_stat,
        .disk_attach = lv_disk_attach,
        .vm_delete = lv_vm_delete,
};
