/* loadgen: XMPP c2s load generator -- shared declarations. */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* ---- SASL / SCRAM client (sasl.c) ------------------------------------ */

enum mech { MECH_AUTO = 0, MECH_PLAIN, MECH_SCRAM_SHA1, MECH_SCRAM_SHA256 };

const char *mech_name(enum mech m);

/* Cache of SCRAM key material keyed by (mech, password, salt, iterations),
 * so that thousands of logins with one password pay PBKDF2 only once. */
struct scram_cache_entry {
    enum mech mech;
    char *password;
    unsigned char *salt;
    size_t salt_len;
    unsigned iterations;
    unsigned char client_key[64];
    unsigned char stored_key[64];
    unsigned char server_key[64];
};

struct scram_cache {
    struct scram_cache_entry *v;
    size_t n, cap;
    uint64_t hits, misses;
};

void scram_cache_free(struct scram_cache *c);

/* Per-connection SCRAM exchange state. */
struct scram {
    enum mech mech;
    char client_first_bare[256];
    char nonce[64];
    unsigned char server_sig[64];
    size_t hlen;
};

/* Base64 helpers; return malloc'ed string / buffer (NULL on error). */
char *b64_encode(const void *data, size_t len);
unsigned char *b64_decode(const char *s, size_t *out_len);

/* Build the initial response for PLAIN (returns base64 string). */
char *sasl_plain_initial(const char *user, const char *password);

/* SCRAM step 1: fills st, returns base64 client-first-message. */
char *scram_client_first(struct scram *st, enum mech m, const char *user, uint64_t rnd);
/* SCRAM step 2: given base64 server-first, returns base64 client-final
 * (NULL on error). */
char *scram_client_final(struct scram *st, struct scram_cache *cache, const char *password,
                         const char *server_first_b64);
/* SCRAM step 3: verify base64 server-final (v=...). 0 on success. */
int scram_verify_server(const struct scram *st, const char *server_final_b64);

#endif
