/* SPDX-License-Identifier: MIT
 * pubsub.h - the XEP-0060 node core shared by the pubsub.<domain> service
 * (pubsub.c) and PEP on account bare JIDs (pep.c, XEP-0163).
 *
 * A ps_service_t is one publish-subscribe service: its nodes, their
 * configuration, affiliations, subscriptions and items. The core applies
 * XEP-0060's rules and errors and never routes: every stanza it produces
 * (replies, errors, event notifications) is appended to svc->out, owned by
 * the service until the front end takes it with ps_take_out. It is not
 * thread-safe; the front end serialises calls (a mutex for the shared
 * service, the account's owner worker for PEP). Writes go to the kv store
 * under (svc->host, svc->user): "pubsub_nodes" and "pubsub_items:<node>",
 * submitted on svc->srv's loop in call order.
 */
#ifndef TERN_MODULES_PUBSUB_H
#define TERN_MODULES_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "../storage/storage.h"
#include "tern/module.h"

typedef enum { PA_OUTCAST = -1, PA_NONE = 0, PA_MEMBER, PA_PUBLISHER, PA_OWNER } ps_aff_t;

typedef struct ps_item {
    char *id;
    char *payload; /* serialised payload element, or NULL */
    char *publisher;
    unsigned long seq;
    struct ps_item *next; /* newer first */
} ps_item_t;

typedef struct ps_sub {
    char *jid, *subid;
    bool pending; /* authorize model: waiting for an owner's approval */
    struct ps_sub *next;
} ps_sub_t;

typedef struct ps_affil {
    char *jid;
    ps_aff_t aff;
    struct ps_affil *next;
} ps_affil_t;

typedef struct {
    char *title, *description, *type;
    unsigned max_items; /* PS_MAX_ITEMS for "max" */
    bool deliver_notifications, deliver_payloads, notify_retract, notify_delete, persist_items;
    char access_model[16];      /* open, presence, roster, whitelist, authorize */
    char publish_model[16];     /* publishers, subscribers, open */
    char send_last[24];         /* never, on_sub, on_sub_and_presence (= on_sub for now) */
    char notification_type[16]; /* headline, normal */
    char *roster_groups;        /* roster model: allowed groups, one per line, or NULL */
} ps_cfg_t;

typedef struct ps_node {
    char *name;
    ps_cfg_t cfg;
    ps_affil_t *affs;
    ps_sub_t *subs;
    ps_item_t *items;
    size_t nitems;
    unsigned long seq;
    struct ps_node *next;
} ps_node_t;

typedef struct ps_service ps_service_t;

/* What a front end adds to the node core. Both may be NULL. */
typedef struct {
    /* Whether bare passes the presence or roster access model of n
     * (n->cfg.access_model), which only the front end can tell from the
     * owner's roster. Without it both models admit only affiliates. */
    bool (*roster_allows)(void *ud, const ps_node_t *n, const char *bare);
    /* Called for every event message the core sends to n's subscribers
     * (m has no 'to'; borrowed): PEP adds the contacts that asked for the
     * node with +notify, skipping those ps_is_subscriber already covers. */
    void (*fanout)(void *ud, ps_service_t *svc, const ps_node_t *n, xml_stanza_t *m);
    /* After it was published to n (and notified), for what a front end
     * derives from items (PEP avatars into the vCard, XEP-0398). */
    void (*published)(void *ud, ps_service_t *svc, const ps_node_t *n, const ps_item_t *it);
    void *ud;
} ps_hooks_t;

struct ps_service {
    tern_server_t *srv;
    char *jid;   /* the service address: pubsub.<domain>, or a bare JID for PEP */
    char *host;  /* storage host */
    char *user;  /* storage user namespace */
    char *owner; /* PEP: the only JID that may create nodes; NULL = see below */
    /* pubsub.<domain>: who else may ("anyone", "local", "admins"), the
     * host's domain and its admins (borrowed from the configuration). */
    const char *creation, *local_domain;
    char *const *admins;
    ps_node_t *nodes;
    xml_stanza_t **out;
    size_t nout, capout;
    bool pep;                /* PEP defaults: presence access, one item, sent on presence */
    size_t max_payload;      /* bytes per item payload; 0 = no limit */
    const ps_hooks_t *hooks; /* borrowed; NULL for none */
};

/* Sets up svc for jid, storing under (host, user); owner non-NULL makes a
 * PEP service (only owner creates nodes, PEP defaults). Strings are copied. */
void ps_service_init(ps_service_t *svc, tern_server_t *srv, const char *jid, const char *host,
                     const char *user, const char *owner);
void ps_service_clear(ps_service_t *svc);

/* Handles one stanza addressed to the service; from is its stamped sender. */
void ps_handle(ps_service_t *svc, const xml_stanza_t *st, const jid_t *from);

/* Appends st (taking its reference) to the service's outbox. */
void ps_out_push(ps_service_t *svc, xml_stanza_t *st);

/* The produced stanzas, in order (caller owns the array and the refs). */
xml_stanza_t **ps_take_out(ps_service_t *svc, size_t *n);

/* Queues for to (a full JID) the newest item of every node that bare may
 * see, sends its last item on presence, and that want(ud, node) accepts. */
void ps_send_last_items(ps_service_t *svc, const char *to, const char *bare,
                        bool (*want)(void *ud, const char *node), void *ud);

/* The node an iq to the service is about (the node attribute of its
 * pubsub or disco payload's element), or NULL. */
const ps_node_t *ps_request_node(ps_service_t *svc, const xml_stanza_t *st);

/* The stored payload (serialised element) of item id of node, or NULL. */
const char *ps_item_payload(ps_service_t *svc, const char *node, const char *id);

/* Whether group is one of n's pubsub#roster_groups_allowed. */
bool ps_group_allowed(const ps_node_t *n, const char *group);

/* Whether bare may see n's items (access model, affiliations, hooks). */
bool ps_may_see(ps_service_t *svc, const ps_node_t *n, const char *bare);
/* Whether to (a full or bare JID) has its own subscription to n. */
bool ps_is_subscriber(const ps_node_t *n, const char *to);

/* ---- loading a service's nodes from storage ---- */
typedef struct ps_stored ps_stored_t;
/* Storage thread: reads every node and item of (host, user) into *out
 * (caller frees with ps_stored_free). */
int ps_stored_read(const storage_driver_t *drv, storage_db_t *db, const char *host,
                   const char *user, ps_stored_t **out);
/* Loop thread: adds the stored nodes svc does not have yet. */
void ps_stored_apply(ps_service_t *svc, const ps_stored_t *stored);
void ps_stored_free(ps_stored_t *stored);

#endif
