/* SPDX-License-Identifier: MIT
 * pep.c - Personal Eventing via PubSub (XEP-0163): a publish-subscribe
 * service on every account's bare JID, where clients keep avatars,
 * nicknames, bookmarks and OMEMO keys.
 *
 * Each account's nodes are a ps_service_t of the node core (pubsub.h)
 * with the owner as the only creator and PEP defaults (presence access,
 * one item, last item sent on presence). Everything about an account
 * happens on the worker that owns it (its sessions, the iqs to its bare
 * JID, the presences to it), so an account's state needs no lock.
 *
 * Who gets a notification (§4.3): explicit subscribers, plus every
 * "recipient": an available resource of the owner or of anyone who sent
 * the owner presence, whose entity capabilities (XEP-0115, learnt by
 * caps.c) list <node>+notify, and who passes the node's access model.
 * Recipients come and go with presence; a new one, or one whose caps ver
 * changed, gets the newest item of every node it wants (§4.3.2).
 *
 * Access models presence and roster are answered from the owner's
 * roster, which lives in storage: every batch of events for an account
 * first reads the roster (with the nodes, the first time) in one storage
 * job, then handles the events in arrival order. An account with no
 * session and nothing queued is dropped from memory after its batch.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "blocking.h"
#include "caps.h"
#include "pep.h"
#include "pubsub.h"
#include "roster.h"
#include "tern/module.h"
#include "vcard.h"

#define PEP_MAX_QUEUED 256 /* events waiting for one account's batch */
#define PEP_MAX_RECIPS 1024

#define NS_PEP_VCARD_CONVERSION "urn:xmpp:pep-vcard-conversion:0"
#define NS_BOOKMARKS            "storage:bookmarks"
#define NS_BOOKMARKS2           "urn:xmpp:bookmarks:1"

typedef struct {
    unsigned sub;
    char **groups; /* NULL-terminated */
    char jid[];    /* the map's key */
} contact_t;

typedef struct {
    char *ver;   /* caps verification string, "" for none */
    char full[]; /* the map's key */
} recip_t;

typedef enum { EV_IQ, EV_LAST, EV_CALL } ev_kind_t;

typedef struct acct acct_t;
/* EV_CALL: runs with the account's nodes loaded (ok), or ok false when
 * they could not be; it frees ud either way. */
typedef void (*acct_call_t)(acct_t *a, void *ud, bool ok);

typedef struct ev {
    ev_kind_t kind;
    bool internal;    /* EV_IQ made by the server for the owner: no reply */
    xml_stanza_t *st; /* EV_IQ */
    jid_t from;       /* EV_IQ */
    char *to;         /* EV_LAST: the recipient's full JID */
    acct_call_t call; /* EV_CALL */
    void *ud;
    struct ev *next;
} ev_t;

typedef struct pep pep_t;

struct acct {
    pep_t *pep;
    char *bare, *local;
    ps_service_t svc;
    ps_hooks_t hooks;
    bool loaded;       /* nodes read from storage */
    bool internal_now; /* handling a server-made publish (XEP-0398) */
    bool busy;         /* a storage job is in flight */
    hashmap_t roster;  /* contact bare JID -> contact_t */
    hashmap_t recips;  /* recipient full JID -> recip_t */
    ev_t *qhead, **qtail;
    size_t nq;
};

struct pep {
    tern_host_t *host;
    tern_server_t *srv;
    hashmap_t accts; /* bare JID -> acct_t (key = acct->bare) */
};

/* ------------------------------------------------------------------ helpers */

static char *bare_of(const char *full)
{
    jid_t j;
    if (jid_parse(full, &j) != 0)
        return NULL;
    char *b = jid_bare_string(&j);
    jid_clear(&j);
    return b;
}

static void contact_free(contact_t *c)
{
    for (size_t i = 0; c->groups && c->groups[i]; i++)
        free(c->groups[i]);
    free(c->groups);
    free(c);
}

static void recip_free(recip_t *r)
{
    free(r->ver);
    free(r);
}

/* Empties a map of contact_t (is_roster) or recip_t, ready for reuse. */
static void map_clear(hashmap_t *m, bool is_roster)
{
    const char *k;
    void *v;
    for (size_t it = 0; hashmap_next(m, &it, &k, &v);) {
        if (is_roster)
            contact_free(v);
        else
            recip_free(v);
    }
    hashmap_free(m);
    hashmap_init(m);
}

static void ev_free(ev_t *e)
{
    if (e->call) /* never ran: its owner still learns */
        e->call(NULL, e->ud, false);
    if (e->st)
        xml_stanza_unref(e->st);
    jid_clear(&e->from);
    free(e->to);
    free(e);
}

static bool owner_online(const acct_t *a)
{
    return tern_user_sessions(a->pep->host, a->bare) != NULL;
}

/* ------------------------------------------------------------------ core hooks */

/* presence: the contact receives the owner's presence (subscription from
 * or both); roster: the contact is in one of the node's allowed groups. */
