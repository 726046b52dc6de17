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
 * (XML_PARSE_TOO_BIG). An element deeper than XML_MAX_DEPTH (a stanza is
 * at depth 1) is also TOO_BIG.
 * Character data between stanzas (whitespace keepalives) is accepted;
 * non-whitespace text at depth 1 is not-well-formed. The limit also bounds
 * the stream header and anything else outside stanzas: no single unit
 * (stanza, header, or the bytes since the last complete event) may exceed
 * it. Input is always UTF-8, whatever an XML declaration says.
 *
 * Not thread-safe; no global state; the expat hash salt is random per
 * parser.
 */
#ifndef TERN_XML_PARSER_H
#define TERN_XML_PARSER_H

#include <stdbool.h>
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
    XML_PARSE_BAD_ENCODING, /* XML declaration names a non-UTF-8 encoding -> unsupported-encoding */
} xml_parse_status_t;

typedef struct xml_parser xml_parser_t;

/* Attributes of the stream header, as a flat name/value array ending in a
 * NULL name (attrs[0] = name0, attrs[1] = value0, ...). Namespaced
 * attribute names are "uri|local" except in the xml namespace ("xml:lang").
 * After the attributes come the header's namespace declarations, as
 * "xmlns" (the default namespace, i.e. the stream's content namespace) and
 * "xmlns:prefix" entries, so the stream layer can check them; their value
 * is "" for an undeclaration (xmlns=''). */
typedef struct {
    /* Called with the header element whatever its name and namespace (the
     * stream layer decides the error): name is the local name ("stream"),
     * ns its namespace URI. attrs is valid only during the call. */
    void (*on_stream_open)(void *ud, const char *name, const char *ns, const char **attrs);
    /* Takes ownership of st (one reference). */
    void (*on_stanza)(void *ud, xml_stanza_t *st);
    void (*on_stream_close)(void *ud);
} xml_parser_cb_t;

/* Creates a parser. cb is copied (NULL or NULL members: events ignored,
 * stanzas freed). Returns NULL on OOM. xml_parser_free must not be called
 * from a callback. */
xml_parser_t *xml_parser_new(const xml_parser_cb_t *cb, void *ud, size_t max_stanza_bytes);
void xml_parser_free(xml_parser_t *p);
/* Prepares for a new stream (after STARTTLS or SASL success). Bytes fed
 * before the reset never reach the new stream. Also revives a dead parser.
 * Called from a callback it acts as xml_parser_stop and the reset happens
 * when feed returns (STOPPED); the rest of the data belongs to the new
 * stream. Returns 0 or TERN_ENOMEM. */
int xml_parser_reset(xml_parser_t *p);
/* Parses len bytes. Callbacks run synchronously from inside this call. A
 * callback may call xml_parser_stop() (e.g. on stream restart or error);
 * then feed returns XML_PARSE_STOPPED and *consumed tells how many bytes of
 * data were used up to and including the event that stopped it, so the
 * caller can hand the rest to the next layer (e.g. after STARTTLS nothing
 * must be left; after SASL success the rest goes to the reset parser).
 * Without a reset, feeding the rest (data + *consumed, possibly followed by
 * newer bytes) continues the same stream, e.g. after pausing input; the
 * next feed after STOPPED must start at that byte and include at least the
 * rest of the stopped call's data. *consumed is len after OK. Events that
 * come from the same token as the stopping one (a self-closing stream
 * header's close) are still delivered. After any status other than OK and
 * STOPPED the parser is dead and keeps returning that status (*consumed 0)
 * until reset. Must not be called from a callback (returns STOPPED, 0). */
xml_parse_status_t xml_parser_feed(xml_parser_t *p, const char *data, size_t len, size_t *consumed);
/* Only has an effect from inside a callback. */
void xml_parser_stop(xml_parser_t *p);
void xml_parser_set_max_stanza(xml_parser_t *p, size_t max_stanza_bytes);
/* Releases expat's memory (about 11 KB) and the parser's scratch buffers
 * while the stream is idle, keeping only the saved stream header and the
 * parser's own state. Only possible outside feed, on a live parser whose
 * stream header has been seen and whose stream is not closed, between
 * stanzas with every byte fed so far fully parsed: not mid-stanza, not
 * inside a CDATA section, not with a partial token (such as a trailing
 * CR, which may start a CRLF) and not after a STOPPED feed whose rest has
 * yet to be fed again. Whitespace between stanzas is no obstacle once
 * consumed. Returns true if the parser is hibernating (also when it
 * already was), false if nothing was released. The next non-empty feed
 * transparently recreates expat, replays the header silently and
 * continues as if nothing had happened; it fails with XML_PARSE_NOMEM if
 * expat cannot be created. Reset, free, set_max_stanza and error_text
 * work on a hibernating parser (a reset one stays without expat until
 * fed). */
bool xml_parser_hibernate(xml_parser_t *p);
/* Heap bytes held by the parser, approximately (expat itself counts as a
 * fixed estimate), a stanza under construction included; for statistics
 * and tests. */
size_t xml_parser_mem(const xml_parser_t *p);
/* Parses data as exactly one element (stored XML: offline messages,
 * archives, private data), in default_ns when it declares none, under the
 * same restrictions as a stream. Returns a new stanza (one reference) or
 * NULL if data is not one well-formed element of at most max_bytes. */
xml_stanza_t *xml_parse_element(const char *data, size_t len, const char *default_ns,
                                size_t max_bytes);
/* Human-readable detail of the last error (for logs), never NULL. */
const char *xml_parser_error_text(const xml_parser_t *p);

#endif
