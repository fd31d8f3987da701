/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-pool.c -- pool.json: whatever its bytes, opening the pool either
 * fails with an error or gives a pool whose settings are in range.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "daemon/util.h"
#include "storagepool/sp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char dir[64];
        sp_pool *p = NULL;
        int fd;

        if (!dir[0]) {
                snprintf(dir, sizeof(dir), "/tmp/vbak-fuzz-pool-XXXXXX");
                if (!mkdtemp(dir))
                        abort();
        }
        fd = openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                abort();
        if (vb_write_file_atomic_at(fd, SP_POOL_FILE, data, size, false) < 0)
                abort();
        close(fd);
        if (sp_pool_open(dir, &p) >= 0) {
                if (p->opts.chunk_size < SP_CHUNK_SIZE_MIN || p->opts.chunk_size > SP_CHUNK_SIZE_MAX ||
                    (p->opts.chunk_size & (p->opts.chunk_size - 1)) || p->opts.compression < 0 ||
                    p->opts.compression > DD_COMPRESSION_LEVEL_MAX || !sp_fsync_to_string(p->opts.fsync) || !p->drv)
                        abort();
                sp_pool_close(p);
        }
        return 0;
}
