/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-render.c -- one response tree rendered as XML or JSON, with the JSON
 * quirks of the real platform (cas-api.md §1.3, §6).
 *
 * DESIGN: the endpoints build a single jansson tree whose keys are element
 * names and whose arrays are repeated elements; both renderings walk that
 * tree, so XML and JSON can never disagree on a field.
 *   XML    <root> with a child per key; "@name" keys become attributes of
 *          their element in legacy mode (older CAS, §3.1 host type) and
 *          ordinary elements in typed mode (the 7.0 Swagger declares them
 *          as elements). An empty list is <list/> (§6).
 *   JSON   no root wrapper. legacy (CAS 2.0 captures, §1.3): every scalar a
 *          string, a one-item list an object, an empty list no key at all
 *          (so an empty <list/> is {}), "@name" keys kept. typed (7.0 Swagger):
 *          scalars typed, lists always arrays, "@" dropped from keys.
 * null values are left out of both.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/util.h"
#include "tests/sim/sim.h"

/* Escaped as JAXB does: &, < and > always, a quote only inside an attribute. */
static void xml_text(FILE *f, const char *s, bool attr)
{
        for (; *s; s++) {
                switch (*s) {
                case '&':
                        fputs("&amp;", f);
                        break;
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '"':
                        fputs(attr ? "&quot;" : "\"", f);
                        break;
                default:
                        fputc(*s, f);
                }
        }
}

static void xml_scalar(FILE *f, json_t *v, bool attr)
{
        char num[64];

        if (json_is_string(v)) {
                xml_text(f, json_string_value(v), attr);
        } else if (json_is_integer(v)) {
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else if (json_is_real(v)) {
                snprintf(num, sizeof(num), "%.2f", json_real_value(v));
                fputs(num, f);
        } else if (json_is_boolean(v)) {
                fputs(json_is_true(v) ? "true" : "false", f);
        }
}

static void xml_element(FILE *f, const char *name, json_t *v, sim_quirks q)
{
        const char *key;
        json_t *child;
        size_t i;
        bool empty = true;

        if (json_is_null(v))
                return;
        if (json_is_array(v)) {
                json_array_foreach(v, i, child) xml_element(f, name, child, q);
                return;
        }
        fprintf(f, "<%s", name);
        if (!json_is_object(v)) {
                fputc('>', f);
                xml_scalar(f, v, false);
                fprintf(f, "</%s>", name);
                return;
        }
        json_object_foreach(v, key, child)
        {
                if (key[0] == '@' && q == SIM_QUIRKS_LEGACY) {
                        fprintf(f, " %s=\"", key + 1);
                        xml_scalar(f, child, true);
                        fputc('"', f);
                } else if (!json_is_null(child) && !(json_is_array(child) && json_array_size(child) == 0)) {
                        empty = false;
                }
        }
        if (empty) {
                fputs("/>", f);
                return;
        }
        fputc('>', f);
        json_object_foreach(v, key, child)
        {
                if (key[0] == '@' && q == SIM_QUIRKS_LEGACY)
                        continue;
                xml_element(f, key[0] == '@' ? key + 1 : key, child, q);
        }
        fprintf(f, "</%s>", name);
}

char *sim_render_xml(const char *root, json_t *tree, sim_quirks q)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        /* JAXB's prologue; S6 strips it, so clients must cope (§3.2). */
        fputs("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>", f);
        xml_element(f, root, tree, q);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static json_t *legacy_scalar(json_t *v)
{
        char num[64];

        if (json_is_string(v))
                return json_incref(v);
        if (json_is_integer(v))
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                snprintf(num, sizeof(num), "%.2f", json_real_value(v));
        else
                snprintf(num, sizeof(num), "%s", json_is_true(v) ? "true" : "false");
        return json_string(num);
}

static json_t *transform(json_t *v, sim_quirks q)
{
        const char *key;
        json_t *child, *out;
        size_t i;

        if (json_is_array(v)) {
                out = json_array();
                json_array_foreach(v, i, child) json_array_append_new(out, transform(child, q));
                return out;
        }
        if (!json_is_object(v))
                return q == SIM_QUIRKS_LEGACY ? legacy_scalar(v) : json_incref(v);
        out = json_object();
        json_object_foreach(v, key, child)
        {
                const char *name = key[0] == '@' && q == SIM_QUIRKS_TYPED ? key + 1 : key;

                if (json_is_null(child))
                        continue;
                if (json_is_array(child) && q == SIM_QUIRKS_LEGACY) {
                        /* The XML-to-JSON mapping of older CAS: it cannot tell a
                         * one-item list from a single child (§1.3). */
                        if (json_array_size(child) == 0)
                                continue;
                        if (json_array_size(child) == 1) {
                                json_object_set_new(out, name, transform(json_array_get(child, 0), q));
                                continue;
                        }
                }
                json_object_set_new(out, name, transform(child, q));
        }
        return out;
}

json_t *sim_render_json_tree(json_t *tree, sim_quirks q)
{
        return transform(tree, q);
}

char *sim_render_json(json_t *tree, sim_quirks q)
{
        json_t *t = transform(tree, q);
        char *s = json_dumps(t, JSON_PRESERVE_ORDER | JSON_COMPACT);

        json_decref(t);
        return s;
}
