/* SPDX-License-Identifier: MIT
 * stanza.c - arena-backed XML element trees and their serialiser (see stanza.h).
 *
 * A stanza is one malloc'd block holding the xml_stanza_t header and the
 * first 1 KB arena block; most stanzas (presence, short messages, iq
 * results) fit in it, so parsing or building one costs a single
 * allocation. When a block fills up a new one is chained in front, each
 * twice the size of the last up to 64 KB; strings larger than a quarter of
 * the next block get a block of their own so that one big body does not
 * waste the tail of a growing block. Nothing is freed individually: the
 * chain goes when the last reference does. Tree walks (copy, serialise)
 * are iterative over the parent/next links, so no input can exhaust the C
 * stack however deep a built tree is.
 */
#include "xml/stanza.h"

#include "core/common.h"
#include "xml/ns.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_FIRST_BLOCK 1024
#define ARENA_MAX_BLOCK   (64 * 1024)
/* Distinct attribute namespaces per element that get a shared prefix; more
 * than this (never seen in practice) each get their own declaration. */
#define SER_PREFIX_SLOTS 8

typedef struct arena_block {
    struct arena_block *next; /* older block */
    size_t size;              /* usable bytes in data */
    size_t used;
    max_align_t data[];
} arena_block_t;

struct xml_stanza {
    /* Atomic so that a stanza shared with another thread (a storage job,
     * say) may be released by whichever side finishes last. */
    atomic_uint refs;
    xml_node_t *root;
    arena_block_t *cur; /* block being filled; older ones follow ->next */
    size_t next_size;
    size_t mem;
    /* This stanza written out without its root's 'to', shared with the
     * fan-out copies made from it; dropped by any change to the tree. */
    struct xml_wire *wire;
};

/* Immutable once built; shared across threads by reference count. */
struct xml_wire {
    atomic_uint refs;
    char *ns;        /* the parent namespace it was written for */
    size_t name_end; /* where ' to=...' goes: right after "<name" */
    size_t len;
    char data[];
};

static void wire_unref(struct xml_wire *w)
{
    if (w && atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
        free(w->ns);
        free(w);
    }
}

/* Every change to a stanza's tree comes through here first. */
static inline void stanza_touch(xml_stanza_t *st)
{
    if (st && st->wire) {
        wire_unref(st->wire);
        st->wire = NULL;
    }
}

#define ALIGN_UP(n, a) (((n) + ((a)-1)) & ~((size_t)(a)-1))
#define STANZA_HDR     ALIGN_UP(sizeof(struct xml_stanza), alignof(max_align_t))

static arena_block_t *first_block(const xml_stanza_t *st)
{
    return (arena_block_t *)((char *)st + STANZA_HDR);
}

static xml_stanza_t *stanza_create(size_t first)
{
    if (first > SIZE_MAX / 2)
        abort(); /* cannot happen: the hint is the size of an existing arena */
    xml_stanza_t *st = tern_xmalloc(STANZA_HDR + sizeof(arena_block_t) + first);
    atomic_init(&st->refs, 1);
    st->root = NULL;
    st->wire = NULL;
    arena_block_t *b = first_block(st);
    b->next = NULL;
    b->size = first;
    b->used = 0;
    st->cur = b;
    st->next_size = first < ARENA_MAX_BLOCK / 2 ? first * 2 : ARENA_MAX_BLOCK;
    if (st->next_size < ARENA_FIRST_BLOCK * 2)
        st->next_size = ARENA_FIRST_BLOCK * 2;
    st->mem = STANZA_HDR + sizeof(arena_block_t) + first;
    return st;
}

static arena_block_t *block_new(xml_stanza_t *st, size_t size)
{
    if (size > SIZE_MAX - sizeof(arena_block_t))
        abort(); /* cannot happen: sizes come from strings already in memory */
    arena_block_t *b = tern_xmalloc(sizeof(arena_block_t) + size);
    b->size = size;
    b->used = 0;
    st->mem += sizeof(arena_block_t) + size;
    return b;
}

