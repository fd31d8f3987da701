/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-pipeline.c -- the backup and restore pipelines against a recording
 * driver: commits in chunk order whatever order the workers finish in, every
 * chunk committed or skipped exactly once, only the extents read, errors
 * drained and reported with their offset, at most `window` chunks in flight.
 */
#include <stdatomic.h>

#include "dedup/index.h"
#include "tests/unit/pool-util.h"

#define CHUNK 4096u

typedef struct rec {
        sp_disk_writer base;
        uint64_t next; /* next index expected by commit/skip */
        uint64_t committed, skipped;
        atomic_int in_flight, max_in_flight;
        uint64_t fail_index; /* prepare fails here (UINT64_MAX: never) */
        bool order_broken;
        uint8_t *image; /* what commit saw, to compare with the source */
} rec;

static int rec_prepare(sp_disk_writer *base, sp_chunk *c)
{
        rec *r = container_of(base, rec, base);
        int now = atomic_fetch_add(&r->in_flight, 1) + 1, max;

        while (now > (max = atomic_load(&r->max_in_flight)) &&
               !atomic_compare_exchange_weak(&r->max_in_flight, &max, now))
                ;
        usleep((useconds_t)((c->index * 7919) % 5) * 300); /* finish out of order */
        atomic_fetch_sub(&r->in_flight, 1);
        return c->index == r->fail_index ? -EIO : 0;
}

static int rec_commit(sp_disk_writer *base, sp_chunk *c)
{
        rec *r = container_of(base, rec, base);

        if (c->index != r->next)
                r->order_broken = true;
        memcpy(r->image + c->offset, c->data, c->length);
        r->next++;
        r->committed++;
        return 0;
}

static int rec_skip(sp_disk_writer *base, uint64_t index)
{
        rec *r = container_of(base, rec, base);

        if (index != r->next)
                r->order_broken = true;
        r->next++;
        r->skipped++;
        return 0;
}

static const sp_driver rec_driver = {
        .name = "recording",
        .chunk_prepare = rec_prepare,
        .chunk_commit = rec_commit,
        .chunk_skip = rec_skip,
};

struct harness {
        sp_pool pool;
        sp_writer w;
        rec r;
};

static void harness_init(struct harness *h, uint64_t size)
{
        memset(h, 0, sizeof(*h));
        h->pool.drv = &rec_driver;
        h->w.pool = &h->pool;
        h->r.base = (sp_disk_writer){ .w = &h->w, .size = size, .chunk_size = CHUNK };
        h->r.fail_index = UINT64_MAX;
        h->r.image = calloc(1, size ? size : 1);
}

static int mem_read(void *userdata, uint64_t off, void *buf, size_t len)
{
        memcpy(buf, (uint8_t *)userdata + off, len);
        return 0;
}

static int run_backup(struct harness *h, uint8_t *src_data, const dd_extents *e, unsigned window,
                      sp_transfer_result *res)
{
        sp_source src = { .read = mem_read, .userdata = src_data };
        sp_pipeline_opts o = { .window = window };
        struct tp_done d = { 1, { 0 } };
        uv_loop_t loop;
        int r;

        ASSERT_OK(uv_loop_init(&loop));
        r = sp_backup_start(&loop, &h->r.base, &src, e, &o, tp_on_done, &d);
        if (r >= 0) {
                uv_run(&loop, UV_RUN_DEFAULT);
                ASSERT_TRUE(d.r != 1); /* done was called */
                r = d.r;
        }
        ASSERT_OK(uv_loop_close(&loop));
        *res = d.res;
        return r;
}

