/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * script.h -- a job's shell command (its precondition, pre-script or
 * post-script) run by /bin/sh on the daemon's loop, with a timeout.
 *
 * DESIGN: the command runs in its own process group with stdin from
 * /dev/null and its output captured (the last VB_SCRIPT_OUTPUT_MAX bytes are
 * kept for the run's message, every line goes to the log). When the timeout
 * passes the whole group gets SIGTERM, then SIGKILL 5 s later: a script
 * that started children of its own does not outlive its run.
 */
#ifndef VB_SCRIPT_H
#define VB_SCRIPT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define VB_SCRIPT_OUTPUT_MAX 512

typedef struct vb_script_result {
        int exit_status; /* 0-255; -1 when killed by a signal */
        int term_signal; /* the signal, or 0 */
        bool timed_out;
        const char *output; /* the end of its output (stdout and stderr), trimmed */
} vb_script_result;

typedef void (*vb_script_done_fn)(void *userdata, int r, const vb_script_result *res);

/* Runs `/bin/sh -c command` with env (NULL-terminated "KEY=VALUE" added to
 * the daemon's environment; may be NULL). done runs once, on the loop: r is
 * 0 with res filled, or -errno when the command could not be started. The
 * label names the command in the log ("job nightly: pre-script"). Returns 0,
 * or -errno and done is not called. */
int vb_script_run(uv_loop_t *loop, const char *label, const char *command, char *const *env, uint64_t timeout_s,
                  vb_script_done_fn done, void *userdata);

#endif
