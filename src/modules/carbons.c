/* SPDX-License-Identifier: MIT
 * carbons.c - XEP-0280 Message Carbons.
 *
 * A session turns carbons on with <enable/> and off with <disable/>; the
 * flag lives in the session's module slot. Copies are made in the stanza
 * hooks at priority 40, after blocking (100, so nothing blocked is copied)
 * and the archive (50, so the copy carries the stanza-id):
 *
 *   - OUTBOUND: a message a session sends goes, wrapped in <sent/>, to the
 *     account's other carbons-enabled sessions;
 *   - INBOUND: a message to the account goes, wrapped in <received/>, to
 *     each carbons-enabled session that does not get the original under
 *     the router's rules (a full JID: that resource if it is bound, else as
 *     to the bare JID; the bare JID: every available resource with a
 *     non-negative priority).
 *
 * A message between two resources of the same account is copied only on
 * the INBOUND side, so no session sees it twice. Copies are written to the
 * sessions directly: they are for the account's own clients and must not
 * pass the hooks again (the archive would store them as new messages).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../xml/ns.h"
#include "tern/module.h"

/* Payloads of instant messaging that make a message worth copying
 * (§6); ns.h is shared, so they are defined here. */
#define NS_CHATSTATES   "http://jabber.org/protocol/chatstates"
#define NS_RECEIPTS     "urn:xmpp:receipts"
#define NS_CHAT_MARKERS "urn:xmpp:chat-markers:0"
#define NS_X_CONFERENCE "jabber:x:conference"

typedef struct {
    tern_host_t *host;
    int slot; /* non-NULL: carbons enabled on the session */
} carbons_t;

/* ---- which messages are copied (§6) ---- */

static bool has_im_payload(const xml_node_t *m)
{
    return xml_node_child(m, NULL, NS_CHATSTATES) || xml_node_child(m, NULL, NS_RECEIPTS) ||
           xml_node_child(m, NULL, NS_CHAT_MARKERS);
}

static bool eligible(const xml_node_t *m, bool inbound)
{
    const char *type = xml_node_attr(m, "type");
    if (!type)
        type = "normal";
    /* Errors would need correlation with what they answer; groupchat is
     * the room's to replicate; headlines are not conversation. */
    if (strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0)
        return false;
    /* §7 and XEP-0334: the sender asked for no copies. */
    if (xml_node_child(m, "private", NS_CARBONS) || xml_node_child(m, "no-copy", NS_HINTS))
        return false;
    /* A carbon is never copied again. */
    if (xml_node_child(m, "sent", NS_CARBONS) || xml_node_child(m, "received", NS_CARBONS))
        return false;
    /* MUC rules of §6: invitations are copied; a private message from an
     * occupant is not (the room already replicates it to every joined
     * client), one sent to an occupant is. */
    xml_node_t *x = xml_node_child(m, "x", NS_MUC_USER);
    if (x && xml_node_child(x, "invite", NS_MUC_USER))
        return true;
    if (x && inbound)
        return false;
    if (xml_node_child(m, "x", NS_X_CONFERENCE))
        return true;
    if (strcmp(type, "chat") == 0)
        return true;
    return xml_node_child(m, "body", NS_CLIENT) || has_im_payload(m);
}

/* <message from=bare to=full type=same><kind><forwarded><original/>... */
static xml_stanza_t *wrap(const xml_stanza_t *orig, const char *kind, const char *bare,
                          const jid_t *to)
{
    const xml_node_t *oroot = xml_stanza_root(orig);
    xml_stanza_t *w = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(w);
    char *full = jid_to_string(to);
    xml_node_set_attr(root, "from", bare);
    xml_node_set_attr(root, "to", full);
    free(full);
    const char *type = xml_node_attr(oroot, "type");
    if (type)
        xml_node_set_attr(root, "type", type);
    xml_node_t *c = xml_node_add_child(root, kind, NS_CARBONS);
    xml_node_t *f = xml_node_add_child(c, "forwarded", NS_FORWARD);
    xml_node_append_copy(f, oroot);
    return w;
}

static bool enabled(const carbons_t *c, const tern_session_t *s)
{
    return tern_session_get(s, c->slot) != NULL && tern_session_jid(s) != NULL;
}

static bool same_account(const jid_t *x, const jid_t *y)
{
    return x->local && y->local && strcmp(x->local, y->local) == 0 &&
           strcmp(x->domain, y->domain) == 0;
}

/* ---- hooks ---- */

