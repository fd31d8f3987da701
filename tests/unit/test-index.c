/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-index.c -- tests for dedup/index.[ch]: chunk count and length, the
 * writer/reader round trip on edge disk sizes, null digests, the header
 * layout and checksum, the writer's refusals and clean-up of its temp file,
 * and the reader's refusal of damaged files (header, digests, truncation,
 * extra bytes, unknown version, inconsistent sizes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/util.h"
#include "dedup/crc32c.h"
#include "dedup/index.h"
#include "tests/unit/test.h"

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

static bool exists(const char *path)
{
        struct stat st;

        return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Files left in the test's directory. */
static size_t count_dir_entries(void)
{
        _cleanup_(closedirp) DIR *d = opendir(".");
        struct dirent *de;
        size_t n = 0;

        ASSERT_TRUE(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        return n;
}

/* Alternates fsync on and off between the indexes a test writes. */
static bool i_sync(void)
{
        static bool flag;

        flag = !flag;
        return flag;
}

/* The digest a test gives chunk i: null for every seventh chunk. */
static dd_digest chunk_digest(uint64_t i)
{
        dd_digest d = DD_DIGEST_NULL;

        if (i % 7 == 3)
                return d;
        ASSERT_OK(dd_digest_compute(&i, sizeof(i), &d));
        return d;
}

static void write_index(const char *name, uint64_t disk_size, uint32_t chunk_size, dd_index_header *ret)
{
        _cleanup_(dd_index_writer_freep) dd_index_writer *w = NULL;
        uint64_t n = dd_chunk_count(disk_size, chunk_size);

        ASSERT_OK(dd_index_writer_new(AT_FDCWD, name, disk_size, chunk_size, &w));
        for (uint64_t i = 0; i < n; i++) {
                dd_digest d = chunk_digest(i);
                /* Null digests go in both ways: NULL and 32 zero bytes. */
                ASSERT_OK(dd_index_writer_append(w, dd_digest_is_null(&d) && i % 2 ? NULL : &d));
        }
        ASSERT_OK(dd_index_writer_finish(w, i_sync(), ret));
}

TEST(index_chunk_count_and_length)
{
        ASSERT_UEQ(dd_chunk_count(0, 4096), 0);
        ASSERT_UEQ(dd_chunk_count(1, 4096), 1);
        ASSERT_UEQ(dd_chunk_count(4095, 4096), 1);
        ASSERT_UEQ(dd_chunk_count(4096, 4096), 1);
        ASSERT_UEQ(dd_chunk_count(4097, 4096), 2);
        ASSERT_UEQ(dd_chunk_count(10ull << 30, 4 << 20), 2560);
        ASSERT_UEQ(dd_chunk_count((10ull << 30) + 1, 4 << 20), 2561);
        ASSERT_UEQ(dd_chunk_count(UINT64_MAX / 2, 1), UINT64_MAX / 2);

        ASSERT_UEQ(dd_chunk_length(1, 4096, 0), 1);
        ASSERT_UEQ(dd_chunk_length(4096, 4096, 0), 4096);
        ASSERT_UEQ(dd_chunk_length(4097, 4096, 0), 4096);
        ASSERT_UEQ(dd_chunk_length(4097, 4096, 1), 1);
        ASSERT_UEQ(dd_chunk_length(3 * 4096, 4096, 2), 4096);
        ASSERT_UEQ(dd_chunk_length(3 * 4096 - 5, 4096, 2), 4091);
        /* The lengths add up to the disk size. */
        for (uint64_t size = 0; size < 20000; size += 997) {
                uint64_t sum = 0, n = dd_chunk_count(size, 4096);
                for (uint64_t i = 0; i < n; i++) {
                        uint32_t l = dd_chunk_length(size, 4096, i);
                        ASSERT_TRUE(l >= 1 && l <= 4096);
                        sum += l;
                }
                ASSERT_UEQ(sum, size);
        }
}

TEST(index_round_trip)
{
        const uint32_t cs = 4096;
        static const uint64_t sizes[] = { 0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 17, 3000 * 4096 + 1 };
        time_t before = time(NULL);

        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                _cleanup_(dd_index_freep) dd_index *idx = NULL;
                dd_index_header wh, rh;
                uint64_t n = dd_chunk_count(sizes[k], cs);
                struct stat st;
                dd_digest d;

                write_index("disk.fidx", sizes[k], cs, &wh);
                ASSERT_TRUE(!exists("disk.fidx.tmp"));
                ASSERT_OK(stat("disk.fidx", &st));
                ASSERT_UEQ(st.st_size, DD_INDEX_HEADER_SIZE + n * DD_DIGEST_SIZE);
                ASSERT_UEQ(wh.disk_size, sizes[k]);
                ASSERT_UEQ(wh.chunk_size, cs);
                ASSERT_UEQ(wh.chunk_count, n);
                ASSERT_TRUE(wh.ctime >= (uint64_t)before && wh.ctime <= (uint64_t)time(NULL));

                ASSERT_OK(dd_index_open_at(AT_FDCWD, "disk.fidx", &idx));
                rh = *dd_index_get_header(idx);
                ASSERT_UEQ(rh.disk_size, sizes[k]);
                ASSERT_UEQ(rh.chunk_size, cs);
                ASSERT_UEQ(rh.chunk_count, n);
                ASSERT_UEQ(rh.ctime, wh.ctime);
                ASSERT_MEMEQ(rh.uuid, wh.uuid, 16);
                ASSERT_TRUE(dd_digest_eq(&rh.checksum, &wh.checksum));
                for (uint64_t i = 0; i < n; i++) {
                        dd_digest want = chunk_digest(i);

                        memset(&d, 0xee, sizeof(d));
                        ASSERT_OK(dd_index_get(idx, i, &d));
                        if (!dd_digest_eq(&d, &want))
                                TEST_FAIL_("size %" PRIu64 " chunk %" PRIu64 ": wrong digest", sizes[k], i);
                        ASSERT_EQ(dd_digest_is_null(&d), i % 7 == 3);
                }
                /* Random order reads as well. */
                for (uint64_t j = 0; n && j < 50; j++) {
                        uint64_t i = (j * 7919) % n;
                        dd_digest want = chunk_digest(i);
                        ASSERT_OK(dd_index_get(idx, i, &d));
                        ASSERT_TRUE(dd_digest_eq(&d, &want));
                }
                ASSERT_ERR(dd_index_get(idx, n, &d), EINVAL);
                ASSERT_ERR(dd_index_get(idx, n + 1, &d), EINVAL);
                ASSERT_ERR(dd_index_get(idx, UINT64_MAX, &d), EINVAL);
                ASSERT_ERR(dd_index_get(NULL, 0, &d), EINVAL);
        }
}

TEST(index_chunk_sizes)
{
        static const uint32_t sizes[] = { 1, 512, 65536, 4u << 20, UINT32_MAX };

        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                _cleanup_(dd_index_freep) dd_index *idx = NULL;
                uint64_t disk = (uint64_t)sizes[k] * 5 + 1;
                dd_digest d;

                write_index("x.fidx", disk, sizes[k], NULL);
                ASSERT_OK(dd_index_open_at(AT_FDCWD, "x.fidx", &idx));
                ASSERT_UEQ(dd_index_get_header(idx)->chunk_count, 6);
                ASSERT_UEQ(dd_index_get_header(idx)->chunk_size, sizes[k]);
                ASSERT_OK(dd_index_get(idx, 5, &d));
                dd_digest want = chunk_digest(5);
                ASSERT_TRUE(dd_digest_eq(&d, &want));
        }
}

