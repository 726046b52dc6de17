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

/* ---- XEP-0115 verification string ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf_t; /* a growable string; buf is malloc'd and owned by the user */

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->buf = tern_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    if (s)
        sb_add(b, s, strlen(s));
}

static void sb_item(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
    sb_add(b, "<", 1);
}

/* §5.1 sorts with i;octet: strcmp compares UTF-8 bytewise. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    const char **v;
    size_t n, cap;
} strs_t;

static void strs_push(strs_t *s, const char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = tern_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = x;
}

static void strs_sort_append(strs_t *s, sbuf_t *b)
{
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), cmp_str);
    for (size_t i = 0; i < s->n; i++)
        sb_item(b, s->v[i]);
}

static const char *form_type(const xml_node_t *x)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        const char *type = xml_node_attr(f, "type");
        if (var && strcmp(var, "FORM_TYPE") == 0) {
            xml_node_t *v = xml_node_child(f, "value", NS_DATA);
            /* §5.4: a FORM_TYPE that is not hidden makes the form ignored. */
            return v && type && strcmp(type, "hidden") == 0 ? xml_node_text(v) : NULL;
        }
    }
    return NULL;
}

typedef struct {
    const char *type;
    const xml_node_t *x;
} form_ref_t;

static int cmp_form(const void *a, const void *b)
{
    return strcmp(((const form_ref_t *)a)->type, ((const form_ref_t *)b)->type);
}

typedef struct {
    const char *var;
    const xml_node_t *field;
} field_ref_t;

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const field_ref_t *)a)->var, ((const field_ref_t *)b)->var);
}

static void append_form(sbuf_t *b, const form_ref_t *form)
{
    sb_item(b, form->type);
    field_ref_t *fields = NULL;
    size_t n = 0;
    for (xml_node_t *f = xml_node_child(form->x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        if (!var || strcmp(var, "FORM_TYPE") == 0)
            continue;
        fields = tern_xrealloc(fields, (n + 1) * sizeof(*fields));
        fields[n++] = (field_ref_t){var, f};
    }
    if (n)
        qsort(fields, n, sizeof(*fields), cmp_field);
    for (size_t i = 0; i < n; i++) {
        sb_item(b, fields[i].var);
        strs_t values = {0};
        for (xml_node_t *v = xml_node_child(fields[i].field, "value", NS_DATA); v;
             v = xml_node_next(v, "value", NS_DATA))
            strs_push(&values, xml_node_text(v));
        strs_sort_append(&values, b);
        free(values.v);
    }
    free(fields);
}

/* Writes the XEP-0115 §5.1 verification string of a disco#info <query/>
 * (SHA-1, base64) to out (at least 29 bytes). Returns 0 or TERN_EIO. */
static int caps_ver(const xml_node_t *query, char *out, size_t outlen)
{
    sbuf_t b = {0};
    sb_add(&b, "", 0); /* a string, even for a query with nothing in it */
    strs_t ids = {0}, feats = {0};
    form_ref_t *forms = NULL;
    size_t nforms = 0;
    for (xml_node_t *c = xml_node_first_element(query); c; c = xml_node_next(c, NULL, NULL)) {
        if (xml_node_is(c, "identity", NS_DISCO_INFO)) {
            const char *cat = xml_node_attr(c, "category"), *type = xml_node_attr(c, "type");
            const char *lang = xml_node_attr(c, "xml:lang"), *name = xml_node_attr(c, "name");
            /* category/type/lang/name, absent parts empty */
            sbuf_t id = {0};
            sb_str(&id, cat);
            sb_add(&id, "/", 1);
            sb_str(&id, type);
            sb_add(&id, "/", 1);
            sb_str(&id, lang);
            sb_add(&id, "/", 1);
            sb_str(&id, name);
            strs_push(&ids, id.buf); /* freed below, with the list */
        } else if (xml_node_is(c, "feature", NS_DISCO_INFO)) {
            const char *var = xml_node_attr(c, "var");
            if (var)
                strs_push(&feats, var);
        } else if (xml_node_is(c, "x", NS_DATA)) {
            const char *ft = form_type(c);
            if (!ft)
                continue;
            forms = tern_xrealloc(forms, (nforms + 1) * sizeof(*forms));
            forms[nforms++] = (form_ref_t){ft, c};
        }
    }
    strs_sort_append(&ids, &b);
    strs_sort_append(&feats, &b);
    if (nforms)
        qsort(forms, nforms, sizeof(*forms), cmp_form);
    for (size_t i = 0; i < nforms; i++)
        append_form(&b, &forms[i]);
    for (size_t i = 0; i < ids.n; i++)
        free((char *)ids.v[i]);
    free(ids.v);
    free(feats.v);
    free(forms);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = EVP_Digest(b.buf, b.len, md, &mdlen, EVP_sha1(), NULL) == 1 ? 0 : TERN_EIO;
    free(b.buf);
    if (rc != 0)
        return rc;
    /* Base64 needs 4 bytes per 3 and a NUL: 29 for SHA-1's 20. */
    if (outlen < ((size_t)mdlen + 2) / 3 * 4 + 1)
        return TERN_EIO;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    return 0;
}

/* The server's ver for the running configuration, or NULL on failure. */
static const char *server_ver(disco_t *d)
{
    const config_host_t *hc = tern_host_config(d->host);
    if (d->ver_cfg == hc)
        return d->ver;
    warn_contacts(d, hc);
    xml_stanza_t *info = build_info(d, TERN_SCOPE_SERVER);
    int rc = caps_ver(xml_node_first_element(xml_stanza_root(info)), d->ver, sizeof(d->ver));
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
    /* The server's own services (MUC, ...); an account has no items. */
    if (!iq->to || !iq->to->local)
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
    for (size_t i = 0; i < 2; i++) {
        tern_register_iq(m, scopes[i], NS_DISCO_ITEMS, "query", items);
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
