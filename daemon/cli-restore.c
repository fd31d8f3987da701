/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-restore.c -- `vbak restore VERB`: restores through vbakd's control
 * API (/v1/restores, docs/api.md), and --follow, the live view of one.
 *
 * DESIGN
 * - The command line only shapes the request (restorer.h): the options
 *   become its settings as typed, and the daemon is the one place that
 *   checks them (its error names the field). Settings given once apply to
 *   every RESTORE-POINT (a batch); only the VM's new name and the pool are
 *   put on the items themselves, as the request's own "name" is the
 *   restore's label.
 * - Nothing is restored unconfirmed: the plan (POST /v1/restores/plan) is
 *   printed first, what is created, overwritten, shut down or deleted in
 *   plain words, then the user is asked on a terminal, or --yes says yes.
 *   Without a terminal and without --yes the plan is all that happens (a
 *   dry run that exits E2). Only then is the same request sent with
 *   "confirm": true; what the daemon plans at that moment is what runs.
 * - --follow long-polls GET /v1/restores/ID/progress?since=G as `vbak run
 *   --follow` does for runs: bars per item on a terminal, a line per change
 *   in a log, one JSON line per answer with --json. A restore that waits
 *   (for its time) is asked again every WAIT_POLL_MS, since the daemon
 *   has no progress to push before it runs.
 */
#include "daemon/cli-restore.h"

#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cli-common.h"
#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/util.h"

#define WAIT_POLL_MS 1000

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_POOL,
        OPT_ORIGINAL,
        OPT_NEW,
        OPT_PLATFORM,
        OPT_HOST,
        OPT_NAME,
        OPT_PREFIX,
        OPT_SUFFIX,
        OPT_STORAGE_POOL,
        OPT_PREALLOCATION,
        OPT_SUBDIR,
        OPT_SUBDIR_IS_NAME,
        OPT_DISK_SETTING,
        OPT_DISKS,
        OPT_NIC,
        OPT_CPUS,
        OPT_CORES,
        OPT_CPU_MODE,
        OPT_MEMORY,
        OPT_OVERWRITE,
        OPT_KEEP_MAC,
        OPT_POWER_ON,
        OPT_SET,
        OPT_AT,
        OPT_MANUAL,
        OPT_NAME_RESTORE,
        OPT_YES,
        OPT_FOLLOW,
        OPT_DISK,
        OPT_VM,
        OPT_VOLUME,
        OPT_RESTART,
        OPT_STATUS,
        OPT_LIMIT,
};

/* The bit of an option in a verb's mask. */
#define BIT(opt) (UINT64_C(1) << ((opt)-OPT_SOCKET))
#define WHEN (BIT(OPT_SET) | BIT(OPT_AT) | BIT(OPT_MANUAL) | BIT(OPT_NAME_RESTORE) | BIT(OPT_YES) | BIT(OPT_FOLLOW))
#define VM_OPTS                                                                                                        \
        (BIT(OPT_POOL) | BIT(OPT_ORIGINAL) | BIT(OPT_NEW) | BIT(OPT_PLATFORM) | BIT(OPT_HOST) | BIT(OPT_NAME) |        \
         BIT(OPT_PREFIX) | BIT(OPT_SUFFIX) | BIT(OPT_STORAGE_POOL) | BIT(OPT_PREALLOCATION) | BIT(OPT_SUBDIR) |        \
         BIT(OPT_SUBDIR_IS_NAME) | BIT(OPT_DISK_SETTING) | BIT(OPT_DISKS) | BIT(OPT_NIC) | BIT(OPT_CPUS) |             \
         BIT(OPT_CORES) | BIT(OPT_CPU_MODE) | BIT(OPT_MEMORY) | BIT(OPT_OVERWRITE) | BIT(OPT_KEEP_MAC) |               \
         BIT(OPT_POWER_ON) | WHEN)
#define DISK_OPTS                                                                                                      \
        (BIT(OPT_POOL) | BIT(OPT_ORIGINAL) | BIT(OPT_NEW) | BIT(OPT_PLATFORM) | BIT(OPT_NAME) |                        \
         BIT(OPT_STORAGE_POOL) | BIT(OPT_PREALLOCATION) | BIT(OPT_SUBDIR) | BIT(OPT_DISK) | BIT(OPT_VM) |              \
         BIT(OPT_VOLUME) | BIT(OPT_RESTART) | WHEN)

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        { "pool", required_argument, NULL, OPT_POOL },
        { "original", no_argument, NULL, OPT_ORIGINAL },
        { "new", no_argument, NULL, OPT_NEW },
        { "platform", required_argument, NULL, OPT_PLATFORM },
        { "host", required_argument, NULL, OPT_HOST },
        { "name", required_argument, NULL, OPT_NAME },
        { "prefix", required_argument, NULL, OPT_PREFIX },
        { "suffix", required_argument, NULL, OPT_SUFFIX },
        { "storage-pool", required_argument, NULL, OPT_STORAGE_POOL },
        { "preallocation", required_argument, NULL, OPT_PREALLOCATION },
        { "subdir", required_argument, NULL, OPT_SUBDIR },
        { "subdir-is-name", no_argument, NULL, OPT_SUBDIR_IS_NAME },
        { "disk-setting", required_argument, NULL, OPT_DISK_SETTING },
        { "disks", required_argument, NULL, OPT_DISKS },
        { "nic", required_argument, NULL, OPT_NIC },
        { "cpus", required_argument, NULL, OPT_CPUS },
        { "cores", required_argument, NULL, OPT_CORES },
        { "cpu-mode", required_argument, NULL, OPT_CPU_MODE },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "overwrite", no_argument, NULL, OPT_OVERWRITE },
        { "keep-mac", no_argument, NULL, OPT_KEEP_MAC },
        { "power-on", no_argument, NULL, OPT_POWER_ON },
        { "set", required_argument, NULL, OPT_SET },
        { "at", required_argument, NULL, OPT_AT },
        { "manual", no_argument, NULL, OPT_MANUAL },
        { "name-restore", required_argument, NULL, OPT_NAME_RESTORE },
        { "yes", no_argument, NULL, OPT_YES },
        { "follow", no_argument, NULL, OPT_FOLLOW },
        { "disk", required_argument, NULL, OPT_DISK },
        { "vm", required_argument, NULL, OPT_VM },
        { "volume", required_argument, NULL, OPT_VOLUME },
        { "restart", no_argument, NULL, OPT_RESTART },
        { "status", required_argument, NULL, OPT_STATUS },
        { "limit", required_argument, NULL, OPT_LIMIT },
        {},
};

