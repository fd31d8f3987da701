/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd.h -- the NBD data plane: one disk, read or written over 1-5 NBD
 * connections with libnbd's asynchronous API, driven by the libuv loop.
 *
 * DESIGN: the caller hands in reads and writes of any size; they are cut
 * into requests of the read/write buffer size and spread over the
 * connections, several in flight on each, at most the resume buffer's worth
 * in flight in all. Each connection's socket sits on a uv_poll; libnbd's
 * completion callbacks only note what finished, and the loop acts on it
 * after libnbd returns (never calling libnbd from its own callbacks).
 *
 * A connection that drops, or whose oldest request waits longer than the
 * network timeout, is closed; its unacknowledged requests go back to the
 * head of the queue, and the connection is re-opened with backoff until the
 * reconnect window runs out. Nothing is acknowledged to the caller before
 * the server answered it, so a resumed read or write neither loses nor
 * duplicates anything; what is read twice is at most what was in flight
 * (the resume buffer). When a plain reconnect fails and a reopen hook is
 * set (the CVD client), the hook is asked for a new URI first (the disk
 * service may have to open the disk again). A connection down longer than
 * the window fails the whole disk with -ETIMEDOUT and a message.
 *
 * Every function runs on the loop thread; every callback is called on it,
 * never from inside the call that started the operation.
 */
#ifndef TP_NBD_H
#define TP_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dedup/extent.h"
#include "storagepool/pipeline.h"

#define TP_NBD_CONNECTIONS_MAX 5
#define TP_NBD_REQUEST_MIN (64u << 10)
#define TP_NBD_REQUEST_MAX (8u << 20)
#define TP_NBD_REQUEST_DEFAULT (1u << 20)
#define TP_NBD_RESUME_BUFFER_DEFAULT (10ull << 20)
#define TP_NBD_RECONNECT_WINDOW_DEFAULT_MS (10ull * 60 * 1000)
#define TP_NBD_TIMEOUT_DEFAULT_MS (10ull * 60 * 1000)

#define TP_CONTEXT_ALLOCATION "base:allocation"
#define TP_CONTEXT_DIRTY_PREFIX "qemu:dirty-bitmap:"

typedef struct tp_nbd tp_nbd;
struct tp_bucket;

typedef void (*tp_nbd_reopen_done_fn)(tp_nbd *n, int r, const char *uri);
/* Asks for a fresh URI of the same disk (see DESIGN); calls done once. */
typedef void (*tp_nbd_reopen_fn)(void *userdata, tp_nbd *n, tp_nbd_reopen_done_fn done);

typedef struct tp_nbd_opts {
        const char *uri;              /* nbd://, nbd+unix:// (libnbd's URI forms) */
        unsigned connections;         /* 1-5; 0: 1 */
        uint32_t request_size;        /* a power of two, 64 KiB-8 MiB; 0: 1 MiB */
        uint64_t resume_buffer;       /* most bytes in flight; 0: 10 MiB */
        uint64_t reconnect_window_ms; /* 0: 10 min */
        uint64_t timeout_ms;          /* network timeout; 0: 10 min */
        const char *dirty_context;    /* asked for besides base:allocation, e.g. "qemu:dirty-bitmap:cp1" */
        bool write;                   /* restores: the export must be writable */
        bool keep_allocation;         /* write-zeroes never deallocate (preallocated targets) */
        struct tp_bucket *transfer;   /* shared rate limits (transport/rate.h), may be NULL */
        struct tp_bucket *disk;
        tp_nbd_reopen_fn reopen; /* may be NULL */
        void *reopen_userdata;
} tp_nbd_opts;

typedef struct tp_nbd_stats {
        uint64_t bytes_read;    /* payload received, re-reads included */
        uint64_t bytes_written; /* payload sent (writes), re-sends included */
        uint64_t bytes_resent;  /* requests issued again after a connection was lost */
        uint64_t requests;
        unsigned reconnects; /* connections re-opened */
        unsigned cuts;       /* connections lost */
} tp_nbd_stats;

typedef void (*tp_nbd_open_fn)(void *userdata, int r, tp_nbd *n);
typedef void (*tp_nbd_done_fn)(void *userdata, int r);

/* Connects (every connection) and calls done with the handle, or with an
 * error and NULL (then tp_nbd_error_message() is not available: the message
 * is logged; use tp_nbd_open's errmsg out-parameter instead). A failure to
 * connect at the start is not retried. */
int tp_nbd_open(uv_loop_t *loop, const tp_nbd_opts *o, tp_nbd_open_fn done, void *userdata);

/* The last open error's message, for the open callback's r < 0 case. Valid
 * until the next tp_nbd_open on this thread. */
const char *tp_nbd_open_error(void);

uint64_t tp_nbd_size(const tp_nbd *n);
bool tp_nbd_has_context(const tp_nbd *n, const char *context);
const char *tp_nbd_uri(const tp_nbd *n);
const tp_nbd_stats *tp_nbd_get_stats(const tp_nbd *n);
/* Why the disk failed (connection lost past the window, server error...). */
const char *tp_nbd_error_message(const tp_nbd *n);

/* The extents of the whole disk whose status flags under context match:
 * (flags & mask) == want. base:allocation: mask LIBNBD_STATE_ZERO, want 0 =
 * data worth reading; dirty bitmaps: mask 1, want 1 = changed. */
int tp_nbd_map(tp_nbd *n, const char *context, uint32_t mask, uint32_t want, dd_extents *ret, tp_nbd_done_fn done,
               void *userdata);

int tp_nbd_pread(tp_nbd *n, void *buf, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata);
int tp_nbd_pwrite(tp_nbd *n, const void *buf, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata);
/* Write zeroes (the server may punch a hole: thin targets stay thin). */
int tp_nbd_zero(tp_nbd *n, size_t len, uint64_t offset, tp_nbd_done_fn done, void *userdata);
int tp_nbd_flush(tp_nbd *n, tp_nbd_done_fn done, void *userdata);

/* Closes every connection; done (may be NULL) runs once the handle is gone.
 * Operations still queued fail with -ECANCELED first. */
void tp_nbd_close(tp_nbd *n, void (*done)(void *userdata), void *userdata);

/* The pipeline's view of an open disk (storagepool/pipeline.h): reads skip
 * the network for ranges in zeros (may be NULL; must outlive the source);
 * writes send 64 KiB blocks that are all zero as write-zeroes. */
void tp_nbd_source(tp_nbd *n, const dd_extents *zeros, sp_source *ret);
void tp_nbd_target(tp_nbd *n, sp_target *ret);

#endif
