/* SPDX-License-Identifier: MIT
 * blocking.h - what other modules may ask of the blocking module
 * (blocking.c, XEP-0191).
 */
#ifndef TERN_MODULES_BLOCKING_H
#define TERN_MODULES_BLOCKING_H

#include <stdbool.h>

#include "tern/module.h"

extern const tern_module_def_t mod_blocking;

/* Whether the account user (localpart) on host blocks jid, from the
 * blocklist in memory. Loop thread only, on the worker that owns the
 * account; false when blocking is not loaded or the list is not (a
 * session's stanzas wait for its list, so a client's own presence never
 * runs ahead of it). */
bool blocking_blocks(const tern_host_t *h, const char *user, const jid_t *jid);
/* Whether that list has any item at all (a cheap test before a fan-out). */
bool blocking_any(const tern_host_t *h, const char *user);

#endif
