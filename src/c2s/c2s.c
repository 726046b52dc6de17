/* SPDX-License-Identifier: MIT
 * c2s.c - client-to-server connections: sockets, TLS, the XML stream state
 * machine (RFC 6120 §4-§7: header, features, STARTTLS, SASL, binding) and
 * the output queue.
 *
 * Everything here runs on the loop thread. Input flows socket -> (TLS) ->
 * expat parser -> on_stanza; stanzas of a bound session go to the router.
 * Output is written with uv_try_write first, so the common case copies
 * nothing; what the kernel does not take is queued, and a client whose
 * queue exceeds max_output_buffer is cut off instead of growing the server.
 * An idle connection owns no buffers: reads use the server's shared
 * scratch, and queues are freed as soon as they drain.
 */
#include "session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/common.h"
#include "../core/log.h"
#include "../shard.h"
#include "../xml/ns.h"

struct c2s_listener {
    uv_tcp_t tcp;
    tern_server_t *srv;
    bool direct_tls;
    struct c2s_listener *next;
};

typedef enum { ACT_NONE = 0, ACT_RESTART, ACT_STARTTLS, ACT_PAUSE } c2s_action_t;

/* Open connections per source address; the map key points into it. */
typedef struct {
    unsigned n;
    char ip[INET6_ADDRSTRLEN];
} ip_count_t;

/* Corked output is handed on at once past one TLS record's worth, and a
 * cork buffer grown past 4 KB is freed once flushed. */
#define CORK_FLUSH_AT 16384
#define CORK_KEEP_MAX 4096

static void hard_close(tern_session_t *s);
static void try_migrate(tern_session_t *s);
static void send_raw(tern_session_t *s, const char *data, size_t len);
static void read_start(tern_session_t *s);
static void on_stream_open(void *ud, const char *name, const char *ns, const char **attrs);
static void on_stanza(void *ud, xml_stanza_t *st);
static void on_stream_close(void *ud);
static void drain_tls(tern_session_t *s);

static const xml_parser_cb_t parser_cb = {on_stream_open, on_stanza, on_stream_close};

/* ------------------------------------------------------------------ */
/* reference counting and teardown                                     */

tern_session_t *tern_session_ref(tern_session_t *s)
{
    s->refs++;
    return s;
}

void tern_session_unref(tern_session_t *s)
{
    if (--s->refs > 0)
        return;
    c2s_sm_free(s);
    if (s->framing && s->xport)
        s->framing->free(s);
    if (s->tls)
        tls_conn_free(s->tls);
    if (s->parser)
        xml_parser_free(s->parser);
    if (s->scram)
        scram_server_free(s->scram);
    free(s->sasl_mech);
    free(s->auth_user);
    free(s->out);
    free(s->cork);
    free(s->inflight);
    free(s->held);
    free(s->full);
    free(s->bare);
    free(s->lang);
    free(s->slots);
    jid_clear(&s->jid);
    if (s->presence)
        xml_stanza_unref(s->presence);
    for (directed_presence_t *d = s->directed, *n; d; d = n) {
        n = d->next;
        free(d->jid);
        free(d);
    }
    free(s);
}

static void on_closed(uv_handle_t *h)
{
    tern_session_t *s = h->data;
    tern_session_unref(s);
}

/* Leaves the session manager (presence unavailable, hooks) exactly once. */
static void session_end(tern_session_t *s)
{
    if (s->bound) {
        sm_unbind(s);
        s->bound = false;
    }
    /* Only now, with the session gone from the maps, can what the client
     * never acknowledged be routed to the account's other resources. */
    if (s->sm)
        c2s_sm_session_ended(s);
}

/* Puts s on its worker's list of connections (the sweep's). */
static void link_all(tern_session_t *s)
{
    tern_server_t *srv = s->srv;
    s->prev_all = NULL;
    s->next_all = srv->all_sessions;
    if (srv->all_sessions)
        srv->all_sessions->prev_all = s;
    srv->all_sessions = s;
    srv->nsessions++;
}

static void unlink_all(tern_session_t *s)
{
    tern_server_t *srv = s->srv;
    if (s->prev_all)
        s->prev_all->next_all = s->next_all;
    else if (srv->all_sessions == s)
        srv->all_sessions = s->next_all;
    if (s->next_all)
        s->next_all->prev_all = s->prev_all;
    s->next_all = s->prev_all = NULL;
    srv->nsessions--;
}

/* Counts a connection from s->ip in the process-wide table (worker 0's);
 * returns how many were open before it. */
static unsigned count_ip(tern_session_t *s)
{
    tern_server_t *t = shard_server(s->srv, 0);
    pthread_mutex_lock(&t->conns_mu);
    ip_count_t *c = hashmap_get(&t->conns_per_ip, s->ip);
    if (!c) {
        c = tern_xcalloc(1, sizeof(*c));
        memcpy(c->ip, s->ip, sizeof(c->ip));
        hashmap_put(&t->conns_per_ip, c->ip, c);
    }
    unsigned n = c->n++;
    pthread_mutex_unlock(&t->conns_mu);
    s->counted_ip = true;
    return n;
}

static void uncount_ip(tern_session_t *s)
{
    if (!s->counted_ip)
        return;
    tern_server_t *t = shard_server(s->srv, 0);
    pthread_mutex_lock(&t->conns_mu);
    ip_count_t *c = hashmap_get(&t->conns_per_ip, s->ip);
    if (c && --c->n == 0) {
        hashmap_del(&t->conns_per_ip, s->ip);
        free(c);
    }
    pthread_mutex_unlock(&t->conns_mu);
    s->counted_ip = false;
}

/* The connection of a resumable session is gone (XEP-0198 §5): socket,
 * TLS and parser go, the session stays bound and available and queues
 * what it is sent until c2s_take_over or the sweep's expiry. */
static void hibernated(tern_session_t *s)
{
    /* Outside every callback of the connection now: nothing is inside
     * the parser or TLS any more. */
    if (s->tls) {
        tls_conn_free(s->tls);
        s->tls = NULL;
    }
    if (s->parser) {
        xml_parser_free(s->parser);
        s->parser = NULL;
    }
    if (s->scram) {
        scram_server_free(s->scram);
        s->scram = NULL;
    }
    free(s->out);
    s->out = NULL;
    s->out_len = s->out_cap = 0;
    free(s->cork);
    s->cork = NULL;
    s->cork_len = s->cork_cap = 0;
    free(s->held);
    s->held = NULL;
    s->held_len = 0;
    if (s->framing && s->xport)
        s->framing->free(s);
    tern_session_unref(s); /* the connection's reference */
}

static void on_hibernated(uv_handle_t *h)
{
    hibernated(h->data);
}

