/* SPDX-License-Identifier: MIT
 * test_xml.c - unit tests for the XML layer (stanza trees, serialiser,
 * stream parser).
 *
 * Parser tests record every event as a line of text (stream open with its
 * attributes, each stanza serialised, stream close) so that the same input
 * fed whole, byte by byte and in pseudo-random chunks can be compared
 * exactly. The restricted-XML, size and depth cases check the status the
 * stream layer turns into a stream error.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "xml/ns.h"
#include "xml/parser.h"
#include "xml/stanza.h"

#define XMLDECL "<?xml version='1.0'?>"
#define OPEN                                                                                       \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.com' version='1.0' xml:lang='en'>"
#define HDR XMLDECL OPEN
#define HDR_LOG                                                                                    \
    "O stream http://etherx.jabber.org/streams to=example.com version=1.0 xml:lang=en "            \
    "xmlns=jabber:client xmlns:stream=http://etherx.jabber.org/streams\n"

typedef struct {
    xml_parser_t *p;
    char *log;
    size_t log_len, log_cap;
    xml_stanza_t *kept[8];
    int nkept;
    int nstanzas;
    int stop_at;  /* xml_parser_stop when this many stanzas have arrived */
    int reset_at; /* xml_parser_reset likewise */
    int stop_on_open;
    int stop_every;       /* xml_parser_stop after every this many stanzas */
    int hibernate_in_cb;  /* try xml_parser_hibernate in every callback */
    int hibernated_in_cb; /* how often that succeeded */
} ctx_t;

static void log_add(ctx_t *c, const char *s, size_t n)
{
    if (c->log_len + n + 1 > c->log_cap) {
        c->log_cap = (c->log_len + n + 1) * 2;
        c->log = tern_xrealloc(c->log, c->log_cap);
    }
    memcpy(c->log + c->log_len, s, n);
    c->log_len += n;
    c->log[c->log_len] = '\0';
}

static void log_str(ctx_t *c, const char *s)
{
    log_add(c, s, strlen(s));
}

static void cb_open(void *ud, const char *name, const char *ns, const char **attrs)
{
    ctx_t *c = ud;
    log_str(c, "O ");
    log_str(c, name);
    log_str(c, " ");
    log_str(c, ns);
    for (size_t i = 0; attrs[i]; i += 2) {
        log_str(c, " ");
        log_str(c, attrs[i]);
        log_str(c, "=");
        log_str(c, attrs[i + 1]);
    }
    log_str(c, "\n");
    if (c->stop_on_open)
        xml_parser_stop(c->p);
    if (c->hibernate_in_cb)
        c->hibernated_in_cb += xml_parser_hibernate(c->p);
}

static void cb_stanza(void *ud, xml_stanza_t *st)
{
    ctx_t *c = ud;
    size_t len;
    char *s = xml_node_to_string(xml_stanza_root(st), NS_CLIENT, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    log_str(c, "S ");
    log_str(c, s);
    log_str(c, "\n");
    free(s);
    c->nstanzas++;
    if (c->nkept < (int)TERN_ARRAY_LEN(c->kept))
        c->kept[c->nkept++] = st;
    else
        xml_stanza_unref(st);
    if (c->stop_at == c->nstanzas || (c->stop_every && c->nstanzas % c->stop_every == 0))
        xml_parser_stop(c->p);
    if (c->reset_at == c->nstanzas)
        assert_int_equal(xml_parser_reset(c->p), 0);
    if (c->hibernate_in_cb)
        c->hibernated_in_cb += xml_parser_hibernate(c->p);
}

static void cb_close(void *ud)
{
    ctx_t *c = ud;
    log_str(c, "C\n");
    if (c->hibernate_in_cb)
        c->hibernated_in_cb += xml_parser_hibernate(c->p);
}

static const xml_parser_cb_t cbs = {cb_open, cb_stanza, cb_close};

static void ctx_init(ctx_t *c, size_t max)
{
    memset(c, 0, sizeof(*c));
    c->p = xml_parser_new(&cbs, c, max);
    assert_non_null(c->p);
    log_add(c, "", 0);
}

static void ctx_clear_log(ctx_t *c)
{
    c->log_len = 0;
    c->log[0] = '\0';
}

static void ctx_free(ctx_t *c)
{
    for (int i = 0; i < c->nkept; i++)
        xml_stanza_unref(c->kept[i]);
    xml_parser_free(c->p);
    free(c->log);
}

/* Feeds s in chunks of `chunk` bytes (0: pseudo-random sizes from seed).
 * Stops at the first status other than OK; *fed gets the bytes consumed. */
static xml_parse_status_t feed_chunks(ctx_t *c, const char *s, size_t len, size_t chunk,
                                      unsigned seed, size_t *fed)
{
    size_t off = 0;
    xml_parse_status_t rc = XML_PARSE_OK;
    while (off < len) {
        size_t n = chunk;
        if (!n) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 97;
        }
        if (n > len - off)
            n = len - off;
        size_t used = 0;
        rc = xml_parser_feed(c->p, s + off, n, &used);
        off += used;
        if (rc != XML_PARSE_OK)
            break;
        assert_int_equal(used, n);
    }
    if (fed)
        *fed = off;
    return rc;
}

static xml_parse_status_t parse_str(ctx_t *c, const char *s)
{
    return feed_chunks(c, s, strlen(s), strlen(s) + 1, 0, NULL);
}

/* One-shot: parses HDR + body with the given limit, returns the status. */
static xml_parse_status_t parse_once(const char *body, size_t max)
{
    ctx_t c;
    ctx_init(&c, max);
    xml_parse_status_t rc = parse_str(&c, HDR);
    if (rc == XML_PARSE_OK)
        rc = parse_str(&c, body);
    /* A dead parser keeps reporting its status. */
    if (rc != XML_PARSE_OK && rc != XML_PARSE_STOPPED) {
        size_t used = 99;
        assert_int_equal(xml_parser_feed(c.p, "<a/>", 4, &used), rc);
        assert_int_equal(used, 0);
        assert_true(strlen(xml_parser_error_text(c.p)) > 0);
    }
    ctx_free(&c);
    return rc;
}

static void test_stream_chunking(void **state)
{
    static const char doc[] =
        HDR "<message to='a@b' type='chat' id='m1'><body>hi &amp; bye</body></message>\n"
            "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
            "<presence><status>caf\xc3\xa9 \xf0\x9f\x98\x80</status><x:c xmlns:x='urn:c' "
            "x:k='v'/></presence>  "
            "</stream:stream>";
    static const char want[] =
        HDR_LOG "S <message to='a@b' type='chat' id='m1'><body>hi &amp; bye</body></message>\n"
                "S <iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\n"
                "S <presence><status>caf\xc3\xa9 \xf0\x9f\x98\x80</status><c xmlns='urn:c' "
                "xmlns:ns0='urn:c' ns0:k='v'/></presence>\n"
                "C\n";
    size_t len = strlen(doc);
    for (size_t chunk = 0; chunk <= len; chunk = chunk < 8 ? chunk + 1 : chunk * 3) {
        for (unsigned seed = 1; seed <= (chunk ? 1u : 20u); seed++) {
            ctx_t c;
            ctx_init(&c, 10000);
            size_t fed;
            assert_int_equal(feed_chunks(&c, doc, len, chunk, seed, &fed), XML_PARSE_OK);
            assert_int_equal(fed, len);
            assert_string_equal(c.log, want);
            assert_int_equal(c.nstanzas, 3);
            ctx_free(&c);
        }
    }
}

