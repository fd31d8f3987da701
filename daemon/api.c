/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api.c -- vbakd's control API on libh2o (HTTP/1.1, libuv, OpenSSL); the
 * contract is in api.h.
 *
 * DESIGN: h2o owns the connections and parses HTTP; one handler registered
 * at "/" turns each request into a call (method, path, route parameters,
 * JSON body) and hands it to the route's function. A call remembers its
 * h2o request until it is answered; a small block in the request's memory
 * pool tells it when h2o freed the request first (the client went away),
 * so a late answer is dropped instead of touching freed memory.
 */
#include "daemon/api.h"

#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"

#define TOKEN_FILE_MAX 4096

typedef struct route {
        char *method;
        char *pattern;
        vb_api_handler_fn fn;
        void *userdata;
} route;

typedef struct call_priv call_priv;

/* Lives in the request's pool: h2o frees it with the request. */
typedef struct req_link {
        call_priv *call;
} req_link;

struct call_priv {
        vb_api_call pub;
        vb_api *api;
        h2o_req_t *req; /* NULL once h2o freed it */
        req_link *link;
        h2o_generator_t gen;
        char *method, *path, *query;
        char *params[VB_API_MAX_PARAMS];
        call_priv *prev, *next; /* unanswered calls */
};

typedef struct api_handler {
        h2o_handler_t super;
        vb_api *api;
} api_handler;

struct vb_api {
        uv_loop_t *loop;
        h2o_globalconf_t config;
        h2o_context_t ctx;
        h2o_accept_ctx_t accept_unix, accept_tcp;
        uv_pipe_t unix_listener;
        uv_tcp_t tcp_listener;
        bool unix_open, tcp_open;
        SSL_CTX *ssl;
        char *token;
        char *socket_path;
        route *routes;
        size_t n_routes;
        call_priv *calls;
        unsigned closing_handles;
        void (*close_done)(void *userdata);
        void *close_userdata;
};

/* ---- answering ---- */

static void call_free(call_priv *c)
{
        vb_api *a = c->api;

        if (c->prev)
                c->prev->next = c->next;
        else if (a->calls == c)
                a->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->link)
                c->link->call = NULL;
        json_decref(c->pub.body);
        free(c->method);
        free(c->path);
        free(c->query);
        for (size_t i = 0; i < VB_API_MAX_PARAMS; i++)
                free(c->params[i]);
        free(c);
}

static void send_text(call_priv *c, int status, const char *text, size_t len)
{
        h2o_req_t *req = c->req;
        h2o_iovec_t body;

        if (!req) {
                log_debug("api: %s %s: the client went away before the answer", c->method, c->path);
                return;
        }
        /* From here h2o may free the request at any time. */
        c->link->call = NULL;
        c->link = NULL;
        c->req = NULL;
        body = h2o_strdup(&req->pool, text, len);
        req->res.status = status;
        req->res.reason = status < 300    ? "OK"
                          : status == 400 ? "Bad Request"
                          : status == 401 ? "Unauthorized"
                          : status == 404 ? "Not Found"
                          : status == 409 ? "Conflict"
                                          : "Error";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        if (status == 401)
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                               H2O_STRLIT("Bearer realm=\"vbakd\""));
        h2o_start_response(req, &c->gen);
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

void vb_api_reply_json(vb_api_call *call, int status, json_t *j)
{
        call_priv *c = (call_priv *)call;
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

        json_decref(j);
        if (!text) {
                static const char oom[] =
                        "{\"error\":{\"code\":1,\"name\":\"failed\",\"message\":\"out of memory\"}}\n";
                send_text(c, 500, oom, sizeof(oom) - 1);
        } else {
                size_t n = strlen(text);

                text[n] = '\n'; /* replaces the NUL: the length is what counts */
                send_text(c, status, text, n + 1);
        }
        call_free(c);
}

int vb_api_status_of(vb_error code)
{
        switch (code) {
        case VB_OK:
                return 200;
        case VB_E_USAGE:
                return 400;
        case VB_E_AUTH:
                return 401;
        case VB_E_PERMISSION:
                return 403;
        case VB_E_NOT_FOUND:
                return 404;
        case VB_E_EXISTS:
        case VB_E_BUSY:
        case VB_E_REFUSED:
                return 409;
        case VB_E_NETWORK:
                return 502;
        default:
                return 500;
        }
}

