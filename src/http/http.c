/* SPDX-License-Identifier: MIT
 * http.c - HTTP/1.1 connections for the web transports (see http.h).
 *
 * Why Node's http-parser: it is the parser behind a decade of Node.js,
 * callback-driven with no allocation of its own, strict about framing
 * (Content-Length vs chunked, header syntax) and long fuzzed by OSS-Fuzz;
 * Debian 12 ships it as a library (llhttp, its successor, only as Node
 * sources). We add the limits a server needs on top: header bytes, body
 * bytes, time to send a request, keep-alive idle time.
 */
#include "http.h"

#include <ctype.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../c2s/session.h"
#include "../core/common.h"
#include "../core/log.h"
#include "../shard.h"
#include "bosh.h"
#include "request.h"
#include "websocket.h"

struct http_listener {
    uv_tcp_t tcp;
    tern_server_t *srv;
    bool tls;
    struct http_listener *next;
};

typedef enum { HANDOFF_NONE = 0, HANDOFF_WEBSOCKET, HANDOFF_FORWARD } handoff_t;

struct http_conn {
    uv_tcp_t tcp;
    tern_server_t *srv;
    struct http_conn *next, *prev; /* srv->http_conns */
    char ip[INET6_ADDRSTRLEN];
    char tag[24];
    tls_conn_t *tls;
    bool https;
    bool closing;
    unsigned hops;

    http_request_t req;
    /* Plaintext input from the first byte of the current request on. */
    char *in;
    size_t in_len, in_cap;
    size_t parsed;  /* bytes of in the parser has consumed */
    bool answering; /* taken by a handler that answers later (http_hold) */
    bool close_after_write;
    void *waiter;
    uint64_t req_start_ms, last_active_ms;

    /* Output */
    bool writing;
    char *out, *inflight;
    size_t out_len, out_cap;
    uv_write_t wreq;

    /* Leaving this loop: what takes the socket once the handle closed. */
    handoff_t handoff;
    int handoff_fd;
    tern_session_t *ws_session;
    char *ws_response;
    unsigned forward_to;
};

/* A connection in transit to another worker (MSG_CALL argument). */
typedef struct {
    tls_conn_t *tls;
    bool https;
    unsigned hops;
    char ip[INET6_ADDRSTRLEN];
    char *data;
    size_t len;
} http_transit_t;

static void conn_close(http_conn_t *c);
static void process(http_conn_t *c);
static void start_read(http_conn_t *c);
static http_conn_t *conn_new(tern_server_t *srv, bool https);

/* ------------------------------------------------------------------ */

tern_server_t *http_conn_server(const http_conn_t *c)
{
    return c->srv;
}

const char *http_conn_ip(const http_conn_t *c)
{
    return c->ip;
}

bool http_conn_secure(const http_conn_t *c)
{
    return c->https || c->srv->cfg->http_plain_secure;
}

unsigned http_conn_hops(const http_conn_t *c)
{
    return c->hops;
}

void http_conn_arrived(http_conn_t *c)
{
    c->hops = 0;
}

static void reset_request(http_conn_t *c)
{
    http_request_next(&c->req);
    c->answering = false;
    c->waiter = NULL;
}

static void on_conn_closed(uv_handle_t *h);

static void conn_free(http_conn_t *c)
{
    http_request_free(&c->req);
    if (c->tls)
        tls_conn_free(c->tls);
    free(c->in);
    free(c->out);
    free(c->inflight);
    free(c->ws_response);
    free(c);
}

static void unlink_conn(http_conn_t *c)
{
    tern_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else if (srv->http_conns == c)
        srv->http_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void conn_close(http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->waiter) {
        void *w = c->waiter;
        c->waiter = NULL;
        bosh_request_gone(w);
    }
    unlink_conn(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* ------------------------------------------------------------------ */
/* output                                                              */

static void start_write(http_conn_t *c);

static void begin_handoff(http_conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    http_conn_t *c = req->data;
    free(c->inflight);
    c->inflight = NULL;
    c->writing = false;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->out_len)
        start_write(c);
    else if (c->handoff != HANDOFF_NONE)
        begin_handoff(c);
    else if (c->close_after_write)
        conn_close(c); /* answered with Connection: close */
}

static void start_write(http_conn_t *c)
{
    uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
    c->inflight = c->out;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    c->writing = true;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writing = false;
        free(c->inflight);
        c->inflight = NULL;
        conn_close(c);
    }
}

