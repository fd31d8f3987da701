/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-daemon.h -- the command line's verbs that go through vbakd (its
 * control API, daemon/client.h): `vbak status` for now.
 */
#ifndef VB_CLI_DAEMON_H
#define VB_CLI_DAEMON_H

#include <stdio.h>

int vb_cli_status(int argc, char **argv);
void vb_cli_status_help(FILE *f);

#endif
