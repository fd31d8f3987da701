/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cas-doc.c -- tests for cas/doc.c: every fixture of tests/data/cas/
 * (the captured CAS 2.0 JSON of the reference notes and XML equivalents)
 * parsed and its normalised values checked, the accessors on every quirk,
 * the taskMsg/rsResult envelopes, the error headers (GBK included), and the
 * error paths: malformed XML and JSON, DTDs and entities, depth and size.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cas/doc.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

/* The directory the runner started in (the repository root under make). */
static char start_dir[PATH_MAX];

__attribute__((constructor)) static void remember_start_dir(void)
{
        if (!getcwd(start_dir, sizeof(start_dir)))
                start_dir[0] = 0;
}

static json_t *parse_str(const char *text, const char *content_type)
{
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;
        int r = cas_doc_parse(text, strlen(text), content_type, &j, &err);

        if (r < 0)
                TEST_FAIL_("cas_doc_parse(%s): %d %s", text, r, err ? err : "");
        ASSERT_TRUE(err == NULL);
        return j;
}

/* Parses text expecting failure r, with an explanation. */
static void parse_fails(const char *text, size_t len, const char *content_type, int expected)
{
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;
        int r = cas_doc_parse(text, len, content_type, &j, &err);

        if (r != expected)
                TEST_FAIL_("cas_doc_parse(%.60s): expected %d, got %d", text, expected, r);
        ASSERT_TRUE(j == NULL);
        ASSERT_TRUE(err != NULL && *err);
}

static json_t *load(const char *name)
{
        _cleanup_free_ char *path = NULL, *body = NULL, *err = NULL;
        size_t len;
        json_t *j = NULL;
        int r;

        ASSERT_TRUE(asprintf(&path, "%s/tests/data/cas/%s", start_dir, name) > 0);
        ASSERT_OK(vb_read_file_at(AT_FDCWD, path, 1 << 20, &body, &len));
        r = cas_doc_parse(body, len, strstr(name, ".json") ? "application/json;charset=UTF-8" : "application/xml", &j,
                          &err);
        if (r < 0)
                TEST_FAIL_("%s: %d %s", name, r, err ? err : "");
        ASSERT_TRUE(json_is_object(j));
        return j;
}

static int64_t get_i64(json_t *o, const char *key)
{
        int64_t v = INT64_MIN;

        ASSERT_OK(cas_get_i64(o, key, &v));
        return v;
}

static bool get_bool(json_t *o, const char *key)
{
        bool v = false;

        ASSERT_OK(cas_get_bool(o, key, &v));
        return v;
}

TEST(cas_doc_task_json)
{
        json_t *j = load("task-start.json");
        cas_task t;

        ASSERT_OK(cas_task_from_json(j, &t));
        ASSERT_EQ(t.msg_id, 1440745875877LL); /* beyond 32 bits, from a string */
        ASSERT_EQ(t.completed, false);
        ASSERT_EQ(t.progress, 0);
        ASSERT_EQ(t.result, CAS_TASK_RESULT_NONE);
        ASSERT_EQ(t.target_id, 1416);
        ASSERT_EQ(t.event_type, 0);
        ASSERT_STREQ(t.target_name, "wins7.base");
        ASSERT_TRUE(t.fail_msg == NULL && t.detail == NULL);
        cas_task_done(&t);
        json_decref(j);
}

TEST(cas_doc_message_success_json)
{
        json_t *j = load("message-success.json"), *refresh;
        cas_task t;

        ASSERT_OK(cas_task_from_json(j, &t));
        ASSERT_EQ(t.msg_id, 1442551446492LL);
        ASSERT_EQ(t.completed, true);
        ASSERT_EQ(t.progress, 100);
        ASSERT_EQ(t.result, CAS_TASK_SUCCESS);
        ASSERT_EQ(t.event_type, 30);
        ASSERT_TRUE(t.fail_msg == NULL); /* "" */
        ASSERT_STREQ(t.detail, "启动虚拟机“wins7.base”成功。");
        ASSERT_STREQ(t.name, "启动虚拟机“wins7.base”。");
        refresh = cas_get_obj(j, "refreshData");
        ASSERT_TRUE(refresh != NULL);
        ASSERT_EQ(get_i64(refresh, "value"), 1416);
        ASSERT_EQ(json_array_size(cas_get_list(j, "refreshData")), 1);
        cas_task_done(&t);
        json_decref(j);
}

