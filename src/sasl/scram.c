/* SPDX-License-Identifier: MIT
 * scram.c - SCRAM server side (RFC 5802, RFC 7677) with channel binding
 * (RFC 5929 tls-server-end-point, RFC 9266 tls-exporter) and XEP-0474
 * downgrade protection, plus SASL PLAIN parsing and strict base64.
 *
 * The exchange is a small state machine over caller-supplied buffers: no
 * I/O, no storage access. Every parse works on (pointer, length) pairs and
 * rejects embedded NULs up front, so the attacker-controlled messages never
 * reach string functions that would stop early. Any failure, and any step
 * called out of order, moves the exchange to a terminal failed state so
 * that a client cannot retry a proof on the same exchange. Credentials hold
 * only StoredKey/ServerKey; the per-exchange work is a handful of HMACs.
 */
#include "sasl/scram.h"

#include "core/common.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* 24 random bytes encode to 32 base64 characters without padding; all of
 * them are valid nonce characters (printable, never ','). */
#define SERVER_NONCE_BYTES 24
/* Long enough for a 1023-byte localpart fully escaped as =2C, a nonce and
 * the GS2 header; anything larger is not a real client. */
#define MAX_SCRAM_MSG           8192
#define DEFAULT_FAKE_ITERATIONS 4096
#define FAKE_KEY_MAX            64

typedef enum {
    ST_START,
    ST_CLIENT_FIRST, /* client-first parsed, waiting for credentials */
    ST_SERVER_FIRST, /* server-first sent, waiting for client-final */
    ST_DONE,
    ST_FAILED,
} scram_state_t;

struct scram_server {
    scram_hash_t hash;
    bool plus;
    scram_cb_t cb;
    scram_state_t state;

    /* The GS2 header exactly as received, since c= must reproduce it. */
    char *gs2_header;
    size_t gs2_header_len;
    const unsigned char *cb_data; /* NULL unless the client sent p= */
    size_t cb_data_len;

    char *username;
    char *authzid;
    char *client_first_bare;
    size_t client_first_bare_len;
    char *nonce; /* client nonce, then client+server nonce after step 2 */
    size_t nonce_len;
    char *server_first;
    size_t server_first_len;

    /* Unknown account: step 3 still does the full computation on random
     * keys so its timing does not differ, then fails. */
    bool fake;
    unsigned char stored_key[SCRAM_MAX_KEY];
    unsigned char server_key[SCRAM_MAX_KEY];

    unsigned char fake_key[FAKE_KEY_MAX];
    size_t fake_key_len;
    unsigned fake_iterations;

    char *test_nonce;
    unsigned char *test_salt;
    size_t test_salt_len;
};

/* ---- small helpers ---------------------------------------------------- */

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} strbuf_t;

