/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-cas-doc.c -- fuzz target for cas/doc.c: the input goes through
 * cas_doc_parse() as XML, as JSON and without a content type, then every
 * member of the tree through every accessor and the envelope readers; the
 * input is also an Error-Message header, raw and declared GBK.
 *
 * Besides not crashing, it checks what the module promises: a failure comes
 * with an explanation and no tree; cas_get_list() always gives an array
 * that is then the member; strings from cas_get_str() and error messages
 * are valid UTF-8 (jansson's json_string() refuses anything else).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cas/doc.h"
#include "daemon/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

static bool is_utf8(const char *s)
{
        json_t *j = json_string(s);

        json_decref(j);
        return j != NULL;
}

static void walk(json_t *j, unsigned depth)
{
        const char *key;
        json_t *v, *tmp;
        size_t i;

        FUZZ_ASSERT(depth <= CAS_DOC_MAX_DEPTH + 1);
        if (json_is_array(j)) {
                json_array_foreach(j, i, v) walk(v, depth + 1);
                return;
        }
        if (!json_is_object(j))
                return;
        /* Keys first: the accessors below may replace members. */
        json_object_foreach_safe(j, tmp, key, v)
        {
                const char *s;
                int64_t i64;
                double d;
                bool b;
                int r;

                r = cas_get_i64(j, key, &i64);
                FUZZ_ASSERT(r == 0 || r == -ENOENT || r == -EINVAL || r == -ERANGE);
                r = cas_get_double(j, key, &d);
                FUZZ_ASSERT(r == 0 || r == -ENOENT || r == -EINVAL || r == -ERANGE);
                r = cas_get_bool(j, key, &b);
                FUZZ_ASSERT(r == 0 || r == -ENOENT || r == -EINVAL);
                s = cas_get_str(j, key);
                FUZZ_ASSERT(!s || is_utf8(s));
                (void)cas_get_obj(j, key);
        }
        json_object_foreach_safe(j, tmp, key, v)
        {
                json_t *list = cas_get_list(j, key);

                FUZZ_ASSERT(json_is_array(list));
                FUZZ_ASSERT(json_object_get(j, key) == list);
                walk(list, depth + 1);
        }
}

static void envelopes(json_t *j)
{
        cas_task t;
        cas_rs_result rs;
        int r;

        r = cas_task_from_json(j, &t);
        FUZZ_ASSERT(r == 0 || r == -EBADMSG);
        if (r == 0) {
                FUZZ_ASSERT(t.progress >= -1 && t.progress <= 100);
                FUZZ_ASSERT(t.result >= CAS_TASK_RESULT_NONE && t.result <= CAS_TASK_PART_SUCCESS);
                FUZZ_ASSERT(!t.fail_msg || is_utf8(t.fail_msg));
                cas_task_done(&t);
        }
        r = cas_rs_result_from_json(j, &rs);
        FUZZ_ASSERT(r == 0 || r == -EBADMSG);
        if (r == 0)
                cas_rs_result_done(&rs);
}

static void one(const uint8_t *data, size_t size, const char *content_type)
{
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;
        int r = cas_doc_parse((const char *)data, size, content_type, &j, &err);

        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EFBIG || r == -ENOMEM);
                FUZZ_ASSERT(j == NULL);
                FUZZ_ASSERT(r == -ENOMEM || err != NULL);
                return;
        }
        FUZZ_ASSERT(j != NULL && err == NULL);
        envelopes(j);
        walk(j, 0);
        envelopes(j); /* again, on the normalised tree */
        json_decref(j);
}

static void headers(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = malloc(size + 1);
        const char *charsets[] = { NULL, "GBK", "UTF-8", "text/plain; charset=big5" };
        cas_error e;

        if (!text)
                return;
        memcpy(text, data, size);
        text[size] = 0;
        for (size_t i = 0; i < ELEMENTSOF(charsets); i++) {
                FUZZ_ASSERT(cas_error_from_headers(409, text, text, charsets[i], &e) == 0);
                FUZZ_ASSERT(e.message && is_utf8(e.message));
                for (const char *p = e.message; *p; p++)
                        FUZZ_ASSERT((unsigned char)*p >= 0x20 && *p != 0x7f);
                cas_error_done(&e);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        one(data, size, "application/xml");
        one(data, size, "application/json");
        one(data, size, NULL);
        headers(data, size);
        return 0;
}
