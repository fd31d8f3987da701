/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sim.h -- vbak-cvm-sim, a simulator of the H3C CAS CVM REST API
 * (/cas/casrs/..., see docs in tests/sim/README.md and the research notes
 * in cas-api.md). Shared declarations of its modules:
 *
 *   sim-model.c   the in-memory inventory loaded from the topology file
 *   sim-views.c   model -> response trees (the CAS field names, §3.1-3.6)
 *   sim-render.c  response tree -> XML / JSON in both quirk modes (§1.3)
 *   sim-tasks.c   asynchronous tasks: taskMsg and message/{msgId} (§2.1-2.2)
 *   sim-qemu.c    the real side: disk images, QEMU processes, QMP, snapshots (§3.3, §3.4),
 *                 disk hot-plug (§3.7)
 *   sim-volumes.c storage volumes: the files of a pool folder, create, delete (§3.6)
 *   sim-restore.c the restore path: vm/add, addDevice, delDevice, vm/delete (§3.7)
 *   sim-agent.c   executeCmd: a qemu-guest-agent stand-in (§3.8)
 *   sim-routes.c  the endpoints (the table; the inventory, power and snapshot handlers)
 *   sim-http.c    libmicrohttpd: listeners, Digest auth, dispatch, errors (§1.2, §5)
 *   sim-cvd.c     one vbak-cvd per host, serving its storage pools (§4)
 *   sim-ctl.c     the control socket and `ctl` commands: workload, power cycle,
 *                 migration, host id, fault knobs
 *   sim-main.c    command line
 *
 * DESIGN: every request runs under one global lock (sim_lock), so the model
 * and the task list need no finer locking even with an HTTP and an HTTPS
 * listener running in their own threads. Tasks advance with the wall clock
 * and are settled (their effect applied to the model) at the start of each
 * request, so there is no timer thread. A task's real work (starting QEMU,
 * a snapshot, a block commit) runs when it is settled, still under the lock:
 * the simulator serves one caller at a time, which is all its tests need.
 */
#ifndef VB_SIM_H
#define VB_SIM_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SIM_REALM "VMC RESTful Web Services"
#define SIM_PREFIX "/cas/casrs/"

/* Output quirks of the JSON rendering (cas-api.md §1.3, §6). */
typedef enum {
        SIM_QUIRKS_LEGACY, /* CAS 2.0: string scalars, one-item list as object, "@attr" keys */
        SIM_QUIRKS_TYPED,  /* 7.0 Swagger: typed scalars, lists always arrays, attributes as elements */
} sim_quirks;

typedef enum {
        SIM_CHARSET_UTF8,
        SIM_CHARSET_GBK, /* Error-Message as GBK bytes plus "charset: GBK" (§5) */
} sim_charset;

typedef struct {
        char *device;  /* vda, vdb ... */
        char *path;    /* the top file of the disk's image chain (an overlay after an external snapshot) */
        char *backing; /* the file path backs onto, NULL when it has no base */
        char *format;  /* qcow2 | raw: the format of path */
        uint64_t size_mb;
        char *bus;  /* virtio, ide, scsi */
        char *pool; /* storage pool name on the VM's host */
} sim_disk;

typedef struct {
        char *mac;
        char *vs_name;
        int64_t vs_id;
        char *ip;
        char *model; /* virtio, e1000, rtl8139 */
        int64_t profile_id;
} sim_nic;

/* One disk's part of a snapshot. Internal: top is the file holding it.
 * External: top is the overlay made for it, base/base_format the file it
 * sits on, prev_backing what base itself backed onto (restored on delete). */
typedef struct {
        char *top, *base, *base_format, *prev_backing;
} sim_snapfile;

typedef struct {
        char *name, *desc;
        int mode;      /* 1 internal, 2 external (§3.4 snapshotMode) */
        bool mem;      /* internal snapshot of a running VM: the VM state is saved too */
        bool quiesced; /* the guest's file systems were frozen when it was taken (guest-agent knob) */
        int64_t created_ms;
        sim_snapfile *files; /* one per disk, in disk order */
        size_t n_files;
} sim_snapshot;