static void test_namespaces(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR "<x:foo xmlns:x='urn:a' x:attr='1' plain='2'>"
                                       "<x:bar/><baz xmlns='urn:b'><q/></baz><y:z xmlns:y='"
                                       "jabber:client'/></x:foo>"
                                       "<iq xmlns='jabber:server'/><m xmlns=''/>"),
                     XML_PARSE_OK);
    assert_int_equal(c.nkept, 3);
    xml_node_t *foo = xml_stanza_root(c.kept[0]);
    assert_true(xml_node_is(foo, "foo", "urn:a"));
    assert_string_equal(xml_node_attr(foo, "urn:a|attr"), "1");
    assert_string_equal(xml_node_attr(foo, "plain"), "2");
    assert_null(xml_node_attr(foo, "attr"));
    xml_node_t *bar = xml_node_child(foo, "bar", "urn:a");
    assert_non_null(bar);
    /* Children in the parent's namespace share its string. */
    assert_ptr_equal(bar->ns, foo->ns);
    xml_node_t *baz = xml_node_next(bar, NULL, "urn:b");
    assert_non_null(baz);
    assert_true(xml_node_is(xml_node_first_element(baz), "q", "urn:b"));
    assert_true(xml_node_is(xml_node_next(baz, NULL, NULL), "z", NS_CLIENT));
    assert_true(xml_node_is(xml_stanza_root(c.kept[1]), "iq", NS_SERVER));
    assert_true(xml_node_is(xml_stanza_root(c.kept[2]), "m", ""));
    assert_string_equal(c.log,
                        HDR_LOG "S <foo xmlns='urn:a' xmlns:ns0='urn:a' ns0:attr='1' plain='2'>"
                                "<bar/><baz xmlns='urn:b'><q/></baz><z xmlns='jabber:client'/>"
                                "</foo>\n"
                                "S <iq xmlns='jabber:server'/>\n"
                                "S <m xmlns=''/>\n");
    /* Elements in the xml namespace keep the reserved prefix, and do not
     * change the default namespace for their children. */
    ctx_clear_log(&c);
    assert_int_equal(parse_str(&c, "<m><xml:foo a='1'><bar/><xml:x><y/></xml:x></xml:foo></m>"),
                     XML_PARSE_OK);
    assert_string_equal(c.log, "S <m><xml:foo a='1'><bar/><xml:x><y/></xml:x></xml:foo></m>\n");
    char *xs =
        xml_node_to_string(xml_node_first_element(xml_stanza_root(c.kept[3])), "urn:q", NULL);
    assert_string_equal(xs, "<xml:foo a='1'><bar xmlns='jabber:client'/><xml:x><y "
                            "xmlns='jabber:client'/></xml:x></xml:foo>");
    free(xs);
    /* Serialising in another scope changes only the root's declaration. */
    char *s = xml_node_to_string(bar, "urn:a", NULL);
    assert_string_equal(s, "<bar/>");
    free(s);
    s = xml_node_to_string(xml_stanza_root(c.kept[2]), "", NULL);
    assert_string_equal(s, "<m/>");
    free(s);
    s = xml_node_to_string(xml_stanza_root(c.kept[2]), NULL, NULL);
    assert_string_equal(s, "<m/>");
    free(s);
    ctx_free(&c);
}

/* Serialises a stanza, parses the result and checks it serialises the same. */
static char *roundtrip(const xml_stanza_t *st, xml_stanza_t **back)
{
    char *s = xml_node_to_string(xml_stanza_root(st), NS_CLIENT, NULL);
    assert_non_null(s);
    ctx_t c;
    ctx_init(&c, 100000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_int_equal(parse_str(&c, s), XML_PARSE_OK);
    assert_int_equal(c.nkept, 1);
    char *again = xml_node_to_string(xml_stanza_root(c.kept[0]), NS_CLIENT, NULL);
    assert_string_equal(again, s);
    free(again);
    *back = xml_stanza_ref(c.kept[0]);
    ctx_free(&c);
    return s;
}

static void test_escaping(void **state)
{
    static const char nasty[] = "<a&b>\"q\" 'a' ]]> \t\n\r end";
    xml_stanza_t *st = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *m = xml_stanza_root(st);
    xml_node_set_attr(m, "to", nasty);
    xml_node_set_attr(m, "xml:lang", "de");
    xml_node_set_attr(m, "urn:x|k", "1");
    xml_node_set_attr(m, "urn:y|k", "2");
    xml_node_set_attr(m, "urn:x|j", "3");
    xml_node_set_attr(m, "xmlns", "urn:ignored");
    xml_node_add_child_text(m, "body", NULL, nasty);
    xml_node_t *ctl = xml_node_add_child(m, "ctl", NULL);
    xml_node_add_text(ctl,
                      "a\x01"
                      "b\x1f"
                      "c",
                      5);

    char *s = xml_node_to_string(m, NS_CLIENT, NULL);
    assert_string_equal(s, "<message to='&lt;a&amp;b&gt;&quot;q&quot; &apos;a&apos; ]]&gt; "
                           "&#9;&#10;&#13; end' xml:lang='de' xmlns:ns0='urn:x' ns0:k='1' "
                           "xmlns:ns1='urn:y' ns1:k='2' ns0:j='3'><body>&lt;a&amp;b&gt;\"q\" "
                           "'a' ]]&gt; \t\n&#13; end</body><ctl>abc</ctl></message>");
    free(s);

    xml_stanza_t *back;
    s = roundtrip(st, &back);
    free(s);
    xml_node_t *r = xml_stanza_root(back);
    assert_string_equal(xml_node_attr(r, "to"), nasty);
    assert_string_equal(xml_node_attr(r, "xml:lang"), "de");
    assert_string_equal(xml_node_attr(r, "urn:x|k"), "1");
    assert_string_equal(xml_node_attr(r, "urn:y|k"), "2");
    assert_string_equal(xml_node_attr(r, "urn:x|j"), "3");
    assert_null(xml_node_attr(r, "xmlns"));
    assert_string_equal(xml_node_text(xml_node_child(r, "body", NS_CLIENT)), nasty);
    assert_string_equal(xml_node_text(xml_node_child(r, "ctl", NULL)), "abc");
    xml_stanza_unref(back);

    /* More attribute namespaces than the serialiser's prefix table. */
    xml_node_t *many = xml_node_add_child(m, "many", "urn:m");
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof(name), "urn:n%d|a", i % 12);
        name[strlen(name) - 1] = (char)('a' + i);
        xml_node_set_attr(many, name, "v");
    }
    s = roundtrip(st, &back);
    free(s);
    xml_node_t *many2 = xml_node_child(xml_stanza_root(back), "many", "urn:m");
    int n = 0;
    for (xml_attr_t *a = many2->attrs; a; a = a->next)
        n++;
    assert_int_equal(n, 20);
    assert_string_equal(xml_node_attr(many2, "urn:n11|l"), "v");
    assert_string_equal(xml_node_attr(many2, "urn:n7|t"), "v");
    xml_stanza_unref(back);

    /* xml_escape_append appends, and grows a caller buffer. */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(xml_escape_append("a<", 2, &buf, &len, &cap), 0);
    assert_int_equal(xml_escape_append("'&", 2, &buf, &len, &cap), 0);
    assert_int_equal(len, strlen("a&lt;&apos;&amp;"));
    assert_memory_equal(buf, "a&lt;&apos;&amp;", len);
    free(buf);
    xml_stanza_unref(st);
}

static void test_xml_lang(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR "<message xml:lang='fr' xml:space='preserve'><body "
                                       "xml:lang='de'>x</body></message>"),
                     XML_PARSE_OK);
    xml_node_t *m = xml_stanza_root(c.kept[0]);
    assert_string_equal(xml_node_attr(m, "xml:lang"), "fr");
    assert_string_equal(xml_node_attr(m, "xml:space"), "preserve");
    assert_string_equal(xml_node_attr(xml_node_child(m, "body", NULL), "xml:lang"), "de");
    assert_string_equal(c.log, HDR_LOG "S <message xml:lang='fr' xml:space='preserve'><body "
                                       "xml:lang='de'>x</body></message>\n");
    ctx_free(&c);
}

