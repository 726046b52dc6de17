/* SPDX-License-Identifier: MIT
 * caps.h - XEP-0115 verification strings.
 */
#ifndef TERN_XMPP_CAPS_H
#define TERN_XMPP_CAPS_H

#include <stddef.h>

#include "../xml/stanza.h"

/* Writes the XEP-0115 §5.1 verification string of a disco#info <query/>
 * (SHA-1, base64) to out, which needs at least 29 bytes. Identities,
 * features and extended-info forms are sorted as §5.1 and §5.4 say; a form
 * without a hidden FORM_TYPE is left out. Returns 0 or TERN_EIO. */
int caps_ver_sha1(const xml_node_t *query, char *out, size_t outlen);

#endif
