/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * domxml.h -- the libvirt XML documents vbak reads and writes: a domain's
 * XML (inventory, the configuration captured for restores, a restored
 * domain), the backup and checkpoint XML of pull-mode backups, storage
 * pools and volumes, and a disk to attach.
 *
 * DESIGN: pure functions on strings (libxml2), no connection: the driver
 * (libvirt/driver.c) asks libvirt for the documents and hands them here.
 * Every string answered is the caller's to free.
 *
 * The captured configuration of a libvirt VM, kept in each restore point's
 * manifest, is a JSON object:
 *
 *   {"xml": "<domain ...>...</domain>",        the inactive domain XML
 *    "disks": [{"device": "vda", "path": "/var/lib/libvirt/images/a.qcow2",
 *               "format": "qcow2", "bus": "virtio", "pool": "default"}]}
 *
 * "disks" mirrors the XML's <disk device='disk'> elements (path and pool
 * may be null) so that lv_config_disk() can answer what a disk was with
 * strings that live as long as the configuration.
 */
#ifndef LV_DOMXML_H
#define LV_DOMXML_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "daemon/hypervisor.h"

/* Fills *vm (cleared first) from a domain's XML: id and uuid (<uuid>), name,
 * title (<title>, else the name), cpu_sockets and cpu_cores (<cpu><topology>,
 * else <vcpu> sockets of 1 core), memory_mb (<memory>, any unit), the disks
 * (<disk device='disk'> only: device = <target dev>, path = <source file> or
 * <source dev>, format = <driver type> or "raw", bus = <target bus>; a
 * type='volume' disk has pool = <source pool> and path NULL; network disks
 * are left out) and the NICs (mac, vswitch = <source network> or <source
 * bridge>, profile = <source portgroup>, model = <model type>). state,
 * host_id, sizes and config are left for the caller. 0, or -EINVAL with
 * *err (caller frees) for XML that is not a domain. */
int lv_domain_parse(const char *xml, vb_hv_vm *vm, char **err);

/* The captured configuration of a domain: its XML and the disks of vm
 * (parsed from it, with pools filled in by the caller). NULL: no memory. */
json_t *lv_config_capture(const char *xml, const vb_hv_vm *vm);

/* hypervisor.h's config_new and config_disk on a captured configuration. */
json_t *lv_config_new(json_t *captured, const vb_hv_vm_settings *s);
int lv_config_disk(json_t *config, const char *device, const char *path, const char *pool, vb_hv_disk *was);

/* The domain XML of a configuration (borrowed), or NULL. */
const char *lv_config_xml(const json_t *config);

/* One disk of a pull-mode backup. */
typedef struct lv_backup_disk {
        const char *device;  /* vda */
        const char *since;   /* an incremental: the checkpoint changes are exported since; NULL: full */
        const char *scratch; /* where libvirt keeps the point-in-time copy of what the guest overwrites */
        bool skip;           /* backup='no' */
} lv_backup_disk;

/* <domainbackup mode='pull'>: the NBD server on a unix socket (socket not
 * NULL) or TCP (host, port); each disk backup='yes' type='file' with
 * backupmode full or incremental, and its scratch file. NULL: no memory. */
char *lv_backup_xml(const char *socket, const char *host, unsigned port, const lv_backup_disk *disks, size_t n);

/* <domaincheckpoint> named name whose disks have a bitmap (the devices in
 * bitmaps) or none (checkpoint='no', the devices in none). With parent
 * (may be NULL) and created (!= 0), the XML to redefine a checkpoint whose
 * bitmaps already exist (each disk's bitmap='name'), otherwise the XML to
 * create one. NULL: no memory. */
char *lv_checkpoint_xml(const char *name, const char *const *bitmaps, size_t n_bitmaps, const char *const *none,
                        size_t n_none, const char *parent, time_t created);

/* A running pull-mode backup as virDomainBackupGetXMLDesc describes it. */
typedef struct lv_backup_export {
        char *device;      /* vda */
        char *export_name; /* exportname: the NBD export */
        char *bitmap;      /* exportbitmap: the dirty bitmap exported (incremental), or NULL */
        char *scratch;     /* the scratch file, or NULL */
} lv_backup_export;

typedef struct lv_backup_info {
        bool pull;
        char *socket;            /* unix transport, or NULL */
        char *host;              /* tcp transport, or NULL */
        unsigned port;           /* tcp */
        lv_backup_export *disks; /* the disks with backup='yes' */
        size_t n_disks;
} lv_backup_info;

int lv_backup_parse(const char *xml, lv_backup_info *info, char **err);
void lv_backup_info_clear(lv_backup_info *info);
const lv_backup_export *lv_backup_find(const lv_backup_info *info, const char *device);

/* <volume> for virStorageVolCreateXML: name, <capacity> in bytes, the
 * format (qcow2 or raw) and <allocation>: 0 for thin and lazy (lazy is
 * qcow2 metadata preallocation, a flag of the call), the capacity for
 * eager. NULL: no memory. */
char *lv_volume_xml(const char *name, const char *format, uint64_t capacity, vb_prealloc prealloc);

/* A volume's XML (virStorageVolGetXMLDesc): its path, format (<target>
 * <format type>, "raw" when absent) and capacity. */
int lv_volume_parse(const char *xml, char **path, char **format, uint64_t *capacity, char **err);

/* A storage pool's XML: its type (dir, fs, logical...) and <target><path>. */
int lv_pool_parse(const char *xml, char **type, char **target, char **err);

/* <disk type='file' device='disk'> to attach: driver type = format (raw
 * when NULL), source file = path, target dev and bus (virtio when NULL).
 * NULL: no memory, or disk->path or disk->device missing. */
char *lv_disk_xml(const vb_hv_disk *disk);

#endif
