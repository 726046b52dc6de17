/* SPDX-License-Identifier: MIT
 * test_jid.c - unit tests for XMPP address parsing (RFC 7622).
 *
 * The core is a table of input addresses and their expected normalised
 * form (or rejection): the examples of RFC 7622 §3.5, case and width
 * mapping, the PRECIS class and context rules, the Bidi Rule, IDN domains in
 * A-label and U-label form, IP literals and malformed splits. Every accepted
 * row is also re-parsed to check that normalisation is idempotent. Length
 * limits are built at run time, and the remaining tests cover the helper
 * functions around jid_t.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/common.h"
#include "xmpp/jid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *in;
    const char *want; /* NULL: must be rejected */
} vector_t;

static const vector_t vectors[] = {
    /* RFC 7622 §3.5.1, valid */
    {"juliet@example.com", "juliet@example.com"},
    {"juliet@example.com/foo", "juliet@example.com/foo"},
    {"juliet@example.com/foo bar", "juliet@example.com/foo bar"},
    {"juliet@example.com/foo@bar", "juliet@example.com/foo@bar"},
    {"foo\\20bar@example.com", "foo\\20bar@example.com"},
    {"fussball@example.com", "fussball@example.com"},
    {"fu\u00DFball@example.com", "fu\u00DFball@example.com"},
    {"\u03C0@example.com", "\u03C0@example.com"},
    {"\u03A3@example.com/foo", "\u03C3@example.com/foo"},
    {"\u03C3@example.com/foo", "\u03C3@example.com/foo"},
    {"\u03C2@example.com/foo", "\u03C2@example.com/foo"},
    {"king@example.com/\u265A", "king@example.com/\u265A"},
    {"example.com", "example.com"},
    {"example.com/foobar", "example.com/foobar"},
    {"a.example.com/b@example.net", "a.example.com/b@example.net"},

    /* RFC 7622 §3.5.2, invalid */
    {"\"juliet\"@example.com", NULL},
    {"foo bar@example.com", NULL},
    {"juliet@example.com/", NULL},
    {"@example.com/", NULL},
    {"henry\u2163@example.com", NULL},
    {"\u265A@example.com", NULL},
    {"juliet@", NULL},
    {"/foobar", NULL},

    /* Case mapping: localpart and domain fold, resource keeps its case */
    {"Juliet@Example.COM", "juliet@example.com"},
    {"Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"},
    {"\u00C5NGSTR\u00D6M@example.com", "\u00E5ngstr\u00F6m@example.com"},
    {"\u03A3\u0391\u03A3@example.com", "\u03C3\u03B1\u03C2@example.com"}, /* final sigma */
    {"\u0130@example.com", "i\u0307@example.com"},
    {"\u212A@example.com", "k@example.com"}, /* KELVIN SIGN */
    {"\u01C5@example.com", NULL},            /* lowercases to a compat char */

    /* Width mapping in localpart and domain, not in resource */
    {"\uFF2A\uFF35\uFF2C\uFF29\uFF25\uFF34@example.com", "juliet@example.com"},
    {"juliet@\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com", "juliet@example.com"},
    {"a@\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\uFF0Ecom", "a@example.com"},
    {"juliet@example.com/\uFF42\uFF41\uFF4C", "juliet@example.com/\uFF42\uFF41\uFF4C"},
    {"\uFF76@example.com", "\u30AB@example.com"}, /* halfwidth katakana */
    {"ju\uFF20liet@example.com", NULL},           /* fullwidth '@' maps to '@' */
    {"ju\uFF0Fliet@example.com", NULL},           /* fullwidth '/' maps to '/' */

    /* NFC and Hangul */
    {"e\u0301@example.com/e\u0301", "\u00E9@example.com/\u00E9"},
    {"\u1100\u1161@example.com", "\uAC00@example.com"},
    {"\u1100@example.com", NULL}, /* old Hangul jamo */

    /* Localpart class: compat chars, symbols, XMPP-prohibited ASCII */
    {"\uFB01@example.com", NULL},
    {"example.com/\uFB01", "example.com/\uFB01"},
    {"a\u20AC@example.com", NULL},
    {"example.com/\u20AC", "example.com/\u20AC"},
    {"a!#$%*+-.=?^_`{|}~;,()[]\\@example.com", "a!#$%*+-.=?^_`{|}~;,()[]\\@example.com"},
    {"ju&liet@example.com", NULL},
    {"ju'liet@example.com", NULL},
    {"ju:liet@example.com", NULL},
    {"ju<liet@example.com", NULL},
    {"ju>liet@example.com", NULL},

    /* Context rules (RFC 5892 Appendix A) */
    {"l\u00B7l@example.com", "l\u00B7l@example.com"},
    {"a\u00B7b@example.com", NULL},
    {"\u0375\u03B1@example.com", "\u0375\u03B1@example.com"},
    {"\u0375a@example.com", NULL},
    {"a\u200Cb@example.com", NULL},
    {"\u0628\u200C\u0628@example.com", "\u0628\u200C\u0628@example.com"}, /* joining */
    {"\u0915\u094D\u200D\u0937@example.com", "\u0915\u094D\u200D\u0937@example.com"},
    {"a\u200Db@example.com", NULL},
    {"\u30FB\u30A2@example.com", "\u30FB\u30A2@example.com"},
    {"\u30FB@example.com", NULL},
    {"\u0628\u0660\u0661@example.com", "\u0628\u0660\u0661@example.com"},
    {"\u0628\u0660\u06F0@example.com", NULL},

    /* Bidi Rule */
    {"\u05E9\u05DC\u05D5\u05DD@example.com", "\u05E9\u05DC\u05D5\u05DD@example.com"},
    {"\u05D01@example.com", "\u05D01@example.com"},
    {"a\u05D0@example.com", NULL},
    {"1\u05D0@example.com", NULL},
    {"a@\u05E2\u05D1\u05E8\u05D9\u05EA.example", "a@\u05E2\u05D1\u05E8\u05D9\u05EA.example"},
    {"a@1.\u05E2\u05D1\u05E8\u05D9\u05EA", NULL},

    /* Resourcepart: spaces, '@', '/' */
    {"juliet@example.com/a/b@c", "juliet@example.com/a/b@c"},
    {"example.com/@", "example.com/@"},
    {"a/b@c", "a/b@c"},
    {"juliet@example.com/ ", "juliet@example.com/ "},
    {"juliet@example.com/foo\u00A0bar\u3000x", "juliet@example.com/foo bar x"},
    {"juliet@example.com/\u2000", "juliet@example.com/ "},

    /* IDN domains */
    {"juliet@xn--bcher-kva.example", "juliet@b\u00FCcher.example"},
    {"juliet@b\u00FCcher.example", "juliet@b\u00FCcher.example"},
    {"juliet@B\u00DCCHER.example", "juliet@b\u00FCcher.example"},
    {"juliet@XN--BCHER-KVA.EXAMPLE", "juliet@b\u00FCcher.example"},
    {"a@fa\u00DF.de", "a@fa\u00DF.de"},
    {"a@xn--fa-hia.de", "a@fa\u00DF.de"},
    {"a@example\u3002com", "a@example.com"},
    {"a@xn--bcher-kvb.example", NULL},
    {"a@xn--abc.example", NULL},
    {"a@xn--.example", NULL},
    {"a@xn--ls8h.la", NULL},
    {"a@\U0001F4A9.la", NULL},

    /* Domain syntax */
    {"juliet@example.com.", "juliet@example.com"},
    {"juliet@example.com./r", "juliet@example.com/r"},
    {"a@b\u00FCcher.example\uFF0E", "a@b\u00FCcher.example"},
    {"example.com..", NULL},
    {"juliet@example..com", NULL},
    {"juliet@.example.com", NULL},
    {"juliet@.", NULL},
    {"a@-example.com", NULL},
    {"a@example-.com", NULL},
    {"a@ex--ample.com", NULL},
    {"a@ex_ample.com", NULL},
    {"a@exa mple.com", NULL},
    {"a@localhost", "a@localhost"},
    {"a@123", NULL},

    /* IP literals */
    {"juliet@192.0.2.1/r", "juliet@192.0.2.1/r"},
    {"juliet@[2001:db8::1]", "juliet@[2001:db8::1]"},
    {"juliet@[2001:DB8::1]/r", "juliet@[2001:db8::1]/r"},
    {"[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"},
    {"juliet@[2001:db8::g]", NULL},
    {"juliet@[192.0.2.1]", NULL},
    {"juliet@2001:db8::1", NULL},
    {"juliet@256.0.0.1", NULL},
    {"juliet@192.0.2", NULL},

    /* Empty parts */
    {"", NULL},
    {"@", NULL},
    {"/", NULL},
    {"@example.com", NULL},
    {"example.com/", NULL},
    {"a@/r", NULL},
    {"a@@example.com", NULL},

    /* Controls, ignorables, unassigned, noncharacters, private use */
    {"jul\x01iet@example.com", NULL},
    {"juliet@example.com/a\tb", NULL},
    {"juliet@example.com/a\x7F", NULL},
    {"juliet@example.com/a\xC2\x85", NULL},
    {"a\u200Bb@example.com", NULL},
    {"juliet@example.com/a\u200Bb", NULL},
    {"a\u0378@example.com", NULL},
    {"juliet@example.com/\u0378", NULL},
    {"juliet@example.com/\uFFFF", NULL},
    {"juliet@example.com/\uE000", NULL},

    /* Malformed UTF-8 */
    {"\xFF@example.com", NULL},
    {"juliet@example.com/\xC0\x80", NULL},
    {"juliet@example.com/\xED\xA0\x80", NULL},
    {"juliet@b\xC3", NULL},
};

