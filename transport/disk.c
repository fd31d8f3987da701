/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * disk.c -- a VM disk over NBD or through a disk service (see disk.h).
 */
#include "transport/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "transport/cvd-client.h"

struct tp_disk {
        uv_loop_t *loop;
        tp_disk_opts o;
        char *source, *since, *checkpoint, *dirty_context;
        tp_nbd *nbd;
        char *notes[TP_DISK_NOTES_MAX + 1];
        size_t n_notes;
        dd_extents zeros; /* incremental: changed ranges that read as zero */

        /* the plan in progress */
        dd_extents *read;
        bool *is_incremental;
        tp_disk_done_fn plan_done;
        void *plan_userdata;

        tp_disk_open_fn open_done;
        void *open_userdata;

        /* cvd:// */
        tp_cvd_url url;
        tp_cvd_client *client;
        bool client_lost;
        char *token, *password;
        char *handle;
        char *nbd_uri;
        tp_nbd_reopen_done_fn reopen_done;
        tp_nbd *reopen_nbd;
        tp_nbd_stats stats; /* kept when the connections close before the disk does */
        bool released;      /* tp_disk_release: the export is closed, the session kept */
        uv_work_t later;    /* reports "nothing to do" from the loop */
        void (*close_done)(void *userdata);
        void *close_userdata;
};

static bool is_scheme(const char *s, const char *scheme)
{
        size_t n = strlen(scheme);

        return strncmp(s, scheme, n) == 0 && s[n] == ':';
}

void tp_disk_add_note(tp_disk *d, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (d->n_notes >= TP_DISK_NOTES_MAX)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) >= 0) {
                log_warning("%s", s);
                d->notes[d->n_notes++] = s;
        }
        va_end(ap);
}

static void disk_free(tp_disk *d)
{
        tp_cvd_client_close(d->client);
        tp_cvd_url_done(&d->url);
        if (d->password)
                explicit_bzero(d->password, strlen(d->password));
        if (d->token)
                explicit_bzero(d->token, strlen(d->token));
        free(d->password);
        free(d->token);
        free(d->handle);
        free(d->nbd_uri);
        for (size_t i = 0; i < d->n_notes; i++)
                free(d->notes[i]);
        dd_extents_clear(&d->zeros);
        free(d->source);
        free(d->since);
        free(d->checkpoint);
        free(d->dirty_context);
        free(d);
}

static void nbd_opened(void *userdata, int r, tp_nbd *n)
{
        tp_disk *d = userdata;

        if (r < 0) {
                d->open_done(d->open_userdata, r, VB_OK, NULL, tp_nbd_open_error());
                disk_free(d);
                return;
        }
        d->nbd = n;
        d->open_done(d->open_userdata, 0, VB_OK, d, NULL);
}

/* --- cvd:// -------------------------------------------------------------- */

static int read_secret(const char *path, char **ret)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = vb_read_file_at(AT_FDCWD, path, 64 * 1024, &text, &len);

        if (r < 0)
                return r;
        text[strcspn(text, "\r\n")] = 0;
        *ret = TAKE_PTR(text);
        return 0;
}

static void cvd_fail(tp_disk *d, int r, vb_error code, const char *msg)
{
        d->open_done(d->open_userdata, r, code, NULL, msg);
        disk_free(d);
}

static void cvd_lost(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;

        log_warning("%s", msg ? msg : "the disk service's session ended");
        d->client_lost = true;
}

/* Takes the export from a disk.open reply: its URI and dirty context. */
static int cvd_take_reply(tp_disk *d, const tp_cvd_open_reply *rp)
{
        char *uri = NULL, *handle = strdup(rp->handle);
        bool v6 = strchr(rp->host, ':') != NULL;

        if (!handle || asprintf(&uri, "nbd://%s%s%s:%u/%s", v6 ? "[" : "", rp->host, v6 ? "]" : "", rp->port,
                                rp->export_name) < 0) {
                free(handle);
                return -ENOMEM;
        }
        free(d->handle);
        free(d->nbd_uri);
        d->handle = handle;
        d->nbd_uri = uri;
        /* The reply names the context the export really offers. */
        for (size_t i = 0; d->since && i < rp->n_contexts; i++)
                if (strncmp(rp->contexts[i], TP_CONTEXT_DIRTY_PREFIX, strlen(TP_CONTEXT_DIRTY_PREFIX)) == 0) {
                        char *ctx = strdup(rp->contexts[i]);
                        if (!ctx)
                                return -ENOMEM;
                        free(d->dirty_context);
                        d->dirty_context = ctx;
                }
        return 0;
}

