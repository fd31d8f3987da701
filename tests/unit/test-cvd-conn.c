/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cvd-conn.c -- the control protocol over real loopback TCP, client
 * and server on one libuv loop: tp_conn framing, graceful close, timeouts
 * and TLS (a throwaway self-signed certificate made with the openssl CLI);
 * the client against a small scripted server built on tp_conn (auth, error
 * mapping, order, lost sessions, automatic pings); and cvd-server.c itself
 * for what needs no QEMU (auth, refusals, limits, idle timeout, stop).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/conn.h"
#include "transport/cvd-client.h"
#include "transport/cvd-server.h"

#define TOKEN "unit-test-token-0123456789"
#define WATCHDOG_S 30

static void setup(uv_loop_t *loop)
{
        signal(SIGPIPE, SIG_IGN);
        alarm(WATCHDOG_S);
        vb_log_set_max_level(getenv("VBAK_TEST_VERBOSE") ? LOG_DEBUG : LOG_CRIT);
        ASSERT_OK(uv_loop_init(loop));
}

/* Runs until every handle is closed; nothing may be left behind. */
static void drain(uv_loop_t *loop)
{
        uv_run(loop, UV_RUN_DEFAULT);
        ASSERT_EQ(uv_loop_close(loop), 0);
}

static void run_until(uv_loop_t *loop, const bool *done)
{
        ASSERT_OK(tp_cvd_run_until(loop, done));
}

/* A listening uv_tcp_t on 127.0.0.1, any port. */
static uint16_t listen_any(uv_loop_t *loop, uv_tcp_t *t, uv_connection_cb cb, void *data)
{
        struct sockaddr_in a;
        struct sockaddr_storage ss;
        int len = sizeof(ss);

        ASSERT_OK(uv_tcp_init(loop, t));
        t->data = data;
        ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &a));
        ASSERT_OK(uv_tcp_bind(t, (struct sockaddr *)&a, 0));
        ASSERT_OK(uv_listen((uv_stream_t *)t, 16, cb));
        ASSERT_OK(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len));
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A blocking socket connected to 127.0.0.1:port (the kernel completes the
 * connect from the listen backlog, before the loop accepts). */
static int raw_connect(uint16_t port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        ASSERT_OK(connect(fd, (struct sockaddr *)&a, sizeof(a)));
        return fd;
}

/* Reads every frame the peer sent until it closed (fd must be at EOF). */
static size_t raw_read_frames(int fd, json_t **msgs, size_t max)
{
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        char buf[4096];
        size_t n = 0;
        ssize_t got;

        while ((got = read(fd, buf, sizeof(buf))) > 0)
                for (size_t at = 0; at < (size_t)got;) {
                        size_t used;
                        json_t *m;
                        int r = tp_cvd_decoder_feed(&d, buf + at, (size_t)got - at, &used, &m);

                        ASSERT_OK(r);
                        at += used;
                        if (r == 1 && n < max)
                                msgs[n++] = m;
                        else if (r == 1)
                                json_decref(m);
                }
        tp_cvd_decoder_reset(&d);
        return n;
}

static void set_flag(uv_timer_t *t)
{
        *(bool *)t->data = true;
}

/* Runs the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
        uv_timer_t t;
        bool over = false;

        uv_timer_init(loop, &t);
        t.data = &over;
        uv_timer_start(&t, set_flag, ms, 0);
        run_until(loop, &over);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(loop, UV_RUN_NOWAIT); /* t lives on this stack: let its close finish */
}

static void no_accept(uv_stream_t *l, int status)
{
}

static bool have_openssl(void)
{
        return system("command -v openssl >/dev/null 2>&1") == 0;
}

/* cert.pem and key.pem in the test's folder, for 127.0.0.1 and localhost. */
static void make_cert(const char *prefix)
{
        char cmd[512];

        if (!have_openssl()) {
                fprintf(stderr, "openssl is not installed: skipping\n");
                exit(EXIT_TEST_SKIP);
        }
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %skey.pem "
                 "-out %scert.pem -days 2 -subj /CN=localhost -addext "
                 "'subjectAltName=IP:127.0.0.1,DNS:localhost' >/dev/null 2>&1",
                 prefix, prefix);
        ASSERT_EQ(system(cmd), 0);
}

/* --- tp_conn: an echo server ---------------------------------------------- */

typedef struct echo {
        uv_tcp_t listener;
        tp_conn_opts server_opts;
        tp_conn *server_conn;
        unsigned server_msgs;
        int server_close_err;
        bool server_closed;
        char server_why[256];
        /* the client side */
        json_t *got[8];
        unsigned n_got;
        bool bad_frame_seen;
        int client_close_err;
        bool client_closed;
        char client_why[256];
        unsigned close_after; /* the client closes after this many echoes */
} echo;

static void echo_server_message(tp_conn *c, json_t *msg, const char *why, void *userdata)
{
        echo *e = userdata;

        if (!msg) {
                e->bad_frame_seen = true;
                json_t *err = tp_cvd_reply_error_new(0, TP_CVD_E_PROTOCOL, why);
                tp_conn_send(c, err);
                json_decref(err);
                return;
        }
        e->server_msgs++;
        json_object_set_new(msg, "echo", json_true());
        ASSERT_OK(tp_conn_send(c, msg));
}

static void echo_server_close(tp_conn *c, int err, const char *why, void *userdata)
{
        echo *e = userdata;

        e->server_closed = true;
        e->server_close_err = err;
        snprintf(e->server_why, sizeof(e->server_why), "%s", why);
        uv_close((uv_handle_t *)&e->listener, NULL);
}

static void echo_on_connection(uv_stream_t *l, int status)
{
        echo *e = l->data;

        ASSERT_OK(status);
        ASSERT_OK(tp_conn_accept(l, &e->server_opts, &e->server_conn));
}

static void echo_client_message(tp_conn *c, json_t *msg, const char *why, void *userdata)
{
        echo *e = userdata;

        ASSERT_TRUE(msg);
        ASSERT_TRUE(e->n_got < ELEMENTSOF(e->got));
        e->got[e->n_got++] = json_incref(msg);
        if (e->n_got == e->close_after)
                tp_conn_close(c);
}

static void echo_client_close(tp_conn *c, int err, const char *why, void *userdata)
{
        echo *e = userdata;

        e->client_closed = true;
        e->client_close_err = err;
        snprintf(e->client_why, sizeof(e->client_why), "%s", why);
}

