/* loadgen: event-driven XMPP client-to-server load generator.
 *
 * One libuv loop drives thousands of client connections.  TLS runs over
 * OpenSSL memory BIOs; the server's stream is parsed incrementally with
 * expat (one parser per XML stream, replaced on stream restart).
 * All state lives in one struct ctx that is passed around. */
#include "loadgen.h"

#include <errno.h>
#include <expat.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

enum scenario { SC_IDLE, SC_LOGIN, SC_CHAT };
enum phase { PH_SETUP, PH_WARM, PH_RUN, PH_DRAIN, PH_DONE };
enum cstate { CS_CONNECTING, CS_LOGIN, CS_ONLINE, CS_CLOSING };
enum capture { CAP_NONE, CAP_SASL, CAP_BODY, CAP_JID, CAP_MECH };

#define HIST_SUB 64
#define HIST_N   (64 * HIST_SUB)

struct hist {
    uint64_t b[HIST_N];
    uint64_t n, sum, min, max;
};

struct opts {
    enum scenario scenario;
    const char *host, *domain, *user_fmt, *password, *resource, *json;
    int port;
    int users, user_offset;
    int concurrency;
    double rate;
    double hold, settle, duration, timeout, drain, warm;
    int server_pid;
    bool starttls, direct_tls;
    enum mech mech;
    uint64_t seed;
};

struct stats {
    uint64_t attempts, connect_errors, login_ok, auth_fail, login_timeouts, login_errors,
        disconnects, stream_errors, parse_errors, tls_errors;
    uint64_t sent, delivered, msg_errors, stray;
};

struct procmem {
    long rss_kb, pss_kb;
};

struct ctx;

struct conn {
    struct ctx *ctx;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    int slot, user;
    enum cstate state;
    bool tls_up, authed, graceful;
    SSL *ssl;
    BIO *rbio, *wbio;
    XML_Parser xp;
    bool replace_parser;
    int depth;
    /* current top-level element */
    char sname[32], stype[16], sid[32], sfrom[160];
    bool f_starttls, f_mechs, f_bind, f_session, f_session_opt;
    unsigned mechs; /* bit per enum mech */
    enum capture cap;
    int cap_depth;
    char *text;
    size_t tlen, tcap;
    bool has_body;
    enum mech mech;
    struct scram scram;
    char username[128];
    char jid[256];
    uint64_t t_start;
};

struct ctx {
    struct opts o;
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    struct sockaddr_storage addr;
    struct conn **slots;
    int nslots;
    enum phase phase;
    int started, inflight, online, next_user;
    uv_timer_t tick, phase_timer, send_timer;
    uint64_t t_begin, t_setup_end, t_run_begin, t_run_end, t_last_login;
    uint64_t cpu_run_begin, cpu_run_end;
    struct rusage ru_begin;
    uint64_t rng;
    struct stats st;
    struct scram_cache cache;
    struct hist lat;
    struct procmem mem_before, mem_after;
    bool mem_measured;
    int held, online_at_measure;
    uint64_t run_logins;
    char rbuf[65536];
    char pbuf[65536];
    bool finished;
    char first_err[512];
};

/* ------------------------------------------------------------------ util */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct ctx *x)
{
    x->rng ^= x->rng << 13;
    x->rng ^= x->rng >> 7;
    x->rng ^= x->rng << 17;
    return x->rng;
}

static void hist_add(struct hist *h, uint64_t v)
{
    size_t idx;
    if (v < HIST_SUB) {
        idx = (size_t)v;
    } else {
        int msb = 63 - __builtin_clzll(v);
        int shift = msb - 6; /* HIST_SUB == 2^6 */
        idx = (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) & (HIST_SUB - 1));
    }
    if (idx >= HIST_N)
        idx = HIST_N - 1;
    h->b[idx]++;
    if (!h->n || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
}

/* Lower bound of bucket idx and its width. */
static double hist_bucket_mid(size_t idx)
{
    if (idx < HIST_SUB)
        return (double)idx;
    size_t shift = idx / HIST_SUB - 1;
    uint64_t lo = ((uint64_t)HIST_SUB + idx % HIST_SUB) << shift;
    return (double)lo + (double)(1ull << shift) / 2.0;
}

static double hist_pct(const struct hist *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < HIST_N; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            double m = hist_bucket_mid(i);
            if (m > (double)h->max)
                m = (double)h->max;
            if (m < (double)h->min)
                m = (double)h->min;
            return m;
        }
    }
    return (double)h->max;
}

static int read_procmem(int pid, struct procmem *m)
{
    char path[64], line[256];
    m->rss_kb = m->pss_kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            m->rss_kb = strtol(line + 6, NULL, 10);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Pss:", 4) == 0)
                m->pss_kb = strtol(line + 4, NULL, 10);
        fclose(f);
    }
    return m->rss_kb < 0 ? -1 : 0;
}

/* utime+stime of pid in clock ticks, or 0 if unavailable. */
static uint64_t read_proccpu(int pid)
{
    if (pid <= 0)
        return 0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* after ") " come fields 3..; utime is field 14, stime 15 */
    unsigned long long ut = 0, stime = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            stime = strtoull(tok, NULL, 10);
            break;
        }
    }
    return ut + stime;
}