static void *arena_alloc_slow(xml_stanza_t *st, size_t size)
{
    size_t bs = st->next_size;
    if (size > bs / 4) {
        /* Dedicated block behind the current one, which keeps serving
         * small allocations. */
        arena_block_t *b = block_new(st, size);
        b->used = size;
        b->next = st->cur->next;
        st->cur->next = b;
        return b->data;
    }
    arena_block_t *b = block_new(st, bs);
    b->next = st->cur;
    st->cur = b;
    if (bs < ARENA_MAX_BLOCK)
        st->next_size = bs * 2;
    b->used = size;
    return b->data;
}

static void *arena_alloc(xml_stanza_t *st, size_t size, size_t align)
{
    arena_block_t *b = st->cur;
    size_t off = ALIGN_UP(b->used, align);
    if (off <= b->size && size <= b->size - off) {
        b->used = off + size;
        return (char *)b->data + off;
    }
    return arena_alloc_slow(st, size);
}

static char *arena_strndup(xml_stanza_t *st, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        abort(); /* cannot happen: n is the length of a string in memory */
    char *p = arena_alloc(st, n + 1, 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *arena_strdup(xml_stanza_t *st, const char *s)
{
    return arena_strndup(st, s, strlen(s));
}

/* Children usually share their parent's namespace; pointing at the
 * parent's copy saves an arena string per element. */
static const char *ns_store(xml_stanza_t *st, const xml_node_t *parent, const char *ns)
{
    if (!ns)
        return parent ? parent->ns : "";
    if (!ns[0])
        return "";
    if (parent && (parent->ns == ns || strcmp(parent->ns, ns) == 0))
        return parent->ns;
    return arena_strdup(st, ns);
}

static xml_node_t *node_new(xml_stanza_t *st, xml_node_type_t type)
{
    xml_node_t *n = arena_alloc(st, sizeof(*n), alignof(xml_node_t));
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->owner = st;
    return n;
}

static void link_child(xml_node_t *parent, xml_node_t *n)
{
    n->parent = parent;
    if (parent->last_child)
        parent->last_child->next = n;
    else
        parent->children = n;
    parent->last_child = n;
}

xml_stanza_t *xml_stanza_new(const char *name, const char *ns)
{
    xml_stanza_t *st = stanza_create(ARENA_FIRST_BLOCK);
    xml_node_t *root = node_new(st, XML_NODE_ELEMENT);
    root->name = arena_strdup(st, name);
    root->ns = ns_store(st, NULL, ns);
    st->root = root;
    return st;
}

xml_stanza_t *xml_stanza_ref(xml_stanza_t *st)
{
    atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    return st;
}

void xml_stanza_unref(xml_stanza_t *st)
{
    if (!st)
        return;
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
        return;
    wire_unref(st->wire);
    arena_block_t *first = first_block(st);
    arena_block_t *b = st->cur;
    while (b) {
        arena_block_t *next = b->next;
        if (b != first)
            free(b);
        b = next;
    }
    free(st);
}

xml_node_t *xml_stanza_root(const xml_stanza_t *st)
{
    return st->root;
}

size_t xml_stanza_mem(const xml_stanza_t *st)
{
    return st->mem;
}

xml_node_t *xml_node_add_child(xml_node_t *parent, const char *name, const char *ns)
{
    if (!parent || parent->type != XML_NODE_ELEMENT)
        return NULL;
    xml_stanza_t *st = parent->owner;
    stanza_touch(st);
    xml_node_t *n = node_new(st, XML_NODE_ELEMENT);
    n->name = arena_strdup(st, name);
    n->ns = ns_store(st, parent, ns);
    link_child(parent, n);
    return n;
}

xml_node_t *xml_node_add_text(xml_node_t *parent, const char *text, size_t len)
{
    if (!parent || parent->type != XML_NODE_ELEMENT)
        return NULL;
    xml_stanza_t *st = parent->owner;
    stanza_touch(st);
    xml_node_t *n = node_new(st, XML_NODE_TEXT);
    n->text = arena_strndup(st, text, len);
    n->text_len = len;
    link_child(parent, n);
    return n;
}

xml_node_t *xml_node_add_child_text(xml_node_t *parent, const char *name, const char *ns,
                                    const char *text)
{
    xml_node_t *n = xml_node_add_child(parent, name, ns);
    if (n && text && text[0])
        xml_node_add_text(n, text, strlen(text));
    return n;
}

void xml_node_set_attr(xml_node_t *node, const char *name, const char *value)
{
    if (!node || node->type != XML_NODE_ELEMENT)
        return;
    stanza_touch(node->owner);
    xml_attr_t **link = &node->attrs;
    for (xml_attr_t *a = node->attrs; a; link = &a->next, a = a->next) {
        if (strcmp(a->name, name) != 0)
            continue;
        if (value)
            a->value = arena_strdup(node->owner, value);
        else
            *link = a->next;
        return;
    }
    if (!value)
        return;
    xml_attr_t *a = arena_alloc(node->owner, sizeof(*a), alignof(xml_attr_t));
    a->name = arena_strdup(node->owner, name);
    a->value = arena_strdup(node->owner, value);
    a->next = NULL;
    *link = a;
}

void xml_node_push_attr(xml_node_t *node, const char *name, const char *value)
{
    stanza_touch(node->owner);
    xml_attr_t *a = arena_alloc(node->owner, sizeof(*a), alignof(xml_attr_t));
    a->name = arena_strdup(node->owner, name);
    a->value = arena_strdup(node->owner, value);
    a->next = node->attrs;
    node->attrs = a;
}

void xml_node_detach(xml_node_t *node)
{
    xml_node_t *parent = node ? node->parent : NULL;
    if (!parent)
        return;
    stanza_touch(node->owner);
    xml_node_t *prev = NULL;
    for (xml_node_t *c = parent->children; c && c != node; c = c->next)
        prev = c;
    if (prev)
        prev->next = node->next;
    else
        parent->children = node->next;
    if (parent->last_child == node)
        parent->last_child = prev;
    node->parent = NULL;
    node->next = NULL;
}

static void copy_attrs(xml_node_t *dst, const xml_node_t *src)
{
    xml_attr_t **tail = &dst->attrs;
    while (*tail)
        tail = &(*tail)->next;
    for (const xml_attr_t *a = src->attrs; a; a = a->next) {
        xml_attr_t *c = arena_alloc(dst->owner, sizeof(*c), alignof(xml_attr_t));
        c->name = arena_strdup(dst->owner, a->name);
        c->value = arena_strdup(dst->owner, a->value);
        c->next = NULL;
        *tail = c;
        tail = &c->next;
    }
}

static xml_node_t *copy_one(xml_node_t *parent, const xml_node_t *src)
{
    if (src->type == XML_NODE_TEXT)
        return xml_node_add_text(parent, src->text, src->text_len);
    xml_node_t *n = xml_node_add_child(parent, src->name, src->ns);
    copy_attrs(n, src);
    return n;
}

/* Copies the children of src under dst. skip is a node that must not be
 * copied: when src is an ancestor of dst in the same tree, the copy being
 * built is itself inside src and would otherwise be copied forever. */
static void copy_children(xml_node_t *dst, const xml_node_t *src, const xml_node_t *skip)
{
    const xml_node_t *s = src->children;
    xml_node_t *d = dst; /* the copy of s's parent */
    while (s) {
        if (s != skip) {
            xml_node_t *c = copy_one(d, s);
            if (s->children) {
                d = c;
                s = s->children;
                continue;
            }
        }
        while (!s->next) {
            s = s->parent;
            d = d->parent;
            if (s == src)
                return;
        }
        s = s->next;
    }
}

static size_t arena_used(const xml_stanza_t *st)
{
    size_t n = 0;
    for (const arena_block_t *b = st->cur; b; b = b->next)
        n += b->used;
    return n;
}

xml_stanza_t *xml_stanza_copy(const xml_stanza_t *st)
{
    /* Sizing the first block to the source's contents makes a copy one
     * allocation, whatever the source's block history, and a compact one:
     * long-lived copies (a session's last presence) hold no spare arena.
     * Growing a copy later just adds a block. */
    xml_stanza_t *c = stanza_create(arena_used(st) + 64);
    const xml_node_t *r = st->root;
    xml_node_t *root = node_new(c, XML_NODE_ELEMENT);
    root->name = arena_strdup(c, r->name);
    root->ns = ns_store(c, NULL, r->ns);
    c->root = root;
    copy_attrs(root, r);
    copy_children(root, r, NULL);
    return c;
}

xml_node_t *xml_node_append_copy(xml_node_t *parent, const xml_node_t *src)
{
    if (!parent || !src || parent->type != XML_NODE_ELEMENT)
        return NULL;
    stanza_touch(parent->owner);
    xml_node_t *top = copy_one(parent, src);
    if (src->type == XML_NODE_ELEMENT)
        copy_children(top, src, top);
    return top;
}

const char *xml_node_attr(const xml_node_t *node, const char *name)
{
    if (!node)
        return NULL;
    for (const xml_attr_t *a = node->attrs; a; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a->value;
    return NULL;
}

static bool matches(const xml_node_t *n, const char *name, const char *ns)
{
    return n->type == XML_NODE_ELEMENT && (!name || strcmp(n->name, name) == 0) &&
           (!ns || strcmp(n->ns, ns) == 0);
}

xml_node_t *xml_node_child(const xml_node_t *node, const char *name, const char *ns)
{
    if (!node)
        return NULL;
    for (xml_node_t *c = node->children; c; c = c->next)
        if (matches(c, name, ns))
            return c;
    return NULL;
}

xml_node_t *xml_node_next(const xml_node_t *child, const char *name, const char *ns)
{
    if (!child)
        return NULL;
    for (xml_node_t *c = child->next; c; c = c->next)
        if (matches(c, name, ns))
            return c;
    return NULL;
}

xml_node_t *xml_node_first_element(const xml_node_t *node)
{
    return xml_node_child(node, NULL, NULL);
}

const char *xml_node_text(const xml_node_t *node)
{
    if (!node)
        return "";
    if (node->type == XML_NODE_TEXT)
        return node->text;
    const xml_node_t *first = NULL;
    size_t total = 0, count = 0;
    for (const xml_node_t *c = node->children; c; c = c->next) {
        if (c->type != XML_NODE_TEXT)
            continue;
        if (!first)
            first = c;
        total += c->text_len;
        count++;
    }
    if (count == 0)
        return "";
    if (count == 1)
        return first->text;
    char *s = arena_alloc(node->owner, total + 1, 1);
    char *w = s;
    for (const xml_node_t *c = first; c; c = c->next) {
        if (c->type != XML_NODE_TEXT)
            continue;
        memcpy(w, c->text, c->text_len);
        w += c->text_len;
    }
    *w = '\0';
    return s;
}

bool xml_node_is(const xml_node_t *node, const char *name, const char *ns)
{
    return node && matches(node, name, ns);
}

/* Serialisation. */

typedef struct {
    char *p;
    size_t len, cap;
    int err;
} sbuf_t;

static bool sb_reserve(sbuf_t *b, size_t n)
{
    if (b->err)
        return false;
    if (b->cap - b->len >= n)
        return true;
    if (n > SIZE_MAX / 2 - b->len) {
        b->err = TERN_ENOMEM;
        return false;
    }
    size_t want = b->len + n;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < want)
        cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
        b->err = TERN_ENOMEM;
        return false;
    }
    b->p = q;
    b->cap = cap;
    return true;
}

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (n && sb_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void sb_puts(sbuf_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_putc(sbuf_t *b, char c)
{
    if (sb_reserve(b, 1))
        b->p[b->len++] = c;
}

/* Bytes that can be copied as they are. Everything above '>' (including
 * all UTF-8 multibyte sequences) is, so typical text stays on the first
 * comparison. In attribute values tab and newline must become references
 * or a parser would normalise them to spaces. */
static inline bool is_plain(unsigned char c, bool attr)
{
    if (c > '>')
        return true;
    if (c >= 0x20)
        return c != '&' && c != '<' && c != '>' && !(attr && (c == '"' || c == '\''));
    return !attr && (c == '\t' || c == '\n');
}

static void sb_escape(sbuf_t *b, const char *s, size_t n, bool attr)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && is_plain((unsigned char)s[i], attr))
            i++;
        sb_put(b, s + start, i - start);
        if (i == n)
            break;
        const char *rep;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '\t':
            rep = "&#9;";
            break;
        case '\n':
            rep = "&#10;";
            break;
        case '\r':
            /* A raw CR would come back as LF after end-of-line handling. */
            rep = "&#13;";
            break;
        default:
            /* Other C0 controls are not XML characters, not even as
             * references; dropping them keeps the stream well-formed. */
            rep = "";
            break;
        }
        sb_puts(b, rep);
        i++;
    }
}

