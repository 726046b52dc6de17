/* SPDX-License-Identifier: MIT
 * mam.h - what other modules may ask of the message archive (mam.c,
 * XEP-0313): the archive of a MUC room, for the MUC service.
 *
 * A room's archive is kept in the same archive storage as an account's,
 * with host = the MUC service domain ("conference.localhost") and user =
 * the room's local part; it is read and written with the same code
 * (batched writes, query forms, RSM paging, retention) as the accounts'.
 *
 * Threading: every call is for the loop thread of the worker that owns the
 * room (where the service callback runs), with h = the host handed to the
 * MUC module on that worker (ev->host or its own module host). The MAM
 * module's instance of that worker is found from h; a room's writes,
 * queries and deletion then go through that worker's FIFO storage queue,
 * so a query or a deletion sees every message archived before it.
 *
 * With the "mam" module disabled (disabled_modules), nothing is archived,
 * mam_room_iq answers service-unavailable and mam_room_recent reports no
 * messages; mam_room_available says which, for disco.
 *
 * muc_domain and room are normalised as JID parts here (the service domain
 * needs no registration with this module); the caller decides who may read
 * a room's archive (members-only rooms, banned users...) before calling
 * mam_room_iq: no access check is made here.
 */
#ifndef TERN_MODULES_MAM_H
#define TERN_MODULES_MAM_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "tern/module.h"

/* XEP-0313 #extended: before-id, after-id, ids and the metadata query
 * (rooms support it too). urn:xmpp:mam:2 itself is NS_MAM (xml/ns.h). */
#define NS_MAM_EXTENDED "urn:xmpp:mam:2#extended"

extern const tern_module_def_t mod_mam;

/* Whether h has the MAM module on this worker (advertise urn:xmpp:mam:2
 * on rooms only then). */
bool mam_room_available(tern_host_t *h);

/* Archives one groupchat message of a room. msg is the message exactly as
 * the room broadcasts it (type='groupchat', from = room/nick, no 'to',
 * carrying <stanza-id xmlns='urn:xmpp:sid:0' by=room-bare id=ID/>); id is
 * that stanza-id (unique within the room's archive, at most 255 bytes).
 * sender_bare is the occupant's real bare JID, or NULL: it is kept with
 * the row (inside the stored copy, in a private element that no query or
 * mam_room_recent ever shows) for non-anonymous lookups later.
 * All arguments are borrowed for the call: the message is serialised
 * here, nothing is kept. The write is queued and batched like the
 * accounts' archive writes; nothing blocks the loop.
 * Messages are archived as XEP-0313 §5.1.1 and XEP-0334 say: with a <body/>
 * or a <store/> hint, and not with <no-store/> or <no-permanent-store/>;
 * a message not of type groupchat is not archived.
 * Returns 0 when the message was queued or deliberately not archived
 * (hints, module disabled); TERN_EAGAIN when the archive queue of this
 * worker is full (a flood faster than the disk): the message is NOT
 * archived, and the room may refuse it with resource-constraint (wait)
 * as a user's archive does; TERN_EINVAL for bad arguments. */
int mam_room_archive(tern_host_t *h, const char *muc_domain, const char *room, const char *id,
                     const xml_stanza_t *msg, const char *sender_bare);

/* Answers a MAM iq addressed to the room JID: iq get/set with <query
 * xmlns='urn:xmpp:mam:2'/> (get: the query form; set: a query) or iq get
 * with <metadata xmlns='urn:xmpp:mam:2'/>. iq is borrowed (a reference is
 * taken while the query runs). Result messages go to the iq's 'from' with
 * from = the room's bare JID, each
 *   <message><result xmlns='urn:xmpp:mam:2' queryid=.. id=..>
 *     <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp=../>
 *       <message from='room@service/nick' type='groupchat'>...</message>
 *   </forwarded></result></message>,
 * then the iq result with <fin/> (RSM), exactly as the accounts' archives
 * do: form fields with/start/end/before-id/after-id/ids ('with' filters on
 * the occupant JID room@service/nick, or the room's bare JID for all),
 * RSM max/after/before (max capped by mam_max_page), errors as there
 * (bad-request for a bad form, item-not-found for an unknown id,
 * feature-not-implemented for flip-page or paging by index). Any other
 * payload (prefs, ...) gets service-unavailable, as does everything with
 * the module disabled. An iq of type result/error, or without 'from', is
 * ignored. Everything is sent with tern_route. */
void mam_room_iq(tern_host_t *h, const char *muc_domain, const char *room, const xml_stanza_t *iq);

/* Loads the newest max messages (at most 1000) of the room's archive,
 * oldest first, for the room's in-memory history after a restart; messages
 * older than the retention (mam_retention) are left out. cb runs later
 * (never from inside this call) on the calling worker's loop, exactly
 * once, with msgs (owned by the callee and valid only during cb:
 * xml_stanza_ref those to keep; each exactly as given to
 * mam_room_archive) and their archive times, or n = 0 when the archive is
 * empty, unreadable or the module disabled. Returns 0, or a TERN_E* code
 * (storage unavailable) in which case cb is never called. */
typedef void (*mam_room_recent_cb)(void *ud, xml_stanza_t *const *msgs, const time_t *whens,
                                   size_t n);
int mam_room_recent(tern_host_t *h, const char *muc_domain, const char *room, size_t max,
                    mam_room_recent_cb cb, void *ud);

/* Deletes a room's whole archive (the room was destroyed), after every
 * message archived before the call; fire and forget. Works with the
 * module disabled as well (the archive may predate that). */
void mam_room_delete(tern_host_t *h, const char *muc_domain, const char *room);

#endif
