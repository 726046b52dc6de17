/* SPDX-License-Identifier: MIT
 * tern/module.h - the one internal API through which protocol features
 * plug into the server.
 *
 * The core (streams, router, session manager) knows no feature by name.
 * A module is a static tern_module_def_t with an init function; at start-up
 * the server calls init once per virtual host with a tern_module_t handle,
 * and the module registers what it handles there:
 *
 *   - iq handlers, keyed by (scope, payload namespace, payload name), where
 *     the scope says whom the iq is addressed to: the server itself (to =
 *     the host's domain), an account (to = a user's bare JID, or no 'to'
 *     from a client), or a stream that has not authenticated yet;
 *   - disco#info features and identities for the server or account scope;
 *   - stream features offered on c2s streams;
 *   - hooks on session life-cycle events.
 *
 * Dispatch is a table lookup on the interned key, not a walk over modules
 * (prosody's event names, interned as style.md suggests). Per-host state
 * lives in the pointer the module returns from init, never in file statics,
 * so a second virtual host gets its own.
 *
 * Ownership: the stanza passed to a handler is borrowed for the duration of
 * the call; a handler that answers later takes a reference with
 * xml_stanza_ref and a session reference with tern_session_ref.
 */
#ifndef TERN_MODULE_H
#define TERN_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../../src/xml/stanza.h"
#include "../../src/xmpp/jid.h"

#define TERN_MODULE_API_VERSION 1

typedef struct tern_server tern_server_t;
typedef struct tern_host tern_host_t;
typedef struct tern_session tern_session_t;
typedef struct tern_module tern_module_t;

typedef enum {
    TERN_SCOPE_SERVER = 0,  /* to = host domain */
    TERN_SCOPE_ACCOUNT = 1, /* to = bare JID of a local account, or no 'to' */
    TERN_SCOPE_PREAUTH = 2, /* iq on a stream before authentication */
    TERN_SCOPE_COUNT
} tern_scope_t;

typedef enum { TERN_PASS = 0, TERN_HANDLED = 1 } tern_handled_t;

/* Everything a handler needs to know about one incoming iq. */
typedef struct {
    tern_host_t *host;
    xml_stanza_t *stanza;    /* borrowed */
    xml_node_t *payload;     /* the first child element */
    const jid_t *from;       /* stamped sender; NULL before authentication */
    const jid_t *to;         /* NULL for no 'to' */
    tern_session_t *session; /* originating local session, or NULL */
    bool is_set;             /* type='set' (else 'get') */
} tern_iq_t;

typedef tern_handled_t (*tern_iq_cb)(void *mod_state, tern_iq_t *iq);
typedef void (*tern_features_cb)(void *mod_state, tern_session_t *s, xml_node_t *features);
typedef void (*tern_session_cb)(void *mod_state, tern_session_t *s);

typedef struct {
    const char *name; /* "disco", "ping"... matches disabled_modules */
    int api_version;  /* TERN_MODULE_API_VERSION */
    /* Called once per host; returns the module's per-host state (may be NULL). */
    void *(*init)(tern_module_t *m);
    void (*fini)(void *mod_state);
} tern_module_def_t;

/* ---- registration (from init only) ---- */
tern_host_t *tern_module_host(tern_module_t *m);
int tern_register_iq(tern_module_t *m, tern_scope_t scope, const char *ns, const char *name,
                     tern_iq_cb cb);
int tern_register_disco_feature(tern_module_t *m, tern_scope_t scope, const char *var);
int tern_register_disco_identity(tern_module_t *m, tern_scope_t scope, const char *category,
                                 const char *type, const char *name);
int tern_register_stream_features(tern_module_t *m, tern_features_cb cb);
int tern_register_session_bound(tern_module_t *m, tern_session_cb cb);
int tern_register_session_closed(tern_module_t *m, tern_session_cb cb);

