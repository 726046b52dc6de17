/* SPDX-License-Identifier: MIT
 * iq.c - answering iqs from modules (the reply half of module.h).
 *
 * A reply swaps the addresses of the request. Requests made before
 * authentication (in-band registration) have no JID to route to, so their
 * replies go straight to the originating stream. tern_iq_save keeps what a
 * reply needs when the answer comes after a storage or worker job.
 */
#include <stdlib.h>
#include <string.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../xml/ns.h"

struct tern_iq_saved {
    tern_server_t *srv;
    tern_session_t *session; /* referenced; NULL if none */
    bool preauth;
    char *id, *from, *to;
    xml_stanza_t *request; /* for error replies that echo the request */
};

static void send_reply(tern_server_t *srv, tern_session_t *session, bool preauth,
                       xml_stanza_t *reply)
{
    if (preauth || !xml_node_attr(xml_stanza_root(reply), "to")) {
        if (session)
            c2s_send_stanza(session, reply);
        return;
    }
    tern_route(srv, reply);
}

static void fill_reply(xml_stanza_t *reply, const char *type, const char *id, const char *from,
                       const char *to)
{
    xml_node_t *r = xml_stanza_root(reply);
    xml_node_set_attr(r, "type", type);
    xml_node_set_attr(r, "id", id ? id : "");
    xml_node_set_attr(r, "from", to);
    xml_node_set_attr(r, "to", from);
}

void tern_iq_reply(tern_iq_t *iq, xml_stanza_t *reply)
{
    xml_node_t *req = xml_stanza_root(iq->stanza);
    xml_stanza_t *r = reply ? xml_stanza_ref(reply) : xml_stanza_new("iq", NS_CLIENT);
    fill_reply(r, "result", xml_node_attr(req, "id"), xml_node_attr(req, "from"),
               xml_node_attr(req, "to"));
    send_reply(iq->host->srv, iq->session, iq->from == NULL, r);
    xml_stanza_unref(r);
}

void tern_iq_error(tern_iq_t *iq, const char *type, const char *condition, const char *text)
{
    xml_stanza_t *err = stanza_error_reply(iq->stanza, type, condition, text);
    if (!err)
        return;
    send_reply(iq->host->srv, iq->session, iq->from == NULL, err);
    xml_stanza_unref(err);
}

tern_iq_saved_t *tern_iq_save(const tern_iq_t *iq)
{
    tern_iq_saved_t *sv = tern_xcalloc(1, sizeof(*sv));
    xml_node_t *req = xml_stanza_root(iq->stanza);
    const char *id = xml_node_attr(req, "id");
    const char *from = xml_node_attr(req, "from");
    const char *to = xml_node_attr(req, "to");
    sv->srv = iq->host->srv;
    sv->session = iq->session ? tern_session_ref(iq->session) : NULL;
    sv->preauth = iq->from == NULL;
    sv->id = tern_xstrdup(id ? id : "");
    sv->from = from ? tern_xstrdup(from) : NULL;
    sv->to = to ? tern_xstrdup(to) : NULL;
    sv->request = xml_stanza_ref(iq->stanza);
    return sv;
}

void tern_iq_saved_reply(tern_iq_saved_t *sv, xml_stanza_t *reply)
{
    xml_stanza_t *r = reply ? xml_stanza_ref(reply) : xml_stanza_new("iq", NS_CLIENT);
    fill_reply(r, "result", sv->id, sv->from, sv->to);
    send_reply(sv->srv, sv->session, sv->preauth, r);
    xml_stanza_unref(r);
}

void tern_iq_saved_error(tern_iq_saved_t *sv, const char *type, const char *condition,
                         const char *text)
{
    xml_stanza_t *err = stanza_error_reply(sv->request, type, condition, text);
    if (!err)
        return;
    send_reply(sv->srv, sv->session, sv->preauth, err);
    xml_stanza_unref(err);
}

tern_session_t *tern_iq_saved_session(const tern_iq_saved_t *sv)
{
    return sv->session;
}

void tern_iq_saved_free(tern_iq_saved_t *sv)
{
    if (!sv)
        return;
    if (sv->session)
        tern_session_unref(sv->session);
    xml_stanza_unref(sv->request);
    free(sv->id);
    free(sv->from);
    free(sv->to);
    free(sv);
}
