/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-qemu.c -- the real side of the simulator: the disk images of the
 * topology (qemu-img), the VMs as QEMU processes (TCG, no guest OS), QMP,
 * and snapshots, which are QEMU's own (cas-api.md §3.3, §3.4).
 *
 * A storage pool folder the simulator makes holds the empty marker file
 * SIM_POOL_MARK, so that a later run on the same state dir still reports the
 * topology's capacity rather than the real file system's (see sim-views.c).
 *
 * State dir layout (the QMP path is what vbak-cvd --qmp-dir expects):
 *   qmp/<vm>.qmp   the QMP socket of a running VM
 *   run/<vm>.pid   its pid file; run/<vm>.log its stdout/stderr
 *   run/cmd.log    the output of the last qemu-img command
 *
 * Block node names of a running VM, disk i (0-based, in topology order):
 * "file<i>" (file protocol node), "fmt<i>" (the format node, where
 * persistent dirty bitmaps live), device "vd<i>" (virtio-blk-pci; its block
 * backend is the QOM path /machine/peripheral/vd<i>/virtio-backend, which
 * HMP qemu-io -d takes). A live external snapshot adds the overlay node
 * "fmt<i>-s<n>" (n counts the VM's live external snapshots); committing it
 * back makes "fmt<i>" the top again. A VM started on an overlay opens the
 * overlay as "fmt<i>" and its backing files under names QEMU picks.
 *
 * DESIGN: every command runs to its end before the call returns (all of it
 * under sim_lock): the images are small and QEMU starts in a fraction of a
 * second. Children get a clean signal mask and no inherited descriptor, so
 * a daemonized QEMU never keeps the simulator's listening sockets open.
 * A watchdog process (forked before any thread or QEMU) holds the read end of
 * a pipe and learns every QEMU pid through it; when the simulator dies in
 * any way, even SIGKILL, the pipe reads EOF and the watchdog terminates the
 * QEMUs that are left, so a killed simulator leaks no VM.
 * Internal snapshots of a running VM use HMP savevm/delvm (QEMU 7.2's
 * snapshot-save job needs the vmstate node and the device list spelled out;
 * savevm does the same in one call); both need every disk in qcow2, and so
 * does the offline `qemu-img snapshot -c`, so a VM with a raw disk gets a
 * failed task rather than a snapshot that silently misses a disk. External
 * snapshots put an overlay "<disk>.<snapshot name>" next to each disk
 * (one QMP transaction of blockdev-snapshot-sync when running, qemu-img
 * create -b when shut off) and the model's disk path moves to it; deleting
 * one commits the overlay back (active block-commit + block-job-complete,
 * or qemu-img commit) and removes it. Only the newest external snapshot can
 * be deleted that way; simplifyImageChain deletes them newest first.
 * A disk added to a running VM (addDevice) is hot-plugged under the next
 * index's names (blockdev-add file<i> and fmt<i>, device_add vd<i>), the names
 * a restart gives it too. There is no hot unplug: device_del needs a guest
 * to acknowledge it, and no guest OS runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"
#include "transport/qmp.h"

#define STOP_GRACE_MS 300 /* system_powerdown has no guest to answer it: quit after this */
#define EXIT_WAIT_MS 5000
#define JOB_TIMEOUT_MS 60000
#define MAX_ARGS 96

static const char *str0(const char *s)
{
        return s ? s : "";
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

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static char *state_path(const char *dir, const char *name, const char *suffix)
{
        char *p;

        if (asprintf(&p, "%s/%s/%s%s", sim_cfg.state_dir, dir, name, suffix) < 0)
                return NULL;
        return p;
}

/* The last non-empty line of a log file, for an error message. */
static char *last_line(const char *path)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        char *end, *start;

        if (vb_read_file_at(AT_FDCWD, path, 1024 * 1024, &text, &len) < 0 || len == 0)
                return strdup("(no output)");
        end = text + len;
        while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
                end--;
        *end = 0;
        start = strrchr(text, '\n');
        return strdup(start ? start + 1 : text);
}

/* Runs argv (argv[0] looked up in PATH) with stdout and stderr in log and
 * waits for it; a failure's message is the log's last line. */
static int run(char *const argv[], const char *log, char **err)
{
        sigset_t all;
        pid_t pid;
        int status;

        log_debug("running %s ...", argv[0]);
        pid = fork();
        if (pid < 0)
                return fail(err, "fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                signal(SIGPIPE, SIG_DFL);
                if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                        _exit(127);
                close_range(3, ~0U, 0);
                execvp(argv[0], argv);
                dprintf(2, "%s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR)
                        return fail(err, "waitpid: %s", strerror(errno));
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                _cleanup_free_ char *line = last_line(log);
                return fail(err, "%s: %s", argv[0], line ? line : "failed");
        }
        return 0;
}

static int run_img(char **err, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
                   const char *a6, const char *a7, const char *a8)
{
        _cleanup_free_ char *log = state_path("run", "cmd", ".log");
        char *argv[] = { "qemu-img", (char *)a1, (char *)a2, (char *)a3, (char *)a4,
                         (char *)a5, (char *)a6, (char *)a7, (char *)a8, NULL };

        if (!log)
                return -ENOMEM;
        return run(argv, log, err);
}

static bool pid_alive(pid_t pid)
{
        char path[64], buf[512], *p;
        FILE *f;
        bool alive = false;

        if (pid <= 0 || kill(pid, 0) < 0)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
                alive = p[2] != 'Z' && p[2] != 'X';
        fclose(f);
        return alive;
}

static int lifeline = -1;

static bool is_qemu(pid_t pid)
{
        char path[64], comm[32] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (!fgets(comm, sizeof(comm), f))
                comm[0] = 0;
        fclose(f);
        return strncmp(comm, "qemu-system", 11) == 0 || strncmp(comm, "vbak-cvd", 8) == 0;
}

static __attribute__((noreturn)) void watchdog(int fd)
{
        pid_t pids[1024];
        size_t n = 0;
        char line[32];
        FILE *f;

        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        f = fdopen(fd, "r");
        while (f && fgets(line, sizeof(line), f)) {
                int64_t pid;

                if (!sim_parse_id(strndupa(line + 1, strcspn(line + 1, "\n")), &pid) || pid <= 0)
                        continue;
                if (line[0] == '+' && n < ELEMENTSOF(pids)) {
                        pids[n++] = (pid_t)pid;
                } else if (line[0] == '-') {
                        for (size_t i = 0; i < n; i++)
                                if (pids[i] == pid)
                                        pids[i--] = pids[--n];
                }
        }
        /* The simulator is gone: its QEMUs and vbak-cvds go too (SIGTERM lets QEMU flush its images). */
        for (size_t i = 0; i < n; i++)
                if (pid_alive(pids[i]) && is_qemu(pids[i]))
                        kill(pids[i], SIGTERM);
        for (int t = 0; t < 150; t++) {
                bool left = false;

                for (size_t i = 0; i < n; i++)
                        left |= pid_alive(pids[i]) && is_qemu(pids[i]);
                if (!left)
                        _exit(0);
                sleep_ms(20);
        }
        for (size_t i = 0; i < n; i++)
                if (pid_alive(pids[i]) && is_qemu(pids[i]))
                        kill(pids[i], SIGKILL);
        _exit(0);
}

int sim_qemu_watchdog_start(void)
{
        int fds[2];
        pid_t pid;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return -errno;
        }
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                if (null >= 0) {
                        dup2(null, 0);
                        dup2(null, 1);
                }
                dup2(fds[0], 3);
                close_range(4, ~0U, 0);
                watchdog(3);
        }
        close(fds[0]);
        lifeline = fds[1];
        return 0;
}

