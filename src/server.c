/* SPDX-License-Identifier: MIT
 * server.c - server life cycle: hosts, certificates, listeners, storage,
 * the one-second sweep, signals (SIGHUP reload, SIGTERM/SIGINT shutdown),
 * authentication throttles, and the background-work entry points of the
 * module API.
 */
#include "server.h"
#include "http/http.h"
#include "shard.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "c2s/session.h"
#include "core/common.h"
#include "core/log.h"

static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int mkdir_parent(const char *file)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", file);
    char *slash = strrchr(tmp, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    return mkdir_p(tmp);
}

/* First start of a host: make a self-signed certificate so that `make run`
 * works out of the box. Only when both files are missing, so a typo in a
 * configured path is an error instead of a silent new certificate. */
static int ensure_certificate(const config_host_t *h, char *err, size_t errlen)
{
    bool have_cert = access(h->certificate, F_OK) == 0;
    bool have_key = access(h->key, F_OK) == 0;
    if (have_cert && have_key)
        return 0;
    if (have_cert != have_key) {
        snprintf(err, errlen, "host %s: %s exists but %s does not", h->domain,
                 have_cert ? h->certificate : h->key, have_cert ? h->key : h->certificate);
        return -1;
    }
    if (mkdir_parent(h->certificate) != 0 || mkdir_parent(h->key) != 0) {
        snprintf(err, errlen, "host %s: cannot create directory for %s: %s", h->domain,
                 h->certificate, strerror(errno));
        return -1;
    }
    if (tls_make_self_signed(h->domain, h->certificate, h->key, err, errlen) != 0)
        return -1;
    log_warn("main", "host %s: created a self-signed certificate %s", h->domain, h->certificate);
    return 0;
}

static int load_certificates(tern_server_t *srv, const config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nhosts; i++) {
        const config_host_t *h = &cfg->hosts[i];
        if (ensure_certificate(h, err, errlen) != 0)
            return -1;
        if (tls_ctx_add_host(srv->tls, h->domain, h->certificate, h->key, err, errlen) != 0 ||
            tls_ctx_add_host(srv->tls_direct, h->domain, h->certificate, h->key, err, errlen) !=
                0 ||
            tls_ctx_add_host(srv->tls_http, h->domain, h->certificate, h->key, err, errlen) != 0)
            return -1;
    }
    return 0;
}

tern_server_t *server_new(uv_loop_t *loop, config_t *cfg, const char *config_path, char *err,
                          size_t errlen)
{
    tern_server_t *srv = tern_xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    srv->config_path = tern_xstrdup(config_path ? config_path : "");
    pthread_mutex_init(&srv->inbox_mu, NULL);
    throttle_init(&srv->auth_fail_ip);
    throttle_init(&srv->auth_fail_account);
    hashmap_init(&srv->conns_per_ip);
    pthread_mutex_init(&srv->conns_mu, NULL);
    int lvl = log_level_parse(cfg->log_level);
    log_set_level(lvl < 0 ? LOG_INFO : (log_level_t)lvl);

    srv->tls = tls_ctx_new();
    srv->tls_direct = tls_ctx_new();
    srv->tls_http = tls_ctx_new();
    hashmap_init(&srv->bosh_sids);
    hashmap_init(&srv->iq_waiting);
    pthread_mutex_init(&srv->bosh_mu, NULL);
    if (!srv->tls || !srv->tls_direct || !srv->tls_http) {
        snprintf(err, errlen, "cannot create TLS context");
        server_free(srv);
        return NULL;
    }
    tls_ctx_set_alpn(srv->tls_direct, "xmpp-client");
    tls_ctx_set_alpn(srv->tls_http, "http/1.1");
    if (load_certificates(srv, cfg, err, errlen) != 0) {
        server_free(srv);
        return NULL;
    }
    srv->hosts = tern_xcalloc(cfg->nhosts, sizeof(*srv->hosts));
    srv->nhosts = cfg->nhosts;
    for (size_t i = 0; i < cfg->nhosts; i++) {
        tern_host_t *h = &srv->hosts[i];
        h->srv = srv;
        h->cfg = &cfg->hosts[i];
        h->domain = tern_xstrdup(cfg->hosts[i].domain);
        hashmap_init(&h->users);
        hashmap_init(&h->sessions);
        if (modules_init_host(h, err, errlen) != 0) {
            server_free(srv);
            return NULL;
        }
    }
    return srv;
}