static void hibernate(tern_session_t *s)
{
    log_info(s->tag, "connection lost: %s waits %us for resumption", s->full,
             c2s_sm_resume_timeout(s));
    s->state = C2S_HIBERNATED;
    s->hibernated_ms = uv_now(s->srv->loop);
    /* The stanzas in these are in the unacked queue. */
    s->cork_len = 0;
    free(s->out);
    s->out = NULL;
    s->out_len = s->out_cap = 0;
    s->paused = false;
    s->in_close_wait = false;
    if (s->parser)
        xml_parser_stop(s->parser);
    uncount_ip(s);
    /* The hibernation reference: dropped by hibernation_end or when a
     * new connection takes the session over. The session stays on the
     * sweep list, which expires it. */
    tern_session_ref(s);
    if (s->socketless) {
        s->framing->close(s);
        hibernated(s);
        return;
    }
    uv_close((uv_handle_t *)&s->tcp, on_hibernated);
}

/* A hibernated session that will not be resumed ends like a closed one. */
static void hibernation_end(tern_session_t *s)
{
    if (s->state != C2S_HIBERNATED)
        return;
    log_info(s->tag, "%s not resumed: session ended", s->full ? s->full : "session");
    s->state = C2S_CLOSED;
    session_end(s);
    unlink_all(s);
    tern_session_unref(s); /* the hibernation reference */
}

static void hard_close(tern_session_t *s)
{
    if (s->state >= C2S_CLOSED || (!s->socketless && uv_is_closing((uv_handle_t *)&s->tcp)))
        return;
    if (s->state == C2S_OPEN && !s->ending && c2s_sm_resumable(s) && !s->srv->shutting_down) {
        hibernate(s);
        return;
    }
    s->state = C2S_CLOSED;
    s->cork_len = 0;
    session_end(s);
    if (s->parser)
        xml_parser_stop(s->parser);
    unlink_all(s);
    uncount_ip(s);
    if (s->socketless) {
        s->framing->close(s);
        tern_session_unref(s); /* the connection's reference */
        return;
    }
    uv_close((uv_handle_t *)&s->tcp, on_closed);
}

void c2s_lost(tern_session_t *s)
{
    hard_close(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    tern_session_t *s = req->data;
    free(req);
    /* Keep reading until the peer closes too (or the sweep gives up), so
     * the stream error is not lost to a reset. */
    if (status < 0)
        hard_close(s);
    tern_session_unref(s);
}

static void begin_shutdown(tern_session_t *s)
{
    if (s->state >= C2S_CLOSED)
        return;
    if (s->socketless) {
        /* The transport has the last words (BOSH: a terminate body). */
        hard_close(s);
        return;
    }
    uv_shutdown_t *req = tern_xmalloc(sizeof(*req));
    req->data = tern_session_ref(s);
    if (uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown) != 0) {
        free(req);
        tern_session_unref(s);
        hard_close(s);
    }
}

/* ------------------------------------------------------------------ */
/* output                                                              */

static void start_write(tern_session_t *s);

static void on_write(uv_write_t *req, int status)
{
    tern_session_t *s = req->data;
    free(s->inflight);
    s->inflight = NULL;
    s->inflight_len = 0;
    s->writing = false;
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug(s->tag, "write failed: %s", uv_strerror(status));
        hard_close(s);
    } else if (s->state >= C2S_CLOSED) {
        /* nothing */
    } else if (s->out_len) {
        start_write(s);
    } else if (s->migrate_to >= 0) {
        try_migrate(s);
    } else if (s->in_close_wait) {
        s->in_close_wait = false;
        begin_shutdown(s);
    }
    tern_session_unref(s);
}

static void start_write(tern_session_t *s)
{
    uv_buf_t b = uv_buf_init(s->out, (unsigned)s->out_len);
    s->inflight = s->out;
    s->inflight_len = s->out_len;
    s->out = NULL;
    s->out_len = s->out_cap = 0;
    s->writing = true;
    s->wreq.data = tern_session_ref(s);
    int r = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (r < 0) {
        s->writing = false;
        free(s->inflight);
        s->inflight = NULL;
        s->inflight_len = 0;
        tern_session_unref(s);
        hard_close(s);
    }
}

static void write_bytes(tern_session_t *s, const char *data, size_t len)
{
    if (s->state >= C2S_CLOSED || len == 0)
        return;
    if (!s->writing && s->out_len == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (r >= 0 && (size_t)r == len)
            return;
        if (r < 0 && r != UV_EAGAIN) {
            log_debug(s->tag, "write failed: %s", uv_strerror(r));
            hard_close(s);
            return;
        }
        if (r > 0) {
            data += r;
            len -= (size_t)r;
        }
    }
    if (s->out_len + len > s->srv->cfg->max_output_buffer) {
        /* A peer that does not read must not make us buffer without
         * bound; its stream cannot carry an error any more, so drop it. */
        log_warn(s->tag, "output queue over %zu bytes: closing slow client",
                 s->srv->cfg->max_output_buffer);
        hard_close(s);
        return;
    }
    if (s->out_len + len > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap < s->out_len + len)
            cap *= 2;
        s->out = tern_xrealloc(s->out, cap);
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, data, len);
    s->out_len += len;
    if (!s->writing)
        start_write(s);
}

size_t c2s_queued_bytes(const tern_session_t *s)
{
    /* A hibernated session's socket is gone; what it is sent waits in the
     * unacked queue, bounded by sm_max_unacked, not by these bytes. */
    if (s->state == C2S_HIBERNATED)
        return 0;
    return s->cork_len + s->out_len + s->inflight_len;
}

bool c2s_congested(const tern_session_t *s)
{
    return c2s_queued_bytes(s) > s->srv->cfg->max_output_buffer / 2;
}

static void flush_tls(tern_session_t *s)
{
    char buf[16384];
    size_t n;
    while (s->tls && s->state < C2S_CLOSED && (n = tls_conn_out_read(s->tls, buf, sizeof(buf))) > 0)
        write_bytes(s, buf, n);
}

/* Moves the corked output on: through TLS when the stream has it, then to
 * the socket (or its queue). */
static void flush_cork(tern_session_t *s)
{
    if (s->cork_len == 0 || s->state >= C2S_CLOSED) {
        s->cork_len = 0;
        return;
    }
    size_t len = s->cork_len;
    s->cork_len = 0;
    if (s->framing)
        s->framing->output(s, s->cork, len);
    else
        c2s_write_wire(s, s->cork, len);
    /* A burst's buffer is not kept for an idle connection. */
    if (s->cork_cap > CORK_KEEP_MAX) {
        free(s->cork);
        s->cork = NULL;
        s->cork_cap = 0;
    }
}

void c2s_write_wire(tern_session_t *s, const char *data, size_t len)
{
    if (s->state >= C2S_CLOSED)
        return;
    if (s->tls) {
        if (tls_conn_write(s->tls, data, len) == TLS_ERROR) {
            hard_close(s);
            return;
        }
        flush_tls(s);
    } else {
        write_bytes(s, data, len);
    }
}

