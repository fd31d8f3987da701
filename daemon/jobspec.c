/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jobspec.c -- a job's selection items and exclusion patterns (see
 * jobspec.h).
 *
 * DESIGN
 * Every check writes its message with the member it is about first
 * ("selection: item 2: ..."), as the API names that member as the field of
 * its 400 answer and shows the message as it is.
 */
#include "daemon/jobspec.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon/util.h"

static const char *const level_table[_VB_SELECT_LEVEL_MAX] = {
        [VB_SELECT_HOSTPOOL] = "hostpool",
        [VB_SELECT_CLUSTER] = "cluster",
        [VB_SELECT_HOST] = "host",
        [VB_SELECT_VM] = "vm",
};

#define LEVELS "hostpool, cluster, host or vm"

const char *vb_select_level_to_string(vb_select_level l)
{
        return l >= 0 && l < _VB_SELECT_LEVEL_MAX ? level_table[l] : NULL;
}

vb_select_level vb_select_level_from_string(const char *s)
{
        for (int i = 0; s && i < _VB_SELECT_LEVEL_MAX; i++)
                if (strcasecmp(s, level_table[i]) == 0)
                        return (vb_select_level)i;
        return _VB_SELECT_LEVEL_INVALID;
}

/* What j is, for messages: "an object", "a number"... */
static const char *kind_of(const json_t *j)
{
        if (!j)
                return "nothing";
        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "something else";
}

static int fail(char **err, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **err, int r, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return r;
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
        return r;
}

/* Why s (of len bytes) cannot be a name, an id or a pattern; NULL when it can. */
static const char *bad_text(const char *s, size_t len, size_t max)
{
        if (len == 0)
                return "it is empty";
        if (len > max)
                return "it is too long";
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                        return "it holds a control character";
        return NULL;
}

/* A new {"level", "name"} object, or NULL (memory, or name not UTF-8). */
static json_t *item_new(vb_select_level l, const char *name, size_t len)
{
        json_t *n = json_stringn(name, len);

        if (!n)
                return NULL;
        return json_pack("{s:s, s:o}", "level", level_table[l], "name", n);
}

int vb_jobspec_item_parse(const char *text, json_t **ret, char **err)
{
        _cleanup_free_ char *level = NULL;
        const char *colon, *name, *why;
        vb_select_level l;
        json_t *item;

        if (err)
                *err = NULL;
        if (!text || !ret)
                return -EINVAL;
        colon = strchr(text, ':');
        if (!colon)
                return fail(err, -EINVAL, "'%s': expected LEVEL:NAME, LEVEL one of " LEVELS, text);
        level = strndup(text, (size_t)(colon - text));
        if (!level)
                return -ENOMEM;
        l = vb_select_level_from_string(level);
        if (l < 0)
                return fail(err, -EINVAL, "'%s': unknown level '%s': expected " LEVELS, text, level);
        name = colon + 1;
        why = bad_text(name, strlen(name), VB_JOBSPEC_NAME_MAX);
        if (why)
                return fail(err, -EINVAL, "'%s': the name is not usable: %s", text, why);
        item = item_new(l, name, strlen(name));
        if (!item)
                return fail(err, -EINVAL, "'%s': the name is not UTF-8", text);
        *ret = item;
        return 0;
}

/* One item of a JSON selection, in the catalog's form. */
static int item_from_json(const json_t *in, size_t i, json_t **ret, char **err)
{
        const json_t *lv, *name, *id;
        const char *key, *why;
        vb_select_level l;
        json_t *v, *out;
        int r;

        if (json_is_string(in)) {
                _cleanup_free_ char *e = NULL;

                if (strlen(json_string_value(in)) != json_string_length(in))
                        return fail(err, -EINVAL, "selection: item %zu: NUL character in the text", i + 1);
                r = vb_jobspec_item_parse(json_string_value(in), ret, &e);
                if (r == -EINVAL)
                        return fail(err, r, "selection: item %zu: %s", i + 1, e ?: "not LEVEL:NAME");
                return r;
        }
        if (!json_is_object(in))
                return fail(err, -EINVAL,
                            "selection: item %zu: expected \"LEVEL:NAME\" or {\"level\", \"name\"}, got %s", i + 1,
                            kind_of(in));
        json_object_foreach((json_t *)in, key, v)
        {
                if (!streq(key, "level") && !streq(key, "name") && !streq(key, "id"))
                        return fail(err, -EINVAL, "selection: item %zu: unknown field '%s' (level, name, id)", i + 1,
                                    key);
        }
        lv = json_object_get(in, "level");
        name = json_object_get(in, "name");
        id = json_object_get(in, "id");
        if (!json_is_string(lv))
                return fail(err, -EINVAL, "selection: item %zu: 'level' is required: " LEVELS, i + 1);
        l = vb_select_level_from_string(json_string_value(lv));
        if (l < 0)
                return fail(err, -EINVAL, "selection: item %zu: unknown level '%s': expected " LEVELS, i + 1,
                            json_string_value(lv));
        if (!name && !id)
                return fail(err, -EINVAL, "selection: item %zu: 'name' or 'id' is required", i + 1);
        if (name && !json_is_string(name))
                return fail(err, -EINVAL, "selection: item %zu: 'name' must be a string", i + 1);
        if (name && (why = bad_text(json_string_value(name), json_string_length(name), VB_JOBSPEC_NAME_MAX)))
                return fail(err, -EINVAL, "selection: item %zu: the name is not usable: %s", i + 1, why);
        if (id && json_is_integer(id) && json_integer_value(id) < 0)
                return fail(err, -EINVAL, "selection: item %zu: 'id' must not be negative", i + 1);
        if (id && !json_is_integer(id) && !json_is_string(id))
                return fail(err, -EINVAL, "selection: item %zu: 'id' must be a string or an integer", i + 1);
        if (id && json_is_string(id) &&
            (why = bad_text(json_string_value(id), json_string_length(id), VB_JOBSPEC_NAME_MAX)))
                return fail(err, -EINVAL, "selection: item %zu: the id is not usable: %s", i + 1, why);
        out = json_pack("{s:s}", "level", level_table[l]);
        if (!out || (id && json_object_set(out, "id", (json_t *)id) < 0) ||
            (name && json_object_set(out, "name", (json_t *)name) < 0)) {
                json_decref(out);
                return -ENOMEM;
        }
        *ret = out;
        return 0;
}

