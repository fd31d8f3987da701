/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench/mkchange.c -- benchmark helper: writes seeded pseudo-random blocks
 * into a disk image in place, for the vbak benchmark data set.
 *
 *   mkchange [-a] [-s SEED] [-n COUNT] [-b BYTES] [-g ALIGN] [-e EXTENTS] IMAGE
 *
 * Makes COUNT writes of BYTES bytes (default 1000 x 65536) at offsets chosen
 * uniformly among the ALIGN-aligned (default 4096) positions of IMAGE where
 * the write fits: anywhere in [0, size - BYTES], or with -a only inside the
 * allocated (data) extents of IMAGE as reported by SEEK_DATA/SEEK_HOLE.
 * The data comes from a seeded PRNG (incompressible), so the same SEED gives
 * the same image.  Writes use pwrite, so holes elsewhere stay holes.
 * With -e, writes one "OFFSET LENGTH" line (decimal bytes) per write, in
 * write order, to EXTENTS.  The image size never changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct range {
        uint64_t start; /* first aligned position */
        uint64_t count; /* number of aligned positions in this range */
};

static uint64_t rng_state;

/* splitmix64: small, fast, good enough for benchmark data and offsets */
static uint64_t rng_next(void)
{
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* uniform in [0, n) without modulo bias */
static uint64_t rng_below(uint64_t n)
{
        uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        uint64_t r;
        do
                r = rng_next();
        while (r >= limit);
        return r % n;
}

static void die(const char *what)
{
        fprintf(stderr, "mkchange: %s: %s\n", what, strerror(errno));
        exit(1);
}

static void usage(void)
{
        fprintf(stderr, "usage: mkchange [-a] [-s SEED] [-n COUNT] [-b BYTES] [-g ALIGN] "
                        "[-e EXTENTS] IMAGE\n");
        exit(2);
}

static uint64_t parse_u64(const char *s)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end)
                usage();
        return v;
}

/* Adds the aligned positions of [lo, hi) where a write of len bytes fits. */
static void add_range(struct range **r, size_t *n, size_t *cap, uint64_t lo, uint64_t hi, uint64_t len, uint64_t align)
{
        uint64_t first = (lo + align - 1) / align * align;
        if (hi < len || first > hi - len)
                return;
        if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 64;
                *r = realloc(*r, *cap * sizeof(**r));
                if (!*r)
                        die("realloc");
        }
        (*r)[*n].start = first;
        (*r)[*n].count = (hi - len - first) / align + 1;
        (*n)++;
}

int main(int argc, char **argv)
{
        uint64_t seed = 1, count = 1000, len = 65536, align = 4096;
        const char *extents_path = NULL;
        int allocated_only = 0, opt;

        while ((opt = getopt(argc, argv, "as:n:b:g:e:")) != -1) {
                switch (opt) {
                case 'a':
                        allocated_only = 1;
                        break;
                case 's':
                        seed = parse_u64(optarg);
                        break;
                case 'n':
                        count = parse_u64(optarg);
                        break;
                case 'b':
                        len = parse_u64(optarg);
                        break;
                case 'g':
                        align = parse_u64(optarg);
                        break;
                case 'e':
                        extents_path = optarg;
                        break;
                default:
                        usage();
                }
        }
        if (optind != argc - 1 || len == 0 || align == 0)
                usage();

        int fd = open(argv[optind], O_RDWR);
        if (fd < 0)
                die(argv[optind]);
        struct stat st;
        if (fstat(fd, &st) < 0)
                die("fstat");
        uint64_t size = (uint64_t)st.st_size;

        /* The candidate ranges, computed before any write so that the choice
         * does not depend on earlier writes filling holes. */
        struct range *ranges = NULL;
        size_t nranges = 0, cap = 0;
        if (allocated_only) {
                off_t pos = 0;
                for (;;) {
                        off_t data = lseek(fd, pos, SEEK_DATA);
                        if (data < 0) {
                                if (errno == ENXIO)
                                        break;
                                die("SEEK_DATA");
                        }
                        off_t hole = lseek(fd, data, SEEK_HOLE);
                        if (hole < 0)
                                die("SEEK_HOLE");
                        add_range(&ranges, &nranges, &cap, (uint64_t)data, (uint64_t)hole, len, align);
                        pos = hole;
                }
        } else {
                add_range(&ranges, &nranges, &cap, 0, size, len, align);
        }
        uint64_t total = 0;
        for (size_t i = 0; i < nranges; i++)
                total += ranges[i].count;
        if (total == 0) {
                fprintf(stderr, "mkchange: no room for a %" PRIu64 "-byte write in %s\n", len, argv[optind]);
                return 1;
        }

        FILE *ext = NULL;
        if (extents_path && !(ext = fopen(extents_path, "w")))
                die(extents_path);

        uint64_t *buf = malloc(len + 8);
        if (!buf)
                die("malloc");
        rng_state = seed;
        for (uint64_t w = 0; w < count; w++) {
                uint64_t k = rng_below(total);
                size_t i = 0;
                while (k >= ranges[i].count)
                        k -= ranges[i++].count;
                uint64_t off = ranges[i].start + k * align;
                for (uint64_t j = 0; j < (len + 7) / 8; j++)
                        buf[j] = rng_next();
                size_t done = 0;
                while (done < len) {
                        ssize_t r = pwrite(fd, (char *)buf + done, len - done, (off_t)(off + done));
                        if (r < 0) {
                                if (errno == EINTR)
                                        continue;
                                die("pwrite");
                        }
                        done += (size_t)r;
                }
                if (ext)
                        fprintf(ext, "%" PRIu64 " %" PRIu64 "\n", off, len);
        }
        if (fsync(fd) < 0)
                die("fsync");
        if (close(fd) < 0)
                die("close");
        if (ext && fclose(ext) != 0)
                die(extents_path);
        free(buf);
        free(ranges);
        return 0;
}
