/* SPDX-License-Identifier: MIT
 * push.c - push notifications (XEP-0357).
 *
 * A client registers its app server (a pubsub service JID and a node, plus
 * publish options such as a secret) with <enable/>; the registration
 * belongs to the account and is stored, so it outlives the session. When a
 * message reaches the account while the client cannot see it, the server
 * publishes a XEP-0357 summary to each registered node, from the user's
 * bare JID: the app server then wakes the device through its vendor's
 * push service.
 *
 * "Cannot see it" means one of: no session can take the message (it went
 * to offline storage: the UNDELIVERABLE point, ahead of the offline
 * module), or the session it is delivered to is hibernated by stream
 * management or inactive by CSI (the DELIVER point). Notifications are
 * rate-limited per account to one per PUSH_MIN_INTERVAL_MS, counting the
 * messages in between (message-count), since phones only need a wake-up.
 *
 * Storage: store "push", key = app server JID + "\x1f" + node, value = the
 * publish-options form (XML, may be empty).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/common.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "tern/module.h"

#define NS_PUSH              "urn:xmpp:push:0"
#define NS_PUSH_SUMMARY      "urn:xmpp:push:summary"
#define STORE                "push"
#define TAG                  "push"
#define MAX_OPTIONS          4096
#define MAX_NODES            32  /* registrations per account: one per device */
#define MAX_BODY_CHARS       256 /* of the last message, in the summary */
#define PUSH_MIN_INTERVAL_MS 1000

typedef struct {
    uint64_t last_ms; /* last notification sent */
    unsigned pending; /* messages since the last notification */
} account_state_t;

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    hashmap_t accounts; /* bare JID -> account_state_t (owned keys) */
    uint64_t seq;
} push_t;

/* ---- enable / disable ---- */

typedef struct {
    push_t *p;
    tern_iq_saved_t *iq;
    char *host, *user;
    char *key;     /* enable: jid\x1fnode; disable: jid\x1fnode or jid\x1f (all) */
    char *options; /* enable: publish options XML, "" if none */
    bool enable, all_nodes;
    bool too_many;
} reg_job_t;

static void reg_job_free(reg_job_t *j)
{
    tern_iq_saved_free(j->iq);
    free(j->host);
    free(j->user);
    free(j->key);
    free(j->options);
    free(j);
}

typedef struct {
    const char *prefix;
    size_t prefix_len;
    size_t count;
    char **matches;
    size_t nmatches;
} scan_t;

static int scan_keys(void *ud, const char *key, const char *value, size_t len)
{
    (void)value;
    (void)len;
    scan_t *sc = ud;
    sc->count++;
    if (sc->prefix && strncmp(key, sc->prefix, sc->prefix_len) == 0) {
        sc->matches = tern_xrealloc(sc->matches, (sc->nmatches + 1) * sizeof(char *));
        sc->matches[sc->nmatches++] = tern_xstrdup(key);
    }
    return 0;
}

static int reg_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    reg_job_t *j = arg;
    int rc = drv->begin(db);
    if (rc != 0)
        return rc;
    scan_t sc = {0};
    if (!j->enable && j->all_nodes) {
        sc.prefix = j->key;
        sc.prefix_len = strlen(j->key);
    }
    rc = drv->kv_list(db, j->host, j->user, STORE, scan_keys, &sc);
    if (rc == 0 && j->enable) {
        char *old = NULL;
        size_t len = 0;
        int exists = drv->kv_get(db, j->host, j->user, STORE, j->key, &old, &len);
        free(old);
        if (exists == TERN_ENOENT && sc.count >= MAX_NODES)
            j->too_many = true;
        else
            rc = drv->kv_put(db, j->host, j->user, STORE, j->key, j->options, strlen(j->options));
    } else if (rc == 0 && j->all_nodes) {
        for (size_t i = 0; rc == 0 && i < sc.nmatches; i++)
            rc = drv->kv_del(db, j->host, j->user, STORE, sc.matches[i]);
    } else if (rc == 0) {
        rc = drv->kv_del(db, j->host, j->user, STORE, j->key);
        if (rc == TERN_ENOENT)
            rc = 0; /* disabling what is not there is still success */
    }
    for (size_t i = 0; i < sc.nmatches; i++)
        free(sc.matches[i]);
    free(sc.matches);
    if (rc == 0)
        rc = drv->commit(db);
    else
        drv->rollback(db);
    return rc;
}

static void reg_done(void *arg, int result)
{
    reg_job_t *j = arg;
    if (result != 0)
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
    else if (j->too_many)
        tern_iq_saved_error(j->iq, "wait", "resource-constraint", "too many push registrations");
    else
        tern_iq_saved_reply(j->iq, NULL);
    reg_job_free(j);
}

static char *make_key(const char *jid, const char *node)
{
    size_t a = strlen(jid), b = node ? strlen(node) : 0;
    char *k = tern_xmalloc(a + b + 2);
    memcpy(k, jid, a);
    k[a] = '\x1f';
    if (b)
        memcpy(k + a + 1, node, b);
    k[a + 1 + b] = '\0';
    return k;
}

