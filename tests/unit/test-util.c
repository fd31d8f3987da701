/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-util.c -- tests for daemon/util.[ch]: cleanup and ownership helpers,
 * little-endian encoding, whole-buffer I/O, whole-file reads, atomic file
 * replacement, mkdir -p, rm -rf, size and duration parsing, size
 * formatting, random bytes and the monotonic clock.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/util.h"
#include "tests/unit/test.h"

static int freed;

static void count_free(char *p)
{
        free(p);
        freed++;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(char *, count_free)

static void write_text(const char *path, const char *text)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_write_all(fd, text, strlen(text)));
}

static bool exists(const char *path)
{
        struct stat st;

        return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

TEST(util_macros)
{
        int a[7];

        ASSERT_EQ(ELEMENTSOF(a), 7);
        ASSERT_EQ(MIN(3, 5), 3);
        ASSERT_EQ(MAX(3, 5), 5);
        ASSERT_EQ(MIN(-1, 1), -1);
        ASSERT_EQ(DIV_ROUND_UP(0, 4), 0);
        ASSERT_EQ(DIV_ROUND_UP(1, 4), 1);
        ASSERT_EQ(DIV_ROUND_UP(4, 4), 1);
        ASSERT_EQ(DIV_ROUND_UP(5, 4), 2);

        struct outer {
                int x;
                long member;
        } o;
        ASSERT_TRUE(container_of(&o.member, struct outer, member) == &o);

        ASSERT_TRUE(streq("a", "a"));
        ASSERT_TRUE(!streq("a", "b"));
        ASSERT_TRUE(streq_ptr(NULL, NULL));
        ASSERT_TRUE(!streq_ptr("a", NULL));
        ASSERT_TRUE(!streq_ptr(NULL, "a"));
        ASSERT_TRUE(streq_ptr("a", "a"));
}

TEST(util_cleanup)
{
        char *kept;
        int fd_kept;

        {
                _cleanup_(count_freep) char *p = strdup("x");
                _cleanup_(count_freep) char *none = NULL;
                ASSERT_TRUE(p != NULL);
                (void)none;
        }
        ASSERT_EQ(freed, 1);
        {
                _cleanup_(count_freep) char *p = strdup("y");
                kept = TAKE_PTR(p);
                ASSERT_TRUE(p == NULL);
        }
        ASSERT_EQ(freed, 1);
        ASSERT_STREQ(kept, "y");
        free(kept);

        {
                _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                fd_kept = TAKE_FD(fd);
                ASSERT_EQ(fd, -1);
        }
        ASSERT_OK(fcntl(fd_kept, F_GETFD));
        {
                _cleanup_close_ int fd = fd_kept;
                (void)fd;
        }
        ASSERT_TRUE(fcntl(fd_kept, F_GETFD) < 0 && errno == EBADF);

        /* closep keeps errno. */
        {
                _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                (void)fd;
                errno = ENOTTY;
        }
        ASSERT_EQ(errno, ENOTTY);
}

TEST(util_little_endian)
{
        uint8_t b[8];

        put_le16(b, 0x1234);
        ASSERT_EQ(b[0], 0x34);
        ASSERT_EQ(b[1], 0x12);
        ASSERT_EQ(get_le16(b), 0x1234);
        put_le16(b, 0xffff);
        ASSERT_EQ(get_le16(b), 0xffff);

        put_le32(b, 0x89abcdefU);
        ASSERT_EQ(b[0], 0xef);
        ASSERT_EQ(b[3], 0x89);
        ASSERT_UEQ(get_le32(b), 0x89abcdefU);
        put_le32(b, 0xffffffffU);
        ASSERT_UEQ(get_le32(b), 0xffffffffU);

        put_le64(b, 0x0123456789abcdefULL);
        ASSERT_EQ(b[0], 0xef);
        ASSERT_EQ(b[7], 0x01);
        ASSERT_UEQ(get_le64(b), 0x0123456789abcdefULL);
        put_le64(b, UINT64_MAX);
        ASSERT_UEQ(get_le64(b), UINT64_MAX);
        put_le64(b, 0x8000000000000001ULL);
        ASSERT_UEQ(get_le64(b), 0x8000000000000001ULL);
}

TEST(util_write_pread_pwrite)
{
        _cleanup_close_ int fd = -1;
        char buf[16];

        fd = open("f", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_write_all(fd, "hello world", 11));
        ASSERT_OK(vb_write_all(fd, "", 0));
        ASSERT_OK(vb_pread_all(fd, buf, 5, 6));
        ASSERT_MEMEQ(buf, "world", 5);
        ASSERT_OK(vb_pwrite_all(fd, "WORLD", 5, 6));
        ASSERT_OK(vb_pread_all(fd, buf, 11, 0));
        ASSERT_MEMEQ(buf, "hello WORLD", 11);
        ASSERT_OK(vb_pwrite_all(fd, "!", 1, 20));
        ASSERT_OK(vb_pread_all(fd, buf, 10, 11));
        ASSERT_MEMEQ(buf, "\0\0\0\0\0\0\0\0\0!", 10);
        ASSERT_OK(vb_pread_all(fd, buf, 0, 100));

        /* Reading past the end fails: the caller expected the bytes. */
        ASSERT_ERR(vb_pread_all(fd, buf, 5, 18), EBADMSG);
        ASSERT_ERR(vb_pread_all(fd, buf, 1, 21), EBADMSG);

        ASSERT_ERR(vb_write_all(-1, "x", 1), EBADF);
        ASSERT_ERR(vb_pwrite_all(-1, "x", 1, 0), EBADF);
        ASSERT_ERR(vb_pread_all(-1, buf, 1, 0), EBADF);
}

TEST(util_write_all_pipe)
{
        int fds[2];
        size_t len = 1 << 20, got = 0;
        _cleanup_free_ uint8_t *data = malloc(len), *back = malloc(len);
        pid_t pid;

        ASSERT_TRUE(data && back);
        for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)(i * 7);
        ASSERT_OK(pipe(fds));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(fds[0]);
                _exit(vb_write_all(fds[1], data, len) < 0 ? 1 : 0);
        }
        close(fds[1]);
        /* Many short writes and reads through a 64 KiB pipe. */
        while (got < len) {
                ssize_t n = read(fds[0], back + got, len - got);
                ASSERT_TRUE(n > 0);
                got += (size_t)n;
        }
        close(fds[0]);
        ASSERT_MEMEQ(data, back, len);
}

