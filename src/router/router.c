/* SPDX-License-Identifier: MIT
 * router.c - delivery of stanzas by address (RFC 6120 §10, RFC 6121 §8).
 *
 * The router decides where a stanza goes from its kind and its 'to': the
 * server itself, an account's bare JID, a full JID, or another domain. It
 * never looks at payloads except to find the iq handler, which is a table
 * lookup in the host's module registry. Every iq get/set gets exactly one
 * answer, and no error is ever answered with an error.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../core/log.h"
#include "../shard.h"
#include "../xml/ns.h"

xml_stanza_t *stanza_error_reply(const xml_stanza_t *st, const char *type, const char *condition,
                                 const char *text)
{
    const xml_node_t *orig = xml_stanza_root(st);
    const char *otype = xml_node_attr(orig, "type");
    if (otype && strcmp(otype, "error") == 0)
        return NULL;
    if (strcmp(orig->name, "iq") == 0 && otype && strcmp(otype, "result") == 0)
        return NULL;
    xml_stanza_t *err = xml_stanza_copy(st);
    xml_node_t *root = xml_stanza_root(err);
    const char *from = xml_node_attr(orig, "from");
    const char *to = xml_node_attr(orig, "to");
    xml_node_set_attr(root, "from", to);
    xml_node_set_attr(root, "to", from);
    xml_node_set_attr(root, "type", "error");
    xml_node_t *e = xml_node_add_child(root, "error", NS_CLIENT);
    xml_node_set_attr(e, "type", type);
    xml_node_add_child(e, condition, NS_STANZAS);
    if (text) {
        xml_node_t *t = xml_node_add_child_text(e, "text", NS_STANZAS, text);
        xml_node_set_attr(t, "xml:lang", "en");
    }
    return err;
}

void router_bounce(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                   const char *condition, const char *text)
{
    xml_stanza_t *err = stanza_error_reply(st, type, condition, text);
    if (!err)
        return;
    xml_node_t *root = xml_stanza_root(err);
    const char *to = xml_node_attr(root, "to");
    const char *from = xml_node_attr(root, "from");
    jid_t tj = {0}, fj = {0};
    if (to && jid_parse(to, &tj) == 0) {
        bool have_from = from && jid_parse(from, &fj) == 0;
        router_route(srv, err, have_from ? &fj : NULL, &tj, NULL);
    }
    jid_clear(&tj);
    jid_clear(&fj);
    xml_stanza_unref(err);
}

typedef enum { KIND_MESSAGE, KIND_PRESENCE, KIND_IQ } kind_t;

static kind_t kind_of(const xml_node_t *root)
{
    if (root->name[0] == 'm')
        return KIND_MESSAGE;
    if (root->name[0] == 'p')
        return KIND_PRESENCE;
    return KIND_IQ;
}

/* Queues st for s unless s has stopped reading. A stanza refused here is
 * bounced by the caller (resource-constraint), so the sender learns it was
 * not delivered: a message is either on its way or answered with an error,
 * never silently dropped with a client that is cut off later. */
static bool deliver(tern_session_t *s, xml_stanza_t *st)
{
    /* Only what can be bounced is refused: replies and errors answer the
     * client's own requests, so they are paced by it and always queued
     * (the hard limit still protects the server). */
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    bool answer = type && (strcmp(type, "error") == 0 || strcmp(type, "result") == 0);
    if (!answer && c2s_congested(s))
        return false;
    if (modules_have_hooks(s->host, TERN_HOOK_DELIVER)) {
        tern_stanza_ev_t ev = {.host = s->host, .stanza = st, .session = s};
        if (modules_run_hooks(s->host, TERN_HOOK_DELIVER, &ev) == TERN_HANDLED)
            return true; /* taken by a module (held, batched) */
    }
    c2s_send_stanza(s, st);
    return true;
}

/* The error leaves the original payload out: echoing a flood back at its
 * sender would only double it. */
