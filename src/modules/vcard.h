/* SPDX-License-Identifier: MIT
 * vcard.h - what other modules may ask of the vcard-temp module (vcard.c):
 * the PEP side of XEP-0398's avatar conversion.
 */
#ifndef TERN_MODULES_VCARD_H
#define TERN_MODULES_VCARD_H

#include "tern/module.h"

extern const tern_module_def_t mod_vcard;

/* XEP-0398 §3.1: makes b64 (an image of MIME type type) the PHOTO of
 * user's vCard, creating the vCard if there is none, or removes the PHOTO
 * when b64 is NULL; everything else in the vCard is kept. When
 * expect_sha1 is given, the decoded image must hash to it (lowercase hex)
 * or nothing changes. Runs on the account's worker; the store happens
 * later, in order with the account's other vCard writes. Returns 0, or -1
 * when it could not be started. Strings are copied. */
int vcard_set_photo(tern_host_t *h, const char *user, const char *type, const char *b64,
                    const char *expect_sha1);

#endif