/* ---- stanza hooks ----
 * Points on a stanza's way through the router where modules look at it and
 * may take it over. At each point hooks run from the highest priority down
 * (ties in module order). A hook may change the stanza (e.g. add a
 * stanza-id); returning TERN_HANDLED ends the processing there: the module
 * has delivered, stored, answered or dropped it, and the router does
 * nothing more with it. Priorities in use: blocking 100, mam 50, carbons
 * 40, roster 0, offline -50 (see docs/architecture.md).
 */
typedef enum {
    /* A stanza from a bound local session, after its 'from' was stamped,
     * before routing. ev->to is NULL when the client gave no 'to' (its own
     * account). Runs on the worker that owns the sender. */
    TERN_HOOK_OUTBOUND = 0,
    /* A message, presence or iq addressed to a local account (bare or full
     * JID; an iq to the bare JID only when it comes from another entity,
     * since the account's own iqs are its service), on the worker that owns
     * the account, before delivery. */
    TERN_HOOK_INBOUND,
    /* A message for a local account that no resource can take (no
     * available resource with non-negative priority, or a full JID whose
     * resource is gone), before the service-unavailable bounce. */
    TERN_HOOK_UNDELIVERABLE,
    /* A stanza about to be written to a session (ev->session). Runs on
     * every delivery, so keep it cheap. */
    TERN_HOOK_DELIVER,
    TERN_HOOK_COUNT
} tern_hook_point_t;

typedef struct {
    tern_host_t *host;       /* the host of the local account concerned */
    xml_stanza_t *stanza;    /* borrowed; the hook may modify it */
    const jid_t *from;       /* stamped sender; may be NULL (server) */
    const jid_t *to;         /* NULL: OUTBOUND without 'to' */
    tern_session_t *session; /* OUTBOUND: sender; DELIVER: recipient; else NULL */
} tern_stanza_ev_t;

typedef tern_handled_t (*tern_stanza_hook_cb)(void *mod_state, tern_stanza_ev_t *ev);
int tern_register_hook(tern_module_t *m, tern_hook_point_t point, int priority,
                       tern_stanza_hook_cb cb);

/* ---- services on a domain of their own ----
 * A module serving a subdomain of its host (MUC on conference.<domain>,
 * PubSub on pubsub.<domain>) registers it here: every stanza whose 'to'
 * is in that domain goes to cb instead of the session manager, with
 * ev->host the module's host, ev->to the full address and ev->session
 * NULL. A stanza to an address with a local part (a room) runs on the
 * worker that owns that bare JID (shard_of(local, domain), as for an
 * account), so per-room state needs no lock; one to the bare domain runs
 * on worker 0, so the service's own state has one writer. Returning TERN_PASS makes the router
 * answer service-unavailable. The domain is listed in the host's disco
 * items. Returns 0, or -1 when another host or service has the domain. */
typedef tern_handled_t (*tern_service_cb)(void *mod_state, tern_stanza_ev_t *ev);
int tern_register_service(tern_module_t *m, const char *domain, const char *name,
                          tern_service_cb cb);
/* Calls cb for each service domain of host (disco items). */
typedef void (*tern_service_each_cb)(void *ud, const char *domain, const char *name);
void tern_host_services_each(const tern_host_t *h, tern_service_each_cb cb, void *ud);

/* ---- per-session module data ----
 * A module that keeps state per session (roster requested, carbons
 * enabled...) gets a slot at init and stores a pointer in each session.
 * The module owns what it stores and clears it in its session_closed hook. */
int tern_module_session_slot(tern_module_t *m);
void *tern_session_get(const tern_session_t *s, int slot);
void tern_session_set(tern_session_t *s, int slot, void *data);

/* ---- host and server facts ---- */
const char *tern_host_domain(const tern_host_t *h);
const struct config_host *tern_host_config(const tern_host_t *h);
const struct config *tern_host_server_config(const tern_host_t *h);
tern_server_t *tern_host_server(const tern_host_t *h);
/* With several workers every worker has its own instance of each module;
 * this is the state of def's instance on worker 0 for the same host (the
 * caller's own state with one worker), for what must count per process,
 * such as abuse limits. Shared state must be made thread-safe by the
 * module. NULL if def is not loaded for that host. */
