/* SPDX-License-Identifier: MIT
 * bosh.c - see bosh.h.
 *
 * The moving parts of XEP-0124, and where they live:
 *   rid order       requests are processed strictly in rid order; one
 *                   that arrives early waits (its connection held) for
 *                   the gap to fill, within the `requests` window (§14).
 *   retransmission  the last `requests` responses are kept by rid and
 *                   sent again when the client repeats a request (§14.3).
 *   holding         processed requests wait in `held` for output; past
 *                   `hold` of them the oldest is answered empty, and any
 *                   is answered empty after `wait` seconds (§7.1, §11).
 *   inactivity      no request held for `inactivity` seconds (or past a
 *                   client's `pause`) and the session's connection is
 *                   lost, like a TCP client's (§10, §12): with stream
 *                   management it hibernates and can be resumed.
 *   terminate       our stream ending answers every held request with
 *                   type='terminate' (remote-stream-error carrying the
 *                   <stream:error/> when there was one, §17.2).
 */
#include "bosh.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../core/log.h"
#include "../shard.h"
#include "../xml/frame.h"
#include "../xml/ns.h"

#define NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define NS_XBOSH    "urn:xmpp:xbosh"
#define MAX_RID     9007199254740991ULL /* 2^53 - 1, §14.1 */
#define CACHE_MAX   16
#define POLLING     2 /* seconds between polls of a session that holds none */

typedef struct bosh bosh_t;

/* A request whose connection waits: processed and waiting for output
 * (held), or early and waiting for its turn (body set). */
typedef struct bosh_req {
    bosh_t *b;
    http_conn_t *conn;
    uint64_t rid;
    uint64_t since_ms;
    xml_stanza_t *body; /* early requests only */
    struct bosh_req *next;
} bosh_req_t;

struct bosh {
    tern_session_t *s;
    tern_server_t *srv; /* the worker the session is on */
    char sid[33];
    char authid[32];
    uint64_t rid_next; /* the rid processed next */
    uint64_t creation_rid;
    bool creation_answered;
    bool client_acks;
    unsigned wait, hold, requests, inactivity, maxpause;
    bosh_req_t *held; /* oldest first */
    unsigned nheld;
    bosh_req_t *early; /* by rid */
    unsigned nearly;
    char *out; /* elements waiting for a response */
    size_t out_len, out_cap;
    xml_framer_t framer;
    struct {
        uint64_t rid;
        char *body;
        size_t len;
    } cache[CACHE_MAX];
    unsigned cache_next;
    uint64_t idle_since_ms, pause_until_ms, last_poll_ms;
    bool ended;          /* our stream ended: responses terminate */
    bool closed;         /* the session let go of its connection */
    bosh_t *next, *prev; /* srv->bosh_sessions */
};

typedef struct {
    char sid[33];
    unsigned worker;
    bool arrived; /* false while the session travels to worker */
    bosh_t *b;
} sid_entry_t;

/* ------------------------------------------------------------------ */
/* the process-wide sid registry (worker 0's table)                    */

static tern_server_t *registry(tern_server_t *srv)
{
    return shard_server(srv, 0);
}

static void registry_put(tern_server_t *srv, bosh_t *b)
{
    tern_server_t *r = registry(srv);
    sid_entry_t *e = tern_xcalloc(1, sizeof(*e));
    memcpy(e->sid, b->sid, sizeof(e->sid));
    e->worker = srv->shard_index;
    e->arrived = true;
    e->b = b;
    pthread_mutex_lock(&r->bosh_mu);
    hashmap_put(&r->bosh_sids, e->sid, e);
    pthread_mutex_unlock(&r->bosh_mu);
}

static void registry_del(tern_server_t *srv, const char *sid)
{
    tern_server_t *r = registry(srv);
    pthread_mutex_lock(&r->bosh_mu);
    sid_entry_t *e = hashmap_del(&r->bosh_sids, sid);
    pthread_mutex_unlock(&r->bosh_mu);
    free(e);
}

static void registry_move(tern_server_t *srv, const char *sid, unsigned worker, bool arrived)
{
    tern_server_t *r = registry(srv);
    pthread_mutex_lock(&r->bosh_mu);
    sid_entry_t *e = hashmap_get(&r->bosh_sids, sid);
    if (e) {
        e->worker = worker;
        e->arrived = arrived;
    }
    pthread_mutex_unlock(&r->bosh_mu);
}

