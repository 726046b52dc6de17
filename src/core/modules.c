/* SPDX-License-Identifier: MIT
 * modules.c - the module registry behind include/tern/module.h.
 *
 * The list of compiled-in modules is the one place that names features;
 * everything else reaches them through the tables filled here. iq handlers
 * are found by one hash lookup on "namespace<US>name" per scope.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../c2s/session.h"
#include "../shard.h"
#include "../xml/ns.h"
#include "common.h"
#include "log.h"

extern const tern_module_def_t mod_disco, mod_ping, mod_version, mod_time, mod_register, mod_roster,
    mod_offline, mod_vcard, mod_private, mod_last, mod_blocking, mod_carbons, mod_mam, mod_csi,
    mod_push, mod_muc, mod_pubsub, mod_caps, mod_pep;

/* Load order is also the order of disco features and of equal-priority
 * hooks; hook order that matters is set by priority. */
static const tern_module_def_t *const builtin_modules[] = {
    &mod_disco, &mod_ping,    &mod_version, &mod_time,     &mod_register, &mod_roster, &mod_offline,
    &mod_vcard, &mod_private, &mod_last,    &mod_blocking, &mod_carbons,  &mod_mam,    &mod_csi,
    &mod_push,  &mod_muc,     &mod_pubsub,  &mod_caps,     &mod_pep,
};

struct tern_module {
    tern_host_t *host;
    module_inst_t *inst;
};

static char *iq_key(const char *ns, const char *name)
{
    size_t a = strlen(ns), b = strlen(name);
    char *k = tern_xmalloc(a + b + 2);
    memcpy(k, ns, a);
    k[a] = '\x1f';
    memcpy(k + a + 1, name, b + 1);
    return k;
}

int modules_init_host(tern_host_t *host, char *err, size_t errlen)
{
    const config_t *cfg = host->srv->cfg;
    for (size_t i = 0; i < TERN_SCOPE_COUNT; i++)
        hashmap_init(&host->iq_handlers[i]);
    module_inst_t **tail = &host->modules;
    for (size_t i = 0; i < TERN_ARRAY_LEN(builtin_modules); i++) {
        const tern_module_def_t *def = builtin_modules[i];
        if (!config_module_enabled(cfg, def->name))
            continue;
        if (def->api_version != TERN_MODULE_API_VERSION) {
            snprintf(err, errlen, "module %s: API version %d, expected %d", def->name,
                     def->api_version, TERN_MODULE_API_VERSION);
            return -1;
        }
        module_inst_t *inst = tern_xcalloc(1, sizeof(*inst));
        inst->def = def;
        *tail = inst;
        tail = &inst->next;
        tern_module_t m = {host, inst};
        inst->state = def->init ? def->init(&m) : NULL;
        log_debug("modules", "%s: loaded %s", host->domain, def->name);
    }
    return 0;
}

static void free_hooks(host_hook_t *h)
{
    while (h) {
        host_hook_t *n = h->next;
        free(h);
        h = n;
    }
}

void modules_fini_host(tern_host_t *host)
{
    for (module_inst_t *m = host->modules, *n; m; m = n) {
        n = m->next;
        if (m->def->fini)
            m->def->fini(m->state);
        free(m);
    }
    host->modules = NULL;
    for (size_t i = 0; i < TERN_SCOPE_COUNT; i++) {
        size_t it = 0;
        void *v;
        while (hashmap_next(&host->iq_handlers[i], &it, NULL, &v)) {
            iq_handler_t *h = v;
            free(h->key);
            free(h);
        }
        hashmap_free(&host->iq_handlers[i]);
    }
    for (size_t i = 0; i < TERN_HOOK_COUNT; i++) {
        for (stanza_hook_t *h = host->stanza_hooks[i], *n; h; h = n) {
            n = h->next;
            free(h);
        }
        host->stanza_hooks[i] = NULL;
    }
    for (nonza_handler_t *h = host->nonzas, *n; h; h = n) {
        n = h->next;
        free(h->ns);
        free(h->name);
        free(h);
    }
    host->nonzas = NULL;
    for (host_service_t *sv = host->services, *n; sv; sv = n) {
        n = sv->next;
        free(sv->domain);
        free(sv->name);
        free(sv);
    }
    host->services = NULL;
    free_hooks(host->feature_hooks);
    free_hooks(host->bound_hooks);
    free_hooks(host->closed_hooks);
    host->feature_hooks = host->bound_hooks = host->closed_hooks = NULL;
    for (disco_entry_t *d = host->disco, *n; d; d = n) {
        n = d->next;
        free(d->category);
        free(d->type);
        free(d->name);
        free(d->var);
        free(d);
    }
    host->disco = NULL;
}

