/* SPDX-License-Identifier: MIT
 * register.c - XEP-0077 in-band registration: account creation before
 * authentication (when the host allows it), password change and account
 * removal after.
 *
 * Key derivation for the new password runs on a worker thread and the
 * account write on the storage thread, so a registration never stalls
 * other connections. Creations are limited per source address
 * (registration_limit per registration_window) in this module's own
 * per-host table.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../core/throttle.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "tern/module.h"

extern const tern_module_def_t mod_register;

typedef struct {
    tern_host_t *host;
    throttle_t by_ip; /* accounts created per source address */
} reg_t;

typedef enum { OP_CREATE, OP_PASSWD, OP_REMOVE } reg_op_t;

typedef struct {
    reg_t *reg;
    reg_op_t op;
    tern_iq_saved_t *iq;
    char *host;
    char *user;
    char *password;
    unsigned iterations;
    scram_creds_t creds;
    char ip[64];
} reg_job_t;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void job_free(reg_job_t *j)
{
    if (j->password) {
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
    }
    explicit_bzero(&j->creds, sizeof(j->creds));
    tern_iq_saved_free(j->iq);
    free(j->host);
    free(j->user);
    free(j);
}

/* Registrations count per process: every worker uses the table of its
 * host's instance on worker 0 (throttles lock themselves). */
static throttle_t *registrations(reg_t *r)
{
    reg_t *primary = tern_module_primary_state(r->host, &mod_register);
    return primary ? &primary->by_ip : &r->by_ip;
}

static bool ip_limited(reg_t *r, const char *ip, const config_host_t *hc)
{
    return throttle_exceeded(registrations(r), ip, hc->registration_limit, hc->registration_window,
                             now_ms());
}

static void ip_count(reg_t *r, const char *ip, const config_host_t *hc)
{
    throttle_prune(registrations(r), hc->registration_window, now_ms());
    throttle_hit(registrations(r), ip, hc->registration_window, now_ms());
}

static int job_store(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    reg_job_t *j = arg;
    switch (j->op) {
    case OP_CREATE:
        return drv->user_create(db, j->host, j->user, &j->creds);
    case OP_PASSWD:
        return drv->user_set_creds(db, j->host, j->user, &j->creds);
    case OP_REMOVE:
        return drv->user_delete(db, j->host, j->user);
    }
    return TERN_EINVAL;
}

static void stored(void *arg, int result)
{
    reg_job_t *j = arg;
    if (result == 0) {
        tern_iq_saved_reply(j->iq, NULL);
        if (j->op == OP_CREATE) {
            ip_count(j->reg, j->ip, tern_host_config(j->reg->host));
            log_info("register", "account %s@%s registered in-band from %s", j->user, j->host,
                     j->ip);
        } else if (j->op == OP_REMOVE) {
            log_info("register", "account %s@%s removed in-band", j->user, j->host);
            tern_session_t *s = tern_iq_saved_session(j->iq);
            /* XEP-0077 §3.2: the account is gone, so is its stream. */
            if (s)
                tern_session_close(s, "not-authorized");
        } else {
            log_info("register", "password of %s@%s changed in-band", j->user, j->host);
        }
    } else if (result == TERN_EEXIST) {
        tern_iq_saved_error(j->iq, "cancel", "conflict", NULL);
    } else if (result == TERN_ENOENT) {
        tern_iq_saved_error(j->iq, "cancel", "item-not-found", NULL);
    } else {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
    }
    job_free(j);
}

static int derive(void *arg)
{
    reg_job_t *j = arg;
    return scram_creds_from_password(j->password, j->iterations, &j->creds);
}

static void derived(void *arg, int result)
{
    reg_job_t *j = arg;
    explicit_bzero(j->password, strlen(j->password));
    if (result != 0 ||
        tern_storage_submit(tern_host_server(j->reg->host), job_store, stored, j) != 0) {
        tern_iq_saved_error(j->iq, "wait", "internal-server-error", NULL);
        job_free(j);
    }
}

static void start_job(reg_t *r, tern_iq_t *iq, reg_op_t op, const char *user, const char *password)
{
    reg_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->reg = r;
    j->op = op;
    j->iq = tern_iq_save(iq);
    j->host = tern_xstrdup(tern_host_domain(r->host));
    j->user = tern_xstrdup(user);
    j->iterations = tern_host_server_config(r->host)->sasl_iterations;
    if (iq->session)
        snprintf(j->ip, sizeof(j->ip), "%s", tern_session_ip(iq->session));
    int rc;
    if (op == OP_REMOVE) {
        rc = tern_storage_submit(tern_host_server(r->host), job_store, stored, j);
    } else {
        j->password = tern_xstrdup(password);
        rc = tern_cpu_submit(tern_host_server(r->host), derive, derived, j);
    }
    if (rc != 0) {
        tern_iq_error(iq, "wait", "internal-server-error", NULL);
        job_free(j);
    }
}

static xml_stanza_t *form(const char *registered_user)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_REGISTER);
    if (registered_user) {
        xml_node_add_child(q, "registered", NS_REGISTER);
        xml_node_add_child_text(q, "username", NS_REGISTER, registered_user);
        xml_node_add_child(q, "password", NS_REGISTER);
    } else {
        xml_node_add_child_text(q, "instructions", NS_REGISTER,
                                "Choose a username and password for use with this service.");
        xml_node_add_child(q, "username", NS_REGISTER);
        xml_node_add_child(q, "password", NS_REGISTER);
    }
    return r;
}

