/* SPDX-License-Identifier: MIT
 * jid.c - XMPP address parsing and normalisation (RFC 7622).
 *
 * An address is split per RFC 7622 §3.1 and each part is enforced on its
 * own: the localpart with the PRECIS UsernameCaseMapped profile (RFC 8265
 * §3.4: width mapping, lowercasing, NFC, IdentifierClass, Bidi Rule, plus
 * the XMPP-specific prohibited characters), the resourcepart with the
 * OpaqueString profile (RFC 8265 §4.2: non-ASCII spaces to U+0020, NFC,
 * FreeformClass) and the domainpart with the IDNA2008 mappings of RFC 5895
 * followed by per-label validation through libidn2 and conversion of
 * A-labels to U-labels. The PRECIS derived property (RFC 8264 §8) is
 * computed from ICU's character properties, so it tracks ICU's Unicode
 * version rather than a frozen table. Printable-ASCII parts never touch ICU,
 * because nearly every stanza address takes that path.
 */
#include "xmpp/jid.h"

#include "core/common.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uscript.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

/* Mappings shrink a part by at most a factor of three (fullwidth ASCII,
 * Hangul jamo composing to a syllable, KELVIN SIGN to 'k'), so anything
 * longer than this can never normalise to JID_PART_MAX bytes and is
 * rejected before any work or allocation is done on it. */
#define RAW_PART_MAX (4 * JID_PART_MAX)
#define RAW_JID_MAX  (3 * RAW_PART_MAX + 2)
#define LABEL_MAX    63

/* RFC 8264 §7: rules are reapplied until the result is stable, giving up
 * after this many extra rounds. */
#define PRECIS_EXTRA_ROUNDS 3

typedef struct {
    UChar *p;
    int32_t len;
} ustr_t;

typedef struct {
    UChar32 *cp;
    size_t n;
} cps_t;

typedef int32_t (*umap_fn)(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err);

enum precis_prop {
    PP_PVALID,
    PP_FREE_PVAL, /* ID_DIS in IdentifierClass, PVALID in FreeformClass */
    PP_CONTEXTJ,
    PP_CONTEXTO,
    PP_DISALLOWED,
    PP_UNASSIGNED,
};

enum precis_class { PC_IDENTIFIER, PC_FREEFORM };

static int icu_err(UErrorCode err)
{
    return err == U_MEMORY_ALLOCATION_ERROR ? TERN_ENOMEM : TERN_EINVAL;
}

static bool is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return false;
    }
    return true;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ---- UTF-16 working strings --------------------------------------------- */

static void ustr_free(ustr_t *s)
{
    free(s->p);
    s->p = NULL;
    s->len = 0;
}

static int ustr_from_utf8(const char *s, size_t n, ustr_t *out)
{
    UErrorCode err = U_ZERO_ERROR;
    int32_t need = 0;

    out->p = NULL;
    out->len = 0;
    u_strFromUTF8(NULL, 0, &need, s, (int32_t)n, &err);
    if (U_FAILURE(err) && err != U_BUFFER_OVERFLOW_ERROR)
        return icu_err(err);
    out->p = malloc(((size_t)need + 1) * sizeof(UChar));
    if (!out->p)
        return TERN_ENOMEM;
    err = U_ZERO_ERROR;
    u_strFromUTF8(out->p, need + 1, &out->len, s, (int32_t)n, &err);
    if (U_FAILURE(err)) {
        ustr_free(out);
        return icu_err(err);
    }
    return 0;
}

/* Writes at most JID_PART_MAX bytes plus a NUL into out. */
static int ustr_to_utf8(const ustr_t *s, char *out, size_t *outlen)
{
    UErrorCode err = U_ZERO_ERROR;
    int32_t n = 0;

    u_strToUTF8(out, JID_PART_MAX + 1, &n, s->p, s->len, &err);
    if (U_FAILURE(err) || n > JID_PART_MAX)
        return err == U_MEMORY_ALLOCATION_ERROR ? TERN_ENOMEM : TERN_EINVAL;
    out[n] = '\0';
    *outlen = (size_t)n;
    return 0;
}

/* Runs an ICU-style preflighting transform, growing the destination once
 * if the first guess was too small. */
static int ustr_apply(ustr_t *s, umap_fn fn)
{
    int32_t cap = s->len * 3 + 16;

    for (int attempt = 0; attempt < 2; attempt++) {
        UChar *d = malloc((size_t)cap * sizeof(UChar));
        UErrorCode err = U_ZERO_ERROR;
        int32_t n;

        if (!d)
            return TERN_ENOMEM;
        n = fn(s->p, s->len, d, cap, &err);
        if (err == U_BUFFER_OVERFLOW_ERROR) {
            free(d);
            cap = n + 1;
            continue;
        }
        if (U_FAILURE(err)) {
            free(d);
            return icu_err(err);
        }
        free(s->p);
        s->p = d;
        s->len = n;
        return 0;
    }
    return TERN_EINVAL;
}

