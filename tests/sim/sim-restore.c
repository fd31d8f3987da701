/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-restore.c -- the restore path of cas-api.md §3.7: creating a VM
 * (POST vm/add), adding and removing a disk (PUT vm/addDevice, vm/delDevice)
 * and deleting a VM (DELETE vm/delete/{id}, vm/deleteVm?id=&type=). Each
 * answers a taskMsg; the work is done when the task settles (sim-tasks.c
 * calls the sim_vm_* functions here).
 *
 * DESIGN: the request checks what a client can get wrong at once (names,
 * ids, numbers, a duplicate VM name: 409 with the CAS codes, §5); what
 * depends on files (a storeFile that is missing, or whose real format is not
 * the driveType claimed) fails the task instead, with a failMsg, as CAS
 * reports what its CVK finds. A new VM is added to the model shut off with
 * the next free id and a random uuid; its disks are existing image files
 * (storeFile a path) or volumes created in a pool (storeFile a bare file
 * name, §3.7), and a failed create removes the volumes it made. A disk added
 * to a running VM is hot-plugged (sim-qemu.c); a disk cannot be removed from
 * a running VM, as QEMU's device_del waits for a guest that does not exist
 * here. Disks cannot be added or removed while the VM has snapshots (each
 * snapshot keeps one file per disk, in disk order). Whenever a VM's disks
 * lie outside its host's pools, the host's vbak-cvd is restarted to serve
 * their folders (sim_cvd_refresh).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define MiB (1024 * 1024)
#define MAX_DISKS 26

static _printf_(2, 3) int fail(char **err, const char *fmt, ...)
{
        va_list ap;

        free(*err);
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
        return -EINVAL;
}

static const char *str0(const char *s)
{
        return s ? s : "";
}

static const char *nonempty(const char *s)
{
        return s && *s ? s : NULL;
}

/* A positive integer member (dflt when missing); false when it is not one. */
static bool body_uint(json_t *o, const char *key, int64_t dflt, int64_t *out)
{
        const char *s = nonempty(sim_body_str(o, key));

        *out = dflt;
        return !s || (sim_parse_id(s, out) && *out > 0);
}

/* A non-negative integer member (dflt when missing or not one). */
static int64_t body_int(json_t *o, const char *key, int64_t dflt)
{
        int64_t v;

        return sim_parse_id(sim_body_str(o, key), &v) && v >= 0 ? v : dflt;
}

/* A libvirt domain name as S1 allows it: letters, digits, "-_.", not starting with '-' or '.', at most 64. */
static bool valid_vm_name(const char *name)
{
        if (!name || !*name || name[0] == '-' || name[0] == '.' || strlen(name) > 64)
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == strlen(name);
}

static bool valid_format(const char *f)
{
        return !f || streq(f, "qcow2") || streq(f, "raw");
}

/* S1's disk `mode` as a qemu-img preallocation: 0 lazy zeroed, 1 zeroed, else thin. */
static const char *mode_prealloc(const char *mode)
{
        return !mode ? NULL : streq(mode, "0") ? "falloc" : streq(mode, "1") ? "full" : NULL;
}

static void disk_free(sim_disk *d)
{
        free(d->device);
        free(d->path);
        free(d->backing);
        free(d->format);
        free(d->bus);
        free(d->pool);
        *d = (sim_disk){ 0 };
}

/* vda, vdb ...: the first name no disk of vm has. */
static char *free_device(const sim_disk *disks, size_t n)
{
        for (char c = 'a'; c <= 'z'; c++) {
                char dev[8];
                bool used = false;

                snprintf(dev, sizeof(dev), "vd%c", c);
                for (size_t i = 0; i < n && !used; i++)
                        used = streq(disks[i].device, dev);
                if (!used)
                        return strdup(dev);
        }
        return NULL;
}

