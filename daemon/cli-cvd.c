/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-cvd.c -- `vbak cvd ...`: ping a disk service, open a disk (and hold
 * the session while something reads the export), list, add and remove dirty
 * bitmaps. Each verb connects, does one thing, and closes the session.
 *
 * Output follows cli-pool.c: a short human summary, or one JSON document on
 * stdout with --json; errors go to stderr (and, with --json, as {"error":
 * ...} on stdout) and the exit code is the stable code of
 * docs/error-codes.md; the client's messages name the server and the rule.
 */
#include "daemon/cli-cvd.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

#include "daemon/cli-common.h"
#include "daemon/error.h"
#include "daemon/util.h"
#include "transport/cvd-client.h"

#define SECRET_FILE_MAX (64 * 1024)
#define HOLD_MAX (24 * 3600)

/* --- common options and the session ------------------------------------- */

#define COMMON_HELP                                                                                                    \
        "  --token-file F      the shared token (the file's first line)\n"                                             \
        "  --user U --password-file F   user and password (the file's first line); needs --tls\n"                      \
        "  --tls               use TLS, verifying the server against the system's CA store\n"                          \
        "  --tls-ca F          ... or against the PEM CA certificates in F (implies --tls)\n"                          \
        "  --insecure          ... or not at all (implies --tls)\n"                                                    \
        "  --timeout SECONDS   network timeout, 1-600 (default 60)\n"                                                  \
        "  --json              print the result as JSON\n"                                                             \
        "The URL is cvd://HOST[:PORT]/VM/ABSOLUTE/PATH/OF/THE/IMAGE[?snapshot=NAME] (port 8192 by default).\n"

enum {
        OPT_TOKEN = 256,
        OPT_USER,
        OPT_PASSWORD,
        OPT_TLS,
        OPT_CA,
        OPT_INSECURE,
        OPT_TIMEOUT,
        OPT_JSON,
        OPT_MODE,
        OPT_SINCE,
        OPT_CHECKPOINT,
        OPT_HOLD
};

/* The options every verb takes, spliced into each verb's table. */
#define COMMON_OPTIONS                                                                                                 \
        { "help", no_argument, NULL, 'h' }, { "token-file", required_argument, NULL, OPT_TOKEN },                      \
                { "user", required_argument, NULL, OPT_USER },                                                         \
                { "password-file", required_argument, NULL, OPT_PASSWORD }, { "tls", no_argument, NULL, OPT_TLS },     \
                { "tls-ca", required_argument, NULL, OPT_CA }, { "insecure", no_argument, NULL, OPT_INSECURE },        \
                { "timeout", required_argument, NULL, OPT_TIMEOUT }, { "json", no_argument, NULL, OPT_JSON },

typedef struct cli {
        const char *token_file, *user, *password_file, *ca_file;
        bool tls, insecure;
        unsigned long timeout_s;
        tp_cvd_url url;
        uv_loop_t loop;
        bool loop_ready;
        tp_cvd_client *client;
        /* the result of the last callback */
        bool done;
        int r;
        char msg[1024];
        bool lost; /* the session ended by itself */
} cli;

static void cli_done(cli *x)
{
        if (x->client) {
                tp_cvd_client_close(TAKE_PTR(x->client));
                uv_run(&x->loop, UV_RUN_DEFAULT); /* until the connection is closed */
        }
        if (x->loop_ready)
                uv_loop_close(&x->loop);
        tp_cvd_url_done(&x->url);
}

/* Parses a common option c; 1 when it was one, 0 when not, or an exit code
 * (negated) on a bad value. */
