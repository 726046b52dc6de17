/* SPDX-License-Identifier: MIT
 * test_storage.c - unit tests for the SQLite driver and the storage queue.
 *
 * Each test gets a fresh mkdtemp directory holding its database. Driver
 * tests cover schema migration and refusal of newer schemas, accounts across
 * two hosts, and key/value data; queue tests run a real uv loop to check
 * that jobs run off the loop thread, completions come back on it in order,
 * and storage_stop delivers everything still queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/common.h"
#include "storage/storage.h"

typedef struct {
    char dir[64];
    char path[128];
} fixture_t;

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(p);
}

static int setup(void **state)
{
    fixture_t *f = tern_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern-storage-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/tern.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static storage_db_t *open_db(const fixture_t *f)
{
    char err[256] = "";
    storage_db_t *db = storage_sqlite_driver.open(f->path, err, sizeof(err));
    if (!db)
        fail_msg("open: %s", err);
    return db;
}

/* Arbitrary but distinct bytes per seed, so a mix-up of columns shows. */
static void fake_creds(scram_creds_t *c, unsigned seed)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < sizeof(c->salt); i++)
        c->salt[i] = (unsigned char)(seed * 7 + i);
    c->iterations = 4096 + seed;
    static const size_t lens[SCRAM_HASH_COUNT] = {20, 32, 64};
    for (int h = 0; h < SCRAM_HASH_COUNT; h++) {
        for (size_t i = 0; i < lens[h]; i++) {
            c->stored_key[h][i] = (unsigned char)(seed + 31 * h + i);
            c->server_key[h][i] = (unsigned char)(seed * 3 + 17 * h + 2 * i + 1);
        }
    }
}

static int raw_user_version(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_open_and_migrate(void **state)
{
    fixture_t *f = *state;
    storage_db_t *db = open_db(f);
    storage_sqlite_driver.close(db);

    assert_int_equal(raw_user_version(f->path), 2);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* Reopening an up-to-date database must not re-run migrations (which
     * would fail on the existing tables). */
    db = open_db(f);
    scram_creds_t c;
    fake_creds(&c, 1);
    assert_int_equal(storage_sqlite_driver.user_create(db, "localhost", "alice", &c), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    storage_sqlite_driver.close(db);
    db = open_db(f);
    scram_creds_t got;
    assert_int_equal(storage_sqlite_driver.user_get(db, "localhost", "alice", &got), 0);
    storage_sqlite_driver.close(db);

    sqlite3 *raw;
    assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(raw);
}

static void test_newer_schema_refused(void **state)
{
    fixture_t *f = *state;
    storage_sqlite_driver.close(open_db(f));

    sqlite3 *raw;
    assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    char err[256] = "";
    storage_db_t *db = storage_sqlite_driver.open(f->path, err, sizeof(err));
    assert_null(db);
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "999"));
    assert_int_equal(raw_user_version(f->path), 999);
}

static void test_open_errors(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    char path[192];
    snprintf(path, sizeof(path), "%s/missing/tern.db", f->dir);
    assert_null(storage_sqlite_driver.open(path, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));

    snprintf(path, sizeof(path), "%s/junk.db", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 100; i++)
        fputs("this is not a database file at all\n", fp);
    fclose(fp);
    err[0] = '\0';
    assert_null(storage_sqlite_driver.open(path, err, sizeof(err)));
    assert_true(err[0] != '\0');
}

typedef struct {
    char lines[16][64];
    size_t n;
} list_t;

static void collect(void *ud, const char *host, const char *user)
{
    list_t *l = ud;
    assert_true(l->n < TERN_ARRAY_LEN(l->lines));
    snprintf(l->lines[l->n++], sizeof(l->lines[0]), "%s@%s", user, host);
}

