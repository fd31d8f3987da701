/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * object.c -- the object pool: the dedup pool's layout as keys in a bucket
 * of an S3-compatible store (storagepool/s3.h), shared by any number of
 * backup hosts.
 *
 * DESIGN
 *
 * The pool's path is a local folder (pool.json of type "object", object.json
 * naming the endpoint, bucket, region, key prefix and credentials, tmp/ for
 * indexes on their way, cache/ for what the store was seen to hold). The
 * bucket holds, under the prefix:
 *
 *   pool.json                                  the pool: uuid, chunk size, compression
 *   chunks/<2 hex>/<2 hex>/<digest>            chunk blobs (dedup/blob.h)
 *   vms/<platform>/<vm key>/<id>/<disk>.fidx   fixed indexes
 *   vms/<platform>/<vm key>/<id>/manifest.json written last: the restore point exists
 *   writers/<id>.json                          a writer at work (its LastModified: its start)
 *   gc/pending.json                            chunks the last gc found unreferenced
 *
 * A chunk key names its content, so any number of writers may put the same
 * chunk at once: the bytes are the same. Indexes and manifests belong to
 * one restore point id. A restore point exists once its manifest object
 * does, and the manifest is put only after every chunk and index it needs
 * was acknowledged by the store.
 *
 * Garbage collection without atomic rename or touch (docs/formats.md,
 * "Object pools"): gc deletes in two rounds.
 *   1. A round lists every chunk that no committed index references and
 *      whose LastModified is older than the grace period, and records them
 *      with the round's time T (the store's clock, read from an object it
 *      just put) in gc/pending.json. Nothing is deleted.
 *   2. The next round, once every writer that is running began after T
 *      (writers/ tells), marks again from every committed index and deletes
 *      each recorded chunk that is still unreferenced and was not put again
 *      since T (LastModified < T). Then it records a new list.
 * A writer reads gc/pending.json when it begins and never trusts a chunk on
 * that list: it puts it again (new LastModified), so the second round keeps
 * it. A writer that began before T did not see the list: the second round
 * waits until it has ended, and by then its restore point is committed (its
 * index references what it used) or abandoned. Chunks a writer inherits
 * from its parent are referenced by the parent's index; if the parent is
 * removed meanwhile, they are the writer's as soon as it commits, before
 * any second round may run.
 *
 * Known chunks: a writer does not ask the store about every chunk. The
 * digests of the parent's index, and those this host put or saw in earlier
 * backups (cache/known, with the gc generation it belongs to), are trusted
 * unless gc/pending.json names them; any other is asked for with HEAD. A
 * second gc round that deletes anything moves the generation on, and the
 * cache of an older one is dropped.
 *
 * One gc at a time per pool: S3 has no lock, so gc checks that the list it
 * read is still the one stored before it writes its own, and stops
 * (-EBUSY) when another gc got there first; the window left between the
 * check and the put is why gc of an object pool is to be run from one
 * place at a time (docs/formats.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/util.h"
#include "dedup/dset.h"
#include "dedup/index.h"
#include "storagepool/chunkprep.h"
#include "storagepool/fs.h"
#include "storagepool/object.h"
#include "storagepool/s3.h"
#include "storagepool/sp.h"

#define OBJ_CONFIG "object.json"
#define OBJ_KNOWN "cache/known"
#define OBJ_KNOWN_MAGIC "vbak-known-1"
#define GC_PENDING "gc/pending.json"
#define WRITER_MAX_AGE (7 * 24 * 3600) /* a writer marker older than this belongs to a dead writer */
#define MANIFEST_MAX (16u << 20)
#define CHUNK_KEY_MAX 160

static sp_object_secret_fn secret_fn;
static void *secret_userdata;

void sp_object_set_secret_fn(sp_object_secret_fn fn, void *userdata)
{
        secret_fn = fn;
        secret_userdata = userdata;
}

typedef struct obj_pool {
        sp_pool base;
        sp_s3 *s3;
        char *prefix; /* "" or "some/prefix/" */
        pthread_mutex_t lock;
        dd_dset *known;      /* chunks the store holds, as far as this host knows */
        dd_dset *candidates; /* what gc may delete: never trusted */
        uint64_t generation; /* the gc generation known belongs to */
        bool known_loaded;
} obj_pool;

typedef struct obj_writer {
        sp_writer base;
        char *dir;    /* vms/<platform>/<key>/<id>/ (without the pool's prefix) */
        char *marker; /* writers/<id>.json */
        dd_manifest *parent;
} obj_writer;

typedef struct obj_disk_writer {
        sp_disk_writer base;
        char *name, *tmp_name; /* the disk; its index in tmp/ */
        sp_disk_index x;       /* the index, and the parent's of this disk when it has one */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned in_flight; /* puts not yet answered */
        int error;
        char *error_msg;
} obj_disk_writer;

static obj_pool *pool_of(sp_pool *p)
{
        return container_of(p, obj_pool, base);
}

/* The key of path in the bucket (the pool's prefix first). */
static char *key_of(obj_pool *op, const char *path)
{
        char *k;

        return asprintf(&k, "%s%s", op->prefix, path) < 0 ? NULL : k;
}

static void chunk_key(obj_pool *op, const dd_digest *d, char out[CHUNK_KEY_MAX])
{
        char hex[DD_DIGEST_HEX_SIZE];

        dd_digest_to_hex(d, hex);
        snprintf(out, CHUNK_KEY_MAX, "%schunks/%.2s/%.2s/%s", op->prefix, hex, hex + 2, hex);
}

/* Logs the store's message and answers r. */
static int s3_fail(int r, char *err)
{
        if (err)
                log_error("%s", err);
        free(err);
        return r;
}

/* ---- the local folder and the connection ---- */

static int read_secret(const char *file, char **ret)
{
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t n;
        int r;

        if (stat(file, &st) < 0)
                return -errno;
        if (st.st_mode & 0077) {
                log_error("%s: the secret key file must not be readable by group or others (chmod 600)", file);
                return -EPERM;
        }
        r = vb_read_file_at(AT_FDCWD, file, 4096, &text, NULL);
        if (r < 0)
                return r;
        n = strcspn(text, "\r\n");
        text[n] = '\0';
        if (n == 0)
                return -EINVAL;
        *ret = TAKE_PTR(text);
        return 0;
}

static int connect_store(const char *path, json_t *cfg, const char *secret_in, sp_s3 **ret)
{
        const char *endpoint = json_string_value(json_object_get(cfg, "endpoint"));
        const char *bucket = json_string_value(json_object_get(cfg, "bucket"));
        const char *file = json_string_value(json_object_get(cfg, "secret_key_file"));
        _cleanup_free_ char *secret = NULL;
        sp_s3_opts o;
        int r;

        if (!endpoint || !bucket || !json_string_value(json_object_get(cfg, "access_key")))
                return -EBADMSG;
        if (secret_in)
                secret = strdup(secret_in);
        else if (file)
                r = read_secret(file, &secret);
        else if (secret_fn)
                r = secret_fn(secret_userdata, path, &secret);
        else
                r = -ENOKEY;
        if (!secret && secret_in)
                return -ENOMEM;
        if (!secret)
                return r;
        o = (sp_s3_opts){ .endpoint = endpoint,
                          .bucket = bucket,
                          .region = json_string_value(json_object_get(cfg, "region")),
                          .access_key = json_string_value(json_object_get(cfg, "access_key")),
                          .secret_key = secret,
                          .insecure = json_is_true(json_object_get(cfg, "insecure")),
                          .max_requests = (unsigned)json_integer_value(json_object_get(cfg, "requests")),
                          .part_size = (uint64_t)json_integer_value(json_object_get(cfg, "part_size")),
                          .rate = (uint64_t)json_integer_value(json_object_get(cfg, "rate")) };
        r = sp_s3_new(&o, ret);
        explicit_bzero(secret, strlen(secret));
        return r;
}

static int prefix_of(json_t *cfg, char **ret)
{
        const char *p = json_string_value(json_object_get(cfg, "prefix"));
        size_t n = p ? strlen(p) : 0;

        if (n == 0)
                *ret = strdup("");
        else if (asprintf(ret, "%s%s", p, p[n - 1] == '/' ? "" : "/") < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

/* The pool's own pool.json in the bucket. */
static char *remote_pool_json(const sp_pool *base)
{
        char comp[32];
        json_t *j =
                json_pack("{s:s, s:i, s:s, s:s, s:I, s:s, s:I}", "format", SP_POOL_FORMAT, "version", SP_POOL_VERSION,
                          "type", "object", "uuid", base->uuid, "chunk_size", (json_int_t)base->opts.chunk_size,
                          "compression", dd_compression_to_string(base->opts.compression, comp, sizeof(comp)),
                          "created", (json_int_t)time(NULL));
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

        json_decref(j);
        return text;
}

/* Takes the pool's uuid, chunk size and compression from the bucket. */
static int adopt_remote(obj_pool *op, const uint8_t *text, size_t len)
{
        json_t *j = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, NULL);
        const char *format = NULL, *uuid = NULL, *comp = NULL;
        json_int_t version = 0, chunk_size = 0;
        int r = -EBADMSG;

        if (!j)
                return -EBADMSG;
        if (json_unpack(j, "{s:s, s:I, s:s, s:I, s:s}", "format", &format, "version", &version, "uuid", &uuid,
                        "chunk_size", &chunk_size, "compression", &comp) < 0 ||
            !streq(format, SP_POOL_FORMAT) || strlen(uuid) != 36 || chunk_size < SP_CHUNK_SIZE_MIN ||
            chunk_size > SP_CHUNK_SIZE_MAX || (chunk_size & (chunk_size - 1)) != 0 ||
            dd_compression_from_string(comp, &op->base.opts.compression) < 0)
                goto out;
        if (version != SP_POOL_VERSION) {
                r = -EPROTONOSUPPORT;
                goto out;
        }
        memcpy(op->base.uuid, uuid, 37);
        op->base.opts.chunk_size = (uint32_t)chunk_size;
        r = 0;
out:
        json_decref(j);
        return r;
}

static json_t *read_config(int dirfd)
{
        _cleanup_free_ char *text = NULL;

        if (vb_read_file_at(dirfd, OBJ_CONFIG, 1 << 16, &text, NULL) < 0)
                return NULL;
        return json_loads(text, JSON_REJECT_DUPLICATES, NULL);
}

static int obj_create(const char *path, const sp_options *o)
{
        _cleanup_free_ char *text = NULL, *remote = NULL, *key = NULL, *prefix = NULL, *err = NULL;
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ uint8_t *got = NULL;
        sp_pool base = { 0 };
        sp_s3 *s3 = NULL;
        size_t got_len = 0;
        json_t *cfg;
        int r;

        if (!o->endpoint || !o->bucket || !o->access_key || (!o->secret_key_file && !o->secret_key))
                return -EINVAL;
        cfg = json_pack("{s:s, s:s, s:s?, s:s?, s:s, s:I, s:I, s:I}", "endpoint", o->endpoint, "bucket", o->bucket,
                        "region", o->region, "prefix", o->prefix, "access_key", o->access_key, "requests",
                        (json_int_t)o->requests, "part_size", (json_int_t)o->part_size, "rate", (json_int_t)o->rate);
        if (!cfg ||
            (o->secret_key_file && json_object_set_new(cfg, "secret_key_file", json_string(o->secret_key_file)) < 0)) {
                json_decref(cfg);
                return -ENOMEM;
        }
        r = prefix_of(cfg, &prefix);
        if (r >= 0)
                r = connect_store(path, cfg, o->secret_key, &s3);
        if (r < 0)
                goto out;
        r = sp_s3_bucket_create(s3, &err);
        if (r < 0) {
                r = s3_fail(r, TAKE_PTR(err));
                goto out;
        }
        r = sp_fs_create(path, o);
        if (r < 0)
                goto out;
        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0 || mkdirat(dirfd, "cache", 0700) < 0) {
                r = -errno;
                goto out;
        }
        text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        r = text ? vb_write_file_atomic_at(dirfd, OBJ_CONFIG, text, strlen(text), true) : -ENOMEM;
        if (r < 0)
                goto out;
        /* A bucket (and prefix) that holds a pool already is joined: the
         * pool is shared by every host that names it. */
        if (asprintf(&key, "%spool.json", prefix) < 0)
                key = NULL;
        r = sp_fs_read_pool(path, &base);
        if (r < 0 || !key) {
                r = r < 0 ? r : -ENOMEM;
                goto out;
        }
        r = sp_s3_get_alloc(s3, key, 1 << 20, &got, &got_len, &err);
        if (r == -ENOENT) {
                free(TAKE_PTR(err));
                remote = remote_pool_json(&base);
                r = remote ? sp_s3_put(s3, key, remote, strlen(remote), &err) : -ENOMEM;
        }
        if (r < 0)
                r = s3_fail(r, TAKE_PTR(err));
        sp_fs_pool_done(&base);
out:
        if (r < 0 && dirfd >= 0)
                (void)unlinkat(dirfd, SP_POOL_FILE, 0); /* not a pool without its store */
        sp_s3_free(s3);
        json_decref(cfg);
        return r;
}

static int obj_open(sp_pool *base, sp_pool **ret)
{
        _cleanup_free_ uint8_t *text = NULL;
        _cleanup_free_ char *key = NULL, *err = NULL;
        obj_pool *op = calloc(1, sizeof(*op));
        size_t len = 0;
        json_t *cfg;
        int r;

        if (!op)
                return -ENOMEM;
        op->base = *base;
        pthread_mutex_init(&op->lock, NULL);
        cfg = read_config(base->dirfd);
        r = cfg ? prefix_of(cfg, &op->prefix) : -EBADMSG;
        if (r >= 0)
                r = connect_store(base->path, cfg, NULL, &op->s3);
        json_decref(cfg);
        if (r >= 0)
                r = (key = key_of(op, "pool.json")) ? sp_s3_get_alloc(op->s3, key, 1 << 20, &text, &len, &err)
                                                    : -ENOMEM;
        if (r == -ENOENT)
                r = -EBADMSG; /* the bucket holds no pool (any more) */
        if (r < 0)
                r = s3_fail(r, TAKE_PTR(err));
        if (r >= 0)
                r = adopt_remote(op, text, len);
        op->known = dd_dset_new();
        op->candidates = dd_dset_new();
        if (r >= 0 && (!op->known || !op->candidates))
                r = -ENOMEM;
        if (r < 0) {
                sp_s3_free(op->s3);
                dd_dset_free(op->known);
                dd_dset_free(op->candidates);
                pthread_mutex_destroy(&op->lock);
                free(op->prefix);
                free(op);
                return r;
        }
        *ret = &op->base;
        return 0;
}

static void save_known(obj_pool *op);

static void obj_close(sp_pool *p)
{
        obj_pool *op = pool_of(p);

        save_known(op);
        sp_s3_free(op->s3);
        dd_dset_free(op->known);
        dd_dset_free(op->candidates);
        pthread_mutex_destroy(&op->lock);
        free(op->prefix);
        sp_fs_pool_done(p);
        free(op);
}

/* ---- the known-chunk cache and gc's pending list ---- */

/* cache/known: a line with the magic and the gc generation, then one hex
 * digest a line. */
static void load_known(obj_pool *op, uint64_t generation)
{
        _cleanup_free_ char *text = NULL;
        char magic[32];
        unsigned long long gen;
        char *line, *save = NULL;

        op->known_loaded = true;
        op->generation = generation;
        if (vb_read_file_at(op->base.dirfd, OBJ_KNOWN, 1u << 30, &text, NULL) < 0)
                return;
        if (sscanf(text, "%31s %llu", magic, &gen) != 2 || !streq(magic, OBJ_KNOWN_MAGIC) || gen != generation)
                return; /* another generation: gc deleted chunks since */
        line = strtok_r(text, "\n", &save);
        while ((line = strtok_r(NULL, "\n", &save))) {
                dd_digest d;

                if (dd_digest_from_hex(line, &d) == 0)
                        (void)dd_dset_add(op->known, &d);
        }
}

static void save_known(obj_pool *op)
{
        _cleanup_free_ dd_digest *v = NULL;
        char head[64], hex[DD_DIGEST_HEX_SIZE + 1];
        size_t n = 0;
        FILE *f;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;

        if (!op->known_loaded || dd_dset_to_array(op->known, &v, &n) < 0)
                return;
        f = open_memstream(&buf, &size);
        if (!f)
                return;
        snprintf(head, sizeof(head), "%s %" PRIu64 "\n", OBJ_KNOWN_MAGIC, op->generation);
        fputs(head, f);
        for (size_t i = 0; i < n; i++) {
                dd_digest_to_hex(&v[i], hex);
                hex[DD_DIGEST_HEX_SIZE] = '\0';
                fprintf(f, "%s\n", hex);
        }
        if (fclose(f) == 0)
                (void)vb_write_file_atomic_at(op->base.dirfd, OBJ_KNOWN, buf, size, false);
}

typedef struct pending_list {
        uint64_t generation;
        time_t time;
        dd_digest *v;
        size_t n;
} pending_list;

/* gc/pending.json: {"generation": G, "time": T, "chunks": [hex...]}; none: generation 0. */
static int read_pending(obj_pool *op, pending_list *ret)
{
        _cleanup_free_ char *key = key_of(op, GC_PENDING), *err = NULL;
        _cleanup_free_ uint8_t *text = NULL;
        json_t *j, *chunks, *c;
        size_t len = 0, i;
        int r;

        *ret = (pending_list){ 0 };
        if (!key)
                return -ENOMEM;
        r = sp_s3_get_alloc(op->s3, key, 1u << 30, &text, &len, &err);
        if (r == -ENOENT) {
                free(TAKE_PTR(err));
                return 0;
        }
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        j = json_loadb((const char *)text, len, 0, NULL);
        chunks = json_object_get(j, "chunks");
        if (!j || !json_is_array(chunks)) {
                json_decref(j);
                return -EBADMSG;
        }
        ret->generation = (uint64_t)json_integer_value(json_object_get(j, "generation"));
        ret->time = (time_t)json_integer_value(json_object_get(j, "time"));
        ret->v = calloc(json_array_size(chunks) + 1, sizeof(*ret->v));
        if (!ret->v) {
                json_decref(j);
                return -ENOMEM;
        }
        json_array_foreach(chunks, i, c) if (dd_digest_from_hex(json_string_value(c) ?: "", &ret->v[ret->n]) == 0)
                ret->n++;
        json_decref(j);
        return 0;
}

/* What a writer needs before it trusts any chunk: gc's list and the cache
 * of its generation. */
static int refresh_trust(obj_pool *op)
{
        pending_list pl;
        int r = read_pending(op, &pl);

        if (r < 0)
                return r;
        pthread_mutex_lock(&op->lock);
        dd_dset_free(op->candidates);
        op->candidates = dd_dset_new();
        for (size_t i = 0; op->candidates && i < pl.n; i++)
                (void)dd_dset_add(op->candidates, &pl.v[i]);
        if (!op->known_loaded || op->generation != pl.generation) {
                dd_dset_free(op->known);
                op->known = dd_dset_new();
                if (op->known)
                        load_known(op, pl.generation);
        }
        /* A chunk on gc's list is never trusted, whatever the cache says:
         * the known set keeps only what is not listed (a listed chunk
         * enters it again once this host put it anew). */
        if (op->known && op->candidates && pl.n > 0) {
                _cleanup_free_ dd_digest *v = NULL;
                dd_dset *kept = dd_dset_new();
                size_t n = 0;

                if (kept && dd_dset_to_array(op->known, &v, &n) >= 0)
                        for (size_t i = 0; i < n; i++)
                                if (!dd_dset_contains(op->candidates, &v[i]))
                                        (void)dd_dset_add(kept, &v[i]);
                dd_dset_free(op->known);
                op->known = kept;
        }
        r = op->candidates && op->known ? 0 : -ENOMEM;
        pthread_mutex_unlock(&op->lock);
        free(pl.v);
        return r;
}

/* 1: the store holds d and it may be trusted; 0: it must be put. Adds d
 * to the known set when it answers 1, and when claim: so that one
 * put of it is enough. */
static int chunk_trusted(obj_pool *op, const dd_digest *d, bool *put_it)
{
        char key[CHUNK_KEY_MAX];
        _cleanup_free_ char *err = NULL;
        bool candidate, known;
        int r;

        *put_it = false;
        pthread_mutex_lock(&op->lock);
        candidate = dd_dset_contains(op->candidates, d);
        known = dd_dset_contains(op->known, d);
        if (candidate) {
                /* gc may delete it: put it again (once: then it is known),
                 * which keeps it. */
                if (!known) {
                        (void)dd_dset_add(op->known, d);
                        *put_it = true;
                }
                pthread_mutex_unlock(&op->lock);
                return known ? 1 : 0;
        }
        pthread_mutex_unlock(&op->lock);
        if (known)
                return 1;
        chunk_key(op, d, key);
        r = sp_s3_head(op->s3, key, NULL, NULL, &err);
        if (r == -ENOENT) {
                *put_it = true;
                r = 0;
        } else if (r < 0) {
                return s3_fail(r, TAKE_PTR(err));
        } else {
                r = 1;
        }
        pthread_mutex_lock(&op->lock);
        if (r == 1 || *put_it) {
                /* Another thread of this writer may have claimed it meanwhile. */
                if (*put_it && dd_dset_contains(op->known, d)) {
                        *put_it = false;
                        r = 1;
                }
                (void)dd_dset_add(op->known, d);
        }
        pthread_mutex_unlock(&op->lock);
        return r;
}

/* ---- list, find ---- */

static int cmp_manifest(const void *a, const void *b)
{
        const dd_manifest *x = *(dd_manifest *const *)a, *y = *(dd_manifest *const *)b;

        return strcmp(x->id, y->id);
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && streq(s + n - m, suffix);
}

static void report(sp_problem_fn fn, void *userdata, const char *kind, const char *object, const char *detail)
{
        sp_problem pr = { .kind = kind, .object = object, .detail = detail };

        if (fn)
                fn(userdata, &pr);
}

static int read_manifest(obj_pool *op, const char *key, dd_manifest **ret)
{
        _cleanup_free_ uint8_t *text = NULL;
        _cleanup_free_ char *err = NULL;
        size_t len = 0;
        int r = sp_s3_get_alloc(op->s3, key, MANIFEST_MAX, &text, &len, &err);

        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        return dd_manifest_parse((const char *)text, len, ret);
}

static int obj_list(sp_pool *p, const char *vm, sp_problem_fn problem, void *userdata, dd_manifest ***ret,
                    size_t *ret_n)
{
        obj_pool *op = pool_of(p);
        _cleanup_free_ char *prefix = key_of(op, "vms/"), *err = NULL;
        sp_s3_object *objs = NULL;
        dd_manifest **v = NULL;
        size_t n_objs = 0, n = 0;
        int r;

        if (!prefix)
                return -ENOMEM;
        r = sp_s3_list(op->s3, prefix, &objs, &n_objs, &err);
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        v = calloc(n_objs + 1, sizeof(*v));
        if (!v) {
                sp_s3_objects_free(objs, n_objs);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objs; i++) {
                dd_manifest *m = NULL;

                if (!ends_with(objs[i].key, "/" DD_MANIFEST_NAME))
                        continue;
                r = read_manifest(op, objs[i].key, &m);
                if (r == -ENOENT)
                        continue; /* removed since the listing */
                if (r < 0) {
                        report(problem, userdata, "manifest-corrupt", objs[i].key, strerror(-r));
                        continue;
                }
                if (vm && !streq_ptr(m->vm.name, vm)) {
                        dd_manifest_free(m);
                        continue;
                }
                v[n++] = m;
        }
        sp_s3_objects_free(objs, n_objs);
        if (n > 1)
                qsort(v, n, sizeof(*v), cmp_manifest);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The folder of a restore point, relative to the pool's prefix, with a
 * trailing slash. */
static int rp_dir(const dd_manifest *m, char **ret)
{
        _cleanup_free_ char *path = NULL;
        int r = sp_fs_rp_path(m, &path);

        if (r < 0)
                return r;
        return asprintf(ret, "%s/", path) < 0 ? -ENOMEM : 0;
}

static int find_rp(obj_pool *op, const dd_manifest *ident, const char *id, dd_manifest **ret)
{
        dd_manifest probe = *ident;
        _cleanup_free_ char *dir = NULL, *key = NULL;
        int r;

        probe.id = (char *)id;
        r = rp_dir(&probe, &dir);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s%s" DD_MANIFEST_NAME, op->prefix, dir) < 0)
                return -ENOMEM;
        return read_manifest(op, key, ret);
}

/* ---- writing ---- */

static int obj_begin(sp_pool *p, const dd_manifest *tmpl, sp_writer **ret)
{
        obj_pool *op = pool_of(p);
        _cleanup_free_ char *body = NULL, *key = NULL, *err = NULL;
        char id[SP_ID_MAX];
        obj_writer *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->base.pool = p;
        r = dd_manifest_copy(tmpl, &w->base.m);
        if (r < 0)
                goto fail;
        free(w->base.m->pool_type);
        w->base.m->pool_type = strdup(p->drv->name);
        r = sp_fs_new_id(id);
        if (r < 0 || !w->base.m->pool_type)
                goto fail;
        free(w->base.m->id);
        w->base.m->id = strdup(id);
        r = w->base.m->id ? rp_dir(w->base.m, &w->dir) : -ENOMEM;
        if (r < 0)
                goto fail;
        /* The marker first: from now on gc's second round waits for us. */
        if (asprintf(&w->marker, "writers/%s.json", id) < 0 || !(key = key_of(op, w->marker)) ||
            asprintf(&body, "{\"id\": \"%s\", \"parent\": \"%s\", \"vm\": \"%s\"}", id, tmpl->parent ?: "",
                     tmpl->vm.name ?: "") < 0) {
                r = -ENOMEM;
                goto fail;
        }
        r = sp_s3_put(op->s3, key, body, strlen(body), &err);
        if (r < 0) {
                r = s3_fail(r, TAKE_PTR(err));
                free(TAKE_PTR(w->marker));
                goto fail;
        }
        r = refresh_trust(op);
        if (r < 0)
                goto fail;
        if (tmpl->parent) {
                r = find_rp(op, tmpl, tmpl->parent, &w->parent);
                if (r < 0)
                        goto fail;
        }
        *ret = &w->base;
        return 0;
fail:
        if (w->marker && (key = key ?: key_of(op, w->marker)))
                (void)sp_s3_delete(op->s3, key, NULL);
        dd_manifest_free(w->base.m);
        dd_manifest_free(w->parent);
        free(w->dir);
        free(w->marker);
        free(w);
        return r;
}

static void writer_free(obj_writer *w)
{
        dd_manifest_free(w->base.m);
        dd_manifest_free(w->parent);
        free(w->dir);
        free(w->marker);
        free(w);
}

/* Fetches an index object into tmp/ and opens it (the file is unlinked at
 * once; the descriptor keeps it). */
static int fetch_index(obj_pool *op, const char *key, const dd_manifest_disk *md, dd_index **ret)
{
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *err = NULL;
        char tmp[64];
        size_t len = 0;
        int fd, r;

        r = sp_s3_get_alloc(op->s3, key, sizeof(dd_index_header) + md->size / md->chunk_size * 32 + 4096, &data, &len,
                            &err);
        if (r < 0)
                return r == -ENOENT ? -EBADMSG : s3_fail(r, TAKE_PTR(err));
        snprintf(tmp, sizeof(tmp), "tmp/index.%d.XXXXXX", (int)getpid());
        {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", op->base.path, tmp) < 0)
                        return -ENOMEM;
                fd = mkostemp(path, O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                (void)unlink(path);
        }
        r = vb_write_all(fd, data, len);
        if (r < 0) {
                close(fd);
                return r;
        }
        r = dd_index_open_fd(fd, ret);
        if (r < 0)
                return r;
        {
                const dd_index_header *h = dd_index_get_header(*ret);

                if (h->disk_size != md->size || h->chunk_size != md->chunk_size ||
                    !dd_digest_eq(&h->checksum, &md->index_checksum)) {
                        *ret = dd_index_free(*ret);
                        return -EBADMSG;
                }
        }
        return 0;
}

static int index_key(obj_pool *op, const dd_manifest *m, const dd_manifest_disk *md, char **ret)
{
        _cleanup_free_ char *dir = NULL;
        int r = rp_dir(m, &dir);

        if (r < 0)
                return r;
        return asprintf(ret, "%s%s%s", op->prefix, dir, md->index) < 0 ? -ENOMEM : 0;
}

static int obj_disk_begin(sp_writer *base, const char *disk, uint64_t size, sp_disk_writer **ret)
{
        obj_writer *w = container_of(base, obj_writer, base);
        obj_pool *op = pool_of(base->pool);
        obj_disk_writer *dw;
        int r;

        if (!dd_disk_name_is_safe(disk))
                return -EINVAL;
        if (dd_manifest_find_disk(base->m, disk))
                return -EEXIST;
        dw = calloc(1, sizeof(*dw));
        if (!dw)
                return -ENOMEM;
        pthread_mutex_init(&dw->lock, NULL);
        pthread_cond_init(&dw->cond, NULL);
        dw->base = (sp_disk_writer){ .w = base, .size = size, .chunk_size = base->pool->opts.chunk_size };
        dw->name = strdup(disk);
        if (!dw->name || asprintf(&dw->tmp_name, "tmp/%s-%s" DD_INDEX_SUFFIX, base->m->id, disk) < 0) {
                dw->tmp_name = NULL;
                r = -ENOMEM;
                goto fail;
        }
        if (w->parent) {
                const dd_manifest_disk *pd = dd_manifest_find_disk(w->parent, disk);
                _cleanup_free_ char *key = NULL;

                if (pd) {
                        if (pd->chunk_size != base->pool->opts.chunk_size) {
                                r = -EINVAL;
                                goto fail;
                        }
                        r = index_key(op, w->parent, pd, &key);
                        if (r >= 0)
                                r = fetch_index(op, key, pd, &dw->x.parent);
                        if (r < 0)
                                goto fail;
                        dw->x.parent_count = dd_index_get_header(dw->x.parent)->chunk_count;
                        /* What the parent references is there and kept (see DESIGN). */
                        pthread_mutex_lock(&op->lock);
                        for (uint64_t i = 0; i < dw->x.parent_count; i++) {
                                dd_digest d;

                                if (dd_index_get(dw->x.parent, i, &d) == 0 && !dd_digest_is_null(&d) &&
                                    !dd_dset_contains(op->candidates, &d))
                                        (void)dd_dset_add(op->known, &d);
                        }
                        pthread_mutex_unlock(&op->lock);
                }
        }
        r = dd_index_writer_new(base->pool->dirfd, dw->tmp_name, size, base->pool->opts.chunk_size, &dw->x.iw);
        if (r < 0)
                goto fail;
        *ret = &dw->base;
        return 0;
fail:
        dd_index_free(dw->x.parent);
        pthread_cond_destroy(&dw->cond);
        pthread_mutex_destroy(&dw->lock);
        free(dw->name);
        free(dw->tmp_name);
        free(dw);
        return r;
}

static ssize_t blob_load(void *userdata, const dd_digest *d, uint8_t *buf, size_t size)
{
        obj_pool *op = userdata;
        char key[CHUNK_KEY_MAX];
        _cleanup_free_ char *err = NULL;
        size_t got = 0;
        int r;

        chunk_key(op, d, key);
        r = sp_s3_get(op->s3, key, buf, size, &got, &err);
        if (r == -ENOENT) {
                free(TAKE_PTR(err));
                return -ENODATA;
        }
        if (r == -EFBIG) {
                free(TAKE_PTR(err));
                return -EBADMSG;
        }
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        return (ssize_t)got;
}

typedef struct put_req {
        obj_disk_writer *dw;
        uint8_t *data;
} put_req;

static void put_done(void *userdata, int r, const char *err)
{
        put_req *q = userdata;
        obj_disk_writer *dw = q->dw;

        free(q->data);
        free(q);
        if (r < 0) {
                /* The digest was claimed as stored: forget every claim of
                 * this session (the cache file keeps what earlier sessions
                 * saw). */
                obj_pool *op = pool_of(dw->base.w->pool);

                pthread_mutex_lock(&op->lock);
                dd_dset_free(op->known);
                op->known = dd_dset_new();
                op->known_loaded = false;
                pthread_mutex_unlock(&op->lock);
        }
        pthread_mutex_lock(&dw->lock);
        if (r < 0 && dw->error == 0) {
                dw->error = r;
                dw->error_msg = err ? strdup(err) : NULL;
        }
        dw->in_flight--;
        pthread_cond_broadcast(&dw->cond);
        pthread_mutex_unlock(&dw->lock);
}

static int obj_chunk_prepare(sp_disk_writer *base, sp_chunk *c)
{
        obj_disk_writer *dw = container_of(base, obj_disk_writer, base);
        obj_pool *op = pool_of(base->w->pool);
        sp_chunk_parent parent = { .idx = dw->x.parent,
                                   .count = dw->x.parent_count,
                                   .chunk_size = base->chunk_size,
                                   .load = blob_load,
                                   .userdata = op };
        sp_chunk_carry carry;
        char key[CHUNK_KEY_MAX];
        bool put_it;
        put_req *q;
        ssize_t n;
        int r;

        r = sp_chunk_digest(c, &parent, &carry);
        if (r < 0)
                return r;
        if (dd_digest_is_null(&c->digest))
                return 0; /* a zero chunk is never stored */
        r = chunk_trusted(op, &c->digest, &put_it);
        if (r < 0)
                return r;
        if (!put_it)
                return 0; /* stored already: dedup hit */
        n = sp_chunk_encode(c, base->w->pool->opts.compression, &carry);
        if (n < 0)
                return (int)n;
        /* The put outlives this call: it gets its own copy of the blob. */
        q = malloc(sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->dw = dw;
        q->data = malloc((size_t)n);
        if (!q->data) {
                free(q);
                return -ENOMEM;
        }
        memcpy(q->data, c->scratch, (size_t)n);
        chunk_key(op, &c->digest, key);
        pthread_mutex_lock(&dw->lock);
        dw->in_flight++;
        r = dw->error;
        pthread_mutex_unlock(&dw->lock);
        if (r == 0)
                r = sp_s3_put_async(op->s3, key, q->data, (size_t)n, put_done, q);
        if (r < 0) {
                put_done(q, 0, NULL);
                return r;
        }
        c->bytes_new = c->length;
        c->bytes_stored = (uint64_t)n;
        return 0;
}

static int obj_chunk_commit(sp_disk_writer *base, sp_chunk *c)
{
        return sp_disk_index_commit(&container_of(base, obj_disk_writer, base)->x, c);
}

/* An inherited chunk is referenced by the parent's index: nothing to do
 * for it (see DESIGN). */
static int obj_chunk_skip(sp_disk_writer *base, uint64_t index)
{
        obj_disk_writer *dw = container_of(base, obj_disk_writer, base);
        dd_digest d;
        int r = sp_disk_index_inherited(&dw->x, index, &d);

        return r < 0 ? r : sp_disk_index_skip(&dw->x, base, index, &d);
}

/* Waits for every put of the disk; its first error. */
static int wait_puts(obj_disk_writer *dw)
{
        int r;

        pthread_mutex_lock(&dw->lock);
        while (dw->in_flight > 0)
                pthread_cond_wait(&dw->cond, &dw->lock);
        r = dw->error;
        pthread_mutex_unlock(&dw->lock);
        if (r < 0 && dw->error_msg)
                log_error("%s", dw->error_msg);
        return r;
}

static void disk_writer_free(obj_disk_writer *dw)
{
        (void)wait_puts(dw);
        if (dw->x.iw)
                dd_index_writer_free(dw->x.iw);
        if (dw->tmp_name)
                (void)unlinkat(dw->base.w->pool->dirfd, dw->tmp_name, 0);
        pthread_cond_destroy(&dw->cond);
        pthread_mutex_destroy(&dw->lock);
        free(dw->error_msg);
        free(dw->name);
        free(dw->tmp_name);
        dd_index_free(dw->x.parent);
        free(dw);
}

/* Puts a local file's bytes under key. */
static int put_file(obj_pool *op, int dirfd, const char *name, const char *key)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *err = NULL;
        struct stat st;
        void *map;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return -errno;
        r = sp_s3_put(op->s3, key, map, (size_t)st.st_size, &err);
        munmap(map, (size_t)st.st_size);
        return r < 0 ? s3_fail(r, TAKE_PTR(err)) : 0;
}

static int obj_disk_end(sp_disk_writer *base)
{
        obj_disk_writer *dw = container_of(base, obj_disk_writer, base);
        obj_writer *w = container_of(base->w, obj_writer, base);
        obj_pool *op = pool_of(base->w->pool);
        _cleanup_free_ char *key = NULL;
        dd_index_header h;
        int r;

        /* The index goes up only once the store holds every chunk it names. */
        r = wait_puts(dw);
        if (r >= 0)
                r = dd_index_writer_finish(dw->x.iw, false, &h);
        if (r >= 0)
                r = asprintf(&key, "%s%s%s" DD_INDEX_SUFFIX, op->prefix, w->dir, dw->name) < 0 ? -ENOMEM : 0;
        if (r >= 0)
                r = put_file(op, base->w->pool->dirfd, dw->tmp_name, key);
        if (r >= 0)
                r = sp_manifest_add_index_disk(base, dw->name, &h.checksum, dw->x.bytes_new, dw->x.bytes_data);
        disk_writer_free(dw);
        return r;
}

static void obj_disk_abort(sp_disk_writer *base)
{
        disk_writer_free(container_of(base, obj_disk_writer, base));
}

/* Deletes every object under the restore point's folder. */
static int delete_dir(obj_pool *op, const char *dir)
{
        _cleanup_free_ char *prefix = NULL, *err = NULL;
        sp_s3_object *objs = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&prefix, "%s%s", op->prefix, dir) < 0)
                return -ENOMEM;
        r = sp_s3_list(op->s3, prefix, &objs, &n, &err);
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = sp_s3_delete(op->s3, objs[i].key, &err);
                if (r < 0)
                        r = s3_fail(r, TAKE_PTR(err));
        }
        sp_s3_objects_free(objs, n);
        return r;
}

