/* SPDX-License-Identifier: MIT
 * vcard.c - XEP-0054 vcard-temp: a user stores one vCard on the server and
 * anyone may read it at the user's bare JID.
 *
 * The vCard is kept as the serialised <vCard/> element in the key/value
 * store ("vcard", key ""), exactly as the client sent it, so nothing the
 * client put in it is lost by a schema of ours. A set is answered only
 * after the storage thread has written it: a client that saw the result
 * finds its vCard after a crash.
 *
 * XEP-0153 (vCard-based avatars), server side as XEP-0398 describes and
 * Prosody's mod_vcard_legacy does it: every available presence a local
 * client sends (broadcast or directed, rooms included) that has no
 * <x xmlns='vcard-temp:x:update'/> of its own gets one, with the SHA-1 (hex)
 * of the decoded PHOTO/BINVAL of the sender's vCard, or an empty <photo/>
 * when there is none. A client's own element is left as it is (an empty
 * <x/> means "not ready" in XEP-0153's business rules). The hash is kept per account on the worker
 * that owns it (where its sessions, its OUTBOUND hooks and its own vCard
 * iqs run, so no lock): read once when a session binds, replaced when the
 * user sets a vCard, dropped when its last session closes. Until the read
 * is back, presence goes out without the element, which XEP-0153 allows
 * (a server that cannot tell includes nothing). A set does not resend
 * presence with the new hash (Prosody does not either): clients that set
 * a photo send presence next, and that one carries it.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/hashmap.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "pep.h"
#include "tern/module.h"
#include "vcard.h"

#define VCARD_STORE "vcard"
#define VCARD_KEY   ""

#define NS_VCARD_UPDATE "vcard-temp:x:update"
#define SHA1_HEX_LEN    40

/* What an account's presence says about its avatar. */
typedef struct {
    char *user;     /* local part; the key in vcard_t.accts */
    bool known;     /* photo/hash are valid */
    bool loading;   /* a read of the stored vCard is under way */
    bool has_photo; /* else <photo/> is empty */
    char hash[SHA1_HEX_LEN + 1];
} avatar_t;

typedef struct {
    tern_host_t *host;
    hashmap_t accts; /* local part -> avatar_t, accounts with a session here */
} vcard_t;

typedef struct {
    tern_iq_saved_t *iq; /* NULL: a read for the avatar cache only */
    vcard_t *v;
    char *host;
    char *user;
    bool set;
    bool own;
    bool has_photo; /* set: the new vCard's photo, hash below */
    char hash[SHA1_HEX_LEN + 1];
    char *data; /* set: what to store; get: what was found (malloc'd, owned) */
    size_t len;
    /* set with a photo: what XEP-0398 republishes as a PEP avatar */
    char *photo_type, *photo_b64;
    size_t photo_bytes;
} vcard_job_t;

/* ---- the photo hash ---- */

static bool is_b64_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* SHA-1 (lowercase hex) of the decoded PHOTO/BINVAL of a <vCard/>. False
 * when there is no photo: no PHOTO, no (or an empty) BINVAL, or one that
 * is not base64 (an EXTVAL is a URL, not image data to hash). Whitespace
 * anywhere in BINVAL is ignored (vCards wrap base64 at 75 or 76 columns)
 * and missing '=' padding is tolerated. */
static bool photo_hash(const xml_node_t *vcard, char out[SHA1_HEX_LEN + 1], size_t *bytes)
{
    out[0] = 0;
    const xml_node_t *photo = xml_node_child(vcard, "PHOTO", NS_VCARD);
    const xml_node_t *binval = photo ? xml_node_child(photo, "BINVAL", NS_VCARD) : NULL;
    if (!binval)
        return false;
    const char *text = xml_node_text(binval);
    size_t n = strlen(text);
    char *b64 = tern_xmalloc(n + 4);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_b64_space(text[i]))
            b64[len++] = text[i];
    /* Padding is recomputed: what was sent is dropped, then the last
     * quantum completed (a lone sixth bit group is not base64). */
    while (len > 0 && b64[len - 1] == '=')
        len--;
    size_t pad = 0;
    if (len % 4 != 1) {
        while (len % 4 != 0) {
            b64[len++] = '=';
            pad++;
        }
    }
    bool ok = false;
    if (len > 0 && len % 4 == 0 && len <= (size_t)INT_MAX) {
        bool clean = true;
        for (size_t i = 0; i < len - pad && clean; i++)
            clean = b64[i] != '=';
        unsigned char *bin = tern_xmalloc(len / 4 * 3 + 1);
        int got = clean ? EVP_DecodeBlock(bin, (const unsigned char *)b64, (int)len) : -1;
        if (got >= 0 && (size_t)got >= pad) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int mdlen = 0;
            if (EVP_Digest(bin, (size_t)got - pad, md, &mdlen, EVP_sha1(), NULL) == 1 &&
                mdlen * 2 == SHA1_HEX_LEN) {
                static const char hex[] = "0123456789abcdef";
                for (unsigned int i = 0; i < mdlen; i++) {
                    out[2 * i] = hex[md[i] >> 4];
                    out[2 * i + 1] = hex[md[i] & 15];
                }
                out[SHA1_HEX_LEN] = 0;
                if (bytes)
                    *bytes = (size_t)got - pad;
                ok = true;
            }
        }
        free(bin);
    }
    free(b64);
    return ok;
}