static int cps_from_ustr(const ustr_t *s, cps_t *out)
{
    int32_t i = 0;

    out->n = 0;
    out->cp = malloc(((size_t)s->len + 1) * sizeof(UChar32));
    if (!out->cp)
        return TERN_ENOMEM;
    while (i < s->len) {
        UChar32 c;
        U16_NEXT(s->p, i, s->len, c);
        out->cp[out->n++] = c;
    }
    return 0;
}

/* ---- mapping rules -------------------------------------------------------- */

/* The output count keeps running past cap so callers can preflight, as the
 * ICU functions this mirrors do. */
static void put_cp(UChar *dst, int32_t cap, int32_t *j, UChar32 c, UErrorCode *err)
{
    int32_t need = U16_LENGTH(c);

    if (*j + need <= cap) {
        UBool bad = false;
        U16_APPEND(dst, *j, cap, c, bad);
        (void)bad;
    } else {
        *j += need;
        *err = U_BUFFER_OVERFLOW_ERROR;
    }
}

/* Only the <wide> and <narrow> decompositions are applied (RFC 8265 §3.4
 * rule 1): full NFKC would also fold compatibility characters such as
 * ligatures, which IdentifierClass is meant to reject rather than rewrite. */
static int32_t map_width(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err)
{
    const UNormalizer2 *nfkc = unorm2_getNFKCInstance(err);
    int32_t i = 0, j = 0;

    if (U_FAILURE(*err))
        return 0;
    while (i < n) {
        UChar32 c;
        int32_t dt;

        U16_NEXT(src, i, n, c);
        dt = u_getIntPropertyValue(c, UCHAR_DECOMPOSITION_TYPE);
        if (dt == U_DT_WIDE || dt == U_DT_NARROW) {
            UChar dec[8];
            UErrorCode e2 = U_ZERO_ERROR;
            int32_t dl = unorm2_getRawDecomposition(nfkc, c, dec, 8, &e2);
            int32_t k = 0;

            if (U_FAILURE(e2) || dl <= 0) {
                put_cp(dst, cap, &j, c, err);
                continue;
            }
            while (k < dl) {
                UChar32 d;
                U16_NEXT(dec, k, dl, d);
                put_cp(dst, cap, &j, d, err);
            }
        } else {
            put_cp(dst, cap, &j, c, err);
        }
    }
    return j;
}

static int32_t map_lower(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err)
{
    return u_strToLower(dst, cap, src, n, "", err);
}

static int32_t map_nfc(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err)
{
    const UNormalizer2 *nfc = unorm2_getNFCInstance(err);

    if (U_FAILURE(*err))
        return 0;
    return unorm2_normalize(nfc, src, n, dst, cap, err);
}

/* OpaqueString (RFC 8265 §4.2 rule 2) keeps spaces but not their many
 * look-alikes, which would make visually equal resources differ. */
static int32_t map_spaces(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err)
{
    int32_t i = 0, j = 0;

    while (i < n) {
        UChar32 c;
        U16_NEXT(src, i, n, c);
        if (c >= 0x80 && u_charType(c) == U_SPACE_SEPARATOR)
            c = 0x20;
        put_cp(dst, cap, &j, c, err);
    }
    return j;
}

/* RFC 5895 §2 step 5: the ideographic full stop separates labels. */
static int32_t map_dots(const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *err)
{
    int32_t i = 0, j = 0;

    while (i < n) {
        UChar32 c;
        U16_NEXT(src, i, n, c);
        put_cp(dst, cap, &j, c == 0x3002 ? '.' : c, err);
    }
    return j;
}

