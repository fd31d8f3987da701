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
 * operation, disconnect. `backup` runs daemon/vmbackup.h for one VM.
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
#include "daemon/cli-net.h"
#include "daemon/cli-common.h"
#include "daemon/error.h"
#include "daemon/progress.h"
#include "daemon/util.h"
#include "daemon/vmbackup.h"
#include "daemon/vmrestore.h"
#include "storagepool/sp.h"

#define SECRET_FILE_MAX (64 * 1024)

typedef struct cli {
        const char *cvm, *user, *password_file, *vm;
        bool insecure, xml;
        /* backup */
        const char *pool, *network;
        /* restore */
        const char *name, *host, *storage_pool;
        bool power_on, with_disks;
        bool incremental, quiesce, shutdown;
        vb_snapshot_type snapshot;
        unsigned cvd_port, min_free_percent;
        uint64_t min_free;
        vb_net_opts net;
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
        vb_hv_space space;
} cli;

enum {
        OPT_CVM = 0x100,
        OPT_USER,
        OPT_PASSWORD,
        OPT_INSECURE,
        OPT_JSON,
        OPT_VM,
        OPT_TIMEOUT,
        OPT_XML,
        OPT_POOL,
        OPT_TYPE,
        OPT_SNAPSHOT,
        OPT_NO_QUIESCE,
        OPT_SHUTDOWN,
        OPT_MIN_FREE,
        OPT_MIN_FREE_PERCENT,
        OPT_NETWORK,
        OPT_CVD_PORT,
        OPT_CVD_TOKEN_FILE,
        OPT_NET_TIMEOUT,
        OPT_NAME,
        OPT_HOST,
        OPT_STORAGE_POOL,
        OPT_POWER_ON,
        OPT_WITH_DISKS,
};

static const struct option own_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "cvm", required_argument, NULL, OPT_CVM },
        { "user", required_argument, NULL, OPT_USER },
        { "password-file", required_argument, NULL, OPT_PASSWORD },
        { "insecure", no_argument, NULL, OPT_INSECURE },
        { "json", no_argument, NULL, OPT_JSON },
        { "vm", required_argument, NULL, OPT_VM },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "xml", no_argument, NULL, OPT_XML },
        { "pool", required_argument, NULL, OPT_POOL },
        { "type", required_argument, NULL, OPT_TYPE },
        { "snapshot", required_argument, NULL, OPT_SNAPSHOT },
        { "no-quiesce", no_argument, NULL, OPT_NO_QUIESCE },
        { "shutdown", no_argument, NULL, OPT_SHUTDOWN },
        { "min-free", required_argument, NULL, OPT_MIN_FREE },
        { "min-free-percent", required_argument, NULL, OPT_MIN_FREE_PERCENT },
        { "network", required_argument, NULL, OPT_NETWORK },
        { "cvd-port", required_argument, NULL, OPT_CVD_PORT },
        { "cvd-token-file", required_argument, NULL, OPT_CVD_TOKEN_FILE },
        { "net-timeout", required_argument, NULL, OPT_NET_TIMEOUT },
        { "name", required_argument, NULL, OPT_NAME },
        { "host", required_argument, NULL, OPT_HOST },
        { "storage-pool", required_argument, NULL, OPT_STORAGE_POOL },
        { "power-on", no_argument, NULL, OPT_POWER_ON },
        { "with-disks", no_argument, NULL, OPT_WITH_DISKS },
};

/* Ours, then the transport's (cli-net.h) whose names are not taken: the
 * CVM's --user, --password-file, --insecure and --timeout win; the disk
 * service's token is --cvd-token-file and the network timeout --net-timeout. */
static struct option *all_options(void)
{
        struct option *v = calloc(ELEMENTSOF(own_options) + vb_net_n_options + 1, sizeof(*v));
        size_t n = ELEMENTSOF(own_options);

        if (!v)
                return NULL;
        memcpy(v, own_options, sizeof(own_options));
        for (size_t i = 0; i < vb_net_n_options; i++) {
                bool taken = false;

                for (size_t j = 0; j < ELEMENTSOF(own_options); j++)
                        taken = taken || streq(own_options[j].name, vb_net_options[i].name);
                if (!taken && !streq(vb_net_options[i].name, "token-file") && !streq(vb_net_options[i].name, "tls") &&
                    !streq(vb_net_options[i].name, "tls-ca"))
                        v[n++] = vb_net_options[i];
        }
        return v;
}

