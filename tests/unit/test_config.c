/* SPDX-License-Identifier: MIT
 * test_config.c - unit tests for the configuration parser.
 *
 * Covers the defaults, every value type, quoting and comments, lists,
 * virtual hosts, each validation error with its exact "file:line:" text
 * (the messages are the user interface of a config file, so they are
 * pinned), loading from disk, and that the generated default file loads
 * back to the built-in defaults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static config_t *parse_ok(const char *text)
{
    char err[512] = "";
    config_t *cfg = config_parse(text, "t.conf", err, sizeof(err));
    if (!cfg)
        fail_msg("unexpected error: %s", err);
    return cfg;
}

static void expect_error(const char *text, const char *want)
{
    char err[512] = "";
    config_t *cfg = config_parse(text, "t.conf", err, sizeof(err));
    if (cfg) {
        config_free(cfg);
        fail_msg("accepted, expected error: %s\n--- text:\n%s", want, text);
    }
    if (strcmp(err, want) != 0)
        fail_msg("wrong error\n  got:  %s\n  want: %s", err, want);
}

static void test_defaults(void **state)
{
    config_t *cfg = parse_ok("[host localhost]\n");
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->data_dir, "var");
    assert_string_equal(cfg->storage, "sqlite");
    assert_string_equal(cfg->storage_path, "var/tern.db");
    assert_non_null(cfg->listen);
    assert_string_equal(cfg->listen[0], "127.0.0.1");
    assert_null(cfg->listen[1]);
    assert_int_equal(cfg->c2s_port, 5222);
    assert_int_equal(cfg->c2s_tls_port, 5223);
    assert_true(cfg->require_encryption);
    assert_int_equal(cfg->max_stanza_size, 262144);
    assert_int_equal(cfg->max_output_buffer, 1024 * 1024);
    assert_int_equal(cfg->handshake_timeout, 60);
    assert_int_equal(cfg->idle_timeout, 600);
    assert_int_equal(cfg->sasl_iterations, 4096);
    assert_int_equal(cfg->auth_max_attempts, 3);
    assert_int_equal(cfg->auth_ip_limit, 10);
    assert_int_equal(cfg->auth_account_limit, 10);
    assert_int_equal(cfg->auth_window, 300);
    assert_int_equal(cfg->max_connections_per_ip, 0);
    assert_false(cfg->hide_version);
    assert_false(cfg->version_show_os);
    assert_non_null(cfg->disabled_modules);
    assert_null(cfg->disabled_modules[0]);

    assert_int_equal(cfg->nhosts, 1);
    const config_host_t *h = &cfg->hosts[0];
    assert_string_equal(h->domain, "localhost");
    assert_string_equal(h->certificate, "var/certs/localhost.crt");
    assert_string_equal(h->key, "var/certs/localhost.key");
    assert_string_equal(h->muc_domain, "conference.localhost");
    assert_string_equal(h->pubsub_domain, "pubsub.localhost");
    assert_string_equal(h->pubsub_node_creation, "anyone");
    assert_int_equal(h->pubsub_max_payload, 128 * 1024);
    assert_false(h->registration);
    assert_int_equal(h->registration_limit, 3);
    assert_int_equal(h->registration_window, 3600);
    config_free(cfg);
}

static void test_every_option(void **state)
{
    config_t *cfg = parse_ok("[server]\n"
                             "log_level = debug\n"
                             "data_dir = /srv/tern\n"
                             "storage = memory\n"
                             "storage_path = /tmp/x.db\n"
                             "listen = 0.0.0.0, ::\n"
                             "c2s_port = 0\n"
                             "c2s_tls_port = 65535\n"
                             "require_encryption = no\n"
                             "max_stanza_size = 64M\n"
                             "max_output_buffer = 1G\n"
                             "handshake_timeout = 2m\n"
                             "idle_timeout = 1h\n"
                             "sasl_iterations = 1000\n"
                             "auth_max_attempts = 5\n"
                             "auth_ip_limit = 0\n"
                             "auth_account_limit = 4294967295\n"
                             "auth_window = 30\n"
                             "max_connections_per_ip = 8\n"
                             "hide_version = yes\n"
                             "version_show_os = on\n"
                             "disabled_modules = ping, vcard\n"
                             "[host example.org]\n"
                             "certificate = /etc/tern/e.pem\n"
                             "key = /etc/tern/e.key\n"
                             "muc_domain = none\n"
                             "registration = true\n"
                             "registration_limit = 0\n"
                             "registration_window = 15m\n");
    assert_string_equal(cfg->log_level, "debug");
    assert_string_equal(cfg->data_dir, "/srv/tern");
    assert_string_equal(cfg->storage, "memory");
    assert_string_equal(cfg->storage_path, "/tmp/x.db");
    assert_string_equal(cfg->listen[0], "0.0.0.0");
    assert_string_equal(cfg->listen[1], "::");
    assert_null(cfg->listen[2]);
    assert_int_equal(cfg->c2s_port, 0);
    assert_int_equal(cfg->c2s_tls_port, 65535);
    assert_false(cfg->require_encryption);
    assert_int_equal(cfg->max_stanza_size, 64 << 20);
    assert_int_equal(cfg->max_output_buffer, 1 << 30);
    assert_int_equal(cfg->handshake_timeout, 120);
    assert_int_equal(cfg->idle_timeout, 3600);
    assert_int_equal(cfg->sasl_iterations, 1000);
    assert_int_equal(cfg->auth_max_attempts, 5);
    assert_int_equal(cfg->auth_ip_limit, 0);
    assert_int_equal(cfg->auth_account_limit, 4294967295u);
    assert_int_equal(cfg->auth_window, 30);
    assert_int_equal(cfg->max_connections_per_ip, 8);
    assert_true(cfg->hide_version);
    assert_true(cfg->version_show_os);
    assert_string_equal(cfg->disabled_modules[0], "ping");
    assert_string_equal(cfg->disabled_modules[1], "vcard");
    assert_null(cfg->disabled_modules[2]);
    const config_host_t *h = &cfg->hosts[0];
    assert_string_equal(h->certificate, "/etc/tern/e.pem");
    assert_string_equal(h->key, "/etc/tern/e.key");
    assert_string_equal(h->muc_domain, "none");
    assert_true(h->registration);
    assert_int_equal(h->registration_limit, 0);
    assert_int_equal(h->registration_window, 900);
    config_free(cfg);
}

static void test_sizes_and_durations(void **state)
{
    static const struct {
        const char *text;
        size_t want;
    } sizes[] = {
        {"1024", 1024},  {"1K", 1024},    {"1k", 1024},        {"300K", 300 * 1024},
        {"2M", 2 << 20}, {"1m", 1 << 20}, {"0064M", 64 << 20}, {"65536", 65536},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "max_stanza_size = %s\nmax_output_buffer = 1G\n[host a]\n",
                 sizes[i].text);
        config_t *cfg = parse_ok(text);
        assert_int_equal(cfg->max_stanza_size, sizes[i].want);
        config_free(cfg);
    }
    config_t *cfg = parse_ok("max_output_buffer = 1g\n[host a]\n");
    assert_int_equal(cfg->max_output_buffer, 1u << 30);
    config_free(cfg);

    static const struct {
        const char *text;
        unsigned want;
    } durations[] = {
        {"1", 1}, {"45s", 45}, {"3m", 180}, {"2h", 7200}, {"168h", 604800}, {"604800", 604800},
    };
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "idle_timeout = %s\n[host a]\n", durations[i].text);
        cfg = parse_ok(text);
        assert_int_equal(cfg->idle_timeout, durations[i].want);
        config_free(cfg);
    }
}

static void test_booleans(void **state)
{
    static const struct {
        const char *text;
        bool want;
    } cases[] = {
        {"yes", true},  {"no", false}, {"true", true},   {"false", false}, {"on", true},
        {"off", false}, {"YES", true}, {"False", false}, {"\"on\"", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "hide_version = %s\n[host a]\nregistration = %s\n",
                 cases[i].text, cases[i].text);
        config_t *cfg = parse_ok(text);
        assert_int_equal(cfg->hide_version, cases[i].want);
        assert_int_equal(cfg->hosts[0].registration, cases[i].want);
        config_free(cfg);
    }
}

static void test_quoting(void **state)
{
    config_t *cfg = parse_ok("\xEF\xBB\xBF# leading comment after a UTF-8 BOM\n"
                             "   # indented comment\n"
                             "\n"
                             "data_dir = \"/path with spaces/and # hash\"   # trailing\n"
                             "storage_path = \"q\\\"uote\\\\back\"\n"
                             "storage = a#b\n"
                             "log_level=warning # the canonical name is warn\r\n"
                             "\tlisten\t=\t\"::1\" ,127.0.0.1 # two\n"
                             "[ host  a ]   # comment after a header\n"
                             "certificate = \"\\\\srv\\\\a b.pem\\\"#x\"\n"
                             "key = plain value with spaces   \n");
    assert_string_equal(cfg->data_dir, "/path with spaces/and # hash");
    assert_string_equal(cfg->storage_path, "q\"uote\\back");
    /* '#' only starts a comment after whitespace. */
    assert_string_equal(cfg->storage, "a#b");
    assert_string_equal(cfg->log_level, "warn");
    assert_string_equal(cfg->listen[0], "::1");
    assert_string_equal(cfg->listen[1], "127.0.0.1");
    assert_null(cfg->listen[2]);
    assert_string_equal(cfg->hosts[0].domain, "a");
    assert_string_equal(cfg->hosts[0].certificate, "\\srv\\a b.pem\"#x");
    assert_string_equal(cfg->hosts[0].key, "plain value with spaces");
    config_free(cfg);
}