static bool roster_allows(void *ud, const ps_node_t *n, const char *bare)
{
    acct_t *a = ud;
    const contact_t *c = hashmap_get(&a->roster, bare);
    if (!c)
        return false;
    if (strcmp(n->cfg.access_model, "presence") == 0)
        return (c->sub & ROSTER_SUB_FROM) != 0;
    for (size_t i = 0; c->groups && c->groups[i]; i++)
        if (ps_group_allowed(n, c->groups[i]))
            return true;
    return false;
}

/* Whether the client behind ver asked for node's notifications (§4.3). */
static bool wants(const acct_t *a, const char *ver, const char *node)
{
    if (!ver || !*ver)
        return false;
    size_t len = strlen(node) + sizeof("+notify");
    char *feat = tern_xmalloc(len);
    snprintf(feat, len, "%s+notify", node);
    bool yes = caps_has_feature(a->pep->host, ver, feat);
    free(feat);
    return yes;
}

/* XEP-0163 §4.3.3: nothing goes to someone the owner blocks (XEP-0191). */
static bool blocked(const acct_t *a, const char *full)
{
    if (!blocking_any(a->pep->host, a->local))
        return false;
    jid_t j;
    if (jid_parse(full, &j) != 0)
        return true;
    bool b = blocking_blocks(a->pep->host, a->local, &j);
    jid_clear(&j);
    return b;
}

static void fanout(void *ud, ps_service_t *svc, const ps_node_t *n, xml_stanza_t *m)
{
    acct_t *a = ud;
    const char *full;
    void *v;
    for (size_t it = 0; hashmap_next(&a->recips, &it, &full, &v);) {
        const recip_t *r = v;
        if (ps_is_subscriber(n, full) || !wants(a, r->ver, n->name))
            continue;
        char *bare = bare_of(full);
        bool ok =
            bare && !ps_is_subscriber(n, bare) && ps_may_see(svc, n, bare) && !blocked(a, full);
        free(bare);
        if (!ok)
            continue;
        ps_out_push(svc, xml_stanza_copy_to(m, full, NS_CLIENT));
    }
}

typedef struct {
    acct_t *a;
    const char *ver;
} want_ctx_t;

static bool want_node(void *ud, const char *node)
{
    want_ctx_t *w = ud;
    return wants(w->a, w->ver, node);
}

/* XEP-0398 §3.1: an avatar the owner published through XEP-0084 becomes
 * the vCard's photo (for vCard-based clients and the XEP-0153 hash in
 * presence); an empty metadata item (avatar switched off) removes it. */
static void published(void *ud, ps_service_t *svc, const ps_node_t *n, const ps_item_t *it)
{
    acct_t *a = ud;
    if (a->internal_now || strcmp(n->name, NS_AVATAR_METADATA) != 0 || !it->payload)
        return;
    size_t len = strlen(it->payload);
    xml_stanza_t *meta = xml_parse_element(it->payload, len, NS_CLIENT, 2 * len + 1024);
    xml_node_t *m = meta ? xml_stanza_root(meta) : NULL;
    if (xml_node_is(m, "metadata", NS_AVATAR_METADATA)) {
        xml_node_t *info = xml_node_child(m, "info", NS_AVATAR_METADATA);
        /* §3.1: the info that is not a pointer to an external URL */
        while (info && xml_node_attr(info, "url"))
            info = xml_node_next(info, "info", NS_AVATAR_METADATA);
        const char *id = info ? xml_node_attr(info, "id") : NULL;
        const char *data = id ? ps_item_payload(svc, NS_AVATAR_DATA, id) : NULL;
        if (!xml_node_child(m, "info", NS_AVATAR_METADATA)) {
            vcard_set_photo(a->pep->host, a->local, NULL, NULL, NULL);
        } else if (data) {
            size_t dl = strlen(data);
            xml_stanza_t *d = xml_parse_element(data, dl, NS_CLIENT, 2 * dl + 1024);
            if (d && xml_node_is(xml_stanza_root(d), "data", NS_AVATAR_DATA))
                vcard_set_photo(a->pep->host, a->local, xml_node_attr(info, "type"),
                                xml_node_text(xml_stanza_root(d)), id);
            if (d)
                xml_stanza_unref(d);
        }
    }
    if (meta)
        xml_stanza_unref(meta);
}

/* ------------------------------------------------------------------ accounts */

static acct_t *acct_get(pep_t *p, const char *bare, bool create)
{
    acct_t *a = hashmap_get(&p->accts, bare);
    if (a || !create)
        return a;
    const char *at = strchr(bare, '@');
    if (!at)
        return NULL;
    a = tern_xcalloc(1, sizeof(*a));
    a->pep = p;
    a->bare = tern_xstrdup(bare);
    a->local = tern_xstrndup(bare, (size_t)(at - bare));
    ps_service_init(&a->svc, p->srv, bare, at + 1, a->local, bare);
    a->hooks.roster_allows = roster_allows;
    a->hooks.fanout = fanout;
    a->hooks.published = published;
    a->hooks.ud = a;
    a->svc.hooks = &a->hooks;
    hashmap_init(&a->roster);
    hashmap_init(&a->recips);
    a->qtail = &a->qhead;
    hashmap_put(&p->accts, a->bare, a);
    return a;
}

