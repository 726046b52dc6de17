/* SPDX-License-Identifier: MIT
 * shard.c - worker threads and their inboxes (see shard.h).
 */
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "c2s/session.h"
#include "core/common.h"
#include "core/log.h"

typedef enum { MSG_STANZA, MSG_SESSION, MSG_CALL, MSG_SHUTDOWN, MSG_RELOAD } shard_msg_kind_t;

/* Stanza bytes an inbox may hold before senders get resource-constraint:
 * a client flooding an account on another worker must not queue without
 * bound while that worker catches up (within one worker the flood is
 * paced by the sender's own stream). */
#define INBOX_MAX_BYTES (1u << 20)

struct shard_msg {
    shard_msg_kind_t kind;
    size_t bytes;      /* MSG_STANZA: counted against INBOX_MAX_BYTES */
    xml_stanza_t *st;  /* MSG_STANZA: one reference */
    tern_session_t *s; /* MSG_SESSION: the connection's reference */
    int fd;            /* MSG_SESSION, MSG_CALL: socket or -1 */
    shard_call_fn fn;  /* MSG_CALL */
    void *arg;         /* MSG_CALL */
    struct shard_msg *next;
};

typedef struct {
    tern_shards_t *g;
    unsigned index;
    uv_thread_t thread;
    bool started;
    uv_loop_t loop;
    config_t *cfg;
    /* start-up handshake with the creating thread */
    int start_rc;
    char err[512];
} worker_t;

struct tern_shards {
    unsigned n;
    tern_server_t **srv; /* [n]; all created before any worker starts */
    worker_t *workers;   /* [n]; [0] unused (the caller's thread) */
    config_t *cfg0;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
};

/* FNV-1a: stable across threads and runs, unlike the seeded map hashes. */
static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

unsigned shard_of(const tern_server_t *srv, const char *local, const char *domain)
{
    if (!srv->shards || srv->shards->n <= 1)
        return 0;
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, local ? local : "");
    h = fnv1a(h, "@");
    h = fnv1a(h, domain);
    return (unsigned)(h % srv->shards->n);
}

unsigned shards_count(const tern_server_t *srv)
{
    return srv->shards ? srv->shards->n : 1;
}

tern_server_t *shard_server(const tern_server_t *srv, unsigned index)
{
    return srv->shards ? srv->shards->srv[index] : (tern_server_t *)srv;
}

/* ---- inboxes ---------------------------------------------------------- */

static void drop_msg(struct shard_msg *m)
{
    if (m->kind == MSG_STANZA) {
        xml_stanza_unref(m->st);
    } else if (m->kind == MSG_SESSION) {
        if (m->fd >= 0)
            close(m->fd);
        tern_session_unref(m->s);
    } else if (m->kind == MSG_CALL) {
        m->fn(NULL, m->arg, m->fd);
    }
    free(m);
}

/* Appends m; false (m not taken) once the target has closed its inbox.
 * The wake-up is sent under the lock so that the handle cannot be closed
 * between the check and the send. */
static bool post(tern_server_t *to, struct shard_msg *m)
{
    pthread_mutex_lock(&to->inbox_mu);
    /* The backlog may exceed the bound by one stanza, so that any stanza
     * the parser accepted (its tree can be several times max_stanza_size)
     * can cross when the inbox is empty. */
    if (to->inbox_closed || (m->bytes && to->inbox_bytes >= INBOX_MAX_BYTES)) {
        pthread_mutex_unlock(&to->inbox_mu);
        return false;
    }
    to->inbox_bytes += m->bytes;
    m->next = NULL;
    if (to->inbox_tail)
        to->inbox_tail->next = m;
    else
        to->inbox_head = m;
    to->inbox_tail = m;
    if (to->inbox_open)
        uv_async_send(&to->inbox_async);
    pthread_mutex_unlock(&to->inbox_mu);
    return true;
}

static struct shard_msg *take_all(tern_server_t *srv)
{
    pthread_mutex_lock(&srv->inbox_mu);
    struct shard_msg *m = srv->inbox_head;
    srv->inbox_head = srv->inbox_tail = NULL;
    srv->inbox_bytes = 0;
    pthread_mutex_unlock(&srv->inbox_mu);
    return m;
}

