/* SPDX-License-Identifier: MIT
 * storage.h - storage drivers and the asynchronous queue that keeps their
 * blocking I/O off the event loop.
 *
 * A driver (storage_driver_t) is a synchronous vtable: SQLite is the
 * embedded default; a PostgreSQL driver implements the same table. Drivers
 * are called only from the storage thread (or directly by ternctl, which has
 * no event loop). Feature code never calls a driver on the loop thread: it
 * submits a job with storage_submit; the job function runs on the storage
 * thread with the driver handle, and the done callback runs back on the
 * loop thread.
 *
 * Data model: accounts (per host) with SCRAM credentials, and a generic
 * key/value store per (host, user, store, key) that modules use for their
 * state (rosters, private XML, vCards...) without new tables per feature.
 */
#ifndef TERN_STORAGE_H
#define TERN_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../sasl/scram.h"

typedef struct storage_db storage_db_t; /* an open driver handle */

/* ---- message archive (XEP-0313) ----
 * One archive per account; rows are kept in arrival order, which is the
 * archive's chronological order (timestamps alone may tie or step back
 * with the clock). */

/* One archived message. On append every pointer is borrowed for the call;
 * in a query callback they are borrowed for the callback only. */
typedef struct {
    const char *id;            /* stanza-id, unique within the account's archive */
    int64_t ts;                /* microseconds since the epoch */
    const char *with_bare;     /* the other party's bare JID */
    const char *with_resource; /* its resource, or NULL */
    bool outgoing;             /* sent by the account (else received) */
    const char *stanza;        /* serialized message */
    size_t len;
} archive_msg_t;

#define ARCHIVE_TS_MIN INT64_MIN
#define ARCHIVE_TS_MAX INT64_MAX

/* A query: filters select a result set, the RSM part picks one page of it.
 * Unused filters are NULL / 0 / ARCHIVE_TS_MIN..MAX. */
typedef struct {
    const char *with_bare;     /* NULL = any */
    const char *with_resource; /* with with_bare: exact full JID; NULL = any resource */
    int64_t start, end;        /* inclusive, microseconds */
    const char *after_id;      /* exclusive (mam#extended after-id) */
    const char *before_id;     /* exclusive (mam#extended before-id) */
    const char *const *ids;    /* only these ids (mam#extended ids); unknown ones match nothing */
    size_t n_ids;
    const char *rsm_after;  /* page starts after this id */
    const char *rsm_before; /* page ends before this id; "" = the last page */
    size_t max;             /* page size (a sane bound: the rows are buffered); 0 = count only */
    bool want_count;        /* fill count and first_index */
} archive_query_t;

typedef struct {
    bool complete;       /* no more items in the paging direction */
    int64_t count;       /* size of the result set, or -1 */
    int64_t first_index; /* position of the page's first item in it, or -1 */
} archive_page_t;