int vb_jobspec_selection_from_json(const json_t *sel, json_t **ret, char **err)
{
        json_t *out;
        size_t n;
        int r;

        if (err)
                *err = NULL;
        if (!ret)
                return -EINVAL;
        if (!json_is_array(sel))
                return fail(err, -EINVAL, "selection: expected an array of \"LEVEL:NAME\" items, got %s", kind_of(sel));
        n = json_array_size(sel);
        if (n == 0)
                return fail(err, -EINVAL, "selection: at least one host pool, cluster, host or VM is needed");
        if (n > VB_JOBSPEC_ITEMS_MAX)
                return fail(err, -EINVAL, "selection: %zu items, at most %d", n, VB_JOBSPEC_ITEMS_MAX);
        out = json_array();
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *item = NULL;
                char text[2 * VB_JOBSPEC_NAME_MAX + 32];

                r = item_from_json(json_array_get(sel, i), i, &item, err);
                if (r < 0)
                        goto bad;
                for (size_t k = 0; k < i; k++)
                        if (json_equal(json_array_get(out, k), item)) {
                                if (vb_jobspec_item_format(item, text, sizeof(text)) < 0)
                                        snprintf(text, sizeof(text), "item %zu", i + 1);
                                json_decref(item);
                                r = fail(err, -EINVAL, "selection: %s is given twice", text);
                                goto bad;
                        }
                if (json_array_append_new(out, item) < 0) {
                        r = -ENOMEM;
                        goto bad;
                }
        }
        *ret = out;
        return 0;
bad:
        json_decref(out);
        return r;
}

int vb_jobspec_exclusions_from_json(const json_t *excl, json_t **ret, char **err)
{
        json_t *out, *v;
        size_t i;

        if (err)
                *err = NULL;
        if (!ret)
                return -EINVAL;
        if (excl && !json_is_null(excl) && !json_is_array(excl))
                return fail(err, -EINVAL, "exclusions: expected an array of patterns, got %s", kind_of(excl));
        if (json_array_size(excl) > VB_JOBSPEC_ITEMS_MAX)
                return fail(err, -EINVAL, "exclusions: %zu patterns, at most %d", json_array_size(excl),
                            VB_JOBSPEC_ITEMS_MAX);
        json_array_foreach(excl, i, v)
        {
                const char *p = json_string_value(v), *why;
                int m;

                if (!p)
                        return fail(err, -EINVAL, "exclusions: pattern %zu: expected a string, got %s", i + 1,
                                    kind_of(v));
                why = strlen(p) != json_string_length(v) ? "it holds a NUL character"
                                                         : bad_text(p, json_string_length(v), VB_JOBSPEC_PATTERN_MAX);
                if (why)
                        return fail(err, -EINVAL, "exclusions: pattern %zu is not usable: %s (1-%d bytes)", i + 1, why,
                                    VB_JOBSPEC_PATTERN_MAX);
                /* fnmatch has no compile step: a pattern it cannot read
                 * fails on any string with a value other than 0 or
                 * FNM_NOMATCH. */
                m = fnmatch(p, "", 0);
                if (m != 0 && m != FNM_NOMATCH)
                        return fail(err, -EINVAL, "exclusions: '%s' is not a pattern", p);
        }
        out = excl && !json_is_null(excl) ? json_copy((json_t *)excl) : json_array();
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

int vb_jobspec_item_format(const json_t *item, char *buf, size_t size)
{
        const char *level = json_string_value(json_object_get(item, "level"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const json_t *id = json_object_get(item, "id");
        char idtext[VB_JOBSPEC_NAME_MAX + 32];
        vb_select_level l = vb_select_level_from_string(level);
        int n;

        if (!buf || l < 0 || (!name && !id))
                return -EINVAL;
        if (json_is_integer(id))
                snprintf(idtext, sizeof(idtext), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        else if (json_is_string(id))
                snprintf(idtext, sizeof(idtext), "%s", json_string_value(id));
        else if (id)
                return -EINVAL;
        if (name && id)
                n = snprintf(buf, size, "%s:%s (id %s)", level_table[l], name, idtext);
        else if (name)
                n = snprintf(buf, size, "%s:%s", level_table[l], name);
        else
                n = snprintf(buf, size, "%s id %s", level_table[l], idtext);
        if (n < 0)
                return -EINVAL;
        return (size_t)n < size ? n : -ENOBUFS;
}

const char *vb_jobspec_excluded(const json_t *exclusions, const char *name, const char *title)
{
        size_t i;
        json_t *v;

        json_array_foreach(exclusions, i, v)
        {
                const char *p = json_string_value(v);

                if (!p)
                        continue;
                if ((name && fnmatch(p, name, 0) == 0) || (title && fnmatch(p, title, 0) == 0))
                        return p;
        }
        return NULL;
}
