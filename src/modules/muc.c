/* SPDX-License-Identifier: MIT
 * muc.c - XEP-0045 multi-user chat on a service domain of each host
 * (conference.<domain> unless muc_domain says otherwise).
 *
 * A room lives on the worker that owns its bare JID (the router hands
 * every stanza for it there), so a room and its occupants are plain
 * per-instance state without locks. Rooms are kept in memory only.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/common.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../storage/storage.h"
#include "../xml/ns.h"
#include "../xml/parser.h"
#include "mam.h"
#include "tern/module.h"

#define NS_MUC_OWNER   "http://jabber.org/protocol/muc#owner"
#define NS_MUC_ADMIN   "http://jabber.org/protocol/muc#admin"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
#define MUC_HISTORY    20
#define MUC_MAX_FULLS  8
#define MUC_STORE      "muc_rooms"
#define NS_TERN_MUC    "urn:tern:muc:0"
#define MUC_MAX_QUEUED 64
#define MUC_MAX_FWD    64
/* Subjects are shown on every join and kept with the room: a bound keeps
 * one occupant from making every later join expensive. */
#define MUC_MAX_SUBJECT 1024
#define MUC_MAX_VCARD   (32 * 1024)

typedef enum { AFF_OUTCAST = -1, AFF_NONE = 0, AFF_MEMBER, AFF_ADMIN, AFF_OWNER } aff_t;
typedef enum { ROLE_NONE = 0, ROLE_VISITOR, ROLE_PARTICIPANT, ROLE_MODERATOR } role_t;

static const char *const aff_names[] = {"outcast", "none", "member", "admin", "owner"};
static const char *const role_names[] = {"none", "visitor", "participant", "moderator"};

typedef struct occupant {
    char *nick;
    char *bare;                 /* real bare JID */
    char *fulls[MUC_MAX_FULLS]; /* the real full JIDs joined under this nick */
    size_t nfull;
    role_t role;
    char oid[64];       /* XEP-0421 occupant id */
    xml_stanza_t *pres; /* last available presence, without from/to and MUC payloads */
    struct occupant *next;
} occupant_t;

typedef struct affil {
    char *jid;
    char *nick; /* reserved nickname (§7.10 registration), or NULL */
    aff_t aff;
    struct affil *next;
} affil_t;

typedef struct {
    xml_stanza_t *st; /* the broadcast message with its room 'from', no 'to' */
    time_t when;
    size_t chars;
} hist_t;

typedef struct {
    char *name, *desc, *secret;
    bool persistent, public_, membersonly, moderated, passwordprotected, whois_anyone;
    bool changesubject, allowinvites, allowpm;
    unsigned maxusers; /* 0 = no limit */
} room_cfg_t;

typedef struct room {
    tern_host_t *host; /* whose configuration names the service admins */
    char *local;
    char *jid; /* room@service */
    room_cfg_t cfg;
    bool locked; /* created, waiting for its owner's configuration */
    char *subject, *subject_from;
    time_t subject_when;
    char *vcard; /* the room's vcard-temp (avatar), serialised, or NULL */
    occupant_t *occupants;
    affil_t *affils;
    hist_t hist[MUC_HISTORY];
    size_t hist_start, hist_len;
    struct iq_fwd *fwds; /* iqs passed to an occupant, newest first */
    size_t nfwd;
    struct room *next;
} room_t;

/* An iq forwarded from one occupant to another under a new id, so the
 * answer can find its way back without showing real JIDs. */
typedef struct iq_fwd {
    char *id, *orig_id, *requester, *target;
    struct iq_fwd *next;
} iq_fwd_t;

/* Stanzas for a room not in memory wait here while storage is asked
 * whether it is a persistent room from an earlier run. */
typedef struct queued {
    xml_stanza_t *st;
    jid_t from, to;
    struct queued *next;
} queued_t;

typedef struct pending {
    char *local;
    queued_t *head, **tail;
    size_t n;
    struct pending *next;
} pending_t;

typedef struct dir_entry {
    char *jid, *name;
    struct dir_entry *next;
} dir_entry_t;

typedef struct {
    tern_host_t *host;
    tern_server_t *srv;
    char *domain;
    unsigned char key[32]; /* occupant-id HMAC key; worker 0's counts */
    room_t *rooms;
    pending_t *pending;
    /* The public rooms of every worker (worker 0's instance keeps it):
     * disco#items on the service runs on any worker. */
    pthread_mutex_t dir_lock;
    dir_entry_t *dir;
} muc_t;

extern const tern_module_def_t mod_muc;

/* ------------------------------------------------------------------ helpers */

static char *xasprintf(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *s = tern_xmalloc(n);
    snprintf(s, n, "%s%s%s", a, sep, b);
    return s;
}

static bool str_true(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static bool str_bool_ok(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "0") == 0 || strcmp(v, "true") == 0 ||
                 strcmp(v, "false") == 0);
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v && *v ? tern_xstrdup(v) : NULL;
}

static void route_to(muc_t *mt, xml_stanza_t *tmpl, const char *to)
{
    xml_stanza_t *c = xml_stanza_copy(tmpl);
    xml_node_set_attr(xml_stanza_root(c), "to", to);
    tern_route(mt->srv, c);
    xml_stanza_unref(c);
}

static void send_occ(muc_t *mt, const occupant_t *o, xml_stanza_t *tmpl)
{
    for (size_t i = 0; i < o->nfull; i++)
        route_to(mt, tmpl, o->fulls[i]);
}

/* Errors from the service name the room (or the service) that refused
 * in 'by' (RFC 6120 §8.3.2): a client in several rooms sees which one. */
static void bounce(muc_t *mt, const xml_stanza_t *st, const char *type, const char *condition,
                   const char *text)
{
    xml_stanza_t *err = tern_error_reply(st, type, condition, text, false);
    if (!err)
        return;
    xml_node_t *root = xml_stanza_root(err);
    jid_t j;
    const char *from = xml_node_attr(root, "from");
    if (from && jid_parse(from, &j) == 0) {
        char *by = jid_bare_string(&j);
        xml_node_set_attr(xml_node_child(root, "error", NULL), "by", by);
        free(by);
        jid_clear(&j);
    }
    tern_route(mt->srv, err);
    xml_stanza_unref(err);
}

static char *occ_jid(const room_t *r, const char *nick)
{
    return xasprintf(r->jid, "/", nick);
}

static room_t *find_room(muc_t *mt, const char *local)
{
    for (room_t *r = mt->rooms; r; r = r->next)
        if (strcmp(r->local, local) == 0)
            return r;
    return NULL;
}

static occupant_t *find_nick(room_t *r, const char *nick)
{
    for (occupant_t *o = r->occupants; o; o = o->next)
        if (strcmp(o->nick, nick) == 0)
            return o;
    return NULL;
}

static occupant_t *find_full(room_t *r, const char *full)
{
    for (occupant_t *o = r->occupants; o; o = o->next)
        for (size_t i = 0; i < o->nfull; i++)
            if (strcmp(o->fulls[i], full) == 0)
                return o;
    return NULL;
}

static size_t occupant_count(const room_t *r)
{
    size_t n = 0;
    for (const occupant_t *o = r->occupants; o; o = o->next)
        n++;
    return n;
}

static bool is_admin(char *const *admins, const char *bare)
{
    for (size_t i = 0; admins && admins[i]; i++)
        if (strcmp(admins[i], bare) == 0)
            return true;
    return false;
}

/* Service admins are owners of every room (§2, "service admin"). */
static aff_t get_aff(const room_t *r, const char *bare)
{
    if (is_admin(tern_host_config(r->host)->admins, bare))
        return AFF_OWNER;
    for (const affil_t *a = r->affils; a; a = a->next)
        if (strcmp(a->jid, bare) == 0)
            return a->aff;
    return AFF_NONE;
}

static void set_aff(room_t *r, const char *bare, aff_t aff)
{
    for (affil_t **pp = &r->affils; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->jid, bare) == 0) {
            if (aff == AFF_NONE) {
                affil_t *a = *pp;
                *pp = a->next;
                free(a->jid);
                free(a->nick);
                free(a);
            } else {
                (*pp)->aff = aff;
            }
            return;
        }
    }
    if (aff == AFF_NONE)
        return;
    affil_t *a = tern_xcalloc(1, sizeof(*a));
    a->jid = tern_xstrdup(bare);
    a->aff = aff;
    a->next = r->affils;
    r->affils = a;
}

static affil_t *find_affil(const room_t *r, const char *bare)
{
    for (affil_t *a = r->affils; a; a = a->next)
        if (strcmp(a->jid, bare) == 0)
            return a;
    return NULL;
}

/* The bare JID that reserved nick, or NULL. */
static const char *nick_holder(const room_t *r, const char *nick)
{
    for (const affil_t *a = r->affils; a; a = a->next)
        if (a->nick && strcmp(a->nick, nick) == 0)
            return a->jid;
    return NULL;
}

static int parse_aff(const char *s)
{
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, aff_names[i]) == 0)
            return i - 1;
    return -2;
}

static int parse_role(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    return -1;
}

static role_t default_role(const room_t *r, aff_t aff)
{
    if (aff >= AFF_ADMIN)
        return ROLE_MODERATOR;
    if (r->cfg.moderated && aff < AFF_MEMBER)
        return ROLE_VISITOR;
    return ROLE_PARTICIPANT;
}

static void occupant_free(occupant_t *o)
{
    free(o->nick);
    free(o->bare);
    for (size_t i = 0; i < o->nfull; i++)
        free(o->fulls[i]);
    if (o->pres)
        xml_stanza_unref(o->pres);
    free(o);
}

