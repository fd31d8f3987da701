/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-common.c -- errors and JSON output of the command line (cli-common.h).
 */
#include "daemon/cli-common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/client.h"

bool vb_cli_json;

int vb_cli_fail(vb_error code, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "vbak: %s [E%d %s]\n", msg, code, vb_error_name(code));
        if (vb_cli_json) {
                json_t *j = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", code, "name", vb_error_name(code),
                                      "message", msg);
                if (j) {
                        json_dumpf(j, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                        json_decref(j);
                }
        }
        return code;
}

int vb_cli_print_json(json_t *j)
{
        if (!j)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
        return 0;
}

int vb_cli_call(const char *socket, const char *method, const char *path, json_t *body, json_t **reply)
{
        char *message = NULL;
        vb_error r;

        *reply = NULL;
        r = vb_client_call(socket, method, path, body, reply, &message);
        if (r != VB_OK) {
                r = vb_cli_fail(r, "%s", message ?: "failed");
                json_decref(*reply);
                *reply = NULL;
        }
        free(message);
        return r;
}

int vb_cli_read_secret_file(const char *path, char **ret)
{
        char *text = NULL;
        size_t len = 0;
        int r = vb_read_file_at(AT_FDCWD, path, 64 * 1024, &text, &len);

        if (r < 0)
                return vb_cli_fail(r == -ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(r), "%s: %s", path,
                                   strerror(-r));
        text[strcspn(text, "\r\n")] = 0;
        if (!*text) {
                explicit_bzero(text, len);
                free(text);
                return vb_cli_fail(VB_E_USAGE, "%s: empty (the secret is the file's first line)", path);
        }
        *ret = text;
        return 0;
}