static int apply_rules_once(ustr_t *s, const umap_fn *rules, size_t nrules)
{
    for (size_t i = 0; i < nrules; i++) {
        int rc = ustr_apply(s, rules[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Case mapping after NFC can in rare cases produce a string the rules would
 * change again, which would make a stored JID differ from a re-parsed one. */
static int apply_rules_stable(ustr_t *s, const umap_fn *rules, size_t nrules)
{
    int rc = apply_rules_once(s, rules, nrules);

    if (rc)
        return rc;
    for (int round = 0; round < PRECIS_EXTRA_ROUNDS; round++) {
        ustr_t prev = {malloc(((size_t)s->len + 1) * sizeof(UChar)), s->len};
        bool same;

        if (!prev.p)
            return TERN_ENOMEM;
        memcpy(prev.p, s->p, (size_t)s->len * sizeof(UChar));
        rc = apply_rules_once(s, rules, nrules);
        same = rc == 0 && prev.len == s->len &&
               memcmp(prev.p, s->p, (size_t)s->len * sizeof(UChar)) == 0;
        ustr_free(&prev);
        if (rc)
            return rc;
        if (same)
            return 0;
    }
    return TERN_EINVAL;
}

/* ---- PRECIS derived property (RFC 8264 §8, §9) ----------------------------- */

static bool has_compat(UChar32 c)
{
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfkc = unorm2_getNFKCInstance(&err);
    UChar buf[2];
    int32_t n = 0;
    UBool bad = false;
    UBool normalized;

    if (U_FAILURE(err))
        return true;
    U16_APPEND(buf, n, 2, c, bad);
    (void)bad;
    normalized = unorm2_isNormalized(nfkc, buf, n, &err);
    return U_FAILURE(err) || !normalized;
}

/* RFC 5892 §2.6, which RFC 8264 §9.6 adopts unchanged. */
static bool exception_prop(UChar32 c, enum precis_prop *p)
{
    switch (c) {
    case 0x00DF:
    case 0x03C2:
    case 0x06FD:
    case 0x06FE:
    case 0x0F0B:
    case 0x3007:
        *p = PP_PVALID;
        return true;
    case 0x00B7:
    case 0x0375:
    case 0x05F3:
    case 0x05F4:
    case 0x30FB:
        *p = PP_CONTEXTO;
        return true;
    case 0x0640:
    case 0x07FA:
    case 0x302E:
    case 0x302F:
    case 0x303B:
        *p = PP_DISALLOWED;
        return true;
    default:
        break;
    }
    if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9)) {
        *p = PP_CONTEXTO;
        return true;
    }
    if (c >= 0x3031 && c <= 0x3035) {
        *p = PP_DISALLOWED;
        return true;
    }
    return false;
}

static enum precis_prop precis_derive(UChar32 c)
{
    enum precis_prop p;
    int8_t gc;
    int32_t hst;

    if (exception_prop(c, &p))
        return p;
    gc = u_charType(c);
    if (gc == U_UNASSIGNED && !u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT))
        return PP_UNASSIGNED;
    if (c >= 0x21 && c <= 0x7E)
        return PP_PVALID;
    if (u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL))
        return PP_CONTEXTJ;
    hst = u_getIntPropertyValue(c, UCHAR_HANGUL_SYLLABLE_TYPE);
    if (hst == U_HST_LEADING_JAMO || hst == U_HST_VOWEL_JAMO || hst == U_HST_TRAILING_JAMO)
        return PP_DISALLOWED;
    if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT) ||
        u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT))
        return PP_DISALLOWED;
    if (gc == U_CONTROL_CHAR)
        return PP_DISALLOWED;
    if (has_compat(c))
        return PP_FREE_PVAL;
    switch (gc) {
    case U_LOWERCASE_LETTER:
    case U_UPPERCASE_LETTER:
    case U_OTHER_LETTER:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_MODIFIER_LETTER:
    case U_NON_SPACING_MARK:
    case U_COMBINING_SPACING_MARK:
        return PP_PVALID;
    case U_TITLECASE_LETTER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
    case U_ENCLOSING_MARK:
    case U_SPACE_SEPARATOR:
    case U_MATH_SYMBOL:
    case U_CURRENCY_SYMBOL:
    case U_MODIFIER_SYMBOL:
    case U_OTHER_SYMBOL:
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
        return PP_FREE_PVAL;
    default:
        return PP_DISALLOWED;
    }
}

static bool script_is(UChar32 c, UScriptCode want)
{
    UErrorCode err = U_ZERO_ERROR;
    UScriptCode sc = uscript_getScript(c, &err);
    return U_SUCCESS(err) && sc == want;
}

static int32_t joining_type(UChar32 c)
{
    return u_getIntPropertyValue(c, UCHAR_JOINING_TYPE);
}

static bool zwnj_joining_ok(const cps_t *s, size_t i)
{
    size_t k = i;
    bool left = false, right = false;

    while (k > 0) {
        int32_t jt = joining_type(s->cp[--k]);
        if (jt == U_JT_TRANSPARENT)
            continue;
        left = jt == U_JT_LEFT_JOINING || jt == U_JT_DUAL_JOINING;
        break;
    }
    for (k = i + 1; left && k < s->n; k++) {
        int32_t jt = joining_type(s->cp[k]);
        if (jt == U_JT_TRANSPARENT)
            continue;
        right = jt == U_JT_RIGHT_JOINING || jt == U_JT_DUAL_JOINING;
        break;
    }
    return left && right;
}

static bool string_has_range(const cps_t *s, UChar32 lo, UChar32 hi)
{
    for (size_t k = 0; k < s->n; k++) {
        if (s->cp[k] >= lo && s->cp[k] <= hi)
            return true;
    }
    return false;
}

