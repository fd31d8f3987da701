/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-net.c -- transport options and synchronous transport steps for the
 * command line (see cli-net.h).
 */
#include "daemon/cli-net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

enum {
        OPT_CONNECTIONS = VB_NET_OPT_BASE,
        OPT_BUFFER,
        OPT_RESUME_BUFFER,
        OPT_RECONNECT_WINDOW,
        OPT_TIMEOUT,
        OPT_RATE,
        OPT_DISK_RATE,
        OPT_TOKEN_FILE,
        OPT_USER,
        OPT_PASSWORD_FILE,
        OPT_TLS,
        OPT_TLS_CA,
        OPT_INSECURE,
};

const struct option vb_net_options[] = {
        { "connections", required_argument, NULL, OPT_CONNECTIONS },
        { "buffer", required_argument, NULL, OPT_BUFFER },
        { "resume-buffer", required_argument, NULL, OPT_RESUME_BUFFER },
        { "reconnect-window", required_argument, NULL, OPT_RECONNECT_WINDOW },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "rate", required_argument, NULL, OPT_RATE },
        { "disk-rate", required_argument, NULL, OPT_DISK_RATE },
        { "token-file", required_argument, NULL, OPT_TOKEN_FILE },
        { "user", required_argument, NULL, OPT_USER },
        { "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
        { "tls", no_argument, NULL, OPT_TLS },
        { "tls-ca", required_argument, NULL, OPT_TLS_CA },
        { "insecure", no_argument, NULL, OPT_INSECURE },
};
const size_t vb_net_n_options = ELEMENTSOF(vb_net_options);

const char vb_net_help[] =
        "Network sources and targets (nbd://, nbd+unix://, cvd://):\n"
        "  --connections N          NBD connections per disk, 1-5 (default 1)\n"
        "  --buffer SIZE            bytes per NBD request: 64K, 128K, ... 8M (default 1M)\n"
        "  --resume-buffer SIZE     most bytes in flight, what a cut may make us read again (default 10M)\n"
        "  --reconnect-window DUR   keep re-opening a dropped connection this long (default 10m; jobs: 1-60 min)\n"
        "  --timeout DUR            network timeout, no answer for this long drops the connection (default 10m)\n"
        "  --rate SPEC              transfer rate limit, e.g. '50MiB/s' or 'mon-fri 08:00-18:00 20MiB/s; 22:00-06:00 "
        "1GiB/s'\n"
        "  --disk-rate SPEC         disk read (backup) or write (restore) rate limit, same form\n"
        "  --token-file FILE        cvd: the disk service's shared token\n"
        "  --user NAME --password-file FILE   cvd: platform credentials instead (needs --tls)\n"
        "  --tls [--tls-ca FILE] [--insecure] cvd: TLS to the disk service\n";

void vb_net_opts_init(vb_net_opts *o)
{
        *o = (vb_net_opts){ 0 };
}

void vb_net_opts_clear(vb_net_opts *o)
{
        tp_rate_schedule_clear(&o->rate);
        tp_rate_schedule_clear(&o->disk_rate);
}

static int parse_duration_ms(const char *arg, uint64_t min_s, uint64_t max_s, const char *what, uint64_t *ret,
                             char **err)
{
        uint64_t s;

        if (vb_parse_duration(arg, &s) < 0 || s < min_s || s > max_s) {
                if (asprintf(err, "%s '%s': give a duration from %" PRIu64 "s to %" PRIu64 "m (e.g. 90s, 10m)", what,
                             arg, min_s, max_s / 60) < 0)
                        *err = NULL;
                return -EINVAL;
        }
        *ret = s * 1000;
        return 0;
}

