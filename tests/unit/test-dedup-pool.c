/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-dedup-pool.c -- the dedup pool through the real pipeline: round
 * trips, incrementals with patching, dedup, damage detection, gc and its
 * protocol with a concurrent writer, leftovers of dead writers, stats.
 */
#include <dirent.h>
#include <sys/wait.h>

#include "dedup/index.h"
#include "tests/unit/pool-util.h"

#define MiB (1024 * 1024ULL)

static uint64_t count_files(const char *dir)
{
        char cmd[512];
        FILE *f;
        unsigned long long n = 0;

        snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
        f = popen(cmd, "r");
        ASSERT_TRUE(f);
        ASSERT_EQ(fscanf(f, "%llu", &n), 1);
        pclose(f);
        return n;
}

/* A 20.5 MiB image: data in chunk 0 (partly), chunks 3-5 (whole), an
 * allocated all-zero chunk 8, and the short last chunk. */
static int make_test_image(const char *path, uint64_t *ret_size)
{
        uint64_t size = 20 * MiB + 512 * 1024;
        int fd = tp_make_image(path, size);
        uint8_t *zeros = calloc(1, MiB);

        tp_write_random(fd, 4096, 100000, 1);
        tp_write_random(fd, 3 * MiB, 3 * MiB, 2);
        ASSERT_OK(vb_pwrite_all(fd, zeros, MiB, 8 * MiB));
        tp_write_random(fd, 20 * MiB + 1000, 2000, 3);
        free(zeros);
        *ret_size = size;
        return fd;
}

TEST(full_backup_round_trip)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *m = NULL;
        sp_transfer_result res;
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &m, &res));
        ASSERT_STREQ(m->vm.name, "vm1");
        ASSERT_EQ(m->type, DD_BACKUP_FULL);
        ASSERT_EQ(m->n_disks, 1);
        ASSERT_UEQ(m->disks[0].size, size);
        /* Only allocated data was read: well below the disk size. */
        ASSERT_TRUE(res.bytes_done < 8 * MiB);
        ASSERT_TRUE(res.bytes_done >= 3 * MiB + 100000 + 2000);
        ASSERT_OK(tp_restore(p, m, "out.img", NULL));
        ASSERT_TRUE(tp_same_files("disk.img", "out.img"));
        /* Chunk 0, 3, 4, 5 and the last one are stored; the zero chunk never is. */
        ASSERT_EQ(count_files("pool/chunks"), 5);
        dd_manifest_free(m);
        close(fd);
        sp_pool_close(p);
}

TEST(second_full_backup_stores_nothing_new)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *a = NULL, *b = NULL;
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &a, NULL));
        ASSERT_TRUE(a->disks[0].bytes_new > 0);
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &b, NULL));
        ASSERT_UEQ(b->disks[0].bytes_new, 0);
        ASSERT_UEQ(a->disks[0].bytes_data, b->disks[0].bytes_data);
        ASSERT_TRUE(dd_digest_eq(&a->disks[0].index_checksum, &b->disks[0].index_checksum));
        dd_manifest_free(a);
        dd_manifest_free(b);
        close(fd);
        sp_pool_close(p);
}

