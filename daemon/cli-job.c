/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-job.c -- `vbak job VERB`: backup jobs, through vbakd's control API
 * (/v1/jobs, docs/api.md).
 *
 * DESIGN
 * The command line only shapes the request: --select items, --schedule
 * texts and --set values go to the daemon as the user typed them (options
 * as strings), so the daemon is the one place that checks them and its
 * error names the field; the exit code is the daemon's stable code. Every
 * verb takes --socket, --json and --help; an option a verb does not use is
 * refused rather than ignored.
 */
#include "daemon/cli-job.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cli-common.h"
#include "daemon/cli-run.h"
#include "daemon/client.h"
#include "daemon/error.h"
#include "daemon/jobopts.h"
#include "daemon/jobspec.h"
#include "daemon/util.h"

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_PLATFORM,
        OPT_POOL,
        OPT_SELECT,
        OPT_EXCLUDE,
        OPT_TYPE,
        OPT_SCHEDULE,
        OPT_SET,
        OPT_DISABLED,
        OPT_ENABLE,
        OPT_RENAME,
        OPT_ALL,
        OPT_FOLLOW,
};

/* The bit of an option in a verb's mask. */
#define BIT(opt) (1u << ((opt)-OPT_SOCKET))
#define CHANGES                                                                                                        \
        (BIT(OPT_PLATFORM) | BIT(OPT_POOL) | BIT(OPT_SELECT) | BIT(OPT_EXCLUDE) | BIT(OPT_TYPE) | BIT(OPT_SCHEDULE) |  \
         BIT(OPT_SET))

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "json", no_argument, NULL, OPT_JSON },
        { "platform", required_argument, NULL, OPT_PLATFORM },
        { "pool", required_argument, NULL, OPT_POOL },
        { "select", required_argument, NULL, OPT_SELECT },
        { "exclude", required_argument, NULL, OPT_EXCLUDE },
        { "type", required_argument, NULL, OPT_TYPE },
        { "schedule", required_argument, NULL, OPT_SCHEDULE },
        { "set", required_argument, NULL, OPT_SET },
        { "disabled", no_argument, NULL, OPT_DISABLED },
        { "disable", no_argument, NULL, OPT_DISABLED },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "rename", required_argument, NULL, OPT_RENAME },
        { "all", no_argument, NULL, OPT_ALL },
        { "follow", no_argument, NULL, OPT_FOLLOW },
        {},
};

/* What the options of one command line said. */
typedef struct args {
        const char *socket;
        bool json, all, follow;
        json_t *body; /* the members the options set */
        char **operands;
        int n_operands;
} args;

typedef struct verb {
        const char *name;
        int operands;
        unsigned opts; /* BIT()s it takes besides --socket and --json */
        int (*run)(const struct verb *v, args *a);
        const char *usage; /* after "vbak job " */
        const char *what;
        bool options_table; /* --help lists the job options */
} verb;

/* ---- talking to the daemon ---- */

/* One call; *reply on success, else the exit code printed. */
static int call(const args *a, const char *method, const char *path, json_t *body, json_t **reply)
{
        return vb_cli_call(a->socket, method, path, body, reply);
}

/* "/v1/jobs/NAME" + suffix, NAME percent-encoded. */
static int job_path(char *buf, size_t size, const char *name, const char *suffix)
{
        size_t n = (size_t)snprintf(buf, size, "/v1/jobs/");

        for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
                if (n + 4 > size)
                        return vb_cli_fail(VB_E_USAGE, "the job name is too long");
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p))
                        buf[n++] = (char)*p;
                else
                        n += (size_t)snprintf(buf + n, size - n, "%%%02X", *p);
        }
        if (n + strlen(suffix) + 1 > size)
                return vb_cli_fail(VB_E_USAGE, "the job name is too long");
        strcpy(buf + n, suffix);
        return 0;
}

/* ---- printing ---- */

static const char *str(const json_t *j, const char *key)
{
        return json_string_value(json_object_get(j, key));
}

/* t as local time; "none" for 0. */
static const char *when(json_int_t t, bool seconds, char *buf, size_t size)
{
        time_t tt = (time_t)t;
        struct tm tm;

        if (t <= 0 || !localtime_r(&tt, &tm) ||
            strftime(buf, size, seconds ? "%Y-%m-%d %H:%M:%S %Z" : "%Y-%m-%d %H:%M %Z", &tm) == 0)
                snprintf(buf, size, "none");
        return buf;
}