static void cvd_reopened(tp_cvd_client *c, int r, const char *msg, const tp_cvd_open_reply *rp, void *userdata)
{
        tp_disk *d = userdata;
        tp_nbd_reopen_done_fn done = d->reopen_done;

        d->reopen_done = NULL;
        if (r == 0 && cvd_take_reply(d, rp) < 0)
                r = VB_E_FAILED;
        if (r != 0)
                log_warning("re-opening %s: %s", d->source, msg ? msg : "failed");
        done(d->reopen_nbd, r == 0 ? 0 : -ECONNREFUSED, r == 0 ? d->nbd_uri : NULL);
}

static void cvd_open_request(tp_disk *d, tp_cvd_open_fn cb)
{
        tp_cvd_open_req rq = {
                .vm = d->url.vm,
                .path = d->url.path,
                .snapshot = d->url.snapshot,
                .write = d->o.write,
                .since = d->since,
                .checkpoint = d->checkpoint,
        };
        int r = tp_cvd_disk_open(d->client, &rq, cb, d);

        if (r < 0)
                cb(d->client, VB_E_FAILED, "disk.open could not be sent", NULL, d);
}

static void cvd_reconnected(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;

        if (r != 0) {
                tp_nbd_reopen_done_fn done = d->reopen_done;

                d->reopen_done = NULL;
                log_warning("reconnecting to the disk service for %s: %s", d->source, msg ? msg : "failed");
                done(d->reopen_nbd, -ECONNREFUSED, NULL);
                return;
        }
        d->client_lost = false;
        cvd_open_request(d, cvd_reopened);
}

static int cvd_connect(tp_disk *d, tp_cvd_done_fn cb, tp_cvd_why *why);

/* The NBD side could not reconnect: the export may be gone with the
 * session. Open the disk again (in a new session when the old one ended);
 * the checkpoint is created only once (disk.open's checkpoint is
 * idempotent), the dirty context is the same. */
static void cvd_reopen(void *userdata, tp_nbd *n, tp_nbd_reopen_done_fn done)
{
        tp_disk *d = userdata;
        tp_cvd_why why = { { 0 } };

        d->reopen_done = done;
        d->reopen_nbd = n;
        if (!d->client_lost) {
                cvd_open_request(d, cvd_reopened);
                return;
        }
        tp_cvd_client_close(d->client);
        d->client = NULL;
        if (cvd_connect(d, cvd_reconnected, &why) < 0) {
                d->reopen_done = NULL;
                done(n, -ECONNREFUSED, NULL);
        }
}

static void cvd_opened(tp_cvd_client *c, int r, const char *msg, const tp_cvd_open_reply *rp, void *userdata)
{
        tp_disk *d = userdata;
        tp_nbd_opts no;
        int k;

        if (r != 0) {
                cvd_fail(d, -EIO, (vb_error)r, msg);
                return;
        }
        k = cvd_take_reply(d, rp);
        if (k < 0) {
                cvd_fail(d, k, VB_OK, "out of memory");
                return;
        }
        log_debug("%s: disk service export %s (%s, %" PRIu64 " bytes%s)", d->source, d->nbd_uri, rp->format, rp->size,
                  rp->running ? ", running VM" : "");
        no = d->o.nbd;
        no.uri = d->nbd_uri;
        no.dirty_context = d->dirty_context;
        no.write = d->o.write;
        no.reopen = cvd_reopen;
        no.reopen_userdata = d;
        k = tp_nbd_open(d->loop, &no, nbd_opened, d);
        if (k < 0)
                cvd_fail(d, k, VB_OK, "cannot start the NBD connections");
}

