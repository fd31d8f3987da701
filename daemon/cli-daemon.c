/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon.c -- verbs of the command line that ask vbakd (see
 * cli-daemon.h). Each takes --socket PATH and --json; errors print as in
 * the other verbs (stderr, and {"error": ...} on stdout with --json), with
 * the daemon's own stable code.
 */
#include "daemon/cli-daemon.h"

#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cli-cas.h"
#include "daemon/cli-common.h"
#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/util.h"

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_TYPE,
        OPT_CVM,
        OPT_USER,
        OPT_PASSWORD_FILE,
        OPT_INSECURE,
        OPT_VERIFY_TLS,
        OPT_BACKUP_HOST,
        OPT_TAG,
        OPT_RENAME,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        { "type", required_argument, NULL, OPT_TYPE },
        { "cvm", required_argument, NULL, OPT_CVM },
        { "uri", required_argument, NULL, OPT_CVM },
        { "user", required_argument, NULL, OPT_USER },
        { "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "verify-tls", no_argument, NULL, OPT_VERIFY_TLS },
        { "backup-host", required_argument, NULL, OPT_BACKUP_HOST },
        { "tag", required_argument, NULL, OPT_TAG },
        { "rename", required_argument, NULL, OPT_RENAME },
        {},
};

/* What the options of one command line said. */
typedef struct args {
        const char *socket;
        bool json;
        json_t *body; /* the members the options set */
        const char *password_file;
        int first; /* argv index of the first operand */
} args;

/* Parses the options every verb here shares; 0, or an exit code. */
static int parse(int argc, char **argv, void (*help)(FILE *f), args *a)
{
        int c;

        *a = (args){ .body = json_object() };
        if (!a->body)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help(stdout);
                        return -1;
                case OPT_SOCKET:
                        a->socket = optarg;
                        break;
                case OPT_JSON:
                        a->json = vb_cli_json = true;
                        break;
                case OPT_TYPE:
                        json_object_set_new(a->body, "type", json_string(optarg));
                        break;
                case OPT_CVM:
                        json_object_set_new(a->body, "address", json_string(optarg));
                        break;
                case OPT_USER:
                        json_object_set_new(a->body, "user", json_string(optarg));
                        break;
                case OPT_PASSWORD_FILE:
                        a->password_file = optarg;
                        break;
                case OPT_INSECURE:
                case OPT_VERIFY_TLS:
                        json_object_set_new(a->body, "insecure", json_boolean(c == OPT_INSECURE));
                        break;
                case OPT_BACKUP_HOST:
                        json_object_set_new(a->body, "backup_host", json_string(optarg));
                        break;
                case OPT_TAG:
                        if (!json_object_get(a->body, "tags"))
                                json_object_set_new(a->body, "tags", json_array());
                        json_array_append_new(json_object_get(a->body, "tags"), json_string(optarg));
                        break;
                case OPT_RENAME:
                        json_object_set_new(a->body, "name", json_string(optarg));
                        break;
                default:
                        return vb_cli_fail(VB_E_USAGE, "bad option (see --help)");
                }
        if (a->password_file) {
                _cleanup_free_ char *text = NULL;
                int r = vb_cli_read_secret_file(a->password_file, &text);

                if (r)
                        return r;
                json_object_set_new(a->body, "password", json_string(text));
                explicit_bzero(text, strlen(text));
        }
        a->socket = vb_client_socket(a->socket);
        a->first = optind;
        return 0;
}

/* One call; *reply on success, else the exit code printed. */
static int call(const args *a, const char *method, const char *path, json_t *body, json_t **reply)
{
        return vb_cli_call(a->socket, method, path, body, reply);
}

static void args_done(args *a)
{
        json_decref(a->body);
}

/* ---- status ---- */

void vb_cli_status_help(FILE *f)
{
        fputs("Usage: vbak status [--socket PATH] [--json]\n"
              "Asks vbakd whether it runs: its version, pid, start time and state dir.\n\n"
              "  --socket PATH   vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json          the answer as JSON\n",
              f);
}

int vb_cli_status(int argc, char **argv)
{
        json_t *reply = NULL;
        time_t started;
        char when[64];
        args a;
        int r = parse(argc, argv, vb_cli_status_help, &a);

        if (r)
                return args_done(&a), r < 0 ? 0 : r;
        if (a.first != argc) {
                args_done(&a);
                return vb_cli_fail(VB_E_USAGE, "vbak status takes no arguments (see --help)");
        }
        r = call(&a, "GET", "/v1/version", NULL, &reply);
        if (r == 0 && a.json)
                vb_cli_print_json(json_incref(reply));
        else if (r == 0) {
                started = (time_t)json_integer_value(json_object_get(reply, "started"));
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&started));
                printf("vbakd %s, pid %" JSON_INTEGER_FORMAT ", running since %s\nstate dir %s, socket %s\n",
                       json_string_value(json_object_get(reply, "version")) ?: "?",
                       json_integer_value(json_object_get(reply, "pid")), when,
                       json_string_value(json_object_get(reply, "state_dir")) ?: "?", a.socket);
        }
        json_decref(reply);
        args_done(&a);
        return r;
}

/* ---- platform ---- */