/* Three messages, one of them near the frame limit, echoed in order; the
 * client's graceful close reaches the server as the peer closing. */
static void echo_round(SSL_CTX *server_tls, SSL_CTX *client_tls)
{
        uv_loop_t loop;
        echo e = { .close_after = 3 };
        tp_conn_opts co = { .tls = client_tls,
                            .timeout_ms = 10000,
                            .on_message = echo_client_message,
                            .on_close = echo_client_close,
                            .userdata = &e };
        tp_conn *c;
        uint16_t port;
        char *big = malloc(900 * 1024 + 1);

        setup(&loop);
        e.server_opts = (tp_conn_opts){ .tls = server_tls,
                                        .timeout_ms = 10000,
                                        .on_message = echo_server_message,
                                        .on_close = echo_server_close,
                                        .userdata = &e };
        port = listen_any(&loop, &e.listener, echo_on_connection, &e);
        ASSERT_OK(tp_conn_connect(&loop, "127.0.0.1", port, &co, &c));
        ASSERT_TRUE(strncmp(tp_conn_peer(c), "127.0.0.1:", 10) == 0);

        /* Sent before the connection is up: queued, then sent in order. */
        memset(big, 'b', 900 * 1024);
        big[900 * 1024] = 0;
        json_t *m1 = json_pack("{s:i}", "n", 1), *m2 = json_pack("{s:i, s:s}", "n", 2, "big", big),
               *m3 = json_pack("{s:i, s:s}", "n", 3, "s", "\xc3\xa9t\xc3\xa9");
        ASSERT_OK(tp_conn_send(c, m1));
        ASSERT_OK(tp_conn_send(c, m2));
        ASSERT_OK(tp_conn_send(c, m3));
        drain(&loop);

        ASSERT_EQ(e.n_got, 3);
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_EQ(json_integer_value(json_object_get(e.got[i], "n")), i + 1);
                ASSERT_TRUE(json_is_true(json_object_get(e.got[i], "echo")));
                json_decref(e.got[i]);
        }
        ASSERT_EQ(e.server_msgs, 3);
        ASSERT_TRUE(e.client_closed && e.server_closed);
        ASSERT_EQ(e.client_close_err, 0);
        ASSERT_EQ(e.server_close_err, -ECONNRESET);
        json_decref(m1);
        json_decref(m2);
        json_decref(m3);
        free(big);
}

TEST(conn_plain_echo)
{
        echo_round(NULL, NULL);
}

TEST(conn_tls_echo)
{
        SSL_CTX *s, *c;
        tp_cvd_why why = { "" };

        make_cert("");
        ASSERT_OK(tp_tls_server_ctx_new("cert.pem", "key.pem", &s, &why));
        ASSERT_OK(tp_tls_client_ctx_new("cert.pem", false, &c, &why));
        echo_round(s, c);
        SSL_CTX_free(c);
        /* insecure: no verification at all */
        ASSERT_OK(tp_tls_client_ctx_new(NULL, true, &c, &why));
        echo_round(s, c);
        SSL_CTX_free(c);
        SSL_CTX_free(s);
}

TEST(tls_ctx_errors)
{
        SSL_CTX *ctx = NULL;
        tp_cvd_why why = { "" };

        make_cert("a-");
        make_cert("b-");
        ASSERT_ERR(tp_tls_server_ctx_new("missing.pem", "a-key.pem", &ctx, &why), EINVAL);
        ASSERT_TRUE(strstr(why.msg, "missing.pem"));
        ASSERT_ERR(tp_tls_server_ctx_new("a-cert.pem", "b-key.pem", &ctx, &why), EINVAL);
        if (!strstr(why.msg, "mismatch") && !strstr(why.msg, "does not match"))
                TEST_FAIL_("why: %s", why.msg);
        ASSERT_ERR(tp_tls_client_ctx_new("missing.pem", false, &ctx, &why), EINVAL);
        ASSERT_TRUE(ctx == NULL);
}

/* The client does not trust the server: the handshake fails on both sides. */
static void tls_reject(const char *ca, const char *name, const char *why_part)
{
        uv_loop_t loop;
        echo e = { 0 };
        SSL_CTX *s, *c;
        tp_cvd_why why = { "" };
        tp_conn *conn;
        uint16_t port;

        setup(&loop);
        ASSERT_OK(tp_tls_server_ctx_new("cert.pem", "key.pem", &s, &why));
        ASSERT_OK(tp_tls_client_ctx_new(ca, false, &c, &why));
        e.server_opts = (tp_conn_opts){ .tls = s,
                                        .timeout_ms = 5000,
                                        .on_message = echo_server_message,
                                        .on_close = echo_server_close,
                                        .userdata = &e };
        port = listen_any(&loop, &e.listener, echo_on_connection, &e);
        tp_conn_opts co = { .tls = c,
                            .tls_name = name,
                            .timeout_ms = 5000,
                            .on_message = echo_client_message,
                            .on_close = echo_client_close,
                            .userdata = &e };
        ASSERT_OK(tp_conn_connect(&loop, "127.0.0.1", port, &co, &conn));
        json_t *m = json_pack("{s:i}", "n", 1);
        ASSERT_OK(tp_conn_send(conn, m));
        json_decref(m);
        drain(&loop);
        ASSERT_EQ(e.n_got, 0);
        ASSERT_EQ(e.server_msgs, 0);
        ASSERT_EQ(e.client_close_err, -EKEYREJECTED);
        if (!strstr(e.client_why, why_part))
                TEST_FAIL_("'%s' lacks '%s'", e.client_why, why_part);
        ASSERT_TRUE(e.server_close_err < 0);
        SSL_CTX_free(s);
        SSL_CTX_free(c);
}

TEST(conn_tls_verify_fails)
{
        make_cert("");
        make_cert("other-");
        tls_reject("other-cert.pem", NULL, "did not verify");
        tls_reject("cert.pem", "vbak.example.org", "did not verify");
}

