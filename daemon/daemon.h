/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon.h -- what vbakd's parts share: the loop, the settings, the
 * catalog, the credential store and the API the resources register on.
 *
 * DESIGN: the loop thread owns everything here; the catalog and the
 * credential store are only called from the daemon's lane (vb_lane_queue),
 * as SQLite and file I/O may block: threads of their own, so that the API
 * answers while the worker pool is busy with a run's chunks.
 */
#ifndef VB_DAEMON_H
#define VB_DAEMON_H

#include <uv.h>

#include "daemon/api.h"
#include "daemon/catalog.h"
#include "daemon/config.h"
#include "daemon/credstore.h"
#include "daemon/work.h"

typedef struct vb_daemon {
        uv_loop_t *loop;
        struct vb_config cfg;
        char *socket_path;
        vb_api *api;
        vb_catalog *catalog;
        vb_credstore *creds;
        struct vb_runner *runner;     /* runs, retries, the scheduler */
        struct vb_restorer *restorer; /* restores */
        vb_lane *lane;                /* the catalog's and credential store's calls */
        time_t started;
} vb_daemon;

/* The resources, each in its own file. */
int vb_api_platforms_register(vb_daemon *d); /* api-platforms.c: platforms, inventory */
int vb_api_pools_register(vb_daemon *d);     /* api-pools.c: pools, restore points */
/* The secret key of the object pool at path, from the credential store
 * (sp_object_secret_fn; api-pools.c keeps it there). */
int vb_daemon_pool_secret(void *userdata, const char *path, char **ret);
int vb_api_jobs_register(vb_daemon *d);     /* api-jobs.c: jobs */
int vb_api_runs_register(vb_daemon *d);     /* api-runs.c: start, stop, runs, retry, progress */
int vb_api_restores_register(vb_daemon *d); /* api-restores.c: restores, their plans and progress */

#endif
