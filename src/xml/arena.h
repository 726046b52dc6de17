/* SPDX-License-Identifier: MIT
 * arena.h - private memory for one expat parser.
 *
 * Why: a stream's expat allocates about 12 KB in a dozen blocks while the
 * client logs in, and the session allocates its long-lived objects in
 * between. When an idle stream's parser is freed (hibernation), glibc is
 * left with a dozen small holes per session that it cannot give back:
 * measured, 10 KB of RSS per idle session for 2.5 KB of live data. An
 * arena maps its own pages, so freeing a parser returns exactly its pages
 * to the kernel and the main heap never sees expat's churn.
 *
 * Allocation is a bump pointer in mapped chunks; freeing or growing the
 * most recent block works in place, anything else is reclaimed when the
 * arena is destroyed. That suits expat, which allocates once and reuses
 * (pools, tag stack) and is renewed every 128 KB of input anyway. Large
 * blocks get their own mapping, grown with mremap.
 */
#ifndef TERN_XML_ARENA_H
#define TERN_XML_ARENA_H

#include <stddef.h>

typedef struct xml_arena xml_arena_t;

/* An empty arena maps nothing until its first allocation. */
xml_arena_t *xml_arena_new(void);
/* Unmaps every chunk; all blocks become invalid. */
void xml_arena_destroy(xml_arena_t *a);
/* Unmaps every chunk but keeps the arena usable. */
void xml_arena_release(xml_arena_t *a);

void *xml_arena_alloc(xml_arena_t *a, size_t size);
void *xml_arena_realloc(xml_arena_t *a, void *ptr, size_t size);
void xml_arena_free(xml_arena_t *a, void *ptr);

/* Bytes currently mapped (for accounting and tests). */
size_t xml_arena_mapped(const xml_arena_t *a);

#endif
