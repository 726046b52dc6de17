/* SPDX-License-Identifier: MIT
 * roster.c - rosters, presence subscriptions and presence broadcast
 * (RFC 6121 §2, §3, §4), with roster versioning (§2.6) and subscription
 * pre-approval (§3.4).
 *
 * Every roster change is one storage job: read the item, apply the state
 * machine, write the item and the new roster version, all in one
 * transaction. Jobs of one worker run in FIFO order and an account's
 * stanzas are all handled on the worker that owns it, so two subscription
 * stanzas for one account apply in the order they arrived without any
 * lock. The job only computes; what must be sent (roster pushes, routed
 * subscription stanzas, presence) is sent by the completion on the loop
 * thread, after the change is durable: a client never sees a push for a
 * change that a crash could lose.
 *
 * Storage (store, key -> value), per account:
 *   "roster", contact bare JID -> item fields (encode_item)
 *   "roster_pending", contact bare JID -> the stored subscribe stanza
 *       (an inbound request not yet answered, redelivered at login)
 *   "roster_meta", "ver" -> roster version, a decimal counter
 * Inbound requests are kept apart from the roster: RFC 6121 §3.1.3 does
 * not let a request create a roster item the user never asked for.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "blocking.h"
#include "roster.h"
#include "tern/module.h"

#define PENDING_STORE "roster_pending"
#define META_STORE    "roster_meta"
#define TAG           "roster"
/* RFC 6121 §2.1.2: the server may limit names and groups; clients keep
 * them short, and an unbounded name would be a storage amplifier. */
#define MAX_TEXT   1023
#define MAX_GROUPS 64
/* A subscribe request is a presence stanza; it may carry a nickname. */
#define MAX_PENDING_BYTES 8192

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    int slot; /* per session: non-NULL once it asked for the roster */
    uint64_t push_seq;
    hashmap_t cache; /* bare JID -> rcache_t, accounts online on this worker */
    uint64_t next_gen;
} roster_t;

typedef struct {
    char *jid; /* contact bare JID, the storage key */
    char *name;
    char **groups;
    size_t ngroups;
    unsigned sub; /* ROSTER_SUB_* */
    bool ask;     /* pending out: we asked for the contact's presence */
    bool approved;
} ritem_t;

/* The rosters of the accounts with a session on this worker, so that
 * presence broadcast and probes (a login with 100 contacts causes 100 of
 * each) are answered from memory instead of 200 storage round trips.
 *
 * The cache only ever holds committed state: it is filled by a load job
 * and changed by the completions of write jobs, which run in FIFO order.
 * A reader that finds writes of the account still in flight (pending > 0)
 * does not use it and takes the storage path, which is ordered behind
 * those writes. gen tells a completion whether the entry it counted on is
 * still the one in the map (an account may log out and in meanwhile). */
typedef struct {
    char *bare;
    hashmap_t items; /* contact bare JID -> ritem_t */
    unsigned sessions;
    unsigned pending;
    uint64_t gen;
    bool loaded;
} rcache_t;

typedef enum { OP_GET, OP_SET, OP_OUT_SUB, OP_IN_SUB, OP_BROADCAST, OP_PROBE, OP_LOAD } op_kind_t;

/* What the completion sends once the job is durable. */
enum {
    ACT_ROUTE = 1 << 0,           /* the subscription stanza, from the user's bare JID */
    ACT_DELIVER = 1 << 1,         /* the inbound stanza to the user's available resources */
    ACT_AUTO_SUBSCRIBED = 1 << 2, /* <presence type='subscribed'/> to the contact */
    ACT_SEND_PRESENCE = 1 << 3,   /* each available resource's presence to the contact */
    ACT_SEND_UNAVAILABLE = 1 << 4,
    ACT_REPLY_UNSUBSCRIBED = 1 << 5, /* no such account, or no subscription */
    ACT_ROUTE_UNSUBSCRIBE = 1 << 6,  /* roster remove: cancel both directions */
    ACT_ROUTE_UNSUBSCRIBED = 1 << 7,
    ACT_ACK_UNAVAILABLE = 1 << 8, /* a request was queued: the requester learns
                                     the contact is (as far as it may know) offline */
    ACT_PROBE_CONTACT = 1 << 9,   /* both ways now: refresh the contact's presence */
};

typedef struct {
    roster_t *r;
    op_kind_t kind;
    char *host;    /* domain */
    char *user;    /* localpart of the account concerned */
    char *bare;    /* its bare JID */
    char *contact; /* the other party's bare JID */
    char *type;    /* presence type of a subscription stanza */
    xml_stanza_t *st;
    tern_iq_saved_t *iq;
    tern_session_t *session; /* referenced: the session a get or login is for */
    unsigned max_items;

    /* OP_SET input */
    ritem_t want;
    bool remove;
    /* OP_GET input */
    char *client_ver;

    /* results */
    const char *error; /* stanza error condition, or NULL */
    const char *error_type;
    unsigned actions;
    bool push;        /* push `item` (or its removal) to interested resources */
    bool push_remove; /* the push says subscription='remove' */
    ritem_t item;
    uint64_t ver;
    ritem_t *items; /* OP_GET: the roster; OP_BROADCAST: subscribed contacts */
    size_t nitems;
    char **pending; /* OP_BROADCAST at login: stored subscribe stanzas */
    size_t npending;
    bool initial; /* OP_BROADCAST: first available presence of the session */
    uint64_t gen; /* of the cache entry this write is counted in, or 0 */
} op_t;

/* ---- items and their storage encoding ---- */

static void item_clear(ritem_t *it)
{
    free(it->jid);
    free(it->name);
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    free(it->groups);
    memset(it, 0, sizeof(*it));
}

static void item_copy(ritem_t *dst, const ritem_t *src)
{
    *dst = *src;
    dst->jid = src->jid ? tern_xstrdup(src->jid) : NULL;
    dst->name = src->name ? tern_xstrdup(src->name) : NULL;
    dst->groups = src->ngroups ? tern_xcalloc(src->ngroups, sizeof(char *)) : NULL;
    for (size_t i = 0; i < src->ngroups; i++)
        dst->groups[i] = tern_xstrdup(src->groups[i]);
}

static void buf_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s) + 1; /* fields end in NUL */
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = tern_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