TEST(index_uuid_differs)
{
        dd_index_header a, b;

        write_index("disk.fidx", 4096 * 3, 4096, &a);
        write_index("x.fidx", 4096 * 3, 4096, &b);
        ASSERT_TRUE(memcmp(a.uuid, b.uuid, 16) != 0);
        /* Same digests, same checksum. */
        ASSERT_TRUE(dd_digest_eq(&a.checksum, &b.checksum));
}

TEST(index_layout_and_checksum)
{
        const uint64_t disk = 10 * 4096 + 100;
        const uint64_t n = dd_chunk_count(disk, 4096);
        _cleanup_free_ char *buf = NULL;
        _cleanup_(dd_hasher_freep) dd_hasher *h = dd_hasher_new();
        dd_index_header wh;
        dd_digest sum;
        size_t len;

        ASSERT_TRUE(h);
        write_index("disk.fidx", disk, 4096, &wh);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "disk.fidx", 1 << 20, &buf, &len));
        ASSERT_UEQ(len, DD_INDEX_HEADER_SIZE + n * DD_DIGEST_SIZE);
        const uint8_t *p = (const uint8_t *)buf;
        ASSERT_MEMEQ(p, DD_INDEX_MAGIC, 8);
        ASSERT_UEQ(get_le32(p + 8), DD_INDEX_VERSION);
        ASSERT_UEQ(get_le32(p + 12), DD_INDEX_HEADER_SIZE);
        ASSERT_MEMEQ(p + 16, wh.uuid, 16);
        ASSERT_UEQ(get_le64(p + 32), disk);
        ASSERT_UEQ(get_le32(p + 40), 4096);
        ASSERT_UEQ(get_le32(p + 44), 0);
        ASSERT_UEQ(get_le64(p + 48), n);
        ASSERT_UEQ(get_le64(p + 56), wh.ctime);
        ASSERT_MEMEQ(p + 64, wh.checksum.b, 32);
        ASSERT_UEQ(get_le32(p + 96), dd_crc32c(0, p, 96));
        for (size_t i = 100; i < DD_INDEX_HEADER_SIZE; i++)
                ASSERT_EQ(p[i], 0);
        /* The digests in disk order, and the checksum is SHA-256 over them. */
        for (uint64_t i = 0; i < n; i++) {
                dd_digest want = chunk_digest(i);
                ASSERT_MEMEQ(p + DD_INDEX_HEADER_SIZE + i * 32, want.b, 32);
        }
        ASSERT_OK(dd_digest_compute(p + DD_INDEX_HEADER_SIZE, n * DD_DIGEST_SIZE, &sum));
        ASSERT_TRUE(dd_digest_eq(&sum, &wh.checksum));
        ASSERT_OK(dd_hasher_update(h, p + DD_INDEX_HEADER_SIZE, n * DD_DIGEST_SIZE));
        ASSERT_OK(dd_hasher_final(h, &sum));
        ASSERT_TRUE(dd_digest_eq(&sum, &wh.checksum));

        /* Empty disk: the checksum of nothing. */
        write_index("x.fidx", 0, 4096, &wh);
        ASSERT_OK(dd_digest_compute("", 0, &sum));
        ASSERT_TRUE(dd_digest_eq(&sum, &wh.checksum));
}