/* The getopt code of one of the transport's options. */
static int net_code(const char *name)
{
        for (size_t i = 0; i < vb_net_n_options; i++)
                if (streq(vb_net_options[i].name, name))
                        return vb_net_options[i].val;
        return -1;
}

void vb_cli_cas_help(FILE *f)
{
        fputs("Usage: vbak cas VERB --cvm http[s]://HOST:PORT --user U --password-file F [OPTIONS]\n"
              "Talk to an H3C CAS manager (CVM) through its REST API, without a daemon.\n\n"
              "Verbs:\n"
              "  inventory                  host pools, clusters, hosts and VMs with their disks\n"
              "  vm --vm NAME|ID|UUID       one VM: disks, NICs, captured configuration, free space\n"
              "  power --vm NAME|ID|UUID start|shutdown|off\n"
              "                             a power operation, waiting for its task\n"
              "  delete --vm NAME|ID|UUID [--with-disks]\n"
              "                             delete a shut-off VM (and its disk files), waiting for its task\n"
              "  backup --vm NAME|ID|UUID --pool PATH\n"
              "                             back one VM up end to end: snapshot, every disk through\n"
              "                             its host's disk service, restore point, snapshot deleted\n"
              "  restore ID|latest --pool PATH --name NEW [--vm NAME] [--host ID] [--storage-pool P] [--power-on]\n"
              "                             a restore point as a new VM: new volumes, every disk written\n"
              "                             through the host's disk service, the VM defined from the\n"
              "                             captured configuration (new name, no MAC addresses)\n\n"
              "Options:\n"
              "  --cvm URL                  the CVM: http://HOST:8080 or https://HOST:8443\n"
              "  --user U                   the CAS user\n"
              "  --password-file F          the password (the file's first line)\n"
              "  --insecure                 do not verify the CVM's TLS certificate\n"
              "  --timeout SECONDS          how long a task may run (default 600)\n"
              "  --xml                      talk XML to the CVM instead of JSON\n"
              "  --json                     one JSON document on stdout\n\n"
              "Backup options:\n"
              "  --pool PATH                the storage pool (vbak pool init)\n"
              "  --type full|incremental    incremental (default) reads what changed since the VM's\n"
              "                             latest restore point, or everything when CBT cannot be trusted\n"
              "  --snapshot adaptive|external|internal\n"
              "                             adaptive (default) takes an external snapshot; an internal one\n"
              "                             is read whole\n"
              "  --no-quiesce               do not ask the guest agent to freeze the file systems\n"
              "  --shutdown                 shut a running VM down for the backup, start it after\n"
              "  --min-free SIZE            the VM's storage must have SIZE free (default 500G; 0: off)\n"
              "  --min-free-percent N       ... and N %% of its size (default 10; 0: off)\n"
              "  --network adaptive|backup|storage|management\n"
              "                             the host network to read disks over (default adaptive:\n"
              "                             backup, then storage, then management)\n"
              "  --cvd-port N               the hosts' disk service port (default 8192)\n"
              "  --cvd-token-file F         the disk service's shared token\n"
              "  --net-timeout DURATION     the transport's network timeout\n"
              "  --connections, --buffer, --resume-buffer, --reconnect-window, --rate, --disk-rate\n"
              "                             transport options, as for vbak pool backup\n\n"
              "Restore options:\n"
              "  --name NEW                 the new VM's name (also its title)\n"
              "  --vm NAME                  with 'latest': whose latest restore point\n"
              "  --host ID                  the host to define it on (default: the original one)\n"
              "  --storage-pool P           the storage pool of its volumes (default: each disk's own)\n"
              "  --power-on                 start it once restored\n"
              "  --cvd-port, --cvd-token-file, --network, and the transport options above apply too\n",
              f);
}

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
                return vb_cli_fail(r == -EINVAL ? VB_E_USAGE : VB_E_FAILED, "%s: %s", what, strerror(-r));
        while (!x->done && uv_run(&x->loop, UV_RUN_ONCE))
                ;
        if (!x->done)
                return vb_cli_fail(VB_E_FAILED, "%s: the operation never completed", what);
        x->done = false;
        if (x->r != VB_OK)
                return vb_cli_fail(x->r, "%s", x->msg);
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
        vb_net_opts_clear(&x->net);
}

