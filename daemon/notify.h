/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * notify.h -- readiness and status notifications to the service manager
 * (the sd_notify(3) protocol, without libsystemd): one datagram of
 * newline-separated VAR=VALUE lines to the AF_UNIX socket that
 * $NOTIFY_SOCKET names, a path or, with a leading '@', an abstract name.
 *
 * Outside a Type=notify service $NOTIFY_SOCKET is unset and every call is a
 * no-op that returns 0. The variable stays in the environment (children
 * inherit it; the manager only listens to the main process by default).
 */
#ifndef VB_NOTIFY_H
#define VB_NOTIFY_H

#include "daemon/util.h"

/* Sends state, e.g. "READY=1" or "STOPPING=1\nSTATUS=stopping". Returns 1
 * when sent, 0 when $NOTIFY_SOCKET is unset, or -errno (-EAFNOSUPPORT for
 * an address that is neither a path nor '@name'; -EAGAIN when the
 * manager's queue is full: the send never blocks). */
int vb_notify(const char *state);

/* vb_notify() of a formatted message (for STATUS=...). */
_printf_(1, 2) int vb_notifyf(const char *fmt, ...);

#endif
