/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * doc.c -- parsing and normalisation of CAS REST responses: XML through
 * libxml2, JSON through jansson, both into the same tree; the accessors that
 * hide the quirks of cas-api.md §1.3; the taskMsg and rsResult envelopes
 * (§2); the error headers (§5).
 *
 * DESIGN
 * - The XML parser runs with XML_PARSE_NONET and without XML_PARSE_NOENT,
 *   XML_PARSE_DTDLOAD or XML_PARSE_HUGE, so libxml2's own size and depth
 *   limits hold and no entity is ever substituted or fetched. On top of that
 *   the internalSubset SAX callback stops the parser at a <!DOCTYPE>: no
 *   entity declaration is ever read, so entity expansion attacks cannot
 *   start. CAS does not send DTDs.
 * - JSON is copied into a fresh tree instead of being renamed in place:
 *   jansson cannot rename a key, and deleting and adding keys while iterating
 *   an object is not safe.
 * - A name seen twice in one object (repeated XML children, or an attribute
 *   and a child of the same name, or "@id" next to "id" in JSON) becomes an
 *   array in document order, which is what the list accessors expect.
 */
#include "cas/doc.h"

#include <ctype.h>
#include <iconv.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "daemon/util.h"
#include "daemon/xml.h"

#define TEXT_KEY "#text"

