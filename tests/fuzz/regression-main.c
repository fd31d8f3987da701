/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * regression-main.c -- a main() for the fuzz targets without libFuzzer:
 * feeds every file named on the command line to LLVMFuzzerTestOneInput, so
 * that `make fuzz-replay` replays the corpora with the normal compiler.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                _cleanup_free_ char *buf = NULL;
                size_t len = 0;
                int r = vb_read_file_at(AT_FDCWD, argv[i], 64 << 20, &buf, &len);

                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(-r));
                        return 1;
                }
                LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        }
        return 0;
}
