/* SPDX-License-Identifier: MIT
 * hashmap.c - open-addressing string map with linear probing (see hashmap.h). */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"

static const char tombstone_key[] = "";
#define TOMB (tombstone_key)

/* FNV-1a mixed with a per-map seed and a final avalanche: cheap, and the
 * seed keeps attackers from precomputing colliding JIDs. */
static uint64_t hash_str(const char *s, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void hashmap_init(hashmap_t *m)
{
    memset(m, 0, sizeof(*m));
    if (getrandom(&m->seed, sizeof(m->seed), GRND_NONBLOCK) != sizeof(m->seed))
        m->seed = (uint64_t)(uintptr_t)m ^ 0x9e3779b97f4a7c15ULL;
}

void hashmap_free(hashmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = m->tombs = 0;
}

static hashmap_entry_t *find_slot(const hashmap_t *m, const char *key, uint64_t h)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        hashmap_entry_t *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->key != TOMB && e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
}

static void grow(hashmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    if (m->used * 4 < m->cap * 2) /* mostly tombstones: rehash in place size */
        ncap = m->cap;
    hashmap_entry_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = tern_xcalloc(ncap, sizeof(*m->slots));
    m->cap = ncap;
    m->tombs = 0;
    size_t mask = ncap - 1;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].key || old[i].key == TOMB)
            continue;
        size_t j = old[i].hash & mask;
        while (m->slots[j].key)
            j = (j + 1) & mask;
        m->slots[j] = old[i];
    }
    free(old);
}

void *hashmap_get(const hashmap_t *m, const char *key)
{
    hashmap_entry_t *e = find_slot(m, key, hash_str(key, m->seed));
    return e ? e->value : NULL;
}

void *hashmap_put(hashmap_t *m, const char *key, void *value)
{
    uint64_t h = hash_str(key, m->seed);
    hashmap_entry_t *e = find_slot(m, key, h);
    if (e) {
        /* The stored key stays: it may be the one the caller owns. */
        void *old = e->value;
        e->value = value;
        return old;
    }
    if ((m->used + m->tombs + 1) * 4 >= m->cap * 3)
        grow(m);
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].key && m->slots[i].key != TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].key == TOMB)
        m->tombs--;
    m->slots[i].key = key;
    m->slots[i].value = value;
    m->slots[i].hash = h;
    m->used++;
    return NULL;
}

void *hashmap_del(hashmap_t *m, const char *key)
{
    hashmap_entry_t *e = find_slot(m, key, hash_str(key, m->seed));
    if (!e)
        return NULL;
    void *v = e->value;
    e->key = TOMB;
    e->value = NULL;
    m->used--;
    m->tombs++;
    return v;
}

size_t hashmap_count(const hashmap_t *m)
{
    return m->used;
}

int hashmap_next(const hashmap_t *m, size_t *iter, const char **key, void **value)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->slots[i].key && m->slots[i].key != TOMB) {
            if (key)
                *key = m->slots[i].key;
            if (value)
                *value = m->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
