/* SPDX-License-Identifier: MIT
 * stream_mgmt.c - XEP-0198 Stream Management on c2s streams: stanza
 * acknowledgements (§4) and resumption (§5).
 *
 * Once a bound client sends <enable/>, both directions are counted. What
 * the server sends is kept, serialised as it went out, in an unacked
 * queue until the client's <a h/> covers it; that queue is what a resumed
 * stream retransmits and, when the session ends without resumption, what
 * is treated as undeliverable so that no message is silently lost.
 *
 * The connection-level half (hibernating a session whose connection was
 * lost, expiring it, handing it to the connection that resumes it) is in
 * c2s.c, which owns sockets and the sweep; this file owns the protocol
 * and the queue. Everything runs on the worker owning the account: a
 * connection only authenticates there after migrating (c2s_plan_migration),
 * and <enable/> and <resume/> need an authenticated stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../core/common.h"
#include "../core/log.h"
#include "../xml/ns.h"
#include "session.h"

/* The server asks for an ack once this many stanzas are unacknowledged
 * and no request is outstanding; the sweep asks within a second for
 * fewer. */
#define SM_ACK_AFTER 5

/* One stanza sent and not yet acknowledged. */
typedef struct sm_item {
    struct sm_item *next;
    char *data; /* owned: the bytes as serialised for the client */
    size_t len;
    time_t sent; /* for the XEP-0203 stamp if it has to be re-routed */
} sm_item_t;

struct sm_state {
    char id[33];      /* hex of 128 random bits; only its account may resume */
    bool resume;      /* resumption granted */
    unsigned timeout; /* seconds a lost connection is waited for */
    uint32_t in_h;    /* stanzas handled from the client, mod 2^32 */
    uint32_t acked;   /* the client's last h: our stanzas it has */
    /* Unacked stanzas: numbers acked+1 .. acked+queued. */
    sm_item_t *head, *tail;
    size_t queued;
    bool r_pending; /* our <r/> is unanswered */
};

static void free_items(sm_item_t *it)
{
    while (it) {
        sm_item_t *n = it->next;
        free(it->data);
        free(it);
        it = n;
    }
}

void c2s_sm_free(tern_session_t *s)
{
    if (!s->sm)
        return;
    free_items(s->sm->head);
    free(s->sm);
    s->sm = NULL;
}

bool c2s_sm_resumable(const tern_session_t *s)
{
    return s->sm && s->sm->resume && s->bound;
}

unsigned c2s_sm_resume_timeout(const tern_session_t *s)
{
    return s->sm ? s->sm->timeout : 0;
}

bool c2s_sm_overflowed(const tern_session_t *s)
{
    return s->sm && s->sm->queued > s->srv->cfg->sm_max_unacked;
}

static void request_ack(tern_session_t *s)
{
    /* Before the write: a failing write may end the session and free
     * s->sm. */
    s->sm->r_pending = true;
    c2s_send_str(s, "<r xmlns='" NS_SM "'/>");
}

void c2s_sm_track(tern_session_t *s, char *buf, size_t len)
{
    sm_state_t *sm = s->sm;
    sm_item_t *it = tern_xmalloc(sizeof(*it));
    it->next = NULL;
    it->data = buf;
    it->len = len;
    it->sent = time(NULL);
    if (sm->tail)
        sm->tail->next = it;
    else
        sm->head = it;
    sm->tail = it;
    sm->queued++;
    if (sm->queued > s->srv->cfg->sm_max_unacked)
        c2s_schedule_flush(s); /* c2s_flush_corked ends it, outside routing */
    else if (s->state == C2S_OPEN && !sm->r_pending && sm->queued >= SM_ACK_AFTER)
        request_ack(s);
}

void c2s_sm_count_inbound(tern_session_t *s)
{
    s->sm->in_h++;
}

void c2s_sm_sweep(tern_session_t *s)
{
    if (s->sm->queued && !s->sm->r_pending && s->state == C2S_OPEN)
        request_ack(s);
}

/* XEP-0198 h: an unsigned 32-bit decimal. */
static bool parse_h(const char *v, uint32_t *out)
{
    if (!v || !*v || strlen(v) > 10)
        return false;
    uint64_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (n > UINT32_MAX)
        return false;
    *out = (uint32_t)n;
    return true;
}

static void send_failed(tern_session_t *s, const char *cond)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "<failed xmlns='" NS_SM "'><%s xmlns='" NS_STANZAS "'/></failed>",
             cond);
    c2s_send_str(s, buf);
}

/* §4: the client claims more than was sent; its state is unknowable, so
 * the stream ends with the condition the XEP defines for it. */