void sim_watchdog_tell(char op, pid_t pid)
{
        if (lifeline >= 0)
                (void)dprintf(lifeline, "%c%d\n", op, (int)pid);
}

static bool file_exists(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0;
}

int sim_qemu_prepare(sim_model *m, char **err)
{
        int r;

        r = vb_mkdir_p_at(AT_FDCWD, sim_cfg.state_dir, 0755);
        if (r >= 0) {
                _cleanup_free_ char *q = NULL, *run_dir = NULL;

                if (asprintf(&q, "%s/qmp", sim_cfg.state_dir) < 0 ||
                    asprintf(&run_dir, "%s/run", sim_cfg.state_dir) < 0)
                        return -ENOMEM;
                r = vb_mkdir_p_at(AT_FDCWD, q, 0755);
                if (r >= 0)
                        r = vb_mkdir_p_at(AT_FDCWD, run_dir, 0755);
        }
        if (r < 0)
                return fail(err, "state dir %s: %s", sim_cfg.state_dir, strerror(-r));
        for (size_t i = 0; i < m->n_hosts; i++) {
                sim_host *h = &m->hosts[i];

                for (size_t k = 0; k < h->n_pools; k++) {
                        sim_spool *p = &h->pools[k];
                        _cleanup_free_ char *mark = NULL;
                        _cleanup_close_ int fd = -1;

                        /* A folder an earlier run made carries the marker: still the simulator's. */
                        if (asprintf(&mark, "%s/" SIM_POOL_MARK, p->path) < 0)
                                return -ENOMEM;
                        if (file_exists(p->path)) {
                                p->created = file_exists(mark);
                                continue;
                        }
                        r = vb_mkdir_p_at(AT_FDCWD, p->path, 0755);
                        if (r < 0)
                                return fail(err, "storage pool %s: %s", p->path, strerror(-r));
                        fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                        if (fd < 0)
                                return fail(err, "%s: %s", mark, strerror(errno));
                        p->created = true;
                }
        }
        for (size_t i = 0; i < m->n_vms; i++) {
                sim_vm *vm = &m->vms[i];

                for (size_t k = 0; k < vm->n_disks; k++) {
                        sim_disk *d = &vm->disks[k];
                        _cleanup_free_ char *dir = strdup(d->path), *size = NULL;
                        char *slash;

                        if (file_exists(d->path))
                                continue;
                        if (!dir || asprintf(&size, "%" PRIu64 "M", d->size_mb) < 0)
                                return -ENOMEM;
                        slash = strrchr(dir, '/');
                        if (slash && slash != dir) {
                                *slash = 0;
                                r = vb_mkdir_p_at(AT_FDCWD, dir, 0755);
                                if (r < 0)
                                        return fail(err, "%s: %s", dir, strerror(-r));
                        }
                        r = run_img(err, "create", "-q", "-f", d->format, d->path, size, NULL, NULL);
                        if (r < 0)
                                return r;
                        log_debug("created %s (%s, %" PRIu64 " MB)", d->path, d->format, d->size_mb);
                }
        }
        return 0;
}