static void test_users(void **state)
{
    fixture_t *f = *state;
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = open_db(f);
    scram_creds_t c1, c2, got;
    fake_creds(&c1, 1);
    fake_creds(&c2, 2);

    assert_int_equal(d->user_get(db, "a.example", "alice", &got), TERN_ENOENT);
    assert_int_equal(d->user_create(db, "a.example", "bob", &c1), 0);
    assert_int_equal(d->user_create(db, "a.example", "alice", &c1), 0);
    assert_int_equal(d->user_create(db, "b.example", "alice", &c2), 0);
    assert_int_equal(d->user_create(db, "a.example", "alice", &c2), TERN_EEXIST);

    assert_int_equal(d->user_get(db, "a.example", "alice", &got), 0);
    assert_memory_equal(&got, &c1, sizeof(got));
    assert_int_equal(d->user_get(db, "b.example", "alice", &got), 0);
    assert_memory_equal(&got, &c2, sizeof(got));

    assert_int_equal(d->user_set_creds(db, "a.example", "alice", &c2), 0);
    assert_int_equal(d->user_get(db, "a.example", "alice", &got), 0);
    assert_memory_equal(&got, &c2, sizeof(got));
    assert_int_equal(d->user_set_creds(db, "a.example", "carol", &c2), TERN_ENOENT);

    list_t all = {0};
    assert_int_equal(d->user_list(db, NULL, collect, &all), 0);
    assert_int_equal(all.n, 3);
    assert_string_equal(all.lines[0], "alice@a.example");
    assert_string_equal(all.lines[1], "bob@a.example");
    assert_string_equal(all.lines[2], "alice@b.example");

    list_t b = {0};
    assert_int_equal(d->user_list(db, "b.example", collect, &b), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.lines[0], "alice@b.example");

    list_t none = {0};
    assert_int_equal(d->user_list(db, "c.example", collect, &none), 0);
    assert_int_equal(none.n, 0);

    assert_int_equal(d->user_delete(db, "a.example", "alice"), 0);
    assert_int_equal(d->user_delete(db, "a.example", "alice"), TERN_ENOENT);
    assert_int_equal(d->user_get(db, "a.example", "alice", &got), TERN_ENOENT);
    assert_int_equal(d->user_get(db, "b.example", "alice", &got), 0);

    list_t after = {0};
    assert_int_equal(d->user_list(db, "a.example", collect, &after), 0);
    assert_int_equal(after.n, 1);
    assert_string_equal(after.lines[0], "bob@a.example");
    d->close(db);
}

static void test_kv(void **state)
{
    fixture_t *f = *state;
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = open_db(f);
    scram_creds_t c;
    fake_creds(&c, 5);
    assert_int_equal(d->user_create(db, "a.example", "alice", &c), 0);
    assert_int_equal(d->user_create(db, "b.example", "alice", &c), 0);

    char *v = (char *)"x";
    size_t len = 99;
    assert_int_equal(d->kv_get(db, "a.example", "alice", "roster", "bob@b.example", &v, &len),
                     TERN_ENOENT);
    assert_null(v);
    assert_int_equal(len, 0);

    static const char bin[] = {'a', '\0', 'b', '\xff'};
    assert_int_equal(d->kv_put(db, "a.example", "alice", "roster", "bob", bin, sizeof(bin)), 0);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "roster", "bob", &v, &len), 0);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(v, bin, sizeof(bin));
    assert_int_equal(v[len], '\0');
    free(v);

    assert_int_equal(d->kv_put(db, "a.example", "alice", "roster", "bob", "new", 3), 0);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "roster", "bob", &v, &len), 0);
    assert_int_equal(len, 3);
    assert_string_equal(v, "new");
    free(v);

    assert_int_equal(d->kv_put(db, "a.example", "alice", "private", "empty", "", 0), 0);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "private", "empty", &v, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(v, "");
    free(v);

    assert_int_equal(d->kv_put(db, "a.example", "alice", "vcard", "", "card", 4), 0);
    assert_int_equal(d->kv_put(db, "b.example", "alice", "vcard", "", "other", 5), 0);

    assert_int_equal(d->kv_del(db, "a.example", "alice", "private", "empty"), 0);
    assert_int_equal(d->kv_del(db, "a.example", "alice", "private", "empty"), TERN_ENOENT);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "private", "empty", &v, &len),
                     TERN_ENOENT);

    /* Deleting the account takes its data with it, and only its data. */
    assert_int_equal(d->user_delete(db, "a.example", "alice"), 0);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "roster", "bob", &v, &len), TERN_ENOENT);
    assert_int_equal(d->kv_get(db, "a.example", "alice", "vcard", "", &v, &len), TERN_ENOENT);
    assert_int_equal(d->kv_get(db, "b.example", "alice", "vcard", "", &v, &len), 0);
    assert_string_equal(v, "other");
    free(v);
    d->close(db);
}

/* ---- message archive ---- */

#define NARCH 25

typedef struct {
    char ids[64][16];
    char stanzas[64][64];
    char with[64][64];
    int64_t ts[64];
    size_t n;
} arch_got_t;

