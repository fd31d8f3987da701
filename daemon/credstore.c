/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * credstore.c -- the platforms' passwords in STATE_DIR/credentials.json
 * (see credstore.h for the design, docs/formats.md for the file).
 *
 * The file is opened once per call with O_NOFOLLOW and checked through
 * that same descriptor (fstat), so what is checked is what is read.
 * Buffers that held the file's text are wiped before they are freed;
 * jansson's own copies cannot be, which is one more reason the text is
 * short-lived.
 */
#include "daemon/credstore.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "daemon/log.h"
#include "daemon/util.h"

#define TMP_PREFIX VB_CREDSTORE_FILE ".tmp-"

struct vb_credstore {
        int dirfd;
        char *path; /* of the file, for messages */
        pthread_mutex_t lock;
};

static void wipe_free(char *p, size_t len)
{
        if (!p)
                return;
        explicit_bzero(p, len);
        free(p);
}

void vb_credstore_password_free(char *password)
{
        if (password)
                wipe_free(password, strlen(password));
}

/* The file must be ours, regular, and closed to group and others. */
static int check_file(const char *path, int fd, struct stat *st)
{
        if (fstat(fd, st) < 0)
                return log_error_errno(errno, "Failed to stat %s: %m", path);
        if (!S_ISREG(st->st_mode))
                return log_error_errno(EPERM, "%s is not a regular file; refusing to use it", path);
        if (st->st_uid != geteuid())
                return log_error_errno(EPERM, "%s is owned by uid %u, not by this daemon's uid %u; refusing to read it",
                                       path, (unsigned)st->st_uid, (unsigned)geteuid());
        if (st->st_mode & 0077)
                return log_error_errno(EPERM,
                                       "%s has mode %04o: group or others have access to it, the passwords may have "
                                       "leaked; refusing to use it (check who read it, then chmod 600 it)",
                                       path, (unsigned)(st->st_mode & 07777));
        return 0;
}

static json_t *new_doc(void)
{
        return json_pack("{s:s, s:i, s:{}}", "format", VB_CREDSTORE_FORMAT, "version", VB_CREDSTORE_VERSION,
                         "platforms");
}

/* The document, checked: format, version, and {"platforms": {NAME:
 * {"password": STRING}}}. A missing file is an empty document. */
static int load_locked(vb_credstore *s, json_t **ret)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        json_error_t e;
        const char *key, *format;
        json_t *doc, *platforms, *v;
        char *text;
        int r;

        fd = openat(s->dirfd, VB_CREDSTORE_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT) {
                        doc = new_doc();
                        if (!doc)
                                return -ENOMEM;
                        *ret = doc;
                        return 0;
                }
                if (errno == ELOOP)
                        return log_error_errno(EPERM, "%s is a symbolic link; refusing to follow it", s->path);
                return log_error_errno(errno, "Failed to open %s: %m", s->path);
        }
        r = check_file(s->path, fd, &st);
        if (r < 0)
                return r;
        if (st.st_size > VB_CREDSTORE_MAX_SIZE)
                return log_error_errno(EFBIG, "%s is larger than %u bytes", s->path, VB_CREDSTORE_MAX_SIZE);
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return -ENOMEM;
        r = vb_pread_all(fd, text, (size_t)st.st_size, 0);
        if (r < 0) {
                wipe_free(text, (size_t)st.st_size + 1);
                return log_error_errno(r, "Failed to read %s: %m", s->path);
        }
        doc = json_loadb(text, (size_t)st.st_size, 0, &e);
        wipe_free(text, (size_t)st.st_size + 1);
        if (!doc)
                return log_error_errno(EBADMSG, "%s: malformed JSON at line %d: %s", s->path, e.line, e.text);
        format = json_string_value(json_object_get(doc, "format"));
        platforms = json_object_get(doc, "platforms");
        if (!format || !streq(format, VB_CREDSTORE_FORMAT) || !json_is_object(platforms)) {
                json_decref(doc);
                return log_error_errno(EBADMSG, "%s is not a vbak credentials file", s->path);
        }
        if (json_integer_value(json_object_get(doc, "version")) != VB_CREDSTORE_VERSION) {
                json_decref(doc);
                return log_error_errno(EPROTONOSUPPORT, "%s has an unknown version", s->path);
        }
        json_object_foreach(platforms, key, v) if (!json_is_string(json_object_get(v, "password")))
        {
                json_decref(doc);
                return log_error_errno(EBADMSG, "%s: platform %s has no password string", s->path, key);
        }
        *ret = doc;
        return 0;
}

/* Writes doc over the file: temp file, fsync, rename, fsync of the folder. */
static int save_locked(vb_credstore *s, const json_t *doc)
{
        _cleanup_close_ int fd = -1;
        char tmp[sizeof(TMP_PREFIX) + 16];
        uint64_t rnd;
        char *text;
        size_t len;
        int r;

        text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        r = vb_random_bytes(&rnd, sizeof(rnd));
        if (r < 0)
                goto out;
        snprintf(tmp, sizeof(tmp), TMP_PREFIX "%016" PRIx64, rnd);
        /* 0600 from the first byte: the umask can only narrow it. */
        fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = log_error_errno(errno, "Failed to create a temp file next to %s: %m", s->path);
                goto out;
        }
        r = vb_write_all(fd, text, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r >= 0 && renameat(s->dirfd, tmp, s->dirfd, VB_CREDSTORE_FILE) < 0)
                r = -errno;
        if (r >= 0 && fsync(s->dirfd) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlinkat(s->dirfd, tmp, 0);
                log_error_errno(r, "Failed to write %s: %m", s->path);
        }
