/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-catalog.c -- the daemon's catalog on real SQLite files (every CRUD,
 * unique names, runs of deleted jobs, per-VM history, the start-up view of
 * a crashed run, VM locks, restores and their items, schema migration,
 * concurrent writers, rescan of a real pool) and the credential store
 * (permissions, atomic rewrites).
 */
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon/catalog.h"
#include "daemon/credstore.h"
#include "daemon/error.h"
#include "tests/unit/pool-util.h"

#define MiB (1024 * 1024ULL)

static vb_catalog *open_catalog(void)
{
        vb_catalog *c = NULL;

        ASSERT_OK(vb_catalog_open("state", &c));
        return c;
}

static int64_t add_platform(vb_catalog *c, const char *name, vb_platform_type type)
{
        vb_platform p = { .name = (char *)name, .type = type, .address = (char *)"https://cvm.example:8443" };
        int64_t id = 0;

        ASSERT_OK(vb_catalog_platform_add(c, &p, &id));
        ASSERT_TRUE(id > 0);
        return id;
}

static int64_t add_pool(vb_catalog *c, const char *name, const char *path)
{
        vb_pool p = { .name = (char *)name, .path = (char *)path, .type = (char *)"dedup" };
        int64_t id = 0;

        ASSERT_OK(vb_catalog_pool_add(c, &p, &id));
        ASSERT_TRUE(id > 0);
        return id;
}

static json_t *selection(const char *level, const char *id, const char *name)
{
        json_t *j = json_pack("[{s:s, s:s, s:s}]", "level", level, "id", id, "name", name);

        ASSERT_TRUE(j);
        return j;
}

static int64_t add_job(vb_catalog *c, const char *name, int64_t platform_id, int64_t pool_id)
{
        vb_job j = { .name = (char *)name,
                     .platform_id = platform_id,
                     .pool_id = pool_id,
                     .selection = selection("hostpool", "1", "hp1"),
                     .backup_type = DD_BACKUP_FULL,
                     .enabled = true };
        int64_t id = 0;

        ASSERT_OK(vb_catalog_job_add(c, &j, &id));
        json_decref(j.selection);
        ASSERT_TRUE(id > 0);
        return id;
}

static int64_t add_run_vm(vb_catalog *c, int64_t run_id, int64_t platform_id, const char *vm_id, const char *name)
{
        vb_run_vm v = { .platform_id = platform_id,
                        .vm_id = (char *)vm_id,
                        .vm_name = (char *)name,
                        .title = (char *)"标题",
                        .host_id = (char *)"host-1" };
        int64_t id = 0;

        ASSERT_OK(vb_catalog_run_vm_add(c, run_id, &v, &id));
        ASSERT_TRUE(id > 0);
        return id;
}

static void finish_vm(vb_catalog *c, int64_t id, vb_run_vm_status status, int code, const char *message, const char *rp)
{
        vb_run_vm_result res = { .status = status, .error_code = code, .message = message, .restore_point = rp };

        ASSERT_OK(vb_catalog_run_vm_finish(c, id, &res));
}

