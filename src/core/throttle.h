/* SPDX-License-Identifier: MIT
 * throttle.h - counters of events per key within a sliding-start window.
 *
 * Used wherever abuse is limited by source or target: failed logins per
 * address and per account, in-band registrations per address. Each key
 * counts events since its window opened; a window older than window_s
 * starts over. Keys are copied. Thread-safe: with several workers one
 * table counts for the whole process (calls are rare: failures and
 * registrations, and a bounded prune per second).
 */
#ifndef TERN_THROTTLE_H
#define TERN_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hashmap.h"

typedef struct {
    pthread_mutex_t mu;
    hashmap_t map; /* key -> entry (owns its key); under mu */
} throttle_t;

void throttle_init(throttle_t *t);
void throttle_free(throttle_t *t);
/* Whether key has reached limit events in its current window (limit 0 =
 * never). now_ms is the caller's clock (uv_now). */
bool throttle_exceeded(throttle_t *t, const char *key, unsigned limit, unsigned window_s,
                       uint64_t now_ms);
/* Counts one event for key. */
void throttle_hit(throttle_t *t, const char *key, unsigned window_s, uint64_t now_ms);
/* Drops keys whose window has passed (a bounded number per call, so a
 * periodic caller never stalls). */
void throttle_prune(throttle_t *t, unsigned window_s, uint64_t now_ms);

#endif
