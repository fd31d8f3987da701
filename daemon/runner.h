/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * runner.h -- vbakd's runs: a job's VMs backed up in parallel within the
 * job's limits, every VM's progress recorded in the catalog as it goes,
 * retries of failed VMs into their original run, the scheduler that starts
 * jobs on time, and the cleanup after a daemon that died mid-run.
 *
 * DESIGN
 * A run lives on the loop as one struct with one entry per VM. Its steps:
 *
 *   load the job, platform, pool and password (the lane)
 *   -> the catalog's run (waiting -> running)
 *   -> precondition (non-zero: the run is skipped) -> pre-script (non-zero:
 *      the run fails, E21) -> connect, inventory, the job's selection minus
 *      its exclusions -> the run's VMs recorded (waiting)
 *   -> VMs started while the limits allow (parallel_vms, parallel_vms_per_host):
 *      VM lock, attempt begun, vmbackup with every step persisted first,
 *      retries after retry_interval, result recorded, lock released
 *   -> post-script -> the run's status from its VMs.
 *
 * One run per job at a time; one run per VM across all jobs (the catalog's
 * VM locks: a VM locked by another run fails with E10, busy). Stopping a run
 * fails the VMs not yet started (E15) and lets the ones in progress finish.
 *
 * Crash safety: each VM's step (snapshot name, restore point folder) is in
 * the catalog before it happens. At start-up vb_runner_recover() deletes the
 * snapshots and folders of every VM a dead daemon left unfinished, marks
 * those VMs failed (E15) and their runs finished, before any run begins.
 *
 * The scheduler looks at every enabled job once every
 * VB_RUNNER_TICK_SECONDS (and right after start-up): a job whose next
 * scheduled time has passed since its last look starts (once, however many
 * times were missed while the daemon was down).
 */
#ifndef VB_RUNNER_H
#define VB_RUNNER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/catalog.h"
#include "daemon/error.h"

#define VB_RUNNER_TICK_SECONDS 15

struct vb_daemon;
typedef struct vb_runner vb_runner;

int vb_runner_new(struct vb_daemon *d, vb_runner **ret);
/* Stops the scheduler, as the daemon stops: runs still going are left as a
 * crash would leave them (the next start cleans up), and the runner stays
 * allocated for their last callbacks until the process ends. */
void vb_runner_shutdown(vb_runner *rn);
/* After the loop ended: frees the runner (shut down before). */
void vb_runner_free(vb_runner *rn);

/* Cleans up after a dead daemon (see DESIGN), then starts the scheduler;
 * done(userdata, 0) once finished. */
void vb_runner_recover(vb_runner *rn, void (*done)(void *userdata, int r), void *userdata);

/* r: VB_OK with the run's id, or the stable code and a message. */
typedef void (*vb_runner_started_fn)(void *userdata, vb_error r, const char *message, int64_t run_id);

/* Starts a run of the job (name, or id as decimal text): answered once the
 * run exists in the catalog (the VMs come later). E10 (busy) when the job
 * runs already, E3 when it is not there. */
int vb_runner_start(vb_runner *rn, const char *job, vb_run_kind kind, vb_runner_started_fn done, void *userdata);

/* Stops the job's running run: VMs not started yet fail, the rest finish.
 * -ENOENT when the job has no run going; else the run's id. */
int64_t vb_runner_stop(vb_runner *rn, int64_t job_id);

/* Retries VMs of a finished run in that run: vms (names, ids or titles;
 * n_vms of them), or every failed VM when failed_only. Refused (E19) when
 * the job was deleted or runs, when a chosen VM is not in the run or has
 * since been deleted from the platform or excluded by the job, or when
 * nothing failed. Answered once the retry begins. */
int vb_runner_retry(vb_runner *rn, int64_t run_id, const char *const *vms, size_t n_vms, bool failed_only,
                    vb_runner_started_fn done, void *userdata);

/* The live progress of a run going now (NULL when it is not running):
 * {"run": id, "job", "bytes_done", "bytes_total", "rate", "eta", "vms":
 * [{"id", "vm", "title", "host", "status", "step", "attempt",
 * "bytes_done", "bytes_total", "rate", "eta"}...], "concurrency": {...}}.
 * Rates are bytes per second, ETAs seconds (null while unknown). */
json_t *vb_runner_progress(vb_runner *rn, int64_t run_id);
bool vb_runner_progress_live(vb_runner *rn, int64_t run_id);

/* A counter that grows with every change of any run's progress, and a
 * callback for each change (the API's streams); NULL unregisters. */
uint64_t vb_runner_generation(vb_runner *rn);
void vb_runner_on_change(vb_runner *rn, void (*fn)(void *userdata, int64_t run_id), void *userdata);

/* Whether the job has a run going. */
bool vb_runner_job_running(vb_runner *rn, int64_t job_id);

#endif
