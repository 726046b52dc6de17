/* SPDX-License-Identifier: MIT
 * mam.c - XEP-0313 message archive management (urn:xmpp:mam:2 and
 * urn:xmpp:mam:2#extended), XEP-0441 archiving preferences and XEP-0359
 * stanza ids.
 *
 * Every account has one archive (the storage driver's archive_* calls).
 * A message a local account receives is archived in its archive when it
 * reaches the account's worker (INBOUND hook) and gets a <stanza-id
 * by=account/> naming its archive id before delivery; a message a local
 * session sends is archived in the sender's archive (OUTBOUND hook). A
 * message between two local accounts is thus in both archives, under two
 * different ids.
 *
 * Durability versus latency: the message is delivered right away and its
 * archive write is queued for the storage thread (in batches, see
 * batch_t; bounded, see MAX_BACKLOG). The storage queue of a worker is
 * FIFO and every archive read or write of an account runs on the worker
 * that owns the account, so a query (or a preferences change) that
 * follows a message always sees it; only a crash between delivery and the
 * write can lose an archive entry, never reorder one. Waiting for the
 * write before delivering would put a storage round trip on every
 * message's path.
 *
 * Preferences are evaluated inside the storage job, after every earlier
 * preferences change of the account; a copy of them for online accounts
 * (cached_prefs_t) keeps the stanza-id off messages that will not be
 * kept. Only where that copy cannot tell (account offline or its
 * preferences still loading, or the 'roster' default) may a delivered
 * message carry an id that the archive then does not have.
 *
 * MUC rooms (mam.h) have archives too, written and read by the same code
 * for the MUC service: rows with host = the service domain and user = the
 * room's local part, 'with' = the occupant JID (room@service/nick). The
 * room gives the stanza-id; no preferences apply; queries come as
 * stanzas to the room (a tern_iq_t without session is made for them, so
 * every reply is routed). The occupant's real JID is stored inside the
 * archived copy as <sender xmlns=NS_ROOM_SENDER jid=.../>, which is
 * removed from whatever is read back.
 *
 * Storage: the archive table (storage.h); preferences in kv store
 * "mam_prefs", key "", value the normalised <prefs/> element.
 */
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "mam.h"
#include "roster.h"
#include "tern/module.h"

#define TAG         "mam"
#define PREFS_STORE "mam_prefs"
#define PREFS_KEY   ""
/* XEP-0122 data form validation, to mark 'ids' as a list of strings. */
#define NS_XDATA_VALIDATE "http://jabber.org/protocol/xdata-validate"
/* Private: the real JID of a room message's sender, in the stored copy. */
#define NS_ROOM_SENDER "urn:x-tern:mam:room-sender"
/* Room stanza-ids come from the MUC module; bounded as a key. */
#define MAX_ROOM_ID 255
/* Most messages mam_room_recent reads at once. */
#define MAX_ROOM_RECENT 1000

/* A page size for clients that give no <max/>: enough for a screen of
 * history, small enough that a client paging through a large archive does
 * not stall its own stream (capped by mam_max_page). */
#define DEFAULT_PAGE 50
/* At archive time, old messages of an account are expired at most this
 * often (per worker), so retention costs one indexed DELETE per account
 * per hour rather than one per message. Queries expire first as well, so
 * nothing older than the retention is ever returned. */
#define EXPIRE_INTERVAL_S 3600
#define EXPIRY_TABLE_MAX  10000
/* Archive writes wait in memory until the storage thread has them on
 * disk. A sender faster than the disk (a flood of large messages) would
 * make that queue grow without bound, so past this many bytes queued per
 * worker and host new messages are refused with resource-constraint, as a
 * recipient that does not read is: a message is delivered and archived,
 * or bounced, never delivered without its archive entry. Half a megabyte
 * is about a thousand ordinary messages, one batch that the storage
 * thread commits in tens of milliseconds, so only a flood meets it. */
#define MAX_BACKLOG (512u << 10)
/* An archived stanza larger than this is corrupt (stanzas are bounded by
 * max_stanza_size well below it). */
#define MAX_STORED 1048576

typedef struct arch_job arch_job_t;

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    /* Archive writes not yet handed to the storage thread, oldest first
     * (owned), and the number of batches of them on their way. */
    arch_job_t *pending, **pending_tail;
    unsigned batches;
    /* localpart -> expiry_t: when the account's archive was last expired
     * at archive time. One entry per account that received or sent a
     * message on this worker; keys point into the entries. */
    hashmap_t expired;
    /* Bytes of archive writes queued on the storage thread and not done
     * yet (see MAX_BACKLOG). */
    size_t backlog;
    /* localpart -> cached_prefs_t, for the accounts with a session on
     * this worker (see prefs_verdict); keys point into the entries. */
    hashmap_t prefs;
    /* A room message was refused for the backlog and not logged since. */
    bool room_busy_logged;
} mam_t;

typedef struct {
    char *user;
    bool loaded;
    xml_stanza_t *prefs; /* the stored <prefs/>; NULL: none (always) */
} cached_prefs_t;

typedef struct {
    char *user;
    time_t at;
} expiry_t;

/* ---- time ---- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* XEP-0082 DateTime with microseconds. */
static void format_stamp(int64_t us, char *out, size_t n)
{
    time_t secs = (time_t)(us / 1000000);
    int frac = (int)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%06dZ", base, frac);
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses a XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss]TZD) into
 * microseconds since the epoch. */
static bool parse_stamp(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec;
    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        int64_t scale = 100000;
        while (*p >= '0' && *p <= '9') {
            if (nd < 6) {
                frac += (*p - '0') * scale;
                scale /= 10;
            }
            nd++;
            p++;
        }
        if (nd == 0)
            return false;
    }
    int64_t offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out = ((int64_t)t - offset) * 1000000 + frac;
    return true;
}

/* Unique and not guessable, yet in time order: 48 bits of the current
 * millisecond, then 48 random bits, in an alphabet that sorts like the
 * values (ASCII order). The time prefix makes consecutive archive rows
 * land next to each other in the id index instead of on a random page
 * each, which is most of the write cost of archiving; the random half
 * keeps ids unpredictable. */
static int new_id(char out[17])
{
    static const char alphabet[] =
        "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    unsigned char raw[6];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return TERN_EIO;
    uint64_t ms = (uint64_t)(now_us() / 1000) & ((UINT64_C(1) << 48) - 1);
    for (int k = 0; k < 8; k++)
        out[k] = alphabet[(ms >> (42 - 6 * k)) & 63];
    uint64_t r = 0;
    for (int i = 0; i < 6; i++)
        r = r << 8 | raw[i];
    for (int k = 0; k < 8; k++)
        out[8 + k] = alphabet[(r >> (42 - 6 * k)) & 63];
    out[16] = '\0';
    return 0;
}

/* ---- preferences (XEP-0441) ---- */

typedef enum { PREF_ALWAYS, PREF_NEVER, PREF_ROSTER } pref_default_t;