int xml_escape_append(const char *s, size_t n, char **buf, size_t *len, size_t *cap)
{
    sbuf_t b = {*buf, *len, *cap, 0};
    sb_escape(&b, s, n, true);
    *buf = b.p;
    *len = b.len;
    *cap = b.cap;
    return b.err;
}

static void sb_attr(sbuf_t *b, const char *prefix, size_t prefix_len, const char *local,
                    const char *value)
{
    sb_putc(b, ' ');
    if (prefix_len) {
        sb_put(b, prefix, prefix_len);
        sb_putc(b, ':');
    }
    sb_puts(b, local);
    sb_put(b, "='", 2);
    sb_escape(b, value, strlen(value), true);
    sb_putc(b, '\'');
}

/* The xml namespace may not be bound to the default namespace, so its
 * elements (legal, if odd) are written with the reserved xml: prefix and
 * leave the default namespace as it was. */
static bool in_xml_ns(const xml_node_t *n)
{
    return strcmp(n->ns, NS_XML) == 0;
}

/* The default namespace in effect where n is written. */
static const char *scope_of(const xml_node_t *n, const xml_node_t *top, const char *top_scope)
{
    while (n != top) {
        n = n->parent;
        if (!in_xml_ns(n))
            return n->ns;
    }
    return top_scope;
}