static void test_keepalive(void **state)
{
    ctx_t c;
    ctx_init(&c, 200);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    /* Far more whitespace than the stanza limit, in many feeds. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(parse_str(&c, " \n\t\r\n "), XML_PARSE_OK);
    char big[20000];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse_str(&c, big), XML_PARSE_OK);
    assert_int_equal(parse_str(&c, "<presence/> "), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 1);
    ctx_free(&c);

    assert_int_equal(parse_once(" x ", 200), XML_PARSE_NOT_WELL_FORMED);
    assert_int_equal(parse_once("<a/>x", 200), XML_PARSE_NOT_WELL_FORMED);
    assert_int_equal(parse_once("&amp;", 200), XML_PARSE_NOT_WELL_FORMED);
}

static void test_restricted(void **state)
{
    static const char *const prolog[] = {
        "<!DOCTYPE stream:stream>" OPEN,
        "<!DOCTYPE a [<!ENTITY foo 'bar'>]><a>&foo;</a>",
        "<!-- hi --><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        "<?pi x?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;'>"
        "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
        "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]><lolz>&lol3;</lolz>",
        "<!DOCTYPE a SYSTEM 'file:///etc/passwd'><a/>",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(prolog); i++) {
        ctx_t c;
        ctx_init(&c, 10000);
        assert_int_equal(parse_str(&c, prolog[i]), XML_PARSE_RESTRICTED);
        /* Not even the stream header may have been reported for the DTD cases. */
        assert_null(strstr(c.log, "lol"));
        ctx_free(&c);
    }
    static const char *const body[] = {
        "<message><!-- c --></message>",
        "<!-- between -->",
        "<message><?pi?></message>",
        "<?pi?>",
        "<message><body>&foo;</body></message>",
        "<message to='&foo;'/>",
        "<message>&lol9;</message>",
        "<message><!DOCTYPE x></message>",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(body); i++) {
        xml_parse_status_t rc = parse_once(body[i], 10000);
        /* A DOCTYPE inside content is simply not well-formed. */
        if (i == TERN_ARRAY_LEN(body) - 1)
            assert_int_equal(rc, XML_PARSE_NOT_WELL_FORMED);
        else
            assert_int_equal(rc, XML_PARSE_RESTRICTED);
    }
    /* Fed one byte at a time the outcome is the same. */
    ctx_t c;
    ctx_init(&c, 10000);
    static const char bl[] = HDR "<message><body>&lol;</body></message>";
    assert_int_equal(feed_chunks(&c, bl, strlen(bl), 1, 0, NULL), XML_PARSE_RESTRICTED);
    ctx_free(&c);
}

static void test_entities_ok(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(
        parse_str(&c, "<?xml version='1.0' encoding='UTF-8'?>\n" OPEN
                      "<message a='&lt;&#x41;&quot;'><body>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;"
                      "&#x1F600;<![CDATA[<raw&>]]>z</body></message>"),
        XML_PARSE_OK);
    xml_node_t *m = xml_stanza_root(c.kept[0]);
    assert_string_equal(xml_node_attr(m, "a"), "<A\"");
    xml_node_t *body = xml_node_child(m, "body", NS_CLIENT);
    /* One text node for all the adjacent pieces. */
    assert_non_null(body->children);
    assert_ptr_equal(body->children, body->last_child);
    assert_int_equal(body->children->type, XML_NODE_TEXT);
    assert_string_equal(xml_node_text(body), "<>&\"'AB\xf0\x9f\x98\x80<raw&>z");
    assert_int_equal(body->children->text_len, strlen(xml_node_text(body)));
    ctx_free(&c);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "<a></b>",
        "<a b='1' b='2'/>",
        "<a b=1/>",
        "<a>\xff\xfe</a>",
        "<a>\xc3</a>",
        "<p:a/>",
        "<a xmlns:p=''/>",
        "</stream:stream><a/>",
        "<a>\x01</a>",
        "<a>&#0;</a>",
        "<a xmlns:q='urn:a|b'/>",
        "<?xml version='1.0'?>",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
        assert_int_equal(parse_once(bad[i], 10000), XML_PARSE_NOT_WELL_FORMED);
    }
    ctx_t c;
    ctx_init(&c, 10000);
    /* expat needs to see where the token ends. */
    assert_int_equal(parse_str(&c, "hello "), XML_PARSE_NOT_WELL_FORMED);
    ctx_free(&c);
}

static void test_wrong_header(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, "<foo xmlns='bar' a='b'><x/>"), XML_PARSE_OK);
    assert_string_equal(c.log, "O foo bar a=b xmlns=bar\nS <x xmlns='bar'/>\n");
    ctx_free(&c);

    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, "<stream:stream xmlns:stream='urn:wrong' xmlns:db='jabber:"
                                   "server:dialback' xmlns='jabber:server'>"),
                     XML_PARSE_OK);
    assert_string_equal(c.log, "O stream urn:wrong xmlns:stream=urn:wrong xmlns:db=jabber:server:"
                               "dialback xmlns=jabber:server\n");
    ctx_free(&c);

    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, "<stream/>"), XML_PARSE_OK);
    assert_string_equal(c.log, "O stream \nC\n");
    ctx_free(&c);
}

static void test_too_big(void **state)
{
    const size_t max = 10000, chunk = 64 * 1024;
    ctx_t c;
    ctx_init(&c, max);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_int_equal(parse_str(&c, "<message><body>"), XML_PARSE_OK);
    char *junk = tern_xmalloc(chunk);
    memset(junk, 'a', chunk);
    size_t total = 0;
    xml_parse_status_t rc = XML_PARSE_OK;
    while (total < 10 * 1024 * 1024) {
        rc = xml_parser_feed(c.p, junk, chunk, NULL);
        total += chunk;
        if (rc != XML_PARSE_OK)
            break;
    }
    assert_int_equal(rc, XML_PARSE_TOO_BIG);
    assert_true(total <= max + chunk);
    ctx_free(&c);

    /* The same, as one start tag that never ends, fed at once. */
    ctx_init(&c, max);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    for (size_t i = 0; i + 6 < chunk; i += 6)
        memcpy(junk + i, " a='b'", 6);
    memcpy(junk, "<iq   ", 6);
    size_t used;
    assert_int_equal(xml_parser_feed(c.p, junk, chunk, &used), XML_PARSE_TOO_BIG);
    assert_true(used <= max + 4096);
    ctx_free(&c);

    /* A stanza over the limit that arrives whole, in one small feed. */
    char *st = tern_xmalloc(max + 100);
    memset(st, 'x', max + 100);
    memcpy(st, "<message><body>", 15);
    strcpy(st + max + 100 - 20, "</body></message>");
    assert_int_equal(parse_once(st, max), XML_PARSE_TOO_BIG);
    assert_int_equal(parse_once(st, max + 100), XML_PARSE_OK);
    /* Exactly at the limit is fine, one more byte is not. */
    size_t exact = strlen(st);
    assert_int_equal(parse_once(st, exact), XML_PARSE_OK);
    assert_int_equal(parse_once(st, exact - 1), XML_PARSE_TOO_BIG);
    free(st);

    /* An endless stream header. */
    ctx_init(&c, max);
    memcpy(junk, "<strm ", 6);
    assert_int_equal(xml_parser_feed(c.p, junk, chunk, &used), XML_PARSE_TOO_BIG);
    assert_int_equal(c.log_len, 0);
    ctx_free(&c);

    /* Many stanzas each under the limit add up to far more than it. */
    ctx_init(&c, 200);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(parse_str(&c, "<presence><show>away</show></presence>"), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 2000);
    ctx_free(&c);
    free(junk);
}

static char *nested(int levels)
{
    char *s = tern_xmalloc((size_t)levels * 8 + 1);
    char *w = s;
    for (int i = 0; i < levels; i++)
        w += sprintf(w, "<a>");
    for (int i = 0; i < levels; i++)
        w += sprintf(w, "</a>");
    return s;
}

static void test_depth(void **state)
{
    /* The stanza is depth 1; XML_MAX_DEPTH is the deepest element allowed. */
    char *ok = nested(XML_MAX_DEPTH);
    char *deep = nested(XML_MAX_DEPTH + 1);
    char *very = nested(100000);
    assert_int_equal(parse_once(ok, 1 << 20), XML_PARSE_OK);
    assert_int_equal(parse_once(deep, 1 << 20), XML_PARSE_TOO_BIG);
    assert_int_equal(parse_once(very, 1 << 20), XML_PARSE_TOO_BIG);
    free(ok);
    free(deep);
    free(very);
}

