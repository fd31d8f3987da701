/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmrestore.h -- a restore point restored as a new VM through a platform
 * driver (daemon/hypervisor.h): one new volume per disk on the chosen host
 * and storage pool, every chunk written through the host's disk service,
 * then the VM defined from the captured configuration with the new name
 * and disk paths (and no MAC addresses, which stay with the original), and
 * started on request.
 *
 * DESIGN: an asynchronous state machine on the caller's loop, like
 * vmbackup.h: volume_create -> disk_target -> tp_disk_open (read-write)
 * -> the restore pipeline (every chunk checked by digest before it is
 * written; zero chunks become write-zeroes) -> close, for each disk in
 * turn; then vm_create and power. The VM is defined only once every disk
 * is written, so a failed restore never leaves a VM that looks whole;
 * volumes already made are named in the error (they are the incomplete
 * target).
 */
#ifndef VB_VMRESTORE_H
#define VB_VMRESTORE_H

#include <stdbool.h>
#include <uv.h>

#include "daemon/hypervisor.h"
#include "storagepool/sp.h"
#include "transport/disk.h"

typedef struct vb_vmrestore_opts {
        const vb_hv_driver *drv;
        vb_hv *hv;
        sp_pool *pool;
        const char *restore_point; /* an id, or "latest" (of vm) */
        const char *vm;            /* with "latest": the VM's name */
        const char *name;          /* the new VM's name (also its title) */
        const char *host_id;       /* NULL: the original host */
        const char *storage_pool;  /* NULL: each disk's original pool */
        bool power_on;
        const tp_disk_opts *transfer;
        sp_progress_fn progress; /* bytes written of the disks' sizes */
        void (*step)(void *userdata, const char *what);
        void *userdata;
} vb_vmrestore_opts;

typedef struct vb_vmrestore_result {
        vb_error r;
        char message[1024];
        const char *restore_point;
        char *vm_id;    /* the new VM */
        char **volumes; /* the new volumes' paths, one per disk written so far */
        size_t n_volumes;
        uint64_t bytes_written;
        uint64_t seconds_ns;
} vb_vmrestore_result;

typedef void (*vb_vmrestore_done_fn)(void *userdata, const vb_vmrestore_result *res);

int vb_vmrestore_start(uv_loop_t *loop, const vb_vmrestore_opts *o, vb_vmrestore_done_fn done, void *userdata);

#endif