/* A raw connection, to look at the file behind the catalog's back. */
static int64_t raw_int(const char *sql)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        int64_t v;

        ASSERT_EQ(sqlite3_open_v2("state/" VB_CATALOG_FILE, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
        v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        sqlite3_close(db);
        return v;
}

static void raw_exec(const char *sql)
{
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open_v2("state/" VB_CATALOG_FILE, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

TEST(catalog_open_creates_a_private_wal_file)
{
        vb_catalog *c = open_catalog();
        struct stat st;

        ASSERT_EQ(vb_catalog_schema_version(c), VB_CATALOG_SCHEMA_VERSION);
        ASSERT_OK(stat("state/" VB_CATALOG_FILE, &st));
        ASSERT_EQ(st.st_mode & 0777, 0600);
        ASSERT_OK(stat("state", &st));
        ASSERT_EQ(st.st_mode & 0777, 0700);
        add_platform(c, "cas1", VB_PLATFORM_CAS);
        vb_catalog_close(c);
        /* WAL mode is a property of the file. */
        ASSERT_EQ(raw_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
        ASSERT_EQ(raw_int("PRAGMA user_version"), VB_CATALOG_SCHEMA_VERSION);
        /* Reopening keeps the data and does not migrate again. */
        c = open_catalog();
        vb_platform p = { 0 };
        ASSERT_OK(vb_catalog_platform_get(c, 0, "cas1", &p));
        vb_platform_clear(&p);
        vb_catalog_close(c);
}

TEST(catalog_refuses_garbage_and_newer_files)
{
        vb_catalog *c = NULL;
        int fd;

        ASSERT_OK(mkdir("state", 0700));
        fd = open("state/" VB_CATALOG_FILE, O_WRONLY | O_CREAT, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_write_all(fd, "this is not a database, not at all; it is text that goes on and on......", 72));
        close(fd);
        ASSERT_ERR(vb_catalog_open("state", &c), EBADMSG);
        ASSERT_TRUE(!c);
        ASSERT_OK(unlink("state/" VB_CATALOG_FILE));

        c = open_catalog();
        vb_catalog_close(c);
        raw_exec("PRAGMA user_version = 99");
        ASSERT_ERR(vb_catalog_open("state", &c), EPROTONOSUPPORT);
        ASSERT_ERR(vb_catalog_open_version("state", VB_CATALOG_SCHEMA_VERSION + 1, &c), EINVAL);
}

TEST(catalog_platform_crud)
{
        vb_catalog *c = open_catalog();
        vb_platform p = { 0 }, *v = NULL;
        size_t n = 0;
        int64_t id, id2;

        id = add_platform(c, "cas1", VB_PLATFORM_CAS);
        id2 = add_platform(c, "kvm1", VB_PLATFORM_LIBVIRT);
        ASSERT_ERR(vb_catalog_platform_add(c,
                                           &(vb_platform){ .name = (char *)"cas1",
                                                           .type = VB_PLATFORM_LIBVIRT,
                                                           .address = (char *)"qemu:///system" },
                                           NULL),
                   EEXIST);
        ASSERT_ERR(vb_catalog_platform_add(c, &(vb_platform){ .name = (char *)"x", .type = 7, .address = (char *)"a" },
                                           NULL),
                   EINVAL);
        ASSERT_ERR(vb_catalog_platform_add(c, &(vb_platform){ .name = (char *)"x", .address = NULL }, NULL), EINVAL);

        ASSERT_OK(vb_catalog_platform_get(c, id, NULL, &p));
        ASSERT_STREQ(p.name, "cas1");
        ASSERT_EQ(p.type, VB_PLATFORM_CAS);
        ASSERT_STREQ(p.address, "https://cvm.example:8443");
        ASSERT_TRUE(!p.user && !p.backup_host && !p.insecure);
        ASSERT_TRUE(json_is_array(p.tags) && json_array_size(p.tags) == 0);
        ASSERT_TRUE(p.created > 0 && p.modified >= p.created);

        /* Update every field, rename included. */
        free(p.name);
        p.name = strdup("cas-main");
        free(p.address);
        p.address = strdup("http://10.0.0.1:8080");
        p.insecure = true;
        p.user = strdup("admin");
        p.backup_host = strdup("proxy-1");
        json_decref(p.tags);
        p.tags = json_pack("[s, s]", "prod", "dc1");
        ASSERT_OK(vb_catalog_platform_update(c, &p));
        vb_platform_clear(&p);
        ASSERT_ERR(vb_catalog_platform_get(c, 0, "cas1", &p), ENOENT);
        ASSERT_OK(vb_catalog_platform_get(c, 0, "cas-main", &p));
        ASSERT_EQ(p.id, id);
        ASSERT_STREQ(p.address, "http://10.0.0.1:8080");
        ASSERT_TRUE(p.insecure);
        ASSERT_STREQ(p.user, "admin");
        ASSERT_STREQ(p.backup_host, "proxy-1");
        ASSERT_EQ(json_array_size(p.tags), 2);
        ASSERT_STREQ(json_string_value(json_array_get(p.tags, 1)), "dc1");

        /* JSON view: tags as given, no password anywhere. */
        json_t *j = vb_platform_to_json(&p);
        ASSERT_TRUE(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "cas");
        ASSERT_TRUE(!json_object_get(j, "password"));
        json_decref(j);

        /* Renaming onto another platform's name. */
        free(p.name);
        p.name = strdup("kvm1");
        ASSERT_ERR(vb_catalog_platform_update(c, &p), EEXIST);
        p.id = 9999;
        free(p.name);
        p.name = strdup("ghost");
        ASSERT_ERR(vb_catalog_platform_update(c, &p), ENOENT);
        vb_platform_clear(&p);

        ASSERT_OK(vb_catalog_platform_list(c, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0].name, "cas-main");
        ASSERT_STREQ(v[1].name, "kvm1");
        ASSERT_EQ(v[1].type, VB_PLATFORM_LIBVIRT);
        vb_platforms_free(v, n);

        ASSERT_OK(vb_catalog_platform_remove(c, id2));
        ASSERT_ERR(vb_catalog_platform_remove(c, id2), ENOENT);
        ASSERT_ERR(vb_catalog_platform_get(c, id2, NULL, &p), ENOENT);
        /* A new platform never gets a removed one's id. */
        ASSERT_TRUE(add_platform(c, "kvm2", VB_PLATFORM_LIBVIRT) > id2);
        vb_catalog_close(c);
}

TEST(catalog_pool_crud)
{
        vb_catalog *c = open_catalog();
        vb_pool p = { 0 }, *v = NULL;
        size_t n;
        int64_t id;

        id = add_pool(c, "main", "/srv/pool");
        add_pool(c, "aux", "/srv/aux");
        ASSERT_ERR(
                vb_catalog_pool_add(
                        c, &(vb_pool){ .name = (char *)"main", .path = (char *)"/x", .type = (char *)"dedup" }, NULL),
                EEXIST);
        ASSERT_ERR(vb_catalog_pool_add(
                           c, &(vb_pool){ .name = (char *)"t", .path = (char *)"/x", .type = (char *)"tape9" }, NULL),
                   EINVAL);
        ASSERT_OK(vb_catalog_pool_get(c, 0, "main", &p));
        ASSERT_EQ(p.id, id);
        ASSERT_STREQ(p.path, "/srv/pool");
        ASSERT_STREQ(p.type, "dedup");
        free(p.type);
        p.type = strdup("standard");
        free(p.path);
        p.path = strdup("/srv/pool2");
        ASSERT_OK(vb_catalog_pool_update(c, &p));
        free(p.name);
        p.name = strdup("aux");
        ASSERT_ERR(vb_catalog_pool_update(c, &p), EEXIST);
        vb_pool_clear(&p);
        ASSERT_OK(vb_catalog_pool_get(c, id, NULL, &p));
        ASSERT_STREQ(p.type, "standard");
        ASSERT_STREQ(p.path, "/srv/pool2");
        vb_pool_clear(&p);
        ASSERT_OK(vb_catalog_pool_list(c, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0].name, "aux");
        vb_pools_free(v, n);
        ASSERT_OK(vb_catalog_pool_remove(c, id));
        ASSERT_ERR(vb_catalog_pool_get(c, id, NULL, &p), ENOENT);
        ASSERT_ERR(vb_catalog_pool_remove(c, id), ENOENT);
        vb_catalog_close(c);
}

TEST(catalog_job_crud_and_references)
{
        vb_catalog *c = open_catalog();
        int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), po = add_pool(c, "main", "/srv/pool");
        vb_job j = { 0 }, *v = NULL;
        size_t n;
        int64_t id, id2;

        id = add_job(c, "nightly", pl, po);
        json_t *sel = selection("vm", "42", "web1");
        ASSERT_ERR(vb_catalog_job_add(
                           c,
                           &(vb_job){ .name = (char *)"nightly", .platform_id = pl, .pool_id = po, .selection = sel },
                           NULL),
                   EEXIST);
        /* Unknown platform or pool. */
        ASSERT_ERR(
                vb_catalog_job_add(
                        c, &(vb_job){ .name = (char *)"x", .platform_id = 999, .pool_id = po, .selection = sel }, NULL),
                ENOENT);
        ASSERT_ERR(
                vb_catalog_job_add(
                        c, &(vb_job){ .name = (char *)"x", .platform_id = pl, .pool_id = 999, .selection = sel }, NULL),
                ENOENT);
        /* Shapes: a bad level, a selection that is not an array, bad exclusions and options. */
        json_t *bad = json_pack("[{s:s, s:s}]", "level", "datacenter", "id", "1");
        ASSERT_ERR(
                vb_catalog_job_add(
                        c, &(vb_job){ .name = (char *)"x", .platform_id = pl, .pool_id = po, .selection = bad }, NULL),
                EINVAL);
        json_decref(bad);
        bad = json_pack("[{s:s}]", "level", "vm");
        ASSERT_ERR(
                vb_catalog_job_add(
                        c, &(vb_job){ .name = (char *)"x", .platform_id = pl, .pool_id = po, .selection = bad }, NULL),
                EINVAL);
        json_decref(bad);
        bad = json_object();
        ASSERT_ERR(
                vb_catalog_job_add(
                        c, &(vb_job){ .name = (char *)"x", .platform_id = pl, .pool_id = po, .selection = bad }, NULL),
                EINVAL);
        ASSERT_ERR(vb_catalog_job_add(c,
                                      &(vb_job){ .name = (char *)"x",
                                                 .platform_id = pl,
                                                 .pool_id = po,
                                                 .selection = sel,
                                                 .exclusions = bad },
                                      NULL),
                   EINVAL);
        json_decref(bad);
        bad = json_array();
        ASSERT_ERR(vb_catalog_job_add(c,
                                      &(vb_job){ .name = (char *)"x",
                                                 .platform_id = pl,
                                                 .pool_id = po,
                                                 .selection = sel,
                                                 .options = bad },
                                      NULL),
                   EINVAL);
        json_decref(bad);

        /* A full job, read back. */
        json_t *excl = json_pack("[s, s]", "test-*", "*-tmp");
        json_t *opts = json_pack("{s:i, s:s}", "parallel_vms", 4, "compression", "zstd:5");
        json_t *sched = json_pack("{s:s, s:s}", "kind", "daily", "at", "01:30");
        ASSERT_OK(vb_catalog_job_add(c,
                                     &(vb_job){ .name = (char *)"web",
                                                .platform_id = pl,
                                                .pool_id = po,
                                                .selection = sel,
                                                .exclusions = excl,
                                                .backup_type = DD_BACKUP_INCREMENTAL,
                                                .options = opts,
                                                .schedule = sched,
                                                .enabled = true },
                                     &id2));
        ASSERT_OK(vb_catalog_job_get(c, 0, "web", &j));
        ASSERT_EQ(j.id, id2);
        ASSERT_STREQ(j.platform_name, "cas1");
        ASSERT_STREQ(j.pool_name, "main");
        ASSERT_TRUE(json_equal(j.selection, sel));
        ASSERT_TRUE(json_equal(j.exclusions, excl));
        ASSERT_TRUE(json_equal(j.options, opts));
        ASSERT_TRUE(json_equal(j.schedule, sched));
        ASSERT_EQ(j.backup_type, DD_BACKUP_INCREMENTAL);
        ASSERT_TRUE(j.enabled && !j.deleted);
        ASSERT_EQ(j.last_check, 0);

        /* Update: rename, disable, new options; last_check is separate. */
        free(j.name);
        j.name = strdup("web-daily");
        j.enabled = false;
        json_object_set_new(j.options, "retries", json_integer(5));
        ASSERT_OK(vb_catalog_job_update(c, &j));
        ASSERT_OK(vb_catalog_job_set_last_check(c, id2, 1700000000));
        vb_job_clear(&j);
        ASSERT_OK(vb_catalog_job_get(c, id2, NULL, &j));
        ASSERT_STREQ(j.name, "web-daily");
        ASSERT_TRUE(!j.enabled);
        ASSERT_EQ(json_integer_value(json_object_get(j.options, "retries")), 5);
        ASSERT_EQ(j.last_check, 1700000000);
        json_t *jj = vb_job_to_json(&j);
        ASSERT_STREQ(json_string_value(json_object_get(jj, "backup_type")), "incremental");
        ASSERT_STREQ(json_string_value(json_object_get(jj, "pool")), "main");
        json_decref(jj);
        free(j.name);
        j.name = strdup("nightly");
        ASSERT_ERR(vb_catalog_job_update(c, &j), EEXIST);
        vb_job_clear(&j);

        /* In use: neither the platform nor the pool can go. */
        ASSERT_ERR(vb_catalog_platform_remove(c, pl), ENOTEMPTY);
        ASSERT_ERR(vb_catalog_pool_remove(c, po), ENOTEMPTY);

        /* Delete: the name is free again, the old job stays readable by id. */
        ASSERT_OK(vb_catalog_job_delete(c, id));
        ASSERT_ERR(vb_catalog_job_delete(c, id), ENOENT);
        ASSERT_ERR(vb_catalog_job_get(c, 0, "nightly", &j), ENOENT);
        ASSERT_OK(vb_catalog_job_get(c, id, NULL, &j));
        ASSERT_TRUE(j.deleted && !j.enabled);
        ASSERT_ERR(vb_catalog_job_update(c, &j), ENOENT);
        vb_job_clear(&j);
        int64_t id3 = add_job(c, "nightly", pl, po);
        ASSERT_NE(id3, id);
        ASSERT_OK(vb_catalog_job_list(c, false, &v, &n));
        ASSERT_EQ(n, 2);
        vb_jobs_free(v, n);
        ASSERT_OK(vb_catalog_job_list(c, true, &v, &n));
        ASSERT_EQ(n, 3);
        vb_jobs_free(v, n);

        /* Only deleted jobs left on the platform and pool: they may go, the
         * deleted jobs lose the link. */
        ASSERT_OK(vb_catalog_job_delete(c, id2));
        ASSERT_OK(vb_catalog_job_delete(c, id3));
        ASSERT_OK(vb_catalog_platform_remove(c, pl));
        ASSERT_OK(vb_catalog_pool_remove(c, po));
        ASSERT_OK(vb_catalog_job_get(c, id2, NULL, &j));
        ASSERT_EQ(j.platform_id, 0);
        ASSERT_EQ(j.pool_id, 0);
        ASSERT_TRUE(!j.platform_name);
        vb_job_clear(&j);

        json_decref(sel);
        json_decref(excl);
        json_decref(opts);
        json_decref(sched);
        vb_catalog_close(c);
}

TEST(catalog_runs_and_counters)
{
        vb_catalog *c = open_catalog();
        int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), po = add_pool(c, "main", "/p");
        int64_t job = add_job(c, "nightly", pl, po), job2 = add_job(c, "other", pl, po);
        int64_t run, run2, a, b, d, e;
        vb_run r = { 0 }, *v = NULL;
        size_t n;

        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_SCHEDULED, 0, &run));
        ASSERT_OK(vb_catalog_run_add(c, job2, VB_RUN_MANUAL, 0, &run2));
        ASSERT_ERR(vb_catalog_run_add(c, 999, VB_RUN_MANUAL, 0, NULL), ENOENT);
        ASSERT_ERR(vb_catalog_run_add(c, job, VB_RUN_RETRY, 999, NULL), ENOENT);
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.status, VB_RUN_WAITING);
        ASSERT_EQ(r.kind, VB_RUN_SCHEDULED);
        ASSERT_STREQ(r.job_name, "nightly");
        ASSERT_EQ(r.started, 0);
        ASSERT_EQ(r.n_vms, 0);
        vb_run_clear(&r);

        ASSERT_OK(vb_catalog_run_start(c, run));
        ASSERT_ERR(vb_catalog_run_start(c, run), EALREADY);
        a = add_run_vm(c, run, pl, "1", "web1");
        b = add_run_vm(c, run, pl, "2", "web2");
        d = add_run_vm(c, run, pl, "3", "db1");
        e = add_run_vm(c, run, pl, "4", "tmp1");
        ASSERT_ERR(
                vb_catalog_run_vm_add(
                        c, run, &(vb_run_vm){ .platform_id = pl, .vm_id = (char *)"1", .vm_name = (char *)"x" }, NULL),
                EEXIST);
        ASSERT_ERR(
                vb_catalog_run_vm_add(
                        c, 999, &(vb_run_vm){ .platform_id = pl, .vm_id = (char *)"1", .vm_name = (char *)"x" }, NULL),
                ENOENT);
        ASSERT_OK(vb_catalog_run_vm_begin(c, a, NULL));
        ASSERT_ERR(vb_catalog_run_vm_begin(c, a, NULL), EALREADY);
        ASSERT_OK(vb_catalog_run_vm_begin(c, b, NULL));
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.status, VB_RUN_RUNNING);
        ASSERT_TRUE(r.started > 0);
        ASSERT_EQ(r.n_vms, 4);
        ASSERT_EQ(r.n_running, 2);
        ASSERT_EQ(r.n_waiting, 2);
        vb_run_clear(&r);

        json_t *notes = json_pack("[s]", "the parent is gone: a full backup");
        vb_run_vm_result ok = { .status = VB_RUN_VM_SUCCEEDED,
                                .restore_point = "20261123T101500.482913Z-3fa2c1",
                                .bytes_read = 1000,
                                .bytes_new = 600,
                                .notes = notes };
        ASSERT_OK(vb_catalog_run_vm_finish(c, a, &ok));
        ASSERT_ERR(vb_catalog_run_vm_finish(c, a, &ok), EALREADY);
        json_decref(notes);
        finish_vm(c, b, VB_RUN_VM_FAILED, VB_E_NETWORK, "host 10.0.0.2 does not answer", NULL);
        finish_vm(c, e, VB_RUN_VM_SKIPPED, 0, "excluded", NULL);
        /* A VM never started when the run is stopped fails. */
        finish_vm(c, d, VB_RUN_VM_FAILED, VB_E_INTERRUPTED, "the run was stopped", NULL);

        vb_run_vm vm = { 0 };
        ASSERT_OK(vb_catalog_run_vm_get(c, a, &vm));
        ASSERT_EQ(vm.status, VB_RUN_VM_SUCCEEDED);
        ASSERT_EQ(vm.state, VB_STEP_DONE);
        ASSERT_STREQ(vm.restore_point, "20261123T101500.482913Z-3fa2c1");
        ASSERT_EQ(vm.bytes_read, 1000);
        ASSERT_EQ(json_array_size(vm.notes), 1);
        ASSERT_STREQ(vm.title, "标题");
        ASSERT_EQ(vm.job_id, job);
        json_t *vj = vb_run_vm_to_json(&vm);
        ASSERT_STREQ(json_string_value(json_object_get(vj, "vm")), "web1");
        ASSERT_STREQ(json_string_value(json_object_get(vj, "status")), "succeeded");
        ASSERT_TRUE(json_is_null(json_object_get(vj, "error")));
        json_decref(vj);
        vb_run_vm_clear(&vm);
        ASSERT_OK(vb_catalog_run_vm_get(c, b, &vm));
        ASSERT_EQ(vm.error_code, VB_E_NETWORK);
        ASSERT_STREQ(vm.message, "host 10.0.0.2 does not answer");
        vj = vb_run_vm_to_json(&vm);
        ASSERT_STREQ(json_string_value(json_object_get(vj, "error")), vb_error_name(VB_E_NETWORK));
        json_decref(vj);
        vb_run_vm_clear(&vm);

        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.n_succeeded, 1);
        ASSERT_EQ(r.n_failed, 2);
        ASSERT_EQ(r.n_skipped, 1);
        ASSERT_EQ(r.bytes_read, 1000);
        ASSERT_EQ(r.bytes_new, 600);
        ASSERT_EQ(vb_run_status_from_vms(&r), VB_RUN_PARTIAL);
        ASSERT_OK(vb_catalog_run_finish(c, run, vb_run_status_from_vms(&r), 0, NULL));
        vb_run_clear(&r);
        ASSERT_ERR(vb_catalog_run_finish(c, run, VB_RUN_FAILED, 0, NULL), EALREADY);
        ASSERT_ERR(vb_catalog_run_finish(c, run2, VB_RUN_RUNNING, 0, NULL), EINVAL);
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.status, VB_RUN_PARTIAL);
        ASSERT_TRUE(r.ended >= r.started);
        json_t *rj = vb_run_to_json(&r);
        ASSERT_STREQ(json_string_value(json_object_get(rj, "status")), "partial");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(rj, "vms"), "failed")), 2);
        json_decref(rj);
        vb_run_clear(&r);

        /* Pure status rules. */
        ASSERT_EQ(vb_run_status_from_vms(&(vb_run){ .n_vms = 0 }), VB_RUN_SUCCEEDED);
        ASSERT_EQ(vb_run_status_from_vms(&(vb_run){ .n_vms = 2, .n_skipped = 2 }), VB_RUN_SUCCEEDED);
        ASSERT_EQ(vb_run_status_from_vms(&(vb_run){ .n_vms = 2, .n_failed = 1, .n_skipped = 1 }), VB_RUN_FAILED);
        ASSERT_EQ(vb_run_status_from_vms(&(vb_run){ .n_vms = 2, .n_succeeded = 1, .n_waiting = 1 }), VB_RUN_PARTIAL);

        /* Lists: newest first, by job, by status, with a limit. */
        ASSERT_OK(vb_catalog_run_list(c, NULL, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_EQ(v[0].id, run2);
        ASSERT_EQ(v[1].n_vms, 4);
        vb_runs_free(v, n);
        ASSERT_OK(vb_catalog_run_list(c, &(vb_run_filter){ .job_id = job }, &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(v[0].id, run);
        vb_runs_free(v, n);
        ASSERT_OK(vb_catalog_run_list(c, &(vb_run_filter){ .statuses = 1u << VB_RUN_WAITING | 1u << VB_RUN_RUNNING },
                                      &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(v[0].id, run2);
        vb_runs_free(v, n);
        ASSERT_OK(vb_catalog_run_list(c, &(vb_run_filter){ .limit = 1 }, &v, &n));
        ASSERT_EQ(n, 1);
        vb_runs_free(v, n);
        ASSERT_ERR(vb_catalog_run_list(c, &(vb_run_filter){ .statuses = 1u << 20 }, &v, &n), EINVAL);

        vb_run_vm *vms = NULL;
        ASSERT_OK(vb_catalog_run_vm_list(c, run, &vms, &n));
        ASSERT_EQ(n, 4);
        ASSERT_STREQ(vms[0].vm_name, "web1");
        ASSERT_STREQ(vms[3].vm_name, "tmp1");
        ASSERT_EQ(vms[3].status, VB_RUN_VM_SKIPPED);
        vb_run_vms_free(vms, n);
        vb_catalog_close(c);
}

TEST(catalog_deleted_job_runs_stay_listed)
{
        vb_catalog *c = open_catalog();
        int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), po = add_pool(c, "main", "/p");
        int64_t job = add_job(c, "nightly", pl, po), run, vm;
        vb_run *v = NULL;
        vb_run_vm *vms = NULL;
        size_t n;

        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_MANUAL, 0, &run));
        ASSERT_OK(vb_catalog_run_start(c, run));
        vm = add_run_vm(c, run, pl, "1", "web1");
        ASSERT_OK(vb_catalog_run_vm_begin(c, vm, NULL));
        finish_vm(c, vm, VB_RUN_VM_FAILED, VB_E_SOURCE, "cannot read vda", NULL);
        ASSERT_OK(vb_catalog_run_finish(c, run, VB_RUN_FAILED, 0, NULL));
        ASSERT_OK(vb_catalog_job_delete(c, job));
        /* Even the platform can go now. */
        ASSERT_OK(vb_catalog_platform_remove(c, pl));

        ASSERT_OK(vb_catalog_run_list(c, &(vb_run_filter){ .job_id = job }, &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(v[0].id, run);
        ASSERT_TRUE(v[0].job_deleted);
        ASSERT_STREQ(v[0].job_name, "nightly");
        ASSERT_EQ(v[0].n_failed, 1);
        vb_runs_free(v, n);
        ASSERT_OK(vb_catalog_run_vm_list(c, run, &vms, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(vms[0].error_code, VB_E_SOURCE);
        ASSERT_EQ(vms[0].platform_id, pl); /* the VM key stays as it was */
        vb_run_vms_free(vms, n);
        /* A deleted job gets no new run (a retry is refused). */
        ASSERT_ERR(vb_catalog_run_add(c, job, VB_RUN_RETRY, run, NULL), ENOENT);
        vb_catalog_close(c);
}

TEST(catalog_run_vm_history_across_attempts)
{
        vb_catalog *c = open_catalog();
        int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), po = add_pool(c, "main", "/p");
        int64_t job = add_job(c, "nightly", pl, po), run, vm;
        vb_run_vm v = { 0 };
        vb_run r = { 0 };

        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_SCHEDULED, 0, &run));
        ASSERT_OK(vb_catalog_run_start(c, run));
        vm = add_run_vm(c, run, pl, "7", "db1");
        ASSERT_OK(vb_catalog_run_vm_get(c, vm, &v));
        ASSERT_EQ(v.attempts, 0);
        ASSERT_EQ(v.status, VB_RUN_VM_WAITING);
        ASSERT_EQ(json_array_size(v.history), 0);
        vb_run_vm_clear(&v);

        /* Attempt 1 fails after taking a snapshot. */
        ASSERT_OK(vb_catalog_run_vm_begin(c, vm, NULL));
        ASSERT_OK(vb_catalog_vm_state_set(c, vm, VB_STEP_SNAPSHOT, "vbak-1", NULL));
        finish_vm(c, vm, VB_RUN_VM_FAILED, VB_E_NO_SPACE, "storage nearly full", NULL);
        /* Attempt 2 (a retry within the run) fails too, on another host. */
        ASSERT_OK(vb_catalog_run_vm_begin(c, vm, "host-2"));
        finish_vm(c, vm, VB_RUN_VM_FAILED, VB_E_NETWORK, "host-2 does not answer", NULL);
        ASSERT_OK(vb_catalog_run_finish(c, run, VB_RUN_FAILED, 0, NULL));

        /* Later, `run retry --failed`: the original run runs again. */
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        int64_t started = r.started;
        vb_run_clear(&r);
        ASSERT_OK(vb_catalog_run_start(c, run));
        ASSERT_OK(vb_catalog_run_vm_begin(c, vm, NULL));
        ASSERT_OK(vb_catalog_run_vm_get(c, vm, &v));
        ASSERT_EQ(v.status, VB_RUN_VM_RUNNING);
        ASSERT_EQ(v.error_code, 0);
        ASSERT_TRUE(!v.message && !v.snapshot);
        ASSERT_STREQ(v.host_id, "host-2");
        vb_run_vm_clear(&v);
        finish_vm(c, vm, VB_RUN_VM_SUCCEEDED, 0, NULL, "rp-3");
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_OK(vb_catalog_run_finish(c, run, vb_run_status_from_vms(&r), 0, NULL));
        vb_run_clear(&r);

        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.status, VB_RUN_SUCCEEDED);
        ASSERT_EQ(r.started, started);
        vb_run_clear(&r);
        ASSERT_OK(vb_catalog_run_vm_get(c, vm, &v));
        ASSERT_EQ(v.attempts, 3);
        ASSERT_EQ(v.status, VB_RUN_VM_SUCCEEDED);
        ASSERT_STREQ(v.restore_point, "rp-3");
        ASSERT_EQ(json_array_size(v.history), 2);
        json_t *h1 = json_array_get(v.history, 0), *h2 = json_array_get(v.history, 1);
        ASSERT_EQ(json_integer_value(json_object_get(h1, "attempt")), 1);
        ASSERT_STREQ(json_string_value(json_object_get(h1, "status")), "failed");
        ASSERT_EQ(json_integer_value(json_object_get(h1, "error_code")), VB_E_NO_SPACE);
        ASSERT_STREQ(json_string_value(json_object_get(h1, "message")), "storage nearly full");
        ASSERT_STREQ(json_string_value(json_object_get(h1, "snapshot")), "vbak-1");
        ASSERT_TRUE(json_integer_value(json_object_get(h1, "ended")) > 0);
        ASSERT_EQ(json_integer_value(json_object_get(h2, "attempt")), 2);
        ASSERT_EQ(json_integer_value(json_object_get(h2, "error_code")), VB_E_NETWORK);
        vb_run_vm_clear(&v);
        vb_catalog_close(c);
}

TEST(catalog_unfinished_vms_after_a_crash)
{
        vb_catalog *c;
        vb_run_vm *v = NULL;
        size_t n;
        pid_t pid;
        int status;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* The daemon: three VMs, then killed mid-run without closing. */
                c = open_catalog();
                int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), po = add_pool(c, "main", "/p");
                int64_t job = add_job(c, "nightly", pl, po), run, a, b;
                json_t *tmp = json_pack("[s, s]", "/srv/pool/tmp/blob-1", "/var/lib/vbak/tmp/x");

                ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_SCHEDULED, 0, &run));
                ASSERT_OK(vb_catalog_run_start(c, run));
                a = add_run_vm(c, run, pl, "1", "done-vm");
                b = add_run_vm(c, run, pl, "2", "busy-vm");
                add_run_vm(c, run, pl, "3", "queued-vm");
                ASSERT_OK(vb_catalog_vm_lock(c, pl, "1", run, NULL));
                ASSERT_OK(vb_catalog_vm_lock(c, pl, "2", run, NULL));
                ASSERT_OK(vb_catalog_run_vm_begin(c, a, NULL));
                finish_vm(c, a, VB_RUN_VM_SUCCEEDED, 0, NULL, "rp-1");
                ASSERT_OK(vb_catalog_run_vm_begin(c, b, NULL));
                ASSERT_ERR(vb_catalog_vm_state_set(c, a, VB_STEP_READING, NULL, NULL), EINVAL);
                ASSERT_OK(vb_catalog_vm_state_set(c, b, VB_STEP_SNAPSHOT, "vbak-20261123-2", NULL));
                ASSERT_OK(vb_catalog_vm_state_set(c, b, VB_STEP_READING, NULL, tmp));
                json_decref(tmp);
                raise(SIGKILL);
                _exit(1);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* The restarted daemon. */
        c = open_catalog();
        ASSERT_OK(vb_catalog_unfinished_vms(c, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0].vm_name, "busy-vm");
        ASSERT_EQ(v[0].status, VB_RUN_VM_RUNNING);
        ASSERT_EQ(v[0].state, VB_STEP_READING);
        ASSERT_STREQ(v[0].snapshot, "vbak-20261123-2");
        ASSERT_EQ(json_array_size(v[0].temp_files), 2);
        ASSERT_STREQ(json_string_value(json_array_get(v[0].temp_files, 0)), "/srv/pool/tmp/blob-1");
        ASSERT_TRUE(v[0].platform_id > 0 && v[0].job_id > 0);
        ASSERT_STREQ(v[1].vm_name, "queued-vm");
        ASSERT_EQ(v[1].state, VB_STEP_WAITING);
        ASSERT_TRUE(!v[1].snapshot);

        /* Cleanup: snapshots deleted (by the platform driver), VMs failed,
         * the run finished, stale locks cleared. */
        int64_t run = v[0].run_id, pl = v[0].platform_id;
        ASSERT_OK(vb_catalog_vm_state_set(c, v[0].id, VB_STEP_CLEANING, NULL, NULL));
        for (size_t i = 0; i < n; i++)
                finish_vm(c, v[i].id, VB_RUN_VM_FAILED, VB_E_INTERRUPTED, "the daemon stopped during the backup", NULL);
        vb_run_vms_free(v, n);
        ASSERT_EQ(vb_catalog_vm_lock(c, pl, "2", run + 1, NULL), -EEXIST);
        ASSERT_EQ(vb_catalog_vm_locks_clear(c), 2);
        vb_run r = { 0 };
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_EQ(r.status, VB_RUN_RUNNING);
        ASSERT_EQ(vb_run_status_from_vms(&r), VB_RUN_PARTIAL);
        ASSERT_OK(vb_catalog_run_finish(c, run, vb_run_status_from_vms(&r), VB_E_INTERRUPTED, "vbakd restarted"));
        vb_run_clear(&r);
        ASSERT_OK(vb_catalog_unfinished_vms(c, &v, &n));
        ASSERT_EQ(n, 0);
        free(v);
        vb_catalog_close(c);
}

