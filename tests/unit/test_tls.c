/* SPDX-License-Identifier: MIT
 * test_tls.c - unit tests for the memory-BIO TLS layer (src/net/tls.c).
 *
 * Each test runs real handshakes entirely in memory: the server side is a
 * tls_conn_t, the client an OpenSSL client SSL on its own pair of memory
 * BIOs, and a pump shuttles ciphertext between them until neither side has
 * anything more to say. Certificates are generated once per run with
 * tls_make_self_signed into a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/common.h"
#include "net/tls.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define EXPORTER_LABEL "EXPORTER-Channel-Binding"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TLS_TEST_HAS_ASAN 1
#endif
#endif
#ifndef TLS_TEST_HAS_ASAN
#define TLS_TEST_HAS_ASAN 0
#endif

struct files {
    char dir[64];
    char lh_cert[128], lh_key[128];
    char eo_cert[128], eo_key[128];
    char lh2_cert[128], lh2_key[128];
};

struct buf {
    unsigned char *data;
    size_t len;
};

static void buf_append(struct buf *b, const void *p, size_t n)
{
    b->data = realloc(b->data, b->len + n + 1);
    assert_non_null(b->data);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* One server connection and the test's client talking to it. */
struct peer {
    tls_conn_t *s;
    SSL *c;
    BIO *c_in;  /* ciphertext for the client */
    BIO *c_out; /* ciphertext from the client */
    tls_status_t s_status;
    bool s_error, s_closed;
    bool c_error, c_closed;
    struct buf srv_rx, cli_rx;
};

struct client_opts {
    const char *sni;
    const unsigned char *alpn; /* wire format */
    size_t alpn_len;
};

static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    if (max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(cctx, max_version), 1);
    return cctx;
}

static void peer_init(struct peer *p, tls_ctx_t *ctx, SSL_CTX *cctx, const struct client_opts *o)
{
    memset(p, 0, sizeof(*p));
    p->s = tls_conn_new(ctx);
    assert_non_null(p->s);
    p->c = SSL_new(cctx);
    assert_non_null(p->c);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    assert_non_null(p->c_in);
    assert_non_null(p->c_out);
    BIO_set_mem_eof_return(p->c_in, -1);
    SSL_set_bio(p->c, p->c_in, p->c_out);
    SSL_set_connect_state(p->c);
    if (o && o->sni)
        assert_int_equal(SSL_set_tlsext_host_name(p->c, o->sni), 1);
    if (o && o->alpn)
        assert_int_equal(SSL_set_alpn_protos(p->c, o->alpn, (unsigned)o->alpn_len), 0);
}

static void peer_free_client(struct peer *p)
{
    SSL_free(p->c);
    p->c = NULL;
}

static void peer_free(struct peer *p)
{
    tls_conn_free(p->s);
    peer_free_client(p);
    buf_free(&p->srv_rx);
    buf_free(&p->cli_rx);
}

static void client_step(struct peer *p)
{
    if (p->c_error || p->c_closed)
        return;
    if (!SSL_is_init_finished(p->c)) {
        int r = SSL_do_handshake(p->c);
        if (r != 1) {
            if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
                p->c_error = true;
            ERR_clear_error();
            return;
        }
    }
    unsigned char tmp[4096];
    for (;;) {
        size_t n = 0;
        int r = SSL_read_ex(p->c, tmp, sizeof(tmp), &n);
        if (r == 1) {
            buf_append(&p->cli_rx, tmp, n);
            continue;
        }
        int e = SSL_get_error(p->c, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            p->c_closed = true;
        else if (e != SSL_ERROR_WANT_READ)
            p->c_error = true;
        ERR_clear_error();
        return;
    }
}

static void server_step(struct peer *p)
{
    if (p->s_error || p->s_closed)
        return;
    unsigned char tmp[4096];
    for (;;) {
        size_t n = 0;
        tls_status_t st = tls_conn_read(p->s, tmp, sizeof(tmp), &n);
        p->s_status = st;
        if (st == TLS_OK && n > 0) {
            buf_append(&p->srv_rx, tmp, n);
            continue;
        }
        if (st == TLS_ERROR)
            p->s_error = true;
        if (st == TLS_CLOSED)
            p->s_closed = true;
        if (st != TLS_OK)
            return;
    }
}

/* Moves ciphertext both ways until a full round moves nothing. Reads the
 * server side in small chunks to exercise partial draining. */
static void pump(struct peer *p)
{
    for (int round = 0; round < 10000; round++) {
        bool moved = false;
        client_step(p);
        unsigned char tmp[3000];
        int n;
        while ((n = BIO_read(p->c_out, tmp, sizeof(tmp))) > 0) {
            assert_int_equal(tls_conn_feed(p->s, tmp, (size_t)n), TLS_OK);
            moved = true;
        }
        server_step(p);
        while (tls_conn_out_pending(p->s) > 0) {
            size_t got = tls_conn_out_read(p->s, tmp, sizeof(tmp));
            assert_true(got > 0);
            assert_int_equal(BIO_write(p->c_in, tmp, (int)got), (int)got);
            moved = true;
        }
        if (!moved) {
            client_step(p);
            return;
        }
    }
    fail_msg("pump did not settle");
}

static void connect_ok(struct peer *p)
{
    pump(p);
    assert_false(p->s_error);
    assert_false(p->c_error);
    assert_true(SSL_is_init_finished(p->c));
    assert_true(tls_conn_handshake_done(p->s));
}

static void peer_cn(struct peer *p, char *out, size_t cap)
{
    X509 *cert = SSL_get1_peer_certificate(p->c);
    assert_non_null(cert);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)cap) > 0);
    X509_free(cert);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static void cert_sha256(const char *path, unsigned char out[32])
{
    X509 *x = load_cert(path);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 0);
    unsigned int olen = 0;
    assert_int_equal(EVP_Digest(der, (size_t)len, out, &olen, EVP_sha256(), NULL), 1);
    assert_int_equal(olen, 32);
    OPENSSL_free(der);
    X509_free(x);
}