int sim_qemu_img_create(const char *path, const char *format, uint64_t size_mb, const char *prealloc,
                        const char *cluster_size, const char *backing, const char *backing_fmt, char **err)
{
        _cleanup_free_ char *log = state_path("run", "cmd", ".log"), *size = NULL, *opts = NULL;
        char *argv[16];
        size_t n = 0;

        if (!log || asprintf(&size, "%" PRIu64 "M", size_mb) < 0)
                return -ENOMEM;
        if ((prealloc || cluster_size) &&
            asprintf(&opts, "%s%s%s%s%s", prealloc ? "preallocation=" : "", str0(prealloc),
                     prealloc && cluster_size ? "," : "", cluster_size ? "cluster_size=" : "", str0(cluster_size)) < 0)
                return -ENOMEM;
        argv[n++] = "qemu-img";
        argv[n++] = "create";
        argv[n++] = "-q";
        argv[n++] = "-f";
        argv[n++] = (char *)format;
        if (opts) {
                argv[n++] = "-o";
                argv[n++] = opts;
        }
        if (backing) {
                argv[n++] = "-b";
                argv[n++] = (char *)backing;
                argv[n++] = "-F";
                argv[n++] = (char *)backing_fmt;
        }
        argv[n++] = (char *)path;
        argv[n++] = size;
        argv[n] = NULL;
        return run(argv, log, err);
}

/* A -blockdev value: commas in a file name are doubled (QEMU's option syntax). */
static char *opt_escape(const char *s)
{
        size_t n = strlen(s);
        char *out = malloc(2 * n + 1), *o = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                *o++ = *s;
                if (*s == ',')
                        *o++ = ',';
        }
        *o = 0;
        return out;
}