void c2s_flush_corked(tern_server_t *srv)
{
    tern_session_t *s;
    /* Flushing can close a session, whose unavailable presence corks
     * output for others: they join the list and are flushed too. */
    while ((s = srv->cork_list) != NULL) {
        srv->cork_list = s->next_cork;
        s->next_cork = NULL;
        s->corked = false;
        flush_cork(s);
        if (s->migrate_to >= 0)
            try_migrate(s);
        if (s->sm && c2s_sm_overflowed(s)) {
            /* XEP-0198 leaves the reaction to the server. A client that
             * is connected and does not acknowledge is breaking the
             * stream's rules (policy-violation); a hibernated session
             * cannot be told anything and simply ends, its queue
             * re-routed as undeliverable. */
            if (s->state == C2S_HIBERNATED)
                hibernation_end(s);
            else
                c2s_close(s, "policy-violation", "too many unacknowledged stanzas");
        }
        tern_session_unref(s);
    }
}

void c2s_schedule_flush(tern_session_t *s)
{
    if (s->corked)
        return;
    s->corked = true;
    s->next_cork = s->srv->cork_list;
    s->srv->cork_list = tern_session_ref(s);
}

static void send_raw(tern_session_t *s, const char *data, size_t len)
{
    if (s->state >= C2S_CLOSED || len == 0)
        return;
    if (s->cork_cap - s->cork_len < len) {
        size_t cap = s->cork_cap ? s->cork_cap : 1024;
        while (cap - s->cork_len < len)
            cap *= 2;
        s->cork = tern_xrealloc(s->cork, cap);
        s->cork_cap = cap;
    }
    memcpy(s->cork + s->cork_len, data, len);
    s->cork_len += len;
    if (!s->corked) {
        s->corked = true;
        s->next_cork = s->srv->cork_list;
        s->srv->cork_list = tern_session_ref(s);
    }
    /* A full TLS record's worth goes out now rather than growing. */
    if (s->cork_len >= CORK_FLUSH_AT)
        flush_cork(s);
}

static void send_str(tern_session_t *s, const char *str)
{
    send_raw(s, str, strlen(str));
}

void c2s_send_stanza(tern_session_t *s, const xml_stanza_t *st)
{
    bool hibernated = s->state == C2S_HIBERNATED && s->sm;
    if (s->state != C2S_OPEN && !hibernated)
        return;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (xml_stanza_serialize(st, NS_CLIENT, &buf, &len, &cap) != 0) {
        free(buf);
        return;
    }
    send_raw(s, buf, len); /* no-op while hibernated */
    if (s->sm)
        c2s_sm_track(s, buf, len); /* takes buf */
    else
        free(buf);
}

void tern_session_send(tern_session_t *s, const xml_stanza_t *st)
{
    c2s_send_stanza(s, st);
}

/* ------------------------------------------------------------------ */
/* stream header and errors                                            */

static void append_escaped(char **buf, size_t *len, size_t *cap, const char *s)
{
    xml_escape_append(s, strlen(s), buf, len, cap);
}

static void append_lit(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        *buf = tern_xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0'; /* callers may use the buffer as a C string */
}

/* to_jid: the client's 'from', echoed as 'to' (RFC 6120 §4.7.2) when it
 * was a valid JID; NULL otherwise. */
