/* SPDX-License-Identifier: MIT
 * tls.c - server-side TLS over OpenSSL memory BIOs (see tls.h).
 *
 * A tls_ctx_t owns a "base" SSL_CTX that every connection starts on and one
 * SSL_CTX per virtual host holding that host's certificate. The base context
 * carries no certificate: its servername callback, which OpenSSL runs for
 * every ClientHello whether or not SNI was sent, always moves the connection
 * to a host context (longest-suffix match on the SNI name, else the first
 * host). Because the base context stays the session context, session ticket
 * keys are shared by all hosts and survive certificate reloads. Per
 * connection we keep only the SSL object, two memory BIOs and, briefly, the
 * plaintext written before the handshake finished; memory BIOs never shrink,
 * so a drained BIO that has grown is replaced by a fresh one.
 */
#include "net/tls.h"

#include "core/common.h"
#include "core/log.h"
#include "net/tls13.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_TAG "tls"
/* RFC 9266 section 2. */
#define TLS_EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define TLS_EXPORTER_LEN   32
/* Plaintext written before the handshake is a stream header and features at
 * most; anything near this size means the caller is misusing the API. */
#define TLS_PENDING_MAX (64 * 1024)
/* A drained memory BIO whose buffer grew beyond this is swapped for a new
 * one so that a burst (a 100 KB vCard, a MAM page) does not stay allocated
 * for the life of an idle connection. Small enough that idle connections
 * hold almost nothing, large enough that ordinary stanza traffic does not
 * reallocate on every drain. */
#define TLS_BIO_KEEP_MAX     2048
#define TLS_SELF_SIGNED_DAYS (10 * 365 + 2)

struct tls_host {
    char *domain;
    SSL_CTX *ssl_ctx;
};

struct tls_ctx {
    SSL_CTX *base;
    struct tls_host *hosts; /* hosts[0] is the default */
    size_t nhosts;
    unsigned char alpn[256]; /* one ALPN protocol name, without length prefix */
    size_t alpn_len;         /* 0 = no ALPN */
};

/* Application traffic secrets seen by the keylog callback during a TLS 1.3
 * handshake; freed (wiped) once the record layer has taken them. */
struct tls_secrets {
    unsigned char client[TLS13_MAX_SECRET], server[TLS13_MAX_SECRET];
    size_t client_len, server_len;
};

/* What a connection still needs to answer once its SSL object is gone. */
struct tls_offloaded {
    tls13_t rec;
    char *sni;
    unsigned char exporter[TLS_EXPORTER_LEN];
    unsigned char end_point[EVP_MAX_MD_SIZE];
    unsigned char end_point_len; /* 0 = not available */
};

struct tls_conn {
    /* During the handshake, and for TLS 1.2 for the connection's life: */
    SSL *ssl;
    BIO *rbio;              /* owned by ssl; ciphertext from the peer */
    BIO *wbio;              /* owned by ssl; ciphertext to the peer */
    unsigned char *pending; /* plaintext written before the handshake */
    size_t pending_len;
    struct tls_secrets *secrets;
    /* After a TLS 1.3 handshake: ssl is NULL and this carries the records. */
    struct tls_offloaded *off;
    bool fatal; /* SSL_shutdown must not follow a fatal error */
};

/* Drains OpenSSL's error queue so the next call starts clean, one line per
 * entry; reason strings only, which never contain key material. */
static void log_ssl_errors(log_level_t level, const char *what)
{
    char reason[256];
    unsigned long e;
    bool any = false;
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
        log_msg(level, TLS_TAG, "%s: %s", what, reason);
        any = true;
    }
    if (!any)
        log_msg(level, TLS_TAG, "%s", what);
}

/* Copies the most recent (most specific) OpenSSL reason into err for the
 * administrator and clears the queue. */
static void ssl_err_msg(char *err, size_t errlen, const char *what, const char *file)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    if (err && errlen)
        snprintf(err, errlen, "%s %s: %s", what, file ? file : "", reason);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- context ---------------------------------------------------------- */

