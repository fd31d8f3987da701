/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs.h -- what the pools on a local file system share: the folder layout,
 * pool.json, restore point folders and their commit, writer locks, listing,
 * removal and the cleanup of what crashed writers left behind.
 *
 *   pool.json
 *   chunks/<2 hex>/<2 hex>/<digest>            (dedup pools)
 *   vms/<platform>/<vm key>/<id>/manifest.json  + per-disk files
 *   tmp/                                       temp files, renamed into place
 *   locks/writer-<id>.lock                     held (flock) while a restore point is written
 *   locks/gc.lock                              held while gc runs
 *
 * DESIGN: a writer takes its lock before it creates anything, so a restore
 * point folder without manifest.json whose lock is not held belongs to a
 * writer that died: gc may remove it. The lock file's mtime is the writer's
 * start time, in the file system's own clock, which gc compares with chunk
 * mtimes (storagepool/dedup.c).
 */
#ifndef SP_FS_H
#define SP_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "dedup/manifest.h"
#include "storagepool/sp.h"

#define SP_ID_MAX 64
#define SP_PLATFORM_LOCAL "local"

/* Creates the folder layout and pool.json for o (type already checked). */
int sp_fs_create(const char *path, const sp_options *o);

/* Reads pool.json of path into base (path, dirfd, uuid, opts); the driver is
 * looked up from its type. */
int sp_fs_read_pool(const char *path, sp_pool *base);
/* Releases what sp_fs_read_pool put into base. */
void sp_fs_pool_done(sp_pool *base);

/* The restore point's folder relative to the pool root:
 * vms/<platform>/<vm key>/<id>, the key being the VM's uuid, else its id,
 * else its name. -EINVAL when a component is not file-name safe. */
int sp_fs_rp_path(const dd_manifest *m, char **ret);

/* A new restore point id: the UTC time to the microsecond plus a random
 * suffix, fixed width, so that ids sort in the order writers began. */
int sp_fs_new_id(char id[SP_ID_MAX]);

/* A restore point being written: its id, folder and lock. */
typedef struct sp_fs_rp {
        char id[SP_ID_MAX];
        char *path; /* relative to the pool root */
        int dirfd;  /* the restore point's folder */
        int lock_fd;
        char *lock_path;
} sp_fs_rp;

/* Picks a new id (UTC time plus random suffix), takes the writer lock
 * (recording id and parent), creates the folder. Sets m->id. */
int sp_fs_rp_begin(sp_pool *p, dd_manifest *m, sp_fs_rp *rp);
/* Makes the restore point exist: sets m->time_end, syncs the pool
 * (SP_FSYNC_ALWAYS), writes manifest.json atomically, then releases the
 * lock. On failure the restore point is aborted (sp_fs_rp_abort). */
int sp_fs_rp_commit(sp_pool *p, sp_fs_rp *rp, dd_manifest *m);
/* Removes the folder and releases the lock. */
void sp_fs_rp_abort(sp_pool *p, sp_fs_rp *rp);

/* All committed restore points (of vm name, or all), oldest first. */
int sp_fs_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret, size_t *ret_n);

/* The committed restore point id of the VM that ident names (platform and
 * key as in sp_fs_rp_path): read directly from where it must be, else looked
 * for in the whole pool. -ENOENT when there is none. */
int sp_fs_find(sp_pool *p, const dd_manifest *ident, const char *id, dd_manifest **ret);

/* Deletes a committed restore point: manifest first (synced), then the rest. */
int sp_fs_remove(sp_pool *p, const dd_manifest *m);

/* Writers that are running now. */
typedef struct sp_fs_writer_info {
        char id[SP_ID_MAX];
        char parent[SP_ID_MAX]; /* empty when none */
        struct timespec start;  /* the lock file's mtime */
} sp_fs_writer_info;
int sp_fs_active_writers(sp_pool *p, sp_fs_writer_info **ret, size_t *ret_n);

/* Removes leftovers of writers that died: restore point folders without a
 * manifest whose lock is free, stale lock files, and files in tmp/ older
 * than cutoff (nothing when dry_run). Returns counts through the pointers. */
int sp_fs_cleanup(sp_pool *p, const struct timespec *cutoff, bool dry_run, uint64_t *ret_partial, uint64_t *ret_tmp);

/* Takes locks/gc.lock without waiting (-EBUSY when another gc runs) and
 * touches it; *ret_start is its new mtime. Returns the lock fd. */
int sp_fs_gc_lock(sp_pool *p, struct timespec *ret_start);

/* Writes data to a new file tmp/<name>.<random> (fdatasync'd when do_sync);
 * *ret_tmp is its path relative to the pool root. */
int sp_fs_write_tmp(sp_pool *p, const char *name, const void *data, size_t len, bool do_sync, char **ret_tmp);

/* Renames tmp to path without replacing an existing file (creating missing
 * parent folders): 1 when stored, 0 when path existed (tmp is removed),
 * -errno (tmp is removed). */
int sp_fs_publish(sp_pool *p, const char *tmp, const char *path);

/* Writes data to tmp/ and renames it to path (relative to the pool root)
 * without replacing an existing file: 1 when stored, 0 when path already
 * existed, -errno. Creates missing parent folders. fsyncs per pool policy. */
int sp_fs_store_new(sp_pool *p, const char *path, const void *data, size_t len);

/* Opens the folder of a committed restore point. */
int sp_fs_rp_open(sp_pool *p, const dd_manifest *m, int *ret_dirfd);

static inline int timespec_cmp(const struct timespec *a, const struct timespec *b)
{
        if (a->tv_sec != b->tv_sec)
                return a->tv_sec < b->tv_sec ? -1 : 1;
        if (a->tv_nsec != b->tv_nsec)
                return a->tv_nsec < b->tv_nsec ? -1 : 1;
        return 0;
}

#endif
