/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vbakd.c -- the vbak daemon: one libuv loop holding the control API
 * (daemon/api.h) and, as they come, the catalog, the scheduler and the
 * runner. It runs in the foreground (systemd style) until SIGTERM or
 * SIGINT.
 *
 * With --state-dir alone everything it keeps is under that folder, the API
 * socket included (DIR/vbakd.sock), so a user or a test runs a private
 * daemon; otherwise the state dir and the socket's runtime dir come from
 * the configuration (vbakd.conf: state_dir, runtime_dir).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/api.h"
#include "daemon/config.h"
#include "daemon/runner.h"
#include "daemon/restorer.h"
#include "daemon/daemon.h"
#include "daemon/error.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/util.h"
#include "daemon/version.h"
#include "storagepool/object.h"

#define CONFIG_FILE_DEFAULT "/etc/vbak/vbakd.conf"
#define SOCKET_NAME "vbakd.sock"

typedef struct daemon {
        vb_daemon d;
        uv_signal_t sigterm, sigint;
        bool stopping;
        int lock_fd;         /* STATE/vbakd.lock, held while the daemon runs */
        unsigned recovering; /* recoveries not finished yet: READY=1 waits for them */
} daemon_t;

static void help(FILE *f)
{
        fputs("Usage: vbakd [--config FILE] [--state-dir DIR] [--listen ADDR:PORT --tls-cert F --tls-key F\n"
              "             --token-file F]\n"
              "The vbak daemon: holds platforms, pools and jobs, runs backups on schedule and\n"
              "answers the vbak command line (and a console) on its control API.\n\n"
              "  --config FILE       the configuration (default " CONFIG_FILE_DEFAULT ", if it exists)\n"
              "  --state-dir DIR     keep the catalog and the API socket (DIR/" SOCKET_NAME ") there\n"
              "  --listen ADDR:PORT  also serve the API on TCP, with TLS and a bearer token\n"
              "  --tls-cert F, --tls-key F   the TCP listener's certificate and key (PEM)\n"
              "  --token-file F      the bearer token a console sends (the file's first line)\n"
              "  --version           print the version\n",
              f);
}

/* ---- the API's own resources ---- */

static void get_version(void *userdata, vb_api_call *call)
{
        vb_daemon *d = userdata;

        vb_api_reply_json(call, 200,
                          json_pack("{s:s, s:i, s:I, s:s, s:s}", "version", VB_VERSION, "pid", (int)getpid(), "started",
                                    (json_int_t)d->started, "state_dir", d->cfg.state_dir, "socket", d->socket_path));
}

/* ---- life ---- */

static void api_closed(void *userdata)
{
        daemon_t *x = userdata;

        uv_stop(x->d.loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
        daemon_t *x = s->data;

        if (x->stopping)
                return;
        x->stopping = true;
        log_info("signal %d: stopping", signum);
        (void)vb_notify("STOPPING=1\nSTATUS=stopping");
        uv_close((uv_handle_t *)&x->sigterm, NULL);
        uv_close((uv_handle_t *)&x->sigint, NULL);
        vb_runner_shutdown(x->d.runner);
        vb_restorer_shutdown(x->d.restorer);
        vb_api_close(TAKE_PTR(x->d.api), api_closed, x);
}

/* The service manager hears READY=1 once the API listens and what a dead
 * daemon left behind is cleaned up: a unit ordered after vbakd finds it
 * whole. */
static void recovered(void *userdata, int r)
{
        daemon_t *x = userdata;

        if (--x->recovering > 0 || x->stopping)
                return;
        (void)vb_notifyf("READY=1\nSTATUS=serving the API on %s", x->d.socket_path);
}

/* One daemon per state dir: two would clean up each other's runs as if
 * they were left by a crash. The lock goes with the process. */
static int lock_state_dir(daemon_t *x)
{
        _cleanup_free_ char *path = NULL;
        int fd;

        if (asprintf(&path, "%s/vbakd.lock", x->d.cfg.state_dir) < 0)
                return VB_E_FAILED;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
                log_error("%s: %s", path, strerror(errno));
                return vb_error_from_errno(-errno);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                log_error("another vbakd uses state dir %s", x->d.cfg.state_dir);
                close(fd);
                return VB_E_BUSY;
        }
        x->lock_fd = fd;
        return 0;
}