out:
        wipe_free(text, len);
        return r;
}

/* Removes temp files a crash left behind (they hold passwords too). */
static void remove_stale_temps(vb_credstore *s)
{
        int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d)))
                if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
                        if (unlinkat(s->dirfd, de->d_name, 0) < 0)
                                log_warning("Failed to remove the stale temp file %s: %m", de->d_name);
                        else
                                log_debug("Removed the stale temp file %s", de->d_name);
                }
        closedir(d);
}

int vb_credstore_open(const char *state_dir, vb_credstore **ret)
{
        _cleanup_(vb_credstore_freep) vb_credstore *s = NULL;
        json_t *doc = NULL;
        int r;

        if (!state_dir || !ret)
                return -EINVAL;
        r = vb_mkdir_p_at(AT_FDCWD, state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to create the state directory %s: %m", state_dir);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dirfd = -1;
        pthread_mutex_init(&s->lock, NULL);
        if (asprintf(&s->path, "%s/%s", state_dir, VB_CREDSTORE_FILE) < 0) {
                s->path = NULL;
                return -ENOMEM;
        }
        s->dirfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return log_error_errno(errno, "Failed to open the state directory %s: %m", state_dir);
        remove_stale_temps(s);
        /* Check the file now, so a bad one stops the daemon at start-up. */
        r = load_locked(s, &doc);
        if (r < 0)
                return r;
        json_decref(doc);
        *ret = TAKE_PTR(s);
        return 0;
}

vb_credstore *vb_credstore_free(vb_credstore *s)
{
        if (!s)
                return NULL;
        if (s->dirfd >= 0)
                close(s->dirfd);
        pthread_mutex_destroy(&s->lock);
        free(s->path);
        free(s);
        return NULL;
}

static int get_locked(vb_credstore *s, const char *platform, char **ret)
{
        json_t *doc = NULL;
        const char *pw;
        int r;

        r = load_locked(s, &doc);
        if (r < 0)
                return r;
        pw = json_string_value(
                json_object_get(json_object_get(json_object_get(doc, "platforms"), platform), "password"));
        if (!pw)
                r = -ENOENT;
        else if (!(*ret = strdup(pw)))
                r = -ENOMEM;
        json_decref(doc);
        return r;
}

int vb_credstore_get(vb_credstore *s, const char *platform, char **ret)
{
        char *pw = NULL;
        int r;

        if (!s || !platform || !*platform || !ret)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        r = get_locked(s, platform, &pw);
        pthread_mutex_unlock(&s->lock);
        if (r >= 0)
                *ret = pw;
        return r;
}

typedef enum op {
        OP_SET,
        OP_REMOVE,
        OP_RENAME,
} op;

/* Load, change, save: a and b are (platform, password), (platform, -) or
 * (from, to). */
static int change_locked(vb_credstore *s, op o, const char *a, const char *b)
{
        json_t *doc = NULL, *platforms, *entry;
        int r;

        r = load_locked(s, &doc);
        if (r < 0)
                return r;
        platforms = json_object_get(doc, "platforms");
        entry = json_object_get(platforms, a);
        switch (o) {
        case OP_SET:
                r = json_object_set_new(platforms, a, json_pack("{s:s}", "password", b)) < 0 ? -ENOMEM : 0;
                break;
        case OP_REMOVE:
                r = entry ? json_object_del(platforms, a) : -ENOENT;
                break;
        case OP_RENAME:
                if (!entry)
                        r = -ENOENT;
                else if (json_object_get(platforms, b))
                        r = -EEXIST;
                else if (json_object_set(platforms, b, entry) < 0)
                        r = -ENOMEM;
                else
                        r = json_object_del(platforms, a);
                break;
        }
        if (r >= 0)
                r = save_locked(s, doc);
        json_decref(doc);
        return r;
}

static int change(vb_credstore *s, op o, const char *a, const char *b)
{
        int r;

        pthread_mutex_lock(&s->lock);
        r = change_locked(s, o, a, b);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int vb_credstore_set(vb_credstore *s, const char *platform, const char *password)
{
        if (!s || !platform || !*platform || !password)
                return -EINVAL;
        return change(s, OP_SET, platform, password);
}

int vb_credstore_remove(vb_credstore *s, const char *platform)
{
        if (!s || !platform || !*platform)
                return -EINVAL;
        return change(s, OP_REMOVE, platform, NULL);
}

int vb_credstore_rename(vb_credstore *s, const char *from, const char *to)
{
        if (!s || !from || !*from || !to || !*to)
                return -EINVAL;
        if (streq(from, to)) {
                char *pw = NULL;
                int r = vb_credstore_get(s, from, &pw);

                vb_credstore_password_free(pw);
                return r < 0 ? r : 0;
        }
        return change(s, OP_RENAME, from, to);
}