static bool parse_default(const char *s, pref_default_t *out)
{
    if (!s)
        return false;
    if (strcmp(s, "always") == 0)
        *out = PREF_ALWAYS;
    else if (strcmp(s, "never") == 0)
        *out = PREF_NEVER;
    else if (strcmp(s, "roster") == 0)
        *out = PREF_ROSTER;
    else
        return false;
    return true;
}

/* A list entry with a resource matches that full JID only; a bare one
 * matches every resource of it. */
static bool list_has(const xml_node_t *list, const char *bare, const char *full)
{
    for (xml_node_t *j = list ? xml_node_child(list, "jid", NS_MAM) : NULL; j;
         j = xml_node_next(j, "jid", NS_MAM)) {
        const char *v = xml_node_text(j);
        if (strcmp(v, bare) == 0 || (full && strcmp(v, full) == 0))
            return true;
    }
    return false;
}

typedef enum { VERDICT_UNKNOWN, VERDICT_YES, VERDICT_NO } verdict_t;

/* What stored preferences say about a message with 'with'; UNKNOWN when
 * it depends on the roster. */
static verdict_t prefs_decide(const xml_node_t *prefs, const char *with_bare, const char *with_full)
{
    pref_default_t def = PREF_ALWAYS;
    parse_default(xml_node_attr(prefs, "default"), &def);
    if (list_has(xml_node_child(prefs, "never", NS_MAM), with_bare, with_full))
        return VERDICT_NO;
    if (list_has(xml_node_child(prefs, "always", NS_MAM), with_bare, with_full))
        return VERDICT_YES;
    if (def == PREF_NEVER)
        return VERDICT_NO;
    return def == PREF_ROSTER ? VERDICT_UNKNOWN : VERDICT_YES;
}

/* Whether a message with 'with' goes into user's archive. Storage
 * thread. No preferences stored means 'always': users who never touched
 * them expect their history to be kept, which is what clients assume. */
static int prefs_allow(const storage_driver_t *drv, storage_db_t *db, const char *host,
                       const char *user, const char *with_bare, const char *with_full, bool *allow)
{
    char *v = NULL;
    size_t len = 0;
    *allow = true;
    int rc = drv->kv_get(db, host, user, PREFS_STORE, PREFS_KEY, &v, &len);
    if (rc == TERN_ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    xml_stanza_t *p = xml_parse_element(v, len, NS_MAM, len + 1);
    free(v);
    if (!p) {
        log_error(TAG, "%s@%s: unreadable archiving preferences ignored", user, host);
        return 0;
    }
    verdict_t verdict = prefs_decide(xml_stanza_root(p), with_bare, with_full);
    *allow = verdict != VERDICT_NO;
    if (verdict == VERDICT_UNKNOWN) {
        /* Any subscription counts as "in the roster"; a contact listed
         * with subscription none is not told apart from a stranger by
         * roster.h, so it is not archived. */
        int bits = roster_storage_subscription(drv, db, host, user, with_bare);
        if (bits < 0) {
            xml_stanza_unref(p);
            return bits;
        }
        *allow = bits != 0;
    }
    xml_stanza_unref(p);
    return 0;
}

/* ---- preferences of online accounts ----
 * The storage job decides with the stored preferences, but the stanza-id
 * is added before it runs. So that a message the account does not want
 * kept is not delivered with an id that names nothing, the preferences of
 * accounts with a session on this worker are kept here: loaded when a
 * session binds, replaced when the account sets them (the set is queued
 * before any later write, so the job and this copy agree). Without a copy
 * (offline account, load still running) or when the roster decides, the
 * id is added and the job has the last word. */

static void cached_free(cached_prefs_t *c)
{
    if (c->prefs)
        xml_stanza_unref(c->prefs);
    free(c->user);
    free(c);
}

/* Records xml (NULL: no preferences) as user's preferences, if the
 * account is cached. */
static void prefs_cache_set(mam_t *m, const char *user, const char *xml, size_t len)
{
    cached_prefs_t *c = hashmap_get(&m->prefs, user);
    if (!c)
        return;
    if (c->prefs)
        xml_stanza_unref(c->prefs);
    c->prefs = xml ? xml_parse_element(xml, len, NS_MAM, len + 1) : NULL;
    c->loaded = !xml || c->prefs; /* unreadable: leave it to the job */
}

static void prefs_cache_drop(mam_t *m, const char *user)
{
    cached_prefs_t *c = hashmap_del(&m->prefs, user);
    if (c)
        cached_free(c);
}

static verdict_t prefs_verdict(mam_t *m, const char *user, const jid_t *with)
{
    cached_prefs_t *c = hashmap_get(&m->prefs, user);
    if (!c || !c->loaded)
        return VERDICT_UNKNOWN;
    if (!c->prefs)
        return VERDICT_YES;
    char *bare = jid_bare_string(with);
    char *full = with->resource ? jid_to_string(with) : NULL;
    verdict_t v = bare ? prefs_decide(xml_stanza_root(c->prefs), bare, full) : VERDICT_UNKNOWN;
    free(bare);
    free(full);
    return v;
}

typedef struct {
    mam_t *m;
    char *host, *user, *xml;
    size_t len;
} prefs_load_t;

static void prefs_load_free(prefs_load_t *l)
{
    free(l->host);
    free(l->user);
    free(l->xml);
    free(l);
}

static int prefs_load_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    prefs_load_t *l = arg;
    int rc = drv->kv_get(db, l->host, l->user, PREFS_STORE, PREFS_KEY, &l->xml, &l->len);
    return rc == TERN_ENOENT ? 0 : rc;
}

static void prefs_load_done(void *arg, int result)
{
    prefs_load_t *l = arg;
    /* The account may have gone offline (entry dropped) or set new
     * preferences (already loaded) meanwhile. */
    cached_prefs_t *c = hashmap_get(&l->m->prefs, l->user);
    if (result == 0 && c && !c->loaded)
        prefs_cache_set(l->m, l->user, l->xml, l->len);
    prefs_load_free(l);
}

static void on_bound(void *state, tern_session_t *s)
{
    mam_t *m = state;
    const jid_t *j = tern_session_jid(s);
    if (!j || !j->local || hashmap_get(&m->prefs, j->local))
        return;
    cached_prefs_t *c = tern_xcalloc(1, sizeof(*c));
    c->user = tern_xstrdup(j->local);
    hashmap_put(&m->prefs, c->user, c);
    prefs_load_t *l = tern_xcalloc(1, sizeof(*l));
    l->m = m;
    l->host = tern_xstrdup(j->domain);
    l->user = tern_xstrdup(j->local);
    if (tern_storage_submit(m->srv, prefs_load_run, prefs_load_done, l) != 0)
        prefs_load_free(l);
}

static void on_closed(void *state, tern_session_t *s)
{
    mam_t *m = state;
    const jid_t *j = tern_session_jid(s);
    if (!j || !j->local)
        return;
    char *bare = jid_bare_string(j);
    if (bare && !tern_user_sessions(m->host, bare))
        prefs_cache_drop(m, j->local);
    free(bare);
}

