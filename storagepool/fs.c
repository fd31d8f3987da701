/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs.c -- the file-system layer shared by the dedup and standard pools:
 * pool.json, restore point folders and their atomic commit, writer locks,
 * listing, removal, and the cleanup of crashed writers' leftovers.
 */
#include "storagepool/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/util.h"

#define LOCK_PREFIX "writer-"
#define LOCK_SUFFIX ".lock"

static int format_uuid(char out[37])
{
        uint8_t u[16];
        int r = vb_random_bytes(u, sizeof(u));

        if (r < 0)
                return r;
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                 u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        return 0;
}

int sp_fs_create(const char *path, const sp_options *o)
{
        static const char *const dirs[] = { "vms", "tmp", "locks", "chunks" };
        const sp_driver *drv = sp_driver_find(o ? o->type : NULL);
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ char *text = NULL;
        char uuid[37], comp[32];
        json_t *j;
        int r;

        if (!path || !o || !drv)
                return -EINVAL;
        r = vb_mkdir_p_at(AT_FDCWD, path, 0755);
        if (r < 0)
                return r;
        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        if (faccessat(dirfd, SP_POOL_FILE, F_OK, 0) == 0)
                return -EEXIST;
        /* chunks/ (the last one) only for pools that share chunks. */
        for (size_t i = 0; i < ELEMENTSOF(dirs) - !(drv->caps & SP_CAP_DEDUP); i++)
                if (mkdirat(dirfd, dirs[i], 0755) < 0 && errno != EEXIST)
                        return -errno;
        r = format_uuid(uuid);
        if (r < 0)
                return r;
        j = json_pack("{s:s, s:i, s:s, s:s, s:I, s:s, s:s, s:I}", "format", SP_POOL_FORMAT, "version", SP_POOL_VERSION,
                      "type", o->type, "uuid", uuid, "chunk_size", (json_int_t)o->chunk_size, "compression",
                      dd_compression_to_string(o->compression, comp, sizeof(comp)), "fsync",
                      sp_fsync_to_string(o->fsync), "created", (json_int_t)time(NULL));
        if (!j)
                return -ENOMEM;
        text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        /* pool.json goes last: a folder without it is not a pool yet. */
        return vb_write_file_atomic_at(dirfd, SP_POOL_FILE, text, strlen(text), true);
}

int sp_fs_read_pool(const char *path, sp_pool *base)
{
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ char *text = NULL;
        const char *format, *type, *uuid, *comp, *fsync_s;
        json_int_t version, chunk_size;
        json_t *j;
        int r;

        if (!path || !base)
                return -EINVAL;
        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        r = vb_read_file_at(dirfd, SP_POOL_FILE, 1 << 20, &text, NULL);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!j)
                return -EBADMSG;
        r = -EBADMSG;
        if (json_unpack(j, "{s:s, s:I, s:s, s:s, s:I, s:s, s:s}", "format", &format, "version", &version, "type", &type,
                        "uuid", &uuid, "chunk_size", &chunk_size, "compression", &comp, "fsync", &fsync_s) < 0 ||
            !streq(format, SP_POOL_FORMAT))
                goto out;
        if (version != SP_POOL_VERSION) {
                r = -EPROTONOSUPPORT;
                goto out;
        }
        *base = (sp_pool){ .dirfd = -1 };
        base->drv = sp_driver_find(type);
        if (!base->drv) {
                r = -EPROTONOSUPPORT;
                goto out;
        }
        if (strlen(uuid) != 36 || chunk_size < SP_CHUNK_SIZE_MIN || chunk_size > SP_CHUNK_SIZE_MAX ||
            (chunk_size & (chunk_size - 1)) != 0 || dd_compression_from_string(comp, &base->opts.compression) < 0 ||
            (base->opts.fsync = sp_fsync_from_string(fsync_s)) < 0)
                goto out;
        memcpy(base->uuid, uuid, 37);
        base->opts.type = base->drv->name;
        base->opts.chunk_size = (uint32_t)chunk_size;
        base->path = strdup(path);
        if (!base->path) {
                r = -ENOMEM;
                goto out;
        }
        base->dirfd = TAKE_FD(dirfd);
        r = 0;
out:
        json_decref(j);
        return r;
}

void sp_fs_pool_done(sp_pool *base)
{
        if (!base)
                return;
        if (base->dirfd >= 0)
                close(base->dirfd);
        base->dirfd = -1;
        free(base->path);
        base->path = NULL;
}