static void test_lists(void **state)
{
    config_t *cfg = parse_ok("listen = 127.0.0.1, ::1\n"
                             "disabled_modules = \"ping\",time ,  version  # comment\n"
                             "[host a]\n");
    assert_string_equal(cfg->listen[0], "127.0.0.1");
    assert_string_equal(cfg->listen[1], "::1");
    assert_null(cfg->listen[2]);
    assert_string_equal(cfg->disabled_modules[0], "ping");
    assert_string_equal(cfg->disabled_modules[1], "time");
    assert_string_equal(cfg->disabled_modules[2], "version");
    assert_null(cfg->disabled_modules[3]);
    config_free(cfg);

    cfg = parse_ok("listen = ::\ndisabled_modules =\n[host a]\n");
    assert_string_equal(cfg->listen[0], "::");
    assert_null(cfg->listen[1]);
    assert_null(cfg->disabled_modules[0]);
    config_free(cfg);
}

static void test_hosts(void **state)
{
    config_t *cfg = parse_ok("[host Example.ORG]\n"
                             "registration = yes\n"
                             "[host \"chat.example.net.\"]\n"
                             "key = /k\n"
                             "[host 127.0.0.1]  # an IP literal is a valid domainpart\n"
                             "[server]\n"
                             "data_dir = /d/\n");
    assert_int_equal(cfg->nhosts, 3);
    assert_string_equal(cfg->hosts[0].domain, "example.org");
    assert_true(cfg->hosts[0].registration);
    /* Derived after the whole file is read, so a later data_dir counts. */
    assert_string_equal(cfg->hosts[0].certificate, "/d/certs/example.org.crt");
    assert_string_equal(cfg->hosts[0].key, "/d/certs/example.org.key");
    assert_string_equal(cfg->storage_path, "/d/tern.db");
    assert_string_equal(cfg->hosts[1].domain, "chat.example.net");
    assert_false(cfg->hosts[1].registration);
    assert_string_equal(cfg->hosts[1].certificate, "/d/certs/chat.example.net.crt");
    assert_string_equal(cfg->hosts[1].key, "/k");
    assert_string_equal(cfg->hosts[2].domain, "127.0.0.1");

    assert_ptr_equal(config_find_host(cfg, "example.org"), &cfg->hosts[0]);
    assert_ptr_equal(config_find_host(cfg, "EXAMPLE.org"), &cfg->hosts[0]);
    assert_ptr_equal(config_find_host(cfg, "chat.example.net"), &cfg->hosts[1]);
    assert_null(config_find_host(cfg, "example.com"));
    assert_null(config_find_host(cfg, "org"));
    assert_null(config_find_host(NULL, "example.org"));
    assert_null(config_find_host(cfg, NULL));
    config_free(cfg);

    /* Non-ASCII passes through for IDNA to handle; ASCII is lowercased. */
    cfg = parse_ok("[host \"B\xC3\xBC"
                   "cher.example\"]\n");
    assert_string_equal(cfg->hosts[0].domain, "b\xC3\xBC"
                                              "cher.example");
    config_free(cfg);
}

