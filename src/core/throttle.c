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
    /* Workers' loop clocks may differ by a millisecond or so. */
    return now_ms > e->window_start && now_ms - e->window_start > (uint64_t)window_s * 1000;
}

void throttle_init(throttle_t *t)
{
    pthread_mutex_init(&t->mu, NULL);
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
    pthread_mutex_destroy(&t->mu);
}

bool throttle_exceeded(throttle_t *t, const char *key, unsigned limit, unsigned window_s,
                       uint64_t now_ms)
{
    if (!limit)
        return false;
    pthread_mutex_lock(&t->mu);
    const entry_t *e = hashmap_get(&t->map, key);
    bool over = e && !expired(e, window_s, now_ms) && e->count >= limit;
    pthread_mutex_unlock(&t->mu);
    return over;
}

void throttle_hit(throttle_t *t, const char *key, unsigned window_s, uint64_t now_ms)
{
    pthread_mutex_lock(&t->mu);
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
    pthread_mutex_unlock(&t->mu);
}

void throttle_prune(throttle_t *t, unsigned window_s, uint64_t now_ms)
{
    /* Collect first: deleting while iterating would skip entries. */
    char *dead[64];
    size_t nd = 0, it = 0;
    void *v;
    pthread_mutex_lock(&t->mu);
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
    pthread_mutex_unlock(&t->mu);
}