static const char *field(const xml_node_t *q, const char *name)
{
    xml_node_t *n = xml_node_child(q, name, NS_REGISTER);
    return n ? xml_node_text(n) : NULL;
}

/* Before authentication: the registration form and account creation. */
static tern_handled_t on_preauth(void *st, tern_iq_t *iq)
{
    reg_t *r = st;
    const config_host_t *hc = tern_host_config(r->host);
    if (!hc->registration) {
        tern_iq_error(iq, "cancel", "service-unavailable", NULL);
        return TERN_HANDLED;
    }
    if (!iq->is_set) {
        xml_stanza_t *f = form(NULL);
        tern_iq_reply(iq, f);
        xml_stanza_unref(f);
        return TERN_HANDLED;
    }
    if (xml_node_child(iq->payload, "remove", NS_REGISTER)) {
        tern_iq_error(iq, "auth", "not-authorized", NULL);
        return TERN_HANDLED;
    }
    const char *user = field(iq->payload, "username");
    const char *password = field(iq->payload, "password");
    if (!user || !*user || !password || !*password) {
        tern_iq_error(iq, "modify", "not-acceptable", "username and password are required");
        return TERN_HANDLED;
    }
    char *norm = NULL;
    if (jid_prep_local(user, &norm) != 0) {
        tern_iq_error(iq, "modify", "not-acceptable", "that username is not allowed");
        return TERN_HANDLED;
    }
    const char *ip = iq->session ? tern_session_ip(iq->session) : "";
    if (ip_limited(r, ip, hc)) {
        tern_iq_error(iq, "wait", "resource-constraint", "too many registrations, try later");
        free(norm);
        return TERN_HANDLED;
    }
    start_job(r, iq, OP_CREATE, norm, password);
    free(norm);
    return TERN_HANDLED;
}

/* After authentication: form with <registered/>, password change, removal. */
static tern_handled_t on_account(void *st, tern_iq_t *iq)
{
    reg_t *r = st;
    if (!iq->from || !iq->from->local)
        return TERN_PASS;
    if (iq->to && iq->to->local &&
        !(strcmp(iq->to->local, iq->from->local) == 0 &&
          strcmp(iq->to->domain, iq->from->domain) == 0)) {
        tern_iq_error(iq, "cancel", "forbidden", NULL);
        return TERN_HANDLED;
    }
    if (strcmp(iq->from->domain, tern_host_domain(r->host)) != 0) {
        tern_iq_error(iq, "cancel", "forbidden", NULL);
        return TERN_HANDLED;
    }
    if (!iq->is_set) {
        xml_stanza_t *f = form(iq->from->local);
        tern_iq_reply(iq, f);
        xml_stanza_unref(f);
        return TERN_HANDLED;
    }
    if (xml_node_child(iq->payload, "remove", NS_REGISTER)) {
        start_job(r, iq, OP_REMOVE, iq->from->local, NULL);
        return TERN_HANDLED;
    }
    const char *user = field(iq->payload, "username");
    const char *password = field(iq->payload, "password");
    if (!password || !*password) {
        tern_iq_error(iq, "modify", "bad-request", "a new password is required");
        return TERN_HANDLED;
    }
    char *norm = NULL;
    if (user && (jid_prep_local(user, &norm) != 0 || strcmp(norm, iq->from->local) != 0)) {
        free(norm);
        tern_iq_error(iq, "modify", "bad-request", "username does not match the account");
        return TERN_HANDLED;
    }
    free(norm);
    start_job(r, iq, OP_PASSWD, iq->from->local, password);
    return TERN_HANDLED;
}

static void features(void *st, tern_session_t *s, xml_node_t *f)
{
    reg_t *r = st;
    /* Offered only where a password may travel: after TLS, unless the
     * admin allowed plaintext streams. */
    bool may_send_password =
        tern_session_is_secure(s) || !tern_host_server_config(r->host)->require_encryption;
    if (tern_host_config(r->host)->registration && !tern_session_is_authenticated(s) &&
        may_send_password)
        xml_node_add_child(f, "register", NS_FEATURE_REGISTER);
}

static void *register_init(tern_module_t *m)
{
    reg_t *r = tern_xcalloc(1, sizeof(*r));
    r->host = tern_module_host(m);
    throttle_init(&r->by_ip);
    tern_register_iq(m, TERN_SCOPE_PREAUTH, NS_REGISTER, "query", on_preauth);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_REGISTER, "query", on_account);
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_REGISTER, "query", on_account);
    tern_register_stream_features(m, features);
    /* Advertised only where creating accounts is possible; password
     * change and removal work on every host regardless. */
    if (tern_host_config(r->host)->registration)
        tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_REGISTER);
    return r;
}

static void register_fini(void *st)
{
    reg_t *r = st;
    throttle_free(&r->by_ip);
    free(r);
}

const tern_module_def_t mod_register = {"register", TERN_MODULE_API_VERSION, register_init,
                                        register_fini};
