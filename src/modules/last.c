/* SPDX-License-Identifier: MIT
 * last.c - XEP-0012 last activity: the server's uptime (§5) and, for an
 * account's bare JID (§3), how long ago its last resource logged out and
 * the status text of its last unavailable presence.
 *
 * When an account's last session closes, the time and that status go to
 * the key/value store ("last", key ""), as "<unix seconds>\n<status>", so
 * the answer survives restarts. The status is noted per session from the
 * client's own unavailable presence (an OUTBOUND hook that only watches):
 * by the time the session closes the session manager has already dropped
 * it.
 *
 * Only the user and those the user lets see its presence (a roster item
 * with subscription from or both) may ask (§3 and §8: last activity tells
 * availability).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "../core/common.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "roster.h"
#include "tern/module.h"

#define LAST_STORE "last"
#define LAST_KEY   ""

extern const tern_module_def_t mod_last;

typedef struct {
    tern_host_t *host;
    uint64_t started_ns; /* uv_hrtime() when this instance started */
    int slot;            /* per session: malloc'd status of its last unavailable */
} last_t;

typedef struct {
    tern_iq_saved_t *iq;
    tern_host_t *host;
    char *domain;
    char *user;      /* the account asked about */
    char *requester; /* bare JID of the asker; NULL when it asks about itself */
    bool forbidden;
    char *data; /* the stored record (malloc'd), NULL if never logged out */
    size_t len;
} query_job_t;

typedef struct {
    char *domain;
    char *user;
    char *record;
    size_t len;
} store_job_t;

/* ---- server uptime ---- */

static tern_handled_t on_server_last(void *st, tern_iq_t *iq)
{
    last_t *l = st;
    if (iq->is_set)
        return TERN_PASS; /* last activity is read-only: service-unavailable */
    /* The process's uptime, not this worker's: every worker answers alike. */
    const last_t *primary = tern_module_primary_state(l->host, &mod_last);
    uint64_t started = primary ? primary->started_ns : l->started_ns;
    uint64_t now = uv_hrtime();
    uint64_t secs = now > started ? (now - started) / 1000000000u : 0;
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, secs);
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_LAST);
    xml_node_set_attr(q, "seconds", buf);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

/* ---- an account's last activity ---- */

static void query_free(query_job_t *j)
{
    tern_iq_saved_free(j->iq);
    free(j->domain);
    free(j->user);
    free(j->requester);
    free(j->data);
    free(j);
}

static int query_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    query_job_t *j = arg;
    if (j->requester) {
        int bits = roster_storage_subscription(drv, db, j->domain, j->user, j->requester);
        if (bits < 0)
            return bits;
        if (!(bits & ROSTER_SUB_FROM)) {
            j->forbidden = true;
            return 0;
        }
    }
    int rc = drv->kv_get(db, j->domain, j->user, LAST_STORE, LAST_KEY, &j->data, &j->len);
    return rc == TERN_ENOENT ? 0 : rc;
}

static bool has_available_resource(tern_host_t *h, const char *user, const char *domain)
{
    size_t n = strlen(user) + strlen(domain) + 2;
    char *bare = tern_xmalloc(n);
    snprintf(bare, n, "%s@%s", user, domain);
    bool found = false;
    for (tern_session_t *s = tern_user_sessions(h, bare); s && !found;
         s = tern_session_next_resource(s))
        found = tern_session_available(s);
    free(bare);
    return found;
}

static void query_done(void *arg, int result)
{
    query_job_t *j = arg;
    if (result != 0) {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
        query_free(j);
        return;
    }
    if (j->forbidden) {
        /* §3: forbidden to whoever may not see the user's presence. */
        tern_iq_saved_error(j->iq, "auth", "forbidden", NULL);
        query_free(j);
        return;
    }
    uint64_t secs = 0;
    const char *status = NULL;
    /* Availability is loop state: checked here, after the job, on the
     * worker that owns the account. */
    if (!has_available_resource(j->host, j->user, j->domain)) {
        if (!j->data) {
            /* Never logged out (since records were kept): XEP-0012 names
             * no condition for it; there is no such item to report. */
            tern_iq_saved_error(j->iq, "cancel", "item-not-found", NULL);
            query_free(j);
            return;
        }
        char *nl = strchr(j->data, '\n');
        char *end = NULL;
        long long when = strtoll(j->data, &end, 10);
        if (!nl || end != nl) {
            log_error("last", "stored last activity of %s@%s is unreadable", j->user, j->domain);
            tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
            query_free(j);
            return;
        }
        long long now = (long long)time(NULL);
        secs = now > when ? (uint64_t)(now - when) : 0;
        status = nl + 1;
    }
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, secs);
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_LAST);
    xml_node_set_attr(q, "seconds", buf);
    if (status && *status)
        xml_node_add_text(q, status, strlen(status));
    tern_iq_saved_reply(j->iq, r);
    xml_stanza_unref(r);
    query_free(j);
}