TEST(util_read_file)
{
        _cleanup_free_ char *buf = NULL;
        char *untouched = (char *)"untouched";
        size_t len = 99;

        write_text("f", "some text");
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "f", 100, &buf, &len));
        ASSERT_EQ(len, 9);
        ASSERT_STREQ(buf, "some text");
        free(buf);
        buf = NULL;
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "f", 100, &buf, NULL));
        ASSERT_STREQ(buf, "some text");
        free(buf);
        buf = NULL;

        write_text("empty", "");
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "empty", 100, &buf, &len));
        ASSERT_EQ(len, 0);
        ASSERT_STREQ(buf, "");

        ASSERT_ERR(vb_read_file_at(AT_FDCWD, "f", 8, &untouched, &len), EFBIG);
        ASSERT_ERR(vb_read_file_at(AT_FDCWD, "missing", 100, &untouched, &len), ENOENT);
        ASSERT_ERR(vb_read_file_at(AT_FDCWD, ".", 1 << 20, &untouched, &len), EISDIR);
        ASSERT_STREQ(untouched, "untouched");

        /* Relative to a directory fd. */
        {
                _cleanup_close_ int dfd = -1;
                _cleanup_free_ char *b = NULL;
                ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "d", 0755));
                write_text("d/g", "in d");
                dfd = open("d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT_TRUE(dfd >= 0);
                ASSERT_OK(vb_read_file_at(dfd, "g", 100, &b, NULL));
                ASSERT_STREQ(b, "in d");
        }
}

