/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * s3.c -- the S3 client of the object pool (see s3.h for the design).
 *
 * Every HTTP exchange is a request (s3_req). The calling threads build
 * them (URL, headers, the body's SHA-256, which is the expensive part) and
 * append them to the client's queue; the I/O thread moves queued requests
 * into its curl multi handle while fewer than max_requests transfers run,
 * retries the ones that failed in a retryable way after a backoff (they
 * wait in the `delayed` list), and ends each one by calling its complete
 * function on the I/O thread, without the lock held. A blocking call waits
 * for its request's `done`; an asynchronous put's complete function calls
 * the caller back and frees the request.
 *
 * A multipart upload is a small state machine (s3_mpu) driven by the
 * complete functions of its requests: initiate, then every part at once
 * (the queue spreads them over the free transfer slots), then complete, or
 * abort when a part failed. Its part hashes are computed up front by the
 * caller's thread, so the I/O thread never hashes.
 *
 * `outstanding` counts the calls (not the requests) that have not ended:
 * sp_s3_put_async waits while it is max_requests or more, and sp_s3_free
 * waits until it is 0.
 */
#include "storagepool/s3.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

#include "daemon/util.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define ERROR_BODY_MAX (64u << 10) /* bytes of an error answer kept for its message */
#define XML_BODY_MAX (64u << 20)   /* the largest listing page or upload answer we read */
#define MAX_PARTS 10000            /* S3's limit of parts per upload */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct s3_req s3_req;
typedef void (*req_complete_fn)(s3_req *rq);

/* Where a 2xx answer's body goes; error bodies always go to ebuf. */
typedef enum sink {
        SINK_NONE,  /* dropped */
        SINK_FIXED, /* the caller's buffer: buf, cap */
        SINK_ALLOC, /* a growing buffer of at most max bytes */
} sink;

struct s3_req {
        sp_s3 *s;
        s3_req *next; /* in the queue or the delayed list */
        const char *method;
        char *url;
        char *what; /* the key (or bucket) the error line names */
        const uint8_t *body;
        size_t body_len, body_off;
        char *body_own; /* body, when the request owns it */
        char sha[65];
        const char *content_type;

        sink sink;
        uint8_t *buf;
        size_t cap, len, max;
        bool too_big;
        char *ebuf;
        size_t elen;

        /* The answer of the last attempt. */
        CURL *easy;
        struct curl_slist *hdrs;
        char errbuf[CURL_ERROR_SIZE];
        CURLcode cc;
        long status;
        char reason[64];
        char *etag;
        curl_off_t content_length;
        time_t mtime;

        unsigned attempts;
        uint64_t retry_at; /* vb_now_ns() of its next attempt, in the delayed list */
        const int *cancel; /* skipped (-ECANCELED) once *cancel < 0 */

        int r;
        char *err;
        bool done; /* for a blocking caller, under s->lock */
        req_complete_fn complete;
        void *ctx;
        size_t part; /* a multipart upload's part index */
};

struct sp_s3 {
        char *endpoint, *bucket, *ebucket, *region, *access_key, *secret_key, *sigv4;
        bool insecure;
        unsigned max_requests, retries;
        uint64_t part_size, timeout_ms, rate;

        pthread_mutex_t lock;
        pthread_cond_t cond; /* a request or call ended */
        s3_req *queue, *queue_tail;
        unsigned outstanding;
        bool stopping;
        sp_s3_stats stats;

        /* The I/O thread's own. */
        pthread_t thread;
        CURLM *multi;
        s3_req *delayed;
        unsigned running;
        unsigned seed;
};

typedef struct s3_mpu {
        sp_s3 *s;
        char *key, *path; /* the key, and BUCKET/KEY encoded */
        const uint8_t *data;
        size_t len, part_size, n_parts, left;
        char (*sha)[65];
        char **etags;
        char *upload_id;
        int r;
        char *err;
        sp_s3_done_fn done; /* NULL: a blocking caller waits for `finished` */
        void *userdata;
        bool finished;
} s3_mpu;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result;

static void global_init(void)
{
        global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
        xmlInitParser();
}

/* ---- strings ---------------------------------------------------------- */

/* S3's URI encoding: unreserved characters as they are, '/' too when
 * keep_slash (a key in a path), everything else as %XX. */
static char *uri_encode(const char *in, bool keep_slash)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(in);
        char *out = malloc(3 * n + 1), *p = out;

        if (!out)
                return NULL;
        for (const unsigned char *c = (const unsigned char *)in; *c; c++) {
                if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                    *c == '.' || *c == '_' || *c == '~' || (keep_slash && *c == '/')) {
                        *p++ = (char)*c;
                } else {
                        *p++ = '%';
                        *p++ = hex[*c >> 4];
                        *p++ = hex[*c & 15];
                }
        }
        *p = 0;
        return out;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char md[32];
        unsigned n = 0;

        if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) {
                /* Only on a broken libcrypto; the store then refuses the body. */
                memset(out, '0', 64);
                out[64] = 0;
                return;
        }
        for (int i = 0; i < 32; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 15];
        }
        out[64] = 0;
}

/* "2009-10-12T17:50:30.000Z" -> seconds since the epoch (UTC); 0 when it
 * is not such a date. */
static time_t parse_iso8601(const char *t)
{
        struct tm tm = { 0 };
        int n = 0;

        if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                   &tm.tm_sec, &n) != 6 ||
            n == 0)
                return 0;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return timegm(&tm);
}

/* XML element content: & < > escaped. */
static int xml_append_escaped(char **buf, size_t *len, size_t *cap, const char *text)
{
        for (const char *c = text; *c; c++) {
                const char *rep = *c == '&' ? "&amp;" : *c == '<' ? "&lt;" : *c == '>' ? "&gt;" : NULL;
                size_t k = rep ? strlen(rep) : 1;

                if (*len + k + 1 > *cap) {
                        size_t ncap = MAX(*cap * 2, *len + k + 256);
                        char *n = realloc(*buf, ncap);
                        if (!n)
                                return -ENOMEM;
                        *buf = n;
                        *cap = ncap;
                }
                memcpy(*buf + *len, rep ? rep : c, k);
                *len += k;
                (*buf)[*len] = 0;
        }
        return 0;
}

