/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-model.c -- the simulator's inventory: host pools, clusters, hosts
 * (with their vSwitch addresses and storage pools) and VMs, loaded from the
 * topology file (format: tests/sim/README.md).
 *
 * DESIGN: the topology nests the inventory the way CAS does (host pool >
 * cluster > host > VM, hosts may also sit directly in a host pool, §3.1);
 * the model flattens it into arrays with parent ids, which is what every
 * view needs. Every string is copied, so the JSON document is dropped after
 * loading. Relative storage pool paths and disk paths are taken relative to
 * the state directory. vm/add and vm/delete (sim-restore.c) grow and shrink
 * the VM array at run time; VM ids are never reused within a run.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/util.h"
#include "tests/sim/sim.h"

typedef struct {
        sim_model *m;
        const char *state_dir;
        char err[256];
} loader;

#define GROW(arr, n)                                                                                                   \
        ({                                                                                                             \
                __typeof__(arr) _a_ = realloc((arr), ((n) + 1) * sizeof(*(arr)));                                      \
                if (_a_) {                                                                                             \
                        memset(&_a_[(n)], 0, sizeof(*_a_));                                                            \
                        (arr) = _a_;                                                                                   \
                }                                                                                                      \
                _a_ ? &_a_[(n)++] : NULL;                                                                              \
        })

bool sim_parse_id(const char *s, int64_t *out)
{
        char *end;
        long long v;

        if (!s || !*s)
                return false;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end)
                return false;
        *out = v;
        return true;
}

static char *str_or(json_t *o, const char *key, const char *dflt)
{
        const char *v = json_string_value(json_object_get(o, key));

        v = v ? v : dflt;
        return v ? strdup(v) : NULL;
}

