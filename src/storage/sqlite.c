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
    /* 2: the message archive (XEP-0313). seq is the archive order;
     * AUTOINCREMENT so that a deleted newest row never has its number
     * reused, which would put a later message before earlier ones. */
    "CREATE TABLE archive ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " host TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " ts INTEGER NOT NULL,"
    " with_bare TEXT NOT NULL,"
    " with_resource TEXT NOT NULL,"
    " outgoing INTEGER NOT NULL,"
    " stanza BLOB NOT NULL);"
    "CREATE UNIQUE INDEX archive_id ON archive (host, username, id);"
    "CREATE INDEX archive_ts ON archive (host, username, ts);"
    "CREATE INDEX archive_with ON archive (host, username, with_bare, with_resource);",
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
    ST_KV_COUNT,
    ST_ARCHIVE_APPEND,
    ST_ARCHIVE_SEQ,
    ST_ARCHIVE_EXPIRE_USER,
    ST_ARCHIVE_EXPIRE_HOST,
    ST_ARCHIVE_DELETE_USER,
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
    [ST_KV_COUNT] = "SELECT count(*) FROM kv WHERE host = ?1 AND username = ?2 AND store = ?3",
    [ST_ARCHIVE_APPEND] = "INSERT INTO archive (host, username, id, ts, with_bare, with_resource,"
                          " outgoing, stanza) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_ARCHIVE_SEQ] = "SELECT seq FROM archive WHERE host = ?1 AND username = ?2 AND id = ?3",
    [ST_ARCHIVE_EXPIRE_USER] = "DELETE FROM archive WHERE host = ?1 AND username = ?2 AND ts < ?3",
    [ST_ARCHIVE_EXPIRE_HOST] = "DELETE FROM archive WHERE host = ?1 AND ts < ?2",
    [ST_ARCHIVE_DELETE_USER] = "DELETE FROM archive WHERE host = ?1 AND username = ?2",
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
    /* The message archive makes this a write-heavy database. Reads go
     * through a memory map instead of a pread per page; a larger page
     * cache keeps the archive indexes' hot pages; checkpoints (each an
     * fsync of the database) run every 16 MB of WAL instead of 4 MB. */
    if (exec_sql(h->db,
                 "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                 " PRAGMA mmap_size = 268435456; PRAGMA cache_size = -32768;"
                 " PRAGMA wal_autocheckpoint = 4096",
                 err, errlen, dsn) != 0)
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
        ret = delete_host_user(h, ST_ARCHIVE_DELETE_USER, host, user, &rows);
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

static int sqlite_kv_count(storage_db_t *h, const char *host, const char *user, const char *store,
                           size_t *count)
{
    *count = 0;
    sqlite3_stmt *st = stmt_get(h, ST_KV_COUNT);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, store) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *count = (size_t)sqlite3_column_int64(st, 0);
    stmt_done(st);
    return rc == SQLITE_ROW ? 0 : db_fail(h, "kv_count");
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

/* ---- message archive ---- */

static int sqlite_archive_append(storage_db_t *h, const char *host, const char *user,
                                 const archive_msg_t *m)
{
    sqlite3_stmt *st = stmt_get(h, ST_ARCHIVE_APPEND);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, m->id) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, (sqlite3_int64)m->ts) != SQLITE_OK ||
        bind_text(st, 5, m->with_bare) != SQLITE_OK ||
        bind_text(st, 6, m->with_resource ? m->with_resource : "") != SQLITE_OK ||
        sqlite3_bind_int(st, 7, m->outgoing ? 1 : 0) != SQLITE_OK ||
        bind_blob(st, 8, m->stanza, m->len) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return TERN_EEXIST;
    return db_fail(h, "archive_append");
}

