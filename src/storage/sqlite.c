/* SPDX-License-Identifier: MIT
 * sqlite.c - the embedded SQLite storage driver.
 *
 * One handle is one SQLite connection used by one thread at a time (the
 * storage thread, or ternctl). The database runs in WAL mode with a busy
 * timeout so that ternctl can change accounts while the server is running.
 * The schema is versioned with PRAGMA user_version and upgraded on open by
 * an ordered list of migration steps; a database written by a newer Tern is
 * refused rather than guessed at. Statements are prepared on first use and
 * kept in the handle for its lifetime.
 */
#include "storage.h"

#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/common.h"
#include "../core/log.h"

#define TAG "storage"

/* scram_hash_len() lives in scram.c, which ternctl and tests must not need
 * just to store bytes, so the sizes are repeated here. */
static const size_t key_len[SCRAM_HASH_COUNT] = {20, 32, 64};
_Static_assert(SCRAM_HASH_COUNT == 3, "one stored/server column pair per hash");
_Static_assert(SCRAM_MAX_KEY >= 64, "SHA-512 keys must fit");

/* Each entry moves the schema from version i to i + 1 and runs inside the
 * same transaction as the user_version bump, so a crash never leaves a
 * half-migrated database. Append only: never edit a released step.
 *
 * kv has no foreign key to users on purpose: modules may keep data that is
 * not tied to an account (e.g. host-wide state under an empty user), so
 * user_delete removes an account's rows itself. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE users ("
    " host TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " salt BLOB NOT NULL,"
    " iterations INTEGER NOT NULL,"
    " sha1_stored BLOB NOT NULL,"
    " sha1_server BLOB NOT NULL,"
    " sha256_stored BLOB NOT NULL,"
    " sha256_server BLOB NOT NULL,"
    " sha512_stored BLOB NOT NULL,"
    " sha512_server BLOB NOT NULL,"
    " created INTEGER NOT NULL,"
    " PRIMARY KEY (host, username));"
    "CREATE TABLE kv ("
    " host TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " store TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " value BLOB NOT NULL,"
    " PRIMARY KEY (host, username, store, key));",
};

#define SCHEMA_VERSION ((int)TERN_ARRAY_LEN(migrations))

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_GET,
    ST_USER_CREATE,
    ST_USER_SET_CREDS,
    ST_USER_DELETE,
    ST_USER_KV_DELETE,
    ST_USER_LIST_ALL,
    ST_USER_LIST_HOST,
    ST_KV_GET,
    ST_KV_PUT,
    ST_KV_DEL,
    ST_KV_LIST,
    ST_KV_DEL_STORE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    /* IMMEDIATE takes the write lock up front, so a concurrent writer makes
     * us wait in busy_timeout instead of failing at the first write. */
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_GET] = "SELECT salt, iterations, sha1_stored, sha1_server, sha256_stored,"
                    " sha256_server, sha512_stored, sha512_server"
                    " FROM users WHERE host = ?1 AND username = ?2",
    [ST_USER_CREATE] = "INSERT INTO users (host, username, salt, iterations, sha1_stored,"
                       " sha1_server, sha256_stored, sha256_server, sha512_stored,"
                       " sha512_server, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                       " ?10, ?11)",
    [ST_USER_SET_CREDS] = "UPDATE users SET salt = ?3, iterations = ?4, sha1_stored = ?5,"
                          " sha1_server = ?6, sha256_stored = ?7, sha256_server = ?8,"
                          " sha512_stored = ?9, sha512_server = ?10"
                          " WHERE host = ?1 AND username = ?2",
    [ST_USER_DELETE] = "DELETE FROM users WHERE host = ?1 AND username = ?2",
    [ST_USER_KV_DELETE] = "DELETE FROM kv WHERE host = ?1 AND username = ?2",
    [ST_USER_LIST_ALL] = "SELECT host, username FROM users ORDER BY host, username",
    [ST_USER_LIST_HOST] = "SELECT host, username FROM users WHERE host = ?1 ORDER BY username",
    [ST_KV_GET] = "SELECT value FROM kv WHERE host = ?1 AND username = ?2 AND store = ?3"
                  " AND key = ?4",
    [ST_KV_PUT] = "INSERT INTO kv (host, username, store, key, value) VALUES (?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value",
    [ST_KV_DEL] = "DELETE FROM kv WHERE host = ?1 AND username = ?2 AND store = ?3 AND key = ?4",
    [ST_KV_LIST] = "SELECT key, value FROM kv WHERE host = ?1 AND username = ?2 AND store = ?3"
                   " ORDER BY key",
    [ST_KV_DEL_STORE] = "DELETE FROM kv WHERE host = ?1 AND username = ?2 AND store = ?3",
};

