/* SPDX-License-Identifier: MIT
 * time.c - XEP-0202 entity time of the server, always in UTC. */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "../xml/ns.h"
#include "tern/module.h"

static tern_handled_t on_time(void *st, tern_iq_t *iq)
{
    if (iq->is_set)
        return TERN_PASS;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char utc[80];
    snprintf(utc, sizeof(utc), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *t = xml_node_add_child(xml_stanza_root(r), "time", NS_TIME);
    xml_node_add_child_text(t, "tzo", NS_TIME, "+00:00");
    xml_node_add_child_text(t, "utc", NS_TIME, utc);
    tern_iq_reply(iq, r);
    xml_stanza_unref(r);
    return TERN_HANDLED;
}

static void *time_init(tern_module_t *m)
{
    tern_register_iq(m, TERN_SCOPE_SERVER, NS_TIME, "time", on_time);
    tern_register_disco_feature(m, TERN_SCOPE_SERVER, NS_TIME);
    return NULL;
}

const tern_module_def_t mod_time = {"time", TERN_MODULE_API_VERSION, time_init, NULL};
