/* SPDX-License-Identifier: MIT
 * pubsub.c - XEP-0060 publish-subscribe service on pubsub.<domain>
 * (pubsub_domain; "none" turns it off).
 *
 * Two layers:
 *
 *   - the node core (ps_service_t and the ps_* functions below "core"):
 *     nodes, their configuration, affiliations, subscriptions and items,
 *     the XEP-0060 access rules and error conditions, persistence in the
 *     kv store and the event notifications. It knows one service by its
 *     address (svc->jid), its storage namespace (svc->host, svc->user:
 *     stores "pubsub_nodes" and "pubsub_items:<node>") and its creation
 *     policy; it never routes by itself, it appends the stanzas it
 *     produces (replies, errors, notifications) to svc->out. PEP
 *     (pep.c, XEP-0163) makes one per account bare JID through pubsub.h.
 *   - the front end for pubsub.<domain> ("entry"): registered with
 *     tern_register_service. The router runs every stanza to the bare
 *     service domain on worker 0, so the one ps_service_t (in worker 0's
 *     instance) writes to storage from one worker, in order. The mutex
 *     stays as a guard should a stanza be handled elsewhere; the outbox is
 *     routed after it is released. Nodes are loaded from storage on the
 *     first stanza (stanzas wait meanwhile), so they survive a restart.
 */
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "pubsub.h"
#include "roster.h"
#include "tern/module.h"

#define NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define NS_NODE_CONFIG   "http://jabber.org/protocol/pubsub#node_config"
#define NS_TERN_PUBSUB   "urn:tern:pubsub:0"
#define PS_NODES_STORE   "pubsub_nodes"
#define PS_ITEMS_PREFIX  "pubsub_items:"
#define PS_DEFAULT_ITEMS 20
#define PS_MAX_ITEMS     256
#define PS_MAX_QUEUED    256
#define PS_MAX_NAME      1024 /* bytes of a node name or item id */

static const char *const aff_names[] = {"outcast", "none", "member", "publisher", "owner"};

typedef struct queued {
    xml_stanza_t *st;
    jid_t from;
    struct queued *next;
} queued_t;

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    char *domain;
    pthread_mutex_t lock; /* worker 0's instance: guards everything below */
    ps_service_t svc;
    bool loaded, loading;
    bool asking; /* a roster lookup for the queue's head is under way */
    queued_t *qhead, **qtail;
    size_t nq;
    ps_hooks_t hooks;
    struct rels *rels; /* the head's requester in its node owners' rosters */
} pubsub_t;

extern const tern_module_def_t mod_pubsub;

/* ------------------------------------------------------------------ helpers */

static bool str_true(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static bool str_bool_ok(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "0") == 0 || strcmp(v, "true") == 0 ||
                 strcmp(v, "false") == 0);
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v && *v ? tern_xstrdup(v) : NULL;
}

static void random_id(char out[33])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        memset(b, 0, sizeof(b));
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

void ps_out_push(ps_service_t *svc, xml_stanza_t *st)
{
    if (svc->nout == svc->capout) {
        svc->capout = svc->capout ? svc->capout * 2 : 8;
        svc->out = tern_xrealloc(svc->out, svc->capout * sizeof(*svc->out));
    }
    svc->out[svc->nout++] = st;
}

static void ps_error_text(ps_service_t *svc, const xml_stanza_t *st, const char *type,
                          const char *cond, const char *app, const char *text)
{
    xml_stanza_t *err = tern_error_reply(st, type, cond, NULL, false);
    if (!err)
        return;
    xml_node_t *root = xml_stanza_root(err);
    xml_node_set_attr(root, "from", svc->jid);
    xml_node_t *e = xml_node_child(root, "error", NULL);
    /* The text is in the stream's language, which it inherits (RFC 6120
     * §8.3.2 lets xml:lang be left out then). */
    xml_node_add_child_text(e, "text", NS_STANZAS, text);
    if (app)
        xml_node_add_child(e, app, NS_PUBSUB_ERRORS);
    ps_out_push(svc, err);
}

static void ps_error(ps_service_t *svc, const xml_stanza_t *st, const char *type, const char *cond,
                     const char *app, const char *feature)
{
    xml_stanza_t *err = tern_error_reply(st, type, cond, NULL, false);
    if (!err)
        return;
    xml_node_t *root = xml_stanza_root(err);
    xml_node_set_attr(root, "from", svc->jid);
    if (app) {
        xml_node_t *e = xml_node_child(root, "error", NULL);
        xml_node_t *a = xml_node_add_child(e, app, NS_PUBSUB_ERRORS);
        if (feature)
            xml_node_set_attr(a, "feature", feature);
    }
    ps_out_push(svc, err);
}

static xml_stanza_t *iq_result(ps_service_t *svc, const xml_stanza_t *req)
{
    const xml_node_t *rq = xml_stanza_root(req);
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(r);
    xml_node_set_attr(root, "type", "result");
    xml_node_set_attr(root, "id", xml_node_attr(rq, "id"));
    xml_node_set_attr(root, "from", svc->jid);
    xml_node_set_attr(root, "to", xml_node_attr(rq, "from"));
    return r;
}

static xml_node_t *add_field(xml_node_t *x, const char *var, const char *type, const char *value)
{
    xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    if (type)
        xml_node_set_attr(f, "type", type);
    if (value)
        xml_node_add_child_text(f, "value", NS_DATA, value);
    return f;
}

static const char *form_value(const xml_node_t *x, const char *var)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *v = xml_node_attr(f, "var");
        if (v && strcmp(v, var) == 0) {
            xml_node_t *val = xml_node_child(f, "value", NS_DATA);
            return val ? xml_node_text(val) : "";
        }
    }
    return NULL;
}

/* Every value of a list-multi field joined by newlines (which group names,
 * being XML text of a single line in practice, do not hold); a copy of
 * dflt when the field is absent. */
static char *form_lines(const xml_node_t *x, const char *var, const char *dflt)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *v = xml_node_attr(f, "var");
        if (!v || strcmp(v, var) != 0)
            continue;
        char *out = NULL;
        size_t len = 0;
        for (xml_node_t *val = xml_node_child(f, "value", NS_DATA); val;
             val = xml_node_next(val, "value", NS_DATA)) {
            const char *t = xml_node_text(val);
            size_t tl = strlen(t);
            if (!tl || strchr(t, '\n'))
                continue;
            out = tern_xrealloc(out, len + tl + 2);
            if (len)
                out[len++] = '\n';
            memcpy(out + len, t, tl + 1);
            len += tl;
        }
        return out;
    }
    return dflt ? tern_xstrdup(dflt) : NULL;
}

/* ------------------------------------------------------------------ core: nodes */

/* PEP nodes (XEP-0163 §4.3, §7) default to the presence access model, one
 * item, and the last item sent when a contact comes online. */
static void cfg_default(const ps_service_t *svc, ps_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    c->max_items = svc->pep ? 1 : PS_DEFAULT_ITEMS;
    c->deliver_notifications = c->deliver_payloads = c->notify_retract = c->notify_delete =
        c->persist_items = true;
    snprintf(c->access_model, sizeof(c->access_model), svc->pep ? "presence" : "open");
    snprintf(c->publish_model, sizeof(c->publish_model), "publishers");
    snprintf(c->send_last, sizeof(c->send_last), svc->pep ? "on_sub_and_presence" : "never");
    snprintf(c->notification_type, sizeof(c->notification_type), "headline");
}

static void cfg_free(ps_cfg_t *c)
{
    free(c->title);
    free(c->description);
    free(c->type);
    free(c->roster_groups);
    c->title = c->description = c->type = c->roster_groups = NULL;
}

static bool one_of(const char *v, const char *const *ok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v, ok[i]) == 0)
            return true;
    return false;
}

static const char *const access_models[] = {"authorize", "open", "presence", "roster", "whitelist"};
static const char *const publish_models[] = {"publishers", "subscribers", "open"};
static const char *const send_last_opts[] = {"never", "on_sub", "on_sub_and_presence"};
static const char *const notif_types[] = {"normal", "headline"};

static void item_free(ps_item_t *it)
{
    free(it->id);
    free(it->payload);
    free(it->publisher);
    free(it);
}

static void node_free(ps_node_t *n)
{
    while (n->items) {
        ps_item_t *it = n->items;
        n->items = it->next;
        item_free(it);
    }
    while (n->subs) {
        ps_sub_t *s = n->subs;
        n->subs = s->next;
        free(s->jid);
        free(s->subid);
        free(s);
    }
    while (n->affs) {
        ps_affil_t *a = n->affs;
        n->affs = a->next;
        free(a->jid);
        free(a);
    }
    cfg_free(&n->cfg);
    free(n->name);
    free(n);
}

static ps_node_t *ps_find(ps_service_t *svc, const char *name)
{
    for (ps_node_t *n = svc->nodes; n; n = n->next)
        if (strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static ps_node_t *ps_new_node(ps_service_t *svc, const char *name)
{
    ps_node_t *n = tern_xcalloc(1, sizeof(*n));
    n->name = tern_xstrdup(name);
    cfg_default(svc, &n->cfg);
    ps_node_t **pp = &svc->nodes;
    while (*pp)
        pp = &(*pp)->next;
    *pp = n;
    return n;
}

static ps_aff_t get_aff(const ps_node_t *n, const char *bare)
{
    for (const ps_affil_t *a = n->affs; a; a = a->next)
        if (strcmp(a->jid, bare) == 0)
            return a->aff;
    return PA_NONE;
}

static void set_aff(ps_node_t *n, const char *bare, ps_aff_t aff)
{
    for (ps_affil_t **pp = &n->affs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->jid, bare) == 0) {
            if (aff == PA_NONE) {
                ps_affil_t *a = *pp;
                *pp = a->next;
                free(a->jid);
                free(a);
            } else {
                (*pp)->aff = aff;
            }
            return;
        }
    }
    if (aff == PA_NONE)
        return;
    ps_affil_t *a = tern_xcalloc(1, sizeof(*a));
    a->jid = tern_xstrdup(bare);
    a->aff = aff;
    a->next = n->affs;
    n->affs = a;
}

static int parse_aff(const char *s)
{
    for (int i = 0; s && i < 5; i++)
        if (strcmp(aff_names[i], s) == 0)
            return i - 1;
    return -2;
}

static ps_sub_t *find_sub(const ps_node_t *n, const char *jid)
{
    for (ps_sub_t *s = n->subs; s; s = s->next)
        if (strcmp(s->jid, jid) == 0)
            return s;
    return NULL;
}

static void del_sub(ps_node_t *n, const char *jid)
{
    for (ps_sub_t **pp = &n->subs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->jid, jid) == 0) {
            ps_sub_t *s = *pp;
            *pp = s->next;
            free(s->jid);
            free(s->subid);
            free(s);
            return;
        }
    }
}

static ps_sub_t *add_sub(ps_node_t *n, const char *jid)
{
    ps_sub_t *s = find_sub(n, jid);
    if (s)
        return s;
    s = tern_xcalloc(1, sizeof(*s));
    s->jid = tern_xstrdup(jid);
    char id[33];
    random_id(id);
    s->subid = tern_xstrdup(id);
    s->next = n->subs;
    n->subs = s;
    return s;
}

static char *bare_of(const char *jid)
{
    jid_t j;
    if (jid_parse(jid, &j) != 0)
        return NULL;
    char *b = jid_bare_string(&j);
    jid_clear(&j);
    return b;
}

