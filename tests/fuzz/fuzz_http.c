/* SPDX-License-Identifier: MIT
 * fuzz_http.c - libFuzzer target for HTTP/1.1 request parsing
 * (src/http/request.h) as the HTTP listener drives it.
 *
 * The first input byte picks a chunk size; the rest arrives in chunks of
 * that size, like socket reads. Within a chunk, requests are taken one at
 * a time: after HTTP_REQ_COMPLETE the request is "answered"
 * (http_request_next) and parsing goes on with the chunk's remaining
 * bytes, as pipelined requests are. It stops at HTTP_REQ_ERROR and at an
 * upgrade (the rest belongs to another protocol). The body limit is small
 * so that 413 is reachable. Every invariant the listener relies on is
 * checked with an abort: consumed bytes within the chunk, a NUL-terminated
 * target no longer than HTTP_MAX_URL, header bytes and body within their
 * limits, error statuses among those the listener may answer with.
 *
 * Two more checks: the input is parsed again in one read and both parses
 * must agree (header names split across reads), and after HTTP_REQ_ERROR
 * http_request_next is called as http.c's reply path does (http-parser
 * asserts when a failed parser is unpaused). FUZZ_HTTP_SPLIT=0 and
 * FUZZ_HTTP_AFTER_ERROR=0 turn them off.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY 4096

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http: invariant violated: %s\n", what);
        abort();
    }
}

typedef struct {
    unsigned continues; /* on_continue calls for the current request */
    char *log;          /* what was parsed, for the split comparison */
    size_t log_len, log_cap;
} fuzz_ctx_t;

static void log_add(fuzz_ctx_t *c, const void *s, size_t n)
{
    if (c->log_len + n > c->log_cap) {
        size_t cap = (c->log_len + n) * 2 + 64;
        char *q = realloc(c->log, cap);
        if (!q)
            abort();
        c->log = q;
        c->log_cap = cap;
    }
    memcpy(c->log + c->log_len, s, n);
    c->log_len += n;
}

static void log_str(fuzz_ctx_t *c, const char *s)
{
    if (!s)
        s = "(none)";
    log_add(c, s, strlen(s) + 1);
}

static void log_request(fuzz_ctx_t *c, const http_request_t *r)
{
    char num[64];
    snprintf(num, sizeof(num), "R %d %d.%d %d", (int)r->parser.method, r->parser.http_major,
             r->parser.http_minor, (int)r->keep_alive);
    log_str(c, num);
    log_str(c, r->url);
    for (int i = 0; i < H_COUNT; i++)
        log_str(c, r->hdr[i]);
    if (r->body_len)
        log_add(c, r->body, r->body_len);
    log_str(c, "");
}

static void on_continue(void *ud)
{
    fuzz_ctx_t *c = ud;
    c->continues++;
}

static void check_request(const http_request_t *r, const fuzz_ctx_t *c)
{
    check(r->complete, "COMPLETE without r->complete");
    check(r->err_status == 0, "COMPLETE with err_status set");
    check(r->header_bytes <= HTTP_MAX_HEADER_BYTES, "header bytes over the limit");
    if (r->url) {
        check(r->url_len <= HTTP_MAX_URL, "url over HTTP_MAX_URL");
        check(r->url[r->url_len] == '\0', "url not NUL-terminated");
        check(strlen(r->url) == r->url_len, "url contains NUL");
        /* The router's helper must cope with any target. */
        (void)http_request_path_is(r, "/http-bind");
        (void)http_request_path_is(r, "/");
        (void)http_request_path_is(r, "");
    } else {
        check(r->url_len == 0, "url_len without url");
    }
    for (int i = 0; i < H_COUNT; i++)
        if (r->hdr[i])
            /* Values count against the header bytes; ", " joins repeats
             * of a name of at least four bytes. */
            check(strlen(r->hdr[i]) <= HTTP_MAX_HEADER_BYTES + HTTP_MAX_HEADER_BYTES / 2,
                  "header value longer than the header bytes allow");
    check(r->body_len <= r->max_body, "body over max_body");
    if (r->body) {
        check(r->body_cap > r->body_len, "body capacity");
        check(r->body[r->body_len] == '\0', "body not NUL-terminated");
    } else {
        check(r->body_len == 0, "body_len without body");
    }
    /* A Content-Length request is complete once all of it arrived. */
    if ((r->parser.flags & F_CONTENTLENGTH) && !(r->parser.flags & F_CHUNKED))
        check(r->parser.content_length == 0 || r->parser.content_length == ULLONG_MAX,
              "complete with body bytes outstanding");
    /* 100 Continue only for "Expect: 100-continue" on HTTP/1.1+, once. */
    check(c->continues <= 1, "on_continue called twice");
    if (c->continues)
        check(r->hdr[H_EXPECT] && strcasecmp(r->hdr[H_EXPECT], "100-continue") == 0 &&
                  r->parser.http_major == 1 && r->parser.http_minor >= 1,
              "on_continue without Expect: 100-continue on HTTP/1.1");
    if (r->keep_alive)
        check(http_should_keep_alive(&r->parser) != 0, "keep_alive disagrees with the parser");
}

