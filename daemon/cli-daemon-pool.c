/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon-pool.c -- `vbak pool add|list|show|remove|rescan` and `vbak
 * restore-point list|show`, through vbakd's control API (see
 * cli-daemon-pool.h). Every verb takes --socket PATH, --json and --help;
 * errors print as in the other verbs, with the daemon's own stable code.
 *
 * DESIGN: `vbak pool list PATH` existed before the daemon and keeps reading
 * a pool directly; vb_cli_daemon_pool_wants() tells the two apart by the
 * operand, so scripts that use it are not broken. A relative --path is made
 * absolute here, against the caller's working directory: the daemon's own
 * means nothing to the user.
 */
#include "daemon/cli-daemon-pool.h"

#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cli-common.h"
#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/util.h"

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_PATH,
        OPT_TYPE,
        OPT_NO_CREATE,
        OPT_VM,
        OPT_POOL,
        OPT_PLATFORM,
        OPT_ENDPOINT,
        OPT_BUCKET,
        OPT_REGION,
        OPT_PREFIX,
        OPT_ACCESS_KEY_FILE,
        OPT_SECRET_KEY_FILE,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        { "path", required_argument, NULL, OPT_PATH },
        { "type", required_argument, NULL, OPT_TYPE },
        { "no-create", no_argument, NULL, OPT_NO_CREATE },
        { "vm", required_argument, NULL, OPT_VM },
        { "pool", required_argument, NULL, OPT_POOL },
        { "platform", required_argument, NULL, OPT_PLATFORM },
        { "endpoint", required_argument, NULL, OPT_ENDPOINT },
        { "bucket", required_argument, NULL, OPT_BUCKET },
        { "region", required_argument, NULL, OPT_REGION },
        { "prefix", required_argument, NULL, OPT_PREFIX },
        { "access-key-file", required_argument, NULL, OPT_ACCESS_KEY_FILE },
        { "secret-key-file", required_argument, NULL, OPT_SECRET_KEY_FILE },
        {},
};

/* What the options of one command line said. */
typedef struct args {
        const char *socket;
        bool json;
        json_t *body;   /* POST /v1/pools: the members the options set */
        json_t *filter; /* restore points: query parameter -> value */
        int first;      /* argv index of the first operand */
} args;

static void args_done(args *a)
{
        json_decref(a->body);
        json_decref(a->filter);
}

/* path made absolute against the working directory; caller frees. */
static char *absolute(const char *path)
{
        char cwd[PATH_MAX];
        char *p;

        if (path[0] == '/')
                return strdup(path);
        if (!getcwd(cwd, sizeof(cwd)))
                return NULL;
        return asprintf(&p, "%s/%s", streq(cwd, "/") ? "" : cwd, path) < 0 ? NULL : p;
}

/* Parses the options; 0, -1 after --help, or an exit code. Options that do
 * not belong to the verb are refused: allowed_body and allowed_filter say
 * which groups it takes. */
