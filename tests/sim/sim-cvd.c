/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-cvd.c -- the per-host disk service: every CVK host of the topology gets
 * a real vbak-cvd (the CVD-style service of cas-api.md §4, docs/cvd-protocol.md)
 * listening on the host's backup-network address (else the management one,
 * else the host's ip) at --cvd-port (8192 by default), serving the host's
 * storage pool folders, with the running VMs' QMP sockets in <state>/qmp and
 * the shared token in <state>/cvd.token.
 *
 * DESIGN: the hosts' addresses are loopback addresses (127.0.1.X ...): Linux
 * routes all of 127/8 to lo, so binding them needs no setup. The data ports
 * of host i (0-based, topology order) are cvd_port+1+100*i .. cvd_port+100+100*i,
 * so the hosts' ranges never overlap. A VM migrated to another host keeps
 * its disks where they are (shared storage), so a host's service also
 * serves the folders of the disks of every VM placed on it; a migration
 * restarts the destination's service, and so does a VM added (vm/add,
 * addDevice) with a disk outside the host's pools. Each vbak-cvd is a child of the
 * simulator, known to the watchdog (sim-qemu.c), so a killed simulator
 * leaks none.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define CVD_PORTS_PER_HOST 100
#define CVD_READY_MS 5000
#define CVD_STOP_MS 3000
#define MAX_DIRS 64

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static _printf_(2, 3) int fail(char **err, const char *fmt, ...)
{
        va_list ap;

        free(*err);
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
        return -EIO;
}

static const char *net_ip(const sim_host *h, const char *role)
{
        for (size_t i = 0; i < h->n_nets; i++)
                if (streq(h->nets[i].role, role) && h->nets[i].ip && *h->nets[i].ip)
                        return h->nets[i].ip;
        return NULL;
}

const char *sim_host_cvd_ip(const sim_host *h)
{
        const char *ip = net_ip(h, "backup");

        if (!ip)
                ip = net_ip(h, "management");
        return ip ? ip : h->ip;
}

/* <state>/cvd.token: made once with 32 random hex digits, reused after. */
static int ensure_token(char **path)
{
        _cleanup_close_ int fd = -1;
        uint8_t rnd[16];
        char hex[2 * sizeof(rnd) + 2];
        struct stat st;
        int r;

        if (asprintf(path, "%s/cvd.token", sim_cfg.state_dir) < 0)
                return -ENOMEM;
        if (stat(*path, &st) == 0)
                return 0;
        r = vb_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof(rnd); i++)
                snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
        strcat(hex, "\n");
        fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex))
                return -EIO;
        return 0;
}

