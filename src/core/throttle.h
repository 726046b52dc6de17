/* SPDX-License-Identifier: MIT
 * throttle.h - counters of events per key within a sliding-start window.
 *
 * Used wherever abuse is limited by source or target: failed logins per
 * address and per account, in-band registrations per address. Each key
 * counts events since its window opened; a window older than window_s
 * starts over. Keys are copied. Not thread-safe: one owner thread.
 */
#ifndef TERN_THROTTLE_H
#define TERN_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "hashmap.h"

typedef struct {
    hashmap_t map; /* key -> entry (owns its key) */
} throttle_t;

void throttle_init(throttle_t *t);
void throttle_free(throttle_t *t);
/* Whether key has reached limit events in its current window (limit 0 =
 * never). now_ms is the caller's clock (uv_now). */
bool throttle_exceeded(const throttle_t *t, const char *key, unsigned limit, unsigned window_s,
                       uint64_t now_ms);
/* Counts one event for key. */
void throttle_hit(throttle_t *t, const char *key, unsigned window_s, uint64_t now_ms);
/* Drops keys whose window has passed (a bounded number per call, so a
 * periodic caller never stalls). */
void throttle_prune(throttle_t *t, unsigned window_s, uint64_t now_ms);

#endif