static tern_handled_t on_push_iq(void *state, tern_iq_t *iq)
{
    push_t *p = state;
    if (!iq->is_set) {
        tern_iq_error(iq, "cancel", "bad-request", NULL);
        return TERN_HANDLED;
    }
    if (!iq->from || !iq->from->local ||
        (iq->to && (!iq->to->local || strcmp(iq->to->local, iq->from->local) != 0))) {
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    bool enable = strcmp(iq->payload->name, "enable") == 0;
    const char *jid = xml_node_attr(iq->payload, "jid");
    const char *node = xml_node_attr(iq->payload, "node");
    jid_t app = {0};
    /* §5: enable needs both; disable needs the service, node optional. */
    if (!jid || jid_parse(jid, &app) != 0 || (enable && (!node || !*node))) {
        jid_clear(&app);
        tern_iq_error(iq, "modify", "bad-request", NULL);
        return TERN_HANDLED;
    }
    char *app_str = jid_to_string(&app);
    jid_clear(&app);
    reg_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->p = p;
    j->enable = enable;
    j->host = tern_xstrdup(iq->from->domain);
    j->user = tern_xstrdup(iq->from->local);
    j->all_nodes = !enable && !node;
    j->key = make_key(app_str, node);
    free(app_str);
    if (enable) {
        /* The publish options travel with every notification (§5,
         * typically a secret the app server checks). */
        xml_node_t *form = xml_node_child(iq->payload, "x", NS_DATA);
        size_t len = 0;
        j->options = form ? xml_node_to_string(form, NS_CLIENT, &len) : tern_xstrdup("");
        if (!j->options || len > MAX_OPTIONS) {
            reg_job_free(j);
            tern_iq_error(iq, "modify", "not-acceptable", "publish options too large");
            return TERN_HANDLED;
        }
    }
    j->iq = tern_iq_save(iq);
    if (tern_storage_submit(p->srv, reg_job, reg_done, j) != 0) {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
        reg_job_free(j);
    }
    return TERN_HANDLED;
}

/* ---- notifications ---- */

typedef struct {
    push_t *p;
    char *host, *user, *bare;
    char *sender, *body; /* of the last message */
    unsigned count;
    char **keys, **options;
    size_t n;
} notify_job_t;

static void notify_free(notify_job_t *j)
{
    free(j->host);
    free(j->user);
    free(j->bare);
    free(j->sender);
    free(j->body);
    for (size_t i = 0; i < j->n; i++) {
        free(j->keys[i]);
        free(j->options[i]);
    }
    free(j->keys);
    free(j->options);
    free(j);
}

static int collect_reg(void *ud, const char *key, const char *value, size_t len)
{
    (void)len;
    notify_job_t *j = ud;
    j->keys = tern_xrealloc(j->keys, (j->n + 1) * sizeof(char *));
    j->options = tern_xrealloc(j->options, (j->n + 1) * sizeof(char *));
    j->keys[j->n] = tern_xstrdup(key);
    j->options[j->n] = tern_xstrdup(value);
    j->n++;
    return 0;
}

static int notify_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    notify_job_t *j = arg;
    return drv->kv_list(db, j->host, j->user, STORE, collect_reg, j);
}

