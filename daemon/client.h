/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client.h -- the command line's side of vbakd's control API: one JSON
 * request over the daemon's Unix socket (libcurl), its answer parsed.
 *
 * The socket is --socket PATH, else $VBAK_SOCKET, else the system's
 * (VB_CLIENT_SOCKET_DEFAULT, where the packaged vbakd listens).
 */
#ifndef VB_CLIENT_H
#define VB_CLIENT_H

#include <jansson.h>

#include "daemon/error.h"

#define VB_CLIENT_SOCKET_DEFAULT "/run/vbak/vbakd.sock"

/* The socket to use: opt when given, else the environment, else the default. */
const char *vb_client_socket(const char *opt);

/* Sends method path with body (borrowed, may be NULL) and waits for the
 * answer. Returns VB_OK with *reply (a new reference) for a 2xx; otherwise
 * the stable code (the daemon's own for its error documents, VB_E_NETWORK
 * when it cannot be reached) and *message (caller frees) saying why; *reply
 * then holds the error document when there was one (may be NULL). */
vb_error vb_client_call(const char *socket, const char *method, const char *path, json_t *body, json_t **reply,
                        char **message);

#endif