static void cvd_connected(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;

        if (r != 0) {
                cvd_fail(d, -ECONNREFUSED, (vb_error)r, msg);
                return;
        }
        cvd_open_request(d, cvd_opened);
}

static int cvd_connect(tp_disk *d, tp_cvd_done_fn cb, tp_cvd_why *why)
{
        tp_cvd_client_opts co = {
                .host = d->url.host,
                .port = d->url.port,
                .token = d->token,
                .user = d->o.auth.user,
                .password = d->password,
                .tls = d->o.auth.tls,
                .ca_file = d->o.auth.tls_ca,
                .insecure = d->o.auth.insecure,
                .timeout_ms = d->o.nbd.timeout_ms,
                .on_lost = cvd_lost,
                .lost_userdata = d,
        };

        return tp_cvd_client_connect(d->loop, &co, cb, d, &d->client, why);
}

/* Opens a cvd:// disk: connect, authenticate, disk.open, then NBD. */
static int cvd_start(tp_disk *d, char **err)
{
        const char *why_url = NULL;
        tp_cvd_why why = { { 0 } };
        int r;

        r = tp_cvd_url_parse(d->source, &d->url, &why_url);
        if (r < 0) {
                if (asprintf(err, "%s: %s", d->source, why_url ? why_url : "not a cvd:// URL") < 0)
                        *err = NULL;
                return r;
        }
        if (!d->url.vm || !d->url.path) {
                if (asprintf(err, "%s: name the disk: cvd://HOST:PORT/VM/PATH/OF/IMAGE", d->source) < 0)
                        *err = NULL;
                return -EINVAL;
        }
        if (d->o.auth.token_file && (r = read_secret(d->o.auth.token_file, &d->token)) < 0) {
                if (asprintf(err, "%s: %s", d->o.auth.token_file, strerror(-r)) < 0)
                        *err = NULL;
                return -EINVAL;
        }
        if (d->o.auth.password_file && (r = read_secret(d->o.auth.password_file, &d->password)) < 0) {
                if (asprintf(err, "%s: %s", d->o.auth.password_file, strerror(-r)) < 0)
                        *err = NULL;
                return -EINVAL;
        }
        r = cvd_connect(d, cvd_connected, &why);
        if (r < 0) {
                if (asprintf(err, "%s: %s", d->source, why.msg[0] ? why.msg : strerror(-r)) < 0)
                        *err = NULL;
                return r;
        }
        return 0;
}

int tp_disk_open(uv_loop_t *loop, const tp_disk_opts *o, tp_disk_open_fn done, void *userdata, char **err)
{
        tp_disk *d;
        tp_nbd_opts no;
        bool cvd;
        int r;

        *err = NULL;
        if (!loop || !o || !o->source || !done)
                return -EINVAL;
        cvd = is_scheme(o->source, "cvd");
        if (!cvd && !is_scheme(o->source, "nbd") && !is_scheme(o->source, "nbd+unix") &&
            !is_scheme(o->source, "nbds") && !is_scheme(o->source, "nbds+unix"))
                return -EPROTONOSUPPORT;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->loop = loop;
        d->o = *o;
        d->open_done = done;
        d->open_userdata = userdata;
        d->source = strdup(o->source);
        d->since = o->since ? strdup(o->since) : NULL;
        d->checkpoint = o->checkpoint ? strdup(o->checkpoint) : NULL;
        if (o->since && asprintf(&d->dirty_context, TP_CONTEXT_DIRTY_PREFIX "%s", o->since) < 0)
                d->dirty_context = NULL;
        if (!d->source || (o->since && (!d->since || !d->dirty_context)) || (o->checkpoint && !d->checkpoint)) {
                disk_free(d);
                return -ENOMEM;
        }
        if (cvd) {
                r = cvd_start(d, err);
                if (r < 0)
                        disk_free(d);
                return r;
        }
        no = o->nbd;
        no.uri = d->source;
        no.dirty_context = d->dirty_context;
        no.write = o->write;
        r = tp_nbd_open(loop, &no, nbd_opened, d);
        if (r < 0)
                disk_free(d);
        return r;
}

uint64_t tp_disk_size(const tp_disk *d)
{
        return tp_nbd_size(d->nbd);
}

