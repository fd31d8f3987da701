/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pipeline.h -- moves one disk between a source and a pool: backup (read
 * extents, prepare chunks on the worker pool, commit them in order) and
 * restore (read chunks on the worker pool, write them to a target).
 *
 * DESIGN: both run on a libuv loop. The loop thread only walks the extents,
 * hands chunks to uv_queue_work and commits results in chunk order; reading
 * the source, zero detection, hashing, compression and pool I/O happen on
 * the worker threads. A fixed window of slots, each with its own buffers
 * and codec state, bounds memory to window x (chunk + compressed chunk [+
 * one more chunk for patching]), whatever the size of the disk.
 */
#ifndef SP_PIPELINE_H
#define SP_PIPELINE_H

#include <stdint.h>
#include <uv.h>

#include "dedup/extent.h"
#include "storagepool/sp.h"

#define SP_PIPELINE_WINDOW_DEFAULT 8
#define SP_PIPELINE_WINDOW_MAX 64

/* Completion of an asynchronous read or write: r is 0 or -errno. Called on
 * the loop thread, never from inside the call that started the I/O. */
typedef void (*sp_io_done_fn)(void *cb_data, int r);

/* Where a backup reads from: either read(), called from worker threads,
 * several at once (thread-safe; files), or read_async(), called on the loop
 * thread, which starts the read and calls done on the loop when buf holds
 * the bytes (network sources). Exactly one of the two is set. */
typedef struct sp_source {
        int (*read)(void *userdata, uint64_t offset, void *buf, size_t len);
        void *userdata;
        int (*read_async)(void *userdata, uint64_t offset, void *buf, size_t len, sp_io_done_fn done, void *cb_data);
} sp_source;

/* Where a restore writes to: write() and zero() from worker threads, or the
 * _async variants on the loop thread (network targets). zero() may be NULL
 * when the target already reads as zeros (a new sparse file).
 * flush_async, when set, runs once after the last write and before done. */
typedef struct sp_target {
        int (*write)(void *userdata, uint64_t offset, const void *buf, size_t len);
        int (*zero)(void *userdata, uint64_t offset, size_t len);
        void *userdata;
        int (*write_async)(void *userdata, uint64_t offset, const void *buf, size_t len, sp_io_done_fn done,
                           void *cb_data);
        int (*zero_async)(void *userdata, uint64_t offset, size_t len, sp_io_done_fn done, void *cb_data);
        int (*flush_async)(void *userdata, sp_io_done_fn done, void *cb_data);
} sp_target;

typedef struct sp_pipeline_opts {
        unsigned window; /* chunks in flight; 0: SP_PIPELINE_WINDOW_DEFAULT */
        sp_progress_fn progress;
        void *userdata;
} sp_pipeline_opts;

typedef struct sp_transfer_result {
        uint64_t bytes_total;   /* backup: bytes to read; restore: disk size */
        uint64_t bytes_done;    /* backup: bytes read; restore: bytes written (zero included) */
        uint64_t bytes_new;     /* backup: plain bytes newly stored */
        uint64_t bytes_stored;  /* backup: bytes written to the pool */
        uint64_t chunks;        /* chunks handled on the worker pool */
        uint64_t failed_offset; /* when failing on a chunk: its offset */
        uint64_t seconds_ns;
} sp_transfer_result;

typedef void (*sp_transfer_done_fn)(void *userdata, int r, const sp_transfer_result *res);

/* Starts backing up one disk: extents (normalized, within dw->size) are what
 * to read; every other chunk goes through chunk_skip. done is called once, on
 * the loop, when the disk's last chunk is committed or the first error has
 * drained; dw is then ready for disk_end (or disk_abort). Returns 0, or an
 * error (and then done is never called). */
int sp_backup_start(uv_loop_t *loop, sp_disk_writer *dw, const sp_source *src, const dd_extents *extents,
                    const sp_pipeline_opts *o, sp_transfer_done_fn done, void *userdata);

/* Starts restoring one disk from rd to t: every chunk is read (and checked
 * by digest) by the pool driver; zero chunks go to t->zero. */
int sp_restore_start(uv_loop_t *loop, sp_disk_reader *rd, const sp_target *t, const sp_pipeline_opts *o,
                     sp_transfer_done_fn done, void *userdata);

#endif
