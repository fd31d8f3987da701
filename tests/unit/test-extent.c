/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-extent.c -- tests for dedup/extent.[ch]: adding, normalizing
 * (sorting, merging, range checks), parsing "OFFSET LENGTH" text (number
 * forms, comments, blank lines, trailing blanks, CRLF, the line number of a
 * bad line), the allocated extents of a real sparse file, and the walk
 * chunk by chunk, checked piece by piece against an independent split of
 * the extents at chunk boundaries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/util.h"
#include "dedup/extent.h"
#include "tests/unit/test.h"

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void extents_clearp(dd_extents *e)
{
        dd_extents_clear(e);
}

#define _cleanup_extents_ _cleanup_(extents_clearp)

static void assert_extents(const dd_extents *e, const dd_extent *want, size_t n)
{
        if (e->n != n)
                TEST_FAIL_("%zu extents, expected %zu", e->n, n);
        for (size_t i = 0; i < n; i++)
                if (e->v[i].offset != want[i].offset || e->v[i].length != want[i].length)
                        TEST_FAIL_("extent %zu is %" PRIu64 "+%" PRIu64 ", expected %" PRIu64 "+%" PRIu64, i,
                                   e->v[i].offset, e->v[i].length, want[i].offset, want[i].length);
}

/* Normalized: sorted, non-empty, neither overlapping nor touching, in size. */
static void assert_normalized(const dd_extents *e, uint64_t size)
{
        for (size_t i = 0; i < e->n; i++) {
                ASSERT_TRUE(e->v[i].length > 0);
                ASSERT_TRUE(e->v[i].offset <= size && e->v[i].length <= size - e->v[i].offset);
                if (i > 0)
                        ASSERT_TRUE(e->v[i - 1].offset + e->v[i - 1].length < e->v[i].offset);
        }
}

/* --- add, normalize, total ----------------------------------------------- */

TEST(extent_add_and_clear)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;

        ASSERT_ERR(dd_extents_add(NULL, 0, 1), EINVAL);
        ASSERT_OK(dd_extents_add(&e, 5, 0)); /* empty: dropped */
        ASSERT_UEQ(e.n, 0);
        for (uint64_t i = 0; i < 1000; i++)
                ASSERT_OK(dd_extents_add(&e, i * 10, i + 1));
        ASSERT_UEQ(e.n, 1000);
        ASSERT_TRUE(e.cap >= 1000);
        ASSERT_UEQ(e.v[999].offset, 9990);
        ASSERT_UEQ(e.v[999].length, 1000);
        ASSERT_UEQ(dd_extents_total(&e), 1000 * 1001 / 2);
        dd_extents_clear(&e);
        ASSERT_TRUE(e.v == NULL && e.n == 0 && e.cap == 0);
        ASSERT_UEQ(dd_extents_total(&e), 0);
        ASSERT_UEQ(dd_extents_total(NULL), 0);
        dd_extents_clear(NULL);
}

