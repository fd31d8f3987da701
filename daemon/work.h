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

/* A lane: threads of its own for short calls that must not wait behind the
 * worker pool's queue (the daemon's catalog and credential calls, which the
 * API answers from, while the pool is busy hashing and compressing chunks
 * of many disks). Calls complete on the loop in the order they finish. */
#define VB_LANE_THREADS 2

typedef struct vb_lane vb_lane;

int vb_lane_new(uv_loop_t *loop, vb_lane **ret);
/* Runs fn(ctx) on one of the lane's threads, then done(ctx, its result) on
 * the loop, which (as with uv_queue_work) keeps running until then. From
 * the loop thread only. 0, or -errno and nothing runs. */
int vb_lane_queue(vb_lane *l, vb_work_fn fn, vb_work_done_fn done, void *ctx);
/* Once the loop stopped: lets the threads finish what is queued, joins
 * them and frees the lane; completions not delivered are dropped (their
 * done is not called). Runs the loop once to close its handle. */
void vb_lane_free(vb_lane *l);

#endif
