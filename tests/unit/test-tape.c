/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-tape.c -- the file-backed tape device (records, filemarks, spacing,
 * truncation on write, end of medium, labels), the tape pool (restore
 * points written, listed and read back; the next volume when one is full; a
 * restore point larger than a volume; a full media pool; a crash before the
 * catalog names a restore point) and copies between pools.
 */
#include "storagepool/copy.h"
#include "storagepool/tape.h"
#include "storagepool/tapedev.h"
#include "tests/unit/pool-util.h"

#define UUID "0b7c5a52-8d3e-4f6a-9d2e-6f1c2b3a4d5e"
#define MiB (1u << 20)

static uint8_t *record(uint8_t fill)
{
        uint8_t *r = malloc(SP_TAPE_RECORD_SIZE);

        ASSERT_TRUE(r);
        memset(r, fill, SP_TAPE_RECORD_SIZE);
        return r;
}

static uint8_t read_one(sp_tapedev *t, uint8_t *buf)
{
        ASSERT_EQ(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), (ssize_t)SP_TAPE_RECORD_SIZE);
        return buf[0];
}

TEST(tapedev_records_and_filemarks)
{
        _cleanup_(sp_tapedev_closep) sp_tapedev *t = NULL;
        _cleanup_free_ uint8_t *a = record('a'), *b = record('b'), *c = record('c'), *buf = record(0);
        bool blank = false;

        ASSERT_TRUE(!(sp_tapedev_is_drive("vols")));
        ASSERT_TRUE(sp_tapedev_is_drive("/dev/nst0"));
        ASSERT_OK(sp_tapedev_open("vols", 0, false, &t));
        ASSERT_ERR(sp_tapedev_load(t, "V1", UUID, false, &blank), ENOENT);
        ASSERT_OK(sp_tapedev_load(t, "V1", UUID, true, &blank));
        ASSERT_TRUE(blank);
        ASSERT_OK(sp_tapedev_write_label(t, "V1", UUID));
        /* file 1: a, b; file 2: c */
        ASSERT_OK(sp_tapedev_write(t, a, SP_TAPE_RECORD_SIZE));
        ASSERT_OK(sp_tapedev_write(t, b, SP_TAPE_RECORD_SIZE));
        ASSERT_OK(sp_tapedev_write_filemark(t));
        ASSERT_OK(sp_tapedev_write(t, c, SP_TAPE_RECORD_SIZE));
        ASSERT_OK(sp_tapedev_write_filemark(t));

        ASSERT_OK(sp_tapedev_load(t, "V1", UUID, false, &blank));
        ASSERT_TRUE(!(blank));
        ASSERT_OK(sp_tapedev_space_files(t, 1));
        ASSERT_EQ(read_one(t, buf), 'a');
        ASSERT_EQ(read_one(t, buf), 'b');
        ASSERT_EQ(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), 0); /* the filemark */
        ASSERT_EQ(read_one(t, buf), 'c');
        ASSERT_EQ(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), 0);
        ASSERT_ERR(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), ENODATA);
        /* A buffer smaller than the record. */
        ASSERT_OK(sp_tapedev_rewind(t));
        ASSERT_OK(sp_tapedev_space_files(t, 2));
        ASSERT_ERR(sp_tapedev_read(t, buf, 100), ENOMEM);

        /* Writing in file 1 ends the data there: file 2 is gone. */
        ASSERT_OK(sp_tapedev_rewind(t));
        ASSERT_OK(sp_tapedev_space_files(t, 1));
        ASSERT_OK(sp_tapedev_write(t, c, SP_TAPE_RECORD_SIZE));
        ASSERT_OK(sp_tapedev_write_filemark(t));
        ASSERT_OK(sp_tapedev_rewind(t));
        ASSERT_OK(sp_tapedev_space_files(t, 1));
        ASSERT_EQ(read_one(t, buf), 'c');
        ASSERT_EQ(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), 0);
        ASSERT_ERR(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), ENODATA);
        ASSERT_OK(sp_tapedev_rewind(t));
        ASSERT_ERR(sp_tapedev_space_files(t, 3), ENODATA);
        ASSERT_OK(sp_tapedev_end_of_data(t));
        ASSERT_ERR(sp_tapedev_read(t, buf, SP_TAPE_RECORD_SIZE), ENODATA);
}