/* More digests than fit the writer's buffer (64 KiB = 2048 digests). */
TEST(index_many_chunks)
{
        const uint64_t n = 10000;
        _cleanup_(dd_index_freep) dd_index *idx = NULL;
        dd_digest d;

        write_index("disk.fidx", n * 512 - 3, 512, NULL);
        ASSERT_OK(dd_index_open_at(AT_FDCWD, "disk.fidx", &idx));
        ASSERT_UEQ(dd_index_get_header(idx)->chunk_count, n);
        for (uint64_t i = 0; i < n; i++) {
                dd_digest want = chunk_digest(i);
                ASSERT_OK(dd_index_get(idx, i, &d));
                if (!dd_digest_eq(&d, &want))
                        TEST_FAIL_("chunk %" PRIu64 ": wrong digest", i);
        }
}

TEST(index_writer_refuses)
{
        _cleanup_(dd_index_writer_freep) dd_index_writer *w = NULL;
        dd_index_writer *none = NULL;
        dd_digest d = chunk_digest(0);

        ASSERT_ERR(dd_index_writer_new(AT_FDCWD, NULL, 4096, 4096, &none), EINVAL);
        ASSERT_ERR(dd_index_writer_new(AT_FDCWD, "x.fidx", 4096, 0, &none), EINVAL);
        ASSERT_ERR(dd_index_writer_new(AT_FDCWD, "x.fidx", 4096, 4096, NULL), EINVAL);
        ASSERT_TRUE(none == NULL);
        ASSERT_TRUE(dd_index_writer_new(AT_FDCWD, "no/such/dir/x.fidx", 4096, 4096, &none) < 0);
        ASSERT_EQ(count_dir_entries(), 0);

        /* Too few, then too many digests. */
        ASSERT_OK(dd_index_writer_new(AT_FDCWD, "x.fidx", 3 * 4096, 4096, &w));
        ASSERT_TRUE(exists("x.fidx.tmp"));
        ASSERT_OK(dd_index_writer_append(w, &d));
        ASSERT_OK(dd_index_writer_append(w, &d));
        ASSERT_ERR(dd_index_writer_finish(w, false, NULL), EINVAL);
        ASSERT_TRUE(!exists("x.fidx"));
        ASSERT_OK(dd_index_writer_append(w, &d));
        ASSERT_ERR(dd_index_writer_append(w, &d), EINVAL);
        ASSERT_ERR(dd_index_writer_append(NULL, &d), EINVAL);
        ASSERT_ERR(dd_index_writer_finish(NULL, false, NULL), EINVAL);
        /* The refused append changed nothing: finishing now works. */
        ASSERT_OK(dd_index_writer_finish(w, false, NULL));
        ASSERT_TRUE(exists("x.fidx"));
        ASSERT_TRUE(!exists("x.fidx.tmp"));
        ASSERT_ERR(dd_index_writer_finish(w, false, NULL), EINVAL);
        ASSERT_ERR(dd_index_writer_append(w, &d), EINVAL);
        w = dd_index_writer_free(w);
        ASSERT_TRUE(exists("x.fidx")); /* a finished index stays */

        _cleanup_(dd_index_freep) dd_index *idx = NULL;
        ASSERT_OK(dd_index_open_at(AT_FDCWD, "x.fidx", &idx));
        ASSERT_UEQ(dd_index_get_header(idx)->chunk_count, 3);
}