TEST(extent_normalize)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;

        /* Sorting. */
        ASSERT_OK(dd_extents_add(&e, 300, 10));
        ASSERT_OK(dd_extents_add(&e, 100, 10));
        ASSERT_OK(dd_extents_add(&e, 200, 10));
        ASSERT_OK(dd_extents_normalize(&e, 1000));
        assert_extents(&e, (dd_extent[]){ { 100, 10 }, { 200, 10 }, { 300, 10 } }, 3);
        dd_extents_clear(&e);

        /* Overlap, containment, adjacency, a one-byte gap that stays. */
        ASSERT_OK(dd_extents_add(&e, 5, 10));   /* 5-15 */
        ASSERT_OK(dd_extents_add(&e, 0, 10));   /* 0-10 */
        ASSERT_OK(dd_extents_add(&e, 15, 5));   /* 15-20: touches */
        ASSERT_OK(dd_extents_add(&e, 2, 3));    /* inside */
        ASSERT_OK(dd_extents_add(&e, 21, 4));   /* 21-25: one-byte gap */
        ASSERT_OK(dd_extents_add(&e, 100, 50)); /* 100-150 */
        ASSERT_OK(dd_extents_add(&e, 100, 10)); /* same start, shorter */
        ASSERT_OK(dd_extents_add(&e, 140, 60)); /* 140-200 */
        ASSERT_OK(dd_extents_add(&e, 200, 0));
        ASSERT_OK(dd_extents_normalize(&e, 1000));
        assert_extents(&e, (dd_extent[]){ { 0, 20 }, { 21, 4 }, { 100, 100 } }, 3);
        ASSERT_UEQ(dd_extents_total(&e), 124);
        /* Normalizing again changes nothing. */
        ASSERT_OK(dd_extents_normalize(&e, 1000));
        assert_extents(&e, (dd_extent[]){ { 0, 20 }, { 21, 4 }, { 100, 100 } }, 3);
        dd_extents_clear(&e);

        /* A long extent swallowing many later ones, then one after it. */
        ASSERT_OK(dd_extents_add(&e, 0, 1000));
        for (uint64_t i = 1; i < 50; i++)
                ASSERT_OK(dd_extents_add(&e, i * 19, 7));
        ASSERT_OK(dd_extents_add(&e, 999, 2));
        ASSERT_OK(dd_extents_add(&e, 1002, 1));
        ASSERT_OK(dd_extents_normalize(&e, 1003));
        assert_extents(&e, (dd_extent[]){ { 0, 1001 }, { 1002, 1 } }, 2);
        dd_extents_clear(&e);

        /* Empty extents put there directly are dropped. */
        ASSERT_OK(dd_extents_add(&e, 10, 1));
        ASSERT_OK(dd_extents_add(&e, 20, 1));
        ASSERT_OK(dd_extents_add(&e, 30, 1));
        e.v[1].length = 0;
        e.v[2].offset = 5;
        e.v[2].length = 0;
        ASSERT_OK(dd_extents_normalize(&e, 100));
        assert_extents(&e, (dd_extent[]){ { 10, 1 } }, 1);
        dd_extents_clear(&e);

        /* Nothing at all. */
        ASSERT_OK(dd_extents_normalize(&e, 0));
        ASSERT_UEQ(e.n, 0);
        ASSERT_ERR(dd_extents_normalize(NULL, 0), EINVAL);
}

TEST(extent_normalize_range)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;

        ASSERT_OK(dd_extents_add(&e, 0, 100));
        ASSERT_OK(dd_extents_normalize(&e, 100)); /* ends exactly at the end */
        ASSERT_ERR(dd_extents_normalize(&e, 99), ERANGE);
        dd_extents_clear(&e);

        ASSERT_OK(dd_extents_add(&e, 100, 1));
        ASSERT_ERR(dd_extents_normalize(&e, 100), ERANGE);
        dd_extents_clear(&e);

        ASSERT_OK(dd_extents_add(&e, 200, 1));
        ASSERT_OK(dd_extents_add(&e, 0, 1));
        ASSERT_ERR(dd_extents_normalize(&e, 100), ERANGE);
        dd_extents_clear(&e);

        /* offset + length wraps around 2^64. */
        ASSERT_OK(dd_extents_add(&e, UINT64_MAX - 1, 10));
        ASSERT_ERR(dd_extents_normalize(&e, UINT64_MAX), ERANGE);
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_add(&e, 10, UINT64_MAX));
        ASSERT_ERR(dd_extents_normalize(&e, UINT64_MAX), ERANGE);
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_add(&e, UINT64_MAX, UINT64_MAX));
        ASSERT_ERR(dd_extents_normalize(&e, UINT64_MAX), ERANGE);
        dd_extents_clear(&e);

        /* Up to the very last byte is fine. */
        ASSERT_OK(dd_extents_add(&e, UINT64_MAX - 10, 10));
        ASSERT_OK(dd_extents_add(&e, 0, UINT64_MAX - 20));
        ASSERT_OK(dd_extents_normalize(&e, UINT64_MAX));
        assert_extents(&e, (dd_extent[]){ { 0, UINT64_MAX - 20 }, { UINT64_MAX - 10, 10 } }, 2);
}

