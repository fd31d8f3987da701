/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim-ctl.c -- the control channel of a running simulator: a unix socket
 * <state>/ctl.sock taking one-line commands and giving one-line answers
 * ("ok" or "error: ..."), and the `vbak-cvm-sim ctl` client. The commands
 * drive what a test cannot do through the REST API: a guest workload
 * (HMP qemu-io), a power cycle, a migration, a new host id, and the fault
 * knobs. See tests/sim/README.md "Control commands".
 *
 * DESIGN: one thread accepts and serves one connection at a time; a command
 * runs under sim_lock after the due tasks are settled, like a request. The
 * fault knobs live in the model (a bit per knob in sim_vm.faults and
 * sim_host.faults) plus a global mask; the one-shot knobs (session-expiry,
 * conn-reset) are counters read by the HTTP threads before they take the
 * lock, hence atomics.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/sim/sim.h"

#define CTL_LINE_MAX 4096
#define CTL_MAX_ARGS 8

static const char *const knob_names[SIM_FAULT_COUNT] = {
        [SIM_FAULT_SNAPSHOT_FAIL] = "snapshot-fail", [SIM_FAULT_TASK_SLOW] = "task-slow",
        [SIM_FAULT_SHUTDOWN_HANG] = "shutdown-hang", [SIM_FAULT_SESSION_EXPIRY] = "session-expiry",
        [SIM_FAULT_CONN_RESET] = "conn-reset",       [SIM_FAULT_HOST_DOWN] = "host-down",
        [SIM_FAULT_POOL_FULL] = "pool-full",         [SIM_FAULT_GUEST_AGENT] = "guest-agent",
};

static unsigned global_faults;
static int one_shot[SIM_FAULT_COUNT];
static int listen_fd = -1;
static pthread_t thread;
static bool thread_started;

bool sim_fault_vm(sim_fault_knob k, const sim_vm *vm)
{
        return (global_faults & (1u << k)) || (vm && (vm->faults & (1u << k)));
}

bool sim_fault_host(sim_fault_knob k, const sim_host *h)
{
        return (global_faults & (1u << k)) || (h && (h->faults & (1u << k)));
}