static void remove_occupant(room_t *r, occupant_t *o)
{
    for (occupant_t **pp = &r->occupants; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    occupant_free(o);
}

static void fwd_free(iq_fwd_t *f)
{
    free(f->id);
    free(f->orig_id);
    free(f->requester);
    free(f->target);
    free(f);
}

static void room_free(room_t *r)
{
    while (r->fwds) {
        iq_fwd_t *f = r->fwds;
        r->fwds = f->next;
        fwd_free(f);
    }
    while (r->occupants) {
        occupant_t *o = r->occupants;
        r->occupants = o->next;
        occupant_free(o);
    }
    while (r->affils) {
        affil_t *a = r->affils;
        r->affils = a->next;
        free(a->jid);
        free(a->nick);
        free(a);
    }
    for (size_t i = 0; i < r->hist_len; i++)
        xml_stanza_unref(r->hist[(r->hist_start + i) % MUC_HISTORY].st);
    free(r->cfg.name);
    free(r->cfg.desc);
    free(r->cfg.secret);
    free(r->subject);
    free(r->subject_from);
    free(r->vcard);
    free(r->local);
    free(r->jid);
    free(r);
}

static muc_t *primary(muc_t *mt)
{
    muc_t *p = tern_module_primary_state(mt->host, &mod_muc);
    return p ? p : mt;
}

/* Lists r in the service's directory if it is public and open for
 * business, else takes it out. */
static void dir_update(muc_t *mt, const room_t *r, bool gone)
{
    muc_t *p = primary(mt);
    bool listed = !gone && r->cfg.public_ && !r->locked;
    pthread_mutex_lock(&p->dir_lock);
    dir_entry_t **pp = &p->dir;
    while (*pp && strcmp((*pp)->jid, r->jid) != 0)
        pp = &(*pp)->next;
    if (*pp && !listed) {
        dir_entry_t *e = *pp;
        *pp = e->next;
        free(e->jid);
        free(e->name);
        free(e);
    } else if (listed) {
        if (!*pp) {
            *pp = tern_xcalloc(1, sizeof(**pp));
            (*pp)->jid = tern_xstrdup(r->jid);
        }
        free((*pp)->name);
        (*pp)->name = tern_xstrdup(r->cfg.name ? r->cfg.name : r->local);
    }
    pthread_mutex_unlock(&p->dir_lock);
}

static void destroy_room(muc_t *mt, room_t *r)
{
    dir_update(mt, r, true);
    /* the room is gone for good: a new room of that name starts empty */
    mam_room_delete(mt->host, mt->domain, r->local);
    for (room_t **pp = &mt->rooms; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    room_free(r);
}

static void maybe_gc(muc_t *mt, room_t *r)
{
    if (!r->occupants && !r->cfg.persistent)
        destroy_room(mt, r);
}

/* XEP-0421: the same real bare JID gets the same id in a room, and the id
 * tells nothing about the JID without the key. */
static void occupant_id(muc_t *mt, const room_t *r, const char *bare, char out[64])
{
    const muc_t *prim = tern_module_primary_state(mt->host, &mod_muc);
    const unsigned char *key = prim ? prim->key : mt->key;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *data = xasprintf(r->jid, " ", bare);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)data, strlen(data), md, &mdlen);
    free(data);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static void random_id(char out[33])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        memset(b, 0, sizeof(b));
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ------------------------------------------------------------------ storage */

enum { JOB_GET, JOB_PUT, JOB_DEL };

typedef struct {
    muc_t *mt;
    int op;
    char *host, *local;
    char *data;
    size_t len;
} store_job_t;

static int store_run(const storage_driver_t *drv, storage_db_t *db, void *arg)
{
    store_job_t *j = arg;
    const char *svc = j->mt->domain;
    switch (j->op) {
    case JOB_PUT:
        return drv->kv_put(db, j->host, svc, MUC_STORE, j->local, j->data, j->len);
    case JOB_DEL:
        return drv->kv_del(db, j->host, svc, MUC_STORE, j->local);
    default:
        return drv->kv_get(db, j->host, svc, MUC_STORE, j->local, &j->data, &j->len);
    }
}

static void store_job_free(store_job_t *j)
{
    free(j->host);
    free(j->local);
    free(j->data);
    free(j);
}

static void store_written(void *arg, int result)
{
    store_job_t *j = arg;
    if (result != 0 && !(j->op == JOB_DEL && result == TERN_ENOENT))
        log_warn("muc", "storing room %s@%s failed (%d)", j->local, j->mt->domain, result);
    store_job_free(j);
}

static store_job_t *store_job(muc_t *mt, int op, const char *local)
{
    store_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->mt = mt;
    j->op = op;
    j->host = tern_xstrdup(tern_host_domain(mt->host));
    j->local = tern_xstrdup(local);
    return j;
}

static void set_flag(xml_node_t *n, const char *name, bool v)
{
    xml_node_set_attr(n, name, v ? "1" : "0");
}

/* Writes what survives a restart: configuration, affiliations, subject;
 * a room that is not (or no longer) persistent is removed instead. */
static void save_room(muc_t *mt, const room_t *r)
{
    if (!r->cfg.persistent) {
        store_job_t *j = store_job(mt, JOB_DEL, r->local);
        if (tern_storage_submit(mt->srv, store_run, store_written, j) != 0)
            store_job_free(j);
        return;
    }
    xml_stanza_t *st = xml_stanza_new("room", NS_TERN_MUC);
    xml_node_t *n = xml_stanza_root(st);
    const room_cfg_t *c = &r->cfg;
    if (c->name)
        xml_node_set_attr(n, "name", c->name);
    if (c->desc)
        xml_node_set_attr(n, "desc", c->desc);
    if (c->secret)
        xml_node_set_attr(n, "secret", c->secret);
    set_flag(n, "public", c->public_);
    set_flag(n, "membersonly", c->membersonly);
    set_flag(n, "moderated", c->moderated);
    set_flag(n, "passwordprotected", c->passwordprotected);
    set_flag(n, "whois_anyone", c->whois_anyone);
    set_flag(n, "changesubject", c->changesubject);
    set_flag(n, "allowinvites", c->allowinvites);
    set_flag(n, "allowpm", c->allowpm);
    char num[32];
    snprintf(num, sizeof(num), "%u", c->maxusers);
    xml_node_set_attr(n, "maxusers", num);
    if (r->subject)
        xml_node_add_child_text(n, "subject", NS_TERN_MUC, r->subject);
    if (r->subject_from)
        xml_node_set_attr(n, "subject_from", r->subject_from);
    if (r->vcard)
        xml_node_add_child_text(n, "vcard", NS_TERN_MUC, r->vcard);
    for (const affil_t *a = r->affils; a; a = a->next) {
        xml_node_t *an = xml_node_add_child(n, "affiliation", NS_TERN_MUC);
        xml_node_set_attr(an, "jid", a->jid);
        xml_node_set_attr(an, "aff", aff_names[a->aff + 1]);
        if (a->nick)
            xml_node_set_attr(an, "nick", a->nick);
    }
    store_job_t *j = store_job(mt, JOB_PUT, r->local);
    j->data = xml_node_to_string(n, NS_CLIENT, &j->len);
    xml_stanza_unref(st);
    if (!j->data || tern_storage_submit(mt->srv, store_run, store_written, j) != 0)
        store_job_free(j);
}

static void save_if_persistent(muc_t *mt, const room_t *r)
{
    if (r->cfg.persistent)
        save_room(mt, r);
}

static room_t *create_room(muc_t *mt, const char *local);

static void load_room(muc_t *mt, const char *local, const char *data, size_t len)
{
    xml_stanza_t *st = xml_parse_element(data, len, NS_CLIENT, len);
    xml_node_t *n = st ? xml_stanza_root(st) : NULL;
    if (!xml_node_is(n, "room", NS_TERN_MUC)) {
        log_warn("muc", "stored room %s@%s is unreadable", local, mt->domain);
        if (st)
            xml_stanza_unref(st);
        return;
    }
    room_t *r = create_room(mt, local);
    r->locked = false;
    room_cfg_t *c = &r->cfg;
    c->persistent = true;
    set_str(&c->name, xml_node_attr(n, "name"));
    set_str(&c->desc, xml_node_attr(n, "desc"));
    set_str(&c->secret, xml_node_attr(n, "secret"));
    c->public_ = str_true(xml_node_attr(n, "public"));
    c->membersonly = str_true(xml_node_attr(n, "membersonly"));
    c->moderated = str_true(xml_node_attr(n, "moderated"));
    c->passwordprotected = str_true(xml_node_attr(n, "passwordprotected"));
    c->whois_anyone = str_true(xml_node_attr(n, "whois_anyone"));
    c->changesubject = str_true(xml_node_attr(n, "changesubject"));
    c->allowinvites = str_true(xml_node_attr(n, "allowinvites"));
    c->allowpm = str_true(xml_node_attr(n, "allowpm"));
    const char *mu = xml_node_attr(n, "maxusers");
    c->maxusers = mu ? (unsigned)strtoul(mu, NULL, 10) : 0;
    xml_node_t *subj = xml_node_child(n, "subject", NS_TERN_MUC);
    if (subj)
        set_str(&r->subject, xml_node_text(subj));
    set_str(&r->subject_from, xml_node_attr(n, "subject_from"));
    xml_node_t *vc = xml_node_child(n, "vcard", NS_TERN_MUC);
    if (vc)
        set_str(&r->vcard, xml_node_text(vc));
    for (xml_node_t *a = xml_node_child(n, "affiliation", NS_TERN_MUC); a;
         a = xml_node_next(a, "affiliation", NS_TERN_MUC)) {
        int aff = parse_aff(xml_node_attr(a, "aff"));
        const char *jid = xml_node_attr(a, "jid");
        if (jid && aff >= -1 && aff != AFF_NONE) {
            set_aff(r, jid, (aff_t)aff);
            set_str(&find_affil(r, jid)->nick, xml_node_attr(a, "nick"));
        }
    }
    dir_update(mt, r, false);
    xml_stanza_unref(st);
}

static void dispatch(muc_t *mt, tern_stanza_ev_t *ev);

typedef struct {
    muc_t *mt;
    char *local;
    pending_t *p;
} history_job_t;

static void run_queue(muc_t *mt, pending_t *p);
static void add_history(room_t *r, xml_stanza_t *m);

static void history_loaded(void *ud, xml_stanza_t *const *msgs, const time_t *whens, size_t n)
{
    history_job_t *h = ud;
    muc_t *mt = h->mt;
    room_t *r = find_room(mt, h->local);
    for (size_t i = 0; r && i < n; i++) {
        add_history(r, msgs[i]);
        r->hist[(r->hist_start + r->hist_len - 1) % MUC_HISTORY].when = whens[i];
    }
    for (pending_t **pp = &mt->pending; *pp; pp = &(*pp)->next) {
        if (*pp == h->p) {
            *pp = h->p->next;
            break;
        }
    }
    run_queue(mt, h->p);
    free(h->local);
    free(h);
}

static void room_looked_up(void *arg, int result)
{
    store_job_t *j = arg;
    muc_t *mt = j->mt;
    pending_t *p = NULL;
    for (pending_t **pp = &mt->pending; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->local, j->local) == 0) {
            p = *pp;
            *pp = p->next;
            break;
        }
    }
    bool loaded = false;
    if (result == 0 && j->data && !find_room(mt, j->local)) {
        load_room(mt, j->local, j->data, j->len);
        loaded = find_room(mt, j->local) != NULL;
    } else if (result != 0 && result != TERN_ENOENT) {
        log_warn("muc", "looking up room %s@%s failed (%d)", j->local, mt->domain, result);
    }
    if (loaded && p) {
        /* The stanzas wait on until the room's history is back from the
         * archive, so the first joiner after a restart gets it. */
        history_job_t *h = tern_xcalloc(1, sizeof(*h));
        h->mt = mt;
        h->local = tern_xstrdup(j->local);
        h->p = p;
        p->next = mt->pending;
        mt->pending = p;
        if (mam_room_recent(mt->host, mt->domain, j->local, MUC_HISTORY, history_loaded, h) == 0) {
            store_job_free(j);
            return;
        }
        mt->pending = p->next;
        free(h->local);
        free(h);
    }
    store_job_free(j);
    if (p)
        run_queue(mt, p);
}

static void run_queue(muc_t *mt, pending_t *p)
{
    while (p->head) {
        queued_t *q = p->head;
        p->head = q->next;
        tern_stanza_ev_t ev = {.host = mt->host, .stanza = q->st, .from = &q->from, .to = &q->to};
        dispatch(mt, &ev);
        xml_stanza_unref(q->st);
        jid_clear(&q->from);
        jid_clear(&q->to);
        free(q);
    }
    free(p->local);
    free(p);
}

static bool is_pending(const muc_t *mt, const char *local)
{
    for (const pending_t *p = mt->pending; p; p = p->next)
        if (strcmp(p->local, local) == 0)
            return true;
    return false;
}

/* Holds ev until storage said whether its room exists. */
static void queue_for_lookup(muc_t *mt, tern_stanza_ev_t *ev)
{
    pending_t *p = mt->pending;
    while (p && strcmp(p->local, ev->to->local) != 0)
        p = p->next;
    if (!p) {
        store_job_t *j = store_job(mt, JOB_GET, ev->to->local);
        if (tern_storage_submit(mt->srv, store_run, room_looked_up, j) != 0) {
            store_job_free(j);
            bounce(mt, ev->stanza, "wait", "internal-server-error", NULL);
            return;
        }
        p = tern_xcalloc(1, sizeof(*p));
        p->local = tern_xstrdup(ev->to->local);
        p->tail = &p->head;
        p->next = mt->pending;
        mt->pending = p;
    }
    if (p->n >= MUC_MAX_QUEUED) {
        bounce(mt, ev->stanza, "wait", "resource-constraint", NULL);
        return;
    }
    queued_t *q = tern_xcalloc(1, sizeof(*q));
    if (jid_copy(ev->from, &q->from) != 0 || jid_copy(ev->to, &q->to) != 0) {
        jid_clear(&q->from);
        free(q);
        return;
    }
    q->st = xml_stanza_ref(ev->stanza);
    *p->tail = q;
    p->tail = &q->next;
    p->n++;
}

/* ------------------------------------------------------------------ presence */

static bool sees_jids(const room_t *r, const occupant_t *viewer)
{
    return r->cfg.whois_anyone || (viewer && viewer->role == ROLE_MODERATOR);
}