static void sb_add(strbuf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = tern_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(strbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static const EVP_MD *hash_md(scram_hash_t h)
{
    switch (h) {
    case SCRAM_SHA1:
        return EVP_sha1();
    case SCRAM_SHA256:
        return EVP_sha256();
    case SCRAM_SHA512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

size_t scram_hash_len(scram_hash_t h)
{
    switch (h) {
    case SCRAM_SHA1:
        return 20;
    case SCRAM_SHA256:
        return 32;
    case SCRAM_SHA512:
        return 64;
    default:
        return 0;
    }
}

const char *scram_hash_name(scram_hash_t h)
{
    switch (h) {
    case SCRAM_SHA1:
        return "SHA-1";
    case SCRAM_SHA256:
        return "SHA-256";
    case SCRAM_SHA512:
        return "SHA-512";
    default:
        return "unknown";
    }
}

static bool do_hmac(scram_hash_t h, const unsigned char *key, size_t key_len, const void *data,
                    size_t len, unsigned char *out)
{
    unsigned int outlen = 0;
    const EVP_MD *md = hash_md(h);
    if (!md || key_len > INT_MAX)
        return false;
    if (!HMAC(md, key, (int)key_len, data, len, out, &outlen))
        return false;
    return outlen == scram_hash_len(h);
}

static bool do_digest(scram_hash_t h, const void *data, size_t len, unsigned char *out)
{
    unsigned int outlen = 0;
    const EVP_MD *md = hash_md(h);
    if (!md || EVP_Digest(data, len, out, &outlen, md, NULL) != 1)
        return false;
    return outlen == scram_hash_len(h);
}

const char *sasl_error_name(sasl_error_t e)
{
    switch (e) {
    case SASL_ERR_NONE:
        return "none";
    case SASL_ERR_ABORTED:
        return "aborted";
    case SASL_ERR_ACCOUNT_DISABLED:
        return "account-disabled";
    case SASL_ERR_CREDENTIALS_EXPIRED:
        return "credentials-expired";
    case SASL_ERR_ENCRYPTION_REQUIRED:
        return "encryption-required";
    case SASL_ERR_INCORRECT_ENCODING:
        return "incorrect-encoding";
    case SASL_ERR_INVALID_AUTHZID:
        return "invalid-authzid";
    case SASL_ERR_INVALID_MECHANISM:
        return "invalid-mechanism";
    case SASL_ERR_MALFORMED_REQUEST:
        return "malformed-request";
    case SASL_ERR_MECHANISM_TOO_WEAK:
        return "mechanism-too-weak";
    case SASL_ERR_NOT_AUTHORIZED:
        return "not-authorized";
    case SASL_ERR_TEMPORARY_AUTH_FAILURE:
        return "temporary-auth-failure";
    }
    /* Fail closed: a garbage value must still yield a valid condition. */
    return "not-authorized";
}

/* ---- base64 ----------------------------------------------------------- */

char *tern_base64_encode(const unsigned char *in, size_t len, size_t *outlen)
{
    /* EVP_EncodeBlock takes an int and writes 4 bytes per 3 plus a NUL. */
    if (len > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *out = tern_xmalloc(cap);
    int n = len ? EVP_EncodeBlock((unsigned char *)out, in, (int)len) : 0;
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    if (outlen)
        *outlen = (size_t)n;
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* EVP_DecodeBlock skips surrounding whitespace, accepts non-zero trailing
 * bits and counts padding as zero bytes, so the input is validated here
 * first: only canonical base64 is accepted, which makes "decodes to the
 * same bytes" equivalent to "is the same string" for the c= check. */
int tern_base64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!in || !out)
        return -1;
    if (len == 0 || (len == 1 && in[0] == '=')) {
        *out = tern_xmalloc(1);
        (*out)[0] = 0;
        return 0;
    }
    if (len % 4 != 0 || len > INT_MAX)
        return -1;

    size_t pad = 0;
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++) {
        if (b64_value((unsigned char)in[i]) < 0)
            return -1;
    }
    if (pad == 2 && (b64_value((unsigned char)in[len - 3]) & 0x0f) != 0)
        return -1;
    if (pad == 1 && (b64_value((unsigned char)in[len - 2]) & 0x03) != 0)
        return -1;

    size_t full = len / 4 * 3;
    unsigned char *buf = tern_xmalloc(full + 1);
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n != full) {
        free(buf);
        return -1;
    }
    buf[full - pad] = 0;
    *out = buf;
    if (outlen)
        *outlen = full - pad;
    return 0;
}

/* ---- credentials ------------------------------------------------------ */

int scram_derive_keys(scram_hash_t h, const char *password, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, unsigned char *stored_key,
                      unsigned char *server_key)
{
    const EVP_MD *md = hash_md(h);
    size_t hlen = scram_hash_len(h);
    if (!md || !password || !salt || !stored_key || !server_key || iterations == 0 ||
        iterations > INT_MAX || salt_len > INT_MAX || strlen(password) > INT_MAX)
        return TERN_EINVAL;

    unsigned char salted[SCRAM_MAX_KEY];
    unsigned char client_key[SCRAM_MAX_KEY];
    int rc = TERN_EIO;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, (int)iterations, md,
                          (int)hlen, salted) != 1)
        goto out;
    if (!do_hmac(h, salted, hlen, "Client Key", 10, client_key))
        goto out;
    if (!do_digest(h, client_key, hlen, stored_key))
        goto out;
    if (!do_hmac(h, salted, hlen, "Server Key", 10, server_key))
        goto out;
    rc = TERN_OK;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return rc;
}