int vb_net_parse(vb_net_opts *o, int c, const char *arg, char **err)
{
        tp_nbd_opts *n = &o->disk.nbd;
        uint64_t v;

        *err = NULL;
        switch (c) {
        case OPT_CONNECTIONS:
                if (vb_parse_size(arg, &v) < 0 || v < 1 || v > TP_NBD_CONNECTIONS_MAX) {
                        if (asprintf(err, "--connections '%s': give 1 to %d", arg, TP_NBD_CONNECTIONS_MAX) < 0)
                                *err = NULL;
                        return -EINVAL;
                }
                n->connections = (unsigned)v;
                return 1;
        case OPT_BUFFER:
                if (vb_parse_size(arg, &v) < 0 || v < TP_NBD_REQUEST_MIN || v > TP_NBD_REQUEST_MAX || (v & (v - 1))) {
                        if (asprintf(err, "--buffer '%s': give 64K, 128K, 256K, 512K, 1M, 2M, 4M or 8M", arg) < 0)
                                *err = NULL;
                        return -EINVAL;
                }
                n->request_size = (uint32_t)v;
                return 1;
        case OPT_RESUME_BUFFER:
                if (vb_parse_size(arg, &v) < 0 || v < TP_NBD_REQUEST_MIN || v > (1ull << 30)) {
                        if (asprintf(err, "--resume-buffer '%s': give 64K to 1G", arg) < 0)
                                *err = NULL;
                        return -EINVAL;
                }
                n->resume_buffer = v;
                return 1;
        case OPT_RECONNECT_WINDOW:
                /* Jobs take 1-60 min; the command line also takes seconds, for drills and tests. */
                return parse_duration_ms(arg, 1, 3600, "--reconnect-window", &n->reconnect_window_ms, err) < 0 ? -EINVAL
                                                                                                               : 1;
        case OPT_TIMEOUT:
                return parse_duration_ms(arg, 1, 600, "--timeout", &n->timeout_ms, err) < 0 ? -EINVAL : 1;
        case OPT_RATE:
        case OPT_DISK_RATE: {
                tp_rate_schedule *s = c == OPT_RATE ? &o->rate : &o->disk_rate;
                tp_bucket *b = c == OPT_RATE ? &o->transfer_bucket : &o->disk_bucket;
                char *why = NULL;

                tp_rate_schedule_clear(s);
                if (tp_rate_schedule_parse(arg, s, &why) < 0) {
                        if (asprintf(err, "--%s '%s': %s", c == OPT_RATE ? "rate" : "disk-rate", arg,
                                     why ? why : "invalid") < 0)
                                *err = NULL;
                        free(why);
                        return -EINVAL;
                }
                tp_bucket_init(b, s);
                if (c == OPT_RATE)
                        n->transfer = b;
                else
                        n->disk = b;
                return 1;
        }
        case OPT_TOKEN_FILE:
                o->disk.auth.token_file = arg;
                return 1;
        case OPT_USER:
                o->disk.auth.user = arg;
                return 1;
        case OPT_PASSWORD_FILE:
                o->disk.auth.password_file = arg;
                return 1;
        case OPT_TLS:
                o->disk.auth.tls = true;
                return 1;
        case OPT_TLS_CA:
                o->disk.auth.tls_ca = arg;
                return 1;
        case OPT_INSECURE:
                o->disk.auth.insecure = true;
                return 1;
        default:
                return 0;
        }
}

bool vb_is_network_url(const char *s)
{
        return s && strstr(s, "://") != NULL;
}

/* The callbacks that set the flag also call uv_stop(): without it a
 * UV_RUN_ONCE that ran them would still block for the next event. */
int vb_run_until(uv_loop_t *loop, const bool *flag)
{
        while (!*flag)
                if (uv_run(loop, UV_RUN_ONCE) == 0 && !*flag)
                        return -EPIPE;
        return 0;
}

struct step {
        uv_loop_t *loop;
        bool done;
        int r;
        vb_error code;
        char *msg;
        tp_disk *d;
};

static void step_opened(void *userdata, int r, vb_error code, tp_disk *d, const char *message)
{
        struct step *s = userdata;

        s->done = true;
        s->r = r;
        s->code = code;
        s->d = d;
        uv_stop(s->loop); /* vb_run_until need not wait for the next event */
        if (message)
                s->msg = strdup(message);
}

static void step_done(void *userdata, int r, const char *message)
{
        struct step *s = userdata;

        s->done = true;
        s->r = r;
        if (message)
                s->msg = strdup(message);
        uv_stop(s->loop);
}

static int step_wait(uv_loop_t *loop, struct step *s, char **msg)
{
        int r = vb_run_until(loop, &s->done);

        if (r >= 0)
                r = s->r;
        if (msg)
                *msg = s->msg;
        else
                free(s->msg);
        return r;
}

int vb_net_open(uv_loop_t *loop, vb_net_opts *o, const char *url, bool write, tp_disk **ret, vb_error *code, char **msg)
{
        struct step s = { .loop = loop };
        tp_disk_opts d = o->disk;
        int r;

        *code = VB_OK;
        d.source = url;
        d.write = write;
        r = tp_disk_open(loop, &d, step_opened, &s, msg);
        if (r < 0) {
                if (r == -EINVAL && *msg)
                        *code = VB_E_USAGE;
                return r;
        }
        r = step_wait(loop, &s, msg);
        *code = s.code;
        if (r >= 0)
                *ret = s.d;
        return r;
}

int vb_net_plan(uv_loop_t *loop, tp_disk *d, bool incremental, dd_extents *read, bool *is_incremental, char **msg)
{
        struct step s = { .loop = loop };
        int r = tp_disk_plan(d, incremental, read, is_incremental, step_done, &s);

        if (r < 0)
                return r;
        return step_wait(loop, &s, msg);
}

int vb_net_commit(uv_loop_t *loop, tp_disk *d, char **msg)
{
        struct step s = { .loop = loop };
        int r = tp_disk_commit(d, step_done, &s);

        if (r < 0)
                return r;
        return step_wait(loop, &s, msg);
}

static void closed(void *userdata)
{
        struct step *s = userdata;

        s->done = true;
        uv_stop(s->loop);
}

void vb_net_close(uv_loop_t *loop, tp_disk *d)
{
        struct step s = { .loop = loop };

        if (!d)
                return;
        tp_disk_close(d, closed, &s);
        (void)vb_run_until(loop, &s.done);
}
