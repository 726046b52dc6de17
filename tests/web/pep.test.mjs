// Personal eventing (XEP-0163, PEP) on the accounts' bare JIDs with web
// client libraries: @xmpp/client over WebSocket and strophe.js over BOSH.
// In every flow the publisher is on one library and the receivers on the
// other. Each client announces XEP-0115 entity capabilities (a verification
// string computed here as in §5.1) and answers the server's disco#info
// query for node#ver, so that the server learns its "+notify" features
// (XEP-0163 §4.2, notification filtering).
//
// PEP node names are fixed by the XEPs (nick, avatar, bookmarks, OMEMO),
// so each test publishes on its own account (alice, lena, nina, ava, bea,
// pia, olga, dina), all of which share presence with bob; dave is a stranger
// to everyone. Section numbers: XEP-0163 1.2.2, XEP-0060 1.26, XEP-0115 1.6,
// XEP-0084 1.1, XEP-0172 1.1, XEP-0402 1.2, XEP-0223 1.1, XEP-0384 0.3.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { sleep, IS_TERN, USERS } from './harness.mjs';
import { xml } from './clients.mjs';
import {
  Party, partySuite, show, typeOf, assertError, pubsub, publishReq, NS_PS, NS_STANZAS, DISCO_INFO, DISCO_ITEMS, RUN,
} from './parties.mjs';

const DOMAIN = 'localhost';
const NS_PS_EVENT = `${NS_PS}#event`;
const NS_CAPS = 'http://jabber.org/protocol/caps';
const NS_MOOD = 'http://jabber.org/protocol/mood';
const NS_TUNE = 'http://jabber.org/protocol/tune';
const NS_NICK = 'http://jabber.org/protocol/nick';
const NS_AVATAR_DATA = 'urn:xmpp:avatar:data';
const NS_AVATAR_META = 'urn:xmpp:avatar:metadata';
const NS_BOOKMARKS = 'urn:xmpp:bookmarks:1';
const NS_LEGACY_BOOKMARKS = 'storage:bookmarks';
const NS_OMEMO_DEVICES = 'eu.siacs.conversations.axolotl.devicelist';
const NS_OMEMO = 'eu.siacs.conversations.axolotl';
const NS_OMEMO_BUNDLES = `${NS_OMEMO}.bundles`;
const CAPS_NODE = 'https://tern.example/web-pep';

let capsSeq = 0;

// one publishing account per test (PEP node names are fixed), all contacts of bob
const OWNERS = ['alice', 'lena', 'nina', 'ava', 'bea', 'pia', 'olga', 'dina'];
const PEP_USERS = { ...USERS };
for (const o of OWNERS) PEP_USERS[`${o}@${DOMAIN}`] ??= `${o}-secret`;
const SUBSCRIPTIONS = [...OWNERS.map((o) => [`${o}@${DOMAIN}`, `bob@${DOMAIN}`]), [`alice@${DOMAIN}`, `carol@${DOMAIN}`]];

// ------------------------------------------------------------ stanza helpers

const sha1 = (data) => crypto.createHash('sha1').update(data).digest();

/** The <items/> of a PEP event message from owner about node, or null. */
function eventItems(el, owner, node) {
  if (el.name !== 'message' || el.attrs.from !== owner) return null;
  const items = el.getChild('event', NS_PS_EVENT)?.getChild('items', NS_PS_EVENT);
  return items && items.attrs.node === node ? items : null;
}

/** A PEP notification from owner's bare JID about node; kind 'item' or 'retract', id if given. */
const isPep = (owner, node, kind, id) => (el) => {
  const items = eventItems(el, owner, node);
  if (!items) return false;
  if (!kind) return true;
  const c = items.getChildren(kind, NS_PS_EVENT);
  return c.length > 0 && (id === undefined || c.some((x) => x.attrs.id === id));
};

/**
 * Checks a PEP item notification (XEP-0163 §4.3.1: from the owner's bare
 * JID, to the recipient's full JID; type headline as in the examples) and
 * returns its one <item/>.
 */
function pepItem(msg, owner, node, to) {
  assert.equal(msg.attrs.from, owner, `from the owner's bare JID (XEP-0163 §4.3.1): ${show(msg)}`);
  assert.equal(msg.attrs.to, to, `to the recipient's full JID (XEP-0163 §4.3.1): ${show(msg)}`);
  assert.equal(msg.attrs.type, 'headline', `type headline: ${show(msg)}`);
  const items = eventItems(msg, owner, node);
  assert.ok(items, `<items node='${node}'/> in the event: ${show(msg)}`);
  const its = items.getChildren('item', NS_PS_EVENT);
  assert.equal(its.length, 1, `one <item/> in the notification: ${show(msg)}`);
  return its[0];
}

/** The <item/>s of an <items/> result (pubsub namespace), checking the node attribute. */
function resultItems(res, node) {
  const items = res.getChild('pubsub', NS_PS)?.getChild('items', NS_PS);
  assert.ok(items, `<items/> in the result: ${show(res)}`);
  assert.equal(items.attrs.node, node, show(res));
  return items.getChildren('item', NS_PS);
}