tern_host_t *server_find_host(tern_server_t *srv, const char *domain)
{
    /* Hosts are set up one after the other: a later one may have no
     * domain yet while an earlier one's modules start. */
    for (size_t i = 0; i < srv->nhosts; i++)
        if (srv->hosts[i].domain && strcmp(srv->hosts[i].domain, domain) == 0)
            return &srv->hosts[i];
    return NULL;
}

int server_listen(tern_server_t *srv, uv_tcp_t *h, void *data, const char *addr, unsigned port,
                  uv_connection_cb cb, bool *inited, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    *inited = false;
    if (strchr(addr, ':') ? uv_ip6_addr(addr, (int)port, (struct sockaddr_in6 *)&ss) != 0
                          : uv_ip4_addr(addr, (int)port, (struct sockaddr_in *)&ss) != 0) {
        snprintf(err, errlen, "invalid listen address '%s'", addr);
        return -1;
    }
    uv_tcp_init_ex(srv->loop, h, ss.ss_family);
    h->data = data;
    *inited = true;
    int r = 0;
    if (srv->shards) {
        uv_os_fd_t fd;
        int on = 1;
        if (uv_fileno((uv_handle_t *)h, &fd) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
            r = UV_EINVAL;
    }
    if (r == 0)
        r = uv_tcp_bind(h, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)h, 1024, cb);
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", addr, port, uv_strerror(r));
        return -1;
    }
    return 0;
}

host_service_t *server_find_service(tern_server_t *srv, const char *domain, tern_host_t **host)
{
    for (size_t i = 0; i < srv->nhosts; i++)
        for (host_service_t *s = srv->hosts[i].services; s; s = s->next)
            if (strcmp(s->domain, domain) == 0) {
                if (host)
                    *host = &srv->hosts[i];
                return s;
            }
    return NULL;
}

/* ---- timers and signals ---- */

/* Output is corked for the length of one loop iteration: the check phase
 * runs right after the I/O callbacks, the prepare phase catches what close
 * callbacks sent before the loop blocks. */
static void on_flush_check(uv_check_t *h)
{
    c2s_flush_corked(h->data);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    c2s_flush_corked(h->data);
}

static void on_sweep(uv_timer_t *t)
{
    tern_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    c2s_sweep(srv, now);
    http_sweep(srv, now);
    router_iq_expire(srv, now, srv->shutting_down);
    if (srv->shard_index == 0) {
        throttle_prune(&srv->auth_fail_ip, srv->cfg->auth_window, now);
        throttle_prune(&srv->auth_fail_account, srv->cfg->auth_window, now);
    }
    if (srv->shutting_down && srv->nsessions == 0) {
        uv_close((uv_handle_t *)&srv->sweep_timer, NULL);
        uv_close((uv_handle_t *)&srv->flush_check, NULL);
        uv_close((uv_handle_t *)&srv->flush_prepare, NULL);
        if (srv->shards)
            shard_inbox_close(srv);
        if (srv->shard_index == 0) {
            uv_close((uv_handle_t *)&srv->sig_term, NULL);
            uv_close((uv_handle_t *)&srv->sig_int, NULL);
            uv_close((uv_handle_t *)&srv->sig_hup, NULL);
        }
        if (srv->storage) {
            storage_stop(srv->storage);
            srv->storage = NULL;
        }
    }
}

