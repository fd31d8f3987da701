/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-log.c -- tests for daemon/log.c: level names, filtering, %m with an
 * explicit error, return values, prefixes, the journal stream and the
 * VBAK_LOG_LEVEL override. Output is captured through a pipe.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

struct capture {
        int fds[2];
};

static void capture_start(struct capture *cap)
{
        ASSERT_OK(pipe2(cap->fds, O_CLOEXEC | O_NONBLOCK));
        vb_log_set_target(cap->fds[1]);
}

/* Everything written so far, NUL-terminated, in buf. */
static const char *capture_read(struct capture *cap, char *buf, size_t size)
{
        ssize_t n = read(cap->fds[0], buf, size - 1);

        if (n < 0) {
                ASSERT_EQ(errno, EAGAIN);
                n = 0;
        }
        buf[n] = 0;
        return buf;
}

static void capture_stop(struct capture *cap)
{
        vb_log_set_target(STDERR_FILENO);
        close(cap->fds[0]);
        close(cap->fds[1]);
}

TEST(log_level_names)
{
        ASSERT_EQ(vb_log_level_from_string("debug"), LOG_DEBUG);
        ASSERT_EQ(vb_log_level_from_string("info"), LOG_INFO);
        ASSERT_EQ(vb_log_level_from_string("notice"), LOG_NOTICE);
        ASSERT_EQ(vb_log_level_from_string("warning"), LOG_WARNING);
        ASSERT_EQ(vb_log_level_from_string("warn"), LOG_WARNING);
        ASSERT_EQ(vb_log_level_from_string("err"), LOG_ERR);
        ASSERT_EQ(vb_log_level_from_string("error"), LOG_ERR);
        ASSERT_EQ(vb_log_level_from_string("ERROR"), LOG_ERR);
        ASSERT_EQ(vb_log_level_from_string("crit"), LOG_CRIT);
        ASSERT_EQ(vb_log_level_from_string("alert"), LOG_ALERT);
        ASSERT_EQ(vb_log_level_from_string("emerg"), LOG_EMERG);
        for (int i = 0; i <= 7; i++) {
                char s[2] = { (char)('0' + i), 0 };
                ASSERT_EQ(vb_log_level_from_string(s), i);
        }
        ASSERT_ERR(vb_log_level_from_string("8"), EINVAL);
        ASSERT_ERR(vb_log_level_from_string("07"), EINVAL);
        ASSERT_ERR(vb_log_level_from_string("-1"), EINVAL);
        ASSERT_ERR(vb_log_level_from_string(""), EINVAL);
        ASSERT_ERR(vb_log_level_from_string("verbose"), EINVAL);
        ASSERT_ERR(vb_log_level_from_string("info "), EINVAL);
        ASSERT_ERR(vb_log_level_from_string(NULL), EINVAL);

        for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
                ASSERT_EQ(vb_log_level_from_string(vb_log_level_to_string(i)), i);
        ASSERT_STREQ(vb_log_level_to_string(LOG_ERR), "error");
        ASSERT_STREQ(vb_log_level_to_string(LOG_WARNING), "warning");
        ASSERT_TRUE(vb_log_level_to_string(-1) == NULL);
        ASSERT_TRUE(vb_log_level_to_string(8) == NULL);
}

TEST(log_max_level)
{
        ASSERT_EQ(vb_log_get_max_level(), LOG_INFO);
        vb_log_set_max_level(LOG_DEBUG);
        ASSERT_EQ(vb_log_get_max_level(), LOG_DEBUG);
        vb_log_set_max_level(LOG_ERR);
        ASSERT_EQ(vb_log_get_max_level(), LOG_ERR);
        vb_log_set_max_level(100);
        ASSERT_EQ(vb_log_get_max_level(), LOG_DEBUG);
        vb_log_set_max_level(-5);
        ASSERT_EQ(vb_log_get_max_level(), LOG_EMERG);
}

