/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-cas.c -- `vbak cas ...`: the H3C CAS driver (cas/cas.h) from the
 * command line, without a daemon: the inventory tree, one VM with its
 * captured configuration and free space, power operations.
 *
 * Output follows cli-cvd.c: a short human text, or one JSON document on
 * stdout with --json; errors go to stderr (and, with --json, as {"error":
 * ...} on stdout) and the exit code is the stable code of
 * docs/error-codes.md. Each verb runs its own libuv loop: connect, one
 * operation, disconnect.
 */
#include "daemon/cli-cas.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cas/cas.h"
#include "daemon/error.h"
#include "daemon/util.h"

#define SECRET_FILE_MAX (64 * 1024)

static bool arg_json;

_printf_(2, 3) static int fail(vb_error code, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "vbak: %s [E%d %s]\n", msg, code, vb_error_name(code));
        if (arg_json) {
                json_t *j = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", code, "name", vb_error_name(code),
                                      "message", msg);
                if (j) {
                        json_dumpf(j, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                        json_decref(j);
                }
        }
        return code;
}

static int print_json(json_t *j)
{
        if (!j)
                return fail(VB_E_FAILED, "out of memory");
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
        return 0;
}

typedef struct cli {
        const char *cvm, *user, *password_file, *vm;
        bool insecure;
        uint64_t task_timeout_s;
        char *password;
        uv_loop_t loop;
        bool loop_ready;
        vb_hv *hv;
        /* the result of the last callback */
        bool done;
        vb_error r;
        char msg[1024];
        json_t *out; /* what the verb prints */
        uint64_t free_bytes;
} cli;

enum {
        OPT_CVM = 0x100,
        OPT_USER,
        OPT_PASSWORD,
        OPT_INSECURE,
        OPT_JSON,
        OPT_VM,
        OPT_TIMEOUT,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "cvm", required_argument, NULL, OPT_CVM },
        { "user", required_argument, NULL, OPT_USER },
        { "password-file", required_argument, NULL, OPT_PASSWORD },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "json", no_argument, NULL, OPT_JSON },
        { "vm", required_argument, NULL, OPT_VM },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        {},
};

void vb_cli_cas_help(FILE *f)
{
        fputs("Usage: vbak cas VERB --cvm http[s]://HOST:PORT --user U --password-file F [OPTIONS]\n"
              "Talk to an H3C CAS manager (CVM) through its REST API, without a daemon.\n\n"
              "Verbs:\n"
              "  inventory                  host pools, clusters, hosts and VMs with their disks\n"
              "  vm --vm NAME|ID|UUID       one VM: disks, NICs, captured configuration, free space\n"
              "  power --vm NAME|ID|UUID start|shutdown|off\n"
              "                             a power operation, waiting for its task\n\n"
              "Options:\n"
              "  --cvm URL                  the CVM: http://HOST:8080 or https://HOST:8443\n"
              "  --user U                   the CAS user\n"
              "  --password-file F          the password (the file's first line)\n"
              "  --insecure                 do not verify the CVM's TLS certificate\n"
              "  --timeout SECONDS          how long a task may run (power; default 600)\n"
              "  --json                     one JSON document on stdout\n",
              f);
}

static int read_first_line(const char *path, char **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = vb_read_file_at(AT_FDCWD, path, SECRET_FILE_MAX, &text, &len);

        if (r < 0)
                return fail(r == -ENOENT ? VB_E_NOT_FOUND : vb_error_from_errno(r), "%s: %s", path, strerror(-r));
        text[strcspn(text, "\r\n")] = 0;
        *ret = TAKE_PTR(text);
        return 0;
}

static void on_connected(void *userdata, vb_error r, const char *message, vb_hv *hv)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        x->hv = hv;
}

/* Runs the loop until the current operation's callback ran; r the start's result. */
static int wait_done(cli *x, int r, const char *what)
{
        if (r < 0)
                return fail(r == -EINVAL ? VB_E_USAGE : VB_E_FAILED, "%s: %s", what, strerror(-r));
        while (!x->done && uv_run(&x->loop, UV_RUN_ONCE))
                ;
        if (!x->done)
                return fail(VB_E_FAILED, "%s: the operation never completed", what);
        x->done = false;
        if (x->r != VB_OK)
                return fail(x->r, "%s", x->msg);
        return 0;
}

static void cli_done(cli *x)
{
        if (x->hv) {
                cas_driver.disconnect(TAKE_PTR(x->hv));
                uv_run(&x->loop, UV_RUN_DEFAULT);
        }
        if (x->loop_ready)
                uv_loop_close(&x->loop);
        json_decref(x->out);
        free(x->password);
}

