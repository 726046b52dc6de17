/* SPDX-License-Identifier: MIT
 * private.c - XEP-0049 private XML storage: a client keeps arbitrary XML
 * elements on the server, one per (namespace, element name), readable and
 * writable only by the account itself.
 *
 * Each element is stored serialised in the key/value store "private" under
 * the key "{namespace}name" (an XML name cannot contain '}', so the key
 * splits one way only). A set with several elements (§2.3 allows them) is
 * written in one transaction and answered after it is durable.
 */
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
#include "pep.h"
#include "tern/module.h"

#define PRIVATE_STORE "private"

typedef struct {
    tern_host_t *host;
} priv_t;

typedef struct {
    char *key;
    char *data; /* set: the element to store; get: what was found, or NULL */
    size_t len;
} pitem_t;

typedef struct {
    tern_iq_saved_t *iq;
    xml_stanza_t *request; /* referenced: a get echoes what was not found */
    char *host;
    char *user;
    bool set;
    size_t n;
    pitem_t *items; /* n entries, in the order of the query's children */
} priv_job_t;

static void job_free(priv_job_t *j)
{
    tern_iq_saved_free(j->iq);
    if (j->request)
        xml_stanza_unref(j->request);
    for (size_t i = 0; i < j->n; i++) {
        free(j->items[i].key);
        free(j->items[i].data);
    }
    free(j->items);
    free(j->host);
    free(j->user);
    free(j);
}

/* Namespaces whose elements are not private data but stanza syntax or this
 * protocol itself; storing them would give back elements a client cannot
 * tell from its own stream's (§2.3 lets servers refuse reserved
 * namespaces). "" is an element without a namespace, which §2.1 rules out. */
static bool ns_reserved(const char *ns)
{
    return !*ns || strcmp(ns, NS_CLIENT) == 0 || strcmp(ns, NS_SERVER) == 0 ||
           strcmp(ns, NS_PRIVATE) == 0;
}

static char *item_key(const xml_node_t *el)
{
    size_t a = strlen(el->ns), b = strlen(el->name);
    char *k = tern_xmalloc(a + b + 3);
    k[0] = '{';
    memcpy(k + 1, el->ns, a);
    k[a + 1] = '}';
    memcpy(k + a + 2, el->name, b + 1);
    return k;
}

static int job_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    priv_job_t *j = arg;
    if (!j->set) {
        for (size_t i = 0; i < j->n; i++) {
            pitem_t *it = &j->items[i];
            int rc = drv->kv_get(db, j->host, j->user, PRIVATE_STORE, it->key, &it->data, &it->len);
            if (rc == TERN_ENOENT)
                continue;
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    int rc = drv->begin(db);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < j->n && rc == 0; i++) {
        pitem_t *it = &j->items[i];
        rc = drv->kv_put(db, j->host, j->user, PRIVATE_STORE, it->key, it->data, it->len);
    }
    if (rc == 0)
        rc = drv->commit(db);
    if (rc != 0) {
        int rb = drv->rollback(db);
        if (rb != 0)
            log_error("private", "rollback failed for %s@%s", j->user, j->host);
    }
    return rc;
}

/* The get's answer: each requested element as stored, or echoed empty. */
static xml_stanza_t *build_result(priv_job_t *j)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_PRIVATE);
    xml_node_t *req_q = xml_node_first_element(xml_stanza_root(j->request));
    xml_node_t *asked = xml_node_first_element(req_q);
    for (size_t i = 0; i < j->n && asked; i++, asked = xml_node_next(asked, NULL, NULL)) {
        pitem_t *it = &j->items[i];
        if (!it->data) {
            xml_node_t *echo = xml_node_add_child(q, asked->name, asked->ns);
            for (const xml_attr_t *a = asked->attrs; a; a = a->next)
                xml_node_set_attr(echo, a->name, a->value);
            continue;
        }
        xml_stanza_t *el = xml_parse_element(it->data, it->len, NS_CLIENT, it->len);
        if (!el) {
            log_error("private", "stored element %s of %s@%s is unreadable", it->key, j->user,
                      j->host);
            xml_stanza_unref(r);
            return NULL;
        }
        xml_node_append_copy(q, xml_stanza_root(el));
        xml_stanza_unref(el);
    }
    return r;
}

