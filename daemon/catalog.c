/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * catalog.c -- the daemon's catalog on SQLite (see catalog.h for the
 * design, docs/formats.md for the tables).
 *
 * Every public function checks its arguments, then runs one static
 * *_locked() function inside tx_begin()/tx_end(): the catalog's mutex plus
 * one SQLite transaction. The *_locked() functions finalise their
 * statements before they return, so COMMIT and ROLLBACK never meet a
 * statement still running.
 */
#include "daemon/catalog.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/error.h"
#include "daemon/log.h"
#include "daemon/util.h"

struct vb_catalog {
        sqlite3 *db;
        pthread_mutex_t lock;
        char *path;
        int busy_timeout_ms;
};

/* ---- enums ---- */

static const char *const platform_type_table[_VB_PLATFORM_TYPE_MAX] = {
        [VB_PLATFORM_CAS] = "cas",
        [VB_PLATFORM_LIBVIRT] = "libvirt",
};

static const char *const run_kind_table[_VB_RUN_KIND_MAX] = {
        [VB_RUN_MANUAL] = "manual",
        [VB_RUN_SCHEDULED] = "scheduled",
        [VB_RUN_RETRY] = "retry",
};

static const char *const run_status_table[_VB_RUN_STATUS_MAX] = {
        [VB_RUN_WAITING] = "waiting", [VB_RUN_RUNNING] = "running", [VB_RUN_SUCCEEDED] = "succeeded",
        [VB_RUN_PARTIAL] = "partial", [VB_RUN_FAILED] = "failed",   [VB_RUN_STOPPED] = "stopped",
        [VB_RUN_SKIPPED] = "skipped",
};

static const char *const run_vm_status_table[_VB_RUN_VM_STATUS_MAX] = {
        [VB_RUN_VM_WAITING] = "waiting", [VB_RUN_VM_RUNNING] = "running", [VB_RUN_VM_SUCCEEDED] = "succeeded",
        [VB_RUN_VM_FAILED] = "failed",   [VB_RUN_VM_SKIPPED] = "skipped", [VB_RUN_VM_NONE] = "-",
};

static const char *const vm_state_table[_VB_BACKUP_STEP_MAX] = {
        [VB_STEP_WAITING] = "waiting",       [VB_STEP_SNAPSHOT] = "snapshot", [VB_STEP_READING] = "reading",
        [VB_STEP_COMMITTING] = "committing", [VB_STEP_CLEANING] = "cleaning", [VB_STEP_DONE] = "done",
};

static const char *const backup_type_table[_DD_BACKUP_TYPE_MAX] = {
        [DD_BACKUP_FULL] = "full",
        [DD_BACKUP_INCREMENTAL] = "incremental",
};

static const char *const selection_level_table[] = { "hostpool", "cluster", "host", "vm" };

static const char *table_to_string(const char *const *table, int n, int v)
{
        return v >= 0 && v < n ? table[v] : NULL;
}

static int table_from_string(const char *const *table, int n, const char *s)
{
        for (int i = 0; s && i < n; i++)
                if (streq(s, table[i]))
                        return i;
        return -1;
}

const char *vb_platform_type_to_string(vb_platform_type t)
{
        return table_to_string(platform_type_table, _VB_PLATFORM_TYPE_MAX, t);
}

vb_platform_type vb_platform_type_from_string(const char *s)
{
        return table_from_string(platform_type_table, _VB_PLATFORM_TYPE_MAX, s);
}

const char *vb_run_kind_to_string(vb_run_kind k)
{
        return table_to_string(run_kind_table, _VB_RUN_KIND_MAX, k);
}

vb_run_kind vb_run_kind_from_string(const char *s)
{
        return table_from_string(run_kind_table, _VB_RUN_KIND_MAX, s);
}

const char *vb_run_status_to_string(vb_run_status s)
{
        return table_to_string(run_status_table, _VB_RUN_STATUS_MAX, s);
}

vb_run_status vb_run_status_from_string(const char *s)
{
        return table_from_string(run_status_table, _VB_RUN_STATUS_MAX, s);
}

bool vb_run_status_is_active(vb_run_status s)
{
        return s == VB_RUN_WAITING || s == VB_RUN_RUNNING;
}

const char *vb_run_vm_status_to_string(vb_run_vm_status s)
{
        return table_to_string(run_vm_status_table, _VB_RUN_VM_STATUS_MAX, s);
}

vb_run_vm_status vb_run_vm_status_from_string(const char *s)
{
        return table_from_string(run_vm_status_table, _VB_RUN_VM_STATUS_MAX, s);
}

const char *vb_backup_step_to_string(vb_backup_step s)
{
        return table_to_string(vm_state_table, _VB_BACKUP_STEP_MAX, s);
}

vb_backup_step vb_backup_step_from_string(const char *s)
{
        return table_from_string(vm_state_table, _VB_BACKUP_STEP_MAX, s);
}

/* ---- the schema ---- */

/* Enumerated columns are checked in C, not with CHECK constraints: SQLite
 * cannot change a CHECK without rebuilding the table, and later versions
 * will add values (platform and pool types). Ids are AUTOINCREMENT so an id
 * is never reused: run VMs and locks keep platform ids without a foreign
 * key (they are history), and a removed platform's id must not come back. */
static const char schema_v1[] = "CREATE TABLE platforms (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        name TEXT NOT NULL UNIQUE,\n"
                                "        type TEXT NOT NULL,\n"
                                "        address TEXT NOT NULL,\n"
                                "        insecure INTEGER NOT NULL DEFAULT 0,\n"
                                "        user TEXT,\n"
                                "        backup_host TEXT,\n"
                                "        tags TEXT NOT NULL DEFAULT '[]',\n"
                                "        created INTEGER NOT NULL,\n"
                                "        modified INTEGER NOT NULL\n"
                                ");\n"
                                "CREATE TABLE pools (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        name TEXT NOT NULL UNIQUE,\n"
                                "        path TEXT NOT NULL,\n"
                                "        type TEXT NOT NULL,\n"
                                "        created INTEGER NOT NULL,\n"
                                "        modified INTEGER NOT NULL\n"
                                ");\n"
                                "CREATE TABLE jobs (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        name TEXT NOT NULL,\n"
                                "        platform_id INTEGER REFERENCES platforms(id) ON DELETE SET NULL,\n"
                                "        pool_id INTEGER REFERENCES pools(id) ON DELETE SET NULL,\n"
                                "        selection TEXT NOT NULL DEFAULT '[]',\n"
                                "        exclusions TEXT NOT NULL DEFAULT '[]',\n"
                                "        backup_type TEXT NOT NULL DEFAULT 'full',\n"
                                "        options TEXT NOT NULL DEFAULT '{}',\n"
                                "        schedule TEXT,\n"
                                "        enabled INTEGER NOT NULL DEFAULT 1,\n"
                                "        deleted INTEGER NOT NULL DEFAULT 0,\n"
                                "        last_check INTEGER NOT NULL DEFAULT 0,\n"
                                "        created INTEGER NOT NULL,\n"
                                "        modified INTEGER NOT NULL\n"
                                ");\n"
                                "CREATE UNIQUE INDEX jobs_name ON jobs(name) WHERE deleted = 0;\n"
                                "CREATE INDEX jobs_platform ON jobs(platform_id);\n"
                                "CREATE INDEX jobs_pool ON jobs(pool_id);\n"
                                "CREATE TABLE runs (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        job_id INTEGER NOT NULL REFERENCES jobs(id),\n"
                                "        kind TEXT NOT NULL,\n"
                                "        status TEXT NOT NULL DEFAULT 'waiting',\n"
                                "        retry_of INTEGER REFERENCES runs(id),\n"
                                "        created INTEGER NOT NULL,\n"
                                "        started INTEGER NOT NULL DEFAULT 0,\n"
                                "        ended INTEGER NOT NULL DEFAULT 0,\n"
                                "        error_code INTEGER NOT NULL DEFAULT 0,\n"
                                "        message TEXT\n"
                                ");\n"
                                "CREATE INDEX runs_job ON runs(job_id, id);\n"
                                "CREATE INDEX runs_status ON runs(status);\n"
                                "CREATE TABLE run_vms (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
                                "        platform_id INTEGER NOT NULL,\n"
                                "        vm_id TEXT NOT NULL,\n"
                                "        vm_name TEXT NOT NULL,\n"
                                "        title TEXT,\n"
                                "        host_id TEXT,\n"
                                "        status TEXT NOT NULL DEFAULT 'waiting',\n"
                                "        error_code INTEGER NOT NULL DEFAULT 0,\n"
                                "        message TEXT,\n"
                                "        restore_point TEXT,\n"
                                "        attempts INTEGER NOT NULL DEFAULT 0,\n"
                                "        history TEXT NOT NULL DEFAULT '[]',\n"
                                "        state TEXT NOT NULL DEFAULT 'waiting',\n"
                                "        snapshot TEXT,\n"
                                "        temp_files TEXT NOT NULL DEFAULT '[]',\n"
                                "        started INTEGER NOT NULL DEFAULT 0,\n"
                                "        ended INTEGER NOT NULL DEFAULT 0,\n"
                                "        UNIQUE (run_id, platform_id, vm_id)\n"
                                ");\n"
                                "CREATE INDEX run_vms_vm ON run_vms(platform_id, vm_id);\n"
                                "CREATE INDEX run_vms_unfinished ON run_vms(status, state);\n"
                                "CREATE TABLE vm_locks (\n"
                                "        platform_id INTEGER NOT NULL,\n"
                                "        vm_id TEXT NOT NULL,\n"
                                "        run_id INTEGER NOT NULL,\n"
                                "        locked INTEGER NOT NULL,\n"
                                "        PRIMARY KEY (platform_id, vm_id)\n"
                                ");\n"
                                "CREATE INDEX vm_locks_run ON vm_locks(run_id);\n"
                                "CREATE TABLE restore_points (\n"
                                "        pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,\n"
                                "        id TEXT NOT NULL,\n"
                                "        platform_id INTEGER REFERENCES platforms(id) ON DELETE SET NULL,\n"
                                "        platform TEXT,\n"
                                "        vm_id TEXT,\n"
                                "        vm_uuid TEXT,\n"
                                "        vm_name TEXT NOT NULL,\n"
                                "        title TEXT,\n"
                                "        host_id TEXT,\n"
                                "        type TEXT NOT NULL,\n"
                                "        parent TEXT,\n"
                                "        checkpoint TEXT,\n"
                                "        consistency TEXT,\n"
                                "        job TEXT,\n"
                                "        run TEXT,\n"
                                "        time_start INTEGER NOT NULL,\n"
                                "        time_end INTEGER NOT NULL,\n"
                                "        disks INTEGER NOT NULL,\n"
                                "        size INTEGER NOT NULL,\n"
                                "        data_bytes INTEGER NOT NULL,\n"
                                "        new_bytes INTEGER NOT NULL,\n"
                                "        PRIMARY KEY (pool_id, id)\n"
                                ");\n"
                                "CREATE INDEX restore_points_vm ON restore_points(platform_id, vm_id);\n"
                                "CREATE INDEX restore_points_name ON restore_points(vm_name);\n";

/* Version 2: what one VM's attempt transferred, and its notes. */
static const char schema_v2[] = "ALTER TABLE run_vms ADD COLUMN bytes_read INTEGER NOT NULL DEFAULT 0;\n"
                                "ALTER TABLE run_vms ADD COLUMN bytes_new INTEGER NOT NULL DEFAULT 0;\n"
                                "ALTER TABLE run_vms ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';\n";

/* Version 3: restores and their items (daemon/restorer.h). An item keeps
 * its pool's id without a foreign key: it is history, like a run VM's
 * platform id. */
