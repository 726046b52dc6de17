/* SPDX-License-Identifier: MIT
 * iq.c - answering iqs from modules (the reply half of module.h).
 *
 * A reply swaps the addresses of the request. Requests made before
 * authentication (in-band registration) have no JID to route to, so their
 * replies go straight to the originating stream. tern_iq_save keeps what a
 * reply needs when the answer comes after a storage or worker job.
 *
 * The other half: iqs the server itself sends (tern_iq_request). The id
 * names the worker that waits ("t<worker>-<seq>-<random>"), so an answer
 * handled on another worker (the answering account's) is passed there.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../shard.h"
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

/* ---- iqs the server sends ---- */

typedef struct {
    char *id;
    char *to; /* prepared address the request went to: only it may answer */
    uint64_t deadline_ms;
    tern_iq_answer_cb cb;
    void *ud;
} iq_wait_t;

static void wait_free(iq_wait_t *w)
{
    free(w->id);
    free(w->to);
    free(w);
}

int tern_iq_request(tern_host_t *h, xml_stanza_t *iq, unsigned timeout_s, tern_iq_answer_cb cb,
                    void *ud)
{
    tern_server_t *srv = h->srv;
    xml_node_t *root = xml_stanza_root(iq);
    const char *type = xml_node_attr(root, "type");
    const char *to = xml_node_attr(root, "to");
    jid_t tj;
    if (!cb || !type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0) || !to ||
        jid_parse(to, &tj) != 0)
        return TERN_EINVAL;
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        jid_clear(&tj);
        return TERN_EINVAL;
    }
    char id[64];
    snprintf(id, sizeof(id), "t%u-%llu-%02x%02x%02x%02x%02x%02x", srv->shard_index,
             (unsigned long long)++srv->iq_seq, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    iq_wait_t *w = tern_xcalloc(1, sizeof(*w));
    w->id = tern_xstrdup(id);
    w->to = jid_to_string(&tj);
    jid_clear(&tj);
    w->deadline_ms = uv_now(srv->loop) + (uint64_t)timeout_s * 1000;
    w->cb = cb;
    w->ud = ud;
    hashmap_put(&srv->iq_waiting, w->id, w);
    xml_node_set_attr(root, "id", id);
    xml_node_set_attr(root, "from", h->domain);
    tern_route(srv, iq);
    return 0;
}

static void answer_here(tern_server_t *srv, xml_stanza_t *st, const char *from)
{
    const char *id = xml_node_attr(xml_stanza_root(st), "id");
    iq_wait_t *w = id ? hashmap_get(&srv->iq_waiting, id) : NULL;
    if (!w || strcmp(w->to, from) != 0)
        return; /* late, unknown, or from someone we did not ask */
    hashmap_del(&srv->iq_waiting, id);
    w->cb(w->ud, st);
    wait_free(w);
}

typedef struct {
    xml_stanza_t *st;
    char *from;
} iq_hop_t;

static void answer_posted(tern_server_t *dst, void *arg, int fd)
{
    iq_hop_t *hop = arg;
    (void)fd;
    if (dst)
        answer_here(dst, hop->st, hop->from);
    xml_stanza_unref(hop->st);
    free(hop->from);
    free(hop);
}

void router_iq_answer(tern_server_t *srv, xml_stanza_t *st, const jid_t *from)
{
    const char *id = xml_node_attr(xml_stanza_root(st), "id");
    char *end = NULL;
    if (!id || id[0] != 't')
        return;
    unsigned long worker = strtoul(id + 1, &end, 10);
    if (end == id + 1 || *end != '-' || worker >= shards_count(srv))
        return;
    char *f = jid_to_string(from);
    if (worker == srv->shard_index) {
        answer_here(srv, st, f);
        free(f);
        return;
    }
    iq_hop_t *hop = tern_xcalloc(1, sizeof(*hop));
    hop->st = xml_stanza_ref(st);
    hop->from = f;
    if (!shard_post_call(srv, (unsigned)worker, answer_posted, hop, -1))
        answer_posted(NULL, hop, -1);
}

void router_iq_expire(tern_server_t *srv, uint64_t now_ms, bool all)
{
    if (hashmap_count(&srv->iq_waiting) == 0)
        return;
    /* collected first: a callback may send a new request */
    size_t n = 0, cap = 8;
    iq_wait_t **due = tern_xmalloc(cap * sizeof(*due));
    const char *k;
    void *v;
    for (size_t it = 0; hashmap_next(&srv->iq_waiting, &it, &k, &v);) {
        iq_wait_t *w = v;
        if (!all && w->deadline_ms > now_ms)
            continue;
        if (n == cap)
            due = tern_xrealloc(due, (cap *= 2) * sizeof(*due));
        due[n++] = w;
    }
    for (size_t i = 0; i < n; i++) {
        hashmap_del(&srv->iq_waiting, due[i]->id);
        due[i]->cb(due[i]->ud, NULL);
        wait_free(due[i]);
    }
    free(due);
}
