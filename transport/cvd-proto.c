/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-proto.c -- the codec of the CVD-style control protocol (see
 * cvd-proto.h and docs/cvd-protocol.md).
 *
 * Field checks go through a few helpers that name the message and the field
 * in their message ("disk.open: \"vm\" is missing"), so that whoever meets a
 * malformed message, a server operator or a client author, learns exactly
 * what to fix.
 */
#include "transport/cvd-proto.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/util.h"

#define USER_MAX 256
#define PASSWORD_MAX 1024
#define HANDLE_MAX 64
#define HOST_MAX 255
#define EXPORT_NAME_MAX 4096 /* the NBD protocol's limit */
#define TEXT_MAX 4096        /* other free-form strings (server, session, format, messages) */
#define VERSIONS_MAX 64
#define SALT_MIN 8
#define SALT_MAX 64
#define KEY_LEN 32

_printf_(2, 3) static void set_why(tp_cvd_why *why, const char *fmt, ...)
{
        va_list ap;

        if (!why)
                return;
        va_start(ap, fmt);
        vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
        va_end(ap);
}

/* --- frames ------------------------------------------------------------- */

int tp_cvd_frame_encode(json_t *j, char **ret_buf, size_t *ret_len)
{
        _cleanup_free_ char *text = NULL;
        char *buf;
        size_t n;

        if (!json_is_object(j) || !ret_buf || !ret_len)
                return -EINVAL;
        text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        n = strlen(text);
        if (n > TP_CVD_FRAME_MAX)
                return -E2BIG;
        buf = malloc(4 + n);
        if (!buf)
                return -ENOMEM;
        buf[0] = (char)(n >> 24);
        buf[1] = (char)(n >> 16);
        buf[2] = (char)(n >> 8);
        buf[3] = (char)n;
        memcpy(buf + 4, text, n);
        *ret_buf = buf;
        *ret_len = 4 + n;
        return 0;
}

_printf_(2, 3) static int decoder_fail(tp_cvd_decoder *d, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(d->why.msg, sizeof(d->why.msg), fmt, ap);
        va_end(ap);
        free(d->body);
        d->body = NULL;
        d->failed = true;
        return -EBADMSG;
}

int tp_cvd_decoder_feed(tp_cvd_decoder *d, const void *buf, size_t len, size_t *ret_used, json_t **ret_msg)
{
        const uint8_t *p = buf;
        json_error_t jerr;
        size_t at = 0, n;
        json_t *j;

        *ret_used = 0;
        *ret_msg = NULL;
        if (d->failed)
                return -EBADMSG;
        while (d->head_len < 4) {
                if (at == len)
                        goto more;
                d->head[d->head_len++] = p[at++];
                if (d->head_len < 4)
                        continue;
                d->len = (uint32_t)d->head[0] << 24 | (uint32_t)d->head[1] << 16 | (uint32_t)d->head[2] << 8 |
                         d->head[3];
                if (d->len == 0 || d->len > TP_CVD_FRAME_MAX) {
                        *ret_used = at;
                        return decoder_fail(d, "frame length %" PRIu32 " is outside 1..%u", d->len, TP_CVD_FRAME_MAX);
                }
                d->body = malloc(d->len);
                if (!d->body) {
                        d->head_len = 3; /* the length byte is consumed again on the next call */
                        *ret_used = at - 1;
                        return -ENOMEM;
                }
                d->have = 0;
        }
        n = MIN(len - at, (size_t)(d->len - d->have));
        if (n > 0)
                memcpy(d->body + d->have, p + at, n);
        at += n;
        d->have += n;
        if (d->have < d->len)
                goto more;
        *ret_used = at;

        j = json_loadb(d->body, d->len, JSON_REJECT_DUPLICATES, &jerr);
        free(d->body);
        d->body = NULL;
        d->head_len = 0;
        d->have = 0;
        if (!j)
                return decoder_fail(d, "frame is not valid JSON (line %d, column %d): %s", jerr.line, jerr.column,
                                    jerr.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return decoder_fail(d, "frame holds a JSON array, not an object");
        }
        *ret_msg = j;
        return 1;
more:
        *ret_used = at;
        return 0;
}

size_t tp_cvd_decoder_pending(const tp_cvd_decoder *d)
{
        return d->head_len + d->have;
}

void tp_cvd_decoder_reset(tp_cvd_decoder *d)
{
        free(d->body);
        *d = (tp_cvd_decoder)TP_CVD_DECODER_INIT;
}

/* --- names and error codes ----------------------------------------------- */