static int xml_append(char **buf, size_t *len, size_t *cap, const char *text)
{
        size_t k = strlen(text);

        if (*len + k + 1 > *cap) {
                size_t ncap = MAX(*cap * 2, *len + k + 256);
                char *n = realloc(*buf, ncap);
                if (!n)
                        return -ENOMEM;
                *buf = n;
                *cap = ncap;
        }
        memcpy(*buf + *len, text, k + 1);
        *len += k;
        return 0;
}

/* ---- XML answers ------------------------------------------------------ */

static xmlDocPtr xml_parse(const void *data, size_t len)
{
        if (!data || len == 0 || len > INT32_MAX)
                return NULL;
        return xmlReadMemory(data, (int)len, "s3.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static bool node_is(xmlNodePtr n, const char *name)
{
        return n->type == XML_ELEMENT_NODE && streq((const char *)n->name, name);
}

/* The text of root's first child element called name (caller frees). */
static char *xml_child_text(xmlNodePtr root, const char *name)
{
        for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next)
                if (node_is(n, name)) {
                        xmlChar *t = xmlNodeGetContent(n);
                        char *r = t ? strdup((const char *)t) : NULL;
                        xmlFree(t);
                        return r;
                }
        return NULL;
}

/* <Error><Code>...</Code><Message>...</Message></Error> */
static void parse_error(const void *data, size_t len, char **code, char **message)
{
        xmlDocPtr doc = xml_parse(data, len);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;

        *code = *message = NULL;
        if (root && node_is(root, "Error")) {
                *code = xml_child_text(root, "Code");
                *message = xml_child_text(root, "Message");
        }
        if (doc)
                xmlFreeDoc(doc);
}

/* ---- requests --------------------------------------------------------- */

static void req_free(s3_req *rq)
{
        if (!rq)
                return;
        if (rq->easy)
                curl_easy_cleanup(rq->easy);
        curl_slist_free_all(rq->hdrs);
        free(rq->url);
        free(rq->what);
        free(rq->body_own);
        if (rq->sink == SINK_ALLOC)
                free(rq->buf);
        free(rq->ebuf);
        free(rq->etag);
        free(rq->err);
        free(rq);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(s3_req *, req_free);

/* A request for PATH (encoded: "BUCKET" or "BUCKET/KEY") and QUERY
 * (encoded and sorted, or NULL). */
static s3_req *req_new(sp_s3 *s, const char *method, const char *what, const char *path, const char *query)
{
        s3_req *rq = calloc(1, sizeof(*rq));

        if (!rq)
                return NULL;
        rq->s = s;
        rq->method = method;
        rq->what = strdup(what);
        if (asprintf(&rq->url, "%s/%s%s%s", s->endpoint, path, query ? "?" : "", query ? query : "") < 0)
                rq->url = NULL;
        if (!rq->what || !rq->url) {
                req_free(rq);
                return NULL;
        }
        memcpy(rq->sha, EMPTY_SHA256, sizeof(rq->sha));
        return rq;
}

/* The body, with its SHA-256 (computed when sha is NULL). */
static void req_set_body(s3_req *rq, const void *data, size_t len, const char *sha)
{
        rq->body = data;
        rq->body_len = len;
        if (sha)
                memcpy(rq->sha, sha, sizeof(rq->sha));
        else
                sha256_hex(data ? data : "", len, rq->sha);
}

static size_t on_read(char *buf, size_t size, size_t n, void *userdata)
{
        s3_req *rq = userdata;
        size_t k = MIN(size * n, rq->body_len - rq->body_off);

        if (k)
                memcpy(buf, rq->body + rq->body_off, k);
        rq->body_off += k;
        return k;
}

static int on_seek(void *userdata, curl_off_t off, int origin)
{
        s3_req *rq = userdata;

        if (origin != SEEK_SET || off < 0 || (uint64_t)off > rq->body_len)
                return CURL_SEEKFUNC_CANTSEEK;
        rq->body_off = (size_t)off;
        return CURL_SEEKFUNC_OK;
}

static bool grow(uint8_t **buf, size_t *cap, size_t need)
{
        size_t ncap;
        uint8_t *n;

        if (need <= *cap)
                return true;
        ncap = MAX(need, MAX(*cap * 2, (size_t)4096));
        n = realloc(*buf, ncap);
        if (!n)
                return false;
        *buf = n;
        *cap = ncap;
        return true;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata)
{
        s3_req *rq = userdata;
        size_t k = size * n;
        long code = 0;

        curl_easy_getinfo(rq->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code / 100 != 2) {
                /* An error's body: its start is enough for <Code> and <Message>. */
                size_t keep = MIN(k, ERROR_BODY_MAX - MIN(ERROR_BODY_MAX, rq->elen));
                uint8_t *e = (uint8_t *)rq->ebuf;
                size_t ecap = rq->ebuf ? ERROR_BODY_MAX + 1 : 0;

                if (keep) {
                        if (!grow(&e, &ecap, ERROR_BODY_MAX + 1))
                                return 0;
                        rq->ebuf = (char *)e;
                        memcpy(rq->ebuf + rq->elen, data, keep);
                        rq->elen += keep;
                        rq->ebuf[rq->elen] = 0;
                }
                return k;
        }
        switch (rq->sink) {
        case SINK_NONE:
                return k;
        case SINK_FIXED:
                if (k > rq->cap - rq->len) {
                        rq->too_big = true;
                        return 0;
                }
                break;
        case SINK_ALLOC:
                if (k > rq->max - rq->len) {
                        rq->too_big = true;
                        return 0;
                }
                /* One byte more for a NUL after text answers. */
                if (!grow(&rq->buf, &rq->cap, rq->len + k + 1))
                        return 0;
                break;
        }
        memcpy(rq->buf + rq->len, data, k);
        rq->len += k;
        if (rq->sink == SINK_ALLOC)
                rq->buf[rq->len] = 0;
        return k;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        s3_req *rq = userdata;
        size_t k = size * n, len = k;
        const char *v;

        while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
                len--;
        if (len > 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* A new answer (after a 100 Continue, say): forget the last one's. */
                const char *sp = memchr(data, ' ', len);
                const char *sp2 = sp ? memchr(sp + 1, ' ', len - (size_t)(sp + 1 - data)) : NULL;
                rq->reason[0] = 0;
                if (sp2)
                        snprintf(rq->reason, sizeof(rq->reason), "%.*s", (int)(len - (size_t)(sp2 + 1 - data)),
                                 sp2 + 1);
                free(rq->etag);
                rq->etag = NULL;
                return k;
        }
        if (len > 5 && strncasecmp(data, "ETag:", 5) == 0) {
                v = data + 5;
                while (v < data + len && (*v == ' ' || *v == '\t'))
                        v++;
                free(rq->etag);
                rq->etag = strndup(v, (size_t)(data + len - v));
        }
        return k;
}

static int req_fail(s3_req *rq, int r, const char *fmt, ...) _printf_(3, 4);
static int req_fail(s3_req *rq, int r, const char *fmt, ...)
{
        _cleanup_free_ char *detail = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&detail, fmt, ap) < 0)
                detail = NULL;
        va_end(ap);
        free(rq->err);
        if (asprintf(&rq->err, "S3 %s %s: %s", rq->method, rq->what, detail ? detail : strerror(-r)) < 0)
                rq->err = NULL;
        rq->r = r;
        return r;
}

