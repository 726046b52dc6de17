/* SPDX-License-Identifier: MIT
 * test_scram.c - unit tests for the SCRAM server, SASL PLAIN parsing and
 * base64 helpers.
 *
 * The RFC 5802 and RFC 7677 examples pin the byte-exact output; the other
 * exchanges run against a client written here directly on OpenSSL, so the
 * server is checked against an independent computation rather than
 * against itself. The XEP-0474 value is likewise recomputed here, and also
 * checked against the example in the XEP itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/common.h"
#include "sasl/scram.h"

/* ---- independent client side ------------------------------------------ */

static const EVP_MD *md_of(scram_hash_t h)
{
    return h == SCRAM_SHA1 ? EVP_sha1() : h == SCRAM_SHA256 ? EVP_sha256() : EVP_sha512();
}

static char *b64(const unsigned char *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

/* Decodes a base64 string from a test vector (trusted, padded). */
static size_t unb64(const char *in, unsigned char *out)
{
    size_t len = strlen(in);
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    assert_true(n >= 0);
    size_t pad = (len && in[len - 1] == '=') + (len > 1 && in[len - 2] == '=');
    return (size_t)n - pad;
}

/* Computes ClientProof and ServerSignature for an AuthMessage. */
static void client_compute(scram_hash_t h, const char *password, const unsigned char *salt,
                           size_t salt_len, unsigned iter, const char *auth_message,
                           unsigned char *proof, unsigned char *server_sig)
{
    const EVP_MD *md = md_of(h);
    int hlen = EVP_MD_get_size(md);
    unsigned char salted[64], ck[64], sk[64], cs[64], svk[64];
    unsigned int l;
    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
                                       (int)iter, md, hlen, salted),
                     1);
    assert_non_null(HMAC(md, salted, hlen, (const unsigned char *)"Client Key", 10, ck, &l));
    assert_int_equal(EVP_Digest(ck, (size_t)hlen, sk, &l, md, NULL), 1);
    assert_non_null(
        HMAC(md, sk, hlen, (const unsigned char *)auth_message, strlen(auth_message), cs, &l));
    for (int i = 0; i < hlen; i++)
        proof[i] = ck[i] ^ cs[i];
    assert_non_null(HMAC(md, salted, hlen, (const unsigned char *)"Server Key", 10, svk, &l));
    assert_non_null(HMAC(md, svk, hlen, (const unsigned char *)auth_message, strlen(auth_message),
                         server_sig, &l));
}

