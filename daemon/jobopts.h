/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * jobopts.h -- the options of a backup job (product §2): one typed member
 * per option, one table row per option (key, type, default, range, one-line
 * description), and the parsers behind `vbak job create --set KEY=VALUE` and
 * the API's JSON objects.
 *
 * DESIGN
 * vb_jobopts_table[] in jobopts.c is the only list of options: parsing,
 * formatting, validation, `--help` and docs/job-options.md all come from
 * it. Defaults are text in the table and go through the same parser as a
 * user's value, so a default outside its own range is a bug the unit tests
 * catch. The struct owns no memory (texts are arrays), so it is copied by
 * assignment: an update is applied to a copy and kept only when all of it
 * is valid.
 *
 * Values, as text (--set) and in JSON (numbers, booleans or the same text):
 *   on/off      on, off, true, false, yes, no, 1, 0; JSON true/false
 *   number      decimal; JSON integer
 *   percent     10 or 10%; JSON integer
 *   size        4096, 64K, 10M, 500G, 1T (binary units; KiB, MiB... too); JSON integer = bytes
 *   duration    90s, 10m, 10min, 1h, 1d (a unit is required); JSON integer = seconds
 *   choice      one of the row's names
 *   schedule    a speed limit per time window (transport/rate.h), kept in canonical text
 *   command     a shell command line
 * "none" (or "") unsets an optional value (a command, a schedule,
 * compression_level). In JSON, null puts a key back to its default.
 *
 * Every error message starts with the key, for the API's 400 answers:
 * "parallel_vms: 40 is out of range (1-32)".
 */
#ifndef VB_JOBOPTS_H
#define VB_JOBOPTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/hypervisor.h"
#include "transport/disk.h"
#include "transport/rate.h"

/* Bytes of a command or a schedule's text, its NUL included. */
#define VB_JOBOPTS_TEXT_MAX 1024
/* The most NBD connections of one disk (product §2). */
#define VB_JOBOPTS_CONNECTIONS_MAX 5

typedef enum vb_job_compression {
        VB_JOB_COMPRESSION_NONE,
        VB_JOB_COMPRESSION_FAST,       /* zstd at a low level */
        VB_JOB_COMPRESSION_ADJUSTABLE, /* zstd at compression_level */
} vb_job_compression;

typedef enum vb_job_dedup_mode {
        VB_JOB_DEDUP_SOURCE, /* the backup host checks the index and stores only new chunks */
        VB_JOB_DEDUP_SERVER, /* everything is sent, the pool deduplicates */
} vb_job_dedup_mode;

/* What an incremental job does with a VM that has no usable CBT. */
typedef enum vb_job_non_cbt {
        VB_JOB_NON_CBT_FULL, /* back it up in full */
        VB_JOB_NON_CBT_FAIL, /* fail it, with an alert */
        VB_JOB_NON_CBT_SKIP, /* skip it silently */
} vb_job_non_cbt;

/* The host network the data flows over. */
typedef enum vb_job_network {
        VB_JOB_NETWORK_ADAPTIVE, /* backup, else storage, else management */
        VB_JOB_NETWORK_BACKUP,
        VB_JOB_NETWORK_STORAGE,
        VB_JOB_NETWORK_MANAGEMENT,
} vb_job_network;

/* The options of one job. Durations are seconds, sizes bytes; a text is
 * NUL-terminated and "" means none. Fill with vb_jobopts_defaults(). */
typedef struct vb_jobopts {
        vb_job_compression compression;
        unsigned compression_level; /* zstd 1-19 with ADJUSTABLE; 0 (none) otherwise */
        vb_job_dedup_mode dedup_mode;
        unsigned parallel_vms;          /* 1-32 */
        unsigned parallel_vms_per_host; /* 1-10 */
        unsigned parallel_disks;        /* per VM, 1-5 */
        unsigned streams_per_disk;      /* 1-5 */
        unsigned min_free_percent;      /* of the VM's storage, 0-100; 0: not checked */
        uint64_t min_free_bytes;        /* 0: not checked */
        bool cbt;                       /* full backups enable changed-block tracking */
        vb_job_non_cbt non_cbt_vm;
        vb_job_network network;
        bool shutdown_for_backup;
        bool valid_data_only;
        uint64_t reconnect_window;                /* seconds */
        uint64_t resume_buffer;                   /* bytes */
        char transfer_rate[VB_JOBOPTS_TEXT_MAX];  /* schedule, canonical text (tp_rate_schedule_format) */
        char disk_read_rate[VB_JOBOPTS_TEXT_MAX]; /* same */
        char precondition[VB_JOBOPTS_TEXT_MAX];   /* shell command */
        char pre_script[VB_JOBOPTS_TEXT_MAX];
        char post_script[VB_JOBOPTS_TEXT_MAX];
        uint64_t script_timeout;  /* seconds, for the precondition and the scripts */
        uint64_t read_buffer;     /* bytes per read request, a power of two */
        int transport_log_level;  /* LOG_INFO, LOG_WARNING or LOG_ERR */
        uint64_t network_timeout; /* seconds */
        vb_snapshot_type snapshot;
        unsigned retries;
        uint64_t retry_interval; /* seconds */
        bool quiesce;            /* application-consistent when the guest agent answers */
} vb_jobopts;

typedef enum vb_jobopt_type {
        VB_JOBOPT_BOOL,     /* bool */
        VB_JOBOPT_UINT,     /* unsigned, min..max */
        VB_JOBOPT_PERCENT,  /* unsigned, min..max */
        VB_JOBOPT_SIZE,     /* uint64_t bytes, min..max */
        VB_JOBOPT_DURATION, /* uint64_t seconds, min..max */
        VB_JOBOPT_ENUM,     /* an int-sized enum: the value of one of the names */
        VB_JOBOPT_RATE,     /* char[VB_JOBOPTS_TEXT_MAX]: a speed-limit schedule */
        VB_JOBOPT_COMMAND,  /* char[VB_JOBOPTS_TEXT_MAX]: a shell command */
} vb_jobopt_type;

