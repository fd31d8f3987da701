/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cvd-proto.h -- the codec of the CVD-style control protocol
 * (docs/cvd-protocol.md): frames, the incremental frame decoder, typed
 * parsing and building of every message, and the authentication helpers
 * (token proof, credentials file).
 *
 * DESIGN: pure functions, no I/O and no loop, so that the client, the server
 * and the fuzzer share one parser. Parsed messages borrow their strings from
 * the json_t they were parsed from: a parsed struct is valid as long as that
 * object is. Parsers check every field they read (type, range, name rules)
 * and say precisely what is wrong in a tp_cvd_why; unknown fields are
 * ignored (the protocol's rule for compatible additions).
 */
#ifndef TP_CVD_PROTO_H
#define TP_CVD_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/error.h"

#ifndef VBAK_VERSION
#define VBAK_VERSION "0.1.0"
#endif

#define TP_CVD_VERSION 1 /* the one protocol version this build speaks */
#define TP_CVD_SERVICE "vbak-cvd"
#define TP_CVD_PORT_DEFAULT 8192
#define TP_CVD_FRAME_MAX 1048576u /* bytes of JSON in one frame */
#define TP_CVD_NONCE_HEX 64       /* hex digits of the welcome nonce (32 random bytes) */
#define TP_CVD_PROOF_HEX 64       /* hex digits of an HMAC-SHA256 proof */
#define TP_CVD_NAME_MAX 64
#define TP_CVD_PATH_MAX 4096
#define TP_CVD_CONTEXTS_MAX 16 /* meta contexts in a disk.open reply */
#define TP_CVD_TOKEN_MIN 16    /* bytes of a shared token */
#define TP_CVD_PBKDF2_ROUNDS 100000
#define TP_CVD_ID_MAX 9007199254740991LL /* 2^53 - 1: exact in every JSON implementation */

/* A precise one-line reason, filled by the parsers on failure. */
typedef struct tp_cvd_why {
        char msg[256];
} tp_cvd_why;

/* --- frames ------------------------------------------------------------- */

/* Encodes one message as a frame: 4-byte big-endian length, then the
 * compact JSON text. *ret_buf is owned by the caller. -EINVAL when j is not
 * an object, -E2BIG when the text exceeds TP_CVD_FRAME_MAX, -ENOMEM. */
int tp_cvd_frame_encode(json_t *j, char **ret_buf, size_t *ret_len);

/* The incremental decoder: takes the byte stream in pieces of any size and
 * yields one JSON object per frame. Initialise with TP_CVD_DECODER_INIT. */
typedef struct tp_cvd_decoder {
        uint8_t head[4];
        size_t head_len;
        uint32_t len; /* of the current frame, once head_len == 4 */
        char *body;
        size_t have;
        bool failed; /* a bad frame was met: the stream cannot be resynchronised */
        tp_cvd_why why;
} tp_cvd_decoder;

#define TP_CVD_DECODER_INIT                                                                                            \
        {                                                                                                              \
                .head_len = 0                                                                                          \
        }

/* Consumes bytes of buf until one frame is complete or buf is used up;
 * *ret_used says how many (always set). Returns 1 with *ret_msg (a JSON
 * object, owned by the caller) when a frame completed, 0 when more bytes are
 * needed, -EBADMSG on a bad frame (length 0 or above TP_CVD_FRAME_MAX, text
 * that is not one JSON object); d->why says why and every later call fails
 * the same way. -ENOMEM. Call it again with the rest of buf after a 1. */
int tp_cvd_decoder_feed(tp_cvd_decoder *d, const void *buf, size_t len, size_t *ret_used, json_t **ret_msg);

/* Bytes of an unfinished frame held (0 at a frame boundary). */
size_t tp_cvd_decoder_pending(const tp_cvd_decoder *d);

/* Frees what the decoder holds; it is then like new. */
void tp_cvd_decoder_reset(tp_cvd_decoder *d);

/* --- names and error codes ----------------------------------------------- */

/* VM, snapshot and checkpoint names: 1-64 of letters, digits, '.', '_', '-',
 * not starting with '.' or '-'. */
bool tp_cvd_name_valid(const char *s);

/* Disk paths: absolute, at most TP_CVD_PATH_MAX bytes. */
bool tp_cvd_path_valid(const char *s);

/* The protocol's error codes ("auth", "denied", ...). */
typedef enum tp_cvd_code {
        TP_CVD_E_PROTOCOL,
        TP_CVD_E_VERSION,
        TP_CVD_E_AUTH,
        TP_CVD_E_DENIED,
        TP_CVD_E_NOT_FOUND,
        TP_CVD_E_EXISTS,
        TP_CVD_E_BUSY,
        TP_CVD_E_INVALID,
        TP_CVD_E_IO,
        TP_CVD_E_INTERNAL,
        _TP_CVD_E_MAX,
        _TP_CVD_E_INVALID = -1,
} tp_cvd_code;

const char *tp_cvd_code_to_string(tp_cvd_code c);
tp_cvd_code tp_cvd_code_from_string(const char *s);

/* vbak's stable code for a protocol error code (docs/cvd-protocol.md):
 * protocol/version -> VB_E_PROTOCOL, auth -> VB_E_AUTH, denied/busy ->
 * VB_E_REFUSED, not-found -> VB_E_NOT_FOUND, exists -> VB_E_EXISTS, invalid
 * -> VB_E_USAGE, io -> VB_E_SOURCE, internal and unknown codes -> VB_E_FAILED. */
vb_error tp_cvd_error_to_vb(const char *code);

/* The protocol code for a backend's -errno (transport/cvd-export.h):
 * EACCES denied, ENOENT not-found, EEXIST exists, EBUSY busy, EINVAL
 * invalid, EIO io, anything else internal. */
tp_cvd_code tp_cvd_code_from_errno(int r);

/* --- requests (client -> server) ---------------------------------------- */

typedef enum tp_cvd_op {
        TP_CVD_OP_HELLO,
        TP_CVD_OP_DISK_OPEN,
        TP_CVD_OP_DISK_CLOSE,
        TP_CVD_OP_BITMAP_CREATE,
        TP_CVD_OP_BITMAP_REMOVE,
        TP_CVD_OP_BITMAP_LIST,
        TP_CVD_OP_PING,
        _TP_CVD_OP_MAX,
        _TP_CVD_OP_INVALID = -1,
} tp_cvd_op;

const char *tp_cvd_op_to_string(tp_cvd_op op);
tp_cvd_op tp_cvd_op_from_string(const char *s);

typedef enum tp_cvd_auth_method {
        TP_CVD_AUTH_TOKEN,
        TP_CVD_AUTH_PASSWORD,
} tp_cvd_auth_method;

typedef struct tp_cvd_hello_req {
        uint32_t version;
        const char *client; /* may be NULL */
        tp_cvd_auth_method method;
        const char *proof;           /* token: 64 hex digits */
        const char *user, *password; /* password */
} tp_cvd_hello_req;

typedef struct tp_cvd_open_req {
        const char *vm, *path;
        const char *snapshot;   /* NULL: the live image */
        bool write;             /* mode "read-write" */
        const char *since;      /* NULL: no dirty-bitmap context */
        const char *checkpoint; /* NULL: no checkpoint to ensure */
} tp_cvd_open_req;

/* bitmap.create, bitmap.remove (name set) and bitmap.list (name NULL). */
typedef struct tp_cvd_bitmap_req {
        const char *vm, *path, *name;
} tp_cvd_bitmap_req;

typedef struct tp_cvd_request {
        uint64_t id;
        tp_cvd_op op;
        union {
                tp_cvd_hello_req hello;
                tp_cvd_open_req open;
                const char *handle; /* disk.close */
                tp_cvd_bitmap_req bitmap;
        };
} tp_cvd_request;

/* Parses a request. Returns 0; -EPROTO when the envelope is bad (not an
 * object, id missing or not an integer 1..2^53-1, op missing or not a
 * string): the server answers "protocol" and closes; -EINVAL when the op is
 * unknown or a field is missing, of the wrong type or breaks its rule: the
 * server answers "invalid" with ret->id, which is set on 0 and -EINVAL. */
int tp_cvd_request_parse(json_t *j, tp_cvd_request *ret, tp_cvd_why *why);

/* Builds a request (NULL on out of memory or a bad op). */
json_t *tp_cvd_request_to_json(const tp_cvd_request *rq);

/* --- server messages (server -> client) ---------------------------------- */

typedef struct tp_cvd_welcome {
        const char *service;
        bool v1;              /* versions contains TP_CVD_VERSION */
        uint32_t version_max; /* the highest version offered */
        char nonce[TP_CVD_NONCE_HEX + 1];
        bool auth_token, auth_password; /* methods offered (unknown ones are ignored) */
        bool tls;
} tp_cvd_welcome;

/* Builds the welcome for a nonce of 64 hex digits. */
json_t *tp_cvd_welcome_new(const char *nonce, bool token, bool password, bool tls);

/* Parses a welcome; -EBADMSG with why when it is not one. */
int tp_cvd_welcome_parse(json_t *j, tp_cvd_welcome *ret, tp_cvd_why *why);

/* The envelope of every reply. */
typedef struct tp_cvd_reply {
        uint64_t id; /* 0 only for the refusal a full server sends instead of a welcome */
        bool ok;
        const char *code, *message; /* when !ok */
} tp_cvd_reply;

/* Parses the envelope: id, ok and, when !ok, the error object. -EBADMSG. */
int tp_cvd_reply_parse(json_t *j, tp_cvd_reply *ret, tp_cvd_why *why);

/* {"id": id, "ok": true} to add fields to. */
json_t *tp_cvd_reply_ok_new(uint64_t id);

/* {"id": id, "ok": false, "error": {"code": ..., "message": ...}}. */
json_t *tp_cvd_reply_error_new(uint64_t id, tp_cvd_code code, const char *message);

typedef struct tp_cvd_hello_reply {
        uint32_t version;
        const char *server, *session;
        uint32_t timeout; /* the server's idle timeout, seconds, >= 1 */
} tp_cvd_hello_reply;

typedef struct tp_cvd_open_reply {
        const char *handle, *host;
        uint16_t port;
        const char *export_name;
        uint64_t size;
        const char *format;
        uint32_t cluster_size, granularity;
        const char *contexts[TP_CVD_CONTEXTS_MAX];
        size_t n_contexts;
        bool running;
} tp_cvd_open_reply;

typedef struct tp_cvd_bitmap {
        const char *name;
        uint32_t granularity;
        bool persistent, enabled;
        uint64_t dirty_bytes;
} tp_cvd_bitmap;

typedef struct tp_cvd_bitmap_list_reply {
        tp_cvd_bitmap *bitmaps; /* owned: free with tp_cvd_bitmap_list_reply_done() */
        size_t n_bitmaps;
} tp_cvd_bitmap_list_reply;

/* Parsers of successful replies (the envelope is parsed separately); each
 * returns 0 or -EBADMSG with why, and -ENOMEM. */
int tp_cvd_hello_reply_parse(json_t *j, tp_cvd_hello_reply *ret, tp_cvd_why *why);
int tp_cvd_open_reply_parse(json_t *j, tp_cvd_open_reply *ret, tp_cvd_why *why);
int tp_cvd_bitmap_list_reply_parse(json_t *j, tp_cvd_bitmap_list_reply *ret, tp_cvd_why *why);
int tp_cvd_ping_reply_parse(json_t *j, int64_t *ret_time, tp_cvd_why *why);
void tp_cvd_bitmap_list_reply_done(tp_cvd_bitmap_list_reply *r);

/* Builders of successful replies. */
json_t *tp_cvd_hello_reply_new(uint64_t id, const tp_cvd_hello_reply *h);
json_t *tp_cvd_open_reply_new(uint64_t id, const tp_cvd_open_reply *o);
json_t *tp_cvd_bitmap_list_reply_new(uint64_t id, const tp_cvd_bitmap *v, size_t n);
json_t *tp_cvd_ping_reply_new(uint64_t id, int64_t time);

/* --- authentication ----------------------------------------------------- */

/* 64 random hex digits and a NUL (the welcome nonce). */
int tp_cvd_nonce_new(char ret[TP_CVD_NONCE_HEX + 1]);

/* The token proof: lower-case hex of HMAC-SHA256(key = the token's bytes,
 * data = the 64 ASCII characters of the nonce), and a NUL. */
int tp_cvd_token_proof(const char *token, size_t token_len, const char *nonce, char ret[TP_CVD_PROOF_HEX + 1]);

/* Checks a proof (hex, either case) in constant time: 0 or -EKEYREJECTED. */
int tp_cvd_token_check(const char *token, size_t token_len, const char *nonce, const char *proof);

/* A token file's token: its first line without surrounding white space.
 * -EINVAL when shorter than TP_CVD_TOKEN_MIN bytes. *ret is owned. */
int tp_cvd_token_parse(const char *text, size_t len, char **ret);

/* A credentials file holds `user:<hex salt>:<hex PBKDF2-HMAC-SHA256, 100000
 * rounds, 32 bytes>` lines ('#' comments and blank lines allowed). Returns 0
 * when user and password match a line (user NULL: only checks the syntax),
 * -EKEYREJECTED when they do not (the work is the same whether or not the
 * user exists), -EBADMSG with *ret_line (1-based) on a malformed line.
 * Slow on purpose (PBKDF2): run it off the loop. */
int tp_cvd_credentials_check(const char *text, const char *user, const char *password, unsigned *ret_line);

/* Builds one credentials line for user and password with a random salt
 * (tests and tools). *ret is owned. */
int tp_cvd_credentials_line(const char *user, const char *password, char **ret);

#endif