TEST(conn_tls_client_plain_server)
{
        uv_loop_t loop;
        echo e = { 0 };
        SSL_CTX *c;
        tp_cvd_why why = { "" };
        tp_conn *conn;
        uint16_t port;

        setup(&loop);
        ASSERT_OK(tp_tls_client_ctx_new(NULL, true, &c, &why));
        e.server_opts = (tp_conn_opts){
                .timeout_ms = 5000, .on_message = echo_server_message, .on_close = echo_server_close, .userdata = &e
        };
        port = listen_any(&loop, &e.listener, echo_on_connection, &e);
        tp_conn_opts co = { .tls = c,
                            .timeout_ms = 5000,
                            .on_message = echo_client_message,
                            .on_close = echo_client_close,
                            .userdata = &e };
        ASSERT_OK(tp_conn_connect(&loop, "127.0.0.1", port, &co, &conn));
        drain(&loop);
        /* The plain server reads the ClientHello as a frame of absurd length. */
        ASSERT_TRUE(e.bad_frame_seen);
        ASSERT_EQ(e.server_close_err, -EBADMSG);
        ASSERT_EQ(e.client_close_err, -EPROTO);
        ASSERT_TRUE(strstr(e.client_why, "TLS handshake failed"));
        SSL_CTX_free(c);
}

TEST(conn_bad_frame_gets_an_error)
{
        uv_loop_t loop;
        echo e = { 0 };
        json_t *msgs[4];
        uint16_t port;
        int fd;

        setup(&loop);
        e.server_opts = (tp_conn_opts){
                .timeout_ms = 5000, .on_message = echo_server_message, .on_close = echo_server_close, .userdata = &e
        };
        port = listen_any(&loop, &e.listener, echo_on_connection, &e);
        fd = raw_connect(port);
        /* One good frame, then a length of 2 MiB. */
        ASSERT_EQ(write(fd, "\x00\x00\x00\x08{\"n\":42}\x00\x20\x00\x00", 16), 16);
        drain(&loop);
        ASSERT_EQ(e.server_close_err, -EBADMSG);
        ASSERT_TRUE(strstr(e.server_why, "frame length 2097152"));
        ASSERT_EQ(raw_read_frames(fd, msgs, 4), 2);
        ASSERT_EQ(json_integer_value(json_object_get(msgs[0], "n")), 42);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(msgs[1], "error"), "code")), "protocol");
        json_decref(msgs[0]);
        json_decref(msgs[1]);
        close(fd);
}

TEST(conn_idle_timeout)
{
        uv_loop_t loop;
        echo e = { 0 };
        uint16_t port;
        uint64_t start;
        int fd;

        setup(&loop);
        e.server_opts = (tp_conn_opts){
                .timeout_ms = 300, .on_message = echo_server_message, .on_close = echo_server_close, .userdata = &e
        };
        port = listen_any(&loop, &e.listener, echo_on_connection, &e);
        fd = raw_connect(port);
        start = vb_now_ns();
        drain(&loop);
        ASSERT_EQ(e.server_close_err, -ETIMEDOUT);
        ASSERT_TRUE(strstr(e.server_why, "nothing heard for 0.3 s"));
        ASSERT_TRUE(vb_now_ns() - start >= 250000000ULL);
        close(fd);
}

TEST(conn_connect_refused)
{
        uv_loop_t loop;
        echo e = { 0 };
        uv_tcp_t t;
        uint16_t port;
        tp_conn *c;

        setup(&loop);
        /* A port that was free a moment ago. */
        port = listen_any(&loop, &t, no_accept, NULL);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&loop, UV_RUN_NOWAIT);
        tp_conn_opts co = {
                .timeout_ms = 5000, .on_message = echo_client_message, .on_close = echo_client_close, .userdata = &e
        };
        ASSERT_OK(tp_conn_connect(&loop, "127.0.0.1", port, &co, &c));
        drain(&loop);
        ASSERT_EQ(e.client_close_err, -ECONNREFUSED);
        ASSERT_TRUE(strstr(e.client_why, "cannot connect"));

        /* Closing while the name is being resolved. */
        ASSERT_OK(uv_loop_init(&loop));
        e.client_closed = false;
        ASSERT_OK(tp_conn_connect(&loop, "localhost", port, &co, &c));
        tp_conn_close(c);
        drain(&loop);
        ASSERT_TRUE(e.client_closed);
        ASSERT_EQ(e.client_close_err, 0);
}

/* --- the client against a scripted server ---------------------------------- */

enum {
        FAKE_NORMAL,
        FAKE_BUSY,
        FAKE_V2_ONLY,
        FAKE_WRONG_ID,
        FAKE_GARBAGE_REPLY,
        FAKE_DROP_ON_OPEN
};

typedef struct fake {
        uv_tcp_t listener;
        int mode;
        unsigned timeout_s; /* announced in the hello reply */
        unsigned pings, requests;
        char nonce[TP_CVD_NONCE_HEX + 1];
        tp_conn *conn;
        bool closed;
} fake;

static void fake_send(tp_conn *c, json_t *j)
{
        ASSERT_TRUE(j);
        tp_conn_send(c, j);
        json_decref(j);
}

static void fake_message(tp_conn *c, json_t *msg, const char *why, void *userdata)
{
        fake *f = userdata;
        tp_cvd_request rq;
        tp_cvd_why w = { "" };

        if (!msg)
                return;
        ASSERT_OK(tp_cvd_request_parse(msg, &rq, &w));
        f->requests++;
        switch (rq.op) {
        case TP_CVD_OP_HELLO:
                ASSERT_EQ(rq.hello.version, 1);
                ASSERT_STREQ(rq.hello.client, "vbak/" VBAK_VERSION);
                if (tp_cvd_token_check(TOKEN, strlen(TOKEN), f->nonce, rq.hello.proof) < 0) {
                        fake_send(c, tp_cvd_reply_error_new(rq.id, TP_CVD_E_AUTH, "wrong token"));
                        tp_conn_close(c);
                        return;
                }
                tp_cvd_hello_reply h = { 1, "fake/1", "s1", f->timeout_s };
                fake_send(c, tp_cvd_hello_reply_new(rq.id, &h));
                return;
        case TP_CVD_OP_PING:
                f->pings++;
                fake_send(c, tp_cvd_ping_reply_new(f->mode == FAKE_WRONG_ID ? rq.id + 1 : rq.id, 1234));
                return;
        case TP_CVD_OP_DISK_OPEN:
                if (f->mode == FAKE_DROP_ON_OPEN) {
                        tp_conn_close(c);
                        return;
                }
                if (f->mode == FAKE_GARBAGE_REPLY) {
                        json_t *j = tp_cvd_reply_ok_new(rq.id);
                        json_object_set_new(j, "port", json_string("10001"));
                        fake_send(c, j);
                        return;
                }
                if (!streq(rq.open.vm, "ok")) { /* the VM name is the error code to answer */
                        json_t *j = json_pack("{s:I, s:b, s:{s:s, s:s}}", "id", (json_int_t)rq.id, "ok", false, "error",
                                              "code", rq.open.vm, "message", "as asked");
                        fake_send(c, j);
                        return;
                }
                tp_cvd_open_reply o = { .handle = "h1",
                                        .host = "127.0.0.1",
                                        .port = 10001,
                                        .export_name = "e1",
                                        .size = 1 << 20,
                                        .format = "raw",
                                        .contexts = { "base:allocation" },
                                        .n_contexts = 1 };
                fake_send(c, tp_cvd_open_reply_new(rq.id, &o));
                return;
        case TP_CVD_OP_BITMAP_LIST: {
                tp_cvd_bitmap b = { "cp1", 65536, true, true, 4096 };
                fake_send(c, tp_cvd_bitmap_list_reply_new(rq.id, &b, 1));
                return;
        }
        default:
                fake_send(c, tp_cvd_reply_ok_new(rq.id));
        }
}

