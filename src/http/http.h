/* SPDX-License-Identifier: MIT
 * http.h - the HTTP/1.1 listener that web clients reach XMPP through.
 *
 * One listener per address on http_port (plain, loopback by default) and
 * https_port (TLS). Requests are parsed by Node's http-parser (Debian
 * libhttp-parser), one at a time per connection: the next pipelined
 * request waits until the current one is answered, which a BOSH request
 * may only be after up to `wait` seconds. Routes:
 *
 *   POST bosh_path             BOSH (bosh.c)
 *   GET  websocket_path        WebSocket upgrade, then a c2s session (websocket.c)
 *   GET  /.well-known/host-meta[.json]   XEP-0156 discovery
 *   OPTIONS                    CORS preflight
 *
 * A connection belongs to its worker's loop. When a BOSH request names a
 * session that lives on another worker, the connection itself moves there
 * (socket and TLS state, with the unanswered request's bytes).
 */
#ifndef TERN_HTTP_H
#define TERN_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "../server.h"

typedef struct http_conn http_conn_t;

int http_listen(tern_server_t *srv, const char *addr, unsigned port, bool tls, char *err,
                size_t errlen);
void http_close_listeners(tern_server_t *srv);
/* Closes every HTTP connection (shutdown). */
void http_shutdown_all(tern_server_t *srv);
/* Every second: request and keep-alive timeouts, BOSH waits. */
void http_sweep(tern_server_t *srv, uint64_t now_ms);

/* Answers the connection's current request and goes on with the next. */
void http_reply(http_conn_t *c, int status, const char *content_type, const char *body, size_t len);
/* The request was taken by something that answers later (a held BOSH
 * request); `waiter` is told with bosh_request_gone if the connection
 * closes first. */
void http_hold(http_conn_t *c, void *waiter);
/* Moves the connection, its current request unanswered, to worker `to`,
 * which handles the request again. */
void http_forward(http_conn_t *c, unsigned to);

/* MSG_CALL target: takes over a forwarded connection (arg, fd). */
void http_adopt(tern_server_t *dst, void *arg, int fd);

tern_server_t *http_conn_server(const http_conn_t *c);
const char *http_conn_ip(const http_conn_t *c);
/* Encrypted by us (https_port) or trusted as such (http_plain_secure). */
bool http_conn_secure(const http_conn_t *c);
/* How often the current request has already been forwarded. */
unsigned http_conn_hops(const http_conn_t *c);
/* The request reached the worker that answers it: the next request on this
 * keep-alive connection starts counting its forwards afresh. */
void http_conn_arrived(http_conn_t *c);

#endif