TEST(extent_normalize_random)
{
        enum {
                SPACE = 4096
        };
        static uint8_t map[SPACE];

        for (int round = 0; round < 200; round++) {
                _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
                size_t n = (size_t)(rng() % 40);

                memset(map, 0, sizeof(map));
                for (size_t i = 0; i < n; i++) {
                        uint64_t off = rng() % SPACE, len = rng() % (round % 2 ? 300 : 20);
                        if (len > SPACE - off)
                                len = SPACE - off;
                        ASSERT_OK(dd_extents_add(&e, off, len));
                        memset(map + off, 1, len);
                }
                ASSERT_OK(dd_extents_normalize(&e, SPACE));
                assert_normalized(&e, SPACE);
                /* The same bytes, exactly. */
                uint64_t covered = 0;
                for (size_t i = 0; i < e.n; i++)
                        for (uint64_t b = e.v[i].offset; b < e.v[i].offset + e.v[i].length; b++) {
                                ASSERT_EQ(map[b], 1);
                                map[b] = 2;
                                covered++;
                        }
                for (size_t b = 0; b < SPACE; b++)
                        ASSERT_TRUE(map[b] != 1);
                ASSERT_UEQ(dd_extents_total(&e), covered);
        }
}

/* --- parse ---------------------------------------------------------------- */

static int parse(const char *text, dd_extents *e, unsigned *line)
{
        dd_extents_clear(e);
        *line = 0;
        return dd_extents_parse(text, strlen(text), e, line);
}

TEST(extent_parse)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        unsigned line;

        ASSERT_OK(parse("0 4096\n"
                        "0x2000 0x1000\n"
                        "# a comment\n"
                        "\n"
                        "   \t \n"
                        "  16384   512  \n"
                        "\t20000\t10\t# trailing comment\n"
                        "0XAbC 0x1f#tight comment\n"
                        "100000 1",
                        &e, &line));
        assert_extents(&e,
                       (dd_extent[]){ { 0, 4096 },
                                      { 0x2000, 0x1000 },
                                      { 16384, 512 },
                                      { 20000, 10 },
                                      { 0xabc, 0x1f },
                                      { 100000, 1 } },
                       6);

        /* Empty inputs. */
        ASSERT_OK(parse("", &e, &line));
        ASSERT_UEQ(e.n, 0);
        ASSERT_OK(parse("\n\n# only comments\n#\n", &e, &line));
        ASSERT_UEQ(e.n, 0);
        ASSERT_OK(dd_extents_parse("1 2", 0, &e, &line)); /* len counts, not the NUL */
        ASSERT_UEQ(e.n, 0);

        /* A zero length is fine and adds nothing. */
        ASSERT_OK(parse("5 0\n7 1\n", &e, &line));
        assert_extents(&e, (dd_extent[]){ { 7, 1 } }, 1);

        /* The biggest numbers. */
        ASSERT_OK(parse("18446744073709551614 1\n0 0xffffffffffffffff\n", &e, &line));
        assert_extents(&e, (dd_extent[]){ { UINT64_MAX - 1, 1 }, { 0, UINT64_MAX } }, 2);

        /* Leading zeros are decimal, not octal. */
        ASSERT_OK(parse("010 010\n", &e, &line));
        assert_extents(&e, (dd_extent[]){ { 10, 10 } }, 1);

        /* Appends to what is there. */
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_add(&e, 1, 1));
        ASSERT_OK(dd_extents_parse("5 5\n", 4, &e, &line));
        assert_extents(&e, (dd_extent[]){ { 1, 1 }, { 5, 5 } }, 2);

        ASSERT_ERR(dd_extents_parse(NULL, 0, &e, &line), EINVAL);
        ASSERT_ERR(dd_extents_parse("", 0, NULL, &line), EINVAL);
        /* ret_line may be NULL. */
        ASSERT_ERR(dd_extents_parse("x", 1, &e, NULL), EINVAL);
}