TEST(catalog_vm_lock)
{
        vb_catalog *c = open_catalog();
        int64_t pl = add_platform(c, "cas1", VB_PLATFORM_CAS), pl2 = add_platform(c, "cas2", VB_PLATFORM_CAS);
        int64_t po = add_pool(c, "main", "/p");
        int64_t job1 = add_job(c, "a", pl, po), job2 = add_job(c, "b", pl, po), run1, run2, holder = 0;

        ASSERT_OK(vb_catalog_run_add(c, job1, VB_RUN_MANUAL, 0, &run1));
        ASSERT_OK(vb_catalog_run_add(c, job2, VB_RUN_MANUAL, 0, &run2));
        ASSERT_OK(vb_catalog_run_start(c, run1));
        ASSERT_OK(vb_catalog_run_start(c, run2));
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run1, &holder));
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run1, &holder)); /* again: still ours */
        ASSERT_ERR(vb_catalog_vm_lock(c, pl, "42", run2, &holder), EEXIST);
        ASSERT_EQ(holder, run1);
        /* The same VM id on another platform is another VM. */
        ASSERT_OK(vb_catalog_vm_lock(c, pl2, "42", run2, NULL));
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "43", run1, NULL));
        ASSERT_ERR(vb_catalog_vm_unlock(c, pl, "42", run2), ENOENT);
        ASSERT_OK(vb_catalog_vm_unlock(c, pl, "42", run1));
        ASSERT_ERR(vb_catalog_vm_unlock(c, pl, "42", run1), ENOENT);
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run2, NULL));
        ASSERT_ERR(vb_catalog_vm_lock(c, pl, "42", run1, &holder), EEXIST);
        ASSERT_EQ(holder, run2);
        /* The end of run2 releases its two locks; run1 still holds "43". */
        ASSERT_OK(vb_catalog_run_finish(c, run2, VB_RUN_SUCCEEDED, 0, NULL));
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run1, NULL));
        ASSERT_OK(vb_catalog_vm_lock(c, pl2, "42", run1, NULL));
        ASSERT_EQ(vb_catalog_vm_unlock_run(c, run1), 3);
        ASSERT_EQ(vb_catalog_vm_unlock_run(c, run1), 0);
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run1, NULL));
        vb_catalog_close(c);
        /* A lock survives a restart until start-up clears them. */
        c = open_catalog();
        ASSERT_ERR(vb_catalog_vm_lock(c, pl, "42", run2, NULL), EEXIST);
        ASSERT_EQ(vb_catalog_vm_locks_clear(c), 1);
        ASSERT_OK(vb_catalog_vm_lock(c, pl, "42", run2, NULL));
        vb_catalog_close(c);
}

