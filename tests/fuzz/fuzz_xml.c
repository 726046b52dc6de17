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
} fuzz_ctx_t;

enum { STOP_EACH = 1, RESET_ON_CLOSE = 2 };

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
    size_t n = 0;
    while (attrs[n])
        n += 2;
    if (!name || !ns)
        abort();
}

static void on_stanza(void *ud, xml_stanza_t *st)
{
    fuzz_ctx_t *c = ud;
    c->stanzas++;
    check_roundtrip(st);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
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
