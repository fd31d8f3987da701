/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * progress.h -- the progress line of long commands: bytes done and total,
 * rate and ETA, redrawn at most ten times a second on a terminal (stderr),
 * silent otherwise.
 */
#ifndef VB_PROGRESS_H
#define VB_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vb_progress {
        const char *label;
        bool enabled;
        uint64_t start_ns;
        uint64_t last_ns;
        bool drawn;
} vb_progress;

/* Enabled when stderr is a terminal (or force is set). */
void vb_progress_init(vb_progress *p, const char *label, bool force);
/* Matches sp_progress_fn: userdata is the vb_progress. */
void vb_progress_update(void *userdata, uint64_t done, uint64_t total);
/* Ends the line (when one was drawn). */
void vb_progress_done(vb_progress *p);

#endif
