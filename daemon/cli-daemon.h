/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon.h -- the command line's verbs that go through vbakd (its
 * control API, daemon/client.h): status, platform, inventory.
 */
#ifndef VB_CLI_DAEMON_H
#define VB_CLI_DAEMON_H

#include <stdio.h>

/* argv[0] is the command's name. Each returns the exit code (docs/error-codes.md). */
int vb_cli_status(int argc, char **argv);
void vb_cli_status_help(FILE *f);
int vb_cli_platform(int argc, char **argv);
void vb_cli_platform_help(FILE *f);
int vb_cli_inventory(int argc, char **argv);
void vb_cli_inventory_help(FILE *f);

#endif