void vb_cli_platform_help(FILE *f)
{
        fputs("Usage: vbak platform VERB ... [--socket PATH] [--json]\n"
              "The virtualisation platforms vbakd backs up.\n\n"
              "  add NAME --type cas --cvm URL --user U --password-file F [--insecure]\n"
              "           [--backup-host H] [--tag T ...]\n"
              "  add NAME --type libvirt --uri URI [--user U --password-file F] [--tag T ...]\n"
              "                      register a platform (its credentials are checked first)\n"
              "  list                the registered platforms\n"
              "  show NAME           one platform\n"
              "  update NAME [--cvm URL|--uri URI] [--user U] [--password-file F] [--insecure|--verify-tls]\n"
              "           [--backup-host H] [--tag T ...] [--rename NEW]\n"
              "  remove NAME         unregister it (not while a job uses it)\n\n"
              "  --cvm URL           the CVM: http://HOST:8080 or https://HOST:8443\n"
              "  --uri URI           a libvirt host: qemu:///system (this host), qemu+ssh://HOST/system,\n"
              "                      qemu+tls://HOST/system; its disk service (vbak-cvd) reads\n"
              "                      shut-off domains and writes restores\n"
              "  --password-file F   the password (the file's first line); vbakd keeps it in its\n"
              "                      credential store, readable by the daemon only\n"
              "  --insecure          do not verify the CVM's TLS certificate\n",
              f);
}

static void print_platform(json_t *p)
{
        json_t *tags = json_object_get(p, "tags"), *t;
        size_t i;

        printf("%s: %s %s, user %s%s", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "type")), json_string_value(json_object_get(p, "address")),
               json_string_value(json_object_get(p, "user")) ?: "-",
               json_is_true(json_object_get(p, "insecure")) ? ", TLS not verified" : "");
        if (json_string_value(json_object_get(p, "backup_host")))
                printf(", backup host %s", json_string_value(json_object_get(p, "backup_host")));
        json_array_foreach(tags, i, t) printf("%s%s", i ? "," : ", tags ", json_string_value(t));
        fputc('\n', stdout);
}

int vb_cli_platform(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL;
        char path[512];
        json_t *reply = NULL;
        args a;
        int r, want;
        size_t i;
        json_t *p;

        if (!verb || streq(verb, "--help") || streq(verb, "-h")) {
                vb_cli_platform_help(verb ? stdout : stderr);
                return verb ? 0 : VB_E_USAGE;
        }
        r = parse(argc - 1, argv + 1, vb_cli_platform_help, &a);
        if (r)
                return args_done(&a), r < 0 ? 0 : r;
        want = streq(verb, "list") ? 0 : 1;
        if (argc - 1 - a.first != want) {
                args_done(&a);
                return vb_cli_fail(VB_E_USAGE, "wrong arguments (see vbak platform --help)");
        }
        if (want)
                snprintf(path, sizeof(path), "/v1/platforms/%s", argv[1 + a.first]);
        if (streq(verb, "add")) {
                json_object_set_new(a.body, "name", json_string(argv[1 + a.first]));
                r = call(&a, "POST", "/v1/platforms", a.body, &reply);
        } else if (streq(verb, "list"))
                r = call(&a, "GET", "/v1/platforms", NULL, &reply);
        else if (streq(verb, "show"))
                r = call(&a, "GET", path, NULL, &reply);
        else if (streq(verb, "update"))
                r = call(&a, "PATCH", path, a.body, &reply);
        else if (streq(verb, "remove"))
                r = call(&a, "DELETE", path, NULL, &reply);
        else
                r = vb_cli_fail(VB_E_USAGE, "unknown verb (see vbak platform --help)");
        if (r == 0 && a.json)
                vb_cli_print_json(json_incref(reply));
        else if (r == 0 && streq(verb, "list")) {
                json_array_foreach(reply, i, p) print_platform(p);
                if (json_array_size(reply) == 0)
                        puts("no platform registered (vbak platform add)");
        } else if (r == 0 && streq(verb, "remove"))
                printf("platform %s removed\n", argv[1 + a.first]);
        else if (r == 0)
                print_platform(reply);
        json_decref(reply);
        args_done(&a);
        return r;
}

/* ---- inventory ---- */

void vb_cli_inventory_help(FILE *f)
{
        fputs("Usage: vbak inventory PLATFORM [--socket PATH] [--json]\n"
              "The platform's host pools, clusters, hosts and VMs (by title, with their names),\n"
              "read from it now through vbakd.\n",
              f);
}

int vb_cli_inventory(int argc, char **argv)
{
        char path[512];
        json_t *reply = NULL;
        args a;
        int r = parse(argc, argv, vb_cli_inventory_help, &a);

        if (r)
                return args_done(&a), r < 0 ? 0 : r;
        if (argc - a.first != 1) {
                args_done(&a);
                return vb_cli_fail(VB_E_USAGE, "vbak inventory needs PLATFORM (see --help)");
        }
        snprintf(path, sizeof(path), "/v1/platforms/%s/inventory", argv[a.first]);
        r = call(&a, "GET", path, NULL, &reply);
        if (r == 0 && a.json)
                vb_cli_print_json(json_incref(reply));
        else if (r == 0)
                vb_cli_print_inventory(reply);
        json_decref(reply);
        args_done(&a);
        return r;
}
