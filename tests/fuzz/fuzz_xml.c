/* SPDX-License-Identifier: MIT
 * fuzz_xml.c - libFuzzer target for the stream parser and the serialiser.
 *
 * The first input byte picks where the rest is split into two feeds and
 * whether the callbacks stop the parser after every stanza (the remainder
 * is then fed again, as a paused connection does) or reset it when the
 * stream closes. The stanza limit is tiny so size checks fire often.
 * Besides the sanitizers, every stanza is checked to round-trip: its
 * serialisation must parse, inside a jabber:client stream, into a stanza
 * that serialises identically, and a copy must serialise identically too.
 *
 * If the lowest bit of the first byte is set, the input is instead fed in
 * chunks (of a size the next five bits pick) to two parsers alike, one of
 * which is asked to hibernate before every feed and from every callback
 * (which must be refused). Both must return the same statuses and byte
 * counts and report the same events, serialised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml/ns.h"
#include "xml/parser.h"
#include "xml/stanza.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_STANZA 512

typedef struct {
    xml_parser_t *p;
    unsigned flags;
    xml_stanza_t *echo; /* stanza received by the round-trip parser */
    int stanzas;
    char *log; /* events, with LOG */
    size_t log_len, log_cap;
} fuzz_ctx_t;

enum { STOP_EACH = 1, RESET_ON_CLOSE = 2, LOG = 4, HIBERNATE = 8, REFERENCE = 16 };

static void log_add(fuzz_ctx_t *c, const char *s, size_t n)
{
    if (c->log_len + n > c->log_cap) {
        size_t cap = (c->log_len + n) * 2 + 64;
        char *q = realloc(c->log, cap);
        if (!q)
            abort();
        c->log = q;
        c->log_cap = cap;
    }
    memcpy(c->log + c->log_len, s, n);
    c->log_len += n;
}

static void log_str(fuzz_ctx_t *c, const char *s)
{
    log_add(c, s, strlen(s) + 1); /* the NUL separates */
}

/* Hibernation from inside a callback must always be refused. */
static void try_hibernate(fuzz_ctx_t *c)
{
    if ((c->flags & HIBERNATE) && xml_parser_hibernate(c->p))
        abort();
}

static void echo_stanza(void *ud, xml_stanza_t *st)
{
    fuzz_ctx_t *c = ud;
    if (c->echo)
        abort(); /* one serialised stanza must parse as exactly one */
    c->echo = st;
}

static void check_roundtrip(const xml_stanza_t *st)
{
    size_t len;
    char *s = xml_node_to_string(xml_stanza_root(st), NS_CLIENT, &len);
    if (!s || strlen(s) != len)
        abort();

    fuzz_ctx_t ec = {0};
    const xml_parser_cb_t cb = {NULL, echo_stanza, NULL};
    ec.p = xml_parser_new(&cb, &ec, SIZE_MAX);
    static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams'>";
    if (!ec.p || xml_parser_feed(ec.p, hdr, sizeof(hdr) - 1, NULL) != XML_PARSE_OK ||
        xml_parser_feed(ec.p, s, len, NULL) != XML_PARSE_OK || !ec.echo)
        abort();
    char *again = xml_node_to_string(xml_stanza_root(ec.echo), NS_CLIENT, NULL);
    if (!again || strcmp(s, again) != 0)
        abort();
    free(again);

    xml_stanza_t *cp = xml_stanza_copy(st);
    again = xml_node_to_string(xml_stanza_root(cp), NS_CLIENT, NULL);
    if (!again || strcmp(s, again) != 0)
        abort();
    free(again);
    xml_stanza_unref(cp);

    xml_stanza_unref(ec.echo);
    xml_parser_free(ec.p);
    free(s);
}

static void on_open(void *ud, const char *name, const char *ns, const char **attrs)
{
    fuzz_ctx_t *c = ud;
    size_t n = 0;
    while (attrs[n])
        n += 2;
    if (!name || !ns)
        abort();
    if (c->flags & LOG) {
        log_str(c, "O");
        log_str(c, name);
        log_str(c, ns);
        for (size_t i = 0; i < n; i++)
            log_str(c, attrs[i]);
    }
    try_hibernate(c);
}