static int cli_connect(cli *x)
{
        vb_hv_opts o;
        int r;

        if (!x->cvm || !x->user || !x->password_file)
                return fail(VB_E_USAGE, "give --cvm, --user and --password-file (see vbak cas --help)");
        r = read_first_line(x->password_file, &x->password);
        if (r)
                return r;
        r = uv_loop_init(&x->loop);
        if (r < 0)
                return fail(VB_E_FAILED, "uv_loop_init: %s", uv_strerror(r));
        x->loop_ready = true;
        o = (vb_hv_opts){
                .name = "cas", .address = x->cvm, .user = x->user, .password = x->password, .insecure = x->insecure
        };
        r = wait_done(x, cas_driver.connect(&x->loop, &o, on_connected, x), x->cvm);
        if (r)
                return r;
        if (x->task_timeout_s)
                cas_set_task_timeout(x->hv, x->task_timeout_s * 1000);
        return 0;
}

static const char *state_name(vb_vm_state s)
{
        switch (s) {
        case VB_VM_RUNNING:
                return "running";
        case VB_VM_SHUT_OFF:
                return "shut off";
        case VB_VM_PAUSED:
                return "paused";
        default:
                return "unknown";
        }
}

static json_t *vm_json(const vb_hv_vm *vm, bool with_config)
{
        json_t *disks = json_array(), *nics = json_array(), *j;

        for (size_t i = 0; i < vm->n_disks; i++) {
                const vb_hv_disk *d = &vm->disks[i];
                json_array_append_new(disks, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:I}", "device", d->device,
                                                       "path", d->path, "format", d->format, "bus", d->bus, "pool",
                                                       d->pool, "size", (json_int_t)d->size));
        }
        for (size_t i = 0; i < vm->n_nics; i++) {
                const vb_hv_nic *n = &vm->nics[i];
                json_array_append_new(nics, json_pack("{s:s?, s:s?, s:s?, s:s?}", "mac", n->mac, "vswitch", n->vswitch,
                                                      "profile", n->profile, "model", n->model));
        }
        j = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s, s:i, s:i, s:I, s:o, s:o}", "id", vm->id, "uuid",
                      vm->uuid, "name", vm->name, "title", vm->title, "hostId", vm->host_id, "clusterId",
                      vm->cluster_id, "hostPoolId", vm->pool_id, "state", state_name(vm->state), "cpuSockets",
                      (int)vm->cpu_sockets, "cpuCores", (int)vm->cpu_cores, "memoryMB", (json_int_t)vm->memory_mb,
                      "disks", disks, "nics", nics);
        if (j && with_config && vm->config)
                json_object_set(j, "config", vm->config);
        return j;
}

static json_t *group_json(const vb_hv_group *g, const char *parent_key)
{
        return json_pack("{s:s?, s:s?, s:s?}", "id", g->id, "name", g->name, parent_key ?: "parentId", g->parent_id);
}

static void on_inventory(void *userdata, vb_error r, const char *message, const vb_hv_inventory *inv)
{
        cli *x = userdata;
        json_t *pools, *clusters, *hosts, *vms;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        if (r != VB_OK)
                return;
        pools = json_array();
        clusters = json_array();
        hosts = json_array();
        vms = json_array();
        for (size_t i = 0; i < inv->n_pools; i++)
                json_array_append_new(pools, group_json(&inv->pools[i], NULL));
        for (size_t i = 0; i < inv->n_clusters; i++)
                json_array_append_new(clusters, group_json(&inv->clusters[i], "hostPoolId"));
        for (size_t i = 0; i < inv->n_hosts; i++) {
                const vb_hv_host *h = &inv->hosts[i];
                json_array_append_new(hosts, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "id", h->id,
                                                       "name", h->name, "clusterId", h->cluster_id, "hostPoolId",
                                                       h->pool_id, "management", h->addr_management, "storage",
                                                       h->addr_storage, "backup", h->addr_backup, "up", h->up));
        }
        for (size_t i = 0; i < inv->n_vms; i++)
                json_array_append_new(vms, vm_json(&inv->vms[i], true));
        x->out =
                json_pack("{s:o, s:o, s:o, s:o}", "hostPools", pools, "clusters", clusters, "hosts", hosts, "vms", vms);
        if (!x->out)
                x->r = VB_E_FAILED, snprintf(x->msg, sizeof(x->msg), "out of memory");
}

static void print_size(uint64_t b)
{
        char buf[32];

        fputs(vb_format_size(b, buf, sizeof(buf)), stdout);
}