static const char schema_v3[] = "CREATE TABLE restores (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        name TEXT NOT NULL,\n"
                                "        kind TEXT NOT NULL,\n"
                                "        path TEXT NOT NULL,\n"
                                "        spec TEXT NOT NULL DEFAULT '{}',\n"
                                "        schedule TEXT NOT NULL DEFAULT 'now',\n"
                                "        at INTEGER NOT NULL DEFAULT 0,\n"
                                "        status TEXT NOT NULL DEFAULT 'waiting',\n"
                                "        created INTEGER NOT NULL,\n"
                                "        started INTEGER NOT NULL DEFAULT 0,\n"
                                "        ended INTEGER NOT NULL DEFAULT 0,\n"
                                "        error_code INTEGER NOT NULL DEFAULT 0,\n"
                                "        message TEXT\n"
                                ");\n"
                                "CREATE INDEX restores_status ON restores(status);\n"
                                "CREATE TABLE restore_items (\n"
                                "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                                "        restore_id INTEGER NOT NULL REFERENCES restores(id) ON DELETE CASCADE,\n"
                                "        idx INTEGER NOT NULL,\n"
                                "        pool_id INTEGER NOT NULL,\n"
                                "        restore_point TEXT NOT NULL,\n"
                                "        vm_name TEXT NOT NULL,\n"
                                "        disk TEXT,\n"
                                "        target TEXT,\n"
                                "        host_id TEXT,\n"
                                "        status TEXT NOT NULL DEFAULT 'waiting',\n"
                                "        error_code INTEGER NOT NULL DEFAULT 0,\n"
                                "        message TEXT,\n"
                                "        target_vm_id TEXT,\n"
                                "        volumes TEXT NOT NULL DEFAULT '[]',\n"
                                "        incomplete TEXT NOT NULL DEFAULT '[]',\n"
                                "        bytes_total INTEGER NOT NULL DEFAULT 0,\n"
                                "        bytes_written INTEGER NOT NULL DEFAULT 0,\n"
                                "        started INTEGER NOT NULL DEFAULT 0,\n"
                                "        ended INTEGER NOT NULL DEFAULT 0,\n"
                                "        UNIQUE (restore_id, idx)\n"
                                ");\n"
                                "CREATE INDEX restore_items_status ON restore_items(status);\n";

/* migrations[v] takes the file from version v to v + 1. A migration may
 * only add: tables, indexes, columns with a default. One that must rebuild
 * a table has to turn foreign keys off around its transaction (the pragma
 * is a no-op inside one). */
static const char *const migrations[] = {
        schema_v1,
        schema_v2,
        schema_v3,
};

_Static_assert(ELEMENTSOF(migrations) == VB_CATALOG_SCHEMA_VERSION, "one migration per schema version");

/* ---- SQLite plumbing ---- */

static int64_t now(void)
{
        return (int64_t)time(NULL);
}

/* Maps a SQLite result code to -errno, once, here; logs SQLite's message
 * unless the error is one a caller expects (a constraint). */
static int sql_errno(vb_catalog *c, int rc, const char *what)
{
        int sys = sqlite3_system_errno(c->db);

        switch (rc & 0xff) {
        case SQLITE_CONSTRAINT:
                log_debug("catalog: %.60s: %s", what, sqlite3_errmsg(c->db));
                if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                        return -EEXIST;
                if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                        return -ENOENT;
                return -EINVAL;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                log_warning("catalog %s: still locked by another process after %d ms: %s", c->path, c->busy_timeout_ms,
                            sqlite3_errmsg(c->db));
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                log_error("catalog %s: %s", c->path, sqlite3_errmsg(c->db));
                return -ENOSPC;
        case SQLITE_READONLY:
                log_error("catalog %s: %s", c->path, sqlite3_errmsg(c->db));
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                log_error("catalog %s: %s", c->path, sqlite3_errmsg(c->db));
                return -EACCES;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                log_error("catalog %s: damaged: %s", c->path, sqlite3_errmsg(c->db));
                return -EBADMSG;
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
                log_error("catalog %s: %s (%s)", c->path, sqlite3_errmsg(c->db), sys ? strerror(sys) : "no errno");
                return sys > 0 ? -sys : -EIO;
        default:
                log_error("catalog %s: %.60s: %s (SQLite code %d)", c->path, what, sqlite3_errmsg(c->db), rc);
                return -EIO;
        }
}

static int exec_sql(vb_catalog *c, const char *sql)
{
        int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : sql_errno(c, rc, sql);
}

/* One statement: parameters are bound in order (q_int, q_text...); the first
 * binding failure is kept and reported by q_step. */
typedef struct q {
        vb_catalog *c;
        sqlite3_stmt *s;
        const char *sql;
        int rc;
        int n;
} q;

static void q_done(q *x)
{
        if (x->s)
                sqlite3_finalize(x->s);
        x->s = NULL;
}

static int q_prepare(q *x, vb_catalog *c, const char *sql)
{
        int rc;

        q_done(x);
        *x = (q){ .c = c, .sql = sql };
        rc = sqlite3_prepare_v2(c->db, sql, -1, &x->s, NULL);
        return rc == SQLITE_OK ? 0 : sql_errno(c, rc, sql);
}

static void q_int(q *x, int64_t v)
{
        x->n++;
        if (x->rc == SQLITE_OK)
                x->rc = sqlite3_bind_int64(x->s, x->n, v);
}

/* An id, with 0 as NULL. */
static void q_id(q *x, int64_t v)
{
        x->n++;
        if (x->rc == SQLITE_OK)
                x->rc = v > 0 ? sqlite3_bind_int64(x->s, x->n, v) : sqlite3_bind_null(x->s, x->n);
}

static void q_text(q *x, const char *v)
{
        x->n++;
        if (x->rc == SQLITE_OK)
                x->rc = v ? sqlite3_bind_text(x->s, x->n, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(x->s, x->n);
}

/* JSON as compact text; NULL binds dflt (which may be NULL: SQL NULL). */
static void q_json(q *x, const json_t *j, const char *dflt)
{
        char *t;

        x->n++;
        if (x->rc != SQLITE_OK)
                return;
        if (!j) {
                x->rc = dflt ? sqlite3_bind_text(x->s, x->n, dflt, -1, SQLITE_STATIC) : sqlite3_bind_null(x->s, x->n);
                return;
        }
        t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t) {
                x->rc = SQLITE_NOMEM;
                return;
        }
        x->rc = sqlite3_bind_text(x->s, x->n, t, -1, free); /* frees t, also on failure */
}

/* 1: a row, 0: done, -errno. */
static int q_step(q *x)
{
        int rc;

        if (x->rc != SQLITE_OK)
                return sql_errno(x->c, x->rc, x->sql);
        rc = sqlite3_step(x->s);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return sql_errno(x->c, rc, x->sql);
}

static int q_exec(q *x)
{
        int r = q_step(x);

        return r < 0 ? r : 0;
}

/* Prepares sql, binds one id, runs it: the number of rows changed. */
static int exec_id(vb_catalog *c, const char *sql, int64_t id)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, sql);

        if (r < 0)
                return r;
        q_int(&x, id);
        r = q_exec(&x);
        return r < 0 ? r : sqlite3_changes(c->db);
}

/* Prepares sql, binds one id, reads one integer: 1 found, 0 no row. */
static int query_int(vb_catalog *c, const char *sql, int64_t id, int64_t *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, sql);

        if (r < 0)
                return r;
        q_int(&x, id);
        r = q_step(&x);
        if (r > 0)
                *ret = sqlite3_column_int64(x.s, 0);
        return r;
}

/* Column readers: a failure sets *r (first one wins) and returns NULL. */
static char *col_str(sqlite3_stmt *s, int i, int *r)
{
        const char *t = (const char *)sqlite3_column_text(s, i);
        char *d;

        if (!t)
                return NULL;
        d = strdup(t);
        if (!d && *r >= 0)
                *r = -ENOMEM;
        return d;
}

static json_t *col_json(sqlite3_stmt *s, int i, int *r)
{
        const char *t = (const char *)sqlite3_column_text(s, i);
        json_error_t e;
        json_t *j;

        if (!t)
                return NULL;
        j = json_loads(t, JSON_DECODE_ANY, &e);
        if (!j && *r >= 0) {
                log_error("catalog: column %s holds malformed JSON: %s", sqlite3_column_name(s, i), e.text);
                *r = -EBADMSG;
        }
        return j;
}

static int col_enum(sqlite3_stmt *s, int i, const char *const *table, int n, int *r)
{
        const char *t = (const char *)sqlite3_column_text(s, i);
        int v = table_from_string(table, n, t);

        if (v < 0 && *r >= 0) {
                log_error("catalog: column %s holds an unknown value '%s'", sqlite3_column_name(s, i),
                          t ? t : "(null)");
                *r = -EBADMSG;
        }
        return v;
}

/* Transactions: the catalog's mutex, then BEGIN; tx_end commits when r >= 0,
 * else rolls back, and returns r (or the commit's error). */
static int tx_begin(vb_catalog *c, bool write)
{
        int r;

        pthread_mutex_lock(&c->lock);
        r = exec_sql(c, write ? "BEGIN IMMEDIATE" : "BEGIN");
        if (r < 0)
                pthread_mutex_unlock(&c->lock);
        return r;
}

static int tx_end(vb_catalog *c, int r)
{
        if (r >= 0) {
                int k = exec_sql(c, "COMMIT");
                if (k < 0)
                        r = k;
        }
        if (r < 0 && !sqlite3_get_autocommit(c->db))
                (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&c->lock);
        return r;
}

#define WITH_TX(c, write, expr)                                                                                        \
        ({                                                                                                             \
                int tx_r_ = tx_begin((c), (write));                                                                    \
                if (tx_r_ >= 0)                                                                                        \
                        tx_r_ = tx_end((c), (expr));                                                                   \
                tx_r_;                                                                                                 \
        })

/* Reading records: each type has a row reader (columns in the order of its
 * *_SELECT) and a clear function. */
typedef int (*read_fn)(sqlite3_stmt *s, void *item);
typedef void (*clear_fn)(void *item);

