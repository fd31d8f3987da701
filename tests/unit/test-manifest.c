/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-manifest.c -- tests for dedup/manifest.[ch]: backup type strings,
 * the file-name-safe test, disks, deep copy, format -> parse round trips
 * with every field, and the parser's refusal of missing, mistyped, unknown,
 * unsafe, duplicated and future-version content.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/manifest.h"
#include "tests/unit/test.h"

static const char hex_a[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char hex_b[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* A manifest with every field set, two disks. */
static dd_manifest *full_manifest(void)
{
        dd_manifest *m = dd_manifest_new();
        dd_manifest_disk *d;
        json_error_t err;

        ASSERT_TRUE(m);
        m->id = strdup("20240501T120000Z-7f3a");
        m->type = DD_BACKUP_INCREMENTAL;
        m->parent = strdup("20240430T120000Z-1b2c");
        m->pool_type = strdup("standard");
        m->vm.platform = strdup("cas");
        m->vm.id = strdup("42");
        m->vm.uuid = strdup("6b1e2a44-8a41-4c34-9a1e-6f2a3b4c5d6e");
        m->vm.name = strdup("finance-db");
        m->vm.title = strdup("财务数据库 \"prod\" \\ tab\t");
        m->vm.host_id = strdup("host-7");
        m->config = json_loads("{\"cpus\": 4, \"memory\": 8589934592, \"nics\": [{\"mac\": \"52:54:00:12:34:56\"}],"
                               " \"name\": \"财务\", \"ok\": true, \"none\": null}",
                               0, &err);
        ASSERT_TRUE(m->config);
        m->consistency = strdup("application");
        m->checkpoint = strdup("vbak-ckpt-3");
        m->job = strdup("nightly");
        m->run = strdup("run-17");
        m->time_start = 1714564800;
        m->time_end = 1714568400;

        ASSERT_OK(dd_manifest_add_disk(m, "vda", &d));
        d->device = strdup("vda");
        d->format = strdup("qcow2");
        d->size = 107374182400ull;
        d->chunk_size = 4 << 20;
        d->index = strdup("vda.fidx");
        ASSERT_OK(dd_digest_from_hex(hex_a, &d->index_checksum));
        d->bytes_read = 123456789012ull;
        d->bytes_new = 4096;
        d->bytes_data = 99999999999ull;

        ASSERT_OK(dd_manifest_add_disk(m, "data_disk-2.raw", &d));
        d->size = 4097;
        d->chunk_size = 4096;
        d->index = strdup("data_disk-2.raw.fidx");
        ASSERT_OK(dd_digest_from_hex(hex_b, &d->index_checksum));
        return m;
}

static void assert_same_disk(const dd_manifest_disk *a, const dd_manifest_disk *b)
{
        ASSERT_STREQ(a->name, b->name);
        ASSERT_TRUE(streq_ptr(a->device, b->device));
        ASSERT_TRUE(streq_ptr(a->format, b->format));
        ASSERT_UEQ(a->size, b->size);
        ASSERT_UEQ(a->chunk_size, b->chunk_size);
        ASSERT_STREQ(a->index, b->index);
        ASSERT_TRUE(dd_digest_eq(&a->index_checksum, &b->index_checksum));
        ASSERT_UEQ(a->bytes_read, b->bytes_read);
        ASSERT_UEQ(a->bytes_new, b->bytes_new);
        ASSERT_UEQ(a->bytes_data, b->bytes_data);
}

static void assert_same(const dd_manifest *a, const dd_manifest *b)
{
        ASSERT_STREQ(a->id, b->id);
        ASSERT_EQ(a->type, b->type);
        ASSERT_TRUE(streq_ptr(a->parent, b->parent));
        ASSERT_TRUE(streq_ptr(a->pool_type, b->pool_type));
        ASSERT_TRUE(streq_ptr(a->vm.platform, b->vm.platform));
        ASSERT_TRUE(streq_ptr(a->vm.id, b->vm.id));
        ASSERT_TRUE(streq_ptr(a->vm.uuid, b->vm.uuid));
        ASSERT_TRUE(streq_ptr(a->vm.name, b->vm.name));
        ASSERT_TRUE(streq_ptr(a->vm.title, b->vm.title));
        ASSERT_TRUE(streq_ptr(a->vm.host_id, b->vm.host_id));
        ASSERT_TRUE((a->config == NULL) == (b->config == NULL));
        if (a->config)
                ASSERT_TRUE(json_equal(a->config, b->config));
        ASSERT_TRUE(streq_ptr(a->consistency, b->consistency));
        ASSERT_TRUE(streq_ptr(a->checkpoint, b->checkpoint));
        ASSERT_TRUE(streq_ptr(a->job, b->job));
        ASSERT_TRUE(streq_ptr(a->run, b->run));
        ASSERT_EQ(a->time_start, b->time_start);
        ASSERT_EQ(a->time_end, b->time_end);
        ASSERT_UEQ(a->n_disks, b->n_disks);
        for (size_t i = 0; i < a->n_disks; i++)
                assert_same_disk(&a->disks[i], &b->disks[i]);
}

TEST(manifest_backup_type_strings)
{
        ASSERT_STREQ(dd_backup_type_to_string(DD_BACKUP_FULL), "full");
        ASSERT_STREQ(dd_backup_type_to_string(DD_BACKUP_INCREMENTAL), "incremental");
        ASSERT_TRUE(dd_backup_type_to_string(_DD_BACKUP_TYPE_MAX) == NULL);
        ASSERT_TRUE(dd_backup_type_to_string(_DD_BACKUP_TYPE_INVALID) == NULL);
        ASSERT_EQ(dd_backup_type_from_string("full"), DD_BACKUP_FULL);
        ASSERT_EQ(dd_backup_type_from_string("incremental"), DD_BACKUP_INCREMENTAL);
        ASSERT_EQ(dd_backup_type_from_string("Full"), _DD_BACKUP_TYPE_INVALID);
        ASSERT_EQ(dd_backup_type_from_string("differential"), _DD_BACKUP_TYPE_INVALID);
        ASSERT_EQ(dd_backup_type_from_string(""), _DD_BACKUP_TYPE_INVALID);
        ASSERT_EQ(dd_backup_type_from_string(NULL), _DD_BACKUP_TYPE_INVALID);
}

TEST(manifest_name_is_safe)
{
        static const struct {
                const char *s;
                bool safe;
        } table[] = {
                { "vda", true },       { "a", true },     { "A-b_c.d", true },  { "20240501T120000Z-7f3a", true },
                { "disk.fidx", true }, { "x.", true },    { "x-", true },       { "0", true },
                { "_x", true },        { "a..b", true },  { "", false },        { ".", false },
                { "..", false },       { "../x", false }, { ".hidden", false }, { "-x", false },
                { "a/b", false },      { "/abs", false }, { "a b", false },     { "a\tb", false },
                { "a\\b", false },     { "a:b", false },  { "a*", false },      { "é", false },
                { "财务", false },     { "a\nb", false },
        };
        char buf[80];

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (dd_name_is_safe(table[i].s) != table[i].safe)
                        TEST_FAIL_("dd_name_is_safe(\"%s\") != %d", table[i].s, table[i].safe);
        ASSERT_TRUE(!dd_name_is_safe(NULL));
        memset(buf, 'a', sizeof(buf));
        buf[64] = 0;
        ASSERT_TRUE(dd_name_is_safe(buf));
        buf[64] = 'a';
        buf[65] = 0;
        ASSERT_TRUE(!dd_name_is_safe(buf));
        /* Every byte outside the allowed set, at the start, middle and end. */
        for (int c = 1; c < 256; c++) {
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '_' || c == '-';
                snprintf(buf, sizeof(buf), "ab%ccd", c);
                ASSERT_EQ(dd_name_is_safe(buf), ok);
                snprintf(buf, sizeof(buf), "abcd%c", c);
                ASSERT_EQ(dd_name_is_safe(buf), ok);
                snprintf(buf, sizeof(buf), "%cabcd", c);
                ASSERT_EQ(dd_name_is_safe(buf), ok && c != '.' && c != '-');
        }
}

TEST(manifest_disks)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = dd_manifest_new();
        dd_manifest_disk *d = NULL;

        ASSERT_TRUE(m);
        ASSERT_OK(dd_manifest_add_disk(m, "vda", &d));
        ASSERT_TRUE(d && streq(d->name, "vda") && d->size == 0 && !d->index && dd_digest_is_null(&d->index_checksum));
        ASSERT_OK(dd_manifest_add_disk(m, "vdb", NULL));
        ASSERT_ERR(dd_manifest_add_disk(m, "vda", &d), EEXIST);
        ASSERT_ERR(dd_manifest_add_disk(m, "../x", &d), EINVAL);
        ASSERT_ERR(dd_manifest_add_disk(m, NULL, &d), EINVAL);
        ASSERT_ERR(dd_manifest_add_disk(NULL, "vdc", &d), EINVAL);
        ASSERT_UEQ(m->n_disks, 2);
        /* Many disks: the array moves, find still works. */
        for (int i = 0; i < 100; i++) {
                char name[16];
                snprintf(name, sizeof(name), "d%d", i);
                ASSERT_OK(dd_manifest_add_disk(m, name, &d));
                d->size = (uint64_t)i;
        }
        ASSERT_STREQ(dd_manifest_find_disk(m, "vda")->name, "vda");
        ASSERT_STREQ(dd_manifest_find_disk(m, "vdb")->name, "vdb");
        ASSERT_UEQ(dd_manifest_find_disk(m, "d77")->size, 77);
        ASSERT_TRUE(dd_manifest_find_disk(m, "vdc") == NULL);
        ASSERT_TRUE(dd_manifest_find_disk(m, NULL) == NULL);
        ASSERT_TRUE(dd_manifest_find_disk(NULL, "vda") == NULL);
        ASSERT_TRUE(dd_manifest_free(NULL) == NULL);
}

TEST(manifest_round_trip)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = full_manifest();
        _cleanup_(dd_manifest_freep) dd_manifest *p = NULL, *p2 = NULL;
        _cleanup_free_ char *text = NULL, *text2 = NULL;

        ASSERT_OK(dd_manifest_format(m, &text));
        ASSERT_TRUE(strstr(text, "\"format\": \"vbak-manifest\""));
        ASSERT_TRUE(strstr(text, "\"version\": 1"));
        ASSERT_TRUE(strstr(text, "\"type\": \"incremental\""));
        ASSERT_TRUE(strstr(text, hex_a));
        ASSERT_OK(dd_manifest_parse(text, strlen(text), &p));
        assert_same(m, p);
        ASSERT_STREQ(p->vm.title, "财务数据库 \"prod\" \\ tab\t");
        ASSERT_STREQ(json_string_value(json_object_get(p->config, "name")), "财务");
        ASSERT_EQ(json_integer_value(json_object_get(p->config, "memory")), 8589934592ll);
        ASSERT_STREQ(dd_manifest_find_disk(p, "vda")->format, "qcow2");
        ASSERT_TRUE(dd_manifest_find_disk(p, "data_disk-2.raw")->device == NULL);

        /* Formatting is stable. */
        ASSERT_OK(dd_manifest_format(p, &text2));
        ASSERT_STREQ(text, text2);
        /* Length is honoured: no NUL terminator needed. */
        ASSERT_OK(dd_manifest_parse(text2, strlen(text2), &p2));
        assert_same(m, p2);
}

