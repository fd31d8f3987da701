/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tape.h -- what the tape pool (storagepool/tape.c, sp_driver_tape) offers
 * beyond the driver vtable: its last error in words, where a restore point
 * is on tape, and a test hook.
 */
#ifndef SP_TAPE_H
#define SP_TAPE_H

#include "storagepool/sp.h"

#define SP_TAPE_FILE "tape.json"
#define SP_TAPE_FORMAT "vbak-tape"
#define SP_TAPE_VERSION 1

/* The last error of a tape pool in words ("the media pool is full: add
 * volumes", "insert volume L2 into /dev/nst0"); NULL when there is none or
 * p is not a tape pool. */
const char *sp_tape_error(sp_pool *p);

/* The volume label (owned by the caller) and file number that hold
 * restore point id. -ENOENT when the catalog does not name it. */
int sp_tape_locate(sp_pool *p, const char *id, char **ret_volume, unsigned *ret_file);

/* Tests only: called in commit after the restore point's file is on tape
 * and before the catalog names it; a negative return stops the commit
 * there, as a crash would. */
extern int (*sp_tape_before_catalog_hook)(void);

#endif
