/* SPDX-License-Identifier: MIT
 * arena.c - private memory for one expat parser (see arena.h).
 */
#include "xml/arena.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The first chunk holds a typical parser (about 12 KB); later chunks
 * double up to CHUNK_MAX. */
#define CHUNK_FIRST (16 * 1024)
#define CHUNK_MAX   (256 * 1024)
/* Blocks above this get a mapping of their own (expat's input buffer for a
 * big stanza), so that growing them never strands a chunk. */
#define LARGE_BLOCK (8 * 1024)
#define ALIGN       16

typedef struct chunk {
    struct chunk *next;
    size_t size; /* mapped bytes, header included */
    size_t used; /* bytes from the chunk start in use, header included */
} chunk_t;

/* Precedes every block; 16 bytes keep blocks 16-aligned. */
typedef struct {
    size_t size;  /* usable bytes (chunk block) or mapped bytes (large) */
    size_t large; /* 1 = own mapping */
} block_t;

typedef struct large {
    struct large *next, *prev;
} large_link_t;

struct xml_arena {
    chunk_t *chunks; /* newest first; only the newest is bumped */
    block_t *large;  /* own mappings, listed through large_link_t before them */
    size_t mapped;
};

#define CHUNK_HDR (((sizeof(chunk_t) + ALIGN - 1) / ALIGN) * ALIGN)
#define LARGE_HDR (((sizeof(large_link_t) + ALIGN - 1) / ALIGN) * ALIGN)

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static void *map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

xml_arena_t *xml_arena_new(void)
{
    return calloc(1, sizeof(xml_arena_t));
}

static large_link_t *link_of(block_t *b)
{
    return (large_link_t *)((char *)b - LARGE_HDR);
}

void xml_arena_release(xml_arena_t *a)
{
    for (chunk_t *c = a->chunks, *n; c; c = n) {
        n = c->next;
        munmap(c, c->size);
    }
    a->chunks = NULL;
    large_link_t *l = a->large ? link_of(a->large) : NULL;
    while (l) {
        large_link_t *n = l->next;
        block_t *b = (block_t *)((char *)l + LARGE_HDR);
        munmap(l, b->size);
        l = n;
    }
    a->large = NULL;
    a->mapped = 0;
}

void xml_arena_destroy(xml_arena_t *a)
{
    if (!a)
        return;
    xml_arena_release(a);
    free(a);
}

size_t xml_arena_mapped(const xml_arena_t *a)
{
    return a->mapped;
}

static void *alloc_large(xml_arena_t *a, size_t size)
{
    size_t total = round_up(LARGE_HDR + sizeof(block_t) + size, page_size());
    large_link_t *l = map(total);
    if (!l)
        return NULL;
    block_t *b = (block_t *)((char *)l + LARGE_HDR);
    b->size = total;
    b->large = 1;
    l->prev = NULL;
    l->next = a->large ? link_of(a->large) : NULL;
    if (l->next)
        l->next->prev = l;
    a->large = b;
    a->mapped += total;
    return b + 1;
}

static void free_large(xml_arena_t *a, block_t *b)
{
    large_link_t *l = link_of(b);
    if (l->prev)
        l->prev->next = l->next;
    else
        a->large = l->next ? (block_t *)((char *)l->next + LARGE_HDR) : NULL;
    if (l->next)
        l->next->prev = l->prev;
    a->mapped -= b->size;
    munmap(l, b->size);
}

void *xml_arena_alloc(xml_arena_t *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > LARGE_BLOCK)
        return alloc_large(a, size);
    size_t need = sizeof(block_t) + round_up(size, ALIGN);
    chunk_t *c = a->chunks;
    if (!c || c->size - c->used < need) {
        size_t csize = c ? c->size * 2 : CHUNK_FIRST;
        if (csize > CHUNK_MAX)
            csize = CHUNK_MAX;
        chunk_t *n = map(csize);
        if (!n)
            return NULL;
        n->size = csize;
        n->used = CHUNK_HDR;
        n->next = c;
        a->chunks = c = n;
        a->mapped += csize;
    }
    block_t *b = (block_t *)((char *)c + c->used);
    b->size = round_up(size, ALIGN);
    b->large = 0;
    c->used += need;
    return b + 1;
}

/* True when b is the most recent block of the newest chunk. */
static bool is_top(const xml_arena_t *a, const block_t *b)
{
    const chunk_t *c = a->chunks;
    return c && (const char *)(b + 1) + b->size == (const char *)c + c->used;
}

void xml_arena_free(xml_arena_t *a, void *ptr)
{
    if (!ptr)
        return;
    block_t *b = (block_t *)ptr - 1;
    if (b->large) {
        free_large(a, b);
        return;
    }
    if (is_top(a, b))
        a->chunks->used -= sizeof(block_t) + b->size;
}

void *xml_arena_realloc(xml_arena_t *a, void *ptr, size_t size)
{
    if (!ptr)
        return xml_arena_alloc(a, size);
    if (size == 0)
        size = 1;
    block_t *b = (block_t *)ptr - 1;
    if (b->large) {
        size_t total = round_up(LARGE_HDR + sizeof(block_t) + size, page_size());
        if (total == b->size)
            return ptr;
        large_link_t *l = link_of(b);
        large_link_t *m = mremap(l, b->size, total, MREMAP_MAYMOVE);
        if (m == MAP_FAILED)
            return NULL;
        block_t *nb = (block_t *)((char *)m + LARGE_HDR);
        a->mapped = a->mapped - nb->size + total;
        nb->size = total;
        if (m != l) {
            if (m->prev)
                m->prev->next = m;
            else
                a->large = nb;
            if (m->next)
                m->next->prev = m;
        }
        return nb + 1;
    }
    size_t want = round_up(size, ALIGN);
    if (want <= b->size)
        return ptr;
    if (size <= LARGE_BLOCK && is_top(a, b) &&
        a->chunks->size - a->chunks->used >= want - b->size) {
        a->chunks->used += want - b->size;
        b->size = want;
        return ptr;
    }
    void *n = xml_arena_alloc(a, size);
    if (!n)
        return NULL;
    memcpy(n, ptr, b->size);
    xml_arena_free(a, ptr);
    return n;
}