static int common_option(cli *x, int c)
{
        unsigned long v;
        char *end;

        switch (c) {
        case OPT_TOKEN:
                x->token_file = optarg;
                return 1;
        case OPT_USER:
                x->user = optarg;
                return 1;
        case OPT_PASSWORD:
                x->password_file = optarg;
                return 1;
        case OPT_TLS:
                x->tls = true;
                return 1;
        case OPT_CA:
                x->ca_file = optarg;
                x->tls = true;
                return 1;
        case OPT_INSECURE:
                x->insecure = x->tls = true;
                return 1;
        case OPT_TIMEOUT:
                v = strtoul(optarg, &end, 10);
                if (*end || optarg[0] < '0' || optarg[0] > '9' || v < 1 || v > 600)
                        return -vb_cli_fail(VB_E_USAGE, "bad --timeout '%s' (1-600 seconds)", optarg);
                x->timeout_s = v;
                return 1;
        case OPT_JSON:
                vb_cli_json = true;
                return 1;
        default:
                return 0;
        }
}

/* The first line of a file, without its line end. */
static int read_first_line(const char *path, char **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = vb_read_file_at(AT_FDCWD, path, SECRET_FILE_MAX, &text, &len);

        if (r < 0)
                return vb_cli_fail(r == -ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(r), "%s: %s", path,
                                   strerror(-r));
        text[strcspn(text, "\r\n")] = 0;
        *ret = TAKE_PTR(text);
        return 0;
}

static void on_connected(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
}

static void on_lost(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        cli *x = userdata;

        x->lost = x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg);
}

/* Runs the loop until the callback of what was started; returns its exit code. */
static int wait_result(cli *x)
{
        x->done = false;
        if (tp_cvd_run_until(&x->loop, &x->done) < 0)
                return vb_cli_fail(VB_E_FAILED, "nothing left to wait for (a bug)");
        return x->r ? vb_cli_fail(x->r, "%s", x->msg) : 0;
}

/* Checks the common options and the URL, then connects and authenticates. */
static int cli_connect(cli *x, const char *url, bool need_disk)
{
        _cleanup_free_ char *token_text = NULL, *token = NULL, *password = NULL;
        tp_cvd_client_opts o = { 0 };
        tp_cvd_why why = { "" };
        const char *url_why = NULL;
        int r, code;

        r = tp_cvd_url_parse(url, &x->url, &url_why);
        if (r < 0)
                return vb_cli_fail(VB_E_USAGE, "bad URL '%s': %s", url, url_why ? url_why : strerror(-r));
        if (need_disk && !x->url.path)
                return vb_cli_fail(VB_E_USAGE,
                                   "the URL must name a disk: cvd://HOST[:PORT]/VM/ABSOLUTE/PATH/OF/THE/IMAGE");
        if (!x->token_file && !x->user)
                return vb_cli_fail(VB_E_USAGE, "give --token-file, or --user and --password-file (see --help)");
        if (x->token_file && x->user)
                return vb_cli_fail(VB_E_USAGE, "give either --token-file or --user, not both");
        if (x->user && !x->password_file)
                return vb_cli_fail(VB_E_USAGE, "--user needs --password-file");
        if (x->user && !x->tls)
                return vb_cli_fail(VB_E_USAGE, "--user needs --tls: a password is only ever sent over TLS");
        if (x->token_file) {
                code = read_first_line(x->token_file, &token_text);
                if (code)
                        return code;
                if (tp_cvd_token_parse(token_text, strlen(token_text), &token) < 0)
                        return vb_cli_fail(VB_E_USAGE, "%s: the token must have at least %d bytes", x->token_file,
                                           TP_CVD_TOKEN_MIN);
        } else {
                code = read_first_line(x->password_file, &password);
                if (code)
                        return code;
        }
        o = (tp_cvd_client_opts){ .host = x->url.host,
                                  .port = x->url.port,
                                  .token = token,
                                  .user = x->user,
                                  .password = password,
                                  .tls = x->tls,
                                  .ca_file = x->ca_file,
                                  .insecure = x->insecure,
                                  .timeout_ms = (uint64_t)x->timeout_s * 1000,
                                  .on_lost = on_lost,
                                  .lost_userdata = x };
        r = uv_loop_init(&x->loop);
        if (r < 0)
                return vb_cli_fail(VB_E_FAILED, "cannot start the event loop: %s", uv_strerror(r));
        x->loop_ready = true;
        r = tp_cvd_client_connect(&x->loop, &o, on_connected, x, &x->client, &why);
        if (password)
                explicit_bzero(password, strlen(password));
        if (r == -EINVAL)
                return vb_cli_fail(VB_E_USAGE, "%s", why.msg);
        if (r < 0)
                return vb_cli_fail(VB_E_FAILED, "cannot connect: %s", strerror(-r));
        return wait_result(x);
}

