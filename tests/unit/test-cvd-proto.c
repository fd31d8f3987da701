/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cvd-proto.c -- the control protocol codec: frames and the
 * incremental decoder, every message's round trip and rejections, the error
 * code mapping, and the authentication helpers against vectors computed
 * independently (python3's hmac and hashlib).
 */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "daemon/util.h"
#include "tests/unit/test.h"
#include "transport/cvd-proto.h"

#define NONCE "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static json_t *parse(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);

        if (!j)
                TEST_FAIL_("bad test JSON '%s': %s", text, e.text);
        return j;
}

/* Feeds all of buf, in pieces of step bytes; collects the messages. */
static int feed_all(tp_cvd_decoder *d, const char *buf, size_t len, size_t step, json_t **msgs, size_t max,
                    size_t *ret_n)
{
        size_t n = 0;

        for (size_t at = 0; at < len;) {
                size_t piece = MIN(step, len - at), used;

                while (piece > 0) {
                        json_t *m;
                        int r = tp_cvd_decoder_feed(d, buf + at, piece, &used, &m);

                        if (r < 0) {
                                *ret_n = n;
                                return r;
                        }
                        at += used;
                        piece -= used;
                        if (r == 1) {
                                ASSERT_TRUE(n < max);
                                msgs[n++] = m;
                        }
                }
        }
        *ret_n = n;
        return 0;
}

/* --- frames ------------------------------------------------------------- */

TEST(frame_encode_bytes)
{
        json_t *j = json_pack("{s:i, s:s}", "id", 2, "op", "ping");
        static const char want[] = "\x00\x00\x00\x14{\"id\":2,\"op\":\"ping\"}";
        char *buf;
        size_t len;

        ASSERT_OK(tp_cvd_frame_encode(j, &buf, &len));
        ASSERT_EQ(len, sizeof(want) - 1);
        ASSERT_MEMEQ(buf, want, len);
        free(buf);
        json_decref(j);

        j = json_array();
        ASSERT_ERR(tp_cvd_frame_encode(j, &buf, &len), EINVAL);
        json_decref(j);
}

TEST(frame_encode_too_big)
{
        size_t n = TP_CVD_FRAME_MAX; /* the string alone fills the frame; its quotes overflow it */
        char *s = malloc(n + 1);
        json_t *j;
        char *buf;
        size_t len;

        memset(s, 'a', n);
        s[n] = 0;
        j = json_pack("{s:s}", "x", s);
        ASSERT_ERR(tp_cvd_frame_encode(j, &buf, &len), E2BIG);
        json_decref(j);

        /* Exactly TP_CVD_FRAME_MAX bytes of JSON is fine, and decodes. */
        n = TP_CVD_FRAME_MAX - strlen("{\"x\":\"\"}");
        s[n] = 0;
        j = json_pack("{s:s}", "x", s);
        ASSERT_OK(tp_cvd_frame_encode(j, &buf, &len));
        ASSERT_EQ(len, 4 + TP_CVD_FRAME_MAX);
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        json_t *m[1];
        size_t got;
        ASSERT_OK(feed_all(&d, buf, len, len, m, 1, &got));
        ASSERT_EQ(got, 1);
        ASSERT_EQ(strlen(json_string_value(json_object_get(m[0], "x"))), n);
        json_decref(m[0]);
        tp_cvd_decoder_reset(&d);
        free(buf);
        free(s);
        json_decref(j);
}

/* Three messages as one stream, fed whole, in twos, byte by byte, 7 at a time. */
TEST(decoder_pieces)
{
        const char *texts[] = { "{\"id\":1,\"op\":\"ping\"}", "{\"a\":[1,2,{\"b\":null}],\"s\":\"\\u00e9t\\u00e9\"}",
                                "{}" };
        size_t steps[] = { 1, 2, 7, 4096 };
        char *stream = NULL;
        size_t stream_len = 0;

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                json_t *j = parse(texts[i]);
                char *buf;
                size_t len;

                ASSERT_OK(tp_cvd_frame_encode(j, &buf, &len));
                stream = realloc(stream, stream_len + len);
                memcpy(stream + stream_len, buf, len);
                stream_len += len;
                free(buf);
                json_decref(j);
        }
        for (size_t s = 0; s < ELEMENTSOF(steps); s++) {
                tp_cvd_decoder d = TP_CVD_DECODER_INIT;
                json_t *m[3];
                size_t n;

                ASSERT_OK(feed_all(&d, stream, stream_len, steps[s], m, 3, &n));
                ASSERT_EQ(n, 3);
                ASSERT_EQ(tp_cvd_decoder_pending(&d), 0);
                for (size_t i = 0; i < 3; i++) {
                        json_t *want = parse(texts[i]);
                        ASSERT_TRUE(json_equal(m[i], want));
                        json_decref(want);
                        json_decref(m[i]);
                }
                tp_cvd_decoder_reset(&d);
        }
        free(stream);
}

