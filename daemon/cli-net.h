/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli-net.h -- the command line's side of the transport: the options every
 * network source or target takes (streams, buffer, resume buffer, reconnect
 * window, timeout, rate limits, disk service credentials) and synchronous
 * wrappers that run the command's loop until a transport step is done.
 */
#ifndef VB_CLI_NET_H
#define VB_CLI_NET_H

#include <getopt.h>
#include <stdbool.h>
#include <uv.h>

#include "dedup/extent.h"
#include "transport/disk.h"
#include "transport/rate.h"

typedef struct vb_net_opts {
        tp_disk_opts disk;
        tp_rate_schedule rate, disk_rate;
        tp_bucket transfer_bucket, disk_bucket;
} vb_net_opts;

/* getopt_long codes of the options below start here. */
#define VB_NET_OPT_BASE 0x1000

/* The long options, to append to a command's table (the last is not {}). */
extern const struct option vb_net_options[];
extern const size_t vb_net_n_options;
extern const char vb_net_help[];

void vb_net_opts_init(vb_net_opts *o);
void vb_net_opts_clear(vb_net_opts *o);

/* Handles one option of vb_net_options: 1 handled, 0 not ours, -EINVAL bad
 * value (with *err set; the caller frees it). */
int vb_net_parse(vb_net_opts *o, int c, const char *arg, char **err);

bool vb_is_network_url(const char *s);

/* The steps, each running loop until it is done. On failure *msg (may be
 * NULL) says why; the caller frees it. */
/* *code: the stable code when the disk service said why, else VB_OK. */
int vb_net_open(uv_loop_t *loop, vb_net_opts *o, const char *url, bool write, tp_disk **ret, vb_error *code,
                char **msg);
int vb_net_plan(uv_loop_t *loop, tp_disk *d, bool incremental, dd_extents *read, bool *is_incremental, char **msg);
int vb_net_commit(uv_loop_t *loop, tp_disk *d, char **msg);
void vb_net_close(uv_loop_t *loop, tp_disk *d);

/* Runs loop until *flag is set; -EPIPE when the loop ran dry first. Whoever
 * sets the flag calls uv_stop(loop) too, so the last turn does not block. */
int vb_run_until(uv_loop_t *loop, const bool *flag);

#endif
