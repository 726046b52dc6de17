/* SPDX-License-Identifier: MIT
 * blocking.c - XEP-0191 Blocking Command.
 *
 * A user's blocklist is a set of JIDs in the key/value store (store
 * "blocklist", user = the account's localpart, key = the normalised JID,
 * empty value). Changes are committed before the client hears the result.
 *
 * Enforcement runs in the synchronous stanza hooks (priority 100, before
 * every other module), so each worker keeps the lists of the accounts it
 * owns in memory. INBOUND (to the account) and OUTBOUND (from its sessions)
 * both run on the worker that owns the account, so one cache per worker
 * sees every change. A stanza that needs a list not loaded yet is taken,
 * queued per account in arrival order, and routed again once the load job
 * has filled the cache.
 *
 * Every storage job (load, block, unblock) ends by reading the whole list
 * back, and its completion installs that snapshot. Jobs of a worker run and
 * complete in FIFO order, so the last completion always leaves the cache
 * equal to storage.
 *
 * Memory: lists of accounts with a session here stay cached; the others
 * (loaded for stanzas to offline users) are kept on an LRU list of at most
 * IDLE_CACHE_MAX entries per host and worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "blocking.h"
#include "roster.h"
#include "tern/module.h"

#define STORE "blocklist"
#define TAG   "blocking"
/* XEP-0191 §3.3 application error condition; ns.h is shared, so it is
 * defined here. */
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
/* Lists of accounts without a session on this worker kept in memory. */
#define IDLE_CACHE_MAX 1024
/* Stanzas that may wait for one account's list; more are refused rather
 * than held while storage is slow. */
#define QUEUE_MAX 1000
/* Longest JID string: three parts of at most JID_PART_MAX and separators. */
#define JID_BUF (3 * JID_PART_MAX + 3)

typedef struct pending {
    xml_stanza_t *st;        /* one reference */
    tern_session_t *session; /* OUTBOUND: the sender (one reference); INBOUND: NULL */
    struct pending *next;
} pending_t;

typedef struct acct {
    char *user;      /* localpart; the key in blk_t.accts */
    hashmap_t items; /* normalised JID -> the same string (owned here) */
    bool loaded;
    unsigned loads; /* load jobs in flight */
    bool live;      /* has sessions here; not on the idle list */
    pending_t *q_head, **q_tail;
    size_t queued;
    struct acct *prev, *next; /* idle list, most recently used first */
} acct_t;

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    int slot; /* non-NULL: the session asked for the blocklist (§3.2 pushes) */
    hashmap_t accts;
    acct_t *idle_head, *idle_tail;
    size_t nidle;
    unsigned long push_seq;
} blk_t;

typedef enum { JOB_LOAD, JOB_BLOCK, JOB_UNBLOCK } job_kind_t;

typedef struct {
    char **v;
    size_t n, cap;
} strvec_t;

typedef struct {
    blk_t *b;
    job_kind_t kind;
    char *host, *user;
    tern_iq_saved_t *iq; /* NULL for a load without a blocklist request */
    strvec_t req;        /* items of the block/unblock; empty = unblock all */
    unsigned max_items;
    /* results, filled on the storage thread */
    strvec_t list;     /* the whole list after the job */
    strvec_t changed;  /* items actually added or removed */
    strvec_t presence; /* of those, the ones that receive the user's presence */
    strvec_t probe;    /* unblocked ones whose presence the user receives */
    bool over_limit;
} job_t;

/* ---- small helpers ---- */

static void strvec_push(strvec_t *s, const char *str)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = tern_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = tern_xstrdup(str);
}