static void send_header(tern_session_t *s, const char *from_domain, const char *to_jid)
{
    unsigned char rnd[12];
    char id[25];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    s->header_sent = true;
    if (s->framing) {
        s->framing->header(s, id, from_domain, s->lang ? s->lang : "en");
        return;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append_lit(&buf, &len, &cap,
               "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAM
               "' version='1.0' id='");
    append_lit(&buf, &len, &cap, id);
    append_lit(&buf, &len, &cap, "' from='");
    append_escaped(&buf, &len, &cap, from_domain);
    if (to_jid) {
        append_lit(&buf, &len, &cap, "' to='");
        append_escaped(&buf, &len, &cap, to_jid);
    }
    append_lit(&buf, &len, &cap, "' xml:lang='");
    append_escaped(&buf, &len, &cap, s->lang ? s->lang : "en");
    append_lit(&buf, &len, &cap, "'>");
    send_raw(s, buf, len);
    free(buf);
    s->header_sent = true;
}

/* </stream:stream>, or what the transport has instead. */
static void send_stream_end(tern_session_t *s)
{
    if (s->framing) {
        flush_cork(s);
        s->framing->end(s);
    } else {
        send_str(s, "</stream:stream>");
    }
}

/* Closes the stream with an optional RFC 6120 §4.9.3 condition. */
void c2s_close(tern_session_t *s, const char *cond, const char *text)
{
    c2s_close_ext(s, cond, text, NULL);
}

void c2s_close_ext(tern_session_t *s, const char *cond, const char *text, const char *app_xml)
{
    if (s->state == C2S_HIBERNATED) {
        /* Closing a session without a connection (replaced by a new bind
         * of its resource, shutdown) ends it. */
        hibernation_end(s);
        return;
    }
    if (s->state >= C2S_CLOSING)
        return;
    /* The server ends the session: a write failing below must not turn
     * this into a resumable loss of connection. */
    s->ending = true;
    if (cond)
        log_info(s->tag, "stream error: %s%s%s", cond, text ? " - " : "", text ? text : "");
    if (!s->header_sent && cond)
        send_header(s, s->host ? s->host->domain : s->srv->hosts[0].domain, NULL);
    /* Every write below may fail and close the socket under us (the peer
     * may be gone); from then on only the return further down applies. */
    if (cond && s->state != C2S_CLOSED) {
        char *buf = NULL;
        size_t len = 0, cap = 0;
        append_lit(&buf, &len, &cap, "<stream:error><");
        append_lit(&buf, &len, &cap, cond);
        append_lit(&buf, &len, &cap, " xmlns='" NS_STREAMS "'/>");
        if (text) {
            append_lit(&buf, &len, &cap, "<text xmlns='" NS_STREAMS "' xml:lang='en'>");
            append_escaped(&buf, &len, &cap, text);
            append_lit(&buf, &len, &cap, "</text>");
        }
        if (app_xml)
            append_lit(&buf, &len, &cap, app_xml);
        append_lit(&buf, &len, &cap, "</stream:error>");
        send_raw(s, buf, len);
        free(buf);
    }
    if (s->header_sent)
        send_stream_end(s);
    flush_cork(s);
    if (s->tls && s->state != C2S_CLOSED) {
        tls_conn_shutdown(s->tls);
        flush_tls(s);
    }
    if (s->state == C2S_CLOSED)
        return;
    s->state = C2S_CLOSING;
    s->closing_ms = uv_now(s->srv->loop);
    if (s->parser)
        xml_parser_stop(s->parser);
    session_end(s);
    if (s->writing || s->out_len)
        s->in_close_wait = true;
    else
        begin_shutdown(s);
}

void tern_session_close(tern_session_t *s, const char *stream_error)
{
    c2s_close(s, stream_error, NULL);
}

bool tern_session_is_open(const tern_session_t *s)
{
    /* A hibernated session counts as open: what is sent to it is kept for
     * its client (XEP-0198), like output queued for a slow reader. */
    return s->state == C2S_OPEN || s->state == C2S_HIBERNATED;
}

bool tern_session_is_secure(const tern_session_t *s)
{
    return s->secure;
}

bool tern_session_is_authenticated(const tern_session_t *s)
{
    return s->authenticated;
}

const jid_t *tern_session_jid(const tern_session_t *s)
{
    return s->bound ? &s->jid : NULL;
}

const char *tern_session_ip(const tern_session_t *s)
{
    return s->ip;
}

/* ------------------------------------------------------------------ */
/* features                                                            */

static bool tls_allowed_before_auth(const tern_session_t *s)
{
    return s->secure || !s->srv->cfg->require_encryption;
}

bool c2s_may_authenticate(const tern_session_t *s)
{
    return tls_allowed_before_auth(s);
}

static const char *const mechs_tls[] = {"SCRAM-SHA-512-PLUS",
                                        "SCRAM-SHA-256-PLUS",
                                        "SCRAM-SHA-1-PLUS",
                                        "SCRAM-SHA-512",
                                        "SCRAM-SHA-256",
                                        "SCRAM-SHA-1",
                                        "PLAIN",
                                        NULL};
static const char *const mechs_proxied[] = {"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1",
                                            "PLAIN", NULL};
static const char *const mechs_clear[] = {"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", NULL};
static const char *const cbs_tls13[] = {"tls-exporter", "tls-server-end-point", NULL};
static const char *const cbs_tls12[] = {"tls-server-end-point", NULL};
static const char *const cbs_none[] = {NULL};

void c2s_offered_mechs(const tern_session_t *s, const char *const **mechs, const char *const **cbs)
{
    if (s->secure && s->tls) {
        *mechs = mechs_tls;
        *cbs = tls_conn_is_tls13(s->tls) ? cbs_tls13 : cbs_tls12;
    } else if (s->secure) {
        /* Encrypted by a proxy in front of the plain HTTP port: nothing to
         * bind to, but PLAIN is as safe as the proxy's TLS. */
        *mechs = mechs_proxied;
        *cbs = cbs_none;
    } else {
        *mechs = mechs_clear;
        *cbs = cbs_none;
    }
}

static void send_features(tern_session_t *s)
{
    xml_stanza_t *f = xml_stanza_new("features", NS_STREAM);
    xml_node_t *root = xml_stanza_root(f);
    const config_t *cfg = s->srv->cfg;
    char num[32];

    if (!s->authenticated) {
        if (!s->secure && !s->framing) {
            xml_node_t *tls = xml_node_add_child(root, "starttls", NS_TLS);
            if (cfg->require_encryption)
                xml_node_add_child(tls, "required", NS_TLS);
        }
        if (tls_allowed_before_auth(s)) {
            const char *const *mechs, *const *cbs;
            c2s_offered_mechs(s, &mechs, &cbs);
            xml_node_t *m = xml_node_add_child(root, "mechanisms", NS_SASL);
            for (size_t i = 0; mechs[i]; i++)
                xml_node_add_child_text(m, "mechanism", NS_SASL, mechs[i]);
            if (cbs[0]) {
                xml_node_t *cb = xml_node_add_child(root, "sasl-channel-binding", NS_SASL_CB);
                for (size_t i = 0; cbs[i]; i++)
                    xml_node_set_attr(xml_node_add_child(cb, "channel-binding", NS_SASL_CB), "type",
                                      cbs[i]);
            }
        }
    } else {
        xml_node_add_child(root, "bind", NS_BIND);
        xml_node_t *sess = xml_node_add_child(root, "session", NS_SESSION);
        xml_node_add_child(sess, "optional", NS_SESSION);
        xml_node_add_child(root, "sm", NS_SM); /* XEP-0198 §2 */
    }
    /* XEP-0478: tell the client the limits it will be held to. */
    xml_node_t *lim = xml_node_add_child(root, "limits", NS_STREAM_LIMITS);
    snprintf(num, sizeof(num), "%zu", cfg->max_stanza_size);
    xml_node_add_child_text(lim, "max-bytes", NS_STREAM_LIMITS, num);
    snprintf(num, sizeof(num), "%u", cfg->idle_timeout);
    xml_node_add_child_text(lim, "idle-seconds", NS_STREAM_LIMITS, num);

    if (s->host)
        modules_add_stream_features(s->host, s, root);

    char *buf = NULL;
    size_t len = 0, cap = 0;
    append_lit(&buf, &len, &cap, "<stream:features>");
    for (xml_node_t *c = root->children; c; c = c->next)
        xml_node_serialize(c, NS_STREAM, &buf, &len, &cap);
    append_lit(&buf, &len, &cap, "</stream:features>");
    send_raw(s, buf, len);
    free(buf);
    xml_stanza_unref(f);
}

/* ------------------------------------------------------------------ */
/* stream header                                                       */

static const char *attr_of(const char **attrs, const char *name)
{
    for (size_t i = 0; attrs && attrs[i]; i += 2)
        if (strcmp(attrs[i], name) == 0)
            return attrs[i + 1];
    return NULL;
}

static void on_stream_open(void *ud, const char *name, const char *ns, const char **attrs)
{
    tern_session_t *s = ud;
    tern_server_t *srv = s->srv;
    const char *to = attr_of(attrs, "to");
    const char *version = attr_of(attrs, "version");
    const char *lang = attr_of(attrs, "xml:lang");

    if (lang && strlen(lang) < 64 && !s->lang)
        s->lang = tern_xstrdup(lang);

    /* Pick the host first so that even the error header has a from. */
    tern_host_t *host = NULL;
    if (to) {
        char *dom = NULL;
        if (jid_prep_domain(to, &dom) == 0) {
            host = server_find_host(srv, dom);
            free(dom);
        }
    } else {
        host = s->host ? s->host : &srv->hosts[0];
    }
    if (s->host && host && host != s->host) {
        /* A restarted stream must stay on the host it authenticated to. */
        c2s_close(s, "host-unknown", "stream restarted with a different host");
        return;
    }

    const char *content_ns = attr_of(attrs, "xmlns");
    if (strcmp(name, "stream") != 0 || strcmp(ns, NS_STREAM) != 0 || !content_ns ||
        strcmp(content_ns, NS_CLIENT) != 0) {
        c2s_close(s, "invalid-namespace", NULL);
        return;
    }
    if (!host) {
        c2s_close(s, "host-unknown", NULL);
        return;
    }
    s->host = host;
    if (!version || strncmp(version, "1.", 2) != 0) {
        /* RFC 6120 §4.7.5: a missing version means 0.9, which we do not
         * speak; a major version other than 1 is unsupported. */
        c2s_close(s, "unsupported-version", NULL);
        return;
    }
    /* The client's claimed address is only echoed, never trusted: who it
     * is comes from SASL. */
    const char *from = attr_of(attrs, "from");
    jid_t from_jid = {0};
    char *echo = NULL;
    if (from && jid_parse(from, &from_jid) == 0)
        echo = jid_to_string(&from_jid);
    send_header(s, host->domain, echo);
    free(echo);
    jid_clear(&from_jid);
    send_features(s);
}

static void on_stream_close(void *ud)
{
    tern_session_t *s = ud;
    log_debug(s->tag, "client closed the stream");
    c2s_close(s, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* STARTTLS                                                            */

static void handle_starttls(tern_session_t *s)
{
    if (s->framing) {
        /* TLS for web transports is the HTTP connection's (wss, https). */
        c2s_close(s, "policy-violation", "STARTTLS is not offered on this transport");
        return;
    }
    if (s->secure || s->tls) {
        c2s_close(s, "policy-violation", "TLS already negotiated");
        return;
    }
    send_str(s, "<proceed xmlns='" NS_TLS "'/>");
    flush_cork(s); /* <proceed/> is the last plaintext */
    s->tls = tls_conn_new(s->srv->tls);
    if (!s->tls) {
        hard_close(s);
        return;
    }
    /* RFC 6120 §5.4.3.3: bytes that followed <starttls/> in the clear are
     * discarded (no STARTTLS command injection). */
    s->pending_action = ACT_STARTTLS;
    xml_parser_stop(s->parser);
}

void c2s_send_str(tern_session_t *s, const char *str)
{
    send_raw(s, str, strlen(str));
}

void c2s_send_raw(tern_session_t *s, const char *data, size_t len)
{
    send_raw(s, data, len);
}

void c2s_restart_stream(tern_session_t *s)
{
    s->header_sent = false;
    if (s->paused) {
        /* Not inside the parser: input held since the pause belongs to
         * the new stream, so reset right away. */
        if (xml_parser_reset(s->parser) != 0)
            hard_close(s);
        return;
    }
    s->pending_action = ACT_RESTART;
    xml_parser_stop(s->parser);
}

/* ------------------------------------------------------------------ */
/* binding                                                             */

static void iq_reply_raw(tern_session_t *s, const xml_node_t *iq, const char *payload_xml)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char *id = xml_node_attr(iq, "id");
    append_lit(&buf, &len, &cap, "<iq type='result' id='");
    append_escaped(&buf, &len, &cap, id ? id : "");
    append_lit(&buf, &len, &cap, "'>");
    if (payload_xml)
        append_lit(&buf, &len, &cap, payload_xml);
    append_lit(&buf, &len, &cap, "</iq>");
    send_raw(s, buf, len);
    /* A stanza like any other for the client's count (XEP-0198 §4). */
    if (s->sm)
        c2s_sm_track(s, buf, len);
    else
        free(buf);
}

static void iq_error_raw(tern_session_t *s, const xml_stanza_t *st, const char *type,
                         const char *cond)
{
    xml_stanza_t *err = stanza_error_reply(st, type, cond, NULL);
    if (err) {
        xml_node_set_attr(xml_stanza_root(err), "to", NULL);
        c2s_send_stanza(s, err);
        xml_stanza_unref(err);
    }
}

static void handle_bind(tern_session_t *s, xml_stanza_t *st, xml_node_t *bind)
{
    xml_node_t *iq = xml_stanza_root(st);
    const char *type = xml_node_attr(iq, "type");
    if (!type || strcmp(type, "set") != 0) {
        iq_error_raw(s, st, "modify", "bad-request");
        return;
    }
    if (s->bound) {
        iq_error_raw(s, st, "cancel", "not-allowed");
        return;
    }
    xml_node_t *res = xml_node_child(bind, "resource", NS_BIND);
    const char *want = res ? xml_node_text(res) : NULL;
    char *cond = NULL;
    if (sm_bind(s, want && *want ? want : NULL, &cond) != 0) {
        iq_error_raw(s, st, "modify", cond ? cond : "bad-request");
        return;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append_lit(&buf, &len, &cap, "<bind xmlns='" NS_BIND "'><jid>");
    append_escaped(&buf, &len, &cap, s->full);
    append_lit(&buf, &len, &cap, "</jid></bind>");
    iq_reply_raw(s, iq, buf);
    free(buf);
    log_info(s->tag, "bound %s", s->full);
    modules_session_bound(s->host, s);
}

/* ------------------------------------------------------------------ */
/* stanza dispatch                                                     */

static bool is_stanza_name(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

static void dispatch_preauth_iq(tern_session_t *s, xml_stanza_t *st)
{
    xml_node_t *iq = xml_stanza_root(st);
    const char *type = xml_node_attr(iq, "type");
    xml_node_t *payload = xml_node_first_element(iq);
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0) || !payload) {
        c2s_close(s, "not-authorized", NULL);
        return;
    }
    tern_iq_t q = {.host = s->host,
                   .stanza = st,
                   .payload = payload,
                   .session = s,
                   .is_set = strcmp(type, "set") == 0};
    if (!tls_allowed_before_auth(s) ||
        modules_dispatch_iq(s->host, TERN_SCOPE_PREAUTH, &q) != TERN_HANDLED)
        c2s_close(s, "not-authorized", NULL);
}

static void dispatch_bound(tern_session_t *s, xml_stanza_t *st)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *to = xml_node_attr(root, "to");
    jid_t to_jid = {0};
    if (to && jid_parse(to, &to_jid) != 0) {
        xml_node_set_attr(root, "from", s->full);
        xml_node_set_attr(root, "to", NULL);
        xml_stanza_t *err = stanza_error_reply(st, "modify", "jid-malformed", NULL);
        if (err) {
            c2s_send_stanza(s, err);
            xml_stanza_unref(err);
        }
        return;
    }
    /* RFC 6120 §8.1.2.1: the server stamps the sender's full JID. */
    xml_node_set_attr(root, "from", s->full);
    router_route_from_client(s, st, to ? &to_jid : NULL);
    jid_clear(&to_jid);
}

static void on_stanza(void *ud, xml_stanza_t *st)
{
    tern_session_t *s = ud;
    xml_node_t *root = xml_stanza_root(st);
    if (s->state != C2S_OPEN) {
        xml_stanza_unref(st);
        return;
    }
    if (strcmp(root->ns, NS_TLS) == 0 && strcmp(root->name, "starttls") == 0) {
        handle_starttls(s);
    } else if (strcmp(root->ns, NS_SASL) == 0) {
        c2s_handle_sasl(s, root);
    } else if (strcmp(root->ns, NS_SM) == 0) {
        c2s_sm_handle(s, root);
    } else if (strcmp(root->ns, NS_CLIENT) != 0 || !is_stanza_name(root->name)) {
        /* Nonzas of modules (XEP-0352 CSI...) on an authenticated stream. */
        if (!s->authenticated || modules_dispatch_nonza(s->host, s, root) != TERN_HANDLED) {
            log_debug(s->tag, "unexpected element {%s}%s", root->ns, root->name);
            c2s_close(s, "unsupported-stanza-type", NULL);
        }
    } else if (!s->authenticated) {
        if (strcmp(root->name, "iq") == 0)
            dispatch_preauth_iq(s, st);
        else
            c2s_close(s, "not-authorized", NULL);
    } else if (!s->bound) {
        xml_node_t *payload = xml_node_first_element(root);
        if (strcmp(root->name, "iq") == 0 && payload && xml_node_is(payload, "bind", NS_BIND))
            handle_bind(s, st, payload);
        else if (strcmp(root->name, "iq") == 0 && payload &&
                 xml_node_is(payload, "session", NS_SESSION))
            iq_reply_raw(s, root, NULL);
        else
            c2s_close(s, "not-authorized", "bind a resource first");
    } else {
        xml_node_t *payload = xml_node_first_element(root);
        if (strcmp(root->name, "iq") == 0 && payload &&
            xml_node_is(payload, "session", NS_SESSION) && !xml_node_attr(root, "to"))
            iq_reply_raw(s, root, NULL); /* legacy session: a no-op now */
        else if (strcmp(root->name, "iq") == 0 && payload && xml_node_is(payload, "bind", NS_BIND))
            iq_error_raw(s, st, "cancel", "not-allowed");
        else
            dispatch_bound(s, st);
        /* XEP-0198 §4: every stanza the server has processed counts,
         * whatever became of it. */
        if (s->sm)
            c2s_sm_count_inbound(s);
    }
    xml_stanza_unref(st);
}

/* ------------------------------------------------------------------ */
/* input                                                               */

static void hold_input(tern_session_t *s, const char *data, size_t len)
{
    if (!len)
        return;
    s->held = tern_xrealloc(s->held, s->held_len + len);
    memcpy(s->held + s->held_len, data, len);
    s->held_len += len;
}

void c2s_input(tern_session_t *s, const char *data, size_t len)
{
    if (s->framing && s->framing->input)
        s->framing->input(s, data, len);
    else
        c2s_stream_input(s, data, len);
}

void c2s_stream_input(tern_session_t *s, const char *data, size_t len)
{
    while (len > 0 && s->state == C2S_OPEN) {
        if (s->paused) {
            hold_input(s, data, len);
            return;
        }
        size_t consumed = len;
        xml_parse_status_t st = xml_parser_feed(s->parser, data, len, &consumed);
        switch (st) {
        case XML_PARSE_OK:
            return;
        case XML_PARSE_STOPPED: {
            if (consumed > len)
                consumed = len;
            data += consumed;
            len -= consumed;
            c2s_action_t act = s->pending_action;
            s->pending_action = ACT_NONE;
            if (act == ACT_RESTART) {
                if (xml_parser_reset(s->parser) != 0) {
                    hard_close(s);
                    return;
                }
                continue;
            }
            if (act == ACT_STARTTLS) {
                if (xml_parser_reset(s->parser) != 0)
                    hard_close(s);
                return; /* plaintext after <starttls/> is dropped */
            }
            if (act == ACT_PAUSE) {
                hold_input(s, data, len);
                return;
            }
            return;
        }
        case XML_PARSE_NOT_WELL_FORMED:
            c2s_close(s, "not-well-formed", NULL);
            return;
        case XML_PARSE_RESTRICTED:
            c2s_close(s, "restricted-xml", NULL);
            return;
        case XML_PARSE_TOO_BIG:
            c2s_close(s, "policy-violation", "stanza too large");
            return;
        case XML_PARSE_NOMEM:
            c2s_close(s, "resource-constraint", NULL);
            return;
        case XML_PARSE_BAD_ENCODING:
            c2s_close(s, "unsupported-encoding", NULL);
            return;
        }
    }
}

static void drain_tls(tern_session_t *s)
{
    while (s->tls && s->state == C2S_OPEN && !s->paused) {
        size_t n = 0;
        tls_status_t st = tls_conn_read(s->tls, s->srv->plainbuf, sizeof(s->srv->plainbuf), &n);
        if (!s->secure && tls_conn_handshake_done(s->tls)) {
            s->secure = true;
            log_debug(s->tag, "TLS established (%s)", tls_conn_version(s->tls));
        }
        flush_tls(s);
        if (st == TLS_ERROR) {
            log_debug(s->tag, "TLS error");
            hard_close(s);
            return;
        }
        if (st == TLS_CLOSED) {
            /* close_notify without </stream:stream> is a lost connection
             * for XEP-0198: only the stream's end means goodbye. */
            if (c2s_sm_resumable(s))
                hard_close(s);
            else
                c2s_close(s, NULL, NULL);
            return;
        }
        if (n == 0)
            return;
        c2s_input(s, s->srv->plainbuf, n);
    }
}

void c2s_session_pause(tern_session_t *s)
{
    if (s->paused || !s->parser || s->state == C2S_HIBERNATED)
        return;
    s->paused = true;
    s->pending_action = ACT_PAUSE;
    xml_parser_stop(s->parser);
    if (!s->socketless)
        uv_read_stop((uv_stream_t *)&s->tcp);
}

void c2s_session_resume(tern_session_t *s)
{
    /* A session in transit resumes on the worker that adopts it. */
    if (!s->paused || s->migrate_to >= 0)
        return;
    s->paused = false;
    if (s->state != C2S_OPEN)
        return;
    tern_session_ref(s);
    char *held = s->held;
    size_t held_len = s->held_len;
    s->held = NULL;
    s->held_len = 0;
    if (held_len)
        c2s_stream_input(s, held, held_len);
    free(held);
    if (!s->paused && s->state == C2S_OPEN)
        drain_tls(s);
    if (!s->paused && s->state == C2S_OPEN) {
        read_start(s);
    }
    tern_session_unref(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    tern_session_t *s = h->data;
    buf->base = s->srv->readbuf;
    buf->len = sizeof(s->srv->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    tern_session_t *s = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug(s->tag, "read error: %s", uv_strerror((int)nread));
        if (s->state == C2S_OPEN || s->state == C2S_WAIT_HEADER)
            log_info(s->tag, "connection closed by peer");
        hard_close(s);
        return;
    }
    s->last_rx_ms = uv_now(s->srv->loop);
    s->parser_idle = false;
    if (s->state == C2S_CLOSING)
        return; /* draining until the peer closes */
    tern_session_ref(s);
    if (s->tls) {
        if (tls_conn_feed(s->tls, buf->base, (size_t)nread) == TLS_ERROR)
            hard_close(s);
        else
            drain_tls(s);
    } else {
        c2s_input(s, buf->base, (size_t)nread);
    }
    /* After STARTTLS the parser was reset while TLS was created; any
     * ciphertext in the same read has to go to TLS, which drain_tls does on
     * the next read. */
    tern_session_unref(s);
}

static void read_start(tern_session_t *s)
{
    if (s->socketless)
        return;
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0)
        hard_close(s);
}

/* ------------------------------------------------------------------ */
/* accept                                                              */

static tern_session_t *session_alloc(tern_server_t *srv, const char *kind)
{
    tern_session_t *s = tern_xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->refs = 1;
    s->migrate_to = -1;
    s->id = ++srv->next_conn_id;
    if (srv->shards)
        snprintf(s->tag, sizeof(s->tag), "%s#%u.%llu", kind, srv->shard_index,
                 (unsigned long long)s->id);
    else
        snprintf(s->tag, sizeof(s->tag), "%s#%llu", kind, (unsigned long long)s->id);
    s->opened_ms = s->last_rx_ms = uv_now(srv->loop);
    return s;
}

tern_session_t *c2s_session_new(tern_server_t *srv, const char *ip, const char *kind)
{
    tern_session_t *s = session_alloc(srv, kind);
    snprintf(s->ip, sizeof(s->ip), "%s", ip);
    unsigned limit = srv->cfg->max_connections_per_ip;
    unsigned n = count_ip(s);
    if ((limit && n >= limit) || srv->shutting_down) {
        uncount_ip(s);
        free(s);
        return NULL;
    }
    s->parser = xml_parser_new(&parser_cb, s, srv->cfg->max_stanza_size);
    if (!s->parser) {
        uncount_ip(s);
        free(s);
        return NULL;
    }
    link_all(s);
    s->state = C2S_OPEN;
    return s;
}

int c2s_attach_socket(tern_session_t *s, int fd, tls_conn_t *tls)
{
    s->tls = tls;
    s->secure = s->secure || tls != NULL;
    uv_tcp_init(s->srv->loop, &s->tcp);
    s->tcp.data = s;
    if (fd < 0 || uv_tcp_open(&s->tcp, fd) != 0) {
        if (fd >= 0)
            close(fd);
        hard_close(s);
        return -1;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    uv_tcp_keepalive(&s->tcp, 1, 120);
    read_start(s);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    c2s_listener_t *l = server->data;
    tern_server_t *srv = l->srv;
    if (status < 0) {
        log_warn("c2s", "accept failed: %s", uv_strerror(status));
        return;
    }
    tern_session_t *s = session_alloc(srv, "c2s");
    uv_tcp_init(srv->loop, &s->tcp);
    s->tcp.data = s;
    if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
        s->state = C2S_CLOSED;
        uv_close((uv_handle_t *)&s->tcp, on_closed);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, s->ip, sizeof(s->ip));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, s->ip, sizeof(s->ip));
    }
    uv_tcp_nodelay(&s->tcp, 1);
    /* Half-open connections (peer vanished without FIN) are found by TCP
     * keepalive even when the idle timeout is long. */
    uv_tcp_keepalive(&s->tcp, 1, 120);
    link_all(s);
    s->state = C2S_OPEN;

    unsigned limit = srv->cfg->max_connections_per_ip;
    unsigned n = count_ip(s);
    if (srv->shutting_down) {
        hard_close(s);
        return;
    }
    if (limit && n >= limit) {
        /* Said in-band so that the client does not retry at once: a stream
         * header and the error, then close (RFC 6120 §4.9.1.1). */
        log_info(s->tag, "refusing connection from %s: %u already open", s->ip, limit);
        c2s_close(s, "policy-violation", "too many connections from your address");
        if (s->state == C2S_CLOSING)
            read_start(s); /* to see the peer's close and free the slot */
        return;
    }

    s->parser = xml_parser_new(&parser_cb, s, srv->cfg->max_stanza_size);
    if (!s->parser) {
        hard_close(s);
        return;
    }
    if (l->direct_tls) {
        s->direct_tls = true;
        s->tls = tls_conn_new(srv->tls_direct);
        if (!s->tls) {
            hard_close(s);
            return;
        }
    }
    log_debug(s->tag, "connection from %s%s", s->ip, l->direct_tls ? " (direct TLS)" : "");
    read_start(s);
}

