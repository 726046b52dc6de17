/* SPDX-License-Identifier: MIT
 * websocket.c - see websocket.h.
 *
 * Why wslay: a small, event-based RFC 6455 implementation (the one nghttp2
 * and aria2 use), packaged by Debian, that does no I/O itself, so it sits
 * between our TLS layer and parser like TLS does. It enforces the rules
 * the server side must (client frames masked, control frames short and
 * unfragmented, valid opcodes and close codes), answers pings, and fails
 * a connection with the right close code (1002 protocol error, 1009
 * message too big, ...).
 */
#include "websocket.h"

#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "../core/common.h"
#include "../core/log.h"
#include "../xml/frame.h"
#include "../xml/ns.h"

#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

typedef struct {
    wslay_event_context_ptr ctx;
    tern_session_t *s;
    const char *in; /* bytes being decoded (wslay pulls them) */
    size_t in_len;
    xml_framer_t framer;
    bool failed;
    bool in_recv; /* inside wslay_event_recv: sending waits until it returns */
} ws_t;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    ws_t *w = ud;
    if (w->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_len ? len : w->in_len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    ws_t *w = ud;
    c2s_write_wire(w->s, (const char *)data, len);
    return (ssize_t)len;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        *buf = tern_xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

static void append_attr(char **buf, size_t *len, size_t *cap, const char *name, const char *v)
{
    if (!v)
        return;
    append(buf, len, cap, " ");
    append(buf, len, cap, name);
    append(buf, len, cap, "='");
    xml_escape_append(v, strlen(v), buf, len, cap);
    append(buf, len, cap, "'");
}

/* <open/> (RFC 7395 §3.4) as the stream header the c2s parser expects. */
static void feed_open(ws_t *w, const xml_node_t *open)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append(&buf, &len, &cap, "<stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAM "'");
    append_attr(&buf, &len, &cap, "to", xml_node_attr(open, "to"));
    append_attr(&buf, &len, &cap, "from", xml_node_attr(open, "from"));
    append_attr(&buf, &len, &cap, "version", xml_node_attr(open, "version"));
    append_attr(&buf, &len, &cap, "xml:lang", xml_node_attr(open, "xml:lang"));
    append(&buf, &len, &cap, ">");
    c2s_stream_input(w->s, buf, len);
    free(buf);
}

static bool starts_with_tag(const char *msg, size_t len, const char *tag)
{
    size_t n = strlen(tag);
    return len > n && memcmp(msg, tag, n) == 0 &&
           (msg[n] == ' ' || msg[n] == '/' || msg[n] == '>' || msg[n] == '\t' || msg[n] == '\n' ||
            msg[n] == '\r');
}

static void on_message(tern_session_t *s, ws_t *w, const char *msg, size_t len)
{
    while (len && (*msg == ' ' || *msg == '\t' || *msg == '\r' || *msg == '\n')) {
        msg++;
        len--;
    }
    if (len == 0)
        return; /* whitespace keepalive */
    if (starts_with_tag(msg, len, "<open") || starts_with_tag(msg, len, "<close")) {
        xml_stanza_t *st = xml_parse_element(msg, len, "", 4096);
        xml_node_t *el = st ? xml_stanza_root(st) : NULL;
        if (!el || strcmp(el->ns, NS_FRAMING) != 0) {
            c2s_close(s, el ? "invalid-namespace" : "not-well-formed", NULL);
        } else if (strcmp(el->name, "open") == 0) {
            if (s->header_sent)
                c2s_close(s, "bad-format", "<open/> inside an open stream");
            else
                feed_open(w, el);
        } else if (s->header_sent) {
            log_debug(s->tag, "client sent <close/>");
            c2s_stream_input(s, "</stream:stream>", 16);
        } else {
            /* Between streams (after SASL success, before the new
             * <open/>): no parser stream to end, but the client is owed
             * our <close/> all the same (RFC 7395 §3.6). */
            log_debug(s->tag, "client sent <close/> between streams");
            s->header_sent = true;
            c2s_close(s, NULL, NULL);
        }
        if (st)
            xml_stanza_unref(st);
        return;
    }
    if (!s->header_sent) {
        c2s_close(s, "not-authorized", "send <open/> first");
        return;
    }
    c2s_stream_input(s, msg, len);
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *ud)
{
    ws_t *w = ud;
    tern_session_t *s = w->s;
    if (wslay_is_ctrl_frame(arg->opcode)) {
        if (arg->opcode == WSLAY_CONNECTION_CLOSE)
            log_debug(s->tag, "WebSocket close %u from the client", arg->status_code);
        return; /* wslay answers pings and closes */
    }
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        /* RFC 7395 §3.3.1: XMPP travels in text messages only. */
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, NULL, 0);
        return;
    }
    on_message(s, w, (const char *)arg->msg, arg->msg_length);
}

