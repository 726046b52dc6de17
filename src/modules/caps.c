/* SPDX-License-Identifier: MIT
 * caps.c - learning clients' entity capabilities (XEP-0115).
 *
 * A client's available presence may carry <c hash='sha-1' node ver/>.
 * The first time a ver is seen, the server asks that client for the
 * disco#info of node#ver (tern_iq_request) and keeps the features only if
 * they hash to ver (§5.1): a client cannot make the server believe another
 * client's features, so one cache serves every account. The cache belongs
 * to worker 0's instance, behind a mutex, since PEP asks it from the worker
 * of the publishing account while presences arrive on every worker.
 * Queries in flight are per worker: two workers may ask about the same new
 * ver at once, which costs one extra disco#info and nothing else.
 */
#include "caps.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../xml/ns.h"
#include "../xmpp/caps.h"

#define CAPS_MAX_VERS     10000 /* cache bound: past it, new vers are not kept */
#define CAPS_MAX_FEATURES 256
#define CAPS_QUERY_SECS   30

typedef struct {
    tern_host_t *host;
    /* worker 0's instance: ver -> NULL-terminated feature list */
    pthread_mutex_t mu;
    hashmap_t vers;
    /* this worker: vers being asked about (value unused) */
    hashmap_t asking;
} caps_t;

typedef struct waiter {
    caps_learned_cb cb;
    void *ud;
    struct waiter *next;
} waiter_t;

typedef struct {
    caps_t *c;
    char *ver;
    waiter_t *waiters;
} query_t;

static caps_t *primary(const tern_host_t *h)
{
    return tern_module_primary_state(h, &mod_caps);
}

static char **lookup_locked(caps_t *p, const char *ver)
{
    return hashmap_get(&p->vers, ver);
}

bool caps_known(const tern_host_t *h, const char *ver)
{
    caps_t *p = primary(h);
    if (!p || !ver)
        return false;
    pthread_mutex_lock(&p->mu);
    bool known = lookup_locked(p, ver) != NULL;
    pthread_mutex_unlock(&p->mu);
    return known;
}

bool caps_has_feature(const tern_host_t *h, const char *ver, const char *feature)
{
    caps_t *p = primary(h);
    if (!p || !ver || !feature)
        return false;
    bool has = false;
    pthread_mutex_lock(&p->mu);
    char **f = lookup_locked(p, ver);
    for (size_t i = 0; f && f[i] && !has; i++)
        has = strcmp(f[i], feature) == 0;
    pthread_mutex_unlock(&p->mu);
    return has;
}

