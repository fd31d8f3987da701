/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restorer.c -- vbakd's restores: the request checked and resolved, the
 * plan, the catalog's record, the schedule (now, manual, once), the run of
 * the items within the limits, and the cleanup after a daemon that died
 * mid-restore. The request's format and the order of the steps are in
 * restorer.h.
 *
 * DESIGN: one struct (rst) carries a request on its way to a plan or a
 * new restore (plan, create), or one restore's run (run). Each goes:
 *
 *   parse (the loop: JSON only) -> resolve (the lane: pools, restore
 *   points, platform, password; the pools opened) -> connect (the loop)
 *   -> plan: every item planned in turn -> answered; create: recorded
 *   (the lane) -> started and answered once it runs (now), or answered
 *   with a timer set (once) or nothing more (manual); run: scripts ->
 *   items started while the limits allow.
 *
 * A run starts from the catalog (the restore's spec and its item rows),
 * whatever made it start: a create with schedule now, vb_restorer_start(),
 * a once timer. Each item moves through phases:
 *
 *   queued -> starting (its row begun) -> active (vb_vmrestore) ->
 *   finishing (its result recorded) -> done
 *
 * and counts against the limits from starting to finishing, on the host
 * its plan named when the restore was created. An item whose target VM
 * another restore is writing fails (E10); one whose target an item of its
 * own restore is writing waits for it. The engine names each volume
 * (the volume callback) before writing it: the item records it as
 * incomplete then, so that a crash leaves it named. The run ends once
 * every item is done and no catalog call of it is in flight; nothing of an
 * rst is freed while a lane call or an engine callback on it is pending.
 */
#include "daemon/restorer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "daemon/jobopts.h"
#include "daemon/log.h"
#include "daemon/progress.h"
#include "daemon/schedule.h"
#include "daemon/script.h"
#include "daemon/util.h"
#include "daemon/vmrestore.h"
#include "daemon/work.h"
#include "transport/rate.h"

#define VM_NAME_MAX 64
#define CPU_MAX 1024
#define MEMORY_MB_MAX (UINT64_C(1) << 24) /* 16 TiB */

typedef struct rst rst;

typedef enum rs_mode {
        MODE_PLAN,   /* a plan, nothing changed */
        MODE_CREATE, /* a plan, then a new restore */
        MODE_RUN,    /* a restore of the catalog, running */
} rs_mode;

typedef enum item_phase {
        IT_QUEUED,
        IT_STARTING,
        IT_ACTIVE,
        IT_FINISHING,
        IT_DONE,
} item_phase;

static const char *const phase_names[] = { "waiting", "starting", "running", "finishing", "done" };

typedef struct rpool {
        vb_pool rec;
        sp_pool *sp;
        int err; /* opening it failed: -errno */
} rpool;

typedef struct item {
        rst *r;
        unsigned idx;
        int64_t id;  /* its restore_items row (run) */
        json_t *set; /* the restore's settings with the item's over them */
        const char *rp_id, *pool_name;
        int64_t pool_id; /* the pool asked for (run: the recorded one); 0: find it */
        vb_restore_point rp;
        bool found;
        rpool *pool;
        /* Why it cannot be done, when resolving found out. */
        vb_error err;
        char *err_msg;
        char err_field[96];
        /* The engine's options and what they point to. */
        vb_vmrestore_opts o;
        const char **devices;
        vb_restore_disk *disks;
        size_t n_disks;
        vb_hv_nic_setting *nics;
        char *subdir; /* subdir_is_name: the VM's name */
        json_t *plan;
        char *target, *host;
        /* Running. */
        item_phase phase;
        bool counted; /* against the limits */
        char step[160];
        uint64_t done, total;
        vb_rate_meter meter;
        json_t *incomplete;    /* the volumes being written, as recorded */
        bool recording, again; /* a record of them in flight; another due */
        bool finish_due;       /* its result waits for that record */
        /* Its result. */
        vb_run_vm_status st;
        int code;
        char *message, *vm_id;
        json_t *volumes, *res_incomplete;
        uint64_t bytes_total, bytes_written;
} item;

struct rst {
        vb_restorer *rs;
        rst *next;
        rs_mode mode;
        int64_t id;
        json_t *req; /* the request, or the recorded spec */
        /* Parsed. */
        bool disk_kind, original;
        const char *platform_name;
        const char *schedule; /* now, manual, once */
        int64_t at;
        const char *label;
        vb_jobopts opts;
        item *items;
        size_t n_items;
        /* Loaded. */
        vb_restore row;
        vb_restore_item *rows;
        size_t n_rows;
        vb_platform platform;
        char *password;
        rpool *pools;
        size_t n_pools;
        const vb_hv_driver *drv;
        vb_hv *hv;
        vb_transfer_limits limits; /* the transfer and disk-write rates, shared by every disk */
        tp_disk_opts transfer;
        /* The answer. */
        vb_error err; /* of the request, or of the restore as a whole */
        char message[1024];
        char field[96];
        json_t *plan_items;
        bool overwrites;
        size_t cur;
        vb_restorer_plan_fn plan_done;
        vb_restorer_created_fn created;
        vb_restorer_done_fn started;
        void *userdata;
        bool answered;
        /* Running. */
        bool begun;    /* the catalog's restore_start succeeded (set on the lane) */
        bool live;     /* running: begun, seen on the loop */
        bool pumping;  /* past the scripts and the connection: items may start */
        bool scripted; /* the pre-script passed (or there is none): the post-script runs */
        bool stopping, skipped, ending;
        unsigned active, pending, max_active, max_per_host;
};

typedef struct waiter waiter;
struct waiter {
        vb_restorer *rs;
        waiter *next;
        int64_t id;
        uv_timer_t timer;
};

struct vb_restorer {
        vb_daemon *d;
        rst *list;
        waiter *waiters;
        bool shut;
        uint64_t generation;
        void (*on_change)(void *userdata, int64_t id);
        void *on_change_userdata;
        /* Recovery. */
        vb_restore *lost;
        size_t n_lost;
        vb_restore *waiting;
        size_t n_waiting;
        void (*recovered)(void *userdata, int r);
        void *recovered_userdata;
};

static void changed(rst *r)
{
        r->rs->generation++;
        if (r->rs->on_change && r->id > 0)
                r->rs->on_change(r->rs->on_change_userdata, r->id);
}

static void queue(rst *r, vb_work_fn fn, vb_work_done_fn done, void *ctx)
{
        int k = vb_lane_queue(r->rs->d->lane, fn, done, ctx);

        if (k < 0) /* only when the loop is closing: nothing more can happen */
                log_error("restore %" PRId64 ": cannot queue work: %s", r->id, strerror(-k));
}

static const char *jstr(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

/* ---- the end of an rst ---- */

static void item_clear(item *it)
{
        json_decref(it->set);
        vb_restore_point_clear(&it->rp);
        free(it->err_msg);
        free(it->devices);
        free(it->disks);
        free(it->nics);
        free(it->subdir);
        json_decref(it->plan);
        free(it->target);
        free(it->host);
        json_decref(it->incomplete);
        free(it->message);
        free(it->vm_id);
        json_decref(it->volumes);
        json_decref(it->res_incomplete);
}

static void rst_free(rst *r)
{
        for (rst **p = &r->rs->list; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        break;
                }
        for (size_t i = 0; i < r->n_items; i++)
                item_clear(&r->items[i]);
        free(r->items);
        if (r->hv)
                r->drv->disconnect(r->hv);
        for (size_t i = 0; i < r->n_pools; i++) {
                sp_pool_close(r->pools[i].sp);
                vb_pool_clear(&r->pools[i].rec);
        }
        free(r->pools);
        vb_transfer_limits_clear(&r->limits);
        vb_restore_clear(&r->row);
        vb_restore_items_free(r->rows, r->n_rows);
        vb_platform_clear(&r->platform);
        vb_credstore_password_free(r->password);
        json_decref(r->plan_items);
        json_decref(r->req);
        free(r);
}

/* The request's error (the first one stays): its code, message and field. */
static void req_error(rst *r, vb_error e, const char *field, const char *fmt, ...) _printf_(4, 5);
static void req_error(rst *r, vb_error e, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (r->err != VB_OK)
                return;
        r->err = e;
        snprintf(r->field, sizeof(r->field), "%s", field ?: "");
        va_start(ap, fmt);
        vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
}

static void item_error(item *it, vb_error e, const char *field, const char *fmt, ...) _printf_(4, 5);
static void item_error(item *it, vb_error e, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (it->err != VB_OK)
                return;
        it->err = e;
        snprintf(it->err_field, sizeof(it->err_field), "items[%u]%s%s", it->idx, field ? "." : "", field ?: "");
        va_start(ap, fmt);
        if (vasprintf(&it->err_msg, fmt, ap) < 0)
                it->err_msg = NULL;
        va_end(ap);
}

/* Answers the caller of plan, create or start, once. */
static void answer(rst *r, vb_error e, const char *message, int64_t id)
{
        json_t *plan = NULL;

        if (r->answered)
                return;
        r->answered = true;
        if (r->plan_items && (e == VB_OK || (e == VB_E_USAGE && streq(r->field, "confirm"))))
                plan = json_pack("{s:O, s:b}", "items", r->plan_items, "overwrites", r->overwrites);
        if (r->mode == MODE_PLAN && r->plan_done)
                r->plan_done(r->userdata, e, e == VB_OK ? NULL : message, r->field[0] ? r->field : NULL, plan);
        else if (r->mode == MODE_CREATE && r->created)
                r->created(r->userdata, e, e == VB_OK ? NULL : message, r->field[0] ? r->field : NULL, plan, id);
        else if (r->mode == MODE_RUN && r->started)
                r->started(r->userdata, e, e == VB_OK ? NULL : message);
        json_decref(plan);
}

/* ---- the request ---- */

enum {
        K_VM = 1u << 0, /* kind vm */
        K_DISK = 1u << 1,
        P_NEW = 1u << 2, /* new path */
        P_ORIG = 1u << 3,
};

typedef enum stype {
        S_STR,      /* a non-empty string */
        S_NAME,     /* a VM's or volume's name, a sub-directory (vb_restore_name_ok) */
        S_BOOL,     /* true, false */
        S_COUNT,    /* 1..CPU_MAX */
        S_MEMORY,   /* 1..MEMORY_MB_MAX */
        S_PREALLOC, /* thin, lazy, eager */
        S_CPU_MODE,
        S_STRV,  /* a non-empty array of distinct strings */
        S_DISKS, /* disk_settings */
        S_NICS,
        S_PATH, /* an absolute path */
} stype;

typedef struct setting {
        const char *key;
        stype type;
        unsigned where; /* K_* and P_* bits: kinds and paths it applies to */
} setting;

static const setting settings[] = {
        { "host", S_STR, K_VM | P_NEW },
        { "name", S_NAME, K_VM | K_DISK | P_NEW }, /* items only: the request's "name" is its label */
        { "prefix", S_STR, K_VM | P_NEW },
        { "suffix", S_STR, K_VM | P_NEW },
        { "storage_pool", S_STR, K_VM | K_DISK | P_NEW },
        { "preallocation", S_PREALLOC, K_VM | K_DISK | P_NEW },
        { "subdir", S_NAME, K_VM | K_DISK | P_NEW },
        { "subdir_is_name", S_BOOL, K_VM | K_DISK | P_NEW },
        { "disk_settings", S_DISKS, K_VM | P_NEW },
        { "nics", S_NICS, K_VM | P_NEW },
        { "cpu_sockets", S_COUNT, K_VM | P_NEW },
        { "cpu_cores", S_COUNT, K_VM | P_NEW },
        { "cpu_mode", S_CPU_MODE, K_VM | P_NEW },
        { "memory_mb", S_MEMORY, K_VM | P_NEW },
        { "disks", S_STRV, K_VM | P_NEW | P_ORIG },
        { "power_on", S_BOOL, K_VM | P_NEW | P_ORIG },
        { "overwrite", S_BOOL, K_VM | P_NEW },
        { "keep_mac", S_BOOL, K_VM | P_ORIG },
        { "disk", S_STR, K_DISK | P_NEW | P_ORIG },
        { "target_vm", S_STR, K_DISK | P_NEW },
        { "volume", S_PATH, K_DISK | P_NEW },
        { "restart", S_BOOL, K_DISK | P_NEW | P_ORIG },
};

static const setting *setting_find(const char *key)
{
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                if (streq(settings[i].key, key))
                        return &settings[i];
        return NULL;
}

static const char *const cpu_modes[] = { "compatible", "host-match", "passthrough" };

static bool name_ok(const char *s, size_t max)
{
        return s && strlen(s) <= max && vb_restore_name_ok(s);
}

/* A disk_settings entry. */
static int check_disk_setting(rst *r, const char *field, const json_t *e)
{
        static const char *const keys[] = { "device", "storage_pool", "preallocation", "subdir", "name", "volume" };
        const char *key;
        json_t *v;

        if (!json_is_object(e)) {
                req_error(r, VB_E_USAGE, field, "%s: an object {\"device\", \"storage_pool\", ...} is expected", field);
                return -EINVAL;
        }
        json_object_foreach((json_t *)e, key, v)
        {
                char f[256];
                bool known = false;

                snprintf(f, sizeof(f), "%.150s.%.64s", field, key);
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        known = known || streq(keys[i], key);
                if (!known) {
                        req_error(r, VB_E_USAGE, f,
                                  "%s: unknown setting (device, storage_pool, preallocation, subdir, "
                                  "name, volume)",
                                  f);
                        return -EINVAL;
                }
                if (json_is_null(v) && !streq(key, "device"))
                        continue;
                if (!json_is_string(v) || !json_string_value(v)[0]) {
                        req_error(r, VB_E_USAGE, f, "%s: a non-empty string is expected", f);
                        return -EINVAL;
                }
                if (streq(key, "preallocation") && vb_prealloc_from_string(json_string_value(v)) < 0) {
                        req_error(r, VB_E_USAGE, f, "%s: '%s' is not thin, lazy or eager", f, json_string_value(v));
                        return -EINVAL;
                }
                if ((streq(key, "subdir") || streq(key, "name")) && !name_ok(json_string_value(v), 128)) {
                        req_error(r, VB_E_USAGE, f,
                                  "%s: '%s' is not a valid name (letters, digits, '-', '_', '.'; not starting with "
                                  "'-' or '.'; not all digits; at most 128 bytes)",
                                  f, json_string_value(v));
                        return -EINVAL;
                }
                if (streq(key, "volume") && json_string_value(v)[0] != '/') {
                        req_error(r, VB_E_USAGE, f, "%s: '%s' is not an absolute path", f, json_string_value(v));
                        return -EINVAL;
                }
        }
        if (!jstr(e, "device")) {
                req_error(r, VB_E_USAGE, field, "%s: \"device\" is required", field);
                return -EINVAL;
        }
        return 0;
}

/* One setting's value; prefix: "" (the request's own) or "items[N]." */
static int check_setting(rst *r, const char *prefix, const char *key, json_t *v)
{
        const setting *s = setting_find(key);
        unsigned here = (r->disk_kind ? K_DISK : K_VM) | (r->original ? P_ORIG : P_NEW);
        char field[128];
        const char *str = json_string_value(v);
        json_int_t n;

        snprintf(field, sizeof(field), "%s%s", prefix, key);
        if (!s) {
                req_error(r, VB_E_USAGE, field, "%s: unknown setting", field);
                return -EINVAL;
        }
        /* Null and false mean "not given", also where the setting does not apply. */
        if (json_is_null(v) || json_is_false(v))
                goto type;
        if (!(s->where & (r->disk_kind ? K_DISK : K_VM))) {
                req_error(r, VB_E_USAGE, field, "%s: not a setting of a %s restore", field,
                          r->disk_kind ? "disk" : "VM");
                return -EINVAL;
        }
        if ((s->where & here & (P_NEW | P_ORIG)) == 0) {
                req_error(r, VB_E_USAGE, field, "%s: only for a restore to the %s path", field,
                          r->original ? "new" : "original");
                return -EINVAL;
        }
type:
        if (json_is_null(v))
                return 0;
        switch (s->type) {
        case S_STR:
        case S_NAME:
        case S_PATH:
        case S_PREALLOC:
        case S_CPU_MODE:
                if (!str || !str[0]) {
                        req_error(r, VB_E_USAGE, field, "%s: a non-empty string is expected", field);
                        return -EINVAL;
                }
                if (s->type == S_NAME && !name_ok(str, streq(key, "name") && !r->disk_kind ? VM_NAME_MAX : 128)) {
                        req_error(r, VB_E_USAGE, field,
                                  "%s: '%s' is not a valid name (letters, digits, '-', '_', '.'; not starting with "
                                  "'-' or '.'; not all digits; at most %d bytes)",
                                  field, str, streq(key, "name") && !r->disk_kind ? VM_NAME_MAX : 128);
                        return -EINVAL;
                }
                if (s->type == S_PATH && str[0] != '/') {
                        req_error(r, VB_E_USAGE, field, "%s: '%s' is not an absolute path", field, str);
                        return -EINVAL;
                }
                if (s->type == S_PREALLOC && vb_prealloc_from_string(str) < 0) {
                        req_error(r, VB_E_USAGE, field, "%s: '%s' is not thin, lazy or eager", field, str);
                        return -EINVAL;
                }
                if (s->type == S_CPU_MODE) {
                        bool ok = false;

                        for (size_t i = 0; i < ELEMENTSOF(cpu_modes); i++)
                                ok = ok || streq(cpu_modes[i], str);
                        if (!ok) {
                                req_error(r, VB_E_USAGE, field, "%s: '%s' is not compatible, host-match or passthrough",
                                          field, str);
                                return -EINVAL;
                        }
                }
                return 0;
        case S_BOOL:
                if (!json_is_boolean(v)) {
                        req_error(r, VB_E_USAGE, field, "%s: true or false is expected", field);
                        return -EINVAL;
                }
                return 0;
        case S_COUNT:
        case S_MEMORY:
                n = json_integer_value(v);
                if (!json_is_integer(v) || n < 1 || (uint64_t)n > (s->type == S_COUNT ? CPU_MAX : MEMORY_MB_MAX)) {
                        req_error(r, VB_E_USAGE, field, "%s: an integer from 1 to %" PRIu64 " is expected", field,
                                  s->type == S_COUNT ? (uint64_t)CPU_MAX : MEMORY_MB_MAX);
                        return -EINVAL;
                }
                return 0;
        case S_STRV:
                if (!json_is_array(v) || json_array_size(v) == 0) {
                        req_error(r, VB_E_USAGE, field, "%s: a non-empty array of disk names is expected", field);
                        return -EINVAL;
                }
                for (size_t i = 0; i < json_array_size(v); i++) {
                        const char *d = json_string_value(json_array_get(v, i));

                        if (!d || !d[0]) {
                                req_error(r, VB_E_USAGE, field, "%s[%zu]: a disk name is expected", field, i);
                                return -EINVAL;
                        }
                        for (size_t j = 0; j < i; j++)
                                if (streq(d, json_string_value(json_array_get(v, j)))) {
                                        req_error(r, VB_E_USAGE, field, "%s: %s is named twice", field, d);
                                        return -EINVAL;
                                }
                }
                return 0;
        case S_DISKS:
                if (!json_is_array(v)) {
                        req_error(r, VB_E_USAGE, field, "%s: an array of disk settings is expected", field);
                        return -EINVAL;
                }
                for (size_t i = 0; i < json_array_size(v); i++) {
                        char f[160];

                        snprintf(f, sizeof(f), "%s[%zu]", field, i);
                        if (check_disk_setting(r, f, json_array_get(v, i)) < 0)
                                return -EINVAL;
                        for (size_t j = 0; j < i; j++)
                                if (streq(jstr(json_array_get(v, i), "device"), jstr(json_array_get(v, j), "device"))) {
                                        req_error(r, VB_E_USAGE, f, "%s: disk %s has two entries", f,
                                                  jstr(json_array_get(v, i), "device"));
                                        return -EINVAL;
                                }
                }
                return 0;
        case S_NICS:
                if (!json_is_array(v)) {
                        req_error(r, VB_E_USAGE, field, "%s: an array of {\"vswitch\", \"profile\"} is expected",
                                  field);
                        return -EINVAL;
                }
                for (size_t i = 0; i < json_array_size(v); i++) {
                        json_t *nic = json_array_get(v, i), *x;
                        const char *k;
                        char f[160];

                        snprintf(f, sizeof(f), "%s[%zu]", field, i);
                        if (!json_is_object(nic)) {
                                req_error(r, VB_E_USAGE, f, "%s: an object {\"vswitch\", \"profile\"} is expected", f);
                                return -EINVAL;
                        }
                        json_object_foreach(nic, k, x)
                        {
                                if (!streq(k, "vswitch") && !streq(k, "profile")) {
                                        req_error(r, VB_E_USAGE, f, "%s.%s: unknown setting (vswitch, profile)", f, k);
                                        return -EINVAL;
                                }
                                if (!json_is_null(x) && (!json_is_string(x) || !json_string_value(x)[0])) {
                                        req_error(r, VB_E_USAGE, f, "%s.%s: a non-empty string is expected", f, k);
                                        return -EINVAL;
                                }
                        }
                }
                return 0;
        }
        return 0;
}

/* The restore's options: a subset of the job options, with restore
 * defaults, parsed by the job options' own parser. */
static const char *const restore_options[][2] = {
        { "parallel_vms", "parallel_vms" },
        { "parallel_vms_per_host", "parallel_vms_per_host" },
        { "parallel_disks", "parallel_disks" },
        { "network", "network" },
        { "reconnect_window", "reconnect_window" },
        { "resume_buffer", "resume_buffer" },
        { "write_buffer", "read_buffer" },
        { "transfer_rate", "transfer_rate" },
        { "disk_write_rate", "disk_read_rate" },
        { "network_timeout", "network_timeout" },
        { "transport_log_level", "transport_log_level" },
        { "streams_per_disk", "streams_per_disk" },
        { "precondition", "precondition" },
        { "pre_script", "pre_script" },
        { "post_script", "post_script" },
        { "script_timeout", "script_timeout" },
};

static void restore_defaults(vb_jobopts *o)
{
        vb_jobopts_defaults(o);
        o->parallel_vms = 2;
        o->parallel_vms_per_host = 2;
        o->parallel_disks = 1;
}

/* Puts the restore's names back in a job option parser's message. */
static void rename_options(char *msg, size_t size)
{
        for (size_t i = 0; i < ELEMENTSOF(restore_options); i++) {
                const char *ours = restore_options[i][0], *job = restore_options[i][1];
                char *p;

                if (streq(ours, job))
                        continue;
                while ((p = strstr(msg, job))) {
                        size_t lj = strlen(job), lo = strlen(ours), rest = strlen(p + lj);

                        if (strlen(msg) - lj + lo + 1 > size)
                                break;
                        memmove(p + lo, p + lj, rest + 1);
                        memcpy(p, ours, lo);
                }
        }
}

static int parse_options(rst *r, json_t *obj)
{
        _cleanup_(json_decrefp) json_t *mapped = json_object();
        _cleanup_free_ char *err = NULL;
        const char *key;
        json_t *v;
        char field[96];
        int k;

        restore_defaults(&r->opts);
        if (!obj || json_is_null(obj))
                return 0;
        if (!json_is_object(obj)) {
                req_error(r, VB_E_USAGE, "options", "options: an object is expected");
                return -EINVAL;
        }
        if (!mapped)
                return -ENOMEM;
        json_object_foreach(obj, key, v)
        {
                const char *job = NULL;

                for (size_t i = 0; i < ELEMENTSOF(restore_options) && !job; i++)
                        if (streq(restore_options[i][0], key))
                                job = restore_options[i][1];
                snprintf(field, sizeof(field), "options.%s", key);
                if (!job) {
                        req_error(r, VB_E_USAGE, field, "%s: not an option of a restore", field);
                        return -EINVAL;
                }
                /* null puts a key back to the restore's default, which
                 * restore_defaults() holds already. */
                if (json_is_null(v))
                        continue;
                if (json_object_set(mapped, job, v) < 0)
                        return -ENOMEM;
        }
        k = vb_jobopts_from_json(&r->opts, mapped, &err);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                char msg[1024];
                size_t n;

                snprintf(msg, sizeof(msg), "%s", err ?: "bad options");
                rename_options(msg, sizeof(msg));
                n = strcspn(msg, ":");
                snprintf(field, sizeof(field), "options.%.*s", (int)MIN(n, (size_t)80), msg);
                req_error(r, VB_E_USAGE, msg[n] ? field : "options", "options.%s", msg);
                return -EINVAL;
        }
        return 0;
}

static bool all_digits(const char *s)
{
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* A once time: epoch seconds, the schedule's "DATE TIME [tz ZONE]" (or its
 * JSON object), or ISO 8601 local time YYYY-MM-DDTHH:MM[:SS]. */
static int parse_once(const json_t *t, int64_t *ret, char **why)
{
        _cleanup_free_ char *spec = NULL;
        vb_schedule s;
        time_t when;
        int k;

        if (json_is_integer(t)) {
                if (json_integer_value(t) <= 0)
                        return -EINVAL;
                *ret = json_integer_value(t);
                return 0;
        }
        if (json_is_object(t)) {
                _cleanup_(json_decrefp) json_t *o = json_deep_copy(t);

                if (!o || json_object_set_new(o, "kind", json_string("once")) < 0)
                        return -ENOMEM;
                k = vb_schedule_from_json(o, time(NULL), &s, why);
        } else if (json_is_string(t)) {
                const char *str = json_string_value(t);
                struct tm tm = { 0 };
                const char *end;

                if (all_digits(str)) {
                        *ret = strtoll(str, NULL, 10);
                        return *ret > 0 ? 0 : -EINVAL;
                }
                end = strptime(str, "%Y-%m-%dT%H:%M", &tm);
                if (end && *end == ':')
                        end = strptime(end, ":%S", &tm);
                if (end && *end == '\0') {
                        tm.tm_isdst = -1;
                        when = mktime(&tm);
                        if (when == (time_t)-1)
                                return -EINVAL;
                        *ret = (int64_t)when;
                        return 0;
                }
                if (asprintf(&spec, "once %s", str) < 0)
                        return -ENOMEM;
                k = vb_schedule_parse(spec, time(NULL), &s, why);
        } else {
                return -EINVAL;
        }
        if (k < 0)
                return k;
        if (s.kind != VB_SCHEDULE_ONCE || vb_schedule_next(&s, 0, &when) < 0)
                return -EINVAL;
        *ret = (int64_t)when;
        return 0;
}

static int parse_schedule(rst *r, const json_t *v)
{
        _cleanup_free_ char *why = NULL;
        const json_t *t;
        int k;

        r->schedule = "now";
        if (!v || json_is_null(v))
                return 0;
        if (json_is_string(v) && (streq(json_string_value(v), "now") || streq(json_string_value(v), "immediately")))
                return 0;
        if (json_is_string(v) && streq(json_string_value(v), "manual")) {
                r->schedule = "manual";
                return 0;
        }
        if (!json_is_object(v) || json_object_size(v) != 1 || !(t = json_object_get(v, "once"))) {
                req_error(r, VB_E_USAGE, "schedule", "schedule: \"now\", \"manual\" or {\"once\": TIME} is expected");
                return -EINVAL;
        }
        k = parse_once(t, &r->at, &why);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                req_error(r, VB_E_USAGE, "schedule.once",
                          "schedule.once: %s (epoch seconds, YYYY-MM-DD HH:MM [tz ZONE], or YYYY-MM-DDTHH:MM[:SS])",
                          why ?: "not a time");
                return -EINVAL;
        }
        r->schedule = "once";
        return 0;
}