typedef struct {
        int64_t id;
        char *uuid, *name, *title, *description, *os_version, *create_date;
        int64_t host_id;
        bool running;
        int system; /* 0 Windows, 1 Linux, 2 BSD */
        int cpu_sockets, cpu_cores;
        char *cpu_mode; /* custom, host-model, host-passthrough */
        uint64_t memory_mb;
        sim_disk *disks;
        size_t n_disks;
        sim_nic *nics;
        size_t n_nics;
        pid_t pid;           /* the QEMU process while running, else 0 */
        unsigned live_snaps; /* live external snapshots so far: numbers their overlay nodes */
        sim_snapshot *snaps; /* oldest first; each one's parent is the one before */
        size_t n_snaps;
        bool cbt_valid;  /* false after a power cycle until a snapshot is deleted (the end of a backup) */
        bool fs_frozen;  /* guest-fsfreeze-freeze answered, no thaw yet (guest-agent knob) */
        unsigned faults; /* 1 << sim_fault_knob set on this VM */
} sim_vm;

/* One address of a host on one vSwitch; role is management, storage or backup. */
typedef struct {
        char *role, *vs_name, *ip;
} sim_netaddr;

/* In a storage pool folder the simulator made (this run or an earlier one). */
#define SIM_POOL_MARK ".vbak-sim-pool"

typedef struct {
        char *name, *title, *type, *path;
        uint64_t capacity_mb; /* reported when the simulator made the folder */
        bool created;         /* the simulator made the folder: report capacity_mb, not statvfs */
} sim_spool;

typedef struct {
        int64_t id, cluster_id, hostpool_id; /* cluster_id 0: directly in the host pool */
        char *name, *ip;
        int status; /* 1 active, 0 inactive, -1 unknown */
        int cpu_sockets, cpu_cores;
        uint64_t memory_mb;
        sim_netaddr *nets;
        size_t n_nets;
        sim_spool *pools;
        size_t n_pools;
        unsigned faults; /* 1 << sim_fault_knob set on this host */
        pid_t cvd_pid;   /* its vbak-cvd while it runs, else 0 */
        char *cvd_dirs;  /* the folders it serves, '\n'-separated (to tell when a restart is due) */
} sim_host;

typedef struct {
        int64_t id, hostpool_id;
        char *name;
        bool enable_ha;
} sim_cluster;

typedef struct {
        int64_t id;
        char *name;
} sim_hostpool;

typedef struct {
        sim_hostpool *hostpools;
        size_t n_hostpools;
        sim_cluster *clusters;
        size_t n_clusters;
        sim_host *hosts;
        size_t n_hosts;
        sim_vm *vms; /* vm/add and vm/delete grow and shrink it: hold no pointer across a change */
        size_t n_vms;
        int64_t next_vm_id; /* vm/add's next id: ids are never reused within a run */
} sim_model;

typedef struct {
        const char *user, *password;
        sim_quirks quirks;
        sim_charset charset;
        sim_model *model;
        const char *state_dir; /* absolute */
        unsigned cvd_port;     /* each host's vbak-cvd listens here; 0: no vbak-cvd */
        const char *cvd_bin;   /* the vbak-cvd binary */
} sim_config;

/* Fault knobs (README "Fault knobs"): set globally, on a VM or on a host. */
typedef enum {
        SIM_FAULT_SNAPSHOT_FAIL,
        SIM_FAULT_TASK_SLOW,
        SIM_FAULT_SHUTDOWN_HANG,
        SIM_FAULT_SESSION_EXPIRY,
        SIM_FAULT_CONN_RESET,
        SIM_FAULT_HOST_DOWN,
        SIM_FAULT_POOL_FULL,
        SIM_FAULT_GUEST_AGENT, /* not a fault: a qemu-guest-agent answers executeCmd */
        SIM_FAULT_COUNT,
} sim_fault_knob;

/* The knob is on globally or on this VM (vm may be NULL). */
bool sim_fault_vm(sim_fault_knob k, const sim_vm *vm);
/* The knob is on globally or on this host (h may be NULL). */
bool sim_fault_host(sim_fault_knob k, const sim_host *h);
/* One-shot knobs (session-expiry, conn-reset): true once per arming. Lock-free. */
bool sim_fault_take(sim_fault_knob k);