TEST(incremental_reads_only_changed_bytes_and_patches)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *full = NULL, *inc = NULL, *inc2 = NULL;
        dd_extents ch = DD_EXTENTS_INIT;
        sp_transfer_result res;
        uint8_t *zeros = calloc(1, 70000);
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &full, NULL));
        ASSERT_TRUE(system("cp --sparse=always disk.img v0.img") == 0);

        /* Small changes inside stored chunks, one across a chunk boundary,
         * one into a formerly unallocated chunk, one back to zeros. */
        tp_write_random(fd, 3 * MiB + 10, 10, 11);
        tp_write_random(fd, 5 * MiB - 100, 300, 12);
        tp_write_random(fd, 12 * MiB + 4096, 4096, 13);
        ASSERT_OK(vb_pwrite_all(fd, zeros, 70000, 4096));
        ASSERT_OK(dd_extents_add(&ch, 3 * MiB + 10, 10));
        ASSERT_OK(dd_extents_add(&ch, 5 * MiB - 100, 300));
        ASSERT_OK(dd_extents_add(&ch, 12 * MiB + 4096, 4096));
        ASSERT_OK(dd_extents_add(&ch, 4096, 70000));
        ASSERT_OK(dd_extents_normalize(&ch, size));
        ASSERT_OK(tp_backup(p, "vm1", fd, size, full->id, &ch, 0, &inc, &res));
        ASSERT_UEQ(res.bytes_done, 10 + 300 + 4096 + 70000);
        ASSERT_EQ(inc->type, DD_BACKUP_INCREMENTAL);
        ASSERT_STREQ(inc->parent, full->id);
        /* Five chunks touched (0, 3, 4, 5 across the boundary... 4 and 5, 12). */
        ASSERT_UEQ(inc->disks[0].bytes_new, 5 * MiB);
        ASSERT_TRUE(system("cp --sparse=always disk.img v1.img") == 0);

        /* A second incremental on top of the first. */
        dd_extents_clear(&ch);
        tp_write_random(fd, 20 * MiB + 100, 50, 14);
        ASSERT_OK(dd_extents_add(&ch, 20 * MiB + 100, 50));
        ASSERT_OK(tp_backup(p, "vm1", fd, size, inc->id, &ch, 0, &inc2, NULL));
        ASSERT_TRUE(system("cp --sparse=always disk.img v2.img") == 0);

        ASSERT_OK(tp_restore(p, full, "r0.img", NULL));
        ASSERT_OK(tp_restore(p, inc, "r1.img", NULL));
        ASSERT_OK(tp_restore(p, inc2, "r2.img", NULL));
        ASSERT_TRUE(tp_same_files("v0.img", "r0.img"));
        ASSERT_TRUE(tp_same_files("v1.img", "r1.img"));
        ASSERT_TRUE(tp_same_files("v2.img", "r2.img"));
        dd_extents_clear(&ch);
        dd_manifest_free(full);
        dd_manifest_free(inc);
        dd_manifest_free(inc2);
        free(zeros);
        close(fd);
        sp_pool_close(p);
}

TEST(incremental_of_unknown_parent_fails)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_extents ch = DD_EXTENTS_INIT;
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(dd_extents_add(&ch, 0, 10));
        ASSERT_ERR(tp_backup(p, "vm1", fd, size, "20000101T000000Z-000000", &ch, 0, NULL, NULL), ENOENT);
        dd_extents_clear(&ch);
        close(fd);
        sp_pool_close(p);
}

/* Finds the path of the stored chunk of chunk index i of m's disk. */
static void chunk_file_of(sp_pool *p, const dd_manifest *m, uint64_t i, char *out, size_t size)
{
        dd_index *idx = NULL;
        int dirfd;
        dd_digest d;
        char hex[DD_DIGEST_HEX_SIZE];

        ASSERT_OK(sp_fs_rp_open(p, m, &dirfd));
        ASSERT_OK(dd_index_open_at(dirfd, m->disks[0].index, &idx));
        ASSERT_OK(dd_index_get(idx, i, &d));
        ASSERT_TRUE(!dd_digest_is_null(&d));
        dd_digest_to_hex(&d, hex);
        snprintf(out, size, "pool/chunks/%.2s/%.2s/%s", hex, hex + 2, hex);
        dd_index_free(idx);
        close(dirfd);
}

struct problems {
        unsigned n;
        char kind[64];
        size_t n_rps;
};

static void collect(void *userdata, const sp_problem *pr)
{
        struct problems *ps = userdata;

        ps->n++;
        snprintf(ps->kind, sizeof(ps->kind), "%s", pr->kind);
        ps->n_rps = pr->n_restore_points;
}

