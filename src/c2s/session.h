/* SPDX-License-Identifier: MIT
 * session.h - one client connection and the session it carries.
 *
 * A tern_session_t is the c2s connection (socket, TLS, parser, output
 * queue, authentication state) and, once bound, the session the session
 * manager routes to. It is refcounted: the connection holds one reference
 * until libuv has closed the socket, and anything that answers later
 * (storage jobs, module handlers) holds its own. Memory is released when
 * the last reference goes; before that a closed session just drops output.
 */
#ifndef TERN_C2S_SESSION_H
#define TERN_C2S_SESSION_H

#include <netinet/in.h>

#include "../server.h"

typedef enum {
    C2S_WAIT_HEADER = 0, /* waiting for <stream:stream> */
    C2S_OPEN,            /* features sent, negotiating or bound */
    C2S_CLOSING,         /* stream closed by us; flushing */
    C2S_CLOSED,          /* socket closed or closing */
    /* XEP-0198: the connection is gone but the session stays bound and
     * available, queueing what it is sent, until the client resumes it on
     * a new connection or the resumption timeout ends it (stream_mgmt.c).
     * Socket, TLS and parser are released. */
    C2S_HIBERNATED,
} c2s_state_t;

typedef struct sm_state sm_state_t;

/* A transport that frames the XML stream differently from TCP: WebSocket
 * (RFC 7395, src/http/websocket.c) or BOSH (XEP-0206, src/http/bosh.c).
 * The c2s layer keeps the stream state machine, SASL and routing; the
 * transport only changes how the stream looks on the wire. */
typedef struct c2s_framing {
    const char *name;
    /* Bytes from the connection (after TLS); NULL when the transport feeds
     * c2s_stream_input itself (BOSH). */
    void (*input)(tern_session_t *s, const char *data, size_t len);
    /* Instead of our <stream:stream> header. */
    void (*header)(tern_session_t *s, const char *id, const char *from, const char *lang);
    /* The corked output: complete top-level elements as the c2s layer
     * serialises them (see xml/frame.h). */
    void (*output)(tern_session_t *s, const char *data, size_t len);
    /* Instead of </stream:stream>; output before it has been flushed. */
    void (*end)(tern_session_t *s);
    /* Socketless transports: the session's connection is gone (closed or
     * hibernated); let go of everything that refers to it. */
    void (*close)(tern_session_t *s);
    /* Socketless: the session leaves for worker `to` / has arrived. */
    /* false: not now (try again at the next flush). */
    bool (*migrate)(tern_session_t *s, unsigned to);
    void (*adopted)(tern_session_t *s);
    /* Frees s->xport and sets it to NULL. */
    void (*free)(tern_session_t *s);
} c2s_framing_t;

typedef struct directed_presence {
    char *jid;
    struct directed_presence *next;
} directed_presence_t;

struct tern_session {
    uv_tcp_t tcp;
    tern_server_t *srv;
    tern_host_t *host;
    uint64_t id;
    char tag[24];
    char ip[INET6_ADDRSTRLEN];
    int refs;
    c2s_state_t state;
    bool secure; /* TLS established */
    bool direct_tls;
    bool header_sent; /* our <stream:stream> went out */
    bool authenticated;
    bool bound;
    bool available; /* sent initial presence */
    bool paused;    /* waiting on async work; input held */
    bool writing;   /* a uv_write is in flight */
    bool counted_ip;
    bool in_close_wait;   /* socket shutdown requested after flush */
    bool auth_busy;       /* a SASL step waits on storage or a worker */
    bool parser_idle;     /* parser hibernated since the last read */
    bool ending;          /* c2s_close under way: a lost write does not hibernate */
    bool client_inactive; /* XEP-0352 <inactive/> (tern_session_set_inactive) */
    int pending_action;   /* what a parser callback asked for (c2s.c) */

    tls_conn_t *tls;
    xml_parser_t *parser;

    /* Web transports (NULL for TCP). A socketless session (BOSH) has no
     * tcp handle: its input and output travel in HTTP requests. */
    const c2s_framing_t *framing;
    void *xport; /* the transport's state, owned */
    bool socketless;

    /* Output: bytes not yet handed to the kernel. */
    char *out;
    size_t out_len, out_cap;
    char *inflight;
    size_t inflight_len;
    uv_write_t wreq;

    /* Output of this loop iteration not yet handed to TLS or the socket
     * (see c2s_flush_corked): several stanzas for one client leave as one
     * TLS record and one write. */
    char *cork;
    size_t cork_len, cork_cap;
    bool corked; /* on srv->cork_list */
    struct tern_session *next_cork;

    /* Moving to the worker that owns the account (shard.h): the target,
     * or -1; set at SASL success, done once the output has drained. */
    int migrate_to;
    bool migrating; /* handle closing; the session is in transit */
    int migrate_fd;

    /* Input held while paused (plaintext after the stanza that paused). */
    char *held;
    size_t held_len;

    uint64_t last_rx_ms;
    uint64_t opened_ms;
    uint64_t closing_ms;

    /* SASL */
    scram_server_t *scram;
    char *sasl_mech;
    char *auth_user; /* normalised localpart under negotiation */
    unsigned auth_failures;
    unsigned char cb_exporter[32];
    size_t cb_exporter_len;
    unsigned char cb_endpoint[64];
    size_t cb_endpoint_len;

    /* Identity, once bound. */
    jid_t jid;
    char *full; /* "local@domain/resource" */
    char *bare;
    char *lang;

