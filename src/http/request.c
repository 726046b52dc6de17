/* SPDX-License-Identifier: MIT
 * request.c - see request.h.
 */
#include "request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/common.h"

static const char *const header_names[H_COUNT] = {"host",
                                                  "origin",
                                                  "upgrade",
                                                  "connection",
                                                  "sec-websocket-key",
                                                  "sec-websocket-version",
                                                  "sec-websocket-protocol",
                                                  "expect"};

static void clear(http_request_t *r)
{
    free(r->url);
    r->url = NULL;
    r->url_len = 0;
    for (int i = 0; i < H_COUNT; i++) {
        free(r->hdr[i]);
        r->hdr[i] = NULL;
    }
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    r->complete = false;
    r->err_status = 0;
    r->in_value = false;
    r->cur_header = H_COUNT;
    r->field_len = 0;
    r->header_bytes = 0;
}

static int on_message_begin(http_parser *p)
{
    clear(p->data);
    return 0;
}

static int add_header_bytes(http_request_t *r, size_t n, int status)
{
    r->header_bytes += n;
    if (r->header_bytes > HTTP_MAX_HEADER_BYTES) {
        r->err_status = status;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (r->url_len + len > HTTP_MAX_URL) {
        r->err_status = 414;
        return -1;
    }
    if (add_header_bytes(r, len, 414))
        return -1;
    r->url = tern_xrealloc(r->url, r->url_len + len + 1);
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (add_header_bytes(r, len, 431))
        return -1;
    /* http-parser (built non-strict by Debian) lets whitespace into a
     * field name; "Transfer-Encoding : chunked" must not pass as some
     * other header (RFC 9112 §5.1: 400). */
    if (memchr(at, ' ', len) || memchr(at, '\t', len)) {
        r->err_status = 400;
        return -1;
    }
    if (r->in_value) {
        r->in_value = false;
        r->field_len = 0;
        r->cur_header = H_COUNT;
    }
    /* A name may arrive in pieces (split reads): collect it whole. */
    if (r->field_len + len <= sizeof(r->field))
        memcpy(r->field + r->field_len, at, len);
    r->field_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (add_header_bytes(r, len, 431))
        return -1;
    if (memchr(at, '\0', len)) {
        r->err_status = 400; /* RFC 9110 §5.5 */
        return -1;
    }
    if (!r->in_value) {
        /* The name is complete: which header is it? */
        r->cur_header = H_COUNT;
        for (int i = 0; i < H_COUNT && r->field_len <= sizeof(r->field); i++)
            if (strlen(header_names[i]) == r->field_len &&
                strncasecmp(header_names[i], r->field, r->field_len) == 0)
                r->cur_header = i;
    }
    bool first_piece = !r->in_value;
    r->in_value = true;
    if (r->cur_header == H_COUNT)
        return 0;
    char **v = &r->hdr[r->cur_header];
    size_t old = *v ? strlen(*v) : 0;
    if (*v && first_piece) {
        /* A repeated header: combined as a list (RFC 9110 §5.3). */
        *v = tern_xrealloc(*v, old + 2 + len + 1);
        memcpy(*v + old, ", ", 2);
        old += 2;
    } else {
        *v = tern_xrealloc(*v, old + len + 1);
    }
    memcpy(*v + old, at, len);
    (*v)[old + len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_request_t *r = p->data;
    r->in_value = false;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body) {
        r->err_status = 413;
        return -1;
    }
    const char *expect = r->hdr[H_EXPECT];
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1 && r->on_continue)
        r->on_continue(r->ud);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (r->body_len + len > r->max_body) {
        r->err_status = 413;
        return -1;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        r->body = tern_xrealloc(r->body, cap);
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_request_t *r = p->data;
    r->complete = true;
    r->keep_alive = http_should_keep_alive(p) != 0;
    /* One request at a time: what follows waits until this is answered. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_request_init(http_request_t *r, size_t max_body)
{
    memset(r, 0, sizeof(*r));
    r->max_body = max_body;
    r->cur_header = H_COUNT;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

void http_request_free(http_request_t *r)
{
    clear(r);
}

http_req_status_t http_request_feed(http_request_t *r, const char *data, size_t len,
                                    size_t *consumed)
{
    *consumed = 0;
    if (r->complete)
        return HTTP_REQ_COMPLETE;
    if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK)
        return HTTP_REQ_ERROR;
    size_t n = http_parser_execute(&r->parser, &settings, data, len);
    *consumed = n;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED)
        return HTTP_REQ_COMPLETE;
    if (e != HPE_OK)
        return HTTP_REQ_ERROR;
    return HTTP_REQ_MORE;
}

int http_request_status(const http_request_t *r)
{
    if (r->err_status)
        return r->err_status;
    if (HTTP_PARSER_ERRNO(&r->parser) == HPE_INVALID_VERSION)
        return 505;
    return 400;
}

const char *http_request_error(const http_request_t *r)
{
    return http_errno_description(HTTP_PARSER_ERRNO(&r->parser));
}

void http_request_next(http_request_t *r)
{
    clear(r);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
    } else if (e != HPE_OK) {
        /* After an error the stream is not parseable any more; a caller
         * that goes on starts afresh (http-parser asserts otherwise). */
        http_parser_init(&r->parser, HTTP_REQUEST);
        r->parser.data = r;
    }
}

bool http_request_path_is(const http_request_t *r, const char *path)
{
    if (!r->url)
        return false;
    size_t n = strcspn(r->url, "?#");
    return strlen(path) == n && strncmp(r->url, path, n) == 0;
}