static void fake_close(tp_conn *c, int err, const char *why, void *userdata)
{
        fake *f = userdata;

        f->closed = true;
        f->conn = NULL;
}

static void fake_on_connection(uv_stream_t *l, int status)
{
        fake *f = l->data;
        tp_conn_opts o = { .timeout_ms = 10000, .on_message = fake_message, .on_close = fake_close, .userdata = f };

        ASSERT_OK(tp_conn_accept(l, &o, &f->conn));
        ASSERT_OK(tp_cvd_nonce_new(f->nonce));
        if (f->mode == FAKE_BUSY) {
                fake_send(f->conn, tp_cvd_reply_error_new(0, TP_CVD_E_BUSY, "vbak-cvd serves at most 64 clients"));
                tp_conn_close(f->conn);
                return;
        }
        json_t *w = tp_cvd_welcome_new(f->nonce, true, false, false);
        if (f->mode == FAKE_V2_ONLY)
                json_object_set_new(w, "versions", json_pack("[i]", 2));
        fake_send(f->conn, w);
}

typedef struct result {
        bool done;
        int r;
        char msg[1024];
        unsigned calls;
        tp_cvd_open_reply open; /* strings dangle after the callback: only numbers are checked */
        size_t n_bitmaps;
        uint64_t dirty;
        int64_t time;
        bool lost;
        int lost_r;
        char lost_msg[1024];
} result;

static void set_result(result *x, int r, const char *msg)
{
        x->done = true;
        x->r = r;
        x->calls++;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
        ASSERT_TRUE((r == 0) == (msg == NULL));
}

static void on_done(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        set_result(userdata, r, msg);
}

static void on_open(tp_cvd_client *c, int r, const char *msg, const tp_cvd_open_reply *o, void *userdata)
{
        result *x = userdata;

        set_result(x, r, msg);
        ASSERT_TRUE((r == 0) == (o != NULL));
        if (o)
                x->open = *o;
}

static void on_bitmaps(tp_cvd_client *c, int r, const char *msg, const tp_cvd_bitmap_list_reply *b, void *userdata)
{
        result *x = userdata;

        set_result(x, r, msg);
        if (b) {
                x->n_bitmaps = b->n_bitmaps;
                x->dirty = b->bitmaps[0].dirty_bytes;
        }
}

static void on_ping(tp_cvd_client *c, int r, const char *msg, int64_t t, void *userdata)
{
        result *x = userdata;

        set_result(x, r, msg);
        x->time = t;
}

static void on_lost(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        result *x = userdata;

        x->lost = true;
        x->lost_r = r;
        snprintf(x->lost_msg, sizeof(x->lost_msg), "%s", msg);
}

typedef struct harness {
        uv_loop_t loop;
        fake f;
        uint16_t port;
        tp_cvd_client *c;
        result conn, lost;
} harness;

static int harness_connect(harness *h, int mode, const char *token, uint64_t timeout_ms)
{
        tp_cvd_client_opts o = { .host = "127.0.0.1",
                                 .token = token,
                                 .timeout_ms = timeout_ms,
                                 .on_lost = on_lost,
                                 .lost_userdata = &h->lost };
        tp_cvd_why why = { "" };

        setup(&h->loop);
        h->f.mode = mode;
        h->f.timeout_s = h->f.timeout_s ? h->f.timeout_s : 600;
        h->port = listen_any(&h->loop, &h->f.listener, fake_on_connection, &h->f);
        o.port = h->port;
        ASSERT_OK(tp_cvd_client_connect(&h->loop, &o, on_done, &h->conn, &h->c, &why));
        ASSERT_TRUE(tp_cvd_client_info(h->c) == NULL);
        run_until(&h->loop, &h->conn.done);
        ASSERT_EQ(h->conn.calls, 1);
        return h->conn.r;
}

static void harness_end(harness *h)
{
        tp_cvd_client_close(h->c);
        uv_close((uv_handle_t *)&h->f.listener, NULL);
        if (h->f.conn)
                tp_conn_close(h->f.conn);
        drain(&h->loop);
}

TEST(client_requests)
{
        harness h = { 0 };
        result x = { 0 };
        tp_cvd_open_req rq = { .vm = "ok", .path = "/img/a.qcow2" };
        const tp_cvd_session_info *info;

        ASSERT_EQ(harness_connect(&h, FAKE_NORMAL, TOKEN, 0), 0);
        info = tp_cvd_client_info(h.c);
        ASSERT_TRUE(info);
        ASSERT_STREQ(info->server, "fake/1");
        ASSERT_EQ(info->version, 1);
        ASSERT_EQ(info->timeout, 600);

        /* Back to back: answered in order, each callback once. */
        result a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
        ASSERT_OK(tp_cvd_disk_open(h.c, &rq, on_open, &a));
        ASSERT_OK(tp_cvd_bitmap_list(h.c, "ok", "/img/a.qcow2", on_bitmaps, &b));
        ASSERT_OK(tp_cvd_ping(h.c, on_ping, &c));
        ASSERT_OK(tp_cvd_disk_close(h.c, "h1", on_done, &d));
        ASSERT_TRUE(!a.done); /* never from inside the call */
        run_until(&h.loop, &d.done);
        ASSERT_TRUE(a.done && b.done && c.done);
        ASSERT_EQ(a.r, 0);
        ASSERT_EQ(a.open.port, 10001);
        ASSERT_UEQ(a.open.size, 1 << 20);
        ASSERT_EQ(b.r, 0);
        ASSERT_EQ(b.n_bitmaps, 1);
        ASSERT_UEQ(b.dirty, 4096);
        ASSERT_EQ(c.r, 0);
        ASSERT_EQ(c.time, 1234);
        ASSERT_EQ(d.r, 0);
        ASSERT_OK(tp_cvd_bitmap_create(h.c, "ok", "/img/a.qcow2", "cp2", on_done, &x));
        run_until(&h.loop, &x.done);
        ASSERT_EQ(x.r, 0);

        /* Checked before sending. */
        rq.vm = "bad name";
        ASSERT_ERR(tp_cvd_disk_open(h.c, &rq, on_open, &x), EINVAL);
        ASSERT_ERR(tp_cvd_bitmap_create(h.c, "ok", "relative", "cp", on_done, &x), EINVAL);
        ASSERT_ERR(tp_cvd_bitmap_remove(h.c, "ok", "/i", "-x", on_done, &x), EINVAL);
        ASSERT_TRUE(!h.lost.lost);
        harness_end(&h);
}