TEST(tapedev_end_of_medium_and_labels)
{
        _cleanup_(sp_tapedev_closep) sp_tapedev *t = NULL;
        _cleanup_free_ uint8_t *a = record('a');
        bool blank;
        int n = 0, r;

        /* Room for the label and a few records. */
        ASSERT_OK(sp_tapedev_open("vols", 5 * (SP_TAPE_RECORD_SIZE + 8), false, &t));
        ASSERT_OK(sp_tapedev_load(t, "V1", UUID, true, &blank));
        ASSERT_OK(sp_tapedev_write_label(t, "V1", UUID));
        while ((r = sp_tapedev_write(t, a, SP_TAPE_RECORD_SIZE)) == 0)
                n++;
        ASSERT_ERR(r, ENOSPC);
        ASSERT_EQ(n, 3);
        ASSERT_TRUE(strstr(sp_tapedev_error(t), "end of medium"));

        /* Another volume's label, another pool's volume. */
        ASSERT_EQ(system("cp vols/V1.vtape vols/V2.vtape"), 0);
        ASSERT_ERR(sp_tapedev_load(t, "V2", UUID, false, &blank), EMEDIUMTYPE);
        ASSERT_TRUE(strstr(sp_tapedev_error(t), "is V1: insert volume V2"));
        ASSERT_ERR(sp_tapedev_load(t, "V1", "11111111-2222-3333-4444-555555555555", false, &blank), EMEDIUMTYPE);
        ASSERT_OK(sp_tapedev_load(t, "V1", UUID, false, &blank));
        ASSERT_TRUE(!(sp_tape_label_is_valid("-x")));
        ASSERT_TRUE(!(sp_tape_label_is_valid("a/b")));
        ASSERT_TRUE(sp_tape_label_is_valid("L0001"));
}

/* A tape pool in "pool", volumes in "vols", of compression none so that
 * random data takes its full size. */
static sp_pool *new_tape_pool(const char *const *labels, size_t n, uint64_t volume_size)
{
        sp_options o = SP_OPTIONS_DEFAULT;
        sp_pool *p = NULL;

        o.type = "tape";
        o.compression = DD_COMPRESSION_NONE;
        o.fsync = SP_FSYNC_NONE;
        o.device = "vols";
        o.volumes = labels;
        o.n_volumes = n;
        o.volume_size = volume_size;
        ASSERT_OK(sp_pool_create("pool", &o));
        ASSERT_OK(sp_pool_open("pool", &p));
        ASSERT_STREQ(p->drv->name, "tape");
        ASSERT_TRUE(sp_pool_has_cap(p, SP_CAP_APPEND_ONLY));
        return p;
}

/* An image of size bytes: random data in its first half and at its end,
 * a hole between. */
static int make_image(const char *path, uint64_t size, uint64_t seed)
{
        int fd = tp_make_image(path, size);

        tp_write_random(fd, 0, size / 2, seed);
        tp_write_random(fd, size - 100000, 100000, seed + 1);
        return fd;
}

static void check_location(sp_pool *p, const char *id, const char *volume, unsigned file)
{
        _cleanup_free_ char *v = NULL;
        unsigned f = 0;

        ASSERT_OK(sp_tape_locate(p, id, &v, &f));
        ASSERT_STREQ(v, volume);
        ASSERT_EQ(f, file);
}