TEST(decoder_partial_then_more)
{
        static const char frame[] = "\x00\x00\x00\x02{}";
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        json_t *m = NULL;
        size_t used;

        ASSERT_EQ(tp_cvd_decoder_feed(&d, frame, 5, &used, &m), 0);
        ASSERT_EQ(used, 5);
        ASSERT_EQ(tp_cvd_decoder_pending(&d), 5);
        ASSERT_EQ(tp_cvd_decoder_feed(&d, frame + 5, 1, &used, &m), 1);
        ASSERT_EQ(used, 1);
        ASSERT_TRUE(json_is_object(m));
        json_decref(m);
        tp_cvd_decoder_reset(&d);
}

static void expect_bad_frame(const char *bytes, size_t len, const char *why_part)
{
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        json_t *m[4];
        size_t n;

        ASSERT_ERR(feed_all(&d, bytes, len, len, m, 4, &n), EBADMSG);
        for (size_t i = 0; i < n; i++)
                json_decref(m[i]);
        if (!strstr(d.why.msg, why_part))
                TEST_FAIL_("why '%s' lacks '%s'", d.why.msg, why_part);
        /* The stream stays failed. */
        size_t used;
        json_t *x;
        ASSERT_ERR(tp_cvd_decoder_feed(&d, "\x00\x00\x00\x02{}", 6, &used, &x), EBADMSG);
        tp_cvd_decoder_reset(&d);
}

TEST(decoder_rejections)
{
        expect_bad_frame("\x00\x00\x00\x00", 4, "frame length 0");
        expect_bad_frame("\x00\x10\x00\x01{}", 6, "frame length 1048577");
        expect_bad_frame("\xff\xff\xff\xff", 4, "outside 1..1048576");
        expect_bad_frame("\x00\x00\x00\x03{x}", 7, "not valid JSON");
        expect_bad_frame("\x00\x00\x00\x02[]", 6, "array, not an object");
        expect_bad_frame("\x00\x00\x00\x01"
                         "1",
                         5, "not valid JSON");
        expect_bad_frame("\x00\x00\x00\x04{}{}", 8, "not valid JSON");
        expect_bad_frame("\x00\x00\x00\x0f{\"a\":1,\"a\":2} ", 19, "duplicate");
        expect_bad_frame("\x00\x00\x00\x08{\"a\":\"\xff\"}", 12, "not valid JSON");
        expect_bad_frame("\x00\x00\x00\x0d{\"a\":\"\\u0000\"}", 17, "not valid JSON");
        /* A good frame, then a bad one: the first still comes out. */
        static const char two[] = "\x00\x00\x00\x02{}\x00\x00\x00\x00";
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        json_t *m[2];
        size_t n;
        ASSERT_ERR(feed_all(&d, two, sizeof(two) - 1, 64, m, 2, &n), EBADMSG);
        ASSERT_EQ(n, 1);
        json_decref(m[0]);
        tp_cvd_decoder_reset(&d);
}

/* --- names and codes ---------------------------------------------------- */

TEST(names_and_paths)
{
        char long_name[66];

        ASSERT_TRUE(tp_cvd_name_valid("vm1"));
        ASSERT_TRUE(tp_cvd_name_valid("a.b_c-D9"));
        ASSERT_TRUE(tp_cvd_name_valid("_x"));
        ASSERT_TRUE(!tp_cvd_name_valid(""));
        ASSERT_TRUE(!tp_cvd_name_valid(NULL));
        ASSERT_TRUE(!tp_cvd_name_valid("a b"));
        ASSERT_TRUE(!tp_cvd_name_valid("a/b"));
        ASSERT_TRUE(!tp_cvd_name_valid("-x"));
        ASSERT_TRUE(!tp_cvd_name_valid(".x"));
        ASSERT_TRUE(!tp_cvd_name_valid("é"));
        memset(long_name, 'a', 65);
        long_name[65] = 0;
        ASSERT_TRUE(!tp_cvd_name_valid(long_name));
        long_name[64] = 0;
        ASSERT_TRUE(tp_cvd_name_valid(long_name));

        ASSERT_TRUE(tp_cvd_path_valid("/a"));
        ASSERT_TRUE(!tp_cvd_path_valid("a/b"));
        ASSERT_TRUE(!tp_cvd_path_valid(""));
        char *p = malloc(TP_CVD_PATH_MAX + 2);
        memset(p, 'x', TP_CVD_PATH_MAX + 1);
        p[0] = '/';
        p[TP_CVD_PATH_MAX] = 0;
        ASSERT_TRUE(tp_cvd_path_valid(p));
        p[TP_CVD_PATH_MAX] = 'x';
        p[TP_CVD_PATH_MAX + 1] = 0;
        ASSERT_TRUE(!tp_cvd_path_valid(p));
        free(p);
}