static tern_handled_t on_outbound(void *state, tern_stanza_ev_t *ev)
{
    carbons_t *c = state;
    const xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "message") != 0 || !ev->session || !ev->from || !ev->from->local)
        return TERN_PASS;
    /* No 'to' or the user's own JID: the INBOUND side copies it. */
    if (!ev->to || same_account(ev->from, ev->to))
        return TERN_PASS;
    if (!eligible(root, false))
        return TERN_PASS;
    char *bare = jid_bare_string(ev->from);
    /* §8: every other enabled resource, whether or not the sender has
     * carbons on. */
    for (tern_session_t *s = tern_user_sessions(c->host, bare); s;
         s = tern_session_next_resource(s)) {
        if (s == ev->session || !enabled(c, s))
            continue;
        xml_stanza_t *w = wrap(ev->stanza, "sent", bare, tern_session_jid(s));
        tern_session_send(s, w);
        xml_stanza_unref(w);
    }
    free(bare);
    return TERN_PASS;
}

static tern_handled_t on_inbound(void *state, tern_stanza_ev_t *ev)
{
    carbons_t *c = state;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "message") != 0 || !ev->from || !ev->to || !ev->to->local)
        return TERN_PASS;
    xml_node_t *priv = xml_node_child(root, "private", NS_CARBONS);
    if (priv) {
        /* §7: no copies, and the recipient does not need the marker. */
        xml_node_detach(priv);
        return TERN_PASS;
    }
    if (!eligible(root, true))
        return TERN_PASS;
    char *bare = jid_bare_string(ev->to);
    tern_session_t *first = tern_user_sessions(c->host, bare);
    /* The router's rules: a full JID reaches that resource if it is bound
     * (available or not); otherwise, and for the bare JID, every available
     * resource with a non-negative priority. */
    const tern_session_t *target = NULL;
    for (tern_session_t *s = first; s && ev->to->resource; s = tern_session_next_resource(s))
        if (tern_session_jid(s) && tern_session_jid(s)->resource &&
            strcmp(tern_session_jid(s)->resource, ev->to->resource) == 0)
            target = s;
    bool from_self = same_account(ev->from, ev->to);
    for (tern_session_t *s = first; s; s = tern_session_next_resource(s)) {
        if (!enabled(c, s))
            continue;
        bool gets_original =
            target ? s == target : tern_session_available(s) && tern_session_priority(s) >= 0;
        if (gets_original)
            continue;
        /* The resource that wrote a note to its own account has it. */
        if (from_self && ev->from->resource && tern_session_jid(s)->resource &&
            strcmp(tern_session_jid(s)->resource, ev->from->resource) == 0)
            continue;
        xml_stanza_t *w = wrap(ev->stanza, "received", bare, tern_session_jid(s));
        tern_session_send(s, w);
        xml_stanza_unref(w);
    }
    free(bare);
    return TERN_PASS;
}

/* ---- enable / disable (§4, §5) ---- */

static tern_handled_t on_toggle(void *state, tern_iq_t *iq)
{
    carbons_t *c = state;
    if (!iq->is_set) {
        tern_iq_error(iq, "modify", "bad-request", "enable and disable are sets");
        return TERN_HANDLED;
    }
    /* §4.1/§5.1: only a session of this server, for itself. */
    if (!iq->session || !iq->from || !iq->from->local ||
        (iq->to && !same_account(iq->from, iq->to))) {
        tern_iq_error(iq, "cancel", "not-allowed", NULL);
        return TERN_HANDLED;
    }
    /* §10.1: repeating either is not an error. */
    bool on = strcmp(iq->payload->name, "enable") == 0;
    tern_session_set(iq->session, c->slot, on ? (void *)1 : NULL);
    tern_iq_reply(iq, NULL);
    return TERN_HANDLED;
}

static void *carbons_init(tern_module_t *m)
{
    carbons_t *c = tern_xcalloc(1, sizeof(*c));
    c->host = tern_module_host(m);
    c->slot = tern_module_session_slot(m);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_CARBONS, "enable", on_toggle);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_CARBONS, "disable", on_toggle);
    tern_register_hook(m, TERN_HOOK_OUTBOUND, 40, on_outbound);
    tern_register_hook(m, TERN_HOOK_INBOUND, 40, on_inbound);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_CARBONS);
    return c;
}

static void carbons_fini(void *state)
{
    free(state);
}

const tern_module_def_t mod_carbons = {"carbons", TERN_MODULE_API_VERSION, carbons_init,
                                       carbons_fini};
