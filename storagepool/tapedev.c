/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapedev.c -- the tape device: an st(4) drive or file-backed volumes
 * (tapedev.h has the formats).
 *
 * DESIGN (the drive). The drive is put into variable block mode (MTSETBLK
 * 0), so that each write(2) of SP_TAPE_RECORD_SIZE bytes is one record on
 * the tape and each read(2) returns one record. The node must be the
 * non-rewinding one: the pool positions the tape itself (MTREW, MTFSF) and a
 * close must not rewind it. The end of the medium shows as a short write
 * (the early warning) or a write failing with ENOSPC; both are -ENOSPC here.
 * A read at the end of the recorded data fails (EIO, "blank check") with
 * GMT_EOD set in the status. This backend follows the st(4) manual page; it
 * was not run against a real drive.
 */
#include "storagepool/tapedev.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mtio.h>
#include <sys/stat.h>

#include "daemon/util.h"

#define ITEM_HEADER 8
#define ITEM_RECORD "VTRC"
#define ITEM_FILEMARK "VTFM"
#define LABEL_AT 12
#define UUID_AT 76

struct sp_tapedev {
        bool drive;
        char *device;
        int fd;       /* the drive, or the loaded volume file */
        int dirfd;    /* stand-in: the folder of volumes */
        uint64_t cap; /* stand-in: bytes a volume holds; 0 no limit */
        bool do_sync;
        uint64_t pos; /* stand-in: offset of the next item */
        char error[256];
};

static _printf_(3, 4) int fail(sp_tapedev *t, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(t->error, sizeof(t->error), fmt, ap);
        va_end(ap);
        return r;
}

bool sp_tapedev_is_drive(const char *device)
{
        struct stat st;

        if (!device)
                return false;
        if (strncmp(device, "/dev/", 5) == 0)
                return true;
        return stat(device, &st) == 0 && S_ISCHR(st.st_mode);
}

