/* SPDX-License-Identifier: MIT
 * parser.c - incremental XMPP stream parser on top of expat (see parser.h).
 *
 * expat runs in namespace mode with '|' as separator, so element and
 * attribute names arrive as "uri|local" (expat rejects a namespace URI
 * containing the separator, so the split is unambiguous). Input is handed
 * to expat in 4 KB slices; after each slice, and at every element and text
 * event, the bytes since the current unit began are compared with the
 * limit. A unit is a stanza (from the '<' of its start tag) or, between
 * stanzas, whatever follows the last complete event, which catches an
 * endless start tag as well as an endless stanza.
 *
 * Positions are kept in "stream coordinates": bytes since the last reset.
 * xml_parser_stop suspends expat (resumable) and remembers where the
 * triggering token ended; expat keeps whatever it had been given past that
 * point, so on the next feed it is resumed first and the caller's bytes it
 * already holds are skipped rather than parsed twice.
 *
 * expat remembers every distinct element and attribute name for the life
 * of a document, some 260 bytes each, so a client sending ever new names
 * could grow a stream's parser without bound. Every RENEW_BYTES, right
 * after a stanza, the parser is therefore renewed: expat is suspended,
 * reset, and fed the stream header's raw bytes again with callbacks
 * suppressed, then parsing continues at the byte after the stanza. bias
 * maps expat's restarted byte indexes back to stream coordinates.
 *
 * expat's memory comes from a per-parser arena (arena.h) so that freeing
 * a parser gives its pages back to the kernel; renewal and reset therefore
 * create a new expat in an emptied arena instead of calling
 * XML_ParserReset.
 *
 * Hibernation uses the same replay: an idle stream's expat (some 12 KB)
 * is freed outright and created again by the next feed, which replays the
 * header at the current position. It is only allowed where expat holds no
 * byte that has not produced an event, so nothing but the header's
 * namespace bindings and the open stream element has to be rebuilt.
 */
#include "xml/parser.h"

#include "core/common.h"
#include "xml/arena.h"
#include "xml/ns.h"

#include <expat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define FEED_SLICE 4096
#define NS_SEP     '|'
#define XML_PREFIX NS_XML "|"
/* Character data buffer capacity kept between stanzas; a big body's buffer
 * is released once the stanza is done. */
#define TEXT_KEEP (8 * 1024)
/* Bounds expat's name tables to what this much input can declare (about
 * 1 MB at worst) while costing one reset per 128 KB of traffic. Fuzz
 * builds lower it so that renewal happens all the time. */
#ifdef TERN_XML_RENEW_BYTES
#define RENEW_BYTES TERN_XML_RENEW_BYTES
#else
#define RENEW_BYTES (128 * 1024)
#endif

#if XML_MAJOR_VERSION < 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION < 6)
/* Added in expat 2.6.0 and backported by distributions (Debian 12 among
 * them) without a version bump, hence the weak reference. */
XMLPARSEAPI(XML_Bool)
XML_SetReparseDeferralEnabled(XML_Parser parser, XML_Bool enabled) __attribute__((weak));
#define REPARSE_DEFERRAL_WEAK 1
#endif

struct xml_parser {
    XML_Parser xp;      /* NULL while hibernating, or after a reset of a hibernating parser */
    xml_arena_t *arena; /* all of expat's memory (see arena.h) */
    xml_parser_cb_t cb;
    void *ud;
    size_t max_stanza;

    unsigned depth;   /* open elements, the stream header included */
    xml_stanza_t *st; /* stanza being built, NULL between stanzas */
    xml_node_t *cur;  /* its innermost open element */
    char *text;       /* character data not yet turned into a node */
    size_t text_len, text_cap;
    char *scratch; /* one split-off namespace or mapped attribute name */
    size_t scratch_cap;
    char *decls; /* header namespace declarations: name\0value\0... */
    size_t decls_len, decls_cap, ndecls;
    char *header; /* raw bytes of the stream header, for renewal */
    size_t header_len;