static void acct_free(acct_t *a)
{
    while (a->qhead) {
        ev_t *e = a->qhead;
        a->qhead = e->next;
        ev_free(e);
    }
    ps_service_clear(&a->svc);
    map_clear(&a->roster, true);
    hashmap_free(&a->roster);
    map_clear(&a->recips, false);
    hashmap_free(&a->recips);
    free(a->bare);
    free(a->local);
    free(a);
}

/* Forgets an account nobody needs in memory: its owner is offline (so no
 * recipient can be tracked) and nothing waits for it. */
static void acct_maybe_drop(acct_t *a)
{
    if (a->busy || a->qhead || owner_online(a))
        return;
    hashmap_del(&a->pep->accts, a->bare);
    acct_free(a);
}

static void route_out(acct_t *a)
{
    size_t n;
    xml_stanza_t **out = ps_take_out(&a->svc, &n);
    for (size_t i = 0; i < n; i++) {
        tern_route(a->pep->srv, out[i]);
        xml_stanza_unref(out[i]);
    }
    free(out);
}

static void learned(void *ud, bool ok);

typedef struct {
    pep_t *pep;
    char *bare, *full;
} caps_wait_t;

/* Sends to (a recipient) the newest items it wants, once its caps are
 * known; asks for them when they are not. */
static void send_last(acct_t *a, const char *to)
{
    const recip_t *r = hashmap_get(&a->recips, to);
    const char *ver = r ? r->ver : NULL;
    if (!ver || !*ver)
        return;
    if (!caps_known(a->pep->host, ver))
        return; /* learned() queues another EV_LAST when they arrive */
    char *bare = bare_of(to);
    if (!bare)
        return;
    want_ctx_t w = {a, ver};
    if (!blocked(a, to))
        ps_send_last_items(&a->svc, to, bare, want_node, &w);
    free(bare);
}

/* Removes from svc's outbox, past index from, the iq answering id;
 * returns whether it was a result. */
static bool drop_reply(ps_service_t *svc, size_t from, const char *id)
{
    for (size_t i = from; id && i < svc->nout; i++) {
        xml_node_t *r = xml_stanza_root(svc->out[i]);
        const char *rid = xml_node_attr(r, "id");
        if (strcmp(r->name, "iq") == 0 && rid && strcmp(rid, id) == 0) {
            const char *type = xml_node_attr(r, "type");
            bool ok = type && strcmp(type, "result") == 0;
            xml_stanza_unref(svc->out[i]);
            memmove(svc->out + i, svc->out + i + 1, (svc->nout - i - 1) * sizeof(*svc->out));
            svc->nout--;
            return ok;
        }
    }
    return false;
}

/* A request the server makes as the owner (XEP-0398, XEP-0411): handled
 * like the owner's own, its answer dropped (whether it succeeded is
 * returned), and not converted back. */
static bool handle_internal(acct_t *a, const xml_stanza_t *iq, const jid_t *owner)
{
    size_t before = a->svc.nout;
    a->internal_now = true;
    ps_handle(&a->svc, iq, owner);
    a->internal_now = false;
    return drop_reply(&a->svc, before, xml_node_attr(xml_stanza_root(iq), "id"));
}

static void run_events(acct_t *a)
{
    ev_t *e = a->qhead;
    a->qhead = NULL;
    a->qtail = &a->qhead;
    a->nq = 0;
    while (e) {
        ev_t *next = e->next;
        if (e->kind == EV_IQ && e->internal) {
            handle_internal(a, e->st, &e->from);
        } else if (e->kind == EV_IQ) {
            ps_handle(&a->svc, e->st, &e->from);
        } else if (e->kind == EV_CALL) {
            acct_call_t call = e->call;
            e->call = NULL;
            call(a, e->ud, true);
        } else {
            send_last(a, e->to);
        }
        ev_free(e);
        e = next;
    }
    route_out(a);
}

typedef struct {
    pep_t *pep;
    char *bare, *host, *user;
    bool want_nodes;
    ps_stored_t *stored;
    hashmap_t roster;
} batch_t;

static int put_contact(void *ud, const char *contact, unsigned sub, char *const *groups,
                       size_t ngroups)
{
    hashmap_t *m = ud;
    size_t jl = strlen(contact) + 1;
    contact_t *c = tern_xcalloc(1, sizeof(*c) + jl);
    memcpy(c->jid, contact, jl);
    c->sub = sub;
    c->groups = tern_xcalloc(ngroups + 1, sizeof(char *));
    for (size_t i = 0; i < ngroups; i++)
        c->groups[i] = tern_xstrdup(groups[i]);
    contact_t *old = hashmap_del(m, c->jid);
    if (old)
        contact_free(old);
    hashmap_put(m, c->jid, c);
    return 0;
}

static int batch_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    batch_t *b = arg;
    int rc = roster_storage_each(drv, db, b->host, b->user, put_contact, &b->roster);
    if (rc == 0 && b->want_nodes)
        rc = ps_stored_read(drv, db, b->host, b->user, &b->stored);
    return rc;
}