int scram_creds_from_password(const char *password, unsigned iterations, scram_creds_t *creds)
{
    if (!password || !creds || iterations == 0)
        return TERN_EINVAL;
    memset(creds, 0, sizeof(*creds));
    if (RAND_bytes(creds->salt, SCRAM_SALT_LEN) != 1)
        return TERN_EIO;
    creds->iterations = iterations;
    for (int h = 0; h < SCRAM_HASH_COUNT; h++) {
        int rc = scram_derive_keys((scram_hash_t)h, password, creds->salt, SCRAM_SALT_LEN,
                                   iterations, creds->stored_key[h], creds->server_key[h]);
        if (rc < 0) {
            OPENSSL_cleanse(creds, sizeof(*creds));
            return rc;
        }
    }
    return TERN_OK;
}

bool scram_verify_password(const scram_creds_t *creds, const char *password)
{
    if (!creds || !password)
        return false;
    unsigned char stored[SCRAM_MAX_KEY];
    unsigned char server[SCRAM_MAX_KEY];
    size_t hlen = scram_hash_len(SCRAM_SHA256);
    bool ok = scram_derive_keys(SCRAM_SHA256, password, creds->salt, SCRAM_SALT_LEN,
                                creds->iterations, stored, server) == TERN_OK &&
              CRYPTO_memcmp(stored, creds->stored_key[SCRAM_SHA256], hlen) == 0;
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server, sizeof(server));
    return ok;
}

/* ---- exchange --------------------------------------------------------- */

static const struct {
    const char *name;
    scram_hash_t hash;
    bool plus;
} mechs[] = {
    {"SCRAM-SHA-1", SCRAM_SHA1, false},     {"SCRAM-SHA-1-PLUS", SCRAM_SHA1, true},
    {"SCRAM-SHA-256", SCRAM_SHA256, false}, {"SCRAM-SHA-256-PLUS", SCRAM_SHA256, true},
    {"SCRAM-SHA-512", SCRAM_SHA512, false}, {"SCRAM-SHA-512-PLUS", SCRAM_SHA512, true},
};

scram_server_t *scram_server_new(const char *mech, const scram_cb_t *cb)
{
    if (!mech)
        return NULL;
    for (size_t i = 0; i < TERN_ARRAY_LEN(mechs); i++) {
        if (strcmp(mech, mechs[i].name) != 0)
            continue;
        scram_server_t *s = tern_xcalloc(1, sizeof(*s));
        s->hash = mechs[i].hash;
        s->plus = mechs[i].plus;
        if (cb)
            s->cb = *cb;
        s->state = ST_START;
        s->fake_iterations = DEFAULT_FAKE_ITERATIONS;
        return s;
    }
    return NULL;
}

void scram_server_free(scram_server_t *s)
{
    if (!s)
        return;
    free(s->gs2_header);
    free(s->username);
    free(s->authzid);
    free(s->client_first_bare);
    free(s->nonce);
    free(s->server_first);
    free(s->test_nonce);
    free(s->test_salt);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

int scram_server_set_fake_params(scram_server_t *s, const unsigned char *key, size_t key_len,
                                 unsigned iterations)
{
    if (!s || s->state > ST_CLIENT_FIRST || iterations == 0 || key_len > FAKE_KEY_MAX ||
        (key_len && !key))
        return TERN_EINVAL;
    if (key_len)
        memcpy(s->fake_key, key, key_len);
    s->fake_key_len = key_len;
    s->fake_iterations = iterations;
    return TERN_OK;
}

static bool is_nonce_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != ',';
}

