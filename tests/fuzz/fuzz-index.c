/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-index.c -- fuzz target for the fixed index reader: the input becomes
 * a memfd that dd_index_open_fd() takes over.
 *
 * Besides not crashing, it checks what the reader promises: a failure is
 * -EBADMSG or -EPROTONOSUPPORT; an index that opens has a header that
 * matches the bytes (sizes, chunk count covering the disk, checksum over
 * the digests), and every digest reads back as the bytes at its place.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/util.h"
#include "dedup/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(dd_index_freep) dd_index *idx = NULL;
        const dd_index_header *h;
        dd_digest d, sum;
        int fd, r;

        fd = memfd_create("fuzz-index", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (vb_write_all(fd, data, size) < 0) {
                close(fd);
                return 0;
        }
        r = dd_index_open_fd(fd, &idx); /* takes fd over, even on failure */
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT);
                FUZZ_ASSERT(idx == NULL);
                return 0;
        }
        FUZZ_ASSERT(idx);
        h = dd_index_get_header(idx);

        /* The header says what the bytes hold. */
        FUZZ_ASSERT(size >= DD_INDEX_HEADER_SIZE);
        FUZZ_ASSERT(memcmp(data, DD_INDEX_MAGIC, 8) == 0);
        FUZZ_ASSERT(h->chunk_size > 0);
        FUZZ_ASSERT((size - DD_INDEX_HEADER_SIZE) % DD_DIGEST_SIZE == 0);
        FUZZ_ASSERT(h->chunk_count == (size - DD_INDEX_HEADER_SIZE) / DD_DIGEST_SIZE);
        FUZZ_ASSERT(h->disk_size == get_le64(data + 32));
        FUZZ_ASSERT(h->chunk_size == get_le32(data + 40));
        /* The chunks cover the disk, and no more than one chunk's worth past it. */
        FUZZ_ASSERT((unsigned __int128)h->chunk_count * h->chunk_size >= h->disk_size);
        FUZZ_ASSERT(h->chunk_count == 0 || (unsigned __int128)(h->chunk_count - 1) * h->chunk_size < h->disk_size);
        FUZZ_ASSERT(dd_digest_compute(data + DD_INDEX_HEADER_SIZE, size - DD_INDEX_HEADER_SIZE, &sum) == 0);
        FUZZ_ASSERT(dd_digest_eq(&sum, &h->checksum));

        /* Every digest, in order. */
        for (uint64_t i = 0; i < h->chunk_count; i++) {
                FUZZ_ASSERT(dd_index_get(idx, i, &d) == 0);
                FUZZ_ASSERT(memcmp(d.b, data + DD_INDEX_HEADER_SIZE + i * DD_DIGEST_SIZE, DD_DIGEST_SIZE) == 0);
        }
        FUZZ_ASSERT(dd_index_get(idx, h->chunk_count, &d) == -EINVAL);
        return 0;
}