void *tern_module_primary_state(const tern_host_t *h, const tern_module_def_t *def);
/* The state of def's instance for this host on the calling worker, for
 * one module asking another (e.g. the roster asks blocking whether a
 * contact is blocked); NULL if def is not loaded. Loop thread only. */
void *tern_host_module_state(const tern_host_t *h, const tern_module_def_t *def);
/* Iterate disco data registered for a scope (used by the disco module). */
typedef void (*tern_disco_feature_cb)(void *ud, const char *var);
typedef void (*tern_disco_identity_cb)(void *ud, const char *category, const char *type,
                                       const char *name);
void tern_host_disco_each(const tern_host_t *h, tern_scope_t scope, tern_disco_feature_cb fcb,
                          tern_disco_identity_cb icb, void *ud);

/* ---- sessions ---- */
tern_session_t *tern_session_ref(tern_session_t *s);
void tern_session_unref(tern_session_t *s);
bool tern_session_is_open(const tern_session_t *s);
bool tern_session_is_secure(const tern_session_t *s);
bool tern_session_is_authenticated(const tern_session_t *s);
const jid_t *tern_session_jid(const tern_session_t *s); /* NULL before bind */
/* Source address as text ("127.0.0.1"), for throttling. */
const char *tern_session_ip(const tern_session_t *s);
/* The host the session belongs to. */
tern_host_t *tern_session_host(const tern_session_t *s);
/* Available (sent initial presence and not unavailable since), its
 * priority, and its last broadcast presence (borrowed, NULL if none). */
bool tern_session_available(const tern_session_t *s);
int tern_session_priority(const tern_session_t *s);
const xml_stanza_t *tern_session_presence(const tern_session_t *s);
/* The bound sessions of a local account on this worker: the first, then
 * the next; NULL at the end. bare is "local@domain". */
tern_session_t *tern_user_sessions(tern_host_t *h, const char *bare);
tern_session_t *tern_session_next_resource(const tern_session_t *s);
/* Whether the person behind a session would not see a stanza written to
 * it now: its connection is gone while stream management waits for the
 * client to resume, or the client said it is inactive (XEP-0352). Push
 * notifications wake such clients. */
bool tern_session_needs_wakeup(const tern_session_t *s);
/* Set by the CSI module from the client's <active/> and <inactive/>. */
void tern_session_set_inactive(tern_session_t *s, bool inactive);
/* Writes st (borrowed) on the session's stream; no-op if closed. */
void tern_session_send(tern_session_t *s, const xml_stanza_t *st);
/* Closes the stream, with a stream error condition or NULL. */
void tern_session_close(tern_session_t *s, const char *stream_error);

/* ---- stanzas ---- */
/* Routes st (borrowed) as coming from its 'from'. st must not be changed
 * afterwards: it may be waiting in another worker's inbox. */
void tern_route(tern_server_t *srv, xml_stanza_t *st);
/* The error reply to st without routing it, for a module that adds an
 * application-specific condition or sends it itself: from and to
 * swapped, <error type=...><condition/><text/></error> appended, the
 * payload kept unless strip_payload. NULL for an error or iq result
 * (never answered). The caller owns the returned stanza. */
xml_stanza_t *tern_error_reply(const xml_stanza_t *st, const char *type, const char *condition,
                               const char *text, bool strip_payload);
/* tern_bounce without echoing the payload: for refusals under load, where
 * sending a flood back would only double it. */
void tern_bounce_bare(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                      const char *condition, const char *text);
/* Routes st (borrowed) as if the session's client had just sent it (its
 * 'from' already stamped): the OUTBOUND hooks run, then routing; a missing
 * 'to' means the account itself. For modules that hold a client's stanza
 * and release it later. No-op if the session is closed or not bound. */