/* The presence of o as the room shows it to viewer. type NULL = available. */
static xml_stanza_t *occ_presence(const room_t *r, const occupant_t *o, const occupant_t *viewer,
                                  const char *type, const char *nick_override)
{
    xml_stanza_t *p;
    if (o->pres && !type) {
        p = xml_stanza_copy(o->pres);
    } else {
        p = xml_stanza_new("presence", NS_CLIENT);
        if (type)
            xml_node_set_attr(xml_stanza_root(p), "type", type);
    }
    xml_node_t *root = xml_stanza_root(p);
    char *from = occ_jid(r, nick_override ? nick_override : o->nick);
    xml_node_set_attr(root, "from", from);
    free(from);
    xml_node_t *x = xml_node_add_child(root, "x", NS_MUC_USER);
    xml_node_t *item = xml_node_add_child(x, "item", NS_MUC_USER);
    xml_node_set_attr(item, "affiliation", aff_names[get_aff(r, o->bare) + 1]);
    xml_node_set_attr(item, "role", role_names[type ? ROLE_NONE : o->role]);
    /* Everyone may see their own address (§7.2.3). */
    if (sees_jids(r, viewer) || viewer == o)
        xml_node_set_attr(item, "jid", o->fulls[0]);
    xml_node_set_attr(xml_node_add_child(root, "occupant-id", NS_OCCUPANT_ID), "id", o->oid);
    return p;
}

/* Moves child to the end of its parent. */
static void move_last(xml_node_t *parent, xml_node_t *child)
{
    if (!child || child == parent->last_child)
        return;
    xml_node_append_copy(parent, child);
    xml_node_detach(child);
}

static void add_status(xml_stanza_t *p, const char *code)
{
    xml_node_t *x = xml_node_child(xml_stanza_root(p), "x", NS_MUC_USER);
    xml_node_t *s = xml_node_add_child(x, "status", NS_MUC_USER);
    xml_node_set_attr(s, "code", code);
    /* Prosody's order, which clients and its test scripts expect: the
     * codes about the change (201, 303, 307...) before the item, "this is
     * you" (110) after it. */
    move_last(x, xml_node_child(x, "item", NS_MUC_USER));
    for (xml_node_t *c = xml_node_child(x, "status", NS_MUC_USER); c;
         c = xml_node_next(c, "status", NS_MUC_USER)) {
        const char *v = xml_node_attr(c, "code");
        if (v && strcmp(v, "110") == 0) {
            move_last(x, c);
            break;
        }
    }
}

/* Sends o's presence (type NULL or "unavailable") to every occupant, the
 * self-presence with 110 plus extra status codes to o's sessions. */
/* Who made a change to o's role or affiliation (§8.2, §9.2): the nick,
 * and the address only for viewers who may see addresses. */
static void add_actor(const room_t *r, xml_stanza_t *p, const occupant_t *o,
                      const occupant_t *actor, const occupant_t *viewer)
{
    if (!actor)
        return;
    xml_node_t *x = xml_node_child(xml_stanza_root(p), "x", NS_MUC_USER);
    xml_node_t *an =
        xml_node_add_child(xml_node_child(x, "item", NS_MUC_USER), "actor", NS_MUC_USER);
    xml_node_set_attr(an, "nick", actor->nick);
    if (sees_jids(r, viewer) && actor != o)
        xml_node_set_attr(an, "jid", actor->fulls[0]);
}

static void broadcast_presence(muc_t *mt, room_t *r, occupant_t *o, const char *type,
                               const char *const *codes, size_t ncodes, const char *new_nick,
                               const occupant_t *actor)
{
    for (occupant_t *v = r->occupants; v; v = v->next) {
        xml_stanza_t *p = occ_presence(r, o, v, type, NULL);
        add_actor(r, p, o, actor, v);
        if (new_nick) {
            /* a nick change is a departure in form only: the role stays */
            xml_node_t *x = xml_node_child(xml_stanza_root(p), "x", NS_MUC_USER);
            xml_node_t *item = xml_node_child(x, "item", NS_MUC_USER);
            xml_node_set_attr(item, "nick", new_nick);
            xml_node_set_attr(item, "role", role_names[o->role]);
        }
        for (size_t i = 0; i < ncodes; i++)
            add_status(p, codes[i]);
        if (v == o)
            add_status(p, "110");
        send_occ(mt, v, p);
        xml_stanza_unref(p);
    }
}

/* Removes o with an unavailable presence to all (codes: 307 kick, 301
 * ban, 321 affiliation change) and the room if it is now empty. */
static void eject(muc_t *mt, room_t *r, occupant_t *o, const char *code, const char *reason,
                  const occupant_t *actor)
{
    for (occupant_t *v = r->occupants; v; v = v->next) {
        xml_stanza_t *p = occ_presence(r, o, v, "unavailable", NULL);
        xml_node_t *x = xml_node_child(xml_stanza_root(p), "x", NS_MUC_USER);
        add_actor(r, p, o, actor, v);
        if (reason && *reason)
            xml_node_add_child_text(xml_node_child(x, "item", NS_MUC_USER), "reason", NS_MUC_USER,
                                    reason);
        if (code)
            add_status(p, code);
        if (v == o)
            add_status(p, "110");
        send_occ(mt, v, p);
        xml_stanza_unref(p);
    }
    remove_occupant(r, o);
}

static void send_history(muc_t *mt, room_t *r, const char *to, xml_node_t *hreq)
{
    long maxstanzas = MUC_HISTORY, maxchars = -1, seconds = -1;
    time_t since = 0;
    if (hreq) {
        const char *v;
        if ((v = xml_node_attr(hreq, "maxstanzas")))
            maxstanzas = strtol(v, NULL, 10);
        if ((v = xml_node_attr(hreq, "maxchars")))
            maxchars = strtol(v, NULL, 10);
        if ((v = xml_node_attr(hreq, "seconds")))
            seconds = strtol(v, NULL, 10);
        if ((v = xml_node_attr(hreq, "since"))) {
            struct tm tm = {0};
            if (strptime(v, "%Y-%m-%dT%H:%M:%S", &tm))
                since = timegm(&tm);
        }
    }
    time_t now = time(NULL);
    size_t first = r->hist_len;
    long chars = 0, count = 0;
    /* walk back from the newest while the limits allow */
    while (first > 0) {
        const hist_t *h = &r->hist[(r->hist_start + first - 1) % MUC_HISTORY];
        if (maxstanzas >= 0 && count >= maxstanzas)
            break;
        if (maxchars >= 0 && chars + (long)h->chars > maxchars)
            break;
        if (seconds >= 0 && now - h->when > seconds)
            break;
        if (since && h->when < since)
            break;
        chars += (long)h->chars;
        count++;
        first--;
    }
    for (size_t i = first; i < r->hist_len; i++) {
        const hist_t *h = &r->hist[(r->hist_start + i) % MUC_HISTORY];
        xml_stanza_t *c = xml_stanza_copy(h->st);
        xml_node_set_attr(xml_stanza_root(c), "to", to);
        tern_stamp_delay(xml_stanza_root(c), r->jid, h->when, NULL);
        tern_route(mt->srv, c);
        xml_stanza_unref(c);
    }
}

static xml_stanza_t *subject_message(const room_t *r)
{
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "type", "groupchat");
    if (r->subject_from) {
        char *from = occ_jid(r, r->subject_from);
        xml_node_set_attr(root, "from", from);
        free(from);
    } else {
        xml_node_set_attr(root, "from", r->jid);
    }
    xml_node_add_child_text(root, "subject", NS_CLIENT, r->subject ? r->subject : "");
    /* when it was set (§7.2.15), so clients do not take it for news */
    tern_stamp_delay(root, r->jid, r->subject_when, NULL);
    return m;
}

static room_t *create_room(muc_t *mt, const char *local)
{
    room_t *r = tern_xcalloc(1, sizeof(*r));
    r->host = mt->host;
    r->subject_when = time(NULL);
    r->local = tern_xstrdup(local);
    r->jid = xasprintf(local, "@", mt->domain);
    r->cfg.public_ = true;
    r->cfg.allowpm = true;
    r->locked = true;
    r->next = mt->rooms;
    mt->rooms = r;
    return r;
}

static void strip_muc_payloads(xml_node_t *root)
{
    xml_node_t *x;
    while ((x = xml_node_child(root, "x", NS_MUC)))
        xml_node_detach(x);
    while ((x = xml_node_child(root, "x", NS_MUC_USER)))
        xml_node_detach(x);
    while ((x = xml_node_child(root, "occupant-id", NS_OCCUPANT_ID)))
        xml_node_detach(x); /* only the room's own may be believed */
    xml_node_set_attr(root, "from", NULL);
    xml_node_set_attr(root, "to", NULL);
}

static void welcome(muc_t *mt, room_t *r, occupant_t *o, const char *full, bool created,
                    xml_node_t *mx);

/* o (re)joins from full: everyone else sees its presence, then its
 * session gets what a joiner is owed. */
static void enter(muc_t *mt, room_t *r, occupant_t *o, const char *full, bool created,
                  xml_node_t *mx)
{
    for (occupant_t *v = r->occupants; v; v = v->next) {
        if (v == o)
            continue;
        xml_stanza_t *p = occ_presence(r, o, v, NULL, NULL);
        send_occ(mt, v, p);
        xml_stanza_unref(p);
    }
    welcome(mt, r, o, full, created, mx);
}

static void join(muc_t *mt, room_t *r, bool created, xml_stanza_t *st, const char *full,
                 const char *bare, const char *nick)
{
    xml_node_t *root = xml_stanza_root(st);
    xml_node_t *mx = xml_node_child(root, "x", NS_MUC);
    aff_t aff = get_aff(r, bare);
    occupant_t *same = find_nick(r, nick);
    if (!created) {
        if (r->locked && aff != AFF_OWNER) {
            bounce(mt, st, "cancel", "item-not-found", NULL);
            return;
        }
        if (aff == AFF_OUTCAST) {
            bounce(mt, st, "auth", "forbidden", NULL);
            return;
        }
        const char *holder = nick_holder(r, nick);
        if ((same && strcmp(same->bare, bare) != 0) || (holder && strcmp(holder, bare) != 0)) {
            bounce(mt, st, "cancel", "conflict", NULL);
            return;
        }
        if (r->cfg.membersonly && aff < AFF_MEMBER) {
            bounce(mt, st, "auth", "registration-required", NULL);
            return;
        }
        unsigned cap = tern_host_config(mt->host)->muc_max_occupants;
        if (r->cfg.maxusers && r->cfg.maxusers < cap)
            cap = r->cfg.maxusers;
        if (!same && occupant_count(r) >= cap && aff < AFF_ADMIN) {
            bounce(mt, st, "wait", "service-unavailable", NULL);
            return;
        }
        if (r->cfg.passwordprotected && aff != AFF_OWNER) {
            const char *pw = mx ? xml_node_text(xml_node_child(mx, "password", NS_MUC)) : NULL;
            if (!pw || !r->cfg.secret || strcmp(pw, r->cfg.secret) != 0) {
                bounce(mt, st, "auth", "not-authorized", NULL);
                return;
            }
        }
    }
    xml_stanza_t *pres = xml_stanza_copy(st);
    strip_muc_payloads(xml_stanza_root(pres));
    occupant_t *o = same;
    if (o) {
        /* another session of the same person under the same nick */
        if (o->nfull >= MUC_MAX_FULLS) {
            xml_stanza_unref(pres);
            bounce(mt, st, "wait", "resource-constraint", NULL);
            return;
        }
        o->fulls[o->nfull++] = tern_xstrdup(full);
        xml_stanza_unref(o->pres);
        o->pres = pres;
    } else {
        o = tern_xcalloc(1, sizeof(*o));
        o->nick = tern_xstrdup(nick);
        o->bare = tern_xstrdup(bare);
        occupant_id(mt, r, bare, o->oid);
        o->fulls[o->nfull++] = tern_xstrdup(full);
        o->role = default_role(r, aff);
        o->pres = pres;
        /* append so the join order is kept */
        occupant_t **pp = &r->occupants;
        while (*pp)
            pp = &(*pp)->next;
        *pp = o;
    }
    enter(mt, r, o, full, created, mx);
}