TEST(tape_pool_write_list_read)
{
        static const char *const labels[] = { "V1", "V2" };
        _cleanup_(sp_pool_closep) sp_pool *p = new_tape_pool(labels, 2, 0);
        _cleanup_(dd_manifest_freep) dd_manifest *m1 = NULL, *m2 = NULL;
        _cleanup_close_ int fd1 = make_image("a.img", 5 * MiB + 12345, 1);
        _cleanup_close_ int fd2 = make_image("b.img", 3 * MiB, 2);
        dd_manifest **v = NULL;
        sp_stats st;
        size_t n = 0;

        ASSERT_OK(tp_backup(p, "vm1", fd1, 5 * MiB + 12345, NULL, NULL, 4, &m1, NULL));
        ASSERT_OK(tp_backup(p, "vm2", fd2, 3 * MiB, NULL, NULL, 4, &m2, NULL));
        ASSERT_STREQ(m1->pool_type, "tape");
        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0]->id, m1->id);
        ASSERT_STREQ(v[1]->id, m2->id);
        ASSERT_UEQ(v[0]->disks[0].size, 5 * MiB + 12345);
        sp_manifests_free(v, n);
        ASSERT_OK(sp_pool_list(p, "vm2", NULL, NULL, &v, &n));
        ASSERT_EQ(n, 1);
        sp_manifests_free(v, n);
        check_location(p, m1->id, "V1", 1);
        check_location(p, m2->id, "V1", 2);

        /* Read back in another order than written: the tape is positioned. */
        ASSERT_OK(tp_restore(p, m2, "b.out", NULL));
        ASSERT_TRUE(tp_same_files("b.img", "b.out"));
        ASSERT_OK(tp_restore(p, m1, "a.out", NULL));
        ASSERT_TRUE(tp_same_files("a.img", "a.out"));

        ASSERT_OK(sp_pool_stats(p, &st));
        ASSERT_UEQ(st.restore_points, 2);
        ASSERT_UEQ(st.logical_bytes, 8 * MiB + 12345);
        ASSERT_UEQ(st.data_bytes, m1->disks[0].bytes_data + m2->disks[0].bytes_data);
        ASSERT_TRUE(st.stored_bytes >= 2 * SP_TAPE_RECORD_SIZE);
        ASSERT_TRUE(st.stored_bytes % SP_TAPE_RECORD_SIZE == 0);

        /* A third one after reopening: appended as file 3. */
        sp_pool_close(TAKE_PTR(p));
        ASSERT_OK(sp_pool_open("pool", &p));
        dd_manifest_free(TAKE_PTR(m2));
        ASSERT_OK(tp_backup(p, "vm2", fd2, 3 * MiB, NULL, NULL, 4, &m2, NULL));
        check_location(p, m2->id, "V1", 3);
        ASSERT_OK(tp_restore(p, m1, "a.out", NULL));
        ASSERT_TRUE(tp_same_files("a.img", "a.out"));

        /* Verify reads everything back; a damaged record is found. */
        {
                sp_verify_opts vo = { .sample_percent = 100 };
                sp_verify_result vr;

                ASSERT_EQ(sp_pool_verify(p, &vo, &vr), 0);
                ASSERT_UEQ(vr.restore_points, 3);
                ASSERT_TRUE(vr.chunks_checked >= 8);
        }

        /* Incrementals are refused. */
        {
                _cleanup_(dd_manifest_freep) dd_manifest *m3 = NULL;
                dd_extents ch = DD_EXTENTS_INIT;

                ASSERT_OK(dd_extents_add(&ch, 0, 4096));
                ASSERT_ERR(tp_backup(p, "vm1", fd1, 5 * MiB + 12345, m1->id, &ch, 4, &m3, NULL), EOPNOTSUPP);
                dd_extents_clear(&ch);
        }

        /* remove: out of the catalog. */
        ASSERT_OK(sp_pool_remove(p, m1));
        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 2);
        sp_manifests_free(v, n);
        ASSERT_ERR(sp_pool_remove(p, m1), ENOENT);
}