TEST(log_filter_and_prefix)
{
        struct capture cap;
        char buf[4096];

        unsetenv("JOURNAL_STREAM");
        capture_start(&cap);
        log_debug("hidden %d", 1);
        log_info("shown %d", 2);
        log_notice("notice");
        log_warning("careful");
        log_error("broken");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "shown 2\nnotice\nwarning: careful\nerror: broken\n");

        vb_log_set_max_level(LOG_WARNING);
        log_info("hidden");
        log_notice("hidden");
        log_warning("w");
        log_full(LOG_CRIT, "c");
        log_full(LOG_ALERT, "a");
        log_full(LOG_EMERG, "e");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "warning: w\ncritical: c\nalert: a\nemergency: e\n");

        vb_log_set_max_level(LOG_DEBUG);
        log_debug("now %s", "shown");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "now shown\n");
        capture_stop(&cap);
}

static int evaluated;

static int count_evaluation(void)
{
        return ++evaluated;
}

TEST(log_filtered_arguments_not_evaluated)
{
        struct capture cap;
        char buf[256];

        capture_start(&cap);
        log_debug("%d", count_evaluation());
        ASSERT_EQ(evaluated, 0);
        ASSERT_ERR(log_debug_errno(EIO, "%d", count_evaluation()), EIO);
        ASSERT_EQ(evaluated, 0);
        log_info("%d", count_evaluation());
        ASSERT_EQ(evaluated, 1);
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "1\n");
        capture_stop(&cap);
}

TEST(log_errno_return_and_percent_m)
{
        struct capture cap;
        char buf[4096], want[512];

        unsetenv("JOURNAL_STREAM");
        capture_start(&cap);
        ASSERT_ERR(log_error_errno(ENOENT, "open %s: %m", "x"), ENOENT);
        ASSERT_ERR(log_error_errno(-ENOENT, "open %s: %m", "y"), ENOENT);
        snprintf(want, sizeof(want), "error: open x: %s\nerror: open y: %s\n", strerror(ENOENT), strerror(ENOENT));
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), want);

        /* Filtered messages still return the error. */
        ASSERT_ERR(log_debug_errno(EACCES, "quiet"), EACCES);
        ASSERT_ERR(log_debug_errno(-EACCES, "quiet"), EACCES);
        ASSERT_EQ(log_full_errno(LOG_DEBUG, 0, "quiet"), 0);
        ASSERT_EQ(log_full_errno(LOG_ERR, 0, "zero"), 0);
        ASSERT_ERR(log_warning_errno(EBUSY, "w"), EBUSY);
        ASSERT_ERR(log_notice_errno(EBUSY, "n"), EBUSY);
        ASSERT_ERR(log_info_errno(EBUSY, "i"), EBUSY);
        ASSERT_ERR(log_oom(), ENOMEM);
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "error: zero\nwarning: w\nn\ni\nerror: Out of memory.\n");

        /* INT_MIN does not overflow. */
        ASSERT_EQ(vb_log_errno_ret(INT_MIN), INT_MIN);
        ASSERT_EQ(vb_log_errno_ret(0), 0);

        /* errno survives the call; with error 0, %m is the caller's errno. */
        errno = EPERM;
        log_error_errno(EIO, "x");
        ASSERT_EQ(errno, EPERM);
        log_debug_errno(EIO, "x");
        ASSERT_EQ(errno, EPERM);
        errno = EEXIST;
        log_info("caller: %m");
        ASSERT_EQ(errno, EEXIST);
        snprintf(want, sizeof(want), "error: x\ncaller: %s\n", strerror(EEXIST));
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), want);
        capture_stop(&cap);
}

static int fails_with_log(void)
{
        return log_error_errno(EBADMSG, "bad message");
}

TEST(log_return_pattern)
{
        struct capture cap;
        char buf[256];

        unsetenv("JOURNAL_STREAM");
        capture_start(&cap);
        ASSERT_ERR(fails_with_log(), EBADMSG);
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "error: bad message\n");
        capture_stop(&cap);
}