static void h_too_high(tern_session_t *s, uint32_t h, uint32_t sent)
{
    char app[160];
    snprintf(app, sizeof(app), "<handled-count-too-high xmlns='" NS_SM "' h='%u' send-count='%u'/>",
             h, sent);
    c2s_close_ext(s, "undefined-condition", "acknowledged more stanzas than were sent", app);
}

/* Applies the client's h; false (nothing changed) if it exceeds what was
 * sent. */
static bool apply_ack(sm_state_t *sm, uint32_t h)
{
    uint32_t n = h - sm->acked; /* mod 2^32, as the counters wrap */
    if (n > sm->queued)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        sm_item_t *it = sm->head;
        sm->head = it->next;
        free(it->data);
        free(it);
    }
    if (!sm->head)
        sm->tail = NULL;
    sm->queued -= n;
    sm->acked = h;
    return true;
}

static void handle_enable(tern_session_t *s, xml_node_t *el)
{
    /* §3: only after binding, and once. */
    if (!s->bound || s->sm) {
        send_failed(s, "unexpected-request");
        return;
    }
    const char *want = xml_node_attr(el, "resume");
    bool resume = want && (strcmp(want, "true") == 0 || strcmp(want, "1") == 0);
    unsigned timeout = s->srv->cfg->sm_resume_timeout;
    uint32_t client_max = 0;
    /* The client's max is its preference; the server's limit wins. */
    if (parse_h(xml_node_attr(el, "max"), &client_max) && client_max > 0 && client_max < timeout)
        timeout = client_max;
    sm_state_t *sm = tern_xcalloc(1, sizeof(*sm));
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* An id that could be guessed would let anyone logged in as the
         * account steal a session; without randomness, no resumption. */
        memset(rnd, 0, sizeof(rnd));
        resume = false;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(sm->id + 2 * i, 3, "%02x", rnd[i]);
    sm->resume = resume && timeout > 0;
    sm->timeout = sm->resume ? timeout : 0;
    s->sm = sm;
    char buf[160];
    if (sm->resume)
        snprintf(buf, sizeof(buf), "<enabled xmlns='" NS_SM "' id='%s' resume='true' max='%u'/>",
                 sm->id, sm->timeout);
    else
        snprintf(buf, sizeof(buf), "<enabled xmlns='" NS_SM "'/>");
    log_debug(s->tag, "stream management enabled%s", sm->resume ? " with resumption" : "");
    c2s_send_str(s, buf);
}

static void handle_resume(tern_session_t *s, xml_node_t *el)
{
    /* §5: instead of binding, on a fresh authenticated stream. */
    if (!s->authenticated || s->bound || s->sm) {
        send_failed(s, "unexpected-request");
        return;
    }
    const char *previd = xml_node_attr(el, "previd");
    uint32_t h = 0;
    if (!previd || !parse_h(xml_node_attr(el, "h"), &h)) {
        send_failed(s, "bad-request");
        return;
    }
    /* Only the sessions of the account this stream authenticated as are
     * candidates: an id alone never reaches another account's session. */
    char bare[1100];
    int n =
        snprintf(bare, sizeof(bare), "%s@%s", s->auth_user ? s->auth_user : "", s->host->domain);
    tern_session_t *o = NULL;
    if (s->auth_user && n > 0 && (size_t)n < sizeof(bare)) {
        for (o = tern_user_sessions(s->host, bare); o; o = tern_session_next_resource(o))
            if (o != s && o->sm && o->sm->resume && strcmp(o->sm->id, previd) == 0)
                break;
    }
    if (!o) {
        log_info(s->tag, "resumption of an unknown or expired session refused");
        send_failed(s, "item-not-found");
        return;
    }
    uint32_t sent = o->sm->acked + (uint32_t)o->sm->queued;
    if ((uint32_t)(h - o->sm->acked) > o->sm->queued) {
        h_too_high(s, h, sent);
        return;
    }
    c2s_take_over(s, o); /* o may be gone from here on */
    sm_state_t *sm = s->sm;
    apply_ack(sm, h);
    sm->r_pending = false;
    char buf[160];
    snprintf(buf, sizeof(buf), "<resumed xmlns='" NS_SM "' previd='%s' h='%u'/>", sm->id, sm->in_h);
    c2s_send_str(s, buf);
    /* §5: everything the client did not have, in the original order and
     * with the original numbers. A write that fails ends or hibernates
     * the session (state no longer open; sm may be gone): stop there. */
    for (sm_item_t *it = sm->head; it;) {
        sm_item_t *next = it->next;
        c2s_send_raw(s, it->data, it->len);
        if (s->state != C2S_OPEN)
            break;
        it = next;
    }
    if (s->state == C2S_OPEN && sm->queued)
        request_ack(s);
}

