/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-pool.h -- the `vbak pool` verbs, which work on a pool directly.
 */
#ifndef VB_CLI_POOL_H
#define VB_CLI_POOL_H

#include <stdio.h>

/* argv[0] is "pool". Returns the exit code (docs/error-codes.md). */
int vb_cli_pool(int argc, char **argv);
void vb_cli_pool_help(FILE *f);

#endif