static double ticks_to_us(uint64_t t)
{
    return (double)t * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* Escape for an XML attribute value or text. */
static void xml_esc(char *out, size_t cap, const char *in)
{
    size_t k = 0;
    for (; *in && k + 7 < cap; in++) {
        const char *r = NULL;
        switch (*in) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '\'':
            r = "&apos;";
            break;
        case '"':
            r = "&quot;";
            break;
        }
        if (r) {
            size_t l = strlen(r);
            memcpy(out + k, r, l);
            k += l;
        } else {
            out[k++] = *in;
        }
    }
    out[k] = 0;
}

/* --------------------------------------------------------------- forward */

static void conn_close(struct conn *c);
static void conn_start(struct ctx *x, int slot, int user);
static void on_online(struct conn *c);
static void login_failed(struct conn *c, uint64_t *counter);
static void pump(struct ctx *x);
static void parser_new(struct conn *c);

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
        login_failed(c, &c->ctx->st.login_errors);
}

static void raw_write(struct conn *c, const void *data, size_t len)
{
    if (c->state == CS_CLOSING || !len)
        return;
    struct wreq *w = malloc(sizeof *w + len);
    if (!w)
        abort();
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        free(w);
        login_failed(c, &c->ctx->st.login_errors);
    }
}

static void flush_tls(struct conn *c)
{
    char buf[16384];
    while (BIO_ctrl_pending(c->wbio) > 0) {
        int n = BIO_read(c->wbio, buf, sizeof buf);
        if (n <= 0)
            break;
        raw_write(c, buf, (size_t)n);
    }
}

static void send_str(struct conn *c, const char *s)
{
    if (c->state == CS_CLOSING)
        return;
    size_t len = strlen(s);
    if (c->ssl && c->tls_up) {
        if (SSL_write(c->ssl, s, (int)len) <= 0) {
            c->ctx->st.tls_errors++;
            login_failed(c, &c->ctx->st.login_errors);
            return;
        }
        flush_tls(c);
    } else {
        raw_write(c, s, len);
    }
}

static void send_header(struct conn *c)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
             c->ctx->o.domain);
    send_str(c, buf);
}

/* ------------------------------------------------------------------- TLS */