tp_nbd *tp_disk_nbd(tp_disk *d)
{
        return d->nbd;
}

const tp_nbd_stats *tp_disk_stats(const tp_disk *d)
{
        return d->nbd ? tp_nbd_get_stats(d->nbd) : &d->stats;
}

const char *const *tp_disk_notes(const tp_disk *d)
{
        return (const char *const *)d->notes;
}

/* --- the plan ------------------------------------------------------------ */

static void plan_finish(tp_disk *d, int r)
{
        const char *msg = r < 0 ? tp_nbd_error_message(d->nbd) : NULL;

        d->plan_done(d->plan_userdata, r, msg);
}

static void zeros_mapped(void *userdata, int r)
{
        tp_disk *d = userdata;

        plan_finish(d, r);
}

static void dirty_mapped(void *userdata, int r)
{
        tp_disk *d = userdata;

        if (r >= 0 && tp_nbd_has_context(d->nbd, TP_CONTEXT_ALLOCATION)) {
                r = tp_nbd_map(d->nbd, TP_CONTEXT_ALLOCATION, LIBNBD_STATE_ZERO, LIBNBD_STATE_ZERO, &d->zeros,
                               zeros_mapped, d);
                if (r >= 0)
                        return;
        }
        plan_finish(d, r);
}

static void full_mapped(void *userdata, int r)
{
        plan_finish(userdata, r);
}

int tp_disk_plan(tp_disk *d, bool incremental, dd_extents *read, bool *is_incremental, tp_disk_done_fn done,
                 void *userdata)
{
        if (!read || !is_incremental || !done)
                return -EINVAL;
        d->read = read;
        d->is_incremental = is_incremental;
        d->plan_done = done;
        d->plan_userdata = userdata;
        dd_extents_clear(&d->zeros);
        if (incremental && !d->dirty_context)
                return -EINVAL;
        if (incremental && tp_nbd_has_context(d->nbd, d->dirty_context)) {
                *is_incremental = true;
                return tp_nbd_map(d->nbd, d->dirty_context, 1, 1, read, dirty_mapped, d);
        }
        if (incremental)
                tp_disk_add_note(d, "%s offers no %s (the checkpoint is missing): reading all allocated data",
                                 d->source, d->dirty_context);
        *is_incremental = false;
        if (tp_nbd_has_context(d->nbd, TP_CONTEXT_ALLOCATION))
                return tp_nbd_map(d->nbd, TP_CONTEXT_ALLOCATION, LIBNBD_STATE_ZERO, 0, read, full_mapped, d);
        tp_disk_add_note(d, "%s offers no %s: reading the whole volume", d->source, TP_CONTEXT_ALLOCATION);
        dd_extents_clear(read);
        if (tp_disk_size(d) > 0 && dd_extents_add(read, 0, tp_disk_size(d)) < 0)
                return -ENOMEM;
        /* Report from the loop like every other path. */
        return tp_nbd_pread(d->nbd, NULL, 0, 0, full_mapped, d);
}

void tp_disk_source(tp_disk *d, sp_source *ret)
{
        tp_nbd_source(d->nbd, d->zeros.n ? &d->zeros : NULL, ret);
}

void tp_disk_target(tp_disk *d, sp_target *ret)
{
        tp_nbd_target(d->nbd, ret);
}

static void commit_done(void *userdata, int r)
{
        tp_disk *d = userdata;

        d->plan_done(d->plan_userdata, r, NULL);
}

static void bitmap_removed(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;

        /* Already gone is fine: the goal is that it does not linger. */
        if (r == VB_E_NOT_FOUND)
                r = 0;
        d->plan_done(d->plan_userdata, r ? -EIO : 0, msg);
}

static void commit_disk_closed(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;
        int k;

        /* The export held the image; now the old checkpoint can go. */
        k = tp_cvd_bitmap_remove(d->client, d->url.vm, d->url.path, d->since, bitmap_removed, d);
        if (k < 0)
                d->plan_done(d->plan_userdata, k, "cannot ask the disk service to remove the old checkpoint");
}

