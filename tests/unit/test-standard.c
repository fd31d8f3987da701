/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-standard.c -- the standard pool driver (storagepool/standard.c):
 * full and incremental restore points written the pipeline's way and read
 * back byte for byte, resized disks, damaged and truncated streams, missing
 * parents, verify, stats, abort and gc, and one run of the real pipeline.
 *
 * DESIGN: every test keeps a model of the disk next to the pool: the bytes
 * a restore must give, and per byte whether a data record, a zero record or
 * nothing covers it, from which the expected manifest numbers follow.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "daemon/util.h"
#include "dedup/extent.h"
#include "dedup/index.h"
#include "storagepool/fs.h"
#include "storagepool/pipeline.h"
#include "storagepool/sp.h"
#include "tests/unit/test.h"

#define CS SP_CHUNK_SIZE_MIN
#define MAX_PIECES 64

enum {
        COV_NONE,
        COV_DATA,
        COV_ZERO
};

/* The disk a restore of the newest restore point must give. */
typedef struct model {
        uint64_t size;
        uint8_t *bytes;
        uint8_t *cov;       /* per byte: COV_* of the newest record there */
        uint64_t records;   /* records written to the pool so far, all streams */
        uint64_t bytes_new; /* of the last stream */
        uint64_t bytes_read;
} model;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void fill_random(uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(rnd() | 1); /* never zero: pieces of it are data */
}

static void fill_text(uint8_t *p, size_t len)
{
        static const char t[] = "vbak standard pool test line, compressible. ";

        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)t[i % (sizeof(t) - 1)];
}

static sp_pool *pool_new(int compression)
{
        sp_options o = SP_OPTIONS_DEFAULT;
        sp_pool *p = NULL;

        o.type = "standard";
        o.chunk_size = CS;
        o.compression = compression;
        o.fsync = SP_FSYNC_NONE;
        ASSERT_OK(sp_pool_create("pool", &o));
        ASSERT_OK(sp_pool_open("pool", &p));
        ASSERT_TRUE(p->drv == &sp_driver_standard);
        ASSERT_TRUE(sp_pool_has_cap(p, SP_CAP_RANDOM_READ));
        ASSERT_TRUE(!sp_pool_has_cap(p, SP_CAP_DEDUP));
        return p;
}

static dd_manifest *tmpl_new(const char *parent)
{
        dd_manifest *m = dd_manifest_new();

        ASSERT_TRUE(m);
        m->type = parent ? DD_BACKUP_INCREMENTAL : DD_BACKUP_FULL;
        m->parent = parent ? strdup(parent) : NULL;
        m->vm.name = strdup("vm1");
        m->vm.uuid = strdup("0b5e7c1a-vm1");
        m->consistency = strdup("crash");
        m->time_start = time(NULL);
        return m;
}

static void chunk_init(sp_chunk *c)
{
        *c = (sp_chunk){ 0 };
        c->ctx = dd_blob_ctx_new();
        c->data = malloc(CS);
        c->scratch_size = dd_blob_bound(CS);
        c->scratch = malloc(c->scratch_size);
        c->aux_size = CS;
        ASSERT_TRUE(c->ctx && c->data && c->scratch);
}

static void chunk_done(sp_chunk *c)
{
        dd_blob_ctx_free(c->ctx);
        free(c->data);
        free(c->scratch);
        free(c->aux);
}

static void extents_of(dd_extents *e, uint64_t size, const uint64_t (*v)[2], size_t n)
{
        *e = DD_EXTENTS_INIT;
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(dd_extents_add(e, v[i][0], v[i][1]));
        ASSERT_OK(dd_extents_normalize(e, size));
}

/* Applies what a stream records to the model: the pieces the pipeline
 * hands over for these extents, read from src. */
static void model_apply(model *md, const uint8_t *src, const dd_extents *e, bool has_parent)
{
        dd_extent_walk walk;
        dd_extent pieces[MAX_PIECES];
        uint64_t index;
        size_t n;

        md->bytes_new = md->bytes_read = 0;
        dd_extent_walk_init(&walk, e, CS);
        while (dd_extent_walk_next(&walk, &index, pieces, MAX_PIECES, &n) > 0) {
                for (size_t i = 0; i < n; i++) {
                        uint64_t o = pieces[i].offset, l = pieces[i].length;

                        md->bytes_read += l;
                        if (dd_is_zero(src + o, l)) {
                                if (!has_parent)
                                        continue;
                                memset(md->bytes + o, 0, l);
                                memset(md->cov + o, COV_ZERO, l);
                                md->records++;
                                continue;
                        }
                        memcpy(md->bytes + o, src + o, l);
                        memset(md->cov + o, COV_DATA, l);
                        md->records++;
                        md->bytes_new += l;
                }
        }
}