static void on_term(uv_signal_t *sig, int signum)
{
    tern_server_t *srv = sig->data;
    if (srv->shutting_down)
        return;
    log_info("main", "received %s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    shards_broadcast_shutdown(srv);
    server_shutdown(srv);
}

static void on_hup(uv_signal_t *sig, int signum)
{
    tern_server_t *srv = sig->data;
    log_info("main", "received SIGHUP: reloading %s", srv->config_path);
    shards_broadcast_reload(srv);
    server_reload(srv);
}

int server_start(tern_server_t *srv, char *err, size_t errlen)
{
    const config_t *cfg = srv->cfg;
    const storage_driver_t *drv = storage_driver_find(cfg->storage);
    if (!drv) {
        snprintf(err, errlen, "unknown storage driver '%s'", cfg->storage);
        return -1;
    }
    if (mkdir_parent(cfg->storage_path) != 0) {
        snprintf(err, errlen, "cannot create directory for %s: %s", cfg->storage_path,
                 strerror(errno));
        return -1;
    }
    srv->storage = storage_start(srv->loop, drv, cfg->storage_path, err, errlen);
    if (!srv->storage)
        return -1;
    for (size_t i = 0; cfg->listen && cfg->listen[i]; i++) {
        if (cfg->c2s_port && c2s_listen(srv, cfg->listen[i], cfg->c2s_port, false, err, errlen))
            return -1;
        if (cfg->c2s_tls_port &&
            c2s_listen(srv, cfg->listen[i], cfg->c2s_tls_port, true, err, errlen))
            return -1;
        if (cfg->https_port && http_listen(srv, cfg->listen[i], cfg->https_port, true, err, errlen))
            return -1;
    }
    for (size_t i = 0; cfg->http_port && cfg->http_listen && cfg->http_listen[i]; i++)
        if (http_listen(srv, cfg->http_listen[i], cfg->http_port, false, err, errlen))
            return -1;
    uv_check_init(srv->loop, &srv->flush_check);
    uv_prepare_init(srv->loop, &srv->flush_prepare);
    srv->flush_check.data = srv->flush_prepare.data = srv;
    uv_check_start(&srv->flush_check, on_flush_check);
    uv_prepare_start(&srv->flush_prepare, on_flush_prepare);
    uv_timer_init(srv->loop, &srv->sweep_timer);
    srv->sweep_timer.data = srv;
    uv_timer_start(&srv->sweep_timer, on_sweep, 1000, 1000);
    if (srv->shard_index == 0) {
        /* Worker 0 owns the signals and passes their work on. */
        uv_signal_init(srv->loop, &srv->sig_term);
        uv_signal_init(srv->loop, &srv->sig_int);
        uv_signal_init(srv->loop, &srv->sig_hup);
        srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
        uv_signal_start(&srv->sig_term, on_term, SIGTERM);
        uv_signal_start(&srv->sig_int, on_term, SIGINT);
        uv_signal_start(&srv->sig_hup, on_hup, SIGHUP);
        signal(SIGPIPE, SIG_IGN);
    }
    if (srv->shards)
        shard_inbox_open(srv);
    srv->timers_started = true;
    if (srv->shard_index == 0) {
        for (size_t i = 0; i < srv->nhosts; i++)
            log_info("main", "serving host %s", srv->hosts[i].domain);
        log_info("main", "ready (%u worker%s)", shards_count(srv),
                 shards_count(srv) == 1 ? "" : "s");
    }
    return 0;
}

void server_shutdown(tern_server_t *srv)
{
    srv->shutting_down = true;
    c2s_close_listeners(srv);
    http_close_listeners(srv);
    if (!srv->timers_started) {
        /* Start-up failed half way: nothing is connected yet. */
        if (srv->storage) {
            storage_stop(srv->storage);
            srv->storage = NULL;
        }
        return;
    }
    c2s_shutdown_all(srv);
    /* BOSH requests have had their answers; nothing else waits on HTTP. */
    http_shutdown_all(srv);
    /* The sweep finishes the job: it closes streams that do not finish
     * closing within 3 s, then the storage queue and the handles. */
    if (uv_is_active((uv_handle_t *)&srv->sweep_timer))
        uv_timer_start(&srv->sweep_timer, on_sweep, 100, 100);
}

/* SIGHUP: certificates, log level and limits take effect for new work;
 * listeners, storage and the host list need a restart. */
int server_reload(tern_server_t *srv)
{
    char err[512] = "";
    config_t *ncfg = config_load(srv->config_path, err, sizeof(err));
    if (!ncfg) {
        log_error("main", "reload failed, keeping the running configuration: %s", err);
        return -1;
    }
    if (ncfg->nhosts != srv->cfg->nhosts) {
        log_warn("main", "reload: the list of hosts changed; that needs a restart");
    }
    for (size_t i = 0; i < ncfg->nhosts; i++) {
        const config_host_t *h = &ncfg->hosts[i];
        if (!server_find_host(srv, h->domain))
            continue;
        if (tls_ctx_add_host(srv->tls, h->domain, h->certificate, h->key, err, sizeof(err)) != 0 ||
            tls_ctx_add_host(srv->tls_direct, h->domain, h->certificate, h->key, err,
                             sizeof(err)) != 0 ||
            tls_ctx_add_host(srv->tls_http, h->domain, h->certificate, h->key, err, sizeof(err)) !=
                0)
            log_error("main", "reload: %s", err);
    }
    int lvl = log_level_parse(ncfg->log_level);
    if (lvl >= 0)
        log_set_level((log_level_t)lvl);
    /* Hosts point into the config: swap their pointers to the new one. */
    for (size_t i = 0; i < srv->nhosts; i++) {
        const config_host_t *nh = config_find_host(ncfg, srv->hosts[i].domain);
        if (nh)
            srv->hosts[i].cfg = nh;
        else
            log_warn("main", "reload: host %s removed from config; needs a restart",
                     srv->hosts[i].domain);
    }
    /* Keep the settings that cannot change without a restart. */
    bool ok = true;
    for (size_t i = 0; i < srv->nhosts; i++)
        if (!config_find_host(ncfg, srv->hosts[i].domain))
            ok = false;
    if (!ok) {
        for (size_t i = 0; i < srv->nhosts; i++)
            srv->hosts[i].cfg = config_find_host(srv->cfg, srv->hosts[i].domain);
        config_free(ncfg);
        return -1;
    }
    ncfg->c2s_port = srv->cfg->c2s_port;
    ncfg->c2s_tls_port = srv->cfg->c2s_tls_port;
    config_t *old = srv->cfg;
    /* Swap the listen list and storage settings back: they were used at
     * start and cannot change under a running server. */
    char **l = ncfg->listen;
    ncfg->listen = old->listen;
    old->listen = l;
    char *sp = ncfg->storage_path;
    ncfg->storage_path = old->storage_path;
    old->storage_path = sp;
    srv->cfg = ncfg;
    config_free(old);
    for (tern_session_t *s = srv->all_sessions; s; s = s->next_all)
        if (s->parser)
            xml_parser_set_max_stanza(s->parser, ncfg->max_stanza_size);
    log_info("main", "configuration reloaded");
    return 0;
}

void server_free(tern_server_t *srv)
{
    if (!srv)
        return;
    /* whoever still waits on an answer hears "none" while it exists */
    router_iq_expire(srv, 0, true);
    for (size_t i = 0; i < srv->nhosts; i++) {
        tern_host_t *h = &srv->hosts[i];
        modules_fini_host(h);
        hashmap_free(&h->users);
        hashmap_free(&h->sessions);
        free(h->domain);
    }
    free(srv->hosts);
    if (srv->tls)
        tls_ctx_free(srv->tls);
    if (srv->tls_direct)
        tls_ctx_free(srv->tls_direct);
    if (srv->tls_http)
        tls_ctx_free(srv->tls_http);
    size_t bit = 0;
    void *bv;
    while (hashmap_next(&srv->bosh_sids, &bit, NULL, &bv))
        free(bv);
    hashmap_free(&srv->iq_waiting);
    hashmap_free(&srv->bosh_sids);
    pthread_mutex_destroy(&srv->bosh_mu);
    throttle_free(&srv->auth_fail_ip);
    throttle_free(&srv->auth_fail_account);
    size_t it = 0;
    void *v;
    while (hashmap_next(&srv->conns_per_ip, &it, NULL, &v))
        free(v);
    hashmap_free(&srv->conns_per_ip);
    pthread_mutex_destroy(&srv->conns_mu);
    if (!srv->inbox_closed)
        shard_inbox_close(srv); /* drops what arrived for a worker that never ran */
    pthread_mutex_destroy(&srv->inbox_mu);
    free(srv->config_path);
    free(srv);
}

/* ---- module API: background work ---- */

int tern_storage_submit(tern_server_t *srv, tern_storage_job job, tern_done_cb done, void *arg)
{
    if (!srv->storage)
        return TERN_EIO;
    return storage_submit(srv->storage, (storage_job_fn)job, done, arg);
}

typedef struct {
    uv_work_t req;
    int (*fn)(void *);
    tern_done_cb done;
    void *arg;
    int result;
} cpu_job_t;

static void cpu_work(uv_work_t *req)
{
    cpu_job_t *j = req->data;
    j->result = j->fn(j->arg);
}

static void cpu_after(uv_work_t *req, int status)
{
    cpu_job_t *j = req->data;
    j->done(j->arg, status == 0 ? j->result : TERN_EIO);
    free(j);
}

int tern_cpu_submit(tern_server_t *srv, int (*fn)(void *arg), tern_done_cb done, void *arg)
{
    cpu_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->req.data = j;
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    int r = uv_queue_work(srv->loop, &j->req, cpu_work, cpu_after);
    if (r != 0) {
        free(j);
        return TERN_EIO;
    }
    return 0;
}