/* Returns true when name is domain itself or a subdomain of it. */
static bool name_matches(const char *name, size_t name_len, const char *domain)
{
    size_t dlen = strlen(domain);
    if (name_len == dlen)
        return strncasecmp(name, domain, dlen) == 0;
    if (name_len > dlen + 1 && name[name_len - dlen - 1] == '.')
        return strncasecmp(name + name_len - dlen, domain, dlen) == 0;
    return false;
}

static struct tls_host *find_host(tls_ctx_t *ctx, const char *name)
{
    if (ctx->nhosts == 0)
        return NULL;
    if (!name)
        return &ctx->hosts[0];
    size_t len = strlen(name);
    /* A fully qualified name with the root dot names the same host. */
    if (len > 0 && name[len - 1] == '.')
        len--;
    struct tls_host *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < ctx->nhosts; i++) {
        size_t dlen = strlen(ctx->hosts[i].domain);
        if (dlen >= best_len && name_matches(name, len, ctx->hosts[i].domain)) {
            best = &ctx->hosts[i];
            best_len = dlen;
        }
    }
    return best ? best : &ctx->hosts[0];
}

static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    tls_ctx_t *ctx = arg;
    struct tls_host *h = find_host(ctx, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (!h) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    /* SSL_set_SSL_CTX takes its own reference, so a later reload may free
     * ours while this connection keeps using the old certificate. */
    if (SSL_set_SSL_CTX(ssl, h->ssl_ctx) != h->ssl_ctx) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    const tls_ctx_t *ctx = arg;
    if (ctx->alpn_len == 0)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int plen = in[i];
        if (plen == 0 || plen > inlen - i - 1)
            break;
        if (plen == ctx->alpn_len && memcmp(in + i + 1, ctx->alpn, plen) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)plen;
            return SSL_TLSEXT_ERR_OK;
        }
        i += plen + 1;
    }
    /* NOACK rather than the RFC 7301 no_application_protocol alert: XMPP
     * clients that offer other names (or none) must still get through. */
    return SSL_TLSEXT_ERR_NOACK;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* OpenSSL 3.0 has no API for the traffic secrets other than the key log
 * (NSS format: "LABEL <client random> <secret>", hex). We keep only the two
 * application secrets, which tls13.c needs to carry the connection on. */
static void keylog_cb(const SSL *ssl, const char *line)
{
    tls_conn_t *c = SSL_get_app_data(ssl);
    bool client = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0;
    bool server = strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0;
    if (!c || (!client && !server))
        return;
    const char *hex = strchr(line + 24, ' ');
    if (!hex)
        return;
    hex++;
    size_t hex_len = strlen(hex);
    if (hex_len % 2 != 0 || hex_len / 2 > TLS13_MAX_SECRET)
        return;
    if (!c->secrets)
        c->secrets = tern_xcalloc(1, sizeof(*c->secrets));
    unsigned char *out = client ? c->secrets->client : c->secrets->server;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *(client ? &c->secrets->client_len : &c->secrets->server_len) = hex_len / 2;
}

/* An encrypted key file must fail to load, not block on a terminal prompt. */
static int no_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    return 0;
}

/* Settings that every SSL_CTX gets: the base one because an SSL takes its
 * options, versions and groups from the context it was created on, and the
 * host ones because ciphers and callbacks are read from the current one. */
static SSL_CTX *new_ssl_ctx(tls_ctx_t *ctx)
{
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    if (!s)
        return NULL;
    static const unsigned char sid_ctx[] = "tern";
    if (!SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(s, "ECDHE+AESGCM:ECDHE+CHACHA20") ||
        /* All three TLS 1.3 suites, AES-128 first: it is as safe for this
         * use and its SHA-256 key schedule costs about half of SHA-384's
         * (measured with callgrind per login). */
        !SSL_CTX_set_ciphersuites(
            s, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") ||
        !SSL_CTX_set1_groups_list(s, "X25519:P-256:P-384") ||
        !SSL_CTX_set_session_id_context(s, sid_ctx, sizeof(sid_ctx) - 1)) {
        SSL_CTX_free(s);
        return NULL;
    }
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption works through stateless tickets; a server-side cache would
     * hold up to 20k sessions in memory for little gain. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    /* XMPP clients reconnect rarely enough that one ticket suffices. */
    SSL_CTX_set_num_tickets(s, 1);
    SSL_CTX_set_default_passwd_cb(s, no_password_cb);
    SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, ctx);
    SSL_CTX_set_keylog_callback(s, keylog_cb);
    return s;
}