static void batch_free(batch_t *b)
{
    ps_stored_free(b->stored);
    map_clear(&b->roster, true);
    hashmap_free(&b->roster);
    free(b->bare);
    free(b->host);
    free(b->user);
    free(b);
}

static void kick(acct_t *a);

static void batch_done(void *arg, int result)
{
    batch_t *b = arg;
    acct_t *a = acct_get(b->pep, b->bare, false);
    if (!a) {
        batch_free(b);
        return;
    }
    a->busy = false;
    if (result != 0) {
        /* Without the nodes every answer would be wrong: tell the
         * askers to retry rather than serve an empty service. */
        log_warn("pep", "loading %s failed (%d)", a->bare, result);
        for (ev_t *e = a->qhead; e; e = e->next)
            if (e->kind == EV_IQ && !e->internal)
                tern_bounce(a->pep->srv, e->st, "wait", "internal-server-error", NULL);
        while (a->qhead) {
            ev_t *e = a->qhead;
            a->qhead = e->next;
            ev_free(e);
        }
        a->qtail = &a->qhead;
        a->nq = 0;
    } else {
        a->svc.max_payload = tern_host_config(a->pep->host)->pubsub_max_payload;
        if (b->want_nodes && !a->loaded) {
            ps_stored_apply(&a->svc, b->stored);
            a->loaded = true;
        }
        map_clear(&a->roster, true);
        hashmap_free(&a->roster);
        a->roster = b->roster;
        hashmap_init(&b->roster);
        run_events(a);
    }
    batch_free(b);
    if (a->qhead)
        kick(a);
    else
        acct_maybe_drop(a);
}

/* Starts a batch for a's queued events unless one is running. */
static void kick(acct_t *a)
{
    if (a->busy || !a->qhead)
        return;
    batch_t *b = tern_xcalloc(1, sizeof(*b));
    b->pep = a->pep;
    b->bare = tern_xstrdup(a->bare);
    b->host = tern_xstrdup(a->svc.host);
    b->user = tern_xstrdup(a->local);
    b->want_nodes = !a->loaded;
    hashmap_init(&b->roster);
    a->busy = true;
    if (tern_storage_submit(a->pep->srv, batch_run, batch_done, b) != 0) {
        batch_free(b);
        a->busy = false;
        for (ev_t *e = a->qhead; e; e = e->next)
            if (e->kind == EV_IQ && !e->internal)
                tern_bounce(a->pep->srv, e->st, "wait", "resource-constraint", NULL);
        while (a->qhead) {
            ev_t *e = a->qhead;
            a->qhead = e->next;
            ev_free(e);
        }
        a->qtail = &a->qhead;
        a->nq = 0;
    }
}

static bool enqueue(acct_t *a, ev_t *e)
{
    if (a->nq >= PEP_MAX_QUEUED) {
        ev_free(e);
        return false;
    }
    *a->qtail = e;
    a->qtail = &e->next;
    a->nq++;
    kick(a);
    return true;
}

static void queue_last(acct_t *a, const char *to)
{
    ev_t *e = tern_xcalloc(1, sizeof(*e));
    e->kind = EV_LAST;
    e->to = tern_xstrdup(to);
    enqueue(a, e);
}

static void learned(void *ud, bool ok)
{
    caps_wait_t *w = ud;
    acct_t *a = ok ? acct_get(w->pep, w->bare, false) : NULL;
    if (a && hashmap_get(&a->recips, w->full))
        queue_last(a, w->full);
    free(w->bare);
    free(w->full);
    free(w);
}

/* ------------------------------------------------------------------ recipients */

/* An available presence from full (the owner's own resource or a contact)
 * with its caps element c (or NULL): (re)records it, and sends it the last
 * items when it is new or its capabilities changed. */
static void recipient_down(acct_t *a, const char *full);

static void recipient_up(acct_t *a, const char *full, const xml_node_t *c)
{
    const char *ver = c ? caps_ver_of(c) : NULL;
    recip_t *r = hashmap_get(&a->recips, full);
    if (r && strcmp(r->ver, ver ? ver : "") == 0)
        return;
    if (!r) {
        if (hashmap_count(&a->recips) >= PEP_MAX_RECIPS)
            return;
        size_t fl = strlen(full) + 1;
        r = tern_xcalloc(1, sizeof(*r) + fl);
        memcpy(r->full, full, fl);
        hashmap_put(&a->recips, r->full, r);
    }
    free(r->ver);
    r->ver = tern_xstrdup(ver ? ver : "");
    if (!ver)
        return;
    caps_wait_t *w = tern_xcalloc(1, sizeof(*w));
    w->pep = a->pep;
    w->bare = tern_xstrdup(a->bare);
    w->full = tern_xstrdup(full);
    int state = caps_learn(a->pep->host, full, c, learned, w);
    if (state != CAPS_PENDING) {
        free(w->bare);
        free(w->full);
        free(w);
    }
    if (state == CAPS_KNOWN)
        queue_last(a, full);
}

static void recipient_down(acct_t *a, const char *full)
{
    recip_t *r = hashmap_del(&a->recips, full);
    if (r)
        recip_free(r);
}

