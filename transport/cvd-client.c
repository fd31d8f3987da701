/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-client.c -- the CVD-style control protocol client (see cvd-client.h).
 *
 * States: WELCOME (connected or connecting, waiting for the server's first
 * message) -> HELLO (hello sent) -> READY -> DEAD (the connection is gone).
 * Requests wait in a FIFO of calls; the server answers in order, so a reply
 * must carry the id of the oldest call, and anything else is a protocol
 * error that ends the session. When the session ends, every waiting call
 * fails with the same code and message, then on_lost tells the owner.
 */
#include "transport/cvd-client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/util.h"
#include "transport/conn.h"

#define HELLO_ID 1

enum {
        WELCOME,
        HELLO,
        READY,
        DEAD
};

typedef struct call {
        struct call *next;
        uint64_t id;
        tp_cvd_op op;
        union {
                tp_cvd_done_fn done;
                tp_cvd_open_fn open;
                tp_cvd_bitmaps_fn bitmaps;
                tp_cvd_ping_fn ping;
        } cb; /* all NULL for the automatic pings */
        void *userdata;
        char *what; /* "disk.open of /img/a.qcow2 (vm vm1)", for messages */
} call;

struct tp_cvd_client {
        uv_loop_t *loop;
        tp_conn *conn;
        uv_timer_t ping_timer;
        bool timer_closed;
        SSL_CTX *ctx;
        char *token, *user, *password, *client_name;
        uint64_t timeout_ms;
        char where[300]; /* "vbak-cvd at HOST:PORT" */

        int state;
        bool closed; /* by the owner */
        uint64_t next_id;
        call *head, *tail;
        tp_cvd_done_fn connect_cb;
        void *userdata;
        tp_cvd_done_fn on_lost;
        void *lost_userdata;

        int fail_code; /* our reason to end the session, when we end it */
        char fail_msg[1024];

        char *server, *session;
        tp_cvd_session_info info;
};

static void call_free(call *k)
{
        if (!k)
                return;
        free(k->what);
        free(k);
}

static void client_free(tp_cvd_client *c)
{
        while (c->head) {
                call *k = c->head;
                c->head = k->next;
                call_free(k);
        }
        SSL_CTX_free(c->ctx);
        free(c->token);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->user);
        free(c->password);
        free(c->client_name);
        free(c->server);
        free(c->session);
        free(c);
}

static void maybe_free(tp_cvd_client *c)
{
        if (c->closed && !c->conn && c->timer_closed)
                client_free(c);
}

/* Ends the session for our own reason; on_close of the conn reports it. */
_printf_(3, 4) static void client_fail(tp_cvd_client *c, int code, const char *fmt, ...)
{
        va_list ap;

        if (!c->fail_code) {
                c->fail_code = code;
                va_start(ap, fmt);
                vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
                va_end(ap);
        }
        if (c->conn)
                tp_conn_close(c->conn);
}

/* The message for a server's error reply to what. */
static void error_message(tp_cvd_client *c, const tp_cvd_reply *rp, const char *what, char *buf, size_t size)
{
        switch (tp_cvd_code_from_string(rp->code)) {
        case TP_CVD_E_AUTH:
        case TP_CVD_E_DENIED:
        case TP_CVD_E_BUSY:
        case TP_CVD_E_VERSION:
                snprintf(buf, size, "%s refused %s: %s", c->where, what, rp->message);
                break;
        default:
                snprintf(buf, size, "%s: %s failed: %s", c->where, what, rp->message);
        }
}

static void ping_timer_stop(tp_cvd_client *c)
{
        if (!c->timer_closed)
                uv_timer_stop(&c->ping_timer);
}

/* Sends a request built from rq (its id is set here) and queues its call. */
static int client_call(tp_cvd_client *c, tp_cvd_request *rq, call *k)
{
        json_t *j;
        int r;

        if (!c->conn || (c->state != READY && rq->op != TP_CVD_OP_HELLO)) {
                call_free(k);
                return -ENOTCONN;
        }
        rq->id = k->id = c->next_id;
        j = tp_cvd_request_to_json(rq);
        if (!j) {
                call_free(k);
                return -ENOMEM;
        }
        r = tp_conn_send(c->conn, j);
        json_decref(j);
        if (r < 0) {
                call_free(k);
                return r == -ESHUTDOWN ? -ENOTCONN : r;
        }
        c->next_id++;
        k->op = rq->op;
        if (c->tail)
                c->tail->next = k;
        else
                c->head = k;
        c->tail = k;
        return 0;
}