TEST(error_codes)
{
        ASSERT_EQ(tp_cvd_error_to_vb("protocol"), VB_E_PROTOCOL);
        ASSERT_EQ(tp_cvd_error_to_vb("version"), VB_E_PROTOCOL);
        ASSERT_EQ(tp_cvd_error_to_vb("auth"), VB_E_AUTH);
        ASSERT_EQ(tp_cvd_error_to_vb("denied"), VB_E_REFUSED);
        ASSERT_EQ(tp_cvd_error_to_vb("busy"), VB_E_REFUSED);
        ASSERT_EQ(tp_cvd_error_to_vb("not-found"), VB_E_NOT_FOUND);
        ASSERT_EQ(tp_cvd_error_to_vb("exists"), VB_E_EXISTS);
        ASSERT_EQ(tp_cvd_error_to_vb("invalid"), VB_E_USAGE);
        ASSERT_EQ(tp_cvd_error_to_vb("io"), VB_E_SOURCE);
        ASSERT_EQ(tp_cvd_error_to_vb("internal"), VB_E_FAILED);
        ASSERT_EQ(tp_cvd_error_to_vb("something-new"), VB_E_FAILED);
        ASSERT_EQ(tp_cvd_error_to_vb(NULL), VB_E_FAILED);

        for (int c = 0; c < _TP_CVD_E_MAX; c++)
                ASSERT_EQ(tp_cvd_code_from_string(tp_cvd_code_to_string((tp_cvd_code)c)), c);
        ASSERT_EQ(tp_cvd_code_from_string("nope"), _TP_CVD_E_INVALID);
        ASSERT_TRUE(tp_cvd_code_to_string(_TP_CVD_E_MAX) == NULL);

        ASSERT_EQ(tp_cvd_code_from_errno(-EACCES), TP_CVD_E_DENIED);
        ASSERT_EQ(tp_cvd_code_from_errno(-ENOENT), TP_CVD_E_NOT_FOUND);
        ASSERT_EQ(tp_cvd_code_from_errno(-EEXIST), TP_CVD_E_EXISTS);
        ASSERT_EQ(tp_cvd_code_from_errno(-EBUSY), TP_CVD_E_BUSY);
        ASSERT_EQ(tp_cvd_code_from_errno(-EINVAL), TP_CVD_E_INVALID);
        ASSERT_EQ(tp_cvd_code_from_errno(-EIO), TP_CVD_E_IO);
        ASSERT_EQ(tp_cvd_code_from_errno(-ENOMEM), TP_CVD_E_INTERNAL);
}

/* --- requests ----------------------------------------------------------- */

/* Builds rq to JSON, parses it back, and returns the parsed copy's JSON
 * (which must equal the first). */
static void round_trip(const tp_cvd_request *rq, tp_cvd_request *back, json_t **keep)
{
        json_t *j = tp_cvd_request_to_json(rq), *j2;
        tp_cvd_why why = { "" };
        int r;

        ASSERT_TRUE(j);
        r = tp_cvd_request_parse(j, back, &why);
        if (r < 0)
                TEST_FAIL_("round trip of %s failed: %s", tp_cvd_op_to_string(rq->op), why.msg);
        ASSERT_UEQ(back->id, rq->id);
        ASSERT_EQ(back->op, rq->op);
        j2 = tp_cvd_request_to_json(back);
        ASSERT_TRUE(json_equal(j, j2));
        json_decref(j2);
        *keep = j;
}

