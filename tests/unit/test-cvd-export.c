/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cvd-export.c -- vbak-cvd's backend against real QEMU tools: the
 * image folder rules; a stopped VM's qcow2 served by qemu-nbd (bytes and
 * allocation over libnbd, the port free again after close); checkpoints
 * created by an export and the changes since them as a dirty-bitmap
 * context; raw images, missing checkpoints, locked images; a port range
 * that runs out and a port held by another program; a running QEMU (TCG, no
 * guest) exporting through QMP with a frozen copy of the checkpoint, a new
 * checkpoint in the same transaction, a leftover NBD server, and nothing
 * left behind after close.
 *
 * Each test that starts processes makes itself a process group, so that a
 * failed assertion (abort) takes the qemu-nbd children along; the
 * daemonized QEMU has its own session and is killed by pid.
 */
#include <dirent.h>
#include <fcntl.h>
#include <libnbd.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/cvd-export.h"
#include "transport/qmp.h"

#define MiB (1024ull * 1024)
#define KiB 1024ull

static volatile pid_t qemu_pid;

static void on_abort(int sig)
{
        (void)sig;
        signal(SIGTERM, SIG_IGN);
        kill(0, SIGTERM); /* qemu-nbd children, in our process group */
        if (qemu_pid > 0)
                kill(qemu_pid, SIGKILL);
}

static bool have_tool(const char *name)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
        return system(cmd) == 0;
}

static void need_tools(void)
{
        if (!have_tool("qemu-img") || !have_tool("qemu-nbd") || !have_tool("qemu-io") ||
            !have_tool("qemu-system-x86_64"))
                exit(EXIT_TEST_SKIP);
        ASSERT_OK(setpgid(0, 0));
        signal(SIGABRT, on_abort);
}

static void run(const char *fmt, ...) _printf_(1, 2);
static void run(const char *fmt, ...)
{
        char cmd[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        if (system(cmd) != 0)
                TEST_FAIL_("command failed: %s", cmd);
}

typedef struct env {
        char dir[PATH_MAX];     /* the resolved test folder, also the QMP folder */
        char img[PATH_MAX + 8]; /* the image folder */
        char *dirs[1];
        tp_export_cfg cfg;
} env;

static void env_init(env *v, uint16_t nports)
{
        ASSERT_TRUE(realpath(test_tmpdir(), v->dir));
        snprintf(v->img, sizeof(v->img), "%s/img", v->dir);
        ASSERT_OK(mkdir(v->img, 0755));
        v->dirs[0] = v->img;
        /* A range per test process, away from the usual service ports. */
        uint16_t base = (uint16_t)(32000 + (getpid() % 1500) * 16);
        v->cfg = (tp_export_cfg){ .image_dirs = v->dirs,
                                  .n_image_dirs = 1,
                                  .qmp_dir = v->dir,
                                  .data_host = "127.0.0.1",
                                  .port_min = base,
                                  .port_max = (uint16_t)(base + nports - 1) };
}

static bool port_refuses(uint16_t port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool refused = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED;

        close(fd);
        return refused;
}

/* ---- libnbd helpers ---------------------------------------------------- */

typedef struct ext {
        uint64_t off, len;
        uint32_t flags;
} ext;

typedef struct exts {
        const char *ctx;
        ext v[64];
        size_t n;
        uint64_t end;
} exts;

static int extent_cb(void *user, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr, int *error)
{
        exts *x = user;

        (void)error;
        if (strcmp(metacontext, x->ctx) != 0)
                return 0;
        x->end = offset;
        for (size_t i = 0; i + 1 < nr; i += 2) {
                if (x->n > 0 && x->v[x->n - 1].flags == entries[i + 1] &&
                    x->v[x->n - 1].off + x->v[x->n - 1].len == x->end)
                        x->v[x->n - 1].len += entries[i];
                else {
                        ASSERT_TRUE(x->n < ELEMENTSOF(x->v));
                        x->v[x->n++] = (ext){ x->end, entries[i], entries[i + 1] };
                }
                x->end += entries[i];
        }
        return 0;
}

/* The whole disk's extents in one context, adjacent equal ones merged. */
static void get_extents(struct nbd_handle *h, const char *ctx, exts *x)
{
        int64_t size = nbd_get_size(h);

        ASSERT_TRUE(size > 0);
        *x = (exts){ .ctx = ctx };
        while (x->end < (uint64_t)size) {
                uint64_t before = x->end;
                ASSERT_OK(nbd_block_status(h, MIN((uint64_t)size - x->end, 1ull << 30), x->end,
                                           (nbd_extent_callback){ .callback = extent_cb, .user_data = x }, 0));
                ASSERT_TRUE(x->end > before);
        }
}

static struct nbd_handle *connect_export(const tp_export *e)
{
        struct nbd_handle *h = nbd_create();
        char port[8];

        ASSERT_TRUE(h);
        for (size_t i = 0; i < e->n_contexts; i++)
                ASSERT_OK(nbd_add_meta_context(h, e->contexts[i]));
        ASSERT_OK(nbd_set_export_name(h, e->name));
        snprintf(port, sizeof(port), "%u", e->port);
        if (nbd_connect_tcp(h, e->host, port) < 0)
                TEST_FAIL_("connect %s:%s/%s: %s", e->host, port, e->name, nbd_get_error());
        for (size_t i = 0; i < e->n_contexts; i++)
                ASSERT_EQ(nbd_can_meta_context(h, e->contexts[i]), 1);
        return h;
}

static void expect_bytes(struct nbd_handle *h, uint64_t off, uint64_t len, uint8_t byte)
{
        uint8_t *buf = malloc(len);

        ASSERT_TRUE(buf);
        ASSERT_OK(nbd_pread(h, buf, len, off, 0));
        for (uint64_t i = 0; i < len; i++)
                if (buf[i] != byte)
                        TEST_FAIL_("byte %" PRIu64 ": 0x%02x, expected 0x%02x", off + i, buf[i], byte);
        free(buf);
}

/* The dirty extents of a qemu:dirty-bitmap context (flag 1). */
static size_t dirty_extents(struct nbd_handle *h, const char *ctx, ext *out, size_t max)
{
        exts x;
        size_t n = 0;

        get_extents(h, ctx, &x);
        for (size_t i = 0; i < x.n; i++)
                if (x.v[i].flags & 1) {
                        ASSERT_TRUE(n < max);
                        out[n++] = x.v[i];
                }
        return n;
}

static void make_qcow2(const char *path, const char *size)
{
        run("qemu-img create -q -f qcow2 '%s' %s", path, size);
}

static bool has_bitmap(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name,
                       tp_bitmap_info *ret)
{
        tp_bitmap_info *list = NULL;
        size_t n = 0;
        bool found = false;
        char *err = NULL;

        if (tp_bitmap_list(cfg, vm, path, &list, &n, &err) < 0)
                TEST_FAIL_("bitmap list: %s", err);
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i].name, name) == 0) {
                        found = true;
                        if (ret)
                                *ret = (tp_bitmap_info){ NULL, list[i].granularity, list[i].persistent, list[i].enabled,
                                                         list[i].dirty_bytes };
                }
        tp_bitmap_info_free(list, n);
        return found;
}