static void job_done(void *arg, int result)
{
    priv_job_t *j = arg;
    if (result != 0) {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
    } else if (j->set) {
        tern_iq_saved_reply(j->iq, NULL);
    } else {
        xml_stanza_t *r = build_result(j);
        if (r) {
            tern_iq_saved_reply(j->iq, r);
            xml_stanza_unref(r);
        } else {
            tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
        }
    }
    job_free(j);
}

/* Checks the query's children; on a problem answers the error and returns
 * false. */
static bool validate(tern_iq_t *iq, size_t *count)
{
    size_t n = 0;
    const xml_node_t *first = xml_node_first_element(iq->payload);
    for (const xml_node_t *c = first; c; c = xml_node_next(c, NULL, NULL)) {
        n++;
        if (ns_reserved(c->ns)) {
            tern_iq_error(iq, "modify", "not-acceptable", "reserved namespace");
            return false;
        }
        if (!iq->is_set && strcmp(c->ns, first->ns) != 0) {
            /* §2.3: a get asks about one namespace only. */
            tern_iq_error(iq, "modify", "bad-request", "one namespace per request");
            return false;
        }
    }
    if (n == 0) {
        /* §2.3: a get without a child is "Bad Format" (bad-request in RFC
         * 6120 terms); a set without one is "Not Acceptable". */
        if (iq->is_set)
            tern_iq_error(iq, "modify", "not-acceptable", "nothing to store");
        else
            tern_iq_error(iq, "modify", "bad-request", "no element requested");
        return false;
    }
    *count = n;
    return true;
}

static tern_handled_t on_private(void *st, tern_iq_t *iq)
{
    priv_t *p = st;
    if (!iq->from || !iq->from->local)
        return TERN_PASS;
    bool own = !iq->to || jid_bare_equal(iq->to, iq->from);
    if (!own) {
        /* §2.3: forbidden is the preferable answer; auth, as RFC 6120
         * §8.3.3.4 gives for forbidden. */
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    size_t n = 0;
    if (!validate(iq, &n))
        return TERN_HANDLED;
    if (pep_private_bookmarks(p->host, iq) == TERN_HANDLED)
        return TERN_HANDLED; /* XEP-0411: the bookmarks live in PEP */
    priv_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->set = iq->is_set;
    j->host = tern_xstrdup(tern_host_domain(p->host));
    j->user = tern_xstrdup(iq->from->local);
    j->items = tern_xcalloc(n, sizeof(*j->items));
    size_t max = tern_host_config(p->host)->private_max_size;
    const xml_node_t *c = xml_node_first_element(iq->payload);
    for (; c && j->n < n; c = xml_node_next(c, NULL, NULL)) {
        pitem_t *it = &j->items[j->n++];
        it->key = item_key(c);
        if (!j->set)
            continue;
        it->data = xml_node_to_string(c, NS_CLIENT, &it->len);
        if (!it->data) {
            tern_iq_error(iq, "wait", "internal-server-error", NULL);
            job_free(j);
            return TERN_HANDLED;
        }
        if (it->len > max) {
            /* not-acceptable/modify: a rule of this server the client can
             * meet by storing less; resource-constraint (wait) would invite
             * retrying the same request, which never succeeds. Nothing of
             * the set is stored. */
            char text[96];
            snprintf(text, sizeof(text), "an element is larger than %zu bytes", max);
            tern_iq_error(iq, "modify", "not-acceptable", text);
            job_free(j);
            return TERN_HANDLED;
        }
    }
    if (!j->set)
        j->request = xml_stanza_ref(iq->stanza);
    j->iq = tern_iq_save(iq);
    if (tern_storage_submit(tern_host_server(p->host), job_run, job_done, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
    }
    return TERN_HANDLED;
}

static void *private_init(tern_module_t *m)
{
    priv_t *p = tern_xcalloc(1, sizeof(*p));
    p->host = tern_module_host(m);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PRIVATE, "query", on_private);
    return p;
}

static void private_fini(void *st)
{
    free(st);
}

const tern_module_def_t mod_private = {"private", TERN_MODULE_API_VERSION, private_init,
                                       private_fini};
