/* SPDX-License-Identifier: MIT
 * tls13.c - TLS 1.3 record protection after the handshake (see tls13.h).
 *
 * The cryptography is OpenSSL's (HKDF through EVP_KDF, AEAD through
 * EVP_CIPHER); this file only frames records, builds nonces and handles the
 * three content types a finished TLS 1.3 connection may carry. Input is
 * decrypted in place in the connection's input buffer.
 */
#include "net/tls13.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "core/common.h"

enum {
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPLICATION_DATA = 23,
    HS_KEY_UPDATE = 24,
    ALERT_CLOSE_NOTIFY = 0,
    ALERT_UNEXPECTED_MESSAGE = 10,
    ALERT_BAD_RECORD_MAC = 20,
    ALERT_RECORD_OVERFLOW = 22,
    ALERT_DECODE_ERROR = 50,
};

/* AES-GCM's confidentiality margin (RFC 8446 section 5.5) is about 2^24.5
 * full-size records per key; we rekey well before. */
#define TX_RECORDS_PER_KEY (1ULL << 24)
/* Buffers that grew for a burst are not kept once drained. */
#define KEEP_BUFFER_MAX (32 * 1024)

static const char *suite_cipher(uint16_t suite)
{
    switch (suite) {
    case TLS13_AES_128_GCM_SHA256:
        return "AES-128-GCM";
    case TLS13_AES_256_GCM_SHA384:
        return "AES-256-GCM";
    case TLS13_CHACHA20_POLY1305_SHA256:
        return "ChaCha20-Poly1305";
    default:
        return NULL;
    }
}

static const char *suite_digest(uint16_t suite)
{
    return suite == TLS13_AES_256_GCM_SHA384 ? "SHA384" : "SHA256";
}

bool tls13_suite_supported(uint16_t suite)
{
    return suite_cipher(suite) != NULL;
}

/* HKDF-Expand-Label with an empty context (RFC 8446 section 7.1). */
static int expand_label(uint16_t suite, const unsigned char *secret, size_t secret_len,
                        const char *label, unsigned char *out, size_t out_len)
{
    unsigned char info[2 + 1 + 255 + 1];
    size_t label_len = strlen(label);
    size_t full_len = 6 + label_len; /* "tls13 " prefix */
    if (full_len > 255)
        return -1;
    info[0] = (unsigned char)(out_len >> 8);
    info[1] = (unsigned char)out_len;
    info[2] = (unsigned char)full_len;
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, label_len);
    info[3 + full_len] = 0; /* context length */
    size_t info_len = 4 + full_len;

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kctx)
        return -1;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suite_digest(suite), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, info_len),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(kctx);
    return ok ? 0 : -1;
}

static void drop_cipher(tls13_dir_t *d)
{
    EVP_CIPHER_CTX_free(d->ctx);
    d->ctx = NULL;
}

/* Derives key and IV from the current secret; the cipher is keyed lazily. */
static int derive_keys(tls13_dir_t *d)
{
    drop_cipher(d);
    if (expand_label(d->suite, d->secret, d->secret_len, "key", d->key, d->key_len) != 0 ||
        expand_label(d->suite, d->secret, d->secret_len, "iv", d->iv, sizeof(d->iv)) != 0)
        return -1;
    return 0;
}

/* RFC 8446 section 7.2: the next secret replaces the current one. */
static int next_generation(tls13_dir_t *d)
{
    unsigned char next[TLS13_MAX_SECRET];
    if (expand_label(d->suite, d->secret, d->secret_len, "traffic upd", next, d->secret_len) != 0)
        return -1;
    memcpy(d->secret, next, d->secret_len);
    OPENSSL_cleanse(next, sizeof(next));
    d->seq = 0;
    return derive_keys(d);
}

static int dir_init(tls13_dir_t *d, uint16_t suite, const unsigned char *secret, size_t len,
                    uint64_t seq)
{
    memset(d, 0, sizeof(*d));
    d->suite = suite;
    d->secret_len = (uint8_t)len;
    d->key_len = suite == TLS13_AES_128_GCM_SHA256 ? 16 : 32;
    memcpy(d->secret, secret, len);
    d->seq = seq;
    return derive_keys(d);
}

static int keyed_cipher(tls13_dir_t *d, int enc)
{
    if (d->ctx)
        return 0;
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, suite_cipher(d->suite), NULL);
    d->ctx = cipher ? EVP_CIPHER_CTX_new() : NULL;
    int ok = d->ctx && EVP_CipherInit_ex2(d->ctx, cipher, d->key, NULL, enc, NULL) == 1;
    EVP_CIPHER_free(cipher);
    if (!ok) {
        drop_cipher(d);
        return -1;
    }
    return 0;
}

