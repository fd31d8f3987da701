/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-server.c -- sessions of vbak-cvd (see cvd-server.h for the design).
 *
 * A session's life: accepted -> welcome sent -> hello (token checked on the
 * loop; a password through PBKDF2 on the worker pool) -> requests, one at a
 * time -> its connection closes -> its exports are closed on the worker
 * pool -> freed, and its client slot is free again. A work item never
 * outlives its session: the session waits for the one in flight before it
 * tears down.
 *
 * This is the one transport/ module that logs at info level: it is the
 * service's record of who opened and closed what, from where.
 */
#include "transport/cvd-server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "transport/conn.h"

typedef struct session session;

/* One open (or opening) export, in the server's registry. */
typedef struct export_entry {
        struct export_entry *next;
        session *owner;
        char handle[24];
        char *resolved; /* the image's real path */
        bool write;
        tp_export *e; /* NULL while the backend opens it */
} export_entry;

struct tp_cvd_server {
        uv_loop_t *loop;
        uv_tcp_t listener;
        bool listening; /* the listener handle is open */
        uint16_t port;
        const tp_export_cfg *cfg;
        SSL_CTX *tls;
        char *token, *credentials;
        unsigned max_clients, timeout_s;

        session *sessions;
        unsigned n_sessions; /* from accept until their exports are closed */
        unsigned n_refused;  /* connections refused (busy) still closing */
        uint64_t next_handle;

        pthread_mutex_t lock; /* guards exports, used by the workers */
        export_entry *exports;

        bool stopping;
        void (*stop_done)(void *userdata);
        void *stop_userdata;
};

struct session {
        session *prev, *next;
        tp_cvd_server *s;
        tp_conn *conn; /* NULL once closed */
        bool ending;   /* an error was sent: nothing more is answered */
        char peer[64];
        char local[64]; /* the address the client reached us on: announced for exports
                         * when the configuration names none (a wildcard listener) */
        char nonce[TP_CVD_NONCE_HEX + 1];
        char id[33]; /* the session id, for the logs */
        bool authed;
        json_t *queue; /* requests waiting, oldest first */
        bool working;  /* a work item runs */
};

typedef struct work {
        uv_work_t req; /* first */
        session *ss;
        json_t *msg; /* holds the strings rq borrows */
        tp_cvd_request rq;
        char handle[24];
        /* results */
        int r;
        tp_cvd_code code;
        char *message;
        export_entry *entry;
        tp_bitmap_info *bitmaps;
        size_t n_bitmaps;
        unsigned closed; /* teardown: exports closed */
} work;

static void maybe_stopped(tp_cvd_server *s);
static void session_pump(session *ss);

/* --- replies ------------------------------------------------------------ */

static void send_json(session *ss, json_t *j)
{
        int r;

        if (!j) {
                log_error("%s: out of memory building a reply", ss->peer);
                return;
        }
        if (ss->conn) {
                r = tp_conn_send(ss->conn, j);
                if (r < 0 && r != -ESHUTDOWN)
                        log_warning("%s: cannot send a reply: %s", ss->peer, strerror(-r));
        }
        json_decref(j);
}

static void reply_error(session *ss, uint64_t id, tp_cvd_code code, const char *message)
{
        send_json(ss, tp_cvd_reply_error_new(id, code, message));
}

/* Errors before or during authentication, and protocol errors, end the
 * session: the error goes out, then the connection closes. */
static void reply_error_close(session *ss, uint64_t id, tp_cvd_code code, const char *message)
{
        log_warning("%s: session %s: %s: %s; closing", ss->peer, ss->id, tp_cvd_code_to_string(code), message);
        reply_error(ss, id, code, message);
        ss->ending = true;
        if (ss->conn)
                tp_conn_close(ss->conn);
}

/* --- paths and the registry (worker threads) ----------------------------- */

static bool inside_folders(const tp_export_cfg *cfg, const char *path)
{
        for (size_t i = 0; i < cfg->n_image_dirs; i++) {
                const char *d = cfg->image_dirs[i];
                size_t n = strlen(d);

                if (n == 1 && d[0] == '/')
                        return true;
                if (strncmp(path, d, n) == 0 && path[n] == '/')
                        return true;
        }
        return false;
}

/* Resolves path and checks it against the image folders. 0 with
 * *ret_resolved, or a protocol code with *ret_message. */