/* Parses the common options plus extra ones through handle; argv[optind..]
 * are the positional arguments. */
typedef int (*extra_fn)(cli *x, int c, void *userdata);

static int parse_args(cli *x, int argc, char **argv, const struct option *opts, const char *help, extra_fn extra,
                      void *userdata)
{
        int c, r;

        x->timeout_s = TP_CVD_CLIENT_TIMEOUT_MS_DEFAULT / 1000;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(help, stdout);
                        return -1;
                }
                r = common_option(x, c);
                if (r < 0)
                        return -r;
                if (r == 0 && (!extra || (r = extra(x, c, userdata)) == 0))
                        return VB_E_USAGE;
                if (r < 0)
                        return -r;
        }
        return 0;
}

/* --- ping --------------------------------------------------------------- */

static const char ping_help[] = "Usage: vbak cvd ping URL [OPTIONS]\n"
                                "Connects to a disk service, authenticates and pings it. The URL may name\n"
                                "just the host: cvd://HOST[:PORT].\n\n" COMMON_HELP;

static void on_ping(tp_cvd_client *c, int r, const char *msg, int64_t t, void *userdata)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
}

static int cmd_ping(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_OPTIONS{} };
        _cleanup_(cli_done) cli x = { 0 };
        const tp_cvd_session_info *info;
        uint64_t start;
        double ms;
        int code;

        code = parse_args(&x, argc, argv, opts, ping_help, NULL, NULL);
        if (code)
                return code < 0 ? 0 : code;
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "cvd ping needs exactly one URL (see --help)");
        code = cli_connect(&x, argv[optind], false);
        if (code)
                return code;
        start = vb_now_ns();
        if (tp_cvd_ping(x.client, on_ping, &x) < 0)
                return vb_cli_fail(VB_E_NETWORK, "cannot send the ping");
        code = wait_result(&x);
        if (code)
                return code;
        ms = (double)(vb_now_ns() - start) / 1e6;
        info = tp_cvd_client_info(x.client);
        if (vb_cli_json)
                return vb_cli_print_json(json_pack("{s:s, s:i, s:s, s:i, s:s, s:i, s:b, s:f}", "host", x.url.host,
                                                   "port", x.url.port, "server", info->server, "version", info->version,
                                                   "session", info->session, "timeout", info->timeout, "tls", info->tls,
                                                   "rtt_ms", ms));
        printf("vbak-cvd at %s:%u: %s, protocol %u, %s, idle timeout %u s, session %s; ping %.2f ms\n", x.url.host,
               x.url.port, info->server, info->version, info->tls ? "TLS" : "plain TCP", info->timeout, info->session,
               ms);
        return 0;
}

/* --- open --------------------------------------------------------------- */

static const char open_help[] =
        "Usage: vbak cvd open URL [--mode read|read-write] [--since CP] [--checkpoint CP] [--hold SECONDS]\n"
        "Opens a disk as an NBD export and prints where to read it. The export lives as long as the\n"
        "session: --hold keeps it open for SECONDS (default 0), then it is closed.\n\n"
        "  --mode read|read-write   read-write is for restores of stopped VMs (default read)\n"
        "  --since CP               offer the changes since checkpoint CP (qemu:dirty-bitmap:CP)\n"
        "  --checkpoint CP          make sure checkpoint CP exists from now on (created if missing)\n"
        "  --hold SECONDS           keep the export open this long (0-86400)\n" COMMON_HELP;