static int arch_collect(void *ud, const archive_msg_t *m)
{
    arch_got_t *g = ud;
    if (g->n >= 64)
        return -1;
    snprintf(g->ids[g->n], sizeof(g->ids[0]), "%s", m->id);
    snprintf(g->stanzas[g->n], sizeof(g->stanzas[0]), "%.*s", (int)m->len, m->stanza);
    snprintf(g->with[g->n], sizeof(g->with[0]), "%s%s%s", m->with_bare, m->with_resource ? "/" : "",
             m->with_resource ? m->with_resource : "");
    g->ts[g->n] = m->ts;
    g->n++;
    return 0;
}

/* alice@a.example gets m00..m24 at ts 1000..1024, alternately with
 * bob@b.example/phone and carol@b.example/pc (even: bob), plus one
 * message of bob's own archive that must never show in hers. */
static storage_db_t *arch_fill(const fixture_t *f)
{
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = open_db(f);
    for (int i = 0; i < NARCH; i++) {
        char id[16], xml[64];
        snprintf(id, sizeof(id), "m%02d", i);
        snprintf(xml, sizeof(xml), "<message><body>%d</body></message>", i);
        archive_msg_t m = {.id = id,
                           .ts = 1000 + i,
                           .with_bare = i % 2 ? "carol@b.example" : "bob@b.example",
                           .with_resource = i % 2 ? "pc" : "phone",
                           .outgoing = i % 3 == 0,
                           .stanza = xml,
                           .len = strlen(xml)};
        assert_int_equal(d->archive_append(db, "a.example", "alice", &m), 0);
    }
    archive_msg_t other = {
        .id = "b00", .ts = 1005, .with_bare = "alice@a.example", .stanza = "<message/>", .len = 10};
    assert_int_equal(d->archive_append(db, "b.example", "bob", &other), 0);
    /* ids are unique per archive, not across archives */
    other.id = "m00";
    assert_int_equal(d->archive_append(db, "b.example", "bob", &other), 0);
    assert_int_equal(d->archive_append(db, "b.example", "bob", &other), TERN_EEXIST);
    return db;
}

static archive_query_t arch_q(size_t max)
{
    archive_query_t q = {.start = ARCHIVE_TS_MIN, .end = ARCHIVE_TS_MAX, .max = max};
    return q;
}

static void arch_run(storage_db_t *db, const archive_query_t *q, arch_got_t *g, archive_page_t *p,
                     int expect_rc)
{
    memset(g, 0, sizeof(*g));
    assert_int_equal(
        storage_sqlite_driver.archive_query(db, "a.example", "alice", q, arch_collect, g, p),
        expect_rc);
}

static void assert_ids(const arch_got_t *g, int first, int n)
{
    assert_int_equal(g->n, n);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%02d", first + i);
        assert_string_equal(g->ids[i], id);
    }
}

static void test_archive_paging(void **state)
{
    storage_db_t *db = arch_fill(*state);
    arch_got_t g;
    archive_page_t p;

    /* forward with RSM after */
    archive_query_t q = arch_q(10);
    q.want_count = true;
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 0, 10);
    assert_false(p.complete);
    assert_int_equal(p.count, NARCH);
    assert_int_equal(p.first_index, 0);
    assert_string_equal(g.stanzas[3], "<message><body>3</body></message>");
    assert_string_equal(g.with[0], "bob@b.example/phone");
    assert_int_equal(g.ts[4], 1004);
    q.rsm_after = "m09";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 10, 10);
    assert_false(p.complete);
    assert_int_equal(p.first_index, 10);
    q.rsm_after = "m19";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 20, 5);
    assert_true(p.complete);
    q.rsm_after = "m24";
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    assert_true(p.complete);
    assert_int_equal(p.first_index, -1);

    /* backward: an empty before is the last page */
    q = arch_q(10);
    q.want_count = true;
    q.rsm_before = "";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 15, 10);
    assert_false(p.complete);
    assert_int_equal(p.first_index, 15);
    q.rsm_before = "m15";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 5, 10);
    assert_false(p.complete);
    q.rsm_before = "m05";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 0, 5);
    assert_true(p.complete);
    assert_int_equal(p.first_index, 0);

    /* exactly one full page is complete; max 0 only counts */
    q = arch_q(NARCH);
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 0, NARCH);
    assert_true(p.complete);
    assert_int_equal(p.count, -1);
    q = arch_q(0);
    q.want_count = true;
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    assert_false(p.complete);
    assert_int_equal(p.count, NARCH);
    storage_sqlite_driver.close(db);
}

