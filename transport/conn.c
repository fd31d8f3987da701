/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * conn.c -- framed JSON message connections, plain or TLS through memory
 * BIOs (see conn.h for the design).
 *
 * Life of a tp_conn: OPEN (reading, sending) -> FLUSHING (graceful close:
 * waiting for writes, then uv_shutdown) -> CLOSING (both handles closing)
 * -> freed in the last close callback, after on_close. A failure in any
 * state goes straight to CLOSING. The getaddrinfo request of a connect is
 * not a handle: the struct also waits for its callback before it is freed.
 */
#include "transport/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/util.h"

#define READ_BUF_SIZE (64 * 1024)
#define FLUSH_TIMEOUT_MS 5000

enum {
        OPEN,
        FLUSHING,
        CLOSING
};

struct tp_conn {
        uv_loop_t *loop;
        uv_tcp_t tcp;
        uv_timer_t timer;
        uv_getaddrinfo_t gai;
        uv_connect_t connect_req;
        uv_shutdown_t shutdown_req;
        tp_conn_opts o;
        char *host; /* connect: as given; also the default TLS name */
        char peer[INET6_ADDRSTRLEN + 16];

        SSL *ssl;
        BIO *rbio, *wbio; /* owned by ssl */
        bool ready;       /* TCP up and, with TLS, the handshake done */

        tp_cvd_decoder dec;
        char *queue; /* frames sent before ready, in order */
        size_t queue_len;

        int state;
        bool connected;     /* TCP is up */
        bool close_queued;  /* closing gracefully once ready: the queue must go out first */
        bool shutting_down; /* uv_shutdown started */
        unsigned handles;   /* initialised and not yet closed */
        bool resolving;     /* the getaddrinfo callback is still to come */
        bool silent;        /* a failed start: free without on_close */
        unsigned writes;    /* uv_write requests in flight */
        bool err_set;       /* the first reason recorded wins */
        int err;
        char why[320];
        char rbuf[READ_BUF_SIZE];
};

typedef struct wreq {
        uv_write_t req; /* first */
        tp_conn *c;
        char *data;
} wreq;

static void conn_free(tp_conn *c)
{
        if (!c->silent)
                c->o.on_close(c, c->err, c->why, c->o.userdata);
        SSL_free(c->ssl);
        tp_cvd_decoder_reset(&c->dec);
        free(c->queue);
        free(c->host);
        free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
        tp_conn *c = h->data;

        if (--c->handles == 0 && !c->resolving)
                conn_free(c);
}

_printf_(3, 4) static void set_reason(tp_conn *c, int err, const char *fmt, ...)
{
        va_list ap;

        if (c->err_set)
                return;
        c->err_set = true;
        c->err = err;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof(c->why), fmt, ap);
        va_end(ap);
}