int sim_qemu_start(sim_vm *vm, char **err)
{
        _cleanup_free_ char *qmp = state_path("qmp", vm->name, ".qmp");
        _cleanup_free_ char *pidfile = state_path("run", vm->name, ".pid");
        _cleanup_free_ char *log = state_path("run", vm->name, ".log");
        _cleanup_free_ char *pidtext = NULL;
        char *argv[MAX_ARGS] = { 0 }, *owned[MAX_ARGS] = { 0 };
        size_t n = 0, n_owned = 0, len;
        int64_t pid;
        int r = -ENOMEM;

        if (!qmp || !pidfile || !log)
                return -ENOMEM;
        if (vm->n_disks * 6 + 20 > MAX_ARGS)
                return fail(err, "too many disks");
#define ARG(s) (argv[n++] = (char *)(s))
#define ARGF(...)                                                                                                      \
        do {                                                                                                           \
                if (asprintf(&owned[n_owned], __VA_ARGS__) < 0)                                                        \
                        goto out;                                                                                      \
                ARG(owned[n_owned++]);                                                                                 \
        } while (0)
        ARG("qemu-system-x86_64");
        ARG("-name");
        ARG(vm->name);
        ARG("-machine");
        ARG("pc,accel=tcg");
        ARG("-nodefaults");
        ARG("-display");
        ARG("none");
        ARG("-m");
        ARG("64");
        for (size_t i = 0; i < vm->n_disks; i++) {
                _cleanup_free_ char *path = opt_escape(vm->disks[i].path);

                if (!path)
                        goto out;
                ARG("-blockdev");
                ARGF("driver=file,filename=%s,node-name=file%zu", path, i);
                ARG("-blockdev");
                ARGF("driver=%s,file=file%zu,node-name=fmt%zu", vm->disks[i].format, i, i);
                ARG("-device");
                ARGF("virtio-blk-pci,drive=fmt%zu,id=vd%zu", i, i);
        }
        ARG("-qmp");
        ARGF("unix:%s,server=on,wait=off", qmp);
        ARG("-daemonize");
        ARG("-pidfile");
        ARG(pidfile);
#undef ARG
#undef ARGF
        (void)unlink(qmp);
        (void)unlink(pidfile);
        r = run(argv, log, err);
        if (r < 0)
                goto out;
        r = vb_read_file_at(AT_FDCWD, pidfile, 64, &pidtext, &len);
        pidtext = r >= 0 ? pidtext : NULL;
        if (r < 0 || !sim_parse_id(strndupa(pidtext, strcspn(pidtext, "\n")), &pid) || pid <= 0) {
                r = fail(err, "QEMU wrote no pid file %s", pidfile);
                goto out;
        }
        vm->pid = (pid_t)pid;
        sim_watchdog_tell('+', vm->pid);
        log_info("VM %s: QEMU runs as pid %d", vm->name, (int)vm->pid);
        r = 0;
out:
        for (size_t i = 0; i < n_owned; i++)
                free(owned[i]);
        if (r == -ENOMEM && !*err)
                *err = strdup("out of memory");
        return r;
}

static int qmp_open(sim_vm *vm, tp_qmp **q, char **err)
{
        _cleanup_free_ char *path = state_path("qmp", vm->name, ".qmp");
        int r;

        if (!path)
                return -ENOMEM;
        r = tp_qmp_connect(path, TP_QMP_CONNECT_TIMEOUT_MS, q);
        if (r < 0)
                return fail(err, "QMP %s: %s", path, strerror(-r));
        return 0;
}

/* Executes one command; args is consumed. */
static int qmp_do(tp_qmp *q, const char *cmd, json_t *args, json_t **ret, char **err)
{
        _cleanup_free_ char *cls = NULL, *desc = NULL;
        int r = tp_qmp_execute(q, cmd, args, ret, &cls, &desc);

        json_decref(args);
        if (r < 0)
                return fail(err, "%s: %s", cmd, desc ? desc : strerror(-r));
        return 0;
}

/* A human monitor command; any text it answers is an error (savevm, delvm
 * and qemu-io are silent when they succeed). */
static int qmp_hmp(tp_qmp *q, const char *line, char **err)
{
        json_t *ret = NULL;
        const char *text;
        int r = qmp_do(q, "human-monitor-command", json_pack("{s:s}", "command-line", line), &ret, err);

        if (r < 0)
                return r;
        text = json_string_value(ret);
        if (text && *text) {
                r = fail(err, "%.*s", (int)strcspn(text, "\r\n"), text);
                json_decref(ret);
                return r;
        }
        json_decref(ret);
        return 0;
}

static int wait_exit(pid_t pid, unsigned ms)
{
        for (unsigned t = 0; t < ms; t += 20) {
                if (!pid_alive(pid))
                        return 0;
                sleep_ms(20);
        }
        return pid_alive(pid) ? -ETIMEDOUT : 0;
}