_printf_(4, 5) static call *call_new(void *cb, size_t cb_size, void *userdata, const char *fmt, ...)
{
        call *k = calloc(1, sizeof(*k));
        va_list ap;
        int n;

        if (!k)
                return NULL;
        if (cb)
                memcpy(&k->cb, cb, cb_size);
        k->userdata = userdata;
        va_start(ap, fmt);
        n = vasprintf(&k->what, fmt, ap);
        va_end(ap);
        if (n < 0) {
                free(k);
                return NULL;
        }
        return k;
}

/* Calls k's callback with a failure. */
static void call_fail(tp_cvd_client *c, call *k, int code, const char *msg)
{
        switch (k->op) {
        case TP_CVD_OP_DISK_OPEN:
                if (k->cb.open)
                        k->cb.open(c, code, msg, NULL, k->userdata);
                break;
        case TP_CVD_OP_BITMAP_LIST:
                if (k->cb.bitmaps)
                        k->cb.bitmaps(c, code, msg, NULL, k->userdata);
                break;
        case TP_CVD_OP_PING:
                if (k->cb.ping)
                        k->cb.ping(c, code, msg, 0, k->userdata);
                break;
        default:
                if (k->cb.done)
                        k->cb.done(c, code, msg, k->userdata);
        }
}

/* A successful reply j to call k. Returns 0, or -EBADMSG (why set) when the
 * reply does not parse: the caller ends the session. */
static int call_succeed(tp_cvd_client *c, call *k, json_t *j, tp_cvd_why *why)
{
        int r;

        switch (k->op) {
        case TP_CVD_OP_DISK_OPEN: {
                tp_cvd_open_reply o;

                r = tp_cvd_open_reply_parse(j, &o, why);
                if (r < 0)
                        return r;
                if (k->cb.open)
                        k->cb.open(c, 0, NULL, &o, k->userdata);
                return 0;
        }
        case TP_CVD_OP_BITMAP_LIST: {
                tp_cvd_bitmap_list_reply b = { 0 };

                r = tp_cvd_bitmap_list_reply_parse(j, &b, why);
                if (r < 0)
                        return r;
                if (k->cb.bitmaps)
                        k->cb.bitmaps(c, 0, NULL, &b, k->userdata);
                tp_cvd_bitmap_list_reply_done(&b);
                return 0;
        }
        case TP_CVD_OP_PING: {
                int64_t t;

                r = tp_cvd_ping_reply_parse(j, &t, why);
                if (r < 0)
                        return r;
                if (k->cb.ping)
                        k->cb.ping(c, 0, NULL, t, k->userdata);
                return 0;
        }
        default:
                if (k->cb.done)
                        k->cb.done(c, 0, NULL, k->userdata);
                return 0;
        }
}

static void on_ping_timer(uv_timer_t *t)
{
        tp_cvd_client *c = t->data;
        tp_cvd_request rq = { .op = TP_CVD_OP_PING };
        call *k = call_new(NULL, 0, NULL, "ping");

        /* A failure here is the connection's, which reports it itself. */
        if (k)
                (void)client_call(c, &rq, k);
}

static void connect_done(tp_cvd_client *c, int code, const char *msg)
{
        tp_cvd_done_fn cb = TAKE_PTR(c->connect_cb);

        if (cb && !c->closed)
                cb(c, code, msg, c->userdata);
}