enum { SUB_NONE, SUB_PENDING, SUB_SUBSCRIBED };

/* The best subscription any JID of bare has to n. */
static int sub_state_bare(const ps_node_t *n, const char *bare)
{
    int best = SUB_NONE;
    for (const ps_sub_t *s = n->subs; s && best != SUB_SUBSCRIBED; s = s->next) {
        char *b = bare_of(s->jid);
        if (b && strcmp(b, bare) == 0)
            best = s->pending ? SUB_PENDING : SUB_SUBSCRIBED;
        free(b);
    }
    return best;
}

static bool is_subscribed_bare(const ps_node_t *n, const char *bare)
{
    return sub_state_bare(n, bare) == SUB_SUBSCRIBED;
}

/* ------------------------------------------------------------------ core: storage */

enum { JOB_PUT, JOB_DEL, JOB_DEL_STORE };

typedef struct {
    int op;
    char *host, *user, *store, *key, *data;
    size_t len;
} store_job_t;

static int store_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    store_job_t *j = arg;
    switch (j->op) {
    case JOB_PUT:
        return drv->kv_put(db, j->host, j->user, j->store, j->key, j->data, j->len);
    case JOB_DEL:
        return drv->kv_del(db, j->host, j->user, j->store, j->key);
    default:
        return drv->kv_del_store(db, j->host, j->user, j->store);
    }
}

static void store_job_free(store_job_t *j)
{
    free(j->host);
    free(j->user);
    free(j->store);
    free(j->key);
    free(j->data);
    free(j);
}

static void store_done(void *arg, int result)
{
    store_job_t *j = arg;
    if (result != 0 && result != TERN_ENOENT)
        log_warn("pubsub", "storing %s/%s for %s failed (%d)", j->store, j->key ? j->key : "",
                 j->user, result);
    store_job_free(j);
}

static char *items_store(const char *node)
{
    size_t n = strlen(PS_ITEMS_PREFIX) + strlen(node) + 1;
    char *s = tern_xmalloc(n);
    snprintf(s, n, "%s%s", PS_ITEMS_PREFIX, node);
    return s;
}

static void submit(ps_service_t *svc, int op, char *store, const char *key, char *data, size_t len)
{
    store_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->op = op;
    j->host = tern_xstrdup(svc->host);
    j->user = tern_xstrdup(svc->user);
    j->store = store;
    j->key = key ? tern_xstrdup(key) : NULL;
    j->data = data;
    j->len = len;
    if (tern_storage_submit(svc->srv, store_run, store_done, j) != 0)
        store_job_free(j);
}

static void set_flag(xml_node_t *n, const char *name, bool v)
{
    xml_node_set_attr(n, name, v ? "1" : "0");
}

static void save_node(ps_service_t *svc, const ps_node_t *n)
{
    xml_stanza_t *st = xml_stanza_new("node", NS_TERN_PUBSUB);
    xml_node_t *x = xml_stanza_root(st);
    const ps_cfg_t *c = &n->cfg;
    if (c->title)
        xml_node_set_attr(x, "title", c->title);
    if (c->description)
        xml_node_set_attr(x, "description", c->description);
    if (c->type)
        xml_node_set_attr(x, "type", c->type);
    set_flag(x, "deliver_notifications", c->deliver_notifications);
    xml_node_set_attr(x, "send_last", c->send_last);
    xml_node_set_attr(x, "notification_type", c->notification_type);
    char num[32];
    snprintf(num, sizeof(num), "%u", c->max_items);
    xml_node_set_attr(x, "max_items", num);
    snprintf(num, sizeof(num), "%lu", n->seq);
    xml_node_set_attr(x, "seq", num);
    set_flag(x, "deliver_payloads", c->deliver_payloads);
    set_flag(x, "notify_retract", c->notify_retract);
    set_flag(x, "notify_delete", c->notify_delete);
    set_flag(x, "persist_items", c->persist_items);
    xml_node_set_attr(x, "access_model", c->access_model);
    xml_node_set_attr(x, "publish_model", c->publish_model);
    if (c->roster_groups)
        xml_node_add_child_text(x, "groups", NS_TERN_PUBSUB, c->roster_groups);
    for (const ps_affil_t *a = n->affs; a; a = a->next) {
        xml_node_t *an = xml_node_add_child(x, "affiliation", NS_TERN_PUBSUB);
        xml_node_set_attr(an, "jid", a->jid);
        xml_node_set_attr(an, "aff", aff_names[a->aff + 1]);
    }
    for (const ps_sub_t *s = n->subs; s; s = s->next) {
        xml_node_t *sn = xml_node_add_child(x, "subscription", NS_TERN_PUBSUB);
        xml_node_set_attr(sn, "jid", s->jid);
        xml_node_set_attr(sn, "subid", s->subid);
        if (s->pending)
            xml_node_set_attr(sn, "pending", "1");
    }
    size_t len;
    char *data = xml_node_to_string(x, NS_CLIENT, &len);
    xml_stanza_unref(st);
    if (data)
        submit(svc, JOB_PUT, tern_xstrdup(PS_NODES_STORE), n->name, data, len);
}

static void save_item(ps_service_t *svc, const ps_node_t *n, const ps_item_t *it)
{
    xml_stanza_t *st = xml_stanza_new("item", NS_TERN_PUBSUB);
    xml_node_t *x = xml_stanza_root(st);
    char num[32];
    snprintf(num, sizeof(num), "%lu", it->seq);
    xml_node_set_attr(x, "seq", num);
    if (it->publisher)
        xml_node_set_attr(x, "publisher", it->publisher);
    if (it->payload)
        xml_node_add_child_text(x, "payload", NS_TERN_PUBSUB, it->payload);
    size_t len;
    char *data = xml_node_to_string(x, NS_CLIENT, &len);
    xml_stanza_unref(st);
    if (data)
        submit(svc, JOB_PUT, items_store(n->name), it->id, data, len);
}

/* Builds a node from its stored record (loop thread). */
static ps_node_t *load_node(ps_service_t *svc, const char *name, const char *data, size_t len)
{
    xml_stanza_t *st = xml_parse_element(data, len, NS_CLIENT, 2 * len + 1024);
    xml_node_t *x = st ? xml_stanza_root(st) : NULL;
    if (!xml_node_is(x, "node", NS_TERN_PUBSUB)) {
        log_warn("pubsub", "stored node %s of %s is unreadable", name, svc->jid);
        if (st)
            xml_stanza_unref(st);
        return NULL;
    }
    ps_node_t *n = ps_new_node(svc, name);
    ps_cfg_t *c = &n->cfg;
    set_str(&c->title, xml_node_attr(x, "title"));
    set_str(&c->description, xml_node_attr(x, "description"));
    set_str(&c->type, xml_node_attr(x, "type"));
    c->deliver_notifications = str_true(xml_node_attr(x, "deliver_notifications"));
    if (xml_node_attr(x, "send_last"))
        snprintf(c->send_last, sizeof(c->send_last), "%s", xml_node_attr(x, "send_last"));
    if (xml_node_attr(x, "notification_type"))
        snprintf(c->notification_type, sizeof(c->notification_type), "%s",
                 xml_node_attr(x, "notification_type"));
    const char *v = xml_node_attr(x, "max_items");
    if (v)
        c->max_items = (unsigned)strtoul(v, NULL, 10);
    v = xml_node_attr(x, "seq");
    n->seq = v ? strtoul(v, NULL, 10) : 0;
    c->deliver_payloads = str_true(xml_node_attr(x, "deliver_payloads"));
    c->notify_retract = str_true(xml_node_attr(x, "notify_retract"));
    c->notify_delete = str_true(xml_node_attr(x, "notify_delete"));
    c->persist_items = str_true(xml_node_attr(x, "persist_items"));
    if ((v = xml_node_attr(x, "access_model")))
        snprintf(c->access_model, sizeof(c->access_model), "%s", v);
    if ((v = xml_node_attr(x, "publish_model")))
        snprintf(c->publish_model, sizeof(c->publish_model), "%s", v);
    xml_node_t *groups = xml_node_child(x, "groups", NS_TERN_PUBSUB);
    if (groups)
        set_str(&c->roster_groups, xml_node_text(groups));
    for (xml_node_t *a = xml_node_child(x, "affiliation", NS_TERN_PUBSUB); a;
         a = xml_node_next(a, "affiliation", NS_TERN_PUBSUB)) {
        int aff = parse_aff(xml_node_attr(a, "aff"));
        if (xml_node_attr(a, "jid") && aff >= -1)
            set_aff(n, xml_node_attr(a, "jid"), (ps_aff_t)aff);
    }
    for (xml_node_t *s = xml_node_child(x, "subscription", NS_TERN_PUBSUB); s;
         s = xml_node_next(s, "subscription", NS_TERN_PUBSUB)) {
        const char *jid = xml_node_attr(s, "jid");
        if (!jid)
            continue;
        ps_sub_t *sub = add_sub(n, jid);
        set_str(&sub->subid, xml_node_attr(s, "subid"));
        sub->pending = str_true(xml_node_attr(s, "pending"));
        if (!sub->subid)
            sub->subid = tern_xstrdup("0");
    }
    xml_stanza_unref(st);
    return n;
}

/* Inserts a stored item in seq order (newest first). */
static void load_item(ps_node_t *n, const char *id, const char *data, size_t len)
{
    xml_stanza_t *st = xml_parse_element(data, len, NS_CLIENT, 2 * len + 1024);
    xml_node_t *x = st ? xml_stanza_root(st) : NULL;
    if (!xml_node_is(x, "item", NS_TERN_PUBSUB)) {
        if (st)
            xml_stanza_unref(st);
        return;
    }
    ps_item_t *it = tern_xcalloc(1, sizeof(*it));
    it->id = tern_xstrdup(id);
    const char *v = xml_node_attr(x, "seq");
    it->seq = v ? strtoul(v, NULL, 10) : 0;
    set_str(&it->publisher, xml_node_attr(x, "publisher"));
    xml_node_t *p = xml_node_child(x, "payload", NS_TERN_PUBSUB);
    if (p)
        set_str(&it->payload, xml_node_text(p));
    xml_stanza_unref(st);
    ps_item_t **pp = &n->items;
    while (*pp && (*pp)->seq > it->seq)
        pp = &(*pp)->next;
    it->next = *pp;
    *pp = it;
    n->nitems++;
    if (it->seq > n->seq)
        n->seq = it->seq;
}

/* ------------------------------------------------------------------ core: events */

static xml_stanza_t *event_message(ps_service_t *svc, const ps_node_t *n, xml_node_t **event)
{
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", svc->jid);
    xml_node_set_attr(root, "type", n->cfg.notification_type);
    *event = xml_node_add_child(root, "event", NS_PUBSUB_EVENT);
    return m;
}

/* Whether an event on n reaches anyone: its subscribers, or for PEP the
 * contacts the front end adds. */
static bool has_audience(const ps_service_t *svc, const ps_node_t *n)
{
    return n->subs || (svc->hooks && svc->hooks->fanout);
}

static void notify_subs(ps_service_t *svc, const ps_node_t *n, xml_stanza_t *m)
{
    if (svc->hooks && svc->hooks->fanout)
        svc->hooks->fanout(svc->hooks->ud, svc, n, m);
    for (const ps_sub_t *s = n->subs; s; s = s->next) {
        if (s->pending)
            continue;
        /* written out once, shared by every copy (as MUC's fan-out) */
        ps_out_push(svc, xml_stanza_copy_to(m, s->jid, NS_CLIENT));
    }
    xml_stanza_unref(m);
}

