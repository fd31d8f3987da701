/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.h -- the one log module: syslog levels (LOG_EMERG..LOG_DEBUG), a
 * process-wide maximum level, one line per message on one file descriptor.
 *
 * The usual error path is `return log_error_errno(r, "Failed to open %s: %m", path);`:
 * every log_*_errno() returns -abs(error), and %m prints strerror(abs(error)).
 * Only daemon/ logs at info or above; cas/, transport/, dedup/ and
 * storagepool/ return errors and use at most log_debug().
 *
 * Each message is written with a single write(2), so lines from several
 * threads never interleave. When the target is the journal's stream
 * (JOURNAL_STREAM names it), lines carry the "<N>" syslog prefix; otherwise
 * warnings and worse start with "warning: ", "error: ", ... and the rest have
 * no prefix.
 */
#ifndef VB_LOG_H
#define VB_LOG_H

#include <stdlib.h>
#include <syslog.h>

#include "daemon/util.h"

/* Messages with a level numerically greater than this are dropped. Levels
 * outside LOG_EMERG..LOG_DEBUG are clamped. The default is LOG_INFO. */
void vb_log_set_max_level(int level);
int vb_log_get_max_level(void);

/* Parses "emerg", "alert", "crit", "err"/"error", "warning"/"warn",
 * "notice", "info", "debug" (any case) or a single digit 0-7. Returns the
 * level, or -EINVAL. */
int vb_log_level_from_string(const char *s);

/* The canonical name of a level ("error" for LOG_ERR), or NULL when level is
 * not LOG_EMERG..LOG_DEBUG. */
const char *vb_log_level_to_string(int level);

/* Applies VBAK_LOG_LEVEL from the environment when it is set and valid; an
 * invalid value is reported with a warning and ignored. */
void vb_log_parse_environment(void);

/* Sends log lines to fd (not owned, never closed); the default is stderr. A
 * negative fd discards every message. Also re-checks whether fd is the
 * journal's stream (JOURNAL_STREAM). */
void vb_log_set_target(int fd);

/* Logs one message when level passes the maximum level. While fmt is
 * formatted, errno is abs(error), so %m describes it; with error == 0, errno
 * is the caller's. errno is unchanged on return. Messages longer than the
 * line buffer are cut and end in "...". Returns -abs(error), or 0 when error
 * is 0, whether or not the message was written. Call it through the macros. */
int vb_log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
        _printf_(6, 7);

/* -abs(error) without overflow: what every log_*_errno() returns. */
static inline int vb_log_errno_ret(int error)
{
        return error > 0 ? -error : error;
}

/* Logs at level with error (0 for none); the arguments after the format are
 * evaluated only when level passes the maximum level. */
#define log_full_errno(level, error, ...)                                                                              \
        ({                                                                                                             \
                int vb_log_level_ = (level), vb_log_error_ = (error);                                                  \
                vb_log_get_max_level() >= LOG_PRI(vb_log_level_)                                                       \
                        ? vb_log_internal(vb_log_level_, vb_log_error_, __FILE__, __LINE__, __func__, __VA_ARGS__)     \
                        : vb_log_errno_ret(vb_log_error_);                                                             \
        })

#define log_full(level, ...) ((void)log_full_errno((level), 0, __VA_ARGS__))

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

/* These return -abs(error): `return log_error_errno(r, "...: %m");`. */
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, (error), __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, (error), __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, (error), __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, (error), __VA_ARGS__)

/* Logs "Out of memory." at error level and returns -ENOMEM. */
#define log_oom() log_full_errno(LOG_ERR, ENOMEM, "Out of memory.")

#endif