tls_ctx_t *tls_ctx_new(void)
{
    tls_ctx_t *ctx = tern_xcalloc(1, sizeof(*ctx));
    ctx->base = new_ssl_ctx(ctx);
    if (!ctx->base) {
        log_ssl_errors(LOG_ERROR, "cannot create TLS context");
        free(ctx);
        return NULL;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx->base, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx->base, ctx);
    return ctx;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; i < ctx->nhosts; i++) {
        SSL_CTX_free(ctx->hosts[i].ssl_ctx);
        free(ctx->hosts[i].domain);
    }
    free(ctx->hosts);
    SSL_CTX_free(ctx->base);
    free(ctx);
}

int tls_ctx_add_host(tls_ctx_t *ctx, const char *domain, const char *cert_file,
                     const char *key_file, char *err, size_t errlen)
{
    if (!ctx || !domain || !*domain || !cert_file || !key_file) {
        set_err(err, errlen, "tls: domain, certificate and key are required");
        return TERN_EINVAL;
    }
    ERR_clear_error();
    SSL_CTX *s = new_ssl_ctx(ctx);
    if (!s) {
        ssl_err_msg(err, errlen, "cannot create TLS context for", domain);
        return TERN_ENOMEM;
    }
    if (SSL_CTX_use_certificate_chain_file(s, cert_file) != 1) {
        ssl_err_msg(err, errlen, "cannot load certificate", cert_file);
        SSL_CTX_free(s);
        return TERN_EINVAL;
    }
    /* Loaded and compared by hand: SSL_CTX_use_PrivateKey_file would
     * reject a mismatch with an opaque "key values mismatch". */
    EVP_PKEY *key = NULL;
    BIO *kb = BIO_new_file(key_file, "r");
    if (kb)
        key = PEM_read_bio_PrivateKey(kb, NULL, no_password_cb, NULL);
    BIO_free(kb);
    if (!key) {
        ssl_err_msg(err, errlen, "cannot load private key", key_file);
        SSL_CTX_free(s);
        return TERN_EINVAL;
    }
    X509 *leaf = SSL_CTX_get0_certificate(s);
    if (!leaf || X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        set_err(err, errlen, "private key %s does not match certificate %s", key_file, cert_file);
        EVP_PKEY_free(key);
        SSL_CTX_free(s);
        return TERN_EINVAL;
    }
    int ok = SSL_CTX_use_PrivateKey(s, key) == 1 && SSL_CTX_check_private_key(s) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        ssl_err_msg(err, errlen, "cannot use private key", key_file);
        SSL_CTX_free(s);
        return TERN_EINVAL;
    }

    for (size_t i = 0; i < ctx->nhosts; i++) {
        if (strcasecmp(ctx->hosts[i].domain, domain) == 0) {
            /* Connections already switched to the old context hold their
             * own reference to it; only new handshakes see the new one. */
            SSL_CTX_free(ctx->hosts[i].ssl_ctx);
            ctx->hosts[i].ssl_ctx = s;
            log_info(TLS_TAG, "reloaded certificate for %s", domain);
            return TERN_OK;
        }
    }
    ctx->hosts = tern_xrealloc(ctx->hosts, (ctx->nhosts + 1) * sizeof(*ctx->hosts));
    ctx->hosts[ctx->nhosts].domain = tern_xstrdup(domain);
    ctx->hosts[ctx->nhosts].ssl_ctx = s;
    ctx->nhosts++;
    return TERN_OK;
}

int tls_ctx_share_ticket_keys(tls_ctx_t *dst, const tls_ctx_t *src)
{
    /* Name, HMAC and AES keys of the base (session) context, which encrypts
     * every host's tickets (see the top of this file). */
    unsigned char keys[80];
    int ok = SSL_CTX_get_tlsext_ticket_keys(src->base, keys, sizeof(keys)) == 1 &&
             SSL_CTX_set_tlsext_ticket_keys(dst->base, keys, sizeof(keys)) == 1;
    OPENSSL_cleanse(keys, sizeof(keys));
    if (!ok) {
        log_ssl_errors(LOG_WARN, "cannot share TLS ticket keys");
        return TERN_EIO;
    }
    return TERN_OK;
}