/* CRLF line ends are accepted: '\r' is white space before the end of line. */
TEST(extent_parse_crlf)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        unsigned line;

        ASSERT_OK(parse("0 4096\r\n# comment\r\n\r\n0x2000 16\r\n8192 1 # c\r\n", &e, &line));
        assert_extents(&e, (dd_extent[]){ { 0, 4096 }, { 0x2000, 16 }, { 8192, 1 } }, 3);
        /* A lone CR is no line end: two lines run into one bad line. */
        ASSERT_ERR(parse("0 1\r2 3\n", &e, &line), EINVAL);
        ASSERT_EQ(line, 1);
        ASSERT_ERR(parse("0 1\n\r\n5 5\r\r7 7\n", &e, &line), EINVAL);
        ASSERT_EQ(line, 3);
}

TEST(extent_parse_bad_lines)
{
        static const char *const bad[] = {
                "1",
                "1 ",
                "x 1",
                "1 x",
                "1 2 3",
                "1 2x",
                "1x 2",
                "-1 2",
                "1 -2",
                "+1 2",
                "1,2",
                "1;2",
                "0x 5",
                "0x",
                "1 0x",
                "0xg 1",
                "1 0xg",
                "1.5 2",
                "1 2.5",
                "1e3 2",
                "18446744073709551616 1",
                "1 18446744073709551616",
                "0x10000000000000000 1",
                "18446744073709551615 1", /* offset + length past 2^64 */
                "1 18446744073709551615",
                "# ok\n1",
                "1 2 # ok\n\n3",
        };
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        unsigned line;
        char text[256];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                for (int form = 0; form < 3; form++) {
                        /* The bad line alone, after three good or blank lines, and
                         * before more good lines. */
                        unsigned base = 0;
                        if (form == 0)
                                snprintf(text, sizeof(text), "%s", bad[i]);
                        else if (form == 1) {
                                snprintf(text, sizeof(text), "0 1\n\n# c\n%s\n5 5\n", bad[i]);
                                base = 3;
                        } else {
                                snprintf(text, sizeof(text), "0 1\r\n  \r\n%s\r\n", bad[i]);
                                base = 2;
                        }
                        unsigned want = base + 1;
                        for (const char *p = bad[i]; *p; p++)
                                want += *p == '\n';
                        int r = parse(text, &e, &line);
                        if (r != -EINVAL || line != want)
                                TEST_FAIL_("\"%s\" (form %d): %d at line %u, expected -EINVAL at line %u", bad[i], form,
                                           r, line, want);
                }

        /* A NUL byte inside the text is not white space. */
        static const char nul[] = "0 1\n2\0 3\n";
        ASSERT_ERR(dd_extents_parse(nul, sizeof(nul) - 1, &e, &line), EINVAL);
        ASSERT_EQ(line, 2);
}

/* --- extents of a sparse file -------------------------------------------- */

