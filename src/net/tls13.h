/* SPDX-License-Identifier: MIT
 * tls13.h - the TLS 1.3 record layer (RFC 8446 section 5) for connections
 * whose handshake OpenSSL has finished.
 *
 * Why: an idle TLS connection kept inside OpenSSL costs about 17 KB (the SSL
 * object, its session, two cipher contexts, BIO buffers), more than all the
 * rest of a session. Once a TLS 1.3 handshake is over, the only state the
 * connection needs is one traffic secret per direction; tls.c then frees the
 * SSL object and protects records here with OpenSSL's AEAD ciphers, the way
 * kernel TLS takes over from a library after the handshake. An idle
 * connection keeps about 200 bytes of keys; the cipher contexts exist only
 * while the connection is active (tls13_hibernate).
 *
 * What this layer accepts after the handshake: application data, alerts
 * (close_notify ends the stream, anything else is fatal) and KeyUpdate
 * handshake messages (RFC 8446 section 4.6.3). Everything else is a
 * protocol violation and fatal, as the RFC requires.
 */
#ifndef TERN_NET_TLS13_H
#define TERN_NET_TLS13_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS13_MAX_PLAINTEXT 16384 /* 2^14 */
#define TLS13_HEADER_LEN    5
#define TLS13_TAG_LEN       16
#define TLS13_MAX_SECRET    48 /* SHA-384 */
/* A record's ciphertext may carry up to 255 bytes of padding and type. */
#define TLS13_MAX_CIPHERTEXT  (TLS13_MAX_PLAINTEXT + 256)
#define TLS13_RECORD_OVERHEAD (TLS13_HEADER_LEN + 1 + TLS13_TAG_LEN)

/* TLS 1.3 cipher suites, by their IANA numbers. */
enum {
    TLS13_AES_128_GCM_SHA256 = 0x1301,
    TLS13_AES_256_GCM_SHA384 = 0x1302,
    TLS13_CHACHA20_POLY1305_SHA256 = 0x1303,
};

typedef struct evp_cipher_ctx_st tls13_cipher_ctx_t;

/* The protection state of one direction. */
typedef struct {
    uint16_t suite;
    uint8_t secret_len, key_len;
    unsigned char secret[TLS13_MAX_SECRET]; /* current traffic secret */
    unsigned char key[32];
    unsigned char iv[12];
    uint64_t seq;
    tls13_cipher_ctx_t *ctx; /* keyed cipher, NULL while hibernated */
} tls13_dir_t;

typedef enum {
    TLS13_OK = 0,
    TLS13_CLOSED, /* close_notify received */
    TLS13_ERROR,  /* fatal: bad record, failed authentication, bad message */
} tls13_status_t;

/* The record layer of one connection: both directions, input not yet
 * opened and output not yet taken by the caller. */
typedef struct {
    tls13_dir_t rx, tx;
    unsigned char *in;             /* ciphertext received; decrypted in place */
    size_t in_off, in_len, in_cap; /* unprocessed input is in[in_off..in_len) */
    /* Opened application data not yet read: in[plain_off..+plain_len),
     * followed by plain_rest bytes of type, padding and tag. */
    size_t plain_off, plain_len, plain_rest;
    unsigned char *out; /* sealed records for the socket */
    size_t out_off, out_len, out_cap;
    bool closed, failed;
} tls13_t;

/* True when suite is one this layer implements. */
bool tls13_suite_supported(uint16_t suite);

/* Sets up both directions from the application traffic secrets (the
 * "traffic_secret_0" pair of RFC 8446 section 7.1) and the number of
 * records each side has already sent under them. Copies the secrets; the
 * caller wipes its own. Returns 0, or -1 (suite unsupported, bad length,
 * OpenSSL failure) leaving r unusable. */
int tls13_init(tls13_t *r, uint16_t suite, const unsigned char *client_secret,
               const unsigned char *server_secret, size_t secret_len, uint64_t client_seq,
               uint64_t server_seq);
/* Wipes keys and frees every buffer; r may be reused with tls13_init. */
void tls13_clear(tls13_t *r);

/* Appends ciphertext from the peer (copied). */
tls13_status_t tls13_feed(tls13_t *r, const void *data, size_t len);
/* Opens complete records and copies up to cap bytes of application data
 * into buf, setting *n (0 = need more input). */
tls13_status_t tls13_read(tls13_t *r, void *buf, size_t cap, size_t *n);
/* Seals application data into records (split at 2^14 bytes). */
tls13_status_t tls13_write(tls13_t *r, const void *data, size_t len);
/* Seals one record of any inner content type (at most 2^14 bytes); for
 * tests and fuzzing, which need to play the peer. */
tls13_status_t tls13_seal(tls13_t *r, uint8_t content_type, const void *data, size_t len);
/* Queues a close_notify alert. */
void tls13_close_notify(tls13_t *r);

/* Queues bytes that are already protected (records OpenSSL wrote before
 * handing the connection over) ahead of anything sealed later. */
void tls13_out_put_raw(tls13_t *r, const void *data, size_t len);
/* Sealed bytes waiting, and a consuming copy of up to cap of them. */
size_t tls13_out_pending(const tls13_t *r);
size_t tls13_out_read(tls13_t *r, void *buf, size_t cap);

/* Frees the cipher contexts and empty buffers of an idle connection; the
 * next read or write keys them again from the stored keys. */
void tls13_hibernate(tls13_t *r);

#endif