struct storage_db {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared lazily, finalized on close */
};

static int db_fail(storage_db_t *h, const char *what)
{
    log_error(TAG, "sqlite: %s: %s", what, sqlite3_errmsg(h->db));
    return TERN_EIO;
}

/* Returns the cached statement, reset and with no bindings, or NULL. */
static sqlite3_stmt *stmt_get(storage_db_t *h, enum stmt_id id)
{
    if (!h->stmt[id]) {
        if (sqlite3_prepare_v3(h->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &h->stmt[id],
                               NULL) != SQLITE_OK) {
            log_error(TAG, "sqlite: prepare \"%s\": %s", stmt_sql[id], sqlite3_errmsg(h->db));
            h->stmt[id] = NULL;
            return NULL;
        }
    }
    return h->stmt[id];
}

/* Statements are reset right after use so that a cached SELECT never holds
 * a read transaction open (which would pin the WAL and block checkpoints)
 * and bound SQLITE_STATIC buffers are not referenced past the call. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int run_simple(storage_db_t *h, enum stmt_id id)
{
    sqlite3_stmt *st = stmt_get(h, id);
    if (!st)
        return TERN_EIO;
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_fail(h, stmt_sql[id]);
    return 0;
}

static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

/* A NULL pointer would bind SQL NULL, which the NOT NULL columns reject;
 * an empty value must still be a (zero-length) blob. */
static int bind_blob(sqlite3_stmt *st, int idx, const void *p, size_t len)
{
    if (len == 0)
        return sqlite3_bind_zeroblob(st, idx, 0);
    return sqlite3_bind_blob64(st, idx, p, (sqlite3_uint64)len, SQLITE_STATIC);
}

static int bind_host_user(sqlite3_stmt *st, const char *host, const char *user)
{
    if (bind_text(st, 1, host) != SQLITE_OK || bind_text(st, 2, user) != SQLITE_OK)
        return -1;
    return 0;
}

