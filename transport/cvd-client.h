/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-client.h -- the client of the CVD-style control protocol
 * (docs/cvd-protocol.md) on a libuv loop: connect (welcome + hello), open
 * and close disks, manage dirty bitmaps, ping.
 *
 * DESIGN: one tp_cvd_client is one control connection, that is one session
 * on the server: the exports it opens live as long as it does. Requests may
 * be issued back to back; the server answers them in order, so replies are
 * matched to the oldest request waiting. Once connected, the client pings
 * every third of min(the server's idle timeout, its own network timeout) by
 * itself, which keeps the session alive between requests and notices a dead
 * server within the network timeout.
 *
 * Results. Every callback gets `int r`: 0 on success, otherwise a vbak
 * error code (daemon/error.h, positive) and `msg`, one line that names the
 * server ("vbak-cvd at 10.0.0.5:8192 refused disk.open of /etc/passwd (vm
 * vm1): /etc/passwd is outside the served image folders"); msg is NULL when
 * r is 0. The codes:
 *   VB_E_NETWORK   cannot connect, the connection dropped, nothing heard
 *                  for the network timeout
 *   VB_E_AUTH      the server refused the token or the credentials, or its
 *                  TLS certificate did not verify
 *   VB_E_PROTOCOL  the server broke the protocol, or speaks no version we do
 *   VB_E_REFUSED   the server refused: a path outside its image folders, no
 *                  free client slot or data port, a disk busy in another
 *                  session
 *   VB_E_NOT_FOUND, VB_E_EXISTS, VB_E_USAGE (the server found an argument
 *                  invalid), VB_E_SOURCE (a QEMU tool failed on the server),
 *                  VB_E_FAILED (the server's internal error)
 * Functions that start something return 0 or -errno synchronously
 * (-EINVAL, -ENOMEM, -ENOTCONN when the client is not connected or already
 * lost); when they fail, their callback is never called. Callbacks run on
 * the loop, never from inside the call that started the request; each is
 * called exactly once unless tp_cvd_client_close() came first. Reply
 * structs and msg are borrowed for the duration of the callback.
 */
#ifndef TP_CVD_CLIENT_H
#define TP_CVD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "transport/cvd-proto.h"

#define TP_CVD_CLIENT_TIMEOUT_MS_DEFAULT 60000

/* cvd://HOST[:PORT][/VM/ABS/PATH/OF/IMAGE][?snapshot=S] */
typedef struct tp_cvd_url {
        char *host; /* without brackets for IPv6 */
        uint16_t port;
        char *vm;       /* NULL when the URL names no disk */
        char *path;     /* "/ABS/PATH/OF/IMAGE", percent-decoded; NULL with vm */
        char *snapshot; /* NULL: the live image */
} tp_cvd_url;

/* Parses a cvd:// URL; the port defaults to 8192. Returns 0, or -EINVAL
 * with *ret_why (a static string) saying what is wrong; -ENOMEM. */
int tp_cvd_url_parse(const char *s, tp_cvd_url *ret, const char **ret_why);
void tp_cvd_url_done(tp_cvd_url *u);

typedef struct tp_cvd_client tp_cvd_client;

typedef void (*tp_cvd_done_fn)(tp_cvd_client *c, int r, const char *msg, void *userdata);
typedef void (*tp_cvd_open_fn)(tp_cvd_client *c, int r, const char *msg, const tp_cvd_open_reply *reply,
                               void *userdata);
typedef void (*tp_cvd_bitmaps_fn)(tp_cvd_client *c, int r, const char *msg, const tp_cvd_bitmap_list_reply *reply,
                                  void *userdata);
typedef void (*tp_cvd_ping_fn)(tp_cvd_client *c, int r, const char *msg, int64_t server_time, void *userdata);

typedef struct tp_cvd_client_opts {
        const char *host;
        uint16_t port;               /* 0: 8192 */
        const char *token;           /* token authentication, or NULL */
        const char *user, *password; /* password authentication (needs tls), or NULL */
        bool tls;
        const char *ca_file;     /* with tls: PEM CA certificates; NULL: the system's store */
        bool insecure;           /* with tls: do not verify the server's certificate */
        uint64_t timeout_ms;     /* the network timeout; 0: TP_CVD_CLIENT_TIMEOUT_MS_DEFAULT */
        const char *client_name; /* sent in hello; NULL: "vbak/<version>" */
        /* Optional: the session ended by itself after a successful connect
         * (r and msg as above). Its exports are gone. Not called after
         * tp_cvd_client_close(). */
        tp_cvd_done_fn on_lost;
        void *lost_userdata;
} tp_cvd_client_opts;

/* What the server said about the session; valid once connected. */
typedef struct tp_cvd_session_info {
        const char *server;  /* "vbak-cvd/0.1.0" */
        const char *session; /* the server's id of this session, for its logs */
        uint32_t version;    /* the protocol version spoken */
        uint32_t timeout;    /* the server's idle timeout, seconds */
        bool tls;
} tp_cvd_session_info;

/* Connects, reads the welcome and authenticates (token if given, else user
 * and password); cb(r == 0) means ready for requests. Returns -EINVAL (with
 * why) for bad options: no host, neither token nor user and password, a
 * password without tls, a CA file that does not load; -ENOMEM. On success
 * *ret is the client, to be closed with tp_cvd_client_close() in every case,
 * including after a failed connect. */
int tp_cvd_client_connect(uv_loop_t *loop, const tp_cvd_client_opts *o, tp_cvd_done_fn cb, void *userdata,
                          tp_cvd_client **ret, tp_cvd_why *why);

/* disk.open: names and path are checked first (-EINVAL). */
int tp_cvd_disk_open(tp_cvd_client *c, const tp_cvd_open_req *rq, tp_cvd_open_fn cb, void *userdata);

/* disk.close of a handle from a disk.open reply. */
int tp_cvd_disk_close(tp_cvd_client *c, const char *handle, tp_cvd_done_fn cb, void *userdata);

int tp_cvd_bitmap_create(tp_cvd_client *c, const char *vm, const char *path, const char *name, tp_cvd_done_fn cb,
                         void *userdata);
int tp_cvd_bitmap_remove(tp_cvd_client *c, const char *vm, const char *path, const char *name, tp_cvd_done_fn cb,
                         void *userdata);
int tp_cvd_bitmap_list(tp_cvd_client *c, const char *vm, const char *path, tp_cvd_bitmaps_fn cb, void *userdata);

/* An explicit ping (the automatic ones need none). */
int tp_cvd_ping(tp_cvd_client *c, tp_cvd_ping_fn cb, void *userdata);

/* NULL until connected. */
const tp_cvd_session_info *tp_cvd_client_info(const tp_cvd_client *c);

/* Ends the session (the server then closes its exports) and frees the
 * client once its handles are closed, on a later loop iteration. Pending
 * callbacks are dropped, never called. NULL is fine. */
void tp_cvd_client_close(tp_cvd_client *c);

/* Runs the loop until *done is true (set by a callback). Returns 0, or
 * -EDEADLK when the loop has nothing left that could set it. */
int tp_cvd_run_until(uv_loop_t *loop, const bool *done);

#endif