extern sim_config sim_cfg;
extern pthread_mutex_t sim_lock;

/* sim-model.c */
int sim_model_load(sim_model *m, const char *topology, const char *state_dir, char **err);
void sim_model_free(sim_model *m);
/* Frees what a VM owns (not the VM itself). */
void sim_vm_free(sim_vm *vm);
/* Takes vm out of m->vms (freed); pointers to later VMs move. */
void sim_model_vm_remove(sim_model *m, sim_vm *vm);
void sim_snapshot_free(sim_snapshot *s);
sim_snapshot *sim_vm_snapshot(sim_vm *vm, const char *name);
sim_hostpool *sim_model_hostpool(sim_model *m, int64_t id);
sim_cluster *sim_model_cluster(sim_model *m, int64_t id);
sim_host *sim_model_host(sim_model *m, int64_t id);
/* A VM by numeric id or by uuid (power operations accept either, §3.3). */
sim_vm *sim_model_vm(sim_model *m, const char *id_or_uuid);
sim_vm *sim_model_vm_by_id(sim_model *m, int64_t id);
sim_spool *sim_model_spool(sim_host *h, const char *name);
/* The storage pool of h whose folder holds path directly, or NULL. */
sim_spool *sim_model_spool_of_path(sim_host *h, const char *path);
sim_vm *sim_model_vm_by_name(sim_model *m, const char *name);
/* Parses a whole decimal int64; false for anything else. */
bool sim_parse_id(const char *s, int64_t *out);

/* sim-views.c: each returns a new reference (never NULL). */
json_t *sim_view_hostpool(sim_model *m, const sim_hostpool *hp);
json_t *sim_view_cluster(sim_model *m, const sim_cluster *c);
json_t *sim_view_host_brief(const sim_host *h);
json_t *sim_view_cluster_host(sim_model *m, const sim_host *h);
json_t *sim_view_host_detail(const sim_host *h);
json_t *sim_view_vm_list_item(sim_model *m, const sim_vm *vm);
json_t *sim_view_vm(sim_model *m, const sim_vm *vm);
json_t *sim_view_vm_detail(sim_model *m, const sim_vm *vm);
json_t *sim_view_vm_storage(sim_model *m, const sim_vm *vm);
json_t *sim_view_spool(sim_model *m, const sim_host *h, const sim_spool *p);
json_t *sim_view_snapshots(const sim_vm *vm);
json_t *sim_view_backfilepath(const sim_vm *vm);
bool sim_vm_supports_cbt(const sim_vm *vm);

/* sim-render.c: a response tree is a JSON object whose keys are element
 * names; an array is a repeated element, an "@name" key an XML attribute,
 * null is left out. root names the XML document element (JSON has none). */
char *sim_render_xml(const char *root, json_t *tree, sim_quirks q);
char *sim_render_json(json_t *tree, sim_quirks q);
/* The tree as the JSON rendering sees it (quirks applied); new reference. */
json_t *sim_render_json_tree(json_t *tree, sim_quirks q);

/* sim-tasks.c */
typedef enum {
        SIM_TASK_START,
        SIM_TASK_STOP,
        SIM_TASK_POWEROFF,
        SIM_TASK_SNAPSHOT,    /* create snap_name, snap_mode */
        SIM_TASK_SNAP_DELETE, /* delete snap_name */
        SIM_TASK_SIMPLIFY,    /* commit every external snapshot */
        SIM_TASK_VM_ADD,      /* spec: the normalised <domain> of vm/add */
        SIM_TASK_VM_DELETE,   /* spec: {"type": "0"|"1"} (1: the disk files go too) */
        SIM_TASK_ADD_DEVICE,  /* spec: the <storage> of addDevice */
        SIM_TASK_DEL_DEVICE,  /* spec: the <storage> of delDevice */
        SIM_TASK_VOL_CREATE,  /* spec: see sim_volume_create() */
} sim_task_kind;

/* Creates a task on a VM and returns its immediate taskMsg (§2.1). */
json_t *sim_task_start(sim_model *m, sim_task_kind kind, sim_vm *vm);
/* The same for snapshot tasks: name (copied) and mode (1/2) of the snapshot. */
json_t *sim_task_start_snapshot(sim_model *m, sim_task_kind kind, sim_vm *vm, const char *name, int mode,
                                const char *desc);