static uint64_t model_data_bytes(const model *md)
{
        uint64_t n = 0;

        for (uint64_t i = 0; i < md->size; i++)
                n += md->cov[i] == COV_DATA;
        return n;
}

static void model_resize(model *md, uint64_t size)
{
        md->bytes = realloc(md->bytes, size);
        md->cov = realloc(md->cov, size);
        ASSERT_TRUE(md->bytes && md->cov);
        if (size > md->size) {
                memset(md->bytes + md->size, 0, size - md->size);
                memset(md->cov + md->size, COV_NONE, size - md->size);
        }
        md->size = size;
}

static void model_free(model *md)
{
        free(md->bytes);
        free(md->cov);
}

/* Writes one disk through the vtable the way the pipeline does. */
static void write_disk(sp_writer *w, const char *name, const uint8_t *src, uint64_t size, const dd_extents *e)
{
        const sp_driver *drv = w->pool->drv;
        sp_disk_writer *dw = NULL;
        dd_extent_walk walk;
        dd_extent pieces[MAX_PIECES];
        uint64_t index, next = 0;
        size_t n;
        sp_chunk c;

        chunk_init(&c);
        ASSERT_OK(drv->disk_begin(w, name, size, &dw));
        ASSERT_TRUE(dw->size == size && dw->chunk_size == CS);
        dd_extent_walk_init(&walk, e, CS);
        while (dd_extent_walk_next(&walk, &index, pieces, MAX_PIECES, &n) > 0) {
                while (next < index)
                        ASSERT_OK(drv->chunk_skip(dw, next++));
                c.index = index;
                c.offset = index * CS;
                c.length = dd_chunk_length(size, CS, index);
                memset(c.data, 0, c.length);
                for (size_t i = 0; i < n; i++)
                        memcpy(c.data + (pieces[i].offset - c.offset), src + pieces[i].offset, pieces[i].length);
                c.pieces = pieces;
                c.n_pieces = n;
                c.whole = n == 1 && pieces[0].offset == c.offset && pieces[0].length == c.length;
                c.driver_data = NULL;
                ASSERT_OK(drv->chunk_prepare(dw, &c));
                ASSERT_TRUE(dd_digest_is_null(&c.digest));
                ASSERT_TRUE(c.driver_data != NULL);
                ASSERT_OK(drv->chunk_commit(dw, &c));
                ASSERT_TRUE(c.driver_data == NULL);
                next++;
        }
        while (next < dd_chunk_count(size, CS))
                ASSERT_OK(drv->chunk_skip(dw, next++));
        ASSERT_OK(drv->disk_end(dw));
        chunk_done(&c);
}

/* A restore point with one disk "vda" holding the given extents of src. */
static dd_manifest *backup(sp_pool *p, const char *parent, const uint8_t *src, uint64_t size, const dd_extents *e)
{
        _cleanup_(dd_manifest_freep) dd_manifest *t = tmpl_new(parent);
        dd_manifest *m = NULL;
        sp_writer *w = NULL;

        ASSERT_OK(p->drv->begin(p, t, &w));
        ASSERT_TRUE(w->m && w->m->id);
        write_disk(w, "vda", src, size, e);
        ASSERT_OK(p->drv->commit(w, &m));
        ASSERT_TRUE(m);
        ASSERT_STREQ(m->pool_type, "standard");
        ASSERT_EQ(m->n_disks, 1);
        return m;
}

/* Reads chunk i of a disk; returns what reader_read returned. */
static int read_chunk(sp_disk_reader *rd, sp_chunk *c, uint64_t i, bool *zero)
{
        c->index = i;
        c->offset = i * rd->chunk_size;
        c->length = dd_chunk_length(rd->size, rd->chunk_size, i);
        memset(c->data, 0xa5, c->length); /* the driver must overwrite everything */
        return rd->pool->drv->reader_read(rd, c, zero);
}

/* Reads a whole disk and compares it with the model. */
static void check_disk(sp_pool *p, const dd_manifest *m, const model *md)
{
        sp_disk_reader *rd = NULL;
        sp_chunk c;

        ASSERT_OK(p->drv->reader_open(p, m, "vda", &rd));
        ASSERT_UEQ(rd->size, md->size);
        ASSERT_EQ(rd->chunk_size, CS);
        chunk_init(&c);
        for (uint64_t i = 0; i < dd_chunk_count(rd->size, CS); i++) {
                bool zero = false;

                ASSERT_OK(read_chunk(rd, &c, i, &zero));
                ASSERT_MEMEQ(c.data, md->bytes + i * CS, c.length);
                ASSERT_EQ(zero, dd_is_zero(md->bytes + i * CS, c.length));
        }
        chunk_done(&c);
        p->drv->reader_close(rd);
}