static bool registry_get(tern_server_t *srv, const char *sid, sid_entry_t *out)
{
    tern_server_t *r = registry(srv);
    pthread_mutex_lock(&r->bosh_mu);
    sid_entry_t *e = hashmap_get(&r->bosh_sids, sid);
    if (e)
        *out = *e;
    pthread_mutex_unlock(&r->bosh_mu);
    return e != NULL;
}

/* ------------------------------------------------------------------ */
/* responses                                                           */

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 512;
        while (c < *len + n + 1)
            c *= 2;
        *buf = tern_xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void append_s(char **buf, size_t *len, size_t *cap, const char *s)
{
    append(buf, len, cap, s, strlen(s));
}

static void append_attr(char **buf, size_t *len, size_t *cap, const char *name, const char *v)
{
    append_s(buf, len, cap, " ");
    append_s(buf, len, cap, name);
    append_s(buf, len, cap, "='");
    xml_escape_append(v, strlen(v), buf, len, cap);
    append_s(buf, len, cap, "'");
}

static void append_num(char **buf, size_t *len, size_t *cap, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    append_attr(buf, len, cap, name, num);
}

static void reply_xml(http_conn_t *c, const char *body, size_t len)
{
    http_reply(c, 200, "text/xml; charset=utf-8", body, len);
}

/* A terminal error for a request that has no session (§17). */
static void reply_condition(http_conn_t *c, const char *condition)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "<body xmlns='" NS_HTTPBIND "' type='terminate' condition='%s'/>", condition);
    reply_xml(c, buf, (size_t)n);
}

