/* SPDX-License-Identifier: MIT
 * test_frame.c - unit tests for the output framer (src/xml/frame.c) that
 * cuts the c2s stream into one element per WebSocket message / BOSH body
 * child, and for the HTTP request layer (src/http/request.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/request.h"
#include "xml/frame.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *els[16];
    int n;
} collected_t;

static void collect(void *ud, const char *el, size_t len)
{
    collected_t *c = ud;
    assert_true(c->n < 16);
    c->els[c->n] = strndup(el, len);
    c->n++;
}

static void collected_free(collected_t *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->els[i]);
    c->n = 0;
}

static void test_elements_get_their_declarations(void **state)
{
    xml_framer_t f = {0};
    collected_t c = {0};
    const char *out = "<?xml version='1.0'?><stream:features><bind xmlns='urn:ietf:params:xml:ns:"
                      "xmpp-bind'/></stream:features><message to='a@b'><body>x &gt; y</body>"
                      "</message><iq type='result' id='1'/><r xmlns='urn:xmpp:sm:3'/>"
                      "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                      "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    xml_framer_feed(&f, out, strlen(out), collect, &c);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.els[0], "<stream:features xmlns:stream='http://etherx.jabber.org/"
                                  "streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                                  "</stream:features>");
    assert_string_equal(c.els[1], "<message xmlns='jabber:client' to='a@b'><body>x &gt; y</body>"
                                  "</message>");
    assert_string_equal(c.els[2], "<iq xmlns='jabber:client' type='result' id='1'/>");
    assert_string_equal(c.els[3], "<r xmlns='urn:xmpp:sm:3'/>");
    /* Already declared: left alone. */
    assert_string_equal(c.els[4], "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                                  "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                                  "</stream:error>");
    collected_free(&c);
    xml_framer_free(&f);
}

static void test_split_anywhere_gives_the_same_elements(void **state)
{
    const char *out = "<message to='a@b' id='1'><body>hello</body><x xmlns='y'><z/></x></message>"
                      "<presence/><iq xmlns='jabber:client' id='2'><q xmlns='q'/></iq>";
    size_t len = strlen(out);
    for (size_t cut = 0; cut <= len; cut++) {
        xml_framer_t f = {0};
        collected_t c = {0};
        xml_framer_feed(&f, out, cut, collect, &c);
        xml_framer_feed(&f, out + cut, len - cut, collect, &c);
        assert_int_equal(c.n, 3);
        assert_string_equal(c.els[0], "<message xmlns='jabber:client' to='a@b' id='1'><body>hello"
                                      "</body><x xmlns='y'><z/></x></message>");
        assert_string_equal(c.els[1], "<presence xmlns='jabber:client'/>");
        assert_string_equal(c.els[2], "<iq xmlns='jabber:client' id='2'><q xmlns='q'/></iq>");
        assert_int_equal(f.len, 0);
        collected_free(&c);
        xml_framer_free(&f);
    }
}

static http_req_status_t feed_all(http_request_t *r, const char *s, size_t *consumed)
{
    return http_request_feed(r, s, strlen(s), consumed);
}

static void test_request_pipelined_and_limits(void **state)
{
    http_request_t r;
    http_request_init(&r, 16);
    const char *two = "POST /http-bind?x=1 HTTP/1.1\r\nHost: h\r\nOrigin: o\r\nOrigin: p\r\n"
                      "Content-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n = 0;
    assert_int_equal(feed_all(&r, two, &n), HTTP_REQ_COMPLETE);
    assert_true(http_request_path_is(&r, "/http-bind"));
    assert_string_equal(r.hdr[H_ORIGIN], "o, p");
    assert_string_equal(r.body, "hello");
    assert_true(r.keep_alive);
    /* The second request waits until the first is answered. */
    size_t m = 0;
    assert_int_equal(http_request_feed(&r, two + n, strlen(two) - n, &m), HTTP_REQ_COMPLETE);
    assert_int_equal(m, 0);
    http_request_next(&r);
    assert_int_equal(http_request_feed(&r, two + n, strlen(two) - n, &m), HTTP_REQ_COMPLETE);
    assert_int_equal(n + m, strlen(two));
    assert_true(http_request_path_is(&r, "/"));
    http_request_free(&r);

    http_request_init(&r, 16);
    assert_int_equal(feed_all(&r, "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", &n),
                     HTTP_REQ_ERROR);
    assert_int_equal(http_request_status(&r), 413);
    http_request_free(&r);

    http_request_init(&r, 16);
    assert_int_equal(feed_all(&r, "GET / HTTP/1.1\r\nHost h\r\n\r\n", &n), HTTP_REQ_ERROR);
    assert_int_equal(http_request_status(&r), 400);
    http_request_free(&r);

    http_request_init(&r, 16);
    char big[9000];
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', sizeof(big) - 20);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(feed_all(&r, big, &n), HTTP_REQ_ERROR);
    assert_int_equal(http_request_status(&r), 431);
    http_request_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elements_get_their_declarations),
        cmocka_unit_test(test_split_anywhere_gives_the_same_elements),
        cmocka_unit_test(test_request_pipelined_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