/* A snapshot create task for name on vm is queued and not settled yet. */
bool sim_task_snapshot_pending(const sim_vm *vm, const char *name);
/* A task whose work spec describes (a reference is taken): on vm, or with vm NULL on
 * something that does not exist yet (vm/add: target_name the VM's name, targetId 0
 * until it completes; a volume: target_id its host, target_name its name). key names
 * what the task makes (the VM name, the volume path) for sim_task_pending(). */
json_t *sim_task_start_spec(sim_model *m, sim_task_kind kind, sim_vm *vm, int64_t target_id, const char *target_name,
                            const char *key, json_t *spec);
/* A task of kind whose key is key is queued and not settled yet. */
bool sim_task_pending(sim_task_kind kind, const char *key);
/* The taskMsg of msgId as message/{msgId} shows it, or NULL if unknown. */
json_t *sim_task_view(int64_t msg_id);
/* Finishes every task whose time has come and applies it to the model. */
void sim_tasks_settle(sim_model *m);
int64_t sim_now_ms(void);

/* sim-routes.c / sim-http.c: one request and its reply. */
typedef struct sim_request sim_request;

#define SIM_MAX_SEGS 8

typedef struct {
        unsigned status;
        const char *root; /* XML root element of tree */
        json_t *tree;
        char *raw;                 /* a bare text body instead of a tree (e.g. "true") */
        int64_t total;             /* the Total header (§1.4) when >= 0 */
        int error_code;            /* 409 business error (§5) */
        const char *error_message; /* UTF-8 */
} sim_reply;

/* What an endpoint handler gets: seg[] holds the path segments its pattern's "*" matched. */
typedef struct {
        sim_request *req;
        sim_model *m;
        const char *seg[SIM_MAX_SEGS];
        const char *body;
        sim_reply *rep;
} sim_route_ctx;

const char *sim_request_arg(sim_request *req, const char *key);
/* Dispatches method + path (the part after /cas/casrs/) to an endpoint. */
void sim_route(sim_request *req, const char *method, const char *path, const char *body, sim_reply *rep);
void sim_reply_error(sim_reply *rep, int code, const char *message);
void sim_reply_tree(sim_reply *rep, const char *root, json_t *tree);
/* A query parameter as an id; false when absent or not a number. */
bool sim_route_arg_id(sim_route_ctx *c, const char *key, int64_t *out);
/* The VM of an id or uuid; NULL after a 409 (1001 unknown, 402 its host is down). */
sim_vm *sim_route_vm(sim_route_ctx *c, const char *id_or_uuid);
/* A request body (XML, or JSON bare or wrapped in {"<root>": ...}) as a tree of
 * objects, arrays (a repeated XML element) and strings (every scalar, whatever
 * its JSON type); an empty object when it is neither. New reference. */
json_t *sim_parse_body(const char *body, const char *root);
/* A string member of a parsed body, or NULL. */
const char *sim_body_str(json_t *o, const char *key);
/* A list member of a parsed body as an array whatever its form: an array, one
 * object (legacy JSON, one XML element), or missing (empty). New reference. */
json_t *sim_body_list(json_t *o, const char *key);

/* Endpoint handlers outside sim-routes.c (the table there lists them). */
void sim_r_volume_list(sim_route_ctx *c);
void sim_r_volume_create(sim_route_ctx *c);
void sim_r_volume_add(sim_route_ctx *c);
void sim_r_volume_delete(sim_route_ctx *c);
void sim_r_vm_add(sim_route_ctx *c);
void sim_r_vm_add_device(sim_route_ctx *c);
void sim_r_vm_del_device(sim_route_ctx *c);
void sim_r_vm_delete(sim_route_ctx *c);
void sim_r_vm_delete_vm(sim_route_ctx *c);
void sim_r_vm_execute_cmd(sim_route_ctx *c);