/* Every row of x into a new array. */
static int q_list(q *x, size_t size, read_fn rd, clear_fn clear, void **ret, size_t *ret_n)
{
        uint8_t *v = NULL;
        size_t n = 0, cap = 0;
        int r;

        for (;;) {
                r = q_step(x);
                if (r <= 0)
                        break;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        uint8_t *nv = realloc(v, ncap * size);
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
                memset(v + n * size, 0, size);
                r = rd(x->s, v + n * size);
                n++; /* cleared below also when it failed half way */
                if (r < 0)
                        break;
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        clear(v + i * size);
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* One row into ret (size bytes, written only on success); -ENOENT for none. */
static int q_one(q *x, size_t size, read_fn rd, clear_fn clear, void *ret)
{
        _cleanup_free_ void *tmp = NULL;
        int r = q_step(x);

        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        tmp = calloc(1, size);
        if (!tmp)
                return -ENOMEM;
        r = rd(x->s, tmp);
        if (r < 0) {
                clear(tmp);
                return r;
        }
        memcpy(ret, tmp, size);
        return 0;
}

static bool is_string_array(const json_t *j)
{
        if (!json_is_array(j))
                return false;
        for (size_t i = 0; i < json_array_size(j); i++)
                if (!json_is_string(json_array_get(j, i)))
                        return false;
        return true;
}

static bool is_blank(const char *s)
{
        return !s || !*s;
}

/* ---- open, migrate, close ---- */

static int pragma_int(vb_catalog *c, const char *sql, int64_t *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, sql);

        if (r < 0)
                return r;
        r = q_step(&x);
        if (r < 0)
                return r;
        *ret = r > 0 ? sqlite3_column_int64(x.s, 0) : 0;
        return 0;
}

/* One migration step from version v, in the caller's transaction. The
 * version is read again inside it: another process may have migrated the
 * file in between. Returns the version the file has now. */
static int migrate_step_locked(vb_catalog *c, int v)
{
        int64_t cur;
        char sql[64];
        int r;

        r = pragma_int(c, "PRAGMA user_version", &cur);
        if (r < 0)
                return r;
        if (cur != v)
                return (int)cur;
        r = exec_sql(c, migrations[v]);
        if (r < 0)
                return r;
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        r = exec_sql(c, sql);
        return r < 0 ? r : v + 1;
}

static int migrate(vb_catalog *c, int target)
{
        int64_t v, from;
        int r;

        r = pragma_int(c, "PRAGMA user_version", &v);
        if (r < 0)
                return r;
        if (v < 0 || v > VB_CATALOG_SCHEMA_VERSION)
                return log_error_errno(EPROTONOSUPPORT,
                                       "catalog %s has schema version %" PRId64
                                       ", this vbak knows versions up to %d; refusing to use it",
                                       c->path, v, VB_CATALOG_SCHEMA_VERSION);
        from = v;
        while (v < target) {
                r = WITH_TX(c, true, migrate_step_locked(c, (int)v));
                if (r < 0)
                        return log_error_errno(r, "catalog %s: migration from schema version %" PRId64 " failed: %m",
                                               c->path, v);
                v = r;
        }
        if (from == 0 && v > 0)
                log_info("catalog %s: created, schema version %" PRId64, c->path, v);
        else if (v > from)
                log_info("catalog %s: schema migrated from version %" PRId64 " to %" PRId64, c->path, from, v);
        return 0;
}

int vb_catalog_open_version(const char *state_dir, int version, vb_catalog **ret)
{
        _cleanup_(vb_catalog_closep) vb_catalog *c = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *mode = NULL;
        int64_t fk;
        int r, rc;

        if (!state_dir || !ret || version < 1 || version > VB_CATALOG_SCHEMA_VERSION)
                return -EINVAL;
        r = vb_mkdir_p_at(AT_FDCWD, state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to create the state directory %s: %m", state_dir);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        if (asprintf(&c->path, "%s/%s", state_dir, VB_CATALOG_FILE) < 0) {
                c->path = NULL;
                return -ENOMEM;
        }
        /* Created here so that it is 0600 whatever the umask; SQLite gives
         * its -wal and -shm files the database's mode. */
        fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open the catalog %s: %m", c->path);
        rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK)
                return c->db ? sql_errno(c, rc, "open") : -ENOMEM;
        sqlite3_extended_result_codes(c->db, 1);
        c->busy_timeout_ms = VB_CATALOG_BUSY_TIMEOUT_MS;
        sqlite3_busy_timeout(c->db, c->busy_timeout_ms);

        {
                _cleanup_(q_done) q x = { 0 };

                r = q_prepare(&x, c, "PRAGMA journal_mode = WAL");
                if (r >= 0)
                        r = q_step(&x);
                if (r > 0)
                        mode = col_str(x.s, 0, &r);
                if (r < 0)
                        return r;
                if (!mode || strcasecmp(mode, "wal") != 0)
                        return log_error_errno(EIO, "catalog %s: cannot use WAL mode (journal mode is %s)", c->path,
                                               mode ? mode : "unknown");
        }
        r = exec_sql(c, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = exec_sql(c, "PRAGMA foreign_keys = ON");
        if (r >= 0)
                r = pragma_int(c, "PRAGMA foreign_keys", &fk);
        if (r < 0)
                return r;
        if (fk != 1)
                return log_error_errno(EOPNOTSUPP, "catalog %s: this SQLite has no foreign keys", c->path);
        r = migrate(c, version);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int vb_catalog_open(const char *state_dir, vb_catalog **ret)
{
        return vb_catalog_open_version(state_dir, VB_CATALOG_SCHEMA_VERSION, ret);
}

vb_catalog *vb_catalog_close(vb_catalog *c)
{
        if (!c)
                return NULL;
        if (c->db && sqlite3_close(c->db) != SQLITE_OK)
                log_warning("catalog %s: close: %s", c->path, sqlite3_errmsg(c->db));
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return NULL;
}

int vb_catalog_set_busy_timeout(vb_catalog *c, int ms)
{
        if (!c || ms < 1)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        c->busy_timeout_ms = ms;
        sqlite3_busy_timeout(c->db, ms);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

static int schema_version_locked(vb_catalog *c)
{
        int64_t v;
        int r = pragma_int(c, "PRAGMA user_version", &v);

        return r < 0 ? r : (int)v;
}

int vb_catalog_schema_version(vb_catalog *c)
{
        if (!c)
                return -EINVAL;
        return WITH_TX(c, false, schema_version_locked(c));
}

/* ---- platforms ---- */

#define PLATFORM_SELECT                                                                                                \
        "SELECT id, name, type, address, insecure, user, backup_host, tags, created, modified FROM platforms "

void vb_platform_clear(vb_platform *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->address);
        free(p->user);
        free(p->backup_host);
        json_decref(p->tags);
        *p = (vb_platform){ 0 };
}

static void clear_platform(void *p)
{
        vb_platform_clear(p);
}

void vb_platforms_free(vb_platform *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_platform_clear(&v[i]);
        free(v);
}

static int read_platform(sqlite3_stmt *s, void *item)
{
        vb_platform *p = item;
        int r = 0;

        p->id = sqlite3_column_int64(s, 0);
        p->name = col_str(s, 1, &r);
        p->type = col_enum(s, 2, platform_type_table, _VB_PLATFORM_TYPE_MAX, &r);
        p->address = col_str(s, 3, &r);
        p->insecure = sqlite3_column_int(s, 4) != 0;
        p->user = col_str(s, 5, &r);
        p->backup_host = col_str(s, 6, &r);
        p->tags = col_json(s, 7, &r);
        p->created = sqlite3_column_int64(s, 8);
        p->modified = sqlite3_column_int64(s, 9);
        return r;
}

static int check_platform(const vb_platform *p)
{
        if (!p || is_blank(p->name) || is_blank(p->address) || !vb_platform_type_to_string(p->type))
                return -EINVAL;
        if (p->tags && !is_string_array(p->tags))
                return -EINVAL;
        return 0;
}

static int platform_add_locked(vb_catalog *c, const vb_platform *p, int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t t = now();
        int r;

        r = q_prepare(
                &x, c,
                "INSERT INTO platforms (name, type, address, insecure, user, backup_host, tags, created, modified)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (r < 0)
                return r;
        q_text(&x, p->name);
        q_text(&x, vb_platform_type_to_string(p->type));
        q_text(&x, p->address);
        q_int(&x, p->insecure);
        q_text(&x, p->user);
        q_text(&x, p->backup_host);
        q_json(&x, p->tags, "[]");
        q_int(&x, t);
        q_int(&x, t);
        r = q_exec(&x);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

int vb_catalog_platform_add(vb_catalog *c, const vb_platform *p, int64_t *ret_id)
{
        int64_t id = 0;
        int r;

        if (!c || check_platform(p) < 0)
                return -EINVAL;
        r = WITH_TX(c, true, platform_add_locked(c, p, &id));
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

/* By id (> 0) or name: the statement "<select> WHERE <col> = ?". */
static int get_locked(vb_catalog *c, const char *by_id, const char *by_name, int64_t id, const char *name, size_t size,
                      read_fn rd, clear_fn clear, void *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, id > 0 ? by_id : by_name);

        if (r < 0)
                return r;
        if (id > 0)
                q_int(&x, id);
        else
                q_text(&x, name);
        return q_one(&x, size, rd, clear, ret);
}

int vb_catalog_platform_get(vb_catalog *c, int64_t id, const char *name, vb_platform *ret)
{
        if (!c || !ret || (id <= 0 && !name))
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, PLATFORM_SELECT "WHERE id = ?", PLATFORM_SELECT "WHERE name = ?", id, name,
                                  sizeof(*ret), read_platform, clear_platform, ret));
}

static int list_locked(vb_catalog *c, const char *sql, size_t size, read_fn rd, clear_fn clear, void **ret,
                       size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, sql);

        if (r < 0)
                return r;
        return q_list(&x, size, rd, clear, ret, ret_n);
}

int vb_catalog_platform_list(vb_catalog *c, vb_platform **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false,
                       list_locked(c, PLATFORM_SELECT "ORDER BY name", sizeof(**ret), read_platform, clear_platform,
                                   (void **)ret, ret_n));
}

static int platform_update_locked(vb_catalog *c, const vb_platform *p)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = q_prepare(&x, c,
                      "UPDATE platforms SET name = ?, type = ?, address = ?, insecure = ?, user = ?, backup_host = ?,"
                      " tags = ?, modified = ? WHERE id = ?");
        if (r < 0)
                return r;
        q_text(&x, p->name);
        q_text(&x, vb_platform_type_to_string(p->type));
        q_text(&x, p->address);
        q_int(&x, p->insecure);
        q_text(&x, p->user);
        q_text(&x, p->backup_host);
        q_json(&x, p->tags, "[]");
        q_int(&x, now());
        q_int(&x, p->id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_platform_update(vb_catalog *c, const vb_platform *p)
{
        if (!c || check_platform(p) < 0 || p->id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, platform_update_locked(c, p));
}

/* Removes row id of table unless a job that is not deleted uses it through
 * column; the foreign keys unlink the rest. */
static int remove_unless_used_locked(vb_catalog *c, const char *used_sql, const char *delete_sql, int64_t id)
{
        int64_t used = 0;
        int r;

        r = query_int(c, used_sql, id, &used);
        if (r < 0)
                return r;
        if (used > 0)
                return -ENOTEMPTY;
        r = exec_id(c, delete_sql, id);
        if (r < 0)
                return r;
        return r > 0 ? 0 : -ENOENT;
}

int vb_catalog_platform_remove(vb_catalog *c, int64_t id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true,
                       remove_unless_used_locked(c, "SELECT count(*) FROM jobs WHERE platform_id = ? AND deleted = 0",
                                                 "DELETE FROM platforms WHERE id = ?", id));
}

json_t *vb_platform_to_json(const vb_platform *p)
{
        if (!p)
                return NULL;
        return json_pack("{s:I, s:s?, s:s?, s:s?, s:b, s:s?, s:s?, s:o, s:I, s:I}", "id", (json_int_t)p->id, "name",
                         p->name, "type", vb_platform_type_to_string(p->type), "address", p->address, "insecure",
                         p->insecure, "user", p->user, "backup_host", p->backup_host, "tags",
                         p->tags ? json_incref(p->tags) : json_array(), "created", (json_int_t)p->created, "modified",
                         (json_int_t)p->modified);
}

/* ---- pools ---- */

#define POOL_SELECT "SELECT id, name, path, type, created, modified FROM pools "

void vb_pool_clear(vb_pool *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->path);
        free(p->type);
        *p = (vb_pool){ 0 };
}

static void clear_pool(void *p)
{
        vb_pool_clear(p);
}

void vb_pools_free(vb_pool *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_pool_clear(&v[i]);
        free(v);
}

static int read_pool(sqlite3_stmt *s, void *item)
{
        vb_pool *p = item;
        int r = 0;

        p->id = sqlite3_column_int64(s, 0);
        p->name = col_str(s, 1, &r);
        p->path = col_str(s, 2, &r);
        p->type = col_str(s, 3, &r);
        p->created = sqlite3_column_int64(s, 4);
        p->modified = sqlite3_column_int64(s, 5);
        return r;
}

static int check_pool(const vb_pool *p)
{
        if (!p || is_blank(p->name) || is_blank(p->path) || is_blank(p->type) || !sp_driver_find(p->type))
                return -EINVAL;
        return 0;
}

static int pool_add_locked(vb_catalog *c, const vb_pool *p, int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t t = now();
        int r;

        r = q_prepare(&x, c, "INSERT INTO pools (name, path, type, created, modified) VALUES (?, ?, ?, ?, ?)");
        if (r < 0)
                return r;
        q_text(&x, p->name);
        q_text(&x, p->path);
        q_text(&x, p->type);
        q_int(&x, t);
        q_int(&x, t);
        r = q_exec(&x);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

int vb_catalog_pool_add(vb_catalog *c, const vb_pool *p, int64_t *ret_id)
{
        int64_t id = 0;
        int r;

        if (!c || check_pool(p) < 0)
                return -EINVAL;
        r = WITH_TX(c, true, pool_add_locked(c, p, &id));
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

int vb_catalog_pool_get(vb_catalog *c, int64_t id, const char *name, vb_pool *ret)
{
        if (!c || !ret || (id <= 0 && !name))
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, POOL_SELECT "WHERE id = ?", POOL_SELECT "WHERE name = ?", id, name, sizeof(*ret),
                                  read_pool, clear_pool, ret));
}

int vb_catalog_pool_list(vb_catalog *c, vb_pool **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(
                c, false,
                list_locked(c, POOL_SELECT "ORDER BY name", sizeof(**ret), read_pool, clear_pool, (void **)ret, ret_n));
}

static int pool_update_locked(vb_catalog *c, const vb_pool *p)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = q_prepare(&x, c, "UPDATE pools SET name = ?, path = ?, type = ?, modified = ? WHERE id = ?");
        if (r < 0)
                return r;
        q_text(&x, p->name);
        q_text(&x, p->path);
        q_text(&x, p->type);
        q_int(&x, now());
        q_int(&x, p->id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_pool_update(vb_catalog *c, const vb_pool *p)
{
        if (!c || check_pool(p) < 0 || p->id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, pool_update_locked(c, p));
}

int vb_catalog_pool_remove(vb_catalog *c, int64_t id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true,
                       remove_unless_used_locked(c, "SELECT count(*) FROM jobs WHERE pool_id = ? AND deleted = 0",
                                                 "DELETE FROM pools WHERE id = ?", id));
}

json_t *vb_pool_to_json(const vb_pool *p)
{
        if (!p)
                return NULL;
        return json_pack("{s:I, s:s?, s:s?, s:s?, s:I, s:I}", "id", (json_int_t)p->id, "name", p->name, "path", p->path,
                         "type", p->type, "created", (json_int_t)p->created, "modified", (json_int_t)p->modified);
}

/* ---- jobs ---- */

#define JOB_SELECT                                                                                                     \
        "SELECT j.id, j.name, j.platform_id, j.pool_id, pl.name, po.name, j.selection, j.exclusions, j.backup_type,"   \
        " j.options, j.schedule, j.enabled, j.deleted, j.last_check, j.created, j.modified FROM jobs j"                \
        " LEFT JOIN platforms pl ON pl.id = j.platform_id LEFT JOIN pools po ON po.id = j.pool_id "