static void unlink_req(bosh_req_t **list, bosh_req_t *r)
{
    for (bosh_req_t **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

/* Answers r (which must be held) with the waiting output; terminal when
 * the stream has ended (condition given, or remote-stream-error if the
 * output carries a stream error). r is freed. */
static void respond(bosh_t *b, bosh_req_t *r, const char *condition)
{
    tern_server_t *srv = b->srv;
    const config_t *cfg = srv->cfg;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append_s(&buf, &len, &cap, "<body xmlns='" NS_HTTPBIND "' xmlns:stream='" NS_STREAM "'");
    if (r->rid == b->creation_rid && !b->creation_answered) {
        /* The session creation response (§7.1, XEP-0206 §6). */
        b->creation_answered = true;
        append_attr(&buf, &len, &cap, "sid", b->sid);
        append_num(&buf, &len, &cap, "wait", b->wait);
        append_num(&buf, &len, &cap, "requests", b->requests);
        append_num(&buf, &len, &cap, "hold", b->hold);
        append_num(&buf, &len, &cap, "inactivity", b->inactivity);
        append_num(&buf, &len, &cap, "polling", POLLING);
        append_num(&buf, &len, &cap, "maxpause", b->maxpause);
        append_attr(&buf, &len, &cap, "ver", "1.11");
        if (b->s->host)
            append_attr(&buf, &len, &cap, "from", b->s->host->domain);
        if (b->authid[0])
            append_attr(&buf, &len, &cap, "authid", b->authid);
        append_attr(&buf, &len, &cap, "secure", b->s->secure ? "true" : "false");
        if (b->client_acks)
            append_num(&buf, &len, &cap, "ack", r->rid);
        append_s(&buf, &len, &cap,
                 " xmlns:xmpp='" NS_XBOSH "' xmpp:version='1.0' xmpp:restartlogic='true'");
    }
    if (b->ended || condition) {
        if (!condition && b->out && strstr(b->out, "<stream:error"))
            condition = "remote-stream-error";
        append_s(&buf, &len, &cap, " type='terminate'");
        if (condition)
            append_attr(&buf, &len, &cap, "condition", condition);
    }
    if (b->out_len) {
        append_s(&buf, &len, &cap, ">");
        append(&buf, &len, &cap, b->out, b->out_len);
        append_s(&buf, &len, &cap, "</body>");
        b->out_len = 0;
        if (b->out_cap > 16384) {
            free(b->out);
            b->out = NULL;
            b->out_cap = 0;
        }
    } else {
        append_s(&buf, &len, &cap, "/>");
    }
    unlink_req(&b->held, r);
    b->nheld--;
    if (b->nheld == 0)
        b->idle_since_ms = uv_now(srv->loop);
    /* Kept for a retransmission of this rid (§14.3). */
    unsigned slot =
        b->cache_next++ % (cfg->bosh_max_requests < CACHE_MAX ? cfg->bosh_max_requests : CACHE_MAX);
    free(b->cache[slot].body);
    b->cache[slot].rid = r->rid;
    b->cache[slot].body = tern_xmalloc(len);
    memcpy(b->cache[slot].body, buf, len);
    b->cache[slot].len = len;
    http_conn_t *c = r->conn;
    free(r);
    reply_xml(c, buf, len);
    free(buf);
}

/* Sends what can be sent: output on the oldest held request, everything
 * on all of them once the stream ended, and no more than `hold` left
 * waiting. */
static void flush(bosh_t *b)
{
    if (b->ended) {
        while (b->held)
            respond(b, b->held, NULL);
        return;
    }
    if (b->out_len && b->held)
        respond(b, b->held, NULL);
    while (b->nheld > b->hold)
        respond(b, b->held, NULL);
}

/* Ends the session for a protocol error of the client's (§17): the
 * request in hand and every held one get the condition. */
static void terminate(bosh_t *b, http_conn_t *c, const char *condition)
{
    log_info(b->s->tag, "BOSH session terminated: %s", condition);
    tern_session_t *s = b->s;
    tern_session_ref(s);
    while (b->held)
        respond(b, b->held, condition);
    if (c)
        reply_condition(c, condition);
    b->ended = true;
    c2s_close(s, NULL, NULL);
    tern_session_unref(s);
}

static void hold_req(bosh_t *b, http_conn_t *c, uint64_t rid)
{
    bosh_req_t *r = tern_xcalloc(1, sizeof(*r));
    r->b = b;
    r->conn = c;
    r->rid = rid;
    r->since_ms = uv_now(b->srv->loop);
    bosh_req_t **pp = &b->held;
    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
    b->nheld++;
    http_hold(c, r);
}

void bosh_request_gone(void *waiter)
{
    bosh_req_t *r = waiter;
    bosh_t *b = r->b;
    if (r->body) {
        unlink_req(&b->early, r);
        b->nearly--;
        xml_stanza_unref(r->body);
    } else {
        unlink_req(&b->held, r);
        b->nheld--;
        if (b->nheld == 0)
            b->idle_since_ms = uv_now(b->srv->loop);
    }
    free(r);
}

/* ------------------------------------------------------------------ */
/* the c2s framing                                                     */

static void on_element(void *ud, const char *el, size_t len)
{
    bosh_t *b = ud;
    append(&b->out, &b->out_len, &b->out_cap, el, len);
}

static void bosh_output(tern_session_t *s, const char *data, size_t len)
{
    bosh_t *b = s->xport;
    if (!b || b->closed)
        return;
    xml_framer_feed(&b->framer, data, len, on_element, b);
    if (b->out_len > s->srv->cfg->max_output_buffer) {
        /* Nobody collects it: a slow reader like any other. */
        log_warn(s->tag, "BOSH output over %zu bytes: closing", s->srv->cfg->max_output_buffer);
        b->out_len = 0;
        c2s_lost(s);
        return;
    }
    /* The stream's last words leave with the terminate body (bosh_end). */
    if (!s->ending)
        flush(b);
}

static void bosh_header(tern_session_t *s, const char *id, const char *from, const char *lang)
{
    bosh_t *b = s->xport;
    if (b && !b->authid[0])
        snprintf(b->authid, sizeof(b->authid), "%s", id);
}

static void bosh_end(tern_session_t *s)
{
    bosh_t *b = s->xport;
    if (!b || b->closed)
        return;
    b->ended = true;
    flush(b);
}

static void detach(bosh_t *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else if (b->srv->bosh_sessions == b)
        b->srv->bosh_sessions = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->next = b->prev = NULL;
}

static void attach(bosh_t *b, tern_server_t *srv)
{
    b->srv = srv;
    b->prev = NULL;
    b->next = srv->bosh_sessions;
    if (srv->bosh_sessions)
        srv->bosh_sessions->prev = b;
    srv->bosh_sessions = b;
}

static void bosh_close(tern_session_t *s)
{
    bosh_t *b = s->xport;
    if (!b || b->closed)
        return;
    b->ended = true;
    flush(b);
    while (b->early) {
        bosh_req_t *r = b->early;
        b->early = r->next;
        xml_stanza_unref(r->body);
        http_conn_t *c = r->conn;
        free(r);
        reply_condition(c, "item-not-found");
    }
    b->nearly = 0;
    b->closed = true;
    registry_del(b->srv, b->sid);
    detach(b);
}

static bool bosh_migrate(tern_session_t *s, unsigned to)
{
    bosh_t *b = s->xport;
    /* A request ahead of its turn holds a connection of this loop; the
     * move waits until the gap is filled and it has been processed. */
    if (b->early)
        return false;
    while (b->held)
        respond(b, b->held, NULL);
    detach(b);
    registry_move(b->srv, b->sid, to, false);
    return true;
}

static void bosh_adopted(tern_session_t *s)
{
    bosh_t *b = s->xport;
    attach(b, s->srv);
    b->idle_since_ms = uv_now(s->srv->loop);
    registry_move(s->srv, b->sid, s->srv->shard_index, true);
}

static void bosh_free(tern_session_t *s)
{
    bosh_t *b = s->xport;
    for (unsigned i = 0; i < CACHE_MAX; i++)
        free(b->cache[i].body);
    free(b->out);
    xml_framer_free(&b->framer);
    free(b);
    s->xport = NULL;
}

static const c2s_framing_t bosh_framing = {
    .name = "bosh",
    .header = bosh_header,
    .output = bosh_output,
    .end = bosh_end,
    .close = bosh_close,
    .migrate = bosh_migrate,
    .adopted = bosh_adopted,
    .free = bosh_free,
};

/* ------------------------------------------------------------------ */
/* requests                                                            */

static bool parse_uint(const char *v, uint64_t max, uint64_t *out)
{
    if (!v || !*v || strlen(v) > 20)
        return false;
    uint64_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > max)
            return false;
    }
    *out = n;
    return true;
}

