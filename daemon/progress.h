/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * progress.h -- the progress line of long commands: bytes done and total,
 * rate and ETA, redrawn at most ten times a second on a terminal (stderr),
 * silent otherwise.
 */
#ifndef VB_PROGRESS_H
#define VB_PROGRESS_H

#include <jansson.h>
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

/* The rate of a transfer the daemon reports (runs, restores): sampled at
 * most once a second and smoothed a little. */
typedef struct vb_rate_meter {
        uint64_t t_ns, done; /* the last sample; t_ns 0: none yet */
        double rate;         /* bytes per second; 0 while unknown */
} vb_rate_meter;

/* Feeds the bytes done so far; true when the rate was sampled anew (worth
 * telling whoever watches). */
bool vb_rate_meter_update(vb_rate_meter *m, uint64_t done);
/* Seconds left at rate, or JSON null while unknown. */
json_t *vb_eta_json(uint64_t done, uint64_t total, double rate);

#endif