static void on_inbox(uv_async_t *h)
{
    tern_server_t *srv = h->data;
    for (struct shard_msg *m = take_all(srv), *n; m; m = n) {
        n = m->next;
        switch (m->kind) {
        case MSG_STANZA:
            tern_route(srv, m->st);
            xml_stanza_unref(m->st);
            break;
        case MSG_SESSION:
            c2s_adopt(srv, m->s, m->fd);
            break;
        case MSG_CALL:
            m->fn(srv, m->arg, m->fd);
            break;
        case MSG_SHUTDOWN:
            if (!srv->shutting_down)
                server_shutdown(srv);
            break;
        case MSG_RELOAD:
            server_reload(srv);
            break;
        }
        free(m);
    }
}

void shard_inbox_open(tern_server_t *srv)
{
    uv_async_init(srv->loop, &srv->inbox_async, on_inbox);
    srv->inbox_async.data = srv;
    pthread_mutex_lock(&srv->inbox_mu);
    srv->inbox_open = true;
    /* Messages may have arrived before this worker started. */
    if (srv->inbox_head)
        uv_async_send(&srv->inbox_async);
    pthread_mutex_unlock(&srv->inbox_mu);
}

void shard_inbox_close(tern_server_t *srv)
{
    pthread_mutex_lock(&srv->inbox_mu);
    bool was_open = srv->inbox_open;
    srv->inbox_open = false;
    srv->inbox_closed = true;
    pthread_mutex_unlock(&srv->inbox_mu);
    for (struct shard_msg *m = take_all(srv), *n; m; m = n) {
        n = m->next;
        drop_msg(m);
    }
    if (was_open)
        uv_close((uv_handle_t *)&srv->inbox_async, NULL);
}

bool shard_forward(tern_server_t *srv, unsigned owner, xml_stanza_t *st)
{
    struct shard_msg *m = tern_xcalloc(1, sizeof(*m));
    m->kind = MSG_STANZA;
    m->st = xml_stanza_ref(st);
    /* Errors and results answer requests and are paced by them; like
     * deliver() in the router, they are never refused (the recipient's
     * output limit still applies). */
    const char *type = xml_node_attr(xml_stanza_root(st), "type");
    bool answer = type && (strcmp(type, "error") == 0 || strcmp(type, "result") == 0);
    m->bytes = answer ? 0 : xml_stanza_mem(st);
    if (post(shard_server(srv, owner), m))
        return true;
    drop_msg(m);
    return false;
}

bool shard_post_session(tern_server_t *srv, unsigned owner, tern_session_t *s, int fd)
{
    struct shard_msg *m = tern_xcalloc(1, sizeof(*m));
    m->kind = MSG_SESSION;
    m->s = s;
    m->fd = fd;
    if (post(shard_server(srv, owner), m))
        return true;
    free(m);
    return false;
}

bool shard_post_call(tern_server_t *srv, unsigned to, shard_call_fn fn, void *arg, int fd)
{
    struct shard_msg *m = tern_xcalloc(1, sizeof(*m));
    m->kind = MSG_CALL;
    m->fn = fn;
    m->arg = arg;
    m->fd = fd;
    if (post(shard_server(srv, to), m))
        return true;
    free(m);
    return false;
}

static void broadcast(tern_server_t *srv, shard_msg_kind_t kind)
{
    if (!srv->shards)
        return;
    for (unsigned i = 0; i < srv->shards->n; i++) {
        if (i == srv->shard_index)
            continue;
        struct shard_msg *m = tern_xcalloc(1, sizeof(*m));
        m->kind = kind;
        if (!post(srv->shards->srv[i], m))
            free(m);
    }
}

void shards_broadcast_shutdown(tern_server_t *srv)
{
    broadcast(srv, MSG_SHUTDOWN);
}

void shards_broadcast_reload(tern_server_t *srv)
{
    broadcast(srv, MSG_RELOAD);
}

