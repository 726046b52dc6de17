/* SPDX-License-Identifier: MIT
 * roster.h - what other modules may ask of the roster module (roster.c).
 *
 * Rosters live in the key/value store: store "roster", user = the account's
 * localpart, key = the contact's bare JID. Other modules read them only
 * through these functions, which run on the storage thread (inside a
 * storage job), so they see every change submitted before them.
 */
#ifndef TERN_MODULES_ROSTER_H
#define TERN_MODULES_ROSTER_H

#include "storage/storage.h"

#define ROSTER_STORE "roster"

/* Subscription bits: TO = the user receives the contact's presence, FROM =
 * the contact receives the user's presence. */
enum { ROSTER_SUB_TO = 1, ROSTER_SUB_FROM = 2 };

/* The subscription bits of contact_bare in user's roster on host (0 when
 * the contact is not in the roster), or a negative TERN_E* code. Storage
 * thread only. */
int roster_storage_subscription(const storage_driver_t *drv, storage_db_t *db, const char *host,
                                const char *user, const char *contact_bare);

/* The subscription bits (0 when absent) and groups (NULL-terminated,
 * malloc'd, caller frees each and the array; NULL when none) of
 * contact_bare in user's roster. 0 or a negative TERN_E* code. Storage
 * thread only. */
int roster_storage_item(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user, const char *contact_bare, unsigned *sub, char ***groups);

/* Calls cb for every item of user's roster on host, with its subscription
 * bits and groups (borrowed for the call); stops at cb's first non-zero
 * return, which it returns. Storage thread only. */
typedef int (*roster_item_cb)(void *ud, const char *contact_bare, unsigned sub, char *const *groups,
                              size_t ngroups);
int roster_storage_each(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user, roster_item_cb cb, void *ud);

#endif