/* Per-record nonce: the IV XOR the 64-bit sequence number, right-aligned. */
static void make_nonce(const tls13_dir_t *d, unsigned char nonce[12])
{
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
}

int tls13_init(tls13_t *r, uint16_t suite, const unsigned char *client_secret,
               const unsigned char *server_secret, size_t secret_len, uint64_t client_seq,
               uint64_t server_seq)
{
    memset(r, 0, sizeof(*r));
    if (!tls13_suite_supported(suite) || secret_len == 0 || secret_len > TLS13_MAX_SECRET ||
        secret_len != (suite == TLS13_AES_256_GCM_SHA384 ? 48u : 32u))
        return -1;
    if (dir_init(&r->rx, suite, client_secret, secret_len, client_seq) != 0 ||
        dir_init(&r->tx, suite, server_secret, secret_len, server_seq) != 0) {
        tls13_clear(r);
        return -1;
    }
    return 0;
}

static void free_buffer(unsigned char **p, size_t len)
{
    if (*p) {
        /* Input and output hold plaintext at times. */
        OPENSSL_cleanse(*p, len);
        free(*p);
        *p = NULL;
    }
}

void tls13_clear(tls13_t *r)
{
    drop_cipher(&r->rx);
    drop_cipher(&r->tx);
    free_buffer(&r->in, r->in_cap);
    free_buffer(&r->out, r->out_cap);
    OPENSSL_cleanse(r, sizeof(*r));
}

/* ---- output ------------------------------------------------------------ */

static void out_reserve(tls13_t *r, size_t need)
{
    if (r->out_off > 0 && r->out_len == r->out_off) {
        r->out_off = r->out_len = 0;
    }
    if (r->out_cap - r->out_len >= need)
        return;
    if (r->out_off > 0) {
        memmove(r->out, r->out + r->out_off, r->out_len - r->out_off);
        r->out_len -= r->out_off;
        r->out_off = 0;
        if (r->out_cap - r->out_len >= need)
            return;
    }
    size_t cap = r->out_cap ? r->out_cap : 1024;
    while (cap - r->out_len < need)
        cap *= 2;
    r->out = tern_xrealloc(r->out, cap);
    r->out_cap = cap;
}

/* Appends one protected record holding type and data (at most 2^14). */
static int seal_record(tls13_t *r, uint8_t type, const unsigned char *data, size_t len)
{
    tls13_dir_t *d = &r->tx;
    if (keyed_cipher(d, 1) != 0)
        return -1;
    size_t body = len + 1 + TLS13_TAG_LEN;
    out_reserve(r, TLS13_HEADER_LEN + body);
    unsigned char *rec = r->out + r->out_len;
    rec[0] = CT_APPLICATION_DATA;
    rec[1] = 0x03;
    rec[2] = 0x03;
    rec[3] = (unsigned char)(body >> 8);
    rec[4] = (unsigned char)body;
    unsigned char *p = rec + TLS13_HEADER_LEN;
    if (len > 0)
        memcpy(p, data, len);
    p[len] = type;

    unsigned char nonce[12];
    make_nonce(d, nonce);
    int n = 0, fin = 0;
    if (EVP_CipherInit_ex2(d->ctx, NULL, NULL, nonce, 1, NULL) != 1 ||
        EVP_CipherUpdate(d->ctx, NULL, &n, rec, TLS13_HEADER_LEN) != 1 ||
        EVP_CipherUpdate(d->ctx, p, &n, p, (int)(len + 1)) != 1 ||
        EVP_CipherFinal_ex(d->ctx, p + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, TLS13_TAG_LEN, p + len + 1) != 1)
        return -1;
    r->out_len += TLS13_HEADER_LEN + body;
    d->seq++;
    return 0;
}

static int send_key_update(tls13_t *r, bool request_peer)
{
    const unsigned char msg[5] = {HS_KEY_UPDATE, 0, 0, 1, request_peer ? 1 : 0};
    if (seal_record(r, CT_HANDSHAKE, msg, sizeof(msg)) != 0)
        return -1;
    return next_generation(&r->tx);
}