TEST(client_error_codes)
{
        static const struct {
                const char *code;
                int vb;
                const char *says;
        } cases[] = {
                { "denied", VB_E_REFUSED, "refused disk.open of /img/a.qcow2 (vm denied): as asked" },
                { "busy", VB_E_REFUSED, "refused" },
                { "not-found", VB_E_NOT_FOUND, "disk.open of /img/a.qcow2 (vm not-found) failed: as asked" },
                { "exists", VB_E_EXISTS, "failed" },
                { "invalid", VB_E_USAGE, "failed" },
                { "io", VB_E_SOURCE, "failed" },
                { "internal", VB_E_FAILED, "failed" },
                { "brand-new", VB_E_FAILED, "failed" },
        };
        harness h = { 0 };

        ASSERT_EQ(harness_connect(&h, FAKE_NORMAL, TOKEN, 0), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                tp_cvd_open_req rq = { .vm = cases[i].code, .path = "/img/a.qcow2" };
                result x = { 0 };
                char want[128];

                ASSERT_OK(tp_cvd_disk_open(h.c, &rq, on_open, &x));
                run_until(&h.loop, &x.done);
                ASSERT_EQ(x.r, cases[i].vb);
                snprintf(want, sizeof(want), "vbak-cvd at 127.0.0.1:%u", h.port);
                ASSERT_TRUE(strstr(x.msg, want) == x.msg);
                if (!strstr(x.msg, cases[i].says))
                        TEST_FAIL_("'%s' lacks '%s'", x.msg, cases[i].says);
        }
        /* The session goes on after errors. */
        result p = { 0 };
        ASSERT_OK(tp_cvd_ping(h.c, on_ping, &p));
        run_until(&h.loop, &p.done);
        ASSERT_EQ(p.r, 0);
        harness_end(&h);
}

TEST(client_wrong_token)
{
        harness h = { 0 };

        ASSERT_EQ(harness_connect(&h, FAKE_NORMAL, "not-the-token-0123456789", 0), VB_E_AUTH);
        ASSERT_TRUE(strstr(h.conn.msg, "refused the token: wrong token"));
        ASSERT_TRUE(tp_cvd_client_info(h.c) == NULL);
        result x = { 0 };
        ASSERT_ERR(tp_cvd_ping(h.c, on_ping, &x), ENOTCONN);
        ASSERT_TRUE(!h.lost.lost);
        harness_end(&h);
}

TEST(client_refusals_and_versions)
{
        harness h = { 0 };

        ASSERT_EQ(harness_connect(&h, FAKE_BUSY, TOKEN, 0), VB_E_REFUSED);
        ASSERT_TRUE(strstr(h.conn.msg, "refused the connection: vbak-cvd serves at most 64 clients"));
        harness_end(&h);

        harness h2 = { 0 };
        ASSERT_EQ(harness_connect(&h2, FAKE_V2_ONLY, TOKEN, 0), VB_E_PROTOCOL);
        ASSERT_TRUE(strstr(h2.conn.msg, "versions up to 2 but not 1"));
        ASSERT_EQ(h2.f.requests, 0);
        harness_end(&h2);
}

TEST(client_protocol_violations)
{
        harness h = { 0 };
        result x = { 0 }, y = { 0 };
        tp_cvd_open_req rq = { .vm = "ok", .path = "/img/a.qcow2" };

        ASSERT_EQ(harness_connect(&h, FAKE_WRONG_ID, TOKEN, 0), 0);
        ASSERT_OK(tp_cvd_ping(h.c, on_ping, &x));
        ASSERT_OK(tp_cvd_disk_open(h.c, &rq, on_open, &y));
        run_until(&h.loop, &y.done);
        ASSERT_EQ(x.r, VB_E_PROTOCOL);
        ASSERT_EQ(y.r, VB_E_PROTOCOL);
        ASSERT_TRUE(strstr(x.msg, "broke the protocol: a reply to request 3"));
        run_until(&h.loop, &h.lost.lost);
        ASSERT_EQ(h.lost.lost_r, VB_E_PROTOCOL);
        harness_end(&h);

        harness h2 = { 0 };
        result z = { 0 };
        ASSERT_EQ(harness_connect(&h2, FAKE_GARBAGE_REPLY, TOKEN, 0), 0);
        ASSERT_OK(tp_cvd_disk_open(h2.c, &rq, on_open, &z));
        run_until(&h2.loop, &z.done);
        ASSERT_EQ(z.r, VB_E_PROTOCOL);
        ASSERT_TRUE(strstr(z.msg, "\"handle\" is missing"));
        harness_end(&h2);
}

TEST(client_session_lost)
{
        harness h = { 0 };
        result x = { 0 }, y = { 0 };
        tp_cvd_open_req rq = { .vm = "ok", .path = "/img/a.qcow2" };

        ASSERT_EQ(harness_connect(&h, FAKE_DROP_ON_OPEN, TOKEN, 0), 0);
        ASSERT_OK(tp_cvd_disk_open(h.c, &rq, on_open, &x));
        ASSERT_OK(tp_cvd_ping(h.c, on_ping, &y));
        run_until(&h.loop, &h.lost.lost);
        ASSERT_EQ(x.r, VB_E_NETWORK);
        ASSERT_EQ(y.r, VB_E_NETWORK);
        ASSERT_TRUE(strstr(x.msg, "connection lost: closed by the peer"));
        ASSERT_EQ(h.lost.lost_r, VB_E_NETWORK);
        ASSERT_ERR(tp_cvd_ping(h.c, on_ping, &y), ENOTCONN);
        harness_end(&h);
}