static void req_reset_answer(s3_req *rq)
{
        if (rq->easy)
                curl_easy_cleanup(rq->easy);
        rq->easy = NULL;
        curl_slist_free_all(rq->hdrs);
        rq->hdrs = NULL;
        rq->len = 0;
        rq->too_big = false;
        rq->elen = 0;
        if (rq->ebuf)
                rq->ebuf[0] = 0;
        free(rq->etag);
        rq->etag = NULL;
        rq->errbuf[0] = 0;
        rq->reason[0] = 0;
        rq->status = 0;
        rq->cc = CURLE_OK;
        rq->body_off = 0;
        rq->content_length = -1;
        rq->mtime = 0;
}

/* An easy handle for the request's next attempt. */
static int req_setup(s3_req *rq, unsigned running)
{
        sp_s3 *s = rq->s;
        _cleanup_free_ char *h = NULL;
        CURL *e;

        req_reset_answer(rq);
        e = rq->easy = curl_easy_init();
        if (!e)
                return -ENOMEM;
        if (asprintf(&h, "x-amz-content-sha256: %s", rq->sha) < 0)
                return -ENOMEM;
        rq->hdrs = curl_slist_append(NULL, h);
        if (rq->hdrs && rq->content_type) {
                free(h);
                if (asprintf(&h, "Content-Type: %s", rq->content_type) < 0)
                        h = NULL;
                struct curl_slist *l = h ? curl_slist_append(rq->hdrs, h) : NULL;
                if (!l)
                        return -ENOMEM;
        }
        if (!rq->hdrs)
                return -ENOMEM;

        curl_easy_setopt(e, CURLOPT_URL, rq->url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, rq);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, rq->errbuf);
        curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
        curl_easy_setopt(e, CURLOPT_USERNAME, s->access_key);
        curl_easy_setopt(e, CURLOPT_PASSWORD, s->secret_key);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, rq->hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, rq);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, rq);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)MIN(s->timeout_ms, 30000));
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        /* Parts and chunks are large: no waiting for a 100 Continue. */
        curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
        if (s->insecure) {
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (s->rate) {
                curl_off_t share = (curl_off_t)MAX(s->rate / (running + 1), (uint64_t)1);
                curl_easy_setopt(e, CURLOPT_MAX_SEND_SPEED_LARGE, share);
                curl_easy_setopt(e, CURLOPT_MAX_RECV_SPEED_LARGE, share);
        }

        if (streq(rq->method, "HEAD")) {
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
                curl_easy_setopt(e, CURLOPT_FILETIME, 1L);
        } else if (streq(rq->method, "PUT")) {
                curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(e, CURLOPT_READDATA, rq);
                curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
                curl_easy_setopt(e, CURLOPT_SEEKDATA, rq);
                curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
        } else if (streq(rq->method, "POST")) {
                curl_easy_setopt(e, CURLOPT_POST, 1L);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        } else if (!streq(rq->method, "GET")) {
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
        }
        return 0;
}

static bool curl_retryable(CURLcode cc)
{
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SEND_FAIL_REWIND:
        case CURLE_WEIRD_SERVER_REPLY:
                return true;
        default:
                return false;
        }
}

/* The attempt's outcome into rq->r and rq->err; true when it is worth
 * another attempt. */
static bool req_judge(s3_req *rq)
{
        _cleanup_free_ char *code = NULL, *message = NULL;
        int r;

        rq->r = 0;
        free(rq->err);
        rq->err = NULL;
        if (rq->too_big) {
                req_fail(rq, -EFBIG, "the object is larger than the %zu bytes expected",
                         rq->sink == SINK_FIXED ? rq->cap : rq->max);
                return false;
        }
        if (rq->cc != CURLE_OK) {
                req_fail(rq, -EIO, "%s%s%s", curl_easy_strerror(rq->cc), rq->errbuf[0] ? ": " : "", rq->errbuf);
                return curl_retryable(rq->cc);
        }
        if (rq->status / 100 == 2) {
                /* CompleteMultipartUpload may fail after its 200. */
                if (rq->sink != SINK_ALLOC || !rq->buf || !strstr((const char *)rq->buf, "<Error>"))
                        return false;
                parse_error(rq->buf, rq->len, &code, &message);
                if (!code)
                        return false;
                req_fail(rq, -EIO, "%ld %s: %s", rq->status, code, message ? message : "");
                return true;
        }
        parse_error(rq->ebuf, rq->elen, &code, &message);
        r = rq->status == 404 ? -ENOENT : rq->status == 403 ? -EACCES : rq->status / 100 == 4 ? -EINVAL : -EIO;
        /* Credentials the store does not accept, as opposed to a refused right. */
        if (rq->status == 403 && code && (streq(code, "SignatureDoesNotMatch") || streq(code, "InvalidAccessKeyId")))
                r = -EKEYREJECTED;
        if (rq->status == 429)
                r = -EIO;
        if (code)
                req_fail(rq, r, "%ld %s: %s", rq->status, code, message ? message : "");
        else
                req_fail(rq, r, "%ld %s", rq->status, rq->reason[0] ? rq->reason : "(no reason given)");
        return rq->status >= 500 || rq->status == 429;
}

