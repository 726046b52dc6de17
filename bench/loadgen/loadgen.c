/* loadgen: event-driven XMPP client-to-server load generator.
 *
 * --threads T worker threads each run their own libuv loop over a disjoint
 * slice of the users (or of the login loops).  The main thread is the
 * coordinator: it moves every worker through the phases of the scenario
 * (setup, room joins, roster setup, run, drain), reads the
 * server's /proc figures at the phase boundaries and merges the results.
 *
 * Per connection, TLS runs over OpenSSL memory BIOs and the server's stream
 * is parsed incrementally with expat.  Output is batched: stanzas are
 * appended to a per-connection buffer and written once per loop iteration
 * (one TLS record, one write(2)) from the loop's prepare/check handles. */
#include "loadgen.h"

#include <errno.h>
#include <expat.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

enum scenario { SC_IDLE, SC_LOGIN, SC_CHAT, SC_MUC, SC_PRESENCE, SC_PUBSUB };
static const char *const scenario_names[] = {"idle", "login", "chat", "muc", "presence", "pubsub"};

/* Global phases, set by the coordinator only.  Not every scenario uses all. */
enum phase {
    PH_SETUP,       /* log the sessions in */
    PH_JOIN_OWNERS, /* muc: first occupant of each room joins (and unlocks it);
                       pubsub: the publisher creates the node */
    PH_JOIN,        /* muc: everybody else joins; pubsub: the subscribers subscribe */
    PH_ROSTER,      /* presence --setup-rosters: mutual subscriptions */
    PH_RUN,         /* measured phase */
    PH_DRAIN,       /* sending stopped; wait for stanzas in flight */
    PH_DONE
};

enum cstate { CS_FREE, CS_CONNECTING, CS_LOGIN, CS_ONLINE, CS_CLOSING };
enum capture { CAP_NONE, CAP_SASL, CAP_BODY, CAP_MECH };

/* Exit status when the server lacks the feature the scenario needs. */
#define EXIT_UNSUPPORTED 3

struct opts {
    enum scenario scenario;
    const char *host, *domain, *user_fmt, *password, *resource, *json, *muc_domain;
    const char *pubsub_domain, *node; /* pubsub */
    int port;
    int users, user_offset;
    int concurrency, threads;
    double rate;
    double hold, settle, duration, timeout, drain, warm, dwell;
    int server_pid;
    bool starttls, direct_tls, setup_rosters, users_given;
    int rooms, room_size, roster_size, churn;
    int subscribers, max_items; /* pubsub */
    enum mech mech;
    uint64_t seed;
};

struct stats {
    uint64_t attempts, connect_errors, login_ok, auth_fail, login_timeouts, login_errors,
        disconnects, stream_errors, parse_errors, tls_errors;
    uint64_t sent, delivered, msg_errors, stray;
    uint64_t run_logins;                        /* logins completed during PH_RUN */
    uint64_t joins_ok, join_errors, rooms_made; /* muc (pubsub: node created) */
    uint64_t expected;                          /* muc: deliveries owed for messages sent */
    uint64_t misrouted; /* muc: a groupchat of ours from a room that is not the receiver's;
                           pubsub: a notification from another service or node */
    uint64_t pub_acked; /* pubsub: publish results */
    uint64_t rosters_done, roster_errors; /* presence setup */
    uint64_t roster_sets, subscribes, subscribed;
    uint64_t pres_online, pres_churners; /* presence run */
};

_Static_assert(sizeof(struct stats) % sizeof(uint64_t) == 0, "stats must be all uint64_t");

struct worker;

struct conn {
    struct worker *w;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    int slot; /* number appended to the resource */
    int user; /* global user index (before --user-offset) */
    enum cstate state;
    bool tls_up, authed, graceful, churner, roster_complete, joined;
    SSL *ssl;
    BIO *rbio, *wbio;
    XML_Parser xp;
    bool replace_parser;
    int depth;
    /* current top-level element */
    char sname[32], stype[16], sid[32], sfrom[192];
    bool f_starttls, f_mechs, f_bind, f_session, f_session_opt;
    bool in_mucx, in_error, roster_query;
    bool in_event, event_node_ok; /* pubsub: inside <event/>, its <items node/> is ours */
    unsigned muc_status;          /* bit 0: 110 (self), bit 1: 201 (room created) */
    char err_cond[48];
    unsigned mechs; /* bit per enum mech */
    enum capture cap;
    int cap_depth;
    char *text;
    size_t tlen, tcap;
    bool has_body;
    enum mech mech;
    struct scram scram;
    char username[128];
    uint64_t t_start;  /* login started */
    uint64_t t_join;   /* muc: join sent and not yet answered, else 0 */
    uint64_t t_online; /* presence churner: initial presence sent */
    /* batched plaintext output, written once per loop iteration */
    char *out;
    size_t olen, ocap;
    bool dirty;
    struct conn *next_dirty;
    /* presence: which of the roster_size contacts are in state "both" */
    uint8_t *contact_both;
    int contacts_both;
};

struct worker {
    int id;
    pthread_t thread;
    uv_loop_t loop;
    uv_timer_t tick, send_timer;
    uv_async_t wake;
    uv_prepare_t prep;
    uv_check_t check;
    struct conn *slots;
    int nslots;
    int user_lo, user_hi; /* users [lo, hi) belong to this worker */
    int concurrency;
    double rate;
    enum phase phase; /* last global phase acted upon */
    int started, inflight, online, next_user;
    int join_next, join_inflight, join_done_n, join_target;
    uint64_t t_last_login, t_send_begin, sent_in_run;
    uint64_t last_timeout_scan;
    uint64_t rng;
    struct stats st;
    struct scram_cache cache;
    struct hist lat;
    struct conn *dirty;
    char rbuf[65536];
    char pbuf[65536];
    char first_err[512];
    /* published for the coordinator */
    _Atomic int done_phase; /* last phase whose work this worker finished, -1 none */
    _Atomic uint64_t pub_sent, pub_delivered, pub_errors, pub_expected;
    _Atomic int pub_online;
    _Atomic uint64_t pub_joins; /* muc: joins answered (ok or error) */
};

/* State shared by all threads.  Written before the workers start, except the
 * atomics. */
struct shared {
    struct opts o;
    SSL_CTX *ssl_ctx;
    struct sockaddr_storage addr;
    struct worker *w;
    int nthreads;
    uint64_t t_begin;
    _Atomic int phase;
    _Atomic uint64_t t_run_begin;
    _Atomic unsigned char *online; /* per user: session online (chat targets) */
    _Atomic int *room_occupants;   /* muc: joined occupants per room */
    /* muc delivery check: every groupchat gets a global number (the seq in
     * its body); per number, the occupants it is owed to at send time and
     * the copies received, so losses and duplicates show per message rather
     * than cancelling out in the totals. */
    _Atomic uint64_t msg_seq;
    char **room_jid; /* per room: bench<r>@<muc domain> */
    size_t *room_len;
    uint32_t *msg_exp;
    _Atomic uint32_t *msg_got;
    uint64_t msg_cap;
    char **full_jid; /* per user: user@domain/resource<user> */
    char **bare_jid; /* per user: user@domain */
    size_t *full_len;
    const char *fmt_prefix, *fmt_suffix; /* user_fmt around %d */
    size_t fmt_prefix_len;
    atomic_flag unsupported_set;
    _Atomic bool unsupported;
    char unsupported_why[256];
};

static struct shared G;

static enum phase gphase(void)
{
    return (enum phase)atomic_load_explicit(&G.phase, memory_order_acquire);
}

static uint64_t rnd(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

/* Remember that the server lacks the feature (first reason wins). */
static void mark_unsupported(const char *fmt, const char *a, const char *b)
{
    if (atomic_flag_test_and_set(&G.unsupported_set))
        return;
    snprintf(G.unsupported_why, sizeof G.unsupported_why, fmt, a, b);
    atomic_store(&G.unsupported, true);
}

/* ---------------------------------------------------------- forward decls */

static void conn_close(struct conn *c);
static void conn_bye(struct conn *c);
static void conn_start(struct worker *w, int slot_index, int user);
static void on_online(struct conn *c);
static void login_failed(struct conn *c, uint64_t *counter);
static void pump(struct worker *w);
static void parser_new(struct conn *c);
static void flush_conn(struct conn *c);

/* ----------------------------------------------------------------- write */

struct wreq {
    uv_write_t req;
    char data[];
};

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;
    free(req);
    if (status < 0 && status != UV_ECANCELED && c->state != CS_CLOSING)
        login_failed(c, &c->w->st.login_errors);
}

/* Write bytes to the socket: directly if the kernel takes them, the rest is
 * copied into a queued request (rare: only when the socket buffer is full). */
static void raw_write(struct conn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        login_failed(c, &c->w->st.login_errors);
        return;
    }
    if ((size_t)n == len)
        return;
    size_t rest = len - (size_t)n;
    struct wreq *r = malloc(sizeof *r + rest);
    if (!r)
        abort();
    memcpy(r->data, data + n, rest);
    b = uv_buf_init(r->data, (unsigned)rest);
    if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(r);
        login_failed(c, &c->w->st.login_errors);
    }
}

static void mark_dirty(struct conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = c->w->dirty;
    c->w->dirty = c;
}

/* Queue plaintext XML for this connection; sent at the end of the iteration. */
static void out_append(struct conn *c, const char *s, size_t len)
{
    if (c->state == CS_CLOSING || c->state == CS_FREE || !len)
        return;
    if (c->olen + len > c->ocap) {
        size_t nc = c->ocap ? c->ocap * 2 : 1024;
        while (nc < c->olen + len)
            nc *= 2;
        char *p = realloc(c->out, nc);
        if (!p)
            abort();
        c->out = p;
        c->ocap = nc;
    }
    memcpy(c->out + c->olen, s, len);
    c->olen += len;
    mark_dirty(c);
}

static void send_str(struct conn *c, const char *s)
{
    out_append(c, s, strlen(s));
}

/* Encrypt the queued plaintext as one TLS record (if TLS is up) and write
 * everything pending for this connection. */
static void flush_conn(struct conn *c)
{
    struct worker *w = c->w;
    if (c->state == CS_CLOSING || c->state == CS_FREE || c->state == CS_CONNECTING)
        return;
    if (c->ssl) {
        if (c->tls_up && c->olen) {
            if (SSL_write(c->ssl, c->out, (int)c->olen) <= 0) {
                c->olen = 0;
                w->st.tls_errors++;
                login_failed(c, &w->st.login_errors);
                return;
            }
            c->olen = 0;
        }
        while (BIO_ctrl_pending(c->wbio) > 0) {
            int n = BIO_read(c->wbio, w->pbuf, sizeof w->pbuf);
            if (n <= 0)
                break;
            raw_write(c, w->pbuf, (size_t)n);
            if (c->state == CS_CLOSING)
                return;
        }
    }
    /* Plaintext (before STARTTLS's <proceed/>, or no TLS at all). */
    if (c->olen && !(c->ssl && c->tls_up)) {
        raw_write(c, c->out, c->olen);
        c->olen = 0;
    }
}

static void flush_dirty(struct worker *w)
{
    while (w->dirty) {
        struct conn *c = w->dirty;
        w->dirty = c->next_dirty;
        c->dirty = false;
        c->next_dirty = NULL;
        flush_conn(c);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    flush_dirty(h->data);
}

static void on_check(uv_check_t *h)
{
    flush_dirty(h->data);
}

static void send_header(struct conn *c)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                     "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
                     G.o.domain);
    out_append(c, buf, (size_t)n);
}

/* ------------------------------------------------------------------- TLS */

