/* SPDX-License-Identifier: MIT
 * bosh.h - BOSH (XEP-0124) carrying XMPP (XEP-0206) as a c2s framing.
 *
 * A BOSH session is a socketless c2s session: the payloads of requests
 * are fed to its parser in rid order, its output waits for a held request
 * to carry it. Session ids are process-wide (a registry in worker 0's
 * server) so that a request reaching the wrong worker is forwarded to the
 * one the session lives on.
 */
#ifndef TERN_HTTP_BOSH_H
#define TERN_HTTP_BOSH_H

#include "http.h"

/* A POST to bosh_path; answers through http_reply, now or later. */
void bosh_request(http_conn_t *c, const char *body, size_t len);
/* The connection of a held request (waiter from http_hold) closed. */
void bosh_request_gone(void *waiter);
/* Every second: held requests past `wait`, sessions past `inactivity`. */
void bosh_sweep(tern_server_t *srv, uint64_t now_ms);

#endif