static bool valid_nonce(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_nonce_char((unsigned char)p[i]))
            return false;
    }
    return true;
}

int scram_server_set_nonce_for_test(scram_server_t *s, const char *server_nonce)
{
    if (!s || !server_nonce || s->state > ST_CLIENT_FIRST ||
        !valid_nonce(server_nonce, strlen(server_nonce)))
        return TERN_EINVAL;
    free(s->test_nonce);
    s->test_nonce = tern_xstrdup(server_nonce);
    return TERN_OK;
}

int scram_server_set_salt_for_test(scram_server_t *s, const unsigned char *salt, size_t len)
{
    if (!s || !salt || len == 0 || s->state > ST_CLIENT_FIRST)
        return TERN_EINVAL;
    free(s->test_salt);
    s->test_salt = tern_xmalloc(len);
    memcpy(s->test_salt, salt, len);
    s->test_salt_len = len;
    return TERN_OK;
}

/* saslname (RFC 5802 §7): ',' and '=' travel as =2C and =3D; any other use
 * of '=' is a syntax error, as is an empty name. */
static char *decode_saslname(const char *p, size_t n)
{
    if (n == 0)
        return NULL;
    char *out = tern_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '=') {
            out[o++] = p[i];
            continue;
        }
        if (n - i >= 3 && p[i + 1] == '2' && p[i + 2] == 'C') {
            out[o++] = ',';
        } else if (n - i >= 3 && p[i + 1] == '3' && p[i + 2] == 'D') {
            out[o++] = '=';
        } else {
            free(out);
            return NULL;
        }
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
static bool valid_cb_name(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* One comma-separated attribute of a SCRAM message. */
typedef struct {
    const char *p;
    size_t len;
} field_t;

/* Splits on ','. An empty field anywhere (",,", a leading or trailing
 * comma) is a syntax error in every SCRAM message body. */
static size_t split_fields(const char *p, size_t n, field_t *fields, size_t max, bool *ok)
{
    size_t count = 0;
    size_t start = 0;
    *ok = true;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != ',')
            continue;
        if (i == start || count == max) {
            *ok = false;
            return count;
        }
        fields[count].p = p + start;
        fields[count].len = i - start;
        count++;
        start = i + 1;
    }
    return count;
}

/* attr-val = ALPHA "=" value; "m" is the reserved mandatory extension,
 * which we do not implement and therefore must refuse. */
static bool valid_extension(const field_t *f)
{
    return f->len >= 3 && is_alpha((unsigned char)f->p[0]) && f->p[1] == '=' && f->p[0] != 'm';
}

static bool has_prefix(const field_t *f, char attr)
{
    return f->len >= 2 && f->p[0] == attr && f->p[1] == '=';
}

#define MAX_FIELDS 32

static sasl_error_t fail(scram_server_t *s, sasl_error_t e)
{
    s->state = ST_FAILED;
    return e;
}

