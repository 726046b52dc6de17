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

#endif
