/* SPDX-License-Identifier: MIT
 * disco.c - XEP-0030 service discovery for the server and for accounts,
 * with the server's contact addresses (XEP-0157) and its entity
 * capabilities (XEP-0115) in the stream features.
 *
 * The answer is assembled from what the other modules registered, so the
 * feature list is exactly what is implemented: nothing is listed here by
 * hand except disco itself and the server identity. The capabilities hash
 * is computed from that same answer, so the two cannot disagree.
 */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../xml/ns.h"
#include "../xmpp/caps.h"
#include "pep.h"
#include "tern/module.h"

/* XEP-0157's form type, registered by XEP-0128. */
#define NS_SERVERINFO "http://jabber.org/network/serverinfo"
/* XEP-0115: the node names the software; queries for NODE#VER get the
 * disco#info the ver was computed from. */
#define CAPS_NODE "https://tern.example/caps"

/* The address types of XEP-0157's serverinfo fields, in the order the
 * fields are listed. */
static const char *const contact_types[] = {"abuse",    "admin",  "feedback", "sales",
                                            "security", "status", "support"};

typedef struct {
    tern_host_t *host;
    /* The capabilities hash of the server's disco#info, computed on first
     * use (modules register their features after disco's init) and again
     * when a reload brings another host configuration. */
    const config_host_t *ver_cfg;
    char ver[32]; /* base64 of a SHA-1: 28 characters */
    /* The configuration whose bad contact addresses were already logged. */
    const config_host_t *warned_cfg;
} disco_t;

typedef struct {
    xml_node_t *query;
} fill_t;

/* ---- XEP-0157 contact addresses ---- */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits "type=uri" (blanks around either part allowed) into the index of
 * the type in contact_types and the URI span; false if it is not one. */
static bool parse_contact(const char *item, size_t *type, const char **uri, size_t *uri_len)
{
    const char *eq = strchr(item, '=');
    if (!eq)
        return false;
    const char *a = item, *b = eq;
    while (a < b && blank(*a))
        a++;
    while (b > a && blank(b[-1]))
        b--;
    const char *u = eq + 1, *e = eq + strlen(eq);
    while (u < e && blank(*u))
        u++;
    while (e > u && blank(e[-1]))
        e--;
    if (u == e)
        return false;
    for (size_t i = 0; i < TERN_ARRAY_LEN(contact_types); i++) {
        if (strlen(contact_types[i]) == (size_t)(b - a) &&
            memcmp(contact_types[i], a, (size_t)(b - a)) == 0) {
            *type = i;
            *uri = u;
            *uri_len = (size_t)(e - u);
            return true;
        }
    }
    return false;
}

static void warn_contacts(disco_t *d, const config_host_t *hc)
{
    if (d->warned_cfg == hc)
        return;
    d->warned_cfg = hc;
    for (char **it = hc->contact_addresses; it && *it; it++) {
        size_t t, n;
        const char *u;
        if (!parse_contact(*it, &t, &u, &n))
            log_warn("disco",
                     "%s: contact_addresses: ignoring '%s' (expected TYPE=URI, TYPE one of "
                     "abuse, admin, feedback, sales, security, status, support)",
                     tern_host_domain(d->host), *it);
    }
}

/* The serverinfo form, or nothing when no address is configured. */
static void add_contact_form(xml_node_t *query, char **items)
{
    xml_node_t *x = NULL;
    for (size_t t = 0; t < TERN_ARRAY_LEN(contact_types); t++) {
        xml_node_t *field = NULL;
        for (char **it = items; it && *it; it++) {
            size_t type, n;
            const char *u;
            if (!parse_contact(*it, &type, &u, &n) || type != t)
                continue;
            if (!x) {
                x = xml_node_add_child(query, "x", NS_DATA);
                xml_node_set_attr(x, "type", "result");
                xml_node_t *ft = xml_node_add_child(x, "field", NS_DATA);
                xml_node_set_attr(ft, "var", "FORM_TYPE");
                xml_node_set_attr(ft, "type", "hidden");
                xml_node_add_child_text(ft, "value", NS_DATA, NS_SERVERINFO);
            }
            if (!field) {
                char var[32];
                snprintf(var, sizeof(var), "%s-addresses", contact_types[t]);
                field = xml_node_add_child(x, "field", NS_DATA);
                xml_node_set_attr(field, "var", var);
                xml_node_set_attr(field, "type", "list-multi");
            }
            xml_node_t *v = xml_node_add_child(field, "value", NS_DATA);
            xml_node_add_text(v, u, n);
        }
    }
}

/* ---- disco#info ---- */

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
    /* XEP-0115 §5.4 makes receivers reject a list with duplicates, so a
     * feature two modules registered is listed once. */
    for (xml_node_t *c = xml_node_child(f->query, "feature", NS_DISCO_INFO); c;
         c = xml_node_next(c, "feature", NS_DISCO_INFO)) {
        const char *v = xml_node_attr(c, "var");
        if (v && strcmp(v, var) == 0)
            return;
    }
    xml_node_set_attr(xml_node_add_child(f->query, "feature", NS_DISCO_INFO), "var", var);
}

