/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vbak-cvd.c -- the reference CVD-style disk service for a host that runs
 * VMs: serves the images under its --images folders as NBD exports and
 * manages their dirty bitmaps, for clients that speak the control protocol
 * of docs/cvd-protocol.md (vbak's cvd:// sources and targets).
 *
 * DESIGN: main() only checks the options, loads the secrets and the TLS
 * context, and runs cvd-server.c on one libuv loop until SIGTERM or SIGINT,
 * which close every session and so every export before the process exits.
 * It refuses to start without authentication: it never serves anyone who
 * does not prove the token or a user's password.
 */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "daemon/error.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/util.h"
#include "transport/conn.h"
#include "transport/cvd-export.h"
#include "transport/cvd-server.h"

#define SECRET_FILE_MAX (1024 * 1024)
#define THREADPOOL_SIZE "16" /* backend calls block; sessions should not wait for each other much */

static const char help_text[] =
        "Usage: vbak-cvd --images DIR [--images DIR...] --token-file F | --credentials-file F [OPTIONS]\n"
        "Serves the disk images under DIR as NBD exports, with their dirty bitmaps, to clients of the\n"
        "CVD-style control protocol (docs/cvd-protocol.md).\n\n"
        "  --listen ADDR:PORT       control address (default 0.0.0.0:8192; [ADDR]:PORT for IPv6)\n"
        "  --port-range A-B         NBD data ports (default 10000-30000)\n"
        "  --images DIR             a folder whose images may be served (repeatable; required)\n"
        "  --qmp-dir DIR            where running VMs' QMP sockets are (<DIR>/<vm>.qmp)\n"
        "  --data-host ADDR         address exports listen on and are announced with\n"
        "                           (default: the listen address; for 0.0.0.0 or ::, the address\n"
        "                           each client reached the service on)\n"
        "  --tls-cert F --tls-key F serve every connection over TLS with this PEM certificate and key\n"
        "  --token-file F           the shared token: the file's first line (at least 16 bytes)\n"
        "  --credentials-file F     user:<hex salt>:<hex PBKDF2-HMAC-SHA256, 100000 rounds> lines\n"
        "                           (password authentication; needs TLS)\n"
        "  --max-clients N          sessions served at once (default 64)\n"
        "  --timeout SECONDS        idle timeout of a session, 1-600 (default 600)\n"
        "  --log-level LEVEL        error, warning, notice, info (default) or debug\n"
        "  --version                show the version\n"
        "  --help                   show this text\n";

_printf_(2, 3) static int fail(vb_error code, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "vbak-cvd: %s [E%d %s]\n", msg, code, vb_error_name(code));
        return code;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *ret)
{
        char *end;
        unsigned long v;

        if (!s || !*s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* ADDR:PORT or [ADDR]:PORT into a host (owned) and a port. */
static int parse_listen(const char *s, char **ret_host, uint16_t *ret_port)
{
        const char *colon = strrchr(s, ':');
        unsigned long port;
        size_t n;

        if (!colon || parse_uint(colon + 1, 0, 65535, &port) < 0)
                return -EINVAL;
        n = (size_t)(colon - s);
        if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
                s++;
                n -= 2;
        }
        if (n == 0)
                return -EINVAL;
        *ret_host = strndup(s, n);
        if (!*ret_host)
                return -ENOMEM;
        *ret_port = (uint16_t)port;
        return 0;
}

/* Reads a secret file, warning when others may read it. */
static int read_secret(const char *path, char **ret)
{
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len;
        int r;

        r = vb_read_file_at(AT_FDCWD, path, SECRET_FILE_MAX, &text, &len);
        if (r < 0)
                return fail(r == -ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(r), "%s: %s", path, strerror(-r));
        if (strlen(text) != len)
                return fail(VB_E_USAGE, "%s: holds a NUL byte", path);
        if (stat(path, &st) == 0 && (st.st_mode & 077))
                log_warning("%s can be read by other users than its owner (chmod 600 it)", path);
        *ret = TAKE_PTR(text);
        return 0;
}

static uv_signal_t sig_term, sig_int;
static tp_cvd_server *server;

static void on_stopped(void *userdata)
{
        uv_close((uv_handle_t *)&sig_term, NULL);
        uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
        log_info("%s: stopping", strsignal(signum));
        (void)vb_notify("STOPPING=1\nSTATUS=stopping");
        uv_signal_stop(&sig_term);
        uv_signal_stop(&sig_int);
        tp_cvd_server_stop(TAKE_PTR(server), on_stopped, NULL);
}

int main(int argc, char **argv)
{
        enum {
                OPT_LISTEN = 256,
                OPT_PORTS,
                OPT_IMAGES,
                OPT_QMP,
                OPT_DATA_HOST,
                OPT_CERT,
                OPT_KEY,
                OPT_TOKEN,
                OPT_CRED,
                OPT_MAX,
                OPT_TIMEOUT,
                OPT_LOG,
                OPT_VERSION
        };
        static const struct option opts[] = {
                { "listen", required_argument, NULL, OPT_LISTEN },
                { "port-range", required_argument, NULL, OPT_PORTS },
                { "images", required_argument, NULL, OPT_IMAGES },
                { "qmp-dir", required_argument, NULL, OPT_QMP },
                { "data-host", required_argument, NULL, OPT_DATA_HOST },
                { "tls-cert", required_argument, NULL, OPT_CERT },
                { "tls-key", required_argument, NULL, OPT_KEY },
                { "token-file", required_argument, NULL, OPT_TOKEN },
                { "credentials-file", required_argument, NULL, OPT_CRED },
                { "max-clients", required_argument, NULL, OPT_MAX },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "log-level", required_argument, NULL, OPT_LOG },
                { "version", no_argument, NULL, OPT_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *listen_arg = "0.0.0.0:8192", *data_host = NULL, *qmp_dir = NULL, *cert = NULL, *key = NULL,
                   *token_file = NULL, *cred_file = NULL;
        _cleanup_free_ char *listen_host = NULL, *token_text = NULL, *token = NULL, *credentials = NULL,
                            *qmp_real = NULL;
        char **dirs = NULL;
        size_t n_dirs = 0;
        unsigned long max_clients = TP_CVD_MAX_CLIENTS_DEFAULT, timeout = TP_CVD_TIMEOUT_DEFAULT, a, b;
        uint16_t listen_port, port_min = 10000, port_max = 30000;
        SSL_CTX *tls = NULL;
        tp_cvd_why why = { "" };
        tp_export_cfg cfg;
        uv_loop_t loop;
        int c, r, code;

        vb_log_parse_environment();
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case OPT_LISTEN:
                        listen_arg = optarg;
                        break;
                case OPT_PORTS: {
                        const char *dash = strchr(optarg, '-');
                        _cleanup_free_ char *lo = dash ? strndup(optarg, (size_t)(dash - optarg)) : NULL;

                        if (!lo || parse_uint(lo, 1, 65535, &a) < 0 || parse_uint(dash + 1, 1, 65535, &b) < 0 || a > b)
                                return fail(VB_E_USAGE, "bad port range '%s' (A-B, 1 <= A <= B <= 65535)", optarg);
                        port_min = (uint16_t)a;
                        port_max = (uint16_t)b;
                        break;
                }
                case OPT_IMAGES: {
                        char *real = realpath(optarg, NULL), **v;
                        struct stat st;

                        if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
                                free(real);
                                return fail(VB_E_NOT_FOUND, "--images %s: not a folder", optarg);
                        }
                        v = realloc(dirs, (n_dirs + 1) * sizeof(*dirs));
                        if (!v)
                                return fail(VB_E_FAILED, "out of memory");
                        dirs = v;
                        dirs[n_dirs++] = real;
                        break;
                }
                case OPT_QMP:
                        qmp_dir = optarg;
                        break;
                case OPT_DATA_HOST:
                        data_host = optarg;
                        break;
                case OPT_CERT:
                        cert = optarg;
                        break;
                case OPT_KEY:
                        key = optarg;
                        break;
                case OPT_TOKEN:
                        token_file = optarg;
                        break;
                case OPT_CRED:
                        cred_file = optarg;
                        break;
                case OPT_MAX:
                        if (parse_uint(optarg, 1, 4096, &max_clients) < 0)
                                return fail(VB_E_USAGE, "bad --max-clients '%s' (1-4096)", optarg);
                        break;
                case OPT_TIMEOUT:
                        if (parse_uint(optarg, 1, 600, &timeout) < 0)
                                return fail(VB_E_USAGE, "bad --timeout '%s' (1-600 seconds)", optarg);
                        break;
                case OPT_LOG:
                        r = vb_log_level_from_string(optarg);
                        if (r < 0)
                                return fail(VB_E_USAGE, "bad --log-level '%s'", optarg);
                        vb_log_set_max_level(r);
                        break;
                case OPT_VERSION:
                        printf("vbak-cvd %s (protocol version %d)\n", VBAK_VERSION, TP_CVD_VERSION);
                        return 0;
                case 'h':
                        fputs(help_text, stdout);
                        return 0;
                default:
                        return VB_E_USAGE;
                }
        }
        if (optind != argc)
                return fail(VB_E_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
        if (n_dirs == 0)
                return fail(VB_E_USAGE, "give at least one --images folder (see --help)");
        if (!token_file && !cred_file)
                return fail(VB_E_USAGE, "give --token-file or --credentials-file: vbak-cvd never serves without "
                                        "authentication");
        if (!cert != !key)
                return fail(VB_E_USAGE, "TLS needs both --tls-cert and --tls-key");
        if (cred_file && !cert)
                log_warning("--credentials-file without TLS: password authentication is refused over plain TCP");
        if (parse_listen(listen_arg, &listen_host, &listen_port) < 0)
                return fail(VB_E_USAGE, "bad --listen '%s' (ADDR:PORT or [ADDR]:PORT)", listen_arg);
        /* A wildcard listener without --data-host announces, to each
         * client, the address that client reached us on. */
        if (!data_host && !streq(listen_host, "0.0.0.0") && !streq(listen_host, "::"))
                data_host = listen_host;
        if (qmp_dir) {
                qmp_real = realpath(qmp_dir, NULL);
                if (!qmp_real)
                        return fail(VB_E_NOT_FOUND, "--qmp-dir %s: %s", qmp_dir, strerror(errno));
        }
        if (token_file) {
                code = read_secret(token_file, &token_text);
                if (code)
                        return code;
                if (tp_cvd_token_parse(token_text, strlen(token_text), &token) < 0)
                        return fail(VB_E_USAGE, "%s: the token (its first line) must have at least %d bytes",
                                    token_file, TP_CVD_TOKEN_MIN);
        }
        if (cred_file) {
                unsigned line = 0;

                code = read_secret(cred_file, &credentials);
                if (code)
                        return code;
                if (tp_cvd_credentials_check(credentials, NULL, NULL, &line) < 0)
                        return fail(VB_E_USAGE, "%s:%u: expected user:<hex salt>:<64 hex digits>", cred_file, line);
        }
        if (cert) {
                r = tp_tls_server_ctx_new(cert, key, &tls, &why);
                if (r < 0)
                        return fail(VB_E_USAGE, "%s", r == -EINVAL ? why.msg : strerror(-r));
        }

        signal(SIGPIPE, SIG_IGN);
        setenv("UV_THREADPOOL_SIZE", THREADPOOL_SIZE, 0);
        cfg = (tp_export_cfg){ .image_dirs = dirs,
                               .n_image_dirs = n_dirs,
                               .qmp_dir = qmp_real,
                               .data_host = data_host,
                               .port_min = port_min,
                               .port_max = port_max };
        uv_loop_init(&loop);
        tp_cvd_server_opts so = { .cfg = &cfg,
                                  .listen_host = listen_host,
                                  .listen_port = listen_port,
                                  .tls = tls,
                                  .token = token,
                                  .credentials = credentials,
                                  .max_clients = (unsigned)max_clients,
                                  .timeout_s = (unsigned)timeout };
        r = tp_cvd_server_start(&loop, &so, &server, &why);
        SSL_CTX_free(tls);
        if (r < 0) {
                uv_run(&loop, UV_RUN_DEFAULT);
                uv_loop_close(&loop);
                return fail(r == -EINVAL ? VB_E_USAGE : VB_E_NETWORK, "%s", why.msg);
        }
        uv_signal_init(&loop, &sig_term);
        uv_signal_init(&loop, &sig_int);
        uv_signal_start(&sig_term, on_signal, SIGTERM);
        uv_signal_start(&sig_int, on_signal, SIGINT);
        fprintf(stderr,
                strchr(listen_host, ':') ? "vbak-cvd: listening on [%s]:%u\n" : "vbak-cvd: listening on %s:%u\n",
                listen_host, tp_cvd_server_port(server));
        log_info("serving %zu image folders, data ports %u-%u on %s, %s, at most %lu clients, idle timeout %lu s",
                 n_dirs, port_min, port_max, data_host ? data_host : "each client's address", tls ? "TLS" : "plain TCP",
                 max_clients, timeout);
        (void)vb_notifyf("READY=1\nSTATUS=listening on port %u", tp_cvd_server_port(server));
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        for (size_t i = 0; i < n_dirs; i++)
                free(dirs[i]);
        free(dirs);
        if (token)
                explicit_bzero(token, strlen(token));
        if (token_text)
                explicit_bzero(token_text, strlen(token_text));
        log_info("stopped");
        return 0;
}
