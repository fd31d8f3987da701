/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * s3.h -- a client of one bucket of an S3-compatible object store (Ceph RGW,
 * OpenStack Swift's s3api, MinIO, AWS S3), for the object pool
 * (storagepool/object.c).
 *
 * DESIGN: libcurl does HTTP, TLS and the AWS Signature V4 (CURLOPT_AWS_SIGV4)
 * with path-style URLs (ENDPOINT/BUCKET/KEY). Every request carries
 * x-amz-content-sha256 with the payload's real SHA-256 (the store checks the
 * body), and query strings are built already encoded and sorted (curl 7.88's
 * signer signs them as given). One I/O thread per client runs a curl multi
 * handle with up to max_requests transfers at once over kept-alive
 * connections; the calls below hand it a request and wait (the blocking
 * ones) or return at once and call back from the I/O thread (the _async
 * ones, which wait only while max_requests are already in flight). A
 * request that fails with a 5xx answer, a 429, or a connection error is
 * retried up to `retries` times with exponential backoff (100 ms doubling,
 * capped at 5 s, with jitter); 4xx answers are not retried.
 *
 * Errors: 0 or -errno, with *err (when err is not NULL; caller frees) set to
 * one line naming the method, the key and what the store said:
 * "S3 PUT chunks/ab/cd/abcd...: 403 SignatureDoesNotMatch: The request
 * signature we calculated does not match ...".
 *   -ENOENT   404 (NoSuchKey, NoSuchBucket)
 *   -EKEYREJECTED  403 SignatureDoesNotMatch or InvalidAccessKeyId: the keys are wrong
 *   -EACCES   403 otherwise (AccessDenied)
 *   -EINVAL   other 4xx
 *   -EFBIG    a get into a buffer too small for the object
 *   -EIO      5xx, or a connection error, after the retries
 *   -ENOMEM
 */
#ifndef SP_S3_H
#define SP_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SP_S3_MAX_REQUESTS_DEFAULT 16
#define SP_S3_RETRIES_DEFAULT 6
#define SP_S3_PART_SIZE_DEFAULT (16u << 20) /* objects larger than this go up in parts */
#define SP_S3_PART_SIZE_MIN (5u << 20)      /* S3's smallest part but the last */

typedef struct sp_s3 sp_s3;

typedef struct sp_s3_opts {
        const char *endpoint; /* http://HOST[:PORT] or https://... (no path) */
        const char *bucket;
        const char *region;     /* NULL: us-east-1 */
        const char *access_key; /* may contain ':' (Swift's "account:user") */
        const char *secret_key;
        bool insecure;         /* do not verify the store's TLS certificate */
        unsigned max_requests; /* transfers at once; 0: SP_S3_MAX_REQUESTS_DEFAULT */
        unsigned retries;      /* 0: SP_S3_RETRIES_DEFAULT */
        uint64_t part_size;    /* 0: SP_S3_PART_SIZE_DEFAULT; at least SP_S3_PART_SIZE_MIN */
        uint64_t timeout_ms;   /* per request attempt; 0: 120 s */
        uint64_t rate;         /* bytes/s over all transfers, both ways; 0: unlimited */
} sp_s3_opts;

/* Starts the client's I/O thread. The strings are copied. */
int sp_s3_new(const sp_s3_opts *o, sp_s3 **ret);
/* Waits for the requests in flight (and their done calls), then stops the
 * thread. */
void sp_s3_free(sp_s3 *s);

/* Creates the bucket; one that exists and is ours is fine (one that exists
 * and that we may not read: -EEXIST). */
int sp_s3_bucket_create(sp_s3 *s, char **err);

/* Stores len bytes under key (in parts when len > part_size). */
int sp_s3_put(sp_s3 *s, const char *key, const void *data, size_t len, char **err);
/* The same, without waiting: data must stay valid until done is called,
 * on the I/O thread, with 0 or -errno and the error line (NULL on success;
 * owned by the client). Returns 0 once queued (it may wait for a free
 * request slot first), or -errno and then done is not called. The body's
 * SHA-256 is computed before it returns, so data must not change after.
 * done may call sp_s3_put_async again (it then does not wait for a slot),
 * but not the blocking calls (they return -EDEADLK there). */
typedef void (*sp_s3_done_fn)(void *userdata, int r, const char *err);
int sp_s3_put_async(sp_s3 *s, const char *key, const void *data, size_t len, sp_s3_done_fn done, void *userdata);

/* Reads the object into buf: *got its length. -EFBIG when it is larger than
 * size (nothing else is certain about buf then). */
int sp_s3_get(sp_s3 *s, const char *key, void *buf, size_t size, size_t *got, char **err);
/* Reads the object into a new buffer (*ret, *ret_len; caller frees); for
 * objects of unknown size (manifests, pool.json), at most max bytes. */
int sp_s3_get_alloc(sp_s3 *s, const char *key, size_t max, uint8_t **ret, size_t *ret_len, char **err);

/* Whether the object exists: 0 with its size and LastModified (either may
 * be NULL), or -ENOENT. */
int sp_s3_head(sp_s3 *s, const char *key, uint64_t *size, time_t *mtime, char **err);

/* Removes the object; one that is not there is fine. */
int sp_s3_delete(sp_s3 *s, const char *key, char **err);

typedef struct sp_s3_object {
        char *key;
        uint64_t size;
        time_t mtime; /* LastModified, the store's clock */
} sp_s3_object;

/* Every object whose key starts with prefix (ListObjectsV2, all pages),
 * in the store's (lexicographic) order. */
int sp_s3_list(sp_s3 *s, const char *prefix, sp_s3_object **ret, size_t *ret_n, char **err);
void sp_s3_objects_free(sp_s3_object *v, size_t n);

/* Requests made, retried, and bytes sent and received so far. */
typedef struct sp_s3_stats {
        uint64_t requests, retries, bytes_up, bytes_down;
} sp_s3_stats;
void sp_s3_get_stats(sp_s3 *s, sp_s3_stats *ret);

#endif
