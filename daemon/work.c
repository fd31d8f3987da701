/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * work.c -- vb_work_queue (work.h): a function on libuv's worker pool and
 * its completion on the loop, without a uv_work_t in every caller; and
 * lanes, the same on threads of their own.
 *
 * DESIGN: a lane is a FIFO of calls under a mutex, VB_LANE_THREADS threads
 * taking from it, and a list of finished calls that a uv_async_t hands to
 * the loop (one wake-up may carry many).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
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

typedef struct lane_item {
        struct lane_item *next;
        vb_work_fn fn;
        vb_work_done_fn done;
        void *ctx;
        int r;
} lane_item;

struct vb_lane {
        uv_loop_t *loop;
        uv_async_t async;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        lane_item *queue, **queue_tail;
        lane_item *finished, **finished_tail;
        pthread_t threads[VB_LANE_THREADS];
        unsigned n_threads;
        bool stopping;
        size_t pending; /* queued and not delivered (the loop's count) */
};

static void *lane_thread(void *arg)
{
        vb_lane *l = arg;

        pthread_mutex_lock(&l->lock);
        for (;;) {
                lane_item *it;

                while (!l->queue && !l->stopping)
                        pthread_cond_wait(&l->cond, &l->lock);
                if (!l->queue)
                        break;
                it = l->queue;
                l->queue = it->next;
                if (!l->queue)
                        l->queue_tail = &l->queue;
                pthread_mutex_unlock(&l->lock);
                it->r = it->fn(it->ctx);
                it->next = NULL;
                pthread_mutex_lock(&l->lock);
                *l->finished_tail = it;
                l->finished_tail = &it->next;
                if (!l->stopping)
                        uv_async_send(&l->async);
        }
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

static void lane_deliver(uv_async_t *a)
{
        vb_lane *l = a->data;
        lane_item *it;

        pthread_mutex_lock(&l->lock);
        it = l->finished;
        l->finished = NULL;
        l->finished_tail = &l->finished;
        pthread_mutex_unlock(&l->lock);
        while (it) {
                lane_item *next = it->next;

                /* Like uv_queue_work: the loop lives while calls are pending. */
                if (--l->pending == 0)
                        uv_unref((uv_handle_t *)&l->async);
                it->done(it->ctx, it->r);
                free(it);
                it = next;
        }
}

int vb_lane_new(uv_loop_t *loop, vb_lane **ret)
{
        vb_lane *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->loop = loop;
        l->queue_tail = &l->queue;
        l->finished_tail = &l->finished;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        r = uv_async_init(loop, &l->async, lane_deliver);
        if (r < 0) {
                free(l);
                return r;
        }
        l->async.data = l;
        uv_unref((uv_handle_t *)&l->async);
        for (; l->n_threads < VB_LANE_THREADS; l->n_threads++) {
                r = pthread_create(&l->threads[l->n_threads], NULL, lane_thread, l);
                if (r != 0)
                        break;
        }
        if (l->n_threads == 0) {
                vb_lane_free(l);
                return -r;
        }
        *ret = l;
        return 0;
}

int vb_lane_queue(vb_lane *l, vb_work_fn fn, vb_work_done_fn done, void *ctx)
{
        lane_item *it;

        if (!l || !fn || !done)
                return -EINVAL;
        it = calloc(1, sizeof(*it));
        if (!it)
                return -ENOMEM;
        *it = (lane_item){ .fn = fn, .done = done, .ctx = ctx };
        pthread_mutex_lock(&l->lock);
        if (l->stopping) {
                pthread_mutex_unlock(&l->lock);
                free(it);
                return -ESHUTDOWN;
        }
        *l->queue_tail = it;
        l->queue_tail = &it->next;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
        if (l->pending++ == 0)
                uv_ref((uv_handle_t *)&l->async);
        return 0;
}

static void lane_closed(uv_handle_t *h)
{
        vb_lane *l = h->data;

        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->cond);
        free(l);
}

void vb_lane_free(vb_lane *l)
{
        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        for (unsigned i = 0; i < l->n_threads; i++)
                pthread_join(l->threads[i], NULL);
        for (lane_item *it = l->finished, *next; it; it = next) {
                next = it->next;
                free(it);
        }
        uv_close((uv_handle_t *)&l->async, lane_closed);
        uv_run(l->loop, UV_RUN_NOWAIT);
}
