/* SPDX-License-Identifier: MIT
 * ternctl.c - the administration command: account management.
 *
 * ternctl reads the server's configuration file and opens the storage
 * driver directly (no event loop, no storage thread), so it works with or
 * without a running server: SQLite's WAL mode and busy timeout let both
 * write the same database. Passwords are read from the terminal without
 * echo, or as one line from standard input when it is not a terminal, and
 * are wiped from memory as soon as the SCRAM credentials are derived; the
 * database never sees them. Exit status: 0 success, 1 error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/common.h"
#include "core/config.h"
#include "core/log.h"
#include "sasl/scram.h"
#include "storage/storage.h"
#include "xmpp/jid.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

#define DEFAULT_CONFIG "var/tern.conf"
#define PASSWORD_MAX   1024

typedef struct {
    const char *config_path;
    config_t *cfg;
    const storage_driver_t *drv;
    storage_db_t *db;
} ctl_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ternctl [-c CONFIG] COMMAND\n"
            "\n"
            "commands:\n"
            "  user add JID        create an account\n"
            "  user del JID        delete an account and all its data\n"
            "  user passwd JID     set an account's password\n"
            "  user list [DOMAIN]  list accounts, one bare JID per line\n"
            "  user bulk-add FMT COUNT\n"
            "                      benchmarks only: create COUNT accounts from FMT, a bare\n"
            "                      JID with one %%d (e.g. user%%d@localhost) numbered\n"
            "                      0..COUNT-1, all with the same password and salt\n"
            "\n"
            "Passwords are prompted for on a terminal, otherwise read as one line\n"
            "from standard input. CONFIG defaults to $TERN_CONFIG, else " DEFAULT_CONFIG ".\n");
}

/* Creates every missing directory of path, like mkdir -p. */
static int mkdir_p(const char *path)
{
    char *p = tern_xstrdup(path);
    int ret = 0;
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        /* 0700: the directory holds the account database and TLS keys. */
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "ternctl: cannot create directory %s: %s\n", p, strerror(errno));
            ret = -1;
            break;
        }
        if (end)
            break;
        *s = '/';
    }
    free(p);
    return ret;
}

static int open_storage(ctl_t *c)
{
    const config_t *cfg = c->cfg;
    c->drv = storage_driver_find(cfg->storage);
    if (!c->drv) {
        fprintf(stderr, "ternctl: %s: unknown storage driver '%s'\n", c->config_path,
                cfg->storage ? cfg->storage : "");
        return -1;
    }
    /* Only SQLite's DSN is a file path whose directory we may create. */
    if (strcmp(c->drv->name, "sqlite") == 0) {
        const char *slash = strrchr(cfg->storage_path, '/');
        if (slash && slash != cfg->storage_path) {
            char *dir = tern_xstrndup(cfg->storage_path, (size_t)(slash - cfg->storage_path));
            int rc = mkdir_p(dir);
            free(dir);
            if (rc != 0)
                return -1;
        }
    }
    char err[512] = "";
    c->db = c->drv->open(cfg->storage_path, err, sizeof(err));
    if (!c->db) {
        fprintf(stderr, "ternctl: %s\n", err[0] ? err : "cannot open storage");
        return -1;
    }
    return 0;
}

/* Parses an account address: a localpart is required, a resource refused,
 * and the domain must be one this server hosts. */
static int parse_account(const ctl_t *c, const char *arg, jid_t *jid)
{
    if (jid_parse(arg, jid) != 0) {
        fprintf(stderr, "ternctl: invalid JID '%s'\n", arg);
        return -1;
    }
    const char *why = NULL;
    if (!jid->local)
        why = "an account JID needs a localpart (user@domain)";
    else if (jid->resource)
        why = "an account JID must not have a resource";
    if (why) {
        fprintf(stderr, "ternctl: %s: %s\n", arg, why);
        jid_clear(jid);
        return -1;
    }
    if (!config_find_host(c->cfg, jid->domain)) {
        fprintf(stderr, "ternctl: %s: %s is not a host in %s\n", arg, jid->domain, c->config_path);
        jid_clear(jid);
        return -1;
    }
    return 0;
}

/* An empty handler: the signals it catches are delivered only inside
 * ppoll, which then fails with EINTR, so the terminal's echo is restored
 * before exit instead of being left off. */
static void interrupt_read(int sig)
{
}

/* Reads one line from fd byte by byte, so that nothing past the newline is
 * consumed and no copy of the password lingers in a stdio buffer. With
 * waitmask, each byte is first waited for in ppoll with that signal mask,
 * so that signals blocked elsewhere interrupt the wait without a race.
 * Returns the length, -1 on EOF before any byte, -2 on error (errno set),
 * -3 if the line does not fit. */
