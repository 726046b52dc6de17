/* SPDX-License-Identifier: MIT
 * parser.h - incremental XMPP stream parser on top of expat.
 *
 * One parser per stream, fed whatever bytes arrive. Depth framing: the
 * element at depth 0 is the stream header (reported by on_stream_open), each
 * element at depth 1 is a stanza, delivered complete to on_stanza when its
 * end tag arrives, and the closing stream tag is on_stream_close.
 *
 * The parser enforces RFC 6120 §11 restricted XML: a DOCTYPE, entity
 * declaration, comment, processing instruction (other than the XML
 * declaration) or reference to a non-predefined entity stops parsing with
 * XML_PARSE_RESTRICTED. No entity is ever expanded. Stanza size is counted
 * in bytes fed while inside a stanza and checked while parsing, so a stanza
 * larger than max_stanza_bytes is refused before it has been buffered whole
 * (XML_PARSE_TOO_BIG). Nesting deeper than XML_MAX_DEPTH is also TOO_BIG.
 * Character data between stanzas (whitespace keepalives) is accepted;
 * non-whitespace text at depth 1 is not-well-formed.
 *
 * Not thread-safe; no global state; the expat hash salt is random per
 * parser.
 */
#ifndef TERN_XML_PARSER_H
#define TERN_XML_PARSER_H

#include <stddef.h>

#include "stanza.h"

#define XML_MAX_DEPTH 64

typedef enum {
    XML_PARSE_OK = 0,
    XML_PARSE_NOT_WELL_FORMED, /* -> stream error not-well-formed */
    XML_PARSE_RESTRICTED,      /* -> restricted-xml */
    XML_PARSE_TOO_BIG,         /* -> policy-violation */
    XML_PARSE_STOPPED,         /* a callback asked to stop (xml_parser_stop) */
    XML_PARSE_NOMEM,
} xml_parse_status_t;

typedef struct xml_parser xml_parser_t;

/* Attributes of the stream header, as parallel name/value arrays ending in
 * a NULL name. Namespaced attribute names are "uri|local" except xml:lang
 * ("xml:lang"). */
typedef struct {
    /* Called with the header element: name is the local name ("stream"), ns
     * its namespace URI, and prefix_ns_stream the namespace of "stream" */
    void (*on_stream_open)(void *ud, const char *name, const char *ns, const char **attrs);
    /* Takes ownership of st (one reference). */
    void (*on_stanza)(void *ud, xml_stanza_t *st);
    void (*on_stream_close)(void *ud);
} xml_parser_cb_t;

/* Creates a parser. cb is copied. Returns NULL on OOM. */
xml_parser_t *xml_parser_new(const xml_parser_cb_t *cb, void *ud, size_t max_stanza_bytes);
void xml_parser_free(xml_parser_t *p);
/* Prepares for a new stream (after STARTTLS or SASL success). Bytes fed
 * before the reset never reach the new stream. Returns 0 or TERN_ENOMEM. */
int xml_parser_reset(xml_parser_t *p);
/* Parses len bytes. Callbacks run synchronously from inside this call. A
 * callback may call xml_parser_stop() (e.g. on stream restart or error);
 * then feed returns XML_PARSE_STOPPED and *consumed tells how many bytes of
 * data were used up to and including the event that stopped it, so the
 * caller can hand the rest to the next layer (e.g. after STARTTLS nothing
 * must be left; after SASL success the rest goes to the reset parser).
 * After any status other than OK and STOPPED the parser is dead. */
xml_parse_status_t xml_parser_feed(xml_parser_t *p, const char *data, size_t len,
                                   size_t *consumed);
void xml_parser_stop(xml_parser_t *p);
void xml_parser_set_max_stanza(xml_parser_t *p, size_t max_stanza_bytes);
/* Human-readable detail of the last error (for logs), never NULL. */
const char *xml_parser_error_text(const xml_parser_t *p);

#endif