static void feed_header(bosh_t *b)
{
    tern_session_t *s = b->s;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append_s(&buf, &len, &cap,
             "<stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAM "' version='1.0'");
    append_attr(&buf, &len, &cap, "to", s->host->domain);
    if (s->lang)
        append_attr(&buf, &len, &cap, "xml:lang", s->lang);
    append_s(&buf, &len, &cap, ">");
    c2s_stream_input(s, buf, len);
    free(buf);
}

/* Processes the request whose turn it is: its payload goes to the stream,
 * then it is held for output (or answered at once). */
static void process(bosh_t *b, http_conn_t *c, xml_stanza_t *st, uint64_t rid)
{
    tern_session_t *s = b->s;
    xml_node_t *body = xml_stanza_root(st);
    uint64_t now = uv_now(b->srv->loop);
    b->rid_next = rid + 1;
    s->last_rx_ms = now;
    s->parser_idle = false;
    b->pause_until_ms = 0;

    const char *type = xml_node_attr(body, "type");
    const char *pause = xml_node_attr(body, "pause");
    const char *restart = xml_node_attr(body, NS_XBOSH "|restart");
    bool empty = xml_node_first_element(body) == NULL;

    if (b->nheld + 1 > b->requests) {
        terminate(b, c, "policy-violation"); /* overactive (§11) */
        return;
    }
    if (b->hold == 0 && empty && !type && !pause && !restart &&
        now - b->last_poll_ms < POLLING * 1000ULL) {
        terminate(b, c, "policy-violation"); /* polling too often (§11) */
        return;
    }
    if (empty)
        b->last_poll_ms = now;
    hold_req(b, c, rid);
    if (pause) {
        uint64_t secs;
        if (!parse_uint(pause, 86400, &secs) || secs > b->maxpause) {
            terminate(b, NULL, "policy-violation");
            return;
        }
        /* §10: every held request is answered; the session waits. */
        while (b->held)
            respond(b, b->held, NULL);
        b->pause_until_ms = now + secs * 1000;
        return;
    }
    tern_session_ref(s);
    if (restart && strcmp(restart, "true") == 0) {
        feed_header(b);
    } else {
        char *buf = NULL;
        size_t len = 0, cap = 0;
        for (xml_node_t *ch = body->children; ch; ch = ch->next)
            if (ch->type == XML_NODE_ELEMENT)
                xml_node_serialize(ch, NS_HTTPBIND, &buf, &len, &cap);
        if (len)
            c2s_stream_input(s, buf, len);
        free(buf);
    }
    if (type && strcmp(type, "terminate") == 0 && s->state == C2S_OPEN) {
        log_debug(s->tag, "client terminated the BOSH session");
        c2s_stream_input(s, "</stream:stream>", 16);
        if (s->state == C2S_OPEN)
            c2s_close(s, NULL, NULL);
    }
    if (!b->closed)
        flush(b);
    tern_session_unref(s);
}

static void create(tern_server_t *srv, http_conn_t *c, xml_stanza_t *st)
{
    const config_t *cfg = srv->cfg;
    xml_node_t *body = xml_stanza_root(st);
    uint64_t rid, wait, hold;
    if (!parse_uint(xml_node_attr(body, "rid"), MAX_RID, &rid) ||
        !parse_uint(xml_node_attr(body, "wait"), UINT32_MAX, &wait) ||
        !parse_uint(xml_node_attr(body, "hold"), UINT32_MAX, &hold)) {
        reply_condition(c, "bad-request");
        return;
    }
    const char *to = xml_node_attr(body, "to");
    if (!to) {
        reply_condition(c, "improper-addressing");
        return;
    }
    char *dom = NULL;
    tern_host_t *host = NULL;
    if (jid_prep_domain(to, &dom) == 0)
        host = server_find_host(srv, dom);
    free(dom);
    if (!host) {
        reply_condition(c, "host-unknown");
        return;
    }
    tern_session_t *s = c2s_session_new(srv, http_conn_ip(c), "bosh");
    if (!s) {
        reply_condition(c, "policy-violation");
        return;
    }
    bosh_t *b = tern_xcalloc(1, sizeof(*b));
    b->s = s;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        abort(); /* a guessable sid would let anyone into the session */
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(b->sid + 2 * i, 3, "%02x", rnd[i]);
    b->wait = wait < cfg->bosh_max_wait ? (unsigned)wait : cfg->bosh_max_wait;
    b->hold = hold < cfg->bosh_max_hold ? (unsigned)hold : cfg->bosh_max_hold;
    b->requests = b->hold + 1 > cfg->bosh_max_requests ? b->hold + 1 : cfg->bosh_max_requests;
    b->inactivity = cfg->bosh_max_inactivity;
    b->maxpause = cfg->bosh_max_pause;
    b->creation_rid = rid;
    b->rid_next = rid;
    b->client_acks = xml_node_attr(body, "ack") != NULL;
    b->idle_since_ms = uv_now(srv->loop);
    s->socketless = true;
    s->secure = http_conn_secure(c);
    s->framing = &bosh_framing;
    s->xport = b;
    s->host = host;
    const char *lang = xml_node_attr(body, "xml:lang");
    if (lang && strlen(lang) < 64)
        s->lang = tern_xstrdup(lang);
    attach(b, srv);
    registry_put(srv, b);
    log_info(s->tag, "BOSH session %s from %s (wait %u, hold %u)", b->sid, s->ip, b->wait, b->hold);
    /* The creation request is held like any other: it leaves with the
     * stream features once the c2s layer has flushed them. */
    b->rid_next = rid + 1;
    hold_req(b, c, rid);
    feed_header(b);
    c2s_schedule_flush(s);
}

static void handle(bosh_t *b, http_conn_t *c, xml_stanza_t *st)
{
    xml_node_t *body = xml_stanza_root(st);
    uint64_t rid;
    if (b->closed || b->ended) {
        log_debug(b->s->tag, "BOSH request for an ended session");
        reply_condition(c, "item-not-found");
        return;
    }
    if (!parse_uint(xml_node_attr(body, "rid"), MAX_RID, &rid)) {
        terminate(b, c, "bad-request");
        return;
    }
    if (rid < b->rid_next) {
        /* §14.3: a repeated request gets the same answer again. */
        for (unsigned i = 0; i < CACHE_MAX; i++)
            if (b->cache[i].body && b->cache[i].rid == rid) {
                log_debug(b->s->tag, "BOSH retransmission of rid %llu", (unsigned long long)rid);
                reply_xml(c, b->cache[i].body, b->cache[i].len);
                return;
            }
        log_debug(b->s->tag, "BOSH rid %llu is old and not cached (next %llu)",
                  (unsigned long long)rid, (unsigned long long)b->rid_next);
        terminate(b, c, "item-not-found");
        return;
    }
    if (rid >= b->rid_next + b->requests) {
        log_debug(b->s->tag, "BOSH rid %llu outside the window (next %llu)",
                  (unsigned long long)rid, (unsigned long long)b->rid_next);
        terminate(b, c, "item-not-found"); /* outside the window (§14.2) */
        return;
    }
    if (rid > b->rid_next) {
        for (bosh_req_t *e = b->early; e; e = e->next)
            if (e->rid == rid) {
                terminate(b, c, "bad-request"); /* the same rid twice at once */
                return;
            }
        if (b->nheld + b->nearly + 1 > b->requests) {
            terminate(b, c, "policy-violation");
            return;
        }
        bosh_req_t *r = tern_xcalloc(1, sizeof(*r));
        r->b = b;
        r->conn = c;
        r->rid = rid;
        r->since_ms = uv_now(b->srv->loop);
        r->body = xml_stanza_ref(st);
        bosh_req_t **pp = &b->early;
        while (*pp && (*pp)->rid < rid)
            pp = &(*pp)->next;
        r->next = *pp;
        *pp = r;
        b->nearly++;
        http_hold(c, r);
        return;
    }
    tern_session_t *s = b->s;
    tern_session_ref(s);
    process(b, c, st, rid);
    /* Requests that were waiting for this one. */
    while (!b->closed && !b->ended && b->early && b->early->rid == b->rid_next) {
        bosh_req_t *r = b->early;
        b->early = r->next;
        b->nearly--;
        xml_stanza_t *est = r->body;
        http_conn_t *ec = r->conn;
        uint64_t erid = r->rid;
        free(r);
        process(b, ec, est, erid);
        xml_stanza_unref(est);
    }
    tern_session_unref(s);
}

void bosh_request(http_conn_t *c, const char *data, size_t len)
{
    tern_server_t *srv = http_conn_server(c);
    xml_stanza_t *st = xml_parse_element(data, len, NS_HTTPBIND, srv->cfg->http_max_body);
    xml_node_t *body = st ? xml_stanza_root(st) : NULL;
    if (!body || !xml_node_is(body, "body", NS_HTTPBIND)) {
        if (st)
            xml_stanza_unref(st);
        http_reply(
            c, 400, "text/xml; charset=utf-8",
            "<body xmlns='" NS_HTTPBIND "' type='terminate' condition='bad-request'/>",
            sizeof("<body xmlns='" NS_HTTPBIND "' type='terminate' condition='bad-request'/>") - 1);
        return;
    }
    const char *sid = xml_node_attr(body, "sid");
    if (!sid) {
        create(srv, c, st);
        xml_stanza_unref(st);
        return;
    }
    sid_entry_t e;
    if (!registry_get(srv, sid, &e)) {
        log_debug("bosh", "request for unknown session %s", sid);
        reply_condition(c, "item-not-found");
    } else if (e.worker != srv->shard_index || !e.arrived) {
        /* The session lives (or is arriving) elsewhere: the connection
         * follows it, behind the session in that worker's inbox. */
        if (http_conn_hops(c) >= 8) {
            log_debug("bosh", "session %s: request forwarded too often", sid);
            reply_condition(c, "item-not-found");
        } else
            http_forward(c, e.worker);
    } else {
        http_conn_arrived(c);
        handle(e.b, c, st);
    }
    xml_stanza_unref(st);
}

void bosh_sweep(tern_server_t *srv, uint64_t now)
{
    for (bosh_t *b = srv->bosh_sessions, *n; b; b = n) {
        n = b->next;
        while (b->held && now - b->held->since_ms >= (uint64_t)b->wait * 1000)
            respond(b, b->held, NULL); /* nothing to say within `wait` */
        if (b->early && now - b->early->since_ms > ((uint64_t)b->wait + b->inactivity) * 1000) {
            /* The request before it never came (§14.2 would have the
             * client send it again): the session cannot go on. */
            terminate(b, NULL, "item-not-found");
            continue;
        }
        if (b->held || b->early)
            continue;
        uint64_t limit =
            b->pause_until_ms ? b->pause_until_ms : b->idle_since_ms + b->inactivity * 1000ULL;
        if (now > limit) {
            log_info(b->s->tag, "BOSH session %s inactive: connection lost", b->sid);
            c2s_lost(b->s);
        }
    }
}
