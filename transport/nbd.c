/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd.c -- the NBD data plane on the libuv loop (see nbd.h for the design).
 *
 * Three lists carry every request: the queue (not sent yet, in order), each
 * connection's in-flight list (sent, oldest first) and the completed list
 * (answered, filled by libnbd's callbacks, drained by the loop). A request
 * is a piece of a caller's operation (op) of at most one buffer size; the
 * op completes when its last request does.
 *
 * libnbd callbacks carry a ticket {request, connection, generation}: when a
 * connection is dropped its generation moves on, so a late callback from
 * the old libnbd handle can never touch a request that was re-sent since.
 */
#include "transport/nbd.h"

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "dedup/digest.h"
#include "transport/rate.h"

#define STATUS_STEP (1ull << 30) /* block status asked per request */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define PER_CONN_MAX 16 /* requests in flight on one connection */
#define SPARSE_BLOCK (64u << 10)

typedef enum op_kind {
        OP_READ,
        OP_WRITE,
        OP_ZERO,
        OP_FLUSH,
        OP_STATUS
} op_kind;

typedef struct op {
        op_kind kind;
        tp_nbd_done_fn done;
        void *userdata;
        unsigned pending; /* requests not finished */
        int r;
        /* block status */
        char *context;
        uint32_t mask, want;
        dd_extents *out;
        uint64_t covered; /* the map is complete below this offset */
} op;

typedef struct conn conn;

typedef struct req {
        struct req *prev, *next;
        op *op;
        uint64_t offset;
        uint32_t length;
        uint8_t *buf;
        conn *conn; /* while in flight or completed */
        unsigned gen;
        uint64_t sent_ns;
        bool charged;  /* rate limits already took its bytes */
        bool answered; /* libnbd called its completion (it is on the completed list) */
        int error;
} req;

typedef struct req_list {
        req *head, *tail;
        size_t n;
} req_list;

typedef enum conn_state {
        C_DOWN,
        C_CONNECTING,
        C_READY,
        C_CLOSED
} conn_state;

struct conn {
        tp_nbd *n;
        unsigned index;
        struct nbd_handle *h;
        uv_poll_t *poll;
        int events;
        conn_state state;
        unsigned gen;
        req_list inflight;
        uint64_t started_ns;    /* when the current connect began */
        uint64_t down_since_ns; /* first failure of the current outage; 0 when up */
        unsigned attempts;
        bool ever_ready;
        uv_timer_t retry;
        char error[256];
};

typedef struct ticket {
        req *r;
        conn *c;
        unsigned gen;
} ticket;

struct tp_nbd {
        uv_loop_t *loop;
        tp_nbd_opts o;
        char *uri;
        char *dirty_context;
        conn conns[TP_NBD_CONNECTIONS_MAX];
        unsigned n_conns;
        uint64_t size;
        bool has_alloc, has_dirty;

        req_list queue, completed;
        uint64_t inflight_bytes;
        const dd_extents *zeros;

        uv_timer_t kick;     /* runs the completed list on the next loop turn */
        uv_timer_t tick;     /* network timeouts */
        uv_timer_t throttle; /* rate limits */
        bool throttled;
        unsigned handles; /* uv handles still open, closed one by one at the end */

        tp_nbd_open_fn open_done;
        void *open_userdata;
        bool opened;
        bool reopening;
        int failed;
        bool closing;
        void (*close_done)(void *userdata);
        void *close_userdata;

        tp_nbd_stats stats;
        char error[512];
};

static _Thread_local char open_error[512];

/* --- lists --------------------------------------------------------------- */

static void list_push(req_list *l, req *r)
{
        r->next = NULL;
        r->prev = l->tail;
        if (l->tail)
                l->tail->next = r;
        else
                l->head = r;
        l->tail = r;
        l->n++;
}

static void list_push_front(req_list *l, req *r)
{
        r->prev = NULL;
        r->next = l->head;
        if (l->head)
                l->head->prev = r;
        else
                l->tail = r;
        l->head = r;
        l->n++;
}

static void list_remove(req_list *l, req *r)
{
        if (r->prev)
                r->prev->next = r->next;
        else
                l->head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                l->tail = r->prev;
        r->prev = r->next = NULL;
        l->n--;
}

static req *list_pop(req_list *l)
{
        req *r = l->head;

        if (r)
                list_remove(l, r);
        return r;
}

/* --- helpers ------------------------------------------------------------- */

static uint64_t now_ns(void)
{
        return vb_now_ns();
}

static void format_ms(uint64_t ms, char *buf, size_t size)
{
        if (ms >= 60000 && ms % 60000 == 0)
                snprintf(buf, size, "%" PRIu64 " min", ms / 60000);
        else if (ms >= 1000)
                snprintf(buf, size, "%.1f s", (double)ms / 1000);
        else
                snprintf(buf, size, "%" PRIu64 " ms", ms);
}

static void kick(tp_nbd *n);
static void dispatch(tp_nbd *n);
static void conn_connect(conn *c);
static void conn_lost(conn *c, const char *why);

/* --- operations ---------------------------------------------------------- */

static void op_finish_req(tp_nbd *n, req *r, int error)
{
        op *o = r->op;

        if (error != 0 && o->r == 0)
                o->r = -abs(error);
        free(r);
        if (--o->pending > 0)
                return;
        o->done(o->userdata, o->r);
        free(o->context);
        free(o);
}

static uint64_t req_bytes(const req *r)
{
        return r->op->kind == OP_READ || r->op->kind == OP_WRITE ? r->length : 0;
}

static op *op_new(op_kind kind, tp_nbd_done_fn done, void *userdata)
{
        op *o = calloc(1, sizeof(*o));

        if (!o)
                return NULL;
        o->kind = kind;
        o->done = done;
        o->userdata = userdata;
        o->pending = 1; /* the hold, dropped from the loop by op_start */
        return o;
}

/* Queues one request of o. */
static int op_add(tp_nbd *n, op *o, uint8_t *buf, uint64_t offset, uint64_t length)
{
        req *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->op = o;
        r->offset = offset;
        r->length = (uint32_t)length;
        r->buf = buf;
        o->pending++;
        list_push(&n->queue, r);
        return 0;
}

/* Sends what can go and drops the op's hold on the next loop turn, so done
 * never runs inside the call that started the operation. */
static void op_start(tp_nbd *n, op *o)
{
        req *hold = calloc(1, sizeof(*hold));

        if (hold) {
                hold->op = o;
                list_push(&n->completed, hold);
        } else {
                o->pending--; /* out of memory: the last request completes it */
                if (o->pending == 0) {
                        o->done(o->userdata, -ENOMEM);
                        free(o->context);
                        free(o);
                }
        }
        if (!n->failed)
                dispatch(n);
        kick(n);
}

/* Queues a read, write or zero as requests of at most the buffer size (a
 * zero-length one completes on the next loop turn). */
static int op_submit(tp_nbd *n, op_kind kind, uint8_t *buf, size_t len, uint64_t offset, tp_nbd_done_fn done,
                     void *userdata)
{
        size_t step = kind == OP_ZERO ? STATUS_STEP : n->o.request_size;
        op *o;

        if (!done)
                return -EINVAL;
        if (n->closing)
                return -ECANCELED;
        if (offset > n->size || len > n->size - offset)
                return -ERANGE;
        if (kind != OP_READ && !n->o.write)
                return -EROFS;
        o = op_new(kind, done, userdata);
        if (!o)
                return -ENOMEM;
        for (size_t at = 0; at < len; at += step) {
                int r = op_add(n, o, buf ? buf + at : NULL, offset + at, MIN(len - at, step));
                if (r < 0) {
                        o->r = r;
                        break;
                }
        }
        op_start(n, o);
        return 0;
}

/* Fails every queued request (the disk failed or is closing). */
static void fail_queue(tp_nbd *n, int error)
{
        req *r;

        while ((r = list_pop(&n->queue)))
                op_finish_req(n, r, error);
}

/* --- the completed list -------------------------------------------------- */

static int extent_cb(void *userdata, const char *context, uint64_t offset, uint32_t *entries, size_t nr, int *error)
{
        ticket *t = userdata;
        req *r = t->r;
        op *o;
        uint64_t pos = offset, size;

        if (t->gen != t->c->gen)
                return 0;
        o = r->op;
        size = t->c->n->size;
        if (!streq(context, o->context))
                return 0;
        for (size_t i = 0; i + 1 < nr; i += 2) {
                uint64_t from = MAX(pos, o->covered), to = MIN(pos + entries[i], size);

                if (from < to && (entries[i + 1] & o->mask) == o->want) {
                        dd_extent *last = o->out->n ? &o->out->v[o->out->n - 1] : NULL;

                        if (last && last->offset + last->length == from)
                                last->length += to - from;
                        else if (dd_extents_add(o->out, from, to - from) < 0) {
                                *error = ENOMEM;
                                return -1;
                        }
                }
                pos += entries[i];
        }
        o->covered = MAX(o->covered, MIN(pos, size));
        return 0;
}

static int complete_cb(void *userdata, int *error)
{
        ticket *t = userdata;
        conn *c = t->c;
        req *r = t->r;

        if (t->gen != c->gen)
                return 1; /* the request was taken back when the connection dropped */
        r->error = *error;
        r->answered = true;
        list_remove(&c->inflight, r);
        list_push(&c->n->completed, r);
        return 1;
}

/* Acts on answered requests: finish them, or send them again when their
 * connection dropped under them. */
static void run_completed(tp_nbd *n)
{
        req *r;

        while ((r = list_pop(&n->completed))) {
                conn *c = r->conn;
                op *o = r->op;

                if (!c) { /* an op's hold */
                        op_finish_req(n, r, r->error);
                        continue;
                }
                n->inflight_bytes -= req_bytes(r);
                r->conn = NULL;
                /* The connection may have died in a call we made since (a
                 * send in dispatch): notice it before judging the answer. */
                if (r->error != 0 && r->gen == c->gen && c->state == C_READY && c->h &&
                    (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h)))
                        conn_lost(c, nbd_get_error() ? nbd_get_error() : "connection lost");
                if (r->error != 0 && (r->gen != c->gen || c->state != C_READY) && !n->failed) {
                        r->charged = false;
                        if (o->kind == OP_READ || o->kind == OP_WRITE)
                                n->stats.bytes_resent += r->length;
                        list_push_front(&n->queue, r);
                        continue;
                }
                if (r->error == 0) {
                        if (o->kind == OP_READ)
                                n->stats.bytes_read += r->length;
                        else if (o->kind == OP_WRITE)
                                n->stats.bytes_written += r->length;
                        if (o->kind == OP_STATUS && o->covered < n->size) {
                                if (o->covered <= r->offset) {
                                        op_finish_req(n, r, EPROTO); /* the server's answer made no progress */
                                        continue;
                                }
                                r->offset = o->covered;
                                r->length = (uint32_t)MIN(n->size - o->covered, STATUS_STEP);
                                list_push(&n->queue, r);
                                continue;
                        }
                } else if (n->failed == 0 && !n->closing) {
                        snprintf(n->error, sizeof(n->error),
                                 "%s: the server failed a request at offset %" PRIu64 ": %s", n->uri, r->offset,
                                 strerror(r->error));
                }
                op_finish_req(n, r, r->error);
        }
}

