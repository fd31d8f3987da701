/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client.c -- one request to vbakd over its Unix socket (see client.h).
 */
#include "daemon/client.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

#define REPLY_MAX (64u << 20)
#define CONNECT_TIMEOUT_S 5L

const char *vb_client_socket(const char *opt)
{
        const char *env = getenv("VBAK_SOCKET");

        return opt ?: env && *env ? env : VB_CLIENT_SOCKET_DEFAULT;
}

typedef struct buf {
        char *data;
        size_t len;
        bool too_big;
} buf;

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
        buf *b = userdata;
        size_t add = size * n;
        char *d;

        if (b->len + add > REPLY_MAX) {
                b->too_big = true;
                return 0;
        }
        d = realloc(b->data, b->len + add + 1);
        if (!d)
                return 0;
        memcpy(d + b->len, p, add);
        b->data = d;
        b->len += add;
        d[b->len] = 0;
        return add;
}

static vb_error say(char **message, vb_error r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static vb_error say(char **message, vb_error r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(message, fmt, ap) < 0)
                *message = NULL;
        va_end(ap);
        return r;
}

vb_error vb_client_call(const char *socket, const char *method, const char *path, json_t *body, json_t **reply,
                        char **message)
{
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL, *url = NULL;
        struct curl_slist *headers = NULL;
        buf b = {};
        long status = 0;
        CURL *e;
        CURLcode cc;
        json_t *j = NULL, *err;
        vb_error r;

        *reply = NULL;
        *message = NULL;
        if ((body && !text) || asprintf(&url, "http://vbakd%s", path) < 0 || !(e = curl_easy_init()))
                return say(message, VB_E_FAILED, "out of memory");
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, socket);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (text)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, text);
        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
        curl_slist_free_all(headers);
        if (cc != CURLE_OK) {
                r = b.too_big ? say(message, VB_E_PROTOCOL, "vbakd's answer is larger than %u bytes", REPLY_MAX)
                              : say(message, VB_E_NETWORK,
                                    "cannot reach vbakd at %s (is it running? --socket or "
                                    "VBAK_SOCKET name another): %s",
                                    socket, curl_easy_strerror(cc));
                free(b.data);
                return r;
        }
        if (b.len > 0)
                j = json_loadb(b.data, b.len, 0, NULL);
        free(b.data);
        if (b.len > 0 && !j)
                return say(message, VB_E_PROTOCOL, "vbakd answered %ld with something that is not JSON", status);
        if (status >= 200 && status < 300) {
                *reply = j ?: json_object();
                return VB_OK;
        }
        err = json_object_get(j, "error");
        if (json_is_object(err) && json_is_integer(json_object_get(err, "code"))) {
                const char *field = json_string_value(json_object_get(err, "field"));
                const char *what = json_string_value(json_object_get(err, "message")) ?: "no message";
                /* The daemon's messages about a field start with its name already. */
                bool named = field && strncmp(what, field, strlen(field)) == 0;

                r = (vb_error)json_integer_value(json_object_get(err, "code"));
                say(message, r, "%s%s%s", field && !named ? field : "", field && !named ? ": " : "", what);
        } else {
                r = say(message, VB_E_PROTOCOL, "vbakd answered %ld", status);
        }
        *reply = j;
        return r;
}