/* The PHOTO's TYPE (image/png when absent) and its BINVAL without
 * whitespace, as XEP-0084 wants them (malloc'd, caller frees). */
static void photo_fields(const xml_node_t *vcard, char **type, char **b64)
{
    const xml_node_t *photo = xml_node_child(vcard, "PHOTO", NS_VCARD);
    const xml_node_t *t = photo ? xml_node_child(photo, "TYPE", NS_VCARD) : NULL;
    const xml_node_t *binval = photo ? xml_node_child(photo, "BINVAL", NS_VCARD) : NULL;
    const char *tv = t ? xml_node_text(t) : "";
    *type = tern_xstrdup(*tv ? tv : "image/png");
    const char *text = binval ? xml_node_text(binval) : "";
    size_t n = strlen(text), len = 0;
    *b64 = tern_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (!is_b64_space(text[i]))
            (*b64)[len++] = text[i];
    (*b64)[len] = 0;
}

/* ---- the per-account cache ---- */

static void avatar_set(avatar_t *a, bool has_photo, const char *hash)
{
    a->known = true;
    a->has_photo = has_photo;
    snprintf(a->hash, sizeof(a->hash), "%s", has_photo ? hash : "");
}

static void avatar_free(avatar_t *a)
{
    free(a->user);
    free(a);
}

