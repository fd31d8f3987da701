/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * doc.h -- the one place where H3C CAS (CVM) REST responses are parsed. XML
 * and JSON bodies become one normalised jansson tree; the accessors accept
 * every rendering quirk of the platform (docs: cas-api.md §1.3, §2, §5), so
 * the rest of the driver never looks at a raw response.
 *
 * DESIGN
 * - One shape for both formats. XML elements become objects (child element
 *   -> key, repeated children -> array, attributes -> keys, text-only element
 *   -> string, empty element -> ""); JSON objects get their "@attr" keys
 *   renamed to "attr". The XML root element is dropped and its content
 *   returned, because CAS's JSON has no root: `<taskMsg><msgId>1</msgId>
 *   </taskMsg>` and `{"msgId":"1"}` both give {"msgId":"1"}. Callers know
 *   which entity they asked for. An empty root (`<list/>`) and an empty body
 *   give {}. A root with text only (`<status>running</status>`) and bare JSON
 *   scalars (the `true` of checkCbtBackup) give a string or scalar.
 * - Scalars stay as they came (strings from XML and from CAS 2.0 JSON,
 *   numbers and booleans from 7.x JSON); the accessors convert. An element
 *   with attributes or children and text keeps the text under "#text", and
 *   the scalar accessors read it.
 * - Ownership: cas_doc_parse() returns a new reference. Every accessor
 *   borrows: strings and lists live as long as the tree. cas_get_list() and
 *   cas_get_str() normalise IN PLACE (a one-item object becomes a one-item
 *   array, a missing key or "" an empty array, a number a string), so the
 *   tree must not be shared with another thread while they run.
 * - Limits: bodies over CAS_DOC_MAX_SIZE are refused (-EFBIG) and trees
 *   deeper than CAS_DOC_MAX_DEPTH (-EBADMSG). XML is parsed without network
 *   access, without entity substitution and without DTDs at all: a
 *   <!DOCTYPE> stops the parser (CAS never sends one).
 */
#ifndef VB_CAS_DOC_H
#define VB_CAS_DOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/error.h"

#define CAS_DOC_MAX_SIZE (64u << 20)
#define CAS_DOC_MAX_DEPTH 256

/* Parses a response body (XML or JSON; the body decides, content_type, which
 * may be NULL, only settles bodies that are neither) into *ret (a new
 * reference). Returns 0, -EFBIG (too large), -EBADMSG (malformed, too deep,
 * DTD) or -ENOMEM; on failure *err (if err) gets a malloc'd explanation. */
int cas_doc_parse(const char *body, size_t len, const char *content_type, json_t **ret, char **err);

/* Renders a request body: with xml, <root> holding one element per member
 * (an array member becomes repeated elements of its name, an object member
 * a nested element, scalars their text; null members are left out), as
 * JAXB reads it (cas-api.md §1.3); otherwise compact JSON with the members
 * at the top, no root wrapper. Returns 0, -EINVAL (obj not an object, a
 * name that is no XML name) or -ENOMEM; *ret is malloc'd. */
int cas_doc_render(json_t *obj, const char *root, bool xml, char **ret);

/* Scalars. obj must be an object (anything else reads as missing).
 * cas_get_str: the string, numbers and booleans rendered as text (the member
 * is replaced by that string); NULL when missing, null, object or array. */
const char *cas_get_str(json_t *obj, const char *key);
/* 0, -ENOENT (missing, null or ""), -EINVAL (not an integer), -ERANGE. */
int cas_get_i64(json_t *obj, const char *key, int64_t *ret);
/* true/false, "true"/"false" (any case), 1/0, "1"/"0". Same errors. */
int cas_get_bool(json_t *obj, const char *key, bool *ret);
/* Numbers and numeric strings ("20480.5"), finite only. Same errors. */
int cas_get_double(json_t *obj, const char *key, double *ret);

/* The member as an object (borrowed), or NULL when missing, "" or not an
 * object. */
json_t *cas_get_obj(json_t *obj, const char *key);

/* The member as an array, normalised in place (one item -> one-item array,
 * missing/null/"" -> empty array) and borrowed. NULL only when obj is not an
 * object or memory runs out. */
json_t *cas_get_list(json_t *obj, const char *key);

/* taskMsg and message/{msgId} (cas-api.md §2.1, §2.2). */
enum {
        CAS_TASK_RESULT_NONE = -1, /* not given (task still running) */
        CAS_TASK_SUCCESS = 0,
        CAS_TASK_FAIL = 1,
        CAS_TASK_PART_SUCCESS = 2,
};

typedef struct cas_task {
        int64_t msg_id;
        bool completed;
        int progress;      /* 0..100, -1 when not given */
        int result;        /* CAS_TASK_*, CAS_TASK_RESULT_NONE when not given */
        int64_t target_id; /* -1 when not given (the new VM's id after vm/add) */
        int event_type;    /* -1 when not given */
        char *target_name; /* the strings are owned, NULL when not given */
        char *name;
        char *detail;
        char *fail_msg;
} cas_task;

/* Fills *ret from a parsed taskMsg. msgId is required: -EBADMSG without it
 * or when a field is not of its type; -ENOMEM. Free with cas_task_done(). */
int cas_task_from_json(json_t *doc, cas_task *ret);
void cas_task_done(cas_task *t);

/* rsResult (cas-api.md §2.3): state 0 success, 1 failure. */
typedef struct cas_rs_result {
        int state;
        int64_t error_code; /* 0 when not given */
        char *message;      /* owned, NULL when not given or empty */
        json_t *data;       /* new reference, NULL when not given */
} cas_rs_result;

int cas_rs_result_from_json(json_t *doc, cas_rs_result *ret);
void cas_rs_result_done(cas_rs_result *r);

/* A failed HTTP exchange (cas-api.md §5). */
typedef struct cas_error {
        vb_error code; /* vbak's code, VB_OK for a 2xx without Error-Code */
        int http_status;
        int64_t cas_code; /* the Error-Code header, -1 when absent or not a number */
        char *message;    /* owned, valid UTF-8 without control characters, never NULL */
} cas_error;

/* Builds *ret from the status and the raw header values (each may be NULL).
 * error_message is decoded from `charset` (a bare name such as "GBK" or a
 * "...; charset=GBK" value) with iconv(3); without a charset, text that is
 * not UTF-8 is taken as GBK (GB18030). Bytes that still do not decode become
 * '?'. Returns 0, -EINVAL or -ENOMEM. Free with cas_error_done(). */
int cas_error_from_headers(int http_status, const char *error_code, const char *error_message, const char *charset,
                           cas_error *ret);
void cas_error_done(cas_error *e);

/* English text for a known Error-Code, NULL for an unknown one. */
const char *cas_error_code_describe(int64_t cas_code);

#endif
