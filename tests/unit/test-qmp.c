/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-qmp.c -- the QMP client against a scripted fake monitor on a unix
 * socket (a thread of the test): greeting and capabilities, events and
 * stray answers skipped while a command waits, QEMU errors with their
 * class, big answers, silence (timeouts), a closed socket, and the ways a
 * VM that does not run shows up (no socket, a stale one, not QMP).
 */
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/qmp.h"

typedef enum greeting {
        GREET_QMP,
        GREET_NONE,  /* accept and say nothing */
        GREET_OTHER, /* a JSON line that is not a QMP greeting */
} greeting;

typedef struct fake {
        char path[108];
        int lfd;
        greeting greet;
        pthread_t thread;
} fake;

static void send_line(int fd, const char *s)
{
        ASSERT_OK(vb_write_all(fd, s, strlen(s)));
        ASSERT_OK(vb_write_all(fd, "\r\n", 2));
}

static void send_json(int fd, json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT);

        ASSERT_TRUE(s);
        send_line(fd, s);
        free(s);
        json_decref(j);
}

/* Reads one line; NULL at end of file. */
static char *recv_line(int fd)
{
        char buf[65536];
        size_t n = 0;

        for (;;) {
                char c;
                ssize_t r = read(fd, &c, 1);
                if (r <= 0)
                        return NULL;
                if (c == '\n')
                        break;
                ASSERT_TRUE(n + 1 < sizeof(buf));
                buf[n++] = c;
        }
        buf[n] = '\0';
        return strdup(buf);
}

static void *fake_main(void *userdata)
{
        fake *f = userdata;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        char *line;

        ASSERT_TRUE(fd >= 0);
        if (f->greet == GREET_NONE) {
                /* Hold the client until it gives up. */
                while ((line = recv_line(fd)))
                        free(line);
                close(fd);
                return NULL;
        }
        if (f->greet == GREET_OTHER) {
                send_line(fd, "{\"hello\": 1}");
                close(fd);
                return NULL;
        }
        send_line(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}, "
                      "\"capabilities\": [\"oob\"]}}");
        while ((line = recv_line(fd))) {
                json_t *cmd = json_loads(line, 0, NULL), *id, *args;
                const char *what;

                free(line);
                ASSERT_TRUE(cmd);
                what = json_string_value(json_object_get(cmd, "execute"));
                id = json_object_get(cmd, "id");
                args = json_object_get(cmd, "arguments");
                ASSERT_TRUE(what);
                if (strcmp(what, "qmp_capabilities") == 0) {
                        send_json(fd, json_pack("{s:{}, s:O}", "return", "id", id));
                } else if (strcmp(what, "echo") == 0) {
                        /* An event and a stale answer come first. */
                        send_line(fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
                                      "\"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"x\"}}");
                        send_json(fd, json_pack("{s:s, s:I}", "return", "stale", "id", (json_int_t)999999));
                        send_line(fd, "");
                        send_json(fd, json_pack("{s:O?, s:O}", "return", args, "id", id));
                } else if (strcmp(what, "big") == 0) {
                        size_t n = (size_t)json_integer_value(json_object_get(args, "n"));
                        char *s = malloc(n + 1);
                        ASSERT_TRUE(s);
                        memset(s, 'x', n);
                        s[n] = '\0';
                        send_json(fd, json_pack("{s:s, s:O}", "return", s, "id", id));
                        free(s);
                } else if (strcmp(what, "fail") == 0) {
                        send_json(fd, json_pack("{s:{s:s, s:s}, s:O}", "error", "class", "DeviceNotFound", "desc",
                                                "Cannot find device=nope", "id", id));
                } else if (strcmp(what, "hang") == 0) {
                        /* no answer */
                } else if (strcmp(what, "close") == 0) {
                        json_decref(cmd);
                        break;
                }
                json_decref(cmd);
        }
        close(fd);
        return NULL;
}

static void fake_start(fake *f, greeting g)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(f->path, sizeof(f->path), "%s/vm.qmp", test_tmpdir());
        memcpy(sa.sun_path, f->path, sizeof(f->path));
        f->greet = g;
        f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(f->lfd >= 0);
        ASSERT_OK(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)));
        ASSERT_OK(listen(f->lfd, 4));
        ASSERT_EQ(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
        pthread_join(f->thread, NULL);
        close(f->lfd);
        unlink(f->path);
}