TEST(client_pings_by_itself)
{
        harness h = { .f.timeout_s = 1 };

        ASSERT_EQ(harness_connect(&h, FAKE_NORMAL, TOKEN, 0), 0);
        run_for(&h.loop, 1500);
        /* every 333 ms: 4 in 1.5 s */
        ASSERT_TRUE(h.f.pings >= 3 && h.f.pings <= 5);
        harness_end(&h);
}

TEST(client_network_timeout)
{
        harness h = { 0 };
        uint64_t start;
        tp_cvd_client_opts o = { .host = "127.0.0.1", .token = TOKEN, .timeout_ms = 400 };
        tp_cvd_why why = { "" };

        /* A listener that never answers: the kernel accepts, nobody speaks. */
        setup(&h.loop);
        h.port = listen_any(&h.loop, &h.f.listener, no_accept, NULL);
        o.port = h.port;
        start = vb_now_ns();
        ASSERT_OK(tp_cvd_client_connect(&h.loop, &o, on_done, &h.conn, &h.c, &why));
        run_until(&h.loop, &h.conn.done);
        ASSERT_EQ(h.conn.r, VB_E_NETWORK);
        ASSERT_TRUE(strstr(h.conn.msg, "0.4 s (if it uses TLS, connect with TLS)"));
        ASSERT_TRUE(vb_now_ns() - start >= 350000000ULL);
        tp_cvd_client_close(h.c);
        uv_close((uv_handle_t *)&h.f.listener, NULL);
        drain(&h.loop);
}

TEST(client_connect_options)
{
        uv_loop_t loop;
        tp_cvd_client *c = NULL;
        tp_cvd_why why = { "" };
        tp_cvd_client_opts o = { .host = "127.0.0.1", .user = "u", .password = "p" };

        setup(&loop);
        ASSERT_ERR(tp_cvd_client_connect(&loop, &o, on_done, NULL, &c, &why), EINVAL);
        ASSERT_TRUE(strstr(why.msg, "only ever sent over TLS"));
        o = (tp_cvd_client_opts){ .host = "127.0.0.1" };
        ASSERT_ERR(tp_cvd_client_connect(&loop, &o, on_done, NULL, &c, &why), EINVAL);
        o = (tp_cvd_client_opts){ .token = TOKEN };
        ASSERT_ERR(tp_cvd_client_connect(&loop, &o, on_done, NULL, &c, &why), EINVAL);
        o = (tp_cvd_client_opts){ .host = "127.0.0.1", .token = TOKEN, .tls = true, .ca_file = "missing.pem" };
        ASSERT_ERR(tp_cvd_client_connect(&loop, &o, on_done, NULL, &c, &why), EINVAL);
        ASSERT_TRUE(strstr(why.msg, "missing.pem"));
        ASSERT_TRUE(c == NULL);
        drain(&loop);
}

/* --- URLs --------------------------------------------------------------- */

TEST(url_parse)
{
        tp_cvd_url u;
        const char *why;

        ASSERT_OK(tp_cvd_url_parse("cvd://host.example/vm1/var/lib/images/a%20b.qcow2?snapshot=s1", &u, &why));
        ASSERT_STREQ(u.host, "host.example");
        ASSERT_EQ(u.port, 8192);
        ASSERT_STREQ(u.vm, "vm1");
        ASSERT_STREQ(u.path, "/var/lib/images/a b.qcow2");
        ASSERT_STREQ(u.snapshot, "s1");
        tp_cvd_url_done(&u);

        ASSERT_OK(tp_cvd_url_parse("cvd://10.0.0.5:9000", &u, &why));
        ASSERT_STREQ(u.host, "10.0.0.5");
        ASSERT_EQ(u.port, 9000);
        ASSERT_TRUE(!u.vm && !u.path && !u.snapshot);
        tp_cvd_url_done(&u);

        ASSERT_OK(tp_cvd_url_parse("cvd://[::1]:8193/v/i", &u, &why));
        ASSERT_STREQ(u.host, "::1");
        ASSERT_EQ(u.port, 8193);
        ASSERT_STREQ(u.path, "/i");
        tp_cvd_url_done(&u);

        ASSERT_OK(tp_cvd_url_parse("cvd://h/", &u, &why));
        ASSERT_TRUE(!u.vm);
        tp_cvd_url_done(&u);

        static const char *const bad[] = {
                "nbd://h/v/i",
                "cvd://",
                "cvd://:8192/v/i",
                "cvd://h:0/v/i",
                "cvd://h:65536/v/i",
                "cvd://h:x/v/i",
                "cvd://h:/v/i",
                "cvd://h/vm",
                "cvd://h/vm/",
                "cvd://h/a%20b/i",
                "cvd://h/v/i%00",
                "cvd://h/v/i%2",
                "cvd://h/v/i%zz",
                "cvd://h/v/i?x=1",
                "cvd://h/v/i?snapshot=a/b",
                "cvd://h?snapshot=s",
                "cvd://[::1/v/i",
                "cvd://[::1]x/v/i",
                "cvd://u@h/v/i",
                "cvd://h/v/i#frag",
                "cvd://h/-v/i",
                "cvd://h/v/i?snapshot=s&snapshot=t",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                why = NULL;
                if (tp_cvd_url_parse(bad[i], &u, &why) != -EINVAL || !why)
                        TEST_FAIL_("accepted: %s", bad[i]);
        }
}

/* --- cvd-server.c, without QEMU ------------------------------------------ */

typedef struct srv {
        uv_loop_t loop;
        tp_export_cfg cfg;
        char *dirs[1];
        tp_cvd_server *s;
        uint16_t port;
        bool stopped;
} srv;