TEST(cas_doc_message_failure)
{
        json_t *j = load("message-failure.json"), *x = load("message-failure.xml");
        cas_task t;

        ASSERT_OK(cas_task_from_json(j, &t));
        ASSERT_EQ(t.result, CAS_TASK_FAIL);
        ASSERT_EQ(t.progress, 100); /* 100 even on failure (§2.2) */
        ASSERT_STREQ(t.fail_msg, "主机异常或者正在处理其它事务，请稍候重试。");
        ASSERT_EQ(t.target_id, 1417);
        cas_task_done(&t);

        ASSERT_OK(cas_task_from_json(x, &t));
        ASSERT_EQ(t.msg_id, 1410943942347LL);
        ASSERT_EQ(t.completed, true);
        ASSERT_EQ(t.result, CAS_TASK_FAIL);
        ASSERT_STREQ(t.fail_msg, "快照创建失败");
        ASSERT_STREQ(t.name, "创建快照");
        ASSERT_EQ(json_array_size(cas_get_list(x, "keyValue")), 1);
        cas_task_done(&t);
        json_decref(j);
        json_decref(x);
}

TEST(cas_doc_message_typed_json)
{
        json_t *j = load("message-typed.json");
        cas_task t;

        /* 7.x renders ints and booleans as such (§1.3). */
        ASSERT_OK(cas_task_from_json(j, &t));
        ASSERT_EQ(t.msg_id, 1442551446494LL);
        ASSERT_EQ(t.completed, true);
        ASSERT_EQ(t.result, CAS_TASK_PART_SUCCESS);
        ASSERT_EQ(t.target_id, 1418);
        ASSERT_EQ(t.event_type, 20);
        cas_task_done(&t);
        /* Numbers read as text, and stay text. */
        ASSERT_STREQ(cas_get_str(j, "targetId"), "1418");
        ASSERT_STREQ(cas_get_str(j, "completed"), "true");
        ASSERT_TRUE(json_is_string(json_object_get(j, "targetId")));
        ASSERT_EQ(get_i64(j, "targetId"), 1418);
        json_decref(j);
}

TEST(cas_doc_taskmsg_xml)
{
        json_t *j = load("taskmsg.xml");
        cas_task t;

        ASSERT_TRUE(json_object_get(j, "taskMsg") == NULL); /* the root is dropped */
        ASSERT_OK(cas_task_from_json(j, &t));
        ASSERT_EQ(t.msg_id, 1410943942346LL);
        ASSERT_EQ(t.completed, false);
        ASSERT_EQ(t.target_id, 2);
        ASSERT_STREQ(t.target_name, "vm11");
        cas_task_done(&t);
        json_decref(j);
}

TEST(cas_doc_task_bad)
{
        cas_task t;
        json_t *j;

        j = parse_str("{\"completed\":\"true\"}", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG); /* no msgId */
        json_decref(j);
        j = parse_str("{\"msgId\":\"12x\"}", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG);
        json_decref(j);
        j = parse_str("{\"msgId\":\"1\",\"result\":\"7\"}", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG);
        json_decref(j);
        j = parse_str("{\"msgId\":\"1\",\"completed\":\"maybe\"}", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG);
        json_decref(j);
        j = parse_str("{\"msgId\":\"1\",\"progress\":\"101\"}", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG);
        json_decref(j);
        j = parse_str("[1]", NULL);
        ASSERT_ERR(cas_task_from_json(j, &t), EBADMSG);
        json_decref(j);
}

TEST(cas_doc_rs_result)
{
        json_t *j = load("rsresult.xml"), *f = load("rsresult-failure.xml");
        cas_rs_result r;
        bool b = false;

        ASSERT_OK(cas_rs_result_from_json(j, &r));
        ASSERT_EQ(r.state, 0);
        ASSERT_EQ(r.error_code, 0);
        ASSERT_STREQ(r.message, "ok");
        ASSERT_STREQ(json_string_value(r.data), "true");
        ASSERT_OK(cas_get_bool(j, "data", &b));
        ASSERT_EQ(b, true);
        cas_rs_result_done(&r);

        ASSERT_OK(cas_rs_result_from_json(f, &r));
        ASSERT_EQ(r.state, 1);
        ASSERT_EQ(r.error_code, 1001);
        ASSERT_STREQ(r.message, "虚拟机不存在");
        ASSERT_STREQ(json_string_value(r.data), "");
        cas_rs_result_done(&r);
        json_decref(j);
        json_decref(f);

        j = parse_str("{\"errorCode\":0}", NULL);
        ASSERT_ERR(cas_rs_result_from_json(j, &r), EBADMSG);
        json_decref(j);
}

TEST(cas_doc_hostpool_and_host_json)
{
        json_t *j = load("hostpool-all.json"), *h = load("host-list.json"), *list, *item;

        /* One item comes as an object (§1.3): a one-item array afterwards,
         * the same array on the second call. */
        list = cas_get_list(j, "hostPool");
        ASSERT_TRUE(json_is_array(list));
        ASSERT_EQ(json_array_size(list), 1);
        ASSERT_TRUE(cas_get_list(j, "hostPool") == list);
        item = json_array_get(list, 0);
        ASSERT_EQ(get_i64(item, "id"), 1);
        ASSERT_EQ(get_i64(item, "childNum"), 1);
        ASSERT_STREQ(cas_get_str(item, "name"), "vmspool");
        ASSERT_STREQ(cas_get_str(item, "operatorGroupCode"), "00");

        list = cas_get_list(h, "host");
        ASSERT_EQ(json_array_size(list), 1);
        item = json_array_get(list, 0);
        ASSERT_STREQ(cas_get_str(item, "type"), "kvm"); /* "@type" */
        ASSERT_TRUE(json_object_get(item, "@type") == NULL);
        ASSERT_EQ(get_i64(item, "id"), 6);
        ASSERT_STREQ(cas_get_str(item, "ip"), "10.88.16.98");
        json_decref(j);
        json_decref(h);
}