/* UINT: 0 is allowed too and means none (JSON null, text "none"). */
#define VB_JOBOPT_OPTIONAL 0x1u
/* SIZE: only powers of two within min..max. */
#define VB_JOBOPT_POW2 0x2u

/* One name of an ENUM option. Several names may share a value (aliases):
 * the first is the canonical one. */
typedef struct vb_jobopt_name {
        const char *name;
        int value;
} vb_jobopt_name;

typedef struct vb_jobopt {
        const char *key; /* lower case with underscores */
        vb_jobopt_type type;
        unsigned flags;              /* VB_JOBOPT_* */
        uint64_t min, max;           /* UINT, PERCENT, SIZE, DURATION: inclusive */
        uint64_t unit;               /* DURATION: the range is shown in this unit (60: minutes); 0: any */
        const vb_jobopt_name *names; /* ENUM: ends with { NULL } */
        const char *def;             /* the default, as canonical text */
        size_t offset;               /* offsetof(vb_jobopts, member) */
        const char *description;     /* one line */
} vb_jobopt;

extern const vb_jobopt vb_jobopts_table[];
extern const size_t vb_jobopts_n;

/* The row of key, or NULL. */
const vb_jobopt *vb_jobopt_find(const char *key);

/* Fills o with every option's default. */
void vb_jobopts_defaults(vb_jobopts *o);

/* Parses value (text, as after --set KEY=) and stores it in o. Checks the
 * value against its own range only: the rules between options wait for
 * vb_jobopts_check(), so several --set may be applied in any order.
 * Setting compression to none or fast unsets compression_level. Returns 0;
 * -ENOENT for an unknown key; -EINVAL for a bad or out-of-range value;
 * -ENOMEM. On failure o is unchanged and, when err is not NULL, *err gets a
 * message starting with the key, for the caller to free. */
int vb_jobopts_set(vb_jobopts *o, const char *key, const char *value, char **err);

/* Applies a JSON object of options on top of what o holds (a partial object
 * changes only its keys: job modification), then vb_jobopts_check(). A key
 * with null goes back to its default. When the object sets compression to
 * none or fast without naming compression_level, the level is unset. All or
 * nothing: on failure o is unchanged. Returns 0, -ENOENT for an unknown key,
 * -EINVAL for anything else invalid (not an object, a wrong type, a bad or
 * out-of-range value, a rule between options), -ENOMEM; *err as for
 * vb_jobopts_set(). */
int vb_jobopts_from_json(vb_jobopts *o, json_t *obj, char **err);

/* Every key with its canonical value: booleans, integers (numbers and
 * percentages), strings (choices, sizes like "10M", durations like "10m",
 * schedules, commands), null for an unset optional value. from_json takes
 * it back to the same options. NULL when out of memory. */
json_t *vb_jobopts_to_json(const vb_jobopts *o);

/* Checks every member against its row and the rules between options:
 *   compression_level is set (1-19) exactly when compression is adjustable;
 *   resume_buffer holds at least one read (>= read_buffer);
 *   connections per disk, max(parallel_disks, streams_per_disk), are at most 5.
 * Returns 0, -EINVAL (with *err as above), or -ENOMEM. */
int vb_jobopts_check(const vb_jobopts *o, char **err);

/* k's value in o as text vb_jobopts_set() accepts back ("10M", "10m", "on",
 * "none"...). Returns the length, -EINVAL, or -ENOBUFS when buf is too
 * small. */
int vb_jobopts_format(const vb_jobopts *o, const vb_jobopt *k, char *buf, size_t size);

/* What k accepts: "1-32", "1m-60m", "full, fail, skip"... Returns the
 * length, -EINVAL, or -ENOBUFS. */
int vb_jobopt_format_range(const vb_jobopt *k, char *buf, size_t size);

/* Whether every option of a and b has the same value. */
bool vb_jobopts_equal(const vb_jobopts *a, const vb_jobopts *b);

/* The compression level for the pool (dedup/blob.h): 0 none, 1 fast, or
 * the adjustable level. */
int vb_jobopts_compression_level(const vb_jobopts *o);

/* NBD connections per disk: max(parallel_disks, streams_per_disk). */
unsigned vb_jobopts_connections_per_disk(const vb_jobopts *o);

/* The rate limits of a run or a restore: a bucket per schedule, shared by
 * every disk (used from the loop thread only). */
typedef struct vb_transfer_limits {
        tp_rate_schedule transfer_s, disk_s;
        tp_bucket transfer_b, disk_b;
} vb_transfer_limits;

/* The transport options of a run or a restore from its job options:
 * streams and request size per disk, resume buffer, reconnect window,
 * timeout, the disk service's token, and transfer_rate and disk_read_rate
 * as buckets in lim (which must outlive t). -EINVAL with *field set (its
 * key) and *why (caller frees) for a schedule that does not parse. */
int vb_transfer_setup(const vb_jobopts *o, const char *token_file, vb_transfer_limits *lim, tp_disk_opts *t,
                      const char **field, char **why);
void vb_transfer_limits_clear(vb_transfer_limits *lim);

/* The table as text, for `vbak job create --help`. */
void vb_jobopts_help(FILE *f);

/* The table as a Markdown table (key, default, range, meaning), as
 * docs/job-options.md holds it. */
void vb_jobopts_markdown(FILE *f);

#endif