static void commit_nbd_closed(void *userdata)
{
        tp_disk *d = userdata;
        int k;

        d->nbd = NULL;
        k = tp_cvd_disk_close(d->client, d->handle, commit_disk_closed, d);
        if (k < 0)
                d->plan_done(d->plan_userdata, k, "cannot close the disk on the disk service");
}

static void nothing_work(uv_work_t *w)
{
        (void)w;
}

static void nothing_done(uv_work_t *w, int status)
{
        tp_disk *d = w->data;

        (void)status;
        d->plan_done(d->plan_userdata, 0, NULL);
}

/* Calls plan_done(0) from the loop, never from inside the caller. */
static int report_later(tp_disk *d)
{
        d->later.data = d;
        return uv_queue_work(d->loop, &d->later, nothing_work, nothing_done);
}

int tp_disk_commit(tp_disk *d, tp_disk_done_fn done, void *userdata)
{
        bool drop = d->client && !d->client_lost && d->since && d->checkpoint && !streq(d->since, d->checkpoint);
        int k;

        d->plan_done = done;
        d->plan_userdata = userdata;
        if (d->released) {
                if (!drop)
                        return report_later(d);
                k = tp_cvd_bitmap_remove(d->client, d->url.vm, d->url.path, d->since, bitmap_removed, d);
                return k;
        }
        /* cvd: the new checkpoint took over; the one read from goes, once
         * the export is closed (it holds the image). Plain NBD: the
         * checkpoints belong to whoever runs the export. */
        if (drop) {
                d->stats = *tp_nbd_get_stats(d->nbd);
                tp_nbd_close(d->nbd, commit_nbd_closed, d);
                return 0;
        }
        return tp_nbd_pread(d->nbd, NULL, 0, 0, commit_done, d);
}

static void release_disk_closed(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        tp_disk *d = userdata;

        (void)c;
        d->released = true;
        /* Already gone is fine: the session may have ended with it. */
        if (r == VB_E_NOT_FOUND)
                r = 0;
        d->plan_done(d->plan_userdata, r ? -EIO : 0, r ? msg : NULL);
}

static void release_nbd_closed(void *userdata)
{
        tp_disk *d = userdata;
        int k;

        d->nbd = NULL;
        if (!d->client || d->client_lost) {
                d->released = true;
                d->plan_done(d->plan_userdata, 0, NULL);
                return;
        }
        k = tp_cvd_disk_close(d->client, d->handle, release_disk_closed, d);
        if (k < 0)
                d->plan_done(d->plan_userdata, k, "cannot close the disk on the disk service");
}

int tp_disk_release(tp_disk *d, tp_disk_done_fn done, void *userdata)
{
        d->plan_done = done;
        d->plan_userdata = userdata;
        if (!d->nbd || d->released) {
                d->released = true;
                return report_later(d);
        }
        d->stats = *tp_nbd_get_stats(d->nbd);
        tp_nbd_close(d->nbd, release_nbd_closed, d);
        return 0;
}

static void close_finish(tp_disk *d)
{
        void (*done)(void *) = d->close_done;
        void *ud = d->close_userdata;

        disk_free(d);
        if (done)
                done(ud);
}

static void close_disk_closed(tp_cvd_client *c, int r, const char *msg, void *userdata)
{
        (void)c;
        (void)r;
        (void)msg;
        close_finish(userdata);
}

static void nbd_closed(void *userdata)
{
        tp_disk *d = userdata;

        d->nbd = NULL;
        /* A disk service's export is closed in so many words, and its answer
         * waited for: the server lets go of the image (a qemu-nbd that held
         * its lock has exited) before the caller goes on, to start a VM on
         * a restored disk, say. Ending the session would close it too, but
         * without telling when. */
        if (d->client && !d->client_lost && d->handle && !d->released &&
            tp_cvd_disk_close(d->client, d->handle, close_disk_closed, d) >= 0)
                return;
        close_finish(d);
}

void tp_disk_close(tp_disk *d, void (*done)(void *userdata), void *userdata)
{
        if (!d)
                return;
        d->close_done = done;
        d->close_userdata = userdata;
        if (d->nbd)
                tp_nbd_close(d->nbd, nbd_closed, d);
        else
                nbd_closed(d);
}
