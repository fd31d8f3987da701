/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * error.h -- vbak's stable error codes (docs/error-codes.md). The command
 * line exits with them; the daemon records them per VM. A code never changes
 * meaning once released; new codes are added at the end of their range.
 */
#ifndef VB_ERROR_H
#define VB_ERROR_H

typedef enum vb_error {
        VB_OK = 0,
        VB_E_FAILED = 1,      /* unexpected internal failure */
        VB_E_USAGE = 2,       /* bad command line or option value */
        VB_E_NOT_FOUND = 3,   /* pool, restore point, disk or file not found */
        VB_E_POOL_FORMAT = 4, /* not a pool, damaged pool.json or unsupported version */
        VB_E_CORRUPT = 5,     /* stored data failed its check (digest, CRC, checksum, parse) */
        VB_E_VERIFY = 6,      /* verify found damaged or missing data */
        VB_E_NO_SPACE = 7,    /* the pool's or the target's file system is full */
        VB_E_IO = 8,          /* an I/O error from the operating system */
        VB_E_PERMISSION = 9,  /* permission denied or read-only file system */
        VB_E_BUSY = 10,       /* another process holds the lock (gc) */
        VB_E_PARENT = 11,     /* the parent restore point cannot be used for an incremental */
        VB_E_SOURCE = 12,     /* the backup source cannot be read */
        VB_E_TARGET = 13,     /* the restore target cannot be written */
        VB_E_EXISTS = 14,     /* the pool already exists */
        VB_E_INTERRUPTED = 15,
        VB_E_MISSING_CHUNK = 16, /* a chunk a restore point needs is missing */
        VB_E_NETWORK = 17,       /* a connection failed, timed out, or stayed down past the reconnect window */
        VB_E_AUTH = 18,          /* the peer refused our credentials */
        VB_E_REFUSED = 19,       /* the peer refused the request (path not served, too many clients, busy disk) */
        VB_E_PROTOCOL = 20,      /* the peer broke the protocol (malformed or unexpected message) */
        VB_E_SCRIPT = 21,        /* a job's pre or post script failed or outlived its timeout */
        _VB_ERROR_MAX,
} vb_error;

/* Short stable name ("corrupt"), for messages and JSON. */
const char *vb_error_name(vb_error e);

/* The default code for a -errno from a module. */
vb_error vb_error_from_errno(int r);
/* The same for the errors of a transfer over the network: a connection that
 * failed, timed out or went away is VB_E_NETWORK, a shutdown on our side
 * VB_E_INTERRUPTED. */
vb_error vb_error_from_net_errno(int r);

#endif
