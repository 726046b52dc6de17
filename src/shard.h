/* SPDX-License-Identifier: MIT
 * shard.h - one event loop per core.
 *
 * With `workers = N` the process runs N complete servers (tern_server_t),
 * each on its own thread and loop with its own listeners (SO_REUSEPORT on
 * the same ports), hosts, module instances, storage connection and
 * sessions. Every account belongs to one of them, shard_of(bare JID): once
 * a client has authenticated on whichever worker accepted it, its
 * connection moves to the owner, so all sessions of an account share a
 * thread and the session manager and router need no locks. The workers
 * exchange only messages through mutex-protected inboxes, each woken by a
 * uv_async_t:
 *
 *   - a stanza for an account owned elsewhere (a counted reference: the
 *     sender no longer touches it; stanza refcounts are atomic);
 *   - a connection moving to its owner (the session object and a dup of
 *     its socket, after the sending loop has closed its handle);
 *   - shutdown and reload, sent by worker 0, which owns the signals.
 */
#ifndef TERN_SHARD_H
#define TERN_SHARD_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

typedef struct tern_shards tern_shards_t;

/* Creates cfg->workers servers (0: one per online core) from the file at path (worker 0 on loop0,
 * run by the caller) and starts workers 1..N-1 on their threads, one after
 * the other. Worker 0 is created but not started: the caller starts it and
 * runs loop0. Takes ownership of cfg (worker 0's). On failure returns NULL
 * with err set and nothing left running. */
tern_shards_t *shards_create(uv_loop_t *loop0, config_t *cfg, const char *path, char *err,
                             size_t errlen, tern_server_t **primary);
/* After worker 0's loop has returned: waits for the other workers to stop
 * and frees everything, worker 0's server and config included. */
void shards_join(tern_shards_t *g);

/* The worker owning the account local@domain (both normalised). */
unsigned shard_of(const tern_server_t *srv, const char *local, const char *domain);
/* How many workers the process runs. */
unsigned shards_count(const tern_server_t *srv);
/* The same worker's server object (hosts may be looked up from any
 * thread: the host list never changes while running). */
tern_server_t *shard_server(const tern_server_t *srv, unsigned index);

/* Hands st (one reference, taken here) to worker owner's router. False
 * when that worker's inbox is full or closed: the caller answers as for a
 * congested recipient. */
bool shard_forward(tern_server_t *srv, unsigned owner, xml_stanza_t *st);
/* Hands a session whose handle this worker has closed, and a duplicate
 * of its socket, to worker owner. False if owner is gone (shutting down):
 * the caller keeps both. */
bool shard_post_session(tern_server_t *srv, unsigned owner, struct tern_session *s, int fd);
/* Runs fn(dst, arg, fd) on worker `to`'s loop, dst being that worker's
 * server. If the message is dropped undelivered (the worker stopped), fn
 * runs with dst NULL on whichever thread drops it and must release arg
 * and fd. False when `to` is gone already: nothing was taken. */
typedef void (*shard_call_fn)(tern_server_t *dst, void *arg, int fd);
bool shard_post_call(tern_server_t *srv, unsigned to, shard_call_fn fn, void *arg, int fd);
/* Worker 0: passes a signal's work on to every other worker. */
void shards_broadcast_shutdown(tern_server_t *srv);
void shards_broadcast_reload(tern_server_t *srv);

/* Inbox life cycle, run by each worker on its own loop. */
void shard_inbox_open(tern_server_t *srv);
void shard_inbox_close(tern_server_t *srv);

#endif