static int cli_connect(cli *x)
{
        vb_hv_opts o;
        int r;

        if (!x->cvm || !x->user || !x->password_file)
                return vb_cli_fail(VB_E_USAGE, "give --cvm, --user and --password-file (see vbak cas --help)");
        r = read_first_line(x->password_file, &x->password);
        if (r)
                return r;
        r = uv_loop_init(&x->loop);
        if (r < 0)
                return vb_cli_fail(VB_E_FAILED, "uv_loop_init: %s", uv_strerror(r));
        x->loop_ready = true;
        o = (vb_hv_opts){ .name = "cas",
                          .address = x->cvm,
                          .user = x->user,
                          .password = x->password,
                          .insecure = x->insecure,
                          .xml = x->xml,
                          .network = x->network,
                          .cvd_port = x->cvd_port };
        r = wait_done(x, cas_driver.connect(&x->loop, &o, on_connected, x), x->cvm);
        if (r)
                return r;
        if (x->task_timeout_s)
                cas_set_task_timeout(x->hv, x->task_timeout_s * 1000);
        return 0;
}

static void on_inventory(void *userdata, vb_error r, const char *message, const vb_hv_inventory *inv)
{
        cli *x = userdata;
        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        if (r != VB_OK)
                return;
        x->out = vb_hv_inventory_to_json(inv);
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

/* host pool / cluster / host / VM; hosts directly in a pool under it, hosts
 * of no pool on their own. */
void vb_cli_print_inventory(json_t *inv)
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
        /* Hosts in no host pool: a libvirt host is a platform of its own. */
        json_array_foreach(hosts, k, h) if (!json_string_value(json_object_get(h, "hostPoolId")) &&
                                            !json_string_value(json_object_get(h, "clusterId"))) print_host(h, vms, "");
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
        if (vb_cli_json)
                return vb_cli_print_json(TAKE_PTR(x->out));
        vb_cli_print_inventory(x->out);
        return 0;
}

static void on_vm(void *userdata, vb_error r, const char *message, const vb_hv_vm *vm)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        if (r == VB_OK) {
                x->out = vb_hv_vm_to_json(vm, true);
                if (!x->out)
                        x->r = VB_E_FAILED, snprintf(x->msg, sizeof(x->msg), "out of memory");
        }
}

static void on_space(void *userdata, vb_error r, const char *message, const vb_hv_space *space)
{
        cli *x = userdata;

        x->done = true;
        x->r = r;
        snprintf(x->msg, sizeof(x->msg), "%s", message);
        if (space)
                x->space = *space;
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
                        return vb_cli_fail(VB_E_FAILED, "vm %s: too many disks", vm->name);
                disks[i] = (vb_hv_disk){ .path = (char *)json_string_value(json_object_get(d, "path")) };
                vm->n_disks++;
        }
        return 0;
}

/* --vm looked up on the connected CVM, into vm (pointing into x->out). */
static int find_vm(cli *x, const char *verb, vb_hv_vm *vm, vb_hv_disk *disks, size_t max)
{
        int r;

        if (!x->vm)
                return vb_cli_fail(VB_E_USAGE, "cas %s needs --vm NAME|ID|UUID (see --help)", verb);
        r = cli_connect(x);
        if (r)
                return r;
        r = wait_done(x, cas_driver.vm_get(x->hv, x->vm, on_vm, x), x->vm);
        if (r)
                return r;
        return vm_from_out(x->out, vm, disks, max);
}