TEST(flipped_byte_is_found_by_restore_and_verify)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *a = NULL, *b = NULL;
        sp_transfer_result res;
        struct problems ps = { 0 };
        sp_verify_opts vo = { .sample_percent = 100, .threads = 2, .problem = collect, .userdata = &ps };
        sp_verify_result vr;
        char path[PATH_MAX];
        uint64_t size;
        uint8_t byte;
        int fd = make_test_image("disk.img", &size), cfd;

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &a, NULL));
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &b, NULL));
        ASSERT_EQ(sp_pool_verify(p, &vo, &vr), 0);
        ASSERT_EQ(vr.restore_points, 2);

        chunk_file_of(p, a, 4, path, sizeof(path));
        cfd = open(path, O_RDWR);
        ASSERT_TRUE(cfd >= 0);
        ASSERT_OK(vb_pread_all(cfd, &byte, 1, 5000));
        byte ^= 0x40;
        ASSERT_OK(vb_pwrite_all(cfd, &byte, 1, 5000));
        close(cfd);

        ASSERT_ERR(tp_restore(p, b, "out.img", &res), EBADMSG);
        ASSERT_UEQ(res.failed_offset, 4 * MiB);
        ASSERT_EQ(sp_pool_verify(p, &vo, &vr), 1);
        ASSERT_STREQ(ps.kind, "chunk-corrupt");
        ASSERT_EQ(ps.n_rps, 2); /* both restore points use that chunk */
        ASSERT_EQ(vr.broken_restore_points, 2);

        ASSERT_TRUE(unlink(path) == 0);
        ASSERT_ERR(tp_restore(p, a, "out.img", NULL), ENODATA);
        ps.n = 0;
        ASSERT_EQ(sp_pool_verify(p, &vo, &vr), 1);
        ASSERT_STREQ(ps.kind, "chunk-missing");
        dd_manifest_free(a);
        dd_manifest_free(b);
        close(fd);
        sp_pool_close(p);
}

TEST(gc_removes_only_unreferenced_chunks)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *a = NULL, *b = NULL;
        sp_gc_opts go = { .grace_seconds = 0 };
        sp_gc_result gr;
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &a, NULL));
        tp_write_random(fd, 10 * MiB, MiB, 99); /* one more chunk in b */
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &b, NULL));
        ASSERT_EQ(count_files("pool/chunks"), 6);
        usleep(20000); /* chunks now older than anything gc does next */

        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 0);
        ASSERT_OK(sp_pool_remove(p, b));
        usleep(20000);
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 1);
        ASSERT_EQ(count_files("pool/chunks"), 5);
        ASSERT_OK(tp_restore(p, a, "out.img", NULL));
        ASSERT_OK(sp_pool_remove(p, a));
        usleep(20000);
        go.dry_run = true;
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 5);
        ASSERT_EQ(count_files("pool/chunks"), 5);
        go.dry_run = false;
        go.grace_seconds = 3600; /* all younger than an hour: kept */
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 0);
        go.grace_seconds = 0;
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 5);
        ASSERT_EQ(count_files("pool/chunks"), 0);
        dd_manifest_free(a);
        dd_manifest_free(b);
        close(fd);
        sp_pool_close(p);
}

/* A writer that started before gc, and dedups against a chunk that no
 * committed restore point references any more, keeps that chunk alive. */
TEST(gc_keeps_what_a_running_writer_relies_on)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *a = NULL, *tmpl = dd_manifest_new(), *done = NULL;
        sp_gc_opts go = { .grace_seconds = 0 };
        sp_gc_result gr;
        sp_writer *w;
        sp_disk_writer *dw;
        sp_chunk c = { 0 };
        uint8_t *data = malloc(MiB);
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        /* A's chunks are on disk but unreferenced once A is removed. */
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, &a, NULL));
        ASSERT_OK(sp_pool_remove(p, a));
        usleep(20000);

        /* A writer starts (lock taken), then gc runs before the writer has
         * looked at any chunk: its start time bounds the cutoff. */
        tmpl->vm.name = strdup("vm1");
        ASSERT_OK(p->drv->begin(p, tmpl, &w));
        ASSERT_OK(p->drv->disk_begin(w, "vda", MiB, &dw));
        usleep(20000);
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 5); /* older than the writer: gone */

        /* The same again, but the writer dedups first, then gc runs. */
        dd_manifest_free(a);
        a = NULL;
        ASSERT_OK(tp_backup(p, "vm2", fd, size, NULL, NULL, 0, &a, NULL));
        ASSERT_OK(sp_pool_remove(p, a));
        usleep(20000);
        p->drv->disk_abort(dw);
        p->drv->abort(w);
        ASSERT_OK(p->drv->begin(p, tmpl, &w));
        ASSERT_OK(p->drv->disk_begin(w, "vda", MiB, &dw));
        ASSERT_OK(vb_pread_all(fd, data, MiB, 3 * MiB)); /* chunk 3 of the image: stored by A */
        c = (sp_chunk){ .index = 0,
                        .length = MiB,
                        .data = data,
                        .whole = true,
                        .ctx = dd_blob_ctx_new(),
                        .scratch_size = dd_blob_bound(MiB),
                        .aux_size = (uint32_t)(dd_blob_bound(MiB) + DD_BLOCK_SIZE) };
        c.scratch = malloc(c.scratch_size);
        ASSERT_OK(p->drv->chunk_prepare(dw, &c));
        ASSERT_UEQ(c.bytes_new, 0); /* a dedup hit */
        usleep(20000);
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.chunks_removed, 4); /* all of A but the one the writer uses */
        ASSERT_OK(p->drv->chunk_commit(dw, &c));
        ASSERT_OK(p->drv->disk_end(dw));
        ASSERT_OK(p->drv->commit(w, &done));
        ASSERT_OK(tp_restore(p, done, "out.img", NULL));
        {
                uint8_t *back = malloc(MiB);
                int rfd = open("out.img", O_RDONLY);
                ASSERT_OK(vb_pread_all(rfd, back, MiB, 0));
                ASSERT_MEMEQ(back, data, MiB);
                close(rfd);
                free(back);
        }
        dd_blob_ctx_free(c.ctx);
        free(c.scratch);
        free(data);
        dd_manifest_free(tmpl);
        dd_manifest_free(a);
        dd_manifest_free(done);
        close(fd);
        sp_pool_close(p);
}