static void write_name(sbuf_t *b, const xml_node_t *n)
{
    if (in_xml_ns(n))
        sb_put(b, "xml:", 4);
    sb_puts(b, n->name);
}

static void write_start_tag(sbuf_t *b, const xml_node_t *n, const char *scope)
{
    struct {
        const char *uri;
        size_t len;
    } slots[SER_PREFIX_SLOTS];
    unsigned nslots = 0, nprefix = 0;

    sb_putc(b, '<');
    write_name(b, n);
    if (strcmp(n->ns, scope) != 0 && !in_xml_ns(n)) {
        sb_put(b, " xmlns='", 8);
        sb_escape(b, n->ns, strlen(n->ns), true);
        sb_putc(b, '\'');
    }
    for (const xml_attr_t *a = n->attrs; a; a = a->next) {
        const char *name = a->name;
        /* Namespaces come from node->ns; a declaration stored as an
         * attribute would duplicate or contradict it. */
        if (strncmp(name, "xmlns", 5) == 0 && (name[5] == '\0' || name[5] == ':'))
            continue;
        const char *bar = strrchr(name, '|');
        if (!bar || bar == name) {
            sb_attr(b, NULL, 0, bar ? bar + 1 : name, a->value);
            continue;
        }
        size_t ulen = (size_t)(bar - name);
        if (ulen == sizeof(NS_XML) - 1 && memcmp(name, NS_XML, ulen) == 0) {
            sb_attr(b, "xml", 3, bar + 1, a->value);
            continue;
        }
        if (ulen == sizeof(NS_XMLNS) - 1 && memcmp(name, NS_XMLNS, ulen) == 0)
            continue;
        unsigned k = nprefix;
        for (unsigned i = 0; i < nslots; i++) {
            if (slots[i].len == ulen && memcmp(slots[i].uri, name, ulen) == 0) {
                k = i;
                break;
            }
        }
        char prefix[16];
        int plen = snprintf(prefix, sizeof(prefix), "ns%u", k);
        if (k == nprefix) {
            nprefix++;
            if (nslots < SER_PREFIX_SLOTS) {
                slots[nslots].uri = name;
                slots[nslots].len = ulen;
                nslots++;
            } else {
                /* Past the table, give every attribute a fresh prefix:
                 * redundant declarations are legal, clashes are not. */
                nslots = SER_PREFIX_SLOTS;
            }
            sb_put(b, " xmlns:", 7);
            sb_put(b, prefix, (size_t)plen);
            sb_put(b, "='", 2);
            sb_escape(b, name, ulen, true);
            sb_putc(b, '\'');
        }
        sb_attr(b, prefix, (size_t)plen, bar + 1, a->value);
    }
}

