/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-views.c -- the model as CAS shows it: one function per entity view,
 * with the element names, value kinds and units (sizes in MB) of
 * cas-api.md §3.1-3.6. The trees are rendered by sim-render.c.
 *
 * DESIGN: values are put in typed (integers, booleans); the legacy JSON
 * mode turns them into strings. Lists inside an entity (storage, network)
 * are always arrays here; the legacy mode collapses one-item lists. Fields
 * the research notes list but the simulator has no meaning for (cpuRate,
 * castools...) carry fixed plausible values so parsers see them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "daemon/util.h"
#include "tests/sim/sim.h"

#define MiB (1024 * 1024)

static void set_str(json_t *o, const char *k, const char *v)
{
        json_object_set_new(o, k, json_string(v ? v : ""));
}

static void set_int(json_t *o, const char *k, int64_t v)
{
        json_object_set_new(o, k, json_integer(v));
}

static void set_bool(json_t *o, const char *k, bool v)
{
        json_object_set_new(o, k, json_boolean(v));
}

static size_t cluster_host_count(sim_model *m, int64_t cluster_id)
{
        size_t n = 0;

        for (size_t i = 0; i < m->n_hosts; i++)
                n += m->hosts[i].cluster_id == cluster_id;
        return n;
}

json_t *sim_view_hostpool(sim_model *m, const sim_hostpool *hp)
{
        json_t *o = json_object();
        size_t children = 0;

        /* childNum counts the clusters plus the hosts placed directly in the pool. */
        for (size_t i = 0; i < m->n_clusters; i++)
                children += m->clusters[i].hostpool_id == hp->id;
        for (size_t i = 0; i < m->n_hosts; i++)
                children += m->hosts[i].hostpool_id == hp->id && m->hosts[i].cluster_id == 0;
        set_int(o, "id", hp->id);
        set_str(o, "name", hp->name);
        set_int(o, "operatorGroupId", 1);
        set_str(o, "operatorGroupCode", "00");
        set_int(o, "childNum", (int64_t)children);
        return o;
}

json_t *sim_view_cluster(sim_model *m, const sim_cluster *c)
{
        json_t *o = json_object();
        sim_hostpool *hp = sim_model_hostpool(m, c->hostpool_id);

        set_int(o, "id", c->id);
        set_int(o, "hostPoolId", c->hostpool_id);
        set_str(o, "hostPoolName", hp ? hp->name : "");
        set_str(o, "name", c->name);
        set_int(o, "enableHA", c->enable_ha);
        set_int(o, "HaMinHost", 1);
        set_int(o, "childNum", (int64_t)cluster_host_count(m, c->id));
        return o;
}

/* GET host: the hypervisor type is an XML attribute in older versions (§3.1). */
json_t *sim_view_host_brief(const sim_host *h)
{
        json_t *o = json_object();

        set_str(o, "@type", "kvm");
        set_int(o, "id", h->id);
        set_int(o, "hostPoolId", h->hostpool_id);
        if (h->cluster_id)
                set_int(o, "clusterId", h->cluster_id);
        set_str(o, "name", h->name);
        set_str(o, "ip", h->ip);
        set_int(o, "hostType", 16);
        set_int(o, "status", sim_fault_host(SIM_FAULT_HOST_DOWN, h) ? 0 : h->status);
        return o;
}

json_t *sim_view_cluster_host(sim_model *m, const sim_host *h)
{
        json_t *o = json_object();
        int64_t run = 0, off = 0;

        for (size_t i = 0; i < m->n_vms; i++) {
                if (m->vms[i].host_id != h->id)
                        continue;
                run += m->vms[i].running;
                off += !m->vms[i].running;
        }
        set_int(o, "id", h->id);
        set_int(o, "hostPoolId", h->hostpool_id);
        set_int(o, "clusterId", h->cluster_id);
        set_str(o, "ip", h->ip);
        set_str(o, "name", h->name);
        set_int(o, "vmNum", run + off);
        set_int(o, "vmRunCount", run);
        set_int(o, "vmShutoff", off);
        json_object_set_new(o, "cpuRate", json_real(1.5));
        json_object_set_new(o, "memRate", json_real(20.0));
        set_int(o, "status", sim_fault_host(SIM_FAULT_HOST_DOWN, h) ? 0 : h->status);
        return o;
}

