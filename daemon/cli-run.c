/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-run.c -- `vbak run list|show|retry` through vbakd, and --follow: the
 * live view of a run (daemon/api-runs.c's long-polled progress).
 *
 * DESIGN: --follow asks GET /v1/runs/ID/progress?since=G in a loop; the
 * daemon answers at the next change, so the view is live without busy
 * polling. On a terminal the VMs' bars are redrawn in place; otherwise (a
 * log, a pipe) a line is printed whenever a VM's status or step changes,
 * and with --json each answer is one line of JSON on stdout.
 */
#include "daemon/cli-run.h"

#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cli-common.h"
#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/util.h"

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_JOB,
        OPT_STATUS,
        OPT_LIMIT,
        OPT_VMS,
        OPT_FOLLOW,
        OPT_VM,
        OPT_FAILED,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        { "job", required_argument, NULL, OPT_JOB },
        { "status", required_argument, NULL, OPT_STATUS },
        { "limit", required_argument, NULL, OPT_LIMIT },
        { "vms", no_argument, NULL, OPT_VMS },
        { "follow", no_argument, NULL, OPT_FOLLOW },
        { "vm", required_argument, NULL, OPT_VM },
        { "failed", no_argument, NULL, OPT_FAILED },
        {},
};

typedef struct args {
        const char *socket;
        bool json, vms, follow, failed;
        const char *job, *status, *limit;
        json_t *names; /* --vm */
        int first;
} args;

static const char help_text[] =
        "Usage: vbak run list [--job NAME] [--status S[,S...]] [--limit N] [--json]\n"
        "       vbak run show RUN [--vms] [--follow] [--json]\n"
        "       vbak run retry RUN (--failed | --vm NAME ...) [--follow] [--json]\n"
        "A job's runs, as vbakd recorded them.\n\n"
        "  list    the runs, newest first; --status takes waiting, running, succeeded, partial,\n"
        "          failed, stopped, skipped\n"
        "  show    one run; --vms lists every VM's result (with --json: an array of vm, title,\n"
        "          status, error_code, message, restore_point...); --follow shows live progress\n"
        "          until the run ends and exits with the run's result\n"
        "  retry   backs up again, in the same run, the failed VMs (--failed) or the VMs named\n"
        "          (--vm NAME, by name, title or id), with the job's settings; refused while the\n"
        "          job runs, after it was deleted, or when a VM has since been deleted or excluded\n\n"
        "  --socket PATH   vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
        "  --json          the answer as JSON\n"
        "Exit codes (docs/error-codes.md): with --follow, 0 when every VM succeeded or was skipped,\n"
        "else the first failed VM's code.\n";

static int parse(int argc, char **argv, args *a)
{
        int c;

        *a = (args){ .names = json_array() };
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        fputs(help_text, stdout);
                        return -1;
                case OPT_SOCKET:
                        a->socket = optarg;
                        break;
                case OPT_JSON:
                        a->json = vb_cli_json = true;
                        break;
                case OPT_JOB:
                        a->job = optarg;
                        break;
                case OPT_STATUS:
                        a->status = optarg;
                        break;
                case OPT_LIMIT:
                        a->limit = optarg;
                        break;
                case OPT_VMS:
                        a->vms = true;
                        break;
                case OPT_FOLLOW:
                        a->follow = true;
                        break;
                case OPT_VM:
                        json_array_append_new(a->names, json_string(optarg));
                        break;
                case OPT_FAILED:
                        a->failed = true;
                        break;
                default:
                        return vb_cli_fail(VB_E_USAGE, "bad option (see vbak run --help)");
                }
        a->socket = vb_client_socket(a->socket);
        a->first = optind;
        return 0;
}

static int64_t run_id_of(const char *s)
{
        char *end;
        long long v = strtoll(s, &end, 10);

        return *end || v <= 0 ? -1 : v;
}

static const char *str(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key)) ?: "";
}