/* "1" (format), subscription bits, ask, approved, name, then one field per
 * group, each NUL-terminated. Names and groups cannot hold NUL (XML). */
static char *encode_item(const ritem_t *it, size_t *len_out)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char sub[2] = {(char)('0' + (it->sub & 3)), 0};
    buf_add(&buf, &len, &cap, "1");
    buf_add(&buf, &len, &cap, sub);
    buf_add(&buf, &len, &cap, it->ask ? "1" : "0");
    buf_add(&buf, &len, &cap, it->approved ? "1" : "0");
    buf_add(&buf, &len, &cap, it->name ? it->name : "");
    for (size_t i = 0; i < it->ngroups; i++)
        buf_add(&buf, &len, &cap, it->groups[i]);
    *len_out = len;
    return buf;
}

static int decode_item(const char *jid, const char *v, size_t len, ritem_t *it)
{
    memset(it, 0, sizeof(*it));
    const char *fields[5];
    size_t pos = 0;
    for (int i = 0; i < 5; i++) {
        const char *end = memchr(v + pos, '\0', len - pos);
        if (pos >= len || !end)
            return TERN_EIO;
        fields[i] = v + pos;
        pos = (size_t)(end - v) + 1;
    }
    if (strcmp(fields[0], "1") != 0)
        return TERN_EIO;
    it->jid = tern_xstrdup(jid);
    it->sub = (unsigned)(fields[1][0] - '0') & 3;
    it->ask = fields[2][0] == '1';
    it->approved = fields[3][0] == '1';
    it->name = fields[4][0] ? tern_xstrdup(fields[4]) : NULL;
    while (pos < len) {
        const char *end = memchr(v + pos, '\0', len - pos);
        if (!end)
            break;
        it->groups = tern_xrealloc(it->groups, (it->ngroups + 1) * sizeof(char *));
        it->groups[it->ngroups++] = tern_xstrdup(v + pos);
        pos = (size_t)(end - v) + 1;
    }
    return 0;
}

/* ---- storage-thread helpers ---- */

static int load_item(const storage_driver_t *drv, storage_db_t *db, const char *host,
                     const char *user, const char *contact, ritem_t *it, bool *found)
{
    char *v = NULL;
    size_t len = 0;
    *found = false;
    memset(it, 0, sizeof(*it));
    int rc = drv->kv_get(db, host, user, ROSTER_STORE, contact, &v, &len);
    if (rc == TERN_ENOENT) {
        it->jid = tern_xstrdup(contact);
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = decode_item(contact, v, len, it);
    free(v);
    if (rc == 0)
        *found = true;
    else
        log_error(TAG, "%s@%s: unreadable roster item %s", user, host, contact);
    return rc;
}

static int save_item(const storage_driver_t *drv, storage_db_t *db, const char *host,
                     const char *user, const ritem_t *it)
{
    size_t len;
    char *v = encode_item(it, &len);
    int rc = drv->kv_put(db, host, user, ROSTER_STORE, it->jid, v, len);
    free(v);
    return rc;
}

static int read_ver(const storage_driver_t *drv, storage_db_t *db, const char *host,
                    const char *user, uint64_t *ver)
{
    char *v = NULL;
    size_t len = 0;
    *ver = 0;
    int rc = drv->kv_get(db, host, user, META_STORE, "ver", &v, &len);
    if (rc == TERN_ENOENT)
        return 0;
    if (rc == 0)
        *ver = strtoull(v, NULL, 10);
    free(v);
    return rc;
}

static int bump_ver(const storage_driver_t *drv, storage_db_t *db, const char *host,
                    const char *user, uint64_t *ver)
{
    int rc = read_ver(drv, db, host, user, ver);
    if (rc != 0)
        return rc;
    (*ver)++;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, *ver);
    return drv->kv_put(db, host, user, META_STORE, "ver", buf, (size_t)n);
}

typedef struct {
    ritem_t *items;
    size_t n;
    unsigned want_bits; /* 0: all items; else items with any of these bits */
} collect_t;

static int collect_item(void *ud, const char *key, const char *value, size_t len)
{
    collect_t *c = ud;
    ritem_t it;
    if (decode_item(key, value, len, &it) != 0)
        return 0; /* logged by nobody: skip an unreadable row rather than fail the roster */
    if (c->want_bits && !(it.sub & c->want_bits)) {
        item_clear(&it);
        return 0;
    }
    c->items = tern_xrealloc(c->items, (c->n + 1) * sizeof(*c->items));
    c->items[c->n++] = it;
    return 0;
}

typedef struct {
    char **v;
    size_t n;
} strlist_t;

static int collect_value(void *ud, const char *key, const char *value, size_t len)
{
    (void)key;
    strlist_t *l = ud;
    l->v = tern_xrealloc(l->v, (l->n + 1) * sizeof(char *));
    char *copy = tern_xmalloc(len + 1);
    memcpy(copy, value, len + 1);
    l->v[l->n++] = copy;
    return 0;
}

int roster_storage_subscription(const storage_driver_t *drv, storage_db_t *db, const char *host,
                                const char *user, const char *contact_bare)
{
    ritem_t it;
    bool found;
    int rc = load_item(drv, db, host, user, contact_bare, &it, &found);
    int bits = rc == 0 && found ? (int)it.sub : 0;
    item_clear(&it);
    return rc < 0 ? rc : bits;
}

int roster_storage_item(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user, const char *contact_bare, unsigned *sub, char ***groups)
{
    ritem_t it;
    bool found;
    *sub = 0;
    *groups = NULL;
    int rc = load_item(drv, db, host, user, contact_bare, &it, &found);
    if (rc == 0 && found) {
        *sub = it.sub;
        *groups = tern_xcalloc(it.ngroups + 1, sizeof(char *));
        for (size_t i = 0; i < it.ngroups; i++)
            (*groups)[i] = tern_xstrdup(it.groups[i]);
    }
    item_clear(&it);
    return rc < 0 ? rc : 0;
}

typedef struct {
    roster_item_cb cb;
    void *ud;
} each_t;

static int each_item(void *ud, const char *key, const char *value, size_t len)
{
    each_t *e = ud;
    ritem_t it;
    if (decode_item(key, value, len, &it) != 0)
        return 0; /* unreadable: skipped, as a missing item */
    int rc = e->cb(e->ud, it.jid, it.sub, it.groups, it.ngroups);
    item_clear(&it);
    return rc;
}