TEST(manifest_round_trip_minimal)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = dd_manifest_new();
        _cleanup_(dd_manifest_freep) dd_manifest *p = NULL;
        _cleanup_free_ char *text = NULL;

        ASSERT_TRUE(m);
        m->id = strdup("r1");
        m->type = DD_BACKUP_FULL;
        m->vm.name = strdup("vm");
        ASSERT_OK(dd_manifest_format(m, &text));
        ASSERT_OK(dd_manifest_parse(text, strlen(text), &p));
        assert_same(m, p);
        ASSERT_TRUE(p->parent == NULL && p->config == NULL && p->n_disks == 0);
}

TEST(manifest_format_refuses)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = dd_manifest_new();
        char *text = NULL;

        ASSERT_TRUE(m);
        ASSERT_ERR(dd_manifest_format(NULL, &text), EINVAL);
        ASSERT_ERR(dd_manifest_format(m, &text), EINVAL); /* no id */
        m->id = strdup("x");
        m->type = _DD_BACKUP_TYPE_MAX;
        ASSERT_ERR(dd_manifest_format(m, &text), EINVAL);
        m->type = _DD_BACKUP_TYPE_INVALID;
        ASSERT_ERR(dd_manifest_format(m, &text), EINVAL);
        ASSERT_TRUE(text == NULL);
}