TEST(request_round_trips)
{
        tp_cvd_request rq, back;
        json_t *j;

        rq = (tp_cvd_request){ .id = 1, .op = TP_CVD_OP_HELLO };
        rq.hello = (tp_cvd_hello_req){ .version = 1,
                                       .client = "vbak/0.1.0",
                                       .method = TP_CVD_AUTH_TOKEN,
                                       .proof = "507b823901e21a3c31a62a3e1905261ae04b1023def0a166d9d4e9b8254adeec" };
        round_trip(&rq, &back, &j);
        ASSERT_EQ(back.hello.method, TP_CVD_AUTH_TOKEN);
        ASSERT_STREQ(back.hello.proof, rq.hello.proof);
        ASSERT_STREQ(back.hello.client, "vbak/0.1.0");
        json_decref(j);

        rq.hello = (tp_cvd_hello_req){ .version = 1, .method = TP_CVD_AUTH_PASSWORD, .user = "alice", .password = "" };
        round_trip(&rq, &back, &j);
        ASSERT_EQ(back.hello.method, TP_CVD_AUTH_PASSWORD);
        ASSERT_STREQ(back.hello.user, "alice");
        ASSERT_STREQ(back.hello.password, "");
        ASSERT_TRUE(back.hello.client == NULL);
        json_decref(j);

        rq = (tp_cvd_request){ .id = 9007199254740991ULL, .op = TP_CVD_OP_DISK_OPEN };
        rq.open = (tp_cvd_open_req){ .vm = "vm1", .path = "/img/a.qcow2", .since = "cp1", .checkpoint = "cp2" };
        round_trip(&rq, &back, &j);
        ASSERT_STREQ(back.open.vm, "vm1");
        ASSERT_STREQ(back.open.path, "/img/a.qcow2");
        ASSERT_TRUE(back.open.snapshot == NULL);
        ASSERT_TRUE(!back.open.write);
        ASSERT_STREQ(back.open.since, "cp1");
        ASSERT_STREQ(back.open.checkpoint, "cp2");
        ASSERT_STREQ(json_string_value(json_object_get(j, "mode")), "read");
        json_decref(j);

        rq.open = (tp_cvd_open_req){ .vm = "vm1", .path = "/img/a.qcow2", .write = true };
        round_trip(&rq, &back, &j);
        ASSERT_TRUE(back.open.write);
        json_decref(j);

        rq = (tp_cvd_request){ .id = 3, .op = TP_CVD_OP_DISK_CLOSE, .handle = "h17" };
        round_trip(&rq, &back, &j);
        ASSERT_STREQ(back.handle, "h17");
        json_decref(j);

        for (tp_cvd_op op = TP_CVD_OP_BITMAP_CREATE; op <= TP_CVD_OP_BITMAP_LIST; op++) {
                rq = (tp_cvd_request){ .id = 4, .op = op, .bitmap = { "vm1", "/img/a.qcow2", "cp3" } };
                if (op == TP_CVD_OP_BITMAP_LIST)
                        rq.bitmap.name = NULL;
                round_trip(&rq, &back, &j);
                ASSERT_STREQ(back.bitmap.vm, "vm1");
                ASSERT_STREQ(back.bitmap.path, "/img/a.qcow2");
                ASSERT_TRUE(streq_ptr(back.bitmap.name, rq.bitmap.name));
                json_decref(j);
        }

        rq = (tp_cvd_request){ .id = 5, .op = TP_CVD_OP_PING };
        round_trip(&rq, &back, &j);
        json_decref(j);
}

TEST(request_defaults_and_unknown_fields)
{
        json_t *j = parse("{\"id\":7,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"future\":{\"x\":1}}");
        tp_cvd_request rq;

        ASSERT_OK(tp_cvd_request_parse(j, &rq, NULL));
        ASSERT_TRUE(!rq.open.write);
        ASSERT_TRUE(!rq.open.snapshot && !rq.open.since && !rq.open.checkpoint);
        json_decref(j);
}

static void expect_request_error(const char *text, int err, uint64_t id, const char *why_part)
{
        json_t *j = parse(text);
        tp_cvd_request rq = { 0 };
        tp_cvd_why why = { "" };
        int r = tp_cvd_request_parse(j, &rq, &why);

        if (r != -err)
                TEST_FAIL_("%s: expected %d, got %d (%s)", text, -err, r, why.msg);
        if (err == EINVAL)
                ASSERT_UEQ(rq.id, id);
        if (!strstr(why.msg, why_part))
                TEST_FAIL_("%s: why '%s' lacks '%s'", text, why.msg, why_part);
        json_decref(j);
}

