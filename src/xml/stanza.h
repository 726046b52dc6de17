/* SPDX-License-Identifier: MIT
 * stanza.h - XML element trees for stanzas.
 *
 * A stanza is one top-level element of an XMPP stream with all its
 * descendants. Every node, attribute and string of a stanza lives in one
 * arena owned by the xml_stanza_t, so building, routing and freeing a stanza
 * costs a handful of allocations instead of one per node. Stanzas are
 * refcounted so that fan-out (presence broadcast, later MUC and carbons) can
 * share one tree: xml_stanza_ref/xml_stanza_unref. A stanza with refs > 1
 * must be treated as read-only; use xml_stanza_copy to get a private one.
 *
 * Names and namespaces are kept resolved: node->name is the local name and
 * node->ns the namespace URI (never a prefix). Attribute names are the local
 * name, or "uri|local" for namespaced attributes except those in the xml
 * namespace, which are kept as "xml:lang" (and "xml:space").
 */
#ifndef TERN_XML_STANZA_H
#define TERN_XML_STANZA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct xml_stanza xml_stanza_t;
typedef struct xml_node xml_node_t;
typedef struct xml_attr xml_attr_t;

struct xml_attr {
    const char *name;
    const char *value;
    xml_attr_t *next;
};

typedef enum { XML_NODE_ELEMENT, XML_NODE_TEXT } xml_node_type_t;

struct xml_node {
    xml_node_type_t type;
    const char *name; /* element local name; NULL for text */
    const char *ns;   /* namespace URI; "" when none; NULL for text */
    const char *text; /* text content for XML_NODE_TEXT (NUL terminated) */
    size_t text_len;
    xml_attr_t *attrs;
    xml_node_t *parent;
    xml_node_t *children; /* first child */
    xml_node_t *last_child;
    xml_node_t *next; /* next sibling */
    xml_stanza_t *owner;
};

/* Create an empty stanza whose root element is name in namespace ns.
 * The caller owns the returned reference. Never returns NULL (aborts on OOM). */
xml_stanza_t *xml_stanza_new(const char *name, const char *ns);
xml_stanza_t *xml_stanza_ref(xml_stanza_t *st);
void xml_stanza_unref(xml_stanza_t *st);
/* Deep copy into a new stanza with refs = 1. */
xml_stanza_t *xml_stanza_copy(const xml_stanza_t *st);
xml_node_t *xml_stanza_root(const xml_stanza_t *st);
/* Bytes allocated in the stanza's arena (for accounting and limits). */
size_t xml_stanza_mem(const xml_stanza_t *st);

/* Building. Strings are copied into the stanza's arena. ns NULL means the
 * parent's namespace. Return NULL only if parent is NULL or a text node. */
xml_node_t *xml_node_add_child(xml_node_t *parent, const char *name, const char *ns);
xml_node_t *xml_node_add_text(xml_node_t *parent, const char *text, size_t len);
/* Adds a text child with the given C string (convenience). */
xml_node_t *xml_node_add_child_text(xml_node_t *parent, const char *name, const char *ns,
                                    const char *text);
/* Sets (replacing) an attribute; value NULL removes it. Attributes named
 * "xmlns" or "xmlns:*" are never serialised: the namespace is node->ns. */
void xml_node_set_attr(xml_node_t *node, const char *name, const char *value);
/* Adds an attribute in O(1) without looking for one of the same name; it
 * goes first in the list. For producers that already guarantee unique names
 * (the parser: expat rejects duplicates) and add in reverse order. */
void xml_node_push_attr(xml_node_t *node, const char *name, const char *value);
/* Removes node (and its subtree) from its parent. Memory stays in the arena. */
void xml_node_detach(xml_node_t *node);
/* Deep-copies src (from any stanza) as the last child of parent. */
xml_node_t *xml_node_append_copy(xml_node_t *parent, const xml_node_t *src);

/* Reading. */
const char *xml_node_attr(const xml_node_t *node, const char *name);
/* First element child with that name and namespace; name or ns NULL = any. */
xml_node_t *xml_node_child(const xml_node_t *node, const char *name, const char *ns);
/* Next element sibling after child with that name/ns (NULL = any). */
xml_node_t *xml_node_next(const xml_node_t *child, const char *name, const char *ns);
/* First element child of any name/namespace, or NULL. */
xml_node_t *xml_node_first_element(const xml_node_t *node);
/* Concatenated text of the direct text children (of a text node: its
 * text); returned string lives in the arena (or is "" static). Parsed
 * stanzas have one text node per run of character data, so this allocates
 * only for mixed content (text, element, text). */
const char *xml_node_text(const xml_node_t *node);
/* An element with that name and namespace (NULL = any); false for NULL. */
bool xml_node_is(const xml_node_t *node, const char *name, const char *ns);

/* Serialisation.
 *
 * Appends the XML of node to a growable buffer: *buf, *len, *cap is a
 * malloc'd buffer owned by the caller (may start NULL/0/0). parent_ns is the
 * default namespace in scope where the element is written ("jabber:client"
 * for stanzas on a c2s stream); xmlns is emitted only where a node's
 * namespace differs from its parent's. Text and attribute values are
 * escaped (&lt; &gt; &amp; &quot; &apos;; in attributes also tab, LF and
 * CR as character references, in text CR). C0 control characters, which
 * XML 1.0 cannot carry, are dropped. Attributes "uri|local" get a prefix
 * nsN declared on their element. The buffer stays valid (and is owned by
 * the caller) on failure. Returns 0 or TERN_ENOMEM. */
int xml_node_serialize(const xml_node_t *node, const char *parent_ns, char **buf, size_t *len,
                       size_t *cap);
/* Convenience: returns a malloc'd NUL-terminated string (caller frees). */
char *xml_node_to_string(const xml_node_t *node, const char *parent_ns, size_t *len_out);

/* Fan-out: one stanza to many recipients that differ only in 'to'.
 *
 * xml_stanza_copy_to returns a copy of tmpl addressed to `to` (the caller
 * owns it). tmpl, which must have no 'to' of its own, is written out once
 * for parent_ns and that text is kept on tmpl and shared by every copy, so
 * xml_stanza_serialize of a copy is a splice of 'to' into shared text
 * instead of a walk of the tree. Changing a copy or tmpl drops the shared
 * text for that stanza, which is then written from its tree again. */
xml_stanza_t *xml_stanza_copy_to(xml_stanza_t *tmpl, const char *to, const char *parent_ns);
/* Length of tmpl written out without 'to' (building the shared text). */
size_t xml_stanza_wire_len(xml_stanza_t *tmpl, const char *parent_ns);
/* xml_node_serialize of st's root, from the shared text when it has one. */
int xml_stanza_serialize(const xml_stanza_t *st, const char *parent_ns, char **buf, size_t *len,
                         size_t *cap);

/* Escape text for XML into the growable buffer (same contract as above).
 * Safe for attribute values in either quote style and for text. */
int xml_escape_append(const char *s, size_t n, char **buf, size_t *len, size_t *cap);

#endif
