-- Prosody under bench/run. $${...} placeholders are filled in by
-- bench/lib/servers.py; bench/README.md explains how this matches the Tern
-- and ejabberd configs.

-- The harness runs as the current user (root here) and never as a daemon.
run_as_root = true
pidfile = "${workdir}/prosody.pid"
data_path = "${workdir}/data"
log = { warn = "${workdir}/prosody.log" }

-- The same accept backlog as Tern and ejabberd (1024).
network_settings = { tcp_backlog = 1024 }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${c2s_port} }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
-- HTTP (mod_bosh, mod_websocket) only in the web scenario: the harness
-- fills in a port then, and nothing otherwise.
http_ports = { ${http_ports} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
https_interfaces = { }
http_default_host = "localhost"
-- Web sessions on plain HTTP over loopback count as encrypted, like Tern's
-- http_plain_secure (so PLAIN is offered even if encryption were required).
consider_bosh_secure = true
consider_websocket_secure = true

-- Only what Tern also does (stream, TLS, SASL, bind, presence, messages,
-- disco, ping, version, time) plus rosters, which Prosody's session
-- manager loads at every login anyway. Left out on purpose: carbons, MAM,
-- offline storage, stream management, CSI, PEP, limits (rate limiting),
-- vcard, private, blocklist, register, admin interfaces, HTTP (except in
-- the web scenario).
-- The web scenario adds "bosh" and "websocket".
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "version", "time"${web_modules} }
modules_disabled = { "offline", "s2s", "s2s_auth_certs" }

c2s_require_encryption = ${require_tls}
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
default_iteration_count = ${iterations}

storage = "sql"
sql = { driver = "SQLite3", database = "${workdir}/prosody.sqlite" }

-- Where certmanager looks for certificates; the one used is given below.
certificates = "${cert_dir}"
ssl = {
    certificate = "${cert}";
    key = "${key}";
    protocol = "tlsv1_2+";
}

VirtualHost "localhost"

Component "conference.localhost" "muc"
    restrict_room_creation = false
    max_history_messages = 0

-- The generic pubsub service (XEP-0060) on pubsub.localhost, only for the
-- pubsub scenario (bench/run psfan); empty otherwise. Prosody 0.12 lets only
-- admins create nodes, so the publisher (user0) is an admin of this
-- component (and of nothing else). Items go to the SQL storage above.
${pubsub_component}