TEST(request_rejections)
{
        /* The envelope: protocol errors. */
        expect_request_error("{\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":0,\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":-3,\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":1.5,\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":\"1\",\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":9007199254740992,\"op\":\"ping\"}", EPROTO, 0, "\"id\"");
        expect_request_error("{\"id\":1}", EPROTO, 0, "\"op\"");
        expect_request_error("{\"id\":1,\"op\":7}", EPROTO, 0, "\"op\"");

        /* Bad arguments: invalid, with the id. */
        expect_request_error("{\"id\":2,\"op\":\"disk.format\"}", EINVAL, 2, "unknown op 'disk.format'");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"path\":\"/i\"}", EINVAL, 3, "\"vm\" is missing");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":null,\"path\":\"/i\"}", EINVAL, 3,
                             "\"vm\" is null");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":5,\"path\":\"/i\"}", EINVAL, 3,
                             "\"vm\" must be a string");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"a b\",\"path\":\"/i\"}", EINVAL, 3,
                             "'a b' is not a name");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"i\"}", EINVAL, 3, "absolute path");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"mode\":\"write\"}", EINVAL,
                             3, "\"mode\" must be");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"mode\":null}", EINVAL, 3,
                             "\"mode\" is null");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"since\":\"-x\"}", EINVAL, 3,
                             "\"since\"");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"checkpoint\":true}", EINVAL,
                             3, "\"checkpoint\" must be a string");
        expect_request_error("{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/"
                             "i\",\"mode\":\"read-write\",\"snapshot\":\"s\"}",
                             EINVAL, 3, "snapshot cannot be opened read-write");
        expect_request_error(
                "{\"id\":3,\"op\":\"disk.open\",\"vm\":\"v\",\"path\":\"/i\",\"mode\":\"read-write\",\"since\":\"c\"}",
                EINVAL, 3, "\"since\" needs mode");
        expect_request_error("{\"id\":4,\"op\":\"disk.close\"}", EINVAL, 4, "\"handle\" is missing");
        expect_request_error("{\"id\":4,\"op\":\"disk.close\",\"handle\":\"\"}", EINVAL, 4, "\"handle\" is empty");
        expect_request_error("{\"id\":5,\"op\":\"bitmap.create\",\"vm\":\"v\",\"path\":\"/i\"}", EINVAL, 5,
                             "bitmap.create: \"name\" is missing");
        expect_request_error("{\"id\":5,\"op\":\"bitmap.list\",\"vm\":\"v\"}", EINVAL, 5,
                             "bitmap.list: \"path\" is missing");
        expect_request_error("{\"id\":6,\"op\":\"hello\",\"auth\":{\"method\":\"token\",\"proof\":\"00\"}}", EINVAL, 6,
                             "\"version\" is missing");
        expect_request_error("{\"id\":6,\"op\":\"hello\",\"version\":1}", EINVAL, 6, "\"auth\" must be an object");
        expect_request_error(
                "{\"id\":6,\"op\":\"hello\",\"version\":1,\"auth\":{\"method\":\"token\",\"proof\":\"00\"}}", EINVAL, 6,
                "64 hex digits");
        expect_request_error("{\"id\":6,\"op\":\"hello\",\"version\":1,\"auth\":{\"method\":\"kerberos\"}}", EINVAL, 6,
                             "unknown method 'kerberos'");
        expect_request_error("{\"id\":6,\"op\":\"hello\",\"version\":1,\"auth\":{\"method\":\"password\",\"user\":\"a:"
                             "b\",\"password\":\"p\"}}",
                             EINVAL, 6, "must not contain ':'");
        expect_request_error(
                "{\"id\":6,\"op\":\"hello\",\"version\":1,\"auth\":{\"method\":\"password\",\"user\":\"a\"}}", EINVAL,
                6, "\"password\" is missing");
}

/* --- server messages ---------------------------------------------------- */

TEST(welcome)
{
        json_t *j = tp_cvd_welcome_new(NONCE, true, false, true);
        tp_cvd_welcome w;
        tp_cvd_why why = { "" };

        ASSERT_TRUE(j);
        ASSERT_OK(tp_cvd_welcome_parse(j, &w, &why));
        ASSERT_STREQ(w.service, "vbak-cvd");
        ASSERT_TRUE(w.v1);
        ASSERT_EQ(w.version_max, 1);
        ASSERT_STREQ(w.nonce, NONCE);
        ASSERT_TRUE(w.auth_token && !w.auth_password && w.tls);
        json_decref(j);

        j = parse("{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[3,2],\"nonce\":\"" NONCE
                  "\",\"auth\":[\"password\",\"kerberos\"],\"tls\":false,\"motd\":\"hi\"}");
        ASSERT_OK(tp_cvd_welcome_parse(j, &w, &why));
        ASSERT_TRUE(!w.v1);
        ASSERT_EQ(w.version_max, 3);
        ASSERT_TRUE(!w.auth_token && w.auth_password && !w.tls);
        json_decref(j);

        static const char *const bad[] = {
                "{\"op\":\"hello\"}",
                "{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[],\"nonce\":\"" NONCE
                "\",\"auth\":[],\"tls\":false}",
                "{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[0],\"nonce\":\"" NONCE
                "\",\"auth\":[],\"tls\":false}",
                "{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[1],\"nonce\":\"abc\",\"auth\":[],\"tls\":false}",
                "{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[1],\"nonce\":\"" NONCE
                "\",\"auth\":[1],\"tls\":false}",
                "{\"op\":\"welcome\",\"service\":\"x\",\"versions\":[1],\"nonce\":\"" NONCE "\",\"auth\":[]}",
                "{\"op\":\"welcome\",\"versions\":[1],\"nonce\":\"" NONCE "\",\"auth\":[],\"tls\":false}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                j = parse(bad[i]);
                why.msg[0] = 0;
                if (tp_cvd_welcome_parse(j, &w, &why) != -EBADMSG || !why.msg[0])
                        TEST_FAIL_("welcome accepted: %s", bad[i]);
                json_decref(j);
        }
}