static void drop_marker(obj_pool *op, obj_writer *w)
{
        _cleanup_free_ char *key = key_of(op, w->marker), *err = NULL;

        if (key && sp_s3_delete(op->s3, key, &err) < 0)
                (void)s3_fail(-EIO, TAKE_PTR(err));
}

static int obj_commit(sp_writer *base, dd_manifest **ret)
{
        obj_writer *w = container_of(base, obj_writer, base);
        obj_pool *op = pool_of(base->pool);
        _cleanup_free_ char *text = NULL, *key = NULL, *err = NULL;
        int r;

        base->m->time_end = time(NULL);
        r = dd_manifest_format(base->m, &text);
        if (r >= 0)
                r = asprintf(&key, "%s%s" DD_MANIFEST_NAME, op->prefix, w->dir) < 0 ? -ENOMEM : 0;
        if (r >= 0) {
                r = sp_s3_put(op->s3, key, text, strlen(text), &err);
                if (r < 0)
                        r = s3_fail(r, TAKE_PTR(err));
        }
        if (r < 0)
                (void)delete_dir(op, w->dir);
        drop_marker(op, w);
        save_known(op);
        if (r >= 0 && ret)
                *ret = TAKE_PTR(base->m);
        writer_free(w);
        return r;
}

static void obj_abort(sp_writer *base)
{
        obj_writer *w = container_of(base, obj_writer, base);
        obj_pool *op = pool_of(base->pool);

        (void)delete_dir(op, w->dir);
        drop_marker(op, w);
        writer_free(w);
}