/* The archive position of id in user's archive. */
static int archive_seq(storage_db_t *h, const char *host, const char *user, const char *id,
                       int64_t *seq)
{
    sqlite3_stmt *st = stmt_get(h, ST_ARCHIVE_SEQ);
    if (!st)
        return TERN_EIO;
    if (bind_host_user(st, host, user) != 0 || bind_text(st, 3, id) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ret = TERN_ENOENT;
    else
        ret = db_fail(h, "archive_seq");
    stmt_done(st);
    return ret;
}

typedef struct {
    char *buf;
    size_t len, cap;
} sqlbuf_t;

static void sql_add(sqlbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sql_add(sqlbuf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->buf = tern_xrealloc(b->buf, b->cap);
    }
}

/* Query filters change from query to query, so their SQL is built per
 * query instead of cached. Strings are bound (?1 host, ?2 user, ?3 and ?4
 * the 'with' JID, ?5... the ids); integers (timestamps, and positions from
 * our own lookups) are written as literals, which cannot carry SQL. lo and
 * hi are exclusive position bounds (0 and INT64_MAX: none). */
static void archive_where(sqlbuf_t *b, const archive_query_t *q, int64_t lo, int64_t hi)
{
    sql_add(b, " WHERE host = ?1 AND username = ?2");
    if (q->with_bare) {
        sql_add(b, " AND with_bare = ?3");
        if (q->with_resource)
            sql_add(b, " AND with_resource = ?4");
    }
    if (q->start != ARCHIVE_TS_MIN)
        sql_add(b, " AND ts >= %lld", (long long)q->start);
    if (q->end != ARCHIVE_TS_MAX)
        sql_add(b, " AND ts <= %lld", (long long)q->end);
    if (lo > 0)
        sql_add(b, " AND seq > %lld", (long long)lo);
    if (hi < INT64_MAX)
        sql_add(b, " AND seq < %lld", (long long)hi);
    if (q->ids) {
        if (q->n_ids == 0) {
            sql_add(b, " AND 0");
        } else {
            sql_add(b, " AND id IN (");
            for (size_t i = 0; i < q->n_ids; i++)
                sql_add(b, "%s?%zu", i ? ", " : "", i + 5);
            sql_add(b, ")");
        }
    }
}

static int archive_bind(sqlite3_stmt *st, const char *host, const char *user,
                        const archive_query_t *q)
{
    if (bind_host_user(st, host, user) != 0)
        return -1;
    if (q->with_bare) {
        if (bind_text(st, 3, q->with_bare) != SQLITE_OK)
            return -1;
        if (q->with_resource && bind_text(st, 4, q->with_resource) != SQLITE_OK)
            return -1;
    }
    for (size_t i = 0; q->ids && i < q->n_ids; i++) {
        if (i + 5 > INT_MAX || bind_text(st, (int)(i + 5), q->ids[i]) != SQLITE_OK)
            return -1;
    }
    return 0;
}

/* Prepares SQL built by archive_where and binds its strings. */
static sqlite3_stmt *archive_prepare(storage_db_t *h, const sqlbuf_t *b, const char *host,
                                     const char *user, const archive_query_t *q)
{
    sqlite3_stmt *st = NULL;
    if (!b->buf || sqlite3_prepare_v2(h->db, b->buf, (int)b->len, &st, NULL) != SQLITE_OK) {
        db_fail(h, "archive query prepare");
        return NULL;
    }
    if (archive_bind(st, host, user, q) != 0) {
        db_fail(h, "archive query bind");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int archive_count(storage_db_t *h, const char *host, const char *user,
                         const archive_query_t *q, int64_t lo, int64_t hi, int64_t *out)
{
    sqlbuf_t b = {0};
    sql_add(&b, "SELECT COUNT(*) FROM archive");
    archive_where(&b, q, lo, hi);
    sqlite3_stmt *st = archive_prepare(h, &b, host, user, q);
    free(b.buf);
    if (!st)
        return TERN_EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : db_fail(h, "archive_count");
}

typedef struct {
    int64_t seq, ts;
    char *id, *with_bare, *with_resource, *stanza;
    size_t len;
    bool outgoing;
} archive_row_t;

static void archive_row_free(archive_row_t *r)
{
    free(r->id);
    free(r->with_bare);
    free(r->with_resource);
    free(r->stanza);
}

static char *column_dup(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return tern_xstrdup(t ? t : "");
}

/* Rows are read into memory first so that cb may call the driver and the
 * read transaction ends before caller code runs (as kv_list). The page is
 * fetched with one extra row in the paging direction: its presence is what
 * says the page is not the last one. */
static int sqlite_archive_query(storage_db_t *h, const char *host, const char *user,
                                const archive_query_t *q,
                                int (*cb)(void *ud, const archive_msg_t *m), void *ud,
                                archive_page_t *page)
{
    page->complete = false;
    page->count = -1;
    page->first_index = -1;

    int64_t flo = 0, fhi = INT64_MAX, seq;
    int ret;
    if (q->after_id) {
        if ((ret = archive_seq(h, host, user, q->after_id, &seq)) != 0)
            return ret;
        flo = seq;
    }
    if (q->before_id) {
        if ((ret = archive_seq(h, host, user, q->before_id, &seq)) != 0)
            return ret;
        fhi = seq;
    }
    int64_t plo = flo, phi = fhi;
    if (q->rsm_after) {
        if ((ret = archive_seq(h, host, user, q->rsm_after, &seq)) != 0)
            return ret;
        plo = seq > plo ? seq : plo;
    }
    if (q->rsm_before && q->rsm_before[0]) {
        if ((ret = archive_seq(h, host, user, q->rsm_before, &seq)) != 0)
            return ret;
        phi = seq < phi ? seq : phi;
    }
    bool backward = q->rsm_before != NULL;

    sqlbuf_t b = {0};
    sql_add(&b, "SELECT seq, id, ts, with_bare, with_resource, outgoing, stanza FROM archive");
    archive_where(&b, q, plo, phi);
    sql_add(&b, " ORDER BY seq %s LIMIT %zu", backward ? "DESC" : "ASC", q->max + 1);
    sqlite3_stmt *st = archive_prepare(h, &b, host, user, q);
    free(b.buf);
    if (!st)
        return TERN_EIO;

    archive_row_t *rows = tern_xcalloc(q->max + 1, sizeof(*rows));
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n <= q->max) {
        archive_row_t *r = &rows[n++];
        r->seq = sqlite3_column_int64(st, 0);
        r->id = column_dup(st, 1);
        r->ts = sqlite3_column_int64(st, 2);
        r->with_bare = column_dup(st, 3);
        r->with_resource = column_dup(st, 4);
        r->outgoing = sqlite3_column_int(st, 5) != 0;
        r->len = (size_t)sqlite3_column_bytes(st, 6);
        r->stanza = tern_xmalloc(r->len + 1);
        if (r->len)
            memcpy(r->stanza, sqlite3_column_blob(st, 6), r->len);
        r->stanza[r->len] = '\0';
    }
    ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(h, "archive_query");
    sqlite3_finalize(st);

    if (n > q->max) {
        archive_row_free(&rows[--n]);
        page->complete = false;
    } else {
        page->complete = true;
    }
    if (backward) {
        for (size_t i = 0; i < n / 2; i++) {
            archive_row_t t = rows[i];
            rows[i] = rows[n - 1 - i];
            rows[n - 1 - i] = t;
        }
    }
    if (ret == 0 && q->want_count) {
        ret = archive_count(h, host, user, q, flo, fhi, &page->count);
        if (ret == 0 && n > 0)
            ret = archive_count(h, host, user, q, flo, rows[0].seq < fhi ? rows[0].seq : fhi,
                                &page->first_index);
    }
    for (size_t i = 0; i < n; i++) {
        if (ret == 0) {
            archive_msg_t m = {.id = rows[i].id,
                               .ts = rows[i].ts,
                               .with_bare = rows[i].with_bare,
                               .with_resource =
                                   rows[i].with_resource[0] ? rows[i].with_resource : NULL,
                               .outgoing = rows[i].outgoing,
                               .stanza = rows[i].stanza,
                               .len = rows[i].len};
            ret = cb(ud, &m);
        }
        archive_row_free(&rows[i]);
    }
    free(rows);
    return ret;
}

static int sqlite_archive_expire(storage_db_t *h, const char *host, const char *user,
                                 int64_t before_ts, int64_t *deleted)
{
    sqlite3_stmt *st = stmt_get(h, user ? ST_ARCHIVE_EXPIRE_USER : ST_ARCHIVE_EXPIRE_HOST);
    if (!st)
        return TERN_EIO;
    int tsidx = user ? 3 : 2;
    if (bind_text(st, 1, host) != SQLITE_OK || (user && bind_text(st, 2, user) != SQLITE_OK) ||
        sqlite3_bind_int64(st, tsidx, (sqlite3_int64)before_ts) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(h, "bind");
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_fail(h, "archive_expire");
    if (deleted)
        *deleted = sqlite3_changes64(h->db);
    return 0;
}

static int sqlite_archive_delete_user(storage_db_t *h, const char *host, const char *user)
{
    int changes = 0;
    return delete_host_user(h, ST_ARCHIVE_DELETE_USER, host, user, &changes);
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
    .kv_count = sqlite_kv_count,
    .kv_del_store = sqlite_kv_del_store,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .archive_append = sqlite_archive_append,
    .archive_query = sqlite_archive_query,
    .archive_expire = sqlite_archive_expire,
    .archive_delete_user = sqlite_archive_delete_user,
};