static tern_handled_t on_account_last(void *st, tern_iq_t *iq)
{
    last_t *l = st;
    if (iq->is_set)
        return TERN_PASS;
    if (!iq->from)
        return TERN_PASS;
    bool own = !iq->to || jid_bare_equal(iq->to, iq->from);
    const jid_t *target = own ? iq->from : iq->to;
    if (!target->local)
        return TERN_PASS;
    query_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->host = l->host;
    j->domain = tern_xstrdup(tern_host_domain(l->host));
    j->user = tern_xstrdup(target->local);
    j->requester = own ? NULL : jid_bare_string(iq->from);
    j->iq = tern_iq_save(iq);
    if (tern_storage_submit(tern_host_server(l->host), query_run, query_done, j) != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        query_free(j);
    }
    return TERN_HANDLED;
}

/* ---- recording the last logout ---- */

static void record_logout(last_t *l, const jid_t *jid, const char *status);
static bool others_available(last_t *l, const jid_t *jid, const tern_session_t *s);

/* Watches, never takes: a client's broadcast unavailable presence carries
 * the status that §3 reports after logout. Runs above every module that
 * may take presence. */
static tern_handled_t on_outbound(void *st, tern_stanza_ev_t *ev)
{
    last_t *l = st;
    xml_node_t *root = xml_stanza_root(ev->stanza);
    if (ev->to || !ev->session || strcmp(root->name, "presence") != 0)
        return TERN_PASS;
    const char *type = xml_node_attr(root, "type");
    if (!type || strcmp(type, "unavailable") != 0)
        return TERN_PASS;
    xml_node_t *status = xml_node_child(root, "status", NS_CLIENT);
    const char *text = status ? xml_node_text(status) : "";
    free(tern_session_get(ev->session, l->slot));
    tern_session_set(ev->session, l->slot, tern_xstrdup(text));
    /* The account's last available resource going unavailable is a
     * logout even if its stream stays open (clients "go offline" that
     * way); closing the stream later only updates the time. */
    const jid_t *jid = tern_session_jid(ev->session);
    if (tern_session_available(ev->session) && jid && jid->local &&
        !others_available(l, jid, ev->session))
        record_logout(l, jid, text);
    return TERN_PASS;
}

static void store_free(store_job_t *j)
{
    free(j->domain);
    free(j->user);
    free(j->record);
    free(j);
}

static int store_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    store_job_t *j = arg;
    /* An account removed in-band closes its stream after the removal job
     * ran (jobs of a worker run in order): a record written now would
     * outlive the account and greet a new one of the same name. */
    int rc = storage_user_exists(drv, db, j->domain, j->user);
    if (rc == TERN_ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    return drv->kv_put(db, j->domain, j->user, LAST_STORE, LAST_KEY, j->record, j->len);
}

static void store_done(void *arg, int result)
{
    store_job_t *j = arg;
    if (result != 0)
        log_warn("last", "could not record the logout of %s@%s (%d)", j->user, j->domain, result);
    store_free(j);
}

/* Writes "<now>\n<status>" as the account's last logout. */
static void record_logout(last_t *l, const jid_t *jid, const char *status)
{
    store_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->domain = tern_xstrdup(jid->domain);
    j->user = tern_xstrdup(jid->local);
    const char *text = status ? status : "";
    size_t n = strlen(text) + 32;
    j->record = tern_xmalloc(n);
    int w = snprintf(j->record, n, "%lld\n%s", (long long)time(NULL), text);
    j->len = w > 0 ? (size_t)w : 0;
    int rc = tern_storage_submit(tern_host_server(l->host), store_run, store_done, j);
    if (rc != 0) {
        log_warn("last", "could not record the logout of %s@%s (%d)", j->user, j->domain, rc);
        store_free(j);
    }
}

/* Whether an account has an available resource other than s. */
static bool others_available(last_t *l, const jid_t *jid, const tern_session_t *s)
{
    char *bare = jid_bare_string(jid);
    bool any = false;
    for (tern_session_t *r = tern_user_sessions(l->host, bare); r && !any;
         r = tern_session_next_resource(r))
        any = r != s && tern_session_available(r);
    free(bare);
    return any;
}

static void on_closed(void *st, tern_session_t *s)
{
    last_t *l = st;
    char *status = tern_session_get(s, l->slot); /* ours now */
    tern_session_set(s, l->slot, NULL);
    const jid_t *jid = tern_session_jid(s);
    /* Other resources still online: the account has not logged out. The
     * session manager has already unlinked s, so any session left is
     * another one. */
    if (jid && jid->local) {
        char *bare = jid_bare_string(jid);
        bool others = tern_user_sessions(l->host, bare) != NULL;
        free(bare);
        if (!others)
            record_logout(l, jid, status);
    }
    free(status);
}

static void *last_init(tern_module_t *m)
{
    last_t *l = tern_xcalloc(1, sizeof(*l));
    l->host = tern_module_host(m);
    l->started_ns = uv_hrtime();
    l->slot = tern_module_session_slot(m);
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_LAST, "query", on_server_last);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_LAST, "query", on_account_last);
    /* Above blocking (100): a pure observer must see every unavailable. */
    tern_register_hook(m, TERN_HOOK_OUTBOUND, 200, on_outbound);
    tern_register_session_closed(m, on_closed);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_LAST);
    return l;
}

static void last_fini(void *st)
{
    free(st);
}

const tern_module_def_t mod_last = {"last", TERN_MODULE_API_VERSION, last_init, last_fini};