static long read_line(int fd, char *buf, size_t cap, const sigset_t *waitmask)
{
    size_t n = 0;
    for (;;) {
        if (waitmask) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (ppoll(&pfd, 1, NULL, waitmask) < 0)
                return -2;
        }
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0)
            return -2;
        if (r == 0) {
            if (n == 0)
                return -1;
            break;
        }
        if (ch == '\n')
            break;
        if (n + 1 >= cap) {
            buf[0] = '\0';
            return -3;
        }
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

static const int prompt_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP};

static long prompt_noecho(const char *prompt, char *buf, size_t cap)
{
    struct termios saved, quiet;
    if (tcgetattr(STDIN_FILENO, &saved) != 0)
        return -2;
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL; /* the user still sees the Enter key */

    /* Blocked from here to the end, and let through only while waiting for
     * input, so a signal cannot slip in between installing the handler and
     * the read and be lost. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    for (size_t i = 0; i < TERN_ARRAY_LEN(prompt_signals); i++)
        sigaddset(&block, prompt_signals[i]);
    sigprocmask(SIG_BLOCK, &block, &waitmask);

    struct sigaction sa, old[TERN_ARRAY_LEN(prompt_signals)];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = interrupt_read;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < TERN_ARRAY_LEN(prompt_signals); i++)
        sigaction(prompt_signals[i], &sa, &old[i]);

    long n = -2;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0) {
        fputs(prompt, stderr);
        fflush(stderr);
        n = read_line(STDIN_FILENO, buf, cap, &waitmask);
        int saved_errno = errno;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        errno = saved_errno;
    }
    int saved_errno = errno;
    for (size_t i = 0; i < TERN_ARRAY_LEN(prompt_signals); i++)
        sigaction(prompt_signals[i], &old[i], NULL);
    sigprocmask(SIG_SETMASK, &waitmask, NULL);
    errno = saved_errno;
    if (n == -2 && errno == EINTR)
        fputc('\n', stderr); /* the interrupted line had no newline echoed */
    return n;
}

static int password_error(long n)
{
    if (n == -1)
        fprintf(stderr, "ternctl: no password given\n");
    else if (n == -3)
        fprintf(stderr, "ternctl: password too long (at most %d bytes)\n", PASSWORD_MAX - 1);
    else if (errno == EINTR)
        fprintf(stderr, "ternctl: interrupted\n");
    else
        fprintf(stderr, "ternctl: cannot read password: %s\n", strerror(errno));
    return -1;
}

/* Fills pw (PASSWORD_MAX bytes) with the new password; the caller wipes
 * it. On a terminal the password is asked twice. */
static int read_password(char *pw)
{
    long n;
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX];
        n = prompt_noecho("Password: ", pw, PASSWORD_MAX);
        if (n < 0)
            return password_error(n);
        long m = 0;
        if (n > 0) {
            m = prompt_noecho("Retype password: ", again, sizeof(again));
            if (m < 0) {
                explicit_bzero(again, sizeof(again));
                return password_error(m);
            }
        }
        bool same = n == 0 || strcmp(pw, again) == 0;
        explicit_bzero(again, sizeof(again));
        if (!same) {
            fprintf(stderr, "ternctl: passwords do not match\n");
            return -1;
        }
    } else {
        n = read_line(STDIN_FILENO, pw, PASSWORD_MAX, NULL);
        if (n < 0)
            return password_error(n);
    }
    if (strlen(pw) != (size_t)n) {
        fprintf(stderr, "ternctl: password contains a NUL byte\n");
        return -1;
    }
    if (n == 0) {
        fprintf(stderr, "ternctl: empty password refused\n");
        return -1;
    }
    return 0;
}

/* Reads a password and derives its SCRAM credentials; the plaintext does
 * not outlive this function. */
static int new_credentials(const ctl_t *c, scram_creds_t *creds)
{
    char pw[PASSWORD_MAX];
    int ret = read_password(pw);
    if (ret == 0 && scram_creds_from_password(pw, c->cfg->sasl_iterations, creds) != 0) {
        fprintf(stderr, "ternctl: cannot derive credentials\n");
        ret = -1;
    }
    explicit_bzero(pw, sizeof(pw));
    return ret;
}

