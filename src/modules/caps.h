/* SPDX-License-Identifier: MIT
 * caps.h - what the server knows of clients' entity capabilities
 * (XEP-0115), for PEP's +notify filtering (XEP-0163 §4).
 */
#ifndef TERN_MODULES_CAPS_H
#define TERN_MODULES_CAPS_H

#include <stdbool.h>

#include "tern/module.h"

extern const tern_module_def_t mod_caps;

/* True when the verification string ver is known (its disco#info was
 * fetched and hashed to ver) and lists feature. Any worker. */
bool caps_has_feature(const tern_host_t *h, const char *ver, const char *feature);
/* True when ver's features are known, whatever they are. */
bool caps_known(const tern_host_t *h, const char *ver);

/* The verification string of a <c/> element (XEP-0115), or NULL when it
 * cannot be checked (not sha-1, no node, oversized). */
const char *caps_ver_of(const xml_node_t *c);

/* Makes sure the features of the ver announced by full_jid's <c/> (c) get
 * known: asks full_jid once if no query for ver is in flight on this
 * worker. Returns CAPS_KNOWN, CAPS_UNUSABLE (c cannot be checked), or
 * CAPS_PENDING: cb(ud, learned) then runs later on this worker, exactly
 * once (learned false on a wrong hash, an error, a timeout or shutdown).
 * h is the caller's host on this worker. */
enum { CAPS_UNUSABLE = -1, CAPS_PENDING = 0, CAPS_KNOWN = 1 };
typedef void (*caps_learned_cb)(void *ud, bool learned);
int caps_learn(tern_host_t *h, const char *full_jid, const xml_node_t *c, caps_learned_cb cb,
               void *ud);

#endif