TEST(index_finish_too_few_leaves_nothing)
{
        dd_index_writer *w = NULL;
        dd_digest d = chunk_digest(1);

        ASSERT_OK(dd_index_writer_new(AT_FDCWD, "disk.fidx", 5 * 4096, 4096, &w));
        for (int i = 0; i < 4; i++)
                ASSERT_OK(dd_index_writer_append(w, &d));
        ASSERT_ERR(dd_index_writer_finish(w, true, NULL), EINVAL);
        ASSERT_TRUE(!exists("disk.fidx"));
        dd_index_writer_free(w);
        ASSERT_EQ(count_dir_entries(), 0);
}

TEST(index_free_before_finish)
{
        dd_index_writer *w = NULL;

        ASSERT_OK(dd_index_writer_new(AT_FDCWD, "disk.fidx", 100000 * 4096ull, 4096, &w));
        for (int i = 0; i < 5000; i++) {
                dd_digest d = chunk_digest((uint64_t)i);
                ASSERT_OK(dd_index_writer_append(w, &d));
        }
        ASSERT_TRUE(exists("disk.fidx.tmp"));
        ASSERT_TRUE(dd_index_writer_free(w) == NULL);
        ASSERT_EQ(count_dir_entries(), 0);
        ASSERT_TRUE(dd_index_writer_free(NULL) == NULL);

        /* An earlier good index of the same name is not disturbed. */
        write_index("disk.fidx", 4096 * 2, 4096, NULL);
        ASSERT_OK(dd_index_writer_new(AT_FDCWD, "disk.fidx", 4096 * 9, 4096, &w));
        dd_index_writer_free(w);
        _cleanup_(dd_index_freep) dd_index *idx = NULL;
        ASSERT_OK(dd_index_open_at(AT_FDCWD, "disk.fidx", &idx));
        ASSERT_UEQ(dd_index_get_header(idx)->chunk_count, 2);
}

/* --- the reader on damaged files ------------------------------------------ */

static void write_bytes(const char *name, const void *p, size_t n)
{
        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, name, p, n, false));
}

static int open_bytes(const void *p, size_t n)
{
        dd_index *idx = NULL;
        int r;

        write_bytes("x.fidx", p, n);
        r = dd_index_open_at(AT_FDCWD, "x.fidx", &idx);
        if (r >= 0) {
                ASSERT_TRUE(idx != NULL);
                dd_index_free(idx);
        } else
                ASSERT_TRUE(idx == NULL);
        return r;
}

