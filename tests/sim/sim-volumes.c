/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-volumes.c -- storage volumes (cas-api.md §3.6): the files of a storage
 * pool's folder as CAS lists them (GET storage/volume), creating one (POST
 * storage/volume, a task; the old POST storage/volume/add, synchronous) and
 * deleting one (DELETE storage/volume/delete/{hostId}/{pool}/{name}).
 *
 * DESIGN: a volume is a real file. The list is read from the pool folder at
 * every request (readdir, plus one level of sub-folders: the `secDir` of a
 * create), not from the model, so whatever made the file (qemu-img at start,
 * a create task, an external snapshot, a restore client writing through
 * vbak-cvd) shows. Format, virtual size and backing file come from the image
 * header (the qcow2 magic and fields; anything else is raw of the file's
 * size): that is what `qemu-img info` would say, without a process per
 * file. `level` follows CAS (§3.4: 0 the top file, >0 a base): a file is one
 * level above the highest file of the folder that backs onto it. `users`
 * names the VMs whose image chain (disks, backing files, snapshot files of
 * the model) holds the file; such a file cannot be deleted. A create's
 * preallocation is a guess: the real field is unknown, so `preallocation`
 * (off, metadata, falloc, full: qemu-img's words) is taken, else S1's `mode`
 * (0 lazy zeroed -> falloc, 1 zeroed -> full, anything else thin -> off).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define MiB (1024 * 1024)
#define BACKING_MAX 4096

typedef struct {
        char *name, *path, *format, *backing; /* backing: resolved to a path, NULL without one */
        uint64_t size, alloc;                 /* bytes */
        int level;
} volume;

static const char *str0(const char *s)
{
        return s ? s : "";
}

static uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int sim_image_probe(const char *path, char **format, uint64_t *size, char **backing)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t hdr[32];
        struct stat st;
        bool qcow2;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        r = vb_pread_all(fd, hdr, sizeof(hdr), 0);
        /* qcow2: magic "QFI\xfb", backing file offset (8) and length (16), virtual size (24). */
        qcow2 = r >= 0 && memcmp(hdr, "QFI\xfb", 4) == 0;
        if (format && !(*format = strdup(qcow2 ? "qcow2" : "raw")))
                return -ENOMEM;
        if (size)
                *size = qcow2 ? get_be64(hdr + 24) : (uint64_t)st.st_size;
        if (backing) {
                uint64_t off = qcow2 ? get_be64(hdr + 8) : 0;
                uint32_t len = qcow2 ? get_be32(hdr + 16) : 0;

                *backing = NULL;
                if (off && len && len < BACKING_MAX) {
                        *backing = calloc(1, len + 1);
                        if (!*backing)
                                return -ENOMEM;
                        if (vb_pread_all(fd, *backing, len, (off_t)off) < 0) {
                                free(*backing);
                                *backing = NULL;
                        }
                }
        }
        return 0;
}

bool sim_valid_file_name(const char *name)
{
        if (!name || !*name || name[0] == '.' || strlen(name) > 255)
                return false;
        for (const char *p = name; *p; p++)
                if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20)
                        return false;
        return true;
}

static bool vm_holds(const sim_vm *vm, const char *path)
{
        for (size_t k = 0; k < vm->n_disks; k++)
                if (streq(vm->disks[k].path, path) || streq_ptr(vm->disks[k].backing, path))
                        return true;
        for (size_t k = 0; k < vm->n_snaps; k++)
                for (size_t f = 0; f < vm->snaps[k].n_files; f++)
                        if (streq_ptr(vm->snaps[k].files[f].top, path) || streq_ptr(vm->snaps[k].files[f].base, path))
                                return true;
        return false;
}

char *sim_volume_users(sim_model *m, const char *path)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        bool first = true;

        if (!f)
                return NULL;
        for (size_t i = 0; i < m->n_vms; i++) {
                if (!vm_holds(&m->vms[i], path))
                        continue;
                fprintf(f, "%s%s", first ? "" : ",", m->vms[i].name);
                first = false;
        }
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

