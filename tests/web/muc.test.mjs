// Multi-User Chat (XEP-0045) on conference.localhost with web client
// libraries: @xmpp/client over WebSocket and strophe.js over BOSH, mixed in
// one room (an owner on one library, occupants on the other). Every test
// uses its own room and its own connections, and asserts on the stanzas as
// the clients received them (parsed into ltx elements for both libraries).
//
// Section numbers below are those of XEP-0045 1.35; XEP-0421 is occupant-id,
// XEP-0359 stanza-id, XEP-0249 direct invitations.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { bare, IS_TERN } from './harness.mjs';
import { xml } from './clients.mjs';
import {
  partySuite, show, typeOf, errorOf, formFields, value, dataForm, mucUser as muc, statuses, isPres,
  NS_MUC, NS_MUC_USER, NS_DATA, DISCO_INFO, RUN,
} from './parties.mjs';

const SERVICE = 'conference.localhost';
const NS_MUC_OWNER = `${NS_MUC}#owner`;
const NS_MUC_ADMIN = `${NS_MUC}#admin`;
const NS_DELAY = 'urn:xmpp:delay';
const NS_SID = 'urn:xmpp:sid:0';
const NS_OID = 'urn:xmpp:occupant-id:0';
const NS_CONFERENCE = 'jabber:x:conference';

let roomSeq = 0;
/** A room JID no other test (or earlier run) uses. */
const roomName = (tag) => `${tag}-${RUN}-${++roomSeq}@${SERVICE}`;

// ------------------------------------------------------------ stanza helpers

const item = (el) => muc(el)?.getChild('item');
const isMsg = (pred) => (el) => el.name === 'message' && pred(el);
const bodyIs = (text) => isMsg((el) => el.getChildText('body') === text);
const isSubject = (room) => isMsg((el) => bare(el.attrs.from) === room && !!el.getChild('subject') && !el.getChild('body'));

function submitForm(fields) {
  return xml('query', { xmlns: NS_MUC_OWNER }, dataForm('http://jabber.org/protocol/muc#roomconfig', fields));
}

// ------------------------------------------------------------ MUC helpers

function joinPresence(occ, { password, history } = {}) {
  const x = xml('x', { xmlns: NS_MUC });
  if (history) x.append(xml('history', history));
  if (password !== undefined) x.append(xml('password', {}, password));
  return xml('presence', { to: occ }, x);
}

/** Sends a join and waits for the self-presence (110) or an error presence. */
async function tryJoin(p, room, nick, opts = {}) {
  const occ = `${room}/${nick}`;
  await p.send(joinPresence(occ, opts));
  return p.next((el) => el.name === 'presence' && el.attrs.from === occ &&
    (typeOf(el) === 'error' || (typeOf(el) === null && statuses(el).has('110'))), `self-presence or error from ${occ}`);
}

/** Joins and waits for the self-presence and the subject; returns the self-presence. */
async function join(p, room, nick, opts = {}) {
  const self = await tryJoin(p, room, nick, opts);
  assert.equal(typeOf(self), null, `join ${room}/${nick}: ${show(self)}`);
  assert.ok(statuses(self).has('110'), `self-presence has status 110: ${show(self)}`);
  await p.next(isSubject(room), `subject of ${room} after joining`);
  return self;
}

async function joinError(p, room, nick, opts = {}) {
  const el = await tryJoin(p, room, nick, opts);
  assert.equal(typeOf(el), 'error', `join of ${room}/${nick} expected to fail, got ${show(el)}`);
  return errorOf(el);
}

/**
 * Creates a room: the join with 201 + 110, then the owner's form (empty =
 * instant room, §10.1.2, or with the given muc#roomconfig fields).
 */
async function createRoom(owner, room, { nick = 'owner', config = {} } = {}) {
  const self = await tryJoin(owner, room, nick);
  assert.equal(typeOf(self), null, `create ${room}: ${show(self)}`);
  const st = statuses(self);
  assert.ok(st.has('201') && st.has('110'), `new room: status 201 and 110 in ${show(self)}`);
  const form = Object.keys(config).length
    ? submitForm(config)
    : xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: NS_DATA, type: 'submit' }));
  await owner.iqOk('set', room, form);
  return self;
}

function groupchat(room, body, id) {
  return xml('message', { to: room, type: 'groupchat', ...(id ? { id } : {}) }, xml('body', {}, body));
}

function adminSet(...items) {
  return xml('query', { xmlns: NS_MUC_ADMIN }, ...items.map(([attrs, reason]) =>
    xml('item', attrs, reason ? xml('reason', {}, reason) : null)));
}

async function discoInfo(p, jid) {
  const r = await p.iq('get', jid, xml('query', { xmlns: DISCO_INFO }));
  return r;
}

// ------------------------------------------------------------ tests