void tern_session_route(tern_session_t *s, xml_stanza_t *st);
/* Answers st (borrowed) with an error from its recipient to its sender
 * (never for an error or iq result): condition is a RFC 6120 §8.3.3 name,
 * type "cancel", "modify", "auth" or "wait"; text may be NULL. */
void tern_bounce(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                 const char *condition, const char *text);
/* XEP-0203: says on st's root element (a message or presence kept for
 * later) that `from` (this server's domain) had it at `when`, with an
 * optional human-readable reason. A delay from the same `from` already
 * there is kept: it knows the earlier time. */
void tern_stamp_delay(xml_node_t *root, const char *from, time_t when, const char *reason);
/* Sends a reply to iq: result built by the caller (type/id/from/to are set
 * here). reply may be NULL for an empty result. Replies go to the session
 * when the iq came from a stream before authentication. */
void tern_iq_reply(tern_iq_t *iq, xml_stanza_t *reply);
/* Builds and sends an error reply: condition is a RFC 6120 §8.3.3 name,
 * type is "cancel", "modify", "auth", "wait"; text may be NULL. */
void tern_iq_error(tern_iq_t *iq, const char *type, const char *condition, const char *text);
/* Copies what tern_iq_reply needs so a handler can answer after it returned
 * (e.g. after a storage job). Free with tern_iq_saved_free. */
typedef struct tern_iq_saved tern_iq_saved_t;
tern_iq_saved_t *tern_iq_save(const tern_iq_t *iq);
void tern_iq_saved_reply(tern_iq_saved_t *sv, xml_stanza_t *reply);
void tern_iq_saved_error(tern_iq_saved_t *sv, const char *type, const char *condition,
                         const char *text);
void tern_iq_saved_free(tern_iq_saved_t *sv);
tern_session_t *tern_iq_saved_session(const tern_iq_saved_t *sv);

/* ---- iqs the server sends ----
 * tern_iq_request sends iq (type get or set, with its 'to'; 'from' and 'id'
 * are set here: the host's domain and a fresh id) and calls cb exactly once
 * on this worker's loop: with the answer (a result or an error from the
 * address the request went to; borrowed, valid during cb), or with NULL
 * when none came within timeout_s seconds or the server shuts down.
 * Answers from anyone else, or with an id nobody waits for, are dropped.
 * iq is borrowed. Returns 0, or TERN_EINVAL without calling cb. */
typedef void (*tern_iq_answer_cb)(void *ud, const xml_stanza_t *answer);
int tern_iq_request(tern_host_t *h, xml_stanza_t *iq, unsigned timeout_s, tern_iq_answer_cb cb,
                    void *ud);

/* ---- background work ---- */
struct storage_driver;
struct storage_db;
typedef int (*tern_storage_job)(const struct storage_driver *drv, struct storage_db *db, void *arg);
typedef void (*tern_done_cb)(void *arg, int result);
/* Runs job on the storage thread, then done on the loop thread. */
int tern_storage_submit(tern_server_t *srv, tern_storage_job job, tern_done_cb done, void *arg);
/* Runs fn on a CPU worker thread (key derivation), then done on the loop. */
int tern_cpu_submit(tern_server_t *srv, int (*fn)(void *arg), tern_done_cb done, void *arg);

/* ---- nonzas ----
 * Top-level elements of a c2s stream that are not stanzas, such as XEP-0352
 * <active/> and <inactive/>, handled by a module once the stream has
 * authenticated. el is borrowed for the duration of the call. Several
 * modules may register the same element: all are called, in registration
 * order, and it counts as handled if one returns TERN_HANDLED; otherwise
 * (or with no handler) the stream is closed with unsupported-stanza-type,
 * as for any unknown element. Registration from init only. */
typedef tern_handled_t (*tern_nonza_cb)(void *mod_state, tern_session_t *s, xml_node_t *el);
int tern_register_nonza(tern_module_t *m, const char *ns, const char *name, tern_nonza_cb cb);

#endif