static void bounce_congested(tern_server_t *srv, xml_stanza_t *st)
{
    tern_bounce_bare(srv, st, "wait", "resource-constraint", "the recipient is not reading");
}

/* iq get/set addressed to the server or on behalf of an account. */
static void handle_iq(tern_server_t *srv, tern_host_t *host, tern_scope_t scope, xml_stanza_t *st,
                      const jid_t *from, const jid_t *to, tern_session_t *origin)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
        if (type && scope == TERN_SCOPE_SERVER && from &&
            (strcmp(type, "result") == 0 || strcmp(type, "error") == 0))
            router_iq_answer(srv, st, from);
        return;
    }
    xml_node_t *payload = xml_node_first_element(root);
    tern_iq_t q = {.host = host,
                   .stanza = st,
                   .payload = payload,
                   .from = from,
                   .to = to,
                   .session = origin,
                   .is_set = strcmp(type, "set") == 0};
    if (modules_dispatch_iq(host, scope, &q) != TERN_HANDLED)
        router_bounce(srv, st, "cancel", "service-unavailable", NULL);
}

/* An iq for another account that has nobody online: RFC 6121 §8.5.1 says
 * a missing account answers service-unavailable, so look it up first. The
 * lookup runs on the storage thread; the stanza waits, referenced. */
typedef struct {
    tern_server_t *srv;
    tern_host_t *host;
    xml_stanza_t *st;
    jid_t from, to;
    tern_session_t *origin;
} account_check_t;

static int check_account(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    account_check_t *c = arg;
    return storage_user_exists(drv, db, c->to.domain, c->to.local);
}

static void account_checked(void *arg, int result)
{
    account_check_t *c = arg;
    if (result == TERN_ENOENT) {
        router_bounce(c->srv, c->st, "cancel", "service-unavailable", NULL);
    } else if (result == 0) {
        tern_session_t *origin = c->origin && tern_session_is_open(c->origin) ? c->origin : NULL;
        handle_iq(c->srv, c->host, TERN_SCOPE_ACCOUNT, c->st, c->from.domain ? &c->from : NULL,
                  &c->to, origin);
    } else {
        router_bounce(c->srv, c->st, "wait", "internal-server-error", NULL);
    }
    xml_stanza_unref(c->st);
    jid_clear(&c->from);
    jid_clear(&c->to);
    if (c->origin)
        tern_session_unref(c->origin);
    free(c);
}

static void account_iq(tern_server_t *srv, tern_host_t *host, xml_stanza_t *st, const jid_t *from,
                       const jid_t *to, tern_session_t *origin, bool online)
{
    bool own = from && from->local && strcmp(from->local, to->local) == 0 &&
               strcmp(from->domain, to->domain) == 0;
    if (online || own) {
        handle_iq(srv, host, TERN_SCOPE_ACCOUNT, st, from, to, origin);
        return;
    }
    account_check_t *c = tern_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->host = host;
    c->st = xml_stanza_ref(st);
    if ((from && jid_copy(from, &c->from) != 0) || jid_copy(to, &c->to) != 0 ||
        tern_storage_submit(srv, check_account, account_checked, c) != 0) {
        router_bounce(srv, st, "wait", "internal-server-error", NULL);
        xml_stanza_unref(c->st);
        jid_clear(&c->from);
        jid_clear(&c->to);
        free(c);
        return;
    }
    c->origin = origin ? tern_session_ref(origin) : NULL;
}

static bool iq_is_valid(const xml_node_t *root)
{
    const char *type = xml_node_attr(root, "type");
    if (!type || !xml_node_attr(root, "id"))
        return false;
    if (strcmp(type, "get") == 0 || strcmp(type, "set") == 0) {
        /* RFC 6120 §8.2.3: exactly one payload element. */
        xml_node_t *first = xml_node_first_element(root);
        return first && !xml_node_next(first, NULL, NULL);
    }
    return strcmp(type, "result") == 0 || strcmp(type, "error") == 0;
}