TEST(manifest_copy)
{
        dd_manifest *m = full_manifest();
        _cleanup_(dd_manifest_freep) dd_manifest *c = NULL, *ref = full_manifest();
        _cleanup_(dd_manifest_freep) dd_manifest *e = dd_manifest_new(), *ce = NULL;
        _cleanup_free_ char *text = NULL;
        dd_manifest *none = NULL;

        ASSERT_OK(dd_manifest_copy(m, &c));
        ASSERT_TRUE(c != m);
        assert_same(m, c);
        /* No pointer is shared. */
        ASSERT_TRUE(c->id != m->id && c->vm.title != m->vm.title && c->config != m->config);
        ASSERT_TRUE(c->disks != m->disks && c->disks[0].index != m->disks[0].index);
        /* Scribble over the original, then free it: the copy still reads right. */
        m->id[0] = 'X';
        m->disks[0].index[0] = 'X';
        json_object_set_new(m->config, "cpus", json_integer(64));
        dd_manifest_free(m);
        assert_same(ref, c);
        ASSERT_OK(dd_manifest_format(c, &text));
        ASSERT_TRUE(strstr(text, "财务数据库"));

        ASSERT_TRUE(e);
        ASSERT_OK(dd_manifest_copy(e, &ce));
        ASSERT_TRUE(ce->id == NULL && ce->n_disks == 0 && ce->config == NULL);
        ASSERT_ERR(dd_manifest_copy(NULL, &none), EINVAL);
        ASSERT_ERR(dd_manifest_copy(e, NULL), EINVAL);
        ASSERT_TRUE(none == NULL);
}

