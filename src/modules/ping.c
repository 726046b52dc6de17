/* SPDX-License-Identifier: MIT
 * ping.c - XEP-0199: answers pings to the server and, on behalf of an
 * account, to its bare JID (clients use both to check the connection). */
#include "../xml/ns.h"
#include "tern/module.h"

static tern_handled_t on_ping(void *st, tern_iq_t *iq)
{
    if (iq->is_set)
        return TERN_PASS; /* ping is a get; a set is service-unavailable */
    tern_iq_reply(iq, NULL);
    return TERN_HANDLED;
}

static void *ping_init(tern_module_t *m)
{
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_PING, "ping", on_ping);
    tern_register_iq(m, TERN_SCOPE_ACCOUNT, NS_PING, "ping", on_ping);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_PING);
    return NULL;
}

const tern_module_def_t mod_ping = {"ping", TERN_MODULE_API_VERSION, ping_init, NULL};