static int report_storage_error(int rc, const jid_t *jid)
{
    if (rc == TERN_EEXIST)
        fprintf(stderr, "ternctl: user %s@%s already exists\n", jid->local, jid->domain);
    else if (rc == TERN_ENOENT)
        fprintf(stderr, "ternctl: user %s@%s does not exist\n", jid->local, jid->domain);
    else
        fprintf(stderr, "ternctl: storage error for %s@%s\n", jid->local, jid->domain);
    return EXIT_ERR;
}

typedef enum { ACT_ADD, ACT_DEL, ACT_PASSWD } account_action_t;

static int cmd_account(ctl_t *c, account_action_t act, const char *arg)
{
    jid_t jid;
    if (parse_account(c, arg, &jid) != 0)
        return EXIT_ERR;
    if (open_storage(c) != 0) {
        jid_clear(&jid);
        return EXIT_ERR;
    }
    int rc;
    if (act == ACT_DEL) {
        rc = c->drv->user_delete(c->db, jid.domain, jid.local);
    } else {
        scram_creds_t creds;
        /* Checked before prompting, so nobody types a password for nothing;
         * create still reports a concurrent creation as EEXIST. */
        rc = c->drv->user_get(c->db, jid.domain, jid.local, &creds);
        explicit_bzero(&creds, sizeof(creds));
        if (act == ACT_ADD && rc == 0)
            rc = TERN_EEXIST;
        else if (act == ACT_ADD && rc == TERN_ENOENT)
            rc = 0;
        if (rc == 0) {
            if (new_credentials(c, &creds) != 0) {
                explicit_bzero(&creds, sizeof(creds));
                jid_clear(&jid);
                return EXIT_ERR;
            }
            if (act == ACT_ADD)
                rc = c->drv->user_create(c->db, jid.domain, jid.local, &creds);
            else
                rc = c->drv->user_set_creds(c->db, jid.domain, jid.local, &creds);
            explicit_bzero(&creds, sizeof(creds));
        }
    }
    int status = rc == 0 ? EXIT_OK : report_storage_error(rc, &jid);
    jid_clear(&jid);
    return status;
}

#define BULK_MAX 10000000UL

/* Splits a bulk-add format at its only "%d" into prefix and suffix (in
 * place); any other '%' is refused so a typo cannot name odd accounts. */
static int split_format(char *fmt, const char **prefix, const char **suffix)
{
    char *mark = strstr(fmt, "%d");
    if (!mark || strchr(mark + 2, '%') || memchr(fmt, '%', (size_t)(mark - fmt))) {
        fprintf(stderr, "ternctl: format '%s' needs exactly one %%d and no other %%\n", fmt);
        return -1;
    }
    *mark = '\0';
    *prefix = fmt;
    *suffix = mark + 2;
    return 0;
}

/* Benchmark setup: thousands of accounts in seconds. The password is read
 * and PBKDF2 run once, so every account shares one salt and one set of
 * SCRAM keys: fine for load tests, wrong for real users, which is why
 * "user add" derives a fresh salt per account. Stops at the first account
 * that cannot be created (e.g. one that exists already). */
static int cmd_bulk_add(ctl_t *c, const char *fmt_arg, const char *count_arg)
{
    char *end;
    errno = 0;
    unsigned long count = strtoul(count_arg, &end, 10);
    if (errno || end == count_arg || *end || count_arg[0] == '-' || count > BULK_MAX) {
        fprintf(stderr, "ternctl: count must be a number from 0 to %lu\n", BULK_MAX);
        return EXIT_ERR;
    }
    char *fmt = tern_xstrdup(fmt_arg);
    const char *prefix, *suffix;
    int status = EXIT_ERR;
    scram_creds_t creds;
    if (split_format(fmt, &prefix, &suffix) != 0 || open_storage(c) != 0 ||
        new_credentials(c, &creds) != 0)
        goto out;
    status = EXIT_OK;
    for (unsigned long i = 0; i < count && status == EXIT_OK; i++) {
        char addr[1024];
        jid_t jid;
        if ((size_t)snprintf(addr, sizeof(addr), "%s%lu%s", prefix, i, suffix) >= sizeof(addr)) {
            fprintf(stderr, "ternctl: format '%s' is too long\n", fmt_arg);
            status = EXIT_ERR;
            break;
        }
        if (parse_account(c, addr, &jid) != 0) {
            status = EXIT_ERR;
            break;
        }
        int rc = c->drv->user_create(c->db, jid.domain, jid.local, &creds);
        if (rc != 0)
            status = report_storage_error(rc, &jid);
        jid_clear(&jid);
    }
out:
    explicit_bzero(&creds, sizeof(creds));
    free(fmt);
    return status;
}

typedef struct {
    char **jids;
    size_t n, cap;
} jid_list_t;