int roster_storage_each(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user, roster_item_cb cb, void *ud)
{
    each_t e = {cb, ud};
    int rc = drv->kv_list(db, host, user, ROSTER_STORE, each_item, &e);
    return rc == TERN_ENOENT ? 0 : rc;
}

/* ---- the state machines (storage thread) ---- */

/* Marks the item changed: it is written, the version bumped and the
 * change pushed. */
static int commit_item(const storage_driver_t *drv, storage_db_t *db, op_t *op, ritem_t *it)
{
    int rc = save_item(drv, db, op->host, op->user, it);
    if (rc == 0)
        rc = bump_ver(drv, db, op->host, op->user, &op->ver);
    if (rc == 0) {
        item_clear(&op->item);
        item_copy(&op->item, it);
        op->push = true;
    }
    return rc;
}

static int roster_count(const storage_driver_t *drv, storage_db_t *db, op_t *op, size_t *n)
{
    *n = 0;
    return drv->kv_count(db, op->host, op->user, ROSTER_STORE, n);
}

static int run_get(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    int rc = read_ver(drv, db, op->host, op->user, &op->ver);
    if (rc != 0)
        return rc;
    char cur[32];
    snprintf(cur, sizeof(cur), "%" PRIu64, op->ver);
    if (op->client_ver && strcmp(op->client_ver, cur) == 0)
        return 0; /* §2.6.3: unchanged; an empty result says so */
    collect_t c = {0};
    rc = drv->kv_list(db, op->host, op->user, ROSTER_STORE, collect_item, &c);
    op->items = c.items;
    op->nitems = c.n;
    return rc;
}

static int run_set(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    ritem_t it;
    bool found;
    int rc = load_item(drv, db, op->host, op->user, op->want.jid, &it, &found);
    if (rc != 0)
        return rc;
    if (op->remove) {
        if (!found) {
            op->error = "item-not-found";
            op->error_type = "cancel";
            item_clear(&it);
            return 0;
        }
        /* §2.5.2: removing a contact cancels the subscriptions both
         * ways and any request still waiting. */
        if ((it.sub & ROSTER_SUB_TO) || it.ask)
            op->actions |= ACT_ROUTE_UNSUBSCRIBE;
        bool pending = drv->kv_del(db, op->host, op->user, PENDING_STORE, it.jid) == 0;
        if ((it.sub & ROSTER_SUB_FROM) || pending)
            op->actions |= ACT_ROUTE_UNSUBSCRIBED;
        if (it.sub & ROSTER_SUB_FROM)
            op->actions |= ACT_SEND_UNAVAILABLE;
        rc = drv->kv_del(db, op->host, op->user, ROSTER_STORE, it.jid);
        if (rc == 0)
            rc = bump_ver(drv, db, op->host, op->user, &op->ver);
        if (rc == 0) {
            item_clear(&op->item);
            op->item.jid = tern_xstrdup(it.jid);
            op->push = op->push_remove = true;
        }
        item_clear(&it);
        return rc;
    }
    if (!found) {
        size_t n;
        rc = roster_count(drv, db, op, &n);
        if (rc == 0 && n >= op->max_items) {
            op->error = "not-allowed"; /* §2.5.5: the roster is full */
            op->error_type = "cancel";
            item_clear(&it);
            return 0;
        }
    }
    /* A roster set changes only what the user controls (§2.1.2): name
     * and groups; the subscription state is the server's. */
    free(it.name);
    it.name = op->want.name ? tern_xstrdup(op->want.name) : NULL;
    for (size_t i = 0; i < it.ngroups; i++)
        free(it.groups[i]);
    free(it.groups);
    it.groups = NULL;
    it.ngroups = 0;
    if (op->want.ngroups) {
        it.groups = tern_xcalloc(op->want.ngroups, sizeof(char *));
        for (size_t i = 0; i < op->want.ngroups; i++)
            it.groups[i] = tern_xstrdup(op->want.groups[i]);
        it.ngroups = op->want.ngroups;
    }
    if (rc == 0)
        rc = commit_item(drv, db, op, &it);
    item_clear(&it);
    return rc;
}

/* The user sent a subscription stanza to the contact (§3.1.2, §3.1.5,
 * §3.2.2, §3.3.2, pre-approval §3.4). */
static int run_out_sub(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    ritem_t it;
    bool found;
    int rc = load_item(drv, db, op->host, op->user, op->contact, &it, &found);
    if (rc != 0)
        return rc;
    const char *t = op->type;
    if (strcmp(t, "subscribe") == 0) {
        op->actions |= ACT_ROUTE;
        if (!(it.sub & ROSTER_SUB_TO) && !it.ask) {
            size_t n = 0;
            if (!found)
                rc = roster_count(drv, db, op, &n);
            if (rc == 0 && !found && n >= op->max_items) {
                op->error = "not-allowed";
                op->error_type = "cancel";
                op->actions = 0;
            } else if (rc == 0) {
                it.ask = true;
                rc = commit_item(drv, db, op, &it);
            }
        }
    } else if (strcmp(t, "subscribed") == 0) {
        bool pending = false;
        rc = drv->kv_del(db, op->host, op->user, PENDING_STORE, op->contact);
        if (rc == 0)
            pending = true;
        else if (rc == TERN_ENOENT)
            rc = 0;
        if (rc == 0 && pending && !(it.sub & ROSTER_SUB_FROM)) {
            it.sub |= ROSTER_SUB_FROM;
            it.approved = false;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_ROUTE | ACT_SEND_PRESENCE;
            if (it.sub & ROSTER_SUB_TO)
                op->actions |= ACT_PROBE_CONTACT;
        } else if (rc == 0 && pending) {
            op->actions |= ACT_ROUTE; /* already subscribed: just answer */
        } else if (rc == 0 && !(it.sub & ROSTER_SUB_FROM) && !it.approved) {
            size_t n = 0;
            if (!found)
                rc = roster_count(drv, db, op, &n);
            if (rc == 0 && (found || n < op->max_items)) {
                it.approved = true; /* §3.4: pre-approval, not routed */
                rc = commit_item(drv, db, op, &it);
            }
        }
    } else if (strcmp(t, "unsubscribe") == 0) {
        op->actions |= ACT_ROUTE;
        if (found && ((it.sub & ROSTER_SUB_TO) || it.ask)) {
            it.sub &= ~(unsigned)ROSTER_SUB_TO;
            it.ask = false;
            rc = commit_item(drv, db, op, &it);
        }
    } else if (strcmp(t, "unsubscribed") == 0) {
        int del = drv->kv_del(db, op->host, op->user, PENDING_STORE, op->contact);
        if (del != 0 && del != TERN_ENOENT)
            rc = del;
        if (rc == 0 && del == 0)
            op->actions |= ACT_ROUTE; /* a request denied */
        if (rc == 0 && found && (it.sub & ROSTER_SUB_FROM)) {
            it.sub &= ~(unsigned)ROSTER_SUB_FROM;
            it.approved = false;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_ROUTE | ACT_SEND_UNAVAILABLE;
        } else if (rc == 0 && found && it.approved) {
            it.approved = false; /* a pre-approval withdrawn */
            rc = commit_item(drv, db, op, &it);
        }
    }
    item_clear(&it);
    return rc;
}

