/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restorer.h -- vbakd's restores (product §6): a restore of one or many VMs
 * (or one disk) from restore points of the registered pools, planned,
 * confirmed, run now, at a set time or by hand, its items in parallel
 * within the restore's limits, with progress and a result per item in the
 * catalog.
 *
 * DESIGN
 * A restore is created from a request (the API's JSON body, below). Every
 * item is resolved on the target platform by vb_vmrestore_plan() before
 * the restore exists, so that what is confirmed is what will happen, and a
 * restore is only created with "confirm": true. Its steps when it runs:
 *
 *   load pools, platform, password (the lane) -> the catalog's restore
 *   (running) -> precondition (non-zero: the restore is skipped) ->
 *   pre-script (non-zero: failed, E21) -> connect -> items started while
 *   the limits allow (parallel_vms, parallel_vms_per_host on the target
 *   host), each a vb_vmrestore -> results recorded -> post-script -> the
 *   restore's status from its items (succeeded, partial, failed).
 *
 * The request (JSON object; every key but kind and items optional):
 *
 *   "kind"            "vm" (default) or "disk"
 *   "path"            "new" (default) or "original"
 *   "platform"        the target platform's name; default the platform the
 *                     restore points were made on (required when that one
 *                     is no longer registered)
 *   "items"           [{"restore_point": ID, "pool": NAME, ...}, ...]: one
 *                     per VM (kind vm) or per disk (kind disk); "pool" may
 *                     be left out when one registered pool holds the id.
 *                     Any of the settings below may be given per item, and
 *                     then wins over the restore's own.
 *   settings (kind vm, new path): "host" (host id), "name" (one item only),
 *     "prefix", "suffix", "storage_pool", "preallocation" (thin, lazy,
 *     eager), "subdir", "subdir_is_name" (the sub-directory is the VM's new
 *     name), "disk_settings": [{"device", "storage_pool", "preallocation",
 *     "subdir", "name", "volume"}], "nics": [{"vswitch", "profile"}],
 *     "cpu_sockets", "cpu_cores", "cpu_mode" (compatible, host-match,
 *     passthrough), "memory_mb";
 *   (kind vm, both paths): "disks": ["vda", ...] (a subset), "power_on",
 *     "overwrite" (new path), "keep_mac" (original path);
 *   (kind disk): "disk" (required), "target_vm" (new path), "storage_pool",
 *     "preallocation", "subdir", "name", "volume", "restart".
 *   "options"         {"parallel_vms" (2, 1-32), "parallel_vms_per_host"
 *                     (2, 1-10), "parallel_disks" (1, 1-5), "network",
 *                     "reconnect_window", "resume_buffer", "write_buffer",
 *                     "transfer_rate", "disk_write_rate", "network_timeout",
 *                     "transport_log_level", "streams_per_disk",
 *                     "precondition", "pre_script", "post_script",
 *                     "script_timeout"}: the job options of the same names
 *                     (daemon/jobopts.h) with restore defaults; write_buffer
 *                     and disk_write_rate are read_buffer and disk_read_rate
 *   "schedule"        "now" (default), "manual", or {"once": TIME} (the
 *                     schedule's time formats, daemon/schedule.h)
 *   "name"            the restore's label (default "restore N")
 *   "confirm"         true: create it; anything else: nothing is created
 *                     and the answer is E2 on field "confirm" with the plan
 *
 * The plan: {"items": [one vb_vmrestore_plan() answer per item], "overwrites":
 * true when any item overwrites or deletes something}.
 *
 * Crash safety: an item's status is in the catalog before it starts; at
 * start-up vb_restorer_recover() fails the items a dead daemon left running
 * (E15, their volumes named as incomplete) and ends their restores.
 */
#ifndef VB_RESTORER_H
#define VB_RESTORER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/error.h"

struct vb_daemon;
typedef struct vb_restorer vb_restorer;

int vb_restorer_new(struct vb_daemon *d, vb_restorer **ret);
/* As the daemon stops: restores going are left as a crash leaves them. */
void vb_restorer_shutdown(vb_restorer *rs);
void vb_restorer_free(vb_restorer *rs);
/* Cleans up after a dead daemon, then starts the timer of "once" restores. */
void vb_restorer_recover(vb_restorer *rs, void (*done)(void *userdata, int r), void *userdata);

/* r: VB_OK, or the stable code with a message and the request's field at
 * fault (NULL when none); plan: the plan when one was made (borrowed). */
typedef void (*vb_restorer_plan_fn)(void *userdata, vb_error r, const char *message, const char *field, json_t *plan);
/* r as above; id: the new restore's (0 on failure). */
typedef void (*vb_restorer_created_fn)(void *userdata, vb_error r, const char *message, const char *field, json_t *plan,
                                       int64_t id);

/* The plan of a request, nothing changed (the CLI shows it before asking). */
int vb_restorer_plan(vb_restorer *rs, json_t *request, vb_restorer_plan_fn done, void *userdata);
/* Creates the restore (see "confirm") and, with schedule now, starts it;
 * answered once it is in the catalog. */
int vb_restorer_create(vb_restorer *rs, json_t *request, vb_restorer_created_fn done, void *userdata);

/* Starts a restore that waits (manual, or once before its time); answered
 * once it runs. E10 when it runs already, E19 when it ended, E3 unknown. */
typedef void (*vb_restorer_done_fn)(void *userdata, vb_error r, const char *message);
int vb_restorer_start(vb_restorer *rs, int64_t id, vb_restorer_done_fn done, void *userdata);
/* Stops a running restore: items not started fail (E15), the rest finish.
 * -ENOENT when it is not running. */
int vb_restorer_stop(vb_restorer *rs, int64_t id);

/* The live progress of a running restore (NULL otherwise): {"restore": id,
 * "name", "bytes_done", "bytes_total", "rate", "eta", "items": [{"id",
 * "vm", "target", "host", "status", "step", "bytes_done", "bytes_total",
 * "rate", "eta"}], "concurrency": {"vms", "per_host", "disks"}}. */
json_t *vb_restorer_progress(vb_restorer *rs, int64_t id);
uint64_t vb_restorer_generation(vb_restorer *rs);
void vb_restorer_on_change(vb_restorer *rs, void (*fn)(void *userdata, int64_t id), void *userdata);

#endif