TEST(tape_pool_damaged_record)
{
        static const char *const labels[] = { "V1" };
        _cleanup_(sp_pool_closep) sp_pool *p = new_tape_pool(labels, 1, 0);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        _cleanup_close_ int fd = make_image("a.img", 2 * MiB, 7);
        _cleanup_close_ int vol = -1;
        sp_verify_opts vo = { .sample_percent = 100 };
        sp_verify_result vr;
        uint8_t x;

        ASSERT_OK(tp_backup(p, "vm1", fd, 2 * MiB, NULL, NULL, 4, &m, NULL));
        /* Flip a byte inside the first chunk's blob (file 1, first record). */
        vol = open("vols/V1.vtape", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(vol >= 0);
        ASSERT_OK(vb_pread_all(vol, &x, 1, SP_TAPE_RECORD_SIZE + 16 + 8 + 5000));
        x ^= 0x55;
        ASSERT_OK(vb_pwrite_all(vol, &x, 1, SP_TAPE_RECORD_SIZE + 16 + 8 + 5000));
        ASSERT_ERR(tp_restore(p, m, "a.out", NULL), EBADMSG);
        ASSERT_EQ(sp_pool_verify(p, &vo, &vr), 1);
        ASSERT_UEQ(vr.broken_restore_points, 1);
}

TEST(tape_pool_next_volume_when_full)
{
        static const char *const labels[] = { "V1", "V2" };
        /* Each restore point takes about 4 MiB: one per volume. */
        _cleanup_(sp_pool_closep) sp_pool *p = new_tape_pool(labels, 2, 6 * MiB);
        _cleanup_(dd_manifest_freep) dd_manifest *m1 = NULL, *m2 = NULL, *m3 = NULL;
        _cleanup_close_ int fd1 = make_image("a.img", 8 * MiB, 1);
        _cleanup_close_ int fd2 = make_image("b.img", 8 * MiB, 2);
        _cleanup_free_ char *text = NULL;
        dd_manifest **v = NULL;
        size_t n = 0;

        ASSERT_OK(tp_backup(p, "vm1", fd1, 8 * MiB, NULL, NULL, 4, &m1, NULL));
        check_location(p, m1->id, "V1", 1);
        ASSERT_OK(tp_backup(p, "vm2", fd2, 8 * MiB, NULL, NULL, 4, &m2, NULL));
        check_location(p, m2->id, "V2", 1);
        ASSERT_OK(vb_read_file_at(p->dirfd, SP_TAPE_FILE, 1 << 20, &text, NULL));
        ASSERT_TRUE(strstr(text, "\"full\": true"));
        ASSERT_OK(tp_restore(p, m1, "a.out", NULL));
        ASSERT_TRUE(tp_same_files("a.img", "a.out"));
        ASSERT_OK(tp_restore(p, m2, "b.out", NULL));
        ASSERT_TRUE(tp_same_files("b.img", "b.out"));

        /* Both volumes in use: the next one has nowhere to go. */
        ASSERT_ERR(tp_backup(p, "vm1", fd1, 8 * MiB, NULL, NULL, 4, &m3, NULL), ENOSPC);
        ASSERT_STREQ(sp_tape_error(p), "the media pool is full: add volumes");
        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 2);
        sp_manifests_free(v, n);
        /* And nothing was lost on V2. */
        ASSERT_OK(tp_restore(p, m2, "b.out", NULL));
        ASSERT_TRUE(tp_same_files("b.img", "b.out"));
}

TEST(tape_pool_larger_than_a_volume)
{
        static const char *const labels[] = { "V1", "V2" };
        _cleanup_(sp_pool_closep) sp_pool *p = new_tape_pool(labels, 2, 2 * MiB);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        _cleanup_close_ int fd = make_image("a.img", 8 * MiB, 1);
        _cleanup_close_ int small = make_image("s.img", 1 * MiB, 3);
        dd_manifest **v = NULL;
        size_t n = 0;

        ASSERT_ERR(tp_backup(p, "vm1", fd, 8 * MiB, NULL, NULL, 4, &m, NULL), EFBIG);
        ASSERT_TRUE(strstr(sp_tape_error(p), "does not fit on a whole volume"));
        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 0);
        free(v);
        /* The volume stays usable for what fits. */
        ASSERT_OK(tp_backup(p, "vm1", small, 1 * MiB, NULL, NULL, 4, &m, NULL));
        check_location(p, m->id, "V1", 1);
        ASSERT_OK(tp_restore(p, m, "s.out", NULL));
        ASSERT_TRUE(tp_same_files("s.img", "s.out"));
}