TEST(extent_from_fd)
{
        const uint64_t size = 64ull << 20;
        static const struct {
                uint64_t off;
                size_t len;
        } writes[] = {
                { 0, 1 }, { (1 << 20) + 100, 5000 }, { (10 << 20) - 1, 2 }, { 33 << 20, 300000 }, { (64 << 20) - 1, 1 },
        };
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        _cleanup_close_ int fd = open("sparse", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        _cleanup_free_ uint8_t *data = malloc(size);
        uint8_t buf[300000];
        struct stat st;

        ASSERT_TRUE(fd >= 0 && data);
        ASSERT_OK(ftruncate(fd, (off_t)size));
        memset(buf, 0x5a, sizeof(buf));
        for (size_t i = 0; i < ELEMENTSOF(writes); i++)
                ASSERT_OK(vb_pwrite_all(fd, buf, writes[i].len, (off_t)writes[i].off));
        ASSERT_OK(fstat(fd, &st));

        ASSERT_OK(dd_extents_from_fd(fd, size, &e));
        assert_normalized(&e, size);
        ASSERT_TRUE(e.n >= 1);
        /* Every written byte is inside an extent. */
        for (size_t i = 0; i < ELEMENTSOF(writes); i++) {
                uint64_t a = writes[i].off, b = writes[i].off + writes[i].len;
                bool in = false;
                for (size_t k = 0; k < e.n; k++)
                        if (e.v[k].offset <= a && b <= e.v[k].offset + e.v[k].length)
                                in = true;
                if (!in)
                        TEST_FAIL_("written bytes %" PRIu64 "-%" PRIu64 " are outside the extents", a, b);
        }
        /* Every byte outside them reads as zero. */
        ASSERT_OK(vb_pread_all(fd, data, size, 0));
        uint64_t pos = 0;
        for (size_t k = 0; k <= e.n; k++) {
                uint64_t end = k < e.n ? e.v[k].offset : size;
                for (; pos < end; pos++)
                        if (data[pos])
                                TEST_FAIL_("byte %" PRIu64 " outside the extents is not zero", pos);
                if (k < e.n)
                        pos = e.v[k].offset + e.v[k].length;
        }
        /* A file system with holes reports far less than the whole file. */
        if ((uint64_t)st.st_blocks * 512 < size / 2)
                ASSERT_TRUE(dd_extents_total(&e) < size / 2);

        /* A size below the file's clips the extents to it. */
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_from_fd(fd, (1 << 20) + 101, &e));
        assert_normalized(&e, (1 << 20) + 101);
        ASSERT_TRUE(e.n >= 2);
        ASSERT_UEQ(e.v[e.n - 1].offset + e.v[e.n - 1].length, (1 << 20) + 101);

        /* Size 0: nothing. */
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_from_fd(fd, 0, &e));
        ASSERT_UEQ(e.n, 0);
        ASSERT_ERR(dd_extents_from_fd(-1, 10, &e), EINVAL);
        ASSERT_ERR(dd_extents_from_fd(fd, 10, NULL), EINVAL);
}