static void tls_start(struct conn *c)
{
    struct worker *w = c->w;
    c->ssl = SSL_new(G.ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        w->st.tls_errors++;
        login_failed(c, &w->st.login_errors);
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_tlsext_host_name(c->ssl, G.o.domain);
    if (G.o.direct_tls) {
        static const unsigned char alpn[] = "\x0bxmpp-client";
        SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
    }
    SSL_set_connect_state(c->ssl);
    SSL_do_handshake(c->ssl);
    mark_dirty(c);
}

/* The certificate is not checked (benchmark only): skipping OpenSSL's chain
 * building and self-signature check saves an ECDSA verify and the X509
 * store work per handshake.  The handshake's CertificateVerify signature is
 * still checked by the TLS 1.3 state machine. */
static int accept_any_cert(X509_STORE_CTX *sctx, void *arg)
{
    (void)sctx;
    (void)arg;
    return 1;
}

/* ---------------------------------------------------------------- stanza */

static void text_reset(struct conn *c)
{
    c->tlen = 0;
    if (c->text)
        c->text[0] = 0;
}

static const char *local(const char *name)
{
    const char *p = strrchr(name, ':');
    return p ? p + 1 : name;
}

static const char *attr(const char **atts, const char *name)
{
    for (int i = 0; atts[i]; i += 2)
        if (strcmp(atts[i], name) == 0)
            return atts[i + 1];
    return NULL;
}

/* Copy src (NULL = empty) into dst, truncated to cap - 1 bytes. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src ? src : "", n);
    dst[n] = 0;
}

static void choose_and_auth(struct conn *c)
{
    struct worker *w = c->w;
    enum mech m = G.o.mech;
    if (m == MECH_AUTO) {
        if (c->mechs & (1u << MECH_SCRAM_SHA256))
            m = MECH_SCRAM_SHA256;
        else if (c->mechs & (1u << MECH_SCRAM_SHA1))
            m = MECH_SCRAM_SHA1;
        else
            m = MECH_PLAIN;
    }
    if (!(c->mechs & (1u << m))) {
        login_failed(c, &w->st.auth_fail);
        return;
    }
    c->mech = m;
    char *init = m == MECH_PLAIN ? sasl_plain_initial(c->username, G.o.password)
                                 : scram_client_first(&c->scram, m, c->username, rnd(w));
    if (!init)
        abort();
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>",
                     mech_name(m), init);
    free(init);
    if (n < 0 || (size_t)n >= sizeof buf)
        abort();
    out_append(c, buf, (size_t)n);
}

static void handle_features(struct conn *c)
{
    struct worker *w = c->w;
    if (G.o.starttls && !c->tls_up) {
        if (!c->f_starttls) {
            login_failed(c, &w->st.login_errors);
            return;
        }
        send_str(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    } else if (!c->authed) {
        if (!c->f_mechs) {
            login_failed(c, &w->st.login_errors);
            return;
        }
        choose_and_auth(c);
    } else if (c->f_bind) {
        char buf[256];
        int n = snprintf(buf, sizeof buf,
                         "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                         "<resource>%s%d</resource></bind></iq>",
                         G.o.resource, c->slot);
        out_append(c, buf, (size_t)n);
    } else {
        login_failed(c, &w->st.login_errors);
    }
}

static int room_of(int user);

/* A message body "lg <send ns> <seq>": count the delivery and its latency. */
static void handle_message(struct conn *c)
{
    struct worker *w = c->w;
    if (strcmp(c->stype, "error") == 0) {
        w->st.msg_errors++;
        return;
    }
    if (G.o.scenario == SC_PUBSUB)
        return; /* notifications are counted per <item/> as they are parsed */
    if (!c->has_body || !c->text || strncmp(c->text, "lg ", 3) != 0) {
        w->st.stray++;
        return;
    }
    char *end;
    uint64_t ts = strtoull(c->text + 3, &end, 10);
    uint64_t t = now_ns();
    if (ts < atomic_load(&G.t_run_begin) || ts > t) {
        w->st.stray++;
        return;
    }
    if (G.o.scenario == SC_MUC) {
        /* from bench<r>@<muc domain>/<nick>, r being the receiver's room */
        int r = room_of(c->user);
        size_t room_len = G.room_len[r];
        if (strncmp(c->sfrom, G.room_jid[r], room_len) != 0 || c->sfrom[room_len] != '/') {
            w->st.misrouted++;
            return;
        }
        uint64_t seq = strtoull(end, NULL, 10);
        if (seq < G.msg_cap)
            atomic_fetch_add_explicit(&G.msg_got[seq], 1, memory_order_relaxed);
    }
    w->st.delivered++;
    hist_add(&w->lat, t - ts);
}

/* ------------------------------------------------------------ muc helpers */

static int room_of(int user)
{
    return G.o.scenario == SC_PUBSUB ? 0 : user / G.o.room_size;
}

/* muc: the first occupant of each room creates it; pubsub: user 0 is the
 * publisher and creates the node, everybody else subscribes. */
static bool is_owner(const struct conn *c)
{
    return G.o.scenario == SC_PUBSUB ? c->user == 0 : c->user % G.o.room_size == 0;
}

/* Whether a completed join makes this session one of the receivers counted
 * per message (muc: every occupant; pubsub: the subscribers only). */
static bool receives(const struct conn *c)
{
    return G.o.scenario != SC_PUBSUB || c->user != 0;
}

/* Our occupant JID bench<r>@<muc domain>/<user name> (the nick is the user
 * name), in a static buffer of the calling thread. */
static const char *own_occupant_jid(const struct conn *c)
{
    static _Thread_local char jid[320];
    snprintf(jid, sizeof jid, "bench%d@%s/%s", room_of(c->user), G.o.muc_domain, c->username);
    return jid;
}

static void pubsub_join(struct conn *c);

static void muc_join(struct conn *c)
{
    if (G.o.scenario == SC_PUBSUB) {
        pubsub_join(c);
        return;
    }
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "<presence to='%s'><x xmlns='http://jabber.org/protocol/muc'>"
                     "<history maxstanzas='0'/></x></presence>",
                     own_occupant_jid(c));
    c->t_join = now_ns();
    out_append(c, buf, (size_t)n);
}

/* This occupant's own presence came back (or its config form was accepted). */
static void muc_joined(struct conn *c)
{
    struct worker *w = c->w;
    if (c->joined || !c->t_join)
        return;
    c->joined = true;
    c->t_join = 0;
    w->st.joins_ok++;
    w->join_done_n++;
    w->join_inflight--;
    if (receives(c))
        atomic_fetch_add(&G.room_occupants[room_of(c->user)], 1);
}

static void muc_join_failed(struct conn *c, const char *why)
{
    struct worker *w = c->w;
    if (!c->t_join)
        return;
    c->t_join = 0;
    w->st.join_errors++;
    w->join_done_n++;
    w->join_inflight--;
    if (G.o.scenario == SC_PUBSUB) {
        const char *what = is_owner(c) ? "creation of" : "subscription to";
        if (!w->first_err[0])
            snprintf(w->first_err, sizeof w->first_err, "user %s: %s node %s on %s failed: %s",
                     c->username, what, G.o.node, G.o.pubsub_domain, why);
        mark_unsupported(is_owner(c) ? "pubsub node creation refused by the server (%s%s)"
                                     : "pubsub subscription refused by the server (%s%s)",
                         why, "");
        return;
    }
    if (!w->first_err[0])
        snprintf(w->first_err, sizeof w->first_err, "user %s: MUC join of bench%d@%s failed: %s",
                 c->username, room_of(c->user), G.o.muc_domain, why);
    mark_unsupported("MUC join refused by the server (%s%s)", why, "");
}

static void handle_muc_presence(struct conn *c)
{
    const char *own = own_occupant_jid(c);
    size_t room_len = strcspn(own, "/");
    bool from_room = strncmp(c->sfrom, own, room_len) == 0 &&
                     (c->sfrom[room_len] == 0 || c->sfrom[room_len] == '/');
    if (!from_room || c->joined || !c->t_join)
        return;
    if (strcmp(c->stype, "error") == 0) {
        muc_join_failed(c, c->err_cond[0] ? c->err_cond : "error");
        return;
    }
    if (strcmp(c->sfrom, own) != 0 && !(c->muc_status & 1))
        return; /* another occupant's presence */
    if (c->muc_status & 2) {
        /* We created the room; it may be locked until configured
         * (XEP-0045 10.1.2): accept the default configuration. */
        char buf[512];
        c->sfrom[room_len] = 0;
        int n = snprintf(buf, sizeof buf,
                         "<iq type='set' to='%s' id='cfg1'><query "
                         "xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
                         "type='submit'/></query></iq>",
                         c->sfrom);
        out_append(c, buf, (size_t)n);
        c->w->st.rooms_made++;
        return;
    }
    muc_joined(c);
}

/* --------------------------------------------------------- pubsub helpers */

#define NS_PUBSUB       "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"

/* The publisher creates the node with the benchmark's configuration; every
 * other user subscribes its bare JID to it. */
static void pubsub_join(struct conn *c)
{
    char buf[2048];
    int n;
    if (is_owner(c))
        n = snprintf(buf, sizeof buf,
                     "<iq type='set' to='%s' id='create1'><pubsub xmlns='" NS_PUBSUB "'>"
                     "<create node='%s'/><configure><x xmlns='jabber:x:data' type='submit'>"
                     "<field var='FORM_TYPE' type='hidden'>"
                     "<value>" NS_PUBSUB "#node_config</value></field>"
                     "<field var='pubsub#max_items'><value>%d</value></field>"
                     "<field var='pubsub#persist_items'><value>1</value></field>"
                     "<field var='pubsub#deliver_notifications'><value>1</value></field>"
                     "<field var='pubsub#deliver_payloads'><value>1</value></field>"
                     "<field var='pubsub#access_model'><value>open</value></field>"
                     "<field var='pubsub#publish_model'><value>publishers</value></field>"
                     "<field var='pubsub#send_last_published_item'><value>never</value></field>"
                     "<field var='pubsub#notification_type'><value>headline</value></field>"
                     "</x></configure></pubsub></iq>",
                     G.o.pubsub_domain, G.o.node, G.o.max_items);
    else
        n = snprintf(buf, sizeof buf,
                     "<iq type='set' to='%s' id='sub1'><pubsub xmlns='" NS_PUBSUB "'>"
                     "<subscribe node='%s' jid='%s'/></pubsub></iq>",
                     G.o.pubsub_domain, G.o.node, G.bare_jid[c->user]);
    if (n < 0 || (size_t)n >= sizeof buf)
        abort();
    c->t_join = now_ns();
    out_append(c, buf, (size_t)n);
}

/* An <item id='<seq>-<send ns>'/> of a notification from our node: count
 * the delivery against its publish and take the latency. */
static void pubsub_item(struct conn *c, const char *id)
{
    struct worker *w = c->w;
    if (strcmp(c->sfrom, G.o.pubsub_domain) != 0 || !c->event_node_ok) {
        w->st.misrouted++;
        return;
    }
    char *end;
    uint64_t seq = strtoull(id ? id : "", &end, 10);
    uint64_t ts = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
    uint64_t t = now_ns();
    if (!id || ts < atomic_load(&G.t_run_begin) || ts > t) {
        w->st.stray++;
        return;
    }
    if (seq < G.msg_cap)
        atomic_fetch_add_explicit(&G.msg_got[seq], 1, memory_order_relaxed);
    w->st.delivered++;
    hist_add(&w->lat, t - ts);
}

/* ------------------------------------------------------- presence helpers */

/* Contacts of user u are its roster_size/2 neighbours on each side (mod N),
 * so the relation is symmetric and every user has exactly roster_size. */
static int contact_of(int u, int k)
{
    int half = G.o.roster_size / 2;
    int d = k < half ? k + 1 : -(k - half + 1);
    return ((u + d) % G.o.users + G.o.users) % G.o.users;
}

/* Index k with contact_of(u, k) == v, or -1. */
static int contact_index(int u, int v)
{
    int half = G.o.roster_size / 2, n = G.o.users;
    int d = ((v - u) % n + n) % n;
    if (d >= 1 && d <= half)
        return d - 1;
    if (n - d >= 1 && n - d <= half)
        return half + (n - d) - 1;
    return -1;
}

/* Global user index of a JID of ours (bare or full), or -1. */
static int user_of_jid(const char *jid)
{
    if (strncmp(jid, G.fmt_prefix, G.fmt_prefix_len) != 0)
        return -1;
    char *end;
    long v = strtol(jid + G.fmt_prefix_len, &end, 10);
    size_t sl = strlen(G.fmt_suffix);
    if (end == jid + G.fmt_prefix_len || strncmp(end, G.fmt_suffix, sl) != 0 || end[sl] != '@')
        return -1;
    v -= G.o.user_offset;
    return v >= 0 && v < G.o.users ? (int)v : -1;
}

static bool is_churner(int user)
{
    int step = G.o.users / G.o.churn;
    return user % step == 0 && user / step < G.o.churn;
}

static void roster_item(struct conn *c, const char *jid, const char *sub)
{
    if (!c->contact_both || !jid)
        return;
    int v = user_of_jid(jid);
    int k = v < 0 ? -1 : contact_index(c->user, v);
    if (k < 0 || c->contact_both[k] || !sub || strcmp(sub, "both") != 0)
        return;
    c->contact_both[k] = 1;
    c->contacts_both++;
    if (c->contacts_both == G.o.roster_size && !c->roster_complete) {
        c->roster_complete = true;
        c->w->st.rosters_done++;
    }
}

/* Roster fetched in the setup phase: add and subscribe to the contacts that
 * are not yet in state "both" (so a second run does nothing). */
static void roster_setup_send(struct conn *c)
{
    struct worker *w = c->w;
    char buf[512];
    for (int k = 0; k < G.o.roster_size; k++) {
        if (c->contact_both[k])
            continue;
        const char *to = G.bare_jid[contact_of(c->user, k)];
        int n = snprintf(buf, sizeof buf,
                         "<iq type='set' id='rs'><query xmlns='jabber:iq:roster'><item jid='%s'/>"
                         "</query></iq><presence type='subscribe' to='%s'/>",
                         to, to);
        out_append(c, buf, (size_t)n);
        w->st.roster_sets++;
        w->st.subscribes++;
    }
}

static void send_roster_get(struct conn *c)
{
    send_str(c, "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>");
}

static void handle_presence(struct conn *c)
{
    struct worker *w = c->w;
    if (G.o.scenario == SC_MUC) {
        handle_muc_presence(c);
        return;
    }
    if (G.o.scenario != SC_PRESENCE)
        return;
    if (strcmp(c->stype, "subscribe") == 0) {
        /* Approve: the contact asked, so the server has it pending. */
        char to[256], buf[320];
        xml_esc(to, sizeof to, c->sfrom);
        int n = snprintf(buf, sizeof buf, "<presence type='subscribed' to='%s'/>", to);
        out_append(c, buf, (size_t)n);
        w->st.subscribed++;
        return;
    }
    if (strcmp(c->stype, "error") == 0) {
        w->st.roster_errors++;
        if (!w->first_err[0])
            snprintf(w->first_err, sizeof w->first_err, "user %s: presence error from %s: %s",
                     c->username, c->sfrom, c->err_cond);
        return;
    }
    if (gphase() != PH_RUN || (c->stype[0] && strcmp(c->stype, "unavailable") != 0))
        return;
    if (c->churner)
        w->st.pres_churners++;
    else
        w->st.pres_online++;
}