/* What a (re)joining session is owed (§7.2.3-§7.2.16): everyone else's
 * presence, its own with the status codes, the history, the subject. */
static void welcome(muc_t *mt, room_t *r, occupant_t *o, const char *full, bool created,
                    xml_node_t *mx)
{
    for (occupant_t *v = r->occupants; v; v = v->next) {
        if (v == o)
            continue;
        xml_stanza_t *p = occ_presence(r, v, o, NULL, NULL);
        route_to(mt, p, full);
        xml_stanza_unref(p);
    }
    xml_stanza_t *self = occ_presence(r, o, o, NULL, NULL);
    if (r->cfg.whois_anyone)
        add_status(self, "100");
    if (created)
        add_status(self, "201");
    /* §7.2.9: the nick asked for is not the nick given (the address
     * preparation of RFC 7622 changed it) */
    const char *asked = mx ? xml_node_attr(mx->parent, "to") : NULL;
    const char *slash = asked ? strchr(asked, '/') : NULL;
    if (slash && strcmp(slash + 1, o->nick) != 0)
        add_status(self, "210");
    add_status(self, "110");
    route_to(mt, self, full);
    xml_stanza_unref(self);
    send_history(mt, r, full, mx ? xml_node_child(mx, "history", NS_MUC) : NULL);
    xml_stanza_t *subj = subject_message(r);
    route_to(mt, subj, full);
    xml_stanza_unref(subj);
}

static void leave(muc_t *mt, room_t *r, occupant_t *o, xml_stanza_t *st, const char *full)
{
    if (o->nfull > 1) {
        /* one of several sessions goes: only it hears about it */
        for (size_t i = 0; i < o->nfull; i++) {
            if (strcmp(o->fulls[i], full) == 0) {
                free(o->fulls[i]);
                o->fulls[i] = o->fulls[--o->nfull];
                break;
            }
        }
        xml_stanza_t *p = occ_presence(r, o, o, "unavailable", NULL);
        add_status(p, "110");
        route_to(mt, p, full);
        xml_stanza_unref(p);
        return;
    }
    xml_node_t *status = xml_node_child(xml_stanza_root(st), "status", NULL);
    for (occupant_t *v = r->occupants; v; v = v->next) {
        xml_stanza_t *p = occ_presence(r, o, v, "unavailable", NULL);
        if (status)
            xml_node_append_copy(xml_stanza_root(p), status);
        if (v == o)
            add_status(p, "110");
        send_occ(mt, v, p);
        xml_stanza_unref(p);
    }
    remove_occupant(r, o);
    maybe_gc(mt, r);
}

static void change_nick(muc_t *mt, room_t *r, occupant_t *o, xml_stanza_t *st, const char *nick)
{
    occupant_t *other = find_nick(r, nick);
    const char *holder = nick_holder(r, nick);
    if (other || (holder && strcmp(holder, o->bare) != 0)) {
        bounce(mt, st, "cancel", "conflict", NULL);
        return;
    }
    const char *codes[] = {"303"};
    broadcast_presence(mt, r, o, "unavailable", codes, 1, nick, NULL);
    free(o->nick);
    o->nick = tern_xstrdup(nick);
    broadcast_presence(mt, r, o, NULL, NULL, 0, NULL, NULL);
}

static bool may_create(muc_t *mt, const char *bare)
{
    const config_host_t *hc = tern_host_config(mt->host);
    if (strcmp(hc->muc_room_creation, "admins") == 0)
        return is_admin(hc->admins, bare);
    if (strcmp(hc->muc_room_creation, "local") == 0) {
        const char *at = strchr(bare, '@');
        return is_admin(hc->admins, bare) || (at && strcmp(at + 1, hc->domain) == 0);
    }
    return true;
}

/* An occupant asking for another's current presence; for a member who is
 * away, an unavailable presence naming the reserved nick. */
static void on_probe(muc_t *mt, room_t *r, xml_stanza_t *st, occupant_t *self, const char *full,
                     const char *nick)
{
    if (!self || !nick) {
        bounce(mt, st, "cancel", "not-acceptable", NULL);
        return;
    }
    occupant_t *t = find_nick(r, nick);
    xml_stanza_t *p = NULL;
    if (t) {
        p = occ_presence(r, t, self, NULL, NULL);
    } else {
        const char *holder = nick_holder(r, nick);
        if (!holder) {
            bounce(mt, st, "cancel", "item-not-found", NULL);
            return;
        }
        p = xml_stanza_new("presence", NS_CLIENT);
        xml_node_t *root = xml_stanza_root(p);
        char *from = occ_jid(r, nick);
        xml_node_set_attr(root, "from", from);
        free(from);
        xml_node_set_attr(root, "type", "unavailable");
        xml_node_t *item =
            xml_node_add_child(xml_node_add_child(root, "x", NS_MUC_USER), "item", NS_MUC_USER);
        xml_node_set_attr(item, "nick", nick);
        xml_node_set_attr(item, "affiliation", aff_names[get_aff(r, holder) + 1]);
        xml_node_set_attr(item, "role", "none");
        if (sees_jids(r, self))
            xml_node_set_attr(item, "jid", holder);
    }
    route_to(mt, p, full);
    xml_stanza_unref(p);
}

static void on_presence(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, const char *full,
                        const char *bare)
{
    xml_node_t *root = xml_stanza_root(ev->stanza);
    const char *type = xml_node_attr(root, "type");
    const char *nick = ev->to->resource;
    occupant_t *o = r ? find_full(r, full) : NULL;
    if (type && strcmp(type, "probe") == 0) {
        on_probe(mt, r, ev->stanza, o, full, nick);
        return;
    }
    if (type && strcmp(type, "unavailable") != 0 && strcmp(type, "error") != 0)
        return; /* subscriptions mean nothing to a room */
    if (type) {
        if (o)
            leave(mt, r, o, ev->stanza, full);
        return;
    }
    if (!nick) {
        bounce(mt, ev->stanza, "modify", "jid-malformed", NULL);
        return;
    }
    if (o) {
        if (strcmp(o->nick, nick) != 0) {
            change_nick(mt, r, o, ev->stanza, nick);
            return;
        }
        xml_stanza_t *pres = xml_stanza_copy(ev->stanza);
        strip_muc_payloads(xml_stanza_root(pres));
        xml_stanza_unref(o->pres);
        o->pres = pres;
        xml_node_t *mx = xml_node_child(root, "x", NS_MUC);
        if (mx) {
            /* A join from a session already in: the client lost track
             * (a reconnect it did not notice, say) and resynchronises. */
            enter(mt, r, o, full, false, mx);
        } else {
            broadcast_presence(mt, r, o, NULL, NULL, 0, NULL, NULL);
        }
        return;
    }
    bool created = false;
    if (!r) {
        if (!may_create(mt, bare)) {
            bounce(mt, ev->stanza, "cancel", "not-allowed", "Room creation is restricted");
            return;
        }
        r = create_room(mt, ev->to->local);
        set_aff(r, bare, AFF_OWNER);
        created = true;
    }
    join(mt, r, created, ev->stanza, full, bare, nick);
    if (created && !r->occupants)
        destroy_room(mt, r);
}

/* ------------------------------------------------------------------ messages */

static void add_history(room_t *r, xml_stanza_t *m)
{
    if (r->hist_len == MUC_HISTORY) {
        xml_stanza_unref(r->hist[r->hist_start].st);
        r->hist_start = (r->hist_start + 1) % MUC_HISTORY;
        r->hist_len--;
    }
    hist_t *h = &r->hist[(r->hist_start + r->hist_len) % MUC_HISTORY];
    h->st = xml_stanza_ref(m);
    h->when = time(NULL);
    h->chars = xml_stanza_wire_len(m, NS_CLIENT);
    r->hist_len++;
}

/* The hot path: m (no 'to') goes to every session in the room, written
 * out once and shared by all copies (xml_stanza_copy_to). */
static void broadcast_message(muc_t *mt, room_t *r, xml_stanza_t *m)
{
    for (occupant_t *v = r->occupants; v; v = v->next) {
        for (size_t i = 0; i < v->nfull; i++) {
            xml_stanza_t *c = xml_stanza_copy_to(m, v->fulls[i], NS_CLIENT);
            tern_route(mt->srv, c);
            xml_stanza_unref(c);
        }
    }
}

static void on_groupchat(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, occupant_t *o)
{
    xml_node_t *root = xml_stanza_root(ev->stanza);
    xml_node_t *subject = xml_node_child(root, "subject", NULL);
    xml_node_t *body = xml_node_child(root, "body", NULL);
    if (subject && !body) {
        if (!(o->role == ROLE_MODERATOR || (r->cfg.changesubject && o->role >= ROLE_PARTICIPANT))) {
            bounce(mt, ev->stanza, "auth", "forbidden", NULL);
            return;
        }
        if (strlen(xml_node_text(subject)) > MUC_MAX_SUBJECT) {
            bounce(mt, ev->stanza, "modify", "not-acceptable", "Subject too long");
            return;
        }
        set_str(&r->subject, xml_node_text(subject));
        set_str(&r->subject_from, o->nick);
        r->subject_when = time(NULL);
        save_if_persistent(mt, r);
    } else if (o->role < ROLE_PARTICIPANT) {
        bounce(mt, ev->stanza, "auth", "forbidden", NULL);
        return;
    }
    xml_stanza_t *m = xml_stanza_copy(ev->stanza);
    xml_node_t *mr = xml_stanza_root(m);
    /* ids from the sender cannot be trusted to be ours */
    for (xml_node_t *c = xml_node_child(mr, NULL, NULL), *next; c; c = next) {
        next = xml_node_next(c, NULL, NULL);
        if (xml_node_is(c, "stanza-id", NS_STANZA_ID) ||
            xml_node_is(c, "occupant-id", NS_OCCUPANT_ID))
            xml_node_detach(c);
    }
    char *from = occ_jid(r, o->nick);
    xml_node_set_attr(mr, "from", from);
    free(from);
    xml_node_set_attr(mr, "to", NULL);
    if (!(subject && !body)) {
        char id[33];
        random_id(id);
        xml_node_t *sid = xml_node_add_child(mr, "stanza-id", NS_STANZA_ID);
        xml_node_set_attr(sid, "id", id);
        xml_node_set_attr(sid, "by", r->jid);
    }
    xml_node_set_attr(xml_node_add_child(mr, "occupant-id", NS_OCCUPANT_ID), "id", o->oid);
    if (body) {
        /* Archived before anyone sees it: a message that cannot be kept
         * is refused rather than shown and then missing from the log. */
        xml_node_t *sid = xml_node_child(mr, "stanza-id", NS_STANZA_ID);
        if (mam_room_archive(mt->host, mt->domain, r->local, xml_node_attr(sid, "id"), m,
                             o->bare) == TERN_EAGAIN) {
            xml_stanza_unref(m);
            bounce(mt, ev->stanza, "wait", "resource-constraint", NULL);
            return;
        }
        add_history(r, m);
    }
    broadcast_message(mt, r, m);
    xml_stanza_unref(m);
}

