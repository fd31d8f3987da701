/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.h -- the daemon's settings: one table row per key (name, type,
 * bounds, default, field, description, restart flag), a parser for
 * vbakd.conf and the setter behind `config set`.
 *
 * DESIGN
 * vb_config_keys[] in config.c is the only list of keys. Every value, the
 * defaults included, goes through the same parse-and-check path, so a
 * default outside its own range is a bug the unit tests catch. Adding a key
 * is: a field in struct vb_config, a *_DEFAULT below, a row in the table and
 * a commented line in etc/vbakd.conf.
 */
#ifndef VB_CONFIG_H
#define VB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults, as text parsed like a value from the file. */
#define VB_CONFIG_LOG_LEVEL_DEFAULT "info"
#define VB_CONFIG_STATE_DIR_DEFAULT "/var/lib/vbak"
#define VB_CONFIG_RUNTIME_DIR_DEFAULT "/run/vbak"
#define VB_CONFIG_WORKER_THREADS_DEFAULT "4"
#define VB_CONFIG_COMPRESSION_DEFAULT "fast"
#define VB_CONFIG_FSYNC_DEFAULT "always"
#define VB_CONFIG_GC_GRACE_DEFAULT "1h"
#define VB_CONFIG_TRANSPORT_LOG_LEVEL_DEFAULT "info"

/* The chunk size in bytes (1 MiB..4 MiB), chosen by benchmark. It must stay
 * a plain decimal literal without a suffix: the table stringifies it. */
#define VB_CONFIG_CHUNK_SIZE_DEFAULT 1048576

/* The parsed settings. Strings are owned by the struct (vb_config_free). */
struct vb_config {
        int log_level;           /* LOG_EMERG..LOG_DEBUG */
        char *state_dir;         /* absolute path */
        char *runtime_dir;       /* absolute path */
        int worker_threads;      /* 1..64 */
        uint64_t chunk_size;     /* bytes */
        char *compression;       /* "none", "fast" or "zstd:N"; see dd_compression_from_string() */
        int fsync;               /* sp_fsync (storagepool/sp.h) */
        uint64_t gc_grace;       /* seconds */
        int transport_log_level; /* LOG_INFO, LOG_WARNING or LOG_ERR */
        int cvd_port;            /* the hosts' disk service */
        char *cvd_token_file;    /* absolute path */
};

enum vb_config_type {
        VB_CONFIG_BOOL,     /* bool: yes/no, true/false, on/off, 1/0 */
        VB_CONFIG_INT,      /* int: decimal, within min..max */
        VB_CONFIG_SIZE,     /* uint64_t bytes: vb_parse_size(), within min..max */
        VB_CONFIG_DURATION, /* uint64_t seconds: vb_parse_duration(), within min..max */
        VB_CONFIG_STRING,   /* char *: no control characters, plus the key's check */
        VB_CONFIG_ENUM,     /* int: the value of one of the key's names */
        _VB_CONFIG_TYPE_MAX,
        _VB_CONFIG_TYPE_INVALID = -1,
};

/* One allowed name of an enum key and the int stored for it. Several names
 * may share a value (aliases): the first one is the one shown. */
struct vb_config_enum_value {
        const char *name;
        int value;
};

/* One row of the table. */
struct vb_config_key {
        const char *name;
        enum vb_config_type type;
        int64_t min, max;                          /* INT, SIZE, DURATION: inclusive bounds */
        const char *default_value;                 /* text, parsed like a value from the file */
        size_t offset;                             /* offsetof(struct vb_config, field) */
        const char *description;                   /* one line */
        bool needs_restart;                        /* a change applies only after a restart */
        const struct vb_config_enum_value *values; /* ENUM: ends with { NULL } */
        /* STRING, optional: returns 0 when value is acceptable, else -EINVAL. */
        int (*check)(const char *value);
        const char *allowed; /* STRING: what check accepts, for docs and errors */
};

extern const struct vb_config_key vb_config_keys[];
extern const size_t vb_config_n_keys;

#define VB_CONFIG_FOREACH_KEY(k)                                                                                       \
        for (const struct vb_config_key *k = vb_config_keys; k < vb_config_keys + vb_config_n_keys; k++)

/* Fills c with every key's default. Returns 0, or -ENOMEM (c then holds no
 * allocation and must not be used). */
int vb_config_init_defaults(struct vb_config *c);

/* Frees the strings c owns and leaves them NULL. Accepts NULL. */
void vb_config_free(struct vb_config *c);

/* Reads a file of `key = value` lines; `#` starts a comment line, blank
 * lines are skipped, spaces around key and value are dropped, a later line
 * overrides an earlier one. c must hold a valid configuration (defaults or
 * an earlier load); keys the file does not name keep their value. All or
 * nothing: on failure c is unchanged. Returns 0; -ENOENT when the file is
 * missing; -EINVAL on an unknown key, a malformed line or a bad or
 * out-of-range value; other -errno from reading. On failure, when ret_error
 * is not NULL, it gets a message the caller frees, naming file:line, the key
 * and what is allowed (it may stay NULL if memory runs out). */