static void check_numbers(const dd_manifest *m, const model *md)
{
        const dd_manifest_disk *d = dd_manifest_find_disk(m, "vda");

        ASSERT_TRUE(d);
        ASSERT_STREQ(d->index, "vda.vstream");
        ASSERT_UEQ(d->size, md->size);
        ASSERT_EQ(d->chunk_size, CS);
        ASSERT_UEQ(d->bytes_read, md->bytes_read);
        ASSERT_UEQ(d->bytes_new, md->bytes_new);
        ASSERT_UEQ(d->bytes_data, model_data_bytes(md));
}

#define SIZE1 (5 * (uint64_t)CS + 12345)

/* The source of the first full backup and what it reads. */
static void full_source(uint8_t **ret_src, dd_extents *e)
{
        static const uint64_t ext[][2] = {
                { 0, 100000 },                                                /* random data */
                { 200000, 100000 },                                           /* allocated, but zeros */
                { CS - 5000, 10000 },                                         /* across a chunk boundary */
                { 2 * (uint64_t)CS, CS },                                     /* a whole chunk of text */
                { 4 * (uint64_t)CS + 4096, SIZE1 - 4 * (uint64_t)CS - 4096 }, /* up to the end */
        };
        uint8_t *src = malloc(SIZE1);

        ASSERT_TRUE(src);
        fill_random(src, SIZE1);
        memset(src + 200000, 0, 100000);
        fill_text(src + 2 * CS, CS);
        fill_text(src + 4 * CS + 4096, SIZE1 - 4 * CS - 4096);
        extents_of(e, SIZE1, ext, ELEMENTSOF(ext));
        *ret_src = src;
}

static dd_manifest *full_backup(sp_pool *p, model *md, uint8_t **ret_src)
{
        dd_extents e;
        uint8_t *src;
        dd_manifest *m;

        full_source(&src, &e);
        *md = (model){ .size = SIZE1, .bytes = calloc(1, SIZE1), .cov = calloc(1, SIZE1) };
        ASSERT_TRUE(md->bytes && md->cov);
        model_apply(md, src, &e, false);
        m = backup(p, NULL, src, SIZE1, &e);
        dd_extents_clear(&e);
        if (ret_src)
                *ret_src = src;
        else
                free(src);
        return m;
}

/* Changes a few small pieces of src (one becomes all zero) and backs them
 * up as an incremental on parent. */
static dd_manifest *incremental_backup(sp_pool *p, const dd_manifest *parent, model *md, uint8_t *src, unsigned round)
{
        static const uint64_t ext1[][2] = {
                { 5000, 100 },                     /* inside the first data */
                { 50000, 10000 },                  /* becomes all zero */
                { CS + 77, 4096 },                 /* chunk 1 */
                { 3 * (uint64_t)CS + 1000, 3000 }, /* in a chunk nothing was read from */
                { 250000, 1000 },                  /* zero before, still zero */
                { SIZE1 - 100, 100 },              /* the last bytes */
        };
        static const uint64_t ext2[][2] = {
                { 55000, 1000 },          /* data again inside the zeroed piece */
                { 5050, 10 },             /* inside the first change */
                { 2 * (uint64_t)CS, 64 }, /* start of the text chunk */
        };
        dd_extents e;
        dd_manifest *m;

        if (round == 1) {
                extents_of(&e, SIZE1, ext1, ELEMENTSOF(ext1));
                fill_random(src + 5000, 100);
                memset(src + 50000, 0, 10000);
                fill_random(src + CS + 77, 4096);
                fill_random(src + 3 * CS + 1000, 3000);
                fill_random(src + SIZE1 - 100, 100);
        } else {
                extents_of(&e, SIZE1, ext2, ELEMENTSOF(ext2));
                fill_random(src + 55000, 1000);
                fill_random(src + 5050, 10);
                fill_random(src + 2 * CS, 64);
        }
        model_apply(md, src, &e, true);
        m = backup(p, parent->id, src, SIZE1, &e);
        ASSERT_EQ(m->type, DD_BACKUP_INCREMENTAL);
        ASSERT_STREQ(m->parent, parent->id);
        dd_extents_clear(&e);
        return m;
}

static char *stream_path(sp_pool *p, const dd_manifest *m)
{
        _cleanup_free_ char *rp = NULL;
        char *path = NULL;

        ASSERT_OK(sp_fs_rp_path(m, &rp));
        ASSERT_TRUE(asprintf(&path, "pool/%s/vda.vstream", rp) > 0);
        return path;
}

static void flip_byte(const char *path, off_t off)
{
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
        uint8_t b;

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_pread_all(fd, &b, 1, off));
        b ^= 0x10;
        ASSERT_OK(vb_pwrite_all(fd, &b, 1, off));
}

static uint64_t file_size(const char *path)
{
        struct stat st;

        ASSERT_EQ(stat(path, &st), 0);
        return (uint64_t)st.st_size;
}

