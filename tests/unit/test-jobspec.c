/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-jobspec.c -- tests for daemon/jobspec.c: "LEVEL:NAME" items, JSON
 * selections brought to the catalog's form and every refusal (with the
 * member named first), exclusion patterns, the text form of items, and the
 * exclusion of VMs by name or title.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/jobspec.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

static json_t *load(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

        if (!j)
                TEST_FAIL_("bad JSON in the test: %s: %s", text, e.text);
        return j;
}

static void assert_json(const json_t *got, const char *want)
{
        json_t *w = load(want);
        _cleanup_free_ char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);

        if (!json_equal(got, w))
                TEST_FAIL_("got %s, want %s", g ? g : "(null)", want);
        json_decref(w);
}

/* Asserts that the selection text is refused with a message holding what. */
static void assert_selection_refused(const char *text, const char *what)
{
        json_t *in = load(text), *out = NULL;
        _cleanup_free_ char *err = NULL;

        ASSERT_ERR(vb_jobspec_selection_from_json(in, &out, &err), EINVAL);
        ASSERT_TRUE(out == NULL);
        ASSERT_TRUE(err != NULL);
        if (strncmp(err, "selection: ", 11) != 0 || !strstr(err, what))
                TEST_FAIL_("%s: message '%s' lacks 'selection: ' or '%s'", text, err, what);
        json_decref(in);
}

static void assert_exclusions_refused(const char *text, const char *what)
{
        json_t *in = load(text), *out = NULL;
        _cleanup_free_ char *err = NULL;

        ASSERT_ERR(vb_jobspec_exclusions_from_json(in, &out, &err), EINVAL);
        ASSERT_TRUE(out == NULL);
        if (!err || strncmp(err, "exclusions: ", 12) != 0 || !strstr(err, what))
                TEST_FAIL_("%s: message '%s' lacks 'exclusions: ' or '%s'", text, err ? err : "(null)", what);
        json_decref(in);
}

TEST(levels)
{
        ASSERT_STREQ(vb_select_level_to_string(VB_SELECT_HOSTPOOL), "hostpool");
        ASSERT_STREQ(vb_select_level_to_string(VB_SELECT_VM), "vm");
        ASSERT_TRUE(vb_select_level_to_string(_VB_SELECT_LEVEL_MAX) == NULL);
        ASSERT_EQ(vb_select_level_from_string("HostPool"), VB_SELECT_HOSTPOOL);
        ASSERT_EQ(vb_select_level_from_string("cluster"), VB_SELECT_CLUSTER);
        ASSERT_EQ(vb_select_level_from_string("rack"), _VB_SELECT_LEVEL_INVALID);
        ASSERT_EQ(vb_select_level_from_string(NULL), _VB_SELECT_LEVEL_INVALID);
}

TEST(item_parse)
{
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL, *err3 = NULL, *err4 = NULL;

        ASSERT_OK(vb_jobspec_item_parse("host:cvk01", &j, NULL));
        assert_json(j, "{\"level\":\"host\",\"name\":\"cvk01\"}");
        json_decref(j);
        /* The name is everything after the first ':'; the level any case. */
        ASSERT_OK(vb_jobspec_item_parse("VM:db:01", &j, NULL));
        assert_json(j, "{\"level\":\"vm\",\"name\":\"db:01\"}");
        json_decref(j);
        ASSERT_OK(vb_jobspec_item_parse("vm:数据库服务器", &j, NULL));
        assert_json(j, "{\"level\":\"vm\",\"name\":\"数据库服务器\"}");
        json_decref(j);

        j = NULL;
        ASSERT_ERR(vb_jobspec_item_parse("cvk01", &j, &err), EINVAL);
        ASSERT_TRUE(err && strstr(err, "expected LEVEL:NAME"));
        ASSERT_ERR(vb_jobspec_item_parse("rack:r1", &j, &err2), EINVAL);
        ASSERT_TRUE(err2 && strstr(err2, "unknown level 'rack'"));
        ASSERT_ERR(vb_jobspec_item_parse("host:", &j, &err3), EINVAL);
        ASSERT_TRUE(err3 && strstr(err3, "empty"));
        ASSERT_ERR(vb_jobspec_item_parse("host:a\tb", &j, &err4), EINVAL);
        ASSERT_TRUE(err4 && strstr(err4, "control character"));
        ASSERT_ERR(vb_jobspec_item_parse("vm:\xff\xfe", &j, NULL), EINVAL);
        ASSERT_TRUE(j == NULL);
}