static sasl_error_t parse_gs2_header(scram_server_t *s, const char *msg, size_t len, size_t *end)
{
    size_t i;
    char flag;
    const char *cb_name = NULL;
    size_t cb_name_len = 0;

    if (len >= 1 && (msg[0] == 'n' || msg[0] == 'y')) {
        flag = msg[0];
        i = 1;
    } else if (len >= 2 && msg[0] == 'p' && msg[1] == '=') {
        flag = 'p';
        i = 2;
        while (i < len && msg[i] != ',')
            i++;
        cb_name = msg + 2;
        cb_name_len = i - 2;
        if (!valid_cb_name(cb_name, cb_name_len))
            return SASL_ERR_MALFORMED_REQUEST;
    } else {
        return SASL_ERR_MALFORMED_REQUEST;
    }
    if (i >= len || msg[i] != ',')
        return SASL_ERR_MALFORMED_REQUEST;
    i++;

    if (i < len && msg[i] != ',') {
        if (len - i < 2 || msg[i] != 'a' || msg[i + 1] != '=')
            return SASL_ERR_MALFORMED_REQUEST;
        size_t j = i + 2;
        while (j < len && msg[j] != ',')
            j++;
        if (j >= len)
            return SASL_ERR_MALFORMED_REQUEST;
        s->authzid = decode_saslname(msg + i + 2, j - i - 2);
        if (!s->authzid)
            return SASL_ERR_MALFORMED_REQUEST;
        i = j;
    }
    if (i >= len || msg[i] != ',')
        return SASL_ERR_MALFORMED_REQUEST;
    i++;
    *end = i;

    /* Channel-binding policy. RFC 5802 §6: a -PLUS mechanism means the
     * client binds, so it must say which type; p= with a plain mechanism
     * contradicts itself; "y" means the client could bind but believes we
     * cannot, which is false if we offered -PLUS: someone stripped it. */
    if (flag == 'p') {
        if (!s->plus)
            return SASL_ERR_NOT_AUTHORIZED;
        if (cb_name_len == 12 && memcmp(cb_name, "tls-exporter", 12) == 0 && s->cb.exporter &&
            s->cb.exporter_len > 0) {
            s->cb_data = s->cb.exporter;
            s->cb_data_len = s->cb.exporter_len;
        } else if (cb_name_len == 20 && memcmp(cb_name, "tls-server-end-point", 20) == 0 &&
                   s->cb.endpoint && s->cb.endpoint_len > 0) {
            s->cb_data = s->cb.endpoint;
            s->cb_data_len = s->cb.endpoint_len;
        } else {
            return SASL_ERR_NOT_AUTHORIZED;
        }
    } else if (s->plus) {
        return SASL_ERR_NOT_AUTHORIZED;
    } else if (flag == 'y' && s->cb.plus_advertised &&
               !(s->cb.advertised_cb_types && s->cb.advertised_cb_types[0])) {
        /* RFC 5802 §6: 'y' means "I can bind but think you cannot", a
         * downgrade sign when -PLUS was offered. With XEP-0440 the client
         * saw our binding types, so 'y' just says none of them is one it
         * supports (e.g. a tls-unique-only client on TLS 1.3); mechanism
         * stripping is then caught by XEP-0474's h= attribute instead. */
        return SASL_ERR_NOT_AUTHORIZED;
    }
    return SASL_ERR_NONE;
}

sasl_error_t scram_server_client_first(scram_server_t *s, const char *msg, size_t len,
                                       const char **username, const char **authzid)
{
    if (username)
        *username = NULL;
    if (authzid)
        *authzid = NULL;
    if (!s)
        return SASL_ERR_MALFORMED_REQUEST;
    if (s->state != ST_START || !msg)
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    if (len == 0 || len > MAX_SCRAM_MSG || memchr(msg, '\0', len))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);

    size_t hdr_end = 0;
    sasl_error_t e = parse_gs2_header(s, msg, len, &hdr_end);
    if (e != SASL_ERR_NONE)
        return fail(s, e);

    const char *bare = msg + hdr_end;
    size_t bare_len = len - hdr_end;
    field_t f[MAX_FIELDS];
    bool ok;
    size_t nf = split_fields(bare, bare_len, f, MAX_FIELDS, &ok);
    if (!ok || nf < 2 || !has_prefix(&f[0], 'n') || !has_prefix(&f[1], 'r'))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    for (size_t i = 2; i < nf; i++) {
        if (!valid_extension(&f[i]))
            return fail(s, SASL_ERR_MALFORMED_REQUEST);
    }
    s->username = decode_saslname(f[0].p + 2, f[0].len - 2);
    if (!s->username)
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    if (!valid_nonce(f[1].p + 2, f[1].len - 2))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);

    s->gs2_header = tern_xstrndup(msg, hdr_end);
    s->gs2_header_len = hdr_end;
    s->client_first_bare = tern_xstrndup(bare, bare_len);
    s->client_first_bare_len = bare_len;
    s->nonce = tern_xstrndup(f[1].p + 2, f[1].len - 2);
    s->nonce_len = f[1].len - 2;
    s->state = ST_CLIENT_FIRST;
    if (username)
        *username = s->username;
    if (authzid)
        *authzid = s->authzid;
    return SASL_ERR_NONE;
}