static bool is_setting_key(const char *key)
{
        return setting_find(key) != NULL && !streq(key, "name");
}

/* The request (or a recorded spec) into r: JSON only, nothing looked up.
 * A run has its items already, from the catalog's rows. */
static int parse_request(rst *r)
{
        static const char *const top[] = {
                "kind", "path", "platform", "items", "options", "schedule", "name", "confirm"
        };
        json_t *req = r->req, *items, *v, *common;
        const char *key, *kind, *path;
        int k;

        if (!json_is_object(req)) {
                req_error(r, VB_E_USAGE, NULL, "the request must be a JSON object");
                return -EINVAL;
        }
        kind = jstr(req, "kind");
        path = jstr(req, "path");
        if ((json_object_get(req, "kind") && !json_is_null(json_object_get(req, "kind")) && !kind) ||
            (kind && !streq(kind, "vm") && !streq(kind, "disk"))) {
                req_error(r, VB_E_USAGE, "kind", "kind: \"vm\" or \"disk\" is expected");
                return -EINVAL;
        }
        if ((json_object_get(req, "path") && !json_is_null(json_object_get(req, "path")) && !path) ||
            (path && !streq(path, "new") && !streq(path, "original"))) {
                req_error(r, VB_E_USAGE, "path", "path: \"new\" or \"original\" is expected");
                return -EINVAL;
        }
        r->disk_kind = kind && streq(kind, "disk");
        r->original = path && streq(path, "original");
        v = json_object_get(req, "platform");
        if (v && !json_is_null(v) && (!json_is_string(v) || !json_string_value(v)[0])) {
                req_error(r, VB_E_USAGE, "platform", "platform: a platform's name is expected");
                return -EINVAL;
        }
        r->platform_name = json_string_value(v);
        v = json_object_get(req, "name");
        if (v && !json_is_null(v) && (!json_is_string(v) || !json_string_value(v)[0])) {
                req_error(r, VB_E_USAGE, "name", "name: the restore's label, a non-empty string, is expected");
                return -EINVAL;
        }
        r->label = json_string_value(v);
        k = parse_schedule(r, json_object_get(req, "schedule"));
        if (k < 0)
                return k;
        k = parse_options(r, json_object_get(req, "options"));
        if (k < 0)
                return k;

        /* The restore's own settings. */
        common = json_object();
        if (!common)
                return -ENOMEM;
        json_object_foreach(req, key, v)
        {
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(top); i++)
                        known = known || streq(top[i], key);
                if (known)
                        continue;
                if (!is_setting_key(key)) {
                        req_error(r, VB_E_USAGE, key, "%s: unknown field", key);
                        json_decref(common);
                        return -EINVAL;
                }
                if (check_setting(r, "", key, v) < 0) {
                        json_decref(common);
                        return -EINVAL;
                }
                json_object_set(common, key, v);
        }

        items = json_object_get(req, "items");
        if (!json_is_array(items) || json_array_size(items) == 0) {
                req_error(r, VB_E_USAGE, "items", "items: a non-empty array of {\"restore_point\", ...} is expected");
                json_decref(common);
                return -EINVAL;
        }
        if (r->items && r->n_items != json_array_size(items)) {
                req_error(r, VB_E_FAILED, "items", "the recorded restore has %zu items, its request %zu", r->n_items,
                          json_array_size(items));
                json_decref(common);
                return -EINVAL;
        }
        if (!r->items) {
                r->items = calloc(json_array_size(items), sizeof(*r->items));
                if (!r->items) {
                        json_decref(common);
                        return -ENOMEM;
                }
                r->n_items = json_array_size(items);
                for (size_t i = 0; i < r->n_items; i++)
                        r->items[i] = (item){ .r = r, .idx = (unsigned)i };
        }
        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];
                json_t *in = json_array_get(items, it->idx);
                char prefix[32], field[64];

                snprintf(prefix, sizeof(prefix), "items[%u].", it->idx);
                if (!json_is_object(in)) {
                        snprintf(field, sizeof(field), "items[%u]", it->idx);
                        req_error(r, VB_E_USAGE, field, "%s: an object {\"restore_point\", ...} is expected", field);
                        break;
                }
                it->set = json_copy(common);
                if (!it->set) {
                        json_decref(common);
                        return -ENOMEM;
                }
                json_object_foreach(in, key, v)
                {
                        snprintf(field, sizeof(field), "%s%s", prefix, key);
                        if (streq(key, "restore_point")) {
                                if (!json_is_string(v) || !json_string_value(v)[0])
                                        req_error(r, VB_E_USAGE, field, "%s: a restore point's id is expected", field);
                                continue;
                        }
                        if (streq(key, "pool")) {
                                if (!json_is_null(v) && (!json_is_string(v) || !json_string_value(v)[0]))
                                        req_error(r, VB_E_USAGE, field, "%s: a pool's name is expected", field);
                                continue;
                        }
                        if (check_setting(r, prefix, key, v) < 0)
                                break;
                        json_object_set(it->set, key, v);
                }
                if (r->err != VB_OK)
                        break;
                it->rp_id = jstr(in, "restore_point");
                it->pool_name = jstr(in, "pool");
                if (!it->rp_id) {
                        snprintf(field, sizeof(field), "%srestore_point", prefix);
                        req_error(r, VB_E_USAGE, field, "%s: the restore point to restore is required", field);
                        break;
                }
                if (r->disk_kind && !jstr(it->set, "disk")) {
                        snprintf(field, sizeof(field), "%sdisk", prefix);
                        req_error(r, VB_E_USAGE, field, "%s: a disk restore names its disk", field);
                        break;
                }
                if (r->disk_kind && !r->original && !jstr(it->set, "target_vm")) {
                        snprintf(field, sizeof(field), "%starget_vm", prefix);
                        req_error(r, VB_E_USAGE, field, "%s: a disk restore to a new path names the VM to attach to",
                                  field);
                        break;
                }
        }
        json_decref(common);
        return r->err != VB_OK ? -EINVAL : 0;
}

