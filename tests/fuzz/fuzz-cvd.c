/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-cvd.c -- fuzz target for the control protocol codec: the input is a
 * byte stream as it would arrive on a control connection (frames).
 *
 * Besides not crashing, it checks what the codec promises: the decoder
 * yields the same messages and the same verdict whether the stream comes in
 * one piece or byte by byte; a failure is -EBADMSG with a reason; every
 * message goes through every parser, and whatever parses has valid names
 * and paths and builds back into JSON that parses to the same thing; every
 * message re-encodes into a frame that decodes to an equal object.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "transport/cvd-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                                                 \
        do {                                                                                                           \
                if (!(x)) {                                                                                            \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);                                        \
                        abort();                                                                                       \
                }                                                                                                      \
        } while (0)

#define MAX_MSGS 64

/* Decodes data in pieces of step bytes; returns the final verdict (0 or
 * -EBADMSG) and the messages, at most MAX_MSGS. */
static int decode(const uint8_t *data, size_t size, size_t step, json_t **msgs, size_t *ret_n)
{
        tp_cvd_decoder d = TP_CVD_DECODER_INIT;
        size_t n = 0;
        int r = 0;

        for (size_t at = 0; at < size && r >= 0 && n < MAX_MSGS;) {
                size_t piece = MIN(step, size - at);

                while (piece > 0 && n < MAX_MSGS) {
                        size_t used;
                        json_t *m;

                        r = tp_cvd_decoder_feed(&d, data + at, piece, &used, &m);
                        FUZZ_ASSERT(used <= piece);
                        at += used;
                        piece -= used;
                        if (r < 0) {
                                FUZZ_ASSERT(r == -EBADMSG);
                                FUZZ_ASSERT(d.why.msg[0]);
                                FUZZ_ASSERT(m == NULL);
                                break;
                        }
                        if (r == 1) {
                                FUZZ_ASSERT(json_is_object(m));
                                msgs[n++] = m;
                        } else
                                FUZZ_ASSERT(piece == 0); /* more bytes are needed: all were taken */
                }
        }
        tp_cvd_decoder_reset(&d);
        *ret_n = n;
        return r < 0 ? r : 0;
}

static void check_request(json_t *j)
{
        tp_cvd_request rq = { 0 }, back = { 0 };
        tp_cvd_why why = { "" };
        json_t *j2, *j3;
        int r = tp_cvd_request_parse(j, &rq, &why);

        if (r < 0) {
                FUZZ_ASSERT(r == -EPROTO || r == -EINVAL);
                FUZZ_ASSERT(why.msg[0]);
                FUZZ_ASSERT(r == -EPROTO || (rq.id >= 1 && rq.id <= (uint64_t)TP_CVD_ID_MAX));
                return;
        }
        FUZZ_ASSERT(rq.id >= 1 && rq.id <= (uint64_t)TP_CVD_ID_MAX);
        switch (rq.op) {
        case TP_CVD_OP_DISK_OPEN:
                FUZZ_ASSERT(tp_cvd_name_valid(rq.open.vm) && tp_cvd_path_valid(rq.open.path));
                FUZZ_ASSERT(!rq.open.snapshot || tp_cvd_name_valid(rq.open.snapshot));
                FUZZ_ASSERT(!rq.open.since || tp_cvd_name_valid(rq.open.since));
                FUZZ_ASSERT(!rq.open.checkpoint || tp_cvd_name_valid(rq.open.checkpoint));
                FUZZ_ASSERT(!rq.open.write || (!rq.open.snapshot && !rq.open.since));
                break;
        case TP_CVD_OP_BITMAP_CREATE:
        case TP_CVD_OP_BITMAP_REMOVE:
                FUZZ_ASSERT(tp_cvd_name_valid(rq.bitmap.name));
                /* fall through */
        case TP_CVD_OP_BITMAP_LIST:
                FUZZ_ASSERT(tp_cvd_name_valid(rq.bitmap.vm) && tp_cvd_path_valid(rq.bitmap.path));
                break;
        case TP_CVD_OP_DISK_CLOSE:
                FUZZ_ASSERT(rq.handle && rq.handle[0]);
                break;
        case TP_CVD_OP_HELLO:
                FUZZ_ASSERT(rq.hello.version >= 1);
                FUZZ_ASSERT(rq.hello.method == TP_CVD_AUTH_TOKEN ? strlen(rq.hello.proof) == TP_CVD_PROOF_HEX
                                                                 : rq.hello.user && rq.hello.password);
                break;
        case TP_CVD_OP_PING:
                break;
        default:
                FUZZ_ASSERT(!"a parsed request has an unknown op");
        }
        /* Built back, it parses to the same request, which builds the same JSON. */
        j2 = tp_cvd_request_to_json(&rq);
        FUZZ_ASSERT(j2);
        FUZZ_ASSERT(tp_cvd_request_parse(j2, &back, &why) == 0);
        FUZZ_ASSERT(back.id == rq.id && back.op == rq.op);
        j3 = tp_cvd_request_to_json(&back);
        FUZZ_ASSERT(j3 && json_equal(j2, j3));
        json_decref(j3);
        json_decref(j2);
}

