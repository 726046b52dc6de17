/* SPDX-License-Identifier: MIT
 * strophe_client.c - a minimal libstrophe (0.12) client for the end-to-end
 * tests: logs in (STARTTLS, or Direct TLS with --direct-tls), sends one
 * chat message and waits for a reply, whose body it prints on stdout.
 *
 *   strophe_client JID PASSWORD HOST PORT TO BODY [--direct-tls] [--timeout SEC]
 *
 * With TO = --inbox and BODY = N it instead fetches its roster (printing
 * "ROSTER jid subscription" per item), sends initial presence and prints
 * "MSG body" for each of the first N messages it receives (offline
 * messages arrive this way), then exits.
 *
 * Exit status: 0 reply received; 1 usage; 2 connection/login failed;
 * 3 error reply; 4 timeout; 5 stream not encrypted.
 * Certificate verification is off (the test server's certificates are
 * self-signed). STROPHE_DEBUG=1 logs the XML traffic to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>

typedef struct {
    const char *to;
    const char *body;
    int rc;
    int got_reply;
    int inbox;       /* --inbox mode */
    long want, seen; /* messages to wait for, received */
    int roster_done;
} state_t;

static void finish_inbox(xmpp_conn_t *conn, state_t *st)
{
    if (st->roster_done && st->seen >= st->want) {
        st->got_reply = 1;
        st->rc = 0;
        xmpp_disconnect(conn);
    }
}

static int on_roster(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    state_t *st = userdata;
    const char *type = xmpp_stanza_get_type(stanza);
    if (!type || strcmp(type, "result") != 0) {
        fprintf(stderr, "strophe_client: roster request failed\n");
        st->rc = 3;
        xmpp_disconnect(conn);
        return 0;
    }
    xmpp_stanza_t *query = xmpp_stanza_get_child_by_name(stanza, "query");
    for (xmpp_stanza_t *it = query ? xmpp_stanza_get_children(query) : NULL; it;
         it = xmpp_stanza_get_next(it)) {
        const char *name = xmpp_stanza_get_name(it);
        if (!name || strcmp(name, "item") != 0)
            continue;
        const char *jid = xmpp_stanza_get_attribute(it, "jid");
        const char *sub = xmpp_stanza_get_attribute(it, "subscription");
        printf("ROSTER %s %s\n", jid ? jid : "?", sub ? sub : "?");
    }
    fflush(stdout);
    st->roster_done = 1;
    finish_inbox(conn, st);
    return 0;
}

static int on_inbox_message(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    state_t *st = userdata;
    char *body = xmpp_message_get_body(stanza);
    if (!body)
        return 1;
    printf("MSG %s\n", body);
    fflush(stdout);
    xmpp_free(xmpp_conn_get_context(conn), body);
    st->seen++;
    finish_inbox(conn, st);
    return 1;
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    state_t *st = userdata;
    const char *type = xmpp_stanza_get_type(stanza);
    if (type && strcmp(type, "error") == 0) {
        char *buf = NULL;
        size_t len = 0;
        xmpp_stanza_to_text(stanza, &buf, &len);
        fprintf(stderr, "strophe_client: error reply: %s\n", buf ? buf : "?");
        if (buf)
            xmpp_free(xmpp_conn_get_context(conn), buf);
        st->rc = 3;
        xmpp_disconnect(conn);
        return 0;
    }
    char *body = xmpp_message_get_body(stanza);
    if (!body)
        return 1; /* not for us (e.g. chat state); keep waiting */
    printf("%s\n", body);
    fflush(stdout);
    xmpp_free(xmpp_conn_get_context(conn), body);
    st->got_reply = 1;
    st->rc = 0;
    xmpp_disconnect(conn);
    return 0;
}

