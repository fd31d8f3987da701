/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tape.c -- the tape pool: restore points written one after another as
 * files of a tape (storagepool/tapedev.h), a catalog in a local folder.
 *
 *   pool.json       as for every pool (storagepool/fs.h)
 *   tape.json       the device, the media pool and the catalog (below)
 *   tmp/            the writer's spool and index files, the reader's staging
 *   locks/tape.lock held while the drive is in use
 *   locks/catalog.lock held while tape.json is read, changed and written
 *
 * tape.json:
 *
 *   { "format": "vbak-tape", "version": 1, "device": "/dev/nst0" or a folder,
 *     "volume_size": bytes (0: no limit),
 *     "volumes": [ { "label": "L1", "next_file": 3, "full": false }, ... ],
 *     "restore_points": [ { "volume": "L1", "file": 1, "bytes": ..., "chunks": ...,
 *                           "manifest": { the manifest } }, ... ] }
 *
 * A restore point is one file of a volume (between two filemarks). Its
 * bytes are a stream of entries packed into SP_TAPE_RECORD_SIZE records
 * (the last one padded with zeros); an entry is a 40-byte header (integers
 * little endian) and its payload:
 *
 *   offset size  field
 *        0    4  magic "VBTE"
 *        4    4  type: 1 begin, 2 disk, 3 blob, 4 index, 5 manifest, 6 end
 *        8    4  disk number (in the order the disks were begun)
 *       12    4  disk: the chunk size; else 0
 *       16    8  blob: the chunk index; disk: the disk size; else 0
 *       24    8  payload length
 *       32    4  CRC-32C of bytes 0-31
 *       36    4  zero
 *
 *   begin     {"id": ..., "pool": uuid} (JSON)
 *   disk      the disk's name; one before its blobs
 *   blob      a chunk blob (dedup/blob.h); zero chunks have none
 *   index     the disk's fixed index (dedup/index.h), whole
 *   manifest  the manifest (JSON), as in the catalog
 *   end       nothing: the stream is complete
 *
 * Blobs carry their own CRC and are checked against the index's digest when
 * read; the index against the checksum in the manifest. So the tape alone is
 * enough to rebuild the catalog (not implemented yet).
 *
 * DESIGN. chunk_prepare encodes a chunk into its slot's scratch buffer (on
 * a worker thread); chunk_commit appends it to the tape file (on the
 * caller's thread, in chunk order). The writer also keeps each record it
 * writes in a spool file in tmp/: when a write meets the end of the medium,
 * the partial file is abandoned, the volume marked full, and the restore
 * point written again from the spool, from its start, on the next volume of
 * the media pool. A restore point that does not fit on an empty volume
 * fails (-EFBIG): spanning volumes is left for later. The restore point
 * exists only once the catalog names it, which commit does after the
 * closing filemark; a file the catalog does not name (a crash, an abort) is
 * overwritten by the next restore point written to that volume (tape
 * semantics: a write ends the data there).
 *
 * A reader positions the tape (load the volume, rewind, space forward to
 * the file), reads the restore point's file once, keeping the disk's blobs
 * in a staging file in tmp/ with a table of where each chunk is, then
 * releases the drive; reader_read serves chunks from the staging file,
 * each checked against its digest. Memory stays bounded by a record and a
 * chunk; the spool and the staging take room in the pool's folder instead.
 *
 * Tape is append-only: remove drops a restore point from the catalog only;
 * the space on tape comes back when its volumes are reused (not yet).
 */
#include "storagepool/tape.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/util.h"
#include "dedup/crc32c.h"
#include "dedup/index.h"
#include "storagepool/fs.h"
#include "storagepool/tapedev.h"

#define REC SP_TAPE_RECORD_SIZE
#define ENTRY_HEADER 40
#define ENTRY_MAGIC "VBTE"
#define CATALOG_MAX (256u << 20)
#define LOCK_DRIVE "locks/tape.lock"
#define LOCK_CATALOG "locks/catalog.lock"
#define TABLE_ENTRY 16 /* staging table: offset (8), blob length (4), zero (4) */

enum {
        ENTRY_BEGIN = 1,
        ENTRY_DISK = 2,
        ENTRY_BLOB = 3,
        ENTRY_INDEX = 4,
        ENTRY_MANIFEST = 5,
        ENTRY_END = 6,
};

int (*sp_tape_before_catalog_hook)(void);

typedef struct tape_pool {
        sp_pool base;
        char error[320];
} tape_pool;

typedef struct done_disk {
        unsigned num;
        char *index_tmp; /* its finished index, in tmp/ */
} done_disk;

/* The media pool as this writer sees and changes it. */
typedef struct volume {
        char *label;
        unsigned next_file;
        bool full;
        bool changed; /* to be written back to the catalog */
} tape_volume;

typedef struct tape_writer {
        sp_writer base;
        char id[SP_ID_MAX];
        int drive_lock;
        int tmpfd; /* the pool's tmp/ */
        sp_tapedev *dev;
        tape_volume *vols;
        size_t n_vols;
        size_t vol;    /* the volume in use */
        unsigned file; /* the restore point's file on it */
        int spool;     /* every record written, unlinked */
        uint64_t spool_len;
        uint8_t *rec, *rbuf; /* the record being filled; a second one for replays */
        size_t fill;
        uint64_t chunks;
        unsigned n_disks;
        done_disk *done;
        size_t n_done;
        int error; /* a failed write: the stream is broken, only abort is left */
} tape_writer;

typedef struct tape_disk_writer {
        sp_disk_writer base;
        char *name;
        unsigned num;
        char *index_tmp;
        dd_index_writer *iw;
        uint64_t bytes_new, bytes_data;
} tape_disk_writer;

typedef struct tape_reader {
        sp_disk_reader base;
        dd_index *idx;
        int table, data; /* staging files, unlinked */
} tape_reader;

static _printf_(3, 4) int set_error(sp_pool *p, int r, const char *fmt, ...)
{
        tape_pool *tp = container_of(p, tape_pool, base);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(tp->error, sizeof(tp->error), fmt, ap);
        va_end(ap);
        return r;
}

static int dev_error(sp_pool *p, sp_tapedev *dev, int r)
{
        if (*sp_tapedev_error(dev))
                return set_error(p, r, "%s", sp_tapedev_error(dev));
        return set_error(p, r, "%s", strerror(-r));
}

const char *sp_tape_error(sp_pool *p)
{
        tape_pool *tp;

        if (!p || !streq(p->drv->name, "tape"))
                return NULL;
        tp = container_of(p, tape_pool, base);
        return tp->error[0] ? tp->error : NULL;
}

/* --- locks, temp files, the catalog -------------------------------------- */

static int lock_file(sp_pool *p, const char *path, bool wait)
{
        int fd = openat(p->dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int lock_drive(sp_pool *p)
{
        int fd = lock_file(p, LOCK_DRIVE, false);

        if (fd == -EBUSY)
                return set_error(p, fd, "the tape drive of this pool is in use by another backup, copy or restore");
        return fd;
}

/* An unlinked read-write file in the pool's tmp/. */
static int tmp_file(sp_pool *p)
{
        _cleanup_free_ char *name = NULL;
        uint64_t rnd;
        int fd, r;

        fd = openat(p->dirfd, "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
                return fd >= 0 ? fd : -errno;
        r = vb_random_bytes(&rnd, sizeof(rnd));
        if (r < 0)
                return r;
        if (asprintf(&name, "tmp/tape-staging.%016" PRIx64, rnd) < 0)
                return -ENOMEM;
        fd = openat(p->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        unlinkat(p->dirfd, name, 0);
        return fd;
}

static int catalog_load(sp_pool *p, json_t **ret)
{
        _cleanup_free_ char *text = NULL;
        const char *format;
        json_int_t version;
        json_t *j, *vols, *rps;
        int r;

        r = vb_read_file_at(p->dirfd, SP_TAPE_FILE, CATALOG_MAX, &text, NULL);
        if (r < 0)
                return r == -ENOENT || r == -EFBIG ? -EBADMSG : r;
        j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!j)
                return -EBADMSG;
        if (json_unpack(j, "{s:s, s:I, s:o, s:o}", "format", &format, "version", &version, "volumes", &vols,
                        "restore_points", &rps) < 0 ||
            !streq(format, SP_TAPE_FORMAT) || !json_is_array(vols) || !json_is_array(rps) ||
            !json_is_string(json_object_get(j, "device"))) {
                json_decref(j);
                return -EBADMSG;
        }
        if (version != SP_TAPE_VERSION) {
                json_decref(j);
                return -EPROTONOSUPPORT;
        }
        *ret = j;
        return 0;
}

static int catalog_save(sp_pool *p, json_t *j)
{
        _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (!text)
                return -ENOMEM;
        return vb_write_file_atomic_at(p->dirfd, SP_TAPE_FILE, text, strlen(text), p->opts.fsync == SP_FSYNC_ALWAYS);
}

typedef int (*catalog_fn)(json_t *cat, void *userdata);

/* Reads, changes and writes tape.json under the catalog lock. */
static int catalog_update(sp_pool *p, catalog_fn fn, void *userdata)
{
        _cleanup_close_ int lock = lock_file(p, LOCK_CATALOG, true);
        json_t *cat = NULL;
        int r;

        if (lock < 0)
                return lock;
        r = catalog_load(p, &cat);
        if (r >= 0)
                r = fn(cat, userdata);
        if (r >= 0)
                r = catalog_save(p, cat);
        json_decref(cat);
        return r;
}

static json_t *find_rp(json_t *cat, const char *id, size_t *ret_i)
{
        json_t *rps = json_object_get(cat, "restore_points"), *e;
        size_t i;

        json_array_foreach(rps, i, e)
        {
                const char *eid = json_string_value(json_object_get(json_object_get(e, "manifest"), "id"));
                if (eid && streq(eid, id)) {
                        if (ret_i)
                                *ret_i = i;
                        return e;
                }
        }
        return NULL;
}

static int parse_manifest(json_t *obj, dd_manifest **ret)
{
        _cleanup_free_ char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

        if (!text)
                return -EBADMSG;
        return dd_manifest_parse(text, strlen(text), ret);
}

int sp_tape_locate(sp_pool *p, const char *id, char **ret_volume, unsigned *ret_file)
{
        json_t *cat = NULL, *e;
        const char *vol;
        json_int_t file;
        int r;

        if (!p || !id || !streq(p->drv->name, "tape"))
                return -EINVAL;
        r = catalog_load(p, &cat);
        if (r < 0)
                return r;
        e = find_rp(cat, id, NULL);
        if (!e)
                r = -ENOENT;
        else if (json_unpack(e, "{s:s, s:I}", "volume", &vol, "file", &file) < 0 || file < 1)
                r = -EBADMSG;
        else if (!(*ret_volume = strdup(vol)))
                r = -ENOMEM;
        else
                *ret_file = (unsigned)file;
        json_decref(cat);
        return r;
}

/* --- create, open, list --------------------------------------------------- */

static int tape_create(const char *path, const sp_options *o)
{
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ char *device = NULL, *text = NULL;
        json_t *j, *vols;
        int r;

        if (!o->device || !o->volumes || o->n_volumes == 0)
                return -EINVAL;
        for (size_t i = 0; i < o->n_volumes; i++) {
                if (!sp_tape_label_is_valid(o->volumes[i]))
                        return -EINVAL;
                for (size_t k = 0; k < i; k++)
                        if (streq(o->volumes[i], o->volumes[k]))
                                return -EINVAL;
        }
        r = vb_mkdir_p_at(AT_FDCWD, path, 0755);
        if (r < 0)
                return r;
        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        if (faccessat(dirfd, SP_POOL_FILE, F_OK, 0) == 0)
                return -EEXIST;
        if (sp_tapedev_is_drive(o->device)) {
                device = strdup(o->device);
        } else {
                /* A folder of file-backed volumes: kept as an absolute path. */
                r = vb_mkdir_p_at(AT_FDCWD, o->device, 0755);
                if (r < 0)
                        return r;
                device = realpath(o->device, NULL);
        }
        if (!device)
                return -errno ? -errno : -ENOMEM;
        vols = json_array();
        for (size_t i = 0; vols && i < o->n_volumes; i++)
                json_array_append_new(
                        vols, json_pack("{s:s, s:i, s:b}", "label", o->volumes[i], "next_file", 0, "full", false));
        j = json_pack("{s:s, s:i, s:s, s:I, s:o, s:[]}", "format", SP_TAPE_FORMAT, "version", SP_TAPE_VERSION, "device",
                      device, "volume_size", (json_int_t)o->volume_size, "volumes", vols, "restore_points");
        if (!j)
                return -ENOMEM;
        text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        /* tape.json first: pool.json (written last) makes the pool. */
        r = vb_write_file_atomic_at(dirfd, SP_TAPE_FILE, text, strlen(text), true);
        if (r < 0)
                return r;
        return sp_fs_create(path, o);
}

static int tape_open(sp_pool *base, sp_pool **ret)
{
        tape_pool *p = calloc(1, sizeof(*p));
        json_t *cat = NULL;
        int r;

        if (!p)
                return -ENOMEM;
        p->base = *base;
        r = catalog_load(&p->base, &cat);
        if (r < 0) {
                free(p);
                return r;
        }
        json_decref(cat);
        *ret = &p->base;
        return 0;
}

static void tape_close(sp_pool *p)
{
        sp_fs_pool_done(p);
        free(container_of(p, tape_pool, base));
}

static int tape_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret,
                     size_t *ret_n)
{
        json_t *cat = NULL, *rps, *e;
        dd_manifest **v = NULL;
        size_t n = 0, i;
        int r;

        r = catalog_load(p, &cat);
        if (r < 0)
                return r;
        rps = json_object_get(cat, "restore_points");
        v = calloc(json_array_size(rps) + 1, sizeof(*v));
        if (!v) {
                json_decref(cat);
                return -ENOMEM;
        }
        json_array_foreach(rps, i, e)
        {
                dd_manifest *m = NULL;

                r = parse_manifest(json_object_get(e, "manifest"), &m);
                if (r == -ENOMEM) {
                        json_decref(cat);
                        sp_manifests_free(v, n);
                        return r;
                }
                if (r < 0) {
                        char what[64];
                        sp_problem pr = { "manifest-corrupt", what, "the catalog's entry cannot be parsed", NULL, 0 };

                        snprintf(what, sizeof(what), "%s#%zu", SP_TAPE_FILE, i);
                        if (problem)
                                problem(userdata, &pr);
                        continue;
                }
                if (vm && !streq_ptr(m->vm.name, vm)) {
                        dd_manifest_free(m);
                        continue;
                }
                v[n++] = m;
        }
        json_decref(cat);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* --- the writer: the stream ------------------------------------------------ */

static int open_device(sp_pool *p, sp_tapedev **ret)
{
        json_t *cat = NULL;
        const char *device;
        json_int_t size = 0;
        int r;

        r = catalog_load(p, &cat);
        if (r < 0)
                return r;
        if (json_unpack(cat, "{s:s, s?I}", "device", &device, "volume_size", &size) < 0 || size < 0)
                r = -EBADMSG;
        else
                r = sp_tapedev_open(device, (uint64_t)size, p->opts.fsync == SP_FSYNC_ALWAYS, ret);
        if (r < 0)
                set_error(p, r, "%s: %s", json_string_value(json_object_get(cat, "device")), strerror(-r));
        json_decref(cat);
        return r;
}

/* Loads volume w->vol and places the tape where its next file starts,
 * labelling a new volume first. */
static int start_file(tape_writer *w)
{
        sp_pool *p = w->base.pool;
        tape_volume *v = &w->vols[w->vol];
        bool blank = false;
        int r;

        r = sp_tapedev_load(w->dev, v->label, p->uuid, v->next_file == 0, &blank);
        if (r < 0)
                return dev_error(p, w->dev, r);
        if (v->next_file == 0) {
                /* New to this pool: (re)labelled, whatever it held. */
                r = sp_tapedev_write_label(w->dev, v->label, p->uuid);
                if (r < 0)
                        return r == -ENOSPC ? set_error(p, -EFBIG, "volume %s is too small for its label", v->label)
                                            : dev_error(p, w->dev, r);
                v->next_file = 1;
                v->changed = true;
                w->file = 1;
                return 0;
        }
        r = sp_tapedev_space_files(w->dev, v->next_file);
        if (r < 0)
                return dev_error(p, w->dev, r);
        w->file = v->next_file;
        return 0;
}

/* The current volume has no room left for this restore point: on to the
 * next one of the media pool. */
static int next_volume(tape_writer *w)
{
        sp_pool *p = w->base.pool;

        if (w->file == 1)
                return set_error(p, -EFBIG,
                                 "restore point %s does not fit on a whole volume (%s): spanning volumes is not "
                                 "supported",
                                 w->id, w->vols[w->vol].label);
        w->vols[w->vol].full = true;
        w->vols[w->vol].changed = true;
        while (w->vol < w->n_vols && w->vols[w->vol].full)
                w->vol++;
        if (w->vol == w->n_vols)
                return set_error(p, -ENOSPC, "the media pool is full: add volumes");
        return start_file(w);
}

/* Writes the spooled records from offset from on to the tape; when the
 * medium ends, starts the restore point over on the next volume. */
static int tape_out(tape_writer *w, uint64_t from)
{
        int r;

        for (;;) {
                r = 0;
                for (uint64_t off = from; off < w->spool_len && r >= 0; off += REC) {
                        r = vb_pread_all(w->spool, w->rbuf, REC, (off_t)off);
                        if (r >= 0)
                                r = sp_tapedev_write(w->dev, w->rbuf, REC);
                        else
                                set_error(w->base.pool, r, "the spool in tmp/: %s", strerror(-r));
                }
                if (r != -ENOSPC)
                        return r < 0 ? dev_error(w->base.pool, w->dev, r) : 0;
                r = next_volume(w);
                if (r < 0)
                        return r;
                from = 0;
        }
}

/* The record is full (or padded): spooled, then written. */
static int emit_record(tape_writer *w)
{
        int r;

        memset(w->rec + w->fill, 0, REC - w->fill);
        r = vb_pwrite_all(w->spool, w->rec, REC, (off_t)w->spool_len);
        if (r < 0)
                return set_error(w->base.pool, r, "the spool in tmp/: %s", strerror(-r));
        w->spool_len += REC;
        w->fill = 0;
        return tape_out(w, w->spool_len - REC);
}

static int stream_write(tape_writer *w, const void *buf, size_t len)
{
        const uint8_t *b = buf;
        int r;

        if (w->error)
                return w->error;
        while (len > 0) {
                size_t n = MIN(len, REC - w->fill);

                memcpy(w->rec + w->fill, b, n);
                w->fill += n;
                b += n;
                len -= n;
                if (w->fill == REC) {
                        r = emit_record(w);
                        if (r < 0)
                                return w->error = r;
                }
        }
        return 0;
}

static int put_header(tape_writer *w, uint32_t type, uint32_t disk, uint32_t aux, uint64_t arg, uint64_t len)
{
        uint8_t h[ENTRY_HEADER] = { 0 };

        memcpy(h, ENTRY_MAGIC, 4);
        put_le32(h + 4, type);
        put_le32(h + 8, disk);
        put_le32(h + 12, aux);
        put_le64(h + 16, arg);
        put_le64(h + 24, len);
        put_le32(h + 32, dd_crc32c(0, h, 32));
        return stream_write(w, h, sizeof(h));
}

static int put_entry(tape_writer *w, uint32_t type, uint32_t disk, uint32_t aux, uint64_t arg, const void *payload,
                     size_t len)
{
        int r = put_header(w, type, disk, aux, arg, len);

        return r < 0 ? r : stream_write(w, payload, len);
}

/* Pads the last record and closes the file with a filemark. */
static int finish_stream(tape_writer *w)
{
        int r = 0;

        if (w->error)
                return w->error;
        if (w->fill > 0)
                r = emit_record(w);
        while (r >= 0) {
                r = sp_tapedev_write_filemark(w->dev);
                if (r != -ENOSPC)
                        return r < 0 ? dev_error(w->base.pool, w->dev, r) : 0;
                r = next_volume(w);
                if (r >= 0)
                        r = tape_out(w, 0);
        }
        return r;
}

/* --- the writer: the driver ----------------------------------------------- */

static void writer_free(tape_writer *w)
{
        for (size_t i = 0; i < w->n_done; i++) {
                unlinkat(w->tmpfd, w->done[i].index_tmp, 0);
                free(w->done[i].index_tmp);
        }
        free(w->done);
        for (size_t i = 0; i < w->n_vols; i++)
                free(w->vols[i].label);
        free(w->vols);
        sp_tapedev_close(w->dev);
        if (w->spool >= 0)
                close(w->spool);
        if (w->tmpfd >= 0)
                close(w->tmpfd);
        if (w->drive_lock >= 0)
                close(w->drive_lock);
        free(w->rec);
        free(w->rbuf);
        dd_manifest_free(w->base.m);
        free(w);
}

static int load_volumes(tape_writer *w)
{
        json_t *cat = NULL, *vols, *e;
        size_t i;
        int r;

        r = catalog_load(w->base.pool, &cat);
        if (r < 0)
                return r;
        vols = json_object_get(cat, "volumes");
        w->vols = calloc(json_array_size(vols) + 1, sizeof(*w->vols));
        if (!w->vols) {
                json_decref(cat);
                return -ENOMEM;
        }
        json_array_foreach(vols, i, e)
        {
                const char *label;
                json_int_t next;
                int full;

                if (json_unpack(e, "{s:s, s:I, s:b}", "label", &label, "next_file", &next, "full", &full) < 0 ||
                    next < 0 || next > UINT32_MAX || !sp_tape_label_is_valid(label)) {
                        r = -EBADMSG;
                        break;
                }
                w->vols[i] = (tape_volume){ .label = strdup(label), .next_file = (unsigned)next, .full = full };
                w->n_vols++;
                if (!w->vols[i].label) {
                        r = -ENOMEM;
                        break;
                }
        }
        json_decref(cat);
        return r;
}

static int tape_begin(sp_pool *p, const dd_manifest *tmpl, sp_writer **ret)
{
        tape_writer *w;
        _cleanup_free_ char *begin = NULL;
        json_t *j;
        int r;

        set_error(p, 0, "%s", "");
        if (tmpl->parent || tmpl->type != DD_BACKUP_FULL)
                return set_error(p, -EOPNOTSUPP, "a tape pool holds full restore points only");
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->drive_lock = w->tmpfd = w->spool = -1;
        w->base.pool = p;
        r = dd_manifest_copy(tmpl, &w->base.m);
        if (r < 0)
                goto fail;
        free(w->base.m->pool_type);
        w->base.m->pool_type = strdup(p->drv->name);
        w->rec = malloc(REC);
        w->rbuf = malloc(REC);
        if (!w->base.m->pool_type || !w->rec || !w->rbuf) {
                r = -ENOMEM;
                goto fail;
        }
        r = sp_fs_new_id(w->id);
        if (r < 0)
                goto fail;
        free(w->base.m->id);
        w->base.m->id = strdup(w->id);
        if (!w->base.m->id) {
                r = -ENOMEM;
                goto fail;
        }
        w->drive_lock = r = lock_drive(p);
        if (r < 0)
                goto fail;
        w->tmpfd = openat(p->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->tmpfd < 0) {
                r = -errno;
                goto fail;
        }
        w->spool = r = tmp_file(p);
        if (r < 0)
                goto fail;
        r = load_volumes(w);
        if (r < 0)
                goto fail;
        while (w->vol < w->n_vols && w->vols[w->vol].full)
                w->vol++;
        if (w->vol == w->n_vols) {
                r = set_error(p, -ENOSPC, "the media pool is full: add volumes");
                goto fail;
        }
        r = open_device(p, &w->dev);
        if (r < 0)
                goto fail;
        r = start_file(w);
        if (r < 0)
                goto fail;
        j = json_pack("{s:s, s:s}", "id", w->id, "pool", p->uuid);
        begin = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!begin) {
                r = -ENOMEM;
                goto fail;
        }
        r = put_entry(w, ENTRY_BEGIN, 0, 0, 0, begin, strlen(begin));
        if (r < 0)
                goto fail;
        *ret = &w->base;
        return 0;
fail:
        writer_free(w);
        return r;
}

static int tape_disk_begin(sp_writer *base, const char *disk, uint64_t size, sp_disk_writer **ret)
{
        tape_writer *w = container_of(base, tape_writer, base);
        sp_pool *p = base->pool;
        tape_disk_writer *dw;
        int r;

        if (!dd_disk_name_is_safe(disk))
                return -EINVAL;
        if (dd_manifest_find_disk(base->m, disk))
                return -EEXIST;
        dw = calloc(1, sizeof(*dw));
        if (!dw)
                return -ENOMEM;
        dw->base = (sp_disk_writer){ .w = base, .size = size, .chunk_size = p->opts.chunk_size };
        dw->num = w->n_disks;
        dw->name = strdup(disk);
        if (!dw->name || asprintf(&dw->index_tmp, "tape-%s-%s" DD_INDEX_SUFFIX, w->id, disk) < 0) {
                dw->index_tmp = NULL;
                r = -ENOMEM;
                goto fail;
        }
        r = dd_index_writer_new(w->tmpfd, dw->index_tmp, size, p->opts.chunk_size, &dw->iw);
        if (r < 0)
                goto fail;
        r = put_entry(w, ENTRY_DISK, dw->num, p->opts.chunk_size, size, disk, strlen(disk));
        if (r < 0)
                goto fail;
        w->n_disks++;
        *ret = &dw->base;
        return 0;
fail:
        dd_index_writer_free(dw->iw);
        free(dw->index_tmp);
        free(dw->name);
        free(dw);
        return r;
}

/* Encodes the chunk into c->scratch; its size goes to commit in
 * c->bytes_stored (0: an all-zero chunk, nothing to store). */
static int tape_chunk_prepare(sp_disk_writer *base, sp_chunk *c)
{
        sp_pool *p = base->w->pool;
        size_t nb = dd_block_count(c->length);
        ssize_t n;

        if (c->length > base->chunk_size)
                return -EINVAL;
        c->bytes_new = c->bytes_stored = 0;
        c->driver_data = NULL;
        if (!c->whole) {
                /* Blocks no piece touched are undefined (sp_chunk.data): zeros. */
                bool touched[SP_CHUNK_SIZE_MAX / DD_BLOCK_SIZE] = { false };

                for (size_t k = 0; k < c->n_pieces; k++) {
                        uint64_t first = c->pieces[k].offset - c->offset;
                        uint64_t last = first + c->pieces[k].length - 1;

                        if (c->pieces[k].length == 0)
                                continue;
                        for (uint64_t b = first / DD_BLOCK_SIZE; b <= last / DD_BLOCK_SIZE && b < nb; b++)
                                touched[b] = true;
                }
                for (size_t b = 0; b < nb; b++)
                        if (!touched[b])
                                memset(c->data + b * DD_BLOCK_SIZE, 0,
                                       MIN(DD_BLOCK_SIZE, c->length - b * DD_BLOCK_SIZE));
        }
        if (dd_is_zero(c->data, c->length)) {
                c->digest = DD_DIGEST_NULL;
                return 0;
        }
        n = dd_blob_encode_digest(c->ctx, p->opts.compression, c->data, c->length, c->scratch, c->scratch_size,
                                  &c->digest);
        if (n < 0)
                return (int)n;
        c->bytes_new = c->length;
        c->bytes_stored = (uint64_t)n;
        return 0;
}

static int tape_chunk_commit(sp_disk_writer *base, sp_chunk *c)
{
        tape_disk_writer *dw = container_of(base, tape_disk_writer, base);
        tape_writer *w = container_of(base->w, tape_writer, base);
        int r;

        if (!dd_digest_is_null(&c->digest)) {
                r = put_entry(w, ENTRY_BLOB, dw->num, 0, c->index, c->scratch, (size_t)c->bytes_stored);
                if (r < 0)
                        return r;
                w->chunks++;
                dw->bytes_new += c->length;
                dw->bytes_data += c->length;
        }
        return dd_index_writer_append(dw->iw, &c->digest);
}

static int tape_chunk_skip(sp_disk_writer *base, uint64_t index)
{
        tape_disk_writer *dw = container_of(base, tape_disk_writer, base);

        return dd_index_writer_append(dw->iw, NULL);
}

static void disk_writer_free(tape_disk_writer *dw)
{
        dd_index_writer_free(dw->iw);
        free(dw->index_tmp);
        free(dw->name);
        free(dw);
}

static int tape_disk_end(sp_disk_writer *base)
{
        tape_disk_writer *dw = container_of(base, tape_disk_writer, base);
        tape_writer *w = container_of(base->w, tape_writer, base);
        dd_index_header h;
        done_disk *v;
        int r;

        r = dd_index_writer_finish(dw->iw, false, &h);
        if (r >= 0) {
                v = realloc(w->done, (w->n_done + 1) * sizeof(*v));
                if (!v) {
                        unlinkat(w->tmpfd, dw->index_tmp, 0);
                        r = -ENOMEM;
                } else {
                        w->done = v;
                        w->done[w->n_done++] = (done_disk){ dw->num, TAKE_PTR(dw->index_tmp) };
                }
        }
        if (r >= 0)
                r = sp_manifest_add_index_disk(base, dw->name, &h.checksum, dw->bytes_new, dw->bytes_data);
        disk_writer_free(dw);
        return r;
}

static void tape_disk_abort(sp_disk_writer *base)
{
        disk_writer_free(container_of(base, tape_disk_writer, base));
}

/* The disk's finished index, whole, as an index entry. */
static int put_index(tape_writer *w, const done_disk *d)
{
        _cleanup_close_ int fd = openat(w->tmpfd, d->index_tmp, O_RDONLY | O_CLOEXEC);
        struct stat st;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        r = put_header(w, ENTRY_INDEX, d->num, 0, 0, (uint64_t)st.st_size);
        for (off_t off = 0; r >= 0 && off < st.st_size;) {
                size_t n = (size_t)MIN((off_t)REC, st.st_size - off);

                r = vb_pread_all(fd, w->rbuf, n, off);
                if (r >= 0)
                        r = stream_write(w, w->rbuf, n);
                off += (off_t)n;
        }
        return r;
}

struct commit_ctx {
        tape_writer *w;
        json_t *manifest;
        uint64_t bytes;
};

/* Writes the writer's view of the volumes back into the catalog. */
static int apply_volumes(json_t *cat, tape_writer *w)
{
        json_t *vols = json_object_get(cat, "volumes"), *e;
        size_t i;

        json_array_foreach(vols, i, e)
        {
                const char *label = json_string_value(json_object_get(e, "label"));

                for (size_t k = 0; label && k < w->n_vols; k++) {
                        if (!w->vols[k].changed || !streq(w->vols[k].label, label))
                                continue;
                        if (json_object_set_new(e, "next_file", json_integer(w->vols[k].next_file)) < 0 ||
                            json_object_set_new(e, "full", json_boolean(w->vols[k].full)) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

static int commit_cb(json_t *cat, void *userdata)
{
        struct commit_ctx *cc = userdata;
        tape_writer *w = cc->w;
        json_t *e;

        w->vols[w->vol].next_file = w->file + 1;
        w->vols[w->vol].changed = true;
        if (apply_volumes(cat, w) < 0)
                return -ENOMEM;
        e = json_pack("{s:s, s:I, s:I, s:I, s:O}", "volume", w->vols[w->vol].label, "file", (json_int_t)w->file,
                      "bytes", (json_int_t)cc->bytes, "chunks", (json_int_t)w->chunks, "manifest", cc->manifest);
        if (!e || json_array_append_new(json_object_get(cat, "restore_points"), e) < 0)
                return -ENOMEM;
        return 0;
}

static int volumes_cb(json_t *cat, void *userdata)
{
        return apply_volumes(cat, userdata);
}

static int tape_commit(sp_writer *base, dd_manifest **ret)
{
        tape_writer *w = container_of(base, tape_writer, base);
        sp_pool *p = base->pool;
        _cleanup_free_ char *text = NULL;
        struct commit_ctx cc = { .w = w };
        int r = 0;

        for (size_t i = 0; r >= 0 && i < w->n_done; i++)
                r = put_index(w, &w->done[i]);
        base->m->time_end = time(NULL);
        if (r >= 0)
                r = dd_manifest_format(base->m, &text);
        if (r >= 0)
                r = put_entry(w, ENTRY_MANIFEST, 0, 0, 0, text, strlen(text));
        if (r >= 0)
                r = put_entry(w, ENTRY_END, 0, 0, 0, NULL, 0);
        if (r >= 0)
                r = finish_stream(w);
        if (r >= 0 && sp_tape_before_catalog_hook && sp_tape_before_catalog_hook() < 0) {
                writer_free(w); /* as a crash would: the catalog is not touched */
                return -EINTR;
        }
        if (r >= 0) {
                cc.manifest = json_loads(text, 0, NULL);
                cc.bytes = w->spool_len;
                r = cc.manifest ? catalog_update(p, commit_cb, &cc) : -ENOMEM;
                json_decref(cc.manifest);
        } else {
                catalog_update(p, volumes_cb, w); /* volumes found full stay so */
        }
        if (r >= 0 && ret)
                *ret = TAKE_PTR(base->m);
        writer_free(w);
        return r;
}

static void tape_abort(sp_writer *base)
{
        tape_writer *w = container_of(base, tape_writer, base);

        /* Nothing names the partial file; volumes found full stay so. */
        for (size_t i = 0; i < w->n_vols; i++)
                if (w->vols[i].changed && w->vols[i].full) {
                        catalog_update(base->pool, volumes_cb, w);
                        break;
                }
        writer_free(w);
}

/* --- the reader ------------------------------------------------------------ */

typedef struct stream_in {
        sp_pool *p;
        sp_tapedev *dev;
        uint8_t *rec;
        size_t len, pos;
} stream_in;

static int stream_fill(stream_in *s)
{
        ssize_t n;

        if (s->pos < s->len)
                return 0;
        n = sp_tapedev_read(s->dev, s->rec, REC);
        if (n == 0 || n == -ENODATA)
                return set_error(s->p, -EBADMSG, "the restore point's file on tape ends early");
        if (n < 0)
                return dev_error(s->p, s->dev, (int)n);
        s->len = (size_t)n;
        s->pos = 0;
        return 0;
}

static int stream_read(stream_in *s, void *buf, size_t len)
{
        uint8_t *b = buf;

        while (len > 0) {
                int r = stream_fill(s);
                size_t n;

                if (r < 0)
                        return r;
                n = MIN(len, s->len - s->pos);
                if (b) {
                        memcpy(b, s->rec + s->pos, n);
                        b += n;
                }
                s->pos += n;
                len -= n;
        }
        return 0;
}

/* Copies len bytes of the stream to fd at off (fd < 0: skips them). */
static int stream_copy(stream_in *s, int fd, uint64_t off, uint64_t len)
{
        while (len > 0) {
                int r = stream_fill(s);
                size_t n;

                if (r < 0)
                        return r;
                n = (size_t)MIN(len, (uint64_t)(s->len - s->pos));
                if (fd >= 0) {
                        r = vb_pwrite_all(fd, s->rec + s->pos, n, (off_t)off);
                        if (r < 0)
                                return set_error(s->p, r, "staging in tmp/: %s", strerror(-r));
                }
                s->pos += n;
                off += n;
                len -= n;
        }
        return 0;
}

/* Reads the restore point's file from the tape into the staging files:
 * disk's blobs into data, where they are into table, its index into
 * index_fd. */
static int stage(sp_pool *p, const dd_manifest *m, const char *disk, tape_reader *rd, int index_fd)
{
        _cleanup_(sp_tapedev_closep) sp_tapedev *dev = NULL;
        _cleanup_free_ char *volume = NULL;
        _cleanup_free_ uint8_t *rec = malloc(REC);
        _cleanup_close_ int lock = -1;
        stream_in s = { .p = p, .rec = rec };
        uint64_t data_len = 0;
        bool begun = false, found = false, have_index = false;
        uint32_t num = UINT32_MAX;
        unsigned file;
        bool blank;
        int r;

        if (!rec)
                return -ENOMEM;
        r = sp_tape_locate(p, m->id, &volume, &file);
        if (r < 0)
                return r;
        lock = r = lock_drive(p);
        if (r < 0)
                return r;
        r = open_device(p, &dev);
        if (r < 0)
                return r;
        s.dev = dev;
        r = sp_tapedev_load(dev, volume, p->uuid, false, &blank);
        if (r >= 0)
                r = sp_tapedev_space_files(dev, file);
        if (r < 0)
                return dev_error(p, dev, r);
        for (;;) {
                uint8_t h[ENTRY_HEADER];
                uint32_t type, dnum;
                uint64_t arg, len;

                r = stream_read(&s, h, sizeof(h));
                if (r < 0)
                        return r;
                if (memcmp(h, ENTRY_MAGIC, 4) != 0 || get_le32(h + 32) != dd_crc32c(0, h, 32))
                        return set_error(p, -EBADMSG, "volume %s file %u: a damaged entry", volume, file);
                type = get_le32(h + 4);
                dnum = get_le32(h + 8);
                arg = get_le64(h + 16);
                len = get_le64(h + 24);
                if (!begun && type != ENTRY_BEGIN)
                        return set_error(p, -EBADMSG, "volume %s file %u: not a restore point", volume, file);
                switch (type) {
                case ENTRY_BEGIN: {
                        char text[256];
                        json_t *j;
                        bool ok;

                        if (begun || len >= sizeof(text))
                                return set_error(p, -EBADMSG, "volume %s file %u: a damaged entry", volume, file);
                        r = stream_read(&s, text, len);
                        if (r < 0)
                                return r;
                        text[len] = '\0';
                        j = json_loads(text, 0, NULL);
                        ok = j && streq_ptr(json_string_value(json_object_get(j, "id")), m->id) &&
                             streq_ptr(json_string_value(json_object_get(j, "pool")), p->uuid);
                        json_decref(j);
                        if (!ok)
                                return set_error(p, -EBADMSG, "volume %s file %u holds another restore point than %s",
                                                 volume, file, m->id);
                        begun = true;
                        break;
                }
                case ENTRY_DISK: {
                        char name[DD_DISK_NAME_MAX + 1];

                        if (len > DD_DISK_NAME_MAX)
                                return set_error(p, -EBADMSG, "volume %s file %u: a damaged entry", volume, file);
                        r = stream_read(&s, name, len);
                        if (r < 0)
                                return r;
                        name[len] = '\0';
                        if (streq(name, disk)) {
                                found = true;
                                num = dnum;
                        }
                        break;
                }
                case ENTRY_BLOB: {
                        uint8_t te[TABLE_ENTRY] = { 0 };

                        if (!found || dnum != num) {
                                r = stream_copy(&s, -1, 0, len);
                                break;
                        }
                        if (len == 0 || len > dd_blob_bound(SP_CHUNK_SIZE_MAX) ||
                            arg >= dd_chunk_count(rd->base.size, rd->base.chunk_size))
                                return set_error(p, -EBADMSG, "volume %s file %u: a damaged entry", volume, file);
                        r = stream_copy(&s, rd->data, data_len, len);
                        if (r < 0)
                                return r;
                        put_le64(te, data_len);
                        put_le32(te + 8, (uint32_t)len);
                        r = vb_pwrite_all(rd->table, te, sizeof(te), (off_t)(arg * TABLE_ENTRY));
                        if (r < 0)
                                return set_error(p, r, "staging in tmp/: %s", strerror(-r));
                        data_len += len;
                        break;
                }
                case ENTRY_INDEX:
                        if (found && dnum == num) {
                                r = stream_copy(&s, index_fd, 0, len);
                                have_index = true;
                        } else
                                r = stream_copy(&s, -1, 0, len);
                        break;
                case ENTRY_MANIFEST:
                        r = stream_copy(&s, -1, 0, len);
                        break;
                case ENTRY_END:
                        if (!found || !have_index)
                                return set_error(p, -EBADMSG, "volume %s file %u: disk %s is missing", volume, file,
                                                 disk);
                        return 0;
                default:
                        return set_error(p, -EBADMSG, "volume %s file %u: a damaged entry", volume, file);
                }
                if (r < 0)
                        return r;
        }
}

static int tape_reader_open(sp_pool *p, const dd_manifest *m, const char *disk, sp_disk_reader **ret)
{
        const dd_manifest_disk *md = dd_manifest_find_disk(m, disk);
        _cleanup_close_ int index_fd = -1;
        const dd_index_header *h;
        tape_reader *rd;
        int r;

        if (!md)
                return -ENOENT;
        set_error(p, 0, "%s", "");
        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        rd->base = (sp_disk_reader){ .pool = p, .size = md->size, .chunk_size = md->chunk_size };
        rd->table = rd->data = -1;
        if (md->chunk_size < SP_CHUNK_SIZE_MIN || md->chunk_size > SP_CHUNK_SIZE_MAX) {
                r = -EBADMSG;
                goto fail;
        }
        rd->table = r = tmp_file(p);
        if (r >= 0)
                rd->data = r = tmp_file(p);
        if (r >= 0)
                index_fd = r = tmp_file(p);
        if (r >= 0)
                r = stage(p, m, disk, rd, index_fd);
        if (r >= 0) {
                r = dd_index_open_fd(TAKE_FD(index_fd), &rd->idx);
                if (r == -EBADMSG || r == -EPROTONOSUPPORT)
                        set_error(p, -EBADMSG, "the index of disk %s on tape is damaged", disk);
        }
        if (r < 0)
                goto fail;
        h = dd_index_get_header(rd->idx);
        if (h->disk_size != md->size || h->chunk_size != md->chunk_size ||
            !dd_digest_eq(&h->checksum, &md->index_checksum)) {
                r = set_error(p, -EBADMSG, "the index of disk %s on tape does not match the catalog", disk);
                goto fail;
        }
        *ret = &rd->base;
        return 0;
fail:
        dd_index_free(rd->idx);
        if (rd->table >= 0)
                close(rd->table);
        if (rd->data >= 0)
                close(rd->data);
        free(rd);
        return r;
}

static int tape_reader_read(sp_disk_reader *base, sp_chunk *c, bool *ret_zero)
{
        tape_reader *rd = container_of(base, tape_reader, base);
        uint8_t te[TABLE_ENTRY];
        uint32_t len;
        dd_digest d;
        ssize_t n;
        int r;

        r = dd_index_get(rd->idx, c->index, &d);
        if (r < 0)
                return r;
        c->digest = d;
        if (dd_digest_is_null(&d)) {
                memset(c->data, 0, c->length);
                *ret_zero = true;
                return 0;
        }
        *ret_zero = false;
        r = vb_pread_all(rd->table, te, sizeof(te), (off_t)(c->index * TABLE_ENTRY));
        if (r == -EBADMSG)
                return -ENODATA; /* past the table's end: never stored */
        if (r < 0)
                return r;
        len = get_le32(te + 8);
        if (len == 0)
                return -ENODATA;
        if (len > c->scratch_size)
                return -EBADMSG;
        r = vb_pread_all(rd->data, c->scratch, len, (off_t)get_le64(te));
        if (r < 0)
                return r;
        n = dd_blob_decode(c->ctx, c->scratch, len, c->data, c->length, &d);
        if (n == -ENOBUFS || (n >= 0 && (uint32_t)n != c->length))
                return -EBADMSG;
        return n < 0 ? (int)n : 0;
}

static void tape_reader_close(sp_disk_reader *base)
{
        tape_reader *rd = container_of(base, tape_reader, base);

        dd_index_free(rd->idx);
        close(rd->table);
        close(rd->data);
        free(rd);
}

/* --- verify, gc, remove, stats --------------------------------------------- */

static bool selected(const sp_verify_opts *o, const char *id)
{
        if (!o->ids)
                return true;
        for (size_t i = 0; i < o->n_ids; i++)
                if (streq(o->ids[i], id))
                        return true;
        return false;
}

static void report(const sp_verify_opts *o, const char *kind, const char *object, const char *detail, const char *id)
{
        const char *ids[1] = { id };
        sp_problem pr = { kind, object, detail, ids, 1 };

        if (o->problem)
                o->problem(o->userdata, &pr);
}

/* Reads every restore point (o->ids, or all) back from tape, every chunk
 * checked against its digest. sample_percent is ignored: tape is read whole. */
static int tape_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret)
{
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        sp_verify_result res = { 0 };
        dd_manifest **v = NULL;
        uint64_t total = 0, done = 0;
        size_t n = 0;
        int r;

        if (!ctx)
                return -ENOMEM;
        r = tape_list(p, NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        for (size_t k = 0; o->ids && k < o->n_ids; k++) {
                bool found = false;
                for (size_t i = 0; i < n; i++)
                        found = found || streq(v[i]->id, o->ids[k]);
                if (!found) {
                        sp_manifests_free(v, n);
                        return -ENOENT;
                }
        }
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; selected(o, v[i]->id) && k < v[i]->n_disks; k++)
                        total += v[i]->disks[k].size;
        for (size_t i = 0; i < n; i++) {
                bool broken = false;

                if (!selected(o, v[i]->id))
                        continue;
                res.restore_points++;
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        const dd_manifest_disk *md = &v[i]->disks[k];
                        sp_disk_reader *rd = NULL;
                        _cleanup_free_ uint8_t *data = malloc(md->chunk_size ? md->chunk_size : 1);
                        _cleanup_free_ uint8_t *scratch = malloc(dd_blob_bound(md->chunk_size));
                        sp_chunk c = { .data = data,
                                       .ctx = ctx,
                                       .scratch = scratch,
                                       .scratch_size = dd_blob_bound(md->chunk_size) };

                        if (!data || !scratch) {
                                sp_manifests_free(v, n);
                                return -ENOMEM;
                        }
                        r = tape_reader_open(p, v[i], md->name, &rd);
                        if (r == -ENOMEM) {
                                sp_manifests_free(v, n);
                                return r;
                        }
                        if (r < 0) {
                                res.problems++;
                                broken = true;
                                report(o, "stream-corrupt", md->name,
                                       sp_tape_error(p) ? sp_tape_error(p) : strerror(-r), v[i]->id);
                                continue;
                        }
                        for (uint64_t ci = 0; ci < dd_chunk_count(md->size, md->chunk_size); ci++) {
                                char what[96];
                                bool zero;

                                c.index = ci;
                                c.offset = ci * md->chunk_size;
                                c.length = dd_chunk_length(md->size, md->chunk_size, ci);
                                r = tape_reader_read(rd, &c, &zero);
                                done += c.length;
                                if (o->progress)
                                        o->progress(o->userdata, done, total);
                                if (r >= 0) {
                                        res.chunks_checked += !zero;
                                        res.bytes_checked += zero ? 0 : c.length;
                                        continue;
                                }
                                res.problems++;
                                broken = true;
                                snprintf(what, sizeof(what), "%s chunk %" PRIu64, md->name, ci);
                                report(o, r == -ENODATA ? "chunk-missing" : "chunk-corrupt", what, strerror(-r),
                                       v[i]->id);
                        }
                        tape_reader_close(rd);
                }
                res.broken_restore_points += broken;
        }
        sp_manifests_free(v, n);
        *ret = res;
        return (int)MIN(res.problems, (uint64_t)INT32_MAX);
}

/* Removes leftovers in tmp/ (index files of writers that died). */
static int tape_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret)
{
        struct timespec cutoff;
        sp_gc_result res = { 0 };
        int r;

        clock_gettime(CLOCK_REALTIME, &cutoff);
        cutoff.tv_sec -= (time_t)MIN(o->grace_seconds, (uint64_t)cutoff.tv_sec);
        r = sp_fs_cleanup(p, &cutoff, o->dry_run, &res.partial_removed, &res.tmp_removed);
        if (r < 0)
                return r;
        *ret = res;
        return 0;
}

static int remove_cb(json_t *cat, void *userdata)
{
        const dd_manifest *m = userdata;
        size_t i;

        if (!find_rp(cat, m->id, &i))
                return -ENOENT;
        return json_array_remove(json_object_get(cat, "restore_points"), i) < 0 ? -ENOMEM : 0;
}

/* Tape is append-only: the restore point leaves the catalog; its file stays
 * on the volume until the volume is reused. */
static int tape_remove(sp_pool *p, const dd_manifest *m)
{
        return catalog_update(p, remove_cb, (void *)m);
}

static int tape_stats(sp_pool *p, sp_stats *ret)
{
        json_t *cat = NULL, *rps, *e;
        sp_stats st = { 0 };
        size_t i;
        int r;

        r = catalog_load(p, &cat);
        if (r < 0)
                return r;
        rps = json_object_get(cat, "restore_points");
        json_array_foreach(rps, i, e)
        {
                json_t *disks = json_object_get(json_object_get(e, "manifest"), "disks"), *d;
                size_t k;

                st.restore_points++;
                st.stored_bytes += (uint64_t)json_integer_value(json_object_get(e, "bytes"));
                st.chunks += (uint64_t)json_integer_value(json_object_get(e, "chunks"));
                json_array_foreach(disks, k, d)
                {
                        st.logical_bytes += (uint64_t)json_integer_value(json_object_get(d, "size"));
                        st.data_bytes += (uint64_t)json_integer_value(json_object_get(d, "bytes_data"));
                }
        }
        st.unique_bytes = st.data_bytes; /* nothing is shared on tape */
        json_decref(cat);
        *ret = st;
        return 0;
}

const sp_driver sp_driver_tape = {
        .name = "tape",
        .caps = SP_CAP_APPEND_ONLY,
        .create = tape_create,
        .open = tape_open,
        .close = tape_close,
        .list = tape_list,
        .begin = tape_begin,
        .disk_begin = tape_disk_begin,
        .chunk_prepare = tape_chunk_prepare,
        .chunk_commit = tape_chunk_commit,
        .chunk_skip = tape_chunk_skip,
        .disk_end = tape_disk_end,
        .disk_abort = tape_disk_abort,
        .commit = tape_commit,
        .abort = tape_abort,
        .reader_open = tape_reader_open,
        .reader_read = tape_reader_read,
        .reader_close = tape_reader_close,
        .verify = tape_verify,
        .gc = tape_gc,
        .remove = tape_remove,
        .stats = tape_stats,
};