/* Returns a malloc'd copy of attribute `attr` of a server-first message. */
static char *attr_of(const char *msg, char attr)
{
    const char *p = msg;
    while (p && *p) {
        if (p[0] == attr && p[1] == '=') {
            const char *end = strchr(p, ',');
            size_t n = end ? (size_t)(end - p - 2) : strlen(p + 2);
            char *r = malloc(n + 1);
            memcpy(r, p + 2, n);
            r[n] = '\0';
            return r;
        }
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return NULL;
}

typedef struct {
    const char *mech;
    scram_cb_t cb;
    const char *gs2;              /* GS2 header the client sends */
    const unsigned char *cb_data; /* appended to the GS2 header in c= */
    size_t cb_data_len;
    const char *user;           /* as sent (saslname-encoded) */
    const char *password;       /* what the client types */
    const scram_creds_t *creds; /* NULL: unknown account */
    const char *extension;      /* inserted before p=, or NULL */
    bool wrong_nonce;
} exchange_t;

/* Runs a full exchange; returns the result of the last step run. Steps 1
 * and 2 must succeed; the final step's result is returned, and on success
 * the server signature is checked. *server_first gets step 2's output if
 * non-NULL. */
static sasl_error_t run_exchange(const exchange_t *x, char **server_first)
{
    scram_hash_t h = strstr(x->mech, "SHA-512")   ? SCRAM_SHA512
                     : strstr(x->mech, "SHA-256") ? SCRAM_SHA256
                                                  : SCRAM_SHA1;
    size_t hlen = scram_hash_len(h);
    scram_server_t *s = scram_server_new(x->mech, &x->cb);
    assert_non_null(s);

    char cfirst[512];
    snprintf(cfirst, sizeof(cfirst), "%sn=%s,r=cl13nTn0nce", x->gs2, x->user);
    const char *user = NULL, *authzid = NULL;
    assert_int_equal(scram_server_client_first(s, cfirst, strlen(cfirst), &user, &authzid),
                     SASL_ERR_NONE);
    assert_non_null(user);

    char *sf = NULL;
    size_t sflen = 0;
    assert_int_equal(scram_server_first(s, x->creds, &sf, &sflen), SASL_ERR_NONE);
    assert_int_equal(strlen(sf), sflen);

    char *nonce = attr_of(sf, 'r');
    char *salt_b64 = attr_of(sf, 's');
    char *iter = attr_of(sf, 'i');
    assert_non_null(nonce);
    assert_non_null(salt_b64);
    assert_non_null(iter);
    assert_memory_equal(nonce, "cl13nTn0nce", 11);
    /* At least 24 random bytes of server nonce, base64-encoded. */
    assert_true(strlen(nonce) >= 11 + 32);
    if (x->wrong_nonce)
        nonce[strlen(nonce) - 1] ^= 1;

    unsigned char cbind[256];
    size_t gl = strlen(x->gs2);
    memcpy(cbind, x->gs2, gl);
    if (x->cb_data_len)
        memcpy(cbind + gl, x->cb_data, x->cb_data_len);
    char *c = b64(cbind, gl + x->cb_data_len);

    char without_proof[1024];
    snprintf(without_proof, sizeof(without_proof), "c=%s,r=%s%s%s", c, nonce,
             x->extension ? "," : "", x->extension ? x->extension : "");
    char am[2048];
    snprintf(am, sizeof(am), "%s,%s,%s", cfirst + gl, sf, without_proof);

    unsigned char salt[128];
    size_t salt_len = unb64(salt_b64, salt);
    unsigned char proof[64], server_sig[64];
    client_compute(h, x->password, salt, salt_len, (unsigned)atoi(iter), am, proof, server_sig);
    char *p = b64(proof, hlen);
    char cfinal[1200];
    snprintf(cfinal, sizeof(cfinal), "%s,p=%s", without_proof, p);

    char *out = NULL;
    size_t outlen = 0;
    sasl_error_t e = scram_server_client_final(s, cfinal, strlen(cfinal), &out, &outlen);
    if (e == SASL_ERR_NONE) {
        char *v = b64(server_sig, hlen);
        char expect[200];
        snprintf(expect, sizeof(expect), "v=%s", v);
        assert_string_equal(out, expect);
        assert_int_equal(outlen, strlen(expect));
        free(v);
    } else {
        assert_null(out);
    }
    free(out);
    free(p);
    free(c);
    free(nonce);
    free(salt_b64);
    free(iter);
    if (server_first)
        *server_first = sf;
    else
        free(sf);
    scram_server_free(s);
    return e;
}

/* The server's credentials for "pencil" with 4096 iterations, derived once
 * per test that needs them (no shared mutable state between tests). */
static void make_creds(scram_creds_t *creds, const char *password)
{
    assert_int_equal(scram_creds_from_password(password, 4096, creds), 0);
}

/* ---- RFC known-answer vectors ----------------------------------------- */

static void run_vector(const char *mech, scram_hash_t h, const char *client_first,
                       const char *server_nonce, const char *salt_b64, const char *server_first,
                       const char *client_final, const char *server_final)
{
    unsigned char salt[64];
    size_t salt_len = unb64(salt_b64, salt);
    scram_creds_t creds;
    memset(&creds, 0, sizeof(creds));
    creds.iterations = 4096;
    assert_int_equal(scram_derive_keys(h, "pencil", salt, salt_len, 4096, creds.stored_key[h],
                                       creds.server_key[h]),
                     0);

    scram_cb_t cb = {0};
    scram_server_t *s = scram_server_new(mech, &cb);
    assert_non_null(s);
    assert_int_equal(scram_server_set_nonce_for_test(s, server_nonce), 0);
    assert_int_equal(scram_server_set_salt_for_test(s, salt, salt_len), 0);

    const char *user, *authzid;
    assert_int_equal(
        scram_server_client_first(s, client_first, strlen(client_first), &user, &authzid),
        SASL_ERR_NONE);
    assert_string_equal(user, "user");
    assert_null(authzid);

    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_NONE);
    assert_string_equal(out, server_first);
    assert_int_equal(outlen, strlen(server_first));
    free(out);

    assert_int_equal(
        scram_server_client_final(s, client_final, strlen(client_final), &out, &outlen),
        SASL_ERR_NONE);
    assert_string_equal(out, server_final);
    assert_int_equal(outlen, strlen(server_final));
    free(out);
    /* A completed exchange accepts nothing more, not even a replay. */
    assert_int_equal(
        scram_server_client_final(s, client_final, strlen(client_final), &out, &outlen),
        SASL_ERR_MALFORMED_REQUEST);
    assert_null(out);
    scram_server_free(s);
}

