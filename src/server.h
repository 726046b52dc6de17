/* SPDX-License-Identifier: MIT
 * server.h - the server object and the internal structures shared by the
 * c2s listener, the session manager and the router.
 *
 * One tern_server_t owns everything: the libuv loop, the loaded config, the
 * TLS context, the storage queue, the virtual hosts (each with its module
 * instances and its sessions) and the listeners. There is no file-level
 * mutable state, so several servers could live in one process (the unit
 * tests rely on that).
 */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/hashmap.h"
#include "core/throttle.h"
#include "net/tls.h"
#include "sasl/scram.h"
#include "storage/storage.h"
#include "tern/module.h"
#include "xml/parser.h"
#include "xml/stanza.h"
#include "xmpp/jid.h"

typedef struct c2s_listener c2s_listener_t;

/* One registered iq handler. */
typedef struct iq_handler {
    tern_iq_cb cb;
    void *state;
    char *key; /* "ns\x1fname" (owned) */
} iq_handler_t;

typedef struct module_inst {
    const tern_module_def_t *def;
    void *state;
    struct module_inst *next;
} module_inst_t;

typedef struct host_hook {
    void *state;
    union {
        tern_features_cb features;
        tern_session_cb session;
    } cb;
    struct host_hook *next;
} host_hook_t;

typedef struct stanza_hook {
    int priority;
    module_inst_t *inst;
    tern_stanza_hook_cb cb;
    struct stanza_hook *next;
} stanza_hook_t;

typedef struct nonza_handler {
    char *ns, *name;
    tern_nonza_cb cb;
    module_inst_t *inst;
    struct nonza_handler *next;
} nonza_handler_t;

typedef struct host_service {
    char *domain; /* normalised */
    char *name;   /* for disco items, or NULL */
    module_inst_t *inst;
    tern_service_cb cb;
    struct host_service *next;
} host_service_t;

typedef struct disco_entry {
    tern_scope_t scope;
    char *category, *type, *name; /* identity when category != NULL */
    char *var;                    /* feature otherwise */
    struct disco_entry *next;
} disco_entry_t;

/* A user with at least one bound session on this host. */
typedef struct sm_user {
    char *bare;                    /* "local@domain", the map key */
    struct tern_session *sessions; /* linked by next_resource */
} sm_user_t;

struct tern_host {
    tern_server_t *srv;
    char *domain;
    const config_host_t *cfg; /* points into srv->cfg */
    hashmap_t iq_handlers[TERN_SCOPE_COUNT];
    module_inst_t *modules;
    host_hook_t *feature_hooks, *bound_hooks, *closed_hooks;
    stanza_hook_t *stanza_hooks[TERN_HOOK_COUNT]; /* by priority, highest first */
    nonza_handler_t *nonzas;                      /* in registration order */
    host_service_t *services;                     /* subdomains served by modules */
    int nslots;                                   /* per-session module slots */
    disco_entry_t *disco;
    hashmap_t users;    /* bare JID -> sm_user_t */
    hashmap_t sessions; /* full JID -> tern_session_t */
};

struct shard_msg;

struct tern_server {
    uv_loop_t *loop;
    /* With workers > 1 every worker thread runs its own tern_server_t;
     * they share nothing but the messages of their inboxes (shard.c). */
    struct tern_shards *shards; /* NULL with one worker */
    unsigned shard_index;       /* 0 = the main thread, which owns signals */
    pthread_mutex_t inbox_mu;
    struct shard_msg *inbox_head, *inbox_tail; /* under inbox_mu */
    bool inbox_open, inbox_closed;             /* under inbox_mu */
    size_t inbox_bytes;                        /* under inbox_mu */
    uv_async_t inbox_async;
    config_t *cfg;
    char *config_path;
    tls_ctx_t *tls;
    tls_ctx_t *tls_direct; /* same certificates, ALPN xmpp-client */
    storage_t *storage;
    tern_host_t *hosts;
    size_t nhosts;
    c2s_listener_t *listeners;
    /* Web transports (src/http): listeners, open HTTP connections, this
     * worker's BOSH sessions; worker 0's bosh_sids maps every BOSH sid of
     * the process to its worker (under bosh_mu). */
    tls_ctx_t *tls_http; /* same certificates, ALPN http/1.1 */
    struct http_listener *http_listeners;
    struct http_conn *http_conns;
    struct bosh *bosh_sessions;
    hashmap_t bosh_sids;
    pthread_mutex_t bosh_mu;
    struct tern_session *all_sessions; /* every open connection, for sweeps */
    struct tern_session *cork_list;    /* sessions with output to flush */
    uv_check_t flush_check;            /* flushes after each round of I/O */
    uv_prepare_t flush_prepare;        /* and before the loop blocks */
    size_t nsessions;
    uint64_t next_conn_id;
    /* iqs this worker sent and waits on (tern_iq_request): id -> entry */
    hashmap_t iq_waiting;
    uint64_t iq_seq;
    uv_timer_t sweep_timer;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool shutting_down;
    bool timers_started;
    /* Failed logins per address / account, and open connections per
     * address: worker 0's tables count for every worker (the throttles
     * lock themselves, conns_per_ip is under conns_mu). */
    throttle_t auth_fail_ip, auth_fail_account;
    hashmap_t conns_per_ip;
    pthread_mutex_t conns_mu;
    /* Shared I/O scratch: the loop is single-threaded and every read is
     * processed before the next, so one buffer serves all connections
     * and an idle connection holds none. */
    char readbuf[65536];
    char plainbuf[16384];
    int exit_code;
};