static void kick_cb(uv_timer_t *timer)
{
        tp_nbd *n = timer->data;

        run_completed(n);
        if (n->failed || n->closing)
                fail_queue(n, n->failed ? n->failed : -ECANCELED);
        else
                dispatch(n);
}

static void kick(tp_nbd *n)
{
        uv_timer_start(&n->kick, kick_cb, 0, 0);
}

/* --- connections --------------------------------------------------------- */

static void conn_update_poll(conn *c);

static void poll_closed(uv_handle_t *h)
{
        free(h);
}

/* Drops the libnbd handle and its poll; requests in flight go back to the
 * head of the queue in their order. */
static void conn_drop(conn *c)
{
        tp_nbd *n = c->n;
        req *r;

        c->gen++;
        while ((r = c->inflight.tail)) {
                list_remove(&c->inflight, r);
                n->inflight_bytes -= req_bytes(r);
                r->conn = NULL;
                r->charged = false;
                if (r->op->kind == OP_READ || r->op->kind == OP_WRITE)
                        n->stats.bytes_resent += r->length;
                list_push_front(&n->queue, r);
        }
        if (c->poll) {
                uv_poll_stop(c->poll);
                uv_close((uv_handle_t *)c->poll, poll_closed);
                c->poll = NULL;
        }
        if (c->h) {
                nbd_close(c->h);
                c->h = NULL;
        }
        c->events = 0;
}