static int crash(void)
{
        return -1;
}

TEST(tape_pool_crash_before_catalog)
{
        static const char *const labels[] = { "V1" };
        _cleanup_(sp_pool_closep) sp_pool *p = new_tape_pool(labels, 1, 0);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL;
        _cleanup_close_ int fd = make_image("a.img", 3 * MiB, 5);
        _cleanup_close_ int fd2 = make_image("b.img", 2 * MiB, 6);
        dd_manifest **v = NULL;
        struct stat st;
        off_t crashed;
        size_t n = 0;

        sp_tape_before_catalog_hook = crash;
        ASSERT_TRUE(tp_backup(p, "vm1", fd, 3 * MiB, NULL, NULL, 4, &m, NULL) < 0);
        sp_tape_before_catalog_hook = NULL;
        /* The stream is on the volume, but no restore point exists. */
        ASSERT_OK(stat("vols/V1.vtape", &st));
        ASSERT_TRUE(st.st_size > 3 * (off_t)MiB / 2);
        crashed = st.st_size;
        ASSERT_OK(sp_pool_list(p, NULL, NULL, NULL, &v, &n));
        ASSERT_EQ(n, 0);
        free(v);
        /* The next one takes its place (file 1), and reads back. */
        ASSERT_OK(tp_backup(p, "vm2", fd2, 2 * MiB, NULL, NULL, 4, &m, NULL));
        check_location(p, m->id, "V1", 1);
        ASSERT_OK(stat("vols/V1.vtape", &st));
        ASSERT_TRUE(st.st_size < crashed); /* what followed file 1 is gone */
        ASSERT_OK(tp_restore(p, m, "b.out", NULL));
        ASSERT_TRUE(tp_same_files("b.img", "b.out"));
}

static void progress_cb(void *userdata, uint64_t done, uint64_t total)
{
        uint64_t *last = userdata;

        ASSERT_TRUE(done <= total);
        ASSERT_TRUE(done >= *last);
        *last = done;
}

TEST(copy_between_pools)
{
        static const char *const labels[] = { "V1", "V2" };
        _cleanup_(sp_pool_closep) sp_pool *dd = tp_new_pool("dd", "dedup", MiB);
        _cleanup_(sp_pool_closep) sp_pool *dd2 = tp_new_pool("dd2", "dedup", MiB);
        _cleanup_(sp_pool_closep) sp_pool *tape = new_tape_pool(labels, 2, 0);
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL, *mt = NULL, *mb = NULL, *md = NULL;
        _cleanup_close_ int fd = make_image("a.img", 6 * MiB + 4096, 9);
        uint64_t last = 0;

        ASSERT_OK(tp_backup(dd, "vm1", fd, 6 * MiB + 4096, NULL, NULL, 4, &m, NULL));
        ASSERT_OK(sp_copy(dd, m, tape, progress_cb, &last, &mt));
        ASSERT_UEQ(last, 6 * MiB + 4096);
        ASSERT_STREQ(mt->vm.name, "vm1");
        ASSERT_STREQ(mt->pool_type, "tape");
        ASSERT_EQ(mt->type, DD_BACKUP_FULL);
        ASSERT_UEQ(mt->disks[0].size, 6 * MiB + 4096);
        ASSERT_TRUE(dd_digest_eq(&mt->disks[0].index_checksum, &m->disks[0].index_checksum));
        ASSERT_OK(tp_restore(tape, mt, "t.out", NULL));
        ASSERT_TRUE(tp_same_files("a.img", "t.out"));

        /* Back from tape into a dedup pool, and dedup to dedup. */
        ASSERT_OK(sp_copy(tape, mt, dd2, NULL, NULL, &mb));
        ASSERT_OK(tp_restore(dd2, mb, "b.out", NULL));
        ASSERT_TRUE(tp_same_files("a.img", "b.out"));
        ASSERT_OK(sp_copy(dd, m, dd2, NULL, NULL, &md));
        ASSERT_TRUE(dd_digest_eq(&md->disks[0].index_checksum, &mb->disks[0].index_checksum));
}
