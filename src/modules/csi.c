/* SPDX-License-Identifier: MIT
 * csi.c - XEP-0352 Client State Indication.
 *
 * A client that says <inactive/> (a phone in a pocket) does not need every
 * presence change of its contacts at once: while it is inactive, presence
 * for it is held, only the latest per sender full JID, and sent in one go
 * before anything else reaches it (so the order the client sees stays the
 * order of events) or when it says <active/> again.
 *
 * Only presence is held, which is what XEP-0352 §5 is about: messages,
 * with or without a body (chat states too), iqs and everything else are
 * delivered at once, after the held presence. Subscription requests,
 * probes and presence errors are not held either: they ask for an action
 * or report a failure, and one must not replace another.
 *
 * State lives in a per-session slot; a session without one is active.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/hashmap.h"
#include "../xml/ns.h"
#include "tern/module.h"

/* Senders whose presence an inactive session holds at most; a newcomer
 * past it flushes what is held (a client with a huge roster gets its
 * updates in batches rather than the server keeping them all). */
#define CSI_MAX_HELD 1000

typedef struct held {
    xml_stanza_t *st; /* owned: a private copy */
    char *from;       /* owned; the key in by_from */
    struct held *prev, *next;
} held_t;

typedef struct {
    bool inactive;
    hashmap_t by_from;   /* sender full JID -> held_t */
    held_t *head, *tail; /* in arrival order of the kept ones */
    size_t n;
} csi_session_t;

typedef struct {
    int slot;
} csi_t;

static void unlink_held(csi_session_t *c, held_t *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        c->head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        c->tail = h->prev;
    hashmap_del(&c->by_from, h->from);
    c->n--;
}

/* Sends (or, with send false, drops) everything held, oldest first. */
static void flush(csi_session_t *c, tern_session_t *s, bool send)
{
    held_t *h = c->head;
    c->head = c->tail = NULL;
    c->n = 0;
    hashmap_free(&c->by_from);
    hashmap_init(&c->by_from);
    while (h) {
        held_t *next = h->next;
        if (send)
            tern_session_send(s, h->st);
        xml_stanza_unref(h->st);
        free(h->from);
        free(h);
        h = next;
    }
}

static bool holdable(const xml_node_t *root)
{
    if (strcmp(root->name, "presence") != 0 || !xml_node_attr(root, "from"))
        return false;
    const char *type = xml_node_attr(root, "type");
    return !type || strcmp(type, "unavailable") == 0;
}

static void hold(csi_session_t *c, tern_session_t *s, const xml_stanza_t *st)
{
    const char *from = xml_node_attr(xml_stanza_root(st), "from");
    held_t *old = hashmap_get(&c->by_from, from);
    if (old) {
        /* Superseded: the newer one takes the place at the end. */
        unlink_held(c, old);
        xml_stanza_unref(old->st);
        free(old->from);
        free(old);
    } else if (c->n >= CSI_MAX_HELD) {
        flush(c, s, true);
    }
    held_t *h = tern_xcalloc(1, sizeof(*h));
    /* A copy: the router may reuse its stanza (e.g. change 'to') for the
     * next recipient once this hook returns. */
    h->st = xml_stanza_copy(st);
    h->from = tern_xstrdup(from);
    h->prev = c->tail;
    if (c->tail)
        c->tail->next = h;
    else
        c->head = h;
    c->tail = h;
    hashmap_put(&c->by_from, h->from, h);
    c->n++;
}

static tern_handled_t on_deliver(void *state, tern_stanza_ev_t *ev)
{
    csi_t *m = state;
    tern_session_t *s = ev->session;
    csi_session_t *c = s ? tern_session_get(s, m->slot) : NULL;
    if (!c || !c->inactive)
        return TERN_PASS;
    if (holdable(xml_stanza_root(ev->stanza))) {
        hold(c, s, ev->stanza);
        return TERN_HANDLED;
    }
    /* Anything else goes out now, after what was held before it. */
    flush(c, s, true);
    return TERN_PASS;
}

static csi_session_t *session_state(csi_t *m, tern_session_t *s)
{
    csi_session_t *c = tern_session_get(s, m->slot);
    if (!c) {
        c = tern_xcalloc(1, sizeof(*c));
        hashmap_init(&c->by_from);
        tern_session_set(s, m->slot, c);
    }
    return c;
}

static tern_handled_t on_active(void *state, tern_session_t *s, xml_node_t *el)
{
    csi_t *m = state;
    if (!tern_session_jid(s))
        return TERN_HANDLED; /* §4: meaningful once bound; ignored before */
    tern_session_set_inactive(s, false);
    csi_session_t *c = tern_session_get(s, m->slot);
    if (c) {
        c->inactive = false;
        flush(c, s, true);
    }
    return TERN_HANDLED;
}

static tern_handled_t on_inactive(void *state, tern_session_t *s, xml_node_t *el)
{
    csi_t *m = state;
    if (!tern_session_jid(s))
        return TERN_HANDLED;
    session_state(m, s)->inactive = true;
    tern_session_set_inactive(s, true); /* push notifications wake it (push.c) */
    return TERN_HANDLED;
}

static void on_closed(void *state, tern_session_t *s)
{
    csi_t *m = state;
    csi_session_t *c = tern_session_get(s, m->slot);
    if (!c)
        return;
    flush(c, s, false);
    hashmap_free(&c->by_from);
    free(c);
    tern_session_set(s, m->slot, NULL);
}

static void on_features(void *state, tern_session_t *s, xml_node_t *features)
{
    if (tern_session_is_authenticated(s))
        xml_node_add_child(features, "csi", NS_CSI);
}

static void *csi_init(tern_module_t *mod)
{
    csi_t *m = tern_xcalloc(1, sizeof(*m));
    m->slot = tern_module_session_slot(mod);
    tern_register_stream_features(mod, on_features);
    tern_register_nonza(mod, NS_CSI, "active", on_active);
    tern_register_nonza(mod, NS_CSI, "inactive", on_inactive);
    /* Last at delivery: whatever other modules do with a stanza for the
     * session happens first; this only decides when it is written. */
    tern_register_hook(mod, TERN_HOOK_DELIVER, -100, on_deliver);
    tern_register_session_closed(mod, on_closed);
    return m;
}

static void csi_fini(void *state)
{
    free(state);
}

const tern_module_def_t mod_csi = {"csi", TERN_MODULE_API_VERSION, csi_init, csi_fini};
