/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmrestore.h -- one restore point put back on a platform through its
 * driver (daemon/hypervisor.h): a whole VM (product §6, new path or
 * original path, all disks or some) or one disk (original path, or a new
 * disk on a chosen VM).
 *
 * DESIGN
 * Two calls share one resolution step: vb_vmrestore_plan() looks at the
 * restore point and the platform (does a VM of the target name exist, is
 * it running, does each disk's file exist, which volume names are free)
 * and answers what the restore would do, as JSON, without changing
 * anything; vb_vmrestore_start() resolves the same way, then acts. What
 * the plan says is what the restore does, so the confirmation a user gives
 * is for the real thing.
 *
 * VM restore, new path: a VM of the new name that exists is refused, or,
 * with overwrite, shut down (safely, within the shutdown timeout) and
 * deleted, its volumes kept. Each chosen disk gets a new volume (the pool,
 * sub-directory, name and preallocation asked for; a free name derived
 * from NAME-DEVICE otherwise) or is written into an existing volume (raw
 * disks on block pools). The VM is defined from the captured configuration
 * with the new settings only once every disk is written, so a failed
 * restore never leaves a VM that looks whole.
 *
 * VM restore, original path: the VM of the captured name, when it exists,
 * is shut down and its definition deleted (its files stay). Each chosen
 * disk is written back into its original file (re-created when it was
 * deleted), then the VM is defined again from the captured configuration
 * (its MAC addresses with keep_mac) on its host. Disks not chosen are not
 * part of the restored VM: their files, when they exist, are left as they
 * are (the plan says so).
 *
 * Disk restore, original path: the VM must exist. The disk it still has
 * is overwritten in place; a disk it lost is re-created (or its file, if
 * it is still there, written) and attached. A running VM is shut down
 * safely first; when that takes longer than the shutdown timeout the
 * restore fails before anything is written. New path: a new volume (or an
 * existing one) written, then attached to the target VM. With restart the
 * VM is started afterwards (and a running one shut down first).
 *
 * Data: every chunk is checked by its digest before it is written; zero
 * chunks become write-zeroes. A missing or damaged chunk stops the disk
 * with the restore point, the disk and the offset in the message; the
 * volumes written so far are listed in the result as incomplete, the VM
 * is neither defined (VM restore) nor started (disk restore).
 *
 * Everything runs on the caller's loop; done is called exactly once.
 */
#ifndef VB_VMRESTORE_H
#define VB_VMRESTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "daemon/hypervisor.h"
#include "storagepool/sp.h"
#include "transport/disk.h"

#define VB_RESTORE_SHUTDOWN_TIMEOUT_MS 10000
#define VB_RESTORE_PARALLEL_DISKS_MAX 5

typedef enum vb_restore_kind {
        VB_RESTORE_VM,   /* the whole machine */
        VB_RESTORE_DISK, /* one disk */
} vb_restore_kind;

/* Where one disk of the restore point goes (new path). Every member is
 * optional. */
typedef struct vb_restore_disk {
        const char *device;   /* the disk in the restore point (vda); NULL: every disk without its own entry */
        const char *pool;     /* the platform's storage pool; NULL: the disk's original pool */
        const char *subdir;   /* a sub-directory of the pool (vb_restore_name_ok) */
        const char *name;     /* the new volume's file name (vb_restore_name_ok); NULL: derived */
        const char *volume;   /* an existing volume's path to write into instead (raw disks on block pools) */
        vb_prealloc prealloc; /* of a new volume */
} vb_restore_disk;

typedef struct vb_vmrestore_opts {
        const vb_hv_driver *drv;
        vb_hv *hv; /* the target platform */
        sp_pool *pool;
        const char *restore_point; /* an id, or "latest" (of vm) */
        const char *vm;            /* with "latest": the VM's name */
        vb_restore_kind kind;
        bool original; /* original path; else new path */

        /* VM restore. */
        const char *name;            /* new path: the new VM's name; NULL: the original name with prefix and suffix */
        const char *prefix, *suffix; /* new path, without name */
        const char *host_id;         /* new path: the host; NULL: the original host */
        const char *const *devices;  /* the disks to restore; n_devices 0: all */
        size_t n_devices;
        const vb_restore_disk *disks; /* new path: where disks go (disk restore: its first entry) */
        size_t n_disks;
        const vb_hv_nic_setting *nics; /* new path: the NICs, when nics_set */
        size_t n_nics;
        bool nics_set;
        unsigned cpu_sockets, cpu_cores; /* new path; 0: as captured */
        const char *cpu_mode;            /* new path; NULL: as captured */
        uint64_t memory_mb;              /* new path; 0: as captured */
        bool overwrite;                  /* new path: replace a VM of the same name (its volumes stay) */
        bool keep_mac;                   /* original path: the captured MAC addresses */
        bool power_on;                   /* start the restored VM */
        unsigned parallel_disks;         /* disks written at once, 1-5; 0: 1 */

        /* Disk restore. */
        const char *disk;      /* the disk of the restore point */
        const char *target_vm; /* new path: the VM the new disk is attached to (name, id or uuid) */
        bool restart;          /* start the VM afterwards (shut down first when running) */

        unsigned shutdown_timeout_ms; /* 0: VB_RESTORE_SHUTDOWN_TIMEOUT_MS */
        const tp_disk_opts *transfer; /* write buffer, rate limits, reconnect window, auth */
        /* Bytes written of the disks' sizes. */
        sp_progress_fn progress;
        /* Each step, as a short line ("writing disk vda to ..."). */
        void (*step)(void *userdata, const char *what);
        /* Each volume's path, before the first byte is written to it: from
         * then on it is incomplete until the result lists it as written. */
        void (*volume)(void *userdata, const char *path);
        void *userdata;
} vb_vmrestore_opts;

typedef struct vb_vmrestore_result {
        vb_error r;
        char message[1024];
        const char *restore_point; /* its id */
        const char *vm_name;       /* the target VM's name, once resolved */
        char *vm_id;               /* the target VM's id (the new VM's once defined) */
        /* Volumes written or being written when it failed: the incomplete target. */
        char **incomplete;
        size_t n_incomplete;
        /* Volumes written in full. */
        char **volumes;
        size_t n_volumes;
        uint64_t bytes_total; /* the chosen disks' sizes */
        uint64_t bytes_written;
        uint64_t seconds_ns;
} vb_vmrestore_result;

typedef void (*vb_vmrestore_done_fn)(void *userdata, const vb_vmrestore_result *res);

/* The plan: {"kind", "path", "restore_point", "vm" (the source's name),
 * "target": {"name", "host", "exists", "id", "state"}, "disks": [{"device",
 * "size", "format", "action" (create, overwrite, write-volume), "pool",
 * "subdir", "path" (the file written; a new one's may be only its name),
 * "prealloc"}], "actions": ["shut down vm web1 (running)", "delete vm web1
 * (id 12), keeping its files", ..., "define vm web1", "start vm web1"],
 * "warnings": ["vdb is not restored: ..."], "overwrites": true when
 * something that exists is overwritten or deleted}. r: VB_OK, or why the
 * restore cannot be done (a VM of that name exists without overwrite: E14;
 * an unknown disk or bad setting: E2; the VM or host is gone: E3). */
typedef void (*vb_vmrestore_plan_fn)(void *userdata, vb_error r, const char *message, json_t *plan);

int vb_vmrestore_plan(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_plan_fn done, void *userdata);

/* -EINVAL for missing or bad options (checked before anything happens);
 * everything else comes through done. */
int vb_vmrestore_start(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_done_fn done, void *userdata);

/* A name for a VM, a volume file or a pool sub-directory (product §6):
 * letters, digits, '-', '_', '.', at most 64 (VM) or 128 bytes, not
 * starting with '-' or '.', not all digits. */
bool vb_restore_name_ok(const char *s);

#endif