/* sim-qemu.c: each returns 0 or -errno with *err (malloc'd, for a failMsg). */
/* Forks the process that stops the QEMUs when the simulator dies (call first). */
int sim_qemu_watchdog_start(void);
int sim_qemu_prepare(sim_model *m, char **err);
int sim_qemu_start(sim_vm *vm, char **err);
/* graceful: system_powerdown first (a safe shutdown), then quit. */
int sim_qemu_stop(sim_vm *vm, bool graceful, char **err);
void sim_qemu_stop_all(sim_model *m);
/* A running VM whose QEMU went away is shut off. */
void sim_qemu_refresh(sim_model *m);
int sim_qemu_snapshot_create(sim_vm *vm, const char *name, int mode, const char *desc, char **err);
int sim_qemu_snapshot_delete(sim_vm *vm, const char *name, char **err);
int sim_qemu_simplify(sim_vm *vm, char **err);

/* qemu-img create -f format path size_mb M, with -o preallocation=prealloc and cluster_size
 * when not NULL, and -b backing -F backing_fmt when backing is not NULL. */
int sim_qemu_img_create(const char *path, const char *format, uint64_t size_mb, const char *prealloc,
                        const char *cluster_size, const char *backing, const char *backing_fmt, char **err);
/* Hot-plugs disk i of a running VM (QMP blockdev-add file<i>, fmt<i>; device_add vd<i>). */
int sim_qemu_hotplug(sim_vm *vm, size_t i, char **err);

/* sim-qemu.c: the watchdog also stops vbak-cvd processes; '+' adds a pid, '-' removes it. */
void sim_watchdog_tell(char op, pid_t pid);
/* HMP qemu-io: writes len bytes of value byte at offset of disk i of a running VM. */
int sim_qemu_write(sim_vm *vm, size_t disk, const char *offset, const char *length, unsigned byte, char **err);

/* sim-volumes.c */
/* An image file's format (qcow2 or raw, from its header), virtual size in bytes and
 * backing file (NULL without one; as the header stores it). Any of the outputs may be NULL. */
int sim_image_probe(const char *path, char **format, uint64_t *size, char **backing);
/* A volume or folder name: not empty, no '/', not starting with '.', no control character. */
bool sim_valid_file_name(const char *name);
/* The names of the VMs whose image chains hold path, comma-separated ("" for none). */
char *sim_volume_users(sim_model *m, const char *path);
/* MB taken by the files of the pool folder that no VM uses (the model counts the VMs' disks). */
uint64_t sim_spool_loose_mb(sim_model *m, const sim_host *h, const sim_spool *p);
/* Creates a volume: spec {"path", "format", "capacity" (MB), and optional "preallocation",
 * "clusterSize", "baseFile"}; fails when the file exists. */
int sim_volume_create(json_t *spec, char **err);

/* sim-restore.c: the work of the restore tasks, when they settle. */
int sim_vm_add(sim_model *m, json_t *spec, int64_t *new_id, char **err);
int sim_vm_add_disk(sim_model *m, sim_vm *vm, json_t *storage, char **err);
int sim_vm_del_disk(sim_vm *vm, json_t *storage, char **err);
/* Takes vm out of the model (vm is gone after); files: its disk files are removed too. */
int sim_vm_delete(sim_model *m, sim_vm *vm, bool files, char **err);

/* sim-cvd.c */
/* The address a host's vbak-cvd listens on: backup, else management network, else the host's ip. */
const char *sim_host_cvd_ip(const sim_host *h);
/* Starts the host's vbak-cvd (no-op when it runs or cvd_port is 0) and waits until it accepts. */
int sim_cvd_start(sim_model *m, sim_host *h, char **err);
void sim_cvd_stop(sim_host *h);
/* Restarts the host's running vbak-cvd when the folders it should serve changed (a VM's
 * disk outside its pools came or went). */
int sim_cvd_refresh(sim_model *m, sim_host *h, char **err);
void sim_cvd_stop_all(sim_model *m);

/* sim-ctl.c */
int sim_ctl_start(void);
void sim_ctl_stop(void);
int sim_ctl_client(int argc, char **argv);

/* sim-http.c */
typedef struct sim_listener sim_listener;
int sim_http_start(const char *addr_port, const char *cert_pem, const char *key_pem, sim_listener **out);
void sim_http_stop(sim_listener *l);

#endif