/* ------------------------------------------------------------------ */
/* moving a connection to the worker that owns its account             */

void c2s_plan_migration(tern_session_t *s)
{
    if (!s->srv->shards || !s->auth_user)
        return;
    unsigned owner = shard_of(s->srv, s->auth_user, s->host->domain);
    if (owner == s->srv->shard_index)
        return;
    s->migrate_to = (int)owner;
    /* Input after <success/> (the client's next stream header, maybe more)
     * is held and parsed by the new owner. */
    s->paused = true;
    if (!s->socketless)
        uv_read_stop((uv_stream_t *)&s->tcp);
}

static void on_migrate_posted(tern_session_t *s)
{
    if (!shard_post_session(s->srv, (unsigned)s->migrate_to, s, s->migrate_fd)) {
        log_info(s->tag, "worker %d is stopping: connection dropped", s->migrate_to);
        if (s->migrate_fd >= 0)
            close(s->migrate_fd);
        s->state = C2S_CLOSED;
        uncount_ip(s);
        tern_session_unref(s);
    }
}

static void on_migrate_closed(uv_handle_t *h)
{
    on_migrate_posted(h->data);
}

/* Runs when the session's output may have drained: from the flush after
 * <success/> or from the completion of its last write. Nothing of this
 * worker may refer to the session afterwards: it leaves the sweep list,
 * and no storage or CPU job is outstanding once SASL has succeeded. */
