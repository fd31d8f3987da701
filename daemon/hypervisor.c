/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hypervisor.c -- what every platform driver and its callers share: deep
 * copies of the structures drivers hand to callbacks, and the names of
 * snapshot types and VM states.
 */
#include "daemon/hypervisor.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cas/cas.h"
#include "daemon/util.h"
#include "libvirt/driver.h"

/* strdup that keeps NULL; sets *oom when memory ran out. */
static char *dup0(const char *s, bool *oom)
{
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

void vb_hv_vm_clear(vb_hv_vm *vm)
{
        if (!vm)
                return;
        free(vm->id);
        free(vm->uuid);
        free(vm->name);
        free(vm->title);
        free(vm->host_id);
        free(vm->cluster_id);
        free(vm->pool_id);
        for (size_t i = 0; i < vm->n_disks; i++) {
                free(vm->disks[i].device);
                free(vm->disks[i].path);
                free(vm->disks[i].format);
                free(vm->disks[i].bus);
                free(vm->disks[i].pool);
        }
        free(vm->disks);
        for (size_t i = 0; i < vm->n_nics; i++) {
                free(vm->nics[i].mac);
                free(vm->nics[i].vswitch);
                free(vm->nics[i].profile);
                free(vm->nics[i].model);
        }
        free(vm->nics);
        json_decref(vm->config);
        *vm = (vb_hv_vm){};
}

int vb_hv_vm_copy(const vb_hv_vm *src, vb_hv_vm *dst)
{
        bool oom = false;

        *dst = (vb_hv_vm){
                .id = dup0(src->id, &oom),
                .uuid = dup0(src->uuid, &oom),
                .name = dup0(src->name, &oom),
                .title = dup0(src->title, &oom),
                .host_id = dup0(src->host_id, &oom),
                .cluster_id = dup0(src->cluster_id, &oom),
                .pool_id = dup0(src->pool_id, &oom),
                .state = src->state,
                .cpu_sockets = src->cpu_sockets,
                .cpu_cores = src->cpu_cores,
                .memory_mb = src->memory_mb,
                .config = src->config ? json_deep_copy(src->config) : NULL,
        };
        if (src->config && !dst->config)
                oom = true;
        dst->disks = calloc(src->n_disks ?: 1, sizeof(*dst->disks));
        dst->nics = calloc(src->n_nics ?: 1, sizeof(*dst->nics));
        if (oom || !dst->disks || !dst->nics)
                goto fail;
        for (size_t i = 0; i < src->n_disks; i++, dst->n_disks++) {
                const vb_hv_disk *s = &src->disks[i];

                dst->disks[i] = (vb_hv_disk){ .device = dup0(s->device, &oom),
                                              .path = dup0(s->path, &oom),
                                              .format = dup0(s->format, &oom),
                                              .bus = dup0(s->bus, &oom),
                                              .pool = dup0(s->pool, &oom),
                                              .size = s->size };
        }
        for (size_t i = 0; i < src->n_nics; i++, dst->n_nics++) {
                const vb_hv_nic *s = &src->nics[i];

                dst->nics[i] = (vb_hv_nic){ .mac = dup0(s->mac, &oom),
                                            .vswitch = dup0(s->vswitch, &oom),
                                            .profile = dup0(s->profile, &oom),
                                            .model = dup0(s->model, &oom) };
        }
        if (!oom)
                return 0;
fail:
        vb_hv_vm_clear(dst);
        return -ENOMEM;
}

void vb_hv_snapshot_clear(vb_hv_snapshot *s)
{
        if (!s)
                return;
        free(s->name);
        free(s->note);
        *s = (vb_hv_snapshot){};
}

int vb_hv_snapshot_copy(const vb_hv_snapshot *src, vb_hv_snapshot *dst)
{
        bool oom = false;

        *dst = (vb_hv_snapshot){ .name = dup0(src->name, &oom),
                                 .type = src->type,
                                 .quiesced = src->quiesced,
                                 .note = dup0(src->note, &oom) };
        if (!oom)
                return 0;
        vb_hv_snapshot_clear(dst);
        return -ENOMEM;
}

void vb_hv_disk_source_clear(vb_hv_disk_source *s)
{
        if (!s)
                return;
        free(s->url);
        free(s->since);
        free(s->checkpoint);
        free(s->note);
        *s = (vb_hv_disk_source){};
}

int vb_hv_disk_source_copy(const vb_hv_disk_source *src, vb_hv_disk_source *dst)
{
        bool oom = false;

        *dst = (vb_hv_disk_source){ .url = dup0(src->url, &oom),
                                    .since = dup0(src->since, &oom),
                                    .checkpoint = dup0(src->checkpoint, &oom),
                                    .note = dup0(src->note, &oom) };
        if (!oom)
                return 0;
        vb_hv_disk_source_clear(dst);
        return -ENOMEM;
}

static const char *const snapshot_types[] = {
        [VB_SNAPSHOT_ADAPTIVE] = "adaptive",
        [VB_SNAPSHOT_INTERNAL] = "internal",
        [VB_SNAPSHOT_EXTERNAL] = "external",
};

const char *vb_snapshot_type_to_string(vb_snapshot_type t)
{
        return (unsigned)t < ELEMENTSOF(snapshot_types) ? snapshot_types[t] : "unknown";
}

int vb_snapshot_type_from_string(const char *s)
{
        for (size_t i = 0; s && i < ELEMENTSOF(snapshot_types); i++)
                if (streq(s, snapshot_types[i]))
                        return (int)i;
        return -1;
}

static const char *const prealloc_names[] = {
        [VB_PREALLOC_DEFAULT] = "default",
        [VB_PREALLOC_THIN] = "thin",
        [VB_PREALLOC_LAZY] = "lazy",
        [VB_PREALLOC_EAGER] = "eager",
};

const char *vb_prealloc_to_string(vb_prealloc p)
{
        return (unsigned)p < ELEMENTSOF(prealloc_names) ? prealloc_names[p] : "default";
}

int vb_prealloc_from_string(const char *s)
{
        if (!s)
                return -1;
        if (streq(s, "lazy-zeroed"))
                return VB_PREALLOC_LAZY;
        if (streq(s, "eager-zeroed"))
                return VB_PREALLOC_EAGER;
        for (size_t i = VB_PREALLOC_THIN; i < ELEMENTSOF(prealloc_names); i++)
                if (streq(s, prealloc_names[i]))
                        return (int)i;
        return -1;
}

const char *vb_vm_state_to_string(vb_vm_state s)
{
        switch (s) {
        case VB_VM_RUNNING:
                return "running";
        case VB_VM_SHUT_OFF:
                return "shut off";
        case VB_VM_PAUSED:
                return "paused";
        default:
                return "unknown";
        }
}

json_t *vb_hv_vm_to_json(const vb_hv_vm *vm, bool with_config)
{
        json_t *disks = json_array(), *nics = json_array(), *j;

        for (size_t i = 0; i < vm->n_disks; i++) {
                const vb_hv_disk *d = &vm->disks[i];
                json_array_append_new(disks, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:I}", "device", d->device,
                                                       "path", d->path, "format", d->format, "bus", d->bus, "pool",
                                                       d->pool, "size", (json_int_t)d->size));
        }
        for (size_t i = 0; i < vm->n_nics; i++) {
                const vb_hv_nic *n = &vm->nics[i];
                json_array_append_new(nics, json_pack("{s:s?, s:s?, s:s?, s:s?}", "mac", n->mac, "vswitch", n->vswitch,
                                                      "profile", n->profile, "model", n->model));
        }
        j = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s, s:i, s:i, s:I, s:o, s:o}", "id", vm->id, "uuid",
                      vm->uuid, "name", vm->name, "title", vm->title, "hostId", vm->host_id, "clusterId",
                      vm->cluster_id, "hostPoolId", vm->pool_id, "state", vb_vm_state_to_string(vm->state),
                      "cpuSockets", (int)vm->cpu_sockets, "cpuCores", (int)vm->cpu_cores, "memoryMB",
                      (json_int_t)vm->memory_mb, "disks", disks, "nics", nics);
        if (j && with_config && vm->config)
                json_object_set(j, "config", vm->config);
        return j;
}