TEST(extent_from_fd_dense_and_empty)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        _cleanup_close_ int fd = open("dense", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        _cleanup_close_ int hole = open("hole", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        uint8_t buf[100000];
        struct stat st;

        ASSERT_TRUE(fd >= 0 && hole >= 0);
        memset(buf, 1, sizeof(buf));
        ASSERT_OK(vb_write_all(fd, buf, sizeof(buf)));
        ASSERT_OK(dd_extents_from_fd(fd, sizeof(buf), &e));
        assert_extents(&e, (dd_extent[]){ { 0, sizeof(buf) } }, 1);

        /* All hole: nothing, when the file system knows holes. */
        dd_extents_clear(&e);
        ASSERT_OK(ftruncate(hole, 16 << 20));
        ASSERT_OK(fstat(hole, &st));
        ASSERT_OK(dd_extents_from_fd(hole, 16 << 20, &e));
        assert_normalized(&e, 16 << 20);
        if (st.st_blocks == 0)
                ASSERT_UEQ(e.n, 0);
}

/* --- the walk -------------------------------------------------------------- */

typedef unsigned __int128 u128;

/* An independent split of normalized extents at chunk boundaries. */
typedef struct split {
        const dd_extents *e;
        uint32_t cs;
        size_t i;
        uint64_t pos;
} split;

static bool split_next(split *s, uint64_t *ret_chunk, dd_extent *ret)
{
        const dd_extent *x;
        uint64_t start, chunk;
        u128 cend, xend, stop;

        if (s->i >= s->e->n)
                return false;
        x = &s->e->v[s->i];
        start = MAX(s->pos, x->offset);
        chunk = start / s->cs;
        cend = ((u128)chunk + 1) * s->cs;
        xend = (u128)x->offset + x->length;
        stop = MIN(cend, xend);
        *ret_chunk = chunk;
        *ret = (dd_extent){ start, (uint64_t)(stop - start) };
        if (stop == xend) {
                s->i++;
                s->pos = 0;
        } else
                s->pos = (uint64_t)stop;
        return true;
}

static bool in_pieces(const dd_extent *v, size_t n, uint64_t b)
{
        for (size_t k = 0; k < n; k++)
                if (b >= v[k].offset && b - v[k].offset < v[k].length)
                        return true;
        return false;
}

/* Walks e and checks every step; returns the number of chunks. With
 * max_steps, stops quietly after that many chunks. */
static uint64_t check_walk(const dd_extents *e, uint32_t cs, size_t max, uint64_t max_steps, uint64_t *ret_merged)
{
        _cleanup_free_ dd_extent *got = calloc(max, sizeof(*got));
        size_t gcap = 64, gn = 0;
        _cleanup_free_ dd_extent *group = malloc(gcap * sizeof(*group));
        dd_extent_walk w;
        split s = { e, cs, 0, 0 };
        uint64_t steps = 0, merged = 0, prev = 0, pend_chunk = 0;
        dd_extent pend;
        bool have_pend = split_next(&s, &pend_chunk, &pend);

        ASSERT_TRUE(got && group);
        dd_extent_walk_init(&w, e, cs);
        for (;;) {
                uint64_t index = UINT64_MAX;
                size_t n = SIZE_MAX;
                int r;

                if (max_steps && steps == max_steps)
                        break;
                r = dd_extent_walk_next(&w, &index, got, max, &n);
                if (r == 0) {
                        if (have_pend)
                                TEST_FAIL_("walk ended before chunk %" PRIu64, pend_chunk);
                        break;
                }
                ASSERT_EQ(r, 1);
                if (n < 1 || n > max)
                        TEST_FAIL_("chunk %" PRIu64 ": %zu pieces (max %zu)", index, n, max);
                if (steps > 0 && index <= prev)
                        TEST_FAIL_("chunk %" PRIu64 " after chunk %" PRIu64, index, prev);
                if (!have_pend || pend_chunk != index)
                        TEST_FAIL_("walk gave chunk %" PRIu64 ", the extents touch chunk %" PRIu64 " next", index,
                                   have_pend ? pend_chunk : UINT64_MAX);
                /* The expected pieces of this chunk. */
                gn = 0;
                while (have_pend && pend_chunk == index) {
                        if (gn == gcap) {
                                gcap *= 2;
                                dd_extent *g = realloc(group, gcap * sizeof(*group));
                                ASSERT_TRUE(g);
                                group = g;
                        }
                        group[gn++] = pend;
                        have_pend = split_next(&s, &pend_chunk, &pend);
                }
                u128 cstart = (u128)index * cs, cend = cstart + cs;
                for (size_t k = 0; k < n; k++) {
                        if (got[k].length == 0 || got[k].offset < cstart || got[k].offset + (u128)got[k].length > cend)
                                TEST_FAIL_("chunk %" PRIu64 " piece %zu (%" PRIu64 "+%" PRIu64 ") is not in it", index,
                                           k, got[k].offset, got[k].length);
                        if (k > 0 && got[k - 1].offset + got[k - 1].length > got[k].offset)
                                TEST_FAIL_("chunk %" PRIu64 ": pieces %zu and %zu overlap or are unsorted", index,
                                           k - 1, k);
                }
                if (gn <= max) {
                        /* Exactly the parts of the extents in the chunk. */
                        if (n != gn)
                                TEST_FAIL_("chunk %" PRIu64 ": %zu pieces, expected %zu", index, n, gn);
                        for (size_t k = 0; k < n; k++)
                                if (got[k].offset != group[k].offset || got[k].length != group[k].length)
                                        TEST_FAIL_("chunk %" PRIu64 " piece %zu: %" PRIu64 "+%" PRIu64
                                                   ", expected %" PRIu64 "+%" PRIu64,
                                                   index, k, got[k].offset, got[k].length, group[k].offset,
                                                   group[k].length);
                } else {
                        /* Merged spans: they cover every part, and begin and end on extent bytes. */
                        merged++;
                        for (size_t g = 0; g < gn; g++) {
                                bool in = false;
                                for (size_t k = 0; k < n && !in; k++)
                                        in = group[g].offset >= got[k].offset &&
                                             group[g].offset + group[g].length <= got[k].offset + got[k].length;
                                if (!in)
                                        TEST_FAIL_("chunk %" PRIu64 ": part %" PRIu64 "+%" PRIu64 " not covered", index,
                                                   group[g].offset, group[g].length);
                        }
                        for (size_t k = 0; k < n; k++)
                                if (!in_pieces(group, gn, got[k].offset) ||
                                    !in_pieces(group, gn, got[k].offset + got[k].length - 1))
                                        TEST_FAIL_("chunk %" PRIu64 ": span %zu does not begin and end on data", index,
                                                   k);
                }
                prev = index;
                steps++;
        }
        if (ret_merged)
                *ret_merged = merged;
        return steps;
}

TEST(extent_walk_spanning)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        dd_extent_walk w;
        dd_extent p[4];
        uint64_t idx;
        size_t n;

        ASSERT_OK(dd_extents_add(&e, 100, 3 * 4096));
        ASSERT_OK(dd_extents_normalize(&e, 1 << 20));
        dd_extent_walk_init(&w, &e, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 0);
        assert_extents(&(dd_extents){ p, n, 4 }, (dd_extent[]){ { 100, 3996 } }, 1);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 1);
        assert_extents(&(dd_extents){ p, n, 4 }, (dd_extent[]){ { 4096, 4096 } }, 1);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 2);
        assert_extents(&(dd_extents){ p, n, 4 }, (dd_extent[]){ { 8192, 4096 } }, 1);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 3);
        assert_extents(&(dd_extents){ p, n, 4 }, (dd_extent[]){ { 12288, 100 } }, 1);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 0);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 0);
        ASSERT_UEQ(check_walk(&e, 4096, 4, 0, NULL), 4);
        ASSERT_UEQ(check_walk(&e, 1, 1, 0, NULL), 3 * 4096);
        ASSERT_UEQ(check_walk(&e, 4196, 1, 0, NULL), 3);

        /* An extent that starts and ends on chunk boundaries. */
        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_add(&e, 8192, 8192));
        ASSERT_UEQ(check_walk(&e, 4096, 4, 0, NULL), 2);

        /* Nothing to walk. */
        dd_extents_clear(&e);
        dd_extent_walk_init(&w, &e, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 0);
        dd_extent_walk_init(&w, NULL, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 0);
}