static void test_vectors(void **state)
{
    for (size_t i = 0; i < TERN_ARRAY_LEN(vectors); i++) {
        const vector_t *v = &vectors[i];
        jid_t j, again;
        int rc = jid_parse(v->in, &j);
        char *s;

        if (!v->want) {
            if (rc == 0) {
                s = jid_to_string(&j);
                fail_msg("row %zu \"%s\": accepted as \"%s\", expected rejection", i, v->in, s);
            }
            assert_int_equal(rc, TERN_EINVAL);
            assert_null(j.domain);
            assert_null(j.block_);
            continue;
        }
        if (rc != 0)
            fail_msg("row %zu \"%s\": rejected (%d), expected \"%s\"", i, v->in, rc, v->want);
        s = jid_to_string(&j);
        if (strcmp(s, v->want) != 0)
            fail_msg("row %zu \"%s\": got \"%s\", expected \"%s\"", i, v->in, s, v->want);
        assert_int_equal(jid_parse(s, &again), 0);
        assert_true(jid_equal(&j, &again));
        free(s);
        jid_clear(&again);
        jid_clear(&j);
    }
}

static char *repeat(const char *unit, size_t count)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * count + 1);

    assert_non_null(s);
    for (size_t i = 0; i < count; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * count] = '\0';
    return s;
}

