/* SPDX-License-Identifier: MIT
 * pep.h - what other modules may ask of PEP (pep.c): publishing on a
 * user's behalf, for XEP-0398's vCard-to-avatar conversion.
 */
#ifndef TERN_MODULES_PEP_H
#define TERN_MODULES_PEP_H

#include <stddef.h>

#include "tern/module.h"

extern const tern_module_def_t mod_pep;

#define NS_AVATAR_DATA     "urn:xmpp:avatar:data"
#define NS_AVATAR_METADATA "urn:xmpp:avatar:metadata"

/* XEP-0398 §3.2: publishes b64 (an image of bytes bytes, MIME type type,
 * SHA-1 sha1 in lowercase hex) to bare's urn:xmpp:avatar:data node, then
 * its <info/> to urn:xmpp:avatar:metadata, as if the owner had, so that
 * contacts get the usual notifications. The account's worker. Returns 0,
 * or -1 when PEP is off or the account's queue is full. */
int pep_publish_avatar(tern_host_t *h, const char *bare, const char *b64, const char *type,
                       size_t bytes, const char *sha1);

/* XEP-0411: a private XML storage (XEP-0049) get or set of
 * <storage xmlns='storage:bookmarks'/> by the account itself, answered from
 * and applied to its XEP-0402 bookmarks node. TERN_PASS when it is not such
 * a request or PEP is off. */
tern_handled_t pep_private_bookmarks(tern_host_t *h, tern_iq_t *iq);

/* XEP-0060 §5.3 on an account: disco#info of one of its PEP nodes,
 * answered by the node core. TERN_PASS when PEP is off. */
tern_handled_t pep_node_info(tern_host_t *h, tern_iq_t *iq);

#endif
