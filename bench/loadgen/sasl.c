/* loadgen: SASL PLAIN and SCRAM-SHA-1 / SCRAM-SHA-256 client side. */
/* The low-level SHA-1/SHA-256 API (deprecated in OpenSSL 3, still shipped)
 * lets PBKDF2 reuse precomputed HMAC pad states; see pbkdf2(). */
#define OPENSSL_API_COMPAT 0x10100000L

#include "loadgen.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mech_name(enum mech m)
{
    switch (m) {
    case MECH_PLAIN:
        return "PLAIN";
    case MECH_SCRAM_SHA1:
        return "SCRAM-SHA-1";
    case MECH_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    default:
        return "auto";
    }
}

char *b64_encode(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

unsigned char *b64_decode(const char *s, size_t *out_len)
{
    /* Strip whitespace the server may have put in the element text. */
    size_t n = strlen(s), k = 0;
    char *clean = malloc(n + 1);
    if (!clean)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
            clean[k++] = s[i];
    clean[k] = 0;
    if (k % 4) {
        free(clean);
        return NULL;
    }
    unsigned char *out = malloc(k / 4 * 3 + 1);
    if (!out) {
        free(clean);
        return NULL;
    }
    int r = k ? EVP_DecodeBlock(out, (unsigned char *)clean, (int)k) : 0;
    if (r < 0) {
        free(clean);
        free(out);
        return NULL;
    }
    size_t pad = 0;
    if (k >= 1 && clean[k - 1] == '=')
        pad++;
    if (k >= 2 && clean[k - 2] == '=')
        pad++;
    *out_len = (size_t)r - pad;
    out[*out_len] = 0;
    free(clean);
    return out;
}

char *sasl_plain_initial(const char *user, const char *password)
{
    size_t ul = strlen(user), pl = strlen(password);
    unsigned char *buf = malloc(ul + pl + 2);
    if (!buf)
        return NULL;
    buf[0] = 0;
    memcpy(buf + 1, user, ul);
    buf[1 + ul] = 0;
    memcpy(buf + 2 + ul, password, pl);
    char *r = b64_encode(buf, ul + pl + 2);
    free(buf);
    return r;
}

static const EVP_MD *mech_md(enum mech m)
{
    return m == MECH_SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

char *scram_client_first(struct scram *st, enum mech m, const char *user, uint64_t rnd)
{
    memset(st, 0, sizeof *st);
    st->mech = m;
    st->hlen = m == MECH_SCRAM_SHA1 ? 20 : 32;
    unsigned char raw[18];
    for (size_t i = 0; i < sizeof raw; i++) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        raw[i] = (unsigned char)rnd;
    }
    char *n = b64_encode(raw, sizeof raw); /* 24 chars, no ',' */
    if (!n)
        return NULL;
    snprintf(st->nonce, sizeof st->nonce, "%s", n);
    free(n);
    /* saslname: escape '=' and ',' */
    char esc[128];
    size_t k = 0;
    for (const char *p = user; *p && k + 4 < sizeof esc; p++) {
        if (*p == ',') {
            memcpy(esc + k, "=2C", 3);
            k += 3;
        } else if (*p == '=') {
            memcpy(esc + k, "=3D", 3);
            k += 3;
        } else
            esc[k++] = *p;
    }
    esc[k] = 0;
    snprintf(st->client_first_bare, sizeof st->client_first_bare, "n=%s,r=%s", esc, st->nonce);
    char msg[300];
    int len = snprintf(msg, sizeof msg, "n,,%s", st->client_first_bare);
    return b64_encode(msg, (size_t)len);
}

/* One hash context, SHA-1 or SHA-256. */
struct hctx {
    bool sha1;
    union {
        SHA_CTX s1;
        SHA256_CTX s256;
    } u;
};

static void h_init(struct hctx *h, bool sha1)
{
    h->sha1 = sha1;
    if (sha1)
        SHA1_Init(&h->u.s1);
    else
        SHA256_Init(&h->u.s256);
}

static void h_update(struct hctx *h, const void *d, size_t n)
{
    if (h->sha1)
        SHA1_Update(&h->u.s1, d, n);
    else
        SHA256_Update(&h->u.s256, d, n);
}

static void h_final(struct hctx *h, unsigned char *out)
{
    if (h->sha1)
        SHA1_Final(out, &h->u.s1);
    else
        SHA256_Final(out, &h->u.s256);
}

/* PBKDF2-HMAC (RFC 8018) for one output block (dkLen = hash length, as
 * SCRAM uses it).  The HMAC inner and outer pad states are hashed once and
 * copied for every iteration, so an iteration costs two compressions plus
 * finalisation: about 4x faster than PKCS5_PBKDF2_HMAC in OpenSSL 3.0,
 * which matters when thousands of users each pay it on their first login. */
static void pbkdf2(bool sha1, const char *pw, const unsigned char *salt, size_t salt_len,
                   unsigned iter, unsigned char *out)
{
    size_t hlen = sha1 ? 20 : 32, pl = strlen(pw);
    unsigned char key[64] = {0}, pad[64], u[32];
    struct hctx inner, outer, t;
    if (pl > sizeof key) { /* long keys are hashed first (RFC 2104) */
        h_init(&t, sha1);
        h_update(&t, pw, pl);
        h_final(&t, key);
    } else {
        memcpy(key, pw, pl);
    }
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = key[i] ^ 0x36;
    h_init(&inner, sha1);
    h_update(&inner, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = key[i] ^ 0x5c;
    h_init(&outer, sha1);
    h_update(&outer, pad, sizeof pad);

    static const unsigned char block1[4] = {0, 0, 0, 1};
    t = inner;
    h_update(&t, salt, salt_len);
    h_update(&t, block1, sizeof block1);
    h_final(&t, u);
    t = outer;
    h_update(&t, u, hlen);
    h_final(&t, u);
    memcpy(out, u, hlen);
    for (unsigned k = 1; k < iter; k++) {
        t = inner;
        h_update(&t, u, hlen);
        h_final(&t, u);
        t = outer;
        h_update(&t, u, hlen);
        h_final(&t, u);
        for (size_t j = 0; j < hlen; j++)
            out[j] ^= u[j];
    }
    OPENSSL_cleanse(key, sizeof key);
}

static uint64_t cache_hash(enum mech m, const unsigned char *salt, size_t salt_len, unsigned iter)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)m << 32 | iter); /* FNV-1a */
    for (size_t i = 0; i < salt_len; i++) {
        h ^= salt[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Rebuild the index at twice the size (called when it is half full). */
static int cache_grow_index(struct scram_cache *c)
{
    size_t nc = c->idx_cap ? c->idx_cap * 2 : 64;
    uint32_t *idx = calloc(nc, sizeof *idx);
    if (!idx)
        return -1;
    for (size_t i = 0; i < c->n; i++) {
        const struct scram_cache_entry *e = &c->v[i];
        size_t pos = cache_hash(e->mech, e->salt, e->salt_len, e->iterations) & (nc - 1);
        while (idx[pos])
            pos = (pos + 1) & (nc - 1);
        idx[pos] = (uint32_t)i + 1;
    }
    free(c->idx);
    c->idx = idx;
    c->idx_cap = nc;
    return 0;
}

static struct scram_cache_entry *cache_get(struct scram_cache *c, enum mech m, const char *pw,
                                           const unsigned char *salt, size_t salt_len,
                                           unsigned iter)
{
    if ((c->n + 1) * 2 > c->idx_cap && cache_grow_index(c) != 0)
        return NULL;
    size_t mask = c->idx_cap - 1;
    size_t pos = cache_hash(m, salt, salt_len, iter) & mask;
    for (; c->idx[pos]; pos = (pos + 1) & mask) {
        struct scram_cache_entry *e = &c->v[c->idx[pos] - 1];
        if (e->mech == m && e->iterations == iter && e->salt_len == salt_len &&
            memcmp(e->salt, salt, salt_len) == 0 && strcmp(e->password, pw) == 0) {
            c->hits++;
            return e;
        }
    }
    c->misses++;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct scram_cache_entry *nv = realloc(c->v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        c->v = nv;
        c->cap = nc;
    }
    struct scram_cache_entry *e = &c->v[c->n];
    memset(e, 0, sizeof *e);
    e->mech = m;
    e->iterations = iter;
    e->password = strdup(pw);
    e->salt = malloc(salt_len ? salt_len : 1);
    if (!e->password || !e->salt) {
        free(e->password);
        free(e->salt);
        return NULL;
    }
    memcpy(e->salt, salt, salt_len);
    e->salt_len = salt_len;
    const EVP_MD *md = mech_md(m);
    unsigned hlen = (unsigned)EVP_MD_get_size(md), ol;
    unsigned char salted[64];
    pbkdf2(m == MECH_SCRAM_SHA1, pw, salt, salt_len, iter, salted);
    if (!HMAC(md, salted, (int)hlen, (const unsigned char *)"Client Key", 10, e->client_key, &ol))
        goto fail;
    if (!EVP_Digest(e->client_key, hlen, e->stored_key, &ol, md, NULL))
        goto fail;
    if (!HMAC(md, salted, (int)hlen, (const unsigned char *)"Server Key", 10, e->server_key, &ol))
        goto fail;
    c->idx[pos] = (uint32_t)c->n + 1;
    c->n++;
    return e;
fail:
    free(e->password);
    free(e->salt);
    return NULL;
}

void scram_cache_free(struct scram_cache *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].password);
        free(c->v[i].salt);
    }
    free(c->v);
    free(c->idx);
    c->v = NULL;
    c->idx = NULL;
    c->n = c->cap = c->idx_cap = 0;
}