/* The contextual rules of RFC 5892 Appendix A, which PRECIS reuses. */
static bool context_ok(const cps_t *s, size_t i)
{
    UChar32 c = s->cp[i];
    UChar32 before = i > 0 ? s->cp[i - 1] : -1;
    UChar32 after = i + 1 < s->n ? s->cp[i + 1] : -1;

    switch (c) {
    case 0x200C:
        if (before >= 0 && u_getCombiningClass(before) == 9)
            return true;
        return zwnj_joining_ok(s, i);
    case 0x200D:
        return before >= 0 && u_getCombiningClass(before) == 9;
    case 0x00B7:
        return before == 0x006C && after == 0x006C;
    case 0x0375:
        return after >= 0 && script_is(after, USCRIPT_GREEK);
    case 0x05F3:
    case 0x05F4:
        return before >= 0 && script_is(before, USCRIPT_HEBREW);
    case 0x30FB:
        for (size_t k = 0; k < s->n; k++) {
            if (script_is(s->cp[k], USCRIPT_HIRAGANA) || script_is(s->cp[k], USCRIPT_KATAKANA) ||
                script_is(s->cp[k], USCRIPT_HAN))
                return true;
        }
        return false;
    default:
        break;
    }
    if (c >= 0x0660 && c <= 0x0669)
        return !string_has_range(s, 0x06F0, 0x06F9);
    if (c >= 0x06F0 && c <= 0x06F9)
        return !string_has_range(s, 0x0660, 0x0669);
    return false;
}

static bool class_ok(const cps_t *s, enum precis_class cls)
{
    for (size_t i = 0; i < s->n; i++) {
        switch (precis_derive(s->cp[i])) {
        case PP_PVALID:
            break;
        case PP_FREE_PVAL:
            if (cls != PC_FREEFORM)
                return false;
            break;
        case PP_CONTEXTJ:
        case PP_CONTEXTO:
            if (!context_ok(s, i))
                return false;
            break;
        default:
            return false;
        }
    }
    return true;
}

/* ---- Bidi Rule (RFC 5893 §2) ------------------------------------------------ */

static bool is_rtl_dir(UCharDirection d)
{
    return d == U_RIGHT_TO_LEFT || d == U_RIGHT_TO_LEFT_ARABIC || d == U_ARABIC_NUMBER;
}

static bool has_rtl(const UChar32 *cp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (is_rtl_dir(u_charDirection(cp[i])))
            return true;
    }
    return false;
}

static bool bidi_ok(const UChar32 *cp, size_t n)
{
    UCharDirection first, last = U_DIR_NON_SPACING_MARK;
    bool rtl, en = false, an = false;

    if (n == 0)
        return false;
    first = u_charDirection(cp[0]);
    if (first != U_LEFT_TO_RIGHT && first != U_RIGHT_TO_LEFT && first != U_RIGHT_TO_LEFT_ARABIC)
        return false;
    rtl = first != U_LEFT_TO_RIGHT;
    for (size_t i = 0; i < n; i++) {
        UCharDirection d = u_charDirection(cp[i]);

        switch (d) {
        case U_EUROPEAN_NUMBER:
            en = true;
            break;
        case U_ARABIC_NUMBER:
            if (!rtl)
                return false;
            an = true;
            break;
        case U_RIGHT_TO_LEFT:
        case U_RIGHT_TO_LEFT_ARABIC:
            if (!rtl)
                return false;
            break;
        case U_LEFT_TO_RIGHT:
            if (rtl)
                return false;
            break;
        case U_EUROPEAN_NUMBER_SEPARATOR:
        case U_COMMON_NUMBER_SEPARATOR:
        case U_EUROPEAN_NUMBER_TERMINATOR:
        case U_OTHER_NEUTRAL:
        case U_BOUNDARY_NEUTRAL:
        case U_DIR_NON_SPACING_MARK:
            break;
        default:
            return false;
        }
        if (d != U_DIR_NON_SPACING_MARK)
            last = d;
    }
    if (rtl)
        return !(en && an) && (last == U_RIGHT_TO_LEFT || last == U_RIGHT_TO_LEFT_ARABIC ||
                               last == U_EUROPEAN_NUMBER || last == U_ARABIC_NUMBER);
    return last == U_LEFT_TO_RIGHT || last == U_EUROPEAN_NUMBER;
}

/* ---- localpart ------------------------------------------------------------- */

/* RFC 7622 §3.3.1 */
static bool local_forbidden(UChar32 c)
{
    return c == '"' || c == '&' || c == '\'' || c == '/' || c == ':' || c == '<' || c == '>' ||
           c == '@';
}

static int local_fast(const char *in, size_t n, char *out, size_t *outlen)
{
    if (n > JID_PART_MAX)
        return TERN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c < 0x21 || c > 0x7E || local_forbidden(c))
            return TERN_EINVAL;
        out[i] = ascii_lower(c);
    }
    out[n] = '\0';
    *outlen = n;
    return 0;
}