void vb_api_reply_error(vb_api_call *call, int status, vb_error code, const char *field, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        json_t *e;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        e = json_pack("{s:i, s:s, s:s}", "code", code, "name", vb_error_name(code), "message", msg);
        if (e && field)
                json_object_set_new(e, "field", json_string(field));
        vb_api_reply_json(call, status ?: vb_api_status_of(code), e ? json_pack("{s:o}", "error", e) : NULL);
}

/* ---- requests ---- */

static void link_disposed(void *p)
{
        req_link *l = p;

        if (l->call) {
                l->call->req = NULL;
                l->call->link = NULL;
        }
}

static int hex(int ch)
{
        return ch >= '0' && ch <= '9'   ? ch - '0'
               : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
               : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                        : -1;
}

/* Percent-decoding of n bytes of s ('+' is a space in queries); NULL for a
 * bad escape or a NUL byte. */
static char *decode(const char *s, size_t n, bool plus)
{
        char *d = malloc(n + 1), *o = d;

        if (!d)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '%') {
                        *o++ = plus && s[i] == '+' ? ' ' : s[i];
                        continue;
                }
                if (i + 2 >= n || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0 || (hex(s[i + 1]) | hex(s[i + 2])) == 0) {
                        free(d);
                        return NULL;
                }
                *o++ = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
                i += 2;
        }
        *o = 0;
        return d;
}

char *vb_api_query(const vb_api_call *call, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = call->query; p && *p;) {
                const char *end = strchr(p, '&') ?: p + strlen(p);

                if ((size_t)(end - p) > n && strncmp(p, name, n) == 0 && p[n] == '=')
                        return decode(p + n + 1, (size_t)(end - p) - n - 1, true);
                if ((size_t)(end - p) == n && strncmp(p, name, n) == 0)
                        return strdup("");
                p = *end ? end + 1 : end;
        }
        return NULL;
}

/* Matches path against pattern, filling c's params. */
static bool route_match(const char *pattern, const char *path, call_priv *c)
{
        size_t n = 0;

        while (*pattern && *path) {
                if (strncmp(pattern, "{}", 2) == 0) {
                        size_t len = strcspn(path, "/");

                        if (len == 0 || n >= VB_API_MAX_PARAMS)
                                return false;
                        free(c->params[n]);
                        c->params[n] = decode(path, len, false);
                        if (!c->params[n])
                                return false;
                        n++;
                        pattern += 2;
                        path += len;
                        continue;
                }
                if (*pattern != *path)
                        return false;
                pattern++;
                path++;
        }
        if (*pattern || *path)
                return false;
        c->pub.n_params = n;
        for (size_t i = 0; i < n; i++)
                c->pub.params[i] = c->params[i];
        return true;
}

static bool is_remote(h2o_req_t *req)
{
        struct sockaddr_storage ss;
        socklen_t len = req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&ss);

        return len > 0 && ss.ss_family != AF_UNIX;
}

