/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-restore.h -- `vbak restore vm|disk|list|show|start|stop`: restores
 * through vbakd's control API (/v1/restores, docs/api.md), each confirmed
 * after its plan was shown, and the live view of a restore (--follow).
 */
#ifndef VB_CLI_RESTORE_H
#define VB_CLI_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

int vb_cli_restore(int argc, char **argv);

/* Follows restore id on the daemon at socket until it ends, drawing a
 * progress bar per item on stderr (or one JSON line per update on stdout
 * with json). Returns the exit code the restore's end deserves: 0 when it
 * succeeded, else the first failed item's code (docs/error-codes.md). */
int vb_cli_restore_follow(const char *socket, int64_t id, bool json);

#endif