typedef struct {
        const char *path;      /* an existing image, or NULL: */
        const char *pool;      /* a new volume file_name of size_mb in this pool */
        const char *file_name; /* (pool NULL: the host's first pool) */
        int64_t size_mb;
        const char *format;   /* what the client says the format is; NULL: take the file's */
        const char *prealloc; /* a new volume's preallocation, NULL for none */
        const char *bus;
} disk_req;

/* Fills d (path, format, size, pool) from r on host h; *created is set when a volume was made. */
static int resolve_disk(sim_host *h, const disk_req *r, sim_disk *d, bool *created, char **err)
{
        _cleanup_free_ char *real = NULL;
        uint64_t size = 0;
        sim_spool *p;
        int k;

        *created = false;
        if (r->path) {
                k = sim_image_probe(r->path, &real, &size, NULL);
                if (k < 0)
                        return fail(err, "存储文件%s不可用：%s。", r->path, strerror(-k));
                if (r->format && !streq(r->format, real))
                        return fail(err, "存储文件%s的格式是%s，与指定的格式%s不一致。", r->path, real, r->format);
                p = sim_model_spool_of_path(h, r->path);
                d->path = strdup(r->path);
                d->format = TAKE_PTR(real);
                d->size_mb = DIV_ROUND_UP(size, MiB);
                d->pool = strdup(p ? p->name : str0(r->pool));
        } else {
                struct stat st;

                p = r->pool ? sim_model_spool(h, r->pool) : h->n_pools ? &h->pools[0] : NULL;
                if (!p)
                        return fail(err, "主机%s上没有存储池%s。", h->name, str0(r->pool));
                if (asprintf(&d->path, "%s/%s", p->path, r->file_name) < 0)
                        return -ENOMEM;
                if (stat(d->path, &st) == 0)
                        return fail(err, "存储卷%s已存在。", d->path);
                d->format = strdup(r->format ? r->format : "qcow2");
                if (!d->format)
                        return -ENOMEM;
                k = sim_qemu_img_create(d->path, d->format, (uint64_t)r->size_mb, r->prealloc, NULL, NULL, NULL, err);
                if (k < 0)
                        return k;
                *created = true;
                d->size_mb = (uint64_t)r->size_mb;
                d->pool = strdup(p->name);
        }
        d->bus = strdup(r->bus ? r->bus : "virtio");
        return d->path && d->format && d->pool && d->bus ? 0 : -ENOMEM;
}

/* The hosts' services follow the VMs' disks; a failure here does not undo the change. */
static void refresh_cvd(sim_model *m, int64_t host_id)
{
        _cleanup_free_ char *err = NULL;
        sim_host *h = sim_model_host(m, host_id);

        if (h && sim_cvd_refresh(m, h, &err) < 0)
                log_warning("%s", err ? err : "vbak-cvd restart failed");
}

static int random_uuid(char **out)
{
        uint8_t b[16];
        int r = vb_random_bytes(b, sizeof(b));

        if (r < 0)
                return r;
        b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
        b[8] = (b[8] & 0x3f) | 0x80;
        if (asprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                     b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]) < 0)
                return -ENOMEM;
        return 0;
}

/* The createDate form of the topology: 2024-01-01T08:00:00+08:00. */
static char *now_date(void)
{
        time_t t = time(NULL);
        struct tm tm;
        char base[32], zone[8], *out;

        localtime_r(&t, &tm);
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        strftime(zone, sizeof(zone), "%z", &tm);
        if (asprintf(&out, "%s%.3s:%s", base, zone, zone + 3) < 0)
                return NULL;
        return out;
}

/* The disk_req of a vm/add <storage>. */
static disk_req add_storage_req(json_t *s)
{
        const char *file = sim_body_str(s, "storeFile");
        disk_req r = {
                .pool = nonempty(sim_body_str(s, "poolName")),
                .format = nonempty(sim_body_str(s, "driveType")),
                .prealloc = mode_prealloc(sim_body_str(s, "mode")),
                .bus = nonempty(sim_body_str(s, "targetBus")),
        };

        if (file && strchr(file, '/'))
                r.path = file;
        else
                r.file_name = file;
        (void)body_uint(s, "capacity", 0, &r.size_mb);
        return r;
}

