/* SPDX-License-Identifier: MIT
 * offline.c - offline message storage (XEP-0160).
 *
 * A chat or normal message that no resource of a local account can take
 * (the router's UNDELIVERABLE point) is written to the account's offline
 * queue with a XEP-0203 delay stamp, and delivered when a resource next
 * sends available presence with a non-negative priority (XEP-0160 §3).
 *
 * Durability: the message is committed before anything else happens to
 * it, and it is deleted only after it has been written to a live session,
 * so a crash at any point loses nothing (at worst a message is delivered
 * twice). A full queue (offline_max_messages) answers service-unavailable,
 * as does a message for an account that does not exist (RFC 6121 §8.5.2).
 *
 * Storage: store "offline", key = 20-digit sequence number (so key order
 * is arrival order), value = the message XML; store "offline_meta", key
 * "seq" = the next sequence number.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "tern/module.h"

#define STORE      "offline"
#define META_STORE "offline_meta"
#define TAG        "offline"
/* XEP-0085 chat states and XEP-0334 hints: a message made only of these
 * says nothing worth keeping. */
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
} offline_t;

typedef struct {
    offline_t *o;
    char *host, *user;
    xml_stanza_t *st; /* the message (store) */
    char *xml;        /* its serialisation (store) */
    size_t len;
    unsigned quota;
    bool full, no_account;
    /* delivery */
    tern_session_t *session;
    char **keys, **values;
    size_t n;
} job_t;

static void job_free(job_t *j)
{
    free(j->host);
    free(j->user);
    free(j->xml);
    if (j->st)
        xml_stanza_unref(j->st);
    if (j->session)
        tern_session_unref(j->session);
    for (size_t i = 0; i < j->n; i++) {
        free(j->keys[i]);
        free(j->values[i]);
    }
    free(j->keys);
    free(j->values);
    free(j);
}

static int store_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    job_t *j = arg;
    int rc = storage_user_exists(drv, db, j->host, j->user);
    if (rc == TERN_ENOENT) {
        j->no_account = true;
        return 0;
    }
    if (rc != 0 || (rc = drv->begin(db)) != 0)
        return rc;
    size_t n = 0;
    rc = drv->kv_count(db, j->host, j->user, STORE, &n);
    if (rc == 0 && n >= j->quota) {
        j->full = true;
        drv->rollback(db);
        return 0;
    }
    char *v = NULL;
    size_t vlen = 0;
    uint64_t seq = 0;
    if (rc == 0) {
        rc = drv->kv_get(db, j->host, j->user, META_STORE, "seq", &v, &vlen);
        if (rc == 0)
            seq = strtoull(v, NULL, 10);
        else if (rc == TERN_ENOENT)
            rc = 0;
        free(v);
    }
    char key[32], next[32];
    snprintf(key, sizeof(key), "%020" PRIu64, seq);
    int nlen = snprintf(next, sizeof(next), "%" PRIu64, seq + 1);
    if (rc == 0)
        rc = drv->kv_put(db, j->host, j->user, STORE, key, j->xml, j->len);
    if (rc == 0)
        rc = drv->kv_put(db, j->host, j->user, META_STORE, "seq", next, (size_t)nlen);
    if (rc == 0)
        rc = drv->commit(db);
    if (rc != 0)
        drv->rollback(db);
    return rc;
}

static void store_done(void *arg, int result)
{
    job_t *j = arg;
    if (result != 0) {
        log_error(TAG, "%s@%s: cannot store an offline message (%d)", j->user, j->host, result);
        tern_bounce(j->o->srv, j->st, "wait", "internal-server-error", NULL);
    } else if (j->no_account) {
        tern_bounce(j->o->srv, j->st, "cancel", "service-unavailable", NULL);
    } else if (j->full) {
        /* XEP-0160 §3: storage full is the same answer as none at all. */
        tern_bounce(j->o->srv, j->st, "cancel", "service-unavailable", "offline storage is full");
    }
    job_free(j);
}

/* Chat and normal messages that carry something (XEP-0160 §2 and RFC 6121
 * §8.5.2.2.1); headlines, errors and groupchat are not kept, nor messages
 * the sender marked XEP-0334 no-store, nor bare chat states. */
static bool worth_storing(const xml_node_t *root)
{
    const char *type = xml_node_attr(root, "type");
    if (type && strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0)
        return false;
    bool content = false;
    for (const xml_node_t *c = xml_node_first_element(root); c; c = xml_node_next(c, NULL, NULL)) {
        if (strcmp(c->ns, NS_HINTS) == 0 &&
            (strcmp(c->name, "no-store") == 0 || strcmp(c->name, "no-permanent-store") == 0))
            return false;
        if (strcmp(c->ns, NS_CHATSTATES) != 0 && strcmp(c->ns, NS_HINTS) != 0)
            content = true;
    }
    return content;
}