/* ---- the I/O thread --------------------------------------------------- */

static bool on_io_thread(sp_s3 *s)
{
        return pthread_equal(pthread_self(), s->thread);
}

/* Hands requests to the I/O thread (a chain linked by next). */
static void submit(sp_s3 *s, s3_req *first)
{
        s3_req *last = first;

        while (last->next)
                last = last->next;
        pthread_mutex_lock(&s->lock);
        if (s->queue_tail)
                s->queue_tail->next = first;
        else
                s->queue = first;
        s->queue_tail = last;
        pthread_mutex_unlock(&s->lock);
        curl_multi_wakeup(s->multi);
}

static uint64_t backoff_ns(sp_s3 *s, unsigned attempt)
{
        uint64_t ms = BACKOFF_FIRST_MS;

        for (unsigned i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
                ms *= 2;
        ms = MIN(ms, (uint64_t)BACKOFF_MAX_MS);
        /* Jitter: between half and all of it. */
        ms = ms / 2 + (uint64_t)rand_r(&s->seed) % (ms / 2 + 1);
        return ms * 1000000;
}

static void req_end(s3_req *rq)
{
        if (rq->easy) {
                curl_easy_cleanup(rq->easy);
                rq->easy = NULL;
        }
        rq->complete(rq);
}

/* Starts a request's next attempt (or ends it when that fails at once). */
static void start(sp_s3 *s, s3_req *rq)
{
        int r;

        rq->next = NULL;
        if (rq->cancel && *rq->cancel < 0) {
                rq->r = -ECANCELED;
                req_end(rq);
                return;
        }
        r = req_setup(rq, s->running);
        if (r == 0 && curl_multi_add_handle(s->multi, rq->easy) != CURLM_OK)
                r = -ENOMEM;
        if (r < 0) {
                req_fail(rq, r, "cannot start the request: %s", strerror(-r));
                req_end(rq);
                return;
        }
        rq->attempts++;
        s->running++;
        pthread_mutex_lock(&s->lock);
        s->stats.requests++;
        pthread_mutex_unlock(&s->lock);
}

static void finished(sp_s3 *s, s3_req *rq, CURLcode cc)
{
        curl_off_t up = 0, down = 0, ft = -1;

        curl_multi_remove_handle(s->multi, rq->easy);
        s->running--;
        rq->cc = cc;
        curl_easy_getinfo(rq->easy, CURLINFO_RESPONSE_CODE, &rq->status);
        curl_easy_getinfo(rq->easy, CURLINFO_SIZE_UPLOAD_T, &up);
        curl_easy_getinfo(rq->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
        curl_easy_getinfo(rq->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &rq->content_length);
        if (curl_easy_getinfo(rq->easy, CURLINFO_FILETIME_T, &ft) == CURLE_OK && ft >= 0)
                rq->mtime = (time_t)ft;

        bool again = req_judge(rq) && rq->attempts <= s->retries;
        pthread_mutex_lock(&s->lock);
        s->stats.bytes_up += (uint64_t)up;
        s->stats.bytes_down += (uint64_t)down;
        if (again)
                s->stats.retries++;
        pthread_mutex_unlock(&s->lock);
        if (again) {
                curl_easy_cleanup(rq->easy);
                rq->easy = NULL;
                rq->retry_at = vb_now_ns() + backoff_ns(s, rq->attempts);
                rq->next = s->delayed;
                s->delayed = rq;
                return;
        }
        if (rq->r < 0 && rq->attempts > 1) {
                char *e = NULL;
                if (asprintf(&e, "%s (after %u attempts)", rq->err, rq->attempts) >= 0) {
                        free(rq->err);
                        rq->err = e;
                }
        }
        req_end(rq);
}

static void *io_thread(void *userdata)
{
        sp_s3 *s = userdata;

        for (;;) {
                uint64_t now = vb_now_ns(), wait_ns = UINT64_MAX;
                CURLMsg *msg;
                int left;

                /* Retries whose time has come first, then the queue. */
                for (s3_req **p = &s->delayed; *p && s->running < s->max_requests;) {
                        s3_req *rq = *p;
                        if (rq->retry_at <= now) {
                                *p = rq->next;
                                start(s, rq);
                        } else {
                                p = &rq->next;
                        }
                }
                pthread_mutex_lock(&s->lock);
                while (s->queue && s->running < s->max_requests) {
                        s3_req *rq = s->queue;
                        s->queue = rq->next;
                        if (!s->queue)
                                s->queue_tail = NULL;
                        pthread_mutex_unlock(&s->lock);
                        start(s, rq);
                        pthread_mutex_lock(&s->lock);
                }
                bool stop = s->stopping && s->outstanding == 0 && !s->queue && !s->delayed && s->running == 0;
                pthread_mutex_unlock(&s->lock);
                if (stop)
                        break;

                curl_multi_perform(s->multi, &left);
                while ((msg = curl_multi_info_read(s->multi, &left))) {
                        s3_req *rq = NULL;
                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&rq);
                        finished(s, rq, msg->data.result);
                }

                /* A retry that is due waits for a free slot, not for time. */
                now = vb_now_ns();
                for (s3_req *rq = s->delayed; rq && s->running < s->max_requests; rq = rq->next)
                        wait_ns = MIN(wait_ns, rq->retry_at > now ? rq->retry_at - now : 0);
                int timeout_ms = wait_ns == UINT64_MAX ? 1000 : (int)MIN(wait_ns / 1000000 + 1, (uint64_t)1000);
                /* Requests that ended may have queued new ones (multipart):
                 * the next round starts them before polling. */
                pthread_mutex_lock(&s->lock);
                bool more = s->queue && s->running < s->max_requests;
                pthread_mutex_unlock(&s->lock);
                if (!more)
                        curl_multi_poll(s->multi, NULL, 0, timeout_ms, NULL);
        }
        return NULL;
}

/* ---- ending calls ----------------------------------------------------- */

/* A call ended: one slot free for sp_s3_put_async, and sp_s3_free may go on. */
static void call_ended(sp_s3 *s)
{
        pthread_mutex_lock(&s->lock);
        s->outstanding--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static void complete_blocking(s3_req *rq)
{
        sp_s3 *s = rq->s;

        pthread_mutex_lock(&s->lock);
        rq->done = true;
        s->outstanding--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* Runs one request and waits for its end: 0 or -errno, the request's
 * answer in its fields; the caller frees it. */
static int run(sp_s3 *s, s3_req *rq)
{
        if (on_io_thread(s))
                return req_fail(rq, -EDEADLK, "called from the client's own I/O thread");
        rq->complete = complete_blocking;
        pthread_mutex_lock(&s->lock);
        s->outstanding++;
        pthread_mutex_unlock(&s->lock);
        submit(s, rq);
        pthread_mutex_lock(&s->lock);
        while (!rq->done)
                pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        return rq->r;
}

static int take_err(s3_req *rq, char **err)
{
        if (err)
                *err = rq->r < 0 ? TAKE_PTR(rq->err) : NULL;
        return rq->r;
}

static int oom(char **err)
{
        if (err)
                *err = NULL;
        return -ENOMEM;
}

/* ---- multipart uploads ------------------------------------------------ */

static void mpu_free(s3_mpu *m)
{
        if (!m)
                return;
        for (size_t i = 0; m->etags && i < m->n_parts; i++)
                free(m->etags[i]);
        free(m->etags);
        free(m->sha);
        free(m->key);
        free(m->path);
        free(m->upload_id);
        free(m->err);
        free(m);
}

static void mpu_end(s3_mpu *m)
{
        sp_s3 *s = m->s;

        if (m->done) {
                m->done(m->userdata, m->r, m->r < 0 ? m->err : NULL);
                mpu_free(m);
                call_ended(s);
                return;
        }
        pthread_mutex_lock(&s->lock);
        m->finished = true;
        s->outstanding--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* The first error of the upload is the one reported. */
static void mpu_error(s3_mpu *m, s3_req *rq, int r, const char *what)
{
        if (m->r < 0)
                return;
        m->r = r;
        free(m->err);
        m->err = NULL;
        if (asprintf(&m->err, "%s%s", rq && rq->err ? rq->err : "S3 PUT ", rq && rq->err ? "" : what) < 0)
                m->err = NULL;
}

static s3_req *mpu_req(s3_mpu *m, const char *method, const char *query, req_complete_fn fn)
{
        s3_req *rq = req_new(m->s, method, m->key, m->path, query);

        if (!rq)
                return NULL;
        rq->complete = fn;
        rq->ctx = m;
        return rq;
}

static void mpu_aborted(s3_req *rq)
{
        s3_mpu *m = rq->ctx;

        /* An abort that fails leaves parts the store's lifecycle rules
         * remove; the upload's own error is what matters. */
        req_free(rq);
        mpu_end(m);
}

static void mpu_abort(s3_mpu *m)
{
        _cleanup_free_ char *id = uri_encode(m->upload_id, false), *q = NULL;
        s3_req *rq;

        if (!id || asprintf(&q, "uploadId=%s", id) < 0 || !(rq = mpu_req(m, "DELETE", q, mpu_aborted))) {
                mpu_end(m);
                return;
        }
        submit(m->s, rq);
}

static void mpu_completed(s3_req *rq)
{
        s3_mpu *m = rq->ctx;

        if (rq->r < 0) {
                mpu_error(m, rq, rq->r, NULL);
                req_free(rq);
                mpu_abort(m);
                return;
        }
        req_free(rq);
        mpu_end(m);
}

static void mpu_complete(s3_mpu *m)
{
        _cleanup_free_ char *id = uri_encode(m->upload_id, false), *q = NULL, *xml = NULL;
        size_t len = 0, cap = 0;
        char num[32];
        s3_req *rq = NULL;
        int r;

        r = id && asprintf(&q, "uploadId=%s", id) >= 0 ? 0 : -ENOMEM;
        if (r == 0)
                r = xml_append(&xml, &len, &cap, "<CompleteMultipartUpload>");
        for (size_t i = 0; r == 0 && i < m->n_parts; i++) {
                snprintf(num, sizeof(num), "%zu", i + 1);
                r = xml_append(&xml, &len, &cap, "<Part><PartNumber>");
                if (r == 0)
                        r = xml_append(&xml, &len, &cap, num);
                if (r == 0)
                        r = xml_append(&xml, &len, &cap, "</PartNumber><ETag>");
                if (r == 0)
                        r = xml_append_escaped(&xml, &len, &cap, m->etags[i]);
                if (r == 0)
                        r = xml_append(&xml, &len, &cap, "</ETag></Part>");
        }
        if (r == 0)
                r = xml_append(&xml, &len, &cap, "</CompleteMultipartUpload>");
        if (r == 0 && !(rq = mpu_req(m, "POST", q, mpu_completed)))
                r = -ENOMEM;
        if (r < 0) {
                mpu_error(m, NULL, r, m->key);
                mpu_abort(m);
                return;
        }
        rq->body_own = TAKE_PTR(xml);
        req_set_body(rq, rq->body_own, len, NULL);
        rq->content_type = "application/xml";
        rq->sink = SINK_ALLOC;
        rq->max = XML_BODY_MAX;
        submit(m->s, rq);
}

static void mpu_part_done(s3_req *rq)
{
        s3_mpu *m = rq->ctx;

        if (rq->r == 0 && !rq->etag)
                req_fail(rq, -EIO, "part %zu of %zu: no ETag in the answer", rq->part + 1, m->n_parts);
        if (rq->r == -ECANCELED) {
                /* Skipped after another part failed. */
        } else if (rq->r < 0) {
                char *e = NULL;
                if (rq->err && asprintf(&e, "%s (part %zu of %zu)", rq->err, rq->part + 1, m->n_parts) >= 0) {
                        free(rq->err);
                        rq->err = e;
                }
                mpu_error(m, rq, rq->r, NULL);
        } else {
                m->etags[rq->part] = TAKE_PTR(rq->etag);
        }
        req_free(rq);
        if (--m->left > 0)
                return;
        if (m->r < 0)
                mpu_abort(m);
        else
                mpu_complete(m);
}

static void mpu_initiated(s3_req *rq)
{
        s3_mpu *m = rq->ctx;
        xmlDocPtr doc = NULL;
        xmlNodePtr root;
        _cleanup_free_ char *id = NULL;
        s3_req *first = NULL, **tail = &first;

        if (rq->r < 0) {
                mpu_error(m, rq, rq->r, NULL);
                req_free(rq);
                mpu_end(m);
                return;
        }
        doc = xml_parse(rq->buf, rq->len);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (root && node_is(root, "InitiateMultipartUploadResult"))
                m->upload_id = xml_child_text(root, "UploadId");
        if (doc)
                xmlFreeDoc(doc);
        if (!m->upload_id || !*m->upload_id) {
                req_fail(rq, -EIO, "no UploadId in the answer to ?uploads");
                mpu_error(m, rq, -EIO, NULL);
                req_free(rq);
                mpu_end(m);
                return;
        }
        req_free(rq);

        id = uri_encode(m->upload_id, false);
        m->left = m->n_parts;
        for (size_t i = 0; id && i < m->n_parts; i++) {
                _cleanup_free_ char *q = NULL;
                size_t off = i * m->part_size;
                s3_req *p;

                if (asprintf(&q, "partNumber=%zu&uploadId=%s", i + 1, id) < 0 ||
                    !(p = mpu_req(m, "PUT", q, mpu_part_done)))
                        break;
                req_set_body(p, m->data + off, MIN(m->part_size, m->len - off), m->sha[i]);
                p->part = i;
                p->cancel = &m->r;
                *tail = p;
                tail = &p->next;
                m->left--;
        }
        if (m->left > 0) {
                while (first) {
                        s3_req *n = first->next;
                        req_free(first);
                        first = n;
                }
                mpu_error(m, NULL, -ENOMEM, m->key);
                mpu_abort(m);
                return;
        }
        m->left = m->n_parts;
        submit(m->s, first);
}

/* Starts a multipart upload of key: done (async) or m->finished (blocking)
 * tells its end. */
static int mpu_start(sp_s3 *s, const char *key, const char *path, const void *data, size_t len, sp_s3_done_fn done,
                     void *userdata, s3_mpu **ret)
{
        s3_mpu *m = calloc(1, sizeof(*m));
        s3_req *rq;

        if (!m)
                return -ENOMEM;
        m->s = s;
        m->data = data;
        m->len = len;
        m->done = done;
        m->userdata = userdata;
        m->part_size = (size_t)s->part_size;
        if (DIV_ROUND_UP(len, m->part_size) > MAX_PARTS)
                m->part_size = DIV_ROUND_UP(DIV_ROUND_UP(len, MAX_PARTS), (size_t)1 << 20) << 20;
        m->n_parts = DIV_ROUND_UP(len, m->part_size);
        m->key = strdup(key);
        m->path = strdup(path);
        m->sha = calloc(m->n_parts, sizeof(*m->sha));
        m->etags = calloc(m->n_parts, sizeof(*m->etags));
        if (!m->key || !m->path || !m->sha || !m->etags) {
                mpu_free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->n_parts; i++) {
                size_t off = i * m->part_size;
                sha256_hex((const uint8_t *)data + off, MIN(m->part_size, len - off), m->sha[i]);
        }
        rq = mpu_req(m, "POST", "uploads=", mpu_initiated);
        if (!rq) {
                mpu_free(m);
                return -ENOMEM;
        }
        rq->sink = SINK_ALLOC;
        rq->max = XML_BODY_MAX;
        *ret = m;
        submit(s, rq);
        return 0;
}

/* ---- the calls -------------------------------------------------------- */

/* "BUCKET/KEY", encoded. */
static char *object_path(sp_s3 *s, const char *key)
{
        _cleanup_free_ char *ekey = uri_encode(key, true);
        char *p = NULL;

        if (!ekey || asprintf(&p, "%s/%s", s->ebucket, ekey) < 0)
                return NULL;
        return p;
}

typedef struct async_put {
        sp_s3_done_fn done;
        void *userdata;
} async_put;

static void complete_async(s3_req *rq)
{
        sp_s3 *s = rq->s;
        async_put *a = rq->ctx;

        a->done(a->userdata, rq->r, rq->r < 0 ? rq->err : NULL);
        free(a);
        req_free(rq);
        call_ended(s);
}

static int put(sp_s3 *s, const char *key, const void *data, size_t len, sp_s3_done_fn done, void *userdata, char **err)
{
        _cleanup_free_ char *path = NULL;
        s3_req *rq;
        async_put *a;
        int r;

        if (err)
                *err = NULL;
        if (!key || !*key || (!data && len > 0))
                return -EINVAL;
        if (!done && on_io_thread(s))
                return -EDEADLK;
        path = object_path(s, key);
        if (!path)
                return oom(err);

        if (!done && len <= s->part_size) {
                /* run() counts the call. */
                rq = req_new(s, "PUT", key, path, NULL);
                if (!rq)
                        return oom(err);
                req_set_body(rq, data, len, NULL);
                r = run(s, rq);
                take_err(rq, err);
                req_free(rq);
                return r;
        }

        pthread_mutex_lock(&s->lock);
        /* A done function that puts again does not wait for a slot: the
         * thread that frees them is this one. */
        while (done && s->outstanding >= s->max_requests && !on_io_thread(s))
                pthread_cond_wait(&s->cond, &s->lock);
        s->outstanding++;
        pthread_mutex_unlock(&s->lock);

        if (len > s->part_size) {
                s3_mpu *m = NULL;

                r = mpu_start(s, key, path, data, len, done, userdata, &m);
                if (r < 0) {
                        call_ended(s);
                        return oom(err);
                }
                if (done)
                        return 0;
                pthread_mutex_lock(&s->lock);
                while (!m->finished)
                        pthread_cond_wait(&s->cond, &s->lock);
                pthread_mutex_unlock(&s->lock);
                r = m->r;
                if (err && r < 0)
                        *err = TAKE_PTR(m->err);
                mpu_free(m);
                return r;
        }

        rq = req_new(s, "PUT", key, path, NULL);
        a = malloc(sizeof(*a));
        if (!rq || !a) {
                req_free(rq);
                free(a);
                call_ended(s);
                return -ENOMEM;
        }
        req_set_body(rq, data, len, NULL);
        *a = (async_put){ .done = done, .userdata = userdata };
        rq->ctx = a;
        rq->complete = complete_async;
        submit(s, rq);
        return 0;
}

int sp_s3_put(sp_s3 *s, const char *key, const void *data, size_t len, char **err)
{
        return put(s, key, data, len, NULL, NULL, err);
}

int sp_s3_put_async(sp_s3 *s, const char *key, const void *data, size_t len, sp_s3_done_fn done, void *userdata)
{
        if (!done)
                return -EINVAL;
        return put(s, key, data, len, done, userdata, NULL);
}

static int get(sp_s3 *s, const char *key, sink sk, void *buf, size_t size, uint8_t **ret, size_t *ret_len, char **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_(req_freep) s3_req *rq = NULL;
        int r;

        if (err)
                *err = NULL;
        if (!key || !*key)
                return -EINVAL;
        path = object_path(s, key);
        if (!path || !(rq = req_new(s, "GET", key, path, NULL)))
                return oom(err);
        rq->sink = sk;
        if (sk == SINK_FIXED) {
                rq->buf = buf;
                rq->cap = size;
        } else {
                rq->max = size;
        }
        r = run(s, rq);
        if (r < 0)
                return take_err(rq, err);
        if (sk == SINK_FIXED) {
                *ret_len = rq->len;
        } else {
                if (!rq->buf && !(rq->buf = malloc(1)))
                        return oom(err);
                *ret = TAKE_PTR(rq->buf);
                *ret_len = rq->len;
        }
        return 0;
}

int sp_s3_get(sp_s3 *s, const char *key, void *buf, size_t size, size_t *got, char **err)
{
        size_t n = 0;
        int r = get(s, key, SINK_FIXED, buf, size, NULL, &n, err);

        if (r == 0 && got)
                *got = n;
        return r;
}

int sp_s3_get_alloc(sp_s3 *s, const char *key, size_t max, uint8_t **ret, size_t *ret_len, char **err)
{
        uint8_t *b = NULL;
        size_t n = 0;
        int r = get(s, key, SINK_ALLOC, NULL, max, &b, &n, err);

        if (r < 0)
                return r;
        *ret = b;
        if (ret_len)
                *ret_len = n;
        return 0;
}

int sp_s3_head(sp_s3 *s, const char *key, uint64_t *size, time_t *mtime, char **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_(req_freep) s3_req *rq = NULL;
        int r;

        if (err)
                *err = NULL;
        if (!key || !*key)
                return -EINVAL;
        path = object_path(s, key);
        if (!path || !(rq = req_new(s, "HEAD", key, path, NULL)))
                return oom(err);
        r = run(s, rq);
        if (r < 0)
                return take_err(rq, err);
        if (size)
                *size = rq->content_length >= 0 ? (uint64_t)rq->content_length : 0;
        if (mtime)
                *mtime = rq->mtime;
        return 0;
}

int sp_s3_delete(sp_s3 *s, const char *key, char **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_(req_freep) s3_req *rq = NULL;
        int r;

        if (err)
                *err = NULL;
        if (!key || !*key)
                return -EINVAL;
        path = object_path(s, key);
        if (!path || !(rq = req_new(s, "DELETE", key, path, NULL)))
                return oom(err);
        r = run(s, rq);
        if (r == -ENOENT)
                return 0;
        return r < 0 ? take_err(rq, err) : 0;
}

int sp_s3_bucket_create(sp_s3 *s, char **err)
{
        _cleanup_(req_freep) s3_req *rq = NULL, *head = NULL;
        _cleanup_free_ char *code = NULL, *message = NULL;
        int r;

        if (err)
                *err = NULL;
        if (!(rq = req_new(s, "PUT", s->bucket, s->ebucket, NULL)))
                return oom(err);
        if (!streq(s->region, "us-east-1")) {
                if (asprintf(&rq->body_own,
                             "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                             s->region) < 0)
                        return oom(err);
                req_set_body(rq, rq->body_own, strlen(rq->body_own), NULL);
        }
        r = run(s, rq);
        if (r == 0 || rq->status != 409)
                return take_err(rq, err);
        parse_error(rq->ebuf, rq->elen, &code, &message);
        if (streq_ptr(code, "BucketAlreadyOwnedByYou"))
                return 0;
        /* Some stores say BucketAlreadyExists to its owner too: ours when we may read it. */
        if (!(head = req_new(s, "HEAD", s->bucket, s->ebucket, NULL)))
                return oom(err);
        if (run(s, head) == 0)
                return 0;
        rq->r = -EEXIST;
        return take_err(rq, err);
}

void sp_s3_objects_free(sp_s3_object *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                free(v[i].key);
        free(v);
}

/* One page of ListObjectsV2 appended to *v; *token the next page's
 * continuation token, NULL after the last. */
static int parse_list(const uint8_t *data, size_t len, sp_s3_object **v, size_t *n, size_t *cap, char **token)
{
        xmlDocPtr doc = xml_parse(data, len);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        _cleanup_free_ char *truncated = NULL;
        int r = 0;

        *token = NULL;
        if (!root || !node_is(root, "ListBucketResult")) {
                if (doc)
                        xmlFreeDoc(doc);
                return -EBADMSG;
        }
        for (xmlNodePtr c = root->children; c && r == 0; c = c->next) {
                _cleanup_free_ char *key = NULL, *size = NULL, *mtime = NULL;
                char *end;

                if (!node_is(c, "Contents"))
                        continue;
                key = xml_child_text(c, "Key");
                size = xml_child_text(c, "Size");
                mtime = xml_child_text(c, "LastModified");
                if (!key) {
                        r = -EBADMSG;
                        break;
                }
                if (*n == *cap) {
                        size_t ncap = MAX(*cap * 2, (size_t)64);
                        sp_s3_object *nv = realloc(*v, ncap * sizeof(*nv));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        *v = nv;
                        *cap = ncap;
                }
                (*v)[*n] = (sp_s3_object){
                        .key = TAKE_PTR(key),
                        .size = size ? strtoull(size, &end, 10) : 0,
                        .mtime = mtime ? parse_iso8601(mtime) : 0,
                };
                (*n)++;
        }
        truncated = xml_child_text(root, "IsTruncated");
        if (r == 0 && streq_ptr(truncated, "true")) {
                *token = xml_child_text(root, "NextContinuationToken");
                if (!*token || !**token)
                        r = -EBADMSG;
        }
        xmlFreeDoc(doc);
        return r;
}

int sp_s3_list(sp_s3 *s, const char *prefix, sp_s3_object **ret, size_t *ret_n, char **err)
{
        _cleanup_free_ char *eprefix = NULL, *token = NULL, *what = NULL;
        sp_s3_object *v = NULL;
        size_t n = 0, cap = 0;
        int r;

        if (err)
                *err = NULL;
        eprefix = uri_encode(prefix ? prefix : "", false);
        if (!eprefix || asprintf(&what, "%s?prefix=%s", s->bucket, prefix ? prefix : "") < 0)
                return oom(err);
        do {
                _cleanup_free_ char *etoken = NULL, *q = NULL, *next = NULL;
                _cleanup_(req_freep) s3_req *rq = NULL;

                /* Sorted by name, as SigV4 wants them. */
                if (token && !(etoken = uri_encode(token, false)))
                        r = -ENOMEM;
                else if (asprintf(&q, "%s%s%slist-type=2%s%s", etoken ? "continuation-token=" : "",
                                  etoken ? etoken : "", etoken ? "&" : "", *eprefix ? "&prefix=" : "", eprefix) < 0)
                        r = -ENOMEM;
                else if (!(rq = req_new(s, "GET", what, s->ebucket, q)))
                        r = -ENOMEM;
                else
                        r = 0;
                if (r < 0) {
                        sp_s3_objects_free(v, n);
                        return oom(err);
                }
                rq->sink = SINK_ALLOC;
                rq->max = XML_BODY_MAX;
                r = run(s, rq);
                if (r == 0) {
                        r = parse_list(rq->buf, rq->len, &v, &n, &cap, &next);
                        if (r < 0)
                                req_fail(rq, r, "%s", r == -ENOMEM ? strerror(ENOMEM) : "not a ListObjectsV2 answer");
                }
                if (r < 0) {
                        sp_s3_objects_free(v, n);
                        return take_err(rq, err);
                }
                free(token);
                token = TAKE_PTR(next);
        } while (token);
        *ret = v;
        *ret_n = n;
        return 0;
}

void sp_s3_get_stats(sp_s3 *s, sp_s3_stats *ret)
{
        pthread_mutex_lock(&s->lock);
        *ret = s->stats;
        pthread_mutex_unlock(&s->lock);
}

/* ---- life ------------------------------------------------------------- */

static void client_free(sp_s3 *s)
{
        if (s->multi)
                curl_multi_cleanup(s->multi);
        free(s->endpoint);
        free(s->bucket);
        free(s->ebucket);
        free(s->region);
        free(s->access_key);
        if (s->secret_key)
                explicit_bzero(s->secret_key, strlen(s->secret_key));
        free(s->secret_key);
        free(s->sigv4);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

int sp_s3_new(const sp_s3_opts *o, sp_s3 **ret)
{
        sigset_t all, old;
        sp_s3 *s;
        size_t n;
        int r;

        if (!o || !o->endpoint || !o->bucket || !*o->bucket || !o->access_key || !o->secret_key || !ret)
                return -EINVAL;
        if (strncmp(o->endpoint, "http://", 7) != 0 && strncmp(o->endpoint, "https://", 8) != 0)
                return -EINVAL;
        if (o->part_size && o->part_size < SP_S3_PART_SIZE_MIN)
                return -EINVAL;
        pthread_once(&global_once, global_init);
        if (global_result != CURLE_OK)
                return -EIO;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        s->endpoint = strdup(o->endpoint);
        s->bucket = strdup(o->bucket);
        s->ebucket = uri_encode(o->bucket, false);
        s->region = strdup(o->region ? o->region : "us-east-1");
        s->access_key = strdup(o->access_key);
        s->secret_key = strdup(o->secret_key);
        s->insecure = o->insecure;
        s->max_requests = o->max_requests ? o->max_requests : SP_S3_MAX_REQUESTS_DEFAULT;
        s->retries = o->retries ? o->retries : SP_S3_RETRIES_DEFAULT;
        s->part_size = o->part_size ? o->part_size : SP_S3_PART_SIZE_DEFAULT;
        s->timeout_ms = o->timeout_ms ? o->timeout_ms : 120000;
        s->rate = o->rate;
        s->seed = (unsigned)vb_now_ns();
        if (!s->endpoint || !s->bucket || !s->ebucket || !s->region || !s->access_key || !s->secret_key ||
            asprintf(&s->sigv4, "aws:amz:%s:s3", s->region) < 0) {
                s->sigv4 = NULL;
                client_free(s);
                return -ENOMEM;
        }
        n = strlen(s->endpoint);
        while (n > 0 && s->endpoint[n - 1] == '/')
                s->endpoint[--n] = 0;

        s->multi = curl_multi_init();
        if (!s->multi) {
                client_free(s);
                return -ENOMEM;
        }
        curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)s->max_requests);
        /* The I/O thread takes no signals: they stay with the daemon's own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&s->thread, NULL, io_thread, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                client_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void sp_s3_free(sp_s3 *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        while (s->outstanding > 0)
                pthread_cond_wait(&s->cond, &s->lock);
        s->stopping = true;
        pthread_mutex_unlock(&s->lock);
        curl_multi_wakeup(s->multi);
        pthread_join(s->thread, NULL);
        client_free(s);
}