static void tls_start(struct conn *c)
{
    struct ctx *x = c->ctx;
    c->ssl = SSL_new(x->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        x->st.tls_errors++;
        login_failed(c, &x->st.login_errors);
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_tlsext_host_name(c->ssl, x->o.domain);
    if (x->o.direct_tls) {
        static const unsigned char alpn[] = "\x0bxmpp-client";
        SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
    }
    SSL_set_connect_state(c->ssl);
    SSL_do_handshake(c->ssl);
    flush_tls(c);
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

static void copy_attr(char *dst, size_t cap, const char **atts, const char *name)
{
    dst[0] = 0;
    for (int i = 0; atts[i]; i += 2)
        if (strcmp(atts[i], name) == 0) {
            snprintf(dst, cap, "%s", atts[i + 1]);
            return;
        }
}

static void choose_and_auth(struct conn *c)
{
    struct ctx *x = c->ctx;
    enum mech m = x->o.mech;
    if (m == MECH_AUTO) {
        if (c->mechs & (1u << MECH_SCRAM_SHA256))
            m = MECH_SCRAM_SHA256;
        else if (c->mechs & (1u << MECH_SCRAM_SHA1))
            m = MECH_SCRAM_SHA1;
        else
            m = MECH_PLAIN;
    }
    if (!(c->mechs & (1u << m))) {
        login_failed(c, &x->st.auth_fail);
        return;
    }
    c->mech = m;
    char *init = m == MECH_PLAIN ? sasl_plain_initial(c->username, x->o.password)
                                 : scram_client_first(&c->scram, m, c->username, rnd(x));
    if (!init)
        abort();
    char *buf = malloc(strlen(init) + 128);
    if (!buf)
        abort();
    sprintf(buf, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>",
            mech_name(m), init);
    send_str(c, buf);
    free(buf);
    free(init);
}

static void handle_features(struct conn *c)
{
    struct ctx *x = c->ctx;
    if (x->o.starttls && !c->tls_up) {
        if (!c->f_starttls) {
            login_failed(c, &x->st.login_errors);
            return;
        }
        send_str(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    } else if (!c->authed) {
        if (!c->f_mechs) {
            login_failed(c, &x->st.login_errors);
            return;
        }
        choose_and_auth(c);
    } else if (c->f_bind) {
        char buf[256];
        char res[64];
        snprintf(res, sizeof res, "%s%d", x->o.resource, c->slot);
        snprintf(buf, sizeof buf,
                 "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 "<resource>%s</resource></bind></iq>",
                 res);
        send_str(c, buf);
    } else {
        login_failed(c, &x->st.login_errors);
    }
}

static void handle_message(struct conn *c)
{
    struct ctx *x = c->ctx;
    if (strcmp(c->stype, "error") == 0) {
        x->st.msg_errors++;
        return;
    }
    if (!c->has_body || !c->text || strncmp(c->text, "lg ", 3) != 0) {
        x->st.stray++;
        return;
    }
    uint64_t ts = strtoull(c->text + 3, NULL, 10);
    uint64_t t = now_ns();
    if (ts < x->t_run_begin || ts > t) {
        x->st.stray++;
        return;
    }
    x->st.delivered++;
    hist_add(&x->lat, t - ts);
}

static void handle_stanza(struct conn *c)
{
    struct ctx *x = c->ctx;
    const char *n = c->sname;
    if (strcmp(n, "features") == 0) {
        handle_features(c);
    } else if (strcmp(n, "proceed") == 0) {
        c->replace_parser = true;
        XML_StopParser(c->xp, XML_FALSE);
        tls_start(c);
    } else if (strcmp(n, "challenge") == 0) {
        if (c->mech == MECH_PLAIN) {
            login_failed(c, &x->st.auth_fail);
            return;
        }
        char *fin = scram_client_final(&c->scram, &x->cache, x->o.password, c->text ? c->text : "");
        if (!fin) {
            login_failed(c, &x->st.auth_fail);
            return;
        }
        char *buf = malloc(strlen(fin) + 128);
        if (!buf)
            abort();
        sprintf(buf, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", fin);
        send_str(c, buf);
        free(buf);
        free(fin);
    } else if (strcmp(n, "success") == 0) {
        if (c->mech != MECH_PLAIN && scram_verify_server(&c->scram, c->text ? c->text : "") != 0) {
            login_failed(c, &x->st.auth_fail);
            return;
        }
        c->authed = true;
        c->replace_parser = true;
        XML_StopParser(c->xp, XML_FALSE);
        send_header(c);
    } else if (strcmp(n, "failure") == 0) {
        login_failed(c, c->authed || !c->mech ? &x->st.login_errors : &x->st.auth_fail);
    } else if (strcmp(n, "iq") == 0) {
        if (strcmp(c->sid, "bind1") == 0 || strcmp(c->sid, "sess1") == 0) {
            if (strcmp(c->stype, "result") != 0) {
                login_failed(c, &x->st.login_errors);
                return;
            }
            if (c->sid[0] == 'b' && c->f_session && !c->f_session_opt) {
                send_str(c, "<iq type='set' id='sess1'><session "
                            "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
                return;
            }
            on_online(c);
        } else if (strcmp(c->stype, "get") == 0 || strcmp(c->stype, "set") == 0) {
            /* e.g. XEP-0199 ping from the server: answer with a result */
            char id[96], from[400], buf[600];
            xml_esc(id, sizeof id, c->sid);
            xml_esc(from, sizeof from, c->sfrom);
            if (c->sfrom[0])
                snprintf(buf, sizeof buf, "<iq type='result' id='%s' to='%s'/>", id, from);
            else
                snprintf(buf, sizeof buf, "<iq type='result' id='%s'/>", id);
            send_str(c, buf);
        }
    } else if (strcmp(n, "message") == 0) {
        handle_message(c);
    } else if (strcmp(n, "error") == 0) {
        x->st.stream_errors++;
        login_failed(c, &x->st.login_errors);
    }
}

static void XMLCALL on_start(void *ud, const char *name, const char **atts)
{
    struct conn *c = ud;
    int d = ++c->depth;
    const char *ln = local(name);
    if (d == 2) {
        snprintf(c->sname, sizeof c->sname, "%s", ln);
        copy_attr(c->stype, sizeof c->stype, atts, "type");
        copy_attr(c->sid, sizeof c->sid, atts, "id");
        copy_attr(c->sfrom, sizeof c->sfrom, atts, "from");
        c->f_starttls = c->f_mechs = c->f_bind = c->f_session = c->f_session_opt = false;
        c->has_body = false;
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
        } else if (!strcmp(c->sname, "message") && !strcmp(ln, "body") && !c->has_body) {
            c->has_body = true;
            text_reset(c);
            c->cap = CAP_BODY;
            c->cap_depth = 3;
        }
    } else if (d == 4) {
        if (!strcmp(c->sname, "features") && !strcmp(ln, "mechanism")) {
            text_reset(c);
            c->cap = CAP_MECH;
            c->cap_depth = 4;
        } else if (!strcmp(c->sname, "features") && !strcmp(ln, "optional")) {
            c->f_session_opt = true;
        }
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
    } else if (d == 3 && c->cap == CAP_BODY) {
        c->cap = CAP_NONE; /* keep text for handle_message */
    } else if (d == 2) {
        c->cap = CAP_NONE;
        if (c->state != CS_CLOSING)
            handle_stanza(c);
    } else if (d == 1) {
        /* server closed the stream */
        if (c->state != CS_CLOSING)
            login_failed(c, &c->ctx->st.login_errors);
    }
}

static void parser_new(struct conn *c)
{
    if (c->xp)
        XML_ParserFree(c->xp);
    c->xp = XML_ParserCreate("UTF-8");
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
        c->ctx->st.parse_errors++;
        login_failed(c, &c->ctx->st.login_errors);
    }
}

/* ------------------------------------------------------------------ read */

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)sug;
    *buf = uv_buf_init(c->ctx->rbuf, sizeof c->ctx->rbuf);
}

static void tls_input(struct conn *c, const char *data, size_t len)
{
    struct ctx *x = c->ctx;
    BIO_write(c->rbio, data, (int)len);
    if (!c->tls_up) {
        int r = SSL_do_handshake(c->ssl);
        flush_tls(c);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                x->st.tls_errors++;
                login_failed(c, &x->st.login_errors);
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
        int n = SSL_read(c->ssl, x->pbuf, sizeof x->pbuf);
        if (n > 0) {
            feed(c, x->pbuf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e != SSL_ERROR_ZERO_RETURN)
            x->st.tls_errors++;
        login_failed(c, &x->st.login_errors);
        return;
    }
    flush_tls(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        login_failed(c, &c->ctx->st.login_errors);
        return;
    }
    if (c->ssl)
        tls_input(c, buf->base, (size_t)n);
    else
        feed(c, buf->base, (size_t)n);
}

/* ------------------------------------------------------------- lifecycle */

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct ctx *x = c->ctx;
    int slot = c->slot;
    if (c->ssl)
        SSL_free(c->ssl); /* frees the BIOs */
    if (c->xp)
        XML_ParserFree(c->xp);
    free(c->text);
    free(c);
    x->slots[slot] = NULL;
    if (x->o.scenario == SC_LOGIN && x->phase == PH_RUN)
        conn_start(x, slot, x->next_user++ % x->o.users);
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
    struct ctx *x = c->ctx;
    if (c->state == CS_CLOSING)
        return;
    if (c->state == CS_ONLINE)
        x->online--;
    else if (x->phase == PH_SETUP && x->o.scenario != SC_LOGIN)
        x->inflight--;
    c->state = CS_CLOSING;
    if (c->graceful) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (x->o.scenario != SC_LOGIN && x->phase == PH_SETUP)
        pump(x);
}

/* Error path: count it (login failure or lost online session) and close. */
static void login_failed(struct conn *c, uint64_t *counter)
{
    struct ctx *x = c->ctx;
    if (c->state == CS_CLOSING)
        return;
    if (x->phase != PH_DONE && !x->first_err[0])
        snprintf(x->first_err, sizeof x->first_err,
                 "user %s, state %d, tls %d, authed %d, last element <%s type='%s'>", c->username,
                 (int)c->state, (int)c->tls_up, (int)c->authed, c->sname, c->stype);
    if (x->phase != PH_DONE) {
        if (c->state == CS_ONLINE)
            x->st.disconnects++;
        else if (!(x->o.scenario == SC_LOGIN && x->phase != PH_RUN))
            (*counter)++;
    }
    conn_close(c);
}

/* Close gracefully: send </stream:stream>, shut down the write side. */
static void conn_bye(struct conn *c)
{
    if (c->state == CS_CLOSING)
        return;
    if (c->state != CS_CONNECTING) {
        send_str(c, "</stream:stream>");
        c->graceful = true;
    }
    conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->handle->data;
    struct ctx *x = c->ctx;
    if (c->state == CS_CLOSING)
        return;
    if (status < 0) {
        if (!(x->o.scenario == SC_LOGIN && x->phase != PH_RUN))
            x->st.connect_errors++;
        login_failed(c, &x->st.login_errors);
        if (x->st.connect_errors == 1)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
        return;
    }
    c->state = CS_LOGIN;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (x->o.direct_tls) {
        tls_start(c);
    } else {
        parser_new(c);
        send_header(c);
    }
}

static void conn_start(struct ctx *x, int slot, int user)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->ctx = x;
    c->slot = slot;
    c->user = user;
    c->state = CS_CONNECTING;
    c->t_start = now_ns();
    snprintf(c->username, sizeof c->username, x->o.user_fmt, user + x->o.user_offset);
    x->slots[slot] = c;
    x->st.attempts++;
    uv_tcp_init(x->loop, &c->tcp);
    c->tcp.data = c;
    int r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&x->addr, on_connect);
    if (r < 0) {
        x->st.connect_errors++;
        if (x->st.connect_errors == 1)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(r));
        c->state = CS_LOGIN; /* so that conn_close does the bookkeeping */
        login_failed(c, &x->st.login_errors);
    }
}

