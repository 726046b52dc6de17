/* SPDX-License-Identifier: MIT
 * auth.c - SASL negotiation on client streams (RFC 6120 §6).
 *
 * The mechanisms themselves are sans-I/O (sasl/scram.c); this file moves
 * them through the stream: base64, <challenge/>/<response/>, credential
 * lookups on the storage thread, PLAIN's key derivation on a worker
 * thread, the per-stream retry limit and the per-address and per-account
 * throttles. While a step waits on another thread the stream is paused, so
 * anything the client sends meanwhile is held, not reordered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../core/log.h"
#include "../shard.h"
#include "../xml/ns.h"
#include "session.h"

typedef struct {
    tern_session_t *s;
    char *host;
    char *user;
    char *password; /* PLAIN only; wiped before free */
    scram_creds_t creds;
    int result;
} auth_job_t;

static void job_free(auth_job_t *j)
{
    if (j->password) {
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
    }
    explicit_bzero(&j->creds, sizeof(j->creds));
    free(j->host);
    free(j->user);
    tern_session_unref(j->s);
    free(j);
}

static void send_sasl_el(tern_session_t *s, const char *name, const char *data, size_t len)
{
    char *b64 = NULL;
    size_t blen = 0;
    if (data && len) {
        b64 = tern_base64_encode((const unsigned char *)data, len, &blen);
    }
    size_t need = strlen(name) * 2 + blen + 80;
    char *buf = tern_xmalloc(need);
    int n;
    if (b64)
        n = snprintf(buf, need, "<%s xmlns='" NS_SASL "'>%s</%s>", name, b64, name);
    else if (data)
        n = snprintf(buf, need, "<%s xmlns='" NS_SASL "'>=</%s>", name, name);
    else
        n = snprintf(buf, need, "<%s xmlns='" NS_SASL "'/>", name);
    c2s_send_raw(s, buf, (size_t)n);
    free(buf);
    free(b64);
}

static void reset_exchange(tern_session_t *s)
{
    if (s->scram) {
        scram_server_free(s->scram);
        s->scram = NULL;
    }
    free(s->sasl_mech);
    s->sasl_mech = NULL;
}

static char *account_key(const tern_session_t *s, const char *user)
{
    size_t n = strlen(user) + strlen(s->host->domain) + 2;
    char *k = tern_xmalloc(n);
    snprintf(k, n, "%s@%s", user, s->host->domain);
    return k;
}

/* Sends <failure/>. counts: whether this was a failed credential check
 * (which counts against the retry limit and the throttles). */
static void sasl_failure(tern_session_t *s, sasl_error_t err, bool counts)
{
    tern_server_t *srv = s->srv;
    const config_t *cfg = srv->cfg;
    reset_exchange(s);
    char buf[200];
    int n = snprintf(buf, sizeof(buf), "<failure xmlns='" NS_SASL "'><%s/></failure>",
                     sasl_error_name(err));
    c2s_send_raw(s, buf, (size_t)n);
    if (!counts)
        return;
    log_info(s->tag, "authentication failed for %s@%s from %s: %s",
             s->auth_user ? s->auth_user : "?", s->host->domain, s->ip, sasl_error_name(err));
    tern_server_t *totals = shard_server(srv, 0);
    throttle_hit(&totals->auth_fail_ip, s->ip, cfg->auth_window, uv_now(srv->loop));
    if (s->auth_user) {
        char *k = account_key(s, s->auth_user);
        throttle_hit(&totals->auth_fail_account, k, cfg->auth_window, uv_now(srv->loop));
        free(k);
    }
    if (++s->auth_failures >= cfg->auth_max_attempts)
        c2s_close(s, "policy-violation", "too many failed authentication attempts");
}

static void sasl_success(tern_session_t *s, const char *final, size_t len)
{
    send_sasl_el(s, "success", final, len);
    log_info(s->tag, "authenticated as %s@%s (%s)", s->auth_user, s->host->domain, s->sasl_mech);
    reset_exchange(s);
    s->authenticated = true;
    c2s_restart_stream(s);
    c2s_plan_migration(s);
}

static bool account_throttled(tern_session_t *s, const char *user)
{
    tern_server_t *srv = s->srv;
    char *k = account_key(s, user);
    bool t =
        throttle_exceeded(&shard_server(srv, 0)->auth_fail_account, k, srv->cfg->auth_account_limit,
                          srv->cfg->auth_window, uv_now(srv->loop));
    free(k);
    return t;
}

static int job_get_creds(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    auth_job_t *j = arg;
    return drv->user_get(db, j->host, j->user, &j->creds);
}

/* An authorization identity other than the account itself is refused:
 * nobody may act for someone else yet. */
static bool authzid_acceptable(const tern_session_t *s, const char *user, const char *authzid)
{
    if (!authzid || !*authzid)
        return true;
    jid_t az = {0};
    bool ok = jid_parse(authzid, &az) == 0 && az.local && strcmp(az.local, user) == 0 &&
              strcmp(az.domain, s->host->domain) == 0 && !az.resource;
    jid_clear(&az);
    return ok;
}