    /* Stream coordinates (bytes since reset). */
    uint64_t fed;        /* end of what expat has been given */
    uint64_t pos;        /* where the caller's next byte goes; <= fed */
    uint64_t unit_start; /* start of the stanza or of the bytes after the last event */
    uint64_t stop_end;   /* end of the token during which stop was requested */
    uint64_t bias;       /* stream position of expat's byte index 0 */
    uint64_t call_end;   /* stream position of the end of the data being fed */
    uint64_t renew_at;   /* renew after the first stanza ending beyond this */

    xml_parse_status_t err; /* fatal status once set */
    bool in_feed;
    bool stop_req;
    bool suspended; /* expat needs XML_ResumeParser before more input */
    bool reset_pending;
    bool renew_req;
    bool replaying; /* feeding the saved header to a renewed expat */
    bool in_cdata;  /* inside a CDATA section */
    bool dead;
    char errtext[200];
};

static void set_errtext(xml_parser_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_errtext(xml_parser_t *p, const char *fmt, ...)
{
    char what[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(p->errtext, sizeof(p->errtext), "%s (line %lu, column %lu)", what,
             (unsigned long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long)XML_GetCurrentColumnNumber(p->xp));
}

/* Records a fatal status from inside a handler and makes expat return. */
static void fail(xml_parser_t *p, xml_parse_status_t status, const char *what)
{
    if (p->err)
        return;
    p->err = status;
    set_errtext(p, "%s", what);
    XML_StopParser(p->xp, XML_FALSE);
}

static uint64_t event_start(const xml_parser_t *p)
{
    XML_Index i = XML_GetCurrentByteIndex(p->xp);
    return i < 0 ? p->fed : p->bias + (uint64_t)i;
}

static uint64_t event_end(const xml_parser_t *p)
{
    XML_Index i = XML_GetCurrentByteIndex(p->xp);
    int n = XML_GetCurrentByteCount(p->xp);
    if (i < 0)
        return p->fed;
    return p->bias + (uint64_t)i + (uint64_t)(n > 0 ? n : 0);
}

static bool check_size(xml_parser_t *p)
{
    if (event_end(p) - p->unit_start <= p->max_stanza)
        return false;
    fail(p, XML_PARSE_TOO_BIG, p->st ? "stanza too large" : "element too large");
    return true;
}

static bool grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return false;
        c *= 2;
    }
    char *q = realloc(*buf, c);
    if (!q)
        return false;
    *buf = q;
    *cap = c;
    return true;
}

/* Splits expat's "uri|local". The URI is returned NUL-terminated: as same
 * when it equals it (so the tree can share the parent's copy), else in
 * scratch. NULL on OOM. */
