/*
 * tlsfloor: what one TLS 1.3 full handshake costs a server that does nothing
 * else, with the TLS settings Tern uses (ECDSA P-256 certificate, X25519,
 * AES-128-GCM, one session ticket, no session cache).
 *
 * Why: Tern's login figure (TLS + SCRAM + bind) cannot drop below what OpenSSL
 * alone spends on the handshake plus the kernel's TCP set-up and tear-down.
 * This program measures that floor on the same machine, so the benchmark
 * report can say how much of a login is Tern's own.
 *
 * A forked server process pinned to one CPU accepts connections on loopback
 * one at a time, completes the handshake, reads one byte and answers one byte
 * (so the ticket and the first records are really exchanged), then closes.
 * The client runs in the parent on another CPU with CONCURRENCY connections in
 * flight (non-blocking, poll) so the server never waits for it. The server
 * reports its own CPU time (getrusage: user + system) per handshake.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONCURRENCY 16

static void die(const char *what)
{
    fprintf(stderr, "tlsfloor: %s: %s\n", what, errno ? strerror(errno) : "failed");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (cpu >= 0 && sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A fresh self-signed ECDSA P-256 certificate, like the one bench/run shares
 * between the three servers. */
static SSL_CTX *server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    if (key == NULL || cert == NULL)
        die("key generation");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    X509_set_pubkey(cert, key);
    if (!X509_sign(cert, key, EVP_sha256()))
        die("X509_sign");

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !SSL_CTX_use_certificate(ctx, cert) || !SSL_CTX_use_PrivateKey(ctx, key) ||
        !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384"))
        die("server SSL_CTX");
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

/* Blocking, one connection at a time: the simplest server there is. */
static void serve(int lfd, long count, int cpu_index, int report_fd)
{
    pin(cpu_index);
    SSL_CTX *ctx = server_ctx();
    double cpu0 = 0, wall0 = 0;
    for (long i = 0; i < count; i++) {
        if (i == count / 10) { /* the first tenth warms caches and allocators */
            cpu0 = cpu_seconds();
            wall0 = now();
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            die("accept");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        char byte;
        if (SSL_accept(ssl) != 1 || SSL_read(ssl, &byte, 1) != 1 || SSL_write(ssl, &byte, 1) != 1)
            die("server handshake");
        SSL_free(ssl);
        close(fd);
    }
    long measured = count - count / 10;
    double cpu = cpu_seconds() - cpu0, wall = now() - wall0;
    dprintf(report_fd, "%ld %.6f %.6f\n", measured, cpu, wall);
    SSL_CTX_free(ctx);
}

enum { IDLE, CONNECTING, HANDSHAKE, READING };

struct client {
    int fd;
    int state;
    SSL *ssl;
};

static int client_start(struct client *c, SSL_CTX *ctx, int port)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
        return -1;
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    c->state = HANDSHAKE;
    return 0;
}

/* Drives one client as far as it goes without blocking; returns 1 when the
 * exchange finished, 0 to wait, -1 on error. Sets *want_write. */
static int client_step(struct client *c, int *want_write)
{
    *want_write = 0;
    int r;
    if (c->state == HANDSHAKE) {
        r = SSL_connect(c->ssl);
        if (r == 1) {
            if (SSL_write(c->ssl, "x", 1) != 1)
                return -1;
            c->state = READING;
        } else {
            int e = SSL_get_error(c->ssl, r);
            *want_write = e == SSL_ERROR_WANT_WRITE;
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
    }
    char byte;
    r = SSL_read(c->ssl, &byte, 1);
    if (r == 1) {
        SSL_free(c->ssl);
        close(c->fd);
        c->state = IDLE;
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_READ ? 0 : -1;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 5000;
    int server_cpu = argc > 2 ? atoi(argv[2]) : 0;
    int client_cpu = argc > 3 ? atoi(argv[3]) : 1;
    if (count < 10) {
        fprintf(stderr, "usage: tlsfloor [HANDSHAKES>=10] [SERVER_CPU] [CLIENT_CPU]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 512) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
        die("listen");
    int port = ntohs(sa.sin_port);

    int pipefd[2];
    if (pipe(pipefd) != 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(pipefd[0]);
        serve(lfd, count, server_cpu, pipefd[1]);
        _exit(0);
    }
    close(pipefd[1]);
    close(lfd);
    pin(client_cpu);

    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (cctx == NULL || !SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION) ||
        !SSL_CTX_set1_groups_list(cctx, "X25519"))
        die("client SSL_CTX");
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);

    struct client clients[CONCURRENCY] = {0};
    struct pollfd pfds[CONCURRENCY];
    long started = 0, done = 0;
    int status = 0;
    while (done < count) {
        int n = 0;
        for (int i = 0; i < CONCURRENCY; i++) {
            struct client *c = &clients[i];
            if (c->state == IDLE && started < count) {
                if (client_start(c, cctx, port) != 0)
                    die("client connect");
                started++;
            }
            if (c->state == IDLE)
                continue;
            int want_write;
            int r = client_step(c, &want_write);
            if (r < 0)
                die("client handshake");
            if (r == 1) {
                done++;
                i--; /* start the next connection in this slot */
                continue;
            }
            pfds[n++] = (struct pollfd){.fd = c->fd, .events = want_write ? POLLOUT : POLLIN};
        }
        if (n > 0 && poll(pfds, (nfds_t)n, 10000) <= 0)
            die("client poll timed out");
    }
    SSL_CTX_free(cctx);

    char line[128] = {0};
    ssize_t got = read(pipefd[0], line, sizeof(line) - 1);
    waitpid(pid, &status, 0);
    long measured;
    double cpu, wall;
    if (got <= 0 || sscanf(line, "%ld %lf %lf", &measured, &cpu, &wall) != 3)
        die("server report");
    printf("{\"handshakes\": %ld, \"server_cpu_us_per_handshake\": %.1f, "
           "\"handshakes_per_s\": %.0f, \"handshakes_per_cpu_s\": %.0f}\n",
           measured, cpu / (double)measured * 1e6, (double)measured / wall, (double)measured / cpu);
    return 0;
}
