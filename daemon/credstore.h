/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * credstore.h -- the platforms' passwords, in STATE_DIR/credentials.json,
 * readable by the daemon's user only.
 *
 * DESIGN
 * The catalog (daemon/catalog.h) never holds a password: a copy of
 * catalog.db, a backup of it or a debugging query shows none. The file is
 * small and changes rarely, so every call reads it again and every change
 * rewrites it whole: a temp file in the same folder (O_EXCL, mode 0600),
 * written, fsync'd, renamed over the old one, then the folder fsync'd. A
 * reader sees the old file or the new one, never a mix, also after a crash.
 * A file (or temp file) that group or others may access, or that another
 * user owns, is refused with -EPERM and a log line saying how to fix it:
 * the passwords may have leaked, and the operator must know.
 *
 * Calls are serialised by a mutex: any thread may use the store.
 */
#ifndef VB_CREDSTORE_H
#define VB_CREDSTORE_H

#define VB_CREDSTORE_FILE "credentials.json"
#define VB_CREDSTORE_FORMAT "vbak-credentials"
#define VB_CREDSTORE_VERSION 1
#define VB_CREDSTORE_MAX_SIZE (1u << 20)

typedef struct vb_credstore vb_credstore;

/* Opens the store of state_dir (created, mode 0700, when missing). The file
 * itself may be missing (no password yet); when it is there it is checked
 * (mode, owner, format). Temp files left by a crash are removed. */
int vb_credstore_open(const char *state_dir, vb_credstore **ret);
vb_credstore *vb_credstore_free(vb_credstore *s);
static inline void vb_credstore_freep(vb_credstore **s)
{
        vb_credstore_free(*s);
}

/* The password of platform (owned by the caller; wipe it with
 * vb_credstore_password_free). -ENOENT when there is none. */
int vb_credstore_get(vb_credstore *s, const char *platform, char **ret);
/* Sets (or replaces) the password of platform. */
int vb_credstore_set(vb_credstore *s, const char *platform, const char *password);
/* -ENOENT when there is none. */
int vb_credstore_remove(vb_credstore *s, const char *platform);
/* Moves the password of from to to (a platform renamed); -ENOENT when from
 * has none, -EEXIST when to has one. */
int vb_credstore_rename(vb_credstore *s, const char *from, const char *to);

/* Overwrites the password's bytes, then frees it. Accepts NULL. */
void vb_credstore_password_free(char *password);

#endif
