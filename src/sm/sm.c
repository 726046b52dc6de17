/* SPDX-License-Identifier: MIT
 * sm.c - the session manager: which resources of which accounts are online,
 * resource binding (RFC 6120 §7) and presence broadcast between a user's
 * own resources (RFC 6121 §4).
 *
 * Per host, two maps: bare JID -> sm_user_t (the list of bound sessions)
 * and full JID -> session. Both are keyed by strings that live in the
 * session or user, so lookups allocate nothing. Rosters and subscriptions
 * arrive as a module later; this file only knows a user's own resources and
 * the targets of directed presence.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../core/log.h"
#include "../xml/ns.h"

sm_user_t *sm_find_user(tern_host_t *host, const char *bare)
{
    return hashmap_get(&host->users, bare);
}

tern_session_t *sm_find_full(tern_host_t *host, const char *full)
{
    return hashmap_get(&host->sessions, full);
}

static void random_resource(char *out, size_t cap)
{
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x33, sizeof(rnd));
    size_t n = 0;
    n += (size_t)snprintf(out, cap, "tern-");
    for (size_t i = 0; i < sizeof(rnd) && n + 2 < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%02x", rnd[i]);
}

int sm_bind(tern_session_t *s, const char *resource, char **err_cond)
{
    tern_host_t *host = s->host;
    char generated[32];
    char *res = NULL;
    if (!resource) {
        random_resource(generated, sizeof(generated));
        resource = generated;
    }
    if (jid_prep_resource(resource, &res) != 0) {
        *err_cond = "bad-request";
        return -1;
    }
    jid_t j = {0};
    if (jid_from_parts(s->auth_user, host->domain, res, &j) != 0) {
        free(res);
        *err_cond = "bad-request";
        return -1;
    }
    free(res);
    char *full = jid_to_string(&j);
    tern_session_t *old = sm_find_full(host, full);
    if (old) {
        /* RFC 6120 §7.7.2.2: the newer session wins; the old one gets a
         * conflict stream error. */
        log_info(s->tag, "resource conflict on %s: replacing %s", full, old->tag);
        c2s_close(old, "conflict", "replaced by a new connection");
        if (sm_find_full(host, full) == old)
            sm_unbind(old);
    }
    s->jid = j;
    s->full = full;
    s->bare = jid_bare_string(&j);
    sm_user_t *u = sm_find_user(host, s->bare);
    if (!u) {
        u = tern_xcalloc(1, sizeof(*u));
        u->bare = tern_xstrdup(s->bare);
        hashmap_put(&host->users, u->bare, u);
    }
    s->next_resource = u->sessions;
    u->sessions = s;
    hashmap_put(&host->sessions, s->full, s);
    s->bound = true;
    return 0;
}

static void send_unavailable(tern_session_t *s, const char *to)
{
    xml_stanza_t *p = xml_stanza_new("presence", NS_CLIENT);
    xml_node_t *r = xml_stanza_root(p);
    xml_node_set_attr(r, "from", s->full);
    xml_node_set_attr(r, "to", to);
    xml_node_set_attr(r, "type", "unavailable");
    jid_t tj = {0};
    if (jid_parse(to, &tj) == 0)
        router_route(s->srv, p, &s->jid, &tj, NULL);
    jid_clear(&tj);
    xml_stanza_unref(p);
}

/* Sends st (from s) to every available resource of s's account. */
static void broadcast_own(tern_session_t *s, xml_stanza_t *st)
{
    sm_user_t *u = sm_find_user(s->host, s->bare);
    if (!u)
        return;
    xml_node_t *root = xml_stanza_root(st);
    for (tern_session_t *r = u->sessions; r; r = r->next_resource) {
        if (!r->available && r != s)
            continue;
        xml_node_set_attr(root, "to", r->full);
        c2s_send_stanza(r, st);
    }
    xml_node_set_attr(root, "to", NULL);
}

void sm_unbind(tern_session_t *s)
{
    tern_host_t *host = s->host;
    if (hashmap_get(&host->sessions, s->full) != s)
        return;
    if (s->available) {
        /* As if the client had said goodbye (RFC 6121 §4.5.1): the same
         * path, so contacts hear it from the roster module. */
        xml_stanza_t *p = xml_stanza_new("presence", NS_CLIENT);
        xml_node_t *r = xml_stanza_root(p);
        xml_node_set_attr(r, "from", s->full);
        xml_node_set_attr(r, "type", "unavailable");
        router_route_from_client(s, p, NULL);
        xml_stanza_unref(p);
        s->available = false;
    }
    /* RFC 6121 §4.6.3: whoever got directed presence learns we are gone. */
    for (directed_presence_t *d = s->directed, *n; d; d = n) {
        n = d->next;
        send_unavailable(s, d->jid);
        free(d->jid);
        free(d);
    }
    s->directed = NULL;
    hashmap_del(&host->sessions, s->full);
    sm_user_t *u = sm_find_user(host, s->bare);
    if (u) {
        tern_session_t **pp = &u->sessions;
        while (*pp && *pp != s)
            pp = &(*pp)->next_resource;
        if (*pp)
            *pp = s->next_resource;
        s->next_resource = NULL;
        if (!u->sessions) {
            hashmap_del(&host->users, u->bare);
            free(u->bare);
            free(u);
        }
    }
    modules_session_closed(host, s);
    log_debug(s->tag, "unbound %s", s->full);
}