static void test_rfc5802_sha1(void **state)
{
    run_vector("SCRAM-SHA-1", SCRAM_SHA1, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
               "3rfcNHYJY1ZVvWVs7j", "QSXCR+Q6sek8bf92",
               "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
               "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
               "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
               "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

static void test_rfc7677_sha256(void **state)
{
    run_vector("SCRAM-SHA-256", SCRAM_SHA256, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
               "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "W22ZaJ0SNY7soEsUEjb6gQ==",
               "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
               "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
               "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
               "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
               "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

static void test_rfc_vector_wrong_proof(void **state)
{
    unsigned char salt[64];
    size_t salt_len = unb64("QSXCR+Q6sek8bf92", salt);
    scram_creds_t creds;
    memset(&creds, 0, sizeof(creds));
    creds.iterations = 4096;
    assert_int_equal(scram_derive_keys(SCRAM_SHA1, "pencil", salt, salt_len, 4096,
                                       creds.stored_key[0], creds.server_key[0]),
                     0);
    scram_server_t *s = scram_server_new("SCRAM-SHA-1", NULL);
    assert_int_equal(scram_server_set_nonce_for_test(s, "3rfcNHYJY1ZVvWVs7j"), 0);
    assert_int_equal(scram_server_set_salt_for_test(s, salt, salt_len), 0);
    const char *cf = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    char *out;
    size_t outlen;
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_NONE);
    free(out);
    /* One bit flipped in the proof. */
    const char *fin = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                      "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=";
    assert_int_equal(scram_server_client_final(s, fin, strlen(fin), &out, &outlen),
                     SASL_ERR_MALFORMED_REQUEST); /* non-canonical base64 */
    scram_server_free(s);

    s = scram_server_new("SCRAM-SHA-1", NULL);
    assert_int_equal(scram_server_set_nonce_for_test(s, "3rfcNHYJY1ZVvWVs7j"), 0);
    assert_int_equal(scram_server_set_salt_for_test(s, salt, salt_len), 0);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_NONE);
    free(out);
    fin = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
          "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tw=";
    assert_int_equal(scram_server_client_final(s, fin, strlen(fin), &out, &outlen),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_null(out);
    scram_server_free(s);
}

/* ---- full exchanges ---------------------------------------------------- */

static void test_full_exchange_all_hashes(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    const char *mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"};
    for (size_t i = 0; i < 3; i++) {
        exchange_t x = {
            .mech = mechs[i], .gs2 = "n,,", .user = "user", .password = "pencil", .creds = &creds};
        assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
        /* The y flag without -PLUS on offer is fine. */
        x.gs2 = "y,,";
        assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
        /* Authzid travels in the GS2 header and must be echoed in c=. */
        x.gs2 = "n,a=juliet@example.com,";
        assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
        /* Unknown optional extensions are ignored but still signed. */
        x.gs2 = "n,,";
        x.extension = "x=19C6532F-1CF4";
        assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
    }
}

static void test_wrong_password(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    exchange_t x = {.mech = "SCRAM-SHA-256",
                    .gs2 = "n,,",
                    .user = "user",
                    .password = "pencil2",
                    .creds = &creds};
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
    x.mech = "SCRAM-SHA-512";
    x.password = "";
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
}

static void test_wrong_nonce(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    exchange_t x = {.mech = "SCRAM-SHA-1",
                    .gs2 = "n,,",
                    .user = "user",
                    .password = "pencil",
                    .creds = &creds,
                    .wrong_nonce = true};
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
}

static void test_unknown_user(void **state)
{
    /* The client computes a proof from the fake salt as a real client
     * would; the server must still refuse at the last step. */
    exchange_t x = {.mech = "SCRAM-SHA-256",
                    .gs2 = "n,,",
                    .user = "nobody",
                    .password = "pencil",
                    .creds = NULL};
    char *sf = NULL;
    assert_int_equal(run_exchange(&x, &sf), SASL_ERR_NOT_AUTHORIZED);
    char *salt = attr_of(sf, 's');
    char *iter = attr_of(sf, 'i');
    unsigned char raw[64];
    assert_int_equal(unb64(salt, raw), SCRAM_SALT_LEN);
    assert_string_equal(iter, "4096");
    free(salt);
    free(iter);
    free(sf);
}

static char *fake_salt_for(const char *user, const unsigned char *key, size_t key_len)
{
    scram_server_t *s = scram_server_new("SCRAM-SHA-1", NULL);
    assert_int_equal(scram_server_set_fake_params(s, key, key_len, 10000), 0);
    char cf[128];
    snprintf(cf, sizeof(cf), "n,,n=%s,r=abc", user);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    char *out;
    size_t outlen;
    assert_int_equal(scram_server_first(s, NULL, &out, &outlen), SASL_ERR_NONE);
    char *iter = attr_of(out, 'i');
    assert_string_equal(iter, "10000");
    free(iter);
    char *salt = attr_of(out, 's');
    free(out);
    scram_server_free(s);
    return salt;
}

static void test_unknown_user_stable_salt(void **state)
{
    unsigned char key[32];
    memset(key, 0x42, sizeof(key));
    char *a1 = fake_salt_for("alice", key, sizeof(key));
    char *a2 = fake_salt_for("alice", key, sizeof(key));
    char *b1 = fake_salt_for("bob", key, sizeof(key));
    assert_string_equal(a1, a2);
    assert_string_not_equal(a1, b1);
    free(a1);
    free(a2);
    free(b1);

    scram_server_t *s = scram_server_new("SCRAM-SHA-1", NULL);
    assert_int_equal(scram_server_set_fake_params(s, key, 65, 4096), TERN_EINVAL);
    assert_int_equal(scram_server_set_fake_params(s, key, 16, 0), TERN_EINVAL);
    scram_server_free(s);
}

/* ---- channel binding --------------------------------------------------- */

static void test_plus_exporter(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    unsigned char exporter[32], endpoint[32], tampered[32];
    memset(exporter, 0xa5, sizeof(exporter));
    memset(endpoint, 0x5a, sizeof(endpoint));
    memcpy(tampered, exporter, sizeof(tampered));
    tampered[31] ^= 1;

    exchange_t x = {.mech = "SCRAM-SHA-256-PLUS",
                    .cb = {.exporter = exporter,
                           .exporter_len = sizeof(exporter),
                           .endpoint = endpoint,
                           .endpoint_len = sizeof(endpoint),
                           .plus_advertised = true},
                    .gs2 = "p=tls-exporter,,",
                    .cb_data = exporter,
                    .cb_data_len = sizeof(exporter),
                    .user = "user",
                    .password = "pencil",
                    .creds = &creds};
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);

    x.mech = "SCRAM-SHA-1-PLUS";
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
    x.mech = "SCRAM-SHA-512-PLUS";
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);

    /* MITM: the client saw a different TLS channel. */
    x.cb_data = tampered;
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
    /* Binding data of the other type. */
    x.cb_data = endpoint;
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
    /* GS2 header alone, as if no binding data were appended. */
    x.cb_data_len = 0;
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
}

static void test_plus_endpoint(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    unsigned char endpoint[48];
    for (size_t i = 0; i < sizeof(endpoint); i++)
        endpoint[i] = (unsigned char)i;
    exchange_t x = {
        .mech = "SCRAM-SHA-512-PLUS",
        .cb = {.endpoint = endpoint, .endpoint_len = sizeof(endpoint), .plus_advertised = true},
        .gs2 = "p=tls-server-end-point,a=us=2Cer@host,",
        .cb_data = endpoint,
        .cb_data_len = sizeof(endpoint),
        .user = "user",
        .password = "pencil",
        .creds = &creds};
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NONE);
    unsigned char tampered[48];
    memcpy(tampered, endpoint, sizeof(tampered));
    tampered[0] ^= 0x80;
    x.cb_data = tampered;
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
    /* Truncated binding data. */
    x.cb_data = endpoint;
    x.cb_data_len = 47;
    assert_int_equal(run_exchange(&x, NULL), SASL_ERR_NOT_AUTHORIZED);
}

