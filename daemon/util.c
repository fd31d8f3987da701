/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util.c -- whole-buffer I/O, atomic file replacement, size and duration
 * parsing shared by every module.
 */
#include "daemon/util.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

int vb_write_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int vb_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                off += n;
                len -= (size_t)n;
        }
        return 0;
}

int vb_pread_all(int fd, void *buf, size_t len, off_t off)
{
        uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = pread(fd, p, len, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EBADMSG;
                p += n;
                off += n;
                len -= (size_t)n;
        }
        return 0;
}

int vb_read_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t len = 0, cap;

        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        /* st_size is a hint only: procfs files and pipes say 0, files grow. */
        cap = MAX((size_t)st.st_size, (size_t)4096) + 1;
        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len == cap - 1) {
                        char *nb;
                        if (len > max)
                                return -EFBIG;
                        nb = realloc(buf, cap * 2);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

int vb_fsync_dir_at(int dirfd, const char *path)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int vb_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, bool do_sync)
{
        _cleanup_close_ int fd = -1;
        char tmp[PATH_MAX];
        uint64_t r;
        int k;

        k = vb_random_bytes(&r, sizeof(r));
        if (k < 0)
                return k;
        if (snprintf(tmp, sizeof(tmp), "%s.tmp-%016" PRIx64, name, r) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        k = vb_write_all(fd, data, len);
        if (k >= 0 && do_sync && fsync(fd) < 0)
                k = -errno;
        if (k >= 0 && close(TAKE_FD(fd)) < 0)
                k = -errno;
        if (k >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                k = -errno;
        if (k < 0) {
                unlinkat(dirfd, tmp, 0);
                return k;
        }
        if (do_sync) {
                _cleanup_free_ char *dir = strdup(name);
                char *slash;

                if (!dir)
                        return -ENOMEM;
                slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                return vb_fsync_dir_at(dirfd, slash ? dir : ".");
        }
        return 0;
}

int vb_mkdir_p_at(int dirfd, const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        if (!*p)
                return -ENOENT;
        for (char *s = p + 1;; s++) {
                bool end = *s == 0;
                if (*s == '/' || end) {
                        struct stat st;
                        *s = 0;
                        if (mkdirat(dirfd, p, mode) < 0) {
                                if (errno != EEXIST)
                                        return -errno;
                                if (fstatat(dirfd, p, &st, 0) < 0)
                                        return -errno;
                                if (!S_ISDIR(st.st_mode))
                                        return -ENOTDIR;
                        }
                        if (end)
                                break;
                        *s = '/';
                }
        }
        return 0;
}

int vb_rm_rf_at(int atfd, const char *path)
{
        _cleanup_close_ int fd = -1;
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (unlinkat(atfd, path, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return -errno;
        fd = openat(atfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1;
        while ((de = readdir(d))) {
                int k;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                k = vb_rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(atfd, path, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int vb_parse_size(const char *s, uint64_t *ret)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "", 1 },           { "B", 1 },
                { "K", 1ULL << 10 }, { "KiB", 1ULL << 10 },
                { "M", 1ULL << 20 }, { "MiB", 1ULL << 20 },
                { "G", 1ULL << 30 }, { "GiB", 1ULL << 30 },
                { "T", 1ULL << 40 }, { "TiB", 1ULL << 40 },
        };
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -ERANGE;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                if (!streq(end, units[i].suffix))
                        continue;
                if (v > UINT64_MAX / units[i].factor)
                        return -ERANGE;
                *ret = v * units[i].factor;
                return 0;
        }
        return -EINVAL;
}

int vb_parse_duration(const char *s, uint64_t *ret_seconds)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "", 1 }, { "s", 1 }, { "m", 60 }, { "min", 60 }, { "h", 3600 }, { "d", 86400 }, { "w", 604800 },
        };
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -ERANGE;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                if (!streq(end, units[i].suffix))
                        continue;
                if (v > UINT64_MAX / units[i].factor)
                        return -ERANGE;
                *ret_seconds = v * units[i].factor;
                return 0;
        }
        return -EINVAL;
}

const char *vb_format_size(uint64_t bytes, char *buf, size_t size)
{
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double)bytes;
        size_t i = 0;

        while (v >= 1024 && i + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                i++;
        }
        if (i == 0)
                snprintf(buf, size, "%" PRIu64 " B", bytes);
        else
                snprintf(buf, size, "%.1f %s", v, units[i]);
        return buf;
}

int vb_random_bytes(void *buf, size_t len)
{
        uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = getrandom(p, len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

uint64_t vb_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