/* The contract says "at most max bytes": a file of exactly max bytes fits. */
TEST(util_read_file_exactly_max)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        write_text("f", "0123456789");
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "f", 10, &buf, &len));
        ASSERT_EQ(len, 10);
        ASSERT_STREQ(buf, "0123456789");
}

/* Files whose size stat(2) does not know (procfs, pipes) are read whole. */
TEST(util_read_file_unknown_size)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        ASSERT_OK(vb_read_file_at(AT_FDCWD, "/proc/self/status", 1 << 20, &buf, &len));
        ASSERT_TRUE(len > 0);
        ASSERT_TRUE(strncmp(buf, "Name:", 5) == 0);
        ASSERT_EQ(strlen(buf), len);
}

/* A file that grows past max while it is read is refused, not returned. */
TEST(util_read_file_growing_past_max)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int fds[2];

        ASSERT_OK(pipe(fds));
        ASSERT_OK(vb_write_all(fds[1], "0123456789abcdef", 16));
        close(fds[1]);
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[0]);
        ASSERT_ERR(vb_read_file_at(AT_FDCWD, path, 12, &buf, &len), EFBIG);
        close(fds[0]);
}

TEST(util_write_file_atomic)
{
        _cleanup_free_ char *buf = NULL;
        struct stat st;

        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, "a", "first", 5, true));
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "a", 100, &buf, NULL));
        ASSERT_STREQ(buf, "first");
        free(buf);
        buf = NULL;
        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, "a", "second!", 7, false));
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "a", 100, &buf, NULL));
        ASSERT_STREQ(buf, "second!");
        free(buf);
        buf = NULL;
        ASSERT_OK(stat("a", &st));
        ASSERT_EQ(st.st_mode & 0777, 0644 & ~(unsigned)0);

        /* In a subdirectory, with the directory fsync. */
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "sub/dir", 0755));
        ASSERT_OK(vb_write_file_atomic_at(AT_FDCWD, "sub/dir/b", "x", 1, true));
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "sub/dir/b", 100, &buf, NULL));
        ASSERT_STREQ(buf, "x");

        /* No temp file is left behind, on success or failure. */
        ASSERT_ERR(vb_write_file_atomic_at(AT_FDCWD, "missing/c", "x", 1, true), ENOENT);
        {
                DIR *d = opendir(".");
                struct dirent *de;
                int n = 0;
                ASSERT_TRUE(d != NULL);
                while ((de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                n++;
                closedir(d);
                ASSERT_EQ(n, 2); /* a, sub */
        }
        ASSERT_OK(vb_fsync_dir_at(AT_FDCWD, "sub"));
        ASSERT_OK(vb_fsync_dir_at(AT_FDCWD, "."));
        ASSERT_ERR(vb_fsync_dir_at(AT_FDCWD, "nope"), ENOENT);
        ASSERT_ERR(vb_fsync_dir_at(AT_FDCWD, "a"), ENOTDIR);
}

TEST(util_mkdir_p)
{
        struct stat st;

        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "a/b/c", 0755));
        ASSERT_OK(stat("a/b/c", &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "a/b/c", 0755));
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "a/b/d/", 0755));
        ASSERT_OK(stat("a/b/d", &st));
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "single", 0700));
        ASSERT_OK(stat("single", &st));
        ASSERT_EQ(st.st_mode & 0777, 0700 & ~(unsigned)0);

        /* Absolute paths work. */
        char abs[PATH_MAX + 16];
        ASSERT_TRUE(getcwd(abs, PATH_MAX) != NULL);
        strcat(abs, "/x/y");
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, abs, 0755));
        ASSERT_OK(stat("x/y", &st));

        /* Relative to a directory fd. */
        {
                _cleanup_close_ int dfd = open("a", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT_TRUE(dfd >= 0);
                ASSERT_OK(vb_mkdir_p_at(dfd, "e/f", 0755));
                ASSERT_OK(stat("a/e/f", &st));
        }

        /* A file in the way is an error. */
        write_text("file", "");
        ASSERT_ERR(vb_mkdir_p_at(AT_FDCWD, "file/sub", 0755), ENOTDIR);
}