static sasl_error_t first_step(const char *mech, const scram_cb_t *cb, const char *msg)
{
    scram_server_t *s = scram_server_new(mech, cb);
    assert_non_null(s);
    const char *user = (const char *)1, *authzid = (const char *)1;
    sasl_error_t e = scram_server_client_first(s, msg, strlen(msg), &user, &authzid);
    if (e != SASL_ERR_NONE) {
        assert_null(user);
        assert_null(authzid);
        /* A failed exchange stays failed. */
        char *out = (char *)1;
        size_t outlen;
        assert_int_equal(scram_server_first(s, NULL, &out, &outlen), SASL_ERR_MALFORMED_REQUEST);
        assert_null(out);
    }
    scram_server_free(s);
    return e;
}

static void test_cb_policy(void **state)
{
    unsigned char data[32] = {1};
    scram_cb_t exp_only = {.exporter = data, .exporter_len = 32, .plus_advertised = true};
    scram_cb_t ep_only = {.endpoint = data, .endpoint_len = 32, .plus_advertised = true};
    scram_cb_t none = {0};

    /* -PLUS needs p= with a type we have data for. */
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "p=tls-exporter,,n=u,r=x"),
                     SASL_ERR_NONE);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "p=tls-server-end-point,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &ep_only, "p=tls-exporter,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "p=tls-unique,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &none, "p=tls-exporter,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "n,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "y,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    /* p= with a mechanism that does not bind. */
    assert_int_equal(first_step("SCRAM-SHA-256", &exp_only, "p=tls-exporter,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    /* Malformed cb-name is a syntax error. */
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "p=,,n=u,r=x"),
                     SASL_ERR_MALFORMED_REQUEST);
    assert_int_equal(first_step("SCRAM-SHA-256-PLUS", &exp_only, "p=tls_exporter,,n=u,r=x"),
                     SASL_ERR_MALFORMED_REQUEST);
}

static void test_y_downgrade(void **state)
{
    unsigned char data[32] = {1};
    scram_cb_t advertised = {.exporter = data, .exporter_len = 32, .plus_advertised = true};
    scram_cb_t not_advertised = {.exporter = data, .exporter_len = 32};
    /* The client can bind but saw no -PLUS: someone removed it. */
    assert_int_equal(first_step("SCRAM-SHA-256", &advertised, "y,,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-1", &advertised, "y,a=admin,n=u,r=x"),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(first_step("SCRAM-SHA-256", &not_advertised, "y,,n=u,r=x"), SASL_ERR_NONE);
    assert_int_equal(first_step("SCRAM-SHA-256", &advertised, "n,,n=u,r=x"), SASL_ERR_NONE);
    /* With XEP-0440 types announced, 'y' means the client supports none of
     * them (slixmpp: tls-unique only); that is not a downgrade. */
    static const char *const types[] = {"tls-exporter", NULL};
    scram_cb_t with_types = advertised;
    with_types.advertised_cb_types = types;
    assert_int_equal(first_step("SCRAM-SHA-256", &with_types, "y,,n=u,r=x"), SASL_ERR_NONE);
}

/* ---- malformed input and state machine --------------------------------- */

static void test_client_first_malformed(void **state)
{
    const char *bad[] = {
        "",
        "n",
        "n,",
        "n,,",
        "x,,n=user,r=abc",
        "N,,n=user,r=abc",
        "n,,r=abc",
        "n,,n=user",
        "n,,n=user,",
        "n,,n=,r=abc",
        "n,,n=user,r=",
        "n,,n=us=er,r=abc",
        "n,,n=us=2,r=abc",
        "n,,n=us=2c,r=abc",
        "n,,n=user,r=a\x7f",
        "n,,n=user,r=a b",
        "n,,m=ext,n=user,r=abc",
        "n,,n=user,r=abc,m=ext",
        "n,,n=user,r=abc,junk",
        "n,,n=user,r=abc,=x",
        "n,,n=user,r=abc,,x=1",
        "n,,n=user,,r=abc",
        "n,a=,n=user,r=abc",
        "n,a=x=,n=user,r=abc",
        "n,b=x,n=user,r=abc",
        "n,a=admin",
        "n,,,n=user,r=abc",
        "nn,,n=user,r=abc",
        "n=user,r=abc",
        ",,n=user,r=abc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (first_step("SCRAM-SHA-256", NULL, bad[i]) != SASL_ERR_MALFORMED_REQUEST)
            fail_msg("accepted: \"%s\"", bad[i]);
    }

    /* Embedded NUL. */
    scram_server_t *s = scram_server_new("SCRAM-SHA-256", NULL);
    const char nul[] = "n,,n=us\0er,r=abc";
    assert_int_equal(scram_server_client_first(s, nul, sizeof(nul) - 1, NULL, NULL),
                     SASL_ERR_MALFORMED_REQUEST);
    scram_server_free(s);

    /* Oversized. */
    size_t big = 100000;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    memcpy(huge, "n,,n=user,r=", 12);
    huge[big] = '\0';
    assert_int_equal(first_step("SCRAM-SHA-256", NULL, huge), SASL_ERR_MALFORMED_REQUEST);
    free(huge);
}

static void test_client_first_decoding(void **state)
{
    scram_server_t *s = scram_server_new("SCRAM-SHA-1", NULL);
    const char *cf = "n,a=us=2Cer=3Dx,n==3Du=2Cser=2C,r=abc,x=ignored";
    const char *user, *authzid;
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), &user, &authzid), SASL_ERR_NONE);
    assert_string_equal(user, "=u,ser,");
    assert_string_equal(authzid, "us,er=x");
    scram_server_free(s);

    /* Non-ASCII usernames pass through for the caller to normalise. */
    s = scram_server_new("SCRAM-SHA-1", NULL);
    cf = "n,,n=j\xc3\xbcrgen,r=abc";
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), &user, &authzid), SASL_ERR_NONE);
    assert_string_equal(user, "j\xc3\xbcrgen");
    assert_null(authzid);
    scram_server_free(s);
}