/* ---- resolving: pools, restore points, platform (the lane) ---- */

static rpool *pool_find(rst *r, int64_t id)
{
        for (size_t i = 0; i < r->n_pools; i++)
                if (r->pools[i].rec.id == id)
                        return &r->pools[i];
        return NULL;
}

/* Keeps p (moved in). */
static rpool *pool_add(rst *r, const vb_pool *p)
{
        rpool *n;

        n = realloc(r->pools, (r->n_pools + 1) * sizeof(*r->pools));
        if (!n)
                return NULL;
        r->pools = n;
        n = &r->pools[r->n_pools];
        *n = (rpool){ .rec = *p };
        r->n_pools++;
        return n;
}

static int resolve_item(rst *r, item *it, int64_t *pool_of)
{
        vb_catalog *c = r->rs->d->catalog;
        vb_pool pool = { 0 };
        int k;

        if (it->pool_id <= 0 && it->pool_name) {
                k = vb_catalog_pool_get(c, 0, it->pool_name, &pool);
                if (k == -ENOENT) {
                        item_error(it, VB_E_NOT_FOUND, "pool", "no pool %s", it->pool_name);
                        return 0;
                }
                if (k < 0)
                        return k;
                it->pool_id = pool.id;
                vb_pool_clear(&pool);
        }
        if (it->pool_id > 0) {
                k = vb_catalog_restore_point_get(c, it->pool_id, it->rp_id, &it->rp);
                if (k == -ENOENT) {
                        if (it->pool_name)
                                item_error(it, VB_E_NOT_FOUND, "restore_point", "no restore point %s in pool %s",
                                           it->rp_id, it->pool_name);
                        else
                                item_error(it, VB_E_NOT_FOUND, "restore_point",
                                           "restore point %s is not in its pool (id %" PRId64 ") any more", it->rp_id,
                                           it->pool_id);
                        return 0;
                }
                if (k < 0)
                        return k;
        } else {
                /* Any pool: exactly one must hold it. */
                vb_pool *pools = NULL;
                size_t n = 0, found = 0;
                char names[256] = "";

                k = vb_catalog_pool_list(c, &pools, &n);
                if (k < 0)
                        return k;
                for (size_t i = 0; i < n && k >= 0; i++) {
                        vb_restore_point rp = { 0 };

                        k = vb_catalog_restore_point_get(c, pools[i].id, it->rp_id, &rp);
                        if (k == -ENOENT) {
                                k = 0;
                                continue;
                        }
                        if (k < 0)
                                break;
                        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", found ? ", " : "",
                                 pools[i].name);
                        if (found++ == 0)
                                it->rp = rp;
                        else
                                vb_restore_point_clear(&rp);
                }
                vb_pools_free(pools, n);
                if (k < 0)
                        return k;
                if (found == 0) {
                        item_error(it, VB_E_NOT_FOUND, "restore_point", "no pool holds a restore point %s", it->rp_id);
                        return 0;
                }
                if (found > 1) {
                        item_error(it, VB_E_USAGE, "pool", "restore point %s is in pools %s: name one", it->rp_id,
                                   names);
                        return 0;
                }
                it->pool_id = it->rp.pool_id;
        }
        it->found = true;
        *pool_of = it->pool_id;
        return 0;
}