/* ---- reading ---- */

static int obj_reader_open(sp_pool *p, const dd_manifest *m, const char *disk, sp_disk_reader **ret)
{
        obj_pool *op = pool_of(p);
        const dd_manifest_disk *md = dd_manifest_find_disk(m, disk);
        _cleanup_free_ char *key = NULL;
        dd_index *idx;
        int r;

        if (!md)
                return -ENOENT;
        r = index_key(op, m, md, &key);
        if (r >= 0)
                r = fetch_index(op, key, md, &idx);
        return r < 0 ? r : sp_index_reader_new(p, md, idx, ret);
}

static int obj_reader_read(sp_disk_reader *base, sp_chunk *c, bool *ret_zero)
{
        int r = sp_index_reader_lookup(base, c, ret_zero);
        ssize_t n;

        if (r <= 0)
                return r;
        n = blob_load(pool_of(base->pool), &c->digest, c->scratch, c->scratch_size);
        if (n < 0)
                return (int)n;
        return sp_chunk_decode(c, &c->digest, c->scratch, (size_t)n, c->data, c->length);
}

/* ---- marking: every digest the committed restore points reference ---- */

typedef struct mark_ctx {
        dd_dset *refs;
        sp_problem_fn problem;
        void *userdata;
        uint64_t problems;
} mark_ctx;