json_t *sim_view_host_detail(const sim_host *h)
{
        json_t *o = sim_view_host_brief(h);
        json_t *nics = json_array();
        bool backup = false;

        set_str(o, "user", "root");
        set_str(o, "mask", "255.0.0.0");
        set_str(o, "model", "UIS R390X G2");
        set_str(o, "vendor", "New H3C Technologies Co., Ltd.");
        set_int(o, "cpuCount", (int64_t)h->cpu_sockets * h->cpu_cores);
        set_str(o, "cpuModel", "QEMU TCG CPU");
        set_int(o, "cpuFrequence", 2200);
        set_int(o, "diskSize", 994485);
        set_int(o, "memorySize", (int64_t)h->memory_mb);
        set_int(o, "cpuSockets", h->cpu_sockets);
        set_int(o, "cpuCores", h->cpu_cores);
        set_bool(o, "enableStorNode", false);
        for (size_t i = 0; i < h->n_nets; i++) {
                json_t *n = json_object();
                char name[32];

                backup |= streq(h->nets[i].role, "backup");
                snprintf(name, sizeof(name), "eth%zu", i);
                set_str(n, "name", name);
                set_str(n, "description", "Intel Corporation I350 Gigabit Network Connection");
                set_int(n, "status", 1);
                /* The vSwitch on this pNIC and the host's address on it; "usage"
                 * (management, storage, backup) is the simulator's own field. */
                set_str(n, "vsName", h->nets[i].vs_name);
                set_str(n, "ipAddr", h->nets[i].ip);
                set_str(n, "usage", h->nets[i].role);
                json_array_append_new(nics, n);
        }
        set_bool(o, "enableBackupNetwork", backup);
        json_object_set_new(o, "pNIC", nics);
        set_int(o, "maintainMode", 0);
        set_int(o, "cvkMaintain", 0);
        return o;
}

static int64_t vm_cluster_id(sim_model *m, const sim_vm *vm)
{
        sim_host *h = sim_model_host(m, vm->host_id);

        return h ? h->cluster_id : 0;
}

static int64_t vm_hostpool_id(sim_model *m, const sim_vm *vm)
{
        sim_host *h = sim_model_host(m, vm->host_id);

        return h ? h->hostpool_id : 0;
}

json_t *sim_view_vm_list_item(sim_model *m, const sim_vm *vm)
{
        json_t *o = json_object();
        sim_host *h = sim_model_host(m, vm->host_id);

        set_int(o, "id", vm->id);
        set_int(o, "hostId", vm->host_id);
        if (vm_cluster_id(m, vm)) /* a host directly in a host pool has no cluster */
                set_int(o, "clusterId", vm_cluster_id(m, vm));
        set_int(o, "hostPoolId", vm_hostpool_id(m, vm));
        set_str(o, "name", vm->name);
        set_str(o, "title", vm->title);
        set_str(o, "hostName", h ? h->name : "");
        set_str(o, "description", vm->description);
        set_int(o, "memory", (int64_t)vm->memory_mb);
        set_int(o, "cpu", (int64_t)vm->cpu_sockets * vm->cpu_cores);
        json_object_set_new(o, "cpuRate", json_real(vm->running ? 3.0 : 0.0));
        json_object_set_new(o, "memRate", json_real(vm->running ? 12.0 : 0.0));
        /* vmList: vmStatus is a string (§3.1), unlike vm/{id}'s numeric status. */
        set_str(o, "vmStatus", vm->running ? "running" : "shutOff");
        set_str(o, "uuid", vm->uuid);
        set_int(o, "system", vm->system);
        set_str(o, "osDesc", vm->os_version);
        set_str(o, "createDate", vm->create_date);
        set_int(o, "castoolsStatus", 0);
        return o;
}