/* Adds the stored payload of it under parent (an <item/>). */
static void add_payload(xml_node_t *parent, const ps_item_t *it)
{
    if (!it->payload)
        return;
    size_t len = strlen(it->payload);
    xml_stanza_t *p = xml_parse_element(it->payload, len, NS_PUBSUB, 2 * len + 1024);
    if (p) {
        xml_node_append_copy(parent, xml_stanza_root(p));
        xml_stanza_unref(p);
    }
}

static void notify_item(ps_service_t *svc, const ps_node_t *n, const ps_item_t *it)
{
    if (!has_audience(svc, n) || !n->cfg.deliver_notifications)
        return;
    xml_node_t *ev;
    xml_stanza_t *m = event_message(svc, n, &ev);
    xml_node_t *items = xml_node_add_child(ev, "items", NS_PUBSUB_EVENT);
    xml_node_set_attr(items, "node", n->name);
    xml_node_t *item = xml_node_add_child(items, "item", NS_PUBSUB_EVENT);
    xml_node_set_attr(item, "id", it->id);
    if (it->publisher)
        xml_node_set_attr(item, "publisher", it->publisher);
    if (n->cfg.deliver_payloads)
        add_payload(item, it);
    notify_subs(svc, n, m);
}

/* Queues n's newest item for to, if it has one. */
static void push_last_item(ps_service_t *svc, const ps_node_t *n, const char *to)
{
    if (!n->items)
        return;
    xml_node_t *ev;
    xml_stanza_t *m = event_message(svc, n, &ev);
    xml_node_set_attr(xml_stanza_root(m), "to", to);
    xml_node_t *items = xml_node_add_child(ev, "items", NS_PUBSUB_EVENT);
    xml_node_set_attr(items, "node", n->name);
    xml_node_t *item = xml_node_add_child(items, "item", NS_PUBSUB_EVENT);
    xml_node_set_attr(item, "id", n->items->id);
    if (n->items->publisher)
        xml_node_set_attr(item, "publisher", n->items->publisher);
    if (n->cfg.deliver_payloads)
        add_payload(item, n->items);
    ps_out_push(svc, m);
}

/* ------------------------------------------------------------------ core: operations */

static bool may_publish(const ps_node_t *n, const char *bare)
{
    ps_aff_t a = get_aff(n, bare);
    if (a == PA_OUTCAST)
        return false;
    if (a == PA_OWNER || a == PA_PUBLISHER)
        return true;
    if (strcmp(n->cfg.publish_model, "open") == 0)
        return true;
    if (strcmp(n->cfg.publish_model, "subscribers") == 0)
        return is_subscribed_bare(n, bare);
    return false;
}

/* Whether bare may see the node's items or subscribe (§4.5): affiliates
 * always; presence and roster as the front end's roster_allows says (the
 * owner's roster); authorize: approved subscribers (op_subscribe asks the
 * owners). */
static const char *access_denied(const ps_service_t *svc, const ps_node_t *n, const char *bare,
                                 const char **app)
{
    ps_aff_t a = get_aff(n, bare);
    *app = NULL;
    if (a == PA_OUTCAST)
        return "forbidden";
    if (strcmp(n->cfg.access_model, "open") == 0 || a >= PA_MEMBER)
        return NULL;
    bool by_roster =
        strcmp(n->cfg.access_model, "presence") == 0 || strcmp(n->cfg.access_model, "roster") == 0;
    if (by_roster && svc->hooks && svc->hooks->roster_allows &&
        svc->hooks->roster_allows(svc->hooks->ud, n, bare))
        return NULL;
    if (strcmp(n->cfg.access_model, "presence") == 0) {
        *app = "presence-subscription-required";
        return "not-authorized";
    }
    if (strcmp(n->cfg.access_model, "roster") == 0) {
        *app = "not-in-roster-group";
        return "not-authorized";
    }
    if (strcmp(n->cfg.access_model, "authorize") == 0) {
        /* §6.5.9.x: only approved subscribers read the items */
        int state = sub_state_bare(n, bare);
        if (state == SUB_SUBSCRIBED)
            return NULL;
        *app = state == SUB_PENDING ? "pending-subscription" : "not-subscribed";
        return "not-authorized";
    }
    *app = "closed-node";
    return "not-allowed";
}

static void trim_items(ps_service_t *svc, ps_node_t *n)
{
    size_t max = n->cfg.max_items;
    if (n->nitems <= max)
        return;
    ps_item_t **pp = &n->items;
    for (size_t i = 0; i < max && *pp; i++)
        pp = &(*pp)->next;
    while (*pp) {
        ps_item_t *it = *pp;
        *pp = it->next;
        if (n->cfg.persist_items)
            submit(svc, JOB_DEL, items_store(n->name), it->id, NULL, 0);
        item_free(it);
        n->nitems--;
    }
}

static ps_item_t *find_item(ps_node_t *n, const char *id, ps_item_t ***prev)
{
    for (ps_item_t **pp = &n->items; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            if (prev)
                *prev = pp;
            return *pp;
        }
    }
    return NULL;
}

/* Applies a pubsub#node_config form; returns false (nothing changed) when
 * a value is invalid. */
static bool apply_config(ps_node_t *n, const xml_node_t *x)
{
    ps_cfg_t c = n->cfg;
    const char *v;
    if ((v = form_value(x, "pubsub#max_items"))) {
        if (strcmp(v, "max") == 0) {
            c.max_items = PS_MAX_ITEMS;
        } else {
            char *end;
            unsigned long m = strtoul(v, &end, 10);
            if (!*v || *end || m > PS_MAX_ITEMS)
                return false;
            c.max_items = (unsigned)m;
        }
    }
    struct {
        const char *var;
        bool *dst;
    } flags[] = {{"pubsub#deliver_notifications", &c.deliver_notifications},
                 {"pubsub#deliver_payloads", &c.deliver_payloads},
                 {"pubsub#notify_retract", &c.notify_retract},
                 {"pubsub#notify_delete", &c.notify_delete},
                 {"pubsub#persist_items", &c.persist_items}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(flags); i++) {
        if ((v = form_value(x, flags[i].var))) {
            if (!str_bool_ok(v))
                return false;
            *flags[i].dst = str_true(v);
        }
    }
    struct {
        const char *var;
        char *dst;
        size_t size;
        const char *const *ok;
        size_t nok;
    } lists[] = {
        {"pubsub#access_model", c.access_model, sizeof(c.access_model), access_models,
         TERN_ARRAY_LEN(access_models)},
        {"pubsub#publish_model", c.publish_model, sizeof(c.publish_model), publish_models,
         TERN_ARRAY_LEN(publish_models)},
        {"pubsub#send_last_published_item", c.send_last, sizeof(c.send_last), send_last_opts,
         TERN_ARRAY_LEN(send_last_opts)},
        {"pubsub#notification_type", c.notification_type, sizeof(c.notification_type), notif_types,
         TERN_ARRAY_LEN(notif_types)},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(lists); i++) {
        if ((v = form_value(x, lists[i].var))) {
            if (!one_of(v, lists[i].ok, lists[i].nok))
                return false;
            snprintf(lists[i].dst, lists[i].size, "%s", v);
        }
    }
    struct {
        const char *var;
        char **dst;
    } strs[] = {{"pubsub#title", &c.title},
                {"pubsub#description", &c.description},
                {"pubsub#type", &c.type}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(strs); i++) {
        const char *old = *strs[i].dst;
        *strs[i].dst = old ? tern_xstrdup(old) : NULL;
        if ((v = form_value(x, strs[i].var)))
            set_str(strs[i].dst, v);
    }
    c.roster_groups = form_lines(x, "pubsub#roster_groups_allowed", n->cfg.roster_groups);
    cfg_free(&n->cfg);
    n->cfg = c;
    return true;
}

static xml_node_t *add_lfield(xml_node_t *x, const char *var, const char *label, const char *type,
                              const char *value)
{
    xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    if (label)
        xml_node_set_attr(f, "label", label);
    xml_node_set_attr(f, "type", type);
    if (value)
        xml_node_add_child_text(f, "value", NS_DATA, value);
    return f;
}

static void add_options(xml_node_t *f, const char *const *opts, const char *const *labels, size_t n,
                        const char *value)
{
    for (size_t i = 0; i < n; i++) {
        xml_node_t *o = xml_node_add_child(f, "option", NS_DATA);
        xml_node_set_attr(o, "label", labels ? labels[i] : opts[i]);
        xml_node_add_child_text(o, "value", NS_DATA, opts[i]);
    }
    xml_node_add_child_text(f, "value", NS_DATA, value);
}

/* The pubsub#node_config form, fields in the order (and with the labels)
 * other servers use, so that clients and tests see a familiar form. */
static void config_form(const ps_node_t *n, xml_node_t *parent)
{
    xml_node_t *x = xml_node_add_child(parent, "x", NS_DATA);
    xml_node_set_attr(x, "type", "form");
    add_field(x, "FORM_TYPE", "hidden", NS_NODE_CONFIG);
    const ps_cfg_t *c = &n->cfg;
    add_lfield(x, "pubsub#title", "Title", "text-single", c->title);
    add_lfield(x, "pubsub#description", "Description", "text-single", c->description);
    add_lfield(x, "pubsub#type",
               "The type of node data, usually specified by the namespace of the payload (if any)",
               "text-single", c->type);
    char num[32];
    snprintf(num, sizeof(num), "%u", c->max_items);
    xml_node_t *f =
        add_lfield(x, "pubsub#max_items", "Max # of items to persist", "text-single", NULL);
    xml_node_t *val =
        xml_node_add_child(f, "validate", "http://jabber.org/protocol/xdata-validate");
    xml_node_set_attr(val, "datatype", "pubsub:integer-or-max");
    xml_node_t *range = xml_node_add_child(val, "range", NULL);
    xml_node_set_attr(range, "min", "1");
    char maxs[32];
    snprintf(maxs, sizeof(maxs), "%d", PS_MAX_ITEMS);
    xml_node_set_attr(range, "max", maxs);
    xml_node_add_child_text(f, "value", NS_DATA, num);
    add_lfield(x, "pubsub#persist_items", "Persist items to storage", "boolean",
               c->persist_items ? "1" : "0");
    f = add_lfield(x, "pubsub#access_model", "Specify the subscriber model", "list-single", NULL);
    add_options(f, access_models, NULL, TERN_ARRAY_LEN(access_models), c->access_model);
    /* Only where it applies: the form is otherwise the one of Prosody and
     * ejabberd that clients and tests know, field for field. */
    f = strcmp(c->access_model, "roster") == 0
            ? add_lfield(x, "pubsub#roster_groups_allowed", "Roster groups allowed to subscribe",
                         "list-multi", NULL)
            : NULL;
    for (const char *g = f ? c->roster_groups : NULL; g && *g;) {
        const char *nl = strchr(g, '\n');
        size_t gl = nl ? (size_t)(nl - g) : strlen(g);
        char *one = tern_xmalloc(gl + 1);
        memcpy(one, g, gl);
        one[gl] = '\0';
        xml_node_add_child_text(f, "value", NS_DATA, one);
        free(one);
        g = nl ? nl + 1 : g + gl;
    }
    f = add_lfield(x, "pubsub#publish_model", "Specify the publisher model", "list-single", NULL);
    add_options(f, publish_models, NULL, TERN_ARRAY_LEN(publish_models), c->publish_model);
    f = add_lfield(x, "pubsub#send_last_published_item", NULL, "list-single", NULL);
    add_options(f, send_last_opts, NULL, TERN_ARRAY_LEN(send_last_opts), c->send_last);
    add_lfield(x, "pubsub#deliver_notifications", "Whether to deliver event notifications",
               "boolean", c->deliver_notifications ? "1" : "0");
    add_lfield(x, "pubsub#deliver_payloads", "Whether to deliver payloads with event notifications",
               "boolean", c->deliver_payloads ? "1" : "0");
    static const char *const nt_labels[] = {"Messages of type normal", "Messages of type headline"};
    f = add_lfield(x, "pubsub#notification_type", "Specify the delivery style for notifications",
                   "list-single", NULL);
    add_options(f, notif_types, nt_labels, TERN_ARRAY_LEN(notif_types), c->notification_type);
    add_lfield(x, "pubsub#notify_delete", "Whether to notify subscribers when the node is deleted",
               "boolean", c->notify_delete ? "1" : "0");
    add_lfield(x, "pubsub#notify_retract",
               "Whether to notify subscribers when items are removed from the node", "boolean",
               c->notify_retract ? "1" : "0");
}