/* An existing file is not a directory: mkdir -p must not report success. */
TEST(util_mkdir_p_file_in_place)
{
        write_text("file", "");
        ASSERT_ERR(vb_mkdir_p_at(AT_FDCWD, "file", 0755), ENOTDIR);
}

/* An empty path must fail cleanly, not read past the string. */
TEST(util_mkdir_p_empty)
{
        int r = vb_mkdir_p_at(AT_FDCWD, "", 0755);
        ASSERT_TRUE(r == -ENOENT || r == -EINVAL);
}

TEST(util_rm_rf)
{
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "t/a/b/c", 0755));
        write_text("t/a/f", "x");
        write_text("t/a/b/c/g", "y");
        write_text("t/top", "z");
        ASSERT_OK(symlink("/", "t/a/link-to-root"));
        ASSERT_OK(symlink("a", "t/link-to-a"));
        ASSERT_OK(vb_rm_rf_at(AT_FDCWD, "t"));
        ASSERT_TRUE(!exists("t"));
        /* The symlink to / was removed, not followed. */
        ASSERT_TRUE(exists("/proc"));

        ASSERT_OK(vb_rm_rf_at(AT_FDCWD, "missing"));
        write_text("plain", "x");
        ASSERT_OK(vb_rm_rf_at(AT_FDCWD, "plain"));
        ASSERT_TRUE(!exists("plain"));
        ASSERT_OK(symlink("nowhere", "dangling"));
        ASSERT_OK(vb_rm_rf_at(AT_FDCWD, "dangling"));
        ASSERT_TRUE(!exists("dangling"));

        /* A read-only directory inside: its contents cannot go as non-root,
         * root removes it all; either way the call reports honestly. */
        ASSERT_OK(vb_mkdir_p_at(AT_FDCWD, "ro/inner", 0755));
        write_text("ro/inner/f", "x");
        ASSERT_OK(chmod("ro/inner", 0555));
        int r = vb_rm_rf_at(AT_FDCWD, "ro");
        if (geteuid() == 0) {
                ASSERT_OK(r);
                ASSERT_TRUE(!exists("ro"));
        } else {
                ASSERT_ERR(r, EACCES);
                chmod("ro/inner", 0755);
        }
}

TEST(util_parse_size)
{
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },
                { "4096", 4096 },
                { "1B", 1 },
                { "64K", 64 << 10 },
                { "64KiB", 64 << 10 },
                { "4M", 4 << 20 },
                { "4MiB", 4 << 20 },
                { "1G", 1ULL << 30 },
                { "1GiB", 1ULL << 30 },
                { "2T", 2ULL << 40 },
                { "2TiB", 2ULL << 40 },
                { "16777215T", 16777215ULL << 40 },
                { "18446744073709551615", UINT64_MAX },
        };
        static const char *const bad[] = { "",   "M",   "-1",   "+1",    " 1",   "1 ", "1 M", "1m",
                                           "1k", "1KB", "1.5M", "1MiBx", "0x10", "1E", "1P" };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                if (vb_parse_size(good[i].s, &v) < 0)
                        TEST_FAIL_("size \"%s\" refused", good[i].s);
                ASSERT_UEQ(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                if (vb_parse_size(bad[i], &v) != -EINVAL)
                        TEST_FAIL_("size \"%s\" not refused with -EINVAL", bad[i]);
                ASSERT_UEQ(v, 12345);
        }
        ASSERT_ERR(vb_parse_size(NULL, &v), EINVAL);
        ASSERT_ERR(vb_parse_size("18446744073709551616", &v), ERANGE);
        ASSERT_ERR(vb_parse_size("16777216T", &v), ERANGE);
        ASSERT_ERR(vb_parse_size("99999999999999999999999K", &v), ERANGE);
}