/* ---- path rules -------------------------------------------------------- */

TEST(path_rules)
{
        env v;
        char p[PATH_MAX + 64], q[PATH_MAX + 64], *resolved = NULL, *err = NULL;
        tp_export *e = NULL;

        env_init(&v, 4);
        snprintf(p, sizeof(p), "%s/img2", v.dir);
        ASSERT_OK(mkdir(p, 0755));
        snprintf(p, sizeof(p), "%s/outside", v.dir);
        ASSERT_OK(mkdir(p, 0755));
        snprintf(p, sizeof(p), "%s/img/sub", v.dir);
        ASSERT_OK(mkdir(p, 0755));
        run("touch '%s/img/a.raw' '%s/img2/b.raw' '%s/outside/c.raw' '%s/img/sub/d.raw'", v.dir, v.dir, v.dir, v.dir);
        run("ln -s ../outside/c.raw '%s/img/link-out' && ln -s a.raw '%s/img/link-in'", v.dir, v.dir);
        run("ln -s '%s/outside' '%s/img/dir-out'", v.dir, v.dir);

        snprintf(p, sizeof(p), "%s/img/a.raw", v.dir);
        ASSERT_TRUE(tp_export_path_allowed(&v.cfg, p, &resolved));
        ASSERT_STREQ(resolved, p);
        free(resolved);
        resolved = NULL;
        snprintf(p, sizeof(p), "%s/img/sub/d.raw", v.dir);
        ASSERT_TRUE(tp_export_path_allowed(&v.cfg, p, NULL));
        snprintf(p, sizeof(p), "%s/img/sub/../a.raw", v.dir);
        ASSERT_TRUE(tp_export_path_allowed(&v.cfg, p, NULL));
        /* A link inside to a file inside is served under its target. */
        snprintf(p, sizeof(p), "%s/img/link-in", v.dir);
        snprintf(q, sizeof(q), "%s/img/a.raw", v.dir);
        ASSERT_TRUE(tp_export_path_allowed(&v.cfg, p, &resolved));
        ASSERT_STREQ(resolved, q);
        free(resolved);
        resolved = NULL;

        /* /img2 is not inside /img. */
        snprintf(p, sizeof(p), "%s/img2/b.raw", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, &resolved));
        ASSERT_TRUE(resolved == NULL);
        snprintf(p, sizeof(p), "%s/img/../outside/c.raw", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, NULL));
        snprintf(p, sizeof(p), "%s/img/link-out", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, NULL));
        snprintf(p, sizeof(p), "%s/img/dir-out/c.raw", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, NULL));
        /* Folders themselves are not images. */
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, v.img, NULL));
        snprintf(p, sizeof(p), "%s/img/sub", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, NULL));
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, "img/a.raw", NULL));
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, "/", NULL));

        /* A trailing slash on the configured folder changes nothing. */
        snprintf(q, sizeof(q), "%s/img/", v.dir);
        v.dirs[0] = q;
        snprintf(p, sizeof(p), "%s/img/a.raw", v.dir);
        ASSERT_TRUE(tp_export_path_allowed(&v.cfg, p, NULL));
        snprintf(p, sizeof(p), "%s/img2/b.raw", v.dir);
        ASSERT_TRUE(!tp_export_path_allowed(&v.cfg, p, NULL));
        v.dirs[0] = v.img;

        /* What open says: outside is refused, a missing image inside is missing. */
        snprintf(p, sizeof(p), "%s/outside/c.raw", v.dir);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = p }, &e, &err), EACCES);
        ASSERT_TRUE(err && strstr(err, "not inside"));
        free(err);
        err = NULL;
        snprintf(p, sizeof(p), "%s/outside/missing.raw", v.dir);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = p }, &e, &err), EACCES);
        free(err);
        err = NULL;
        snprintf(p, sizeof(p), "%s/img/missing.raw", v.dir);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = p }, &e, &err), ENOENT);
        ASSERT_TRUE(err && strstr(err, "no such image"));
        free(err);
        err = NULL;
        snprintf(p, sizeof(p), "%s/img/a.raw", v.dir);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "../x", .path = p }, &e, &err), EINVAL);
        free(err);
        err = NULL;
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = p, .since = "-x" }, &e, &err), EINVAL);
        free(err);
        ASSERT_TRUE(e == NULL);
}