/* --- the parser's refusals ----------------------------------------------- */

/* A valid manifest as a jansson tree, to break one member at a time. */
static json_t *good_json(void)
{
        _cleanup_(dd_manifest_freep) dd_manifest *m = full_manifest();
        _cleanup_free_ char *text = NULL;
        json_t *j;

        ASSERT_OK(dd_manifest_format(m, &text));
        j = json_loads(text, 0, NULL);
        ASSERT_TRUE(j);
        return j;
}

static int parse_json(json_t *j)
{
        _cleanup_free_ char *text = json_dumps(j, JSON_PRESERVE_ORDER);
        dd_manifest *m = NULL;
        int r;

        ASSERT_TRUE(text);
        r = dd_manifest_parse(text, strlen(text), &m);
        if (r >= 0)
                ASSERT_TRUE(m != NULL);
        else
                ASSERT_TRUE(m == NULL);
        dd_manifest_free(m);
        json_decref(j);
        return r;
}

static json_t *disk0(json_t *j)
{
        return json_array_get(json_object_get(j, "disks"), 0);
}

TEST(manifest_parse_good_json_parses)
{
        ASSERT_OK(parse_json(good_json()));
}

TEST(manifest_parse_missing)
{
        static const char *const top_required[] = { "format", "version", "id", "type", "vm", "disks" };
        static const char *const top_optional[] = { "parent", "pool_type", "config",     "consistency", "checkpoint",
                                                    "job",    "run",       "time_start", "time_end" };
        static const char *const disk_required[] = { "name", "index", "size", "chunk_size", "index_checksum" };
        static const char *const disk_optional[] = { "device", "format", "bytes_read", "bytes_new", "bytes_data" };
        json_t *j;

        for (size_t i = 0; i < ELEMENTSOF(top_required); i++) {
                j = good_json();
                ASSERT_OK(json_object_del(j, top_required[i]));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed without \"%s\"", top_required[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(top_optional); i++) {
                j = good_json();
                ASSERT_OK(json_object_del(j, top_optional[i]));
                if (parse_json(j) < 0)
                        TEST_FAIL_("refused without optional \"%s\"", top_optional[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(disk_required); i++) {
                j = good_json();
                ASSERT_OK(json_object_del(disk0(j), disk_required[i]));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed a disk without \"%s\"", disk_required[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(disk_optional); i++) {
                j = good_json();
                ASSERT_OK(json_object_del(disk0(j), disk_optional[i]));
                if (parse_json(j) < 0)
                        TEST_FAIL_("refused a disk without optional \"%s\"", disk_optional[i]);
        }
        j = good_json();
        ASSERT_OK(json_object_del(json_object_get(j, "vm"), "name"));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(json_object_get(j, "vm"), "name", json_null()));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "id", json_null()));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_del(json_object_get(j, "vm"), "title"));
        ASSERT_OK(parse_json(j));
}

