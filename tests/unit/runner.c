/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * runner.c -- runs every registered unit test in a child process, each in
 * its own temporary directory, and ends with "N passed, N failed".
 *
 * Usage: test-unit [SUBSTRING...]   runs only tests whose "file:name"
 * contains one of the substrings.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/util.h"
#include "tests/unit/test.h"

struct test {
        const char *file;
        const char *name;
        test_fn fn;
};

static struct test *tests;
static size_t n_tests;
static char tmpdir[PATH_MAX];

void test_register(const char *file, const char *name, test_fn fn)
{
        struct test *t = realloc(tests, (n_tests + 1) * sizeof(*t));

        if (!t)
                abort();
        tests = t;
        const char *base = strrchr(file, '/');
        tests[n_tests++] = (struct test){ base ? base + 1 : file, name, fn };
}

const char *test_tmpdir(void)
{
        return tmpdir;
}

static int cmp_test(const void *a, const void *b)
{
        const struct test *x = a, *y = b;
        int r = strcmp(x->file, y->file);
        return r ? r : strcmp(x->name, y->name);
}

static bool selected(const struct test *t, int argc, char **argv)
{
        char full[512];

        if (argc < 2)
                return true;
        snprintf(full, sizeof(full), "%s:%s", t->file, t->name);
        for (int i = 1; i < argc; i++)
                if (strstr(full, argv[i]))
                        return true;
        return false;
}

int main(int argc, char **argv)
{
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        unsigned passed = 0, failed = 0, skipped = 0;

        qsort(tests, n_tests, sizeof(*tests), cmp_test);
        for (size_t i = 0; i < n_tests; i++) {
                const struct test *t = &tests[i];
                int status;
                pid_t pid;

                if (!selected(t, argc, argv))
                        continue;
                snprintf(tmpdir, sizeof(tmpdir), "%s/vbak-test-XXXXXX", base);
                if (!mkdtemp(tmpdir)) {
                        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
                        return 1;
                }
                fflush(NULL);
                pid = fork();
                if (pid < 0) {
                        perror("fork");
                        return 1;
                }
                if (pid == 0) {
                        if (chdir(tmpdir) < 0)
                                _exit(1);
                        t->fn();
                        fflush(NULL);
                        _exit(0);
                }
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
                vb_rm_rf_at(AT_FDCWD, tmpdir);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                        printf("ok      %s:%s\n", t->file, t->name);
                        passed++;
                } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_TEST_SKIP) {
                        printf("skip    %s:%s\n", t->file, t->name);
                        skipped++;
                } else {
                        printf("FAIL    %s:%s (%s %d)\n", t->file, t->name, WIFSIGNALED(status) ? "signal" : "exit",
                               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                        failed++;
                }
        }
        if (skipped)
                printf("%u skipped\n", skipped);
        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