int sp_fs_rp_path(const dd_manifest *m, char **ret)
{
        const char *platform = m->vm.platform ? m->vm.platform : SP_PLATFORM_LOCAL;
        const char *key = m->vm.uuid ? m->vm.uuid : m->vm.id ? m->vm.id : m->vm.name;

        if (!dd_name_is_safe(platform) || !dd_name_is_safe(key) || !dd_name_is_safe(m->id))
                return -EINVAL;
        if (asprintf(ret, "vms/%s/%s/%s", platform, key, m->id) < 0)
                return -ENOMEM;
        return 0;
}

/* Ids are the UTC start time to the microsecond plus a random suffix, fixed
 * width, so that their byte order is the order in which writers began. */
int sp_fs_new_id(char id[SP_ID_MAX])
{
        struct timespec ts;
        struct tm tm;
        uint8_t rnd[3];
        int r = vb_random_bytes(rnd, sizeof(rnd));

        if (r < 0)
                return r;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(id, SP_ID_MAX, "%04d%02d%02dT%02d%02d%02d.%06ldZ-%02x%02x%02x", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000, rnd[0], rnd[1], rnd[2]);
        return 0;
}

/* The lock is created under a temp name, locked, then renamed into place,
 * so that a visible writer lock is always held by its writer. */
static int writer_lock(sp_pool *p, const dd_manifest *m, sp_fs_rp *rp)
{
        _cleanup_free_ char *tmp = NULL, *text = NULL;
        _cleanup_close_ int fd = -1;
        json_t *j;
        int r;

        if (asprintf(&tmp, "tmp/" LOCK_PREFIX "%s" LOCK_SUFFIX, rp->id) < 0 ||
            asprintf(&rp->lock_path, "locks/" LOCK_PREFIX "%s" LOCK_SUFFIX, rp->id) < 0)
                return -ENOMEM;
        fd = openat(p->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                unlinkat(p->dirfd, tmp, 0);
                return r;
        }
        j = json_pack("{s:s, s:s?, s:i}", "id", rp->id, "parent", m->parent, "pid", (int)getpid());
        text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        r = text ? vb_write_all(fd, text, strlen(text)) : -ENOMEM;
        if (r >= 0 && renameat(p->dirfd, tmp, p->dirfd, rp->lock_path) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(p->dirfd, tmp, 0);
                return r;
        }
        rp->lock_fd = TAKE_FD(fd);
        return 0;
}

static void writer_unlock(sp_pool *p, sp_fs_rp *rp)
{
        if (rp->lock_fd >= 0) {
                unlinkat(p->dirfd, rp->lock_path, 0);
                close(rp->lock_fd);
                rp->lock_fd = -1;
        }
        free(rp->lock_path);
        rp->lock_path = NULL;
}

int sp_fs_rp_begin(sp_pool *p, dd_manifest *m, sp_fs_rp *rp)
{
        int r;

        *rp = (sp_fs_rp){ .dirfd = -1, .lock_fd = -1 };
        r = sp_fs_new_id(rp->id);
        if (r < 0)
                return r;
        free(m->id);
        m->id = strdup(rp->id);
        if (!m->id)
                return -ENOMEM;
        r = sp_fs_rp_path(m, &rp->path);
        if (r < 0)
                return r;
        r = writer_lock(p, m, rp);
        if (r < 0)
                goto fail;
        r = vb_mkdir_p_at(p->dirfd, rp->path, 0755);
        if (r < 0)
                goto fail;
        rp->dirfd = openat(p->dirfd, rp->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rp->dirfd < 0) {
                r = -errno;
                goto fail;
        }
        return 0;
fail:
        sp_fs_rp_abort(p, rp);
        return r;
}

int sp_fs_rp_commit(sp_pool *p, sp_fs_rp *rp, dd_manifest *m)
{
        _cleanup_free_ char *text = NULL;
        bool do_sync = p->opts.fsync == SP_FSYNC_ALWAYS;
        int r;

        m->time_end = time(NULL);
        r = dd_manifest_format(m, &text);
        /* Everything the manifest references must be durable before it is. */
        if (r >= 0 && do_sync && syncfs(p->dirfd) < 0)
                r = -errno;
        if (r >= 0)
                r = vb_write_file_atomic_at(rp->dirfd, DD_MANIFEST_NAME, text, strlen(text), do_sync);
        if (r < 0) {
                sp_fs_rp_abort(p, rp);
                return r;
        }
        close(rp->dirfd);
        rp->dirfd = -1;
        free(rp->path);
        rp->path = NULL;
        writer_unlock(p, rp);
        return 0;
}

