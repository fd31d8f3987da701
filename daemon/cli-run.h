/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-run.h -- `vbak run list|show|retry|stop`, and the live view of a
 * run's progress (--follow) that `vbak job start --follow` shares.
 */
#ifndef VB_CLI_RUN_H
#define VB_CLI_RUN_H

#include <stdbool.h>
#include <stdint.h>

int vb_cli_run(int argc, char **argv);

/* Follows run id on the daemon at socket until it ends, drawing a progress
 * bar per VM on stderr (or one JSON line per update on stdout with json).
 * Returns the exit code the run's end deserves: 0 when every VM
 * succeeded, else the first failed VM's code (docs/error-codes.md). */
int vb_cli_run_follow(const char *socket, int64_t id, bool json);

#endif