static void send_hello(tp_cvd_client *c, const tp_cvd_welcome *w)
{
        tp_cvd_request rq = { .op = TP_CVD_OP_HELLO };
        char proof[TP_CVD_PROOF_HEX + 1];
        call *k;
        int r;

        rq.hello.version = TP_CVD_VERSION;
        rq.hello.client = c->client_name;
        if (c->token) {
                if (!w->auth_token) {
                        client_fail(c, VB_E_AUTH, "%s does not accept token authentication%s", c->where,
                                    w->auth_password ? " (it offers user and password)" : "");
                        return;
                }
                r = tp_cvd_token_proof(c->token, strlen(c->token), w->nonce, proof);
                if (r < 0) {
                        client_fail(c, VB_E_FAILED, "%s: cannot compute the token proof: %s", c->where, strerror(-r));
                        return;
                }
                rq.hello.method = TP_CVD_AUTH_TOKEN;
                rq.hello.proof = proof;
        } else {
                if (!w->auth_password) {
                        client_fail(c, VB_E_AUTH, "%s does not accept user and password%s", c->where,
                                    w->auth_token ? " (it offers token authentication)" : "");
                        return;
                }
                rq.hello.method = TP_CVD_AUTH_PASSWORD;
                rq.hello.user = c->user;
                rq.hello.password = c->password;
        }
        k = call_new(NULL, 0, NULL, "the %s", c->token ? "token" : "credentials");
        if (!k) {
                client_fail(c, VB_E_FAILED, "out of memory");
                return;
        }
        k->op = TP_CVD_OP_HELLO;
        r = client_call(c, &rq, k);
        if (r < 0) {
                client_fail(c, VB_E_NETWORK, "%s: cannot send hello: %s", c->where, strerror(-r));
                return;
        }
        c->state = HELLO;
}

static void on_welcome(tp_cvd_client *c, json_t *j)
{
        tp_cvd_welcome w;
        tp_cvd_reply rp;
        tp_cvd_why why = { "" };

        /* A full server answers with an error instead of the welcome. */
        if (!json_object_get(j, "op") && tp_cvd_reply_parse(j, &rp, NULL) == 0 && !rp.ok) {
                char msg[1024];

                error_message(c, &rp, "the connection", msg, sizeof(msg));
                client_fail(c, tp_cvd_error_to_vb(rp.code), "%s", msg);
                return;
        }
        if (tp_cvd_welcome_parse(j, &w, &why) < 0) {
                client_fail(c, VB_E_PROTOCOL, "%s broke the protocol: %s", c->where, why.msg);
                return;
        }
        if (!w.v1) {
                client_fail(c, VB_E_PROTOCOL, "%s speaks protocol versions up to %u but not %d, the one vbak speaks",
                            c->where, w.version_max, TP_CVD_VERSION);
                return;
        }
        if (w.tls != (c->ctx != NULL)) {
                client_fail(c, VB_E_PROTOCOL, "%s says TLS is %s, but the connection is %s", c->where,
                            w.tls ? "on" : "off", c->ctx ? "TLS" : "plain");
                return;
        }
        send_hello(c, &w);
}

static void on_hello_reply(tp_cvd_client *c, json_t *j, const tp_cvd_reply *rp)
{
        tp_cvd_hello_reply h;
        tp_cvd_why why = { "" };
        char msg[1024];
        uint64_t every;

        if (!rp->ok) {
                error_message(c, rp, c->head->what, msg, sizeof(msg));
                client_fail(c, tp_cvd_error_to_vb(rp->code), "%s", msg);
                return;
        }
        if (tp_cvd_hello_reply_parse(j, &h, &why) < 0) {
                client_fail(c, VB_E_PROTOCOL, "%s broke the protocol: %s", c->where, why.msg);
                return;
        }
        if (h.version != TP_CVD_VERSION) {
                client_fail(c, VB_E_PROTOCOL, "%s answered hello with protocol version %u, not %d", c->where, h.version,
                            TP_CVD_VERSION);
                return;
        }
        c->server = strdup(h.server);
        c->session = strdup(h.session);
        if (!c->server || !c->session) {
                client_fail(c, VB_E_FAILED, "out of memory");
                return;
        }
        c->info = (tp_cvd_session_info){ .server = c->server,
                                         .session = c->session,
                                         .version = h.version,
                                         .timeout = h.timeout,
                                         .tls = c->ctx != NULL };
        call_free(c->head);
        c->head = c->tail = NULL;
        c->state = READY;
        every = MAX(MIN((uint64_t)h.timeout * 1000, c->timeout_ms) / 3, 1);
        uv_timer_start(&c->ping_timer, on_ping_timer, every, every);
        connect_done(c, 0, NULL);
}