static bool learn(caps_t *c, const char *ver, const xml_node_t *query)
{
    size_t n = 0;
    char **f = tern_xcalloc(CAPS_MAX_FEATURES + 1, sizeof(*f));
    for (xml_node_t *e = xml_node_child(query, "feature", NS_DISCO_INFO);
         e && n < CAPS_MAX_FEATURES; e = xml_node_next(e, "feature", NS_DISCO_INFO)) {
        const char *var = xml_node_attr(e, "var");
        if (var)
            f[n++] = tern_xstrdup(var);
    }
    caps_t *p = primary(c->host);
    pthread_mutex_lock(&p->mu);
    if (!lookup_locked(p, ver) && hashmap_count(&p->vers) < CAPS_MAX_VERS) {
        hashmap_put(&p->vers, tern_xstrdup(ver), f);
        f = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    bool kept = f == NULL;
    for (size_t i = 0; f && f[i]; i++)
        free(f[i]);
    free(f);
    return kept;
}

static void answered(void *ud, const xml_stanza_t *answer)
{
    query_t *q = ud;
    hashmap_del(&q->c->asking, q->ver);
    const char *from = answer ? xml_node_attr(xml_stanza_root(answer), "from") : NULL;
    const xml_node_t *query =
        answer ? xml_node_child(xml_stanza_root(answer), "query", NS_DISCO_INFO) : NULL;
    const char *type = answer ? xml_node_attr(xml_stanza_root(answer), "type") : NULL;
    bool learned = false;
    if (query && type && strcmp(type, "result") == 0) {
        char got[64] = "";
        if (caps_ver_sha1(query, got, sizeof(got)) == 0 && strcmp(got, q->ver) == 0)
            learned = learn(q->c, q->ver, query) || caps_known(q->c->host, q->ver);
        else
            log_debug("caps", "%s announced ver %s but its features hash to %s: not kept",
                      from ? from : "?", q->ver, got);
    }
    while (q->waiters) {
        waiter_t *w = q->waiters;
        q->waiters = w->next;
        w->cb(w->ud, learned);
        free(w);
    }
    free(q->ver);
    free(q);
}

const char *caps_ver_of(const xml_node_t *cn)
{
    const char *hash = xml_node_attr(cn, "hash");
    const char *node = xml_node_attr(cn, "node");
    const char *ver = xml_node_attr(cn, "ver");
    /* Only sha-1 is defined for the verification string of §5.1; the
     * legacy form without hash cannot be checked and is not trusted. */
    if (!hash || strcmp(hash, "sha-1") != 0 || !node || !ver || !*ver || strlen(ver) > 64)
        return NULL;
    return ver;
}

int caps_learn(tern_host_t *h, const char *full_jid, const xml_node_t *cn, caps_learned_cb cb,
               void *ud)
{
    caps_t *c = tern_host_module_state(h, &mod_caps);
    const char *ver = caps_ver_of(cn);
    if (!c || !ver)
        return CAPS_UNUSABLE;
    if (caps_known(h, ver))
        return CAPS_KNOWN;
    query_t *q = hashmap_get(&c->asking, ver);
    if (!q) {
        xml_stanza_t *iq = xml_stanza_new("iq", NS_CLIENT);
        xml_node_t *ir = xml_stanza_root(iq);
        xml_node_set_attr(ir, "type", "get");
        xml_node_set_attr(ir, "to", full_jid);
        xml_node_t *qn = xml_node_add_child(ir, "query", NS_DISCO_INFO);
        const char *node = xml_node_attr(cn, "node");
        size_t nl = strlen(node) + 1 + strlen(ver) + 1;
        char *nv = tern_xmalloc(nl);
        snprintf(nv, nl, "%s#%s", node, ver);
        xml_node_set_attr(qn, "node", nv);
        free(nv);
        q = tern_xcalloc(1, sizeof(*q));
        q->c = c;
        q->ver = tern_xstrdup(ver);
        hashmap_put(&c->asking, q->ver, q);
        int rc = tern_iq_request(c->host, iq, CAPS_QUERY_SECS, answered, q);
        xml_stanza_unref(iq);
        if (rc != 0) {
            hashmap_del(&c->asking, q->ver);
            free(q->ver);
            free(q);
            return CAPS_UNUSABLE;
        }
    }
    if (cb) {
        waiter_t *w = tern_xcalloc(1, sizeof(*w));
        w->cb = cb;
        w->ud = ud;
        w->next = q->waiters;
        q->waiters = w;
    }
    return CAPS_PENDING;
}

static tern_handled_t on_outbound(void *st, tern_stanza_ev_t *ev)
{
    caps_t *c = st;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0 || xml_node_attr(root, "type") || !ev->from ||
        !ev->from->resource)
        return TERN_PASS;
    xml_node_t *cn = xml_node_child(root, "c", NS_CAPS);
    if (!cn)
        return TERN_PASS;
    char *from = jid_to_string(ev->from);
    caps_learn(c->host, from, cn, NULL, NULL);
    free(from);
    return TERN_PASS;
}

static void *caps_init(tern_module_t *m)
{
    caps_t *c = tern_xcalloc(1, sizeof(*c));
    c->host = tern_module_host(m);
    pthread_mutex_init(&c->mu, NULL);
    hashmap_init(&c->vers);
    hashmap_init(&c->asking);
    /* after the modules that may take the presence, before routing */
    tern_register_hook(m, TERN_HOOK_OUTBOUND, -100, on_outbound);
    return c;
}

static void caps_fini(void *st)
{
    caps_t *c = st;
    const char *k;
    void *v;
    for (size_t it = 0; hashmap_next(&c->vers, &it, &k, &v);) {
        char **f = v;
        for (size_t i = 0; f[i]; i++)
            free(f[i]);
        free(f);
        free((char *)k);
    }
    hashmap_free(&c->vers);
    /* queries still waiting were answered NULL by the router's shutdown */
    hashmap_free(&c->asking);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const tern_module_def_t mod_caps = {"caps", TERN_MODULE_API_VERSION, caps_init, caps_fini};