static void stamp_presence(xml_stanza_t *p, const char *domain)
{
    xml_node_t *root = xml_stanza_root(p);
    for (xml_node_t *d = xml_node_child(root, "delay", NS_DELAY), *n; d; d = n) {
        n = xml_node_next(d, "delay", NS_DELAY);
        xml_node_detach(d); /* a client's own claim is not ours */
    }
    tern_stamp_delay(root, domain, time(NULL), NULL);
}

void sm_presence_broadcast(tern_session_t *s, xml_stanza_t *st)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    if (type && strcmp(type, "unavailable") != 0)
        return; /* probes and subscriptions without 'to' mean nothing */
    bool was_available = s->available;
    if (!type) {
        xml_node_t *prio = xml_node_child(root, "priority", NS_CLIENT);
        int p = prio ? atoi(xml_node_text(prio)) : 0;
        s->priority = p < -128 ? -128 : p > 127 ? 127 : p;
        s->available = true;
        if (s->presence)
            xml_stanza_unref(s->presence);
        /* Kept for the session's lifetime: a compact copy, not the parse
         * arena with its spare room. Whoever gets it later (a probe, a
         * new subscriber, a sibling resource) learns when it was set
         * (XEP-0203). */
        xml_stanza_t *stamped = xml_stanza_copy(st);
        stamp_presence(stamped, s->host->domain);
        /* The stamp went into a fresh arena block; copied once more, the
         * kept presence is one compact block again. */
        s->presence = xml_stanza_copy(stamped);
        xml_stanza_unref(stamped);
    }
    broadcast_own(s, st);
    if (!type && !was_available) {
        /* A resource coming online learns about its siblings. */
        sm_user_t *u = sm_find_user(s->host, s->bare);
        for (tern_session_t *r = u ? u->sessions : NULL; r; r = r->next_resource) {
            if (r == s || !r->available || !r->presence)
                continue;
            xml_stanza_t *copy = xml_stanza_copy(r->presence);
            xml_node_set_attr(xml_stanza_root(copy), "to", s->full);
            c2s_send_stanza(s, copy);
            xml_stanza_unref(copy);
        }
    }
    if (type) {
        s->available = false;
        if (s->presence) {
            xml_stanza_unref(s->presence);
            s->presence = NULL;
        }
        for (directed_presence_t *d = s->directed, *n; d; d = n) {
            n = d->next;
            send_unavailable(s, d->jid);
            free(d->jid);
            free(d);
        }
        s->directed = NULL;
    }
}

void sm_note_directed_presence(tern_session_t *s, const jid_t *to, const char *type)
{
    if (!s || !s->bound)
        return;
    char *t = jid_to_string(to);
    directed_presence_t **pp = &s->directed;
    unsigned n = 0;
    while (*pp && strcmp((*pp)->jid, t) != 0) {
        pp = &(*pp)->next;
        n++;
    }
    if (!type) {
        if (!*pp && n < 1000) {
            directed_presence_t *d = tern_xcalloc(1, sizeof(*d));
            d->jid = t;
            t = NULL;
            *pp = d;
        }
    } else if (strcmp(type, "unavailable") == 0 && *pp) {
        directed_presence_t *d = *pp;
        *pp = d->next;
        free(d->jid);
        free(d);
    }
    free(t);
}

/* ---- module API: sessions of an account ---- */

tern_host_t *tern_session_host(const tern_session_t *s)
{
    return s->host;
}

bool tern_session_needs_wakeup(const tern_session_t *s)
{
    return s->state == C2S_HIBERNATED || s->client_inactive;
}

void tern_session_set_inactive(tern_session_t *s, bool inactive)
{
    s->client_inactive = inactive;
}

bool tern_session_available(const tern_session_t *s)
{
    return s->available;
}

int tern_session_priority(const tern_session_t *s)
{
    return s->priority;
}

const xml_stanza_t *tern_session_presence(const tern_session_t *s)
{
    return s->presence;
}

tern_session_t *tern_user_sessions(tern_host_t *h, const char *bare)
{
    sm_user_t *u = sm_find_user(h, bare);
    return u ? u->sessions : NULL;
}

tern_session_t *tern_session_next_resource(const tern_session_t *s)
{
    return s->next_resource;
}

void *tern_session_get(const tern_session_t *s, int slot)
{
    if (!s->slots || slot < 0 || slot >= s->host->nslots)
        return NULL;
    return s->slots[slot];
}

void tern_session_set(tern_session_t *s, int slot, void *data)
{
    if (slot < 0 || slot >= s->host->nslots)
        return;
    if (!s->slots) {
        if (!data)
            return;
        s->slots = tern_xcalloc((size_t)s->host->nslots, sizeof(*s->slots));
    }
    s->slots[slot] = data;
}