/* A backing file outside the folders would let a crafted image read any
 * file: the whole chain must be served. */
TEST(backing_chain_outside)
{
        env v;
        char base[PATH_MAX + 64], top[PATH_MAX + 64], *err = NULL;
        tp_export *e = NULL;

        need_tools();
        env_init(&v, 4);
        snprintf(base, sizeof(base), "%s/base.qcow2", v.dir);
        snprintf(top, sizeof(top), "%s/top.qcow2", v.img);
        make_qcow2(base, "4M");
        run("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", base, top);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = top }, &e, &err), EACCES);
        ASSERT_TRUE(err && strstr(err, "backing file"));
        free(err);
        err = NULL;

        /* A chain inside the folders is fine (relative backing name). */
        snprintf(base, sizeof(base), "%s/base.qcow2", v.img);
        make_qcow2(base, "4M");
        run("qemu-io -f qcow2 -c 'write -P 0x3c 0 64k' '%s' >/dev/null", base);
        run("cd '%s' && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2", v.img);
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = top }, &e, &err) < 0)
                TEST_FAIL_("open: %s", err);
        struct nbd_handle *h = connect_export(e);
        expect_bytes(h, 0, 64 * KiB, 0x3c);
        nbd_close(h);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
}

/* ---- stopped VMs ------------------------------------------------------- */