tls13_status_t tls13_write(tls13_t *r, const void *data, size_t len)
{
    if (r->failed)
        return TLS13_ERROR;
    const unsigned char *p = data;
    while (len > 0) {
        size_t chunk = len < TLS13_MAX_PLAINTEXT ? len : TLS13_MAX_PLAINTEXT;
        if (r->tx.seq >= TX_RECORDS_PER_KEY && send_key_update(r, false) != 0)
            goto fail;
        if (seal_record(r, CT_APPLICATION_DATA, p, chunk) != 0)
            goto fail;
        p += chunk;
        len -= chunk;
    }
    return TLS13_OK;
fail:
    r->failed = true;
    return TLS13_ERROR;
}

tls13_status_t tls13_seal(tls13_t *r, uint8_t content_type, const void *data, size_t len)
{
    if (r->failed || len > TLS13_MAX_PLAINTEXT)
        return TLS13_ERROR;
    return seal_record(r, content_type, data, len) == 0 ? TLS13_OK : TLS13_ERROR;
}

void tls13_close_notify(tls13_t *r)
{
    static const unsigned char alert[2] = {1 /* warning */, ALERT_CLOSE_NOTIFY};
    if (!r->failed && seal_record(r, CT_ALERT, alert, sizeof(alert)) != 0)
        r->failed = true;
}

void tls13_out_put_raw(tls13_t *r, const void *data, size_t len)
{
    out_reserve(r, len);
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
}

size_t tls13_out_pending(const tls13_t *r)
{
    return r->out_len - r->out_off;
}

size_t tls13_out_read(tls13_t *r, void *buf, size_t cap)
{
    size_t n = r->out_len - r->out_off;
    if (n > cap)
        n = cap;
    if (n == 0)
        return 0;
    memcpy(buf, r->out + r->out_off, n);
    r->out_off += n;
    if (r->out_off == r->out_len) {
        r->out_off = r->out_len = 0;
        if (r->out_cap > KEEP_BUFFER_MAX)
            free_buffer(&r->out, r->out_cap), r->out_cap = 0;
    }
    return n;
}

/* ---- input ------------------------------------------------------------- */

tls13_status_t tls13_feed(tls13_t *r, const void *data, size_t len)
{
    if (r->failed)
        return TLS13_ERROR;
    if (len == 0)
        return TLS13_OK;
    if (r->in_off > 0 && r->in_cap - r->in_len < len) {
        /* Unread plaintext, if any, lies inside the record at in_off. */
        memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
        r->in_len -= r->in_off;
        if (r->plain_len > 0)
            r->plain_off -= r->in_off;
        r->in_off = 0;
    }
    if (r->in_cap - r->in_len < len) {
        size_t cap = r->in_cap ? r->in_cap : 2048;
        while (cap - r->in_len < len)
            cap *= 2;
        r->in = tern_xrealloc(r->in, cap);
        r->in_cap = cap;
    }
    memcpy(r->in + r->in_len, data, len);
    r->in_len += len;
    return TLS13_OK;
}

/* Handshake content after the handshake: only KeyUpdate is allowed, and we
 * require each message to sit whole in one record. */
static int handle_handshake(tls13_t *r, const unsigned char *p, size_t len)
{
    if (len == 0)
        return -1;
    while (len > 0) {
        if (len < 4)
            return -1;
        size_t mlen = ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
        if (p[0] != HS_KEY_UPDATE || mlen != 1 || len < 5 || p[4] > 1)
            return -1;
        if (next_generation(&r->rx) != 0)
            return -1;
        if (p[4] == 1 && send_key_update(r, false) != 0)
            return -1;
        p += 5;
        len -= 5;
    }
    return 0;
}

/* Ends the connection with a fatal alert for the peer (RFC 8446 section
 * 6.2); the alert is queued like any output. */
static tls13_status_t fail(tls13_t *r, int alert)
{
    const unsigned char msg[2] = {2 /* fatal */, (unsigned char)alert};
    seal_record(r, CT_ALERT, msg, sizeof(msg));
    r->failed = true;
    return TLS13_ERROR;
}

/* Opens the record at in[in_off..], whose full length is available. On
 * success sets *type and the inner content's offset and length, relative to
 * the record's start, and returns 0; otherwise returns the alert to send. */
