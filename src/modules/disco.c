/* SPDX-License-Identifier: MIT
 * disco.c - XEP-0030 service discovery for the server and for accounts.
 *
 * The answer is assembled from what the other modules registered, so the
 * feature list is exactly what is implemented: nothing is listed here by
 * hand except disco itself and the server identity.
 */
#include <stdlib.h>
#include <string.h>

#include "../xml/ns.h"
#include "tern/module.h"

typedef struct {
    tern_host_t *host;
} disco_t;

typedef struct {
    xml_node_t *query;
} fill_t;

static void add_identity(void *ud, const char *category, const char *type, const char *name)
{
    fill_t *f = ud;
    xml_node_t *id = xml_node_add_child(f->query, "identity", NS_DISCO_INFO);
    xml_node_set_attr(id, "category", category);
    xml_node_set_attr(id, "type", type);
    if (name)
        xml_node_set_attr(id, "name", name);
}

static void add_feature(void *ud, const char *var)
{
    fill_t *f = ud;
    xml_node_set_attr(xml_node_add_child(f->query, "feature", NS_DISCO_INFO), "var", var);
}

static tern_handled_t answer_info(disco_t *d, tern_iq_t *iq, tern_scope_t scope)
{
    if (iq->is_set) {
        tern_iq_error(iq, "cancel", "not-allowed", NULL);
        return TERN_HANDLED;
    }
    const char *node = xml_node_attr(iq->payload, "node");
    if (node) {
        /* No nodes yet (entity capabilities arrive with presence work). */
        tern_iq_error(iq, "cancel", "item-not-found", NULL);
        return TERN_HANDLED;
    }
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    fill_t f = {xml_node_add_child(xml_stanza_root(r), "query", NS_DISCO_INFO)};
    tern_host_disco_each(d->host, scope, NULL, add_identity, &f);
    tern_host_disco_each(d->host, scope, add_feature, NULL, &f);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

static tern_handled_t answer_items(disco_t *d, tern_iq_t *iq)
{
    if (iq->is_set) {
        tern_iq_error(iq, "cancel", "not-allowed", NULL);
        return TERN_HANDLED;
    }
    if (xml_node_attr(iq->payload, "node")) {
        tern_iq_error(iq, "cancel", "item-not-found", NULL);
        return TERN_HANDLED;
    }
    /* No components or services yet: an empty, truthful list. */
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_add_child(xml_stanza_root(r), "query", NS_DISCO_ITEMS);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

static tern_handled_t server_info(void *st, tern_iq_t *iq)
{
    return answer_info(st, iq, TERN_SCOPE_SERVER);
}

static tern_handled_t account_info(void *st, tern_iq_t *iq)
{
    return answer_info(st, iq, TERN_SCOPE_ACCOUNT);
}

static tern_handled_t items(void *st, tern_iq_t *iq)
{
    return answer_items(st, iq);
}

static void *disco_init(tern_module_t *m)
{
    static const tern_scope_t scopes[] = {TERN_SCOPE_SERVER, TERN_SCOPE_ACCOUNT};
    disco_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->host = tern_module_host(m);
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_DISCO_INFO, "query", server_info);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_DISCO_INFO, "query", account_info);
    for (size_t i = 0; i < 2; i++) {
        tern_register_iq(m, scopes[i], NS_DISCO_ITEMS, "query", items);
        tern_register_disco_feature(m, scopes[i], NS_DISCO_INFO);
        tern_register_disco_feature(m, scopes[i], NS_DISCO_ITEMS);
    }
    tern_register_disco_identity(m, TERN_SCOPE_SERVER, "server", "im", "Tern");
    tern_register_disco_identity(m, TERN_SCOPE_ACCOUNT, "account", "registered", NULL);
    return d;
}

static void disco_fini(void *st)
{
    free(st);
}

const tern_module_def_t mod_disco = {"disco", TERN_MODULE_API_VERSION, disco_init, disco_fini};