static void route_bare(tern_server_t *srv, tern_host_t *host, xml_stanza_t *st, kind_t kind,
                       const jid_t *from, const jid_t *to, tern_session_t *origin)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    char *bare = jid_bare_string(to);
    sm_user_t *u = sm_find_user(host, bare);
    free(bare);

    switch (kind) {
    case KIND_IQ:
        account_iq(srv, host, st, from, to, origin, u != NULL);
        return;
    case KIND_PRESENCE: {
        /* Without rosters yet, presence to a bare JID reaches every
         * available resource (directed presence, subscription requests). */
        for (tern_session_t *r = u ? u->sessions : NULL; r; r = r->next_resource)
            if (r->available)
                deliver(r, st); /* presence is state: a congested reader misses it */
        return;
    }
    case KIND_MESSAGE: {
        if (type && strcmp(type, "error") == 0) {
            /* errors to an account go to its available resources or vanish */
        } else if (type && strcmp(type, "groupchat") == 0) {
            router_bounce(srv, st, "cancel", "service-unavailable", NULL);
            return;
        }
        int delivered = 0, congested = 0;
        for (tern_session_t *r = u ? u->sessions : NULL; r; r = r->next_resource) {
            if (r->available && r->priority >= 0) {
                if (deliver(r, st))
                    delivered++;
                else
                    congested++;
            }
        }
        if (delivered)
            return;
        if (congested) {
            bounce_congested(srv, st);
            return;
        }
        if (modules_have_hooks(host, TERN_HOOK_UNDELIVERABLE)) {
            tern_stanza_ev_t ev = {.host = host, .stanza = st, .from = from, .to = to};
            if (modules_run_hooks(host, TERN_HOOK_UNDELIVERABLE, &ev) == TERN_HANDLED)
                return; /* stored for later (offline) */
        }
        /* RFC 6121 §8.5.2.2: no available resource and nothing stored it:
         * chat/normal bounce, headline and error vanish. */
        if (!type || strcmp(type, "normal") == 0 || strcmp(type, "chat") == 0)
            router_bounce(srv, st, "cancel", "service-unavailable", NULL);
        return;
    }
    }
}

/* The INBOUND hooks for a stanza to a local account (iq only to a full
 * JID: iqs to the bare JID are the account's own service). True if a
 * module took it. */
static bool inbound_hooks_take(tern_host_t *host, xml_stanza_t *st, kind_t kind, const jid_t *from,
                               const jid_t *to)
{
    /* An iq to the bare JID from the account itself is its own service
     * (roster, vCard...); from anyone else it is inbound like a message,
     * so blocking applies to it. */
    if (!modules_have_hooks(host, TERN_HOOK_INBOUND) ||
        (kind == KIND_IQ && !to->resource &&
         (!from || !from->local ||
          (strcmp(from->local, to->local) == 0 && strcmp(from->domain, to->domain) == 0))))
        return false;
    tern_stanza_ev_t ev = {.host = host, .stanza = st, .from = from, .to = to};
    return modules_run_hooks(host, TERN_HOOK_INBOUND, &ev) == TERN_HANDLED;
}

void router_route_from_client(tern_session_t *s, xml_stanza_t *st, const jid_t *to)
{
    if (modules_have_hooks(s->host, TERN_HOOK_OUTBOUND)) {
        tern_stanza_ev_t ev = {
            .host = s->host, .stanza = st, .from = &s->jid, .to = to, .session = s};
        if (modules_run_hooks(s->host, TERN_HOOK_OUTBOUND, &ev) == TERN_HANDLED)
            return;
    }
    router_route(s->srv, st, &s->jid, to, s);
}