void tls_ctx_set_alpn(tls_ctx_t *ctx, const char *proto)
{
    size_t len = proto ? strlen(proto) : 0;
    if (len >= sizeof(ctx->alpn)) {
        log_warn(TLS_TAG, "ALPN protocol name too long, ALPN disabled");
        len = 0;
    }
    memcpy(ctx->alpn, proto ? proto : "", len);
    ctx->alpn_len = len;
}

/* ---- connection ------------------------------------------------------- */

static BIO *new_mem_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b)
        /* An empty BIO means "no data yet", never end of stream. */
        BIO_set_mem_eof_return(b, -1);
    return b;
}

/* Capacity of a memory BIO's buffer; BIO_get_mem_ptr compacts first so max
 * is the real allocation. */
static size_t mem_bio_capacity(BIO *b)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    return bm ? bm->max : 0;
}

/* Swaps drained, grown BIOs for empty ones (see TLS_BIO_KEEP_MAX). Failure
 * to allocate just keeps the old BIO. */
static void trim_bios(tls_conn_t *c)
{
    if (BIO_ctrl_pending(c->rbio) == 0 && mem_bio_capacity(c->rbio) > TLS_BIO_KEEP_MAX) {
        BIO *b = new_mem_bio();
        if (b) {
            SSL_set0_rbio(c->ssl, b);
            c->rbio = b;
        }
    }
    if (BIO_ctrl_pending(c->wbio) == 0 && mem_bio_capacity(c->wbio) > TLS_BIO_KEEP_MAX) {
        BIO *b = new_mem_bio();
        if (b) {
            SSL_set0_wbio(c->ssl, b);
            c->wbio = b;
        }
    }
}