void vb_job_clear(vb_job *j)
{
        if (!j)
                return;
        free(j->name);
        free(j->platform_name);
        free(j->pool_name);
        json_decref(j->selection);
        json_decref(j->exclusions);
        json_decref(j->options);
        json_decref(j->schedule);
        *j = (vb_job){ 0 };
}

static void clear_job(void *j)
{
        vb_job_clear(j);
}

void vb_jobs_free(vb_job *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_job_clear(&v[i]);
        free(v);
}

static int read_job(sqlite3_stmt *s, void *item)
{
        vb_job *j = item;
        int r = 0;

        j->id = sqlite3_column_int64(s, 0);
        j->name = col_str(s, 1, &r);
        j->platform_id = sqlite3_column_int64(s, 2);
        j->pool_id = sqlite3_column_int64(s, 3);
        j->platform_name = col_str(s, 4, &r);
        j->pool_name = col_str(s, 5, &r);
        j->selection = col_json(s, 6, &r);
        j->exclusions = col_json(s, 7, &r);
        j->backup_type = (dd_backup_type)col_enum(s, 8, backup_type_table, _DD_BACKUP_TYPE_MAX, &r);
        j->options = col_json(s, 9, &r);
        j->schedule = col_json(s, 10, &r);
        j->enabled = sqlite3_column_int(s, 11) != 0;
        j->deleted = sqlite3_column_int(s, 12) != 0;
        j->last_check = sqlite3_column_int64(s, 13);
        j->created = sqlite3_column_int64(s, 14);
        j->modified = sqlite3_column_int64(s, 15);
        return r;
}

/* A selection is an array of {"level", "id", "name"}: a known level, and
 * an id (string or integer) or a name (string) or both. */
static bool selection_is_valid(const json_t *sel)
{
        if (!json_is_array(sel))
                return false;
        for (size_t i = 0; i < json_array_size(sel); i++) {
                const json_t *e = json_array_get(sel, i);
                const json_t *id = json_object_get(e, "id"), *name = json_object_get(e, "name");
                const char *level = json_string_value(json_object_get(e, "level"));

                if (!json_is_object(e) ||
                    table_from_string(selection_level_table, ELEMENTSOF(selection_level_table), level) < 0)
                        return false;
                if (id && !json_is_string(id) && !json_is_integer(id))
                        return false;
                if (name && !json_is_string(name))
                        return false;
                if (!id && !name)
                        return false;
        }
        return true;
}

static int check_job(const vb_job *j)
{
        if (!j || is_blank(j->name) || j->platform_id <= 0 || j->pool_id <= 0 ||
            !dd_backup_type_to_string(j->backup_type))
                return -EINVAL;
        if (!selection_is_valid(j->selection))
                return -EINVAL;
        if (j->exclusions && !is_string_array(j->exclusions))
                return -EINVAL;
        if (j->options && !json_is_object(j->options))
                return -EINVAL;
        return 0;
}

static int job_add_locked(vb_catalog *c, const vb_job *j, int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t t = now();
        int r;

        r = q_prepare(&x, c,
                      "INSERT INTO jobs (name, platform_id, pool_id, selection, exclusions, backup_type, options,"
                      " schedule, enabled, created, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (r < 0)
                return r;
        q_text(&x, j->name);
        q_id(&x, j->platform_id);
        q_id(&x, j->pool_id);
        q_json(&x, j->selection, "[]");
        q_json(&x, j->exclusions, "[]");
        q_text(&x, dd_backup_type_to_string(j->backup_type));
        q_json(&x, j->options, "{}");
        q_json(&x, j->schedule, NULL);
        q_int(&x, j->enabled);
        q_int(&x, t);
        q_int(&x, t);
        r = q_exec(&x);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

int vb_catalog_job_add(vb_catalog *c, const vb_job *j, int64_t *ret_id)
{
        int64_t id = 0;
        int r;

        if (!c || check_job(j) < 0)
                return -EINVAL;
        r = WITH_TX(c, true, job_add_locked(c, j, &id));
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

int vb_catalog_job_get(vb_catalog *c, int64_t id, const char *name, vb_job *ret)
{
        if (!c || !ret || (id <= 0 && !name))
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, JOB_SELECT "WHERE j.id = ?", JOB_SELECT "WHERE j.name = ? AND j.deleted = 0", id,
                                  name, sizeof(*ret), read_job, clear_job, ret));
}

int vb_catalog_job_list(vb_catalog *c, bool include_deleted, vb_job **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false,
                       list_locked(c,
                                   include_deleted ? JOB_SELECT "ORDER BY j.name, j.id"
                                                   : JOB_SELECT "WHERE j.deleted = 0 ORDER BY j.name",
                                   sizeof(**ret), read_job, clear_job, (void **)ret, ret_n));
}

static int job_update_locked(vb_catalog *c, const vb_job *j)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = q_prepare(&x, c,
                      "UPDATE jobs SET name = ?, platform_id = ?, pool_id = ?, selection = ?, exclusions = ?,"
                      " backup_type = ?, options = ?, schedule = ?, enabled = ?, modified = ?"
                      " WHERE id = ? AND deleted = 0");
        if (r < 0)
                return r;
        q_text(&x, j->name);
        q_id(&x, j->platform_id);
        q_id(&x, j->pool_id);
        q_json(&x, j->selection, "[]");
        q_json(&x, j->exclusions, "[]");
        q_text(&x, dd_backup_type_to_string(j->backup_type));
        q_json(&x, j->options, "{}");
        q_json(&x, j->schedule, NULL);
        q_int(&x, j->enabled);
        q_int(&x, now());
        q_int(&x, j->id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_job_update(vb_catalog *c, const vb_job *j)
{
        if (!c || check_job(j) < 0 || j->id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, job_update_locked(c, j));
}

static int job_delete_locked(vb_catalog *c, int64_t id)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "UPDATE jobs SET deleted = 1, enabled = 0, modified = ? WHERE id = ? AND deleted = 0");

        if (r < 0)
                return r;
        q_int(&x, now());
        q_int(&x, id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_job_delete(vb_catalog *c, int64_t id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, job_delete_locked(c, id));
}

static int job_set_last_check_locked(vb_catalog *c, int64_t id, int64_t when)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "UPDATE jobs SET last_check = ? WHERE id = ?");

        if (r < 0)
                return r;
        q_int(&x, when);
        q_int(&x, id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_job_set_last_check(vb_catalog *c, int64_t id, int64_t when)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, job_set_last_check_locked(c, id, when));
}

json_t *vb_job_to_json(const vb_job *j)
{
        if (!j)
                return NULL;
        return json_pack("{s:I, s:s?, s:I, s:s?, s:I, s:s?, s:o, s:o, s:s?, s:o, s:o, s:b, s:b, s:I, s:I, s:I}", "id",
                         (json_int_t)j->id, "name", j->name, "platform_id", (json_int_t)j->platform_id, "platform",
                         j->platform_name, "pool_id", (json_int_t)j->pool_id, "pool", j->pool_name, "selection",
                         j->selection ? json_incref(j->selection) : json_array(), "exclusions",
                         j->exclusions ? json_incref(j->exclusions) : json_array(), "backup_type",
                         dd_backup_type_to_string(j->backup_type), "options",
                         j->options ? json_incref(j->options) : json_object(), "schedule",
                         j->schedule ? json_incref(j->schedule) : json_null(), "enabled", j->enabled, "deleted",
                         j->deleted, "last_check", (json_int_t)j->last_check, "created", (json_int_t)j->created,
                         "modified", (json_int_t)j->modified);
}

/* ---- runs ---- */

#define RUN_SELECT                                                                                                     \
        "SELECT r.id, r.job_id, j.name, j.deleted, r.kind, r.status, r.retry_of, r.created, r.started, r.ended,"       \
        " r.error_code, r.message, count(v.id), coalesce(sum(v.status = 'waiting'), 0),"                               \
        " coalesce(sum(v.status = 'running'), 0), coalesce(sum(v.status = 'succeeded'), 0),"                           \
        " coalesce(sum(v.status = 'failed'), 0), coalesce(sum(v.status = 'skipped'), 0),"                              \
        " coalesce(sum(v.bytes_read), 0), coalesce(sum(v.bytes_new), 0)"                                               \
        " FROM runs r JOIN jobs j ON j.id = r.job_id LEFT JOIN run_vms v ON v.run_id = r.id "

void vb_run_clear(vb_run *r)
{
        if (!r)
                return;
        free(r->job_name);
        free(r->message);
        *r = (vb_run){ 0 };
}

static void clear_run(void *r)
{
        vb_run_clear(r);
}

void vb_runs_free(vb_run *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_run_clear(&v[i]);
        free(v);
}

static int read_run(sqlite3_stmt *s, void *item)
{
        vb_run *x = item;
        int r = 0;

        x->id = sqlite3_column_int64(s, 0);
        x->job_id = sqlite3_column_int64(s, 1);
        x->job_name = col_str(s, 2, &r);
        x->job_deleted = sqlite3_column_int(s, 3) != 0;
        x->kind = col_enum(s, 4, run_kind_table, _VB_RUN_KIND_MAX, &r);
        x->status = col_enum(s, 5, run_status_table, _VB_RUN_STATUS_MAX, &r);
        x->retry_of = sqlite3_column_int64(s, 6);
        x->created = sqlite3_column_int64(s, 7);
        x->started = sqlite3_column_int64(s, 8);
        x->ended = sqlite3_column_int64(s, 9);
        x->error_code = sqlite3_column_int(s, 10);
        x->message = col_str(s, 11, &r);
        x->n_vms = (unsigned)sqlite3_column_int64(s, 12);
        x->n_waiting = (unsigned)sqlite3_column_int64(s, 13);
        x->n_running = (unsigned)sqlite3_column_int64(s, 14);
        x->n_succeeded = (unsigned)sqlite3_column_int64(s, 15);
        x->n_failed = (unsigned)sqlite3_column_int64(s, 16);
        x->n_skipped = (unsigned)sqlite3_column_int64(s, 17);
        x->bytes_read = (uint64_t)sqlite3_column_int64(s, 18);
        x->bytes_new = (uint64_t)sqlite3_column_int64(s, 19);
        return r;
}

vb_run_status vb_run_status_from_vms(const vb_run *r)
{
        unsigned failed;

        if (!r)
                return _VB_RUN_STATUS_INVALID;
        failed = r->n_failed + r->n_waiting + r->n_running;
        if (failed == 0)
                return VB_RUN_SUCCEEDED;
        return r->n_succeeded == 0 ? VB_RUN_FAILED : VB_RUN_PARTIAL;
}

static int run_add_locked(vb_catalog *c, int64_t job_id, vb_run_kind kind, int64_t retry_of, int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        /* INSERT ... SELECT: no row when the job is not there or deleted. */
        r = q_prepare(&x, c,
                      "INSERT INTO runs (job_id, kind, status, retry_of, created)"
                      " SELECT id, ?, 'waiting', ?, ? FROM jobs WHERE id = ? AND deleted = 0");
        if (r < 0)
                return r;
        q_text(&x, vb_run_kind_to_string(kind));
        q_id(&x, retry_of);
        q_int(&x, now());
        q_int(&x, job_id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) == 0)
                return -ENOENT;
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

int vb_catalog_run_add(vb_catalog *c, int64_t job_id, vb_run_kind kind, int64_t retry_of, int64_t *ret_id)
{
        int64_t id = 0;
        int r;

        if (!c || job_id <= 0 || !vb_run_kind_to_string(kind) || retry_of < 0)
                return -EINVAL;
        r = WITH_TX(c, true, run_add_locked(c, job_id, kind, retry_of, &id));
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

int vb_catalog_run_get(vb_catalog *c, int64_t id, vb_run *ret)
{
        if (!c || !ret || id <= 0)
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, RUN_SELECT "WHERE r.id = ? GROUP BY r.id", NULL, id, NULL, sizeof(*ret), read_run,
                                  clear_run, ret));
}

static int run_list_locked(vb_catalog *c, const vb_run_filter *f, vb_run **ret, size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        char sql[sizeof(RUN_SELECT) + 512];
        size_t len;
        int r;

        /* The status list comes from our own table, never from the caller's text. */
        len = (size_t)snprintf(sql, sizeof(sql), "%sWHERE (?1 = 0 OR r.job_id = ?1)", RUN_SELECT);
        if (f && f->statuses) {
                const char *sep = " AND r.status IN (";

                for (int s = 0; s < _VB_RUN_STATUS_MAX; s++)
                        if (f->statuses & (1u << s)) {
                                len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s'%s'", sep,
                                                        run_status_table[s]);
                                sep = ", ";
                        }
                len += (size_t)snprintf(sql + len, sizeof(sql) - len, ")");
        }
        snprintf(sql + len, sizeof(sql) - len, " GROUP BY r.id ORDER BY r.id DESC LIMIT ?2");
        r = q_prepare(&x, c, sql);
        if (r < 0)
                return r;
        q_int(&x, f ? f->job_id : 0);
        q_int(&x, f && f->limit ? (int64_t)f->limit : -1);
        return q_list(&x, sizeof(**ret), read_run, clear_run, (void **)ret, ret_n);
}