/* Sets up an exchange at step 3 with a known nonce; returns the server. */
static scram_server_t *at_step3(const scram_creds_t *creds)
{
    scram_server_t *s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_set_nonce_for_test(s, "SRV"), 0);
    const char *cf = "n,,n=user,r=CLI";
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    char *out;
    size_t outlen;
    assert_int_equal(scram_server_first(s, creds, &out, &outlen), SASL_ERR_NONE);
    free(out);
    return s;
}

static void test_client_final_malformed(void **state)
{
    scram_creds_t creds;
    memset(&creds, 0x11, sizeof(creds));
    creds.iterations = 4096;
    /* 32 bytes: a well-formed SHA-256 proof that is simply wrong. */
    const char *p32 = "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    char buf[512];
    struct {
        const char *msg;
        sasl_error_t want;
    } cases[] = {
        {"", SASL_ERR_MALFORMED_REQUEST},
        {"c=biws,r=CLISRV", SASL_ERR_MALFORMED_REQUEST},        /* no proof */
        {"r=CLISRV,%s", SASL_ERR_MALFORMED_REQUEST},            /* no c= */
        {"c=biws,%s", SASL_ERR_MALFORMED_REQUEST},              /* no r= */
        {"c=biw,r=CLISRV,%s", SASL_ERR_MALFORMED_REQUEST},      /* bad base64 */
        {"c=bi*s,r=CLISRV,%s", SASL_ERR_MALFORMED_REQUEST},     /* bad base64 */
        {"c=,r=CLISRV,%s", SASL_ERR_NOT_AUTHORIZED},            /* empty c= binds nothing */
        {"c=biws,r=,%s", SASL_ERR_MALFORMED_REQUEST},           /* empty nonce */
        {"c=biws,r=CLISRV,p=AAAA", SASL_ERR_MALFORMED_REQUEST}, /* proof too short */
        {"c=biws,r=CLISRV,p=!!!!", SASL_ERR_MALFORMED_REQUEST},
        {"c=biws,r=CLISRV,%s,x=1", SASL_ERR_MALFORMED_REQUEST}, /* proof not last */
        {"c=biws,r=CLISRV,m=1,%s", SASL_ERR_MALFORMED_REQUEST}, /* mandatory ext */
        {"c=biws,r=CLISRV,,%s", SASL_ERR_MALFORMED_REQUEST},
        {"c=biws,r=CLISRV,%s,", SASL_ERR_MALFORMED_REQUEST},
        {"r=CLISRV,c=biws,%s", SASL_ERR_MALFORMED_REQUEST},  /* wrong order */
        {"c=biws,r=CLISRV,%s", SASL_ERR_NOT_AUTHORIZED},     /* wrong proof */
        {"c=biws,r=CLIXXX,%s", SASL_ERR_NOT_AUTHORIZED},     /* wrong nonce */
        {"c=biws,r=CLI,%s", SASL_ERR_NOT_AUTHORIZED},        /* client nonce only */
        {"c=eSws,r=CLISRV,%s", SASL_ERR_NOT_AUTHORIZED},     /* c= says "y,," */
        {"c=biwsAA==,r=CLISRV,%s", SASL_ERR_NOT_AUTHORIZED}, /* trailing data */
    };
    /* "%s" in a case stands for the proof. */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *at = strstr(cases[i].msg, "%s");
        if (at)
            snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - cases[i].msg), cases[i].msg, p32,
                     at + 2);
        else
            snprintf(buf, sizeof(buf), "%s", cases[i].msg);
        scram_server_t *s = at_step3(&creds);
        char *out = (char *)1;
        size_t outlen = 99;
        sasl_error_t e = scram_server_client_final(s, buf, strlen(buf), &out, &outlen);
        if (e != cases[i].want)
            fail_msg("\"%s\": got %s", buf, sasl_error_name(e));
        assert_null(out);
        assert_int_equal(outlen, 0);
        /* No second attempt on the same exchange. */
        assert_int_equal(scram_server_client_final(s, buf, strlen(buf), &out, &outlen),
                         SASL_ERR_MALFORMED_REQUEST);
        scram_server_free(s);
    }

    /* Embedded NUL. */
    scram_server_t *s = at_step3(&creds);
    char *out;
    size_t outlen;
    const char nul[] = "c=biws,r=CLISRV,x=\0,p=AAAA";
    assert_int_equal(scram_server_client_final(s, nul, sizeof(nul) - 1, &out, &outlen),
                     SASL_ERR_MALFORMED_REQUEST);
    scram_server_free(s);
}