TEST(manifest_parse_wrong_types)
{
        static const char *const top[] = { "format",     "version",  "id",          "type",      "parent",
                                           "pool_type",  "vm",       "disks",       "job",       "run",
                                           "time_start", "time_end", "consistency", "checkpoint" };
        static const char *const vm_keys[] = { "platform", "id", "uuid", "name", "title", "host_id" };
        static const char *const disk_keys[] = { "name",  "device",     "format",    "size",       "chunk_size",
                                                 "index", "bytes_read", "bytes_new", "bytes_data", "index_checksum" };
        json_t *j;

        for (size_t i = 0; i < ELEMENTSOF(top); i++) {
                json_t *wrong[] = { json_array(), json_true(), json_real(1.5), json_object() };
                for (size_t k = 0; k < ELEMENTSOF(wrong); k++) {
                        /* An empty array of disks is valid. */
                        if (streq(top[i], "disks") && json_is_array(wrong[k])) {
                                json_decref(wrong[k]);
                                continue;
                        }
                        j = good_json();
                        ASSERT_OK(json_object_set_new(j, top[i], wrong[k]));
                        if (parse_json(j) != -EBADMSG)
                                TEST_FAIL_("parsed with \"%s\" of the wrong type (%zu)", top[i], k);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(vm_keys); i++) {
                j = good_json();
                ASSERT_OK(json_object_set_new(json_object_get(j, "vm"), vm_keys[i], json_integer(7)));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed with vm.%s a number", vm_keys[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(disk_keys); i++) {
                json_t *wrong[] = { json_array(), json_false(), json_real(2.0), json_object() };
                for (size_t k = 0; k < ELEMENTSOF(wrong); k++) {
                        j = good_json();
                        ASSERT_OK(json_object_set_new(disk0(j), disk_keys[i], wrong[k]));
                        if (parse_json(j) != -EBADMSG)
                                TEST_FAIL_("parsed with disk \"%s\" of the wrong type (%zu)", disk_keys[i], k);
                }
        }
        /* Strings where numbers belong, numbers where strings belong. */
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "size", json_string("100")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "id", json_integer(5)));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "version", json_string("1")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        /* A disk that is not an object. */
        j = good_json();
        ASSERT_OK(json_array_append_new(json_object_get(j, "disks"), json_string("vdc")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        /* Negative and out of range numbers. */
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "size", json_integer(-1)));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "chunk_size", json_integer(0)));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "chunk_size", json_integer(1ll << 32)));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "chunk_size", json_integer(UINT32_MAX)));
        ASSERT_OK(parse_json(j));
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "time_start", json_string("yesterday")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "time_start", json_integer(-5))); /* before 1970: still a time */
        ASSERT_OK(parse_json(j));
        /* The root is not an object. */
        ASSERT_ERR(parse_json(json_array()), EBADMSG);
        /* The config is opaque: any JSON value or null goes. */
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "config", json_null()));
        ASSERT_OK(parse_json(j));
}

TEST(manifest_parse_bad_values)
{
        static const char *const bad_names[] = { "../x", ".hidden", "a/b", "-x", "", "a b", "x\n" };
        static const char *const bad_hex[] = {
                "",
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adx",
                "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001 ad",
        };
        char long_name[70];
        json_t *j;

        memset(long_name, 'a', 65);
        long_name[65] = 0;

        for (size_t i = 0; i <= ELEMENTSOF(bad_names); i++) {
                const char *n = i < ELEMENTSOF(bad_names) ? bad_names[i] : long_name;

                j = good_json();
                ASSERT_OK(json_object_set_new(disk0(j), "name", json_string(n)));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed disk name \"%s\"", n);
                j = good_json();
                ASSERT_OK(json_object_set_new(disk0(j), "index", json_string(n)));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed index name \"%s\"", n);
                j = good_json();
                ASSERT_OK(json_object_set_new(j, "id", json_string(n)));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed id \"%s\"", n);
                j = good_json();
                ASSERT_OK(json_object_set_new(j, "parent", json_string(n)));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed parent \"%s\"", n);
        }
        long_name[64] = 0;
        j = good_json();
        ASSERT_OK(json_object_set_new(disk0(j), "name", json_string(long_name)));
        ASSERT_OK(parse_json(j));

        for (size_t i = 0; i < ELEMENTSOF(bad_hex); i++) {
                j = good_json();
                ASSERT_OK(json_object_set_new(disk0(j), "index_checksum", json_string(bad_hex[i])));
                if (parse_json(j) != -EBADMSG)
                        TEST_FAIL_("parsed checksum \"%s\"", bad_hex[i]);
        }

        /* Unknown backup type and format. */
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "type", json_string("differential")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "type", json_string("FULL")));
        ASSERT_ERR(parse_json(j), EBADMSG);
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "format", json_string("vbak-index")));
        ASSERT_ERR(parse_json(j), EBADMSG);

        /* Duplicate disk names. */
        j = good_json();
        json_t *copy = json_deep_copy(disk0(j));
        ASSERT_OK(json_array_append_new(json_object_get(j, "disks"), copy));
        ASSERT_ERR(parse_json(j), EBADMSG);
        /* Renaming the second disk to an unused name keeps it valid. */
        j = good_json();
        ASSERT_OK(json_object_set_new(json_array_get(json_object_get(j, "disks"), 1), "name", json_string("vdz")));
        ASSERT_OK(parse_json(j));
}