static void test_reset(void **state)
{
    static const char in[] =
        HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" HDR "<iq type='set'/><presence/>";
    size_t first = strlen(HDR) + strlen("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");

    /* Reset from inside the callback: feed stops right after the stanza. */
    for (size_t chunk = 1; chunk <= sizeof(in); chunk = chunk * 2 + 1) {
        ctx_t c;
        ctx_init(&c, 10000);
        c.reset_at = 1;
        size_t fed;
        xml_parse_status_t rc = feed_chunks(&c, in, strlen(in), chunk, 0, &fed);
        assert_int_equal(rc, XML_PARSE_STOPPED);
        assert_int_equal(fed, first);
        assert_int_equal(feed_chunks(&c, in + fed, strlen(in) - fed, chunk, 0, &fed), XML_PARSE_OK);
        assert_string_equal(c.log,
                            HDR_LOG "S <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n" HDR_LOG
                                    "S <iq type='set'/>\nS <presence/>\n");
        ctx_free(&c);
    }

    /* Stop in the callback, reset afterwards, as after STARTTLS. */
    ctx_t c;
    ctx_init(&c, 10000);
    c.stop_at = 1;
    size_t used;
    assert_int_equal(xml_parser_feed(c.p, in, strlen(in), &used), XML_PARSE_STOPPED);
    assert_int_equal(used, first);
    assert_int_equal(xml_parser_reset(c.p), 0);
    assert_int_equal(xml_parser_feed(c.p, in + used, strlen(in) - used, &used), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 3);

    /* A dead parser comes back with a reset. */
    assert_int_equal(parse_str(&c, "<bad"), XML_PARSE_OK);
    assert_int_equal(parse_str(&c, "<<"), XML_PARSE_NOT_WELL_FORMED);
    assert_int_equal(xml_parser_reset(c.p), 0);
    ctx_clear_log(&c);
    assert_int_equal(parse_str(&c, HDR "<presence/>"), XML_PARSE_OK);
    assert_string_equal(c.log, HDR_LOG "S <presence/>\n");
    /* Bytes of an unfinished token before the reset are forgotten. */
    assert_int_equal(parse_str(&c, "<message to='x"), XML_PARSE_OK);
    assert_int_equal(xml_parser_reset(c.p), 0);
    ctx_clear_log(&c);
    assert_int_equal(parse_str(&c, HDR "<presence/>"), XML_PARSE_OK);
    assert_string_equal(c.log, HDR_LOG "S <presence/>\n");
    ctx_free(&c);
}

static void test_stop_consumed(void **state)
{
    /* Enough stanzas that the stop lands beyond the first 4 KB slice. */
    char *in = tern_xmalloc(64 * 1024);
    size_t len = (size_t)sprintf(in, "%s", HDR);
    size_t ends[300];
    for (int i = 0; i < 300; i++) {
        len += (size_t)sprintf(
            in + len,
            i % 3 ? "<message id='%d'><body>%d</body></message>" : "<presence id='%d'/>\n", i, i);
        /* The stop comes at the end tag, before the newline. */
        ends[i] = len - (i % 3 ? 0 : 1);
    }
    len += (size_t)sprintf(in + len, "</stream:stream>");
    const int stops[] = {1, 2, 3, 150, 299, 300};
    const size_t chunks[] = {1, 7, 4096, 5000, 64 * 1024};
    for (size_t si = 0; si < TERN_ARRAY_LEN(stops); si++) {
        for (size_t ci = 0; ci < TERN_ARRAY_LEN(chunks); ci++) {
            ctx_t c;
            ctx_init(&c, 10000);
            c.stop_at = stops[si];
            size_t fed;
            assert_int_equal(feed_chunks(&c, in, len, chunks[ci], 0, &fed), XML_PARSE_STOPPED);
            assert_int_equal(fed, ends[stops[si] - 1]);
            assert_int_equal(c.nstanzas, stops[si]);
            /* Continuing with the rest delivers everything exactly once. */
            size_t more;
            assert_int_equal(feed_chunks(&c, in + fed, len - fed, chunks[ci], 0, &more),
                             XML_PARSE_OK);
            assert_int_equal(fed + more, len);
            assert_int_equal(c.nstanzas, 300);
            assert_non_null(strstr(c.log,
                                   "S <presence id='297'/>\nS <message id='298'><body>298</body>"
                                   "</message>\nS <message id='299'><body>299</body>"
                                   "</message>\nC\n"));
            ctx_free(&c);
        }
    }

    /* Stopping on the stream header. */
    ctx_t c;
    ctx_init(&c, 10000);
    c.stop_on_open = 1;
    size_t used;
    assert_int_equal(xml_parser_feed(c.p, in, len, &used), XML_PARSE_STOPPED);
    assert_int_equal(used, strlen(HDR));
    assert_int_equal(c.nstanzas, 0);
    c.stop_on_open = 0;
    /* An empty feed while stopped changes nothing. */
    assert_int_equal(xml_parser_feed(c.p, in + used, 0, NULL), XML_PARSE_OK);
    assert_int_equal(xml_parser_feed(c.p, in + used, len - used, &used), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 300);

    /* stop outside a callback has no effect. */
    xml_parser_stop(c.p);
    assert_int_equal(xml_parser_feed(c.p, "  ", 2, &used), XML_PARSE_OK);
    assert_int_equal(used, 2);
    ctx_free(&c);

    /* Stop on the closing tag. */
    ctx_init(&c, 10000);
    c.stop_at = 300;
    assert_int_equal(xml_parser_feed(c.p, in, len, &used), XML_PARSE_STOPPED);
    assert_int_equal(used, ends[299]);
    assert_int_equal(xml_parser_feed(c.p, in + used, len - used, &used), XML_PARSE_OK);
    assert_non_null(strstr(c.log, "C\n"));
    ctx_free(&c);
    free(in);
}