TEST(cas_doc_host_list_xml)
{
        json_t *j = load("host-list.xml"), *list;

        list = cas_get_list(j, "host");
        ASSERT_EQ(json_array_size(list), 2);
        ASSERT_STREQ(cas_get_str(json_array_get(list, 0), "type"), "kvm"); /* attribute */
        ASSERT_EQ(get_i64(json_array_get(list, 1), "id"), 7);
        ASSERT_EQ(get_i64(json_array_get(list, 1), "status"), 0);
        json_decref(j);
}

TEST(cas_doc_vm_json)
{
        json_t *j = load("vm-1416.json"), *disks, *nics;

        ASSERT_EQ(get_i64(j, "id"), 1416);
        ASSERT_EQ(get_i64(j, "hostId"), 6);
        ASSERT_EQ(get_i64(j, "memory"), 2048);
        ASSERT_EQ(get_i64(j, "status"), 2);
        ASSERT_STREQ(cas_get_str(j, "uuid"), "e924bce5-8f96-4eee-98fe-f84aae8f6d50");
        disks = cas_get_list(j, "storage");
        ASSERT_EQ(json_array_size(disks), 1);
        ASSERT_STREQ(cas_get_str(json_array_get(disks, 0), "diskDevice"), "磁盘");
        ASSERT_STREQ(cas_get_str(json_array_get(disks, 0), "storeFile"), "/vms/ssd/wins7.base");
        ASSERT_EQ(get_i64(json_array_get(disks, 0), "capacity"), 20480);
        nics = cas_get_list(j, "network");
        ASSERT_EQ(json_array_size(nics), 1);
        ASSERT_STREQ(cas_get_str(json_array_get(nics, 0), "mac"), "0c:da:41:1d:3b:02");
        json_decref(j);
}

TEST(cas_doc_vm_detail)
{
        json_t *j = load("vm-detail-1416.json"), *x = load("vm-detail.xml"), *disks, *d;
        double size = 0;

        /* A single disk is an object in the JSON (§3.2 B). */
        ASSERT_TRUE(json_is_object(json_object_get(j, "storage")));
        disks = cas_get_list(j, "storage");
        ASSERT_EQ(json_array_size(disks), 1);
        d = json_array_get(disks, 0);
        ASSERT_STREQ(cas_get_str(d, "format"), "qcow2");
        ASSERT_STREQ(cas_get_str(d, "path"), "/vms/ssd/wins7.base");
        ASSERT_EQ(get_i64(d, "size"), 20480);
        ASSERT_EQ(get_i64(d, "allocation"), 9484);
        ASSERT_EQ(get_bool(d, "snapShot"), false);
        ASSERT_EQ(get_i64(cas_get_obj(j, "cpu"), "cpuCores"), 1);
        ASSERT_STREQ(cas_get_str(cas_get_obj(j, "memory"), "memoryUnit"), "MB");
        ASSERT_STREQ(cas_get_str(j, "status"), "running");

        ASSERT_STREQ(cas_get_str(x, "title"), "测试虚拟机");
        disks = cas_get_list(x, "storage");
        ASSERT_EQ(json_array_size(disks), 2);
        d = json_array_get(disks, 0);
        ASSERT_OK(cas_get_double(d, "allocation", &size));
        ASSERT_TRUE(size == 1024.25);
        ASSERT_EQ(get_bool(d, "snapShot"), true);
        d = json_array_get(disks, 1);
        ASSERT_STREQ(cas_get_str(d, "path"), ""); /* <path/> */
        ASSERT_ERR(cas_get_i64(d, "path", &(int64_t){ 0 }), ENOENT);
        ASSERT_EQ(get_i64(cas_get_obj(x, "cpu"), "cpuCores"), 2);
        json_decref(j);
        json_decref(x);
}

