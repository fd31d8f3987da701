/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * work.h -- a function on libuv's worker pool and its completion on the
 * loop, for what may block (SQLite, fsync, reading many files).
 */
#ifndef VB_WORK_H
#define VB_WORK_H

#include <uv.h>

/* Runs fn(ctx) on a worker thread, then done(ctx, its result) on the loop
 * (-ECANCELED when the loop cancelled it). 0, or -errno and nothing runs. */
typedef int (*vb_work_fn)(void *ctx);
typedef void (*vb_work_done_fn)(void *ctx, int r);
int vb_work_queue(uv_loop_t *loop, vb_work_fn fn, vb_work_done_fn done, void *ctx);

#endif