static int resolve_platform(rst *r)
{
        vb_catalog *c = r->rs->d->catalog;
        int64_t id = 0;
        const item *first = NULL;
        int k;

        if (r->platform_name) {
                k = vb_catalog_platform_get(c, 0, r->platform_name, &r->platform);
                if (k == -ENOENT) {
                        req_error(r, VB_E_NOT_FOUND, "platform", "no platform %s", r->platform_name);
                        return 0;
                }
                if (k < 0)
                        return k;
        } else {
                for (size_t i = 0; i < r->n_items; i++) {
                        const item *it = &r->items[i];

                        if (!it->found)
                                continue;
                        if (it->rp.platform_id <= 0) {
                                req_error(r, VB_E_USAGE, "platform",
                                          "the platform restore point %s was made on (%s) is not registered: name the "
                                          "target platform",
                                          it->rp.id, it->rp.platform ?: "unknown");
                                return 0;
                        }
                        if (id && it->rp.platform_id != id) {
                                req_error(r, VB_E_USAGE, "platform",
                                          "restore points %s and %s were made on different platforms: name the target "
                                          "platform",
                                          first->rp.id, it->rp.id);
                                return 0;
                        }
                        id = it->rp.platform_id;
                        first = it;
                }
                if (!id)
                        return 0; /* no item found: their errors say why */
                k = vb_catalog_platform_get(c, id, NULL, &r->platform);
                if (k == -ENOENT) {
                        req_error(r, VB_E_USAGE, "platform",
                                  "the platform restore point %s was made on is not registered: name the target "
                                  "platform",
                                  first->rp.id);
                        return 0;
                }
                if (k < 0)
                        return k;
        }
        k = vb_credstore_get(r->rs->d->creds, r->platform.name, &r->password);
        if (k < 0 && k != -ENOENT) {
                req_error(r, vb_error_from_errno(k), "platform", "platform %s: reading its password: %s",
                          r->platform.name, strerror(-k));
                return 0;
        }
        return 0;
}

/* Pools, restore points, platform, password; the pools opened. Errors of
 * the request or of an item are recorded, not returned: the return value
 * is for the catalog's own failures. */
static int resolve(rst *r)
{
        vb_catalog *c = r->rs->d->catalog;
        /* Each item's pool id; pointers into r->pools once it stops growing. */
        _cleanup_free_ int64_t *pool_of = calloc(r->n_items ?: 1, sizeof(int64_t));
        int k;

        if (!pool_of)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_items; i++) {
                k = resolve_item(r, &r->items[i], &pool_of[i]);
                if (k < 0)
                        return k;
        }
        k = resolve_platform(r);
        if (k < 0 || r->err != VB_OK)
                return k;
        for (size_t i = 0; i < r->n_items; i++) {
                vb_pool p = { 0 };

                if (!r->items[i].found || pool_find(r, pool_of[i]))
                        continue;
                k = vb_catalog_pool_get(c, pool_of[i], NULL, &p);
                if (k == -ENOENT) {
                        item_error(&r->items[i], VB_E_NOT_FOUND, "pool", "the pool of restore point %s is gone",
                                   r->items[i].rp_id);
                        r->items[i].found = false;
                        continue;
                }
                if (k < 0)
                        return k;
                if (!pool_add(r, &p)) {
                        vb_pool_clear(&p);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < r->n_pools; i++) {
                rpool *p = &r->pools[i];

                p->err = sp_pool_open(p->rec.path, &p->sp);
                if (p->err == -ENOENT)
                        p->err = -ENOTDIR;
        }
        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];

                if (!it->found)
                        continue;
                it->pool = pool_find(r, pool_of[i]);
                if (it->pool && it->pool->err < 0)
                        item_error(it,
                                   it->pool->err == -ENOTDIR ? VB_E_POOL_FORMAT : vb_error_from_errno(it->pool->err),
                                   "pool", "pool %s (%s): %s", it->pool->rec.name, it->pool->rec.path,
                                   it->pool->err == -ENOTDIR ? "there is no pool there" : strerror(-it->pool->err));
        }
        return 0;
}

/* ---- the engine's options ---- */

static const vb_hv_driver *driver_of(vb_platform_type t)
{
        return vb_hv_driver_find(vb_platform_type_to_string(t));
}

static const char *network_name(vb_job_network n)
{
        switch (n) {
        case VB_JOB_NETWORK_BACKUP:
                return "backup";
        case VB_JOB_NETWORK_STORAGE:
                return "storage";
        case VB_JOB_NETWORK_MANAGEMENT:
                return "management";
        default:
                return "adaptive";
        }
}

/* The transfer's options, as a run's from its job options; the rate limits
 * are shared by every disk of the restore. */
static int transfer_setup(rst *r)
{
        _cleanup_free_ char *why = NULL;
        const char *field = NULL;
        int k = vb_transfer_setup(&r->opts, r->rs->d->cfg.cvd_token_file, &r->limits, &r->transfer, &field, &why);

        if (k < 0)
                /* A restore's disk_write_rate is kept as the job option disk_read_rate. */
                req_error(r, VB_E_USAGE,
                          streq(field, "disk_read_rate") ? "options.disk_write_rate" : "options.transfer_rate",
                          "options.%s: %s", streq(field, "disk_read_rate") ? "disk_write_rate" : "transfer_rate",
                          why ?: "?");
        return k;
}

static void progress(void *userdata, uint64_t done, uint64_t total);
static void step(void *userdata, const char *what);
static void volume(void *userdata, const char *path);

/* The name the target VM will have (for subdir_is_name); NULL: no memory. */
static char *vm_name_of(const item *it)
{
        const json_t *s = it->set;
        const char *name;
        char *ret;

        if (it->r->disk_kind)
                name = it->r->original ? it->rp.vm_name : jstr(s, "target_vm");
        else if (it->r->original)
                name = it->rp.vm_name;
        else
                name = jstr(s, "name");
        if (name)
                return strdup(name);
        if (asprintf(&ret, "%s%s%s", jstr(s, "prefix") ?: "", it->rp.vm_name ?: "", jstr(s, "suffix") ?: "") < 0)
                return NULL;
        return ret;
}

static vb_prealloc prealloc_of(const char *s)
{
        return s ? (vb_prealloc)vb_prealloc_from_string(s) : VB_PREALLOC_DEFAULT;
}

