/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-server.h -- the server side of the CVD-style control protocol
 * (docs/cvd-protocol.md), the heart of vbak-cvd: listens, welcomes and
 * authenticates clients, and maps their requests onto the export backend
 * (transport/cvd-export.h).
 *
 * DESIGN: one libuv loop. Each connection is a session with its own queue
 * of requests, answered strictly in order; a request that needs the backend
 * (which blocks: qemu-img, qemu-nbd, QMP) runs on the loop's worker pool
 * while later requests of that session wait. Exports belong to the session
 * that opened them: when its connection closes, fails or stays silent past
 * the idle timeout, the session's exports are closed on the worker pool
 * before its slot is given back. A registry of all open exports, shared by
 * the workers under a mutex, refuses a disk that another export has open
 * read-write (or any open export when read-write is asked for). Every path
 * is checked against the image folders before the backend sees it, and the
 * backend only ever gets the resolved path.
 */
#ifndef TP_CVD_SERVER_H
#define TP_CVD_SERVER_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <uv.h>

#include "transport/cvd-export.h"
#include "transport/cvd-proto.h"

#define TP_CVD_MAX_CLIENTS_DEFAULT 64
#define TP_CVD_TIMEOUT_DEFAULT 600 /* seconds */
#define TP_CVD_QUEUE_MAX 32        /* requests of one session waiting for their turn */

typedef struct tp_cvd_server tp_cvd_server;

typedef struct tp_cvd_server_opts {
        const tp_export_cfg *cfg; /* borrowed: must outlive the server */
        const char *listen_host;  /* an IPv4 or IPv6 address */
        uint16_t listen_port;     /* 0: any free port (tp_cvd_server_port() tells which) */
        SSL_CTX *tls;             /* NULL: plain TCP; else every connection is TLS (a reference is taken) */
        const char *token;        /* the shared token, or NULL */
        const char *credentials;  /* the credentials file's text, or NULL */
        unsigned max_clients;     /* 0: TP_CVD_MAX_CLIENTS_DEFAULT */
        unsigned timeout_s;       /* idle timeout; 0: TP_CVD_TIMEOUT_DEFAULT */
} tp_cvd_server_opts;

/* Starts listening. -EINVAL (why set) without cfg, image folders or any
 * authentication method, or with an address that does not parse; the
 * listen errors of libuv (-EADDRINUSE, ...) with why; -ENOMEM. */
int tp_cvd_server_start(uv_loop_t *loop, const tp_cvd_server_opts *o, tp_cvd_server **ret, tp_cvd_why *why);

/* The port the server listens on. */
uint16_t tp_cvd_server_port(const tp_cvd_server *s);

/* Stops: closes the listener and every session; their exports are closed.
 * done(userdata) runs on the loop once all of it is finished; the server is
 * freed then. */
void tp_cvd_server_stop(tp_cvd_server *s, void (*done)(void *userdata), void *userdata);

#endif