static size_t list_count(sp_pool *p)
{
        dd_manifest **v;
        size_t n;

        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        sp_manifests_free(v, n);
        return n;
}

TEST(dead_writer_leaves_nothing_visible_and_gc_cleans_up)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        sp_gc_opts go = { .grace_seconds = 0 };
        sp_gc_result gr;
        uint64_t size;
        int fd = make_test_image("disk.img", &size), status;
        pid_t pid;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* Begins a restore point, stores chunks, dies before commit. */
                dd_manifest *tmpl = dd_manifest_new();
                sp_writer *w;
                sp_disk_writer *dw;
                tmpl->vm.name = strdup("vm1");
                if (p->drv->begin(p, tmpl, &w) < 0 || p->drv->disk_begin(w, "vda", size, &dw) < 0)
                        _exit(1);
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_EQ(list_count(p), 0);
        ASSERT_TRUE(count_files("pool/vms") >= 1); /* the index temp file */
        ASSERT_TRUE(count_files("pool/locks") >= 1);
        usleep(20000);
        ASSERT_OK(sp_pool_gc(p, &go, &gr));
        ASSERT_UEQ(gr.partial_removed, 1);
        ASSERT_EQ(count_files("pool/vms"), 0);
        ASSERT_EQ(count_files("pool/locks"), 1); /* gc.lock only */
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, NULL, NULL));
        ASSERT_EQ(list_count(p), 1);
        close(fd);
        sp_pool_close(p);
}

TEST(stats_add_up)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        sp_stats st;
        uint64_t size;
        int fd = make_test_image("disk.img", &size);

        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, NULL, NULL));
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 0, NULL, NULL));
        ASSERT_OK(sp_pool_stats(p, &st));
        ASSERT_UEQ(st.restore_points, 2);
        ASSERT_UEQ(st.chunks, 5);
        ASSERT_UEQ(st.logical_bytes, 2 * size);
        ASSERT_UEQ(st.unique_bytes, 4 * MiB + 512 * 1024);
        ASSERT_UEQ(st.data_bytes, 2 * st.unique_bytes);
        ASSERT_TRUE(st.stored_bytes > 0 && st.stored_bytes < st.unique_bytes + 5 * DD_BLOB_HEADER_SIZE);
        close(fd);
        sp_pool_close(p);
}

