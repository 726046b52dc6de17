/* SPDX-License-Identifier: MIT
 * config.c - loading, validating and generating the configuration file.
 *
 * One table (options[]) describes every option: its key, type, range,
 * default and the comment written into a generated file, so the parser,
 * the defaults and config_write_default cannot drift apart. Defaults are
 * applied by feeding the table's default text through the same conversion
 * as the file, which keeps "what the default is" and "how it is spelled in
 * a file" identical. The parser works line by line on a private copy of the
 * text, cutting values out in place, and stops at the first error, which it
 * reports as "file:line: message".
 */
#include "core/config.h"

#include "core/common.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Larger than any sane config; stops a mistaken path (a log file, a
 * device) from being slurped into memory. */
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)

/* Longest duration any option accepts. Timers are kept in milliseconds,
 * and a week in ms still fits comfortably in 32 bits of arithmetic. */
#define MAX_DURATION (7ULL * 24 * 3600)

typedef enum {
    OPT_STRING,
    OPT_LOGLEVEL,
    OPT_UINT,
    OPT_SIZE,
    OPT_DURATION,
    OPT_BOOL,
    OPT_ADDRESSES,
    OPT_NAMES,
    OPT_LIST, /* comma-separated free text */
} opt_type_t;

typedef struct {
    const char *name;
    opt_type_t type;
    bool host; /* belongs to [host NAME] rather than [server] */
    size_t offset;
    unsigned long long min, max;
    const char *def; /* default in file syntax; NULL when derived after loading */
    bool active;     /* left uncommented in the generated file */
    bool reloadable; /* SIGHUP applies it without a restart */
    const char *range_hint;
    const char *help;
} opt_t;

#define SRV(field)  .host = false, .offset = offsetof(config_t, field)
#define HOST(field) .host = true, .offset = offsetof(config_host_t, field)