static void handle_iq(struct conn *c)
{
    struct worker *w = c->w;
    bool is_result = strcmp(c->stype, "result") == 0;
    bool is_error = strcmp(c->stype, "error") == 0;
    if (strcmp(c->sid, "bind1") == 0 || strcmp(c->sid, "sess1") == 0) {
        if (!is_result) {
            login_failed(c, &w->st.login_errors);
            return;
        }
        if (c->sid[0] == 'b' && c->f_session && !c->f_session_opt) {
            send_str(c, "<iq type='set' id='sess1'><session "
                        "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
            return;
        }
        on_online(c);
    } else if (strcmp(c->sid, "rg") == 0) {
        if (is_error) {
            w->st.roster_errors++;
            mark_unsupported("roster get answered with error (%s%s)",
                             c->err_cond[0] ? c->err_cond : "no condition", "");
            return;
        }
        if (c->churner && gphase() == PH_RUN) {
            /* a churning client: roster first, then initial presence */
            send_str(c, "<presence/>");
            c->t_online = now_ns();
            if (G.o.dwell <= 0)
                conn_bye(c);
        } else if (gphase() == PH_ROSTER && !c->roster_complete) {
            roster_setup_send(c);
        }
    } else if (strcmp(c->sid, "rs") == 0) {
        if (is_error) {
            w->st.roster_errors++;
            mark_unsupported("roster set answered with error (%s%s)",
                             c->err_cond[0] ? c->err_cond : "no condition", "");
        }
    } else if (G.o.scenario == SC_PUBSUB &&
               (strcmp(c->sid, "create1") == 0 || strcmp(c->sid, "sub1") == 0)) {
        if (is_result && c->sid[0] == 'c')
            w->st.rooms_made++;
        if (is_result)
            muc_joined(c);
        else if (is_error && c->sid[0] == 'c' && strcmp(c->err_cond, "conflict") == 0)
            muc_joined(c); /* the node exists already (a server that was not fresh) */
        else if (is_error)
            muc_join_failed(c, c->err_cond[0] ? c->err_cond : "error");
    } else if (G.o.scenario == SC_PUBSUB && strncmp(c->sid, "pub", 3) == 0 &&
               (is_result || is_error)) {
        if (is_result) {
            w->st.pub_acked++;
        } else {
            w->st.msg_errors++;
            if (!w->first_err[0])
                snprintf(w->first_err, sizeof w->first_err, "user %s: publish %s refused: %s",
                         c->username, c->sid, c->err_cond[0] ? c->err_cond : "error");
        }
    } else if (strcmp(c->sid, "cfg1") == 0) {
        if (is_result)
            muc_joined(c);
        else
            muc_join_failed(c, "room configuration refused");
    } else if (strcmp(c->stype, "get") == 0 || strcmp(c->stype, "set") == 0) {
        /* e.g. XEP-0199 ping or a roster push: answer with a result */
        char id[96], from[400], buf[600];
        int n;
        xml_esc(id, sizeof id, c->sid);
        xml_esc(from, sizeof from, c->sfrom);
        if (c->sfrom[0])
            n = snprintf(buf, sizeof buf, "<iq type='result' id='%s' to='%s'/>", id, from);
        else
            n = snprintf(buf, sizeof buf, "<iq type='result' id='%s'/>", id);
        out_append(c, buf, (size_t)n);
    }
}

static void handle_stanza(struct conn *c)
{
    struct worker *w = c->w;
    const char *n = c->sname;
    if (strcmp(n, "message") == 0) {
        handle_message(c);
    } else if (strcmp(n, "presence") == 0) {
        handle_presence(c);
    } else if (strcmp(n, "iq") == 0) {
        handle_iq(c);
    } else if (strcmp(n, "features") == 0) {
        handle_features(c);
    } else if (strcmp(n, "proceed") == 0) {
        c->replace_parser = true;
        XML_StopParser(c->xp, XML_FALSE);
        tls_start(c);
    } else if (strcmp(n, "challenge") == 0) {
        if (c->mech == MECH_PLAIN) {
            login_failed(c, &w->st.auth_fail);
            return;
        }
        char *fin = scram_client_final(&c->scram, &w->cache, G.o.password, c->text ? c->text : "");
        if (!fin) {
            login_failed(c, &w->st.auth_fail);
            return;
        }
        char buf[512];
        int len = snprintf(buf, sizeof buf,
                           "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", fin);
        free(fin);
        if (len < 0 || (size_t)len >= sizeof buf)
            abort();
        out_append(c, buf, (size_t)len);
    } else if (strcmp(n, "success") == 0) {
        if (c->mech != MECH_PLAIN && scram_verify_server(&c->scram, c->text ? c->text : "") != 0) {
            login_failed(c, &w->st.auth_fail);
            return;
        }
        c->authed = true;
        c->replace_parser = true;
        XML_StopParser(c->xp, XML_FALSE);
        send_header(c);
    } else if (strcmp(n, "failure") == 0) {
        login_failed(c, c->authed || !c->mech ? &w->st.login_errors : &w->st.auth_fail);
    } else if (strcmp(n, "error") == 0) {
        w->st.stream_errors++;
        login_failed(c, &w->st.login_errors);
    }
}

static void XMLCALL on_start(void *ud, const char *name, const char **atts)
{
    struct conn *c = ud;
    int d = ++c->depth;
    const char *ln = local(name);
    if (d == 2) {
        copy_str(c->sname, sizeof c->sname, ln);
        copy_str(c->stype, sizeof c->stype, attr(atts, "type"));
        copy_str(c->sid, sizeof c->sid, attr(atts, "id"));
        copy_str(c->sfrom, sizeof c->sfrom, attr(atts, "from"));
        c->f_starttls = c->f_mechs = c->f_bind = c->f_session = c->f_session_opt = false;
        c->has_body = c->in_mucx = c->in_error = c->roster_query = false;
        c->in_event = c->event_node_ok = false;
        c->muc_status = 0;
        c->err_cond[0] = 0;
        c->mechs = 0;
        text_reset(c);
        c->cap = CAP_NONE;
        if (!strcmp(ln, "challenge") || !strcmp(ln, "success")) {
            c->cap = CAP_SASL;
            c->cap_depth = 2;
        }
    } else if (d == 3) {
        if (!strcmp(c->sname, "features")) {
            if (!strcmp(ln, "starttls"))
                c->f_starttls = true;
            else if (!strcmp(ln, "mechanisms"))
                c->f_mechs = true;
            else if (!strcmp(ln, "bind"))
                c->f_bind = true;
            else if (!strcmp(ln, "session"))
                c->f_session = true;
        } else if (!strcmp(ln, "body") && !c->has_body && !strcmp(c->sname, "message")) {
            c->has_body = true;
            text_reset(c);
            c->cap = CAP_BODY;
            c->cap_depth = 3;
        } else if (!strcmp(ln, "error")) {
            c->in_error = true;
        } else if (!strcmp(ln, "x")) {
            const char *ns = attr(atts, "xmlns");
            c->in_mucx = ns && !strcmp(ns, "http://jabber.org/protocol/muc#user");
        } else if (!strcmp(ln, "query")) {
            const char *ns = attr(atts, "xmlns");
            c->roster_query = ns && !strcmp(ns, "jabber:iq:roster");
        } else if (!strcmp(ln, "event") && !strcmp(c->sname, "message")) {
            const char *ns = attr(atts, "xmlns");
            c->in_event = ns && !strcmp(ns, NS_PUBSUB_EVENT);
        }
    } else if (d == 4) {
        if (!strcmp(c->sname, "features")) {
            if (!strcmp(ln, "mechanism")) {
                text_reset(c);
                c->cap = CAP_MECH;
                c->cap_depth = 4;
            } else if (!strcmp(ln, "optional")) {
                c->f_session_opt = true;
            }
        } else if (c->in_error && !c->err_cond[0] && strcmp(ln, "text") != 0) {
            copy_str(c->err_cond, sizeof c->err_cond, ln);
        } else if (c->in_mucx && !strcmp(ln, "status")) {
            const char *code = attr(atts, "code");
            if (code && !strcmp(code, "110"))
                c->muc_status |= 1;
            else if (code && !strcmp(code, "201"))
                c->muc_status |= 2;
        } else if (c->roster_query && !strcmp(ln, "item")) {
            roster_item(c, attr(atts, "jid"), attr(atts, "subscription"));
        } else if (c->in_event && !strcmp(ln, "items")) {
            const char *node = attr(atts, "node");
            c->event_node_ok = node && !strcmp(node, G.o.node);
        }
    } else if (d == 5 && c->in_event && !strcmp(ln, "item") && G.o.scenario == SC_PUBSUB) {
        pubsub_item(c, attr(atts, "id"));
    }
}

static void XMLCALL on_chars(void *ud, const char *s, int len)
{
    struct conn *c = ud;
    if (c->cap == CAP_NONE || c->depth != c->cap_depth || len <= 0)
        return;
    if (c->tlen + (size_t)len + 1 > c->tcap) {
        size_t nc = (c->tcap ? c->tcap * 2 : 256);
        while (nc < c->tlen + (size_t)len + 1)
            nc *= 2;
        if (nc > 1u << 20)
            return;
        char *t = realloc(c->text, nc);
        if (!t)
            abort();
        c->text = t;
        c->tcap = nc;
    }
    memcpy(c->text + c->tlen, s, (size_t)len);
    c->tlen += (size_t)len;
    c->text[c->tlen] = 0;
}

static void XMLCALL on_end(void *ud, const char *name)
{
    struct conn *c = ud;
    (void)name;
    int d = c->depth--;
    if (d == 4 && c->cap == CAP_MECH) {
        const char *t = c->text ? c->text : "";
        if (!strcmp(t, "PLAIN"))
            c->mechs |= 1u << MECH_PLAIN;
        else if (!strcmp(t, "SCRAM-SHA-1"))
            c->mechs |= 1u << MECH_SCRAM_SHA1;
        else if (!strcmp(t, "SCRAM-SHA-256"))
            c->mechs |= 1u << MECH_SCRAM_SHA256;
        c->cap = CAP_NONE;
    } else if (d == 3) {
        if (c->cap == CAP_BODY)
            c->cap = CAP_NONE; /* keep text for handle_message */
        c->in_mucx = c->in_error = c->in_event = false;
    } else if (d == 2) {
        c->cap = CAP_NONE;
        if (c->state != CS_CLOSING)
            handle_stanza(c);
    } else if (d == 1) {
        /* server closed the stream */
        if (c->state != CS_CLOSING)
            login_failed(c, &c->w->st.login_errors);
    }
}

/* A new XML stream: reuse the connection's parser (reset is much cheaper than
 * create, which also reads random bytes for its hash salt). */
static void parser_new(struct conn *c)
{
    if (!c->xp)
        c->xp = XML_ParserCreate("UTF-8");
    else
        XML_ParserReset(c->xp, "UTF-8");
    if (!c->xp)
        abort();
    XML_SetUserData(c->xp, c);
    XML_SetElementHandler(c->xp, on_start, on_end);
    XML_SetCharacterDataHandler(c->xp, on_chars);
    c->depth = 0;
    c->cap = CAP_NONE;
}

static void feed(struct conn *c, const char *data, size_t len)
{
    if (c->state == CS_CLOSING)
        return;
    enum XML_Status s = XML_Parse(c->xp, data, (int)len, XML_FALSE);
    if (c->replace_parser) {
        /* stream restart (after <proceed/> or <success/>): bytes after the
         * restart point belong to the next stream; the server sends none
         * before our new header, so nothing is lost. */
        c->replace_parser = false;
        parser_new(c);
        return;
    }
    if (s != XML_STATUS_OK && c->state != CS_CLOSING) {
        c->w->st.parse_errors++;
        login_failed(c, &c->w->st.login_errors);
    }
}

/* ------------------------------------------------------------------ read */

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)sug;
    *buf = uv_buf_init(c->w->rbuf, sizeof c->w->rbuf);
}

static void tls_input(struct conn *c, const char *data, size_t len)
{
    struct worker *w = c->w;
    BIO_write(c->rbio, data, (int)len);
    if (!c->tls_up) {
        int r = SSL_do_handshake(c->ssl);
        mark_dirty(c);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                w->st.tls_errors++;
                login_failed(c, &w->st.login_errors);
            }
            return;
        }
        c->tls_up = true;
        parser_new(c);
        send_header(c);
    }
    for (;;) {
        if (c->state == CS_CLOSING)
            return;
        int n = SSL_read(c->ssl, w->pbuf, sizeof w->pbuf);
        if (n > 0) {
            feed(c, w->pbuf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e != SSL_ERROR_ZERO_RETURN)
            w->st.tls_errors++;
        login_failed(c, &w->st.login_errors);
        return;
    }
    if (BIO_ctrl_pending(c->wbio) > 0)
        mark_dirty(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        login_failed(c, &c->w->st.login_errors);
        return;
    }
    if (c->ssl)
        tls_input(c, buf->base, (size_t)n);
    else
        feed(c, buf->base, (size_t)n);
}