int vb_catalog_run_list(vb_catalog *c, const vb_run_filter *f, vb_run **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n || (f && f->statuses >> _VB_RUN_STATUS_MAX))
                return -EINVAL;
        return WITH_TX(c, false, run_list_locked(c, f, ret, ret_n));
}

static int run_status_locked(vb_catalog *c, int64_t id, vb_run_status *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "SELECT status FROM runs WHERE id = ?");

        if (r < 0)
                return r;
        q_int(&x, id);
        r = q_step(&x);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        r = 0;
        *ret = col_enum(x.s, 0, run_status_table, _VB_RUN_STATUS_MAX, &r);
        return r;
}

static int run_start_locked(vb_catalog *c, int64_t id)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_status st;
        int r;

        r = run_status_locked(c, id, &st);
        if (r < 0)
                return r;
        if (st == VB_RUN_RUNNING)
                return -EALREADY;
        r = q_prepare(&x, c,
                      "UPDATE runs SET status = 'running', started = CASE WHEN started = 0 THEN ? ELSE started END,"
                      " ended = 0, error_code = 0, message = NULL WHERE id = ?");
        if (r < 0)
                return r;
        q_int(&x, now());
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_run_start(vb_catalog *c, int64_t id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, run_start_locked(c, id));
}

static int run_finish_locked(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_status st;
        int r;

        r = run_status_locked(c, id, &st);
        if (r < 0)
                return r;
        if (!vb_run_status_is_active(st))
                return -EALREADY;
        r = q_prepare(&x, c, "UPDATE runs SET status = ?, ended = ?, error_code = ?, message = ? WHERE id = ?");
        if (r < 0)
                return r;
        q_text(&x, vb_run_status_to_string(status));
        q_int(&x, now());
        q_int(&x, error_code);
        q_text(&x, message);
        q_int(&x, id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        r = exec_id(c, "DELETE FROM vm_locks WHERE run_id = ?", id);
        return r < 0 ? r : 0;
}

int vb_catalog_run_finish(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message)
{
        if (!c || id <= 0 || !vb_run_status_to_string(status) || vb_run_status_is_active(status))
                return -EINVAL;
        return WITH_TX(c, true, run_finish_locked(c, id, status, error_code, message));
}

json_t *vb_run_to_json(const vb_run *r)
{
        if (!r)
                return NULL;
        return json_pack("{s:I, s:I, s:s?, s:b, s:s?, s:s?, s:o, s:I, s:I, s:I, s:i, s:o, s:s?, s:{s:I, s:I, s:I, "
                         "s:I, s:I, s:I}, s:I, s:I}",
                         "id", (json_int_t)r->id, "job_id", (json_int_t)r->job_id, "job", r->job_name, "job_deleted",
                         r->job_deleted, "kind", vb_run_kind_to_string(r->kind), "status",
                         vb_run_status_to_string(r->status), "retry_of",
                         r->retry_of ? json_integer(r->retry_of) : json_null(), "created", (json_int_t)r->created,
                         "started", (json_int_t)r->started, "ended", (json_int_t)r->ended, "error_code", r->error_code,
                         "error", r->error_code ? json_string(vb_error_name(r->error_code)) : json_null(), "message",
                         r->message, "vms", "total", (json_int_t)r->n_vms, "waiting", (json_int_t)r->n_waiting,
                         "running", (json_int_t)r->n_running, "succeeded", (json_int_t)r->n_succeeded, "failed",
                         (json_int_t)r->n_failed, "skipped", (json_int_t)r->n_skipped, "bytes_read",
                         (json_int_t)r->bytes_read, "bytes_new", (json_int_t)r->bytes_new);
}

/* ---- the VMs of a run ---- */

#define RUN_VM_SELECT                                                                                                  \
        "SELECT v.id, v.run_id, r.job_id, v.platform_id, v.vm_id, v.vm_name, v.title, v.host_id, v.status,"            \
        " v.error_code, v.message, v.restore_point, v.attempts, v.history, v.state, v.snapshot, v.temp_files,"         \
        " v.started, v.ended, v.bytes_read, v.bytes_new, v.notes FROM run_vms v JOIN runs r ON r.id = v.run_id "

void vb_run_vm_clear(vb_run_vm *v)
{
        if (!v)
                return;
        free(v->vm_id);
        free(v->vm_name);
        free(v->title);
        free(v->host_id);
        free(v->message);
        free(v->restore_point);
        json_decref(v->history);
        free(v->snapshot);
        json_decref(v->temp_files);
        json_decref(v->notes);
        *v = (vb_run_vm){ 0 };
}

static void clear_run_vm(void *v)
{
        vb_run_vm_clear(v);
}

void vb_run_vms_free(vb_run_vm *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_run_vm_clear(&v[i]);
        free(v);
}

static int read_run_vm(sqlite3_stmt *s, void *item)
{
        vb_run_vm *v = item;
        int r = 0;

        v->id = sqlite3_column_int64(s, 0);
        v->run_id = sqlite3_column_int64(s, 1);
        v->job_id = sqlite3_column_int64(s, 2);
        v->platform_id = sqlite3_column_int64(s, 3);
        v->vm_id = col_str(s, 4, &r);
        v->vm_name = col_str(s, 5, &r);
        v->title = col_str(s, 6, &r);
        v->host_id = col_str(s, 7, &r);
        v->status = col_enum(s, 8, run_vm_status_table, _VB_RUN_VM_STATUS_MAX, &r);
        v->error_code = sqlite3_column_int(s, 9);
        v->message = col_str(s, 10, &r);
        v->restore_point = col_str(s, 11, &r);
        v->attempts = (unsigned)sqlite3_column_int64(s, 12);
        v->history = col_json(s, 13, &r);
        v->state = col_enum(s, 14, vm_state_table, _VB_BACKUP_STEP_MAX, &r);
        v->snapshot = col_str(s, 15, &r);
        v->temp_files = col_json(s, 16, &r);
        v->started = sqlite3_column_int64(s, 17);
        v->ended = sqlite3_column_int64(s, 18);
        v->bytes_read = (uint64_t)sqlite3_column_int64(s, 19);
        v->bytes_new = (uint64_t)sqlite3_column_int64(s, 20);
        v->notes = col_json(s, 21, &r);
        return r;
}

static int run_vm_add_locked(vb_catalog *c, int64_t run_id, const vb_run_vm *v, int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = q_prepare(&x, c,
                      "INSERT INTO run_vms (run_id, platform_id, vm_id, vm_name, title, host_id)"
                      " VALUES (?, ?, ?, ?, ?, ?)");
        if (r < 0)
                return r;
        q_int(&x, run_id);
        q_int(&x, v->platform_id);
        q_text(&x, v->vm_id);
        q_text(&x, v->vm_name);
        q_text(&x, v->title);
        q_text(&x, v->host_id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

int vb_catalog_run_vm_add(vb_catalog *c, int64_t run_id, const vb_run_vm *v, int64_t *ret_id)
{
        int64_t id = 0;
        int r;

        if (!c || run_id <= 0 || !v || v->platform_id <= 0 || is_blank(v->vm_id) || is_blank(v->vm_name))
                return -EINVAL;
        r = WITH_TX(c, true, run_vm_add_locked(c, run_id, v, &id));
        if (r >= 0 && ret_id)
                *ret_id = id;
        return r;
}

int vb_catalog_run_vm_get(vb_catalog *c, int64_t id, vb_run_vm *ret)
{
        if (!c || !ret || id <= 0)
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, RUN_VM_SELECT "WHERE v.id = ?", NULL, id, NULL, sizeof(*ret), read_run_vm,
                                  clear_run_vm, ret));
}

static int run_vm_list_locked(vb_catalog *c, int64_t run_id, vb_run_vm **ret, size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, RUN_VM_SELECT "WHERE v.run_id = ? ORDER BY v.id");

        if (r < 0)
                return r;
        q_int(&x, run_id);
        return q_list(&x, sizeof(**ret), read_run_vm, clear_run_vm, (void **)ret, ret_n);
}

int vb_catalog_run_vm_list(vb_catalog *c, int64_t run_id, vb_run_vm **ret, size_t *ret_n)
{
        if (!c || run_id <= 0 || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false, run_vm_list_locked(c, run_id, ret, ret_n));
}

/* The attempt now recorded in v, as one history entry. */
static json_t *attempt_to_json(const vb_run_vm *v)
{
        return json_pack("{s:I, s:s?, s:i, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:I}", "attempt", (json_int_t)v->attempts,
                         "status", vb_run_vm_status_to_string(v->status), "error_code", v->error_code, "message",
                         v->message, "restore_point", v->restore_point, "snapshot", v->snapshot, "started",
                         (json_int_t)v->started, "ended", (json_int_t)v->ended, "bytes_read", (json_int_t)v->bytes_read,
                         "bytes_new", (json_int_t)v->bytes_new);
}

static int run_vm_begin_locked(vb_catalog *c, int64_t id, const char *host_id)
{
        _cleanup_(vb_run_vm_clear) vb_run_vm v = { 0 };
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = get_locked(c, RUN_VM_SELECT "WHERE v.id = ?", NULL, id, NULL, sizeof(v), read_run_vm, clear_run_vm, &v);
        if (r < 0)
                return r;
        if (v.status == VB_RUN_VM_RUNNING)
                return -EALREADY;
        if (!json_is_array(v.history)) {
                json_decref(v.history);
                v.history = json_array();
                if (!v.history)
                        return -ENOMEM;
        }
        if (v.attempts > 0 && json_array_append_new(v.history, attempt_to_json(&v)) < 0)
                return -ENOMEM;
        r = q_prepare(&x, c,
                      "UPDATE run_vms SET status = 'running', attempts = attempts + 1, history = ?, state = 'waiting',"
                      " snapshot = NULL, temp_files = '[]', error_code = 0, message = NULL, restore_point = NULL,"
                      " started = ?, ended = 0, bytes_read = 0, bytes_new = 0, notes = '[]',"
                      " host_id = coalesce(?, host_id) WHERE id = ?");
        if (r < 0)
                return r;
        q_json(&x, v.history, "[]");
        q_int(&x, now());
        q_text(&x, host_id);
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_run_vm_begin(vb_catalog *c, int64_t id, const char *host_id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, run_vm_begin_locked(c, id, host_id));
}

static int run_vm_status_locked(vb_catalog *c, int64_t id, vb_run_vm_status *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "SELECT status FROM run_vms WHERE id = ?");

        if (r < 0)
                return r;
        q_int(&x, id);
        r = q_step(&x);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        r = 0;
        *ret = col_enum(x.s, 0, run_vm_status_table, _VB_RUN_VM_STATUS_MAX, &r);
        return r;
}

static int vm_state_set_locked(vb_catalog *c, int64_t id, vb_backup_step state, const char *snapshot,
                               const json_t *temp_files)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_vm_status st;
        int r;

        /* Only a running attempt has steps: anything else would leave a
         * state that the start-up cleanup misreads. */
        r = run_vm_status_locked(c, id, &st);
        if (r < 0)
                return r;
        if (st != VB_RUN_VM_RUNNING)
                return -EINVAL;
        r = q_prepare(&x, c,
                      "UPDATE run_vms SET state = ?1,"
                      " snapshot = CASE WHEN ?2 IS NULL THEN snapshot WHEN ?2 = '' THEN NULL ELSE ?2 END,"
                      " temp_files = coalesce(?3, temp_files) WHERE id = ?4");
        if (r < 0)
                return r;
        q_text(&x, vb_backup_step_to_string(state));
        q_text(&x, snapshot);
        q_json(&x, temp_files, NULL);
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_vm_state_set(vb_catalog *c, int64_t id, vb_backup_step state, const char *snapshot,
                            const json_t *temp_files)
{
        if (!c || id <= 0 || !vb_backup_step_to_string(state) || (temp_files && !is_string_array(temp_files)))
                return -EINVAL;
        return WITH_TX(c, true, vm_state_set_locked(c, id, state, snapshot, temp_files));
}

