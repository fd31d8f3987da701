/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-http.c -- the HTTP side of the simulator on libmicrohttpd: the
 * listeners (HTTP, and HTTPS with a given certificate, cas-api.md §1.1),
 * Digest authentication (§1.2), content negotiation (§1.3), and turning a
 * sim_reply into a response: the Total header (§1.4), the 409 business
 * error with Error-Code / Error-Message (§5).
 *
 * DESIGN: each listener has one internal polling thread; every request is
 * handled under sim_lock, so the model is only ever touched by one thread.
 * Bodies of PUT/POST are collected (up to 1 MiB) before the request is
 * dispatched. Authentication is MD5 Digest with qop=auth (§6: what the
 * Python and Java clients negotiate); a stale nonce is answered with
 * stale=true so clients retry without asking for the password again.
 */
#include <arpa/inet.h>
#include <iconv.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define MAX_BODY (1024 * 1024)
#define NONCE_TIMEOUT_S 300
/* libmicrohttpd keeps each nonce's count in a slot picked by a hash, with no
 * chaining: two live nonces in one slot make the older one "stale" and its
 * next request a 401. Clients make a nonce per path and second; 64 Ki slots
 * (about 10 MB) keep such collisions rare for the tests' request rates. */
#define NONCE_NC_SIZE 65536
#define OPAQUE "5ccc069c403ebaf9f0171e9517f40e41"

pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;

struct sim_listener {
        struct MHD_Daemon *d;
};

struct sim_request {
        struct MHD_Connection *conn;
        char *body;
        size_t len;
        bool too_big;
};