/* Reads a good index of n chunks into *ret. */
static size_t good_index(uint64_t n, char **ret)
{
        size_t len;

        write_index("disk.fidx", n * 4096, 4096, NULL);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "disk.fidx", 1 << 20, ret, &len));
        return len;
}

static void reseal_crc(uint8_t *p)
{
        put_le32(p + 96, dd_crc32c(0, p, 96));
}

TEST(index_reader_header_flips)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(5, &buf);
        uint8_t *p = (uint8_t *)buf;

        ASSERT_OK(open_bytes(p, len));
        /* Every bit of the CRC-covered part and of the CRC itself. */
        for (size_t i = 0; i < 100; i++)
                for (int bit = 0; bit < 8; bit++) {
                        p[i] ^= (uint8_t)(1u << bit);
                        int r = open_bytes(p, len);
                        /* The version field, when flipped, may say "unknown version". */
                        if (r != -EBADMSG && !(i >= 8 && i < 12 && r == -EPROTONOSUPPORT))
                                TEST_FAIL_("header byte %zu bit %d: open gave %d", i, bit, r);
                        p[i] ^= (uint8_t)(1u << bit);
                }
        ASSERT_OK(open_bytes(p, len));
}

TEST(index_reader_digest_flips)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(5, &buf);
        uint8_t *p = (uint8_t *)buf;

        for (size_t i = DD_INDEX_HEADER_SIZE; i < len; i++) {
                int bit = (int)(i % 8);
                p[i] ^= (uint8_t)(1u << bit);
                if (open_bytes(p, len) != -EBADMSG)
                        TEST_FAIL_("digest byte %zu bit %d not seen", i, bit);
                p[i] ^= (uint8_t)(1u << bit);
        }
        /* Swapping two digests keeps every digest valid but not the checksum. */
        uint8_t tmp[32];
        memcpy(tmp, p + DD_INDEX_HEADER_SIZE, 32);
        memcpy(p + DD_INDEX_HEADER_SIZE, p + DD_INDEX_HEADER_SIZE + 32, 32);
        memcpy(p + DD_INDEX_HEADER_SIZE + 32, tmp, 32);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);
}

TEST(index_reader_padding_ignored_or_refused)
{
        /* The zero padding after the CRC is not covered: whatever the reader
         * does with a changed padding byte, it must not crash; a reader that
         * accepts it still reads the right digests. */
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(3, &buf);
        uint8_t *p = (uint8_t *)buf;
        int r;

        p[200] = 0xff;
        r = open_bytes(p, len);
        ASSERT_TRUE(r == 0 || r == -EBADMSG);
}

TEST(index_reader_truncated_and_extended)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(5, &buf);
        _cleanup_free_ uint8_t *big = calloc(1, len + 64);

        ASSERT_TRUE(big);
        for (size_t n = 0; n < len; n += (n < 128 || n > len - 70) ? 1 : 509)
                if (open_bytes(buf, n) != -EBADMSG)
                        TEST_FAIL_("%zu of %zu bytes opened", n, len);
        memcpy(big, buf, len);
        ASSERT_ERR(open_bytes(big, len + 1), EBADMSG);
        ASSERT_ERR(open_bytes(big, len + 32), EBADMSG);
        ASSERT_OK(open_bytes(big, len));
}