int xml_node_serialize(const xml_node_t *node, const char *parent_ns, char **buf, size_t *len,
                       size_t *cap)
{
    sbuf_t b = {*buf, *len, *cap, 0};
    const char *top_scope = parent_ns ? parent_ns : "";
    const xml_node_t *n = node;
    while (n && !b.err) {
        if (n->type == XML_NODE_TEXT) {
            sb_escape(&b, n->text, n->text_len, false);
        } else {
            write_start_tag(&b, n, scope_of(n, node, top_scope));
            if (n->children) {
                sb_putc(&b, '>');
                n = n->children;
                continue;
            }
            sb_put(&b, "/>", 2);
        }
        /* Leaving n: close every ancestor that has no further child. */
        while (n != node && !n->next) {
            n = n->parent;
            sb_put(&b, "</", 2);
            write_name(&b, n);
            sb_putc(&b, '>');
        }
        if (n == node)
            break;
        n = n->next;
    }
    *buf = b.p;
    *len = b.len;
    *cap = b.cap;
    return b.err;
}

char *xml_node_to_string(const xml_node_t *node, const char *parent_ns, size_t *len_out)
{
    sbuf_t b = {NULL, 0, 0, 0};
    b.err = xml_node_serialize(node, parent_ns, &b.p, &b.len, &b.cap);
    sb_putc(&b, '\0');
    if (b.err) {
        free(b.p);
        return NULL;
    }
    if (len_out)
        *len_out = b.len - 1;
    return b.p;
}