/* The contact sent a subscription stanza to the user (§3.1.3, §3.1.6,
 * §3.2.3, §3.3.3). */
static int run_in_sub(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    int rc = storage_user_exists(drv, db, op->host, op->user);
    if (rc == TERN_ENOENT) {
        if (strcmp(op->type, "subscribe") == 0)
            op->actions |= ACT_REPLY_UNSUBSCRIBED;
        return 0;
    }
    if (rc != 0)
        return rc;
    ritem_t it;
    bool found;
    rc = load_item(drv, db, op->host, op->user, op->contact, &it, &found);
    if (rc != 0)
        return rc;
    const char *t = op->type;
    if (strcmp(t, "subscribe") == 0) {
        if (it.sub & ROSTER_SUB_FROM) {
            op->actions |= ACT_AUTO_SUBSCRIBED; /* already allowed: confirm again */
        } else if (it.approved) {
            it.sub |= ROSTER_SUB_FROM;
            it.approved = false;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_AUTO_SUBSCRIBED | ACT_SEND_PRESENCE;
        } else {
            size_t n = 0;
            rc = drv->kv_count(db, op->host, op->user, PENDING_STORE, &n);
            char *xml = NULL;
            size_t len = 0;
            if (rc == 0 && n < op->max_items)
                xml = xml_node_to_string(xml_stanza_root(op->st), NS_CLIENT, &len);
            if (xml && len <= MAX_PENDING_BYTES) {
                rc = drv->kv_put(db, op->host, op->user, PENDING_STORE, op->contact, xml, len);
                op->actions |= ACT_DELIVER | ACT_ACK_UNAVAILABLE;
            } else if (rc == 0) {
                log_info(TAG, "%s: subscription request from %s dropped (too many or too big)",
                         op->bare, op->contact);
            }
            free(xml);
        }
    } else if (strcmp(t, "subscribed") == 0) {
        if (found && it.ask) {
            it.ask = false;
            it.sub |= ROSTER_SUB_TO;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_DELIVER;
        }
    } else if (strcmp(t, "unsubscribe") == 0) {
        int del = drv->kv_del(db, op->host, op->user, PENDING_STORE, op->contact);
        if (del != 0 && del != TERN_ENOENT)
            rc = del;
        if (rc == 0 && found && (it.sub & ROSTER_SUB_FROM)) {
            it.sub &= ~(unsigned)ROSTER_SUB_FROM;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_DELIVER | ACT_SEND_UNAVAILABLE;
        }
    } else if (strcmp(t, "unsubscribed") == 0) {
        if (found && ((it.sub & ROSTER_SUB_TO) || it.ask)) {
            it.sub &= ~(unsigned)ROSTER_SUB_TO;
            it.ask = false;
            rc = commit_item(drv, db, op, &it);
            op->actions |= ACT_DELIVER;
        }
    }
    item_clear(&it);
    return rc;
}

static int run_broadcast(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    /* Subscribers get the presence; at login the contacts we subscribe
     * to get a probe, so ask for both and sort them out on the loop. */
    collect_t c = {.want_bits = ROSTER_SUB_FROM | (op->initial ? ROSTER_SUB_TO : 0)};
    int rc = drv->kv_list(db, op->host, op->user, ROSTER_STORE, collect_item, &c);
    op->items = c.items;
    op->nitems = c.n;
    if (rc == 0 && op->initial) {
        strlist_t l = {0};
        rc = drv->kv_list(db, op->host, op->user, PENDING_STORE, collect_value, &l);
        op->pending = l.v;
        op->npending = l.n;
    }
    return rc;
}

static int run_probe(const storage_driver_t *drv, storage_db_t *db, op_t *op)
{
    int rc = storage_user_exists(drv, db, op->host, op->user);
    if (rc == TERN_ENOENT) {
        op->actions |= ACT_REPLY_UNSUBSCRIBED;
        return 0;
    }
    if (rc != 0)
        return rc;
    char *bare = tern_xstrdup(op->contact);
    char *slash = strchr(bare, '/');
    if (slash)
        *slash = '\0'; /* subscriptions are between bare JIDs */
    int bits = roster_storage_subscription(drv, db, op->host, op->user, bare);
    free(bare);
    if (bits < 0)
        return bits;
    /* §4.3.2: only a subscriber may learn the user's presence; anyone
     * else is told it has no subscription. */
    op->actions |= (bits & ROSTER_SUB_FROM) ? ACT_SEND_PRESENCE : ACT_REPLY_UNSUBSCRIBED;
    return 0;
}