typedef struct open_args {
        tp_cvd_open_req rq;
        unsigned long hold;
} open_args;

static int open_option(cli *x, int c, void *userdata)
{
        open_args *a = userdata;
        char *end;

        switch (c) {
        case OPT_MODE:
                if (!streq(optarg, "read") && !streq(optarg, "read-write"))
                        return -vb_cli_fail(VB_E_USAGE, "bad --mode '%s' (read or read-write)", optarg);
                a->rq.write = streq(optarg, "read-write");
                return 1;
        case OPT_SINCE:
        case OPT_CHECKPOINT:
                if (!tp_cvd_name_valid(optarg))
                        return -vb_cli_fail(
                                VB_E_USAGE,
                                "checkpoint name '%s': use 1-64 letters, digits, '.', '_' or '-', not starting "
                                "with '.' or '-'",
                                optarg);
                *(c == OPT_SINCE ? &a->rq.since : &a->rq.checkpoint) = optarg;
                return 1;
        case OPT_HOLD:
                a->hold = strtoul(optarg, &end, 10);
                if (*end || optarg[0] < '0' || optarg[0] > '9' || a->hold > HOLD_MAX)
                        return -vb_cli_fail(VB_E_USAGE, "bad --hold '%s' (0-%d seconds)", optarg, HOLD_MAX);
                return 1;
        default:
                return 0;
        }
}

typedef struct open_result {
        cli *x;
        json_t *reply; /* what to print */
        char *handle;
} open_result;

static void on_open(tp_cvd_client *c, int r, const char *msg, const tp_cvd_open_reply *o, void *userdata)
{
        open_result *res = userdata;
        cli *x = res->x;
        json_t *ctx;
        char uri[5200];

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
        if (r)
                return;
        snprintf(uri, sizeof(uri), strchr(o->host, ':') ? "nbd://[%s]:%u/%s" : "nbd://%s:%u/%s", o->host, o->port,
                 o->export_name);
        ctx = json_array();
        for (size_t i = 0; ctx && i < o->n_contexts; i++)
                json_array_append_new(ctx, json_string(o->contexts[i]));
        res->handle = strdup(o->handle);
        res->reply = json_pack("{s:s, s:s, s:i, s:s, s:s, s:I, s:s, s:I, s:I, s:o*, s:b}", "handle", o->handle, "host",
                               o->host, "port", o->port, "export", o->export_name, "uri", uri, "size",
                               (json_int_t)o->size, "format", o->format, "cluster_size", (json_int_t)o->cluster_size,
                               "granularity", (json_int_t)o->granularity, "contexts", ctx, "running", o->running);
        if (!res->handle || !res->reply) {
                x->r = VB_E_FAILED;
                snprintf(x->msg, sizeof(x->msg), "out of memory");
        }
}

static void print_open(json_t *j)
{
        char b[32];
        json_t *v;
        size_t i;

        printf("handle:      %s\n", json_string_value(json_object_get(j, "handle")));
        printf("export:      %s\n", json_string_value(json_object_get(j, "uri")));
        printf("size:        %" PRIu64 " bytes (%s)\n", (uint64_t)json_integer_value(json_object_get(j, "size")),
               vb_format_size((uint64_t)json_integer_value(json_object_get(j, "size")), b, sizeof(b)));
        printf("format:      %s, cluster size %" PRId64 "\n", json_string_value(json_object_get(j, "format")),
               (int64_t)json_integer_value(json_object_get(j, "cluster_size")));
        printf("contexts:   ");
        json_array_foreach(json_object_get(j, "contexts"), i, v) printf(" %s", json_string_value(v));
        printf("\ngranularity: %" PRId64 "\n", (int64_t)json_integer_value(json_object_get(j, "granularity")));
        printf("running VM:  %s\n", json_is_true(json_object_get(j, "running")) ? "yes" : "no");
        fflush(stdout);
}

static void on_hold_over(uv_timer_t *t)
{
        cli *x = t->data;

        x->done = true;
        x->r = 0;
}