TEST(stopped_read)
{
        env v;
        char path[PATH_MAX + 64], *err = NULL;
        tp_export *e = NULL;
        struct nbd_handle *h, *h2;
        exts x;
        uint16_t port;

        need_tools();
        env_init(&v, 4);
        snprintf(path, sizeof(path), "%s/disk.qcow2", v.img);
        make_qcow2(path, "64M");
        run("qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' '%s' >/dev/null", path);

        uint64_t t0 = vb_now_ns();
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &e, &err) < 0)
                TEST_FAIL_("open: %s", err);
        fprintf(stderr, "qemu-nbd export ready in %.1f ms\n", (vb_now_ns() - t0) / 1e6);
        ASSERT_TRUE(!e->running);
        ASSERT_STREQ(e->format, "qcow2");
        ASSERT_STREQ(e->host, "127.0.0.1");
        ASSERT_UEQ(e->size, 64 * MiB);
        ASSERT_EQ(e->cluster_size, 65536);
        ASSERT_EQ(e->granularity, 0);
        ASSERT_EQ(e->n_contexts, 1);
        ASSERT_STREQ(e->contexts[0], "base:allocation");
        ASSERT_TRUE(e->port >= v.cfg.port_min && e->port <= v.cfg.port_max);
        ASSERT_TRUE(strncmp(e->name, "vbak-", 5) == 0 && strlen(e->name) == 21);

        h = connect_export(e);
        h2 = connect_export(e); /* several connections per disk */
        ASSERT_EQ(nbd_is_read_only(h), 1);
        expect_bytes(h, 1 * MiB, 64 * KiB, 0x5a);
        expect_bytes(h2, 0, 64 * KiB, 0);
        get_extents(h, "base:allocation", &x);
        ASSERT_EQ(x.n, 3);
        ASSERT_UEQ(x.v[0].off, 0);
        ASSERT_UEQ(x.v[0].len, 1 * MiB);
        ASSERT_EQ(x.v[0].flags & 1, 1); /* hole */
        ASSERT_UEQ(x.v[1].off, 1 * MiB);
        ASSERT_UEQ(x.v[1].len, 64 * KiB);
        ASSERT_EQ(x.v[1].flags, 0); /* data */
        ASSERT_EQ(x.v[2].flags & 1, 1);
        nbd_close(h2);
        /* -t: a client that goes may come back. */
        nbd_close(h);
        h = connect_export(e);
        expect_bytes(h, 1 * MiB, 4 * KiB, 0x5a);

        /* Closing drops a client that is still connected, promptly. */
        port = e->port;
        t0 = vb_now_ns();
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        fprintf(stderr, "qemu-nbd export closed in %.1f ms\n", (vb_now_ns() - t0) / 1e6);
        ASSERT_TRUE(vb_now_ns() - t0 < 2000 * 1000000ull);
        ASSERT_TRUE(port_refuses(port));
        uint8_t byte;
        ASSERT_TRUE(nbd_pread(h, &byte, 1, 0, 0) < 0);
        nbd_close(h);
        /* No qemu-nbd left (it was our child and is reaped). */
        ASSERT_TRUE(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

TEST(stopped_checkpoints)
{
        env v;
        char path[PATH_MAX + 64], raw[PATH_MAX + 64], *err = NULL;
        tp_export *e = NULL, *w = NULL;
        tp_bitmap_info bi;
        struct nbd_handle *h;
        ext d[8];

        need_tools();
        env_init(&v, 4);
        snprintf(path, sizeof(path), "%s/disk.qcow2", v.img);
        make_qcow2(path, "64M");
        run("qemu-io -f qcow2 -c 'write -P 0x11 0 4M' '%s' >/dev/null", path);

        /* The first backup: a full one that leaves checkpoint c1 behind. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .checkpoint = "c1" }, &e, &err) < 0)
                TEST_FAIL_("open: %s", err);
        ASSERT_EQ(e->n_contexts, 1);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c1", &bi));
        ASSERT_TRUE(bi.persistent && bi.enabled);
        ASSERT_EQ(bi.granularity, 65536);

        run("qemu-io -f qcow2 -c 'write -P 0xa5 8M 4k' -c 'write -P 0x77 20M 100k' '%s' >/dev/null", path);

        /* The incremental: only what changed since c1. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .since = "c1", .checkpoint = "c2" }, &e,
                           &err) < 0)
                TEST_FAIL_("open: %s", err);
        ASSERT_EQ(e->n_contexts, 2);
        ASSERT_STREQ(e->contexts[1], "qemu:dirty-bitmap:c1");
        ASSERT_EQ(e->granularity, 65536);
        h = connect_export(e);
        ASSERT_EQ(dirty_extents(h, "qemu:dirty-bitmap:c1", d, ELEMENTSOF(d)), 2);
        ASSERT_UEQ(d[0].off, 8 * MiB);
        ASSERT_UEQ(d[0].len, 64 * KiB); /* 4k rounded up to the granularity */
        ASSERT_UEQ(d[1].off, 20 * MiB);
        ASSERT_UEQ(d[1].len, 128 * KiB); /* 100k rounded up */
        expect_bytes(h, 8 * MiB, 4 * KiB, 0xa5);
        expect_bytes(h, 0, 4 * KiB, 0x11);
        nbd_close(h);

        /* While a read-only qemu-nbd holds the image, a checkpoint cannot be
         * written into it: the lock conflict is reported as such. */
        ASSERT_ERR(tp_bitmap_create(&v.cfg, "vm1", path, "c3", &err), EBUSY);
        ASSERT_TRUE(err && strstr(err, "in use"));
        free(err);
        err = NULL;
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c2", NULL));

        /* A writable export (a restore) locks the image as well. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .write = true }, &w, &err) < 0)
                TEST_FAIL_("open rw: %s", err);
        h = connect_export(w);
        ASSERT_EQ(nbd_is_read_only(h), 0);
        nbd_close(h);
        ASSERT_ERR(tp_bitmap_remove(&v.cfg, "vm1", path, "c1", &err), EBUSY);
        free(err);
        err = NULL;
        ASSERT_OK(tp_export_close(&v.cfg, w, &err));

        /* Bitmap calls and their errors. */
        ASSERT_ERR(tp_bitmap_create(&v.cfg, "vm1", path, "c1", &err), EEXIST);
        free(err);
        err = NULL;
        ASSERT_ERR(tp_bitmap_remove(&v.cfg, "vm1", path, "nope", &err), ENOENT);
        free(err);
        err = NULL;
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .since = "nope" }, &e, &err),
                   ENOENT);
        ASSERT_TRUE(err && strstr(err, "nope"));
        free(err);
        err = NULL;
        ASSERT_OK(tp_bitmap_remove(&v.cfg, "vm1", path, "c1", &err));
        ASSERT_TRUE(!has_bitmap(&v.cfg, "vm1", path, "c1", NULL));
        ASSERT_OK(tp_bitmap_create(&v.cfg, "vm1", path, "c9", &err));
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c9", NULL));

        /* Internal snapshots: served read-only, missing ones are missing. */
        run("qemu-img snapshot -c s1 '%s'", path);
        run("qemu-io -f qcow2 -c 'write -P 0x22 0 64k' '%s' >/dev/null", path);
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .snapshot = "s1" }, &e, &err) < 0)
                TEST_FAIL_("open snapshot: %s", err);
        ASSERT_UEQ(e->size, 64 * MiB);
        h = connect_export(e);
        expect_bytes(h, 0, 64 * KiB, 0x11);
        nbd_close(h);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .snapshot = "s2" }, &e, &err),
                   ENOENT);
        free(err);
        err = NULL;

        /* A raw image has no checkpoints. */
        snprintf(raw, sizeof(raw), "%s/disk.raw", v.img);
        run("truncate -s 8M '%s'", raw);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = raw, .checkpoint = "c1" }, &e, &err),
                   EINVAL);
        ASSERT_TRUE(err && strstr(err, "raw"));
        free(err);
        err = NULL;
        ASSERT_ERR(tp_bitmap_create(&v.cfg, "vm1", raw, "c1", &err), EINVAL);
        free(err);
        err = NULL;
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = raw }, &e, &err) < 0)
                TEST_FAIL_("open raw: %s", err);
        ASSERT_STREQ(e->format, "raw");
        ASSERT_EQ(e->cluster_size, 0);
        ASSERT_UEQ(e->size, 8 * MiB);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
}