static int run_op(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    op_t *op = arg;
    bool writes = op->kind == OP_SET || op->kind == OP_OUT_SUB || op->kind == OP_IN_SUB;
    if (writes && drv->begin(db) != 0)
        return TERN_EIO;
    int rc = 0;
    switch (op->kind) {
    case OP_GET:
        rc = run_get(drv, db, op);
        break;
    case OP_SET:
        rc = run_set(drv, db, op);
        break;
    case OP_OUT_SUB:
        rc = run_out_sub(drv, db, op);
        break;
    case OP_IN_SUB:
        rc = run_in_sub(drv, db, op);
        break;
    case OP_BROADCAST:
        rc = run_broadcast(drv, db, op);
        break;
    case OP_PROBE:
        rc = run_probe(drv, db, op);
        break;
    case OP_LOAD: {
        collect_t c = {0};
        rc = drv->kv_list(db, op->host, op->user, ROSTER_STORE, collect_item, &c);
        op->items = c.items;
        op->nitems = c.n;
        break;
    }
    }
    if (writes) {
        if (rc == 0)
            rc = drv->commit(db);
        if (rc != 0)
            drv->rollback(db);
    }
    if (rc != 0) {
        /* Nothing was written: send nothing either. */
        op->actions = 0;
        op->push = false;
    }
    return rc;
}

/* ---- loop thread: what a finished job sends ---- */

static void op_free(op_t *op)
{
    free(op->host);
    free(op->user);
    free(op->bare);
    free(op->contact);
    free(op->type);
    free(op->client_ver);
    if (op->st)
        xml_stanza_unref(op->st);
    if (op->iq)
        tern_iq_saved_free(op->iq);
    if (op->session)
        tern_session_unref(op->session);
    item_clear(&op->want);
    item_clear(&op->item);
    for (size_t i = 0; i < op->nitems; i++)
        item_clear(&op->items[i]);
    free(op->items);
    for (size_t i = 0; i < op->npending; i++)
        free(op->pending[i]);
    free(op->pending);
    free(op);
}

static void add_item_xml(xml_node_t *query, const ritem_t *it, bool removed)
{
    xml_node_t *x = xml_node_add_child(query, "item", NS_ROSTER);
    xml_node_set_attr(x, "jid", it->jid);
    if (removed) {
        xml_node_set_attr(x, "subscription", "remove");
        return;
    }
    if (it->name)
        xml_node_set_attr(x, "name", it->name);
    static const char *const subs[] = {"none", "to", "from", "both"};
    xml_node_set_attr(x, "subscription", subs[it->sub & 3]);
    if (it->ask)
        xml_node_set_attr(x, "ask", "subscribe");
    if (it->approved)
        xml_node_set_attr(x, "approved", "true");
    for (size_t i = 0; i < it->ngroups; i++)
        xml_node_add_child_text(x, "group", NS_ROSTER, it->groups[i]);
}

/* §2.1.6: every interested resource hears of every change. */
static void push_change(op_t *op)
{
    roster_t *r = op->r;
    char ver[32];
    snprintf(ver, sizeof(ver), "%" PRIu64, op->ver);
    for (tern_session_t *s = tern_user_sessions(r->host, op->bare); s;
         s = tern_session_next_resource(s)) {
        if (!tern_session_get(s, r->slot))
            continue;
        xml_stanza_t *push = xml_stanza_new("iq", NS_CLIENT);
        xml_node_t *root = xml_stanza_root(push);
        char id[40];
        snprintf(id, sizeof(id), "push%" PRIu64, ++r->push_seq);
        xml_node_set_attr(root, "type", "set");
        xml_node_set_attr(root, "id", id);
        char *full = tern_session_jid(s) ? jid_to_string(tern_session_jid(s)) : NULL;
        xml_node_set_attr(root, "to", full);
        free(full);
        xml_node_t *q = xml_node_add_child(root, "query", NS_ROSTER);
        xml_node_set_attr(q, "ver", ver);
        add_item_xml(q, &op->item, op->push_remove);
        tern_session_send(s, push);
        xml_stanza_unref(push);
    }
}

static void route_presence(tern_server_t *srv, const char *from, const char *to, const char *type)
{
    xml_stanza_t *p = xml_stanza_new("presence", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(p);
    xml_node_set_attr(root, "from", from);
    xml_node_set_attr(root, "to", to);
    if (type)
        xml_node_set_attr(root, "type", type);
    tern_route(srv, p);
    xml_stanza_unref(p);
}

/* The last presence of each available resource of the user, or its
 * unavailability, from that resource to `to`. */
static void send_resources_presence(op_t *op, const char *to, bool unavailable)
{
    roster_t *r = op->r;
    bool any = false;
    for (tern_session_t *s = tern_user_sessions(r->host, op->bare); s;
         s = tern_session_next_resource(s)) {
        const xml_stanza_t *last = tern_session_presence(s);
        if (!tern_session_available(s) || !last)
            continue;
        any = true;
        if (unavailable) {
            route_presence(r->srv, xml_node_attr(xml_stanza_root(last), "from"), to, "unavailable");
            continue;
        }
        xml_stanza_t *copy = xml_stanza_copy(last);
        xml_node_set_attr(xml_stanza_root(copy), "to", to);
        tern_route(r->srv, copy);
        xml_stanza_unref(copy);
    }
    if (!any && !unavailable && op->kind == OP_PROBE)
        route_presence(r->srv, op->bare, to, "unavailable"); /* §4.3.2: offline */
}

/* An inbound stanza for the user's available resources; the hooks have
 * run, so it goes straight to the sessions. */
static void deliver_to_resources(op_t *op)
{
    for (tern_session_t *s = tern_user_sessions(op->r->host, op->bare); s;
         s = tern_session_next_resource(s))
        if (tern_session_available(s))
            tern_session_send(s, op->st);
}

static void route_from_bare(op_t *op)
{
    xml_stanza_t *copy = xml_stanza_copy(op->st);
    xml_node_t *root = xml_stanza_root(copy);
    /* §3.1.2: subscription stanzas leave from the bare JID. */
    xml_node_set_attr(root, "from", op->bare);
    xml_node_set_attr(root, "to", op->contact);
    tern_route(op->r->srv, copy);
    xml_stanza_unref(copy);
}

static void reply_get(op_t *op)
{
    char ver[32];
    snprintf(ver, sizeof(ver), "%" PRIu64, op->ver);
    if (op->client_ver && strcmp(op->client_ver, ver) == 0) {
        tern_iq_saved_reply(op->iq, NULL);
        return;
    }
    xml_stanza_t *res = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(res), "query", NS_ROSTER);
    xml_node_set_attr(q, "ver", ver);
    for (size_t i = 0; i < op->nitems; i++)
        add_item_xml(q, &op->items[i], false);
    tern_iq_saved_reply(op->iq, res);
    xml_stanza_unref(res);
}