/* ---- archiving ---- */

struct arch_job {
    arch_job_t *next;
    int result;
    size_t cost;       /* counted in m->backlog */
    char *host, *user; /* the archive's account, or room */
    char *id;
    int64_t ts;
    char *with_bare, *with_full, *with_resource;
    bool outgoing;
    bool check_account; /* nobody online: the account may not exist */
    bool room;          /* a room's archive: no preferences */
    int64_t expire_before;
    char *xml;
    size_t len;
};

/* Writes go to the storage thread in batches, one transaction each: while
 * one batch is being written, new messages gather for the next, so under
 * load the per-commit cost is shared by many rows (and nothing waits when
 * the storage thread is idle). The order of the storage queue is kept:
 * every request job (query, preferences) first sends what is pending. */
typedef struct {
    mam_t *m;
    arch_job_t *head; /* owned */
} batch_t;

static void arch_free(arch_job_t *j)
{
    free(j->host);
    free(j->user);
    free(j->id);
    free(j->with_bare);
    free(j->with_full);
    free(j->with_resource);
    free(j->xml);
    free(j);
}

static int arch_run(const storage_driver_t *drv, storage_db_t *db, arch_job_t *j)
{
    if (j->check_account) {
        int rc = storage_user_exists(drv, db, j->host, j->user);
        if (rc == TERN_ENOENT)
            return 0; /* the router answers the sender */
        if (rc != 0)
            return rc;
    }
    bool allow = true;
    int rc =
        j->room ? 0 : prefs_allow(drv, db, j->host, j->user, j->with_bare, j->with_full, &allow);
    if (rc != 0 || !allow)
        return rc;
    if (j->expire_before) {
        rc = drv->archive_expire(db, j->host, j->user, j->expire_before, NULL);
        if (rc != 0)
            return rc;
    }
    archive_msg_t m = {.id = j->id,
                       .ts = j->ts,
                       .with_bare = j->with_bare,
                       .with_resource = j->with_resource,
                       .outgoing = j->outgoing,
                       .stanza = j->xml,
                       .len = j->len};
    return drv->archive_append(db, j->host, j->user, &m);
}

/* One failed row (a corrupt preference, an id collision) does not undo
 * the others; a failed commit fails them all. */
static int batch_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    batch_t *b = arg;
    bool txn = b->head->next && drv->begin(db) == 0;
    for (arch_job_t *j = b->head; j; j = j->next)
        j->result = arch_run(drv, db, j);
    if (txn && drv->commit(db) != 0) {
        drv->rollback(db);
        for (arch_job_t *j = b->head; j; j = j->next)
            j->result = j->result ? j->result : TERN_EIO;
    }
    return 0;
}

static void batch_free(mam_t *m, arch_job_t *head)
{
    for (arch_job_t *j = head, *n; j; j = n) {
        n = j->next;
        if (j->result != 0)
            log_error(TAG, "%s@%s: message %s not archived (%d)", j->user, j->host, j->id,
                      j->result);
        m->backlog -= j->cost;
        arch_free(j);
    }
    if (m->backlog < MAX_BACKLOG / 2)
        m->room_busy_logged = false;
}

static void flush(mam_t *m);

static void batch_done(void *arg, int result)
{
    batch_t *b = arg;
    mam_t *m = b->m;
    batch_free(m, b->head);
    free(b);
    m->batches--;
    if (m->batches == 0)
        flush(m);
}

/* Hands the pending writes to the storage thread as one batch. */
static void flush(mam_t *m)
{
    if (!m->pending)
        return;
    batch_t *b = tern_xcalloc(1, sizeof(*b));
    b->m = m;
    b->head = m->pending;
    m->pending = NULL;
    m->pending_tail = &m->pending;
    if (tern_storage_submit(m->srv, batch_run, batch_done, b) != 0) {
        for (arch_job_t *j = b->head; j; j = j->next)
            j->result = TERN_EIO;
        batch_free(m, b->head);
        free(b);
        return;
    }
    m->batches++;
}

static void expiry_forget(mam_t *m)
{
    const char *k;
    void *v;
    for (size_t i = 0; hashmap_next(&m->expired, &i, &k, &v);) {
        expiry_t *e = v;
        free(e->user);
        free(e);
    }
    hashmap_free(&m->expired);
    hashmap_init(&m->expired);
}

/* The retention cut-off to apply with this write, or 0 when the account's
 * archive was expired recently enough. */
static int64_t expiry_due(mam_t *m, const char *user)
{
    unsigned retention = tern_host_config(m->host)->mam_retention;
    if (retention == 0)
        return 0;
    time_t now = time(NULL);
    expiry_t *e = hashmap_get(&m->expired, user);
    if (e && now - e->at < EXPIRE_INTERVAL_S)
        return 0;
    if (!e) {
        /* Messages to non-existent accounts also land here (the account
         * check is on the storage thread), so the table is bounded by
         * forgetting it all: the price is one early DELETE per account. */
        if (hashmap_count(&m->expired) >= EXPIRY_TABLE_MAX)
            expiry_forget(m);
        e = tern_xcalloc(1, sizeof(*e));
        e->user = tern_xstrdup(user);
        hashmap_put(&m->expired, e->user, e);
    }
    e->at = now;
    return now_us() - (int64_t)retention * 1000000;
}

/* XEP-0313 §5.1.1 with XEP-0334 hints: chat and normal messages with a
 * body, or anything the sender marked <store/>; never errors, headlines
 * or groupchat (MUC archives are the room's), nor what is marked
 * no-store / no-permanent-store. A room's archive takes groupchat
 * messages only, by the same rules. */
static bool worth_archiving(const xml_node_t *root, bool room)
{
    const char *type = xml_node_attr(root, "type");
    if (room ? !type || strcmp(type, "groupchat") != 0
             : type && strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0)
        return false;
    bool body = false, store = false;
    for (const xml_node_t *c = xml_node_first_element(root); c; c = xml_node_next(c, NULL, NULL)) {
        if (strcmp(c->ns, NS_HINTS) == 0) {
            if (strcmp(c->name, "no-store") == 0 || strcmp(c->name, "no-permanent-store") == 0)
                return false;
            if (strcmp(c->name, "store") == 0)
                store = true;
        } else if (strcmp(c->name, "body") == 0 && strcmp(c->ns, NS_CLIENT) == 0) {
            body = true;
        }
    }
    return body || store;
}

/* XEP-0359 §5: a stanza-id claiming to come from the account's own
 * archive can only be a forgery when the message arrives from outside. */
static void strip_stanza_ids(xml_node_t *root, const char *bare)
{
    for (xml_node_t *c = xml_node_child(root, "stanza-id", NS_STANZA_ID), *n; c; c = n) {
        n = xml_node_next(c, "stanza-id", NS_STANZA_ID);
        const char *by = xml_node_attr(c, "by");
        if (by && strcmp(by, bare) == 0)
            xml_node_detach(c);
    }
}