/* Fills it->o from its settings; the request's errors say which field. */
static int item_build(item *it)
{
        rst *r = it->r;
        const json_t *s = it->set, *ds = json_object_get(s, "disk_settings"), *nics = json_object_get(s, "nics"),
                     *devs = json_object_get(s, "disks");
        vb_vmrestore_opts *o = &it->o;
        const char *subdir = jstr(s, "subdir");
        size_t n;

        if (json_is_true(json_object_get(s, "subdir_is_name"))) {
                it->subdir = vm_name_of(it);
                if (!it->subdir)
                        return -ENOMEM;
                if (!name_ok(it->subdir, 128)) {
                        item_error(it, VB_E_USAGE, "subdir_is_name",
                                   "the VM's name '%s' cannot be a sub-directory's (letters, digits, '-', '_', '.')",
                                   it->subdir);
                        return -EINVAL;
                }
                subdir = it->subdir;
        }
        *o = (vb_vmrestore_opts){
                .drv = r->drv,
                .hv = r->hv,
                .pool = it->pool->sp,
                .restore_point = it->rp.id,
                .kind = r->disk_kind ? VB_RESTORE_DISK : VB_RESTORE_VM,
                .original = r->original,
                .parallel_disks = r->opts.parallel_disks,
                .transfer = &r->transfer,
                .progress = r->mode == MODE_RUN ? progress : NULL,
                .step = r->mode == MODE_RUN ? step : NULL,
                .volume = r->mode == MODE_RUN ? volume : NULL,
                .userdata = it,
        };
        if (r->disk_kind) {
                it->disks = calloc(1, sizeof(*it->disks));
                if (!it->disks)
                        return -ENOMEM;
                it->disks[0] = (vb_restore_disk){ .device = jstr(s, "disk"),
                                                  .pool = jstr(s, "storage_pool"),
                                                  .subdir = subdir,
                                                  .name = jstr(s, "name"),
                                                  .volume = jstr(s, "volume"),
                                                  .prealloc = prealloc_of(jstr(s, "preallocation")) };
                it->n_disks = 1;
                o->disk = jstr(s, "disk");
                o->target_vm = jstr(s, "target_vm");
                o->restart = json_is_true(json_object_get(s, "restart"));
        } else {
                o->name = jstr(s, "name");
                o->prefix = jstr(s, "prefix");
                o->suffix = jstr(s, "suffix");
                o->host_id = jstr(s, "host");
                o->cpu_sockets = (unsigned)json_integer_value(json_object_get(s, "cpu_sockets"));
                o->cpu_cores = (unsigned)json_integer_value(json_object_get(s, "cpu_cores"));
                o->cpu_mode = jstr(s, "cpu_mode");
                o->memory_mb = (uint64_t)json_integer_value(json_object_get(s, "memory_mb"));
                o->overwrite = json_is_true(json_object_get(s, "overwrite"));
                o->keep_mac = json_is_true(json_object_get(s, "keep_mac"));
                o->power_on = json_is_true(json_object_get(s, "power_on"));
                n = json_array_size(devs);
                if (n) {
                        it->devices = calloc(n, sizeof(*it->devices));
                        if (!it->devices)
                                return -ENOMEM;
                        for (size_t i = 0; i < n; i++)
                                it->devices[i] = json_string_value(json_array_get(devs, i));
                        o->devices = it->devices;
                        o->n_devices = n;
                }
                /* One entry per disk_settings entry, each falling back to the
                 * restore's pool, sub-directory and preallocation; then the
                 * entry for every other disk. */
                it->disks = calloc(json_array_size(ds) + 1, sizeof(*it->disks));
                if (!it->disks)
                        return -ENOMEM;
                for (size_t i = 0; i < json_array_size(ds); i++) {
                        const json_t *e = json_array_get(ds, i);

                        it->disks[it->n_disks++] = (vb_restore_disk){
                                .device = jstr(e, "device"),
                                .pool = jstr(e, "storage_pool") ?: jstr(s, "storage_pool"),
                                .subdir = jstr(e, "subdir") ?: subdir,
                                .name = jstr(e, "name"),
                                .volume = jstr(e, "volume"),
                                .prealloc = prealloc_of(jstr(e, "preallocation") ?: jstr(s, "preallocation")),
                        };
                }
                if (jstr(s, "storage_pool") || jstr(s, "preallocation") || subdir)
                        it->disks[it->n_disks++] = (vb_restore_disk){
                                .pool = jstr(s, "storage_pool"),
                                .subdir = subdir,
                                .prealloc = prealloc_of(jstr(s, "preallocation")),
                        };
                if (json_is_array(nics)) {
                        n = json_array_size(nics);
                        it->nics = calloc(n ?: 1, sizeof(*it->nics));
                        if (!it->nics)
                                return -ENOMEM;
                        for (size_t i = 0; i < n; i++)
                                it->nics[i] = (vb_hv_nic_setting){
                                        .vswitch = jstr(json_array_get(nics, i), "vswitch"),
                                        .profile = jstr(json_array_get(nics, i), "profile"),
                                };
                        o->nics = it->nics;
                        o->n_nics = n;
                        o->nics_set = true;
                }
        }
        o->disks = it->disks;
        o->n_disks = it->n_disks;
        return 0;
}

/* The driver and every item's options, once resolved. */
static int build(rst *r)
{
        int k;

        r->drv = driver_of(r->platform.type);
        if (!r->drv) {
                req_error(r, VB_E_USAGE, "platform", "platform %s is of type %s: restores to it are not supported",
                          r->platform.name, vb_platform_type_to_string(r->platform.type) ?: "?");
                return -EINVAL;
        }
        k = transfer_setup(r);
        if (k < 0)
                return k;
        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];

                if (it->err != VB_OK || !it->found || !it->pool)
                        continue;
                k = item_build(it);
                if (k == -ENOMEM)
                        return k;
        }
        return 0;
}

static void platform_connect(rst *r, vb_hv_connect_fn done)
{
        vb_hv_opts ho = { .name = r->platform.name,
                          .address = r->platform.address,
                          .user = r->platform.user,
                          .password = r->password,
                          .insecure = r->platform.insecure,
                          .network = network_name(r->opts.network),
                          .timeout_ms = r->opts.network_timeout * 1000,
                          .cvd_port = (unsigned)r->rs->d->cfg.cvd_port,
                          .runtime_dir = r->rs->d->cfg.runtime_dir };
        int k = r->drv->connect(r->rs->d->loop, &ho, done, r);

        if (k < 0)
                done(r, vb_error_from_net_errno(k), strerror(-k), NULL);
}

/* ---- plan, create ---- */

static void req_end(rst *r)
{
        answer(r, r->err ?: VB_E_FAILED, r->message[0] ? r->message : "the restore could not be planned", 0);
        rst_free(r);
}

static int add_work(void *ctx)
{
        rst *r = ctx;
        vb_restore rec = { .name = (char *)r->label,
                           .kind = (char *)(r->disk_kind ? "disk" : "vm"),
                           .path = (char *)(r->original ? "original" : "new"),
                           .schedule = (char *)r->schedule,
                           .at = r->at };
        vb_restore_item *rows = calloc(r->n_items, sizeof(*rows));
        json_t *spec = json_copy(r->req);
        int k;

        if (!rows || !spec) {
                free(rows);
                json_decref(spec);
                return -ENOMEM;
        }
        json_object_del(spec, "confirm");
        rec.spec = spec;
        for (size_t i = 0; i < r->n_items; i++) {
                const item *it = &r->items[i];

                rows[i] = (vb_restore_item){ .idx = it->idx,
                                             .pool_id = it->rp.pool_id,
                                             .restore_point = it->rp.id,
                                             .vm_name = it->rp.vm_name,
                                             .disk = r->disk_kind ? (char *)jstr(it->set, "disk") : NULL,
                                             .target = it->target,
                                             .host_id = it->host };
        }
        k = vb_catalog_restore_add(r->rs->d->catalog, &rec, rows, r->n_items, &r->id);
        free(rows);
        json_decref(spec);
        return k;
}

static void waiter_arm(vb_restorer *rs, int64_t id, int64_t at);
static int run_start(vb_restorer *rs, int64_t id, vb_restorer_done_fn done, void *userdata);

static void once_started(void *userdata, vb_error e, const char *message)
{
        (void)userdata;
        if (e != VB_OK)
                log_warning("a restore did not start: %s", message ?: vb_error_name(e));
}

/* A restore created to run now: its creator is answered once it runs (or
 * could not start), so that the answer shows it running. */
static void created_started(void *userdata, vb_error e, const char *message)
{
        rst *r = userdata;

        if (e != VB_OK)
                log_warning("restore %" PRId64 " did not start: %s", r->id, message ?: vb_error_name(e));
        answer(r, VB_OK, NULL, r->id);
        rst_free(r);
}

static void added(void *ctx, int k)
{
        rst *r = ctx;
        vb_restorer *rs = r->rs;
        int64_t id = r->id;

        if (k < 0) {
                req_error(r, vb_error_from_errno(k), NULL, "recording the restore: %s", strerror(-k));
                return req_end(r);
        }
        log_info("restore %" PRId64 " created: %zu %s item(s) to platform %s, %s path, schedule %s", id, r->n_items,
                 r->disk_kind ? "disk" : "vm", r->platform.name, r->original ? "original" : "new", r->schedule);
        if (streq(r->schedule, "now")) {
                if (run_start(rs, id, created_started, r) == 0)
                        return;
                log_error("restore %" PRId64 ": cannot start it", id);
        } else if (streq(r->schedule, "once")) {
                waiter_arm(rs, id, r->at);
        }
        answer(r, VB_OK, NULL, id);
        rst_free(r);
}

static void planned_all(rst *r)
{
        /* Two items may not restore to one VM. */
        for (size_t i = 0; i < r->n_items; i++)
                for (size_t j = 0; j < i; j++)
                        if (!r->disk_kind && streq_ptr(r->items[i].target, r->items[j].target)) {
                                char field[48];

                                snprintf(field, sizeof(field), "items[%u]", r->items[i].idx);
                                req_error(r, VB_E_USAGE, field, "items %u and %u both restore to vm %s",
                                          r->items[j].idx, r->items[i].idx, r->items[i].target);
                                json_decref(TAKE_PTR(r->plan_items));
                                return req_end(r);
                        }
        if (r->mode == MODE_PLAN) {
                answer(r, VB_OK, NULL, 0);
                return rst_free(r);
        }
        if (!json_is_true(json_object_get(r->req, "confirm"))) {
                req_error(r, VB_E_USAGE, "confirm", "confirm: the restore %s; send it again with \"confirm\": true",
                          r->overwrites ? "overwrites or deletes what exists" : "is not confirmed");
                return req_end(r);
        }
        queue(r, add_work, added, r);
}

static void plan_next(rst *r);

static void item_planned(void *userdata, vb_error e, const char *message, json_t *plan)
{
        item *it = userdata;
        rst *r = it->r;
        const json_t *t = json_object_get(plan, "target");
        char field[48];

        if (e != VB_OK) {
                snprintf(field, sizeof(field), "items[%u]", it->idx);
                req_error(r, e, field, "%s: %s", field, message ?: vb_error_name(e));
                json_decref(TAKE_PTR(r->plan_items));
                return req_end(r);
        }
        it->plan = json_incref(plan);
        it->target = jstr(t, "name") ? strdup(jstr(t, "name")) : NULL;
        it->host = jstr(t, "host") ? strdup(jstr(t, "host")) : NULL;
        if (json_is_true(json_object_get(plan, "overwrites")))
                r->overwrites = true;
        if (json_array_append(r->plan_items, plan) < 0) {
                req_error(r, VB_E_FAILED, NULL, "plan: %s", strerror(ENOMEM));
                return req_end(r);
        }
        r->cur++;
        plan_next(r);
}

static void plan_next(rst *r)
{
        item *it;
        int k;

        if (r->cur == r->n_items)
                return planned_all(r);
        it = &r->items[r->cur];
        k = vb_vmrestore_plan(r->rs->d->loop, &it->o, item_planned, it);
        if (k < 0)
                item_planned(it, k == -EINVAL ? VB_E_USAGE : vb_error_from_errno(k), strerror(-k), NULL);
}

static void plan_connected(void *userdata, vb_error e, const char *msg, vb_hv *hv)
{
        rst *r = userdata;

        if (e != VB_OK) {
                req_error(r, e, "platform", "platform %s: %s", r->platform.name, msg ?: vb_error_name(e));
                return req_end(r);
        }
        r->hv = hv;
        for (size_t i = 0; i < r->n_items; i++)
                r->items[i].o.hv = hv;
        r->plan_items = json_array();
        if (!r->plan_items) {
                req_error(r, VB_E_FAILED, NULL, "plan: %s", strerror(ENOMEM));
                return req_end(r);
        }
        r->cur = 0;
        plan_next(r);
}

static int req_resolve_work(void *ctx)
{
        return resolve(ctx);
}

