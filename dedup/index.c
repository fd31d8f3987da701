/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * index.c -- the fixed index writer and reader (format in index.h).
 */
#include "dedup/index.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/util.h"
#include "dedup/crc32c.h"

#define WRITE_BUFFER (64 * 1024)
#define CRC_OFFSET 96

struct dd_index_writer {
        int dirfd;
        int fd;
        char *name;
        char *tmp;
        dd_index_header h;
        uint64_t appended;
        dd_hasher *hasher;
        uint8_t buf[WRITE_BUFFER];
        size_t buf_len;
        uint64_t file_off;
        bool finished;
};

struct dd_index {
        int fd;
        dd_index_header h;
};

static void header_encode(const dd_index_header *h, uint8_t out[DD_INDEX_HEADER_SIZE])
{
        memset(out, 0, DD_INDEX_HEADER_SIZE);
        memcpy(out, DD_INDEX_MAGIC, 8);
        put_le32(out + 8, DD_INDEX_VERSION);
        put_le32(out + 12, DD_INDEX_HEADER_SIZE);
        memcpy(out + 16, h->uuid, 16);
        put_le64(out + 32, h->disk_size);
        put_le32(out + 40, h->chunk_size);
        put_le32(out + 44, 0);
        put_le64(out + 48, h->chunk_count);
        put_le64(out + 56, h->ctime);
        memcpy(out + 64, h->checksum.b, DD_DIGEST_SIZE);
        put_le32(out + CRC_OFFSET, dd_crc32c(0, out, CRC_OFFSET));
}

static int header_decode(const uint8_t in[DD_INDEX_HEADER_SIZE], dd_index_header *ret)
{
        dd_index_header h;

        if (memcmp(in, DD_INDEX_MAGIC, 8) != 0)
                return -EBADMSG;
        if (get_le32(in + 8) != DD_INDEX_VERSION)
                return -EPROTONOSUPPORT;
        if (get_le32(in + 12) != DD_INDEX_HEADER_SIZE || get_le32(in + 44) != 0)
                return -EBADMSG;
        if (get_le32(in + CRC_OFFSET) != dd_crc32c(0, in, CRC_OFFSET))
                return -EBADMSG;
        memcpy(h.uuid, in + 16, 16);
        h.disk_size = get_le64(in + 32);
        h.chunk_size = get_le32(in + 40);
        h.chunk_count = get_le64(in + 48);
        h.ctime = get_le64(in + 56);
        memcpy(h.checksum.b, in + 64, DD_DIGEST_SIZE);
        if (h.chunk_size == 0 || h.chunk_count != dd_chunk_count(h.disk_size, h.chunk_size) ||
            h.chunk_count > (UINT64_MAX - DD_INDEX_HEADER_SIZE) / DD_DIGEST_SIZE)
                return -EBADMSG;
        *ret = h;
        return 0;
}

int dd_index_writer_new(int dirfd, const char *name, uint64_t disk_size, uint32_t chunk_size, dd_index_writer **ret)
{
        dd_index_writer *w;
        uint8_t zero[DD_INDEX_HEADER_SIZE] = { 0 };
        int r;

        if (!name || chunk_size == 0 || !ret)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->fd = -1;
        w->dirfd = dirfd;
        w->h.disk_size = disk_size;
        w->h.chunk_size = chunk_size;
        w->h.chunk_count = dd_chunk_count(disk_size, chunk_size);
        w->h.ctime = (uint64_t)time(NULL);
        r = vb_random_bytes(w->h.uuid, sizeof(w->h.uuid));
        if (r < 0)
                goto fail;
        w->name = strdup(name);
        if (!w->name || asprintf(&w->tmp, "%s.tmp", name) < 0) {
                w->tmp = NULL;
                r = -ENOMEM;
                goto fail;
        }
        w->hasher = dd_hasher_new();
        if (!w->hasher) {
                r = -ENOMEM;
                goto fail;
        }
        w->fd = openat(dirfd, w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w->fd < 0) {
                r = -errno;
                goto fail;
        }
        r = vb_write_all(w->fd, zero, sizeof(zero));
        if (r < 0)
                goto fail;
        w->file_off = DD_INDEX_HEADER_SIZE;
        *ret = w;
        return 0;
fail:
        dd_index_writer_free(w);
        return r;
}

static int writer_flush(dd_index_writer *w)
{
        int r;

        if (w->buf_len == 0)
                return 0;
        r = vb_pwrite_all(w->fd, w->buf, w->buf_len, (off_t)w->file_off);
        if (r < 0)
                return r;
        w->file_off += w->buf_len;
        w->buf_len = 0;
        return 0;
}