int sim_qemu_stop(sim_vm *vm, bool graceful, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *pidfile = state_path("run", vm->name, ".pid");
        pid_t pid = vm->pid;

        if (pid_alive(pid) && qmp_open(vm, &q, err) >= 0) {
                if (graceful) {
                        (void)qmp_do(q, "system_powerdown", NULL, NULL, err);
                        sleep_ms(STOP_GRACE_MS);
                }
                (void)qmp_do(q, "quit", NULL, NULL, err);
        }
        if (wait_exit(pid, EXIT_WAIT_MS) < 0) {
                log_warning("VM %s: QEMU pid %d does not quit: killing it", vm->name, (int)pid);
                kill(pid, SIGKILL);
                (void)wait_exit(pid, 1000);
        }
        if (pidfile)
                (void)unlink(pidfile);
        sim_watchdog_tell('-', pid);
        vm->pid = 0;
        free(*err);
        *err = NULL;
        log_info("VM %s: QEMU stopped", vm->name);
        return 0;
}

void sim_qemu_stop_all(sim_model *m)
{
        for (size_t i = 0; i < m->n_vms; i++) {
                _cleanup_free_ char *err = NULL;

                if (m->vms[i].pid > 0)
                        (void)sim_qemu_stop(&m->vms[i], false, &err);
        }
}

void sim_qemu_refresh(sim_model *m)
{
        for (size_t i = 0; i < m->n_vms; i++) {
                sim_vm *vm = &m->vms[i];

                if (vm->pid > 0 && !pid_alive(vm->pid)) {
                        log_warning("VM %s: QEMU pid %d went away: the VM is shut off", vm->name, (int)vm->pid);
                        sim_watchdog_tell('-', vm->pid);
                        vm->pid = 0;
                        vm->running = false;
                }
        }
}

int sim_qemu_hotplug(sim_vm *vm, size_t i, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *ignored = NULL;
        char file[32], fmt[32], dev[32];
        int r;

        if (i >= vm->n_disks)
                return fail(err, "no disk %zu", i);
        snprintf(file, sizeof(file), "file%zu", i);
        snprintf(fmt, sizeof(fmt), "fmt%zu", i);
        snprintf(dev, sizeof(dev), "vd%zu", i);
        r = qmp_open(vm, &q, err);
        if (r < 0)
                return r;
        r = qmp_do(q, "blockdev-add",
                   json_pack("{s:s, s:s, s:s}", "driver", "file", "filename", vm->disks[i].path, "node-name", file),
                   NULL, err);
        if (r < 0)
                return r;
        r = qmp_do(q, "blockdev-add",
                   json_pack("{s:s, s:s, s:s}", "driver", vm->disks[i].format, "file", file, "node-name", fmt), NULL,
                   err);
        if (r >= 0) {
                r = qmp_do(q, "device_add",
                           json_pack("{s:s, s:s, s:s}", "driver", "virtio-blk-pci", "drive", fmt, "id", dev), NULL,
                           err);
                if (r >= 0) {
                        log_info("VM %s: %s hot-plugged as %s (%s)", vm->name, vm->disks[i].path, dev, fmt);
                        return 0;
                }
                (void)qmp_do(q, "blockdev-del", json_pack("{s:s}", "node-name", fmt), NULL, &ignored);
        }
        (void)qmp_do(q, "blockdev-del", json_pack("{s:s}", "node-name", file), NULL, &ignored);
        return r;
}

/* The top node of device vd<i> (query-block). */
static int top_node(tp_qmp *q, size_t i, char **node, char **err)
{
        json_t *ret = NULL, *v;
        char qdev[64];
        size_t k;
        int r;

        r = qmp_do(q, "query-block", NULL, &ret, err);
        if (r < 0)
                return r;
        snprintf(qdev, sizeof(qdev), "/machine/peripheral/vd%zu/virtio-backend", i);
        *node = NULL;
        json_array_foreach(ret, k, v)
        {
                const char *name = json_string_value(json_object_get(json_object_get(v, "inserted"), "node-name"));

                if (streq(str0(json_string_value(json_object_get(v, "qdev"))), qdev) && name)
                        *node = strdup(name);
        }
        json_decref(ret);
        return *node ? 0 : fail(err, "no block node behind vd%zu", i);
}