static int64_t int_or(json_t *o, const char *key, int64_t dflt)
{
        json_t *v = json_object_get(o, key);

        return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static _printf_(2, 3) int fail(loader *l, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(l->err, sizeof(l->err), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* A path from the topology: absolute as is, otherwise under the state dir. */
static char *resolve_path(loader *l, const char *dir, const char *p)
{
        char *out;

        if (p[0] == '/')
                return strdup(p);
        if (asprintf(&out, "%s/%s", dir ? dir : l->state_dir, p) < 0)
                return NULL;
        return out;
}

static int need_id(loader *l, json_t *o, const char *what, int64_t *id)
{
        json_t *v = json_object_get(o, "id");

        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return fail(l, "%s without a positive integer \"id\"", what);
        *id = json_integer_value(v);
        return 0;
}

static int load_disk(loader *l, const sim_host *h, sim_vm *vm, json_t *jd)
{
        sim_disk *d = GROW(vm->disks, vm->n_disks);
        const char *path = json_string_value(json_object_get(jd, "path"));
        const char *file = json_string_value(json_object_get(jd, "file"));
        sim_spool *p;

        if (!d)
                return -ENOMEM;
        d->pool = str_or(jd, "pool", h->n_pools ? h->pools[0].name : "");
        p = sim_model_spool((sim_host *)h, d->pool);
        if (path) {
                d->path = resolve_path(l, NULL, path);
        } else if (file && p) {
                d->path = resolve_path(l, p->path, file);
        } else {
                return fail(l, "%s %" PRId64 ": a disk needs \"path\", or \"file\" in a storage pool of its host", "VM",
                            vm->id);
        }
        if (vm->n_disks > 26)
                return fail(l, "%s %" PRId64 ": too many disks", "VM", vm->id);
        {
                char dev[8];

                snprintf(dev, sizeof(dev), "vd%c", (char)('a' + vm->n_disks - 1));
                d->device = str_or(jd, "device", dev);
        }
        d->format = str_or(jd, "format", "qcow2");
        if (!streq(d->format, "qcow2") && !streq(d->format, "raw"))
                return fail(l, "%s %" PRId64 ": disk format must be qcow2 or raw", "VM", vm->id);
        d->size_mb = int_or(jd, "size", 1024);
        d->bus = str_or(jd, "bus", "virtio");
        return d->path && d->device && d->bus ? 0 : -ENOMEM;
}

static int load_vm(loader *l, const sim_host *h, json_t *jv)
{
        sim_model *m = l->m;
        sim_vm *vm;
        const char *status;
        json_t *x;
        size_t i;
        int64_t id;
        int r;

        r = need_id(l, jv, "a VM", &id);
        if (r < 0)
                return r;
        if (sim_model_vm_by_id(m, id))
                return fail(l, "%s %" PRId64 " defined twice", "VM", id);
        vm = GROW(m->vms, m->n_vms);
        if (!vm)
                return -ENOMEM;
        vm->id = id;
        vm->host_id = h->id;
        vm->name = str_or(jv, "name", NULL);
        if (!vm->name)
                return fail(l, "%s %" PRId64 " has no \"name\"", "VM", id);
        vm->title = str_or(jv, "title", vm->name);
        vm->description = str_or(jv, "description", "");
        if (json_object_get(jv, "uuid")) {
                vm->uuid = str_or(jv, "uuid", "");
        } else if (asprintf(&vm->uuid, "5a1d0000-0000-4000-8000-%012" PRId64, id) < 0) {
                vm->uuid = NULL;
        }
        vm->os_version = str_or(jv, "osVersion", "Linux");
        vm->create_date = str_or(jv, "createDate", "2024-01-01T08:00:00+08:00");
        status = json_string_value(json_object_get(jv, "status"));
        if (status && !streq(status, "running") && !streq(status, "shutOff"))
                return fail(l, "%s %" PRId64 ": status must be running or shutOff", "VM", id);
        vm->running = status && streq(status, "running");
        vm->cbt_valid = true;
        vm->system = int_or(jv, "system", 1);
        vm->cpu_sockets = int_or(jv, "cpuSockets", 1);
        vm->cpu_cores = int_or(jv, "cpuCores", 1);
        vm->cpu_mode = str_or(jv, "cpuMode", "custom");
        vm->memory_mb = int_or(jv, "memory", 512);
        json_array_foreach(json_object_get(jv, "disks"), i, x)
        {
                r = load_disk(l, h, vm, x);
                if (r < 0)
                        return r;
        }
        json_array_foreach(json_object_get(jv, "nics"), i, x)
        {
                sim_nic *n = GROW(vm->nics, vm->n_nics);
                char mac[18];

                if (!n)
                        return -ENOMEM;
                snprintf(mac, sizeof(mac), "0c:da:41:1d:%02x:%02x", (unsigned)(id & 0xff), (unsigned)i);
                n->mac = str_or(x, "mac", mac);
                n->vs_name = str_or(x, "vsName", "vswitch0");
                n->vs_id = int_or(x, "vsId", 1);
                n->ip = str_or(x, "ip", "");
                n->model = str_or(x, "deviceModel", "virtio");
                n->profile_id = int_or(x, "profileId", 1);
        }
        return vm->uuid && vm->title && vm->cpu_mode ? 0 : -ENOMEM;
}

static int load_host(loader *l, int64_t hostpool_id, int64_t cluster_id, json_t *jh)
{
        sim_model *m = l->m;
        sim_host *h;
        json_t *x;
        size_t i;
        int64_t id;
        int r;

        r = need_id(l, jh, "a host", &id);
        if (r < 0)
                return r;
        if (sim_model_host(m, id))
                return fail(l, "%s %" PRId64 " defined twice", "host", id);
        h = GROW(m->hosts, m->n_hosts);
        if (!h)
                return -ENOMEM;
        h->id = id;
        h->hostpool_id = hostpool_id;
        h->cluster_id = cluster_id;
        h->name = str_or(jh, "name", NULL);
        h->ip = str_or(jh, "ip", NULL);
        if (!h->name || !h->ip)
                return fail(l, "%s %" PRId64 " needs \"name\" and \"ip\"", "host", id);
        h->status = int_or(jh, "status", 1);
        h->cpu_sockets = int_or(jh, "cpuSockets", 2);
        h->cpu_cores = int_or(jh, "cpuCores", 8);
        h->memory_mb = int_or(jh, "memorySize", 131072);
        json_array_foreach(json_object_get(jh, "networks"), i, x)
        {
                sim_netaddr *n = GROW(h->nets, h->n_nets);

                if (!n)
                        return -ENOMEM;
                n->role = str_or(x, "role", NULL);
                n->vs_name = str_or(x, "vsName", "vswitch0");
                n->ip = str_or(x, "ip", NULL);
                if (!n->role || !n->ip)
                        return fail(l, "%s %" PRId64 ": a network needs \"role\" and \"ip\"", "host", id);
                if (!streq(n->role, "management") && !streq(n->role, "storage") && !streq(n->role, "backup"))
                        return fail(l, "%s %" PRId64 ": network role must be management, storage or backup", "host",
                                    id);
        }
        json_array_foreach(json_object_get(jh, "storagePools"), i, x)
        {
                sim_spool *p = GROW(h->pools, h->n_pools);
                const char *path = json_string_value(json_object_get(x, "path"));

                if (!p)
                        return -ENOMEM;
                p->name = str_or(x, "name", NULL);
                if (!p->name || !path)
                        return fail(l, "%s %" PRId64 ": a storage pool needs \"name\" and \"path\"", "host", id);
                p->title = str_or(x, "title", p->name);
                p->type = str_or(x, "type", "dir");
                p->path = resolve_path(l, NULL, path);
                /* 2 TiB: enough that a client's default free-space check passes. */
                p->capacity_mb = int_or(x, "capacity", 2097152);
        }
        /* VMs last: their disks refer to the host's storage pools. */
        json_array_foreach(json_object_get(jh, "vms"), i, x)
        {
                r = load_vm(l, &m->hosts[m->n_hosts - 1], x);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_cluster(loader *l, int64_t hostpool_id, json_t *jc)
{
        sim_model *m = l->m;
        sim_cluster *c;
        json_t *x;
        size_t i;
        int64_t id;
        int r;

        r = need_id(l, jc, "a cluster", &id);
        if (r < 0)
                return r;
        if (sim_model_cluster(m, id))
                return fail(l, "%s %" PRId64 " defined twice", "cluster", id);
        c = GROW(m->clusters, m->n_clusters);
        if (!c)
                return -ENOMEM;
        c->id = id;
        c->hostpool_id = hostpool_id;
        c->name = str_or(jc, "name", NULL);
        if (!c->name)
                return fail(l, "%s %" PRId64 " has no \"name\"", "cluster", id);
        c->enable_ha = json_is_true(json_object_get(jc, "enableHA"));
        json_array_foreach(json_object_get(jc, "hosts"), i, x)
        {
                r = load_host(l, hostpool_id, id, x);
                if (r < 0)
                        return r;
        }
        return 0;
}

int sim_model_load(sim_model *m, const char *topology, const char *state_dir, char **err)
{
        loader l = { .m = m, .state_dir = state_dir };
        json_error_t jerr;
        json_t *doc, *jp, *x;
        size_t i, k;
        int r = 0;

        *m = (sim_model){ 0 };
        doc = json_load_file(topology, 0, &jerr);
        if (!doc) {
                snprintf(l.err, sizeof(l.err), "%s:%d: %s", topology, jerr.line, jerr.text);
                r = -EINVAL;
                goto out;
        }
        json_array_foreach(json_object_get(doc, "hostPools"), i, jp)
        {
                sim_hostpool *hp;
                int64_t id;

                r = need_id(&l, jp, "a host pool", &id);
                if (r < 0)
                        goto out;
                if (sim_model_hostpool(m, id)) {
                        r = fail(&l, "%s %" PRId64 " defined twice", "host pool", id);
                        goto out;
                }
                hp = GROW(m->hostpools, m->n_hostpools);
                if (!hp) {
                        r = -ENOMEM;
                        goto out;
                }
                hp->id = id;
                hp->name = str_or(jp, "name", NULL);
                if (!hp->name) {
                        r = fail(&l, "%s %" PRId64 " has no \"name\"", "host pool", id);
                        goto out;
                }
                json_array_foreach(json_object_get(jp, "clusters"), k, x)
                {
                        r = load_cluster(&l, id, x);
                        if (r < 0)
                                goto out;
                }
                json_array_foreach(json_object_get(jp, "hosts"), k, x)
                {
                        r = load_host(&l, id, 0, x);
                        if (r < 0)
                                goto out;
                }
        }
        if (m->n_hostpools == 0)
                r = fail(&l, "%s: no \"hostPools\"", topology);
        m->next_vm_id = 1;
        for (i = 0; i < m->n_vms; i++)
                m->next_vm_id = MAX(m->next_vm_id, m->vms[i].id + 1);
out:
        json_decref(doc);
        if (r < 0) {
                if (!l.err[0])
                        snprintf(l.err, sizeof(l.err), "%s", strerror(-r));
                *err = strdup(l.err);
                sim_model_free(m);
        }
        return r;
}

void sim_vm_free(sim_vm *vm)
{
        for (size_t k = 0; k < vm->n_disks; k++) {
                free(vm->disks[k].device);
                free(vm->disks[k].path);
                free(vm->disks[k].backing);
                free(vm->disks[k].format);
                free(vm->disks[k].bus);
                free(vm->disks[k].pool);
        }
        for (size_t k = 0; k < vm->n_nics; k++) {
                free(vm->nics[k].mac);
                free(vm->nics[k].vs_name);
                free(vm->nics[k].ip);
                free(vm->nics[k].model);
        }
        for (size_t k = 0; k < vm->n_snaps; k++)
                sim_snapshot_free(&vm->snaps[k]);
        free(vm->snaps);
        free(vm->disks);
        free(vm->nics);
        free(vm->uuid);
        free(vm->name);
        free(vm->title);
        free(vm->description);
        free(vm->os_version);
        free(vm->create_date);
        free(vm->cpu_mode);
        *vm = (sim_vm){ 0 };
}

void sim_model_vm_remove(sim_model *m, sim_vm *vm)
{
        size_t idx = (size_t)(vm - m->vms);

        sim_vm_free(vm);
        memmove(&m->vms[idx], &m->vms[idx + 1], (m->n_vms - idx - 1) * sizeof(*vm));
        m->n_vms--;
}

void sim_model_free(sim_model *m)
{
        for (size_t i = 0; i < m->n_vms; i++)
                sim_vm_free(&m->vms[i]);
        for (size_t i = 0; i < m->n_hosts; i++) {
                sim_host *h = &m->hosts[i];

                for (size_t k = 0; k < h->n_nets; k++) {
                        free(h->nets[k].role);
                        free(h->nets[k].vs_name);
                        free(h->nets[k].ip);
                }
                for (size_t k = 0; k < h->n_pools; k++) {
                        free(h->pools[k].name);
                        free(h->pools[k].title);
                        free(h->pools[k].type);
                        free(h->pools[k].path);
                }
                free(h->nets);
                free(h->pools);
                free(h->cvd_dirs);
                free(h->name);
                free(h->ip);
        }
        for (size_t i = 0; i < m->n_clusters; i++)
                free(m->clusters[i].name);
        for (size_t i = 0; i < m->n_hostpools; i++)
                free(m->hostpools[i].name);
        free(m->vms);
        free(m->hosts);
        free(m->clusters);
        free(m->hostpools);
        *m = (sim_model){ 0 };
}

void sim_snapshot_free(sim_snapshot *s)
{
        for (size_t i = 0; i < s->n_files; i++) {
                free(s->files[i].top);
                free(s->files[i].base);
                free(s->files[i].base_format);
                free(s->files[i].prev_backing);
        }
        free(s->files);
        free(s->name);
        free(s->desc);
        *s = (sim_snapshot){ 0 };
}

sim_snapshot *sim_vm_snapshot(sim_vm *vm, const char *name)
{
        for (size_t i = 0; i < vm->n_snaps; i++)
                if (streq(vm->snaps[i].name, name))
                        return &vm->snaps[i];
        return NULL;
}

sim_hostpool *sim_model_hostpool(sim_model *m, int64_t id)
{
        for (size_t i = 0; i < m->n_hostpools; i++)
                if (m->hostpools[i].id == id)
                        return &m->hostpools[i];
        return NULL;
}

sim_cluster *sim_model_cluster(sim_model *m, int64_t id)
{
        for (size_t i = 0; i < m->n_clusters; i++)
                if (m->clusters[i].id == id)
                        return &m->clusters[i];
        return NULL;
}

sim_host *sim_model_host(sim_model *m, int64_t id)
{
        for (size_t i = 0; i < m->n_hosts; i++)
                if (m->hosts[i].id == id)
                        return &m->hosts[i];
        return NULL;
}

sim_vm *sim_model_vm_by_id(sim_model *m, int64_t id)
{
        for (size_t i = 0; i < m->n_vms; i++)
                if (m->vms[i].id == id)
                        return &m->vms[i];
        return NULL;
}

sim_vm *sim_model_vm(sim_model *m, const char *id_or_uuid)
{
        int64_t id;

        if (sim_parse_id(id_or_uuid, &id))
                return sim_model_vm_by_id(m, id);
        for (size_t i = 0; i < m->n_vms; i++)
                if (streq(m->vms[i].uuid, id_or_uuid))
                        return &m->vms[i];
        return NULL;
}

sim_spool *sim_model_spool(sim_host *h, const char *name)
{
        for (size_t i = 0; i < h->n_pools; i++)
                if (streq(h->pools[i].name, name))
                        return &h->pools[i];
        return NULL;
}

sim_spool *sim_model_spool_of_path(sim_host *h, const char *path)
{
        const char *slash = strrchr(path, '/');

        for (size_t i = 0; slash && i < h->n_pools; i++) {
                size_t n = strlen(h->pools[i].path);

                if ((size_t)(slash - path) == n && strncmp(path, h->pools[i].path, n) == 0)
                        return &h->pools[i];
        }
        return NULL;
}

sim_vm *sim_model_vm_by_name(sim_model *m, const char *name)
{
        for (size_t i = 0; i < m->n_vms; i++)
                if (streq(m->vms[i].name, name))
                        return &m->vms[i];
        return NULL;
}
