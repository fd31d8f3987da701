/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * progress.c -- a one-line progress bar on stderr.
 */
#include "daemon/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "daemon/util.h"

#define BAR_WIDTH 30
#define REDRAW_NS (100 * 1000 * 1000ULL)

void vb_progress_init(vb_progress *p, const char *label, bool force)
{
        *p = (vb_progress){ .label = label, .enabled = force || isatty(STDERR_FILENO), .start_ns = vb_now_ns() };
}

static void draw(vb_progress *p, uint64_t done, uint64_t total, uint64_t now)
{
        char bar[BAR_WIDTH + 1], d[32], t[32], rate[32], eta[32] = "--:--";
        double secs = (double)(now - p->start_ns) / 1e9;
        double frac = total ? (double)done / (double)total : 1.0;
        double bps = secs > 0 ? (double)done / secs : 0;
        int fill = (int)(frac * BAR_WIDTH);

        for (int i = 0; i < BAR_WIDTH; i++)
                bar[i] = i < fill ? '#' : ' ';
        bar[BAR_WIDTH] = 0;
        if (bps > 0 && total >= done) {
                uint64_t left = (uint64_t)((double)(total - done) / bps);
                snprintf(eta, sizeof(eta), "%" PRIu64 ":%02" PRIu64, left / 60, left % 60);
        }
        fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s  ETA %s ", p->label, bar, (int)(frac * 100),
                vb_format_size(done, d, sizeof(d)), vb_format_size(total, t, sizeof(t)),
                vb_format_size((uint64_t)bps, rate, sizeof(rate)), eta);
        p->drawn = true;
}

void vb_progress_update(void *userdata, uint64_t done, uint64_t total)
{
        vb_progress *p = userdata;
        uint64_t now;

        if (!p->enabled)
                return;
        now = vb_now_ns();
        if (done < total && now - p->last_ns < REDRAW_NS)
                return;
        p->last_ns = now;
        draw(p, done, total, now);
}

void vb_progress_done(vb_progress *p)
{
        if (p->enabled && p->drawn)
                fputc('\n', stderr);
        p->drawn = false;
}

bool vb_rate_meter_update(vb_rate_meter *m, uint64_t done)
{
        uint64_t now = vb_now_ns();
        double rate;

        if (m->t_ns == 0 || done < m->done) {
                m->t_ns = now;
                m->done = done;
                return false;
        }
        if (now - m->t_ns < 1000000000ull)
                return false;
        rate = (double)(done - m->done) * 1e9 / (double)(now - m->t_ns);
        m->rate = m->rate > 0 ? 0.5 * m->rate + 0.5 * rate : rate;
        m->t_ns = now;
        m->done = done;
        return true;
}

json_t *vb_eta_json(uint64_t done, uint64_t total, double rate)
{
        if (rate <= 0 || total < done)
                return json_null();
        return json_integer((json_int_t)((double)(total - done) / rate + 0.5));
}