/** XEP-0115 §5.1 verification string of one identity and features (no forms). */
function capsVer(identity, features) {
  const { category, type, lang = '', name = '' } = identity;
  const s = `${category}/${type}/${lang}/${name}<${[...features].sort().map((f) => `${f}<`).join('')}`;
  return sha1(Buffer.from(s, 'utf8')).toString('base64');
}

// ------------------------------------------------------------ clients

/**
 * A Party that can announce entity capabilities and answers the server's
 * disco#info query about them (XEP-0115 §6.2).
 */
class PepParty extends Party {
  constructor(srv, kind, jid, opts) {
    super(srv, kind, jid, opts);
    this.caps = null;
    this.capsQueries = 0;
    if (kind === 'ws') {
      // @xmpp/client answers every iq get itself (service-unavailable
      // unless a handler returns a child): the disco#info answer goes there
      this.client.xmpp.iqCallee.get(DISCO_INFO, 'query', (ctx) => this.capsAnswer(ctx.element) ?? undefined);
    }
  }

  /**
   * Over BOSH every stanza comes here (strophe's fallback, service-unavailable
   * for unhandled iq get/set, never fires): the disco#info query is answered here.
   */
  received(st) {
    if (st.name === 'iq' && st.attrs.type === 'get') {
      const q = st.getChild('query', DISCO_INFO);
      const answer = q && this.capsAnswer(q);
      const reply = answer
        ? xml('iq', { type: 'result', id: st.attrs.id, to: st.attrs.from }, answer)
        : xml('iq', { type: 'error', id: st.attrs.id, to: st.attrs.from },
          xml('error', { type: 'cancel' }, xml('service-unavailable', { xmlns: NS_STANZAS })));
      this.send(reply);
    }
  }

  /** The disco#info answer for our caps node#ver (XEP-0115 §6.2), or null. */
  capsAnswer(q) {
    if (!this.caps || q.attrs.node !== `${CAPS_NODE}#${this.caps.ver}`) return null;
    this.capsQueries++;
    if (this.capsWaiter) this.capsWaiter();
    const { identity, features } = this.caps;
    return xml('query', { xmlns: DISCO_INFO, node: q.attrs.node },
      xml('identity', { category: identity.category, type: identity.type, name: identity.name }),
      ...features.map((f) => xml('feature', { var: f })));
  }

  /**
   * Sends available presence with caps whose features are disco#info, caps
   * and <ns>+notify for each ns of notify (XEP-0163 §4.2); waits for the
   * own presence and for the server's disco#info query (the identity name
   * makes every ver new, so the server always asks) and a round trip after
   * answering it, so that the server knows the features when this returns.
   */
  async online(notify = [], { extra = [], lie = false, priority } = {}) {
    const identity = { category: 'client', type: 'web', name: `tern-web-pep ${RUN}-${++capsSeq}` };
    const features = [DISCO_INFO, NS_CAPS, ...extra, ...notify.map((n) => `${n}+notify`)];
    // lie: announce the ver of the features without the +notify ones, and
    // answer the query with all of them (they do not hash to ver)
    const verOf = lie ? [DISCO_INFO, NS_CAPS, ...extra] : features;
    this.caps = { identity, features, ver: capsVer(identity, verOf) };
    const asked = new Promise((resolve) => { this.capsWaiter = resolve; });
    await this.send(xml('presence', {}, priority === undefined ? null : xml('priority', {}, String(priority)),
      xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: CAPS_NODE, ver: this.caps.ver })));
    await this.next((el) => el.name === 'presence' && el.attrs.from === this.jid && typeOf(el) === null, 'own presence');
    let timer;
    await Promise.race([asked, new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${this.kind}:${this.jid}: no disco#info query for the caps ` +
        `${CAPS_NODE}#${this.caps.ver} (XEP-0115 §6.2) within ${this.wait} ms`)), this.wait);
    })]).finally(() => clearTimeout(timer));
    // the answer went out before this round trip; the server's worker that
    // asked may handle it a moment later
    await this.iqOk('get', DOMAIN, xml('query', { xmlns: DISCO_INFO }));
    await sleep(250);
    return this;
  }

  /** Waits for the available presence of another party (so the server has routed it). */
  sees(other) {
    return this.next((el) => el.name === 'presence' && el.attrs.from === other.jid && typeOf(el) === null,
      `available presence of ${other.jid}`);
  }

  /** Publishes to the own PEP service (no 'to', as in XEP-0163 §3). */
  publish(node, id, payload, options) { return this.iq('set', null, publishReq(node, id, payload, options, { hidden: true })); }

  async publishOk(node, id, payload, options) {
    const res = await this.publish(node, id, payload, options);
    assert.equal(res.attrs.type, 'result', `publish to ${node}: ${show(res)}`);
    const pub = res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS);
    assert.equal(pub?.attrs.node, node, `<publish node='${node}'/> in the result: ${show(res)}`);
    return pub.getChild('item', NS_PS)?.attrs.id;
  }

  /** Items of node at owner's PEP service (XEP-0060 §6.5), optionally by item id. */
  items(owner, node, ...ids) {
    return this.iq('get', owner, pubsub(xml('items', { node }, ...ids.map((id) => xml('item', { id })))));
  }
}

// ------------------------------------------------------------ tests