TEST(extent_walk_pieces_in_one_chunk)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        dd_extent_walk w;
        dd_extent p[8];
        uint64_t idx;
        size_t n;

        ASSERT_OK(dd_extents_add(&e, 4096 + 10, 5));
        ASSERT_OK(dd_extents_add(&e, 4096 + 100, 10));
        ASSERT_OK(dd_extents_add(&e, 4096 + 1000, 1));
        ASSERT_OK(dd_extents_add(&e, 8000, 1000)); /* into chunk 2 */
        ASSERT_OK(dd_extents_normalize(&e, 1 << 20));
        dd_extent_walk_init(&w, &e, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 8, &n), 1);
        ASSERT_UEQ(idx, 1);
        assert_extents(&(dd_extents){ p, n, 8 }, (dd_extent[]){ { 4106, 5 }, { 4196, 10 }, { 5096, 1 }, { 8000, 192 } },
                       4);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 8, &n), 1);
        ASSERT_UEQ(idx, 2);
        assert_extents(&(dd_extents){ p, n, 8 }, (dd_extent[]){ { 8192, 808 } }, 1);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 8, &n), 0);
        ASSERT_UEQ(check_walk(&e, 4096, 8, 0, NULL), 2);
        ASSERT_UEQ(check_walk(&e, 4096, 4, 0, NULL), 2);
}