/* An option's JSON value as --set takes it. */
static void option_text(const json_t *v, char *buf, size_t size)
{
        if (json_is_string(v))
                snprintf(buf, size, "%s", json_string_value(v));
        else if (json_is_boolean(v))
                snprintf(buf, size, "%s", json_is_true(v) ? "on" : "off");
        else if (json_is_integer(v))
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_null(v))
                snprintf(buf, size, "none");
        else
                snprintf(buf, size, "?");
}

static void print_job(const json_t *j)
{
        json_t *sel = json_object_get(j, "selection"), *ex = json_object_get(j, "exclusions");
        json_t *opts = json_object_get(j, "options"), *defaults, *v;
        const char *k;
        char buf[VB_JOBOPTS_TEXT_MAX + 64];
        vb_jobopts d;
        size_t i, shown = 0;

        printf("job %s (id %" JSON_INTEGER_FORMAT ")\n", str(j, "name") ?: "?",
               json_integer_value(json_object_get(j, "id")));
        printf("  platform    %s\n", str(j, "platform") ?: "- (removed)");
        printf("  pool        %s\n", str(j, "pool") ?: "- (removed)");
        printf("  selection   ");
        json_array_foreach(sel, i, v)
        {
                if (vb_jobspec_item_format(v, buf, sizeof(buf)) < 0)
                        snprintf(buf, sizeof(buf), "?");
                printf("%s%s", i ? ", " : "", buf);
        }
        printf("\n  exclusions  ");
        json_array_foreach(ex, i, v) printf("%s%s", i ? ", " : "", json_string_value(v) ?: "?");
        printf("%s\n", json_array_size(ex) ? "" : "none");
        printf("  type        %s\n", str(j, "backup_type") ?: "?");
        printf("  schedule    %s\n", str(j, "schedule_text") ?: "? (not valid)");
        printf("  next run    %s\n", when(json_integer_value(json_object_get(j, "next_run")), true, buf, sizeof(buf)));
        printf("  enabled     %s\n", json_is_true(json_object_get(j, "enabled")) ? "yes" : "no");
        if (json_is_true(json_object_get(j, "deleted")))
                printf("  deleted     yes\n");
        /* Only what differs from the defaults; --json shows them all. */
        vb_jobopts_defaults(&d);
        defaults = vb_jobopts_to_json(&d);
        json_object_foreach(opts, k, v)
        {
                if (defaults && json_equal(v, json_object_get(defaults, k)))
                        continue;
                option_text(v, buf, sizeof(buf));
                printf("%s%s=%s\n", shown++ ? "              " : "  options     ", k, buf);
        }
        if (!shown)
                printf("  options     defaults\n");
        json_decref(defaults);
}

/* One row of `job list`. */
typedef struct row {
        char id[24], type[16], state[16], next[64];
        const char *name, *platform, *pool, *schedule;
} row;

#define ROW_CELLS 7

/* The cells of r that are aligned in columns (the schedule is last, as it is). */
static void row_cells(const row *r, const char *cells[ROW_CELLS])
{
        cells[0] = r->id;
        cells[1] = r->name;
        cells[2] = r->platform;
        cells[3] = r->pool;
        cells[4] = r->type;
        cells[5] = r->state;
        cells[6] = r->next;
}