TEST(port_range)
{
        env v;
        char path[PATH_MAX + 64], *err = NULL;
        tp_export *a = NULL, *b = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd, one = 1;

        need_tools();
        env_init(&v, 1);
        snprintf(path, sizeof(path), "%s/disk.qcow2", v.img);
        make_qcow2(path, "8M");

        /* One port: the second export finds none. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err) < 0)
                TEST_FAIL_("open: %s", err);
        ASSERT_EQ(a->port, v.cfg.port_min);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm2", .path = path }, &b, &err), EBUSY);
        ASSERT_TRUE(err && strstr(err, "port"));
        free(err);
        err = NULL;
        ASSERT_OK(tp_export_close(&v.cfg, a, &err));

        /* A port another program listens on is skipped. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
        sa.sin_port = htons(v.cfg.port_min);
        ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
        ASSERT_OK(listen(fd, 1));
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err), EBUSY);
        free(err);
        err = NULL;
        v.cfg.port_max = (uint16_t)(v.cfg.port_min + 1);
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err) < 0)
                TEST_FAIL_("open: %s", err);
        ASSERT_EQ(a->port, v.cfg.port_min + 1);
        ASSERT_OK(tp_export_close(&v.cfg, a, &err));
        close(fd);

        /* The race the trial bind cannot see: qemu-nbd itself finds the
         * port taken (a wrapper plays that for the first port), and the
         * next port is tried. */
        char wrapper[PATH_MAX + 64];
        FILE *f;
        snprintf(wrapper, sizeof(wrapper), "%s/fake-qemu-nbd", v.dir);
        f = fopen(wrapper, "we");
        ASSERT_TRUE(f);
        fprintf(f,
                "#!/bin/sh\n"
                "[ \"$6\" = %u ] && { echo 'qemu-nbd: Failed to find an available port: Address already in use' "
                ">&2; exit 1; }\n"
                "exec qemu-nbd \"$@\"\n",
                v.cfg.port_min);
        fclose(f);
        ASSERT_OK(chmod(wrapper, 0755));
        v.cfg.qemu_nbd = wrapper;
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err) < 0)
                TEST_FAIL_("open: %s", err);
        ASSERT_EQ(a->port, v.cfg.port_min + 1);
        ASSERT_OK(tp_export_close(&v.cfg, a, &err));
        /* Any other failure is reported with qemu-nbd's last line. */
        v.cfg.port_max = v.cfg.port_min;
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err), EBUSY);
        free(err);
        err = NULL;
        snprintf(wrapper, sizeof(wrapper), "%s/missing-qemu-nbd", v.dir);
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &a, &err), EIO);
        ASSERT_TRUE(err && strstr(err, "not found"));
        free(err);
}

/* ---- a running VM ------------------------------------------------------ */

static tp_qmp *qmp(const env *v)
{
        char sock[PATH_MAX + 16];
        tp_qmp *q = NULL;

        snprintf(sock, sizeof(sock), "%s/vm1.qmp", v->dir);
        ASSERT_OK(tp_qmp_connect(sock, 5000, &q));
        return q;
}

static json_t *qmp_do(const env *v, const char *cmd, json_t *args)
{
        tp_qmp *q = qmp(v);
        json_t *ret = NULL;
        char *desc = NULL;

        if (tp_qmp_execute(q, cmd, args, &ret, NULL, &desc) < 0)
                TEST_FAIL_("QMP %s: %s", cmd, desc);
        json_decref(args);
        tp_qmp_free(q);
        return ret;
}