static const char *when(json_int_t t, char *buf, size_t size)
{
        time_t tt = (time_t)t;
        struct tm tm;

        if (t <= 0 || !localtime_r(&tt, &tm))
                return "-";
        strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
        return buf;
}

/* ---- list ---- */

static int cmd_list(args *a)
{
        char path[512] = "/v1/runs", *p = path + strlen(path), sep = '?';
        json_t *reply = NULL, *r;
        size_t i;
        int k;

        if (a->job) {
                char *e = curl_easy_escape(NULL, a->job, 0);

                p += snprintf(p, sizeof(path) - (size_t)(p - path), "%cjob=%s", sep, e ?: "");
                curl_free(e);
                sep = '&';
        }
        if (a->status) {
                p += snprintf(p, sizeof(path) - (size_t)(p - path), "%cstatus=%s", sep, a->status);
                sep = '&';
        }
        if (a->limit)
                snprintf(p, sizeof(path) - (size_t)(p - path), "%climit=%s", sep, a->limit);
        k = vb_cli_call(a->socket, "GET", path, NULL, &reply);
        if (k)
                return k;
        if (a->json)
                return vb_cli_print_json(reply);
        printf("%-6s %-20s %-9s %-10s %-19s %5s %5s %5s\n", "RUN", "JOB", "KIND", "STATUS", "STARTED", "VMS", "OK",
               "FAIL");
        json_array_foreach(reply, i, r)
        {
                char buf[32];
                const json_t *vms = json_object_get(r, "vms");

                printf("%-6" JSON_INTEGER_FORMAT " %-20s %-9s %-10s %-19s %5" JSON_INTEGER_FORMAT
                       " %5" JSON_INTEGER_FORMAT " %5" JSON_INTEGER_FORMAT "\n",
                       json_integer_value(json_object_get(r, "id")), str(r, "job"), str(r, "kind"), str(r, "status"),
                       when(json_integer_value(json_object_get(r, "started")), buf, sizeof(buf)),
                       json_integer_value(json_object_get(vms, "total")),
                       json_integer_value(json_object_get(vms, "succeeded")),
                       json_integer_value(json_object_get(vms, "failed")));
        }
        json_decref(reply);
        return 0;
}

/* ---- show ---- */

static void print_vms(const json_t *vms)
{
        size_t i;
        json_t *v;

        printf("%-24s %-24s %-10s %4s %-7s %s\n", "VM", "TITLE", "STATUS", "TRY", "ERROR", "RESTORE POINT / MESSAGE");
        json_array_foreach(vms, i, v)
        {
                const char *rp = str(v, "restore_point"), *msg = str(v, "message");

                printf("%-24s %-24s %-10s %4" JSON_INTEGER_FORMAT " %-7s %s\n", str(v, "vm"), str(v, "title"),
                       str(v, "status"), json_integer_value(json_object_get(v, "attempts")),
                       json_integer_value(json_object_get(v, "error_code"))
                               ? vb_error_name((vb_error)json_integer_value(json_object_get(v, "error_code")))
                               : "",
                       rp[0] ? rp : msg);
        }
}

static int cmd_show(args *a, int64_t id)
{
        char path[128];
        json_t *reply = NULL;
        int k;

        if (a->follow)
                return vb_cli_run_follow(a->socket, id, a->json);
        snprintf(path, sizeof(path), "/v1/runs/%" PRId64 "%s", id, a->vms ? "/vms" : "");
        k = vb_cli_call(a->socket, "GET", path, NULL, &reply);
        if (k)
                return k;
        if (a->json)
                return vb_cli_print_json(reply);
        if (a->vms) {
                print_vms(reply);
        } else {
                char b1[32], b2[32];
                const json_t *vms = json_object_get(reply, "vms");

                printf("run %" JSON_INTEGER_FORMAT ": job %s, %s, %s\n",
                       json_integer_value(json_object_get(reply, "id")), str(reply, "job"), str(reply, "kind"),
                       str(reply, "status"));
                printf("  started %s, ended %s\n", when(json_integer_value(json_object_get(reply, "started")), b1, 32),
                       when(json_integer_value(json_object_get(reply, "ended")), b2, 32));
                printf("  VMs: %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT " succeeded, %" JSON_INTEGER_FORMAT
                       " failed, %" JSON_INTEGER_FORMAT " skipped)\n",
                       json_integer_value(json_object_get(vms, "total")),
                       json_integer_value(json_object_get(vms, "succeeded")),
                       json_integer_value(json_object_get(vms, "failed")),
                       json_integer_value(json_object_get(vms, "skipped")));
                if (str(reply, "message")[0])
                        printf("  %s\n", str(reply, "message"));
                print_vms(json_object_get(reply, "results"));
        }
        json_decref(reply);
        return 0;
}