#define ARCH_OUTGOING      1u /* sent by the account (else received) */
#define ARCH_CHECK_ACCOUNT 2u /* the account may not exist */
#define ARCH_ROOM          4u /* (local, domain) is a room */

/* A room's entry in m->expired: apart from the accounts', as a local
 * part has no '@'. */
static char *room_key(const char *local, const char *domain)
{
    size_t n = strlen(local) + strlen(domain) + 2;
    char *key = tern_xmalloc(n);
    snprintf(key, n, "%s@%s", local, domain);
    return key;
}

/* Removes what only the archive may say about a room message (the
 * sender's real JID) from a copy of it. */
static void strip_room_private(xml_node_t *root)
{
    for (xml_node_t *c = xml_node_child(root, NULL, NS_ROOM_SENDER), *n; c; c = n) {
        n = xml_node_next(c, NULL, NS_ROOM_SENDER);
        xml_node_detach(c);
    }
}

/* Queues the write of root into (local, domain)'s archive with 'with'. */
static void archive(mam_t *m, const char *local, const char *domain, const jid_t *with,
                    const xml_node_t *root, const char *id, unsigned flags)
{
    arch_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->host = tern_xstrdup(domain);
    j->user = tern_xstrdup(local);
    j->id = tern_xstrdup(id);
    j->ts = now_us();
    j->outgoing = flags & ARCH_OUTGOING;
    j->check_account = flags & ARCH_CHECK_ACCOUNT;
    j->room = flags & ARCH_ROOM;
    j->with_bare = jid_bare_string(with);
    j->with_full = with->resource ? jid_to_string(with) : NULL;
    j->with_resource = with->resource ? tern_xstrdup(with->resource) : NULL;
    if (j->room) {
        char *key = room_key(local, domain);
        j->expire_before = expiry_due(m, key);
        free(key);
    } else {
        j->expire_before = expiry_due(m, local);
    }
    j->xml = xml_node_to_string(root, NS_CLIENT, &j->len);
    j->cost = sizeof(*j) + j->len;
    if (!j->with_bare || !j->xml) {
        log_error(TAG, "%s@%s: message %s not archived (out of memory)", local, domain, id);
        arch_free(j);
        return;
    }
    m->backlog += j->cost;
    *m->pending_tail = j;
    m->pending_tail = &j->next;
    if (m->batches == 0)
        flush(m);
}

/* True (and the message bounced) when the archive queue is full. The
 * error leaves the payload out, as the router's congestion bounce does:
 * echoing a flood back at its sender would only double it. */
static bool refuse_busy(mam_t *m, const xml_stanza_t *st)
{
    if (m->backlog < MAX_BACKLOG)
        return false;
    tern_bounce_bare(m->srv, st, "wait", "resource-constraint", "the message archive is busy");
    return true;
}

static tern_handled_t on_inbound(void *state, tern_stanza_ev_t *ev)
{
    mam_t *m = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "message") != 0 || !ev->to || !ev->to->local)
        return TERN_PASS;
    char *bare = jid_bare_string(ev->to);
    if (!bare)
        return TERN_PASS;
    jid_t server = {0};
    const jid_t *with = ev->from;
    if (!with && jid_from_parts(NULL, ev->to->domain, NULL, &server) == 0)
        with = &server;
    bool worth =
        with && worth_archiving(root, false) && prefs_verdict(m, ev->to->local, with) != VERDICT_NO;
    tern_handled_t ret = TERN_PASS;
    char id[17];
    if (worth && refuse_busy(m, ev->stanza)) {
        ret = TERN_HANDLED;
    } else {
        strip_stanza_ids(root, bare);
        if (worth && new_id(id) == 0) {
            xml_node_t *sid = xml_node_add_child(root, "stanza-id", NS_STANZA_ID);
            xml_node_set_attr(sid, "by", bare);
            xml_node_set_attr(sid, "id", id);
            archive(m, ev->to->local, ev->to->domain, with, root, id,
                    tern_user_sessions(m->host, bare) ? 0 : ARCH_CHECK_ACCOUNT);
        }
    }
    jid_clear(&server);
    free(bare);
    return ret;
}

static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    mam_t *m = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    /* Without a 'to', or to the account itself, the message comes back
     * through INBOUND and is archived there, once. */
    if (strcmp(root->name, "message") != 0 || !ev->to || !ev->from || !ev->from->local ||
        jid_bare_equal(ev->to, ev->from) || !worth_archiving(root, false) ||
        prefs_verdict(m, ev->from->local, ev->to) == VERDICT_NO)
        return TERN_PASS;
    if (refuse_busy(m, ev->stanza))
        return TERN_HANDLED;
    char id[17];
    if (new_id(id) == 0)
        archive(m, ev->from->local, ev->from->domain, ev->to, root, id, ARCH_OUTGOING);
    return TERN_PASS;
}

/* ---- iq requests ---- */

typedef enum { OP_QUERY, OP_PREFS_GET, OP_PREFS_SET, OP_METADATA } op_t;

typedef struct {
    char *id;
    int64_t ts;
} edge_t;

typedef struct {
    mam_t *m;
    op_t op;
    tern_iq_saved_t *iq;
    bool room;                            /* a room's archive (mam_room_iq) */
    char *host, *user, *bare, *requester; /* the archive's owner and the asker */
    char *queryid;
    /* query */
    archive_query_t q;
    char *with_bare, *with_resource, *after_id, *before_id, *rsm_after, *rsm_before;
    char **ids;
    int64_t expire_before;
    xml_stanza_t **results; /* built on the storage thread, sent on the loop */
    size_t n, cap;
    char *first, *last;
    archive_page_t page;
    /* preferences */
    char *prefs; /* XML to store (set) or stored (get) */
    size_t prefs_len;
    /* metadata */
    edge_t start, end;
    bool empty;
} req_t;

static void req_free(req_t *r)
{
    tern_iq_saved_free(r->iq);
    free(r->host);
    free(r->user);
    free(r->bare);
    free(r->requester);
    free(r->queryid);
    free(r->with_bare);
    free(r->with_resource);
    free(r->after_id);
    free(r->before_id);
    free(r->rsm_after);
    free(r->rsm_before);
    for (size_t i = 0; r->ids && i < r->q.n_ids; i++)
        free(r->ids[i]);
    free(r->ids);
    for (size_t i = 0; i < r->n; i++)
        xml_stanza_unref(r->results[i]);
    free(r->results);
    free(r->first);
    free(r->last);
    free(r->prefs);
    free(r->start.id);
    free(r->end.id);
    free(r);
}