/* ---- server.c ---- */
tern_server_t *server_new(uv_loop_t *loop, config_t *cfg, const char *config_path, char *err,
                          size_t errlen);
int server_start(tern_server_t *srv, char *err, size_t errlen);
void server_shutdown(tern_server_t *srv);
void server_free(tern_server_t *srv);
tern_host_t *server_find_host(tern_server_t *srv, const char *domain);
/* Listens on addr:port with h (its data set to data). With several
 * workers each one listens on the same port (SO_REUSEPORT) and the kernel
 * spreads new connections over them. Returns 0, or -1 with err set; *inited
 * says whether h was initialised and so needs uv_close either way. */
int server_listen(tern_server_t *srv, uv_tcp_t *h, void *data, const char *addr, unsigned port,
                  uv_connection_cb cb, bool *inited, char *err, size_t errlen);
/* The module service for domain, or NULL. */
host_service_t *server_find_service(tern_server_t *srv, const char *domain, tern_host_t **host);
int server_reload(tern_server_t *srv);

/* ---- modules.c ---- */
int modules_init_host(tern_host_t *host, char *err, size_t errlen);
void modules_fini_host(tern_host_t *host);
/* Dispatches an iq to the host's handler for (scope, payload); returns
 * TERN_PASS when there is none. */
tern_handled_t modules_dispatch_iq(tern_host_t *host, tern_scope_t scope, tern_iq_t *iq);
void modules_add_stream_features(tern_host_t *host, struct tern_session *s, xml_node_t *features);
void modules_session_bound(tern_host_t *host, struct tern_session *s);
void modules_session_closed(tern_host_t *host, struct tern_session *s);
/* Runs the hooks of point; TERN_HANDLED if one took the stanza. */
tern_handled_t modules_run_hooks(tern_host_t *host, tern_hook_point_t point, tern_stanza_ev_t *ev);
static inline bool modules_have_hooks(const tern_host_t *host, tern_hook_point_t point)
{
    return host->stanza_hooks[point] != NULL;
}

/* ---- c2s.c ---- */
int c2s_listen(tern_server_t *srv, const char *addr, unsigned port, bool direct_tls, char *err,
               size_t errlen);
void c2s_close_listeners(tern_server_t *srv);
/* Sweeps timeouts (called every second). */
void c2s_sweep(tern_server_t *srv, uint64_t now_ms);
void c2s_shutdown_all(tern_server_t *srv);
/* Hands every session's output of this loop iteration to TLS and the
 * socket; runs from srv's check and prepare handles. */
void c2s_flush_corked(tern_server_t *srv);
/* Serialises st addressed to s and writes it. */
void c2s_send_stanza(struct tern_session *s, const xml_stanza_t *st);

/* ---- sm.c (session manager) ---- */
int sm_bind(struct tern_session *s, const char *resource, char **err_cond);
void sm_unbind(struct tern_session *s);
struct tern_session *sm_find_full(tern_host_t *host, const char *full);
sm_user_t *sm_find_user(tern_host_t *host, const char *bare);
/* Presence without 'to' from a bound session. Takes a reference on st. */
void sm_presence_broadcast(struct tern_session *s, xml_stanza_t *st);
void sm_note_directed_presence(struct tern_session *s, const jid_t *to, const char *type);

/* ---- router.c ---- */
/* Routes a stanza whose 'from' is set; to may be NULL (no 'to'). origin is
 * the local session that sent it, or NULL. st is borrowed. */
void router_route(tern_server_t *srv, xml_stanza_t *st, const jid_t *from, const jid_t *to,
                  struct tern_session *origin);
/* A stanza from a bound client session (from already stamped): OUTBOUND
 * hooks, then router_route. to may be NULL. st is borrowed. */
void router_route_from_client(struct tern_session *s, xml_stanza_t *st, const jid_t *to);
/* Sends an error reply for st (never for type='error'). */
/* An iq result or error addressed to a host's domain: the answer to one
 * of this process's tern_iq_request calls, or nothing. st is borrowed. */
void router_iq_answer(tern_server_t *srv, xml_stanza_t *st, const jid_t *from);
/* Every request past its time gets its NULL answer (now_ms: loop time);
 * with all set, every request does (shutdown). */
void router_iq_expire(tern_server_t *srv, uint64_t now_ms, bool all);
void router_bounce(tern_server_t *srv, const xml_stanza_t *st, const char *type,
                   const char *condition, const char *text);
/* Builds the error reply without routing it; NULL for type='error'. */
xml_stanza_t *stanza_error_reply(const xml_stanza_t *st, const char *type, const char *condition,
                                 const char *text);

/* ---- modules.c: nonzas ---- */
/* Runs every module handler registered for el's (namespace, name) on an
 * authenticated stream; TERN_PASS when none handled it. */
tern_handled_t modules_dispatch_nonza(tern_host_t *host, struct tern_session *s, xml_node_t *el);

#endif