/* ---- threads ----------------------------------------------------------- */

static void worker_main(void *arg)
{
    worker_t *w = arg;
    tern_shards_t *g = w->g;
    tern_server_t *srv = g->srv[w->index];
    int rc = server_start(srv, w->err, sizeof(w->err));
    pthread_mutex_lock(&g->mu);
    w->start_rc = rc;
    g->ready = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (rc != 0)
        server_shutdown(srv);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void free_workers(tern_shards_t *g)
{
    for (unsigned i = 1; i < g->n; i++) {
        worker_t *w = &g->workers[i];
        if (w->started)
            uv_thread_join(&w->thread);
        if (g->srv[i]) {
            config_t *cfg = g->srv[i]->cfg;
            server_free(g->srv[i]);
            config_free(cfg);
            if (uv_loop_close(&w->loop) != 0)
                log_warn("main", "worker %u: event loop closed with handles still open", i);
        }
    }
}

tern_shards_t *shards_create(uv_loop_t *loop0, config_t *cfg, const char *path, char *err,
                             size_t errlen, tern_server_t **primary)
{
    unsigned n = cfg->workers;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores < 1 ? 1 : cores > 64 ? 64 : (unsigned)cores;
    }
    tern_shards_t *g = tern_xcalloc(1, sizeof(*g));
    g->n = n;
    g->srv = tern_xcalloc(n, sizeof(*g->srv));
    g->workers = tern_xcalloc(n, sizeof(*g->workers));
    g->cfg0 = cfg;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);

    /* Every server exists before any listens, so a connection can always
     * be handed to its owner. Each worker reads its own copy of the
     * configuration, which it replaces on reload. */
    g->srv[0] = server_new(loop0, cfg, path, err, errlen);
    if (!g->srv[0])
        goto fail;
    for (unsigned i = 1; i < n; i++) {
        worker_t *w = &g->workers[i];
        w->g = g;
        w->index = i;
        w->cfg = config_load(path, err, errlen);
        if (!w->cfg)
            goto fail;
        uv_loop_init(&w->loop);
        g->srv[i] = server_new(&w->loop, w->cfg, path, err, errlen);
        if (!g->srv[i]) {
            config_free(w->cfg);
            uv_loop_close(&w->loop);
            goto fail;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        g->srv[i]->shards = n > 1 ? g : NULL;
        g->srv[i]->shard_index = i;
        /* One set of ticket keys for every listener and worker: a client
         * resumes wherever the kernel hands its next connection. */
        tls_ctx_share_ticket_keys(g->srv[i]->tls_direct, g->srv[0]->tls);
        if (i > 0)
            tls_ctx_share_ticket_keys(g->srv[i]->tls, g->srv[0]->tls);
    }
    /* One at a time: opening the database runs its migrations. */
    for (unsigned i = 1; i < n; i++) {
        worker_t *w = &g->workers[i];
        pthread_mutex_lock(&g->mu);
        g->ready = false;
        pthread_mutex_unlock(&g->mu);
        if (uv_thread_create(&w->thread, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start worker thread %u", i);
            goto stop;
        }
        w->started = true;
        pthread_mutex_lock(&g->mu);
        while (!g->ready)
            pthread_cond_wait(&g->cv, &g->mu);
        pthread_mutex_unlock(&g->mu);
        if (w->start_rc != 0) {
            snprintf(err, errlen, "worker %u: %s", i, w->err);
            goto stop;
        }
    }
    *primary = g->srv[0];
    return g;

stop:
    /* Workers not started yet drop the message with their inbox. */
    shards_broadcast_shutdown(g->srv[0]);
fail:
    free_workers(g);
    server_free(g->srv[0]);
    /* cfg belongs to the caller again on failure */
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->workers);
    free(g->srv);
    free(g);
    return NULL;
}

void shards_join(tern_shards_t *g)
{
    if (!g)
        return;
    free_workers(g);
    config_t *cfg0 = g->srv[0]->cfg;
    server_free(g->srv[0]);
    config_free(cfg0);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->workers);
    free(g->srv);
    free(g);
}
