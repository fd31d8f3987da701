/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test.h -- the unit test framework: TEST() registers a function with the
 * single runner (tests/unit/runner.c), which runs every test in its own
 * child process so that a crash or a failed assertion fails that test only.
 *
 * Assertions print file, line and both operands, then abort().
 */
#ifndef VB_TEST_H
#define VB_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);

void test_register(const char *file, const char *name, test_fn fn);

/* A fresh empty directory for this test, removed by the runner afterwards. */
const char *test_tmpdir(void);

/* Exit code that marks a test as skipped (reported, never counted as passed). */
#define EXIT_TEST_SKIP 77

#define TEST(name)                                                                                                     \
        static void test_##name(void);                                                                                 \
        __attribute__((constructor)) static void test_register_##name(void)                                            \
        {                                                                                                              \
                test_register(__FILE__, #name, test_##name);                                                           \
        }                                                                                                              \
        static void test_##name(void)

#define TEST_FAIL_(...)                                                                                                \
        do {                                                                                                           \
                fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                                        \
                fprintf(stderr, __VA_ARGS__);                                                                          \
                fputc('\n', stderr);                                                                                   \
                abort();                                                                                               \
        } while (0)

#define ASSERT_TRUE(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x))                                                                                              \
                        TEST_FAIL_("assertion failed: %s", #x);                                                        \
        } while (0)

#define ASSERT_EQ(a, b)                                                                                                \
        do {                                                                                                           \
                int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                                          \
                if (a_ != b_)                                                                                          \
                        TEST_FAIL_("%s == %s failed: %" PRId64 " != %" PRId64, #a, #b, a_, b_);                        \
        } while (0)

#define ASSERT_NE(a, b)                                                                                                \
        do {                                                                                                           \
                int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                                          \
                if (a_ == b_)                                                                                          \
                        TEST_FAIL_("%s != %s failed: both %" PRId64, #a, #b, a_);                                      \
        } while (0)

#define ASSERT_UEQ(a, b)                                                                                               \
        do {                                                                                                           \
                uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                                       \
                if (a_ != b_)                                                                                          \
                        TEST_FAIL_("%s == %s failed: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_);                        \
        } while (0)

/* r >= 0 (the project's success convention). */
#define ASSERT_OK(r)                                                                                                   \
        do {                                                                                                           \
                int64_t r_ = (int64_t)(r);                                                                             \
                if (r_ < 0)                                                                                            \
                        TEST_FAIL_("%s failed: %" PRId64 " (%s)", #r, r_, strerror((int)-r_));                         \
        } while (0)

/* r == -err. */
#define ASSERT_ERR(r, err)                                                                                             \
        do {                                                                                                           \
                int64_t r_ = (int64_t)(r);                                                                             \
                if (r_ != -(int64_t)(err))                                                                             \
                        TEST_FAIL_("%s: expected -%s (%d), got %" PRId64, #r, #err, (int)(err), r_);                   \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                                             \
        do {                                                                                                           \
                const char *a_ = (a), *b_ = (b);                                                                       \
                if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                                 \
                        TEST_FAIL_("%s == %s failed: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                    \
                                   b_ ? b_ : "(null)");                                                                \
        } while (0)

#define ASSERT_MEMEQ(a, b, n)                                                                                          \
        do {                                                                                                           \
                if (memcmp((a), (b), (n)) != 0)                                                                        \
                        TEST_FAIL_("%s and %s differ in their first %zu bytes", #a, #b, (size_t)(n));                  \
        } while (0)

#endif
