/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * disk.h -- one VM disk reached over the network, whatever the way in: an
 * NBD URI (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=S) or a disk
 * service URL (cvd://HOST:PORT/VM/PATH, the control protocol of
 * docs/cvd-protocol.md, whose answer is again an NBD export).
 *
 * DESIGN: a tp_disk decides what a backup reads (the plan): a full backup
 * reads the extents base:allocation reports as data; an incremental reads
 * what qemu:dirty-bitmap:<since> marks as changed, and skips the parts of
 * those that base:allocation reports as zero (they are zero-filled without
 * crossing the network). When a context is missing the plan falls back (no
 * bitmap: a full read of allocated data; no allocation map: the whole
 * volume) and says so in a note, which the caller shows in its result.
 * Everything runs on the loop thread, callbacks included.
 */
#ifndef TP_DISK_H
#define TP_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/error.h"
#include "dedup/extent.h"
#include "storagepool/pipeline.h"
#include "transport/nbd.h"

typedef struct tp_disk tp_disk;

/* How to authenticate to a disk service (cvd://). */
typedef struct tp_disk_auth {
        const char *token_file; /* shared token */
        const char *user;       /* or platform credentials (TLS only) */
        const char *password_file;
        bool tls;
        const char *tls_ca; /* NULL: the system's CAs */
        bool insecure;      /* do not verify the server's certificate */
} tp_disk_auth;

typedef struct tp_disk_opts {
        const char *source;     /* nbd:// nbd+unix:// or cvd:// */
        bool write;             /* restores */
        const char *since;      /* incremental: the checkpoint (dirty bitmap) to read changes since */
        const char *checkpoint; /* cvd: the checkpoint the disk service creates for the next incremental */
        tp_nbd_opts nbd;        /* transport options; uri, dirty_context and write are filled in here */
        tp_disk_auth auth;
} tp_disk_opts;

#define TP_DISK_NOTES_MAX 4

/* r: 0, or -errno; code: the stable error code when the disk service said
 * why (VB_E_AUTH, VB_E_REFUSED...), VB_OK when r alone tells. */
typedef void (*tp_disk_open_fn)(void *userdata, int r, vb_error code, tp_disk *d, const char *message);
typedef void (*tp_disk_done_fn)(void *userdata, int r, const char *message);

/* Starts opening; -EPROTONOSUPPORT for an unknown scheme, -EINVAL with
 * *err (caller frees) for a bad URL or unreadable secret files. */
int tp_disk_open(uv_loop_t *loop, const tp_disk_opts *o, tp_disk_open_fn done, void *userdata, char **err);

uint64_t tp_disk_size(const tp_disk *d);
tp_nbd *tp_disk_nbd(tp_disk *d); /* NULL once tp_disk_commit closed the connections */
const tp_nbd_stats *tp_disk_stats(const tp_disk *d);
/* What the plan had to give up (NULL-terminated, at most TP_DISK_NOTES_MAX). */
const char *const *tp_disk_notes(const tp_disk *d);

/* Fills *read with what to read. incremental asks for the changes since
 * opts.since; *is_incremental tells what the plan really is. */
int tp_disk_plan(tp_disk *d, bool incremental, dd_extents *read, bool *is_incremental, tp_disk_done_fn done,
                 void *userdata);

/* Adds a note of the caller's own (a parent that cannot be trusted...). */
void tp_disk_add_note(tp_disk *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void tp_disk_source(tp_disk *d, sp_source *ret);
void tp_disk_target(tp_disk *d, sp_target *ret);

/* After the restore point is committed: the checkpoint the backup read
 * from is no longer needed (cvd: removed; nbd: nothing to do). */
int tp_disk_commit(tp_disk *d, tp_disk_done_fn done, void *userdata);
/* Closes the data connections and the export but keeps the disk service's
 * session, so that the image is free (a platform snapshot can be deleted,
 * which writes into it) and tp_disk_commit can still remove the old
 * checkpoint afterwards. */
int tp_disk_release(tp_disk *d, tp_disk_done_fn done, void *userdata);

void tp_disk_close(tp_disk *d, void (*done)(void *userdata), void *userdata);

#endif