static int cmp_str(const void *a, const void *b)
{
    /* strcmp orders by unsigned byte value: the "i;octet" collation
     * (RFC 4790 §9.3) that XEP-0474 requires. */
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_sorted(strbuf_t *b, const char *const *list)
{
    size_t n = 0;
    while (list[n])
        n++;
    if (n == 0)
        return;
    const char **sorted = tern_xmalloc(n * sizeof(*sorted));
    memcpy(sorted, list, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_add(b, "\x1e", 1);
        sb_adds(b, sorted[i]);
    }
    free(sorted);
}

/* XEP-0474 (SASL SCRAM Downgrade Protection, urn:xmpp:ssdp:0), following
 * version 0.5.0 (2025-10-25), whose wire format is unchanged since 0.4.0:
 * S = sorted mechanisms joined by 0x1E; if XEP-0440 channel-binding types
 * were advertised, then 0x1F and the sorted types joined by 0x1E. The value
 * of the "h" attribute is base64(H(S)) with the exchange's own hash. Since
 * server-first-message is part of AuthMessage, the client's proof covers
 * it. */
static char *ssdp_hash(scram_hash_t h, const scram_cb_t *cb)
{
    strbuf_t b = {0};
    unsigned char md[SCRAM_MAX_KEY];
    char *out = NULL;

    add_sorted(&b, cb->advertised_mechs);
    if (cb->advertised_cb_types && cb->advertised_cb_types[0]) {
        sb_add(&b, "\x1f", 1);
        add_sorted(&b, cb->advertised_cb_types);
    }
    if (do_digest(h, b.p ? b.p : "", b.len, md))
        out = tern_base64_encode(md, scram_hash_len(h), NULL);
    free(b.p);
    return out;
}

/* Unknown account: HMAC(fake key, username) gives a salt that stays the
 * same across attempts, so probing twice does not reveal the account is
 * fake. The keys are random; no proof can match them, and step 3 refuses
 * regardless. */
static bool make_fake_creds(scram_server_t *s, unsigned char salt[SCRAM_SALT_LEN])
{
    if (s->fake_key_len > 0) {
        unsigned char md[SCRAM_MAX_KEY];
        if (!do_hmac(SCRAM_SHA256, s->fake_key, s->fake_key_len, s->username, strlen(s->username),
                     md))
            return false;
        memcpy(salt, md, SCRAM_SALT_LEN);
    } else if (RAND_bytes(salt, SCRAM_SALT_LEN) != 1) {
        return false;
    }
    return RAND_bytes(s->stored_key, SCRAM_MAX_KEY) == 1 &&
           RAND_bytes(s->server_key, SCRAM_MAX_KEY) == 1;
}

sasl_error_t scram_server_first(scram_server_t *s, const scram_creds_t *creds, char **out,
                                size_t *outlen)
{
    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!s)
        return SASL_ERR_MALFORMED_REQUEST;
    if (s->state != ST_CLIENT_FIRST || !out)
        return fail(s, SASL_ERR_MALFORMED_REQUEST);

    unsigned char fake_salt[SCRAM_SALT_LEN];
    const unsigned char *salt;
    size_t salt_len = SCRAM_SALT_LEN;
    unsigned iterations;
    if (creds) {
        if (creds->iterations == 0)
            return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
        size_t hlen = scram_hash_len(s->hash);
        memcpy(s->stored_key, creds->stored_key[s->hash], hlen);
        memcpy(s->server_key, creds->server_key[s->hash], hlen);
        salt = creds->salt;
        iterations = creds->iterations;
    } else {
        if (!make_fake_creds(s, fake_salt))
            return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
        s->fake = true;
        salt = fake_salt;
        iterations = s->fake_iterations;
    }
    if (s->test_salt) {
        salt = s->test_salt;
        salt_len = s->test_salt_len;
    }

    char *server_nonce;
    if (s->test_nonce) {
        server_nonce = tern_xstrdup(s->test_nonce);
    } else {
        unsigned char rnd[SERVER_NONCE_BYTES];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
        server_nonce = tern_base64_encode(rnd, sizeof(rnd), NULL);
        if (!server_nonce)
            return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
    }
    char *salt_b64 = tern_base64_encode(salt, salt_len, NULL);
    char *ssdp = NULL;
    if (s->cb.advertised_mechs)
        ssdp = ssdp_hash(s->hash, &s->cb);
    if (!salt_b64 || (s->cb.advertised_mechs && !ssdp)) {
        free(server_nonce);
        free(salt_b64);
        free(ssdp);
        return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
    }

    strbuf_t nonce = {0};
    sb_add(&nonce, s->nonce, s->nonce_len);
    sb_adds(&nonce, server_nonce);
    free(s->nonce);
    s->nonce = nonce.p;
    s->nonce_len = nonce.len;

    char iter[16];
    snprintf(iter, sizeof(iter), "%u", iterations);
    strbuf_t b = {0};
    sb_adds(&b, "r=");
    sb_add(&b, s->nonce, s->nonce_len);
    sb_adds(&b, ",s=");
    sb_adds(&b, salt_b64);
    sb_adds(&b, ",i=");
    sb_adds(&b, iter);
    if (ssdp) {
        sb_adds(&b, ",h=");
        sb_adds(&b, ssdp);
    }
    free(server_nonce);
    free(salt_b64);
    free(ssdp);

    s->server_first = b.p;
    s->server_first_len = b.len;
    s->state = ST_SERVER_FIRST;
    *out = tern_xstrndup(b.p, b.len);
    if (outlen)
        *outlen = b.len;
    return SASL_ERR_NONE;
}