static void on_stanza(void *ud, xml_stanza_t *st)
{
    fuzz_ctx_t *c = ud;
    c->stanzas++;
    try_hibernate(c);
    /* The reference parser's stanzas are compared, not checked again. */
    if (!(c->flags & REFERENCE))
        check_roundtrip(st);
    if (c->flags & LOG) {
        size_t len;
        char *s = xml_node_to_string(xml_stanza_root(st), NS_CLIENT, &len);
        if (!s)
            abort();
        log_str(c, "S");
        log_add(c, s, len + 1);
        free(s);
    }
    const xml_node_t *root = xml_stanza_root(st);
    (void)xml_node_text(root);
    (void)xml_node_child(root, "body", NULL);
    xml_stanza_unref(st);
    if (c->flags & STOP_EACH)
        xml_parser_stop(c->p);
}

static void on_close(void *ud)
{
    fuzz_ctx_t *c = ud;
    if (c->flags & LOG)
        log_str(c, "C");
    try_hibernate(c);
    if (c->flags & RESET_ON_CLOSE)
        xml_parser_reset(c->p);
}

/* Feeds like a connection: after STOPPED the rest goes in again. */
static int feed(fuzz_ctx_t *c, const char *s, size_t len)
{
    while (len) {
        size_t used = 0;
        xml_parse_status_t rc = xml_parser_feed(c->p, s, len, &used);
        if (used > len)
            abort();
        if (rc != XML_PARSE_OK && rc != XML_PARSE_STOPPED)
            return -1;
        if ((rc == XML_PARSE_OK && used != len) || (rc == XML_PARSE_STOPPED && used == 0))
            abort();
        s += used;
        len -= used;
    }
    return 0;
}

/* Feeds a, after asking it to hibernate, and b the same bytes the way feed
 * does; they must agree on every status and byte count. */
static int feed_pair(fuzz_ctx_t *a, fuzz_ctx_t *b, const char *s, size_t len)
{
    while (len) {
        /* Once hibernating, it stays so until fed. */
        if (xml_parser_hibernate(a->p) && !xml_parser_hibernate(a->p))
            abort();
        size_t ua = 0, ub = 0;
        xml_parse_status_t ra = xml_parser_feed(a->p, s, len, &ua);
        xml_parse_status_t rb = xml_parser_feed(b->p, s, len, &ub);
        if (ra != rb || ua != ub || ua > len)
            abort();
        if (ra != XML_PARSE_OK && ra != XML_PARSE_STOPPED)
            return -1;
        if ((ra == XML_PARSE_OK && ua != len) || (ra == XML_PARSE_STOPPED && ua == 0))
            abort();
        s += ua;
        len -= ua;
    }
    return 0;
}

static void fuzz_hibernate(unsigned flags, unsigned sel, const char *in, size_t len)
{
    /* 1 to 16 bytes, or 64 to 1024: splitting tokens and whole stanzas. */
    size_t chunk = sel < 16 ? sel + 1 : (sel - 15) * 64;
    fuzz_ctx_t a = {0}, b = {0};
    a.flags = flags | LOG | HIBERNATE;
    b.flags = flags | LOG | REFERENCE;
    const xml_parser_cb_t cb = {on_open, on_stanza, on_close};
    a.p = xml_parser_new(&cb, &a, FUZZ_MAX_STANZA);
    b.p = xml_parser_new(&cb, &b, FUZZ_MAX_STANZA);
    if (!a.p || !b.p)
        abort();
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        if (feed_pair(&a, &b, in + off, n) != 0)
            break;
    }
    if (a.stanzas != b.stanzas || a.log_len != b.log_len ||
        (a.log_len && memcmp(a.log, b.log, a.log_len) != 0))
        abort();
    xml_parser_free(a.p);
    xml_parser_free(b.p);
    free(a.log);
    free(b.log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        fuzz_hibernate(data[0] >> 6, (data[0] >> 1) & 0x1f, (const char *)data + 1, size - 1);
        return 0;
    }
    fuzz_ctx_t c = {0};
    c.flags = data[0] >> 6;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    size_t split = len ? (size_t)(data[0] & 0x3f) * len / 63 : 0;

    const xml_parser_cb_t cb = {on_open, on_stanza, on_close};
    c.p = xml_parser_new(&cb, &c, FUZZ_MAX_STANZA);
    if (!c.p)
        return 0;
    if (feed(&c, in, split) == 0)
        feed(&c, in + split, len - split);
    (void)xml_parser_error_text(c.p);
    xml_parser_free(c.p);
    return 0;
}