/* XEP-0163 §4.3.2: events go to available resources of non-negative
 * priority; a negative one is treated as gone. So is one without caps we
 * can check (§4.2): it cannot ask for anything, and keeping no state for
 * it keeps PEP free for the many clients that never use it. */
static bool takes_events(const xml_node_t *presence)
{
    const xml_node_t *pr = xml_node_child(presence, "priority", NULL);
    return !xml_node_attr(presence, "type") && (!pr || atoi(xml_node_text(pr)) >= 0) &&
           caps_ver_of(xml_node_child(presence, "c", NS_CAPS));
}

/* The owner's own broadcast presence: its resources are recipients too. */
static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    pep_t *p = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (ev->to || strcmp(root->name, "presence") != 0 || !ev->from || !ev->from->resource)
        return TERN_PASS;
    const char *type = xml_node_attr(root, "type");
    if (type && strcmp(type, "unavailable") != 0)
        return TERN_PASS;
    char *bare = jid_bare_string(ev->from);
    char *full = jid_to_string(ev->from);
    bool up = takes_events(root);
    acct_t *a = acct_get(p, bare, up);
    if (a && up)
        recipient_up(a, full, xml_node_child(root, "c", NS_CAPS));
    else if (a)
        recipient_down(a, full);
    free(bare);
    free(full);
    return TERN_PASS;
}

/* Presence from a contact to the owner: the contact's resource is a
 * recipient while available. */
static tern_handled_t on_inbound(void *state, tern_stanza_ev_t *ev)
{
    pep_t *p = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0 || !ev->from || !ev->from->resource || !ev->to)
        return TERN_PASS;
    const char *type = xml_node_attr(root, "type");
    if (type && strcmp(type, "unavailable") != 0 && strcmp(type, "error") != 0)
        return TERN_PASS;
    /* A room occupant's presence (it carries muc#user) is not a person
     * who could take events: a notification to room/nick would be relayed
     * as a private message. */
    if (xml_node_child(root, "x", NS_MUC_USER))
        return TERN_PASS;
    bool up = takes_events(root);
    char *bare = jid_bare_string(ev->to);
    char *from_bare = jid_bare_string(ev->from);
    acct_t *a = NULL;
    if (bare && from_bare && strcmp(bare, from_bare) != 0) {
        /* Also while the owner is offline (§4.3.2): the contact still gets
         * the last items; the account is dropped again after that batch. */
        a = acct_get(p, bare, up);
    }
    if (a) {
        char *full = jid_to_string(ev->from);
        if (up)
            recipient_up(a, full, xml_node_child(root, "c", NS_CAPS));
        else
            recipient_down(a, full);
        free(full);
        acct_maybe_drop(a); /* an offline owner's, with nothing to send */
    }
    free(bare);
    free(from_bare);
    return TERN_PASS;
}

/* The owner's last session is gone: contacts' presences will stop coming,
 * so the recipients go with it. */
static void on_closed(void *state, tern_session_t *s)
{
    pep_t *p = state;
    const jid_t *j = tern_session_jid(s);
    if (!j)
        return;
    char *bare = jid_bare_string(j);
    acct_t *a = bare ? acct_get(p, bare, false) : NULL;
    if (a) {
        char *full = jid_to_string(j);
        recipient_down(a, full);
        free(full);
        bool others = false;
        for (tern_session_t *o = tern_user_sessions(p->host, bare); o;
             o = tern_session_next_resource(o))
            others |= o != s;
        if (!others) {
            map_clear(&a->recips, false);
            if (!a->busy && !a->qhead) {
                hashmap_del(&p->accts, a->bare);
                acct_free(a);
            }
        }
    }
    free(bare);
}

/* ------------------------------------------------------------------ on the owner's behalf */

/* <iq type='set'><pubsub/></iq> with a private id, for handle_internal;
 * *pubsub receives the <pubsub/> element to fill. */
static xml_stanza_t *internal_iq(xml_node_t **pubsub)
{
    xml_stanza_t *iq = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(iq);
    xml_node_set_attr(root, "type", "set");
    char iid[64];
    snprintf(iid, sizeof(iid), "pep-internal-%p", (void *)iq);
    xml_node_set_attr(root, "id", iid);
    *pubsub = xml_node_add_child(root, "pubsub", NS_PUBSUB);
    return iq;
}

/* A publish of payload (copied) as item id of node, with the
 * publish-options opts (NULL-terminated var/value pairs) if any. */
