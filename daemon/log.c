/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.c -- the one log module: level filtering, "%m" with an explicit error,
 * and one write(2) per line to stderr or the journal's stream.
 *
 * The level and the target are read with relaxed atomics, so worker threads
 * may log while the main thread changes them. A line is built in a stack
 * buffer smaller than PIPE_BUF and written at once, so concurrent lines do
 * not interleave on a pipe or a journal stream.
 */
#include "daemon/log.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#define LOG_LINE_MAX 2048

static int log_max_level = LOG_INFO;
static int log_target = STDERR_FILENO;
static int log_journal = -1; /* -1: not checked yet, else bool for log_target */

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit", [LOG_ERR] = "error",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

/* Prefixes when the target is not the journal: only warnings and worse. */
static const char *const level_prefixes[] = {
        [LOG_EMERG] = "emergency: ", [LOG_ALERT] = "alert: ", [LOG_CRIT] = "critical: ", [LOG_ERR] = "error: ",
        [LOG_WARNING] = "warning: ", [LOG_NOTICE] = "",       [LOG_INFO] = "",           [LOG_DEBUG] = "",
};

static int clamp_level(int level)
{
        return level < LOG_EMERG ? LOG_EMERG : level > LOG_DEBUG ? LOG_DEBUG : level;
}

void vb_log_set_max_level(int level)
{
        __atomic_store_n(&log_max_level, clamp_level(level), __ATOMIC_RELAXED);
}

int vb_log_get_max_level(void)
{
        return __atomic_load_n(&log_max_level, __ATOMIC_RELAXED);
}

int vb_log_level_from_string(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } aliases[] = {
                { "err", LOG_ERR },
                { "warn", LOG_WARNING },
        };

        if (!s)
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == 0)
                return s[0] - '0';
        for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return i;
        for (size_t i = 0; i < ELEMENTSOF(aliases); i++)
                if (strcasecmp(s, aliases[i].name) == 0)
                        return aliases[i].level;
        return -EINVAL;
}

const char *vb_log_level_to_string(int level)
{
        if (level < LOG_EMERG || level > LOG_DEBUG)
                return NULL;
        return level_names[level];
}

void vb_log_parse_environment(void)
{
        const char *e = getenv("VBAK_LOG_LEVEL");
        int level;

        if (!e)
                return;
        level = vb_log_level_from_string(e);
        if (level < 0) {
                log_warning("Ignoring invalid VBAK_LOG_LEVEL=%s: expected debug, info, notice, warning, error, crit, "
                            "alert, emerg or 0-7.",
                            e);
                return;
        }
        vb_log_set_max_level(level);
}

/* Whether fd is the stream JOURNAL_STREAM="<dev>:<inode>" describes. */
static bool is_journal_stream(int fd)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (!e || fd < 0)
                return false;
        if (sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != 0)
                return false;
        if (fstat(fd, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void vb_log_set_target(int fd)
{
        int saved = errno;

        __atomic_store_n(&log_journal, is_journal_stream(fd), __ATOMIC_RELAXED);
        __atomic_store_n(&log_target, fd < 0 ? -1 : fd, __ATOMIC_RELAXED);
        errno = saved;
}

int vb_log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
{
        char buf[LOG_LINE_MAX];
        int saved = errno, fd, journal, n;
        size_t len, room;
        va_list ap;

        level = clamp_level(LOG_PRI(level));
        if (level > vb_log_get_max_level())
                goto out;
        fd = __atomic_load_n(&log_target, __ATOMIC_RELAXED);
        if (fd < 0)
                goto out;
        journal = __atomic_load_n(&log_journal, __ATOMIC_RELAXED);
        if (journal < 0) {
                journal = is_journal_stream(fd);
                __atomic_store_n(&log_journal, journal, __ATOMIC_RELAXED);
        }

        if (journal)
                n = snprintf(buf, sizeof(buf), "<%d>", level);
        else
                n = snprintf(buf, sizeof(buf), "%s", level_prefixes[level]);
        len = n > 0 ? (size_t)n : 0;

        /* Leave room for the newline. */
        room = sizeof(buf) - len - 1;
        if (error != 0)
                errno = error > 0 ? error : error == INT_MIN ? INT_MAX : -error;
        else
                errno = saved;
        va_start(ap, fmt);
        n = vsnprintf(buf + len, room, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t)n >= room) {
                len += room - 1;
                memcpy(buf + len - 3, "...", 3);
        } else {
                len += (size_t)n;
        }
        while (len > 0 && buf[len - 1] == '\n')
                len--;
        buf[len++] = '\n';
        (void)vb_write_all(fd, buf, len);

out:
        errno = saved;
        return vb_log_errno_ret(error);
}
