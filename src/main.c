/* SPDX-License-Identifier: MIT
 * main.c - the tern server executable.
 *
 *   tern [-c CONFIG]          run in the foreground, logging to stderr
 *   tern init [-c CONFIG] [DOMAIN]
 *                             write a default config (and nothing else)
 *                             unless one exists
 *
 * CONFIG defaults to $TERN_CONFIG, else var/tern.conf.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "core/log.h"
#include "server.h"
#include "shard.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tern [-c CONFIG]\n"
               "       tern init [-c CONFIG] [DOMAIN]\n"
               "CONFIG defaults to $TERN_CONFIG or var/tern.conf\n");
}

static int cmd_init(const char *path, const char *domain)
{
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "tern: %s exists; leaving it as it is\n", path);
        return 0;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            fprintf(stderr, "tern: cannot create %s: %s\n", dir, strerror(errno));
            return 1;
        }
    }
    char err[512];
    if (config_write_default(path, domain, err, sizeof(err)) != 0) {
        fprintf(stderr, "tern: %s\n", err);
        return 1;
    }
    fprintf(stderr, "tern: wrote %s for domain %s\n", path, domain);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = getenv("TERN_CONFIG");
    if (!path || !*path)
        path = "var/tern.conf";
    bool init = false;
    const char *domain = "localhost";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "init") == 0 && i == 1) {
            init = true;
        } else if (init && argv[i][0] != '-') {
            domain = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (init)
        return cmd_init(path, domain);

    char err[1024] = "";
    config_t *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "tern: %s\n", err);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    tern_server_t *srv = NULL;
    tern_shards_t *shards = shards_create(&loop, cfg, path, err, sizeof(err), &srv);
    if (!shards) {
        fprintf(stderr, "tern: %s\n", err);
        config_free(cfg);
        uv_loop_close(&loop);
        return 1;
    }
    int rc = 0;
    if (server_start(srv, err, sizeof(err)) != 0) {
        log_error("main", "%s", err);
        shards_broadcast_shutdown(srv);
        server_shutdown(srv);
        rc = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    shards_join(shards);
    if (uv_loop_close(&loop) != 0)
        log_warn("main", "event loop closed with handles still open");
    log_info("main", "stopped");
    return rc;
}