/* vm/{id} (view A, §3.2): numeric status, storage[] without the format. */
json_t *sim_view_vm(sim_model *m, const sim_vm *vm)
{
        json_t *o = json_object(), *disks = json_array(), *nets = json_array();

        set_int(o, "id", vm->id);
        set_int(o, "hostId", vm->host_id);
        if (vm_cluster_id(m, vm)) /* a host directly in a host pool has no cluster */
                set_int(o, "clusterId", vm_cluster_id(m, vm));
        set_int(o, "hostPoolId", vm_hostpool_id(m, vm));
        set_str(o, "name", vm->name);
        set_str(o, "title", vm->title);
        set_int(o, "memory", (int64_t)vm->memory_mb);
        set_int(o, "cpu", (int64_t)vm->cpu_sockets * vm->cpu_cores);
        set_int(o, "status", vm->running ? 2 : 3);
        set_str(o, "uuid", vm->uuid);
        set_str(o, "osBit", "x86_64");
        set_int(o, "system", vm->system);
        set_str(o, "osVersion", vm->os_version);
        set_str(o, "createDate", vm->create_date);
        set_int(o, "type", 0);
        for (size_t i = 0; i < vm->n_disks; i++) {
                const sim_disk *d = &vm->disks[i];
                json_t *s = json_object();

                set_int(s, "capacity", (int64_t)d->size_mb);
                set_str(s, "device", d->device);
                set_str(s, "diskDevice", "disk");
                set_str(s, "storeFile", d->path);
                set_str(s, "targetBus", d->bus);
                set_str(s, "type", "file");
                set_str(s, "poolName", d->pool);
                json_array_append_new(disks, s);
        }
        for (size_t i = 0; i < vm->n_nics; i++) {
                const sim_nic *n = &vm->nics[i];
                json_t *s = json_object();

                set_str(s, "ipAddr", n->ip);
                set_str(s, "mac", n->mac);
                set_str(s, "mode", "VEB");
                set_int(s, "vlan", 1);
                set_str(s, "vsName", n->vs_name);
                json_array_append_new(nets, s);
        }
        json_object_set_new(o, "storage", disks);
        json_object_set_new(o, "network", nets);
        return o;
}

static int64_t file_allocation_mb(const char *path)
{
        struct stat st;

        if (stat(path, &st) < 0)
                return 0;
        return (int64_t)st.st_blocks * 512 / MiB;
}

/* vm/detail/{id} (view B, §3.2): string status, sub-objects, storage[] with
 * path/format/size, and no hostId. */
json_t *sim_view_vm_detail(sim_model *m, const sim_vm *vm)
{
        json_t *o = json_object(), *cpu = json_object(), *mem = json_object();
        json_t *disks = json_array(), *nets = json_array();

        set_int(o, "id", vm->id);
        set_str(o, "name", vm->name);
        set_str(o, "uuid", vm->uuid);
        set_str(o, "title", vm->title);
        set_str(o, "status", vm->running ? "running" : "shutOff");
        set_int(cpu, "cpuSockets", vm->cpu_sockets);
        set_int(cpu, "cpuCores", vm->cpu_cores);
        set_str(cpu, "cpuMode", vm->cpu_mode);
        set_int(cpu, "cpuShares", 512);
        json_object_set_new(o, "cpu", cpu);
        set_int(mem, "size", (int64_t)vm->memory_mb);
        set_str(mem, "memoryUnit", "MB");
        set_int(mem, "memoryInit", (int64_t)vm->memory_mb);
        json_object_set_new(o, "memory", mem);
        for (size_t i = 0; i < vm->n_nics; i++) {
                const sim_nic *n = &vm->nics[i];
                json_t *s = json_object();

                set_str(s, "mac", n->mac);
                set_int(s, "vsId", n->vs_id);
                set_str(s, "vsName", n->vs_name);
                set_int(s, "profileId", n->profile_id);
                set_str(s, "deviceModel", n->model);
                set_int(s, "isKernelAccelerated", 1);
                json_array_append_new(nets, s);
        }
        json_object_set_new(o, "network", nets);
        for (size_t i = 0; i < vm->n_disks; i++) {
                const sim_disk *d = &vm->disks[i];
                json_t *s = json_object();

                set_str(s, "device", "disk");
                set_str(s, "deviceName", d->device);
                set_str(s, "fileType", "file");
                set_str(s, "path", d->path);
                set_str(s, "format", d->format);
                set_str(s, "targetBus", d->bus);
                set_int(s, "size", (int64_t)d->size_mb);
                set_int(s, "allocation", file_allocation_mb(d->path));
                set_str(s, "cacheType", "directsync");
                set_int(s, "snapShot", vm->n_snaps > 0);
                set_bool(s, "isShareStorage", false);
                json_array_append_new(disks, s);
        }
        json_object_set_new(o, "storage", disks);
        return o;
}

/* vm/{id}/storage (§3.2 C): note driverType here, not format. */
json_t *sim_view_vm_storage(sim_model *m, const sim_vm *vm)
{
        json_t *o = json_object(), *list = json_array();

        for (size_t i = 0; i < vm->n_disks; i++) {
                const sim_disk *d = &vm->disks[i];
                json_t *s = json_object();

                set_str(s, "storeFile", d->path);
                set_int(s, "capacity", (int64_t)d->size_mb);
                set_str(s, "device", d->device);
                set_str(s, "targetBus", d->bus);
                set_str(s, "type", "file");
                set_str(s, "poolName", d->pool);
                set_str(s, "poolType", "dir");
                set_str(s, "driverType", d->format);
                set_str(s, "driverCache", "directsync");
                json_array_append_new(list, s);
        }
        json_object_set_new(o, "storage", list);
        return o;
}