typedef struct storage_driver {
    const char *name;
    /* Opens (creating and migrating the schema as needed). dsn for SQLite is
     * a file path. On failure returns NULL and writes a message to err. */
    storage_db_t *(*open)(const char *dsn, char *err, size_t errlen);
    void (*close)(storage_db_t *db);

    /* Accounts. user is a normalised localpart, host a normalised domain.
     * Return 0, TERN_ENOENT (no such account), TERN_EEXIST (create of an
     * existing one) or TERN_EIO. */
    int (*user_get)(storage_db_t *db, const char *host, const char *user, scram_creds_t *out);
    int (*user_create)(storage_db_t *db, const char *host, const char *user,
                       const scram_creds_t *creds);
    int (*user_set_creds)(storage_db_t *db, const char *host, const char *user,
                          const scram_creds_t *creds);
    /* Deletes the account, all its key/value data and its message archive. */
    int (*user_delete)(storage_db_t *db, const char *host, const char *user);
    /* Calls cb for each account of host (all hosts when host is NULL), in
     * host then user order. */
    int (*user_list)(storage_db_t *db, const char *host,
                     void (*cb)(void *ud, const char *host, const char *user), void *ud);

    /* Key/value data. value is malloc'd on get (caller frees). */
    int (*kv_get)(storage_db_t *db, const char *host, const char *user, const char *store,
                  const char *key, char **value, size_t *len);
    int (*kv_put)(storage_db_t *db, const char *host, const char *user, const char *store,
                  const char *key, const char *value, size_t len);
    int (*kv_del)(storage_db_t *db, const char *host, const char *user, const char *store,
                  const char *key);
    /* Calls cb for every key of (host, user, store) in key order (bytewise)
     * with the value, which is borrowed for the call and NUL-terminated. A
     * non-zero return from cb stops the walk and is returned. cb may call
     * the driver. */
    int (*kv_list)(storage_db_t *db, const char *host, const char *user, const char *store,
                   int (*cb)(void *ud, const char *key, const char *value, size_t len), void *ud);
    /* How many keys (host, user, store) has, without reading them. */
    int (*kv_count)(storage_db_t *db, const char *host, const char *user, const char *store,
                    size_t *count);
    /* Deletes every key of (host, user, store); 0 also when there were none. */
    int (*kv_del_store)(storage_db_t *db, const char *host, const char *user, const char *store);

    /* A transaction around several calls, so a read-modify-write job
     * (roster, offline queue) lands entirely or not at all. Not nested. */
    int (*begin)(storage_db_t *db);
    int (*commit)(storage_db_t *db);
    int (*rollback)(storage_db_t *db);

    /* Message archive. user is the account's localpart. append returns
     * TERN_EEXIST when the id is already in that account's archive. */
    int (*archive_append)(storage_db_t *db, const char *host, const char *user,
                          const archive_msg_t *m);
    /* Runs q on user's archive and calls cb for each item of the page in
     * chronological order (a non-zero return stops and is returned; cb may
     * call the driver). Returns TERN_ENOENT when an after/before id (RSM or
     * #extended) is not in the archive. */
    int (*archive_query)(storage_db_t *db, const char *host, const char *user,
                         const archive_query_t *q, int (*cb)(void *ud, const archive_msg_t *m),
                         void *ud, archive_page_t *page);
    /* Deletes messages older than before_ts of user (NULL: of every account
     * of host); *deleted (may be NULL) gets the number of rows. */
    int (*archive_expire)(storage_db_t *db, const char *host, const char *user, int64_t before_ts,
                          int64_t *deleted);
    /* Deletes an account's whole archive (0 also when it was empty). */
    int (*archive_delete_user)(storage_db_t *db, const char *host, const char *user);
} storage_driver_t;

extern const storage_driver_t storage_sqlite_driver;

/* 0 if the account exists, TERN_ENOENT if not, another TERN_E* code on
 * failure: for storage jobs that only need to know (an offline message, a
 * subscription request for an account nobody is logged in as). The
 * credentials read on the way are wiped. Storage thread only. */
int storage_user_exists(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user);

/* Looks up a driver by name ("sqlite"); NULL if unknown. */
const storage_driver_t *storage_driver_find(const char *name);

/* ---- asynchronous queue (loop side) ---- */

typedef struct storage storage_t;
struct uv_loop_s;

/* Job function, run on the storage thread. Its int result goes to done. */
typedef int (*storage_job_fn)(const storage_driver_t *drv, storage_db_t *db, void *arg);
/* Completion, run on the loop thread with the job's result. */
typedef void (*storage_done_cb)(void *arg, int result);

/* Opens the driver on a dedicated storage thread and wires completion to
 * loop. Call on the loop thread. Returns NULL with err set on failure. */
storage_t *storage_start(struct uv_loop_s *loop, const storage_driver_t *drv, const char *dsn,
                         char *err, size_t errlen);
/* Runs the remaining jobs, then stops the thread and closes the driver.
 * Completions of jobs still queued run before this returns (jobs they
 * submit are run too). Call on the loop thread, possibly from a callback.
 * The uv_async handle is closed with uv_close, which finishes on the next
 * loop iteration: run the loop at least once more (e.g. uv_run(loop,
 * UV_RUN_NOWAIT)) before uv_loop_close, or st is leaked. st must not be
 * used after this returns. */
void storage_stop(storage_t *st);
/* Queues a job; loop thread only (TERN_EPERM otherwise). arg is owned by
 * the caller and must stay valid until done runs; done may be NULL. done is
 * never called if this returns an error. While jobs are outstanding the
 * queue keeps the loop alive; an idle queue does not. */
int storage_submit(storage_t *st, storage_job_fn job, storage_done_cb done, void *arg);
#endif