static void fail_disk(tp_nbd *n, int r, const char *fmt, ...) _printf_(3, 4);

static void fail_disk(tp_nbd *n, int r, const char *fmt, ...)
{
        va_list ap;

        if (n->failed)
                return;
        va_start(ap, fmt);
        vsnprintf(n->error, sizeof(n->error), fmt, ap);
        va_end(ap);
        log_error("%s", n->error);
        n->failed = r;
        if (!n->opened) {
                snprintf(open_error, sizeof(open_error), "%s", n->error);
                n->opened = true;
                n->open_done(n->open_userdata, r, NULL);
                tp_nbd_close(n, NULL, NULL);
                return;
        }
        for (unsigned i = 0; i < n->n_conns; i++) {
                conn *c = &n->conns[i];

                uv_timer_stop(&c->retry);
                conn_drop(c);
                c->state = C_CLOSED;
        }
        kick(n); /* fails the queue from the loop */
}

static void retry_cb(uv_timer_t *timer);

static void schedule_retry(conn *c)
{
        uint64_t ms = RETRY_MIN_MS << MIN(c->attempts, 6u);

        uv_timer_start(&c->retry, retry_cb, MIN(ms, (uint64_t)RETRY_MAX_MS), 0);
}

static void reopen_done(tp_nbd *n, int r, const char *uri)
{
        n->reopening = false;
        if (n->failed || n->closing)
                return;
        if (r >= 0 && uri && !streq(uri, n->uri)) {
                char *u = strdup(uri);

                if (u) {
                        log_info("%s: the disk service re-opened the disk at %s", n->uri, u);
                        free(n->uri);
                        n->uri = u;
                }
        }
        /* Try every connection that is down right away with the new address. */
        for (unsigned i = 0; i < n->n_conns; i++)
                if (n->conns[i].state == C_DOWN)
                        uv_timer_start(&n->conns[i].retry, retry_cb, 0, 0);
}