TEST(util_parse_duration)
{
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },     { "45", 45 },     { "30s", 30 },    { "10m", 600 }, { "10min", 600 },
                { "2h", 7200 }, { "7d", 604800 }, { "1w", 604800 }, { "0s", 0 },    { "00", 0 },
        };
        static const char *const bad[] = { "",   "s",  "-1", "+1",   " 1",    "1 ",   "1 s",
                                           "1y", "1M", "1H", "1.5h", "1h30m", "1sec", "1ms" };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                if (vb_parse_duration(good[i].s, &v) < 0)
                        TEST_FAIL_("duration \"%s\" refused", good[i].s);
                ASSERT_UEQ(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                if (vb_parse_duration(bad[i], &v) != -EINVAL)
                        TEST_FAIL_("duration \"%s\" not refused with -EINVAL", bad[i]);
                ASSERT_UEQ(v, 12345);
        }
        ASSERT_ERR(vb_parse_duration(NULL, &v), EINVAL);
        ASSERT_ERR(vb_parse_duration("18446744073709551616", &v), ERANGE);
        ASSERT_ERR(vb_parse_duration("30500568904943664w", &v), ERANGE);
}

TEST(util_format_size)
{
        char buf[32];

        ASSERT_STREQ(vb_format_size(0, buf, sizeof(buf)), "0 B");
        ASSERT_STREQ(vb_format_size(1023, buf, sizeof(buf)), "1023 B");
        ASSERT_STREQ(vb_format_size(1024, buf, sizeof(buf)), "1.0 KiB");
        ASSERT_STREQ(vb_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
        ASSERT_STREQ(vb_format_size(1536ULL << 20, buf, sizeof(buf)), "1.5 GiB");
        ASSERT_STREQ(vb_format_size(1ULL << 40, buf, sizeof(buf)), "1.0 TiB");
        ASSERT_STREQ(vb_format_size(1ULL << 50, buf, sizeof(buf)), "1.0 PiB");
        ASSERT_STREQ(vb_format_size(1ULL << 60, buf, sizeof(buf)), "1024.0 PiB");
        ASSERT_STREQ(vb_format_size(UINT64_MAX, buf, sizeof(buf)), "16384.0 PiB");
        /* Truncates into a small buffer, always terminated. */
        ASSERT_STREQ(vb_format_size(1536, buf, 4), "1.5");
}

TEST(util_random_bytes)
{
        uint8_t a[64] = { 0 }, b[64] = { 0 }, zero[64] = { 0 };

        ASSERT_OK(vb_random_bytes(a, sizeof(a)));
        ASSERT_OK(vb_random_bytes(b, sizeof(b)));
        ASSERT_TRUE(memcmp(a, zero, sizeof(a)) != 0);
        ASSERT_TRUE(memcmp(a, b, sizeof(a)) != 0);
        ASSERT_OK(vb_random_bytes(a, 0));

        /* More than getrandom(2) returns in one call (32 MiB cap). */
        size_t len = 33 << 20;
        _cleanup_free_ uint8_t *big = calloc(1, len);
        ASSERT_TRUE(big != NULL);
        ASSERT_OK(vb_random_bytes(big, len));
        ASSERT_TRUE(memcmp(big + len - sizeof(zero), zero, sizeof(zero)) != 0);
}

TEST(util_now_ns)
{
        uint64_t a = vb_now_ns(), b;

        ASSERT_TRUE(a > 0);
        usleep(2000);
        b = vb_now_ns();
        ASSERT_TRUE(b >= a + 1000000);
        ASSERT_TRUE(b < a + 10ULL * 1000000000ULL);
}
