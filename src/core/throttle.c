/* SPDX-License-Identifier: MIT
 * throttle.c - per-key event counters with a window (see throttle.h). */
#include "throttle.h"

#include <stdlib.h>

#include "common.h"

typedef struct {
    char *key;
    unsigned count;
    uint64_t window_start;
} entry_t;

static bool expired(const entry_t *e, unsigned window_s, uint64_t now_ms)
{
    return now_ms - e->window_start > (uint64_t)window_s * 1000;
}

void throttle_init(throttle_t *t)
{
    hashmap_init(&t->map);
}

void throttle_free(throttle_t *t)
{
    size_t it = 0;
    void *v;
    while (hashmap_next(&t->map, &it, NULL, &v)) {
        entry_t *e = v;
        free(e->key);
        free(e);
    }
    hashmap_free(&t->map);
}

bool throttle_exceeded(const throttle_t *t, const char *key, unsigned limit, unsigned window_s,
                       uint64_t now_ms)
{
    if (!limit)
        return false;
    const entry_t *e = hashmap_get(&t->map, key);
    return e && !expired(e, window_s, now_ms) && e->count >= limit;
}

void throttle_hit(throttle_t *t, const char *key, unsigned window_s, uint64_t now_ms)
{
    entry_t *e = hashmap_get(&t->map, key);
    if (!e) {
        e = tern_xcalloc(1, sizeof(*e));
        e->key = tern_xstrdup(key);
        e->window_start = now_ms;
        hashmap_put(&t->map, e->key, e);
    } else if (expired(e, window_s, now_ms)) {
        e->window_start = now_ms;
        e->count = 0;
    }
    e->count++;
}

void throttle_prune(throttle_t *t, unsigned window_s, uint64_t now_ms)
{
    /* Collect first: deleting while iterating would skip entries. */
    char *dead[64];
    size_t nd = 0, it = 0;
    void *v;
    while (nd < TERN_ARRAY_LEN(dead) && hashmap_next(&t->map, &it, NULL, &v)) {
        entry_t *e = v;
        if (expired(e, window_s, now_ms))
            dead[nd++] = e->key;
    }
    for (size_t i = 0; i < nd; i++) {
        entry_t *e = hashmap_del(&t->map, dead[i]);
        free(e->key);
        free(e);
    }
}