static void strvec_free(strvec_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* The bare JID of a normalised item ("l@d", from "l@d/r"), or false when
 * the item has no localpart (a domain is nobody's contact). A resource may
 * hold '@' and '/', the local and domain parts hold neither. */
static bool item_bare(const char *item, char *out, size_t cap)
{
    size_t len = strcspn(item, "/");
    const char *at = memchr(item, '@', len);
    if (!at || len >= cap)
        return false;
    memcpy(out, item, len);
    out[len] = '\0';
    return true;
}

static void items_clear(hashmap_t *items)
{
    size_t it = 0;
    void *v;
    while (hashmap_next(items, &it, NULL, &v))
        free(v);
    hashmap_free(items);
    hashmap_init(items);
}

/* ---- the per-account cache ---- */

static void idle_unlink(blk_t *b, acct_t *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        b->idle_head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        b->idle_tail = a->prev;
    a->prev = a->next = NULL;
    b->nidle--;
}

static void idle_push_front(blk_t *b, acct_t *a)
{
    a->prev = NULL;
    a->next = b->idle_head;
    if (b->idle_head)
        b->idle_head->prev = a;
    else
        b->idle_tail = a;
    b->idle_head = a;
    b->nidle++;
}

static void pending_free(pending_t *p)
{
    xml_stanza_unref(p->st);
    if (p->session)
        tern_session_unref(p->session);
    free(p);
}

static void acct_free(acct_t *a)
{
    items_clear(&a->items);
    hashmap_free(&a->items);
    for (pending_t *p = a->q_head, *n; p; p = n) {
        n = p->next;
        pending_free(p);
    }
    free(a->user);
    free(a);
}

/* Drops least recently used idle lists beyond the cap. A list being loaded
 * (its queue waits for it) stays; the cap is met again once it is in. */
static void idle_trim(blk_t *b)
{
    while (b->nidle > IDLE_CACHE_MAX) {
        acct_t *a = b->idle_tail;
        if (a->loads || a->q_head)
            return;
        idle_unlink(b, a);
        hashmap_del(&b->accts, a->user);
        acct_free(a);
    }
}

static bool user_online(blk_t *b, const char *user)
{
    char bare[JID_BUF];
    snprintf(bare, sizeof(bare), "%s@%s", user, tern_host_domain(b->host));
    return tern_user_sessions(b->host, bare) != NULL;
}

static acct_t *acct_find(blk_t *b, const char *user)
{
    acct_t *a = hashmap_get(&b->accts, user);
    if (a && !a->live && b->idle_head != a) {
        idle_unlink(b, a);
        idle_push_front(b, a);
    }
    return a;
}

static acct_t *acct_get(blk_t *b, const char *user)
{
    acct_t *a = acct_find(b, user);
    if (a)
        return a;
    a = tern_xcalloc(1, sizeof(*a));
    a->user = tern_xstrdup(user);
    hashmap_init(&a->items);
    a->q_tail = &a->q_head;
    hashmap_put(&b->accts, a->user, a);
    a->live = user_online(b, user);
    if (!a->live) {
        idle_push_front(b, a);
        idle_trim(b);
    }
    return a;
}

static void acct_install(acct_t *a, const strvec_t *list)
{
    items_clear(&a->items);
    for (size_t i = 0; i < list->n; i++) {
        char *k = tern_xstrdup(list->v[i]);
        char *old = hashmap_put(&a->items, k, k);
        if (old) /* keys are unique in storage; defensive */
            free(k);
    }
    a->loaded = true;
}

/* XEP-0191 §2 / XEP-0016 §2.1: full JID, bare JID, domain/resource, then
 * the domain, which also covers any address at a subdomain of it. For a
 * deny-only list the order only decides which item matched, never whether
 * one did. A domain/resource item matches that address alone (no
 * localpart), as the XEP-0016 wording says. has() looks one item up. */
static bool matches(const char *local, const char *domain, const char *resource,
                    bool (*has)(void *ud, const char *item), void *ud)
{
    char buf[JID_BUF];
    if (local && resource) {
        snprintf(buf, sizeof(buf), "%s@%s/%s", local, domain, resource);
        if (has(ud, buf))
            return true;
    }
    if (local) {
        snprintf(buf, sizeof(buf), "%s@%s", local, domain);
        if (has(ud, buf))
            return true;
    }
    if (!local && resource) {
        snprintf(buf, sizeof(buf), "%s/%s", domain, resource);
        if (has(ud, buf))
            return true;
    }
    for (const char *d = domain; d; d = strchr(d, '.')) {
        if (*d == '.')
            d++;
        if (*d && has(ud, d))
            return true;
    }
    return false;
}

static bool cache_has(void *ud, const char *item)
{
    return hashmap_get(ud, item) != NULL;
}

static bool is_blocked(acct_t *a, const jid_t *j)
{
    if (hashmap_count(&a->items) == 0)
        return false;
    return matches(j->local, j->domain, j->resource, cache_has, &a->items);
}

static bool same_account(const jid_t *x, const jid_t *y)
{
    return x->local && y->local && strcmp(x->local, y->local) == 0 &&
           strcmp(x->domain, y->domain) == 0;
}

static bool is_home_server(const blk_t *b, const jid_t *j)
{
    return !j->local && !j->resource && strcmp(j->domain, tern_host_domain(b->host)) == 0;
}

/* ---- storage jobs ---- */

static void job_free(job_t *j)
{
    if (j->iq)
        tern_iq_saved_free(j->iq);
    free(j->host);
    free(j->user);
    strvec_free(&j->req);
    strvec_free(&j->list);
    strvec_free(&j->changed);
    strvec_free(&j->presence);
    strvec_free(&j->probe);
    free(j);
}

static int collect_key(void *ud, const char *key, const char *value, size_t len)
{
    (void)value;
    (void)len;
    strvec_push(ud, key);
    return 0;
}

static int read_list(const storage_driver_t *drv, storage_db_t *db, job_t *j)
{
    strvec_free(&j->list);
    return drv->kv_list(db, j->host, j->user, STORE, collect_key, &j->list);
}

/* §3.3/§3.4: block and unblock change what the contact may see of the
 * user's presence, but only a contact that receives it at all (a 'from'
 * subscription) is told. After an unblock the user's side asks again for
 * the presence of a contact it is subscribed to, which it stopped
 * receiving while the block lasted. */
static void note_presence_targets(const storage_driver_t *drv, storage_db_t *db, job_t *j)
{
    for (size_t i = 0; i < j->changed.n; i++) {
        char bare[JID_BUF];
        if (!item_bare(j->changed.v[i], bare, sizeof(bare)))
            continue;
        int bits = roster_storage_subscription(drv, db, j->host, j->user, bare);
        if (bits <= 0)
            continue;
        if (bits & ROSTER_SUB_FROM)
            strvec_push(&j->presence, j->changed.v[i]);
        if (j->kind == JOB_UNBLOCK && (bits & ROSTER_SUB_TO))
            strvec_push(&j->probe, bare);
    }
}

static int write_changes(const storage_driver_t *drv, storage_db_t *db, job_t *j)
{
    int rc = 0;
    if (j->kind == JOB_BLOCK) {
        for (size_t i = 0; rc == 0 && i < j->req.n; i++) {
            char *old = NULL;
            size_t len = 0;
            rc = drv->kv_get(db, j->host, j->user, STORE, j->req.v[i], &old, &len);
            free(old);
            if (rc == TERN_ENOENT) {
                strvec_push(&j->changed, j->req.v[i]);
                rc = drv->kv_put(db, j->host, j->user, STORE, j->req.v[i], "", 0);
            }
        }
        if (rc == 0)
            rc = read_list(drv, db, j);
        if (rc == 0 && j->list.n > j->max_items) {
            j->over_limit = true;
            return 0; /* rolled back by the caller */
        }
    } else if (j->req.n == 0) {
        /* §3.5: everything goes. */
        rc = read_list(drv, db, j);
        for (size_t i = 0; rc == 0 && i < j->list.n; i++)
            strvec_push(&j->changed, j->list.v[i]);
        if (rc == 0)
            rc = drv->kv_del_store(db, j->host, j->user, STORE);
        if (rc == 0)
            rc = read_list(drv, db, j);
    } else {
        for (size_t i = 0; rc == 0 && i < j->req.n; i++) {
            rc = drv->kv_del(db, j->host, j->user, STORE, j->req.v[i]);
            if (rc == 0)
                strvec_push(&j->changed, j->req.v[i]);
            else if (rc == TERN_ENOENT)
                rc = 0; /* unblocking what is not blocked changes nothing */
        }
        if (rc == 0)
            rc = read_list(drv, db, j);
    }
    if (rc == 0)
        note_presence_targets(drv, db, j);
    return rc;
}

static int run_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    job_t *j = arg;
    if (j->kind == JOB_LOAD)
        return read_list(drv, db, j);
    if (drv->begin(db) != 0)
        return TERN_EIO;
    int rc = write_changes(drv, db, j);
    if (rc == 0 && !j->over_limit)
        rc = drv->commit(db);
    if (rc != 0 || j->over_limit) {
        drv->rollback(db);
        strvec_free(&j->list);
        strvec_free(&j->presence);
        strvec_free(&j->probe);
    }
    return rc;
}

/* ---- loop thread: after a job ---- */

static void drain(blk_t *b, acct_t *a);

static void route_presence(blk_t *b, const char *from, const char *to, const char *type)
{
    xml_stanza_t *p = xml_stanza_new("presence", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(p);
    xml_node_set_attr(root, "from", from);
    xml_node_set_attr(root, "to", to);
    if (type)
        xml_node_set_attr(root, "type", type);
    tern_route(b->srv, p);
    xml_stanza_unref(p);
}

/* Block: each available resource says goodbye to the contact; unblock:
 * each tells its current presence again. */
static void send_presence_changes(blk_t *b, job_t *j, const char *bare)
{
    for (size_t i = 0; i < j->presence.n; i++) {
        const char *to = j->presence.v[i];
        for (tern_session_t *s = tern_user_sessions(b->host, bare); s;
             s = tern_session_next_resource(s)) {
            const xml_stanza_t *last = tern_session_presence(s);
            if (!tern_session_available(s) || !last || !tern_session_jid(s))
                continue;
            if (j->kind == JOB_BLOCK) {
                char *full = jid_to_string(tern_session_jid(s));
                route_presence(b, full, to, "unavailable");
                free(full);
                continue;
            }
            /* One copy per contact: a routed stanza may wait in another
             * worker's inbox. */
            xml_stanza_t *copy = xml_stanza_copy(last);
            xml_node_set_attr(xml_stanza_root(copy), "to", to);
            tern_route(b->srv, copy);
            xml_stanza_unref(copy);
        }
    }
    for (size_t i = 0; i < j->probe.n; i++)
        route_presence(b, bare, j->probe.v[i], "probe");
}

/* §3.3-§3.5: every resource that asked for the list hears of the change. */
static void push_change(blk_t *b, job_t *j, const char *bare)
{
    for (tern_session_t *s = tern_user_sessions(b->host, bare); s;
         s = tern_session_next_resource(s)) {
        if (!tern_session_get(s, b->slot) || !tern_session_jid(s))
            continue;
        xml_stanza_t *push = xml_stanza_new("iq", NS_CLIENT);
        xml_node_t *root = xml_stanza_root(push);
        char id[40];
        snprintf(id, sizeof(id), "block-push-%lu", ++b->push_seq);
        char *full = jid_to_string(tern_session_jid(s));
        xml_node_set_attr(root, "to", full);
        free(full);
        xml_node_set_attr(root, "type", "set");
        xml_node_set_attr(root, "id", id);
        xml_node_t *el =
            xml_node_add_child(root, j->kind == JOB_BLOCK ? "block" : "unblock", NS_BLOCKING);
        for (size_t i = 0; i < j->req.n; i++)
            xml_node_set_attr(xml_node_add_child(el, "item", NS_BLOCKING), "jid", j->req.v[i]);
        tern_session_send(s, push);
        xml_stanza_unref(push);
    }
}

/* §3.2: the result of a blocklist get, from the cache (a) or a snapshot. */
static xml_stanza_t *list_result(const acct_t *a, const strvec_t *list)
{
    xml_stanza_t *res = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *bl = xml_node_add_child(xml_stanza_root(res), "blocklist", NS_BLOCKING);
    if (a) {
        size_t it = 0;
        const char *k;
        while (hashmap_next(&a->items, &it, &k, NULL))
            xml_node_set_attr(xml_node_add_child(bl, "item", NS_BLOCKING), "jid", k);
    } else {
        for (size_t i = 0; i < list->n; i++)
            xml_node_set_attr(xml_node_add_child(bl, "item", NS_BLOCKING), "jid", list->v[i]);
    }
    return res;
}

/* Stanzas queued behind a load that failed: nothing may pass unchecked, so
 * the sender is told to try again (presence just vanishes). */
static void fail_queue(blk_t *b, acct_t *a)
{
    pending_t *p = a->q_head;
    a->q_head = NULL;
    a->q_tail = &a->q_head;
    a->queued = 0;
    for (pending_t *n; p; p = n) {
        n = p->next;
        xml_node_t *root = xml_stanza_root(p->st);
        if (strcmp(root->name, "presence") != 0)
            tern_bounce(b->srv, p->st, "wait", "internal-server-error", NULL);
        pending_free(p);
    }
}

static void job_done(void *arg, int result)
{
    job_t *j = arg;
    blk_t *b = j->b;
    acct_t *a = hashmap_get(&b->accts, j->user);
    if (a && j->kind == JOB_LOAD && a->loads)
        a->loads--;
    char bare[JID_BUF];
    snprintf(bare, sizeof(bare), "%s@%s", j->user, j->host);
    if (result != 0) {
        log_error(TAG, "%s: blocklist storage failed (%d)", bare, result);
        if (j->iq)
            tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
        if (a && !a->loaded && !a->loads)
            fail_queue(b, a);
        job_free(j);
        return;
    }
    if (j->over_limit) {
        /* RFC 6120 §8.3.3.12: a size cap is local service policy; the
         * request itself is well-formed and acceptable in every other way,
         * so not-acceptable would misdescribe it. Unblocking fixes it. */
        char text[96];
        snprintf(text, sizeof(text), "a blocklist holds at most %u items", j->max_items);
        tern_iq_saved_error(j->iq, "modify", "policy-violation", text);
        job_free(j);
        return;
    }
    /* An evicted list is not brought back by a write: storage has it. */
    if (a)
        acct_install(a, &j->list);
    if (j->iq) {
        if (j->kind == JOB_LOAD) {
            xml_stanza_t *res = list_result(a, &j->list);
            tern_iq_saved_reply(j->iq, res);
            xml_stanza_unref(res);
        } else {
            tern_iq_saved_reply(j->iq, NULL);
            push_change(b, j, bare);
            send_presence_changes(b, j, bare);
        }
    }
    job_free(j);
    if (a)
        drain(b, a);
}

static job_t *job_new(blk_t *b, job_kind_t kind, const char *user)
{
    job_t *j = tern_xcalloc(1, sizeof(*j));
    j->b = b;
    j->kind = kind;
    j->host = tern_xstrdup(tern_host_domain(b->host));
    j->user = tern_xstrdup(user);
    j->max_items = tern_host_config(b->host)->blocklist_max_items;
    return j;
}

static int job_submit(blk_t *b, job_t *j)
{
    int rc = tern_storage_submit(b->srv, run_job, job_done, j);
    if (rc != 0)
        log_error(TAG, "%s@%s: cannot queue blocklist job (%d)", j->user, j->host, rc);
    return rc;
}

static void start_load(blk_t *b, acct_t *a)
{
    job_t *j = job_new(b, JOB_LOAD, a->user);
    if (job_submit(b, j) != 0) {
        job_free(j);
        fail_queue(b, a);
        return;
    }
    a->loads++;
}

static void ensure_loaded(blk_t *b, acct_t *a)
{
    if (!a->loaded && !a->loads)
        start_load(b, a);
}

/* Routes the stanzas that waited for the list, in arrival order. The queue
 * is detached first: the hooks see an empty queue and a loaded list, so
 * the stanzas pass through them again instead of queueing anew. */
static void drain(blk_t *b, acct_t *a)
{
    pending_t *p = a->q_head;
    a->q_head = NULL;
    a->q_tail = &a->q_head;
    a->queued = 0;
    for (pending_t *n; p; p = n) {
        n = p->next;
        if (!p->session) {
            tern_route(b->srv, p->st);
        } else {
            /* Through the other modules' OUTBOUND hooks again (sent
             * carbons, archiving, subscriptions); no 'to' is the account. */
            tern_session_route(p->session, p->st);
        }
        pending_free(p);
    }
}

static void enqueue(blk_t *b, acct_t *a, xml_stanza_t *st, tern_session_t *session)
{
    if (a->queued >= QUEUE_MAX) {
        if (strcmp(xml_stanza_root(st)->name, "presence") != 0)
            tern_bounce(b->srv, st, "wait", "resource-constraint", NULL);
        return;
    }
    a->queued++;
    pending_t *p = tern_xcalloc(1, sizeof(*p));
    p->st = xml_stanza_ref(st);
    p->session = session ? tern_session_ref(session) : NULL;
    *a->q_tail = p;
    a->q_tail = &p->next;
    ensure_loaded(b, a);
}

/* ---- enforcement ---- */

/* §3.3: the user's own stanza to a blocked JID comes back to the sending
 * resource as not-acceptable with the <blocked/> condition. */
static void bounce_blocked(tern_session_t *s, const xml_stanza_t *st)
{
    xml_stanza_t *err = tern_error_reply(st, "cancel", "not-acceptable", NULL, false);
    if (!err)
        return; /* never answer an answer */
    xml_node_t *e = xml_node_child(xml_stanza_root(err), "error", NS_CLIENT);
    /* RFC 6120 §8.3.2: the text comes before the application condition. */
    xml_node_add_child_text(e, "text", NS_STANZAS, "You have blocked this JID");
    xml_node_add_child(e, "blocked", NS_BLOCKING_ERRORS);
    tern_session_send(s, err);
    xml_stanza_unref(err);
}

static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    blk_t *b = state;
    if (!ev->to || !ev->from || !ev->from->local || !ev->session)
        return TERN_PASS;
    /* The user's own resources and own server are never blocked: blocking
     * the home domain must not cut the client off from its server's
     * services (disco, ping...). */
    if (same_account(ev->from, ev->to))
        return TERN_PASS;
    if (is_home_server(b, ev->to))
        return TERN_PASS;
    acct_t *a = acct_get(b, ev->from->local);
    if (!a->loaded || a->q_head) {
        enqueue(b, a, ev->stanza, ev->session);
        return TERN_HANDLED;
    }
    if (!is_blocked(a, ev->to))
        return TERN_PASS;
    bounce_blocked(ev->session, ev->stanza);
    return TERN_HANDLED;
}

static tern_handled_t on_inbound(void *state, tern_stanza_ev_t *ev)
{
    blk_t *b = state;
    if (!ev->from || !ev->to || !ev->to->local || same_account(ev->from, ev->to) ||
        is_home_server(b, ev->from))
        return TERN_PASS;
    acct_t *a = acct_get(b, ev->to->local);
    if (!a->loaded || a->q_head) {
        enqueue(b, a, ev->stanza, NULL);
        return TERN_HANDLED;
    }
    if (!is_blocked(a, ev->from))
        return TERN_PASS;
    /* §3.3: presence vanishes without a word; a message and an iq get/set
     * are answered as if the user did not exist (service-unavailable);
     * other iqs vanish. tern_bounce never answers an error or a result. */
    const xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0)
        tern_bounce(b->srv, ev->stanza, "cancel", "service-unavailable", NULL);
    return TERN_HANDLED;
}