static int mark_rp(obj_pool *op, const dd_manifest *m, dd_dset *refs, sp_problem_fn problem, void *userdata)
{
        for (size_t i = 0; i < m->n_disks; i++) {
                const dd_manifest_disk *md = &m->disks[i];
                _cleanup_free_ char *key = NULL;
                dd_index *idx = NULL;
                uint64_t count;
                int r = index_key(op, m, md, &key);

                if (r >= 0)
                        r = fetch_index(op, key, md, &idx);
                if (r < 0) {
                        char detail[256];

                        snprintf(detail, sizeof(detail), "restore point %s, disk %s: its index: %s", m->id, md->name,
                                 strerror(-r));
                        report(problem, userdata, "index-corrupt", key ?: md->index, detail);
                        return r;
                }
                count = dd_index_get_header(idx)->chunk_count;
                for (uint64_t c = 0; c < count && r >= 0; c++) {
                        dd_digest d;

                        r = dd_index_get(idx, c, &d);
                        if (r >= 0 && !dd_digest_is_null(&d))
                                r = dd_dset_add(refs, &d);
                }
                dd_index_free(idx);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- verify ---- */

struct verify_job {
        obj_pool *op;
        dd_digest *digests;
        size_t n;
        atomic_size_t next;
        atomic_uint_fast64_t bytes, done;
        int *status;
        const sp_verify_opts *o;
};

static void *verify_thread(void *userdata)
{
        struct verify_job *job = userdata;
        _cleanup_(dd_blob_ctx_freep) dd_blob_ctx *ctx = dd_blob_ctx_new();
        size_t bound = dd_blob_bound(SP_CHUNK_SIZE_MAX);
        _cleanup_free_ uint8_t *blob = malloc(bound), *plain = malloc(SP_CHUNK_SIZE_MAX);

        for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
                ssize_t n;

                if (!ctx || !blob || !plain) {
                        job->status[i] = -ENOMEM;
                        continue;
                }
                n = blob_load(job->op, &job->digests[i], blob, bound);
                if (n >= 0) {
                        ssize_t k = dd_blob_decode(ctx, blob, (size_t)n, plain, SP_CHUNK_SIZE_MAX, &job->digests[i]);

                        n = k < 0 ? (k == -ENOBUFS ? -EBADMSG : k) : n;
                        if (k >= 0)
                                atomic_fetch_add(&job->bytes, (uint64_t)k);
                }
                job->status[i] = n < 0 ? (int)n : 0;
                atomic_fetch_add(&job->done, 1);
        }
        return NULL;
}

static bool selected(const sp_verify_opts *o, const char *id)
{
        if (!o->ids)
                return true;
        for (size_t i = 0; i < o->n_ids; i++)
                if (streq(o->ids[i], id))
                        return true;
        return false;
}

static int obj_verify(sp_pool *p, const sp_verify_opts *o, sp_verify_result *ret)
{
        obj_pool *op = pool_of(p);
        _cleanup_(dd_dset_freep) dd_dset *refs = dd_dset_new();
        struct verify_job job = { .op = op, .o = o };
        dd_manifest **v = NULL;
        size_t n = 0, found = 0;
        pthread_t threads[64];
        unsigned nt = MAX(1u, MIN(o->threads ?: 8u, 64u)), started = 0;
        int r;

        *ret = (sp_verify_result){ 0 };
        if (!refs)
                return -ENOMEM;
        r = obj_list(p, NULL, o->problem, o->userdata, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (!selected(o, v[i]->id))
                        continue;
                found++;
                ret->restore_points++;
                if (mark_rp(op, v[i], refs, o->problem, o->userdata) < 0) {
                        ret->problems++;
                        ret->broken_restore_points++;
                }
        }
        if (o->ids && found < o->n_ids) {
                sp_manifests_free(v, n);
                return -ENOENT;
        }
        r = dd_dset_to_array(refs, &job.digests, &job.n);
        if (r < 0)
                goto out;
        if (o->sample_percent > 0 && o->sample_percent < 100) {
                size_t keep = 0;

                for (size_t i = 0; i < job.n; i++)
                        if ((uint64_t)random() % 100 < o->sample_percent)
                                job.digests[keep++] = job.digests[i];
                job.n = keep;
        }
        job.status = calloc(job.n + 1, sizeof(*job.status));
        if (!job.status) {
                r = -ENOMEM;
                goto out;
        }
        for (; started < nt; started++)
                if (pthread_create(&threads[started], NULL, verify_thread, &job) != 0)
                        break;
        if (started == 0)
                verify_thread(&job);
        while (started > 0 && atomic_load(&job.done) < job.n) {
                if (o->progress)
                        o->progress(o->userdata, atomic_load(&job.done), job.n);
                usleep(100 * 1000);
        }
        for (unsigned t = 0; t < started; t++)
                pthread_join(threads[t], NULL);
        if (o->progress)
                o->progress(o->userdata, job.n, job.n);
        ret->chunks_checked = job.n;
        ret->bytes_checked = atomic_load(&job.bytes);
        for (size_t i = 0; i < job.n; i++) {
                char hex[DD_DIGEST_HEX_SIZE + 1];
                const char *ids[64];
                size_t n_ids = 0;

                if (job.status[i] == 0)
                        continue;
                dd_digest_to_hex(&job.digests[i], hex);
                hex[DD_DIGEST_HEX_SIZE] = '\0';
                /* Which restore points it breaks: those whose indexes name it. */
                for (size_t k = 0; k < n && n_ids < ELEMENTSOF(ids); k++) {
                        _cleanup_(dd_dset_freep) dd_dset *one = dd_dset_new();

                        if (selected(o, v[k]->id) && one && mark_rp(op, v[k], one, NULL, NULL) >= 0 &&
                            dd_dset_contains(one, &job.digests[i]))
                                ids[n_ids++] = v[k]->id;
                }
                if (o->problem) {
                        sp_problem pr = { .kind = job.status[i] == -ENODATA ? "chunk-missing" : "chunk-corrupt",
                                          .object = hex,
                                          .detail = strerror(-job.status[i]),
                                          .restore_points = ids,
                                          .n_restore_points = n_ids };

                        o->problem(o->userdata, &pr);
                }
                ret->problems++;
                ret->broken_restore_points += n_ids;
        }
        r = (int)MIN(ret->problems, (uint64_t)INT32_MAX);
out:
        free(job.status);
        free(job.digests);
        sp_manifests_free(v, n);
        return r;
}

/* ---- gc ---- */

/* The store's time now: the LastModified of an object put just now. */
static int store_now(obj_pool *op, const char *what, time_t *ret)
{
        _cleanup_free_ char *key = key_of(op, what), *err = NULL;
        char body[64];
        int r;

        if (!key)
                return -ENOMEM;
        snprintf(body, sizeof(body), "{\"pid\": %d}", (int)getpid());
        r = sp_s3_put(op->s3, key, body, strlen(body), &err);
        if (r >= 0)
                r = sp_s3_head(op->s3, key, NULL, ret, &err);
        return r < 0 ? s3_fail(r, TAKE_PTR(err)) : 0;
}

static int write_pending(obj_pool *op, uint64_t generation, time_t t, dd_digest *v, size_t n)
{
        _cleanup_free_ char *key = key_of(op, GC_PENDING), *text = NULL, *err = NULL;
        json_t *j =
                json_pack("{s:I, s:I, s:[]}", "generation", (json_int_t)generation, "time", (json_int_t)t, "chunks");
        json_t *a = json_object_get(j, "chunks");
        int r;

        for (size_t i = 0; a && i < n; i++) {
                char hex[DD_DIGEST_HEX_SIZE + 1];

                dd_digest_to_hex(&v[i], hex);
                hex[DD_DIGEST_HEX_SIZE] = '\0';
                json_array_append_new(a, json_string(hex));
        }
        text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!text || !key)
                return -ENOMEM;
        r = sp_s3_put(op->s3, key, text, strlen(text), &err);
        return r < 0 ? s3_fail(r, TAKE_PTR(err)) : 0;
}