static bool is_disk(json_t *s)
{
        const char *dev = nonempty(sim_body_str(s, "device"));

        return !dev || streq(dev, "disk");
}

int sim_vm_add(sim_model *m, json_t *spec, int64_t *new_id, char **err)
{
        const char *name = sim_body_str(spec, "name");
        _cleanup_(json_decrefp) json_t *storage = sim_body_list(spec, "storage");
        _cleanup_(json_decrefp) json_t *network = sim_body_list(spec, "network");
        sim_vm v = { 0 }, *arr;
        bool made[MAX_DISKS] = { false }; /* the volumes this create made: removed when it fails */
        sim_host *h;
        int64_t host_id = 0, n;
        json_t *x;
        size_t i;
        int r = 0;

        if (!sim_parse_id(sim_body_str(spec, "hostId"), &host_id) || !(h = sim_model_host(m, host_id)))
                return fail(err, "主机不存在。");
        if (sim_model_vm_by_name(m, name))
                return fail(err, "虚拟机%s已存在。", name);
        json_array_foreach(storage, i, x)
        {
                disk_req req = add_storage_req(x);
                sim_disk *d;

                if (!is_disk(x))
                        continue; /* a cdrom or floppy: nothing the simulator models */
                if (v.n_disks == MAX_DISKS) {
                        r = fail(err, "磁盘太多。");
                        break;
                }
                d = realloc(v.disks, (v.n_disks + 1) * sizeof(*d));
                if (!d) {
                        r = -ENOMEM;
                        break;
                }
                v.disks = d;
                d = &v.disks[v.n_disks++];
                *d = (sim_disk){ .device = free_device(v.disks, v.n_disks - 1) };
                r = d->device ? resolve_disk(h, &req, d, &made[v.n_disks - 1], err) : -ENOMEM;
                if (r < 0)
                        break;
        }
        for (i = 0; r >= 0 && i < json_array_size(network); i++) {
                sim_nic *nic = realloc(v.nics, (v.n_nics + 1) * sizeof(*nic));
                char mac[18];
                int64_t vs_id;

                x = json_array_get(network, i);
                if (!nic) {
                        r = -ENOMEM;
                        break;
                }
                v.nics = nic;
                nic = &v.nics[v.n_nics++];
                *nic = (sim_nic){ 0 };
                snprintf(mac, sizeof(mac), "0c:da:41:1d:%02x:%02x", (unsigned)(m->next_vm_id & 0xff), (unsigned)i);
                nic->mac = strdup(nonempty(sim_body_str(x, "mac")) ?: mac);
                nic->vs_name = strdup(nonempty(sim_body_str(x, "vsName")) ?: "vswitch0");
                nic->ip = strdup(str0(sim_body_str(x, "ipAddr")));
                nic->model = strdup(nonempty(sim_body_str(x, "deviceModel")) ?: "virtio");
                nic->vs_id = body_uint(x, "vsId", 1, &vs_id) ? vs_id : 1;
                nic->profile_id = body_uint(x, "profileId", 1, &n) ? n : 1;
                if (!nic->mac || !nic->vs_name || !nic->ip || !nic->model)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                v.id = m->next_vm_id;
                v.host_id = host_id;
                v.name = strdup(name);
                v.title = strdup(nonempty(sim_body_str(spec, "title")) ?: name);
                v.description = strdup(str0(sim_body_str(spec, "description")));
                v.os_version = strdup(nonempty(sim_body_str(spec, "osVersion")) ?: "Linux");
                v.cpu_mode = strdup(nonempty(sim_body_str(spec, "cpuMode")) ?: "custom");
                v.create_date = now_date();
                v.system = (int)body_int(spec, "system", 1);
                v.cpu_sockets = body_uint(spec, "cpuSockets", 1, &n) ? (int)n : 1;
                v.cpu_cores = body_uint(spec, "cpuCores", 1, &n) ? (int)n : 1;
                v.memory_mb = body_uint(spec, "memory", 512, &n) ? (uint64_t)n : 512;
                v.cbt_valid = true;
                r = random_uuid(&v.uuid);
                if (r >= 0 && (!v.name || !v.title || !v.description || !v.os_version || !v.cpu_mode || !v.create_date))
                        r = -ENOMEM;
        }
        if (r >= 0) {
                arr = realloc(m->vms, (m->n_vms + 1) * sizeof(*arr));
                if (!arr)
                        r = -ENOMEM;
                else
                        m->vms = arr;
        }
        if (r < 0) {
                for (size_t k = 0; k < v.n_disks; k++)
                        if (made[k])
                                (void)unlink(v.disks[k].path);
                sim_vm_free(&v);
                if (r == -ENOMEM && !*err)
                        *err = strdup("内存不足。");
                return r;
        }
        m->vms[m->n_vms++] = v;
        m->next_vm_id++;
        *new_id = v.id;
        log_info("VM %s added as id %" PRId64 " on host %s (%zu disks)", v.name, v.id, h->name, v.n_disks);
        refresh_cvd(m, host_id);
        return 0;
}

