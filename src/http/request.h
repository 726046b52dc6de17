/* SPDX-License-Identifier: MIT
 * request.h - one HTTP/1.1 request at a time out of a byte stream.
 *
 * A thin layer over Node's http-parser that keeps what the web transports
 * need (target, the few headers they look at, body) and enforces a
 * server's limits: header bytes (431), target length (414), body bytes
 * (413). Pure: no I/O, so the fuzz target drives it directly.
 */
#ifndef TERN_HTTP_REQUEST_H
#define TERN_HTTP_REQUEST_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADER_BYTES 8192
#define HTTP_MAX_URL          2048

enum {
    H_HOST,
    H_ORIGIN,
    H_UPGRADE,
    H_CONNECTION,
    H_WS_KEY,
    H_WS_VERSION,
    H_WS_PROTOCOL,
    H_EXPECT,
    H_COUNT,
};

typedef struct http_request {
    http_parser parser;
    size_t max_body;
    bool complete;   /* parsed to its end; the next waits for http_request_next */
    bool keep_alive; /* per http_should_keep_alive, once complete */
    int err_status;  /* a limit a callback hit (413, 414, 431), else 0 */
    bool in_value;
    int cur_header;
    char field[32];   /* the header name being collected (lowercase match) */
    size_t field_len; /* > sizeof(field): longer than any name we use */
    size_t header_bytes;
    char *url; /* request target, NUL-terminated (owned) */
    size_t url_len;
    char *hdr[H_COUNT]; /* repeated headers joined with ", " (owned) */
    char *body;         /* NUL-terminated (owned) */
    size_t body_len, body_cap;
    /* Called when a request with "Expect: 100-continue" may send its body. */
    void (*on_continue)(void *ud);
    void *ud;
} http_request_t;

typedef enum {
    HTTP_REQ_MORE = 0, /* all input consumed, no complete request yet */
    HTTP_REQ_COMPLETE, /* a request is complete (r->complete) */
    HTTP_REQ_ERROR,    /* malformed or over a limit: answer with http_request_status */
} http_req_status_t;

void http_request_init(http_request_t *r, size_t max_body);
void http_request_free(http_request_t *r);
/* Parses from data; *consumed says how much was taken (the rest belongs
 * to the next request, or to the upgraded protocol when
 * r->parser.upgrade). */
http_req_status_t http_request_feed(http_request_t *r, const char *data, size_t len,
                                    size_t *consumed);
/* The status to answer an HTTP_REQ_ERROR with, and a reason. */
int http_request_status(const http_request_t *r);
const char *http_request_error(const http_request_t *r);
/* Forgets the answered request; parsing may go on. */
void http_request_next(http_request_t *r);
/* The target's path: whether it equals path (query and fragment ignored). */
bool http_request_path_is(const http_request_t *r, const char *path);

#endif