static void test_no_deferral(void **state)
{
    /* expat >= 2.6 may hold back a completed token until "enough" further
     * input arrives; on a stream waiting for our answer that is a hang. A
     * big stanza first leaves expat's buffer with room to spare, which is
     * what triggers the deferral. */
    ctx_t c;
    ctx_init(&c, 100000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    char *buf = tern_xmalloc(40000);
    memset(buf, 'x', 40000);
    memcpy(buf, "<iq id='", 8);
    memcpy(buf + 30000, "'/>", 3);
    assert_int_equal(xml_parser_feed(c.p, buf, 30003, NULL), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 1);
    memcpy(buf + 2500, "'/>", 3);
    assert_int_equal(xml_parser_feed(c.p, buf, 2000, NULL), XML_PARSE_OK);
    assert_int_equal(xml_parser_feed(c.p, buf + 2000, 503, NULL), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 2);
    free(buf);
    ctx_free(&c);
}

/* Feeds in chunks like a connection would: after STOPPED the rest of the
 * chunk is fed next. Checks each stop lands on the end of a stanza. */
static void feed_with_stops(ctx_t *c, const char *in, size_t len, size_t chunk, unsigned seed,
                            const size_t *ends)
{
    size_t off = 0, left = 0;
    int stops = 0;
    while (off < len) {
        if (!left) {
            left = chunk;
            if (!left) {
                seed = seed * 1103515245u + 12345u;
                left = 1 + (seed >> 8) % 9000;
            }
            if (left > len - off)
                left = len - off;
        }
        size_t used = 0;
        xml_parse_status_t rc = xml_parser_feed(c->p, in + off, left, &used);
        if (rc == XML_PARSE_STOPPED) {
            assert_true(c->nstanzas > 0);
            assert_int_equal(off + used, ends[c->nstanzas - 1]);
            stops++;
        } else {
            assert_int_equal(rc, XML_PARSE_OK);
            assert_int_equal(used, left);
        }
        off += used;
        left -= used;
    }
    if (c->stop_every)
        assert_int_equal(stops, c->nstanzas / c->stop_every);
}

static void test_renewal(void **state)
{
    /* Megabytes of stanzas with ever new names: the parser renews expat
     * several times on the way; nothing may be lost, doubled or moved. */
    enum { N = 8000 };
    size_t cap = 4 * 1024 * 1024;
    char *in = tern_xmalloc(cap);
    size_t *ends = tern_xmalloc(N * sizeof(*ends));
    size_t len = (size_t)sprintf(in, "%s", HDR);
    for (int i = 0; i < N; i++) {
        len += (size_t)sprintf(in + len,
                               "<m%d xmlns='urn:%d' a%d='v' xmlns:p='urn:p'><b p:c='%d'>t%d &amp; "
                               "%d</b><pad>%0*d</pad></m%d>",
                               i, i % 7, i, i, i, i, (i * 37) % 150, 0, i);
        ends[i] = len;
        if (i % 5 == 0)
            len += (size_t)sprintf(in + len, "\n");
    }
    len += (size_t)sprintf(in + len, "</stream:stream>");
    assert_true(len < cap);
    assert_true(len > 1024 * 1024);

    ctx_t ref;
    ctx_init(&ref, 10000);
    assert_int_equal(xml_parser_feed(ref.p, in, len, NULL), XML_PARSE_OK);
    assert_int_equal(ref.nstanzas, N);

    const size_t chunks[] = {1, 100, 4095, 4096, 4097, 65536, 0, 0};
    const int every[] = {0, 1, 7, 500};
    for (size_t ci = 0; ci < TERN_ARRAY_LEN(chunks); ci++) {
        for (size_t ei = 0; ei < TERN_ARRAY_LEN(every); ei++) {
            /* Byte-by-byte with a stop after every stanza is slow and
             * adds nothing the other combinations do not cover. */
            if (chunks[ci] == 1 && every[ei] == 1)
                continue;
            ctx_t c;
            ctx_init(&c, 10000);
            c.stop_every = every[ei];
            feed_with_stops(&c, in, len, chunks[ci], (unsigned)(ci * 31 + ei), ends);
            assert_int_equal(c.nstanzas, N);
            assert_int_equal(c.log_len, ref.log_len);
            assert_string_equal(c.log, ref.log);
            ctx_free(&c);
        }
    }
    ctx_free(&ref);

    /* The stanza limit still applies after a renewal. */
    ctx_t c;
    ctx_init(&c, 500);
    assert_int_equal(xml_parser_feed(c.p, in, ends[N - 1], NULL), XML_PARSE_OK);
    char big[600];
    memset(big, 'x', sizeof(big));
    memcpy(big, "<a>", 3);
    assert_int_equal(xml_parser_feed(c.p, big, sizeof(big), NULL), XML_PARSE_TOO_BIG);
    ctx_free(&c);
    free(ends);
    free(in);
}

/* Feeds like feed_chunks, but tries to hibernate before every feed, also
 * before feeding the rest after STOPPED, which it does like a connection.
 * Returns how often hibernation succeeded. */
static int feed_hibernating(ctx_t *c, const char *s, size_t len, size_t chunk, unsigned seed)
{
    size_t off = 0, left = 0;
    int slept = 0;
    while (off < len) {
        if (!left) {
            left = chunk;
            if (!left) {
                seed = seed * 1103515245u + 12345u;
                left = 1 + (seed >> 16) % 97;
            }
            if (left > len - off)
                left = len - off;
        }
        slept += xml_parser_hibernate(c->p);
        size_t used = 0;
        xml_parse_status_t rc = xml_parser_feed(c->p, s + off, left, &used);
        if (rc == XML_PARSE_STOPPED) {
            assert_true(used > 0);
        } else {
            assert_int_equal(rc, XML_PARSE_OK);
            assert_int_equal(used, left);
        }
        off += used;
        left -= used;
    }
    return slept;
}

/* The header declares a prefix that only later stanzas use. */
#define FOO_OPEN                                                                                   \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "xmlns:foo='urn:foo' to='example.com' version='1.0'>"
#define FOO_STANZAS                                                                                \
    "<foo:x/>"                                                                                     \
    " \n"                                                                                          \
    "<message to='a@b' id='m1'><body>hi &amp; bye</body><foo:y foo:a='1' b='2'><z/></foo:y>"       \
    "</message>\n"                                                                                 \
    "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\r\n"                                \
    "<presence><foo:c xmlns:foo='urn:other'><foo:d/></foo:c><foo:e/></presence>\t"                 \
    "<foo:x xmlns='urn:def'><w/></foo:x>"                                                          \
    "<message><body>caf\xc3\xa9 \xf0\x9f\x98\x80</body></message>   "
#define FOO_LOG                                                                                    \
    "O stream http://etherx.jabber.org/streams to=example.com version=1.0 xmlns=jabber:client "    \
    "xmlns:stream=http://etherx.jabber.org/streams xmlns:foo=urn:foo\n"                            \
    "S <x xmlns='urn:foo'/>\n"                                                                     \
    "S <message to='a@b' id='m1'><body>hi &amp; bye</body><y xmlns='urn:foo' "                     \
    "xmlns:ns0='urn:foo' ns0:a='1' b='2'><z xmlns='jabber:client'/></y></message>\n"               \
    "S <iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>\n"                                \
    "S <presence><c xmlns='urn:other'><d/></c><e xmlns='urn:foo'/></presence>\n"                   \
    "S <x xmlns='urn:foo'><w xmlns='urn:def'/></x>\n"                                              \
    "S <message><body>caf\xc3\xa9 \xf0\x9f\x98\x80</body></message>\n"

static void test_hibernate_equivalent(void **state)
{
    static const char doc[] = XMLDECL FOO_OPEN FOO_STANZAS "</stream:stream>";
    size_t len = strlen(doc);

    ctx_t ref;
    ctx_init(&ref, 10000);
    assert_int_equal(parse_str(&ref, doc), XML_PARSE_OK);
    assert_string_equal(ref.log, FOO_LOG "C\n");
    assert_int_equal(ref.nkept, 6);
    assert_true(xml_node_is(xml_stanza_root(ref.kept[0]), "x", "urn:foo"));

    /* Hibernating before every chunk, whatever the chunking, with and
     * without a stop after each stanza, changes nothing. */
    for (size_t chunk = 0; chunk <= len; chunk = chunk < 8 ? chunk + 1 : chunk * 3) {
        for (unsigned seed = 1; seed <= (chunk ? 1u : 20u); seed++) {
            for (int stop = 0; stop <= 1; stop++) {
                ctx_t c;
                ctx_init(&c, 10000);
                c.stop_every = stop;
                int slept = feed_hibernating(&c, doc, len, chunk, seed);
                assert_string_equal(c.log, ref.log);
                assert_int_equal(c.nkept, ref.nkept);
                for (int i = 0; i < c.nkept; i++) {
                    const xml_node_t *a = xml_stanza_root(c.kept[i]);
                    const xml_node_t *b = xml_stanza_root(ref.kept[i]);
                    assert_string_equal(a->name, b->name);
                    assert_string_equal(a->ns, b->ns);
                }
                /* Byte by byte it succeeds at every gap between stanzas
                 * and within the whitespace there (but for the CR of a
                 * CRLF): 7 gaps, 15 places. Bigger chunks end in a gap
                 * less often. */
                if (chunk == 1)
                    assert_int_equal(slept, 15);
                else if (chunk && chunk < 8)
                    assert_true(slept >= 1);
                ctx_free(&c);
            }
        }
    }
    ctx_free(&ref);

    /* Stanza by stanza, hibernating after each: every attempt succeeds
     * and expat is gone each time. */
    static const char *const parts[] = {
        "<foo:x/>",
        " \n",
        "<message><foo:y foo:a='1'/></message>",
        "\r\n",
        "<presence/>",
        "<iq xmlns:bar='urn:bar'><bar:q/></iq>",
        "<foo:x><foo:x/></foo:x>",
    };
    ctx_t c;
    ctx_init(&c, 10000);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, XMLDECL FOO_OPEN), XML_PARSE_OK);
    size_t awake = xml_parser_mem(c.p);
    assert_true(xml_parser_hibernate(c.p));
    size_t asleep = xml_parser_mem(c.p);
    assert_true(asleep + 10000 < awake);
    assert_true(asleep < 1024);
    /* Asking again is harmless. */
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_mem(c.p), asleep);
    for (size_t i = 0; i < TERN_ARRAY_LEN(parts); i++) {
        assert_int_equal(parse_str(&c, parts[i]), XML_PARSE_OK);
        assert_true(xml_parser_mem(c.p) > asleep + 10000);
        assert_true(xml_parser_hibernate(c.p));
        assert_int_equal(xml_parser_mem(c.p), asleep);
    }
    assert_string_equal(c.log, "O stream http://etherx.jabber.org/streams to=example.com "
                               "version=1.0 xmlns=jabber:client xmlns:stream=http://"
                               "etherx.jabber.org/streams xmlns:foo=urn:foo\n"
                               "S <x xmlns='urn:foo'/>\n"
                               "S <message><y xmlns='urn:foo' xmlns:ns0='urn:foo' ns0:a='1'/>"
                               "</message>\n"
                               "S <presence/>\n"
                               "S <iq><q xmlns='urn:bar'/></iq>\n"
                               "S <x xmlns='urn:foo'><x/></x>\n");
    /* A prefix declared inside an earlier stanza stays out of scope. */
    assert_int_equal(parse_str(&c, "<bar:q/>"), XML_PARSE_NOT_WELL_FORMED);
    ctx_free(&c);
}