static xml_stanza_t *internal_publish(const char *node, const char *id, const xml_node_t *payload,
                                      const char *const *opts)
{
    xml_node_t *ps;
    xml_stanza_t *iq = internal_iq(&ps);
    xml_node_t *pub = xml_node_add_child(ps, "publish", NS_PUBSUB);
    xml_node_set_attr(pub, "node", node);
    xml_node_t *item = xml_node_add_child(pub, "item", NS_PUBSUB);
    xml_node_set_attr(item, "id", id);
    xml_node_append_copy(item, payload);
    if (opts) {
        xml_node_t *x =
            xml_node_add_child(xml_node_add_child(ps, "publish-options", NS_PUBSUB), "x", NS_DATA);
        xml_node_set_attr(x, "type", "submit");
        xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
        xml_node_set_attr(f, "var", "FORM_TYPE");
        xml_node_set_attr(f, "type", "hidden");
        xml_node_add_child_text(f, "value", NS_DATA, NS_PUBSUB "#publish-options");
        for (size_t i = 0; opts[i] && opts[i + 1]; i += 2) {
            f = xml_node_add_child(x, "field", NS_DATA);
            xml_node_set_attr(f, "var", opts[i]);
            xml_node_add_child_text(f, "value", NS_DATA, opts[i + 1]);
        }
    }
    return iq;
}

static int publish_internal(pep_t *p, const char *bare, const char *node, const char *id,
                            const char *payload, size_t payload_len)
{
    acct_t *a = acct_get(p, bare, true);
    if (!a)
        return -1;
    xml_stanza_t *pl = xml_parse_element(payload, payload_len, NS_PUBSUB, 2 * payload_len + 1024);
    if (!pl)
        return -1;
    xml_stanza_t *iq = internal_publish(node, id, xml_stanza_root(pl), NULL);
    xml_stanza_unref(pl);
    ev_t *e = tern_xcalloc(1, sizeof(*e));
    e->kind = EV_IQ;
    e->internal = true;
    e->st = iq;
    if (jid_parse(bare, &e->from) != 0) {
        ev_free(e);
        return -1;
    }
    return enqueue(a, e) ? 0 : -1;
}

int pep_publish_avatar(tern_host_t *h, const char *bare, const char *b64, const char *type,
                       size_t bytes, const char *sha1)
{
    pep_t *p = tern_host_module_state(h, &mod_pep);
    if (!p || !b64 || !sha1)
        return -1;
    size_t cap = strlen(b64) + 128;
    char *data = tern_xmalloc(cap);
    int n = snprintf(data, cap, "<data xmlns='%s'>%s</data>", NS_AVATAR_DATA, b64);
    int rc = publish_internal(p, bare, NS_AVATAR_DATA, sha1, data, (size_t)n);
    free(data);
    if (rc != 0)
        return rc;
    xml_stanza_t *meta = xml_stanza_new("metadata", NS_AVATAR_METADATA);
    xml_node_t *info = xml_node_add_child(xml_stanza_root(meta), "info", NS_AVATAR_METADATA);
    char num[32];
    snprintf(num, sizeof(num), "%zu", bytes);
    xml_node_set_attr(info, "bytes", num);
    xml_node_set_attr(info, "id", sha1);
    xml_node_set_attr(info, "type", type ? type : "image/png");
    size_t ml;
    char *ms = xml_node_to_string(xml_stanza_root(meta), NS_PUBSUB, &ml);
    xml_stanza_unref(meta);
    rc = ms ? publish_internal(p, bare, NS_AVATAR_METADATA, sha1, ms, ml) : -1;
    free(ms);
    return rc;
}

/* ------------------------------------------------------------------ XEP-0411 */

/* Clients that still keep bookmarks in private XML storage (XEP-0048 over
 * XEP-0049) and those that use XEP-0402 see the same bookmarks: the
 * storage:bookmarks element is made from, and turned into, the items of
 * the account's urn:xmpp:bookmarks:1 node. */

static const char *const bookmark_opts[] = {"pubsub#persist_items",
                                            "true",
                                            "pubsub#max_items",
                                            "max",
                                            "pubsub#send_last_published_item",
                                            "never",
                                            "pubsub#access_model",
                                            "whitelist",
                                            NULL};

typedef struct {
    tern_iq_saved_t *iq;
    xml_stanza_t *storage; /* set: the <storage/> to apply (a copy), else NULL */
} compat_t;

static void compat_free(compat_t *c)
{
    tern_iq_saved_free(c->iq);
    if (c->storage)
        xml_stanza_unref(c->storage);
    free(c);
}

/* XEP-0048's and XEP-0402's <conference/> carry the same fields (the
 * room's JID aside: an attribute in one, the item id in the other): copies
 * them from src (namespace from) onto dst (namespace to). */
static void conference_fields(xml_node_t *dst, const xml_node_t *src, const char *from,
                              const char *to)
{
    const char *v = xml_node_attr(src, "autojoin");
    xml_node_set_attr(dst, "autojoin",
                      v && (!strcmp(v, "true") || !strcmp(v, "1")) ? "true" : "false");
    if ((v = xml_node_attr(src, "name")))
        xml_node_set_attr(dst, "name", v);
    const xml_node_t *nick = xml_node_child(src, "nick", from);
    if (nick)
        xml_node_add_child_text(dst, "nick", to, xml_node_text(nick));
    const xml_node_t *pw = xml_node_child(src, "password", from);
    if (pw)
        xml_node_add_child_text(dst, "password", to, xml_node_text(pw));
}

/* XEP-0402 <conference/> from XEP-0048's (its jid becomes the item id). */
static xml_stanza_t *conference_0402(const xml_node_t *old)
{
    xml_stanza_t *c = xml_stanza_new("conference", NS_BOOKMARKS2);
    conference_fields(xml_stanza_root(c), old, NS_BOOKMARKS, NS_BOOKMARKS2);
    return c;
}