void c2s_sm_handle(tern_session_t *s, xml_node_t *el)
{
    const char *name = el->name;
    if (strcmp(name, "enable") == 0) {
        if (!s->authenticated)
            send_failed(s, "unexpected-request");
        else
            handle_enable(s, el);
        return;
    }
    if (strcmp(name, "resume") == 0) {
        handle_resume(s, el);
        return;
    }
    bool is_r = strcmp(name, "r") == 0, is_a = strcmp(name, "a") == 0;
    if ((!is_r && !is_a) || !s->sm) {
        c2s_close(s, "unsupported-stanza-type",
                  is_r || is_a ? "stream management not enabled" : NULL);
        return;
    }
    if (is_r) {
        char buf[80];
        snprintf(buf, sizeof(buf), "<a xmlns='" NS_SM "' h='%u'/>", s->sm->in_h);
        c2s_send_str(s, buf);
        return;
    }
    uint32_t h;
    if (!parse_h(xml_node_attr(el, "h"), &h)) {
        c2s_close(s, "invalid-xml", "<a/> needs a numeric h");
        return;
    }
    sm_state_t *sm = s->sm;
    if (!apply_ack(sm, h)) {
        h_too_high(s, h, sm->acked + (uint32_t)sm->queued);
        return;
    }
    sm->r_pending = false;
}

/* ------------------------------------------------------------------ */
/* the end of a session: unacknowledged stanzas are undeliverable        */

static bool has_eligible_resource(tern_session_t *s)
{
    for (tern_session_t *r = tern_user_sessions(s->host, s->bare); r;
         r = tern_session_next_resource(r))
        if (r != s && tern_session_available(r) && tern_session_priority(r) >= 0)
            return true;
    return false;
}

/* XEP-0198 §5 leaves unacknowledged stanzas to the server, which should
 * treat them as undeliverable. RFC 6120 §10.5.3 / RFC 6121 §8.5.3 then
 * give, for a full JID that has no session any more:
 *   - message: handled as if sent to the bare JID, so other resources (or
 *     offline storage, or a service-unavailable bounce to the sender) get
 *     it. A message that was addressed to the bare JID already reached
 *     every eligible resource, so it is re-routed only when none is left.
 *     Carbon copies and errors are dropped: the original went elsewhere,
 *     and an error is never answered.
 *   - iq get/set: service-unavailable to the requester, who otherwise
 *     waits for an answer forever.
 *   - presence, iq result/error: dropped (state that is superseded, or an
 *     answer nobody can act on). */
static void undeliverable(tern_session_t *s, const sm_item_t *it)
{
    xml_stanza_t *st = xml_parse_element(it->data, it->len, NS_CLIENT, it->len + 1);
    if (!st) {
        log_warn(s->tag, "unacked stanza could not be re-read; dropped");
        return;
    }
    xml_node_t *root = xml_stanza_root(st);
    const char *type = xml_node_attr(root, "type");
    if (strcmp(root->name, "message") == 0) {
        const char *to = xml_node_attr(root, "to");
        const char *from = xml_node_attr(root, "from");
        jid_t tj = {0}, bare = {0}, fj = {0};
        bool carbon = xml_node_child(root, "sent", NS_CARBONS) ||
                      xml_node_child(root, "received", NS_CARBONS);
        bool error = type && strcmp(type, "error") == 0;
        bool to_bare = to && jid_parse(to, &tj) == 0 && !tj.resource;
        if (!carbon && !error && !(to_bare && has_eligible_resource(s)) && s->bare &&
            jid_parse(s->bare, &bare) == 0) {
            tern_stamp_delay(root, s->host->domain, it->sent, NULL);
            xml_node_set_attr(root, "to", s->bare);
            bool have_from = from && jid_parse(from, &fj) == 0;
            router_route(s->srv, st, have_from ? &fj : NULL, &bare, NULL);
        }
        jid_clear(&tj);
        jid_clear(&bare);
        jid_clear(&fj);
    } else if (strcmp(root->name, "iq") == 0 && type &&
               (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
        router_bounce(s->srv, st, "cancel", "service-unavailable", NULL);
    }
    xml_stanza_unref(st);
}

void c2s_sm_session_ended(tern_session_t *s)
{
    sm_state_t *sm = s->sm;
    /* Detached first: routing below must not queue into it again. */
    s->sm = NULL;
    if (sm->queued)
        log_info(s->tag, "%zu unacknowledged stanza(s) treated as undeliverable", sm->queued);
    for (sm_item_t *it = sm->head; it; it = it->next)
        undeliverable(s, it);
    free_items(sm->head);
    free(sm);
}
