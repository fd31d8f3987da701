/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * standard.c -- the standard pool on a local file system: one compressed,
 * sparse stream per disk per restore point, no dedup; an incremental stores
 * its changed extents and names its parent.
 *
 *   pool.json
 *   vms/<platform>/<vm key>/<id>/manifest.json, <disk>.vstream
 *   tmp/, locks/                               (storagepool/fs.h)
 *
 * The stream <disk>.vstream (integers little endian):
 *
 *   header, at offset 0
 *   offset size  field
 *        0    8  magic "VBAKSTRM"
 *        8    4  format version (1)
 *       12    4  header size (256)
 *       16    8  disk size in bytes
 *       24    4  chunk size in bytes (a power of two, 1-4 MiB)
 *       28    4  flags (0)
 *       32   64  id of the restore point, NUL-padded
 *       96   64  id of the parent restore point, NUL-padded; all zero when
 *                the stream stands alone (a full backup, or a disk that is
 *                new in an incremental)
 *      160    8  creation time, seconds since the epoch
 *      168    4  CRC-32C of bytes 0-167
 *      172   84  zero
 *
 *   records, from offset 256: one chunk blob (dedup/blob.h) per data record,
 *   back to back in table order, without gaps, up to the table
 *
 *   table, at the table offset: one 64-byte entry per record, sorted by disk
 *   offset, records never overlapping
 *        0    8  disk offset
 *        8    4  length: 1 to chunk size; a record never crosses a chunk
 *                boundary
 *       12    4  flags, exactly one of: 1 data (a blob holds the bytes),
 *                2 zero (the bytes are zero; no blob)
 *       16    8  file offset of the blob (0 for a zero record)
 *       24    4  blob length (0 for a zero record)
 *       28    4  zero
 *       32   32  chunk digest (digest.h) of the record's plain bytes, zero for a zero record
 *
 *   trailer, the last 64 bytes of the file
 *        0    8  table offset
 *        8    8  record count
 *       16   32  SHA-256 of the table (record count x 64 bytes); the
 *                manifest's index_checksum of the disk
 *       48    4  CRC-32C of trailer bytes 0-47
 *       52    4  zero
 *       56    8  magic "VBAKSEND"
 *
 * DESIGN
 *
 * A record holds one piece that the pipeline read (an extent inside one
 * chunk). A region of the disk without a record was not read: unallocated in
 * a full backup, unchanged in an incremental; it holds the parent's bytes,
 * or zeros at the bottom of the chain. A piece that reads as all zero is a
 * zero record in a stream that has a parent (the data became zero) and
 * nothing at all in a stream that stands alone.
 *
 * Writing: chunk_prepare (worker threads) digests and encodes a chunk's
 * pieces into a buffer of its own; chunk_commit (in chunk order) appends the
 * blobs to <disk>.vstream.tmp in the restore point's folder and the table
 * entries to an unlinked temp file, hashing them as they go; disk_end copies
 * the table behind the records, writes the trailer and renames the stream
 * into place. Memory is bounded by the chunks in flight, not by the disk.
 *
 * Reading: the chain is this restore point's stream, then its parent's, down
 * to a stream that stands alone. Opening a stream checks header, trailer,
 * every table entry and the table's SHA-256 against the manifest, and keeps,
 * per block of 64 entries (4 KiB of table), the disk offset of its first
 * entry and its CRC-32C: 12 bytes of memory per 4 KiB of table. A chunk read
 * finds its block by binary search in memory, preads it, checks its CRC and
 * walks the entries; the chain is walked newest first and each byte is taken
 * from the newest record that has it (a per-call coverage list). Every blob
 * is decoded against its record's digest. Disks of a chain may differ in
 * size (a resized disk): what lies past a disk's end is ignored, what a
 * parent did not have reads as zero. Chunk sizes must be equal.
 *
 * bytes_data of a disk is the bytes covered by data records in the composed
 * disk of this restore point, what a restore would read from blobs: for a
 * full, the sum of its data records; for an incremental, the parent's
 * bytes_data minus the parent's data under this stream's records (and past
 * the disk's new end), plus this stream's data records. bytes_new is the
 * plain bytes of this stream's data records.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/util.h"
#include "dedup/crc32c.h"
#include "dedup/index.h"
#include "storagepool/fs.h"
#include "storagepool/sp.h"

#define VS_MAGIC "VBAKSTRM"
#define VS_END_MAGIC "VBAKSEND"
#define VS_VERSION 1
#define VS_HEADER_SIZE 256
#define VS_HEADER_CRC 168
#define VS_HEADER_USED 172
#define VS_ID_SIZE 64
#define VS_ENTRY_SIZE 64
#define VS_TRAILER_SIZE 64
#define VS_TRAILER_CRC 48
#define VS_FLAG_DATA 0x1u
#define VS_FLAG_ZERO 0x2u
#define VS_BLOCK_ENTRIES 64
#define VS_BLOCK_SIZE (VS_BLOCK_ENTRIES * VS_ENTRY_SIZE)
#define VS_SUFFIX ".vstream"
#define VS_TMP_SUFFIX ".tmp"
#define VS_CHAIN_MAX 100000
#define TABLE_BUFFER (16 * VS_BLOCK_SIZE)
#define COVER_INLINE 32

/* --- the stream format ------------------------------------------------- */

typedef struct vs_header {
        uint64_t disk_size;
        uint32_t chunk_size;
        char id[VS_ID_SIZE + 1];
        char parent[VS_ID_SIZE + 1]; /* empty: the stream stands alone */
        uint64_t ctime;
} vs_header;

typedef struct vs_entry {
        uint64_t offset;
        uint32_t length;
        uint32_t flags;
        uint64_t blob_off;
        uint32_t blob_len;
        dd_digest digest;
} vs_entry;

typedef struct vs_trailer {
        uint64_t table_off;
        uint64_t count;
        dd_digest sum;
} vs_trailer;

static void header_encode(const vs_header *h, uint8_t out[VS_HEADER_SIZE])
{
        memset(out, 0, VS_HEADER_SIZE);
        memcpy(out, VS_MAGIC, 8);
        put_le32(out + 8, VS_VERSION);
        put_le32(out + 12, VS_HEADER_SIZE);
        put_le64(out + 16, h->disk_size);
        put_le32(out + 24, h->chunk_size);
        put_le32(out + 28, 0);
        memcpy(out + 32, h->id, strnlen(h->id, VS_ID_SIZE));
        memcpy(out + 96, h->parent, strnlen(h->parent, VS_ID_SIZE));
        put_le64(out + 160, h->ctime);
        put_le32(out + VS_HEADER_CRC, dd_crc32c(0, out, VS_HEADER_CRC));
}

static bool chunk_size_valid(uint32_t cs)
{
        return cs >= SP_CHUNK_SIZE_MIN && cs <= SP_CHUNK_SIZE_MAX && (cs & (cs - 1)) == 0;
}

/* A NUL-padded id field; empty is allowed only when !required. */
static int id_decode(const uint8_t *in, char out[VS_ID_SIZE + 1], bool required)
{
        size_t n = strnlen((const char *)in, VS_ID_SIZE);

        memcpy(out, in, n);
        out[n] = 0;
        for (size_t i = n; i < VS_ID_SIZE; i++)
                if (in[i] != 0)
                        return -EBADMSG;
        if (n == 0)
                return required ? -EBADMSG : 0;
        return dd_name_is_safe(out) ? 0 : -EBADMSG;
}

static int header_decode(const uint8_t in[VS_HEADER_SIZE], vs_header *ret, const char **why)
{
        vs_header h = { 0 };

        if (memcmp(in, VS_MAGIC, 8) != 0) {
                *why = "not a vbak stream (bad header magic)";
                return -EBADMSG;
        }
        if (get_le32(in + 8) != VS_VERSION) {
                *why = "unknown stream format version";
                return -EPROTONOSUPPORT;
        }
        *why = "damaged header";
        if (get_le32(in + 12) != VS_HEADER_SIZE || get_le32(in + 28) != 0 ||
            get_le32(in + VS_HEADER_CRC) != dd_crc32c(0, in, VS_HEADER_CRC) ||
            !dd_is_zero(in + VS_HEADER_USED, VS_HEADER_SIZE - VS_HEADER_USED))
                return -EBADMSG;
        h.disk_size = get_le64(in + 16);
        h.chunk_size = get_le32(in + 24);
        h.ctime = get_le64(in + 160);
        if (!chunk_size_valid(h.chunk_size) || id_decode(in + 32, h.id, true) < 0 ||
            id_decode(in + 96, h.parent, false) < 0 || streq(h.id, h.parent))
                return -EBADMSG;
        *ret = h;
        return 0;
}

static void entry_encode(const vs_entry *e, uint8_t out[VS_ENTRY_SIZE])
{
        put_le64(out, e->offset);
        put_le32(out + 8, e->length);
        put_le32(out + 12, e->flags);
        put_le64(out + 16, e->blob_off);
        put_le32(out + 24, e->blob_len);
        put_le32(out + 28, 0);
        memcpy(out + 32, e->digest.b, DD_DIGEST_SIZE);
}

/* -EBADMSG when the reserved field is not zero. */
static int entry_decode(const uint8_t in[VS_ENTRY_SIZE], vs_entry *ret)
{
        ret->offset = get_le64(in);
        ret->length = get_le32(in + 8);
        ret->flags = get_le32(in + 12);
        ret->blob_off = get_le64(in + 16);
        ret->blob_len = get_le32(in + 24);
        memcpy(ret->digest.b, in + 32, DD_DIGEST_SIZE);
        return get_le32(in + 28) == 0 ? 0 : -EBADMSG;
}

static void trailer_encode(const vs_trailer *t, uint8_t out[VS_TRAILER_SIZE])
{
        memset(out, 0, VS_TRAILER_SIZE);
        put_le64(out, t->table_off);
        put_le64(out + 8, t->count);
        memcpy(out + 16, t->sum.b, DD_DIGEST_SIZE);
        put_le32(out + VS_TRAILER_CRC, dd_crc32c(0, out, VS_TRAILER_CRC));
        memcpy(out + 56, VS_END_MAGIC, 8);
}

static int trailer_decode(const uint8_t in[VS_TRAILER_SIZE], vs_trailer *ret, const char **why)
{
        *why = "damaged or missing trailer (truncated stream?)";
        if (memcmp(in + 56, VS_END_MAGIC, 8) != 0 || get_le32(in + 52) != 0 ||
            get_le32(in + VS_TRAILER_CRC) != dd_crc32c(0, in, VS_TRAILER_CRC))
                return -EBADMSG;
        ret->table_off = get_le64(in);
        ret->count = get_le64(in + 8);
        memcpy(ret->sum.b, in + 16, DD_DIGEST_SIZE);
        return 0;
}

/* --- an open stream ---------------------------------------------------- */

typedef struct vstream {
        int fd;
        vs_header h;
        vs_trailer t;
        uint64_t data_bytes; /* plain bytes of the data records */
        uint64_t n_blocks;
        uint64_t *fence;     /* per block of entries: the disk offset of its first entry */
        uint32_t *block_crc; /* per block: CRC-32C of its bytes, as checked at open */
} vstream;

static vstream *vstream_free(vstream *v)
{
        if (v) {
                if (v->fd >= 0)
                        close(v->fd);
                free(v->fence);
                free(v->block_crc);
                free(v);
        }
        return NULL;
}

static inline void vstream_freep(vstream **v)
{
        vstream_free(*v);
}

/* Checks one table entry against the header and what came before it. */
static int entry_check(const vstream *v, const vs_entry *e, uint64_t *next_offset, uint64_t *next_blob,
                       const char **why)
{
        uint32_t cs = v->h.chunk_size;

        *why = "damaged table";
        if (e->length == 0 || e->length > cs || e->offset > v->h.disk_size || e->length > v->h.disk_size - e->offset ||
            e->offset / cs != (e->offset + e->length - 1) / cs || e->offset < *next_offset)
                return -EBADMSG;
        if (e->flags == VS_FLAG_DATA) {
                if (e->blob_off != *next_blob || e->blob_len < DD_BLOB_HEADER_SIZE ||
                    e->blob_len > dd_blob_bound(e->length) || e->blob_len > v->t.table_off - e->blob_off)
                        return -EBADMSG;
                *next_blob += e->blob_len;
        } else if (e->flags == VS_FLAG_ZERO) {
                if (e->blob_off != 0 || e->blob_len != 0 || !dd_digest_is_null(&e->digest))
                        return -EBADMSG;
        } else
                return -EBADMSG;
        *next_offset = e->offset + e->length;
        return 0;
}

/* Opens a stream on fd (taken over, also on failure) and checks all of it
 * but the blobs: header, trailer, every table entry, the table's SHA-256.
 * On failure *ret_why (may be NULL) says what is wrong. */
static int vstream_open_fd(int fd, vstream **ret, const char **ret_why)
{
        _cleanup_(vstream_freep) vstream *v = NULL;
        _cleanup_(dd_hasher_freep) dd_hasher *hs = NULL;
        uint8_t hbuf[VS_HEADER_SIZE], tbuf[VS_TRAILER_SIZE], block[VS_BLOCK_SIZE];
        uint64_t size, next_offset = 0, next_blob = VS_HEADER_SIZE;
        const char *why = "read error";
        dd_digest sum;
        struct stat st;
        int r;

        v = calloc(1, sizeof(*v));
        if (!v) {
                close(fd);
                return -ENOMEM;
        }
        v->fd = fd;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        size = (uint64_t)st.st_size;
        if (size < VS_HEADER_SIZE + VS_TRAILER_SIZE) {
                why = "file too short (truncated stream?)";
                r = -EBADMSG;
                goto fail;
        }
        r = vb_pread_all(fd, hbuf, sizeof(hbuf), 0);
        if (r >= 0)
                r = header_decode(hbuf, &v->h, &why);
        if (r >= 0)
                r = vb_pread_all(fd, tbuf, sizeof(tbuf), (off_t)(size - VS_TRAILER_SIZE));
        if (r >= 0)
                r = trailer_decode(tbuf, &v->t, &why);
        if (r < 0)
                goto fail;
        if (v->t.table_off < VS_HEADER_SIZE || v->t.table_off > size - VS_TRAILER_SIZE ||
            (size - VS_TRAILER_SIZE - v->t.table_off) % VS_ENTRY_SIZE != 0 ||
            (size - VS_TRAILER_SIZE - v->t.table_off) / VS_ENTRY_SIZE != v->t.count) {
                why = "table size does not match the file size (truncated stream?)";
                r = -EBADMSG;
                goto fail;
        }
        v->n_blocks = DIV_ROUND_UP(v->t.count, VS_BLOCK_ENTRIES);
        v->fence = malloc(MAX(v->n_blocks, 1) * sizeof(*v->fence));
        v->block_crc = malloc(MAX(v->n_blocks, 1) * sizeof(*v->block_crc));
        hs = dd_hasher_new();
        if (!v->fence || !v->block_crc || !hs) {
                r = -ENOMEM;
                goto fail;
        }
        for (uint64_t k = 0; k < v->n_blocks; k++) {
                size_t m = (size_t)MIN((uint64_t)VS_BLOCK_ENTRIES, v->t.count - k * VS_BLOCK_ENTRIES);

                r = vb_pread_all(fd, block, m * VS_ENTRY_SIZE, (off_t)(v->t.table_off + k * VS_BLOCK_SIZE));
                if (r < 0)
                        goto fail;
                r = dd_hasher_update(hs, block, m * VS_ENTRY_SIZE);
                if (r < 0)
                        goto fail;
                v->block_crc[k] = dd_crc32c(0, block, m * VS_ENTRY_SIZE);
                for (size_t i = 0; i < m; i++) {
                        vs_entry e;

                        r = entry_decode(block + i * VS_ENTRY_SIZE, &e);
                        if (i == 0)
                                v->fence[k] = e.offset;
                        if (r >= 0)
                                r = entry_check(v, &e, &next_offset, &next_blob, &why);
                        else
                                why = "damaged table";
                        if (r < 0)
                                goto fail;
                        if (e.flags == VS_FLAG_DATA)
                                v->data_bytes += e.length;
                }
        }
        if (next_blob != v->t.table_off) {
                why = "records and table do not line up";
                r = -EBADMSG;
                goto fail;
        }
        r = dd_hasher_final(hs, &sum);
        if (r < 0)
                goto fail;
        if (!dd_digest_eq(&sum, &v->t.sum)) {
                why = "table checksum mismatch";
                r = -EBADMSG;
                goto fail;
        }
        *ret = TAKE_PTR(v);
        return 0;
fail:
        if (ret_why)
                *ret_why = why;
        return r;
}

/* Walks a stream's table from a disk offset on; thread-safe per cursor. */
typedef struct vs_cursor {
        const vstream *v;
        uint64_t i;     /* next entry */
        uint64_t block; /* block held in buf; UINT64_MAX: none */
        uint8_t buf[VS_BLOCK_SIZE];
} vs_cursor;

/* Positions the cursor so that no entry at or after offset is missed. */
static void vs_cursor_seek(vs_cursor *cur, const vstream *v, uint64_t offset)
{
        uint64_t lo = 0, hi = v->n_blocks;

        /* The first block whose first entry lies past offset. */
        while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                if (v->fence[mid] <= offset)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        cur->v = v;
        cur->i = lo > 0 ? (lo - 1) * VS_BLOCK_ENTRIES : 0;
        cur->block = UINT64_MAX;
}

/* 1 with the next entry, 0 at the end of the table, -EBADMSG when a block
 * no longer has the bytes checked at open. */
static int vs_cursor_next(vs_cursor *cur, vs_entry *ret)
{
        const vstream *v = cur->v;
        uint64_t k = cur->i / VS_BLOCK_ENTRIES;
        int r;

        if (cur->i >= v->t.count)
                return 0;
        if (k != cur->block) {
                size_t m = (size_t)MIN((uint64_t)VS_BLOCK_ENTRIES, v->t.count - k * VS_BLOCK_ENTRIES);

                r = vb_pread_all(v->fd, cur->buf, m * VS_ENTRY_SIZE, (off_t)(v->t.table_off + k * VS_BLOCK_SIZE));
                if (r < 0)
                        return r;
                if (dd_crc32c(0, cur->buf, m * VS_ENTRY_SIZE) != v->block_crc[k])
                        return -EBADMSG;
                cur->block = k;
        }
        r = entry_decode(cur->buf + (cur->i % VS_BLOCK_ENTRIES) * VS_ENTRY_SIZE, ret);
        if (r < 0)
                return r;
        cur->i++;
        return 1;
}

/* Reads and decodes a data record's blob into out, checking its digest. */
static int record_decode(const vstream *v, const vs_entry *e, dd_blob_ctx *ctx, uint8_t *blob, size_t blob_size,
                         uint8_t *out, size_t out_size)
{
        ssize_t n;
        int r;

        if (e->blob_len > blob_size || e->length > out_size)
                return -EINVAL;
        r = vb_pread_all(v->fd, blob, e->blob_len, (off_t)e->blob_off);
        if (r < 0)
                return r;
        n = dd_blob_decode(ctx, blob, e->blob_len, out, e->length, &e->digest);
        if (n == -ENOBUFS)
                return -EBADMSG;
        if (n < 0)
                return (int)n;
        if ((uint64_t)n != e->length)
                return -EBADMSG;
        return 0;
}

/* --- composing a chain ------------------------------------------------- */

/* The parts of a range already taken from a newer record: sorted, disjoint
 * intervals, relative to the range's start. */
typedef struct cover_iv {
        uint32_t a, b;
} cover_iv;

typedef struct coverage {
        cover_iv *v;
        size_t n, cap;
        cover_iv inline_v[COVER_INLINE];
} coverage;

static void coverage_init(coverage *cv)
{
        cv->v = cv->inline_v;
        cv->n = 0;
        cv->cap = COVER_INLINE;
}

static void coverage_done(coverage *cv)
{
        if (cv->v != cv->inline_v)
                free(cv->v);
}

static bool coverage_full(const coverage *cv, uint32_t len)
{
        return cv->n == 1 && cv->v[0].a == 0 && cv->v[0].b >= len;
}

/* Bytes of [a, b) not covered yet. With dst, also copies them from src
 * (which holds the bytes from src_a on) to dst (which holds them from 0). */
static uint64_t coverage_gaps(const coverage *cv, uint32_t a, uint32_t b, uint8_t *dst, const uint8_t *src,
                              uint32_t src_a)
{
        uint64_t n = 0;
        uint32_t pos = a;

        for (size_t i = 0; i < cv->n && pos < b; i++) {
                if (cv->v[i].b <= pos)
                        continue;
                if (cv->v[i].a >= b)
                        break;
                if (cv->v[i].a > pos) {
                        if (dst)
                                memcpy(dst + pos, src + (pos - src_a), cv->v[i].a - pos);
                        n += cv->v[i].a - pos;
                }
                pos = MAX(pos, cv->v[i].b);
        }
        if (pos < b) {
                if (dst)
                        memcpy(dst + pos, src + (pos - src_a), b - pos);
                n += b - pos;
        }
        return n;
}

static int coverage_add(coverage *cv, uint32_t a, uint32_t b)
{
        size_t i = 0, j;
        uint32_t na = a, nb = b;

        while (i < cv->n && cv->v[i].b < a)
                i++;
        for (j = i; j < cv->n && cv->v[j].a <= b; j++) {
                na = MIN(na, cv->v[j].a);
                nb = MAX(nb, cv->v[j].b);
        }
        if (j > i) {
                /* Merge v[i..j) into one. */
                cv->v[i] = (cover_iv){ na, nb };
                memmove(cv->v + i + 1, cv->v + j, (cv->n - j) * sizeof(*cv->v));
                cv->n -= j - i - 1;
                return 0;
        }
        if (cv->n == cv->cap) {
                cover_iv *nv;

                if (cv->v == cv->inline_v) {
                        nv = malloc(2 * cv->cap * sizeof(*nv));
                        if (nv)
                                memcpy(nv, cv->v, cv->n * sizeof(*nv));
                } else
                        nv = realloc(cv->v, 2 * cv->cap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                cv->v = nv;
                cv->cap *= 2;
        }
        memmove(cv->v + i + 1, cv->v + i, (cv->n - i) * sizeof(*cv->v));
        cv->v[i] = (cover_iv){ a, b };
        cv->n++;
        return 0;
}

/* Walks the chain v[0..n) (newest first) over [off, off + len), a range
 * inside one chunk; each byte comes from the newest record that has it.
 * With c (off and len then being the chunk's), decodes the records into
 * c->data, which must be zero-filled. *ret_data (may be NULL) receives the
 * bytes of the range that data records cover. Thread-safe. */
static int chain_compose(vstream *const *v, size_t n, uint64_t off, uint32_t len, sp_chunk *c, uint64_t *ret_data)
{
        coverage cv;
        vs_cursor cur;
        uint64_t data = 0;
        int r = 0;

        coverage_init(&cv);
        for (size_t s = 0; s < n && !coverage_full(&cv, len); s++) {
                vs_entry e;

                if (off >= v[s]->h.disk_size)
                        continue;
                vs_cursor_seek(&cur, v[s], off - off % v[s]->h.chunk_size);
                while ((r = vs_cursor_next(&cur, &e)) > 0) {
                        uint32_t a, b;
                        uint64_t gap;

                        if (e.offset >= off + len)
                                break;
                        if (e.offset + e.length <= off)
                                continue;
                        a = (uint32_t)(MAX(e.offset, off) - off);
                        b = (uint32_t)(MIN(e.offset + e.length, off + len) - off);
                        gap = coverage_gaps(&cv, a, b, NULL, NULL, 0);
                        if (gap == 0)
                                continue;
                        if (e.flags == VS_FLAG_DATA) {
                                data += gap;
                                if (c) {
                                        uint8_t *aux = sp_chunk_aux(c);

                                        if (!aux) {
                                                r = -ENOMEM;
                                                break;
                                        }
                                        r = record_decode(v[s], &e, c->ctx, c->scratch, c->scratch_size, aux,
                                                          c->aux_size);
                                        if (r < 0)
                                                break;
                                        coverage_gaps(&cv, a, b, c->data, aux, (uint32_t)(e.offset - off));
                                }
                        }
                        r = coverage_add(&cv, a, b);
                        if (r < 0)
                                break;
                }
                if (r < 0)
                        break;
        }
        coverage_done(&cv);
        if (r < 0)
                return r;
        if (ret_data)
                *ret_data = data;
        return 0;
}

/* --- pool, manifests, chains ------------------------------------------- */

typedef struct std_pool {
        sp_pool base;
} std_pool;

typedef struct std_reader {
        sp_disk_reader base;
        vstream **v; /* the chain, newest first */
        size_t n;
} std_reader;

static std_pool *std_pool_downcast(sp_pool *p)
{
        if (p->drv != &sp_driver_standard)
                abort(); /* a bug: a pool of another type */
        return container_of(p, std_pool, base);
}

static int std_create(const char *path, const sp_options *o)
{
        return sp_fs_create(path, o);
}

static int std_open(sp_pool *base, sp_pool **ret)
{
        std_pool *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->base = *base;
        *ret = &p->base;
        return 0;
}

static void std_close(sp_pool *base)
{
        std_pool *p = std_pool_downcast(base);

        sp_fs_pool_done(&p->base);
        free(p);
}

/* The committed restore point id of the same VM as ident: looked up where
 * that VM's restore points live, else anywhere in the pool. -ENODATA when
 * there is none. */
static int load_manifest(sp_pool *p, const dd_manifest *ident, const char *id, dd_manifest **ret)
{
        int r = sp_fs_find(p, ident, id, ret);

        return r == -ENOENT ? -ENODATA : r;
}

/* Opens the stream of disk md of restore point m and checks it against the
 * manifest. -ENODATA when the file is missing. */
static int stream_open(sp_pool *p, const dd_manifest *m, const dd_manifest_disk *md, vstream **ret,
                       const char **ret_why)
{
        _cleanup_(vstream_freep) vstream *v = NULL;
        _cleanup_close_ int dirfd = -1;
        const char *why = NULL;
        int fd, r;

        r = sp_fs_rp_open(p, m, &dirfd);
        if (r < 0) {
                why = "cannot open the restore point's folder";
                goto fail;
        }
        if (!md->index || !dd_name_is_safe(md->index)) {
                why = "the manifest names no stream";
                r = -EBADMSG;
                goto fail;
        }
        fd = openat(dirfd, md->index, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = errno == ENOENT ? -ENODATA : -errno;
                why = errno == ENOENT ? "the stream is missing" : "cannot open the stream";
                goto fail;
        }
        r = vstream_open_fd(fd, &v, &why);
        if (r < 0)
                goto fail;
        if (!dd_digest_eq(&v->t.sum, &md->index_checksum)) {
                why = "table checksum differs from the manifest's";
                r = -EBADMSG;
                goto fail;
        }
        if (v->h.disk_size != md->size || v->h.chunk_size != md->chunk_size || !streq(v->h.id, m->id) ||
            (v->h.parent[0] && !streq_ptr(v->h.parent, m->parent))) {
                why = "header does not match the manifest";
                r = -EBADMSG;
                goto fail;
        }
        *ret = TAKE_PTR(v);
        return 0;
fail:
        if (ret_why)
                *ret_why = why;
        return r;
}

static void reader_free(std_reader *rd)
{
        if (!rd)
                return;
        for (size_t i = 0; i < rd->n; i++)
                vstream_free(rd->v[i]);
        free(rd->v);
        free(rd);
}

static inline void reader_freep(std_reader **rd)
{
        reader_free(*rd);
}

/* Opens the chain of streams of a disk, from restore point m down to the
 * stream that stands alone. */
static int chain_open(sp_pool *p, const dd_manifest *m, const char *disk, std_reader **ret)
{
        _cleanup_(reader_freep) std_reader *rd = NULL;
        _cleanup_(dd_manifest_freep) dd_manifest *owned = NULL;
        const dd_manifest *cur = m;
        int r;

        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        for (;;) {
                const dd_manifest_disk *md = dd_manifest_find_disk(cur, disk);
                dd_manifest *next = NULL;
                vstream **nv, *v;

                if (!md)
                        return rd->n == 0 ? -ENOENT : -ENODATA;
                if (rd->n >= VS_CHAIN_MAX)
                        return -ELOOP;
                r = stream_open(p, cur, md, &v, NULL);
                if (r < 0)
                        return r;
                nv = realloc(rd->v, (rd->n + 1) * sizeof(*nv));
                if (!nv) {
                        vstream_free(v);
                        return -ENOMEM;
                }
                rd->v = nv;
                rd->v[rd->n++] = v;
                if (rd->n == 1)
                        rd->base = (sp_disk_reader){ .pool = p, .size = v->h.disk_size, .chunk_size = v->h.chunk_size };
                else if (v->h.chunk_size != rd->base.chunk_size)
                        return -EBADMSG;
                if (!v->h.parent[0])
                        break;
                /* A parent is always older: a chain that comes back is damaged. */
                for (size_t i = 0; i + 1 < rd->n; i++)
                        if (streq(rd->v[i]->h.id, v->h.parent))
                                return -EBADMSG;
                r = load_manifest(p, cur, v->h.parent, &next);
                if (r < 0)
                        return r;
                dd_manifest_free(owned);
                owned = next;
                cur = next;
        }
        *ret = TAKE_PTR(rd);
        return 0;
}

/* --- writing ----------------------------------------------------------- */

typedef struct std_writer {
        sp_writer base;
        sp_fs_rp rp;
        dd_manifest *parent; /* incrementals: the parent's manifest */
        unsigned open_disks;
} std_writer;

/* A chunk prepared on a worker thread, waiting for chunk_commit. */
typedef struct std_prep {
        struct std_prep *prev, *next;
        size_t n;            /* entries */
        size_t used;         /* bytes of blobs in buf */
        uint64_t bytes_read; /* plain bytes of all pieces */
        uint8_t *buf;
        vs_entry e[]; /* blob_off relative to buf until committed */
} std_prep;

typedef struct std_disk_writer {
        sp_disk_writer base;
        std_writer *sw;
        char *name, *file, *tmp;
        int fd;       /* the stream being written, at tmp */
        int table_fd; /* the table, spilled to an unlinked file */
        bool tmp_created, renamed;
        bool in_manifest; /* its entry is in the restore point's manifest */
        int failed;       /* a commit failed half-way: nothing more is accepted */
        uint64_t n_chunks, next;
        uint64_t file_off;  /* end of the records so far */
        uint64_t table_len; /* bytes in table_fd */
        uint64_t n_records;
        uint64_t last_end; /* end of the last record */
        dd_hasher *hasher;
        uint64_t bytes_read, bytes_data;
        std_reader *parent;   /* the parent's chain of this disk; NULL: stands alone */
        uint64_t parent_data; /* the parent disk's bytes_data */
        uint64_t parent_size;
        uint64_t parent_shadow; /* parent data bytes under this stream's records */
        pthread_mutex_t lock;   /* guards preps */
        std_prep *preps;        /* prepared, not yet committed */
        size_t tbuf_len;
        uint8_t tbuf[TABLE_BUFFER];
} std_disk_writer;

static void writer_free(std_writer *w)
{
        dd_manifest_free(w->base.m);
        dd_manifest_free(w->parent);
        free(w);
}

static int std_begin(sp_pool *p, const dd_manifest *tmpl, sp_writer **ret)
{
        std_writer *w;
        int r;

        if (!p || !tmpl || !ret || tmpl->n_disks > 0)
                return -EINVAL;
        if (tmpl->type == DD_BACKUP_INCREMENTAL) {
                if (!tmpl->parent || !dd_name_is_safe(tmpl->parent) || strlen(tmpl->parent) > VS_ID_SIZE)
                        return -EINVAL;
        } else if (tmpl->type != DD_BACKUP_FULL)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->rp.dirfd = w->rp.lock_fd = -1;
        w->base.pool = p;
        r = dd_manifest_copy(tmpl, &w->base.m);
        if (r < 0)
                goto fail;
        free(w->base.m->pool_type);
        w->base.m->pool_type = strdup(p->drv->name);
        if (!w->base.m->pool_type) {
                r = -ENOMEM;
                goto fail;
        }
        if (tmpl->type == DD_BACKUP_FULL) {
                free(w->base.m->parent);
                w->base.m->parent = NULL;
        } else {
                r = load_manifest(p, tmpl, tmpl->parent, &w->parent);
                if (r < 0)
                        goto fail;
        }
        r = sp_fs_rp_begin(p, w->base.m, &w->rp);
        if (r < 0)
                goto fail;
        if (strlen(w->base.m->id) > VS_ID_SIZE) {
                sp_fs_rp_abort(p, &w->rp);
                r = -EINVAL;
                goto fail;
        }
        *ret = &w->base;
        return 0;
fail:
        writer_free(w);
        return r;
}

static void prep_free(std_disk_writer *dw, std_prep *prep)
{
        if (!prep)
                return;
        pthread_mutex_lock(&dw->lock);
        if (prep->prev)
                prep->prev->next = prep->next;
        else
                dw->preps = prep->next;
        if (prep->next)
                prep->next->prev = prep->prev;
        pthread_mutex_unlock(&dw->lock);
        free(prep->buf);
        free(prep);
}

/* Removes disk name from the manifest (a disk that was not finished). */
static void manifest_drop_disk(dd_manifest *m, const char *name)
{
        for (size_t i = 0; i < m->n_disks; i++) {
                dd_manifest_disk *d = &m->disks[i];

                if (!streq(d->name, name))
                        continue;
                free(d->name);
                free(d->device);
                free(d->format);
                free(d->index);
                memmove(d, d + 1, (m->n_disks - i - 1) * sizeof(*d));
                m->n_disks--;
                return;
        }
}

/* Frees a disk writer; an unfinished stream is removed and, with drop, its
 * disk leaves the manifest. */
static void disk_writer_free(std_disk_writer *dw, bool drop)
{
        if (!dw)
                return;
        while (dw->preps)
                prep_free(dw, dw->preps);
        if (dw->fd >= 0)
                close(dw->fd);
        if (dw->table_fd >= 0)
                close(dw->table_fd);
        if (dw->sw) {
                if (drop && dw->tmp_created && !dw->renamed)
                        unlinkat(dw->sw->rp.dirfd, dw->tmp, 0);
                if (drop && dw->renamed)
                        unlinkat(dw->sw->rp.dirfd, dw->file, 0);
                if (drop && dw->in_manifest)
                        manifest_drop_disk(dw->sw->base.m, dw->name);
                dw->sw->open_disks--;
        }
        reader_free(dw->parent);
        dd_hasher_free(dw->hasher);
        pthread_mutex_destroy(&dw->lock);
        free(dw->name);
        free(dw->file);
        free(dw->tmp);
        free(dw);
}

/* An unlinked file for the table, in the restore point's folder. */
static int open_table_file(std_disk_writer *dw)
{
        _cleanup_free_ char *name = NULL;
        int dirfd = dw->sw->rp.dirfd, fd;

        fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        if (asprintf(&name, "%s.table" VS_TMP_SUFFIX, dw->name) < 0)
                return -ENOMEM;
        fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        unlinkat(dirfd, name, 0);
        return fd;
}

static int std_disk_begin(sp_writer *base, const char *disk, uint64_t size, sp_disk_writer **ret)
{
        std_writer *w = container_of(base, std_writer, base);
        sp_pool *p = base->pool;
        uint32_t cs = p->opts.chunk_size;
        const dd_manifest_disk *pd = NULL;
        std_disk_writer *dw;
        dd_manifest_disk *md;
        uint8_t hbuf[VS_HEADER_SIZE];
        vs_header h = { .disk_size = size, .chunk_size = cs, .ctime = (uint64_t)time(NULL) };
        int r;

        if (!disk || !ret || !dd_name_is_safe(disk))
                return -EINVAL;
        /* The stream's name must be a safe name too (at most 64 characters). */
        if (strlen(disk) + strlen(VS_SUFFIX) > 64)
                return -ENAMETOOLONG;
        if (dd_manifest_find_disk(base->m, disk))
                return -EEXIST;
        dw = calloc(1, sizeof(*dw));
        if (!dw)
                return -ENOMEM;
        dw->fd = dw->table_fd = -1;
        pthread_mutex_init(&dw->lock, NULL);
        dw->sw = w;
        w->open_disks++;
        dw->base = (sp_disk_writer){ .w = base, .size = size, .chunk_size = cs };
        dw->n_chunks = dd_chunk_count(size, cs);
        dw->name = strdup(disk);
        if (!dw->name || asprintf(&dw->file, "%s" VS_SUFFIX, disk) < 0 ||
            asprintf(&dw->tmp, "%s" VS_SUFFIX VS_TMP_SUFFIX, disk) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if (w->parent)
                pd = dd_manifest_find_disk(w->parent, disk);
        if (pd) {
                /* A disk new in an incremental has no parent: the caller reads it whole. */
                r = chain_open(p, w->parent, disk, &dw->parent);
                if (r < 0)
                        goto fail;
                if (dw->parent->base.chunk_size != cs) {
                        r = -EINVAL;
                        goto fail;
                }
                dw->parent_data = pd->bytes_data;
                dw->parent_size = pd->size;
                snprintf(h.parent, sizeof(h.parent), "%s", w->parent->id);
        }
        snprintf(h.id, sizeof(h.id), "%s", base->m->id);
        dw->hasher = dd_hasher_new();
        if (!dw->hasher) {
                r = -ENOMEM;
                goto fail;
        }
        r = open_table_file(dw);
        if (r < 0)
                goto fail;
        dw->table_fd = r;
        dw->fd = openat(w->rp.dirfd, dw->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (dw->fd < 0) {
                r = -errno;
                goto fail;
        }
        dw->tmp_created = true;
        header_encode(&h, hbuf);
        r = vb_pwrite_all(dw->fd, hbuf, sizeof(hbuf), 0);
        if (r < 0)
                goto fail;
        dw->file_off = VS_HEADER_SIZE;
        r = dd_manifest_add_disk(base->m, disk, &md);
        if (r < 0)
                goto fail;
        md->size = size;
        md->chunk_size = cs;
        md->index = strdup(dw->file);
        dw->in_manifest = true;
        if (!md->index) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = &dw->base;
        return 0;
fail:
        disk_writer_free(dw, true);
        return r;
}

static int std_chunk_prepare(sp_disk_writer *base, sp_chunk *c)
{
        std_disk_writer *dw = container_of(base, std_disk_writer, base);
        int level = base->w->pool->opts.compression;
        const dd_extent *pieces = c->pieces;
        size_t n = c->n_pieces, bound = 0;
        uint64_t end = c->offset, chunk_end;
        dd_extent whole;
        std_prep *prep;

        if (c->index >= dw->n_chunks || c->offset != c->index * base->chunk_size ||
            c->length != dd_chunk_length(base->size, base->chunk_size, c->index) || !c->data || !c->ctx ||
            (n > 0 && !pieces))
                return -EINVAL;
        if (n == 0 && c->whole) {
                whole = (dd_extent){ c->offset, c->length };
                pieces = &whole;
                n = 1;
        }
        chunk_end = c->offset + c->length;
        for (size_t i = 0; i < n; i++) {
                if (pieces[i].offset < end || pieces[i].offset > chunk_end ||
                    pieces[i].length > chunk_end - pieces[i].offset)
                        return -EINVAL;
                end = pieces[i].offset + pieces[i].length;
                bound += dd_blob_bound(pieces[i].length);
        }
        prep = calloc(1, sizeof(*prep) + n * sizeof(vs_entry));
        if (!prep)
                return -ENOMEM;
        prep->buf = malloc(MAX(bound, 1));
        if (!prep->buf) {
                free(prep);
                return -ENOMEM;
        }
        c->digest = DD_DIGEST_NULL;
        c->bytes_new = c->bytes_stored = 0;
        for (size_t i = 0; i < n; i++) {
                const uint8_t *d = c->data + (pieces[i].offset - c->offset);
                uint32_t len = (uint32_t)pieces[i].length;
                vs_entry *e;
                ssize_t z;

                if (len == 0)
                        continue;
                prep->bytes_read += len;
                if (dd_is_zero(d, len)) {
                        if (dw->parent) /* the data became zero */
                                prep->e[prep->n++] =
                                        (vs_entry){ .offset = pieces[i].offset, .length = len, .flags = VS_FLAG_ZERO };
                        continue;
                }
                e = &prep->e[prep->n++];
                *e = (vs_entry){ .offset = pieces[i].offset, .length = len, .flags = VS_FLAG_DATA };
                z = dd_blob_encode_digest(c->ctx, level, d, len, prep->buf + prep->used, bound - prep->used,
                                          &e->digest);
                if (z < 0) {
                        free(prep->buf);
                        free(prep);
                        return (int)z;
                }
                e->blob_off = prep->used;
                e->blob_len = (uint32_t)z;
                prep->used += (size_t)z;
                c->bytes_new += len;
                c->bytes_stored += (uint64_t)z;
        }
        /* Kept on a list too, so that a run that fails before committing it
         * does not leak it (disk_abort frees what is left). */
        pthread_mutex_lock(&dw->lock);
        prep->next = dw->preps;
        if (dw->preps)
                dw->preps->prev = prep;
        dw->preps = prep;
        pthread_mutex_unlock(&dw->lock);
        c->driver_data = prep;
        return 0;
}

static int table_flush(std_disk_writer *dw)
{
        int r;

        if (dw->tbuf_len == 0)
                return 0;
        r = dd_hasher_update(dw->hasher, dw->tbuf, dw->tbuf_len);
        if (r < 0)
                return r;
        r = vb_pwrite_all(dw->table_fd, dw->tbuf, dw->tbuf_len, (off_t)dw->table_len);
        if (r < 0)
                return r;
        dw->table_len += dw->tbuf_len;
        dw->tbuf_len = 0;
        return 0;
}

static int table_append(std_disk_writer *dw, const vs_entry *e)
{
        entry_encode(e, dw->tbuf + dw->tbuf_len);
        dw->tbuf_len += VS_ENTRY_SIZE;
        dw->n_records++;
        return dw->tbuf_len == sizeof(dw->tbuf) ? table_flush(dw) : 0;
}

static int commit_prep(std_disk_writer *dw, uint64_t index, std_prep *prep)
{
        int r;

        if (index != dw->next)
                return -EINVAL;
        if (prep->used > 0) {
                r = vb_pwrite_all(dw->fd, prep->buf, prep->used, (off_t)dw->file_off);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < prep->n; i++) {
                vs_entry *e = &prep->e[i];

                if (e->offset < dw->last_end)
                        return -EINVAL;
                if (e->flags == VS_FLAG_DATA) {
                        e->blob_off += dw->file_off;
                        dw->bytes_data += e->length;
                }
                if (dw->parent) {
                        uint64_t under;

                        r = chain_compose(dw->parent->v, dw->parent->n, e->offset, e->length, NULL, &under);
                        if (r < 0)
                                return r;
                        dw->parent_shadow += under;
                }
                r = table_append(dw, e);
                if (r < 0)
                        return r;
                dw->last_end = e->offset + e->length;
        }
        dw->file_off += prep->used;
        dw->bytes_read += prep->bytes_read;
        dw->next++;
        return 0;
}

static int std_chunk_commit(sp_disk_writer *base, sp_chunk *c)
{
        std_disk_writer *dw = container_of(base, std_disk_writer, base);
        std_prep *prep = c->driver_data;
        int r;

        c->driver_data = NULL;
        if (!prep)
                return -EINVAL;
        r = dw->failed ? dw->failed : commit_prep(dw, c->index, prep);
        if (r < 0)
                dw->failed = r; /* the stream may be half-written: the disk is lost */
        prep_free(dw, prep);
        return r;
}

static int std_chunk_skip(sp_disk_writer *base, uint64_t index)
{
        std_disk_writer *dw = container_of(base, std_disk_writer, base);

        if (dw->failed)
                return dw->failed;
        if (index != dw->next)
                return -EINVAL;
        dw->next++;
        return 0;
}

/* The parent's data bytes past this disk's end, when the disk shrank. */
static int parent_data_beyond(std_disk_writer *dw, uint64_t *ret)
{
        uint32_t cs = dw->base.chunk_size;
        uint64_t total = 0;

        for (uint64_t off = dw->base.size; off < dw->parent_size;) {
                uint64_t end = MIN((off / cs + 1) * cs, dw->parent_size), d;
                int r = chain_compose(dw->parent->v, dw->parent->n, off, (uint32_t)(end - off), NULL, &d);

                if (r < 0)
                        return r;
                total += d;
                off = end;
        }
        *ret = total;
        return 0;
}

static int disk_finish(std_disk_writer *dw)
{
        sp_pool *p = dw->base.w->pool;
        bool do_sync = p->opts.fsync == SP_FSYNC_ALWAYS;
        uint8_t tr[VS_TRAILER_SIZE];
        vs_trailer t = { .table_off = dw->file_off };
        dd_manifest_disk *md;
        uint64_t beyond = 0;
        int fd, r;

        if (dw->failed)
                return dw->failed;
        if (dw->next != dw->n_chunks)
                return -EINVAL; /* not every chunk was committed or skipped */
        r = table_flush(dw);
        if (r < 0)
                return r;
        for (uint64_t pos = 0; pos < dw->table_len; pos += sizeof(dw->tbuf)) {
                size_t len = (size_t)MIN((uint64_t)sizeof(dw->tbuf), dw->table_len - pos);

                r = vb_pread_all(dw->table_fd, dw->tbuf, len, (off_t)pos);
                if (r < 0)
                        return r == -EBADMSG ? -EIO : r;
                r = vb_pwrite_all(dw->fd, dw->tbuf, len, (off_t)(dw->file_off + pos));
                if (r < 0)
                        return r;
        }
        t.count = dw->n_records;
        r = dd_hasher_final(dw->hasher, &t.sum);
        if (r < 0)
                return r;
        trailer_encode(&t, tr);
        r = vb_pwrite_all(dw->fd, tr, sizeof(tr), (off_t)(dw->file_off + dw->table_len));
        if (r < 0)
                return r;
        if (do_sync && fsync(dw->fd) < 0)
                return -errno;
        fd = TAKE_FD(dw->fd);
        if (close(fd) < 0)
                return -errno;
        if (dw->parent && dw->parent_size > dw->base.size) {
                r = parent_data_beyond(dw, &beyond);
                if (r < 0)
                        return r;
        }
        if (renameat(dw->sw->rp.dirfd, dw->tmp, dw->sw->rp.dirfd, dw->file) < 0)
                return -errno;
        dw->renamed = true;
        if (do_sync) {
                r = vb_fsync_dir_at(dw->sw->rp.dirfd, ".");
                if (r < 0)
                        return r;
        }
        /* Looked up again: another disk begun meanwhile may have moved the array. */
        md = (dd_manifest_disk *)dd_manifest_find_disk(dw->sw->base.m, dw->name);
        if (!md)
                return -EINVAL;
        md->index_checksum = t.sum;
        md->bytes_read = dw->bytes_read;
        md->bytes_new = dw->bytes_data;
        if (dw->parent) {
                uint64_t gone = MIN(dw->parent_data, dw->parent_shadow + beyond);
                md->bytes_data = dw->parent_data - gone + dw->bytes_data;
        } else
                md->bytes_data = dw->bytes_data;
        return 0;
}

static int std_disk_end(sp_disk_writer *base)
{
        std_disk_writer *dw = container_of(base, std_disk_writer, base);
        int r = disk_finish(dw);

        disk_writer_free(dw, r < 0);
        return r;
}

static void std_disk_abort(sp_disk_writer *base)
{
        disk_writer_free(container_of(base, std_disk_writer, base), true);
}

static int std_commit(sp_writer *base, dd_manifest **ret)
{
        std_writer *w = container_of(base, std_writer, base);
        sp_pool *p = base->pool;
        int r;

        if (w->open_disks > 0) {
                r = -EBUSY; /* a disk was neither ended nor aborted */
                sp_fs_rp_abort(p, &w->rp);
                writer_free(w);
                return r;
        }
        r = sp_fs_rp_commit(p, &w->rp, base->m);
        if (r >= 0 && ret)
                *ret = TAKE_PTR(base->m);
        writer_free(w);
        return r;
}

static void std_abort(sp_writer *base)
{
        std_writer *w = container_of(base, std_writer, base);

        sp_fs_rp_abort(base->pool, &w->rp);
        writer_free(w);
}

/* --- reading ----------------------------------------------------------- */

static int std_reader_open(sp_pool *p, const dd_manifest *m, const char *disk, sp_disk_reader **ret)
{
        std_reader *rd;
        int r;

        if (!p || !m || !disk || !ret)
                return -EINVAL;
        r = chain_open(p, m, disk, &rd);
        if (r < 0)
                return r;
        *ret = &rd->base;
        return 0;
}

static int std_reader_read(sp_disk_reader *base, sp_chunk *c, bool *ret_zero)
{
        std_reader *rd = container_of(base, std_reader, base);
        uint32_t len;
        int r;

        if (!c || !ret_zero || !c->data || !c->ctx || !c->scratch ||
            c->index >= dd_chunk_count(base->size, base->chunk_size))
                return -EINVAL;
        len = dd_chunk_length(base->size, base->chunk_size, c->index);
        if (c->length != len || c->offset != c->index * base->chunk_size || c->aux_size < base->chunk_size)
                return -EINVAL;
        memset(c->data, 0, len);
        r = chain_compose(rd->v, rd->n, c->offset, len, c, NULL);
        if (r < 0)
                return r;
        c->digest = DD_DIGEST_NULL;
        *ret_zero = dd_is_zero(c->data, len);
        return 0;
}

static void std_reader_close(sp_disk_reader *base)
{
        if (base)
                reader_free(container_of(base, std_reader, base));
}

/* --- verify ------------------------------------------------------------ */

struct verify_ctx {
        sp_pool *p;
        const sp_verify_opts *o;
        sp_verify_result res;
        dd_manifest **v;
        size_t n;
        ssize_t *parent; /* index in v of each one's parent; -1: none or not found */
        bool *broken;
        bool *check; /* selected, or in the chain of a selected one */
        uint64_t rng;
        dd_blob_ctx *ctx;
        uint8_t *blob, *plain;
};

static void count_problem(void *userdata, const sp_problem *pr)
{
        struct verify_ctx *vc = userdata;

        vc->res.problems++;
        if (vc->o->problem)
                vc->o->problem(vc->o->userdata, pr);
}

/* Reports a problem with disk of v[i]: it breaks v[i] and every restore
 * point whose chain for that disk goes through v[i]. */
static int report(struct verify_ctx *vc, size_t i, const char *disk, const char *kind, const char *object,
                  const char *detail)
{
        _cleanup_free_ const char **ids = calloc(MAX(vc->n, 1), sizeof(*ids));
        size_t n_ids = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t j = 0; j < vc->n; j++) {
                ssize_t k = (ssize_t)j;

                for (size_t depth = 0; k >= 0 && depth <= vc->n; depth++) {
                        if (!dd_manifest_find_disk(vc->v[k], disk))
                                break;
                        if ((size_t)k == i) {
                                ids[n_ids++] = vc->v[j]->id;
                                vc->broken[j] = true;
                                break;
                        }
                        k = vc->parent[k];
                }
        }
        sp_problem pr = {
                .kind = kind, .object = object, .detail = detail, .restore_points = ids, .n_restore_points = n_ids
        };
        count_problem(vc, &pr);
        return 0;
}

static bool sample_pick(struct verify_ctx *vc)
{
        unsigned pct = vc->o->sample_percent;

        if (pct == 0 || pct >= 100)
                return true;
        /* xorshift64 */
        vc->rng ^= vc->rng << 13;
        vc->rng ^= vc->rng >> 7;
        vc->rng ^= vc->rng << 17;
        return vc->rng % 100 < pct;
}

static int verify_stream(struct verify_ctx *vc, size_t i, const dd_manifest_disk *md)
{
        _cleanup_(vstream_freep) vstream *v = NULL;
        _cleanup_free_ char *rp_path = NULL, *object = NULL;
        const dd_manifest *m = vc->v[i];
        const char *why = NULL;
        char detail[256];
        vs_cursor cur;
        vs_entry e;
        int r;

        if (sp_fs_rp_path(m, &rp_path) < 0 || asprintf(&object, "%s/%s", rp_path, md->index ? md->index : md->name) < 0)
                return -ENOMEM;
        r = stream_open(vc->p, m, md, &v, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                snprintf(detail, sizeof(detail), "%s (%s)", why ? why : "cannot open", strerror(-r));
                return report(vc, i, md->name, r == -ENODATA ? "stream-missing" : "stream-corrupt", object, detail);
        }
        if (v->h.parent[0]) {
                ssize_t k = vc->parent[i];
                const dd_manifest_disk *pd = k >= 0 ? dd_manifest_find_disk(vc->v[k], md->name) : NULL;

                if (!pd) {
                        snprintf(detail, sizeof(detail), "parent restore point %s has no disk %s", v->h.parent,
                                 md->name);
                        r = report(vc, i, md->name, "parent-missing", object, detail);
                        if (r < 0)
                                return r;
                } else if (pd->chunk_size != md->chunk_size) {
                        r = report(vc, i, md->name, "stream-corrupt", object, "chunk size differs from the parent's");
                        if (r < 0)
                                return r;
                }
        }
        vs_cursor_seek(&cur, v, 0);
        while ((r = vs_cursor_next(&cur, &e)) > 0) {
                if (e.flags != VS_FLAG_DATA || !sample_pick(vc))
                        continue;
                r = record_decode(v, &e, vc->ctx, vc->blob, dd_blob_bound(SP_CHUNK_SIZE_MAX), vc->plain,
                                  SP_CHUNK_SIZE_MAX);
                if (r == -ENOMEM)
                        return r;
                vc->res.chunks_checked++;
                vc->res.bytes_checked += e.length;
                if (r < 0) {
                        snprintf(detail, sizeof(detail), "record at disk offset %" PRIu64 ", length %" PRIu32 ": %s",
                                 e.offset, e.length, r == -EBADMSG ? "damaged (CRC or digest mismatch)" : strerror(-r));
                        r = report(vc, i, md->name, "record-corrupt", object, detail);
                        if (r < 0)
                                return r;
                }
        }
        if (r < 0)
                return report(vc, i, md->name, "stream-corrupt", object, "table changed while it was read");
        return 0;
}

static bool selected(const sp_verify_opts *o, const char *id)
{
        if (!o->ids)
                return true;
        for (size_t i = 0; i < o->n_ids; i++)
                if (streq(o->ids[i], id))
                        return true;
        return false;
}

static int std_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret)
{
        struct verify_ctx vc = { .p = p, .o = o };
        uint64_t done = 0, total = 0;
        int r;

        if (!p || !o || !ret)
                return -EINVAL;
        r = sp_fs_list(p, NULL, count_problem, &vc, &vc.v, &vc.n);
        if (r < 0)
                return r;
        for (size_t k = 0; o->ids && k < o->n_ids; k++) {
                bool found = false;
                for (size_t i = 0; i < vc.n && !found; i++)
                        found = streq(vc.v[i]->id, o->ids[k]);
                if (!found) {
                        r = -ENOENT;
                        goto out;
                }
        }
        vc.parent = malloc(MAX(vc.n, 1) * sizeof(*vc.parent));
        vc.broken = calloc(MAX(vc.n, 1), sizeof(*vc.broken));
        vc.check = calloc(MAX(vc.n, 1), sizeof(*vc.check));
        vc.ctx = dd_blob_ctx_new();
        vc.blob = malloc(dd_blob_bound(SP_CHUNK_SIZE_MAX));
        vc.plain = malloc(SP_CHUNK_SIZE_MAX);
        if (!vc.parent || !vc.broken || !vc.check || !vc.ctx || !vc.blob || !vc.plain) {
                r = -ENOMEM;
                goto out;
        }
        r = vb_random_bytes(&vc.rng, sizeof(vc.rng));
        if (r < 0)
                goto out;
        vc.rng |= 1;
        for (size_t i = 0; i < vc.n; i++) {
                vc.parent[i] = -1;
                for (size_t k = 0; vc.v[i]->parent && k < vc.n; k++)
                        if (k != i && streq(vc.v[k]->id, vc.v[i]->parent))
                                vc.parent[i] = (ssize_t)k;
        }
        /* A restore point needs its whole chain: the parents are checked too. */
        for (size_t i = 0; i < vc.n; i++) {
                if (!selected(o, vc.v[i]->id))
                        continue;
                vc.check[i] = true;
                vc.res.restore_points++;
                for (ssize_t k = vc.parent[i]; k >= 0 && !vc.check[k]; k = vc.parent[k])
                        vc.check[k] = true;
        }
        for (size_t i = 0; i < vc.n; i++)
                if (vc.check[i])
                        total += vc.v[i]->n_disks;
        for (size_t i = 0; i < vc.n; i++) {
                if (!vc.check[i])
                        continue;
                for (size_t k = 0; k < vc.v[i]->n_disks; k++) {
                        r = verify_stream(&vc, i, &vc.v[i]->disks[k]);
                        if (r < 0)
                                goto out;
                        if (o->progress)
                                o->progress(o->userdata, ++done, total);
                }
        }
        for (size_t i = 0; i < vc.n; i++)
                vc.res.broken_restore_points += vc.broken[i];
        *ret = vc.res;
        r = (int)MIN(vc.res.problems, (uint64_t)INT32_MAX);
out:
        sp_manifests_free(vc.v, vc.n);
        free(vc.parent);
        free(vc.broken);
        free(vc.check);
        dd_blob_ctx_free(vc.ctx);
        free(vc.blob);
        free(vc.plain);
        return r;
}

/* --- gc and stats ------------------------------------------------------ */

static int std_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret)
{
        _cleanup_close_ int lock_fd = -1;
        struct timespec start, cutoff;
        sp_gc_result res = { 0 };
        int r;

        if (!p || !o || !ret)
                return -EINVAL;
        r = sp_fs_gc_lock(p, &start);
        if (r < 0)
                return r;
        lock_fd = r;
        cutoff = start;
        cutoff.tv_sec -= (time_t)MIN(o->grace_seconds, (uint64_t)cutoff.tv_sec);
        r = sp_fs_cleanup(p, &cutoff, o->dry_run, &res.partial_removed, &res.tmp_removed);
        if (r < 0)
                return r;
        *ret = res;
        return 0;
}

/* Size and record count of a stream, from its trailer only. */
static int stream_peek(sp_pool *p, const dd_manifest *m, const dd_manifest_disk *md, uint64_t *ret_size,
                       uint64_t *ret_records)
{
        _cleanup_close_ int dirfd = -1, fd = -1;
        uint8_t tbuf[VS_TRAILER_SIZE];
        const char *why;
        vs_trailer t;
        struct stat st;
        int r;

        r = sp_fs_rp_open(p, m, &dirfd);
        if (r < 0)
                return r;
        if (!md->index || !dd_name_is_safe(md->index))
                return -EBADMSG;
        fd = openat(dirfd, md->index, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        *ret_size = (uint64_t)st.st_size;
        *ret_records = 0;
        if ((uint64_t)st.st_size >= VS_HEADER_SIZE + VS_TRAILER_SIZE &&
            vb_pread_all(fd, tbuf, sizeof(tbuf), st.st_size - VS_TRAILER_SIZE) >= 0 &&
            trailer_decode(tbuf, &t, &why) >= 0)
                *ret_records = t.count;
        return 0;
}

static int std_stats(sp_pool *p, sp_stats *ret)
{
        sp_stats st = { 0 };
        dd_manifest **v = NULL;
        size_t n = 0;
        int r;

        if (!p || !ret)
                return -EINVAL;
        r = sp_fs_list(p, NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        st.restore_points = n;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        const dd_manifest_disk *md = &v[i]->disks[k];
                        uint64_t size = 0, records = 0;

                        st.logical_bytes += md->size;
                        st.data_bytes += md->bytes_data;
                        st.unique_bytes += md->bytes_new;
                        if (stream_peek(p, v[i], md, &size, &records) >= 0) {
                                st.stored_bytes += size;
                                st.chunks += records;
                        }
                }
        sp_manifests_free(v, n);
        *ret = st;
        return 0;
}

const sp_driver sp_driver_standard = {
        .name = "standard",
        .caps = SP_CAP_RANDOM_READ,
        .create = std_create,
        .open = std_open,
        .close = std_close,
        .list = sp_fs_list,
        .begin = std_begin,
        .disk_begin = std_disk_begin,
        .chunk_prepare = std_chunk_prepare,
        .chunk_commit = std_chunk_commit,
        .chunk_skip = std_chunk_skip,
        .disk_end = std_disk_end,
        .disk_abort = std_disk_abort,
        .commit = std_commit,
        .abort = std_abort,
        .reader_open = std_reader_open,
        .reader_read = std_reader_read,
        .reader_close = std_reader_close,
        .verify = std_verify,
        .gc = std_gc,
        .remove = sp_fs_remove,
        .stats = std_stats,
};