describe('XEP-0045 multi-user chat with @xmpp/client (WebSocket) and strophe.js (BOSH)',
  { skip: !IS_TERN && 'the Prosody configuration has no MUC component' }, () => {
    const { party, parties, test } = partySuite({ server: { name: 'muc' }, partyOptions: { iqPrefix: 'muc-iq' } });

    test('creates an instant room: 201 + 110, locked (item-not-found) until the owner submits the form (§10.1.2, §7.2.10)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'instant'], ['bosh', 'bob', 'instant']);
      const room = roomName('instant');

      await alice.send(joinPresence(`${room}/owner`));
      const self = await alice.next(isPres(`${room}/owner`), 'self-presence of the new room');
      const st = statuses(self);
      assert.ok(st.has('201'), `status 201 (room created): ${show(self)}`);
      assert.ok(st.has('110'), `status 110 (self-presence): ${show(self)}`);
      assert.equal(item(self)?.attrs.affiliation, 'owner', show(self));
      assert.equal(item(self)?.attrs.role, 'moderator', show(self));

      // §7.2.10: the room is locked until it is configured
      assert.equal(await joinError(bob, room, 'bob'), 'cancel/item-not-found', 'join of a locked room');

      const res = await alice.iq('set', room,
        xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: NS_DATA, type: 'submit' })));
      assert.equal(res.attrs.type, 'result', `instant room accepted: ${show(res)}`);
      assert.equal(res.attrs.from, room);

      const bself = await join(bob, room, 'bob');
      assert.deepEqual([...statuses(bself)].sort(), ['110'], `no 201 for the second occupant: ${show(bself)}`);
      assert.equal(item(bself).attrs.affiliation, 'none');
      assert.equal(item(bself).attrs.role, 'participant');
      const seen = await alice.next(isPres(`${room}/bob`), "bob's presence at the owner");
      assert.equal(item(seen).attrs.jid, bob.jid, `a moderator sees the real JID: ${show(seen)}`);
    });

    test('gets the muc#roomconfig form, submits a changed one and reads it back by disco#info (§10.1.3, §6.4)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'config'], ['ws', 'bob', 'config']);
      const room = roomName('config');

      const self = await tryJoin(alice, room, 'owner');
      assert.ok(statuses(self).has('201'), show(self));

      // reserved room: the form is asked for while the room is locked
      const res = await alice.iqOk('get', room, xml('query', { xmlns: NS_MUC_OWNER }));
      const q = res.getChild('query', NS_MUC_OWNER);
      const x = q?.getChild('x', NS_DATA);
      assert.ok(x, `a data form in the owner query: ${show(res)}`);
      assert.equal(x.attrs.type, 'form');
      const f = formFields(x);
      assert.equal(value(f, 'FORM_TYPE'), 'http://jabber.org/protocol/muc#roomconfig');
      assert.equal(f.FORM_TYPE.type, 'hidden');
      for (const v of ['muc#roomconfig_roomname', 'muc#roomconfig_roomdesc', 'muc#roomconfig_persistentroom',
        'muc#roomconfig_publicroom', 'muc#roomconfig_membersonly', 'muc#roomconfig_moderatedroom',
        'muc#roomconfig_passwordprotectedroom', 'muc#roomconfig_roomsecret', 'muc#roomconfig_whois']) {
        assert.ok(f[v], `field ${v} in the configuration form: ${show(x)}`);
      }
      assert.equal(f['muc#roomconfig_roomname'].type, 'text-single');
      assert.equal(f['muc#roomconfig_persistentroom'].type, 'boolean');
      assert.equal(f['muc#roomconfig_membersonly'].type, 'boolean');
      assert.equal(f['muc#roomconfig_roomsecret'].type, 'text-private');
      assert.equal(f['muc#roomconfig_whois'].type, 'list-single');
      const whoisOptions = f['muc#roomconfig_whois'].el.getChildren('option').map((o) => o.getChildText('value'));
      assert.ok(whoisOptions.includes('moderators') && whoisOptions.includes('anyone'), `whois options: ${whoisOptions}`);
      assert.equal(value(f, 'muc#roomconfig_persistentroom'), '0', 'a new room is temporary');
      assert.equal(value(f, 'muc#roomconfig_membersonly'), '0', 'a new room is open');

      await alice.iqOk('set', room, submitForm({
        'muc#roomconfig_roomname': 'Web MUC room',
        'muc#roomconfig_roomdesc': 'configured over BOSH',
        'muc#roomconfig_persistentroom': '1',
        'muc#roomconfig_membersonly': '1',
      }));

      // the owner's form shows the new values
      const again = formFields((await alice.iqOk('get', room, xml('query', { xmlns: NS_MUC_OWNER })))
        .getChild('query', NS_MUC_OWNER).getChild('x', NS_DATA));
      assert.equal(value(again, 'muc#roomconfig_roomname'), 'Web MUC room');
      assert.equal(value(again, 'muc#roomconfig_roomdesc'), 'configured over BOSH');
      assert.ok(['1', 'true'].includes(value(again, 'muc#roomconfig_persistentroom')));
      assert.ok(['1', 'true'].includes(value(again, 'muc#roomconfig_membersonly')));

      // anyone (here a non-occupant on WebSocket) sees it in disco#info
      const info = await discoInfo(bob, room);
      assert.equal(info.attrs.type, 'result', show(info));
      const iq = info.getChild('query', DISCO_INFO);
      const ident = iq.getChild('identity');
      assert.equal(ident.attrs.category, 'conference');
      assert.equal(ident.attrs.type, 'text');
      assert.equal(ident.attrs.name, 'Web MUC room', `room name as the identity name: ${show(info)}`);
      const feats = new Set(iq.getChildren('feature').map((e) => e.attrs.var));
      for (const v of [NS_MUC, 'muc_persistent', 'muc_membersonly']) assert.ok(feats.has(v), `feature ${v}: ${show(info)}`);
      for (const v of ['muc_temporary', 'muc_open']) assert.ok(!feats.has(v), `no feature ${v}: ${show(info)}`);
      const ix = iq.getChild('x', NS_DATA);
      assert.ok(ix, `muc#roominfo form: ${show(info)}`);
      assert.equal(ix.attrs.type, 'result');
      const rf = formFields(ix);
      assert.equal(value(rf, 'FORM_TYPE'), 'http://jabber.org/protocol/muc#roominfo');
      assert.equal(value(rf, 'muc#roominfo_description'), 'configured over BOSH');
      assert.equal(value(rf, 'muc#roominfo_occupants'), '1');

      // the configuration is the owner's alone
      const denied = await bob.iq('get', room, xml('query', { xmlns: NS_MUC_OWNER }));
      assert.equal(errorOf(denied), 'auth/forbidden', show(denied));
    });

    test('a second user joins: occupants, own presence with 110, then history, then the subject (§7.1, §7.2.2, §7.2.13, §7.2.15)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'order'], ['bosh', 'bob', 'order']);
      const room = roomName('order');
      await createRoom(alice, room);

      await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('subject', {}, 'Web subject')));
      await alice.next(isMsg((el) => el.getChildText('subject') === 'Web subject'), 'subject change reflected');
      for (const b of ['history one', 'history two']) {
        await alice.send(groupchat(room, b));
        await alice.next(bodyIs(b), `"${b}" reflected`);
      }

      await bob.send(joinPresence(`${room}/bob`));
      await bob.next(isSubject(room), 'subject');
      const seq = bob.stanzas.all.filter((el) => el.name !== 'iq' && bare(el.attrs.from ?? '') === room);
      const kinds = seq.map((el) => {
        if (el.name === 'presence') return `presence ${el.attrs.from.split('/')[1]}${statuses(el).has('110') ? ' 110' : ''}`;
        if (el.getChild('subject') && !el.getChild('body')) return 'subject';
        return `history ${el.getChildText('body')}`;
      });
      assert.deepEqual(kinds, ['presence owner', 'presence bob 110', 'history history one', 'history history two', 'subject'],
        `order of what the room sent on joining:\n${seq.map(show).join('\n')}`);

      const [owner, self, h1, h2, subj] = seq;
      assert.equal(item(owner).attrs.affiliation, 'owner', show(owner));
      assert.equal(item(owner).attrs.role, 'moderator', show(owner));
      assert.equal(item(owner).attrs.jid, undefined, `semi-anonymous room: no real JID for a participant: ${show(owner)}`);
      assert.equal(item(self).attrs.affiliation, 'none', show(self));
      assert.equal(item(self).attrs.role, 'participant', show(self));
      assert.equal(self.attrs.to, bob.jid);
      for (const h of [h1, h2]) {
        assert.equal(h.attrs.type, 'groupchat', show(h));
        assert.equal(h.attrs.from, `${room}/owner`, show(h));
        const d = h.getChild('delay', NS_DELAY);
        assert.ok(d && d.attrs.from === room && d.attrs.stamp, `history has <delay from=room stamp=...>: ${show(h)}`);
      }
      assert.equal(subj.getChildText('subject'), 'Web subject', show(subj));
      assert.equal(subj.attrs.type, 'groupchat', show(subj));

      const seen = await alice.next(isPres(`${room}/bob`), "bob's join at the owner");
      assert.equal(item(seen).attrs.jid, bob.jid, `moderators see real JIDs: ${show(seen)}`);
      assert.ok(!statuses(seen).has('110'), show(seen));
    });

    test('groupchat messages reach every occupant from room/nick with stanza-id and a stable occupant-id (§7.4)', async () => {
      const [alice, bob, carol] = await parties(
        ['ws', 'alice', 'chat'],
        ['bosh', 'bob', 'chat'],
        ['ws', 'carol', 'chat'],
      );
      const room = roomName('chat');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await join(carol, room, 'carol');

      await bob.send(groupchat(room, 'hello room', 'gc-1'));
      const got = [];
      for (const p of [alice, bob, carol]) {
        const m = await p.next(bodyIs('hello room'), `"hello room" at ${p.jid}`);
        assert.equal(m.attrs.from, `${room}/bob`, show(m));
        assert.equal(m.attrs.to, p.jid, show(m));
        assert.equal(m.attrs.type, 'groupchat', show(m));
        assert.equal(m.attrs.id, 'gc-1', `the message keeps its id: ${show(m)}`);
        const sid = m.getChildren('stanza-id', NS_SID);
        assert.equal(sid.length, 1, `one stanza-id: ${show(m)}`);
        assert.equal(sid[0].attrs.by, room, `stanza-id by the room: ${show(m)}`);
        assert.ok(sid[0].attrs.id, show(m));
        const oid = m.getChildren('occupant-id', NS_OID);
        assert.equal(oid.length, 1, `one occupant-id: ${show(m)}`);
        assert.ok(oid[0].attrs.id, show(m));
        got.push([sid[0].attrs.id, oid[0].attrs.id]);
      }
      assert.deepEqual(got[1], got[0], 'same stanza-id and occupant-id for every occupant');
      assert.deepEqual(got[2], got[0], 'same stanza-id and occupant-id for every occupant');

      // a forged stanza-id/occupant-id from the sender is replaced
      await bob.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'again'),
        xml('stanza-id', { xmlns: NS_SID, by: room, id: 'forged' }),
        xml('occupant-id', { xmlns: NS_OID, id: 'forged' })));
      const again = await carol.next(bodyIs('again'), '"again"');
      assert.equal(again.getChildren('occupant-id', NS_OID).length, 1, show(again));
      assert.equal(again.getChild('occupant-id', NS_OID).attrs.id, got[0][1], `occupant-id stable for bob: ${show(again)}`);
      const sids = again.getChildren('stanza-id', NS_SID).filter((s) => s.attrs.by === room);
      assert.equal(sids.length, 1, show(again));
      assert.notEqual(sids[0].attrs.id, got[0][0], 'a new stanza-id for a new message');
      assert.notEqual(sids[0].attrs.id, 'forged', show(again));

      await carol.send(groupchat(room, 'from carol'));
      const cm = await bob.next(bodyIs('from carol'), '"from carol" at bob (BOSH)');
      assert.equal(cm.attrs.from, `${room}/carol`);
      assert.notEqual(cm.getChild('occupant-id', NS_OID)?.attrs.id, got[0][1], 'another user, another occupant-id');
    });

    test('occupant-id (XEP-0421) is in presences too and survives a nick change and a rejoin', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'oid'], ['bosh', 'bob', 'oid']);
      const room = roomName('oid');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await bob.send(groupchat(room, 'first'));
      const m1 = await alice.next(bodyIs('first'), '"first"');
      const oid = m1.getChild('occupant-id', NS_OID)?.attrs.id;
      assert.ok(oid, show(m1));

      await bob.send(xml('presence', { to: `${room}/bobby` }));
      await bob.next(isPres(`${room}/bobby`), 'new nick');
      await bob.send(groupchat(room, 'second'));
      const m2 = await alice.next(bodyIs('second'), '"second"');
      assert.equal(m2.attrs.from, `${room}/bobby`);
      assert.equal(m2.getChild('occupant-id', NS_OID)?.attrs.id, oid, `same occupant-id after a nick change: ${show(m2)}`);

      await bob.send(xml('presence', { to: `${room}/bobby`, type: 'unavailable' }));
      await bob.next(isPres(`${room}/bobby`, 'unavailable'), 'left');
      await join(bob, room, 'bob');
      await bob.send(groupchat(room, 'third'));
      const m3 = await alice.next(bodyIs('third'), '"third"');
      assert.equal(m3.getChild('occupant-id', NS_OID)?.attrs.id, oid, `same occupant-id after a rejoin: ${show(m3)}`);

      // XEP-0421 §4: "The <occupant-id> element MUST be attached to every
      // message and every presence sent by a MUC."
      const pres = alice.stanzas.all.filter((el) => el.name === 'presence' && bare(el.attrs.from ?? '') === room &&
        el.attrs.from !== `${room}/owner`);
      assert.ok(pres.length >= 4, `bob's presences at alice: ${pres.map(show).join('\n')}`);
      for (const p of pres) {
        assert.equal(p.getChild('occupant-id', NS_OID)?.attrs.id, oid, `occupant-id in the room's presence: ${show(p)}`);
      }
    });

    test('nick change (303), nick conflicts and a join without nick (§7.6, §7.2.8, §7.2.1)', async () => {
      const [alice, bob, carol] = await parties(
        ['ws', 'alice', 'nick'],
        ['bosh', 'bob', 'nick'],
        ['ws', 'carol', 'nick'],
      );
      const room = roomName('nick');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await alice.next(isPres(`${room}/bob`), 'bob joined');

      await bob.send(xml('presence', { to: `${room}/robert` }));
      for (const p of [alice, bob]) {
        const un = await p.next(isPres(`${room}/bob`, 'unavailable'), `303 at ${p.jid}`);
        assert.ok(statuses(un).has('303'), `status 303: ${show(un)}`);
        assert.equal(item(un).attrs.nick, 'robert', `item nick is the new nick: ${show(un)}`);
        assert.equal(statuses(un).has('110'), p === bob, `110 only to the one who changes: ${show(un)}`);
        const av = await p.next(isPres(`${room}/robert`), `new nick at ${p.jid}`);
        assert.equal(statuses(av).has('110'), p === bob, show(av));
        assert.equal(item(av).attrs.role, 'participant', show(av));
        // the unavailable presence comes first
        const all = p.stanzas.all;
        assert.ok(all.indexOf(un) < all.indexOf(av), 'unavailable (303) before the new presence');
      }
      await bob.send(groupchat(room, 'renamed'));
      const m = await alice.next(bodyIs('renamed'), '"renamed"');
      assert.equal(m.attrs.from, `${room}/robert`);

      // §7.6: a nick that is taken
      await bob.send(xml('presence', { to: `${room}/owner` }));
      const conflict = await bob.next(isPres(`${room}/owner`, 'error'), 'nick change conflict');
      assert.equal(errorOf(conflict), 'cancel/conflict', show(conflict));
      await alice.none(isPres(`${room}/robert`, 'unavailable'), 'a nick change after the conflict');

      // §7.2.8: joining with a nick that is taken
      assert.equal(await joinError(carol, room, 'robert'), 'cancel/conflict');
      // §7.2.1: no nick at all
      await carol.send(xml('presence', { to: room }, xml('x', { xmlns: NS_MUC })));
      const nonick = await carol.next(isPres(room, 'error'), 'error for a join without nick');
      assert.equal(errorOf(nonick), 'modify/jid-malformed', show(nonick));
      await alice.none((el) => el.name === 'presence' && bare(el.attrs.from ?? '') === room && /carol/.test(el.toString()),
        "carol's failed joins seen by the room");
    });

    test('private messages through room/nick; a non-occupant may not send to the room (§7.5, §7.4)', async () => {
      const [alice, bob, carol] = await parties(['ws', 'alice', 'pm'], ['bosh', 'bob', 'pm'], ['bosh', 'carol', 'pm']);
      const room = roomName('pm');
      await createRoom(alice, room);
      await join(bob, room, 'bob');

      await bob.send(xml('message', { to: `${room}/owner`, type: 'chat', id: 'pm-1' }, xml('body', {}, 'psst')));
      const pm = await alice.next(bodyIs('psst'), 'private message at alice');
      assert.equal(pm.attrs.from, `${room}/bob`, show(pm));
      assert.equal(pm.attrs.to, alice.jid, show(pm));
      assert.equal(pm.attrs.type, 'chat', show(pm));
      assert.ok(muc(pm), `<x xmlns=muc#user/> in a private message: ${show(pm)}`);
      await bob.none(bodyIs('psst'), 'a private message sent to everyone');

      await alice.send(xml('message', { to: `${room}/bob`, type: 'chat' }, xml('body', {}, 'hush')));
      const back = await bob.next(bodyIs('hush'), 'the answer at bob');
      assert.equal(back.attrs.from, `${room}/owner`, show(back));
      assert.equal(back.attrs.to, bob.jid, show(back));
      assert.ok(!back.toString().includes(alice.bare), `the real JID of the sender stays hidden: ${show(back)}`);

      await bob.send(xml('message', { to: `${room}/nobody`, type: 'chat' }, xml('body', {}, 'lost')));
      const nf = await bob.next(isMsg((el) => typeOf(el) === 'error'), 'error for a missing nick');
      assert.equal(nf.attrs.from, `${room}/nobody`, show(nf));
      assert.equal(errorOf(nf), 'cancel/item-not-found', show(nf));

      // not in the room: not-acceptable
      await carol.send(groupchat(room, 'let me in', 'outsider'));
      const na = await carol.next(isMsg((el) => typeOf(el) === 'error'), 'error for a non-occupant');
      assert.equal(na.attrs.from, room, show(na));
      assert.equal(na.attrs.id, 'outsider', show(na));
      assert.equal(errorOf(na), 'cancel/not-acceptable', show(na));
      await alice.none(bodyIs('let me in'), "the non-occupant's message in the room");
    });

    test('a moderator kicks a participant: 307 (§8.2)', async () => {
      const [alice, bob, carol] = await parties(
        ['ws', 'alice', 'kick'],
        ['bosh', 'bob', 'kick'],
        ['ws', 'carol', 'kick'],
      );
      const room = roomName('kick');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await join(carol, room, 'carol');

      const denied = await carol.iq('set', room, adminSet([{ nick: 'bob', role: 'none' }]));
      assert.equal(errorOf(denied), 'auth/forbidden', `a participant may not kick: ${show(denied)}`);

      const res = await alice.iq('set', room, adminSet([{ nick: 'bob', role: 'none' }, 'behave']));
      assert.equal(res.attrs.type, 'result', show(res));
      const un = await bob.next(isPres(`${room}/bob`, 'unavailable'), 'kicked');
      assert.ok(statuses(un).has('307') && statuses(un).has('110'), `307 and 110 to the kicked: ${show(un)}`);
      assert.equal(item(un).attrs.role, 'none', show(un));
      assert.equal(item(un).getChildText('reason'), 'behave', show(un));
      for (const p of [alice, carol]) {
        const u = await p.next(isPres(`${room}/bob`, 'unavailable'), `bob kicked, at ${p.jid}`);
        assert.ok(statuses(u).has('307') && !statuses(u).has('110'), show(u));
        assert.equal(item(u).attrs.role, 'none', show(u));
      }
      // he is out: his messages are not-acceptable, but he may come back
      await bob.send(groupchat(room, 'still here?'));
      const err = await bob.next(isMsg((el) => typeOf(el) === 'error'), 'error after the kick');
      assert.equal(errorOf(err), 'cancel/not-acceptable', show(err));
      await join(bob, room, 'bob');
    });

    test('an admin bans a user: 301, then the join fails with forbidden (§9.1, §7.2.7)', async () => {
      const [alice, bob, carol] = await parties(
        ['bosh', 'alice', 'ban'],
        ['ws', 'bob', 'ban'],
        ['bosh', 'carol', 'ban'],
      );
      const room = roomName('ban');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await join(carol, room, 'carol');

      const res = await alice.iq('set', room, adminSet([{ jid: 'bob@localhost', affiliation: 'outcast' }, 'spam']));
      assert.equal(res.attrs.type, 'result', show(res));
      const un = await bob.next(isPres(`${room}/bob`, 'unavailable'), 'banned');
      assert.ok(statuses(un).has('301') && statuses(un).has('110'), `301 and 110 to the banned: ${show(un)}`);
      assert.equal(item(un).attrs.affiliation, 'outcast', show(un));
      assert.equal(item(un).attrs.role, 'none', show(un));
      assert.equal(item(un).getChildText('reason'), 'spam', show(un));
      const cu = await carol.next(isPres(`${room}/bob`, 'unavailable'), 'bob banned, at carol');
      assert.ok(statuses(cu).has('301') && !statuses(cu).has('110'), show(cu));
      assert.equal(item(cu).attrs.affiliation, 'outcast', show(cu));

      assert.equal(await joinError(bob, room, 'bob'), 'auth/forbidden', 'a banned user cannot join');
      assert.equal(await joinError(bob, room, 'other-nick'), 'auth/forbidden', 'not under another nick either');

      const list = await alice.iqOk('get', room, xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'outcast' })));
      const items = list.getChild('query', NS_MUC_ADMIN).getChildren('item').map((i) => [i.attrs.jid, i.attrs.affiliation]);
      assert.deepEqual(items, [['bob@localhost', 'outcast']], show(list));

      // "If an admin or owner attempts to ban himself, the service MUST deny the request and return a <conflict/>"
      const self = await alice.iq('set', room, adminSet([{ jid: 'alice@localhost', affiliation: 'outcast' }]));
      assert.equal(errorOf(self), 'cancel/conflict', `an owner banning herself: ${show(self)}`);
    });

    test('voice in a moderated room: visitors are refused, a moderator grants and revokes voice (§8.3, §8.4)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'voice'], ['bosh', 'bob', 'voice']);
      const room = roomName('voice');
      await createRoom(alice, room, { config: { 'muc#roomconfig_moderatedroom': '1' } });
      const info = await discoInfo(bob, room);
      assert.ok(info.getChild('query', DISCO_INFO).getChildren('feature').some((f) => f.attrs.var === 'muc_moderated'), show(info));

      const self = await join(bob, room, 'bob');
      assert.equal(item(self).attrs.role, 'visitor', `a non-member enters a moderated room as visitor: ${show(self)}`);
      await bob.send(groupchat(room, 'may I?', 'v1'));
      let err = await bob.next(isMsg((el) => typeOf(el) === 'error'), 'error for a visitor');
      assert.equal(errorOf(err)?.split('/')[1], 'forbidden', show(err));
      assert.equal(err.attrs.from, room, show(err));
      await alice.none(bodyIs('may I?'), "the visitor's message in the room");

      // §8.3 grant voice
      let res = await alice.iq('set', room, adminSet([{ nick: 'bob', role: 'participant' }]));
      assert.equal(res.attrs.type, 'result', show(res));
      for (const p of [alice, bob]) {
        const pr = await p.next((el) => isPres(`${room}/bob`)(el) && item(el)?.attrs.role === 'participant', `voice granted, at ${p.jid}`);
        assert.equal(statuses(pr).has('110'), p === bob, show(pr));
      }
      await bob.send(groupchat(room, 'thank you'));
      const m = await alice.next(bodyIs('thank you'), 'a message with voice');
      assert.equal(m.attrs.from, `${room}/bob`);

      // §8.4 revoke voice
      res = await alice.iq('set', room, adminSet([{ nick: 'bob', role: 'visitor' }, 'quiet']));
      assert.equal(res.attrs.type, 'result', show(res));
      for (const p of [alice, bob]) {
        await p.next((el) => isPres(`${room}/bob`)(el) && item(el)?.attrs.role === 'visitor', `voice revoked, at ${p.jid}`);
      }
      await bob.send(groupchat(room, 'but...'));
      err = await bob.next(isMsg((el) => typeOf(el) === 'error'), 'error after the revoke');
      assert.equal(errorOf(err)?.split('/')[1], 'forbidden', show(err));

      // "a service MUST NOT allow the voice privileges of an admin or owner to be removed by anyone"
      res = await alice.iq('set', room, adminSet([{ nick: 'owner', role: 'visitor' }]));
      assert.equal(errorOf(res), 'cancel/not-allowed', `revoking an owner's voice: ${show(res)}`);
    });

    test('members-only room: registration-required until the owner makes the user a member (§7.2.6, §9.3)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'members'], ['ws', 'bob', 'members']);
      const room = roomName('members');
      await createRoom(alice, room, { config: { 'muc#roomconfig_membersonly': '1' } });

      assert.equal(await joinError(bob, room, 'bob'), 'auth/registration-required');

      const res = await alice.iq('set', room, adminSet([{ jid: 'bob@localhost', affiliation: 'member' }]));
      assert.equal(res.attrs.type, 'result', show(res));
      const list = await alice.iqOk('get', room, xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', { affiliation: 'member' })));
      const members = list.getChild('query', NS_MUC_ADMIN).getChildren('item').map((i) => i.attrs.jid);
      assert.deepEqual(members, ['bob@localhost'], show(list));

      const self = await join(bob, room, 'bob');
      assert.equal(item(self).attrs.affiliation, 'member', show(self));
      assert.equal(item(self).attrs.role, 'participant', show(self));
      const seen = await alice.next(isPres(`${room}/bob`), 'bob at the owner');
      assert.equal(item(seen).attrs.affiliation, 'member', show(seen));
    });

    test('password-protected room: not-authorized without or with a wrong password (§7.2.5)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'secret'], ['bosh', 'bob', 'secret']);
      const room = roomName('secret');
      await createRoom(alice, room, {
        config: { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'open sesame' },
      });
      const info = await discoInfo(bob, room);
      const feats = info.getChild('query', DISCO_INFO).getChildren('feature').map((f) => f.attrs.var);
      assert.ok(feats.includes('muc_passwordprotected') && !feats.includes('muc_unsecured'), show(info));

      assert.equal(await joinError(bob, room, 'bob'), 'auth/not-authorized', 'no password');
      assert.equal(await joinError(bob, room, 'bob', { password: 'open' }), 'auth/not-authorized', 'wrong password');
      const self = await join(bob, room, 'bob', { password: 'open sesame' });
      assert.equal(item(self).attrs.role, 'participant', show(self));
    });

    test('the owner destroys the room with an alternate venue and a reason (§10.9)', async () => {
      const [alice, bob, carol] = await parties(
        ['ws', 'alice', 'destroy'],
        ['bosh', 'bob', 'destroy'],
        ['bosh', 'carol', 'destroy'],
      );
      const room = roomName('destroy');
      const venue = roomName('venue');
      await createRoom(alice, room);
      await join(bob, room, 'bob');
      await join(carol, room, 'carol');
      await bob.next(isPres(`${room}/carol`), 'carol at bob');

      const denied = await bob.iq('set', room, xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy', { jid: venue })));
      assert.equal(errorOf(denied), 'auth/forbidden', `only an owner destroys: ${show(denied)}`);

      const res = await alice.iq('set', room, xml('query', { xmlns: NS_MUC_OWNER },
        xml('destroy', { jid: venue }, xml('reason', {}, 'We moved'))));
      assert.equal(res.attrs.type, 'result', show(res));
      for (const [p, nick] of [[bob, 'bob'], [carol, 'carol'], [alice, 'owner']]) {
        const un = await p.next(isPres(`${room}/${nick}`, 'unavailable'), `destroy presence at ${p.jid}`);
        assert.equal(item(un)?.attrs.role, 'none', show(un));
        const d = muc(un).getChild('destroy');
        assert.ok(d, `<destroy/> in the unavailable presence: ${show(un)}`);
        assert.equal(d.attrs.jid, venue, show(un));
        assert.equal(d.getChildText('reason'), 'We moved', show(un));
      }
      const bu = bob.stanzas.all.find(isPres(`${room}/bob`, 'unavailable'));
      assert.equal(item(bu).attrs.affiliation, 'none', show(bu));
      // "SHOULD NOT broadcast presence stanzas of type unavailable from all occupants"
      await bob.none(isPres(`${room}/carol`, 'unavailable'), "carol's unavailable presence at bob");

      const gone = await discoInfo(bob, room);
      assert.equal(errorOf(gone), 'cancel/item-not-found', `the room is gone: ${show(gone)}`);
      await bob.send(groupchat(room, 'hello?'));
      const err = await bob.next(isMsg((el) => typeOf(el) === 'error'), 'error for the destroyed room');
      assert.ok(['cancel/item-not-found', 'cancel/not-acceptable'].includes(errorOf(err)), show(err));
    });

    test('mediated invitation: the room passes a muc#user invite on to the invitee (§7.8.2)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'invite'], ['bosh', 'bob', 'invite']);
      const room = roomName('invite');
      await createRoom(alice, room, {
        config: { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'cauldronburn' },
      });
      // bob is available, so a message to his bare JID reaches him
      await bob.send(xml('presence'));
      await bob.next(isPres(bob.jid), 'own presence');

      await alice.send(xml('message', { to: room, id: 'inv-1' },
        xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to: 'bob@localhost' }, xml('reason', {}, 'Join us')))));
      const inv = await bob.next(isMsg((el) => !!muc(el)?.getChild('invite')), 'invitation');
      assert.equal(inv.attrs.from, room, `the invitation comes from the room: ${show(inv)}`);
      assert.equal(bare(inv.attrs.to), 'bob@localhost', show(inv));
      const i = muc(inv).getChild('invite');
      // §7.8.2: the inviter's bare, full or occupant JID; a semi-anonymous
      // room (this one) does not give the address away, so the occupant JID
      assert.ok([`${room}/owner`, 'alice@localhost'].includes(bare(i.attrs.from)) || i.attrs.from === `${room}/owner`,
        `invite from = the inviter: ${show(inv)}`);
      assert.equal(i.attrs.to, undefined, show(inv));
      assert.equal(i.getChildText('reason'), 'Join us', show(inv));
      assert.equal(muc(inv).getChildText('password'), 'cauldronburn', `the room adds its password (SHOULD): ${show(inv)}`);
      await alice.none(isMsg((el) => typeOf(el) === 'error'), 'error for the invitation');

      // a non-occupant cannot invite (its message is not-acceptable)
      const carol = await party('ws', 'carol', 'invite');
      await carol.send(xml('message', { to: room },
        xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to: 'bob@localhost' }))));
      const ce = await carol.next(isMsg((el) => typeOf(el) === 'error'), 'error for the outsider');
      assert.equal(errorOf(ce), 'cancel/not-acceptable', show(ce));

      const self = await join(bob, room, 'bob', { password: muc(inv).getChildText('password') });
      assert.equal(item(self).attrs.role, 'participant');
    });

    test('direct invitation (XEP-0249) is routed unchanged between users', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'direct'], ['ws', 'bob', 'direct']);
      const room = roomName('direct');
      await createRoom(alice, room, {
        config: { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'cauldronburn' },
      });
      await bob.send(xml('presence'));
      await bob.next(isPres(bob.jid), 'own presence');

      const x = xml('x', {
        xmlns: NS_CONFERENCE, jid: room, password: 'cauldronburn', reason: 'Hey Bob, join us', continue: 'true', thread: 'e0ffe42b28561960c6b12b944a092794b9683a38',
      });
      await alice.send(xml('message', { to: 'bob@localhost', id: 'dinv-1' }, x));
      const m = await bob.next(isMsg((el) => !!el.getChild('x', NS_CONFERENCE)), 'direct invitation');
      assert.equal(m.attrs.from, alice.jid, show(m));
      assert.equal(m.attrs.id, 'dinv-1', show(m));
      const got = m.getChild('x', NS_CONFERENCE);
      const { xmlns: _x, ...sent } = x.attrs;
      const { xmlns: _y, ...recv } = got.attrs;
      assert.deepEqual(recv, sent, `the jabber:x:conference element arrives unchanged: ${show(m)}`);
      assert.equal(got.children.length, 0, show(m));

      const self = await join(bob, room, 'bob', { password: got.attrs.password });
      assert.equal(item(self).attrs.role, 'participant');
    });

    test('cancelling the initial configuration destroys the room, with unavailable presence to the owner (§10.1.3)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'cancel'], ['bosh', 'bob', 'cancel']);
      const room = roomName('cancel');
      const self = await tryJoin(alice, room, 'owner');
      assert.ok(statuses(self).has('201'), show(self));
      await alice.iqOk('get', room, xml('query', { xmlns: NS_MUC_OWNER }));

      const res = await alice.iq('set', room, xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: NS_DATA, type: 'cancel' })));
      assert.equal(res.attrs.type, 'result', show(res));
      // "If the room owner cancels the initial configuration, the service MUST
      // destroy the room, making sure to send unavailable presence to the room owner"
      const un = await alice.next(isPres(`${room}/owner`, 'unavailable'), 'unavailable presence to the owner after the cancel', 3000);
      assert.equal(item(un)?.attrs.role, 'none', show(un));
      const gone = await discoInfo(bob, room);
      assert.equal(errorOf(gone), 'cancel/item-not-found', `the room is gone: ${show(gone)}`);
      const again = await tryJoin(bob, room, 'bob');
      assert.ok(statuses(again).has('201'), `the room name is free again (a new room): ${show(again)}`);
      // §10.9: "The extended presence information of the stanza MUST include <destroy/> element."
      assert.ok(muc(un).getChild('destroy'), `<destroy/> in the owner's unavailable presence: ${show(un)}`);
    });

    test('an initial configuration that violates policy (password-protected, no password) is not-acceptable (§10.1.3)', async () => {
      const alice = await party('bosh', 'alice', 'policy');
      const room = roomName('policy');
      const self = await tryJoin(alice, room, 'owner');
      assert.ok(statuses(self).has('201'), show(self));
      // "If the room creation fails because the specified room configuration options violate one or
      // more service policies (e.g., because the password for a password-protected room is blank),
      // the service MUST return a <not-acceptable/> error."
      const res = await alice.iq('set', room, submitForm({ 'muc#roomconfig_passwordprotectedroom': '1' }));
      assert.equal(errorOf(res), 'modify/not-acceptable', show(res));
    });

    test('a configuration change that makes the room non-anonymous is announced with status 172 (§10.2.1)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'notify'], ['bosh', 'bob', 'notify']);
      const room = roomName('notify');
      await createRoom(alice, room);
      await join(bob, room, 'bob');

      await alice.iqOk('set', room, submitForm({ 'muc#roomconfig_whois': 'anyone' }));
      for (const p of [alice, bob]) {
        const m = await p.next(isMsg((el) => bare(el.attrs.from ?? '') === room && statuses(el).has('172')),
          `status 172 (room now non-anonymous) at ${p.jid}`, 3000);
        assert.equal(m.attrs.from, room, show(m));
      }
    });

    test('the moderator gets the iq result before the others hear of a voice change or a kick (§8.3, §8.2)', async () => {
      const [alice, bob, carol] = await parties(
        ['ws', 'alice', 'order2'],
        ['bosh', 'bob', 'order2'],
        ['bosh', 'carol', 'order2'],
      );
      const room = roomName('order2');
      await createRoom(alice, room, { config: { 'muc#roomconfig_moderatedroom': '1' } });
      await join(bob, room, 'bob');
      await join(carol, room, 'carol');
      const problems = [];
      const before = (what, first, second) => {
        const all = alice.stanzas.all;
        if (all.indexOf(first) > all.indexOf(second)) problems.push(`${what}: got\n  ${show(second)}\nbefore\n  ${show(first)}`);
      };

      // §8.3: "The service MUST then inform the moderator of success ... The service MUST then send updated presence"
      const r1 = await alice.iq('set', room, adminSet([{ nick: 'bob', role: 'participant' }]));
      assert.equal(r1.attrs.type, 'result', show(r1));
      const p1 = await alice.next((el) => isPres(`${room}/bob`)(el) && item(el)?.attrs.role === 'participant', 'voice granted');
      before('§8.3 grant voice', r1, p1);

      // §8.2: "After informing the moderator, the service MUST then inform all of the remaining occupants"
      const r2 = await alice.iq('set', room, adminSet([{ nick: 'carol', role: 'none' }]));
      assert.equal(r2.attrs.type, 'result', show(r2));
      const p2 = await alice.next(isPres(`${room}/carol`, 'unavailable'), 'carol kicked');
      assert.ok(statuses(p2).has('307'), show(p2));
      before('§8.2 kick', r2, p2);
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    test('the invitee declines a mediated invitation and the room tells the inviter (§7.8.2)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'decline'], ['bosh', 'bob', 'decline']);
      const room = roomName('decline');
      await createRoom(alice, room);
      await bob.send(xml('presence'));
      await bob.next(isPres(bob.jid), 'own presence');
      await alice.send(xml('message', { to: room },
        xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to: 'bob@localhost' }, xml('reason', {}, 'Join us')))));
      const inv = await bob.next(isMsg((el) => !!muc(el)?.getChild('invite')), 'invitation');
      const inviter = muc(inv).getChild('invite').attrs.from;

      await bob.send(xml('message', { to: room, id: 'decl-1' },
        xml('x', { xmlns: NS_MUC_USER }, xml('decline', { to: inviter }, xml('reason', {}, 'Too busy')))));
      const m = await alice.next(isMsg((el) => !!muc(el)?.getChild('decline') || typeOf(el) === 'error'), 'the decline at the inviter', 3000)
        .catch((e) => e);
      const err = bob.stanzas.all.find((el) => el.name === 'message' && typeOf(el) === 'error');
      assert.ok(!(m instanceof Error), `no decline reached the inviter${err ? `; the room answered the invitee with ${show(err)}` : ''}`);
      assert.equal(m.attrs.from, room, show(m));
      const d = muc(m).getChild('decline');
      assert.equal(bare(d.attrs.from), 'bob@localhost', `decline from = the invitee: ${show(m)}`);
      assert.equal(d.getChildText('reason'), 'Too busy', show(m));
    });

    test('recommended behaviour (SHOULD): subject <delay/> (§7.2.15), status 104 (§10.2.1), muc#stable_id (§7.4)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'should'], ['bosh', 'bob', 'should']);
      const room = roomName('should');
      await createRoom(alice, room);
      await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('subject', {}, 'Cauldron')));
      await alice.next(isMsg((el) => el.getChildText('subject') === 'Cauldron'), 'subject reflected');
      const problems = [];

      await bob.send(joinPresence(`${room}/bob`));
      const subj = await bob.next(isSubject(room), 'subject on joining');
      const d = subj.getChild('delay', NS_DELAY);
      if (!d || d.attrs.from !== room || !d.attrs.stamp) {
        problems.push(`§7.2.15: the subject SHOULD be stamped with <delay from='${room}' stamp=.../>: ${show(subj)}`);
      }

      await alice.iqOk('set', room, submitForm({ 'muc#roomconfig_roomname': 'Renamed' }));
      const n = await bob.next(isMsg((el) => bare(el.attrs.from ?? '') === room && statuses(el).has('104')), 'status 104', 2000)
        .catch(() => null);
      if (!n) problems.push('§10.2.1: no message with status 104 to the occupants after a (non-privacy) configuration change');

      for (const jid of [SERVICE, room]) {
        const info = await discoInfo(bob, jid);
        const feats = info.getChild('query', DISCO_INFO)?.getChildren('feature').map((f) => f.attrs.var) ?? [];
        if (!feats.includes('http://jabber.org/protocol/muc#stable_id')) {
          problems.push(`§7.4: ${jid} SHOULD advertise http://jabber.org/protocol/muc#stable_id: ${show(info)}`);
        }
      }
      assert.deepEqual(problems, [], problems.join('\n'));
    });
  });