static void on_message(tp_conn *conn, json_t *j, const char *bad, void *userdata)
{
        tp_cvd_client *c = userdata;
        tp_cvd_reply rp;
        tp_cvd_why why = { "" };
        char msg[1024];
        call *k;

        if (!j) {
                client_fail(c, VB_E_PROTOCOL, "%s broke the protocol: %s", c->where, bad);
                return;
        }
        if (c->fail_code || c->closed)
                return;
        if (c->state == WELCOME) {
                on_welcome(c, j);
                return;
        }
        if (tp_cvd_reply_parse(j, &rp, &why) < 0) {
                client_fail(c, VB_E_PROTOCOL, "%s broke the protocol: %s", c->where, why.msg);
                return;
        }
        k = c->head;
        if (!k || rp.id != k->id) {
                if (!rp.ok) /* e.g. id 0: the server's verdict on something we sent */
                        client_fail(c, tp_cvd_error_to_vb(rp.code), "%s: %s", c->where, rp.message);
                else
                        client_fail(c, VB_E_PROTOCOL, "%s broke the protocol: a reply to request %" PRIu64 "%s",
                                    c->where, rp.id, k ? ", which is not the oldest waiting" : " that is not waiting");
                return;
        }
        if (c->state == HELLO) {
                on_hello_reply(c, j, &rp);
                return;
        }
        c->head = k->next;
        if (!c->head)
                c->tail = NULL;
        if (!rp.ok) {
                error_message(c, &rp, k->what, msg, sizeof(msg));
                call_fail(c, k, tp_cvd_error_to_vb(rp.code), msg);
        } else if (call_succeed(c, k, j, &why) < 0) {
                snprintf(msg, sizeof(msg), "%s broke the protocol: %s", c->where, why.msg);
                call_fail(c, k, VB_E_PROTOCOL, msg);
                client_fail(c, VB_E_PROTOCOL, "%s", msg);
        }
        call_free(k);
}

static int code_from_conn(int err)
{
        switch (err) {
        case -EKEYREJECTED:
                return VB_E_AUTH;
        case -EPROTO:
        case -EBADMSG:
                return VB_E_PROTOCOL;
        default:
                return VB_E_NETWORK;
        }
}

static void on_close(tp_conn *conn, int err, const char *why, void *userdata)
{
        tp_cvd_client *c = userdata;
        int code = c->fail_code, state = c->state;
        char msg[1024];

        c->conn = NULL;
        c->state = DEAD;
        ping_timer_stop(c);
        if (code)
                snprintf(msg, sizeof(msg), "%s", c->fail_msg);
        else {
                const char *hint = "";

                code = code_from_conn(err);
                if (state == WELCOME && err == -ETIMEDOUT && !c->ctx)
                        hint = " (if it uses TLS, connect with TLS)";
                else if (state == WELCOME && err == -EPROTO)
                        hint = " (does it use TLS?)";
                if (state == WELCOME && err == -ECONNRESET)
                        why = "closed the connection before its welcome";
                snprintf(msg, sizeof(msg), "%s: %s%s%s", c->where, state == READY ? "connection lost: " : "", why,
                         hint);
        }
        if (state != READY) {
                connect_done(c, code, msg);
        } else {
                while (c->head && !c->closed) {
                        call *k = c->head;

                        c->head = k->next;
                        call_fail(c, k, code, msg);
                        call_free(k);
                }
                c->tail = NULL;
                if (!c->closed && c->on_lost)
                        c->on_lost(c, code, msg, c->lost_userdata);
        }
        maybe_free(c);
}

_printf_(2, 3) static void set_why(tp_cvd_why *why, const char *fmt, ...)
{
        va_list ap;

        if (!why)
                return;
        va_start(ap, fmt);
        vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
        va_end(ap);
}