static void ws_send(ws_t *w)
{
    if (w->in_recv)
        return;
    if (wslay_event_send(w->ctx) != 0)
        w->failed = true;
}

/* After input or output: a finished close handshake or a failed
 * connection ends the socket. */
static void check_done(ws_t *w)
{
    tern_session_t *s = w->s;
    if (s->state != C2S_OPEN && s->state != C2S_CLOSING)
        return;
    if (w->failed || (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx)))
        c2s_lost(s);
}

static void ws_input(tern_session_t *s, const char *data, size_t len)
{
    ws_t *w = s->xport;
    if (!w)
        return;
    w->in = data;
    w->in_len = len;
    tern_session_ref(s);
    w->in_recv = true;
    int r = wslay_event_recv(w->ctx);
    if (s->xport == w)
        w->in_recv = false;
    if (r != 0 && r != WSLAY_ERR_WOULDBLOCK)
        w->failed = true;
    if (s->xport == w) {
        w->in = NULL;
        w->in_len = 0;
        ws_send(w);
        check_done(w);
    }
    tern_session_unref(s);
}

static void queue_text(ws_t *w, const char *msg, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, len};
    if (wslay_event_queue_msg(w->ctx, &m) != 0)
        w->failed = true;
}

static void on_element(void *ud, const char *el, size_t len)
{
    queue_text(ud, el, len);
}

static void ws_output(tern_session_t *s, const char *data, size_t len)
{
    ws_t *w = s->xport;
    if (!w)
        return;
    xml_framer_feed(&w->framer, data, len, on_element, w);
    ws_send(w);
}

static void ws_header(tern_session_t *s, const char *id, const char *from, const char *lang)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    append(&buf, &len, &cap, "<open xmlns='" NS_FRAMING "' version='1.0'");
    append_attr(&buf, &len, &cap, "id", id);
    append_attr(&buf, &len, &cap, "from", from);
    append_attr(&buf, &len, &cap, "xml:lang", lang);
    append(&buf, &len, &cap, "/>");
    c2s_send_raw(s, buf, len);
    free(buf);
}

static void ws_end(tern_session_t *s)
{
    ws_t *w = s->xport;
    if (!w)
        return;
    static const char close_el[] = "<close xmlns='" NS_FRAMING "'/>";
    queue_text(w, close_el, sizeof(close_el) - 1);
    /* Sent now, even inside wslay_event_recv: the c2s layer shuts the
     * socket down right after this returns. In two steps, because wslay
     * sends a queued close frame before queued messages and nothing
     * after it. */
    if (wslay_event_send(w->ctx) != 0)
        w->failed = true;
    wslay_event_queue_close(w->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
    if (wslay_event_send(w->ctx) != 0)
        w->failed = true;
}

static void ws_free(tern_session_t *s)
{
    ws_t *w = s->xport;
    wslay_event_context_free(w->ctx);
    xml_framer_free(&w->framer);
    free(w);
    s->xport = NULL;
}

static const c2s_framing_t ws_framing = {
    .name = "websocket",
    .input = ws_input,
    .header = ws_header,
    .output = ws_output,
    .end = ws_end,
    .free = ws_free,
};

void ws_attach(tern_session_t *s)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = on_msg_recv,
    };
    ws_t *w = tern_xcalloc(1, sizeof(*w));
    w->s = s;
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0)
        abort(); /* out of memory, as tern_xmalloc would */
    /* A message is one stanza: the stanza limit, plus room for framing. */
    wslay_event_config_set_max_recv_msg_length(w->ctx, s->srv->cfg->max_stanza_size + 1024);
    s->framing = &ws_framing;
    s->xport = w;
}