/* Placement by cluster only: its active host with the fewest VMs (the first of equals). */
static sim_host *least_loaded(sim_model *m, int64_t cluster_id)
{
        sim_host *best = NULL;
        size_t best_load = SIZE_MAX;

        for (size_t k = 0; k < m->n_hosts; k++) {
                sim_host *h = &m->hosts[k];
                size_t load = 0;

                if (h->cluster_id != cluster_id || h->status != 1 || sim_fault_host(SIM_FAULT_HOST_DOWN, h))
                        continue;
                for (size_t i = 0; i < m->n_vms; i++)
                        load += m->vms[i].host_id == h->id;
                if (load < best_load) {
                        best = h;
                        best_load = load;
                }
        }
        return best;
}

/* POST vm/add: <domain> (§3.7). 1002 when the name is taken (or about to be). */
void sim_r_vm_add(sim_route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = sim_parse_body(c->body, "domain");
        _cleanup_(json_decrefp) json_t *storage = sim_body_list(b, "storage");
        const char *name = sim_body_str(b, "name");
        int64_t host_id = 0, cluster_id = 0, n;
        sim_host *h = NULL;
        json_t *x, *t;
        size_t i;

        if (!valid_vm_name(name))
                return sim_reply_error(c->rep, 11, "虚拟机名称无效。");
        if (sim_model_vm_by_name(c->m, name) || sim_task_pending(SIM_TASK_VM_ADD, name))
                return sim_reply_error(c->rep, 1002, "虚拟机已存在。");
        if (nonempty(sim_body_str(b, "hostId")) &&
            (!sim_parse_id(sim_body_str(b, "hostId"), &host_id) || !(h = sim_model_host(c->m, host_id))))
                return sim_reply_error(c->rep, 402, "主机不存在。");
        if (nonempty(sim_body_str(b, "clusterId")) &&
            (!sim_parse_id(sim_body_str(b, "clusterId"), &cluster_id) || !sim_model_cluster(c->m, cluster_id)))
                return sim_reply_error(c->rep, 11, "集群不存在。");
        if (h && cluster_id && h->cluster_id != cluster_id)
                return sim_reply_error(c->rep, 11, "主机不属于指定的集群。");
        if (!h && !cluster_id)
                return sim_reply_error(c->rep, 11, "请指定主机或集群。");
        if (!h)
                h = least_loaded(c->m, cluster_id);
        if (!h)
                return sim_reply_error(c->rep, 11, "集群中没有可用的主机。");
        if (sim_fault_host(SIM_FAULT_HOST_DOWN, h))
                return sim_reply_error(c->rep, 402, "主机连接中断。");
        if (!body_uint(b, "memory", 512, &n) || !body_uint(b, "cpuSockets", 1, &n) || !body_uint(b, "cpuCores", 1, &n))
                return sim_reply_error(c->rep, 11, "内存或CPU参数无效。");
        json_array_foreach(storage, i, x)
        {
                disk_req r = add_storage_req(x);

                if (!is_disk(x))
                        continue;
                if (!valid_format(r.format))
                        return sim_reply_error(c->rep, 11, "存储卷格式无效，只支持qcow2和raw。");
                if (r.path)
                        continue;
                if (!sim_valid_file_name(r.file_name))
                        return sim_reply_error(c->rep, 11, "存储文件无效。");
                if (r.pool ? !sim_model_spool(h, r.pool) : h->n_pools == 0)
                        return sim_reply_error(c->rep, 11, "存储池不存在。");
                if (!body_uint(x, "capacity", 0, &n) || n <= 0)
                        return sim_reply_error(c->rep, 11, "存储卷容量无效。");
        }
        json_object_set_new(b, "hostId", json_sprintf("%" PRId64, h->id));
        t = sim_task_start_spec(c->m, SIM_TASK_VM_ADD, NULL, 0, name, name, b);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

/* The <storage> of an addDevice / delDevice body (an object; the first of a list). */
static json_t *body_storage(json_t *b)
{
        json_t *s = json_object_get(b, "storage");

        if (json_is_array(s))
                s = json_array_get(s, 0);
        return json_is_object(s) ? s : NULL;
}

/* The VM an addDevice / delDevice body names: id, else uuid. */
static sim_vm *body_vm(sim_route_ctx *c, json_t *b)
{
        const char *id = nonempty(sim_body_str(b, "id"));

        return sim_route_vm(c, id ? id : sim_body_str(b, "uuid"));
}

static sim_disk *find_disk(sim_vm *vm, json_t *s)
{
        const char *dev = nonempty(sim_body_str(s, "deviceName")), *path = nonempty(sim_body_str(s, "path"));

        for (size_t i = 0; i < vm->n_disks; i++)
                if ((dev && streq(vm->disks[i].device, dev)) || (!dev && path && streq(vm->disks[i].path, path)))
                        return &vm->disks[i];
        return NULL;
}

/* The disk_req of an addDevice <storage>: path (pathType 0), or poolName + fileName + size (pathType 2). */
static disk_req device_req(json_t *s)
{
        disk_req r = {
                .path = nonempty(sim_body_str(s, "path")),
                .pool = nonempty(sim_body_str(s, "poolName")),
                .file_name = nonempty(sim_body_str(s, "fileName")),
                .format = nonempty(sim_body_str(s, "format")) ?: nonempty(sim_body_str(s, "driveType")),
                .prealloc = mode_prealloc(sim_body_str(s, "mode")),
                .bus = nonempty(sim_body_str(s, "targetBus")),
        };

        (void)body_uint(s, "size", 0, &r.size_mb);
        return r;
}

int sim_vm_add_disk(sim_model *m, sim_vm *vm, json_t *storage, char **err)
{
        const char *dev = nonempty(sim_body_str(storage, "deviceName"));
        disk_req req = device_req(storage);
        sim_host *h = sim_model_host(m, vm->host_id);
        sim_disk d = { 0 }, *arr;
        bool created = false;
        int r;

        if (!h)
                return fail(err, "主机不存在。");
        if (vm->n_snaps)
                return fail(err, "虚拟机存在快照，不能增加磁盘。");
        if (vm->n_disks >= MAX_DISKS)
                return fail(err, "磁盘数量已达上限。");
        if (dev && find_disk(vm, storage))
                return fail(err, "设备%s已存在。", dev);
        d.device = dev ? strdup(dev) : free_device(vm->disks, vm->n_disks);
        r = d.device ? resolve_disk(h, &req, &d, &created, err) : -ENOMEM;
        if (r >= 0) {
                arr = realloc(vm->disks, (vm->n_disks + 1) * sizeof(*arr));
                if (arr) {
                        vm->disks = arr;
                        vm->disks[vm->n_disks++] = d;
                        d = (sim_disk){ 0 };
                } else {
                        r = -ENOMEM;
                }
        }
        if (r >= 0 && vm->pid > 0) {
                r = sim_qemu_hotplug(vm, vm->n_disks - 1, err);
                if (r < 0)
                        d = vm->disks[--vm->n_disks];
        }
        if (r < 0) {
                if (created)
                        (void)unlink(d.path);
                disk_free(&d);
                if (r == -ENOMEM && !*err)
                        *err = strdup("内存不足。");
                return r;
        }
        log_info("VM %s: disk %s added (%s)", vm->name, vm->disks[vm->n_disks - 1].device,
                 vm->disks[vm->n_disks - 1].path);
        refresh_cvd(m, vm->host_id);
        return 0;
}

/* PUT vm/addDevice: <domain> with id or uuid and one <storage> (§3.7). */
void sim_r_vm_add_device(sim_route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = sim_parse_body(c->body, "domain");
        sim_vm *vm = body_vm(c, b);
        json_t *s, *t;
        disk_req r;
        const char *dev;

        if (!vm)
                return;
        s = body_storage(b);
        if (!s || !is_disk(s))
                return sim_reply_error(c->rep, 11, "不支持的设备：只能增加磁盘。");
        r = device_req(s);
        dev = nonempty(sim_body_str(s, "deviceName"));
        if (dev && (strlen(dev) > 16 || strspn(dev, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(dev)))
                return sim_reply_error(c->rep, 11, "设备名称无效。");
        if (dev && find_disk(vm, s))
                return sim_reply_error(c->rep, 11, "设备名称已存在。");
        if (!valid_format(r.format))
                return sim_reply_error(c->rep, 11, "存储卷格式无效，只支持qcow2和raw。");
        if (r.path && r.path[0] != '/')
                return sim_reply_error(c->rep, 11, "存储文件路径无效。");
        if (!r.path) {
                sim_host *h = sim_model_host(c->m, vm->host_id);

                if (!sim_valid_file_name(r.file_name))
                        return sim_reply_error(c->rep, 11, "存储文件无效。");
                if (!h || (r.pool ? !sim_model_spool(h, r.pool) : h->n_pools == 0))
                        return sim_reply_error(c->rep, 11, "存储池不存在。");
                if (r.size_mb <= 0)
                        return sim_reply_error(c->rep, 11, "存储卷容量无效。");
        }
        t = sim_task_start_spec(c->m, SIM_TASK_ADD_DEVICE, vm, 0, NULL, NULL, s);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

int sim_vm_del_disk(sim_vm *vm, json_t *storage, char **err)
{
        sim_disk *d = find_disk(vm, storage);
        size_t i;

        if (!d)
                return fail(err, "虚拟机%s没有磁盘%s。", vm->name,
                            nonempty(sim_body_str(storage, "deviceName")) ?: str0(sim_body_str(storage, "path")));
        if (vm->running || vm->pid > 0)
                return fail(err, "虚拟机%s正在运行，不能卸载磁盘%s：热拔出需要客户机操作系统响应，请先关闭虚拟机。",
                            vm->name, d->device);
        if (vm->n_snaps)
                return fail(err, "虚拟机存在快照，不能卸载磁盘。");
        log_info("VM %s: disk %s removed (%s stays)", vm->name, d->device, d->path);
        i = (size_t)(d - vm->disks);
        disk_free(d);
        memmove(&vm->disks[i], &vm->disks[i + 1], (vm->n_disks - i - 1) * sizeof(*d));
        vm->n_disks--;
        return 0;
}

/* PUT vm/delDevice: <domain> with id or uuid and <storage><deviceName> (or <path>). */
void sim_r_vm_del_device(sim_route_ctx *c)
{
        _cleanup_(json_decrefp) json_t *b = sim_parse_body(c->body, "domain");
        sim_vm *vm = body_vm(c, b);
        json_t *s, *t;

        if (!vm)
                return;
        s = body_storage(b);
        if (!s || !find_disk(vm, s))
                return sim_reply_error(c->rep, 11, "磁盘不存在。");
        t = sim_task_start_spec(c->m, SIM_TASK_DEL_DEVICE, vm, 0, NULL, NULL, s);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

/* Adds path to files[] unless it is there or another VM holds it (a shared base). */
static int collect_file(sim_model *m, const sim_vm *vm, const char *path, char ***files, size_t *n)
{
        _cleanup_free_ char *users = NULL;
        char **arr;

        if (!path)
                return 0;
        for (size_t i = 0; i < *n; i++)
                if (streq((*files)[i], path))
                        return 0;
        for (size_t i = 0; i < m->n_vms; i++) {
                if (&m->vms[i] == vm)
                        continue;
                for (size_t k = 0; k < m->vms[i].n_disks; k++)
                        if (streq(m->vms[i].disks[k].path, path) || streq_ptr(m->vms[i].disks[k].backing, path))
                                return 0;
        }
        arr = realloc(*files, (*n + 1) * sizeof(*arr));
        if (!arr)
                return -ENOMEM;
        *files = arr;
        arr[*n] = strdup(path);
        if (!arr[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

int sim_vm_delete(sim_model *m, sim_vm *vm, bool files, char **err)
{
        char **list = NULL, *name = strdup(vm->name);
        int64_t host_id = vm->host_id;
        size_t n = 0;
        int r = name ? 0 : -ENOMEM;

        if (r >= 0 && (vm->running || vm->pid > 0))
                r = fail(err, "虚拟机%s正在运行，不能删除，请先关闭虚拟机。", vm->name);
        for (size_t i = 0; r >= 0 && files && i < vm->n_disks; i++) {
                r = collect_file(m, vm, vm->disks[i].path, &list, &n);
                if (r >= 0)
                        r = collect_file(m, vm, vm->disks[i].backing, &list, &n);
        }
        for (size_t i = 0; r >= 0 && files && i < vm->n_snaps; i++)
                for (size_t k = 0; r >= 0 && k < vm->snaps[i].n_files; k++) {
                        r = collect_file(m, vm, vm->snaps[i].files[k].top, &list, &n);
                        if (r >= 0)
                                r = collect_file(m, vm, vm->snaps[i].files[k].base, &list, &n);
                }
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (unlink(list[i]) < 0 && errno != ENOENT)
                        r = fail(err, "删除%s失败：%s。", list[i], strerror(errno));
        if (r >= 0) {
                sim_model_vm_remove(m, vm);
                log_info("VM %s deleted (%zu files removed)", name, n);
                refresh_cvd(m, host_id);
        }
        for (size_t i = 0; i < n; i++)
                free(list[i]);
        free(list);
        free(name);
        if (r == -ENOMEM && !*err)
                *err = strdup("内存不足。");
        return r;
}

static void delete_task(sim_route_ctx *c, sim_vm *vm, const char *type)
{
        _cleanup_(json_decrefp) json_t *spec = json_pack("{s:s}", "type", type);
        json_t *t = spec ? sim_task_start_spec(c->m, SIM_TASK_VM_DELETE, vm, 0, NULL, NULL, spec) : NULL;

        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

/* DELETE vm/delete/{id}: the VM goes, its files stay. */
void sim_r_vm_delete(sim_route_ctx *c)
{
        sim_vm *vm = sim_route_vm(c, c->seg[0]);

        if (vm)
                delete_task(c, vm, "0");
}

/* DELETE vm/deleteVm?id=&type=0|1[&isWipeVolume=]: type 1 removes the disk files too. */
void sim_r_vm_delete_vm(sim_route_ctx *c)
{
        const char *type = nonempty(sim_request_arg(c->req, "type")) ?: "0";
        sim_vm *vm = sim_route_vm(c, sim_request_arg(c->req, "id"));

        if (!vm)
                return;
        if (!streq(type, "0") && !streq(type, "1"))
                return sim_reply_error(c->rep, 11, "参数type无效。");
        delete_task(c, vm, type);
}