/* Storage thread: wraps one archived message as a result (§4.2). */
static int collect_result(void *ud, const archive_msg_t *msg)
{
    req_t *r = ud;
    xml_stanza_t *orig = xml_parse_element(msg->stanza, msg->len, NS_CLIENT, MAX_STORED);
    if (!orig) {
        log_error(TAG, "%s: unreadable archived message %s skipped", r->bare, msg->id);
        return 0;
    }
    xml_stanza_t *out = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(out);
    xml_node_set_attr(root, "from", r->bare);
    xml_node_set_attr(root, "to", r->requester);
    xml_node_t *res = xml_node_add_child(root, "result", NS_MAM);
    if (r->queryid)
        xml_node_set_attr(res, "queryid", r->queryid);
    xml_node_set_attr(res, "id", msg->id);
    xml_node_t *fwd = xml_node_add_child(res, "forwarded", NS_FORWARD);
    char stamp[40];
    format_stamp(msg->ts, stamp, sizeof(stamp));
    xml_node_set_attr(xml_node_add_child(fwd, "delay", NS_DELAY), "stamp", stamp);
    if (r->room)
        strip_room_private(xml_stanza_root(orig));
    xml_node_append_copy(fwd, xml_stanza_root(orig));
    xml_stanza_unref(orig);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->results = tern_xrealloc(r->results, r->cap * sizeof(*r->results));
    }
    r->results[r->n++] = out;
    if (!r->first)
        r->first = tern_xstrdup(msg->id);
    free(r->last);
    r->last = tern_xstrdup(msg->id);
    return 0;
}

static int edge_collect(void *ud, const archive_msg_t *msg)
{
    edge_t *e = ud;
    free(e->id);
    e->id = tern_xstrdup(msg->id);
    e->ts = msg->ts;
    return 0;
}

static int req_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    req_t *r = arg;
    int rc;
    switch (r->op) {
    case OP_QUERY:
        if (r->expire_before &&
            (rc = drv->archive_expire(db, r->host, r->user, r->expire_before, NULL)) != 0)
            return rc;
        return drv->archive_query(db, r->host, r->user, &r->q, collect_result, r, &r->page);
    case OP_PREFS_GET:
        rc = drv->kv_get(db, r->host, r->user, PREFS_STORE, PREFS_KEY, &r->prefs, &r->prefs_len);
        return rc == TERN_ENOENT ? 0 : rc;
    case OP_PREFS_SET:
        return drv->kv_put(db, r->host, r->user, PREFS_STORE, PREFS_KEY, r->prefs, r->prefs_len);
    case OP_METADATA: {
        if (r->expire_before &&
            (rc = drv->archive_expire(db, r->host, r->user, r->expire_before, NULL)) != 0)
            return rc;
        archive_query_t q = {.start = ARCHIVE_TS_MIN, .end = ARCHIVE_TS_MAX, .max = 1};
        archive_page_t page;
        rc = drv->archive_query(db, r->host, r->user, &q, edge_collect, &r->start, &page);
        if (rc == 0) {
            q.rsm_before = "";
            rc = drv->archive_query(db, r->host, r->user, &q, edge_collect, &r->end, &page);
        }
        return rc;
    }
    }
    return TERN_EINVAL;
}

static xml_stanza_t *prefs_reply(const char *stored, size_t len)
{
    xml_stanza_t *reply = xml_stanza_new("iq", NS_CLIENT);
    xml_stanza_t *p = stored ? xml_parse_element(stored, len, NS_MAM, len + 1) : NULL;
    if (p) {
        xml_node_append_copy(xml_stanza_root(reply), xml_stanza_root(p));
        xml_stanza_unref(p);
    } else {
        xml_node_t *n = xml_node_add_child(xml_stanza_root(reply), "prefs", NS_MAM);
        xml_node_set_attr(n, "default", "always");
        xml_node_add_child(n, "always", NS_MAM);
        xml_node_add_child(n, "never", NS_MAM);
    }
    return reply;
}

static void send_result(req_t *r, xml_stanza_t *st)
{
    tern_session_t *s = tern_iq_saved_session(r->iq);
    if (s)
        tern_session_send(s, st);
    else
        tern_route(r->m->srv, st);
}

static void query_finish(req_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        send_result(r, r->results[i]);
    xml_stanza_t *reply = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *fin = xml_node_add_child(xml_stanza_root(reply), "fin", NS_MAM);
    if (r->page.complete)
        xml_node_set_attr(fin, "complete", "true");
    xml_node_t *set = xml_node_add_child(fin, "set", NS_RSM);
    if (r->first) {
        xml_node_t *first = xml_node_add_child_text(set, "first", NS_RSM, r->first);
        if (r->page.first_index >= 0) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%" PRId64, r->page.first_index);
            xml_node_set_attr(first, "index", idx);
        }
        xml_node_add_child_text(set, "last", NS_RSM, r->last);
    }
    if (r->page.count >= 0) {
        char count[24];
        snprintf(count, sizeof(count), "%" PRId64, r->page.count);
        xml_node_add_child_text(set, "count", NS_RSM, count);
    }
    tern_iq_saved_reply(r->iq, reply);
    xml_stanza_unref(reply);
}

static void add_edge(xml_node_t *meta, const char *name, const edge_t *e)
{
    char stamp[40];
    format_stamp(e->ts, stamp, sizeof(stamp));
    xml_node_t *n = xml_node_add_child(meta, name, NS_MAM);
    xml_node_set_attr(n, "id", e->id);
    xml_node_set_attr(n, "timestamp", stamp);
}

static void req_done(void *arg, int result)
{
    req_t *r = arg;
    if (result == TERN_ENOENT) {
        tern_iq_saved_error(r->iq, "cancel", "item-not-found", NULL);
    } else if (result != 0) {
        log_error(TAG, "%s: archive request failed (%d)", r->bare, result);
        if (r->op == OP_PREFS_SET)
            prefs_cache_drop(r->m, r->user); /* unsure now: the jobs decide */
        tern_iq_saved_error(r->iq, "wait", "internal-server-error", NULL);
    } else if (r->op == OP_QUERY) {
        query_finish(r);
    } else if (r->op == OP_METADATA) {
        xml_stanza_t *reply = xml_stanza_new("iq", NS_CLIENT);
        xml_node_t *meta = xml_node_add_child(xml_stanza_root(reply), "metadata", NS_MAM);
        if (r->start.id && r->end.id) {
            add_edge(meta, "start", &r->start);
            add_edge(meta, "end", &r->end);
        }
        tern_iq_saved_reply(r->iq, reply);
        xml_stanza_unref(reply);
    } else {
        xml_stanza_t *reply = prefs_reply(r->prefs, r->prefs_len);
        tern_iq_saved_reply(r->iq, reply);
        xml_stanza_unref(reply);
    }
    req_free(r);
}

/* Whether iq may use the archive it is for. A room's iq (made by
 * mam_room_iq, room set) was let through by the MUC module. Otherwise
 * only the account itself may use its archive (§4: a query to another
 * user's JID is forbidden). */
static bool req_allowed(tern_iq_t *iq, bool room)
{
    if (room || (iq->from && iq->from->local && (!iq->to || jid_bare_equal(iq->to, iq->from))))
        return true;
    tern_iq_error(iq, "cancel", "forbidden", NULL);
    return false;
}

/* A request on the archive of the account that sent iq, or (room) of the
 * room it is addressed to. */
