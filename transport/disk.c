/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * disk.c -- a VM disk over NBD or through a disk service (see disk.h).
 */
#include "transport/disk.h"

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/util.h"

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
                d->open_done(d->open_userdata, r, NULL, tp_nbd_open_error());
                disk_free(d);
                return;
        }
        d->nbd = n;
        d->open_done(d->open_userdata, 0, d, NULL);
}

int tp_disk_open(uv_loop_t *loop, const tp_disk_opts *o, tp_disk_open_fn done, void *userdata)
{
        tp_disk *d;
        tp_nbd_opts no;
        int r;

        if (!loop || !o || !o->source || !done)
                return -EINVAL;
        if (!is_scheme(o->source, "nbd") && !is_scheme(o->source, "nbd+unix") && !is_scheme(o->source, "nbds") &&
            !is_scheme(o->source, "nbds+unix"))
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

int tp_disk_commit(tp_disk *d, tp_disk_done_fn done, void *userdata)
{
        d->plan_done = done;
        d->plan_userdata = userdata;
        /* Plain NBD: the checkpoints belong to whoever runs the export. */
        return tp_nbd_pread(d->nbd, NULL, 0, 0, commit_done, d);
}

static void nbd_closed(void *userdata)
{
        tp_disk *d = userdata;
        void (*done)(void *) = d->close_done;
        void *ud = d->close_userdata;

        disk_free(d);
        if (done)
                done(ud);
}

void tp_disk_close(tp_disk *d, void (*done)(void *userdata), void *userdata)
{
        if (!d)
                return;
        d->close_done = done;
        d->close_userdata = userdata;
        tp_nbd_close(d->nbd, nbd_closed, d);
}