TEST(catalog_schema_migration_from_version_1)
{
        vb_catalog *c = NULL;
        int64_t pl, po, job, run, vm;
        vb_run_vm v = { 0 };

        /* A catalog as the first version made it, with data. */
        ASSERT_OK(vb_catalog_open_version("state", 1, &c));
        ASSERT_EQ(vb_catalog_schema_version(c), 1);
        pl = add_platform(c, "cas1", VB_PLATFORM_CAS);
        po = add_pool(c, "main", "/p");
        job = add_job(c, "nightly", pl, po);
        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_MANUAL, 0, &run));
        vm = add_run_vm(c, run, pl, "1", "web1");
        /* Version 1 has no byte counters: reading a VM needs them. */
        ASSERT_TRUE(vb_catalog_run_vm_get(c, vm, &v) < 0);
        vb_catalog_close(c);
        ASSERT_EQ(raw_int("PRAGMA user_version"), 1);
        ASSERT_EQ(raw_int("SELECT count(*) FROM pragma_table_info('run_vms') WHERE name = 'bytes_read'"), 0);

        /* Opening migrates, keeping every row. */
        c = open_catalog();
        ASSERT_EQ(vb_catalog_schema_version(c), VB_CATALOG_SCHEMA_VERSION);
        ASSERT_OK(vb_catalog_run_vm_get(c, vm, &v));
        ASSERT_STREQ(v.vm_name, "web1");
        ASSERT_EQ(v.bytes_read, 0);
        ASSERT_TRUE(json_is_array(v.notes) && json_array_size(v.notes) == 0);
        vb_run_vm_clear(&v);
        ASSERT_OK(vb_catalog_run_vm_begin(c, vm, NULL));
        vb_run_vm_result res = { .status = VB_RUN_VM_SUCCEEDED, .bytes_read = 5000, .bytes_new = 7 };
        ASSERT_OK(vb_catalog_run_vm_finish(c, vm, &res));
        ASSERT_OK(vb_catalog_run_vm_get(c, vm, &v));
        ASSERT_EQ(v.bytes_read, 5000);
        ASSERT_EQ(v.bytes_new, 7);
        vb_run_vm_clear(&v);
        vb_platform p = { 0 };
        ASSERT_OK(vb_catalog_platform_get(c, pl, NULL, &p));
        ASSERT_STREQ(p.name, "cas1");
        vb_platform_clear(&p);
        vb_catalog_close(c);
        ASSERT_EQ(raw_int("PRAGMA user_version"), VB_CATALOG_SCHEMA_VERSION);
        ASSERT_EQ(raw_int("SELECT count(*) FROM pragma_table_info('run_vms') WHERE name = 'bytes_read'"), 1);
        /* Opening an older version on a newer file does not go back. */
        ASSERT_OK(vb_catalog_open_version("state", 1, &c));
        ASSERT_EQ(vb_catalog_schema_version(c), VB_CATALOG_SCHEMA_VERSION);
        vb_catalog_close(c);
}