static void print_list(const json_t *jobs)
{
        static const char *const head[ROW_CELLS] = { "ID", "NAME", "PLATFORM", "POOL", "TYPE", "STATE", "NEXT RUN" };
        int w[ROW_CELLS];
        size_t n = json_array_size(jobs), i;
        _cleanup_free_ row *rows = calloc(n ?: 1, sizeof(*rows));
        json_t *j;

        if (!rows) {
                vb_cli_fail(VB_E_FAILED, "out of memory");
                return;
        }
        for (size_t c = 0; c < ELEMENTSOF(head); c++)
                w[c] = (int)strlen(head[c]);
        json_array_foreach(jobs, i, j)
        {
                row *r = &rows[i];
                const char *cells[ROW_CELLS];

                snprintf(r->id, sizeof(r->id), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(j, "id")));
                r->name = str(j, "name") ?: "?";
                r->platform = str(j, "platform") ?: "-";
                r->pool = str(j, "pool") ?: "-";
                snprintf(r->type, sizeof(r->type), "%s", str(j, "backup_type") ?: "?");
                snprintf(r->state, sizeof(r->state), "%s",
                         json_is_true(json_object_get(j, "deleted"))   ? "deleted"
                         : json_is_true(json_object_get(j, "enabled")) ? "enabled"
                                                                       : "disabled");
                when(json_integer_value(json_object_get(j, "next_run")), false, r->next, sizeof(r->next));
                if (streq(r->next, "none"))
                        snprintf(r->next, sizeof(r->next), "-");
                r->schedule = str(j, "schedule_text") ?: "?";
                row_cells(r, cells);
                for (size_t c = 0; c < ELEMENTSOF(head); c++)
                        w[c] = MAX(w[c], (int)strlen(cells[c]));
        }
        for (size_t c = 0; c < ELEMENTSOF(head); c++)
                printf("%-*s  ", w[c], head[c]);
        printf("SCHEDULE\n");
        for (i = 0; i < n; i++) {
                const char *cells[ROW_CELLS];

                row_cells(&rows[i], cells);
                for (size_t c = 0; c < ELEMENTSOF(head); c++)
                        printf("%-*s  ", w[c], cells[c]);
                printf("%s\n", rows[i].schedule);
        }
}

/* ---- the verbs ---- */

static int v_create(const verb *v, args *a)
{
        json_t *reply;
        int r;

        json_object_set_new(a->body, "name", json_string(a->operands[0]));
        r = call(a, "POST", "/v1/jobs", a->body, &reply);
        if (r)
                return r;
        if (a->json)
                return vb_cli_print_json(reply);
        print_job(reply);
        json_decref(reply);
        return 0;
}

static int v_list(const verb *v, args *a)
{
        json_t *reply;
        int r = call(a, "GET", a->all ? "/v1/jobs?deleted=true" : "/v1/jobs", NULL, &reply);

        if (r)
                return r;
        if (a->json)
                return vb_cli_print_json(reply);
        if (json_array_size(reply) == 0)
                printf("no job%s (vbak job create)\n", a->all ? "" : " (deleted ones: --all)");
        else
                print_list(reply);
        json_decref(reply);
        return 0;
}

/* One request about the job named by the first operand (path suffix,
 * body), its answer printed as a job (or as JSON). */
static int job_request(args *a, const char *method, const char *suffix, json_t *body)
{
        char path[1024];
        json_t *reply;
        int r = job_path(path, sizeof(path), a->operands[0], suffix);

        if (r == 0)
                r = call(a, method, path, body, &reply);
        if (r)
                return r;
        if (a->json)
                return vb_cli_print_json(reply);
        print_job(reply);
        json_decref(reply);
        return 0;
}

static int v_show(const verb *v, args *a)
{
        return job_request(a, "GET", "", NULL);
}

static int v_modify(const verb *v, args *a)
{
        if (json_object_size(a->body) == 0)
                return vb_cli_fail(VB_E_USAGE, "nothing to change (see vbak job modify --help)");
        return job_request(a, "PATCH", "", a->body);
}

static int v_clone(const verb *v, args *a)
{
        json_object_set_new(a->body, "name", json_string(a->operands[1]));
        return job_request(a, "POST", "/clone", a->body);
}

static int v_remove(const verb *v, args *a)
{
        char path[1024];
        json_t *reply;
        int r = job_path(path, sizeof(path), a->operands[0], "");

        if (r == 0)
                r = call(a, "DELETE", path, NULL, &reply);
        if (r)
                return r;
        if (a->json)
                return vb_cli_print_json(reply);
        printf("job %s removed (its runs are kept; vbak job list --all)\n", str(reply, "name") ?: a->operands[0]);
        json_decref(reply);
        return 0;
}

static int v_start(const verb *v, args *a)
{
        char path[1024];
        json_t *reply;
        json_int_t id;
        int r = job_path(path, sizeof(path), a->operands[0], "/start");

        if (r == 0)
                r = call(a, "POST", path, NULL, &reply);
        if (r)
                return r;
        id = json_integer_value(json_object_get(reply, "id"));
        if (id <= 0) {
                json_decref(reply);
                return vb_cli_fail(VB_E_PROTOCOL, "the daemon's answer has no run id");
        }
        /* With --follow --json, stdout carries the progress lines only. */
        if (a->json && !a->follow)
                return vb_cli_print_json(reply);
        json_decref(reply);
        if (!a->json) {
                printf("%" JSON_INTEGER_FORMAT "\n", id);
                fflush(stdout);
        }
        if (a->follow)
                return vb_cli_run_follow(a->socket, (int64_t)id, a->json);
        return 0;
}