TEST(cas_doc_vmlist_xml)
{
        json_t *one = load("vmlist-1.xml"), *two = load("vmlist-2.xml"), *list, *d, *ip;

        list = cas_get_list(one, "domain");
        ASSERT_EQ(json_array_size(list), 1);
        d = json_array_get(list, 0);
        ASSERT_EQ(get_i64(d, "id"), 3);
        ASSERT_STREQ(cas_get_str(d, "title"), "数据库服务器");
        ASSERT_STREQ(cas_get_str(d, "description"), ""); /* <description/> */
        ASSERT_STREQ(cas_get_str(d, "vmStatus"), "running");

        list = cas_get_list(two, "domain");
        ASSERT_EQ(json_array_size(list), 2);
        d = json_array_get(list, 0);
        ASSERT_STREQ(cas_get_str(d, "title"), "数据库服务器");
        ip = cas_get_obj(cas_get_obj(d, "ipv4Attribute"), "ipv4");
        ASSERT_STREQ(cas_get_str(ip, "ipAddress"), "10.0.0.3");
        d = json_array_get(list, 1);
        ASSERT_EQ(get_i64(d, "id"), 4);
        ASSERT_STREQ(cas_get_str(d, "title"), "web & proxy");
        ASSERT_STREQ(cas_get_str(d, "description"), "front <end>"); /* CDATA */
        ASSERT_STREQ(cas_get_str(d, "vmStatus"), "shutOff");
        json_decref(one);
        json_decref(two);
}

TEST(cas_doc_empty_lists)
{
        static const char *const bodies[] = {
                "<list/>", "<list></list>", "<list>\n  </list>", "", "  \n", "{}", "<?xml version=\"1.0\"?>\n<list/>"
        };
        json_t *j = load("list-empty.xml"), *e = load("vm-list-empty.json");

        ASSERT_EQ(json_object_size(j), 0);
        ASSERT_EQ(json_array_size(cas_get_list(j, "domain")), 0);
        ASSERT_TRUE(json_is_array(json_object_get(j, "domain")));
        ASSERT_TRUE(json_is_array(cas_get_list(e, "domain")));
        ASSERT_EQ(json_array_size(cas_get_list(e, "domain")), 0);
        json_decref(j);
        json_decref(e);
        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                j = parse_str(bodies[i], NULL);
                ASSERT_TRUE(json_is_object(j));
                ASSERT_EQ(json_object_size(j), 0);
                ASSERT_EQ(json_array_size(cas_get_list(j, "domain")), 0);
                json_decref(j);
        }
        /* null and "" members are empty lists as well. */
        j = parse_str("{\"a\":null,\"b\":\"\",\"c\":\"x\"}", NULL);
        ASSERT_EQ(json_array_size(cas_get_list(j, "a")), 0);
        ASSERT_EQ(json_array_size(cas_get_list(j, "b")), 0);
        ASSERT_EQ(json_array_size(cas_get_list(j, "c")), 1);
        ASSERT_STREQ(json_string_value(json_array_get(cas_get_list(j, "c"), 0)), "x");
        ASSERT_TRUE(cas_get_list(json_array_get(cas_get_list(j, "c"), 0), "x") == NULL); /* not an object */
        json_decref(j);
}

TEST(cas_doc_storage_pools)
{
        json_t *j = load("storagepool-list.xml"), *list;
        double free_mb = 0, total = 0;

        list = cas_get_list(j, "storagePool");
        ASSERT_EQ(json_array_size(list), 2);
        ASSERT_OK(cas_get_double(json_array_get(list, 0), "freeSize", &free_mb));
        ASSERT_TRUE(free_mb == 20480.5);
        ASSERT_OK(cas_get_double(json_array_get(list, 0), "totalSize", &total));
        ASSERT_TRUE(total == 102400);
        ASSERT_ERR(cas_get_i64(json_array_get(list, 0), "freeSize", &(int64_t){ 0 }), EINVAL);
        ASSERT_STREQ(cas_get_str(json_array_get(list, 0), "title"), "默认存储池");
        ASSERT_STREQ(cas_get_str(json_array_get(list, 1), "path"), "/vms/isos");
        json_decref(j);
}

TEST(cas_doc_snapshot_tree)
{
        json_t *j = load("snapshot-list.xml"), *top, *s1, *s2, *kids;

        top = cas_get_list(j, "snapshot");
        ASSERT_EQ(json_array_size(top), 1);
        s1 = json_array_get(top, 0);
        ASSERT_STREQ(cas_get_str(s1, "snapshotTitle"), "第一个快照");
        ASSERT_EQ(get_bool(s1, "isCurr"), false);
        ASSERT_STREQ(cas_get_str(s1, "creationTime"), "2020-12-02 11:34:59");
        kids = cas_get_list(cas_get_obj(s1, "snapshots"), "snapshot");
        ASSERT_EQ(json_array_size(kids), 1);
        s2 = json_array_get(kids, 0);
        ASSERT_STREQ(cas_get_str(s2, "name"), "snap2");
        kids = cas_get_list(cas_get_obj(s2, "snapshots"), "snapshot");
        ASSERT_EQ(json_array_size(kids), 2);
        ASSERT_STREQ(cas_get_str(json_array_get(kids, 0), "name"), "snap3");
        ASSERT_EQ(get_bool(json_array_get(kids, 0), "isCurr"), true);
        ASSERT_EQ(get_i64(json_array_get(kids, 0), "snapshotMode"), 2);
        ASSERT_STREQ(cas_get_str(json_array_get(kids, 1), "name"), "snap4");
        /* A leaf has no snapshots: an empty list, not an error. */
        ASSERT_TRUE(cas_get_obj(json_array_get(kids, 1), "snapshots") == NULL);
        json_decref(j);
}