/* The connection could not be (re-)established. */
static void conn_connect_failed(conn *c, const char *why)
{
        tp_nbd *n = c->n;

        snprintf(c->error, sizeof(c->error), "%s", why);
        conn_drop(c);
        c->state = C_DOWN;
        if (!c->ever_ready) {
                /* At the start nothing is retried: say why and stop. */
                c->state = C_CLOSED;
                if (!n->opened) {
                        bool any = false;

                        for (unsigned i = 0; i < n->n_conns; i++)
                                any |= n->conns[i].state != C_CLOSED;
                        if (!any) {
                                snprintf(open_error, sizeof(open_error), "%s: %s", n->uri, why);
                                n->opened = true;
                                n->open_done(n->open_userdata, -ECONNREFUSED, NULL);
                                tp_nbd_close(n, NULL, NULL);
                        }
                }
                return;
        }
        c->attempts++;
        if (n->o.reopen && !n->reopening && c->attempts >= 2) {
                n->reopening = true;
                n->o.reopen(n->o.reopen_userdata, n, reopen_done);
        }
        schedule_retry(c);
}

static void conn_ready(conn *c)
{
        tp_nbd *n = c->n;
        int64_t size = nbd_get_size(c->h);

        if (size < 0) {
                conn_connect_failed(c, nbd_get_error());
                return;
        }
        if (n->o.write && nbd_is_read_only(c->h) == 1) {
                fail_disk(n, -EROFS, "%s: the export is read-only; a restore needs a writable one", n->uri);
                return;
        }
        if (!n->opened) {
                n->size = (uint64_t)size;
                n->has_alloc = nbd_can_meta_context(c->h, TP_CONTEXT_ALLOCATION) == 1;
                n->has_dirty = n->dirty_context && nbd_can_meta_context(c->h, n->dirty_context) == 1;
        } else if ((uint64_t)size != n->size) {
                fail_disk(n, -ESTALE, "%s: the disk's size changed from %" PRIu64 " to %" PRId64 " bytes on reconnect",
                          n->uri, n->size, size);
                return;
        }
        if (c->ever_ready) {
                n->stats.reconnects++;
                log_info("%s: connection %u re-established after %.1f s", n->uri, c->index,
                         (double)(now_ns() - c->down_since_ns) / 1e9);
        }
        c->state = C_READY;
        c->ever_ready = true;
        c->down_since_ns = 0;
        c->attempts = 0;
        if (!n->opened) {
                n->opened = true;
                n->open_done(n->open_userdata, 0, n);
        }
}

/* After libnbd ran: notice state changes, act on answers, send more. */
static void conn_after_io(conn *c)
{
        tp_nbd *n = c->n;

        if (c->h) {
                if (c->state == C_CONNECTING) {
                        if (nbd_aio_is_ready(c->h))
                                conn_ready(c);
                        else if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))
                                conn_connect_failed(c, nbd_get_error() ? nbd_get_error() : "connection failed");
                } else if (c->state == C_READY && (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))) {
                        conn_lost(c, nbd_get_error() ? nbd_get_error() : "connection closed by the server");
                }
        }
        run_completed(n);
        if (n->failed || n->closing) {
                fail_queue(n, n->failed ? n->failed : -ECANCELED);
                return;
        }
        dispatch(n);
        if (c->h)
                conn_update_poll(c);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
        conn *c = p->data;
        int r = 0;

        if (status < 0) {
                char why[128];

                snprintf(why, sizeof(why), "socket error: %s", uv_strerror(status));
                if (c->state == C_CONNECTING)
                        conn_connect_failed(c, why);
                else
                        conn_lost(c, why);
                conn_after_io(c);
                return;
        }
        if (events & UV_READABLE)
                r = nbd_aio_notify_read(c->h);
        if (r >= 0 && (events & UV_WRITABLE) && c->h)
                r = nbd_aio_notify_write(c->h);
        conn_after_io(c);
}

static void conn_update_poll(conn *c)
{
        unsigned dir;
        int events = 0, fd;

        if (!c->h)
                return;
        dir = nbd_aio_get_direction(c->h);
        if (dir & LIBNBD_AIO_DIRECTION_READ)
                events |= UV_READABLE;
        if (dir & LIBNBD_AIO_DIRECTION_WRITE)
                events |= UV_WRITABLE;
        if (c->state == C_READY)
                events |= UV_READABLE; /* notice a server that hangs up while we are idle */
        if (!c->poll) {
                fd = nbd_aio_get_fd(c->h);
                if (fd < 0)
                        return;
                c->poll = malloc(sizeof(*c->poll));
                if (!c->poll || uv_poll_init(c->n->loop, c->poll, fd) < 0) {
                        free(c->poll);
                        c->poll = NULL;
                        conn_lost(c, "cannot watch the socket");
                        return;
                }
                c->poll->data = c;
                c->events = 0;
        }
        if (events != c->events) {
                uv_poll_start(c->poll, events, poll_cb);
                c->events = events;
        }
}

