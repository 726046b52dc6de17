/* SPDX-License-Identifier: MIT
 * frame.h - cuts this server's own stream output into self-contained
 * top-level elements, for transports that carry one element per message.
 *
 * The c2s layer writes a TCP stream: stanzas in the stream's default
 * namespace (jabber:client, never declared on them) and stream:features /
 * stream:error using the prefix declared on <stream:stream>. WebSocket
 * (RFC 7395 §3.3.3) sends each element as its own message and BOSH
 * (XEP-0206 §8) wraps them in <body/>, so every element must declare what
 * it uses. The splitter only has to understand our serialiser's output:
 * '<' and '>' never occur in text or attribute values (both are escaped),
 * and there are no comments or CDATA. A trailing partial element is kept
 * for the next call.
 */
#ifndef TERN_XML_FRAME_H
#define TERN_XML_FRAME_H

#include <stddef.h>

typedef struct {
    char *buf; /* partial element carried over (owned) */
    size_t len, cap;
} xml_framer_t;

/* el is one complete element with the declarations it needs; valid only
 * during the call. */
typedef void (*xml_frame_cb)(void *ud, const char *el, size_t len);

/* Feeds output bytes; calls cb once per completed top-level element.
 * Processing instructions and whitespace between elements are dropped. */
void xml_framer_feed(xml_framer_t *f, const char *data, size_t len, xml_frame_cb cb, void *ud);
void xml_framer_free(xml_framer_t *f);

#endif