static void try_migrate(tern_session_t *s)
{
    if (s->migrating || s->state != C2S_OPEN || s->corked || s->writing || s->out_len ||
        s->cork_len || s->auth_busy)
        return;
    if (s->srv->shutting_down) {
        c2s_close(s, "system-shutdown", NULL);
        return;
    }
    tern_server_t *to = shard_server(s->srv, (unsigned)s->migrate_to);
    tern_host_t *host = server_find_host(to, s->host->domain);
    if (!host) {
        hard_close(s);
        return;
    }
    if (s->socketless) {
        /* Nothing to close on this loop: the transport lets go of what
         * it has here (BOSH: its held requests), the session travels. */
        if (!s->framing->migrate(s, (unsigned)s->migrate_to))
            return;
        log_debug(s->tag, "moving to worker %d", s->migrate_to);
        s->migrating = true;
        unlink_all(s);
        s->host = host;
        s->migrate_fd = -1;
        on_migrate_posted(s);
        return;
    }
    uv_os_fd_t fd;
    int dup_fd = -1;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0 ||
        (dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        hard_close(s);
        return;
    }
    log_debug(s->tag, "moving to worker %d", s->migrate_to);
    s->migrating = true;
    s->migrate_fd = dup_fd;
    unlink_all(s);
    s->host = host;
    /* The connection's reference travels with the session. */
    uv_close((uv_handle_t *)&s->tcp, on_migrate_closed);
}