TEST(catalog_busy_file_fails_instead_of_blocking)
{
        vb_catalog *c = open_catalog();
        sqlite3 *db = NULL;
        vb_platform *v = NULL;
        uint64_t t0, ms;
        size_t n;

        add_platform(c, "cas1", VB_PLATFORM_CAS);
        ASSERT_OK(vb_catalog_set_busy_timeout(c, 300));
        /* Another process's writer holds the write lock. */
        ASSERT_EQ(sqlite3_open_v2("state/" VB_CATALOG_FILE, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db,
                               "BEGIN IMMEDIATE; INSERT INTO pools (name, path, type, created, modified)"
                               " VALUES ('held', '/x', 'dedup', 0, 0)",
                               NULL, NULL, NULL),
                  SQLITE_OK);
        t0 = vb_now_ns();
        ASSERT_ERR(vb_catalog_platform_add(
                           c, &(vb_platform){ .name = (char *)"cas2", .type = VB_PLATFORM_CAS, .address = (char *)"x" },
                           NULL),
                   EBUSY);
        ms = (vb_now_ns() - t0) / 1000000;
        ASSERT_TRUE(ms >= 250 && ms < 5000);
        /* Readers are not blocked by a writer (WAL). */
        ASSERT_OK(vb_catalog_platform_list(c, &v, &n));
        ASSERT_EQ(n, 1);
        vb_platforms_free(v, n);
        ASSERT_EQ(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        add_platform(c, "cas2", VB_PLATFORM_CAS);
        vb_pool pool = { 0 };
        ASSERT_OK(vb_catalog_pool_get(c, 0, "held", &pool));
        vb_pool_clear(&pool);
        vb_catalog_close(c);
}

/* ---- concurrent writers ---- */

#define WORKERS 4
#define PER_WORKER 40
#define SHARED_VMS 10

struct worker {
        vb_catalog *c;
        int n;
        int64_t platform_id, run_id;
        unsigned won; /* bit i: this worker holds shared VM i */
        int error;
};

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        for (int i = 0; i < PER_WORKER && !w->error; i++) {
                char name[64], vm_id[64], shared[32];
                vb_platform p = { .name = name, .type = VB_PLATFORM_CAS, .address = (char *)"https://cvm" };
                int64_t id;
                int r;

                snprintf(name, sizeof(name), "w%d-p%d", w->n, i);
                snprintf(vm_id, sizeof(vm_id), "w%d-vm%d", w->n, i);
                snprintf(shared, sizeof(shared), "shared-%d", i % SHARED_VMS);
                r = vb_catalog_platform_add(w->c, &p, &id);
                if (r >= 0)
                        r = vb_catalog_run_vm_add(
                                w->c, w->run_id,
                                &(vb_run_vm){ .platform_id = w->platform_id, .vm_id = vm_id, .vm_name = vm_id }, &id);
                if (r >= 0)
                        r = vb_catalog_run_vm_begin(w->c, id, NULL);
                if (r >= 0)
                        r = vb_catalog_vm_state_set(w->c, id, VB_STEP_READING, "snap", NULL);
                if (r >= 0)
                        r = vb_catalog_run_vm_finish(
                                w->c, id, &(vb_run_vm_result){ .status = VB_RUN_VM_SUCCEEDED, .bytes_read = 1 });
                if (r >= 0) {
                        r = vb_catalog_vm_lock(w->c, w->platform_id, shared, w->run_id, NULL);
                        if (r == 0)
                                w->won |= 1u << (i % SHARED_VMS);
                        else if (r == -EEXIST)
                                r = 0;
                }
                if (r < 0)
                        w->error = r;
        }
        return NULL;
}

