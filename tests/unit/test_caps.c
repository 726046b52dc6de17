/* SPDX-License-Identifier: MIT
 * test_caps.c - XEP-0115 verification strings against the XEP's own
 * examples (§5.2 simple, §5.3 with an extended-info form), plus the cases
 * a hostile client could send: forms without FORM_TYPE, elements out of
 * order, unknown children.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/common.h"
#include "xml/parser.h"
#include "xmpp/caps.h"

#include <stdio.h>
#include <string.h>

static void expect_ver(const char *xml, const char *ver)
{
    xml_stanza_t *st = xml_parse_element(xml, strlen(xml), "jabber:client", strlen(xml));
    assert_non_null(st);
    char out[64];
    assert_int_equal(caps_ver_sha1(xml_stanza_root(st), out, sizeof(out)), 0);
    assert_string_equal(out, ver);
    xml_stanza_unref(st);
}

#define Q  "<query xmlns='http://jabber.org/protocol/disco#info'>"
#define F1 "<feature var='http://jabber.org/protocol/caps'/>"
#define F2 "<feature var='http://jabber.org/protocol/disco#info'/>"
#define F3 "<feature var='http://jabber.org/protocol/disco#items'/>"
#define F4 "<feature var='http://jabber.org/protocol/muc'/>"

static void test_simple_example(void **state)
{
    (void)state;
    expect_ver(Q "<identity category='client' name='Exodus 0.9.1' type='pc'/>" F1 F2 F3 F4
                 "</query>",
               "QgayPKawpkPSDYmwT/WM94uAlu0=");
    /* order on the wire does not matter */
    expect_ver(Q F4 F2 "<identity category='client' name='Exodus 0.9.1' type='pc'/>" F3 F1
                       "</query>",
               "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

#define FORM                                                                                       \
    "<x xmlns='jabber:x:data' type='result'>"                                                      \
    "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>"  \
    "<field var='ip_version'><value>ipv6</value><value>ipv4</value></field>"                       \
    "<field var='os'><value>Mac</value></field>"                                                   \
    "<field var='os_version'><value>10.5.1</value></field>"                                        \
    "<field var='software'><value>Psi</value></field>"                                             \
    "<field var='software_version'><value>0.11</value></field>"                                    \
    "</x>"

static void test_complex_example(void **state)
{
    (void)state;
    const char *ids = "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
                      "<identity xml:lang='el' category='client' name='\xce\xa8 0.11' type='pc'/>";
    char xml[2048];
    snprintf(xml, sizeof(xml), Q "%s" F1 F2 F3 F4 FORM "</query>", ids);
    expect_ver(xml, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    /* a form without FORM_TYPE is not part of the string (§5.4 3.6) */
    snprintf(xml, sizeof(xml),
             Q "%s" F1 F2 F3 F4 FORM
               "<x xmlns='jabber:x:data' type='result'><field var='a'><value>b</value></field></x>"
               "</query>",
             ids);
    expect_ver(xml, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

static void test_small_buffer(void **state)
{
    (void)state;
    const char *xml = Q F1 "</query>";
    xml_stanza_t *st = xml_parse_element(xml, strlen(xml), "jabber:client", strlen(xml));
    char out[16];
    assert_int_not_equal(caps_ver_sha1(xml_stanza_root(st), out, sizeof(out)), 0);
    xml_stanza_unref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_example),
        cmocka_unit_test(test_complex_example),
        cmocka_unit_test(test_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