/* ------------------------------------------------------------- scenarios */

static void finish(struct ctx *x);
static void setup_done(struct ctx *x);

/* Start logins (idle/chat) while under the concurrency and rate limits. */
static void pump(struct ctx *x)
{
    if (x->phase != PH_SETUP)
        return;
    double allowed = x->o.users;
    if (x->o.rate > 0 && x->o.scenario == SC_IDLE) {
        double el = (double)(now_ns() - x->t_begin) / 1e9;
        allowed = x->o.rate * el + 1;
    }
    while (x->started < x->o.users && x->inflight < x->o.concurrency && x->started < allowed) {
        int s = x->started++;
        x->inflight++;
        conn_start(x, s, s);
    }
    if (x->started >= x->o.users && x->inflight == 0)
        setup_done(x);
}

static void on_online(struct conn *c)
{
    struct ctx *x = c->ctx;
    uint64_t t = now_ns();
    x->t_last_login = t;
    if (x->o.scenario == SC_LOGIN) {
        if (x->phase == PH_RUN) {
            x->st.login_ok++;
        }
        c->state = CS_LOGIN;
        conn_bye(c);
        return;
    }
    send_str(c, "<presence/>");
    c->state = CS_ONLINE;
    x->online++;
    x->inflight--;
    x->st.login_ok++;
    pump(x);
}