TEST(catalog_concurrent_writers)
{
        /* Two threads on each of two catalog handles: one connection's
         * threads meet the mutex, the two connections meet SQLite's locks. */
        vb_catalog *c1 = open_catalog(), *c2 = open_catalog();
        int64_t pl = add_platform(c1, "cas1", VB_PLATFORM_CAS), po = add_pool(c1, "main", "/p");
        int64_t job = add_job(c1, "nightly", pl, po);
        struct worker w[WORKERS];
        pthread_t t[WORKERS];
        unsigned all = 0;
        vb_platform *pv;
        size_t n;

        for (int i = 0; i < WORKERS; i++) {
                w[i] = (struct worker){ .c = i % 2 ? c2 : c1, .n = i, .platform_id = pl };
                ASSERT_OK(vb_catalog_run_add(c1, job, VB_RUN_MANUAL, 0, &w[i].run_id));
                ASSERT_OK(vb_catalog_run_start(c1, w[i].run_id));
        }
        for (int i = 0; i < WORKERS; i++)
                ASSERT_EQ(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
        for (int i = 0; i < WORKERS; i++)
                ASSERT_EQ(pthread_join(t[i], NULL), 0);
        for (int i = 0; i < WORKERS; i++) {
                vb_run r = { 0 };

                ASSERT_OK(w[i].error);
                /* No shared VM was ever held by two runs. */
                ASSERT_EQ(all & w[i].won, 0);
                all |= w[i].won;
                ASSERT_OK(vb_catalog_run_get(c2, w[i].run_id, &r));
                ASSERT_EQ(r.n_vms, PER_WORKER);
                ASSERT_EQ(r.n_succeeded, PER_WORKER);
                ASSERT_EQ(r.bytes_read, PER_WORKER);
                vb_run_clear(&r);
        }
        ASSERT_EQ(all, (1u << SHARED_VMS) - 1);
        ASSERT_OK(vb_catalog_platform_list(c1, &pv, &n));
        ASSERT_EQ(n, 1 + WORKERS * PER_WORKER);
        vb_platforms_free(pv, n);
        vb_catalog_close(c1);
        vb_catalog_close(c2);
}

/* ---- restore points from a real pool ---- */

/* Commits a one-chunk restore point with nothing read, with the identity
 * given (the way the daemon's backups carry it). */
static dd_manifest *write_rp(sp_pool *p, const char *platform, const char *vm_id, const char *name, const char *run)
{
        dd_manifest *tmpl = dd_manifest_new(), *m = NULL;
        sp_disk_writer *dw;
        sp_writer *w;

        ASSERT_TRUE(tmpl);
        tmpl->vm.platform = strdup(platform);
        tmpl->vm.id = strdup(vm_id);
        tmpl->vm.name = strdup(name);
        tmpl->vm.title = strdup("标题");
        tmpl->run = run ? strdup(run) : NULL;
        tmpl->job = strdup("nightly");
        tmpl->consistency = strdup("crash");
        tmpl->type = DD_BACKUP_FULL;
        tmpl->time_start = time(NULL);
        ASSERT_OK(p->drv->begin(p, tmpl, &w));
        dd_manifest_free(tmpl);
        ASSERT_OK(p->drv->disk_begin(w, "vda", MiB, &dw));
        ASSERT_OK(p->drv->chunk_skip(dw, 0));
        ASSERT_OK(p->drv->disk_end(dw));
        ASSERT_OK(p->drv->commit(w, &m));
        return m;
}

static const vb_restore_point *find_rp(const vb_restore_point *v, size_t n, const char *id)
{
        for (size_t i = 0; i < n; i++)
                if (streq(v[i].id, id))
                        return &v[i];
        TEST_FAIL_("restore point %s is not listed", id);
}

TEST(catalog_rescan_pool)
{
        vb_catalog *c = open_catalog();
        int64_t cas1 = add_platform(c, "cas1", VB_PLATFORM_CAS), cas2 = add_platform(c, "cas2", VB_PLATFORM_CAS);
        int64_t po = add_pool(c, "main", "pool"), job = add_job(c, "nightly", cas1, po), run;
        sp_pool *p = tp_new_pool("pool", "dedup", MiB);
        dd_manifest *a = NULL, *b = NULL, *m_run, *m_unknown, *m_named, *m_kept;
        vb_restore_point *v = NULL, rp = { 0 };
        char run_text[32], *unknown_id;
        uint64_t size;
        size_t n;
        int fd;

        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_MANUAL, 0, &run));
        add_run_vm(c, run, cas1, "vm-7", "app7");
        snprintf(run_text, sizeof(run_text), "%" PRId64, run);

        /* A full and an incremental through the real pipeline. */
        size = 6 * MiB;
        fd = tp_make_image("disk.img", size);
        tp_write_random(fd, 0, 2 * MiB, 1);
        ASSERT_OK(tp_backup(p, "web1", fd, size, NULL, NULL, 0, &a, NULL));
        tp_write_random(fd, 4 * MiB, 4096, 2);
        dd_extents changed = DD_EXTENTS_INIT;
        ASSERT_OK(dd_extents_add(&changed, 4 * MiB, 4096));
        ASSERT_OK(tp_backup(p, "web1", fd, size, a->id, &changed, 0, &b, NULL));
        dd_extents_clear(&changed);
        close(fd);
        /* Platforms found from the run VM, by name, not at all (two of type
         * cas), and one already in the catalog with its platform. */
        m_run = write_rp(p, "cas", "vm-7", "app7", run_text);
        m_unknown = write_rp(p, "cas", "vm-9", "app9", "999");
        m_named = write_rp(p, "cas2", "vm-1", "app1", NULL);
        m_kept = write_rp(p, "cas", "vm-5", "app5", NULL);
        ASSERT_OK(vb_catalog_restore_point_add(c, po, cas2, m_kept));
        /* A stale row: the pool has no such restore point. */
        unknown_id = m_unknown->id;
        m_unknown->id = strdup("20000101T000000.000000Z-000000");
        ASSERT_OK(vb_catalog_restore_point_add(c, po, 0, m_unknown));
        ASSERT_OK(vb_catalog_restore_point_list(c, &(vb_rp_filter){ .pool_id = po }, &v, &n));
        ASSERT_EQ(n, 2);
        vb_restore_points_free(v, n);

        ASSERT_EQ(vb_catalog_rescan_pool(c, "main", p), 6);
        ASSERT_ERR(vb_catalog_rescan_pool(c, "nope", p), ENOENT);
        ASSERT_OK(vb_catalog_restore_point_list(c, NULL, &v, &n));
        ASSERT_EQ(n, 6);
        ASSERT_ERR(vb_catalog_restore_point_get(c, po, "20000101T000000.000000Z-000000", &rp), ENOENT);
        const vb_restore_point *x = find_rp(v, n, a->id);
        ASSERT_EQ(x->type, DD_BACKUP_FULL);
        ASSERT_STREQ(x->vm_name, "web1");
        ASSERT_STREQ(x->pool, "main");
        ASSERT_EQ(x->platform_id, 0); /* "local": no such platform */
        ASSERT_UEQ(x->size, size);
        ASSERT_EQ(x->disks, 1);
        ASSERT_UEQ(x->data_bytes, a->disks[0].bytes_data);
        ASSERT_TRUE(x->data_bytes >= 2 * MiB);
        x = find_rp(v, n, b->id);
        ASSERT_EQ(x->type, DD_BACKUP_INCREMENTAL);
        ASSERT_STREQ(x->parent, a->id);
        ASSERT_EQ(find_rp(v, n, m_run->id)->platform_id, cas1);
        ASSERT_EQ(find_rp(v, n, m_named->id)->platform_id, cas2);
        ASSERT_EQ(find_rp(v, n, m_kept->id)->platform_id, cas2);
        ASSERT_EQ(find_rp(v, n, unknown_id)->platform_id, 0);
        x = find_rp(v, n, m_run->id);
        ASSERT_STREQ(x->vm_id, "vm-7");
        ASSERT_STREQ(x->title, "标题");
        ASSERT_STREQ(x->run, run_text);
        ASSERT_STREQ(x->consistency, "crash");
        vb_restore_points_free(v, n);

        /* Filters: a VM's restore points, oldest first. */
        ASSERT_OK(vb_catalog_restore_point_list(c, &(vb_rp_filter){ .vm_name = "web1" }, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0].id, a->id);
        ASSERT_STREQ(v[1].id, b->id);
        json_t *j = vb_restore_point_to_json(&v[1]);
        ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "incremental");
        ASSERT_STREQ(json_string_value(json_object_get(j, "vm")), "web1");
        json_decref(j);
        vb_restore_points_free(v, n);
        ASSERT_OK(vb_catalog_restore_point_list(c, &(vb_rp_filter){ .platform_id = cas1, .vm_id = "vm-7" }, &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(v[0].id, m_run->id);
        vb_restore_points_free(v, n);
        ASSERT_OK(vb_catalog_restore_point_get(c, 0, b->id, &rp));
        ASSERT_EQ(rp.pool_id, po);
        vb_restore_point_clear(&rp);

        /* Pruned in the pool, damaged in the pool: both gone after a rescan. */
        ASSERT_OK(sp_pool_remove(p, m_named));
        {
                char cmd[512];
                snprintf(cmd, sizeof(cmd), "echo '{broken' > \"$(find pool/vms -path '*%s/manifest.json')\"",
                         m_run->id);
                ASSERT_EQ(system(cmd), 0);
        }
        ASSERT_EQ(vb_catalog_rescan_pool(c, "main", p), 4);
        ASSERT_ERR(vb_catalog_restore_point_get(c, po, m_named->id, &rp), ENOENT);
        ASSERT_ERR(vb_catalog_restore_point_get(c, po, m_run->id, &rp), ENOENT);
        ASSERT_OK(vb_catalog_restore_point_get(c, po, m_kept->id, &rp));
        ASSERT_EQ(rp.platform_id, cas2);
        vb_restore_point_clear(&rp);
        ASSERT_OK(vb_catalog_restore_point_remove(c, po, a->id));
        ASSERT_ERR(vb_catalog_restore_point_remove(c, po, a->id), ENOENT);

        /* Removing a platform unlinks its restore points; removing the pool
         * (its job deleted first) drops them from the catalog. */
        ASSERT_OK(vb_catalog_platform_remove(c, cas2));
        ASSERT_OK(vb_catalog_restore_point_get(c, po, m_kept->id, &rp));
        ASSERT_EQ(rp.platform_id, 0);
        vb_restore_point_clear(&rp);
        ASSERT_ERR(vb_catalog_pool_remove(c, po), ENOTEMPTY);
        ASSERT_OK(vb_catalog_job_delete(c, job));
        ASSERT_OK(vb_catalog_pool_remove(c, po));
        ASSERT_OK(vb_catalog_restore_point_list(c, NULL, &v, &n));
        ASSERT_EQ(n, 0);
        free(v);

        dd_manifest_free(a);
        dd_manifest_free(b);
        dd_manifest_free(m_run);
        dd_manifest_free(m_unknown);
        free(unknown_id);
        dd_manifest_free(m_named);
        dd_manifest_free(m_kept);
        sp_pool_close(p);
        vb_catalog_close(c);
}

/* ---- the credential store ---- */

static vb_credstore *open_store(void)
{
        vb_credstore *s = NULL;

        ASSERT_OK(vb_credstore_open("state", &s));
        return s;
}

static void expect_password(vb_credstore *s, const char *platform, const char *want)
{
        char *pw = NULL;

        ASSERT_OK(vb_credstore_get(s, platform, &pw));
        ASSERT_STREQ(pw, want);
        vb_credstore_password_free(pw);
}

TEST(credstore_set_get_remove)
{
        vb_credstore *s;
        struct stat st;
        char *pw = NULL;

        /* Whatever the umask, the file is 0600. */
        umask(0);
        s = open_store();
        ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), ENOENT);
        ASSERT_TRUE(stat("state/" VB_CREDSTORE_FILE, &st) < 0 && errno == ENOENT);
        ASSERT_OK(vb_credstore_set(s, "cas1", "s3cr\"et\n密码"));
        ASSERT_OK(vb_credstore_set(s, "cas2", "other"));
        ASSERT_OK(stat("state/" VB_CREDSTORE_FILE, &st));
        ASSERT_EQ(st.st_mode & 07777, 0600);
        expect_password(s, "cas1", "s3cr\"et\n密码");
        ASSERT_OK(vb_credstore_set(s, "cas1", "new"));
        expect_password(s, "cas1", "new");
        ASSERT_OK(vb_credstore_rename(s, "cas1", "cas-main"));
        ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), ENOENT);
        expect_password(s, "cas-main", "new");
        ASSERT_ERR(vb_credstore_rename(s, "cas-main", "cas2"), EEXIST);
        ASSERT_ERR(vb_credstore_rename(s, "ghost", "x"), ENOENT);
        ASSERT_OK(vb_credstore_remove(s, "cas-main"));
        ASSERT_ERR(vb_credstore_remove(s, "cas-main"), ENOENT);
        ASSERT_ERR(vb_credstore_set(s, "", "x"), EINVAL);
        vb_credstore_free(s);

        /* A second store on the same folder sees it all. */
        s = open_store();
        expect_password(s, "cas2", "other");
        ASSERT_ERR(vb_credstore_get(s, "cas-main", &pw), ENOENT);
        vb_credstore_free(s);
}

TEST(credstore_refuses_a_readable_file)
{
        static const mode_t bad[] = { 0640, 0604, 0620, 0660, 0644 };
        vb_credstore *s = open_store(), *s2 = NULL;
        char *pw = NULL;

        ASSERT_OK(vb_credstore_set(s, "cas1", "pw"));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_OK(chmod("state/" VB_CREDSTORE_FILE, bad[i]));
                ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), EPERM);
                ASSERT_ERR(vb_credstore_set(s, "cas1", "x"), EPERM);
                ASSERT_ERR(vb_credstore_open("state", &s2), EPERM);
                ASSERT_TRUE(!s2 && !pw);
        }
        ASSERT_OK(chmod("state/" VB_CREDSTORE_FILE, 0400));
        expect_password(s, "cas1", "pw");
        ASSERT_OK(chmod("state/" VB_CREDSTORE_FILE, 0600));
        /* Another user's file, and a symbolic link, are refused too. */
        ASSERT_OK(chown("state/" VB_CREDSTORE_FILE, 12345, 12345));
        ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), EPERM);
        ASSERT_OK(chown("state/" VB_CREDSTORE_FILE, geteuid(), getegid()));
        ASSERT_OK(rename("state/" VB_CREDSTORE_FILE, "real.json"));
        ASSERT_OK(symlink("../real.json", "state/" VB_CREDSTORE_FILE));
        ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), EPERM);
        ASSERT_OK(unlink("state/" VB_CREDSTORE_FILE));
        /* Garbage is not a credentials file. */
        int fd = open("state/" VB_CREDSTORE_FILE, O_WRONLY | O_CREAT, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_write_all(fd, "{\"format\": \"other\"}", 19));
        close(fd);
        ASSERT_ERR(vb_credstore_get(s, "cas1", &pw), EBADMSG);
        vb_credstore_free(s);
}