static void close_now(tp_conn *c)
{
        if (c->state == CLOSING)
                return;
        c->state = CLOSING;
        if (c->resolving)
                uv_cancel((uv_req_t *)&c->gai);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Closes at once; the first reason recorded is the one reported. */
#define conn_fail(c, err, ...)                                                                                         \
        do {                                                                                                           \
                set_reason((c), (err), __VA_ARGS__);                                                                   \
                close_now(c);                                                                                          \
        } while (0)

static void on_shutdown(uv_shutdown_t *req, int status)
{
        tp_conn *c = req->data;

        close_now(c);
}

/* FLUSHING and nothing left to write: shut the write side down, then close. */
static void flush_done(tp_conn *c)
{
        if (c->state != FLUSHING || c->writes > 0 || c->shutting_down)
                return;
        c->shutting_down = true;
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
                close_now(c);
}

static void on_write(uv_write_t *req, int status)
{
        wreq *w = (wreq *)req;
        tp_conn *c = w->c;

        free(w->data);
        free(w);
        c->writes--;
        if (status < 0 && status != UV_ECANCELED && c->state != CLOSING) {
                conn_fail(c, status == UV_EPIPE ? -ECONNRESET : status, "write failed: %s", uv_strerror(status));
                return;
        }
        flush_done(c);
}

/* Writes data (taken over, freed after the write) to the socket. */
static int write_raw(tp_conn *c, char *data, size_t len)
{
        wreq *w = malloc(sizeof(*w));
        uv_buf_t b = uv_buf_init(data, (unsigned)len);
        int r;

        if (!w) {
                free(data);
                return -ENOMEM;
        }
        w->c = c;
        w->data = data;
        r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (r < 0) {
                free(data);
                free(w);
                return r;
        }
        c->writes++;
        return 0;
}

/* The TLS reason for a failure: the certificate check, or OpenSSL's error. */
static int tls_reason(tp_conn *c, const char *what, char *buf, size_t size)
{
        long v = SSL_get_verify_result(c->ssl);
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        if (!SSL_is_server(c->ssl) && (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) && v != X509_V_OK) {
                snprintf(buf, size, "the server's TLS certificate did not verify: %s",
                         X509_verify_cert_error_string(v));
                ERR_clear_error();
                return -EKEYREJECTED;
        }
        snprintf(buf, size, "%s failed: %s", what, reason ? reason : "unexpected TLS error");
        ERR_clear_error();
        return -EPROTO;
}

/* Sends what the SSL wrote into its write BIO. */
static int tls_flush(tp_conn *c)
{
        size_t n = BIO_ctrl_pending(c->wbio);
        char *data;

        if (n == 0)
                return 0;
        data = malloc(n);
        if (!data)
                return -ENOMEM;
        if (BIO_read(c->wbio, data, (int)n) != (int)n) {
                free(data);
                return -EIO;
        }
        return write_raw(c, data, n);
}

static void on_timer(uv_timer_t *t);

/* FLUSHING: stops reading, writes out what is pending (a TLS close_notify
 * too), shuts the write side down, then closes; at most FLUSH_TIMEOUT_MS. */
static void flush_and_close(tp_conn *c)
{
        uint64_t ms = c->o.timeout_ms ? MIN(c->o.timeout_ms, FLUSH_TIMEOUT_MS) : FLUSH_TIMEOUT_MS;

        if (c->state != OPEN)
                return;
        c->state = FLUSHING;
        uv_timer_start(&c->timer, on_timer, ms, 0);
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (!c->connected) {
                close_now(c);
                return;
        }
        if (c->ssl && c->ready) {
                ERR_clear_error();
                SSL_shutdown(c->ssl);
                ERR_clear_error();
        }
        if (c->ssl && tls_flush(c) < 0) {
                close_now(c);
                return;
        }
        flush_done(c);
}

/* Closes after what was sent is written out. */
static void graceful_close(tp_conn *c, int err, const char *why)
{
        if (c->state != OPEN)
                return;
        set_reason(c, err, "%s", why);
        if (!c->ready && c->queue_len > 0 && c->connected) {
                /* The TLS handshake is under way: finish it, send the queue, then close (set_ready). */
                if (!c->close_queued)
                        uv_timer_start(&c->timer, on_timer, FLUSH_TIMEOUT_MS, 0);
                c->close_queued = true;
                return;
        }
        flush_and_close(c);
}

static int send_frame(tp_conn *c, char *data, size_t len)
{
        int r;

        if (!c->ssl)
                return write_raw(c, data, len);
        ERR_clear_error();
        r = SSL_write(c->ssl, data, (int)len);
        free(data);
        if (r != (int)len)
                return -EIO;
        return tls_flush(c);
}

/* Up: the queued frames leave in order. */
static void set_ready(tp_conn *c)
{
        char *q = TAKE_PTR(c->queue);
        size_t n = c->queue_len;
        int r;

        c->ready = true;
        c->queue_len = 0;
        if (q) {
                r = send_frame(c, q, n);
                if (r < 0) {
                        conn_fail(c, r, "send failed: %s", strerror(-r));
                        return;
                }
        }
        if (c->close_queued)
                graceful_close(c, c->err, c->why);
}

static void frames_input(tp_conn *c, const char *p, size_t n)
{
        while (n > 0 && c->state == OPEN && !c->close_queued) {
                json_t *msg;
                size_t used;
                int r = tp_cvd_decoder_feed(&c->dec, p, n, &used, &msg);

                p += used;
                n -= used;
                if (r == -EBADMSG) {
                        set_reason(c, -EBADMSG, "bad message: %s", c->dec.why.msg);
                        c->o.on_message(c, NULL, c->dec.why.msg, c->o.userdata);
                        graceful_close(c, c->err, c->why);
                        return;
                }
                if (r < 0) {
                        conn_fail(c, r, "out of memory");
                        return;
                }
                if (r == 1) {
                        c->o.on_message(c, msg, NULL, c->o.userdata);
                        json_decref(msg);
                }
        }
}

static void tls_input(tp_conn *c, const char *p, size_t n)
{
        char buf[16384];
        char why[256];
        int r, e;

        if (BIO_write(c->rbio, p, (int)n) != (int)n) {
                conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        if (!c->ready) {
                ERR_clear_error();
                r = SSL_do_handshake(c->ssl);
                if (r != 1) {
                        e = SSL_get_error(c->ssl, r);
                        if (e == SSL_ERROR_WANT_READ) {
                                r = tls_flush(c);
                                if (r < 0)
                                        conn_fail(c, r, "send failed: %s", strerror(-r));
                                return;
                        }
                        r = tls_reason(c, "TLS handshake", why, sizeof(why));
                        set_reason(c, r, "%s", why);
                        flush_and_close(c); /* the alert goes out first */
                        return;
                }
                r = tls_flush(c);
                if (r < 0) {
                        conn_fail(c, r, "send failed: %s", strerror(-r));
                        return;
                }
                set_ready(c);
        }
        while (c->state == OPEN) {
                ERR_clear_error();
                r = SSL_read(c->ssl, buf, sizeof(buf));
                if (r > 0) {
                        frames_input(c, buf, (size_t)r);
                        continue;
                }
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                        break;
                if (e == SSL_ERROR_ZERO_RETURN) {
                        conn_fail(c, -ECONNRESET, "closed by the peer");
                        return;
                }
                r = tls_reason(c, "TLS", why, sizeof(why));
                conn_fail(c, r, "%s", why);
                return;
        }
        if (c->state == OPEN) {
                r = tls_flush(c); /* TLS 1.3 may answer, e.g. a key update */
                if (r < 0)
                        conn_fail(c, r, "send failed: %s", strerror(-r));
        }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        tp_conn *c = h->data;

        *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void restart_timer(tp_conn *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
        tp_conn *c = s->data;

        if (nread == 0 || c->state != OPEN)
                return;
        if (nread < 0) {
                if (nread == UV_EOF)
                        conn_fail(c, -ECONNRESET, "closed by the peer%s",
                                  tp_cvd_decoder_pending(&c->dec) ? " in the middle of a message" : "");
                else
                        conn_fail(c, (int)nread, "read failed: %s", uv_strerror((int)nread));
                return;
        }
        restart_timer(c);
        if (c->ssl)
                tls_input(c, buf->base, (size_t)nread);
        else
                frames_input(c, buf->base, (size_t)nread);
}

static void format_seconds(uint64_t ms, char *buf, size_t size)
{
        if (ms % 1000)
                snprintf(buf, size, "%.1f s", (double)ms / 1000);
        else
                snprintf(buf, size, "%" PRIu64 " s", ms / 1000);
}

static void on_timer(uv_timer_t *t)
{
        tp_conn *c = t->data;
        char s[32];

        format_seconds(c->o.timeout_ms, s, sizeof(s));
        if (c->state == FLUSHING || c->close_queued)
                close_now(c);
        else if (!c->connected)
                conn_fail(c, -ETIMEDOUT, "connect timed out after %s", s);
        else if (!c->ready)
                conn_fail(c, -ETIMEDOUT, "TLS handshake timed out after %s", s);
        else
                conn_fail(c, -ETIMEDOUT, "nothing heard for %s", s);
}

static void restart_timer(tp_conn *c)
{
        if (c->o.timeout_ms > 0 && c->state == OPEN && !c->close_queued)
                uv_timer_start(&c->timer, on_timer, c->o.timeout_ms, 0);
}

static int conn_new(uv_loop_t *loop, const tp_conn_opts *o, tp_conn **ret)
{
        tp_conn *c;
        int r;

        if (!loop || !o || !o->on_message || !o->on_close || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->o = *o;
        c->dec = (tp_cvd_decoder)TP_CVD_DECODER_INIT;
        r = uv_tcp_init(loop, &c->tcp);
        if (r < 0) {
                free(c);
                return r;
        }
        c->tcp.data = c;
        c->handles = 1;
        uv_timer_init(loop, &c->timer); /* cannot fail */
        c->timer.data = c;
        c->handles++;
        *ret = c;
        return 0;
}

/* Undoes conn_new() and what followed after a failed start: no callback. */
static int conn_abandon(tp_conn *c, int r)
{
        c->silent = true;
        conn_fail(c, r, "start failed");
        return r;
}

static bool is_ip(const char *s)
{
        unsigned char buf[sizeof(struct in6_addr)];

        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int tls_start(tp_conn *c, bool server)
{
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        c->ssl = SSL_new(c->o.tls);
        if (!c->rbio || !c->wbio || !c->ssl) {
                BIO_free(c->rbio);
                BIO_free(c->wbio);
                return -ENOMEM;
        }
        /* An empty read BIO means "more to come", not end of file. */
        BIO_set_mem_eof_return(c->rbio, -1);
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        if (server) {
                SSL_set_accept_state(c->ssl);
                return 0;
        }
        SSL_set_connect_state(c->ssl);
        const char *name = c->o.tls_name ? c->o.tls_name : c->host;
        if (SSL_CTX_get_verify_mode(c->o.tls) & SSL_VERIFY_PEER) {
                X509_VERIFY_PARAM *p = SSL_get0_param(c->ssl);
                if (is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(p, name) != 1 : SSL_set1_host(c->ssl, name) != 1)
                        return -ENOMEM;
        }
        if (!is_ip(name))
                SSL_set_tlsext_host_name(c->ssl, name);
        ERR_clear_error();
        SSL_do_handshake(c->ssl); /* WANT_READ: the ClientHello is in the write BIO */
        ERR_clear_error();
        return tls_flush(c);
}

static void set_peer_name(tp_conn *c)
{
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        char addr[INET6_ADDRSTRLEN];

        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
                return;
        if (ss.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                uv_ip4_name(in, addr, sizeof(addr));
                snprintf(c->peer, sizeof(c->peer), "%s:%u", addr, ntohs(in->sin_port));
        } else if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                uv_ip6_name(in6, addr, sizeof(addr));
                snprintf(c->peer, sizeof(c->peer), "[%s]:%u", addr, ntohs(in6->sin6_port));
        }
}

/* TCP is up: read, and start TLS or mark ready. */
static int conn_up(tp_conn *c, bool server)
{
        int r;

        c->connected = true;
        uv_tcp_nodelay(&c->tcp, 1);
        r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (r < 0)
                return r;
        if (c->o.tls)
                return tls_start(c, server);
        set_ready(c);
        return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
        tp_conn *c = req->data;
        int r;

        if (status == UV_ECANCELED || c->state != OPEN)
                return;
        if (status < 0) {
                conn_fail(c, status, "cannot connect: %s", uv_strerror(status));
                return;
        }
        r = conn_up(c, false);
        if (r < 0)
                conn_fail(c, r, "cannot start the connection: %s", strerror(-r));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
        tp_conn *c = req->data;
        struct addrinfo *a, *pick = NULL;
        int r;

        c->resolving = false;
        if (c->state == CLOSING) {
                uv_freeaddrinfo(res);
                if (c->handles == 0)
                        conn_free(c);
                return;
        }
        if (status < 0) {
                conn_fail(c, -EHOSTUNREACH, "cannot resolve %s: %s", c->host, uv_strerror(status));
                return;
        }
        for (a = res; a && !pick; a = a->ai_next)
                if (a->ai_family == AF_INET)
                        pick = a;
        pick = pick ? pick : res;
        c->connect_req.data = c;
        r = uv_tcp_connect(&c->connect_req, &c->tcp, pick->ai_addr, on_connected);
        uv_freeaddrinfo(res);
        if (r < 0)
                conn_fail(c, r, "cannot connect: %s", uv_strerror(r));
}

int tp_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, const tp_conn_opts *o, tp_conn **ret)
{
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        char service[8];
        tp_conn *c;
        int r;

        if (!host || !*host || port == 0)
                return -EINVAL;
        r = conn_new(loop, o, &c);
        if (r < 0)
                return r;
        c->host = strdup(host);
        if (!c->host)
                return conn_abandon(c, -ENOMEM);
        snprintf(c->peer, sizeof(c->peer), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
        snprintf(service, sizeof(service), "%u", port);
        c->gai.data = c;
        r = uv_getaddrinfo(loop, &c->gai, on_resolved, host, service, &hints);
        if (r < 0)
                return conn_abandon(c, r);
        c->resolving = true;
        restart_timer(c);
        *ret = c;
        return 0;
}

int tp_conn_accept(uv_stream_t *server, const tp_conn_opts *o, tp_conn **ret)
{
        tp_conn *c;
        int r;

        if (!server)
                return -EINVAL;
        r = conn_new(server->loop, o, &c);
        if (r < 0)
                return r;
        r = uv_accept(server, (uv_stream_t *)&c->tcp);
        if (r < 0)
                return conn_abandon(c, r);
        snprintf(c->peer, sizeof(c->peer), "unknown peer");
        set_peer_name(c);
        r = conn_up(c, true);
        if (r < 0)
                return conn_abandon(c, r);
        restart_timer(c);
        *ret = c;
        return 0;
}

int tp_conn_send(tp_conn *c, json_t *msg)
{
        char *data;
        size_t len;
        int r;

        if (!c || !msg)
                return -EINVAL;
        if (c->state != OPEN || c->close_queued)
                return -ESHUTDOWN;
        r = tp_cvd_frame_encode(msg, &data, &len);
        if (r < 0)
                return r;
        if (!c->ready) {
                char *q = realloc(c->queue, c->queue_len + len);
                if (!q) {
                        free(data);
                        return -ENOMEM;
                }
                memcpy(q + c->queue_len, data, len);
                free(data);
                c->queue = q;
                c->queue_len += len;
                return 0;
        }
        r = send_frame(c, data, len);
        if (r < 0)
                conn_fail(c, r, "send failed: %s", strerror(-r));
        return r;
}

void tp_conn_close(tp_conn *c)
{
        if (c)
                graceful_close(c, 0, "closed");
}

const char *tp_conn_peer(const tp_conn *c)
{
        return c->peer;
}

int tp_conn_local_address(const tp_conn *c, char *buf, size_t size)
{
        struct sockaddr_storage ss;
        int len = sizeof(ss), r;

        r = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
        if (r < 0)
                return r;
        if (ss.ss_family == AF_INET)
                return uv_ip4_name((struct sockaddr_in *)&ss, buf, size);
        if (ss.ss_family == AF_INET6)
                return uv_ip6_name((struct sockaddr_in6 *)&ss, buf, size);
        return -EAFNOSUPPORT;
}

bool tp_conn_is_tls(const tp_conn *c)
{
        return c->ssl != NULL;
}

static int ssl_why(tp_cvd_why *why, const char *what, const char *file)
{
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        if (why)
                snprintf(why->msg, sizeof(why->msg), "%s %s: %s", what, file,
                         reason  ? reason
                         : errno ? strerror(errno)
                                 : "failed");
        ERR_clear_error();
        return -EINVAL;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m)
{
        SSL_CTX *ctx = SSL_CTX_new(m);

        if (!ctx)
                return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        return ctx;
}

int tp_tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **ret, tp_cvd_why *why)
{
        SSL_CTX *ctx;
        int r = 0;

        if (!cert_file || !key_file || !ret)
                return -EINVAL;
        ctx = ctx_new(TLS_server_method());
        if (!ctx)
                return -ENOMEM;
        ERR_clear_error();
        errno = 0;
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
                r = ssl_why(why, "cannot load the TLS certificate", cert_file);
        else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
                r = ssl_why(why, "cannot load the TLS key", key_file);
        else if (SSL_CTX_check_private_key(ctx) != 1)
                r = ssl_why(why, "the TLS key does not match the certificate", key_file);
        if (r < 0) {
                SSL_CTX_free(ctx);
                return r;
        }
        *ret = ctx;
        return 0;
}

int tp_tls_client_ctx_new(const char *ca_file, bool insecure, SSL_CTX **ret, tp_cvd_why *why)
{
        SSL_CTX *ctx;

        if (!ret)
                return -EINVAL;
        ctx = ctx_new(TLS_client_method());
        if (!ctx)
                return -ENOMEM;
        if (!insecure) {
                ERR_clear_error();
                errno = 0;
                if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                            : SSL_CTX_set_default_verify_paths(ctx) != 1) {
                        int r = ssl_why(why, "cannot load the TLS CA certificates", ca_file ? ca_file : "(system)");
                        SSL_CTX_free(ctx);
                        return r;
                }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
        *ret = ctx;
        return 0;
}