static void test_archive_filters(void **state)
{
    storage_db_t *db = arch_fill(*state);
    arch_got_t g;
    archive_page_t p;

    archive_query_t q = arch_q(50);
    q.want_count = true;
    q.with_bare = "bob@b.example";
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 13);
    assert_int_equal(p.count, 13);
    for (size_t i = 0; i < g.n; i++)
        assert_string_equal(g.with[i], "bob@b.example/phone");
    q.with_resource = "phone";
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 13);
    q.with_resource = "laptop";
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    assert_true(p.complete);

    /* start and end are inclusive */
    q = arch_q(50);
    q.start = 1003;
    q.end = 1006;
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 3, 4);
    assert_true(p.complete);

    /* #extended after-id / before-id are exclusive and combine with RSM */
    q = arch_q(3);
    q.want_count = true;
    q.after_id = "m10";
    q.before_id = "m20";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 11, 3);
    assert_int_equal(p.count, 9);
    assert_int_equal(p.first_index, 0);
    q.rsm_before = "";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 17, 3);
    assert_int_equal(p.first_index, 6);
    assert_false(p.complete);
    q.rsm_before = "m13";
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 11, 2);
    assert_true(p.complete);

    /* ids, with other filters; unknown ids match nothing */
    static const char *const ids[] = {"m02", "m07", "m03", "nope", "b00"};
    q = arch_q(50);
    q.ids = ids;
    q.n_ids = TERN_ARRAY_LEN(ids);
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.ids[0], "m02");
    assert_string_equal(g.ids[1], "m03");
    assert_string_equal(g.ids[2], "m07");
    q.with_bare = "carol@b.example";
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 2);
    q.n_ids = 0;
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    storage_sqlite_driver.close(db);
}

static void test_archive_unknown_ids(void **state)
{
    storage_db_t *db = arch_fill(*state);
    arch_got_t g;
    archive_page_t p;
    archive_query_t q = arch_q(10);
    q.rsm_after = "zz";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    q = arch_q(10);
    q.rsm_before = "zz";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    q = arch_q(10);
    q.after_id = "zz";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    q = arch_q(10);
    q.before_id = "zz";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    /* an id of someone else's archive is unknown in this one */
    q = arch_q(10);
    q.rsm_after = "b00";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    assert_int_equal(g.n, 0);
    storage_sqlite_driver.close(db);
}

