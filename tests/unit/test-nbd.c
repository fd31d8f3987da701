/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-nbd.c -- the NBD data plane against a real qemu-nbd on a unix
 * socket: reads, extent maps, writes, write-zeroes and flush over several
 * connections; a server killed mid-stream and started again (the reads
 * resume, the data is exact, what is read twice stays within the resume
 * buffer); a server that stays away longer than the reconnect window (the
 * disk fails with a message that says so); a server that is not there.
 */
#include <fcntl.h>
#include <libnbd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/nbd.h"

#define MiB (1024 * 1024)

typedef struct server {
        pid_t pid;
        char sock[256], image[256];
        bool writable;
} server;

static bool have_qemu_nbd(void)
{
        return system("command -v qemu-nbd >/dev/null 2>&1") == 0;
}

static void server_start(server *s)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        unlink(s->sock);
        s->pid = fork();
        ASSERT_TRUE(s->pid >= 0);
        if (s->pid == 0) {
                int null = open("/dev/null", O_WRONLY);

                /* Never outlive the test, never hold the runner's output open. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(null, 1);
                dup2(null, 2);
                if (s->writable)
                        execlp("qemu-nbd", "qemu-nbd", "-t", "--shared=8", "-k", s->sock, "-f", "raw", s->image,
                               (char *)NULL);
                else
                        execlp("qemu-nbd", "qemu-nbd", "-r", "-t", "--shared=8", "-k", s->sock, "-f", "raw", s->image,
                               (char *)NULL);
                _exit(127);
        }
        ASSERT_TRUE(strlen(s->sock) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, s->sock, strlen(s->sock) + 1);
        for (int i = 0; i < 500; i++) { /* up to 5 s */
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

                close(fd);
                if (ok)
                        return;
                usleep(10000);
        }
        TEST_FAIL_("qemu-nbd did not start");
}

static void server_kill(server *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
}

static void make_image(server *s, uint64_t size, uint8_t **ret)
{
        uint8_t *data = calloc(1, size);
        int fd;

        ASSERT_TRUE(data);
        snprintf(s->image, sizeof(s->image), "%s/disk.raw", test_tmpdir());
        snprintf(s->sock, sizeof(s->sock), "%s/nbd.sock", test_tmpdir());
        fd = open(s->image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, (off_t)size));
        *ret = data;
        close(fd);
}

static void image_write(server *s, uint8_t *model, uint64_t off, uint64_t len, uint8_t seed)
{
        int fd = open(s->image, O_WRONLY | O_CLOEXEC);

        for (uint64_t i = 0; i < len; i++)
                model[off + i] = (uint8_t)(seed + i * 31 + (i >> 12));
        ASSERT_OK(vb_pwrite_all(fd, model + off, len, (off_t)off));
        close(fd);
}

typedef struct waiter {
        uv_loop_t *loop;
        bool done;
        int r;
        tp_nbd *n;
} waiter;

static void opened(void *userdata, int r, tp_nbd *n)
{
        waiter *w = userdata;

        w->done = true;
        w->r = r;
        w->n = n;
}

static void done_cb(void *userdata, int r)
{
        waiter *w = userdata;

        w->done = true;
        w->r = r;
}

static int wait_for(waiter *w)
{
        while (!w->done)
                ASSERT_TRUE(uv_run(w->loop, UV_RUN_ONCE) != 0 || w->done);
        w->done = false;
        return w->r;
}

static tp_nbd *open_disk(uv_loop_t *loop, server *s, tp_nbd_opts *o)
{
        char uri[400];
        waiter w = { .loop = loop };

        snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", s->sock);
        o->uri = uri;
        ASSERT_OK(tp_nbd_open(loop, o, opened, &w));
        ASSERT_OK(wait_for(&w));
        return w.n;
}

static void closed(void *userdata)
{
        *(bool *)userdata = true;
}

static void close_disk(uv_loop_t *loop, tp_nbd *n)
{
        bool done = false;

        tp_nbd_close(n, closed, &done);
        while (!done)
                uv_run(loop, UV_RUN_ONCE);
        ASSERT_EQ(uv_run(loop, UV_RUN_NOWAIT), 0); /* nothing left behind */
        ASSERT_OK(uv_loop_close(loop));
}