static int verb_vm(cli *x)
{
        vb_hv_disk disks[64];
        vb_hv_vm vm;
        int r;

        r = find_vm(x, "vm", &vm, disks, ELEMENTSOF(disks));
        if (r)
                return r;
        if (vm.n_disks > 0) {
                r = wait_done(x, cas_driver.storage_free(x->hv, &vm, on_space, x), "free space");
                if (r)
                        return r;
                json_object_set_new(x->out, "storageFree", json_integer((json_int_t)x->space.free));
                json_object_set_new(x->out, "storageTotal", json_integer((json_int_t)x->space.total));
        }
        if (vb_cli_json)
                return vb_cli_print_json(TAKE_PTR(x->out));
        print_vm_line(x->out, "");
        if (vm.n_disks > 0) {
                fputs("free space in its storage: ", stdout);
                print_size(x->space.free);
                fputs(" of ", stdout);
                print_size(x->space.total);
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
                return vb_cli_fail(VB_E_USAGE, "cas power needs start, shutdown or off, not '%s'", what);
        r = find_vm(x, "power", &vm, disks, ELEMENTSOF(disks));
        if (r)
                return r;
        r = wait_done(x, cas_driver.power(x->hv, &vm, op, on_done, x), what);
        if (r)
                return r;
        if (vb_cli_json)
                return vb_cli_print_json(json_pack("{s:s, s:s, s:s}", "vm", vm.name, "id", vm.id, "power", what));
        printf("vm %s (id %s): %s done\n", vm.name, vm.id, what);
        return 0;
}

static int verb_delete(cli *x)
{
        vb_hv_disk disks[64];
        vb_hv_vm vm;
        int r;

        r = find_vm(x, "delete", &vm, disks, ELEMENTSOF(disks));
        if (r)
                return r;
        r = wait_done(x, cas_driver.vm_delete(x->hv, &vm, x->with_disks, on_done, x), "delete");
        if (r)
                return r;
        if (vb_cli_json)
                return vb_cli_print_json(
                        json_pack("{s:s, s:s, s:b}", "vm", vm.name, "id", vm.id, "with_disks", x->with_disks));
        printf("vm %s (id %s) deleted%s\n", vm.name, vm.id, x->with_disks ? " with its disks" : "");
        return 0;
}

/* ---- backup and restore: what both verbs share ---- */

/* A long operation of a verb: its steps (shown until the progress bar
 * starts), its progress, and its result as one JSON document. */
typedef struct run_ctx {
        cli *x;
        const char *label; /* of the progress bar */
        vb_progress prog;
        bool progress_on;
        json_t *out;
} run_ctx;

static void run_step(void *userdata, const char *what)
{
        run_ctx *rc = userdata;

        if (!vb_cli_json && !rc->progress_on)
                fprintf(stderr, "vbak: %s\n", what);
}

static void run_progress(void *userdata, uint64_t done, uint64_t total)
{
        run_ctx *rc = userdata;

        if (!rc->progress_on) {
                vb_progress_init(&rc->prog, rc->label, false);
                rc->progress_on = true;
        }
        vb_progress_update(&rc->prog, done, total);
}

/* The operation's callback ran: the bar ends, the loop may stop. */
static void run_finished(run_ctx *rc, vb_error r, const char *message)
{
        if (rc->progress_on) {
                vb_progress_done(&rc->prog);
                rc->progress_on = false;
        }
        rc->x->done = true;
        rc->x->r = r;
        snprintf(rc->x->msg, sizeof(rc->x->msg), "%s", message);
}

static int open_pool(cli *x, sp_pool **ret)
{
        int r = sp_pool_open(x->pool, ret);

        if (r == -ENOENT)
                return vb_cli_fail(VB_E_NOT_FOUND, "%s: no pool here (pool.json not found)", x->pool);
        if (r < 0)
                return vb_cli_fail(r == -EBADMSG || r == -EPROTONOSUPPORT ? VB_E_POOL_FORMAT : vb_error_from_errno(r),
                                   "%s: %s", x->pool, strerror(-r));
        return 0;
}

/* Runs the operation started with result `started` to its end. With
 * --json a failure is one document too: the result with its error. */
static int run_wait(run_ctx *rc, int started, const char *what)
{
        bool json = vb_cli_json;
        int r;

        vb_cli_json = false;
        r = wait_done(rc->x, started, what);
        vb_cli_json = json;
        if (r && json) {
                if (rc->out) {
                        json_object_set_new(rc->out, "error",
                                            json_pack("{s:i, s:s, s:s}", "code", r, "name", vb_error_name(r), "message",
                                                      rc->x->msg));
                        vb_cli_print_json(TAKE_PTR(rc->out));
                } else {
                        vb_cli_print_json(json_pack("{s:{s:i, s:s, s:s}}", "error", "code", r, "name", vb_error_name(r),
                                                    "message", rc->x->msg));
                }
        }
        if (r)
                json_decref(TAKE_PTR(rc->out));
        return r;
}

/* ---- backup ---- */

static json_t *transport_json(const tp_nbd_stats *t)
{
        return json_pack("{s:I, s:I, s:I, s:i, s:i}", "bytes_received", (json_int_t)t->bytes_read, "bytes_resent",
                         (json_int_t)t->bytes_resent, "requests", (json_int_t)t->requests, "cuts", (int)t->cuts,
                         "reconnects", (int)t->reconnects);
}

static void backup_done(void *userdata, const vb_vmbackup_result *res)
{
        run_ctx *rc = userdata;
        json_t *notes = json_array(), *disks = json_array();

        run_finished(rc, res->r, res->message);
        for (size_t i = 0; res->notes[i]; i++)
                json_array_append_new(notes, json_string(res->notes[i]));
        for (size_t i = 0; i < res->n_disks; i++) {
                const vb_vmbackup_disk *d = &res->disks[i];
                json_array_append_new(disks,
                                      json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "name", d->name, "size",
                                                (json_int_t)d->size, "bytes_plan", (json_int_t)d->bytes_plan,
                                                "bytes_read", (json_int_t)d->bytes_read, "bytes_new",
                                                (json_int_t)d->bytes_new, "bytes_stored", (json_int_t)d->bytes_stored,
                                                "transport", transport_json(&d->transport)));
        }
        rc->out = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b, s:o, s:o, s:s?, s:f}", "id",
                            res->m ? res->m->id : NULL, "type", res->m ? dd_backup_type_to_string(res->m->type) : NULL,
                            "parent", res->m ? res->m->parent : NULL, "checkpoint", res->m ? res->m->checkpoint : NULL,
                            "vm", res->vm.name, "vmId", res->vm.id, "title", res->vm.title, "snapshot", res->snapshot,
                            "quiesced", res->quiesced, "notes", notes, "disks", disks, "cleanup_error",
                            res->cleanup_error, "seconds", (double)res->seconds_ns / 1e9);
}

