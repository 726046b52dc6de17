/* SPDX-License-Identifier: MIT
 * tls.h - TLS as a byte-transform layer over OpenSSL memory BIOs.
 *
 * The layer does no I/O of its own: the connection feeds it ciphertext read
 * from the socket and takes ciphertext to write, so it works with any event
 * loop (libuv here) and in tests without sockets. One tls_ctx_t per server
 * holds an SSL_CTX per virtual host certificate, chosen by SNI (the default
 * is the first host added). TLS 1.2 is the minimum; cipher lists are
 * OpenSSL's secure defaults minus anything without forward secrecy.
 * SSL_MODE_RELEASE_BUFFERS keeps idle connections from holding 34 KB of
 * OpenSSL buffers.
 */
#ifndef TERN_NET_TLS_H
#define TERN_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* Creates an empty server context. Returns NULL on failure (logs why). */
tls_ctx_t *tls_ctx_new(void);
void tls_ctx_free(tls_ctx_t *ctx);
/* Loads a PEM certificate chain and key for domain. The first domain added
 * is the default for clients without SNI or with an unknown name. Reloading
 * (SIGHUP) replaces that domain's certificate for new connections only.
 * On failure returns a negative value and writes a message into err. */
int tls_ctx_add_host(tls_ctx_t *ctx, const char *domain, const char *cert_file,
                     const char *key_file, char *err, size_t errlen);
/* ALPN protocol the server selects when the client offers it (e.g.
 * "xmpp-client" for Direct TLS, XEP-0368); NULL = no ALPN. */
void tls_ctx_set_alpn(tls_ctx_t *ctx, const char *proto);

/* Makes dst encrypt and accept session tickets with src's keys, so that a
 * client resumes on any listener or worker thread of the process. */
int tls_ctx_share_ticket_keys(tls_ctx_t *dst, const tls_ctx_t *src);

/* Per-connection state. */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx);
void tls_conn_free(tls_conn_t *c);

typedef enum {
    TLS_OK = 0,    /* progress made */
    TLS_WANT_MORE, /* needs more ciphertext */
    TLS_CLOSED,    /* peer sent close_notify */
    TLS_ERROR,     /* fatal; connection must be closed */
} tls_status_t;

/* Feed ciphertext from the socket. Afterwards call tls_conn_read until it
 * returns 0 bytes, and tls_conn_pending_out to flush. */
tls_status_t tls_conn_feed(tls_conn_t *c, const void *data, size_t len);
/* Reads decrypted application data into buf; *n receives the count (0 =
 * nothing available). Drives the handshake as needed. */
tls_status_t tls_conn_read(tls_conn_t *c, void *buf, size_t cap, size_t *n);
/* Encrypts application data; ciphertext becomes available via
 * tls_conn_out_read. Before the handshake completes data is queued by
 * OpenSSL semantics (returns TLS_OK after buffering it internally). */
tls_status_t tls_conn_write(tls_conn_t *c, const void *data, size_t len);
/* Ciphertext waiting to go to the socket: bytes pending, and a read of up
 * to cap of them into buf (returns the count copied; they are consumed). */
size_t tls_conn_out_pending(const tls_conn_t *c);
size_t tls_conn_out_read(tls_conn_t *c, void *buf, size_t cap);
/* Gives back what an idle connection can rebuild on its next use (cipher
 * contexts and empty buffers of a TLS 1.3 connection). */
void tls_conn_hibernate(tls_conn_t *c);
/* Sends close_notify (ciphertext then available via tls_conn_out_read). */
void tls_conn_shutdown(tls_conn_t *c);

bool tls_conn_handshake_done(const tls_conn_t *c);
/* SNI name the client asked for, or NULL. */
const char *tls_conn_sni(const tls_conn_t *c);
/* "TLSv1.3" etc., or NULL before the handshake. */
const char *tls_conn_version(const tls_conn_t *c);
bool tls_conn_is_tls13(const tls_conn_t *c);

/* Channel binding data (RFC 9266 tls-exporter, RFC 5929
 * tls-server-end-point). Writes up to cap bytes into out, sets *n.
 * Returns 0, or TERN_ENOENT when that type is not available on this
 * connection (tls-exporter needs TLS 1.3). */
int tls_conn_cb_exporter(tls_conn_t *c, unsigned char *out, size_t cap, size_t *n);
int tls_conn_cb_server_end_point(tls_conn_t *c, unsigned char *out, size_t cap, size_t *n);

/* Writes a self-signed certificate and key (EC P-256, 10 years, SAN
 * DNS:domain and DNS:*.domain) to the given files; key file mode 0600.
 * Used by `make run` on first start. Returns 0 or negative with err set. */
int tls_make_self_signed(const char *domain, const char *cert_file, const char *key_file, char *err,
                         size_t errlen);

#endif