/* What every mechanism does once it knows the username: authzid and
 * throttle checks, then the account lookup on the storage thread, with the
 * stream paused until done continues the exchange. password (PLAIN only)
 * is copied into the job. */
static void lookup_account(tern_session_t *s, const char *user, const char *authzid,
                           const char *password, storage_done_cb done)
{
    if (!authzid_acceptable(s, user, authzid)) {
        sasl_failure(s, SASL_ERR_INVALID_AUTHZID, false);
        return;
    }
    if (account_throttled(s, user)) {
        sasl_failure(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, false);
        return;
    }
    auth_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->s = tern_session_ref(s);
    j->host = tern_xstrdup(s->host->domain);
    j->user = tern_xstrdup(user);
    j->password = password ? tern_xstrdup(password) : NULL;
    s->auth_busy = true;
    c2s_session_pause(s);
    if (storage_submit(s->srv->storage, job_get_creds, done, j) != 0) {
        s->auth_busy = false;
        job_free(j);
        sasl_failure(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, false);
        c2s_session_resume(s);
    }
}

/* ---- SCRAM ---- */

static void scram_creds_done(void *arg, int result)
{
    auth_job_t *j = arg;
    tern_session_t *s = j->s;
    s->auth_busy = false;
    if (s->state != C2S_OPEN || !s->scram) {
        job_free(j);
        return;
    }
    if (result != 0 && result != TERN_ENOENT) {
        sasl_failure(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, false);
    } else {
        char *out = NULL;
        size_t outlen = 0;
        sasl_error_t e =
            scram_server_first(s->scram, result == 0 ? &j->creds : NULL, &out, &outlen);
        if (e != SASL_ERR_NONE)
            sasl_failure(s, e, false);
        else
            send_sasl_el(s, "challenge", out, outlen);
        free(out);
    }
    job_free(j);
    c2s_session_resume(s);
}

static void start_scram(tern_session_t *s, const char *mech, const unsigned char *data, size_t len)
{
    const char *const *mechs, *const *cbs;
    c2s_offered_mechs(s, &mechs, &cbs);
    s->cb_exporter_len = s->cb_endpoint_len = 0;
    if (s->tls) {
        if (tls_conn_cb_exporter(s->tls, s->cb_exporter, sizeof(s->cb_exporter),
                                 &s->cb_exporter_len) != 0)
            s->cb_exporter_len = 0;
        if (tls_conn_cb_server_end_point(s->tls, s->cb_endpoint, sizeof(s->cb_endpoint),
                                         &s->cb_endpoint_len) != 0)
            s->cb_endpoint_len = 0;
    }
    scram_cb_t cb = {
        .exporter = s->cb_exporter_len ? s->cb_exporter : NULL,
        .exporter_len = s->cb_exporter_len,
        .endpoint = s->cb_endpoint_len ? s->cb_endpoint : NULL,
        .endpoint_len = s->cb_endpoint_len,
        .plus_advertised = cbs[0] != NULL,
        .advertised_mechs = mechs,
        .advertised_cb_types = cbs,
    };
    s->scram = scram_server_new(mech, &cb);
    if (!s->scram) {
        sasl_failure(s, SASL_ERR_INVALID_MECHANISM, false);
        return;
    }
    const char *username = NULL, *authzid = NULL;
    sasl_error_t e =
        scram_server_client_first(s->scram, (const char *)data, len, &username, &authzid);
    if (e != SASL_ERR_NONE) {
        sasl_failure(s, e, false);
        return;
    }
    char *user = NULL;
    if (jid_prep_local(username, &user) != 0) {
        free(s->auth_user);
        s->auth_user = NULL;
        /* An impossible username cannot be an account: run the exchange
         * to its end like for an unknown one, revealing nothing. */
        char *out = NULL;
        size_t outlen = 0;
        if (scram_server_first(s->scram, NULL, &out, &outlen) == SASL_ERR_NONE)
            send_sasl_el(s, "challenge", out, outlen);
        else
            sasl_failure(s, SASL_ERR_MALFORMED_REQUEST, false);
        free(out);
        return;
    }
    free(s->auth_user);
    s->auth_user = user;
    lookup_account(s, user, authzid, NULL, scram_creds_done);
}

static void scram_response(tern_session_t *s, const unsigned char *data, size_t len)
{
    char *out = NULL;
    size_t outlen = 0;
    sasl_error_t e = scram_server_client_final(s->scram, (const char *)data, len, &out, &outlen);
    if (e == SASL_ERR_NONE)
        sasl_success(s, out, outlen);
    else
        sasl_failure(s, e, e == SASL_ERR_NOT_AUTHORIZED);
    free(out);
}

/* ---- PLAIN ---- */

static int plain_verify(void *arg)
{
    auth_job_t *j = arg;
    return scram_verify_password(&j->creds, j->password) ? 0 : -1;
}

