/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmbackup.h -- one VM backed up end to end through a platform driver
 * (daemon/hypervisor.h): the VM's captured configuration, the free-space
 * check, CBT validity, the snapshot, every disk through the transport into
 * a pool, the restore point committed, the checkpoints moved on, and the
 * snapshot deleted whatever happened.
 *
 * DESIGN: an asynchronous state machine on the caller's libuv loop; the
 * driver's REST calls and the transport run on the loop, hashing and
 * compression on its worker pool (storagepool/pipeline.h). The steps:
 *
 *   vm_get -> storage_free (check) -> parent and cbt_check -> [shutdown]
 *   -> snapshot_create -> for each disk: disk_source, tp_disk_open,
 *   tp_disk_plan -> begin -> the disks' pipelines (parallel_disks at
 *   once) -> commit
 *   -> tp_disk_commit (old checkpoints go) -> close -> snapshot_delete
 *   -> [checkpoint_commit] -> [start]
 *
 * Every disk is opened and planned before anything is written, so the
 * restore point is an incremental only when every disk can be one (a disk
 * read in full inside an incremental would inherit stale chunks from the
 * parent where it skips). After a failure the snapshot is deleted and a VM
 * shut down for the backup is started again; the pool keeps nothing (an
 * aborted restore point is never visible). The result says why an
 * incremental became a full (notes), whether the snapshot was quiesced, and
 * any cleanup that failed.
 */
#ifndef VB_VMBACKUP_H
#define VB_VMBACKUP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/catalog.h"
#include "daemon/hypervisor.h"
#include "daemon/jobopts.h"
#include "dedup/manifest.h"
#include "storagepool/sp.h"
#include "transport/disk.h"

/* The product's defaults for the free-space check (product.md §2). */
#define VB_MIN_FREE_PERCENT_DEFAULT 10u
#define VB_MIN_FREE_BYTES_DEFAULT (500ull << 30)
#define VB_VMBACKUP_NOTES_MAX 16

typedef struct vb_vmbackup vb_vmbackup;

typedef struct vb_vmbackup_opts {
        const vb_hv_driver *drv;
        vb_hv *hv;
        sp_pool *pool;
        const char *vm; /* name, id or uuid */
        bool incremental;
        vb_job_non_cbt non_cbt; /* an incremental whose CBT is not valid: full (default), fail or skip */
        vb_snapshot_type snapshot;
        bool quiesce;                 /* ask the guest agent to freeze the file systems */
        bool shutdown;                /* safe shutdown for the backup, started again after */
        unsigned min_free_percent;    /* of the VM's storage; 0: not checked */
        uint64_t min_free_bytes;      /* 0: not checked */
        const tp_disk_opts *transfer; /* template: transport options and disk service credentials */
        const char *platform;         /* the platform's name in vbak, for the manifest; NULL: the driver's */
        const char *job, *run;        /* recorded in the manifest; may be NULL */
        unsigned parallel_disks;      /* disks read at once; 0: 1 */
        /* Before each step that leaves something to undo: the snapshot
         * (with its name, before it is asked for), reading (with the
         * restore point's folder, once it exists), committing, cleaning
         * (the restore point exists, the snapshot goes). The backup waits
         * for vb_vmbackup_persisted(). NULL: nothing is recorded. */
        void (*persist)(void *userdata, vb_vmbackup *b, vb_backup_step step, const char *snapshot,
                        const char *temp_dir);
        /* Progress of the data phase: bytes read of the bytes to read, all disks. */
        sp_progress_fn progress;
        /* Each step as it starts ("snapshot", "disk vda", ...). */
        void (*step)(void *userdata, const char *what);
        void *userdata;
} vb_vmbackup_opts;

typedef struct vb_vmbackup_disk {
        char *name;          /* vda */
        uint64_t size;       /* virtual size */
        uint64_t bytes_plan; /* what the plan asked to read */
        uint64_t bytes_read; /* read from the source */
        uint64_t bytes_new;  /* stored new */
        uint64_t bytes_stored;
        tp_nbd_stats transport;
} vb_vmbackup_disk;

typedef struct vb_vmbackup_result {
        vb_error r; /* VB_OK: *m is the committed restore point */
        char message[1024];
        dd_manifest *m;
        vb_hv_vm vm;      /* the VM as captured (id, name, title...) */
        char *snapshot;   /* the snapshot's name, once taken */
        bool incremental; /* what the restore point is */
        bool skipped;     /* r is VB_OK but nothing was backed up (the job's non-CBT rule) */
        bool quiesced;
        const char *notes[VB_VMBACKUP_NOTES_MAX + 1]; /* NULL-terminated */
        vb_vmbackup_disk *disks;
        size_t n_disks;
        char *cleanup_error; /* the snapshot could not be deleted, or the VM started again */
        uint64_t seconds_ns;
        unsigned max_parallel_disks; /* the most disks that were read at once */
} vb_vmbackup_result;

typedef void (*vb_vmbackup_done_fn)(void *userdata, const vb_vmbackup_result *res);

/* Starts the backup. 0: done is called once, later, on the loop (the result
 * lives during the call only); -errno: it is not. */
int vb_vmbackup_start(uv_loop_t *loop, const vb_vmbackup_opts *o, vb_vmbackup_done_fn done, void *userdata);

/* The step persist() announced is recorded (r = 0) and the backup goes on,
 * or it could not be (-errno) and the backup fails. */
void vb_vmbackup_persisted(vb_vmbackup *b, int r);

#endif
