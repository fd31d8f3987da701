/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * http.c -- the CVM REST transport (see http.h): libcurl's multi-socket
 * interface on the libuv loop.
 *
 * curl drives the sockets: its socket callback says which fd to watch for
 * what (a uv_poll per fd, its context attached with curl_multi_assign()),
 * its timer callback when to call back (one uv_timer). Both only start and
 * stop uv handles; every curl_multi_socket_action() call comes from a uv
 * callback, and finished transfers are collected after it returns
 * (curl_multi_info_read()), so a done callback never runs inside curl nor
 * inside cas_http_request().
 *
 * Closing: pending transfers are removed and completed as cancelled, the
 * multi handle is cleaned up (which closes the cached connections, and may
 * still call the socket callback to drop their fds), then the timer and any
 * poll left are closed; the client is freed when the last uv close callback
 * has run.
 */
#include "cas/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <iconv.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "daemon/log.h"
#include "daemon/util.h"

/* Finished easy handles kept for reuse (they keep the Digest nonce). */
#define IDLE_MAX 8
/* The pause before a request refused with 401 is sent again (see retry_later()). */
#define AUTH_RETRY_MS 1100
/* How many times a 401 to a Digest answer is tried again (see retry_later()). */
#define AUTH_RETRIES 2

typedef struct sock_ctx {
        uv_poll_t poll;
        cas_http *c;
        curl_socket_t fd;
        struct sock_ctx *prev, *next;
} sock_ctx;

typedef struct req {
        struct req *prev, *next;
        cas_http *c;
        CURL *easy;
        char *method, *path;
        cas_http_done_fn done;
        void *userdata;
        struct curl_slist *headers;
        char errbuf[CURL_ERROR_SIZE];
        char *body;
        size_t body_len, body_cap;
        bool too_large;
        unsigned retries;  /* retries made after a refused Digest answer */
        uint64_t retry_at; /* uv_now() when it waits for that retry, else 0 */
        /* Headers of the response being received. */
        char *content_type, *charset, *error_code, *error_message, *total;
        size_t error_message_len;
} req;

struct cas_http {
        uv_loop_t *loop;
        CURLM *multi;
        uv_timer_t timer;
        uv_timer_t retry_timer;
        char *base; /* "http://HOST:PORT/cas/casrs" */
        char *cvm;  /* "HOST:PORT" */
        char *user, *password, *ca_file;
        bool insecure, xml;
        unsigned timeout_ms;

        req *reqs;
        size_t n_reqs;
        sock_ctx *socks;
        CURL *idle[IDLE_MAX];
        size_t n_idle;