/* Problems seen by verify. */
struct seen {
        unsigned n;
        char kind[8][32];
        char detail[8][256];
        char rps[8][4][64];
        size_t n_rps[8];
};

static void on_problem(void *userdata, const sp_problem *pr)
{
        struct seen *s = userdata;

        if (s->n >= 8)
                return;
        snprintf(s->kind[s->n], sizeof(s->kind[0]), "%s", pr->kind);
        snprintf(s->detail[s->n], sizeof(s->detail[0]), "%s", pr->detail ? pr->detail : "");
        ASSERT_TRUE(pr->object && strstr(pr->object, "vda.vstream"));
        s->n_rps[s->n] = pr->n_restore_points;
        for (size_t i = 0; i < pr->n_restore_points && i < 4; i++)
                snprintf(s->rps[s->n][i], sizeof(s->rps[0][0]), "%s", pr->restore_points[i]);
        s->n++;
}

static bool seen_rp(const struct seen *s, unsigned k, const char *id)
{
        for (size_t i = 0; i < s->n_rps[k] && i < 4; i++)
                if (streq(s->rps[k][i], id))
                        return true;
        return false;
}

TEST(standard_full_roundtrip)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(3);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL, *found = NULL;
        model md;

        m = full_backup(p, &md, NULL);
        ASSERT_EQ(m->type, DD_BACKUP_FULL);
        ASSERT_TRUE(m->parent == NULL);
        check_numbers(m, &md);
        /* The zero piece is read but not stored; the rest is. */
        ASSERT_UEQ(md.bytes_read, 100000 + 100000 + 10000 + CS + (SIZE1 - 4 * CS - 4096));
        ASSERT_UEQ(md.bytes_new, md.bytes_read - 100000);
        check_disk(p, m, &md);

        /* The same after reopening, through the manifest the pool lists. */
        p = sp_pool_close(p);
        ASSERT_OK(sp_pool_open("pool", &p));
        ASSERT_OK(sp_pool_find(p, m->id, NULL, &found));
        check_disk(p, found, &md);

        /* Text compresses: the stream is much smaller than the data. */
        {
                _cleanup_free_ char *path = stream_path(p, m);
                ASSERT_TRUE(file_size(path) < md.bytes_new - CS / 2);
        }
        model_free(&md);
}

TEST(standard_no_compression)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(DD_COMPRESSION_NONE);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        model md;

        m = full_backup(p, &md, NULL);
        check_numbers(m, &md);
        check_disk(p, m, &md);
        model_free(&md);
}

TEST(standard_incremental_chain)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc1 = NULL, *inc2 = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        model md, md_full, md_inc1;

        full = full_backup(p, &md, &src);
        md_full = (model){ .size = md.size, .bytes = malloc(md.size), .cov = malloc(md.size) };
        memcpy(md_full.bytes, md.bytes, md.size);
        memcpy(md_full.cov, md.cov, md.size);

        inc1 = incremental_backup(p, full, &md, src, 1);
        check_numbers(inc1, &md);
        check_disk(p, inc1, &md);
        /* The piece that became zero is zero now, and no longer data. */
        ASSERT_TRUE(dd_is_zero(md.bytes + 50000, 10000));
        ASSERT_TRUE(model_data_bytes(&md) < model_data_bytes(&md_full) + 100 + 4096 + 3000 + 100);
        md_inc1 = (model){ .size = md.size, .bytes = malloc(md.size), .cov = malloc(md.size) };
        memcpy(md_inc1.bytes, md.bytes, md.size);
        memcpy(md_inc1.cov, md.cov, md.size);

        inc2 = incremental_backup(p, inc1, &md, src, 2);
        check_numbers(inc2, &md);
        check_disk(p, inc2, &md);

        /* Older restore points still read as they were. */
        check_disk(p, inc1, &md_inc1);
        check_disk(p, full, &md_full);

        /* An incremental's stream holds only the changed pieces. */
        {
                _cleanup_free_ char *pf = stream_path(p, full), *pi = stream_path(p, inc1);
                ASSERT_TRUE(file_size(pi) < 64 * 1024);
                ASSERT_TRUE(file_size(pf) > file_size(pi));
        }
        model_free(&md);
        model_free(&md_full);
        model_free(&md_inc1);
}

