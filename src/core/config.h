/* SPDX-License-Identifier: MIT
 * config.h - the server configuration file.
 *
 * Format: INI-like, one option per line, "key = value"; '#' starts a
 * comment; "[server]" opens the global section and "[host NAME]" a virtual
 * host. Values: strings (optionally in double quotes), integers with an
 * optional K/M/G suffix for sizes, durations with s/m/h suffix (plain number
 * = seconds), booleans (yes/no/true/false/on/off), and comma-separated
 * lists. Every option has a default (config_defaults); an unknown key, bad
 * value, duplicate host or missing required value fails with
 * "file:line: message".
 *
 * The loaded config is immutable; SIGHUP loads a new one and the server
 * applies the reloadable parts (certificates, log level, limits).
 */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct config_host {
    char *domain;      /* normalised domain name */
    char *certificate; /* PEM path; default <data_dir>/certs/<domain>.crt */
    char *key;         /* PEM path; default <data_dir>/certs/<domain>.key */
    bool registration; /* XEP-0077 in-band registration; default off */
    /* in-band registrations allowed per source address per window; 0 = no limit */
    unsigned registration_limit;   /* default 3 */
    unsigned registration_window;  /* seconds, default 3600 */
    unsigned max_roster_items;     /* default 1000 */
    unsigned offline_max_messages; /* per user; 0 = no offline storage; default 1000 */
    size_t vcard_max_size;         /* bytes; default 64K */
    size_t private_max_size;       /* bytes per element; default 64K */
    unsigned blocklist_max_items;  /* default 1000 */
    unsigned mam_retention;        /* seconds; 0 = forever; default 30 days */
    unsigned mam_max_page;         /* default 250 */
    char **contact_addresses;      /* "type=uri" items (XEP-0157); default none */
    char *muc_domain;              /* XEP-0045 service; default conference.<domain>; "none" = off */
    char *pubsub_domain;           /* XEP-0060 service; default pubsub.<domain>; "none" = off */
    char *pubsub_node_creation;    /* anyone|local|admins; default anyone */
    size_t pubsub_max_payload;     /* bytes per item (pubsub and PEP); default 128K */
    char *muc_room_creation;       /* anyone|local|admins; default anyone */
    unsigned muc_max_occupants;    /* hard cap per room; default 10000 */
    char **admins;                 /* bare JIDs of the host's administrators; default none */
} config_host_t;

typedef struct config {
    /* [server] */
    char *log_level;            /* error|warn|info|debug; default info */
    char *data_dir;             /* default "var" */
    char *storage;              /* driver name; default "sqlite" */
    char *storage_path;         /* default <data_dir>/tern.db */
    char **listen;              /* addresses to bind; default {"127.0.0.1", NULL} */
    unsigned c2s_port;          /* default 5222; 0 = off */
    unsigned c2s_tls_port;      /* Direct TLS (XEP-0368); default 5223; 0 = off */
    bool require_encryption;    /* STARTTLS before auth; default yes */
    size_t max_stanza_size;     /* bytes; default 262144 */
    size_t max_output_buffer;   /* bytes queued to a slow reader before it is cut off; default 1M */
    unsigned handshake_timeout; /* seconds to authenticate+bind; default 60 */
    unsigned idle_timeout;      /* seconds without any input; default 600 */
    unsigned sasl_iterations;   /* PBKDF2 iterations for new passwords; default 4096 */
    unsigned auth_max_attempts; /* failed SASL attempts per stream; default 3 */
    /* Failed logins per source address / per account within auth_window
     * before further attempts get temporary-auth-failure; 0 = no limit. */
    unsigned auth_ip_limit;          /* default 10 */
    unsigned auth_account_limit;     /* default 10 */
    unsigned auth_window;            /* seconds; default 300 */
    unsigned max_connections_per_ip; /* 0 = no limit; default 0 */
    unsigned workers;                /* event loop threads; 0 (default) = one per core */
    bool hide_version;               /* XEP-0092 answers service-unavailable; default no */
    bool version_show_os;            /* XEP-0092 includes <os/>; default no */
    unsigned sm_resume_timeout;      /* XEP-0198 seconds; 0 = no resumption; default 300 */
    unsigned sm_max_unacked;         /* default 1000 */
    char **disabled_modules;         /* default none */

    /* HTTP listener: BOSH (XEP-0124/0206), WebSocket (RFC 7395), XEP-0156 */
    unsigned http_port;           /* plain HTTP; default 5280; 0 = off */
    char **http_listen;           /* addresses of the plain port; default 127.0.0.1 */
    unsigned https_port;          /* HTTP over TLS on `listen`; default 5443; 0 = off */
    bool http_plain_secure;       /* plain HTTP counts as encrypted (proxy/loopback); default yes */
    char *bosh_path;              /* default /http-bind */
    char *websocket_path;         /* default /xmpp-websocket */
    char **cors_origins;          /* allowed Origins, or "*"; default * */
    size_t http_max_body;         /* default 256K */
    unsigned http_timeout;        /* seconds for a request to arrive / keep-alive; default 30 */
    unsigned bosh_max_wait;       /* default 60 */
    unsigned bosh_max_inactivity; /* default 60 */
    unsigned bosh_max_pause;      /* default 120 */
    unsigned bosh_max_requests;   /* default 2 */
    unsigned bosh_max_hold;       /* default 1 */

    /* [host NAME] sections, in file order */
    config_host_t *hosts;
    size_t nhosts;
} config_t;

/* Loads and validates path. On success returns a config the caller frees
 * with config_free; on failure returns NULL and writes "file:line: message"
 * into err. */
config_t *config_load(const char *path, char *err, size_t errlen);
/* Same, from a string (file name used in messages only). */
config_t *config_parse(const char *text, const char *filename, char *err, size_t errlen);
void config_free(config_t *cfg);
const config_host_t *config_find_host(const config_t *cfg, const char *domain);
bool config_module_enabled(const config_t *cfg, const char *name);

/* Writes the default configuration file (with comments documenting every
 * option) for domain to path, failing if it exists. */
int config_write_default(const char *path, const char *domain, char *err, size_t errlen);

#endif