static int run_vm_finish_locked(vb_catalog *c, int64_t id, const vb_run_vm_result *res)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_vm_status st;
        int r;

        r = run_vm_status_locked(c, id, &st);
        if (r < 0)
                return r;
        if (st != VB_RUN_VM_WAITING && st != VB_RUN_VM_RUNNING)
                return -EALREADY;
        r = q_prepare(&x, c,
                      "UPDATE run_vms SET status = ?, error_code = ?, message = ?, restore_point = ?, bytes_read = ?,"
                      " bytes_new = ?, notes = ?, state = 'done', temp_files = '[]', ended = ? WHERE id = ?");
        if (r < 0)
                return r;
        q_text(&x, vb_run_vm_status_to_string(res->status));
        q_int(&x, res->error_code);
        q_text(&x, res->message);
        q_text(&x, res->restore_point);
        q_int(&x, (int64_t)res->bytes_read);
        q_int(&x, (int64_t)res->bytes_new);
        q_json(&x, res->notes, "[]");
        q_int(&x, now());
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_run_vm_finish(vb_catalog *c, int64_t id, const vb_run_vm_result *res)
{
        if (!c || id <= 0 || !res)
                return -EINVAL;
        if (res->status != VB_RUN_VM_SUCCEEDED && res->status != VB_RUN_VM_FAILED && res->status != VB_RUN_VM_SKIPPED &&
            res->status != VB_RUN_VM_NONE)
                return -EINVAL;
        if ((res->notes && !is_string_array(res->notes)) || res->bytes_read > INT64_MAX || res->bytes_new > INT64_MAX)
                return -EINVAL;
        return WITH_TX(c, true, run_vm_finish_locked(c, id, res));
}

int vb_catalog_unfinished_vms(vb_catalog *c, vb_run_vm **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false,
                       list_locked(c,
                                   RUN_VM_SELECT "WHERE v.status IN ('waiting', 'running')"
                                                 " OR v.state NOT IN ('waiting', 'done') ORDER BY v.id",
                                   sizeof(**ret), read_run_vm, clear_run_vm, (void **)ret, ret_n));
}

json_t *vb_run_vm_to_json(const vb_run_vm *v)
{
        if (!v)
                return NULL;
        return json_pack("{s:I, s:I, s:I, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:i, s:o, s:s?, s:s?, s:I, s:o, s:s?, "
                         "s:s?, s:o, s:I, s:I, s:I, s:I, s:o}",
                         "id", (json_int_t)v->id, "run_id", (json_int_t)v->run_id, "job_id", (json_int_t)v->job_id,
                         "platform_id", (json_int_t)v->platform_id, "vm_id", v->vm_id, "vm", v->vm_name, "title",
                         v->title, "host_id", v->host_id, "status", vb_run_vm_status_to_string(v->status), "error_code",
                         v->error_code, "error",
                         v->error_code ? json_string(vb_error_name(v->error_code)) : json_null(), "message", v->message,
                         "restore_point", v->restore_point, "attempts", (json_int_t)v->attempts, "history",
                         v->history ? json_incref(v->history) : json_array(), "state",
                         vb_backup_step_to_string(v->state), "snapshot", v->snapshot, "temp_files",
                         v->temp_files ? json_incref(v->temp_files) : json_array(), "started", (json_int_t)v->started,
                         "ended", (json_int_t)v->ended, "bytes_read", (json_int_t)v->bytes_read, "bytes_new",
                         (json_int_t)v->bytes_new, "notes", v->notes ? json_incref(v->notes) : json_array());
}

/* ---- VM locks ---- */

static int vm_lock_locked(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id, int64_t *ret_holder)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t holder;
        int r;

        r = q_prepare(&x, c,
                      "INSERT INTO vm_locks (platform_id, vm_id, run_id, locked) VALUES (?, ?, ?, ?)"
                      " ON CONFLICT (platform_id, vm_id) DO NOTHING");
        if (r < 0)
                return r;
        q_int(&x, platform_id);
        q_text(&x, vm_id);
        q_int(&x, run_id);
        q_int(&x, now());
        r = q_exec(&x);
        if (r < 0)
                return r;
        r = q_prepare(&x, c, "SELECT run_id FROM vm_locks WHERE platform_id = ? AND vm_id = ?");
        if (r < 0)
                return r;
        q_int(&x, platform_id);
        q_text(&x, vm_id);
        r = q_step(&x);
        if (r < 0)
                return r;
        if (r == 0)
                return -EIO; /* inserted or there, inside one transaction */
        holder = sqlite3_column_int64(x.s, 0);
        *ret_holder = holder;
        return holder == run_id ? 0 : -EEXIST;
}

int vb_catalog_vm_lock(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id, int64_t *ret_holder)
{
        int64_t holder = 0;
        int r;

        if (!c || platform_id <= 0 || is_blank(vm_id) || run_id <= 0)
                return -EINVAL;
        r = WITH_TX(c, true, vm_lock_locked(c, platform_id, vm_id, run_id, &holder));
        if (r == -EEXIST && ret_holder)
                *ret_holder = holder;
        return r;
}

static int vm_unlock_locked(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "DELETE FROM vm_locks WHERE platform_id = ? AND vm_id = ? AND run_id = ?");

        if (r < 0)
                return r;
        q_int(&x, platform_id);
        q_text(&x, vm_id);
        q_int(&x, run_id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_vm_unlock(vb_catalog *c, int64_t platform_id, const char *vm_id, int64_t run_id)
{
        if (!c || platform_id <= 0 || is_blank(vm_id) || run_id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, vm_unlock_locked(c, platform_id, vm_id, run_id));
}

int vb_catalog_vm_unlock_run(vb_catalog *c, int64_t run_id)
{
        if (!c || run_id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, exec_id(c, "DELETE FROM vm_locks WHERE run_id = ?", run_id));
}

static int locks_clear_locked(vb_catalog *c)
{
        int r = exec_sql(c, "DELETE FROM vm_locks");

        return r < 0 ? r : sqlite3_changes(c->db);
}

int vb_catalog_vm_locks_clear(vb_catalog *c)
{
        if (!c)
                return -EINVAL;
        return WITH_TX(c, true, locks_clear_locked(c));
}

/* ---- restores ---- */

static const char *const restore_kind_table[] = { "vm", "disk" };
static const char *const restore_path_table[] = { "new", "original" };
static const char *const restore_schedule_table[] = { "now", "manual", "once" };

#define RESTORE_SELECT                                                                                                 \
        "SELECT r.id, r.name, r.kind, r.path, r.spec, r.schedule, r.at, r.status, r.created, r.started, r.ended,"      \
        " r.error_code, r.message, count(i.id), coalesce(sum(i.status = 'waiting'), 0),"                               \
        " coalesce(sum(i.status = 'running'), 0), coalesce(sum(i.status = 'succeeded'), 0),"                           \
        " coalesce(sum(i.status = 'failed'), 0), coalesce(sum(i.bytes_written), 0)"                                    \
        " FROM restores r LEFT JOIN restore_items i ON i.restore_id = r.id "

void vb_restore_clear(vb_restore *r)
{
        if (!r)
                return;
        free(r->name);
        free(r->kind);
        free(r->path);
        json_decref(r->spec);
        free(r->schedule);
        free(r->message);
        *r = (vb_restore){ 0 };
}

static void clear_restore(void *r)
{
        vb_restore_clear(r);
}

void vb_restores_free(vb_restore *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_restore_clear(&v[i]);
        free(v);
}

static int read_restore(sqlite3_stmt *s, void *item)
{
        vb_restore *x = item;
        int r = 0;

        x->id = sqlite3_column_int64(s, 0);
        x->name = col_str(s, 1, &r);
        x->kind = col_str(s, 2, &r);
        x->path = col_str(s, 3, &r);
        x->spec = col_json(s, 4, &r);
        x->schedule = col_str(s, 5, &r);
        x->at = sqlite3_column_int64(s, 6);
        x->status = col_enum(s, 7, run_status_table, _VB_RUN_STATUS_MAX, &r);
        x->created = sqlite3_column_int64(s, 8);
        x->started = sqlite3_column_int64(s, 9);
        x->ended = sqlite3_column_int64(s, 10);
        x->error_code = sqlite3_column_int(s, 11);
        x->message = col_str(s, 12, &r);
        x->n_items = (unsigned)sqlite3_column_int64(s, 13);
        x->n_waiting = (unsigned)sqlite3_column_int64(s, 14);
        x->n_running = (unsigned)sqlite3_column_int64(s, 15);
        x->n_succeeded = (unsigned)sqlite3_column_int64(s, 16);
        x->n_failed = (unsigned)sqlite3_column_int64(s, 17);
        x->bytes_written = (uint64_t)sqlite3_column_int64(s, 18);
        return r;
}

json_t *vb_restore_to_json(const vb_restore *r)
{
        if (!r)
                return NULL;
        return json_pack("{s:I, s:s?, s:s?, s:s?, s:o, s:s?, s:o, s:s?, s:I, s:I, s:I, s:i, s:o, s:s?, s:{s:I, s:I, "
                         "s:I, s:I, s:I}, s:I}",
                         "id", (json_int_t)r->id, "name", r->name, "kind", r->kind, "path", r->path, "spec",
                         r->spec ? json_incref(r->spec) : json_object(), "schedule", r->schedule, "at",
                         r->at ? json_integer(r->at) : json_null(), "status", vb_run_status_to_string(r->status),
                         "created", (json_int_t)r->created, "started", (json_int_t)r->started, "ended",
                         (json_int_t)r->ended, "error_code", r->error_code, "error",
                         r->error_code ? json_string(vb_error_name(r->error_code)) : json_null(), "message", r->message,
                         "items", "total", (json_int_t)r->n_items, "waiting", (json_int_t)r->n_waiting, "running",
                         (json_int_t)r->n_running, "succeeded", (json_int_t)r->n_succeeded, "failed",
                         (json_int_t)r->n_failed, "bytes_written", (json_int_t)r->bytes_written);
}

#define RESTORE_ITEM_SELECT                                                                                            \
        "SELECT id, restore_id, idx, pool_id, restore_point, vm_name, disk, target, host_id, status, error_code,"      \
        " message, target_vm_id, volumes, incomplete, bytes_total, bytes_written, started, ended FROM restore_items "

void vb_restore_item_clear(vb_restore_item *it)
{
        if (!it)
                return;
        free(it->restore_point);
        free(it->vm_name);
        free(it->disk);
        free(it->target);
        free(it->host_id);
        free(it->message);
        free(it->target_vm_id);
        json_decref(it->volumes);
        json_decref(it->incomplete);
        *it = (vb_restore_item){ 0 };
}

static void clear_restore_item(void *it)
{
        vb_restore_item_clear(it);
}

void vb_restore_items_free(vb_restore_item *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_restore_item_clear(&v[i]);
        free(v);
}

static int read_restore_item(sqlite3_stmt *s, void *item)
{
        vb_restore_item *it = item;
        int r = 0;

        it->id = sqlite3_column_int64(s, 0);
        it->restore_id = sqlite3_column_int64(s, 1);
        it->idx = (unsigned)sqlite3_column_int64(s, 2);
        it->pool_id = sqlite3_column_int64(s, 3);
        it->restore_point = col_str(s, 4, &r);
        it->vm_name = col_str(s, 5, &r);
        it->disk = col_str(s, 6, &r);
        it->target = col_str(s, 7, &r);
        it->host_id = col_str(s, 8, &r);
        it->status = col_enum(s, 9, run_vm_status_table, _VB_RUN_VM_STATUS_MAX, &r);
        it->error_code = sqlite3_column_int(s, 10);
        it->message = col_str(s, 11, &r);
        it->target_vm_id = col_str(s, 12, &r);
        it->volumes = col_json(s, 13, &r);
        it->incomplete = col_json(s, 14, &r);
        it->bytes_total = (uint64_t)sqlite3_column_int64(s, 15);
        it->bytes_written = (uint64_t)sqlite3_column_int64(s, 16);
        it->started = sqlite3_column_int64(s, 17);
        it->ended = sqlite3_column_int64(s, 18);
        return r;
}

json_t *vb_restore_item_to_json(const vb_restore_item *it)
{
        if (!it)
                return NULL;
        return json_pack("{s:I, s:I, s:I, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:i, s:o, s:s?, s:s?, s:o, s:o, "
                         "s:I, s:I, s:I, s:I}",
                         "id", (json_int_t)it->id, "restore_id", (json_int_t)it->restore_id, "idx", (json_int_t)it->idx,
                         "pool_id", (json_int_t)it->pool_id, "restore_point", it->restore_point, "vm", it->vm_name,
                         "disk", it->disk, "target", it->target, "host_id", it->host_id, "status",
                         vb_run_vm_status_to_string(it->status), "error_code", it->error_code, "error",
                         it->error_code ? json_string(vb_error_name(it->error_code)) : json_null(), "message",
                         it->message, "target_vm_id", it->target_vm_id, "volumes",
                         it->volumes ? json_incref(it->volumes) : json_array(), "incomplete",
                         it->incomplete ? json_incref(it->incomplete) : json_array(), "bytes_total",
                         (json_int_t)it->bytes_total, "bytes_written", (json_int_t)it->bytes_written, "started",
                         (json_int_t)it->started, "ended", (json_int_t)it->ended);
}

static int restore_add_locked(vb_catalog *c, const vb_restore *r, const vb_restore_item *items, size_t n_items,
                              int64_t *ret_id)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t id;
        int k;

        k = q_prepare(&x, c,
                      "INSERT INTO restores (name, kind, path, spec, schedule, at, status, created)"
                      " VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?)");
        if (k < 0)
                return k;
        q_text(&x, is_blank(r->name) ? "" : r->name);
        q_text(&x, r->kind);
        q_text(&x, r->path);
        q_json(&x, r->spec, "{}");
        q_text(&x, r->schedule);
        q_int(&x, r->at);
        q_int(&x, now());
        k = q_exec(&x);
        if (k < 0)
                return k;
        id = sqlite3_last_insert_rowid(c->db);
        /* The default label names the id, known only now. */
        if (is_blank(r->name)) {
                k = exec_id(c, "UPDATE restores SET name = 'restore ' || id WHERE id = ?", id);
                if (k < 0)
                        return k;
        }
        for (size_t i = 0; i < n_items; i++) {
                const vb_restore_item *it = &items[i];

                k = q_prepare(&x, c,
                              "INSERT INTO restore_items (restore_id, idx, pool_id, restore_point, vm_name, disk,"
                              " target, host_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
                if (k < 0)
                        return k;
                q_int(&x, id);
                q_int(&x, it->idx);
                q_int(&x, it->pool_id);
                q_text(&x, it->restore_point);
                q_text(&x, it->vm_name);
                q_text(&x, it->disk);
                q_text(&x, it->target);
                q_text(&x, it->host_id);
                k = q_exec(&x);
                if (k < 0)
                        return k;
        }
        *ret_id = id;
        return 0;
}

int vb_catalog_restore_add(vb_catalog *c, const vb_restore *r, const vb_restore_item *items, size_t n_items,
                           int64_t *ret_id)
{
        int64_t id = 0;
        int k;

        if (!c || !r || (n_items > 0 && !items) ||
            table_from_string(restore_kind_table, ELEMENTSOF(restore_kind_table), r->kind) < 0 ||
            table_from_string(restore_path_table, ELEMENTSOF(restore_path_table), r->path) < 0 ||
            table_from_string(restore_schedule_table, ELEMENTSOF(restore_schedule_table), r->schedule) < 0 ||
            r->at < 0 || (r->spec && !json_is_object(r->spec)))
                return -EINVAL;
        for (size_t i = 0; i < n_items; i++)
                if (items[i].pool_id <= 0 || is_blank(items[i].restore_point) || is_blank(items[i].vm_name))
                        return -EINVAL;
        k = WITH_TX(c, true, restore_add_locked(c, r, items, n_items, &id));
        if (k >= 0 && ret_id)
                *ret_id = id;
        return k;
}

int vb_catalog_restore_get(vb_catalog *c, int64_t id, vb_restore *ret)
{
        if (!c || !ret || id <= 0)
                return -EINVAL;
        return WITH_TX(c, false,
                       get_locked(c, RESTORE_SELECT "WHERE r.id = ? GROUP BY r.id", NULL, id, NULL, sizeof(*ret),
                                  read_restore, clear_restore, ret));
}

static int restore_list_locked(vb_catalog *c, unsigned statuses, unsigned limit, vb_restore **ret, size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        char sql[sizeof(RESTORE_SELECT) + 512];
        size_t len;
        int k;

        /* The status list comes from our own table, never from the caller's text. */
        len = (size_t)snprintf(sql, sizeof(sql), "%sWHERE 1", RESTORE_SELECT);
        if (statuses) {
                const char *sep = " AND r.status IN (";

                for (int s = 0; s < _VB_RUN_STATUS_MAX; s++)
                        if (statuses & (1u << s)) {
                                len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s'%s'", sep,
                                                        run_status_table[s]);
                                sep = ", ";
                        }
                len += (size_t)snprintf(sql + len, sizeof(sql) - len, ")");
        }
        snprintf(sql + len, sizeof(sql) - len, " GROUP BY r.id ORDER BY r.id DESC LIMIT ?");
        k = q_prepare(&x, c, sql);
        if (k < 0)
                return k;
        q_int(&x, limit ? (int64_t)limit : -1);
        return q_list(&x, sizeof(**ret), read_restore, clear_restore, (void **)ret, ret_n);
}

