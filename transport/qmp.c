/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp.c -- the blocking QMP client (see qmp.h).
 *
 * The socket is non-blocking and every read or write waits in poll() for at
 * most what is left of the operation's deadline, so a QEMU that stops
 * answering costs a timeout, never a hung worker thread. Each command
 * carries an "id"; its answer is the first message with that id, anything
 * else (events, stray answers) is skipped.
 */
#include "transport/qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "daemon/log.h"

#define QMP_LINE_MAX (64u << 20) /* query-named-block-nodes of a big VM stays far below */

struct tp_qmp {
        int fd;
        char *buf; /* received bytes not yet consumed */
        size_t len, alloc;
        unsigned timeout_ms;
        uint64_t next_id;
        pid_t peer;
        bool broken; /* a transport error happened: the stream position is unknown */
};

static const char *strna(const char *s)
{
        return s ? s : "n/a";
}

static uint64_t deadline_after(unsigned timeout_ms)
{
        return vb_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* Milliseconds left until deadline for poll(), at least 0. */
static int ms_left(uint64_t deadline)
{
        uint64_t now = vb_now_ns();

        if (now >= deadline)
                return 0;
        return (int)MIN((deadline - now + 999999u) / 1000000u, (uint64_t)INT32_MAX);
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
        struct pollfd p = { .fd = fd, .events = events };

        for (;;) {
                int n = poll(&p, 1, ms_left(deadline));

                if (n > 0)
                        return 0;
                if (n == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

static int send_all(tp_qmp *q, const char *data, size_t len, uint64_t deadline)
{
        while (len > 0) {
                ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        int r = wait_fd(q->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                data += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Reads the next non-empty line and parses it as a JSON object. */
static int read_message(tp_qmp *q, uint64_t deadline, json_t **ret)
{
        for (;;) {
                char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;

                if (nl) {
                        size_t line = (size_t)(nl - q->buf);
                        json_t *j = NULL;

                        if (strspn(q->buf, " \t\r") < line) {
                                json_error_t e;
                                j = json_loadb(q->buf, line, JSON_DISABLE_EOF_CHECK, &e);
                                if (!j || !json_is_object(j)) {
                                        log_debug("QMP: unparsable message: %s", j ? "not an object" : e.text);
                                        json_decref(j);
                                        return -EPROTO;
                                }
                        }
                        q->len -= line + 1;
                        memmove(q->buf, nl + 1, q->len);
                        if (j) {
                                *ret = j;
                                return 0;
                        }
                        continue;
                }
                if (q->len == q->alloc) {
                        size_t n = q->alloc ? q->alloc * 2 : 16384;
                        char *p;

                        if (n > QMP_LINE_MAX)
                                return -EPROTO;
                        p = realloc(q->buf, n);
                        if (!p)
                                return -ENOMEM;
                        q->buf = p;
                        q->alloc = n;
                }
                ssize_t n = recv(q->fd, q->buf + q->len, q->alloc - q->len, 0);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        int r = wait_fd(q->fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                q->len += (size_t)n;
        }
}

static char *describe_transport_error(int r)
{
        char *s = NULL;

        if (r == -ETIMEDOUT)
                s = strdup("QEMU did not answer on its QMP socket in time");
        else if (r == -ECONNRESET || r == -EPIPE)
                s = strdup("QEMU closed its QMP socket");
        else if (r == -EPROTO)
                s = strdup("QEMU sent a malformed QMP message");
        else if (asprintf(&s, "QMP socket: %s", strerror(-r)) < 0)
                s = NULL;
        return s;
}

void tp_qmp_set_timeout(tp_qmp *q, unsigned timeout_ms)
{
        if (q)
                q->timeout_ms = timeout_ms;
}

int tp_qmp_execute(tp_qmp *q, const char *command, json_t *arguments, json_t **ret, char **ret_class, char **ret_desc)
{
        _cleanup_free_ char *text = NULL;
        uint64_t deadline, id;
        json_t *msg;
        int r;

        if (ret_class)
                *ret_class = NULL;
        if (ret_desc)
                *ret_desc = NULL;
        if (!q || !command)
                return -EINVAL;
        if (q->broken) {
                r = -ECONNRESET;
                goto transport_error;
        }
        id = q->next_id++;
        msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)id);
        if (!msg)
                return -ENOMEM;
        if (arguments && json_object_set(msg, "arguments", arguments) < 0) {
                json_decref(msg);
                return -ENOMEM;
        }
        text = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!text)
                return -ENOMEM;
        log_debug("QMP -> %s", text);

        deadline = deadline_after(q->timeout_ms);
        r = send_all(q, text, strlen(text), deadline);
        if (r >= 0)
                r = send_all(q, "\n", 1, deadline);
        if (r < 0)
                goto transport_error;

        for (;;) {
                json_t *m = NULL, *jid, *err, *val;

                r = read_message(q, deadline, &m);
                if (r < 0)
                        goto transport_error;
                if (json_object_get(m, "event")) {
                        log_debug("QMP <- event %s", json_string_value(json_object_get(m, "event")));
                        json_decref(m);
                        continue;
                }
                jid = json_object_get(m, "id");
                err = json_object_get(m, "error");
                /* QEMU answers input it could not parse with an error
                 * without id; anything else without our id is stale. */
                if (jid ? !json_is_integer(jid) || (uint64_t)json_integer_value(jid) != id : !err) {
                        json_decref(m);
                        continue;
                }
                if (err) {
                        const char *cls = json_string_value(json_object_get(err, "class"));
                        const char *desc = json_string_value(json_object_get(err, "desc"));

                        log_debug("QMP <- error %s: %s", strna(cls), strna(desc));
                        if (ret_class && !(*ret_class = strdup(cls ? cls : "GenericError")))
                                r = -ENOMEM;
                        if (ret_desc && !(*ret_desc = strdup(desc ? desc : "unknown QEMU error")))
                                r = -ENOMEM;
                        json_decref(m);
                        if (r < 0) {
                                if (ret_class) {
                                        free(*ret_class);
                                        *ret_class = NULL;
                                }
                                return r;
                        }
                        return -EREMOTEIO;
                }
                val = json_object_get(m, "return");
                if (!val) {
                        json_decref(m);
                        r = -EPROTO;
                        goto transport_error;
                }
                if (ret)
                        *ret = json_incref(val);
                json_decref(m);
                return 0;
        }

transport_error:
        q->broken = true;
        log_debug("QMP %s: %s", command, strerror(-r));
        if (ret_desc)
                *ret_desc = describe_transport_error(r);
        return r;
}

int tp_qmp_connect(const char *path, unsigned timeout_ms, tp_qmp **ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        uint64_t deadline = deadline_after(timeout_ms);
        json_t *greeting = NULL;
        int r;

        if (!path || !ret)
                return -EINVAL;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->fd = -1;
        q->timeout_ms = TP_QMP_COMMAND_TIMEOUT_MS;
        q->next_id = 1;
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (q->fd < 0)
                return -errno;
        for (;;) {
                if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        break;
                if (errno == EINTR)
                        continue;
                /* A full backlog: other clients are queued, wait a little. */
                if (errno == EAGAIN) {
                        if (ms_left(deadline) == 0)
                                return -ETIMEDOUT;
                        struct timespec ts = { 0, 10 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                        continue;
                }
                if (errno == EINPROGRESS) {
                        int err = 0;
                        socklen_t len = sizeof(err);

                        r = wait_fd(q->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                                return -errno;
                        if (err)
                                return -err;
                        break;
                }
                return -errno;
        }

        struct ucred cred;
        socklen_t cred_len = sizeof(cred);
        if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0)
                q->peer = cred.pid;

        r = read_message(q, deadline, &greeting);
        if (r < 0)
                return r == -ECONNRESET ? -EPROTO : r;
        r = json_is_object(json_object_get(greeting, "QMP")) ? 0 : -EPROTO;
        json_decref(greeting);
        if (r < 0)
                return r;

        q->timeout_ms = (unsigned)MAX(ms_left(deadline), 1);
        r = tp_qmp_execute(q, "qmp_capabilities", NULL, NULL, NULL, NULL);
        if (r < 0)
                return r == -EREMOTEIO ? -EPROTO : r;
        q->timeout_ms = TP_QMP_COMMAND_TIMEOUT_MS;
        *ret = TAKE_PTR(q);
        return 0;
}

pid_t tp_qmp_peer_pid(const tp_qmp *q)
{
        return q ? q->peer : 0;
}

tp_qmp *tp_qmp_free(tp_qmp *q)
{
        if (!q)
                return NULL;
        if (q->fd >= 0)
                close(q->fd);
        free(q->buf);
        free(q);
        return NULL;
}
