/* SPDX-License-Identifier: MIT
 * fuzz_ws.c - libFuzzer target for the WebSocket transport's framing.
 *
 * A wslay server context set up as src/http/websocket.c does (maximum
 * message length max_stanza_size + 1024) reads the input as the bytes a
 * client sent after the upgrade. The first input byte picks the size of
 * the "socket reads" the rest arrives in and how the send side behaves
 * (all at once, a few bytes at a time, or blocked now and then); after
 * every read wslay_event_send runs, as the server's ws_input does, so
 * pong, close and failure paths are exercised.
 *
 * websocket.c's message handling needs a c2s session, so the target does
 * what it does with the pure parts: every text message goes through
 * xml_parse_element() (as <open/> and <close/> do) and through an
 * xml_framer_t (the splitter the server's output goes through), whose
 * elements must each start with '<' and end with '>' and are queued back
 * as text messages, as ws_output does. A non-text data message is
 * answered with close 1003 (RFC 7395 §3.3.1), as on_msg_recv does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "xml/frame.h"
#include "xml/parser.h"
#include "xml/stanza.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_STANZA 1024
#define NS_FRAMING      "urn:ietf:params:xml:ns:xmpp-framing"

typedef struct {
    wslay_event_context_ptr ctx;
    const uint8_t *in;
    size_t in_len;
    unsigned send_mode; /* 0 all, 1 seven bytes a call, 2 every third call blocks */
    unsigned send_calls;
    size_t sent;
    xml_framer_t framer;
    unsigned messages;
} fuzz_ws_t;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ws: invariant violated: %s\n", what);
        abort();
    }
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    fuzz_ws_t *w = ud;
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
    fuzz_ws_t *w = ud;
    check(len > 0, "send of nothing");
    w->send_calls++;
    if (w->send_mode == 2 && w->send_calls % 3 == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = w->send_mode == 1 && len > 7 ? 7 : len;
    w->sent += n;
    return (ssize_t)n;
}

static void on_element(void *ud, const char *el, size_t len)
{
    fuzz_ws_t *w = ud;
    check(len >= 2, "framer element shorter than '<>'");
    check(el[0] == '<', "framer element does not start with '<'");
    check(el[len - 1] == '>', "framer element does not end with '>'");
    check(el[1] != '/' && el[1] != '?', "framer emitted an end tag or a PI");
    /* ws_output queues each element as one text message. */
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)el, len};
    int r = wslay_event_queue_msg(w->ctx, &m);
    check(r == 0 || r == WSLAY_ERR_NO_MORE_MSG, "queue_msg failed");
}

/* What websocket.c asks of a message through the XML layer. */
static void parse_message(const char *msg, size_t len)
{
    xml_stanza_t *st = xml_parse_element(msg, len, "", 4096);
    if (!st)
        return;
    xml_node_t *el = xml_stanza_root(st);
    check(el && el->name && el->ns, "parsed element without name or namespace");
    if (strcmp(el->ns, NS_FRAMING) == 0 && strcmp(el->name, "open") == 0) {
        /* feed_open: escaped attributes into a stream header. */
        static const char *const attrs[] = {"to", "from", "version", "xml:lang"};
        char *buf = NULL;
        size_t blen = 0, cap = 0;
        for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
            const char *v = xml_node_attr(el, attrs[i]);
            if (v)
                xml_escape_append(v, strlen(v), &buf, &blen, &cap);
        }
        if (buf)
            check(memchr(buf, '<', blen) == NULL && memchr(buf, '\'', blen) == NULL,
                  "escaped attribute keeps '<' or '''");
        free(buf);
    }
    xml_stanza_unref(st);
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *ud)
{
    fuzz_ws_t *w = ud;
    w->messages++;
    if (wslay_is_ctrl_frame(arg->opcode)) {
        if (arg->opcode == WSLAY_CONNECTION_CLOSE)
            (void)arg->status_code;
        return; /* wslay answers pings and closes */
    }
    check(arg->msg_length <= FUZZ_MAX_STANZA + 1024, "message over the maximum length");
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, NULL, 0);
        return;
    }
    const char *msg = (const char *)arg->msg;
    size_t len = arg->msg_length;
    if (len == 0)
        return; /* on_message drops it as a keepalive (and msg may be NULL) */
    parse_message(msg, len);
    xml_framer_feed(&w->framer, msg, len, on_element, w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    /* Low six bits: read size (0 = everything at once, else 1..63 bytes
     * or, from 32 on, multiples of 16); high two: send behaviour. */
    unsigned rsel = sel & 0x3f;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    size_t chunk = rsel == 0 ? (len ? len : 1) : rsel < 32 ? rsel : (size_t)(rsel - 31) * 16;

    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = on_msg_recv,
    };
    fuzz_ws_t w = {0};
    w.send_mode = (sel >> 6) % 3;
    if (wslay_event_context_server_init(&w.ctx, &cbs, &w) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(w.ctx, FUZZ_MAX_STANZA + 1024);

    bool failed = false;
    for (size_t off = 0; off < len && !failed; off += chunk) {
        w.in = in + off;
        w.in_len = len - off < chunk ? len - off : chunk;
        int r = wslay_event_recv(w.ctx);
        if (r != 0 && r != WSLAY_ERR_WOULDBLOCK)
            failed = true;
        else
            check(w.in_len == 0 || !wslay_event_want_read(w.ctx),
                  "recv left input while still reading");
        w.in = NULL;
        w.in_len = 0;
        if (wslay_event_send(w.ctx) != 0)
            failed = true;
        if (!wslay_event_want_read(w.ctx) && !wslay_event_want_write(w.ctx))
            break; /* close handshake done: the server would drop the socket */
    }
    /* Drain what is queued (a blocked send side unblocks eventually). */
    for (int i = 0; i < 64 && !failed && wslay_event_want_write(w.ctx); i++)
        if (wslay_event_send(w.ctx) != 0)
            failed = true;
    xml_framer_free(&w.framer);
    wslay_event_context_free(w.ctx);
    return 0;
}