/* A stanza for a module's service domain (tern_register_service). */
static void route_service(tern_server_t *srv, tern_host_t *host, host_service_t *svc,
                          xml_stanza_t *st, kind_t kind, const jid_t *from, const jid_t *to,
                          tern_session_t *origin)
{
    const char *type = xml_node_attr(xml_stanza_root(st), "type");
    if (kind == KIND_PRESENCE && origin && to->local)
        sm_note_directed_presence(origin, to, type); /* a room learns of our departure */
    if (srv->shards) {
        /* An address in the service (a room) lives on its own worker; the
         * service itself on worker 0, so that its state is written to
         * storage from one worker, in order. */
        unsigned owner = to->local ? shard_of(srv, to->local, svc->domain) : 0;
        if (owner != srv->shard_index) {
            if (!shard_forward(srv, owner, st) && kind != KIND_PRESENCE)
                bounce_congested(srv, st);
            return;
        }
    }
    tern_stanza_ev_t ev = {.host = host, .stanza = st, .from = from, .to = to};
    if (svc->cb(svc->inst->state, &ev) == TERN_HANDLED)
        return;
    if (kind != KIND_PRESENCE)
        router_bounce(srv, st, "cancel", "service-unavailable", NULL);
}

void router_route(tern_server_t *srv, xml_stanza_t *st, const jid_t *from, const jid_t *to,
                  tern_session_t *origin)
{
    xml_node_t *root = xml_stanza_root(st);
    kind_t kind = kind_of(root);
    const char *type = xml_node_attr(root, "type");

    if (kind == KIND_IQ && !iq_is_valid(root)) {
        router_bounce(srv, st, "modify", "bad-request", NULL);
        return;
    }

    if (!to) {
        /* RFC 6120 §10.3: no 'to' from a client means its own account. */
        if (!origin || !origin->bound)
            return;
        if (kind == KIND_PRESENCE) {
            sm_presence_broadcast(origin, st);
            return;
        }
        jid_t bare = {0};
        if (jid_from_parts(from->local, from->domain, NULL, &bare) != 0)
            return;
        if (kind == KIND_IQ)
            handle_iq(srv, origin->host, TERN_SCOPE_ACCOUNT, st, from, NULL, origin);
        else if (!inbound_hooks_take(origin->host, st, kind, from, &bare))
            route_bare(srv, origin->host, st, kind, from, &bare, origin);
        jid_clear(&bare);
        return;
    }

    tern_host_t *host = server_find_host(srv, to->domain);
    if (!host) {
        tern_host_t *shost = NULL;
        host_service_t *svc = server_find_service(srv, to->domain, &shost);
        if (svc) {
            route_service(srv, shost, svc, st, kind, from, to, origin);
            return;
        }
        /* Server-to-server arrives with federation; until then every
         * remote domain is unreachable. */
        router_bounce(srv, st, "cancel", "remote-server-not-found", NULL);
        return;
    }

    if (kind == KIND_PRESENCE && origin && to->local)
        sm_note_directed_presence(origin, to, type);

    if (to->local && srv->shards) {
        /* The account's sessions live on its owner worker; the rules
         * below run there. */
        unsigned owner = shard_of(srv, to->local, host->domain);
        if (owner != srv->shard_index) {
            if (!shard_forward(srv, owner, st) && kind != KIND_PRESENCE)
                bounce_congested(srv, st);
            return;
        }
    }

    if (!to->local) {
        if (kind == KIND_IQ)
            handle_iq(srv, host, TERN_SCOPE_SERVER, st, from, to, origin);
        /* Messages and presence to the server itself have no handler yet. */
        return;
    }

    if (inbound_hooks_take(host, st, kind, from, to))
        return;

    if (!to->resource) {
        route_bare(srv, host, st, kind, from, to, origin);
        return;
    }

    char *full = jid_to_string(to);
    tern_session_t *target = sm_find_full(host, full);
    free(full);
    if (target) {
        if (!deliver(target, st) && kind != KIND_PRESENCE)
            bounce_congested(srv, st);
        return;
    }
    /* RFC 6121 §8.5.3.2: no such resource. */
    switch (kind) {
    case KIND_IQ:
        if (type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0))
            router_bounce(srv, st, "cancel", "service-unavailable", NULL);
        return;
    case KIND_PRESENCE:
        if (type && (strcmp(type, "subscribe") == 0 || strcmp(type, "subscribed") == 0 ||
                     strcmp(type, "unsubscribe") == 0 || strcmp(type, "unsubscribed") == 0)) {
            jid_t bare = {0};
            if (jid_from_parts(to->local, to->domain, NULL, &bare) == 0)
                route_bare(srv, host, st, kind, from, &bare, origin);
            jid_clear(&bare);
        }
        return;
    case KIND_MESSAGE:
        if (type && strcmp(type, "groupchat") == 0) {
            router_bounce(srv, st, "cancel", "service-unavailable", NULL);
        } else if (!type || (strcmp(type, "error") != 0 && strcmp(type, "headline") != 0)) {
            /* chat and normal fall back to the bare JID; a headline for a
             * resource that is gone is dropped (§8.5.3.2.1). */
            jid_t bare = {0};
            if (jid_from_parts(to->local, to->domain, NULL, &bare) == 0)
                route_bare(srv, host, st, kind, from, &bare, origin);
            jid_clear(&bare);
        }
        return;
    }
}