TEST(commands)
{
        fake f;
        tp_qmp *q = NULL;
        json_t *ret = NULL, *args;
        char *cls = NULL, *desc = NULL;

        fake_start(&f, GREET_QMP);
        ASSERT_OK(tp_qmp_connect(f.path, 2000, &q));
        ASSERT_EQ(tp_qmp_peer_pid(q), getpid());

        /* The answer is the one with our id, after an event and a stale one. */
        args = json_pack("{s:s, s:[i, i]}", "node", "fmt0", "list", 1, 2);
        ASSERT_OK(tp_qmp_execute(q, "echo", args, &ret, &cls, &desc));
        ASSERT_TRUE(json_equal(ret, args));
        ASSERT_TRUE(cls == NULL && desc == NULL);
        json_decref(ret);
        json_decref(args);
        ret = NULL;

        /* No arguments and no interest in the answer. */
        ASSERT_OK(tp_qmp_execute(q, "echo", NULL, NULL, NULL, NULL));

        /* QEMU's error, class and description. */
        ASSERT_ERR(tp_qmp_execute(q, "fail", NULL, &ret, &cls, &desc), EREMOTEIO);
        ASSERT_STREQ(cls, "DeviceNotFound");
        ASSERT_STREQ(desc, "Cannot find device=nope");
        ASSERT_TRUE(ret == NULL);
        free(cls);
        free(desc);

        /* An answer far bigger than one read. */
        args = json_pack("{s:i}", "n", 3 << 20);
        ASSERT_OK(tp_qmp_execute(q, "big", args, &ret, NULL, NULL));
        json_decref(args);
        ASSERT_EQ(json_string_length(ret), 3 << 20);
        json_decref(ret);

        /* Silence: a timeout; the connection is then unusable. */
        tp_qmp_set_timeout(q, 200);
        uint64_t t0 = vb_now_ns();
        ASSERT_ERR(tp_qmp_execute(q, "hang", NULL, NULL, &cls, &desc), ETIMEDOUT);
        ASSERT_TRUE(vb_now_ns() - t0 >= 190 * 1000000ull);
        ASSERT_TRUE(cls == NULL);
        ASSERT_TRUE(desc && strstr(desc, "did not answer"));
        free(desc);
        ASSERT_ERR(tp_qmp_execute(q, "echo", NULL, NULL, NULL, &desc), ECONNRESET);
        free(desc);
        tp_qmp_free(q);
        fake_stop(&f);
}

TEST(closed)
{
        fake f;
        tp_qmp *q = NULL;
        char *desc = NULL;

        fake_start(&f, GREET_QMP);
        ASSERT_OK(tp_qmp_connect(f.path, 2000, &q));
        ASSERT_ERR(tp_qmp_execute(q, "close", NULL, NULL, NULL, &desc), ECONNRESET);
        ASSERT_TRUE(desc && strstr(desc, "closed"));
        free(desc);
        tp_qmp_free(q);
        fake_stop(&f);
}

TEST(not_running)
{
        char path[108];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        tp_qmp *q = NULL;
        int fd;

        snprintf(path, sizeof(path), "%s/none.qmp", test_tmpdir());
        ASSERT_ERR(tp_qmp_connect(path, 1000, &q), ENOENT);

        /* A socket file whose QEMU is gone. */
        memcpy(sa.sun_path, path, sizeof(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
        close(fd);
        ASSERT_ERR(tp_qmp_connect(path, 1000, &q), ECONNREFUSED);
        ASSERT_TRUE(q == NULL);
}

TEST(no_greeting)
{
        fake f;
        tp_qmp *q = NULL;
        uint64_t t0;

        /* Another client holds the monitor: we are accepted (backlog) and
         * hear nothing. */
        fake_start(&f, GREET_NONE);
        t0 = vb_now_ns();
        ASSERT_ERR(tp_qmp_connect(f.path, 300, &q), ETIMEDOUT);
        ASSERT_TRUE(vb_now_ns() - t0 >= 290 * 1000000ull);
        ASSERT_TRUE(q == NULL);
        fake_stop(&f);

        fake_start(&f, GREET_OTHER);
        ASSERT_ERR(tp_qmp_connect(f.path, 1000, &q), EPROTO);
        fake_stop(&f);
}