static void on_invite(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, occupant_t *o, xml_node_t *inv,
                      const char *full)
{
    aff_t aff = get_aff(r, o->bare);
    if (r->cfg.membersonly && !r->cfg.allowinvites && aff < AFF_ADMIN) {
        bounce(mt, ev->stanza, "auth", "forbidden", NULL);
        return;
    }
    const char *to = xml_node_attr(inv, "to");
    jid_t tj;
    if (!to || jid_parse(to, &tj) != 0) {
        bounce(mt, ev->stanza, "modify", "jid-malformed", NULL);
        return;
    }
    char *tbare = jid_bare_string(&tj);
    if (r->cfg.membersonly && get_aff(r, tbare) == AFF_NONE) {
        set_aff(r, tbare, AFF_MEMBER);
        save_if_persistent(mt, r);
    }
    free(tbare);
    jid_clear(&tj);
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", r->jid);
    /* The inviter's id travels on, so a client can match errors to it. */
    const char *id = xml_node_attr(xml_stanza_root(ev->stanza), "id");
    if (id)
        xml_node_set_attr(root, "id", id);
    xml_node_t *x = xml_node_add_child(root, "x", NS_MUC_USER);
    xml_node_t *i = xml_node_add_child(x, "invite", NS_MUC_USER);
    /* A semi-anonymous room does not give the inviter's address away. */
    char *inviter = r->cfg.whois_anyone ? tern_xstrdup(full) : occ_jid(r, o->nick);
    xml_node_set_attr(i, "from", inviter);
    xml_node_t *reason = xml_node_child(inv, "reason", NULL);
    const char *why = reason ? xml_node_text(reason) : "";
    xml_node_add_child_text(i, "reason", NS_MUC_USER, why);
    if (r->cfg.passwordprotected && r->cfg.secret)
        xml_node_add_child_text(x, "password", NS_MUC_USER, r->cfg.secret);
    char *head = xasprintf(inviter, " invited you to the room ", r->jid);
    char *body = *why ? xasprintf(head, ": ", why) : tern_xstrdup(head);
    xml_node_add_child_text(root, "body", NS_CLIENT, body);
    free(body);
    free(head);
    free(inviter);
    /* XEP-0249's element too, for clients that only know direct invites */
    xml_node_t *dx = xml_node_add_child(root, "x", NS_X_CONFERENCE);
    xml_node_set_attr(dx, "jid", r->jid);
    if (*why)
        xml_node_set_attr(dx, "reason", why);
    if (r->cfg.passwordprotected && r->cfg.secret)
        xml_node_set_attr(dx, "password", r->cfg.secret);
    route_to(mt, m, to);
    xml_stanza_unref(m);
}

static xml_node_t *add_field(xml_node_t *x, const char *var, const char *type, const char *label,
                             const char *value);

static void on_decline(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, xml_node_t *decline)
{
    const char *to = xml_node_attr(decline, "to");
    jid_t tj;
    if (!to || jid_parse(to, &tj) != 0) {
        bounce(mt, ev->stanza, "modify", "jid-malformed", NULL);
        return;
    }
    jid_clear(&tj);
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", r->jid);
    const char *id = xml_node_attr(xml_stanza_root(ev->stanza), "id");
    if (id)
        xml_node_set_attr(root, "id", id);
    xml_node_t *d =
        xml_node_add_child(xml_node_add_child(root, "x", NS_MUC_USER), "decline", NS_MUC_USER);
    char *decliner = jid_bare_string(ev->from);
    xml_node_set_attr(d, "from", decliner);
    free(decliner);
    xml_node_t *reason = xml_node_child(decline, "reason", NULL);
    if (reason)
        xml_node_add_child_text(d, "reason", NS_MUC_USER, xml_node_text(reason));
    /* invitations from a semi-anonymous room name the inviter by nick */
    size_t rl = strlen(r->jid);
    occupant_t *inviter =
        strncmp(to, r->jid, rl) == 0 && to[rl] == '/' ? find_nick(r, to + rl + 1) : NULL;
    if (inviter)
        send_occ(mt, inviter, m);
    else
        route_to(mt, m, to);
    xml_stanza_unref(m);
}

static const char *form_value(const xml_node_t *x, const char *var)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *v = xml_node_attr(f, "var");
        if (v && strcmp(v, var) == 0) {
            xml_node_t *val = xml_node_child(f, "value", NS_DATA);
            return val ? xml_node_text(val) : "";
        }
    }
    return NULL;
}

static bool is_voice_form(const xml_node_t *x)
{
    const char *ft = form_value(x, "FORM_TYPE");
    return ft && strcmp(ft, NS_MUC "#request") == 0;
}

/* §7.13 / §8.6: a visitor asks for voice (the request goes to the
 * moderators as a form), a moderator answers with the form filled in. */
static void on_voice_form(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, occupant_t *o, xml_node_t *x)
{
    const char *type = xml_node_attr(x, "type");
    const char *role = form_value(x, "muc#role");
    if (!type || strcmp(type, "submit") != 0 || (role && strcmp(role, "participant") != 0)) {
        bounce(mt, ev->stanza, "modify", "bad-request", NULL);
        return;
    }
    if (o->role == ROLE_MODERATOR) {
        const char *nick = form_value(x, "muc#roomnick");
        const char *allow = form_value(x, "muc#request_allow");
        occupant_t *t = nick ? find_nick(r, nick) : NULL;
        if (!t) {
            bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
            return;
        }
        if (allow && str_true(allow) && t->role == ROLE_VISITOR) {
            t->role = ROLE_PARTICIPANT;
            broadcast_presence(mt, r, t, NULL, NULL, 0, NULL, o);
        }
        return;
    }
    if (o->role != ROLE_VISITOR) {
        bounce(mt, ev->stanza, "modify", "not-acceptable", NULL);
        return;
    }
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", r->jid);
    xml_node_t *f = xml_node_add_child(root, "x", NS_DATA);
    xml_node_set_attr(f, "type", "form");
    xml_node_add_child_text(f, "title", NS_DATA, "Voice request");
    add_field(f, "FORM_TYPE", "hidden", NULL, NS_MUC "#request");
    add_field(f, "muc#role", "list-single", "Requested role", "participant");
    add_field(f, "muc#jid", "jid-single", "User ID", o->bare);
    add_field(f, "muc#roomnick", "text-single", "Room Nickname", o->nick);
    add_field(f, "muc#request_allow", "boolean", "Grant voice to this person?", "false");
    for (occupant_t *v = r->occupants; v; v = v->next)
        if (v->role == ROLE_MODERATOR)
            send_occ(mt, v, m);
    xml_stanza_unref(m);
}

static void on_message(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, const char *full)
{
    xml_node_t *root = xml_stanza_root(ev->stanza);
    const char *type = xml_node_attr(root, "type");
    if (type && strcmp(type, "error") == 0)
        return;
    if (!r) {
        bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
        return;
    }
    xml_node_t *ux = xml_node_child(root, "x", NS_MUC_USER);
    xml_node_t *decline = ux ? xml_node_child(ux, "decline", NS_MUC_USER) : NULL;
    if (decline && !ev->to->resource) {
        /* the invitee is not in the room, by definition (§7.8.2) */
        on_decline(mt, r, ev, decline);
        return;
    }
    occupant_t *o = find_full(r, full);
    if (!o) {
        bounce(mt, ev->stanza, "cancel", "not-acceptable", NULL);
        return;
    }
    if (!ev->to->resource) {
        if (type && strcmp(type, "groupchat") == 0) {
            on_groupchat(mt, r, ev, o);
            return;
        }
        xml_node_t *inv = ux ? xml_node_child(ux, "invite", NS_MUC_USER) : NULL;
        if (inv) {
            on_invite(mt, r, ev, o, inv, full);
            return;
        }
        xml_node_t *form = xml_node_child(root, "x", NS_DATA);
        if (form && is_voice_form(form)) {
            on_voice_form(mt, r, ev, o, form);
            return;
        }
        bounce(mt, ev->stanza, "modify", "bad-request", NULL);
        return;
    }
    if (type && strcmp(type, "groupchat") == 0) {
        bounce(mt, ev->stanza, "modify", "bad-request", NULL);
        return;
    }
    occupant_t *t = find_nick(r, ev->to->resource);
    if (!t) {
        bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
        return;
    }
    if (!r->cfg.allowpm && o->role != ROLE_MODERATOR) {
        bounce(mt, ev->stanza, "cancel", "not-allowed", NULL);
        return;
    }
    xml_stanza_t *m = xml_stanza_copy(ev->stanza);
    xml_node_t *mr = xml_stanza_root(m);
    char *from = occ_jid(r, o->nick);
    xml_node_set_attr(mr, "from", from);
    free(from);
    if (!xml_node_child(mr, "x", NS_MUC_USER))
        xml_node_add_child(mr, "x", NS_MUC_USER);
    send_occ(mt, t, m);
    xml_stanza_unref(m);
}

/* ------------------------------------------------------------------ iq */

static xml_stanza_t *iq_result(const xml_node_t *req)
{
    xml_stanza_t *r = xml_stanza_new("iq", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(r);
    xml_node_set_attr(root, "type", "result");
    xml_node_set_attr(root, "id", xml_node_attr(req, "id"));
    xml_node_set_attr(root, "from", xml_node_attr(req, "to"));
    xml_node_set_attr(root, "to", xml_node_attr(req, "from"));
    return r;
}

static void send_result(muc_t *mt, xml_stanza_t *r)
{
    tern_route(mt->srv, r);
    xml_stanza_unref(r);
}

static xml_node_t *add_field(xml_node_t *x, const char *var, const char *type, const char *label,
                             const char *value)
{
    xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    if (type)
        xml_node_set_attr(f, "type", type);
    if (label)
        xml_node_set_attr(f, "label", label);
    xml_node_add_child_text(f, "value", NS_DATA, value ? value : "");
    return f;
}

static void service_info(muc_t *mt, xml_stanza_t *res)
{
    xml_node_t *q = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_INFO);
    xml_node_t *id = xml_node_add_child(q, "identity", NS_DISCO_INFO);
    xml_node_set_attr(id, "category", "conference");
    xml_node_set_attr(id, "type", "text");
    xml_node_set_attr(id, "name", "Chatrooms");
    const char *feats[] = {NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_MUC "#stable_id",
                           NS_OCCUPANT_ID};
    for (size_t i = 0; i < TERN_ARRAY_LEN(feats); i++)
        xml_node_set_attr(xml_node_add_child(q, "feature", NS_DISCO_INFO), "var", feats[i]);
    TERN_UNUSED(mt);
}

static void room_info(muc_t *mt, room_t *r, xml_stanza_t *res)
{
    xml_node_t *q = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_INFO);
    xml_node_t *id = xml_node_add_child(q, "identity", NS_DISCO_INFO);
    xml_node_set_attr(id, "category", "conference");
    xml_node_set_attr(id, "type", "text");
    xml_node_set_attr(id, "name", r->cfg.name ? r->cfg.name : r->local);
    const char *feats[] = {
        NS_DISCO_INFO,
        NS_MUC,
        NS_STANZA_ID,
        NS_OCCUPANT_ID,
        NS_MUC "#stable_id",
        r->cfg.public_ ? "muc_public" : "muc_hidden",
        r->cfg.membersonly ? "muc_membersonly" : "muc_open",
        r->cfg.moderated ? "muc_moderated" : "muc_unmoderated",
        r->cfg.passwordprotected ? "muc_passwordprotected" : "muc_unsecured",
        r->cfg.whois_anyone ? "muc_nonanonymous" : "muc_semianonymous",
        r->cfg.persistent ? "muc_persistent" : "muc_temporary",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(feats); i++)
        xml_node_set_attr(xml_node_add_child(q, "feature", NS_DISCO_INFO), "var", feats[i]);
    if (mam_room_available(mt->host)) {
        xml_node_set_attr(xml_node_add_child(q, "feature", NS_DISCO_INFO), "var", NS_MAM);
        xml_node_set_attr(xml_node_add_child(q, "feature", NS_DISCO_INFO), "var", NS_MAM_EXTENDED);
    }
    xml_node_t *x = xml_node_add_child(q, "x", NS_DATA);
    xml_node_set_attr(x, "type", "result");
    add_field(x, "FORM_TYPE", "hidden", NULL, "http://jabber.org/protocol/muc#roominfo");
    add_field(x, "muc#roominfo_description", NULL, "Description", r->cfg.desc);
    char n[32];
    snprintf(n, sizeof(n), "%zu", occupant_count(r));
    add_field(x, "muc#roominfo_occupants", NULL, "Number of occupants", n);
    add_field(x, "muc#roominfo_subject", NULL, "Subject", r->subject);
}