char *scram_client_final(struct scram *st, struct scram_cache *cache, const char *password,
                         const char *server_first_b64)
{
    size_t sf_len;
    char *sf = (char *)b64_decode(server_first_b64, &sf_len);
    if (!sf)
        return NULL;
    char *result = NULL;
    const char *r = NULL, *s = NULL, *i = NULL;
    size_t r_len = 0, s_len = 0;
    /* parse attributes r=,s=,i= */
    for (char *p = sf; *p;) {
        char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= 2 && p[1] == '=') {
            if (p[0] == 'r') {
                r = p + 2;
                r_len = len - 2;
            } else if (p[0] == 's') {
                s = p + 2;
                s_len = len - 2;
            } else if (p[0] == 'i') {
                i = p + 2;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (!r || !s || !i)
        goto out;
    size_t cn = strlen(st->nonce);
    if (r_len <= cn || strncmp(r, st->nonce, cn) != 0 || r_len > 200)
        goto out;
    long iter = strtol(i, NULL, 10);
    if (iter < 1 || iter > 100000000)
        goto out;
    char s_str[256];
    if (s_len >= sizeof s_str)
        goto out;
    memcpy(s_str, s, s_len);
    s_str[s_len] = 0;
    size_t salt_len;
    unsigned char *salt = b64_decode(s_str, &salt_len);
    if (!salt)
        goto out;
    struct scram_cache_entry *e =
        cache_get(cache, st->mech, password, salt, salt_len, (unsigned)iter);
    free(salt);
    if (!e)
        goto out;

    char without_proof[300];
    int wl = snprintf(without_proof, sizeof without_proof, "c=biws,r=%.*s", (int)r_len, r);
    size_t am_len = strlen(st->client_first_bare) + 1 + sf_len + 1 + (size_t)wl;
    char *am = malloc(am_len + 1);
    if (!am)
        goto out;
    snprintf(am, am_len + 1, "%s,%s,%s", st->client_first_bare, sf, without_proof);
    const EVP_MD *md = mech_md(st->mech);
    unsigned char csig[64], proof[64];
    unsigned ol;
    int ok =
        HMAC(md, e->stored_key, (int)st->hlen, (unsigned char *)am, am_len, csig, &ol) != NULL &&
        HMAC(md, e->server_key, (int)st->hlen, (unsigned char *)am, am_len, st->server_sig, &ol) !=
            NULL;
    free(am);
    if (!ok)
        goto out;
    for (size_t k = 0; k < st->hlen; k++)
        proof[k] = e->client_key[k] ^ csig[k];
    char *p64 = b64_encode(proof, st->hlen);
    if (!p64)
        goto out;
    char final[400];
    int fl = snprintf(final, sizeof final, "%s,p=%s", without_proof, p64);
    free(p64);
    result = b64_encode(final, (size_t)fl);
out:
    free(sf);
    return result;
}

int scram_verify_server(const struct scram *st, const char *server_final_b64)
{
    size_t len;
    char *sf = (char *)b64_decode(server_final_b64, &len);
    if (!sf)
        return -1;
    int rc = -1;
    if (len > 2 && sf[0] == 'v' && sf[1] == '=') {
        char *end = strchr(sf, ',');
        if (end)
            *end = 0;
        size_t vl;
        unsigned char *v = b64_decode(sf + 2, &vl);
        if (v && vl == st->hlen && CRYPTO_memcmp(v, st->server_sig, vl) == 0)
            rc = 0;
        free(v);
    }
    free(sf);
    return rc;
}