static json_t *group_json(const vb_hv_group *g, const char *parent_key)
{
        return json_pack("{s:s?, s:s?, s:s?}", "id", g->id, "name", g->name, parent_key ?: "parentId", g->parent_id);
}

json_t *vb_hv_inventory_to_json(const vb_hv_inventory *inv)
{
        json_t *pools = json_array(), *clusters = json_array(), *hosts = json_array(), *vms = json_array();

        for (size_t i = 0; i < inv->n_pools; i++)
                json_array_append_new(pools, group_json(&inv->pools[i], NULL));
        for (size_t i = 0; i < inv->n_clusters; i++)
                json_array_append_new(clusters, group_json(&inv->clusters[i], "hostPoolId"));
        for (size_t i = 0; i < inv->n_hosts; i++) {
                const vb_hv_host *h = &inv->hosts[i];
                json_array_append_new(hosts, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "id", h->id,
                                                       "name", h->name, "clusterId", h->cluster_id, "hostPoolId",
                                                       h->pool_id, "management", h->addr_management, "storage",
                                                       h->addr_storage, "backup", h->addr_backup, "up", h->up));
        }
        for (size_t i = 0; i < inv->n_vms; i++)
                json_array_append_new(vms, vb_hv_vm_to_json(&inv->vms[i], true));
        return json_pack("{s:o, s:o, s:o, s:o}", "hostPools", pools, "clusters", clusters, "hosts", hosts, "vms", vms);
}

int vb_hv_snapshot_name(char **ret)
{
        uint8_t rnd[2];
        char when[32];
        struct tm tm;
        time_t now = time(NULL);

        if (vb_random_bytes(rnd, sizeof(rnd)) < 0 || !gmtime_r(&now, &tm))
                return -EIO;
        strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
        return asprintf(ret, "vbak-%s-%02x%02x", when, rnd[0], rnd[1]) < 0 ? -ENOMEM : 0;
}

const vb_hv_driver *vb_hv_driver_find(const char *type)
{
        if (streq_ptr(type, cas_driver.name))
                return &cas_driver;
        if (streq_ptr(type, libvirt_driver.name))
                return &libvirt_driver;
        return NULL;
}