static int bind_creds(sqlite3_stmt *st, const scram_creds_t *c)
{
    if (bind_blob(st, 3, c->salt, sizeof(c->salt)) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, (sqlite3_int64)c->iterations) != SQLITE_OK)
        return -1;
    for (int h = 0; h < SCRAM_HASH_COUNT; h++) {
        if (bind_blob(st, 5 + 2 * h, c->stored_key[h], key_len[h]) != SQLITE_OK ||
            bind_blob(st, 6 + 2 * h, c->server_key[h], key_len[h]) != SQLITE_OK)
            return -1;
    }
    return 0;
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen, const char *dsn)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        tern_format_err(err, errlen, "%s: %s", dsn, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int read_user_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int check_version(int version, const char *dsn, char *err, size_t errlen)
{
    if (version > SCHEMA_VERSION) {
        tern_format_err(err, errlen,
                        "%s: database schema version %d is newer than this Tern supports (%d);"
                        " upgrade Tern or use a matching database",
                        dsn, version, SCHEMA_VERSION);
        return -1;
    }
    if (version < 0) {
        tern_format_err(err, errlen, "%s: invalid database schema version %d", dsn, version);
        return -1;
    }
    return 0;
}

static int migrate(sqlite3 *db, const char *dsn, char *err, size_t errlen)
{
    int version;
    if (read_user_version(db, &version) != 0) {
        tern_format_err(err, errlen, "%s: %s", dsn, sqlite3_errmsg(db));
        return -1;
    }
    if (check_version(version, dsn, err, errlen) != 0)
        return -1;
    if (version == SCHEMA_VERSION)
        return 0;

    if (exec_sql(db, "BEGIN IMMEDIATE", err, errlen, dsn) != 0)
        return -1;
    /* Another process (server or ternctl) may have migrated between the
     * first read and taking the write lock. */
    if (read_user_version(db, &version) != 0) {
        tern_format_err(err, errlen, "%s: %s", dsn, sqlite3_errmsg(db));
        goto rollback;
    }
    if (check_version(version, dsn, err, errlen) != 0)
        goto rollback;
    for (int v = version; v < SCHEMA_VERSION; v++) {
        if (exec_sql(db, migrations[v], err, errlen, dsn) != 0)
            goto rollback;
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (exec_sql(db, sql, err, errlen, dsn) != 0 || exec_sql(db, "COMMIT", err, errlen, dsn) != 0)
        goto rollback;
    if (version != SCHEMA_VERSION)
        log_info(TAG, "%s: schema migrated from version %d to %d", dsn, version, SCHEMA_VERSION);
    return 0;

rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* SQLite creates a new database with 0644 & ~umask; accounts are secret, so
 * the file is created 0600 first. The -wal and -shm files inherit the
 * database's mode. Changing the umask instead would race other threads.
 * Only a missing file is touched: closing any descriptor of a database
 * drops every POSIX lock this process holds on it, and with several
 * workers another connection of ours is already open (the next close by
 * ternctl would then delete the WAL under it). */
static int precreate(const char *dsn, char *err, size_t errlen)
{
    if (strcmp(dsn, ":memory:") == 0 || strncmp(dsn, "file:", 5) == 0 || dsn[0] == '\0')
        return 0;
    int fd = open(dsn, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        tern_format_err(err, errlen, "%s: %s", dsn, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static void sqlite_close(storage_db_t *h)
{
    if (!h)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(h->stmt[i]);
    if (h->db)
        sqlite3_close_v2(h->db);
    free(h);
}

static storage_db_t *sqlite_open(const char *dsn, char *err, size_t errlen)
{
    if (!dsn) {
        tern_format_err(err, errlen, "sqlite: no database path");
        return NULL;
    }
    /* The handle moves between threads (opened by storage_start's thread,
     * or ternctl's only thread), so the library must be thread-safe even
     * though each connection is only used by one thread at a time. */
    if (!sqlite3_threadsafe()) {
        tern_format_err(err, errlen, "sqlite: library built without thread support");
        return NULL;
    }
    if (precreate(dsn, err, errlen) != 0)
        return NULL;

    storage_db_t *h = tern_xcalloc(1, sizeof(*h));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (strncmp(dsn, "file:", 5) == 0)
        flags |= SQLITE_OPEN_URI;
    if (sqlite3_open_v2(dsn, &h->db, flags, NULL) != SQLITE_OK) {
        tern_format_err(err, errlen, "%s: %s", dsn,
                        h->db ? sqlite3_errmsg(h->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(h->db, 1);
    /* Set before anything that may need a lock, including the WAL switch. */
    sqlite3_busy_timeout(h->db, 5000);

    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK) {
        tern_format_err(err, errlen, "%s: %s", dsn, sqlite3_errmsg(h->db));
        goto fail;
    }
    int rc = sqlite3_step(st);
    bool wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
               (strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0 ||
                strcmp(dsn, ":memory:") == 0);
    if (rc != SQLITE_ROW) {
        tern_format_err(err, errlen, "%s: %s", dsn, sqlite3_errmsg(h->db));
        sqlite3_finalize(st);
        goto fail;
    }
    sqlite3_finalize(st);
    if (!wal) {
        /* Without WAL, ternctl writing would block the server's readers. */
        tern_format_err(err, errlen, "%s: cannot switch the database to WAL mode", dsn);
        goto fail;
    }
    if (exec_sql(h->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err, errlen,
                 dsn) != 0)
        goto fail;
    if (migrate(h->db, dsn, err, errlen) != 0)
        goto fail;
    return h;

fail:
    sqlite_close(h);
    return NULL;
}

static int copy_key(sqlite3_stmt *st, int col, unsigned char *out, size_t len)
{
    if ((size_t)sqlite3_column_bytes(st, col) != len)
        return -1;
    const void *p = sqlite3_column_blob(st, col);
    if (!p)
        return -1;
    memcpy(out, p, len);
    return 0;
}

static int sqlite_user_get(storage_db_t *h, const char *host, const char *user, scram_creds_t *out)
{
    sqlite3_stmt *st = stmt_get(h, ST_USER_GET);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        sqlite3_int64 iter = sqlite3_column_int64(st, 1);
        bool ok =
            copy_key(st, 0, out->salt, sizeof(out->salt)) == 0 && iter > 0 && iter <= UINT_MAX;
        out->iterations = ok ? (unsigned)iter : 0;
        for (int i = 0; ok && i < SCRAM_HASH_COUNT; i++) {
            ok = copy_key(st, 2 + 2 * i, out->stored_key[i], key_len[i]) == 0 &&
                 copy_key(st, 3 + 2 * i, out->server_key[i], key_len[i]) == 0;
        }
        if (!ok) {
            log_error(TAG, "sqlite: corrupt credentials for %s@%s", user, host);
            memset(out, 0, sizeof(*out));
            ret = TERN_EIO;
        }
    } else if (rc == SQLITE_DONE) {
        ret = TERN_ENOENT;
    } else {
        ret = db_fail(h, "user_get");
    }
    stmt_done(st);
    return ret;
}

static int sqlite_user_create(storage_db_t *h, const char *host, const char *user,
                              const scram_creds_t *creds)
{
    sqlite3_stmt *st = stmt_get(h, ST_USER_CREATE);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_creds(st, creds) != 0 ||
        sqlite3_bind_int64(st, 11, (sqlite3_int64)time(NULL)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return TERN_EEXIST;
    return db_fail(h, "user_create");
}

static int sqlite_user_set_creds(storage_db_t *h, const char *host, const char *user,
                                 const scram_creds_t *creds)
{
    sqlite3_stmt *st = stmt_get(h, ST_USER_SET_CREDS);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_creds(st, creds) != 0) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_fail(h, "user_set_creds");
    return sqlite3_changes(h->db) > 0 ? 0 : TERN_ENOENT;
}

static int delete_host_user(storage_db_t *h, enum stmt_id id, const char *host, const char *user,
                            int *changes)
{
    sqlite3_stmt *st = stmt_get(h, id);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_fail(h, stmt_sql[id]);
    *changes = sqlite3_changes(h->db);
    return 0;
}

static int sqlite_user_delete(storage_db_t *h, const char *host, const char *user)
{
    int ret = run_simple(h, ST_BEGIN);
    if (ret != 0)
        return ret;
    int users = 0, rows = 0;
    ret = delete_host_user(h, ST_USER_DELETE, host, user, &users);
    if (ret == 0 && users == 0)
        ret = TERN_ENOENT;
    if (ret == 0)
        ret = delete_host_user(h, ST_USER_KV_DELETE, host, user, &rows);
    if (ret == 0)
        ret = run_simple(h, ST_COMMIT);
    if (ret != 0 && !sqlite3_get_autocommit(h->db))
        run_simple(h, ST_ROLLBACK);
    return ret;
}

typedef struct {
    char *host;
    char *user;
} user_row_t;

static int sqlite_user_list(storage_db_t *h, const char *host,
                            void (*cb)(void *ud, const char *host, const char *user), void *ud)
{
    sqlite3_stmt *st = stmt_get(h, host ? ST_USER_LIST_HOST : ST_USER_LIST_ALL);
    if (!st)
        return TERN_EIO;
    if (host && bind_text(st, 1, host) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    /* Rows are collected before any callback runs so that cb may call back
     * into this handle (the cached statement is not in use any more) and the
     * read transaction ends before arbitrary caller code runs. */
    user_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *rh = (const char *)sqlite3_column_text(st, 0);
        const char *ru = (const char *)sqlite3_column_text(st, 1);
        if (!rh || !ru)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            rows = tern_xrealloc(rows, cap * sizeof(*rows));
        }
        rows[n].host = tern_xstrdup(rh);
        rows[n].user = tern_xstrdup(ru);
        n++;
    }
    int ret = rc == SQLITE_DONE ? 0 : db_fail(h, "user_list");
    stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        if (ret == 0)
            cb(ud, rows[i].host, rows[i].user);
        free(rows[i].host);
        free(rows[i].user);
    }
    free(rows);
    return ret;
}

static int bind_kv_key(sqlite3_stmt *st, const char *host, const char *user, const char *store,
                       const char *key)
{
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, store) != SQLITE_OK ||
        bind_text(st, 4, key) != SQLITE_OK)
        return -1;
    return 0;
}

/* The value is NUL-terminated as a convenience for text payloads; *len does
 * not count the terminator. */
static int sqlite_kv_get(storage_db_t *h, const char *host, const char *user, const char *store,
                         const char *key, char **value, size_t *len)
{
    *value = NULL;
    *len = 0;
    sqlite3_stmt *st = stmt_get(h, ST_KV_GET);
    if (!st)
        return TERN_EIO;
    if (bind_kv_key(st, host, user, store, key) != 0) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        char *v = tern_xmalloc(n + 1);
        if (n)
            memcpy(v, p, n);
        v[n] = '\0';
        *value = v;
        *len = n;
    } else if (rc == SQLITE_DONE) {
        ret = TERN_ENOENT;
    } else {
        ret = db_fail(h, "kv_get");
    }
    stmt_done(st);
    return ret;
}

static int sqlite_kv_put(storage_db_t *h, const char *host, const char *user, const char *store,
                         const char *key, const char *value, size_t len)
{
    sqlite3_stmt *st = stmt_get(h, ST_KV_PUT);
    if (!st)
        return TERN_EIO;
    if (bind_kv_key(st, host, user, store, key) != 0 || bind_blob(st, 5, value, len) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_fail(h, "kv_put");
}

/* Returns TERN_ENOENT when there was nothing to delete; callers that only
 * want the key gone can treat that as success. */
static int sqlite_kv_del(storage_db_t *h, const char *host, const char *user, const char *store,
                         const char *key)
{
    sqlite3_stmt *st = stmt_get(h, ST_KV_DEL);
    if (!st)
        return TERN_EIO;
    if (bind_kv_key(st, host, user, store, key) != 0) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_fail(h, "kv_del");
    return sqlite3_changes(h->db) > 0 ? 0 : TERN_ENOENT;
}

/* Rows are read into memory first so that cb may call the driver (e.g. to
 * delete what it has just seen) without disturbing the running statement. */
static int sqlite_kv_list(storage_db_t *h, const char *host, const char *user, const char *store,
                          int (*cb)(void *ud, const char *key, const char *value, size_t len),
                          void *ud)
{
    sqlite3_stmt *st = stmt_get(h, ST_KV_LIST);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, store) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    struct kv_row {
        char *key, *value;
        size_t len;
    } *rows = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            rows = tern_xrealloc(rows, cap * sizeof(*rows));
        }
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const void *v = sqlite3_column_blob(st, 1);
        size_t vlen = (size_t)sqlite3_column_bytes(st, 1);
        rows[n].key = tern_xstrdup(k ? k : "");
        rows[n].value = tern_xmalloc(vlen + 1);
        if (vlen)
            memcpy(rows[n].value, v, vlen);
        rows[n].value[vlen] = '\0';
        rows[n].len = vlen;
        n++;
    }
    stmt_done(st);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(h, "kv_list");
    for (size_t i = 0; i < n; i++) {
        if (ret == 0)
            ret = cb(ud, rows[i].key, rows[i].value, rows[i].len);
        free(rows[i].key);
        free(rows[i].value);
    }
    free(rows);
    return ret;
}

static int sqlite_kv_del_store(storage_db_t *h, const char *host, const char *user,
                               const char *store)
{
    sqlite3_stmt *st = stmt_get(h, ST_KV_DEL_STORE);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, store) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_fail(h, "kv_del_store");
}

static int sqlite_begin(storage_db_t *h)
{
    return run_simple(h, ST_BEGIN);
}

static int sqlite_commit(storage_db_t *h)
{
    return run_simple(h, ST_COMMIT);
}

static int sqlite_rollback(storage_db_t *h)
{
    return run_simple(h, ST_ROLLBACK);
}

const storage_driver_t storage_sqlite_driver = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .user_get = sqlite_user_get,
    .user_create = sqlite_user_create,
    .user_set_creds = sqlite_user_set_creds,
    .user_delete = sqlite_user_delete,
    .user_list = sqlite_user_list,
    .kv_get = sqlite_kv_get,
    .kv_put = sqlite_kv_put,
    .kv_del = sqlite_kv_del,
    .kv_list = sqlite_kv_list,
    .kv_del_store = sqlite_kv_del_store,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
};