static void volumes_free(volume *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].name);
                free(v[i].path);
                free(v[i].format);
                free(v[i].backing);
        }
        free(v);
}

/* A relative backing file name is relative to the image's folder (qemu's rule). */
static char *resolve_backing(const char *image, const char *backing)
{
        const char *slash = strrchr(image, '/');
        char *out;

        if (backing[0] == '/' || !slash)
                return strdup(backing);
        if (asprintf(&out, "%.*s/%s", (int)(slash - image), image, backing) < 0)
                return NULL;
        return out;
}

static int add_file(volume **vols, size_t *n, const char *dir, const char *name)
{
        _cleanup_free_ char *path = NULL, *backing = NULL;
        volume *arr, *v;
        struct stat st;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        arr = realloc(*vols, (*n + 1) * sizeof(*arr));
        if (!arr)
                return -ENOMEM;
        *vols = arr;
        v = &arr[(*n)++];
        *v = (volume){ .alloc = (uint64_t)st.st_blocks * 512 };
        if (sim_image_probe(path, &v->format, &v->size, &backing) < 0 && !v->format)
                v->format = strdup("raw");
        if (backing)
                v->backing = resolve_backing(path, backing);
        v->name = strdup(name);
        v->path = TAKE_PTR(path);
        return v->name && v->format ? 0 : -ENOMEM;
}

static int cmp_volume(const void *a, const void *b)
{
        return strcmp(((const volume *)a)->path, ((const volume *)b)->path);
}