static void print_backup(json_t *j)
{
        const char *cleanup = json_string_value(json_object_get(j, "cleanup_error"));
        char a[32], b[32], c[32];
        json_t *d;
        size_t i;

        json_array_foreach(json_object_get(j, "notes"), i, d) printf("Note: %s\n", json_string_value(d));
        printf("Restore point %s (%s) of vm %s (%s), snapshot %s (%s-consistent), %.2f s\n",
               json_string_value(json_object_get(j, "id")), json_string_value(json_object_get(j, "type")),
               json_string_value(json_object_get(j, "vm")), json_string_value(json_object_get(j, "title")) ?: "-",
               json_string_value(json_object_get(j, "snapshot")),
               json_is_true(json_object_get(j, "quiesced")) ? "application" : "crash",
               json_real_value(json_object_get(j, "seconds")));
        json_array_foreach(json_object_get(j, "disks"), i, d)
        {
                printf("  disk %s: size %s, read %s, new %s\n", json_string_value(json_object_get(d, "name")),
                       vb_format_size((uint64_t)json_integer_value(json_object_get(d, "size")), a, sizeof(a)),
                       vb_format_size((uint64_t)json_integer_value(json_object_get(d, "bytes_read")), b, sizeof(b)),
                       vb_format_size((uint64_t)json_integer_value(json_object_get(d, "bytes_new")), c, sizeof(c)));
        }
        if (cleanup)
                fprintf(stderr, "vbak: warning: %s\n", cleanup);
}

static int verb_backup(cli *x)
{
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        run_ctx rc = { .x = x, .label = "backup" };
        vb_vmbackup_opts o;
        int r;

        if (!x->vm || !x->pool)
                return vb_cli_fail(VB_E_USAGE, "cas backup needs --vm NAME|ID|UUID and --pool PATH (see --help)");
        r = open_pool(x, &p);
        if (r)
                return r;
        r = cli_connect(x);
        if (r)
                return r;
        o = (vb_vmbackup_opts){ .drv = &cas_driver,
                                .hv = x->hv,
                                .pool = p,
                                .vm = x->vm,
                                .incremental = x->incremental,
                                .snapshot = x->snapshot,
                                .quiesce = x->quiesce,
                                .shutdown = x->shutdown,
                                .min_free_percent = x->min_free_percent,
                                .min_free_bytes = x->min_free,
                                .transfer = &x->net.disk,
                                .progress = run_progress,
                                .step = run_step,
                                .userdata = &rc };
        r = run_wait(&rc, vb_vmbackup_start(&x->loop, &o, backup_done, &rc), x->vm);
        if (r)
                return r;
        if (vb_cli_json)
                return vb_cli_print_json(TAKE_PTR(rc.out));
        print_backup(rc.out);
        json_decref(rc.out);
        return 0;
}