/* ------------------------------------------------------------- lifecycle */

static bool restarts_in_run(const struct conn *c)
{
    return G.o.scenario == SC_LOGIN || (G.o.scenario == SC_PRESENCE && c->churner);
}

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct worker *w = c->w;
    bool restart = restarts_in_run(c) && gphase() == PH_RUN && w->phase == PH_RUN;
    int user = c->user;
    if (c->ssl)
        SSL_free(c->ssl); /* frees the BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    c->state = CS_FREE;
    if (restart) {
        int next = user;
        if (G.o.scenario == SC_LOGIN) {
            next = w->next_user++;
            if (w->next_user >= w->user_hi)
                w->next_user = w->user_lo;
        }
        conn_start(w, (int)(c - w->slots), next);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->handle->data;
    (void)status;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Close a connection; bookkeeping depends on its state. */
static void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    if (c->state == CS_CLOSING || c->state == CS_FREE)
        return;
    if (c->state == CS_ONLINE) {
        w->online--;
        atomic_store_explicit(&G.online[c->user], 0, memory_order_relaxed);
        if (c->joined && receives(c))
            atomic_fetch_sub(&G.room_occupants[room_of(c->user)], 1);
    } else if (w->phase == PH_SETUP && G.o.scenario != SC_LOGIN) {
        w->inflight--;
    }
    c->joined = false;
    c->state = CS_CLOSING;
    c->olen = 0;
    if (c->graceful) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (G.o.scenario != SC_LOGIN && w->phase == PH_SETUP)
        pump(w);
}

/* Error path: count it (login failure or lost online session) and close. */
static void login_failed(struct conn *c, uint64_t *counter)
{
    struct worker *w = c->w;
    if (c->state == CS_CLOSING || c->state == CS_FREE)
        return;
    enum phase ph = gphase();
    bool counting = ph != PH_DONE && !(G.o.scenario == SC_LOGIN && ph != PH_RUN);
    if (counting && !w->first_err[0])
        snprintf(w->first_err, sizeof w->first_err,
                 "user %s, state %d, tls %d, authed %d, last element <%s type='%s'>", c->username,
                 (int)c->state, (int)c->tls_up, (int)c->authed, c->sname, c->stype);
    if (counting) {
        if (c->state == CS_ONLINE)
            w->st.disconnects++;
        else
            (*counter)++;
    }
    conn_close(c);
}

/* Close gracefully: send </stream:stream>, shut down the write side. */
static void conn_bye(struct conn *c)
{
    if (c->state == CS_CLOSING || c->state == CS_FREE)
        return;
    if (c->state != CS_CONNECTING) {
        send_str(c, "</stream:stream>");
        flush_conn(c);
        if (c->state == CS_CLOSING)
            return;
        c->graceful = true;
    }
    conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->handle->data;
    struct worker *w = c->w;
    if (c->state == CS_CLOSING)
        return;
    if (status < 0) {
        if (!(G.o.scenario == SC_LOGIN && gphase() != PH_RUN))
            w->st.connect_errors++;
        if (w->st.connect_errors == 1)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
        c->state = CS_LOGIN;
        login_failed(c, &w->st.login_errors);
        return;
    }
    c->state = CS_LOGIN;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (G.o.direct_tls) {
        tls_start(c);
    } else {
        parser_new(c);
        send_header(c);
    }
}

/* Start a login on slot i (its buffers, parser and SCRAM state are reused). */
static void conn_start(struct worker *w, int i, int user)
{
    struct conn *c = &w->slots[i];
    c->w = w;
    c->user = user;
    c->slot = G.o.scenario == SC_LOGIN ? w->id + i * G.nthreads : user;
    c->state = CS_CONNECTING;
    c->tls_up = c->authed = c->graceful = c->joined = c->replace_parser = false;
    c->mech = MECH_AUTO;
    c->sname[0] = c->stype[0] = 0;
    c->olen = 0;
    c->t_start = now_ns();
    c->t_join = c->t_online = 0;
    c->churner = G.o.scenario == SC_PRESENCE && is_churner(user);
    snprintf(c->username, sizeof c->username, G.o.user_fmt, user + G.o.user_offset);
    w->st.attempts++;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    int r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&G.addr, on_connect);
    if (r < 0) {
        w->st.connect_errors++;
        if (w->st.connect_errors == 1)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(r));
        c->state = CS_LOGIN; /* so that conn_close does the bookkeeping */
        login_failed(c, &w->st.login_errors);
    }
}

/* ------------------------------------------------------------- scenarios */

static void worker_finish(struct worker *w);

/* Setup: does this user log in before the measured phase? */
static bool logs_in_at_setup(int user)
{
    if (G.o.scenario == SC_PRESENCE && !G.o.setup_rosters)
        return !is_churner(user);
    return true;
}

/* Start logins (setup phase) while under the concurrency and rate limits. */
static void pump(struct worker *w)
{
    if (w->phase != PH_SETUP)
        return;
    int total = w->user_hi - w->user_lo;
    double allowed = total;
    if (w->rate > 0 && G.o.scenario == SC_IDLE) {
        double el = (double)(now_ns() - G.t_begin) / 1e9;
        allowed = w->rate * el + 1;
    }
    while (w->started < total && w->inflight < w->concurrency && w->started < allowed) {
        int i = w->started++;
        if (!logs_in_at_setup(w->user_lo + i))
            continue;
        w->inflight++;
        conn_start(w, i, w->user_lo + i);
    }
    if (w->started >= total && w->inflight == 0)
        atomic_store(&w->done_phase, PH_SETUP);
}

static void on_online(struct conn *c)
{
    struct worker *w = c->w;
    uint64_t t = now_ns();
    w->t_last_login = t;
    enum phase ph = gphase();
    if (G.o.scenario == SC_LOGIN) {
        if (ph == PH_RUN)
            w->st.run_logins++;
        w->st.login_ok++;
        c->state = CS_LOGIN;
        conn_bye(c);
        return;
    }
    if (c->churner && ph == PH_RUN) {
        w->st.run_logins++;
        send_roster_get(c); /* presence follows the roster result */
    } else {
        send_str(c, "<presence/>");
    }
    c->state = CS_ONLINE;
    atomic_store_explicit(&G.online[c->user], 1, memory_order_relaxed);
    w->online++;
    if (w->phase == PH_SETUP)
        w->inflight--;
    w->st.login_ok++;
    pump(w);
}

/* Append "<body>lg <now ns> <seq></body></message>" without printf. */
static size_t put_body(char *p, uint64_t seq)
{
    static const char open[] = "'><body>lg ";
    static const char close[] = "</body></message>";
    size_t k = 0;
    memcpy(p, open, sizeof open - 1);
    k += sizeof open - 1;
    k += fmt_u64(p + k, now_ns());
    p[k++] = ' ';
    k += fmt_u64(p + k, seq);
    memcpy(p + k, close, sizeof close - 1);
    return k + sizeof close - 1;
}

/* A random online session of this worker (NULL if none found quickly). */
static struct conn *pick_local(struct worker *w, bool need_joined)
{
    for (int tries = 0; tries < 64; tries++) {
        struct conn *c = &w->slots[rnd(w) % (uint64_t)w->nslots];
        if (c->state == CS_ONLINE && (!need_joined || c->joined))
            return c;
    }
    return NULL;
}

static void send_chat(struct worker *w)
{
    struct conn *from = pick_local(w, false);
    if (!from)
        return;
    int to = -1;
    for (int tries = 0; tries < 64 && to < 0; tries++) {
        int u = (int)(rnd(w) % (uint64_t)G.o.users);
        if (u != from->user && atomic_load_explicit(&G.online[u], memory_order_relaxed))
            to = u;
    }
    if (to < 0)
        return;
    char buf[1024];
    static const char head[] = "<message type='chat' to='";
    size_t k = sizeof head - 1;
    memcpy(buf, head, k);
    memcpy(buf + k, G.full_jid[to], G.full_len[to]);
    k += G.full_len[to];
    w->st.sent++;
    k += put_body(buf + k, w->st.sent);
    out_append(from, buf, k);
}

static void send_groupchat(struct worker *w)
{
    struct conn *from = pick_local(w, true);
    if (!from)
        return;
    char buf[512];
    int k = snprintf(buf, sizeof buf, "<message type='groupchat' to='bench%d@%s",
                     room_of(from->user), G.o.muc_domain);
    int occupants = atomic_load(&G.room_occupants[room_of(from->user)]);
    uint64_t seq = atomic_fetch_add(&G.msg_seq, 1);
    if (seq < G.msg_cap)
        G.msg_exp[seq] = (uint32_t)occupants;
    w->st.sent++;
    w->st.expected += (uint64_t)occupants;
    k += (int)put_body(buf + k, seq);
    out_append(from, buf, (size_t)k);
}

/* pubsub: the publisher (user 0, on the first worker) publishes one item;
 * every subscriber online at that moment is owed one notification. */
static void send_publish(struct worker *w)
{
    struct conn *from = &w->slots[0];
    if (from->user != 0 || from->state != CS_ONLINE || !from->joined)
        return;
    int subs = atomic_load(&G.room_occupants[0]);
    uint64_t seq = atomic_fetch_add(&G.msg_seq, 1);
    if (seq < G.msg_cap)
        G.msg_exp[seq] = (uint32_t)subs;
    w->st.sent++;
    w->st.expected += (uint64_t)subs;
    char buf[1024], num[24], ts[24];
    num[fmt_u64(num, seq)] = 0;
    ts[fmt_u64(ts, now_ns())] = 0;
    int k = snprintf(buf, sizeof buf,
                     "<iq type='set' to='%s' id='pub%s'><pubsub xmlns='" NS_PUBSUB "'>"
                     "<publish node='%s'><item id='%s-%s'>"
                     "<entry xmlns='http://www.w3.org/2005/Atom'><title>%s</title></entry>"
                     "</item></publish></pubsub></iq>",
                     G.o.pubsub_domain, num, G.o.node, num, ts, num);
    if (k < 0 || (size_t)k >= sizeof buf)
        abort();
    out_append(from, buf, (size_t)k);
}

static void on_send_timer(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (w->phase != PH_RUN)
        return;
    uint64_t now = now_ns();
    double target = w->rate * (double)(now - w->t_send_begin) / 1e9;
    /* bounded: at most one second's worth per tick if the loop fell behind */
    for (int n = 0; (double)w->sent_in_run < target && n < (int)w->rate + 1; n++) {
        w->sent_in_run++;
        if (G.o.scenario == SC_MUC)
            send_groupchat(w);
        else if (G.o.scenario == SC_PUBSUB)
            send_publish(w);
        else
            send_chat(w);
    }
}

/* muc: start joins up to the concurrency window. */
static void join_pump(struct worker *w)
{
    while (w->join_next < w->nslots && w->join_inflight < w->concurrency) {
        struct conn *c = &w->slots[w->join_next++];
        bool owner = is_owner(c);
        if ((w->phase == PH_JOIN_OWNERS) != owner || c->state != CS_ONLINE)
            continue;
        w->join_target++;
        w->join_inflight++;
        muc_join(c);
    }
    if (w->join_next >= w->nslots && w->join_done_n >= w->join_target)
        atomic_store(&w->done_phase, w->phase);
}

/* Act on a phase change published by the coordinator. */
static void enter_phase(struct worker *w, enum phase ph)
{
    w->phase = ph;
    switch (ph) {
    case PH_JOIN_OWNERS:
    case PH_JOIN:
        w->join_next = w->join_inflight = w->join_done_n = w->join_target = 0;
        join_pump(w);
        break;
    case PH_ROSTER:
        for (int i = 0; i < w->nslots; i++)
            if (w->slots[i].state == CS_ONLINE)
                send_roster_get(&w->slots[i]);
        break;
    case PH_RUN:
        if (G.o.scenario == SC_CHAT || G.o.scenario == SC_MUC || G.o.scenario == SC_PUBSUB) {
            w->t_send_begin = atomic_load(&G.t_run_begin);
            w->sent_in_run = 0;
            w->st.stray = 0;
            uv_timer_start(&w->send_timer, on_send_timer, 1, 1);
        } else if (G.o.scenario == SC_PRESENCE) {
            for (int i = 0; i < w->nslots; i++) {
                struct conn *c = &w->slots[i];
                if (!is_churner(w->user_lo + i))
                    continue;
                if (c->state == CS_FREE)
                    conn_start(w, i, w->user_lo + i);
                else
                    conn_bye(c); /* on_closed starts it again */
            }
        }
        break;
    case PH_DRAIN:
        uv_timer_stop(&w->send_timer);
        break;
    case PH_DONE:
        worker_finish(w);
        break;
    default:
        break;
    }
}

static void publish(struct worker *w)
{
    atomic_store_explicit(&w->pub_sent, w->st.sent, memory_order_relaxed);
    atomic_store_explicit(&w->pub_delivered, w->st.delivered, memory_order_relaxed);
    atomic_store_explicit(&w->pub_errors, w->st.msg_errors, memory_order_relaxed);
    atomic_store_explicit(&w->pub_expected, w->st.expected, memory_order_relaxed);
    atomic_store_explicit(&w->pub_online, w->online, memory_order_relaxed);
    atomic_store_explicit(&w->pub_joins, w->st.joins_ok + w->st.join_errors, memory_order_relaxed);
}