TEST(standard_resized_disk)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *grown = NULL, *shrunk = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        uint64_t big = SIZE1 + 2 * (uint64_t)CS, small = 2 * (uint64_t)CS + 4000;
        static const uint64_t ext_grow[][2] = { { SIZE1 + 1000, 5000 }, { 10, 10 } };
        static const uint64_t ext_shrink[][2] = { { 2 * (uint64_t)CS, 100 } };
        dd_extents e;
        model md;

        full = full_backup(p, &md, &src);

        /* Grown: the new area reads as zero but for what was written there. */
        src = realloc(src, big);
        memset(src + SIZE1, 0, big - SIZE1);
        fill_random(src + SIZE1 + 1000, 5000);
        fill_random(src + 10, 10);
        model_resize(&md, big);
        extents_of(&e, big, ext_grow, ELEMENTSOF(ext_grow));
        model_apply(&md, src, &e, true);
        grown = backup(p, full->id, src, big, &e);
        dd_extents_clear(&e);
        check_numbers(grown, &md);
        check_disk(p, grown, &md);

        /* Shrunk: the parent's data past the new end no longer counts. */
        model_resize(&md, small);
        fill_random(src + 2 * CS, 100);
        extents_of(&e, small, ext_shrink, ELEMENTSOF(ext_shrink));
        model_apply(&md, src, &e, true);
        shrunk = backup(p, grown->id, src, small, &e);
        dd_extents_clear(&e);
        check_numbers(shrunk, &md);
        check_disk(p, shrunk, &md);
        model_free(&md);
}

TEST(standard_new_disk_in_incremental)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *t = NULL, *inc = NULL;
        _cleanup_free_ uint8_t *src = NULL, *src2 = malloc(CS + 10);
        static const uint64_t ext[][2] = { { 0, CS + 10 } }, ext0[][2] = { { 0, 1 } };
        sp_disk_reader *rd = NULL;
        sp_writer *w = NULL;
        dd_extents e;
        model md;
        sp_chunk c;
        bool zero;

        full = full_backup(p, &md, &src);
        t = tmpl_new(full->id);
        ASSERT_OK(p->drv->begin(p, t, &w));
        extents_of(&e, SIZE1, ext0, 1);
        model_apply(&md, src, &e, true);
        write_disk(w, "vda", src, SIZE1, &e);
        dd_extents_clear(&e);
        /* vdb did not exist in the parent: its stream stands alone. */
        fill_random(src2, CS + 10);
        extents_of(&e, CS + 10, ext, 1);
        write_disk(w, "vdb", src2, CS + 10, &e);
        dd_extents_clear(&e);
        ASSERT_OK(p->drv->commit(w, &inc));
        ASSERT_EQ(inc->n_disks, 2);
        ASSERT_UEQ(dd_manifest_find_disk(inc, "vdb")->bytes_data, CS + 10);

        ASSERT_OK(p->drv->reader_open(p, inc, "vdb", &rd));
        chunk_init(&c);
        ASSERT_OK(read_chunk(rd, &c, 0, &zero));
        ASSERT_MEMEQ(c.data, src2, CS);
        ASSERT_OK(read_chunk(rd, &c, 1, &zero));
        ASSERT_MEMEQ(c.data, src2 + CS, 10);
        chunk_done(&c);
        p->drv->reader_close(rd);
        ASSERT_ERR(p->drv->reader_open(p, inc, "vdc", &rd), ENOENT);
        check_disk(p, inc, &md);
        model_free(&md);
}

TEST(standard_flipped_record)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        _cleanup_free_ char *path = NULL;
        sp_disk_reader *rd = NULL;
        sp_verify_result res;
        struct seen s = { 0 };
        sp_verify_opts vo = { .sample_percent = 100, .threads = 1, .problem = on_problem, .userdata = &s };
        sp_chunk c;
        model md;
        bool zero;

        full = full_backup(p, &md, &src);
        inc = incremental_backup(p, full, &md, src, 1);
        ASSERT_EQ(sp_pool_verify(p, &vo, &res), 0);
        ASSERT_UEQ(res.restore_points, 2);
        ASSERT_UEQ(res.problems, 0);
        ASSERT_TRUE(res.chunks_checked > 0 && res.bytes_checked > 0);

        /* The first blob (disk offset 0) starts right after the 256-byte header. */
        path = stream_path(p, full);
        flip_byte(path, 256 + 16 + 1000);

        ASSERT_OK(p->drv->reader_open(p, full, "vda", &rd));
        chunk_init(&c);
        ASSERT_ERR(read_chunk(rd, &c, 0, &zero), EBADMSG);
        ASSERT_OK(read_chunk(rd, &c, 2, &zero)); /* other records are fine */
        p->drv->reader_close(rd);
        /* The incremental still needs that record for chunk 0. */
        ASSERT_OK(p->drv->reader_open(p, inc, "vda", &rd));
        ASSERT_ERR(read_chunk(rd, &c, 0, &zero), EBADMSG);
        ASSERT_OK(read_chunk(rd, &c, 1, &zero));
        p->drv->reader_close(rd);
        chunk_done(&c);

        ASSERT_EQ(sp_pool_verify(p, &vo, &res), 1);
        ASSERT_UEQ(res.problems, 1);
        ASSERT_UEQ(res.broken_restore_points, 2);
        ASSERT_EQ(s.n, 1);
        ASSERT_STREQ(s.kind[0], "record-corrupt");
        ASSERT_TRUE(strstr(s.detail[0], "disk offset 0,") != NULL);
        ASSERT_EQ(s.n_rps[0], 2);
        ASSERT_TRUE(seen_rp(&s, 0, full->id) && seen_rp(&s, 0, inc->id));

        /* Verifying the incremental alone checks its chain too. */
        {
                const char *ids[] = { inc->id };
                sp_verify_opts one = vo;

                s = (struct seen){ 0 };
                one.ids = ids;
                one.n_ids = 1;
                ASSERT_EQ(sp_pool_verify(p, &one, &res), 1);
                ASSERT_UEQ(res.restore_points, 1);
                ASSERT_STREQ(s.kind[0], "record-corrupt");
                ids[0] = "no-such-restore-point";
                ASSERT_ERR(sp_pool_verify(p, &one, &res), ENOENT);
        }
        model_free(&md);
}