tls_conn_t *tls_conn_new(tls_ctx_t *ctx)
{
    if (!ctx)
        return NULL;
    if (ctx->nhosts == 0) {
        log_error(TLS_TAG, "no certificate configured");
        return NULL;
    }
    SSL *ssl = SSL_new(ctx->base);
    BIO *r = new_mem_bio();
    BIO *w = new_mem_bio();
    if (!ssl || !r || !w) {
        log_ssl_errors(LOG_ERROR, "cannot create TLS connection");
        SSL_free(ssl);
        BIO_free(r);
        BIO_free(w);
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_bio(ssl, r, w);
    SSL_set_accept_state(ssl);
    tls_conn_t *c = tern_xcalloc(1, sizeof(*c));
    c->ssl = ssl;
    c->rbio = r;
    c->wbio = w;
    SSL_set_app_data(ssl, c);
    return c;
}

static void free_secrets(tls_conn_t *c)
{
    if (c->secrets) {
        OPENSSL_cleanse(c->secrets, sizeof(*c->secrets));
        free(c->secrets);
        c->secrets = NULL;
    }
}

void tls_conn_free(tls_conn_t *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    if (c->pending) {
        OPENSSL_cleanse(c->pending, c->pending_len);
        free(c->pending);
    }
    free_secrets(c);
    if (c->off) {
        tls13_clear(&c->off->rec);
        free(c->off->sni);
        free(c->off);
    }
    free(c);
}

static tls_status_t from_tls13(tls13_status_t st)
{
    switch (st) {
    case TLS13_OK:
        return TLS_OK;
    case TLS13_CLOSED:
        return TLS_CLOSED;
    default:
        return TLS_ERROR;
    }
}

/* Maps the outcome of a failed SSL call; the error queue was cleared before
 * the call so SSL_get_error is reliable. */
static tls_status_t map_error(tls_conn_t *c, int ret, const char *what)
{
    int e = SSL_get_error(c->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_MORE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
    case SSL_ERROR_SSL:
        c->fatal = true;
        /* Peers sending garbage or old protocol versions are routine, so
         * this is not a warning about the server itself. */
        log_ssl_errors(LOG_DEBUG, what);
        ERR_clear_error();
        return TLS_ERROR;
    default:
        /* WANT_WRITE cannot happen with a memory BIO; anything else is a
         * callback asking to retry, which we never set up. */
        c->fatal = true;
        log_warn(TLS_TAG, "%s: unexpected SSL error %d", what, e);
        ERR_clear_error();
        return TLS_ERROR;
    }
}

static tls_status_t write_now(tls_conn_t *c, const void *data, size_t len)
{
    if (c->off)
        return from_tls13(tls13_write(&c->off->rec, data, len));
    size_t done = 0;
    while (done < len) {
        size_t w = 0;
        ERR_clear_error();
        int ret = SSL_write_ex(c->ssl, (const unsigned char *)data + done, len - done, &w);
        if (ret <= 0) {
            map_error(c, ret, "TLS write failed");
            /* A memory BIO never blocks, so any failure means part of the
             * stream is lost and the connection cannot continue. */
            c->fatal = true;
            return TLS_ERROR;
        }
        done += w;
    }
    return TLS_OK;
}

static tls_status_t flush_pending(tls_conn_t *c)
{
    if (!c->pending)
        return TLS_OK;
    tls_status_t st = write_now(c, c->pending, c->pending_len);
    OPENSSL_cleanse(c->pending, c->pending_len);
    free(c->pending);
    c->pending = NULL;
    c->pending_len = 0;
    return st;
}

/* As SSL_read: no data yet is TLS_WANT_MORE. */
static tls_status_t read_offloaded(tls_conn_t *c, void *buf, size_t cap, size_t *n)
{
    tls_status_t st = from_tls13(tls13_read(&c->off->rec, buf, cap, n));
    return st == TLS_OK && *n == 0 ? TLS_WANT_MORE : st;
}

/* Counts whole TLS records in data; -1 when it does not end on a record
 * boundary. */
static long count_records(const unsigned char *data, size_t len)
{
    long n = 0;
    size_t i = 0;
    while (len - i >= TLS13_HEADER_LEN) {
        i += TLS13_HEADER_LEN + (((size_t)data[i + 3] << 8) | data[i + 4]);
        n++;
    }
    return i == len ? n : -1;
}

/* Hands a TLS 1.3 connection whose handshake just completed over to the
 * record layer of tls13.c and frees the SSL object (see tls13.h for why).
 * out_before is how much ciphertext was waiting before the completing
 * handshake step: what that step wrote are session tickets, already under
 * the server's application secret, so they set our first sequence number.
 * OpenSSL reads records one at a time (no read-ahead), so whatever input is
 * left in the BIO starts at the client's first application record. When
 * anything does not fit these expectations the connection simply stays on
 * OpenSSL. */
static void offload(tls_conn_t *c, size_t out_before)
{
    struct tls_secrets *sec = c->secrets;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
    uint16_t suite = cipher ? (uint16_t)(SSL_CIPHER_get_id(cipher) & 0xffff) : 0;
    char *wdata = NULL, *rdata = NULL;
    long wlen = BIO_get_mem_data(c->wbio, &wdata);
    long rlen = BIO_get_mem_data(c->rbio, &rdata);
    long tickets = wlen >= (long)out_before ? count_records((unsigned char *)wdata + out_before,
                                                            (size_t)wlen - out_before)
                                            : -1;
    if (!sec || sec->client_len == 0 || sec->client_len != sec->server_len ||
        !tls13_suite_supported(suite) || tickets < 0 || rlen < 0) {
        free_secrets(c);
        return;
    }
    struct tls_offloaded *off = tern_xcalloc(1, sizeof(*off));
    size_t n = 0, ep_len = 0;
    bool ok = tls_conn_cb_exporter(c, off->exporter, sizeof(off->exporter), &n) == TERN_OK &&
              tls13_init(&off->rec, suite, sec->client, sec->server, sec->client_len, 0,
                         (uint64_t)tickets) == 0;
    free_secrets(c);
    if (!ok) {
        tls13_clear(&off->rec);
        free(off);
        return;
    }
    if (tls_conn_cb_server_end_point(c, off->end_point, sizeof(off->end_point), &ep_len) == TERN_OK)
        off->end_point_len = (unsigned char)ep_len;
    const char *sni = tls_conn_sni(c);
    off->sni = sni ? tern_xstrdup(sni) : NULL;
    if (wlen > 0)
        tls13_out_put_raw(&off->rec, wdata, (size_t)wlen);
    if (rlen > 0)
        tls13_feed(&off->rec, rdata, (size_t)rlen);
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    c->off = off;
}

tls_status_t tls_conn_feed(tls_conn_t *c, const void *data, size_t len)
{
    if (c->off)
        return from_tls13(tls13_feed(&c->off->rec, data, len));
    const unsigned char *p = data;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(c->rbio, p, chunk);
        if (w <= 0) {
            log_ssl_errors(LOG_WARN, "cannot buffer TLS input");
            c->fatal = true;
            return TLS_ERROR;
        }
        p += w;
        len -= (size_t)w;
    }
    return TLS_OK;
}