static void plain_verified(void *arg, int result)
{
    auth_job_t *j = arg;
    tern_session_t *s = j->s;
    s->auth_busy = false;
    if (s->state == C2S_OPEN) {
        if (result == 0)
            sasl_success(s, NULL, 0);
        else
            sasl_failure(s, SASL_ERR_NOT_AUTHORIZED, true);
        c2s_session_resume(s);
    }
    job_free(j);
}

static void plain_creds_done(void *arg, int result)
{
    auth_job_t *j = arg;
    tern_session_t *s = j->s;
    if (s->state != C2S_OPEN) {
        s->auth_busy = false;
        job_free(j);
        return;
    }
    if (result == 0 && tern_cpu_submit(s->srv, plain_verify, plain_verified, j) == 0)
        return;
    s->auth_busy = false;
    sasl_failure(s,
                 result == TERN_ENOENT ? SASL_ERR_NOT_AUTHORIZED : SASL_ERR_TEMPORARY_AUTH_FAILURE,
                 result == TERN_ENOENT);
    job_free(j);
    c2s_session_resume(s);
}

static void start_plain(tern_session_t *s, const unsigned char *data, size_t len)
{
    char *storage = NULL;
    const char *authzid, *authcid, *password;
    sasl_error_t e =
        sasl_plain_parse((const char *)data, len, &storage, &authzid, &authcid, &password);
    if (e != SASL_ERR_NONE) {
        sasl_failure(s, e, false);
        return;
    }
    char *user = NULL;
    if (jid_prep_local(authcid, &user) != 0) {
        explicit_bzero(storage, len);
        free(storage);
        sasl_failure(s, SASL_ERR_NOT_AUTHORIZED, true);
        return;
    }
    free(s->auth_user);
    s->auth_user = user;
    s->sasl_mech = tern_xstrdup("PLAIN");
    lookup_account(s, user, authzid, password, plain_creds_done);
    explicit_bzero(storage, len);
    free(storage);
}

/* ---- dispatch ---- */

static bool mech_offered(const tern_session_t *s, const char *mech)
{
    const char *const *mechs, *const *cbs;
    c2s_offered_mechs(s, &mechs, &cbs);
    for (size_t i = 0; mechs[i]; i++)
        if (strcmp(mechs[i], mech) == 0)
            return true;
    return false;
}

static int decode_payload(const char *text, unsigned char **out, size_t *len)
{
    size_t n = strlen(text);
    /* Whitespace inside the element is not part of the base64. */
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\n' || text[n - 1] == '\r' ||
                 text[n - 1] == '\t'))
        n--;
    while (n && (*text == ' ' || *text == '\n' || *text == '\r' || *text == '\t')) {
        text++;
        n--;
    }
    return tern_base64_decode(text, n, out, len);
}

void c2s_handle_sasl(tern_session_t *s, xml_node_t *el)
{
    tern_server_t *srv = s->srv;
    if (s->authenticated) {
        c2s_close(s, "policy-violation", "already authenticated");
        return;
    }
    if (s->auth_busy) {
        c2s_close(s, "policy-violation", "SASL step while the previous one is pending");
        return;
    }
    if (strcmp(el->name, "abort") == 0) {
        sasl_failure(s, SASL_ERR_ABORTED, false);
        return;
    }
    unsigned char *data = NULL;
    size_t len = 0;
    if (strcmp(el->name, "auth") == 0) {
        const char *mech = xml_node_attr(el, "mechanism");
        reset_exchange(s);
        if (!c2s_may_authenticate(s)) {
            sasl_failure(s, SASL_ERR_ENCRYPTION_REQUIRED, false);
            return;
        }
        if (!mech || !mech_offered(s, mech)) {
            sasl_failure(s, SASL_ERR_INVALID_MECHANISM, false);
            return;
        }
        if (throttle_exceeded(&shard_server(srv, 0)->auth_fail_ip, s->ip, srv->cfg->auth_ip_limit,
                              srv->cfg->auth_window, uv_now(srv->loop))) {
            sasl_failure(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, false);
            return;
        }
        const char *text = xml_node_text(el);
        if (decode_payload(text, &data, &len) != 0) {
            sasl_failure(s, SASL_ERR_INCORRECT_ENCODING, false);
            return;
        }
        if (strcmp(mech, "PLAIN") == 0) {
            start_plain(s, data, len);
        } else {
            s->sasl_mech = tern_xstrdup(mech);
            start_scram(s, mech, data, len);
        }
    } else if (strcmp(el->name, "response") == 0) {
        if (!s->scram) {
            sasl_failure(s, SASL_ERR_MALFORMED_REQUEST, false);
            return;
        }
        if (decode_payload(xml_node_text(el), &data, &len) != 0) {
            sasl_failure(s, SASL_ERR_INCORRECT_ENCODING, false);
            return;
        }
        scram_response(s, data, len);
    } else {
        sasl_failure(s, SASL_ERR_MALFORMED_REQUEST, false);
    }
    if (data) {
        explicit_bzero(data, len);
        free(data);
    }
}
