/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-export.c -- vbak-cvd's work on real images (see cvd-export.h): NBD
 * exports through qemu-nbd or the VM's own QEMU, and checkpoints as qcow2
 * dirty bitmaps.
 *
 * DESIGN
 * Stopped VM: `qemu-img info` gives format, size and bitmaps; qemu-nbd runs
 * as our own child (never --fork, so that we can reap it) with a private pid
 * file: qemu-nbd writes it only once it accepts connections, so its
 * appearance is the readiness signal (a bare connect() would already succeed
 * while the image is still being opened). Its stdout and stderr go to a
 * memfd, read back when it fails.
 *
 * Running VM: one QMP session per operation. The export is block-export-add
 * on the disk's format node. An enabled bitmap cannot be exported read-only
 * and would keep changing anyway, so the `since` bitmap is frozen into a
 * disabled copy, made in one transaction with the new checkpoint (no write
 * falls between them). The copy lives on a private null-co node of the same
 * size ("holder") under the very name of `since`, and is exported by
 * {node, name}: QEMU names an export's context after the bitmap, so clients
 * see "qemu:dirty-bitmap:<since>" exactly as with qemu-nbd -B. Deleting the
 * holder node drops the copy. Each QEMU gets one NBD server (its exports
 * share the port), started with the VM's first export and stopped with its
 * last; the record remembers the QEMU's pid so that a restarted VM is not
 * mistaken for the old one.
 *
 * Internal snapshot of a running VM: served like a stopped VM's, by our own
 * qemu-nbd with --load-snapshot, read-only, but opened with force-share
 * (QEMU holds the image's write lock, and a plain read-only open refuses
 * to share it). Reading an image that another process writes is safe
 * here because a qcow2 internal snapshot is immutable while it exists:
 * savevm flushes the L2 and refcount caches (qcow2_update_snapshot_refcount
 * ends with a flush) before it writes the snapshot table that points to the
 * snapshot's own copy of the L1 table, so everything the snapshot names is
 * on disk by the time it is listed; from then on every L2 table and data
 * cluster it references has a refcount above 1 and lost its COPIED flag,
 * so the running QEMU copies it on write (a new L2 table, a new cluster)
 * and never rewrites it in place (at most, creating or deleting another
 * snapshot recomputes COPIED flags in a shared L2 table: flags that a
 * reader masks off, the offsets stay); discard and write-zeroes only drop a
 * reference. qemu-nbd reads the snapshot table once, at open, and keeps the
 * snapshot's L1 table in memory; what changes on disk afterwards (refcount
 * blocks, the active L1 and L2 tables, new clusters, the header) is
 * metadata that it does not read. What breaks the argument is deleting (or
 * replacing, savevm again under the same name) the snapshot while it is
 * exported: its clusters are then freed and reused, and force-share means
 * no lock stops it. That is the platform's to avoid; vbak-cvd checks that
 * the snapshot exists, in the running QEMU's view and on disk, when it
 * opens the export. A backup's `checkpoint` would start from now rather
 * than from the snapshot, so it is refused, as is `since` (which a snapshot
 * never has).
 *
 * Ports come from one process-wide table shared by both kinds of export;
 * a port that another program holds is detected by a trial bind() and, for
 * the race that remains, by the server's bind error, then the next port is
 * tried. Every VM has a record whose mutex serialises the operations on it
 * (its QMP socket takes one client at a time anyway).
 */
#include "transport/cvd-export.h"

#include <fcntl.h>
#include <jansson.h>
#include <libnbd.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "transport/qmp.h"

#define NAME_MAX_LEN 255
#define START_TIMEOUT_MS 10000u /* qemu-nbd until it listens */
#define STOP_TIMEOUT_MS 5000u   /* SIGTERM until SIGKILL */
#define TOOL_TIMEOUT_MS 120000u /* one qemu-img run */
#define EXPORT_DEL_TIMEOUT_MS 10000u
#define PORT_ATTEMPTS 16
#define OUTPUT_MAX (16u << 20)
#define HOLDER_PREFIX "vbakh-"
#define EXPORT_PREFIX "vbak-"
#define CONTEXT_ALLOCATION "base:allocation"
#define CONTEXT_DIRTY_PREFIX "qemu:dirty-bitmap:"

extern char **environ;

/* ---- messages ---------------------------------------------------------- */

/* Sets *err to the message (replacing an earlier one) and returns r. */
_printf_(3, 4) static int fail(char **err, int r, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        if (!err)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        free(*err);
        *err = s;
        return r;
}

static const char *strempty(const char *s)
{
        return s ? s : "";
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static bool name_chars_ok(const char *s, const char *extra)
{
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr(extra, *p)))
                        return false;
        return true;
}

static bool vm_name_ok(const char *s)
{
        return s && *s && strlen(s) <= NAME_MAX_LEN && name_chars_ok(s, "._-") && !streq(s, ".") && !streq(s, "..");
}

/* Bitmap (checkpoint) names also appear on qemu-img's and qemu-nbd's command
 * lines: a leading '-' would read as an option. */
static bool bitmap_name_ok(const char *s)
{
        return s && *s && strlen(s) <= NAME_MAX_LEN && *s != '-' && *s != '.' && name_chars_ok(s, "._-:+@");
}

static bool snapshot_name_ok(const char *s)
{
        if (!s || !*s || strlen(s) > NAME_MAX_LEN || *s == '-')
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static int random_hex(char *buf, size_t nbytes)
{
        uint8_t b[32];
        int r;

        if (nbytes > sizeof(b))
                return -EINVAL;
        r = vb_random_bytes(b, nbytes);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nbytes; i++)
                snprintf(buf + 2 * i, 3, "%02x", b[i]);
        return 0;
}

/* ---- paths ------------------------------------------------------------- */

/* Whether the resolved path p lies strictly inside dir, by whole components. */
static bool path_inside(const char *dir, const char *p)
{
        size_t n = strlen(dir);

        while (n > 0 && dir[n - 1] == '/')
                n--;
        return strncmp(p, dir, n) == 0 && p[n] == '/' && p[n + 1] != '\0';
}

static bool inside_image_dirs(const tp_export_cfg *cfg, const char *p)
{
        for (size_t i = 0; i < cfg->n_image_dirs; i++)
                if (cfg->image_dirs[i] && cfg->image_dirs[i][0] == '/' && path_inside(cfg->image_dirs[i], p))
                        return true;
        return false;
}

/* Resolves path; 0 with *ret when it is a regular file or block device
 * inside the image folders. A missing file whose folder is served is
 * -ENOENT; anything else that is not served is -EACCES (whether a file
 * exists outside the folders is nobody's business). */
