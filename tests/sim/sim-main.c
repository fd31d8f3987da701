/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-main.c -- vbak-cvm-sim's command line: `serve` loads the topology,
 * starts the HTTP (and optionally HTTPS) listener and runs until SIGINT or
 * SIGTERM. See tests/sim/README.md.
 *
 * Before listening it creates the missing disk images, starts the running
 * VMs' QEMU processes (sim-qemu.c), each host's vbak-cvd (sim-cvd.c) and the
 * control socket (sim-ctl.c); on the way out it stops them. `ctl` is the
 * client of that socket.
 *
 * DESIGN: the "listening on" line is printed (and flushed) only once every
 * listener is up and every running VM's QEMU runs, so a test can wait for it
 * instead of polling the port.
 */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

sim_config sim_cfg;

static void usage(FILE *f)
{
        fputs("Usage: vbak-cvm-sim serve --topology FILE --user U --password-file F [OPTIONS]\n"
              "       vbak-cvm-sim ctl [--state-dir DIR] COMMAND [ARG...]\n"
              "       vbak-cvm-sim --help\n"
              "\n"
              "A simulator of the H3C CAS CVM REST API (/cas/casrs/...) for tests.\n"
              "\n"
              "Options of serve:\n"
              "  --topology FILE          the inventory (JSON, see tests/sim/README.md)\n"
              "  --http ADDR:PORT         HTTP listener (default 127.0.0.1:8080)\n"
              "  --https ADDR:PORT        also an HTTPS listener; needs --cert and --key (PEM)\n"
              "  --cert FILE, --key FILE  the TLS certificate and key for --https\n"
              "  --user U                 the Digest user name\n"
              "  --password-file F        the file holding the password (first line)\n"
              "  --json-quirks MODE       legacy (default: string scalars, one-item lists as\n"
              "                           objects, @attr keys) or typed\n"
              "  --error-charset CS       utf8 (default) or gbk: the Error-Message encoding\n"
              "  --state-dir DIR          base of relative paths in the topology, and where the\n"
              "                           QMP sockets (DIR/qmp/VM.qmp) and pid files go (default .)\n"
              "  --cvd-port N             each host's vbak-cvd listens on its backup address at\n"
              "                           port N (default 8192; 0: no vbak-cvd)\n"
              "\n"
              "ctl commands (to the running simulator of DIR, through DIR/ctl.sock):\n"
              "  write VM DISK OFFSET LENGTH [BYTE]   qemu-io write into a running VM's disk (vda ...)\n"
              "  power-cycle VM                       quit and restart QEMU; CBT becomes invalid\n"
              "  migrate VM HOST                      place the VM on another host\n"
              "  hostid HOST NEWID                    change a host's id\n"
              "  fault KNOB [VM|HOST] on|off          snapshot-fail, task-slow, shutdown-hang,\n"
              "                                       session-expiry, conn-reset, host-down, pool-full,\n"
              "                                       guest-agent (executeCmd answers like qemu-ga)\n",
              f);
}

static int read_text(const char *path, char **out)
{
        size_t len;
        int r = vb_read_file_at(AT_FDCWD, path, 1024 * 1024, out, &len);

        if (r < 0)
                return r;
        return 0;
}