static void collect_jid(void *ud, const char *host, const char *user)
{
    jid_list_t *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->jids = tern_xrealloc(l->jids, l->cap * sizeof(*l->jids));
    }
    size_t len = strlen(user) + 1 + strlen(host) + 1;
    char *s = tern_xmalloc(len);
    snprintf(s, len, "%s@%s", user, host);
    l->jids[l->n++] = s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_list(ctl_t *c, const char *domain_arg)
{
    char *domain = NULL;
    if (domain_arg) {
        if (jid_prep_domain(domain_arg, &domain) != 0) {
            fprintf(stderr, "ternctl: invalid domain '%s'\n", domain_arg);
            return EXIT_ERR;
        }
        /* Still listed: accounts may remain from a host since removed. */
        if (!config_find_host(c->cfg, domain))
            fprintf(stderr, "ternctl: warning: %s is not a host in %s\n", domain, c->config_path);
    }
    if (open_storage(c) != 0) {
        free(domain);
        return EXIT_ERR;
    }
    jid_list_t l = {0};
    int rc = c->drv->user_list(c->db, domain, collect_jid, &l);
    free(domain);
    int status = EXIT_OK;
    if (rc != 0) {
        fprintf(stderr, "ternctl: cannot list accounts: storage error\n");
        status = EXIT_ERR;
    } else {
        /* Plain byte order of the whole bare JID, as sort(1) in the C
         * locale would give, whatever order the driver uses. */
        if (l.n > 1)
            qsort(l.jids, l.n, sizeof(*l.jids), cmp_str);
        for (size_t i = 0; i < l.n; i++)
            puts(l.jids[i]);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.jids[i]);
    free(l.jids);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ternctl: write error: %s\n", strerror(errno));
        status = EXIT_ERR;
    }
    return status;
}

static int run_user(ctl_t *c, int argc, char **argv)
{
    if (argc < 1)
        return -1;
    const char *sub = argv[0];
    if (strcmp(sub, "list") == 0) {
        if (argc > 2)
            return -1;
        return cmd_list(c, argc == 2 ? argv[1] : NULL);
    }
    if (strcmp(sub, "bulk-add") == 0)
        return argc == 3 ? cmd_bulk_add(c, argv[1], argv[2]) : -1;
    if (argc != 2)
        return -1;
    if (strcmp(sub, "add") == 0)
        return cmd_account(c, ACT_ADD, argv[1]);
    if (strcmp(sub, "del") == 0)
        return cmd_account(c, ACT_DEL, argv[1]);
    if (strcmp(sub, "passwd") == 0)
        return cmd_account(c, ACT_PASSWD, argv[1]);
    return -1;
}

int main(int argc, char **argv)
{
    ctl_t c = {0};
    c.config_path = getenv("TERN_CONFIG");
    if (!c.config_path || !c.config_path[0])
        c.config_path = DEFAULT_CONFIG;

    int opt;
    /* '+': options end at the command, so JIDs starting with '-' are safe
     * to pass after it. */
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            c.config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1 || strcmp(argv[0], "user") != 0) {
        if (argc >= 1 && strcmp(argv[0], "help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        usage(stderr);
        return EXIT_USAGE;
    }
    /* Validate the command line before touching the configuration, so a
     * typo is reported as such even when the config is broken. */
    static const struct {
        const char *name;
        int min_args, max_args; /* after "user NAME" */
    } subs[] = {{"add", 1, 1}, {"del", 1, 1}, {"passwd", 1, 1}, {"list", 0, 1}, {"bulk-add", 2, 2}};
    bool valid = false;
    for (size_t i = 0; argc >= 2 && i < TERN_ARRAY_LEN(subs); i++)
        valid = valid || (strcmp(argv[1], subs[i].name) == 0 && argc - 2 >= subs[i].min_args &&
                          argc - 2 <= subs[i].max_args);
    if (!valid) {
        usage(stderr);
        return EXIT_USAGE;
    }

    /* Informational lines (e.g. a schema migration) are noise here. */
    log_set_level(LOG_WARN);

    char err[512] = "";
    c.cfg = config_load(c.config_path, err, sizeof(err));
    if (!c.cfg) {
        fprintf(stderr, "ternctl: %s\n", err[0] ? err : c.config_path);
        return EXIT_ERR;
    }
    int status = run_user(&c, argc - 1, argv + 1);
    if (status < 0) {
        usage(stderr);
        status = EXIT_USAGE;
    }
    if (c.db)
        c.drv->close(c.db);
    config_free(c.cfg);
    return status;
}