static const char *split_name(xml_parser_t *p, const char *name, const char *same,
                              const char **local)
{
    const char *bar = strchr(name, NS_SEP);
    if (!bar) {
        *local = name;
        return "";
    }
    *local = bar + 1;
    size_t n = (size_t)(bar - name);
    if (same && strncmp(same, name, n) == 0 && same[n] == '\0')
        return same;
    if (!grow(&p->scratch, &p->scratch_cap, n + 1)) {
        fail(p, XML_PARSE_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(p->scratch, name, n);
    p->scratch[n] = '\0';
    return p->scratch;
}

/* Attributes in the xml namespace keep their conventional prefix; other
 * namespaced ones stay "uri|local" as expat gives them. */
static const char *attr_name(xml_parser_t *p, const char *name)
{
    if (strncmp(name, XML_PREFIX, sizeof(XML_PREFIX) - 1) != 0)
        return name;
    const char *local = name + sizeof(XML_PREFIX) - 1;
    if (strcmp(local, "lang") == 0)
        return "xml:lang";
    size_t n = strlen(local);
    if (!grow(&p->scratch, &p->scratch_cap, n + 5)) {
        fail(p, XML_PARSE_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(p->scratch, "xml:", 4);
    memcpy(p->scratch + 4, local, n + 1);
    return p->scratch;
}

static void flush_text(xml_parser_t *p)
{
    if (p->text_len) {
        xml_node_add_text(p->cur, p->text, p->text_len);
        p->text_len = 0;
    }
}

static void drop_stanza(xml_parser_t *p)
{
    xml_stanza_unref(p->st);
    p->st = NULL;
    p->cur = NULL;
    p->text_len = 0;
    if (p->text_cap > TEXT_KEEP) {
        free(p->text);
        p->text = NULL;
        p->text_cap = 0;
    }
}

/* Keeps the header's bytes for renewal; without them (an expat built
 * without context bytes) the parser simply never renews. */
static void save_header(xml_parser_t *p)
{
    int off = 0, size = 0, n = XML_GetCurrentByteCount(p->xp);
    const char *buf = XML_GetInputContext(p->xp, &off, &size);
    free(p->header);
    p->header = NULL;
    p->header_len = 0;
    if (!buf || n <= 0 || off < 0 || off > size || n > size - off)
        return;
    p->header = malloc((size_t)n);
    if (!p->header)
        return;
    memcpy(p->header, buf + off, (size_t)n);
    p->header_len = (size_t)n;
}

static void stream_header(xml_parser_t *p, const XML_Char *name, const XML_Char **atts)
{
    if (p->replaying) {
        p->depth = 1;
        XML_SetStartNamespaceDeclHandler(p->xp, NULL);
        return;
    }
    if (check_size(p))
        return;
    save_header(p);
    const char *bar = strchr(name, NS_SEP);
    const char *local = bar ? bar + 1 : name;
    size_t ns_len = bar ? (size_t)(bar - name) : 0;

    size_t nattr = 0, strings = ns_len + 1;
    for (; atts[nattr]; nattr += 2)
        if (strncmp(atts[nattr], XML_PREFIX, sizeof(XML_PREFIX) - 1) == 0)
            strings += strlen(atts[nattr]) - (sizeof(XML_PREFIX) - 1) + 5;
    size_t nptr = nattr + 2 * p->ndecls + 1;
    const char **arr = malloc(nptr * sizeof(*arr) + strings);
    if (!arr) {
        fail(p, XML_PARSE_NOMEM, "out of memory");
        return;
    }
    char *w = (char *)(arr + nptr);
    char *ns = w;
    memcpy(ns, name, ns_len);
    ns[ns_len] = '\0';
    w += ns_len + 1;

    size_t k = 0;
    for (size_t i = 0; i < nattr; i += 2) {
        const char *an = atts[i];
        if (strncmp(an, XML_PREFIX, sizeof(XML_PREFIX) - 1) == 0) {
            size_t n = strlen(an) - (sizeof(XML_PREFIX) - 1);
            memcpy(w, "xml:", 4);
            memcpy(w + 4, an + sizeof(XML_PREFIX) - 1, n + 1);
            an = w;
            w += n + 5;
        }
        arr[k++] = an;
        arr[k++] = atts[i + 1];
    }
    const char *d = p->decls;
    for (size_t i = 0; i < p->ndecls; i++) {
        arr[k++] = d;
        d += strlen(d) + 1;
        arr[k++] = d;
        d += strlen(d) + 1;
    }
    arr[k] = NULL;

    p->depth = 1;
    p->unit_start = event_end(p);
    p->renew_at = p->unit_start + RENEW_BYTES;
    XML_SetStartNamespaceDeclHandler(p->xp, NULL);
    if (p->cb.on_stream_open)
        p->cb.on_stream_open(p->ud, local, ns, arr);
    free(arr);
    p->decls_len = 0;
    p->ndecls = 0;
}

static void XMLCALL on_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    xml_parser_t *p = ud;
    if (p->err || p->depth != 0 || p->replaying)
        return;
    size_t plen = prefix ? strlen(prefix) + 1 : 0;
    size_t ulen = uri ? strlen(uri) : 0;
    if (!grow(&p->decls, &p->decls_cap, p->decls_len + 5 + plen + 1 + ulen + 1)) {
        fail(p, XML_PARSE_NOMEM, "out of memory");
        return;
    }
    char *w = p->decls + p->decls_len;
    memcpy(w, "xmlns", 5);
    w += 5;
    if (prefix) {
        *w++ = ':';
        memcpy(w, prefix, plen - 1);
        w += plen - 1;
    }
    *w++ = '\0';
    if (ulen)
        memcpy(w, uri, ulen);
    w[ulen] = '\0';
    p->decls_len += 5 + plen + 1 + ulen + 1;
    p->ndecls++;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    xml_parser_t *p = ud;
    if (p->err)
        return;
    if (p->depth == 0) {
        stream_header(p, name, atts);
        return;
    }
    if (p->depth > XML_MAX_DEPTH) {
        fail(p, XML_PARSE_TOO_BIG, "elements nested too deeply");
        return;
    }
    const char *local, *ns;
    if (p->depth == 1) {
        p->unit_start = event_start(p);
        if (!(ns = split_name(p, name, NULL, &local)))
            return;
        p->st = xml_stanza_new(local, ns);
        p->cur = xml_stanza_root(p->st);
    } else {
        flush_text(p);
        if (!(ns = split_name(p, name, p->cur->ns, &local)))
            return;
        p->cur = xml_node_add_child(p->cur, local, ns);
    }
    size_t n = 0;
    while (atts[n])
        n += 2;
    /* Pushing prepends, so go backwards to keep document order. */
    for (; n > 0; n -= 2) {
        const char *an = attr_name(p, atts[n - 2]);
        if (!an)
            return;
        xml_node_push_attr(p->cur, an, atts[n - 1]);
    }
    p->depth++;
    check_size(p);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    xml_parser_t *p = ud;
    if (p->err)
        return;
    p->depth--;
    if (p->depth == 0) {
        p->unit_start = event_end(p);
        if (p->cb.on_stream_close)
            p->cb.on_stream_close(p->ud);
        return;
    }
    flush_text(p);
    if (p->depth > 1) {
        p->cur = p->cur->parent;
        return;
    }
    if (check_size(p))
        return;
    xml_stanza_t *st = p->st;
    p->st = NULL;
    drop_stanza(p);
    uint64_t end = event_end(p);
    p->unit_start = end;
    if (p->cb.on_stanza)
        p->cb.on_stanza(p->ud, st);
    else
        xml_stanza_unref(st);
    /* Renew only if every byte expat holds is still in the caller's data,
     * so that parsing can go on from there. */
    if (end >= p->renew_at && p->header && !p->err && !p->stop_req && p->depth == 1 &&
        p->fed <= p->call_end) {
        p->renew_req = true;
        p->stop_end = end;
        XML_StopParser(p->xp, XML_TRUE);
    }
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    xml_parser_t *p = ud;
    if (p->err)
        return;
    if (p->depth < 2) {
        for (int i = 0; i < len; i++) {
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
                fail(p, XML_PARSE_NOT_WELL_FORMED, "text between stanzas");
                return;
            }
        }
        p->unit_start = event_end(p);
        return;
    }
    size_t n = (size_t)len;
    if (!grow(&p->text, &p->text_cap, p->text_len + n)) {
        fail(p, XML_PARSE_NOMEM, "out of memory");
        return;
    }
    memcpy(p->text + p->text_len, s, n);
    p->text_len += n;
    check_size(p);
}

/* Markup nobody else handles: the XML declaration, whitespace around the
 * stream element. Its only effect is that a default handler switches off
 * internal entity expansion, and that a complete event between stanzas
 * ends the current unit. */
static void XMLCALL on_default(void *ud, const XML_Char *s, int len)
{
    xml_parser_t *p = ud;
    if (!p->err && !p->st)
        p->unit_start = event_end(p);
}

/* A CDATA section between stanzas is expat state that a replayed header
 * does not restore, so it must keep the parser from hibernating. */
static void XMLCALL on_cdata_start(void *ud)
{
    xml_parser_t *p = ud;
    p->in_cdata = true;
    on_default(ud, NULL, 0);
}

static void XMLCALL on_cdata_end(void *ud)
{
    xml_parser_t *p = ud;
    p->in_cdata = false;
    on_default(ud, NULL, 0);
}

/* RFC 6120 §11.6: streams are UTF-8; a declaration of anything else gets
 * unsupported-encoding rather than being silently reinterpreted. */
static void XMLCALL on_xml_decl(void *ud, const XML_Char *version, const XML_Char *encoding,
                                int standalone)
{
    if (encoding && strcasecmp(encoding, "UTF-8") != 0)
        fail(ud, XML_PARSE_BAD_ENCODING, "encoding is not UTF-8");
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
    fail(ud, XML_PARSE_RESTRICTED, "comment");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    fail(ud, XML_PARSE_RESTRICTED, "processing instruction");
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    fail(ud, XML_PARSE_RESTRICTED, "DOCTYPE");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_pe, const XML_Char *value,
                                   int value_len, const XML_Char *base, const XML_Char *sysid,
                                   const XML_Char *pubid, const XML_Char *notation)
{
    fail(ud, XML_PARSE_RESTRICTED, "entity declaration");
}

static void XMLCALL on_skipped_entity(void *ud, const XML_Char *name, int is_pe)
{
    fail(ud, XML_PARSE_RESTRICTED, "entity reference");
}

static unsigned long hash_salt(const xml_parser_t *p)
{
    unsigned long salt = 0;
    if (getrandom(&salt, sizeof(salt), GRND_NONBLOCK) != (ssize_t)sizeof(salt)) {
        /* Only before the kernel's pool is initialised; still differ per
         * parser and per boot. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)p;
        x *= 0x9E3779B97F4A7C15u;
        salt = (unsigned long)(x ^ (x >> 29));
    }
    return salt ? salt : 1;
}

static void setup(xml_parser_t *p)
{
    XML_Parser xp = p->xp;
    XML_SetUserData(xp, p);
    XML_SetHashSalt(xp, hash_salt(p));
    XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(xp, on_start, on_end);
    XML_SetCharacterDataHandler(xp, on_text);
    XML_SetStartNamespaceDeclHandler(xp, on_ns_decl);
    XML_SetDefaultHandler(xp, on_default);
    XML_SetCdataSectionHandler(xp, on_cdata_start, on_cdata_end);
    XML_SetCommentHandler(xp, on_comment);
    XML_SetXmlDeclHandler(xp, on_xml_decl);
    XML_SetProcessingInstructionHandler(xp, on_pi);
    XML_SetStartDoctypeDeclHandler(xp, on_doctype);
    XML_SetEntityDeclHandler(xp, on_entity_decl);
    XML_SetSkippedEntityHandler(xp, on_skipped_entity);
    /* Deferral holds back a completed token until "enough" further input
     * arrives; on a stream that waits for our answer that is a hang. */
#ifdef REPARSE_DEFERRAL_WEAK
    if (XML_SetReparseDeferralEnabled)
        XML_SetReparseDeferralEnabled(xp, XML_FALSE);
#else
    XML_SetReparseDeferralEnabled(xp, XML_FALSE);
#endif
}

/* expat's allocator hooks take no context, so the arena of the parser being
 * worked on is published per thread around every expat call that may
 * allocate or free. Calls nest when a callback of one stream frees another
 * stream's parser (a resource conflict closes the older session), hence
 * the save and restore. */
static _Thread_local xml_arena_t *current_arena;

static xml_arena_t *enter_arena(const xml_parser_t *p)
{
    xml_arena_t *saved = current_arena;
    current_arena = p->arena;
    return saved;
}

static void leave_arena(xml_arena_t *saved)
{
    current_arena = saved;
}

static void *expat_malloc(size_t size)
{
    return xml_arena_alloc(current_arena, size);
}

static void *expat_realloc(void *ptr, size_t size)
{
    return xml_arena_realloc(current_arena, ptr, size);
}

static void expat_free(void *ptr)
{
    xml_arena_free(current_arena, ptr);
}

static const XML_Memory_Handling_Suite expat_memory = {expat_malloc, expat_realloc, expat_free};

/* Forcing UTF-8 makes expat ignore any other encoding a declaration or byte
 * order mark claims; RFC 6120 allows nothing else. */
static XML_Parser create_expat(xml_parser_t *p)
{
    static const XML_Char sep[] = {NS_SEP, 0};
    xml_arena_t *saved = enter_arena(p);
    XML_Parser xp = XML_ParserCreate_MM("UTF-8", &expat_memory, sep);
    leave_arena(saved);
    return xp;
}

/* Frees expat and gives its pages back. */
static void free_expat(xml_parser_t *p)
{
    if (p->xp) {
        xml_arena_t *saved = enter_arena(p);
        XML_ParserFree(p->xp);
        leave_arena(saved);
        p->xp = NULL;
    }
    xml_arena_release(p->arena);
}

xml_parser_t *xml_parser_new(const xml_parser_cb_t *cb, void *ud, size_t max_stanza_bytes)
{
    xml_parser_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->arena = xml_arena_new();
    p->xp = p->arena ? create_expat(p) : NULL;
    if (!p->xp) {
        xml_arena_destroy(p->arena);
        free(p);
        return NULL;
    }
    if (cb)
        p->cb = *cb;
    p->ud = ud;
    p->max_stanza = max_stanza_bytes;
    snprintf(p->errtext, sizeof(p->errtext), "no error");
    setup(p);
    return p;
}

void xml_parser_free(xml_parser_t *p)
{
    if (!p)
        return;
    free_expat(p);
    xml_arena_destroy(p->arena);
    drop_stanza(p);
    free(p->text);
    free(p->scratch);
    free(p->decls);
    free(p->header);
    free(p);
}

static int reset_now(xml_parser_t *p)
{
    drop_stanza(p);
    p->decls_len = 0;
    p->ndecls = 0;
    free(p->header);
    p->header = NULL;
    p->header_len = 0;
    p->depth = 0;
    p->fed = p->pos = p->unit_start = p->stop_end = p->bias = p->renew_at = 0;
    p->err = XML_PARSE_OK;
    p->stop_req = p->suspended = p->reset_pending = p->renew_req = p->dead = p->in_cdata = false;
    snprintf(p->errtext, sizeof(p->errtext), "no error");
    /* A hibernating parser stays so until bytes of the new stream arrive. */
    if (!p->xp)
        return 0;
    /* A new expat in a new arena rather than XML_ParserReset: what a reset
     * frees would stay stranded in the arena (see arena.h). */
    free_expat(p);
    p->xp = create_expat(p);
    if (!p->xp) {
        p->dead = true;
        p->err = XML_PARSE_NOMEM;
        snprintf(p->errtext, sizeof(p->errtext), "cannot reset expat");
        return TERN_ENOMEM;
    }
    setup(p);
    return 0;
}

int xml_parser_reset(xml_parser_t *p)
{
    /* expat must not be reset under its own feet: finish the token, stop,
     * and reset once feed unwinds. */
    if (p->in_feed) {
        p->reset_pending = true;
        xml_parser_stop(p);
        return 0;
    }
    return reset_now(p);
}

void xml_parser_stop(xml_parser_t *p)
{
    if (!p->in_feed || p->stop_req || p->err)
        return;
    p->stop_req = true;
    p->stop_end = event_end(p);
    XML_StopParser(p->xp, XML_TRUE);
}

bool xml_parser_hibernate(xml_parser_t *p)
{
    /* Outside feed err implies dead; depth 1 with no stanza means between
     * stanzas of a stream whose header has been seen and saved. */
    if (p->in_feed || p->dead || p->err || p->depth != 1 || p->st || p->in_cdata || !p->header)
        return false;
    if (!p->xp)
        return true;
    /* expat must hold nothing beyond the last event: no bytes kept from
     * before a stop that the caller still has to feed again (fed > pos), and
     * no partial token (the last event ended before fed). A stop whose
     * token ended exactly at the end of the input leaves expat suspended
     * with nothing to resume, which a fresh expat reproduces. */
    if (p->fed != p->pos || p->unit_start != p->fed)
        return false;
    free_expat(p);
    p->suspended = false;
    free(p->text);
    p->text = NULL;
    p->text_len = p->text_cap = 0;
    free(p->scratch);
    p->scratch = NULL;
    p->scratch_cap = 0;
    free(p->decls);
    p->decls = NULL;
    p->decls_len = p->decls_cap = p->ndecls = 0;
    return true;
}

size_t xml_parser_mem(const xml_parser_t *p)
{
    size_t n = sizeof(*p) + p->text_cap + p->scratch_cap + p->decls_cap + p->header_len;
    n += xml_arena_mapped(p->arena);
    if (p->st)
        n += xml_stanza_mem(p->st);
    return n;
}

void xml_parser_set_max_stanza(xml_parser_t *p, size_t max_stanza_bytes)
{
    p->max_stanza = max_stanza_bytes;
}

const char *xml_parser_error_text(const xml_parser_t *p)
{
    return p->errtext;
}

static xml_parse_status_t map_error(enum XML_Error code)
{
    switch (code) {
    case XML_ERROR_NO_MEMORY:
        return XML_PARSE_NOMEM;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
    case XML_ERROR_NOT_STANDALONE:
        return XML_PARSE_RESTRICTED;
    default:
        return XML_PARSE_NOT_WELL_FORMED;
    }
}

/* Brings a new or just reset expat to where the stream stands at stream
 * position at, between stanzas: the saved header is parsed again with
 * callbacks suppressed, which rebinds its namespace prefixes and opens the
 * stream element. The name tables start empty, hence a new renewal
 * window. */
static xml_parse_status_t replay_header(xml_parser_t *p, uint64_t at)
{
    setup(p);
    p->bias = at - p->header_len;
    p->depth = 0;
    p->replaying = true;
    enum XML_Status s = XML_Parse(p->xp, p->header, (int)p->header_len, XML_FALSE);
    p->replaying = false;
    if (s != XML_STATUS_OK || p->err || p->depth != 1) {
        p->err = XML_PARSE_NOMEM;
        snprintf(p->errtext, sizeof(p->errtext), "cannot renew expat");
        return p->err;
    }
    p->fed = at;
    p->unit_start = at;
    p->renew_at = at + RENEW_BYTES;
    return XML_PARSE_OK;
}

/* Restarts expat at stream position stop_end, just after a stanza. */
static xml_parse_status_t renew(xml_parser_t *p)
{
    p->renew_req = false;
    p->suspended = false;
    /* As in reset_now, a fresh expat and arena; this is what bounds both. */
    free_expat(p);
    p->xp = create_expat(p);
    if (!p->xp) {
        p->err = XML_PARSE_NOMEM;
        snprintf(p->errtext, sizeof(p->errtext), "cannot reset expat");
        return p->err;
    }
    return replay_header(p, p->stop_end);
}

/* Ends hibernation: depth is 1 after xml_parser_hibernate, 0 if the
 * parser has been reset since (a fresh stream needs no replay). */
static xml_parse_status_t wake(xml_parser_t *p)
{
    p->xp = create_expat(p);
    if (!p->xp) {
        p->err = XML_PARSE_NOMEM;
        snprintf(p->errtext, sizeof(p->errtext), "cannot create expat");
        return p->err;
    }
    if (p->depth == 0) {
        setup(p);
        return XML_PARSE_OK;
    }
    return replay_header(p, p->pos);
}

static xml_parse_status_t after_parse(xml_parser_t *p, enum XML_Status s)
{
    if (p->err)
        return p->err;
    if (p->renew_req) {
        if (s == XML_STATUS_SUSPENDED)
            return renew(p);
        p->renew_req = false; /* expat did not stop; nothing to redo */
    }
    if (p->stop_req) {
        /* If expat could not suspend it has parsed the whole slice; the
         * skip logic in feed copes with that as well. */
        p->suspended = s == XML_STATUS_SUSPENDED;
        return XML_PARSE_STOPPED;
    }
    if (s == XML_STATUS_ERROR) {
        enum XML_Error code = XML_GetErrorCode(p->xp);
        p->err = map_error(code);
        set_errtext(p, "%s", XML_ErrorString(code));
        return p->err;
    }
    if (p->fed - p->unit_start > p->max_stanza) {
        p->err = XML_PARSE_TOO_BIG;
        set_errtext(p, "%s exceeds %zu bytes", p->st ? "stanza" : "element", p->max_stanza);
        return p->err;
    }
    return XML_PARSE_OK;
}

static xml_parse_status_t run_in_arena(xml_parser_t *p, const char *data, size_t len, size_t *used);

/* Every expat call of a feed (resume, parse, renewal, reset) may allocate. */
static xml_parse_status_t run(xml_parser_t *p, const char *data, size_t len, size_t *used)
{
    xml_arena_t *saved = enter_arena(p);
    xml_parse_status_t rc = run_in_arena(p, data, len, used);
    leave_arena(saved);
    return rc;
}

static xml_parse_status_t run_in_arena(xml_parser_t *p, const char *data, size_t len, size_t *used)
{
    uint64_t base = p->pos;
    xml_parse_status_t rc = XML_PARSE_OK;
    if (len == 0)
        return rc;
    if (!p->xp && (rc = wake(p)) != XML_PARSE_OK) {
        *used = 0;
        p->dead = true;
        return rc;
    }
    p->in_feed = true;
    p->call_end = base + len;
    if (p->suspended) {
        p->suspended = false;
        rc = after_parse(p, XML_ResumeParser(p->xp));
    }
    /* Bytes of data that expat already holds from before a stop (or, after
     * a renewal, that it no longer holds: fed moved back). */
    size_t off = p->fed - base < len ? (size_t)(p->fed - base) : len;
    while (rc == XML_PARSE_OK && off < len) {
        size_t n = len - off < FEED_SLICE ? len - off : FEED_SLICE;
        enum XML_Status s = XML_Parse(p->xp, data + off, (int)n, XML_FALSE);
        p->fed += n;
        off += n;
        rc = after_parse(p, s);
        if (p->fed - base < off)
            off = (size_t)(p->fed - base);
    }
    p->in_feed = false;

    if (rc == XML_PARSE_OK) {
        p->pos = base + len;
        *used = len;
    } else if (rc == XML_PARSE_STOPPED) {
        uint64_t end = p->stop_end - base;
        *used = end < len ? (size_t)end : len;
        p->pos = base + *used;
        p->stop_req = false;
        if (p->reset_pending)
            reset_now(p);
    } else {
        *used = off;
        p->dead = true;
        p->reset_pending = false;
    }
    return rc;
}

xml_parse_status_t xml_parser_feed(xml_parser_t *p, const char *data, size_t len, size_t *consumed)
{
    size_t used = 0;
    xml_parse_status_t rc;
    if (p->dead)
        rc = p->err;
    else if (p->in_feed)
        rc = XML_PARSE_STOPPED; /* re-entered from a callback: refused */
    else
        rc = run(p, data, len, &used);
    if (consumed)
        *consumed = used;
    return rc;
}

/* ---- one element from a string ---- */

typedef struct {
    xml_stanza_t *st;
    int count;
} fragment_t;

static void fragment_stanza(void *ud, xml_stanza_t *st)
{
    fragment_t *f = ud;
    if (f->count++ == 0)
        f->st = st;
    else
        xml_stanza_unref(st);
}

xml_stanza_t *xml_parse_element(const char *data, size_t len, const char *default_ns,
                                size_t max_bytes)
{
    static const char tail[] = "</s>";
    fragment_t f = {0};
    xml_parser_cb_t cb = {.on_stanza = fragment_stanza};
    xml_parser_t *p = xml_parser_new(&cb, &f, max_bytes);
    if (!p)
        return NULL;
    char head[256];
    int n = snprintf(head, sizeof(head), "<s xmlns='%s'>", default_ns);
    size_t used = 0;
    bool ok = n > 0 && (size_t)n < sizeof(head) && strchr(default_ns, '\'') == NULL &&
              xml_parser_feed(p, head, (size_t)n, &used) == XML_PARSE_OK &&
              xml_parser_feed(p, data, len, &used) == XML_PARSE_OK &&
              xml_parser_feed(p, tail, sizeof(tail) - 1, &used) == XML_PARSE_OK;
    xml_parser_free(p);
    if (!ok || f.count != 1) {
        if (f.st)
            xml_stanza_unref(f.st);
        return NULL;
    }
    return f.st;
}