/* ---- the protocol ---- */

static bool own_account(const tern_iq_t *iq, const blk_t *b)
{
    return iq->from && iq->from->local &&
           strcmp(iq->from->domain, tern_host_domain(b->host)) == 0 &&
           (!iq->to || same_account(iq->from, iq->to));
}

static tern_handled_t on_blocklist(void *state, tern_iq_t *iq)
{
    blk_t *b = state;
    if (!own_account(iq, b)) {
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    if (iq->is_set) {
        tern_iq_error(iq, "modify", "bad-request", "the blocklist is changed with block/unblock");
        return TERN_HANDLED;
    }
    acct_t *a = acct_get(b, iq->from->local);
    /* §3.2: from now on this resource gets the pushes. */
    if (iq->session)
        tern_session_set(iq->session, b->slot, (void *)1);
    if (a->loaded && !a->q_head) {
        xml_stanza_t *res = list_result(a, NULL);
        tern_iq_reply(iq, res);
        xml_stanza_unref(res);
        return TERN_HANDLED;
    }
    job_t *j = job_new(b, JOB_LOAD, a->user);
    j->iq = tern_iq_save(iq);
    if (job_submit(b, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
        return TERN_HANDLED;
    }
    a->loads++;
    return TERN_HANDLED;
}

/* Reads the <item jid=.../> children into req (normalised, without
 * duplicates). Returns an error condition or NULL. */
static const char *parse_items(const xml_node_t *el, strvec_t *req)
{
    for (xml_node_t *it = xml_node_child(el, "item", NS_BLOCKING); it;
         it = xml_node_next(it, "item", NS_BLOCKING)) {
        const char *s = xml_node_attr(it, "jid");
        if (!s)
            return "bad-request"; /* the schema requires 'jid' */
        jid_t j = {0};
        if (jid_parse(s, &j) != 0)
            return "jid-malformed";
        char *norm = jid_to_string(&j);
        jid_clear(&j);
        bool dup = false;
        for (size_t i = 0; i < req->n && !dup; i++)
            dup = strcmp(req->v[i], norm) == 0;
        if (!dup)
            strvec_push(req, norm);
        free(norm);
    }
    return NULL;
}

static tern_handled_t on_change(void *state, tern_iq_t *iq)
{
    blk_t *b = state;
    if (!own_account(iq, b)) {
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    if (!iq->is_set) {
        tern_iq_error(iq, "modify", "bad-request", "block and unblock are sets");
        return TERN_HANDLED;
    }
    bool block = strcmp(iq->payload->name, "block") == 0;
    job_t *j = job_new(b, block ? JOB_BLOCK : JOB_UNBLOCK, iq->from->local);
    const char *err = parse_items(iq->payload, &j->req);
    if (!err && block && j->req.n == 0)
        err = "bad-request"; /* §3.3: at least one item */
    if (err) {
        tern_iq_error(iq, "modify", err, NULL);
        job_free(j);
        return TERN_HANDLED;
    }
    if (block && j->req.n > j->max_items) {
        char text[96];
        snprintf(text, sizeof(text), "a blocklist holds at most %u items", j->max_items);
        tern_iq_error(iq, "modify", "policy-violation", text);
        job_free(j);
        return TERN_HANDLED;
    }
    j->iq = tern_iq_save(iq);
    if (job_submit(b, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
        return TERN_HANDLED;
    }
    /* The completion installs the new list; make sure it has a place. */
    acct_get(b, iq->from->local);
    return TERN_HANDLED;
}

/* ---- sessions ---- */

/* Loading at bind time means the client's first stanzas rarely wait. A
 * cached list is read again too: the account may have been removed and
 * created anew, or changed with ternctl, while it was idle here. */
static void on_bound(void *state, tern_session_t *s)
{
    blk_t *b = state;
    const jid_t *j = tern_session_jid(s);
    if (!j || !j->local)
        return;
    acct_t *a = acct_get(b, j->local);
    if (!a->live) {
        idle_unlink(b, a);
        a->live = true;
    }
    if (!a->loads)
        start_load(b, a);
}

static void on_closed(void *state, tern_session_t *s)
{
    blk_t *b = state;
    const jid_t *j = tern_session_jid(s);
    if (!j || !j->local)
        return;
    acct_t *a = hashmap_get(&b->accts, j->local);
    if (!a || !a->live || user_online(b, j->local))
        return;
    a->live = false;
    idle_push_front(b, a);
    idle_trim(b);
}

static void *blocking_init(tern_module_t *m)
{
    blk_t *b = tern_xcalloc(1, sizeof(*b));
    b->host = tern_module_host(m);
    b->srv = tern_host_server(b->host);
    b->slot = tern_module_session_slot(m);
    hashmap_init(&b->accts);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_BLOCKING, "blocklist", on_blocklist);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_BLOCKING, "block", on_change);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_BLOCKING, "unblock", on_change);
    tern_register_hook(m, TERN_HOOK_INBOUND, 100, on_inbound);
    tern_register_hook(m, TERN_HOOK_OUTBOUND, 100, on_outbound);
    tern_register_session_bound(m, on_bound);
    tern_register_session_closed(m, on_closed);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_BLOCKING);
    tern_register_disco_feature(m, TERN_SCOPE_ACCOUNT, NS_BLOCKING);
    return b;
}

static void blocking_fini(void *state)
{
    blk_t *b = state;
    size_t it = 0;
    void *v;
    while (hashmap_next(&b->accts, &it, NULL, &v))
        acct_free(v);
    hashmap_free(&b->accts);
    free(b);
}

bool blocking_any(const tern_host_t *h, const char *user)
{
    blk_t *b = tern_host_module_state(h, &mod_blocking);
    acct_t *a = b ? hashmap_get(&b->accts, user) : NULL;
    return a && a->loaded && hashmap_count(&a->items) > 0;
}

bool blocking_blocks(const tern_host_t *h, const char *user, const jid_t *jid)
{
    blk_t *b = tern_host_module_state(h, &mod_blocking);
    acct_t *a = b ? hashmap_get(&b->accts, user) : NULL;
    return a && a->loaded && is_blocked(a, jid);
}

const tern_module_def_t mod_blocking = {"blocking", TERN_MODULE_API_VERSION, blocking_init,
                                        blocking_fini};