static tern_handled_t on_undeliverable(void *state, tern_stanza_ev_t *ev)
{
    offline_t *o = state;
    const config_host_t *hc = tern_host_config(o->host);
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (hc->offline_max_messages == 0 || !ev->to || !ev->to->local ||
        strcmp(root->name, "message") != 0 || !worth_storing(root))
        return TERN_PASS;
    job_t *j = tern_xcalloc(1, sizeof(*j));
    j->o = o;
    j->host = tern_xstrdup(ev->to->domain);
    j->user = tern_xstrdup(ev->to->local);
    j->quota = hc->offline_max_messages;
    j->st = xml_stanza_ref(ev->stanza);
    xml_stanza_t *copy = xml_stanza_copy(ev->stanza);
    tern_stamp_delay(xml_stanza_root(copy), ev->to->domain, time(NULL), "Offline storage");
    j->xml = xml_node_to_string(xml_stanza_root(copy), NS_CLIENT, &j->len);
    xml_stanza_unref(copy);
    if (!j->xml || tern_storage_submit(o->srv, store_job, store_done, j) != 0) {
        job_free(j);
        return TERN_PASS; /* the router bounces it */
    }
    return TERN_HANDLED;
}

/* ---- delivery at login ---- */

static int collect_row(void *ud, const char *key, const char *value, size_t len)
{
    job_t *j = ud;
    (void)len;
    j->keys = tern_xrealloc(j->keys, (j->n + 1) * sizeof(char *));
    j->values = tern_xrealloc(j->values, (j->n + 1) * sizeof(char *));
    j->keys[j->n] = tern_xstrdup(key);
    j->values[j->n] = tern_xstrdup(value);
    j->n++;
    return 0;
}

static int load_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    job_t *j = arg;
    return drv->kv_list(db, j->host, j->user, STORE, collect_row, j);
}

static int delete_job(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    job_t *j = arg;
    int rc = drv->begin(db);
    for (size_t i = 0; rc == 0 && i < j->n; i++) {
        int d = drv->kv_del(db, j->host, j->user, STORE, j->keys[i]);
        if (d != 0 && d != TERN_ENOENT)
            rc = d;
    }
    if (rc == 0)
        rc = drv->commit(db);
    else
        drv->rollback(db);
    return rc;
}

static void delete_done(void *arg, int result)
{
    job_t *j = arg;
    if (result != 0)
        log_error(TAG, "%s@%s: delivered offline messages not deleted (%d); they will come again",
                  j->user, j->host, result);
    job_free(j);
}

static void load_done(void *arg, int result)
{
    job_t *j = arg;
    if (result != 0 || j->n == 0 || !tern_session_is_open(j->session)) {
        if (result != 0)
            log_error(TAG, "%s@%s: cannot read offline messages (%d)", j->user, j->host, result);
        job_free(j);
        return;
    }
    size_t sent = 0;
    for (size_t i = 0; i < j->n; i++) {
        xml_stanza_t *st = xml_parse_element(j->values[i], strlen(j->values[i]), NS_CLIENT,
                                             strlen(j->values[i]) + 1);
        if (!st) {
            log_error(TAG, "%s@%s: unreadable offline message %s dropped", j->user, j->host,
                      j->keys[i]);
            continue;
        }
        tern_session_send(j->session, st);
        xml_stanza_unref(st);
        sent++;
    }
    log_debug(TAG, "%s@%s: %zu offline messages delivered", j->user, j->host, sent);
    /* Only what was written to the session goes; anything stored since
     * the load stays for the next login. */
    if (tern_storage_submit(j->o->srv, delete_job, delete_done, j) != 0)
        job_free(j);
}

static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    offline_t *o = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (ev->to || !ev->session || strcmp(root->name, "presence") != 0 ||
        xml_node_attr(root, "type") || tern_session_available(ev->session))
        return TERN_PASS;
    /* XEP-0160 §3: initial presence with a non-negative priority. */
    xml_node_t *prio = xml_node_child(root, "priority", NS_CLIENT);
    if (prio && atoi(xml_node_text(prio)) < 0)
        return TERN_PASS;
    job_t *j = tern_xcalloc(1, sizeof(*j));
    j->o = o;
    j->host = tern_xstrdup(ev->from->domain);
    j->user = tern_xstrdup(ev->from->local);
    j->session = tern_session_ref(ev->session);
    if (tern_storage_submit(o->srv, load_job, load_done, j) != 0)
        job_free(j);
    return TERN_PASS;
}

static void *offline_init(tern_module_t *m)
{
    offline_t *o = tern_xcalloc(1, sizeof(*o));
    o->host = tern_module_host(m);
    o->srv = tern_host_server(o->host);
    tern_register_hook(m, TERN_HOOK_UNDELIVERABLE, -50, on_undeliverable);
    /* After the roster's broadcast (priority 0): the user's contacts
     * learn it is online before the backlog starts flowing. */
    tern_register_hook(m, TERN_HOOK_OUTBOUND, -50, on_outbound);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, "msgoffline");
    return o;
}

static void offline_fini(void *state)
{
    free(state);
}

const tern_module_def_t mod_offline = {"offline", TERN_MODULE_API_VERSION, offline_init,
                                       offline_fini};