/* The PRECIS pipeline both profiles share (RFC 8264 §7): map until the
 * result is stable, check the string class, then the profile's own extra
 * rule on the code points (NULL for none). */
typedef bool (*cps_check_fn)(const cps_t *cps);

static int precis_prepare(const char *in, size_t n, const umap_fn *rules, size_t nrules,
                          enum precis_class cls, cps_check_fn extra, char *out, size_t *outlen)
{
    ustr_t s;
    cps_t cps = {NULL, 0};
    int rc = ustr_from_utf8(in, n, &s);
    if (rc)
        return rc;
    rc = apply_rules_stable(&s, rules, nrules);
    if (rc)
        goto out;
    rc = cps_from_ustr(&s, &cps);
    if (rc)
        goto out;
    rc = TERN_EINVAL;
    if (cps.n == 0 || !class_ok(&cps, cls) || (extra && !extra(&cps)))
        goto out;
    rc = ustr_to_utf8(&s, out, outlen);
out:
    free(cps.cp);
    ustr_free(&s);
    return rc;
}

/* RFC 7622 §3.3.1 characters, and the Bidi Rule for right-to-left text. */
static bool local_extra_ok(const cps_t *cps)
{
    for (size_t i = 0; i < cps->n; i++)
        if (local_forbidden(cps->cp[i]))
            return false;
    return !has_rtl(cps->cp, cps->n) || bidi_ok(cps->cp, cps->n);
}

static int prep_local_n(const char *in, size_t n, char *out, size_t *outlen)
{
    static const umap_fn rules[] = {map_width, map_lower, map_nfc};
    if (n == 0 || n > RAW_PART_MAX)
        return TERN_EINVAL;
    if (is_ascii(in, n))
        return local_fast(in, n, out, outlen);
    return precis_prepare(in, n, rules, TERN_ARRAY_LEN(rules), PC_IDENTIFIER, local_extra_ok, out,
                          outlen);
}

/* ---- resourcepart ------------------------------------------------------------ */

static int prep_resource_n(const char *in, size_t n, char *out, size_t *outlen)
{
    static const umap_fn rules[] = {map_spaces, map_nfc};
    if (n == 0 || n > RAW_PART_MAX)
        return TERN_EINVAL;
    if (is_ascii(in, n)) {
        if (n > JID_PART_MAX)
            return TERN_EINVAL;
        for (size_t i = 0; i < n; i++) {
            if (in[i] < 0x20 || in[i] == 0x7F)
                return TERN_EINVAL;
        }
        memcpy(out, in, n);
        out[n] = '\0';
        *outlen = n;
        return 0;
    }

    return precis_prepare(in, n, rules, TERN_ARRAY_LEN(rules), PC_FREEFORM, NULL, out, outlen);
}

/* ---- domainpart ------------------------------------------------------------- */

static bool is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int idn2_err(int rc)
{
    return rc == IDN2_MALLOC ? TERN_ENOMEM : TERN_EINVAL;
}

/* libidn2 does not evaluate the CONTEXTO rules, so they are checked here
 * with the same code the PRECIS classes use. */
static int ulabel_context_ok(const char *label, size_t n)
{
    ustr_t s;
    cps_t cps = {NULL, 0};
    int rc = ustr_from_utf8(label, n, &s);

    if (rc)
        return rc;
    rc = cps_from_ustr(&s, &cps);
    if (rc == 0) {
        for (size_t i = 0; i < cps.n; i++) {
            enum precis_prop p;
            if (exception_prop(cps.cp[i], &p) && p == PP_CONTEXTO && !context_ok(&cps, i)) {
                rc = TERN_EINVAL;
                break;
            }
        }
    }
    free(cps.cp);
    ustr_free(&s);
    return rc;
}

/* Validates a NUL-terminated, already mapped U-label and returns its
 * A-label. Requiring the A-label to decode back to exactly the input is
 * what makes the stored form a fixed point of this function. */
static int ulabel_check(const char *label, char **alabel)
{
    uint8_t *a = NULL;
    char *u = NULL;
    size_t n = strlen(label);
    int rc;

    *alabel = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c < 0x80 && !is_ldh((char)c))
            return TERN_EINVAL;
    }
    rc = idn2_lookup_u8((const uint8_t *)label, &a, IDN2_NO_TR46);
    if (rc != IDN2_OK)
        return idn2_err(rc);
    if (strlen((char *)a) > LABEL_MAX || strchr((char *)a, '.')) {
        idn2_free(a);
        return TERN_EINVAL;
    }
    rc = idn2_to_unicode_8z8z((const char *)a, &u, 0);
    if (rc != IDN2_OK) {
        idn2_free(a);
        return idn2_err(rc);
    }
    rc = strcmp(u, label) == 0 ? 0 : TERN_EINVAL;
    idn2_free(u);
    if (rc == 0)
        rc = ulabel_context_ok(label, n);
    if (rc) {
        idn2_free(a);
        return rc;
    }
    *alabel = (char *)a;
    return 0;
}