/* The digest a chunk key names, or -EINVAL. */
static int digest_of_key(obj_pool *op, const char *key, dd_digest *ret)
{
        const char *slash = strrchr(key, '/');

        if (strncmp(key, op->prefix, strlen(op->prefix)) != 0 || !slash)
                return -EINVAL;
        return dd_digest_from_hex(slash + 1, ret);
}

static int obj_gc(sp_pool *p, const sp_gc_opts *o, sp_gc_result *ret)
{
        obj_pool *op = pool_of(p);
        _cleanup_(dd_dset_freep) dd_dset *refs = dd_dset_new();
        _cleanup_free_ char *wprefix = key_of(op, "writers/"), *cprefix = key_of(op, "chunks/"),
                            *vprefix = key_of(op, "vms/"), *err = NULL;
        sp_s3_object *writers = NULL, *chunks = NULL, *rps = NULL;
        size_t n_writers = 0, n_chunks = 0, n_rps = 0, n_new = 0;
        dd_digest *fresh = NULL;
        dd_manifest **v = NULL;
        size_t n = 0;
        pending_list pl = { 0 };
        bool round_two = false;
        time_t now = 0, oldest_writer = 0;
        int r;

        *ret = (sp_gc_result){ 0 };
        if (!refs || !wprefix || !cprefix || !vprefix)
                return -ENOMEM;
        r = store_now(op, "gc/clock", &now);
        if (r >= 0)
                r = read_pending(op, &pl);
        if (r >= 0)
                r = sp_s3_list(op->s3, wprefix, &writers, &n_writers, &err);
        if (r < 0)
                goto out_err;
        for (size_t i = 0; i < n_writers; i++) {
                if (now - writers[i].mtime > WRITER_MAX_AGE) {
                        /* Its writer died long ago: its marker holds nothing back. */
                        if (!o->dry_run)
                                (void)sp_s3_delete(op->s3, writers[i].key, NULL);
                        continue;
                }
                if (!oldest_writer || writers[i].mtime < oldest_writer)
                        oldest_writer = writers[i].mtime;
        }
        /* Mark from every committed restore point (an index that cannot be
         * read stops gc: it could not know what that one needs). */
        r = obj_list(p, NULL, NULL, NULL, &v, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = mark_rp(op, v[i], refs, NULL, NULL);
        if (r < 0)
                goto out;
        ret->chunks_marked = dd_dset_size(refs);
        /* Leftovers of writers that died: folders without a manifest, no
         * marker of theirs, older than the grace period. */
        r = sp_s3_list(op->s3, vprefix, &rps, &n_rps, &err);
        if (r < 0)
                goto out_err;
        for (size_t i = 0; i < n_rps; i++) {
                const char *base = strrchr(rps[i].key, '/');
                bool committed = false, running = false;
                size_t dir_len = base ? (size_t)(base - rps[i].key) + 1 : 0;
                const char *id = NULL;

                if (!base || ends_with(rps[i].key, "/" DD_MANIFEST_NAME))
                        continue;
                for (size_t k = 0; k < n_rps; k++)
                        committed = committed || (strncmp(rps[k].key, rps[i].key, dir_len) == 0 &&
                                                  streq(rps[k].key + dir_len, DD_MANIFEST_NAME));
                /* The id is the folder's last component. */
                for (const char *s = base - 1; s > rps[i].key; s--)
                        if (*s == '/') {
                                id = s + 1;
                                break;
                        }
                for (size_t k = 0; id && k < n_writers; k++) {
                        const char *w = strrchr(writers[k].key, '/');

                        running = running || (w && strncmp(w + 1, id, (size_t)(base - id)) == 0);
                }
                if (committed || running || now - rps[i].mtime < (time_t)o->grace_seconds)
                        continue;
                ret->partial_removed++;
                if (!o->dry_run)
                        (void)sp_s3_delete(op->s3, rps[i].key, NULL);
        }
        r = sp_s3_list(op->s3, cprefix, &chunks, &n_chunks, &err);
        if (r < 0)
                goto out_err;
        /* Round two: the last round's list, once no writer that began before it runs. */
        round_two = pl.time > 0 && (!oldest_writer || oldest_writer > pl.time);
        if (round_two) {
                _cleanup_(dd_dset_freep) dd_dset *listed = dd_dset_new();

                if (!listed) {
                        r = -ENOMEM;
                        goto out;
                }
                for (size_t i = 0; i < pl.n; i++)
                        (void)dd_dset_add(listed, &pl.v[i]);
                for (size_t i = 0; i < n_chunks; i++) {
                        dd_digest d;

                        if (digest_of_key(op, chunks[i].key, &d) < 0 || !dd_dset_contains(listed, &d) ||
                            dd_dset_contains(refs, &d) || chunks[i].mtime >= pl.time)
                                continue;
                        ret->chunks_removed++;
                        ret->bytes_removed += chunks[i].size;
                        if (!o->dry_run) {
                                r = sp_s3_delete(op->s3, chunks[i].key, &err);
                                if (r < 0)
                                        goto out_err;
                                chunks[i].size = 0;
                                free(chunks[i].key);
                                chunks[i].key = NULL;
                        }
                }
        }
        /* Round one: what is unreferenced and older than the grace period now. */
        fresh = calloc(n_chunks + 1, sizeof(*fresh));
        if (!fresh) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_chunks; i++) {
                dd_digest d;

                if (!chunks[i].key || digest_of_key(op, chunks[i].key, &d) < 0)
                        continue;
                /* Strictly older: LastModified counts whole seconds. */
                if (dd_dset_contains(refs, &d) || chunks[i].mtime >= now - (time_t)o->grace_seconds) {
                        ret->chunks_kept++;
                        continue;
                }
                fresh[n_new++] = d;
        }
        ret->chunks_kept += n_new;
        if (!o->dry_run && (round_two || pl.time == 0)) {
                pending_list again;

                /* One gc at a time per pool (see DESIGN): a list that changed
                 * meanwhile is another gc's, and stays. */
                r = read_pending(op, &again);
                if (r >= 0 && again.time != pl.time) {
                        log_error("gc: another gc of this pool ran at the same time; this one stops");
                        r = -EBUSY;
                }
                free(again.v);
                if (r >= 0)
                        r = write_pending(op, pl.generation + (round_two && ret->chunks_removed > 0), now, fresh,
                                          n_new);
        }
        goto out;
out_err:
        r = s3_fail(r, TAKE_PTR(err));
out:
        free(fresh);
        free(pl.v);
        sp_manifests_free(v, n);
        sp_s3_objects_free(writers, n_writers);
        sp_s3_objects_free(chunks, n_chunks);
        sp_s3_objects_free(rps, n_rps);
        return r < 0 ? r : 0;
}

