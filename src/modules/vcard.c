/* SPDX-License-Identifier: MIT
 * vcard.c - XEP-0054 vcard-temp: a user stores one vCard on the server and
 * anyone may read it at the user's bare JID.
 *
 * The vCard is kept as the serialised <vCard/> element in the key/value
 * store ("vcard", key ""), exactly as the client sent it, so nothing the
 * client put in it is lost by a schema of ours. A set is answered only
 * after the storage thread has written it: a client that saw the result
 * finds its vCard after a crash.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "tern/module.h"

#define VCARD_STORE "vcard"
#define VCARD_KEY   ""

typedef struct {
    tern_host_t *host;
} vcard_t;

typedef struct {
    tern_iq_saved_t *iq;
    char *host;
    char *user;
    bool set;
    bool own;
    char *data; /* set: what to store; get: what was found (malloc'd, owned) */
    size_t len;
} vcard_job_t;

static void job_free(vcard_job_t *j)
{
    tern_iq_saved_free(j->iq);
    free(j->host);
    free(j->user);
    free(j->data);
    free(j);
}

static int job_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    vcard_job_t *j = arg;
    if (j->set)
        return drv->kv_put(db, j->host, j->user, VCARD_STORE, VCARD_KEY, j->data, j->len);
    return drv->kv_get(db, j->host, j->user, VCARD_STORE, VCARD_KEY, &j->data, &j->len);
}

static void reply_vcard(vcard_job_t *j)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(r);
    if (j->data) {
        xml_stanza_t *card = xml_parse_element(j->data, j->len, NS_CLIENT, j->len);
        if (!card || !xml_node_is(xml_stanza_root(card), "vCard", NS_VCARD)) {
            log_error("vcard", "stored vCard of %s@%s is unreadable", j->user, j->host);
            if (card)
                xml_stanza_unref(card);
            xml_stanza_unref(r);
            tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
            return;
        }
        xml_node_append_copy(root, xml_stanza_root(card));
        xml_stanza_unref(card);
    } else {
        xml_node_add_child(root, "vCard", NS_VCARD);
    }
    tern_iq_saved_reply(j->iq, r);
    xml_stanza_unref(r);
}

static void job_done(void *arg, int result)
{
    vcard_job_t *j = arg;
    if (j->set) {
        if (result == 0)
            tern_iq_saved_reply(j->iq, NULL);
        else
            tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
    } else if (result == 0) {
        reply_vcard(j);
    } else if (result == TERN_ENOENT) {
        if (j->own) {
            /* §3.1 lets the server answer an empty <vCard/>; clients take
             * that better than an error when they just created an account. */
            reply_vcard(j);
        } else {
            /* §3.3: the same error as for a missing account (what the
             * router answers), so a vCard lookup cannot tell which
             * accounts exist. */
            tern_iq_saved_error(j->iq, "cancel", "service-unavailable", NULL);
        }
    } else {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
    }
    job_free(j);
}

static tern_handled_t on_vcard(void *st, tern_iq_t *iq)
{
    vcard_t *v = st;
    if (!iq->from || !iq->from->local)
        return TERN_PASS;
    bool own = !iq->to || jid_bare_equal(iq->to, iq->from);
    if (iq->is_set && !own) {
        /* §3.2: forbidden (or not-allowed); auth, as RFC 6120 §8.3.3.4
         * gives for forbidden. */
        tern_iq_error(iq, "auth", "forbidden", NULL);
        return TERN_HANDLED;
    }
    vcard_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->set = iq->is_set;
    j->own = own;
    j->host = tern_xstrdup(tern_host_domain(v->host));
    j->user = tern_xstrdup(own ? iq->from->local : iq->to->local);
    if (j->set) {
        j->data = xml_node_to_string(iq->payload, NS_CLIENT, &j->len);
        size_t max = tern_host_config(v->host)->vcard_max_size;
        if (!j->data) {
            tern_iq_error(iq, "wait", "internal-server-error", NULL);
            job_free(j);
            return TERN_HANDLED;
        }
        if (j->len > max) {
            /* not-acceptable/modify: the request breaks a rule of this
             * server that the client can satisfy by sending a smaller
             * vCard (e.g. a smaller photo); resource-constraint would tell
             * it to retry the same request later, which never succeeds. */
            char text[96];
            snprintf(text, sizeof(text), "the vCard is larger than %zu bytes", max);
            tern_iq_error(iq, "modify", "not-acceptable", text);
            job_free(j);
            return TERN_HANDLED;
        }
    }
    j->iq = tern_iq_save(iq);
    if (tern_storage_submit(tern_host_server(v->host), job_run, job_done, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
    }
    return TERN_HANDLED;
}

static void *vcard_init(tern_module_t *m)
{
    vcard_t *v = tern_xcalloc(1, sizeof(*v));
    v->host = tern_module_host(m);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_VCARD, "vCard", on_vcard);
    /* §4: clients look for the feature on the server's disco#info. */
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_VCARD);
    return v;
}

static void vcard_fini(void *st)
{
    free(st);
}

const tern_module_def_t mod_vcard = {"vcard", TERN_MODULE_API_VERSION, vcard_init, vcard_fini};
