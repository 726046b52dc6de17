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

/* Entries in v; idx is an open-addressing hash table of entry numbers + 1
 * (0 = empty slot), so a lookup costs the same with 15,000 users as with 10. */
struct scram_cache {
    struct scram_cache_entry *v;
    size_t n, cap;
    uint32_t *idx;
    size_t idx_cap; /* power of two, kept at least twice n */
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

/* ---- utilities (util.c) ---------------------------------------------- */

/* Latency histogram: 64 log-spaced sub-buckets per power of two (about
 * 1.5 % relative error), exact min/max/mean. */
#define HIST_SUB 64
#define HIST_N   (64 * HIST_SUB)

struct hist {
    uint64_t b[HIST_N];
    uint64_t n, sum, min, max;
};

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
double hist_pct(const struct hist *h, double p);

struct procmem {
    long rss_kb, pss_kb;
};

uint64_t now_ns(void); /* CLOCK_MONOTONIC, shared by all threads */
/* VmRSS and Pss of pid in kB; -1 if the process cannot be read. */
int read_procmem(int pid, struct procmem *m);
/* utime+stime of pid in clock ticks, or 0 if unavailable. */
uint64_t read_proccpu(int pid);
double ticks_to_us(uint64_t t);
/* Decimal digits of v written to out (no terminator); returns the length. */
size_t fmt_u64(char *out, uint64_t v);
/* Escape for an XML attribute value or text. */
void xml_esc(char *out, size_t cap, const char *in);

#endif
