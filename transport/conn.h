/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * conn.h -- tp_conn: one framed JSON message connection of the CVD-style
 * control protocol over TCP on a libuv loop, plain or TLS, for the client
 * (tp_conn_connect) and the server (tp_conn_accept) alike.
 *
 * DESIGN: TLS runs through OpenSSL memory BIOs: bytes read from the socket
 * go into the SSL's read BIO, what the SSL writes into its write BIO goes
 * out with uv_write, so OpenSSL never touches the socket and the loop never
 * blocks. Messages sent before the connection is up (TCP connected, TLS
 * handshake done) wait in a queue and leave in order once it is. One timer
 * bounds silence: when nothing arrives from the peer for timeout_ms (the
 * connect and the handshake included), the connection closes with
 * -ETIMEDOUT; the protocol's pings keep a healthy connection talking.
 * tp_conn_close() is graceful: what was sent is written out (a TLS
 * close_notify too), the write side is shut down, then the socket closes.
 * The owner learns of the end exactly once, through on_close, after which
 * the tp_conn is freed.
 */
#ifndef TP_CONN_H
#define TP_CONN_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "transport/cvd-proto.h"

typedef struct tp_conn tp_conn;

/* A message arrived: msg is a JSON object, borrowed for the call
 * (json_incref() to keep it). msg is NULL when the peer sent a bad frame:
 * why says what was wrong; the callback may send an error message, then the
 * connection closes by itself (on_close gets -EBADMSG). */
typedef void (*tp_conn_message_fn)(tp_conn *c, json_t *msg, const char *why, void *userdata);

/* The connection is closed; c is freed right after this returns. err: 0
 * after tp_conn_close(); -ECONNRESET the peer closed or reset it;
 * -ETIMEDOUT nothing arrived for timeout_ms (or connect/handshake took that
 * long); -EBADMSG a bad frame; -EPROTO TLS failed (handshake, a plain peer
 * on a TLS connection or the reverse); -EKEYREJECTED the server's
 * certificate did not verify; -EHOSTUNREACH the host name did not resolve;
 * other -errno from connect, read or write (-ECONNREFUSED, ...). why is a
 * one-line description (never NULL). */
typedef void (*tp_conn_close_fn)(tp_conn *c, int err, const char *why, void *userdata);

typedef struct tp_conn_opts {
        SSL_CTX *tls;         /* NULL: plain TCP; else a server context (accept) or a client context (connect) */
        const char *tls_name; /* connect: the name or IP address the certificate must match; NULL: the host */
        uint64_t timeout_ms;  /* silence that closes the connection; 0: none */
        tp_conn_message_fn on_message; /* required */
        tp_conn_close_fn on_close;     /* required */
        void *userdata;
} tp_conn_opts;

/* Connects to host:port (a name or an IPv4/IPv6 address; IPv4 is preferred
 * when a name has both). The result arrives through the callbacks: messages,
 * or on_close with the reason. Returns 0 (*ret set) or -errno, in which case
 * no callback is ever called. */
int tp_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, const tp_conn_opts *o, tp_conn **ret);

/* Accepts a connection pending on a listening uv_tcp_t (call it from the
 * listener's connection callback). Same contract as tp_conn_connect(). */
int tp_conn_accept(uv_stream_t *server, const tp_conn_opts *o, tp_conn **ret);

/* Sends one message (msg is not stolen). Returns 0, -ESHUTDOWN once the
 * connection is closing, -E2BIG when the message exceeds a frame, -ENOMEM;
 * a failed write closes the connection (on_close says why). */
int tp_conn_send(tp_conn *c, json_t *msg);

/* Closes gracefully: no more messages are delivered; what was sent is
 * written out first (at most 5 s). on_close follows with err 0. Safe to call
 * more than once and from the callbacks. */
void tp_conn_close(tp_conn *c);

/* The peer: "ADDR:PORT" ("[ADDR]:PORT" for IPv6), or host:port as given to
 * connect until it is connected. */
const char *tp_conn_peer(const tp_conn *c);
/* The address this end of the connection has (no port): the address a
 * client reached us on. 0 or a negative errno. */
int tp_conn_local_address(const tp_conn *c, char *buf, size_t size);

/* Whether the connection runs TLS. */
bool tp_conn_is_tls(const tp_conn *c);

/* A server context from a PEM certificate chain and its key. -EINVAL with
 * why when they do not load or do not match, -ENOMEM. */
int tp_tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **ret, tp_cvd_why *why);

/* A client context that verifies the server's certificate against ca_file
 * (PEM), or the system's store when ca_file is NULL; with insecure, no
 * verification at all. -EINVAL with why when ca_file does not load. */
int tp_tls_client_ctx_new(const char *ca_file, bool insecure, SSL_CTX **ret, tp_cvd_why *why);

#endif