static int open_record(tls13_t *r, size_t rec_len, uint8_t *type, size_t *off, size_t *len)
{
    tls13_dir_t *d = &r->rx;
    if (keyed_cipher(d, 0) != 0)
        return ALERT_BAD_RECORD_MAC; /* no better alert for a local failure */
    unsigned char *hdr = r->in + r->in_off;
    unsigned char *p = hdr + TLS13_HEADER_LEN;
    size_t ct_len = rec_len - TLS13_HEADER_LEN - TLS13_TAG_LEN;
    unsigned char nonce[12];
    make_nonce(d, nonce);
    int n = 0, fin = 0;
    if (EVP_CipherInit_ex2(d->ctx, NULL, NULL, nonce, 0, NULL) != 1 ||
        EVP_CipherUpdate(d->ctx, NULL, &n, hdr, TLS13_HEADER_LEN) != 1 ||
        EVP_CipherUpdate(d->ctx, p, &n, p, (int)ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, TLS13_TAG_LEN, p + ct_len) != 1 ||
        EVP_CipherFinal_ex(d->ctx, p + n, &fin) != 1)
        return ALERT_BAD_RECORD_MAC;
    d->seq++;
    /* The inner type is the last non-zero byte; zeros after it are padding. */
    size_t i = ct_len;
    while (i > 0 && p[i - 1] == 0)
        i--;
    if (i == 0)
        return ALERT_UNEXPECTED_MESSAGE;
    *type = p[i - 1];
    *off = TLS13_HEADER_LEN;
    *len = i - 1;
    if (*len > TLS13_MAX_PLAINTEXT)
        return ALERT_RECORD_OVERFLOW;
    return 0;
}

/* Steps over a consumed record; an emptied buffer starts again at 0. */
static void consume_input(tls13_t *r, size_t n)
{
    r->in_off += n;
    if (r->in_off == r->in_len) {
        r->in_off = r->in_len = 0;
        if (r->in_cap > KEEP_BUFFER_MAX)
            free_buffer(&r->in, r->in_cap), r->in_cap = 0;
    }
}

tls13_status_t tls13_read(tls13_t *r, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (r->failed)
        return TLS13_ERROR;
    for (;;) {
        if (r->plain_len > 0) {
            size_t take = r->plain_len < cap ? r->plain_len : cap;
            memcpy(buf, r->in + r->plain_off, take);
            r->plain_off += take;
            r->plain_len -= take;
            *n = take;
            if (r->plain_len == 0)
                consume_input(r, r->plain_off + r->plain_rest - r->in_off);
            return TLS13_OK;
        }
        if (r->closed)
            return TLS13_CLOSED;
        if (r->in_len - r->in_off < TLS13_HEADER_LEN)
            return TLS13_OK;
        const unsigned char *h = r->in + r->in_off;
        size_t body = ((size_t)h[3] << 8) | h[4];
        /* Every record after the handshake is protected: outer type
         * application_data, legacy version 0x0303. */
        if (h[0] != CT_APPLICATION_DATA)
            return fail(r, ALERT_UNEXPECTED_MESSAGE);
        if (h[1] != 0x03 || h[2] != 0x03 || body < TLS13_TAG_LEN + 1)
            return fail(r, ALERT_DECODE_ERROR);
        if (body > TLS13_MAX_CIPHERTEXT)
            return fail(r, ALERT_RECORD_OVERFLOW);
        size_t rec_len = TLS13_HEADER_LEN + body;
        if (r->in_len - r->in_off < rec_len)
            return TLS13_OK;
        uint8_t type;
        size_t off, len;
        int alert = open_record(r, rec_len, &type, &off, &len);
        if (alert != 0)
            return fail(r, alert);
        switch (type) {
        case CT_APPLICATION_DATA:
            if (len == 0) {
                consume_input(r, rec_len);
                continue;
            }
            r->plain_off = r->in_off + off;
            r->plain_len = len;
            r->plain_rest = rec_len - off - len;
            continue;
        case CT_ALERT:
            if (len != 2)
                return fail(r, ALERT_DECODE_ERROR);
            if (h[off + 1] != ALERT_CLOSE_NOTIFY) {
                /* The peer's fatal alert ends the connection; no reply. */
                r->failed = true;
                return TLS13_ERROR;
            }
            consume_input(r, rec_len);
            r->closed = true;
            return TLS13_CLOSED;
        case CT_HANDSHAKE:
            if (handle_handshake(r, h + off, len) != 0)
                return fail(r, ALERT_UNEXPECTED_MESSAGE);
            consume_input(r, rec_len);
            continue;
        default:
            return fail(r, ALERT_UNEXPECTED_MESSAGE);
        }
    }
}

void tls13_hibernate(tls13_t *r)
{
    drop_cipher(&r->rx);
    drop_cipher(&r->tx);
    if (r->in_len == r->in_off)
        free_buffer(&r->in, r->in_cap), r->in_cap = 0, r->in_off = r->in_len = 0;
    if (r->out_len == r->out_off)
        free_buffer(&r->out, r->out_cap), r->out_cap = 0;
}