        bool closing, in_cleanup;
        unsigned uv_open; /* uv handles initialised and not closed yet */
        cas_http_closed_fn closed;
        void *closed_userdata;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_init_result;

static void global_init(void)
{
        global_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- uv handles ------------------------------------------------------- */

static void maybe_free(cas_http *c)
{
        cas_http_closed_fn closed;
        void *userdata;

        if (!c->closing || c->multi || c->uv_open > 0)
                return;
        closed = c->closed;
        userdata = c->closed_userdata;
        free(c->base);
        free(c->cvm);
        free(c->user);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        free(c->ca_file);
        free(c);
        if (closed)
                closed(userdata);
}

static void on_handle_closed(uv_handle_t *h)
{
        cas_http *c = h->data;

        if (h->type == UV_POLL)
                free(container_of((uv_poll_t *)h, sock_ctx, poll));
        c->uv_open--;
        maybe_free(c);
}

static void sock_close(sock_ctx *s)
{
        cas_http *c = s->c;

        uv_poll_stop(&s->poll);
        if (s->prev)
                s->prev->next = s->next;
        else
                c->socks = s->next;
        if (s->next)
                s->next->prev = s->prev;
        uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/* ---- completion ------------------------------------------------------- */

static void req_reset_response(req *q)
{
        free(q->content_type);
        free(q->charset);
        free(q->error_code);
        free(q->error_message);
        free(q->total);
        q->content_type = q->charset = q->error_code = q->error_message = q->total = NULL;
        q->error_message_len = 0;
        q->body_len = 0;
        q->too_large = false;
}

/* Frees q, which is no longer in the multi handle nor in the list; its easy
 * handle goes back to the idle pool while the client is open. */
static void req_free(req *q)
{
        cas_http *c = q->c;

        if (q->easy) {
                if (!c->closing && c->n_idle < IDLE_MAX)
                        c->idle[c->n_idle++] = q->easy;
                else
                        curl_easy_cleanup(q->easy);
        }
        req_reset_response(q);
        curl_slist_free_all(q->headers);
        free(q->body);
        free(q->method);
        free(q->path);
        free(q);
}

static void req_unlink(req *q)
{
        cas_http *c = q->c;

        curl_multi_remove_handle(c->multi, q->easy);
        if (q->prev)
                q->prev->next = q->next;
        else
                c->reqs = q->next;
        if (q->next)
                q->next->prev = q->prev;
        c->n_reqs--;
}

static int64_t parse_total(const char *s)
{
        char *end;
        long long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end || v < 0)
                return -1;
        return v;
}

/* Completes an unlinked request and frees it. */
static void req_complete(req *q, CURLcode code, bool cancelled)
{
        cas_http_response r = {
                .cvm = q->c->cvm,
                .method = q->method,
                .path = q->path,
                .curl_code = code,
                .cancelled = cancelled,
                .body = q->body ? q->body : "",
                .body_len = q->body_len,
                .content_type = q->content_type,
                .charset = q->charset,
                .error_code = q->error_code,
                .error_message = q->error_message,
                .error_message_len = q->error_message_len,
                .total_raw = q->total,
                .total = parse_total(q->total),
        };
        long status = 0;

        if (cancelled) {
                r.curl_code = CURLE_ABORTED_BY_CALLBACK;
                r.curl_error = "cancelled: the client was closed";
        } else if (code == CURLE_WRITE_ERROR && q->too_large) {
                r.curl_error = "response body too large";
        } else if (code != CURLE_OK) {
                r.curl_error = q->errbuf[0] ? q->errbuf : curl_easy_strerror(code);
        } else {
                r.curl_error = "";
        }
        if (!cancelled && curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
                r.status = status;
        log_debug("CVM %s: %s %s: curl %d, HTTP %ld, %zu bytes", r.cvm, r.method, r.path, (int)r.curl_code, r.status,
                  r.body_len);
        q->done(q->userdata, &r);
        req_free(q);
}

static void on_retry_timer(uv_timer_t *t)
{
        cas_http *c = t->data;
        uint64_t now = uv_now(c->loop), next = 0;

        for (req *q = c->reqs; q; q = q->next) {
                if (!q->retry_at)
                        continue;
                if (q->retry_at <= now) {
                        /* A copy of the handle has the request's options but
                         * none of its Digest state: a fresh challenge, a
                         * fresh nonce. */
                        CURL *fresh = curl_easy_duphandle(q->easy);

                        q->retry_at = 0;
                        if (fresh) {
                                curl_easy_cleanup(q->easy);
                                q->easy = fresh;
                        }
                        if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK)
                                log_debug("CVM %s: %s %s: cannot retry", c->cvm, q->method, q->path);
                } else if (!next || q->retry_at < next) {
                        next = q->retry_at;
                }
        }
        if (next)
                uv_timer_start(&c->retry_timer, on_retry_timer, next - now, 0);
}

/* A 401 to a Digest answer is sent again, up to AUTH_RETRIES times, a
 * little later (in another second) and on a copy of the handle, so with a
 * fresh challenge and nonce. Servers that derive the nonce from the time
 * (in seconds) and the path, such as libmicrohttpd, hand two clients
 * challenged together the same nonce and then refuse the second one's nonce
 * count as a replay; a wrong password simply fails each time (Python's
 * requests also answers one 401 more than the handshake needs). Returns true
 * when q waits for it. */
static bool retry_later(req *q)
{
        cas_http *c = q->c;
        long status = 0, avail = 0;

        if (q->retries >= AUTH_RETRIES || curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
            status != 401 || curl_easy_getinfo(q->easy, CURLINFO_HTTPAUTH_AVAIL, &avail) != CURLE_OK ||
            !(avail & CURLAUTH_DIGEST))
                return false;
        curl_multi_remove_handle(c->multi, q->easy);
        q->retries++;
        q->retry_at = uv_now(c->loop) + AUTH_RETRY_MS;
        q->errbuf[0] = 0;
        req_reset_response(q);
        log_debug("CVM %s: %s %s: 401, trying once more", c->cvm, q->method, q->path);
        if (!uv_is_active((uv_handle_t *)&c->retry_timer))
                uv_timer_start(&c->retry_timer, on_retry_timer, AUTH_RETRY_MS, 0);
        return true;
}

static void check_multi_info(cas_http *c)
{
        CURLMsg *msg;
        int left;

        /* A done callback may close the client: stop reading then. */
        while (!c->closing && (msg = curl_multi_info_read(c->multi, &left))) {
                CURLcode code = msg->data.result;
                req *q = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
                if (!q)
                        continue;
                if (code == CURLE_OK && retry_later(q))
                        continue;
                req_unlink(q);
                req_complete(q, code, false);
        }
}

/* ---- curl callbacks --------------------------------------------------- */

static void on_poll(uv_poll_t *p, int status, int events)
{
        sock_ctx *s = container_of(p, sock_ctx, poll);
        cas_http *c = s->c;
        int flags = 0, running;

        if (status < 0)
                flags = CURL_CSELECT_ERR | CURL_CSELECT_IN | CURL_CSELECT_OUT;
        if (events & UV_READABLE)
                flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
                flags |= CURL_CSELECT_OUT;
        /* s may be freed by curl's socket callback from here on. */
        curl_multi_socket_action(c->multi, s->fd, flags, &running);
        check_multi_info(c);
}

static void on_timer(uv_timer_t *t)
{
        cas_http *c = t->data;
        int running;

        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_multi_info(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
        cas_http *c = userp;
        sock_ctx *s = socketp;
        int events = 0, r;

        if (action == CURL_POLL_REMOVE) {
                if (s) {
                        sock_close(s);
                        /* During curl_multi_cleanup() the socket hash is being torn down. */
                        if (!c->in_cleanup)
                                curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (c->in_cleanup)
                return 0;
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                r = uv_poll_init_socket(c->loop, &s->poll, fd);
                if (r < 0) {
                        log_debug("CVM %s: cannot watch socket %d: %s", c->cvm, (int)fd, uv_strerror(r));
                        free(s);
                        return -1;
                }
                s->c = c;
                s->fd = fd;
                s->poll.data = c;
                s->next = c->socks;
                if (c->socks)
                        c->socks->prev = s;
                c->socks = s;
                c->uv_open++;
                curl_multi_assign(c->multi, fd, s);
        }
        if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
                events |= UV_READABLE;
        if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
                events |= UV_WRITABLE;
        r = uv_poll_start(&s->poll, events, on_poll);
        if (r < 0) {
                log_debug("CVM %s: cannot poll socket %d: %s", c->cvm, (int)fd, uv_strerror(r));
                return -1;
        }
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        cas_http *c = userp;

        if (c->closing)
                return 0;
        if (timeout_ms < 0)
                uv_timer_stop(&c->timer);
        else /* 0 means "as soon as possible": the next loop iteration, never from inside curl */
                uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
        return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userdata)
{
        req *q = userdata;
        size_t len = size * n;

        if (len > CAS_HTTP_MAX_BODY - q->body_len) {
                q->too_large = true;
                return 0; /* CURLE_WRITE_ERROR */
        }
        if (q->body_len + len + 1 > q->body_cap) {
                size_t cap = MAX(q->body_cap * 2, q->body_len + len + 1);
                char *p;

                cap = MAX(cap, (size_t)4096);
                p = realloc(q->body, cap);
                if (!p)
                        return 0;
                q->body = p;
                q->body_cap = cap;
        }
        memcpy(q->body + q->body_len, data, len);
        q->body_len += len;
        q->body[q->body_len] = 0;
        return len;
}

/* Stores a copy of value (blanks around it removed) in *slot; *len gets its length. */
static int header_store(char **slot, size_t *len, const char *value, size_t n)
{
        char *p;

        while (n > 0 && (*value == ' ' || *value == '\t'))
                value++, n--;
        while (n > 0 && (value[n - 1] == '\r' || value[n - 1] == '\n' || value[n - 1] == ' ' || value[n - 1] == '\t'))
                n--;
        p = strndup(value, n);
        if (!p)
                return -ENOMEM;
        free(*slot);
        *slot = p;
        if (len)
                *len = n;
        return 0;
}

static size_t header_cb(char *data, size_t size, size_t n, void *userdata)
{
        static const struct {
                const char *name;
                size_t offset;
        } wanted[] = {
                { "Content-Type", offsetof(req, content_type) },
                { "charset", offsetof(req, charset) },
                { "Error-Code", offsetof(req, error_code) },
                { "Error-Message", offsetof(req, error_message) },
                { "Total", offsetof(req, total) },
        };
        req *q = userdata;
        size_t len = size * n;
        const char *colon;

        /* A status line starts a new response: what came before it was a
         * Digest challenge or an interim response, not the answer. */
        if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
                req_reset_response(q);
                return len;
        }
        colon = memchr(data, ':', len);
        if (!colon)
                return len;
        for (size_t i = 0; i < ELEMENTSOF(wanted); i++) {
                size_t nl = strlen(wanted[i].name);
                char **slot = (char **)((char *)q + wanted[i].offset);

                if ((size_t)(colon - data) != nl || strncasecmp(data, wanted[i].name, nl) != 0)
                        continue;
                if (header_store(slot, slot == &q->error_message ? &q->error_message_len : NULL, colon + 1,
                                 len - nl - 1) < 0)
                        return 0;
                break;
        }
        return len;
}

/* ---- client ----------------------------------------------------------- */

/* Splits o->url into c->base and c->cvm. */
static int parse_url(cas_http *c, const char *url)
{
        _cleanup_free_ char *prefix = NULL;
        const char *portv;
        char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *fragment = NULL;
        CURLU *u = curl_url();
        size_t plen;
        int r = -EINVAL;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                goto out;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
                goto out;
        if (!streq(scheme, "http") && !streq(scheme, "https"))
                goto out;
        /* Credentials, a query or a fragment in the base URL are mistakes. */
        if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK || strchr(url, '@'))
                goto out;
        /* CAS listens on 8080 (http) and 8443 (https), not 80/443 (cas-api.md §1.1). */
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
                port = NULL;
        portv = port ? port : streq(scheme, "https") ? "8443" : "8080";
        prefix = strdup(!path || streq(path, "") || streq(path, "/") ? CAS_HTTP_PREFIX : path);
        if (!prefix) {
                r = -ENOMEM;
                goto out;
        }
        plen = strlen(prefix);
        while (plen > 1 && prefix[plen - 1] == '/')
                prefix[--plen] = 0;
        if (asprintf(&c->cvm, "%s:%s", host, portv) < 0) {
                c->cvm = NULL;
                r = -ENOMEM;
                goto out;
        }
        if (asprintf(&c->base, "%s://%s:%s%s", scheme, host, portv, prefix) < 0) {
                c->base = NULL;
                r = -ENOMEM;
                goto out;
        }
        r = 0;
out:
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_free(path);
        curl_free(query);
        curl_free(fragment);
        curl_url_cleanup(u);
        return r;
}

int cas_http_new(uv_loop_t *loop, const cas_http_options *o, cas_http **ret)
{
        cas_http *c;
        int r;

        if (!loop || !o || !o->url || !o->user || !o->password || !ret)
                return -EINVAL;
        pthread_once(&global_once, global_init);
        if (global_init_result != CURLE_OK)
                return -ENOMEM;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->insecure = o->insecure;
        c->xml = o->xml;
        c->timeout_ms = o->timeout_ms ? o->timeout_ms : CAS_HTTP_TIMEOUT_MS_DEFAULT;
        r = parse_url(c, o->url);
        if (r < 0)
                goto fail;
        c->user = strdup(o->user);
        c->password = strdup(o->password);
        c->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
        c->multi = curl_multi_init();
        if (!c->user || !c->password || (o->ca_file && !c->ca_file) || !c->multi) {
                r = -ENOMEM;
                goto fail;
        }
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        r = uv_timer_init(loop, &c->timer);
        if (r < 0)
                goto fail;
        c->timer.data = c;
        c->uv_open = 1;
        r = uv_timer_init(loop, &c->retry_timer);
        if (r < 0) {
                /* The first timer is initialised: it must be closed, not freed. */
                cas_http_close(c, NULL, NULL);
                return r;
        }
        c->retry_timer.data = c;
        c->uv_open = 2;
        *ret = c;
        return 0;
fail:
        if (c->multi)
                curl_multi_cleanup(c->multi);
        free(c->base);
        free(c->cvm);
        free(c->user);
        free(c->password);
        free(c->ca_file);
        free(c);
        return r;
}

const char *cas_http_cvm(const cas_http *c)
{
        return c->cvm;
}

size_t cas_http_pending(const cas_http *c)
{
        return c ? c->n_reqs : 0;
}

/* A new easy handle with the options every request shares. */
static CURL *easy_new(cas_http *c)
{
        CURL *e = curl_easy_init();

        if (!e)
                return NULL;
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
        curl_easy_setopt(e, CURLOPT_USERNAME, c->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, c->password);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
        if (c->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        return e;
}

static bool valid_method(const char *m)
{
        size_t n = strlen(m);

        if (n == 0 || n > 16)
                return false;
        for (size_t i = 0; i < n; i++)
                if (m[i] < 'A' || m[i] > 'Z')
                        return false;
        return true;
}

static bool valid_path(const char *p)
{
        for (; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
                        return false;
        return true;
}

static struct curl_slist *slist_add(struct curl_slist **l, const char *s)
{
        struct curl_slist *n = curl_slist_append(*l, s);

        if (n)
                *l = n;
        return n;
}

int cas_http_request(cas_http *c, const char *method, const char *path_and_query, const char *body,
                     const char *content_type, cas_http_done_fn done, void *userdata)
{
        const char *type = c && c->xml ? "application/xml" : "application/json";
        _cleanup_free_ char *url = NULL, *ct = NULL;
        bool get = method && streq(method, "GET"), head = method && streq(method, "HEAD");
        req *q;
        CURL *e;

        if (!c || !method || !path_and_query || !done || !valid_method(method) || !valid_path(path_and_query) ||
            (content_type && strpbrk(content_type, "\r\n")) || (body && (get || head)))
                return -EINVAL;
        if (c->closing)
                return -ESHUTDOWN;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->c = c;
        q->done = done;
        q->userdata = userdata;
        q->method = strdup(method);
        if (asprintf(&q->path, "%s%s", path_and_query[0] == '/' ? "" : "/", path_and_query) < 0)
                q->path = NULL;
        if (asprintf(&url, "%s%s", c->base, q->path ? q->path : "") < 0)
                url = NULL;
        if (asprintf(&ct, "Content-Type: %s", content_type ? content_type : type) < 0)
                ct = NULL;
        if (!q->method || !q->path || !url || !ct)
                goto nomem;
        if (!slist_add(&q->headers, c->xml ? "Accept: application/xml" : "Accept: application/json") ||
            !slist_add(&q->headers, "Expect:"))
                goto nomem;
        /* Without a body, "Content-Type:" stops curl from claiming a form. */
        if (!get && !head && !slist_add(&q->headers, body ? ct : "Content-Type:"))
                goto nomem;

        e = c->n_idle > 0 ? c->idle[--c->n_idle] : easy_new(c);
        if (!e)
                goto nomem;
        q->easy = e;
        /* A reused handle keeps the options of its last request: set every
         * per-request one. */
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, q);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        if (get || head) {
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
                curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
                if (head) /* after HTTPGET, which resets it */
                        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else {
                /* PUT vm/start/{id} and the like have no body: send
                 * Content-Length: 0 rather than nothing. */
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
                curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, streq(method, "POST") ? NULL : method);
        }
        if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
                goto nomem;
        q->next = c->reqs;
        if (c->reqs)
                c->reqs->prev = q;
        c->reqs = q;
        c->n_reqs++;
        return 0;
nomem:
        req_free(q);
        return -ENOMEM;
}

void cas_http_close(cas_http *c, cas_http_closed_fn closed, void *userdata)
{
        if (!c || c->closing)
                return;
        c->closing = true;
        c->closed = closed;
        c->closed_userdata = userdata;
        while (c->reqs) {
                req *q = c->reqs;

                req_unlink(q);
                req_complete(q, CURLE_ABORTED_BY_CALLBACK, true);
        }
        while (c->n_idle > 0)
                curl_easy_cleanup(c->idle[--c->n_idle]);
        c->in_cleanup = true;
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
        while (c->socks)
                sock_close(c->socks);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        if (c->retry_timer.data) /* initialised */
                uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
}

/* ---- errors ----------------------------------------------------------- */

/* Converts len bytes from charset `from` to UTF-8 in out. Returns 0 or -1. */
static int convert(const char *from, const char *in, size_t len, char *out, size_t size)
{
        iconv_t cd = iconv_open("UTF-8", from);
        char *ip = (char *)in, *op = out;
        size_t il = len, ol = size - 1;
        size_t n;

        if (cd == (iconv_t)-1)
                return -1;
        n = iconv(cd, &ip, &il, &op, &ol);
        if (n != (size_t)-1)
                n = iconv(cd, NULL, NULL, &op, &ol);
        iconv_close(cd);
        /* A message cut by the buffer is fine; invalid bytes are not. */
        if (n == (size_t)-1 && errno != E2BIG)
                return -1;
        *op = 0;
        return 0;
}

/* The Error-Message header as UTF-8 text on one line (cas-api.md §5). */
static void error_text(const cas_http_response *r, char *out, size_t size)
{
        const char *cs = r->charset;

        out[0] = 0;
        if (!r->error_message || r->error_message_len == 0 || size < 2)
                return;
        if (!(cs && *cs && convert(cs, r->error_message, r->error_message_len, out, size) == 0) &&
            convert("UTF-8", r->error_message, r->error_message_len, out, size) < 0 &&
            convert("GBK", r->error_message, r->error_message_len, out, size) < 0) {
                /* Neither: keep the ASCII, mark the rest. */
                size_t j = 0;

                for (size_t i = 0; i < r->error_message_len && j + 1 < size; i++)
                        out[j++] = (unsigned char)r->error_message[i] < 0x80 ? r->error_message[i] : '?';
                out[j] = 0;
        }
        for (char *p = out; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
}

static vb_error transport_error(const cas_http_response *r, const char **what, const char **hint)
{
        *hint = "";
        switch (r->curl_code) {
        case CURLE_ABORTED_BY_CALLBACK:
                *what = "cancelled";
                return VB_E_INTERRUPTED;
        case CURLE_OPERATION_TIMEDOUT:
                *what = "timed out";
                return VB_E_NETWORK;
        case CURLE_COULDNT_RESOLVE_HOST:
                *what = "cannot resolve the host name";
                return VB_E_NETWORK;
        case CURLE_COULDNT_CONNECT:
                *what = "cannot connect";
                return VB_E_NETWORK;
        case CURLE_PEER_FAILED_VERIFICATION:
                *what = "TLS certificate verification failed";
                *hint = ": give the CVM's CA certificate file, or use the insecure option to skip verification";
                return VB_E_NETWORK;
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
                *what = "cannot use the CA file";
                return VB_E_USAGE;
        case CURLE_SSL_CONNECT_ERROR:
                *what = "TLS handshake failed";
                return VB_E_NETWORK;
        case CURLE_LOGIN_DENIED:
                *what = "login denied";
                return VB_E_AUTH;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_BAD_CONTENT_ENCODING:
                *what = "malformed response";
                return VB_E_PROTOCOL;
        case CURLE_WRITE_ERROR:
                *what = "cannot take the response";
                return VB_E_PROTOCOL;
        case CURLE_OUT_OF_MEMORY:
                *what = "out of memory";
                return VB_E_FAILED;
        default: /* send/receive errors, resets, empty replies */
                *what = "connection failed";
                return VB_E_NETWORK;
        }
}

vb_error cas_http_error(const cas_http_response *r, char *msg, size_t size)
{
        char where[600], text[512];
        const char *what, *hint;
        vb_error e;

        if (!msg || size == 0)
                return VB_E_FAILED;
        msg[0] = 0;
        if (!r)
                return VB_E_FAILED;
        snprintf(where, sizeof(where), "CVM %s: %s %s", r->cvm ? r->cvm : "?", r->method ? r->method : "?",
                 r->path ? r->path : "?");
        if (r->cancelled || r->curl_code != CURLE_OK) {
                e = transport_error(r, &what, &hint);
                if (r->cancelled || !r->curl_error || !*r->curl_error)
                        snprintf(msg, size, "%s: %s%s", where, what, hint);
                else
                        snprintf(msg, size, "%s: %s (%s)%s", where, what, r->curl_error, hint);
                return e;
        }
        if (r->status >= 200 && r->status < 300)
                return VB_OK;
        switch (r->status) {
        case 401:
                snprintf(msg, size, "%s: 401 unauthorized: check the user and password", where);
                return VB_E_AUTH;
        case 403:
                snprintf(msg, size, "%s: 403 forbidden: the user may not do this", where);
                return VB_E_REFUSED;
        case 404:
                snprintf(msg, size, "%s: 404 not found", where);
                return VB_E_REFUSED;
        case 405:
                snprintf(msg, size, "%s: 405 method not allowed", where);
                return VB_E_REFUSED;
        case 409: {
                /* "... does not exist": host pool, host, vSwitch, VM (cas-api.md §5). */
                static const char *const missing[] = { "304", "402", "603", "1001" };
                const char *code = r->error_code && *r->error_code ? r->error_code : "?";

                e = VB_E_REFUSED;
                for (size_t i = 0; i < ELEMENTSOF(missing); i++)
                        if (streq(code, missing[i]))
                                e = VB_E_NOT_FOUND;
                error_text(r, text, sizeof(text));
                snprintf(msg, size, "%s: 409 error %s: %s", where, code, *text ? text : "(no message)");
                return e;
        }
        default:
                break;
        }
        if (r->status >= 400 && r->status < 600) {
                snprintf(msg, size, "%s: HTTP status %ld", where, r->status);
                return VB_E_REFUSED;
        }
        snprintf(msg, size, "%s: unexpected HTTP status %ld", where, r->status);
        return VB_E_PROTOCOL;
}