bool sp_tape_label_is_valid(const char *label)
{
        size_t n = label ? strlen(label) : 0;

        if (n == 0 || n > SP_TAPE_LABEL_MAX || label[0] == '.' || label[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((label[i] >= 'a' && label[i] <= 'z') || (label[i] >= 'A' && label[i] <= 'Z') ||
                      (label[i] >= '0' && label[i] <= '9') || label[i] == '.' || label[i] == '_' || label[i] == '-'))
                        return false;
        return true;
}

int sp_tapedev_open(const char *device, uint64_t volume_size, bool do_sync, sp_tapedev **ret)
{
        _cleanup_free_ sp_tapedev *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        if (!device)
                return -EINVAL;
        *t = (sp_tapedev){ .fd = -1, .dirfd = -1, .cap = volume_size, .do_sync = do_sync };
        t->drive = sp_tapedev_is_drive(device);
        t->device = strdup(device);
        if (!t->device)
                return -ENOMEM;
        if (t->drive) {
                struct mtop op = { .mt_op = MTSETBLK, .mt_count = 0 };

                t->fd = open(device, O_RDWR | O_CLOEXEC);
                if (t->fd < 0) {
                        r = -errno;
                        free(t->device);
                        return r;
                }
                /* Variable block mode: one write(2), one record. */
                if (ioctl(t->fd, MTIOCTOP, &op) < 0) {
                        r = -errno;
                        close(t->fd);
                        free(t->device);
                        return r;
                }
        } else {
                r = vb_mkdir_p_at(AT_FDCWD, device, 0755);
                if (r >= 0) {
                        t->dirfd = open(device, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (t->dirfd < 0)
                                r = -errno;
                }
                if (r < 0) {
                        free(t->device);
                        return r;
                }
        }
        *ret = TAKE_PTR(t);
        return 0;
}

sp_tapedev *sp_tapedev_close(sp_tapedev *t)
{
        if (!t)
                return NULL;
        if (t->fd >= 0)
                close(t->fd);
        if (t->dirfd >= 0)
                close(t->dirfd);
        free(t->device);
        free(t);
        return NULL;
}

const char *sp_tapedev_error(const sp_tapedev *t)
{
        return t ? t->error : "";
}

/* --- the drive ---------------------------------------------------------- */

static int mt_op(sp_tapedev *t, short op, int count)
{
        struct mtop mo = { .mt_op = op, .mt_count = count };

        if (ioctl(t->fd, MTIOCTOP, &mo) < 0)
                return -errno;
        return 0;
}

static int mt_status(sp_tapedev *t, struct mtget *ret)
{
        if (ioctl(t->fd, MTIOCGET, ret) < 0)
                return -errno;
        return 0;
}

static int drive_write(sp_tapedev *t, const void *buf, size_t len)
{
        ssize_t n;

        do
                n = write(t->fd, buf, len);
        while (n < 0 && errno == EINTR);
        /* st(4): at the early warning the write that meets it is finished
         * short, and the next one fails with ENOSPC. */
        if (n < 0 && (errno == ENOSPC || errno == EFBIG))
                return fail(t, -ENOSPC, "%s: end of medium", t->device);
        if (n < 0)
                return fail(t, -errno, "%s: write: %s", t->device, strerror(errno));
        if ((size_t)n != len)
                return fail(t, -ENOSPC, "%s: end of medium (short write)", t->device);
        return 0;
}

static ssize_t drive_read(sp_tapedev *t, void *buf, size_t size)
{
        struct mtget st;
        ssize_t n;

        do
                n = read(t->fd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return n; /* 0: a filemark, passed */
        if (errno == ENOMEM)
                return fail(t, -ENOMEM, "%s: a record is larger than %zu bytes", t->device, size);
        if (errno == EIO && mt_status(t, &st) >= 0 && (GMT_EOD(st.mt_gstat) || GMT_EOT(st.mt_gstat)))
                return -ENODATA; /* blank check: the end of the recorded data */
        return fail(t, -errno, "%s: read: %s", t->device, strerror(errno));
}

/* --- the stand-in ------------------------------------------------------- */

static int file_size(sp_tapedev *t, uint64_t *ret)
{
        struct stat st;

        if (fstat(t->fd, &st) < 0)
                return -errno;
        *ret = (uint64_t)st.st_size;
        return 0;
}

/* Writes one item at the position, ending the volume's data there. */
static int file_write_item(sp_tapedev *t, const char *kind, const void *buf, size_t len)
{
        uint8_t h[ITEM_HEADER];
        int r;

        if (t->fd < 0)
                return fail(t, -ENOMEDIUM, "%s: no volume loaded", t->device);
        /* Tape semantics: a write ends the data at this point. */
        if (ftruncate(t->fd, (off_t)t->pos) < 0)
                return fail(t, -errno, "%s: %s", t->device, strerror(errno));
        if (t->cap && t->pos + ITEM_HEADER + len > t->cap)
                return fail(t, -ENOSPC, "%s: end of medium", t->device);
        memcpy(h, kind, 4);
        put_le32(h + 4, (uint32_t)len);
        r = vb_pwrite_all(t->fd, h, sizeof(h), (off_t)t->pos);
        if (r >= 0 && len)
                r = vb_pwrite_all(t->fd, buf, len, (off_t)(t->pos + ITEM_HEADER));
        if (r < 0)
                return fail(t, r, "%s: write: %s", t->device, strerror(-r));
        t->pos += ITEM_HEADER + len;
        return 0;
}

/* Reads the header of the item at the position: 1 with its kind and length,
 * 0 at the end of the data. */
static int file_peek(sp_tapedev *t, bool *ret_filemark, uint32_t *ret_len)
{
        uint8_t h[ITEM_HEADER];
        uint64_t size;
        int r;

        if (t->fd < 0)
                return fail(t, -ENOMEDIUM, "%s: no volume loaded", t->device);
        r = file_size(t, &size);
        if (r < 0)
                return r;
        if (t->pos >= size)
                return 0;
        r = vb_pread_all(t->fd, h, sizeof(h), (off_t)t->pos);
        if (r < 0)
                return fail(t, r == -EBADMSG ? -EIO : r, "%s: a damaged item at offset %llu", t->device,
                            (unsigned long long)t->pos);
        if (memcmp(h, ITEM_FILEMARK, 4) == 0)
                *ret_filemark = true;
        else if (memcmp(h, ITEM_RECORD, 4) == 0)
                *ret_filemark = false;
        else
                return fail(t, -EIO, "%s: a damaged item at offset %llu", t->device, (unsigned long long)t->pos);
        *ret_len = get_le32(h + 4);
        if (t->pos + ITEM_HEADER + *ret_len > size)
                return fail(t, -EIO, "%s: a truncated record at offset %llu", t->device, (unsigned long long)t->pos);
        return 1;
}

static ssize_t file_read(sp_tapedev *t, void *buf, size_t size)
{
        bool fm = false;
        uint32_t len = 0;
        int r = file_peek(t, &fm, &len);

        if (r <= 0)
                return r < 0 ? r : -ENODATA;
        if (fm) {
                t->pos += ITEM_HEADER;
                return 0;
        }
        if (len > size)
                return fail(t, -ENOMEM, "%s: a record is larger than %zu bytes", t->device, size);
        r = vb_pread_all(t->fd, buf, len, (off_t)(t->pos + ITEM_HEADER));
        if (r < 0)
                return fail(t, -EIO, "%s: read: %s", t->device, strerror(-r));
        t->pos += ITEM_HEADER + len;
        return len;
}

/* --- the operations ----------------------------------------------------- */

int sp_tapedev_rewind(sp_tapedev *t)
{
        int r;

        if (!t->drive) {
                t->pos = 0;
                return t->fd < 0 ? fail(t, -ENOMEDIUM, "%s: no volume loaded", t->device) : 0;
        }
        r = mt_op(t, MTREW, 1);
        return r < 0 ? fail(t, r, "%s: rewind: %s", t->device, strerror(-r)) : 0;
}

int sp_tapedev_space_files(sp_tapedev *t, unsigned n)
{
        int r;

        if (n == 0)
                return 0;
        if (t->drive) {
                r = mt_op(t, MTFSF, (int)n);
                if (r == -EIO)
                        return fail(t, -ENODATA, "%s: fewer than %u files on the tape", t->device, n);
                return r < 0 ? fail(t, r, "%s: space forward: %s", t->device, strerror(-r)) : 0;
        }
        while (n > 0) {
                bool fm = false;
                uint32_t len = 0;

                r = file_peek(t, &fm, &len);
                if (r < 0)
                        return r;
                if (r == 0)
                        return fail(t, -ENODATA, "%s: fewer files on the volume than expected", t->device);
                t->pos += ITEM_HEADER + len;
                n -= fm;
        }
        return 0;
}

int sp_tapedev_end_of_data(sp_tapedev *t)
{
        int r;

        if (t->drive) {
                r = mt_op(t, MTEOM, 1);
                return r < 0 ? fail(t, r, "%s: space to end of data: %s", t->device, strerror(-r)) : 0;
        }
        if (t->fd < 0)
                return fail(t, -ENOMEDIUM, "%s: no volume loaded", t->device);
        return file_size(t, &t->pos);
}

int sp_tapedev_write(sp_tapedev *t, const void *buf, size_t len)
{
        if (len == 0 || len > SP_TAPE_RECORD_SIZE)
                return -EINVAL;
        return t->drive ? drive_write(t, buf, len) : file_write_item(t, ITEM_RECORD, buf, len);
}

int sp_tapedev_write_filemark(sp_tapedev *t)
{
        int r;

        if (t->drive) {
                r = mt_op(t, MTWEOF, 1);
                if (r == -ENOSPC)
                        return fail(t, r, "%s: end of medium", t->device);
                return r < 0 ? fail(t, r, "%s: write filemark: %s", t->device, strerror(-r)) : 0;
        }
        r = file_write_item(t, ITEM_FILEMARK, NULL, 0);
        if (r >= 0 && t->do_sync && fdatasync(t->fd) < 0)
                r = fail(t, -errno, "%s: %s", t->device, strerror(errno));
        return r;
}

ssize_t sp_tapedev_read(sp_tapedev *t, void *buf, size_t size)
{
        return t->drive ? drive_read(t, buf, size) : file_read(t, buf, size);
}

/* --- labels ------------------------------------------------------------- */

int sp_tapedev_write_label(sp_tapedev *t, const char *label, const char *uuid)
{
        _cleanup_free_ uint8_t *rec = calloc(1, SP_TAPE_RECORD_SIZE);
        int r;

        if (!rec)
                return -ENOMEM;
        if (!sp_tape_label_is_valid(label) || strlen(uuid) > 36)
                return -EINVAL;
        memcpy(rec, SP_TAPE_LABEL_MAGIC, 8);
        put_le32(rec + 8, SP_TAPE_LABEL_VERSION);
        memcpy(rec + LABEL_AT, label, strlen(label));
        memcpy(rec + UUID_AT, uuid, strlen(uuid));
        r = sp_tapedev_rewind(t);
        if (r >= 0)
                r = sp_tapedev_write(t, rec, SP_TAPE_RECORD_SIZE);
        if (r >= 0)
                r = sp_tapedev_write_filemark(t);
        return r;
}

/* Opens the stand-in's volume file. */
static int file_load(sp_tapedev *t, const char *label, bool create)
{
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, "%s" SP_TAPE_VOLUME_SUFFIX, label) < 0)
                return -ENOMEM;
        if (t->fd >= 0)
                close(t->fd);
        t->pos = 0;
        t->fd = openat(t->dirfd, name, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
        if (t->fd < 0 && errno == ENOENT)
                return fail(t, -ENOENT, "volume %s: %s/%s not found", label, t->device, name);
        if (t->fd < 0)
                return fail(t, -errno, "volume %s: %s/%s: %s", label, t->device, name, strerror(errno));
        return 0;
}

int sp_tapedev_load(sp_tapedev *t, const char *label, const char *uuid, bool blank_ok, bool *ret_blank)
{
        _cleanup_free_ uint8_t *rec = malloc(SP_TAPE_RECORD_SIZE);
        char have[SP_TAPE_LABEL_MAX + 1] = "", owner[37] = "";
        ssize_t n;
        int r;

        if (!rec)
                return -ENOMEM;
        if (!sp_tape_label_is_valid(label))
                return -EINVAL;
        t->error[0] = '\0';
        if (t->drive) {
                struct mtget st;

                r = mt_status(t, &st);
                if (r < 0)
                        return fail(t, r, "%s: status: %s", t->device, strerror(-r));
                if (GMT_DR_OPEN(st.mt_gstat) || !GMT_ONLINE(st.mt_gstat))
                        return fail(t, -ENOMEDIUM, "no tape in %s: insert volume %s into %s", t->device, label,
                                    t->device);
        } else {
                r = file_load(t, label, blank_ok);
                if (r < 0)
                        return r;
        }
        r = sp_tapedev_rewind(t);
        if (r < 0)
                return r;
        n = sp_tapedev_read(t, rec, SP_TAPE_RECORD_SIZE);
        if (n == -ENODATA && blank_ok) {
                *ret_blank = true;
                return sp_tapedev_rewind(t);
        }
        if (n < 0 && n != -ENODATA)
                return (int)n;
        if (n < LABEL_AT + SP_TAPE_LABEL_MAX || memcmp(rec, SP_TAPE_LABEL_MAGIC, 8) != 0 ||
            get_le32(rec + 8) != SP_TAPE_LABEL_VERSION) {
                if (t->drive)
                        return fail(t, -EMEDIUMTYPE, "the tape in %s has no vbak label: insert volume %s into %s",
                                    t->device, label, t->device);
                return fail(t, -EMEDIUMTYPE, "volume %s: %s has no vbak label", label, t->device);
        }
        memcpy(have, rec + LABEL_AT, SP_TAPE_LABEL_MAX);
        memcpy(owner, rec + UUID_AT, 36);
        if (!streq(have, label))
                return fail(t, -EMEDIUMTYPE, "the volume in %s is %s: insert volume %s into %s", t->device, have, label,
                            t->device);
        if (uuid && !streq(owner, uuid))
                return fail(t, -EMEDIUMTYPE, "volume %s in %s belongs to another pool (%s)", label, t->device, owner);
        *ret_blank = false;
        return sp_tapedev_rewind(t);
}