/* A list-single field offering "moderators" and "anyone". */
static void add_choice(xml_node_t *x, const char *var, const char *label, const char *value)
{
    xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
    xml_node_set_attr(f, "var", var);
    xml_node_set_attr(f, "type", "list-single");
    xml_node_set_attr(f, "label", label);
    xml_node_add_child_text(f, "value", NS_DATA, value);
    const char *opts[] = {"moderators", "anyone"};
    for (size_t i = 0; i < 2; i++) {
        xml_node_t *o = xml_node_add_child(f, "option", NS_DATA);
        xml_node_add_child_text(o, "value", NS_DATA, opts[i]);
    }
}

static void config_form(room_t *r, xml_stanza_t *res)
{
    xml_node_t *q = xml_node_add_child(xml_stanza_root(res), "query", NS_MUC_OWNER);
    xml_node_t *x = xml_node_add_child(q, "x", NS_DATA);
    xml_node_set_attr(x, "type", "form");
    xml_node_add_child_text(x, "title", NS_DATA, "Room configuration");
    add_field(x, "FORM_TYPE", "hidden", NULL, "http://jabber.org/protocol/muc#roomconfig");
    add_field(x, "muc#roomconfig_roomname", "text-single", "Name", r->cfg.name);
    add_field(x, "muc#roomconfig_roomdesc", "text-single", "Description", r->cfg.desc);
    struct {
        const char *var, *label;
        bool v;
    } bools[] = {
        {"muc#roomconfig_persistentroom", "Persistent", r->cfg.persistent},
        {"muc#roomconfig_publicroom", "Listed in the directory", r->cfg.public_},
        {"muc#roomconfig_membersonly", "Members only", r->cfg.membersonly},
        {"muc#roomconfig_moderatedroom", "Moderated", r->cfg.moderated},
        {"muc#roomconfig_passwordprotectedroom", "Password required", r->cfg.passwordprotected},
        {"muc#roomconfig_changesubject", "Participants may change the subject",
         r->cfg.changesubject},
        {"muc#roomconfig_allowinvites", "Participants may invite", r->cfg.allowinvites},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bools); i++)
        add_field(x, bools[i].var, "boolean", bools[i].label, bools[i].v ? "1" : "0");
    add_field(x, "muc#roomconfig_roomsecret", "text-private", "Password", r->cfg.secret);
    add_choice(x, "muc#roomconfig_whois", "Who may see real JIDs",
               r->cfg.whois_anyone ? "anyone" : "moderators");
    /* list-single since XEP-0045 1.26; booleans are still accepted */
    add_choice(x, "muc#roomconfig_allowpm", "Who may send private messages",
               r->cfg.allowpm ? "anyone" : "moderators");
    char n[32];
    snprintf(n, sizeof(n), "%u", r->cfg.maxusers);
    add_field(x, "muc#roomconfig_maxusers", "text-single", "Maximum occupants (0 = no limit)", n);
}

static void cfg_free(room_cfg_t *c)
{
    free(c->name);
    free(c->desc);
    free(c->secret);
}

/* Applies a submitted muc#roomconfig form; false (room unchanged) on a
 * bad value. */
/* A string that differs when any setting differs (caller frees). */
static char *cfg_signature(const room_cfg_t *c)
{
    char *sig = NULL;
    if (asprintf(&sig, "%s\x1f%s\x1f%s\x1f%d%d%d%d%d%d%d%d%d\x1f%u", c->name ? c->name : "",
                 c->desc ? c->desc : "", c->secret ? c->secret : "", c->persistent, c->public_,
                 c->membersonly, c->moderated, c->passwordprotected, c->whois_anyone,
                 c->changesubject, c->allowinvites, c->allowpm, c->maxusers) < 0)
        abort();
    return sig;
}

/* Applies a submitted muc#roomconfig form: NULL, or the error condition
 * (the room is unchanged then). */
static const char *apply_form(room_t *r, xml_node_t *x)
{
    room_cfg_t c = r->cfg;
    c.name = r->cfg.name ? tern_xstrdup(r->cfg.name) : NULL;
    c.desc = r->cfg.desc ? tern_xstrdup(r->cfg.desc) : NULL;
    c.secret = r->cfg.secret ? tern_xstrdup(r->cfg.secret) : NULL;
    struct {
        const char *var;
        bool *dst;
    } bools[] = {
        {"muc#roomconfig_persistentroom", &c.persistent},
        {"muc#roomconfig_publicroom", &c.public_},
        {"muc#roomconfig_membersonly", &c.membersonly},
        {"muc#roomconfig_moderatedroom", &c.moderated},
        {"muc#roomconfig_passwordprotectedroom", &c.passwordprotected},
        {"muc#roomconfig_changesubject", &c.changesubject},
        {"muc#roomconfig_allowinvites", &c.allowinvites},
    };
    bool secret_given = false, protect_given = false;
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        xml_node_t *vn = xml_node_child(f, "value", NS_DATA);
        const char *v = vn ? xml_node_text(vn) : "";
        if (!var)
            continue;
        bool known = false;
        if (strcmp(var, "muc#roomconfig_passwordprotectedroom") == 0)
            protect_given = true;
        for (size_t i = 0; i < TERN_ARRAY_LEN(bools); i++) {
            if (strcmp(var, bools[i].var) == 0) {
                if (!str_bool_ok(v))
                    goto bad;
                *bools[i].dst = str_true(v);
                known = true;
            }
        }
        if (known)
            continue;
        if (strcmp(var, "muc#roomconfig_roomname") == 0) {
            set_str(&c.name, v);
        } else if (strcmp(var, "muc#roomconfig_roomdesc") == 0) {
            set_str(&c.desc, v);
        } else if (strcmp(var, "muc#roomconfig_roomsecret") == 0) {
            set_str(&c.secret, v);
            secret_given = true;
        } else if (strcmp(var, "muc#roomconfig_allowpm") == 0) {
            if (str_bool_ok(v))
                c.allowpm = str_true(v);
            else if (strcmp(v, "anyone") == 0 || strcmp(v, "participants") == 0)
                c.allowpm = true;
            else if (strcmp(v, "moderators") == 0 || strcmp(v, "none") == 0)
                c.allowpm = false; /* moderators may always write privately */
            else
                goto bad;
        } else if (strcmp(var, "muc#roomconfig_whois") == 0) {
            if (strcmp(v, "anyone") == 0)
                c.whois_anyone = true;
            else if (strcmp(v, "moderators") == 0)
                c.whois_anyone = false;
            else
                goto bad;
        } else if (strcmp(var, "muc#roomconfig_maxusers") == 0) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 0 || n > 100000)
                goto bad;
            c.maxusers = (unsigned)n;
        }
    }
    /* Many clients only fill in the password: setting or clearing it is
     * what protects the room, unless the form says otherwise. */
    if (secret_given && !protect_given)
        c.passwordprotected = c.secret != NULL;
    if (c.passwordprotected && !c.secret) {
        /* a blank password is against policy, not malformed (§10.1.3) */
        cfg_free(&c);
        return "not-acceptable";
    }
    cfg_free(&r->cfg);
    r->cfg = c;
    return NULL;
bad:
    cfg_free(&c);
    return "bad-request";
}

static void on_destroy(muc_t *mt, room_t *r, xml_node_t *d)
{
    for (occupant_t *o = r->occupants; o; o = o->next) {
        xml_stanza_t *p = occ_presence(r, o, o, "unavailable", NULL);
        xml_node_t *x = xml_node_child(xml_stanza_root(p), "x", NS_MUC_USER);
        xml_node_t *dd = xml_node_add_child(x, "destroy", NS_MUC_USER);
        const char *alt = d ? xml_node_attr(d, "jid") : NULL;
        if (alt)
            xml_node_set_attr(dd, "jid", alt);
        xml_node_t *reason = d ? xml_node_child(d, "reason", NULL) : NULL;
        if (reason)
            xml_node_add_child_text(dd, "reason", NS_MUC_USER, xml_node_text(reason));
        add_status(p, "110");
        send_occ(mt, o, p);
        xml_stanza_unref(p);
    }
    if (r->cfg.persistent) {
        r->cfg.persistent = false;
        save_room(mt, r);
    }
    destroy_room(mt, r);
}

static void on_owner(muc_t *mt, room_t *r, xml_stanza_t *st, xml_node_t *q, bool is_set,
                     const char *bare)
{
    if (get_aff(r, bare) != AFF_OWNER) {
        bounce(mt, st, "auth", "forbidden", NULL);
        return;
    }
    xml_node_t *root = xml_stanza_root(st);
    if (!is_set) {
        xml_stanza_t *res = iq_result(root);
        config_form(r, res);
        send_result(mt, res);
        return;
    }
    xml_node_t *d = xml_node_child(q, "destroy", NS_MUC_OWNER);
    if (d) {
        xml_stanza_t *res = iq_result(root);
        on_destroy(mt, r, d);
        send_result(mt, res);
        return;
    }
    xml_node_t *x = xml_node_child(q, "x", NS_DATA);
    if (!x) {
        bounce(mt, st, "modify", "bad-request", NULL);
        return;
    }
    const char *type = xml_node_attr(x, "type");
    if (type && strcmp(type, "cancel") == 0) {
        xml_stanza_t *res = iq_result(root);
        if (r->locked) {
            /* §10.1.3: an owner who cancels the initial configuration
             * does not want the room */
            on_destroy(mt, r, NULL);
        }
        send_result(mt, res);
        return;
    }
    char *before = cfg_signature(&r->cfg);
    bool was_whois = r->cfg.whois_anyone;
    const char *err = !type || strcmp(type, "submit") != 0 ? "bad-request" : apply_form(r, x);
    if (err) {
        free(before);
        bounce(mt, st, "modify", err, NULL);
        return;
    }
    r->locked = false;
    save_room(mt, r);
    dir_update(mt, r, false);
    send_result(mt, iq_result(root));
    char *after = cfg_signature(&r->cfg);
    if (strcmp(before, after) != 0) {
        /* §10.2.1: occupants learn that the configuration changed, and
         * whether their addresses are now shown (172) or hidden (173) */
        const char *codes[2] = {"104", NULL};
        if (was_whois != r->cfg.whois_anyone)
            codes[1] = r->cfg.whois_anyone ? "172" : "173";
        xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
        xml_node_t *mr = xml_stanza_root(m);
        xml_node_set_attr(mr, "from", r->jid);
        xml_node_set_attr(mr, "type", "groupchat");
        xml_node_t *mx = xml_node_add_child(mr, "x", NS_MUC_USER);
        for (size_t i = 0; i < 2 && codes[i]; i++)
            xml_node_set_attr(xml_node_add_child(mx, "status", NS_MUC_USER), "code", codes[i]);
        broadcast_message(mt, r, m);
        xml_stanza_unref(m);
    }
    free(before);
    free(after);
    /* members-only now: who is not a member has to go */
    if (r->cfg.membersonly) {
        for (occupant_t *o = r->occupants, *next; o; o = next) {
            next = o->next;
            if (get_aff(r, o->bare) < AFF_MEMBER)
                eject(mt, r, o, "322", NULL, NULL);
        }
    }
}

/* An affiliation change for someone not in the room is otherwise
 * invisible; occupants allowed to see real JIDs are told by a message
 * from the room (§9.3, §10.6), before the admin's result. */
static void notify_absent_aff(muc_t *mt, room_t *r, const char *bare, aff_t aff)
{
    xml_stanza_t *m = xml_stanza_new("message", NS_CLIENT);
    xml_node_t *root = xml_stanza_root(m);
    xml_node_set_attr(root, "from", r->jid);
    xml_node_t *item =
        xml_node_add_child(xml_node_add_child(root, "x", NS_MUC_USER), "item", NS_MUC_USER);
    xml_node_set_attr(item, "jid", bare);
    xml_node_set_attr(item, "affiliation", aff_names[aff + 1]);
    for (occupant_t *v = r->occupants; v; v = v->next)
        if (sees_jids(r, v))
            send_occ(mt, v, m);
    xml_stanza_unref(m);
}

/* Sets bare's affiliation (and reserved nick, when nick is not NULL; ""
 * clears it), then shows the change: occupants using a nick now reserved
 * for someone else are kicked, the person's own occupants get their new
 * role or are removed, and an absent person's change is announced. */