static void test_implicit_server_section(void **state)
{
    config_t *cfg = parse_ok("c2s_port = 15222\n[host a]\n[server]\nc2s_tls_port = 0\n");
    assert_int_equal(cfg->c2s_port, 15222);
    assert_int_equal(cfg->c2s_tls_port, 0);
    config_free(cfg);

    /* The same option may appear once in each host. */
    cfg = parse_ok("[host a]\nregistration = yes\n[host b]\nregistration = yes\n");
    assert_true(cfg->hosts[0].registration && cfg->hosts[1].registration);
    config_free(cfg);
}

static void test_modules(void **state)
{
    config_t *cfg = parse_ok("disabled_modules = ping, version\n[host a]\n");
    assert_false(config_module_enabled(cfg, "ping"));
    assert_false(config_module_enabled(cfg, "version"));
    assert_true(config_module_enabled(cfg, "roster"));
    assert_true(config_module_enabled(cfg, "pin"));
    config_free(cfg);
    cfg = parse_ok("[host a]\n");
    assert_true(config_module_enabled(cfg, "ping"));
    config_free(cfg);
    config_free(NULL);
}

static void test_errors_syntax(void **state)
{
    expect_error("data_dir var\n[host a]\n", "t.conf:1: missing '=' after 'data_dir'");
    expect_error("[host a]\n\n= x\n", "t.conf:3: missing option name before '='");
    expect_error("data_dir = \"var\n[host a]\n", "t.conf:1: unterminated quoted string");
    expect_error("data_dir = \"var\\\"\n[host a]\n", "t.conf:1: unterminated quoted string");
    expect_error("data_dir = \"a\\nb\"\n",
                 "t.conf:1: invalid escape '\\n' in quoted string (only \\\" and \\\\ are "
                 "allowed)");
    expect_error("data_dir = \"a\" b\n", "t.conf:1: unexpected text after closing quote");
    expect_error("data_dir = \"a\",\"b\"\n", "t.conf:1: unexpected text after closing quote");
    expect_error("data_dir =\n", "t.conf:1: missing value for 'data_dir'");
    expect_error("data_dir = # nothing\n", "t.conf:1: missing value for 'data_dir'");
    expect_error("data_dir = \"\"\n", "t.conf:1: missing value for 'data_dir'");
    expect_error("[frob]\n", "t.conf:1: unknown section 'frob' (use [server] or [host NAME])");
    expect_error("[Server]\n", "t.conf:1: unknown section 'Server' (use [server] or [host NAME])");
    expect_error("[server\n", "t.conf:1: missing ']' in section header");
    expect_error("[server] x\n", "t.conf:1: unexpected text after section header");
    expect_error("[host]\n", "t.conf:1: missing domain name in [host] section header");
    expect_error("[host a\n", "t.conf:1: missing ']' in section header");
    expect_error("[host a b]\n", "t.conf:1: unexpected text after host name in section header");
    expect_error("[host \"a\" b]\n", "t.conf:1: unexpected text in section header");
    expect_error("[host \"a]\n", "t.conf:1: unterminated quoted string");
}