static int check_path(const tp_export_cfg *cfg, const char *path, char **ret_resolved, tp_cvd_code *ret_code,
                      char **ret_message)
{
        _cleanup_free_ char *resolved = NULL, *real = NULL;
        int n;

        if (tp_export_path_allowed(cfg, path, &resolved) && resolved) {
                *ret_resolved = TAKE_PTR(resolved);
                return 0;
        }
        /* Say why, without telling anything about files outside the folders. */
        real = realpath(path, NULL);
        if (!real && errno == ENOENT && inside_folders(cfg, path)) {
                *ret_code = TP_CVD_E_NOT_FOUND;
                n = asprintf(ret_message, "%s does not exist", path);
        } else if (real && inside_folders(cfg, real)) {
                *ret_code = TP_CVD_E_DENIED;
                n = asprintf(ret_message, "%s is not a regular file", path);
        } else {
                *ret_code = TP_CVD_E_DENIED;
                n = asprintf(ret_message, "%s is outside the served image folders", path);
        }
        if (n < 0)
                *ret_message = NULL;
        return -EACCES;
}

static void entry_free(export_entry *x)
{
        if (!x)
                return;
        free(x->resolved);
        free(x);
}

/* Takes x out of the registry (under the lock). */
static void registry_remove(tp_cvd_server *s, export_entry *x)
{
        pthread_mutex_lock(&s->lock);
        for (export_entry **p = &s->exports; *p; p = &(*p)->next)
                if (*p == x) {
                        *p = x->next;
                        break;
                }
        pthread_mutex_unlock(&s->lock);
}

/* Reserves path for a new export unless another one conflicts: a disk open
 * read-write is open only once; a disk open at all cannot be opened
 * read-write. 0, or -EBUSY with *ret_message. */