static void conn_lost(conn *c, const char *why)
{
        tp_nbd *n = c->n;
        char window[32];

        if (c->state != C_READY && c->state != C_CONNECTING)
                return;
        snprintf(c->error, sizeof(c->error), "%s", why);
        if (c->state == C_READY) {
                n->stats.cuts++;
                if (!c->down_since_ns)
                        c->down_since_ns = now_ns();
                format_ms(n->o.reconnect_window_ms, window, sizeof(window));
                log_warning("%s: connection %u lost (%s); unanswered requests will be sent again; reconnecting for up "
                            "to %s",
                            n->uri, c->index, why, window);
        }
        conn_drop(c);
        c->state = C_DOWN;
        schedule_retry(c);
}

static void conn_connect(conn *c)
{
        tp_nbd *n = c->n;

        c->h = nbd_create();
        if (!c->h || nbd_set_pread_initialize(c->h, false) < 0 ||
            nbd_add_meta_context(c->h, TP_CONTEXT_ALLOCATION) < 0 ||
            (n->dirty_context && nbd_add_meta_context(c->h, n->dirty_context) < 0)) {
                conn_connect_failed(c, nbd_get_error() ? nbd_get_error() : "out of memory");
                return;
        }
        c->gen++;
        c->state = C_CONNECTING;
        c->started_ns = now_ns();
        if (nbd_aio_connect_uri(c->h, n->uri) < 0) {
                conn_connect_failed(c, nbd_get_error());
                return;
        }
        conn_after_io(c);
}

static void retry_cb(uv_timer_t *timer)
{
        conn *c = timer->data;
        tp_nbd *n = c->n;
        char window[32];

        if (c->state != C_DOWN || n->failed || n->closing)
                return;
        if (c->down_since_ns && now_ns() - c->down_since_ns > n->o.reconnect_window_ms * 1000000ull) {
                format_ms(n->o.reconnect_window_ms, window, sizeof(window));
                fail_disk(n, -ETIMEDOUT, "%s: the connection stayed down longer than the reconnect window (%s): %s",
                          n->uri, window, c->error);
                return;
        }
        conn_connect(c);
}

/* Network timeout: a connection whose oldest request waits too long, or
 * that takes too long to connect, is treated as lost. */
static void tick_cb(uv_timer_t *timer)
{
        tp_nbd *n = timer->data;
        uint64_t now = now_ns(), limit = n->o.timeout_ms * 1000000ull;

        for (unsigned i = 0; i < n->n_conns; i++) {
                conn *c = &n->conns[i];
                char why[96], t[32];

                format_ms(n->o.timeout_ms, t, sizeof(t));
                if (c->state == C_READY && c->inflight.head && now - c->inflight.head->sent_ns > limit) {
                        snprintf(why, sizeof(why), "no answer within the network timeout (%s)", t);
                        conn_lost(c, why);
                        conn_after_io(c);
                } else if (c->state == C_CONNECTING && now - c->started_ns > limit) {
                        snprintf(why, sizeof(why), "no connection within the network timeout (%s)", t);
                        conn_connect_failed(c, why);
                }
        }
}

/* --- sending ------------------------------------------------------------- */