TEST(standard_truncated_stream)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        _cleanup_free_ char *path = NULL;
        sp_disk_reader *rd = NULL;
        sp_verify_result res;
        struct seen s = { 0 };
        sp_verify_opts vo = { .sample_percent = 100, .problem = on_problem, .userdata = &s };
        model md;

        full = full_backup(p, &md, &src);
        inc = incremental_backup(p, full, &md, src, 1);
        path = stream_path(p, full);
        ASSERT_EQ(truncate(path, (off_t)file_size(path) - 10), 0);
        ASSERT_ERR(p->drv->reader_open(p, full, "vda", &rd), EBADMSG);
        ASSERT_ERR(p->drv->reader_open(p, inc, "vda", &rd), EBADMSG);

        ASSERT_EQ(sp_pool_verify(p, &vo, &res), 1);
        ASSERT_STREQ(s.kind[0], "stream-corrupt");
        ASSERT_TRUE(seen_rp(&s, 0, full->id) && seen_rp(&s, 0, inc->id));
        ASSERT_UEQ(res.broken_restore_points, 2);

        /* Cut to less than a header and a trailer. */
        ASSERT_EQ(truncate(path, 100), 0);
        ASSERT_ERR(p->drv->reader_open(p, full, "vda", &rd), EBADMSG);
        model_free(&md);
}

TEST(standard_flipped_table)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        sp_disk_reader *rd = NULL;
        uint8_t tr[64];
        uint64_t size;
        model md;

        full = full_backup(p, &md, NULL);
        path = stream_path(p, full);
        size = file_size(path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_pread_all(fd, tr, sizeof(tr), (off_t)(size - 64)));
        ASSERT_MEMEQ(tr + 56, "VBAKSEND", 8);
        ASSERT_UEQ(get_le64(tr) + get_le64(tr + 8) * 64 + 64, size);
        /* A byte of the second entry's digest, then one of the header. */
        flip_byte(path, (off_t)(get_le64(tr) + 64 + 40));
        ASSERT_ERR(p->drv->reader_open(p, full, "vda", &rd), EBADMSG);
        flip_byte(path, (off_t)(get_le64(tr) + 64 + 40));
        ASSERT_OK(p->drv->reader_open(p, full, "vda", &rd));
        p->drv->reader_close(rd);
        flip_byte(path, 20);
        ASSERT_ERR(p->drv->reader_open(p, full, "vda", &rd), EBADMSG);
        model_free(&md);
}

TEST(standard_missing_parent)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc = NULL, *t = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        sp_disk_reader *rd = NULL;
        sp_writer *w = NULL;
        sp_verify_result res;
        struct seen s = { 0 };
        sp_verify_opts vo = { .problem = on_problem, .userdata = &s };
        model md;

        full = full_backup(p, &md, &src);
        inc = incremental_backup(p, full, &md, src, 1);
        ASSERT_OK(sp_pool_remove(p, full));
        ASSERT_ERR(p->drv->reader_open(p, inc, "vda", &rd), ENODATA);
        ASSERT_EQ(sp_pool_verify(p, &vo, &res), 1);
        ASSERT_STREQ(s.kind[0], "parent-missing");
        ASSERT_TRUE(seen_rp(&s, 0, inc->id));
        /* An incremental on a parent that is gone is refused up front. */
        t = tmpl_new(full->id);
        ASSERT_ERR(p->drv->begin(p, t, &w), ENODATA);
        model_free(&md);
}

