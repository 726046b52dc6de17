/* SPDX-License-Identifier: MIT
 * jid.h - XMPP addresses (RFC 7622).
 *
 * jid_parse splits and normalises an address: localpart with the PRECIS
 * UsernameCaseMapped profile (RFC 8265 §3.3), domainpart per RFC 7622 §3.2
 * (IDNA2008 via libidn2 to its U-label form, lowercased, trailing dot
 * removed, IP literals kept), resourcepart with the PRECIS OpaqueString
 * profile (RFC 8265 §4.2). Each part is at most 1023 bytes after
 * normalisation; empty parts (e.g. "@d", "d/") are errors.
 *
 * A jid_t owns one malloc'd block holding all three parts; free it with
 * jid_clear. Parts are NULL when absent.
 */
#ifndef TERN_XMPP_JID_H
#define TERN_XMPP_JID_H

#include <stdbool.h>
#include <stddef.h>

#define JID_PART_MAX 1023

typedef struct {
    char *local;    /* NULL if none */
    char *domain;   /* never NULL after a successful parse */
    char *resource; /* NULL if none */
    char *block_;   /* private: the allocation that holds the parts */
} jid_t;

/* Parses and normalises s (NUL-terminated, UTF-8). On success fills *out
 * (which the caller must later jid_clear) and returns 0; on a malformed
 * address returns TERN_EINVAL and leaves *out zeroed. */
int jid_parse(const char *s, jid_t *out);
/* Builds a JID from already-split parts (each normalised as in jid_parse;
 * local and resource may be NULL). */
int jid_from_parts(const char *local, const char *domain, const char *resource, jid_t *out);
void jid_clear(jid_t *j);
int jid_copy(const jid_t *src, jid_t *dst);

/* Normalise one part on its own. On success *out is a malloc'd string the
 * caller frees. Returns 0 or TERN_EINVAL / TERN_ENOMEM. */
int jid_prep_local(const char *in, char **out);
int jid_prep_domain(const char *in, char **out);
int jid_prep_resource(const char *in, char **out);

/* String forms, malloc'd, caller frees. */
char *jid_to_string(const jid_t *j);   /* full: local@domain/resource */
char *jid_bare_string(const jid_t *j); /* local@domain */

bool jid_equal(const jid_t *a, const jid_t *b);      /* all three parts */
bool jid_bare_equal(const jid_t *a, const jid_t *b); /* local and domain */

#endif