static bool token_ok(vb_api *a, h2o_req_t *req)
{
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        size_t n = strlen(a->token);
        const h2o_iovec_t *v;

        if (i < 0)
                return false;
        v = &req->headers.entries[i].value;
        return v->len == n + 7 && strncasecmp(v->base, "Bearer ", 7) == 0 &&
               CRYPTO_memcmp(v->base + 7, a->token, n) == 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
        vb_api *a = ((api_handler *)self)->api;
        call_priv *c = calloc(1, sizeof(*c));
        const route *r = NULL;
        bool path_known = false;
        json_error_t jerr;

        if (!c)
                return -1;
        c->api = a;
        c->req = req;
        c->link = h2o_mem_alloc_shared(&req->pool, sizeof(*c->link), link_disposed);
        c->link->call = c;
        c->method = strndup(req->method.base, req->method.len);
        c->path = strndup(req->path_normalized.base, req->path_normalized.len);
        c->query = req->query_at != SIZE_MAX
                           ? strndup(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
                           : strdup("");
        c->next = a->calls;
        if (a->calls)
                a->calls->prev = c;
        a->calls = c;
        if (!c->method || !c->path || !c->query) {
                vb_api_reply_error(&c->pub, 500, VB_E_FAILED, NULL, "out of memory");
                return 0;
        }
        c->pub.method = c->method;
        c->pub.path = c->path;
        c->pub.query = c->query;
        c->pub.remote = is_remote(req);
        log_debug("api: %s %s%s", c->method, c->path, c->pub.remote ? " (tcp)" : "");
        if (c->pub.remote && !token_ok(a, req)) {
                vb_api_reply_error(&c->pub, 401, VB_E_AUTH, NULL, "a valid 'Authorization: Bearer TOKEN' is needed");
                return 0;
        }
        for (size_t i = 0; i < a->n_routes && !r; i++)
                if (route_match(a->routes[i].pattern, c->path, c)) {
                        path_known = true;
                        if (streq(a->routes[i].method, c->method))
                                r = &a->routes[i];
                }
        if (!r) {
                if (path_known)
                        vb_api_reply_error(&c->pub, 405, VB_E_USAGE, NULL, "%s is not allowed on %s", c->method,
                                           c->path);
                else
                        vb_api_reply_error(&c->pub, 404, VB_E_NOT_FOUND, NULL, "no such resource: %s", c->path);
                return 0;
        }
        if (req->entity.base && req->entity.len > 0) {
                c->pub.body = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
                if (!c->pub.body || !json_is_object(c->pub.body)) {
                        vb_api_reply_error(&c->pub, 400, VB_E_USAGE, NULL, "the body is not a JSON object%s%s",
                                           c->pub.body ? "" : ": ", c->pub.body ? "" : jerr.text);
                        return 0;
                }
        }
        r->fn(r->userdata, &c->pub);
        return 0;
}

/* ---- listening ---- */

static void on_accept(uv_stream_t *listener, int status)
{
        vb_api *a = listener->data;
        bool tcp = listener == (uv_stream_t *)&a->tcp_listener;
        uv_stream_t *conn;
        h2o_socket_t *sock;

        if (status != 0)
                return;
        conn = h2o_mem_alloc(tcp ? sizeof(uv_tcp_t) : sizeof(uv_pipe_t));
        if (tcp)
                uv_tcp_init(listener->loop, (uv_tcp_t *)conn);
        else
                uv_pipe_init(listener->loop, (uv_pipe_t *)conn, 0);
        if (uv_accept(listener, conn) != 0) {
                uv_close((uv_handle_t *)conn, (uv_close_cb)free);
                return;
        }
        sock = h2o_uv_socket_create(conn, (uv_close_cb)free);
        h2o_accept(tcp ? &a->accept_tcp : &a->accept_unix, sock);
}

static int fail(char **err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **err, int r, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                va_start(ap, fmt);
                if (vasprintf(err, fmt, ap) < 0)
                        *err = NULL;
                va_end(ap);
        }
        return r;
}