int vb_catalog_restore_list(vb_catalog *c, unsigned statuses, unsigned limit, vb_restore **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n || statuses >> _VB_RUN_STATUS_MAX)
                return -EINVAL;
        return WITH_TX(c, false, restore_list_locked(c, statuses, limit, ret, ret_n));
}

static int restore_status_locked(vb_catalog *c, int64_t id, vb_run_status *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int k = q_prepare(&x, c, "SELECT status FROM restores WHERE id = ?");

        if (k < 0)
                return k;
        q_int(&x, id);
        k = q_step(&x);
        if (k < 0)
                return k;
        if (k == 0)
                return -ENOENT;
        k = 0;
        *ret = col_enum(x.s, 0, run_status_table, _VB_RUN_STATUS_MAX, &k);
        return k;
}

static int restore_start_locked(vb_catalog *c, int64_t id)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_status st;
        int k;

        k = restore_status_locked(c, id, &st);
        if (k < 0)
                return k;
        if (st == VB_RUN_RUNNING)
                return -EALREADY;
        if (st != VB_RUN_WAITING)
                return -ESTALE;
        k = q_prepare(&x, c, "UPDATE restores SET status = 'running', started = ? WHERE id = ?");
        if (k < 0)
                return k;
        q_int(&x, now());
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_restore_start(vb_catalog *c, int64_t id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, restore_start_locked(c, id));
}

static int restore_finish_locked(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_status st;
        int k;

        k = restore_status_locked(c, id, &st);
        if (k < 0)
                return k;
        if (!vb_run_status_is_active(st))
                return -EALREADY;
        k = q_prepare(&x, c, "UPDATE restores SET status = ?, ended = ?, error_code = ?, message = ? WHERE id = ?");
        if (k < 0)
                return k;
        q_text(&x, vb_run_status_to_string(status));
        q_int(&x, now());
        q_int(&x, error_code);
        q_text(&x, message);
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_restore_finish(vb_catalog *c, int64_t id, vb_run_status status, int error_code, const char *message)
{
        if (!c || id <= 0 || !vb_run_status_to_string(status) || vb_run_status_is_active(status))
                return -EINVAL;
        return WITH_TX(c, true, restore_finish_locked(c, id, status, error_code, message));
}

static int restore_item_list_locked(vb_catalog *c, int64_t restore_id, vb_restore_item **ret, size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        int k = q_prepare(&x, c, RESTORE_ITEM_SELECT "WHERE restore_id = ? ORDER BY idx");

        if (k < 0)
                return k;
        q_int(&x, restore_id);
        return q_list(&x, sizeof(**ret), read_restore_item, clear_restore_item, (void **)ret, ret_n);
}

int vb_catalog_restore_item_list(vb_catalog *c, int64_t restore_id, vb_restore_item **ret, size_t *ret_n)
{
        if (!c || restore_id <= 0 || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false, restore_item_list_locked(c, restore_id, ret, ret_n));
}

static int restore_item_status_locked(vb_catalog *c, int64_t id, vb_run_vm_status *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int k = q_prepare(&x, c, "SELECT status FROM restore_items WHERE id = ?");

        if (k < 0)
                return k;
        q_int(&x, id);
        k = q_step(&x);
        if (k < 0)
                return k;
        if (k == 0)
                return -ENOENT;
        k = 0;
        *ret = col_enum(x.s, 0, run_vm_status_table, _VB_RUN_VM_STATUS_MAX, &k);
        return k;
}

static int restore_item_begin_locked(vb_catalog *c, int64_t id, const char *host_id)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_vm_status st;
        int k;

        k = restore_item_status_locked(c, id, &st);
        if (k < 0)
                return k;
        if (st != VB_RUN_VM_WAITING)
                return -EALREADY;
        k = q_prepare(&x, c,
                      "UPDATE restore_items SET status = 'running', started = ?, host_id = coalesce(?, host_id)"
                      " WHERE id = ?");
        if (k < 0)
                return k;
        q_int(&x, now());
        q_text(&x, host_id);
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_restore_item_begin(vb_catalog *c, int64_t id, const char *host_id)
{
        if (!c || id <= 0)
                return -EINVAL;
        return WITH_TX(c, true, restore_item_begin_locked(c, id, host_id));
}

static int restore_item_volumes_locked(vb_catalog *c, int64_t id, const json_t *incomplete)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_vm_status st;
        int k;

        /* Only a running item writes volumes: anything else would name
         * volumes as incomplete after the item's result was recorded. */
        k = restore_item_status_locked(c, id, &st);
        if (k < 0)
                return k;
        if (st != VB_RUN_VM_RUNNING)
                return -EINVAL;
        k = q_prepare(&x, c, "UPDATE restore_items SET incomplete = ? WHERE id = ?");
        if (k < 0)
                return k;
        q_json(&x, incomplete, "[]");
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_restore_item_volumes(vb_catalog *c, int64_t id, const json_t *incomplete)
{
        if (!c || id <= 0 || (incomplete && !is_string_array(incomplete)))
                return -EINVAL;
        return WITH_TX(c, true, restore_item_volumes_locked(c, id, incomplete));
}

static int restore_item_finish_locked(vb_catalog *c, int64_t id, const vb_restore_item *res)
{
        _cleanup_(q_done) q x = { 0 };
        vb_run_vm_status st;
        int k;

        k = restore_item_status_locked(c, id, &st);
        if (k < 0)
                return k;
        if (st != VB_RUN_VM_WAITING && st != VB_RUN_VM_RUNNING)
                return -EALREADY;
        k = q_prepare(&x, c,
                      "UPDATE restore_items SET status = ?, error_code = ?, message = ?, target_vm_id = ?, volumes = ?,"
                      " incomplete = ?, bytes_total = ?, bytes_written = ?, ended = ? WHERE id = ?");
        if (k < 0)
                return k;
        q_text(&x, vb_run_vm_status_to_string(res->status));
        q_int(&x, res->error_code);
        q_text(&x, res->message);
        q_text(&x, res->target_vm_id);
        q_json(&x, res->volumes, "[]");
        q_json(&x, res->incomplete, "[]");
        q_int(&x, (int64_t)res->bytes_total);
        q_int(&x, (int64_t)res->bytes_written);
        q_int(&x, now());
        q_int(&x, id);
        return q_exec(&x);
}

int vb_catalog_restore_item_finish(vb_catalog *c, int64_t id, const vb_restore_item *res)
{
        if (!c || id <= 0 || !res)
                return -EINVAL;
        if (res->status != VB_RUN_VM_SUCCEEDED && res->status != VB_RUN_VM_FAILED && res->status != VB_RUN_VM_SKIPPED)
                return -EINVAL;
        if ((res->volumes && !is_string_array(res->volumes)) ||
            (res->incomplete && !is_string_array(res->incomplete)) || res->bytes_total > INT64_MAX ||
            res->bytes_written > INT64_MAX)
                return -EINVAL;
        return WITH_TX(c, true, restore_item_finish_locked(c, id, res));
}

int vb_catalog_unfinished_restores(vb_catalog *c, vb_restore **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false,
                       list_locked(c, RESTORE_SELECT "WHERE r.status = 'running' GROUP BY r.id ORDER BY r.id",
                                   sizeof(**ret), read_restore, clear_restore, (void **)ret, ret_n));
}

/* ---- restore points ---- */

#define RP_SELECT                                                                                                      \
        "SELECT rp.pool_id, p.name, rp.id, rp.platform_id, rp.platform, rp.vm_id, rp.vm_uuid, rp.vm_name, rp.title,"   \
        " rp.host_id, rp.type, rp.parent, rp.checkpoint, rp.consistency, rp.job, rp.run, rp.time_start,"               \
        " rp.time_end, rp.disks, rp.size, rp.data_bytes, rp.new_bytes"                                                 \
        " FROM restore_points rp JOIN pools p ON p.id = rp.pool_id "