/* Returns TLS_WANT_MORE with *n == 0 when no application data is available
 * yet (including right after the handshake completes); the caller checks
 * tls_conn_handshake_done and flushes tls_conn_out_read either way. */
tls_status_t tls_conn_read(tls_conn_t *c, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (c->fatal)
        return TLS_ERROR;
    if (c->off)
        return read_offloaded(c, buf, cap, n);
    if (!SSL_is_init_finished(c->ssl)) {
        size_t out_before = BIO_ctrl_pending(c->wbio);
        ERR_clear_error();
        int ret = SSL_do_handshake(c->ssl);
        if (ret != 1) {
            tls_status_t st = map_error(c, ret, "TLS handshake failed");
            trim_bios(c);
            /* A close_notify during the handshake is an aborted handshake. */
            return st == TLS_CLOSED ? TLS_ERROR : st;
        }
        log_debug(TLS_TAG, "handshake done: %s %s sni=%s", SSL_get_version(c->ssl),
                  SSL_get_cipher_name(c->ssl), tls_conn_sni(c) ? tls_conn_sni(c) : "-");
        if (SSL_version(c->ssl) == TLS1_3_VERSION)
            offload(c, out_before);
        else
            free_secrets(c);
        if (flush_pending(c) != TLS_OK)
            return TLS_ERROR;
        if (c->off)
            return read_offloaded(c, buf, cap, n);
    }
    if (cap == 0)
        return TLS_OK;
    ERR_clear_error();
    int ret = SSL_read_ex(c->ssl, buf, cap, n);
    if (ret <= 0) {
        *n = 0;
        tls_status_t st = map_error(c, ret, "TLS read failed");
        trim_bios(c);
        return st;
    }
    return TLS_OK;
}

tls_status_t tls_conn_write(tls_conn_t *c, const void *data, size_t len)
{
    if (c->fatal)
        return TLS_ERROR;
    if (len == 0)
        return TLS_OK;
    if (c->off)
        return from_tls13(tls13_write(&c->off->rec, data, len));
    if (!SSL_is_init_finished(c->ssl)) {
        /* SSL_write would try to drive the handshake itself and report
         * WANT_READ with nothing written; keeping the bytes here lets the
         * caller write stream features without tracking handshake state. */
        if (len > TLS_PENDING_MAX - c->pending_len) {
            log_warn(TLS_TAG, "too much data written before TLS handshake");
            return TLS_ERROR;
        }
        c->pending = tern_xrealloc(c->pending, c->pending_len + len);
        memcpy(c->pending + c->pending_len, data, len);
        c->pending_len += len;
        return TLS_OK;
    }
    if (flush_pending(c) != TLS_OK)
        return TLS_ERROR;
    return write_now(c, data, len);
}

