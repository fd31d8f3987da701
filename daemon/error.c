/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * error.c -- names of the stable error codes and the errno mapping.
 */
#include "daemon/error.h"

#include <errno.h>
#include <stdlib.h>

static const char *const names[_VB_ERROR_MAX] = {
        [VB_OK] = "ok",
        [VB_E_FAILED] = "failed",
        [VB_E_USAGE] = "usage",
        [VB_E_NOT_FOUND] = "not-found",
        [VB_E_POOL_FORMAT] = "pool-format",
        [VB_E_CORRUPT] = "corrupt",
        [VB_E_VERIFY] = "verify-failed",
        [VB_E_NO_SPACE] = "no-space",
        [VB_E_IO] = "io",
        [VB_E_PERMISSION] = "permission",
        [VB_E_BUSY] = "busy",
        [VB_E_PARENT] = "parent-unusable",
        [VB_E_SOURCE] = "source",
        [VB_E_TARGET] = "target",
        [VB_E_EXISTS] = "exists",
        [VB_E_INTERRUPTED] = "interrupted",
        [VB_E_MISSING_CHUNK] = "missing-chunk",
        [VB_E_NETWORK] = "network",
        [VB_E_AUTH] = "auth",
        [VB_E_REFUSED] = "refused",
        [VB_E_PROTOCOL] = "protocol",
        [VB_E_SCRIPT] = "script",
};

const char *vb_error_name(vb_error e)
{
        if ((int)e < 0 || e >= _VB_ERROR_MAX)
                return "unknown";
        return names[e];
}

vb_error vb_error_from_errno(int r)
{
        switch (abs(r)) {
        case 0:
                return VB_OK;
        case ENOENT:
                return VB_E_NOT_FOUND;
        case EBADMSG:
                return VB_E_CORRUPT;
        case ENODATA:
                return VB_E_MISSING_CHUNK;
        case ENOSPC:
        case EDQUOT:
        case EFBIG:
                return VB_E_NO_SPACE;
        case EIO:
                return VB_E_IO;
        case EACCES:
        case EPERM:
        case EROFS:
                return VB_E_PERMISSION;
        case EBUSY:
        case EWOULDBLOCK:
                return VB_E_BUSY;
        case EPROTONOSUPPORT:
                return VB_E_POOL_FORMAT;
        case EEXIST:
                return VB_E_EXISTS;
        case EINVAL:
        case ERANGE:
                return VB_E_USAGE;
        case EINTR:
                return VB_E_INTERRUPTED;
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case ENOTCONN:
        case ESHUTDOWN:
        case ETIMEDOUT:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EPIPE:
                return VB_E_NETWORK;
        case EKEYREJECTED:
                return VB_E_AUTH;
        case EPROTO:
                return VB_E_PROTOCOL;
        default:
                return VB_E_FAILED;
        }
}

vb_error vb_error_from_net_errno(int r)
{
        switch (abs(r)) {
        case ETIMEDOUT:
        case ECONNREFUSED:
        case ECONNRESET:
        case EPIPE:
        case ENOTCONN:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ESTALE:
                return VB_E_NETWORK;
        case ESHUTDOWN:
                return VB_E_INTERRUPTED;
        default:
                return vb_error_from_errno(r);
        }
}