static int put_label(const char *src, size_t n, char *out, size_t *olen)
{
    if (*olen + n > JID_PART_MAX)
        return TERN_EINVAL;
    memcpy(out + *olen, src, n);
    *olen += n;
    return 0;
}

/* Applies the RFC 5895 mappings (lowercase, width, NFC, label separators)
 * and returns a malloc'd UTF-8 string. */
static int domain_map(const char *in, size_t n, char **out, size_t *outlen)
{
    static const umap_fn rules[] = {map_lower, map_width, map_nfc, map_dots};
    UErrorCode err = U_ZERO_ERROR;
    ustr_t s;
    int32_t need = 0;
    int rc;

    *out = NULL;
    rc = ustr_from_utf8(in, n, &s);
    if (rc)
        return rc;
    rc = apply_rules_stable(&s, rules, TERN_ARRAY_LEN(rules));
    if (rc)
        goto done;
    u_strToUTF8(NULL, 0, &need, s.p, s.len, &err);
    if (U_FAILURE(err) && err != U_BUFFER_OVERFLOW_ERROR) {
        rc = icu_err(err);
        goto done;
    }
    rc = TERN_ENOMEM;
    *out = malloc((size_t)need + 1);
    if (!*out)
        goto done;
    err = U_ZERO_ERROR;
    u_strToUTF8(*out, need + 1, &need, s.p, s.len, &err);
    rc = U_FAILURE(err) ? icu_err(err) : 0;
    if (rc) {
        free(*out);
        *out = NULL;
    }
    *outlen = (size_t)need;
done:
    ustr_free(&s);
    return rc;
}

/* A U-label typed directly goes through the RFC 5895 mappings before it is
 * checked, so a decoded A-label must already be in mapped form; otherwise
 * the result would map to something else when parsed again. */
static int ulabel_is_mapped(const char *u)
{
    size_t n = strlen(u), mlen = 0;
    char *m = NULL;
    int rc = domain_map(u, n, &m, &mlen);

    if (rc == 0 && (mlen != n || memcmp(m, u, n) != 0))
        rc = TERN_EINVAL;
    free(m);
    return rc;
}

static int alabel_to_ulabel(const char *label, char *out, size_t *olen)
{
    char *u = NULL, *a2 = NULL;
    int rc = idn2_to_unicode_8z8z(label, &u, 0);

    if (rc != IDN2_OK)
        return idn2_err(rc);
    /* An xn-- label that decodes to plain ASCII is not an A-label. */
    rc = is_ascii(u, strlen(u)) ? TERN_EINVAL : ulabel_is_mapped(u);
    if (rc == 0)
        rc = ulabel_check(u, &a2);
    if (rc == 0 && strcmp(a2, label) != 0)
        rc = TERN_EINVAL;
    if (rc == 0)
        rc = put_label(u, strlen(u), out, olen);
    idn2_free(a2);
    idn2_free(u);
    return rc;
}

/* label is NUL-terminated and lowercased; appends its normalised form. */
static int prep_label(const char *label, size_t n, char *out, size_t *olen)
{
    char *a = NULL;
    int rc;

    if (n == 0)
        return TERN_EINVAL;
    if (!is_ascii(label, n)) {
        rc = ulabel_check(label, &a);
        idn2_free(a);
        return rc ? rc : put_label(label, n, out, olen);
    }
    if (n > LABEL_MAX || label[0] == '-' || label[n - 1] == '-')
        return TERN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!is_ldh(label[i]))
            return TERN_EINVAL;
    }
    if (n >= 4 && label[2] == '-' && label[3] == '-') {
        /* Other "??--" prefixes are reserved for future ACE schemes. */
        if (label[0] != 'x' || label[1] != 'n')
            return TERN_EINVAL;
        return alabel_to_ulabel(label, out, olen);
    }
    return put_label(label, n, out, olen);
}

/* An RTL label anywhere makes every label subject to the Bidi Rule
 * (RFC 5893 §1.4, "Bidi domain name"). */
static int domain_bidi_ok(const char *d, size_t n)
{
    ustr_t s;
    cps_t cps = {NULL, 0};
    int rc;

    rc = ustr_from_utf8(d, n, &s);
    if (rc)
        return rc;
    rc = cps_from_ustr(&s, &cps);
    if (rc == 0 && has_rtl(cps.cp, cps.n)) {
        size_t start = 0;
        for (size_t i = 0; i <= cps.n && rc == 0; i++) {
            if (i == cps.n || cps.cp[i] == '.') {
                if (!bidi_ok(cps.cp + start, i - start))
                    rc = TERN_EINVAL;
                start = i + 1;
            }
        }
    }
    free(cps.cp);
    ustr_free(&s);
    return rc;
}

