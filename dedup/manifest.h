/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manifest.h -- the manifest of a restore point (JSON, through jansson).
 *
 * Written last, when every chunk and index is stored: its presence makes the
 * restore point exist. It carries everything needed to rebuild the catalog
 * from the pool alone: the VM's identity and captured configuration, the
 * disks with their index names and checksums, type, parent, consistency,
 * checkpoint, job, run and times. The exact fields are in docs/formats.md.
 */
#ifndef DD_MANIFEST_H
#define DD_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dedup/digest.h"

#define DD_MANIFEST_FORMAT "vbak-manifest"
#define DD_MANIFEST_VERSION 1
#define DD_MANIFEST_NAME "manifest.json"
#define DD_MANIFEST_MAX_SIZE (16u << 20)

typedef enum dd_backup_type {
        DD_BACKUP_FULL,
        DD_BACKUP_INCREMENTAL,
        _DD_BACKUP_TYPE_MAX,
        _DD_BACKUP_TYPE_INVALID = -1,
} dd_backup_type;

const char *dd_backup_type_to_string(dd_backup_type t);
dd_backup_type dd_backup_type_from_string(const char *s);

typedef struct dd_manifest_disk {
        char *name;   /* file-name safe: letters, digits, '.', '_', '-' */
        char *device; /* e.g. vda; may be NULL */
        char *format; /* qcow2, raw; may be NULL */
        uint64_t size;
        uint32_t chunk_size;
        char *index; /* the per-disk file in the restore point's folder */
        dd_digest index_checksum;
        uint64_t bytes_read; /* read from the source */
        uint64_t bytes_new;  /* stored new (before compression) */
        uint64_t bytes_data; /* non-zero data the disk holds in this restore point */
} dd_manifest_disk;

typedef struct dd_manifest {
        char *id;
        dd_backup_type type;
        char *parent; /* NULL for a full backup */
        char *pool_type;
        struct {
                char *platform, *id, *uuid, *name, *title, *host_id;
        } vm;
        json_t *config;    /* captured VM configuration, opaque here; may be NULL */
        char *consistency; /* "crash" or "application" */
        char *checkpoint;
        char *job, *run;
        int64_t time_start, time_end; /* seconds since the epoch */
        dd_manifest_disk *disks;
        size_t n_disks;
} dd_manifest;

dd_manifest *dd_manifest_new(void);
dd_manifest *dd_manifest_free(dd_manifest *m);
static inline void dd_manifest_freep(dd_manifest **m)
{
        dd_manifest_free(*m);
}

/* Deep copy. */
int dd_manifest_copy(const dd_manifest *m, dd_manifest **ret);

/* Adds a disk (zeroed, name copied) and returns it through ret. */
int dd_manifest_add_disk(dd_manifest *m, const char *name, dd_manifest_disk **ret);
const dd_manifest_disk *dd_manifest_find_disk(const dd_manifest *m, const char *name);

/* Parses JSON text; -EBADMSG for anything malformed or missing,
 * -EPROTONOSUPPORT for an unknown format version. */
int dd_manifest_parse(const char *text, size_t len, dd_manifest **ret);

/* Formats as indented JSON text, owned by the caller. */
int dd_manifest_format(const dd_manifest *m, char **ret);

/* True for names usable as a file name in a pool: 1-64 of [A-Za-z0-9._-],
 * not starting with '.' or '-'. */
bool dd_name_is_safe(const char *s);

/* Disk names are safe names of at most DD_DISK_NAME_MAX characters, so that
 * the per-disk file names (name plus a suffix) are safe names too. */
#define DD_DISK_NAME_MAX 48
bool dd_disk_name_is_safe(const char *s);

#endif