static void print_vm_line(json_t *vm, const char *indent)
{
        json_t *d;
        size_t i;

        printf("%svm %s (%s), id %s, %s\n", indent, json_string_value(json_object_get(vm, "title")) ?: "-",
               json_string_value(json_object_get(vm, "name")), json_string_value(json_object_get(vm, "id")),
               json_string_value(json_object_get(vm, "state")));
        json_array_foreach(json_object_get(vm, "disks"), i, d)
        {
                printf("%s  disk %s %s %s ", indent, json_string_value(json_object_get(d, "device")) ?: "-",
                       json_string_value(json_object_get(d, "format")) ?: "-",
                       json_string_value(json_object_get(d, "path")));
                print_size((uint64_t)json_integer_value(json_object_get(d, "size")));
                fputc('\n', stdout);
        }
}

static bool same(json_t *o, const char *key, json_t *p, const char *pkey)
{
        const char *a = json_string_value(json_object_get(o, key)), *b = json_string_value(json_object_get(p, pkey));

        return a && b && streq(a, b);
}

static void print_host(json_t *h, json_t *vms, const char *indent)
{
        json_t *vm;
        size_t i;
        char sub[32];

        printf("%shost %s (id %s, %s, %s)\n", indent, json_string_value(json_object_get(h, "name")),
               json_string_value(json_object_get(h, "id")),
               json_string_value(json_object_get(h, "management")) ?: "no address",
               json_is_true(json_object_get(h, "up")) ? "up" : "down");
        snprintf(sub, sizeof(sub), "%s  ", indent);
        json_array_foreach(vms, i, vm) if (same(vm, "hostId", h, "id")) print_vm_line(vm, sub);
}

/* host pool / cluster / host / VM; hosts directly in a pool under it. */
static void print_tree(json_t *inv)
{
        json_t *pools = json_object_get(inv, "hostPools"), *clusters = json_object_get(inv, "clusters"),
               *hosts = json_object_get(inv, "hosts"), *vms = json_object_get(inv, "vms"), *p, *c, *h;
        size_t i, j, k;

        json_array_foreach(pools, i, p)
        {
                printf("host pool %s (id %s)\n", json_string_value(json_object_get(p, "name")),
                       json_string_value(json_object_get(p, "id")));
                json_array_foreach(clusters, j, c)
                {
                        if (!same(c, "hostPoolId", p, "id"))
                                continue;
                        printf("  cluster %s (id %s)\n", json_string_value(json_object_get(c, "name")),
                               json_string_value(json_object_get(c, "id")));
                        json_array_foreach(hosts, k, h) if (same(h, "clusterId", c, "id")) print_host(h, vms, "    ");
                }
                json_array_foreach(hosts, k, h) if (!json_string_value(json_object_get(h, "clusterId")) &&
                                                    same(h, "hostPoolId", p, "id")) print_host(h, vms, "  ");
        }
        printf("%zu host pools, %zu clusters, %zu hosts, %zu VMs\n", json_array_size(pools), json_array_size(clusters),
               json_array_size(hosts), json_array_size(vms));
}

static int verb_inventory(cli *x)
{
        int r = cli_connect(x);

        if (r)
                return r;
        r = wait_done(x, cas_driver.inventory(x->hv, on_inventory, x), "inventory");
        if (r)
                return r;
        if (arg_json)
                return print_json(TAKE_PTR(x->out));
        print_tree(x->out);
        return 0;
}

static void on_vm(void *userdata, vb_error r, const char *message, const vb_hv_vm *vm)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        if (r == VB_OK) {
                x->out = vm_json(vm, true);
                if (!x->out)
                        x->r = VB_E_FAILED, snprintf(x->msg, sizeof(x->msg), "out of memory");
        }
}

static void on_size(void *userdata, vb_error r, const char *message, uint64_t bytes)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        x->free_bytes = bytes;
}

static void on_done(void *userdata, vb_error r, const char *message)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
}

/* The VM back from its JSON, enough for the driver's calls: id, name, host, disks. */
static int vm_from_out(json_t *j, vb_hv_vm *vm, vb_hv_disk *disks, size_t max)
{
        json_t *d;
        size_t i;

        *vm = (vb_hv_vm){
                .id = (char *)json_string_value(json_object_get(j, "id")),
                .name = (char *)json_string_value(json_object_get(j, "name")),
                .host_id = (char *)json_string_value(json_object_get(j, "hostId")),
                .disks = disks,
        };
        json_array_foreach(json_object_get(j, "disks"), i, d)
        {
                if (i >= max)
                        return fail(VB_E_FAILED, "vm %s: too many disks", vm->name);
                disks[i] = (vb_hv_disk){ .path = (char *)json_string_value(json_object_get(d, "path")) };
                vm->n_disks++;
        }
        return 0;
}

