/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * work.c -- vb_work_queue (work.h): a function on libuv's worker pool and
 * its completion on the loop, without a uv_work_t in every caller.
 */
#include <errno.h>
#include <stdlib.h>

#include "daemon/work.h"

typedef struct work {
        uv_work_t req;
        vb_work_fn fn;
        vb_work_done_fn done;
        void *ctx;
        int r;
} work;

static void work_run(uv_work_t *req)
{
        work *w = req->data;

        w->r = w->fn(w->ctx);
}

static void work_after(uv_work_t *req, int status)
{
        work *w = req->data;

        w->done(w->ctx, status == UV_ECANCELED ? -ECANCELED : w->r);
        free(w);
}

int vb_work_queue(uv_loop_t *loop, vb_work_fn fn, vb_work_done_fn done, void *ctx)
{
        work *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        *w = (work){ .fn = fn, .done = done, .ctx = ctx };
        w->req.data = w;
        r = uv_queue_work(loop, &w->req, work_run, work_after);
        if (r < 0)
                free(w);
        return r;
}