/* The current value of a node_config field as text, for preconditions. */
static bool cfg_matches(const ps_node_t *n, const char *var, const char *want)
{
    const ps_cfg_t *c = &n->cfg;
    char num[32];
    if (strcmp(var, "pubsub#max_items") == 0) {
        if (strcmp(want, "max") == 0)
            return c->max_items == PS_MAX_ITEMS;
        snprintf(num, sizeof(num), "%u", c->max_items);
        return strcmp(num, want) == 0;
    }
    struct {
        const char *var;
        bool v;
    } flags[] = {{"pubsub#deliver_notifications", c->deliver_notifications},
                 {"pubsub#deliver_payloads", c->deliver_payloads},
                 {"pubsub#notify_retract", c->notify_retract},
                 {"pubsub#notify_delete", c->notify_delete},
                 {"pubsub#persist_items", c->persist_items}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(flags); i++)
        if (strcmp(var, flags[i].var) == 0)
            return str_bool_ok(want) && str_true(want) == flags[i].v;
    if (strcmp(var, "pubsub#access_model") == 0)
        return strcmp(want, c->access_model) == 0;
    if (strcmp(var, "pubsub#publish_model") == 0)
        return strcmp(want, c->publish_model) == 0;
    if (strcmp(var, "pubsub#title") == 0)
        return strcmp(want, c->title ? c->title : "") == 0;
    if (strcmp(var, "pubsub#send_last_published_item") == 0)
        return strcmp(want, c->send_last) == 0;
    if (strcmp(var, "pubsub#notification_type") == 0)
        return strcmp(want, c->notification_type) == 0;
    return false; /* an unknown precondition is not met */
}

/* NULL when every field of the publish-options form x matches n's
 * configuration, else the first field that does not. */
static const char *precondition_failed(const ps_node_t *n, const xml_node_t *x)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        if (!var || strcmp(var, "FORM_TYPE") == 0)
            continue;
        xml_node_t *val = xml_node_child(f, "value", NS_DATA);
        if (!cfg_matches(n, var, val ? xml_node_text(val) : ""))
            return var;
    }
    return NULL;
}

static bool is_admin(const ps_service_t *svc, const char *bare)
{
    for (size_t i = 0; svc->admins && svc->admins[i]; i++)
        if (strcmp(svc->admins[i], bare) == 0)
            return true;
    return false;
}

static bool may_create(const ps_service_t *svc, const char *bare)
{
    if (svc->owner)
        return strcmp(svc->owner, bare) == 0;
    if (!svc->creation || strcmp(svc->creation, "anyone") == 0)
        return true;
    if (is_admin(svc, bare))
        return true;
    const char *at = strchr(bare, '@');
    return strcmp(svc->creation, "local") == 0 && at && svc->local_domain &&
           strcmp(at + 1, svc->local_domain) == 0;
}

static void op_create(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *ps, xml_node_t *cr,
                      const char *bare)
{
    if (!may_create(svc, bare)) {
        ps_error(svc, st, "auth", "forbidden", NULL, NULL);
        return;
    }
    const char *name = xml_node_attr(cr, "node");
    char gen[33];
    bool instant = !name || !*name;
    if (instant) {
        random_id(gen);
        name = gen;
    }
    if (strlen(name) > PS_MAX_NAME) {
        ps_error_text(svc, st, "modify", "not-acceptable", NULL, "node name too long");
        return;
    }
    if (ps_find(svc, name)) {
        ps_error(svc, st, "cancel", "conflict", NULL, NULL);
        return;
    }
    ps_node_t tmp = {0};
    cfg_default(svc, &tmp.cfg);
    xml_node_t *conf = xml_node_child(ps, "configure", NS_PUBSUB);
    xml_node_t *x = conf ? xml_node_child(conf, "x", NS_DATA) : NULL;
    if (x && !apply_config(&tmp, x)) {
        cfg_free(&tmp.cfg);
        ps_error(svc, st, "modify", "not-acceptable", NULL, NULL);
        return;
    }
    ps_node_t *n = ps_new_node(svc, name);
    n->cfg = tmp.cfg;
    set_aff(n, bare, PA_OWNER);
    save_node(svc, n);
    xml_stanza_t *res = iq_result(svc, st);
    if (instant) {
        xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
        xml_node_set_attr(xml_node_add_child(p, "create", NS_PUBSUB), "node", name);
    }
    ps_out_push(svc, res);
}

static void remove_node(ps_service_t *svc, ps_node_t *n)
{
    for (ps_node_t **pp = &svc->nodes; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }
    submit(svc, JOB_DEL, tern_xstrdup(PS_NODES_STORE), n->name, NULL, 0);
    submit(svc, JOB_DEL_STORE, items_store(n->name), NULL, NULL, 0);
    node_free(n);
}

/* The node an element's 'node' attribute names, or NULL after answering
 * nodeid-required or item-not-found. */
static ps_node_t *named_node(ps_service_t *svc, const xml_stanza_t *st, const xml_node_t *el)
{
    const char *name = xml_node_attr(el, "node");
    if (!name || !*name) {
        ps_error(svc, st, "modify", "bad-request", "nodeid-required", NULL);
        return NULL;
    }
    ps_node_t *n = ps_find(svc, name);
    if (!n)
        ps_error(svc, st, "cancel", "item-not-found", NULL, NULL);
    return n;
}

/* §6.1.3.1 / §6.2.3.x: one (un)subscribes only a JID of one's own; false
 * after answering invalid-jid. */
static bool own_jid(ps_service_t *svc, const xml_stanza_t *st, const char *jid, const char *bare)
{
    char *jb = jid ? bare_of(jid) : NULL;
    bool ok = jb && strcmp(jb, bare) == 0;
    free(jb);
    if (!ok)
        ps_error(svc, st, "modify", "bad-request", "invalid-jid", NULL);
    return ok;
}

static void op_publish(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *ps, xml_node_t *pub,
                       const char *bare)
{
    const char *name = xml_node_attr(pub, "node");
    if (!name || !*name) {
        ps_error(svc, st, "modify", "bad-request", "nodeid-required", NULL);
        return;
    }
    /* One item with at most one payload (§7.1.3.5), checked before a
     * missing node is created for it. */
    xml_node_t *item = xml_node_child(pub, "item", NS_PUBSUB);
    xml_node_t *payload = item ? xml_node_first_element(item) : NULL;
    if ((item && xml_node_next(item, "item", NS_PUBSUB)) ||
        (payload && xml_node_next(payload, NULL, NULL))) {
        ps_error(svc, st, "modify", "bad-request", "invalid-payload", NULL);
        return;
    }
    const char *given = item ? xml_node_attr(item, "id") : NULL;
    if (strlen(name) > PS_MAX_NAME || (given && strlen(given) > PS_MAX_NAME)) {
        ps_error_text(svc, st, "modify", "not-acceptable", NULL, "node name or item id too long");
        return;
    }
    size_t pl_len = 0;
    char *pl = payload ? xml_node_to_string(payload, NS_PUBSUB, &pl_len) : NULL;
    if (pl && svc->max_payload && pl_len > svc->max_payload) {
        free(pl);
        ps_error(svc, st, "modify", "not-acceptable", "payload-too-big", NULL);
        return;
    }
    ps_node_t *n = ps_find(svc, name);
    xml_node_t *po = xml_node_child(ps, "publish-options", NS_PUBSUB);
    xml_node_t *pox = po ? xml_node_child(po, "x", NS_DATA) : NULL;
    const char *bad;
    if (!n) {
        /* Auto-create (#auto-create), configured from publish-options. */
        if (!may_create(svc, bare)) {
            ps_error(svc, st, "cancel", "item-not-found", NULL, NULL);
            goto refused;
        }
        ps_node_t tmp = {0};
        cfg_default(svc, &tmp.cfg);
        if (pox && !apply_config(&tmp, pox)) {
            cfg_free(&tmp.cfg);
            ps_error(svc, st, "cancel", "conflict", "precondition-not-met", NULL);
            goto refused;
        }
        n = ps_new_node(svc, name);
        n->cfg = tmp.cfg;
        set_aff(n, bare, PA_OWNER);
        save_node(svc, n);
    } else if (!may_publish(n, bare)) {
        ps_error(svc, st, "auth", "forbidden", NULL, NULL);
        goto refused;
    } else if (pox && (bad = precondition_failed(n, pox))) {
        char text[160];
        snprintf(text, sizeof(text), "Field does not match: %s",
                 strncmp(bad, "pubsub#", 7) == 0 ? bad + 7 : bad);
        ps_error_text(svc, st, "cancel", "conflict", "precondition-not-met", text);
        goto refused;
    }
    /* §7.1.3.4-7.1.3.6: what the node's configuration asks of a publish. */
    if (!item && (n->cfg.persist_items || n->cfg.deliver_payloads)) {
        ps_error(svc, st, "modify", "bad-request", "item-required", NULL);
        goto refused;
    }
    if (item && !payload && n->cfg.deliver_payloads) {
        ps_error(svc, st, "modify", "bad-request", "payload-required", NULL);
        goto refused;
    }
    if (item && !n->cfg.persist_items && !n->cfg.deliver_payloads) {
        ps_error(svc, st, "modify", "bad-request", "item-forbidden", NULL);
        goto refused;
    }
    char gen[33];
    const char *id = item ? xml_node_attr(item, "id") : NULL;
    if (!id || !*id) {
        random_id(gen);
        id = gen;
    }
    ps_item_t **prev = NULL;
    ps_item_t *it = find_item(n, id, &prev);
    if (it) { /* republished: becomes the newest */
        *prev = it->next;
        n->nitems--;
        free(it->payload);
        it->payload = NULL;
        free(it->publisher);
    } else {
        it = tern_xcalloc(1, sizeof(*it));
        it->id = tern_xstrdup(id);
    }
    it->publisher = tern_xstrdup(bare);
    it->seq = ++n->seq;
    it->payload = pl;
    it->next = n->items;
    n->items = it;
    n->nitems++;
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
    xml_node_t *pe = xml_node_add_child(p, "publish", NS_PUBSUB);
    xml_node_set_attr(pe, "node", n->name);
    xml_node_set_attr(xml_node_add_child(pe, "item", NS_PUBSUB), "id", id);
    ps_out_push(svc, res);
    notify_item(svc, n, it);
    if (svc->hooks && svc->hooks->published)
        svc->hooks->published(svc->hooks->ud, svc, n, it);
    if (n->cfg.persist_items) {
        save_item(svc, n, it);
        save_node(svc, n); /* seq */
        trim_items(svc, n);
    } else {
        n->items = it->next;
        item_free(it);
        n->nitems--;
    }
    return;
refused:
    free(pl);
}

