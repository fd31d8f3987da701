/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp.h -- a small blocking QMP client: one connection to a QEMU monitor
 * socket, commands executed one at a time, every wait bounded by a timeout.
 *
 * DESIGN: QEMU's QMP chardev serves one client at a time and a second
 * client waits in the listen backlog without a greeting, so a connection is
 * meant to be short-lived (one operation) and its owner serialises the
 * operations on one VM. QEMU writes one JSON object per line; asynchronous
 * events that arrive while a command runs are skipped. Nothing here logs
 * above debug level.
 */
#ifndef TP_QMP_H
#define TP_QMP_H

#include <jansson.h>

#include "daemon/util.h"

#define TP_QMP_CONNECT_TIMEOUT_MS 5000u
#define TP_QMP_COMMAND_TIMEOUT_MS 30000u

typedef struct tp_qmp tp_qmp;

/* Connects to the unix socket at path, reads the greeting and leaves the
 * capabilities negotiation mode, all within timeout_ms. Fails with -ENOENT
 * or -ECONNREFUSED when nothing listens there (no socket, or a stale one:
 * the VM is not running), -ETIMEDOUT when the greeting does not come (another
 * client holds the monitor), -EPROTO when the peer does not speak QMP. */
int tp_qmp_connect(const char *path, unsigned timeout_ms, tp_qmp **ret);

/* The process id of the QEMU at the other end (SO_PEERCRED): tells a QEMU
 * restarted under the same socket path from the one seen before. */
pid_t tp_qmp_peer_pid(const tp_qmp *q);

/* Closes the connection; accepts NULL, returns NULL. */
tp_qmp *tp_qmp_free(tp_qmp *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(tp_qmp *, tp_qmp_free);

/* The timeout of each later command (default TP_QMP_COMMAND_TIMEOUT_MS). */
void tp_qmp_set_timeout(tp_qmp *q, unsigned timeout_ms);

/* Executes command with arguments (borrowed; NULL for none) and waits for
 * its answer. On success, *ret (when not NULL) receives the "return" value
 * (a new reference). A QEMU error returns -EREMOTEIO with *ret_class (when
 * not NULL) set to QEMU's error class ("GenericError", "DeviceNotFound",
 * ...) and *ret_desc to its description; a transport failure returns
 * -ETIMEDOUT, -ECONNRESET, -EPROTO, ... with *ret_desc describing it and
 * *ret_class NULL. Strings are the caller's to free. After a transport
 * failure the connection is unusable. */
int tp_qmp_execute(tp_qmp *q, const char *command, json_t *arguments, json_t **ret, char **ret_class, char **ret_desc);

#endif
