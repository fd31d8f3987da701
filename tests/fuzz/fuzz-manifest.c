/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-manifest.c -- fuzz target for the manifest parser: the input is the
 * JSON text.
 *
 * Besides not crashing, it checks what the parser promises: a failure is
 * -EBADMSG or -EPROTONOSUPPORT; a manifest that parses has safe names and
 * formats to text that parses back to the same manifest (id, type, parent,
 * VM name, disks), formats to the same text again, and so does its copy.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

static void assert_same(const dd_manifest *a, const dd_manifest *b)
{
        FUZZ_ASSERT(streq(a->id, b->id));
        FUZZ_ASSERT(a->type == b->type);
        FUZZ_ASSERT(streq_ptr(a->parent, b->parent));
        FUZZ_ASSERT(streq_ptr(a->vm.name, b->vm.name));
        FUZZ_ASSERT(streq_ptr(a->vm.title, b->vm.title));
        FUZZ_ASSERT(a->time_start == b->time_start && a->time_end == b->time_end);
        FUZZ_ASSERT((a->config == NULL) == (b->config == NULL));
        FUZZ_ASSERT(a->n_disks == b->n_disks);
        for (size_t i = 0; i < a->n_disks; i++) {
                const dd_manifest_disk *x = &a->disks[i], *y = &b->disks[i];

                FUZZ_ASSERT(streq(x->name, y->name));
                FUZZ_ASSERT(streq(x->index, y->index));
                FUZZ_ASSERT(x->size == y->size && x->chunk_size == y->chunk_size);
                FUZZ_ASSERT(dd_digest_eq(&x->index_checksum, &y->index_checksum));
                FUZZ_ASSERT(x->bytes_read == y->bytes_read && x->bytes_new == y->bytes_new &&
                            x->bytes_data == y->bytes_data);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = NULL, *m2 = NULL, *c = NULL;
        _cleanup_free_ char *text = NULL, *text2 = NULL, *text3 = NULL;
        int r;

        r = dd_manifest_parse((const char *)data, size, &m);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT);
                FUZZ_ASSERT(m == NULL);
                return 0;
        }
        FUZZ_ASSERT(m);

        /* What the parser lets through. */
        FUZZ_ASSERT(dd_name_is_safe(m->id));
        FUZZ_ASSERT(!m->parent || dd_name_is_safe(m->parent));
        FUZZ_ASSERT(dd_backup_type_to_string(m->type));
        FUZZ_ASSERT(m->vm.name);
        for (size_t i = 0; i < m->n_disks; i++) {
                FUZZ_ASSERT(dd_name_is_safe(m->disks[i].name));
                FUZZ_ASSERT(dd_name_is_safe(m->disks[i].index));
                FUZZ_ASSERT(m->disks[i].chunk_size > 0);
                FUZZ_ASSERT(dd_manifest_find_disk(m, m->disks[i].name) == &m->disks[i]);
        }

        /* Format, parse back, format again. */
        FUZZ_ASSERT(dd_manifest_format(m, &text) == 0);
        r = dd_manifest_parse(text, strlen(text), &m2);
        if (r < 0) {
                fprintf(stderr, "formatted manifest does not parse back (%d):\n%s\n", r, text);
                abort();
        }
        assert_same(m, m2);
        FUZZ_ASSERT(dd_manifest_format(m2, &text2) == 0);
        FUZZ_ASSERT(streq(text, text2));

        /* The copy is the same manifest. */
        FUZZ_ASSERT(dd_manifest_copy(m, &c) == 0);
        assert_same(m, c);
        FUZZ_ASSERT(dd_manifest_format(c, &text3) == 0);
        FUZZ_ASSERT(streq(text, text3));
        return 0;
}