static void op_retract(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *rt, const char *bare)
{
    ps_node_t *n = named_node(svc, st, rt);
    if (!n)
        return;
    xml_node_t *item = xml_node_child(rt, "item", NS_PUBSUB);
    const char *id = item ? xml_node_attr(item, "id") : NULL;
    if (!id || !*id) {
        ps_error(svc, st, "modify", "bad-request", "item-required", NULL);
        return;
    }
    ps_item_t **prev = NULL;
    ps_item_t *it = find_item(n, id, &prev);
    if (!it) {
        ps_error(svc, st, "cancel", "item-not-found", NULL, NULL);
        return;
    }
    ps_aff_t a = get_aff(n, bare);
    if (a != PA_OWNER && a != PA_PUBLISHER &&
        !(it->publisher && strcmp(it->publisher, bare) == 0 && may_publish(n, bare))) {
        ps_error(svc, st, "auth", "forbidden", NULL, NULL);
        return;
    }
    *prev = it->next;
    n->nitems--;
    submit(svc, JOB_DEL, items_store(n->name), it->id, NULL, 0);
    const char *notify = xml_node_attr(rt, "notify");
    if (has_audience(svc, n) && (str_true(notify) || (!notify && n->cfg.notify_retract))) {
        xml_node_t *ev;
        xml_stanza_t *m = event_message(svc, n, &ev);
        xml_node_t *items = xml_node_add_child(ev, "items", NS_PUBSUB_EVENT);
        xml_node_set_attr(items, "node", n->name);
        xml_node_set_attr(xml_node_add_child(items, "retract", NS_PUBSUB_EVENT), "id", it->id);
        notify_subs(svc, n, m);
    }
    item_free(it);
    ps_out_push(svc, iq_result(svc, st));
}

#define NS_SUB_AUTH "http://jabber.org/protocol/pubsub#subscribe_authorization"

/* §8.6.1: every owner gets a form to allow or deny s. */
static void ask_owners(ps_service_t *svc, const ps_node_t *n, const ps_sub_t *s)
{
    for (const ps_affil_t *a = n->affs; a; a = a->next) {
        if (a->aff != PA_OWNER)
            continue;
        xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
        xml_node_t *root = xml_stanza_root(m);
        xml_node_set_attr(root, "from", svc->jid);
        xml_node_set_attr(root, "to", a->jid);
        xml_node_t *x = xml_node_add_child(root, "x", NS_DATA);
        xml_node_set_attr(x, "type", "form");
        xml_node_add_child_text(x, "title", NS_DATA, "PubSub subscriber request");
        xml_node_add_child_text(x, "instructions", NS_DATA,
                                "To approve this entity's subscription request, click the OK "
                                "button. To deny the request, click the cancel button.");
        add_field(x, "FORM_TYPE", "hidden", NS_SUB_AUTH);
        add_field(x, "pubsub#subid", "hidden", s->subid);
        add_lfield(x, "pubsub#node", "Node ID", "text-single", n->name);
        add_lfield(x, "pubsub#subscriber_jid", "Subscriber Address", "jid-single", s->jid);
        add_lfield(x, "pubsub#allow", "Allow this JID to subscribe to this pubsub node?", "boolean",
                   "false");
        ps_out_push(svc, m);
    }
}

/* §8.6.2: an owner's answer to that form; the subscriber hears the
 * outcome as a subscription event. Anything else is ignored. */
static void on_authorization(ps_service_t *svc, const xml_stanza_t *st, const xml_node_t *x,
                             const char *bare)
{
    const char *node = form_value(x, "pubsub#node");
    const char *jid = form_value(x, "pubsub#subscriber_jid");
    const char *allow = form_value(x, "pubsub#allow");
    ps_node_t *n = node ? ps_find(svc, node) : NULL;
    ps_sub_t *s = n && jid ? find_sub(n, jid) : NULL;
    if (!n || get_aff(n, bare) != PA_OWNER) {
        ps_error(svc, st, "auth", "forbidden", NULL, NULL);
        return;
    }
    if (!s || !s->pending || !allow || !str_bool_ok(allow))
        return; /* already decided, or not a decision */
    bool yes = str_true(allow);
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", svc->jid);
    xml_node_set_attr(root, "to", s->jid);
    xml_node_t *se = xml_node_add_child(xml_node_add_child(root, "event", NS_PUBSUB_EVENT),
                                        "subscription", NS_PUBSUB_EVENT);
    xml_node_set_attr(se, "node", n->name);
    xml_node_set_attr(se, "jid", s->jid);
    xml_node_set_attr(se, "subscription", yes ? "subscribed" : "none");
    ps_out_push(svc, m);
    if (yes) {
        s->pending = false;
        if (strcmp(n->cfg.send_last, "never") != 0)
            push_last_item(svc, n, s->jid);
    } else {
        del_sub(n, jid);
    }
    save_node(svc, n);
}

static void op_subscribe(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *sb,
                         const char *bare)
{
    const char *jid = xml_node_attr(sb, "jid");
    ps_node_t *n = own_jid(svc, st, jid, bare) ? named_node(svc, st, sb) : NULL;
    if (!n)
        return;
    /* §6.1.3.x / §8.6: on an authorize node a newcomer waits for an owner */
    bool ask = strcmp(n->cfg.access_model, "authorize") == 0 && get_aff(n, bare) >= PA_NONE &&
               get_aff(n, bare) < PA_MEMBER && !ps_is_subscriber(n, jid);
    const char *app;
    const char *cond = ask ? NULL : access_denied(svc, n, bare, &app);
    if (cond) {
        ps_error(svc, st, strcmp(cond, "not-allowed") == 0 ? "cancel" : "auth", cond, app, NULL);
        return;
    }
    ps_sub_t *s = add_sub(n, jid);
    s->pending = ask;
    save_node(svc, n);
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
    xml_node_t *se = xml_node_add_child(p, "subscription", NS_PUBSUB);
    xml_node_set_attr(se, "node", n->name);
    xml_node_set_attr(se, "jid", s->jid);
    if (ask) /* one subscription per JID: the id matters only to the approval */
        xml_node_set_attr(se, "subid", s->subid);
    xml_node_set_attr(se, "subscription", ask ? "pending" : "subscribed");
    ps_out_push(svc, res);
    if (ask) {
        ask_owners(svc, n, s);
        return;
    }
    /* §6.1.7: the last published item goes to the new subscriber. */
    if (strcmp(n->cfg.send_last, "never") != 0)
        push_last_item(svc, n, s->jid);
}

static void op_unsubscribe(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *us,
                           const char *bare)
{
    const char *jid = xml_node_attr(us, "jid");
    ps_node_t *n = own_jid(svc, st, jid, bare) ? named_node(svc, st, us) : NULL;
    if (!n)
        return;
    if (!find_sub(n, jid)) {
        ps_error(svc, st, "cancel", "unexpected-request", "not-subscribed", NULL);
        return;
    }
    del_sub(n, jid);
    save_node(svc, n);
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
    xml_node_t *se = xml_node_add_child(p, "subscription", NS_PUBSUB);
    xml_node_set_attr(se, "node", n->name);
    xml_node_set_attr(se, "jid", jid);
    xml_node_set_attr(se, "subscription", "none");
    ps_out_push(svc, res);
}

static void op_items(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *req, const char *bare)
{
    ps_node_t *n = named_node(svc, st, req);
    if (!n)
        return;
    const char *app;
    const char *cond = access_denied(svc, n, bare, &app);
    if (cond) {
        ps_error(svc, st, strcmp(cond, "not-allowed") == 0 ? "cancel" : "auth", cond, app, NULL);
        return;
    }
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
    xml_node_t *items = xml_node_add_child(p, "items", NS_PUBSUB);
    xml_node_set_attr(items, "node", n->name);
    xml_node_t *want = xml_node_child(req, "item", NS_PUBSUB);
    if (want) {
        for (; want; want = xml_node_next(want, "item", NS_PUBSUB)) {
            const char *id = xml_node_attr(want, "id");
            ps_item_t *it = id ? find_item(n, id, NULL) : NULL;
            if (!it)
                continue;
            xml_node_t *ie = xml_node_add_child(items, "item", NS_PUBSUB);
            xml_node_set_attr(ie, "id", it->id);
            if (it->publisher)
                xml_node_set_attr(ie, "publisher", it->publisher);
            add_payload(ie, it);
        }
    } else {
        size_t max = n->nitems;
        const char *mi = xml_node_attr(req, "max_items");
        if (mi) {
            unsigned long m = strtoul(mi, NULL, 10);
            if (m < max)
                max = m;
        }
        /* the newest max, oldest first */
        ps_item_t **sel = tern_xcalloc(max ? max : 1, sizeof(*sel));
        size_t k = 0;
        for (ps_item_t *it = n->items; it && k < max; it = it->next)
            sel[k++] = it;
        while (k--) {
            xml_node_t *ie = xml_node_add_child(items, "item", NS_PUBSUB);
            xml_node_set_attr(ie, "id", sel[k]->id);
            if (sel[k]->publisher)
                xml_node_set_attr(ie, "publisher", sel[k]->publisher);
            add_payload(ie, sel[k]);
        }
        free(sel);
    }
    ps_out_push(svc, res);
}

/* The answer to a requester's own list (§5.6 subscriptions, §5.7
 * affiliations): <pubsub><name node?/></pubsub>, with *list the element to
 * fill and *only the node the request was limited to (or NULL). */
static xml_stanza_t *own_list(ps_service_t *svc, const xml_stanza_t *st, const xml_node_t *req,
                              const char *name, xml_node_t **list, const char **only)
{
    *only = xml_node_attr(req, "node");
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB);
    *list = xml_node_add_child(p, name, NS_PUBSUB);
    if (*only)
        xml_node_set_attr(*list, "node", *only);
    return res;
}

static void op_my_subscriptions(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *req,
                                const char *bare)
{
    const char *only;
    xml_node_t *subs;
    xml_stanza_t *res = own_list(svc, st, req, "subscriptions", &subs, &only);
    for (ps_node_t *n = svc->nodes; n; n = n->next) {
        if (only && strcmp(only, n->name) != 0)
            continue;
        for (ps_sub_t *s = n->subs; s; s = s->next) {
            char *b = bare_of(s->jid);
            if (b && strcmp(b, bare) == 0) {
                xml_node_t *se = xml_node_add_child(subs, "subscription", NS_PUBSUB);
                xml_node_set_attr(se, "node", n->name);
                xml_node_set_attr(se, "jid", s->jid);
                xml_node_set_attr(se, "subscription", s->pending ? "pending" : "subscribed");
            }
            free(b);
        }
    }
    ps_out_push(svc, res);
}