tern_handled_t modules_dispatch_iq(tern_host_t *host, tern_scope_t scope, tern_iq_t *iq)
{
    if (!iq->payload)
        return TERN_PASS;
    char key[512];
    size_t a = strlen(iq->payload->ns), b = strlen(iq->payload->name);
    if (a + b + 2 > sizeof(key))
        return TERN_PASS;
    memcpy(key, iq->payload->ns, a);
    key[a] = '\x1f';
    memcpy(key + a + 1, iq->payload->name, b + 1);
    iq_handler_t *h = hashmap_get(&host->iq_handlers[scope], key);
    if (!h)
        return TERN_PASS;
    module_inst_t *inst = h->state;
    return h->cb(inst->state, iq);
}

void modules_add_stream_features(tern_host_t *host, tern_session_t *s, xml_node_t *features)
{
    for (host_hook_t *h = host->feature_hooks; h; h = h->next)
        h->cb.features(((module_inst_t *)h->state)->state, s, features);
}

void modules_session_bound(tern_host_t *host, tern_session_t *s)
{
    for (host_hook_t *h = host->bound_hooks; h; h = h->next)
        h->cb.session(((module_inst_t *)h->state)->state, s);
}

void modules_session_closed(tern_host_t *host, tern_session_t *s)
{
    for (host_hook_t *h = host->closed_hooks; h; h = h->next)
        h->cb.session(((module_inst_t *)h->state)->state, s);
}

tern_handled_t modules_run_hooks(tern_host_t *host, tern_hook_point_t point, tern_stanza_ev_t *ev)
{
    for (stanza_hook_t *h = host->stanza_hooks[point]; h; h = h->next)
        if (h->cb(h->inst->state, ev) == TERN_HANDLED)
            return TERN_HANDLED;
    return TERN_PASS;
}

/* ---- registration API ---- */

tern_host_t *tern_module_host(tern_module_t *m)
{
    return m->host;
}

int tern_register_iq(tern_module_t *m, tern_scope_t scope, const char *ns, const char *name,
                     tern_iq_cb cb)
{
    if ((unsigned)scope >= TERN_SCOPE_COUNT)
        return TERN_EINVAL;
    iq_handler_t *h = tern_xcalloc(1, sizeof(*h));
    h->cb = cb;
    h->key = iq_key(ns, name);
    /* The module's state is only known after init returns; bind lazily. */
    h->state = m->inst;
    /* The map keeps the key it has on a replace: remove the old entry
     * first, so that the key freed below is not the one left in the map. */
    iq_handler_t *old = hashmap_del(&m->host->iq_handlers[scope], h->key);
    hashmap_put(&m->host->iq_handlers[scope], h->key, h);
    if (old) {
        log_warn("modules", "%s: iq handler for %s replaced", m->host->domain, name);
        free(old->key);
        free(old);
    }
    return 0;
}

static host_hook_t *add_hook(host_hook_t **list, module_inst_t *inst)
{
    host_hook_t *h = tern_xcalloc(1, sizeof(*h));
    h->state = inst;
    host_hook_t **pp = list;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return h;
}

int tern_register_stream_features(tern_module_t *m, tern_features_cb cb)
{
    add_hook(&m->host->feature_hooks, m->inst)->cb.features = cb;
    return 0;
}

int tern_register_session_bound(tern_module_t *m, tern_session_cb cb)
{
    add_hook(&m->host->bound_hooks, m->inst)->cb.session = cb;
    return 0;
}

int tern_register_session_closed(tern_module_t *m, tern_session_cb cb)
{
    add_hook(&m->host->closed_hooks, m->inst)->cb.session = cb;
    return 0;
}

int tern_register_hook(tern_module_t *m, tern_hook_point_t point, int priority,
                       tern_stanza_hook_cb cb)
{
    if ((unsigned)point >= TERN_HOOK_COUNT)
        return TERN_EINVAL;
    stanza_hook_t *h = tern_xcalloc(1, sizeof(*h));
    h->priority = priority;
    h->inst = m->inst;
    h->cb = cb;
    stanza_hook_t **pp = &m->host->stanza_hooks[point];
    while (*pp && (*pp)->priority >= priority)
        pp = &(*pp)->next;
    h->next = *pp;
    *pp = h;
    return 0;
}

int tern_module_session_slot(tern_module_t *m)
{
    return m->host->nslots++;
}

