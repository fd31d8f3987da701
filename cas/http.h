/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * http.h -- the transport of the H3C CAS (CVM) REST client: HTTP(S)
 * requests to one CVM with Digest authentication, run by libcurl's multi
 * interface on the libuv loop (cas-api.md §1, §2, §5).
 *
 * DESIGN
 * - One cas_http per CVM. Each request is an easy handle on the client's
 *   multi handle; curl tells which sockets to watch (a uv_poll each) and
 *   when to call it back (one uv_timer), and the loop calls
 *   curl_multi_socket_action(). Nothing blocks the loop: name resolution is
 *   curl's asynchronous resolver, connects and TLS handshakes are
 *   non-blocking.
 * - Connections stay open in the multi handle's connection cache and are
 *   reused by later requests. Finished easy handles are kept (a few) and
 *   reused too, because a handle remembers the Digest nonce: a reused handle
 *   answers the challenge at once instead of paying a 401 round trip per
 *   request (the CVM lets a nonce be reused with growing nc, §6).
 * - A 401 to a Digest answer is retried once, 1.1 s later, with a fresh
 *   challenge: servers that derive the nonce from the time in seconds and
 *   the path (libmicrohttpd, under the simulator) give two handles
 *   challenged together the same nonce and refuse the second one's count as
 *   a replay. Wrong credentials therefore take that much longer to report.
 * - Every request completes exactly once, through its done callback, on the
 *   loop and never from inside cas_http_request(). The response lives only
 *   during that call.
 * - What the driver needs from the headers is collected case-insensitively
 *   (`Total` §1.4, `Error-Code` / `Error-Message` / `charset` §5,
 *   `Content-Type`) from the final response only: the 401 challenge that
 *   Digest answers, and any 100 Continue, are forgotten.
 * - TLS: the peer and host name are verified unless the insecure option is
 *   set (CAS ships a self-signed certificate; cas-api.md §1.1). A failed
 *   verification is reported as a network error (VB_E_NETWORK) whose message
 *   says to give the CA file or to use the insecure option: the credentials
 *   were never sent, so it is not an authentication failure.
 * - The error mapping lives in cas_http_error() only.
 */
#ifndef VB_CAS_HTTP_H
#define VB_CAS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/error.h"

/* The REST root on a CVM (cas-api.md §1.1). */
#define CAS_HTTP_PREFIX "/cas/casrs"
#define CAS_HTTP_TIMEOUT_MS_DEFAULT 60000u
/* Larger bodies fail the request (CAS lists are paged, §1.4). */
#define CAS_HTTP_MAX_BODY (64u << 20)

typedef struct cas_http cas_http;

typedef struct cas_http_options {
        /* http[s]://HOST[:PORT][/PREFIX]. The port defaults to 8080 for http
         * and 8443 for https, the prefix to CAS_HTTP_PREFIX. Required. */
        const char *url;
        const char *user;     /* required */
        const char *password; /* required (may be "") */
        bool insecure;        /* do not verify the server's certificate or host name */
        const char *ca_file;  /* PEM bundle to verify the server with, instead of the system's */
        unsigned timeout_ms;  /* per request, connect included; 0: CAS_HTTP_TIMEOUT_MS_DEFAULT */
        bool xml;             /* Accept: application/xml instead of application/json */
} cas_http_options;

typedef struct cas_http_response {
        /* What was asked, for messages. */
        const char *cvm;    /* "HOST:PORT" */
        const char *method; /* "GET" */
        const char *path;   /* as given to cas_http_request(), e.g. "/vm/vmList?offset=0" */

        /* Transport. curl_code is a CURLcode: 0 (CURLE_OK) when an HTTP
         * response arrived, whatever its status. curl_error is curl's own
         * message ("" when curl_code is 0). cancelled: the client was
         * closed first (curl_code is then CURLE_ABORTED_BY_CALLBACK). */
        int curl_code;
        const char *curl_error;
        bool cancelled;

        /* HTTP: the final status (0 when none arrived) and body, which is
         * NUL-terminated after body_len bytes (never NULL). */
        long status;
        const char *body;
        size_t body_len;

        /* Headers of the final response, NULL when absent. Values are raw
         * bytes with the surrounding blanks removed; error_message may be in
         * any charset (GBK with `charset: GBK`, §5) and is NUL-terminated
         * after error_message_len bytes. total is the `Total` header parsed,
         * -1 when absent or not a number. */
        const char *content_type;
        const char *charset;
        const char *error_code;
        const char *error_message;
        size_t error_message_len;
        const char *total_raw;
        int64_t total;
} cas_http_response;

typedef void (*cas_http_done_fn)(void *userdata, const cas_http_response *r);
typedef void (*cas_http_closed_fn)(void *userdata);

/* Creates a client on loop. Returns 0, -EINVAL (bad options or URL) or
 * -ENOMEM. Nothing is sent until the first request. */
int cas_http_new(uv_loop_t *loop, const cas_http_options *o, cas_http **ret);

/* "HOST:PORT" of the CVM, for messages. */
const char *cas_http_cvm(const cas_http *c);

/* Starts a request. method: "GET", "PUT", "POST", "DELETE", ...;
 * path_and_query: below the prefix ("/vm/vmList?offset=0&limit=100", the
 * leading '/' optional), already URL-encoded, no blanks or control
 * characters. body (NULL for none) is copied; content_type applies to it
 * (NULL: application/json or application/xml after the Accept setting).
 * PUT, POST and the like without a body send Content-Length: 0.
 * Returns 0 (done will be called exactly once, later, on the loop),
 * -EINVAL, -ESHUTDOWN (the client is closing) or -ENOMEM (done is not
 * called). */
int cas_http_request(cas_http *c, const char *method, const char *path_and_query, const char *body,
                     const char *content_type, cas_http_done_fn done, void *userdata);

/* The number of requests started and not completed yet. */
size_t cas_http_pending(const cas_http *c);

/* Closes the client: every pending request completes at once (inside this
 * call) with cancelled set, open connections are closed, and once the loop
 * has closed the uv handles, closed(userdata) is called (if not NULL) and
 * the client is freed. Safe to call from a done callback. c may be NULL. */
void cas_http_close(cas_http *c, cas_http_closed_fn closed, void *userdata);

/* The vbak error code for a response and a one-line message naming the CVM
 * and the request, e.g. "CVM 127.0.0.1:8080: GET /vm/vmList: 401
 * unauthorized: check the user and password". 2xx gives VB_OK and "".
 *   cancelled                                -> VB_E_INTERRUPTED
 *   connection refused/reset, DNS, timeout,
 *   TLS handshake or verification failure    -> VB_E_NETWORK
 *   unreadable CA file or client certificate -> VB_E_USAGE
 *   401 (after Digest)                       -> VB_E_AUTH
 *   409 with Error-Code 304/402/603/1001
 *   ("... does not exist", §5)               -> VB_E_NOT_FOUND
 *   other 409, 403, 4xx, 5xx                 -> VB_E_REFUSED
 *   3xx, 1xx, a response curl cannot parse,
 *   a body over CAS_HTTP_MAX_BODY            -> VB_E_PROTOCOL
 * A 409's Error-Message is decoded to UTF-8 (after its `charset` header,
 * else UTF-8 if valid, else GBK) and put in the message with Error-Code. */
vb_error cas_http_error(const cas_http_response *r, char *msg, size_t size);

#endif