/* The full disco#info result (an iq stanza, caller owns it). */
static xml_stanza_t *build_info(disco_t *d, tern_scope_t scope)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    fill_t f = {xml_node_add_child(xml_stanza_root(r), "query", NS_DISCO_INFO)};
    tern_host_disco_each(d->host, scope, NULL, add_identity, &f);
    tern_host_disco_each(d->host, scope, add_feature, NULL, &f);
    if (scope == TERN_SCOPE_SERVER)
        add_contact_form(f.query, tern_host_config(d->host)->contact_addresses);
    return r;
}

/* The server's ver for the running configuration, or NULL on failure. */
static const char *server_ver(disco_t *d)
{
    const config_host_t *hc = tern_host_config(d->host);
    if (d->ver_cfg == hc)
        return d->ver;
    warn_contacts(d, hc);
    xml_stanza_t *info = build_info(d, TERN_SCOPE_SERVER);
    int rc = caps_ver_sha1(xml_node_first_element(xml_stanza_root(info)), d->ver, sizeof(d->ver));
    xml_stanza_unref(info);
    if (rc != 0) {
        log_error("disco", "%s: cannot compute the capabilities hash", tern_host_domain(d->host));
        d->ver_cfg = NULL;
        return NULL;
    }
    d->ver_cfg = hc;
    return d->ver;
}

/* True if node is CAPS_NODE#ver of the server (XEP-0115, discovering
 * capabilities). */
static bool is_caps_node(disco_t *d, const char *node)
{
    size_t n = strlen(CAPS_NODE);
    if (strncmp(node, CAPS_NODE, n) != 0 || node[n] != '#')
        return false;
    const char *ver = server_ver(d);
    return ver && strcmp(node + n + 1, ver) == 0;
}

static tern_handled_t answer_info(disco_t *d, tern_iq_t *iq, tern_scope_t scope)
{
    if (iq->is_set) {
        tern_iq_error(iq, "cancel", "not-allowed", NULL);
        return TERN_HANDLED;
    }
    const char *node = xml_node_attr(iq->payload, "node");
    /* A node of an account is a PEP node (XEP-0060 §5.3). */
    if (node && scope == TERN_SCOPE_ACCOUNT && pep_node_info(d->host, iq) == TERN_HANDLED)
        return TERN_HANDLED;
    if (node && !(scope == TERN_SCOPE_SERVER && is_caps_node(d, node))) {
        tern_iq_error(iq, "cancel", "item-not-found", NULL);
        return TERN_HANDLED;
    }
    if (scope == TERN_SCOPE_SERVER)
        warn_contacts(d, tern_host_config(d->host));
    xml_stanza_t *r = build_info(d, scope);
    if (node)
        xml_node_set_attr(xml_node_first_element(xml_stanza_root(r)), "node", node);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

static void add_service_item(void *ud, const char *domain, const char *name)
{
    xml_node_t *item = xml_node_add_child(ud, "item", NS_DISCO_ITEMS);
    xml_node_set_attr(item, "jid", domain);
    if (name)
        xml_node_set_attr(item, "name", name);
}

static tern_handled_t answer_items(disco_t *d, tern_iq_t *iq)
{
    (void)d;
    if (iq->is_set) {
        tern_iq_error(iq, "cancel", "not-allowed", NULL);
        return TERN_HANDLED;
    }
    if (xml_node_attr(iq->payload, "node")) {
        tern_iq_error(iq, "cancel", "item-not-found", NULL);
        return TERN_HANDLED;
    }
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_DISCO_ITEMS);
    /* The server's own services (MUC, ...). */
    tern_host_services_each(iq->host, add_service_item, q);
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

/* XEP-0115 lets a server announce its capabilities in the stream
 * features; only after authentication, when the client can ask for the
 * disco#info behind them. */
static void caps_feature(void *st, tern_session_t *s, xml_node_t *features)
{
    disco_t *d = st;
    if (!tern_session_is_authenticated(s))
        return;
    const char *ver = server_ver(d);
    if (!ver)
        return;
    xml_node_t *c = xml_node_add_child(features, "c", NS_CAPS);
    xml_node_set_attr(c, "hash", "sha-1");
    xml_node_set_attr(c, "node", CAPS_NODE);
    xml_node_set_attr(c, "ver", ver);
}

static void *disco_init(tern_module_t *m)
{
    static const tern_scope_t scopes[] = {TERN_SCOPE_SERVER, TERN_SCOPE_ACCOUNT};
    disco_t *d = tern_xcalloc(1, sizeof(*d));
    d->host = tern_module_host(m);
    warn_contacts(d, tern_host_config(d->host));
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_DISCO_INFO, "query", server_info);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_DISCO_INFO, "query", account_info);
    /* An account's items are its PEP nodes: pep.c answers those. */
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_DISCO_ITEMS, "query", items);
    for (size_t i = 0; i < 2; i++) {
        tern_register_disco_feature(m, scopes[i], NS_DISCO_INFO);
        tern_register_disco_feature(m, scopes[i], NS_DISCO_ITEMS);
    }
    tern_register_disco_identity(m, TERN_SCOPE_SERVER, "server", "im", "Tern");
    tern_register_disco_identity(m, TERN_SCOPE_ACCOUNT, "account", "registered", NULL);
    tern_register_stream_features(m, caps_feature);
    return d;
}

static void disco_fini(void *st)
{
    free(st);
}

const tern_module_def_t mod_disco = {"disco", TERN_MODULE_API_VERSION, disco_init, disco_fini};