static disco_entry_t *add_disco(tern_host_t *host, tern_scope_t scope)
{
    disco_entry_t *d = tern_xcalloc(1, sizeof(*d));
    d->scope = scope;
    disco_entry_t **pp = &host->disco;
    while (*pp)
        pp = &(*pp)->next;
    *pp = d;
    return d;
}

int tern_register_disco_feature(tern_module_t *m, tern_scope_t scope, const char *var)
{
    add_disco(m->host, scope)->var = tern_xstrdup(var);
    return 0;
}

int tern_register_disco_identity(tern_module_t *m, tern_scope_t scope, const char *category,
                                 const char *type, const char *name)
{
    disco_entry_t *d = add_disco(m->host, scope);
    d->category = tern_xstrdup(category);
    d->type = tern_xstrdup(type);
    d->name = name ? tern_xstrdup(name) : NULL;
    return 0;
}

void tern_host_disco_each(const tern_host_t *h, tern_scope_t scope, tern_disco_feature_cb fcb,
                          tern_disco_identity_cb icb, void *ud)
{
    for (const disco_entry_t *d = h->disco; d; d = d->next) {
        if (d->scope != scope)
            continue;
        if (d->category && icb)
            icb(ud, d->category, d->type, d->name);
        else if (d->var && fcb)
            fcb(ud, d->var);
    }
}

const char *tern_host_domain(const tern_host_t *h)
{
    return h->domain;
}

const struct config_host *tern_host_config(const tern_host_t *h)
{
    return h->cfg;
}

const struct config *tern_host_server_config(const tern_host_t *h)
{
    return h->srv->cfg;
}

tern_server_t *tern_host_server(const tern_host_t *h)
{
    return h->srv;
}

void *tern_host_module_state(const tern_host_t *h, const tern_module_def_t *def)
{
    for (const module_inst_t *m = h->modules; m; m = m->next)
        if (m->def == def)
            return m->state;
    return NULL;
}

void *tern_module_primary_state(const tern_host_t *h, const tern_module_def_t *def)
{
    /* Hosts and module instances never change while running, so reading
     * worker 0's lists from another worker is safe. */
    const tern_host_t *h0 = server_find_host(shard_server(h->srv, 0), h->domain);
    for (const module_inst_t *m = h0 ? h0->modules : NULL; m; m = m->next)
        if (m->def == def)
            return m->state;
    return NULL;
}

/* ---- nonzas ----
 * Top-level non-stanza elements (XEP-0352's <active/>, <inactive/>...).
 * There are a handful per host, so a list walked in registration order
 * does; several modules may watch the same element (CSI keeps the state,
 * push wants to know it), and every one is called. */
int tern_register_nonza(tern_module_t *m, const char *ns, const char *name, tern_nonza_cb cb)
{
    nonza_handler_t *h = tern_xcalloc(1, sizeof(*h));
    h->ns = tern_xstrdup(ns);
    h->name = tern_xstrdup(name);
    h->cb = cb;
    h->inst = m->inst;
    nonza_handler_t **pp = &m->host->nonzas;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return 0;
}

tern_handled_t modules_dispatch_nonza(tern_host_t *host, tern_session_t *s, xml_node_t *el)
{
    if (!host)
        return TERN_PASS;
    tern_handled_t r = TERN_PASS;
    for (nonza_handler_t *h = host->nonzas; h; h = h->next)
        if (strcmp(h->name, el->name) == 0 && strcmp(h->ns, el->ns) == 0 &&
            h->cb(h->inst->state, s, el) == TERN_HANDLED)
            r = TERN_HANDLED;
    return r;
}

/* ---- services ---- */

int tern_register_service(tern_module_t *m, const char *domain, const char *name,
                          tern_service_cb cb)
{
    tern_server_t *srv = m->host->srv;
    char *dom = NULL;
    if (jid_prep_domain(domain, &dom) != 0)
        return -1;
    if (server_find_host(srv, dom) || server_find_service(srv, dom, NULL)) {
        free(dom);
        return -1;
    }
    host_service_t *sv = tern_xcalloc(1, sizeof(*sv));
    sv->domain = dom;
    sv->name = name ? tern_xstrdup(name) : NULL;
    sv->inst = m->inst;
    sv->cb = cb;
    host_service_t **pp = &m->host->services;
    while (*pp)
        pp = &(*pp)->next;
    *pp = sv;
    return 0;
}

void tern_host_services_each(const tern_host_t *h, tern_service_each_cb cb, void *ud)
{
    for (const host_service_t *sv = h->services; sv; sv = sv->next)
        cb(ud, sv->domain, sv->name);
}