int dd_index_writer_append(dd_index_writer *w, const dd_digest *d)
{
        static const dd_digest null;
        int r;

        if (!w || w->finished)
                return -EINVAL;
        if (w->appended >= w->h.chunk_count)
                return -EINVAL;
        if (!d)
                d = &null;
        r = dd_hasher_update(w->hasher, d->b, DD_DIGEST_SIZE);
        if (r < 0)
                return r;
        if (w->buf_len + DD_DIGEST_SIZE > sizeof(w->buf)) {
                r = writer_flush(w);
                if (r < 0)
                        return r;
        }
        memcpy(w->buf + w->buf_len, d->b, DD_DIGEST_SIZE);
        w->buf_len += DD_DIGEST_SIZE;
        w->appended++;
        return 0;
}

int dd_index_writer_finish(dd_index_writer *w, bool do_sync, dd_index_header *ret_header)
{
        uint8_t header[DD_INDEX_HEADER_SIZE];
        int r;

        if (!w || w->finished || w->appended != w->h.chunk_count)
                return -EINVAL;
        r = writer_flush(w);
        if (r < 0)
                return r;
        r = dd_hasher_final(w->hasher, &w->h.checksum);
        if (r < 0)
                return r;
        header_encode(&w->h, header);
        r = vb_pwrite_all(w->fd, header, sizeof(header), 0);
        if (r < 0)
                return r;
        if (do_sync && fsync(w->fd) < 0)
                return -errno;
        if (close(TAKE_FD(w->fd)) < 0)
                return -errno;
        if (renameat(w->dirfd, w->tmp, w->dirfd, w->name) < 0)
                return -errno;
        w->finished = true;
        if (ret_header)
                *ret_header = w->h;
        return 0;
}

dd_index_writer *dd_index_writer_free(dd_index_writer *w)
{
        if (!w)
                return NULL;
        if (w->fd >= 0)
                close(w->fd);
        if (!w->finished && w->tmp)
                unlinkat(w->dirfd, w->tmp, 0);
        dd_hasher_free(w->hasher);
        free(w->name);
        free(w->tmp);
        free(w);
        return NULL;
}

int dd_index_open_fd(int fd, dd_index **ret)
{
        _cleanup_close_ int owned = fd;
        _cleanup_(dd_hasher_freep) dd_hasher *hasher = NULL;
        uint8_t header[DD_INDEX_HEADER_SIZE];
        uint8_t buf[64 * 1024];
        dd_index_header h;
        dd_digest sum;
        dd_index *idx;
        struct stat st;
        uint64_t left, off;
        int r;

        if (fd < 0 || !ret)
                return -EINVAL;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size < DD_INDEX_HEADER_SIZE)
                return -EBADMSG;
        r = vb_pread_all(fd, header, sizeof(header), 0);
        if (r < 0)
                return r;
        r = header_decode(header, &h);
        if (r < 0)
                return r;
        if ((uint64_t)st.st_size != DD_INDEX_HEADER_SIZE + h.chunk_count * DD_DIGEST_SIZE)
                return -EBADMSG;
        hasher = dd_hasher_new();
        if (!hasher)
                return -ENOMEM;
        left = h.chunk_count * DD_DIGEST_SIZE;
        off = DD_INDEX_HEADER_SIZE;
        while (left > 0) {
                size_t n = (size_t)MIN(left, sizeof(buf));
                r = vb_pread_all(fd, buf, n, (off_t)off);
                if (r < 0)
                        return r;
                r = dd_hasher_update(hasher, buf, n);
                if (r < 0)
                        return r;
                left -= n;
                off += n;
        }
        r = dd_hasher_final(hasher, &sum);
        if (r < 0)
                return r;
        if (!dd_digest_eq(&sum, &h.checksum))
                return -EBADMSG;
        idx = calloc(1, sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        idx->fd = TAKE_FD(owned);
        idx->h = h;
        *ret = idx;
        return 0;
}

int dd_index_open_at(int dirfd, const char *name, dd_index **ret)
{
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return dd_index_open_fd(fd, ret);
}

const dd_index_header *dd_index_get_header(const dd_index *idx)
{
        return &idx->h;
}

int dd_index_get(dd_index *idx, uint64_t i, dd_digest *ret)
{
        if (!idx || i >= idx->h.chunk_count)
                return -EINVAL;
        return vb_pread_all(idx->fd, ret->b, DD_DIGEST_SIZE, (off_t)(DD_INDEX_HEADER_SIZE + i * DD_DIGEST_SIZE));
}

dd_index *dd_index_free(dd_index *idx)
{
        if (idx) {
                if (idx->fd >= 0)
                        close(idx->fd);
                free(idx);
        }
        return NULL;
}