static void hmp_write(const env *v, const char *io)
{
        char line[256];

        snprintf(line, sizeof(line), "qemu-io -d /machine/peripheral/vd0/virtio-backend \"%s\"", io);
        json_t *r = qmp_do(v, "human-monitor-command", json_pack("{s:s}", "command-line", line));
        ASSERT_TRUE(json_is_string(r) && json_string_length(r) == 0); /* qemu-io errors come back as text */
        json_decref(r);
}

static void qemu_start(const env *v, const char *disk)
{
        char blk1[PATH_MAX + 128], qmpopt[PATH_MAX + 64], pidfile[PATH_MAX + 16], buf[32];
        int status, fd;
        ssize_t n;
        pid_t pid;

        snprintf(blk1, sizeof(blk1), "driver=file,filename=%s,node-name=file0", disk);
        snprintf(qmpopt, sizeof(qmpopt), "unix:%s/vm1.qmp,server=on,wait=off", v->dir);
        snprintf(pidfile, sizeof(pidfile), "%s/qemu.pid", v->dir);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-nodefaults",
                       "-display", "none", "-m", "64", "-blockdev", blk1, "-blockdev",
                       "driver=qcow2,file=file0,node-name=fmt0", "-device", "virtio-blk-pci,drive=fmt0,id=vd0", "-qmp",
                       qmpopt, "-daemonize", "-pidfile", pidfile, (char *)NULL);
                _exit(127);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        fd = open(pidfile, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        ASSERT_TRUE(n > 0);
        buf[n] = '\0';
        qemu_pid = (pid_t)atoi(buf);
        ASSERT_TRUE(qemu_pid > 0);
}