static int send_req(conn *c, req *r)
{
        ticket *t = malloc(sizeof(*t));
        nbd_completion_callback cb;
        op *o = r->op;
        int64_t cookie;

        if (!t)
                return -ENOMEM;
        *t = (ticket){ r, c, c->gen };
        cb = (nbd_completion_callback){ .callback = complete_cb, .user_data = t, .free = free };
        r->conn = c;
        r->gen = c->gen;
        r->error = 0;
        r->answered = false;
        r->sent_ns = now_ns();
        list_push(&c->inflight, r);
        c->n->inflight_bytes += req_bytes(r);
        switch (o->kind) {
        case OP_READ:
                cookie = nbd_aio_pread(c->h, r->buf, r->length, r->offset, cb, 0);
                break;
        case OP_WRITE:
                cookie = nbd_aio_pwrite(c->h, r->buf, r->length, r->offset, cb, 0);
                break;
        case OP_ZERO:
                /* NO_HOLE: a preallocated volume stays allocated. */
                cookie = nbd_aio_zero(c->h, r->length, r->offset, cb,
                                      c->n->o.keep_allocation ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
                break;
        case OP_FLUSH:
                cookie = nbd_aio_flush(c->h, cb, 0);
                break;
        case OP_STATUS: {
                ticket *et = malloc(sizeof(*et));
                nbd_extent_callback ecb;

                if (!et) {
                        cookie = -1;
                        break;
                }
                *et = *t;
                ecb = (nbd_extent_callback){ .callback = extent_cb, .user_data = et, .free = free };
                cookie = nbd_aio_block_status(c->h, r->length, r->offset, ecb, cb, 0);
                break;
        }
        default:
                cookie = -1;
        }
        if (cookie < 0) {
                /* The connection died inside the call: libnbd may have
                 * answered the request already (it is then on the completed
                 * list, and goes back to the queue from there). */
                if (r->answered)
                        return -ECONNRESET;
                list_remove(&c->inflight, r);
                c->n->inflight_bytes -= req_bytes(r);
                r->conn = NULL;
                return -EIO;
        }
        c->n->stats.requests++;
        return 0;
}

static void throttle_cb(uv_timer_t *timer)
{
        tp_nbd *n = timer->data;

        n->throttled = false;
        dispatch(n);
}

/* Rate limits: takes the request's bytes from both buckets; returns the
 * milliseconds to wait before it may go. */
static uint64_t charge(tp_nbd *n, req *r)
{
        uint64_t wait = 0, bytes = r->op->kind == OP_READ || r->op->kind == OP_WRITE ? r->length : 0;
        uint64_t now = now_ns();
        time_t wall = time(NULL);

        if (r->charged || bytes == 0)
                return 0;
        r->charged = true;
        /* Both buckets take the bytes; the longer wait wins. (Not through
         * MAX(): it would evaluate a take twice.) */
        if (n->o.transfer)
                wait = tp_bucket_take(n->o.transfer, bytes, now, wall);
        if (n->o.disk) {
                uint64_t w = tp_bucket_take(n->o.disk, bytes, now, wall);
                wait = MAX(wait, w);
        }
        return DIV_ROUND_UP(wait, 1000000ull);
}

static conn *pick_conn(tp_nbd *n)
{
        conn *best = NULL;

        for (unsigned i = 0; i < n->n_conns; i++) {
                conn *c = &n->conns[i];

                if (c->state != C_READY || c->inflight.n >= PER_CONN_MAX)
                        continue;
                if (!best || c->inflight.n < best->inflight.n)
                        best = c;
        }
        return best;
}

static void dispatch(tp_nbd *n)
{
        bool sent[TP_NBD_CONNECTIONS_MAX] = { false };

        while (!n->throttled && !n->failed && !n->closing && n->queue.head) {
                req *r = n->queue.head;
                conn *c;
                uint64_t wait;

                /* The resume buffer bounds what is in flight (and so what a
                 * cut can make us read again); one request always may go. */
                if (n->inflight_bytes > 0 && n->inflight_bytes + req_bytes(r) > n->o.resume_buffer)
                        break;
                c = pick_conn(n);
                if (!c)
                        break;
                wait = charge(n, r);
                if (wait > 0) {
                        n->throttled = true;
                        uv_timer_start(&n->throttle, throttle_cb, wait, 0);
                        break;
                }
                list_remove(&n->queue, r);
                if (send_req(c, r) < 0) {
                        /* The handle refused the command: it is unusable. */
                        if (!r->answered)
                                list_push_front(&n->queue, r);
                        conn_lost(c, nbd_get_error() ? nbd_get_error() : "cannot send");
                        continue;
                }
                sent[c->index] = true;
        }
        for (unsigned i = 0; i < n->n_conns; i++)
                if (sent[i])
                        conn_update_poll(&n->conns[i]);
}

/* --- public -------------------------------------------------------------- */

int tp_nbd_open(uv_loop_t *loop, const tp_nbd_opts *o, tp_nbd_open_fn done, void *userdata)
{
        tp_nbd *n;

        if (!loop || !o || !o->uri || !done)
                return -EINVAL;
        if (o->connections > TP_NBD_CONNECTIONS_MAX ||
            (o->request_size && (o->request_size < TP_NBD_REQUEST_MIN || o->request_size > TP_NBD_REQUEST_MAX ||
                                 (o->request_size & (o->request_size - 1)))))
                return -EINVAL;
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->loop = loop;
        n->o = *o;
        n->o.connections = o->connections ? o->connections : 1;
        n->o.request_size = o->request_size ? o->request_size : TP_NBD_REQUEST_DEFAULT;
        n->o.resume_buffer =
                MAX(o->resume_buffer ? o->resume_buffer : TP_NBD_RESUME_BUFFER_DEFAULT, (uint64_t)n->o.request_size);
        n->o.reconnect_window_ms = o->reconnect_window_ms ? o->reconnect_window_ms : TP_NBD_RECONNECT_WINDOW_DEFAULT_MS;
        n->o.timeout_ms = o->timeout_ms ? o->timeout_ms : TP_NBD_TIMEOUT_DEFAULT_MS;
        n->uri = strdup(o->uri);
        n->dirty_context = o->dirty_context ? strdup(o->dirty_context) : NULL;
        if (!n->uri || (o->dirty_context && !n->dirty_context)) {
                free(n->uri);
                free(n->dirty_context);
                free(n);
                return -ENOMEM;
        }
        n->o.uri = n->uri;
        n->o.dirty_context = n->dirty_context;
        n->open_done = done;
        n->open_userdata = userdata;
        n->n_conns = n->o.connections;
        uv_timer_init(loop, &n->kick);
        uv_timer_init(loop, &n->tick);
        uv_timer_init(loop, &n->throttle);
        n->kick.data = n->tick.data = n->throttle.data = n;
        n->handles = 3;
        for (unsigned i = 0; i < n->n_conns; i++) {
                conn *c = &n->conns[i];

                c->n = n;
                c->index = i;
                uv_timer_init(loop, &c->retry);
                c->retry.data = c;
                n->handles++;
        }
        uv_timer_start(&n->tick, tick_cb, MIN(1000, MAX(n->o.timeout_ms / 4, 50)),
                       MIN(1000, MAX(n->o.timeout_ms / 4, 50)));
        for (unsigned i = 0; i < n->n_conns; i++)
                uv_timer_start(&n->conns[i].retry, retry_cb, 0, 0); /* connects from the loop */
        return 0;
}

const char *tp_nbd_open_error(void)
{
        return open_error;
}

uint64_t tp_nbd_size(const tp_nbd *n)
{
        return n->size;
}

bool tp_nbd_has_context(const tp_nbd *n, const char *context)
{
        if (streq(context, TP_CONTEXT_ALLOCATION))
                return n->has_alloc;
        return n->has_dirty && streq_ptr(context, n->dirty_context);
}

const char *tp_nbd_uri(const tp_nbd *n)
{
        return n->uri;
}

const tp_nbd_stats *tp_nbd_get_stats(const tp_nbd *n)
{
        return &n->stats;
}

const char *tp_nbd_error_message(const tp_nbd *n)
{
        return n->error[0] ? n->error : NULL;
}

int tp_nbd_map(tp_nbd *n, const char *context, uint32_t mask, uint32_t want, dd_extents *ret, tp_nbd_done_fn done,
               void *userdata)
{
        op *o;

        if (!context || !ret || !done)
                return -EINVAL;
        if (n->closing)
                return -ECANCELED;
        if (!tp_nbd_has_context(n, context))
                return -EOPNOTSUPP;
        o = op_new(OP_STATUS, done, userdata);
        if (!o)
                return -ENOMEM;
        o->context = strdup(context);
        o->mask = mask;
        o->want = want;
        o->out = ret;
        /* One request at a time: run_completed asks for the next range. */
        if (!o->context)
                o->r = -ENOMEM;
        else if (n->size > 0)
                o->r = op_add(n, o, NULL, 0, MIN(n->size, STATUS_STEP));
        op_start(n, o);
        return 0;
}

int tp_nbd_pread(tp_nbd *n, void *buf, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata)
{
        return op_submit(n, OP_READ, buf, len, offset, done, userdata);
}

int tp_nbd_pwrite(tp_nbd *n, const void *buf, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata)
{
        return op_submit(n, OP_WRITE, (uint8_t *)buf, len, offset, done, userdata);
}

int tp_nbd_zero(tp_nbd *n, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata)
{
        return op_submit(n, OP_ZERO, NULL, len, offset, done, userdata);
}

int tp_nbd_flush(tp_nbd *n, tp_nbd_done_fn done, void *userdata)
{
        op *o;
        int r;

        if (!done)
                return -EINVAL;
        if (n->closing)
                return -ECANCELED;
        if (!n->o.write)
                return -EROFS;
        o = op_new(OP_FLUSH, done, userdata);
        if (!o)
                return -ENOMEM;
        r = op_add(n, o, NULL, 0, 0);
        if (r < 0)
                o->r = r;
        op_start(n, o);
        return 0;
}

static void handle_closed(uv_handle_t *h)
{
        tp_nbd *n = h->data;

        if (--n->handles > 0)
                return;
        if (n->close_done)
                n->close_done(n->close_userdata);
        free(n->uri);
        free(n->dirty_context);
        free(n);
}

void tp_nbd_close(tp_nbd *n, void (*done)(void *userdata), void *userdata)
{
        if (!n || n->closing)
                return;
        n->closing = true;
        n->close_done = done;
        n->close_userdata = userdata;
        for (unsigned i = 0; i < n->n_conns; i++) {
                conn *c = &n->conns[i];

                if (c->h && c->state == C_READY)
                        nbd_aio_disconnect(c->h, 0);
                conn_drop(c);
                c->state = C_CLOSED;
        }
        /* Requests taken back from the connections and queued ones fail now;
         * answers already in complete as they are. */
        run_completed(n);
        fail_queue(n, -ECANCELED);
        uv_close((uv_handle_t *)&n->kick, handle_closed);
        uv_close((uv_handle_t *)&n->tick, handle_closed);
        uv_close((uv_handle_t *)&n->throttle, handle_closed);
        for (unsigned i = 0; i < n->n_conns; i++) {
                n->conns[i].retry.data = n; /* handle_closed finds the disk the same way for every handle */
                uv_close((uv_handle_t *)&n->conns[i].retry, handle_closed);
        }
}

/* --- the pipeline's source and target ------------------------------------ */

typedef struct io_ctx {
        sp_io_done_fn done;
        void *cb_data;
        unsigned pending;
        int r;
} io_ctx;

static void io_piece_done(void *userdata, int r)
{
        io_ctx *x = userdata;

        if (r < 0 && x->r == 0)
                x->r = r;
        if (--x->pending > 0)
                return;
        x->done(x->cb_data, x->r);
        free(x);
}

/* Runs a read or write as pieces: ranges known to be zero (reads) or all
 * zero (writes) are not sent as data. The +1 hold makes completion always
 * come from the loop. */
static int source_read(void *userdata, uint64_t offset, void *buf, size_t len, sp_io_done_fn done, void *cb_data)
{
        tp_nbd *n = userdata;
        io_ctx *x = calloc(1, sizeof(*x));
        uint64_t pos = offset, end = offset + len;
        int r = 0;

        if (!x)
                return -ENOMEM;
        x->done = done;
        x->cb_data = cb_data;
        x->pending = 1;
        if (n->zeros) {
                const dd_extents *z = n->zeros;
                size_t lo = 0, hi = z->n;

                /* First zero extent that ends after pos. */
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (z->v[mid].offset + z->v[mid].length <= pos)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (size_t i = lo; i < z->n && pos < end && r >= 0; i++) {
                        uint64_t zs = MAX(z->v[i].offset, pos), ze = MIN(z->v[i].offset + z->v[i].length, end);

                        if (zs >= end)
                                break;
                        if (pos < zs) {
                                x->pending++;
                                r = tp_nbd_pread(n, (uint8_t *)buf + (pos - offset), zs - pos, pos, io_piece_done, x);
                                if (r < 0)
                                        x->pending--;
                        }
                        if (zs < ze)
                                memset((uint8_t *)buf + (zs - offset), 0, ze - zs);
                        pos = MAX(pos, ze);
                }
        }
        if (pos < end && r >= 0) {
                x->pending++;
                r = tp_nbd_pread(n, (uint8_t *)buf + (pos - offset), end - pos, pos, io_piece_done, x);
                if (r < 0)
                        x->pending--;
        }
        if (r < 0 && x->pending == 1) {
                free(x);
                return r;
        }
        if (r < 0)
                x->r = r;
        /* Drop the hold on the next loop turn through a zero-length read. */
        r = tp_nbd_pread(n, buf, 0, offset, io_piece_done, x);
        if (r < 0)
                io_piece_done(x, r); /* other pieces are pending: this does not complete */
        return 0;
}

static int target_write(void *userdata, uint64_t offset, const void *buf, size_t len, sp_io_done_fn done, void *cb_data)
{
        tp_nbd *n = userdata;
        const uint8_t *p = buf;
        io_ctx *x = calloc(1, sizeof(*x));
        int r = 0;

        if (!x)
                return -ENOMEM;
        x->done = done;
        x->cb_data = cb_data;
        x->pending = 1;
        /* Runs of all-zero 64 KiB blocks go as write-zeroes: thin targets stay thin. */
        for (size_t at = 0; at < len && r >= 0;) {
                size_t m = MIN(SPARSE_BLOCK, len - at), run = m;
                bool zero = dd_is_zero(p + at, m);

                while (at + run < len) {
                        size_t k = MIN(SPARSE_BLOCK, len - at - run);
                        if (dd_is_zero(p + at + run, k) != zero)
                                break;
                        run += k;
                }
                x->pending++;
                r = zero ? tp_nbd_zero(n, run, offset + at, io_piece_done, x)
                         : tp_nbd_pwrite(n, p + at, run, offset + at, io_piece_done, x);
                if (r < 0)
                        x->pending--;
                at += run;
        }
        if (r < 0 && x->pending == 1) {
                free(x);
                return r;
        }
        if (r < 0)
                x->r = r;
        r = tp_nbd_pread(n, NULL, 0, offset, io_piece_done, x);
        if (r < 0)
                io_piece_done(x, r);
        return 0;
}

static int target_zero(void *userdata, uint64_t offset, size_t len, sp_io_done_fn done, void *cb_data)
{
        return tp_nbd_zero(userdata, len, offset, done, cb_data);
}

static int target_flush(void *userdata, sp_io_done_fn done, void *cb_data)
{
        return tp_nbd_flush(userdata, done, cb_data);
}

void tp_nbd_source(tp_nbd *n, const dd_extents *zeros, sp_source *ret)
{
        n->zeros = zeros;
        *ret = (sp_source){ .read_async = source_read, .userdata = n };
}

void tp_nbd_target(tp_nbd *n, sp_target *ret)
{
        *ret = (sp_target){
                .write_async = target_write, .zero_async = target_zero, .flush_async = target_flush, .userdata = n
        };
}
