/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util.h -- small helpers every module may use: cleanup attributes,
 * ownership transfer, little-endian encoding and whole-buffer I/O.
 *
 * Nothing here allocates behind the caller's back or logs; the I/O helpers
 * return 0 or -errno like every other function in vbak.
 */
#ifndef VB_UTIL_H
#define VB_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#ifndef MIN /* <sys/param.h> has the same */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define DIV_ROUND_UP(a, b) (((a) + (b)-1) / (b))

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Hand ownership out of a _cleanup_ scope: returns the value, leaves NULL. */
#define TAKE_PTR(p)                                                                                                    \
        ({                                                                                                             \
                __typeof__(p) _p_ = (p);                                                                               \
                (p) = NULL;                                                                                            \
                _p_;                                                                                                   \
        })
#define TAKE_FD(fd)                                                                                                    \
        ({                                                                                                             \
                int _fd_ = (fd);                                                                                       \
                (fd) = -1;                                                                                             \
                _fd_;                                                                                                  \
        })

/* Defines NAMEp(type *p) that calls func(*p) when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                                        \
        static inline void func##p(type *p)                                                                            \
        {                                                                                                              \
                if (*p)                                                                                                \
                        func(*p);                                                                                      \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static inline void put_le16(void *p, uint16_t v)
{
        uint8_t *b = p;
        b[0] = v;
        b[1] = v >> 8;
}

static inline void put_le32(void *p, uint32_t v)
{
        uint8_t *b = p;
        for (int i = 0; i < 4; i++)
                b[i] = v >> (8 * i);
}

static inline void put_le64(void *p, uint64_t v)
{
        uint8_t *b = p;
        for (int i = 0; i < 8; i++)
                b[i] = v >> (8 * i);
}

static inline uint16_t get_le16(const void *p)
{
        const uint8_t *b = p;
        return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t get_le32(const void *p)
{
        const uint8_t *b = p;
        return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t get_le64(const void *p)
{
        const uint8_t *b = p;
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | b[i];
        return v;
}

/* Whole-buffer I/O: retry on EINTR and short transfers. A read that meets
 * end of file early fails with -EBADMSG (the caller expected the bytes). */
int vb_write_all(int fd, const void *buf, size_t len);
int vb_pwrite_all(int fd, const void *buf, size_t len, off_t off);
int vb_pread_all(int fd, void *buf, size_t len, off_t off);

/* Reads a whole file (at most max bytes, else -EFBIG) into a NUL-terminated
 * buffer owned by the caller. */
int vb_read_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len);

/* Writes data to dir/name atomically: a temp file in the same directory,
 * optionally fsync'd, then renamed over name; with do_sync the directory is
 * fsync'd too. */
int vb_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, bool do_sync);

/* fsync(2) of a directory by path relative to dirfd. */
int vb_fsync_dir_at(int dirfd, const char *path);

/* mkdir -p relative to dirfd; existing directories are fine. */
int vb_mkdir_p_at(int dirfd, const char *path, mode_t mode);

/* rm -rf relative to dirfd; a missing path is fine. */
int vb_rm_rf_at(int dirfd, const char *path);

/* Parses "4M", "64KiB", "1GiB", "4096" into bytes (binary units). */
int vb_parse_size(const char *s, uint64_t *ret);

/* Parses "30s", "10m", "2h", "7d" or plain seconds. */
int vb_parse_duration(const char *s, uint64_t *ret_seconds);

/* Formats bytes as "1.5 GiB" into buf. */
const char *vb_format_size(uint64_t bytes, char *buf, size_t size);

/* Fills buf with len random bytes from getrandom(2). */
int vb_random_bytes(void *buf, size_t len);

/* Monotonic clock in nanoseconds. */
uint64_t vb_now_ns(void);

#endif
