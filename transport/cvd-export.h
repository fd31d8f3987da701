/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-export.h -- what vbak-cvd does to real images: NBD exports of a VM
 * disk (qemu-nbd for a stopped VM, QMP nbd-server-start + block-export-add
 * on the VM's own QEMU for a running one) and the dirty bitmaps that are
 * vbak's checkpoints (qemu-img bitmap offline, QMP block-dirty-bitmap-*
 * online).
 *
 * An internal snapshot of a qcow2 image is served by qemu-nbd whether the VM
 * runs or not (with force-share when it runs: the snapshot does not change
 * while the VM writes, see cvd-export.c).
 *
 * DESIGN: every function here blocks (it runs qemu-img, waits for qemu-nbd
 * to listen, talks QMP) and is meant to run on a worker thread of the
 * server's loop; all of them are thread-safe. Nothing here knows the
 * control protocol: cvd-server.c maps its messages onto these calls.
 *
 * A VM is "running" when <qmp_dir>/<vm>.qmp is a QMP socket that answers;
 * vbak-cvd connects to it per operation (a QMP chardev serves one client at
 * a time). Every disk path is resolved (realpath) and must lie inside one of
 * the configured image folders, whatever the VM state.
 */
#ifndef TP_CVD_EXPORT_H
#define TP_CVD_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tp_export_cfg {
        char **image_dirs; /* absolute, resolved folders whose files may be served */
        size_t n_image_dirs;
        const char *qmp_dir;             /* where running VMs' QMP sockets are: <qmp_dir>/<vm>.qmp; may be NULL */
        const char *data_host;           /* address exports listen on and are announced with (e.g. 127.0.0.1) */
        uint16_t port_min, port_max;     /* data ports, inclusive; each export gets its own free port */
        const char *qemu_nbd, *qemu_img; /* program paths; NULL: found on PATH */
} tp_export_cfg;

typedef struct tp_export_req {
        const char *vm;         /* VM name: letters, digits, '.', '_', '-' */
        const char *path;       /* the disk image (qcow2 or raw), absolute */
        const char *snapshot;   /* qcow2 only: an internal snapshot to export (read-only); NULL for the live image */
        bool write;             /* read-write (restores; stopped VMs only) */
        const char *since;      /* a checkpoint (bitmap) whose changes are exported as qemu:dirty-bitmap:<since> */
        const char *checkpoint; /* a checkpoint to ensure exists from now on (created if missing), or NULL */
} tp_export_req;

/* One live export. Fields are read-only for the caller. */
typedef struct tp_export {
        char *host;            /* cfg->data_host */
        uint16_t port;         /* from the range */
        char *name;            /* the NBD export name */
        uint64_t size;         /* virtual size, bytes */
        char *format;          /* "qcow2" or "raw" */
        uint32_t cluster_size; /* qcow2 cluster size; 0 for raw */
        uint32_t granularity;  /* the since bitmap's granularity in bytes; 0 without since */
        char **contexts;       /* meta contexts offered: "base:allocation", "qemu:dirty-bitmap:<since>" */
        size_t n_contexts;
        bool running; /* the VM runs: served by its QEMU (QMP), or by qemu-nbd for an internal snapshot */
        void *priv;   /* the backend's own state (pid, QMP export id, temp bitmap) */
} tp_export;

typedef struct tp_bitmap_info {
        char *name;
        uint32_t granularity;
        bool persistent, enabled;
        uint64_t dirty_bytes; /* running VMs only (QMP count); 0 when unknown */
} tp_bitmap_info;

/* Results: 0, or a negative errno with *err set to a one-line message the
 * server sends back (caller frees). Errno conventions, which the server
 * maps onto the protocol's error codes:
 *   -EACCES  path outside the image folders (or not a regular file)
 *   -ENOENT  no such image, snapshot or bitmap
 *   -EEXIST  bitmap already exists (bitmap create)
 *   -EBUSY   no free port in the range; a running VM asked for write mode
 *   -EINVAL  a bad argument (bad name; a snapshot with since, read-write, or
 *            with a checkpoint when the VM runs)
 *   -EIO     a QEMU tool failed (its message is in *err) */
bool tp_export_path_allowed(const tp_export_cfg *cfg, const char *path, char **resolved);
int tp_export_open(const tp_export_cfg *cfg, const tp_export_req *req, tp_export **ret, char **err);
/* Stops the export (kills qemu-nbd, or block-export-del + removes the temp
 * bitmap copy + nbd-server-stop when it was the VM's last export) and frees it. */
int tp_export_close(const tp_export_cfg *cfg, tp_export *e, char **err);

int tp_bitmap_create(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name, char **err);
int tp_bitmap_remove(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name, char **err);
int tp_bitmap_list(const tp_export_cfg *cfg, const char *vm, const char *path, tp_bitmap_info **ret, size_t *n,
                   char **err);
void tp_bitmap_info_free(tp_bitmap_info *v, size_t n);

#endif