static void on_wake(uv_async_t *h)
{
    struct worker *w = h->data;
    enum phase ph = gphase();
    if (w->phase != ph && w->phase != PH_DONE)
        enter_phase(w, ph);
    publish(w);
}

static void on_tick(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = now_ns();
    /* timeouts: scanning thousands of slots every 10 ms would cost, 100 ms
     * resolution is plenty for a timeout of seconds */
    if (now - w->last_timeout_scan > 100000000ull) {
        uint64_t to = (uint64_t)(G.o.timeout * 1e9);
        uint64_t dwell = (uint64_t)(G.o.dwell * 1e9);
        w->last_timeout_scan = now;
        for (int i = 0; i < w->nslots; i++) {
            struct conn *c = &w->slots[i];
            if ((c->state == CS_CONNECTING || c->state == CS_LOGIN) && now - c->t_start > to)
                login_failed(c, &w->st.login_timeouts);
            else if ((w->phase == PH_JOIN_OWNERS || w->phase == PH_JOIN) && c->state == CS_ONLINE &&
                     c->t_join && now - c->t_join > to)
                muc_join_failed(c, "no answer to the join");
            else if (c->churner && w->phase == PH_RUN && c->state == CS_ONLINE && c->t_online &&
                     now - c->t_online >= dwell)
                conn_bye(c);
        }
    }
    if (w->phase == PH_SETUP)
        pump(w);
    if (w->phase == PH_JOIN_OWNERS || w->phase == PH_JOIN)
        join_pump(w);
    if (w->phase == PH_ROSTER && (uint64_t)w->online <= w->st.rosters_done)
        atomic_store(&w->done_phase, PH_ROSTER);
    publish(w);
}

static void worker_finish(struct worker *w)
{
    for (int i = 0; i < w->nslots; i++)
        conn_bye(&w->slots[i]);
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_close((uv_handle_t *)&w->send_timer, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->prep, NULL);
    uv_close((uv_handle_t *)&w->check, NULL);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    enum phase start = gphase();
    w->phase = PH_SETUP;
    uv_timer_start(&w->tick, on_tick, 10, 10);
    uv_prepare_start(&w->prep, on_prepare);
    uv_check_start(&w->check, on_check);
    if (start == PH_RUN) { /* login storm: the loops start right away */
        w->phase = PH_RUN;
        for (int i = 0; i < w->nslots; i++) {
            int u = w->next_user++;
            if (w->next_user >= w->user_hi)
                w->next_user = w->user_lo;
            conn_start(w, i, u);
        }
    } else {
        pump(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    publish(w);
    return NULL;
}

/* --------------------------------------------------------- coordinator */

/* CPU seconds used by this process since r0 (all threads). */
static double self_cpu_since(const struct rusage *r0)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec - r0->ru_utime.tv_sec) +
           (double)(ru.ru_stime.tv_sec - r0->ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec - r0->ru_utime.tv_usec) / 1e6 +
           (double)(ru.ru_stime.tv_usec - r0->ru_stime.tv_usec) / 1e6;
}