static const opt_t options[] = {
    {"log_level", OPT_LOGLEVEL, SRV(log_level), .def = "info", .reloadable = true,
     .help = "Log verbosity: error, warn, info or debug."},
    {"data_dir", OPT_STRING, SRV(data_dir), .def = "var", .active = true,
     .help = "Directory for the database and certificates; relative paths are\n"
             "relative to the server's working directory."},
    {"storage", OPT_STRING, SRV(storage), .def = "sqlite", .help = "Storage driver."},
    {"storage_path", OPT_STRING, SRV(storage_path),
     .help = "Database file. Default: <data_dir>/tern.db"},
    {"listen", OPT_ADDRESSES, SRV(listen), .def = "127.0.0.1", .active = true,
     .help = "IPv4/IPv6 addresses to listen on, comma-separated, e.g. 0.0.0.0, ::"},
    {"c2s_port", OPT_UINT, SRV(c2s_port), .max = 65535, .def = "5222",
     .help = "Client port (STARTTLS); 0 turns it off."},
    {"c2s_tls_port", OPT_UINT, SRV(c2s_tls_port), .max = 65535, .def = "5223",
     .help = "Direct TLS client port (XEP-0368); 0 turns it off."},
    {"require_encryption", OPT_BOOL, SRV(require_encryption), .def = "yes",
     .help = "Refuse authentication on connections that have not started TLS."},
    {"max_stanza_size", OPT_SIZE, SRV(max_stanza_size), .min = 1024, .max = 64ULL << 20,
     .def = "256K", .reloadable = true,
     .help = "Largest stanza accepted from a client (K, M, G = powers of 1024)."},
    {"max_output_buffer", OPT_SIZE, SRV(max_output_buffer), .min = 4096, .max = 1ULL << 30,
     .def = "1M", .reloadable = true,
     .help = "Data queued to a slow reader before its connection is closed;\n"
             "at least max_stanza_size."},
    {"handshake_timeout", OPT_DURATION, SRV(handshake_timeout), .min = 1, .max = MAX_DURATION,
     .def = "60s", .reloadable = true,
     .help = "Time a new connection has to authenticate and bind (s, m, h)."},
    {"idle_timeout", OPT_DURATION, SRV(idle_timeout), .min = 1, .max = MAX_DURATION, .def = "10m",
     .reloadable = true, .help = "A connection sending nothing for this long is closed."},
    /* 1000 rather than 4096 so test setups can trade strength for speed. */
    {"sasl_iterations", OPT_UINT, SRV(sasl_iterations), .min = 1000, .max = 10000000, .def = "4096",
     .range_hint = "; RFC 7677 recommends at least 4096",
     .help = "PBKDF2 iterations for newly set passwords (SCRAM). At least 1000;\n"
             "4096 is the minimum RFC 7677 recommends."},
    {"auth_max_attempts", OPT_UINT, SRV(auth_max_attempts), .min = 1, .max = 5, .def = "3",
     .reloadable = true, .range_hint = "; RFC 6120 6.4.5 suggests 2 to 5",
     .help = "Failed authentication attempts allowed per stream, 1 to 5\n"
             "(RFC 6120 6.4.5 recommends at least 2)."},
    {"auth_ip_limit", OPT_UINT, SRV(auth_ip_limit), .max = UINT_MAX, .def = "10",
     .reloadable = true,
     .help = "Failed logins per source address within auth_window before further\n"
             "attempts are refused with temporary-auth-failure; 0 = no limit."},
    {"auth_account_limit", OPT_UINT, SRV(auth_account_limit), .max = UINT_MAX, .def = "10",
     .reloadable = true, .help = "Failed logins per account within auth_window; 0 = no limit."},
    {"auth_window", OPT_DURATION, SRV(auth_window), .min = 1, .max = MAX_DURATION, .def = "5m",
     .reloadable = true, .help = "Window over which the auth_*_limit counters are kept."},
    {"max_connections_per_ip", OPT_UINT, SRV(max_connections_per_ip), .max = UINT_MAX, .def = "0",
     .help = "Simultaneous connections per source address; 0 = no limit."},
    {"workers", OPT_UINT, SRV(workers), .max = 64, .def = "0",
     .help = "Event loop threads, each with its own connections; an account's\n"
             "sessions all live on one of them. 0 = one per core."},
    {"hide_version", OPT_BOOL, SRV(hide_version), .def = "no", .reloadable = true,
     .help = "Answer software version queries (XEP-0092) with service-unavailable."},
    {"version_show_os", OPT_BOOL, SRV(version_show_os), .def = "no", .reloadable = true,
     .help = "Include the operating system in software version answers."},
    {"sm_resume_timeout", OPT_DURATION, SRV(sm_resume_timeout), .max = 1ULL * 24 * 3600,
     .def = "5m", .reloadable = true,
     .help = "How long a session with stream management (XEP-0198) waits for its client to\n"
             "resume after the connection drops; 0 turns resumption off."},
    {"sm_max_unacked", OPT_UINT, SRV(sm_max_unacked), .min = 10, .max = 100000, .def = "1000",
     .reloadable = true,
     .help = "Stanzas sent but not acknowledged (XEP-0198) before the client is cut off."},
    {"disabled_modules", OPT_NAMES, SRV(disabled_modules), .def = "",
     .help = "Modules not to load, comma-separated."},

    {"http_port", OPT_UINT, SRV(http_port), .max = 65535, .def = "5280",
     .help = "Plain HTTP port for BOSH and WebSocket clients (and XEP-0156 host-meta);\n"
             "0 turns it off. It binds http_listen, loopback by default: put a TLS\n"
             "proxy in front of it or use https_port."},
    {"http_listen", OPT_ADDRESSES, SRV(http_listen), .def = "127.0.0.1",
     .help = "Addresses the plain HTTP port binds."},
    {"https_port", OPT_UINT, SRV(https_port), .max = 65535, .def = "5443",
     .help = "HTTPS port (BOSH, WebSocket, host-meta) on the `listen` addresses; 0 = off."},
    {"http_plain_secure", OPT_BOOL, SRV(http_plain_secure), .def = "yes",
     .help = "Treat sessions on the plain HTTP port as encrypted (it serves loopback\n"
             "or a TLS-terminating proxy), so require_encryption lets them log in."},
    {"bosh_path", OPT_STRING, SRV(bosh_path), .def = "/http-bind",
     .help = "URL path of the BOSH endpoint."},
    {"websocket_path", OPT_STRING, SRV(websocket_path), .def = "/xmpp-websocket",
     .help = "URL path of the WebSocket endpoint."},
    {"cors_origins", OPT_LIST, SRV(cors_origins), .def = "*", .reloadable = true,
     .help = "Web origins allowed to use BOSH and WebSocket from a browser (CORS and\n"
             "the WebSocket Origin check), comma-separated, e.g. https://chat.example.org;\n"
             "* allows every origin."},
    {"http_max_body", OPT_SIZE, SRV(http_max_body), .min = 1024, .max = 64ULL << 20, .def = "256K",
     .reloadable = true,
     .help = "Largest HTTP request body (a BOSH request); larger ones get 413."},
    {"http_timeout", OPT_DURATION, SRV(http_timeout), .min = 1, .max = 3600, .def = "30s",
     .reloadable = true,
     .help = "Time an HTTP client has to send a complete request, and an idle\n"
             "keep-alive connection is kept."},
    {"bosh_max_wait", OPT_DURATION, SRV(bosh_max_wait), .min = 1, .max = 3600, .def = "60s",
     .reloadable = true,
     .help = "Longest a BOSH request is held waiting for data (XEP-0124 wait)."},
    {"bosh_max_inactivity", OPT_DURATION, SRV(bosh_max_inactivity), .min = 2, .max = 3600,
     .def = "60s", .reloadable = true,
     .help = "Time without a request before a BOSH session ends (XEP-0124 inactivity)."},
    {"bosh_max_pause", OPT_DURATION, SRV(bosh_max_pause), .min = 2, .max = 86400, .def = "120s",
     .reloadable = true, .help = "Longest pause a BOSH client may ask for (XEP-0124 maxpause)."},
    {"bosh_max_requests", OPT_UINT, SRV(bosh_max_requests), .min = 2, .max = 16, .def = "2",
     .reloadable = true, .help = "Simultaneous requests per BOSH session (XEP-0124 requests)."},
    {"bosh_max_hold", OPT_UINT, SRV(bosh_max_hold), .min = 1, .max = 15, .def = "1",
     .reloadable = true, .help = "Requests a BOSH session may have held (XEP-0124 hold)."},

    {"certificate", OPT_STRING, HOST(certificate), .reloadable = true,
     .help = "PEM certificate chain. Default: <data_dir>/certs/<domain>.crt"},
    {"key", OPT_STRING, HOST(key), .reloadable = true,
     .help = "PEM private key. Default: <data_dir>/certs/<domain>.key"},
    {"registration", OPT_BOOL, HOST(registration), .def = "no", .active = true, .reloadable = true,
     .help = "Allow in-band account registration (XEP-0077)."},
    {"registration_limit", OPT_UINT, HOST(registration_limit), .max = UINT_MAX, .def = "3",
     .reloadable = true,
     .help = "Registrations per source address per registration_window; 0 = no limit."},
    {"registration_window", OPT_DURATION, HOST(registration_window), .min = 1, .max = MAX_DURATION,
     .def = "1h", .reloadable = true, .help = "Window for registration_limit."},
    {"max_roster_items", OPT_UINT, HOST(max_roster_items), .min = 1, .max = 100000, .def = "1000",
     .reloadable = true, .help = "Contacts per roster (RFC 6121 §2.5.5)."},
    {"offline_max_messages", OPT_UINT, HOST(offline_max_messages), .max = 100000, .def = "1000",
     .reloadable = true,
     .help = "Messages stored per offline user (XEP-0160); beyond it senders get\n"
             "service-unavailable. 0 turns offline storage off."},
    {"vcard_max_size", OPT_SIZE, HOST(vcard_max_size), .min = 1024, .max = 16ULL << 20,
     .def = "64K", .reloadable = true, .help = "Largest vCard (XEP-0054) a user may store."},
    {"private_max_size", OPT_SIZE, HOST(private_max_size), .min = 1024, .max = 16ULL << 20,
     .def = "64K", .reloadable = true,
     .help = "Largest private XML element (XEP-0049) a user may store."},
    {"blocklist_max_items", OPT_UINT, HOST(blocklist_max_items), .min = 1, .max = 100000,
     .def = "1000", .reloadable = true, .help = "JIDs per blocklist (XEP-0191)."},
    {"mam_retention", OPT_DURATION, HOST(mam_retention), .max = 100ULL * 365 * 86400, .def = "30d",
     .reloadable = true,
     .help = "How long the message archive (XEP-0313) keeps messages; 0 = forever."},
    {"mam_max_page", OPT_UINT, HOST(mam_max_page), .min = 1, .max = 10000, .def = "250",
     .reloadable = true, .help = "Most messages one MAM query page returns."},
    {"muc_domain", OPT_STRING, HOST(muc_domain),
     .help = "Domain of the multi-user chat service (XEP-0045); none turns it off.\n"
             "Default: conference.<domain>"},
    {"pubsub_domain", OPT_STRING, HOST(pubsub_domain),
     .help = "Domain of the publish-subscribe service (XEP-0060); none turns it off.\n"
             "Default: pubsub.<domain>"},
    {"pubsub_node_creation", OPT_STRING, HOST(pubsub_node_creation), .def = "anyone",
     .help = "Who may create pubsub nodes: anyone, local (accounts of this host) or admins."},
    {"pubsub_max_payload", OPT_SIZE, HOST(pubsub_max_payload), .min = 1024, .max = 16ULL << 20,
     .def = "128K", .reloadable = true,
     .help = "Largest item payload a pubsub node or PEP node accepts (XEP-0060\n"
             "payload-too-big beyond it)."},
    {"muc_room_creation", OPT_STRING, HOST(muc_room_creation), .def = "anyone",
     .help = "Who may create rooms: anyone, local (accounts of this host) or admins."},
    {"muc_max_occupants", OPT_UINT, HOST(muc_max_occupants), .min = 1, .max = 1000000,
     .def = "10000", .help = "Most occupants a room may have, whatever its configuration says."},
    {"admins", OPT_LIST, HOST(admins), .def = "",
     .help = "Bare JIDs of the host's administrators; in its MUC service they are\n"
             "owners of every room (XEP-0045 service admins)."},
    {"contact_addresses", OPT_LIST, HOST(contact_addresses), .def = "", .reloadable = true,
     .help = "XEP-0157 contact addresses in server discovery, as TYPE=URI items, e.g.\n"
             "admin=xmpp:admin@example.org, abuse=mailto:abuse@example.org. TYPE is one of\n"
             "abuse, admin, feedback, sales, security, status, support."},
};

