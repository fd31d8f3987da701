/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-common.h -- what every verb of the command line prints the same way:
 * errors (a line on stderr with the stable code, and with --json also
 * {"error": {...}} on stdout) and JSON results.
 */
#ifndef VB_CLI_COMMON_H
#define VB_CLI_COMMON_H

#include <jansson.h>
#include <stdbool.h>

#include "daemon/error.h"
#include "daemon/util.h"

/* --json was given: errors go to stdout as JSON too. */
extern bool vb_cli_json;

/* Prints the error; returns code, the command's exit code. */
_printf_(2, 3) int vb_cli_fail(vb_error code, const char *fmt, ...);

/* Prints j indented on stdout and frees it; 0, or a failure for NULL (out of memory). */
int vb_cli_print_json(json_t *j);

/* One request to vbakd (daemon/client.h): 0 with *reply (a new reference),
 * or the error printed and its code returned (*reply NULL). */
int vb_cli_call(const char *socket, const char *method, const char *path, json_t *body, json_t **reply);

/* The first line of a secret file (a password, an access key) into *ret
 * (caller wipes and frees); 0, or the exit code with the error printed. */
int vb_cli_read_secret_file(const char *path, char **ret);

#endif