/* What the options of one command line said. */
typedef struct args {
        const char *socket;
        bool json, yes, follow;
        const char *status, *limit; /* list */
        json_t *body;               /* the request's members the options set */
        json_t *item;               /* the members every item gets (pool, name) */
        char **operands;
        int n_operands;
} args;

typedef struct verb {
        const char *name;
        int min_operands, max_operands; /* max -1: any number */
        const char *operands;           /* what they are, for a refusal */
        uint64_t opts;                  /* BIT()s it takes besides --socket and --json */
        int (*run)(const struct verb *v, args *a);
        const char *usage; /* after "vbak restore " */
        const char *what;
} verb;

/* ---- printing ---- */

static const char *str(const json_t *j, const char *key)
{
        return json_string_value(json_object_get(j, key)) ?: "";
}

static json_int_t num(const json_t *j, const char *key)
{
        return json_integer_value(json_object_get(j, key));
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

/* ", " between the strings of a JSON array, on one line. */
static void print_list(FILE *f, const json_t *a)
{
        size_t i;
        json_t *v;

        json_array_foreach(a, i, v) fprintf(f, "%s%s", i ? ", " : "", json_string_value(v) ?: "?");
}

/* One item of a plan (vb_vmrestore_plan()'s answer), in plain words. */
static void print_plan_item(FILE *f, size_t n, const json_t *p)
{
        const json_t *t = json_object_get(p, "target"), *d, *s;
        bool original = streq(str(p, "path"), "original"), disk = streq(str(p, "kind"), "disk");
        size_t i;
        char size[32];

        fprintf(f, "%zu. %s %s, restore point %s\n", n, disk ? "disk of vm" : "vm", str(p, "vm"),
                str(p, "restore_point"));
        if (disk)
                fprintf(f, "   -> %s vm %s", original ? "its" : "onto", str(t, "name"));
        else if (original)
                fprintf(f, "   -> vm %s (original path)", str(t, "name"));
        else
                fprintf(f, "   -> %s vm %s", json_is_true(json_object_get(t, "exists")) ? "replacing" : "new",
                        str(t, "name"));
        if (str(t, "host")[0])
                fprintf(f, " on host %s", str(t, "host"));
        if (json_is_true(json_object_get(t, "exists")))
                fprintf(f, " (exists%s%s%s%s)", str(t, "id")[0] ? ", id " : "", str(t, "id"),
                        str(t, "state")[0] ? ", " : "", str(t, "state"));
        fputc('\n', f);
        json_array_foreach(json_object_get(p, "disks"), i, d)
        {
                const char *path = str(d, "path");

                vb_format_size((uint64_t)num(d, "size"), size, sizeof(size));
                fprintf(f, "   %-6s %-12s ", str(d, "device"), str(d, "action"));
                if (str(d, "pool")[0])
                        fprintf(f, "pool %s%s%s: ", str(d, "pool"), str(d, "subdir")[0] ? "/" : "", str(d, "subdir"));
                fprintf(f, "%s (%s", path[0] ? path : "?", size);
                if (str(d, "format")[0])
                        fprintf(f, ", %s", str(d, "format"));
                if (str(d, "prealloc")[0])
                        fprintf(f, ", %s", str(d, "prealloc"));
                fputs(")\n", f);
        }
        json_array_foreach(json_object_get(p, "actions"), i, s) fprintf(f, "   - %s\n", json_string_value(s) ?: "?");
        json_array_foreach(json_object_get(p, "warnings"), i, s)
                fprintf(f, "   warning: %s\n", json_string_value(s) ?: "?");
}

static void print_plan(FILE *f, const json_t *plan)
{
        size_t i;
        json_t *p;

        json_array_foreach(json_object_get(plan, "items"), i, p) print_plan_item(f, i + 1, p);
        if (json_is_true(json_object_get(plan, "overwrites")))
                fputs("This restore overwrites or deletes what exists (see above).\n", f);
}

static void print_item(const json_t *it)
{
        const json_t *v;

        printf("  #%" JSON_INTEGER_FORMAT " %s%s%s, restore point %s -> %s", num(it, "idx") + 1, str(it, "vm"),
               str(it, "disk")[0] ? " disk " : "", str(it, "disk"), str(it, "restore_point"), str(it, "target"));
        if (str(it, "host_id")[0])
                printf(" on host %s", str(it, "host_id"));
        printf(": %s", str(it, "status"));
        if (str(it, "target_vm_id")[0])
                printf(" (vm id %s)", str(it, "target_vm_id"));
        putchar('\n');
        if (num(it, "error_code"))
                printf("      E%" JSON_INTEGER_FORMAT " %s: %s\n", num(it, "error_code"),
                       vb_error_name((vb_error)num(it, "error_code")), str(it, "message"));
        else if (str(it, "message")[0])
                printf("      %s\n", str(it, "message"));
        if (json_array_size(v = json_object_get(it, "volumes")) > 0) {
                fputs("      volumes: ", stdout);
                print_list(stdout, v);
                putchar('\n');
        }
        if (json_array_size(v = json_object_get(it, "incomplete")) > 0) {
                fputs("      incomplete: ", stdout);
                print_list(stdout, v);
                putchar('\n');
        }
}

static void print_restore(const json_t *r)
{
        char b1[32], b2[32], b3[32], label[64];
        const json_t *items = json_object_get(r, "items"), *it, *counts = json_object_get(r, "counts");
        bool named;
        size_t i;

        /* The label only when it is not the default "restore ID". */
        snprintf(label, sizeof(label), "restore %" JSON_INTEGER_FORMAT, num(r, "id"));
        named = str(r, "name")[0] && !streq(label, str(r, "name"));
        printf("%s%s%s%s: %s, %s path, %s\n", label, named ? " (" : "", named ? str(r, "name") : "", named ? ")" : "",
               str(r, "kind"), str(r, "path"), str(r, "status"));
        printf("  schedule %s", str(r, "schedule"));
        if (num(r, "at") > 0)
                printf(" at %s", when(num(r, "at"), b1, sizeof(b1)));
        printf("; created %s, started %s, ended %s\n", when(num(r, "created"), b1, sizeof(b1)),
               when(num(r, "started"), b2, sizeof(b2)), when(num(r, "ended"), b3, sizeof(b3)));
        if (json_is_object(counts))
                printf("  items: %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT " succeeded, %" JSON_INTEGER_FORMAT
                       " failed)\n",
                       num(counts, "total"), num(counts, "succeeded"), num(counts, "failed"));
        if (num(r, "error_code"))
                printf("  E%" JSON_INTEGER_FORMAT " %s: %s\n", num(r, "error_code"),
                       vb_error_name((vb_error)num(r, "error_code")), str(r, "message"));
        else if (str(r, "message")[0])
                printf("  %s\n", str(r, "message"));
        json_array_foreach(items, i, it) print_item(it);
}

/* ---- talking to the daemon ---- */

static int64_t id_of(const char *s)
{
        char *end;
        long long v = strtoll(s, &end, 10);

        return !s[0] || *end || v <= 0 ? -1 : v;
}

/* POST /v1/restores/plan: 0 with *ret_plan, or the exit code; a refusal
 * that came with a plan (a VM of that name exists) shows the plan too. */
static int get_plan(const args *a, json_t **ret_plan)
{
        _cleanup_free_ char *message = NULL;
        json_t *reply = NULL, *plan;
        vb_error r = vb_client_call(a->socket, "POST", "/v1/restores/plan", a->body, &reply, &message);

        *ret_plan = NULL;
        if (r != VB_OK) {
                plan = json_object_get(reply, "plan");
                if (plan && a->json) {
                        /* One document: the error with its plan. */
                        fprintf(stderr, "vbak: %s [E%d %s]\n", message ?: "failed", r, vb_error_name(r));
                        vb_cli_print_json(reply);
                        return r;
                }
                if (plan)
                        print_plan(stdout, plan);
                json_decref(reply);
                return vb_cli_fail(r, "%s", message ?: "failed");
        }
        plan = json_object_get(reply, "plan");
        if (!json_is_object(plan)) {
                json_decref(reply);
                return vb_cli_fail(VB_E_PROTOCOL, "the daemon's answer has no plan");
        }
        *ret_plan = json_incref(plan);
        json_decref(reply);
        return 0;
}

/* Asks on the terminal; true for y or yes. */
static bool ask(void)
{
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        ssize_t n;

        fputs("Restore? [y/N] ", stderr);
        fflush(stderr);
        n = getline(&line, &size, stdin);
        if (n <= 0)
                return false;
        while (n > 0 && isspace((unsigned char)line[n - 1]))
                line[--n] = '\0';
        return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

/* Shows the plan and gets the confirmation: 0 to go on, or the exit code. */
static int confirm(const args *a)
{
        json_t *plan;
        int r = get_plan(a, &plan);

        if (r)
                return r;
        if (a->json) {
                static const char msg[] = "not confirmed: pass --yes to restore";

                if (a->yes) {
                        json_decref(plan);
                        return 0;
                }
                /* One document on stdout, as the API's refusal: the error and the plan. */
                fprintf(stderr, "vbak: %s [E%d %s]\n", msg, VB_E_USAGE, vb_error_name(VB_E_USAGE));
                vb_cli_print_json(json_pack("{s:{s:i, s:s, s:s, s:s}, s:o}", "error", "code", VB_E_USAGE, "name",
                                            vb_error_name(VB_E_USAGE), "message", msg, "field", "confirm", "plan",
                                            plan));
                return VB_E_USAGE;
        }
        print_plan(stdout, plan);
        json_decref(plan);
        fflush(stdout);
        if (a->yes)
                return 0;
        if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
                return vb_cli_fail(VB_E_USAGE, "not confirmed: pass --yes to restore without a terminal");
        if (!ask())
                return vb_cli_fail(VB_E_INTERRUPTED, "not confirmed: nothing was restored");
        return 0;
}

/* ---- restore vm, restore disk ---- */

static int create(const verb *v, args *a)
{
        json_t *items = json_array(), *reply = NULL;
        json_int_t id;
        int r;

        if (!items)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        if (json_object_get(a->item, "name") && a->n_operands > 1 && streq(v->name, "vm")) {
                json_decref(items);
                return vb_cli_fail(VB_E_USAGE, "--name names one VM: give one RESTORE-POINT, or --prefix/--suffix");
        }
        if (a->follow && streq(str(a->body, "schedule"), "manual")) {
                json_decref(items);
                return vb_cli_fail(VB_E_USAGE, "--follow with --manual: nothing runs before vbak restore start ID "
                                               "(which takes --follow)");
        }
        for (int i = 0; i < a->n_operands; i++) {
                json_t *it = json_deep_copy(a->item);

                if (!it || json_object_set_new(it, "restore_point", json_string(a->operands[i])) < 0 ||
                    json_array_append_new(items, it) < 0) {
                        json_decref(items);
                        return vb_cli_fail(VB_E_FAILED, "out of memory");
                }
        }
        json_object_set_new(a->body, "kind", json_string(v->name));
        json_object_set_new(a->body, "items", items);
        r = confirm(a);
        if (r)
                return r;
        json_object_set_new(a->body, "confirm", json_true());
        r = vb_cli_call(a->socket, "POST", "/v1/restores", a->body, &reply);
        if (r)
                return r;
        id = num(reply, "id");
        if (id <= 0) {
                json_decref(reply);
                return vb_cli_fail(VB_E_PROTOCOL, "the daemon's answer has no restore id");
        }
        /* With --follow --json, stdout carries the progress lines only. */
        if (a->json && !a->follow)
                return vb_cli_print_json(reply);
        if (!a->json) {
                printf("%" JSON_INTEGER_FORMAT "\n", id);
                fflush(stdout);
                if (!a->follow && !streq(str(reply, "schedule"), "now"))
                        fprintf(stderr, "restore %" JSON_INTEGER_FORMAT " %s (%s)%s\n", id, str(reply, "status"),
                                str(reply, "schedule"),
                                streq(str(reply, "schedule"), "manual") ? ": vbak restore start ID runs it" : "");
        }
        json_decref(reply);
        if (a->follow)
                return vb_cli_restore_follow(a->socket, (int64_t)id, a->json);
        return 0;
}

/* ---- list, show, start, stop ---- */

static int v_list(const verb *v, args *a)
{
        char path[512] = "/v1/restores", *p = path + strlen(path), sep = '?';
        json_t *reply = NULL, *r;
        size_t i;
        int k;

        if (a->status) {
                if (strspn(a->status, "abcdefghijklmnopqrstuvwxyz,") != strlen(a->status))
                        return vb_cli_fail(VB_E_USAGE,
                                           "--status %s: statuses are words (waiting, running, "
                                           "succeeded, partial, failed, stopped, skipped)",
                                           a->status);
                p += snprintf(p, sizeof(path) - (size_t)(p - path), "%cstatus=%s", sep, a->status);
                sep = '&';
        }
        if (a->limit) {
                if (id_of(a->limit) < 0)
                        return vb_cli_fail(VB_E_USAGE, "--limit %s: not a count", a->limit);
                snprintf(p, sizeof(path) - (size_t)(p - path), "%climit=%s", sep, a->limit);
        }
        k = vb_cli_call(a->socket, "GET", path, NULL, &reply);
        if (k)
                return k;
        if (a->json)
                return vb_cli_print_json(reply);
        if (json_array_size(reply) == 0) {
                printf("no restore (vbak restore vm|disk)\n");
                json_decref(reply);
                return 0;
        }
        printf("%-6s %-20s %-5s %-9s %-10s %-19s %5s %5s %5s\n", "ID", "NAME", "KIND", "PATH", "STATUS", "STARTED",
               "ITEMS", "OK", "FAIL");
        json_array_foreach(reply, i, r)
        {
                char buf[32];
                const json_t *c = json_object_get(r, "counts");

                printf("%-6" JSON_INTEGER_FORMAT " %-20s %-5s %-9s %-10s %-19s %5" JSON_INTEGER_FORMAT
                       " %5" JSON_INTEGER_FORMAT " %5" JSON_INTEGER_FORMAT "\n",
                       num(r, "id"), str(r, "name"), str(r, "kind"), str(r, "path"), str(r, "status"),
                       when(num(r, "started"), buf, sizeof(buf)), num(c, "total"), num(c, "succeeded"),
                       num(c, "failed"));
        }
        json_decref(reply);
        return 0;
}

/* The restore id of the first operand: 0, or the exit code. */
static int take_id(const verb *v, const args *a, int64_t *ret)
{
        *ret = id_of(a->operands[0]);
        if (*ret < 0)
                return vb_cli_fail(VB_E_USAGE, "vbak restore %s: '%s' is not a restore id", v->name, a->operands[0]);
        return 0;
}

static int v_show(const verb *v, args *a)
{
        char path[128];
        json_t *reply = NULL;
        int64_t id;
        int k = take_id(v, a, &id);

        if (k)
                return k;
        if (a->follow)
                return vb_cli_restore_follow(a->socket, id, a->json);
        snprintf(path, sizeof(path), "/v1/restores/%" PRId64, id);
        k = vb_cli_call(a->socket, "GET", path, NULL, &reply);
        if (k)
                return k;
        if (a->json)
                return vb_cli_print_json(reply);
        print_restore(reply);
        json_decref(reply);
        return 0;
}

static int v_start(const verb *v, args *a)
{
        char path[128];
        json_t *reply = NULL;
        int64_t id;
        int k = take_id(v, a, &id);

        if (k)
                return k;
        snprintf(path, sizeof(path), "/v1/restores/%" PRId64 "/start", id);
        k = vb_cli_call(a->socket, "POST", path, NULL, &reply);
        if (k)
                return k;
        if (a->follow) {
                json_decref(reply);
                return vb_cli_restore_follow(a->socket, id, a->json);
        }
        if (a->json)
                return vb_cli_print_json(reply);
        printf("restore %" PRId64 ": %s\n", id, str(reply, "status"));
        json_decref(reply);
        return 0;
}

static int v_stop(const verb *v, args *a)
{
        char path[128];
        json_t *reply = NULL;
        int64_t id;
        int k = take_id(v, a, &id);

        if (k)
                return k;
        snprintf(path, sizeof(path), "/v1/restores/%" PRId64 "/stop", id);
        k = vb_cli_call(a->socket, "POST", path, NULL, &reply);
        if (k)
                return k;
        if (a->json)
                return vb_cli_print_json(reply);
        printf("restore %" PRId64 ": stopping (items not started fail, the others finish)\n", id);
        json_decref(reply);
        return 0;
}

static const verb verbs[] = {
        { "vm", 1, -1, "one or more RESTORE-POINTs", VM_OPTS, create,
          "vm RESTORE-POINT... [--pool P] [--original | --new] [--platform NAME] [--host H]\n"
          "           [--name N | --prefix P --suffix S] [--storage-pool P] [--preallocation thin|lazy|eager]\n"
          "           [--subdir D | --subdir-is-name] [--disk-setting DEV:KEY=VALUE,...]... [--disks DEV,DEV]\n"
          "           [--nic VSWITCH[:PROFILE]]... [--cpus N] [--cores N] [--cpu-mode M] [--memory MB]\n"
          "           [--overwrite] [--keep-mac] [--power-on] [--set OPTION=VALUE]...\n"
          "           [--at TIME | --manual] [--name-restore LABEL] [--yes] [--follow]",
          "Restores whole VMs: each RESTORE-POINT (an id from vbak restore-point list) is one VM, all\n"
          "restored with the same settings. The plan -- what is created, overwritten, shut down or\n"
          "deleted -- is shown first, and the restore runs once confirmed.\n\n"
          "  --pool P              the pool holding the restore points (when more than one holds an id)\n"
          "  --new                 a new VM, with the settings below (the default)\n"
          "  --original            the VM itself: shut down, its definition replaced by the captured one,\n"
          "                        the chosen disks written back into their files\n"
          "  --platform NAME       the target platform (default: the one the backup was made on)\n"
          "New path:\n"
          "  --host H              the host (id) it goes to (default: the original host)\n"
          "  --name N              the new VM's name (one RESTORE-POINT only; default: the original)\n"
          "  --prefix P, --suffix S  the original name with these around it\n"
          "  --storage-pool P      the platform's storage pool for every disk (default: each disk's own)\n"
          "  --preallocation X     thin, lazy (lazy-zeroed) or eager (eager-zeroed)\n"
          "  --subdir D            a sub-directory of the storage pool (letters, digits, - _ .)\n"
          "  --subdir-is-name      the sub-directory is the VM's new name\n"
          "  --disk-setting DEV:KEY=VALUE,...  one disk's own settings (repeat per disk): pool, name,\n"
          "                        subdir, preallocation, volume (an existing volume to write into:\n"
          "                        raw disks on block pools)\n"
          "  --nic VSWITCH[:PROFILE]  the NICs in order, each on a vSwitch with a network policy\n"
          "                        template (repeat; default: as captured)\n"
          "  --cpus N, --cores N   CPU sockets, cores per socket\n"
          "  --cpu-mode M          compatible, host-match or passthrough\n"
          "  --memory MB           memory in MiB (or with a unit: 4GiB)\n"
          "  --overwrite           replace a VM of the same name: shut down and deleted, its volumes kept\n"
          "Both paths:\n"
          "  --disks DEV,DEV       only these disks (the plan says what becomes of the others)\n"
          "  --keep-mac            original path: keep the captured MAC addresses\n"
          "  --power-on            start the VM once restored\n" },
        { "disk", 1, 1, "one RESTORE-POINT", DISK_OPTS, create,
          "disk RESTORE-POINT --disk DEV [--pool P] [--original | --new --vm TARGET] [--platform NAME]\n"
          "           [--storage-pool P] [--name N] [--preallocation X] [--volume PATH] [--subdir D]\n"
          "           [--restart] [--set OPTION=VALUE]... [--at TIME | --manual] [--name-restore LABEL]\n"
          "           [--yes] [--follow]",
          "Restores one disk of a restore point.\n\n"
          "  --disk DEV            the disk of the restore point (vda)\n"
          "  --pool P              the pool holding the restore point (when more than one holds its id)\n"
          "  --original            over the disk the VM has, or re-created and attached when it was\n"
          "                        deleted; a running VM is shut down first (the restore fails when\n"
          "                        that takes longer than 10 s)\n"
          "  --new --vm TARGET     a new disk on the VM TARGET (name, id or uuid); the default path\n"
          "  --platform NAME       the target platform (default: the one the backup was made on)\n"
          "  --storage-pool P, --name N, --subdir D, --preallocation thin|lazy|eager\n"
          "                        where the new volume goes\n"
          "  --volume PATH         an existing volume to write into instead of a new one\n"
          "  --restart             start the VM afterwards (a running one is shut down first)\n" },
        { "list", 0, 0, "no operand", BIT(OPT_STATUS) | BIT(OPT_LIMIT), v_list, "list [--status S[,S...]] [--limit N]",
          "Lists the restores, newest first. --status takes waiting, running, succeeded, partial,\n"
          "failed, stopped, skipped.\n" },
        { "show", 1, 1, "one restore ID", BIT(OPT_FOLLOW), v_show, "show ID [--follow]",
          "Shows a restore and its items: status, error code and message, target, the volumes\n"
          "written and the ones left incomplete.\n\n"
          "  --follow              show its progress until it ends; the exit code is the restore's\n" },
        { "start", 1, 1, "one restore ID", BIT(OPT_FOLLOW), v_start, "start ID [--follow]",
          "Starts a restore that waits (created with --manual, or --at a time still to come).\n\n"
          "  --follow              show its progress until it ends; the exit code is the restore's\n" },
        { "stop", 1, 1, "one restore ID", 0, v_stop, "stop ID",
          "Stops a running restore: items not started fail (interrupted), the others finish.\n" },
};

static const char when_help[] =
        "When and how:\n"
        "  --set OPTION=VALUE    a restore option (repeat): parallel_vms (2, 1-32), parallel_vms_per_host\n"
        "                        (2, 1-10), parallel_disks (1, 1-5), write_buffer, disk_write_rate,\n"
        "                        transfer_rate, network, reconnect_window, resume_buffer,\n"
        "                        network_timeout, streams_per_disk, transport_log_level, precondition,\n"
        "                        pre_script, post_script, script_timeout (as the job options of\n"
        "                        docs/job-options.md; write_buffer and disk_write_rate stand for\n"
        "                        read_buffer and disk_read_rate)\n"
        "  --at TIME             run once at TIME (docs/schedules.md) instead of now\n"
        "  --manual              run only on vbak restore start ID\n"
        "  --name-restore LABEL  the restore's label (default \"restore N\")\n"
        "  --yes                 do not ask: print the plan and restore (needed without a terminal\n"
        "                        and with --json; without it, only the plan is printed)\n"
        "  --follow              show the progress until it ends; the exit code is the restore's\n"
        "                        (0 when every item succeeded, else the first failed item's code)\n";

static void verb_help(const verb *v, FILE *f)
{
        fprintf(f, "Usage: vbak restore %s [--socket PATH] [--json]\n%s", v->usage, v->what);
        if (v->opts & BIT(OPT_YES))
                fputs(when_help, f);
        fputs("\n  --socket PATH         vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json                the answer as JSON\n"
              "Exit codes: docs/error-codes.md.\n",
              f);
}

static void restore_help(FILE *f)
{
        fputs("Usage: vbak restore VERB ... [--socket PATH] [--json]\n"
              "Restores through vbakd: whole VMs or single disks from the pools' restore points, each\n"
              "confirmed after its plan was shown.\n\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %s\n", verbs[i].usage);
        fputs("\nvbak restore VERB --help tells more.\n", f);
}

/* ---- the command line ---- */

static const char *option_name(int val)
{
        for (const struct option *o = options; o->name; o++)
                if (o->val == val)
                        return o->name;
        return "?";
}

/* The member key of body as an array (made when missing); NULL: out of memory. */
static json_t *array_member(json_t *body, const char *key)
{
        json_t *a = json_object_get(body, key);

        if (!a && json_object_set_new(body, key, a = json_array()) < 0)
                return NULL;
        return a;
}

/* A count for an option; 0 or the exit code. */
static int count_arg(json_t *body, const char *key, int opt, const char *s)
{
        int64_t n = id_of(s);

        if (n < 0 || n > 1000000)
                return vb_cli_fail(VB_E_USAGE, "--%s %s: not a count", option_name(opt), s);
        json_object_set_new(body, key, json_integer((json_int_t)n));
        return 0;
}

/* MiB, or a size with a unit. */
static int memory_arg(json_t *body, const char *s)
{
        uint64_t bytes;
        int64_t n = id_of(s);

        if (n < 0) {
                if (vb_parse_size(s, &bytes) < 0 || bytes < (1u << 20) || bytes % (1u << 20))
                        return vb_cli_fail(VB_E_USAGE, "--memory %s: MiB, or a size in whole MiB (4GiB)", s);
                n = (int64_t)(bytes >> 20);
        }
        json_object_set_new(body, "memory_mb", json_integer((json_int_t)n));
        return 0;
}

/* DEV:KEY=VALUE,... */
static int disk_setting_arg(json_t *body, const char *s)
{
        static const char *const keys[][2] = {
                { "pool", "storage_pool" },
                { "storage_pool", "storage_pool" },
                { "storage-pool", "storage_pool" },
                { "name", "name" },
                { "volume", "volume" },
                { "subdir", "subdir" },
                { "preallocation", "preallocation" },
                { "prealloc", "preallocation" },
        };
        const char *colon = strchr(s, ':');
        _cleanup_free_ char *rest = NULL;
        json_t *ds, *a;
        char *save = NULL;

        if (!colon || colon == s || !colon[1])
                return vb_cli_fail(VB_E_USAGE, "--disk-setting %s: expected DEV:KEY=VALUE[,KEY=VALUE...]", s);
        ds = json_pack("{s:s%}", "device", s, (size_t)(colon - s));
        rest = strdup(colon + 1);
        a = array_member(body, "disk_settings");
        if (!ds || !rest || !a || json_array_append_new(a, ds) < 0)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        for (char *kv = strtok_r(rest, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                const char *key = NULL;

                if (eq)
                        *eq = '\0';
                for (size_t i = 0; i < ELEMENTSOF(keys) && eq; i++)
                        if (streq(kv, keys[i][0]))
                                key = keys[i][1];
                if (!key || !eq[1])
                        return vb_cli_fail(VB_E_USAGE,
                                           "--disk-setting %s: '%s' is not KEY=VALUE with a KEY of pool, name, "
                                           "volume, subdir, preallocation",
                                           s, kv);
                json_object_set_new(ds, key, json_string(eq + 1));
        }
        return 0;
}

/* VSWITCH[:PROFILE] */
static int nic_arg(json_t *body, const char *s)
{
        const char *colon = strchr(s, ':');
        json_t *a = array_member(body, "nics"), *nic;

        if (!s[0] || colon == s || (colon && !colon[1]))
                return vb_cli_fail(VB_E_USAGE, "--nic %s: expected VSWITCH or VSWITCH:PROFILE", s);
        nic = colon ? json_pack("{s:s%, s:s}", "vswitch", s, (size_t)(colon - s), "profile", colon + 1)
                    : json_pack("{s:s}", "vswitch", s);
        if (!a || !nic || json_array_append_new(a, nic) < 0)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        return 0;
}

static int disks_arg(json_t *body, const char *s)
{
        _cleanup_free_ char *copy = strdup(s);
        json_t *a = array_member(body, "disks");
        char *save = NULL;

        if (!copy || !a)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save))
                json_array_append_new(a, json_string(w));
        if (json_array_size(a) == 0)
                return vb_cli_fail(VB_E_USAGE, "--disks %s: name the disks (vda,vdb)", s);
        return 0;
}

static int set_arg(json_t *body, const char *s)
{
        const char *eq = strchr(s, '=');
        _cleanup_free_ char *key = eq ? strndup(s, (size_t)(eq - s)) : NULL;
        json_t *o = json_object_get(body, "options");

        if (!eq || eq == s)
                return vb_cli_fail(VB_E_USAGE, "--set %s: expected OPTION=VALUE", s);
        if (!o && json_object_set_new(body, "options", o = json_object()) < 0)
                o = NULL;
        if (!key || !o)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        /* As typed: the daemon parses it as the job option of that name. */
        json_object_set_new(o, key, json_string(eq + 1));
        return 0;
}

/* Parses the command line of verb v; 0, -1 after --help, or an exit code. */
static int parse(const verb *v, int argc, char **argv, args *a)
{
        bool original = false, new_path = false;
        int c, k = 0;

        *a = (args){ .body = json_object(), .item = json_object() };
        if (!a->body || !a->item)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        optind = 1;
        while (k == 0 && (c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c >= OPT_SOCKET && c != OPT_SOCKET && c != OPT_JSON && !(v->opts & BIT(c)))
                        return vb_cli_fail(VB_E_USAGE,
                                           "vbak restore %s does not take --%s (see vbak restore %s --help)", v->name,
                                           option_name(c), v->name);
                switch (c) {
                case 'h':
                        verb_help(v, stdout);
                        return -1;
                case OPT_SOCKET:
                        a->socket = optarg;
                        break;
                case OPT_JSON:
                        a->json = vb_cli_json = true;
                        break;
                case OPT_POOL:
                        json_object_set_new(a->item, "pool", json_string(optarg));
                        break;
                case OPT_ORIGINAL:
                        original = true;
                        break;
                case OPT_NEW:
                        new_path = true;
                        break;
                case OPT_PLATFORM:
                        json_object_set_new(a->body, "platform", json_string(optarg));
                        break;
                case OPT_HOST:
                        json_object_set_new(a->body, "host", json_string(optarg));
                        break;
                case OPT_NAME: /* on the item: the request's own "name" is the restore's label */
                        json_object_set_new(a->item, "name", json_string(optarg));
                        break;
                case OPT_PREFIX:
                        json_object_set_new(a->body, "prefix", json_string(optarg));
                        break;
                case OPT_SUFFIX:
                        json_object_set_new(a->body, "suffix", json_string(optarg));
                        break;
                case OPT_STORAGE_POOL:
                        json_object_set_new(a->body, "storage_pool", json_string(optarg));
                        break;
                case OPT_PREALLOCATION:
                        json_object_set_new(a->body, "preallocation", json_string(optarg));
                        break;
                case OPT_SUBDIR:
                        json_object_set_new(a->body, "subdir", json_string(optarg));
                        break;
                case OPT_SUBDIR_IS_NAME:
                        json_object_set_new(a->body, "subdir_is_name", json_true());
                        break;
                case OPT_DISK_SETTING:
                        k = disk_setting_arg(a->body, optarg);
                        break;
                case OPT_DISKS:
                        k = disks_arg(a->body, optarg);
                        break;
                case OPT_NIC:
                        k = nic_arg(a->body, optarg);
                        break;
                case OPT_CPUS:
                        k = count_arg(a->body, "cpu_sockets", c, optarg);
                        break;
                case OPT_CORES:
                        k = count_arg(a->body, "cpu_cores", c, optarg);
                        break;
                case OPT_CPU_MODE:
                        json_object_set_new(a->body, "cpu_mode", json_string(optarg));
                        break;
                case OPT_MEMORY:
                        k = memory_arg(a->body, optarg);
                        break;
                case OPT_OVERWRITE:
                        json_object_set_new(a->body, "overwrite", json_true());
                        break;
                case OPT_KEEP_MAC:
                        json_object_set_new(a->body, "keep_mac", json_true());
                        break;
                case OPT_POWER_ON:
                        json_object_set_new(a->body, "power_on", json_true());
                        break;
                case OPT_SET:
                        k = set_arg(a->body, optarg);
                        break;
                case OPT_AT:
                        if (json_object_get(a->body, "schedule"))
                                return vb_cli_fail(VB_E_USAGE, "--at and --manual: one of them");
                        json_object_set_new(a->body, "schedule", json_pack("{s:s}", "once", optarg));
                        break;
                case OPT_MANUAL:
                        if (json_object_get(a->body, "schedule"))
                                return vb_cli_fail(VB_E_USAGE, "--at and --manual: one of them");
                        json_object_set_new(a->body, "schedule", json_string("manual"));
                        break;
                case OPT_NAME_RESTORE:
                        json_object_set_new(a->body, "name", json_string(optarg));
                        break;
                case OPT_YES:
                        a->yes = true;
                        break;
                case OPT_FOLLOW:
                        a->follow = true;
                        break;
                case OPT_DISK:
                        if (json_object_get(a->body, "disk"))
                                return vb_cli_fail(VB_E_USAGE, "--disk: one disk per restore");
                        json_object_set_new(a->body, "disk", json_string(optarg));
                        break;
                case OPT_VM:
                        json_object_set_new(a->body, "target_vm", json_string(optarg));
                        break;
                case OPT_VOLUME:
                        json_object_set_new(a->body, "volume", json_string(optarg));
                        break;
                case OPT_RESTART:
                        json_object_set_new(a->body, "restart", json_true());
                        break;
                case OPT_STATUS:
                        a->status = optarg;
                        break;
                case OPT_LIMIT:
                        a->limit = optarg;
                        break;
                default:
                        return vb_cli_fail(VB_E_USAGE, "bad option (see vbak restore %s --help)", v->name);
                }
        }
        if (k)
                return k;
        if (original && new_path)
                return vb_cli_fail(VB_E_USAGE, "--original and --new: one of them");
        if (json_object_get(a->body, "subdir") && json_object_get(a->body, "subdir_is_name"))
                return vb_cli_fail(VB_E_USAGE, "--subdir and --subdir-is-name: one of them");
        if (original || new_path)
                json_object_set_new(a->body, "path", json_string(original ? "original" : "new"));
        if (streq(v->name, "disk") && !json_object_get(a->body, "disk"))
                return vb_cli_fail(VB_E_USAGE, "vbak restore disk needs --disk DEV (see --help)");
        a->socket = vb_client_socket(a->socket);
        a->operands = argv + optind;
        a->n_operands = argc - optind;
        if (a->n_operands < v->min_operands || (v->max_operands >= 0 && a->n_operands > v->max_operands))
                return vb_cli_fail(VB_E_USAGE, "vbak restore %s takes %s (see vbak restore %s --help)", v->name,
                                   v->operands, v->name);
        return 0;
}

int vb_cli_restore(int argc, char **argv)
{
        const char *name = argc > 1 ? argv[1] : NULL;
        const verb *v = NULL;
        args a = {};
        int r;

        if (!name || streq(name, "--help") || streq(name, "-h")) {
                restore_help(name ? stdout : stderr);
                return name ? 0 : VB_E_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(name, verbs[i].name))
                        v = &verbs[i];
        if (!v)
                return vb_cli_fail(VB_E_USAGE, "unknown verb %s (see vbak restore --help)", name);
        r = parse(v, argc - 1, argv + 1, &a);
        if (r == 0)
                r = v->run(v, &a);
        json_decref(a.body);
        json_decref(a.item);
        return r < 0 ? 0 : r;
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

/* "vm -> target" of a progress item. */
static const char *label(const json_t *it, char *buf, size_t size)
{
        if (str(it, "target")[0] && !streq(str(it, "target"), str(it, "vm")))
                snprintf(buf, size, "%s -> %s", str(it, "vm"), str(it, "target"));
        else
                snprintf(buf, size, "%s", str(it, "vm"));
        return buf;
}

/* Redraws the block of lines on a terminal. */
static unsigned draw(const json_t *p, unsigned prev_lines)
{
        size_t i;
        json_t *it;
        unsigned lines = 0;
        char b[31], r[32], l[128];

        for (unsigned k = 0; k < prev_lines; k++)
                fputs("\033[A\033[2K", stderr);
        json_array_foreach(json_object_get(p, "items"), i, it)
        {
                json_int_t done = num(it, "bytes_done"), total = num(it, "bytes_total");
                json_t *eta = json_object_get(it, "eta");

                bar(b, 30, (uint64_t)done, (uint64_t)total);
                human_rate(json_number_value(json_object_get(it, "rate")), r, sizeof(r));
                fprintf(stderr, "%-28.28s %-10s [%s] %3d%% %10s", label(it, l, sizeof(l)), str(it, "status"), b,
                        total ? (int)(done * 100 / total) : 0, r);
                if (json_is_integer(eta))
                        fprintf(stderr, " ETA %" JSON_INTEGER_FORMAT "s", json_integer_value(eta));
                fprintf(stderr, "  %s\n", str(it, "step"));
                lines++;
        }
        return lines;
}

/* Off a terminal: a line per change of an item's status or step. */
static void log_changes(const json_t *p, json_t *seen)
{
        size_t i;
        json_t *it;

        json_array_foreach(json_object_get(p, "items"), i, it)
        {
                char key[64], what[512], l[128];
                const char *old;

                snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, num(it, "id"));
                snprintf(what, sizeof(what), "%s%s%s", str(it, "status"), str(it, "step")[0] ? ": " : "",
                         str(it, "step"));
                old = json_string_value(json_object_get(seen, key));
                if (old && streq(old, what))
                        continue;
                fprintf(stderr, "%s %s\n", label(it, l, sizeof(l)), what);
                json_object_set_new(seen, key, json_string(what));
        }
}

/* The exit code an ended restore deserves: 0, or its first failed item's code. */
static int restore_exit_code(const json_t *r)
{
        size_t i;
        json_t *it;

        if (streq(str(r, "status"), "stopped"))
                return VB_E_INTERRUPTED;
        json_array_foreach(json_object_get(r, "items"), i, it)
        {
                if (streq(str(it, "status"), "failed"))
                        return (int)num(it, "error_code") ?: VB_E_FAILED;
        }
        if (num(r, "error_code"))
                return (int)num(r, "error_code");
        return streq(str(r, "status"), "failed") ? VB_E_FAILED : 0;
}

int vb_cli_restore_follow(const char *socket, int64_t id, bool json)
{
        bool tty = !json && isatty(STDERR_FILENO);
        json_t *seen = json_object();
        uint64_t gen = 0;
        bool have_gen = false, said_waiting = false;
        unsigned lines = 0;

        for (;;) {
                char path[128];
                json_t *reply = NULL;
                const char *status;
                int k;

                if (have_gen)
                        snprintf(path, sizeof(path), "/v1/restores/%" PRId64 "/progress?since=%" PRIu64, id, gen);
                else
                        snprintf(path, sizeof(path), "/v1/restores/%" PRId64 "/progress", id);
                k = vb_cli_call(socket, "GET", path, NULL, &reply);
                if (k) {
                        json_decref(seen);
                        return k;
                }
                if (!json_object_get(reply, "generation")) { /* not running: the restore as recorded */
                        status = str(reply, "status");
                        if (streq(status, "waiting") || streq(status, "running")) {
                                /* Not started yet (its time to come, or just now), or ending. */
                                if (!json && !said_waiting && streq(status, "waiting"))
                                        fprintf(stderr, "restore %" PRId64 " waits (%s)\n", id, str(reply, "schedule"));
                                said_waiting = true;
                                have_gen = false;
                                json_decref(reply);
                                usleep(WAIT_POLL_MS * 1000);
                                continue;
                        }
                        if (tty)
                                for (unsigned n = 0; n < lines; n++)
                                        fputs("\033[A\033[2K", stderr);
                        k = restore_exit_code(reply);
                        if (json) {
                                json_dumpf(reply, stdout, JSON_COMPACT);
                                fputc('\n', stdout);
                                fflush(stdout);
                        } else {
                                fprintf(stderr, "restore %" PRId64 " %s\n", id, status);
                                print_restore(reply);
                        }
                        json_decref(reply);
                        json_decref(seen);
                        return k;
                }
                gen = (uint64_t)num(reply, "generation");
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