static void compat_get(acct_t *a, compat_t *c)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_PRIVATE);
    xml_node_t *storage = xml_node_add_child(q, "storage", NS_BOOKMARKS);
    const ps_node_t *n = NULL;
    for (const ps_node_t *x = a->svc.nodes; x && !n; x = x->next)
        if (strcmp(x->name, NS_BOOKMARKS2) == 0)
            n = x;
    size_t count = n ? n->nitems : 0;
    const ps_item_t **items = tern_xcalloc(count ? count : 1, sizeof(*items));
    size_t k = 0;
    for (const ps_item_t *it = n ? n->items : NULL; it && k < count; it = it->next)
        items[k++] = it;
    while (k--) { /* oldest first, as they were added */
        const ps_item_t *it = items[k];
        size_t len = it->payload ? strlen(it->payload) : 0;
        xml_stanza_t *p =
            len ? xml_parse_element(it->payload, len, NS_CLIENT, 2 * len + 1024) : NULL;
        xml_node_t *conf = p ? xml_stanza_root(p) : NULL;
        if (xml_node_is(conf, "conference", NS_BOOKMARKS2)) {
            xml_node_t *o = xml_node_add_child(storage, "conference", NS_BOOKMARKS);
            xml_node_set_attr(o, "jid", it->id);
            conference_fields(o, conf, NS_BOOKMARKS2, NS_BOOKMARKS);
        }
        if (p)
            xml_stanza_unref(p);
    }
    free(items);
    tern_iq_saved_reply(c->iq, r);
    xml_stanza_unref(r);
}

static void compat_set(acct_t *a, compat_t *c)
{
    jid_t owner;
    if (jid_parse(a->bare, &owner) != 0) {
        tern_iq_saved_error(c->iq, "wait", "internal-server-error", NULL);
        return;
    }
    const xml_node_t *storage = xml_stanza_root(c->storage);
    bool stored = true;
    for (const xml_node_t *o = xml_node_child(storage, "conference", NS_BOOKMARKS); o;
         o = xml_node_next(o, "conference", NS_BOOKMARKS)) {
        const char *jid = xml_node_attr(o, "jid");
        if (!jid || !*jid)
            continue;
        xml_stanza_t *conf = conference_0402(o);
        xml_stanza_t *iq =
            internal_publish(NS_BOOKMARKS2, jid, xml_stanza_root(conf), bookmark_opts);
        stored &= handle_internal(a, iq, &owner);
        xml_stanza_unref(iq);
        xml_stanza_unref(conf);
    }
    /* Bookmarks missing from the new list were removed by the client
     * (not when the list could not be stored: nothing is dropped then). */
    const ps_node_t *n = NULL;
    for (const ps_node_t *x = a->svc.nodes; x && !n; x = x->next)
        if (strcmp(x->name, NS_BOOKMARKS2) == 0)
            n = x;
    size_t gone = 0;
    char **ids = tern_xcalloc(n && n->nitems ? n->nitems : 1, sizeof(*ids));
    for (const ps_item_t *it = n && stored ? n->items : NULL; it; it = it->next) {
        bool kept = false;
        for (const xml_node_t *o = xml_node_child(storage, "conference", NS_BOOKMARKS); o && !kept;
             o = xml_node_next(o, "conference", NS_BOOKMARKS))
            kept = xml_node_attr(o, "jid") && strcmp(xml_node_attr(o, "jid"), it->id) == 0;
        if (!kept && gone < n->nitems)
            ids[gone++] = tern_xstrdup(it->id);
    }
    for (size_t i = 0; i < gone; i++) {
        xml_node_t *ps;
        xml_stanza_t *iq = internal_iq(&ps);
        xml_node_t *rt = xml_node_add_child(ps, "retract", NS_PUBSUB);
        xml_node_set_attr(rt, "node", NS_BOOKMARKS2);
        xml_node_set_attr(rt, "notify", "true");
        xml_node_set_attr(xml_node_add_child(rt, "item", NS_PUBSUB), "id", ids[i]);
        handle_internal(a, iq, &owner);
        xml_stanza_unref(iq);
        free(ids[i]);
    }
    free(ids);
    jid_clear(&owner);
    if (stored)
        tern_iq_saved_reply(c->iq, NULL);
    else /* e.g. the client made the node with another configuration */
        tern_iq_saved_error(c->iq, "cancel", "conflict",
                            "the bookmarks node refuses XEP-0402's configuration");
}

static void compat_run(acct_t *a, void *ud, bool ok)
{
    compat_t *c = ud;
    if (!ok)
        tern_iq_saved_error(c->iq, "wait", "internal-server-error", NULL);
    else if (c->storage)
        compat_set(a, c);
    else
        compat_get(a, c);
    compat_free(c);
}