static int setup(daemon_t *x, const vb_api_opts *ao)
{
        vb_daemon *d = &x->d;
        _cleanup_free_ char *err = NULL;
        int r;

        r = vb_mkdir_p_at(AT_FDCWD, d->cfg.state_dir, 0700);
        if (r < 0) {
                log_error("state dir %s: %s", d->cfg.state_dir, strerror(-r));
                return vb_error_from_errno(r);
        }
        r = lock_state_dir(x);
        if (r != 0)
                return r;
        r = vb_catalog_open(d->cfg.state_dir, &d->catalog);
        if (r < 0) {
                log_error("catalog in %s: %s", d->cfg.state_dir, strerror(-r));
                return vb_error_from_errno(r);
        }
        r = vb_credstore_open(d->cfg.state_dir, &d->creds);
        if (r < 0) {
                log_error("credentials in %s: %s", d->cfg.state_dir, strerror(-r));
                return vb_error_from_errno(r);
        }
        sp_object_set_secret_fn(vb_daemon_pool_secret, d);
        r = vb_api_new(d->loop, ao, &d->api, &err);
        if (r < 0) {
                log_error("control API: %s", err ?: strerror(-r));
                return r == -EADDRINUSE ? VB_E_BUSY : r == -EINVAL ? VB_E_USAGE : vb_error_from_errno(r);
        }
        r = vb_lane_new(d->loop, &d->lane);
        if (r < 0) {
                log_error("catalog threads: %s", strerror(-r));
                return VB_E_FAILED;
        }
        r = vb_runner_new(d, &d->runner);
        if (r < 0)
                return VB_E_FAILED;
        r = vb_restorer_new(d, &d->restorer);
        if (r < 0)
                return VB_E_FAILED;
        if (vb_api_route(d->api, "GET", "/v1/version", get_version, d) < 0 || vb_api_platforms_register(d) < 0 ||
            vb_api_pools_register(d) < 0 || vb_api_jobs_register(d) < 0 || vb_api_runs_register(d) < 0 ||
            vb_api_restores_register(d) < 0)
                return VB_E_FAILED;
        uv_signal_init(d->loop, &x->sigterm);
        uv_signal_init(d->loop, &x->sigint);
        x->sigterm.data = x->sigint.data = x;
        uv_signal_start(&x->sigterm, on_signal, SIGTERM);
        uv_signal_start(&x->sigint, on_signal, SIGINT);
        /* What a dead daemon left behind goes first; then the scheduler. */
        (void)vb_notify("STATUS=cleaning up after the last stop");
        x->recovering = 2;
        vb_runner_recover(d->runner, recovered, x);
        vb_restorer_recover(d->restorer, recovered, x);
        log_info("vbakd %s: state %s, API on %s%s%s", VB_VERSION, d->cfg.state_dir, d->socket_path,
                 ao->tcp ? " and tcp " : "", ao->tcp ?: "");
        return 0;
}

int main(int argc, char **argv)
{
        enum {
                OPT_CONFIG = 0x100,
                OPT_STATE_DIR,
                OPT_LISTEN,
                OPT_CERT,
                OPT_KEY,
                OPT_TOKEN,
                OPT_VERSION
        };
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "config", required_argument, NULL, OPT_CONFIG },
                { "state-dir", required_argument, NULL, OPT_STATE_DIR },
                { "listen", required_argument, NULL, OPT_LISTEN },
                { "tls-cert", required_argument, NULL, OPT_CERT },
                { "tls-key", required_argument, NULL, OPT_KEY },
                { "token-file", required_argument, NULL, OPT_TOKEN },
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        const char *config = NULL, *state_dir = NULL;
        vb_api_opts ao = {};
        daemon_t x = { .d = { .loop = uv_default_loop(), .started = time(NULL) } };
        vb_daemon *d = &x.d;
        _cleanup_free_ char *err = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help(stdout);
                        return 0;
                case OPT_CONFIG:
                        config = optarg;
                        break;
                case OPT_STATE_DIR:
                        state_dir = optarg;
                        break;
                case OPT_LISTEN:
                        ao.tcp = optarg;
                        break;
                case OPT_CERT:
                        ao.tls_cert = optarg;
                        break;
                case OPT_KEY:
                        ao.tls_key = optarg;
                        break;
                case OPT_TOKEN:
                        ao.token_file = optarg;
                        break;
                case OPT_VERSION:
                        printf("vbakd %s\n", VB_VERSION);
                        return 0;
                default:
                        help(stderr);
                        return VB_E_USAGE;
                }
        if (optind != argc) {
                help(stderr);
                return VB_E_USAGE;
        }
        if (vb_config_init_defaults(&d->cfg) < 0)
                return VB_E_FAILED;
        if (!config && access(CONFIG_FILE_DEFAULT, F_OK) == 0 && !state_dir)
                config = CONFIG_FILE_DEFAULT;
        if (config && vb_config_load(&d->cfg, config, &err) < 0) {
                log_error("%s: %s", config, err ?: "cannot load");
                vb_config_free(&d->cfg);
                return VB_E_USAGE;
        }
        vb_log_set_max_level(d->cfg.log_level);
        if (state_dir) {
                char *abs = realpath(state_dir, NULL);

                if (!abs && vb_mkdir_p_at(AT_FDCWD, state_dir, 0700) >= 0)
                        abs = realpath(state_dir, NULL);
                if (!abs) {
                        log_error("state dir %s: %s", state_dir, strerror(errno));
                        vb_config_free(&d->cfg);
                        return VB_E_USAGE;
                }
                free(d->cfg.state_dir);
                d->cfg.state_dir = abs;
                r = asprintf(&d->socket_path, "%s/" SOCKET_NAME, abs);
        } else {
                r = vb_mkdir_p_at(AT_FDCWD, d->cfg.runtime_dir, 0755);
                r = r < 0 ? r : asprintf(&d->socket_path, "%s/" SOCKET_NAME, d->cfg.runtime_dir);
        }
        if (r < 0) {
                log_error("runtime dir %s: %s", d->cfg.runtime_dir, strerror(r == -1 ? ENOMEM : -r));
                vb_config_free(&d->cfg);
                return VB_E_FAILED;
        }
        ao.socket_path = d->socket_path;
        r = setup(&x, &ao);
        if (r == 0)
                uv_run(d->loop, UV_RUN_DEFAULT);
        else if (d->api) {
                vb_runner_shutdown(d->runner);
                vb_restorer_shutdown(d->restorer);
                vb_api_close(TAKE_PTR(d->api), api_closed, &x);
                uv_run(d->loop, UV_RUN_DEFAULT);
        }
        log_info("vbakd stopped");
        vb_lane_free(d->lane); /* its threads may still be in the catalog */
        vb_runner_free(d->runner);
        vb_restorer_free(d->restorer);
        vb_credstore_free(d->creds);
        vb_catalog_close(d->catalog);
        free(d->socket_path);
        vb_config_free(&d->cfg);
        return r;
}
