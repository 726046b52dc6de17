/* SPDX-License-Identifier: MIT
 * hashmap.h - string-keyed hash map with open addressing.
 *
 * Used on the routing path (bare JID -> user sessions), so lookups must not
 * allocate. Keys are borrowed: the caller guarantees a key string lives as
 * long as its entry (typically it points into the value). Not thread-safe;
 * each map belongs to one thread. The hash is SipHash-like keyed per map
 * (random seed) so remote users cannot force collisions.
 */
#ifndef TERN_HASHMAP_H
#define TERN_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key;
    void *value;
    uint64_t hash;
} hashmap_entry_t;

typedef struct {
    hashmap_entry_t *slots;
    size_t cap;  /* power of two, or 0 */
    size_t used; /* live entries */
    size_t tombs;
    uint64_t seed;
} hashmap_t;

void hashmap_init(hashmap_t *m);
void hashmap_free(hashmap_t *m);
void *hashmap_get(const hashmap_t *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. On replace the
 * key already stored is kept (key is not taken). */
void *hashmap_put(hashmap_t *m, const char *key, void *value);
/* Removes; returns the removed value or NULL. */
void *hashmap_del(hashmap_t *m, const char *key);
size_t hashmap_count(const hashmap_t *m);
/* Iteration: for (size_t i = 0; hashmap_next(m, &i, &k, &v);) */
int hashmap_next(const hashmap_t *m, size_t *iter, const char **key, void **value);

#endif