void vb_restore_point_clear(vb_restore_point *rp)
{
        if (!rp)
                return;
        free(rp->pool);
        free(rp->id);
        free(rp->platform);
        free(rp->vm_id);
        free(rp->vm_uuid);
        free(rp->vm_name);
        free(rp->title);
        free(rp->host_id);
        free(rp->parent);
        free(rp->checkpoint);
        free(rp->consistency);
        free(rp->job);
        free(rp->run);
        *rp = (vb_restore_point){ 0 };
}

static void clear_rp(void *rp)
{
        vb_restore_point_clear(rp);
}

void vb_restore_points_free(vb_restore_point *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                vb_restore_point_clear(&v[i]);
        free(v);
}

static int read_rp(sqlite3_stmt *s, void *item)
{
        vb_restore_point *rp = item;
        int r = 0;

        rp->pool_id = sqlite3_column_int64(s, 0);
        rp->pool = col_str(s, 1, &r);
        rp->id = col_str(s, 2, &r);
        rp->platform_id = sqlite3_column_int64(s, 3);
        rp->platform = col_str(s, 4, &r);
        rp->vm_id = col_str(s, 5, &r);
        rp->vm_uuid = col_str(s, 6, &r);
        rp->vm_name = col_str(s, 7, &r);
        rp->title = col_str(s, 8, &r);
        rp->host_id = col_str(s, 9, &r);
        rp->type = (dd_backup_type)col_enum(s, 10, backup_type_table, _DD_BACKUP_TYPE_MAX, &r);
        rp->parent = col_str(s, 11, &r);
        rp->checkpoint = col_str(s, 12, &r);
        rp->consistency = col_str(s, 13, &r);
        rp->job = col_str(s, 14, &r);
        rp->run = col_str(s, 15, &r);
        rp->time_start = sqlite3_column_int64(s, 16);
        rp->time_end = sqlite3_column_int64(s, 17);
        rp->disks = (unsigned)sqlite3_column_int64(s, 18);
        rp->size = (uint64_t)sqlite3_column_int64(s, 19);
        rp->data_bytes = (uint64_t)sqlite3_column_int64(s, 20);
        rp->new_bytes = (uint64_t)sqlite3_column_int64(s, 21);
        return r;
}

/* One id from sql with one text parameter bound (and a second when b is
 * not NULL): 1 found, 0 none (or more than one row when unique). */
static int query_text_id(vb_catalog *c, const char *sql, const char *a, const char *b, bool unique, int64_t *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int64_t id;
        int r = q_prepare(&x, c, sql);

        if (r < 0)
                return r;
        q_text(&x, a);
        if (b)
                q_text(&x, b);
        r = q_step(&x);
        if (r <= 0)
                return r;
        id = sqlite3_column_int64(x.s, 0);
        if (unique) {
                r = q_step(&x);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        *ret = id;
        return 1;
}

/* The catalog's platform of a manifest, 0 when none fits (catalog.h). */
static int resolve_platform_locked(vb_catalog *c, const dd_manifest *m, int64_t *ret)
{
        int64_t id = 0;
        int r;

        *ret = 0;
        if (m->run && m->vm.id) {
                /* The daemon records its run id, in decimal, as the manifest's run. */
                r = query_text_id(c,
                                  "SELECT v.platform_id FROM run_vms v JOIN platforms p ON p.id = v.platform_id"
                                  " WHERE v.run_id = CAST(?1 AS INTEGER) AND CAST(v.run_id AS TEXT) = ?1"
                                  " AND v.vm_id = ?2",
                                  m->run, m->vm.id, false, &id);
                if (r != 0)
                        goto done;
        }
        if (m->vm.platform) {
                r = query_text_id(c, "SELECT id FROM platforms WHERE name = ?", m->vm.platform, NULL, false, &id);
                if (r != 0)
                        goto done;
                r = query_text_id(c, "SELECT id FROM platforms WHERE type = ?", m->vm.platform, NULL, true, &id);
                if (r != 0)
                        goto done;
        }
        return 0;
done:
        if (r > 0)
                *ret = id;
        return r < 0 ? r : 0;
}

static int rp_insert_locked(vb_catalog *c, int64_t pool_id, int64_t platform_id, const dd_manifest *m)
{
        _cleanup_(q_done) q x = { 0 };
        uint64_t size = 0, data = 0, fresh = 0;
        int r;

        if (platform_id <= 0) {
                r = resolve_platform_locked(c, m, &platform_id);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < m->n_disks; i++) {
                size += m->disks[i].size;
                data += m->disks[i].bytes_data;
                fresh += m->disks[i].bytes_new;
        }
        r = q_prepare(&x, c,
                      "INSERT OR REPLACE INTO restore_points (pool_id, id, platform_id, platform, vm_id, vm_uuid,"
                      " vm_name, title, host_id, type, parent, checkpoint, consistency, job, run, time_start, time_end,"
                      " disks, size, data_bytes, new_bytes)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (r < 0)
                return r;
        q_int(&x, pool_id);
        q_text(&x, m->id);
        q_id(&x, platform_id);
        q_text(&x, m->vm.platform);
        q_text(&x, m->vm.id);
        q_text(&x, m->vm.uuid);
        q_text(&x, m->vm.name ? m->vm.name : "");
        q_text(&x, m->vm.title);
        q_text(&x, m->vm.host_id);
        q_text(&x, dd_backup_type_to_string(m->type));
        q_text(&x, m->parent);
        q_text(&x, m->checkpoint);
        q_text(&x, m->consistency);
        q_text(&x, m->job);
        q_text(&x, m->run);
        q_int(&x, m->time_start);
        q_int(&x, m->time_end);
        q_int(&x, (int64_t)m->n_disks);
        q_int(&x, (int64_t)size);
        q_int(&x, (int64_t)data);
        q_int(&x, (int64_t)fresh);
        return q_exec(&x);
}

static bool manifest_is_usable(const dd_manifest *m)
{
        return m && !is_blank(m->id) && dd_backup_type_to_string(m->type);
}

int vb_catalog_restore_point_add(vb_catalog *c, int64_t pool_id, int64_t platform_id, const dd_manifest *m)
{
        if (!c || pool_id <= 0 || platform_id < 0 || !manifest_is_usable(m))
                return -EINVAL;
        return WITH_TX(c, true, rp_insert_locked(c, pool_id, platform_id, m));
}

static int rp_get_locked(vb_catalog *c, int64_t pool_id, const char *id, vb_restore_point *ret)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, RP_SELECT "WHERE (?1 = 0 OR rp.pool_id = ?1) AND rp.id = ?2 ORDER BY rp.pool_id");

        if (r < 0)
                return r;
        q_int(&x, pool_id);
        q_text(&x, id);
        return q_one(&x, sizeof(*ret), read_rp, clear_rp, ret);
}

int vb_catalog_restore_point_get(vb_catalog *c, int64_t pool_id, const char *id, vb_restore_point *ret)
{
        if (!c || pool_id < 0 || is_blank(id) || !ret)
                return -EINVAL;
        return WITH_TX(c, false, rp_get_locked(c, pool_id, id, ret));
}

static int rp_remove_locked(vb_catalog *c, int64_t pool_id, const char *id)
{
        _cleanup_(q_done) q x = { 0 };
        int r = q_prepare(&x, c, "DELETE FROM restore_points WHERE pool_id = ? AND id = ?");

        if (r < 0)
                return r;
        q_int(&x, pool_id);
        q_text(&x, id);
        r = q_exec(&x);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
}

int vb_catalog_restore_point_remove(vb_catalog *c, int64_t pool_id, const char *id)
{
        if (!c || pool_id <= 0 || is_blank(id))
                return -EINVAL;
        return WITH_TX(c, true, rp_remove_locked(c, pool_id, id));
}

static int rp_list_locked(vb_catalog *c, const vb_rp_filter *f, vb_restore_point **ret, size_t *ret_n)
{
        _cleanup_(q_done) q x = { 0 };
        int r;

        r = q_prepare(&x, c,
                      RP_SELECT "WHERE (?1 = 0 OR rp.pool_id = ?1) AND (?2 = 0 OR rp.platform_id = ?2)"
                                " AND (?3 IS NULL OR rp.vm_id = ?3) AND (?4 IS NULL OR rp.vm_name = ?4)"
                                " ORDER BY rp.time_start, rp.id, rp.pool_id");
        if (r < 0)
                return r;
        q_int(&x, f ? f->pool_id : 0);
        q_int(&x, f ? f->platform_id : 0);
        q_text(&x, f ? f->vm_id : NULL);
        q_text(&x, f ? f->vm_name : NULL);
        return q_list(&x, sizeof(**ret), read_rp, clear_rp, (void **)ret, ret_n);
}

int vb_catalog_restore_point_list(vb_catalog *c, const vb_rp_filter *f, vb_restore_point **ret, size_t *ret_n)
{
        if (!c || !ret || !ret_n)
                return -EINVAL;
        return WITH_TX(c, false, rp_list_locked(c, f, ret, ret_n));
}

/* Replaces the pool's rows with manifests v. A restore point already in the
 * catalog keeps its platform (the runner knew it for sure); new ones are
 * resolved. */
static int rescan_locked(vb_catalog *c, const char *pool_name, dd_manifest **v, size_t n)
{
        _cleanup_(q_done) q x = { 0 };
        json_t *known = NULL;
        int64_t pool_id = 0;
        size_t count = 0;
        int r;

        r = query_text_id(c, "SELECT id FROM pools WHERE name = ?", pool_name, NULL, false, &pool_id);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        known = json_object();
        if (!known)
                return -ENOMEM;
        r = q_prepare(&x, c,
                      "SELECT id, platform_id FROM restore_points WHERE pool_id = ? AND platform_id IS NOT NULL");
        if (r < 0)
                goto out;
        q_int(&x, pool_id);
        while ((r = q_step(&x)) > 0)
                if (json_object_set_new(known, (const char *)sqlite3_column_text(x.s, 0),
                                        json_integer(sqlite3_column_int64(x.s, 1))) < 0) {
                        r = -ENOMEM;
                        break;
                }
        q_done(&x);
        if (r < 0)
                goto out;
        r = exec_id(c, "DELETE FROM restore_points WHERE pool_id = ?", pool_id);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < n; i++) {
                if (!manifest_is_usable(v[i])) {
                        log_warning("pool %s: skipping a restore point without an id or type", pool_name);
                        continue;
                }
                r = rp_insert_locked(c, pool_id, json_integer_value(json_object_get(known, v[i]->id)), v[i]);
                if (r < 0)
                        goto out;
                count++;
        }
        r = count > INT32_MAX ? INT32_MAX : (int)count;
out:
        json_decref(known);
        return r;
}

static void rescan_problem(void *userdata, const sp_problem *p)
{
        const char *pool = userdata;

        log_warning("pool %s: %s %s: %s (skipped)", pool, p->kind, p->object ? p->object : "",
                    p->detail ? p->detail : "");
}

int vb_catalog_rescan_pool(vb_catalog *c, const char *pool_name, sp_pool *p)
{
        dd_manifest **v = NULL;
        size_t n = 0;
        int r;

        if (!c || is_blank(pool_name) || !p)
                return -EINVAL;
        /* Reading every manifest may take long: outside the transaction. */
        r = sp_pool_list(p, NULL, rescan_problem, (void *)pool_name, &v, &n);
        if (r < 0)
                return log_error_errno(r, "pool %s: cannot list its restore points: %m", pool_name);
        r = WITH_TX(c, true, rescan_locked(c, pool_name, v, n));
        sp_manifests_free(v, n);
        if (r < 0)
                return r;
        log_info("pool %s: %d restore points in the catalog", pool_name, r);
        return r;
}

json_t *vb_restore_point_to_json(const vb_restore_point *rp)
{
        if (!rp)
                return NULL;
        return json_pack("{s:I, s:s?, s:s?, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, "
                         "s:s?, s:I, s:I, s:I, s:I, s:I, s:I}",
                         "pool_id", (json_int_t)rp->pool_id, "pool", rp->pool, "id", rp->id, "platform_id",
                         (json_int_t)rp->platform_id, "platform", rp->platform, "vm_id", rp->vm_id, "vm_uuid",
                         rp->vm_uuid, "vm", rp->vm_name, "title", rp->title, "host_id", rp->host_id, "type",
                         dd_backup_type_to_string(rp->type), "parent", rp->parent, "checkpoint", rp->checkpoint,
                         "consistency", rp->consistency, "job", rp->job, "run", rp->run, "time_start",
                         (json_int_t)rp->time_start, "time_end", (json_int_t)rp->time_end, "disks",
                         (json_int_t)rp->disks, "size", (json_int_t)rp->size, "data_bytes", (json_int_t)rp->data_bytes,
                         "new_bytes", (json_int_t)rp->new_bytes);
}