_printf_(2, 3) static int set_err(char **err, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return 0;
        free(*err);
        *err = NULL;
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
        return 0;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
        size_t i = 0;

        while (i < len) {
                unsigned char c = s[i];
                size_t n;
                uint32_t cp;

                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (len - i <= n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

static bool is_blank(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!isspace((unsigned char)s[i]))
                        return false;
        return true;
}

/* Adds value (stolen) under key; a second value for the same key turns the
 * member into an array (see DESIGN). */
static int add_member(json_t *obj, const char *key, json_t *value)
{
        json_t *old = json_object_get(obj, key), *arr;

        if (!value)
                return -ENOMEM;
        if (!old)
                return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
        if (json_is_array(old))
                return json_array_append_new(old, value) < 0 ? -ENOMEM : 0;
        arr = json_array();
        if (!arr || json_array_append(arr, old) < 0 || json_array_append_new(arr, value) < 0 ||
            json_object_set_new(obj, key, arr) < 0) {
                json_decref(arr);
                return -ENOMEM;
        }
        return 0;
}

/* ---- XML ---------------------------------------------------------------- */

struct text_buf {
        char *data;
        size_t len, cap;
};

static int text_append(struct text_buf *t, const char *s)
{
        size_t n = strlen(s);

        if (t->len + n + 1 > t->cap) {
                size_t cap = MAX(t->cap * 2, t->len + n + 1);
                char *p = realloc(t->data, cap);

                if (!p)
                        return -ENOMEM;
                t->data = p;
                t->cap = cap;
        }
        memcpy(t->data + t->len, s, n + 1);
        t->len += n;
        return 0;
}

static int xml_element_to_json(xmlNode *node, unsigned depth, json_t **ret, char **err)
{
        _cleanup_free_ char *text_data = NULL;
        struct text_buf text = {};
        json_t *obj = NULL;
        int r = 0;

        if (depth > CAS_DOC_MAX_DEPTH) {
                set_err(err, "XML nested deeper than %d levels (line %ld)", CAS_DOC_MAX_DEPTH, xmlGetLineNo(node));
                return -EBADMSG;
        }
        /* Attributes are keys without '@' (cas-api.md §1.3: the JSON
         * rendering writes them as "@type"; both end up as "type"). */
        for (xmlAttr *a = node->properties; a; a = a->next) {
                xmlChar *v = xmlNodeListGetString(node->doc, a->children, 1);

                if (!obj && !(obj = json_object()))
                        r = -ENOMEM;
                if (r == 0)
                        r = add_member(obj, (const char *)a->name, json_string(v ? (const char *)v : ""));
                xmlFree(v);
                if (r < 0)
                        goto fail;
        }
        for (xmlNode *c = node->children; c; c = c->next) {
                json_t *child;

                switch (c->type) {
                case XML_ELEMENT_NODE:
                        r = xml_element_to_json(c, depth + 1, &child, err);
                        if (r < 0)
                                goto fail;
                        if (!obj && !(obj = json_object())) {
                                json_decref(child);
                                r = -ENOMEM;
                                goto fail;
                        }
                        r = add_member(obj, (const char *)c->name, child);
                        break;
                case XML_TEXT_NODE:
                case XML_CDATA_SECTION_NODE:
                        r = c->content ? text_append(&text, (const char *)c->content) : 0;
                        break;
                case XML_ENTITY_REF_NODE:
                        /* Cannot happen without a DTD; refuse rather than guess. */
                        set_err(err, "XML entity reference &%s; not accepted (line %ld)", c->name, xmlGetLineNo(c));
                        r = -EBADMSG;
                        break;
                default: /* comments, processing instructions */
                        break;
                }
                if (r < 0)
                        goto fail;
        }
        text_data = text.data;
        if (obj) {
                /* Mixed content: keep the text where the scalar accessors
                 * look for it; indentation between children is dropped. */
                if (text.len > 0 && !is_blank(text.data, text.len)) {
                        r = add_member(obj, TEXT_KEY, json_string(text.data));
                        if (r < 0)
                                goto fail;
                }
                *ret = obj;
                return 0;
        }
        /* A text-only element is a string; an empty one (`<list/>`, or a
         * pretty-printed one with only a line break inside) is "". */
        if (text.len == 0 || (is_blank(text.data, text.len) && strchr(text.data, '\n')))
                *ret = json_string("");
        else
                *ret = json_string(text.data);
        return *ret ? 0 : -ENOMEM;
fail:
        json_decref(obj);
        return r;
}

static int parse_xml(const char *body, size_t len, json_t **ret, char **err)
{
        xmlDocPtr doc = NULL;
        json_t *j = NULL;
        int r = vb_xml_read(body, len, "cas-response.xml", 0, &doc, err);

        if (r < 0)
                return r;
        /* The root element is dropped (see doc.h): its content is the
         * document. */
        r = xml_element_to_json(xmlDocGetRootElement(doc), 1, &j, err);
        if (r == 0 && json_is_string(j) && json_string_length(j) == 0) {
                json_decref(j);
                j = json_object();
                r = j ? 0 : -ENOMEM;
        }
        xmlFreeDoc(doc);
        if (r < 0)
                return r;
        *ret = j;
        return 0;
}

/* ---- JSON --------------------------------------------------------------- */

static int json_normalise(json_t *in, unsigned depth, json_t **ret)
{
        const char *key;
        json_t *v, *out;
        size_t i;
        int r;

        if (depth > CAS_DOC_MAX_DEPTH)
                return -ELOOP;
        if (json_is_object(in)) {
                out = json_object();
                if (!out)
                        return -ENOMEM;
                json_object_foreach(in, key, v)
                {
                        json_t *nv;

                        r = json_normalise(v, depth + 1, &nv);
                        if (r < 0)
                                goto fail;
                        /* cas-api.md §1.3: "@type" is the XML attribute
                         * "type"; drop the first '@' like the vendor's
                         * clients do. */
                        r = add_member(out, key[0] == '@' ? key + 1 : key, nv);
                        if (r < 0)
                                goto fail;
                }
        } else if (json_is_array(in)) {
                out = json_array();
                if (!out)
                        return -ENOMEM;
                json_array_foreach(in, i, v)
                {
                        json_t *nv;

                        r = json_normalise(v, depth + 1, &nv);
                        if (r < 0)
                                goto fail;
                        if (json_array_append_new(out, nv) < 0) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
        } else {
                out = json_incref(in);
        }
        *ret = out;
        return 0;
fail:
        json_decref(out);
        return r;
}

static int parse_json(const char *body, size_t len, json_t **ret, char **err)
{
        json_error_t e;
        json_t *in, *out = NULL;
        int r;

        in = json_loadb(body, len, JSON_DECODE_ANY, &e);
        if (!in) {
                set_err(err, "malformed JSON at line %d column %d: %s", e.line, e.column, e.text);
                return -EBADMSG;
        }
        r = json_normalise(in, 1, &out);
        json_decref(in);
        if (r == -ELOOP) {
                set_err(err, "JSON nested deeper than %d levels", CAS_DOC_MAX_DEPTH);
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        *ret = out;
        return 0;
}

int cas_doc_parse(const char *body, size_t len, const char *content_type, json_t **ret, char **err)
{
        bool ct_json = content_type && strcasestr(content_type, "json");
        size_t skip = 0, end = len;
        json_t *j;

        if ((!body && len > 0) || !ret)
                return -EINVAL;
        if (len > CAS_DOC_MAX_SIZE) {
                set_err(err, "response of %zu bytes is larger than the limit of %u bytes", len, CAS_DOC_MAX_SIZE);
                return -EFBIG;
        }
        if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0)
                skip = 3;
        while (skip < len && isspace((unsigned char)body[skip]))
                skip++;
        while (end > skip && isspace((unsigned char)body[end - 1]))
                end--;

        /* cas-api.md §1.3: lists with no items may come as an empty body. */
        if (skip == end) {
                j = json_object();
                if (!j)
                        return -ENOMEM;
                *ret = j;
                return 0;
        }
        /* The body decides: servers and proxies get Content-Type wrong more
         * often than they send XML that starts with '{'. XML goes to libxml2
         * whole (it handles its own BOM and prologue). */
        if (body[skip] == '<')
                return parse_xml(body, len, ret, err);
        if (body[skip] == '{' || body[skip] == '[' || ct_json)
                return parse_json(body + skip, end - skip, ret, err);

        /* Neither: a bare scalar such as checkCbtBackup's `true` (§3.5) or
         * vm/{id}/status's plain string (§3.8). */
        j = json_loadb(body + skip, end - skip, JSON_DECODE_ANY, NULL);
        if (!j) {
                if (!utf8_valid((const unsigned char *)body + skip, end - skip) || memchr(body + skip, 0, end - skip)) {
                        set_err(err, "response is neither XML nor JSON nor UTF-8 text");
                        return -EBADMSG;
                }
                j = json_stringn(body + skip, end - skip);
                if (!j)
                        return -ENOMEM;
        }
        *ret = j;
        return 0;
}

/* ---- accessors ---------------------------------------------------------- */

static json_t *member(json_t *obj, const char *key)
{
        if (!json_is_object(obj) || !key)
                return NULL;
        return json_object_get(obj, key);
}

/* The scalar a member stands for: itself, or an element's "#text". NULL for
 * missing, null, objects without text and arrays. */
static json_t *scalar_of(json_t *v)
{
        if (json_is_object(v))
                v = json_object_get(v, TEXT_KEY);
        if (!v || json_is_null(v) || json_is_object(v) || json_is_array(v))
                return NULL;
        return v;
}

/* The shortest text that reads back as the same double. */
static void format_double(double d, char *buf, size_t size)
{
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

const char *cas_get_str(json_t *obj, const char *key)
{
        json_t *v = scalar_of(member(obj, key)), *s;
        char buf[64];

        if (!v)
                return NULL;
        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v))
                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                format_double(json_real_value(v), buf, sizeof(buf));
        else
                snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "true" : "false");
        /* Rendered once and stored, so the pointer lives as long as the tree.
         * A number under "#text" cannot happen (XML text is a string). */
        s = json_string(buf);
        if (!s || json_object_set_new(obj, key, s) < 0)
                return NULL;
        return json_string_value(s);
}

/* A string scalar without its surrounding white space, in buf; -ENOENT when
 * blank (an empty XML element means "no value"), -EINVAL when too long. */
static int trimmed(json_t *v, char *buf, size_t size)
{
        const char *s = json_string_value(v);
        size_t len;

        while (isspace((unsigned char)*s))
                s++;
        len = strlen(s);
        while (len > 0 && isspace((unsigned char)s[len - 1]))
                len--;
        if (len == 0)
                return -ENOENT;
        if (len >= size)
                return -EINVAL;
        memcpy(buf, s, len);
        buf[len] = 0;
        return 0;
}

int cas_get_i64(json_t *obj, const char *key, int64_t *ret)
{
        json_t *v = scalar_of(member(obj, key));
        char buf[64], *end;
        long long ll;
        double d;
        int r;

        if (!v)
                return -ENOENT;
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return 0;
        }
        if (json_is_real(v)) {
                d = json_real_value(v);
                if (!isfinite(d) || d != floor(d))
                        return -EINVAL;
                if (d < -0x1p63 || d >= 0x1p63)
                        return -ERANGE;
                *ret = (int64_t)d;
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        /* cas-api.md §1.3: CAS 2.0 JSON and all XML give "6". */
        r = trimmed(v, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        ll = strtoll(buf, &end, 10);
        if (end == buf || *end)
                return -EINVAL;
        if (errno == ERANGE)
                return -ERANGE;
        *ret = ll;
        return 0;
}

int cas_get_bool(json_t *obj, const char *key, bool *ret)
{
        json_t *v = scalar_of(member(obj, key));
        char buf[8];
        int r;

        if (!v)
                return -ENOENT;
        if (json_is_boolean(v)) {
                *ret = json_is_true(v);
                return 0;
        }
        if (json_is_integer(v)) {
                if (json_integer_value(v) != 0 && json_integer_value(v) != 1)
                        return -EINVAL;
                *ret = json_integer_value(v) == 1;
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        /* "completed":"false" (cas-api.md §1.3). */
        r = trimmed(v, buf, sizeof(buf));
        if (r < 0)
                return r;
        if (strcasecmp(buf, "true") == 0 || streq(buf, "1"))
                *ret = true;
        else if (strcasecmp(buf, "false") == 0 || streq(buf, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

int cas_get_double(json_t *obj, const char *key, double *ret)
{
        json_t *v = scalar_of(member(obj, key));
        char buf[128], *end;
        double d;
        int r;

        if (!v)
                return -ENOENT;
        if (json_is_number(v)) {
                *ret = json_number_value(v);
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        r = trimmed(v, buf, sizeof(buf));
        if (r < 0)
                return r;
        /* Decimal only: strtod would also take "inf", "nan" and hex. */
        if (buf[strspn(buf, "0123456789+-.eE")])
                return -EINVAL;
        errno = 0;
        d = strtod(buf, &end);
        if (end == buf || *end)
                return -EINVAL;
        if (errno == ERANGE && isinf(d))
                return -ERANGE;
        if (!isfinite(d))
                return -EINVAL;
        *ret = d;
        return 0;
}

json_t *cas_get_obj(json_t *obj, const char *key)
{
        json_t *v = member(obj, key);

        return json_is_object(v) ? v : NULL;
}

json_t *cas_get_list(json_t *obj, const char *key)
{
        json_t *v, *arr;

        if (!json_is_object(obj) || !key)
                return NULL;
        v = json_object_get(obj, key);
        if (json_is_array(v))
                return v;
        arr = json_array();
        if (!arr)
                return NULL;
        /* cas-api.md §1.3 and §6: one item is an object, none is missing,
         * "" (`<list/>`, `<storage/>`) or null. */
        if (v && !json_is_null(v) && !(json_is_string(v) && is_blank(json_string_value(v), json_string_length(v))) &&
            json_array_append(arr, v) < 0) {
                json_decref(arr);
                return NULL;
        }
        if (json_object_set_new(obj, key, arr) < 0)
                return NULL;
        return arr;
}

/* ---- envelopes ---------------------------------------------------------- */

/* An optional integer member within [min, max]: def when missing. */
static int opt_int(json_t *doc, const char *key, int64_t def, int64_t min, int64_t max, int64_t *ret)
{
        int r = cas_get_i64(doc, key, ret);

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0 || *ret < min || *ret > max)
                return -EBADMSG;
        return 0;
}

/* An optional string member, copied; NULL when missing or empty. */
static int opt_str(json_t *doc, const char *key, char **ret)
{
        const char *s = cas_get_str(doc, key);

        *ret = NULL;
        if (!s || !*s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int cas_task_from_json(json_t *doc, cas_task *ret)
{
        int64_t v;
        int r;

        if (!ret)
                return -EINVAL;
        *ret = (cas_task){ .progress = -1, .result = CAS_TASK_RESULT_NONE, .target_id = -1, .event_type = -1 };
        if (!json_is_object(doc))
                return -EBADMSG;
        /* msgId is a millisecond time stamp beyond 32 bits (§2.1). */
        if (cas_get_i64(doc, "msgId", &ret->msg_id) < 0)
                return -EBADMSG;
        r = cas_get_bool(doc, "completed", &ret->completed);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        if (opt_int(doc, "progress", -1, 0, 100, &v) < 0)
                return -EBADMSG;
        ret->progress = (int)v;
        if (opt_int(doc, "result", CAS_TASK_RESULT_NONE, CAS_TASK_SUCCESS, CAS_TASK_PART_SUCCESS, &v) < 0)
                return -EBADMSG;
        ret->result = (int)v;
        if (opt_int(doc, "targetId", -1, INT64_MIN, INT64_MAX, &ret->target_id) < 0)
                return -EBADMSG;
        if (opt_int(doc, "eventType", -1, INT32_MIN, INT32_MAX, &v) < 0)
                return -EBADMSG;
        ret->event_type = (int)v;
        if ((r = opt_str(doc, "targetName", &ret->target_name)) < 0 || (r = opt_str(doc, "name", &ret->name)) < 0 ||
            (r = opt_str(doc, "detail", &ret->detail)) < 0 || (r = opt_str(doc, "failMsg", &ret->fail_msg)) < 0) {
                cas_task_done(ret);
                return r;
        }
        return 0;
}

void cas_task_done(cas_task *t)
{
        if (!t)
                return;
        free(t->target_name);
        free(t->name);
        free(t->detail);
        free(t->fail_msg);
        t->target_name = t->name = t->detail = t->fail_msg = NULL;
}

int cas_rs_result_from_json(json_t *doc, cas_rs_result *ret)
{
        json_t *data;
        int64_t v;
        int r;

        if (!ret)
                return -EINVAL;
        *ret = (cas_rs_result){};
        if (!json_is_object(doc))
                return -EBADMSG;
        if (cas_get_i64(doc, "state", &v) < 0 || v < INT32_MIN || v > INT32_MAX)
                return -EBADMSG;
        ret->state = (int)v;
        if (opt_int(doc, "errorCode", 0, INT64_MIN, INT64_MAX, &ret->error_code) < 0)
                return -EBADMSG;
        r = opt_str(doc, "message", &ret->message);
        if (r < 0)
                return r;
        data = json_object_get(doc, "data");
        if (data && !json_is_null(data))
                ret->data = json_incref(data);
        return 0;
}

void cas_rs_result_done(cas_rs_result *r)
{
        if (!r)
                return;
        free(r->message);
        r->message = NULL;
        json_decref(r->data);
        r->data = NULL;
}

/* ---- errors ------------------------------------------------------------- */

static const struct {
        int64_t code;
        vb_error error;
        const char *text;
} cas_codes[] = {
        /* cas-api.md §5 */
        { 11, VB_E_FAILED, "unknown error" },
        { 301, VB_E_EXISTS, "host pool already exists" },
        { 304, VB_E_NOT_FOUND, "host pool does not exist" },
        { 401, VB_E_EXISTS, "host already exists" },
        { 402, VB_E_NOT_FOUND, "host does not exist" },
        { 603, VB_E_NOT_FOUND, "vSwitch does not exist" },
        { 1001, VB_E_NOT_FOUND, "VM does not exist" },
        { 1002, VB_E_EXISTS, "VM already exists" },
        { 1121, VB_E_EXISTS, "network policy profile already exists" },
        { 1130, VB_E_EXISTS, "vSwitch already exists" },
        { 1151, VB_E_EXISTS, "ACL already exists" },
};

const char *cas_error_code_describe(int64_t cas_code)
{
        for (size_t i = 0; i < ELEMENTSOF(cas_codes); i++)
                if (cas_codes[i].code == cas_code)
                        return cas_codes[i].text;
        return NULL;
}

static vb_error map_error(int status, int64_t cas_code)
{
        /* The Error-Code of a business error (409) decides; the same numbers
         * are not HTTP statuses (401 is "host already exists"). */
        if (status != 401)
                for (size_t i = 0; i < ELEMENTSOF(cas_codes); i++)
                        if (cas_codes[i].code == cas_code)
                                return cas_codes[i].error;
        if (status >= 200 && status < 300)
                return cas_code < 0 ? VB_OK : VB_E_REFUSED;
        switch (status) {
        case 401:
        case 403: /* older CAS answers an expired session with 403 (§5) */
                return VB_E_AUTH;
        case 404: /* unknown path, or message/{id} of an unknown task (§2.2) */
                return VB_E_NOT_FOUND;
        case 502:
        case 503:
        case 504:
                return VB_E_NETWORK;
        }
        if (status >= 400 && status < 500)
                return VB_E_REFUSED;
        if (status >= 500 && status < 600)
                return VB_E_FAILED;
        return VB_E_PROTOCOL;
}

/* The charset named by a `charset` header: "GBK" or "text/xml;charset=GBK". */
static int charset_name(const char *header, char *buf, size_t size)
{
        const char *p = header ? strcasestr(header, "charset=") : NULL;
        size_t len;

        p = p ? p + strlen("charset=") : header;
        if (!p)
                return -ENOENT;
        p += strspn(p, " \t\"'");
        len = strcspn(p, " \t\"';,");
        if (len == 0 || len >= size)
                return -ENOENT;
        memcpy(buf, p, len);
        buf[len] = 0;
        return 0;
}

/* in (NUL-terminated) converted from charset `from` to UTF-8, or NULL. */
static char *iconv_to_utf8(const char *in, const char *from)
{
        size_t in_left = strlen(in), out_size = in_left * 4 + 4, out_left = out_size - 1;
        _cleanup_free_ char *out = malloc(out_size);
        char *ip = (char *)in, *op = out;
        iconv_t cd;
        bool ok;

        if (!out)
                return NULL;
        cd = iconv_open("UTF-8", from);
        if (cd == (iconv_t)-1)
                return NULL;
        ok = iconv(cd, &ip, &in_left, &op, &out_left) != (size_t)-1 &&
             iconv(cd, NULL, NULL, &op, &out_left) != (size_t)-1;
        iconv_close(cd);
        if (!ok)
                return NULL;
        *op = 0;
        if (!utf8_valid((const unsigned char *)out, (size_t)(op - out)))
                return NULL;
        return TAKE_PTR(out);
}

/* cas-api.md §5: Error-Message may be GBK bytes, with or without a charset
 * header naming them. GB18030 is a superset of GBK and GB2312. */
static char *decode_message(const char *in, const char *charset_header)
{
        char cs[64];
        char *out;
        size_t len = strlen(in);

        if (charset_name(charset_header, cs, sizeof(cs)) == 0 && strcasecmp(cs, "utf-8") != 0 &&
            strcasecmp(cs, "utf8") != 0) {
                bool gbk = strcasecmp(cs, "gbk") == 0 || strcasecmp(cs, "gb2312") == 0 || strcasecmp(cs, "cp936") == 0;

                out = iconv_to_utf8(in, gbk ? "GB18030" : cs);
                if (out)
                        return out;
        }
        if (utf8_valid((const unsigned char *)in, len))
                return strdup(in);
        out = iconv_to_utf8(in, "GB18030");
        if (out)
                return out;
        /* Undecodable: keep the ASCII, mark the rest. */
        out = strdup(in);
        if (out)
                for (char *p = out; *p; p++)
                        if ((unsigned char)*p >= 0x80)
                                *p = '?';
        return out;
}

int cas_error_from_headers(int http_status, const char *error_code, const char *error_message, const char *charset,
                           cas_error *ret)
{
        _cleanup_free_ char *msg = NULL;
        const char *known;
        char *end;

        if (!ret)
                return -EINVAL;
        *ret = (cas_error){ .http_status = http_status, .cas_code = -1 };
        if (error_code) {
                long long ll;

                errno = 0;
                ll = strtoll(error_code, &end, 10);
                while (isspace((unsigned char)*end))
                        end++;
                if (end != error_code && !*end && errno == 0 && ll >= 0)
                        ret->cas_code = ll;
        }
        ret->code = map_error(http_status, ret->cas_code);

        if (error_message && !is_blank(error_message, strlen(error_message))) {
                size_t len;

                msg = decode_message(error_message, charset);
                if (!msg)
                        return -ENOMEM;
                /* One line for the logs. */
                for (char *p = msg; *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                *p = ' ';
                len = strlen(msg);
                while (len > 0 && msg[len - 1] == ' ')
                        msg[--len] = 0;
        } else if ((known = cas_error_code_describe(ret->cas_code))) {
                msg = strdup(known);
        } else if (ret->cas_code >= 0) {
                if (asprintf(&msg, "CAS error %" PRId64 " (HTTP status %d)", ret->cas_code, http_status) < 0)
                        msg = NULL;
        } else if (asprintf(&msg, "HTTP status %d", http_status) < 0) {
                msg = NULL;
        }
        if (!msg)
                return -ENOMEM;
        ret->message = TAKE_PTR(msg);
        return 0;
}

void cas_error_done(cas_error *e)
{
        if (!e)
                return;
        free(e->message);
        e->message = NULL;
}

/* ---- request bodies ---- */

static bool xml_name_ok(const char *s)
{
        if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
                return false;
        for (; *s; s++)
                if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
                        return false;
        return true;
}

static int render_member(xmlNodePtr parent, const char *name, json_t *v, int depth);

static int render_object(xmlNodePtr node, json_t *obj, int depth)
{
        const char *k;
        json_t *v;

        if (depth > CAS_DOC_MAX_DEPTH)
                return -EINVAL;
        json_object_foreach(obj, k, v)
        {
                int r = render_member(node, k, v, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int render_member(xmlNodePtr parent, const char *name, json_t *v, int depth)
{
        char num[64];
        const char *text;
        xmlNodePtr n;

        if (!xml_name_ok(name))
                return -EINVAL;
        switch (json_typeof(v)) {
        case JSON_NULL:
                return 0;
        case JSON_ARRAY: {
                size_t i;
                json_t *item;

                json_array_foreach(v, i, item)
                {
                        int r = render_member(parent, name, item, depth + 1);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        case JSON_OBJECT:
                n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);
                return n ? render_object(n, v, depth) : -ENOMEM;
        case JSON_STRING:
                text = json_string_value(v);
                break;
        case JSON_INTEGER:
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                text = num;
                break;
        case JSON_REAL:
                snprintf(num, sizeof(num), "%.17g", json_real_value(v));
                text = num;
                break;
        default:
                text = json_is_true(v) ? "true" : "false";
                break;
        }
        /* xmlNewTextChild escapes the text (xmlNewChild would not). */
        return xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text) ? 0 : -ENOMEM;
}

int cas_doc_render(json_t *obj, const char *root, bool xml, char **ret)
{
        xmlDocPtr doc;
        xmlNodePtr top;
        xmlChar *buf = NULL;
        int len = 0, r;

        if (!json_is_object(obj) || !ret)
                return -EINVAL;
        if (!xml) {
                *ret = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
                return *ret ? 0 : -ENOMEM;
        }
        if (!root || !xml_name_ok(root))
                return -EINVAL;
        doc = xmlNewDoc(BAD_CAST "1.0");
        top = doc ? xmlNewDocNode(doc, NULL, BAD_CAST root, NULL) : NULL;
        if (!top) {
                xmlFreeDoc(doc);
                return -ENOMEM;
        }
        xmlDocSetRootElement(doc, top);
        r = render_object(top, obj, 0);
        if (r >= 0) {
                xmlDocDumpMemoryEnc(doc, &buf, &len, "UTF-8");
                if (!buf)
                        r = -ENOMEM;
        }
        xmlFreeDoc(doc);
        if (r < 0)
                return r;
        *ret = strndup((const char *)buf, (size_t)len);
        xmlFree(buf);
        return *ret ? 0 : -ENOMEM;
}
