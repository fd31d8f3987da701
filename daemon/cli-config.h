/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-config.h -- `vbak config show|set`: the settings vbakd reads from
 * vbakd.conf, shown with where each value comes from, and changed one key at
 * a time through the daemon's own parser (daemon/config.h).
 */
#ifndef VB_CLI_CONFIG_H
#define VB_CLI_CONFIG_H

int vb_cli_config(int argc, char **argv);

#endif