static void test_errors_unknown(void **state)
{
    expect_error("foo = 1\n[host a]\n", "t.conf:1: unknown option 'foo' in [server]");
    expect_error("[host a]\n[server]\nfoo = 1\n", "t.conf:3: unknown option 'foo' in [server]");
    expect_error("[host A.b]\nfoo = 1\n", "t.conf:2: unknown option 'foo' in [host a.b]");
    expect_error("certificate = x\n[host a]\n",
                 "t.conf:1: unknown option 'certificate' in [server] (it belongs in a [host "
                 "NAME] section)");
    expect_error("[host a]\nlisten = ::1\n",
                 "t.conf:2: unknown option 'listen' in [host a] (it belongs in [server])");
    expect_error("Log_Level = info\n", "t.conf:1: unknown option 'Log_Level' in [server]");
}

static void test_errors_values(void **state)
{
    expect_error("c2s_port = abc\n", "t.conf:1: invalid number 'abc' for 'c2s_port'");
    expect_error("c2s_port = -1\n", "t.conf:1: invalid number '-1' for 'c2s_port'");
    expect_error("c2s_port = +1\n", "t.conf:1: invalid number '+1' for 'c2s_port'");
    expect_error("c2s_port = 1K\n", "t.conf:1: invalid number '1K' for 'c2s_port'");
    expect_error("c2s_port = 99999999999999999999999\n",
                 "t.conf:1: invalid number '99999999999999999999999' for 'c2s_port'");
    expect_error("c2s_port = 65536\n",
                 "t.conf:1: c2s_port must be between 0 and 65535 (got 65536)");
    expect_error("c2s_tls_port = 70000\n",
                 "t.conf:1: c2s_tls_port must be between 0 and 65535 (got 70000)");
    expect_error("auth_ip_limit = 4294967296\n",
                 "t.conf:1: auth_ip_limit must be between 0 and 4294967295 (got 4294967296)");
    expect_error("require_encryption = maybe\n",
                 "t.conf:1: invalid boolean 'maybe' for 'require_encryption' (use yes/no, "
                 "true/false or on/off)");
    expect_error("[host a]\nregistration = 1\n",
                 "t.conf:2: invalid boolean '1' for 'registration' (use yes/no, true/false or "
                 "on/off)");
    expect_error("max_stanza_size = 10X\n",
                 "t.conf:1: invalid size '10X' for 'max_stanza_size' (use a number with an "
                 "optional K, M or G suffix)");
    expect_error("max_stanza_size = 10KB\n",
                 "t.conf:1: invalid size '10KB' for 'max_stanza_size' (use a number with an "
                 "optional K, M or G suffix)");
    expect_error("max_stanza_size = 99999999999G\n",
                 "t.conf:1: invalid size '99999999999G' for 'max_stanza_size' (use a number "
                 "with an optional K, M or G suffix)");
    expect_error("max_stanza_size = 1023\n",
                 "t.conf:1: max_stanza_size must be between 1K and 64M (got 1023)");
    expect_error("max_stanza_size = 65M\n",
                 "t.conf:1: max_stanza_size must be between 1K and 64M (got 65M)");
    expect_error("idle_timeout = 5w\n",
                 "t.conf:1: invalid duration '5w' for 'idle_timeout' (use a number of seconds "
                 "with an optional s, m, h or d suffix)");
    /* days are a duration unit, bounded by each option's range */
    expect_error("idle_timeout = 8d\n",
                 "t.conf:1: idle_timeout must be between 1s and 7d (got 8d)");
    expect_error("idle_timeout = 0\n", "t.conf:1: idle_timeout must be between 1s and 7d (got 0)");
    expect_error("[host a]\nregistration_window = 169h\n",
                 "t.conf:2: registration_window must be between 1s and 7d (got 169h)");
    expect_error("sasl_iterations = 999\n",
                 "t.conf:1: sasl_iterations must be between 1000 and 10000000; RFC 7677 "
                 "recommends at least 4096 (got 999)");
    expect_error("auth_max_attempts = 0\n",
                 "t.conf:1: auth_max_attempts must be between 1 and 5; RFC 6120 6.4.5 suggests "
                 "2 to 5 (got 0)");
    expect_error("auth_max_attempts = 6\n",
                 "t.conf:1: auth_max_attempts must be between 1 and 5; RFC 6120 6.4.5 suggests "
                 "2 to 5 (got 6)");
    expect_error("log_level = loud\n",
                 "t.conf:1: invalid log level 'loud' (use error, warn, info or debug)");
    expect_error("log_level = INFO\n",
                 "t.conf:1: invalid log level 'INFO' (use error, warn, info or debug)");
    expect_error("listen =\n", "t.conf:1: 'listen' needs at least one address");
    expect_error("listen = 1.2.3.4,\n", "t.conf:1: empty element in list for 'listen'");
    expect_error("listen = 1.2.3.4,,::1\n", "t.conf:1: empty element in list for 'listen'");
    expect_error("listen = localhost\n",
                 "t.conf:1: invalid address 'localhost' for 'listen' (use an IPv4 or IPv6 "
                 "address)");
    expect_error("listen = ::1, ::1\n", "t.conf:1: address '::1' listed twice in 'listen'");
    expect_error("disabled_modules = a b\n",
                 "t.conf:1: invalid module name 'a b' in 'disabled_modules'");
}