static void req_resolved(void *ctx, int k)
{
        rst *r = ctx;

        if (k < 0)
                req_error(r, vb_error_from_errno(k), NULL, "the catalog: %s", strerror(-k));
        for (size_t i = 0; i < r->n_items && r->err == VB_OK; i++)
                if (r->items[i].err != VB_OK)
                        req_error(r, r->items[i].err, r->items[i].err_field, "%s: %s", r->items[i].err_field,
                                  r->items[i].err_msg ?: vb_error_name(r->items[i].err));
        if (r->err == VB_OK) {
                k = build(r);
                if (k == -ENOMEM)
                        req_error(r, VB_E_FAILED, NULL, "%s", strerror(ENOMEM));
        }
        for (size_t i = 0; i < r->n_items && r->err == VB_OK; i++)
                if (r->items[i].err != VB_OK)
                        req_error(r, r->items[i].err, r->items[i].err_field, "%s: %s", r->items[i].err_field,
                                  r->items[i].err_msg ?: vb_error_name(r->items[i].err));
        if (r->err != VB_OK)
                return req_end(r);
        platform_connect(r, plan_connected);
}

static int noop_work(void *ctx)
{
        (void)ctx;
        return 0;
}

static void parse_failed(void *ctx, int k)
{
        (void)k;
        req_end(ctx);
}

static rst *rst_new(vb_restorer *rs, rs_mode mode)
{
        rst *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        r->rs = rs;
        r->mode = mode;
        /* On the list from the start: the restorer stays while it lives. */
        r->next = rs->list;
        rs->list = r;
        return r;
}

static int request(vb_restorer *rs, rs_mode mode, json_t *req, vb_restorer_plan_fn plan_done,
                   vb_restorer_created_fn created, void *userdata)
{
        rst *r;
        int k;

        if (!rs || !req)
                return -EINVAL;
        r = rst_new(rs, mode);
        if (!r)
                return -ENOMEM;
        r->req = json_incref(req);
        r->plan_done = plan_done;
        r->created = created;
        r->userdata = userdata;
        k = parse_request(r);
        if (k == -ENOMEM) {
                r->answered = true;
                rst_free(r);
                return k;
        }
        /* A bad request is answered from the loop too, never from inside
         * this call. */
        if (k < 0)
                queue(r, noop_work, parse_failed, r);
        else
                queue(r, req_resolve_work, req_resolved, r);
        return 0;
}

int vb_restorer_plan(vb_restorer *rs, json_t *request_json, vb_restorer_plan_fn done, void *userdata)
{
        return request(rs, MODE_PLAN, request_json, done, NULL, userdata);
}

int vb_restorer_create(vb_restorer *rs, json_t *request_json, vb_restorer_created_fn done, void *userdata)
{
        return request(rs, MODE_CREATE, request_json, NULL, done, userdata);
}

/* ---- a run: the end ---- */

static int finish_work(void *ctx)
{
        rst *r = ctx;
        vb_catalog *c = r->rs->d->catalog;
        vb_restore info = { 0 };
        vb_run_status st;
        int k;

        k = vb_catalog_restore_get(c, r->id, &info);
        if (k < 0)
                return k;
        if (r->stopping)
                st = VB_RUN_STOPPED;
        else if (r->skipped)
                st = VB_RUN_SKIPPED;
        else if (r->err != VB_OK || info.n_succeeded == 0)
                st = VB_RUN_FAILED;
        else if (info.n_succeeded == info.n_items)
                st = VB_RUN_SUCCEEDED;
        else
                st = VB_RUN_PARTIAL;
        k = vb_catalog_restore_finish(c, r->id, st, r->err, r->message[0] ? r->message : NULL);
        if (k >= 0)
                log_info("restore %" PRId64 " ended %s; at most %u VMs at once, %u on one host (limits %u, %u; %u of "
                         "%u items succeeded)",
                         r->id, vb_run_status_to_string(st), r->max_active, r->max_per_host, r->opts.parallel_vms,
                         r->opts.parallel_vms_per_host, info.n_succeeded, info.n_items);
        vb_restore_clear(&info);
        return k;
}

static void finish_done(void *ctx, int k)
{
        rst *r = ctx;
        vb_restorer *rs = r->rs;
        int64_t id = r->id;

        if (k < 0)
                log_error("restore %" PRId64 ": recording its end: %s", r->id, strerror(-k));
        answer(r, r->err ?: VB_E_FAILED, r->message[0] ? r->message : "the restore could not start", r->id);
        /* Off the list first: whoever the change wakes sees the record. */
        rst_free(r);
        rs->generation++;
        if (rs->on_change)
                rs->on_change(rs->on_change_userdata, id);
}

static char **script_env(rst *r, char *buf, size_t size, char **env)
{
        snprintf(buf, size, "VBAK_RESTORE=%" PRId64, r->id);
        env[0] = buf;
        env[1] = NULL;
        return env;
}

/* A pre- or post-script that did not succeed fails the restore (E21). */
static void script_check(rst *r, const char *what, int k, const vb_script_result *res)
{
        vb_error e = VB_E_SCRIPT;

        if (r->err != VB_OK)
                return;
        if (k < 0)
                snprintf(r->message, sizeof(r->message), "restore %" PRId64 ": %s could not start: %s", r->id, what,
                         strerror(-k));
        else if (res->timed_out)
                snprintf(r->message, sizeof(r->message), "restore %" PRId64 ": %s outlived its timeout (%" PRIu64 " s)",
                         r->id, what, r->opts.script_timeout);
        else if (res->exit_status != 0)
                snprintf(r->message, sizeof(r->message), "restore %" PRId64 ": %s exited %d%s%s", r->id, what,
                         res->exit_status, res->output[0] ? ": " : "", res->output);
        else
                return;
        r->err = e;
        log_error("%s", r->message);
}

static void post_done(void *userdata, int k, const vb_script_result *res)
{
        rst *r = userdata;

        script_check(r, "post-script", k, res);
        queue(r, finish_work, finish_done, r);
}

/* Every item is done: the post-script, then the end. */
static void run_end(rst *r)
{
        char buf[64], label[128], *env[2];
        int k;

        if (r->ending)
                return;
        r->ending = true;
        if (!r->opts.post_script[0] || !r->scripted)
                return queue(r, finish_work, finish_done, r);
        snprintf(label, sizeof(label), "restore %" PRId64 ": post-script", r->id);
        k = vb_script_run(r->rs->d->loop, label, r->opts.post_script, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, post_done, r);
        if (k < 0)
                post_done(r, k, NULL);
}

/* ---- a run: one item ---- */

static void pump(rst *r);

static void result_set(item *it, vb_run_vm_status st, int code, const char *fmt, ...) _printf_(4, 5);
static void result_set(item *it, vb_run_vm_status st, int code, const char *fmt, ...)
{
        va_list ap;

        it->st = st;
        it->code = code;
        free(it->message);
        it->message = NULL;
        if (fmt) {
                va_start(ap, fmt);
                if (vasprintf(&it->message, fmt, ap) < 0)
                        it->message = NULL;
                va_end(ap);
        }
}

static unsigned host_load(rst *r, const char *host)
{
        unsigned n = 0;

        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];

                if (it->counted && streq_ptr(it->host, host))
                        n++;
        }
        return n;
}

static int item_finish_work(void *ctx)
{
        item *it = ctx;
        vb_restore_item res = { .status = it->st,
                                .error_code = it->code,
                                .message = it->message,
                                .target_vm_id = it->vm_id,
                                .volumes = it->volumes,
                                .incomplete = it->res_incomplete ?: it->incomplete,
                                .bytes_total = it->bytes_total,
                                .bytes_written = it->bytes_written };

        return vb_catalog_restore_item_finish(it->r->rs->d->catalog, it->id, &res);
}

static void item_finished(void *ctx, int k)
{
        item *it = ctx;
        rst *r = it->r;

        if (k < 0)
                log_error("restore %" PRId64 ": item %u: recording its result: %s", r->id, it->idx, strerror(-k));
        log_info("restore %" PRId64 ": item %u (%s from %s) %s%s%s", r->id, it->idx, it->target ?: "?",
                 it->rp_id ?: "?", vb_run_vm_status_to_string(it->st), it->message ? ": " : "", it->message ?: "");
        if (it->counted) {
                it->counted = false;
                r->active--;
        } else {
                r->pending--;
        }
        it->phase = IT_DONE;
        it->step[0] = '\0';
        changed(r);
        pump(r);
}

static void item_record(item *it)
{
        it->phase = IT_FINISHING;
        if (it->recording) { /* after the volumes' record in flight */
                it->finish_due = true;
                return;
        }
        queue(it->r, item_finish_work, item_finished, it);
}

/* Fails an item that does not start (stopped, the restore failed, its own
 * error, a target busy): recorded without counting against the limits. */
static void item_drop(item *it)
{
        it->r->pending++;
        item_record(it);
}

static int volumes_work(void *ctx)
{
        item *it = ctx;

        return vb_catalog_restore_item_volumes(it->r->rs->d->catalog, it->id, it->incomplete);
}

static void volumes_recorded(void *ctx, int k)
{
        item *it = ctx;

        it->recording = false;
        if (k < 0)
                log_warning("restore %" PRId64 ": item %u: recording its volumes: %s", it->r->id, it->idx,
                            strerror(-k));
        if (it->finish_due) {
                it->finish_due = false;
                return queue(it->r, item_finish_work, item_finished, it);
        }
        if (it->again) {
                it->again = false;
                it->recording = true;
                queue(it->r, volumes_work, volumes_recorded, it);
        }
}

/* A volume about to be written (vb_vmrestore_opts.volume): named
 * incomplete in the catalog first. */
static void volume(void *userdata, const char *path)
{
        item *it = userdata;

        for (size_t i = 0; i < json_array_size(it->incomplete); i++)
                if (streq_ptr(json_string_value(json_array_get(it->incomplete, i)), path))
                        return;
        if (!it->incomplete && !(it->incomplete = json_array()))
                return;
        json_array_append_new(it->incomplete, json_string(path));
        if (it->recording) {
                it->again = true;
                return;
        }
        it->recording = true;
        queue(it->r, volumes_work, volumes_recorded, it);
}

static json_t *strv_to_json(char **v, size_t n)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static void restored(void *userdata, const vb_vmrestore_result *res)
{
        item *it = userdata;

        if (res->r == VB_OK)
                result_set(it, VB_RUN_VM_SUCCEEDED, 0, NULL);
        else
                result_set(it, VB_RUN_VM_FAILED, res->r, "%s", res->message);
        free(it->vm_id);
        it->vm_id = res->vm_id ? strdup(res->vm_id) : NULL;
        if (res->vm_name && !streq_ptr(res->vm_name, it->target)) {
                free(it->target);
                it->target = strdup(res->vm_name);
        }
        json_decref(it->volumes);
        it->volumes = strv_to_json(res->volumes, res->n_volumes);
        json_decref(it->res_incomplete);
        it->res_incomplete = strv_to_json(res->incomplete, res->n_incomplete);
        it->bytes_total = res->bytes_total;
        it->bytes_written = res->bytes_written;
        it->done = res->bytes_written;
        it->total = res->bytes_total;
        item_record(it);
}

static void progress(void *userdata, uint64_t done, uint64_t total)
{
        item *it = userdata;

        it->done = done;
        it->total = total;
        if (vb_rate_meter_update(&it->meter, done))
                changed(it->r);
}

static void step(void *userdata, const char *what)
{
        item *it = userdata;

        snprintf(it->step, sizeof(it->step), "%s", what);
        log_info("restore %" PRId64 ": item %u (%s): %s", it->r->id, it->idx, it->target ?: "?", what);
        changed(it->r);
}

static int item_begin_work(void *ctx)
{
        item *it = ctx;

        return vb_catalog_restore_item_begin(it->r->rs->d->catalog, it->id, NULL);
}