static void test_archive_expire(void **state)
{
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = arch_fill(*state);
    arch_got_t g;
    archive_page_t p;
    int64_t n = -1;
    assert_int_equal(d->archive_expire(db, "a.example", "alice", 1010, &n), 0);
    assert_int_equal(n, 10);
    archive_query_t q = arch_q(50);
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 10, 15);
    /* an expired id is unknown now */
    q.rsm_after = "m03";
    arch_run(db, &q, &g, &p, TERN_ENOENT);
    /* host-wide: bob's messages at 1005 go, on his host only */
    assert_int_equal(d->archive_expire(db, "a.example", NULL, 1012, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(d->archive_expire(db, "b.example", NULL, 1006, NULL), 0);
    q = arch_q(50);
    arch_run(db, &q, &g, &p, 0);
    assert_ids(&g, 12, 13);
    memset(&g, 0, sizeof(g));
    assert_int_equal(d->archive_query(db, "b.example", "bob", &q, arch_collect, &g, &p), 0);
    assert_int_equal(g.n, 0);

    assert_int_equal(d->archive_delete_user(db, "a.example", "alice"), 0);
    assert_int_equal(d->archive_delete_user(db, "a.example", "alice"), 0);
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    assert_true(p.complete);
    d->close(db);
}

/* A version 1 database (before the archive) is upgraded on open. */
static void test_archive_migration(void **state)
{
    fixture_t *f = *state;
    storage_sqlite_driver.close(open_db(f));
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "DROP TABLE archive; DELETE FROM sqlite_sequence;"
                                  " PRAGMA user_version = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    assert_int_equal(raw_user_version(f->path), 1);
    storage_sqlite_driver.close(arch_fill(f));
    assert_int_equal(raw_user_version(f->path), 2);
}

/* ---- asynchronous queue ---- */

#define NJOBS 100

typedef struct {
    pthread_t loop_thread;
    pthread_t storage_thread;
    bool storage_thread_seen;
    bool wrong_thread;
    int ran[NJOBS * 2]; /* written by the storage thread, in run order */
    int nran;
    int done_order[NJOBS * 2];
    int ndone;
    storage_t *st;
    int chained; /* follow-up jobs still to submit from completions */
} queue_ctx_t;

typedef struct {
    queue_ctx_t *ctx;
    int idx;
    bool slow;
} job_arg_t;

static int job_record(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    job_arg_t *a = arg;
    queue_ctx_t *ctx = a->ctx;
    /* Fields read here are only written by the loop thread before submit,
     * and those written here are only read by it after the completion, so
     * the queue's locking orders all accesses. */
    /* No cmocka assertions here: a failure would longjmp off this thread. */
    if (pthread_equal(pthread_self(), ctx->loop_thread) ||
        (ctx->storage_thread_seen && !pthread_equal(pthread_self(), ctx->storage_thread)))
        ctx->wrong_thread = true;
    ctx->storage_thread = pthread_self();
    ctx->storage_thread_seen = true;
    if (a->slow)
        usleep(2000);

    char user[32];
    snprintf(user, sizeof(user), "u%03d", a->idx);
    scram_creds_t c;
    fake_creds(&c, (unsigned)a->idx);
    int rc = drv->user_create(db, "localhost", user, &c);
    ctx->ran[ctx->nran++] = a->idx;
    return rc == 0 ? a->idx : rc;
}

static void job_done(void *arg, int result)
{
    job_arg_t *a = arg;
    queue_ctx_t *ctx = a->ctx;
    assert_true(pthread_equal(pthread_self(), ctx->loop_thread));
    assert_false(ctx->wrong_thread);
    assert_int_equal(result, a->idx);
    ctx->done_order[ctx->ndone++] = a->idx;
}

static void test_queue_order(void **state)
{
    fixture_t *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    queue_ctx_t ctx = {.loop_thread = pthread_self()};
    char err[256] = "";
    storage_t *st = storage_start(&loop, &storage_sqlite_driver, f->path, err, sizeof(err));
    if (!st)
        fail_msg("storage_start: %s", err);

    job_arg_t *args = tern_xcalloc(NJOBS, sizeof(*args));
    for (int i = 0; i < NJOBS; i++) {
        args[i] = (job_arg_t){.ctx = &ctx, .idx = i};
        assert_int_equal(storage_submit(st, job_record, job_done, &args[i]), 0);
    }
    assert_int_equal(storage_submit(st, NULL, job_done, &args[0]), TERN_EINVAL);

    /* Outstanding jobs keep the loop alive, so a plain run delivers all. */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(ctx.ndone, NJOBS);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(ctx.ran[i], i);
        assert_int_equal(ctx.done_order[i], i);
    }

    storage_stop(st);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(args);

    storage_db_t *db = open_db(f);
    scram_creds_t got, want;
    assert_int_equal(storage_sqlite_driver.user_get(db, "localhost", "u042", &got), 0);
    fake_creds(&want, 42);
    assert_memory_equal(&got, &want, sizeof(got));
    storage_sqlite_driver.close(db);
}

static void chain_done(void *arg, int result);

static void chain_done(void *arg, int result)
{
    job_done(arg, result);
    job_arg_t *a = arg;
    queue_ctx_t *ctx = a->ctx;
    if (ctx->chained > 0) {
        ctx->chained--;
        /* The follow-up reuses the slot NJOBS above this job's. */
        job_arg_t *next = a + NJOBS;
        *next = (job_arg_t){.ctx = ctx, .idx = a->idx + NJOBS, .slow = true};
        assert_int_equal(storage_submit(ctx->st, job_record, job_done, next), 0);
    }
}