/* The files of the pool folder and of its sub-folders (secDir), sorted by path, with their levels. */
static int scan_pool(const sim_spool *p, volume **out, size_t *n_out)
{
        volume *vols = NULL;
        size_t n = 0;
        DIR *d = opendir(p->path);
        struct dirent *e;
        int r = 0;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while (r >= 0 && (e = readdir(d))) {
                _cleanup_free_ char *sub = NULL;
                struct stat st;
                DIR *sd;

                if (e->d_name[0] == '.')
                        continue;
                if (asprintf(&sub, "%s/%s", p->path, e->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (stat(sub, &st) < 0)
                        continue;
                if (S_ISREG(st.st_mode)) {
                        r = add_file(&vols, &n, p->path, e->d_name);
                        continue;
                }
                if (!S_ISDIR(st.st_mode) || !(sd = opendir(sub)))
                        continue;
                for (struct dirent *se; r >= 0 && (se = readdir(sd));)
                        if (se->d_name[0] != '.')
                                r = add_file(&vols, &n, sub, se->d_name);
                closedir(sd);
        }
        closedir(d);
        if (r < 0) {
                volumes_free(vols, n);
                return r;
        }
        if (n) /* an empty pool has no array at all */
                qsort(vols, n, sizeof(*vols), cmp_volume);
        /* Each pass lifts a base above the files on it; a chain of n files settles in n passes. */
        for (size_t pass = 0; pass < n; pass++) {
                bool changed = false;

                for (size_t i = 0; i < n; i++)
                        for (size_t k = 0; k < n; k++)
                                if (vols[k].backing && streq(vols[k].backing, vols[i].path) &&
                                    vols[i].level < vols[k].level + 1) {
                                        vols[i].level = vols[k].level + 1;
                                        changed = true;
                                }
                if (!changed)
                        break;
        }
        *out = vols;
        *n_out = n;
        return 0;
}

uint64_t sim_spool_loose_mb(sim_model *m, const sim_host *h, const sim_spool *p)
{
        volume *vols = NULL;
        size_t n = 0;
        uint64_t mb = 0;

        if (scan_pool(p, &vols, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                bool used = false;

                for (size_t k = 0; !used && k < m->n_vms; k++)
                        used = vm_holds(&m->vms[k], vols[i].path);
                if (!used)
                        mb += DIV_ROUND_UP(vols[i].size, MiB);
        }
        volumes_free(vols, n);
        return mb;
}

/* storageVolume (§3.6, S1 RsStorageVolumeList): sizes in MB as reals. */
static json_t *view_volume(sim_model *m, const sim_host *h, const sim_spool *p, const volume *v)
{
        json_t *o = json_object();
        _cleanup_free_ char *users = sim_volume_users(m, v->path);

        json_object_set_new(o, "name", json_string(v->name));
        json_object_set_new(o, "path", json_string(v->path));
        json_object_set_new(o, "size", json_real((double)v->size / MiB));
        json_object_set_new(o, "allocation", json_real((double)v->alloc / MiB));
        json_object_set_new(o, "format", json_string(v->format));
        json_object_set_new(o, "type", json_string("file"));
        json_object_set_new(o, "users", json_string(str0(users)));
        json_object_set_new(o, "backingStore", json_string(str0(v->backing)));
        json_object_set_new(o, "level", json_integer(v->level));
        json_object_set_new(o, "storagePoolName", json_string(p->name));
        json_object_set_new(o, "hostName", json_string(h->name));
        return o;
}

/* The host of a hostId (402 when unknown or down) and its pool of a name (11). */
static int host_pool(sim_route_ctx *c, const char *host_id, const char *pool, sim_host **h, sim_spool **p)
{
        int64_t id;

        if (!sim_parse_id(host_id, &id) || !(*h = sim_model_host(c->m, id))) {
                sim_reply_error(c->rep, 402, "主机不存在。");
                return -ENOENT;
        }
        if (sim_fault_host(SIM_FAULT_HOST_DOWN, *h)) {
                sim_reply_error(c->rep, 402, "主机连接中断。");
                return -EHOSTDOWN;
        }
        if (!pool || !(*p = sim_model_spool(*h, pool))) {
                sim_reply_error(c->rep, 11, "存储池不存在。");
                return -ENOENT;
        }
        return 0;
}

/* GET storage/volume?hostId=&poolName=[&volumeName=&offset=&pageSize=] (§1.4: offset 0-based). */
void sim_r_volume_list(sim_route_ctx *c)
{
        const char *want = sim_request_arg(c->req, "volumeName");
        json_t *list, *a;
        volume *vols = NULL;
        size_t n = 0;
        int64_t offset = 0, page = -1, total = 0;
        sim_host *h;
        sim_spool *p;

        if (host_pool(c, sim_request_arg(c->req, "hostId"), sim_request_arg(c->req, "poolName"), &h, &p) < 0)
                return;
        if (scan_pool(p, &vols, &n) < 0)
                return sim_reply_error(c->rep, 11, "读取存储池失败。");
        (void)sim_route_arg_id(c, "offset", &offset);
        (void)sim_route_arg_id(c, "pageSize", &page);
        a = json_array();
        for (size_t i = 0; i < n; i++) {
                if (want && *want && !streq(vols[i].name, want))
                        continue;
                if (total++ >= MAX(offset, 0) && (page < 0 || (int64_t)json_array_size(a) < page))
                        json_array_append_new(a, view_volume(c->m, h, p, &vols[i]));
        }
        volumes_free(vols, n);
        list = json_object();
        json_object_set_new(list, "storageVolume", a);
        sim_reply_tree(c->rep, "list", list);
        c->rep->total = total;
}

/* prealloc: the guessed `preallocation` field, else S1's `mode`; NULL when invalid. */
static const char *prealloc_of(json_t *b, const char *format)
{
        const char *pre = sim_body_str(b, "preallocation"), *mode = sim_body_str(b, "mode");

        if (!pre)
                pre = !mode ? "off" : streq(mode, "0") ? "falloc" : streq(mode, "1") ? "full" : "off";
        if (streq(pre, "off") || streq(pre, "falloc") || streq(pre, "full"))
                return pre;
        /* metadata preallocation exists for qcow2 only */
        return streq(pre, "metadata") && streq(format, "qcow2") ? pre : NULL;
}

/* A <volAddParameter> as the spec of sim_volume_create(); NULL after a 409. */
static json_t *volume_spec(sim_route_ctx *c, sim_host **host, const char **vol_name)
{
        _cleanup_(json_decrefp) json_t *b = sim_parse_body(c->body, "volAddParameter");
        const char *name = sim_body_str(b, "volName"), *sec = sim_body_str(b, "secDir");
        const char *format = sim_body_str(b, "format"), *base = sim_body_str(b, "baseFile");
        const char *cluster = sim_body_str(b, "clusterSize"), *pre;
        _cleanup_free_ char *path = NULL;
        int64_t capacity;
        sim_spool *p;
        struct stat st;
        json_t *spec;

        if (host_pool(c, sim_body_str(b, "hostId"), sim_body_str(b, "spName"), host, &p) < 0)
                return NULL;
        if (!sim_valid_file_name(name))
                return sim_reply_error(c->rep, 11, "存储卷名称无效。"), NULL;
        if (sec && *sec && !sim_valid_file_name(sec))
                return sim_reply_error(c->rep, 11, "二级目录名称无效。"), NULL;
        if (!sim_parse_id(sim_body_str(b, "capacity"), &capacity) || capacity <= 0)
                return sim_reply_error(c->rep, 11, "存储卷容量无效。"), NULL;
        format = format && *format ? format : "qcow2";
        if (!streq(format, "qcow2") && !streq(format, "raw"))
                return sim_reply_error(c->rep, 11, "存储卷格式无效，只支持qcow2和raw。"), NULL;
        pre = prealloc_of(b, format);
        if (!pre)
                return sim_reply_error(c->rep, 11, "预分配方式无效。"), NULL;
        cluster = cluster ? cluster : sim_body_str(b, "clustersize"); /* the old interface's spelling */
        if (cluster && *cluster && strspn(cluster, "0123456789") != strlen(cluster))
                return sim_reply_error(c->rep, 11, "簇大小无效。"), NULL;
        if (base && *base && (base[0] != '/' || stat(base, &st) < 0 || !streq(format, "qcow2")))
                return sim_reply_error(c->rep, 11, "基础镜像文件无效。"), NULL;
        if (asprintf(&path, "%s/%s%s%s", p->path, sec && *sec ? sec : "", sec && *sec ? "/" : "", name) < 0)
                return sim_reply_error(c->rep, 11, "内部错误。"), NULL;
        if (stat(path, &st) == 0 || sim_task_pending(SIM_TASK_VOL_CREATE, path))
                return sim_reply_error(c->rep, 11, "存储卷已存在。"), NULL;
        spec = json_pack("{s:s, s:s, s:I, s:s}", "path", path, "format", format, "capacity", (json_int_t)capacity,
                         "preallocation", pre);
        if (spec && cluster && *cluster && streq(format, "qcow2"))
                json_object_set_new(spec, "clusterSize", json_string(cluster));
        if (spec && base && *base)
                json_object_set_new(spec, "baseFile", json_string(base));
        if (!spec)
                return sim_reply_error(c->rep, 11, "内部错误。"), NULL;
        *vol_name = json_string_value(json_object_get(spec, "path"));
        *vol_name = strrchr(*vol_name, '/') + 1;
        return spec;
}

int sim_volume_create(json_t *spec, char **err)
{
        const char *path = json_string_value(json_object_get(spec, "path"));
        const char *format = json_string_value(json_object_get(spec, "format"));
        const char *pre = json_string_value(json_object_get(spec, "preallocation"));
        const char *cluster = json_string_value(json_object_get(spec, "clusterSize"));
        const char *base = json_string_value(json_object_get(spec, "baseFile"));
        json_int_t capacity = json_integer_value(json_object_get(spec, "capacity"));
        _cleanup_free_ char *dir = NULL, *base_format = NULL;
        struct stat st;
        int r;

        if (!path || !format || capacity <= 0)
                return -EINVAL;
        if (stat(path, &st) == 0) {
                if (asprintf(err, "存储卷%s已存在。", path) < 0)
                        *err = NULL;
                return -EEXIST;
        }
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        r = vb_mkdir_p_at(AT_FDCWD, dir, 0755);
        if (r < 0) {
                if (asprintf(err, "%s: %s", dir, strerror(-r)) < 0)
                        *err = NULL;
                return r;
        }
        if (base) {
                r = sim_image_probe(base, &base_format, NULL, NULL);
                if (r < 0) {
                        if (asprintf(err, "基础镜像文件%s: %s", base, strerror(-r)) < 0)
                                *err = NULL;
                        return r;
                }
        }
        r = sim_qemu_img_create(path, format, (uint64_t)capacity, pre && !streq(pre, "off") ? pre : NULL, cluster, base,
                                base_format, err);
        if (r < 0)
                return r;
        log_info("volume %s created (%s, %" JSON_INTEGER_FORMAT " MB, preallocation %s)", path, format, capacity,
                 str0(pre));
        return 0;
}

/* POST storage/volume: a task that runs qemu-img create when it completes. */
void sim_r_volume_create(sim_route_ctx *c)
{
        const char *name = NULL;
        sim_host *h;
        _cleanup_(json_decrefp) json_t *spec = volume_spec(c, &h, &name);
        json_t *t;

        if (!spec)
                return;
        t = sim_task_start_spec(c->m, SIM_TASK_VOL_CREATE, NULL, h->id, name,
                                json_string_value(json_object_get(spec, "path")), spec);
        if (!t)
                return sim_reply_error(c->rep, 11, "内部错误。");
        sim_reply_tree(c->rep, "taskMsg", t);
}

/* POST storage/volume/add (the old interface): at once, 200 with no body. */
void sim_r_volume_add(sim_route_ctx *c)
{
        const char *name = NULL;
        sim_host *h;
        _cleanup_(json_decrefp) json_t *spec = volume_spec(c, &h, &name);
        _cleanup_free_ char *err = NULL;
        int r;

        if (!spec)
                return;
        r = sim_volume_create(spec, &err);
        if (r < 0) {
                log_warning("storage/volume/add %s: %s", name, err ? err : strerror(-r));
                return sim_reply_error(c->rep, 11, "创建存储卷失败。");
        }
        c->rep->status = 200;
}

/* DELETE storage/volume/delete/{hostId}/{poolName}/{volName}[?secDir=]: 204. */
void sim_r_volume_delete(sim_route_ctx *c)
{
        const char *sec = sim_request_arg(c->req, "secDir");
        _cleanup_free_ char *path = NULL, *users = NULL;
        struct stat st;
        sim_host *h;
        sim_spool *p;

        if (host_pool(c, c->seg[0], c->seg[1], &h, &p) < 0)
                return;
        if (!sim_valid_file_name(c->seg[2]) || (sec && *sec && !sim_valid_file_name(sec)))
                return sim_reply_error(c->rep, 11, "存储卷名称无效。");
        if (asprintf(&path, "%s/%s%s%s", p->path, sec && *sec ? sec : "", sec && *sec ? "/" : "", c->seg[2]) < 0)
                return sim_reply_error(c->rep, 11, "内部错误。");
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return sim_reply_error(c->rep, 11, "存储卷不存在。");
        users = sim_volume_users(c->m, path);
        if (!users || *users)
                return sim_reply_error(c->rep, 11, "存储卷正在被虚拟机使用，不能删除。");
        if (unlink(path) < 0) {
                log_warning("removing %s: %m", path);
                return sim_reply_error(c->rep, 11, "删除存储卷失败。");
        }
        log_info("volume %s deleted", path);
        c->rep->status = 204;
}