static void expect_prep(int (*prep)(const char *, char **), const char *in, const char *want)
{
    char *out = (char *)1;
    int rc = prep(in, &out);

    if (!want) {
        assert_int_equal(rc, TERN_EINVAL);
        assert_null(out);
        return;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_local_length(void **state)
{
    char *a1023 = repeat("a", 1023), *a1024 = repeat("a", 1024);
    /* 1023 fullwidth letters are 3069 bytes of input but 1023 of output. */
    char *fw1023 = repeat("\uFF21", 1023), *fw1024 = repeat("\uFF21", 1024);
    char *pi511 = repeat("\u03C0", 511), *pi512 = repeat("\u03C0", 512);
    char *pi511x = malloc(1024 + 1);

    expect_prep(jid_prep_local, a1023, a1023);
    expect_prep(jid_prep_local, a1024, NULL);
    expect_prep(jid_prep_local, fw1023, a1023);
    expect_prep(jid_prep_local, fw1024, NULL);
    expect_prep(jid_prep_local, pi511, pi511);
    expect_prep(jid_prep_local, pi512, NULL);
    assert_non_null(pi511x);
    snprintf(pi511x, 1025, "%sx", pi511); /* 1023 bytes */
    expect_prep(jid_prep_local, pi511x, pi511x);
    free(a1023);
    free(a1024);
    free(fw1023);
    free(fw1024);
    free(pi511);
    free(pi512);
    free(pi511x);
}

static void test_resource_length(void **state)
{
    char *r1023 = repeat("r", 1023), *r1024 = repeat("r", 1024);
    char *e341 = repeat("\u20AC", 341), *e342 = repeat("\u20AC", 342);
    /* Ideographic spaces shrink from 3 bytes to 1 on mapping. */
    char *sp1023 = repeat("\u3000", 1023), *sp1023out = repeat(" ", 1023);
    char *full = malloc(2048);
    jid_t j;

    expect_prep(jid_prep_resource, r1023, r1023);
    expect_prep(jid_prep_resource, r1024, NULL);
    expect_prep(jid_prep_resource, e341, e341);
    expect_prep(jid_prep_resource, e342, NULL);
    expect_prep(jid_prep_resource, sp1023, sp1023out);

    assert_non_null(full);
    snprintf(full, 2048, "a@b/%s", r1023);
    assert_int_equal(jid_parse(full, &j), 0);
    assert_string_equal(j.resource, r1023);
    jid_clear(&j);
    snprintf(full, 2048, "a@b/%s", r1024);
    assert_int_equal(jid_parse(full, &j), TERN_EINVAL);

    free(r1023);
    free(r1024);
    free(e341);
    free(e342);
    free(sp1023);
    free(sp1023out);
    free(full);
}

/* Labels of label_len 'a's joined by dots, cut to exactly len bytes; the
 * callers pick label_len so that the cut never lands on a dot. */
static char *long_domain(size_t len, size_t label_len)
{
    char *s = malloc(len + 1);

    assert_non_null(s);
    for (size_t i = 0; i < len; i++)
        s[i] = (i % (label_len + 1) == label_len) ? '.' : 'a';
    s[len] = '\0';
    assert_true(s[len - 1] != '.');
    return s;
}

static void test_domain_length(void **state)
{
    char *d1023 = long_domain(1023, 63), *d1024 = long_domain(1024, 62);
    char *dot = malloc(1025);
    char *label63 = repeat("a", 63), *label64 = repeat("a", 64);
    char buf[128];

    expect_prep(jid_prep_domain, d1023, d1023);
    expect_prep(jid_prep_domain, d1024, NULL);
    /* The stripped trailing dot does not count. */
    assert_non_null(dot);
    snprintf(dot, 1025, "%s.", d1023);
    expect_prep(jid_prep_domain, dot, d1023);

    snprintf(buf, sizeof(buf), "%s.example", label63);
    expect_prep(jid_prep_domain, buf, buf);
    snprintf(buf, sizeof(buf), "%s.example", label64);
    expect_prep(jid_prep_domain, buf, NULL);
    snprintf(buf, sizeof(buf), "%s\u00FC.example", label63);
    expect_prep(jid_prep_domain, buf, NULL);

    free(d1023);
    free(d1024);
    free(dot);
    free(label63);
    free(label64);
}

static void test_huge_input(void **state)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    jid_t j;

    assert_non_null(s);
    memset(s, 'a', n);
    s[n] = '\0';
    assert_int_equal(jid_parse(s, &j), TERN_EINVAL);
    s[10] = '@';
    s[20] = '/';
    assert_int_equal(jid_parse(s, &j), TERN_EINVAL);
    expect_prep(jid_prep_local, s + 21, NULL);
    expect_prep(jid_prep_domain, s + 21, NULL);
    expect_prep(jid_prep_resource, s + 21, NULL);
    free(s);
}

static void test_parts_and_strings(void **state)
{
    jid_t j;
    char *s;

    assert_int_equal(jid_parse("Juliet@Example.com/Balcony", &j), 0);
    assert_string_equal(j.local, "juliet");
    assert_string_equal(j.domain, "example.com");
    assert_string_equal(j.resource, "Balcony");
    s = jid_to_string(&j);
    assert_string_equal(s, "juliet@example.com/Balcony");
    free(s);
    s = jid_bare_string(&j);
    assert_string_equal(s, "juliet@example.com");
    free(s);
    jid_clear(&j);
    assert_null(j.local);
    assert_null(j.domain);
    assert_null(j.resource);
    assert_null(j.block_);
    jid_clear(&j); /* twice is harmless */

    assert_int_equal(jid_parse("example.com", &j), 0);
    assert_null(j.local);
    assert_null(j.resource);
    s = jid_to_string(&j);
    assert_string_equal(s, "example.com");
    free(s);
    s = jid_bare_string(&j);
    assert_string_equal(s, "example.com");
    free(s);
    jid_clear(&j);

    assert_int_equal(jid_parse("example.com/r", &j), 0);
    s = jid_bare_string(&j);
    assert_string_equal(s, "example.com");
    free(s);
    jid_clear(&j);

    assert_null(jid_to_string(NULL));
    assert_null(jid_bare_string(&j));
    assert_int_equal(jid_parse(NULL, &j), TERN_EINVAL);
}

static void test_equal(void **state)
{
    jid_t a, b, c, d, e;

    assert_int_equal(jid_parse("JULIET@example.com/x", &a), 0);
    assert_int_equal(jid_parse("juliet@EXAMPLE.com./x", &b), 0);
    assert_int_equal(jid_parse("juliet@example.com/y", &c), 0);
    assert_int_equal(jid_parse("juliet@example.com", &d), 0);
    assert_int_equal(jid_parse("example.com/x", &e), 0);

    assert_true(jid_equal(&a, &b));
    assert_true(jid_bare_equal(&a, &b));
    assert_false(jid_equal(&a, &c));
    assert_true(jid_bare_equal(&a, &c));
    assert_false(jid_equal(&a, &d));
    assert_true(jid_bare_equal(&a, &d));
    assert_false(jid_bare_equal(&a, &e));
    assert_false(jid_equal(&a, &e));
    assert_false(jid_equal(&a, NULL));
    assert_false(jid_bare_equal(NULL, &a));

    jid_clear(&a);
    jid_clear(&b);
    jid_clear(&c);
    jid_clear(&d);
    jid_clear(&e);
}

static void test_copy(void **state)
{
    jid_t a, b, bad = {0};
    char *s;

    assert_int_equal(jid_parse("romeo@b\u00FCcher.example/orchard", &a), 0);
    assert_int_equal(jid_copy(&a, &b), 0);
    assert_true(jid_equal(&a, &b));
    assert_ptr_not_equal(a.block_, b.block_);
    jid_clear(&a);
    s = jid_to_string(&b);
    assert_string_equal(s, "romeo@b\u00FCcher.example/orchard");
    free(s);

    /* Copying onto itself must not read the block it replaces. */
    assert_int_equal(jid_copy(&b, &b), 0);
    assert_string_equal(b.resource, "orchard");
    jid_clear(&b);

    assert_int_equal(jid_parse("example.com", &a), 0);
    assert_int_equal(jid_copy(&a, &b), 0);
    assert_null(b.local);
    assert_null(b.resource);
    assert_string_equal(b.domain, "example.com");
    jid_clear(&a);
    jid_clear(&b);

    assert_int_equal(jid_copy(&bad, &b), TERN_EINVAL);
    assert_null(b.block_);
}

static void test_from_parts(void **state)
{
    jid_t a, b;

    assert_int_equal(jid_from_parts("Juliet", "Example.COM.", "Balcony", &a), 0);
    assert_int_equal(jid_parse("juliet@example.com/Balcony", &b), 0);
    assert_true(jid_equal(&a, &b));
    jid_clear(&a);
    jid_clear(&b);

    assert_int_equal(jid_from_parts(NULL, "xn--bcher-kva.example", NULL, &a), 0);
    assert_null(a.local);
    assert_null(a.resource);
    assert_string_equal(a.domain, "b\u00FCcher.example");
    jid_clear(&a);

    /* Parts are not re-split: '@' and '/' stay in the resource only. */
    assert_int_equal(jid_from_parts("a", "b", "c@d/e", &a), 0);
    assert_string_equal(a.resource, "c@d/e");
    jid_clear(&a);

    assert_int_equal(jid_from_parts("a@b", "example.com", NULL, &a), TERN_EINVAL);
    assert_null(a.block_);
    assert_int_equal(jid_from_parts("a", "example.com/x", NULL, &a), TERN_EINVAL);
    assert_int_equal(jid_from_parts("a", "a@example.com", NULL, &a), TERN_EINVAL);
    assert_int_equal(jid_from_parts("", "example.com", NULL, &a), TERN_EINVAL);
    assert_int_equal(jid_from_parts("a", "example.com", "", &a), TERN_EINVAL);
    assert_int_equal(jid_from_parts("a", NULL, NULL, &a), TERN_EINVAL);
    assert_int_equal(jid_from_parts("a", "", NULL, &a), TERN_EINVAL);
}

static void test_prep_parts(void **state)
{
    expect_prep(jid_prep_local, "Juliet", "juliet");
    expect_prep(jid_prep_local, "a@b", NULL);
    expect_prep(jid_prep_local, "a/b", NULL);
    expect_prep(jid_prep_local, "", NULL);
    expect_prep(jid_prep_local, NULL, NULL);
    expect_prep(jid_prep_domain, "XN--BCHER-KVA.example.", "b\u00FCcher.example");
    expect_prep(jid_prep_domain, ".", NULL);
    expect_prep(jid_prep_domain, "", NULL);
    expect_prep(jid_prep_domain, "[::1]", "[::1]");
    expect_prep(jid_prep_resource, "Foo Bar", "Foo Bar");
    expect_prep(jid_prep_resource, "a@b/c", "a@b/c");
    expect_prep(jid_prep_resource, "", NULL);
    expect_prep(jid_prep_resource, "\x1b", NULL);
    assert_int_equal(jid_prep_local("a", NULL), TERN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),         cmocka_unit_test(test_local_length),
        cmocka_unit_test(test_resource_length), cmocka_unit_test(test_domain_length),
        cmocka_unit_test(test_huge_input),      cmocka_unit_test(test_parts_and_strings),
        cmocka_unit_test(test_equal),           cmocka_unit_test(test_copy),
        cmocka_unit_test(test_from_parts),      cmocka_unit_test(test_prep_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