static void check_replies(json_t *j)
{
        tp_cvd_why why = { "" };
        tp_cvd_welcome w;
        tp_cvd_reply rp;
        tp_cvd_hello_reply h;
        tp_cvd_open_reply o, o2;
        tp_cvd_bitmap_list_reply b = { 0 }, b2 = { 0 };
        int64_t t;
        json_t *j2;

        if (tp_cvd_welcome_parse(j, &w, &why) == 0) {
                FUZZ_ASSERT(strlen(w.nonce) == TP_CVD_NONCE_HEX);
                FUZZ_ASSERT(w.version_max >= 1);
                FUZZ_ASSERT(!w.v1 || w.version_max >= TP_CVD_VERSION);
        }
        if (tp_cvd_reply_parse(j, &rp, &why) == 0)
                FUZZ_ASSERT(rp.ok || (rp.code && rp.code[0] && rp.message));
        if (tp_cvd_hello_reply_parse(j, &h, &why) == 0) {
                FUZZ_ASSERT(h.version >= 1 && h.timeout >= 1);
                j2 = tp_cvd_hello_reply_new(1, &h);
                FUZZ_ASSERT(j2);
                json_decref(j2);
        }
        if (tp_cvd_open_reply_parse(j, &o, &why) == 0) {
                FUZZ_ASSERT(o.port >= 1 && o.n_contexts <= TP_CVD_CONTEXTS_MAX);
                j2 = tp_cvd_open_reply_new(7, &o);
                FUZZ_ASSERT(j2);
                FUZZ_ASSERT(tp_cvd_open_reply_parse(j2, &o2, &why) == 0);
                FUZZ_ASSERT(streq(o.handle, o2.handle) && streq(o.host, o2.host) && o.port == o2.port);
                FUZZ_ASSERT(streq(o.export_name, o2.export_name) && o.size == o2.size);
                FUZZ_ASSERT(o.cluster_size == o2.cluster_size && o.granularity == o2.granularity);
                FUZZ_ASSERT(o.n_contexts == o2.n_contexts && o.running == o2.running);
                for (size_t i = 0; i < o.n_contexts; i++)
                        FUZZ_ASSERT(streq(o.contexts[i], o2.contexts[i]));
                json_decref(j2);
        }
        if (tp_cvd_bitmap_list_reply_parse(j, &b, &why) == 0) {
                j2 = tp_cvd_bitmap_list_reply_new(7, b.bitmaps, b.n_bitmaps);
                FUZZ_ASSERT(j2);
                FUZZ_ASSERT(tp_cvd_bitmap_list_reply_parse(j2, &b2, &why) == 0);
                FUZZ_ASSERT(b.n_bitmaps == b2.n_bitmaps);
                for (size_t i = 0; i < b.n_bitmaps; i++) {
                        FUZZ_ASSERT(streq(b.bitmaps[i].name, b2.bitmaps[i].name));
                        FUZZ_ASSERT(b.bitmaps[i].granularity == b2.bitmaps[i].granularity);
                        FUZZ_ASSERT(b.bitmaps[i].dirty_bytes == b2.bitmaps[i].dirty_bytes);
                        FUZZ_ASSERT(b.bitmaps[i].persistent == b2.bitmaps[i].persistent);
                        FUZZ_ASSERT(b.bitmaps[i].enabled == b2.bitmaps[i].enabled);
                }
                tp_cvd_bitmap_list_reply_done(&b2);
                tp_cvd_bitmap_list_reply_done(&b);
                json_decref(j2);
        }
        (void)tp_cvd_ping_reply_parse(j, &t, &why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *whole[MAX_MSGS], *bytes[MAX_MSGS];
        size_t n_whole, n_bytes;
        int r_whole, r_bytes;

        r_whole = decode(data, size, size ? size : 1, whole, &n_whole);
        r_bytes = decode(data, size, 1, bytes, &n_bytes);
        FUZZ_ASSERT(n_whole == n_bytes);
        FUZZ_ASSERT(r_whole == r_bytes || n_whole == MAX_MSGS);
        for (size_t i = 0; i < n_whole; i++) {
                char *frame;
                size_t len, n_again;
                json_t *again[MAX_MSGS];

                FUZZ_ASSERT(json_equal(whole[i], bytes[i]));
                check_request(whole[i]);
                check_replies(whole[i]);

                /* Re-encoded, it decodes to an equal object. */
                if (tp_cvd_frame_encode(whole[i], &frame, &len) == 0) {
                        FUZZ_ASSERT(decode((const uint8_t *)frame, len, len, again, &n_again) == 0);
                        FUZZ_ASSERT(n_again == 1 && json_equal(again[0], whole[i]));
                        json_decref(again[0]);
                        free(frame);
                }
                json_decref(whole[i]);
                json_decref(bytes[i]);
        }
        return 0;
}