/* ---- retry ---- */

static int cmd_retry(args *a, int64_t id)
{
        char path[128];
        json_t *reply = NULL, *body;
        int k;

        if (a->failed == (json_array_size(a->names) > 0))
                return vb_cli_fail(VB_E_USAGE, "vbak run retry needs --failed or --vm NAME (one of them)");
        body = a->failed ? json_pack("{s:b}", "failed", true) : json_pack("{s:O}", "vms", a->names);
        snprintf(path, sizeof(path), "/v1/runs/%" PRId64 "/retry", id);
        k = vb_cli_call(a->socket, "POST", path, body, &reply);
        json_decref(body);
        if (k)
                return k;
        if (a->follow) {
                json_decref(reply);
                return vb_cli_run_follow(a->socket, id, a->json);
        }
        if (a->json)
                return vb_cli_print_json(reply);
        printf("run %" PRId64 ": retrying\n", id);
        json_decref(reply);
        return 0;
}

int vb_cli_run(int argc, char **argv)
{
        args a;
        int k;
        const char *verb;
        int64_t id = 0;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(help_text, argc < 2 ? stderr : stdout);
                return argc < 2 ? VB_E_USAGE : 0;
        }
        verb = argv[1];
        k = parse(argc - 1, argv + 1, &a);
        if (k) {
                json_decref(a.names);
                return k < 0 ? 0 : k;
        }
        if (!streq(verb, "list")) {
                if (argc - 1 - a.first != 1 || (id = run_id_of(argv[1 + a.first])) < 0) {
                        json_decref(a.names);
                        return vb_cli_fail(VB_E_USAGE, "vbak run %s needs one RUN id (see --help)", verb);
                }
        } else if (argc - 1 - a.first != 0) {
                json_decref(a.names);
                return vb_cli_fail(VB_E_USAGE, "vbak run list takes no operand (see --help)");
        }
        if (streq(verb, "list"))
                k = cmd_list(&a);
        else if (streq(verb, "show"))
                k = cmd_show(&a, id);
        else if (streq(verb, "retry"))
                k = cmd_retry(&a, id);
        else
                k = vb_cli_fail(VB_E_USAGE, "vbak run: unknown verb '%s' (see --help)", verb);
        json_decref(a.names);
        return k;
}

/* ---- --follow ---- */

static void bar(char *buf, size_t width, uint64_t done, uint64_t total)
{
        size_t fill = total ? (size_t)((double)done / (double)total * (double)width) : 0;

        for (size_t i = 0; i < width; i++)
                buf[i] = i < fill ? '#' : '.';
        buf[width] = '\0';
}

static void human_rate(double rate, char *buf, size_t size)
{
        if (rate >= 1 << 20)
                snprintf(buf, size, "%.1f MiB/s", rate / (1 << 20));
        else
                snprintf(buf, size, "%.0f KiB/s", rate / 1024);
}

