/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * catalog.h -- the daemon's catalog: platforms, pools, jobs, runs, the
 * per-VM results of every run, the VM locks and the restore points, in one
 * SQLite file (STATE_DIR/catalog.db).
 *
 * DESIGN
 * One connection per catalog, opened SQLITE_OPEN_FULLMUTEX, plus a mutex of
 * our own held by every public call for its whole length. Each call is one
 * transaction (BEGIN IMMEDIATE for writes, so two writers never deadlock on
 * a lock upgrade), and with the mutex the statements of one call never mix
 * with another thread's: any worker thread may call any function. Calls of
 * one process are serialised; that is cheap for a catalog (small rows, the
 * hashing and the I/O happen elsewhere) and it keeps the transactions
 * obvious. A second process on the same file (a debugging sqlite3 shell)
 * is waited for at most VB_CATALOG_BUSY_TIMEOUT_MS, then the call fails with
 * -EBUSY: nothing blocks forever.
 *
 * The file is in WAL mode with synchronous=FULL: a call that returned 0
 * survives a crash or a power failure. Foreign keys are on. The schema
 * version is PRAGMA user_version; opening runs the migrations from the
 * file's version up to VB_CATALOG_SCHEMA_VERSION, each in its own
 * transaction; a file of a newer version is refused (-EPROTONOSUPPORT).
 * docs/formats.md ("Catalog") has the tables.
 *
 * Records come back as plain structs owned by the caller (vb_*_clear() for
 * one, vb_*s_free() for an array from a list call); JSON-valued fields are
 * jansson values owned by the struct. vb_*_to_json() give the form the API
 * shows. Passwords are never here: daemon/credstore.h keeps them.
 *
 * Every function returns 0 (or a count) or -errno: -EINVAL for bad
 * arguments, -ENOENT for a record that is not there, -EEXIST for a name (or
 * a key) already taken, -ENOTEMPTY for a platform or pool a job still uses,
 * -EALREADY for a run or VM already started or finished, -EBUSY when the
 * file stayed locked by another process past the timeout, -EBADMSG for a
 * damaged file or row, -EIO (or the system's errno) for other SQLite
 * failures, which are logged with SQLite's own message.
 */
#ifndef VB_CATALOG_H
#define VB_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dedup/manifest.h"
#include "storagepool/sp.h"

#define VB_CATALOG_FILE "catalog.db"
#define VB_CATALOG_SCHEMA_VERSION 3
#define VB_CATALOG_BUSY_TIMEOUT_MS 10000

typedef struct vb_catalog vb_catalog;

/* Opens (creating it, mode 0600, and state_dir, mode 0700, when missing)
 * STATE_DIR/catalog.db and brings its schema to VB_CATALOG_SCHEMA_VERSION. */
int vb_catalog_open(const char *state_dir, vb_catalog **ret);
/* The same, but migrates only up to version (1..VB_CATALOG_SCHEMA_VERSION).
 * For the tests of migrations: calls that use newer columns fail on such a
 * catalog. */
int vb_catalog_open_version(const char *state_dir, int version, vb_catalog **ret);
vb_catalog *vb_catalog_close(vb_catalog *c);
static inline void vb_catalog_closep(vb_catalog **c)
{
        vb_catalog_close(*c);
}

/* How long a call waits for another process's lock before it fails with
 * -EBUSY (default VB_CATALOG_BUSY_TIMEOUT_MS). */
int vb_catalog_set_busy_timeout(vb_catalog *c, int ms);

/* The file's schema version (PRAGMA user_version). */
int vb_catalog_schema_version(vb_catalog *c);

/* ---- platforms ---- */

typedef enum vb_platform_type {
        VB_PLATFORM_CAS,
        VB_PLATFORM_LIBVIRT,
        _VB_PLATFORM_TYPE_MAX,
        _VB_PLATFORM_TYPE_INVALID = -1,
} vb_platform_type;

const char *vb_platform_type_to_string(vb_platform_type t);
vb_platform_type vb_platform_type_from_string(const char *s);

typedef struct vb_platform {
        int64_t id;
        char *name;
        vb_platform_type type;
        char *address;             /* the CVM's URL (cas) or the libvirt URI */
        bool insecure;             /* TLS certificates are not checked */
        char *user;                /* may be NULL */
        char *backup_host;         /* the default backup host; may be NULL */
        json_t *tags;              /* array of strings; NULL is stored as [] */
        int64_t created, modified; /* seconds since the epoch */
} vb_platform;

void vb_platform_clear(vb_platform *p);
void vb_platforms_free(vb_platform *v, size_t n);
json_t *vb_platform_to_json(const vb_platform *p);

/* Adds p (id, created and modified are ignored); -EEXIST for a name taken. */
int vb_catalog_platform_add(vb_catalog *c, const vb_platform *p, int64_t *ret_id);
/* By id when id > 0, else by name. ret is filled (and owned by the caller)
 * only on success. */
int vb_catalog_platform_get(vb_catalog *c, int64_t id, const char *name, vb_platform *ret);
/* Every platform, by name. */
int vb_catalog_platform_list(vb_catalog *c, vb_platform **ret, size_t *ret_n);
/* Writes every field of p but created to the platform p->id; modified
 * becomes now. -EEXIST when the new name is taken. */
int vb_catalog_platform_update(vb_catalog *c, const vb_platform *p);
/* -ENOTEMPTY while a job that is not deleted uses it; deleted jobs and
 * restore points then lose their link (platform id 0). */
int vb_catalog_platform_remove(vb_catalog *c, int64_t id);

/* ---- pools ---- */

typedef struct vb_pool {
        int64_t id;
        char *name;
        char *path; /* the pool's folder */
        char *type; /* a storage pool driver's name: dedup, standard */
        int64_t created, modified;
} vb_pool;

void vb_pool_clear(vb_pool *p);
void vb_pools_free(vb_pool *v, size_t n);
json_t *vb_pool_to_json(const vb_pool *p);

int vb_catalog_pool_add(vb_catalog *c, const vb_pool *p, int64_t *ret_id);
int vb_catalog_pool_get(vb_catalog *c, int64_t id, const char *name, vb_pool *ret);
int vb_catalog_pool_list(vb_catalog *c, vb_pool **ret, size_t *ret_n);
int vb_catalog_pool_update(vb_catalog *c, const vb_pool *p);
/* -ENOTEMPTY while a job that is not deleted uses it; the pool's restore
 * points leave the catalog (not the pool). */
int vb_catalog_pool_remove(vb_catalog *c, int64_t id);

/* ---- jobs ---- */

typedef struct vb_job {
        int64_t id;
        char *name;                      /* unique among the jobs that are not deleted */
        int64_t platform_id;             /* 0 only for a deleted job whose platform was removed */
        int64_t pool_id;                 /* the same */
        char *platform_name, *pool_name; /* filled by get and list, ignored by add and update */
        json_t *selection;               /* array of {"level": "hostpool"|"cluster"|"host"|"vm", "id", "name"} */
        json_t *exclusions;              /* array of patterns (strings); NULL is stored as [] */
        dd_backup_type backup_type;
        json_t *options;  /* object, opaque here; NULL is stored as {} */
        json_t *schedule; /* opaque here; may be NULL */
        bool enabled;
        bool deleted;
        int64_t last_check; /* the scheduler's last look at this job; 0: never */
        int64_t created, modified;
} vb_job;

void vb_job_clear(vb_job *j);
void vb_jobs_free(vb_job *v, size_t n);
json_t *vb_job_to_json(const vb_job *j);

/* Adds j (id, deleted, last_check, created, modified are ignored; the job is
 * not deleted). -ENOENT when its platform or pool is not there, -EEXIST for a
 * name taken, -EINVAL for a selection, exclusions or options of the wrong
 * shape. */
int vb_catalog_job_add(vb_catalog *c, const vb_job *j, int64_t *ret_id);
/* By id when id > 0 (deleted jobs too), else by name (jobs not deleted). */
int vb_catalog_job_get(vb_catalog *c, int64_t id, const char *name, vb_job *ret);
/* The jobs, by name; deleted ones only with include_deleted. */
int vb_catalog_job_list(vb_catalog *c, bool include_deleted, vb_job **ret, size_t *ret_n);
/* Writes name, platform, pool, selection, exclusions, backup type, options,
 * schedule and enabled of j->id; modified becomes now. -ENOENT for a deleted
 * job. */
int vb_catalog_job_update(vb_catalog *c, const vb_job *j);
/* Marks the job deleted (and disabled); its runs stay. Its name is free for
 * a new job. -ENOENT when it is not there or already deleted. */
int vb_catalog_job_delete(vb_catalog *c, int64_t id);
int vb_catalog_job_set_last_check(vb_catalog *c, int64_t id, int64_t when);

/* ---- runs ---- */

typedef enum vb_run_kind {
        VB_RUN_MANUAL,
        VB_RUN_SCHEDULED,
        VB_RUN_RETRY,
        _VB_RUN_KIND_MAX,
        _VB_RUN_KIND_INVALID = -1,
} vb_run_kind;

typedef enum vb_run_status {
        VB_RUN_WAITING,
        VB_RUN_RUNNING,
        VB_RUN_SUCCEEDED,
        VB_RUN_PARTIAL,
        VB_RUN_FAILED,
        VB_RUN_STOPPED,
        VB_RUN_SKIPPED, /* the job's precondition did not pass */
        _VB_RUN_STATUS_MAX,
        _VB_RUN_STATUS_INVALID = -1,
} vb_run_status;

const char *vb_run_kind_to_string(vb_run_kind k);
vb_run_kind vb_run_kind_from_string(const char *s);
const char *vb_run_status_to_string(vb_run_status s);
vb_run_status vb_run_status_from_string(const char *s);
/* Waiting or running. */
bool vb_run_status_is_active(vb_run_status s);

typedef struct vb_run {
        int64_t id;
        int64_t job_id;
        char *job_name; /* also when the job was deleted since */
        bool job_deleted;
        vb_run_kind kind;
        vb_run_status status;
        int64_t retry_of;                /* a retry's original run; 0 */
        int64_t created, started, ended; /* 0: not yet */
        int error_code;                  /* vb_error of the run as a whole (precondition, script); 0 */
        char *message;
        /* Counted from the run's VMs when read. */
        unsigned n_vms, n_waiting, n_running, n_succeeded, n_failed, n_skipped;
        uint64_t bytes_read, bytes_new;
} vb_run;

void vb_run_clear(vb_run *r);
void vb_runs_free(vb_run *v, size_t n);
json_t *vb_run_to_json(const vb_run *r);

/* What a run ends as, from its VMs: succeeded when none failed, failed when
 * none succeeded and some failed, else partial. VMs still waiting or running
 * count as failed. */
vb_run_status vb_run_status_from_vms(const vb_run *r);

typedef struct vb_run_filter {
        int64_t job_id;    /* 0: any job */
        unsigned statuses; /* bits 1u << vb_run_status; 0: any status */
        unsigned limit;    /* 0: no limit */
} vb_run_filter;

/* A new run of job_id, waiting. retry_of: the original run of a retry, or 0.
 * -ENOENT for a job that is not there or deleted. */
int vb_catalog_run_add(vb_catalog *c, int64_t job_id, vb_run_kind kind, int64_t retry_of, int64_t *ret_id);
int vb_catalog_run_get(vb_catalog *c, int64_t id, vb_run *ret);
/* Newest first; f may be NULL. */
int vb_catalog_run_list(vb_catalog *c, const vb_run_filter *f, vb_run **ret, size_t *ret_n);
/* Waiting (or finished, for a retry into the original run) to running; the
 * start time is set once, the end time cleared. -EALREADY when running. */
int vb_catalog_run_start(vb_catalog *c, int64_t id);
/* Running or waiting to status (succeeded, partial, failed or stopped), with
 * the end time; releases every VM lock the run holds. */
int vb_catalog_run_finish(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message);

/* ---- the VMs of a run ---- */

typedef enum vb_run_vm_status {
        VB_RUN_VM_WAITING,
        VB_RUN_VM_RUNNING,
        VB_RUN_VM_SUCCEEDED,
        VB_RUN_VM_FAILED,
        VB_RUN_VM_SKIPPED,
        VB_RUN_VM_NONE, /* "-": not part of this attempt (not retried) */
        _VB_RUN_VM_STATUS_MAX,
        _VB_RUN_VM_STATUS_INVALID = -1,
} vb_run_vm_status;

/* Where one VM's backup is, persisted before each step so that a daemon
 * started after a crash knows what to undo. */
typedef enum vb_backup_step {
        VB_STEP_WAITING,    /* nothing done on the platform yet */
        VB_STEP_SNAPSHOT,   /* a snapshot may exist: its name is recorded first */
        VB_STEP_READING,    /* disks are being read into the pool */
        VB_STEP_COMMITTING, /* the restore point is being committed */
        VB_STEP_CLEANING,   /* the snapshot is being deleted */
        VB_STEP_DONE,       /* nothing left to undo */
        _VB_BACKUP_STEP_MAX,
        _VB_BACKUP_STEP_INVALID = -1,
} vb_backup_step;

const char *vb_run_vm_status_to_string(vb_run_vm_status s);
vb_run_vm_status vb_run_vm_status_from_string(const char *s);
const char *vb_backup_step_to_string(vb_backup_step s);
vb_backup_step vb_backup_step_from_string(const char *s);

typedef struct vb_run_vm {
        int64_t id;
        int64_t run_id;
        int64_t job_id; /* the run's job (filled when read) */
        /* The VM's key: the catalog's platform id and the platform's VM id. */
        int64_t platform_id;
        char *vm_id;
        char *vm_name, *title, *host_id; /* title and host_id may be NULL */
        vb_run_vm_status status;
        int error_code; /* vb_error; 0 */
        char *message;
        char *restore_point; /* the id of the restore point made; NULL */
        unsigned attempts;   /* attempts begun, the current one included */
        json_t *history;     /* earlier attempts, oldest first: {attempt, status, error_code, message,
                              * restore_point, started, ended, bytes_read, bytes_new} */
        vb_backup_step state;
        char *snapshot;     /* the snapshot this attempt made (or is making); NULL */
        json_t *temp_files; /* array of paths this attempt owns */
        int64_t started, ended;
        uint64_t bytes_read, bytes_new; /* schema 2 */
        json_t *notes;                  /* array of strings (why an incremental became a full...); schema 2 */
} vb_run_vm;

void vb_run_vm_clear(vb_run_vm *v);
void vb_run_vms_free(vb_run_vm *v, size_t n);
json_t *vb_run_vm_to_json(const vb_run_vm *v);

/* What one attempt ended with. */
typedef struct vb_run_vm_result {
        vb_run_vm_status status; /* succeeded, failed, skipped or none */
        int error_code;
        const char *message;       /* may be NULL */
        const char *restore_point; /* may be NULL */
        uint64_t bytes_read, bytes_new;
        const json_t *notes; /* array of strings; NULL: none */
} vb_run_vm_result;

/* Adds a VM to a run, waiting, no attempt yet: v's platform_id, vm_id,
 * vm_name, title and host_id are used. -EEXIST when the run has it already,
 * -ENOENT for a run that is not there. */
int vb_catalog_run_vm_add(vb_catalog *c, int64_t run_id, const vb_run_vm *v, int64_t *ret_id);
int vb_catalog_run_vm_get(vb_catalog *c, int64_t id, vb_run_vm *ret);
/* The VMs of a run, in the order they were added. */
int vb_catalog_run_vm_list(vb_catalog *c, int64_t run_id, vb_run_vm **ret, size_t *ret_n);
/* Begins an attempt: the previous attempt's result (when there was one)
 * moves to the history, attempts grows by one, the VM is running in state
 * waiting with a clean result. host_id, when not NULL, replaces the VM's
 * host (it may have migrated). -EALREADY when it is running. */
int vb_catalog_run_vm_begin(vb_catalog *c, int64_t id, const char *host_id);
/* Records the VM's step. snapshot: NULL keeps the recorded name, "" clears
 * it; temp_files (array of strings): NULL keeps the recorded list. Call it
 * before the step's effect (the snapshot name before the snapshot is made),
 * so a crash leaves at worst something recorded that does not exist. */
int vb_catalog_vm_state_set(vb_catalog *c, int64_t id, vb_backup_step state, const char *snapshot,
                            const json_t *temp_files);
/* Ends the attempt with res; the state becomes done, the temp files are
 * forgotten, the snapshot name is kept for the record. */
int vb_catalog_run_vm_finish(vb_catalog *c, int64_t id, const vb_run_vm_result *res);
/* The VMs left waiting or running, or in a state other than waiting or done
 * (a daemon died during their runs), oldest first. The daemon deletes their
 * snapshots, removes their temp files, then finishes them failed. For
 * start-up, before any run begins: a live run's VMs would be listed too. */
int vb_catalog_unfinished_vms(vb_catalog *c, vb_run_vm **ret, size_t *ret_n);

/* ---- VM locks: one run at a time per VM, across all jobs ---- */

/* Locks the VM (platform_id, vm_id) for run_id. 0 when locked now or
 * already held by run_id; -EEXIST when another run holds it (its id through
 * ret_holder, which may be NULL). */
int vb_catalog_vm_lock(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id, int64_t *ret_holder);
/* -ENOENT when run_id does not hold it. */
int vb_catalog_vm_unlock(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id);
/* Releases the locks of run_id; returns how many. */
int vb_catalog_vm_unlock_run(vb_catalog *c, int64_t run_id);
/* Releases every lock (at start-up, no run is alive); returns how many. */
int vb_catalog_vm_locks_clear(vb_catalog *c);

/* ---- restores (daemon/restorer.h) ---- */

typedef struct vb_restore {
        int64_t id;
        char *name;
        char *kind;           /* "vm" or "disk" */
        char *path;           /* "new" or "original" */
        json_t *spec;         /* the request as created, "confirm" dropped */
        char *schedule;       /* "now", "manual" or "once" */
        int64_t at;           /* once: when (epoch seconds); 0 */
        vb_run_status status; /* waiting, running, succeeded, partial, failed, stopped, skipped */
        int64_t created, started, ended;
        int error_code;
        char *message;
        /* Counted from its items when read. */
        unsigned n_items, n_waiting, n_running, n_succeeded, n_failed;
        uint64_t bytes_written;
} vb_restore;

void vb_restore_clear(vb_restore *r);
void vb_restores_free(vb_restore *v, size_t n);
json_t *vb_restore_to_json(const vb_restore *r);

typedef struct vb_restore_item {
        int64_t id;
        int64_t restore_id;
        unsigned idx;        /* its place in the request's items */
        int64_t pool_id;     /* the pool holding the restore point */
        char *restore_point; /* its id */
        char *vm_name;       /* the source VM's name */
        char *disk;          /* kind disk: the disk; NULL */
        char *target;        /* the target VM's name */
        char *host_id;       /* the target host; NULL when not known */
        vb_run_vm_status status;
        int error_code;
        char *message;
        char *target_vm_id; /* the restored (or new) VM's id; NULL */
        json_t *volumes;    /* paths written in full */
        json_t *incomplete; /* paths left incomplete */
        uint64_t bytes_total, bytes_written;
        int64_t started, ended;
} vb_restore_item;

void vb_restore_item_clear(vb_restore_item *it);
void vb_restore_items_free(vb_restore_item *v, size_t n);
json_t *vb_restore_item_to_json(const vb_restore_item *it);

/* A new restore, waiting, with its items (n_items of them; their idx,
 * pool_id, restore_point, vm_name, disk, target and host_id used), in one
 * transaction. A NULL or empty name becomes "restore ID". */
int vb_catalog_restore_add(vb_catalog *c, const vb_restore *r, const vb_restore_item *items, size_t n_items,
                           int64_t *ret_id);
int vb_catalog_restore_get(vb_catalog *c, int64_t id, vb_restore *ret);
/* Newest first; statuses: bits 1u << vb_run_status, 0: any; limit 0: all. */
int vb_catalog_restore_list(vb_catalog *c, unsigned statuses, unsigned limit, vb_restore **ret, size_t *ret_n);
/* Waiting to running (start time set); -EALREADY when running, -ESTALE when ended. */
int vb_catalog_restore_start(vb_catalog *c, int64_t id);
/* Waiting or running to status (not waiting or running), with the end
 * time; -EALREADY when it ended. Its items are left as they are. */
int vb_catalog_restore_finish(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message);
/* By idx. */
int vb_catalog_restore_item_list(vb_catalog *c, int64_t restore_id, vb_restore_item **ret, size_t *ret_n);
/* Waiting to running, with the target host now known (NULL keeps it);
 * -EALREADY when it is not waiting. */
int vb_catalog_restore_item_begin(vb_catalog *c, int64_t id, const char *host_id);
/* Records the volumes as they are made (before they are written), so that
 * a crash leaves them named as incomplete. -EINVAL unless it is running. */
int vb_catalog_restore_item_volumes(vb_catalog *c, int64_t id, const json_t *incomplete);
/* Ends it (waiting or running; else -EALREADY): status succeeded, failed
 * or skipped, with its result (its volumes, incomplete, target_vm_id,
 * bytes_total, bytes_written, error_code, message; NULL arrays are stored
 * as []: the result replaces the volumes recorded while it ran). */
int vb_catalog_restore_item_finish(vb_catalog *c, int64_t id, const vb_restore_item *res);
/* Restores left running (a dead daemon), oldest first. */
int vb_catalog_unfinished_restores(vb_catalog *c, vb_restore **ret, size_t *ret_n);

/* ---- restore points (what the pools hold; rebuilt from their manifests) ---- */

typedef struct vb_restore_point {
        int64_t pool_id;
        char *pool; /* the pool's name (filled when read) */
        char *id;
        int64_t platform_id; /* the catalog's platform; 0 when not known */
        char *platform;      /* as the manifest says (a driver's name, "local") */
        char *vm_id, *vm_uuid, *vm_name, *title, *host_id;
        dd_backup_type type;
        char *parent, *checkpoint, *consistency, *job, *run;
        int64_t time_start, time_end;
        unsigned disks;
        uint64_t size;       /* the disks' virtual sizes */
        uint64_t data_bytes; /* non-zero data held */
        uint64_t new_bytes;  /* stored new by this backup */
} vb_restore_point;

void vb_restore_point_clear(vb_restore_point *rp);
void vb_restore_points_free(vb_restore_point *v, size_t n);
json_t *vb_restore_point_to_json(const vb_restore_point *rp);

typedef struct vb_rp_filter {
        int64_t pool_id;     /* 0: any */
        int64_t platform_id; /* 0: any */
        const char *vm_id;   /* NULL: any */
        const char *vm_name; /* NULL: any */
} vb_rp_filter;

/* Records (or replaces) the restore point of manifest m in pool_id.
 * platform_id 0: found as rescan does. */
int vb_catalog_restore_point_add(vb_catalog *c, int64_t pool_id, int64_t platform_id, const dd_manifest *m);
/* pool_id 0: in any pool (the first by pool id). */
int vb_catalog_restore_point_get(vb_catalog *c, int64_t pool_id, const char *id, vb_restore_point *ret);
int vb_catalog_restore_point_remove(vb_catalog *c, int64_t pool_id, const char *id);
/* Oldest first; f may be NULL. */
int vb_catalog_restore_point_list(vb_catalog *c, const vb_rp_filter *f, vb_restore_point **ret, size_t *ret_n);
/* Replaces the restore points of the pool named pool_name with those of p's
 * manifests (sp_pool_list, read before the transaction), in one
 * transaction. A manifest's platform is the one of the run VM that made it
 * (its run and VM id), else the platform named like its "platform", else
 * the only platform of that type, else unknown. Damaged manifests are
 * logged and skipped. Returns the number of restore points. */
int vb_catalog_rescan_pool(vb_catalog *c, const char *pool_name, sp_pool *p);

#endif
