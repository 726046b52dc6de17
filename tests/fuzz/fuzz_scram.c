/* SPDX-License-Identifier: MIT
 * fuzz_scram.c - libFuzzer target for the SCRAM server, PLAIN parsing and
 * base64 decoding.
 *
 * The first byte picks the mechanism and the connection's channel-binding
 * situation; the rest is a client-first-message and a client-final-message
 * separated by the first newline. The server nonce is fixed so that inputs
 * can reach the proof check instead of stopping at the nonce comparison.
 * The same bytes also go through sasl_plain_parse and the base64 decoder,
 * whose strictness is checked as a property: anything it accepts must
 * re-encode to exactly the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const mech_names[] = {
    "SCRAM-SHA-1",        "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512",    "SCRAM-SHA-512-PLUS",
};

static void fuzz_base64(const char *in, size_t len)
{
    unsigned char *dec = NULL;
    size_t dlen = 0;
    if (tern_base64_decode(in, len, &dec, &dlen) == 0) {
        size_t elen = 0;
        char *enc = tern_base64_encode(dec, dlen, &elen);
        bool empty_alias = len == 1 && in[0] == '=' && elen == 0;
        if (!enc || (!empty_alias && (elen != len || memcmp(enc, in, len) != 0)))
            abort();
        free(enc);
    } else if (dec) {
        abort();
    }
    free(dec);
}

static void fuzz_plain(const char *in, size_t len)
{
    char *storage = NULL;
    const char *authzid, *authcid, *password;
    if (sasl_plain_parse(in, len, &storage, &authzid, &authcid, &password) == SASL_ERR_NONE) {
        if (!storage || !authcid || !password || !*authcid || !*password)
            abort();
    } else if (storage) {
        abort();
    }
    free(storage);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;

    fuzz_base64(msg, len);
    fuzz_plain(msg, len);

    const char *nl = memchr(msg, '\n', len);
    size_t first_len = nl ? (size_t)(nl - msg) : len;
    const char *final = nl ? nl + 1 : NULL;
    size_t final_len = nl ? len - first_len - 1 : 0;

    static const char *const adv_mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", NULL};
    static const char *const adv_cbt[] = {"tls-exporter", "tls-server-end-point", NULL};
    unsigned char exporter[32], endpoint[32];
    memset(exporter, 'E', sizeof(exporter));
    memset(endpoint, 'P', sizeof(endpoint));
    scram_cb_t cb = {
        .exporter = (sel & 0x08) ? exporter : NULL,
        .exporter_len = sizeof(exporter),
        .endpoint = (sel & 0x10) ? endpoint : NULL,
        .endpoint_len = sizeof(endpoint),
        .plus_advertised = (sel & 0x20) != 0,
        .advertised_mechs = (sel & 0x40) ? adv_mechs : NULL,
        .advertised_cb_types = (sel & 0x40) ? adv_cbt : NULL,
    };

    scram_server_t *s = scram_server_new(mech_names[(sel & 7) % 6], &cb);
    if (!s)
        abort();
    scram_server_set_nonce_for_test(s, "SRV");

    const char *user = NULL, *authzid = NULL;
    if (scram_server_client_first(s, msg, first_len, &user, &authzid) == SASL_ERR_NONE) {
        if (!user || !*user)
            abort();
        scram_creds_t creds;
        memset(&creds, 0x5c, sizeof(creds));
        creds.iterations = 4096;
        char *out = NULL;
        size_t outlen = 0;
        if (scram_server_first(s, (sel & 0x80) ? NULL : &creds, &out, &outlen) == SASL_ERR_NONE) {
            if (!out || strlen(out) != outlen)
                abort();
            free(out);
            out = NULL;
            if (final) {
                sasl_error_t e = scram_server_client_final(s, final, final_len, &out, &outlen);
                if ((e == SASL_ERR_NONE) != (out != NULL))
                    abort();
                /* Unknown accounts must never authenticate. */
                if (e == SASL_ERR_NONE && (sel & 0x80))
                    abort();
                free(out);
            }
        }
    }
    scram_server_free(s);
    return 0;
}