TEST(reply_envelope)
{
        tp_cvd_reply rp;
        tp_cvd_why why = { "" };
        json_t *j;

        j = tp_cvd_reply_ok_new(12);
        ASSERT_OK(tp_cvd_reply_parse(j, &rp, &why));
        ASSERT_UEQ(rp.id, 12);
        ASSERT_TRUE(rp.ok);
        json_decref(j);

        j = tp_cvd_reply_error_new(0, TP_CVD_E_BUSY, "vbak-cvd serves at most 64 clients");
        ASSERT_OK(tp_cvd_reply_parse(j, &rp, &why));
        ASSERT_UEQ(rp.id, 0);
        ASSERT_TRUE(!rp.ok);
        ASSERT_STREQ(rp.code, "busy");
        ASSERT_STREQ(rp.message, "vbak-cvd serves at most 64 clients");
        json_decref(j);

        static const char *const bad[] = {
                "{\"ok\":true}",
                "{\"id\":-1,\"ok\":true}",
                "{\"id\":1,\"ok\":1}",
                "{\"id\":1,\"ok\":false}",
                "{\"id\":1,\"ok\":false,\"error\":\"busy\"}",
                "{\"id\":1,\"ok\":false,\"error\":{\"code\":\"\",\"message\":\"m\"}}",
                "{\"id\":1,\"ok\":false,\"error\":{\"code\":\"busy\"}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                j = parse(bad[i]);
                if (tp_cvd_reply_parse(j, &rp, &why) != -EBADMSG)
                        TEST_FAIL_("reply accepted: %s", bad[i]);
                json_decref(j);
        }
}

TEST(hello_reply)
{
        tp_cvd_hello_reply h = { 1, "vbak-cvd/0.1.0", "abcd", 600 }, back;
        json_t *j = tp_cvd_hello_reply_new(1, &h);
        tp_cvd_why why = { "" };

        ASSERT_OK(tp_cvd_hello_reply_parse(j, &back, &why));
        ASSERT_EQ(back.version, 1);
        ASSERT_STREQ(back.server, "vbak-cvd/0.1.0");
        ASSERT_STREQ(back.session, "abcd");
        ASSERT_EQ(back.timeout, 600);
        json_object_set_new(j, "timeout", json_integer(0));
        ASSERT_ERR(tp_cvd_hello_reply_parse(j, &back, &why), EBADMSG);
        ASSERT_TRUE(strstr(why.msg, "\"timeout\""));
        json_decref(j);
}