/* Whether pid still runs (a zombie waiting for init does not). */
static bool alive(pid_t pid)
{
        char path[64], buf[512];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        char *paren = strrchr(buf, ')');
        return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

static void qemu_quit(const env *v)
{
        tp_qmp *q = qmp(v);

        (void)tp_qmp_execute(q, "quit", NULL, NULL, NULL, NULL);
        tp_qmp_free(q);
        for (int i = 0; i < 500 && alive(qemu_pid); i++)
                usleep(5000);
        if (alive(qemu_pid))
                kill(qemu_pid, SIGKILL);
        qemu_pid = 0;
}

static size_t count_nodes(const env *v, const char *prefix)
{
        json_t *nodes = qmp_do(v, "query-named-block-nodes", NULL), *n;
        size_t k, count = 0;

        json_array_foreach(nodes, k, n)
        {
                const char *name = json_string_value(json_object_get(n, "node-name"));
                if (name && strncmp(name, prefix, strlen(prefix)) == 0)
                        count++;
        }
        json_decref(nodes);
        return count;
}

TEST(running_vm)
{
        env v;
        char path[PATH_MAX + 64], *err = NULL;
        tp_export *e = NULL, *e2 = NULL;
        tp_bitmap_info bi;
        struct nbd_handle *h;
        json_t *r;
        ext d[8];
        uint64_t t0;

        need_tools();
        env_init(&v, 8);
        snprintf(path, sizeof(path), "%s/disk.qcow2", v.img);
        make_qcow2(path, "64M");
        qemu_start(&v, path);

        t0 = vb_now_ns();
        if (tp_bitmap_create(&v.cfg, "vm1", path, "c1", &err) < 0)
                TEST_FAIL_("bitmap create: %s", err);
        fprintf(stderr, "QMP bitmap create: %.1f ms\n", (vb_now_ns() - t0) / 1e6);
        ASSERT_ERR(tp_bitmap_create(&v.cfg, "vm1", path, "c1", &err), EEXIST);
        free(err);
        err = NULL;
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c1", &bi));
        ASSERT_TRUE(bi.persistent && bi.enabled);
        ASSERT_EQ(bi.dirty_bytes, 0);

        hmp_write(&v, "write -P 0x5a 1M 64k");
        hmp_write(&v, "write -P 0xa5 10M 4k");
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c1", &bi));
        ASSERT_EQ(bi.dirty_bytes, 128 * KiB);

        /* What a running VM cannot do. */
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .write = true }, &e, &err),
                   EBUSY);
        ASSERT_TRUE(err && strstr(err, "running"));
        free(err);
        err = NULL;
        /* Its internal snapshots are exported (test-cvd-snapshot.sh), but
         * only ones that exist, and without a checkpoint. */
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .snapshot = "s" }, &e, &err),
                   ENOENT);
        ASSERT_TRUE(err && strstr(err, "no internal snapshot s"));
        free(err);
        err = NULL;
        ASSERT_ERR(tp_export_open(&v.cfg,
                                  &(tp_export_req){ .vm = "vm1", .path = path, .snapshot = "s", .checkpoint = "c9" },
                                  &e, &err),
                   EINVAL);
        free(err);
        err = NULL;
        ASSERT_ERR(tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .since = "nope" }, &e, &err),
                   ENOENT);
        free(err);
        err = NULL;

        /* An NBD server left running by an earlier vbak-cvd. */
        char port[8];
        snprintf(port, sizeof(port), "%u", v.cfg.port_max);
        json_decref(qmp_do(&v, "nbd-server-start",
                           json_pack("{s:{s:s, s:{s:s, s:s}}}", "addr", "type", "inet", "data", "host", "127.0.0.1",
                                     "port", port)));

        t0 = vb_now_ns();
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .since = "c1", .checkpoint = "c2" }, &e,
                           &err) < 0)
                TEST_FAIL_("open: %s", err);
        fprintf(stderr, "QMP export ready in %.1f ms\n", (vb_now_ns() - t0) / 1e6);
        ASSERT_TRUE(e->running);
        ASSERT_STREQ(e->format, "qcow2");
        ASSERT_UEQ(e->size, 64 * MiB);
        ASSERT_EQ(e->cluster_size, 65536);
        ASSERT_EQ(e->granularity, 65536);
        ASSERT_EQ(e->n_contexts, 2);
        ASSERT_STREQ(e->contexts[0], "base:allocation");
        ASSERT_STREQ(e->contexts[1], "qemu:dirty-bitmap:c1");
        ASSERT_TRUE(e->port >= v.cfg.port_min && e->port <= v.cfg.port_max);
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c2", &bi));
        ASSERT_TRUE(bi.persistent && bi.enabled);

        /* A write after the export: in c1 and c2, not in the frozen copy. */
        hmp_write(&v, "write -P 0x77 30M 4k");
        h = connect_export(e);
        ASSERT_EQ(dirty_extents(h, "qemu:dirty-bitmap:c1", d, ELEMENTSOF(d)), 2);
        ASSERT_UEQ(d[0].off, 1 * MiB);
        ASSERT_UEQ(d[0].len, 64 * KiB);
        ASSERT_UEQ(d[1].off, 10 * MiB);
        ASSERT_UEQ(d[1].len, 64 * KiB);
        expect_bytes(h, 1 * MiB, 64 * KiB, 0x5a);
        expect_bytes(h, 10 * MiB, 4 * KiB, 0xa5);
        exts x;
        get_extents(h, "base:allocation", &x);
        ASSERT_TRUE(x.n >= 5);
        ASSERT_EQ(x.v[0].flags & 1, 1);
        ASSERT_UEQ(x.v[1].off, 1 * MiB);
        ASSERT_EQ(x.v[1].flags, 0);

        /* A second export of the VM shares its NBD server. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &e2, &err) < 0)
                TEST_FAIL_("open 2: %s", err);
        ASSERT_EQ(e2->port, e->port);
        ASSERT_EQ(e2->n_contexts, 1);
        ASSERT_TRUE(strcmp(e2->name, e->name) != 0);
        ASSERT_OK(tp_export_close(&v.cfg, e2, &err));
        /* The first one still serves. */
        expect_bytes(h, 30 * MiB, 4 * KiB, 0x77);

        /* Closing drops a client that is still connected. */
        uint16_t p = e->port;
        t0 = vb_now_ns();
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        fprintf(stderr, "QMP export closed in %.1f ms\n", (vb_now_ns() - t0) / 1e6);
        ASSERT_TRUE(port_refuses(p));
        uint8_t byte;
        ASSERT_TRUE(nbd_pread(h, &byte, 1, 0, 0) < 0);
        nbd_close(h);

        /* Nothing left: no export, no holder node; the checkpoints stay. */
        r = qmp_do(&v, "query-block-exports", NULL);
        ASSERT_EQ(json_array_size(r), 0);
        json_decref(r);
        ASSERT_EQ(count_nodes(&v, "vbak"), 0);
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c1", &bi));
        ASSERT_EQ(bi.dirty_bytes, 192 * KiB);
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c2", &bi));
        ASSERT_TRUE(bi.persistent);
        ASSERT_EQ(bi.dirty_bytes, 64 * KiB);
        tp_bitmap_info *list = NULL;
        size_t n = 0;
        ASSERT_OK(tp_bitmap_list(&v.cfg, "vm1", path, &list, &n, &err));
        ASSERT_EQ(n, 2);
        tp_bitmap_info_free(list, n);

        ASSERT_OK(tp_bitmap_remove(&v.cfg, "vm1", path, "c1", &err));
        ASSERT_ERR(tp_bitmap_remove(&v.cfg, "vm1", path, "c1", &err), ENOENT);
        free(err);
        err = NULL;

        /* The VM restarts under the same socket while an export is open:
         * the old export is forgotten, the new QEMU gets its own server. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &e, &err) < 0)
                TEST_FAIL_("open 3: %s", err);
        qemu_quit(&v);
        qemu_start(&v, path);
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path, .since = "c2" }, &e2, &err) < 0)
                TEST_FAIL_("open 4: %s", err);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));
        h = connect_export(e2); /* closing the old one left the new one alone */
        ASSERT_EQ(dirty_extents(h, "qemu:dirty-bitmap:c2", d, ELEMENTSOF(d)), 1);
        ASSERT_UEQ(d[0].off, 30 * MiB);
        nbd_close(h);
        p = e2->port;
        ASSERT_OK(tp_export_close(&v.cfg, e2, &err));
        ASSERT_TRUE(port_refuses(p));
        ASSERT_EQ(count_nodes(&v, "vbak"), 0);

        /* An export whose VM went away closes cleanly. */
        if (tp_export_open(&v.cfg, &(tp_export_req){ .vm = "vm1", .path = path }, &e, &err) < 0)
                TEST_FAIL_("open 5: %s", err);
        qemu_quit(&v);
        ASSERT_OK(tp_export_close(&v.cfg, e, &err));

        /* c2 was saved into the image when QEMU quit; now offline. */
        ASSERT_TRUE(has_bitmap(&v.cfg, "vm1", path, "c2", &bi));
        ASSERT_TRUE(bi.persistent && bi.enabled);
        ASSERT_TRUE(!has_bitmap(&v.cfg, "vm1", path, "c1", NULL));
}

