/* SPDX-License-Identifier: MIT
 * fuzz_tls13.c - libFuzzer target for the TLS 1.3 record layer
 * (src/net/tls13.c).
 *
 * Random bytes almost never pass AEAD authentication, so besides raw
 * ciphertext the input also drives a peer holding the matching keys: it
 * seals records of any inner type and content (alerts, KeyUpdates, unknown
 * types, empty records) that the server side must then open and judge.
 * Whatever the server writes is opened by the peer and must match, KeyUpdate
 * answers included, as long as the server has not failed.
 *
 * Input: one suite byte, then operations [op][len][len bytes]...
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls13.h"

static const unsigned char client_secret[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static const unsigned char server_secret[48] = {12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};

/* Moves everything srv has queued to the peer and checks it decrypts to
 * what srv was asked to send. */
static void server_to_peer(tls13_t *srv, tls13_t *peer, unsigned char *expect, size_t *expect_len)
{
    unsigned char buf[4096];
    size_t n;
    while ((n = tls13_out_read(srv, buf, sizeof(buf))) > 0)
        tls13_feed(peer, buf, n);
    for (;;) {
        size_t got = 0;
        tls13_status_t st = tls13_read(peer, buf, sizeof(buf), &got);
        if (st != TLS13_OK) {
            /* Only a failed server sends anything the peer cannot read. */
            if (!srv->failed && !srv->closed)
                abort();
            return;
        }
        if (got == 0)
            return;
        if (got > *expect_len || memcmp(buf, expect, got) != 0)
            abort();
        memmove(expect, expect + got, *expect_len - got);
        *expect_len -= got;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint16_t suites[] = {TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384,
                                      TLS13_CHACHA20_POLY1305_SHA256};
    uint16_t suite = suites[data[0] % 3];
    size_t slen = suite == TLS13_AES_256_GCM_SHA384 ? 48 : 32;
    tls13_t srv, peer;
    if (tls13_init(&srv, suite, client_secret, server_secret, slen, 0, 0) != 0 ||
        tls13_init(&peer, suite, server_secret, client_secret, slen, 0, 0) != 0)
        abort();
    static unsigned char expect[1 << 20];
    size_t expect_len = 0;
    unsigned char out[20000];
    size_t i = 1;
    while (i + 2 <= size) {
        uint8_t op = data[i];
        size_t len = data[i + 1];
        i += 2;
        if (len > size - i)
            len = size - i;
        const uint8_t *arg = data + i;
        i += len;
        switch (op % 6) {
        case 0: /* raw ciphertext from the network */
            tls13_feed(&srv, arg, len);
            break;
        case 1: /* a well-formed record of any inner type */
            if (len >= 1) {
                tls13_seal(&peer, arg[0], arg + 1, len - 1);
                size_t n;
                while ((n = tls13_out_read(&peer, out, sizeof(out))) > 0)
                    tls13_feed(&srv, out, n);
            }
            break;
        case 2: { /* the application reads with a small buffer */
            size_t cap = len ? len : 1, got = 0;
            while (tls13_read(&srv, out, cap, &got) == TLS13_OK && got > 0)
                ;
            break;
        }
        case 3: /* the application writes */
            if (!srv.failed && expect_len + len <= sizeof(expect) &&
                tls13_write(&srv, arg, len) == TLS13_OK) {
                memcpy(expect + expect_len, arg, len);
                expect_len += len;
            }
            server_to_peer(&srv, &peer, expect, &expect_len);
            break;
        case 4: /* a big write crossing the record size */
            if (!srv.failed && expect_len + 20000 <= sizeof(expect)) {
                memset(out, len, 20000);
                if (tls13_write(&srv, out, 20000) == TLS13_OK) {
                    memset(expect + expect_len, len, 20000);
                    expect_len += 20000;
                }
            }
            server_to_peer(&srv, &peer, expect, &expect_len);
            break;
        case 5:
            tls13_hibernate(&srv);
            break;
        }
    }
    tls13_clear(&srv);
    tls13_clear(&peer);
    return 0;
}