static void test_errors_structure(void **state)
{
    expect_error("data_dir = a\n\ndata_dir = b\n[host a]\n",
                 "t.conf:3: duplicate option 'data_dir' in [server] (first set at line 1)");
    expect_error("data_dir = a\n[server]\ndata_dir = b\n",
                 "t.conf:3: duplicate option 'data_dir' in [server] (first set at line 1)");
    expect_error("[host a]\nregistration = yes\nregistration = no\n",
                 "t.conf:3: duplicate option 'registration' in [host a] (first set at line 2)");
    expect_error("[host a]\n[host b]\n[host A.]\n",
                 "t.conf:3: duplicate host 'a' (first defined at line 1)");
    expect_error("[host Bad_Name]\n", "t.conf:1: invalid host name 'Bad_Name': invalid character");
    expect_error("[host user@example.org]\n",
                 "t.conf:1: invalid host name 'user@example.org': invalid character");
    expect_error("[host -a.org]\n",
                 "t.conf:1: invalid host name '-a.org': label starts or ends with '-'");
    expect_error("[host a..org]\n", "t.conf:1: invalid host name 'a..org': empty label");
    expect_error("[host .]\n", "t.conf:1: invalid host name '.': empty label");
    expect_error("[host \"\"]\n", "t.conf:1: invalid host name '': empty name");
    expect_error("[host "
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org]\n",
                 "t.conf:1: invalid host name "
                 "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa': label "
                 "longer than 63 characters");
    expect_error("", "t.conf: no virtual host configured (add a [host example.org] section)");
    expect_error("# only comments\n[server]\nc2s_port = 1\n",
                 "t.conf: no virtual host configured (add a [host example.org] section)");
    expect_error("c2s_port = 5000\n[host a]\n[server]\nc2s_tls_port = 5000\n",
                 "t.conf:4: c2s_port and c2s_tls_port are both 5000");
    expect_error("c2s_tls_port = 5222\n[host a]\n",
                 "t.conf:1: c2s_port and c2s_tls_port are both 5222");
    expect_error("max_stanza_size = 2M\n[host a]\n",
                 "t.conf:1: max_output_buffer (1048576) must be at least max_stanza_size "
                 "(2097152)");
    /* The first error wins; later lines are not looked at. */
    expect_error("foo = 1\nbar = 2\n", "t.conf:1: unknown option 'foo' in [server]");
}