static void apply_aff(muc_t *mt, room_t *r, const char *bare, aff_t aff, const char *reason,
                      const occupant_t *actor, const char *nick)
{
    set_aff(r, bare, aff);
    affil_t *af = find_affil(r, bare);
    if (af && nick)
        set_str(&af->nick, nick);
    save_if_persistent(mt, r);
    if (af && af->nick) {
        occupant_t *squatter = find_nick(r, af->nick);
        if (squatter && strcmp(squatter->bare, bare) != 0)
            eject(mt, r, squatter, "307", "This nickname is reserved", NULL);
    }
    bool present = false;
    for (occupant_t *o = r->occupants; o && !present; o = o->next)
        present = strcmp(o->bare, bare) == 0;
    if (!present)
        notify_absent_aff(mt, r, bare, aff);
    for (occupant_t *o = r->occupants, *next; o; o = next) {
        next = o->next;
        if (strcmp(o->bare, bare) != 0)
            continue;
        if (aff == AFF_OUTCAST) {
            eject(mt, r, o, "301", reason, actor);
        } else if (r->cfg.membersonly && aff < AFF_MEMBER) {
            eject(mt, r, o, "321", reason, actor);
        } else {
            o->role = default_role(r, aff);
            broadcast_presence(mt, r, o, NULL, NULL, 0, NULL, actor);
        }
    }
}

/* One <item/> of a muc#admin set; NULL or the error condition. */
static const char *admin_item(muc_t *mt, room_t *r, occupant_t *actor, aff_t actor_aff,
                              xml_node_t *item, bool apply, const char **etype)
{
    const char *nick = xml_node_attr(item, "nick");
    const char *jid = xml_node_attr(item, "jid");
    const char *role_s = xml_node_attr(item, "role");
    const char *aff_s = xml_node_attr(item, "affiliation");
    xml_node_t *rn = xml_node_child(item, "reason", NULL);
    const char *reason = rn ? xml_node_text(rn) : NULL;
    *etype = "cancel";
    if (role_s && nick) {
        int role = parse_role(role_s);
        if (role < 0) {
            *etype = "modify";
            return "bad-request";
        }
        occupant_t *t = find_nick(r, nick);
        if (!t)
            return "item-not-found";
        if (!actor || actor->role != ROLE_MODERATOR) {
            *etype = "auth";
            return "forbidden";
        }
        aff_t taff = get_aff(r, t->bare);
        if (role == ROLE_MODERATOR && actor_aff < AFF_ADMIN) {
            *etype = "auth";
            return "forbidden";
        }
        if (role != ROLE_MODERATOR && taff >= AFF_ADMIN && taff >= actor_aff)
            return "not-allowed";
        if (role != ROLE_MODERATOR && taff >= AFF_ADMIN && t->role == ROLE_MODERATOR &&
            actor_aff < AFF_ADMIN)
            return "not-allowed";
        if (!apply)
            return NULL;
        if (role == ROLE_NONE) {
            eject(mt, r, t, "307", reason, actor);
        } else {
            t->role = (role_t)role;
            broadcast_presence(mt, r, t, NULL, NULL, 0, NULL, actor);
        }
        return NULL;
    }
    if (aff_s && jid) {
        int aff = parse_aff(aff_s);
        jid_t j;
        if (aff < -1 || jid_parse(jid, &j) != 0) {
            *etype = "modify";
            return "bad-request";
        }
        char *bare = jid_bare_string(&j);
        jid_clear(&j);
        aff_t taff = get_aff(r, bare);
        const char *err = NULL;
        if (actor_aff < AFF_ADMIN) {
            *etype = "auth";
            err = "forbidden";
        } else if (actor_aff == AFF_ADMIN && (taff >= AFF_ADMIN || aff >= AFF_ADMIN)) {
            err = "not-allowed";
        } else if (aff != AFF_OWNER && is_admin(tern_host_config(r->host)->admins, bare)) {
            err = "not-allowed"; /* the service's admins are not the room's to demote */
        } else if (taff == AFF_OWNER && aff != AFF_OWNER) {
            /* the last owner cannot step down: the room would be orphaned */
            size_t owners = 0;
            for (affil_t *a = r->affils; a; a = a->next)
                owners += a->aff == AFF_OWNER;
            if (owners <= 1)
                err = "conflict";
        }
        if (!err && apply)
            apply_aff(mt, r, bare, (aff_t)aff, reason, actor, xml_node_attr(item, "nick"));
        free(bare);
        return err;
    }
    *etype = "modify";
    return "bad-request";
}

static void on_admin(muc_t *mt, room_t *r, xml_stanza_t *st, xml_node_t *q, bool is_set,
                     const char *full, const char *bare)
{
    xml_node_t *root = xml_stanza_root(st);
    occupant_t *actor = find_full(r, full);
    aff_t actor_aff = get_aff(r, bare);
    xml_node_t *item = xml_node_child(q, "item", NS_MUC_ADMIN);
    if (!item) {
        bounce(mt, st, "modify", "bad-request", NULL);
        return;
    }
    if (!is_set) {
        const char *aff_s = xml_node_attr(item, "affiliation");
        const char *role_s = xml_node_attr(item, "role");
        xml_stanza_t *res = iq_result(root);
        xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_MUC_ADMIN);
        if (aff_s) {
            int aff = parse_aff(aff_s);
            if (aff < -1 || aff == AFF_NONE) {
                xml_stanza_unref(res);
                bounce(mt, st, "modify", "bad-request", NULL);
                return;
            }
            /* Members may read the member list, and every list of a room
             * that shows addresses anyway (as Prosody does). */
            bool member_may = actor_aff == AFF_MEMBER && (aff == AFF_MEMBER || r->cfg.whois_anyone);
            if (actor_aff < AFF_ADMIN && !member_may) {
                xml_stanza_unref(res);
                bounce(mt, st, "auth", "forbidden", NULL);
                return;
            }
            for (affil_t *a = r->affils; a; a = a->next) {
                if ((int)a->aff != aff)
                    continue;
                xml_node_t *it = xml_node_add_child(rq, "item", NS_MUC_ADMIN);
                xml_node_set_attr(it, "affiliation", aff_names[a->aff + 1]);
                xml_node_set_attr(it, "jid", a->jid);
                if (a->nick)
                    xml_node_set_attr(it, "nick", a->nick);
            }
        } else {
            int role = parse_role(role_s);
            if (role <= ROLE_NONE) {
                xml_stanza_unref(res);
                bounce(mt, st, "modify", "bad-request", NULL);
                return;
            }
            if (!actor || actor->role != ROLE_MODERATOR) {
                xml_stanza_unref(res);
                bounce(mt, st, "auth", "forbidden", NULL);
                return;
            }
            for (occupant_t *o = r->occupants; o; o = o->next) {
                if ((int)o->role != role)
                    continue;
                xml_node_t *it = xml_node_add_child(rq, "item", NS_MUC_ADMIN);
                xml_node_set_attr(it, "role", role_names[o->role]);
                xml_node_set_attr(it, "affiliation", aff_names[get_aff(r, o->bare) + 1]);
                xml_node_set_attr(it, "nick", o->nick);
                xml_node_set_attr(it, "jid", o->fulls[0]);
            }
        }
        send_result(mt, res);
        return;
    }
    /* Every item is checked before any is applied: a refused list leaves
     * the room as it was. */
    bool roles_only = true;
    for (xml_node_t *it = item; it; it = xml_node_next(it, "item", NS_MUC_ADMIN)) {
        const char *etype = "cancel";
        const char *err = admin_item(mt, r, actor, actor_aff, it, false, &etype);
        if (err) {
            bounce(mt, st, etype, err, NULL);
            return;
        }
        roles_only = roles_only && !xml_node_attr(it, "affiliation");
    }
    /* A moderator hears of success before the occupants hear of the
     * change (§8.2); affiliation changes are shown first, as Prosody does
     * and its scripts expect. */
    if (roles_only)
        send_result(mt, iq_result(root));
    for (; item; item = xml_node_next(item, "item", NS_MUC_ADMIN)) {
        const char *etype = "cancel";
        admin_item(mt, r, actor, actor_aff, item, true, &etype);
        actor = find_full(r, full); /* a self-kick may have removed it */
    }
    if (!roles_only)
        send_result(mt, iq_result(root));
    maybe_gc(mt, r);
}

typedef struct {
    xml_node_t *q;
    muc_t *mt;
} items_ud_t;

static void forward_iq(muc_t *mt, room_t *r, xml_stanza_t *st, const occupant_t *from,
                       const occupant_t *to, const char *full)
{
    if (r->nfwd >= MUC_MAX_FWD) {
        /* the oldest unanswered one is given up */
        iq_fwd_t **pp = &r->fwds;
        while ((*pp)->next)
            pp = &(*pp)->next;
        fwd_free(*pp);
        *pp = NULL;
        r->nfwd--;
    }
    char id[33];
    random_id(id);
    iq_fwd_t *f = tern_xcalloc(1, sizeof(*f));
    f->id = tern_xstrdup(id);
    const char *orig = xml_node_attr(xml_stanza_root(st), "id");
    f->orig_id = tern_xstrdup(orig ? orig : "");
    f->requester = tern_xstrdup(full);
    f->target = tern_xstrdup(to->fulls[0]);
    f->next = r->fwds;
    r->fwds = f;
    r->nfwd++;
    xml_stanza_t *c = xml_stanza_copy(st);
    xml_node_t *root = xml_stanza_root(c);
    char *fromj = occ_jid(r, from->nick);
    xml_node_set_attr(root, "from", fromj);
    free(fromj);
    xml_node_set_attr(root, "id", id);
    route_to(mt, c, to->fulls[0]);
    xml_stanza_unref(c);
}

/* An answer to a forwarded iq goes back to whoever asked, from the
 * answering occupant's room JID. */
static void forward_iq_reply(muc_t *mt, room_t *r, xml_stanza_t *st, const char *full)
{
    xml_node_t *root = xml_stanza_root(st);
    const char *id = xml_node_attr(root, "id");
    if (!id)
        return;
    for (iq_fwd_t **pp = &r->fwds; *pp; pp = &(*pp)->next) {
        iq_fwd_t *f = *pp;
        if (strcmp(f->id, id) != 0 || strcmp(f->target, full) != 0)
            continue;
        *pp = f->next;
        r->nfwd--;
        occupant_t *o = find_full(r, full);
        xml_stanza_t *c = xml_stanza_copy(st);
        xml_node_t *cr = xml_stanza_root(c);
        char *fromj = o ? occ_jid(r, o->nick) : tern_xstrdup(r->jid);
        xml_node_set_attr(cr, "from", fromj);
        free(fromj);
        xml_node_set_attr(cr, "id", f->orig_id);
        route_to(mt, c, f->requester);
        xml_stanza_unref(c);
        fwd_free(f);
        return;
    }
}

static void on_register(muc_t *mt, room_t *r, xml_stanza_t *st, xml_node_t *q, bool is_set,
                        const char *bare);

/* The room's avatar and description card (vcard-temp at the room JID, as
 * clients use it for room avatars): anyone reads it, owners write it. */
static void on_vcard(muc_t *mt, room_t *r, xml_stanza_t *st, xml_node_t *q, bool is_set,
                     const char *bare)
{
    xml_node_t *root = xml_stanza_root(st);
    if (is_set) {
        if (get_aff(r, bare) != AFF_OWNER) {
            bounce(mt, st, "auth", "forbidden", NULL);
            return;
        }
        size_t len = 0;
        char *text = xml_node_to_string(q, NS_CLIENT, &len);
        if (!text || len > MUC_MAX_VCARD) {
            free(text);
            bounce(mt, st, "modify", "not-acceptable", "vCard too large");
            return;
        }
        free(r->vcard);
        r->vcard = text;
        if (!xml_node_first_element(q)) { /* an empty card removes it */
            free(r->vcard);
            r->vcard = NULL;
        }
        save_if_persistent(mt, r);
        send_result(mt, iq_result(root));
        return;
    }
    xml_stanza_t *res = iq_result(root);
    xml_stanza_t *card =
        r->vcard ? xml_parse_element(r->vcard, strlen(r->vcard), NS_CLIENT, strlen(r->vcard))
                 : NULL;
    if (card)
        xml_node_append_copy(xml_stanza_root(res), xml_stanza_root(card));
    else
        xml_node_add_child(xml_stanza_root(res), "vCard", NS_VCARD);
    if (card)
        xml_stanza_unref(card);
    send_result(mt, res);
}