static int registry_reserve(tp_cvd_server *s, export_entry *x, char **ret_message)
{
        int r = 0;

        pthread_mutex_lock(&s->lock);
        for (export_entry *o = s->exports; o; o = o->next)
                if (streq(o->resolved, x->resolved) && (o->write || x->write)) {
                        r = -EBUSY;
                        if (asprintf(ret_message, "%s is open %s in another session%s", x->resolved,
                                     o->write ? "read-write" : "for reading",
                                     x->write ? "; read-write needs it alone" : "") < 0)
                                *ret_message = NULL;
                        break;
                }
        if (r == 0) {
                x->next = s->exports;
                s->exports = x;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* --- work on the pool ----------------------------------------------------- */

/* A backend result: r < 0 sets the code and the message (err or strerror). */
static void backend_result(work *w, int r, char *err)
{
        w->r = r;
        if (r >= 0) {
                free(err);
                return;
        }
        w->code = tp_cvd_code_from_errno(r);
        if (err)
                w->message = err;
        else if (asprintf(&w->message, "%s", strerror(-r)) < 0)
                w->message = NULL;
}

static void work_open(work *w)
{
        tp_cvd_server *s = w->ss->s;
        const tp_cvd_open_req *o = &w->rq.open;
        export_entry *x = calloc(1, sizeof(*x));
        tp_export_cfg cfg;
        tp_export_req req;
        char *err = NULL;
        int r;

        if (!x) {
                backend_result(w, -ENOMEM, NULL);
                return;
        }
        x->owner = w->ss;
        x->write = o->write;
        snprintf(x->handle, sizeof(x->handle), "%s", w->handle);
        r = check_path(s->cfg, o->path, &x->resolved, &w->code, &w->message);
        if (r < 0) {
                w->r = r;
                entry_free(x);
                return;
        }
        r = registry_reserve(s, x, &w->message);
        if (r < 0) {
                w->r = r;
                w->code = TP_CVD_E_BUSY;
                entry_free(x);
                return;
        }
        req = (tp_export_req){ .vm = o->vm,
                               .path = x->resolved,
                               .snapshot = o->snapshot,
                               .write = o->write,
                               .since = o->since,
                               .checkpoint = o->checkpoint };
        cfg = *s->cfg;
        if (!cfg.data_host)
                cfg.data_host = w->ss->local;
        r = tp_export_open(&cfg, &req, &x->e, &err);
        backend_result(w, r, err);
        if (r < 0) {
                registry_remove(s, x);
                entry_free(x);
                return;
        }
        w->entry = x;
}

static export_entry *find_entry(tp_cvd_server *s, session *ss, const char *handle)
{
        export_entry *x;

        pthread_mutex_lock(&s->lock);
        for (x = s->exports; x; x = x->next)
                if (x->owner == ss && x->e && streq(x->handle, handle))
                        break;
        pthread_mutex_unlock(&s->lock);
        return x;
}

static void close_entry(tp_cvd_server *s, export_entry *x, int *ret_r, char **ret_err)
{
        char *err = NULL;
        int r = x->e ? tp_export_close(s->cfg, x->e, &err) : 0;

        x->e = NULL; /* freed by the backend, even on failure */
        registry_remove(s, x);
        if (ret_r) {
                *ret_r = r;
                *ret_err = err;
        } else {
                if (r < 0)
                        log_warning("%s: closing handle %s of %s: %s", x->owner->peer, x->handle, x->resolved,
                                    err ? err : strerror(-r));
                free(err);
        }
}

static void work_close(work *w)
{
        export_entry *x = find_entry(w->ss->s, w->ss, w->rq.handle);
        char *err = NULL;
        int r;

        if (!x) {
                w->r = -ENOENT;
                w->code = TP_CVD_E_NOT_FOUND;
                if (asprintf(&w->message, "no open export with handle %s in this session", w->rq.handle) < 0)
                        w->message = NULL;
                return;
        }
        close_entry(w->ss->s, x, &r, &err);
        backend_result(w, r, err);
        w->entry = x; /* for the log line; freed after it */
}

static void work_bitmap(work *w)
{
        const tp_export_cfg *cfg = w->ss->s->cfg;
        const tp_cvd_bitmap_req *b = &w->rq.bitmap;
        _cleanup_free_ char *resolved = NULL;
        char *err = NULL;
        int r;

        r = check_path(cfg, b->path, &resolved, &w->code, &w->message);
        if (r < 0) {
                w->r = r;
                return;
        }
        switch (w->rq.op) {
        case TP_CVD_OP_BITMAP_CREATE:
                r = tp_bitmap_create(cfg, b->vm, resolved, b->name, &err);
                break;
        case TP_CVD_OP_BITMAP_REMOVE:
                r = tp_bitmap_remove(cfg, b->vm, resolved, b->name, &err);
                break;
        default:
                r = tp_bitmap_list(cfg, b->vm, resolved, &w->bitmaps, &w->n_bitmaps, &err);
                break;
        }
        backend_result(w, r, err);
}

static void work_hello(work *w)
{
        int r = tp_cvd_credentials_check(w->ss->s->credentials, w->rq.hello.user, w->rq.hello.password, NULL);

        w->r = r;
        if (r < 0) {
                w->code = TP_CVD_E_AUTH;
                if (asprintf(&w->message,
                             r == -EKEYREJECTED ? "wrong user or password" : "cannot check the password: %s",
                             strerror(-r)) < 0)
                        w->message = NULL;
        }
}

/* Closes every export of the session (its connection is gone). */
static void work_teardown(work *w)
{
        tp_cvd_server *s = w->ss->s;

        for (;;) {
                export_entry *x;

                pthread_mutex_lock(&s->lock);
                for (x = s->exports; x && x->owner != w->ss; x = x->next)
                        ;
                pthread_mutex_unlock(&s->lock);
                if (!x)
                        break;
                log_info("%s: session %s ended: closing handle %s (%s, port %u)", w->ss->peer, w->ss->id, x->handle,
                         x->resolved, x->e ? x->e->port : 0);
                close_entry(s, x, NULL, NULL);
                entry_free(x);
                w->closed++;
        }
}

static void on_work(uv_work_t *req)
{
        work *w = (work *)req;

        switch (w->rq.op) {
        case TP_CVD_OP_HELLO:
                work_hello(w);
                break;
        case TP_CVD_OP_DISK_OPEN:
                work_open(w);
                break;
        case TP_CVD_OP_DISK_CLOSE:
                work_close(w);
                break;
        case TP_CVD_OP_BITMAP_CREATE:
        case TP_CVD_OP_BITMAP_REMOVE:
        case TP_CVD_OP_BITMAP_LIST:
                work_bitmap(w);
                break;
        default: /* _TP_CVD_OP_INVALID: the teardown */
                work_teardown(w);
        }
}

static void work_free(work *w)
{
        json_decref(w->msg);
        free(w->message);
        tp_bitmap_info_free(w->bitmaps, w->n_bitmaps);
        free(w);
}

/* --- sessions ----------------------------------------------------------- */

static void session_free(session *ss)
{
        tp_cvd_server *s = ss->s;

        if (ss->prev)
                ss->prev->next = ss->next;
        else
                s->sessions = ss->next;
        if (ss->next)
                ss->next->prev = ss->prev;
        s->n_sessions--;
        json_decref(ss->queue);
        free(ss);
        maybe_stopped(s);
}

static void after_teardown(uv_work_t *req, int status)
{
        work *w = (work *)req;
        session *ss = w->ss;

        if (w->closed)
                log_info("%s: session %s: exports closed: %u", ss->peer, ss->id, w->closed);
        work_free(w);
        session_free(ss);
}

/* The connection is gone and no work runs: close the exports, then free. */
static void session_teardown(session *ss)
{
        work *w = calloc(1, sizeof(*w));

        if (w) {
                w->ss = ss;
                w->rq.op = _TP_CVD_OP_INVALID;
                if (uv_queue_work(ss->s->loop, &w->req, on_work, after_teardown) == 0)
                        return;
                free(w);
        }
        /* Cannot happen with a live loop; close them here rather than leak them. */
        log_error("%s: cannot queue the teardown; closing the exports on the loop", ss->peer);
        work fallback = { .ss = ss };
        work_teardown(&fallback);
        session_free(ss);
}

static void after_work(uv_work_t *req, int status)
{
        work *w = (work *)req;
        session *ss = w->ss;
        const tp_cvd_request *rq = &w->rq;
        const char *msg = w->message ? w->message : "out of memory";

        ss->working = false;
        if (rq->op == TP_CVD_OP_HELLO) {
                if (w->r < 0) {
                        reply_error_close(ss, rq->id, w->code, msg);
                } else {
                        tp_cvd_hello_reply h = { TP_CVD_VERSION, TP_CVD_SERVICE "/" VBAK_VERSION, ss->id,
                                                 ss->s->timeout_s };
                        ss->authed = true;
                        log_info("%s: session %s: user %s authenticated", ss->peer, ss->id, rq->hello.user);
                        send_json(ss, tp_cvd_hello_reply_new(rq->id, &h));
                }
        } else if (w->r < 0) {
                log_warning("%s: session %s: %s failed: %s", ss->peer, ss->id, tp_cvd_op_to_string(rq->op), msg);
                reply_error(ss, rq->id, w->code, msg);
        } else if (rq->op == TP_CVD_OP_DISK_OPEN) {
                const tp_export *e = w->entry->e;
                tp_cvd_open_reply o = { .handle = w->entry->handle,
                                        .host = e->host,
                                        .port = e->port,
                                        .export_name = e->name,
                                        .size = e->size,
                                        .format = e->format,
                                        .cluster_size = e->cluster_size,
                                        .granularity = e->granularity,
                                        .running = e->running };

                for (size_t i = 0; i < e->n_contexts && i < TP_CVD_CONTEXTS_MAX; i++)
                        o.contexts[o.n_contexts++] = e->contexts[i];
                log_info("%s: session %s: opened %s (vm %s%s%s, %s%s%s%s%s) as export '%s' on %s:%u, handle %s",
                         ss->peer, ss->id, w->entry->resolved, rq->open.vm, rq->open.snapshot ? ", snapshot " : "",
                         rq->open.snapshot ? rq->open.snapshot : "", rq->open.write ? "read-write" : "read",
                         rq->open.since ? ", since " : "", rq->open.since ? rq->open.since : "",
                         rq->open.checkpoint ? ", checkpoint " : "", rq->open.checkpoint ? rq->open.checkpoint : "",
                         e->name, e->host, e->port, w->entry->handle);
                send_json(ss, tp_cvd_open_reply_new(rq->id, &o));
        } else if (rq->op == TP_CVD_OP_DISK_CLOSE) {
                log_info("%s: session %s: closed handle %s (%s)", ss->peer, ss->id, w->entry->handle,
                         w->entry->resolved);
                send_json(ss, tp_cvd_reply_ok_new(rq->id));
        } else if (rq->op == TP_CVD_OP_BITMAP_LIST) {
                tp_cvd_bitmap *v = calloc(MAX(w->n_bitmaps, 1), sizeof(*v));

                for (size_t i = 0; v && i < w->n_bitmaps; i++)
                        v[i] = (tp_cvd_bitmap){ w->bitmaps[i].name, w->bitmaps[i].granularity, w->bitmaps[i].persistent,
                                                w->bitmaps[i].enabled, w->bitmaps[i].dirty_bytes };
                if (v)
                        send_json(ss, tp_cvd_bitmap_list_reply_new(rq->id, v, w->n_bitmaps));
                else
                        reply_error(ss, rq->id, TP_CVD_E_INTERNAL, "out of memory");
                free(v);
        } else {
                log_info("%s: session %s: %s %s on %s (vm %s)", ss->peer, ss->id, tp_cvd_op_to_string(rq->op),
                         rq->bitmap.name, rq->bitmap.path, rq->bitmap.vm);
                send_json(ss, tp_cvd_reply_ok_new(rq->id));
        }
        if (rq->op == TP_CVD_OP_DISK_CLOSE)
                entry_free(w->entry); /* out of the registry already */
        work_free(w);
        if (!ss->conn)
                session_teardown(ss);
        else
                session_pump(ss);
}

static void start_work(session *ss, json_t *msg, const tp_cvd_request *rq)
{
        work *w = calloc(1, sizeof(*w));

        if (!w) {
                reply_error(ss, rq->id, TP_CVD_E_INTERNAL, "out of memory");
                return;
        }
        w->ss = ss;
        w->msg = json_incref(msg);
        w->rq = *rq;
        if (rq->op == TP_CVD_OP_DISK_OPEN)
                snprintf(w->handle, sizeof(w->handle), "h%" PRIu64, ++ss->s->next_handle);
        if (uv_queue_work(ss->s->loop, &w->req, on_work, after_work) < 0) {
                work_free(w);
                reply_error(ss, rq->id, TP_CVD_E_INTERNAL, "cannot queue the work");
                return;
        }
        ss->working = true;
}

static void handle_hello(session *ss, json_t *msg, const tp_cvd_request *rq)
{
        tp_cvd_server *s = ss->s;
        const tp_cvd_hello_req *h = &rq->hello;

        if (h->version != TP_CVD_VERSION) {
                char m[128];
                snprintf(m, sizeof(m), "protocol version %u is not spoken here; versions spoken: %d", h->version,
                         TP_CVD_VERSION);
                reply_error_close(ss, rq->id, TP_CVD_E_VERSION, m);
                return;
        }
        if (h->method == TP_CVD_AUTH_PASSWORD) {
                if (!s->credentials)
                        reply_error_close(ss, rq->id, TP_CVD_E_AUTH, "password authentication is not enabled here");
                else if (!tp_conn_is_tls(ss->conn))
                        reply_error_close(ss, rq->id, TP_CVD_E_AUTH, "password authentication needs TLS");
                else
                        start_work(ss, msg, rq);
                return;
        }
        if (!s->token) {
                reply_error_close(ss, rq->id, TP_CVD_E_AUTH, "token authentication is not enabled here");
                return;
        }
        if (tp_cvd_token_check(s->token, strlen(s->token), ss->nonce, h->proof) < 0) {
                reply_error_close(ss, rq->id, TP_CVD_E_AUTH, "wrong token");
                return;
        }
        ss->authed = true;
        log_info("%s: session %s: authenticated with the token (%s)", ss->peer, ss->id,
                 h->client ? h->client : "no client name");
        tp_cvd_hello_reply hr = { TP_CVD_VERSION, TP_CVD_SERVICE "/" VBAK_VERSION, ss->id, s->timeout_s };
        send_json(ss, tp_cvd_hello_reply_new(rq->id, &hr));
}

static void handle_request(session *ss, json_t *msg)
{
        tp_cvd_request rq = { 0 };
        tp_cvd_why why = { "" };
        int r = tp_cvd_request_parse(msg, &rq, &why);

        if (r == -EPROTO) {
                reply_error_close(ss, 0, TP_CVD_E_PROTOCOL, why.msg);
                return;
        }
        if (!ss->authed) {
                json_t *op = json_object_get(msg, "op");

                if (!json_is_string(op) || !streq(json_string_value(op), "hello"))
                        reply_error_close(ss, rq.id, TP_CVD_E_AUTH, "the first request must be hello");
                else if (r < 0)
                        reply_error_close(ss, rq.id, TP_CVD_E_INVALID, why.msg);
                else
                        handle_hello(ss, msg, &rq);
                return;
        }
        if (r < 0) {
                reply_error(ss, rq.id, TP_CVD_E_INVALID, why.msg);
                return;
        }
        switch (rq.op) {
        case TP_CVD_OP_HELLO:
                reply_error(ss, rq.id, TP_CVD_E_INVALID, "hello: the session is authenticated already");
                break;
        case TP_CVD_OP_PING:
                send_json(ss, tp_cvd_ping_reply_new(rq.id, (int64_t)time(NULL)));
                break;
        default:
                start_work(ss, msg, &rq);
        }
}

/* Answers the waiting requests in order, up to the next one that needs work. */
static void session_pump(session *ss)
{
        while (ss->conn && !ss->ending && !ss->working && json_array_size(ss->queue) > 0) {
                json_t *msg = json_incref(json_array_get(ss->queue, 0));

                json_array_remove(ss->queue, 0);
                handle_request(ss, msg);
                json_decref(msg);
        }
}

static void session_on_message(tp_conn *c, json_t *msg, const char *bad, void *userdata)
{
        session *ss = userdata;
        char m[96];

        if (ss->ending)
                return;
        if (!msg) {
                reply_error_close(ss, 0, TP_CVD_E_PROTOCOL, bad);
                return;
        }
        if (json_array_size(ss->queue) >= TP_CVD_QUEUE_MAX) {
                snprintf(m, sizeof(m), "more than %d requests waiting for an answer", TP_CVD_QUEUE_MAX);
                reply_error_close(ss, 0, TP_CVD_E_PROTOCOL, m);
                return;
        }
        if (json_array_append(ss->queue, msg) < 0) {
                reply_error_close(ss, 0, TP_CVD_E_INTERNAL, "out of memory");
                return;
        }
        session_pump(ss);
}

static void session_on_close(tp_conn *c, int err, const char *why, void *userdata)
{
        session *ss = userdata;

        ss->conn = NULL;
        if (err == 0)
                log_info("%s: session %s: connection closed", ss->peer, ss->id);
        else if (err == -ECONNRESET)
                log_info("%s: session %s: connection closed by the client", ss->peer, ss->id);
        else
                log_warning("%s: session %s: connection closed: %s", ss->peer, ss->id, why);
        if (!ss->working)
                session_teardown(ss);
}

/* --- the listener ------------------------------------------------------- */

static void refused_on_message(tp_conn *c, json_t *msg, const char *bad, void *userdata)
{
}

static void refused_on_close(tp_conn *c, int err, const char *why, void *userdata)
{
        tp_cvd_server *s = userdata;

        s->n_refused--;
        maybe_stopped(s);
}

static void refuse(tp_cvd_server *s, const tp_conn_opts *base)
{
        tp_conn_opts o = *base;
        tp_conn *c;
        char m[96];
        json_t *j;

        o.on_message = refused_on_message;
        o.on_close = refused_on_close;
        o.userdata = s;
        if (tp_conn_accept((uv_stream_t *)&s->listener, &o, &c) < 0)
                return;
        s->n_refused++;
        log_warning("%s: refused: already serving %u clients", tp_conn_peer(c), s->max_clients);
        snprintf(m, sizeof(m), "vbak-cvd serves at most %u clients", s->max_clients);
        j = tp_cvd_reply_error_new(0, TP_CVD_E_BUSY, m);
        if (j)
                tp_conn_send(c, j);
        json_decref(j);
        tp_conn_close(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
        tp_cvd_server *s = listener->data;
        tp_conn_opts o = { .tls = s->tls, .timeout_ms = (uint64_t)s->timeout_s * 1000 };
        uint8_t id[16];
        session *ss;
        json_t *j;
        int r;

        if (status < 0) {
                log_warning("accept failed: %s", uv_strerror(status));
                return;
        }
        if (s->n_sessions >= s->max_clients) {
                refuse(s, &o);
                return;
        }
        ss = calloc(1, sizeof(*ss));
        if (!ss || !(ss->queue = json_array()) || tp_cvd_nonce_new(ss->nonce) < 0 ||
            vb_random_bytes(id, sizeof(id)) < 0) {
                if (ss)
                        json_decref(ss->queue);
                free(ss);
                log_error("cannot accept a connection: out of memory");
                return;
        }
        for (size_t i = 0; i < sizeof(id); i++)
                snprintf(ss->id + 2 * i, 3, "%02x", id[i]);
        ss->s = s;
        o.on_message = session_on_message;
        o.on_close = session_on_close;
        o.userdata = ss;
        r = tp_conn_accept(listener, &o, &ss->conn);
        if (r < 0) {
                log_warning("cannot accept a connection: %s", strerror(-r));
                json_decref(ss->queue);
                free(ss);
                return;
        }
        snprintf(ss->peer, sizeof(ss->peer), "%s", tp_conn_peer(ss->conn));
        if (tp_conn_local_address(ss->conn, ss->local, sizeof(ss->local)) < 0)
                snprintf(ss->local, sizeof(ss->local), "127.0.0.1");
        ss->next = s->sessions;
        if (s->sessions)
                s->sessions->prev = ss;
        s->sessions = ss;
        s->n_sessions++;
        log_info("%s: session %s: connected%s", ss->peer, ss->id, s->tls ? " (TLS)" : "");
        j = tp_cvd_welcome_new(ss->nonce, s->token != NULL, s->credentials != NULL, s->tls != NULL);
        if (!j || tp_conn_send(ss->conn, j) < 0)
                tp_conn_close(ss->conn);
        json_decref(j);
}

static void server_free(tp_cvd_server *s)
{
        SSL_CTX_free(s->tls);
        free(s->token);
        free(s->credentials);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static void on_listener_closed(uv_handle_t *h)
{
        tp_cvd_server *s = h->data;

        s->listening = false;
        maybe_stopped(s);
}

static void maybe_stopped(tp_cvd_server *s)
{
        if (!s->stopping || s->listening || s->n_sessions > 0 || s->n_refused > 0)
                return;
        if (s->stop_done)
                s->stop_done(s->stop_userdata);
        server_free(s);
}

int tp_cvd_server_start(uv_loop_t *loop, const tp_cvd_server_opts *o, tp_cvd_server **ret, tp_cvd_why *why)
{
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        tp_cvd_server *s;
        int r;

        if (!loop || !o || !ret || !why)
                return -EINVAL;
        if (!o->cfg || o->cfg->n_image_dirs == 0) {
                snprintf(why->msg, sizeof(why->msg), "no image folders to serve");
                return -EINVAL;
        }
        if (!o->token && !o->credentials) {
                snprintf(why->msg, sizeof(why->msg), "no authentication configured (a token or credentials)");
                return -EINVAL;
        }
        if (uv_ip4_addr(o->listen_host, o->listen_port, (struct sockaddr_in *)&ss) < 0 &&
            uv_ip6_addr(o->listen_host, o->listen_port, (struct sockaddr_in6 *)&ss) < 0) {
                snprintf(why->msg, sizeof(why->msg), "'%.64s' is not an IPv4 or IPv6 address", o->listen_host);
                return -EINVAL;
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        s->loop = loop;
        s->cfg = o->cfg;
        s->max_clients = o->max_clients ? o->max_clients : TP_CVD_MAX_CLIENTS_DEFAULT;
        s->timeout_s = o->timeout_s ? o->timeout_s : TP_CVD_TIMEOUT_DEFAULT;
        if ((o->token && !(s->token = strdup(o->token))) ||
            (o->credentials && !(s->credentials = strdup(o->credentials)))) {
                server_free(s);
                return -ENOMEM;
        }
        if (o->tls) {
                SSL_CTX_up_ref(o->tls);
                s->tls = o->tls;
        }
        uv_tcp_init(loop, &s->listener);
        s->listener.data = s;
        s->listening = true;
        r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
        if (r == 0)
                r = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
        if (r == 0)
                r = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
        if (r < 0) {
                snprintf(why->msg, sizeof(why->msg), "cannot listen on %.64s:%u: %s", o->listen_host, o->listen_port,
                         uv_strerror(r));
                /* Freed from the close callback, which runs once the loop runs. */
                s->stopping = true;
                uv_close((uv_handle_t *)&s->listener, on_listener_closed);
                return r;
        }
        s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
        *ret = s;
        return 0;
}

uint16_t tp_cvd_server_port(const tp_cvd_server *s)
{
        return s->port;
}

void tp_cvd_server_stop(tp_cvd_server *s, void (*done)(void *userdata), void *userdata)
{
        if (!s || s->stopping)
                return;
        s->stopping = true;
        s->stop_done = done;
        s->stop_userdata = userdata;
        log_info("stopping: closing %u sessions", s->n_sessions);
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        for (session *ss = s->sessions; ss; ss = ss->next)
                if (ss->conn)
                        tp_conn_close(ss->conn);
}
