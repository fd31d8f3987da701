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
 *   sim-qemu.c    the real side: disk images, QEMU processes, QMP, snapshots (§3.3, §3.4)
 *   sim-routes.c  the endpoints
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
} sim_nic;

/* One disk's part of a snapshot. Internal: top is the file holding it.
 * External: top is the overlay made for it, base/base_format the file it
 * sits on, prev_backing what base itself backed onto (restored on delete). */
typedef struct {
        char *top, *base, *base_format, *prev_backing;
} sim_snapfile;

typedef struct {
        char *name, *desc;
        int mode; /* 1 internal, 2 external (§3.4 snapshotMode) */
        bool mem; /* internal snapshot of a running VM: the VM state is saved too */
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
        unsigned faults; /* 1 << sim_fault_knob set on this VM */
} sim_vm;

/* One address of a host on one vSwitch; role is management, storage or backup. */
typedef struct {
        char *role, *vs_name, *ip;
} sim_netaddr;

typedef struct {
        char *name, *title, *type, *path;
        uint64_t capacity_mb; /* reported when path did not exist before the simulator started */
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
        sim_vm *vms;
        size_t n_vms;
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
void sim_snapshot_free(sim_snapshot *s);
sim_snapshot *sim_vm_snapshot(sim_vm *vm, const char *name);
sim_hostpool *sim_model_hostpool(sim_model *m, int64_t id);
sim_cluster *sim_model_cluster(sim_model *m, int64_t id);
sim_host *sim_model_host(sim_model *m, int64_t id);
/* A VM by numeric id or by uuid (power operations accept either, §3.3). */
sim_vm *sim_model_vm(sim_model *m, const char *id_or_uuid);
sim_vm *sim_model_vm_by_id(sim_model *m, int64_t id);
sim_spool *sim_model_spool(sim_host *h, const char *name);
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
} sim_task_kind;

/* Creates a task on a VM and returns its immediate taskMsg (§2.1). */
json_t *sim_task_start(sim_model *m, sim_task_kind kind, sim_vm *vm);
/* The same for snapshot tasks: name (copied) and mode (1/2) of the snapshot. */
json_t *sim_task_start_snapshot(sim_model *m, sim_task_kind kind, sim_vm *vm, const char *name, int mode,
                                const char *desc);
/* A snapshot create task for name on vm is queued and not settled yet. */
bool sim_task_snapshot_pending(const sim_vm *vm, const char *name);
/* The taskMsg of msgId as message/{msgId} shows it, or NULL if unknown. */
json_t *sim_task_view(int64_t msg_id);
/* Finishes every task whose time has come and applies it to the model. */
void sim_tasks_settle(sim_model *m);
int64_t sim_now_ms(void);

/* sim-routes.c / sim-http.c: one request and its reply. */
typedef struct sim_request sim_request;

typedef struct {
        unsigned status;
        const char *root; /* XML root element of tree */
        json_t *tree;
        char *raw;                 /* a bare text body instead of a tree (e.g. "true") */
        int64_t total;             /* the Total header (§1.4) when >= 0 */
        int error_code;            /* 409 business error (§5) */
        const char *error_message; /* UTF-8 */
} sim_reply;

const char *sim_request_arg(sim_request *req, const char *key);
/* Dispatches method + path (the part after /cas/casrs/) to an endpoint. */
void sim_route(sim_request *req, const char *method, const char *path, const char *body, sim_reply *rep);
void sim_reply_error(sim_reply *rep, int code, const char *message);

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

/* sim-qemu.c: the watchdog also stops vbak-cvd processes; '+' adds a pid, '-' removes it. */
void sim_watchdog_tell(char op, pid_t pid);
/* HMP qemu-io: writes len bytes of value byte at offset of disk i of a running VM. */
int sim_qemu_write(sim_vm *vm, size_t disk, const char *offset, const char *length, unsigned byte, char **err);

/* sim-cvd.c */
/* The address a host's vbak-cvd listens on: backup, else management network, else the host's ip. */
const char *sim_host_cvd_ip(const sim_host *h);
/* Starts the host's vbak-cvd (no-op when it runs or cvd_port is 0) and waits until it accepts. */
int sim_cvd_start(sim_model *m, sim_host *h, char **err);
void sim_cvd_stop(sim_host *h);
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