const char *sim_request_arg(sim_request *req, const char *key)
{
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

static bool wants_json(struct MHD_Connection *conn)
{
        const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        const char *j, *x;

        /* XML unless JSON is asked for; when both are listed the first wins
         * (S4 sends "application/json,application/xml" and gets JSON). */
        if (!accept || !(j = strstr(accept, "application/json")))
                return false;
        x = strstr(accept, "application/xml");
        return !x || j < x;
}

/* The UTF-8 text as GBK bytes (§5: S5 saw GBK, S6 decodes by the charset header). */
static char *to_gbk(const char *utf8)
{
        iconv_t cd = iconv_open("GBK", "UTF-8");
        size_t in_left = strlen(utf8), out_size = in_left * 2 + 1, out_left = out_size - 1;
        char *out, *in = (char *)utf8, *o;

        if (cd == (iconv_t)-1)
                return NULL;
        out = o = calloc(1, out_size);
        if (out && iconv(cd, &in, &in_left, &o, &out_left) == (size_t)-1) {
                free(out);
                out = NULL;
        }
        iconv_close(cd);
        return out;
}

static struct MHD_Response *build_response(struct MHD_Connection *conn, sim_reply *rep)
{
        struct MHD_Response *resp;
        const char *type = "application/xml";
        char *body = NULL;

        if (rep->tree) {
                if (wants_json(conn)) {
                        body = sim_render_json(rep->tree, sim_cfg.quirks);
                        type = "application/json";
                } else {
                        body = sim_render_xml(rep->root, rep->tree, sim_cfg.quirks);
                }
        } else if (rep->raw) {
                body = TAKE_PTR(rep->raw);
                type = "text/plain";
        }
        resp = MHD_create_response_from_buffer(body ? strlen(body) : 0, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return NULL;
        }
        if (body)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (rep->total >= 0) {
                char total[32];

                snprintf(total, sizeof(total), "%" PRId64, rep->total);
                MHD_add_response_header(resp, "Total", total);
        }
        if (rep->error_code) {
                _cleanup_free_ char *gbk = NULL;
                char code[16];

                snprintf(code, sizeof(code), "%d", rep->error_code);
                MHD_add_response_header(resp, "Error-Code", code);
                if (sim_cfg.charset == SIM_CHARSET_GBK && (gbk = to_gbk(rep->error_message))) {
                        MHD_add_response_header(resp, "Error-Message", gbk);
                        MHD_add_response_header(resp, "charset", "GBK");
                } else {
                        MHD_add_response_header(resp, "Error-Message", rep->error_message);
                }
        }
        return resp;
}

static enum MHD_Result queue_empty(struct MHD_Connection *conn, unsigned status)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r;

        if (!resp)
                return MHD_NO;
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

/* MHD_YES when the request carries valid Digest credentials; otherwise the
 * 401 with WWW-Authenticate has been queued and *queued says how it went. */
static bool authorised(struct MHD_Connection *conn, enum MHD_Result *queued)
{
        char *user = MHD_digest_auth_get_username(conn);
        struct MHD_Response *resp;
        int r = MHD_NO;

        if (user && streq(user, sim_cfg.user))
                r = MHD_digest_auth_check2(conn, SIM_REALM, user, sim_cfg.password, NONCE_TIMEOUT_S,
                                           MHD_DIGEST_ALG_MD5);
        if (user)
                MHD_free(user);
        /* Fault session-expiry: good credentials refused once, as when the
         * server forgot the session (a fresh nonce, not stale). */
        if (r == MHD_YES && sim_fault_take(SIM_FAULT_SESSION_EXPIRY))
                r = MHD_NO;
        if (r == MHD_YES)
                return true;
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                *queued = MHD_NO;
                return false;
        }
        *queued = MHD_queue_auth_fail_response2(conn, SIM_REALM, OPAQUE, resp,
                                                r == MHD_INVALID_NONCE ? MHD_YES : MHD_NO, MHD_DIGEST_ALG_MD5);
        MHD_destroy_response(resp);
        return false;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        sim_request *req = *con_cls;
        sim_reply rep = { .total = -1 };
        struct MHD_Response *resp;
        enum MHD_Result r;

        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                req->conn = conn;
                *con_cls = req;
                return MHD_YES;
        }
        if (*upload_data_size) {
                if (req->len + *upload_data_size > MAX_BODY) {
                        req->too_big = true;
                } else if (!req->too_big) {
                        char *b = realloc(req->body, req->len + *upload_data_size + 1);

                        if (!b)
                                return MHD_NO;
                        memcpy(b + req->len, upload_data, *upload_data_size);
                        req->len += *upload_data_size;
                        b[req->len] = 0;
                        req->body = b;
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (strncmp(url, SIM_PREFIX, strlen(SIM_PREFIX)) != 0)
                return queue_empty(conn, MHD_HTTP_NOT_FOUND);
        /* Fault conn-reset: MHD_NO closes the connection without an answer. */
        if (sim_fault_take(SIM_FAULT_CONN_RESET))
                return MHD_NO;
        if (!authorised(conn, &r))
                return r;
        if (req->too_big)
                return queue_empty(conn, MHD_HTTP_CONTENT_TOO_LARGE);

        pthread_mutex_lock(&sim_lock);
        sim_tasks_settle(sim_cfg.model);
        sim_route(req, method, url + strlen(SIM_PREFIX), req->body ? req->body : "", &rep);
        resp = build_response(conn, &rep);
        pthread_mutex_unlock(&sim_lock);
        log_debug("%s %s -> %u", method, url, rep.status);
        json_decref(rep.tree);
        free(rep.raw);
        if (!resp)
                return MHD_NO;
        r = MHD_queue_response(conn, rep.status, resp);
        MHD_destroy_response(resp);
        return r;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        sim_request *req = *con_cls;

        if (req) {
                free(req->body);
                free(req);
        }
        *con_cls = NULL;
}

static int parse_addr(const char *addr_port, struct sockaddr_in *sa)
{
        _cleanup_free_ char *host = strdup(addr_port);
        char *colon, *end;
        unsigned long port;

        if (!host)
                return -ENOMEM;
        colon = strrchr(host, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        port = strtoul(colon + 1, &end, 10);
        if (*end || colon[1] == 0 || port > 65535)
                return -EINVAL;
        *sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                return -EINVAL;
        return 0;
}

int sim_http_start(const char *addr_port, const char *cert_pem, const char *key_pem, sim_listener **out)
{
        static uint8_t rnd[32];
        struct sockaddr_in sa;
        sim_listener *l;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
        int r;

        r = parse_addr(addr_port, &sa);
        if (r < 0)
                return r;
        r = vb_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return r;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        if (cert_pem) {
                flags |= MHD_USE_TLS;
                l->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                                        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_DIGEST_AUTH_RANDOM,
                                        sizeof(rnd), rnd, MHD_OPTION_NONCE_NC_SIZE, NONCE_NC_SIZE,
                                        MHD_OPTION_HTTPS_MEM_KEY, key_pem, MHD_OPTION_HTTPS_MEM_CERT, cert_pem,
                                        MHD_OPTION_END);
        } else {
                l->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                                        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_DIGEST_AUTH_RANDOM,
                                        sizeof(rnd), rnd, MHD_OPTION_NONCE_NC_SIZE, NONCE_NC_SIZE, MHD_OPTION_END);
        }
        if (!l->d) {
                free(l);
                return -EADDRINUSE;
        }
        *out = l;
        return 0;
}

void sim_http_stop(sim_listener *l)
{
        if (!l)
                return;
        MHD_stop_daemon(l->d);
        free(l);
}