static void set_phase(enum phase ph)
{
    atomic_store_explicit(&G.phase, ph, memory_order_release);
    for (int i = 0; i < G.nthreads; i++)
        uv_async_send(&G.w[i].wake);
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The measured phase: stop early once the server turned out not to
 * support the scenario. */
static void run_for(double s)
{
    uint64_t end = now_ns() + (uint64_t)(s * 1e9);
    while (now_ns() < end && !atomic_load(&G.unsupported))
        sleep_s(0.01);
}

/* Wait until every worker finished phase ph, at most limit_s seconds. */
static bool wait_all(enum phase ph, double limit_s)
{
    uint64_t deadline = now_ns() + (uint64_t)(limit_s * 1e9);
    for (;;) {
        int done = 0;
        for (int i = 0; i < G.nthreads; i++)
            done += atomic_load(&G.w[i].done_phase) >= (int)ph;
        if (done == G.nthreads)
            return true;
        if (now_ns() > deadline)
            return false;
        sleep_s(0.005);
    }
}

struct totals {
    uint64_t sent, delivered, errors, expected, joins;
    int online;
};

static struct totals sum_published(void)
{
    struct totals t = {0};
    for (int i = 0; i < G.nthreads; i++) {
        t.sent += atomic_load(&G.w[i].pub_sent);
        t.delivered += atomic_load(&G.w[i].pub_delivered);
        t.errors += atomic_load(&G.w[i].pub_errors);
        t.expected += atomic_load(&G.w[i].pub_expected);
        t.online += atomic_load(&G.w[i].pub_online);
        t.joins += atomic_load(&G.w[i].pub_joins);
    }
    return t;
}

/* Figures the coordinator collects at phase boundaries. */
struct run_info {
    uint64_t t_setup_end, t_run_begin, t_run_end, t_roster_begin, t_roster_end;
    uint64_t t_join_begin, t_join_end; /* muc: both join phases */
    uint64_t cpu_run_begin, cpu_run_end;
    double self_run_begin, self_run_end; /* this process's CPU seconds */
    struct procmem mem_before, mem_after;
    struct procmem mem_joined; /* pubsub: after the subscriptions, before publishing */
    bool mem_measured, setup_incomplete;
    int online_at_measure, held;
    const char *stalled; /* phase that hit its time limit */
};

static uint64_t last_login_time(void)
{
    uint64_t t = 0;
    for (int i = 0; i < G.nthreads; i++)
        if (G.w[i].t_last_login > t)
            t = G.w[i].t_last_login;
    return t ? t : now_ns();
}

static const struct rusage zero_rusage;

static void begin_run(struct run_info *ri)
{
    ri->t_run_begin = now_ns();
    ri->cpu_run_begin = read_proccpu(G.o.server_pid);
    ri->self_run_begin = self_cpu_since(&zero_rusage);
    atomic_store(&G.t_run_begin, ri->t_run_begin);
    set_phase(PH_RUN);
}

/* Drain: wait until everything sent has arrived (or failed), bounded. */
static void drain(struct run_info *ri, bool muc)
{
    set_phase(PH_DRAIN);
    ri->t_run_end = now_ns();
    uint64_t deadline = ri->t_run_end + (uint64_t)(G.o.drain * 1e9);
    sleep_s(0.02); /* let the workers publish their final send counts */
    while (now_ns() < deadline) {
        struct totals t = sum_published();
        if (muc ? t.delivered >= t.expected : t.delivered + t.errors >= t.sent)
            break;
        sleep_s(0.005);
    }
    ri->cpu_run_end = read_proccpu(G.o.server_pid);
    ri->self_run_end = self_cpu_since(&zero_rusage);
}

static void coordinate(struct run_info *ri)
{
    const struct opts *o = &G.o;
    double setup_limit = o->timeout * ((double)o->users / o->concurrency + 2);
    if (o->scenario == SC_LOGIN) {
        ri->t_run_begin = G.t_begin;
        ri->cpu_run_begin = read_proccpu(o->server_pid);
        ri->self_run_begin = self_cpu_since(&zero_rusage);
        sleep_s(o->duration);
        ri->t_run_end = now_ns();
        ri->cpu_run_end = read_proccpu(o->server_pid);
        ri->self_run_end = self_cpu_since(&zero_rusage);
        set_phase(PH_DONE);
        return;
    }
    if (!wait_all(PH_SETUP, setup_limit))
        ri->stalled = "setup";
    ri->t_setup_end = last_login_time();
    switch (o->scenario) {
    case SC_IDLE: {
        double s = o->settle < o->hold ? o->settle : o->hold;
        sleep_s(s);
        if (o->server_pid > 0 && read_procmem(o->server_pid, &ri->mem_after) == 0) {
            ri->mem_measured = true;
            ri->online_at_measure = sum_published().online;
        }
        sleep_s(o->hold - (double)(now_ns() - ri->t_setup_end) / 1e9);
        ri->held = sum_published().online;
        break;
    }
    case SC_CHAT:
        if (sum_published().online < 2) {
            fprintf(stderr, "loadgen: fewer than 2 sessions online, cannot chat\n");
            break;
        }
        sleep_s(o->warm);
        begin_run(ri);
        sleep_s(o->duration);
        drain(ri, false);
        break;
    case SC_MUC:
    case SC_PUBSUB:
        ri->t_join_begin = now_ns();
        set_phase(PH_JOIN_OWNERS);
        if (!wait_all(PH_JOIN_OWNERS, o->timeout + 5))
            ri->stalled = o->scenario == SC_PUBSUB ? "node creation" : "room creation";
        if (atomic_load(&G.unsupported))
            break;
        set_phase(PH_JOIN);
        /* each join is answered with the presence of every occupant, so
         * large rooms take a while: allow the per-join timeout per window */
        {
            /* large rooms take long (each join is answered with every
             * occupant's presence): say how far the joins got every 10 s */
            double limit = o->timeout * ((double)o->users / o->concurrency + 2), waited = 0;
            bool done;
            while (!(done = wait_all(PH_JOIN, 10)) && (waited += 10) < limit &&
                   !atomic_load(&G.unsupported))
                fprintf(stderr, "loadgen: %" PRIu64 " of %d %s answered after %.0f s\n",
                        sum_published().joins, o->users,
                        o->scenario == SC_PUBSUB ? "create/subscribe requests" : "joins",
                        (double)(now_ns() - ri->t_join_begin) / 1e9);
            if (!done && !atomic_load(&G.unsupported))
                ri->stalled = "joins";
        }
        ri->t_join_end = now_ns();
        if (atomic_load(&G.unsupported))
            break;
        sleep_s(o->warm);
        if (o->scenario == SC_PUBSUB && o->server_pid > 0 &&
            read_procmem(o->server_pid, &ri->mem_joined) == 0)
            ri->mem_measured = true;
        begin_run(ri);
        sleep_s(o->duration);
        drain(ri, true);
        if (ri->mem_measured && read_procmem(o->server_pid, &ri->mem_after) != 0)
            ri->mem_measured = false;
        break;
    case SC_PRESENCE:
        if (o->setup_rosters) {
            ri->t_roster_begin = now_ns();
            set_phase(PH_ROSTER);
            /* the workers only count, so check for "unsupported" as we wait */
            for (double waited = 0; waited < o->timeout * 4; waited += 0.05) {
                if (wait_all(PH_ROSTER, 0.05) || atomic_load(&G.unsupported))
                    break;
            }
            if (!wait_all(PH_ROSTER, 0) && !atomic_load(&G.unsupported))
                ri->stalled = "roster setup";
            ri->t_roster_end = now_ns();
            if (atomic_load(&G.unsupported))
                break;
        }
        sleep_s(o->warm);
        begin_run(ri);
        run_for(o->duration);
        ri->t_run_end = now_ns();
        ri->cpu_run_end = read_proccpu(o->server_pid);
        ri->self_run_end = self_cpu_since(&zero_rusage);
        break;
    default:
        break;
    }
    set_phase(PH_DONE);
}

/* ---------------------------------------------------------------- report */

static const char *tls_name(void)
{
    return G.o.direct_tls ? "direct" : G.o.starttls ? "starttls" : "none";
}

/* Per fanned-out message (MUC message, pubsub item): the copies received
 * against the recipients at send time. */
struct delivery_check {
    uint64_t nmsg, checked, complete, short_msgs, over_msgs, lost, dups;
};

static struct delivery_check check_deliveries(void)
{
    struct delivery_check d = {0};
    d.nmsg = atomic_load(&G.msg_seq);
    d.checked = d.nmsg < G.msg_cap ? d.nmsg : G.msg_cap;
    for (uint64_t i = 0; i < d.checked; i++) {
        uint32_t got = atomic_load(&G.msg_got[i]), exp = G.msg_exp[i];
        if (got == exp) {
            d.complete++;
        } else if (got < exp) {
            d.short_msgs++;
            d.lost += exp - got;
        } else {
            d.over_msgs++;
            d.dups += got - exp;
        }
    }
    return d;
}

static void print_latency(FILE *f, bool json, const struct hist *h)
{
    double mean = h->n ? (double)h->sum / (double)h->n : 0;
    if (json)
        fprintf(f,
                ",\n  \"latency_us\": {\"min\": %.1f, \"mean\": %.1f, \"p50\": %.1f, \"p99\": "
                "%.1f, \"p999\": %.1f, \"max\": %.1f}",
                (double)h->min / 1e3, mean / 1e3, hist_pct(h, 50) / 1e3, hist_pct(h, 99) / 1e3,
                hist_pct(h, 99.9) / 1e3, (double)h->max / 1e3);
    else
        fprintf(f,
                "  latency (us)     p50 %.1f  p99 %.1f  p99.9 %.1f  (min %.1f mean %.1f max "
                "%.1f)\n",
                hist_pct(h, 50) / 1e3, hist_pct(h, 99) / 1e3, hist_pct(h, 99.9) / 1e3,
                (double)h->min / 1e3, mean / 1e3, (double)h->max / 1e3);
}

static void report(const struct run_info *ri, const struct stats *s, const struct hist *lat,
                   const struct scram_cache *cache, const char *first_err, double self_cpu, FILE *f,
                   bool json)
{
    const struct opts *o = &G.o;
    double setup_s = ri->t_setup_end > G.t_begin ? (double)(ri->t_setup_end - G.t_begin) / 1e9 : 0;
    double wall = (double)(now_ns() - G.t_begin) / 1e9;
    bool pid = o->server_pid > 0;
    double cpu_us = pid ? ticks_to_us(ri->cpu_run_end - ri->cpu_run_begin) : 0;
    double el =
        ri->t_run_end > ri->t_run_begin ? (double)(ri->t_run_end - ri->t_run_begin) / 1e9 : 0;
    bool unsup = atomic_load(&G.unsupported);
    double run_cpu = ri->self_run_end - ri->self_run_begin;

    if (json) {
        fprintf(f,
                "{\n  \"scenario\": \"%s\",\n  \"host\": \"%s\",\n  \"port\": %d,\n"
                "  \"tls\": \"%s\",\n  \"mech\": \"%s\",\n  \"users\": %d,\n"
                "  \"concurrency\": %d,\n  \"threads\": %d,\n",
                scenario_names[o->scenario], o->host, o->port, tls_name(), mech_name(o->mech),
                o->users, o->concurrency, G.nthreads);
        fprintf(f, "  \"unsupported\": %s,\n", unsup ? "true" : "false");
        if (unsup) {
            char why[sizeof G.unsupported_why];
            copy_str(why, sizeof why, G.unsupported_why);
            for (char *q = why; *q; q++)
                if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
                    *q = '?'; /* keep the JSON string valid */
            fprintf(f, "  \"unsupported_reason\": \"%s\",\n", why);
        }
        if (ri->stalled)
            fprintf(f, "  \"stalled_phase\": \"%s\",\n", ri->stalled);
        fprintf(f,
                "  \"errors\": {\"connect\": %" PRIu64 ", \"auth_fail\": %" PRIu64
                ", \"login_timeouts\": %" PRIu64 ", \"login_other\": %" PRIu64
                ", \"disconnects\": %" PRIu64 ", \"stream_errors\": %" PRIu64
                ", \"parse_errors\": %" PRIu64 ", \"tls_errors\": %" PRIu64 "},\n",
                s->connect_errors, s->auth_fail, s->login_timeouts, s->login_errors, s->disconnects,
                s->stream_errors, s->parse_errors, s->tls_errors);
        fprintf(f, "  \"scram_cache\": {\"pbkdf2_runs\": %" PRIu64 ", \"hits\": %" PRIu64 "},\n",
                cache->misses, cache->hits);
        fprintf(f, "  \"loadgen_cpu_s\": %.3f,\n  \"wall_s\": %.3f", self_cpu, wall);
        if (el > 0)
            fprintf(f, ",\n  \"loadgen_run_cpu_s\": %.3f", run_cpu);
    } else {
        fprintf(f, "scenario %s  %s:%d  tls=%s  mech=%s  users=%d  concurrency=%d  threads=%d\n",
                scenario_names[o->scenario], o->host, o->port, tls_name(), mech_name(o->mech),
                o->users, o->concurrency, G.nthreads);
        if (unsup)
            fprintf(f, "  UNSUPPORTED      %s\n", G.unsupported_why);
        if (ri->stalled)
            fprintf(f, "  STALLED          the %s phase hit its time limit\n", ri->stalled);
    }

    if (o->scenario != SC_LOGIN) {
        double rate = setup_s > 0 ? (double)s->login_ok / setup_s : 0;
        uint64_t setup_logins = s->login_ok - s->run_logins;
        if (json)
            fprintf(f,
                    ",\n  \"logins_ok\": %" PRIu64 ",\n  \"setup_s\": %.3f,\n"
                    "  \"setup_logins_per_s\": %.1f",
                    setup_logins, setup_s, rate);
        else
            fprintf(f, "  logins ok        %" PRIu64 " of %d in %.3f s  = %.1f logins/s\n",
                    setup_logins, o->users, setup_s, rate);
    }
    if (o->scenario == SC_IDLE) {
        double per_rss = 0, per_pss = 0;
        bool mem = ri->mem_measured && ri->online_at_measure > 0;
        if (mem) {
            per_rss = (double)(ri->mem_after.rss_kb - ri->mem_before.rss_kb) * 1024 /
                      ri->online_at_measure;
            per_pss = (double)(ri->mem_after.pss_kb - ri->mem_before.pss_kb) * 1024 /
                      ri->online_at_measure;
        }
        if (json) {
            fprintf(f, ",\n  \"hold_s\": %.1f,\n  \"sessions_held\": %d", o->hold, ri->held);
            if (mem)
                fprintf(f,
                        ",\n  \"server_mem\": {\"sessions_at_measure\": %d, "
                        "\"rss_before_kb\": %ld, \"rss_after_kb\": %ld, "
                        "\"pss_before_kb\": %ld, \"pss_after_kb\": %ld, "
                        "\"rss_bytes_per_session\": %.0f, \"pss_bytes_per_session\": %.0f}",
                        ri->online_at_measure, ri->mem_before.rss_kb, ri->mem_after.rss_kb,
                        ri->mem_before.pss_kb, ri->mem_after.pss_kb, per_rss, per_pss);
        } else {
            fprintf(f, "  sessions held    %d at end of %.1f s hold\n", ri->held, o->hold);
            if (mem) {
                fprintf(
                    f, "  server VmRSS     %ld kB -> %ld kB   = %.0f bytes/session (%d sessions)\n",
                    ri->mem_before.rss_kb, ri->mem_after.rss_kb, per_rss, ri->online_at_measure);
                fprintf(f, "  server PSS       %ld kB -> %ld kB   = %.0f bytes/session\n",
                        ri->mem_before.pss_kb, ri->mem_after.pss_kb, per_pss);
            }
        }
    }
    if (o->scenario == SC_LOGIN) {
        double rate = el > 0 ? (double)s->run_logins / el : 0;
        double per = s->run_logins ? cpu_us / (double)s->run_logins : 0;
        if (json) {
            fprintf(f,
                    ",\n  \"duration_s\": %.3f,\n  \"logins\": %" PRIu64
                    ",\n  \"logins_per_s\": %.1f",
                    el, s->run_logins, rate);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_login\": %.1f",
                        cpu_us / 1e6, per);
        } else {
            fprintf(f, "  logins           %" PRIu64 " in %.3f s  = %.1f logins/s\n", s->run_logins,
                    el, rate);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.1f us/login\n", cpu_us / 1e6, per);
        }
    }
    if (o->scenario == SC_CHAT) {
        double off = el > 0 ? (double)s->sent / el : 0;
        double del = el > 0 ? (double)s->delivered / el : 0;
        double per = s->delivered ? cpu_us / (double)s->delivered : 0;
        if (json) {
            fprintf(f,
                    ",\n  \"duration_s\": %.3f,\n  \"sent\": %" PRIu64
                    ",\n  \"delivered\": %" PRIu64 ",\n  \"msg_errors\": %" PRIu64
                    ",\n  \"offered_msgs_per_s\": %.1f,"
                    "\n  \"delivered_msgs_per_s\": %.1f",
                    el, s->sent, s->delivered, s->msg_errors, off, del);
            print_latency(f, true, lat);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_msg\": %.2f",
                        cpu_us / 1e6, per);
        } else {
            fprintf(f,
                    "  messages         sent %" PRIu64 ", delivered %" PRIu64 ", errors %" PRIu64
                    " over %.3f s\n",
                    s->sent, s->delivered, s->msg_errors, el);
            fprintf(f, "  rate             offered %.1f msg/s, delivered %.1f msg/s\n", off, del);
            print_latency(f, false, lat);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.2f us/delivered msg\n", cpu_us / 1e6,
                        per);
        }
    }
    if (o->scenario == SC_MUC) {
        double off = el > 0 ? (double)s->sent / el : 0;
        double del = el > 0 ? (double)s->delivered / el : 0;
        double per = s->delivered ? cpu_us / (double)s->delivered : 0;
        double join_s = ri->t_join_end > ri->t_join_begin
                            ? (double)(ri->t_join_end - ri->t_join_begin) / 1e9
                            : 0;
        /* per message: copies received against occupants at send time */
        struct delivery_check dc = check_deliveries();
        uint64_t nmsg = dc.nmsg, checked = dc.checked, complete = dc.complete,
                 short_msgs = dc.short_msgs, over_msgs = dc.over_msgs, lost = dc.lost,
                 dups = dc.dups;
        if (json) {
            fprintf(f,
                    ",\n  \"join_s\": %.3f,\n  \"delivery_check\": {\"messages\": %" PRIu64
                    ", \"checked\": %" PRIu64 ", \"complete\": %" PRIu64 ", \"short\": %" PRIu64
                    ", \"over\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"duplicates\": %" PRIu64
                    ", \"misrouted\": %" PRIu64 "}",
                    join_s, nmsg, checked, complete, short_msgs, over_msgs, lost, dups,
                    s->misrouted);
            fprintf(f,
                    ",\n  \"rooms\": %d,\n  \"room_size\": %d,\n  \"joins_ok\": %" PRIu64
                    ",\n  \"join_errors\": %" PRIu64 ",\n  \"rooms_created\": %" PRIu64
                    ",\n  \"duration_s\": %.3f,\n  \"sent\": %" PRIu64
                    ",\n  \"expected_deliveries\": %" PRIu64 ",\n  \"delivered\": %" PRIu64
                    ",\n  \"msg_errors\": %" PRIu64 ",\n  \"offered_msgs_per_s\": %.1f"
                    ",\n  \"deliveries_per_s\": %.1f",
                    o->rooms, o->room_size, s->joins_ok, s->join_errors, s->rooms_made, el, s->sent,
                    s->expected, s->delivered, s->msg_errors, off, del);
            print_latency(f, true, lat);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_delivery\": %.3f",
                        cpu_us / 1e6, per);
        } else {
            fprintf(f,
                    "  rooms            %d x %d occupants: %" PRIu64 " joined, %" PRIu64
                    " join errors, %" PRIu64 " rooms created\n",
                    o->rooms, o->room_size, s->joins_ok, s->join_errors, s->rooms_made);
            fprintf(f,
                    "  messages         sent %" PRIu64 " (%.1f/s), deliveries %" PRIu64
                    " of %" PRIu64 " expected, errors %" PRIu64 " over %.3f s\n",
                    s->sent, off, s->delivered, s->expected, s->msg_errors, el);
            fprintf(f, "  joins            %.3f s for both join phases\n", join_s);
            fprintf(f,
                    "  delivery check   %" PRIu64 " of %" PRIu64 " messages complete; %" PRIu64
                    " short (%" PRIu64 " copies lost), %" PRIu64 " over (%" PRIu64
                    " duplicates), %" PRIu64 " from a wrong room\n",
                    complete, checked, short_msgs, lost, over_msgs, dups, s->misrouted);
            fprintf(f, "  deliveries/s     %.1f\n", del);
            print_latency(f, false, lat);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.3f us/delivery\n", cpu_us / 1e6, per);
        }
    }
    if (o->scenario == SC_PUBSUB) {
        double off = el > 0 ? (double)s->sent / el : 0;
        double del = el > 0 ? (double)s->delivered / el : 0;
        double per = s->delivered ? cpu_us / (double)s->delivered : 0;
        double sub_s = ri->t_join_end > ri->t_join_begin
                           ? (double)(ri->t_join_end - ri->t_join_begin) / 1e9
                           : 0;
        /* per item: notifications received against subscribers at publish time */
        struct delivery_check dc = check_deliveries();
        uint64_t nmsg = dc.nmsg, checked = dc.checked, complete = dc.complete,
                 short_msgs = dc.short_msgs, over_msgs = dc.over_msgs, lost = dc.lost,
                 dups = dc.dups;
        if (json) {
            fprintf(f,
                    ",\n  \"subscribe_s\": %.3f,\n  \"delivery_check\": {\"messages\": %" PRIu64
                    ", \"checked\": %" PRIu64 ", \"complete\": %" PRIu64 ", \"short\": %" PRIu64
                    ", \"over\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"duplicates\": %" PRIu64
                    ", \"misrouted\": %" PRIu64 "}",
                    sub_s, nmsg, checked, complete, short_msgs, over_msgs, lost, dups,
                    s->misrouted);
            fprintf(f,
                    ",\n  \"pubsub_domain\": \"%s\",\n  \"node\": \"%s\",\n  \"max_items\": %d"
                    ",\n  \"subscribers\": %d,\n  \"subscribed\": %" PRIu64
                    ",\n  \"join_errors\": %" PRIu64 ",\n  \"nodes_created\": %" PRIu64
                    ",\n  \"duration_s\": %.3f,\n  \"sent\": %" PRIu64
                    ",\n  \"publishes_acked\": %" PRIu64 ",\n  \"expected_deliveries\": %" PRIu64
                    ",\n  \"delivered\": %" PRIu64 ",\n  \"msg_errors\": %" PRIu64
                    ",\n  \"stray\": %" PRIu64
                    ",\n  \"offered_msgs_per_s\": %.1f,\n  \"deliveries_per_s\": %.1f",
                    o->pubsub_domain, o->node, o->max_items, o->subscribers,
                    s->joins_ok > 0 ? s->joins_ok - 1 : 0, s->join_errors, s->rooms_made, el,
                    s->sent, s->pub_acked, s->expected, s->delivered, s->msg_errors, s->stray, off,
                    del);
            print_latency(f, true, lat);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_delivery\": %.3f",
                        cpu_us / 1e6, per);
            if (ri->mem_measured)
                fprintf(
                    f,
                    ",\n  \"server_mem\": {\"rss_before_kb\": %ld, \"rss_subscribed_kb\": %ld, "
                    "\"rss_after_kb\": %ld, \"pss_before_kb\": %ld, \"pss_subscribed_kb\": %ld, "
                    "\"pss_after_kb\": %ld}",
                    ri->mem_before.rss_kb, ri->mem_joined.rss_kb, ri->mem_after.rss_kb,
                    ri->mem_before.pss_kb, ri->mem_joined.pss_kb, ri->mem_after.pss_kb);
        } else {
            fprintf(f,
                    "  node             %s on %s (max_items %d): %" PRIu64
                    " of %d subscribed, %" PRIu64 " errors, %" PRIu64 " created\n",
                    o->node, o->pubsub_domain, o->max_items, s->joins_ok > 0 ? s->joins_ok - 1 : 0,
                    o->subscribers, s->join_errors, s->rooms_made);
            fprintf(f,
                    "  publishes        sent %" PRIu64 " (%.1f/s), acked %" PRIu64
                    ", notifications %" PRIu64 " of %" PRIu64 " expected, errors %" PRIu64
                    " over %.3f s\n",
                    s->sent, off, s->pub_acked, s->delivered, s->expected, s->msg_errors, el);
            fprintf(f, "  subscribe        %.3f s for node creation and all subscriptions\n",
                    sub_s);
            fprintf(f,
                    "  delivery check   %" PRIu64 " of %" PRIu64 " items complete; %" PRIu64
                    " short (%" PRIu64 " notifications lost), %" PRIu64 " over (%" PRIu64
                    " duplicates), %" PRIu64 " from a wrong service/node\n",
                    complete, checked, short_msgs, lost, over_msgs, dups, s->misrouted);
            fprintf(f, "  deliveries/s     %.1f\n", del);
            print_latency(f, false, lat);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.3f us/delivery\n", cpu_us / 1e6, per);
            if (ri->mem_measured)
                fprintf(f, "  server VmRSS     %ld kB -> %ld kB subscribed -> %ld kB after run\n",
                        ri->mem_before.rss_kb, ri->mem_joined.rss_kb, ri->mem_after.rss_kb);
        }
    }
    if (o->scenario == SC_PRESENCE) {
        double lrate = el > 0 ? (double)s->run_logins / el : 0;
        double prate = el > 0 ? (double)s->pres_online / el : 0;
        double per_login = s->run_logins ? (double)s->pres_online / (double)s->run_logins : 0;
        double cpu_login = s->run_logins ? cpu_us / (double)s->run_logins : 0;
        double rs = ri->t_roster_end > ri->t_roster_begin
                        ? (double)(ri->t_roster_end - ri->t_roster_begin) / 1e9
                        : 0;
        if (json) {
            fprintf(f,
                    ",\n  \"roster_size\": %d,\n  \"churners\": %d,\n  \"dwell_s\": %.3f"
                    ",\n  \"roster_setup\": {\"done\": %s, \"rosters_complete\": %" PRIu64
                    ", \"roster_sets\": %" PRIu64 ", \"subscribes\": %" PRIu64
                    ", \"subscribed\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"seconds\": %.3f}"
                    ",\n  \"duration_s\": %.3f,\n  \"logins\": %" PRIu64
                    ",\n  \"logins_per_s\": %.1f,\n  \"presence_delivered\": %" PRIu64
                    ",\n  \"presence_per_s\": %.1f,\n  \"presence_per_login\": %.2f"
                    ",\n  \"presence_to_churners\": %" PRIu64,
                    o->roster_size, o->churn, o->dwell, o->setup_rosters ? "true" : "false",
                    s->rosters_done, s->roster_sets, s->subscribes, s->subscribed, s->roster_errors,
                    rs, el, s->run_logins, lrate, s->pres_online, prate, per_login,
                    s->pres_churners);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_login\": %.1f",
                        cpu_us / 1e6, cpu_login);
        } else {
            if (o->setup_rosters)
                fprintf(f,
                        "  roster setup     %" PRIu64 " of %d rosters complete in %.3f s (%" PRIu64
                        " roster sets, %" PRIu64 " subscribe, %" PRIu64 " subscribed, %" PRIu64
                        " errors)\n",
                        s->rosters_done, o->users, rs, s->roster_sets, s->subscribes, s->subscribed,
                        s->roster_errors);
            fprintf(f,
                    "  churn            %d users, roster %d, dwell %.3f s: %" PRIu64
                    " logins in %.3f s = %.1f logins/s\n",
                    o->churn, o->roster_size, o->dwell, s->run_logins, el, lrate);
            fprintf(f,
                    "  presence         %" PRIu64 " delivered to online users = %.1f/s, %.2f per "
                    "login (%" PRIu64 " to the churning users)\n",
                    s->pres_online, prate, per_login, s->pres_churners);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.1f us/login\n", cpu_us / 1e6, cpu_login);
        }
    }
    if (json) {
        fprintf(f, "\n}\n");
    } else {
        fprintf(f,
                "  errors           connect %" PRIu64 ", auth %" PRIu64 ", login timeout %" PRIu64
                ", login other %" PRIu64 ", disconnects %" PRIu64 " (stream errors %" PRIu64
                ", parse %" PRIu64 ", tls %" PRIu64 ")\n",
                s->connect_errors, s->auth_fail, s->login_timeouts, s->login_errors, s->disconnects,
                s->stream_errors, s->parse_errors, s->tls_errors);
        if (first_err[0])
            fprintf(f, "  first error      %s\n", first_err);
        fprintf(f,
                "  SCRAM cache      %" PRIu64 " PBKDF2 computations, %" PRIu64
                " cache hits (SaltedPassword cached per password/salt/iterations)\n",
                cache->misses, cache->hits);
        fprintf(f, "  loadgen CPU      %.2f s over %.2f s wall (%.0f%% of one core)", self_cpu,
                wall, wall > 0 ? 100 * self_cpu / wall : 0);
        if (el > 0)
            fprintf(f, "; measured phase %.2f s (%.0f%%)", run_cpu, 100 * run_cpu / el);
        fprintf(f, "\n");
    }
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen idle|login|chat|muc|presence|pubsub [options]\n"
            "  --host H           server address (127.0.0.1)\n"
            "  --port P           port (5222)\n"
            "  --domain D         XMPP domain (localhost)\n"
            "  --user-fmt F       username printf format with one %%d (user%%d)\n"
            "  --user-offset K    first user index (0)\n"
            "  --password PW      password of all users (pw)\n"
            "  --users N          number of users / sessions (100; muc: rooms x room size;\n"
            "                     pubsub: subscribers + 1)\n"
            "  --mech M           auto|plain|scram-sha-1|scram-sha-256 (auto)\n"
            "  --tls              use STARTTLS\n"
            "  --direct-tls       TLS from the first byte (XEP-0368)\n"
            "  --threads T        worker threads, each with its own event loop (1)\n"
            "  --concurrency C    logins/joins in flight (100) / parallel loopers (login: 50)\n"
            "  --rate R           idle: logins/s cap (0 = none); chat, muc: total msgs/s;\n"
            "                     pubsub: publishes/s (1000)\n"
            "  --hold S           idle: seconds to hold sessions (10)\n"
            "  --settle S         idle: seconds after setup before measuring memory (5)\n"
            "  --duration S       login/chat/muc/presence: run length in seconds (10)\n"
            "  --drain S          chat/muc/pubsub: max seconds to wait for in-flight messages (5)\n"
            "  --warm S           pause between setup and the measured phase (1)\n"
            "  --timeout S        per-login (and per-join) timeout (30)\n"
            "  --resource R       resource prefix; the slot number is appended (lg)\n"
            "  --rooms R          muc: number of rooms bench0..bench<R-1> (1)\n"
            "  --room-size K      muc: occupants per room (10)\n"
            "  --muc-domain D     muc: MUC service (conference.<domain>)\n"
            "  --subscribers K    pubsub: subscribers of the node (10); user0 publishes\n"
            "  --pubsub-domain D  pubsub: publish-subscribe service (pubsub.<domain>)\n"
            "  --node NAME        pubsub: node created and published to (bench)\n"
            "  --max-items M      pubsub: pubsub#max_items of the node (10)\n"
            "  --roster-size C    presence: contacts per user, even (100)\n"
            "  --setup-rosters    presence: first make the mutual subscriptions\n"
            "  --churn M          presence: users that log in and out (users/10)\n"
            "  --dwell S          presence: seconds a churning user stays online (0)\n"
            "  --server-pid PID   read server memory/CPU from /proc/PID\n"
            "  --json FILE        also write the figures as JSON\n"
            "  --seed N           random seed\n"
            "exit status: 0 run completed, 2 bad options, 3 scenario unsupported by the server\n");
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){
        .host = "127.0.0.1",
        .port = 5222,
        .domain = "localhost",
        .user_fmt = "user%d",
        .password = "pw",
        .resource = "lg",
        .users = 100,
        .concurrency = -1,
        .threads = 1,
        .rate = -1,
        .hold = 10,
        .settle = 5,
        .duration = 10,
        .timeout = 30,
        .drain = 5,
        .warm = 1,
        .rooms = 1,
        .room_size = 10,
        .roster_size = 100,
        .churn = -1,
        .subscribers = 10,
        .max_items = 10,
        .node = "bench",
        .seed = 0x9e3779b97f4a7c15ull,
    };
    enum {
        OPT_THREADS = 256,
        OPT_ROOMS,
        OPT_ROOM_SIZE,
        OPT_MUC_DOMAIN,
        OPT_ROSTER_SIZE,
        OPT_SETUP_ROSTERS,
        OPT_CHURN,
        OPT_DWELL,
        OPT_SUBSCRIBERS,
        OPT_PUBSUB_DOMAIN,
        OPT_NODE,
        OPT_MAX_ITEMS,
    };
    static const struct option lo[] = {
        {"host", 1, 0, 'H'},
        {"port", 1, 0, 'p'},
        {"domain", 1, 0, 'd'},
        {"user-fmt", 1, 0, 'f'},
        {"user-offset", 1, 0, 'O'},
        {"password", 1, 0, 'w'},
        {"users", 1, 0, 'n'},
        {"mech", 1, 0, 'm'},
        {"tls", 0, 0, 't'},
        {"direct-tls", 0, 0, 'T'},
        {"concurrency", 1, 0, 'c'},
        {"rate", 1, 0, 'r'},
        {"hold", 1, 0, 'h'},
        {"settle", 1, 0, 's'},
        {"duration", 1, 0, 'D'},
        {"drain", 1, 0, 'a'},
        {"warm", 1, 0, 'W'},
        {"timeout", 1, 0, 'o'},
        {"resource", 1, 0, 'R'},
        {"server-pid", 1, 0, 'P'},
        {"json", 1, 0, 'j'},
        {"seed", 1, 0, 'S'},
        {"threads", 1, 0, OPT_THREADS},
        {"rooms", 1, 0, OPT_ROOMS},
        {"room-size", 1, 0, OPT_ROOM_SIZE},
        {"muc-domain", 1, 0, OPT_MUC_DOMAIN},
        {"roster-size", 1, 0, OPT_ROSTER_SIZE},
        {"setup-rosters", 0, 0, OPT_SETUP_ROSTERS},
        {"churn", 1, 0, OPT_CHURN},
        {"dwell", 1, 0, OPT_DWELL},
        {"subscribers", 1, 0, OPT_SUBSCRIBERS},
        {"pubsub-domain", 1, 0, OPT_PUBSUB_DOMAIN},
        {"node", 1, 0, OPT_NODE},
        {"max-items", 1, 0, OPT_MAX_ITEMS},
        {"help", 0, 0, '?'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'd':
            o->domain = optarg;
            break;
        case 'f':
            o->user_fmt = optarg;
            break;
        case 'O':
            o->user_offset = atoi(optarg);
            break;
        case 'w':
            o->password = optarg;
            break;
        case 'n':
            o->users = atoi(optarg);
            o->users_given = true;
            break;
        case 'm':
            if (!strcasecmp(optarg, "plain"))
                o->mech = MECH_PLAIN;
            else if (!strcasecmp(optarg, "scram-sha-1"))
                o->mech = MECH_SCRAM_SHA1;
            else if (!strcasecmp(optarg, "scram-sha-256"))
                o->mech = MECH_SCRAM_SHA256;
            else if (!strcasecmp(optarg, "auto"))
                o->mech = MECH_AUTO;
            else {
                fprintf(stderr, "bad --mech\n");
                return -1;
            }
            break;
        case 't':
            o->starttls = true;
            break;
        case 'T':
            o->direct_tls = true;
            break;
        case 'c':
            o->concurrency = atoi(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'h':
            o->hold = atof(optarg);
            break;
        case 's':
            o->settle = atof(optarg);
            break;
        case 'D':
            o->duration = atof(optarg);
            break;
        case 'a':
            o->drain = atof(optarg);
            break;
        case 'W':
            o->warm = atof(optarg);
            break;
        case 'o':
            o->timeout = atof(optarg);
            break;
        case 'R':
            o->resource = optarg;
            break;
        case 'P':
            o->server_pid = atoi(optarg);
            break;
        case 'j':
            o->json = optarg;
            break;
        case 'S':
            o->seed = strtoull(optarg, NULL, 0) | 1;
            break;
        case OPT_THREADS:
            o->threads = atoi(optarg);
            break;
        case OPT_ROOMS:
            o->rooms = atoi(optarg);
            break;
        case OPT_ROOM_SIZE:
            o->room_size = atoi(optarg);
            break;
        case OPT_MUC_DOMAIN:
            o->muc_domain = optarg;
            break;
        case OPT_ROSTER_SIZE:
            o->roster_size = atoi(optarg);
            break;
        case OPT_SETUP_ROSTERS:
            o->setup_rosters = true;
            break;
        case OPT_CHURN:
            o->churn = atoi(optarg);
            break;
        case OPT_DWELL:
            o->dwell = atof(optarg);
            break;
        case OPT_SUBSCRIBERS:
            o->subscribers = atoi(optarg);
            break;
        case OPT_PUBSUB_DOMAIN:
            o->pubsub_domain = optarg;
            break;
        case OPT_NODE:
            o->node = optarg;
            break;
        case OPT_MAX_ITEMS:
            o->max_items = atoi(optarg);
            break;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return -1;
    }
    const char *sc = argv[optind];
    bool found = false;
    for (size_t i = 0; i < sizeof scenario_names / sizeof *scenario_names; i++)
        if (!strcmp(sc, scenario_names[i])) {
            o->scenario = (enum scenario)i;
            found = true;
        }
    if (!found) {
        usage(stderr);
        return -1;
    }
    if (o->concurrency < 0)
        o->concurrency = o->scenario == SC_LOGIN ? 50 : 100;
    if (o->rate < 0)
        o->rate =
            o->scenario == SC_CHAT || o->scenario == SC_MUC || o->scenario == SC_PUBSUB ? 1000 : 0;
    if (o->starttls && o->direct_tls) {
        fprintf(stderr, "--tls and --direct-tls are exclusive\n");
        return -1;
    }
    /* user-fmt must contain exactly one %d and no other conversion */
    const char *p = strchr(o->user_fmt, '%');
    if (!p || p[1] != 'd' || strchr(p + 2, '%')) {
        fprintf(stderr, "--user-fmt needs exactly one %%d\n");
        return -1;
    }
    if (o->scenario == SC_MUC) {
        if (o->rooms < 1 || o->room_size < 1) {
            fprintf(stderr, "bad --rooms or --room-size\n");
            return -1;
        }
        if (o->users_given && o->users != o->rooms * o->room_size) {
            fprintf(stderr, "muc: --users must be --rooms x --room-size (or left out)\n");
            return -1;
        }
        o->users = o->rooms * o->room_size;
    }
    if (o->scenario == SC_PUBSUB) {
        if (o->subscribers < 1 || o->max_items < 1 || !o->node[0] || strpbrk(o->node, "'\"<>&")) {
            fprintf(stderr, "pubsub: bad --subscribers, --max-items or --node\n");
            return -1;
        }
        if (o->users_given && o->users != o->subscribers + 1) {
            fprintf(stderr, "pubsub: --users must be --subscribers + 1 (or left out)\n");
            return -1;
        }
        o->users = o->subscribers + 1;
        o->rooms = 1;
    }
    if (o->scenario == SC_PRESENCE) {
        if (o->roster_size < 2 || o->roster_size % 2 || o->roster_size >= o->users) {
            fprintf(stderr, "presence: --roster-size must be even, >= 2 and < --users\n");
            return -1;
        }
        if (o->churn < 0)
            o->churn = o->users / 10 > 0 ? o->users / 10 : 1;
        if (o->churn < 1 || o->churn > o->users || o->dwell < 0) {
            fprintf(stderr, "presence: bad --churn or --dwell\n");
            return -1;
        }
    }
    if (o->users < 1 || o->concurrency < 1 || o->duration <= 0 || o->hold < 0 || o->timeout <= 0 ||
        o->threads < 1 || o->threads > 64 ||
        o->threads > (o->scenario == SC_LOGIN ? o->concurrency : o->users) ||
        o->threads > o->users || (o->scenario == SC_CHAT && (o->users < 2 || o->rate <= 0)) ||
        ((o->scenario == SC_MUC || o->scenario == SC_PUBSUB) && o->rate <= 0)) {
        fprintf(stderr, "bad numeric option\n");
        return -1;
    }
    return 0;
}

/* Per-user JIDs, built once so that the send path only copies bytes. */
static int build_jids(void)
{
    const struct opts *o = &G.o;
    size_t n = (size_t)o->users;
    G.full_jid = calloc(n, sizeof *G.full_jid);
    G.bare_jid = calloc(n, sizeof *G.bare_jid);
    G.full_len = calloc(n, sizeof *G.full_len);
    G.online = calloc(n, sizeof *G.online);
    G.room_occupants = calloc((size_t)o->rooms, sizeof *G.room_occupants);
    if (!G.full_jid || !G.bare_jid || !G.full_len || !G.online || !G.room_occupants)
        return -1;
    for (int u = 0; u < o->users; u++) {
        char user[128], full[400], esc[420];
        snprintf(user, sizeof user, o->user_fmt, u + o->user_offset);
        snprintf(full, sizeof full, "%s@%s", user, o->domain);
        G.bare_jid[u] = strdup(full);
        snprintf(full, sizeof full, "%s@%s/%s%d", user, o->domain, o->resource, u);
        xml_esc(esc, sizeof esc, full);
        G.full_jid[u] = strdup(esc);
        if (!G.bare_jid[u] || !G.full_jid[u])
            return -1;
        G.full_len[u] = strlen(esc);
    }
    /* user_fmt split around "%d", to map JIDs back to user numbers */
    const char *pct = strstr(o->user_fmt, "%d");
    G.fmt_prefix = o->user_fmt;
    G.fmt_prefix_len = (size_t)(pct - o->user_fmt);
    G.fmt_suffix = pct + 2;
    return 0;
}

static int init_worker(struct worker *w, int id)
{
    const struct opts *o = &G.o;
    int T = G.nthreads;
    w->id = id;
    w->rng = (o->seed ? o->seed : 1) ^ ((uint64_t)(id + 1) * 0x9e3779b97f4a7c15ull);
    if (!w->rng)
        w->rng = 1;
    w->user_lo = (int)((long)o->users * id / T);
    w->user_hi = (int)((long)o->users * (id + 1) / T);
    w->next_user = w->user_lo;
    /* split concurrency and rate so that the totals match the options */
    w->concurrency = o->concurrency / T + (id < o->concurrency % T);
    if (w->concurrency < 1)
        w->concurrency = 1;
    w->rate = o->rate / T;
    if (o->scenario == SC_PUBSUB) /* one publisher: user 0, on the first worker */
        w->rate = id == 0 ? o->rate : 0;
    w->nslots = o->scenario == SC_LOGIN ? w->concurrency : w->user_hi - w->user_lo;
    w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
    if (!w->slots)
        return -1;
    for (int i = 0; i < w->nslots; i++) {
        w->slots[i].w = w;
        if (o->scenario == SC_PRESENCE && o->setup_rosters) {
            w->slots[i].contact_both = calloc((size_t)o->roster_size, 1);
            if (!w->slots[i].contact_both)
                return -1;
        }
    }
    atomic_store(&w->done_phase, -1);
    if (uv_loop_init(&w->loop) != 0)
        return -1;
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_init(&w->loop, &w->send_timer);
    uv_async_init(&w->loop, &w->wake, on_wake);
    uv_prepare_init(&w->loop, &w->prep);
    uv_check_init(&w->loop, &w->check);
    w->tick.data = w->send_timer.data = w->wake.data = w->prep.data = w->check.data = w;
    return 0;
}

static void free_worker(struct worker *w)
{
    uv_loop_close(&w->loop);
    for (int i = 0; i < w->nslots; i++) {
        struct conn *c = &w->slots[i];
        if (c->xp)
            XML_ParserFree(c->xp);
        free(c->text);
        free(c->out);
        free(c->contact_both);
    }
    free(w->slots);
    scram_cache_free(&w->cache);
}

int main(int argc, char **argv)
{
    struct opts *o = &G.o;
    if (parse_args(o, argc, argv) != 0)
        return 2;
    if (!o->muc_domain) {
        static char muc[300];
        snprintf(muc, sizeof muc, "conference.%s", o->domain);
        o->muc_domain = muc;
    }
    if (!o->pubsub_domain) {
        static char ps[300];
        snprintf(ps, sizeof ps, "pubsub.%s", o->domain);
        o->pubsub_domain = ps;
    }
    if (uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&G.addr) != 0 &&
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&G.addr) != 0) {
        fprintf(stderr, "loadgen: --host must be a numeric IPv4/IPv6 address\n");
        return 2;
    }
    if (o->starttls || o->direct_tls) {
        /* One context for all threads (OpenSSL 3 contexts are thread-safe
         * once set up).  X25519 only: one key share, no HelloRetryRequest. */
        G.ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!G.ssl_ctx)
            return 1;
        SSL_CTX_set_min_proto_version(G.ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(G.ssl_ctx, SSL_VERIFY_NONE, NULL); /* benchmark only */
        SSL_CTX_set_cert_verify_callback(G.ssl_ctx, accept_any_cert, NULL);
        SSL_CTX_set1_groups_list(G.ssl_ctx, "X25519");
        SSL_CTX_set_session_cache_mode(G.ssl_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_mode(G.ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    }
    struct run_info ri = {0};
    if (o->server_pid > 0 && read_procmem(o->server_pid, &ri.mem_before) != 0) {
        fprintf(stderr, "loadgen: cannot read /proc/%d/status\n", o->server_pid);
        return 2;
    }
    if (build_jids() != 0)
        return 1;
    if (o->scenario == SC_MUC || o->scenario == SC_PUBSUB) {
        /* room for every message of the run, and then some */
        double n = o->rate * (o->duration + 1) * 1.5 + 1024;
        G.msg_cap = n < 5e7 ? (uint64_t)n : 50000000;
        G.msg_exp = calloc(G.msg_cap, sizeof *G.msg_exp);
        G.msg_got = calloc(G.msg_cap, sizeof *G.msg_got);
        G.room_jid = calloc((size_t)o->rooms, sizeof *G.room_jid);
        G.room_len = calloc((size_t)o->rooms, sizeof *G.room_len);
        if (!G.msg_exp || !G.msg_got || !G.room_jid || !G.room_len)
            return 1;
        for (int r = 0; r < o->rooms; r++) {
            char jid[320];
            int n = snprintf(jid, sizeof jid, "bench%d@%s", r, o->muc_domain);
            G.room_jid[r] = strdup(jid);
            if (!G.room_jid[r])
                return 1;
            G.room_len[r] = (size_t)n;
        }
    }
    G.nthreads = o->threads;
    G.w = calloc((size_t)G.nthreads, sizeof *G.w);
    if (!G.w)
        return 1;
    for (int i = 0; i < G.nthreads; i++)
        if (init_worker(&G.w[i], i) != 0)
            return 1;
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    G.t_begin = now_ns();
    atomic_store(&G.phase, o->scenario == SC_LOGIN ? PH_RUN : PH_SETUP);
    for (int i = 0; i < G.nthreads; i++)
        if (pthread_create(&G.w[i].thread, NULL, worker_main, &G.w[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start thread %d\n", i);
            return 1;
        }
    coordinate(&ri);
    for (int i = 0; i < G.nthreads; i++)
        pthread_join(G.w[i].thread, NULL);
    double self_cpu = self_cpu_since(&ru0);

    /* merge the workers' figures */
    struct stats s = {0};
    static struct hist lat;
    struct scram_cache cache = {0};
    const char *first_err = "";
    for (int i = 0; i < G.nthreads; i++) {
        struct worker *w = &G.w[i];
        /* struct stats holds only uint64_t counters: add them field by field */
        uint64_t *dst = (uint64_t *)&s;
        const uint64_t *src = (const uint64_t *)&w->st;
        for (size_t k = 0; k < sizeof s / sizeof(uint64_t); k++)
            dst[k] += src[k];
        hist_merge(&lat, &w->lat);
        cache.hits += w->cache.hits;
        cache.misses += w->cache.misses;
        if (!first_err[0] && w->first_err[0])
            first_err = w->first_err;
    }
    report(&ri, &s, &lat, &cache, first_err, self_cpu, stdout, false);
    int rc = atomic_load(&G.unsupported) ? EXIT_UNSUPPORTED : 0;
    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f) {
            fprintf(stderr, "loadgen: %s: %s\n", o->json, strerror(errno));
            return 1;
        }
        report(&ri, &s, &lat, &cache, first_err, self_cpu, f, true);
        fclose(f);
    }
    for (int i = 0; i < G.nthreads; i++)
        free_worker(&G.w[i]);
    free(G.w);
    if (G.ssl_ctx)
        SSL_CTX_free(G.ssl_ctx);
    for (int u = 0; u < o->users; u++) {
        free(G.full_jid[u]);
        free(G.bare_jid[u]);
    }
    free(G.full_jid);
    free(G.bare_jid);
    free(G.full_len);
    free((void *)G.online);
    free((void *)G.room_occupants);
    free(G.msg_exp);
    free((void *)G.msg_got);
    for (int r = 0; G.room_jid && r < o->rooms; r++)
        free(G.room_jid[r]);
    free(G.room_jid);
    free(G.room_len);
    return rc;
}
