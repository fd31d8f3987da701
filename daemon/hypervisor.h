/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hypervisor.h -- the platform driver interface (design §3): what the
 * runner and the restore code need from a virtualisation platform, whether
 * H3C CAS (cas/, the CVM REST API) or plain libvirt/KVM (libvirt/).
 *
 * DESIGN: a driver is a table of functions on one connected platform
 * (vb_hv). Every operation is asynchronous on the daemon's libuv loop: it
 * starts the work (REST calls through libcurl's multi interface, libvirt
 * calls on the worker pool) and calls its callback once, on the loop,
 * never from inside the call that started it. Callbacks get r = 0 or a
 * stable error code (daemon/error.h, positive) with a one-line message
 * that names the platform, the VM and the step ("CAS 10.0.0.1: snapshot of
 * vm web1 (id 12): task failed: <failMsg>"). Optional operations are NULL.
 *
 * A driver never moves disk data itself: disk_source() answers a URL the
 * transport opens (transport/disk.h: cvd:// through the host's disk
 * service, nbd:// for a libvirt pull-mode backup), with the checkpoint
 * names the backup reads since and leaves behind.
 */
#ifndef VB_HYPERVISOR_H
#define VB_HYPERVISOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/error.h"

typedef struct vb_hv vb_hv;

typedef enum vb_vm_state {
        VB_VM_UNKNOWN,
        VB_VM_RUNNING,
        VB_VM_SHUT_OFF,
        VB_VM_PAUSED,
} vb_vm_state;

typedef enum vb_snapshot_type {
        VB_SNAPSHOT_ADAPTIVE, /* the driver picks: external when the VM's disks allow it, else internal */
        VB_SNAPSHOT_INTERNAL,
        VB_SNAPSHOT_EXTERNAL,
} vb_snapshot_type;

typedef enum vb_power_op {
        VB_POWER_START,
        VB_POWER_SHUTDOWN, /* safe (ACPI) shutdown */
        VB_POWER_OFF,      /* forced */
} vb_power_op;

typedef struct vb_hv_disk {
        char *device;  /* vda, hdb... */
        char *path;    /* the image on the host */
        char *format;  /* qcow2, raw */
        char *bus;     /* virtio, ide, scsi... */
        char *pool;    /* the storage pool holding it, when known */
        uint64_t size; /* virtual size, bytes */
} vb_hv_disk;

typedef struct vb_hv_nic {
        char *mac, *vswitch, *profile, *model;
} vb_hv_nic;

typedef struct vb_hv_vm {
        char *id, *uuid;
        char *name;  /* the platform's unique name (libvirt domain name) */
        char *title; /* what users see; may be Chinese; may equal name */
        char *host_id, *cluster_id, *pool_id;
        vb_vm_state state;
        unsigned cpu_sockets, cpu_cores;
        uint64_t memory_mb;
        vb_hv_disk *disks;
        size_t n_disks;
        vb_hv_nic *nics;
        size_t n_nics;
        json_t *config; /* the captured configuration a restore recreates the VM from */
} vb_hv_vm;

typedef struct vb_hv_host {
        char *id, *name, *cluster_id, *pool_id;
        /* Addresses by network: management, storage, backup (NULL when absent). */
        char *addr_management, *addr_storage, *addr_backup;
        bool up;
} vb_hv_host;

typedef struct vb_hv_group { /* a host pool or a cluster */
        char *id, *name, *parent_id;
} vb_hv_group;

typedef struct vb_hv_inventory {
        vb_hv_group *pools, *clusters;
        size_t n_pools, n_clusters;
        vb_hv_host *hosts;
        size_t n_hosts;
        vb_hv_vm *vms;
        size_t n_vms;
} vb_hv_inventory;

typedef struct vb_hv_snapshot {
        char *name;
        vb_snapshot_type type; /* internal or external as taken */
        bool quiesced;         /* the guest agent froze the file systems: application-consistent */
        char *note;            /* why it is only crash-consistent, or NULL */
} vb_hv_snapshot;

/* The space of the storage a VM's disks live on: the pool with the least
 * free space when they are spread over several. */
typedef struct vb_hv_space {
        uint64_t free, total; /* bytes */
        const char *pool;     /* its name */
} vb_hv_space;

/* Where and how to read (or write) one disk. */
typedef struct vb_hv_disk_source {
        char *url;        /* cvd://HOST:PORT/VM/PATH or nbd://... (transport/disk.h) */
        char *since;      /* the checkpoint changes are read since; NULL: full */
        char *checkpoint; /* the checkpoint this backup leaves for the next one */
        char *note;       /* why an incremental became full (CBT invalid, disk replaced...), or NULL */
} vb_hv_disk_source;

typedef struct vb_hv_opts {
        const char *name;    /* the platform's name in vbak */
        const char *address; /* CAS: http[s]://CVM:PORT; libvirt: a URI */
        const char *user, *password;
        bool insecure;           /* do not verify TLS certificates */
        const char *network;     /* preferred host network: adaptive, backup, storage, management */
        uint64_t timeout_ms;     /* per request; tasks have their own timeout */
        bool xml;                /* CAS: talk XML instead of JSON */
        unsigned cvd_port;       /* the hosts' disk service port; 0: 8192 */
        const char *runtime_dir; /* libvirt: where a local pull-mode backup's NBD socket goes; NULL: /run/vbak */
} vb_hv_opts;

typedef void (*vb_hv_done_fn)(void *userdata, vb_error r, const char *message);
typedef void (*vb_hv_connect_fn)(void *userdata, vb_error r, const char *message, vb_hv *hv);
typedef void (*vb_hv_inventory_fn)(void *userdata, vb_error r, const char *message, const vb_hv_inventory *inv);
typedef void (*vb_hv_vm_fn)(void *userdata, vb_error r, const char *message, const vb_hv_vm *vm);
typedef void (*vb_hv_space_fn)(void *userdata, vb_error r, const char *message, const vb_hv_space *space);
/* valid: the platform vouches for the VM's changed-block tracking since
 * the last backup; why says what broke it otherwise. */
typedef void (*vb_hv_cbt_fn)(void *userdata, vb_error r, const char *message, bool valid, const char *why);
typedef void (*vb_hv_snapshot_fn)(void *userdata, vb_error r, const char *message, const vb_hv_snapshot *s);
typedef void (*vb_hv_source_fn)(void *userdata, vb_error r, const char *message, const vb_hv_disk_source *src);
typedef void (*vb_hv_id_fn)(void *userdata, vb_error r, const char *message, const char *id);

/* How a new volume's space is allocated (product §6). */
typedef enum vb_prealloc {
        VB_PREALLOC_DEFAULT, /* the platform's default (thin) */
        VB_PREALLOC_THIN,    /* nothing allocated up front */
        VB_PREALLOC_LAZY,    /* lazy-zeroed: allocated, zeroed on first use */
        VB_PREALLOC_EAGER,   /* eager-zeroed: allocated and zeroed now */
} vb_prealloc;

/* A volume of a host's storage pool. */
typedef struct vb_hv_volume {
        const char *host_id;
        const char *pool;   /* the storage pool's name */
        const char *subdir; /* a sub-directory of the pool, or NULL */
        const char *name;   /* the file name */
        const char *path;   /* volume_create: instead of pool, subdir and name, the absolute path
                             * wanted (a disk put back where it was); volume_stat: its path */
        const char *format; /* qcow2 or raw */
        uint64_t size;      /* virtual size, bytes */
        vb_prealloc prealloc;
} vb_hv_volume;

/* v is NULL (and r VB_OK) when there is no such volume. */
typedef void (*vb_hv_volume_fn)(void *userdata, vb_error r, const char *message, const vb_hv_volume *v);

/* What a restore changes of a captured configuration (config_new). Zero
 * and NULL members keep what was captured. */
typedef struct vb_hv_nic_setting {
        const char *vswitch; /* the virtual switch's name */
        const char *profile; /* the network policy template's id or name; NULL: the switch's default */
} vb_hv_nic_setting;

typedef struct vb_hv_vm_settings {
        const char *name;    /* the VM's name, also its title when title is NULL */
        const char *title;   /* NULL: name (a new VM), or the captured one with keep_identity */
        const char *host_id; /* required */
        bool keep_identity;  /* original path: keep the captured MAC addresses */
        unsigned cpu_sockets, cpu_cores;
        const char *cpu_mode; /* compatible, host-match, passthrough */
        uint64_t memory_mb;
        const vb_hv_nic_setting *nics; /* replace the captured NICs when nics_set */
        size_t n_nics;
        bool nics_set;
        const char *const *devices; /* the disks the VM keeps (others are left out); n_devices 0: all */
        size_t n_devices;
} vb_hv_vm_settings;

typedef struct vb_hv_driver {
        const char *name; /* "cas", "libvirt" */

        int (*connect)(uv_loop_t *loop, const vb_hv_opts *o, vb_hv_connect_fn done, void *userdata);
        void (*disconnect)(vb_hv *hv);

        /* The whole tree: host pools, clusters, hosts, VMs with disks and NICs. */
        int (*inventory)(vb_hv *hv, vb_hv_inventory_fn done, void *userdata);
        /* One VM with its captured configuration (by id, uuid or name). */
        int (*vm_get)(vb_hv *hv, const char *vm, vb_hv_vm_fn done, void *userdata);
        /* Free space of the storage the VM's disks (and their snapshots) live on. */
        int (*storage_free)(vb_hv *hv, const vb_hv_vm *vm, vb_hv_space_fn done, void *userdata);
        /* Whether an incremental may trust the VM's changed-block tracking. */
        int (*cbt_check)(vb_hv *hv, const vb_hv_vm *vm, vb_hv_cbt_fn done, void *userdata);

        /* name: the snapshot's name, chosen (vb_hv_snapshot_name) and
         * recorded by the caller first so that a crash never leaves a
         * snapshot nobody knows of; NULL: the driver picks one. On failure
         * s is NULL, or names a snapshot that may still appear (its task
         * outlived the timeout): the caller deletes it, and snapshot_delete
         * waits for that task first. since: the checkpoint the backup will
         * read changes since (the parent's), or NULL; a driver whose
         * snapshot is also the backup's export (libvirt's pull-mode job)
         * exports those changes, and makes the checkpoint name with it. */
        int (*snapshot_create)(vb_hv *hv, const vb_hv_vm *vm, vb_snapshot_type type, bool quiesce, const char *name,
                               const char *since, vb_hv_snapshot_fn done, void *userdata);
        int (*snapshot_delete)(vb_hv *hv, const vb_hv_vm *vm, const char *name, vb_hv_done_fn done, void *userdata);

        /* How to read one disk of a snapshot, incrementally since the
         * checkpoint recorded with the parent restore point when CBT is
         * still valid for it (since may be NULL: full). */
        int (*disk_source)(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, const vb_hv_snapshot *s,
                           const char *since, vb_hv_source_fn done, void *userdata);
        /* How to write one disk (restores). */
        int (*disk_target)(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_source_fn done, void *userdata);
        /* CBT of the VM is no longer to be trusted (optional). */
        int (*checkpoint_invalidate)(vb_hv *hv, const vb_hv_vm *vm, vb_hv_done_fn done, void *userdata);
        /* After the backup, its snapshot deleted and its disks closed
         * (optional): keep (NULL: none) is the VM's newest checkpoint, the
         * one a committed restore point recorded; drop (NULL: none) is no
         * longer needed: the parent's once the restore point is committed,
         * or the one the snapshot made when the backup failed. For drivers
         * that keep checkpoints of their own beside the disks' bitmaps. */
        int (*checkpoint_commit)(vb_hv *hv, const vb_hv_vm *vm, const char *keep, const char *drop, vb_hv_done_fn done,
                                 void *userdata);

        int (*power)(vb_hv *hv, const vb_hv_vm *vm, vb_power_op op, vb_hv_done_fn done, void *userdata);

        /* Restore side. The captured configuration is the driver's own
         * shape: config_new makes a VM's from it with the settings s (ids
         * and uuid dropped; MAC addresses dropped unless s->keep_identity;
         * only the disks of s->devices), and config_disk points one of its
         * disks (by device name) at a new path and pool (either may be
         * NULL: unchanged), first filling *was (when not NULL) with the
         * disk as it was: path, format, bus, pool (NULL when not known),
         * borrowed from config; -ENOENT: no such disk. NULL from
         * config_new: out of memory, or a setting the driver cannot apply
         * (errno EINVAL). */
        json_t *(*config_new)(json_t *captured, const vb_hv_vm_settings *s);
        int (*config_disk)(json_t *config, const char *device, const char *path, const char *pool, vb_hv_disk *was);
        int (*vm_create)(vb_hv *hv, json_t *config, vb_hv_id_fn done, void *userdata);
        /* A new volume; the id answered is its path. Fails when the file
         * exists. */
        int (*volume_create)(vb_hv *hv, const vb_hv_volume *v, vb_hv_id_fn done, void *userdata);
        /* Whether a volume exists, with its path, format and size: the one
         * at v->path (in v->pool when known), or v->name in v->pool (and
         * v->subdir), on v->host_id. */
        int (*volume_stat)(vb_hv *hv, const vb_hv_volume *v, vb_hv_volume_fn done, void *userdata);
        int (*disk_attach)(vb_hv *hv, const vb_hv_vm *vm, const vb_hv_disk *disk, vb_hv_done_fn done, void *userdata);
        int (*vm_delete)(vb_hv *hv, const vb_hv_vm *vm, bool with_disks, vb_hv_done_fn done, void *userdata);
} vb_hv_driver;

/* The driver of a platform type ("cas", "libvirt"), or NULL. */
const vb_hv_driver *vb_hv_driver_find(const char *type);

/* Deep copies and cleanup of what drivers hand to callbacks (which live
 * only during the callback). */
int vb_hv_vm_copy(const vb_hv_vm *src, vb_hv_vm *dst);
void vb_hv_vm_clear(vb_hv_vm *vm);
int vb_hv_snapshot_copy(const vb_hv_snapshot *src, vb_hv_snapshot *dst);
void vb_hv_snapshot_clear(vb_hv_snapshot *s);
int vb_hv_disk_source_copy(const vb_hv_disk_source *src, vb_hv_disk_source *dst);
void vb_hv_disk_source_clear(vb_hv_disk_source *s);
/* A new snapshot name: "vbak-YYYYMMDD-HHMMSS-XXXX" (UTC, 4 random hex
 * digits); an external snapshot's name is also the checkpoint it leaves. */
int vb_hv_snapshot_name(char **ret);
const char *vb_snapshot_type_to_string(vb_snapshot_type t);
/* -1 when s names no type. */
int vb_snapshot_type_from_string(const char *s);
const char *vb_vm_state_to_string(vb_vm_state s);
const char *vb_prealloc_to_string(vb_prealloc p);
/* thin, lazy (lazy-zeroed), eager (eager-zeroed); -1 for anything else. */
int vb_prealloc_from_string(const char *s);
/* The JSON the command line and the API show (camelCase keys, sizes in bytes). */
json_t *vb_hv_vm_to_json(const vb_hv_vm *vm, bool with_config);
json_t *vb_hv_inventory_to_json(const vb_hv_inventory *inv);

#endif