TEST(open_reply)
{
        tp_cvd_open_reply o = { .handle = "h1",
                                .host = "127.0.0.1",
                                .port = 10001,
                                .export_name = "vbak-0123",
                                .size = 1ULL << 40,
                                .format = "qcow2",
                                .cluster_size = 65536,
                                .granularity = 65536,
                                .contexts = { "base:allocation", "qemu:dirty-bitmap:cp1" },
                                .n_contexts = 2,
                                .running = true },
                          back;
        json_t *j = tp_cvd_open_reply_new(5, &o), *ctx;
        tp_cvd_why why = { "" };

        ASSERT_OK(tp_cvd_open_reply_parse(j, &back, &why));
        ASSERT_STREQ(back.handle, "h1");
        ASSERT_STREQ(back.host, "127.0.0.1");
        ASSERT_EQ(back.port, 10001);
        ASSERT_STREQ(back.export_name, "vbak-0123");
        ASSERT_UEQ(back.size, 1ULL << 40);
        ASSERT_STREQ(back.format, "qcow2");
        ASSERT_EQ(back.cluster_size, 65536);
        ASSERT_EQ(back.granularity, 65536);
        ASSERT_EQ(back.n_contexts, 2);
        ASSERT_STREQ(back.contexts[1], "qemu:dirty-bitmap:cp1");
        ASSERT_TRUE(back.running);

        json_object_set_new(j, "port", json_integer(0));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_object_set_new(j, "port", json_integer(65536));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_object_set_new(j, "port", json_integer(10001));
        json_object_set_new(j, "size", json_integer(-1));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_object_set_new(j, "size", json_string("1"));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_object_set_new(j, "size", json_integer(1));
        ctx = json_object_get(j, "contexts");
        for (int i = 0; i < TP_CVD_CONTEXTS_MAX; i++)
                json_array_append_new(ctx, json_string("x:y"));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        ASSERT_TRUE(strstr(why.msg, "\"contexts\""));
        json_array_clear(ctx);
        json_array_append_new(ctx, json_integer(1));
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_array_clear(ctx);
        ASSERT_OK(tp_cvd_open_reply_parse(j, &back, &why));
        ASSERT_EQ(back.n_contexts, 0);
        json_object_del(j, "running");
        ASSERT_ERR(tp_cvd_open_reply_parse(j, &back, &why), EBADMSG);
        json_decref(j);
}

TEST(bitmap_list_and_ping_replies)
{
        tp_cvd_bitmap v[2] = { { "cp1", 65536, true, true, 131072 }, { "cp2", 4096, false, false, 0 } };
        tp_cvd_bitmap_list_reply back = { 0 };
        json_t *j = tp_cvd_bitmap_list_reply_new(3, v, 2);
        tp_cvd_why why = { "" };
        int64_t t;

        ASSERT_OK(tp_cvd_bitmap_list_reply_parse(j, &back, &why));
        ASSERT_EQ(back.n_bitmaps, 2);
        ASSERT_STREQ(back.bitmaps[0].name, "cp1");
        ASSERT_EQ(back.bitmaps[0].granularity, 65536);
        ASSERT_TRUE(back.bitmaps[0].persistent && back.bitmaps[0].enabled);
        ASSERT_UEQ(back.bitmaps[0].dirty_bytes, 131072);
        ASSERT_TRUE(!back.bitmaps[1].persistent && !back.bitmaps[1].enabled);
        tp_cvd_bitmap_list_reply_done(&back);
        ASSERT_TRUE(back.bitmaps == NULL);
        json_object_set_new(json_array_get(json_object_get(j, "bitmaps"), 1), "enabled", json_string("yes"));
        ASSERT_ERR(tp_cvd_bitmap_list_reply_parse(j, &back, &why), EBADMSG);
        ASSERT_TRUE(strstr(why.msg, "\"enabled\""));
        json_decref(j);

        j = tp_cvd_bitmap_list_reply_new(3, NULL, 0);
        ASSERT_OK(tp_cvd_bitmap_list_reply_parse(j, &back, &why));
        ASSERT_EQ(back.n_bitmaps, 0);
        tp_cvd_bitmap_list_reply_done(&back);
        json_decref(j);

        j = tp_cvd_ping_reply_new(4, 1700000000);
        ASSERT_OK(tp_cvd_ping_reply_parse(j, &t, &why));
        ASSERT_EQ(t, 1700000000);
        json_object_set_new(j, "time", json_real(1.5));
        ASSERT_ERR(tp_cvd_ping_reply_parse(j, &t, &why), EBADMSG);
        json_decref(j);
}

/* --- authentication ----------------------------------------------------- */

TEST(token_proof_vector)
{
        /* python3 -c 'import hmac,hashlib; print(hmac.new(b"vbak-test-token-0123456789",
         *             NONCE.encode(), hashlib.sha256).hexdigest())' */
        static const char want[] = "507b823901e21a3c31a62a3e1905261ae04b1023def0a166d9d4e9b8254adeec";
        static const char token[] = "vbak-test-token-0123456789";
        char proof[TP_CVD_PROOF_HEX + 1], upper[TP_CVD_PROOF_HEX + 1];

        ASSERT_OK(tp_cvd_token_proof(token, strlen(token), NONCE, proof));
        ASSERT_STREQ(proof, want);
        ASSERT_OK(tp_cvd_token_check(token, strlen(token), NONCE, want));
        for (size_t i = 0; i <= TP_CVD_PROOF_HEX; i++)
                upper[i] = (char)(want[i] >= 'a' && want[i] <= 'f' ? want[i] - 32 : want[i]);
        ASSERT_OK(tp_cvd_token_check(token, strlen(token), NONCE, upper));

        ASSERT_ERR(tp_cvd_token_check("vbak-test-token-0123456780", strlen(token), NONCE, want), EKEYREJECTED);
        proof[10] = proof[10] == '0' ? '1' : '0';
        ASSERT_ERR(tp_cvd_token_check(token, strlen(token), NONCE, proof), EKEYREJECTED);
        ASSERT_ERR(tp_cvd_token_check(token, strlen(token), NONCE, "00"), EKEYREJECTED);
        ASSERT_ERR(tp_cvd_token_proof(token, strlen(token), "not-a-nonce", proof), EINVAL);
}