TEST(cas_doc_backingfiles)
{
        json_t *j = load("backingfiles.xml"), *list;

        list = cas_get_list(j, "backingfile");
        ASSERT_EQ(json_array_size(list), 1);
        ASSERT_STREQ(cas_get_str(json_array_get(list, 0), "incfilepath"), "/vms/images/vm11.1607");
        ASSERT_STREQ(cas_get_str(json_array_get(list, 0), "backfilepath"), "/vms/images/vm11");
        json_decref(j);
}

TEST(cas_doc_xml_shapes)
{
        json_t *j, *v;

        /* Mixed content and attributes with text keep "#text". */
        j = parse_str("<a><size unit=\"MB\">20</size><b x=\"1\"/><c>t<d>u</d></c></a>", NULL);
        ASSERT_EQ(get_i64(j, "size"), 20);
        ASSERT_STREQ(cas_get_str(cas_get_obj(j, "size"), "unit"), "MB");
        ASSERT_STREQ(cas_get_str(cas_get_obj(j, "b"), "x"), "1");
        ASSERT_STREQ(cas_get_str(j, "c"), "t");
        ASSERT_STREQ(cas_get_str(cas_get_obj(j, "c"), "d"), "u");
        json_decref(j);
        /* A text-only root is a string; a root's attributes are kept. */
        j = parse_str("<status>running</status>", NULL);
        ASSERT_STREQ(json_string_value(j), "running");
        json_decref(j);
        j = parse_str("<r id=\"5\"/>", "application/xml");
        ASSERT_EQ(get_i64(j, "id"), 5);
        json_decref(j);
        /* Whitespace inside a leaf is data unless it is only line breaks. */
        j = parse_str("<r><a> x </a><b> </b></r>", NULL);
        ASSERT_STREQ(cas_get_str(j, "a"), " x ");
        ASSERT_STREQ(cas_get_str(j, "b"), " ");
        ASSERT_ERR(cas_get_i64(j, "a", &(int64_t){ 0 }), EINVAL);
        json_decref(j);
        /* Attribute and child of the same name, interleaved repeats. */
        j = parse_str("<r id=\"1\"><id>2</id><x>a</x><y/><x>b</x></r>", NULL);
        v = cas_get_list(j, "id");
        ASSERT_EQ(json_array_size(v), 2);
        ASSERT_EQ(json_array_size(cas_get_list(j, "x")), 2);
        ASSERT_STREQ(json_string_value(json_array_get(cas_get_list(j, "x"), 1)), "b");
        json_decref(j);
        /* A declared non-UTF-8 encoding comes out as UTF-8. */
        j = parse_str("<?xml version=\"1.0\" encoding=\"GBK\"?><r><t>\xd6\xd0\xce\xc4</t></r>", NULL);
        ASSERT_STREQ(cas_get_str(j, "t"), "中文");
        json_decref(j);
        /* A UTF-8 byte order mark. */
        j = parse_str("\xef\xbb\xbf<r><t>1</t></r>", NULL);
        ASSERT_EQ(get_i64(j, "t"), 1);
        json_decref(j);
}

TEST(cas_doc_json_shapes)
{
        json_t *j;

        /* The body decides, whatever the content type says. */
        j = parse_str("{\"@id\":\"6\",\"@@x\":1,\"n\":[{\"@type\":\"kvm\"}]}", "application/xml");
        ASSERT_EQ(get_i64(j, "id"), 6);
        ASSERT_TRUE(json_object_get(j, "@x") != NULL); /* only the first '@' goes */
        ASSERT_STREQ(cas_get_str(json_array_get(json_object_get(j, "n"), 0), "type"), "kvm");
        json_decref(j);
        j = parse_str("<r><a>1</a></r>", "application/json");
        ASSERT_EQ(get_i64(j, "a"), 1);
        json_decref(j);
        /* Bare scalars: checkCbtBackup's true, a status string. */
        j = parse_str("true", "application/json");
        ASSERT_TRUE(json_is_true(j));
        json_decref(j);
        j = parse_str("true\n", "text/plain");
        ASSERT_TRUE(json_is_true(j));
        json_decref(j);
        j = parse_str("running\r\n", "text/plain");
        ASSERT_STREQ(json_string_value(j), "running");
        json_decref(j);
        /* "@id" next to "id" keeps both. */
        j = parse_str("{\"id\":\"1\",\"@id\":\"2\"}", NULL);
        ASSERT_EQ(json_array_size(cas_get_list(j, "id")), 2);
        json_decref(j);
}

