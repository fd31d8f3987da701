/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-cvd.h -- the `vbak cvd` verbs: talk to a CVD-style disk service
 * (vbak-cvd) directly, for operators checking a host and for tests.
 */
#ifndef VB_CLI_CVD_H
#define VB_CLI_CVD_H

#include <stdio.h>

/* argv[0] is "cvd". Returns the exit code (docs/error-codes.md). */
int vb_cli_cvd(int argc, char **argv);
void vb_cli_cvd_help(FILE *f);

#endif