static void job_free(vcard_job_t *j)
{
    if (j->iq)
        tern_iq_saved_free(j->iq);
    free(j->host);
    free(j->user);
    free(j->data);
    free(j->photo_type);
    free(j->photo_b64);
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

/* A read for the cache (at bind, or again after a failed one). */
static void load_done(void *arg, int result)
{
    vcard_job_t *j = arg;
    avatar_t *a = hashmap_get(&j->v->accts, j->user);
    if (!a) {
        job_free(j); /* every session gone meanwhile */
        return;
    }
    a->loading = false;
    if (result == TERN_ENOENT) {
        avatar_set(a, false, NULL);
    } else if (result == 0) {
        /* Storage jobs of a worker run in order, so this is the vCard as of
         * the read; a set sent after it completes after it and wins. */
        xml_stanza_t *card = xml_parse_element(j->data, j->len, NS_CLIENT, j->len);
        if (card && xml_node_is(xml_stanza_root(card), "vCard", NS_VCARD)) {
            char hash[SHA1_HEX_LEN + 1];
            bool has = photo_hash(xml_stanza_root(card), hash, NULL);
            avatar_set(a, has, hash);
        } else {
            log_error("vcard", "stored vCard of %s@%s is unreadable", j->user, j->host);
            avatar_set(a, false, NULL);
        }
        if (card)
            xml_stanza_unref(card);
    } else {
        /* Left unknown: the next presence asks again. */
        log_warn("vcard", "could not read the vCard of %s@%s (%d)", j->user, j->host, result);
    }
    job_free(j);
}

static void start_load(vcard_t *v, avatar_t *a)
{
    vcard_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->v = v;
    j->host = tern_xstrdup(tern_host_domain(v->host));
    j->user = tern_xstrdup(a->user);
    if (tern_storage_submit(tern_host_server(v->host), job_run, load_done, j) != 0) {
        job_free(j);
        return;
    }
    a->loading = true;
}

static avatar_t *avatar_get(vcard_t *v, const char *user)
{
    avatar_t *a = hashmap_get(&v->accts, user);
    if (!a) {
        a = tern_xcalloc(1, sizeof(*a));
        a->user = tern_xstrdup(user);
        hashmap_put(&v->accts, a->user, a);
    }
    return a;
}

static void job_done(void *arg, int result)
{
    vcard_job_t *j = arg;
    if (j->set) {
        if (result == 0) {
            avatar_t *a = hashmap_get(&j->v->accts, j->user);
            if (a)
                avatar_set(a, j->has_photo, j->hash);
            tern_iq_saved_reply(j->iq, NULL);
            if (j->has_photo) {
                /* XEP-0398 §3.2: clients that only know XEP-0084 see it. */
                size_t bl = strlen(j->user) + 1 + strlen(j->host) + 1;
                char *bare = tern_xmalloc(bl);
                snprintf(bare, bl, "%s@%s", j->user, j->host);
                pep_publish_avatar(j->v->host, bare, j->photo_b64, j->photo_type, j->photo_bytes,
                                   j->hash);
                free(bare);
            }
        } else
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
    j->v = v;
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
        j->has_photo = photo_hash(iq->payload, j->hash, &j->photo_bytes);
        if (j->has_photo)
            photo_fields(iq->payload, &j->photo_type, &j->photo_b64);
    }
    j->iq = tern_iq_save(iq);
    if (tern_storage_submit(tern_host_server(v->host), job_run, job_done, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
    }
    return TERN_HANDLED;
}

/* ---- XEP-0398: a PEP avatar becomes the vCard's photo ---- */

typedef struct {
    vcard_t *v;
    char *host, *user, *type, *b64, *expect;
    size_t max;
    bool has_photo;
    char hash[SHA1_HEX_LEN + 1];
} photo_job_t;

static void photo_job_free(photo_job_t *j)
{
    free(j->host);
    free(j->user);
    free(j->type);
    free(j->b64);
    free(j->expect);
    free(j);
}

/* Storage thread: read, change the PHOTO, write back; the account's vCard
 * writes are all submitted from its worker, so they apply in order. */
static int photo_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    photo_job_t *j = arg;
    char *old = NULL;
    size_t old_len = 0;
    int rc = drv->kv_get(db, j->host, j->user, VCARD_STORE, VCARD_KEY, &old, &old_len);
    if (rc != 0 && rc != TERN_ENOENT)
        return rc;
    xml_stanza_t *card = old ? xml_parse_element(old, old_len, NS_CLIENT, old_len) : NULL;
    free(old);
    if (card && !xml_node_is(xml_stanza_root(card), "vCard", NS_VCARD)) {
        xml_stanza_unref(card);
        return TERN_EIO;
    }
    xml_stanza_t *out = xml_stanza_new("vCard", NS_VCARD);
    xml_node_t *root = xml_stanza_root(out);
    for (xml_node_t *e = card ? xml_node_first_element(xml_stanza_root(card)) : NULL; e;
         e = xml_node_next(e, NULL, NULL))
        if (!xml_node_is(e, "PHOTO", NS_VCARD))
            xml_node_append_copy(root, e);
    if (card)
        xml_stanza_unref(card);
    if (j->b64) {
        xml_node_t *photo = xml_node_add_child(root, "PHOTO", NS_VCARD);
        xml_node_add_child_text(photo, "TYPE", NS_VCARD, j->type ? j->type : "image/png");
        xml_node_add_child_text(photo, "BINVAL", NS_VCARD, j->b64);
    }
    j->has_photo = photo_hash(root, j->hash, NULL);
    size_t len = 0;
    char *data = NULL;
    if (j->b64 && (!j->has_photo || (j->expect && strcmp(j->expect, j->hash) != 0)))
        rc = TERN_EINVAL; /* not the image the metadata names */
    else if (!(data = xml_node_to_string(root, NS_CLIENT, &len)))
        rc = TERN_ENOMEM;
    else if (len > j->max)
        rc = TERN_EINVAL;
    else
        rc = drv->kv_put(db, j->host, j->user, VCARD_STORE, VCARD_KEY, data, len);
    free(data);
    xml_stanza_unref(out);
    return rc;
}

static void photo_done(void *arg, int result)
{
    photo_job_t *j = arg;
    avatar_t *a = hashmap_get(&j->v->accts, j->user);
    if (result == 0 && a)
        avatar_set(a, j->has_photo, j->hash);
    else if (result != 0)
        log_info("vcard", "avatar of %s@%s not copied into the vCard (%d)", j->user, j->host,
                 result);
    photo_job_free(j);
}

int vcard_set_photo(tern_host_t *h, const char *user, const char *type, const char *b64,
                    const char *expect_sha1)
{
    vcard_t *v = tern_host_module_state(h, &mod_vcard);
    if (!v)
        return -1;
    photo_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->v = v;
    j->host = tern_xstrdup(tern_host_domain(h));
    j->user = tern_xstrdup(user);
    j->type = type ? tern_xstrdup(type) : NULL;
    j->b64 = b64 ? tern_xstrdup(b64) : NULL;
    j->expect = expect_sha1 ? tern_xstrdup(expect_sha1) : NULL;
    /* the avatar is already bounded by pubsub_max_payload; the vCard
     * around it by vcard_max_size */
    j->max = tern_host_config(h)->vcard_max_size + tern_host_config(h)->pubsub_max_payload;
    if (tern_storage_submit(tern_host_server(h), photo_run, photo_done, j) != 0) {
        photo_job_free(j);
        return -1;
    }
    return 0;
}

/* ---- XEP-0153 presence ---- */

static void on_bound(void *st, tern_session_t *s)
{
    vcard_t *v = st;
    const jid_t *jid = tern_session_jid(s);
    if (!jid || !jid->local)
        return;
    avatar_t *a = avatar_get(v, jid->local);
    if (!a->known && !a->loading)
        start_load(v, a);
}

static void on_closed(void *st, tern_session_t *s)
{
    vcard_t *v = st;
    const jid_t *jid = tern_session_jid(s);
    if (!jid || !jid->local)
        return;
    /* The session manager has already unlinked s: any session left is
     * another resource of the account, which still needs the hash. */
    char *bare = jid_bare_string(jid);
    bool others = tern_user_sessions(v->host, bare) != NULL;
    free(bare);
    if (others)
        return;
    avatar_t *a = hashmap_del(&v->accts, jid->local);
    if (a)
        avatar_free(a); /* a read under way finds no entry and is dropped */
}

static tern_handled_t on_outbound(void *st, tern_stanza_ev_t *ev)
{
    vcard_t *v = st;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (strcmp(root->name, "presence") != 0 || !ev->from || !ev->from->local)
        return TERN_PASS;
    /* Available presence only: not unavailable, subscriptions, probes or
     * errors. */
    if (xml_node_attr(root, "type"))
        return TERN_PASS;
    /* The client's own element (a hash, or an empty <x/> for "not ready")
     * is what it means to say. */
    if (xml_node_child(root, "x", NS_VCARD_UPDATE))
        return TERN_PASS;
    avatar_t *a = hashmap_get(&v->accts, ev->from->local);
    if (!a) {
        /* Normally made at bind; an entry only for a live session, which
         * on_closed will drop again. */
        if (!ev->session || !tern_session_is_open(ev->session))
            return TERN_PASS;
        a = avatar_get(v, ev->from->local);
    }
    if (!a->known) {
        if (!a->loading)
            start_load(v, a);
        return TERN_PASS; /* not known yet: nothing rather than a wrong hash */
    }
    xml_node_t *x = xml_node_add_child(root, "x", NS_VCARD_UPDATE);
    if (a->has_photo)
        xml_node_add_child_text(x, "photo", NS_VCARD_UPDATE, a->hash);
    else
        xml_node_add_child(x, "photo", NS_VCARD_UPDATE);
    return TERN_PASS;
}

static void *vcard_init(tern_module_t *m)
{
    vcard_t *v = tern_xcalloc(1, sizeof(*v));
    v->host = tern_module_host(m);
    hashmap_init(&v->accts);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_VCARD, "vCard", on_vcard);
    /* Above roster (0), which broadcasts the presence, and below blocking
     * (100), which may drop it. */
    tern_register_hook(m, TERN_HOOK_OUTBOUND, 10, on_outbound);
    tern_register_session_bound(m, on_bound);
    tern_register_session_closed(m, on_closed);
    /* §4: clients look for the feature on the server's disco#info. */
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_VCARD);
    return v;
}

static void vcard_fini(void *st)
{
    vcard_t *v = st;
    size_t it = 0;
    void *a;
    while (hashmap_next(&v->accts, &it, NULL, &a))
        avatar_free(a);
    hashmap_free(&v->accts);
    free(v);
}

const tern_module_def_t mod_vcard = {"vcard", TERN_MODULE_API_VERSION, vcard_init, vcard_fini};