static bool accepts(const char *ip, unsigned port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return false;
        return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static bool pid_running(pid_t pid)
{
        int status;

        /* Our own child: reaped here when it is gone. */
        return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

/* Adds dir to dirs[] unless it is there already. */
static int add_dir(char **dirs, size_t *n, const char *dir)
{
        for (size_t i = 0; i < *n; i++)
                if (streq(dirs[i], dir))
                        return 0;
        if (*n >= MAX_DIRS)
                return -E2BIG;
        dirs[*n] = strdup(dir);
        if (!dirs[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

static char *join_dirs(char **dirs, size_t n)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                return NULL;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s\n", dirs[i]);
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

static int host_dirs(sim_model *m, const sim_host *h, char **dirs, size_t *n)
{
        int r = 0;

        for (size_t i = 0; i < h->n_pools && r >= 0; i++)
                r = add_dir(dirs, n, h->pools[i].path);
        for (size_t i = 0; i < m->n_vms && r >= 0; i++) {
                if (m->vms[i].host_id != h->id)
                        continue;
                for (size_t k = 0; k < m->vms[i].n_disks && r >= 0; k++) {
                        _cleanup_free_ char *dir = strdup(m->vms[i].disks[k].path);
                        char *slash = dir ? strrchr(dir, '/') : NULL;

                        if (!dir)
                                return -ENOMEM;
                        if (slash && slash != dir) {
                                *slash = 0;
                                r = add_dir(dirs, n, dir);
                        }
                }
        }
        return r;
}

int sim_cvd_start(sim_model *m, sim_host *h, char **err)
{
        _cleanup_free_ char *token = NULL, *listen = NULL, *range = NULL, *qmp = NULL, *log = NULL;
        char *dirs[MAX_DIRS], *argv[2 * MAX_DIRS + 16];
        size_t n_dirs = 0, n = 0, idx = (size_t)(h - m->hosts);
        unsigned first = sim_cfg.cvd_port + 1 + CVD_PORTS_PER_HOST * (unsigned)idx;
        const char *ip = sim_host_cvd_ip(h);
        pid_t pid;
        int r;

        if (!sim_cfg.cvd_port || pid_running(h->cvd_pid))
                return 0;
        if (first + CVD_PORTS_PER_HOST - 1 > 65535)
                return fail(err, "host %s: no data ports above %u", h->name, sim_cfg.cvd_port);
        r = ensure_token(&token);
        if (r < 0)
                return fail(err, "%s/cvd.token: %s", sim_cfg.state_dir, strerror(-r));
        r = host_dirs(m, h, dirs, &n_dirs);
        if (r < 0)
                goto out;
        if (asprintf(&listen, "%s:%u", ip, sim_cfg.cvd_port) < 0 ||
            asprintf(&range, "%u-%u", first, first + CVD_PORTS_PER_HOST - 1) < 0 ||
            asprintf(&qmp, "%s/qmp", sim_cfg.state_dir) < 0 ||
            asprintf(&log, "%s/run/cvd-%s.log", sim_cfg.state_dir, h->name) < 0) {
                r = -ENOMEM;
                goto out;
        }
        argv[n++] = (char *)sim_cfg.cvd_bin;
        argv[n++] = "--listen";
        argv[n++] = listen;
        argv[n++] = "--port-range";
        argv[n++] = range;
        argv[n++] = "--qmp-dir";
        argv[n++] = qmp;
        argv[n++] = "--token-file";
        argv[n++] = token;
        for (size_t i = 0; i < n_dirs; i++) {
                argv[n++] = "--images";
                argv[n++] = dirs[i];
        }
        argv[n] = NULL;
        free(h->cvd_dirs);
        h->cvd_dirs = join_dirs(dirs, n_dirs);

        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                sigset_t all;

                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                signal(SIGPIPE, SIG_DFL);
                if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                        _exit(127);
                close_range(3, ~0U, 0);
                execv(argv[0], argv);
                dprintf(2, "%s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        h->cvd_pid = pid;
        sim_watchdog_tell('+', pid);
        for (unsigned t = 0; t < CVD_READY_MS; t += 20) {
                if (accepts(ip, sim_cfg.cvd_port)) {
                        log_info("host %s: vbak-cvd pid %d on %s (data ports %s)", h->name, (int)pid, listen, range);
                        r = 0;
                        goto out;
                }
                if (!pid_running(pid))
                        break;
                sleep_ms(20);
        }
        sim_cvd_stop(h);
        r = fail(err, "host %s: vbak-cvd did not start on %s (see %s)", h->name, listen, log);
out:
        for (size_t i = 0; i < n_dirs; i++)
                free(dirs[i]);
        if (r < 0 && !*err)
                (void)fail(err, "host %s: vbak-cvd: %s", h->name, strerror(-r));
        return r;
}

void sim_cvd_stop(sim_host *h)
{
        pid_t pid = h->cvd_pid;
        int status;

        if (pid <= 0)
                return;
        kill(pid, SIGTERM);
        for (unsigned t = 0; t < CVD_STOP_MS && pid_running(pid); t += 20)
                sleep_ms(20);
        if (pid_running(pid)) {
                log_warning("host %s: vbak-cvd pid %d does not stop: killing it", h->name, (int)pid);
                kill(pid, SIGKILL);
                (void)waitpid(pid, &status, 0);
        }
        sim_watchdog_tell('-', pid);
        h->cvd_pid = 0;
        log_info("host %s: vbak-cvd stopped", h->name);
}

int sim_cvd_refresh(sim_model *m, sim_host *h, char **err)
{
        _cleanup_free_ char *now = NULL;
        char *dirs[MAX_DIRS];
        size_t n_dirs = 0;
        int r;

        if (!pid_running(h->cvd_pid))
                return 0;
        r = host_dirs(m, h, dirs, &n_dirs);
        if (r >= 0 && !(now = join_dirs(dirs, n_dirs)))
                r = -ENOMEM;
        for (size_t i = 0; i < n_dirs; i++)
                free(dirs[i]);
        if (r < 0)
                return fail(err, "host %s: vbak-cvd: %s", h->name, strerror(-r));
        if (streq_ptr(now, h->cvd_dirs))
                return 0;
        log_info("host %s: the folders to serve changed, restarting vbak-cvd", h->name);
        sim_cvd_stop(h);
        return sim_cvd_start(m, h, err);
}

void sim_cvd_stop_all(sim_model *m)
{
        for (size_t i = 0; i < m->n_hosts; i++)
                sim_cvd_stop(&m->hosts[i]);
}