static void write_socket(http_conn_t *c, const char *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    if (!c->writing && c->out_len == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r >= 0 && (size_t)r == len)
            return;
        if (r < 0 && r != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (r > 0) {
            data += r;
            len -= (size_t)r;
        }
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        c->out = tern_xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (!c->writing)
        start_write(c);
}

static void flush_tls(http_conn_t *c)
{
    char buf[16384];
    size_t n;
    while (c->tls && !c->closing && (n = tls_conn_out_read(c->tls, buf, sizeof(buf))) > 0)
        write_socket(c, buf, n);
}

static void conn_write(http_conn_t *c, const char *data, size_t len)
{
    if (c->tls) {
        if (tls_conn_write(c->tls, data, len) == TLS_ERROR) {
            conn_close(c);
            return;
        }
        flush_tls(c);
    } else {
        write_socket(c, data, len);
    }
}

static const char *status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

static bool origin_allowed(const tern_server_t *srv, const char *origin)
{
    for (char **o = srv->cfg->cors_origins; o && *o; o++)
        if (strcmp(*o, "*") == 0 || strcmp(*o, origin) == 0)
            return true;
    return false;
}

typedef struct {
    char *p;
    size_t len, cap;
} strbuf_t;

static void sb_add(strbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = tern_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fmt(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(strbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Status line and the headers every response carries. */
static void response_head(http_conn_t *c, strbuf_t *b, int status, bool close)
{
    sb_fmt(b, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    const char *origin = c->req.hdr[H_ORIGIN];
    if (origin && origin_allowed(c->srv, origin)) {
        sb_str(b, "Access-Control-Allow-Origin: ");
        sb_str(b, origin);
        sb_str(b, "\r\nVary: Origin\r\n");
    }
    sb_str(b, "Cache-Control: no-store\r\n");
    if (close)
        sb_str(b, "Connection: close\r\n");
}

static void reply_ex(http_conn_t *c, int status, const char *content_type, const char *body,
                     size_t len, const char *extra)
{
    if (c->closing)
        return;
    bool close = !c->req.keep_alive || (status >= 400 && status != 404 && status != 405);
    if (close)
        c->req.keep_alive = false;
    strbuf_t b = {0};
    response_head(c, &b, status, close);
    if (extra)
        sb_str(&b, extra);
    if (content_type) {
        sb_str(&b, "Content-Type: ");
        sb_str(&b, content_type);
        sb_str(&b, "\r\n");
    }
    sb_fmt(&b, "Content-Length: %zu\r\n\r\n", len);
    bool head = c->req.parser.method == HTTP_HEAD;
    if (!head && len)
        sb_add(&b, body, len);
    conn_write(c, b.p, b.len);
    free(b.p);
    if (c->closing)
        return;
    /* The request is done: drop its bytes, go on with the next. */
    memmove(c->in, c->in + c->parsed, c->in_len - c->parsed);
    c->in_len -= c->parsed;
    c->parsed = 0;
    reset_request(c);
    c->last_active_ms = c->req_start_ms = uv_now(c->srv->loop);
    if (!close) {
        process(c);
        return;
    }
    if (!c->writing && c->out_len == 0)
        conn_close(c);
    else
        c->close_after_write = true; /* on_write closes once it is out */
}

void http_reply(http_conn_t *c, int status, const char *content_type, const char *body, size_t len)
{
    c->waiter = NULL;
    reply_ex(c, status, content_type, body, len, NULL);
}

void http_hold(http_conn_t *c, void *waiter)
{
    c->answering = true;
    c->waiter = waiter;
}

static void reply_text(http_conn_t *c, int status, const char *text)
{
    reply_ex(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* ------------------------------------------------------------------ */
/* routes                                                              */

/* The request's Host, if it is a plain host[:port]; else NULL. */
static const char *request_host(const http_conn_t *c)
{
    const char *h = c->req.hdr[H_HOST];
    if (!h || !*h || strlen(h) > 255)
        return NULL;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p))
            return NULL;
    return h;
}

static void serve_host_meta(http_conn_t *c, bool json)
{
    const config_t *cfg = c->srv->cfg;
    char fallback[300];
    const char *host = request_host(c);
    if (!host) {
        snprintf(fallback, sizeof(fallback), "%s:%u", c->srv->hosts[0].domain,
                 c->https ? cfg->https_port : cfg->http_port);
        host = fallback;
    }
    const char *s = c->https ? "s" : "";
    strbuf_t b = {0};
    if (json) {
        sb_str(&b, "{\"links\":[");
        sb_fmt(&b, "{\"rel\":\"urn:xmpp:alt-connections:xbosh\",\"href\":\"http%s://%s%s\"},", s,
               host, cfg->bosh_path);
        sb_fmt(&b, "{\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":\"ws%s://%s%s\"}", s,
               host, cfg->websocket_path);
        sb_str(&b, "]}");
    } else {
        sb_str(&b, "<?xml version='1.0' encoding='utf-8'?>\n"
                   "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n");
        sb_fmt(&b, "  <Link rel='urn:xmpp:alt-connections:xbosh' href='http%s://%s%s'/>\n", s, host,
               cfg->bosh_path);
        sb_fmt(&b, "  <Link rel='urn:xmpp:alt-connections:websocket' href='ws%s://%s%s'/>\n", s,
               host, cfg->websocket_path);
        sb_str(&b, "</XRD>\n");
    }
    reply_ex(c, 200, json ? "application/json" : "application/xrd+xml", b.p, b.len, NULL);
    free(b.p);
}

/* Whether the comma-separated header value list contains token. */
static bool has_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t t = len;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == n && strncasecmp(p, token, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* RFC 6455 §4.2.2: base64(SHA-1(key + GUID)). */
static void ws_accept_value(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char joined[64 + sizeof(guid)];
    int n = snprintf(joined, sizeof(joined), "%s%s", key, guid);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(joined, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static bool valid_ws_key(const char *key)
{
    unsigned char raw[32];
    size_t n = strlen(key);
    if (n != 24)
        return false;
    return EVP_DecodeBlock(raw, (const unsigned char *)key, (int)n) == 18 && key[22] == '=' &&
           key[23] == '=';
}

static void serve_websocket(http_conn_t *c)
{
    const char *upgrade = c->req.hdr[H_UPGRADE];
    const char *connection = c->req.hdr[H_CONNECTION];
    const char *key = c->req.hdr[H_WS_KEY];
    const char *version = c->req.hdr[H_WS_VERSION];
    const char *proto = c->req.hdr[H_WS_PROTOCOL];
    if (c->req.parser.method != HTTP_GET) {
        reply_ex(c, 405, "text/plain", "GET only\n", 9, "Allow: GET, OPTIONS\r\n");
        return;
    }
    if (!upgrade || !has_token(upgrade, "websocket")) {
        reply_ex(c, 426, "text/plain", "WebSocket only\n", 15, "Upgrade: websocket\r\n");
        return;
    }
    if (!connection || !has_token(connection, "upgrade") || !key || !valid_ws_key(key) ||
        c->req.parser.http_major != 1 || c->req.parser.http_minor < 1) {
        reply_text(c, 400, "bad WebSocket handshake\n");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        reply_ex(c, 426, "text/plain", "WebSocket version 13 only\n", 26,
                 "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    if (!proto || !has_token(proto, "xmpp")) {
        /* RFC 7395 §3.2: only the xmpp subprotocol is spoken here. */
        reply_text(c, 400, "the 'xmpp' WebSocket subprotocol is required\n");
        return;
    }
    if (c->req.hdr[H_ORIGIN] && !origin_allowed(c->srv, c->req.hdr[H_ORIGIN])) {
        reply_text(c, 403, "origin not allowed\n");
        return;
    }
    tern_session_t *s = c2s_session_new(c->srv, c->ip, "ws");
    if (!s) {
        reply_text(c, 503, "too many connections\n");
        return;
    }
    s->secure = http_conn_secure(c);
    ws_attach(s);
    char accept[29];
    ws_accept_value(key, accept);
    strbuf_t b = {0};
    sb_str(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Protocol: xmpp\r\nSec-WebSocket-Accept: ");
    sb_str(&b, accept);
    sb_str(&b, "\r\n\r\n");
    log_debug(c->tag, "WebSocket upgrade: %s", s->tag);
    c->ws_session = s;
    c->ws_response = b.p;
    c->handoff = HANDOFF_WEBSOCKET;
    c->answering = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!c->writing && c->out_len == 0)
        begin_handoff(c);
}

static bool path_is(const http_conn_t *c, const char *path)
{
    return http_request_path_is(&c->req, path);
}

static void handle_request(http_conn_t *c)
{
    const config_t *cfg = c->srv->cfg;
    if (!c->req.url || c->req.url[0] != '/') {
        reply_text(c, 400, "bad request target\n");
        return;
    }
    enum http_method m = c->req.parser.method;
    bool bosh = path_is(c, cfg->bosh_path), ws = path_is(c, cfg->websocket_path);
    if (m == HTTP_OPTIONS && (bosh || ws)) {
        reply_ex(c, 200, NULL, NULL, 0,
                 "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Content-Type\r\n"
                 "Access-Control-Max-Age: 7200\r\n");
    } else if (bosh) {
        if (m != HTTP_POST) {
            reply_ex(c, 405, "text/plain", "POST only\n", 10, "Allow: POST, OPTIONS\r\n");
            return;
        }
        c->answering = true;
        bosh_request(c, c->req.body ? c->req.body : "", c->req.body_len);
    } else if (ws) {
        serve_websocket(c);
    } else if (path_is(c, "/.well-known/host-meta") || path_is(c, "/.well-known/host-meta.json")) {
        if (m != HTTP_GET && m != HTTP_HEAD) {
            reply_ex(c, 405, "text/plain", "GET only\n", 9, "Allow: GET, HEAD\r\n");
            return;
        }
        serve_host_meta(c, path_is(c, "/.well-known/host-meta.json"));
    } else {
        reply_text(c, 404, "not found\n");
    }
}

/* Parses what has arrived; answers the first complete request. */
static void process(http_conn_t *c)
{
    while (!c->closing && !c->req.complete && c->handoff == HANDOFF_NONE && c->parsed < c->in_len) {
        size_t n = 0;
        http_req_status_t st =
            http_request_feed(&c->req, c->in + c->parsed, c->in_len - c->parsed, &n);
        c->parsed += n;
        if (st == HTTP_REQ_COMPLETE) {
            handle_request(c);
            return;
        }
        if (st == HTTP_REQ_ERROR) {
            int status = http_request_status(&c->req);
            log_debug(c->tag, "bad request (%d): %s", status, http_request_error(&c->req));
            c->req.keep_alive = false;
            c->parsed = c->in_len;
            reply_text(c, status, http_request_error(&c->req));
            return;
        }
        if (n == 0)
            return;
    }
}

/* ------------------------------------------------------------------ */
/* input                                                               */

static void take_plain(http_conn_t *c, const char *data, size_t len)
{
    if (c->in_len == 0 && !c->req.complete)
        c->req_start_ms = uv_now(c->srv->loop);
    /* Bound what a client may queue behind an unanswered request. */
    size_t limit = c->srv->cfg->http_max_body + HTTP_MAX_HEADER_BYTES * 2;
    if (c->in_len + len > limit) {
        if (c->req.complete) {
            conn_close(c);
            return;
        }
    }
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 4096;
        while (cap < c->in_len + len)
            cap *= 2;
        c->in = tern_xrealloc(c->in, cap);
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    process(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_conn_t *c = h->data;
    buf->base = c->srv->readbuf;
    buf->len = sizeof(c->srv->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_conn_t *c = stream->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->last_active_ms = uv_now(c->srv->loop);
    if (!c->tls) {
        take_plain(c, buf->base, (size_t)nread);
        return;
    }
    if (tls_conn_feed(c->tls, buf->base, (size_t)nread) == TLS_ERROR) {
        conn_close(c);
        return;
    }
    for (;;) {
        size_t n = 0;
        tls_status_t st = tls_conn_read(c->tls, c->srv->plainbuf, sizeof(c->srv->plainbuf), &n);
        flush_tls(c);
        if (st == TLS_ERROR || st == TLS_CLOSED) {
            conn_close(c);
            return;
        }
        if (n == 0 || c->closing || c->handoff != HANDOFF_NONE)
            return;
        take_plain(c, c->srv->plainbuf, n);
        if (c->closing || c->handoff != HANDOFF_NONE)
            return;
    }
}

static void start_read(http_conn_t *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* ------------------------------------------------------------------ */
/* handing the socket on                                               */

static void on_conn_closed(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (c->handoff == HANDOFF_WEBSOCKET) {
        /* The session's connection reference (from c2s_session_new) now
         * belongs to its socket; without one it is closed at once. */
        tern_session_t *s = c->ws_session;
        tls_conn_t *tls = c->tls;
        c->tls = NULL;
        if (c2s_attach_socket(s, c->handoff_fd, tls) == 0) {
            c2s_write_wire(s, c->ws_response, strlen(c->ws_response));
            /* Frames sent right behind the handshake. */
            if (c->in_len > c->parsed)
                c2s_input(s, c->in + c->parsed, c->in_len - c->parsed);
            if (s->srv->shutting_down)
                c2s_close(s, "system-shutdown", NULL);
        }
    } else if (c->handoff == HANDOFF_FORWARD && c->handoff_fd >= 0) {
        http_transit_t *t = tern_xcalloc(1, sizeof(*t));
        t->tls = c->tls;
        c->tls = NULL;
        t->https = c->https;
        t->hops = c->hops + 1;
        memcpy(t->ip, c->ip, sizeof(t->ip));
        t->len = c->in_len;
        t->data = tern_xmalloc(t->len ? t->len : 1);
        memcpy(t->data, c->in, c->in_len);
        if (!shard_post_call(c->srv, c->forward_to, http_adopt, t, c->handoff_fd))
            http_adopt(NULL, t, c->handoff_fd);
    }
    conn_free(c);
}

static void begin_handoff(http_conn_t *c)
{
    uv_os_fd_t fd;
    c->handoff_fd = -1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        c->handoff_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    c->waiter = NULL;
    /* The new owner opens the duplicate once this handle is gone from
     * the loop (on_conn_closed). */
    conn_close(c);
}

void http_forward(http_conn_t *c, unsigned to)
{
    log_debug(c->tag, "request for a session on worker %u: moving the connection", to);
    c->handoff = HANDOFF_FORWARD;
    c->forward_to = to;
    c->waiter = NULL;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!c->writing && c->out_len == 0)
        begin_handoff(c);
}

void http_adopt(tern_server_t *dst, void *arg, int fd)
{
    http_transit_t *t = arg;
    if (!dst) {
        if (fd >= 0)
            close(fd);
        if (t->tls)
            tls_conn_free(t->tls);
        free(t->data);
        free(t);
        return;
    }
    if (dst->shutting_down) {
        http_adopt(NULL, t, fd);
        return;
    }
    http_conn_t *c = conn_new(dst, t->https);
    memcpy(c->ip, t->ip, sizeof(c->ip));
    c->tls = t->tls;
    c->hops = t->hops;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        free(t->data);
        free(t);
        conn_close(c);
        return;
    }
    start_read(c);
    take_plain(c, t->data, t->len);
    free(t->data);
    free(t);
}

/* ------------------------------------------------------------------ */
/* listeners                                                           */

static void send_continue(void *ud)
{
    conn_write(ud, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

static http_conn_t *conn_new(tern_server_t *srv, bool https)
{
    http_conn_t *c = tern_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->https = https;
    c->handoff_fd = -1;
    snprintf(c->tag, sizeof(c->tag), "http#%u.%llu", srv->shard_index,
             (unsigned long long)++srv->next_conn_id);
    http_request_init(&c->req, srv->cfg->http_max_body);
    c->req.on_continue = send_continue;
    c->req.ud = c;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->last_active_ms = c->req_start_ms = uv_now(srv->loop);
    c->next = srv->http_conns;
    if (srv->http_conns)
        srv->http_conns->prev = c;
    srv->http_conns = c;
    return c;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct http_listener *l = server->data;
    tern_server_t *srv = l->srv;
    if (status < 0)
        return;
    http_conn_t *c = conn_new(srv, l->tls);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || srv->shutting_down) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof(c->ip));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof(c->ip));
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (l->tls) {
        c->tls = tls_conn_new(srv->tls_http);
        if (!c->tls) {
            conn_close(c);
            return;
        }
    }
    start_read(c);
}

int http_listen(tern_server_t *srv, const char *addr, unsigned port, bool tls, char *err,
                size_t errlen)
{
    struct http_listener *l = tern_xcalloc(1, sizeof(*l));
    l->srv = srv;
    l->tls = tls;
    bool inited;
    int r = server_listen(srv, &l->tcp, l, addr, port, on_connection, &inited, err, errlen);
    if (!inited) {
        free(l);
        return -1;
    }
    l->next = srv->http_listeners;
    srv->http_listeners = l; /* closed by http_close_listeners, even on error */
    if (r != 0)
        return -1;
    log_info("http", "listening on %s port %u (%s)", addr, port, tls ? "HTTPS" : "HTTP");
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void http_close_listeners(tern_server_t *srv)
{
    for (struct http_listener *l = srv->http_listeners, *n; l; l = n) {
        n = l->next;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    }
    srv->http_listeners = NULL;
}

void http_shutdown_all(tern_server_t *srv)
{
    while (srv->http_conns)
        conn_close(srv->http_conns);
}

void http_sweep(tern_server_t *srv, uint64_t now)
{
    uint64_t limit = (uint64_t)srv->cfg->http_timeout * 1000;
    for (http_conn_t *c = srv->http_conns, *n; c; c = n) {
        n = c->next;
        if (c->answering || c->handoff != HANDOFF_NONE)
            continue;
        if (c->in_len > 0 && now - c->req_start_ms > limit) {
            /* Slow or stalled request (slowloris): 408 and goodbye. */
            log_debug(c->tag, "request timeout");
            c->req.keep_alive = false;
            c->req.complete = false;
            c->parsed = c->in_len;
            reply_text(c, 408, "request timeout\n");
        } else if (c->in_len == 0 && now - c->last_active_ms > limit && !c->writing) {
            conn_close(c);
        }
    }
    bosh_sweep(srv, now);
}