static void test_state_machine(void **state)
{
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    char *out = NULL;
    size_t outlen;
    const char *cf = "n,,n=user,r=abc";

    /* Final before anything. */
    scram_server_t *s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_client_final(s, "c=biws,r=x,p=AAAA", 17, &out, &outlen),
                     SASL_ERR_MALFORMED_REQUEST);
    assert_null(out);
    scram_server_free(s);

    /* Server-first before client-first. */
    s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_MALFORMED_REQUEST);
    assert_null(out);
    scram_server_free(s);

    /* Client-first twice. */
    s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL),
                     SASL_ERR_MALFORMED_REQUEST);
    scram_server_free(s);

    /* Server-first twice; final after that is refused too. */
    s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_NONE);
    free(out);
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_MALFORMED_REQUEST);
    assert_null(out);
    scram_server_free(s);

    /* Test hooks only before step 2; bad nonce characters refused. */
    s = scram_server_new("SCRAM-SHA-256", NULL);
    assert_int_equal(scram_server_set_nonce_for_test(s, "a,b"), TERN_EINVAL);
    assert_int_equal(scram_server_set_nonce_for_test(s, ""), TERN_EINVAL);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    assert_int_equal(scram_server_first(s, &creds, &out, &outlen), SASL_ERR_NONE);
    free(out);
    assert_int_equal(scram_server_set_nonce_for_test(s, "abc"), TERN_EINVAL);
    scram_server_free(s);

    /* Unknown mechanisms. */
    assert_null(scram_server_new("SCRAM-SHA-256-plus", NULL));
    assert_null(scram_server_new("SCRAM-SHA-384", NULL));
    assert_null(scram_server_new("PLAIN", NULL));
    assert_null(scram_server_new(NULL, NULL));
    scram_server_free(NULL);
}

/* ---- XEP-0474 ---------------------------------------------------------- */

static char *expected_ssdp(const EVP_MD *md, const char *s)
{
    unsigned char d[64];
    unsigned int l;
    assert_int_equal(EVP_Digest(s, strlen(s), d, &l, md, NULL), 1);
    return b64(d, l);
}

static char *ssdp_of(const char *mech, const scram_cb_t *cb)
{
    scram_server_t *s = scram_server_new(mech, cb);
    assert_non_null(s);
    const char *cf = strstr(mech, "PLUS") ? "p=tls-exporter,,n=user,r=abc" : "n,,n=user,r=abc";
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), NULL, NULL), SASL_ERR_NONE);
    char *out;
    size_t outlen;
    assert_int_equal(scram_server_first(s, NULL, &out, &outlen), SASL_ERR_NONE);
    char *h = attr_of(out, 'h');
    /* h= comes after the mandatory attributes. */
    if (h)
        assert_non_null(strstr(out, ",i=4096,h="));
    free(out);
    scram_server_free(s);
    return h;
}

static void test_ssdp(void **state)
{
    unsigned char data[32] = {0};
    /* Advertised out of order to check sorting. */
    const char *mechs[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1",      "PLAIN",
                           "SCRAM-SHA-256",      "SCRAM-SHA-1-PLUS", NULL};
    const char *cbt[] = {"tls-server-end-point", "tls-exporter", NULL};
    scram_cb_t cb = {.exporter = data,
                     .exporter_len = 32,
                     .plus_advertised = true,
                     .advertised_mechs = mechs,
                     .advertised_cb_types = cbt};

    const char *with_cb = "PLAIN\x1eSCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1eSCRAM-SHA-256\x1e"
                          "SCRAM-SHA-256-PLUS\x1ftls-exporter\x1etls-server-end-point";
    char *want = expected_ssdp(EVP_sha256(), with_cb);
    char *got = ssdp_of("SCRAM-SHA-256-PLUS", &cb);
    assert_string_equal(got, want);
    free(want);
    free(got);

    /* Same list, hashed with the mechanism's own hash. */
    want = expected_ssdp(EVP_sha1(), with_cb);
    got = ssdp_of("SCRAM-SHA-1", &cb);
    assert_string_equal(got, want);
    free(want);
    free(got);
    want = expected_ssdp(EVP_sha512(), with_cb);
    got = ssdp_of("SCRAM-SHA-512", &cb);
    assert_string_equal(got, want);
    free(want);
    free(got);

    /* No XEP-0440 advertisement: no 0x1F separator at all. */
    cb.advertised_cb_types = NULL;
    want = expected_ssdp(EVP_sha256(), "PLAIN\x1eSCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1e"
                                       "SCRAM-SHA-256\x1eSCRAM-SHA-256-PLUS");
    got = ssdp_of("SCRAM-SHA-256", &cb);
    assert_string_equal(got, want);
    free(want);
    free(got);

    /* No mechanism list: no attribute. */
    cb.advertised_mechs = NULL;
    assert_null(ssdp_of("SCRAM-SHA-256", &cb));

    /* The example in XEP-0474 §5.3. */
    const char *xmechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", NULL};
    const char *xcbt[] = {"tls-server-end-point", "tls-exporter", NULL};
    scram_cb_t xcb = {.exporter = data,
                      .exporter_len = 32,
                      .plus_advertised = true,
                      .advertised_mechs = xmechs,
                      .advertised_cb_types = xcbt};
    got = ssdp_of("SCRAM-SHA-1-PLUS", &xcb);
    assert_string_equal(got, "G6k/rBLDqgOhRRaCuuatSDFkJ08=");
    free(got);
}