/* ---- several threads at once ------------------------------------------- */

typedef struct worker {
        const env *v;
        pthread_barrier_t *barrier;
        char path[PATH_MAX + 64];
        const char *vm;
        uint16_t port;
        int r;
        char *err;
} worker;

static void *worker_main(void *userdata)
{
        worker *w = userdata;
        tp_export *e = NULL;

        w->r = tp_export_open(&w->v->cfg, &(tp_export_req){ .vm = w->vm, .path = w->path }, &e, &w->err);
        if (w->r >= 0)
                w->port = e->port;
        pthread_barrier_wait(w->barrier); /* all open at the same time */
        if (w->r >= 0) {
                struct nbd_handle *h = connect_export(e);
                expect_bytes(h, 0, 4 * KiB, 0);
                nbd_close(h);
                w->r = tp_export_close(&w->v->cfg, e, &w->err);
        }
        return NULL;
}

/* Open descriptors, listed on stderr when verbose. */
static unsigned count_fds(bool verbose)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned n = 0;

        ASSERT_TRUE(d);
        while ((de = readdir(d))) {
                char path[300], target[PATH_MAX];
                ssize_t len;

                if (de->d_name[0] == '.')
                        continue;
                n++;
                snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
                len = readlink(path, target, sizeof(target) - 1);
                if (verbose)
                        fprintf(stderr, "fd %s -> %.*s\n", de->d_name, (int)(len > 0 ? len : 0), target);
        }
        closedir(d);
        return n;
}

TEST(concurrent)
{
        enum {
                N = 8
        };
        env v;
        worker w[N];
        pthread_t t[N];
        pthread_barrier_t barrier;
        char path[PATH_MAX + 64];
        unsigned fds;

        need_tools();
        env_init(&v, 16);
        snprintf(path, sizeof(path), "%s/run.qcow2", v.img);
        make_qcow2(path, "16M");
        qemu_start(&v, path);
        fds = count_fds(false);

        /* Five stopped disks (two threads share one, read-only) and three
         * exports of the running VM's disk, all opened at once. */
        ASSERT_EQ(pthread_barrier_init(&barrier, NULL, N), 0);
        for (int i = 0; i < N; i++) {
                w[i] = (worker){ .v = &v, .barrier = &barrier };
                if (i < 5) {
                        snprintf(w[i].path, sizeof(w[i].path), "%s/d%d.qcow2", v.img, i == 4 ? 3 : i);
                        if (i < 4)
                                make_qcow2(w[i].path, "8M");
                        w[i].vm = i == 4 ? "stopped3b" : (const char *[]){ "s0", "s1", "s2", "s3" }[i];
                } else {
                        snprintf(w[i].path, sizeof(w[i].path), "%s", path);
                        w[i].vm = "vm1";
                }
        }
        for (int i = 0; i < N; i++)
                ASSERT_EQ(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
        for (int i = 0; i < N; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < N; i++)
                if (w[i].r < 0)
                        TEST_FAIL_("worker %d: %s", i, w[i].err);
        /* Each stopped export had its own port; the VM's exports shared one. */
        for (int i = 0; i < 5; i++)
                for (int j = i + 1; j < N; j++)
                        ASSERT_NE(w[i].port, w[j].port);
        ASSERT_EQ(w[5].port, w[6].port);
        ASSERT_EQ(w[6].port, w[7].port);
        for (int i = 0; i < N; i++)
                ASSERT_TRUE(port_refuses(w[i].port));
        ASSERT_EQ(count_nodes(&v, "vbak"), 0);
        json_t *r = qmp_do(&v, "query-block-exports", NULL);
        ASSERT_EQ(json_array_size(r), 0);
        json_decref(r);
        /* No descriptor and no child left behind. */
        if (count_fds(false) != fds)
                count_fds(true);
        ASSERT_EQ(count_fds(false), fds);
        ASSERT_TRUE(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
        qemu_quit(&v);
}