TEST(index_reader_version_and_fields)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(5, &buf);
        uint8_t *p = (uint8_t *)buf;
        uint8_t save[DD_INDEX_HEADER_SIZE];

        memcpy(save, p, sizeof(save));

        put_le32(p + 8, 2);
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EPROTONOSUPPORT);
        put_le32(p + 8, 0);
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EPROTONOSUPPORT);

        memcpy(p, save, sizeof(save));
        p[0] = 'v';
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);

        memcpy(p, save, sizeof(save));
        put_le32(p + 12, 512); /* header size */
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);

        memcpy(p, save, sizeof(save));
        put_le32(p + 44, 1); /* flags */
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);

        memcpy(p, save, sizeof(save));
        put_le32(p + 40, 0); /* chunk size */
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);

        memcpy(p, save, sizeof(save));
        put_le64(p + 48, 4); /* chunk count that does not match the disk */
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len - 32), EBADMSG);

        memcpy(p, save, sizeof(save));
        put_le64(p + 32, 6 * 4096); /* disk size that needs 6 chunks */
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);

        /* A consistent header of 4 chunks over the first 4 digests opens
         * only when the checksum matches them. */
        memcpy(p, save, sizeof(save));
        put_le64(p + 32, 4 * 4096);
        put_le64(p + 48, 4);
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len - 32), EBADMSG);
        dd_digest sum;
        ASSERT_OK(dd_digest_compute(p + DD_INDEX_HEADER_SIZE, 4 * 32, &sum));
        memcpy(p + 64, sum.b, 32);
        reseal_crc(p);
        ASSERT_OK(open_bytes(p, len - 32));

        /* A huge chunk count with a matching disk size. */
        memcpy(p, save, sizeof(save));
        put_le64(p + 32, UINT64_MAX / 2);
        put_le32(p + 40, 1);
        put_le64(p + 48, UINT64_MAX / 2);
        reseal_crc(p);
        ASSERT_ERR(open_bytes(p, len), EBADMSG);
}

/* A header whose disk size is near 2^64: ceil(disk / chunk) computed as
 * (disk + chunk - 1) / chunk wraps around to a small count. The reader must
 * not accept a header whose chunks do not cover the disk. */
TEST(index_reader_disk_size_overflow)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(0, &buf);
        uint8_t *p = (uint8_t *)buf;
        dd_index *idx = NULL;
        int r;

        ASSERT_UEQ(len, DD_INDEX_HEADER_SIZE);
        put_le64(p + 32, UINT64_MAX); /* disk size */
        put_le32(p + 40, 4096);       /* chunk size */
        put_le64(p + 48, 0);          /* chunk count: (2^64 - 1 + 4095) / 4096 wraps to 0 */
        reseal_crc(p);
        write_bytes("x.fidx", p, len);
        r = dd_index_open_at(AT_FDCWD, "x.fidx", &idx);
        if (r >= 0) {
                const dd_index_header *h = dd_index_get_header(idx);
                /* Whatever it accepts must be self-consistent. */
                if ((unsigned __int128)h->chunk_count * h->chunk_size < h->disk_size)
                        TEST_FAIL_("opened an index of %" PRIu64 " chunks of %" PRIu32 " for a disk of %" PRIu64
                                   " bytes",
                                   h->chunk_count, h->chunk_size, h->disk_size);
                dd_index_free(idx);
        } else
                ASSERT_ERR(r, EBADMSG);
}

TEST(index_writer_disk_size_overflow)
{
        /* The writer has the same arithmetic: a disk size it cannot count
         * chunks for must be refused, not turned into an empty index. */
        dd_index_writer *w = NULL;
        int r = dd_index_writer_new(AT_FDCWD, "x.fidx", UINT64_MAX - 100, 4096, &w);

        if (r >= 0) {
                r = dd_index_writer_finish(w, false, NULL);
                dd_index_writer_free(w);
                if (r >= 0)
                        TEST_FAIL_("an index of 0 chunks was written for a disk of 2^64-101 bytes");
        }
}

TEST(index_open_fd)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = good_index(4, &buf);
        dd_index *idx = NULL;
        int fd;

        ASSERT_ERR(dd_index_open_fd(-1, &idx), EINVAL);
        fd = open("disk.fidx", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(dd_index_open_fd(fd, &idx));
        ASSERT_UEQ(dd_index_get_header(idx)->chunk_count, 4);
        dd_index_free(idx);
        /* The descriptor was taken over and closed with the index. */
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0 && errno == EBADF);

        /* And closed on failure too. */
        buf[0] ^= 1;
        write_bytes("x.fidx", buf, len);
        fd = open("x.fidx", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        idx = NULL;
        ASSERT_ERR(dd_index_open_fd(fd, &idx), EBADMSG);
        ASSERT_TRUE(idx == NULL);
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0 && errno == EBADF);

        ASSERT_ERR(dd_index_open_at(AT_FDCWD, "missing.fidx", &idx), ENOENT);
        ASSERT_TRUE(dd_index_free(NULL) == NULL);
}