sasl_error_t scram_server_client_final(scram_server_t *s, const char *msg, size_t len, char **out,
                                       size_t *outlen)
{
    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!s)
        return SASL_ERR_MALFORMED_REQUEST;
    if (s->state != ST_SERVER_FIRST || !msg || !out)
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    if (len == 0 || len > MAX_SCRAM_MSG || memchr(msg, '\0', len))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);

    field_t f[MAX_FIELDS];
    bool ok;
    size_t nf = split_fields(msg, len, f, MAX_FIELDS, &ok);
    if (!ok || nf < 3 || !has_prefix(&f[0], 'c') || !has_prefix(&f[1], 'r') ||
        !has_prefix(&f[nf - 1], 'p'))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    for (size_t i = 2; i + 1 < nf; i++) {
        /* The proof must be the last attribute: it signs everything before. */
        if (!valid_extension(&f[i]) || has_prefix(&f[i], 'p'))
            return fail(s, SASL_ERR_MALFORMED_REQUEST);
    }
    if (!valid_nonce(f[1].p + 2, f[1].len - 2))
        return fail(s, SASL_ERR_MALFORMED_REQUEST);

    unsigned char *cbind = NULL;
    size_t cbind_len = 0;
    unsigned char *proof = NULL;
    size_t proof_len = 0;
    size_t hlen = scram_hash_len(s->hash);
    if (tern_base64_decode(f[0].p + 2, f[0].len - 2, &cbind, &cbind_len) < 0)
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    if (tern_base64_decode(f[nf - 1].p + 2, f[nf - 1].len - 2, &proof, &proof_len) < 0 ||
        proof_len != hlen) {
        free(cbind);
        free(proof);
        return fail(s, SASL_ERR_MALFORMED_REQUEST);
    }

    /* c= carries the GS2 header and, for p=, the binding data. */
    bool cb_ok = cbind_len == s->gs2_header_len + s->cb_data_len &&
                 memcmp(cbind, s->gs2_header, s->gs2_header_len) == 0 &&
                 (s->cb_data_len == 0 ||
                  CRYPTO_memcmp(cbind + s->gs2_header_len, s->cb_data, s->cb_data_len) == 0);
    bool nonce_ok = f[1].len - 2 == s->nonce_len && memcmp(f[1].p + 2, s->nonce, s->nonce_len) == 0;
    free(cbind);

    size_t without_proof_len = (size_t)(f[nf - 1].p - msg) - 1;
    strbuf_t am = {0};
    sb_add(&am, s->client_first_bare, s->client_first_bare_len);
    sb_add(&am, ",", 1);
    sb_add(&am, s->server_first, s->server_first_len);
    sb_add(&am, ",", 1);
    sb_add(&am, msg, without_proof_len);

    unsigned char client_sig[SCRAM_MAX_KEY];
    unsigned char client_key[SCRAM_MAX_KEY];
    unsigned char check[SCRAM_MAX_KEY];
    unsigned char server_sig[SCRAM_MAX_KEY];
    bool crypto_ok = do_hmac(s->hash, s->stored_key, hlen, am.p, am.len, client_sig) &&
                     do_hmac(s->hash, s->server_key, hlen, am.p, am.len, server_sig);
    for (size_t i = 0; i < hlen; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    crypto_ok = crypto_ok && do_digest(s->hash, client_key, hlen, check);
    bool proof_ok = crypto_ok && CRYPTO_memcmp(check, s->stored_key, hlen) == 0;
    free(proof);
    free(am.p);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(client_sig, sizeof(client_sig));

    if (!crypto_ok) {
        OPENSSL_cleanse(server_sig, sizeof(server_sig));
        return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
    }
    if (!proof_ok || !cb_ok || !nonce_ok || s->fake) {
        OPENSSL_cleanse(server_sig, sizeof(server_sig));
        return fail(s, SASL_ERR_NOT_AUTHORIZED);
    }

    char *v = tern_base64_encode(server_sig, hlen, NULL);
    OPENSSL_cleanse(server_sig, sizeof(server_sig));
    if (!v)
        return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE);
    strbuf_t b = {0};
    sb_adds(&b, "v=");
    sb_adds(&b, v);
    free(v);
    s->state = ST_DONE;
    *out = b.p;
    if (outlen)
        *outlen = b.len;
    return SASL_ERR_NONE;
}