TEST(nbd_read_map_write)
{
        server s = { .writable = true };
        uv_loop_t loop;
        uint8_t *model, *buf;
        dd_extents e = DD_EXTENTS_INIT;
        tp_nbd_opts o = { .connections = 3, .request_size = 64 << 10 };
        waiter w = { .loop = &loop };
        tp_nbd *n;
        uint64_t size = 16 * MiB;

        if (!have_qemu_nbd())
                exit(EXIT_TEST_SKIP);
        make_image(&s, size, &model);
        image_write(&s, model, 1 * MiB, 256 << 10, 1);
        image_write(&s, model, 9 * MiB, 3 * MiB, 2);
        server_start(&s);
        ASSERT_OK(uv_loop_init(&loop));
        o.write = true;
        n = open_disk(&loop, &s, &o);
        ASSERT_UEQ(tp_nbd_size(n), size);
        ASSERT_TRUE(tp_nbd_has_context(n, TP_CONTEXT_ALLOCATION));

        /* The allocation map covers the written ranges (qemu-nbd on a raw
         * file reports file-system allocation, so at least these). */
        ASSERT_OK(tp_nbd_map(n, TP_CONTEXT_ALLOCATION, LIBNBD_STATE_ZERO, 0, &e, done_cb, &w));
        ASSERT_OK(wait_for(&w));
        ASSERT_OK(dd_extents_normalize(&e, size));
        ASSERT_TRUE(e.n >= 1);
        {
                uint64_t covered = 0;
                for (size_t i = 0; i < e.n; i++) {
                        uint64_t a = MAX(e.v[i].offset, 9ull * MiB),
                                 b = MIN(e.v[i].offset + e.v[i].length, 12ull * MiB);
                        if (a < b)
                                covered += b - a;
                }
                ASSERT_UEQ(covered, 3 * MiB);
                ASSERT_TRUE(dd_extents_total(&e) < size); /* the holes are not data */
        }

        /* One read across the whole disk, cut into 256 requests over 3 connections. */
        buf = malloc(size);
        ASSERT_OK(tp_nbd_pread(n, buf, size, 0, done_cb, &w));
        ASSERT_OK(wait_for(&w));
        ASSERT_MEMEQ(buf, model, size);
        ASSERT_UEQ(tp_nbd_get_stats(n)->bytes_read, size);
        ASSERT_UEQ(tp_nbd_get_stats(n)->requests, 256 + 1);

        /* Write, zero, flush; then read back through the file. */
        memset(buf, 0x77, 2 * MiB);
        ASSERT_OK(tp_nbd_pwrite(n, buf, 2 * MiB, 4 * MiB, done_cb, &w));
        ASSERT_OK(wait_for(&w));
        memset(model + 4 * MiB, 0x77, 2 * MiB);
        ASSERT_OK(tp_nbd_zero(n, 1 * MiB, 9 * MiB, done_cb, &w));
        ASSERT_OK(wait_for(&w));
        memset(model + 9 * MiB, 0, 1 * MiB);
        ASSERT_OK(tp_nbd_flush(n, done_cb, &w));
        ASSERT_OK(wait_for(&w));
        ASSERT_ERR(tp_nbd_pread(n, buf, 2, size - 1, done_cb, &w), ERANGE);
        close_disk(&loop, n);
        server_kill(&s);
        {
                _cleanup_free_ char *text = NULL;
                size_t len;
                ASSERT_OK(vb_read_file_at(AT_FDCWD, s.image, size, &text, &len));
                ASSERT_UEQ(len, size);
                ASSERT_MEMEQ(text, model, size);
        }
        dd_extents_clear(&e);
        free(buf);
        free(model);
}

/* Reads the disk in 1 MiB pieces, 8 at a time, killing the server after
 * `kill_after` pieces and starting it again `restart_ms` later (never when
 * negative). */
typedef struct reader {
        uv_loop_t *loop;
        tp_nbd *n;
        server *s;
        uint8_t *buf;
        uint64_t size, next, completed;
        unsigned in_flight;
        uint64_t kill_after;
        int restart_ms;
        bool killed;
        int r;
        uv_timer_t restart;
} reader;

static void reader_pump(reader *rd);

static void restart_cb(uv_timer_t *t)
{
        reader *rd = t->data;

        server_start(rd->s);
}

static void piece_done(void *userdata, int r)
{
        reader *rd = userdata;

        rd->in_flight--;
        rd->completed++;
        if (r < 0 && rd->r == 0)
                rd->r = r;
        if (!rd->killed && rd->completed >= rd->kill_after) {
                rd->killed = true;
                server_kill(rd->s);
                if (rd->restart_ms >= 0)
                        uv_timer_start(&rd->restart, restart_cb, (uint64_t)rd->restart_ms, 0);
        }
        reader_pump(rd);
}

static void reader_pump(reader *rd)
{
        while (rd->r == 0 && rd->in_flight < 8 && rd->next < rd->size) {
                ASSERT_OK(tp_nbd_pread(rd->n, rd->buf + rd->next, MiB, rd->next, piece_done, rd));
                rd->next += MiB;
                rd->in_flight++;
        }
}

static void run_reader(reader *rd)
{
        reader_pump(rd);
        while (rd->in_flight > 0)
                uv_run(rd->loop, UV_RUN_ONCE);
}

