/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api.h -- vbakd's control API: HTTP/1.1 + JSON on the daemon's libuv loop,
 * served by libh2o, on a Unix socket (the local CLI; only its owner, root,
 * may open it) and, when configured, on TCP with TLS and a bearer
 * token (a remote console).
 *
 * DESIGN
 * - One h2o handler takes every request; vb_api routes it by method and
 *   path pattern ("/v1/jobs/{}" matches one segment per "{}") to the
 *   handlers the daemon registered. Request bodies are JSON objects (or
 *   empty); a body that is not JSON is answered 400 before any handler runs.
 * - A handler answers at once or later (after work on the worker pool):
 *   the call stays valid until vb_api_reply*() is called, even when the
 *   client went away (then the answer is dropped).
 * - Errors are {"error": {"code": N, "name": "...", "message": "...",
 *   "field": "..."}} with the stable codes of docs/error-codes.md and the
 *   HTTP status that fits (400 bad request, 401, 404, 409, 500...).
 * - TCP requests need "Authorization: Bearer TOKEN" (compared in constant
 *   time); the Unix socket relies on its file mode.
 */
#ifndef VB_API_H
#define VB_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "daemon/error.h"

#define VB_API_MAX_BODY (1u << 20)
#define VB_API_MAX_PARAMS 4

typedef struct vb_api vb_api;
typedef struct vb_api_call vb_api_call;

typedef struct vb_api_opts {
        const char *socket_path;        /* required */
        const char *tcp;                /* "ADDR:PORT" or NULL: no TCP listener */
        const char *tls_cert, *tls_key; /* PEM files; required with tcp */
        const char *token_file;         /* the bearer token (its first line); required with tcp */
} vb_api_opts;

/* A request: its method, path, the "{}" segments of the route (percent-
 * decoded), the query string (without '?', may be ""), the body (an
 * object, or NULL when empty). */
struct vb_api_call {
        const char *method;
        const char *path;
        const char *query;
        const char *params[VB_API_MAX_PARAMS];
        size_t n_params;
        json_t *body;
        bool remote; /* came over TCP */
};

typedef void (*vb_api_handler_fn)(void *userdata, vb_api_call *call);

/* Starts listening. -EADDRINUSE when a daemon answers on the socket
 * already; -errno, with *err (caller frees) saying what failed. */
int vb_api_new(uv_loop_t *loop, const vb_api_opts *o, vb_api **ret, char **err);
/* Stops listening and closes the connections; done(userdata) once all is
 * closed. Calls not answered yet are answered 503 first. */
void vb_api_close(vb_api *a, void (*done)(void *userdata), void *userdata);

/* Routes method + pattern to fn. Patterns: "/v1/platforms", "/v1/jobs/{}/start". */
int vb_api_route(vb_api *a, const char *method, const char *pattern, vb_api_handler_fn fn, void *userdata);

/* The answers; each frees the call. reply_json steals j (NULL: 500). */
void vb_api_reply_json(vb_api_call *call, int status, json_t *j);
void vb_api_reply_error(vb_api_call *call, int status, vb_error code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* The HTTP status that fits a vbak error code. */
int vb_api_status_of(vb_error code);

/* A query parameter's value (percent-decoded, malloc'd), or NULL. */
char *vb_api_query(const vb_api_call *call, const char *name);

#endif