/* Redraws the block of lines on a terminal. */
static unsigned draw(const json_t *p, unsigned prev_lines)
{
        size_t i;
        json_t *v;
        unsigned lines = 0;
        char b[41], r[32];

        for (unsigned k = 0; k < prev_lines; k++)
                fputs("\033[A\033[2K", stderr);
        json_array_foreach(json_object_get(p, "vms"), i, v)
        {
                json_int_t done = json_integer_value(json_object_get(v, "bytes_done"));
                json_int_t total = json_integer_value(json_object_get(v, "bytes_total"));
                json_t *eta = json_object_get(v, "eta");

                bar(b, 30, (uint64_t)done, (uint64_t)total);
                human_rate(json_number_value(json_object_get(v, "rate")), r, sizeof(r));
                fprintf(stderr, "%-20.20s %-10s [%s] %3d%% %10s", str(v, "title")[0] ? str(v, "title") : str(v, "vm"),
                        str(v, "status"), b, total ? (int)(done * 100 / total) : 0, r);
                if (json_is_integer(eta))
                        fprintf(stderr, " ETA %" JSON_INTEGER_FORMAT "s", json_integer_value(eta));
                fprintf(stderr, "  %s\n", str(v, "step"));
                lines++;
        }
        return lines;
}

/* Off a terminal: a line per change of a VM's status or step. */
static void log_changes(const json_t *p, json_t *seen)
{
        size_t i;
        json_t *v;

        json_array_foreach(json_object_get(p, "vms"), i, v)
        {
                char key[64], what[512];
                const char *old;

                snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(v, "id")));
                snprintf(what, sizeof(what), "%s: %s", str(v, "status"), str(v, "step"));
                old = json_string_value(json_object_get(seen, key));
                if (old && streq(old, what))
                        continue;
                fprintf(stderr, "vm %s %s\n", str(v, "vm"), what);
                json_object_set_new(seen, key, json_string(what));
        }
}

/* The exit code a finished run deserves: 0, or its first failed VM's code. */
static int run_exit_code(const json_t *run)
{
        size_t i;
        json_t *v;

        if (streq(str(run, "status"), "stopped"))
                return VB_E_INTERRUPTED;
        json_array_foreach(json_object_get(run, "results"), i, v) if (streq(str(v, "status"), "failed")) return (
                int)json_integer_value(json_object_get(v, "error_code"))
                ?: VB_E_FAILED;
        return (int)json_integer_value(json_object_get(run, "error_code"));
}

int vb_cli_run_follow(const char *socket, int64_t id, bool json)
{
        bool tty = !json && isatty(STDERR_FILENO);
        json_t *seen = json_object();
        uint64_t gen = 0;
        bool have_gen = false;
        unsigned lines = 0;

        for (;;) {
                char path[128];
                json_t *reply = NULL;
                int k;

                if (have_gen)
                        snprintf(path, sizeof(path), "/v1/runs/%" PRId64 "/progress?since=%" PRIu64, id, gen);
                else
                        snprintf(path, sizeof(path), "/v1/runs/%" PRId64 "/progress", id);
                k = vb_cli_call(socket, "GET", path, NULL, &reply);
                if (k) {
                        json_decref(seen);
                        return k;
                }
                if (!json_object_get(reply, "generation")) { /* finished: the run as recorded */
                        if (tty)
                                for (unsigned n = 0; n < lines; n++)
                                        fputs("\033[A\033[2K", stderr);
                        k = run_exit_code(reply);
                        if (json) {
                                json_dumpf(reply, stdout, JSON_COMPACT);
                                fputc('\n', stdout);
                        } else {
                                fprintf(stderr, "run %" PRId64 " %s\n", id, str(reply, "status"));
                                print_vms(json_object_get(reply, "results"));
                        }
                        json_decref(reply);
                        json_decref(seen);
                        return k;
                }
                gen = (uint64_t)json_integer_value(json_object_get(reply, "generation"));
                have_gen = true;
                if (json) {
                        json_dumpf(reply, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                        fflush(stdout);
                } else if (tty) {
                        lines = draw(reply, lines);
                } else {
                        log_changes(reply, seen);
                }
                json_decref(reply);
        }
}