/* ---- remove, stats ---- */

static int obj_remove(sp_pool *p, const dd_manifest *m)
{
        obj_pool *op = pool_of(p);
        _cleanup_free_ char *dir = NULL, *key = NULL, *err = NULL;
        int r = rp_dir(m, &dir);

        if (r < 0)
                return r;
        /* The manifest first: from then on the restore point does not exist. */
        if (asprintf(&key, "%s%s" DD_MANIFEST_NAME, op->prefix, dir) < 0)
                return -ENOMEM;
        r = sp_s3_delete(op->s3, key, &err);
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        return delete_dir(op, dir);
}

static int obj_stats(sp_pool *p, sp_stats *ret)
{
        obj_pool *op = pool_of(p);
        _cleanup_free_ char *cprefix = key_of(op, "chunks/"), *err = NULL;
        sp_s3_object *chunks = NULL;
        dd_manifest **v = NULL;
        size_t n = 0, n_chunks = 0;
        int r;

        *ret = (sp_stats){ 0 };
        if (!cprefix)
                return -ENOMEM;
        r = obj_list(p, NULL, NULL, NULL, &v, &n);
        if (r < 0)
                return r;
        ret->restore_points = n;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < v[i]->n_disks; k++) {
                        ret->logical_bytes += v[i]->disks[k].size;
                        ret->data_bytes += v[i]->disks[k].bytes_data;
                        ret->unique_bytes += v[i]->disks[k].bytes_new;
                }
        sp_manifests_free(v, n);
        r = sp_s3_list(op->s3, cprefix, &chunks, &n_chunks, &err);
        if (r < 0)
                return s3_fail(r, TAKE_PTR(err));
        ret->chunks = n_chunks;
        for (size_t i = 0; i < n_chunks; i++)
                ret->stored_bytes += chunks[i].size;
        sp_s3_objects_free(chunks, n_chunks);
        return 0;
}

const sp_driver sp_driver_object = {
        .name = "object",
        .caps = SP_CAP_RANDOM_READ | SP_CAP_DEDUP,
        .create = obj_create,
        .open = obj_open,
        .close = obj_close,
        .list = obj_list,
        .begin = obj_begin,
        .disk_begin = obj_disk_begin,
        .chunk_prepare = obj_chunk_prepare,
        .chunk_commit = obj_chunk_commit,
        .chunk_skip = obj_chunk_skip,
        .disk_end = obj_disk_end,
        .disk_abort = obj_disk_abort,
        .commit = obj_commit,
        .abort = obj_abort,
        .reader_open = obj_reader_open,
        .reader_read = obj_reader_read,
        .reader_close = sp_index_reader_free,
        .verify = obj_verify,
        .gc = obj_gc,
        .remove = obj_remove,
        .stats = obj_stats,
};