TEST(standard_stats)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc = NULL;
        _cleanup_free_ uint8_t *src = NULL;
        _cleanup_free_ char *pf = NULL, *pi = NULL;
        sp_stats st;
        model md;

        ASSERT_OK(sp_pool_stats(p, &st));
        ASSERT_UEQ(st.restore_points, 0);
        ASSERT_UEQ(st.stored_bytes, 0);
        full = full_backup(p, &md, &src);
        inc = incremental_backup(p, full, &md, src, 1);
        pf = stream_path(p, full);
        pi = stream_path(p, inc);
        ASSERT_OK(sp_pool_stats(p, &st));
        ASSERT_UEQ(st.restore_points, 2);
        ASSERT_UEQ(st.chunks, md.records);
        ASSERT_UEQ(st.logical_bytes, 2 * SIZE1);
        ASSERT_UEQ(st.data_bytes, full->disks[0].bytes_data + inc->disks[0].bytes_data);
        ASSERT_UEQ(st.unique_bytes, full->disks[0].bytes_new + inc->disks[0].bytes_new);
        ASSERT_UEQ(st.stored_bytes, file_size(pf) + file_size(pi));
        model_free(&md);
}

TEST(standard_abort_and_gc)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *t = tmpl_new(NULL);
        _cleanup_free_ char *rp = NULL, *dir = NULL;
        static const uint64_t ext[][2] = { { 0, 4096 } };
        const sp_driver *drv = p->drv;
        uint8_t *src = malloc(2 * CS);
        sp_disk_writer *dw = NULL;
        sp_writer *w = NULL;
        dd_manifest **v = NULL;
        size_t n = 0;
        sp_gc_result gr;
        dd_extents e;
        sp_chunk c;

        fill_random(src, 2 * CS);
        ASSERT_OK(drv->begin(p, t, &w));
        ASSERT_OK(sp_fs_rp_path(w->m, &rp));
        ASSERT_TRUE(asprintf(&dir, "pool/%s", rp) > 0);
        ASSERT_EQ(access(dir, F_OK), 0);

        /* Out of order, short, and abandoned disks. */
        ASSERT_OK(drv->disk_begin(w, "vda", 2 * CS, &dw));
        ASSERT_ERR(drv->disk_begin(w, "vda", 2 * CS, &dw), EEXIST);
        ASSERT_ERR(drv->chunk_skip(dw, 1), EINVAL);
        ASSERT_OK(drv->chunk_skip(dw, 0));
        ASSERT_ERR(drv->disk_end(dw), EINVAL);
        ASSERT_EQ(w->m->n_disks, 0);

        ASSERT_OK(drv->disk_begin(w, "vda", 2 * CS, &dw));
        chunk_init(&c);
        extents_of(&e, 2 * CS, ext, 1);
        c.index = 0;
        c.offset = 0;
        c.length = CS;
        memcpy(c.data, src, CS);
        c.pieces = e.v;
        c.n_pieces = 1;
        ASSERT_OK(drv->chunk_prepare(dw, &c));
        /* A prepared chunk that is never committed is freed with the disk. */
        drv->disk_abort(dw);
        chunk_done(&c);
        dd_extents_clear(&e);
        ASSERT_EQ(w->m->n_disks, 0);
        drv->abort(w);
        ASSERT_TRUE(access(dir, F_OK) < 0);

        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 0);
        sp_manifests_free(v, n);
        ASSERT_OK(sp_pool_gc(p, &(sp_gc_opts){ .grace_seconds = 0 }, &gr));
        ASSERT_UEQ(gr.chunks_removed, 0);
        free(src);
}

TEST(standard_bad_arguments)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *t = tmpl_new(NULL);
        sp_disk_writer *dw = NULL;
        sp_writer *w = NULL;
        char longname[64];

        t->type = DD_BACKUP_INCREMENTAL; /* without a parent */
        ASSERT_ERR(p->drv->begin(p, t, &w), EINVAL);
        t->type = DD_BACKUP_FULL;
        ASSERT_OK(p->drv->begin(p, t, &w));
        ASSERT_ERR(p->drv->disk_begin(w, "../x", CS, &dw), EINVAL);
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        ASSERT_ERR(p->drv->disk_begin(w, longname, CS, &dw), ENAMETOOLONG);
        ASSERT_OK(p->drv->disk_begin(w, "vda", 0, &dw)); /* an empty disk */
        ASSERT_OK(p->drv->disk_end(dw));
        {
                _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
                sp_disk_reader *rd = NULL;

                ASSERT_OK(p->drv->commit(w, &m));
                ASSERT_OK(p->drv->reader_open(p, m, "vda", &rd));
                ASSERT_UEQ(rd->size, 0);
                p->drv->reader_close(rd);
        }
}

/* --- the real pipeline ------------------------------------------------- */

struct run {
        int r;
        bool done;
        sp_transfer_result res;
};

static void run_done(void *userdata, int r, const sp_transfer_result *res)
{
        struct run *run = userdata;

        run->r = r;
        run->done = true;
        run->res = *res;
}