#define NOPT TERN_ARRAY_LEN(options)

typedef struct {
    const char *filename;
    char *err;
    size_t errlen;
    config_t *cfg;
    bool in_host; /* current section is cfg->hosts[cfg->nhosts - 1] */
    size_t host_cap;
    unsigned *host_lines; /* line of each [host] header, for duplicate reports */
    /* Line each option was set on in the current section (0 = not set),
     * for duplicate detection and cross-option checks. */
    unsigned server_seen[NOPT];
    unsigned host_seen[NOPT];
} parser_t;

static void set_err(char *err, size_t errlen, const char *filename, unsigned line, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));

static void set_err(char *err, size_t errlen, const char *filename, unsigned line, const char *fmt,
                    va_list ap)
{
    if (!err || errlen == 0)
        return;
    int n = line ? snprintf(err, errlen, "%s:%u: ", filename, line)
                 : snprintf(err, errlen, "%s: ", filename);
    if (n < 0 || (size_t)n >= errlen)
        return;
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static void fail(parser_t *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(parser_t *p, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_err(p->err, p->errlen, p->filename, line, fmt, ap);
    va_end(ap);
}

static void fail_plain(char *err, size_t errlen, const char *filename, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_plain(char *err, size_t errlen, const char *filename, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_err(err, errlen, filename, 0, fmt, ap);
    va_end(ap);
}

/* Locale-independent on purpose: the config must mean the same thing
 * whatever LC_CTYPE the server was started with. */
static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ascii_case_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (ascii_lower(*a) != ascii_lower(*b))
            return false;
    return *a == *b;
}

static bool skip_ws(char **s)
{
    char *start = *s;
    while (is_ws(**s))
        (*s)++;
    return *s != start;
}

static void free_list(char **list)
{
    if (!list)
        return;
    for (char **it = list; *it; it++)
        free(*it);
    free(list);
}

static const char *section_name(const parser_t *p, char *buf, size_t len)
{
    if (!p->in_host)
        return "[server]";
    snprintf(buf, len, "[host %s]", p->cfg->hosts[p->cfg->nhosts - 1].domain);
    return buf;
}

/* Unquotes the string starting at the '"' under *r in place and leaves *r
 * just past the closing quote. */
static int unquote(parser_t *p, unsigned line, char **r, char **out)
{
    char *src = *r + 1;
    char *dst = *r;
    *out = dst;
    for (;;) {
        char c = *src;
        if (c == '\0') {
            fail(p, line, "unterminated quoted string");
            return -1;
        }
        if (c == '"') {
            src++;
            break;
        }
        if (c == '\\') {
            char next = src[1];
            if (next == '"' || next == '\\') {
                *dst++ = next;
                src += 2;
                continue;
            }
            if (next == '\0') {
                fail(p, line, "unterminated quoted string");
                return -1;
            }
            if (next > ' ' && next < 0x7f)
                fail(p, line,
                     "invalid escape '\\%c' in quoted string (only \\\" and \\\\ are "
                     "allowed)",
                     next);
            else
                fail(p, line, "invalid escape in quoted string (only \\\" and \\\\ are allowed)");
            return -1;
        }
        *dst++ = c;
        src++;
    }
    *dst = '\0';
    *r = src;
    return 0;
}

/* Cuts the text after '=' into items in place. A scalar yields at most one
 * item; in a list, commas outside quotes separate items and an empty item
 * comes back as "" so the caller can name the option in its complaint.
 * '#' starts a comment only after whitespace, so "a#b" stays a value.
 * items must have room for one more than the number of commas in s. */
static int split_value(parser_t *p, unsigned line, char *s, bool list, char **items, size_t *n)
{
    char *r = s;
    *n = 0;
    bool after_comma = false;
    for (;;) {
        bool ws = skip_ws(&r);
        if (*r == '\0' || (*r == '#' && ws)) {
            /* A trailing comma leaves an empty last item. */
            if (after_comma) {
                *r = '\0';
                items[(*n)++] = r;
            }
            return 0;
        }
        after_comma = false;
        if (*r == '"') {
            char *item;
            if (unquote(p, line, &r, &item) < 0)
                return -1;
            items[(*n)++] = item;
            ws = skip_ws(&r);
            if (*r == '\0' || (*r == '#' && ws))
                return 0;
            if (list && *r == ',') {
                r++;
                after_comma = true;
                continue;
            }
            fail(p, line, "unexpected text after closing quote");
            return -1;
        }
        char *item = r;
        char *end = r;
        while (*r) {
            if (list && *r == ',')
                break;
            if (*r == '#' && r > item && is_ws(r[-1]))
                break;
            if (!is_ws(*r))
                end = r + 1;
            r++;
        }
        char stop = *r;
        *end = '\0';
        items[(*n)++] = item;
        if (stop != ',')
            return 0;
        r++;
        after_comma = true;
    }
}

/* Digits with an optional one-letter multiplier suffix; rejects signs,
 * spaces and overflow rather than letting strtoull wrap them silently. */
static bool parse_scaled(const char *s, const char *suffixes, const unsigned long long *mults,
                         unsigned long long *out)
{
    unsigned long long v = 0;
    const char *c = s;
    if (*c < '0' || *c > '9')
        return false;
    for (; *c >= '0' && *c <= '9'; c++) {
        unsigned d = (unsigned)(*c - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (*c) {
        const char *hit = suffixes ? strchr(suffixes, *c) : NULL;
        if (!hit || c[1] != '\0')
            return false;
        unsigned long long m = mults[hit - suffixes];
        if (v > ULLONG_MAX / m)
            return false;
        v *= m;
    }
    *out = v;
    return true;
}

static const char *format_amount(opt_type_t type, unsigned long long v, char *buf, size_t len)
{
    if (type == OPT_SIZE && v && v % (1ULL << 30) == 0)
        snprintf(buf, len, "%lluG", v >> 30);
    else if (type == OPT_SIZE && v && v % (1ULL << 20) == 0)
        snprintf(buf, len, "%lluM", v >> 20);
    else if (type == OPT_SIZE && v && v % 1024 == 0)
        snprintf(buf, len, "%lluK", v >> 10);
    else if (type == OPT_DURATION && v && v % 86400 == 0)
        snprintf(buf, len, "%llud", v / 86400);
    else if (type == OPT_DURATION && v && v % 3600 == 0)
        snprintf(buf, len, "%lluh", v / 3600);
    else if (type == OPT_DURATION && v && v % 60 == 0)
        snprintf(buf, len, "%llum", v / 60);
    else if (type == OPT_DURATION)
        snprintf(buf, len, "%llus", v);
    else
        snprintf(buf, len, "%llu", v);
    return buf;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on"};
    static const char *const no[] = {"no", "false", "off"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(yes); i++) {
        if (ascii_case_equal(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (ascii_case_equal(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool valid_module_name(const char *s)
{
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' ||
              *c == '.'))
            return false;
    return *s != '\0';
}

static bool valid_address(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Lowercases ASCII in place, strips one trailing dot (RFC 7622 3.2) and
 * returns why the name cannot be a domain, or NULL. Non-ASCII bytes are
 * let through: IDNA mapping to the canonical form happens at startup. */
static const char *normalise_domain(char *d)
{
    size_t len = strlen(d);
    if (len > 1 && d[len - 1] == '.')
        d[--len] = '\0';
    if (len == 0)
        return "empty name";
    if (len > 1023)
        return "longer than 1023 bytes";
    const char *label = d;
    bool ascii_label = true;
    for (char *c = d;; c++) {
        if (*c == '.' || *c == '\0') {
            size_t ll = (size_t)(c - label);
            if (ll == 0)
                return "empty label";
            if (ascii_label && ll > 63)
                return "label longer than 63 characters";
            if (label[0] == '-' || c[-1] == '-')
                return "label starts or ends with '-'";
            if (*c == '\0')
                break;
            label = c + 1;
            ascii_label = true;
            continue;
        }
        *c = ascii_lower(*c);
        if ((unsigned char)*c >= 0x80)
            ascii_label = false;
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return "invalid character";
    }
    return NULL;
}

static char **copy_list(char **items, size_t n)
{
    char **list = tern_xcalloc(n + 1, sizeof(*list));
    for (size_t i = 0; i < n; i++)
        list[i] = tern_xstrdup(items[i]);
    return list;
}

/* Converts the items of one option's value and stores them into base
 * (a config_t or config_host_t). */
static int store_value(parser_t *p, unsigned line, const opt_t *o, void *base, char **items,
                       size_t n)
{
    char *field = (char *)base + o->offset;
    bool is_list = o->type == OPT_ADDRESSES || o->type == OPT_NAMES || o->type == OPT_LIST;

    if (!is_list && (n == 0 || items[0][0] == '\0')) {
        fail(p, line, "missing value for '%s'", o->name);
        return -1;
    }
    for (size_t i = 0; is_list && i < n; i++) {
        if (items[i][0] == '\0') {
            fail(p, line, "empty element in list for '%s'", o->name);
            return -1;
        }
    }

    static const unsigned long long size_mults[] = {1024, 1ULL << 20, 1ULL << 30,
                                                    1024, 1ULL << 20, 1ULL << 30};
    static const unsigned long long dur_mults[] = {1, 60, 3600, 86400};
    unsigned long long v = 0;

    switch (o->type) {
    case OPT_STRING:
        free(*(char **)field);
        *(char **)field = tern_xstrdup(items[0]);
        return 0;
    case OPT_LOGLEVEL: {
        static const char *const canonical[] = {"error", "warn", "info", "debug"};
        int lvl = log_level_parse(items[0]);
        if (lvl < 0 || (size_t)lvl >= TERN_ARRAY_LEN(canonical)) {
            fail(p, line, "invalid log level '%.64s' (use error, warn, info or debug)", items[0]);
            return -1;
        }
        /* Canonical spelling, so "warning" and "warn" compare equal on reload. */
        free(*(char **)field);
        *(char **)field = tern_xstrdup(canonical[lvl]);
        return 0;
    }
    case OPT_BOOL:
        if (parse_bool(items[0], (bool *)field) < 0) {
            fail(p, line, "invalid boolean '%.64s' for '%s' (use yes/no, true/false or on/off)",
                 items[0], o->name);
            return -1;
        }
        return 0;
    case OPT_UINT:
        if (!parse_scaled(items[0], NULL, NULL, &v)) {
            fail(p, line, "invalid number '%.64s' for '%s'", items[0], o->name);
            return -1;
        }
        break;
    case OPT_SIZE:
        if (!parse_scaled(items[0], "KMGkmg", size_mults, &v)) {
            fail(p, line,
                 "invalid size '%.64s' for '%s' (use a number with an optional K, M or G "
                 "suffix)",
                 items[0], o->name);
            return -1;
        }
        break;
    case OPT_DURATION:
        if (!parse_scaled(items[0], "smhd", dur_mults, &v)) {
            fail(p, line,
                 "invalid duration '%.64s' for '%s' (use a number of seconds with an optional "
                 "s, m, h or d suffix)",
                 items[0], o->name);
            return -1;
        }
        break;
    case OPT_ADDRESSES:
        if (n == 0) {
            fail(p, line, "'%s' needs at least one address", o->name);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (!valid_address(items[i])) {
                fail(p, line, "invalid address '%.64s' for '%s' (use an IPv4 or IPv6 address)",
                     items[i], o->name);
                return -1;
            }
            for (size_t j = 0; j < i; j++) {
                if (strcmp(items[i], items[j]) == 0) {
                    fail(p, line, "address '%.64s' listed twice in '%s'", items[i], o->name);
                    return -1;
                }
            }
        }
        free_list(*(char ***)field);
        *(char ***)field = copy_list(items, n);
        return 0;
    case OPT_LIST:
        free_list(*(char ***)field);
        *(char ***)field = copy_list(items, n);
        return 0;
    case OPT_NAMES:
        for (size_t i = 0; i < n; i++) {
            if (!valid_module_name(items[i])) {
                fail(p, line, "invalid module name '%.64s' in '%s'", items[i], o->name);
                return -1;
            }
        }
        free_list(*(char ***)field);
        *(char ***)field = copy_list(items, n);
        return 0;
    }

    if (v < o->min || v > o->max) {
        char lo[32], hi[32];
        fail(p, line, "%s must be between %s and %s%s (got %.64s)", o->name,
             format_amount(o->type, o->min, lo, sizeof(lo)),
             format_amount(o->type, o->max, hi, sizeof(hi)), o->range_hint ? o->range_hint : "",
             items[0]);
        return -1;
    }
    if (o->type == OPT_SIZE)
        *(size_t *)field = (size_t)v;
    else
        *(unsigned *)field = (unsigned)v;
    return 0;
}

static int set_option(parser_t *p, unsigned line, const opt_t *o, void *base, char *text)
{
    size_t commas = 0;
    for (const char *c = text; *c; c++)
        commas += *c == ',';
    char **items = tern_xcalloc(commas + 1, sizeof(*items));
    size_t n;
    bool is_list = o->type == OPT_ADDRESSES || o->type == OPT_NAMES || o->type == OPT_LIST;
    int rc = split_value(p, line, text, is_list, items, &n);
    if (rc == 0)
        rc = store_value(p, line, o, base, items, n);
    free(items);
    return rc;
}

/* The table's defaults are constants; failing to parse one is a bug in
 * this file, not a user error, so it aborts. */
static void apply_defaults(parser_t *p, bool host, void *base)
{
    for (size_t i = 0; i < NOPT; i++) {
        if (options[i].host != host || !options[i].def)
            continue;
        char *text = tern_xstrdup(options[i].def);
        if (set_option(p, 0, &options[i], base, text) < 0) {
            fprintf(stderr, "tern: bad built-in default for %s\n", options[i].name);
            abort();
        }
        free(text);
    }
}

/* dir + "/" + a + b + c, without doubling a slash the user already wrote. */
static char *data_path(const char *dir, const char *a, const char *b, const char *c)
{
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    size_t len = dl + 1 + strlen(a) + strlen(b) + strlen(c) + 1;
    char *out = tern_xmalloc(len);
    snprintf(out, len, "%s%s%s%s%s", dir, slash ? "" : "/", a, b, c);
    return out;
}

static int open_host(parser_t *p, unsigned line, char *name)
{
    /* Complain about the name as written, not a half-lowercased copy. */
    char *orig = tern_xstrdup(name);
    const char *why = normalise_domain(name);
    if (why)
        fail(p, line, "invalid host name '%.64s': %s", orig, why);
    free(orig);
    if (why)
        return -1;
    config_t *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nhosts; i++) {
        if (strcmp(cfg->hosts[i].domain, name) == 0) {
            fail(p, line, "duplicate host '%.64s' (first defined at line %u)", name,
                 p->host_lines[i]);
            return -1;
        }
    }
    if (cfg->nhosts == p->host_cap) {
        p->host_cap = p->host_cap ? p->host_cap * 2 : 4;
        cfg->hosts = tern_xrealloc(cfg->hosts, p->host_cap * sizeof(*cfg->hosts));
        p->host_lines = tern_xrealloc(p->host_lines, p->host_cap * sizeof(*p->host_lines));
    }
    config_host_t *h = &cfg->hosts[cfg->nhosts];
    memset(h, 0, sizeof(*h));
    h->domain = tern_xstrdup(name);
    p->host_lines[cfg->nhosts] = line;
    cfg->nhosts++;
    apply_defaults(p, true, h);
    p->in_host = true;
    memset(p->host_seen, 0, sizeof(p->host_seen));
    return 0;
}

static int parse_section(parser_t *p, unsigned line, char *s)
{
    char *r = s + 1;
    skip_ws(&r);
    char *word = r;
    while ((*r >= 'a' && *r <= 'z') || (*r >= 'A' && *r <= 'Z') || *r == '_')
        r++;
    size_t wlen = (size_t)(r - word);
    char *name = NULL;
    /* The bare host name is cut off only once the ']' after it has been
     * seen, since the terminator may overwrite that very ']'. */
    char *name_end = NULL;

    if (wlen == 6 && strncmp(word, "server", 6) == 0) {
        skip_ws(&r);
    } else if (wlen == 4 && strncmp(word, "host", 4) == 0) {
        bool ws = skip_ws(&r);
        if (*r == ']' || *r == '\0') {
            fail(p, line, "missing domain name in [host] section header");
            return -1;
        }
        if (!ws) {
            fail(p, line, "unknown section '%.*s' (use [server] or [host NAME])",
                 (int)strcspn(word, "]"), word);
            return -1;
        }
        if (*r == '"') {
            if (unquote(p, line, &r, &name) < 0)
                return -1;
        } else {
            name = r;
            while (*r && *r != ']' && !is_ws(*r))
                r++;
            name_end = r;
            skip_ws(&r);
            if (*r != ']') {
                fail(p, line,
                     *r ? "unexpected text after host name in section header"
                        : "missing ']' in section header");
                return -1;
            }
        }
        skip_ws(&r);
    } else {
        size_t len = strcspn(word, "]");
        while (len > 0 && is_ws(word[len - 1]))
            len--;
        fail(p, line, "unknown section '%.*s' (use [server] or [host NAME])",
             (int)(len > 64 ? 64 : len), word);
        return -1;
    }

    if (*r != ']') {
        fail(p, line, *r ? "unexpected text in section header" : "missing ']' in section header");
        return -1;
    }
    r++;
    skip_ws(&r);
    if (*r != '\0' && *r != '#') {
        fail(p, line, "unexpected text after section header");
        return -1;
    }
    if (!name) {
        p->in_host = false;
        return 0;
    }
    if (name_end)
        *name_end = '\0';
    return open_host(p, line, name);
}

static const opt_t *find_option(const char *key, bool host, const opt_t **other)
{
    *other = NULL;
    for (size_t i = 0; i < NOPT; i++) {
        if (strcmp(options[i].name, key) != 0)
            continue;
        if (options[i].host == host)
            return &options[i];
        *other = &options[i];
    }
    return NULL;
}

static int parse_assignment(parser_t *p, unsigned line, char *s)
{
    char *key = s;
    char *r = s;
    while (*r && *r != '=' && !is_ws(*r))
        r++;
    char *key_end = r;
    skip_ws(&r);
    if (key_end == key) {
        fail(p, line, "missing option name before '='");
        return -1;
    }
    if (*r != '=') {
        *key_end = '\0';
        fail(p, line, "missing '=' after '%.64s'", key);
        return -1;
    }
    *key_end = '\0';
    r++;

    const opt_t *other;
    const opt_t *o = find_option(key, p->in_host, &other);
    if (!o) {
        char buf[300];
        const char *sec = section_name(p, buf, sizeof(buf));
        if (other)
            fail(p, line, "unknown option '%.64s' in %s (it belongs in %s)", key, sec,
                 other->host ? "a [host NAME] section" : "[server]");
        else
            fail(p, line, "unknown option '%.64s' in %s", key, sec);
        return -1;
    }

    size_t idx = (size_t)(o - options);
    unsigned *seen = p->in_host ? p->host_seen : p->server_seen;
    if (seen[idx]) {
        char buf[300];
        fail(p, line, "duplicate option '%s' in %s (first set at line %u)", key,
             section_name(p, buf, sizeof(buf)), seen[idx]);
        return -1;
    }
    seen[idx] = line;
    void *base = p->in_host ? (void *)&p->cfg->hosts[p->cfg->nhosts - 1] : (void *)p->cfg;
    return set_option(p, line, o, base, r);
}

static unsigned line_of(const parser_t *p, const char *name)
{
    const opt_t *other;
    const opt_t *o = find_option(name, false, &other);
    return o ? p->server_seen[o - options] : 0;
}

static unsigned later(unsigned a, unsigned b)
{
    return a > b ? a : b;
}

/* Checks spanning several options, reported at the later of the lines
 * involved since that is where the conflict became visible. */
static int finish(parser_t *p)
{
    config_t *cfg = p->cfg;
    if (cfg->nhosts == 0) {
        fail(p, 0, "no virtual host configured (add a [host example.org] section)");
        return -1;
    }
    if (cfg->c2s_port != 0 && cfg->c2s_port == cfg->c2s_tls_port) {
        fail(p, later(line_of(p, "c2s_port"), line_of(p, "c2s_tls_port")),
             "c2s_port and c2s_tls_port are both %u", cfg->c2s_port);
        return -1;
    }
    const unsigned ports[] = {cfg->c2s_port, cfg->c2s_tls_port, cfg->http_port, cfg->https_port};
    const char *const port_names[] = {"c2s_port", "c2s_tls_port", "http_port", "https_port"};
    for (size_t i = 2; i < 4; i++)
        for (size_t j = 0; j < i; j++)
            if (ports[i] != 0 && ports[i] == ports[j]) {
                fail(p, later(line_of(p, port_names[i]), line_of(p, port_names[j])),
                     "%s and %s are both %u", port_names[j], port_names[i], ports[i]);
                return -1;
            }
    for (size_t i = 0; i < 2; i++) {
        const char *path = i ? cfg->websocket_path : cfg->bosh_path;
        if (path[0] != '/' || strpbrk(path, "?# ")) {
            fail(p, line_of(p, i ? "websocket_path" : "bosh_path"),
                 "%s must be a URL path starting with '/' (got '%s')",
                 i ? "websocket_path" : "bosh_path", path);
            return -1;
        }
    }
    if (cfg->max_output_buffer < cfg->max_stanza_size) {
        fail(p, later(line_of(p, "max_stanza_size"), line_of(p, "max_output_buffer")),
             "max_output_buffer (%zu) must be at least max_stanza_size (%zu)",
             cfg->max_output_buffer, cfg->max_stanza_size);
        return -1;
    }
    if (!cfg->storage_path)
        cfg->storage_path = data_path(cfg->data_dir, "tern.db", "", "");
    for (size_t i = 0; i < cfg->nhosts; i++) {
        config_host_t *h = &cfg->hosts[i];
        if (!h->certificate)
            h->certificate = data_path(cfg->data_dir, "certs/", h->domain, ".crt");
        if (!h->key)
            h->key = data_path(cfg->data_dir, "certs/", h->domain, ".key");
        if (!h->muc_domain) {
            size_t n = strlen("conference.") + strlen(h->domain) + 1;
            h->muc_domain = tern_xmalloc(n);
            snprintf(h->muc_domain, n, "conference.%s", h->domain);
        }
        if (!h->pubsub_domain) {
            size_t n = strlen("pubsub.") + strlen(h->domain) + 1;
            h->pubsub_domain = tern_xmalloc(n);
            snprintf(h->pubsub_domain, n, "pubsub.%s", h->domain);
        }
        const char *rc = h->muc_room_creation;
        if (strcmp(rc, "anyone") != 0 && strcmp(rc, "local") != 0 && strcmp(rc, "admins") != 0) {
            fail(p, line_of(p, "muc_room_creation"),
                 "muc_room_creation must be anyone, local or admins (got '%.64s')", rc);
            return -1;
        }
        rc = h->pubsub_node_creation;
        if (strcmp(rc, "anyone") != 0 && strcmp(rc, "local") != 0 && strcmp(rc, "admins") != 0) {
            fail(p, line_of(p, "pubsub_node_creation"),
                 "pubsub_node_creation must be anyone, local or admins (got '%.64s')", rc);
            return -1;
        }
    }
    return 0;
}

config_t *config_parse(const char *text, const char *filename, char *err, size_t errlen)
{
    if (!filename)
        filename = "<config>";
    if (err && errlen)
        err[0] = '\0';
    if (!text) {
        fail_plain(err, errlen, filename, "no configuration text");
        return NULL;
    }
    parser_t *p = tern_xcalloc(1, sizeof(*p));
    p->filename = filename;
    p->err = err;
    p->errlen = errlen;
    p->cfg = tern_xcalloc(1, sizeof(*p->cfg));
    apply_defaults(p, false, p->cfg);

    char *copy = tern_xstrdup(text);
    char *s = copy;
    if (strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    int rc = 0;
    for (unsigned line = 1; s && rc == 0; line++) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        char *next = nl ? nl + 1 : NULL;
        size_t len = strlen(s);
        if (len > 0 && s[len - 1] == '\r')
            s[len - 1] = '\0';
        skip_ws(&s);
        if (*s == '[')
            rc = parse_section(p, line, s);
        else if (*s != '\0' && *s != '#')
            rc = parse_assignment(p, line, s);
        s = next;
    }
    free(copy);
    if (rc == 0)
        rc = finish(p);

    config_t *cfg = p->cfg;
    free(p->host_lines);
    free(p);
    if (rc < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

config_t *config_load(const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    char ebuf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_plain(err, errlen, path, "cannot open: %s", strerror_r(errno, ebuf, sizeof(ebuf)));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fail_plain(err, errlen, path, "not a regular file");
        close(fd);
        return NULL;
    }
    if (st.st_size > CONFIG_MAX_FILE_SIZE) {
        fail_plain(err, errlen, path, "file too large (more than %d bytes)", CONFIG_MAX_FILE_SIZE);
        close(fd);
        return NULL;
    }
    /* Read to EOF rather than trusting st_size: the file may change size
     * underneath us, and one spare byte tells us it grew past the limit. */
    char *buf = tern_xmalloc(CONFIG_MAX_FILE_SIZE + 2);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, CONFIG_MAX_FILE_SIZE + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail_plain(err, errlen, path, "cannot read: %s", strerror_r(errno, ebuf, sizeof(ebuf)));
            close(fd);
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CONFIG_MAX_FILE_SIZE) {
            fail_plain(err, errlen, path, "file too large (more than %d bytes)",
                       CONFIG_MAX_FILE_SIZE);
            close(fd);
            free(buf);
            return NULL;
        }
    }
    close(fd);
    buf[len] = '\0';

    /* config_parse sees a C string, so a NUL would silently end the file. */
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        unsigned line = 1;
        for (const char *c = buf; c < nul; c++)
            line += *c == '\n';
        if (err && errlen)
            snprintf(err, errlen, "%s:%u: NUL byte in file", path, line);
        free(buf);
        return NULL;
    }
    config_t *cfg = config_parse(buf, path, err, errlen);
    free(buf);
    return cfg;
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->log_level);
    free(cfg->data_dir);
    free(cfg->storage);
    free(cfg->storage_path);
    free_list(cfg->listen);
    free_list(cfg->disabled_modules);
    free_list(cfg->http_listen);
    free(cfg->bosh_path);
    free(cfg->websocket_path);
    free_list(cfg->cors_origins);
    for (size_t i = 0; i < cfg->nhosts; i++) {
        free(cfg->hosts[i].domain);
        free(cfg->hosts[i].certificate);
        free(cfg->hosts[i].key);
        free_list(cfg->hosts[i].contact_addresses);
        free(cfg->hosts[i].muc_domain);
        free(cfg->hosts[i].pubsub_domain);
        free(cfg->hosts[i].pubsub_node_creation);
        free(cfg->hosts[i].muc_room_creation);
        free_list(cfg->hosts[i].admins);
    }
    free(cfg->hosts);
    free(cfg);
}

const config_host_t *config_find_host(const config_t *cfg, const char *domain)
{
    if (!cfg || !domain)
        return NULL;
    for (size_t i = 0; i < cfg->nhosts; i++)
        if (ascii_case_equal(cfg->hosts[i].domain, domain))
            return &cfg->hosts[i];
    return NULL;
}

bool config_module_enabled(const config_t *cfg, const char *name)
{
    if (!cfg || !name || !cfg->disabled_modules)
        return true;
    for (char **m = cfg->disabled_modules; *m; m++)
        if (strcmp(*m, name) == 0)
            return false;
    return true;
}

static void write_option(FILE *f, const opt_t *o, const char *domain)
{
    fputc('\n', f);
    const char *h = o->help;
    while (*h) {
        size_t n = strcspn(h, "\n");
        fprintf(f, "# %.*s\n", (int)n, h);
        h += n;
        if (*h == '\n')
            h++;
    }
    if (o->reloadable)
        fputs("# Reloaded on SIGHUP.\n", f);
    else
        fputs("# Changing this needs a restart.\n", f);

    const char *value = o->def;
    char derived[1200];
    if (!value) {
        const opt_t *other;
        const char *def_dir = find_option("data_dir", false, &other)->def;
        if (strcmp(o->name, "storage_path") == 0)
            snprintf(derived, sizeof(derived), "%s/tern.db", def_dir);
        else
            snprintf(derived, sizeof(derived), "%s/certs/%s.%s", def_dir, domain,
                     strcmp(o->name, "key") == 0 ? "key" : "crt");
        value = derived;
    }
    fprintf(f, "%s%s =%s%s\n", o->active ? "" : "#", o->name, *value ? " " : "", value);
}

int config_write_default(const char *path, const char *domain, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!path || !domain) {
        fail_plain(err, errlen, path ? path : "<config>", "no path or domain given");
        return TERN_EINVAL;
    }
    char *dom = tern_xstrdup(domain);
    const char *why = normalise_domain(dom);
    if (why) {
        fail_plain(err, errlen, path, "invalid domain '%.64s': %s", domain, why);
        free(dom);
        return TERN_EINVAL;
    }

    char ebuf[128];
    /* O_EXCL so an existing configuration is never clobbered, even by a
     * concurrent run. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            fail_plain(err, errlen, path, "already exists; not overwriting it");
        else
            fail_plain(err, errlen, path, "cannot create: %s", strerror_r(e, ebuf, sizeof(ebuf)));
        free(dom);
        return -e;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        fail_plain(err, errlen, path, "cannot write: %s", strerror_r(e, ebuf, sizeof(ebuf)));
        close(fd);
        unlink(path);
        free(dom);
        return -e;
    }

    fputs("# Tern configuration.\n"
          "#\n"
          "# Syntax: \"key = value\" lines; '#' starts a comment. [server] holds the\n"
          "# global options, each [host NAME] section one virtual host. Strings may\n"
          "# be double-quoted (\\\" and \\\\ escape inside quotes), sizes take a K, M\n"
          "# or G suffix (powers of 1024), durations an s, m or h suffix (a plain\n"
          "# number is seconds), booleans are yes/no, true/false or on/off, and\n"
          "# lists are comma-separated.\n"
          "#\n"
          "# Every option is shown with its default; remove the '#' to change one.\n"
          "# See docs/configuration.md for the full reference.\n"
          "\n"
          "[server]\n",
          f);
    for (size_t i = 0; i < NOPT; i++)
        if (!options[i].host)
            write_option(f, &options[i], dom);
    fprintf(f,
            "\n\n# One section per virtual host (XMPP domain). Adding or removing\n"
            "# a host needs a restart.\n[host %s]\n",
            dom);
    for (size_t i = 0; i < NOPT; i++)
        if (options[i].host)
            write_option(f, &options[i], dom);
    free(dom);

    int werr = ferror(f) ? EIO : 0;
    if (fflush(f) != 0 && !werr)
        werr = errno;
    if (!werr && fsync(fileno(f)) != 0)
        werr = errno;
    if (fclose(f) != 0 && !werr)
        werr = errno;
    if (werr) {
        fail_plain(err, errlen, path, "cannot write: %s", strerror_r(werr, ebuf, sizeof(ebuf)));
        unlink(path);
        return -werr;
    }
    return 0;
}