static bool env_off(const char *name)
{
    const char *v = getenv(name);
    return v && strcmp(v, "0") == 0;
}

static void check_error(http_request_t *r)
{
    int st = http_request_status(r);
    check(st == 400 || st == 413 || st == 414 || st == 431 || st == 505, "unexpected error status");
    const char *why = http_request_error(r);
    check(why != NULL && why[0] != '\0', "no error description");
    check(r->url_len <= HTTP_MAX_URL, "url over HTTP_MAX_URL (error)");
    check(r->body_len <= r->max_body, "body over max_body (error)");
    /* Once failed, it stays failed and takes nothing. */
    size_t n = 1;
    http_req_status_t again = http_request_feed(r, "GET / HTTP/1.1\r\n", 16, &n);
    check(again == HTTP_REQ_ERROR && n == 0, "feed after an error");
}

/* Parses in with reads of `chunk` bytes, checking invariants; logs what
 * was parsed into ctx. */
static void run(fuzz_ctx_t *ctx, const char *in, size_t len, size_t chunk)
{
    http_request_t r;
    http_request_init(&r, FUZZ_MAX_BODY);
    r.on_continue = on_continue;
    r.ud = ctx;
    bool done = false;
    for (size_t off = 0; off < len && !done; off += chunk) {
        const char *p = in + off;
        size_t rem = len - off < chunk ? len - off : chunk;
        while (rem > 0) {
            size_t n = (size_t)-1;
            http_req_status_t st = http_request_feed(&r, p, rem, &n);
            check(n <= rem, "consumed more than the chunk");
            p += n;
            rem -= n;
            if (st == HTTP_REQ_MORE) {
                check(rem == 0, "MORE without consuming the chunk");
                check(!r.complete, "MORE with a complete request");
                check(r.header_bytes <= HTTP_MAX_HEADER_BYTES, "header bytes over the limit");
                check(r.url_len <= HTTP_MAX_URL, "url over HTTP_MAX_URL (partial)");
                check(r.body_len <= r.max_body, "body over max_body (partial)");
                break;
            }
            if (st == HTTP_REQ_ERROR) {
                check_error(&r);
                char num[32];
                snprintf(num, sizeof(num), "E %d", http_request_status(&r));
                log_str(ctx, num);
                static int after_error = -1;
                if (after_error < 0)
                    after_error = !env_off("FUZZ_HTTP_AFTER_ERROR");
                if (after_error) {
                    /* http.c answers, then reset_request(), then closes. */
                    http_request_next(&r);
                    check(!r.complete && r.url == NULL, "http_request_next after an error");
                }
                done = true;
                break;
            }
            check(st == HTTP_REQ_COMPLETE, "unknown status");
            check_request(&r, ctx);
            log_request(ctx, &r);
            /* Complete stays complete until answered. */
            size_t n2 = 1;
            check(http_request_feed(&r, p, rem, &n2) == HTTP_REQ_COMPLETE && n2 == 0,
                  "feed while a request waits");
            if (r.parser.upgrade) {
                log_str(ctx, "U");
                done = true; /* the rest is WebSocket (or other) bytes */
                break;
            }
            http_request_next(&r);
            check(!r.complete && r.url == NULL && r.body_len == 0 && r.err_status == 0,
                  "http_request_next left state behind");
            ctx->continues = 0;
        }
    }
    http_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    /* 0: everything at once; 1..127 bytes; else multiples of 64. */
    size_t chunk = sel == 0 ? (len ? len : 1) : sel < 128 ? sel : (size_t)(sel - 127) * 64;

    fuzz_ctx_t a = {0};
    run(&a, in, len, chunk);
    /* The same bytes in one read must parse the same. */
    static int split = -1;
    if (split < 0)
        split = !env_off("FUZZ_HTTP_SPLIT");
    if (split && len) {
        fuzz_ctx_t b = {0};
        run(&b, in, len, len);
        check(a.log_len == b.log_len && (a.log_len == 0 || memcmp(a.log, b.log, a.log_len) == 0),
              "chunked and whole parses differ");
        free(b.log);
    }
    free(a.log);
    return 0;
}