static bool ip_literal(const char *d, size_t n, char *out, size_t *outlen)
{
    unsigned char addr[16];
    char tmp[64];

    if (n >= 2 && d[0] == '[' && d[n - 1] == ']') {
        if (n - 2 >= sizeof(tmp))
            return false;
        memcpy(tmp, d + 1, n - 2);
        tmp[n - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return false;
    } else {
        /* Cheap rejection of ordinary names before inet_pton. */
        if (d[n - 1] < '0' || d[n - 1] > '9' || n >= sizeof(tmp))
            return false;
        memcpy(tmp, d, n);
        tmp[n] = '\0';
        if (inet_pton(AF_INET, tmp, addr) != 1)
            return false;
    }
    memcpy(out, d, n);
    out[n] = '\0';
    *outlen = n;
    return true;
}

/* RFC 3696 §2: a top-level label is never all-numeric, so such a domain
 * can only have been meant as an (invalid) IPv4 address. */
static bool numeric_tld(const char *d, size_t n)
{
    size_t i = n;

    while (i > 0 && d[i - 1] != '.')
        i--;
    if (i == n)
        return false;
    for (; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return false;
    }
    return true;
}

static int prep_domain_n(const char *in, size_t n, char *out, size_t *outlen)
{
    char fast[JID_PART_MAX + 2];
    char *work = fast, *heap = NULL;
    size_t len = n, olen = 0;
    bool ascii = is_ascii(in, n);
    int rc = 0;

    if (n == 0 || n > RAW_PART_MAX)
        return TERN_EINVAL;
    if (ascii) {
        /* Lowercasing never shortens ASCII, and one dot may be stripped. */
        if (n > JID_PART_MAX + 1)
            return TERN_EINVAL;
        for (size_t i = 0; i < n; i++)
            fast[i] = ascii_lower(in[i]);
        fast[n] = '\0';
    } else {
        rc = domain_map(in, n, &heap, &len);
        if (rc)
            return rc;
        work = heap;
    }

    rc = TERN_EINVAL;
    if (len > 0 && work[len - 1] == '.')
        work[--len] = '\0';
    if (len == 0)
        goto out;
    if (ip_literal(work, len, out, outlen)) {
        rc = 0;
        goto out;
    }
    for (size_t start = 0;;) {
        char *dot = memchr(work + start, '.', len - start);
        size_t end = dot ? (size_t)(dot - work) : len;

        work[end] = '\0';
        if (end - start >= 4 && memcmp(work + start, "xn--", 4) == 0)
            ascii = false;
        rc = prep_label(work + start, end - start, out, &olen);
        if (rc)
            goto out;
        if (!dot)
            break;
        rc = put_label(".", 1, out, &olen);
        if (rc)
            goto out;
        start = end + 1;
    }
    out[olen] = '\0';
    rc = TERN_EINVAL;
    if (numeric_tld(out, olen))
        goto out;
    rc = ascii ? 0 : domain_bidi_ok(out, olen);
    if (rc == 0)
        *outlen = olen;
out:
    free(heap);
    return rc;
}

/* ---- public API ------------------------------------------------------------- */

typedef int (*prep_fn)(const char *in, size_t n, char *out, size_t *outlen);

static int prep_public(const char *in, char **out, prep_fn fn)
{
    char buf[JID_PART_MAX + 1];
    size_t n, len = 0;
    int rc;

    if (!out)
        return TERN_EINVAL;
    *out = NULL;
    if (!in)
        return TERN_EINVAL;
    n = strnlen(in, RAW_PART_MAX + 1);
    rc = fn(in, n, buf, &len);
    if (rc)
        return rc;
    *out = malloc(len + 1);
    if (!*out)
        return TERN_ENOMEM;
    memcpy(*out, buf, len + 1);
    return 0;
}

int jid_prep_local(const char *in, char **out)
{
    return prep_public(in, out, prep_local_n);
}

int jid_prep_domain(const char *in, char **out)
{
    return prep_public(in, out, prep_domain_n);
}

int jid_prep_resource(const char *in, char **out)
{
    return prep_public(in, out, prep_resource_n);
}

/* A NULL local or resource is absent and its length is ignored. */
static int jid_assemble(const char *l, size_t ll, const char *d, size_t dl, const char *r,
                        size_t rl, jid_t *out)
{
    size_t total = dl + 1 + (l ? ll + 1 : 0) + (r ? rl + 1 : 0);
    char *b = malloc(total), *p;

    if (!b)
        return TERN_ENOMEM;
    p = b;
    out->block_ = b;
    out->local = NULL;
    out->resource = NULL;
    if (l) {
        memcpy(p, l, ll);
        p[ll] = '\0';
        out->local = p;
        p += ll + 1;
    }
    memcpy(p, d, dl);
    p[dl] = '\0';
    out->domain = p;
    p += dl + 1;
    if (r) {
        memcpy(p, r, rl);
        p[rl] = '\0';
        out->resource = p;
    }
    return 0;
}

typedef struct {
    char local[JID_PART_MAX + 1];
    char domain[JID_PART_MAX + 1];
    char resource[JID_PART_MAX + 1];
    size_t ll, dl, rl;
} jid_bufs_t;

static int prep_parts(const char *l, size_t ln, const char *d, size_t dn, const char *r, size_t rn,
                      jid_t *out)
{
    jid_bufs_t b;
    int rc;

    b.ll = b.rl = 0;
    if (l && (rc = prep_local_n(l, ln, b.local, &b.ll)))
        return rc;
    if ((rc = prep_domain_n(d, dn, b.domain, &b.dl)))
        return rc;
    if (r && (rc = prep_resource_n(r, rn, b.resource, &b.rl)))
        return rc;
    return jid_assemble(l ? b.local : NULL, b.ll, b.domain, b.dl, r ? b.resource : NULL, b.rl, out);
}

int jid_parse(const char *s, jid_t *out)
{
    const char *slash, *at, *dom, *dom_end;
    size_t n;

    if (!out)
        return TERN_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!s)
        return TERN_EINVAL;
    n = strnlen(s, RAW_JID_MAX + 1);
    if (n > RAW_JID_MAX)
        return TERN_EINVAL;

    /* RFC 7622 §3.1: the first '/' ends the bare JID, and only an '@'
     * before it separates a localpart. */
    slash = memchr(s, '/', n);
    dom_end = slash ? slash : s + n;
    at = memchr(s, '@', (size_t)(dom_end - s));
    dom = at ? at + 1 : s;
    if (at && at == s)
        return TERN_EINVAL;
    if (slash && slash + 1 == s + n)
        return TERN_EINVAL;
    if (dom == dom_end)
        return TERN_EINVAL;
    return prep_parts(at ? s : NULL, at ? (size_t)(at - s) : 0, dom, (size_t)(dom_end - dom),
                      slash ? slash + 1 : NULL, slash ? n - (size_t)(slash + 1 - s) : 0, out);
}