static void srv_start(srv *v, unsigned max_clients, unsigned timeout_s, SSL_CTX *tls, const char *credentials)
{
        tp_cvd_why why = { "" };
        tp_cvd_server_opts o = { .cfg = &v->cfg,
                                 .listen_host = "127.0.0.1",
                                 .token = TOKEN,
                                 .credentials = credentials,
                                 .tls = tls,
                                 .max_clients = max_clients,
                                 .timeout_s = timeout_s };

        setup(&v->loop);
        ASSERT_OK(mkdir("img", 0755));
        ASSERT_TRUE((v->dirs[0] = realpath("img", NULL)));
        ASSERT_OK(symlink("/etc/passwd", "img/link.qcow2"));
        v->cfg = (tp_export_cfg){
                .image_dirs = v->dirs, .n_image_dirs = 1, .data_host = "127.0.0.1", .port_min = 20000, .port_max = 20010
        };
        ASSERT_OK(tp_cvd_server_start(&v->loop, &o, &v->s, &why));
        v->port = tp_cvd_server_port(v->s);
        ASSERT_TRUE(v->port > 0);
}

static void on_server_stopped(void *userdata)
{
        *(bool *)userdata = true;
}

static void srv_stop(srv *v)
{
        tp_cvd_server_stop(v->s, on_server_stopped, &v->stopped);
        drain(&v->loop);
        ASSERT_TRUE(v->stopped);
        free(v->dirs[0]);
}

static tp_cvd_client *srv_client(srv *v, const char *token, result *x, result *lost)
{
        tp_cvd_client_opts o = { .host = "127.0.0.1",
                                 .port = v->port,
                                 .token = token,
                                 .on_lost = lost ? on_lost : NULL,
                                 .lost_userdata = lost };
        tp_cvd_why why = { "" };
        tp_cvd_client *c;

        ASSERT_OK(tp_cvd_client_connect(&v->loop, &o, on_done, x, &c, &why));
        run_until(&v->loop, &x->done);
        return c;
}

TEST(server_auth_paths_and_limits)
{
        srv v = { 0 };
        result a = { 0 }, b = { 0 }, c3 = { 0 }, bad = { 0 }, x = { 0 };
        tp_cvd_client *ca, *cb, *cc, *cbad;
        char path[PATH_MAX + 32];

        srv_start(&v, 2, 0, NULL, NULL);

        cbad = srv_client(&v, "not-the-token-0123456789", &bad, NULL);
        ASSERT_EQ(bad.r, VB_E_AUTH);
        ASSERT_TRUE(strstr(bad.msg, "refused the token: wrong token"));
        tp_cvd_client_close(cbad);

        ca = srv_client(&v, TOKEN, &a, NULL);
        ASSERT_EQ(a.r, 0);
        ASSERT_STREQ(tp_cvd_client_info(ca)->server, "vbak-cvd/" VBAK_VERSION);
        ASSERT_EQ(tp_cvd_client_info(ca)->timeout, TP_CVD_TIMEOUT_DEFAULT);

        /* Paths outside the image folders, directly or through a symlink. */
        tp_cvd_open_req rq = { .vm = "vm1", .path = "/etc/passwd" };
        ASSERT_OK(tp_cvd_disk_open(ca, &rq, on_open, &x));
        run_until(&v.loop, &x.done);
        ASSERT_EQ(x.r, VB_E_REFUSED);
        ASSERT_TRUE(strstr(x.msg, "/etc/passwd is outside the served image folders"));
        snprintf(path, sizeof(path), "%s/link.qcow2", v.dirs[0]);
        rq.path = path;
        x = (result){ 0 };
        ASSERT_OK(tp_cvd_disk_open(ca, &rq, on_open, &x));
        run_until(&v.loop, &x.done);
        ASSERT_EQ(x.r, VB_E_REFUSED);
        ASSERT_TRUE(strstr(x.msg, "outside the served image folders"));
        x = (result){ 0 };
        ASSERT_OK(tp_cvd_bitmap_create(ca, "vm1", "/etc/passwd", "cp1", on_done, &x));
        run_until(&v.loop, &x.done);
        ASSERT_EQ(x.r, VB_E_REFUSED);
        snprintf(path, sizeof(path), "%s/missing.qcow2", v.dirs[0]);
        x = (result){ 0 };
        ASSERT_OK(tp_cvd_bitmap_list(ca, "vm1", path, on_bitmaps, &x));
        run_until(&v.loop, &x.done);
        ASSERT_EQ(x.r, VB_E_NOT_FOUND);
        x = (result){ 0 };
        ASSERT_OK(tp_cvd_disk_close(ca, "h99", on_done, &x));
        run_until(&v.loop, &x.done);
        ASSERT_EQ(x.r, VB_E_NOT_FOUND);

        /* Two clients at most: the third is refused, a slot frees on close. */
        cb = srv_client(&v, TOKEN, &b, NULL);
        ASSERT_EQ(b.r, 0);
        cc = srv_client(&v, TOKEN, &c3, NULL);
        ASSERT_EQ(c3.r, VB_E_REFUSED);
        ASSERT_TRUE(strstr(c3.msg, "refused the connection: vbak-cvd serves at most 2 clients"));
        tp_cvd_client_close(cc);
        tp_cvd_client_close(cb);
        for (int i = 0; i < 50; i++) /* the server sees the close and frees the slot */
                uv_run(&v.loop, UV_RUN_NOWAIT), usleep(2000);
        c3 = (result){ 0 };
        cc = srv_client(&v, TOKEN, &c3, NULL);
        ASSERT_EQ(c3.r, 0);
        tp_cvd_client_close(cc);

        tp_cvd_client_close(ca);
        srv_stop(&v);
}