TEST(extent_walk_more_than_max)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
        dd_extent_walk w;
        dd_extent p[4];
        uint64_t idx, merged;
        size_t n;

        /* Ten pieces in chunk 0, two in chunk 1. */
        for (uint64_t i = 0; i < 10; i++)
                ASSERT_OK(dd_extents_add(&e, i * 400 + 7, 3));
        ASSERT_OK(dd_extents_add(&e, 4096 + 1, 1));
        ASSERT_OK(dd_extents_add(&e, 4096 + 3, 1));
        ASSERT_OK(dd_extents_normalize(&e, 1 << 20));
        dd_extent_walk_init(&w, &e, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 0);
        ASSERT_EQ(n, 4);
        /* The spans cover the first and the last piece of the chunk. */
        ASSERT_UEQ(p[0].offset, 7);
        ASSERT_UEQ(p[n - 1].offset + p[n - 1].length, 9 * 400 + 10);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 1);
        ASSERT_UEQ(idx, 1);
        assert_extents(&(dd_extents){ p, n, 4 }, (dd_extent[]){ { 4097, 1 }, { 4099, 1 } }, 2);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 4, &n), 0);

        for (size_t max = 1; max <= 12; max++) {
                ASSERT_UEQ(check_walk(&e, 4096, max, 0, &merged), 2);
                ASSERT_UEQ(merged, (max < 10) + (max < 2));
        }
        /* One span per chunk with max 1. */
        dd_extent_walk_init(&w, &e, 4096);
        ASSERT_EQ(dd_extent_walk_next(&w, &idx, p, 1, &n), 1);
        assert_extents(&(dd_extents){ p, n, 1 }, (dd_extent[]){ { 7, 9 * 400 + 3 } }, 1);
}

TEST(extent_walk_random)
{
        static const uint32_t sizes[] = { 1, 7, 512, 4096, 65536 };
        static const size_t maxes[] = { 1, 2, 3, 4, 16, 100000 };

        for (int round = 0; round < 300; round++) {
                _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;
                const uint64_t space = 1 + rng() % (1 << 20);
                size_t n = (size_t)(rng() % 200);

                for (size_t i = 0; i < n; i++) {
                        uint64_t off = rng() % space, len = 1 + rng() % (round % 3 == 0 ? 20000 : 40);
                        ASSERT_OK(dd_extents_add(&e, off, MIN(len, space - off)));
                }
                ASSERT_OK(dd_extents_normalize(&e, space));
                for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
                        /* Chunk size 1 means one chunk per byte: keep it small. */
                        if (sizes[s] == 1 && dd_extents_total(&e) > 50000)
                                continue;
                        for (size_t m = 0; m < ELEMENTSOF(maxes); m++)
                                check_walk(&e, sizes[s], maxes[m], 0, NULL);
                }
        }
}

/* Extents in the last chunk below 2^64: (index + 1) * chunk_size must not
 * wrap to 0 and stall the walk on a chunk without pieces. */
TEST(extent_walk_top_of_range)
{
        _cleanup_extents_ dd_extents e = DD_EXTENTS_INIT;

        ASSERT_OK(dd_extents_add(&e, UINT64_MAX - 10, 10));
        ASSERT_OK(dd_extents_normalize(&e, UINT64_MAX));
        /* Bounded: a walk that makes no progress would loop for ever. */
        ASSERT_UEQ(check_walk(&e, 4096, 4, 10, NULL), 1);

        dd_extents_clear(&e);
        ASSERT_OK(dd_extents_add(&e, UINT64_MAX - 5000, 5000));
        ASSERT_OK(dd_extents_normalize(&e, UINT64_MAX));
        ASSERT_UEQ(check_walk(&e, 4096, 4, 10, NULL), 2);
}