static void item_begun(void *ctx, int k)
{
        item *it = ctx;
        rst *r = it->r;

        if (k < 0) {
                result_set(it, VB_RUN_VM_FAILED, vb_error_from_errno(k), "beginning the item: %s", strerror(-k));
                return item_record(it);
        }
        if (r->stopping) {
                result_set(it, VB_RUN_VM_FAILED, VB_E_INTERRUPTED, "the restore was stopped before this item began");
                return item_record(it);
        }
        it->phase = IT_ACTIVE;
        snprintf(it->step, sizeof(it->step), "resolving");
        it->done = it->total = 0;
        it->meter = (vb_rate_meter){ 0 };
        k = vb_vmrestore_start(r->rs->d->loop, &it->o, restored, it);
        if (k < 0) {
                result_set(it, VB_RUN_VM_FAILED, k == -EINVAL ? VB_E_USAGE : vb_error_from_errno(k),
                           "the restore cannot start: %s", strerror(-k));
                item_record(it);
        }
}

/* The restore with an item restoring its target VM now (0: none). */
static int64_t target_busy(vb_restorer *rs, const item *it)
{
        if (!it->target)
                return 0;
        for (rst *r = rs->list; r; r = r->next) {
                if (r->mode != MODE_RUN || !r->live || r->platform.id != it->r->platform.id)
                        continue;
                for (size_t i = 0; i < r->n_items; i++) {
                        const item *o = &r->items[i];

                        if (o != it && (o->phase == IT_STARTING || o->phase == IT_ACTIVE) &&
                            streq_ptr(o->target, it->target))
                                return r->id;
                }
        }
        return 0;
}

static void item_start(item *it)
{
        rst *r = it->r;
        int64_t holder = target_busy(r->rs, it);
        unsigned load;

        if (holder == r->id) /* another item of this restore: after it */
                return;
        if (holder) {
                result_set(it, VB_RUN_VM_FAILED, VB_E_BUSY, "vm %s is being restored by restore %" PRId64 " now",
                           it->target, holder);
                return item_drop(it);
        }
        it->phase = IT_STARTING;
        it->counted = true;
        snprintf(it->step, sizeof(it->step), "starting");
        r->active++;
        if (r->active > r->max_active)
                r->max_active = r->active;
        load = host_load(r, it->host);
        if (load > r->max_per_host)
                r->max_per_host = load;
        queue(r, item_begin_work, item_begun, it);
}

/* Starts what the limits allow; ends the run once every item is done. */
static void pump(rst *r)
{
        bool all_done = true;

        if (!r->pumping)
                return;
        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];

                if (it->phase == IT_QUEUED) {
                        if (r->skipped)
                                result_set(it, VB_RUN_VM_SKIPPED, 0, "%s", r->message);
                        else if (r->stopping)
                                result_set(it, VB_RUN_VM_FAILED, VB_E_INTERRUPTED,
                                           "the restore was stopped before this item began");
                        else if (r->err != VB_OK)
                                result_set(it, VB_RUN_VM_FAILED, r->err, "the restore did not begin: %s", r->message);
                        else if (it->err != VB_OK)
                                result_set(it, VB_RUN_VM_FAILED, it->err, "%s", it->err_msg ?: vb_error_name(it->err));
                        if (r->skipped || r->stopping || r->err != VB_OK || it->err != VB_OK)
                                item_drop(it);
                }
                if (it->phase == IT_QUEUED && r->active < r->opts.parallel_vms &&
                    host_load(r, it->host) < r->opts.parallel_vms_per_host)
                        item_start(it);
                if (it->phase != IT_DONE)
                        all_done = false;
        }
        if (all_done && r->active == 0 && r->pending == 0)
                run_end(r);
}

/* ---- a run: the start ---- */

/* Past the scripts and the connection: the items. */
static void go(rst *r)
{
        r->pumping = true;
        pump(r);
}

static void run_connected(void *userdata, vb_error e, const char *msg, vb_hv *hv)
{
        rst *r = userdata;

        if (e != VB_OK) {
                if (r->err == VB_OK) {
                        r->err = e;
                        snprintf(r->message, sizeof(r->message), "platform %s: %s", r->platform.name,
                                 msg ?: vb_error_name(e));
                        log_error("restore %" PRId64 ": %s", r->id, r->message);
                }
                return go(r);
        }
        r->hv = hv;
        for (size_t i = 0; i < r->n_items; i++)
                r->items[i].o.hv = hv;
        go(r);
}

static void scripts_done(rst *r)
{
        r->scripted = r->err == VB_OK && !r->skipped;
        if (r->err != VB_OK || r->skipped || r->stopping)
                return go(r);
        platform_connect(r, run_connected);
}

static void pre_done(void *userdata, int k, const vb_script_result *res)
{
        rst *r = userdata;

        script_check(r, "pre-script", k, res);
        scripts_done(r);
}

static void pre_start(rst *r)
{
        char buf[64], label[128], *env[2];
        int k;

        if (!r->opts.pre_script[0] || r->stopping || r->err != VB_OK)
                return scripts_done(r);
        snprintf(label, sizeof(label), "restore %" PRId64 ": pre-script", r->id);
        k = vb_script_run(r->rs->d->loop, label, r->opts.pre_script, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, pre_done, r);
        if (k < 0)
                pre_done(r, k, NULL);
}

static void precondition_done(void *userdata, int k, const vb_script_result *res)
{
        rst *r = userdata;

        if (k < 0) {
                script_check(r, "precondition", k, res);
                return scripts_done(r);
        }
        if (res->timed_out || res->exit_status != 0) {
                r->skipped = true;
                snprintf(r->message, sizeof(r->message),
                         "restore %" PRId64 ": precondition %s%s%s: the restore is skipped", r->id,
                         res->timed_out ? "outlived its timeout" : "did not pass", res->output[0] ? ": " : "",
                         res->output);
                log_info("%s", r->message);
                return scripts_done(r);
        }
        pre_start(r);
}

static void scripts_start(rst *r)
{
        char buf[64], label[128], *env[2];
        int k;

        if (r->err != VB_OK || !r->opts.precondition[0])
                return pre_start(r);
        snprintf(label, sizeof(label), "restore %" PRId64 ": precondition", r->id);
        k = vb_script_run(r->rs->d->loop, label, r->opts.precondition, script_env(r, buf, sizeof(buf), env),
                          r->opts.script_timeout, precondition_done, r);
        if (k < 0)
                precondition_done(r, k, NULL);
}

/* The restore running (the catalog says so first), then what it needs. */
static int run_resolve_work(void *ctx)
{
        rst *r = ctx;
        int k;

        k = vb_catalog_restore_start(r->rs->d->catalog, r->id);
        if (k < 0)
                return k;
        r->begun = true; /* read on the loop only once this work is done */
        if (r->err != VB_OK)
                return 0;
        return resolve(r);
}

static void run_resolved(void *ctx, int k)
{
        rst *r = ctx;

        r->live = r->begun;
        if (!r->live) {
                vb_error e = k == -ENOENT     ? VB_E_NOT_FOUND
                             : k == -EALREADY ? VB_E_BUSY
                             : k == -ESTALE   ? VB_E_REFUSED
                                              : vb_error_from_errno(k);

                answer(r, e,
                       k == -ENOENT     ? "no such restore"
                       : k == -EALREADY ? "the restore is running"
                       : k == -ESTALE   ? "the restore has ended"
                                        : strerror(-k),
                       0);
                return rst_free(r);
        }
        if (k < 0 && r->err == VB_OK) {
                r->err = vb_error_from_errno(k);
                snprintf(r->message, sizeof(r->message), "the catalog: %s", strerror(-k));
        }
        if (r->err == VB_OK) {
                k = build(r);
                if (k == -ENOMEM && r->err == VB_OK) {
                        r->err = VB_E_FAILED;
                        snprintf(r->message, sizeof(r->message), "%s", strerror(ENOMEM));
                }
        }
        if (r->err != VB_OK)
                log_error("restore %" PRId64 ": %s", r->id, r->message);
        log_info("restore %" PRId64 " (%s) started: %zu item(s)", r->id, r->row.name, r->n_items);
        answer(r, VB_OK, NULL, r->id);
        changed(r);
        scripts_start(r);
}

static int run_load_work(void *ctx)
{
        rst *r = ctx;
        vb_catalog *c = r->rs->d->catalog;
        int k;

        k = vb_catalog_restore_get(c, r->id, &r->row);
        if (k < 0)
                return k;
        if (r->row.status == VB_RUN_RUNNING)
                return -EALREADY;
        if (r->row.status != VB_RUN_WAITING)
                return -ESTALE;
        return vb_catalog_restore_item_list(c, r->id, &r->rows, &r->n_rows);
}

static void run_loaded(void *ctx, int k)
{
        rst *r = ctx;

        if (k < 0)
                return run_resolved(r, k);
        /* The items as recorded, the settings from the spec. */
        r->items = calloc(r->n_rows ?: 1, sizeof(*r->items));
        if (!r->items)
                return run_resolved(r, -ENOMEM);
        r->n_items = r->n_rows;
        for (size_t i = 0; i < r->n_rows; i++) {
                const vb_restore_item *row = &r->rows[i];
                item *it = &r->items[i];

                *it = (item){ .r = r, .idx = row->idx, .id = row->id, .pool_id = row->pool_id };
                it->target = row->target ? strdup(row->target) : NULL;
                it->host = row->host_id ? strdup(row->host_id) : NULL;
                if (row->status != VB_RUN_VM_WAITING)
                        it->phase = IT_DONE; /* ended already (cannot be, but never twice) */
        }
        r->req = json_incref(r->row.spec);
        k = parse_request(r);
        if (k == -ENOMEM && r->err == VB_OK)
                req_error(r, VB_E_FAILED, NULL, "%s", strerror(ENOMEM));
        else if (k < 0) {
                char msg[1024];

                snprintf(msg, sizeof(msg), "%s", r->message);
                snprintf(r->message, sizeof(r->message), "the recorded request does not parse: %.900s", msg);
        }
        /* Items keep the recorded restore point: the spec's is the same. */
        for (size_t i = 0; i < r->n_rows; i++)
                if (r->items[i].rp_id == NULL || !streq(r->items[i].rp_id, r->rows[i].restore_point))
                        r->items[i].rp_id = r->rows[i].restore_point;
        r->label = r->row.name;
        queue(r, run_resolve_work, run_resolved, r);
}

static void waiter_drop(vb_restorer *rs, int64_t id);

static void busy_answer(void *ctx, int k)
{
        rst *r = ctx;

        (void)k;
        answer(r, VB_E_BUSY, "the restore is running", r->id);
        rst_free(r);
}

static int run_start(vb_restorer *rs, int64_t id, vb_restorer_done_fn done, void *userdata)
{
        bool busy;
        rst *r;

        if (!rs || id <= 0)
                return -EINVAL;
        for (r = rs->list; r; r = r->next)
                if (r->mode == MODE_RUN && r->id == id)
                        break;
        busy = r != NULL;
        r = rst_new(rs, MODE_RUN);
        if (!r)
                return -ENOMEM;
        r->id = id;
        r->started = done;
        r->userdata = userdata;
        restore_defaults(&r->opts);
        if (busy) { /* answered from the loop, never from inside this call */
                queue(r, noop_work, busy_answer, r);
                return 0;
        }
        waiter_drop(rs, id);
        queue(r, run_load_work, run_loaded, r);
        return 0;
}

