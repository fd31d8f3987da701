/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon-pool.h -- the pools vbakd writes into and the restore points it
 * knows, through its control API: `vbak pool add|list|show|remove|rescan`
 * (cli-pool.c hands these verbs over; `vbak pool list PATH` still reads a
 * pool directly) and `vbak restore-point list|show`.
 */
#ifndef VB_CLI_DAEMON_POOL_H
#define VB_CLI_DAEMON_POOL_H

#include <stdbool.h>

/* argv[0] is the verb's command ("pool"); argv[1] the verb. */
int vb_cli_daemon_pool(int argc, char **argv);
/* Whether `vbak pool VERB ...` goes to the daemon: add, show, remove and
 * rescan always; list only without a PATH operand (with one, cli-pool.c
 * reads the pool directly). */
bool vb_cli_daemon_pool_wants(int argc, char **argv);
int vb_cli_restore_point(int argc, char **argv);

#endif