/* ---- module API: routing ---- */

void tern_route(tern_server_t *srv, xml_stanza_t *st)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *to = xml_node_attr(root, "to");
    const char *from = xml_node_attr(root, "from");
    jid_t tj = {0}, fj = {0};
    if (!to || jid_parse(to, &tj) != 0)
        return;
    bool have_from = from && jid_parse(from, &fj) == 0;
    router_route(srv, st, have_from ? &fj : NULL, &tj, NULL);
    jid_clear(&tj);
    jid_clear(&fj);
}

void tern_bounce(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                 const char *condition, const char *text)
{
    router_bounce(srv, st, type, condition, text);
}

void tern_session_route(tern_session_t *s, xml_stanza_t *st)
{
    if (!tern_session_is_open(s) || !s->bound)
        return;
    const char *to = xml_node_attr(xml_stanza_root(st), "to");
    jid_t tj = {0};
    if (to && jid_parse(to, &tj) != 0)
        return; /* was checked when the client sent it */
    router_route_from_client(s, st, to ? &tj : NULL);
    jid_clear(&tj);
}

void tern_stamp_delay(xml_node_t *root, const char *from, time_t when, const char *reason)
{
    for (xml_node_t *d = xml_node_child(root, "delay", NS_DELAY); d;
         d = xml_node_next(d, "delay", NS_DELAY)) {
        const char *by = xml_node_attr(d, "from");
        if (by && strcmp(by, from) == 0)
            return;
    }
    struct tm tm;
    char stamp[32];
    if (!gmtime_r(&when, &tm) || strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return;
    xml_node_t *d = xml_node_add_child(root, "delay", NS_DELAY);
    xml_node_set_attr(d, "from", from);
    xml_node_set_attr(d, "stamp", stamp);
    if (reason)
        xml_node_add_text(d, reason, strlen(reason));
}

xml_stanza_t *tern_error_reply(const xml_stanza_t *st, const char *type, const char *condition,
                               const char *text, bool strip_payload)
{
    xml_stanza_t *err = stanza_error_reply(st, type, condition, text);
    if (!err || !strip_payload)
        return err;
    xml_node_t *root = xml_stanza_root(err);
    for (xml_node_t *c = root->children, *n; c; c = n) {
        n = c->next;
        if (!xml_node_is(c, "error", NS_CLIENT))
            xml_node_detach(c);
    }
    return err;
}

void tern_bounce_bare(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                      const char *condition, const char *text)
{
    xml_stanza_t *err = tern_error_reply(st, type, condition, text, true);
    if (!err)
        return;
    tern_route(srv, err);
    xml_stanza_unref(err);
}