bool tp_cvd_name_valid(const char *s)
{
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        /* No leading '.' or '-': names end up on QEMU tools' command lines and in file names. */
        if (n == 0 || n > TP_CVD_NAME_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool tp_cvd_path_valid(const char *s)
{
        return s && s[0] == '/' && strlen(s) <= TP_CVD_PATH_MAX;
}

static const char *const code_names[_TP_CVD_E_MAX] = {
        [TP_CVD_E_PROTOCOL] = "protocol", [TP_CVD_E_VERSION] = "version",     [TP_CVD_E_AUTH] = "auth",
        [TP_CVD_E_DENIED] = "denied",     [TP_CVD_E_NOT_FOUND] = "not-found", [TP_CVD_E_EXISTS] = "exists",
        [TP_CVD_E_BUSY] = "busy",         [TP_CVD_E_INVALID] = "invalid",     [TP_CVD_E_IO] = "io",
        [TP_CVD_E_INTERNAL] = "internal",
};

const char *tp_cvd_code_to_string(tp_cvd_code c)
{
        if ((int)c < 0 || c >= _TP_CVD_E_MAX)
                return NULL;
        return code_names[c];
}

tp_cvd_code tp_cvd_code_from_string(const char *s)
{
        for (int i = 0; s && i < _TP_CVD_E_MAX; i++)
                if (streq(s, code_names[i]))
                        return (tp_cvd_code)i;
        return _TP_CVD_E_INVALID;
}

vb_error tp_cvd_error_to_vb(const char *code)
{
        switch (tp_cvd_code_from_string(code)) {
        case TP_CVD_E_PROTOCOL:
        case TP_CVD_E_VERSION:
                return VB_E_PROTOCOL;
        case TP_CVD_E_AUTH:
                return VB_E_AUTH;
        case TP_CVD_E_DENIED:
        case TP_CVD_E_BUSY:
                return VB_E_REFUSED;
        case TP_CVD_E_NOT_FOUND:
                return VB_E_NOT_FOUND;
        case TP_CVD_E_EXISTS:
                return VB_E_EXISTS;
        case TP_CVD_E_INVALID:
                return VB_E_USAGE;
        case TP_CVD_E_IO:
                return VB_E_SOURCE;
        default:
                return VB_E_FAILED;
        }
}

tp_cvd_code tp_cvd_code_from_errno(int r)
{
        switch (abs(r)) {
        case EACCES:
        case EPERM:
                return TP_CVD_E_DENIED;
        case ENOENT:
                return TP_CVD_E_NOT_FOUND;
        case EEXIST:
                return TP_CVD_E_EXISTS;
        case EBUSY:
                return TP_CVD_E_BUSY;
        case EINVAL:
                return TP_CVD_E_INVALID;
        case EIO:
                return TP_CVD_E_IO;
        default:
                return TP_CVD_E_INTERNAL;
        }
}

static const char *const op_names[_TP_CVD_OP_MAX] = {
        [TP_CVD_OP_HELLO] = "hello",
        [TP_CVD_OP_DISK_OPEN] = "disk.open",
        [TP_CVD_OP_DISK_CLOSE] = "disk.close",
        [TP_CVD_OP_BITMAP_CREATE] = "bitmap.create",
        [TP_CVD_OP_BITMAP_REMOVE] = "bitmap.remove",
        [TP_CVD_OP_BITMAP_LIST] = "bitmap.list",
        [TP_CVD_OP_PING] = "ping",
};

const char *tp_cvd_op_to_string(tp_cvd_op op)
{
        if ((int)op < 0 || op >= _TP_CVD_OP_MAX)
                return NULL;
        return op_names[op];
}

tp_cvd_op tp_cvd_op_from_string(const char *s)
{
        for (int i = 0; s && i < _TP_CVD_OP_MAX; i++)
                if (streq(s, op_names[i]))
                        return (tp_cvd_op)i;
        return _TP_CVD_OP_INVALID;
}

/* --- field helpers ------------------------------------------------------ */

/* Each returns 0 or -EBADMSG with why naming what ("disk.open") and key. */

enum {
        OPTIONAL = 1 << 0, /* may be missing (then NULL / the default) */
        NULLABLE = 1 << 1, /* may be null (then NULL) */
        NONEMPTY = 1 << 2,
};

static int field_string(json_t *o, const char *what, const char *key, unsigned flags, size_t max, const char **ret,
                        tp_cvd_why *why)
{
        json_t *v = json_object_get(o, key);
        const char *s;

        if (!v || json_is_null(v)) {
                if ((!v && (flags & OPTIONAL)) || (v && (flags & NULLABLE))) {
                        *ret = NULL;
                        return 0;
                }
                set_why(why, "%s: \"%s\" is %s", what, key, v ? "null" : "missing");
                return -EBADMSG;
        }
        if (!json_is_string(v)) {
                set_why(why, "%s: \"%s\" must be a string", what, key);
                return -EBADMSG;
        }
        s = json_string_value(v);
        if ((flags & NONEMPTY) && !s[0]) {
                set_why(why, "%s: \"%s\" is empty", what, key);
                return -EBADMSG;
        }
        if (json_string_length(v) > max) {
                set_why(why, "%s: \"%s\" is longer than %zu bytes", what, key, max);
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}

static int field_name(json_t *o, const char *what, const char *key, unsigned flags, const char **ret, tp_cvd_why *why)
{
        const char *s;
        int r = field_string(o, what, key, flags, SIZE_MAX, &s, why);

        if (r < 0)
                return r;
        if (s && !tp_cvd_name_valid(s)) {
                set_why(why,
                        "%s: \"%s\" '%.64s%s' is not a name (1-%d letters, digits, '.', '_', '-'; no leading '.' or "
                        "'-')",
                        what, key, s, strlen(s) > 64 ? "..." : "", TP_CVD_NAME_MAX);
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}

static int field_path(json_t *o, const char *what, const char *key, const char **ret, tp_cvd_why *why)
{
        const char *s;
        int r = field_string(o, what, key, 0, SIZE_MAX, &s, why);

        if (r < 0)
                return r;
        if (!tp_cvd_path_valid(s)) {
                set_why(why, "%s: \"%s\" must be an absolute path of at most %d bytes", what, key, TP_CVD_PATH_MAX);
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}

static int field_int(json_t *o, const char *what, const char *key, int64_t min, int64_t max, int64_t *ret,
                     tp_cvd_why *why)
{
        json_t *v = json_object_get(o, key);
        int64_t x;

        if (!v) {
                set_why(why, "%s: \"%s\" is missing", what, key);
                return -EBADMSG;
        }
        if (!json_is_integer(v)) {
                set_why(why, "%s: \"%s\" must be an integer", what, key);
                return -EBADMSG;
        }
        x = json_integer_value(v);
        if (x < min || x > max) {
                set_why(why, "%s: \"%s\" %" PRId64 " is outside %" PRId64 "..%" PRId64, what, key, x, min, max);
                return -EBADMSG;
        }
        *ret = x;
        return 0;
}

static int field_bool(json_t *o, const char *what, const char *key, bool *ret, tp_cvd_why *why)
{
        json_t *v = json_object_get(o, key);

        if (!v) {
                set_why(why, "%s: \"%s\" is missing", what, key);
                return -EBADMSG;
        }
        if (!json_is_boolean(v)) {
                set_why(why, "%s: \"%s\" must be true or false", what, key);
                return -EBADMSG;
        }
        *ret = json_is_true(v);
        return 0;
}

static bool is_hex(const char *s, size_t n)
{
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
                        return false;
        return true;
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes exactly 2 * n hex digits of s into n bytes. */
static int hex_decode(const char *s, size_t digits, uint8_t *out, size_t n)
{
        if (digits != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[b[i] >> 4];
                out[2 * i + 1] = digits[b[i] & 15];
        }
        out[2 * n] = 0;
}

/* --- requests ----------------------------------------------------------- */

static int parse_hello(json_t *j, tp_cvd_hello_req *h, tp_cvd_why *why)
{
        const char *method;
        json_t *auth;
        int64_t v;
        int r;

        r = field_int(j, "hello", "version", 1, UINT32_MAX, &v, why);
        if (r < 0)
                return r;
        h->version = (uint32_t)v;
        r = field_string(j, "hello", "client", OPTIONAL | NULLABLE, TEXT_MAX, &h->client, why);
        if (r < 0)
                return r;
        auth = json_object_get(j, "auth");
        if (!json_is_object(auth)) {
                set_why(why, "hello: \"auth\" must be an object");
                return -EBADMSG;
        }
        r = field_string(auth, "hello: auth", "method", 0, TEXT_MAX, &method, why);
        if (r < 0)
                return r;
        if (streq(method, "token")) {
                h->method = TP_CVD_AUTH_TOKEN;
                r = field_string(auth, "hello: auth", "proof", 0, TEXT_MAX, &h->proof, why);
                if (r < 0)
                        return r;
                if (!is_hex(h->proof, TP_CVD_PROOF_HEX)) {
                        set_why(why, "hello: auth: \"proof\" must be %d hex digits", TP_CVD_PROOF_HEX);
                        return -EBADMSG;
                }
        } else if (streq(method, "password")) {
                h->method = TP_CVD_AUTH_PASSWORD;
                r = field_string(auth, "hello: auth", "user", NONEMPTY, USER_MAX, &h->user, why);
                if (r < 0)
                        return r;
                if (strchr(h->user, ':')) {
                        set_why(why, "hello: auth: \"user\" must not contain ':'");
                        return -EBADMSG;
                }
                r = field_string(auth, "hello: auth", "password", 0, PASSWORD_MAX, &h->password, why);
                if (r < 0)
                        return r;
        } else {
                set_why(why, "hello: auth: unknown method '%.64s' (token or password)", method);
                return -EBADMSG;
        }
        return 0;
}

static int parse_open(json_t *j, tp_cvd_open_req *o, tp_cvd_why *why)
{
        const char *mode;
        int r;

        r = field_name(j, "disk.open", "vm", 0, &o->vm, why);
        if (r >= 0)
                r = field_path(j, "disk.open", "path", &o->path, why);
        if (r >= 0)
                r = field_name(j, "disk.open", "snapshot", OPTIONAL | NULLABLE, &o->snapshot, why);
        if (r >= 0)
                r = field_string(j, "disk.open", "mode", OPTIONAL, TEXT_MAX, &mode, why);
        if (r < 0)
                return r;
        if (!mode || streq(mode, "read"))
                o->write = false;
        else if (streq(mode, "read-write"))
                o->write = true;
        else {
                set_why(why, "disk.open: \"mode\" must be \"read\" or \"read-write\"");
                return -EBADMSG;
        }
        r = field_name(j, "disk.open", "since", OPTIONAL | NULLABLE, &o->since, why);
        if (r >= 0)
                r = field_name(j, "disk.open", "checkpoint", OPTIONAL | NULLABLE, &o->checkpoint, why);
        if (r < 0)
                return r;
        if (o->write && o->snapshot) {
                set_why(why, "disk.open: a snapshot cannot be opened read-write");
                return -EBADMSG;
        }
        if (o->write && o->since) {
                set_why(why, "disk.open: \"since\" needs mode \"read\" (a read-write export offers no changes)");
                return -EBADMSG;
        }
        return 0;
}

static int parse_bitmap(json_t *j, const char *what, bool named, tp_cvd_bitmap_req *b, tp_cvd_why *why)
{
        int r;

        r = field_name(j, what, "vm", 0, &b->vm, why);
        if (r >= 0)
                r = field_path(j, what, "path", &b->path, why);
        if (r >= 0 && named)
                r = field_name(j, what, "name", 0, &b->name, why);
        if (!named)
                b->name = NULL;
        return r;
}

int tp_cvd_request_parse(json_t *j, tp_cvd_request *ret, tp_cvd_why *why)
{
        tp_cvd_request rq = { 0 };
        json_t *id, *op;
        int r = 0;

        if (!ret)
                return -EINVAL;
        if (!json_is_object(j)) {
                set_why(why, "a request must be a JSON object");
                return -EPROTO;
        }
        id = json_object_get(j, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 1 || json_integer_value(id) > TP_CVD_ID_MAX) {
                set_why(why, "a request needs an \"id\", an integer 1..%lld", TP_CVD_ID_MAX);
                return -EPROTO;
        }
        op = json_object_get(j, "op");
        if (!json_is_string(op)) {
                set_why(why, "a request needs an \"op\", a string");
                return -EPROTO;
        }
        rq.id = (uint64_t)json_integer_value(id);
        rq.op = tp_cvd_op_from_string(json_string_value(op));
        switch (rq.op) {
        case TP_CVD_OP_HELLO:
                r = parse_hello(j, &rq.hello, why);
                break;
        case TP_CVD_OP_DISK_OPEN:
                r = parse_open(j, &rq.open, why);
                break;
        case TP_CVD_OP_DISK_CLOSE:
                r = field_string(j, "disk.close", "handle", NONEMPTY, HANDLE_MAX, &rq.handle, why);
                break;
        case TP_CVD_OP_BITMAP_CREATE:
        case TP_CVD_OP_BITMAP_REMOVE:
                r = parse_bitmap(j, op_names[rq.op], true, &rq.bitmap, why);
                break;
        case TP_CVD_OP_BITMAP_LIST:
                r = parse_bitmap(j, op_names[rq.op], false, &rq.bitmap, why);
                break;
        case TP_CVD_OP_PING:
                break;
        default:
                set_why(why, "unknown op '%.64s'", json_string_value(op));
                r = -EBADMSG;
        }
        if (r < 0) {
                ret->id = rq.id;
                return -EINVAL;
        }
        *ret = rq;
        return 0;
}

static int set_name_or_null(json_t *j, const char *key, const char *s)
{
        return json_object_set_new(j, key, s ? json_string(s) : json_null());
}

json_t *tp_cvd_request_to_json(const tp_cvd_request *rq)
{
        const char *op = rq ? tp_cvd_op_to_string(rq->op) : NULL;
        json_t *j;
        int r = 0;

        if (!op)
                return NULL;
        j = json_pack("{s:I, s:s}", "id", (json_int_t)rq->id, "op", op);
        if (!j)
                return NULL;
        switch (rq->op) {
        case TP_CVD_OP_HELLO: {
                const tp_cvd_hello_req *h = &rq->hello;
                json_t *auth = h->method == TP_CVD_AUTH_TOKEN
                                       ? json_pack("{s:s, s:s}", "method", "token", "proof", h->proof)
                                       : json_pack("{s:s, s:s, s:s}", "method", "password", "user", h->user, "password",
                                                   h->password);
                r |= json_object_set_new(j, "version", json_integer(h->version));
                if (h->client)
                        r |= json_object_set_new(j, "client", json_string(h->client));
                r |= json_object_set_new(j, "auth", auth);
                break;
        }
        case TP_CVD_OP_DISK_OPEN: {
                const tp_cvd_open_req *o = &rq->open;
                r |= json_object_set_new(j, "vm", json_string(o->vm));
                r |= json_object_set_new(j, "path", json_string(o->path));
                r |= set_name_or_null(j, "snapshot", o->snapshot);
                r |= json_object_set_new(j, "mode", json_string(o->write ? "read-write" : "read"));
                r |= set_name_or_null(j, "since", o->since);
                r |= set_name_or_null(j, "checkpoint", o->checkpoint);
                break;
        }
        case TP_CVD_OP_DISK_CLOSE:
                r |= json_object_set_new(j, "handle", json_string(rq->handle));
                break;
        case TP_CVD_OP_BITMAP_CREATE:
        case TP_CVD_OP_BITMAP_REMOVE:
        case TP_CVD_OP_BITMAP_LIST:
                r |= json_object_set_new(j, "vm", json_string(rq->bitmap.vm));
                r |= json_object_set_new(j, "path", json_string(rq->bitmap.path));
                if (rq->op != TP_CVD_OP_BITMAP_LIST)
                        r |= json_object_set_new(j, "name", json_string(rq->bitmap.name));
                break;
        default:
                break;
        }
        if (r) {
                json_decref(j);
                return NULL;
        }
        return j;
}

/* --- server messages ---------------------------------------------------- */

json_t *tp_cvd_welcome_new(const char *nonce, bool token, bool password, bool tls)
{
        json_t *auth = json_array();

        if (!auth || !nonce)
                goto fail;
        if ((token && json_array_append_new(auth, json_string("token")) < 0) ||
            (password && json_array_append_new(auth, json_string("password")) < 0))
                goto fail;
        return json_pack("{s:s, s:s, s:[i], s:s, s:o, s:b}", "op", "welcome", "service", TP_CVD_SERVICE, "versions",
                         TP_CVD_VERSION, "nonce", nonce, "auth", auth, "tls", tls);
fail:
        json_decref(auth);
        return NULL;
}

int tp_cvd_welcome_parse(json_t *j, tp_cvd_welcome *ret, tp_cvd_why *why)
{
        tp_cvd_welcome w = { 0 };
        const char *op, *nonce;
        json_t *versions, *auth, *v;
        size_t i;
        int r;

        r = field_string(j, "welcome", "op", 0, TEXT_MAX, &op, why);
        if (r < 0)
                return r;
        if (!streq(op, "welcome")) {
                set_why(why, "expected the welcome, got op '%.64s'", op);
                return -EBADMSG;
        }
        r = field_string(j, "welcome", "service", 0, TEXT_MAX, &w.service, why);
        if (r < 0)
                return r;
        versions = json_object_get(j, "versions");
        if (!json_is_array(versions) || json_array_size(versions) == 0 || json_array_size(versions) > VERSIONS_MAX) {
                set_why(why, "welcome: \"versions\" must be an array of 1-%d integers", VERSIONS_MAX);
                return -EBADMSG;
        }
        json_array_foreach(versions, i, v)
        {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > UINT32_MAX) {
                        set_why(why, "welcome: \"versions\" must hold positive integers");
                        return -EBADMSG;
                }
                w.v1 |= json_integer_value(v) == TP_CVD_VERSION;
                w.version_max = MAX(w.version_max, (uint32_t)json_integer_value(v));
        }
        r = field_string(j, "welcome", "nonce", 0, TEXT_MAX, &nonce, why);
        if (r < 0)
                return r;
        if (!is_hex(nonce, TP_CVD_NONCE_HEX)) {
                set_why(why, "welcome: \"nonce\" must be %d hex digits", TP_CVD_NONCE_HEX);
                return -EBADMSG;
        }
        memcpy(w.nonce, nonce, TP_CVD_NONCE_HEX + 1);
        auth = json_object_get(j, "auth");
        if (!json_is_array(auth)) {
                set_why(why, "welcome: \"auth\" must be an array of strings");
                return -EBADMSG;
        }
        json_array_foreach(auth, i, v)
        {
                if (!json_is_string(v)) {
                        set_why(why, "welcome: \"auth\" must be an array of strings");
                        return -EBADMSG;
                }
                w.auth_token |= streq(json_string_value(v), "token");
                w.auth_password |= streq(json_string_value(v), "password");
        }
        r = field_bool(j, "welcome", "tls", &w.tls, why);
        if (r < 0)
                return r;
        *ret = w;
        return 0;
}

int tp_cvd_reply_parse(json_t *j, tp_cvd_reply *ret, tp_cvd_why *why)
{
        tp_cvd_reply rp = { 0 };
        json_t *err;
        int64_t id;
        int r;

        if (!json_is_object(j)) {
                set_why(why, "a reply must be a JSON object");
                return -EBADMSG;
        }
        r = field_int(j, "reply", "id", 0, TP_CVD_ID_MAX, &id, why);
        if (r >= 0)
                r = field_bool(j, "reply", "ok", &rp.ok, why);
        if (r < 0)
                return r;
        rp.id = (uint64_t)id;
        if (!rp.ok) {
                err = json_object_get(j, "error");
                if (!json_is_object(err)) {
                        set_why(why, "reply: a failed reply needs an \"error\" object");
                        return -EBADMSG;
                }
                r = field_string(err, "reply: error", "code", NONEMPTY, TEXT_MAX, &rp.code, why);
                if (r >= 0)
                        r = field_string(err, "reply: error", "message", 0, TEXT_MAX, &rp.message, why);
                if (r < 0)
                        return r;
        }
        *ret = rp;
        return 0;
}

json_t *tp_cvd_reply_ok_new(uint64_t id)
{
        return json_pack("{s:I, s:b}", "id", (json_int_t)id, "ok", true);
}

json_t *tp_cvd_reply_error_new(uint64_t id, tp_cvd_code code, const char *message)
{
        const char *c = tp_cvd_code_to_string(code);

        return json_pack("{s:I, s:b, s:{s:s, s:s}}", "id", (json_int_t)id, "ok", false, "error", "code",
                         c ? c : "internal", "message", message ? message : "");
}

int tp_cvd_hello_reply_parse(json_t *j, tp_cvd_hello_reply *ret, tp_cvd_why *why)
{
        tp_cvd_hello_reply h = { 0 };
        int64_t version, timeout;
        int r;

        r = field_int(j, "hello reply", "version", 1, UINT32_MAX, &version, why);
        if (r >= 0)
                r = field_string(j, "hello reply", "server", 0, TEXT_MAX, &h.server, why);
        if (r >= 0)
                r = field_string(j, "hello reply", "session", 0, TEXT_MAX, &h.session, why);
        if (r >= 0)
                r = field_int(j, "hello reply", "timeout", 1, UINT32_MAX, &timeout, why);
        if (r < 0)
                return r;
        h.version = (uint32_t)version;
        h.timeout = (uint32_t)timeout;
        *ret = h;
        return 0;
}

json_t *tp_cvd_hello_reply_new(uint64_t id, const tp_cvd_hello_reply *h)
{
        json_t *j = tp_cvd_reply_ok_new(id);

        if (j && (json_object_set_new(j, "version", json_integer(h->version)) < 0 ||
                  json_object_set_new(j, "server", json_string(h->server)) < 0 ||
                  json_object_set_new(j, "session", json_string(h->session)) < 0 ||
                  json_object_set_new(j, "timeout", json_integer(h->timeout)) < 0)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

int tp_cvd_open_reply_parse(json_t *j, tp_cvd_open_reply *ret, tp_cvd_why *why)
{
        static const char what[] = "disk.open reply";
        tp_cvd_open_reply o = { 0 };
        int64_t port, size, cluster, gran;
        json_t *ctx, *v;
        size_t i;
        int r;

        r = field_string(j, what, "handle", NONEMPTY, HANDLE_MAX, &o.handle, why);
        if (r >= 0)
                r = field_string(j, what, "host", NONEMPTY, HOST_MAX, &o.host, why);
        if (r >= 0)
                r = field_int(j, what, "port", 1, 65535, &port, why);
        if (r >= 0)
                r = field_string(j, what, "export", 0, EXPORT_NAME_MAX, &o.export_name, why);
        if (r >= 0)
                r = field_int(j, what, "size", 0, INT64_MAX, &size, why);
        if (r >= 0)
                r = field_string(j, what, "format", NONEMPTY, TEXT_MAX, &o.format, why);
        if (r >= 0)
                r = field_int(j, what, "cluster_size", 0, UINT32_MAX, &cluster, why);
        if (r >= 0)
                r = field_int(j, what, "granularity", 0, UINT32_MAX, &gran, why);
        if (r >= 0)
                r = field_bool(j, what, "running", &o.running, why);
        if (r < 0)
                return r;
        ctx = json_object_get(j, "contexts");
        if (!json_is_array(ctx) || json_array_size(ctx) > TP_CVD_CONTEXTS_MAX) {
                set_why(why, "%s: \"contexts\" must be an array of at most %d strings", what, TP_CVD_CONTEXTS_MAX);
                return -EBADMSG;
        }
        json_array_foreach(ctx, i, v)
        {
                if (!json_is_string(v) || !json_string_value(v)[0]) {
                        set_why(why, "%s: \"contexts\" must hold non-empty strings", what);
                        return -EBADMSG;
                }
                o.contexts[o.n_contexts++] = json_string_value(v);
        }
        o.port = (uint16_t)port;
        o.size = (uint64_t)size;
        o.cluster_size = (uint32_t)cluster;
        o.granularity = (uint32_t)gran;
        *ret = o;
        return 0;
}

json_t *tp_cvd_open_reply_new(uint64_t id, const tp_cvd_open_reply *o)
{
        json_t *j = tp_cvd_reply_ok_new(id), *ctx = json_array();
        int r = 0;

        if (!j || !ctx)
                goto fail;
        for (size_t i = 0; i < o->n_contexts && i < TP_CVD_CONTEXTS_MAX; i++)
                r |= json_array_append_new(ctx, json_string(o->contexts[i]));
        r |= json_object_set_new(j, "handle", json_string(o->handle));
        r |= json_object_set_new(j, "host", json_string(o->host));
        r |= json_object_set_new(j, "port", json_integer(o->port));
        r |= json_object_set_new(j, "export", json_string(o->export_name));
        r |= json_object_set_new(j, "size", json_integer((json_int_t)o->size));
        r |= json_object_set_new(j, "format", json_string(o->format));
        r |= json_object_set_new(j, "cluster_size", json_integer(o->cluster_size));
        r |= json_object_set_new(j, "granularity", json_integer(o->granularity));
        r |= json_object_set_new(j, "contexts", ctx);
        ctx = NULL;
        r |= json_object_set_new(j, "running", json_boolean(o->running));
        if (r)
                goto fail;
        return j;
fail:
        json_decref(ctx);
        json_decref(j);
        return NULL;
}

int tp_cvd_bitmap_list_reply_parse(json_t *j, tp_cvd_bitmap_list_reply *ret, tp_cvd_why *why)
{
        static const char what[] = "bitmap.list reply";
        json_t *list = json_object_get(j, "bitmaps"), *v;
        _cleanup_free_ tp_cvd_bitmap *b = NULL;
        size_t i;

        if (!json_is_array(list)) {
                set_why(why, "%s: \"bitmaps\" must be an array", what);
                return -EBADMSG;
        }
        b = calloc(MAX(json_array_size(list), 1), sizeof(*b));
        if (!b)
                return -ENOMEM;
        json_array_foreach(list, i, v)
        {
                int64_t gran, dirty;
                int r;

                if (!json_is_object(v)) {
                        set_why(why, "%s: \"bitmaps\" must hold objects", what);
                        return -EBADMSG;
                }
                r = field_string(v, what, "name", NONEMPTY, TEXT_MAX, &b[i].name, why);
                if (r >= 0)
                        r = field_int(v, what, "granularity", 0, UINT32_MAX, &gran, why);
                if (r >= 0)
                        r = field_bool(v, what, "persistent", &b[i].persistent, why);
                if (r >= 0)
                        r = field_bool(v, what, "enabled", &b[i].enabled, why);
                if (r >= 0)
                        r = field_int(v, what, "dirty_bytes", 0, INT64_MAX, &dirty, why);
                if (r < 0)
                        return r;
                b[i].granularity = (uint32_t)gran;
                b[i].dirty_bytes = (uint64_t)dirty;
        }
        ret->n_bitmaps = json_array_size(list);
        ret->bitmaps = TAKE_PTR(b);
        return 0;
}

void tp_cvd_bitmap_list_reply_done(tp_cvd_bitmap_list_reply *r)
{
        if (!r)
                return;
        free(r->bitmaps);
        r->bitmaps = NULL;
        r->n_bitmaps = 0;
}

json_t *tp_cvd_bitmap_list_reply_new(uint64_t id, const tp_cvd_bitmap *v, size_t n)
{
        json_t *j = tp_cvd_reply_ok_new(id), *list = json_array();

        if (!j || !list)
                goto fail;
        for (size_t i = 0; i < n; i++) {
                json_t *b = json_pack("{s:s, s:I, s:b, s:b, s:I}", "name", v[i].name, "granularity",
                                      (json_int_t)v[i].granularity, "persistent", v[i].persistent, "enabled",
                                      v[i].enabled, "dirty_bytes", (json_int_t)v[i].dirty_bytes);
                if (json_array_append_new(list, b) < 0)
                        goto fail;
        }
        if (json_object_set_new(j, "bitmaps", list) < 0) {
                list = NULL;
                goto fail;
        }
        return j;
fail:
        json_decref(list);
        json_decref(j);
        return NULL;
}

int tp_cvd_ping_reply_parse(json_t *j, int64_t *ret_time, tp_cvd_why *why)
{
        return field_int(j, "ping reply", "time", INT64_MIN, INT64_MAX, ret_time, why);
}

json_t *tp_cvd_ping_reply_new(uint64_t id, int64_t time)
{
        json_t *j = tp_cvd_reply_ok_new(id);

        if (j && json_object_set_new(j, "time", json_integer(time)) < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

/* --- authentication ----------------------------------------------------- */

int tp_cvd_nonce_new(char ret[TP_CVD_NONCE_HEX + 1])
{
        uint8_t b[TP_CVD_NONCE_HEX / 2];
        int r = vb_random_bytes(b, sizeof(b));

        if (r < 0)
                return r;
        hex_encode(b, sizeof(b), ret);
        return 0;
}

static int token_mac(const char *token, size_t token_len, const char *nonce, uint8_t out[KEY_LEN])
{
        unsigned out_len = 0;

        if (!token || !nonce || token_len == 0 || token_len > INT32_MAX || !is_hex(nonce, TP_CVD_NONCE_HEX))
                return -EINVAL;
        if (!HMAC(EVP_sha256(), token, (int)token_len, (const uint8_t *)nonce, TP_CVD_NONCE_HEX, out, &out_len) ||
            out_len != KEY_LEN)
                return -EIO;
        return 0;
}

int tp_cvd_token_proof(const char *token, size_t token_len, const char *nonce, char ret[TP_CVD_PROOF_HEX + 1])
{
        uint8_t mac[KEY_LEN];
        int r = token_mac(token, token_len, nonce, mac);

        if (r < 0)
                return r;
        hex_encode(mac, sizeof(mac), ret);
        return 0;
}

int tp_cvd_token_check(const char *token, size_t token_len, const char *nonce, const char *proof)
{
        uint8_t mac[KEY_LEN], got[KEY_LEN];
        int r = token_mac(token, token_len, nonce, mac);

        if (r < 0)
                return r;
        if (!proof || hex_decode(proof, strlen(proof), got, sizeof(got)) < 0)
                return -EKEYREJECTED;
        return CRYPTO_memcmp(mac, got, sizeof(mac)) == 0 ? 0 : -EKEYREJECTED;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int tp_cvd_token_parse(const char *text, size_t len, char **ret)
{
        size_t start = 0, end;
        const char *nl;
        char *t;

        if (!text || !ret)
                return -EINVAL;
        nl = memchr(text, '\n', len);
        end = nl ? (size_t)(nl - text) : len;
        while (start < end && is_space(text[start]))
                start++;
        while (end > start && is_space(text[end - 1]))
                end--;
        if (end - start < TP_CVD_TOKEN_MIN || memchr(text + start, 0, end - start))
                return -EINVAL;
        t = strndup(text + start, end - start);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

static int pbkdf2(const char *password, const uint8_t *salt, size_t salt_len, uint8_t out[KEY_LEN])
{
        if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, TP_CVD_PBKDF2_ROUNDS, EVP_sha256(),
                               KEY_LEN, out))
                return -EIO;
        return 0;
}

/* One line split in place: user, salt and key decoded. 0, 1 for a line to
 * skip, -EBADMSG. */
static int credentials_line_parse(char *line, const char **ret_user, uint8_t *salt, size_t *ret_salt_len,
                                  uint8_t key[KEY_LEN])
{
        char *end = line + strlen(line), *s1, *s2;

        while (end > line && is_space(end[-1]))
                *--end = 0;
        while (is_space(*line))
                line++;
        if (!*line || *line == '#')
                return 1;
        s1 = strchr(line, ':');
        s2 = s1 ? strchr(s1 + 1, ':') : NULL;
        if (!s1 || !s2 || s1 == line || strchr(s2 + 1, ':'))
                return -EBADMSG;
        *s1 = *s2 = 0;
        size_t salt_digits = strlen(s1 + 1);
        if (salt_digits % 2 || salt_digits < 2 * SALT_MIN || salt_digits > 2 * SALT_MAX ||
            hex_decode(s1 + 1, salt_digits, salt, salt_digits / 2) < 0 ||
            hex_decode(s2 + 1, strlen(s2 + 1), key, KEY_LEN) < 0)
                return -EBADMSG;
        *ret_user = line;
        *ret_salt_len = salt_digits / 2;
        return 0;
}

int tp_cvd_credentials_check(const char *text, const char *user, const char *password, unsigned *ret_line)
{
        _cleanup_free_ char *copy = NULL;
        uint8_t salt[SALT_MAX], key[KEY_LEN], want[KEY_LEN], got[KEY_LEN];
        static const uint8_t dummy_salt[16];
        size_t salt_len = 0, want_salt_len = 0;
        uint8_t want_salt[SALT_MAX];
        bool found = false;
        unsigned n = 0;
        char *save = NULL, *line;
        int r;

        if (!text || (user && !password))
                return -EINVAL;
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        /* strtok_r would skip empty lines and lose the line numbers. */
        for (line = copy; line; line = save) {
                const char *u;

                save = strchr(line, '\n');
                if (save)
                        *save++ = 0;
                n++;
                r = credentials_line_parse(line, &u, salt, &salt_len, key);
                if (r < 0) {
                        if (ret_line)
                                *ret_line = n;
                        return r;
                }
                if (r == 0 && user && !found && streq(u, user)) {
                        found = true;
                        memcpy(want, key, KEY_LEN);
                        memcpy(want_salt, salt, salt_len);
                        want_salt_len = salt_len;
                }
        }
        if (!user)
                return 0;
        /* The same work for an unknown user: no timing hint about who exists. */
        r = found ? pbkdf2(password, want_salt, want_salt_len, got) : pbkdf2(password, dummy_salt, 16, got);
        if (r < 0)
                return r;
        return found && CRYPTO_memcmp(want, got, KEY_LEN) == 0 ? 0 : -EKEYREJECTED;
}

int tp_cvd_credentials_line(const char *user, const char *password, char **ret)
{
        uint8_t salt[16], key[KEY_LEN];
        char salt_hex[2 * sizeof(salt) + 1], key_hex[2 * KEY_LEN + 1];
        int r;

        if (!user || !*user || strchr(user, ':') || strchr(user, '\n') || !password || !ret)
                return -EINVAL;
        r = vb_random_bytes(salt, sizeof(salt));
        if (r < 0)
                return r;
        r = pbkdf2(password, salt, sizeof(salt), key);
        if (r < 0)
                return r;
        hex_encode(salt, sizeof(salt), salt_hex);
        hex_encode(key, sizeof(key), key_hex);
        if (asprintf(ret, "%s:%s:%s", user, salt_hex, key_hex) < 0)
                return -ENOMEM;
        return 0;
}