static int serve(int argc, char **argv)
{
        enum {
                O_TOPOLOGY = 256,
                O_HTTP,
                O_HTTPS,
                O_CERT,
                O_KEY,
                O_USER,
                O_PWFILE,
                O_QUIRKS,
                O_CHARSET,
                O_STATE,
                O_CVD_PORT
        };
        static const struct option opts[] = {
                { "topology", required_argument, NULL, O_TOPOLOGY },
                { "http", required_argument, NULL, O_HTTP },
                { "https", required_argument, NULL, O_HTTPS },
                { "cert", required_argument, NULL, O_CERT },
                { "key", required_argument, NULL, O_KEY },
                { "user", required_argument, NULL, O_USER },
                { "password-file", required_argument, NULL, O_PWFILE },
                { "json-quirks", required_argument, NULL, O_QUIRKS },
                { "error-charset", required_argument, NULL, O_CHARSET },
                { "state-dir", required_argument, NULL, O_STATE },
                { "cvd-port", required_argument, NULL, O_CVD_PORT },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *topology = NULL, *http = "127.0.0.1:8080", *https = NULL, *cert = NULL, *key = NULL;
        const char *pwfile = NULL, *state = ".";
        _cleanup_free_ char *password = NULL, *cert_pem = NULL, *key_pem = NULL, *err = NULL;
        char state_abs[PATH_MAX], self[PATH_MAX];
        _cleanup_free_ char *cvd_bin = NULL;
        int64_t port;
        ssize_t self_len;
        sim_listener *l_http = NULL, *l_https = NULL;
        static sim_model model;
        sigset_t set;
        int c, r, sig;

        sim_cfg.quirks = SIM_QUIRKS_LEGACY;
        sim_cfg.charset = SIM_CHARSET_UTF8;
        sim_cfg.cvd_port = 8192;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case O_TOPOLOGY:
                        topology = optarg;
                        break;
                case O_HTTP:
                        http = optarg;
                        break;
                case O_HTTPS:
                        https = optarg;
                        break;
                case O_CERT:
                        cert = optarg;
                        break;
                case O_KEY:
                        key = optarg;
                        break;
                case O_USER:
                        sim_cfg.user = optarg;
                        break;
                case O_PWFILE:
                        pwfile = optarg;
                        break;
                case O_QUIRKS:
                        if (streq(optarg, "legacy"))
                                sim_cfg.quirks = SIM_QUIRKS_LEGACY;
                        else if (streq(optarg, "typed"))
                                sim_cfg.quirks = SIM_QUIRKS_TYPED;
                        else
                                return log_error_errno(EINVAL, "--json-quirks: legacy or typed, not %s", optarg), 2;
                        break;
                case O_CHARSET:
                        if (streq(optarg, "utf8"))
                                sim_cfg.charset = SIM_CHARSET_UTF8;
                        else if (streq(optarg, "gbk"))
                                sim_cfg.charset = SIM_CHARSET_GBK;
                        else
                                return log_error_errno(EINVAL, "--error-charset: utf8 or gbk, not %s", optarg), 2;
                        break;
                case O_STATE:
                        state = optarg;
                        break;
                case O_CVD_PORT:
                        if (!sim_parse_id(optarg, &port) || port < 0 || port > 65535)
                                return log_error_errno(EINVAL, "--cvd-port: 0-65535, not %s", optarg), 2;
                        sim_cfg.cvd_port = (unsigned)port;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!topology || !sim_cfg.user || !pwfile || optind != argc) {
                usage(stderr);
                return 2;
        }
        if (https && (!cert || !key))
                return log_error_errno(EINVAL, "--https needs --cert and --key"), 2;

        r = read_text(pwfile, &password);
        if (r < 0)
                return log_error_errno(r, "reading %s: %m", pwfile), 1;
        password[strcspn(password, "\r\n")] = 0;
        sim_cfg.password = password;
        if (!realpath(state, state_abs))
                return log_error_errno(errno, "state dir %s: %m", state), 1;
        r = sim_model_load(&model, topology, state_abs, &err);
        if (r < 0)
                return log_error_errno(r, "topology: %s", err ? err : "invalid"), 1;
        sim_cfg.model = &model;
        sim_cfg.state_dir = state_abs;
        /* vbak-cvd is the one built next to this binary. */
        self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (self_len < 0)
                return log_error_errno(errno, "/proc/self/exe: %m"), 1;
        self[self_len] = 0;
        *strrchr(self, '/') = 0;
        if (asprintf(&cvd_bin, "%s/vbak-cvd", self) < 0)
                return log_oom(), 1;
        sim_cfg.cvd_bin = cvd_bin;
        if (sim_cfg.cvd_port && access(cvd_bin, X_OK) < 0)
                return log_error_errno(errno, "%s: %m (make all builds it; --cvd-port 0 runs without)", cvd_bin), 1;

        /* Block the signals before the listener threads start, so they inherit
         * the mask and sigwait() below is the only place that takes them. */
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sim_qemu_watchdog_start();
        if (r < 0) {
                log_error_errno(r, "starting the watchdog: %m");
                goto out;
        }
        r = sim_qemu_prepare(&model, &err);
        if (r < 0) {
                log_error("preparing the disk images: %s", err ? err : strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < model.n_vms; i++) {
                if (!model.vms[i].running)
                        continue;
                r = sim_qemu_start(&model.vms[i], &err);
                if (r < 0) {
                        log_error("starting VM %s: %s", model.vms[i].name, err ? err : strerror(-r));
                        goto out;
                }
        }

        for (size_t i = 0; i < model.n_hosts; i++) {
                r = sim_cvd_start(&model, &model.hosts[i], &err);
                if (r < 0) {
                        log_error("%s", err ? err : strerror(-r));
                        goto out;
                }
        }
        r = sim_ctl_start();
        if (r < 0) {
                log_error_errno(r, "control socket %s/ctl.sock: %m", state_abs);
                goto out;
        }

        r = sim_http_start(http, NULL, NULL, &l_http);
        if (r < 0) {
                log_error_errno(r, "cannot listen on %s: %m", http);
                goto out;
        }
        if (https) {
                r = read_text(cert, &cert_pem);
                if (r >= 0)
                        r = read_text(key, &key_pem);
                if (r < 0) {
                        log_error_errno(r, "reading the TLS certificate or key: %m");
                        goto out;
                }
                r = sim_http_start(https, cert_pem, key_pem, &l_https);
                if (r < 0) {
                        log_error_errno(r, "cannot listen on %s (TLS): %m", https);
                        goto out;
                }
        }
        printf("vbak-cvm-sim: listening on http://%s\n", http);
        if (https)
                printf("vbak-cvm-sim: listening on https://%s\n", https);
        fflush(stdout);
        sigwait(&set, &sig);
        log_info("signal %d, stopping", sig);
out:
        sim_ctl_stop();
        sim_http_stop(l_https);
        sim_http_stop(l_http);
        pthread_mutex_lock(&sim_lock);
        sim_qemu_stop_all(&model);
        sim_cvd_stop_all(&model);
        pthread_mutex_unlock(&sim_lock);
        sim_model_free(&model);
        return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
        vb_log_parse_environment();
        if (argc >= 2 && (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help"))) {
                usage(stdout);
                return 0;
        }
        if (argc >= 2 && streq(argv[1], "serve"))
                return serve(argc - 1, argv + 1);
        if (argc >= 2 && streq(argv[1], "ctl"))
                return sim_ctl_client(argc - 1, argv + 1);
        usage(stderr);
        return 2;
}