TEST(manifest_parse_version)
{
        static const json_int_t versions[] = { 0, 2, 3, 100, -1 };
        json_t *j;

        for (size_t i = 0; i < ELEMENTSOF(versions); i++) {
                j = good_json();
                ASSERT_OK(json_object_set_new(j, "version", json_integer(versions[i])));
                if (parse_json(j) != -EPROTONOSUPPORT)
                        TEST_FAIL_("version %lld not refused as unsupported", (long long)versions[i]);
        }
        j = good_json();
        ASSERT_OK(json_object_set_new(j, "version", json_integer(DD_MANIFEST_VERSION)));
        ASSERT_OK(parse_json(j));
}

TEST(manifest_parse_text)
{
        static const char ok[] = "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"type\":\"full\","
                                 "\"vm\":{\"name\":\"v\"},\"disks\":[]}";
        static const char *const bad[] = {
                "",
                "{",
                "null",
                "[]",
                "{}",
                "\"vbak-manifest\"",
                /* Duplicate keys, at the top, in vm, in a disk. */
                "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"id\":\"s\",\"type\":\"full\","
                "\"vm\":{\"name\":\"v\"},\"disks\":[]}",
                "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"type\":\"full\","
                "\"vm\":{\"name\":\"v\",\"name\":\"w\"},\"disks\":[]}",
                "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"type\":\"full\",\"vm\":{\"name\":\"v\"},"
                "\"disks\":[{\"name\":\"a\",\"name\":\"b\",\"index\":\"a.fidx\",\"size\":1,\"chunk_size\":1,"
                "\"index_checksum\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]}",
                /* Trailing garbage. */
                "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"type\":\"full\","
                "\"vm\":{\"name\":\"v\"},\"disks\":[]} x",
                /* Version as a real number. */
                "{\"format\":\"vbak-manifest\",\"version\":1.0,\"id\":\"r\",\"type\":\"full\","
                "\"vm\":{\"name\":\"v\"},\"disks\":[]}",
                /* Invalid UTF-8 in a string. */
                "{\"format\":\"vbak-manifest\",\"version\":1,\"id\":\"r\",\"type\":\"full\","
                "\"vm\":{\"name\":\"v\xff\"},\"disks\":[]}",
        };
        dd_manifest *m = NULL;

        ASSERT_OK(dd_manifest_parse(ok, strlen(ok), &m));
        ASSERT_STREQ(m->id, "r");
        ASSERT_EQ(m->type, DD_BACKUP_FULL);
        ASSERT_UEQ(m->n_disks, 0);
        m = dd_manifest_free(m);
        /* A prefix is not the whole text. */
        ASSERT_ERR(dd_manifest_parse(ok, strlen(ok) - 1, &m), EBADMSG);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = dd_manifest_parse(bad[i], strlen(bad[i]), &m);
                if (r != -EBADMSG)
                        TEST_FAIL_("bad text %zu gave %d", i, r);
                ASSERT_TRUE(m == NULL);
        }
        ASSERT_ERR(dd_manifest_parse(NULL, 0, &m), EINVAL);
        ASSERT_ERR(dd_manifest_parse(ok, strlen(ok), NULL), EINVAL);
        /* A future version is "unsupported" even when the rest is unknown. */
        static const char future[] = "{\"format\":\"vbak-manifest\",\"version\":2,\"whatever\":[1,2,3]}";
        ASSERT_ERR(dd_manifest_parse(future, strlen(future), &m), EPROTONOSUPPORT);
}