size_t tls_conn_out_pending(const tls_conn_t *c)
{
    if (c->off)
        return tls13_out_pending(&c->off->rec);
    return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_out_read(tls_conn_t *c, void *buf, size_t cap)
{
    if (c->off)
        return tls13_out_read(&c->off->rec, buf, cap);
    size_t got = 0;
    if (cap == 0 || BIO_ctrl_pending(c->wbio) == 0)
        return 0;
    if (BIO_read_ex(c->wbio, buf, cap, &got) != 1)
        got = 0;
    trim_bios(c);
    return got;
}

void tls_conn_hibernate(tls_conn_t *c)
{
    if (c->off)
        tls13_hibernate(&c->off->rec);
}

void tls_conn_shutdown(tls_conn_t *c)
{
    if (c->off) {
        if (!c->fatal)
            tls13_close_notify(&c->off->rec);
        return;
    }
    /* OpenSSL forbids SSL_shutdown after a fatal error, and mid-handshake
     * there is no session to close politely; the caller just drops it. */
    if (c->fatal || !SSL_is_init_finished(c->ssl))
        return;
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) < 0)
        log_ssl_errors(LOG_DEBUG, "TLS shutdown failed");
    ERR_clear_error();
}

bool tls_conn_handshake_done(const tls_conn_t *c)
{
    return c->off || SSL_is_init_finished(c->ssl) == 1;
}

const char *tls_conn_sni(const tls_conn_t *c)
{
    if (c->off)
        return c->off->sni;
    return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *tls_conn_version(const tls_conn_t *c)
{
    if (c->off)
        return "TLSv1.3";
    if (!tls_conn_handshake_done(c))
        return NULL;
    return SSL_get_version(c->ssl);
}

bool tls_conn_is_tls13(const tls_conn_t *c)
{
    return c->off || (tls_conn_handshake_done(c) && SSL_version(c->ssl) == TLS1_3_VERSION);
}

/* ---- channel binding ---------------------------------------------------- */

int tls_conn_cb_exporter(tls_conn_t *c, unsigned char *out, size_t cap, size_t *n)
{
    *n = 0;
    /* RFC 9266 defines tls-exporter only for TLS 1.3; on 1.2 the exporter
     * is not bound to the full handshake without extended master secret. */
    if (!tls_conn_is_tls13(c))
        return TERN_ENOENT;
    if (cap < TLS_EXPORTER_LEN)
        return TERN_ERANGE;
    if (c->off) {
        memcpy(out, c->off->exporter, TLS_EXPORTER_LEN);
        *n = TLS_EXPORTER_LEN;
        return TERN_OK;
    }
    ERR_clear_error();
    if (SSL_export_keying_material(c->ssl, out, TLS_EXPORTER_LEN, TLS_EXPORTER_LABEL,
                                   sizeof(TLS_EXPORTER_LABEL) - 1, NULL, 0, 0) != 1) {
        log_ssl_errors(LOG_WARN, "tls-exporter failed");
        return TERN_EIO;
    }
    *n = TLS_EXPORTER_LEN;
    return TERN_OK;
}

int tls_conn_cb_server_end_point(tls_conn_t *c, unsigned char *out, size_t cap, size_t *n)
{
    *n = 0;
    if (!tls_conn_handshake_done(c))
        return TERN_ENOENT;
    if (c->off) {
        if (c->off->end_point_len == 0)
            return TERN_ENOENT;
        if (cap < c->off->end_point_len)
            return TERN_ERANGE;
        memcpy(out, c->off->end_point, c->off->end_point_len);
        *n = c->off->end_point_len;
        return TERN_OK;
    }
    X509 *cert = SSL_get_certificate(c->ssl);
    if (!cert)
        return TERN_ENOENT;
    int md_nid = NID_undef;
    /* X509_get_signature_info also resolves RSA-PSS parameters, which
     * OBJ_find_sigid_algs alone cannot. */
    if (X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL) != 1) {
        int sig_nid = X509_get_signature_nid(cert);
        if (!OBJ_find_sigid_algs(sig_nid, &md_nid, NULL))
            md_nid = NID_undef;
    }
    /* Signatures without a separate hash (Ed25519, Ed448) have no
     * tls-server-end-point under RFC 5929. */
    if (md_nid == NID_undef)
        return TERN_ENOENT;
    if (md_nid == NID_md5 || md_nid == NID_sha1)
        md_nid = NID_sha256;
    const EVP_MD *md = EVP_get_digestbynid(md_nid);
    if (!md)
        return TERN_ENOENT;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    ERR_clear_error();
    if (X509_digest(cert, md, digest, &dlen) != 1) {
        log_ssl_errors(LOG_WARN, "tls-server-end-point failed");
        return TERN_EIO;
    }
    if (cap < dlen)
        return TERN_ERANGE;
    memcpy(out, digest, dlen);
    *n = dlen;
    return TERN_OK;
}