bool sim_fault_take(sim_fault_knob k)
{
        int n = __atomic_load_n(&one_shot[k], __ATOMIC_SEQ_CST);

        while (n > 0) {
                if (__atomic_compare_exchange_n(&one_shot[k], &n, n - 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
                        return true;
        }
        return false;
}

/* A host by id or name. */
static sim_host *find_host(sim_model *m, const char *s)
{
        int64_t id;

        if (sim_parse_id(s, &id))
                return sim_model_host(m, id);
        for (size_t i = 0; i < m->n_hosts; i++)
                if (streq(m->hosts[i].name, s))
                        return &m->hosts[i];
        return NULL;
}

/* A VM by id, uuid or name. */
static sim_vm *find_vm(sim_model *m, const char *s)
{
        sim_vm *vm = sim_model_vm(m, s);

        for (size_t i = 0; !vm && i < m->n_vms; i++)
                if (streq(m->vms[i].name, s))
                        vm = &m->vms[i];
        return vm;
}

static _printf_(1, 2) char *answer(const char *fmt, ...)
{
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* qemu-io sizes: digits with an optional k/M/G suffix (nothing to quote). */
static bool valid_size(const char *s)
{
        size_t n = strspn(s, "0123456789");

        return n > 0 && (s[n] == 0 || (strchr("kKmMgG", s[n]) && s[n + 1] == 0));
}

static char *cmd_write(sim_model *m, int argc, char **argv)
{
        _cleanup_free_ char *err = NULL;
        unsigned long byte = 0x5a;
        char *end;
        sim_vm *vm;
        size_t disk;
        int r;

        if (argc < 5 || argc > 6)
                return answer("error: usage: write VM DISK OFFSET LENGTH [BYTE]");
        if (!(vm = find_vm(m, argv[1])))
                return answer("error: no VM %s", argv[1]);
        for (disk = 0; disk < vm->n_disks; disk++)
                if (streq(vm->disks[disk].device, argv[2]))
                        break;
        if (disk == vm->n_disks)
                return answer("error: VM %s has no disk %s", vm->name, argv[2]);
        if (!valid_size(argv[3]) || !valid_size(argv[4]))
                return answer("error: OFFSET and LENGTH are numbers with an optional k, M or G suffix");
        if (argc == 6) {
                errno = 0;
                byte = strtoul(argv[5], &end, 0);
                if (errno || *end || end == argv[5] || byte > 255)
                        return answer("error: BYTE is 0-255 (0x5a)");
        }
        r = sim_qemu_write(vm, disk, argv[3], argv[4], (unsigned)byte, &err);
        if (r < 0)
                return answer("error: %s", err ? err : strerror(-r));
        return answer("ok");
}

static char *cmd_power_cycle(sim_model *m, int argc, char **argv)
{
        _cleanup_free_ char *err = NULL;
        sim_vm *vm;
        int r;

        if (argc != 2)
                return answer("error: usage: power-cycle VM");
        if (!(vm = find_vm(m, argv[1])))
                return answer("error: no VM %s", argv[1]);
        if (!vm->running)
                return answer("error: VM %s is not running", vm->name);
        (void)sim_qemu_stop(vm, false, &err);
        vm->running = false;
        vm->cbt_valid = false;
        vm->fs_frozen = false;
        r = sim_qemu_start(vm, &err);
        if (r < 0)
                return answer("error: restarting %s: %s", vm->name, err ? err : strerror(-r));
        vm->running = true;
        return answer("ok");
}

static char *cmd_migrate(sim_model *m, int argc, char **argv)
{
        _cleanup_free_ char *err = NULL;
        sim_vm *vm;
        sim_host *h;
        int r;

        if (argc != 3)
                return answer("error: usage: migrate VM HOST");
        if (!(vm = find_vm(m, argv[1])))
                return answer("error: no VM %s", argv[1]);
        if (!(h = find_host(m, argv[2])))
                return answer("error: no host %s", argv[2]);
        if (vm->host_id == h->id)
                return answer("ok");
        vm->host_id = h->id;
        /* The disks stay where they are (shared storage): the destination's
         * service is restarted to serve their folders too. */
        if (h->cvd_pid > 0) {
                sim_cvd_stop(h);
                r = sim_cvd_start(m, h, &err);
                if (r < 0)
                        return answer("error: %s", err ? err : strerror(-r));
        }
        log_info("VM %s migrated to host %s", vm->name, h->name);
        return answer("ok");
}

static char *cmd_hostid(sim_model *m, int argc, char **argv)
{
        sim_host *h;
        int64_t id;

        if (argc != 3)
                return answer("error: usage: hostid HOST NEWID");
        if (!(h = find_host(m, argv[1])))
                return answer("error: no host %s", argv[1]);
        if (!sim_parse_id(argv[2], &id) || id <= 0)
                return answer("error: NEWID must be a positive integer");
        if (id == h->id)
                return answer("ok");
        if (sim_model_host(m, id))
                return answer("error: host id %" PRId64 " is taken", id);
        for (size_t i = 0; i < m->n_vms; i++)
                if (m->vms[i].host_id == h->id)
                        m->vms[i].host_id = id;
        log_info("host %s: id %" PRId64 " -> %" PRId64, h->name, h->id, id);
        h->id = id;
        return answer("ok");
}

/* host-down: the hosts it covers lose their vbak-cvd; off brings it back. */
static char *apply_host_down(sim_model *m)
{
        for (size_t i = 0; i < m->n_hosts; i++) {
                sim_host *h = &m->hosts[i];
                _cleanup_free_ char *err = NULL;

                if (sim_fault_host(SIM_FAULT_HOST_DOWN, h)) {
                        sim_cvd_stop(h);
                } else if (!h->cvd_pid && sim_cvd_start(m, h, &err) < 0) {
                        return answer("error: %s", err ? err : "vbak-cvd did not start");
                }
        }
        return answer("ok");
}

static char *cmd_fault(sim_model *m, int argc, char **argv)
{
        const char *target = argc == 4 ? argv[2] : NULL, *state = argv[argc - 1];
        unsigned *mask = &global_faults;
        sim_fault_knob k;
        bool on;

        if (argc != 3 && argc != 4)
                return answer("error: usage: fault KNOB [VM|HOST] on|off");
        for (k = 0; k < SIM_FAULT_COUNT; k++)
                if (streq(knob_names[k], argv[1]))
                        break;
        if (k == SIM_FAULT_COUNT)
                return answer("error: unknown knob %s", argv[1]);
        if (!streq(state, "on") && !streq(state, "off"))
                return answer("error: on or off, not %s", state);
        on = streq(state, "on");
        if (k == SIM_FAULT_SESSION_EXPIRY || k == SIM_FAULT_CONN_RESET) {
                if (target)
                        return answer("error: %s is global", knob_names[k]);
                __atomic_store_n(&one_shot[k], on ? 1 : 0, __ATOMIC_SEQ_CST);
                return answer("ok");
        }
        if (target && (k == SIM_FAULT_HOST_DOWN || k == SIM_FAULT_POOL_FULL)) {
                /* A host's knob: the host named, or the host of the VM named. */
                sim_host *h = find_host(m, target);
                sim_vm *vm = h ? NULL : find_vm(m, target);

                if (!h && vm)
                        h = sim_model_host(m, vm->host_id);
                if (!h)
                        return answer("error: no host or VM %s", target);
                mask = &h->faults;
        } else if (target) {
                sim_vm *vm = find_vm(m, target);

                if (!vm)
                        return answer("error: no VM %s", target);
                mask = &vm->faults;
        }
        if (on)
                *mask |= 1u << k;
        else
                *mask &= ~(1u << k);
        log_info("fault %s%s%s %s", knob_names[k], target ? " on " : "", target ? target : "", state);
        if (k == SIM_FAULT_HOST_DOWN)
                return apply_host_down(m);
        return answer("ok");
}

static char *run_command(char *line)
{
        char *argv[CTL_MAX_ARGS + 1], *save = NULL, *tok;
        int argc = 0;
        sim_model *m = sim_cfg.model;
        char *out;

        for (tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
                if (argc == CTL_MAX_ARGS)
                        return answer("error: too many arguments");
                argv[argc++] = tok;
        }
        if (argc == 0)
                return answer("error: empty command");
        pthread_mutex_lock(&sim_lock);
        sim_tasks_settle(m);
        if (streq(argv[0], "write"))
                out = cmd_write(m, argc, argv);
        else if (streq(argv[0], "power-cycle"))
                out = cmd_power_cycle(m, argc, argv);
        else if (streq(argv[0], "migrate"))
                out = cmd_migrate(m, argc, argv);
        else if (streq(argv[0], "hostid"))
                out = cmd_hostid(m, argc, argv);
        else if (streq(argv[0], "fault"))
                out = cmd_fault(m, argc, argv);
        else
                out = answer("error: unknown command %s", argv[0]);
        pthread_mutex_unlock(&sim_lock);
        return out;
}

static void serve_one(int fd)
{
        char line[CTL_LINE_MAX];
        size_t len = 0;
        _cleanup_free_ char *out = NULL;

        while (len < sizeof(line) - 1) {
                ssize_t n = read(fd, line + len, sizeof(line) - 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (memchr(line, '\n', len))
                        break;
        }
        line[len] = 0;
        line[strcspn(line, "\n")] = 0;
        log_debug("ctl: %s", line);
        out = run_command(line);
        if (out)
                (void)dprintf(fd, "%s\n", out);
}

static void *ctl_thread(void *arg)
{
        for (;;) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        break; /* shut down by sim_ctl_stop() */
                }
                serve_one(fd);
                close(fd);
        }
        return NULL;
}

static int socket_path(const char *state_dir, struct sockaddr_un *sa)
{
        *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        if ((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/ctl.sock", state_dir) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        return 0;
}

int sim_ctl_start(void)
{
        struct sockaddr_un sa;
        int r = socket_path(sim_cfg.state_dir, &sa);

        if (r < 0)
                return r;
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd < 0)
                return -errno;
        (void)unlink(sa.sun_path);
        if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 8) < 0) {
                r = -errno;
                close(listen_fd);
                listen_fd = -1;
                return r;
        }
        r = -pthread_create(&thread, NULL, ctl_thread, NULL);
        if (r < 0) {
                close(listen_fd);
                listen_fd = -1;
                return r;
        }
        thread_started = true;
        return 0;
}

void sim_ctl_stop(void)
{
        struct sockaddr_un sa;

        if (listen_fd < 0)
                return;
        /* shutdown() wakes the accept() of the thread; then it can be joined. */
        (void)shutdown(listen_fd, SHUT_RDWR);
        if (thread_started)
                pthread_join(thread, NULL);
        close(listen_fd);
        listen_fd = -1;
        if (socket_path(sim_cfg.state_dir, &sa) >= 0)
                (void)unlink(sa.sun_path);
}

int sim_ctl_client(int argc, char **argv)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *line = NULL;
        const char *state = "."; /* like serve's --state-dir */
        struct sockaddr_un sa;
        char buf[CTL_LINE_MAX];
        size_t len = 0;
        int i = 1;

        if (argc >= 3 && streq(argv[1], "--state-dir")) {
                state = argv[2];
                i = 3;
        } else if (argc >= 2 && strncmp(argv[1], "--state-dir=", 12) == 0) {
                state = argv[1] + 12;
                i = 2;
        }
        if (i >= argc) {
                fputs("Usage: vbak-cvm-sim ctl [--state-dir DIR] COMMAND [ARG...]\n", stderr);
                return 2;
        }
        if (socket_path(state, &sa) < 0)
                return log_error_errno(ENAMETOOLONG, "%s/ctl.sock: %m", state), 1;
        for (; i < argc; i++) {
                char *l;

                if (strpbrk(argv[i], " \t\r\n"))
                        return log_error_errno(EINVAL, "arguments cannot hold blanks: %s", argv[i]), 2;
                if (asprintf(&l, "%s%s%s", line ? line : "", line ? " " : "", argv[i]) < 0)
                        return 1;
                free(line);
                line = l;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "connecting to %s: %m (is the simulator running?)", sa.sun_path), 1;
        if (dprintf(fd, "%s\n", line) < 0)
                return log_error_errno(errno, "writing to %s: %m", sa.sun_path), 1;
        while (len < sizeof(buf) - 1) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (memchr(buf, '\n', len))
                        break;
        }
        buf[len] = 0;
        buf[strcspn(buf, "\n")] = 0;
        if (!len)
                return log_error_errno(EPIPE, "no answer from %s", sa.sun_path), 1;
        puts(buf);
        return streq(buf, "ok") ? 0 : 1;
}