TEST(pool_open_errors)
{
        sp_pool *p = NULL;
        sp_options o = SP_OPTIONS_DEFAULT;
        int fd;

        ASSERT_ERR(sp_pool_open("nothing", &p), ENOENT);
        ASSERT_OK(sp_pool_create("pool", &o));
        ASSERT_ERR(sp_pool_create("pool", &o), EEXIST);
        fd = open("pool/pool.json", O_WRONLY | O_TRUNC);
        ASSERT_OK(vb_write_all(fd, "{\"format\": \"vbak-pool\"", 22));
        close(fd);
        ASSERT_ERR(sp_pool_open("pool", &p), EBADMSG);
        fd = open("pool/pool.json", O_WRONLY | O_TRUNC);
        const char *v2 = "{\"format\":\"vbak-pool\",\"version\":2,\"type\":\"dedup\",\"uuid\":\"x\",\"chunk_size\":1,"
                         "\"compression\":\"fast\",\"fsync\":\"none\"}";
        ASSERT_OK(vb_write_all(fd, v2, strlen(v2)));
        close(fd);
        ASSERT_ERR(sp_pool_open("pool", &p), EPROTONOSUPPORT);
        o.chunk_size = 3 * 1024 * 1024;
        ASSERT_ERR(sp_pool_create("other", &o), EINVAL);
        o = SP_OPTIONS_DEFAULT;
        o.type = "floppy";
        ASSERT_ERR(sp_pool_create("other", &o), EPROTONOSUPPORT);
}

/* An incremental of a disk that grew: the parent's short last chunk is
 * extended, the chunks past it are new; only the changed bytes are read. */
TEST(incremental_of_a_grown_disk)
{
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *full = NULL, *inc = NULL;
        dd_extents ch = DD_EXTENTS_INIT;
        uint64_t small = 3 * MiB + 70000, big = 5 * MiB + 5;
        int fd = tp_make_image("disk.img", small);

        tp_write_random(fd, 0, small, 21); /* every block has data */
        ASSERT_OK(tp_backup(p, "vm1", fd, small, NULL, NULL, 0, &full, NULL));
        ASSERT_TRUE(ftruncate(fd, (off_t)big) == 0);
        tp_write_random(fd, 3 * MiB + 100, 10, 22);   /* inside the parent's short last chunk */
        tp_write_random(fd, 4 * MiB + 3, 4000, 23);   /* past the parent's end */
        tp_write_random(fd, 2 * MiB + 65530, 20, 24); /* across a block boundary */
        ASSERT_OK(dd_extents_add(&ch, 3 * MiB + 100, 10));
        ASSERT_OK(dd_extents_add(&ch, 4 * MiB + 3, 4000));
        ASSERT_OK(dd_extents_add(&ch, 2 * MiB + 65530, 20));
        ASSERT_OK(dd_extents_normalize(&ch, big));
        ASSERT_OK(tp_backup(p, "vm1", fd, big, full->id, &ch, 0, &inc, NULL));
        ASSERT_OK(tp_restore(p, inc, "out.img", NULL));
        ASSERT_TRUE(tp_same_files("disk.img", "out.img"));
        dd_extents_clear(&ch);
        dd_manifest_free(full);
        dd_manifest_free(inc);
        close(fd);
        sp_pool_close(p);
}

/* fsync=always: new chunks go through the flusher in batches while the
 * pipeline goes on; every one of them ends up named and readable. */
TEST(fsync_always_publishes_every_batch)
{
        sp_options o = SP_OPTIONS_DEFAULT;
        sp_pool *p = NULL;
        dd_manifest *m = NULL;
        uint64_t size = 300 * MiB;
        int fd = tp_make_image("disk.img", size);

        for (uint64_t i = 0; i < 300; i++)
                tp_write_random(fd, i * MiB + (i * 4096) % MiB, 4096, 100 + i);
        o.chunk_size = MiB;
        ASSERT_OK(sp_pool_create("pool", &o));
        ASSERT_OK(sp_pool_open("pool", &p));
        ASSERT_EQ(p->opts.fsync, SP_FSYNC_ALWAYS);
        ASSERT_OK(tp_backup(p, "vm1", fd, size, NULL, NULL, 16, &m, NULL));
        ASSERT_UEQ(m->disks[0].bytes_new, 300 * MiB);
        ASSERT_EQ(count_files("pool/chunks"), 300);
        ASSERT_EQ(count_files("pool/tmp"), 0);
        ASSERT_OK(tp_restore(p, m, "out.img", NULL));
        ASSERT_TRUE(tp_same_files("disk.img", "out.img"));
        dd_manifest_free(m);
        close(fd);
        sp_pool_close(p);
}