TEST(credstore_writes_atomically)
{
        vb_credstore *s = open_store();
        struct stat st1, st2;
        pid_t pid;
        int status, fd;

        ASSERT_OK(vb_credstore_set(s, "cas1", "v0"));
        ASSERT_OK(stat("state/" VB_CREDSTORE_FILE, &st1));
        ASSERT_OK(vb_credstore_set(s, "cas1", "v1"));
        ASSERT_OK(stat("state/" VB_CREDSTORE_FILE, &st2));
        /* A new file renamed over the old one, not a rewrite in place. */
        ASSERT_NE(st1.st_ino, st2.st_ino);

        /* A writer in another process with passwords of changing length;
         * every read in between sees a whole file. */
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                vb_credstore *w = open_store();

                vb_credstore_free(s); /* the parent's */
                char pw[600];

                for (int i = 0; i < 300; i++) {
                        int len = 1 + (i * 37) % 500;
                        memset(pw, 'a' + i % 26, (size_t)len);
                        pw[len] = 0;
                        if (vb_credstore_set(w, "cas1", pw) < 0)
                                _exit(1);
                }
                vb_credstore_free(w);
                _exit(0);
        }
        unsigned reads = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
                char *pw = NULL;

                ASSERT_OK(vb_credstore_get(s, "cas1", &pw));
                /* One letter repeated, or the initial value. */
                ASSERT_TRUE(streq(pw, "v1") || strspn(pw, (char[]){ pw[0], 0 }) == strlen(pw));
                vb_credstore_password_free(pw);
                reads++;
        }
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(reads > 0);
        ASSERT_EQ(system("test -z \"$(ls state | grep tmp)\""), 0);

        /* A temp file a crash left is removed at open; the file is intact. */
        fd = open("state/" VB_CREDSTORE_FILE ".tmp-00000000deadbeef", O_WRONLY | O_CREAT, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(vb_write_all(fd, "{\"form", 6));
        close(fd);
        vb_credstore_free(s);
        s = open_store();
        ASSERT_TRUE(access("state/" VB_CREDSTORE_FILE ".tmp-00000000deadbeef", F_OK) < 0 && errno == ENOENT);
        char *pw = NULL;
        ASSERT_OK(vb_credstore_get(s, "cas1", &pw));
        ASSERT_EQ(strlen(pw), 1 + (299 * 37) % 500);
        vb_credstore_password_free(pw);
        vb_credstore_free(s);
}

/* ---- restores ---- */

static int64_t add_restore(vb_catalog *c, const char *name, const char *kind, int64_t pool_id, size_t n)
{
        json_t *spec =
                json_pack("{s:s, s:[{s:s}], s:b}", "kind", kind, "items", "restore_point", "rp-0", "power_on", 1);
        vb_restore r = { .name = (char *)name,
                         .kind = (char *)kind,
                         .path = (char *)"new",
                         .spec = spec,
                         .schedule = (char *)"manual" };
        vb_restore_item items[4] = { 0 };
        char rps[4][16];
        int64_t id = 0;

        ASSERT_TRUE(n <= 4);
        for (size_t i = 0; i < n; i++) {
                snprintf(rps[i], sizeof(rps[i]), "rp-%zu", i);
                items[i] = (vb_restore_item){ .idx = (unsigned)i,
                                              .pool_id = pool_id,
                                              .restore_point = rps[i],
                                              .vm_name = (char *)"web1",
                                              .disk = streq(kind, "disk") ? (char *)"vdb" : NULL,
                                              .target = (char *)"web1-restored",
                                              .host_id = i == 0 ? (char *)"host-2" : NULL };
        }
        ASSERT_OK(vb_catalog_restore_add(c, &r, items, n, &id));
        json_decref(spec);
        ASSERT_TRUE(id > 0);
        return id;
}