static void test_error_buffer(void **state)
{
    char err[12];
    memset(err, 'x', sizeof(err));
    assert_null(config_parse("foo = 1\n", "a-long-file-name.conf", err, sizeof(err)));
    assert_int_equal(strnlen(err, sizeof(err)), sizeof(err) - 1);
    assert_null(config_parse("foo = 1\n", "t.conf", NULL, 0));
    char small[1] = {'x'};
    assert_null(config_parse("foo = 1\n", "t.conf", small, sizeof(small)));
    assert_int_equal(small[0], '\0');
}

typedef struct {
    char dir[64];
    char path[128];
} tmp_t;

static int tmp_setup(void **state)
{
    tmp_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/tern-config-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/tern.conf", t->dir);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    tmp_t *t = *state;
    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_write_default_round_trip(void **state)
{
    tmp_t *t = *state;
    char err[512] = "";
    assert_int_equal(config_write_default(t->path, "LocalHost", err, sizeof(err)), 0);
    assert_string_equal(err, "");

    config_t *cfg = config_load(t->path, err, sizeof(err));
    if (!cfg)
        fail_msg("generated file does not load: %s", err);
    config_t *def = parse_ok("[host localhost]\n");
    assert_string_equal(cfg->log_level, def->log_level);
    assert_string_equal(cfg->data_dir, def->data_dir);
    assert_string_equal(cfg->storage, def->storage);
    assert_string_equal(cfg->storage_path, def->storage_path);
    assert_string_equal(cfg->listen[0], def->listen[0]);
    assert_null(cfg->listen[1]);
    assert_int_equal(cfg->c2s_port, def->c2s_port);
    assert_int_equal(cfg->c2s_tls_port, def->c2s_tls_port);
    assert_int_equal(cfg->require_encryption, def->require_encryption);
    assert_int_equal(cfg->max_stanza_size, def->max_stanza_size);
    assert_int_equal(cfg->max_output_buffer, def->max_output_buffer);
    assert_int_equal(cfg->handshake_timeout, def->handshake_timeout);
    assert_int_equal(cfg->idle_timeout, def->idle_timeout);
    assert_int_equal(cfg->sasl_iterations, def->sasl_iterations);
    assert_int_equal(cfg->auth_max_attempts, def->auth_max_attempts);
    assert_int_equal(cfg->auth_ip_limit, def->auth_ip_limit);
    assert_int_equal(cfg->auth_account_limit, def->auth_account_limit);
    assert_int_equal(cfg->auth_window, def->auth_window);
    assert_int_equal(cfg->max_connections_per_ip, def->max_connections_per_ip);
    assert_int_equal(cfg->hide_version, def->hide_version);
    assert_int_equal(cfg->version_show_os, def->version_show_os);
    assert_null(cfg->disabled_modules[0]);
    assert_int_equal(cfg->nhosts, 1);
    assert_string_equal(cfg->hosts[0].domain, "localhost");
    assert_string_equal(cfg->hosts[0].certificate, def->hosts[0].certificate);
    assert_string_equal(cfg->hosts[0].key, def->hosts[0].key);
    assert_int_equal(cfg->hosts[0].registration, def->hosts[0].registration);
    assert_int_equal(cfg->hosts[0].registration_limit, def->hosts[0].registration_limit);
    assert_int_equal(cfg->hosts[0].registration_window, def->hosts[0].registration_window);
    config_free(def);
    config_free(cfg);

    /* Uncommenting every option must also load: the shown values are
     * the defaults in valid syntax. */
    FILE *f = fopen(t->path, "r");
    assert_non_null(f);
    char text[32768];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    assert_non_null(strstr(text, "[host localhost]"));
    static const char *const keys[] = {
        "log_level",
        "data_dir",
        "storage",
        "storage_path",
        "listen",
        "c2s_port",
        "c2s_tls_port",
        "require_encryption",
        "max_stanza_size",
        "max_output_buffer",
        "handshake_timeout",
        "idle_timeout",
        "sasl_iterations",
        "auth_max_attempts",
        "auth_ip_limit",
        "auth_account_limit",
        "auth_window",
        "max_connections_per_ip",
        "hide_version",
        "version_show_os",
        "disabled_modules",
        "certificate",
        "key",
        "registration",
        "registration_limit",
        "registration_window",
    };
    char uncommented[32768];
    size_t o = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (line[0] == '#' && line[1] != ' ' && line[1] != '\n')
            line++, n--;
        memcpy(uncommented + o, line, n);
        o += n;
        line += n;
    }
    uncommented[o] = '\0';
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\n%s =", keys[i]);
        if (!strstr(uncommented, needle))
            fail_msg("option %s missing from the generated file", keys[i]);
    }
    cfg = config_parse(uncommented, "uncommented", err, sizeof(err));
    if (!cfg)
        fail_msg("uncommented default does not load: %s", err);
    assert_string_equal(cfg->hosts[0].certificate, "var/certs/localhost.crt");
    config_free(cfg);

    /* Never overwrites. */
    assert_int_not_equal(config_write_default(t->path, "localhost", err, sizeof(err)), 0);
    char want[256];
    snprintf(want, sizeof(want), "%s: already exists; not overwriting it", t->path);
    assert_string_equal(err, want);
}