/* XEP-0191 §3.3: the user's presence never goes to what the user blocks
 * (the blocking module's hooks do not see the roster's fan-out). */
static bool contact_blocked(roster_t *r, const char *user, const char *contact)
{
    jid_t j = {0};
    bool blocked = jid_parse(contact, &j) == 0 && blocking_blocks(r->host, user, &j);
    jid_clear(&j);
    return blocked;
}

static char *account_of(const char *bare)
{
    const char *at = strchr(bare, '@');
    size_t n = at ? (size_t)(at - bare) : strlen(bare);
    char *user = tern_xmalloc(n + 1);
    memcpy(user, bare, n);
    user[n] = '\0';
    return user;
}

static void broadcast_done(op_t *op)
{
    tern_server_t *srv = op->r->srv;
    bool filter = blocking_any(op->r->host, op->user);
    for (size_t i = 0; i < op->nitems; i++) {
        const ritem_t *it = &op->items[i];
        if (!(it->sub & ROSTER_SUB_FROM) || (filter && contact_blocked(op->r, op->user, it->jid)))
            continue;
        /* One copy per contact: a routed stanza may sit in another
         * worker's inbox, so it is never changed after tern_route. */
        xml_stanza_t *copy = xml_stanza_copy(op->st);
        xml_node_set_attr(xml_stanza_root(copy), "to", it->jid);
        tern_route(srv, copy);
        xml_stanza_unref(copy);
    }
    if (!op->initial)
        return;
    /* §4.2.2: learn the contacts' presence; probes leave from the bare
     * JID and the answers reach every available resource. */
    for (size_t i = 0; i < op->nitems; i++)
        if ((op->items[i].sub & ROSTER_SUB_TO) &&
            !(filter && contact_blocked(op->r, op->user, op->items[i].jid)))
            route_presence(srv, op->bare, op->items[i].jid, "probe");
    /* §3.1.3: requests that arrived while the user was away. */
    if (op->session && tern_session_is_open(op->session)) {
        for (size_t i = 0; i < op->npending; i++) {
            xml_stanza_t *p = xml_parse_element(op->pending[i], strlen(op->pending[i]), NS_CLIENT,
                                                MAX_PENDING_BYTES * 2);
            if (p) {
                tern_session_send(op->session, p);
                xml_stanza_unref(p);
            }
        }
    }
}

/* ---- the cache ---- */

static void rcache_free(rcache_t *c)
{
    size_t it = 0;
    void *v;
    while (hashmap_next(&c->items, &it, NULL, &v)) {
        item_clear(v);
        free(v);
    }
    hashmap_free(&c->items);
    free(c->bare);
    free(c);
}

static void rcache_remove(rcache_t *c, const char *jid)
{
    ritem_t *old = hashmap_del(&c->items, jid);
    if (old) {
        item_clear(old);
        free(old);
    }
}

/* Replaces (or adds) the committed state of one contact. */
static void rcache_put(rcache_t *c, const ritem_t *it)
{
    /* Removed first: on replace the map would keep the old item's key,
     * which is freed with it. */
    rcache_remove(c, it->jid);
    ritem_t *copy = tern_xmalloc(sizeof(*copy));
    item_copy(copy, it);
    hashmap_put(&c->items, copy->jid, copy);
}

/* The cache entry of an account if readers may trust it now. */
static rcache_t *rcache_usable(roster_t *r, const char *bare)
{
    rcache_t *c = hashmap_get(&r->cache, bare);
    return c && c->loaded && c->pending == 0 ? c : NULL;
}

static bool is_write(op_kind_t k)
{
    return k == OP_SET || k == OP_OUT_SUB || k == OP_IN_SUB;
}

/* A finished job's effect on the cache (loop thread, FIFO order). */
static void rcache_complete(op_t *op, int result)
{
    rcache_t *c = hashmap_get(&op->r->cache, op->bare);
    if (!c || (op->gen && c->gen != op->gen))
        return;
    if (op->kind == OP_LOAD) {
        if (result == 0 && !c->loaded) {
            for (size_t i = 0; i < op->nitems; i++)
                rcache_put(c, &op->items[i]);
            c->loaded = true;
        }
        return;
    }
    if (op->gen && c->pending)
        c->pending--;
    if (result == 0 && op->push && c->loaded) {
        if (op->push_remove)
            rcache_remove(c, op->item.jid);
        else
            rcache_put(c, &op->item);
    }
}

static void op_done(void *arg, int result)
{
    op_t *op = arg;
    rcache_complete(op, result);
    if (op->kind == OP_LOAD) {
        if (result != 0)
            log_error(TAG, "%s: cannot load the roster (%d)", op->bare, result);
        op_free(op);
        return;
    }
    if (result != 0) {
        log_error(TAG, "%s: roster storage failed (%d)", op->bare, result);
        if (op->iq)
            tern_iq_saved_error(op->iq, "wait", "internal-server-error", NULL);
        op_free(op);
        return;
    }
    switch (op->kind) {
    case OP_GET:
        reply_get(op);
        break;
    case OP_SET:
        /* The requester hears the result before the push, as clients
         * (and Prosody's conformance scripts) expect. */
        if (op->error)
            tern_iq_saved_error(op->iq, op->error_type, op->error, NULL);
        else
            tern_iq_saved_reply(op->iq, NULL);
        break;
    case OP_BROADCAST:
        broadcast_done(op);
        break;
    case OP_OUT_SUB:
        if (op->error)
            tern_bounce(op->r->srv, op->st, op->error_type, op->error, "the roster is full");
        break;
    default:
        break;
    }
    if (op->push)
        push_change(op);
    tern_server_t *srv = op->r->srv;
    if (op->actions & ACT_ROUTE)
        route_from_bare(op);
    if (op->actions & ACT_DELIVER)
        deliver_to_resources(op);
    if (op->actions & ACT_AUTO_SUBSCRIBED)
        route_presence(srv, op->bare, op->contact, "subscribed");
    if (op->actions & ACT_PROBE_CONTACT)
        route_presence(srv, op->bare, op->contact, "probe");
    if (op->actions & ACT_ACK_UNAVAILABLE)
        route_presence(srv, op->bare, op->contact, "unavailable");
    if (op->actions & ACT_REPLY_UNSUBSCRIBED)
        route_presence(srv, op->bare, op->contact, "unsubscribed");
    if (op->actions & ACT_ROUTE_UNSUBSCRIBE)
        route_presence(srv, op->bare, op->item.jid, "unsubscribe");
    if (op->actions & ACT_ROUTE_UNSUBSCRIBED)
        route_presence(srv, op->bare, op->item.jid, "unsubscribed");
    if (op->actions & ACT_SEND_PRESENCE)
        send_resources_presence(op, op->contact, false);
    if (op->actions & ACT_SEND_UNAVAILABLE)
        send_resources_presence(op, op->contact ? op->contact : op->item.jid, true);
    op_free(op);
}