static int v_stop(const verb *v, args *a)
{
        char path[1024];
        json_t *reply;
        int r = job_path(path, sizeof(path), a->operands[0], "/stop");

        if (r == 0)
                r = call(a, "POST", path, NULL, &reply);
        if (r)
                return r;
        if (a->json || !json_is_integer(json_object_get(reply, "id")))
                return vb_cli_print_json(reply);
        printf("run %" JSON_INTEGER_FORMAT " of job %s: stopping\n", json_integer_value(json_object_get(reply, "id")),
               str(reply, "job") ?: a->operands[0]);
        json_decref(reply);
        return 0;
}

static const verb verbs[] = {
        { "create", 1, CHANGES | BIT(OPT_DISABLED), v_create,
          "create NAME --platform P --pool POOL --select LEVEL:NAME ... [--exclude PATTERN ...]\n"
          "                  [--type full|incremental] [--schedule SPEC] [--set OPTION=VALUE ...] [--disabled]",
          "Creates a backup job of the VMs selected on platform P into pool POOL.\n\n"
          "  --select LEVEL:NAME   what to back up: hostpool:X, cluster:X, host:X or vm:X; a host pool,\n"
          "                        cluster or host picks up VMs added to it later (repeat for more)\n"
          "  --exclude PATTERN     skip VMs whose name or title matches (*, ?, [...]; repeat for more)\n"
          "  --type TYPE           full (the default) or incremental (needs CBT; the first run is full)\n"
          "  --schedule SPEC       when it runs by itself, e.g. 'daily 02:00 tz Europe/Berlin'\n"
          "                        (docs/schedules.md); default manual: vbak job start only\n"
          "  --set OPTION=VALUE    a job option (below; repeat for more)\n"
          "  --disabled            create it disabled: its schedule does not fire\n",
          true },
        { "list", 0, BIT(OPT_ALL), v_list, "list [--all]",
          "Lists the jobs with their next run.\n\n"
          "  --all                 deleted jobs too\n",
          false },
        { "show", 1, 0, v_show, "show NAME",
          "Shows a job: its selection, schedule and next run, and the options that differ from the\n"
          "defaults (--json shows every option). A number names a job by its id, deleted jobs too.\n",
          false },
        { "modify", 1, CHANGES | BIT(OPT_DISABLED) | BIT(OPT_ENABLE) | BIT(OPT_RENAME), v_modify,
          "modify NAME [--platform P] [--pool POOL] [--select LEVEL:NAME ...] [--exclude PATTERN ...]\n"
          "                  [--type full|incremental] [--schedule SPEC|none] [--set OPTION=VALUE ...]\n"
          "                  [--enable|--disable] [--rename NEW]",
          "Changes a job; what is not given stays as it is.\n\n"
          "  --select, --exclude   replace the whole list\n"
          "  --set OPTION=VALUE    changes that option only; OPTION=default puts it back to its\n"
          "                        default, OPTION=none unsets an optional one\n"
          "  --schedule none       manual: vbak job start only\n"
          "  --enable, --disable   whether its schedule fires\n"
          "  --rename NEW          a new name\n",
          true },
        { "clone", 2, 0, v_clone, "clone NAME NEW", "Creates job NEW with every setting of job NAME.\n", false },
        { "remove", 1, 0, v_remove, "remove NAME",
          "Deletes a job (refused while it runs). Its runs and restore points stay; its name is\n"
          "free for a new job. vbak job list --all still shows it.\n",
          false },
        { "start", 1, BIT(OPT_FOLLOW), v_start, "start NAME [--follow]",
          "Starts a run of the job now and prints the run's id.\n\n"
          "  --follow              then show its progress until it ends; the exit code is the run's\n"
          "                        (0 when every VM succeeded)\n",
          false },
        { "stop", 1, 0, v_stop, "stop NAME", "Stops the job's run: VMs not started yet fail, running ones stop.\n",
          false },
};

static void verb_help(const verb *v, FILE *f)
{
        fprintf(f, "Usage: vbak job %s [--socket PATH] [--json]\n%s\n", v->usage, v->what);
        fputs("  --socket PATH         vbakd's socket (default $VBAK_SOCKET, else " VB_CLIENT_SOCKET_DEFAULT ")\n"
              "  --json                the answer as JSON\n",
              f);
        if (v->options_table) {
                fputc('\n', f);
                vb_jobopts_help(f);
        }
}

