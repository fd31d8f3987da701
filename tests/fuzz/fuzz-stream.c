/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-stream.c -- fuzz target for the standard pool's stream parser
 * (storagepool/standard.c): header, trailer, table checks, the table walk,
 * blob decoding and the composition of chunks.
 *
 * DESIGN: the input is a whole <disk>.vstream file, put in a memfd and
 * opened the way a reader opens a stream, then once more with its checksums
 * recomputed so that mutations get past them. Any input must be refused with
 * an error or parsed; a stream that parses must re-encode to the same header,
 * trailer and table bytes, and composing its chunks must agree with counting
 * them. The driver's source is included so that its static parser is
 * reachable (the regression build links no second copy of it).
 */
#include <sys/mman.h>

#include "storagepool/standard.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHUNKS_MAX 64

static void check_reencode(const vstream *v, const uint8_t *data, size_t size)
{
        uint8_t buf[VS_HEADER_SIZE];
        vs_cursor cur;
        vs_entry e;
        uint64_t i = 0;

        header_encode(&v->h, buf);
        if (memcmp(buf, data, VS_HEADER_SIZE) != 0)
                abort();
        trailer_encode(&v->t, buf);
        if (memcmp(buf, data + size - VS_TRAILER_SIZE, VS_TRAILER_SIZE) != 0)
                abort();
        vs_cursor_seek(&cur, v, 0);
        while (vs_cursor_next(&cur, &e) > 0) {
                entry_encode(&e, buf);
                if (memcmp(buf, data + v->t.table_off + i * VS_ENTRY_SIZE, VS_ENTRY_SIZE) != 0)
                        abort();
                i++;
        }
        if (i != v->t.count)
                abort();
}

/* Composes the chunks that hold records, as reader_read does. */
static void compose_chunks(vstream *v)
{
        uint32_t cs = v->h.chunk_size;
        sp_chunk c = {
                .ctx = dd_blob_ctx_new(), .data = malloc(cs), .scratch_size = dd_blob_bound(cs), .aux_size = cs
        };
        uint64_t last = UINT64_MAX;
        unsigned n = 0;
        vs_cursor cur;
        vs_entry e;

        c.scratch = malloc(c.scratch_size);
        if (!c.ctx || !c.data || !c.scratch)
                goto out;
        vs_cursor_seek(&cur, v, 0);
        while (n < FUZZ_CHUNKS_MAX && vs_cursor_next(&cur, &e) > 0) {
                uint64_t composed = 0, counted = 0, part = 0;
                int r1, r2;

                if (e.offset / cs == last)
                        continue;
                last = e.offset / cs;
                n++;
                c.index = last;
                c.offset = last * cs;
                c.length = dd_chunk_length(v->h.disk_size, cs, last);
                memset(c.data, 0, c.length);
                r1 = chain_compose(&v, 1, c.offset, c.length, &c, &composed);
                r2 = chain_compose(&v, 1, c.offset, c.length, NULL, &counted);
                if (r2 < 0 || (r1 >= 0 && composed != counted))
                        abort();
                /* A part of the chunk, from its middle on. Counting reads no
                 * blob: it fails only when the table does. */
                r2 = chain_compose(&v, 1, c.offset + c.length / 2, c.length - c.length / 2, NULL, &part);
                if (r2 < 0 || part > counted)
                        abort();
        }
out:
        dd_blob_ctx_free(c.ctx);
        free(c.data);
        free(c.scratch);
        free(c.aux);
}

/* Rewrites the header CRC, the table checksum and the trailer CRC and
 * magic of a copy of the input, so that mutations reach the table checks
 * and the composition behind them. */
static void fix_checksums(uint8_t *b, size_t size)
{
        uint8_t *t = b + size - VS_TRAILER_SIZE;
        uint64_t table_off = get_le64(t), count = get_le64(t + 8);
        dd_digest sum;

        put_le32(b + VS_HEADER_CRC, dd_crc32c(0, b, VS_HEADER_CRC));
        if (table_off <= size - VS_TRAILER_SIZE && count == (size - VS_TRAILER_SIZE - table_off) / VS_ENTRY_SIZE &&
            dd_digest_compute(b + table_off, count * VS_ENTRY_SIZE, &sum) >= 0)
                memcpy(t + 16, sum.b, DD_DIGEST_SIZE);
        put_le32(t + 52, 0);
        put_le32(t + VS_TRAILER_CRC, dd_crc32c(0, t, VS_TRAILER_CRC));
        memcpy(t + 56, VS_END_MAGIC, 8);
}

static void run_one(const uint8_t *data, size_t size)
{
        _cleanup_(vstream_freep) vstream *v = NULL;
        const char *why = NULL;
        int fd, r;

        fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
        if (fd < 0)
                return;
        if (vb_write_all(fd, data, size) < 0) {
                close(fd);
                return;
        }
        r = vstream_open_fd(fd, &v, &why);
        if (r < 0) {
                if (!why && r != -ENOMEM)
                        abort(); /* every refusal says why */
                return;
        }
        check_reencode(v, data, size);
        compose_chunks(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ uint8_t *fixed = NULL;

        run_one(data, size);
        if (size < VS_HEADER_SIZE + VS_TRAILER_SIZE || size > (1u << 20))
                return 0;
        fixed = malloc(size);
        if (!fixed)
                return 0;
        memcpy(fixed, data, size);
        fix_checksums(fixed, size);
        run_one(fixed, size);
        return 0;
}
