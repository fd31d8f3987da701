/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-work.c -- lanes (daemon/work.h): every call runs off the loop thread
 * and completes on it with its result, also while libuv's worker pool is
 * full of long jobs; a lane freed with calls queued runs them but drops
 * their completions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/work.h"
#include "tests/unit/test.h"

#define N_CALLS 200

typedef struct state {
        pthread_t loop_thread;
        atomic_int ran;
        int done;
        int sum;
        bool off_loop, on_loop;
        uv_loop_t *loop;
} state;

typedef struct call {
        state *st;
        int value;
} call;

static call calls[N_CALLS];

static int run_call(void *ctx)
{
        call *c = ctx;

        if (pthread_equal(pthread_self(), c->st->loop_thread))
                c->st->off_loop = false;
        atomic_fetch_add(&c->st->ran, 1);
        return c->value * 2;
}

static void call_done(void *ctx, int r)
{
        call *c = ctx;

        if (!pthread_equal(pthread_self(), c->st->loop_thread))
                c->st->on_loop = false;
        c->st->sum += r;
        if (++c->st->done == N_CALLS)
                uv_stop(c->st->loop);
}

TEST(lane_runs_off_the_loop_and_completes_on_it)
{
        uv_loop_t loop;
        state st = { .loop_thread = pthread_self(), .off_loop = true, .on_loop = true, .loop = &loop };
        vb_lane *l;
        int want = 0;

        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(vb_lane_new(&loop, &l));
        for (int i = 0; i < N_CALLS; i++) {
                calls[i] = (call){ .st = &st, .value = i };
                want += 2 * i;
                ASSERT_OK(vb_lane_queue(l, run_call, call_done, &calls[i]));
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        ASSERT_EQ(st.done, N_CALLS);
        ASSERT_EQ(st.sum, want);
        ASSERT_TRUE(st.off_loop);
        ASSERT_TRUE(st.on_loop);
        vb_lane_free(l);
        ASSERT_OK(uv_loop_close(&loop));
}

/* The worker pool busy with slow jobs does not hold a lane's calls up. */
static int slow_finished;

static void slow_work(uv_work_t *req)
{
        (void)req;
        usleep(500 * 1000);
}

static void slow_after(uv_work_t *req, int status)
{
        (void)req;
        (void)status;
        slow_finished++;
}

static void one_done(void *ctx, int r)
{
        state *st = ctx;

        st->sum = r;
        st->done = 1;
        st->ran = slow_finished; /* how many slow jobs were done by then */
        uv_stop(st->loop);
}

static int quick(void *ctx)
{
        (void)ctx;
        return 42;
}

TEST(lane_does_not_wait_for_the_worker_pool)
{
        uv_loop_t loop;
        uv_work_t slow[8];
        state st = { .loop = &loop };
        vb_lane *l;

        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(vb_lane_new(&loop, &l));
        for (size_t i = 0; i < 8; i++)
                ASSERT_OK(uv_queue_work(&loop, &slow[i], slow_work, slow_after));
        ASSERT_OK(vb_lane_queue(l, quick, one_done, &st));
        uv_run(&loop, UV_RUN_DEFAULT);
        ASSERT_EQ(st.done, 1);
        ASSERT_EQ(st.sum, 42);
        /* Queued after 8 jobs that fill every pool thread, the lane's call
         * was back before any of them. */
        ASSERT_EQ(atomic_load(&st.ran), 0);
        uv_run(&loop, UV_RUN_DEFAULT); /* the slow jobs end */
        ASSERT_EQ(slow_finished, 8);
        vb_lane_free(l);
        ASSERT_OK(uv_loop_close(&loop));
}

static void never(void *ctx, int r)
{
        (void)ctx;
        (void)r;
        abort();
}

TEST(lane_free_runs_queued_calls_and_drops_their_completions)
{
        uv_loop_t loop;
        state st = { .loop_thread = pthread_self(), .off_loop = true };
        vb_lane *l;

        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(vb_lane_new(&loop, &l));
        for (int i = 0; i < N_CALLS; i++) {
                calls[i] = (call){ .st = &st, .value = i };
                ASSERT_OK(vb_lane_queue(l, run_call, never, &calls[i]));
        }
        vb_lane_free(l);
        ASSERT_EQ(atomic_load(&st.ran), N_CALLS);
        ASSERT_OK(uv_loop_close(&loop));
        ASSERT_ERR(vb_lane_queue(NULL, run_call, never, NULL), EINVAL);
}