/* Is a daemon answering on path already? */
static bool socket_alive(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
                return false;
        strcpy(sa.sun_path, path);
        return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static int listen_unix(vb_api *a, const char *path, char **err)
{
        mode_t old;
        int r;

        if (socket_alive(path))
                return fail(err, -EADDRINUSE, "%s: a daemon answers there already", path);
        /* A socket file left by a daemon that died. */
        if (unlink(path) < 0 && errno != ENOENT)
                return fail(err, -errno, "%s: %s", path, strerror(errno));
        uv_pipe_init(a->loop, &a->unix_listener, 0);
        a->unix_listener.data = a;
        a->unix_open = true;
        old = umask(0077); /* root only: the socket is the CLI's way in */
        r = uv_pipe_bind(&a->unix_listener, path);
        umask(old);
        if (r == 0)
                r = uv_listen((uv_stream_t *)&a->unix_listener, 64, on_accept);
        if (r < 0)
                return fail(err, r, "%s: %s", path, uv_strerror(r));
        a->socket_path = strdup(path);
        return a->socket_path ? 0 : -ENOMEM;
}

static int listen_tcp(vb_api *a, const vb_api_opts *o, char **err)
{
        _cleanup_free_ char *host = NULL, *token = NULL;
        struct sockaddr_storage ss;
        const char *colon = strrchr(o->tcp, ':');
        size_t len;
        int r;

        if (!o->tls_cert || !o->tls_key || !o->token_file)
                return fail(err, -EINVAL, "the TCP listener needs a TLS certificate, its key and a token file");
        r = vb_read_file_at(AT_FDCWD, o->token_file, TOKEN_FILE_MAX, &token, &len);
        if (r < 0)
                return fail(err, r, "%s: %s", o->token_file, strerror(-r));
        token[strcspn(token, "\r\n")] = 0;
        if (strlen(token) < 16)
                return fail(err, -EINVAL, "%s: the token must have at least 16 characters", o->token_file);
        a->token = TAKE_PTR(token);
        a->ssl = SSL_CTX_new(TLS_server_method());
        if (!a->ssl)
                return fail(err, -ENOMEM, "TLS: cannot make a context");
        SSL_CTX_set_min_proto_version(a->ssl, TLS1_2_VERSION);
        if (SSL_CTX_use_certificate_chain_file(a->ssl, o->tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(a->ssl, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(a->ssl) != 1)
                return fail(err, -EINVAL, "TLS: %s or %s is not a usable certificate and key", o->tls_cert, o->tls_key);
        a->accept_tcp.ssl_ctx = a->ssl;
        if (!colon || colon == o->tcp)
                return fail(err, -EINVAL, "--listen '%s': give ADDR:PORT", o->tcp);
        host = strndup(o->tcp, (size_t)(colon - o->tcp));
        if (!host)
                return -ENOMEM;
        if (uv_ip4_addr(host, atoi(colon + 1), (struct sockaddr_in *)&ss) != 0 &&
            uv_ip6_addr(host[0] == '[' ? host + 1 : host, atoi(colon + 1), (struct sockaddr_in6 *)&ss) != 0)
                return fail(err, -EINVAL, "'%s' is not an IP address and port", o->tcp);
        uv_tcp_init(a->loop, &a->tcp_listener);
        a->tcp_listener.data = a;
        a->tcp_open = true;
        r = uv_tcp_bind(&a->tcp_listener, (struct sockaddr *)&ss, 0);
        if (r == 0)
                r = uv_listen((uv_stream_t *)&a->tcp_listener, 64, on_accept);
        if (r < 0)
                return fail(err, r, "%s: %s", o->tcp, uv_strerror(r));
        return 0;
}

/* One of the things vb_api_close waits for is done; the last frees a. */
static void release(vb_api *a)
{
        if (--a->closing_handles > 0)
                return;
        h2o_context_dispose(&a->ctx);
        h2o_config_dispose(&a->config);
        if (a->ssl)
                SSL_CTX_free(a->ssl);
        for (size_t i = 0; i < a->n_routes; i++) {
                free(a->routes[i].method);
                free(a->routes[i].pattern);
        }
        free(a->routes);
        free(a->token);
        free(a->socket_path);
        if (a->close_done)
                a->close_done(a->close_userdata);
        free(a);
}

static void listener_closed(uv_handle_t *h)
{
        release(h->data);
}

void vb_api_close(vb_api *a, void (*done)(void *userdata), void *userdata)
{
        if (!a)
                return;
        while (a->calls)
                vb_api_reply_error(&a->calls->pub, 503, VB_E_INTERRUPTED, NULL, "the daemon is stopping");
        a->close_done = done;
        a->close_userdata = userdata;
        a->closing_handles = 1; /* this function's own share, released below */
        if (a->socket_path)
                unlink(a->socket_path);
        if (a->unix_open) {
                a->closing_handles++;
                uv_close((uv_handle_t *)&a->unix_listener, listener_closed);
        }
        if (a->tcp_open) {
                a->closing_handles++;
                uv_close((uv_handle_t *)&a->tcp_listener, listener_closed);
        }
        release(a);
}

int vb_api_new(uv_loop_t *loop, const vb_api_opts *o, vb_api **ret, char **err)
{
        vb_api *a;
        h2o_hostconf_t *host;
        h2o_pathconf_t *path;
        api_handler *h;
        int r;

        if (!o->socket_path)
                return fail(err, -EINVAL, "no socket path");
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->loop = loop;
        h2o_config_init(&a->config);
        a->config.max_request_entity_size = VB_API_MAX_BODY;
        host = h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
        path = h2o_config_register_path(host, "/", 0);
        h = (api_handler *)h2o_create_handler(path, sizeof(*h));
        h->super.on_req = on_req;
        h->api = a;
        h2o_context_init(&a->ctx, loop, &a->config);
        a->accept_unix.ctx = a->accept_tcp.ctx = &a->ctx;
        a->accept_unix.hosts = a->accept_tcp.hosts = a->config.hosts;
        r = listen_unix(a, o->socket_path, err);
        if (r >= 0 && o->tcp)
                r = listen_tcp(a, o, err);
        if (r < 0) {
                vb_api_close(a, NULL, NULL);
                return r;
        }
        *ret = a;
        return 0;
}

int vb_api_route(vb_api *a, const char *method, const char *pattern, vb_api_handler_fn fn, void *userdata)
{
        route *v = realloc(a->routes, (a->n_routes + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        a->routes = v;
        v[a->n_routes] =
                (route){ .method = strdup(method), .pattern = strdup(pattern), .fn = fn, .userdata = userdata };
        if (!v[a->n_routes].method || !v[a->n_routes].pattern) {
                free(v[a->n_routes].method);
                free(v[a->n_routes].pattern);
                return -ENOMEM;
        }
        a->n_routes++;
        return 0;
}