static op_t *op_new(roster_t *r, op_kind_t kind, const jid_t *account)
{
    op_t *op = tern_xcalloc(1, sizeof(*op));
    op->r = r;
    op->kind = kind;
    op->host = tern_xstrdup(account->domain);
    op->user = tern_xstrdup(account->local);
    op->bare = jid_bare_string(account);
    op->max_items = tern_host_config(r->host)->max_roster_items;
    return op;
}

static void op_submit(op_t *op)
{
    if (is_write(op->kind)) {
        rcache_t *c = hashmap_get(&op->r->cache, op->bare);
        if (c) {
            c->pending++;
            op->gen = c->gen;
        }
    } else if (op->kind == OP_LOAD) {
        rcache_t *c = hashmap_get(&op->r->cache, op->bare);
        op->gen = c ? c->gen : 0;
    }
    if (tern_storage_submit(op->r->srv, run_op, op_done, op) != 0) {
        log_error(TAG, "%s: cannot queue roster job", op->bare);
        rcache_complete(op, TERN_EIO);
        if (op->iq)
            tern_iq_saved_error(op->iq, "wait", "internal-server-error", NULL);
        op_free(op);
    }
}

/* ---- iq handlers ---- */

static bool own_account(const tern_iq_t *iq)
{
    /* §2.1.5: a roster belongs to its user alone. */
    return iq->from && iq->from->local &&
           (!iq->to || (iq->to->local && strcmp(iq->to->local, iq->from->local) == 0 &&
                        strcmp(iq->to->domain, iq->from->domain) == 0));
}

/* Parses the one <item/> of a roster set into op->want. Returns an error
 * condition, or NULL. */
static const char *parse_set(op_t *op, const xml_node_t *query, const jid_t *self,
                             const char **etype)
{
    *etype = "modify";
    xml_node_t *item = xml_node_child(query, "item", NS_ROSTER);
    if (!item || xml_node_next(item, "item", NS_ROSTER))
        return "bad-request"; /* §2.3.3: exactly one item */
    const char *jid = xml_node_attr(item, "jid");
    jid_t j = {0};
    if (!jid)
        return "bad-request";
    if (jid_parse(jid, &j) != 0)
        return "jid-malformed";
    op->want.jid = jid_bare_string(&j);
    bool is_self = j.local && self->local && strcmp(j.local, self->local) == 0 &&
                   strcmp(j.domain, self->domain) == 0;
    jid_clear(&j);
    if (is_self) {
        *etype = "cancel";
        return "not-allowed"; /* a subscription to oneself has no meaning */
    }
    const char *sub = xml_node_attr(item, "subscription");
    op->remove = sub && strcmp(sub, "remove") == 0;
    if (op->remove)
        return NULL;
    const char *name = xml_node_attr(item, "name");
    if (name && strlen(name) > MAX_TEXT)
        return "not-acceptable";
    if (name && *name)
        op->want.name = tern_xstrdup(name);
    for (xml_node_t *g = xml_node_child(item, "group", NS_ROSTER); g;
         g = xml_node_next(g, "group", NS_ROSTER)) {
        const char *text = xml_node_text(g);
        if (!text || !*text || strlen(text) > MAX_TEXT || op->want.ngroups >= MAX_GROUPS)
            return "not-acceptable"; /* §2.3.3: empty or oversized group */
        for (size_t i = 0; i < op->want.ngroups; i++)
            if (strcmp(op->want.groups[i], text) == 0)
                return "bad-request"; /* §2.3.3: the same group twice */
        op->want.groups = tern_xrealloc(op->want.groups, (op->want.ngroups + 1) * sizeof(char *));
        op->want.groups[op->want.ngroups++] = tern_xstrdup(text);
    }
    return NULL;
}