static req_t *req_new(mam_t *m, tern_iq_t *iq, op_t op, bool room)
{
    if (!req_allowed(iq, room))
        return NULL;
    const jid_t *owner = room ? iq->to : iq->from;
    req_t *r = tern_xcalloc(1, sizeof(*r));
    r->m = m;
    r->op = op;
    r->room = room;
    r->host = tern_xstrdup(owner->domain);
    r->user = tern_xstrdup(owner->local);
    r->bare = jid_bare_string(owner);
    r->requester = jid_to_string(iq->from);
    r->q.start = ARCHIVE_TS_MIN;
    r->q.end = ARCHIVE_TS_MAX;
    unsigned retention = tern_host_config(m->host)->mam_retention;
    if (retention)
        r->expire_before = now_us() - (int64_t)retention * 1000000;
    if (!r->bare || !r->requester) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        req_free(r);
        return NULL;
    }
    return r;
}

static void req_submit(req_t *r, tern_iq_t *iq)
{
    r->iq = tern_iq_save(iq);
    flush(r->m); /* the request sees every message before it */
    if (tern_storage_submit(r->m->srv, req_run, req_done, r) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        req_free(r);
    }
}

static const char *field_value(const xml_node_t *field)
{
    xml_node_t *v = xml_node_child(field, "value", NS_DATA);
    return v ? xml_node_text(v) : NULL;
}

/* Fills r from the query's data form (§4.1). Returns NULL or the text of
 * a bad-request. */
static const char *parse_form(req_t *r, const xml_node_t *x, size_t max_ids)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        const char *v = field_value(f);
        if (!var)
            return "field without var";
        if (strcmp(var, "FORM_TYPE") == 0) {
            if (!v || strcmp(v, NS_MAM) != 0)
                return "FORM_TYPE must be urn:xmpp:mam:2";
        } else if (strcmp(var, "ids") == 0) {
            for (xml_node_t *val = xml_node_child(f, "value", NS_DATA); val;
                 val = xml_node_next(val, "value", NS_DATA)) {
                if (r->q.n_ids >= max_ids)
                    return "too many ids";
                r->ids = tern_xrealloc(r->ids, (r->q.n_ids + 1) * sizeof(char *));
                r->ids[r->q.n_ids++] = tern_xstrdup(xml_node_text(val));
            }
            r->q.ids = (const char *const *)r->ids;
            if (!r->ids) /* an empty list asks for nothing */
                r->q.ids = (const char *const *)&r->ids;
        } else if (!v) {
            return "field without value";
        } else if (strcmp(var, "with") == 0) {
            jid_t j;
            if (jid_parse(v, &j) != 0)
                return "bad JID in 'with'";
            free(r->with_bare);
            free(r->with_resource);
            r->with_bare = jid_bare_string(&j);
            r->with_resource = j.resource ? tern_xstrdup(j.resource) : NULL;
            jid_clear(&j);
            r->q.with_bare = r->with_bare;
            r->q.with_resource = r->with_resource;
        } else if (strcmp(var, "start") == 0) {
            if (!parse_stamp(v, &r->q.start))
                return "bad 'start' date";
        } else if (strcmp(var, "end") == 0) {
            if (!parse_stamp(v, &r->q.end))
                return "bad 'end' date";
        } else if (strcmp(var, "after-id") == 0) {
            free(r->after_id);
            r->after_id = tern_xstrdup(v);
            r->q.after_id = r->after_id;
        } else if (strcmp(var, "before-id") == 0) {
            free(r->before_id);
            r->before_id = tern_xstrdup(v);
            r->q.before_id = r->before_id;
        } else {
            return "unknown field";
        }
    }
    return NULL;
}

/* XEP-0059. Returns NULL, or the condition of the error (with *text). */
static const char *parse_rsm(req_t *r, const xml_node_t *set, size_t max_page, const char **text)
{
    r->q.max = max_page < DEFAULT_PAGE ? max_page : DEFAULT_PAGE;
    if (!set)
        return NULL;
    xml_node_t *n;
    if ((n = xml_node_child(set, "max", NS_RSM))) {
        const char *s = xml_node_text(n);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*s || *end || errno || s[0] == '-') {
            *text = "bad <max/>";
            return "bad-request";
        }
        r->q.max = v < max_page ? (size_t)v : max_page;
        /* A request for the size alone (XEP-0059 §2.6) is the one that
         * gets a count: counting scans the whole result set. */
        r->q.want_count = v == 0;
    }
    if ((n = xml_node_child(set, "after", NS_RSM))) {
        r->rsm_after = tern_xstrdup(xml_node_text(n));
        r->q.rsm_after = r->rsm_after;
    }
    if ((n = xml_node_child(set, "before", NS_RSM))) {
        r->rsm_before = tern_xstrdup(xml_node_text(n));
        r->q.rsm_before = r->rsm_before;
    }
    if (xml_node_child(set, "index", NS_RSM)) {
        *text = "paging by index is not supported; use after/before";
        return "feature-not-implemented";
    }
    return NULL;
}

static xml_node_t *add_field(xml_node_t *x, const char *var, const char *type)
{
    xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    xml_node_set_attr(f, "type", type);
    return f;
}

/* §4.1.5: the fields a query form may have. */
static void query_form(tern_iq_t *iq)
{
    xml_stanza_t *reply = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(reply), "query", NS_MAM);
    xml_node_t *x = xml_node_add_child(q, "x", NS_DATA);
    xml_node_set_attr(x, "type", "form");
    xml_node_add_child_text(add_field(x, "FORM_TYPE", "hidden"), "value", NS_DATA, NS_MAM);
    add_field(x, "with", "jid-single");
    add_field(x, "start", "text-single");
    add_field(x, "end", "text-single");
    add_field(x, "before-id", "text-single");
    add_field(x, "after-id", "text-single");
    xml_node_t *ids = add_field(x, "ids", "text-multi");
    xml_node_t *val = xml_node_add_child(ids, "validate", NS_XDATA_VALIDATE);
    xml_node_set_attr(val, "datatype", "xs:string");
    xml_node_add_child(val, "open", NS_XDATA_VALIDATE);
    tern_iq_reply(iq, reply);
    xml_stanza_unref(reply);
}

/* A query (or the form) on the sender's archive, or a room's. */
static void query_request(mam_t *m, tern_iq_t *iq, bool room)
{
    if (!iq->is_set) {
        if (room || (iq->from && (!iq->to || jid_bare_equal(iq->to, iq->from))))
            query_form(iq);
        else
            tern_iq_error(iq, "cancel", "forbidden", NULL);
        return;
    }
    req_t *r = req_new(m, iq, OP_QUERY, room);
    if (!r)
        return;
    const char *qid = xml_node_attr(iq->payload, "queryid");
    r->queryid = qid ? tern_xstrdup(qid) : NULL;
    size_t max_page = tern_host_config(m->host)->mam_max_page;
    const char *text = NULL, *cond = NULL;
    xml_node_t *x = xml_node_child(iq->payload, "x", NS_DATA);
    if (x && (text = parse_form(r, x, max_page)))
        cond = "bad-request";
    if (!cond)
        cond = parse_rsm(r, xml_node_child(iq->payload, "set", NS_RSM), max_page, &text);
    /* Pages in reverse order are not supported: said plainly rather than
     * answered in an order the client did not ask for. */
    if (!cond && xml_node_child(iq->payload, "flip-page", NS_MAM)) {
        cond = "feature-not-implemented";
        text = "flip-page is not supported";
    }
    if (cond) {
        tern_iq_error(iq, strcmp(cond, "bad-request") == 0 ? "modify" : "cancel", cond, text);
        req_free(r);
        return;
    }
    req_submit(r, iq);
}