static void test_hibernate_refused(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    /* No header yet, or only part of it. */
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, XMLDECL), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<stream:stream xmlns='jabber:client' xmlns"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, ":stream='http://etherx.jabber.org/streams'>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));

    /* Mid-stanza, and with a partial token between stanzas. */
    assert_int_equal(parse_str(&c, "<message><body>half"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "</body></message><pres"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "ence/>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* Half a UTF-8 sequence is partial too, even in a stanza's text. */
    assert_int_equal(parse_str(&c, "<message><body>\xc3"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "\xa9</body></message>"), XML_PARSE_OK);
    /* Keepalives are no obstacle; a trailing CR (maybe half a CRLF) is held
     * back by expat until the next byte. */
    assert_int_equal(parse_str(&c, " \n\t "), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, " \r"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "\n"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* Inside a CDATA section between stanzas, '<' would mean something
     * else after waking. */
    assert_int_equal(parse_str(&c, "<![CDATA["), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, " \n"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "]]>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(c.nstanzas, 3);

    /* From inside callbacks. */
    c.hibernate_in_cb = 1;
    assert_int_equal(parse_str(&c, "<presence/>"), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 4);
    assert_int_equal(c.hibernated_in_cb, 0);
    c.hibernate_in_cb = 0;

    /* After a stop, until the rest has been fed again. */
    c.stop_at = 5;
    static const char two[] = "<presence id='5'/><presence id='6'/>";
    size_t used;
    assert_int_equal(xml_parser_feed(c.p, two, strlen(two), &used), XML_PARSE_STOPPED);
    assert_int_equal(used, strlen("<presence id='5'/>"));
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_feed(c.p, two + used, strlen(two) - used, &used), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* A stop at the very end of the input leaves nothing to feed again. */
    c.stop_at = 7;
    assert_int_equal(xml_parser_feed(c.p, "<a/>", 4, &used), XML_PARSE_STOPPED);
    assert_int_equal(used, 4);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<b/>"), XML_PARSE_OK);
    assert_int_equal(c.nstanzas, 8);
    assert_non_null(strstr(c.log, "S <a/>\nS <b/>\n"));

    /* A dead parser. */
    assert_int_equal(parse_str(&c, "<<"), XML_PARSE_NOT_WELL_FORMED);
    assert_false(xml_parser_hibernate(c.p));
    ctx_free(&c);

    /* A dead parser that was hibernating before the error. */
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<a>x</b>"), XML_PARSE_NOT_WELL_FORMED);
    assert_false(xml_parser_hibernate(c.p));
    ctx_free(&c);

    /* A stop in the header callback with the header at the end of the
     * input: the stream may sleep right away. */
    ctx_init(&c, 10000);
    c.stop_on_open = 1;
    assert_int_equal(xml_parser_feed(c.p, HDR, strlen(HDR), &used), XML_PARSE_STOPPED);
    assert_int_equal(used, strlen(HDR));
    c.stop_on_open = 0;
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<presence/>"), XML_PARSE_OK);
    assert_string_equal(c.log, HDR_LOG "S <presence/>\n");
    ctx_free(&c);
}

static void test_hibernate_reset_close(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
                     XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* Reset while hibernating: a new stream, which has no header yet. */
    assert_int_equal(xml_parser_reset(c.p), 0);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_reset(c.p), 0);
    ctx_clear_log(&c);
    assert_int_equal(parse_str(&c, FOO_OPEN "<foo:x/>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<foo:x/>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* The new stream's prefixes, not the old one's. */
    assert_int_equal(parse_str(&c, "<stream:features/>"), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* Then the stream closes; a closed stream cannot sleep. */
    assert_int_equal(parse_str(&c, "</stream:stream>"), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_string_equal(c.log, "O stream http://etherx.jabber.org/streams to=example.com "
                               "version=1.0 xmlns=jabber:client xmlns:stream=http://"
                               "etherx.jabber.org/streams xmlns:foo=urn:foo\n"
                               "S <x xmlns='urn:foo'/>\nS <x xmlns='urn:foo'/>\n"
                               "S <features xmlns='http://etherx.jabber.org/streams'/>\nC\n");
    assert_int_equal(parse_str(&c, "<a/>"), XML_PARSE_NOT_WELL_FORMED);
    ctx_free(&c);

    /* Reset from a callback right after waking up. */
    static const char in[] =
        HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" HDR "<iq type='set'/>";
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    c.reset_at = 1;
    const char *rest = in + strlen(HDR);
    size_t used;
    assert_int_equal(xml_parser_feed(c.p, rest, strlen(rest), &used), XML_PARSE_STOPPED);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, rest + used), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_string_equal(c.log,
                        HDR_LOG "S <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n" HDR_LOG
                                "S <iq type='set'/>\n");
    ctx_free(&c);

    /* Free while hibernating, and after a reset while hibernating. */
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    ctx_free(&c);
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_reset(c.p), 0);
    ctx_free(&c);
}

static void test_hibernate_limits(void **state)
{
    /* The size limit counts the same bytes across a hibernation. */
    static const char st[] = "<message><body>0123456789</body></message>";
    size_t n = strlen(st);
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    xml_parser_set_max_stanza(c.p, n);
    assert_int_equal(parse_str(&c, st), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    /* Exactly at the limit in two feeds with a refused hibernation. */
    assert_int_equal(xml_parser_feed(c.p, st, 9, NULL), XML_PARSE_OK);
    assert_false(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_feed(c.p, st + 9, n - 9, NULL), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    xml_parser_set_max_stanza(c.p, n - 1);
    assert_int_equal(parse_str(&c, st), XML_PARSE_TOO_BIG);
    assert_false(xml_parser_hibernate(c.p));
    ctx_free(&c);

    /* Depth is still counted from the stream element. */
    char *deep = tern_xmalloc(XML_MAX_DEPTH * 8 + 16);
    char *w = deep;
    for (int i = 0; i <= XML_MAX_DEPTH; i++)
        w += sprintf(w, "<a>");
    ctx_init(&c, 1 << 20);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(xml_parser_feed(c.p, deep, (size_t)(w - deep) - 3, NULL), XML_PARSE_OK);
    assert_int_equal(xml_parser_feed(c.p, "<a>", 3, NULL), XML_PARSE_TOO_BIG);
    ctx_free(&c);
    free(deep);

    /* Restricted XML is still enforced after waking. */
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<message>&foo;</message>"), XML_PARSE_RESTRICTED);
    ctx_free(&c);
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<!-- x -->"), XML_PARSE_RESTRICTED);
    ctx_free(&c);
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR), XML_PARSE_OK);
    assert_true(xml_parser_hibernate(c.p));
    assert_int_equal(parse_str(&c, "<?xml version='1.0'?>"), XML_PARSE_NOT_WELL_FORMED);
    ctx_free(&c);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_hibernate_memory(void **state)
{
#ifdef UNDER_ASAN
    skip(); /* ASan's allocator is invisible to mallinfo2 */
#else
    enum { N = 100 };
    static const char first[] = HDR "<message to='a@b'><body>hello</body></message>";
    static const char second[] = "<presence><show>away</show></presence>";
    xml_parser_t *p[N];
    size_t base = mallinfo2().uordblks;
    for (int i = 0; i < N; i++) {
        p[i] = xml_parser_new(NULL, NULL, 10000);
        assert_non_null(p[i]);
        assert_int_equal(xml_parser_feed(p[i], first, strlen(first), NULL), XML_PARSE_OK);
    }
    size_t awake = mallinfo2().uordblks;
    size_t est_awake = xml_parser_mem(p[0]);
    for (int i = 0; i < N; i++)
        assert_true(xml_parser_hibernate(p[i]));
    size_t asleep = mallinfo2().uordblks;
    size_t est_asleep = xml_parser_mem(p[0]);
    for (int i = 0; i < N; i++)
        assert_int_equal(xml_parser_feed(p[i], second, strlen(second), NULL), XML_PARSE_OK);
    size_t woken = mallinfo2().uordblks;
    for (int i = 0; i < N; i++)
        assert_true(xml_parser_hibernate(p[i]));
    size_t again = mallinfo2().uordblks;
    print_message("parser heap per stream: awake %zu, hibernating %zu, woken %zu, "
                  "hibernating again %zu bytes; xml_parser_mem says %zu awake, %zu "
                  "hibernating\n",
                  (awake - base) / N, (asleep - base) / N, (woken - base) / N, (again - base) / N,
                  est_awake, est_asleep);
    assert_true((asleep - base) / N < 1024);
    assert_true((again - base) / N < 1024);
    /* expat itself lives in the parser's own mapped arena, off the heap:
     * awake it maps well over 8 KB, hibernating nothing. */
    assert_true((awake - base) / N < 2 * 1024);
    assert_true(est_awake > 8 * 1024);
    assert_true(est_asleep < 1024);
    for (int i = 0; i < N; i++)
        xml_parser_free(p[i]);
#endif
}

static void test_stanza_api(void **state)
{
    xml_stanza_t *st = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *iq = xml_stanza_root(st);
    assert_true(xml_node_is(iq, "iq", NS_CLIENT));
    assert_true(xml_node_is(iq, NULL, NULL));
    assert_false(xml_node_is(iq, "iq", NS_SERVER));
    assert_false(xml_node_is(NULL, NULL, NULL));
    assert_null(iq->parent);
    assert_ptr_equal(iq->owner, st);

    xml_node_set_attr(iq, "type", "get");
    xml_node_set_attr(iq, "id", "1");
    xml_node_set_attr(iq, "type", "result");
    assert_string_equal(xml_node_attr(iq, "type"), "result");
    xml_node_set_attr(iq, "id", NULL);
    xml_node_set_attr(iq, "missing", NULL);
    assert_null(xml_node_attr(iq, "id"));
    xml_node_set_attr(iq, "to", "a@b");

    xml_node_t *q = xml_node_add_child(iq, "query", NS_DISCO_INFO);
    xml_node_t *id = xml_node_add_child(q, "identity", NULL);
    assert_string_equal(id->ns, NS_DISCO_INFO);
    xml_node_set_attr(id, "category", "server");
    xml_node_add_child(q, "feature", NULL);
    xml_node_t *f2 = xml_node_add_child(q, "feature", NULL);
    xml_node_set_attr(f2, "var", NS_PING);
    xml_node_add_child_text(iq, "empty", NULL, "");
    xml_node_t *t = xml_node_add_text(iq, "x", 1);
    assert_null(xml_node_add_child(t, "no", NULL));
    assert_null(xml_node_add_text(t, "no", 2));

    assert_ptr_equal(xml_node_child(iq, "query", NULL), q);
    assert_ptr_equal(xml_node_first_element(q), id);
    assert_ptr_equal(xml_node_child(q, "feature", NS_DISCO_INFO), id->next);
    assert_ptr_equal(xml_node_next(id->next, "feature", NULL), f2);
    assert_null(xml_node_next(f2, NULL, NULL));
    assert_null(xml_node_child(q, "feature", NS_CLIENT));
    assert_string_equal(xml_node_text(q), "");
    assert_string_equal(xml_node_text(t), "x");

    char *s = xml_node_to_string(iq, NS_CLIENT, NULL);
    assert_string_equal(s, "<iq type='result' to='a@b'><query xmlns='http://jabber.org/protocol/"
                           "disco#info'><identity category='server'/><feature/><feature "
                           "var='urn:xmpp:ping'/></query><empty/>x</iq>");
    free(s);

    /* Mixed content: text around an element. */
    xml_node_t *body = xml_node_add_child(iq, "body", NULL);
    xml_node_add_text(body, "ab", 2);
    xml_node_add_child(body, "br", NULL);
    xml_node_add_text(body, "cd", 2);
    assert_string_equal(xml_node_text(body), "abcd");

    /* Detach first, middle and last. */
    xml_node_t *f1 = id->next;
    xml_node_detach(f1);
    assert_null(f1->parent);
    assert_ptr_equal(id->next, f2);
    xml_node_detach(f2);
    assert_ptr_equal(q->last_child, id);
    xml_node_detach(id);
    assert_null(q->children);
    assert_null(q->last_child);
    xml_node_detach(iq); /* the root: nothing to do */
    xml_node_add_child(q, "after", NULL);
    s = xml_node_to_string(q, NS_DISCO_INFO, NULL);
    assert_string_equal(s, "<query><after/></query>");
    free(s);

    /* Serialising a single text node or a detached subtree. */
    s = xml_node_to_string(t, NS_CLIENT, NULL);
    assert_string_equal(s, "x");
    free(s);
    s = xml_node_to_string(f2, NS_CLIENT, NULL);
    assert_string_equal(s, "<feature xmlns='http://jabber.org/protocol/disco#info' "
                           "var='urn:xmpp:ping'/>");
    free(s);

    /* Appending to a caller buffer keeps what was there. */
    char *buf = tern_xstrdup("pre:");
    size_t len = 4, cap = 5;
    assert_int_equal(xml_node_serialize(f2, NS_DISCO_INFO, &buf, &len, &cap), 0);
    assert_memory_equal(buf, "pre:<feature var='urn:xmpp:ping'/>", len);
    free(buf);

    size_t mem = xml_stanza_mem(st);
    assert_true(mem >= 1024);
    char big[5000];
    memset(big, 'b', sizeof(big));
    for (int i = 0; i < 10; i++)
        xml_node_add_text(xml_node_add_child(iq, "big", NULL), big, sizeof(big));
    assert_true(xml_stanza_mem(st) >= mem + 10 * sizeof(big));
    xml_stanza_unref(st);
    xml_stanza_unref(NULL);
}

static void test_copy_ref(void **state)
{
    xml_stanza_t *st = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *m = xml_stanza_root(st);
    xml_node_set_attr(m, "to", "a@b");
    xml_node_set_attr(m, "urn:x|y", "z");
    xml_node_t *b = xml_node_add_child_text(m, "body", NULL, "hello");
    xml_node_t *x = xml_node_add_child(m, "x", "urn:x");
    xml_node_add_child(xml_node_add_child(x, "deep", NULL), "deeper", "urn:y");
    xml_node_add_text(m, "tail", 4);

    assert_ptr_equal(xml_stanza_ref(st), st);
    xml_stanza_unref(st); /* still alive: one reference left */
    assert_string_equal(xml_node_text(b), "hello");

    char *orig = xml_node_to_string(m, NS_CLIENT, NULL);
    xml_stanza_t *cp = xml_stanza_copy(st);
    char *copy = xml_node_to_string(xml_stanza_root(cp), NS_CLIENT, NULL);
    assert_string_equal(orig, copy);
    free(copy);
    /* Changing the copy leaves the original alone. */
    xml_node_set_attr(xml_stanza_root(cp), "to", "c@d");
    xml_node_detach(xml_node_child(xml_stanza_root(cp), "body", NULL));
    copy = xml_node_to_string(m, NS_CLIENT, NULL);
    assert_string_equal(orig, copy);
    free(copy);
    assert_true(xml_stanza_mem(cp) > 0);

    /* Copy a subtree into another stanza. */
    xml_stanza_t *fw = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *fwd = xml_node_add_child(xml_stanza_root(fw), "forwarded", NS_FORWARD);
    xml_node_t *c = xml_node_append_copy(fwd, m);
    assert_ptr_equal(c->owner, fw);
    assert_ptr_equal(c->parent, fwd);
    assert_ptr_not_equal(c->name, m->name);
    xml_stanza_unref(st); /* the copy owns its strings */
    copy = xml_node_to_string(xml_stanza_root(fw), NS_CLIENT, NULL);
    assert_string_equal(copy, "<message><forwarded xmlns='urn:xmpp:forward:0'><message "
                              "xmlns='jabber:client' to='a@b' xmlns:ns0='urn:x' ns0:y='z'>"
                              "<body>hello</body><x xmlns='urn:x'><deep><deeper xmlns='urn:y'/>"
                              "</deep></x>tail</message></forwarded></message>");
    free(copy);

    /* Copying a node into its own subtree terminates with one copy. */
    xml_node_t *root = xml_stanza_root(fw);
    xml_node_append_copy(fwd, root);
#define FWD_MSG                                                                                    \
    "<message xmlns='jabber:client' to='a@b' xmlns:ns0='urn:x' ns0:y='z'><body>hello</body><x "    \
    "xmlns='urn:x'><deep><deeper xmlns='urn:y'/></deep></x>tail</message>"
    copy = xml_node_to_string(root, NS_CLIENT, NULL);
    assert_string_equal(copy, "<message><forwarded xmlns='urn:xmpp:forward:0'>" FWD_MSG
                              "<message xmlns='jabber:client'><forwarded "
                              "xmlns='urn:xmpp:forward:0'>" FWD_MSG
                              "</forwarded></message></forwarded></message>");
    free(copy);
    xml_node_append_copy(root, root);
    assert_true(xml_node_is(root->last_child, "message", NS_CLIENT));
    assert_non_null(xml_node_child(root->last_child, "forwarded", NS_FORWARD));

    /* A text node copies too. */
    xml_node_t *tt = xml_node_append_copy(root, xml_node_child(c, "body", NULL)->children);
    assert_int_equal(tt->type, XML_NODE_TEXT);
    assert_string_equal(tt->text, "hello");

    xml_stanza_unref(fw);
    xml_stanza_unref(cp);
    free(orig);
}

static void test_deep_built_tree(void **state)
{
    /* Built trees have no depth cap; copy and serialise must not recurse. */
    xml_stanza_t *st = xml_stanza_new("a", "urn:a");
    xml_node_t *n = xml_stanza_root(st);
    for (int i = 0; i < 200000; i++)
        n = xml_node_add_child(n, "a", NULL);
    xml_node_add_text(n, "leaf", 4);
    size_t len;
    char *s = xml_node_to_string(xml_stanza_root(st), "urn:a", &len);
    assert_non_null(s);
    assert_int_equal(len, 200001 * 7 + 4);
    xml_stanza_t *cp = xml_stanza_copy(st);
    char *s2 = xml_node_to_string(xml_stanza_root(cp), "urn:a", NULL);
    assert_string_equal(s, s2);
    free(s);
    free(s2);
    xml_stanza_unref(cp);
    xml_stanza_unref(st);
}

static void test_stream_close(void **state)
{
    ctx_t c;
    ctx_init(&c, 10000);
    assert_int_equal(parse_str(&c, HDR "<presence/></stream:stream>\n  "), XML_PARSE_OK);
    assert_string_equal(c.log, HDR_LOG "S <presence/>\nC\n");
    assert_int_equal(parse_str(&c, "<presence/>"), XML_PARSE_NOT_WELL_FORMED);
    ctx_free(&c);

    /* A stanza left open at the close is an error, and is not delivered. */
    assert_int_equal(parse_once("<message></stream:stream>", 10000), XML_PARSE_NOT_WELL_FORMED);
}

static void test_no_callbacks(void **state)
{
    xml_parser_t *p = xml_parser_new(NULL, NULL, 1000);
    assert_non_null(p);
    const char in[] = HDR "<message><body>x</body></message></stream:stream>";
    assert_int_equal(xml_parser_feed(p, in, strlen(in), NULL), XML_PARSE_OK);
    xml_parser_set_max_stanza(p, 10);
    assert_int_equal(xml_parser_reset(p), 0);
    assert_int_equal(xml_parser_feed(p, in, strlen(in), NULL), XML_PARSE_TOO_BIG);
    assert_non_null(strstr(xml_parser_error_text(p), "too large"));
    xml_parser_free(p);
    xml_parser_free(NULL);
}

/* Stored XML comes back as one element, namespaces intact; anything but
 * exactly one well-formed element is refused. */
/* Serialises st the slow way (tree walk) for comparison. */
static char *tree_text(const xml_stanza_t *st, const char *ns)
{
    return xml_node_to_string(xml_stanza_root(st), ns, NULL);
}

static char *fast_text(const xml_stanza_t *st, const char *ns)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(xml_stanza_serialize(st, ns, &buf, &len, &cap), 0);
    buf = realloc(buf, len + 1);
    buf[len] = '\0';
    return buf;
}

static void test_fanout_copies(void **state)
{
    (void)state;
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", "room@conf.example/nick");
    xml_node_set_attr(root, "type", "groupchat");
    xml_node_add_child_text(root, "body", NS_CLIENT, "a < b & 'c'");
    xml_node_set_attr(xml_node_add_child(root, "stanza-id", NS_STANZA_ID), "id", "x1");
    char *whole = tree_text(m, NS_CLIENT);
    assert_int_equal(xml_stanza_wire_len(m, NS_CLIENT), strlen(whole));
    free(whole);

    const char *tos[] = {"a@example/r", "b'q@example/<&>", "c@example"};
    const char *esc[] = {"a@example/r", "b&apos;q@example/&lt;&amp;&gt;", "c@example"};
    char *tmpl_text = tree_text(m, NS_CLIENT);
    for (size_t i = 0; i < 3; i++) {
        xml_stanza_t *c = xml_stanza_copy_to(m, tos[i], NS_CLIENT);
        /* the template's text with 'to' spliced in after the name */
        char expect[512];
        snprintf(expect, sizeof(expect), "<message to='%s'%s", esc[i], tmpl_text + 8);
        char *fast = fast_text(c, NS_CLIENT);
        assert_string_equal(fast, expect);
        /* a hook that changes a copy gets its change written */
        xml_node_add_child(xml_stanza_root(c), "delay", NS_DELAY);
        char *changed = fast_text(c, NS_CLIENT);
        assert_non_null(strstr(changed, "<delay xmlns='urn:xmpp:delay'/>"));
        char *changed_slow = tree_text(c, NS_CLIENT);
        assert_string_equal(changed, changed_slow);
        free(changed_slow);
        /* another parent namespace is written from the tree */
        xml_stanza_t *c2 = xml_stanza_copy_to(m, tos[i], NS_CLIENT);
        char *server = fast_text(c2, "jabber:server");
        assert_non_null(strstr(server, "xmlns='jabber:client'"));
        free(fast);
        free(changed);
        free(server);
        xml_stanza_unref(c);
        xml_stanza_unref(c2);
    }
    free(tmpl_text);
    /* changing the template after copies were made leaves them intact
     * and gives later copies the change */
    xml_stanza_t *before = xml_stanza_copy_to(m, "d@example", NS_CLIENT);
    xml_node_set_attr(root, "id", "new-id");
    xml_stanza_t *after = xml_stanza_copy_to(m, "d@example", NS_CLIENT);
    char *tb = fast_text(before, NS_CLIENT), *ta = fast_text(after, NS_CLIENT);
    assert_null(strstr(tb, "new-id"));
    assert_non_null(strstr(ta, "new-id"));
    char *tmpl_now = tree_text(m, NS_CLIENT), expect_after[512];
    snprintf(expect_after, sizeof(expect_after), "<message to='d@example'%s", tmpl_now + 8);
    assert_string_equal(ta, expect_after);
    free(tmpl_now);
    free(tb);
    free(ta);
    /* the copies outlive the template */
    xml_stanza_unref(m);
    char *late = fast_text(after, NS_CLIENT);
    assert_non_null(strstr(late, "to='d@example'"));
    free(late);
    xml_stanza_unref(before);
    xml_stanza_unref(after);

    /* a template with a 'to' of its own is copied without shared text */
    xml_stanza_t *t = xml_stanza_new("message", NS_CLIENT);
    xml_node_set_attr(xml_stanza_root(t), "to", "old@example");
    xml_stanza_t *tc = xml_stanza_copy_to(t, "new@example", NS_CLIENT);
    char *tt = fast_text(tc, NS_CLIENT);
    assert_string_equal(tt, "<message to='new@example'/>");
    free(tt);
    xml_stanza_unref(tc);
    xml_stanza_unref(t);
}

static void test_parse_element(void **state)
{
    (void)state;
    const char *msg = "<message to='a@b' type='chat'><body>hi &amp; bye</body>"
                      "<x xmlns='urn:other'/></message>";
    xml_stanza_t *st = xml_parse_element(msg, strlen(msg), "jabber:client", 4096);
    assert_non_null(st);
    xml_node_t *root = xml_stanza_root(st);
    assert_true(xml_node_is(root, "message", "jabber:client"));
    assert_string_equal(xml_node_text(xml_node_child(root, "body", "jabber:client")), "hi & bye");
    assert_non_null(xml_node_child(root, "x", "urn:other"));
    xml_stanza_unref(st);

    const char *bad[] = {
        "", "text", "<a/><b/>", "<a>", "<a></b>", "<!DOCTYPE a><a/>", "<a>&ent;</a>", "</s><x/>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(xml_parse_element(bad[i], strlen(bad[i]), "jabber:client", 4096));
    /* over the limit */
    assert_null(xml_parse_element(msg, strlen(msg), "jabber:client", 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_chunking),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_xml_lang),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_restricted),
        cmocka_unit_test(test_entities_ok),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_wrong_header),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_stop_consumed),
        cmocka_unit_test(test_no_deferral),
        cmocka_unit_test(test_renewal),
        cmocka_unit_test(test_hibernate_equivalent),
        cmocka_unit_test(test_hibernate_refused),
        cmocka_unit_test(test_hibernate_reset_close),
        cmocka_unit_test(test_hibernate_limits),
        cmocka_unit_test(test_hibernate_memory),
        cmocka_unit_test(test_stanza_api),
        cmocka_unit_test(test_copy_ref),
        cmocka_unit_test(test_deep_built_tree),
        cmocka_unit_test(test_stream_close),
        cmocka_unit_test(test_no_callbacks),
        cmocka_unit_test(test_parse_element),
        cmocka_unit_test(test_fanout_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