static void test_ssdp_full_exchange(void **state)
{
    /* h= is part of server-first, hence of AuthMessage: the client's proof
     * computed over it must verify. */
    scram_creds_t creds;
    make_creds(&creds, "pencil");
    unsigned char exporter[32];
    memset(exporter, 7, sizeof(exporter));
    const char *mechs[] = {"SCRAM-SHA-512", "SCRAM-SHA-512-PLUS", NULL};
    const char *cbt[] = {"tls-exporter", NULL};
    exchange_t x = {.mech = "SCRAM-SHA-512-PLUS",
                    .cb = {.exporter = exporter,
                           .exporter_len = sizeof(exporter),
                           .plus_advertised = true,
                           .advertised_mechs = mechs,
                           .advertised_cb_types = cbt},
                    .gs2 = "p=tls-exporter,,",
                    .cb_data = exporter,
                    .cb_data_len = sizeof(exporter),
                    .user = "user",
                    .password = "pencil",
                    .creds = &creds};
    char *sf = NULL;
    assert_int_equal(run_exchange(&x, &sf), SASL_ERR_NONE);
    char *h = attr_of(sf, 'h');
    char *want = expected_ssdp(EVP_sha512(), "SCRAM-SHA-512\x1eSCRAM-SHA-512-PLUS\x1ftls-exporter");
    assert_string_equal(h, want);
    free(want);
    free(h);
    free(sf);
}

/* ---- PLAIN ------------------------------------------------------------- */

static void test_plain(void **state)
{
    char *st;
    const char *z, *c, *p;
    const char m1[] = "\0juliet\0secret";
    assert_int_equal(sasl_plain_parse(m1, sizeof(m1) - 1, &st, &z, &c, &p), SASL_ERR_NONE);
    assert_null(z);
    assert_string_equal(c, "juliet");
    assert_string_equal(p, "secret");
    free(st);

    const char m2[] = "admin@example.com\0juliet\0s e c r e t";
    assert_int_equal(sasl_plain_parse(m2, sizeof(m2) - 1, &st, &z, &c, &p), SASL_ERR_NONE);
    assert_string_equal(z, "admin@example.com");
    assert_string_equal(c, "juliet");
    assert_string_equal(p, "s e c r e t");
    free(st);

    struct {
        const char *m;
        size_t len;
    } bad[] = {
        {"", 0},
        {"juliet", 6},
        {"\0juliet", 7},   /* one NUL */
        {"\0juliet\0", 8}, /* empty password */
        {"\0\0secret", 8}, /* empty authcid */
        {"\0\0", 2},
        {"a\0juliet\0secret\0", 16}, /* third NUL */
        {"a\0juliet\0sec\0ret", 16},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        st = (char *)1;
        assert_int_equal(sasl_plain_parse(bad[i].m, bad[i].len, &st, &z, &c, &p),
                         SASL_ERR_MALFORMED_REQUEST);
        assert_null(st);
        assert_null(c);
        assert_null(p);
    }
}

/* ---- base64 ------------------------------------------------------------ */