static int dup_opt(const char *s, char **ret)
{
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int tp_cvd_client_connect(uv_loop_t *loop, const tp_cvd_client_opts *o, tp_cvd_done_fn cb, void *userdata,
                          tp_cvd_client **ret, tp_cvd_why *why)
{
        tp_cvd_client *c;
        tp_conn_opts co;
        uint16_t port;
        int r;

        if (!loop || !o || !cb || !ret)
                return -EINVAL;
        if (!o->host || !*o->host) {
                set_why(why, "no host given");
                return -EINVAL;
        }
        if (!o->token && (!o->user || !o->password)) {
                set_why(why, "give a token, or a user and a password");
                return -EINVAL;
        }
        if (!o->token && !o->tls) {
                set_why(why, "a password is only ever sent over TLS");
                return -EINVAL;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->timeout_ms = o->timeout_ms ? o->timeout_ms : TP_CVD_CLIENT_TIMEOUT_MS_DEFAULT;
        c->next_id = HELLO_ID;
        c->connect_cb = cb;
        c->userdata = userdata;
        c->on_lost = o->on_lost;
        c->lost_userdata = o->lost_userdata;
        c->timer_closed = true; /* until initialised */
        port = o->port ? o->port : TP_CVD_PORT_DEFAULT;
        snprintf(c->where, sizeof(c->where), strchr(o->host, ':') ? "vbak-cvd at [%s]:%u" : "vbak-cvd at %s:%u",
                 o->host, port);
        if (dup_opt(o->token, &c->token) < 0 || dup_opt(o->user, &c->user) < 0 ||
            dup_opt(o->password, &c->password) < 0 ||
            dup_opt(o->client_name ? o->client_name : "vbak/" VBAK_VERSION, &c->client_name) < 0) {
                client_free(c);
                return -ENOMEM;
        }
        if (o->tls) {
                r = tp_tls_client_ctx_new(o->ca_file, o->insecure, &c->ctx, why);
                if (r < 0) {
                        client_free(c);
                        return r;
                }
        }
        co = (tp_conn_opts){ .tls = c->ctx,
                             .timeout_ms = c->timeout_ms,
                             .on_message = on_message,
                             .on_close = on_close,
                             .userdata = c };
        r = tp_conn_connect(loop, o->host, port, &co, &c->conn);
        if (r < 0) {
                set_why(why, "cannot connect to %s: %s", c->where, strerror(-r));
                client_free(c);
                return r;
        }
        uv_timer_init(loop, &c->ping_timer);
        c->ping_timer.data = c;
        c->timer_closed = false;
        *ret = c;
        return 0;
}

static bool names_ok(const char *vm, const char *path)
{
        return tp_cvd_name_valid(vm) && tp_cvd_path_valid(path);
}

int tp_cvd_disk_open(tp_cvd_client *c, const tp_cvd_open_req *o, tp_cvd_open_fn cb, void *userdata)
{
        tp_cvd_request rq = { .op = TP_CVD_OP_DISK_OPEN };
        call *k;

        if (!c || !o || !cb || !names_ok(o->vm, o->path) || (o->snapshot && !tp_cvd_name_valid(o->snapshot)) ||
            (o->since && !tp_cvd_name_valid(o->since)) || (o->checkpoint && !tp_cvd_name_valid(o->checkpoint)))
                return -EINVAL;
        rq.open = *o;
        k = call_new(&cb, sizeof(cb), userdata, "disk.open of %s (vm %s)", o->path, o->vm);
        return k ? client_call(c, &rq, k) : -ENOMEM;
}

int tp_cvd_disk_close(tp_cvd_client *c, const char *handle, tp_cvd_done_fn cb, void *userdata)
{
        tp_cvd_request rq = { .op = TP_CVD_OP_DISK_CLOSE, .handle = handle };
        call *k;

        if (!c || !handle || !*handle || !cb)
                return -EINVAL;
        k = call_new(&cb, sizeof(cb), userdata, "disk.close of handle %s", handle);
        return k ? client_call(c, &rq, k) : -ENOMEM;
}

static int bitmap_call(tp_cvd_client *c, tp_cvd_op op, const char *vm, const char *path, const char *name,
                       tp_cvd_done_fn cb, void *userdata)
{
        tp_cvd_request rq = { .op = op, .bitmap = { vm, path, name } };
        call *k;

        if (!c || !cb || !names_ok(vm, path) || !tp_cvd_name_valid(name))
                return -EINVAL;
        k = call_new(&cb, sizeof(cb), userdata, "%s %s on %s (vm %s)", tp_cvd_op_to_string(op), name, path, vm);
        return k ? client_call(c, &rq, k) : -ENOMEM;
}

int tp_cvd_bitmap_create(tp_cvd_client *c, const char *vm, const char *path, const char *name, tp_cvd_done_fn cb,
                         void *userdata)
{
        return bitmap_call(c, TP_CVD_OP_BITMAP_CREATE, vm, path, name, cb, userdata);
}

int tp_cvd_bitmap_remove(tp_cvd_client *c, const char *vm, const char *path, const char *name, tp_cvd_done_fn cb,
                         void *userdata)
{
        return bitmap_call(c, TP_CVD_OP_BITMAP_REMOVE, vm, path, name, cb, userdata);
}

int tp_cvd_bitmap_list(tp_cvd_client *c, const char *vm, const char *path, tp_cvd_bitmaps_fn cb, void *userdata)
{
        tp_cvd_request rq = { .op = TP_CVD_OP_BITMAP_LIST, .bitmap = { vm, path, NULL } };
        call *k;

        if (!c || !cb || !names_ok(vm, path))
                return -EINVAL;
        k = call_new(&cb, sizeof(cb), userdata, "bitmap.list on %s (vm %s)", path, vm);
        return k ? client_call(c, &rq, k) : -ENOMEM;
}

int tp_cvd_ping(tp_cvd_client *c, tp_cvd_ping_fn cb, void *userdata)
{
        tp_cvd_request rq = { .op = TP_CVD_OP_PING };
        call *k;

        if (!c || !cb)
                return -EINVAL;
        k = call_new(&cb, sizeof(cb), userdata, "ping");
        return k ? client_call(c, &rq, k) : -ENOMEM;
}

const tp_cvd_session_info *tp_cvd_client_info(const tp_cvd_client *c)
{
        return c && c->server ? &c->info : NULL;
}

static void on_timer_closed(uv_handle_t *h)
{
        tp_cvd_client *c = h->data;

        c->timer_closed = true;
        maybe_free(c);
}

void tp_cvd_client_close(tp_cvd_client *c)
{
        if (!c || c->closed)
                return;
        c->closed = true;
        while (c->head) {
                call *k = c->head;
                c->head = k->next;
                call_free(k);
        }
        c->tail = NULL;
        if (c->conn)
                tp_conn_close(c->conn);
        if (!c->timer_closed)
                uv_close((uv_handle_t *)&c->ping_timer, on_timer_closed);
        else
                maybe_free(c);
}

int tp_cvd_run_until(uv_loop_t *loop, const bool *done)
{
        while (!*done)
                if (uv_run(loop, UV_RUN_ONCE) == 0 && !*done)
                        return -EDEADLK;
        return 0;
}

/* --- URLs --------------------------------------------------------------- */

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char)(c | 0x20);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes n bytes of s; %00 and bad escapes fail. */
static char *percent_decode(const char *s, size_t n)
{
        char *out = malloc(n + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
                lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
                if (hi < 0 || lo < 0 || (hi | lo) == 0) {
                        free(out);
                        return NULL;
                }
                *o++ = (char)(hi << 4 | lo);
                i += 2;
        }
        *o = 0;
        return out;
}

void tp_cvd_url_done(tp_cvd_url *u)
{
        if (!u)
                return;
        free(u->host);
        free(u->vm);
        free(u->path);
        free(u->snapshot);
        *u = (tp_cvd_url){ 0 };
}

static int url_fail(tp_cvd_url *u, const char **ret_why, const char *why, int r)
{
        tp_cvd_url_done(u);
        if (ret_why)
                *ret_why = why;
        return r;
}

int tp_cvd_url_parse(const char *s, tp_cvd_url *ret, const char **ret_why)
{
        tp_cvd_url u = { .port = TP_CVD_PORT_DEFAULT };
        const char *p, *end, *q, *host_end;

        if (!s || !ret)
                return -EINVAL;
        if (strncmp(s, "cvd://", 6) != 0)
                return url_fail(&u, ret_why, "a disk service URL starts with cvd://", -EINVAL);
        p = s + 6;
        end = p + strcspn(p, "/?#");
        if (*end == '#')
                return url_fail(&u, ret_why, "a cvd:// URL has no #fragment", -EINVAL);
        /* The authority: HOST, HOST:PORT, [V6], [V6]:PORT. */
        if (*p == '[') {
                host_end = memchr(p, ']', (size_t)(end - p));
                if (!host_end || host_end == p + 1)
                        return url_fail(&u, ret_why, "an IPv6 address needs its closing ']'", -EINVAL);
                u.host = strndup(p + 1, (size_t)(host_end - p - 1));
                q = host_end + 1;
                if (q != end && *q != ':')
                        return url_fail(&u, ret_why, "junk after the IPv6 address", -EINVAL);
        } else {
                q = memchr(p, ':', (size_t)(end - p));
                q = q ? q : end;
                if (q == p)
                        return url_fail(&u, ret_why, "the URL names no host", -EINVAL);
                u.host = strndup(p, (size_t)(q - p));
        }
        if (!u.host)
                return url_fail(&u, ret_why, "out of memory", -ENOMEM);
        if (strpbrk(u.host, "%@ "))
                return url_fail(&u, ret_why, "the host may not hold '%', '@' or spaces", -EINVAL);
        if (q != end) {
                char digits[8] = "";
                size_t n = (size_t)(end - q - 1);
                char *e;
                long v;

                if (n == 0 || n >= sizeof(digits))
                        return url_fail(&u, ret_why, "bad port (1-65535)", -EINVAL);
                memcpy(digits, q + 1, n);
                v = strtol(digits, &e, 10);
                if (*e || v < 1 || v > 65535 || digits[0] < '0' || digits[0] > '9')
                        return url_fail(&u, ret_why, "bad port (1-65535)", -EINVAL);
                u.port = (uint16_t)v;
        }

        /* The disk: /VM/ABS/PATH. */
        p = end;
        end = p + strcspn(p, "?#");
        if (*end == '#')
                return url_fail(&u, ret_why, "a cvd:// URL has no #fragment", -EINVAL);
        if (end - p > 1) {
                const char *slash = memchr(p + 1, '/', (size_t)(end - p - 1));
                _cleanup_free_ char *rest = NULL;

                if (!slash || slash + 1 == end)
                        return url_fail(&u, ret_why, "the URL path must be /VM/ABSOLUTE/PATH/OF/THE/IMAGE", -EINVAL);
                u.vm = percent_decode(p + 1, (size_t)(slash - p - 1));
                rest = percent_decode(slash, (size_t)(end - slash));
                if (!u.vm || !rest)
                        return url_fail(&u, ret_why, "bad %-escape in the URL path", -EINVAL);
                if (!tp_cvd_name_valid(u.vm))
                        return url_fail(
                                &u, ret_why,
                                "the VM name: use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                                -EINVAL);
                if (!tp_cvd_path_valid(rest))
                        return url_fail(&u, ret_why, "the image path is longer than 4096 bytes", -EINVAL);
                u.path = TAKE_PTR(rest);
        }

        /* The query: snapshot=S. */
        for (p = *end == '?' ? end + 1 : end; *p;) {
                size_t n = strcspn(p, "&");

                if (n > 9 && strncmp(p, "snapshot=", 9) == 0 && !u.snapshot) {
                        u.snapshot = percent_decode(p + 9, n - 9);
                        if (!u.snapshot || !tp_cvd_name_valid(u.snapshot))
                                return url_fail(&u, ret_why,
                                                "the snapshot name: use 1-64 letters, digits, '.', '_' or '-', not "
                                                "starting with '.' or '-'",
                                                -EINVAL);
                } else if (n > 0)
                        return url_fail(&u, ret_why, "the only URL parameter is snapshot=NAME (once)", -EINVAL);
                p += n + (p[n] == '&');
        }
        if (u.snapshot && !u.path)
                return url_fail(&u, ret_why, "a snapshot needs the disk's /VM/PATH in the URL", -EINVAL);
        *ret = u;
        return 0;
}