static int verb_vm(cli *x)
{
        vb_hv_disk disks[64];
        vb_hv_vm vm;
        int r;

        if (!x->vm)
                return fail(VB_E_USAGE, "cas vm needs --vm NAME|ID|UUID (see --help)");
        r = cli_connect(x);
        if (r)
                return r;
        r = wait_done(x, cas_driver.vm_get(x->hv, x->vm, on_vm, x), x->vm);
        if (r)
                return r;
        r = vm_from_out(x->out, &vm, disks, ELEMENTSOF(disks));
        if (r)
                return r;
        if (vm.n_disks > 0) {
                r = wait_done(x, cas_driver.storage_free(x->hv, &vm, on_size, x), "free space");
                if (r)
                        return r;
                json_object_set_new(x->out, "storageFree", json_integer((json_int_t)x->free_bytes));
        }
        if (arg_json)
                return print_json(TAKE_PTR(x->out));
        print_vm_line(x->out, "");
        if (vm.n_disks > 0) {
                fputs("free space in its storage: ", stdout);
                print_size(x->free_bytes);
                fputc('\n', stdout);
        }
        return 0;
}

static int verb_power(cli *x, const char *what)
{
        vb_hv_disk disks[64];
        vb_power_op op;
        vb_hv_vm vm;
        int r;

        if (streq(what, "start"))
                op = VB_POWER_START;
        else if (streq(what, "shutdown"))
                op = VB_POWER_SHUTDOWN;
        else if (streq(what, "off"))
                op = VB_POWER_OFF;
        else
                return fail(VB_E_USAGE, "cas power needs start, shutdown or off, not '%s'", what);
        if (!x->vm)
                return fail(VB_E_USAGE, "cas power needs --vm NAME|ID|UUID (see --help)");
        r = cli_connect(x);
        if (r)
                return r;
        r = wait_done(x, cas_driver.vm_get(x->hv, x->vm, on_vm, x), x->vm);
        if (r)
                return r;
        r = vm_from_out(x->out, &vm, disks, ELEMENTSOF(disks));
        if (r)
                return r;
        r = wait_done(x, cas_driver.power(x->hv, &vm, op, on_done, x), what);
        if (r)
                return r;
        if (arg_json)
                return print_json(json_pack("{s:s, s:s, s:s}", "vm", vm.name, "id", vm.id, "power", what));
        printf("vm %s (id %s): %s done\n", vm.name, vm.id, what);
        return 0;
}

int vb_cli_cas(int argc, char **argv)
{
        cli x = {};
        const char *verb;
        char *end;
        int c, r;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                vb_cli_cas_help(argc < 2 ? stderr : stdout);
                return argc < 2 ? VB_E_USAGE : 0;
        }
        verb = argv[1];
        optind = 1;
        while ((c = getopt_long(argc - 1, argv + 1, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        vb_cli_cas_help(stdout);
                        return 0;
                case OPT_CVM:
                        x.cvm = optarg;
                        break;
                case OPT_USER:
                        x.user = optarg;
                        break;
                case OPT_PASSWORD:
                        x.password_file = optarg;
                        break;
                case OPT_INSECURE:
                        x.insecure = true;
                        break;
                case OPT_JSON:
                        arg_json = true;
                        break;
                case OPT_VM:
                        x.vm = optarg;
                        break;
                case OPT_TIMEOUT:
                        errno = 0;
                        x.task_timeout_s = strtoull(optarg, &end, 10);
                        if (errno || *end || optarg[0] < '0' || optarg[0] > '9' || x.task_timeout_s < 1 ||
                            x.task_timeout_s > 24 * 3600)
                                return fail(VB_E_USAGE, "bad --timeout '%s' (1-86400 seconds)", optarg);
                        break;
                default:
                        return fail(VB_E_USAGE, "bad option (see vbak cas --help)");
                }
        }
        if (streq(verb, "inventory") && optind == argc - 1)
                r = verb_inventory(&x);
        else if (streq(verb, "vm") && optind == argc - 1)
                r = verb_vm(&x);
        else if (streq(verb, "power") && optind == argc - 2)
                r = verb_power(&x, argv[1 + optind]);
        else if (!streq(verb, "inventory") && !streq(verb, "vm") && !streq(verb, "power"))
                return fail(VB_E_USAGE, "unknown verb 'cas %s' (see vbak cas --help)", verb);
        else
                return fail(VB_E_USAGE, "wrong arguments for 'cas %s' (see vbak cas --help)", verb);
        cli_done(&x);
        return r;
}