int vb_config_load(struct vb_config *c, const char *path, char **ret_error);

/* Parses and checks value for key, then stores it in c. Returns 0, -ENOENT
 * for an unknown key, -EINVAL for a bad or out-of-range value, -ENOMEM; on
 * failure c is unchanged and *ret_error (if ret_error) is set as for
 * vb_config_load(), without file and line. The caller consults
 * k->needs_restart to tell whether the change applies now. */
int vb_config_set(struct vb_config *c, const char *key, const char *value, char **ret_error);

/* The row for name, or NULL. */
const struct vb_config_key *vb_config_find(const char *name);

/* Writes k's current value in c as text that vb_config_set() accepts back
 * (sizes and durations in the largest exact unit: "2M", "1h"). k must be a
 * row of vb_config_keys. Returns the length, -EINVAL for bad arguments, or
 * -ENOBUFS when buf is too small. */
int vb_config_format_value(const struct vb_config *c, const struct vb_config_key *k, char *buf, size_t size);

/* Writes what k accepts: "1-64", "1M-4M", "0s-30d", "yes or no",
 * "info, warning, error", or the key's `allowed` text. Returns the length,
 * -EINVAL, or -ENOBUFS. */
int vb_config_format_allowed(const struct vb_config_key *k, char *buf, size_t size);

/* The two functions below work on any table of rows and the struct their
 * offsets point into (base): vb_config_set() and vb_config_format_value()
 * use them for struct vb_config, and other tables of settings may too. */

/* Parses and checks value for row k and stores it at base + k->offset (a
 * STRING replaces and frees the old string there, which must be NULL or
 * owned). Returns 0, -EINVAL for a bad or out-of-range value (base is then
 * unchanged; *ret_error, if ret_error, gets a message naming the key, the
 * value and what is allowed, to free), or -ENOMEM. */
int vb_config_key_set(const struct vb_config_key *k, void *base, const char *value, char **ret_error);

/* Writes the value at base + k->offset as text vb_config_key_set() accepts.
 * Returns the length, -EINVAL, or -ENOBUFS when buf is too small. */
int vb_config_key_format(const struct vb_config_key *k, const void *base, char *buf, size_t size);

/* The file vbakd reads when no --config names one. */
#define VB_CONFIG_FILE_DEFAULT "/etc/vbak/vbakd.conf"

/* vb_config_load(), telling where each key's value came from: lines has
 * vb_config_n_keys entries, indexed like vb_config_keys; each gets the
 * number of the line that set the value in force, or 0 when the file does
 * not name the key (all 0 on failure). */
int vb_config_load_lines(struct vb_config *c, const char *path, unsigned *lines, char **ret_error);

/* Up to max keys whose names are close to name (a typo, a missing or extra
 * part: "worker_thread", "threads"), best first, into ret. Returns how many. */
size_t vb_config_close_matches(const char *name, const struct vb_config_key **ret, size_t max);

/* What vb_config_text_set() did to the text. */
enum vb_config_edit_kind {
        VB_CONFIG_EDIT_REPLACED,    /* the key's line in force now holds the value */
        VB_CONFIG_EDIT_UNCOMMENTED, /* its commented line ("# key = ...") became active */
        VB_CONFIG_EDIT_APPENDED,    /* a new line at the end */
        VB_CONFIG_EDIT_UNCHANGED,   /* the line in force already said exactly this */
};

struct vb_config_edit {
        enum vb_config_edit_kind kind;
        unsigned line; /* the key's line in the new text, from 1 */
        bool created;  /* vb_config_file_set(): the file did not exist */
};

/* Sets key to value in the configuration text (len bytes), keeping every
 * other byte: the last active line of key is replaced, else the last
 * commented one ("# key = ...", as etc/vbakd.conf ships them) is replaced in
 * place, else "key = value" is appended. value goes through the daemon's own
 * parser first, and the whole new text must load (path names it in
 * messages). Returns 0 with *ret_text (NUL-terminated, to free) and
 * *ret_len; -ENOENT for an unknown key (*ret_error names close matches),
 * -EINVAL for a bad value or text that does not load (*ret_error as for
 * vb_config_load()), -EFBIG, -ENOMEM. */
int vb_config_text_set(const char *path, const char *text, size_t len, const char *key, const char *value,
                       char **ret_text, size_t *ret_len, struct vb_config_edit *ret_edit, char **ret_error);

/* vb_config_text_set() on the file at path, written back atomically (a temp
 * file in the same directory, fsync'd, renamed over it, the directory
 * fsync'd), with the old file's mode and owner; a missing file is created
 * with mode 0644, in a directory that must exist. A symlink is followed.
 * Returns 0, the errors of vb_config_text_set(), or the -errno of reading or
 * writing (-EACCES, -EROFS, -ENOENT for a missing directory...) with
 * *ret_error naming the file. */
int vb_config_file_set(const char *path, const char *key, const char *value, struct vb_config_edit *ret_edit,
                       char **ret_error);

#endif