static void test_base64_vectors(void **state)
{
    /* RFC 4648 §10. */
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        size_t n = 99;
        char *e = tern_base64_encode((const unsigned char *)plain[i], strlen(plain[i]), &n);
        assert_string_equal(e, enc[i]);
        assert_int_equal(n, strlen(enc[i]));
        free(e);
        unsigned char *d;
        assert_int_equal(tern_base64_decode(enc[i], strlen(enc[i]), &d, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        assert_int_equal(d[n], 0);
        free(d);
    }
    unsigned char *d;
    size_t n;
    assert_int_equal(tern_base64_decode("=", 1, &d, &n), 0);
    assert_int_equal(n, 0);
    free(d);
}

static void test_base64_roundtrip(void **state)
{
    unsigned char buf[300];
    assert_int_equal(RAND_bytes(buf, sizeof(buf)), 1);
    for (size_t len = 0; len <= sizeof(buf); len += (len < 70 ? 1 : 23)) {
        size_t elen, dlen;
        char *e = tern_base64_encode(buf, len, &elen);
        assert_non_null(e);
        assert_int_equal(elen, (len + 2) / 3 * 4);
        unsigned char *dec;
        assert_int_equal(tern_base64_decode(e, elen, &dec, &dlen), 0);
        assert_int_equal(dlen, len);
        if (len)
            assert_memory_equal(dec, buf, len);
        free(dec);
        free(e);
    }
}

static void test_base64_strict(void **state)
{
    const char *bad[] = {
        "Zg=",      /* length */
        "Zg",       /* missing padding */
        "Zm9",      /* missing padding */
        "Z===",     /* too much padding */
        "====",     /* padding only */
        "==",       /* padding only */
        "Zh==",     /* non-zero trailing bits */
        "Zm9=",     /* non-zero trailing bits */
        "Zg==Zg==", /* padding in the middle */
        "Z=g=",     /* padding in the middle */
        " Zg=",     /* whitespace */
        "Zm9v\n",   /* whitespace */
        "Zm9v ",    /* whitespace */
        "Zm9*",     /* outside the alphabet */
        "Zm9-",     /* base64url is not base64 */
        "Zm9_",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *d = (unsigned char *)1;
        size_t n = 99;
        if (tern_base64_decode(bad[i], strlen(bad[i]), &d, &n) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_null(d);
        assert_int_equal(n, 0);
    }
    unsigned char *d = (unsigned char *)1;
    size_t n;
    assert_int_equal(tern_base64_decode("Zm\0v", 4, &d, &n), -1);
    assert_null(d);
    assert_int_equal(tern_base64_decode(NULL, 4, &d, &n), -1);
}

/* ---- credentials ------------------------------------------------------- */

static void test_creds(void **state)
{
    scram_creds_t a, b;
    assert_int_equal(scram_creds_from_password("correct horse", 4096, &a), 0);
    assert_int_equal(scram_creds_from_password("correct horse", 4096, &b), 0);
    assert_int_equal(a.iterations, 4096);
    /* Fresh salt each time. */
    assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
    assert_memory_not_equal(a.stored_key[SCRAM_SHA256], b.stored_key[SCRAM_SHA256], 32);

    assert_true(scram_verify_password(&a, "correct horse"));
    assert_true(scram_verify_password(&b, "correct horse"));
    assert_false(scram_verify_password(&a, "correct horse "));
    assert_false(scram_verify_password(&a, ""));
    assert_false(scram_verify_password(&a, NULL));
    assert_false(scram_verify_password(NULL, "x"));

    /* One salt for all three hashes: each set re-derives from a.salt. */
    for (int h = 0; h < SCRAM_HASH_COUNT; h++) {
        unsigned char st[SCRAM_MAX_KEY], sv[SCRAM_MAX_KEY];
        size_t hlen = scram_hash_len((scram_hash_t)h);
        assert_int_equal(scram_derive_keys((scram_hash_t)h, "correct horse", a.salt, SCRAM_SALT_LEN,
                                           4096, st, sv),
                         0);
        assert_memory_equal(st, a.stored_key[h], hlen);
        assert_memory_equal(sv, a.server_key[h], hlen);
    }

    /* Independent derivation of StoredKey for SHA-256. */
    unsigned char salted[32], ck[32], sk[32];
    unsigned int l;
    PKCS5_PBKDF2_HMAC("correct horse", 13, a.salt, SCRAM_SALT_LEN, 4096, EVP_sha256(), 32, salted);
    HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, &l);
    EVP_Digest(ck, 32, sk, &l, EVP_sha256(), NULL);
    assert_memory_equal(sk, a.stored_key[SCRAM_SHA256], 32);

    assert_int_equal(scram_creds_from_password("x", 0, &a), TERN_EINVAL);
    unsigned char k1[64], k2[64];
    assert_int_equal(scram_derive_keys(SCRAM_SHA1, "x", a.salt, 16, 0, k1, k2), TERN_EINVAL);
    assert_int_equal(scram_derive_keys(SCRAM_HASH_COUNT, "x", a.salt, 16, 1, k1, k2), TERN_EINVAL);
}

static void test_names(void **state)
{
    assert_int_equal(scram_hash_len(SCRAM_SHA1), 20);
    assert_int_equal(scram_hash_len(SCRAM_SHA256), 32);
    assert_int_equal(scram_hash_len(SCRAM_SHA512), 64);
    assert_string_equal(scram_hash_name(SCRAM_SHA1), "SHA-1");
    assert_string_equal(scram_hash_name(SCRAM_SHA256), "SHA-256");
    assert_string_equal(scram_hash_name(SCRAM_SHA512), "SHA-512");
    assert_string_equal(sasl_error_name(SASL_ERR_NOT_AUTHORIZED), "not-authorized");
    assert_string_equal(sasl_error_name(SASL_ERR_MALFORMED_REQUEST), "malformed-request");
    assert_string_equal(sasl_error_name(SASL_ERR_TEMPORARY_AUTH_FAILURE), "temporary-auth-failure");
    assert_string_equal(sasl_error_name(SASL_ERR_INVALID_AUTHZID), "invalid-authzid");
    assert_string_equal(sasl_error_name(SASL_ERR_ABORTED), "aborted");
    assert_string_equal(sasl_error_name(SASL_ERR_ACCOUNT_DISABLED), "account-disabled");
    assert_string_equal(sasl_error_name(SASL_ERR_CREDENTIALS_EXPIRED), "credentials-expired");
    assert_string_equal(sasl_error_name(SASL_ERR_ENCRYPTION_REQUIRED), "encryption-required");
    assert_string_equal(sasl_error_name(SASL_ERR_INCORRECT_ENCODING), "incorrect-encoding");
    assert_string_equal(sasl_error_name(SASL_ERR_INVALID_MECHANISM), "invalid-mechanism");
    assert_string_equal(sasl_error_name(SASL_ERR_MECHANISM_TOO_WEAK), "mechanism-too-weak");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_sha1),
        cmocka_unit_test(test_rfc7677_sha256),
        cmocka_unit_test(test_rfc_vector_wrong_proof),
        cmocka_unit_test(test_full_exchange_all_hashes),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_wrong_nonce),
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_unknown_user_stable_salt),
        cmocka_unit_test(test_plus_exporter),
        cmocka_unit_test(test_plus_endpoint),
        cmocka_unit_test(test_cb_policy),
        cmocka_unit_test(test_y_downgrade),
        cmocka_unit_test(test_client_first_malformed),
        cmocka_unit_test(test_client_first_decoding),
        cmocka_unit_test(test_client_final_malformed),
        cmocka_unit_test(test_state_machine),
        cmocka_unit_test(test_ssdp),
        cmocka_unit_test(test_ssdp_full_exchange),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_roundtrip),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test(test_creds),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
