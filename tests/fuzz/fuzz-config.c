/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-config.c -- fuzz target for the vbakd.conf parser: the input becomes
 * a memfd that vb_config_load() reads through /proc/self/fd/N.
 *
 * Besides not crashing, it checks what the parser promises: a failed load
 * leaves the configuration as it was and explains itself; after a good
 * load, every value formats to text that vb_config_set() takes back
 * unchanged. Logging is off unless VBAK_FUZZ_LOG is set.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

static void silence_logging(void)
{
        static bool done;

        if (done)
                return;
        done = true;
        if (getenv("VBAK_FUZZ_LOG"))
                vb_log_parse_environment();
        else
                vb_log_set_target(-1);
}

/* A value is never longer than the input that set it, nor a default or a
 * number longer than 64 bytes. */
static void assert_round_trip(struct vb_config *c, size_t max)
{
        _cleanup_free_ char *before = malloc(max), *after = malloc(max);

        FUZZ_ASSERT(before && after);
        VB_CONFIG_FOREACH_KEY(k) {
                _cleanup_free_ char *error = NULL;

                FUZZ_ASSERT(vb_config_format_value(c, k, before, max) >= 0);
                if (vb_config_set(c, k->name, before, &error) < 0) {
                        fprintf(stderr, "%s = \"%s\" does not read back: %s\n", k->name, before, error);
                        abort();
                }
                FUZZ_ASSERT(vb_config_format_value(c, k, after, max) >= 0);
                FUZZ_ASSERT(streq(before, after));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *error = NULL;
        struct vb_config c, defaults;
        char path[64];
        int r;

        silence_logging();
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (vb_write_all(fd, data, size) < 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

        if (vb_config_init_defaults(&c) < 0 || vb_config_init_defaults(&defaults) < 0)
                abort();
        r = vb_config_load(&c, path, &error);
        if (r < 0) {
                /* All or nothing, and an explanation. */
                FUZZ_ASSERT(r == -EINVAL || r == -EFBIG || r == -ENOMEM);
                FUZZ_ASSERT(r == -ENOMEM || error != NULL);
                VB_CONFIG_FOREACH_KEY(k) {
                        char a[256], b[256];

                        FUZZ_ASSERT(vb_config_format_value(&c, k, a, sizeof(a)) >= 0);
                        FUZZ_ASSERT(vb_config_format_value(&defaults, k, b, sizeof(b)) >= 0);
                        FUZZ_ASSERT(streq(a, b));
                }
        } else {
                FUZZ_ASSERT(error == NULL);
                assert_round_trip(&c, size + 64);
        }
        vb_config_free(&c);
        vb_config_free(&defaults);
        return 0;
}
