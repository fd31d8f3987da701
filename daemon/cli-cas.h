/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-cas.h -- the `vbak cas` verbs: talk to an H3C CAS manager (CVM)
 * directly, without a daemon, to diagnose a platform.
 */
#ifndef VB_CLI_CAS_H
#define VB_CLI_CAS_H

#include <stdio.h>

/* argv[0] is "cas". Returns the exit code (docs/error-codes.md). */
int vb_cli_cas(int argc, char **argv);
void vb_cli_cas_help(FILE *f);

/* Prints an inventory (vb_hv_inventory_to_json) as a tree: host pools,
 * clusters, hosts, VMs by title with their names. */
#include <jansson.h>
void vb_cli_print_inventory(json_t *inv);

#endif