TEST(nonce)
{
        char a[TP_CVD_NONCE_HEX + 1], b[TP_CVD_NONCE_HEX + 1];

        ASSERT_OK(tp_cvd_nonce_new(a));
        ASSERT_OK(tp_cvd_nonce_new(b));
        ASSERT_EQ(strlen(a), TP_CVD_NONCE_HEX);
        ASSERT_EQ(strspn(a, "0123456789abcdef"), TP_CVD_NONCE_HEX);
        ASSERT_TRUE(!streq(a, b));
}

TEST(token_parse)
{
        static const char text[] = "  0123456789abcdef-more \r\nsecond line\n";
        char *t = NULL;

        ASSERT_OK(tp_cvd_token_parse(text, strlen(text), &t));
        ASSERT_STREQ(t, "0123456789abcdef-more");
        free(t);
        ASSERT_OK(tp_cvd_token_parse("0123456789abcdef", 16, &t));
        ASSERT_STREQ(t, "0123456789abcdef");
        free(t);
        ASSERT_ERR(tp_cvd_token_parse("0123456789abcde\n0123456789abcdef", 32, &t), EINVAL);
        ASSERT_ERR(tp_cvd_token_parse("", 0, &t), EINVAL);
}

TEST(credentials)
{
        /* The documented python3 one-liner's output for salt 00..0f and "correct horse". */
        static const char py[] = "alice:000102030405060708090a0b0c0d0e0f:"
                                 "57f2c2f0739748d516419b062a884666323c583ea4ae165504a81f7b53c62a09";
        _cleanup_free_ char *line = NULL, *text = NULL;
        unsigned bad = 0;

        ASSERT_OK(tp_cvd_credentials_line("bob", "s3cret", &line));
        ASSERT_TRUE(asprintf(&text, "# users of vbak-cvd\n\n%s\r\n  %s  \n", py, line) > 0);
        ASSERT_OK(tp_cvd_credentials_check(text, NULL, NULL, &bad));
        ASSERT_OK(tp_cvd_credentials_check(text, "alice", "correct horse", &bad));
        ASSERT_OK(tp_cvd_credentials_check(text, "bob", "s3cret", &bad));
        ASSERT_ERR(tp_cvd_credentials_check(text, "alice", "s3cret", &bad), EKEYREJECTED);
        ASSERT_ERR(tp_cvd_credentials_check(text, "carol", "correct horse", &bad), EKEYREJECTED);
        ASSERT_ERR(tp_cvd_credentials_check(text, "Alice", "correct horse", &bad), EKEYREJECTED);

        static const char *const malformed[] = {
                "alice\n",
                "alice:0001:57f2c2f0739748d516419b062a884666323c583ea4ae165504a81f7b53c62a09\n",
                "alice:000102030405060708090a0b0c0d0e0f:57f2\n",
                ":000102030405060708090a0b0c0d0e0f:57f2c2f0739748d516419b062a884666323c583ea4ae165504a81f7b53c62a09\n",
                "alice:000102030405060708090a0b0c0d0e0g:"
                "57f2c2f0739748d516419b062a884666323c583ea4ae165504a81f7b53c62a09\n",
                "alice:000102030405060708090a0b0c0d0e0f:"
                "57f2c2f0739748d516419b062a884666323c583ea4ae165504a81f7b53c62a09:extra\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(malformed); i++) {
                _cleanup_free_ char *t = NULL;

                ASSERT_TRUE(asprintf(&t, "# ok\n%s", malformed[i]) > 0);
                bad = 0;
                if (tp_cvd_credentials_check(t, "alice", "correct horse", &bad) != -EBADMSG)
                        TEST_FAIL_("accepted: %s", malformed[i]);
                ASSERT_EQ(bad, 2);
        }
        ASSERT_ERR(tp_cvd_credentials_line("a:b", "p", &line), EINVAL);
}