static tern_handled_t on_query(void *state, tern_iq_t *iq)
{
    query_request(state, iq, false);
    return TERN_HANDLED;
}

/* Builds the normalised <prefs/> from a request; NULL on a bad one. */
static char *prefs_normalise(const xml_node_t *in, size_t *len)
{
    pref_default_t def;
    if (!parse_default(xml_node_attr(in, "default"), &def))
        return NULL;
    xml_stanza_t *out = xml_stanza_new("prefs", NS_MAM);
    xml_node_t *root = xml_stanza_root(out);
    xml_node_set_attr(root, "default", xml_node_attr(in, "default"));
    static const char *const lists[] = {"always", "never"};
    bool ok = true;
    for (size_t i = 0; ok && i < 2; i++) {
        xml_node_t *dst = xml_node_add_child(root, lists[i], NS_MAM);
        xml_node_t *src = xml_node_child(in, lists[i], NS_MAM);
        for (xml_node_t *j = src ? xml_node_child(src, "jid", NS_MAM) : NULL; ok && j;
             j = xml_node_next(j, "jid", NS_MAM)) {
            jid_t parsed;
            if (jid_parse(xml_node_text(j), &parsed) != 0) {
                ok = false;
                break;
            }
            char *s = jid_to_string(&parsed);
            jid_clear(&parsed);
            if (!s) {
                ok = false;
                break;
            }
            xml_node_add_child_text(dst, "jid", NS_MAM, s);
            free(s);
        }
    }
    char *xml = ok ? xml_node_to_string(root, NS_MAM, len) : NULL;
    xml_stanza_unref(out);
    return xml;
}

static tern_handled_t on_prefs(void *state, tern_iq_t *iq)
{
    mam_t *m = state;
    req_t *r = req_new(m, iq, iq->is_set ? OP_PREFS_SET : OP_PREFS_GET, false);
    if (!r)
        return TERN_HANDLED;
    if (iq->is_set) {
        r->prefs = prefs_normalise(iq->payload, &r->prefs_len);
        if (!r->prefs) {
            tern_iq_error(iq, "modify", "bad-request", "bad default or JID");
            req_free(r);
            return TERN_HANDLED;
        }
        prefs_cache_set(m, r->user, r->prefs, r->prefs_len);
    }
    req_submit(r, iq);
    return TERN_HANDLED;
}

/* #extended metadata of the sender's archive, or a room's. */
static void metadata_request(mam_t *m, tern_iq_t *iq, bool room)
{
    if (iq->is_set) {
        tern_iq_error(iq, "cancel", "bad-request", NULL);
        return;
    }
    req_t *r = req_new(m, iq, OP_METADATA, room);
    if (r)
        req_submit(r, iq);
}

static tern_handled_t on_metadata(void *state, tern_iq_t *iq)
{
    metadata_request(state, iq, false);
    return TERN_HANDLED;
}

static void *mam_init(tern_module_t *mod)
{
    mam_t *m = tern_xcalloc(1, sizeof(*m));
    m->host = tern_module_host(mod);
    m->srv = tern_host_server(m->host);
    m->pending_tail = &m->pending;
    hashmap_init(&m->expired);
    hashmap_init(&m->prefs);
    tern_register_session_bound(mod, on_bound);
    tern_register_session_closed(mod, on_closed);
    /* After blocking (100), so a blocked message is not archived; before
     * carbons (40), so copies carry the stanza-id. */
    tern_register_hook(mod, TERN_HOOK_INBOUND, 50, on_inbound);
    tern_register_hook(mod, TERN_HOOK_OUTBOUND, 50, on_outbound);
    tern_register_iq(mod, TERN_SCOPE_ACCOUNT, NS_MAM, "query", on_query);
    tern_register_iq(mod, TERN_SCOPE_ACCOUNT, NS_MAM, "prefs", on_prefs);
    tern_register_iq(mod, TERN_SCOPE_ACCOUNT, NS_MAM, "metadata", on_metadata);
    tern_register_disco_feature(mod, TERN_SCOPE_ACCOUNT, NS_MAM);
    tern_register_disco_feature(mod, TERN_SCOPE_ACCOUNT, NS_MAM_EXTENDED);
    tern_register_disco_feature(mod, TERN_SCOPE_ACCOUNT, NS_STANZA_ID);
    return m;
}

static void mam_fini(void *state)
{
    mam_t *m = state;
    if (!m)
        return;
    /* The storage queue has run dry before modules stop (its last
     * completions flush what was pending), so this is normally empty. */
    batch_free(m, m->pending);
    expiry_forget(m);
    hashmap_free(&m->expired);
    const char *k;
    void *v;
    for (size_t i = 0; hashmap_next(&m->prefs, &i, &k, &v);)
        cached_free(v);
    hashmap_free(&m->prefs);
    free(m);
}

const tern_module_def_t mod_mam = {"mam", TERN_MODULE_API_VERSION, mam_init, mam_fini};

/* ---- rooms (mam.h) ---- */

bool mam_room_available(tern_host_t *h)
{
    return h && tern_host_module_state(h, &mod_mam);
}

int mam_room_archive(tern_host_t *h, const char *muc_domain, const char *room, const char *id,
                     const xml_stanza_t *msg, const char *sender_bare)
{
    if (!h || !muc_domain || !room || !id || !*id || strlen(id) > MAX_ROOM_ID || !msg)
        return TERN_EINVAL;
    const xml_node_t *root = xml_stanza_root(msg);
    if (strcmp(root->name, "message") != 0)
        return TERN_EINVAL;
    mam_t *m = tern_host_module_state(h, &mod_mam);
    if (!m || !worth_archiving(root, true))
        return 0;
    if (m->backlog >= MAX_BACKLOG) {
        if (!m->room_busy_logged)
            log_warn(TAG, "%s@%s: archive queue full, room messages not archived", room,
                     muc_domain);
        m->room_busy_logged = true;
        return TERN_EAGAIN;
    }
    jid_t rj = {0}, occupant = {0};
    if (jid_from_parts(room, muc_domain, NULL, &rj) != 0 || !rj.local) {
        jid_clear(&rj);
        return TERN_EINVAL;
    }
    /* 'with' is the occupant JID the message comes from (room/nick). */
    const char *from = xml_node_attr(root, "from");
    const jid_t *with = &rj;
    if (from && jid_parse(from, &occupant) == 0 && jid_bare_equal(&occupant, &rj))
        with = &occupant;
    xml_stanza_t *copy = xml_stanza_copy(msg);
    xml_node_t *croot = xml_stanza_root(copy);
    strip_room_private(croot);
    if (sender_bare && *sender_bare)
        xml_node_set_attr(xml_node_add_child(croot, "sender", NS_ROOM_SENDER), "jid", sender_bare);
    archive(m, rj.local, rj.domain, with, croot, id, ARCH_ROOM);
    xml_stanza_unref(copy);
    jid_clear(&occupant);
    jid_clear(&rj);
    return 0;
}