static void op_my_affiliations(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *req,
                               const char *bare)
{
    const char *only;
    xml_node_t *affs;
    xml_stanza_t *res = own_list(svc, st, req, "affiliations", &affs, &only);
    for (ps_node_t *n = svc->nodes; n; n = n->next) {
        if (only && strcmp(only, n->name) != 0)
            continue;
        ps_aff_t a = get_aff(n, bare);
        if (a == PA_NONE)
            continue;
        xml_node_t *ae = xml_node_add_child(affs, "affiliation", NS_PUBSUB);
        xml_node_set_attr(ae, "node", n->name);
        xml_node_set_attr(ae, "affiliation", aff_names[a + 1]);
    }
    ps_out_push(svc, res);
}

/* iq with a <pubsub xmlns='http://jabber.org/protocol/pubsub'/> payload. */
static void ps_handle_pubsub(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *ps, bool is_set,
                             const char *bare)
{
    xml_node_t *c;
    if (is_set) {
        if ((c = xml_node_child(ps, "create", NS_PUBSUB)))
            op_create(svc, st, ps, c, bare);
        else if ((c = xml_node_child(ps, "publish", NS_PUBSUB)))
            op_publish(svc, st, ps, c, bare);
        else if ((c = xml_node_child(ps, "retract", NS_PUBSUB)))
            op_retract(svc, st, c, bare);
        else if ((c = xml_node_child(ps, "subscribe", NS_PUBSUB)))
            op_subscribe(svc, st, c, bare);
        else if ((c = xml_node_child(ps, "unsubscribe", NS_PUBSUB)))
            op_unsubscribe(svc, st, c, bare);
        else
            ps_error(svc, st, "cancel", "feature-not-implemented", NULL, NULL);
    } else {
        if ((c = xml_node_child(ps, "items", NS_PUBSUB)))
            op_items(svc, st, c, bare);
        else if ((c = xml_node_child(ps, "subscriptions", NS_PUBSUB)))
            op_my_subscriptions(svc, st, c, bare);
        else if ((c = xml_node_child(ps, "affiliations", NS_PUBSUB)))
            op_my_affiliations(svc, st, c, bare);
        else
            ps_error(svc, st, "cancel", "feature-not-implemented", NULL, NULL);
    }
}

/* The node named by an owner request, answered with the right error when
 * it is missing or bare is not its owner. */
static ps_node_t *owned_node(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *req,
                             const char *bare)
{
    ps_node_t *n = named_node(svc, st, req);
    if (!n)
        return NULL;
    if (get_aff(n, bare) != PA_OWNER) {
        ps_error(svc, st, "auth", "forbidden", NULL, NULL);
        return NULL;
    }
    return n;
}

static void ps_handle_owner(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *ps, bool is_set,
                            const char *bare)
{
    xml_node_t *c = xml_node_first_element(ps);
    ps_node_t *n;
    if (!c) {
        ps_error(svc, st, "modify", "bad-request", NULL, NULL);
        return;
    }
    if (!is_set && xml_node_is(c, "default", NS_PUBSUB_OWNER)) {
        ps_node_t tmp = {0};
        cfg_default(svc, &tmp.cfg);
        xml_stanza_t *res = iq_result(svc, st);
        xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB_OWNER);
        config_form(&tmp, xml_node_add_child(p, "default", NS_PUBSUB_OWNER));
        ps_out_push(svc, res);
        return;
    }
    if (!(n = owned_node(svc, st, c, bare)))
        return;
    if (xml_node_is(c, "configure", NS_PUBSUB_OWNER)) {
        if (!is_set) {
            xml_stanza_t *res = iq_result(svc, st);
            xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB_OWNER);
            xml_node_t *ce = xml_node_add_child(p, "configure", NS_PUBSUB_OWNER);
            xml_node_set_attr(ce, "node", n->name);
            config_form(n, ce);
            ps_out_push(svc, res);
            return;
        }
        xml_node_t *x = xml_node_child(c, "x", NS_DATA);
        const char *type = x ? xml_node_attr(x, "type") : NULL;
        if (!x || (type && strcmp(type, "cancel") != 0 && strcmp(type, "submit") != 0)) {
            ps_error(svc, st, "modify", "bad-request", NULL, NULL);
            return;
        }
        if (type && strcmp(type, "cancel") == 0) {
            ps_out_push(svc, iq_result(svc, st));
            return;
        }
        if (!apply_config(n, x)) {
            ps_error(svc, st, "modify", "not-acceptable", NULL, NULL);
            return;
        }
        trim_items(svc, n);
        save_node(svc, n);
        ps_out_push(svc, iq_result(svc, st));
    } else if (is_set && xml_node_is(c, "delete", NS_PUBSUB_OWNER)) {
        if (n->cfg.notify_delete && has_audience(svc, n)) {
            xml_node_t *ev;
            xml_stanza_t *m = event_message(svc, n, &ev);
            xml_node_set_attr(xml_node_add_child(ev, "delete", NS_PUBSUB_EVENT), "node", n->name);
            notify_subs(svc, n, m);
        }
        remove_node(svc, n);
        ps_out_push(svc, iq_result(svc, st));
    } else if (is_set && xml_node_is(c, "purge", NS_PUBSUB_OWNER)) {
        while (n->items) {
            ps_item_t *it = n->items;
            n->items = it->next;
            item_free(it);
        }
        n->nitems = 0;
        submit(svc, JOB_DEL_STORE, items_store(n->name), NULL, NULL, 0);
        if (has_audience(svc, n)) {
            xml_node_t *ev;
            xml_stanza_t *m = event_message(svc, n, &ev);
            xml_node_set_attr(xml_node_add_child(ev, "purge", NS_PUBSUB_EVENT), "node", n->name);
            notify_subs(svc, n, m);
        }
        ps_out_push(svc, iq_result(svc, st));
    } else if (xml_node_is(c, "subscriptions", NS_PUBSUB_OWNER)) {
        if (!is_set) {
            xml_stanza_t *res = iq_result(svc, st);
            xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB_OWNER);
            xml_node_t *se = xml_node_add_child(p, "subscriptions", NS_PUBSUB_OWNER);
            xml_node_set_attr(se, "node", n->name);
            for (ps_sub_t *s = n->subs; s; s = s->next) {
                xml_node_t *e = xml_node_add_child(se, "subscription", NS_PUBSUB_OWNER);
                xml_node_set_attr(e, "jid", s->jid);
                xml_node_set_attr(e, "subscription", s->pending ? "pending" : "subscribed");
            }
            ps_out_push(svc, res);
            return;
        }
        for (xml_node_t *e = xml_node_child(c, "subscription", NS_PUBSUB_OWNER); e;
             e = xml_node_next(e, "subscription", NS_PUBSUB_OWNER)) {
            const char *jid = xml_node_attr(e, "jid");
            const char *sub = xml_node_attr(e, "subscription");
            if (!jid || !sub || (strcmp(sub, "none") != 0 && strcmp(sub, "subscribed") != 0)) {
                ps_error(svc, st, "modify", "bad-request", NULL, NULL);
                return;
            }
        }
        for (xml_node_t *e = xml_node_child(c, "subscription", NS_PUBSUB_OWNER); e;
             e = xml_node_next(e, "subscription", NS_PUBSUB_OWNER)) {
            const char *jid = xml_node_attr(e, "jid");
            if (strcmp(xml_node_attr(e, "subscription"), "none") == 0)
                del_sub(n, jid);
            else
                add_sub(n, jid)->pending = false; /* §8.8.2: the owner decides */
        }
        save_node(svc, n);
        ps_out_push(svc, iq_result(svc, st));
    } else if (xml_node_is(c, "affiliations", NS_PUBSUB_OWNER)) {
        if (!is_set) {
            xml_stanza_t *res = iq_result(svc, st);
            xml_node_t *p = xml_node_add_child(xml_stanza_root(res), "pubsub", NS_PUBSUB_OWNER);
            xml_node_t *ae = xml_node_add_child(p, "affiliations", NS_PUBSUB_OWNER);
            xml_node_set_attr(ae, "node", n->name);
            for (ps_affil_t *a = n->affs; a; a = a->next) {
                xml_node_t *e = xml_node_add_child(ae, "affiliation", NS_PUBSUB_OWNER);
                xml_node_set_attr(e, "jid", a->jid);
                xml_node_set_attr(e, "affiliation", aff_names[a->aff + 1]);
            }
            ps_out_push(svc, res);
            return;
        }
        /* §8.9.2.4: the whole list is checked before anything changes:
         * every entry well-formed, one entry per entity, and the node not
         * left without an owner. */
        size_t cnt = 0;
        for (xml_node_t *e = xml_node_child(c, "affiliation", NS_PUBSUB_OWNER); e;
             e = xml_node_next(e, "affiliation", NS_PUBSUB_OWNER))
            cnt++;
        char **jids = tern_xcalloc(cnt ? cnt : 1, sizeof(*jids));
        int *affs = tern_xcalloc(cnt ? cnt : 1, sizeof(*affs));
        const char *cond = NULL;
        size_t k = 0;
        for (xml_node_t *e = xml_node_child(c, "affiliation", NS_PUBSUB_OWNER); e && !cond;
             e = xml_node_next(e, "affiliation", NS_PUBSUB_OWNER), k++) {
            const char *jid = xml_node_attr(e, "jid");
            affs[k] = parse_aff(xml_node_attr(e, "affiliation"));
            jids[k] = jid ? bare_of(jid) : NULL;
            if (!jids[k] || affs[k] < -1)
                cond = "bad-request";
            for (size_t i = 0; i < k && !cond; i++)
                if (strcmp(jids[i], jids[k]) == 0)
                    cond = "bad-request";
        }
        if (!cond) {
            size_t owners = 0;
            for (ps_affil_t *a = n->affs; a; a = a->next) {
                bool listed = false;
                for (size_t i = 0; i < cnt && !listed; i++)
                    listed = strcmp(jids[i], a->jid) == 0;
                owners += a->aff == PA_OWNER && !listed;
            }
            for (size_t i = 0; i < cnt; i++)
                owners += affs[i] == PA_OWNER;
            if (!owners)
                cond = "not-acceptable";
        }
        if (!cond)
            for (size_t i = 0; i < cnt; i++)
                set_aff(n, jids[i], (ps_aff_t)affs[i]);
        for (size_t i = 0; i < cnt; i++)
            free(jids[i]);
        free(jids);
        free(affs);
        if (cond) {
            ps_error(svc, st, "modify", cond, NULL, NULL);
            return;
        }
        save_node(svc, n);
        ps_out_push(svc, iq_result(svc, st));
    } else {
        ps_error(svc, st, "cancel", "feature-not-implemented", NULL, NULL);
    }
}