/* ---- PLAIN ------------------------------------------------------------ */

/* RFC 4616: message = [authzid] NUL authcid NUL passwd, where authcid and
 * passwd are 1*SAFE (non-empty, no NUL). */
sasl_error_t sasl_plain_parse(const char *msg, size_t len, char **storage, const char **authzid,
                              const char **authcid, const char **password)
{
    if (storage)
        *storage = NULL;
    if (authzid)
        *authzid = NULL;
    if (authcid)
        *authcid = NULL;
    if (password)
        *password = NULL;
    if (!msg || !storage || !authzid || !authcid || !password)
        return SASL_ERR_MALFORMED_REQUEST;

    const char *nul1 = memchr(msg, '\0', len);
    if (!nul1)
        return SASL_ERR_MALFORMED_REQUEST;
    size_t a = (size_t)(nul1 - msg);
    const char *nul2 = memchr(nul1 + 1, '\0', len - a - 1);
    if (!nul2)
        return SASL_ERR_MALFORMED_REQUEST;
    size_t b = (size_t)(nul2 - msg);
    if (b == a + 1 || b + 1 == len || memchr(nul2 + 1, '\0', len - b - 1))
        return SASL_ERR_MALFORMED_REQUEST;

    char *copy = tern_xmalloc(len + 1);
    memcpy(copy, msg, len);
    copy[len] = '\0';
    *storage = copy;
    *authzid = a > 0 ? copy : NULL;
    *authcid = copy + a + 1;
    *password = copy + b + 1;
    return SASL_ERR_NONE;
}