/* ---- restore ---- */

static void restore_done(void *userdata, const vb_vmrestore_result *res)
{
        run_ctx *rc = userdata;
        json_t *vols = json_array();

        run_finished(rc, res->r, res->message);
        for (size_t i = 0; i < res->n_volumes; i++)
                json_array_append_new(vols, json_string(res->volumes[i]));
        rc->out = json_pack("{s:s?, s:s, s:s?, s:o, s:I, s:f}", "restore_point", res->restore_point, "name",
                            rc->x->name, "vmId", res->vm_id, "volumes", vols, "bytes_written",
                            (json_int_t)res->bytes_written, "seconds", (double)res->seconds_ns / 1e9);
}

static int verb_restore(cli *x, const char *id)
{
        _cleanup_(sp_pool_closep) sp_pool *p = NULL;
        run_ctx rc = { .x = x, .label = "restore" };
        vb_restore_disk where = { .pool = x->storage_pool };
        vb_vmrestore_opts o;
        int r;

        if (!x->pool || !x->name)
                return vb_cli_fail(VB_E_USAGE, "cas restore needs ID|latest, --pool PATH and --name NEW (see --help)");
        if (!dd_name_is_safe(x->name))
                return vb_cli_fail(VB_E_USAGE, "--name '%s': use 1-64 letters, digits, '.', '_' or '-'", x->name);
        if (streq(id, "latest") && !x->vm)
                return vb_cli_fail(VB_E_USAGE, "cas restore latest needs --vm NAME");
        r = open_pool(x, &p);
        if (r)
                return r;
        r = cli_connect(x);
        if (r)
                return r;
        o = (vb_vmrestore_opts){ .drv = &cas_driver,
                                 .hv = x->hv,
                                 .pool = p,
                                 .restore_point = id,
                                 .vm = x->vm,
                                 .name = x->name,
                                 .host_id = x->host,
                                 .disks = &where,
                                 .n_disks = 1,
                                 .power_on = x->power_on,
                                 .transfer = &x->net.disk,
                                 .progress = run_progress,
                                 .step = run_step,
                                 .userdata = &rc };
        r = vb_vmrestore_start(&x->loop, &o, restore_done, &rc);
        if (r == -ENOENT)
                return vb_cli_fail(VB_E_NOT_FOUND, "restore point %s%s%s not found", id, x->vm ? " of vm " : "",
                                   x->vm ?: "");
        if (r == -EBADMSG)
                return vb_cli_fail(VB_E_USAGE, "restore point %s holds no VM configuration (not a platform backup)",
                                   id);
        if (r == -EINVAL)
                return vb_cli_fail(VB_E_USAGE, "restore point %s: bad restore settings (see --help)", id);
        r = run_wait(&rc, r, "restore");
        if (r)
                return r;
        if (vb_cli_json)
                return vb_cli_print_json(TAKE_PTR(rc.out));
        printf("Restore point %s restored as vm %s (id %s) in %.2f s\n",
               json_string_value(json_object_get(rc.out, "restore_point")), x->name,
               json_string_value(json_object_get(rc.out, "vmId")), json_real_value(json_object_get(rc.out, "seconds")));
        json_decref(rc.out);
        return 0;
}