static int file_read(void *userdata, uint64_t offset, void *buf, size_t len)
{
        return vb_pread_all(*(int *)userdata, buf, len, (off_t)offset);
}

static int buf_write(void *userdata, uint64_t offset, const void *buf, size_t len)
{
        memcpy((uint8_t *)userdata + offset, buf, len);
        return 0;
}

static void pipeline_backup(sp_pool *p, uv_loop_t *loop, int fd, uint64_t size, const char *parent, const dd_extents *e,
                            dd_manifest **ret)
{
        _cleanup_(dd_manifest_freep) dd_manifest *t = tmpl_new(parent);
        sp_source srcd = { .read = file_read, .userdata = &fd };
        sp_pipeline_opts po = { .window = 6 };
        sp_disk_writer *dw = NULL;
        sp_writer *w = NULL;
        struct run run = { 0 };

        ASSERT_OK(p->drv->begin(p, t, &w));
        ASSERT_OK(p->drv->disk_begin(w, "vda", size, &dw));
        ASSERT_OK(sp_backup_start(loop, dw, &srcd, e, &po, run_done, &run));
        ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
        ASSERT_TRUE(run.done);
        ASSERT_OK(run.r);
        ASSERT_UEQ(run.res.bytes_done, dd_extents_total(e));
        ASSERT_OK(p->drv->disk_end(dw));
        ASSERT_OK(p->drv->commit(w, ret));
}

static void pipeline_restore(sp_pool *p, uv_loop_t *loop, const dd_manifest *m, const uint8_t *expect, uint64_t size)
{
        _cleanup_free_ uint8_t *out = calloc(1, size);
        sp_target dst = { .write = buf_write, .userdata = out };
        sp_pipeline_opts po = { .window = 8 };
        sp_disk_reader *rd = NULL;
        struct run run = { 0 };

        ASSERT_TRUE(out);
        ASSERT_OK(p->drv->reader_open(p, m, "vda", &rd));
        ASSERT_OK(sp_restore_start(loop, rd, &dst, &po, run_done, &run));
        ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
        ASSERT_TRUE(run.done);
        ASSERT_OK(run.r);
        ASSERT_UEQ(run.res.bytes_done, size);
        p->drv->reader_close(rd);
        ASSERT_MEMEQ(out, expect, size);
}

TEST(standard_pipeline)
{
        _cleanup_(sp_pool_closep) sp_pool *p = pool_new(1);
        _cleanup_(dd_manifest_freep) dd_manifest *full = NULL, *inc = NULL;
        _cleanup_close_ int fd = -1;
        uint64_t size = 9 * (uint64_t)CS + 777;
        uint8_t *img = calloc(1, size);
        dd_extents e = DD_EXTENTS_INIT;
        uv_loop_t loop;

        ASSERT_TRUE(img);
        ASSERT_OK(uv_loop_init(&loop));
        /* A sparse image: some data, some holes, some written zeros. */
        fd = open("disk.img", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(ftruncate(fd, (off_t)size), 0);
        fill_random(img + 4096, 3 * CS);
        fill_text(img + 5 * CS + 100, CS);
        fill_random(img + size - 500, 500);
        ASSERT_OK(vb_pwrite_all(fd, img + 4096, 3 * CS, 4096));
        ASSERT_OK(vb_pwrite_all(fd, img + 5 * CS + 100, CS, 5 * CS + 100));
        ASSERT_OK(vb_pwrite_all(fd, img + 7 * CS, CS, 7 * CS)); /* zeros */
        ASSERT_OK(vb_pwrite_all(fd, img + size - 500, 500, (off_t)(size - 500)));
        ASSERT_OK(dd_extents_from_fd(fd, size, &e));
        ASSERT_OK(dd_extents_normalize(&e, size));
        pipeline_backup(p, &loop, fd, size, NULL, &e, &full);
        pipeline_restore(p, &loop, full, img, size);

        /* Change a few bytes and back up just those. */
        dd_extents_clear(&e);
        fill_random(img + 2 * CS + 5, 300);
        memset(img + 6 * CS, 0, 2000);
        ASSERT_OK(vb_pwrite_all(fd, img + 2 * CS + 5, 300, 2 * CS + 5));
        ASSERT_OK(vb_pwrite_all(fd, img + 6 * CS, 2000, 6 * CS));
        ASSERT_OK(dd_extents_add(&e, 2 * CS + 5, 300));
        ASSERT_OK(dd_extents_add(&e, 6 * CS, 2000));
        ASSERT_OK(dd_extents_normalize(&e, size));
        pipeline_backup(p, &loop, fd, size, full->id, &e, &inc);
        ASSERT_UEQ(inc->disks[0].bytes_new, 300);
        pipeline_restore(p, &loop, inc, img, size);

        dd_extents_clear(&e);
        ASSERT_OK(uv_loop_close(&loop));
        free(img);
}