    int priority;
    xml_stanza_t *presence; /* last broadcast presence, or NULL */
    directed_presence_t *directed;
    void **slots;                       /* per-module data (tern_session_get), host->nslots long */
    struct tern_session *next_resource; /* within sm_user_t */
    struct tern_session *next_all, *prev_all; /* srv->all_sessions */

    /* XEP-0198 state once the client enabled stream management (owned,
     * stream_mgmt.c); it follows the session when another connection
     * resumes it. */
    sm_state_t *sm;
    uint64_t hibernated_ms; /* when the connection was lost (C2S_HIBERNATED) */
};

/* Holds input while asynchronous work for this stream runs (key
 * derivation, storage); resume re-feeds what arrived meanwhile. */
void c2s_session_pause(tern_session_t *s);
void c2s_session_resume(tern_session_t *s);

/* ---- transports (src/http) ---- */
/* A new session for a web transport from address ip, counted and on the
 * sweep list, its parser waiting for a header; NULL (nothing to undo)
 * when the address has too many connections. The caller sets framing and
 * xport and, for a socketed one, calls c2s_attach_socket. */
tern_session_t *c2s_session_new(tern_server_t *srv, const char *ip, const char *kind);
/* Gives the session the socket fd (and TLS state, owned from now on) of an
 * HTTP connection that upgraded; starts reading. Returns 0 or -1 (then
 * the session is closed). */
int c2s_attach_socket(tern_session_t *s, int fd, tls_conn_t *tls);
/* Bytes for the connection (after framing): through TLS if any. */
void c2s_write_wire(tern_session_t *s, const char *data, size_t len);
/* Plaintext from the connection: through the framing's input if any. */
void c2s_input(tern_session_t *s, const char *data, size_t len);
/* XML stream bytes for the parser (a transport's decoded input). */
void c2s_stream_input(tern_session_t *s, const char *data, size_t len);
/* The connection is gone without a goodbye (hibernates a resumable
 * session, like a lost TCP connection). */
void c2s_lost(tern_session_t *s);

/* Stream primitives shared by c2s.c and auth.c. */
void c2s_close(tern_session_t *s, const char *cond, const char *text);
void c2s_send_str(tern_session_t *s, const char *str);
void c2s_send_raw(tern_session_t *s, const char *data, size_t len);
/* After SASL success: the client opens a new stream on the same socket. */
void c2s_restart_stream(tern_session_t *s);
/* The mechanisms and channel-binding types offered on this stream, as
 * NULL-terminated static arrays (XEP-0474 hashes exactly these). */
void c2s_offered_mechs(const tern_session_t *s, const char *const **mechs, const char *const **cbs);
bool c2s_may_authenticate(const tern_session_t *s);

/* Bytes accepted for this client but not yet taken by the kernel. */
size_t c2s_queued_bytes(const tern_session_t *s);
/* Whether new stanzas for this client should be refused rather than
 * queued: the queue is past half of max_output_buffer. */
bool c2s_congested(const tern_session_t *s);

/* Hands an authenticated connection to the worker owning its account
 * when that is not this one (after <success/> has been written). */
void c2s_plan_migration(tern_session_t *s);
/* Runs on the receiving worker: takes over the session (and its
 * reference) and the socket fd, and resumes its input. */
void c2s_adopt(tern_server_t *srv, tern_session_t *s, int fd);

/* auth.c */
void c2s_handle_sasl(tern_session_t *s, xml_node_t *el);

/* c2s_close with an application-specific condition element (serialised
 * XML, or NULL) after the defined one (RFC 6120 §4.9.4). */
void c2s_close_ext(tern_session_t *s, const char *cond, const char *text, const char *app_xml);
/* XEP-0198 §5: connection n, authenticated as o's account and not bound,
 * takes over o's bound session: identity, presence, module data and the
 * stream management state move to n, which becomes bound in o's place;
 * o's connection (if it still has one) is closed with a conflict error. */
void c2s_take_over(tern_session_t *n, tern_session_t *o);
/* Makes sure c2s_flush_corked visits s at the end of this loop iteration
 * (where it may be closed safely, outside any routing loop). */
void c2s_schedule_flush(tern_session_t *s);

/* ---- stream_mgmt.c: XEP-0198 Stream Management ---- */
/* A top-level element in urn:xmpp:sm:3 (enable, resume, r, a). */
void c2s_sm_handle(tern_session_t *s, xml_node_t *el);
/* A stanza from the client has been handled (counts toward our h). */
void c2s_sm_count_inbound(tern_session_t *s);
/* Takes buf (malloc'd, one serialised stanza sent to s) into the unacked
 * queue of a session with stream management enabled. */
void c2s_sm_track(tern_session_t *s, char *buf, size_t len);
/* Enabled with resumption: a lost connection hibernates the session. */
bool c2s_sm_resumable(const tern_session_t *s);
/* Seconds a hibernated session waits for its client. */
unsigned c2s_sm_resume_timeout(const tern_session_t *s);
/* The unacked queue went past sm_max_unacked: the session must end. */
bool c2s_sm_overflowed(const tern_session_t *s);
/* Called every second for an open session: asks for an ack when some
 * are due and none is outstanding. */
void c2s_sm_sweep(tern_session_t *s);
/* After the session left the session manager for good: what the client
 * never acknowledged is treated as undeliverable (re-routed or bounced),
 * then the state is freed. */
void c2s_sm_session_ended(tern_session_t *s);
/* Frees the state without re-routing (last reference gone). */
void c2s_sm_free(tern_session_t *s);

#endif