static void test_queue_stop_with_pending(void **state)
{
    fixture_t *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    queue_ctx_t ctx = {.loop_thread = pthread_self(), .chained = 1};
    char err[256] = "";
    ctx.st = storage_start(&loop, &storage_sqlite_driver, f->path, err, sizeof(err));
    if (!ctx.st)
        fail_msg("storage_start: %s", err);

    job_arg_t *args = tern_xcalloc(NJOBS * 2, sizeof(*args));
    const int n = 20;
    for (int i = 0; i < n; i++) {
        args[i] = (job_arg_t){.ctx = &ctx, .idx = i, .slow = true};
        assert_int_equal(
            storage_submit(ctx.st, job_record, i == n - 1 ? chain_done : job_done, &args[i]), 0);
    }
    /* Stop without ever running the loop: every completion, including the
     * one submitted by a completion during the stop, runs inside stop. */
    storage_stop(ctx.st);
    assert_int_equal(ctx.ndone, n + 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(ctx.done_order[i], i);
    assert_int_equal(ctx.done_order[n], n - 1 + NJOBS);

    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(args);
}

static void stop_from_done(void *arg, int result)
{
    job_arg_t *a = arg;
    queue_ctx_t *ctx = a->ctx;
    job_done(arg, result);
    if (a->idx == 0) {
        storage_stop(ctx->st);
        /* The jobs still queued were delivered by the stop itself. */
        assert_int_equal(ctx->ndone, 3);
    }
}

static void test_queue_stop_from_callback(void **state)
{
    fixture_t *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    queue_ctx_t ctx = {.loop_thread = pthread_self()};
    char err[256] = "";
    ctx.st = storage_start(&loop, &storage_sqlite_driver, f->path, err, sizeof(err));
    if (!ctx.st)
        fail_msg("storage_start: %s", err);
    job_arg_t args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (job_arg_t){.ctx = &ctx, .idx = i, .slow = i > 0};
        assert_int_equal(storage_submit(ctx.st, job_record, stop_from_done, &args[i]), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(ctx.ndone, 3);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_queue_start_failure(void **state)
{
    fixture_t *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[256] = "";
    char path[192];
    snprintf(path, sizeof(path), "%s/missing/tern.db", f->dir);
    assert_null(storage_start(&loop, &storage_sqlite_driver, path, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));
    /* No handle may be left behind on failure. */
    assert_int_equal(uv_loop_close(&loop), 0);

    assert_ptr_equal(storage_driver_find("sqlite"), &storage_sqlite_driver);
    assert_null(storage_driver_find("nosuch"));
    assert_null(storage_driver_find(NULL));
}

/* Deleting an account deletes its archive, and only its archive. */
static void test_archive_gone_with_account(void **state)
{
    const fixture_t *f = *state;
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = arch_fill(f);
    scram_creds_t c;
    memset(&c, 0x11, sizeof(c));
    c.iterations = 4096;
    assert_int_equal(d->user_create(db, "a.example", "alice", &c), 0);
    assert_int_equal(d->user_delete(db, "a.example", "alice"), 0);
    arch_got_t g;
    archive_page_t p;
    archive_query_t q = arch_q(10);
    arch_run(db, &q, &g, &p, 0);
    assert_int_equal(g.n, 0);
    memset(&g, 0, sizeof(g));
    assert_int_equal(d->archive_query(db, "b.example", "bob", &q, arch_collect, &g, &p), 0);
    assert_int_equal(g.n, 2);
    d->close(db);
}

static int list_keys(void *ud, const char *key, const char *value, size_t len)
{
    char *out = ud;
    strcat(out, key);
    strcat(out, "=");
    strncat(out, value, len);
    strcat(out, ";");
    return 0;
}

/* A store's keys: listed in key order, counted without being read, and
 * deleted together, without touching other stores or accounts. */
static void test_kv_store_ops(void **state)
{
    const fixture_t *f = *state;
    const storage_driver_t *d = &storage_sqlite_driver;
    storage_db_t *db = open_db(f);
    assert_int_equal(d->kv_put(db, "a.example", "alice", "offline", "002", "b", 1), 0);
    assert_int_equal(d->kv_put(db, "a.example", "alice", "offline", "001", "a", 1), 0);
    assert_int_equal(d->kv_put(db, "a.example", "alice", "roster", "x", "r", 1), 0);
    assert_int_equal(d->kv_put(db, "a.example", "bob", "offline", "001", "c", 1), 0);
    size_t n = 99;
    assert_int_equal(d->kv_count(db, "a.example", "alice", "offline", &n), 0);
    assert_int_equal(n, 2);
    char seen[128] = "";
    assert_int_equal(d->kv_list(db, "a.example", "alice", "offline", list_keys, seen), 0);
    assert_string_equal(seen, "001=a;002=b;");
    assert_int_equal(d->kv_del_store(db, "a.example", "alice", "offline"), 0);
    assert_int_equal(d->kv_count(db, "a.example", "alice", "offline", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(d->kv_count(db, "a.example", "alice", "roster", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(d->kv_count(db, "a.example", "bob", "offline", &n), 0);
    assert_int_equal(n, 1);
    /* an account that does not exist */
    assert_int_equal(storage_user_exists(d, db, "a.example", "nobody"), TERN_ENOENT);
    d->close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_unknown_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_gone_with_account, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_store_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_stop_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_stop_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_start_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