static void send_one(struct ctx *x)
{
    struct conn *from = NULL, *to = NULL;
    for (int tries = 0; tries < 64 && !from; tries++) {
        struct conn *c = x->slots[rnd(x) % (uint64_t)x->nslots];
        if (c && c->state == CS_ONLINE)
            from = c;
    }
    for (int tries = 0; tries < 64 && !to; tries++) {
        struct conn *c = x->slots[rnd(x) % (uint64_t)x->nslots];
        if (c && c->state == CS_ONLINE && c != from)
            to = c;
    }
    if (!from || !to)
        return;
    char tojid[512], buf[1024];
    char res[64];
    snprintf(res, sizeof res, "%s%d", x->o.resource, to->slot);
    snprintf(tojid, sizeof tojid, "%s@%s/%s", to->username, x->o.domain, res);
    x->st.sent++;
    snprintf(buf, sizeof buf,
             "<message type='chat' to='%s' id='m%" PRIu64 "'><body>lg %" PRIu64 " %" PRIu64
             "</body></message>",
             tojid, x->st.sent, now_ns(), x->st.sent);
    send_str(from, buf);
}

static void on_send_timer(uv_timer_t *t)
{
    struct ctx *x = t->data;
    if (x->phase != PH_RUN)
        return;
    uint64_t now = now_ns();
    double target = x->o.rate * (double)(now - x->t_run_begin) / 1e9;
    while ((double)x->st.sent < target && x->online >= 2)
        send_one(x);
}

static void on_phase_timer(uv_timer_t *t);

static void measure_mem(struct ctx *x)
{
    if (x->o.server_pid > 0 && read_procmem(x->o.server_pid, &x->mem_after) == 0) {
        x->mem_measured = true;
        x->online_at_measure = x->online;
    }
}

static void setup_done(struct ctx *x)
{
    if (x->phase != PH_SETUP)
        return;
    x->t_setup_end = x->t_last_login ? x->t_last_login : now_ns();
    if (x->o.scenario == SC_IDLE) {
        x->phase = PH_WARM; /* settle */
        double s = x->o.settle < x->o.hold ? x->o.settle : x->o.hold;
        uv_timer_start(&x->phase_timer, on_phase_timer, (uint64_t)(s * 1000), 0);
    } else { /* chat */
        if (x->online < 2) {
            fprintf(stderr, "loadgen: fewer than 2 sessions online, cannot chat\n");
            finish(x);
            return;
        }
        x->phase = PH_WARM;
        uv_timer_start(&x->phase_timer, on_phase_timer, (uint64_t)(x->o.warm * 1000), 0);
    }
}