TEST(commits_in_order_and_reads_only_extents)
{
        uint64_t size = 300 * CHUNK + 123;
        uint8_t *src = malloc(size);
        struct harness h;
        dd_extents e = DD_EXTENTS_INIT;
        sp_transfer_result res;

        tp_fill(src, size, 7);
        harness_init(&h, size);
        ASSERT_OK(dd_extents_add(&e, 10, 100));
        ASSERT_OK(dd_extents_add(&e, 5 * CHUNK - 10, 3 * CHUNK));
        for (uint64_t i = 20; i < 200; i += 3)
                ASSERT_OK(dd_extents_add(&e, i * CHUNK + 1, CHUNK - 2));
        ASSERT_OK(dd_extents_add(&e, size - 23, 23));
        ASSERT_OK(dd_extents_normalize(&e, size));

        ASSERT_OK(run_backup(&h, src, &e, 6, &res));
        ASSERT_TRUE(!h.r.order_broken);
        ASSERT_UEQ(h.r.committed + h.r.skipped, dd_chunk_count(size, CHUNK));
        ASSERT_UEQ(h.r.next, dd_chunk_count(size, CHUNK));
        ASSERT_UEQ(res.bytes_done, dd_extents_total(&e));
        ASSERT_UEQ(res.bytes_total, dd_extents_total(&e));
        ASSERT_TRUE(h.r.max_in_flight <= 6 && h.r.max_in_flight >= 2);
        /* Committed chunks hold the source's bytes where extents are, zeros elsewhere. */
        for (size_t k = 0; k < e.n; k++)
                ASSERT_MEMEQ(h.r.image + e.v[k].offset, src + e.v[k].offset, e.v[k].length);
        ASSERT_TRUE(h.r.image[0] == 0 && h.r.image[9] == 0 && h.r.image[110] == 0);
        dd_extents_clear(&e);
        free(h.r.image);
        free(src);
}

TEST(an_error_is_drained_and_reported_with_its_offset)
{
        uint64_t size = 64 * CHUNK;
        uint8_t *src = malloc(size);
        struct harness h;
        dd_extents e = DD_EXTENTS_INIT;
        sp_transfer_result res;

        tp_fill(src, size, 8);
        harness_init(&h, size);
        h.r.fail_index = 17;
        ASSERT_OK(dd_extents_add(&e, 0, size));
        ASSERT_ERR(run_backup(&h, src, &e, 8, &res), EIO);
        ASSERT_UEQ(res.failed_offset, 17 * CHUNK);
        ASSERT_TRUE(h.r.committed <= 17);
        ASSERT_TRUE(!h.r.order_broken);
        ASSERT_EQ(atomic_load(&h.r.in_flight), 0);
        dd_extents_clear(&e);
        free(h.r.image);
        free(src);
}

TEST(an_empty_disk_and_no_extents)
{
        struct harness h;
        dd_extents e = DD_EXTENTS_INIT;
        sp_transfer_result res;
        uint8_t byte = 0;

        harness_init(&h, 0);
        ASSERT_OK(run_backup(&h, &byte, &e, 0, &res));
        ASSERT_UEQ(h.r.committed + h.r.skipped, 0);
        free(h.r.image);

        harness_init(&h, 10 * CHUNK);
        ASSERT_OK(run_backup(&h, &byte, &e, 0, &res));
        ASSERT_UEQ(h.r.skipped, 10);
        ASSERT_UEQ(res.bytes_done, 0);
        free(h.r.image);
}

TEST(extents_past_the_end_are_refused)
{
        struct harness h;
        dd_extents e = DD_EXTENTS_INIT;
        sp_source src = { .read = mem_read };
        uv_loop_t loop;
        struct tp_done d;

        harness_init(&h, 4 * CHUNK);
        ASSERT_OK(dd_extents_add(&e, 3 * CHUNK, CHUNK + 1));
        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_ERR(sp_backup_start(&loop, &h.r.base, &src, &e, NULL, tp_on_done, &d), ERANGE);
        ASSERT_OK(uv_loop_close(&loop));
        dd_extents_clear(&e);
        free(h.r.image);
}

/* The real dedup pool through both pipelines with a one-slot window. */
TEST(window_of_one_round_trips)
{
        sp_pool *p = tp_new_pool("pool", "dedup", 1u << 20);
        uint64_t size = (5u << 20) + 77;
        int fd = tp_make_image("disk.img", size);
        dd_manifest *m = NULL;

        tp_write_random(fd, 100, (3u << 20) + 5, 3);
        tp_write_random(fd, size - 50, 50, 4);
        ASSERT_OK(tp_backup(p, "vm", fd, size, NULL, NULL, 1, &m, NULL));
        ASSERT_OK(tp_restore(p, m, "out.img", NULL));
        ASSERT_TRUE(tp_same_files("disk.img", "out.img"));
        dd_manifest_free(m);
        close(fd);
        sp_pool_close(p);
}