tern_handled_t pep_private_bookmarks(tern_host_t *h, tern_iq_t *iq)
{
    pep_t *p = tern_host_module_state(h, &mod_pep);
    const xml_node_t *storage = xml_node_first_element(iq->payload);
    if (!p || !iq->from || !iq->from->local || !xml_node_is(storage, "storage", NS_BOOKMARKS) ||
        xml_node_next(storage, NULL, NULL))
        return TERN_PASS;
    char *bare = jid_bare_string(iq->from);
    acct_t *a = bare ? acct_get(p, bare, true) : NULL;
    free(bare);
    if (!a)
        return TERN_PASS;
    compat_t *c = tern_xcalloc(1, sizeof(*c));
    if (iq->is_set) {
        c->storage = xml_stanza_new("storage", NS_BOOKMARKS);
        for (const xml_node_t *o = xml_node_first_element(storage); o;
             o = xml_node_next(o, NULL, NULL))
            xml_node_append_copy(xml_stanza_root(c->storage), o);
    }
    c->iq = tern_iq_save(iq);
    ev_t *e = tern_xcalloc(1, sizeof(*e));
    e->kind = EV_CALL;
    e->call = compat_run;
    e->ud = c;
    enqueue(a, e); /* when full, ev_free runs compat_run(ok = false) */
    return TERN_HANDLED;
}

/* ------------------------------------------------------------------ iqs */

static tern_handled_t on_iq(void *state, tern_iq_t *iq);

tern_handled_t pep_node_info(tern_host_t *h, tern_iq_t *iq)
{
    pep_t *p = tern_host_module_state(h, &mod_pep);
    return p ? on_iq(p, iq) : TERN_PASS;
}

static tern_handled_t on_iq(void *state, tern_iq_t *iq)
{
    pep_t *p = state;
    if (!iq->from || !iq->from->local)
        return TERN_PASS;
    const jid_t *svc = iq->to ? iq->to : iq->from;
    char *bare = jid_bare_string(svc);
    acct_t *a = bare ? acct_get(p, bare, true) : NULL;
    free(bare);
    if (!a)
        return TERN_PASS;
    ev_t *e = tern_xcalloc(1, sizeof(*e));
    e->kind = EV_IQ;
    if (jid_copy(iq->from, &e->from) != 0) {
        ev_free(e);
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        return TERN_HANDLED;
    }
    e->st = xml_stanza_ref(iq->stanza);
    if (!enqueue(a, e))
        tern_iq_error(iq, "wait", "resource-constraint", NULL);
    return TERN_HANDLED;
}

static void *pep_init(tern_module_t *m)
{
    pep_t *p = tern_xcalloc(1, sizeof(*p));
    p->host = tern_module_host(m);
    p->srv = tern_host_server(p->host);
    hashmap_init(&p->accts);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PUBSUB, "pubsub", on_iq);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PUBSUB_OWNER, "pubsub", on_iq);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_DISCO_ITEMS, "query", on_iq);
    tern_register_disco_identity(m, TERN_SCOPE_ACCOUNT, "pubsub", "pep", NULL);
    static const char *const features[] = {
        NS_PUBSUB,
        NS_PUBSUB "#access-presence",
        NS_PUBSUB "#access-open",
        NS_PUBSUB "#access-roster",
        NS_PUBSUB "#access-whitelist",
        NS_PUBSUB "#auto-create",
        NS_PUBSUB "#auto-subscribe",
        NS_PUBSUB "#config-node",
        NS_PUBSUB "#config-node-max",
        NS_PUBSUB "#create-and-configure",
        NS_PUBSUB "#create-nodes",
        NS_PUBSUB "#delete-items",
        NS_PUBSUB "#delete-nodes",
        NS_PUBSUB "#filtered-notifications",
        NS_PUBSUB "#item-ids",
        NS_PUBSUB "#last-published",
        NS_PUBSUB "#multi-items",
        NS_PUBSUB "#persistent-items",
        NS_PUBSUB "#presence-notifications",
        NS_PUBSUB "#publish",
        NS_PUBSUB "#publish-options",
        NS_PUBSUB "#purge-nodes",
        NS_PUBSUB "#retract-items",
        NS_PUBSUB "#retrieve-affiliations",
        NS_PUBSUB "#retrieve-items",
        NS_PUBSUB "#retrieve-subscriptions",
        NS_PUBSUB "#subscribe",
        NS_PEP_VCARD_CONVERSION,
        NS_BOOKMARKS2 "#compat",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(features); i++)
        tern_register_disco_feature(m, TERN_SCOPE_ACCOUNT, features[i]);
    /* after blocking (100), before offline storage (-50) */
    tern_register_hook(m, TERN_HOOK_INBOUND, -40, on_inbound);
    tern_register_hook(m, TERN_HOOK_OUTBOUND, -110, on_outbound);
    tern_register_session_closed(m, on_closed);
    return p;
}

static void pep_fini(void *state)
{
    pep_t *p = state;
    const char *k;
    void *v;
    for (size_t it = 0; hashmap_next(&p->accts, &it, &k, &v);)
        acct_free(v);
    hashmap_free(&p->accts);
    free(p);
}

const tern_module_def_t mod_pep = {"pep", TERN_MODULE_API_VERSION, pep_init, pep_fini};