static void on_phase_timer(uv_timer_t *t)
{
    struct ctx *x = t->data;
    uint64_t now = now_ns();
    switch (x->o.scenario) {
    case SC_IDLE:
        if (x->phase == PH_WARM) {
            measure_mem(x);
            x->phase = PH_RUN; /* rest of hold */
            double el = (double)(now - x->t_setup_end) / 1e9;
            double rest = x->o.hold - el;
            uv_timer_start(&x->phase_timer, on_phase_timer, rest > 0 ? (uint64_t)(rest * 1000) : 0,
                           0);
        } else {
            x->held = x->online;
            finish(x);
        }
        break;
    case SC_LOGIN:
        x->t_run_end = now;
        x->cpu_run_end = read_proccpu(x->o.server_pid);
        x->run_logins = x->st.login_ok;
        finish(x);
        break;
    case SC_CHAT:
        if (x->phase == PH_WARM) {
            x->phase = PH_RUN;
            x->t_run_begin = now_ns();
            x->cpu_run_begin = read_proccpu(x->o.server_pid);
            x->st.stray = 0;
            uv_timer_start(&x->send_timer, on_send_timer, 1, 1);
            uv_timer_start(&x->phase_timer, on_phase_timer, (uint64_t)(x->o.duration * 1000), 0);
        } else if (x->phase == PH_RUN) {
            on_send_timer(&x->send_timer);
            x->t_run_end = now;
            uv_timer_stop(&x->send_timer);
            x->phase = PH_DRAIN;
            uv_timer_start(&x->phase_timer, on_phase_timer, (uint64_t)(x->o.drain * 1000), 0);
        } else {
            x->cpu_run_end = read_proccpu(x->o.server_pid);
            finish(x);
        }
        break;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct ctx *x = t->data;
    uint64_t now = now_ns();
    uint64_t to = (uint64_t)(x->o.timeout * 1e9);
    for (int i = 0; i < x->nslots; i++) {
        struct conn *c = x->slots[i];
        if (c && (c->state == CS_CONNECTING || c->state == CS_LOGIN) && now - c->t_start > to)
            login_failed(c, &x->st.login_timeouts);
    }
    if (x->phase == PH_SETUP)
        pump(x);
    if (x->phase == PH_DRAIN && x->st.delivered + x->st.msg_errors >= x->st.sent) {
        x->cpu_run_end = read_proccpu(x->o.server_pid);
        finish(x);
    }
}

static void finish(struct ctx *x)
{
    if (x->finished)
        return;
    x->finished = true;
    x->phase = PH_DONE;
    for (int i = 0; i < x->nslots; i++)
        if (x->slots[i])
            conn_bye(x->slots[i]);
    uv_close((uv_handle_t *)&x->tick, NULL);
    uv_close((uv_handle_t *)&x->phase_timer, NULL);
    uv_close((uv_handle_t *)&x->send_timer, NULL);
}

/* ---------------------------------------------------------------- report */

static void report(struct ctx *x, FILE *f, bool json)
{
    const struct stats *s = &x->st;
    static const char *names[] = {"idle", "login", "chat"};
    double setup_s = x->t_setup_end > x->t_begin ? (double)(x->t_setup_end - x->t_begin) / 1e9 : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double self_cpu = (double)(ru.ru_utime.tv_sec - x->ru_begin.ru_utime.tv_sec) +
                      (double)(ru.ru_stime.tv_sec - x->ru_begin.ru_stime.tv_sec) +
                      (double)(ru.ru_utime.tv_usec - x->ru_begin.ru_utime.tv_usec) / 1e6 +
                      (double)(ru.ru_stime.tv_usec - x->ru_begin.ru_stime.tv_usec) / 1e6;
    double wall = (double)(now_ns() - x->t_begin) / 1e9;
    bool pid = x->o.server_pid > 0;
    double cpu_us = pid ? ticks_to_us(x->cpu_run_end - x->cpu_run_begin) : 0;

    if (json) {
        fprintf(f,
                "{\n  \"scenario\": \"%s\",\n  \"host\": \"%s\",\n  \"port\": %d,\n"
                "  \"tls\": \"%s\",\n  \"mech\": \"%s\",\n  \"users\": %d,\n"
                "  \"concurrency\": %d,\n",
                names[x->o.scenario], x->o.host, x->o.port,
                x->o.direct_tls ? "direct"
                : x->o.starttls ? "starttls"
                                : "none",
                mech_name(x->o.mech), x->o.users, x->o.concurrency);
        fprintf(f,
                "  \"errors\": {\"connect\": %" PRIu64 ", \"auth_fail\": %" PRIu64
                ", \"login_timeouts\": %" PRIu64 ", \"login_other\": %" PRIu64
                ", \"disconnects\": %" PRIu64 ", \"stream_errors\": %" PRIu64
                ", \"parse_errors\": %" PRIu64 ", \"tls_errors\": %" PRIu64 "},\n",
                s->connect_errors, s->auth_fail, s->login_timeouts, s->login_errors, s->disconnects,
                s->stream_errors, s->parse_errors, s->tls_errors);
        fprintf(f, "  \"scram_cache\": {\"pbkdf2_runs\": %" PRIu64 ", \"hits\": %" PRIu64 "},\n",
                x->cache.misses, x->cache.hits);
        fprintf(f, "  \"loadgen_cpu_s\": %.3f,\n  \"wall_s\": %.3f", self_cpu, wall);
    } else {
        fprintf(f, "scenario %s  %s:%d  tls=%s  mech=%s  users=%d  concurrency=%d\n",
                names[x->o.scenario], x->o.host, x->o.port,
                x->o.direct_tls ? "direct"
                : x->o.starttls ? "starttls"
                                : "none",
                mech_name(x->o.mech), x->o.users, x->o.concurrency);
    }

    if (x->o.scenario == SC_IDLE || x->o.scenario == SC_CHAT) {
        double rate = setup_s > 0 ? (double)s->login_ok / setup_s : 0;
        if (json)
            fprintf(f,
                    ",\n  \"logins_ok\": %" PRIu64 ",\n  \"setup_s\": %.3f,\n"
                    "  \"setup_logins_per_s\": %.1f",
                    s->login_ok, setup_s, rate);
        else
            fprintf(f, "  logins ok        %" PRIu64 " of %d in %.3f s  = %.1f logins/s\n",
                    s->login_ok, x->o.users, setup_s, rate);
    }
    if (x->o.scenario == SC_IDLE) {
        double per_rss = 0, per_pss = 0;
        bool mem = x->mem_measured && x->online_at_measure > 0;
        if (mem) {
            per_rss =
                (double)(x->mem_after.rss_kb - x->mem_before.rss_kb) * 1024 / x->online_at_measure;
            per_pss =
                (double)(x->mem_after.pss_kb - x->mem_before.pss_kb) * 1024 / x->online_at_measure;
        }
        if (json) {
            fprintf(f, ",\n  \"hold_s\": %.1f,\n  \"sessions_held\": %d", x->o.hold, x->held);
            if (mem)
                fprintf(f,
                        ",\n  \"server_mem\": {\"sessions_at_measure\": %d, "
                        "\"rss_before_kb\": %ld, \"rss_after_kb\": %ld, "
                        "\"pss_before_kb\": %ld, \"pss_after_kb\": %ld, "
                        "\"rss_bytes_per_session\": %.0f, \"pss_bytes_per_session\": %.0f}",
                        x->online_at_measure, x->mem_before.rss_kb, x->mem_after.rss_kb,
                        x->mem_before.pss_kb, x->mem_after.pss_kb, per_rss, per_pss);
        } else {
            fprintf(f, "  sessions held    %d at end of %.1f s hold\n", x->held, x->o.hold);
            if (mem) {
                fprintf(
                    f, "  server VmRSS     %ld kB -> %ld kB   = %.0f bytes/session (%d sessions)\n",
                    x->mem_before.rss_kb, x->mem_after.rss_kb, per_rss, x->online_at_measure);
                fprintf(f, "  server PSS       %ld kB -> %ld kB   = %.0f bytes/session\n",
                        x->mem_before.pss_kb, x->mem_after.pss_kb, per_pss);
            }
        }
    }
    if (x->o.scenario == SC_LOGIN) {
        double el = (double)(x->t_run_end - x->t_run_begin) / 1e9;
        double rate = el > 0 ? (double)x->run_logins / el : 0;
        double per = x->run_logins ? cpu_us / (double)x->run_logins : 0;
        if (json) {
            fprintf(f,
                    ",\n  \"duration_s\": %.3f,\n  \"logins\": %" PRIu64
                    ",\n  \"logins_per_s\": %.1f",
                    el, x->run_logins, rate);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_login\": %.1f",
                        cpu_us / 1e6, per);
        } else {
            fprintf(f, "  logins           %" PRIu64 " in %.3f s  = %.1f logins/s\n", x->run_logins,
                    el, rate);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.1f us/login\n", cpu_us / 1e6, per);
        }
    }
    if (x->o.scenario == SC_CHAT) {
        double el = (double)(x->t_run_end - x->t_run_begin) / 1e9;
        double off = el > 0 ? (double)s->sent / el : 0;
        double del = el > 0 ? (double)s->delivered / el : 0;
        double per = s->delivered ? cpu_us / (double)s->delivered : 0;
        const struct hist *h = &x->lat;
        double mean = h->n ? (double)h->sum / (double)h->n : 0;
        if (json) {
            fprintf(f,
                    ",\n  \"duration_s\": %.3f,\n  \"sent\": %" PRIu64
                    ",\n  \"delivered\": %" PRIu64 ",\n  \"msg_errors\": %" PRIu64
                    ",\n  \"offered_msgs_per_s\": %.1f,"
                    "\n  \"delivered_msgs_per_s\": %.1f,\n  \"latency_us\": {\"min\": %.1f, "
                    "\"mean\": %.1f, \"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}",
                    el, s->sent, s->delivered, s->msg_errors, off, del, (double)h->min / 1e3,
                    mean / 1e3, hist_pct(h, 50) / 1e3, hist_pct(h, 99) / 1e3,
                    hist_pct(h, 99.9) / 1e3, (double)h->max / 1e3);
            if (pid)
                fprintf(f, ",\n  \"server_cpu_s\": %.3f,\n  \"server_cpu_us_per_msg\": %.2f",
                        cpu_us / 1e6, per);
        } else {
            fprintf(f,
                    "  messages         sent %" PRIu64 ", delivered %" PRIu64 ", errors %" PRIu64
                    " over %.3f s\n",
                    s->sent, s->delivered, s->msg_errors, el);
            fprintf(f, "  rate             offered %.1f msg/s, delivered %.1f msg/s\n", off, del);
            fprintf(f,
                    "  latency (us)     p50 %.1f  p99 %.1f  p99.9 %.1f  (min %.1f mean %.1f max "
                    "%.1f)\n",
                    hist_pct(h, 50) / 1e3, hist_pct(h, 99) / 1e3, hist_pct(h, 99.9) / 1e3,
                    (double)h->min / 1e3, mean / 1e3, (double)h->max / 1e3);
            if (pid)
                fprintf(f, "  server CPU       %.3f s  = %.2f us/delivered msg\n", cpu_us / 1e6,
                        per);
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
        if (x->first_err[0])
            fprintf(f, "  first error      %s\n", x->first_err);
        fprintf(f,
                "  SCRAM cache      %" PRIu64 " PBKDF2 computations, %" PRIu64
                " cache hits (SaltedPassword cached per password/salt/iterations)\n",
                x->cache.misses, x->cache.hits);
        fprintf(f, "  loadgen CPU      %.2f s over %.2f s wall (%.0f%% of one core)\n", self_cpu,
                wall, wall > 0 ? 100 * self_cpu / wall : 0);
    }
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: loadgen idle|login|chat [options]\n"
           "  --host H           server address (127.0.0.1)\n"
           "  --port P           port (5222)\n"
           "  --domain D         XMPP domain (localhost)\n"
           "  --user-fmt F       username printf format with one %%d (user%%d)\n"
           "  --user-offset K    first user index (0)\n"
           "  --password PW      password of all users (pw)\n"
           "  --users N          number of users / sessions (100)\n"
           "  --mech M           auto|plain|scram-sha-1|scram-sha-256 (auto)\n"
           "  --tls              use STARTTLS\n"
           "  --direct-tls       TLS from the first byte (XEP-0368)\n"
           "  --concurrency C    logins in flight (idle/chat: 100) / parallel loopers (login: 50)\n"
           "  --rate R           idle: logins/s cap (0 = none); chat: total msgs/s (1000)\n"
           "  --hold S           idle: seconds to hold sessions (10)\n"
           "  --settle S         idle: seconds after setup before measuring memory (5)\n"
           "  --duration S       login/chat: run length in seconds (10)\n"
           "  --drain S          chat: max seconds to wait for in-flight messages (5)\n"
           "  --warm S           chat: pause between setup and sending (1)\n"
           "  --timeout S        per-login timeout (30)\n"
           "  --resource R       resource prefix; the slot number is appended (lg)\n"
           "  --server-pid PID   read server memory/CPU from /proc/PID\n"
           "  --json FILE        also write the figures as JSON\n"
           "  --seed N           random seed\n");
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
        .rate = -1,
        .hold = 10,
        .settle = 5,
        .duration = 10,
        .timeout = 30,
        .drain = 5,
        .warm = 1,
        .seed = 0x9e3779b97f4a7c15ull,
    };
    static const struct option lo[] = {
        {"host", 1, 0, 'H'},       {"port", 1, 0, 'p'},        {"domain", 1, 0, 'd'},
        {"user-fmt", 1, 0, 'f'},   {"user-offset", 1, 0, 'O'}, {"password", 1, 0, 'w'},
        {"users", 1, 0, 'n'},      {"mech", 1, 0, 'm'},        {"tls", 0, 0, 't'},
        {"direct-tls", 0, 0, 'T'}, {"concurrency", 1, 0, 'c'}, {"rate", 1, 0, 'r'},
        {"hold", 1, 0, 'h'},       {"settle", 1, 0, 's'},      {"duration", 1, 0, 'D'},
        {"drain", 1, 0, 'a'},      {"warm", 1, 0, 'W'},        {"timeout", 1, 0, 'o'},
        {"resource", 1, 0, 'R'},   {"server-pid", 1, 0, 'P'},  {"json", 1, 0, 'j'},
        {"seed", 1, 0, 'S'},       {"help", 0, 0, '?'},        {0, 0, 0, 0},
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
    if (!strcmp(sc, "idle"))
        o->scenario = SC_IDLE;
    else if (!strcmp(sc, "login"))
        o->scenario = SC_LOGIN;
    else if (!strcmp(sc, "chat"))
        o->scenario = SC_CHAT;
    else {
        usage(stderr);
        return -1;
    }
    if (o->concurrency < 0)
        o->concurrency = o->scenario == SC_LOGIN ? 50 : 100;
    if (o->rate < 0)
        o->rate = o->scenario == SC_CHAT ? 1000 : 0;
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
    if (o->users < 1 || o->concurrency < 1 || o->duration <= 0 || o->hold < 0 || o->timeout <= 0 ||
        (o->scenario == SC_CHAT && (o->users < 2 || o->rate <= 0))) {
        fprintf(stderr, "bad numeric option\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ctx *x = calloc(1, sizeof *x);
    if (!x)
        return 1;
    if (parse_args(&x->o, argc, argv) != 0)
        return 2;
    x->rng = x->o.seed ? x->o.seed : 1;
    x->loop = uv_default_loop();
    if (uv_ip4_addr(x->o.host, x->o.port, (struct sockaddr_in *)&x->addr) != 0 &&
        uv_ip6_addr(x->o.host, x->o.port, (struct sockaddr_in6 *)&x->addr) != 0) {
        fprintf(stderr, "loadgen: --host must be a numeric IPv4/IPv6 address\n");
        return 2;
    }
    if (x->o.starttls || x->o.direct_tls) {
        x->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!x->ssl_ctx)
            return 1;
        SSL_CTX_set_min_proto_version(x->ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(x->ssl_ctx, SSL_VERIFY_NONE, NULL); /* benchmark only */
    }
    x->nslots = x->o.scenario == SC_LOGIN ? x->o.concurrency : x->o.users;
    x->slots = calloc((size_t)x->nslots, sizeof *x->slots);
    if (!x->slots)
        return 1;
    if (x->o.server_pid > 0 && read_procmem(x->o.server_pid, &x->mem_before) != 0) {
        fprintf(stderr, "loadgen: cannot read /proc/%d/status\n", x->o.server_pid);
        return 2;
    }
    uv_timer_init(x->loop, &x->tick);
    uv_timer_init(x->loop, &x->phase_timer);
    uv_timer_init(x->loop, &x->send_timer);
    x->tick.data = x->phase_timer.data = x->send_timer.data = x;
    getrusage(RUSAGE_SELF, &x->ru_begin);
    x->t_begin = now_ns();
    uv_timer_start(&x->tick, on_tick, 10, 10);

    if (x->o.scenario == SC_LOGIN) {
        x->phase = PH_RUN;
        x->t_run_begin = x->t_begin;
        x->cpu_run_begin = read_proccpu(x->o.server_pid);
        uv_timer_start(&x->phase_timer, on_phase_timer, (uint64_t)(x->o.duration * 1000), 0);
        for (int i = 0; i < x->nslots; i++)
            conn_start(x, i, x->next_user++ % x->o.users);
    } else {
        x->phase = PH_SETUP;
        pump(x);
    }
    uv_run(x->loop, UV_RUN_DEFAULT);

    report(x, stdout, false);
    if (x->o.json) {
        FILE *f = fopen(x->o.json, "w");
        if (!f) {
            fprintf(stderr, "loadgen: %s: %s\n", x->o.json, strerror(errno));
            return 1;
        }
        report(x, f, true);
        fclose(f);
    }
    uv_loop_close(x->loop);
    if (x->ssl_ctx)
        SSL_CTX_free(x->ssl_ctx);
    scram_cache_free(&x->cache);
    free(x->slots);
    free(x);
    return 0;
}