/* ---- self-signed certificate ----------------------------------------- */

/* The domain ends up in a certificate and in error messages; restricting it
 * to hostname characters keeps both unambiguous. */
static bool valid_dns_name(const char *d)
{
    size_t len = strlen(d);
    if (len == 0 || len > 253 || d[0] == '.' || d[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = d[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

static int push_dns_name(GENERAL_NAMES *gens, const char *name)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (!g || !ia5 || !ASN1_STRING_set(ia5, name, (int)strlen(name))) {
        GENERAL_NAME_free(g);
        ASN1_IA5STRING_free(ia5);
        return -1;
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
    if (!sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        return -1;
    }
    return 0;
}

static int add_san(X509 *x, const char *domain)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    char wildcard[260];
    int rc = -1;
    snprintf(wildcard, sizeof(wildcard), "*.%s", domain);
    if (gens && push_dns_name(gens, domain) == 0 && push_dns_name(gens, wildcard) == 0 &&
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
    GENERAL_NAMES_free(gens);
    return rc;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int set_random_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int rc = -1;
    /* 159 bits: positive, at most 20 octets DER, as RFC 5280 4.1.2.2 asks. */
    if (bn && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = 0;
    BN_free(bn);
    return rc;
}

static X509 *build_cert(EVP_PKEY *key, const char *domain)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    bool ok = X509_set_version(x, X509_VERSION_3) && set_random_serial(x) == 0 &&
              /* An hour of slack for clients whose clocks run behind. */
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
              X509_time_adj_ex(X509_getm_notAfter(x), TLS_SELF_SIGNED_DAYS, 0, NULL) &&
              X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                         (const unsigned char *)domain, -1, -1, 0) &&
              X509_set_issuer_name(x, name) && X509_set_pubkey(x, key) &&
              add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
              add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") == 0 &&
              add_ext(x, NID_ext_key_usage, "serverAuth") == 0 &&
              add_ext(x, NID_subject_key_identifier, "hash") == 0 && add_san(x, domain) == 0 &&
              X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Opens path for writing with the given mode, also when it already exists
 * with a looser one (a reused key file must not stay world-readable). */
static FILE *open_for_write(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    if (fchmod(fd, mode) != 0) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f)
        close(fd);
    return f;
}

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, char *err,
                     size_t errlen)
{
    FILE *f = open_for_write(path, mode);
    if (!f) {
        int e = errno;
        set_err(err, errlen, "cannot write %s: %s", path, strerror(e));
        return -e;
    }
    int ok =
        key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    int close_rc = fclose(f);
    if (!ok) {
        ssl_err_msg(err, errlen, "cannot write", path);
        return TERN_EIO;
    }
    if (close_rc != 0) {
        int e = errno;
        set_err(err, errlen, "cannot write %s: %s", path, strerror(e));
        return -e;
    }
    return TERN_OK;
}

int tls_make_self_signed(const char *domain, const char *cert_file, const char *key_file, char *err,
                         size_t errlen)
{
    if (!domain || !cert_file || !key_file || !valid_dns_name(domain)) {
        set_err(err, errlen, "invalid domain for self-signed certificate: %s",
                domain ? domain : "(null)");
        return TERN_EINVAL;
    }
    ERR_clear_error();
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key) {
        ssl_err_msg(err, errlen, "cannot generate key for", domain);
        return TERN_EIO;
    }
    X509 *cert = build_cert(key, domain);
    if (!cert) {
        ssl_err_msg(err, errlen, "cannot build certificate for", domain);
        EVP_PKEY_free(key);
        return TERN_EIO;
    }
    int rc = write_pem(key_file, 0600, key, NULL, err, errlen);
    if (rc == 0)
        rc = write_pem(cert_file, 0644, NULL, cert, err, errlen);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}