int vb_restorer_start(vb_restorer *rs, int64_t id, vb_restorer_done_fn done, void *userdata)
{
        return run_start(rs, id, done, userdata);
}

int vb_restorer_stop(vb_restorer *rs, int64_t id)
{
        for (rst *r = rs->list; r; r = r->next)
                if (r->mode == MODE_RUN && r->id == id && r->live) {
                        if (!r->stopping)
                                log_info("restore %" PRId64 ": stopping", r->id);
                        r->stopping = true;
                        changed(r);
                        pump(r); /* nothing before the scripts and the connection are done */
                        return 0;
                }
        return -ENOENT;
}

/* ---- progress ---- */

json_t *vb_restorer_progress(vb_restorer *rs, int64_t id)
{
        rst *r;
        json_t *items;
        uint64_t done = 0, total = 0;
        double rate = 0;

        for (r = rs->list; r; r = r->next)
                if (r->mode == MODE_RUN && r->id == id && r->live && r->answered)
                        break;
        if (!r)
                return NULL;
        items = json_array();
        for (size_t i = 0; i < r->n_items; i++) {
                item *it = &r->items[i];
                bool live = it->phase == IT_ACTIVE;

                done += it->phase == IT_DONE ? it->total : it->done;
                total += it->total;
                if (live)
                        rate += it->meter.rate;
                json_array_append_new(
                        items,
                        json_pack("{s:I, s:s?, s:s?, s:s?, s:s, s:s, s:I, s:I, s:f, s:o}", "id", (json_int_t)it->id,
                                  "vm", it->rp.vm_name ?: (r->rows ? r->rows[i].vm_name : NULL), "target", it->target,
                                  "host", it->host, "status",
                                  it->phase == IT_DONE ? vb_run_vm_status_to_string(it->st) : phase_names[it->phase],
                                  "step", it->step, "bytes_done", (json_int_t)it->done, "bytes_total",
                                  (json_int_t)it->total, "rate", live ? it->meter.rate : 0.0, "eta",
                                  live ? vb_eta_json(it->done, it->total, it->meter.rate) : json_null()));
        }
        /* "disks": a VM's disks written at once are within parallel_disks;
         * the engine does not count them, so that is the most said. */
        return json_pack("{s:I, s:s?, s:b, s:I, s:I, s:f, s:o, s:o, s:{s:i, s:i, s:i}}", "restore", (json_int_t)r->id,
                         "name", r->row.name, "stopping", r->stopping, "bytes_done", (json_int_t)done, "bytes_total",
                         (json_int_t)total, "rate", rate, "eta", vb_eta_json(done, total, rate), "items", items,
                         "concurrency", "vms", (int)r->max_active, "per_host", (int)r->max_per_host, "disks",
                         (int)r->opts.parallel_disks);
}

uint64_t vb_restorer_generation(vb_restorer *rs)
{
        return rs->generation;
}

void vb_restorer_on_change(vb_restorer *rs, void (*fn)(void *userdata, int64_t id), void *userdata)
{
        rs->on_change = fn;
        rs->on_change_userdata = userdata;
}

/* ---- once: timers ---- */

static void waiter_closed(uv_handle_t *h)
{
        waiter *w = h->data;
        vb_restorer *rs = w->rs;

        for (waiter **p = &rs->waiters; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        free(w);
}

static void waiter_close(waiter *w)
{
        if (uv_is_closing((uv_handle_t *)&w->timer))
                return;
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void waiter_drop(vb_restorer *rs, int64_t id)
{
        for (waiter *w = rs->waiters; w; w = w->next)
                if (w->id == id)
                        waiter_close(w);
}

static void waiter_fired(uv_timer_t *t)
{
        waiter *w = t->data;
        vb_restorer *rs = w->rs;
        int64_t id = w->id;

        waiter_close(w);
        log_info("restore %" PRId64 ": its time has come", id);
        if (run_start(rs, id, once_started, NULL) < 0)
                log_error("restore %" PRId64 ": cannot start it", id);
}

static void waiter_arm(vb_restorer *rs, int64_t id, int64_t at)
{
        int64_t now = (int64_t)time(NULL);
        waiter *w;

        if (rs->shut)
                return;
        for (w = rs->waiters; w; w = w->next)
                if (w->id == id && !uv_is_closing((uv_handle_t *)&w->timer))
                        return;
        w = calloc(1, sizeof(*w));
        if (!w) {
                log_error("restore %" PRId64 ": cannot set its timer: %s", id, strerror(ENOMEM));
                return;
        }
        w->rs = rs;
        w->id = id;
        uv_timer_init(rs->d->loop, &w->timer);
        w->timer.data = w;
        w->next = rs->waiters;
        rs->waiters = w;
        uv_timer_start(&w->timer, waiter_fired, at > now ? (uint64_t)(at - now) * 1000 : 0, 0);
}

/* ---- after a crash ---- */

static void strv_join(const json_t *a, char *buf, size_t size)
{
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < json_array_size(a) && n < size; i++) {
                snprintf(buf + n, size - n, "%s%s", i ? ", " : "", json_string_value(json_array_get(a, i)) ?: "?");
                n = strlen(buf);
        }
}

static int recover_read_work(void *ctx)
{
        vb_restorer *rs = ctx;
        vb_catalog *c = rs->d->catalog;
        int k;

        k = vb_catalog_unfinished_restores(c, &rs->lost, &rs->n_lost);
        if (k < 0)
                return k;
        return vb_catalog_restore_list(c, 1u << VB_RUN_WAITING, 0, &rs->waiting, &rs->n_waiting);
}

/* Fails every unfinished item of restore id, then the restore. */
static int fail_restore(vb_catalog *c, int64_t id, const char *why)
{
        vb_restore_item *items = NULL;
        size_t n = 0;
        int k;

        k = vb_catalog_restore_item_list(c, id, &items, &n);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++) {
                vb_restore_item *it = &items[i];
                char paths[768], msg[1024];
                vb_restore_item res = { .status = VB_RUN_VM_FAILED,
                                        .error_code = VB_E_INTERRUPTED,
                                        .message = msg,
                                        .incomplete = it->incomplete,
                                        .bytes_total = it->bytes_total,
                                        .bytes_written = it->bytes_written };

                if (it->status == VB_RUN_VM_RUNNING) {
                        strv_join(it->incomplete, paths, sizeof(paths));
                        snprintf(msg, sizeof(msg), "vbakd stopped during the restore%s%s",
                                 paths[0] ? "; left incomplete: " : "", paths);
                } else if (it->status == VB_RUN_VM_WAITING) {
                        snprintf(msg, sizeof(msg), "vbakd stopped before this item began");
                } else {
                        continue;
                }
                log_warning("restore %" PRId64 ": item %u (%s): %s", id, it->idx, it->target ?: it->vm_name, msg);
                k = vb_catalog_restore_item_finish(c, it->id, &res);
                if (k < 0 && k != -EALREADY)
                        break;
                k = 0;
        }
        vb_restore_items_free(items, n);
        if (k < 0)
                return k;
        k = vb_catalog_restore_finish(c, id, VB_RUN_FAILED, VB_E_INTERRUPTED, why);
        return k == -EALREADY ? 0 : k;
}

static bool ours(vb_restorer *rs, int64_t id)
{
        for (rst *r = rs->list; r; r = r->next)
                if (r->mode == MODE_RUN && r->id == id)
                        return true;
        return false;
}

static int recover_fix_work(void *ctx)
{
        vb_restorer *rs = ctx;
        vb_catalog *c = rs->d->catalog;
        int k, ret = 0;

        for (size_t i = 0; i < rs->n_lost; i++) {
                if (rs->lost[i].id <= 0)
                        continue; /* one this daemon runs */
                log_warning("restore %" PRId64 " (%s) was cut short by a stop of vbakd: failed", rs->lost[i].id,
                            rs->lost[i].name);
                k = fail_restore(c, rs->lost[i].id, "vbakd stopped during the restore");
                if (k < 0 && ret == 0)
                        ret = k;
        }
        for (size_t i = 0; i < rs->n_waiting; i++) {
                if (rs->waiting[i].id <= 0 || !streq_ptr(rs->waiting[i].schedule, "now"))
                        continue;
                log_warning("restore %" PRId64 " (%s) was to start when vbakd stopped: failed", rs->waiting[i].id,
                            rs->waiting[i].name);
                k = fail_restore(c, rs->waiting[i].id, "vbakd stopped before the restore began");
                if (k < 0 && ret == 0)
                        ret = k;
        }
        return ret;
}

static void recover_fixed(void *ctx, int k)
{
        vb_restorer *rs = ctx;

        if (k < 0)
                log_error("finishing the restores a stop of vbakd cut short: %s", strerror(-k));
        for (size_t i = 0; i < rs->n_waiting; i++) {
                const vb_restore *w = &rs->waiting[i];

                if (w->id > 0 && streq_ptr(w->schedule, "once") && !ours(rs, w->id)) {
                        log_info("restore %" PRId64 " (%s) waits for its time", w->id, w->name);
                        waiter_arm(rs, w->id, w->at);
                }
        }
        vb_restores_free(TAKE_PTR(rs->lost), rs->n_lost);
        vb_restores_free(TAKE_PTR(rs->waiting), rs->n_waiting);
        rs->n_lost = rs->n_waiting = 0;
        if (rs->recovered)
                rs->recovered(rs->recovered_userdata, k < 0 ? k : 0);
}

static void recover_read(void *ctx, int k)
{
        vb_restorer *rs = ctx;

        if (k < 0) {
                log_error("reading the restores a stop of vbakd left unfinished: %s", strerror(-k));
                return recover_fixed(rs, k);
        }
        /* A restore this daemon started meanwhile is not a dead one's. */
        for (size_t i = 0; i < rs->n_lost; i++)
                if (ours(rs, rs->lost[i].id))
                        rs->lost[i].id = 0;
        for (size_t i = 0; i < rs->n_waiting; i++)
                if (ours(rs, rs->waiting[i].id))
                        rs->waiting[i].id = 0;
        if (vb_lane_queue(rs->d->lane, recover_fix_work, recover_fixed, rs) < 0)
                recover_fixed(rs, -ECANCELED);
}

void vb_restorer_recover(vb_restorer *rs, void (*done)(void *userdata, int r), void *userdata)
{
        rs->recovered = done;
        rs->recovered_userdata = userdata;
        if (vb_lane_queue(rs->d->lane, recover_read_work, recover_read, rs) < 0)
                recover_read(rs, -ECANCELED);
}

/* ---- the restorer ---- */

int vb_restorer_new(vb_daemon *d, vb_restorer **ret)
{
        vb_restorer *rs;

        if (!d || !ret)
                return -EINVAL;
        rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        rs->d = d;
        *ret = rs;
        return 0;
}

void vb_restorer_shutdown(vb_restorer *rs)
{
        if (!rs)
                return;
        rs->shut = true;
        for (waiter *w = rs->waiters; w; w = w->next)
                waiter_close(w);
}

void vb_restorer_free(vb_restorer *rs)
{
        /* A restore still going keeps the restorer: its memory goes with the process. */
        if (rs && !rs->list && !rs->waiters && !rs->lost && !rs->waiting)
                free(rs);
}