static void on_iq(muc_t *mt, room_t *r, tern_stanza_ev_t *ev, const char *full, const char *bare)
{
    xml_node_t *root = xml_stanza_root(ev->stanza);
    const char *type = xml_node_attr(root, "type");
    if (!type)
        return;
    if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
        if (r && ev->to->resource)
            forward_iq_reply(mt, r, ev->stanza, full);
        return;
    }
    bool is_set = strcmp(type, "set") == 0;
    xml_node_t *q = xml_node_first_element(root);
    if (!ev->to->local) {
        if (!is_set && xml_node_is(q, "query", NS_DISCO_INFO)) {
            xml_stanza_t *res = iq_result(root);
            service_info(mt, res);
            send_result(mt, res);
        } else if (!is_set && xml_node_is(q, "query", NS_DISCO_ITEMS)) {
            xml_stanza_t *res = iq_result(root);
            xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_ITEMS);
            muc_t *p = primary(mt);
            pthread_mutex_lock(&p->dir_lock);
            for (const dir_entry_t *e = p->dir; e; e = e->next) {
                xml_node_t *it = xml_node_add_child(rq, "item", NS_DISCO_ITEMS);
                xml_node_set_attr(it, "jid", e->jid);
                xml_node_set_attr(it, "name", e->name);
            }
            pthread_mutex_unlock(&p->dir_lock);
            send_result(mt, res);
        } else {
            bounce(mt, ev->stanza, "cancel", "service-unavailable", NULL);
        }
        return;
    }
    if (!r) {
        bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
        return;
    }
    if (ev->to->resource) {
        occupant_t *self = find_full(r, full);
        occupant_t *t = find_nick(r, ev->to->resource);
        if (!self) {
            bounce(mt, ev->stanza, "cancel", "not-acceptable", NULL);
        } else if (!t) {
            bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
        } else if (t == self && xml_node_is(q, "ping", NS_PING)) {
            send_result(mt, iq_result(root));
        } else {
            forward_iq(mt, r, ev->stanza, self, t, full);
        }
        return;
    }
    if (!is_set && xml_node_is(q, "query", NS_DISCO_INFO)) {
        xml_stanza_t *res = iq_result(root);
        const char *node = xml_node_attr(q, "node");
        if (node && strcmp(node, "x-roomuser-item") == 0) {
            /* the asker's reserved nick, if any (§7.12) */
            xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_INFO);
            xml_node_set_attr(rq, "node", node);
            const affil_t *a = find_affil(r, bare);
            if (a && a->nick) {
                xml_node_t *id = xml_node_add_child(rq, "identity", NS_DISCO_INFO);
                xml_node_set_attr(id, "category", "conference");
                xml_node_set_attr(id, "name", a->nick);
                xml_node_set_attr(id, "type", "text");
            }
        } else if (node) {
            xml_stanza_unref(res);
            bounce(mt, ev->stanza, "cancel", "item-not-found", NULL);
            return;
        } else {
            room_info(mt, r, res);
        }
        send_result(mt, res);
    } else if (!is_set && xml_node_is(q, "query", NS_DISCO_ITEMS)) {
        xml_stanza_t *res = iq_result(root);
        xml_node_add_child(xml_stanza_root(res), "query", NS_DISCO_ITEMS);
        send_result(mt, res);
    } else if (xml_node_is(q, "query", NS_MUC_OWNER)) {
        on_owner(mt, r, ev->stanza, q, is_set, bare);
    } else if (xml_node_is(q, "query", NS_MUC_ADMIN)) {
        on_admin(mt, r, ev->stanza, q, is_set, full, bare);
    } else if (xml_node_is(q, NULL, NS_MAM)) {
        /* the log is for those who may be in the room */
        aff_t aff = get_aff(r, bare);
        if (aff == AFF_OUTCAST || (r->cfg.membersonly && aff < AFF_MEMBER))
            bounce(mt, ev->stanza, "auth", "forbidden", NULL);
        else
            mam_room_iq(mt->host, mt->domain, r->local, ev->stanza);
    } else if (xml_node_is(q, "vCard", NS_VCARD)) {
        on_vcard(mt, r, ev->stanza, q, is_set, bare);
    } else if (xml_node_is(q, "query", NS_REGISTER)) {
        on_register(mt, r, ev->stanza, q, is_set, bare);
    } else if (xml_node_is(q, "ping", NS_PING)) {
        send_result(mt, iq_result(root));
    } else {
        bounce(mt, ev->stanza, "cancel", "service-unavailable", NULL);
    }
}

/* §7.10: registering with a room reserves a nick and makes the user a
 * member; <remove/> gives both up. */
static void on_register(muc_t *mt, room_t *r, xml_stanza_t *st, xml_node_t *q, bool is_set,
                        const char *bare)
{
    xml_node_t *root = xml_stanza_root(st);
    affil_t *a = find_affil(r, bare);
    aff_t aff = a ? a->aff : AFF_NONE;
    if (aff == AFF_OUTCAST) {
        bounce(mt, st, "auth", "forbidden", NULL);
        return;
    }
    if (aff < AFF_MEMBER) {
        /* Who is a member is the admins' decision; registration only
         * reserves a nick for those they affiliated (as Prosody does). */
        bounce(mt, st, "auth", "registration-required", NULL);
        return;
    }
    if (!is_set) {
        xml_stanza_t *res = iq_result(root);
        xml_node_t *rq = xml_node_add_child(xml_stanza_root(res), "query", NS_REGISTER);
        if (a && a->nick)
            xml_node_add_child(rq, "registered", NS_REGISTER);
        xml_node_t *x = xml_node_add_child(rq, "x", NS_DATA);
        xml_node_set_attr(x, "type", "form");
        add_field(x, "FORM_TYPE", "hidden", NULL, NS_MUC "#register");
        xml_node_t *f = xml_node_add_child(x, "field", NS_DATA);
        xml_node_set_attr(f, "type", "text-single");
        xml_node_set_attr(f, "label", "Nickname");
        xml_node_set_attr(f, "var", "muc#register_roomnick");
        if (a && a->nick)
            xml_node_add_child_text(f, "value", NS_DATA, a->nick);
        xml_node_add_child(f, "required", NS_DATA);
        send_result(mt, res);
        return;
    }
    if (xml_node_child(q, "remove", NS_REGISTER)) {
        if (!a) {
            bounce(mt, st, "cancel", "item-not-found", NULL);
            return;
        }
        if (aff == AFF_OWNER) {
            /* an owner leaving by unregistering could orphan the room */
            bounce(mt, st, "cancel", "not-allowed", NULL);
            return;
        }
        apply_aff(mt, r, bare, aff == AFF_MEMBER ? AFF_NONE : aff, NULL, NULL, "");
        send_result(mt, iq_result(root));
        maybe_gc(mt, r);
        return;
    }
    xml_node_t *x = xml_node_child(q, "x", NS_DATA);
    const char *nick = NULL, *form_type = NULL;
    for (xml_node_t *f = x ? xml_node_child(x, "field", NS_DATA) : NULL; f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        xml_node_t *v = xml_node_child(f, "value", NS_DATA);
        if (!var || !v)
            continue;
        if (strcmp(var, "FORM_TYPE") == 0)
            form_type = xml_node_text(v);
        else if (strcmp(var, "muc#register_roomnick") == 0)
            nick = xml_node_text(v);
    }
    if (!x || !form_type || strcmp(form_type, NS_MUC "#register") != 0 || !nick || !*nick) {
        bounce(mt, st, "modify", "bad-request", NULL);
        return;
    }
    jid_t j;
    char *occ = occ_jid(r, nick);
    int bad = jid_parse(occ, &j);
    free(occ);
    if (bad) {
        bounce(mt, st, "modify", "jid-malformed", NULL);
        return;
    }
    jid_clear(&j);
    const char *holder = nick_holder(r, nick);
    occupant_t *user = find_nick(r, nick);
    if ((holder && strcmp(holder, bare) != 0) || (user && strcmp(user->bare, bare) != 0)) {
        bounce(mt, st, "cancel", "conflict", NULL);
        return;
    }
    apply_aff(mt, r, bare, aff, NULL, NULL, nick);
    send_result(mt, iq_result(root));
}

/* ------------------------------------------------------------------ entry */

static tern_handled_t on_stanza(void *state, tern_stanza_ev_t *ev)
{
    muc_t *mt = state;
    if (!ev->from || !ev->from->local)
        return TERN_PASS; /* servers and components have no seat in a room */
    if (ev->to->local && (!find_room(mt, ev->to->local) || is_pending(mt, ev->to->local)))
        queue_for_lookup(mt, ev);
    else
        dispatch(mt, ev);
    return TERN_HANDLED;
}

static void dispatch(muc_t *mt, tern_stanza_ev_t *ev)
{
    xml_node_t *root = xml_stanza_root(ev->stanza);
    char *full = jid_to_string(ev->from);
    char *bare = jid_bare_string(ev->from);
    if (!full || !bare) {
        free(full);
        free(bare);
        return;
    }
    room_t *r = ev->to->local ? find_room(mt, ev->to->local) : NULL;
    if (xml_node_is(root, "iq", NULL)) {
        on_iq(mt, r, ev, full, bare);
    } else if (xml_node_is(root, "presence", NULL)) {
        if (ev->to->local)
            on_presence(mt, r, ev, full, bare);
    } else if (xml_node_is(root, "message", NULL)) {
        if (ev->to->local)
            on_message(mt, r, ev, full);
        else
            bounce(mt, ev->stanza, "cancel", "service-unavailable", NULL);
    }
    free(full);
    free(bare);
}

static void *muc_init(tern_module_t *m)
{
    tern_host_t *h = tern_module_host(m);
    const config_host_t *hc = tern_host_config(h);
    if (!hc->muc_domain || strcmp(hc->muc_domain, "none") == 0)
        return NULL;
    muc_t *mt = tern_xcalloc(1, sizeof(*mt));
    mt->host = h;
    mt->srv = tern_host_server(h);
    mt->domain = tern_xstrdup(hc->muc_domain);
    pthread_mutex_init(&mt->dir_lock, NULL);
    if (RAND_bytes(mt->key, sizeof(mt->key)) != 1)
        log_warn("muc", "no random key for occupant ids");
    if (tern_register_service(m, mt->domain, "Chatrooms", on_stanza) != 0) {
        log_error("muc", "cannot serve %s: domain already taken", mt->domain);
        pthread_mutex_destroy(&mt->dir_lock);
        free(mt->domain);
        free(mt);
        return NULL;
    }
    return mt;
}

static void muc_fini(void *state)
{
    muc_t *mt = state;
    if (!mt)
        return;
    while (mt->rooms) {
        room_t *r = mt->rooms;
        mt->rooms = r->next;
        room_free(r);
    }
    while (mt->pending) {
        pending_t *p = mt->pending;
        mt->pending = p->next;
        while (p->head) {
            queued_t *q = p->head;
            p->head = q->next;
            xml_stanza_unref(q->st);
            jid_clear(&q->from);
            jid_clear(&q->to);
            free(q);
        }
        free(p->local);
        free(p);
    }
    while (mt->dir) {
        dir_entry_t *e = mt->dir;
        mt->dir = e->next;
        free(e->jid);
        free(e->name);
        free(e);
    }
    pthread_mutex_destroy(&mt->dir_lock);
    free(mt->domain);
    free(mt);
}

const tern_module_def_t mod_muc = {"muc", TERN_MODULE_API_VERSION, muc_init, muc_fini};
