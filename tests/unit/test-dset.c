/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-dset.c -- tests for dedup/dset.[ch]: add, contains and size,
 * duplicates, the refused null digest, growth far past the first table,
 * digests whose first bytes (the hash) collide, and to_array.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "dedup/dset.h"
#include "tests/unit/test.h"

static uint64_t rng_state = 0xda3e39cb94b95bdbull;

static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static dd_digest random_digest(void)
{
        dd_digest d;

        for (int i = 0; i < DD_DIGEST_SIZE; i += 8) {
                uint64_t v = rng();
                memcpy(d.b + i, &v, 8);
        }
        return d;
}

static int cmp_digest(const void *a, const void *b)
{
        return memcmp(a, b, DD_DIGEST_SIZE);
}

TEST(dset_basic)
{
        _cleanup_(dd_dset_freep) dd_dset *s = dd_dset_new();
        dd_digest a, b, null = DD_DIGEST_NULL;

        ASSERT_TRUE(s);
        ASSERT_OK(dd_digest_compute("a", 1, &a));
        ASSERT_OK(dd_digest_compute("b", 1, &b));
        ASSERT_UEQ(dd_dset_size(s), 0);
        ASSERT_TRUE(!dd_dset_contains(s, &a));

        ASSERT_EQ(dd_dset_add(s, &a), 1);
        ASSERT_UEQ(dd_dset_size(s), 1);
        ASSERT_TRUE(dd_dset_contains(s, &a));
        ASSERT_TRUE(!dd_dset_contains(s, &b));
        ASSERT_EQ(dd_dset_add(s, &a), 0);
        ASSERT_UEQ(dd_dset_size(s), 1);
        ASSERT_EQ(dd_dset_add(s, &b), 1);
        ASSERT_EQ(dd_dset_add(s, &b), 0);
        ASSERT_UEQ(dd_dset_size(s), 2);

        /* A copy with equal bytes is the same member. */
        dd_digest a2;
        memcpy(a2.b, a.b, sizeof(a2.b));
        ASSERT_EQ(dd_dset_add(s, &a2), 0);
        ASSERT_TRUE(dd_dset_contains(s, &a2));
        /* One differing bit is another. */
        a2.b[31] ^= 0x80;
        ASSERT_TRUE(!dd_dset_contains(s, &a2));

        /* The null digest is the empty-slot marker: refused, never contained. */
        ASSERT_ERR(dd_dset_add(s, &null), EINVAL);
        ASSERT_TRUE(!dd_dset_contains(s, &null));
        ASSERT_UEQ(dd_dset_size(s), 2);

        ASSERT_ERR(dd_dset_add(NULL, &a), EINVAL);
        ASSERT_ERR(dd_dset_add(s, NULL), EINVAL);
        ASSERT_TRUE(!dd_dset_contains(NULL, &a));
        ASSERT_TRUE(!dd_dset_contains(s, NULL));
        ASSERT_UEQ(dd_dset_size(NULL), 0);
        ASSERT_TRUE(dd_dset_free(NULL) == NULL);
}

TEST(dset_growth)
{
        const size_t n = 150000;
        _cleanup_(dd_dset_freep) dd_dset *s = dd_dset_new();
        _cleanup_free_ dd_digest *v = malloc(n * sizeof(*v));
        _cleanup_free_ dd_digest *arr = NULL;
        size_t an = 0;

        ASSERT_TRUE(s && v);
        for (size_t i = 0; i < n; i++) {
                v[i] = random_digest();
                ASSERT_EQ(dd_dset_add(s, &v[i]), 1);
                ASSERT_UEQ(dd_dset_size(s), i + 1);
                /* Check a few earlier members across every growth. */
                if ((i & (i - 1)) == 0)
                        for (size_t j = 0; j <= i; j += 1 + i / 64)
                                ASSERT_TRUE(dd_dset_contains(s, &v[j]));
        }
        for (size_t i = 0; i < n; i++) {
                if (!dd_dset_contains(s, &v[i]))
                        TEST_FAIL_("member %zu lost", i);
                ASSERT_EQ(dd_dset_add(s, &v[i]), 0);
        }
        ASSERT_UEQ(dd_dset_size(s), n);
        for (size_t i = 0; i < 10000; i++) {
                dd_digest d = random_digest();
                ASSERT_TRUE(!dd_dset_contains(s, &d));
        }

        /* to_array: each member exactly once. */
        ASSERT_OK(dd_dset_to_array(s, &arr, &an));
        ASSERT_UEQ(an, n);
        qsort(arr, an, sizeof(*arr), cmp_digest);
        qsort(v, n, sizeof(*v), cmp_digest);
        ASSERT_MEMEQ(arr, v, n * sizeof(*v));
}

/* Digests equal in their first 8 bytes all probe from the same slot. */
TEST(dset_colliding_hashes)
{
        const size_t n = 5000;
        _cleanup_(dd_dset_freep) dd_dset *s = dd_dset_new();
        _cleanup_free_ dd_digest *arr = NULL;
        size_t an = 0;

        ASSERT_TRUE(s);
        for (size_t i = 0; i < n; i++) {
                dd_digest d = DD_DIGEST_NULL;
                memset(d.b, 0xab, 8);
                memcpy(d.b + 24, &i, sizeof(i));
                d.b[8] = 1; /* never null, even for i == 0 */
                ASSERT_EQ(dd_dset_add(s, &d), 1);
        }
        /* Digests whose hash part is zero. */
        for (size_t i = 0; i < 100; i++) {
                dd_digest d = DD_DIGEST_NULL;
                d.b[31 - (i % 20)] = (uint8_t)(i + 1);
                ASSERT_EQ(dd_dset_add(s, &d), 1);
        }
        ASSERT_UEQ(dd_dset_size(s), n + 100);
        for (size_t i = 0; i < n; i++) {
                dd_digest d = DD_DIGEST_NULL;
                memset(d.b, 0xab, 8);
                memcpy(d.b + 24, &i, sizeof(i));
                d.b[8] = 1;
                ASSERT_TRUE(dd_dset_contains(s, &d));
                ASSERT_EQ(dd_dset_add(s, &d), 0);
                d.b[9] = 1;
                ASSERT_TRUE(!dd_dset_contains(s, &d));
        }
        ASSERT_OK(dd_dset_to_array(s, &arr, &an));
        ASSERT_UEQ(an, n + 100);
        qsort(arr, an, sizeof(*arr), cmp_digest);
        for (size_t i = 0; i < an; i++) {
                ASSERT_TRUE(!dd_digest_is_null(&arr[i]));
                if (i > 0)
                        ASSERT_TRUE(cmp_digest(&arr[i - 1], &arr[i]) < 0);
                ASSERT_TRUE(dd_dset_contains(s, &arr[i]));
        }
}

TEST(dset_to_array_empty)
{
        _cleanup_(dd_dset_freep) dd_dset *s = dd_dset_new();
        _cleanup_free_ dd_digest *arr = NULL;
        size_t an = 99;

        ASSERT_TRUE(s);
        ASSERT_OK(dd_dset_to_array(s, &arr, &an));
        ASSERT_UEQ(an, 0);
        ASSERT_TRUE(arr != NULL);
}