int vb_cli_cas(int argc, char **argv)
{
        cli x = { .incremental = true,
                  .quiesce = true,
                  .min_free_percent = VB_MIN_FREE_PERCENT_DEFAULT,
                  .min_free = VB_MIN_FREE_BYTES_DEFAULT };
        _cleanup_free_ struct option *options = all_options();
        const char *verb;
        char *end;
        uint64_t v;
        int c, r;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                vb_cli_cas_help(argc < 2 ? stderr : stdout);
                return argc < 2 ? VB_E_USAGE : 0;
        }
        if (!options)
                return vb_cli_fail(VB_E_FAILED, "out of memory");
        vb_net_opts_init(&x.net);
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
                        vb_cli_json = true;
                        break;
                case OPT_VM:
                        x.vm = optarg;
                        break;
                case OPT_TIMEOUT:
                        errno = 0;
                        x.task_timeout_s = strtoull(optarg, &end, 10);
                        if (errno || *end || optarg[0] < '0' || optarg[0] > '9' || x.task_timeout_s < 1 ||
                            x.task_timeout_s > 24 * 3600)
                                return vb_cli_fail(VB_E_USAGE, "bad --timeout '%s' (1-86400 seconds)", optarg);
                        break;
                case OPT_XML:
                        x.xml = true;
                        break;
                case OPT_POOL:
                        x.pool = optarg;
                        break;
                case OPT_TYPE:
                        if (!streq(optarg, "full") && !streq(optarg, "incremental"))
                                return vb_cli_fail(VB_E_USAGE, "bad --type '%s' (full or incremental)", optarg);
                        x.incremental = streq(optarg, "incremental");
                        break;
                case OPT_SNAPSHOT:
                        r = vb_snapshot_type_from_string(optarg);
                        if (r < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad --snapshot '%s' (adaptive, external or internal)",
                                                   optarg);
                        x.snapshot = (vb_snapshot_type)r;
                        break;
                case OPT_NO_QUIESCE:
                        x.quiesce = false;
                        break;
                case OPT_SHUTDOWN:
                        x.shutdown = true;
                        break;
                case OPT_MIN_FREE:
                        if (vb_parse_size(optarg, &x.min_free) < 0)
                                return vb_cli_fail(VB_E_USAGE, "bad --min-free '%s' (a size such as 500G, or 0)",
                                                   optarg);
                        break;
                case OPT_MIN_FREE_PERCENT:
                        if (vb_parse_size(optarg, &v) < 0 || v > 100)
                                return vb_cli_fail(VB_E_USAGE, "bad --min-free-percent '%s' (0-100)", optarg);
                        x.min_free_percent = (unsigned)v;
                        break;
                case OPT_NETWORK:
                        if (!streq(optarg, "adaptive") && !streq(optarg, "backup") && !streq(optarg, "storage") &&
                            !streq(optarg, "management"))
                                return vb_cli_fail(VB_E_USAGE,
                                                   "bad --network '%s' (adaptive, backup, storage, management)",
                                                   optarg);
                        x.network = optarg;
                        break;
                case OPT_CVD_PORT:
                        if (vb_parse_size(optarg, &v) < 0 || v < 1 || v > 65535)
                                return vb_cli_fail(VB_E_USAGE, "bad --cvd-port '%s' (1-65535)", optarg);
                        x.cvd_port = (unsigned)v;
                        break;
                case OPT_CVD_TOKEN_FILE:
                        x.net.disk.auth.token_file = optarg;
                        break;
                case OPT_NAME:
                        x.name = optarg;
                        break;
                case OPT_HOST:
                        x.host = optarg;
                        break;
                case OPT_STORAGE_POOL:
                        x.storage_pool = optarg;
                        break;
                case OPT_POWER_ON:
                        x.power_on = true;
                        break;
                case OPT_WITH_DISKS:
                        x.with_disks = true;
                        break;
                case OPT_NET_TIMEOUT:
                        c = net_code("timeout");
                        /* fall through */
                default: {
                        _cleanup_free_ char *err = NULL;

                        r = vb_net_parse(&x.net, c, optarg, &err);
                        if (r == 1)
                                break;
                        vb_net_opts_clear(&x.net);
                        return vb_cli_fail(VB_E_USAGE, "%s", err ?: "bad option (see vbak cas --help)");
                }
                }
        }
        if (streq(verb, "inventory") && optind == argc - 1)
                r = verb_inventory(&x);
        else if (streq(verb, "vm") && optind == argc - 1)
                r = verb_vm(&x);
        else if (streq(verb, "power") && optind == argc - 2)
                r = verb_power(&x, argv[1 + optind]);
        else if (streq(verb, "backup") && optind == argc - 1)
                r = verb_backup(&x);
        else if (streq(verb, "restore") && optind == argc - 2)
                r = verb_restore(&x, argv[1 + optind]);
        else if (streq(verb, "delete") && optind == argc - 1)
                r = verb_delete(&x);
        else {
                vb_net_opts_clear(&x.net);
                if (!streq(verb, "inventory") && !streq(verb, "vm") && !streq(verb, "power") &&
                    !streq(verb, "backup") && !streq(verb, "restore") && !streq(verb, "delete"))
                        return vb_cli_fail(VB_E_USAGE, "unknown verb 'cas %s' (see vbak cas --help)", verb);
                return vb_cli_fail(VB_E_USAGE, "wrong arguments for 'cas %s' (see vbak cas --help)", verb);
        }
        cli_done(&x);
        return r;
}
