/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * script.c -- a job's shell command with a timeout; see script.h.
 *
 * DESIGN: one struct per command holds the process, its two output pipes
 * and the timer. It is freed when all four handles are closed, which is
 * also when done() runs: the exit status alone does not say that the
 * output was read to its end.
 */
#include "daemon/script.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"

extern char **environ;

#define KILL_GRACE_MS 5000

typedef struct script {
        uv_process_t proc;
        uv_pipe_t out[2];
        uv_timer_t timer;
        char *label;
        vb_script_done_fn done;
        void *userdata;
        char tail[VB_SCRIPT_OUTPUT_MAX + 1];
        size_t n_tail;
        char line[256]; /* the log's current line */
        size_t n_line;
        vb_script_result res;
        bool exited, killed;
        unsigned open; /* handles not closed yet */
} script;

static char *trim(char *p)
{
        size_t n;

        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
                p++;
        n = strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\t' || p[n - 1] == '\r'))
                p[--n] = '\0';
        return p;
}

static void closed(uv_handle_t *h)
{
        script *s = h->data;

        if (--s->open > 0)
                return;
        if (s->done) { /* NULL: the spawn failed, and said so */
                s->tail[s->n_tail] = '\0';
                s->res.output = trim(s->tail);
                s->done(s->userdata, 0, &s->res);
        }
        free(s->label);
        free(s);
}

static void log_line(script *s)
{
        if (s->n_line == 0)
                return;
        s->line[s->n_line] = '\0';
        log_info("%s: %s", s->label, s->line);
        s->n_line = 0;
}

/* Keeps the last VB_SCRIPT_OUTPUT_MAX bytes and logs each line. */
static void keep(script *s, const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\n' || s->n_line == sizeof(s->line) - 1)
                        log_line(s);
                if (p[i] != '\n')
                        s->line[s->n_line++] = p[i];
        }
        if (n >= VB_SCRIPT_OUTPUT_MAX) {
                memcpy(s->tail, p + n - VB_SCRIPT_OUTPUT_MAX, VB_SCRIPT_OUTPUT_MAX);
                s->n_tail = VB_SCRIPT_OUTPUT_MAX;
                return;
        }
        if (s->n_tail + n > VB_SCRIPT_OUTPUT_MAX) {
                size_t drop = s->n_tail + n - VB_SCRIPT_OUTPUT_MAX;

                memmove(s->tail, s->tail + drop, s->n_tail - drop);
                s->n_tail -= drop;
        }
        memcpy(s->tail + s->n_tail, p, n);
        s->n_tail += n;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static char chunk[4096]; /* the loop thread only; consumed before the next read */

        (void)h;
        (void)suggested;
        *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        script *s = st->data;

        if (n > 0)
                keep(s, buf->base, (size_t)n);
        if (n < 0) {
                log_line(s);
                uv_close((uv_handle_t *)st, closed);
        }
}

static void exited(uv_process_t *p, int64_t status, int sig)
{
        script *s = p->data;

        s->exited = true;
        s->res.exit_status = sig ? -1 : (int)status;
        s->res.term_signal = sig;
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, closed);
        uv_close((uv_handle_t *)p, closed);
}

static void timed_out(uv_timer_t *t)
{
        script *s = t->data;

        if (s->exited)
                return;
        if (!s->killed) {
                log_warning("%s: still running after its timeout: stopping it", s->label);
                s->res.timed_out = true;
                s->killed = true;
                kill(-s->proc.pid, SIGTERM);
                uv_timer_start(&s->timer, timed_out, KILL_GRACE_MS, 0);
                return;
        }
        kill(-s->proc.pid, SIGKILL);
}

int vb_script_run(uv_loop_t *loop, const char *label, const char *command, char *const *env, uint64_t timeout_s,
                  vb_script_done_fn done, void *userdata)
{
        _cleanup_free_ char **envp = NULL;
        size_t n_environ = 0, n_extra = 0;
        uv_stdio_container_t stdio[3];
        uv_process_options_t po = { 0 };
        char *args[] = { "/bin/sh", "-c", (char *)command, NULL };
        script *s;
        int k;

        if (!loop || !command || !done)
                return -EINVAL;
        while (environ[n_environ])
                n_environ++;
        while (env && env[n_extra])
                n_extra++;
        envp = calloc(n_environ + n_extra + 1, sizeof(*envp));
        s = calloc(1, sizeof(*s));
        if (!envp || !s || !(s->label = strdup(label ?: "script"))) {
                if (s)
                        free(s->label);
                free(s);
                return -ENOMEM;
        }
        memcpy(envp, env, n_extra * sizeof(*envp));
        memcpy(envp + n_extra, environ, n_environ * sizeof(*envp)); /* the job's values come first, and win */
        s->done = done;
        s->userdata = userdata;
        for (int i = 0; i < 2; i++) {
                uv_pipe_init(loop, &s->out[i], 0);
                s->out[i].data = s;
        }
        uv_timer_init(loop, &s->timer);
        s->timer.data = s;
        stdio[0].flags = UV_IGNORE;
        stdio[1] = (uv_stdio_container_t){ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                                           .data.stream = (uv_stream_t *)&s->out[0] };
        stdio[2] = (uv_stdio_container_t){ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                                           .data.stream = (uv_stream_t *)&s->out[1] };
        po.file = args[0];
        po.args = args;
        po.env = envp;
        po.exit_cb = exited;
        po.stdio = stdio;
        po.stdio_count = 3;
        po.flags = UV_PROCESS_DETACHED; /* its own process group, for the timeout's kill */
        s->proc.data = s;
        k = uv_spawn(loop, &s->proc, &po);
        if (k < 0) {
                /* The process handle must be closed even after a failed spawn;
                 * s goes with the last close. */
                s->done = NULL;
                s->open = 4;
                uv_close((uv_handle_t *)&s->proc, closed);
                uv_close((uv_handle_t *)&s->out[0], closed);
                uv_close((uv_handle_t *)&s->out[1], closed);
                uv_close((uv_handle_t *)&s->timer, closed);
                log_error("%s: cannot start /bin/sh: %s", s->label, uv_strerror(k));
                return k;
        }
        s->open = 4;
        for (int i = 0; i < 2; i++)
                uv_read_start((uv_stream_t *)&s->out[i], alloc_cb, read_cb);
        uv_timer_start(&s->timer, timed_out, (timeout_s ?: 1) * 1000, 0);
        log_info("%s: started (pid %d): %s", s->label, s->proc.pid, command);
        return 0;
}