/* ---- fan-out ---- */

static struct xml_wire *wire_of(xml_stanza_t *st, const char *parent_ns)
{
    if (st->wire && strcmp(st->wire->ns, parent_ns) == 0)
        return st->wire;
    const xml_node_t *root = st->root;
    if (xml_node_attr(root, "to"))
        return NULL; /* the form without 'to' is only kept for templates */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (xml_node_serialize(root, parent_ns, &buf, &len, &cap) != 0) {
        free(buf);
        return NULL;
    }
    struct xml_wire *w = tern_xmalloc(sizeof(*w) + len);
    atomic_init(&w->refs, 1);
    w->ns = tern_xstrdup(parent_ns);
    w->name_end = 1 + strlen(root->name);
    w->len = len;
    memcpy(w->data, buf, len);
    free(buf);
    wire_unref(st->wire);
    st->wire = w;
    return w;
}

xml_stanza_t *xml_stanza_copy_to(xml_stanza_t *tmpl, const char *to, const char *parent_ns)
{
    xml_stanza_t *c = xml_stanza_copy(tmpl);
    xml_node_set_attr(c->root, "to", to);
    struct xml_wire *w = wire_of(tmpl, parent_ns);
    if (w) {
        atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
        c->wire = w;
    }
    return c;
}

size_t xml_stanza_wire_len(xml_stanza_t *st, const char *parent_ns)
{
    struct xml_wire *w = wire_of(st, parent_ns);
    if (w)
        return w->len;
    size_t len = 0;
    free(xml_node_to_string(st->root, parent_ns, &len));
    return len;
}

int xml_stanza_serialize(const xml_stanza_t *st, const char *parent_ns, char **buf, size_t *len,
                         size_t *cap)
{
    const struct xml_wire *w = st->wire;
    if (!w || strcmp(w->ns, parent_ns) != 0)
        return xml_node_serialize(st->root, parent_ns, buf, len, cap);
    sbuf_t b = {*buf, *len, *cap, 0};
    sb_put(&b, w->data, w->name_end);
    const char *to = xml_node_attr(st->root, "to");
    if (to)
        sb_attr(&b, NULL, 0, "to", to);
    sb_put(&b, w->data + w->name_end, w->len - w->name_end);
    *buf = b.p;
    *len = b.len;
    *cap = b.cap;
    return b.err;
}
