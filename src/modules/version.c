/* SPDX-License-Identifier: MIT
 * version.c - XEP-0092 software version of the server. hide_version turns
 * it off at run time (service-unavailable) and version_show_os adds the
 * operating system, which admins may not want to advertise. */
#include <sys/utsname.h>

#include "../core/config.h"
#include "../xml/ns.h"
#include "tern/module.h"

#ifndef TERN_VERSION
#define TERN_VERSION "0.1.0"
#endif

static tern_handled_t on_version(void *st, tern_iq_t *iq)
{
    const config_t *cfg = tern_host_server_config(iq->host);
    if (iq->is_set || cfg->hide_version)
        return TERN_PASS;
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *q = xml_node_add_child(xml_stanza_root(r), "query", NS_VERSION);
    xml_node_add_child_text(q, "name", NS_VERSION, "Tern");
    xml_node_add_child_text(q, "version", NS_VERSION, TERN_VERSION);
    struct utsname u;
    if (cfg->version_show_os && uname(&u) == 0)
        xml_node_add_child_text(q, "os", NS_VERSION, u.sysname);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

static void *version_init(tern_module_t *m)
{
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_VERSION, "query", on_version);
    if (!tern_host_server_config(tern_module_host(m))->hide_version)
        tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_VERSION);
    return NULL;
}

const tern_module_def_t mod_version = {"version", TERN_MODULE_API_VERSION, version_init, NULL};
