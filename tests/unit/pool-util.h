/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pool-util.h -- helpers for the pool and pipeline tests: make disk images,
 * run a backup or a restore through the real pipeline on a private loop.
 */
#ifndef VB_TEST_POOL_UTIL_H
#define VB_TEST_POOL_UTIL_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/util.h"
#include "storagepool/fs.h"
#include "storagepool/pipeline.h"
#include "storagepool/sp.h"
#include "tests/unit/test.h"

/* Deterministic pseudo-random bytes (xorshift). */
static inline void tp_fill(uint8_t *p, size_t n, uint64_t seed)
{
        uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t)x;
        }
}

/* Writes n random bytes (seeded) at off of an open file. */
static inline void tp_write_random(int fd, uint64_t off, size_t n, uint64_t seed)
{
        uint8_t *buf = malloc(n);

        ASSERT_TRUE(buf);
        tp_fill(buf, n, seed);
        ASSERT_OK(vb_pwrite_all(fd, buf, n, (off_t)off));
        free(buf);
}

/* Creates a sparse image of size bytes with random data at the given spots. */
static inline int tp_make_image(const char *path, uint64_t size)
{
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(ftruncate(fd, (off_t)size) == 0);
        return fd;
}

struct tp_done {
        int r;
        sp_transfer_result res;
};

static inline void tp_on_done(void *userdata, int r, const sp_transfer_result *res)
{
        struct tp_done *d = userdata;
        d->r = r;
        d->res = *res;
}

static inline int tp_read(void *userdata, uint64_t off, void *buf, size_t len)
{
        return vb_pread_all(*(int *)userdata, buf, len, (off_t)off);
}

static inline int tp_write(void *userdata, uint64_t off, const void *buf, size_t len)
{
        return vb_pwrite_all(*(int *)userdata, buf, len, (off_t)off);
}

/* Backs up the file at fd (size bytes) as disk "vda" of vm. With parent
 * (an id) only extents are read. Returns the committed manifest (caller
 * frees) through ret; the transfer result through ret_res (may be NULL). */
static inline int tp_backup(sp_pool *p, const char *vm, int fd, uint64_t size, const char *parent,
                            const dd_extents *changed, unsigned window, dd_manifest **ret, sp_transfer_result *ret_res)
{
        dd_manifest *tmpl = dd_manifest_new();
        dd_extents all = DD_EXTENTS_INIT;
        sp_source src = { .read = tp_read, .userdata = &fd };
        sp_pipeline_opts po = { .window = window };
        struct tp_done d = { 0 };
        sp_writer *w;
        sp_disk_writer *dw;
        uv_loop_t loop;
        int r;

        ASSERT_TRUE(tmpl);
        tmpl->vm.name = strdup(vm);
        tmpl->type = parent ? DD_BACKUP_INCREMENTAL : DD_BACKUP_FULL;
        tmpl->parent = parent ? strdup(parent) : NULL;
        tmpl->time_start = time(NULL);
        if (!parent)
                ASSERT_OK(dd_extents_from_fd(fd, size, &all));
        r = p->drv->begin(p, tmpl, &w);
        dd_manifest_free(tmpl);
        if (r < 0) {
                dd_extents_clear(&all);
                return r;
        }
        r = p->drv->disk_begin(w, "vda", size, &dw);
        if (r < 0) {
                p->drv->abort(w);
                dd_extents_clear(&all);
                return r;
        }
        ASSERT_OK(uv_loop_init(&loop));
        r = sp_backup_start(&loop, dw, &src, parent ? changed : &all, &po, tp_on_done, &d);
        if (r >= 0) {
                uv_run(&loop, UV_RUN_DEFAULT);
                r = d.r;
        }
        ASSERT_OK(uv_loop_close(&loop));
        dd_extents_clear(&all);
        if (r < 0) {
                p->drv->disk_abort(dw);
                p->drv->abort(w);
                return r;
        }
        dw->bytes_read = d.res.bytes_done;
        r = p->drv->disk_end(dw);
        if (r < 0) {
                p->drv->abort(w);
                return r;
        }
        if (ret_res)
                *ret_res = d.res;
        return p->drv->commit(w, ret);
}

/* Restores disk "vda" of m into a new file at path; ret_res may be NULL. */
static inline int tp_restore(sp_pool *p, const dd_manifest *m, const char *path, sp_transfer_result *ret_res)
{
        sp_disk_reader *rd;
        struct tp_done d = { 0 };
        uv_loop_t loop;
        int fd, r;

        r = p->drv->reader_open(p, m, "vda", &rd);
        if (r < 0)
                return r;
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(ftruncate(fd, (off_t)rd->size) == 0);
        sp_target dst = { .write = tp_write, .userdata = &fd };
        ASSERT_OK(uv_loop_init(&loop));
        r = sp_restore_start(&loop, rd, &dst, NULL, tp_on_done, &d);
        if (r >= 0) {
                uv_run(&loop, UV_RUN_DEFAULT);
                r = d.r;
        }
        ASSERT_OK(uv_loop_close(&loop));
        p->drv->reader_close(rd);
        close(fd);
        if (ret_res)
                *ret_res = d.res;
        return r;
}

/* True when the two files have the same bytes. */
static inline bool tp_same_files(const char *a, const char *b)
{
        char cmd[PATH_MAX * 2 + 32];
        snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
        return system(cmd) == 0;
}

static inline sp_pool *tp_new_pool(const char *path, const char *type, uint32_t chunk_size)
{
        sp_options o = SP_OPTIONS_DEFAULT;
        sp_pool *p = NULL;

        o.type = type;
        o.chunk_size = chunk_size;
        o.fsync = SP_FSYNC_NONE;
        ASSERT_OK(sp_pool_create(path, &o));
        ASSERT_OK(sp_pool_open(path, &p));
        return p;
}

#endif