TEST(selection_normalised)
{
        json_t *in = load("[\"hostpool:HP1\", {\"level\": \"Cluster\", \"name\": \"c1\"}, {\"level\": \"vm\", \"id\": "
                          "102}, {\"level\": \"vm\", \"id\": \"uuid-1\", \"name\": \"db01\"}]");
        json_t *out = NULL;

        ASSERT_OK(vb_jobspec_selection_from_json(in, &out, NULL));
        assert_json(out, "[{\"level\":\"hostpool\",\"name\":\"HP1\"},{\"level\":\"cluster\",\"name\":\"c1\"},"
                         "{\"level\":\"vm\",\"id\":102},{\"level\":\"vm\",\"id\":\"uuid-1\",\"name\":\"db01\"}]");
        /* The input is not changed. */
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(in, 1), "level")), "Cluster");
        json_decref(in);
        json_decref(out);
}

TEST(selection_refused)
{
        assert_selection_refused("[]", "at least one");
        assert_selection_refused("{\"level\": \"vm\"}", "expected an array");
        assert_selection_refused("\"vm:x\"", "expected an array");
        assert_selection_refused("[\"vm:a\", \"rack:b\"]", "item 2: 'rack:b': unknown level 'rack'");
        assert_selection_refused("[\"vm:a\", 7]", "item 2: expected");
        assert_selection_refused("[{\"level\": \"vm\"}]", "'name' or 'id' is required");
        assert_selection_refused("[{\"name\": \"x\"}]", "'level' is required");
        assert_selection_refused("[{\"level\": \"vm\", \"name\": \"x\", \"title\": \"t\"}]", "unknown field 'title'");
        assert_selection_refused("[{\"level\": \"vm\", \"name\": 5}]", "'name' must be a string");
        assert_selection_refused("[{\"level\": \"vm\", \"name\": \"\"}]", "empty");
        assert_selection_refused("[{\"level\": \"vm\", \"id\": -1}]", "negative");
        assert_selection_refused("[{\"level\": \"vm\", \"id\": true}]", "'id' must be");
        assert_selection_refused("[\"vm:a\", {\"level\": \"VM\", \"name\": \"a\"}]", "vm:a is given twice");
        assert_selection_refused("[\"vm:a\\u0000b\"]", "NUL");
}

TEST(selection_too_long)
{
        json_t *in = json_array(), *out = NULL;
        char name[3 + VB_JOBSPEC_NAME_MAX + 2]; /* "vm:", the name, one byte more, NUL */
        _cleanup_free_ char *err = NULL;

        for (int i = 0; i <= VB_JOBSPEC_ITEMS_MAX; i++) {
                char t[32];

                snprintf(t, sizeof(t), "vm:v%d", i);
                json_array_append_new(in, json_string(t));
        }
        ASSERT_ERR(vb_jobspec_selection_from_json(in, &out, &err), EINVAL);
        ASSERT_TRUE(err && strstr(err, "at most"));
        json_array_remove(in, 0);
        ASSERT_OK(vb_jobspec_selection_from_json(in, &out, NULL));
        ASSERT_EQ(json_array_size(out), VB_JOBSPEC_ITEMS_MAX);
        json_decref(out);
        json_decref(in);

        memset(name, 'n', sizeof(name));
        memcpy(name, "vm:", 3);
        name[3 + VB_JOBSPEC_NAME_MAX] = 0; /* exactly the longest name */
        ASSERT_OK(vb_jobspec_item_parse(name, &out, NULL));
        json_decref(out);
        name[3 + VB_JOBSPEC_NAME_MAX] = 'n';
        name[sizeof(name) - 1] = 0;
        ASSERT_ERR(vb_jobspec_item_parse(name, &out, NULL), EINVAL);
}