void mam_room_iq(tern_host_t *h, const char *muc_domain, const char *room, const xml_stanza_t *st)
{
    if (!h || !st)
        return;
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    const char *from_attr = xml_node_attr(root, "from");
    if (strcmp(root->name, "iq") != 0 || !type || !from_attr ||
        (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return; /* nothing to answer, or nobody to answer */
    tern_server_t *srv = tern_host_server(h);
    jid_t from = {0}, to = {0};
    if (jid_parse(from_attr, &from) != 0)
        return;
    if (!muc_domain || !room || jid_from_parts(room, muc_domain, NULL, &to) != 0 || !to.local) {
        tern_bounce(srv, st, "modify", "jid-malformed", NULL);
        jid_clear(&to);
        jid_clear(&from);
        return;
    }
    /* Answered as an iq without session: every reply is routed. The
     * stanza is not changed; saving it for a later answer takes a
     * reference. */
    tern_iq_t iq = {.host = h,
                    .stanza = (xml_stanza_t *)st,
                    .payload = xml_node_first_element(root),
                    .from = &from,
                    .to = &to,
                    .is_set = strcmp(type, "set") == 0};
    mam_t *m = tern_host_module_state(h, &mod_mam);
    if (m && iq.payload && xml_node_is(iq.payload, "query", NS_MAM))
        query_request(m, &iq, true);
    else if (m && iq.payload && xml_node_is(iq.payload, "metadata", NS_MAM))
        metadata_request(m, &iq, true);
    else
        tern_iq_error(&iq, "cancel", "service-unavailable", NULL);
    jid_clear(&to);
    jid_clear(&from);
}

/* A room's archive read or deleted outside of a query. */
typedef struct {
    char *host, *user;
    bool skip; /* module disabled: nothing to read */
    int64_t since;
    size_t max, n;
    xml_stanza_t **msgs;
    time_t *whens;
    mam_room_recent_cb cb;
    void *ud;
} room_job_t;

static void room_job_free(room_job_t *j)
{
    for (size_t i = 0; i < j->n; i++)
        xml_stanza_unref(j->msgs[i]);
    free(j->msgs);
    free(j->whens);
    free(j->host);
    free(j->user);
    free(j);
}

/* Borrows room and domain; NULL when they are no JID. */
static room_job_t *room_job_new(const char *muc_domain, const char *room)
{
    jid_t rj = {0};
    if (!muc_domain || !room || jid_from_parts(room, muc_domain, NULL, &rj) != 0 || !rj.local) {
        jid_clear(&rj);
        return NULL;
    }
    room_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->host = tern_xstrdup(rj.domain);
    j->user = tern_xstrdup(rj.local);
    jid_clear(&rj);
    return j;
}

/* Storage thread. */
static int recent_collect(void *ud, const archive_msg_t *msg)
{
    room_job_t *j = ud;
    xml_stanza_t *st = xml_parse_element(msg->stanza, msg->len, NS_CLIENT, MAX_STORED);
    if (!st) {
        log_error(TAG, "%s@%s: unreadable archived message %s skipped", j->user, j->host, msg->id);
        return 0;
    }
    if (j->n == j->max) { /* not expected: the page has max rows */
        xml_stanza_unref(st);
        return 0;
    }
    strip_room_private(xml_stanza_root(st));
    j->msgs[j->n] = st;
    j->whens[j->n] = (time_t)(msg->ts / 1000000);
    j->n++;
    return 0;
}

static int recent_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    room_job_t *j = arg;
    if (j->skip || j->max == 0)
        return 0;
    /* The last page, in archive order. */
    archive_query_t q = {.start = j->since, .end = ARCHIVE_TS_MAX, .rsm_before = "", .max = j->max};
    archive_page_t page;
    return drv->archive_query(db, j->host, j->user, &q, recent_collect, j, &page);
}

static void recent_done(void *arg, int result)
{
    room_job_t *j = arg;
    if (result != 0) {
        log_error(TAG, "%s@%s: room history not read (%d)", j->user, j->host, result);
        for (; j->n > 0; j->n--)
            xml_stanza_unref(j->msgs[j->n - 1]);
    }
    j->cb(j->ud, j->msgs, j->whens, j->n);
    room_job_free(j);
}

int mam_room_recent(tern_host_t *h, const char *muc_domain, const char *room, size_t max,
                    mam_room_recent_cb cb, void *ud)
{
    if (!h || !cb)
        return TERN_EINVAL;
    room_job_t *j = room_job_new(muc_domain, room);
    if (!j)
        return TERN_EINVAL;
    mam_t *m = tern_host_module_state(h, &mod_mam);
    j->skip = !m;
    j->max = max < MAX_ROOM_RECENT ? max : MAX_ROOM_RECENT;
    j->msgs = tern_xcalloc(j->max + 1, sizeof(*j->msgs));
    j->whens = tern_xcalloc(j->max + 1, sizeof(*j->whens));
    j->cb = cb;
    j->ud = ud;
    j->since = ARCHIVE_TS_MIN;
    unsigned retention = tern_host_config(h)->mam_retention;
    if (retention)
        j->since = now_us() - (int64_t)retention * 1000000;
    if (m)
        flush(m); /* the read sees every message before it */
    int rc = tern_storage_submit(tern_host_server(h), recent_run, recent_done, j);
    if (rc != 0)
        room_job_free(j);
    return rc;
}

static int room_delete_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    room_job_t *j = arg;
    return drv->archive_delete_user(db, j->host, j->user);
}

static void room_delete_done(void *arg, int result)
{
    room_job_t *j = arg;
    if (result != 0)
        log_error(TAG, "%s@%s: room archive not deleted (%d)", j->user, j->host, result);
    room_job_free(j);
}

void mam_room_delete(tern_host_t *h, const char *muc_domain, const char *room)
{
    room_job_t *j = h ? room_job_new(muc_domain, room) : NULL;
    if (!j)
        return;
    mam_t *m = tern_host_module_state(h, &mod_mam);
    if (m) {
        flush(m); /* what is still pending is deleted too */
        char *key = room_key(j->user, j->host);
        expiry_t *e = hashmap_del(&m->expired, key);
        if (e) {
            free(e->user);
            free(e);
        }
        free(key);
    }
    if (tern_storage_submit(tern_host_server(h), room_delete_run, room_delete_done, j) != 0) {
        log_error(TAG, "%s@%s: room archive not deleted (storage unavailable)", j->user, j->host);
        room_job_free(j);
    }
}
