/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-job.h -- `vbak job create|list|show|modify|clone|remove|start|stop`,
 * through vbakd's control API.
 */
#ifndef VB_CLI_JOB_H
#define VB_CLI_JOB_H

int vb_cli_job(int argc, char **argv);

#endif