/* Raw frames to the server: hello must come first; a bad frame is answered. */
TEST(server_raw_protocol)
{
        srv v = { 0 };
        json_t *msgs[4];
        int fd;

        srv_start(&v, 0, 0, NULL, NULL);
        fd = raw_connect(v.port);
        ASSERT_EQ(write(fd, "\x00\x00\x00\x14{\"id\":2,\"op\":\"ping\"}", 24), 24);
        for (int i = 0; i < 100; i++)
                uv_run(&v.loop, UV_RUN_NOWAIT), usleep(1000);
        ASSERT_EQ(raw_read_frames(fd, msgs, 4), 2);
        ASSERT_STREQ(json_string_value(json_object_get(msgs[0], "op")), "welcome");
        ASSERT_TRUE(json_is_false(json_object_get(msgs[0], "tls")));
        ASSERT_EQ(json_integer_value(json_object_get(msgs[1], "id")), 2);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(msgs[1], "error"), "code")), "auth");
        json_decref(msgs[0]);
        json_decref(msgs[1]);
        close(fd);

        fd = raw_connect(v.port);
        ASSERT_EQ(write(fd, "\x00\x00\x00\x03{x}", 7), 7);
        for (int i = 0; i < 100; i++)
                uv_run(&v.loop, UV_RUN_NOWAIT), usleep(1000);
        ASSERT_EQ(raw_read_frames(fd, msgs, 4), 2);
        ASSERT_EQ(json_integer_value(json_object_get(msgs[1], "id")), 0);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(msgs[1], "error"), "code")), "protocol");
        json_decref(msgs[0]);
        json_decref(msgs[1]);
        close(fd);

        /* A password over plain TCP is refused. */
        fd = raw_connect(v.port);
        static const char hello[] = "{\"id\":1,\"op\":\"hello\",\"version\":1,\"auth\":{\"method\":\"password\","
                                    "\"user\":\"u\",\"password\":\"p\"}}";
        uint8_t len[4] = { 0, 0, 0, sizeof(hello) - 1 };
        ASSERT_EQ(write(fd, len, 4), 4);
        ASSERT_EQ(write(fd, hello, sizeof(hello) - 1), (ssize_t)sizeof(hello) - 1);
        for (int i = 0; i < 100; i++)
                uv_run(&v.loop, UV_RUN_NOWAIT), usleep(1000);
        ASSERT_EQ(raw_read_frames(fd, msgs, 4), 2);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(msgs[1], "error"), "message")),
                     "password authentication is not enabled here");
        json_decref(msgs[0]);
        json_decref(msgs[1]);
        close(fd);
        srv_stop(&v);
}

TEST(server_idle_timeout_and_pings)
{
        srv v = { 0 };
        result a = { 0 }, lost = { 0 }, p = { 0 };
        tp_cvd_client *c;
        json_t *msgs[2];
        int fd;

        srv_start(&v, 0, 1, NULL, NULL);
        c = srv_client(&v, TOKEN, &a, &lost);
        ASSERT_EQ(a.r, 0);
        ASSERT_EQ(tp_cvd_client_info(c)->timeout, 1);
        fd = raw_connect(v.port); /* silent: the server drops it after 1 s */

        run_for(&v.loop, 2500);
        ASSERT_TRUE(!lost.lost); /* the automatic pings kept it alive */
        ASSERT_OK(tp_cvd_ping(c, on_ping, &p));
        run_until(&v.loop, &p.done);
        ASSERT_EQ(p.r, 0);
        ASSERT_EQ(raw_read_frames(fd, msgs, 2), 1); /* the welcome, then EOF */
        json_decref(msgs[0]);
        close(fd);

        /* Stopping the server ends the session. */
        tp_cvd_server_stop(v.s, on_server_stopped, &v.stopped);
        run_until(&v.loop, &lost.lost);
        ASSERT_EQ(lost.lost_r, VB_E_NETWORK);
        tp_cvd_client_close(c);
        drain(&v.loop);
        ASSERT_TRUE(v.stopped);
        free(v.dirs[0]);
}

TEST(server_tls_password)
{
        srv v = { 0 };
        SSL_CTX *tls;
        tp_cvd_why why = { "" };
        _cleanup_free_ char *line = NULL;
        result ok = { 0 }, bad = { 0 };
        tp_cvd_client *c;

        make_cert("");
        ASSERT_OK(tp_tls_server_ctx_new("cert.pem", "key.pem", &tls, &why));
        ASSERT_OK(tp_cvd_credentials_line("alice", "correct horse", &line));
        srv_start(&v, 0, 0, tls, line);
        SSL_CTX_free(tls); /* the server holds its own reference */

        tp_cvd_client_opts o = { .host = "127.0.0.1",
                                 .port = v.port,
                                 .user = "alice",
                                 .password = "correct horse",
                                 .tls = true,
                                 .ca_file = "cert.pem" };
        ASSERT_OK(tp_cvd_client_connect(&v.loop, &o, on_done, &ok, &c, &why));
        run_until(&v.loop, &ok.done);
        ASSERT_EQ(ok.r, 0);
        ASSERT_TRUE(tp_cvd_client_info(c)->tls);
        tp_cvd_client_close(c);

        o.password = "wrong";
        ASSERT_OK(tp_cvd_client_connect(&v.loop, &o, on_done, &bad, &c, &why));
        run_until(&v.loop, &bad.done);
        ASSERT_EQ(bad.r, VB_E_AUTH);
        ASSERT_TRUE(strstr(bad.msg, "wrong user or password"));
        tp_cvd_client_close(c);

        /* The token works over TLS too; a plain client never gets a welcome. */
        result t = { 0 }, plain = { 0 };
        tp_cvd_client_opts ot = {
                .host = "127.0.0.1", .port = v.port, .token = TOKEN, .tls = true, .ca_file = "cert.pem"
        };
        ASSERT_OK(tp_cvd_client_connect(&v.loop, &ot, on_done, &t, &c, &why));
        run_until(&v.loop, &t.done);
        ASSERT_EQ(t.r, 0);
        tp_cvd_client_close(c);
        ot.tls = false;
        ot.timeout_ms = 500;
        ASSERT_OK(tp_cvd_client_connect(&v.loop, &ot, on_done, &plain, &c, &why));
        run_until(&v.loop, &plain.done);
        ASSERT_EQ(plain.r, VB_E_NETWORK);
        ASSERT_TRUE(strstr(plain.msg, "connect with TLS"));
        tp_cvd_client_close(c);
        srv_stop(&v);
}

TEST(server_start_errors)
{
        uv_loop_t loop;
        tp_cvd_server *s = NULL;
        tp_cvd_why why = { "" };
        char *dirs[] = { "/tmp" };
        tp_export_cfg cfg = { .image_dirs = dirs, .n_image_dirs = 1, .data_host = "127.0.0.1" };
        tp_cvd_server_opts o = { .cfg = &cfg, .listen_host = "127.0.0.1" };

        setup(&loop);
        ASSERT_ERR(tp_cvd_server_start(&loop, &o, &s, &why), EINVAL);
        ASSERT_TRUE(strstr(why.msg, "no authentication"));
        o.token = TOKEN;
        o.listen_host = "localhost";
        ASSERT_ERR(tp_cvd_server_start(&loop, &o, &s, &why), EINVAL);
        o.listen_host = "127.0.0.1";
        cfg.n_image_dirs = 0;
        ASSERT_ERR(tp_cvd_server_start(&loop, &o, &s, &why), EINVAL);
        drain(&loop);
}