TEST(catalog_restores_and_items)
{
        vb_catalog *c = open_catalog();
        int64_t po = add_pool(c, "main", "/p");
        int64_t a, b, d;
        vb_restore r = { 0 }, *v = NULL;
        vb_restore_item *items = NULL;
        size_t n;

        a = add_restore(c, NULL, "vm", po, 3);
        b = add_restore(c, "put back vdb", "disk", po, 1);
        ASSERT_OK(vb_catalog_restore_get(c, a, &r));
        ASSERT_EQ(r.status, VB_RUN_WAITING);
        ASSERT_STREQ(r.kind, "vm");
        ASSERT_STREQ(r.path, "new");
        ASSERT_STREQ(r.schedule, "manual");
        ASSERT_EQ(r.at, 0);
        ASSERT_EQ(r.n_items, 3);
        ASSERT_EQ(r.n_waiting, 3);
        ASSERT_EQ(r.started, 0);
        ASSERT_TRUE(r.created > 0);
        ASSERT_TRUE(json_is_true(json_object_get(r.spec, "power_on")));
        /* The default label names the restore's id. */
        {
                char want[32];

                snprintf(want, sizeof(want), "restore %" PRId64, a);
                ASSERT_STREQ(r.name, want);
        }
        vb_restore_clear(&r);
        ASSERT_OK(vb_catalog_restore_get(c, b, &r));
        ASSERT_STREQ(r.name, "put back vdb");
        vb_restore_clear(&r);
        ASSERT_ERR(vb_catalog_restore_get(c, 999, &r), ENOENT);

        /* Bad arguments are refused before anything is written. */
        vb_restore bad = { .kind = (char *)"vm", .path = (char *)"sideways", .schedule = (char *)"now" };
        ASSERT_ERR(vb_catalog_restore_add(c, &bad, NULL, 0, NULL), EINVAL);
        bad.path = (char *)"original";
        bad.schedule = (char *)"daily";
        ASSERT_ERR(vb_catalog_restore_add(c, &bad, NULL, 0, NULL), EINVAL);
        bad.schedule = (char *)"once";
        bad.at = 1800000000;
        ASSERT_ERR(
                vb_catalog_restore_add(c, &bad, &(vb_restore_item){ .pool_id = po, .vm_name = (char *)"x" }, 1, NULL),
                EINVAL);
        /* An item of a pool that is not there is still kept: no foreign key. */
        ASSERT_OK(vb_catalog_restore_add(
                c, &bad, &(vb_restore_item){ .pool_id = 77, .restore_point = (char *)"rp", .vm_name = (char *)"x" }, 1,
                &d));
        ASSERT_OK(vb_catalog_restore_get(c, d, &r));
        ASSERT_EQ(r.at, 1800000000);
        ASSERT_STREQ(r.schedule, "once");
        json_t *j = vb_restore_to_json(&r);
        ASSERT_EQ(json_integer_value(json_object_get(j, "at")), 1800000000);
        ASSERT_TRUE(json_is_object(json_object_get(j, "spec")));
        json_decref(j);
        vb_restore_clear(&r);

        /* Items by idx, with what the plan knew. */
        ASSERT_OK(vb_catalog_restore_item_list(c, a, &items, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(items[0].idx, 0);
        ASSERT_EQ(items[2].idx, 2);
        ASSERT_STREQ(items[1].restore_point, "rp-1");
        ASSERT_STREQ(items[0].host_id, "host-2");
        ASSERT_TRUE(!items[1].host_id);
        ASSERT_TRUE(!items[0].disk);
        ASSERT_EQ(items[0].status, VB_RUN_VM_WAITING);
        ASSERT_EQ(items[0].pool_id, po);
        int64_t i0 = items[0].id, i1 = items[1].id, i2 = items[2].id;
        vb_restore_items_free(items, n);

        /* Running: start once; items begin once, record volumes while running. */
        ASSERT_OK(vb_catalog_restore_start(c, a));
        ASSERT_ERR(vb_catalog_restore_start(c, a), EALREADY);
        json_t *vols = json_pack("[s]", "/vms/images/web1-restored-vda.qcow2");
        ASSERT_ERR(vb_catalog_restore_item_volumes(c, i0, vols), EINVAL); /* not running */
        ASSERT_OK(vb_catalog_restore_item_begin(c, i0, NULL));
        ASSERT_ERR(vb_catalog_restore_item_begin(c, i0, NULL), EALREADY);
        ASSERT_OK(vb_catalog_restore_item_begin(c, i1, "host-3"));
        ASSERT_OK(vb_catalog_restore_item_volumes(c, i0, vols));
        json_t *not_paths = json_pack("[i]", 1);
        ASSERT_ERR(vb_catalog_restore_item_volumes(c, i0, not_paths), EINVAL);
        json_decref(not_paths);
        ASSERT_OK(vb_catalog_restore_get(c, a, &r));
        ASSERT_EQ(r.status, VB_RUN_RUNNING);
        ASSERT_TRUE(r.started > 0);
        ASSERT_EQ(r.n_running, 2);
        ASSERT_EQ(r.n_waiting, 1);
        vb_restore_clear(&r);
        ASSERT_OK(vb_catalog_restore_item_list(c, a, &items, &n));
        ASSERT_STREQ(items[0].host_id, "host-2"); /* NULL kept it */
        ASSERT_STREQ(items[1].host_id, "host-3");
        ASSERT_STREQ(json_string_value(json_array_get(items[0].incomplete, 0)), "/vms/images/web1-restored-vda.qcow2");
        ASSERT_TRUE(items[0].started > 0);
        vb_restore_items_free(items, n);

        /* Results. */
        vb_restore_item ok = { .status = VB_RUN_VM_SUCCEEDED,
                               .target_vm_id = (char *)"42",
                               .volumes = vols,
                               .bytes_total = 1 << 20,
                               .bytes_written = 1 << 20 };
        ASSERT_OK(vb_catalog_restore_item_finish(c, i0, &ok));
        ASSERT_ERR(vb_catalog_restore_item_finish(c, i0, &ok), EALREADY);
        json_t *inc = json_pack("[s]", "/vms/images/web1-restored-vdb.qcow2");
        vb_restore_item failed = { .status = VB_RUN_VM_FAILED,
                                   .error_code = VB_E_CORRUPT,
                                   .message = (char *)"restore point rp-1 disk vdb offset 4194304: digest mismatch",
                                   .incomplete = inc,
                                   .bytes_total = 2 << 20,
                                   .bytes_written = 4096 };
        ASSERT_OK(vb_catalog_restore_item_finish(c, i1, &failed));
        /* An item that never began may fail too (a stop). */
        vb_restore_item bad_status = { .status = VB_RUN_VM_RUNNING };
        ASSERT_ERR(vb_catalog_restore_item_finish(c, i2, &bad_status), EINVAL);
        failed.error_code = VB_E_INTERRUPTED;
        failed.message = (char *)"stopped";
        failed.incomplete = NULL;
        failed.bytes_total = failed.bytes_written = 0;
        ASSERT_OK(vb_catalog_restore_item_finish(c, i2, &failed));
        json_decref(inc);
        json_decref(vols);

        ASSERT_OK(vb_catalog_restore_item_list(c, a, &items, &n));
        ASSERT_EQ(items[0].status, VB_RUN_VM_SUCCEEDED);
        ASSERT_STREQ(items[0].target_vm_id, "42");
        ASSERT_EQ(json_array_size(items[0].volumes), 1);
        ASSERT_EQ(json_array_size(items[0].incomplete), 0); /* the result replaces what was recorded */
        ASSERT_EQ(items[1].error_code, VB_E_CORRUPT);
        ASSERT_EQ(json_array_size(items[1].incomplete), 1);
        ASSERT_TRUE(items[1].ended >= items[1].started);
        j = vb_restore_item_to_json(&items[1]);
        ASSERT_STREQ(json_string_value(json_object_get(j, "status")), "failed");
        ASSERT_STREQ(json_string_value(json_object_get(j, "error")), vb_error_name(VB_E_CORRUPT));
        ASSERT_STREQ(json_string_value(json_object_get(j, "vm")), "web1");
        ASSERT_STREQ(json_string_value(json_object_get(j, "target")), "web1-restored");
        ASSERT_STREQ(json_string_value(json_object_get(j, "host_id")), "host-3");
        ASSERT_EQ(json_integer_value(json_object_get(j, "bytes_written")), 4096);
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(j, "incomplete"), 0)),
                     "/vms/images/web1-restored-vdb.qcow2");
        ASSERT_TRUE(json_is_null(json_object_get(j, "target_vm_id")));
        json_decref(j);
        j = vb_restore_item_to_json(&items[0]);
        ASSERT_TRUE(json_is_null(json_object_get(j, "error")));
        ASSERT_STREQ(json_string_value(json_object_get(j, "target_vm_id")), "42");
        json_decref(j);
        vb_restore_items_free(items, n);

        ASSERT_OK(vb_catalog_restore_get(c, a, &r));
        ASSERT_EQ(r.n_succeeded, 1);
        ASSERT_EQ(r.n_failed, 2);
        ASSERT_EQ(r.n_running, 0);
        ASSERT_EQ(r.bytes_written, (1 << 20) + 4096);
        vb_restore_clear(&r);
        ASSERT_ERR(vb_catalog_restore_finish(c, a, VB_RUN_RUNNING, 0, NULL), EINVAL);
        ASSERT_OK(vb_catalog_restore_finish(c, a, VB_RUN_PARTIAL, 0, NULL));
        ASSERT_ERR(vb_catalog_restore_finish(c, a, VB_RUN_FAILED, 0, NULL), EALREADY);
        ASSERT_ERR(vb_catalog_restore_start(c, a), ESTALE);
        ASSERT_ERR(vb_catalog_restore_start(c, 999), ENOENT);
        ASSERT_OK(vb_catalog_restore_get(c, a, &r));
        ASSERT_EQ(r.status, VB_RUN_PARTIAL);
        ASSERT_TRUE(r.ended >= r.started);
        j = vb_restore_to_json(&r);
        ASSERT_STREQ(json_string_value(json_object_get(j, "status")), "partial");
        ASSERT_STREQ(json_string_value(json_object_get(j, "kind")), "vm");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "items"), "failed")), 2);
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "items"), "total")), 3);
        ASSERT_TRUE(json_is_null(json_object_get(j, "at")));
        ASSERT_TRUE(json_is_null(json_object_get(j, "error")));
        json_decref(j);
        vb_restore_clear(&r);
        /* A waiting restore may end without running (its items failed first). */
        ASSERT_OK(vb_catalog_restore_finish(c, b, VB_RUN_FAILED, VB_E_INTERRUPTED, "vbakd stopped before it began"));
        ASSERT_OK(vb_catalog_restore_get(c, b, &r));
        ASSERT_EQ(r.error_code, VB_E_INTERRUPTED);
        ASSERT_STREQ(r.message, "vbakd stopped before it began");
        vb_restore_clear(&r);

        /* Lists: newest first, by status, with a limit. */
        ASSERT_OK(vb_catalog_restore_list(c, 0, 0, &v, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(v[0].id, d);
        ASSERT_EQ(v[2].id, a);
        ASSERT_EQ(v[2].n_items, 3);
        vb_restores_free(v, n);
        ASSERT_OK(vb_catalog_restore_list(c, 1u << VB_RUN_WAITING | 1u << VB_RUN_RUNNING, 0, &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(v[0].id, d);
        vb_restores_free(v, n);
        ASSERT_OK(vb_catalog_restore_list(c, 0, 2, &v, &n));
        ASSERT_EQ(n, 2);
        vb_restores_free(v, n);
        ASSERT_ERR(vb_catalog_restore_list(c, 1u << 20, 0, &v, &n), EINVAL);
        vb_catalog_close(c);
}

TEST(catalog_unfinished_restores_after_a_crash)
{
        vb_catalog *c;
        vb_restore *v = NULL;
        vb_restore_item *items = NULL;
        size_t n, n_items;
        pid_t pid;
        int status;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* The daemon: one restore running (one item writing, one
                 * waiting), one waiting for its time; then killed. */
                c = open_catalog();
                int64_t po = add_pool(c, "main", "/p"), a;
                json_t *inc = json_pack("[s, s]", "/vms/images/a-vda.qcow2", "/vms/images/a-vdb.qcow2");

                a = add_restore(c, "nightly drill", "vm", po, 2);
                add_restore(c, NULL, "vm", po, 1);
                ASSERT_OK(vb_catalog_restore_start(c, a));
                ASSERT_OK(vb_catalog_restore_item_list(c, a, &items, &n_items));
                ASSERT_OK(vb_catalog_restore_item_begin(c, items[0].id, NULL));
                ASSERT_OK(vb_catalog_restore_item_volumes(c, items[0].id, inc));
                json_decref(inc);
                raise(SIGKILL);
                _exit(1);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        c = open_catalog();
        ASSERT_OK(vb_catalog_unfinished_restores(c, &v, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(v[0].name, "nightly drill");
        ASSERT_EQ(v[0].n_running, 1);
        ASSERT_EQ(v[0].n_waiting, 1);
        int64_t id = v[0].id;
        vb_restores_free(v, n);
        ASSERT_OK(vb_catalog_restore_item_list(c, id, &items, &n_items));
        ASSERT_EQ(n_items, 2);
        ASSERT_EQ(items[0].status, VB_RUN_VM_RUNNING);
        ASSERT_EQ(json_array_size(items[0].incomplete), 2);
        ASSERT_STREQ(json_string_value(json_array_get(items[0].incomplete, 1)), "/vms/images/a-vdb.qcow2");
        /* The cleanup: items failed, keeping the volumes named, the restore ended. */
        for (size_t i = 0; i < n_items; i++) {
                vb_restore_item res = { .status = VB_RUN_VM_FAILED,
                                        .error_code = VB_E_INTERRUPTED,
                                        .message = (char *)"vbakd stopped during the restore",
                                        .incomplete = items[i].incomplete };

                ASSERT_OK(vb_catalog_restore_item_finish(c, items[i].id, &res));
        }
        vb_restore_items_free(items, n_items);
        ASSERT_OK(vb_catalog_restore_finish(c, id, VB_RUN_FAILED, VB_E_INTERRUPTED, "vbakd stopped"));
        ASSERT_OK(vb_catalog_unfinished_restores(c, &v, &n));
        ASSERT_EQ(n, 0);
        free(v);
        ASSERT_OK(vb_catalog_restore_item_list(c, id, &items, &n_items));
        ASSERT_EQ(json_array_size(items[0].incomplete), 2);
        ASSERT_EQ(items[1].error_code, VB_E_INTERRUPTED);
        vb_restore_items_free(items, n_items);
        /* The waiting one stays waiting: it is not unfinished work. */
        ASSERT_OK(vb_catalog_restore_list(c, 1u << VB_RUN_WAITING, 0, &v, &n));
        ASSERT_EQ(n, 1);
        vb_restores_free(v, n);
        vb_catalog_close(c);
}

TEST(catalog_schema_migration_from_version_2)
{
        vb_catalog *c = NULL;
        int64_t pl, po, job, run, id;
        vb_run r = { 0 };

        ASSERT_OK(vb_catalog_open_version("state", 2, &c));
        ASSERT_EQ(vb_catalog_schema_version(c), 2);
        pl = add_platform(c, "cas1", VB_PLATFORM_CAS);
        po = add_pool(c, "main", "/p");
        job = add_job(c, "nightly", pl, po);
        ASSERT_OK(vb_catalog_run_add(c, job, VB_RUN_MANUAL, 0, &run));
        /* Version 2 has no restores. */
        ASSERT_TRUE(vb_catalog_restore_list(c, 0, 0, &(vb_restore *){ NULL }, &(size_t){ 0 }) < 0);
        vb_catalog_close(c);
        ASSERT_EQ(raw_int("SELECT count(*) FROM sqlite_master WHERE name IN ('restores', 'restore_items')"), 0);

        c = open_catalog();
        ASSERT_EQ(vb_catalog_schema_version(c), VB_CATALOG_SCHEMA_VERSION);
        ASSERT_OK(vb_catalog_run_get(c, run, &r));
        ASSERT_STREQ(r.job_name, "nightly");
        vb_run_clear(&r);
        id = add_restore(c, NULL, "vm", po, 2);
        vb_catalog_close(c);
        ASSERT_EQ(raw_int("PRAGMA user_version"), VB_CATALOG_SCHEMA_VERSION);
        ASSERT_EQ(raw_int("SELECT count(*) FROM restore_items"), 2);
        ASSERT_EQ(raw_int("SELECT max(id) FROM restores"), id);
}