TEST(nbd_reconnect_resumes)
{
        server s = { 0 };
        uv_loop_t loop;
        uint8_t *model;
        uint64_t size = 64 * MiB;
        tp_nbd_opts o = {
                .connections = 2, .request_size = 256 << 10, .resume_buffer = 4 * MiB, .reconnect_window_ms = 20000
        };
        reader rd = { 0 };
        const tp_nbd_stats *st;

        if (!have_qemu_nbd())
                exit(EXIT_TEST_SKIP);
        make_image(&s, size, &model);
        image_write(&s, model, 0, size, 9);
        server_start(&s);
        ASSERT_OK(uv_loop_init(&loop));
        rd = (reader){ .loop = &loop, .s = &s, .size = size, .kill_after = 10, .restart_ms = 300 };
        rd.n = open_disk(&loop, &s, &o);
        rd.buf = malloc(size);
        uv_timer_init(&loop, &rd.restart);
        rd.restart.data = &rd;
        run_reader(&rd);
        ASSERT_OK(rd.r);
        ASSERT_MEMEQ(rd.buf, model, size);
        st = tp_nbd_get_stats(rd.n);
        ASSERT_TRUE(st->cuts >= 1);
        ASSERT_TRUE(st->reconnects >= 1);
        ASSERT_TRUE(st->bytes_resent > 0);
        ASSERT_TRUE(st->bytes_resent <= st->cuts * o.resume_buffer); /* the resume buffer bounds re-reads */
        ASSERT_UEQ(st->bytes_read, size);                            /* only answered reads count: nothing twice */
        uv_close((uv_handle_t *)&rd.restart, NULL);
        close_disk(&loop, rd.n);
        server_kill(&s);
        free(rd.buf);
        free(model);
}

TEST(nbd_window_expires)
{
        server s = { 0 };
        uv_loop_t loop;
        uint8_t *model;
        uint64_t size = 32 * MiB;
        tp_nbd_opts o = { .connections = 1, .reconnect_window_ms = 800 };
        reader rd = { 0 };
        uint64_t t0;

        if (!have_qemu_nbd())
                exit(EXIT_TEST_SKIP);
        make_image(&s, size, &model);
        server_start(&s);
        ASSERT_OK(uv_loop_init(&loop));
        rd = (reader){ .loop = &loop, .s = &s, .size = size, .kill_after = 4, .restart_ms = -1 };
        rd.n = open_disk(&loop, &s, &o);
        rd.buf = malloc(size);
        uv_timer_init(&loop, &rd.restart);
        t0 = vb_now_ns();
        run_reader(&rd);
        ASSERT_ERR(rd.r, ETIMEDOUT);
        ASSERT_TRUE(vb_now_ns() - t0 >= 800ull * 1000000);
        ASSERT_TRUE(strstr(tp_nbd_error_message(rd.n), "reconnect window") != NULL);
        /* A failed disk refuses nothing outright but fails what comes next. */
        uv_close((uv_handle_t *)&rd.restart, NULL);
        close_disk(&loop, rd.n);
        free(rd.buf);
        free(model);
}

TEST(nbd_open_refused)
{
        uv_loop_t loop;
        waiter w = { .loop = &loop };
        tp_nbd_opts o = { 0 };
        char uri[300];

        snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/nobody.sock", test_tmpdir());
        o.uri = uri;
        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(tp_nbd_open(&loop, &o, opened, &w));
        ASSERT_TRUE(wait_for(&w) < 0);
        ASSERT_TRUE(w.n == NULL);
        ASSERT_TRUE(strstr(tp_nbd_open_error(), "nobody.sock") != NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        ASSERT_OK(uv_loop_close(&loop));
        o.request_size = 3000; /* not a power of two */
        ASSERT_ERR(tp_nbd_open(&loop, &o, opened, &w), EINVAL);
}

static void cont_cb(uv_timer_t *t)
{
        server *s = t->data;

        kill(s->pid, SIGCONT);
}

/* A server that stops answering (SIGSTOP: the socket stays open) is
 * dropped after the network timeout; once it answers again the reads
 * resume and complete. */
TEST(nbd_timeout_drops_a_silent_server)
{
        server s = { 0 };
        uv_loop_t loop;
        uint8_t *model;
        uint64_t size = 32 * MiB;
        tp_nbd_opts o = { .connections = 1, .timeout_ms = 400, .reconnect_window_ms = 20000 };
        reader rd = { 0 };
        uv_timer_t cont;

        if (!have_qemu_nbd())
                exit(EXIT_TEST_SKIP);
        make_image(&s, size, &model);
        image_write(&s, model, 0, size, 5);
        server_start(&s);
        ASSERT_OK(uv_loop_init(&loop));
        rd = (reader){ .loop = &loop, .s = &s, .size = size, .kill_after = UINT64_MAX, .restart_ms = -1 };
        rd.n = open_disk(&loop, &s, &o);
        rd.buf = malloc(size);
        uv_timer_init(&loop, &rd.restart);
        uv_timer_init(&loop, &cont);
        cont.data = &s;
        kill(s.pid, SIGSTOP);
        uv_timer_start(&cont, cont_cb, 1500, 0);
        run_reader(&rd);
        ASSERT_OK(rd.r);
        ASSERT_MEMEQ(rd.buf, model, size);
        ASSERT_TRUE(tp_nbd_get_stats(rd.n)->cuts >= 1);
        ASSERT_TRUE(tp_nbd_get_stats(rd.n)->reconnects >= 1);
        uv_close((uv_handle_t *)&rd.restart, NULL);
        uv_close((uv_handle_t *)&cont, NULL);
        close_disk(&loop, rd.n);
        server_kill(&s);
        free(rd.buf);
        free(model);
}