TEST(cas_doc_accessors)
{
        json_t *j = parse_str("{\"i\":6,\"s\":\" 6 \",\"neg\":\"-12\",\"big\":\"99999999999999999999\","
                              "\"f\":20480.5,\"fi\":2048.0,\"fs\":\"20480.5\",\"t\":true,\"T\":\"TRUE\","
                              "\"one\":1,\"two\":2,\"zero\":\"0\",\"x\":\"abc\",\"hex\":\"0x10\",\"inf\":\"inf\","
                              "\"e\":\"\",\"n\":null,\"o\":{\"a\":1},\"arr\":[1]}",
                              NULL);
        int64_t v = 0;
        double d = 0;
        bool b = false;

        ASSERT_EQ(get_i64(j, "i"), 6);
        ASSERT_EQ(get_i64(j, "s"), 6);
        ASSERT_EQ(get_i64(j, "neg"), -12);
        ASSERT_EQ(get_i64(j, "fi"), 2048);
        ASSERT_ERR(cas_get_i64(j, "big", &v), ERANGE);
        ASSERT_ERR(cas_get_i64(j, "f", &v), EINVAL);
        ASSERT_ERR(cas_get_i64(j, "x", &v), EINVAL);
        ASSERT_ERR(cas_get_i64(j, "hex", &v), EINVAL);
        ASSERT_ERR(cas_get_i64(j, "t", &v), EINVAL);
        ASSERT_ERR(cas_get_i64(j, "o", &v), ENOENT); /* an object without text */
        ASSERT_ERR(cas_get_i64(j, "arr", &v), ENOENT);
        ASSERT_ERR(cas_get_i64(j, "e", &v), ENOENT);
        ASSERT_ERR(cas_get_i64(j, "n", &v), ENOENT);
        ASSERT_ERR(cas_get_i64(j, "missing", &v), ENOENT);
        ASSERT_ERR(cas_get_i64(NULL, "i", &v), ENOENT);

        ASSERT_OK(cas_get_double(j, "fs", &d));
        ASSERT_TRUE(d == 20480.5);
        ASSERT_OK(cas_get_double(j, "i", &d));
        ASSERT_TRUE(d == 6);
        ASSERT_ERR(cas_get_double(j, "inf", &d), EINVAL);
        ASSERT_ERR(cas_get_double(j, "hex", &d), EINVAL);
        ASSERT_ERR(cas_get_double(j, "x", &d), EINVAL);
        ASSERT_ERR(cas_get_double(j, "e", &d), ENOENT);

        ASSERT_EQ(get_bool(j, "t"), true);
        ASSERT_EQ(get_bool(j, "T"), true);
        ASSERT_EQ(get_bool(j, "one"), true);
        ASSERT_EQ(get_bool(j, "zero"), false);
        ASSERT_ERR(cas_get_bool(j, "two", &b), EINVAL);
        ASSERT_ERR(cas_get_bool(j, "x", &b), EINVAL);
        ASSERT_ERR(cas_get_bool(j, "e", &b), ENOENT);

        ASSERT_STREQ(cas_get_str(j, "i"), "6");
        ASSERT_STREQ(cas_get_str(j, "f"), "20480.5");
        ASSERT_STREQ(cas_get_str(j, "t"), "true");
        ASSERT_TRUE(cas_get_str(j, "n") == NULL);
        ASSERT_TRUE(cas_get_str(j, "o") == NULL);
        ASSERT_TRUE(cas_get_str(j, "arr") == NULL);
        ASSERT_TRUE(cas_get_str(j, "missing") == NULL);
        /* Converted values still read as numbers. */
        ASSERT_EQ(get_i64(j, "i"), 6);
        ASSERT_OK(cas_get_double(j, "f", &d));
        ASSERT_TRUE(d == 20480.5);
        ASSERT_EQ(get_bool(j, "t"), true);

        ASSERT_TRUE(cas_get_obj(j, "o") != NULL);
        ASSERT_TRUE(cas_get_obj(j, "e") == NULL);
        ASSERT_TRUE(cas_get_obj(j, "arr") == NULL);
        ASSERT_TRUE(cas_get_list(j, "arr") == json_object_get(j, "arr"));
        json_decref(j);
}