static void job_help(FILE *f)
{
        fputs("Usage: vbak job VERB ... [--socket PATH] [--json]\n"
              "Backup jobs, kept and run by vbakd.\n\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %s\n", verbs[i].usage);
        fputs("\nvbak job VERB --help tells more; vbak job create --help lists the job options.\n", f);
}

static const char *option_name(int val)
{
        for (const struct option *o = options; o->name; o++)
                if (o->val == val)
                        return o->name;
        return "?";
}

/* Appends s to the array member key of body. */
static void append(json_t *body, const char *key, const char *s)
{
        if (!json_object_get(body, key))
                json_object_set_new(body, key, json_array());
        json_array_append_new(json_object_get(body, key), json_string(s));
}

/* Parses the command line of verb v; 0, -1 after --help, or an exit code. */
static int parse(const verb *v, int argc, char **argv, args *a)
{
        int c;

        *a = (args){ .body = json_object() };
        if (!a->body)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c >= OPT_SOCKET && c != OPT_SOCKET && c != OPT_JSON && !(v->opts & BIT(c)))
                        return vb_cli_fail(VB_E_USAGE, "vbak job %s does not take --%s (see vbak job %s --help)",
                                           v->name, option_name(c), v->name);
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
                case OPT_PLATFORM:
                        json_object_set_new(a->body, "platform", json_string(optarg));
                        break;
                case OPT_POOL:
                        json_object_set_new(a->body, "pool", json_string(optarg));
                        break;
                case OPT_SELECT:
                        append(a->body, "selection", optarg);
                        break;
                case OPT_EXCLUDE:
                        append(a->body, "exclusions", optarg);
                        break;
                case OPT_TYPE:
                        json_object_set_new(a->body, "type", json_string(optarg));
                        break;
                case OPT_SCHEDULE:
                        json_object_set_new(a->body, "schedule",
                                            streq(optarg, "none") ? json_null() : json_string(optarg));
                        break;
                case OPT_SET: {
                        const char *eq = strchr(optarg, '=');
                        _cleanup_free_ char *key = eq ? strndup(optarg, (size_t)(eq - optarg)) : NULL;

                        if (!eq || eq == optarg)
                                return vb_cli_fail(VB_E_USAGE, "--set %s: expected OPTION=VALUE", optarg);
                        if (!key)
                                return vb_cli_fail(VB_E_FAILED, "out of memory");
                        if (!json_object_get(a->body, "options"))
                                json_object_set_new(a->body, "options", json_object());
                        /* null in JSON: the option's default. */
                        json_object_set_new(json_object_get(a->body, "options"), key,
                                            streq(eq + 1, "default") ? json_null() : json_string(eq + 1));
                        break;
                }
                case OPT_DISABLED:
                case OPT_ENABLE:
                        json_object_set_new(a->body, "enabled", json_boolean(c == OPT_ENABLE));
                        break;
                case OPT_RENAME:
                        json_object_set_new(a->body, "name", json_string(optarg));
                        break;
                case OPT_ALL:
                        a->all = true;
                        break;
                case OPT_FOLLOW:
                        a->follow = true;
                        break;
                default:
                        return vb_cli_fail(VB_E_USAGE, "bad option (see vbak job %s --help)", v->name);
                }
        }
        a->socket = vb_client_socket(a->socket);
        a->operands = argv + optind;
        a->n_operands = argc - optind;
        if (a->n_operands != v->operands)
                return vb_cli_fail(VB_E_USAGE, "usage: vbak job %s (see vbak job %s --help)", v->usage, v->name);
        return 0;
}

int vb_cli_job(int argc, char **argv)
{
        const char *name = argc > 1 ? argv[1] : NULL;
        const verb *v = NULL;
        args a = {};
        int r;

        if (!name || streq(name, "--help") || streq(name, "-h")) {
                job_help(name ? stdout : stderr);
                return name ? 0 : VB_E_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(name, verbs[i].name))
                        v = &verbs[i];
        if (!v)
                return vb_cli_fail(VB_E_USAGE, "unknown verb %s (see vbak job --help)", name);
        r = parse(v, argc - 1, argv + 1, &a);
        if (r == 0)
                r = v->run(v, &a);
        json_decref(a.body);
        return r < 0 ? 0 : r;
}