TEST(exclusions)
{
        json_t *in = load("[\"test-*\", \"*-tmp\", \"db0[1-3]\"]"), *out = NULL;
        char longp[VB_JOBSPEC_PATTERN_MAX + 2];

        ASSERT_OK(vb_jobspec_exclusions_from_json(in, &out, NULL));
        assert_json(out, "[\"test-*\", \"*-tmp\", \"db0[1-3]\"]");
        json_decref(out);
        json_decref(in);
        ASSERT_OK(vb_jobspec_exclusions_from_json(NULL, &out, NULL));
        assert_json(out, "[]");
        json_decref(out);
        in = json_null();
        ASSERT_OK(vb_jobspec_exclusions_from_json(in, &out, NULL));
        assert_json(out, "[]");
        json_decref(out);

        assert_exclusions_refused("\"test-*\"", "expected an array");
        assert_exclusions_refused("[\"a\", \"\"]", "pattern 2 is not usable: it is empty");
        assert_exclusions_refused("[1]", "expected a string");
        assert_exclusions_refused("[\"a\\nb\"]", "control character");
        assert_exclusions_refused("[\"a\\u0000b\"]", "NUL");
        memset(longp, '*', sizeof(longp));
        longp[VB_JOBSPEC_PATTERN_MAX + 1] = 0;
        in = json_pack("[s]", longp);
        ASSERT_ERR(vb_jobspec_exclusions_from_json(in, &out, NULL), EINVAL);
        json_decref(in);
        longp[VB_JOBSPEC_PATTERN_MAX] = 0;
        in = json_pack("[s]", longp);
        ASSERT_OK(vb_jobspec_exclusions_from_json(in, &out, NULL));
        json_decref(out);
        json_decref(in);
}

TEST(item_format)
{
        char buf[64];
        json_t *a = load("{\"level\":\"host\",\"name\":\"cvk01\"}"), *b = load("{\"level\":\"vm\",\"id\":102}");
        json_t *c = load("{\"level\":\"vm\",\"id\":\"u-1\",\"name\":\"db01\"}"), *d = load("{\"level\":\"rack\"}");

        ASSERT_EQ(vb_jobspec_item_format(a, buf, sizeof(buf)), strlen("host:cvk01"));
        ASSERT_STREQ(buf, "host:cvk01");
        ASSERT_OK(vb_jobspec_item_format(b, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "vm id 102");
        ASSERT_OK(vb_jobspec_item_format(c, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "vm:db01 (id u-1)");
        ASSERT_ERR(vb_jobspec_item_format(d, buf, sizeof(buf)), EINVAL);
        ASSERT_ERR(vb_jobspec_item_format(a, buf, 5), ENOBUFS);
        json_decref(a);
        json_decref(b);
        json_decref(c);
        json_decref(d);
}

TEST(excluded)
{
        json_t *ex = load("[\"test-*\", \"*临时*\", \"db0[1-3]\"]");

        ASSERT_TRUE(vb_jobspec_excluded(ex, "test-web", NULL));
        ASSERT_TRUE(vb_jobspec_excluded(ex, "web", "测试临时机"));
        ASSERT_TRUE(vb_jobspec_excluded(ex, "db02", "数据库"));
        ASSERT_TRUE(!vb_jobspec_excluded(ex, "db04", "数据库"));
        ASSERT_TRUE(!vb_jobspec_excluded(ex, "Test-web", NULL)); /* case counts */
        ASSERT_TRUE(!vb_jobspec_excluded(ex, NULL, NULL));
        ASSERT_TRUE(!vb_jobspec_excluded(NULL, "test-web", NULL));
        json_decref(ex);
}