TEST(cas_doc_malformed)
{
        static const char *const xml[] = { "<list><domain></list>", "<a>",      "<a></b>", "<a x=1/>",
                                           "<a>&bogus;</a>",        "<a/><b/>", "<" };
        static const char *const json[] = {
                "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "{\"a\":\"\\u0000\"}", "{\"a\":\"\xff\"}"
        };

        for (size_t i = 0; i < ELEMENTSOF(xml); i++)
                parse_fails(xml[i], strlen(xml[i]), NULL, -EBADMSG);
        for (size_t i = 0; i < ELEMENTSOF(json); i++)
                parse_fails(json[i], strlen(json[i]), "application/json", -EBADMSG);
        /* JSON content type with a body that is not JSON. */
        parse_fails("running", 7, "application/json", -EBADMSG);
        /* Text that is not UTF-8. */
        parse_fails("\xff\xfe", 2, NULL, -EBADMSG);
        /* Embedded NUL after a document. */
        parse_fails("{}\0{}", 5, NULL, -EBADMSG);
        ASSERT_ERR(cas_doc_parse(NULL, 1, NULL, &(json_t *){ NULL }, NULL), EINVAL);
        ASSERT_ERR(cas_doc_parse("{}", 2, NULL, NULL, NULL), EINVAL);
}

TEST(cas_doc_dtd_refused)
{
        static const char *const docs[] = {
                "<!DOCTYPE r [<!ENTITY a \"b\">]><r>&a;</r>",
                "<!DOCTYPE r SYSTEM \"http://127.0.0.1:1/x.dtd\"><r/>",
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
                "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
                "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><lolz>&lol3;</lolz>",
        };

        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                _cleanup_free_ char *err = NULL;
                json_t *j = NULL;

                ASSERT_ERR(cas_doc_parse(docs[i], strlen(docs[i]), NULL, &j, &err), EBADMSG);
                ASSERT_TRUE(j == NULL);
                ASSERT_TRUE(err && strstr(err, "document type"));
        }
}

static char *nested(const char *open, const char *close, int n)
{
        size_t lo = strlen(open), lc = strlen(close);
        char *s = malloc(n * (lo + lc) + 1), *p = s;

        ASSERT_TRUE(s != NULL);
        for (int i = 0; i < n; i++, p += lo)
                memcpy(p, open, lo);
        for (int i = 0; i < n; i++, p += lc)
                memcpy(p, close, lc);
        *p = 0;
        return s;
}

TEST(cas_doc_depth_limit)
{
        _cleanup_free_ char *x_ok = nested("<a>", "</a>", CAS_DOC_MAX_DEPTH - 1);
        _cleanup_free_ char *x_deep = nested("<a>", "</a>", CAS_DOC_MAX_DEPTH + 1);
        _cleanup_free_ char *x_deeper = nested("<a>", "</a>", 5000);
        _cleanup_free_ char *j_ok = nested("[", "]", CAS_DOC_MAX_DEPTH);
        _cleanup_free_ char *j_deep = nested("[", "]", CAS_DOC_MAX_DEPTH + 1);
        _cleanup_free_ char *j_deeper = nested("{\"a\":", "}", 5000);
        json_t *j;

        j = parse_str(x_ok, NULL);
        json_decref(j);
        parse_fails(x_deep, strlen(x_deep), NULL, -EBADMSG);
        parse_fails(x_deeper, strlen(x_deeper), NULL, -EBADMSG);
        j = parse_str(j_ok, NULL);
        json_decref(j);
        parse_fails(j_deep, strlen(j_deep), NULL, -EBADMSG);
        parse_fails(j_deeper, strlen(j_deeper), NULL, -EBADMSG);
}

TEST(cas_doc_size_limit)
{
        size_t len = (size_t)CAS_DOC_MAX_SIZE + 1;
        _cleanup_free_ char *big = malloc(len);
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;

        ASSERT_TRUE(big != NULL);
        memset(big, ' ', len);
        big[0] = '{';
        big[len - 2] = '}';
        /* One byte over the limit is refused before parsing. */
        ASSERT_ERR(cas_doc_parse(big, len, NULL, &j, &err), EFBIG);
        ASSERT_TRUE(err != NULL && j == NULL);
        /* At the limit it is parsed. */
        ASSERT_OK(cas_doc_parse(big, len - 1, NULL, &j, NULL));
        ASSERT_EQ(json_object_size(j), 0);
        json_decref(j);
}

TEST(cas_error_headers)
{
        cas_error e;

        /* §5: 409 + Error-Code 1001 is "VM does not exist". */
        ASSERT_OK(cas_error_from_headers(409, "1001", "VM not exist", NULL, &e));
        ASSERT_EQ(e.code, VB_E_NOT_FOUND);
        ASSERT_EQ(e.cas_code, 1001);
        ASSERT_EQ(e.http_status, 409);
        ASSERT_STREQ(e.message, "VM not exist");
        cas_error_done(&e);

        ASSERT_OK(cas_error_from_headers(409, " 1002 ", NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_EXISTS);
        ASSERT_STREQ(e.message, "VM already exists");
        cas_error_done(&e);

        ASSERT_OK(cas_error_from_headers(409, "402", "", NULL, &e));
        ASSERT_EQ(e.code, VB_E_NOT_FOUND);
        ASSERT_STREQ(e.message, "host does not exist");
        cas_error_done(&e);

        ASSERT_OK(cas_error_from_headers(409, "304", NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_NOT_FOUND);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "401", NULL, NULL, &e)); /* host exists, not an auth error */
        ASSERT_EQ(e.code, VB_E_EXISTS);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "11", NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_FAILED);
        ASSERT_STREQ(e.message, "unknown error");
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "4242", NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_REFUSED);
        ASSERT_STREQ(e.message, "CAS error 4242 (HTTP status 409)");
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "abc", "x", NULL, &e));
        ASSERT_EQ(e.cas_code, -1);
        ASSERT_EQ(e.code, VB_E_REFUSED);
        cas_error_done(&e);

        ASSERT_OK(cas_error_from_headers(401, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_AUTH);
        ASSERT_STREQ(e.message, "HTTP status 401");
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(404, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_NOT_FOUND);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(503, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_NETWORK);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(500, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_FAILED);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(400, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_REFUSED);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(302, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_E_PROTOCOL);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(204, NULL, NULL, NULL, &e));
        ASSERT_EQ(e.code, VB_OK);
        cas_error_done(&e);
        ASSERT_ERR(cas_error_from_headers(409, NULL, NULL, NULL, NULL), EINVAL);
}