describe('XEP-0163 personal eventing with @xmpp/client (WebSocket) and strophe.js (BOSH)',
  { skip: !IS_TERN && 'the Prosody configuration has no PEP module' }, () => {
    const { party, parties, forget, test } = partySuite({
      server: { name: 'pep', users: PEP_USERS, subscriptions: SUBSCRIPTIONS },
      domain: DOMAIN,
      PartyClass: PepParty,
      partyOptions: { iqPrefix: 'pep-iq', noneMs: 1000 },
    });

    test('XEP-0163 §3 auto-create on publish; §4: the owner\'s resources and a contact with +notify get the event ' +
      'from the bare JID (§4.3.1), a contact without +notify (§4.2 filtering) and a stranger do not', async () => {
      const [alice, alice2, bob, carol, dave] = await parties(['ws', 'alice', 'pub'], ['bosh', 'alice', 'other'],
        ['bosh', 'bob', 'mood'], ['ws', 'carol', 'mood'], ['ws', 'dave', 'mood']);
      // the node does not exist before the first publish
      assertError(await alice.items('alice@localhost', NS_MOOD), 'cancel/item-not-found', null, 'items of the not yet created node');

      await alice.online([NS_MOOD]);
      await alice2.online([NS_MOOD]);
      await alice.sees(alice2);
      await bob.online([NS_MOOD]);
      await alice.sees(bob);
      await carol.online([NS_TUNE], { extra: [NS_MOOD] }); // supports mood, but asks for no mood events
      await alice.sees(carol);
      await dave.online([NS_MOOD]); // no presence subscription with alice

      const mood = xml('mood', { xmlns: NS_MOOD }, xml('happy'), xml('text', {}, `web pep ${RUN}`));
      assert.equal(await alice.publishOk(NS_MOOD, 'm1', mood), 'm1');

      for (const p of [alice2, bob, alice]) {
        const msg = await p.next(isPep('alice@localhost', NS_MOOD, 'item', 'm1'), `mood event at ${p.jid}`);
        const it0 = pepItem(msg, 'alice@localhost', NS_MOOD, p.jid);
        assert.equal(it0.attrs.id, 'm1', show(msg));
        const m = it0.getChild('mood', NS_MOOD);
        assert.ok(m?.getChild('happy'), `the payload is delivered: ${show(msg)}`);
        assert.equal(m.getChildText('text'), `web pep ${RUN}`, show(msg));
      }
      await carol.none(isPep('alice@localhost', NS_MOOD), 'mood event at a contact without mood+notify (§4.2)');
      await dave.none(isPep('alice@localhost', NS_MOOD), 'mood event at a stranger');

      // the auto-created node (§3) holds the item; the owner is its owner
      const items = resultItems(await alice.iqOk('get', 'alice@localhost', pubsub(xml('items', { node: NS_MOOD }))), NS_MOOD);
      assert.deepEqual(items.map((i) => i.attrs.id), ['m1']);
    });

    // XEP-0060 §5.3: "A pubsub service MUST allow entities to query
    // individual nodes for the information associated with that node. ...
    // The "disco#info" result MUST include an identity with a category of
    // "pubsub" and an appropriate type ... (e.g. "leaf")."; XEP-0163 §5: a
    // PEP service MUST support the node discovery use cases of XEP-0060.
    test('disco#info of a PEP node (XEP-0060 §5.3): identity pubsub/leaf for the owner and a contact', async () => {
      const [nina, bob] = await parties(['bosh', 'nina', 'info'], ['ws', 'bob', 'info']);
      const node = `urn:tern:test:pep:info:${RUN}`;
      await nina.publishOk(node, 'i1', xml('x', { xmlns: 'urn:tern:test:pep' }, 'x'));
      const problems = [];
      for (const [p, to] of [[nina, null], [nina, 'nina@localhost'], [bob, 'nina@localhost']]) {
        const info = await p.iq('get', to, xml('query', { xmlns: DISCO_INFO, node }));
        const q = info.attrs.type === 'result' ? info.getChild('query', DISCO_INFO) : null;
        if (!q || !q.getChildren('identity', DISCO_INFO).some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'leaf')) {
          problems.push(`disco#info node='${node}' from ${p.jid} to ${to ?? '(own account)'}: ${show(info)}`);
        } else {
          assert.equal(q.attrs.node, node, show(info));
        }
      }
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    test('XEP-0163 §4 with presence: a contact online before the owner is a recipient through the presence ' +
      'probe; after its unavailable presence it gets nothing', async () => {
      const [bob, ava] = await parties(['ws', 'bob', 'early'], ['bosh', 'ava', 'late']);
      const node = `urn:tern:test:pep:probe:${RUN}`;
      await bob.online([node]);
      await ava.online([]);
      await ava.sees(bob); // the answer to the owner's presence probe (RFC 6121 §4.3)
      await sleep(300);
      await ava.publishOk(node, 'e1', xml('x', { xmlns: 'urn:tern:test:pep' }, 'one'));
      const msg = await bob.next(isPep('ava@localhost', node, 'item', 'e1'), 'event at a contact that came online first');
      pepItem(msg, 'ava@localhost', node, bob.jid);

      await bob.send(xml('presence', { type: 'unavailable' }));
      await ava.next((el) => el.name === 'presence' && el.attrs.from === bob.jid && typeOf(el) === 'unavailable', 'bob unavailable');
      await ava.publishOk(node, 'e2', xml('x', { xmlns: 'urn:tern:test:pep' }, 'two'));
      await bob.none(isPep('ava@localhost', node), 'an event at an unavailable resource');
    });

    test('XEP-0163 §4.3.3 / §4.3.4 (XEP-0060 §6.1.7): a contact resource coming online with +notify gets the ' +
      'last published item; one without +notify does not', async () => {
      const [lena, bob] = await parties(['bosh', 'lena', 'pub'], ['ws', 'bob', 'tune1']);
      await lena.online([]);
      await bob.online([NS_TUNE]);
      await lena.sees(bob);
      const tune = (title) => xml('tune', { xmlns: NS_TUNE }, xml('artist', {}, 'Gerald Finzi'), xml('title', {}, title));
      await lena.publishOk(NS_TUNE, 't1', tune('first'));
      await bob.next(isPep('lena@localhost', NS_TUNE, 'item', 't1'), 'tune event t1');
      await lena.publishOk(NS_TUNE, 't2', tune('second'));
      await bob.next(isPep('lena@localhost', NS_TUNE, 'item', 't2'), 'tune event t2');
      await bob.close();

      // a second login: the newest item comes on the initial presence
      const bob2 = await party('ws', 'bob', 'tune2');
      await bob2.online([NS_TUNE]);
      const msg = await bob2.next(isPep('lena@localhost', NS_TUNE, 'item'), 'the last published item on presence');
      const it0 = pepItem(msg, 'lena@localhost', NS_TUNE, bob2.jid);
      assert.equal(it0.attrs.id, 't2', `the newest item only: ${show(msg)}`);
      assert.equal(it0.getChild('tune', NS_TUNE)?.getChildText('title'), 'second', show(msg));
      await bob2.none(isPep('lena@localhost', NS_TUNE), 'a second last-item notification');

      // the owner's own new resource too ("including the account owner itself", §4.3.4)
      const lena2 = await party('ws', 'lena', 'other');
      await lena2.online([NS_TUNE]);
      const own = await lena2.next(isPep('lena@localhost', NS_TUNE, 'item'), 'the last published item at the owner\'s new resource');
      assert.equal(pepItem(own, 'lena@localhost', NS_TUNE, lena2.jid).attrs.id, 't2', show(own));

      // and a resource that does not ask for tunes gets nothing
      const bob3 = await party('bosh', 'bob', 'tune3');
      await bob3.online([NS_MOOD]);
      await lena.sees(bob3);
      await bob3.none(isPep('lena@localhost', NS_TUNE), 'last tune item at a resource without tune+notify');
    });

    test('XEP-0115 §5.4: +notify behind a ver the features do not hash to is not trusted; a correct ver gets ' +
      'the last item on presence and the next event', async () => {
      const [alice, bob, carol] = await parties(['bosh', 'alice', 'caps'], ['ws', 'bob', 'liar'], ['ws', 'carol', 'honest']);
      await alice.online([]);
      const mood = (t) => xml('mood', { xmlns: NS_MOOD }, xml('curious'), xml('text', {}, t));
      await alice.publishOk(NS_MOOD, 'c1', mood('before'));
      await bob.online([NS_MOOD], { lie: true });
      await alice.sees(bob);
      await carol.online([NS_MOOD]);
      await alice.sees(carol);
      const last = await carol.next(isPep('alice@localhost', NS_MOOD, 'item', 'c1'), 'last mood item on presence');
      pepItem(last, 'alice@localhost', NS_MOOD, carol.jid);
      await alice.publishOk(NS_MOOD, 'c2', mood('after'));
      const ev = await carol.next(isPep('alice@localhost', NS_MOOD, 'item', 'c2'), 'mood event c2');
      assert.equal(pepItem(ev, 'alice@localhost', NS_MOOD, carol.jid).getChild('mood', NS_MOOD).getChildText('text'), 'after');
      await bob.none(isPep('alice@localhost', NS_MOOD), 'mood event at a client whose caps do not verify');
    });

    test('access model presence (XEP-0060 §4.5, XEP-0163 §5 default): a non-contact gets auth/not-authorized + ' +
      'presence-subscription-required for items (§6.5.9) and subscribe (§6.1.3); a contact gets the item, also with the owner offline', async () => {
      const [alice, bob, dave] = await parties(['bosh', 'alice', 'nick'], ['ws', 'bob', 'nickaccess'], ['ws', 'dave', 'nickaccess']);
      await bob.online([]);
      await alice.online([]);
      await bob.sees(alice);
      await alice.publishOk(NS_NICK, 'current', xml('nick', { xmlns: NS_NICK }, 'Alice in Webland'));

      const res = await dave.items('alice@localhost', NS_NICK);
      assertError(res, 'auth/not-authorized', 'presence-subscription-required', 'items of alice\'s nick by a stranger');
      const sub = await dave.iq('set', 'alice@localhost', pubsub(xml('subscribe', { node: NS_NICK, jid: dave.jid })));
      assertError(sub, 'auth/not-authorized', 'presence-subscription-required', 'subscribe to alice\'s nick by a stranger');

      const ok = await bob.items('alice@localhost', NS_NICK);
      assert.equal(ok.attrs.type, 'result', show(ok));
      assert.equal(ok.attrs.from, 'alice@localhost', show(ok));
      const items = resultItems(ok, NS_NICK);
      assert.deepEqual(items.map((i) => i.attrs.id), ['current'], show(ok));
      assert.equal(items[0].getChildText('nick', NS_NICK), 'Alice in Webland', show(ok));

      // the owner goes offline: the node and the roster come from storage
      await alice.close();
      forget(alice);
      await bob.next((el) => el.name === 'presence' && el.attrs.from === alice.jid && typeOf(el) === 'unavailable',
        'alice unavailable');
      const offline = await bob.items('alice@localhost', NS_NICK);
      assert.deepEqual(resultItems(offline, NS_NICK).map((i) => i.getChildText('nick', NS_NICK)), ['Alice in Webland'], show(offline));
      assertError(await dave.items('alice@localhost', NS_NICK), 'auth/not-authorized', 'presence-subscription-required',
        'items by a stranger with the owner offline');
    });

    test('XEP-0172 user nickname over PEP: the contact gets each new nick; one item kept (XEP-0163 §5 defaults)', async () => {
      const [nina, bob] = await parties(['ws', 'nina', 'pub'], ['bosh', 'bob', 'nick']);
      await nina.online([]);
      await bob.online([NS_NICK]);
      await nina.sees(bob);
      for (const n of ['Nina', 'Nina B.']) {
        // XEP-0172 publishes with no item id: the service assigns one
        const id = await nina.publishOk(NS_NICK, null, xml('nick', { xmlns: NS_NICK }, n));
        assert.ok(id, 'the service returns the item id it assigned (XEP-0060 §7.1.2)');
        const msg = await bob.next(isPep('nina@localhost', NS_NICK, 'item', id), `nick event ${n}`);
        const it0 = pepItem(msg, 'nina@localhost', NS_NICK, bob.jid);
        assert.equal(it0.getChildText('nick', NS_NICK), n, show(msg));
      }
      const res = await bob.items('nina@localhost', NS_NICK);
      const items = resultItems(res, NS_NICK);
      assert.deepEqual(items.map((i) => i.getChildText('nick', NS_NICK)), ['Nina B.'], `max_items 1: ${show(res)}`);
    });

    test('XEP-0084 avatar: data (§4.1) then metadata (§4.2); the contact with metadata+notify gets the metadata ' +
      '(§4.3) and fetches the data by id (§4.4)', async () => {
      const [ava, bob] = await parties(['ws', 'ava', 'pub'], ['bosh', 'bob', 'avatar']);
      await ava.online([]);
      await bob.online([NS_AVATAR_META]);
      await ava.sees(bob);

      const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
      const id = sha1(png).toString('hex');
      assert.equal(await ava.publishOk(NS_AVATAR_DATA, id, xml('data', { xmlns: NS_AVATAR_DATA }, png.toString('base64'))), id);
      await bob.none(isPep('ava@localhost', NS_AVATAR_DATA), 'avatar data event (bob has no data+notify)', 700);

      const info = { bytes: String(png.length), id, type: 'image/png', height: '1', width: '1' };
      await ava.publishOk(NS_AVATAR_META, id, xml('metadata', { xmlns: NS_AVATAR_META }, xml('info', info)));
      const msg = await bob.next(isPep('ava@localhost', NS_AVATAR_META, 'item', id), 'avatar metadata event');
      const it0 = pepItem(msg, 'ava@localhost', NS_AVATAR_META, bob.jid);
      const got = it0.getChild('metadata', NS_AVATAR_META)?.getChild('info', NS_AVATAR_META);
      assert.ok(got, `<info/> in the metadata: ${show(msg)}`);
      assert.deepEqual({ bytes: got.attrs.bytes, id: got.attrs.id, type: got.attrs.type, height: got.attrs.height, width: got.attrs.width },
        info, show(msg));

      const res = await bob.items('ava@localhost', NS_AVATAR_DATA, got.attrs.id);
      assert.equal(res.attrs.type, 'result', show(res));
      const items = resultItems(res, NS_AVATAR_DATA);
      assert.equal(items.length, 1, show(res));
      assert.equal(items[0].attrs.id, id, show(res));
      const bytes = Buffer.from(items[0].getChildText('data', NS_AVATAR_DATA).replace(/\s+/g, ''), 'base64');
      assert.equal(sha1(bytes).toString('hex'), id, 'the data hash is the item id (XEP-0084 §4.1)');
      assert.ok(bytes.equals(png), 'the bytes as published');
    });

    test('XEP-0402 bookmarks: whitelist node with publish-options; the owner\'s other resource gets the bookmark, ' +
      'a contact gets no event and cancel/not-allowed + closed-node (XEP-0060 §6.5.9); retract notify=true', async () => {
      const [bea, bea2, bob] = await parties(['ws', 'bea', 'pub'], ['bosh', 'bea', 'other'], ['bosh', 'bob', 'books']);
      await bea.online([]);
      await bea2.online([NS_BOOKMARKS]);
      await bea.sees(bea2);
      await bob.online([NS_BOOKMARKS]);
      await bea.sees(bob);

      const options = {
        'pubsub#persist_items': 'true',
        'pubsub#max_items': 'max',
        'pubsub#send_last_published_item': 'never',
        'pubsub#access_model': 'whitelist',
      };
      const conference = (name, nick) => xml('conference', { xmlns: NS_BOOKMARKS, autojoin: 'true', name }, xml('nick', {}, nick));
      const room1 = `web-${RUN}@conference.localhost`;
      const room2 = `web2-${RUN}@conference.localhost`;
      assert.equal(await bea.publishOk(NS_BOOKMARKS, room1, conference('The Web Room', 'bea'), options), room1);
      const msg = await bea2.next(isPep('bea@localhost', NS_BOOKMARKS, 'item', room1), 'bookmark event at the other resource');
      const it0 = pepItem(msg, 'bea@localhost', NS_BOOKMARKS, bea2.jid);
      const conf = it0.getChild('conference', NS_BOOKMARKS);
      assert.equal(conf?.attrs.autojoin, 'true', show(msg));
      assert.equal(conf.attrs.name, 'The Web Room', show(msg));
      assert.equal(conf.getChildText('nick'), 'bea', show(msg));
      await bob.none(isPep('bea@localhost', NS_BOOKMARKS), 'bookmark event at a contact (whitelist node)');

      // a second bookmark: the node exists, the same options are met preconditions
      await bea.publishOk(NS_BOOKMARKS, room2, conference('Second', 'b'), options);
      await bea2.next(isPep('bea@localhost', NS_BOOKMARKS, 'item', room2), 'second bookmark event');
      const all = resultItems(await bea2.iqOk('get', null, pubsub(xml('items', { node: NS_BOOKMARKS }))), NS_BOOKMARKS);
      assert.deepEqual(all.map((i) => i.attrs.id).sort(), [room1, room2].sort(), 'max_items=max keeps both');

      assertError(await bob.items('bea@localhost', NS_BOOKMARKS), 'cancel/not-allowed', 'closed-node',
        'items of a whitelist node by a contact');

      // send_last_published_item=never: a new resource gets no bookmark on presence
      const bea3 = await party('ws', 'bea', 'third');
      await bea3.online([NS_BOOKMARKS]);
      await bea3.none(isPep('bea@localhost', NS_BOOKMARKS), 'last bookmark on presence with send_last_published_item=never');

      // XEP-0402 removing a bookmark: retract with notify='true' (XEP-0060 §7.2.2.1)
      await bea.iqOk('set', null, pubsub(xml('retract', { node: NS_BOOKMARKS, notify: 'true' }, xml('item', { id: room1 }))));
      for (const p of [bea2, bea3]) {
        const r = await p.next(isPep('bea@localhost', NS_BOOKMARKS, 'retract', room1), `retract event at ${p.jid}`);
        assert.equal(r.attrs.from, 'bea@localhost', show(r));
        assert.equal(r.attrs.to, p.jid, show(r));
      }
      await bob.none(isPep('bea@localhost', NS_BOOKMARKS), 'retract event at a contact');
      const left = resultItems(await bea.iqOk('get', null, pubsub(xml('items', { node: NS_BOOKMARKS }))), NS_BOOKMARKS);
      assert.deepEqual(left.map((i) => i.attrs.id), [room2]);
    });

    test('XEP-0223 private PEP data: publish-options whitelist on storage:bookmarks; a contact may not read it; ' +
      'a precondition not met on the existing node -> cancel/conflict + precondition-not-met (XEP-0060 §7.1.5)', async () => {
      const [pia, pia2, bob] = await parties(['bosh', 'pia', 'pub'], ['ws', 'pia', 'other'], ['ws', 'bob', 'private']);
      await pia.online([]);
      await bob.online([NS_LEGACY_BOOKMARKS]);
      await pia.sees(bob);
      const options = { 'pubsub#persist_items': 'true', 'pubsub#access_model': 'whitelist' };
      const storage = (nick) => xml('storage', { xmlns: NS_LEGACY_BOOKMARKS },
        xml('conference', { jid: `priv-${RUN}@conference.localhost`, autojoin: 'true', name: 'Private' }, xml('nick', {}, nick)));
      await pia.publishOk(NS_LEGACY_BOOKMARKS, 'current', storage('pia'), options);
      await bob.none(isPep('pia@localhost', NS_LEGACY_BOOKMARKS), 'private data event at a contact');
      assertError(await bob.items('pia@localhost', NS_LEGACY_BOOKMARKS), 'cancel/not-allowed', 'closed-node',
        'items of private data by a contact');

      // the owner's other resource reads it (no 'to': the own account)
      const mine = resultItems(await pia2.iqOk('get', null, pubsub(xml('items', { node: NS_LEGACY_BOOKMARKS }))), NS_LEGACY_BOOKMARKS);
      assert.equal(mine.length, 1);
      assert.equal(mine[0].getChild('storage', NS_LEGACY_BOOKMARKS)?.getChild('conference')?.getChildText('nick'), 'pia');

      // same options again: met
      await pia.publishOk(NS_LEGACY_BOOKMARKS, 'current', storage('pia2'), options);
      // a different access model: not met, nothing stored
      const res = await pia.publish(NS_LEGACY_BOOKMARKS, 'current', storage('leaked'),
        { 'pubsub#persist_items': 'true', 'pubsub#access_model': 'presence' });
      assertError(res, 'cancel/conflict', 'precondition-not-met', 'publish with a precondition not met');
      await bob.none(isPep('pia@localhost', NS_LEGACY_BOOKMARKS), 'an event for the rejected item');
      const after2 = resultItems(await pia2.iqOk('get', null, pubsub(xml('items', { node: NS_LEGACY_BOOKMARKS }))), NS_LEGACY_BOOKMARKS);
      assert.deepEqual(after2.map((i) => i.getChild('storage', NS_LEGACY_BOOKMARKS)?.getChild('conference')?.getChildText('nick')),
        ['pia2'], 'the rejected item is not stored');
      assertError(await bob.items('pia@localhost', NS_LEGACY_BOOKMARKS), 'cancel/not-allowed', 'closed-node',
        'the node is still whitelist');
    });

    test('XEP-0384 OMEMO: device list and bundle with publish-options access_model=open; a non-contact fetches both, ' +
      'a contact with devicelist+notify gets the device list event', async () => {
      const [olga, bob, dave] = await parties(['ws', 'olga', 'pub'], ['bosh', 'bob', 'omemo'], ['bosh', 'dave', 'omemo']);
      await olga.online([NS_OMEMO_DEVICES]);
      await bob.online([NS_OMEMO_DEVICES]);
      await olga.sees(bob);
      const open = { 'pubsub#access_model': 'open' };
      const deviceId = String(100000 + Math.floor(Math.random() * 1e6));
      const list = xml('list', { xmlns: NS_OMEMO_DEVICES }, xml('device', { id: deviceId }));
      await olga.publishOk(NS_OMEMO_DEVICES, 'current', list, open);
      const msg = await bob.next(isPep('olga@localhost', NS_OMEMO_DEVICES, 'item', 'current'), 'device list event');
      assert.equal(pepItem(msg, 'olga@localhost', NS_OMEMO_DEVICES, bob.jid).getChild('list', NS_OMEMO_DEVICES)
        ?.getChild('device').attrs.id, deviceId, show(msg));
      await olga.next(isPep('olga@localhost', NS_OMEMO_DEVICES, 'item', 'current'), 'device list event at the owner');

      const bundleNode = `${NS_OMEMO_BUNDLES}:${deviceId}`;
      const key = (n) => crypto.createHash('sha256').update(`${RUN}-${n}`).digest('base64');
      const bundle = xml('bundle', { xmlns: NS_OMEMO },
        xml('signedPreKeyPublic', { signedPreKeyId: '1' }, key('spk')),
        xml('signedPreKeySignature', {}, key('sig')),
        xml('identityKey', {}, key('ik')),
        xml('prekeys', {}, ...[1, 2, 3].map((i) => xml('preKeyPublic', { preKeyId: String(i) }, key(`pk${i}`)))));
      await olga.publishOk(bundleNode, 'current', bundle, open);

      // dave shares no presence with olga
      const dl = await dave.items('olga@localhost', NS_OMEMO_DEVICES);
      assert.equal(dl.attrs.type, 'result', `device list of an open node for a non-contact: ${show(dl)}`);
      assert.equal(resultItems(dl, NS_OMEMO_DEVICES)[0]?.getChild('list', NS_OMEMO_DEVICES)?.getChild('device')?.attrs.id, deviceId, show(dl));
      const bl = await dave.items('olga@localhost', bundleNode);
      assert.equal(bl.attrs.type, 'result', `bundle of an open node for a non-contact: ${show(bl)}`);
      const b = resultItems(bl, bundleNode)[0]?.getChild('bundle', NS_OMEMO);
      assert.equal(b?.getChildText('identityKey'), key('ik'), show(bl));
      assert.equal(b.getChild('prekeys').getChildren('preKeyPublic').length, 3, show(bl));
      // a non-contact subscribes explicitly to the open node (XEP-0163 §4 item 1,
      // XEP-0060 §6.1): the last item comes (§6.1.7), then new ones
      const sub = await dave.iqOk('set', 'olga@localhost', pubsub(xml('subscribe', { node: NS_OMEMO_DEVICES, jid: dave.jid })));
      const s0 = sub.getChild('pubsub', NS_PS)?.getChild('subscription', NS_PS);
      assert.equal(s0?.attrs.subscription, 'subscribed', show(sub));
      assert.equal(s0.attrs.jid, dave.jid, show(sub));
      const last = await dave.next(isPep('olga@localhost', NS_OMEMO_DEVICES, 'item', 'current'), 'last device list on subscription');
      assert.equal(pepItem(last, 'olga@localhost', NS_OMEMO_DEVICES, dave.jid).getChild('list', NS_OMEMO_DEVICES)
        ?.getChild('device').attrs.id, deviceId, show(last));

      // a later publish with the same options keeps the node open (precondition met)
      await olga.publishOk(NS_OMEMO_DEVICES, 'current',
        xml('list', { xmlns: NS_OMEMO_DEVICES }, xml('device', { id: deviceId }), xml('device', { id: '42' })), open);
      for (const p of [bob, dave]) {
        const m = await p.next(isPep('olga@localhost', NS_OMEMO_DEVICES, 'item', 'current'), `new device list at ${p.jid}`);
        assert.deepEqual(pepItem(m, 'olga@localhost', NS_OMEMO_DEVICES, p.jid).getChild('list', NS_OMEMO_DEVICES)
          .getChildren('device').map((d) => d.attrs.id), [deviceId, '42'], show(m));
      }
      await dave.none(isPep('olga@localhost', NS_OMEMO_DEVICES), 'a second notification for one publish');
      const dl2 = await dave.items('olga@localhost', NS_OMEMO_DEVICES);
      assert.deepEqual(resultItems(dl2, NS_OMEMO_DEVICES)[0].getChild('list', NS_OMEMO_DEVICES).getChildren('device').map((d) => d.attrs.id),
        [deviceId, '42'], show(dl2));
    });

    test('disco#items on the account\'s bare JID lists the PEP nodes the requester may see (XEP-0163 §6.2, ' +
      'XEP-0060 §5.2): the owner all, a contact open + presence, a stranger open only', async () => {
      const [dina, bob, dave] = await parties(['bosh', 'dina', 'pub'], ['ws', 'bob', 'disco'], ['ws', 'dave', 'disco']);
      const nodes = {
        presence: `urn:tern:test:pep:presence:${RUN}`,
        open: `urn:tern:test:pep:open:${RUN}`,
        whitelist: `urn:tern:test:pep:whitelist:${RUN}`,
      };
      const payload = xml('x', { xmlns: 'urn:tern:test:pep' }, 'x');
      await dina.publishOk(nodes.presence, 'i', payload);
      await dina.publishOk(nodes.open, 'i', payload, { 'pubsub#access_model': 'open' });
      await dina.publishOk(nodes.whitelist, 'i', payload, { 'pubsub#access_model': 'whitelist' });

      const listed = async (p, to) => {
        const res = await p.iqOk('get', to, xml('query', { xmlns: DISCO_ITEMS }));
        const q = res.getChild('query', DISCO_ITEMS);
        assert.ok(q, show(res));
        const its = q.getChildren('item', DISCO_ITEMS).filter((i) => i.attrs.node);
        for (const i of its) assert.equal(i.attrs.jid, 'dina@localhost', `items name the PEP service: ${show(res)}`);
        return its.map((i) => i.attrs.node).filter((n) => Object.values(nodes).includes(n)).sort();
      };
      assert.deepEqual(await listed(dina, 'dina@localhost'), Object.values(nodes).sort(), 'the owner sees every node');
      assert.deepEqual(await listed(dina, null), Object.values(nodes).sort(), 'the owner, without \'to\'');
      assert.deepEqual(await listed(bob, 'dina@localhost'), [nodes.open, nodes.presence].sort(), 'a contact: open and presence');
      assert.deepEqual(await listed(dave, 'dina@localhost'), [nodes.open], 'a stranger: open only');
    });

    // XEP-0163 §4.3.2 (Number of Notifications): notifications go to "each of
    // the subscriber's available resources that have specified non-negative
    // presence priority" and the caps interest ("appropriate presence
    // information"); §4.3.3 item 2: the last item to a newly available
    // resource "with a non-negative priority".
    test('XEP-0163 §4.3.2 / §4.3.3: a contact resource with a negative priority gets no notification and no last item', async () => {
      const [alice, bob, carol] = await parties(['ws', 'alice', 'prio'], ['bosh', 'bob', 'negative'], ['bosh', 'carol', 'positive']);
      const node = `urn:tern:test:pep:prio:${RUN}`;
      await alice.online([]);
      await alice.publishOk(node, 'p1', xml('x', { xmlns: 'urn:tern:test:pep' }, 'before'));
      await bob.online([node], { priority: -1 });
      await alice.sees(bob);
      await carol.online([node], { priority: 0 });
      await alice.sees(carol);
      await carol.next(isPep('alice@localhost', node, 'item', 'p1'), 'last item at priority 0');
      await alice.publishOk(node, 'p2', xml('x', { xmlns: 'urn:tern:test:pep' }, 'after'));
      await carol.next(isPep('alice@localhost', node, 'item', 'p2'), 'event at priority 0');
      await sleep(1000);
      const got = bob.stanzas.all.filter(isPep('alice@localhost', node));
      assert.deepEqual(got.map(show), [], 'no notification (last item or event) at a resource with priority -1');
    });

    // XEP-0163 §4.3.3 item 3: "a PEP service MUST NOT send notifications to a
    // subscriber if the user has blocked the subscriber" (XEP-0191 blocking).
    test('XEP-0163 §4.3.3: no notification to a contact the owner has blocked (XEP-0191)', async () => {
      const [dina, bob] = await parties(['ws', 'dina', 'block'], ['bosh', 'bob', 'blocked']);
      const node = `urn:tern:test:pep:block:${RUN}`;
      await dina.online([]);
      await bob.online([node]);
      await dina.sees(bob);
      await dina.publishOk(node, 'b1', xml('x', { xmlns: 'urn:tern:test:pep' }, 'visible'));
      await bob.next(isPep('dina@localhost', node, 'item', 'b1'), 'event before the block');
      await dina.iqOk('set', null, xml('block', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid: 'bob@localhost' })));
      try {
        await dina.publishOk(node, 'b2', xml('x', { xmlns: 'urn:tern:test:pep' }, 'hidden'));
        await bob.none(isPep('dina@localhost', node), 'a notification after the owner blocked the contact', 1500);
      } finally {
        await dina.iq('set', null, xml('unblock', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid: 'bob@localhost' })));
      }
    });
  });