static void ps_disco_info(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *q,
                          const char *bare)
{
    const char *node = xml_node_attr(q, "node");
    ps_node_t *n = node ? ps_find(svc, node) : NULL;
    const char *app;
    /* a node one may not read is not shown either, as in disco#items */
    if (node && (!n || access_denied(svc, n, bare, &app))) {
        ps_error(svc, st, "cancel", "item-not-found", NULL, NULL);
        return;
    }
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_INFO);
    xml_node_t *id = xml_node_add_child(rq, "identity", NS_DISCO_INFO);
    xml_node_set_attr(id, "category", "pubsub");
    if (n) {
        xml_node_set_attr(rq, "node", n->name);
        xml_node_set_attr(id, "type", "leaf");
        if (n->cfg.title)
            xml_node_set_attr(id, "name", n->cfg.title);
        xml_node_set_attr(xml_node_add_child(rq, "feature", NS_DISCO_INFO), "var", NS_PUBSUB);
        xml_node_t *x = xml_node_add_child(rq, "x", NS_DATA);
        xml_node_set_attr(x, "type", "result");
        add_field(x, "FORM_TYPE", "hidden", "http://jabber.org/protocol/pubsub#meta-data");
        add_field(x, "pubsub#type", NULL, "leaf");
        add_field(x, "pubsub#title", NULL, n->cfg.title ? n->cfg.title : "");
        add_field(x, "pubsub#access_model", NULL, n->cfg.access_model);
        add_field(x, "pubsub#publish_model", NULL, n->cfg.publish_model);
        xml_node_t *f = add_field(x, "pubsub#owner", NULL, NULL);
        for (ps_affil_t *a = n->affs; a; a = a->next)
            if (a->aff == PA_OWNER)
                xml_node_add_child_text(f, "value", NS_DATA, a->jid);
    } else {
        xml_node_set_attr(id, "type", svc->owner ? "pep" : "service");
        xml_node_set_attr(id, "name", "Publish-Subscribe");
        static const char *const feats[] = {"access-open",
                                            "access-whitelist",
                                            "auto-create",
                                            "config-node",
                                            "create-and-configure",
                                            "create-nodes",
                                            "delete-items",
                                            "delete-nodes",
                                            "get-pending",
                                            "instant-nodes",
                                            "item-ids",
                                            "manage-subscriptions",
                                            "modify-affiliations",
                                            "multi-items",
                                            "persistent-items",
                                            "publish",
                                            "publish-options",
                                            "publisher-affiliation",
                                            "purge-nodes",
                                            "retract-items",
                                            "retrieve-affiliations",
                                            "retrieve-default",
                                            "retrieve-items",
                                            "retrieve-subscriptions",
                                            "subscribe",
                                            "meta-data"};
        xml_node_set_attr(xml_node_add_child(rq, "feature", NS_DISCO_INFO), "var", NS_DISCO_INFO);
        xml_node_set_attr(xml_node_add_child(rq, "feature", NS_DISCO_INFO), "var", NS_DISCO_ITEMS);
        xml_node_set_attr(xml_node_add_child(rq, "feature", NS_DISCO_INFO), "var", NS_PUBSUB);
        char var[128];
        for (size_t i = 0; i < TERN_ARRAY_LEN(feats); i++) {
            snprintf(var, sizeof(var), "%s#%s", NS_PUBSUB, feats[i]);
            xml_node_set_attr(xml_node_add_child(rq, "feature", NS_DISCO_INFO), "var", var);
        }
    }
    ps_out_push(svc, res);
}

static void ps_disco_items(ps_service_t *svc, const xml_stanza_t *st, xml_node_t *q,
                           const char *bare)
{
    const char *node = xml_node_attr(q, "node");
    ps_node_t *n = node ? ps_find(svc, node) : NULL;
    if (node && !n) {
        ps_error(svc, st, "cancel", "item-not-found", NULL, NULL);
        return;
    }
    xml_stanza_t *res = iq_result(svc, st);
    xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_ITEMS);
    if (n) {
        const char *app;
        xml_node_set_attr(rq, "node", n->name);
        if (!access_denied(svc, n, bare, &app))
            for (ps_item_t *it = n->items; it; it = it->next) {
                xml_node_t *i = xml_node_add_child(rq, "item", NS_DISCO_ITEMS);
                xml_node_set_attr(i, "jid", svc->jid);
                xml_node_set_attr(i, "name", it->id);
            }
    } else {
        for (n = svc->nodes; n; n = n->next) {
            const char *app;
            if (access_denied(svc, n, bare, &app))
                continue; /* a node one may not read is not shown either */
            xml_node_t *i = xml_node_add_child(rq, "item", NS_DISCO_ITEMS);
            xml_node_set_attr(i, "jid", svc->jid);
            xml_node_set_attr(i, "node", n->name);
            if (n->cfg.title)
                xml_node_set_attr(i, "name", n->cfg.title);
        }
    }
    ps_out_push(svc, res);
}

void ps_handle(ps_service_t *svc, const xml_stanza_t *st, const jid_t *from)
{
    xml_node_t *root = xml_stanza_root(st);
    if (!xml_node_is(root, "iq", NULL)) {
        const char *mt = xml_node_attr(root, "type");
        if (!xml_node_is(root, "message", NULL) || (mt && strcmp(mt, "error") == 0))
            return;
        xml_node_t *x = xml_node_child(root, "x", NS_DATA);
        const char *ft = x ? form_value(x, "FORM_TYPE") : NULL;
        char *b = jid_bare_string(from);
        if (ft && strcmp(ft, NS_SUB_AUTH) == 0 && b)
            on_authorization(svc, st, x, b);
        else
            ps_error(svc, st, "cancel", "service-unavailable", NULL, NULL);
        free(b);
        return;
    }
    const char *type = xml_node_attr(root, "type");
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return;
    bool is_set = strcmp(type, "set") == 0;
    xml_node_t *q = xml_node_first_element(root);
    char *bare = jid_bare_string(from);
    if (!bare)
        return;
    if (!is_set && xml_node_is(q, "query", NS_DISCO_INFO))
        ps_disco_info(svc, st, q, bare);
    else if (!is_set && xml_node_is(q, "query", NS_DISCO_ITEMS))
        ps_disco_items(svc, st, q, bare);
    else if (xml_node_is(q, "pubsub", NS_PUBSUB))
        ps_handle_pubsub(svc, st, q, is_set, bare);
    else if (xml_node_is(q, "pubsub", NS_PUBSUB_OWNER))
        ps_handle_owner(svc, st, q, is_set, bare);
    else
        ps_error(svc, st, "cancel", "service-unavailable", NULL, NULL);
    free(bare);
}

void ps_service_init(ps_service_t *svc, tern_server_t *srv, const char *jid, const char *host,
                     const char *user, const char *owner)
{
    memset(svc, 0, sizeof(*svc));
    svc->srv = srv;
    svc->jid = tern_xstrdup(jid);
    svc->host = tern_xstrdup(host);
    svc->user = tern_xstrdup(user);
    svc->owner = owner ? tern_xstrdup(owner) : NULL;
    svc->pep = owner != NULL;
}

void ps_service_clear(ps_service_t *svc)
{
    while (svc->nodes) {
        ps_node_t *n = svc->nodes;
        svc->nodes = n->next;
        node_free(n);
    }
    for (size_t i = 0; i < svc->nout; i++)
        xml_stanza_unref(svc->out[i]);
    free(svc->out);
    free(svc->jid);
    free(svc->host);
    free(svc->user);
    free(svc->owner);
    memset(svc, 0, sizeof(*svc));
}

xml_stanza_t **ps_take_out(ps_service_t *svc, size_t *n)
{
    xml_stanza_t **out = svc->out;
    *n = svc->nout;
    svc->out = NULL;
    svc->nout = svc->capout = 0;
    return out;
}

bool ps_group_allowed(const ps_node_t *n, const char *group)
{
    size_t gl = strlen(group);
    for (const char *g = n->cfg.roster_groups; g && *g;) {
        const char *nl = strchr(g, '\n');
        size_t len = nl ? (size_t)(nl - g) : strlen(g);
        if (len == gl && memcmp(g, group, gl) == 0)
            return true;
        g = nl ? nl + 1 : g + len;
    }
    return false;
}

bool ps_may_see(ps_service_t *svc, const ps_node_t *n, const char *bare)
{
    const char *app;
    return access_denied(svc, n, bare, &app) == NULL;
}

const ps_node_t *ps_request_node(ps_service_t *svc, const xml_stanza_t *st)
{
    const xml_node_t *root = xml_stanza_root(st);
    const xml_node_t *q = xml_node_is(root, "iq", NULL) ? xml_node_first_element(root) : NULL;
    const char *name = NULL;
    if (xml_node_is(q, "pubsub", NS_PUBSUB) || xml_node_is(q, "pubsub", NS_PUBSUB_OWNER)) {
        const xml_node_t *op = xml_node_first_element(q);
        name = op ? xml_node_attr(op, "node") : NULL;
    } else if (xml_node_is(q, "query", NS_DISCO_INFO) || xml_node_is(q, "query", NS_DISCO_ITEMS)) {
        name = xml_node_attr(q, "node");
    }
    return name ? ps_find(svc, name) : NULL;
}

const char *ps_item_payload(ps_service_t *svc, const char *node, const char *id)
{
    ps_node_t *n = ps_find(svc, node);
    ps_item_t *it = n ? find_item(n, id, NULL) : NULL;
    return it ? it->payload : NULL;
}

bool ps_is_subscriber(const ps_node_t *n, const char *to)
{
    const ps_sub_t *s = find_sub(n, to);
    return s && !s->pending;
}

void ps_send_last_items(ps_service_t *svc, const char *to, const char *bare,
                        bool (*want)(void *ud, const char *node), void *ud)
{
    for (ps_node_t *n = svc->nodes; n; n = n->next)
        if (n->items && strcmp(n->cfg.send_last, "on_sub_and_presence") == 0 &&
            n->cfg.deliver_notifications && ps_may_see(svc, n, bare) && want(ud, n->name))
            push_last_item(svc, n, to);
}

/* ------------------------------------------------------------------ core: loading */

typedef struct kv_rec {
    char *key, *value;
    size_t len;
    struct kv_rec *next;
} kv_rec_t;

struct ps_stored {
    kv_rec_t *nodes;
    kv_rec_t **items; /* per node, same order */
    size_t nnodes;
};

static int collect(void *ud, const char *key, const char *value, size_t len)
{
    kv_rec_t **head = ud;
    kv_rec_t *r = tern_xcalloc(1, sizeof(*r));
    r->key = tern_xstrdup(key);
    r->value = tern_xmalloc(len + 1);
    memcpy(r->value, value, len);
    r->value[len] = '\0';
    r->len = len;
    r->next = *head;
    *head = r;
    return 0;
}

static void recs_free(kv_rec_t *r)
{
    while (r) {
        kv_rec_t *n = r->next;
        free(r->key);
        free(r->value);
        free(r);
        r = n;
    }
}

void ps_stored_free(ps_stored_t *j)
{
    if (!j)
        return;
    for (size_t i = 0; j->items && i < j->nnodes; i++)
        recs_free(j->items[i]);
    free(j->items);
    recs_free(j->nodes);
    free(j);
}

int ps_stored_read(const storage_driver_t *drv, storage_db_t *db, const char *host,
                   const char *user, ps_stored_t **out)
{
    ps_stored_t *j = tern_xcalloc(1, sizeof(*j));
    *out = j;
    int rc = drv->kv_list(db, host, user, PS_NODES_STORE, collect, &j->nodes);
    if (rc != 0 && rc != TERN_ENOENT)
        return rc;
    for (kv_rec_t *r = j->nodes; r; r = r->next)
        j->nnodes++;
    j->items = tern_xcalloc(j->nnodes ? j->nnodes : 1, sizeof(*j->items));
    size_t i = 0;
    for (kv_rec_t *r = j->nodes; r; r = r->next, i++) {
        char *store = items_store(r->key);
        rc = drv->kv_list(db, host, user, store, collect, &j->items[i]);
        free(store);
        if (rc != 0 && rc != TERN_ENOENT)
            return rc;
    }
    return 0;
}

