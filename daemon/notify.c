/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * notify.c -- the sd_notify(3) datagram to $NOTIFY_SOCKET (see notify.h).
 *
 * DESIGN
 * A new socket per message: messages are rare (start, stop, a status now
 * and then), so there is nothing to keep open and nothing a forked child
 * could inherit. The send is MSG_DONTWAIT: a manager that does not read
 * (or a full queue) must never stall the daemon's loop, and a lost STATUS
 * is harmless. No credentials are attached: the manager takes the sender's
 * pid from the socket itself, and we always speak for ourselves.
 */
#include "daemon/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

/* $NOTIFY_SOCKET into a sockaddr_un and its length. */
static int notify_address(const char *name, struct sockaddr_un *sa, socklen_t *ret_len)
{
        size_t n = strlen(name);

        *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        if (name[0] != '/' && name[0] != '@')
                return -EAFNOSUPPORT; /* vsock:... and relative paths: not ours to guess */
        if (n < 2 || n > sizeof(sa->sun_path))
                return -EINVAL;
        memcpy(sa->sun_path, name, n);
        /* An abstract name has no terminating NUL: its length is the address length. */
        if (name[0] == '@')
                sa->sun_path[0] = '\0';
        else if (n == sizeof(sa->sun_path))
                return -EINVAL; /* a path needs room for its NUL */
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
        return 0;
}

int vb_notify(const char *state)
{
        const char *name = getenv("NOTIFY_SOCKET");
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        socklen_t len;
        int r;

        if (!name || !*name)
                return 0;
        if (!state || !*state)
                return -EINVAL;
        r = notify_address(name, &sa, &len);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, len) < 0)
                return -errno;
        return 1;
}

int vb_notifyf(const char *fmt, ...)
{
        _cleanup_free_ char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return vb_notify(s);
}