static void on_closed(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
}

/* Keeps the session (and the export) alive for the hold time. */
static int hold(cli *x, unsigned long seconds)
{
        uv_timer_t t;
        int code;

        if (seconds == 0)
                return 0;
        uv_timer_init(&x->loop, &t);
        t.data = x;
        uv_timer_start(&t, on_hold_over, (uint64_t)seconds * 1000, 0);
        code = wait_result(x);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&x->loop, UV_RUN_NOWAIT);
        return code;
}

static int cmd_open(int argc, char **argv)
{
        static const struct option opts[] = {
                { "mode", required_argument, NULL, OPT_MODE },
                { "since", required_argument, NULL, OPT_SINCE },
                { "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
                { "hold", required_argument, NULL, OPT_HOLD },
                COMMON_OPTIONS{},
        };
        _cleanup_(cli_done) cli x = { 0 };
        open_args a = { 0 };
        open_result res = { .x = &x };
        int code;

        code = parse_args(&x, argc, argv, opts, open_help, open_option, &a);
        if (code)
                return code < 0 ? 0 : code;
        if (optind + 1 != argc)
                return vb_cli_fail(VB_E_USAGE, "cvd open needs exactly one URL (see --help)");
        code = cli_connect(&x, argv[optind], true);
        if (code)
                return code;
        a.rq.vm = x.url.vm;
        a.rq.path = x.url.path;
        a.rq.snapshot = x.url.snapshot;
        if (a.rq.write && (a.rq.snapshot || a.rq.since))
                return vb_cli_fail(VB_E_USAGE, "--mode read-write takes neither a snapshot nor --since");
        if (tp_cvd_disk_open(x.client, &a.rq, on_open, &res) < 0)
                return vb_cli_fail(VB_E_NETWORK, "cannot send disk.open");
        code = wait_result(&x);
        if (code) {
                json_decref(res.reply);
                free(res.handle);
                return code;
        }
        if (vb_cli_json)
                vb_cli_print_json(json_incref(res.reply));
        else
                print_open(res.reply);
        json_decref(res.reply);
        code = hold(&x, a.hold);
        if (code || x.lost) {
                free(res.handle);
                return code;
        }
        if (tp_cvd_disk_close(x.client, res.handle, on_closed, &x) < 0) {
                free(res.handle);
                return vb_cli_fail(VB_E_NETWORK, "cannot send disk.close");
        }
        free(res.handle);
        return wait_result(&x);
}

/* --- bitmap ------------------------------------------------------------- */

static const char bitmap_help[] =
        "Usage: vbak cvd bitmap list URL [OPTIONS]\n"
        "       vbak cvd bitmap add URL NAME [OPTIONS]\n"
        "       vbak cvd bitmap remove URL NAME [OPTIONS]\n"
        "Lists, creates or removes the dirty bitmaps (checkpoints) of a disk.\n\n" COMMON_HELP;

static void on_bitmaps(tp_cvd_client *c, int r, const char *msg, const tp_cvd_bitmap_list_reply *b, void *userdata)
{
        cli *x = userdata;
        json_t *list;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
        if (r)
                return;
        list = json_array();
        for (size_t i = 0; list && i < b->n_bitmaps; i++)
                json_array_append_new(list,
                                      json_pack("{s:s, s:I, s:b, s:b, s:I}", "name", b->bitmaps[i].name, "granularity",
                                                (json_int_t)b->bitmaps[i].granularity, "persistent",
                                                b->bitmaps[i].persistent, "enabled", b->bitmaps[i].enabled,
                                                "dirty_bytes", (json_int_t)b->bitmaps[i].dirty_bytes));
        if (vb_cli_json) {
                vb_cli_print_json(json_pack("{s:o*}", "bitmaps", list));
                return;
        }
        if (b->n_bitmaps == 0)
                printf("no bitmaps\n");
        for (size_t i = 0; i < b->n_bitmaps; i++) {
                char s[32];
                printf("%-24s granularity %-8" PRIu32 " %s %s dirty %s\n", b->bitmaps[i].name,
                       b->bitmaps[i].granularity, b->bitmaps[i].persistent ? "persistent" : "transient ",
                       b->bitmaps[i].enabled ? "enabled " : "disabled",
                       vb_format_size(b->bitmaps[i].dirty_bytes, s, sizeof(s)));
        }
        json_decref(list);
}

static int cmd_bitmap(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_OPTIONS{} };
        _cleanup_(cli_done) cli x = { 0 };
        const char *what;
        bool list;
        int code, r;

        if (argc >= 2 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                fputs(bitmap_help, stdout);
                return 0;
        }
        if (argc < 2 || (!streq(argv[1], "list") && !streq(argv[1], "add") && !streq(argv[1], "remove")))
                return vb_cli_fail(VB_E_USAGE, "cvd bitmap needs list, add or remove (see vbak cvd bitmap --help)");
        what = argv[1];
        list = streq(what, "list");
        argc--;
        argv++;
        code = parse_args(&x, argc, argv, opts, bitmap_help, NULL, NULL);
        if (code)
                return code < 0 ? 0 : code;
        if (optind + (list ? 1 : 2) != argc)
                return vb_cli_fail(VB_E_USAGE, "cvd bitmap %s needs %s (see --help)", what,
                                   list ? "a URL" : "a URL and a NAME");
        if (!list && !tp_cvd_name_valid(argv[optind + 1]))
                return vb_cli_fail(
                        VB_E_USAGE,
                        "bitmap name '%s': use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                        argv[optind + 1]);
        code = cli_connect(&x, argv[optind], true);
        if (code)
                return code;
        if (x.url.snapshot)
                return vb_cli_fail(VB_E_USAGE, "bitmaps belong to the live image: drop ?snapshot= from the URL");
        if (list)
                r = tp_cvd_bitmap_list(x.client, x.url.vm, x.url.path, on_bitmaps, &x);
        else
                r = (streq(what, "add") ? tp_cvd_bitmap_create : tp_cvd_bitmap_remove)(x.client, x.url.vm, x.url.path,
                                                                                       argv[optind + 1], on_closed, &x);
        if (r < 0)
                return vb_cli_fail(VB_E_NETWORK, "cannot send the request");
        code = wait_result(&x);
        if (code || list)
                return code;
        if (vb_cli_json)
                return vb_cli_print_json(json_pack("{s:s, s:s, s:s, s:s}", "vm", x.url.vm, "path", x.url.path, "bitmap",
                                                   argv[optind + 1], "action",
                                                   streq(what, "add") ? "created" : "removed"));
        printf("%s bitmap %s on %s (vm %s)\n", streq(what, "add") ? "Created" : "Removed", argv[optind + 1], x.url.path,
               x.url.vm);
        return 0;
}

/* --- dispatch ----------------------------------------------------------- */

static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
} verbs[] = {
        { "ping", cmd_ping, "connect, authenticate and ping a disk service" },
        { "open", cmd_open, "open a disk as an NBD export (and hold it open)" },
        { "bitmap", cmd_bitmap, "list, add or remove a disk's dirty bitmaps" },
};

void vb_cli_cvd_help(FILE *f)
{
        fputs("Usage: vbak cvd VERB URL [OPTIONS]   (vbak cvd VERB --help for each)\n"
              "Talks to a CVD-style disk service (vbak-cvd) directly.\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
}

int vb_cli_cvd(int argc, char **argv)
{
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                vb_cli_cvd_help(argc < 2 ? stderr : stdout);
                return argc < 2 ? VB_E_USAGE : 0;
        }
        signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[1], verbs[i].name)) {
                        optind = 1;
                        return verbs[i].fn(argc - 1, argv + 1);
                }
        return vb_cli_fail(VB_E_USAGE, "unknown verb 'cvd %s' (see vbak cvd --help)", argv[1]);
}