static int parse(int argc, char **argv, void (*help)(FILE *f), bool allowed_body, bool allowed_filter, args *a)
{
        int c, idx;

        *a = (args){ .body = json_object(), .filter = json_object() };
        if (!a->body || !a->filter)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        optind = 1;
        while ((idx = -1, c = getopt_long(argc, argv, "h", options, &idx)) >= 0) {
                bool body = c == OPT_PATH || c == OPT_TYPE || c == OPT_NO_CREATE ||
                            (c >= OPT_ENDPOINT && c <= OPT_SECRET_KEY_FILE);
                bool filter = c == OPT_VM || c == OPT_POOL || c == OPT_PLATFORM;

                if (c == OPT_VM && !allowed_filter)
                        return vb_cli_fail(VB_E_USAGE, "--vm is for vbak pool list PATH: give the pool's PATH");
                if ((body && !allowed_body) || (filter && !allowed_filter))
                        return vb_cli_fail(VB_E_USAGE, "%s does not take --%s (see --help)", argv[0],
                                           idx >= 0 ? options[idx].name : "?");
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
                case OPT_PATH: {
                        _cleanup_free_ char *p = absolute(optarg);

                        if (!p)
                                return vb_cli_fail(VB_E_FAILED, "%s: cannot make it absolute: %s", optarg,
                                                   strerror(errno ?: ENOMEM));
                        json_object_set_new(a->body, "path", json_string(p));
                        break;
                }
                case OPT_TYPE:
                        json_object_set_new(a->body, "type", json_string(optarg));
                        break;
                case OPT_NO_CREATE:
                        json_object_set_new(a->body, "create", json_false());
                        break;
                case OPT_ENDPOINT:
                case OPT_BUCKET:
                case OPT_REGION:
                case OPT_PREFIX:
                case OPT_ACCESS_KEY_FILE:
                case OPT_SECRET_KEY_FILE: {
                        /* An object pool's store; the keys are read from their files here. */
                        static const char *const members[] = { "endpoint", "bucket",     "region",
                                                               "prefix",   "access_key", "secret_key" };
                        json_t *obj = json_object_get(a->body, "object");
                        _cleanup_free_ char *text = NULL;
                        const char *value = optarg;

                        if (!obj) {
                                obj = json_object();
                                json_object_set_new(a->body, "object", obj);
                        }
                        if (c >= OPT_ACCESS_KEY_FILE) {
                                int k = vb_cli_read_secret_file(optarg, &text);

                                if (k)
                                        return k;
                                value = text;
                        }
                        json_object_set_new(obj, members[c - OPT_ENDPOINT], json_string(value));
                        if (text)
                                explicit_bzero(text, strlen(text));
                        break;
                }
                case OPT_VM:
                        json_object_set_new(a->filter, "vm", json_string(optarg));
                        break;
                case OPT_POOL:
                        json_object_set_new(a->filter, "pool", json_string(optarg));
                        break;
                case OPT_PLATFORM:
                        json_object_set_new(a->filter, "platform", json_string(optarg));
                        break;
                default:
                        return vb_cli_fail(VB_E_USAGE, "bad option (see --help)");
                }
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

/* prefix, "/" and the percent-encoded segment (when not NULL), suffix
 * (may be NULL), the filters as a query string; caller frees. NULL when
 * out of memory. */
static char *make_path(const char *prefix, const char *segment, const char *suffix, json_t *filter)
{
        char *s = NULL, *e;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        const char *k;
        json_t *v;
        char sep = '?';

        if (!f)
                return NULL;
        fputs(prefix, f);
        if (segment) {
                e = curl_easy_escape(NULL, segment, 0);
                if (e)
                        fprintf(f, "/%s", e);
                curl_free(e);
        }
        if (suffix)
                fputs(suffix, f);
        json_object_foreach(filter, k, v)
        {
                e = curl_easy_escape(NULL, json_string_value(v), 0);
                if (e)
                        fprintf(f, "%c%s=%s", sep, k, e);
                curl_free(e);
                sep = '&';
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

static const char *str(json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

static uint64_t num(json_t *o, const char *key)
{
        json_int_t v = json_integer_value(json_object_get(o, key));

        return v > 0 ? (uint64_t)v : 0;
}

static const char *when(json_t *o, const char *key, char *buf, size_t size)
{
        time_t t = (time_t)num(o, key);

        if (t == 0 || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", localtime(&t)))
                snprintf(buf, size, "-");
        return buf;
}

static double ratio(uint64_t a, uint64_t b)
{
        return b ? (double)a / (double)b : 0.0;
}

/* ---- pool ---- */

static void pool_help(FILE *f)
{
        fputs("Usage: vbak pool VERB ... [--socket PATH] [--json]\n"
              "The storage pools vbakd writes into (vbak pool --help also lists the verbs that\n"
              "work on a pool directly, without the daemon).\n\n"
              "  add NAME --path PATH [--type dedup|standard] [--no-create]\n"
              "                      register the pool in PATH and read its restore points; a\n"
              "                      missing or empty folder becomes a new pool of --type\n"
              "                      (default dedup), unless --no-create\n"
              "  add NAME --type object --endpoint URL --bucket B --access-key-file F\n"
              "           --secret-key-file F [--region R] [--prefix P] [--path PATH]\n"
              "                      an object pool in an S3-compatible bucket (created when\n"
              "                      missing; a bucket holding a pool already is joined); the\n"
              "                      secret goes to vbakd's credential store, the local folder\n"
              "                      (default STATE/object-pools/NAME) keeps settings and caches\n"
              "  list                the registered pools (vbak pool list PATH reads a pool directly)\n"
              "  show NAME           one pool, with its sizes read now\n"
              "  remove NAME         unregister it; its data stays (not while a job uses it)\n"
              "  rescan NAME         read its restore points into vbakd's catalog again\n\n"
              "  --socket PATH       vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json              the answer as JSON\n",
              f);
}

/* `vbak pool list --help` lands here: both forms, the direct one too. */
static void list_help(FILE *f)
{
        fputs("Usage: vbak pool list [--socket PATH] [--json]\n"
              "       vbak pool list PATH [--vm NAME] [--json]\n"
              "Without PATH: the pools registered with vbakd, with how many restore points each\n"
              "holds. With PATH: the committed restore points of the pool there, oldest first,\n"
              "read from the pool directly (no daemon needed).\n\n"
              "  --socket PATH       vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --vm NAME           with PATH: the restore points of this VM only\n"
              "  --json              the answer as JSON\n",
              f);
}

bool vb_cli_daemon_pool_wants(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL;

        if (!verb)
                return false;
        if (streq(verb, "add") || streq(verb, "show") || streq(verb, "remove") || streq(verb, "rescan"))
                return true;
        if (!streq(verb, "list"))
                return false;
        /* `list` with an operand (a pool's path) reads the pool directly. The
         * options that take a separate value must not count as operands:
         * --vm (the direct list's) and --socket (the daemon's). */
        for (int i = 2; i < argc; i++) {
                if (streq(argv[i], "--"))
                        return i + 1 >= argc;
                if (streq(argv[i], "--vm") || streq(argv[i], "--socket"))
                        i++;
                else if (argv[i][0] != '-')
                        return false;
        }
        return true;
}

static void print_pool(json_t *p)
{
        printf("%s: %s pool at %s, %" PRIu64 " restore points\n", str(p, "name"), str(p, "type"), str(p, "path"),
               num(p, "restore_points"));
}

static void print_pool_stats(json_t *p)
{
        json_t *s = json_object_get(p, "stats");
        char a[32], b[32], c[32], d[32];

        print_pool(p);
        if (!json_is_object(s)) {
                if (str(p, "stats_error"))
                        printf("stats:             not available (%s)\n", str(p, "stats_error"));
                return;
        }
        printf("restore points:    %" PRIu64 "\n", num(s, "restore_points"));
        printf("chunks:            %" PRIu64 "\n", num(s, "chunks"));
        printf("logical size:      %s\n", vb_format_size(num(s, "logical_bytes"), a, sizeof(a)));
        printf("data:              %s\n", vb_format_size(num(s, "data_bytes"), b, sizeof(b)));
        printf("unique data:       %s\n", vb_format_size(num(s, "unique_bytes"), c, sizeof(c)));
        printf("stored:            %s\n", vb_format_size(num(s, "stored_bytes"), d, sizeof(d)));
        printf("dedup ratio:       %.2f\n", ratio(num(s, "data_bytes"), num(s, "unique_bytes")));
        printf("compression ratio: %.2f\n", ratio(num(s, "unique_bytes"), num(s, "stored_bytes")));
}

int vb_cli_daemon_pool(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL, *name;
        _cleanup_free_ char *path = NULL;
        json_t *reply = NULL, *p;
        args a;
        int r, want;
        size_t i;

        if (!verb || streq(verb, "--help") || streq(verb, "-h")) {
                pool_help(verb ? stdout : stderr);
                return verb ? 0 : VB_E_USAGE;
        }
        if (!streq(verb, "add") && !streq(verb, "list") && !streq(verb, "show") && !streq(verb, "remove") &&
            !streq(verb, "rescan"))
                return vb_cli_fail(VB_E_USAGE, "unknown verb 'pool %s' (see vbak pool --help)", verb);
        r = parse(argc - 1, argv + 1, streq(verb, "list") ? list_help : pool_help, streq(verb, "add"), false, &a);
        if (r)
                return args_done(&a), r < 0 ? 0 : r;
        want = streq(verb, "list") ? 0 : 1;
        if (argc - 1 - a.first != want) {
                args_done(&a);
                return vb_cli_fail(VB_E_USAGE, "wrong arguments (see vbak pool %s --help)", verb);
        }
        name = want ? argv[1 + a.first] : NULL;
        path = make_path("/v1/pools", name, streq(verb, "rescan") ? "/rescan" : NULL, NULL);
        if (!path) {
                args_done(&a);
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        }
        if (streq(verb, "add")) {
                /* An object pool's local folder defaults to one of vbakd's. */
                if (!json_object_get(a.body, "path") && !json_object_get(a.body, "object")) {
                        args_done(&a);
                        return vb_cli_fail(VB_E_USAGE, "vbak pool add needs --path PATH (see --help)");
                }
                json_object_set_new(a.body, "name", json_string(name));
                r = call(&a, "POST", "/v1/pools", a.body, &reply);
        } else if (streq(verb, "list"))
                r = call(&a, "GET", path, NULL, &reply);
        else if (streq(verb, "show"))
                r = call(&a, "GET", path, NULL, &reply);
        else if (streq(verb, "remove"))
                r = call(&a, "DELETE", path, NULL, &reply);
        else
                r = call(&a, "POST", path, NULL, &reply); /* rescan */
        if (r == 0 && a.json)
                vb_cli_print_json(json_incref(reply));
        else if (r == 0 && streq(verb, "add"))
                printf("pool %s: %s %s pool at %s, %" PRIu64 " restore points\n", str(reply, "name"),
                       json_is_true(json_object_get(reply, "created")) ? "created a" : "registered the",
                       str(reply, "type"), str(reply, "path"), num(reply, "restore_points"));
        else if (r == 0 && streq(verb, "list")) {
                if (json_array_size(reply) == 0)
                        puts("no pool registered (vbak pool add)");
                else
                        printf("%-20s %-9s %14s  %s\n", "NAME", "TYPE", "RESTORE-POINTS", "PATH");
                json_array_foreach(reply, i, p) printf("%-20s %-9s %14" PRIu64 "  %s\n", str(p, "name"), str(p, "type"),
                                                       num(p, "restore_points"), str(p, "path"));
        } else if (r == 0 && streq(verb, "show"))
                print_pool_stats(reply);
        else if (r == 0 && streq(verb, "remove"))
                printf("pool %s removed (its data stays in %s)\n", name, str(reply, "path") ?: "its folder");
        else if (r == 0)
                printf("pool %s: %" PRIu64 " restore points\n", name, num(reply, "restore_points"));
        json_decref(reply);
        args_done(&a);
        return r;
}

/* ---- restore-point ---- */

static void rp_help(FILE *f)
{
        fputs("Usage: vbak restore-point VERB ... [--socket PATH] [--json]\n"
              "The restore points in vbakd's pools, as its catalog knows them.\n\n"
              "  list [--vm NAME] [--pool P] [--platform P]\n"
              "                      oldest first: id, VM, type, time, size, pool\n"
              "  show ID [--pool P]  one restore point (--pool when several pools have the id)\n\n"
              "  --socket PATH       vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json              the answer as JSON\n",
              f);
}

static void print_rp(json_t *rp)
{
        char start[32], end[32], size[32], data[32], fresh[32];

        printf("restore point %s in pool %s\n", str(rp, "id"), str(rp, "pool") ?: "?");
        printf("vm:          %s", str(rp, "vm") ?: "?");
        if (str(rp, "title"))
                printf(" (%s)", str(rp, "title"));
        if (str(rp, "vm_id"))
                printf(", id %s", str(rp, "vm_id"));
        printf("\nplatform:    %s\n", str(rp, "platform") ?: "-");
        printf("type:        %s", str(rp, "type") ?: "?");
        if (str(rp, "parent"))
                printf(", parent %s", str(rp, "parent"));
        printf("\ntime:        %s to %s\n", when(rp, "time_start", start, sizeof(start)),
               when(rp, "time_end", end, sizeof(end)));
        printf("disks:       %" PRIu64 ", %s in all, %s of data, %s stored new\n", num(rp, "disks"),
               vb_format_size(num(rp, "size"), size, sizeof(size)),
               vb_format_size(num(rp, "data_bytes"), data, sizeof(data)),
               vb_format_size(num(rp, "new_bytes"), fresh, sizeof(fresh)));
        if (str(rp, "consistency"))
                printf("consistency: %s\n", str(rp, "consistency"));
        if (str(rp, "checkpoint"))
                printf("checkpoint:  %s\n", str(rp, "checkpoint"));
        if (str(rp, "job") || str(rp, "run"))
                printf("job:         %s, run %s\n", str(rp, "job") ?: "-", str(rp, "run") ?: "-");
}

int vb_cli_restore_point(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL;
        _cleanup_free_ char *path = NULL;
        json_t *reply = NULL, *rp;
        args a;
        int r, want;
        size_t i;

        if (!verb || streq(verb, "--help") || streq(verb, "-h")) {
                rp_help(verb ? stdout : stderr);
                return verb ? 0 : VB_E_USAGE;
        }
        if (!streq(verb, "list") && !streq(verb, "show"))
                return vb_cli_fail(VB_E_USAGE, "unknown verb 'restore-point %s' (see vbak restore-point --help)", verb);
        r = parse(argc - 1, argv + 1, rp_help, false, true, &a);
        if (r)
                return args_done(&a), r < 0 ? 0 : r;
        want = streq(verb, "list") ? 0 : 1;
        /* show takes --pool only: one id is one restore point (per pool). */
        if (argc - 1 - a.first != want ||
            (want && json_object_size(a.filter) > (json_object_get(a.filter, "pool") ? 1u : 0u))) {
                args_done(&a);
                return vb_cli_fail(VB_E_USAGE, "wrong arguments (see vbak restore-point --help)");
        }
        path = make_path("/v1/restore-points", want ? argv[1 + a.first] : NULL, NULL, a.filter);
        r = path ? call(&a, "GET", path, NULL, &reply) : vb_cli_fail(VB_E_FAILED, "out of memory");
        if (r == 0 && a.json)
                vb_cli_print_json(json_incref(reply));
        else if (r == 0 && want)
                print_rp(reply);
        else if (r == 0) {
                if (json_array_size(reply) == 0)
                        puts("no restore points");
                else
                        printf("%-32s %-16s %-11s %-19s %10s  %s\n", "ID", "VM", "TYPE", "TIME", "SIZE", "POOL");
                json_array_foreach(reply, i, rp)
                {
                        char t[32], size[32];

                        printf("%-32s %-16s %-11s %-19s %10s  %s\n", str(rp, "id"), str(rp, "vm") ?: "?",
                               str(rp, "type") ?: "?", when(rp, "time_start", t, sizeof(t)),
                               vb_format_size(num(rp, "size"), size, sizeof(size)), str(rp, "pool") ?: "?");
                }
        }
        json_decref(reply);
        args_done(&a);
        return r;
}