void sp_fs_rp_abort(sp_pool *p, sp_fs_rp *rp)
{
        if (rp->dirfd >= 0)
                close(rp->dirfd);
        rp->dirfd = -1;
        if (rp->path)
                vb_rm_rf_at(p->dirfd, rp->path);
        free(rp->path);
        rp->path = NULL;
        writer_unlock(p, rp);
}

int sp_fs_rp_open(sp_pool *p, const dd_manifest *m, int *ret_dirfd)
{
        _cleanup_free_ char *path = NULL;
        int r = sp_fs_rp_path(m, &path), fd;

        if (r < 0)
                return r;
        fd = openat(p->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_dirfd = fd;
        return 0;
}

/* Calls fn for each folder three levels below vms/ (platform/key/id). */
typedef int (*rp_dir_fn)(sp_pool *p, const char *path, void *userdata);

static int for_each_dir(int dirfd, const char *path, DIR **ret)
{
        int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        *ret = fdopendir(fd);
        if (!*ret) {
                close(fd);
                return -errno;
        }
        return 0;
}

static int walk_rp_dirs(sp_pool *p, rp_dir_fn fn, void *userdata, int level, const char *prefix)
{
        DIR *d;
        struct dirent *de;
        int r;

        r = for_each_dir(p->dirfd, prefix, &d);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        while ((de = readdir(d))) {
                _cleanup_free_ char *sub = NULL;

                if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
                        continue;
                if (asprintf(&sub, "%s/%s", prefix, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = level == 2 ? fn(p, sub, userdata) : walk_rp_dirs(p, fn, userdata, level + 1, sub);
                if (r < 0)
                        break;
                r = 0;
        }
        closedir(d);
        return r;
}

struct list_ctx {
        const char *vm;
        sp_problem_fn problem;
        void *userdata;
        dd_manifest **v;
        size_t n;
};

static void report(sp_problem_fn fn, void *userdata, const char *kind, const char *object, const char *detail)
{
        sp_problem pr = { .kind = kind, .object = object, .detail = detail };

        if (fn)
                fn(userdata, &pr);
}

static int list_one(sp_pool *p, const char *path, void *userdata)
{
        struct list_ctx *ctx = userdata;
        _cleanup_free_ char *mpath = NULL, *text = NULL, *expect = NULL;
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        dd_manifest **v;
        size_t len;
        int r;

        if (asprintf(&mpath, "%s/" DD_MANIFEST_NAME, path) < 0)
                return -ENOMEM;
        r = vb_read_file_at(p->dirfd, mpath, DD_MANIFEST_MAX_SIZE, &text, &len);
        if (r == -ENOENT)
                return 0; /* not committed (yet, or ever) */
        if (r >= 0)
                r = dd_manifest_parse(text, len, &m);
        if (r >= 0 && (sp_fs_rp_path(m, &expect) < 0 || !streq(expect, path)))
                r = -EBADMSG; /* a manifest must live where its identity says */
        if (r < 0) {
                report(ctx->problem, ctx->userdata, "manifest-corrupt", mpath, strerror(-r));
                return r == -ENOMEM ? r : 0;
        }
        if (ctx->vm && !streq_ptr(ctx->vm, m->vm.name))
                return 0;
        v = realloc(ctx->v, (ctx->n + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        ctx->v = v;
        ctx->v[ctx->n++] = TAKE_PTR(m);
        return 0;
}

/* Oldest first: ids order restore points by when their writers began. */
static int cmp_manifest(const void *a, const void *b)
{
        const dd_manifest *x = *(dd_manifest *const *)a, *y = *(dd_manifest *const *)b;

        return strcmp(x->id, y->id);
}

int sp_fs_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret, size_t *ret_n)
{
        struct list_ctx ctx = { .vm = vm, .problem = problem, .userdata = userdata };
        int r = walk_rp_dirs(p, list_one, &ctx, 0, "vms");

        if (r < 0) {
                sp_manifests_free(ctx.v, ctx.n);
                return r;
        }
        if (ctx.n > 1)
                qsort(ctx.v, ctx.n, sizeof(*ctx.v), cmp_manifest);
        *ret = ctx.v;
        *ret_n = ctx.n;
        return 0;
}

int sp_fs_find(sp_pool *p, const dd_manifest *ident, const char *id, dd_manifest **ret)
{
        _cleanup_free_ char *path = NULL, *mpath = NULL, *text = NULL, *expect = NULL;
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        dd_manifest **v = NULL;
        dd_manifest where = *ident;
        size_t len, n = 0;
        int r;

        /* Where the same VM's restore point lives: one read, no scan. */
        where.id = (char *)id;
        if (sp_fs_rp_path(&where, &path) >= 0) {
                if (asprintf(&mpath, "%s/" DD_MANIFEST_NAME, path) < 0)
                        return -ENOMEM;
                r = vb_read_file_at(p->dirfd, mpath, DD_MANIFEST_MAX_SIZE, &text, &len);
                if (r >= 0)
                        r = dd_manifest_parse(text, len, &m);
                if (r >= 0 && (!streq(m->id, id) || sp_fs_rp_path(m, &expect) < 0 || !streq(expect, path)))
                        r = -EBADMSG;
                if (r >= 0) {
                        *ret = TAKE_PTR(m);
                        return 0;
                }
                if (r != -ENOENT)
                        return r == -EFBIG ? -EBADMSG : r;
        }
        /* Elsewhere (the VM's identity changed): look through the pool. */
        r = sp_fs_list(p, NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < n; i++)
                if (streq(v[i]->id, id)) {
                        *ret = TAKE_PTR(v[i]);
                        r = 0;
                        break;
                }
        sp_manifests_free(v, n);
        return r;
}

int sp_fs_remove(sp_pool *p, const dd_manifest *m)
{
        _cleanup_free_ char *path = NULL, *mpath = NULL;
        int r = sp_fs_rp_path(m, &path);

        if (r < 0)
                return r;
        if (asprintf(&mpath, "%s/" DD_MANIFEST_NAME, path) < 0)
                return -ENOMEM;
        /* Without its manifest the restore point no longer exists: that
         * step is atomic, the rest is cleanup that gc would redo. */
        if (unlinkat(p->dirfd, mpath, 0) < 0)
                return -errno;
        if (p->opts.fsync == SP_FSYNC_ALWAYS) {
                r = vb_fsync_dir_at(p->dirfd, path);
                if (r < 0)
                        return r;
        }
        return vb_rm_rf_at(p->dirfd, path);
}

/* 1 when the lock file at path is held by a live writer, 0 when free (and
 * then, with take, left locked in *ret_fd for the caller), -errno. */
static int lock_probe(sp_pool *p, const char *path, int *ret_fd)
{
        _cleanup_close_ int fd = openat(p->dirfd, path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? 1 : -errno;
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

int sp_fs_active_writers(sp_pool *p, sp_fs_writer_info **ret, size_t *ret_n)
{
        sp_fs_writer_info *v = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r;

        r = for_each_dir(p->dirfd, "locks", &d);
        if (r < 0)
                return r;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                _cleanup_close_ int fd = -1;
                sp_fs_writer_info info = { 0 };
                struct stat st;
                json_t *j;

                if (strncmp(de->d_name, LOCK_PREFIX, strlen(LOCK_PREFIX)) != 0)
                        continue;
                if (asprintf(&path, "locks/%s", de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                fd = openat(p->dirfd, path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue; /* finished meanwhile */
                if (flock(fd, LOCK_SH | LOCK_NB) == 0)
                        continue; /* not held: a dead writer's */
                if (errno != EWOULDBLOCK || fstat(fd, &st) < 0) {
                        r = -errno;
                        break;
                }
                info.start = st.st_mtim;
                if (vb_read_file_at(p->dirfd, path, 4096, &text, NULL) >= 0 && (j = json_loads(text, 0, NULL))) {
                        const char *id = NULL, *parent = NULL;
                        if (json_unpack(j, "{s:s, s?s}", "id", &id, "parent", &parent) == 0) {
                                snprintf(info.id, sizeof(info.id), "%s", id);
                                snprintf(info.parent, sizeof(info.parent), "%s", parent ? parent : "");
                        }
                        json_decref(j);
                }
                sp_fs_writer_info *nv = realloc(v, (n + 1) * sizeof(*v));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n++] = info;
                r = 0;
        }
        closedir(d);
        if (r < 0) {
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

struct cleanup_ctx {
        bool dry_run;
        uint64_t partial;
};

static int cleanup_rp(sp_pool *p, const char *path, void *userdata)
{
        struct cleanup_ctx *ctx = userdata;
        _cleanup_free_ char *mpath = NULL, *lpath = NULL;
        _cleanup_close_ int lock_fd = -1;
        const char *id = strrchr(path, '/') + 1;
        int r;

        if (asprintf(&mpath, "%s/" DD_MANIFEST_NAME, path) < 0 ||
            asprintf(&lpath, "locks/" LOCK_PREFIX "%s" LOCK_SUFFIX, id) < 0)
                return -ENOMEM;
        if (faccessat(p->dirfd, mpath, F_OK, 0) == 0)
                return 0;
        r = lock_probe(p, lpath, &lock_fd);
        if (r == 1)
                return 0; /* its writer is still at work */
        if (r < 0 && r != -ENOENT)
                return r;
        /* Free lock (or none): the writer finished or died. Finished ones
         * have their manifest by now. */
        if (faccessat(p->dirfd, mpath, F_OK, 0) == 0)
                return 0;
        ctx->partial++;
        if (ctx->dry_run)
                return 0;
        return vb_rm_rf_at(p->dirfd, path);
}

int sp_fs_cleanup(sp_pool *p, const struct timespec *cutoff, bool dry_run, uint64_t *ret_partial, uint64_t *ret_tmp)
{
        struct cleanup_ctx ctx = { .dry_run = dry_run };
        uint64_t tmp = 0;
        struct dirent *de;
        DIR *d;
        int r;

        r = walk_rp_dirs(p, cleanup_rp, &ctx, 0, "vms");
        if (r < 0)
                return r;

        /* Lock files of dead writers. */
        r = for_each_dir(p->dirfd, "locks", &d);
        if (r < 0)
                return r;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                _cleanup_close_ int fd = -1;

                if (strncmp(de->d_name, LOCK_PREFIX, strlen(LOCK_PREFIX)) != 0)
                        continue;
                if (asprintf(&path, "locks/%s", de->d_name) < 0) {
                        closedir(d);
                        return -ENOMEM;
                }
                if (lock_probe(p, path, &fd) == 0 && !dry_run)
                        unlinkat(p->dirfd, path, 0);
        }
        closedir(d);

        /* Temp files older than the cutoff: their writers are gone. */
        r = for_each_dir(p->dirfd, "tmp", &d);
        if (r < 0)
                return r;
        while ((de = readdir(d))) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (timespec_cmp(&st.st_mtim, cutoff) >= 0)
                        continue;
                tmp++;
                if (!dry_run)
                        unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
        if (ret_partial)
                *ret_partial = ctx.partial;
        if (ret_tmp)
                *ret_tmp = tmp;
        return 0;
}

int sp_fs_gc_lock(sp_pool *p, struct timespec *ret_start)
{
        _cleanup_close_ int fd = openat(p->dirfd, "locks/gc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        struct stat st;

        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (futimens(fd, NULL) < 0 || fstat(fd, &st) < 0)
                return -errno;
        *ret_start = st.st_mtim;
        return TAKE_FD(fd);
}

int sp_fs_write_tmp(sp_pool *p, const char *name, const void *data, size_t len, bool do_sync, char **ret_tmp)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        uint64_t rnd;
        int r;

        r = vb_random_bytes(&rnd, sizeof(rnd));
        if (r < 0)
                return r;
        if (asprintf(&tmp, "tmp/%s.%016" PRIx64, name, rnd) < 0)
                return -ENOMEM;
        fd = openat(p->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        r = vb_write_all(fd, data, len);
        if (r >= 0 && do_sync && fdatasync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(p->dirfd, tmp, 0);
                return r;
        }
        *ret_tmp = TAKE_PTR(tmp);
        return 0;
}

int sp_fs_publish(sp_pool *p, const char *tmp, const char *path)
{
        const char *slash = strrchr(path, '/');
        int r = 0;

        for (int attempt = 0;; attempt++) {
                if (renameat2(p->dirfd, tmp, p->dirfd, path, RENAME_NOREPLACE) == 0)
                        return 1;
                if (errno == EEXIST) {
                        r = 0;
                        break;
                }
                if (errno == ENOENT && attempt == 0 && slash) {
                        /* A missing fan-out folder: usually only its last level. */
                        _cleanup_free_ char *dir = strndup(path, (size_t)(slash - path));
                        r = !dir ? -ENOMEM : mkdirat(p->dirfd, dir, 0755) == 0 || errno == EEXIST ? 0 : -errno;
                        if (r == -ENOENT)
                                r = vb_mkdir_p_at(p->dirfd, dir, 0755);
                        if (r < 0)
                                break;
                        continue;
                }
                r = -errno;
                break;
        }
        unlinkat(p->dirfd, tmp, 0);
        return r;
}

int sp_fs_store_new(sp_pool *p, const char *path, const void *data, size_t len)
{
        _cleanup_free_ char *tmp = NULL;
        const char *base = strrchr(path, '/');
        int r;

        r = sp_fs_write_tmp(p, base ? base + 1 : path, data, len, p->opts.fsync == SP_FSYNC_ALWAYS, &tmp);
        if (r < 0)
                return r;
        return sp_fs_publish(p, tmp, path);
}