/* The format node (qcow2/raw) whose file is path (query-named-block-nodes). */
static int node_of(tp_qmp *q, const char *path, char **node, char **err)
{
        json_t *ret = NULL, *v;
        size_t k;
        int r;

        r = qmp_do(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &ret, err);
        if (r < 0)
                return r;
        *node = NULL;
        json_array_foreach(ret, k, v)
        {
                const char *drv = str0(json_string_value(json_object_get(v, "drv")));
                const char *file = str0(json_string_value(json_object_get(v, "file")));
                const char *name = json_string_value(json_object_get(v, "node-name"));

                if (!*node && name && streq(file, path) && (streq(drv, "qcow2") || streq(drv, "raw")))
                        *node = strdup(name);
        }
        json_decref(ret);
        return *node ? 0 : fail(err, "no block node for %s", path);
}

static bool valid_name(const char *name)
{
        if (!*name || name[0] == '.' || name[0] == '-' || strlen(name) > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (*p == '/' || *p == '"' || *p == '\\' || *p == ' ' || (unsigned char)*p < 0x20)
                        return false;
        return true;
}

static bool all_qcow2(sim_vm *vm, char **err)
{
        for (size_t i = 0; i < vm->n_disks; i++)
                if (!streq(vm->disks[i].format, "qcow2")) {
                        fail(err, "磁盘%s不是qcow2格式，不支持内部快照。", vm->disks[i].device);
                        return false;
                }
        return true;
}

static int internal_create(sim_vm *vm, sim_snapshot *s, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *line = NULL;
        int r;

        if (!all_qcow2(vm, err))
                return -EINVAL;
        if (vm->pid > 0) {
                r = qmp_open(vm, &q, err);
                if (r < 0)
                        return r;
                if (asprintf(&line, "savevm %s", s->name) < 0)
                        return -ENOMEM;
                r = qmp_hmp(q, line, err);
                if (r < 0)
                        return r;
                s->mem = true;
                return 0;
        }
        for (size_t i = 0; i < vm->n_disks; i++) {
                r = run_img(err, "snapshot", "-c", s->name, vm->disks[i].path, NULL, NULL, NULL, NULL);
                if (r < 0) {
                        _cleanup_free_ char *ignored = NULL;

                        while (i-- > 0)
                                (void)run_img(&ignored, "snapshot", "-d", s->name, vm->disks[i].path, NULL, NULL, NULL,
                                              NULL);
                        return r;
                }
        }
        return 0;
}

static int external_create(sim_vm *vm, sim_snapshot *s, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        int r;

        for (size_t i = 0; i < vm->n_disks; i++) {
                sim_snapfile *f = &s->files[i];

                if (asprintf(&f->top, "%s.%s", vm->disks[i].path, s->name) < 0)
                        return -ENOMEM;
                if (file_exists(f->top))
                        return fail(err, "文件%s已存在。", f->top);
        }
        if (vm->pid > 0) {
                json_t *actions = json_array();

                r = qmp_open(vm, &q, err);
                for (size_t i = 0; r >= 0 && i < vm->n_disks; i++) {
                        _cleanup_free_ char *node = NULL;
                        char ov_node[48];

                        r = top_node(q, i, &node, err);
                        if (r < 0)
                                break;
                        snprintf(ov_node, sizeof(ov_node), "fmt%zu-s%u", i, vm->live_snaps + 1);
                        json_array_append_new(actions, json_pack("{s:s, s:{s:s, s:s, s:s, s:s}}", "type",
                                                                 "blockdev-snapshot-sync", "data", "node-name", node,
                                                                 "snapshot-file", s->files[i].top, "snapshot-node-name",
                                                                 ov_node, "format", "qcow2"));
                }
                if (r >= 0)
                        r = qmp_do(q, "transaction", json_pack("{s:o}", "actions", json_incref(actions)), NULL, err);
                json_decref(actions);
                if (r < 0)
                        return r;
                vm->live_snaps++;
        } else {
                for (size_t i = 0; i < vm->n_disks; i++) {
                        _cleanup_free_ char *log = state_path("run", "cmd", ".log");
                        char *argv[] = { "qemu-img",
                                         "create",
                                         "-q",
                                         "-f",
                                         "qcow2",
                                         "-b",
                                         vm->disks[i].path,
                                         "-F",
                                         vm->disks[i].format,
                                         s->files[i].top,
                                         NULL };

                        r = log ? run(argv, log, err) : -ENOMEM;
                        if (r < 0) {
                                while (i-- > 0)
                                        (void)unlink(s->files[i].top);
                                return r;
                        }
                }
        }
        /* The model follows: each disk's top is now its overlay. */
        for (size_t i = 0; i < vm->n_disks; i++) {
                sim_disk *d = &vm->disks[i];
                sim_snapfile *f = &s->files[i];
                char *top = strdup(f->top), *fmt = strdup("qcow2");

                if (!top || !fmt) {
                        free(top);
                        free(fmt);
                        return -ENOMEM;
                }
                f->base = d->path;
                f->base_format = d->format;
                f->prev_backing = d->backing;
                d->backing = strdup(f->base);
                d->path = top;
                d->format = fmt;
        }
        return 0;
}

int sim_qemu_snapshot_create(sim_vm *vm, const char *name, int mode, const char *desc, char **err)
{
        sim_snapshot s = { .mode = mode, .created_ms = sim_now_ms() }, *arr;
        int r;

        if (!valid_name(name))
                return fail(err, "快照名称“%s”无效。", name);
        if (sim_vm_snapshot(vm, name))
                return fail(err, "快照“%s”已存在。", name);
        if (vm->n_disks == 0)
                return fail(err, "虚拟机没有磁盘。");
        s.name = strdup(name);
        s.desc = strdup(desc ? desc : "");
        s.files = calloc(vm->n_disks, sizeof(*s.files));
        s.n_files = vm->n_disks;
        if (!s.name || !s.desc || !s.files) {
                r = -ENOMEM;
                goto out;
        }
        r = mode == 2 ? external_create(vm, &s, err) : internal_create(vm, &s, err);
        if (r < 0)
                goto out;
        if (mode != 2)
                for (size_t i = 0; i < vm->n_disks; i++)
                        if (!(s.files[i].top = strdup(vm->disks[i].path)))
                                r = -ENOMEM;
        arr = realloc(vm->snaps, (vm->n_snaps + 1) * sizeof(*arr));
        if (r < 0 || !arr) {
                r = -ENOMEM;
                goto out;
        }
        vm->snaps = arr;
        vm->snaps[vm->n_snaps++] = s;
        log_info("VM %s: %s snapshot %s created", vm->name, mode == 2 ? "external" : "internal", name);
        return 0;
out:
        if (r == -ENOMEM && !*err)
                *err = strdup("out of memory");
        sim_snapshot_free(&s);
        return r;
}

/* Waits for block job id: completes it once ready (an active commit), until
 * it is gone. */
static int wait_job(tp_qmp *q, const char *id, char **err)
{
        bool completed = false;

        for (unsigned t = 0; t < JOB_TIMEOUT_MS; t += 50) {
                json_t *ret = NULL, *v, *job = NULL;
                size_t k;
                int r = qmp_do(q, "query-block-jobs", NULL, &ret, err);

                if (r < 0)
                        return r;
                json_array_foreach(ret, k, v) if (streq(str0(json_string_value(json_object_get(v, "device"))), id))
                        job = v;
                if (!job) {
                        json_decref(ret);
                        return 0;
                }
                if (!completed && json_is_true(json_object_get(job, "ready"))) {
                        json_decref(ret);
                        r = qmp_do(q, "block-job-complete", json_pack("{s:s}", "device", id), NULL, err);
                        if (r < 0)
                                return r;
                        completed = true;
                        continue;
                }
                json_decref(ret);
                sleep_ms(50);
        }
        return fail(err, "block job %s did not finish", id);
}

static int commit_live(sim_vm *vm, sim_snapshot *s, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        int r = qmp_open(vm, &q, err);

        for (size_t i = 0; r >= 0 && i < vm->n_disks; i++) {
                _cleanup_free_ char *top = NULL, *base = NULL, *now = NULL;
                char job[32];

                snprintf(job, sizeof(job), "commit-vd%zu", i);
                r = node_of(q, s->files[i].top, &top, err);
                if (r >= 0)
                        r = node_of(q, s->files[i].base, &base, err);
                if (r >= 0)
                        r = qmp_do(q, "block-commit",
                                   json_pack("{s:s, s:s, s:s}", "job-id", job, "device", top, "base-node", base), NULL,
                                   err);
                if (r >= 0)
                        r = wait_job(q, job, err);
                if (r >= 0)
                        r = top_node(q, i, &now, err);
                /* A failed job vanishes too (auto-dismiss): the device must now read the base. */
                if (r >= 0 && !streq(now, base))
                        r = fail(err, "block-commit of %s did not finish: vd%zu still on %s", s->files[i].top, i, now);
        }
        return r;
}

static int external_delete(sim_vm *vm, sim_snapshot *s, char **err)
{
        int r;

        for (size_t i = 0; i < vm->n_disks; i++)
                if (i >= s->n_files || !streq(vm->disks[i].path, s->files[i].top))
                        return fail(err, "只能删除最新的外部快照。");
        for (size_t k = 0; k < vm->n_snaps; k++)
                if (vm->snaps[k].mode != 2 && vm->snaps[k].n_files && streq(vm->snaps[k].files[0].top, s->files[0].top))
                        return fail(err, "外部快照“%s”的镜像中有内部快照“%s”。", s->name, vm->snaps[k].name);
        if (vm->pid > 0) {
                r = commit_live(vm, s, err);
        } else {
                r = 0;
                for (size_t i = 0; r >= 0 && i < vm->n_disks; i++)
                        r = run_img(err, "commit", "-q", s->files[i].top, NULL, NULL, NULL, NULL, NULL);
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < vm->n_disks; i++) {
                sim_disk *d = &vm->disks[i];
                sim_snapfile *f = &s->files[i];

                if (unlink(f->top) < 0)
                        log_warning("removing %s: %m", f->top);
                free(d->path);
                free(d->format);
                free(d->backing);
                d->path = TAKE_PTR(f->base);
                d->format = TAKE_PTR(f->base_format);
                d->backing = TAKE_PTR(f->prev_backing);
        }
        return 0;
}

static int internal_delete(sim_vm *vm, sim_snapshot *s, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *line = NULL;
        int r;

        if (vm->pid > 0) {
                r = qmp_open(vm, &q, err);
                if (r < 0)
                        return r;
                if (asprintf(&line, "delvm %s", s->name) < 0)
                        return -ENOMEM;
                return qmp_hmp(q, line, err);
        }
        for (size_t i = 0; i < s->n_files; i++) {
                r = run_img(err, "snapshot", "-d", s->name, s->files[i].top, NULL, NULL, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

int sim_qemu_snapshot_delete(sim_vm *vm, const char *name, char **err)
{
        sim_snapshot *s = sim_vm_snapshot(vm, name);
        size_t idx;
        int r;

        if (!s)
                return fail(err, "快照“%s”不存在。", name);
        r = s->mode == 2 ? external_delete(vm, s, err) : internal_delete(vm, s, err);
        if (r < 0)
                return r;
        log_info("VM %s: snapshot %s deleted", vm->name, name);
        idx = (size_t)(s - vm->snaps);
        sim_snapshot_free(s);
        memmove(&vm->snaps[idx], &vm->snaps[idx + 1], (vm->n_snaps - idx - 1) * sizeof(*s));
        vm->n_snaps--;
        return 0;
}

int sim_qemu_simplify(sim_vm *vm, char **err)
{
        for (size_t i = vm->n_snaps; i-- > 0;) {
                _cleanup_free_ char *name = NULL;
                int r;

                if (vm->snaps[i].mode != 2)
                        continue;
                name = strdup(vm->snaps[i].name);
                if (!name)
                        return -ENOMEM;
                r = sim_qemu_snapshot_delete(vm, name, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int sim_qemu_write(sim_vm *vm, size_t disk, const char *offset, const char *length, unsigned byte, char **err)
{
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *line = NULL;
        int r;

        if (vm->pid <= 0 || !pid_alive(vm->pid))
                return fail(err, "VM %s is not running", vm->name);
        if (disk >= vm->n_disks)
                return fail(err, "VM %s has no disk %zu", vm->name, disk);
        r = qmp_open(vm, &q, err);
        if (r < 0)
                return r;
        /* The device's block backend, whatever node is on top (an overlay after
         * an external snapshot): the guest's view of the disk. */
        if (asprintf(&line, "qemu-io -d /machine/peripheral/vd%zu/virtio-backend \"write -P 0x%02x %s %s\"", disk,
                     byte & 0xff, offset, length) < 0)
                return -ENOMEM;
        return qmp_hmp(q, line, err);
}