static int resolve_image(const tp_export_cfg *cfg, const char *path, char **ret, char **err)
{
        _cleanup_free_ char *real = NULL;
        struct stat st;

        if (!cfg || !path || path[0] != '/')
                return fail(err, -EINVAL, "disk path must be absolute");
        real = realpath(path, NULL);
        if (!real) {
                int e = errno;
                _cleanup_free_ char *copy = strdup(path), *dir = NULL;
                char *slash;

                if (!copy)
                        return -ENOMEM;
                /* Only a missing last component inside a served folder is "no such image". */
                if (e == ENOENT && (slash = strrchr(copy, '/'))) {
                        *slash = '\0';
                        dir = realpath(*copy ? copy : "/", NULL);
                        if (dir) {
                                _cleanup_free_ char *child = NULL;
                                if (asprintf(&child, "%s/x", streq(dir, "/") ? "" : dir) < 0)
                                        return -ENOMEM;
                                if (inside_image_dirs(cfg, child))
                                        return fail(err, -ENOENT, "no such image: %s", path);
                        }
                }
                return fail(err, -EACCES, "%s is not inside the image folders", path);
        }
        if (!inside_image_dirs(cfg, real))
                return fail(err, -EACCES, "%s is not inside the image folders", path);
        if (stat(real, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
                return fail(err, -EACCES, "%s is not a regular file or block device", path);
        if (ret)
                *ret = TAKE_PTR(real);
        return 0;
}

bool tp_export_path_allowed(const tp_export_cfg *cfg, const char *path, char **resolved)
{
        _cleanup_free_ char *real = NULL;

        if (resolve_image(cfg, path, &real, NULL) < 0)
                return false;
        if (resolved)
                *resolved = TAKE_PTR(real);
        return true;
}

/* ---- child processes --------------------------------------------------- */

/* Starts argv[0] (searched on PATH) with stdin on /dev/null, stdout and
 * stderr on out_fd and err_fd, no other descriptor, default signal
 * dispositions and an empty signal mask whatever the calling thread has. */
static int spawn(char *const argv[], int out_fd, int err_fd, pid_t *ret_pid)
{
        static const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t mask, def;
        int r;

        r = posix_spawn_file_actions_init(&fa);
        if (r)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        sigemptyset(&mask);
        sigemptyset(&def);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaddset(&def, sigs[i]);
        if (!(r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) &&
            !(r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) &&
            !(r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2)) &&
            !(r = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) &&
            !(r = posix_spawnattr_setsigmask(&attr, &mask)) && !(r = posix_spawnattr_setsigdefault(&attr, &def)))
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (!r)
                r = posix_spawnp(ret_pid, argv[0], &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

#define STILL_RUNNING (1 << 16)

/* Waits for pid; returns its wait status, or -ECHILD when it was reaped
 * elsewhere (SIGCHLD ignored). With nohang, STILL_RUNNING when it runs. */
static int reap(pid_t pid, bool nohang)
{
        int status;

        for (;;) {
                pid_t p = waitpid(pid, &status, nohang ? WNOHANG : 0);
                if (p == pid)
                        return status;
                if (p == 0)
                        return STILL_RUNNING;
                if (errno != EINTR)
                        return -errno;
        }
}

/* SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; always reaps. */
static void terminate(pid_t pid)
{
        uint64_t deadline = vb_now_ns() + STOP_TIMEOUT_MS * 1000000ull;

        if (pid <= 0)
                return;
        if (kill(pid, SIGTERM) < 0 && errno == ESRCH) {
                (void)reap(pid, false);
                return;
        }
        while (vb_now_ns() < deadline) {
                if (reap(pid, true) != STILL_RUNNING)
                        return;
                sleep_ms(10);
        }
        log_debug("pid %d ignored SIGTERM, killing it", (int)pid);
        (void)kill(pid, SIGKILL);
        (void)reap(pid, false);
}

/* The tool's diagnostics as one line: its non-empty lines joined by "; ",
 * at most 1000 bytes. */
static char *one_line(const char *text, size_t len)
{
        char *s = malloc(1024), *o = s;
        size_t i = 0;

        if (!s)
                return NULL;
        while (i < len && (size_t)(o - s) < 1000) {
                size_t j = i;
                while (j < len && text[j] != '\n')
                        j++;
                size_t a = i, b = j;
                while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
                        a++;
                while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
                        b--;
                if (b > a) {
                        if (o != s) {
                                memcpy(o, "; ", 2);
                                o += 2;
                        }
                        size_t n = MIN(b - a, (size_t)(1000 - (o - s)));
                        for (size_t k = 0; k < n; k++)
                                o[k] = (unsigned char)text[a + k] < 0x20 ? ' ' : text[a + k];
                        o += n;
                }
                i = j + 1;
        }
        *o = '\0';
        return s;
}

/* The last non-empty line of text (a fresh string). */
static char *last_line(const char *text, size_t len)
{
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
                len--;
        size_t a = len;
        while (a > 0 && text[a - 1] != '\n')
                a--;
        return one_line(text + a, len - a);
}

static bool is_lock_error(const char *text)
{
        return text && strstr(text, "Failed to get") && strstr(text, "lock");
}

/* Appends everything readable from fd to *buf; returns 1 at end of file. */
static int drain(int fd, char **buf, size_t *len, size_t *alloc)
{
        for (;;) {
                if (*alloc - *len < 4096) {
                        size_t n = *alloc ? *alloc * 2 : 65536;
                        char *p;
                        if (n > OUTPUT_MAX + 1)
                                return -EFBIG;
                        p = realloc(*buf, n);
                        if (!p)
                                return -ENOMEM;
                        *buf = p;
                        *alloc = n;
                }
                ssize_t n = read(fd, *buf + *len, *alloc - *len - 1);
                if (n == 0)
                        return 1;
                if (n < 0)
                        return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -errno;
                *len += (size_t)n;
                (*buf)[*len] = '\0';
        }
}

typedef struct tool_result {
        int status; /* exit code, or -1 when killed */
        char *out, *err;
        size_t out_len, err_len;
} tool_result;

static void tool_result_done(tool_result *t)
{
        free(t->out);
        free(t->err);
        *t = (tool_result){ 0 };
}

/* Runs argv to completion, collecting stdout and stderr (NUL-terminated,
 * never NULL on success). Returns 0 when it ran (see ->status), -errno
 * when it could not be started or ran past TOOL_TIMEOUT_MS. */
static int run_tool(char *const argv[], tool_result *t)
{
        _cleanup_close_ int out_r = -1, err_r = -1;
        int out_p[2], err_p[2], r, status;
        size_t out_alloc = 0, err_alloc = 0;
        uint64_t deadline = vb_now_ns() + TOOL_TIMEOUT_MS * 1000000ull;
        bool out_eof = false, err_eof = false;
        pid_t pid;

        *t = (tool_result){ 0 };
        if (pipe2(out_p, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        if (pipe2(err_p, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                close(out_p[0]);
                close(out_p[1]);
                return r;
        }
        out_r = out_p[0];
        err_r = err_p[0];
        r = spawn(argv, out_p[1], err_p[1], &pid);
        close(out_p[1]);
        close(err_p[1]);
        if (r < 0)
                return r;
        log_debug("started %s (pid %d)", argv[0], (int)pid);

        while (!out_eof || !err_eof) {
                struct pollfd p[2] = { { .fd = out_eof ? -1 : out_r, .events = POLLIN },
                                       { .fd = err_eof ? -1 : err_r, .events = POLLIN } };
                uint64_t now = vb_now_ns();
                int n;

                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                n = poll(p, 2, (int)MIN((deadline - now) / 1000000u + 1, 60000u));
                if (n < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (n <= 0)
                        continue;
                if (p[0].revents && (r = drain(out_r, &t->out, &t->out_len, &out_alloc)) != 0) {
                        if (r < 0)
                                break;
                        out_eof = true;
                }
                if (p[1].revents && (r = drain(err_r, &t->err, &t->err_len, &err_alloc)) != 0) {
                        if (r < 0)
                                break;
                        err_eof = true;
                }
                r = 0;
        }
        if (r < 0)
                (void)kill(pid, SIGKILL);
        status = reap(pid, false);
        if (r < 0) {
                tool_result_done(t);
                return r;
        }
        if (!t->out && !(t->out = strdup("")))
                r = -ENOMEM;
        if (!t->err && !(t->err = strdup("")))
                r = -ENOMEM;
        if (r < 0) {
                tool_result_done(t);
                return r;
        }
        if (status < 0) /* reaped behind our back: judge by what it said */
                t->status = t->err_len > 0 ? 1 : 0;
        else
                t->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return 0;
}

static const char *prog_img(const tp_export_cfg *cfg)
{
        return cfg->qemu_img ? cfg->qemu_img : "qemu-img";
}

static const char *prog_nbd(const tp_export_cfg *cfg)
{
        return cfg->qemu_nbd ? cfg->qemu_nbd : "qemu-nbd";
}

/* Runs a qemu-img command that must succeed; its failure becomes -EBUSY for
 * a lock conflict (the image is open elsewhere), else -EIO, with its
 * message in *err. Success leaves the output in t when t is not NULL. */
static int run_qemu_img(char *const argv[], const char *what, tool_result *ret, char **err)
{
        tool_result t;
        int r = run_tool(argv, &t);

        if (r == -ENOENT)
                return fail(err, -EIO, "%s not found", argv[0]);
        if (r < 0)
                return fail(err, -EIO, "%s: %s failed: %s", what, argv[0], strerror(-r));
        if (t.status != 0) {
                _cleanup_free_ char *msg = one_line(t.err, t.err_len);
                r = is_lock_error(t.err)
                            ? fail(err, -EBUSY, "%s: the image is in use by another process (%s)", what, strempty(msg))
                            : fail(err, -EIO, "%s: %s", what, msg && *msg ? msg : "qemu-img failed");
                tool_result_done(&t);
                return r;
        }
        if (ret)
                *ret = t;
        else
                tool_result_done(&t);
        return 0;
}

/* ---- offline images: qemu-img ------------------------------------------ */

typedef struct image_info {
        json_t *root;       /* the whole answer (an array, one entry per image of the chain) */
        const char *format; /* borrowed from root */
        uint64_t size;
        uint32_t cluster_size;
        json_t *bitmaps;   /* borrowed; NULL when none */
        json_t *snapshots; /* borrowed; NULL when none */
} image_info;

static void image_info_done(image_info *i)
{
        json_decref(i->root);
        *i = (image_info){ 0 };
}

/* A file the image refers to (backing file, external data file) must be
 * served too: otherwise a crafted header would export any file on the host. */
static int check_referenced(const tp_export_cfg *cfg, const char *image, const char *ref, const char *what, char **err)
{
        _cleanup_free_ char *full = NULL, *real = NULL;

        if (ref[0] == '/')
                full = strdup(ref);
        else if (strstr(ref, "://") || strncmp(ref, "json:", 5) == 0)
                return fail(err, -EACCES, "%s of %s is not a file in the image folders: %s", what, image, ref);
        else {
                const char *slash = strrchr(image, '/');
                if (asprintf(&full, "%.*s/%s", (int)(slash - image), image, ref) < 0)
                        full = NULL;
        }
        if (!full)
                return -ENOMEM;
        real = realpath(full, NULL);
        if (!real || !inside_image_dirs(cfg, real))
                return fail(err, -EACCES, "%s of %s is not in the image folders: %s", what, image, ref);
        return 0;
}

/* qemu-img info of a resolved, served path, checking that the whole
 * backing chain is served as well. */
static int image_info_get(const tp_export_cfg *cfg, const char *path, image_info *ret, char **err)
{
        char *argv[] = { (char *)prog_img(cfg), "info", "--output=json", "--backing-chain", "-U", (char *)path, NULL };
        tool_result t;
        image_info i = { 0 };
        json_t *top, *v;
        size_t k;
        int r;

        r = run_qemu_img(argv, path, &t, err);
        if (r < 0)
                return r;
        i.root = json_loadb(t.out, t.out_len, 0, NULL);
        tool_result_done(&t);
        if (!json_is_array(i.root) || !json_is_object(top = json_array_get(i.root, 0))) {
                image_info_done(&i);
                return fail(err, -EIO, "qemu-img info: unexpected output for %s", path);
        }
        json_array_foreach(i.root, k, v)
        {
                const char *f = json_string_value(json_object_get(v, "filename"));
                json_t *fs = json_object_get(json_object_get(v, "format-specific"), "data");
                const char *data_file = json_string_value(json_object_get(fs, "data-file"));

                if (k > 0 && (!f || (r = check_referenced(cfg, path, f, "backing file", err)) < 0)) {
                        image_info_done(&i);
                        return f ? r : fail(err, -EIO, "qemu-img info: a backing file without name in %s", path);
                }
                if (data_file && (r = check_referenced(cfg, f ? f : path, data_file, "data file", err)) < 0) {
                        image_info_done(&i);
                        return r;
                }
        }
        i.format = json_string_value(json_object_get(top, "format"));
        v = json_object_get(top, "virtual-size");
        if (!i.format || !json_is_integer(v) || json_integer_value(v) < 0) {
                image_info_done(&i);
                return fail(err, -EIO, "qemu-img info: no format or size for %s", path);
        }
        if (!streq(i.format, "qcow2") && !streq(i.format, "raw")) {
                r = fail(err, -EINVAL, "%s: unsupported image format %s (qcow2 and raw are served)", path, i.format);
                image_info_done(&i);
                return r;
        }
        i.size = (uint64_t)json_integer_value(v);
        if (streq(i.format, "qcow2"))
                i.cluster_size = (uint32_t)json_integer_value(json_object_get(top, "cluster-size"));
        i.bitmaps = json_object_get(json_object_get(json_object_get(top, "format-specific"), "data"), "bitmaps");
        if (!json_is_array(i.bitmaps))
                i.bitmaps = NULL;
        i.snapshots = json_object_get(top, "snapshots");
        if (!json_is_array(i.snapshots))
                i.snapshots = NULL;
        *ret = i;
        return 0;
}

static json_t *find_named(json_t *array, const char *name)
{
        size_t k;
        json_t *v;

        json_array_foreach(array, k, v)
        {
                const char *n = json_string_value(json_object_get(v, "name"));
                if (n && streq(n, name))
                        return v;
        }
        return NULL;
}

static bool has_flag(json_t *bitmap, const char *flag)
{
        size_t k;
        json_t *v;

        json_array_foreach(json_object_get(bitmap, "flags"), k, v)
        {
                if (json_is_string(v) && streq(json_string_value(v), flag))
                        return true;
        }
        return false;
}

static int offline_bitmap(const tp_export_cfg *cfg, const char *path, const char *op, const char *name, char **err)
{
        char *argv[] = { (char *)prog_img(cfg), "bitmap", (char *)op, "-f", "qcow2", (char *)path, (char *)name, NULL };
        _cleanup_free_ char *what = NULL;

        if (asprintf(&what, "%s checkpoint %s on %s", streq(op, "--add") ? "creating" : "removing", name, path) < 0)
                return -ENOMEM;
        return run_qemu_img(argv, what, NULL, err);
}

/* ---- data ports -------------------------------------------------------- */

static pthread_mutex_t port_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t port_used[65536 / 8];
static uint32_t port_cursor; /* the next port to try: ports are handed out round robin */

/* Whether nothing listens on host:port (a trial bind with SO_REUSEADDR, as
 * QEMU binds). 0 when free, -EADDRINUSE when taken, else -errno. */
static int port_probe(const struct addrinfo *ai, uint16_t port)
{
        struct sockaddr_storage ss;
        _cleanup_close_ int fd = -1;
        int one = 1;

        if (ai->ai_addrlen > sizeof(ss))
                return -EAFNOSUPPORT;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        else if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
        else
                return -EAFNOSUPPORT;
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) < 0)
                return -errno;
        return 0;
}

/* Reserves a port of cfg's range that neither we nor another program use. */
static int port_take(const tp_export_cfg *cfg, uint16_t *ret, char **err)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
        uint32_t lo = cfg->port_min, hi = cfg->port_max, n;
        int r;

        if (!cfg->data_host || lo == 0 || hi < lo)
                return fail(err, -EINVAL, "no data address or port range configured");
        r = getaddrinfo(cfg->data_host, NULL, &hints, &ai);
        if (r != 0)
                return fail(err, -EINVAL, "data address %s: %s", cfg->data_host, gai_strerror(r));

        n = hi - lo + 1;
        r = -EBUSY;
        pthread_mutex_lock(&port_lock);
        if (port_cursor < lo || port_cursor > hi)
                port_cursor = lo;
        for (uint32_t i = 0; i < n; i++) {
                uint32_t p = lo + (port_cursor - lo + i) % n;
                int q;

                if (port_used[p / 8] & (1u << (p % 8)))
                        continue;
                q = port_probe(ai, (uint16_t)p);
                if (q == -EADDRINUSE || q == -EACCES)
                        continue;
                if (q < 0) {
                        r = q;
                        break;
                }
                port_used[p / 8] |= (uint8_t)(1u << (p % 8));
                port_cursor = p + 1;
                *ret = (uint16_t)p;
                r = 0;
                break;
        }
        pthread_mutex_unlock(&port_lock);
        freeaddrinfo(ai);
        if (r == -EBUSY)
                return fail(err, r, "no free data port in %u-%u", lo, hi);
        if (r < 0)
                return fail(err, r, "cannot listen on %s: %s", cfg->data_host, strerror(-r));
        return 0;
}

static void port_release(uint16_t port)
{
        if (port == 0)
                return;
        pthread_mutex_lock(&port_lock);
        port_used[port / 8] &= (uint8_t) ~(1u << (port % 8));
        pthread_mutex_unlock(&port_lock);
}

/* ---- VM records -------------------------------------------------------- */

typedef struct vm_state {
        struct vm_state *next;
        char *name;
        pthread_mutex_t lock; /* held for each whole operation on this VM */
        unsigned users;       /* threads between vm_acquire and vm_release (vms_lock) */
        /* Under lock: our NBD server in the VM's QEMU. */
        unsigned exports; /* exports we added to it; the server runs while > 0 */
        uint16_t port;
        pid_t qemu_pid; /* the QEMU that runs it */
        uint64_t gen;   /* bumped whenever the record is found stale */
} vm_state;

static pthread_mutex_t vms_lock = PTHREAD_MUTEX_INITIALIZER;
static vm_state *vms;

/* The VM's record, created when missing, with its lock held. */
static int vm_acquire(const char *name, vm_state **ret)
{
        vm_state *v;

        pthread_mutex_lock(&vms_lock);
        for (v = vms; v; v = v->next)
                if (streq(v->name, name))
                        break;
        if (!v) {
                v = calloc(1, sizeof(*v));
                if (!v || !(v->name = strdup(name))) {
                        free(v);
                        pthread_mutex_unlock(&vms_lock);
                        return -ENOMEM;
                }
                pthread_mutex_init(&v->lock, NULL);
                v->next = vms;
                vms = v;
        }
        v->users++;
        pthread_mutex_unlock(&vms_lock);
        pthread_mutex_lock(&v->lock);
        *ret = v;
        return 0;
}

/* Unlocks the record; frees it when nobody uses it and it holds no server. */
static void vm_release(vm_state *v)
{
        if (!v)
                return;
        pthread_mutex_unlock(&v->lock);
        pthread_mutex_lock(&vms_lock);
        /* The last user is gone, so nobody holds v->lock: exports is stable
         * (and visible, through the two mutexes every user went through). */
        if (--v->users == 0 && v->exports == 0) {
                for (vm_state **p = &vms; *p; p = &(*p)->next)
                        if (*p == v) {
                                *p = v->next;
                                break;
                        }
                pthread_mutex_destroy(&v->lock);
                free(v->name);
                free(v);
        }
        pthread_mutex_unlock(&vms_lock);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(vm_state *, vm_release);

/* ---- export objects ---------------------------------------------------- */

typedef struct export_priv {
        char *vm;
        bool qemu_nbd; /* served by our qemu-nbd (a stopped VM, or a running VM's internal snapshot) */
        pid_t pid;     /* qemu-nbd; 0 for an export of a running VM's QEMU */
        int log_fd;    /* qemu-nbd's stdout and stderr (a memfd), or -1 */
        char *holder;  /* running: the node carrying the frozen copy of `since`, or NULL */
        uint64_t gen;  /* running: the VM record's generation the export belongs to */
} export_priv;

static void export_free(tp_export *e)
{
        export_priv *p;

        if (!e)
                return;
        p = e->priv;
        if (p) {
                if (p->log_fd >= 0)
                        close(p->log_fd);
                free(p->vm);
                free(p->holder);
                free(p);
        }
        for (size_t i = 0; i < e->n_contexts; i++)
                free(e->contexts[i]);
        free(e->contexts);
        free(e->host);
        free(e->name);
        free(e->format);
        free(e);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(tp_export *, export_free);

static int export_new(const char *vm, const char *host, const char *format, const char *since, bool running,
                      tp_export **ret)
{
        _cleanup_(export_freep) tp_export *e = calloc(1, sizeof(*e));
        char hex[33];
        export_priv *p;
        int r;

        if (!e)
                return -ENOMEM;
        e->priv = p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->log_fd = -1;
        r = random_hex(hex, 8);
        if (r < 0)
                return r;
        e->contexts = calloc(2, sizeof(char *));
        if (!e->contexts || !(p->vm = strdup(vm)) || !(e->host = strdup(host)) || !(e->format = strdup(format)) ||
            asprintf(&e->name, EXPORT_PREFIX "%s", hex) < 0 ||
            !(e->contexts[e->n_contexts++] = strdup(CONTEXT_ALLOCATION)))
                return -ENOMEM;
        if (since && asprintf(&e->contexts[e->n_contexts++], CONTEXT_DIRTY_PREFIX "%s", since) < 0) {
                e->n_contexts--;
                return -ENOMEM;
        }
        e->running = running;
        *ret = TAKE_PTR(e);
        return 0;
}

/* ---- stopped VMs: qemu-nbd --------------------------------------------- */

static char *read_log(int fd)
{
        struct stat st;
        char *s;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0)
                return NULL;
        s = malloc((size_t)MIN(st.st_size, (off_t)OUTPUT_MAX) + 1);
        if (!s)
                return NULL;
        n = pread(fd, s, (size_t)MIN(st.st_size, (off_t)OUTPUT_MAX), 0);
        s[n > 0 ? n : 0] = '\0';
        return s;
}

static bool pidfile_ready(const char *path, pid_t pid)
{
        char buf[32];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        return strtol(buf, NULL, 10) == pid;
}

/* Escapes a value for QEMU's option syntax (a ',' is written ",,"). */
static char *qemu_opt_escape(const char *s)
{
        char *o = malloc(strlen(s) * 2 + 1), *w = o;

        if (!o)
                return NULL;
        for (; *s; s++) {
                *w++ = *s;
                if (*s == ',')
                        *w++ = ',';
        }
        *w = '\0';
        return o;
}

/* Starts qemu-nbd for e on port and waits until it serves. -EADDRINUSE
 * when the port turned out to be taken (the caller tries another one).
 * For a running VM's internal snapshot (e->running) the image is opened
 * with force-share, which only --image-opts can ask of qemu-nbd 7.2; the
 * file node is found from the path as with a plain file name (file or
 * host_device). */
static int qemu_nbd_start(const tp_export_cfg *cfg, const tp_export_req *req, const char *path, tp_export *e,
                          uint16_t port, char **err)
{
        export_priv *p = e->priv;
        _cleanup_free_ char *dir = NULL, *pidfile = NULL, *pidopt = NULL, *snapopt = NULL, *snapesc = NULL,
                            *pathesc = NULL, *imageopts = NULL;
        char portstr[8], *argv[32];
        const char *tmp = getenv("TMPDIR");
        _cleanup_close_ int log_fd = -1;
        uint64_t deadline;
        size_t n = 0;
        pid_t pid;
        int r;

        if (asprintf(&dir, "%s/vbak-cvd-XXXXXX", tmp && *tmp == '/' ? tmp : "/tmp") < 0)
                return -ENOMEM;
        if (!mkdtemp(dir))
                return fail(err, -errno, "cannot create a temporary folder: %m");
        if (asprintf(&pidfile, "%s/qemu-nbd.pid", dir) < 0 || asprintf(&pidopt, "--pid-file=%s", pidfile) < 0) {
                r = -ENOMEM;
                goto out;
        }
        if (req->snapshot) {
                snapesc = qemu_opt_escape(req->snapshot);
                if (!snapesc || asprintf(&snapopt, "snapshot.name=%s", snapesc) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (e->running) {
                pathesc = qemu_opt_escape(path);
                if (!pathesc || asprintf(&imageopts, "driver=%s,read-only=on,force-share=on,file.filename=%s",
                                         e->format, pathesc) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        log_fd = memfd_create("qemu-nbd-log", MFD_CLOEXEC);
        if (log_fd < 0) {
                r = fail(err, -errno, "memfd_create: %m");
                goto out;
        }
        snprintf(portstr, sizeof(portstr), "%u", port);

        argv[n++] = (char *)prog_nbd(cfg);
        if (imageopts)
                argv[n++] = "--image-opts";
        else {
                argv[n++] = "-f";
                argv[n++] = e->format;
        }
        argv[n++] = "-b";
        argv[n++] = e->host;
        argv[n++] = "-p";
        argv[n++] = portstr;
        argv[n++] = "-x";
        argv[n++] = e->name;
        argv[n++] = "-t";         /* keep serving when a client goes: it may reconnect */
        argv[n++] = "--shared=8"; /* up to 5 data connections per disk, with room to reconnect */
        argv[n++] = pidopt;
        if (req->write)
                argv[n++] = "--discard=unmap"; /* restores trim what is zero: the image stays sparse */
        else
                argv[n++] = "-r";
        if (req->since) {
                argv[n++] = "-B";
                argv[n++] = (char *)req->since;
        }
        if (snapopt) {
                argv[n++] = "-l";
                argv[n++] = snapopt;
        }
        argv[n++] = "--";
        argv[n++] = imageopts ? imageopts : (char *)path;
        argv[n] = NULL;

        r = spawn(argv, log_fd, log_fd, &pid);
        if (r < 0) {
                r = r == -ENOENT ? fail(err, -EIO, "%s not found", argv[0])
                                 : fail(err, -EIO, "cannot start %s: %s", argv[0], strerror(-r));
                goto out;
        }
        log_debug("started %s (pid %d) on %s:%u for %s", argv[0], (int)pid, e->host, port, path);

        deadline = vb_now_ns() + START_TIMEOUT_MS * 1000000ull;
        for (unsigned wait = 1;; wait = MIN(wait * 2, 20u)) {
                int st = reap(pid, true);

                if (st != STILL_RUNNING) {
                        _cleanup_free_ char *log = read_log(log_fd), *line = NULL;

                        if (log && strstr(log, "Address already in use")) {
                                r = -EADDRINUSE;
                                goto out;
                        }
                        line = log ? last_line(log, strlen(log)) : NULL;
                        if (is_lock_error(log))
                                r = fail(err, -EBUSY, "%s is in use by another process (%s)", path, strempty(line));
                        else
                                r = fail(err, -EIO, "qemu-nbd failed on %s: %s", path,
                                         line && *line ? line : "it exited without a message");
                        goto out;
                }
                if (pidfile_ready(pidfile, pid))
                        break;
                if (vb_now_ns() >= deadline) {
                        terminate(pid);
                        r = fail(err, -EIO, "qemu-nbd did not start serving %s within %u s", path,
                                 START_TIMEOUT_MS / 1000);
                        goto out;
                }
                sleep_ms(wait);
        }
        p->qemu_nbd = true;
        p->pid = pid;
        p->log_fd = TAKE_FD(log_fd);
        e->port = port;
        r = 0;
out:
        if (pidfile)
                (void)unlink(pidfile);
        (void)rmdir(dir);
        return r;
}

/* The size of an export as its server announces it: an internal snapshot
 * may predate a resize of the image, so qemu-img info's size is not its size. */
static int nbd_export_size(const tp_export *e, uint64_t *ret, char **err)
{
        struct nbd_handle *h = nbd_create();
        char port[8];
        int64_t size;

        if (!h)
                return -ENOMEM;
        snprintf(port, sizeof(port), "%u", e->port);
        if (nbd_set_export_name(h, e->name) < 0 || nbd_connect_tcp(h, e->host, port) < 0 ||
            (size = nbd_get_size(h)) < 0) {
                int r = fail(err, -EIO, "reading the snapshot's size: %s", nbd_get_error());
                nbd_close(h);
                return r;
        }
        (void)nbd_shutdown(h, 0);
        nbd_close(h);
        *ret = (uint64_t)size;
        return 0;
}

/* An export by our own qemu-nbd: of a stopped VM's image, or (running) of
 * an internal snapshot of a running VM's image, which open_running_snapshot
 * checked. */
static int open_qemu_nbd(const tp_export_cfg *cfg, const tp_export_req *req, const char *path, bool running,
                         tp_export **ret, char **err)
{
        _cleanup_(export_freep) tp_export *e = NULL;
        uint16_t taken[PORT_ATTEMPTS];
        size_t n_taken = 0;
        image_info info;
        json_t *bm = NULL;
        bool qcow2;
        int r;

        /* A running VM's image may only be read, and only in a snapshot. */
        if (running && (!req->snapshot || req->write || req->since || req->checkpoint))
                return -EINVAL;
        r = image_info_get(cfg, path, &info, err);
        if (r < 0)
                return r;
        qcow2 = streq(info.format, "qcow2");
        if (req->snapshot && !(qcow2 && (find_named(info.snapshots, req->snapshot)))) {
                r = fail(err, -ENOENT, "no internal snapshot %s in %s", req->snapshot, path);
                goto out;
        }
        if ((req->since || req->checkpoint) && !qcow2) {
                r = fail(err, -EINVAL, "%s is a raw image: it cannot have checkpoints", path);
                goto out;
        }
        if (req->since) {
                bm = find_named(info.bitmaps, req->since);
                if (!bm) {
                        r = fail(err, -ENOENT, "no checkpoint %s on %s", req->since, path);
                        goto out;
                }
                if (has_flag(bm, "in-use")) {
                        r = fail(err, -EIO, "checkpoint %s on %s is inconsistent (QEMU stopped without saving it)",
                                 req->since, path);
                        goto out;
                }
        }
        if (req->checkpoint && !find_named(info.bitmaps, req->checkpoint)) {
                r = offline_bitmap(cfg, path, "--add", req->checkpoint, err);
                if (r < 0)
                        goto out;
        }

        r = export_new(req->vm, cfg->data_host, info.format, req->since, running, &e);
        if (r < 0)
                goto out;
        e->size = info.size;
        e->cluster_size = info.cluster_size;
        e->granularity = bm ? (uint32_t)json_integer_value(json_object_get(bm, "granularity")) : 0;
        /* A port qemu-nbd found taken stays reserved until the loop ends,
         * so that the next attempt gets another one. */
        for (;;) {
                uint16_t port;

                r = port_take(cfg, &port, err);
                if (r < 0)
                        break;
                r = qemu_nbd_start(cfg, req, path, e, port, err);
                if (r >= 0)
                        break;
                if (r != -EADDRINUSE) {
                        port_release(port);
                        break;
                }
                log_debug("data port %u is taken by another program, trying the next one", port);
                taken[n_taken++] = port;
                if (n_taken == PORT_ATTEMPTS) {
                        r = fail(err, -EBUSY, "no free data port in %u-%u", cfg->port_min, cfg->port_max);
                        break;
                }
        }
        while (n_taken > 0)
                port_release(taken[--n_taken]);
        if (r < 0)
                goto out;
        if (req->snapshot) {
                r = nbd_export_size(e, &e->size, err);
                if (r < 0) {
                        export_priv *p = e->priv;
                        terminate(p->pid);
                        port_release(e->port);
                        goto out;
                }
        }
        *ret = TAKE_PTR(e);
        r = 0;
out:
        image_info_done(&info);
        return r;
}

static int close_qemu_nbd(tp_export *e)
{
        export_priv *p = e->priv;

        terminate(p->pid);
        p->pid = 0;
        port_release(e->port);
        return 0;
}

/* ---- running VMs: QMP -------------------------------------------------- */

/* Runs a QMP command whose arguments are built by json_pack(fmt, ...), or
 * none when fmt is NULL. On failure *desc explains it (see tp_qmp_execute). */
static int qmp_call(tp_qmp *q, const char *cmd, json_t **ret, char **desc, const char *fmt, ...)
{
        json_t *args = NULL;
        int r;

        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                args = json_vpack_ex(NULL, 0, fmt, ap);
                va_end(ap);
                if (!args)
                        return -ENOMEM;
        }
        r = tp_qmp_execute(q, cmd, args, ret, NULL, desc);
        json_decref(args);
        return r;
}

/* Turns a failed QMP command into -EIO (-ENOMEM stays) with a message. */
static int qmp_fail(char **err, int r, char *desc, const char *fmt, ...) _printf_(4, 5);
static int qmp_fail(char **err, int r, char *desc, const char *fmt, ...)
{
        _cleanup_free_ char *what = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        r = r == -ENOMEM ? r : -EIO;
        fail(err, r, "%s: %s", strempty(what), desc ? desc : "QMP command failed");
        free(desc);
        return r;
}

/* Connects to the VM's QMP socket: 1 with *ret when the VM runs, 0 when it
 * does not (no socket, or nobody behind it). */
static int vm_qmp(const tp_export_cfg *cfg, const char *vm, tp_qmp **ret, char **err)
{
        _cleanup_free_ char *sock = NULL;
        int r;

        *ret = NULL;
        if (!cfg->qmp_dir)
                return 0;
        if (asprintf(&sock, "%s/%s.qmp", cfg->qmp_dir, vm) < 0)
                return -ENOMEM;
        r = tp_qmp_connect(sock, TP_QMP_CONNECT_TIMEOUT_MS, ret);
        if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTSOCK)
                return 0;
        if (r == -ETIMEDOUT)
                return fail(err, -EIO, "VM %s: its QMP socket %s accepts but does not answer (another client?)", vm,
                            sock);
        if (r < 0)
                return fail(err, -EIO, "VM %s: cannot talk QMP on %s: %s", vm, sock, strerror(-r));
        return 1;
}

static bool startswith(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The block node that serves path: its format node (qcow2, raw), else the
 * protocol node itself (a raw disk attached without a format layer). It may
 * be a backing node: exporting an external snapshot's base reads the
 * snapshot. */
static json_t *find_node(json_t *nodes, const char *path)
{
        json_t *best = NULL, *v;
        size_t k;

        json_array_foreach(nodes, k, v)
        {
                const char *file = json_string_value(json_object_get(v, "file"));
                const char *drv = json_string_value(json_object_get(v, "drv"));
                const char *name = json_string_value(json_object_get(v, "node-name"));

                if (!file || !drv || !name || file[0] != '/' || startswith(name, HOLDER_PREFIX))
                        continue;
                if (!streq(file, path)) {
                        _cleanup_free_ char *real = realpath(file, NULL);
                        if (!real || !streq(real, path))
                                continue;
                }
                if (streq(drv, "qcow2") || streq(drv, "raw"))
                        return v;
                if (!best && (streq(drv, "file") || streq(drv, "host_device")))
                        best = v;
        }
        return best;
}

static int query_nodes(tp_qmp *q, const char *vm, json_t **ret, char **err)
{
        char *desc = NULL;
        int r = qmp_call(q, "query-named-block-nodes", ret, &desc, "{s:b}", "flat", 1);

        if (r < 0)
                return qmp_fail(err, r, desc, "VM %s: listing its block nodes", vm);
        if (!json_is_array(*ret)) {
                json_decref(*ret);
                *ret = NULL;
                return fail(err, -EIO, "VM %s: query-named-block-nodes did not answer a list", vm);
        }
        return 0;
}

typedef struct vm_disk {
        json_t *nodes; /* owns what follows */
        json_t *node;
        const char *node_name, *drv;
        json_t *bitmaps;
} vm_disk;

static void vm_disk_done(vm_disk *d)
{
        json_decref(d->nodes);
        *d = (vm_disk){ 0 };
}

static int vm_disk_find(tp_qmp *q, const char *vm, const char *path, vm_disk *ret, char **err)
{
        vm_disk d = { 0 };
        int r;

        r = query_nodes(q, vm, &d.nodes, err);
        if (r < 0)
                return r;
        d.node = find_node(d.nodes, path);
        if (!d.node) {
                vm_disk_done(&d);
                return fail(err, -ENOENT, "running VM %s has no disk %s", vm, path);
        }
        d.node_name = json_string_value(json_object_get(d.node, "node-name"));
        d.drv = json_string_value(json_object_get(d.node, "drv"));
        d.bitmaps = json_object_get(d.node, "dirty-bitmaps");
        if (!json_is_array(d.bitmaps))
                d.bitmaps = NULL;
        *ret = d;
        return 0;
}

/* Waits until no export with this id (or, with id NULL, no NBD export with
 * our prefix) is left, deletion being asynchronous. */
static int wait_exports_gone(tp_qmp *q, const char *id)
{
        uint64_t deadline = vb_now_ns() + EXPORT_DEL_TIMEOUT_MS * 1000000ull;

        for (unsigned wait = 1;; wait = MIN(wait * 2, 50u)) {
                json_t *list = NULL, *v;
                bool found = false;
                size_t k;
                int r = qmp_call(q, "query-block-exports", &list, NULL, NULL);

                if (r < 0)
                        return r;
                json_array_foreach(list, k, v)
                {
                        const char *eid = json_string_value(json_object_get(v, "id"));
                        if (eid && (id ? streq(eid, id) : startswith(eid, EXPORT_PREFIX)))
                                found = true;
                }
                json_decref(list);
                if (!found)
                        return 0;
                if (vb_now_ns() >= deadline)
                        return -ETIMEDOUT;
                sleep_ms(wait);
        }
}

/* Holder nodes of exports that an earlier vbak-cvd left behind. Only called
 * when we have no export in this QEMU, so every holder is a leftover. */
static void remove_stale_holders(tp_qmp *q, const char *vm)
{
        json_t *nodes = NULL, *v;
        size_t k;

        if (query_nodes(q, vm, &nodes, NULL) < 0)
                return;
        json_array_foreach(nodes, k, v)
        {
                const char *name = json_string_value(json_object_get(v, "node-name"));
                if (name && startswith(name, HOLDER_PREFIX)) {
                        log_debug("VM %s: removing the leftover node %s", vm, name);
                        (void)qmp_call(q, "blockdev-del", NULL, NULL, "{s:s}", "node-name", name);
                }
        }
        json_decref(nodes);
}

/* Starts the VM's NBD server unless our exports already use it. */
static int nbd_server_ensure(const tp_export_cfg *cfg, tp_qmp *q, vm_state *v, bool *started, char **err)
{
        uint16_t taken[PORT_ATTEMPTS]; /* ports found taken stay reserved until the end */
        size_t n_taken = 0;
        bool restarted = false;
        int r = 0;

        *started = false;
        if (v->exports > 0)
                return 0;
        while (n_taken < PORT_ATTEMPTS) {
                char portstr[8], *desc = NULL;
                uint16_t port;

                r = port_take(cfg, &port, err);
                if (r < 0)
                        break;
                snprintf(portstr, sizeof(portstr), "%u", port);
                r = qmp_call(q, "nbd-server-start", NULL, &desc, "{s:{s:s, s:{s:s, s:s}}}", "addr", "type", "inet",
                             "data", "host", cfg->data_host, "port", portstr);
                if (r >= 0) {
                        v->port = port;
                        v->qemu_pid = tp_qmp_peer_pid(q);
                        *started = true;
                        break;
                }
                if (r == -EREMOTEIO && strstr(desc, "already running") && !restarted) {
                        /* Not ours: an earlier vbak-cvd's. Its exports go with it. */
                        log_debug("VM %s: stopping an NBD server we did not start", v->name);
                        port_release(port);
                        free(desc);
                        desc = NULL;
                        restarted = true;
                        r = qmp_call(q, "nbd-server-stop", NULL, &desc, NULL);
                        if (r < 0) {
                                r = qmp_fail(err, r, desc, "VM %s: stopping a leftover NBD server", v->name);
                                break;
                        }
                        (void)wait_exports_gone(q, NULL);
                        continue;
                }
                if (r == -EREMOTEIO && strstr(desc, "Address already in use")) {
                        log_debug("VM %s: data port %u is taken by another program, trying the next one", v->name,
                                  port);
                        taken[n_taken++] = port;
                        free(desc);
                        r = -EBUSY;
                        continue;
                }
                port_release(port);
                r = qmp_fail(err, r, desc, "VM %s: starting its NBD server on %s:%u", v->name, cfg->data_host, port);
                break;
        }
        while (n_taken > 0)
                port_release(taken[--n_taken]);
        if (r == -EBUSY)
                return fail(err, r, "no free data port in %u-%u", cfg->port_min, cfg->port_max);
        return r;
}

static void nbd_server_release(tp_qmp *q, vm_state *v)
{
        if (v->exports > 0)
                return;
        if (q)
                (void)qmp_call(q, "nbd-server-stop", NULL, NULL, NULL);
        port_release(v->port);
        v->port = 0;
}

/* The record describes another QEMU than the one answering now (the VM was
 * restarted): its server and exports died with the old process. */
static void vm_forget(vm_state *v)
{
        log_debug("VM %s: QEMU was restarted, forgetting %u exports", v->name, v->exports);
        port_release(v->port);
        v->port = 0;
        v->exports = 0;
        v->gen++;
}

static void vm_check_stale(vm_state *v, tp_qmp *q)
{
        if (v->exports > 0 && v->qemu_pid != tp_qmp_peer_pid(q))
                vm_forget(v);
}

static int open_running(const tp_export_cfg *cfg, const tp_export_req *req, const char *path, tp_qmp *q, vm_state *v,
                        tp_export **ret, char **err)
{
        _cleanup_(export_freep) tp_export *e = NULL;
        _cleanup_(vm_disk_done) vm_disk d = { 0 };
        json_t *image, *bm = NULL, *actions = NULL;
        char *desc = NULL, hex[17];
        export_priv *p;
        bool started = false, qcow2;
        size_t want = 0;
        uint64_t size;
        int r;

        if (req->write)
                return fail(err, -EBUSY, "VM %s is running; shut it down to write its disk", req->vm);
        if (req->snapshot) /* open_running_snapshot's */
                return -EINVAL;
        r = vm_disk_find(q, req->vm, path, &d, err);
        if (r < 0)
                return r;
        qcow2 = streq(d.drv, "qcow2");
        if ((req->since || req->checkpoint) && !qcow2)
                return fail(err, -EINVAL, "%s is not a qcow2 image: it cannot have checkpoints", path);
        if (req->since && !(bm = find_named(d.bitmaps, req->since)))
                return fail(err, -ENOENT, "no checkpoint %s on %s", req->since, path);
        image = json_object_get(d.node, "image");
        if (!json_is_integer(json_object_get(image, "virtual-size")))
                return fail(err, -EIO, "VM %s: no size for node %s", req->vm, d.node_name);
        size = (uint64_t)json_integer_value(json_object_get(image, "virtual-size"));

        vm_check_stale(v, q);
        r = export_new(req->vm, cfg->data_host, qcow2 ? "qcow2" : "raw", req->since, true, &e);
        if (r < 0)
                return r;
        p = e->priv;
        e->size = size;
        e->cluster_size = qcow2 ? (uint32_t)json_integer_value(json_object_get(image, "cluster-size")) : 0;
        e->granularity = bm ? (uint32_t)json_integer_value(json_object_get(bm, "granularity")) : 0;

        r = nbd_server_ensure(cfg, q, v, &started, err);
        if (r < 0)
                return r;
        if (started)
                remove_stale_holders(q, req->vm);

        /* The frozen copy of `since`, on its own node under the same name,
         * and the new checkpoint: one transaction, so no guest write falls
         * between the end of the one and the start of the other. */
        actions = json_array();
        if (!actions) {
                r = -ENOMEM;
                goto fail;
        }
        if (req->since) {
                r = random_hex(hex, 8);
                if (r < 0 || asprintf(&p->holder, HOLDER_PREFIX "%s", hex) < 0) {
                        json_decref(actions);
                        r = r < 0 ? r : -ENOMEM;
                        goto fail;
                }
                r = qmp_call(q, "blockdev-add", NULL, &desc, "{s:s, s:s, s:I}", "driver", "null-co", "node-name",
                             p->holder, "size", (json_int_t)size);
                if (r < 0) {
                        json_decref(actions);
                        free(p->holder);
                        p->holder = NULL;
                        r = qmp_fail(err, r, desc, "VM %s: adding a node for the copy of %s", req->vm, req->since);
                        goto fail;
                }
                want += 2;
                json_array_append_new(actions,
                                      json_pack("{s:s, s:{s:s, s:s, s:I, s:b, s:b}}", "type", "block-dirty-bitmap-add",
                                                "data", "node", p->holder, "name", req->since, "granularity",
                                                (json_int_t)e->granularity, "persistent", 0, "disabled", 1));
                json_array_append_new(actions,
                                      json_pack("{s:s, s:{s:s, s:s, s:[{s:s, s:s}]}}", "type",
                                                "block-dirty-bitmap-merge", "data", "node", p->holder, "target",
                                                req->since, "bitmaps", "node", d.node_name, "name", req->since));
        }
        if (req->checkpoint && !find_named(d.bitmaps, req->checkpoint)) {
                want++;
                json_array_append_new(actions,
                                      json_pack("{s:s, s:{s:s, s:s, s:b}}", "type", "block-dirty-bitmap-add", "data",
                                                "node", d.node_name, "name", req->checkpoint, "persistent", 1));
        }
        if (json_array_size(actions) != want)
                r = -ENOMEM;
        else if (want > 0) {
                r = qmp_call(q, "transaction", NULL, &desc, "{s:O}", "actions", actions);
                if (r < 0)
                        r = qmp_fail(err, r, desc, "VM %s: copying checkpoint %s / creating checkpoint %s on %s",
                                     req->vm, req->since ? req->since : "-", req->checkpoint ? req->checkpoint : "-",
                                     path);
        }
        json_decref(actions);
        if (r < 0)
                goto fail;

        for (bool retried = false;; retried = true) {
                if (req->since)
                        r = qmp_call(q, "block-export-add", NULL, &desc, "{s:s, s:s, s:s, s:s, s:b, s:[{s:s, s:s}]}",
                                     "type", "nbd", "id", e->name, "node-name", d.node_name, "name", e->name,
                                     "writable", 0, "bitmaps", "node", p->holder, "name", req->since);
                else
                        r = qmp_call(q, "block-export-add", NULL, &desc, "{s:s, s:s, s:s, s:s, s:b}", "type", "nbd",
                                     "id", e->name, "node-name", d.node_name, "name", e->name, "writable", 0);
                if (r == -EREMOTEIO && !started && !retried && strstr(desc, "not running")) {
                        /* Our record outlived its QEMU without the pid
                         * telling (a socket created by another process). */
                        free(desc);
                        desc = NULL;
                        vm_forget(v);
                        r = nbd_server_ensure(cfg, q, v, &started, err);
                        if (r < 0)
                                goto fail;
                        continue;
                }
                break;
        }
        if (r < 0) {
                r = qmp_fail(err, r, desc, "VM %s: exporting %s", req->vm, path);
                goto fail;
        }
        v->exports++;
        p->gen = v->gen;
        e->port = v->port;
        *ret = TAKE_PTR(e);
        return 0;

fail:
        if (p->holder)
                (void)qmp_call(q, "blockdev-del", NULL, NULL, "{s:s}", "node-name", p->holder);
        if (started)
                nbd_server_release(q, v);
        return r;
}

/* An internal snapshot of a running VM's disk: checked in QEMU's own view
 * (the disk is attached, qcow2, and lists the snapshot), then served by
 * qemu-nbd with force-share (see DESIGN). The QMP session is closed before
 * qemu-nbd starts: that may take seconds, and QEMU's monitor serves one
 * client at a time. */
static int open_running_snapshot(const tp_export_cfg *cfg, const tp_export_req *req, const char *path, tp_qmp **q,
                                 tp_export **ret, char **err)
{
        _cleanup_(vm_disk_done) vm_disk d = { 0 };
        json_t *snapshots;
        int r;

        if (req->write)
                return fail(err, -EINVAL, "an internal snapshot can only be read");
        if (req->checkpoint)
                return fail(err, -EINVAL,
                            "VM %s is running: checkpoint %s would start now, not at snapshot %s; "
                            "create it when backing up the live disk",
                            req->vm, req->checkpoint, req->snapshot);
        r = vm_disk_find(*q, req->vm, path, &d, err);
        *q = tp_qmp_free(*q);
        if (r < 0)
                return r;
        if (!streq(d.drv, "qcow2"))
                return fail(err, -ENOENT, "no internal snapshot %s in %s: running VM %s reads it as a raw image",
                            req->snapshot, path, req->vm);
        snapshots = json_object_get(json_object_get(d.node, "image"), "snapshots");
        if (!find_named(snapshots, req->snapshot))
                return fail(err, -ENOENT, "no internal snapshot %s in %s (running VM %s)", req->snapshot, path,
                            req->vm);
        return open_qemu_nbd(cfg, req, path, true, ret, err);
}

static int close_running(const tp_export_cfg *cfg, tp_export *e, char **err)
{
        export_priv *p = e->priv;
        _cleanup_(vm_releasep) vm_state *v = NULL;
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        char *desc = NULL;
        int r, ret = 0;

        r = vm_acquire(p->vm, &v);
        if (r < 0)
                return r;
        r = vm_qmp(cfg, p->vm, &q, err);
        if (r < 0) {
                /* QEMU hangs: what it serves is out of reach; forget it. */
                if (p->gen == v->gen && v->exports > 0) {
                        v->exports--;
                        nbd_server_release(NULL, v);
                }
                return r;
        }
        if (r == 0 || p->gen != v->gen || tp_qmp_peer_pid(q) != v->qemu_pid) {
                /* The VM stopped or restarted: the export went with its QEMU. */
                if (p->gen == v->gen && v->exports > 0) {
                        v->exports--;
                        nbd_server_release(NULL, v);
                }
                return 0;
        }

        r = qmp_call(q, "block-export-del", NULL, &desc, "{s:s, s:s}", "id", e->name, "mode", "hard");
        if (r < 0 && !(r == -EREMOTEIO && strstr(desc, "not found")))
                ret = qmp_fail(err, r, desc, "VM %s: removing export %s", p->vm, e->name);
        else
                free(desc);
        desc = NULL;
        if (ret == 0 && (r = wait_exports_gone(q, e->name)) < 0)
                ret = fail(err, -EIO, "VM %s: export %s was not removed: %s", p->vm, e->name, strerror(-r));
        if (ret == 0 && p->holder) {
                r = qmp_call(q, "blockdev-del", NULL, &desc, "{s:s}", "node-name", p->holder);
                if (r < 0)
                        ret = qmp_fail(err, r, desc, "VM %s: removing the copy of a checkpoint (node %s)", p->vm,
                                       p->holder);
        }
        v->exports--;
        nbd_server_release(q, v);
        return ret;
}

/* ---- the API ----------------------------------------------------------- */

int tp_export_open(const tp_export_cfg *cfg, const tp_export_req *req, tp_export **ret, char **err)
{
        _cleanup_(vm_releasep) vm_state *v = NULL;
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (!cfg || !req || !ret)
                return -EINVAL;
        if (!vm_name_ok(req->vm))
                return fail(err, -EINVAL, "bad VM name");
        if (req->since && !bitmap_name_ok(req->since))
                return fail(err, -EINVAL, "bad checkpoint name: %s", req->since);
        if (req->checkpoint && !bitmap_name_ok(req->checkpoint))
                return fail(err, -EINVAL, "bad checkpoint name: %s", req->checkpoint);
        if (req->snapshot && !snapshot_name_ok(req->snapshot))
                return fail(err, -EINVAL, "bad snapshot name");
        if (req->snapshot && req->write)
                return fail(err, -EINVAL, "an internal snapshot can only be read");
        if (req->snapshot && req->since)
                return fail(err, -EINVAL, "an internal snapshot has no changes since a checkpoint");
        if (!cfg->data_host)
                return fail(err, -EINVAL, "no data address configured");
        r = resolve_image(cfg, req->path, &path, err);
        if (r < 0)
                return r;

        r = vm_acquire(req->vm, &v);
        if (r < 0)
                return r;
        r = vm_qmp(cfg, req->vm, &q, err);
        if (r < 0)
                return r;
        if (r > 0 && req->snapshot)
                r = open_running_snapshot(cfg, req, path, &q, ret, err);
        else if (r > 0)
                r = open_running(cfg, req, path, q, v, ret, err);
        else
                r = open_qemu_nbd(cfg, req, path, false, ret, err);
        if (r >= 0)
                log_debug("exported %s%s%s of %s VM %s as %s on %s:%u (%s)", path, req->snapshot ? ", snapshot " : "",
                          strempty(req->snapshot), (*ret)->running ? "running" : "stopped", req->vm, (*ret)->name,
                          (*ret)->host, (*ret)->port, ((export_priv *)(*ret)->priv)->qemu_nbd ? "qemu-nbd" : "QEMU");
        return r;
}

int tp_export_close(const tp_export_cfg *cfg, tp_export *e, char **err)
{
        int r;

        if (!cfg || !e || !e->priv)
                return -EINVAL;
        r = ((export_priv *)e->priv)->qemu_nbd ? close_qemu_nbd(e) : close_running(cfg, e, err);
        log_debug("closed export %s on port %u: %s", e->name, e->port, r < 0 ? strerror(-r) : "ok");
        export_free(e);
        return r;
}

/* The common start of the bitmap calls: checks, resolves, locks the VM and
 * connects to it when it runs (*q stays NULL when it is stopped). */
static int bitmap_begin(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name, char **resolved,
                        vm_state **v, tp_qmp **q, char **err)
{
        int r;

        if (!cfg || !path)
                return -EINVAL;
        if (!vm_name_ok(vm))
                return fail(err, -EINVAL, "bad VM name");
        if (name && !bitmap_name_ok(name))
                return fail(err, -EINVAL, "bad checkpoint name: %s", name);
        r = resolve_image(cfg, path, resolved, err);
        if (r < 0)
                return r;
        r = vm_acquire(vm, v);
        if (r < 0)
                return r;
        r = vm_qmp(cfg, vm, q, err);
        return r < 0 ? r : 0;
}

int tp_bitmap_create(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name, char **err)
{
        _cleanup_(vm_releasep) vm_state *v = NULL;
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *real = NULL;
        char *desc = NULL;
        int r;

        if (!name)
                return -EINVAL;
        r = bitmap_begin(cfg, vm, path, name, &real, &v, &q, err);
        if (r < 0)
                return r;
        if (q) {
                _cleanup_(vm_disk_done) vm_disk d = { 0 };

                r = vm_disk_find(q, vm, real, &d, err);
                if (r < 0)
                        return r;
                if (!streq(d.drv, "qcow2"))
                        return fail(err, -EINVAL, "%s is not a qcow2 image: it cannot have checkpoints", real);
                if (find_named(d.bitmaps, name))
                        return fail(err, -EEXIST, "checkpoint %s already exists on %s", name, real);
                r = qmp_call(q, "block-dirty-bitmap-add", NULL, &desc, "{s:s, s:s, s:b}", "node", d.node_name, "name",
                             name, "persistent", 1);
                if (r < 0)
                        return qmp_fail(err, r, desc, "VM %s: creating checkpoint %s on %s", vm, name, real);
                return 0;
        }

        image_info info;
        r = image_info_get(cfg, real, &info, err);
        if (r < 0)
                return r;
        if (!streq(info.format, "qcow2"))
                r = fail(err, -EINVAL, "%s is a raw image: it cannot have checkpoints", real);
        else if (find_named(info.bitmaps, name))
                r = fail(err, -EEXIST, "checkpoint %s already exists on %s", name, real);
        else
                r = offline_bitmap(cfg, real, "--add", name, err);
        image_info_done(&info);
        return r;
}

int tp_bitmap_remove(const tp_export_cfg *cfg, const char *vm, const char *path, const char *name, char **err)
{
        _cleanup_(vm_releasep) vm_state *v = NULL;
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *real = NULL;
        char *desc = NULL;
        int r;

        if (!name)
                return -EINVAL;
        r = bitmap_begin(cfg, vm, path, name, &real, &v, &q, err);
        if (r < 0)
                return r;
        if (q) {
                _cleanup_(vm_disk_done) vm_disk d = { 0 };

                r = vm_disk_find(q, vm, real, &d, err);
                if (r < 0)
                        return r;
                if (!find_named(d.bitmaps, name))
                        return fail(err, -ENOENT, "no checkpoint %s on %s", name, real);
                r = qmp_call(q, "block-dirty-bitmap-remove", NULL, &desc, "{s:s, s:s}", "node", d.node_name, "name",
                             name);
                if (r < 0)
                        return qmp_fail(err, r, desc, "VM %s: removing checkpoint %s from %s", vm, name, real);
                return 0;
        }

        image_info info;
        r = image_info_get(cfg, real, &info, err);
        if (r < 0)
                return r;
        if (!find_named(info.bitmaps, name))
                r = fail(err, -ENOENT, "no checkpoint %s on %s", name, real);
        else
                r = offline_bitmap(cfg, real, "--remove", name, err);
        image_info_done(&info);
        return r;
}

void tp_bitmap_info_free(tp_bitmap_info *v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

int tp_bitmap_list(const tp_export_cfg *cfg, const char *vm, const char *path, tp_bitmap_info **ret, size_t *n,
                   char **err)
{
        _cleanup_(vm_releasep) vm_state *v = NULL;
        _cleanup_(tp_qmp_freep) tp_qmp *q = NULL;
        _cleanup_free_ char *real = NULL;
        _cleanup_(vm_disk_done) vm_disk d = { 0 };
        image_info info = { 0 };
        tp_bitmap_info *list;
        json_t *array, *b;
        size_t k, count = 0;
        int r;

        if (!ret || !n)
                return -EINVAL;
        r = bitmap_begin(cfg, vm, path, NULL, &real, &v, &q, err);
        if (r < 0)
                return r;
        if (q)
                r = vm_disk_find(q, vm, real, &d, err);
        else
                r = image_info_get(cfg, real, &info, err);
        if (r < 0)
                return r;
        array = q ? d.bitmaps : info.bitmaps;

        list = calloc(json_array_size(array) + 1, sizeof(*list));
        if (!list) {
                image_info_done(&info);
                return -ENOMEM;
        }
        json_array_foreach(array, k, b)
        {
                const char *name = json_string_value(json_object_get(b, "name"));
                tp_bitmap_info *i = &list[count];

                if (!name)
                        continue;
                i->name = strdup(name);
                if (!i->name) {
                        tp_bitmap_info_free(list, count);
                        image_info_done(&info);
                        return -ENOMEM;
                }
                count++;
                i->granularity = (uint32_t)json_integer_value(json_object_get(b, "granularity"));
                if (q) {
                        i->persistent = json_is_true(json_object_get(b, "persistent"));
                        i->enabled = json_is_true(json_object_get(b, "recording"));
                        i->dirty_bytes = (uint64_t)json_integer_value(json_object_get(b, "count"));
                } else {
                        i->persistent = true; /* a bitmap stored in the image is persistent by definition */
                        i->enabled = has_flag(b, "auto");
                }
        }
        image_info_done(&info);
        *ret = list;
        *n = count;
        return 0;
}