/* Dirty bitmaps persist only in qcow2 images, so CBT needs every disk qcow2. */
bool sim_vm_supports_cbt(const sim_vm *vm)
{
        for (size_t i = 0; i < vm->n_disks; i++)
                if (!streq(vm->disks[i].format, "qcow2"))
                        return false;
        return vm->n_disks > 0;
}

/* storage/pool and storage/info (§3.6): sizes in MB, from statvfs of the pool
 * path when the folder existed before the simulator started (real storage
 * the caller provided), else from the topology's capacity minus the disks
 * and the volumes no VM uses (their virtual sizes): a folder the simulator
 * made itself under the state dir stands for a pool of the declared size,
 * so tests see stable numbers. */
json_t *sim_view_spool(sim_model *m, const sim_host *h, const sim_spool *p)
{
        json_t *o = json_object();
        struct statvfs sv;
        int64_t total, free_mb;

        if (!p->created && statvfs(p->path, &sv) == 0) {
                total = (int64_t)((uint64_t)sv.f_blocks * sv.f_frsize / MiB);
                free_mb = (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize / MiB);
        } else {
                int64_t used = 0;

                for (size_t i = 0; i < m->n_vms; i++) {
                        if (m->vms[i].host_id != h->id)
                                continue;
                        for (size_t k = 0; k < m->vms[i].n_disks; k++)
                                if (streq(m->vms[i].disks[k].pool, p->name))
                                        used += (int64_t)m->vms[i].disks[k].size_mb;
                }
                used += (int64_t)sim_spool_loose_mb(m, h, p);
                total = (int64_t)p->capacity_mb;
                free_mb = total > used ? total - used : 0;
        }
        if (sim_fault_host(SIM_FAULT_POOL_FULL, h))
                free_mb = MIN(free_mb, 1); /* fault pool-full: 1 MB left */
        set_str(o, "name", p->name);
        set_str(o, "title", p->title);
        set_str(o, "type", p->type);
        set_str(o, "path", p->path);
        set_int(o, "status", 1);
        set_int(o, "totalSize", total);
        set_int(o, "freeSize", free_mb);
        set_int(o, "allocation", total - free_mb);
        set_int(o, "hostId", h->id);
        return o;
}

static void format_time(int64_t ms, char *buf, size_t size)
{
        time_t t = ms / 1000;
        struct tm tm;

        localtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/* vm/snapshot/{vmId} (§3.4): the snapshot tree as nested <snapshots>. The
 * simulator's snapshots form a line (each one's parent is the one before),
 * so each level holds one snapshot; isCurr marks the newest. */
json_t *sim_view_snapshots(const sim_vm *vm)
{
        json_t *list = json_object(), *level = json_array();

        json_object_set_new(list, "snapshot", level);
        for (size_t i = 0; i < vm->n_snaps; i++) {
                const sim_snapshot *sn = &vm->snaps[i];
                json_t *o = json_object(), *children = json_object(), *next = json_array();
                char date[32];

                set_str(o, "name", sn->name);
                set_str(o, "snapshotTitle", sn->name);
                set_str(o, "desc", sn->desc);
                set_bool(o, "isCurr", i + 1 == vm->n_snaps);
                set_bool(o, "snapMem", sn->mem);
                set_int(o, "snapshotMode", sn->mode);
                /* Not a CAS field: the guest's file systems were frozen when it was taken. */
                set_bool(o, "quiesced", sn->quiesced);
                format_time(sn->created_ms, date, sizeof(date));
                set_str(o, "creationTime", date);
                json_object_set_new(children, "snapshot", next);
                json_object_set_new(o, "snapshots", children);
                json_array_append_new(level, o);
                level = next;
        }
        return list;
}

/* vm/{id}/backfilepath (§3.2 C): per disk, the top file and the file it
 * backs onto (empty without an external snapshot). */
json_t *sim_view_backfilepath(const sim_vm *vm)
{
        json_t *o = json_object(), *a = json_array();

        for (size_t i = 0; i < vm->n_disks; i++) {
                json_t *b = json_object();

                set_str(b, "incfilepath", vm->disks[i].path);
                set_str(b, "backfilepath", vm->disks[i].backing);
                json_array_append_new(a, b);
        }
        json_object_set_new(o, "backingfile", a);
        return o;
}