void c2s_adopt(tern_server_t *srv, tern_session_t *s, int fd)
{
    s->srv = srv;
    s->migrate_to = -1;
    s->migrating = false;
    if (s->socketless) {
        link_all(s);
        s->last_rx_ms = uv_now(srv->loop);
        s->framing->adopted(s);
        if (srv->shutting_down) {
            c2s_close(s, "system-shutdown", NULL);
            return;
        }
        c2s_session_resume(s);
        return;
    }
    uv_tcp_init(srv->loop, &s->tcp);
    s->tcp.data = s;
    if (uv_tcp_open(&s->tcp, fd) != 0) {
        close(fd);
        s->state = C2S_CLOSED;
        uncount_ip(s);
        uv_close((uv_handle_t *)&s->tcp, on_closed);
        return;
    }
    link_all(s);
    s->last_rx_ms = uv_now(srv->loop);
    if (srv->shutting_down) {
        c2s_close(s, "system-shutdown", NULL);
        return;
    }
    c2s_session_resume(s);
}

int c2s_listen(tern_server_t *srv, const char *addr, unsigned port, bool direct_tls, char *err,
               size_t errlen)
{
    c2s_listener_t *l = tern_xcalloc(1, sizeof(*l));
    l->srv = srv;
    l->direct_tls = direct_tls;
    bool inited;
    int r = server_listen(srv, &l->tcp, l, addr, port, on_connection, &inited, err, errlen);
    if (!inited) {
        free(l);
        return -1;
    }
    l->next = srv->listeners;
    srv->listeners = l; /* closed by c2s_close_listeners, even on error */
    if (r != 0)
        return -1;
    log_info("c2s", "listening on %s port %u%s", addr, port, direct_tls ? " (direct TLS)" : "");
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void c2s_close_listeners(tern_server_t *srv)
{
    for (c2s_listener_t *l = srv->listeners, *n; l; l = n) {
        n = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    }
    srv->listeners = NULL;
}

void c2s_sweep(tern_server_t *srv, uint64_t now)
{
    const config_t *cfg = srv->cfg;
    size_t released = 0;
    for (tern_session_t *s = srv->all_sessions, *n; s; s = n) {
        n = s->next_all;
        if (s->state == C2S_CLOSING) {
            if (now - s->closing_ms > 3000)
                hard_close(s);
            continue;
        }
        if (s->state == C2S_HIBERNATED) {
            /* Ending it may route stanzas, never free other sessions on
             * this list: they are closed, not unlinked, by routing. */
            if (srv->shutting_down ||
                now - s->hibernated_ms >= (uint64_t)c2s_sm_resume_timeout(s) * 1000)
                hibernation_end(s);
            continue;
        }
        if (s->state != C2S_OPEN)
            continue;
        if (s->sm)
            c2s_sm_sweep(s);
        if (!s->bound && now - s->opened_ms > (uint64_t)cfg->handshake_timeout * 1000) {
            c2s_close(s, "connection-timeout", "authentication took too long");
        } else if (!s->socketless && now - s->last_rx_ms > (uint64_t)cfg->idle_timeout * 1000) {
            if (c2s_sm_resumable(s)) {
                /* XEP-0198 §5: an idle timeout is a lost connection, not
                 * the end of the session. The error is said best-effort;
                 * the socket goes at once. */
                send_str(s, "<stream:error><connection-timeout xmlns='" NS_STREAMS
                            "'/></stream:error>");
                send_stream_end(s);
                flush_cork(s);
                hard_close(s);
            } else {
                c2s_close(s, "connection-timeout", NULL);
            }
        } else if (!s->paused && !s->parser_idle && now - s->last_rx_ms >= 2000 &&
                   xml_parser_hibernate(s->parser)) {
            /* Quiet for a while: give expat's ~12 KB back until the next
             * byte arrives (most connections are idle most of the time). */
            s->parser_idle = true;
            if (s->tls)
                tls_conn_hibernate(s->tls);
            if (s->cork_len == 0) {
                free(s->cork);
                s->cork = NULL;
                s->cork_cap = 0;
            }
            released++;
            log_debug(s->tag, "idle: parser memory released");
        }
    }
    /* The freed parsers sit between live sessions, where free() cannot
     * give pages back; after a batch, ask the allocator to return the
     * whole free pages in the middle of the heap. */
    if (released >= 32)
        malloc_trim(0);
}

void c2s_shutdown_all(tern_server_t *srv)
{
    for (tern_session_t *s = srv->all_sessions, *n; s; s = n) {
        n = s->next_all;
        if (s->state == C2S_OPEN)
            c2s_close(s, "system-shutdown", NULL);
    }
    /* After the open ones: their re-routed messages then find no live
     * resource and go where undeliverable messages go. */
    for (tern_session_t *s = srv->all_sessions, *n; s; s = n) {
        n = s->next_all;
        if (s->state == C2S_HIBERNATED)
            hibernation_end(s);
    }
}

/* ------------------------------------------------------------------ */
/* stream resumption (XEP-0198 §5)                                      */

void c2s_take_over(tern_session_t *n, tern_session_t *o)
{
    tern_host_t *host = o->host;
    /* Identity: the strings move, so the maps' borrowed keys stay valid. */
    n->jid = o->jid;
    memset(&o->jid, 0, sizeof(o->jid));
    n->full = o->full;
    n->bare = o->bare;
    o->full = o->bare = NULL;
    hashmap_put(&host->sessions, n->full, n);
    sm_user_t *u = sm_find_user(host, n->bare);
    for (tern_session_t **pp = u ? &u->sessions : NULL; pp && *pp; pp = &(*pp)->next_resource) {
        if (*pp == o) {
            n->next_resource = o->next_resource;
            *pp = n;
            o->next_resource = NULL;
            break;
        }
    }
    n->priority = o->priority;
    n->available = o->available;
    n->presence = o->presence;
    n->directed = o->directed;
    o->presence = NULL;
    o->directed = NULL;
    o->available = false;
    /* Module data follows the session; whatever n had (nothing before
     * binding, in practice) is released with o. */
    void **slots = n->slots;
    n->slots = o->slots;
    o->slots = slots;
    n->sm = o->sm;
    o->sm = NULL;
    n->bound = true;
    o->bound = false;
    log_info(n->tag, "resumed %s (was %s)", n->full, o->tag);
    if (o->state == C2S_HIBERNATED) {
        o->state = C2S_CLOSED;
        unlink_all(o);
        tern_session_unref(o); /* the hibernation reference */
    } else {
        /* Prosody and ejabberd do the same: the old connection, maybe a
         * half-open one the client already gave up on, is closed; the
         * session itself lives on here. */
        c2s_close(o, "conflict", "session resumed on another connection");
    }
}