int jid_from_parts(const char *local, const char *domain, const char *resource, jid_t *out)
{
    if (!out)
        return TERN_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!domain)
        return TERN_EINVAL;
    return prep_parts(local, local ? strnlen(local, RAW_PART_MAX + 1) : 0, domain,
                      strnlen(domain, RAW_PART_MAX + 1), resource,
                      resource ? strnlen(resource, RAW_PART_MAX + 1) : 0, out);
}

void jid_clear(jid_t *j)
{
    if (!j)
        return;
    free(j->block_);
    memset(j, 0, sizeof(*j));
}

int jid_copy(const jid_t *src, jid_t *dst)
{
    jid_t tmp = {0};
    int rc;

    if (!dst)
        return TERN_EINVAL;
    if (!src || !src->domain) {
        memset(dst, 0, sizeof(*dst));
        return TERN_EINVAL;
    }
    /* Built aside first so that jid_copy(j, j) does not read freed memory. */
    rc = jid_assemble(src->local, src->local ? strlen(src->local) : 0, src->domain,
                      strlen(src->domain), src->resource, src->resource ? strlen(src->resource) : 0,
                      &tmp);
    if (rc) {
        if (src != dst)
            memset(dst, 0, sizeof(*dst));
        return rc;
    }
    if (src == dst)
        jid_clear(dst);
    *dst = tmp;
    return 0;
}

static char *jid_format(const jid_t *j, bool full)
{
    size_t ll, dl, rl, total;
    char *s, *p;

    if (!j || !j->domain)
        return NULL;
    ll = j->local ? strlen(j->local) : 0;
    dl = strlen(j->domain);
    rl = full && j->resource ? strlen(j->resource) : 0;
    total = (j->local ? ll + 1 : 0) + dl + (full && j->resource ? rl + 1 : 0) + 1;
    s = tern_xmalloc(total);
    p = s;
    if (j->local) {
        memcpy(p, j->local, ll);
        p += ll;
        *p++ = '@';
    }
    memcpy(p, j->domain, dl);
    p += dl;
    if (full && j->resource) {
        *p++ = '/';
        memcpy(p, j->resource, rl);
        p += rl;
    }
    *p = '\0';
    return s;
}

char *jid_to_string(const jid_t *j)
{
    return jid_format(j, true);
}

char *jid_bare_string(const jid_t *j)
{
    return jid_format(j, false);
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool jid_bare_equal(const jid_t *a, const jid_t *b)
{
    if (!a || !b)
        return false;
    return str_eq(a->local, b->local) && str_eq(a->domain, b->domain);
}

bool jid_equal(const jid_t *a, const jid_t *b)
{
    return jid_bare_equal(a, b) && str_eq(a->resource, b->resource);
}