TEST(log_one_write_per_line)
{
        struct capture cap;
        char buf[4096], big[5000];
        size_t len;

        capture_start(&cap);
        /* A trailing newline in the format is not doubled. */
        log_info("line\n");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "line\n");

        /* An over-long message is cut, ends in "...", and still is one line. */
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        log_info("%s", big);
        capture_read(&cap, buf, sizeof(buf));
        len = strlen(buf);
        ASSERT_TRUE(len > 1000 && len < 4096);
        ASSERT_EQ(buf[len - 1], '\n');
        ASSERT_TRUE(memcmp(buf + len - 4, "...", 3) == 0);
        ASSERT_TRUE(memchr(buf, '\n', len - 1) == NULL);

        /* Empty message: an empty line. */
        log_info("%s", "");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "\n");
        capture_stop(&cap);
}

TEST(log_journal_prefix)
{
        struct capture cap;
        char buf[512], env[64], line[128], want[512];
        struct stat st;

        ASSERT_OK(pipe2(cap.fds, O_CLOEXEC | O_NONBLOCK));
        ASSERT_OK(fstat(cap.fds[1], &st));
        snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        ASSERT_OK(setenv("JOURNAL_STREAM", env, 1));
        vb_log_set_target(cap.fds[1]);
        log_info("hello");
        log_warning("careful");
        log_error_errno(EIO, "bad: %m");
        log_full(LOG_EMERG, "down");
        snprintf(line, sizeof(line), "<%d>bad: %s\n", LOG_ERR, strerror(EIO));
        snprintf(want, sizeof(want), "<6>hello\n<4>careful\n%s<0>down\n", line);
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), want);

        /* Another stream: plain prefixes again. */
        ASSERT_OK(setenv("JOURNAL_STREAM", "1:2", 1));
        vb_log_set_target(cap.fds[1]);
        log_warning("plain");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "warning: plain\n");

        /* Garbage in JOURNAL_STREAM is ignored. */
        ASSERT_OK(setenv("JOURNAL_STREAM", "garbage", 1));
        vb_log_set_target(cap.fds[1]);
        log_warning("plain");
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "warning: plain\n");
        unsetenv("JOURNAL_STREAM");
        capture_stop(&cap);
}

TEST(log_discard_target)
{
        struct capture cap;
        char buf[64];

        capture_start(&cap);
        vb_log_set_target(-1);
        log_error("nowhere");
        ASSERT_ERR(log_error_errno(EIO, "nowhere"), EIO);
        vb_log_set_target(cap.fds[1]);
        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "");
        capture_stop(&cap);
}

TEST(log_parse_environment)
{
        struct capture cap;
        char buf[512];

        unsetenv("JOURNAL_STREAM");
        capture_start(&cap);
        unsetenv("VBAK_LOG_LEVEL");
        vb_log_parse_environment();
        ASSERT_EQ(vb_log_get_max_level(), LOG_INFO);

        ASSERT_OK(setenv("VBAK_LOG_LEVEL", "debug", 1));
        vb_log_parse_environment();
        ASSERT_EQ(vb_log_get_max_level(), LOG_DEBUG);

        ASSERT_OK(setenv("VBAK_LOG_LEVEL", "3", 1));
        vb_log_parse_environment();
        ASSERT_EQ(vb_log_get_max_level(), LOG_ERR);

        ASSERT_STREQ(capture_read(&cap, buf, sizeof(buf)), "");
        ASSERT_OK(setenv("VBAK_LOG_LEVEL", "loud", 1));
        vb_log_set_max_level(LOG_WARNING);
        vb_log_parse_environment();
        ASSERT_EQ(vb_log_get_max_level(), LOG_WARNING);
        capture_read(&cap, buf, sizeof(buf));
        ASSERT_TRUE(strncmp(buf, "warning: Ignoring invalid VBAK_LOG_LEVEL=loud: ", 47) == 0);
        ASSERT_EQ(buf[strlen(buf) - 1], '\n');
        unsetenv("VBAK_LOG_LEVEL");
        capture_stop(&cap);
}

TEST(log_to_file)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;

        fd = open("log", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        unsetenv("JOURNAL_STREAM");
        vb_log_set_target(fd);
        for (int i = 0; i < 100; i++)
                log_info("line %d", i);
        vb_log_set_target(STDERR_FILENO);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, "log", 1 << 20, &data, &len));
        ASSERT_TRUE(strncmp(data, "line 0\nline 1\n", 14) == 0);
        ASSERT_TRUE(len > 14 && strcmp(data + len - 8, "line 99\n") == 0);
}
