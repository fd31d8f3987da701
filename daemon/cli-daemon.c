/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon.c -- verbs of the command line that ask vbakd (see
 * cli-daemon.h). Each takes --socket PATH and --json; errors print as in
 * the other verbs (stderr, and {"error": ...} on stdout with --json), with
 * the daemon's own stable code.
 */
#include "daemon/cli-daemon.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/util.h"

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        {},
};

void vb_cli_status_help(FILE *f)
{
        fputs("Usage: vbak status [--socket PATH] [--json]\n"
              "Asks vbakd whether it runs: its version, pid, start time and state dir.\n\n"
              "  --socket PATH   vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json          the answer as JSON\n",
              f);
}

/* The answer of a failed call, as the other verbs print errors. */
static int fail(bool json, vb_error r, const char *message)
{
        fprintf(stderr, "vbak: %s [E%d %s]\n", message ?: "failed", r, vb_error_name(r));
        if (json) {
                json_t *j = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", r, "name", vb_error_name(r), "message",
                                      message ?: "failed");
                if (j) {
                        json_dumpf(j, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                        json_decref(j);
                }
        }
        return r;
}

int vb_cli_status(int argc, char **argv)
{
        const char *socket = NULL;
        _cleanup_free_ char *message = NULL;
        bool json = false;
        json_t *reply = NULL;
        time_t started;
        char when[64];
        vb_error r;
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        vb_cli_status_help(stdout);
                        return 0;
                case OPT_SOCKET:
                        socket = optarg;
                        break;
                case OPT_JSON:
                        json = true;
                        break;
                default:
                        return fail(json, VB_E_USAGE, "bad option (see vbak status --help)");
                }
        if (optind != argc)
                return fail(json, VB_E_USAGE, "vbak status takes no arguments (see --help)");
        socket = vb_client_socket(socket);
        r = vb_client_call(socket, "GET", "/v1/version", NULL, &reply, &message);
        if (r != VB_OK) {
                json_decref(reply);
                return fail(json, r, message);
        }
        if (json) {
                json_dumpf(reply, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        } else {
                started = (time_t)json_integer_value(json_object_get(reply, "started"));
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&started));
                printf("vbakd %s, pid %" JSON_INTEGER_FORMAT ", running since %s\nstate dir %s, socket %s\n",
                       json_string_value(json_object_get(reply, "version")) ?: "?",
                       json_integer_value(json_object_get(reply, "pid")), when,
                       json_string_value(json_object_get(reply, "state_dir")) ?: "?", socket);
        }
        json_decref(reply);
        return 0;
}