void ps_stored_apply(ps_service_t *svc, const ps_stored_t *j)
{
    size_t i = 0;
    for (kv_rec_t *r = j ? j->nodes : NULL; r; r = r->next, i++) {
        if (ps_find(svc, r->key))
            continue;
        ps_node_t *n = load_node(svc, r->key, r->value, r->len);
        for (kv_rec_t *it = j->items ? j->items[i] : NULL; n && it; it = it->next)
            load_item(n, it->key, it->value, it->len);
    }
}

/* The creation policy is read from the configuration for each batch (under
 * the lock), as the configuration may be reloaded. */
static void refresh_policy(pubsub_t *pt)
{
    const config_host_t *hc = tern_host_config(pt->host);
    pt->svc.creation = hc->pubsub_node_creation;
    pt->svc.local_domain = hc->domain;
    pt->svc.admins = hc->admins;
    pt->svc.max_payload = hc->pubsub_max_payload;
}

static void flush_out(pubsub_t *pt, xml_stanza_t **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tern_route(pt->srv, out[i]);
        xml_stanza_unref(out[i]);
    }
    free(out);
}

/* ------------------------------------------------------------------ entry: roster access */

/* XEP-0060 §4.5 on this service: presence and roster access are relative
 * to the node's owners. Before a request from a non-affiliate on such a
 * node is handled, one storage job reads the requester's item in each
 * local owner's roster; requests behind it wait, so the order holds. */
typedef struct rels {
    char *bare, *host;
    size_t n;
    char **owners;  /* local parts */
    unsigned *sub;  /* per owner */
    char ***groups; /* per owner, NULL-terminated, or NULL */
} rels_t;

static void rels_free(rels_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->owners[i]);
        for (size_t k = 0; r->groups[i] && r->groups[i][k]; k++)
            free(r->groups[i][k]);
        free(r->groups[i]);
    }
    free(r->owners);
    free(r->sub);
    free(r->groups);
    free(r->bare);
    free(r->host);
    free(r);
}

static bool svc_roster_allows(void *ud, const ps_node_t *n, const char *bare)
{
    const rels_t *r = ((pubsub_t *)ud)->rels;
    if (!r || strcmp(r->bare, bare) != 0)
        return false;
    bool presence = strcmp(n->cfg.access_model, "presence") == 0;
    for (size_t i = 0; i < r->n; i++) {
        if (presence && (r->sub[i] & ROSTER_SUB_FROM))
            return true;
        for (size_t k = 0; !presence && r->groups[i] && r->groups[i][k]; k++)
            if (ps_group_allowed(n, r->groups[i][k]))
                return true;
    }
    return false;
}

/* The lookup q's request needs, or NULL when it can be handled now. */
static rels_t *rels_needed(pubsub_t *pt, const queued_t *q)
{
    const ps_node_t *n = ps_request_node(&pt->svc, q->st);
    if (!n || (strcmp(n->cfg.access_model, "presence") != 0 &&
               strcmp(n->cfg.access_model, "roster") != 0))
        return NULL;
    char *bare = jid_bare_string(&q->from);
    for (const ps_affil_t *a = n->affs; bare && a; a = a->next) {
        if (strcmp(a->jid, bare) == 0) { /* affiliations decide alone */
            free(bare);
            return NULL;
        }
    }
    rels_t *r = tern_xcalloc(1, sizeof(*r));
    r->bare = bare;
    r->host = tern_xstrdup(pt->svc.local_domain ? pt->svc.local_domain : "");
    for (const ps_affil_t *a = n->affs; bare && a; a = a->next) {
        const char *at = strchr(a->jid, '@');
        if (a->aff != PA_OWNER || !at || strcmp(at + 1, r->host) != 0)
            continue;
        r->owners = tern_xrealloc(r->owners, (r->n + 1) * sizeof(*r->owners));
        r->owners[r->n++] = tern_xstrndup(a->jid, (size_t)(at - a->jid));
    }
    if (!r->n) {
        rels_free(r);
        return NULL;
    }
    r->sub = tern_xcalloc(r->n, sizeof(*r->sub));
    r->groups = tern_xcalloc(r->n, sizeof(*r->groups));
    return r;
}

typedef struct {
    pubsub_t *pt, *self;
    rels_t *rels;
} rels_job_t;

static int rels_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    rels_t *r = ((rels_job_t *)arg)->rels;
    for (size_t i = 0; i < r->n; i++) {
        int rc =
            roster_storage_item(drv, db, r->host, r->owners[i], r->bare, &r->sub[i], &r->groups[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void drain(pubsub_t *pt, pubsub_t *self);

static void handle_head(pubsub_t *pt)
{
    queued_t *q = pt->qhead;
    pt->qhead = q->next;
    if (!pt->qhead)
        pt->qtail = &pt->qhead;
    pt->nq--;
    ps_handle(&pt->svc, q->st, &q->from);
    xml_stanza_unref(q->st);
    jid_clear(&q->from);
    free(q);
}

static void rels_done(void *arg, int result)
{
    rels_job_t *j = arg;
    pubsub_t *pt = j->pt;
    pthread_mutex_lock(&pt->lock);
    pt->asking = false;
    if (result != 0) /* an unreadable roster admits nobody */
        log_warn("pubsub", "reading owners' rosters for %s failed (%d)", j->rels->bare, result);
    pt->rels = result == 0 ? j->rels : NULL;
    if (pt->qhead)
        handle_head(pt);
    pt->rels = NULL;
    drain(pt, j->self);
    size_t nout;
    xml_stanza_t **out = ps_take_out(&pt->svc, &nout);
    pthread_mutex_unlock(&pt->lock);
    flush_out(pt, out, nout);
    rels_free(j->rels);
    free(j);
}

/* Handles queued stanzas in order until one needs a roster lookup (under
 * the lock). */
static void drain(pubsub_t *pt, pubsub_t *self)
{
    refresh_policy(pt);
    pt->svc.srv = self->srv; /* storage is submitted on the calling loop */
    while (pt->qhead && !pt->asking) {
        rels_t *need = rels_needed(pt, pt->qhead);
        if (!need) {
            handle_head(pt);
            continue;
        }
        rels_job_t *j = tern_xcalloc(1, sizeof(*j));
        j->pt = pt;
        j->self = self;
        j->rels = need;
        if (tern_storage_submit(self->srv, rels_run, rels_done, j) != 0) {
            rels_free(need);
            free(j);
            handle_head(pt); /* without the rosters: affiliates only */
            continue;
        }
        pt->asking = true;
    }
}

/* ------------------------------------------------------------------ entry: loading */

typedef struct {
    pubsub_t *pt;   /* primary */
    pubsub_t *self; /* the instance of the worker that asked */
    char *host, *user;
    ps_stored_t *stored;
} load_job_t;

static int load_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    load_job_t *j = arg;
    return ps_stored_read(drv, db, j->host, j->user, &j->stored);
}

static void loaded(void *arg, int result)
{
    load_job_t *j = arg;
    pubsub_t *pt = j->pt;
    pthread_mutex_lock(&pt->lock);
    if (result != 0)
        log_warn("pubsub", "loading nodes of %s failed (%d)", pt->domain, result);
    ps_stored_apply(&pt->svc, j->stored);
    pt->loaded = true;
    pt->loading = false;
    drain(pt, j->self);
    size_t nout;
    xml_stanza_t **out = ps_take_out(&pt->svc, &nout);
    pthread_mutex_unlock(&pt->lock);
    flush_out(pt, out, nout);
    ps_stored_free(j->stored);
    free(j->host);
    free(j->user);
    free(j);
}

/* ------------------------------------------------------------------ entry */

static tern_handled_t on_stanza(void *state, tern_stanza_ev_t *ev)
{
    pubsub_t *self = state;
    if (!ev->from || !ev->from->local)
        return TERN_PASS;
    if (ev->to->local) /* nodes are not addressed as JIDs */
        return TERN_PASS;
    pubsub_t *pt = tern_module_primary_state(self->host, &mod_pubsub);
    if (!pt)
        pt = self;
    /* Every stanza joins the queue, which drain() empties in order unless
     * the nodes are still loading or a roster read is under way. */
    pthread_mutex_lock(&pt->lock);
    if (pt->nq >= PS_MAX_QUEUED) {
        pthread_mutex_unlock(&pt->lock);
        tern_bounce(self->srv, ev->stanza, "wait", "resource-constraint", NULL);
        return TERN_HANDLED;
    }
    queued_t *q = tern_xcalloc(1, sizeof(*q));
    if (jid_copy(ev->from, &q->from) != 0) {
        free(q);
        pthread_mutex_unlock(&pt->lock);
        return TERN_HANDLED;
    }
    q->st = xml_stanza_ref(ev->stanza);
    *pt->qtail = q;
    pt->qtail = &q->next;
    pt->nq++;
    if (!pt->loaded) {
        if (!pt->loading) {
            load_job_t *j = tern_xcalloc(1, sizeof(*j));
            j->pt = pt;
            j->self = self;
            j->host = tern_xstrdup(pt->svc.host);
            j->user = tern_xstrdup(pt->svc.user);
            pt->loading = true;
            if (tern_storage_submit(self->srv, load_run, loaded, j) != 0) {
                free(j->host);
                free(j->user);
                free(j);
                pt->loading = false;
                pt->loaded = true; /* serve from memory rather than never */
                log_warn("pubsub", "cannot load nodes of %s", pt->domain);
            }
        }
        pthread_mutex_unlock(&pt->lock);
        return TERN_HANDLED;
    }
    drain(pt, self);
    size_t nout;
    xml_stanza_t **out = ps_take_out(&pt->svc, &nout);
    pthread_mutex_unlock(&pt->lock);
    flush_out(self, out, nout);
    return TERN_HANDLED;
}

static void *pubsub_init(tern_module_t *m)
{
    tern_host_t *h = tern_module_host(m);
    const config_host_t *hc = tern_host_config(h);
    if (!hc->pubsub_domain || strcmp(hc->pubsub_domain, "none") == 0)
        return NULL;
    pubsub_t *pt = tern_xcalloc(1, sizeof(*pt));
    pt->host = h;
    pt->srv = tern_host_server(h);
    pt->domain = tern_xstrdup(hc->pubsub_domain);
    pthread_mutex_init(&pt->lock, NULL);
    pt->qtail = &pt->qhead;
    ps_service_init(&pt->svc, pt->srv, pt->domain, tern_host_domain(h), pt->domain, NULL);
    pt->hooks.roster_allows = svc_roster_allows;
    pt->hooks.ud = pt;
    pt->svc.hooks = &pt->hooks;
    if (tern_register_service(m, pt->domain, "Publish-Subscribe", on_stanza) != 0) {
        log_error("pubsub", "cannot serve %s: domain already taken", pt->domain);
        pthread_mutex_destroy(&pt->lock);
        ps_service_clear(&pt->svc);
        free(pt->domain);
        free(pt);
        return NULL;
    }
    return pt;
}

static void pubsub_fini(void *state)
{
    pubsub_t *pt = state;
    if (!pt)
        return;
    while (pt->qhead) {
        queued_t *q = pt->qhead;
        pt->qhead = q->next;
        xml_stanza_unref(q->st);
        jid_clear(&q->from);
        free(q);
    }
    pthread_mutex_destroy(&pt->lock);
    ps_service_clear(&pt->svc);
    free(pt->domain);
    free(pt);
}

const tern_module_def_t mod_pubsub = {"pubsub", TERN_MODULE_API_VERSION, pubsub_init, pubsub_fini};
