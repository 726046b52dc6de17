/* SPDX-License-Identifier: MIT
 * scram.h - SCRAM (RFC 5802, RFC 7677) server side and credential
 * derivation, with channel binding (RFC 5929 tls-server-end-point, RFC 9266
 * tls-exporter) and XEP-0474 downgrade protection.
 *
 * Sans-I/O: the caller feeds client messages and sends back the strings
 * returned. Credentials are looked up by the caller between the first and
 * second step (storage is asynchronous), so the exchange is split into
 * scram_server_client_first -> (lookup) -> scram_server_first ->
 * scram_server_client_final.
 *
 * Passwords are never stored: an account keeps a salt, an iteration count,
 * and StoredKey/ServerKey for each hash. The server side of a SCRAM exchange
 * only computes HMACs; the expensive PBKDF2 runs at account creation and
 * for PLAIN (scram_verify_password), which callers run off the event loop.
 */
#ifndef TERN_SASL_SCRAM_H
#define TERN_SASL_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SCRAM_SHA1 = 0,
    SCRAM_SHA256 = 1,
    SCRAM_SHA512 = 2,
    SCRAM_HASH_COUNT = 3
} scram_hash_t;

#define SCRAM_MAX_KEY  64 /* SHA-512 digest size */
#define SCRAM_SALT_LEN 16

/* Stored credentials of one account, for all hashes. */
typedef struct {
    unsigned char salt[SCRAM_SALT_LEN];
    unsigned iterations;
    unsigned char stored_key[SCRAM_HASH_COUNT][SCRAM_MAX_KEY];
    unsigned char server_key[SCRAM_HASH_COUNT][SCRAM_MAX_KEY];
} scram_creds_t;

size_t scram_hash_len(scram_hash_t h);       /* 20, 32, 64 */
const char *scram_hash_name(scram_hash_t h); /* "SHA-1", "SHA-256", "SHA-512" */

/* Derives StoredKey/ServerKey for one hash. Expensive (PBKDF2). */
int scram_derive_keys(scram_hash_t h, const char *password, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, unsigned char *stored_key,
                      unsigned char *server_key);
/* Fills creds for all hashes from a password, with a fresh random salt.
 * Expensive: 3 x PBKDF2. Returns 0 or negative. */
int scram_creds_from_password(const char *password, unsigned iterations, scram_creds_t *creds);
/* Constant-time check of a plaintext password (SASL PLAIN) against stored
 * credentials, using SHA-256 keys. Expensive. */
bool scram_verify_password(const scram_creds_t *creds, const char *password);

/* Channel binding material of the connection, computed by the caller. */
typedef struct {
    const unsigned char *exporter; /* tls-exporter data (TLS 1.3), or NULL */
    size_t exporter_len;
    const unsigned char *endpoint; /* tls-server-end-point data, or NULL */
    size_t endpoint_len;
    bool plus_advertised; /* -PLUS mechanisms were offered on this stream */
    /* XEP-0474: the mechanism names and channel-binding types offered,
     * exactly as advertised, for the h= attribute of server-first-message.
     * NULL-terminated arrays. advertised_mechs NULL: no h= attribute.
     * advertised_cb_types NULL or empty: XEP-0440 was not offered. */
    const char *const *advertised_mechs;
    const char *const *advertised_cb_types;
} scram_cb_t;

/* SASL <failure/> conditions (RFC 6120 §6.5). */
typedef enum {
    SASL_ERR_NONE = 0,
    SASL_ERR_ABORTED,
    SASL_ERR_ACCOUNT_DISABLED,
    SASL_ERR_CREDENTIALS_EXPIRED,
    SASL_ERR_ENCRYPTION_REQUIRED,
    SASL_ERR_INCORRECT_ENCODING,
    SASL_ERR_INVALID_AUTHZID,
    SASL_ERR_INVALID_MECHANISM,
    SASL_ERR_MALFORMED_REQUEST,
    SASL_ERR_MECHANISM_TOO_WEAK,
    SASL_ERR_NOT_AUTHORIZED,
    SASL_ERR_TEMPORARY_AUTH_FAILURE,
} sasl_error_t;

const char *sasl_error_name(sasl_error_t e); /* "not-authorized" etc. */

typedef struct scram_server scram_server_t;

/* mech is the full mechanism name, e.g. "SCRAM-SHA-256-PLUS". Returns NULL
 * if it is not a SCRAM mechanism we know. cb is copied (pointers inside it
 * must outlive the exchange). */
scram_server_t *scram_server_new(const char *mech, const scram_cb_t *cb);
void scram_server_free(scram_server_t *s);

/* Unknown accounts get a salt derived from HMAC(key, username) so that
 * repeated attempts see the same salt, as for a real account; key is a
 * secret the caller holds for the server's lifetime (up to 64 bytes).
 * iterations should match what real accounts use. Without this call the
 * fake salt is random per exchange and the count is 4096. Call before
 * scram_server_first. Returns 0 or TERN_EINVAL. */
int scram_server_set_fake_params(scram_server_t *s, const unsigned char *key, size_t key_len,
                                 unsigned iterations);

/* TEST ONLY (known-answer vectors): force the server part of the nonce
 * and the salt sent in server-first-message instead of fresh random ones.
 * Never call these outside tests. Call before scram_server_first. Return 0
 * or TERN_EINVAL. */
int scram_server_set_nonce_for_test(scram_server_t *s, const char *server_nonce);
int scram_server_set_salt_for_test(scram_server_t *s, const unsigned char *salt, size_t len);

/* Step 1: parse client-first-message (already base64-decoded). On success
 * *username points to the normalised username (owned by s) and *authzid to
 * the authzid or NULL. */
sasl_error_t scram_server_client_first(scram_server_t *s, const char *msg, size_t len,
                                       const char **username, const char **authzid);
/* Step 2: with the account's credentials (NULL when the account does not
 * exist: a fake but plausible challenge is produced so that the exchange
 * does not reveal which accounts exist, and step 3 fails), produce
 * server-first-message. *out is malloc'd (caller frees). */
sasl_error_t scram_server_first(scram_server_t *s, const scram_creds_t *creds, char **out,
                                size_t *outlen);
/* Step 3: verify client-final-message; on success *out is the
 * server-final-message (v=...), malloc'd. */
sasl_error_t scram_server_client_final(scram_server_t *s, const char *msg, size_t len, char **out,
                                       size_t *outlen);

/* SASL PLAIN message "authzid\0authcid\0password": pointers into a malloc'd
 * copy returned in *storage (caller frees). authzid may be NULL. */
sasl_error_t sasl_plain_parse(const char *msg, size_t len, char **storage, const char **authzid,
                              const char **authcid, const char **password);

/* Base64 helpers (OpenSSL EVP). Output malloc'd, caller frees. Decoding is
 * strict: returns -1 on invalid input. "=" alone decodes to empty. */
char *tern_base64_encode(const unsigned char *in, size_t len, size_t *outlen);
int tern_base64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen);

#endif