static tls_ctx_t *make_ctx(const struct files *f)
{
    char err[256] = "";
    tls_ctx_t *ctx = tls_ctx_new();
    assert_non_null(ctx);
    assert_int_equal(tls_ctx_add_host(ctx, "localhost", f->lh_cert, f->lh_key, err, sizeof(err)),
                     0);
    assert_int_equal(tls_ctx_add_host(ctx, "example.org", f->eo_cert, f->eo_key, err, sizeof(err)),
                     0);
    return ctx;
}

static const unsigned char alpn_xmpp[] = "\x0bxmpp-client";
static const unsigned char alpn_xmpp_h2[] = "\x02h2\x0bxmpp-client";
static const unsigned char alpn_h2[] = "\x02h2";

static int group_setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tern_tls_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->lh_cert, sizeof(f->lh_cert), "%s/localhost.crt", f->dir);
    snprintf(f->lh_key, sizeof(f->lh_key), "%s/localhost.key", f->dir);
    snprintf(f->eo_cert, sizeof(f->eo_cert), "%s/example.org.crt", f->dir);
    snprintf(f->eo_key, sizeof(f->eo_key), "%s/example.org.key", f->dir);
    snprintf(f->lh2_cert, sizeof(f->lh2_cert), "%s/localhost2.crt", f->dir);
    snprintf(f->lh2_key, sizeof(f->lh2_key), "%s/localhost2.key", f->dir);
    char err[256];
    if (tls_make_self_signed("localhost", f->lh_cert, f->lh_key, err, sizeof(err)) != 0 ||
        tls_make_self_signed("example.org", f->eo_cert, f->eo_key, err, sizeof(err)) != 0 ||
        tls_make_self_signed("localhost", f->lh2_cert, f->lh2_key, err, sizeof(err)) != 0) {
        fprintf(stderr, "self-signed: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct files *f = *state;
    const char *paths[] = {f->lh_cert, f->lh_key, f->eo_cert, f->eo_key, f->lh2_cert, f->lh2_key};
    for (size_t i = 0; i < TERN_ARRAY_LEN(paths); i++)
        unlink(paths[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_self_signed_cert(void **state)
{
    struct files *f = *state;
    struct stat st;
    assert_int_equal(stat(f->lh_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    X509 *x = load_cert(f->lh_cert);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "example.org", 0, 0, NULL), 0);
    /* OpenSSL will not match "*.localhost" (too few labels), so look at
     * the SAN entries themselves. */
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    const char *want_names[] = {"localhost", "*.localhost"};
    for (int i = 0; i < 2; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        int type = -1;
        ASN1_STRING *v = GENERAL_NAME_get0_value(g, &type);
        assert_int_equal(type, GEN_DNS);
        assert_int_equal(ASN1_STRING_length(v), strlen(want_names[i]));
        assert_memory_equal(ASN1_STRING_get0_data(v), want_names[i], strlen(want_names[i]));
    }
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
    assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    /* About ten years. */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_in_range(days, 3650, 3660);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    X509_free(x);

    x = load_cert(f->eo_cert);
    assert_int_equal(X509_check_host(x, "example.org", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "upload.example.org", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "a.b.example.org", 0, 0, NULL), 0);
    X509_free(x);

    /* Two certificates for one name still get distinct serials. */
    X509 *a = load_cert(f->lh_cert), *b = load_cert(f->lh2_cert);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
    X509_free(a);
    X509_free(b);

    char err[128] = "";
    char path[160];
    snprintf(path, sizeof(path), "%s/bad.crt", f->dir);
    assert_int_equal(tls_make_self_signed("bad,name", path, path, err, sizeof(err)), TERN_EINVAL);
    assert_non_null(strstr(err, "bad,name"));
    snprintf(path, sizeof(path), "%s/no/such/dir.pem", f->dir);
    assert_true(tls_make_self_signed("localhost", path, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "no/such/dir"));
}

static void test_tls13_handshake(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    tls_ctx_set_alpn(ctx, "xmpp-client");
    SSL_CTX *cctx = client_ctx(0);
    struct client_opts o = {"localhost", alpn_xmpp, sizeof(alpn_xmpp) - 1};
    struct peer p;
    peer_init(&p, ctx, cctx, &o);

    unsigned char cb[64];
    size_t n = 99;
    assert_false(tls_conn_handshake_done(p.s));
    assert_null(tls_conn_version(p.s));
    assert_int_equal(tls_conn_cb_exporter(p.s, cb, sizeof(cb), &n), TERN_ENOENT);
    assert_int_equal(n, 0);
    assert_int_equal(tls_conn_cb_server_end_point(p.s, cb, sizeof(cb), &n), TERN_ENOENT);

    connect_ok(&p);
    assert_string_equal(tls_conn_version(p.s), "TLSv1.3");
    assert_true(tls_conn_is_tls13(p.s));
    assert_string_equal(tls_conn_sni(p.s), "localhost");
    const unsigned char *sel = NULL;
    unsigned int sel_len = 0;
    SSL_get0_alpn_selected(p.c, &sel, &sel_len);
    assert_int_equal(sel_len, 11);
    assert_memory_equal(sel, "xmpp-client", 11);
    char cn[128];
    peer_cn(&p, cn, sizeof(cn));
    assert_string_equal(cn, "localhost");

    /* tls-exporter: both ends derive the same 32 bytes. */
    unsigned char want[32];
    assert_int_equal(SSL_export_keying_material(p.c, want, sizeof(want), EXPORTER_LABEL,
                                                strlen(EXPORTER_LABEL), NULL, 0, 0),
                     1);
    assert_int_equal(tls_conn_cb_exporter(p.s, cb, sizeof(cb), &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(cb, want, 32);
    assert_int_equal(tls_conn_cb_exporter(p.s, cb, 16, &n), TERN_ERANGE);

    /* tls-server-end-point: SHA-256 (the ecdsa-with-SHA256 hash) of the DER. */
    cert_sha256(f->lh_cert, want);
    assert_int_equal(tls_conn_cb_server_end_point(p.s, cb, sizeof(cb), &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(cb, want, 32);

    /* Application data both ways. */
    assert_int_equal(tls_conn_write(p.s, "<stream:features/>", 18), TLS_OK);
    assert_int_equal(SSL_write(p.c, "<presence/>", 11), 11);
    pump(&p);
    assert_int_equal(p.cli_rx.len, 18);
    assert_memory_equal(p.cli_rx.data, "<stream:features/>", 18);
    assert_int_equal(p.srv_rx.len, 11);
    assert_memory_equal(p.srv_rx.data, "<presence/>", 11);
    assert_int_equal(p.s_status, TLS_WANT_MORE);

    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_tls12_handshake(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION);
    struct client_opts o = {"example.org", NULL, 0};
    struct peer p;
    peer_init(&p, ctx, cctx, &o);
    connect_ok(&p);
    assert_string_equal(tls_conn_version(p.s), "TLSv1.2");
    assert_false(tls_conn_is_tls13(p.s));
    /* Forward secrecy only: an ECDHE AEAD suite. */
    const char *cipher = SSL_get_cipher_name(p.c);
    assert_non_null(strstr(cipher, "ECDHE"));

    unsigned char cb[64], want[32];
    size_t n = 99;
    assert_int_equal(tls_conn_cb_exporter(p.s, cb, sizeof(cb), &n), TERN_ENOENT);
    assert_int_equal(n, 0);
    cert_sha256(f->eo_cert, want);
    assert_int_equal(tls_conn_cb_server_end_point(p.s, cb, sizeof(cb), &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(cb, want, 32);
    assert_int_equal(tls_conn_cb_server_end_point(p.s, cb, 8, &n), TERN_ERANGE);

    assert_int_equal(tls_conn_write(p.s, "ping", 4), TLS_OK);
    assert_int_equal(SSL_write(p.c, "pong", 4), 4);
    pump(&p);
    assert_int_equal(p.cli_rx.len, 4);
    assert_memory_equal(p.cli_rx.data, "ping", 4);
    assert_int_equal(p.srv_rx.len, 4);
    assert_memory_equal(p.srv_rx.data, "pong", 4);

    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_tls11_rejected(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    /* Lower the client's own security level so that it really offers
     * TLS 1.1 and the refusal comes from the server. */
    SSL_CTX *cctx = client_ctx(TLS1_1_VERSION);
    SSL_CTX_set_security_level(cctx, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    pump(&p);
    assert_true(p.s_error);
    assert_int_equal(p.s_status, TLS_ERROR);
    assert_true(p.c_error);
    assert_false(tls_conn_handshake_done(p.s));
    /* Later calls keep failing without touching OpenSSL's state. */
    size_t n = 1;
    unsigned char tmp[16];
    assert_int_equal(tls_conn_read(p.s, tmp, sizeof(tmp), &n), TLS_ERROR);
    assert_int_equal(n, 0);
    assert_int_equal(tls_conn_write(p.s, "x", 1), TLS_ERROR);
    tls_conn_shutdown(p.s);

    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void expect_cn(tls_ctx_t *ctx, SSL_CTX *cctx, const char *sni, const char *cn_want)
{
    struct client_opts o = {sni, NULL, 0};
    struct peer p;
    peer_init(&p, ctx, cctx, &o);
    connect_ok(&p);
    char cn[128];
    peer_cn(&p, cn, sizeof(cn));
    assert_string_equal(cn, cn_want);
    if (sni)
        assert_string_equal(tls_conn_sni(p.s), sni);
    else
        assert_null(tls_conn_sni(p.s));
    peer_free(&p);
}

static void test_sni(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    /* A host nested inside example.org served with the localhost
     * certificate, so that the longest suffix visibly wins. */
    char err[256];
    assert_int_equal(
        tls_ctx_add_host(ctx, "chat.example.org", f->lh_cert, f->lh_key, err, sizeof(err)), 0);
    SSL_CTX *cctx = client_ctx(0);

    expect_cn(ctx, cctx, "localhost", "localhost");
    expect_cn(ctx, cctx, "example.org", "example.org");
    expect_cn(ctx, cctx, "EXAMPLE.org", "example.org");
    expect_cn(ctx, cctx, "conference.localhost", "localhost");
    expect_cn(ctx, cctx, "upload.example.org", "example.org");
    expect_cn(ctx, cctx, "room.chat.example.org", "localhost");
    expect_cn(ctx, cctx, "xchat.example.org", "example.org");
    /* Unknown names and no SNI get the first host added. */
    expect_cn(ctx, cctx, "notexample.org", "localhost");
    expect_cn(ctx, cctx, "unknown.test", "localhost");
    expect_cn(ctx, cctx, NULL, "localhost");

    /* Same over TLS 1.2, where SNI comes through the same callback. */
    SSL_CTX *cctx12 = client_ctx(TLS1_2_VERSION);
    expect_cn(ctx, cctx12, "muc.example.org", "example.org");
    expect_cn(ctx, cctx12, NULL, "localhost");

    SSL_CTX_free(cctx12);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void expect_alpn(tls_ctx_t *ctx, SSL_CTX *cctx, const unsigned char *offer, size_t len,
                        const char *want)
{
    struct client_opts o = {"localhost", offer, len};
    struct peer p;
    peer_init(&p, ctx, cctx, &o);
    connect_ok(&p);
    const unsigned char *sel = NULL;
    unsigned int sel_len = 0;
    SSL_get0_alpn_selected(p.c, &sel, &sel_len);
    if (want) {
        assert_int_equal(sel_len, strlen(want));
        assert_memory_equal(sel, want, sel_len);
    } else {
        assert_int_equal(sel_len, 0);
    }
    peer_free(&p);
}

static void test_alpn(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);

    /* No ALPN configured: the handshake ignores what the client offers. */
    expect_alpn(ctx, cctx, alpn_xmpp, sizeof(alpn_xmpp) - 1, NULL);

    tls_ctx_set_alpn(ctx, "xmpp-client");
    expect_alpn(ctx, cctx, alpn_xmpp, sizeof(alpn_xmpp) - 1, "xmpp-client");
    expect_alpn(ctx, cctx, alpn_xmpp_h2, sizeof(alpn_xmpp_h2) - 1, "xmpp-client");
    expect_alpn(ctx, cctx, alpn_h2, sizeof(alpn_h2) - 1, NULL);
    expect_alpn(ctx, cctx, NULL, 0, NULL);

    SSL_CTX *cctx12 = client_ctx(TLS1_2_VERSION);
    expect_alpn(ctx, cctx12, alpn_xmpp_h2, sizeof(alpn_xmpp_h2) - 1, "xmpp-client");
    SSL_CTX_free(cctx12);

    tls_ctx_set_alpn(ctx, NULL);
    expect_alpn(ctx, cctx, alpn_xmpp, sizeof(alpn_xmpp) - 1, NULL);

    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_large_data(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    connect_ok(&p);

    enum { BIG = 100 * 1024 };
    unsigned char *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);

    assert_int_equal(tls_conn_write(p.s, big, BIG), TLS_OK);
    assert_true(tls_conn_out_pending(p.s) > BIG);
    size_t written = 0;
    assert_int_equal(SSL_write_ex(p.c, big, BIG, &written), 1);
    assert_int_equal(written, BIG);
    pump(&p);
    assert_int_equal(p.cli_rx.len, BIG);
    assert_memory_equal(p.cli_rx.data, big, BIG);
    assert_int_equal(p.srv_rx.len, BIG);
    assert_memory_equal(p.srv_rx.data, big, BIG);
    assert_int_equal(tls_conn_out_pending(p.s), 0);

    /* The connection keeps working after its BIOs were recycled. */
    assert_int_equal(tls_conn_write(p.s, "after", 5), TLS_OK);
    assert_int_equal(SSL_write(p.c, "again", 5), 5);
    pump(&p);
    assert_int_equal(p.cli_rx.len, BIG + 5);
    assert_memory_equal(p.cli_rx.data + BIG, "after", 5);
    assert_int_equal(p.srv_rx.len, BIG + 5);
    assert_memory_equal(p.srv_rx.data + BIG, "again", 5);

    free(big);
    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_write_before_handshake(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    assert_int_equal(tls_conn_write(p.s, "<early", 6), TLS_OK);
    assert_int_equal(tls_conn_write(p.s, "/>", 2), TLS_OK);
    assert_int_equal(tls_conn_out_pending(p.s), 0);
    connect_ok(&p);
    assert_int_equal(p.cli_rx.len, 8);
    assert_memory_equal(p.cli_rx.data, "<early/>", 8);
    assert_int_equal(tls_conn_write(p.s, "<late/>", 7), TLS_OK);
    pump(&p);
    assert_int_equal(p.cli_rx.len, 15);
    assert_memory_equal(p.cli_rx.data, "<early/><late/>", 15);
    peer_free(&p);

    /* The queue is bounded: a caller pouring data into a connection that
     * never completes its handshake gets an error, not unbounded memory. */
    peer_init(&p, ctx, cctx, NULL);
    static unsigned char chunk[32 * 1024];
    assert_int_equal(tls_conn_write(p.s, chunk, sizeof(chunk)), TLS_OK);
    assert_int_equal(tls_conn_write(p.s, chunk, sizeof(chunk)), TLS_OK);
    assert_int_equal(tls_conn_write(p.s, chunk, 1), TLS_ERROR);
    peer_free(&p);

    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

/* After the handshake Tern's own record layer (tls13.c) carries the
 * connection: OpenSSL as the client must interoperate with it through
 * KeyUpdates in both directions (RFC 8446 section 4.6.3), hibernation of the
 * cipher state, and many records in one go. */
static void test_tls13_key_update(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    connect_ok(&p);

    /* The client rekeys and asks us to do the same. */
    assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_write(p.c, "<a/>", 4), 4);
    pump(&p);
    assert_int_equal(tls_conn_write(p.s, "<b/>", 4), TLS_OK);
    pump(&p);
    /* Only the client rekeys. */
    assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    assert_int_equal(SSL_write(p.c, "<c/>", 4), 4);
    pump(&p);
    /* An idle connection drops its cipher contexts and rebuilds them. */
    tls_conn_hibernate(p.s);
    assert_int_equal(tls_conn_write(p.s, "<d/>", 4), TLS_OK);
    assert_int_equal(SSL_write(p.c, "<e/>", 4), 4);
    pump(&p);
    /* Many records and one larger than 2^14 bytes. */
    static char big[40000];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 50; i++)
        assert_int_equal(SSL_write(p.c, "<f/>", 4), 4);
    assert_int_equal(tls_conn_write(p.s, big, sizeof(big)), TLS_OK);
    pump(&p);

    assert_false(p.s_error);
    assert_false(p.c_error);
    assert_int_equal(p.srv_rx.len, 12 + 50 * 4);
    assert_memory_equal(p.srv_rx.data, "<a/><c/><e/>", 12);
    assert_int_equal(p.cli_rx.len, 8 + sizeof(big));
    assert_memory_equal(p.cli_rx.data, "<b/><d/>", 8);
    /* The channel-binding data outlives the SSL object. */
    unsigned char cb[64], want[32];
    size_t n = 0;
    assert_int_equal(SSL_export_keying_material(p.c, want, sizeof(want), EXPORTER_LABEL,
                                                strlen(EXPORTER_LABEL), NULL, 0, 0),
                     1);
    assert_int_equal(tls_conn_cb_exporter(p.s, cb, sizeof(cb), &n), 0);
    assert_memory_equal(cb, want, 32);

    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_close_notify(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);

    /* Client closes. */
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    connect_ok(&p);
    SSL_shutdown(p.c);
    pump(&p);
    assert_true(p.s_closed);
    assert_int_equal(p.s_status, TLS_CLOSED);
    tls_conn_shutdown(p.s);
    assert_true(tls_conn_out_pending(p.s) > 0);
    peer_free(&p);

    /* Server closes. */
    peer_init(&p, ctx, cctx, NULL);
    connect_ok(&p);
    tls_conn_shutdown(p.s);
    assert_true(tls_conn_out_pending(p.s) > 0);
    pump(&p);
    assert_true(p.c_closed);
    assert_false(p.c_error);
    peer_free(&p);

    /* Shutdown before the handshake is a silent no-op. */
    peer_init(&p, ctx, cctx, NULL);
    tls_conn_shutdown(p.s);
    assert_int_equal(tls_conn_out_pending(p.s), 0);
    peer_free(&p);

    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_resumption(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    int versions[] = {0, TLS1_2_VERSION};
    for (size_t v = 0; v < TERN_ARRAY_LEN(versions); v++) {
        SSL_CTX *cctx = client_ctx(versions[v]);
        struct client_opts o = {"upload.example.org", NULL, 0};
        struct peer p;
        peer_init(&p, ctx, cctx, &o);
        connect_ok(&p);
        SSL_SESSION *sess = SSL_get1_session(p.c);
        assert_non_null(sess);
        /* Freeing an SSL that never sent close_notify marks its session
         * non-resumable, so the client closes properly. */
        SSL_shutdown(p.c);
        pump(&p);
        assert_true(p.s_closed);
        assert_true(SSL_SESSION_is_resumable(sess));
        peer_free(&p);

        /* Stateless tickets resume although the server keeps no cache. */
        peer_init(&p, ctx, cctx, &o);
        assert_int_equal(SSL_set_session(p.c, sess), 1);
        connect_ok(&p);
        assert_true(SSL_session_reused(p.c));
        assert_string_equal(tls_conn_sni(p.s), "upload.example.org");
        unsigned char cb[64], want[32];
        size_t n = 0;
        cert_sha256(f->eo_cert, want);
        assert_int_equal(tls_conn_cb_server_end_point(p.s, cb, sizeof(cb), &n), 0);
        assert_memory_equal(cb, want, 32);
        peer_free(&p);
        SSL_SESSION_free(sess);
        SSL_CTX_free(cctx);
    }
    tls_ctx_free(ctx);
}

/* Contexts that share ticket keys (two listeners, or two workers) resume
 * each other's sessions; without sharing they cannot. */
static void test_shared_ticket_keys(void **state)
{
    struct files *f = *state;
    tls_ctx_t *a = make_ctx(f), *b = make_ctx(f), *c = make_ctx(f);
    assert_int_equal(tls_ctx_share_ticket_keys(b, a), TERN_OK);
    SSL_CTX *cctx = client_ctx(0);
    struct peer p;
    peer_init(&p, a, cctx, NULL);
    connect_ok(&p);
    SSL_SESSION *sess = SSL_get1_session(p.c);
    SSL_shutdown(p.c);
    pump(&p);
    peer_free(&p);

    peer_init(&p, b, cctx, NULL);
    assert_int_equal(SSL_set_session(p.c, sess), 1);
    connect_ok(&p);
    assert_true(SSL_session_reused(p.c));
    peer_free(&p);

    peer_init(&p, c, cctx, NULL);
    assert_int_equal(SSL_set_session(p.c, sess), 1);
    connect_ok(&p);
    assert_false(SSL_session_reused(p.c));
    peer_free(&p);

    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    tls_ctx_free(a);
    tls_ctx_free(b);
    tls_ctx_free(c);
}

static void test_hello_retry(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    /* The client's first key share (X448) is not one the server accepts,
     * forcing a HelloRetryRequest and a second ClientHello that runs the
     * servername callback again on the already switched connection. */
    SSL_CTX *cctx = client_ctx(0);
    assert_int_equal(SSL_CTX_set1_groups_list(cctx, "X448:X25519"), 1);
    expect_cn(ctx, cctx, "example.org", "example.org");
    expect_cn(ctx, cctx, NULL, "localhost");
    struct client_opts o = {"conference.localhost", alpn_xmpp, sizeof(alpn_xmpp) - 1};
    struct peer p;
    tls_ctx_set_alpn(ctx, "xmpp-client");
    peer_init(&p, ctx, cctx, &o);
    connect_ok(&p);
    assert_int_equal(SSL_get_negotiated_group(p.c), NID_X25519);
    const unsigned char *sel = NULL;
    unsigned int sel_len = 0;
    SSL_get0_alpn_selected(p.c, &sel, &sel_len);
    assert_int_equal(sel_len, 11);
    peer_free(&p);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_garbage(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    unsigned char tmp[256];
    size_t n = 7;

    /* A plaintext client on the Direct TLS port. */
    tls_conn_t *c = tls_conn_new(ctx);
    assert_non_null(c);
    const char *junk = "<?xml version='1.0'?><stream:stream to='localhost'>";
    assert_int_equal(tls_conn_feed(c, junk, strlen(junk)), TLS_OK);
    assert_int_equal(tls_conn_read(c, tmp, sizeof(tmp), &n), TLS_ERROR);
    assert_int_equal(n, 0);
    assert_false(tls_conn_handshake_done(c));
    tls_conn_shutdown(c);
    tls_conn_free(c);

    /* A partial record is not an error, just incomplete. */
    c = tls_conn_new(ctx);
    assert_int_equal(tls_conn_feed(c, "\x16\x03\x01", 3), TLS_OK);
    assert_int_equal(tls_conn_read(c, tmp, sizeof(tmp), &n), TLS_WANT_MORE);
    tls_conn_free(c);

    /* Corrupted records after a good handshake. */
    SSL_CTX *cctx = client_ctx(0);
    struct peer p;
    peer_init(&p, ctx, cctx, NULL);
    connect_ok(&p);
    unsigned char rec[64];
    rec[0] = 0x17;
    rec[1] = 0x03;
    rec[2] = 0x03;
    rec[3] = 0;
    rec[4] = sizeof(rec) - 5;
    for (size_t i = 5; i < sizeof(rec); i++)
        rec[i] = (unsigned char)(i * 13);
    assert_int_equal(tls_conn_feed(p.s, rec, sizeof(rec)), TLS_OK);
    assert_int_equal(tls_conn_read(p.s, tmp, sizeof(tmp), &n), TLS_ERROR);
    /* The fatal alert for the peer may be flushed before closing. */
    assert_true(tls_conn_out_pending(p.s) > 0);
    tls_conn_shutdown(p.s);
    peer_free(&p);

    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_reload(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    SSL_CTX *cctx = client_ctx(0);
    unsigned char old_hash[32], new_hash[32], cb[64];
    size_t n = 0;
    cert_sha256(f->lh_cert, old_hash);
    cert_sha256(f->lh2_cert, new_hash);
    assert_memory_not_equal(old_hash, new_hash, 32);

    struct peer before;
    peer_init(&before, ctx, cctx, NULL);
    connect_ok(&before);
    /* A connection created before the reload but still in its handshake. */
    struct peer pending;
    peer_init(&pending, ctx, cctx, NULL);

    char err[256] = "";
    assert_int_equal(tls_ctx_add_host(ctx, "localhost", f->lh2_cert, f->lh2_key, err, sizeof(err)),
                     0);

    struct peer after;
    peer_init(&after, ctx, cctx, NULL);
    connect_ok(&after);
    X509 *want = load_cert(f->lh2_cert);
    X509 *got = SSL_get1_peer_certificate(after.c);
    assert_int_equal(X509_cmp(want, got), 0);
    X509_free(got);
    assert_int_equal(tls_conn_cb_server_end_point(after.s, cb, sizeof(cb), &n), 0);
    assert_memory_equal(cb, new_hash, 32);

    connect_ok(&pending);
    got = SSL_get1_peer_certificate(pending.c);
    assert_int_equal(X509_cmp(want, got), 0);
    X509_free(got);
    X509_free(want);

    /* The established connection keeps its certificate and keeps working,
     * even once the context that served it is gone from tls_ctx. */
    assert_int_equal(tls_conn_cb_server_end_point(before.s, cb, sizeof(cb), &n), 0);
    assert_memory_equal(cb, old_hash, 32);
    assert_int_equal(tls_conn_write(before.s, "still here", 10), TLS_OK);
    pump(&before);
    assert_int_equal(before.cli_rx.len, 10);

    /* A failed reload leaves the current certificate in place. */
    assert_true(tls_ctx_add_host(ctx, "localhost", f->lh_cert, f->eo_key, err, sizeof(err)) < 0);
    struct peer again;
    peer_init(&again, ctx, cctx, NULL);
    connect_ok(&again);
    assert_int_equal(tls_conn_cb_server_end_point(again.s, cb, sizeof(cb), &n), 0);
    assert_memory_equal(cb, new_hash, 32);

    peer_free(&again);
    peer_free(&after);
    peer_free(&pending);
    peer_free(&before);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
}

static void test_bad_config(void **state)
{
    struct files *f = *state;
    tls_ctx_t *ctx = tls_ctx_new();
    assert_non_null(ctx);
    char err[512] = "";

    /* No host yet: no connection can be served. */
    assert_null(tls_conn_new(ctx));

    assert_true(tls_ctx_add_host(ctx, "localhost", f->lh_cert, f->eo_key, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "does not match"));
    assert_non_null(strstr(err, f->eo_key));

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.crt", f->dir);
    assert_true(tls_ctx_add_host(ctx, "localhost", missing, f->lh_key, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, missing));

    /* A key file passed as the certificate. */
    assert_true(tls_ctx_add_host(ctx, "localhost", f->lh_key, f->lh_key, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "certificate"));

    assert_int_equal(tls_ctx_add_host(ctx, "", f->lh_cert, f->lh_key, err, sizeof(err)),
                     TERN_EINVAL);
    tls_ctx_free(ctx);
}

/* Checks that an idle, established connection gives its record buffers
 * back (SSL_MODE_RELEASE_BUFFERS): with them kept it would hold over 40 KB.
 * This is a mechanism check, not the memory budget, which the benchmarks
 * hold. Uses glibc's mallinfo2, meaningless under ASan's allocator, so it
 * is skipped there. */
static void test_idle_memory(void **state)
{
#if defined(__SANITIZE_ADDRESS__) || TLS_TEST_HAS_ASAN
    skip();
#else
    struct files *f = *state;
    tls_ctx_t *ctx = make_ctx(f);
    tls_ctx_set_alpn(ctx, "xmpp-client");
    SSL_CTX *cctx = client_ctx(0);
    enum { N = 64 };
    static struct peer peers[N];
    struct client_opts o = {"localhost", alpn_xmpp, sizeof(alpn_xmpp) - 1};

    /* Warm up OpenSSL's lazily built global tables first. */
    peer_init(&peers[0], ctx, cctx, &o);
    connect_ok(&peers[0]);
    peer_free(&peers[0]);

    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < N; i++) {
        peer_init(&peers[i], ctx, cctx, &o);
        connect_ok(&peers[i]);
        assert_int_equal(tls_conn_write(peers[i].s, "<stream:features/>", 18), TLS_OK);
        assert_int_equal(SSL_write(peers[i].c, "<iq type='get'/>", 16), 16);
        pump(&peers[i]);
        peer_free_client(&peers[i]);
        buf_free(&peers[i].srv_rx);
        buf_free(&peers[i].cli_rx);
    }
    size_t after = mallinfo2().uordblks;
    size_t per_conn = (after - before) / N;
    print_message("idle TLS connection: %zu bytes of heap\n", per_conn);
    assert_true(per_conn < 32 * 1024);

    for (int i = 0; i < N; i++)
        tls_conn_free(peers[i].s);
    SSL_CTX_free(cctx);
    tls_ctx_free(ctx);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_signed_cert),
        cmocka_unit_test(test_tls13_handshake),
        cmocka_unit_test(test_tls12_handshake),
        cmocka_unit_test(test_tls11_rejected),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_large_data),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_tls13_key_update),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_shared_ticket_keys),
        cmocka_unit_test(test_hello_retry),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