static int on_timeout(xmpp_conn_t *conn, void *userdata)
{
    state_t *st = userdata;
    fprintf(stderr, "strophe_client: timed out\n");
    st->rc = 4;
    xmpp_disconnect(conn);
    return 0;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
                    xmpp_stream_error_t *stream_error, void *userdata)
{
    state_t *st = userdata;
    xmpp_ctx_t *ctx = xmpp_conn_get_context(conn);
    if (status == XMPP_CONN_CONNECT) {
        if (!xmpp_conn_is_secured(conn)) {
            fprintf(stderr, "strophe_client: stream is not encrypted\n");
            st->rc = 5;
            xmpp_disconnect(conn);
            return;
        }
        fprintf(stderr, "strophe_client: bound as %s\n", xmpp_conn_get_bound_jid(conn));
        if (st->inbox) {
            xmpp_handler_add(conn, on_inbox_message, NULL, "message", NULL, st);
            xmpp_id_handler_add(conn, on_roster, "roster1", st);
            xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", "roster1");
            xmpp_stanza_t *query = xmpp_stanza_new(ctx);
            xmpp_stanza_set_name(query, "query");
            xmpp_stanza_set_ns(query, "jabber:iq:roster");
            xmpp_stanza_add_child(iq, query);
            xmpp_stanza_release(query);
            xmpp_send(conn, iq);
            xmpp_stanza_release(iq);
            xmpp_stanza_t *pres = xmpp_presence_new(ctx);
            xmpp_send(conn, pres);
            xmpp_stanza_release(pres);
            return;
        }
        xmpp_handler_add(conn, on_message, NULL, "message", NULL, st);
        xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", st->to, "strophe-1");
        xmpp_message_set_body(msg, st->body);
        xmpp_send(conn, msg);
        xmpp_stanza_release(msg);
        return;
    }
    if (!st->got_reply && st->rc == 0)
        st->rc = 2;
    if (status != XMPP_CONN_DISCONNECT || error || stream_error)
        fprintf(stderr, "strophe_client: connection ended (status %d, error %d%s%s)\n", (int)status,
                error, stream_error && stream_error->text ? ", " : "",
                stream_error && stream_error->text ? stream_error->text : "");
    xmpp_stop(ctx);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s JID PASSWORD HOST PORT TO BODY [--direct-tls] [--timeout SEC]\n",
                argv[0]);
        return 1;
    }
    int direct_tls = 0;
    unsigned long timeout_ms = 30000;
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "--direct-tls") == 0)
            direct_tls = 1;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_ms = strtoul(argv[++i], NULL, 10) * 1000;
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 1;
        }
    }
    state_t st = {.to = argv[5], .body = argv[6], .rc = 0, .got_reply = 0};
    if (strcmp(argv[5], "--inbox") == 0) {
        st.inbox = 1;
        st.want = strtol(argv[6], NULL, 10);
    }

    xmpp_initialize();
    xmpp_log_t *log = NULL;
    const char *dbg = getenv("STROPHE_DEBUG");
    if (dbg && *dbg && strcmp(dbg, "0") != 0)
        log = xmpp_get_default_logger(XMPP_LEVEL_DEBUG);
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, log);
    xmpp_conn_t *conn = xmpp_conn_new(ctx);
    long flags = XMPP_CONN_FLAG_TRUST_TLS;
    flags |= direct_tls ? XMPP_CONN_FLAG_LEGACY_SSL : XMPP_CONN_FLAG_MANDATORY_TLS;
    if (xmpp_conn_set_flags(conn, flags) != 0) {
        fprintf(stderr, "strophe_client: cannot set flags\n");
        return 2;
    }
    xmpp_conn_set_jid(conn, argv[1]);
    xmpp_conn_set_pass(conn, argv[2]);
    xmpp_timed_handler_add(conn, on_timeout, timeout_ms, &st);
    unsigned short port = (unsigned short)strtoul(argv[4], NULL, 10);
    if (xmpp_connect_client(conn, argv[3], port, on_conn, &st) != XMPP_EOK) {
        fprintf(stderr, "strophe_client: connect failed\n");
        st.rc = 2;
    } else {
        xmpp_run(ctx);
    }
    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    if (!st.got_reply && st.rc == 0)
        st.rc = 2;
    return st.rc;
}