TEST(cas_error_gbk)
{
        /* "虚拟机不存在" in GBK. */
        static const char gbk[] = "\xd0\xe9\xc4\xe2\xbb\xfa\xb2\xbb\xb4\xe6\xd4\xda";
        cas_error e;
        json_t *s;

        ASSERT_OK(cas_error_from_headers(409, "1001", gbk, "GBK", &e));
        ASSERT_STREQ(e.message, "虚拟机不存在");
        ASSERT_EQ(e.code, VB_E_NOT_FOUND);
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "1001", gbk, "text/plain; charset=gb2312", &e));
        ASSERT_STREQ(e.message, "虚拟机不存在");
        cas_error_done(&e);
        /* No charset header: not UTF-8, so taken as GBK. */
        ASSERT_OK(cas_error_from_headers(409, "1001", gbk, NULL, &e));
        ASSERT_STREQ(e.message, "虚拟机不存在");
        cas_error_done(&e);
        /* UTF-8 with a UTF-8 charset, and with a wrong GBK claim. */
        ASSERT_OK(cas_error_from_headers(409, "1001", "虚拟机不存在", "UTF-8", &e));
        ASSERT_STREQ(e.message, "虚拟机不存在");
        cas_error_done(&e);
        ASSERT_OK(cas_error_from_headers(409, "1001", "ok\tthen\r\n", "no-such-charset", &e));
        ASSERT_STREQ(e.message, "ok then"); /* control characters go */
        cas_error_done(&e);
        /* Bytes nothing decodes. */
        ASSERT_OK(cas_error_from_headers(409, "1", "a\xff\xff", NULL, &e));
        s = json_string(e.message); /* valid UTF-8 */
        ASSERT_TRUE(s != NULL);
        json_decref(s);
        ASSERT_EQ(e.message[0], 'a');
        cas_error_done(&e);
}

TEST(cas_doc_render_xml_and_json)
{
        json_t *body = json_pack("{s:s, s:i, s:b, s:n, s:[{s:s}, {s:s}], s:{s:s}}", "name", "a<b&c", "memory", 512,
                                 "autoMigrate", 0, "skip", "storage", "path", "/vms/a", "path", "/vms/b", "cpu", "mode",
                                 "custom");
        _cleanup_free_ char *xml = NULL, *js = NULL, *bad = NULL;
        json_t *back;

        ASSERT_TRUE(body != NULL);
        ASSERT_EQ(cas_doc_render(body, "domain", true, &xml), 0);
        ASSERT_TRUE(strstr(xml, "<domain><name>a&lt;b&amp;c</name><memory>512</memory>") != NULL);
        ASSERT_TRUE(strstr(xml, "<autoMigrate>false</autoMigrate>") != NULL);
        ASSERT_TRUE(strstr(xml, "skip") == NULL);
        ASSERT_TRUE(strstr(xml, "<storage><path>/vms/a</path></storage><storage><path>/vms/b</path></storage>") !=
                    NULL);
        ASSERT_TRUE(strstr(xml, "<cpu><mode>custom</mode></cpu></domain>") != NULL);
        /* What we send, our own parser reads back the same. */
        ASSERT_EQ(cas_doc_parse(xml, strlen(xml), NULL, &back, NULL), 0);
        ASSERT_STREQ(cas_get_str(back, "name"), "a<b&c");
        ASSERT_UEQ(json_array_size(cas_get_list(back, "storage")), 2);
        json_decref(back);

        ASSERT_EQ(cas_doc_render(body, "domain", false, &js), 0);
        ASSERT_STREQ(js, "{\"name\":\"a<b&c\",\"memory\":512,\"autoMigrate\":false,\"skip\":null,"
                         "\"storage\":[{\"path\":\"/vms/a\"},{\"path\":\"/vms/b\"}],\"cpu\":{\"mode\":\"custom\"}}");
        json_object_set_new(body, "no good", json_string("x"));
        ASSERT_EQ(cas_doc_render(body, "domain", true, &bad), -EINVAL);
        json_decref(body);
        body = json_array();
        ASSERT_EQ(cas_doc_render(body, "domain", true, &bad), -EINVAL);
        json_decref(body);
}