static tern_handled_t on_roster(void *state, tern_iq_t *iq)
{
    roster_t *r = state;
    if (!own_account(iq)) {
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    op_t *op = op_new(r, iq->is_set ? OP_SET : OP_GET, iq->from);
    if (iq->is_set) {
        const char *etype;
        const char *err = parse_set(op, iq->payload, iq->from, &etype);
        if (err) {
            tern_iq_error(iq, etype, err, NULL);
            op_free(op);
            return TERN_HANDLED;
        }
    } else {
        const char *ver = xml_node_attr(iq->payload, "ver");
        if (ver)
            op->client_ver = tern_xstrdup(ver);
        if (iq->session)
            tern_session_set(iq->session, r->slot, (void *)1); /* §2.1.6 interested */
    }
    op->iq = tern_iq_save(iq);
    op_submit(op);
    return TERN_HANDLED;
}

/* ---- presence hooks ---- */

static bool is_subscription_type(const char *t)
{
    return t && (strcmp(t, "subscribe") == 0 || strcmp(t, "subscribed") == 0 ||
                 strcmp(t, "unsubscribe") == 0 || strcmp(t, "unsubscribed") == 0);
}

/* Presence from a session of the account to every contact allowed to see
 * it, from the cache. */
static void broadcast_cached(roster_t *r, rcache_t *c, const xml_stanza_t *st)
{
    size_t it = 0;
    void *v;
    char *user = account_of(c->bare);
    bool filter = blocking_any(r->host, user);
    while (hashmap_next(&c->items, &it, NULL, &v)) {
        const ritem_t *item = v;
        if (!(item->sub & ROSTER_SUB_FROM) || (filter && contact_blocked(r, user, item->jid)))
            continue;
        xml_stanza_t *copy = xml_stanza_copy(st);
        xml_node_set_attr(xml_stanza_root(copy), "to", item->jid);
        tern_route(r->srv, copy);
        xml_stanza_unref(copy);
    }
    free(user);
}

static void on_bound(void *state, tern_session_t *s)
{
    roster_t *r = state;
    const jid_t *jid = tern_session_jid(s);
    if (!jid || !jid->local)
        return;
    char *bare = jid_bare_string(jid);
    rcache_t *c = hashmap_get(&r->cache, bare);
    if (c) {
        c->sessions++;
        free(bare);
        return;
    }
    c = tern_xcalloc(1, sizeof(*c));
    c->bare = bare;
    hashmap_init(&c->items);
    c->sessions = 1;
    c->gen = ++r->next_gen;
    hashmap_put(&r->cache, c->bare, c);
    op_submit(op_new(r, OP_LOAD, jid));
}

static void on_closed(void *state, tern_session_t *s)
{
    roster_t *r = state;
    const jid_t *jid = tern_session_jid(s);
    if (!jid || !jid->local)
        return;
    char *bare = jid_bare_string(jid);
    rcache_t *c = hashmap_get(&r->cache, bare);
    free(bare);
    if (c && --c->sessions == 0) {
        hashmap_del(&r->cache, c->bare);
        rcache_free(c);
    }
}

static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    roster_t *r = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0 || !ev->from || !ev->from->local)
        return TERN_PASS;
    const char *type = xml_node_attr(root, "type");
    if (!ev->to) {
        /* Broadcast (§4.2, §4.4, §4.5); sm.c echoes it to the user's own
         * resources after this hook. */
        bool available = ev->session && tern_session_available(ev->session);
        if (type && strcmp(type, "unavailable") != 0)
            return TERN_PASS;
        if (type && !available)
            return TERN_PASS; /* never announced: nothing to withdraw */
        bool initial = !type && !available;
        char *bare = jid_bare_string(ev->from);
        rcache_t *c = initial ? NULL : rcache_usable(r, bare);
        free(bare);
        if (c) {
            broadcast_cached(r, c, ev->stanza);
            return TERN_PASS;
        }
        op_t *op = op_new(r, OP_BROADCAST, ev->from);
        op->st = xml_stanza_copy(ev->stanza);
        op->initial = initial;
        if (op->initial && ev->session)
            op->session = tern_session_ref(ev->session);
        op_submit(op);
        return TERN_PASS;
    }
    if (!is_subscription_type(type))
        return TERN_PASS;
    char *contact = jid_bare_string(ev->to);
    char *self = jid_bare_string(ev->from);
    bool to_self = strcmp(contact, self) == 0;
    free(self);
    if (to_self || !ev->to->local) {
        free(contact);
        return TERN_HANDLED; /* no subscriptions to oneself or to a server */
    }
    op_t *op = op_new(r, OP_OUT_SUB, ev->from);
    op->contact = contact;
    op->type = tern_xstrdup(type);
    op->st = xml_stanza_ref(ev->stanza);
    op_submit(op);
    return TERN_HANDLED;
}

static tern_handled_t on_inbound(void *state, tern_stanza_ev_t *ev)
{
    roster_t *r = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0)
        return TERN_PASS;
    const char *type = xml_node_attr(root, "type");
    bool probe = type && strcmp(type, "probe") == 0;
    if (!probe && !is_subscription_type(type))
        return TERN_PASS;
    if (!ev->from)
        return TERN_HANDLED; /* nobody to answer */
    jid_t account = {0};
    if (jid_from_parts(ev->to->local, ev->to->domain, NULL, &account) != 0)
        return TERN_HANDLED;
    op_t *op = op_new(r, probe ? OP_PROBE : OP_IN_SUB, &account);
    jid_clear(&account);
    op->contact = jid_bare_string(ev->from);
    if (strcmp(op->contact, op->bare) == 0) {
        op_free(op);
        return TERN_HANDLED;
    }
    if (probe) {
        /* Answers go where the probe came from (a bare JID from servers,
         * a full JID from a client that probes itself). */
        rcache_t *c = rcache_usable(r, op->bare);
        if (c) {
            const ritem_t *it = hashmap_get(&c->items, op->contact);
            free(op->contact);
            op->contact = jid_to_string(ev->from);
            op->actions =
                it && (it->sub & ROSTER_SUB_FROM) ? ACT_SEND_PRESENCE : ACT_REPLY_UNSUBSCRIBED;
            op_done(op, 0); /* what the job would have decided, from memory */
            return TERN_HANDLED;
        }
        free(op->contact);
        op->contact = jid_to_string(ev->from);
    } else {
        op->type = tern_xstrdup(type);
        /* §3.1.3: the request is stored and delivered from the bare JID. */
        op->st = xml_stanza_copy(ev->stanza);
        xml_node_t *copy_root = xml_stanza_root(op->st);
        xml_node_set_attr(copy_root, "from", op->contact);
        xml_node_set_attr(copy_root, "to", op->bare);
    }
    op_submit(op);
    return TERN_HANDLED;
}

static void roster_features(void *state, tern_session_t *s, xml_node_t *features)
{
    (void)state;
    if (!tern_session_is_authenticated(s))
        return;
    xml_node_add_child(features, "ver", NS_ROSTERVER);
    xml_node_add_child(features, "sub", NS_PRE_APPROVAL);
}

static void *roster_init(tern_module_t *m)
{
    roster_t *r = tern_xcalloc(1, sizeof(*r));
    r->host = tern_module_host(m);
    r->srv = tern_host_server(r->host);
    r->slot = tern_module_session_slot(m);
    hashmap_init(&r->cache);
    tern_register_session_bound(m, on_bound);
    tern_register_session_closed(m, on_closed);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_ROSTER, "query", on_roster);
    tern_register_hook(m, TERN_HOOK_OUTBOUND, 0, on_outbound);
    tern_register_hook(m, TERN_HOOK_INBOUND, 0, on_inbound);
    tern_register_stream_features(m, roster_features);
    return r;
}

static void roster_fini(void *state)
{
    roster_t *r = state;
    size_t it = 0;
    void *v;
    while (hashmap_next(&r->cache, &it, NULL, &v))
        rcache_free(v);
    hashmap_free(&r->cache);
    free(r);
}

const tern_module_def_t mod_roster = {"roster", TERN_MODULE_API_VERSION, roster_init, roster_fini};