static void add_field(xml_node_t *form, const char *var, const char *value)
{
    xml_node_t *f = xml_node_add_child(form, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    xml_node_add_child_text(f, "value", NS_DATA, value);
}

static void send_notification(notify_job_t *j, const char *key, const char *options)
{
    const char *sep = strchr(key, '\x1f');
    if (!sep)
        return;
    char *app = tern_xmalloc((size_t)(sep - key) + 1);
    memcpy(app, key, (size_t)(sep - key));
    app[sep - key] = '\0';
    xml_stanza_t *iq = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(iq);
    char id[40];
    snprintf(id, sizeof(id), "push%llu", (unsigned long long)++j->p->seq);
    xml_node_set_attr(root, "type", "set");
    xml_node_set_attr(root, "id", id);
    xml_node_set_attr(root, "from", j->bare);
    xml_node_set_attr(root, "to", app);
    xml_node_t *pubsub = xml_node_add_child(root, "pubsub", NS_PUBSUB);
    xml_node_t *publish = xml_node_add_child(pubsub, "publish", NS_PUBSUB);
    xml_node_set_attr(publish, "node", sep + 1);
    xml_node_t *item = xml_node_add_child(publish, "item", NS_PUBSUB);
    xml_node_t *notification = xml_node_add_child(item, "notification", NS_PUSH);
    xml_node_t *form = xml_node_add_child(notification, "x", NS_DATA);
    xml_node_set_attr(form, "type", "submit");
    add_field(form, "FORM_TYPE", NS_PUSH_SUMMARY);
    char count[16];
    snprintf(count, sizeof(count), "%u", j->count);
    add_field(form, "message-count", count);
    if (j->sender)
        add_field(form, "last-message-sender", j->sender);
    if (j->body)
        add_field(form, "last-message-body", j->body);
    if (options && *options) {
        xml_stanza_t *opts = xml_parse_element(options, strlen(options), NS_DATA, MAX_OPTIONS * 2);
        if (opts) {
            xml_node_t *po = xml_node_add_child(pubsub, "publish-options", NS_PUBSUB);
            xml_node_append_copy(po, xml_stanza_root(opts));
            xml_stanza_unref(opts);
        }
    }
    tern_route(j->p->srv, iq);
    xml_stanza_unref(iq);
    free(app);
}

static void notify_done(void *arg, int result)
{
    notify_job_t *j = arg;
    if (result != 0)
        log_error(TAG, "%s: cannot read push registrations (%d)", j->bare, result);
    for (size_t i = 0; result == 0 && i < j->n; i++)
        send_notification(j, j->keys[i], j->options[i]);
    if (j->n)
        log_debug(TAG, "%s: %zu push notifications", j->bare, j->n);
    notify_free(j);
}

/* Copies at most max UTF-8 characters of s. */
static char *utf8_prefix(const char *s, size_t max)
{
    size_t i = 0, chars = 0;
    while (s[i] && chars < max) {
        i++;
        while (((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars++;
    }
    char *out = tern_xmalloc(i + 1);
    memcpy(out, s, i);
    out[i] = '\0';
    return out;
}

static void notify(push_t *p, const jid_t *account, const xml_stanza_t *msg)
{
    xml_node_t *root = xml_stanza_root(msg);
    xml_node_t *body = xml_node_child(root, "body", NS_CLIENT);
    if (!body)
        return; /* chat states and receipts wake nobody */
    char *bare = jid_bare_string(account);
    account_state_t *a = hashmap_get(&p->accounts, bare);
    if (!a) {
        a = tern_xcalloc(1, sizeof(*a));
        hashmap_put(&p->accounts, tern_xstrdup(bare), a);
    }
    a->pending++;
    uint64_t now = uv_hrtime() / 1000000u;
    if (a->last_ms && now - a->last_ms < PUSH_MIN_INTERVAL_MS) {
        free(bare);
        return; /* the device is being woken already */
    }
    a->last_ms = now;
    notify_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->p = p;
    j->host = tern_xstrdup(account->domain);
    j->user = tern_xstrdup(account->local);
    j->bare = bare;
    j->count = a->pending;
    a->pending = 0;
    const char *from = xml_node_attr(root, "from");
    if (from) {
        jid_t fj = {0};
        if (jid_parse(from, &fj) == 0)
            j->sender = jid_bare_string(&fj);
        jid_clear(&fj);
    }
    j->body = utf8_prefix(xml_node_text(body), MAX_BODY_CHARS);
    if (tern_storage_submit(p->srv, notify_job, notify_done, j) != 0)
        notify_free(j);
}

static tern_handled_t on_undeliverable(void *state, tern_stanza_ev_t *ev)
{
    push_t *p = state;
    if (ev->to && ev->to->local && strcmp(xml_stanza_root(ev->stanza)->name, "message") == 0)
        notify(p, ev->to, ev->stanza);
    return TERN_PASS; /* offline storage keeps it */
}

static tern_handled_t on_deliver(void *state, tern_stanza_ev_t *ev)
{
    push_t *p = state;
    if (strcmp(xml_stanza_root(ev->stanza)->name, "message") != 0 ||
        !tern_session_needs_wakeup(ev->session))
        return TERN_PASS;
    const jid_t *j = tern_session_jid(ev->session);
    if (j)
        notify(p, j, ev->stanza);
    return TERN_PASS;
}

static void on_bound(void *state, tern_session_t *s)
{
    /* A client is back: the count starts again. */
    push_t *p = state;
    const jid_t *j = tern_session_jid(s);
    char *bare = j ? jid_bare_string(j) : NULL;
    account_state_t *a = bare ? hashmap_get(&p->accounts, bare) : NULL;
    if (a)
        a->pending = 0;
    free(bare);
}

static void *push_init(tern_module_t *m)
{
    push_t *p = tern_xcalloc(1, sizeof(*p));
    p->host = tern_module_host(m);
    p->srv = tern_host_server(p->host);
    hashmap_init(&p->accounts);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PUSH, "enable", on_push_iq);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PUSH, "disable", on_push_iq);
    tern_register_hook(m, TERN_HOOK_UNDELIVERABLE, -40, on_undeliverable);
    tern_register_hook(m, TERN_HOOK_DELIVER, -10, on_deliver);
    tern_register_session_bound(m, on_bound);
    tern_register_disco_feature(m, TERN_SCOPE_ACCOUNT, NS_PUSH);
    return p;
}

static void push_fini(void *state)
{
    push_t *p = state;
    size_t it = 0;
    char *k;
    void *v;
    while (hashmap_next(&p->accounts, &it, (const char **)&k, &v)) {
        free(v);
        free(k);
    }
    hashmap_free(&p->accounts);
    free(p);
}

const tern_module_def_t mod_push = {"push", TERN_MODULE_API_VERSION, push_init, push_fini};