static void test_write_default_bad_domain(void **state)
{
    tmp_t *t = *state;
    char err[512];
    assert_int_not_equal(config_write_default(t->path, "bad domain", err, sizeof(err)), 0);
    char want[256];
    snprintf(want, sizeof(want), "%s: invalid domain 'bad domain': invalid character", t->path);
    assert_string_equal(err, want);
    assert_int_not_equal(access(t->path, F_OK), 0);
}

static void test_load(void **state)
{
    tmp_t *t = *state;
    char err[512];
    char want[256];

    assert_null(config_load(t->path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", t->path);
    assert_string_equal(err, want);

    assert_null(config_load(t->dir, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: not a regular file", t->dir);
    assert_string_equal(err, want);

    static const char nul[] = "[host a]\nc2s_port = 1\0\n";
    write_file(t->path, nul, sizeof(nul) - 1);
    assert_null(config_load(t->path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:2: NUL byte in file", t->path);
    assert_string_equal(err, want);

    static const char bad[] = "[host a]\r\nregistration = on\r\nfoo = 2\r\n";
    write_file(t->path, bad, sizeof(bad) - 1);
    assert_null(config_load(t->path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:3: unknown option 'foo' in [host a]", t->path);
    assert_string_equal(err, want);

    static const char good[] = "c2s_port = 1\n[host a]\n";
    write_file(t->path, good, sizeof(good) - 1);
    config_t *cfg = config_load(t->path, err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(cfg->c2s_port, 1);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_sizes_and_durations),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_implicit_server_section),
        cmocka_unit_test(test_modules),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_unknown),
        cmocka_unit_test(test_errors_values),
        cmocka_unit_test(test_errors_structure),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test_setup_teardown(test_write_default_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_write_default_bad_domain, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_load, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
