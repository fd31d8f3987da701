/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * copy.h -- copies a committed restore point from one pool into another, of
 * any two types (dedup to tape, tape to dedup, dedup to dedup, ...).
 */
#ifndef SP_COPY_H
#define SP_COPY_H

#include "dedup/manifest.h"
#include "storagepool/sp.h"

/* Copies restore point m of pool from into pool to as a full restore point
 * (no parent): the same VM identity, configuration, consistency, checkpoint,
 * job, run and start time; the disks with their device and format. Every
 * chunk is read (and checked against its digest) from from and written to
 * to in order; zero chunks are skipped. progress (may be NULL) gets the
 * bytes done of the sum of the disks' sizes. ret (may be NULL) receives the
 * new restore point's manifest. Nothing is committed on failure. */
int sp_copy(sp_pool *from, const dd_manifest *m, sp_pool *to, sp_progress_fn progress, void *userdata,
            dd_manifest **ret);

#endif
