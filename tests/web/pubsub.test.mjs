// Publish-subscribe (XEP-0060) on pubsub.localhost with web client
// libraries: @xmpp/client over WebSocket and strophe.js over BOSH. Owners,
// publishers and subscribers are spread over both libraries (an event
// published on one is received on the other). Every test uses its own nodes
// and its own connections, and asserts on the stanzas as the clients
// received them (parsed into ltx elements for both libraries).
//
// Section numbers below are those of XEP-0060 1.26.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { IS_TERN } from './harness.mjs';
import { xml } from './clients.mjs';
import {
  Party, partySuite, show, typeOf, errorOf, assertError, formFields, value, dataForm as submitForm, pubsub, publishReq,
  NS_PS, NS_DATA, DISCO_INFO, DISCO_ITEMS, RUN,
} from './parties.mjs';

const SERVICE = 'pubsub.localhost';
const NS_PS_OWNER = `${NS_PS}#owner`;
const NS_PS_EVENT = `${NS_PS}#event`;
const NS_NODE_CONFIG = `${NS_PS}#node_config`;
const NS_PAYLOAD = 'urn:tern:test:pubsub';

let nodeSeq = 0;
/** A NodeID no other test (or earlier run) uses. */
const nodeName = (tag) => `${tag}-${RUN}-${++nodeSeq}`;

// ------------------------------------------------------------ stanza helpers

const owner = (...children) => xml('pubsub', { xmlns: NS_PS_OWNER }, ...children);
const entry = (text) => xml('entry', { xmlns: NS_PAYLOAD }, text);

/** A pubsub#event notification message from the service about node (any kind). */
const isEvent = (node, kind) => (el) => {
  if (el.name !== 'message' || el.attrs.from !== SERVICE) return false;
  const ev = el.getChild('event', NS_PS_EVENT);
  if (!ev) return false;
  return ev.children.some((c) => typeof c === 'object' && c.attrs.node === node && (!kind || c.name === kind));
};

/** The item ids of an <items/> result (pubsub namespace), checking the node attribute. */
function itemIds(res, node) {
  const items = res.getChild('pubsub', NS_PS)?.getChild('items', NS_PS);
  assert.ok(items, `<items/> in the result: ${show(res)}`);
  assert.equal(items.attrs.node, node, show(res));
  return items.getChildren('item', NS_PS).map((i) => i.attrs.id);
}

// ------------------------------------------------------------ clients

/** A Party with pubsub and pubsub#owner requests to the service. */
class PsParty extends Party {
  /** pubsub / pubsub#owner requests to the service. */
  ps(type, ...children) { return this.iq(type, SERVICE, pubsub(...children)); }

  psOk(type, ...children) { return this.iqOk(type, SERVICE, pubsub(...children)); }

  own(type, ...children) { return this.iq(type, SERVICE, owner(...children)); }

  ownOk(type, ...children) { return this.iqOk(type, SERVICE, owner(...children)); }
}

// ------------------------------------------------------------ pubsub helpers

/** Creates node (with a node_config form if config is given) (§8.1.1, §8.1.3). */
async function createNode(p, node, config) {
  const children = [xml('create', { node })];
  if (config) children.push(xml('configure', {}, submitForm(NS_NODE_CONFIG, config)));
  return p.psOk('set', ...children);
}

/** Subscribes p's full JID to node and checks the <subscription/> of the result (§6.1.2). */
async function subscribe(p, node) {
  const res = await p.psOk('set', xml('subscribe', { node, jid: p.jid }));
  const s = res.getChild('pubsub', NS_PS)?.getChild('subscription', NS_PS);
  assert.ok(s, `<subscription/> in the subscribe result: ${show(res)}`);
  assert.equal(s.attrs.node, node, show(res));
  assert.equal(s.attrs.jid, p.jid, show(res));
  assert.equal(s.attrs.subscription, 'subscribed', show(res));
  return res;
}

/** The node_config form of node as the owner gets it (§8.2.1). */
async function getConfig(p, node) {
  const res = await p.ownOk('get', xml('configure', { node }));
  const c = res.getChild('pubsub', NS_PS_OWNER)?.getChild('configure', NS_PS_OWNER);
  assert.ok(c, `<configure/> in the result: ${show(res)}`);
  assert.equal(c.attrs.node, node, show(res));
  const x = c.getChild('x', NS_DATA);
  assert.ok(x, `a data form in <configure/>: ${show(res)}`);
  assert.equal(x.attrs.type, 'form', show(res));
  const f = formFields(x);
  assert.equal(value(f, 'FORM_TYPE'), NS_NODE_CONFIG, show(res));
  assert.equal(f.FORM_TYPE.type, 'hidden', show(res));
  return f;
}

/** Checks a pubsub#event item notification and returns its <item/>. */
function eventItem(msg, node, to) {
  assert.equal(msg.attrs.from, SERVICE, show(msg));
  assert.equal(msg.attrs.to, to, `the notification is addressed to the subscribed JID: ${show(msg)}`);
  assert.ok([undefined, 'headline', 'normal'].includes(msg.attrs.type), `message type: ${show(msg)}`);
  const items = msg.getChild('event', NS_PS_EVENT).getChild('items', NS_PS_EVENT);
  assert.ok(items, `<items/> in the event: ${show(msg)}`);
  assert.equal(items.attrs.node, node, show(msg));
  const its = items.getChildren('item', NS_PS_EVENT);
  assert.equal(its.length, 1, `one <item/> in the notification: ${show(msg)}`);
  return its[0];
}

// ------------------------------------------------------------ tests

describe('XEP-0060 publish-subscribe on pubsub.localhost with @xmpp/client (WebSocket) and strophe.js (BOSH)',
  { skip: !IS_TERN && 'the Prosody configuration has no pubsub component' }, () => {
    const { party, parties, test } = partySuite({
      server: { name: 'pubsub' }, PartyClass: PsParty, partyOptions: { iqPrefix: 'ps-iq' },
    });

    /** A subscriber that is available (initial presence sent and echoed). */
    async function available(p) {
      await p.send(xml('presence'));
      await p.next((el) => el.name === 'presence' && el.attrs.from === p.jid && typeOf(el) === null, 'own presence');
      return p;
    }

    test('disco#info of the service: identity pubsub/service and the pubsub features (§5.1); nodes in disco#items (§5.2)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'disco'], ['ws', 'bob', 'disco']);
      const res = await bob.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_INFO }));
      assert.equal(res.attrs.from, SERVICE, show(res));
      const q = res.getChild('query', DISCO_INFO);
      assert.ok(q, show(res));
      const ids = q.getChildren('identity', DISCO_INFO);
      assert.ok(ids.some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'service'),
        `identity category='pubsub' type='service': ${show(res)}`);
      const feats = new Set(q.getChildren('feature', DISCO_INFO).map((f) => f.attrs.var));
      assert.ok(feats.has(NS_PS), `feature ${NS_PS}: ${show(res)}`);
      for (const f of ['create-nodes', 'instant-nodes', 'create-and-configure', 'config-node', 'publish', 'item-ids',
        'publish-options', 'retrieve-items', 'retract-items', 'subscribe', 'retrieve-subscriptions',
        'retrieve-affiliations', 'manage-subscriptions', 'modify-affiliations', 'publisher-affiliation',
        'purge-nodes', 'delete-nodes', 'persistent-items', 'access-open', 'access-whitelist']) {
        assert.ok(feats.has(`${NS_PS}#${f}`), `feature ${NS_PS}#${f}: ${show(res)}`);
      }

      const node = nodeName('disco');
      await createNode(alice, node, { 'pubsub#title': 'Disco node' });
      const items = await bob.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_ITEMS }));
      const found = items.getChild('query', DISCO_ITEMS).getChildren('item', DISCO_ITEMS).find((i) => i.attrs.node === node);
      assert.ok(found, `the new node in disco#items of the service: ${show(items)}`);
      assert.equal(found.attrs.jid, SERVICE, show(found));
      // §5.3: a node's identity is pubsub/leaf
      const ni = await bob.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_INFO, node }));
      const nq = ni.getChild('query', DISCO_INFO);
      assert.equal(nq.attrs.node, node, show(ni));
      assert.ok(nq.getChildren('identity', DISCO_INFO).some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'leaf'),
        `identity pubsub/leaf for the node: ${show(ni)}`);
    });

    test('creates an instant node (§8.1.2), a named node (§8.1.1, conflict when it exists) and a configured one (§8.1.3)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'create'], ['bosh', 'bob', 'create']);

      // §8.1.2: no NodeID -> the service generates one and returns it
      const res = await alice.psOk('set', xml('create'));
      const cr = res.getChild('pubsub', NS_PS)?.getChild('create', NS_PS);
      assert.ok(cr, `<pubsub><create node=.../></pubsub> in the instant-node result: ${show(res)}`);
      const instant = cr.attrs.node;
      assert.ok(instant && instant.length > 0, `a generated NodeID: ${show(res)}`);
      const info = await bob.iq('get', SERVICE, xml('query', { xmlns: DISCO_INFO, node: instant }));
      assert.equal(info.attrs.type, 'result', `the instant node exists: ${show(info)}`);
      const second = await alice.psOk('set', xml('create'));
      assert.notEqual(second.getChild('pubsub', NS_PS).getChild('create', NS_PS).attrs.node, instant, 'instant NodeIDs are unique');

      // §8.1.1 named node; §8.1.1 error: NodeID already exists -> <conflict/>
      const node = nodeName('named');
      await createNode(bob, node);
      assertError(await alice.ps('set', xml('create', { node })), 'cancel/conflict', null, 'create of an existing node');
      assertError(await bob.ps('set', xml('create', { node })), 'cancel/conflict', null, 'create of an existing node by its owner');

      // §8.1.3 create-and-configure: the configuration is applied
      const conf = nodeName('configured');
      await createNode(alice, conf, { 'pubsub#title': 'Configured at birth', 'pubsub#max_items': '3', 'pubsub#access_model': 'whitelist' });
      const f = await getConfig(alice, conf);
      assert.equal(value(f, 'pubsub#title'), 'Configured at birth');
      assert.equal(value(f, 'pubsub#max_items'), '3');
      assert.equal(value(f, 'pubsub#access_model'), 'whitelist');
      // the creator is the owner (§8.1.1 "the requesting entity ... owner")
      const affs = await alice.psOk('get', xml('affiliations', { node: conf }));
      const mine = affs.getChild('pubsub', NS_PS).getChild('affiliations', NS_PS).getChildren('affiliation', NS_PS);
      assert.deepEqual(mine.map((a) => [a.attrs.node, a.attrs.affiliation]), [[conf, 'owner']], show(affs));
    });

    test('configure get/set: pubsub#max_items and pubsub#access_model (§8.2.1, §8.2.4, §8.2.5), owner only (§8.2.3.2)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'conf'], ['ws', 'bob', 'conf']);
      const node = nodeName('conf');
      await createNode(alice, node);

      const f = await getConfig(alice, node);
      assert.equal(f['pubsub#max_items']?.type, 'text-single', 'pubsub#max_items is a text-single field');
      assert.equal(f['pubsub#access_model']?.type, 'list-single', 'pubsub#access_model is a list-single field');
      const options = f['pubsub#access_model'].el.getChildren('option').map((o) => o.getChildText('value'));
      assert.ok(options.includes('open') && options.includes('whitelist'), `access_model options: ${options}`);
      assert.equal(value(f, 'pubsub#access_model'), 'open', 'the default access model');

      assertError(await bob.own('get', xml('configure', { node })), 'auth/forbidden', null, 'configure get by a non-owner');
      assertError(await bob.own('set', xml('configure', { node }, submitForm(NS_NODE_CONFIG, { 'pubsub#max_items': '1' }))),
        'auth/forbidden', null, 'configure set by a non-owner');

      await alice.ownOk('set', xml('configure', { node }, submitForm(NS_NODE_CONFIG, { 'pubsub#max_items': '2' })));
      const g = await getConfig(alice, node);
      assert.equal(value(g, 'pubsub#max_items'), '2', 'max_items after the change');
      assert.equal(value(g, 'pubsub#access_model'), 'open', 'a field not submitted keeps its value');

      // max_items is enforced: only the two newest items stay
      for (const id of ['a', 'b', 'c']) await alice.iqOk('set', SERVICE, publishReq(node, id, entry(id)));
      const ids = itemIds(await bob.psOk('get', xml('items', { node })), node);
      assert.deepEqual([...ids].sort(), ['b', 'c'], `max_items 2 keeps the two newest items: ${ids}`);

      // access_model whitelist: bob (no affiliation) is shut out
      await alice.ownOk('set', xml('configure', { node }, submitForm(NS_NODE_CONFIG, { 'pubsub#access_model': 'whitelist' })));
      assert.equal(value(await getConfig(alice, node), 'pubsub#access_model'), 'whitelist');
      assertError(await bob.ps('get', xml('items', { node })), 'cancel/not-allowed', 'closed-node', 'items of a whitelist node');
    });

    test('publish with a given ItemID (§7.1.2) reaches a strophe.js subscriber with its payload (§7.1.2.1)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'pubid'], ['bosh', 'bob', 'pubid']);
      const node = nodeName('pubid');
      await createNode(alice, node);
      await available(bob);
      await subscribe(bob, node);

      const res = await alice.iqOk('set', SERVICE, publishReq(node, 'item-1', entry('first words')));
      const pe = res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS);
      assert.ok(pe, `<publish/> in the result: ${show(res)}`);
      assert.equal(pe.attrs.node, node, show(res));
      assert.equal(pe.getChild('item', NS_PS)?.attrs.id, 'item-1', show(res));

      const msg = await bob.next(isEvent(node, 'items'), 'item notification at the BOSH subscriber');
      const it0 = eventItem(msg, node, bob.jid);
      assert.equal(it0.attrs.id, 'item-1', show(msg));
      const payload = it0.getChild('entry', NS_PAYLOAD);
      assert.ok(payload, `the payload in its namespace: ${show(msg)}`);
      assert.equal(payload.getText(), 'first words', show(msg));
      // the publisher is not subscribed: nothing for it
      await alice.none(isEvent(node), 'notification at the (unsubscribed) publisher');

      // §7.1.2: "If the publisher specifies an ItemID that already exists,
      // the service MUST overwrite the existing item" (and notify)
      await alice.iqOk('set', SERVICE, publishReq(node, 'item-1', entry('second thoughts')));
      const again = await bob.next(isEvent(node, 'items'), 'notification of the overwritten item');
      assert.equal(eventItem(again, node, bob.jid).getChild('entry', NS_PAYLOAD)?.getText(), 'second thoughts', show(again));
      const items = await bob.psOk('get', xml('items', { node }));
      assert.deepEqual(itemIds(items, node), ['item-1'], `one item after overwriting: ${show(items)}`);
      assert.equal(items.getChild('pubsub', NS_PS).getChild('items', NS_PS).getChild('item', NS_PS)
        .getChild('entry', NS_PAYLOAD)?.getText(), 'second thoughts', show(items));
    });

    test('publish without an ItemID: the service generates one (§7.1.2); a @xmpp/client subscriber gets it (§7.1.2.1)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'pubgen'], ['ws', 'bob', 'pubgen']);
      const node = nodeName('pubgen');
      await createNode(alice, node);
      await available(bob);
      await subscribe(bob, node);

      const res = await alice.iqOk('set', SERVICE, publishReq(node, null, entry('no id given')));
      const gen = res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS)?.getChild('item', NS_PS)?.attrs.id;
      assert.ok(gen, `the generated ItemID in the publish result: ${show(res)}`);

      const msg = await bob.next(isEvent(node, 'items'), 'item notification at the WebSocket subscriber');
      const it0 = eventItem(msg, node, bob.jid);
      assert.equal(it0.attrs.id, gen, `the notification carries the generated ItemID: ${show(msg)}`);
      assert.equal(it0.getChild('entry', NS_PAYLOAD)?.getText(), 'no id given', show(msg));

      const ids = itemIds(await bob.psOk('get', xml('items', { node })), node);
      assert.deepEqual(ids, [gen], 'the item is stored under the generated id');

      // a second publish gets a different id
      const res2 = await alice.iqOk('set', SERVICE, publishReq(node, null, entry('again')));
      const gen2 = res2.getChild('pubsub', NS_PS).getChild('publish', NS_PS).getChild('item', NS_PS).attrs.id;
      assert.notEqual(gen2, gen, 'generated ItemIDs are unique');
    });

    test('retract with notify=true: the subscriber gets <retract id/> (§7.2.2.1) and the item is gone', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'retract'], ['bosh', 'bob', 'retract']);
      const node = nodeName('retract');
      await createNode(alice, node);
      await available(bob);
      await subscribe(bob, node);
      for (const id of ['r1', 'r2']) {
        await alice.iqOk('set', SERVICE, publishReq(node, id, entry(id)));
        await bob.next(isEvent(node, 'items'), `notification of ${id}`);
      }

      // §7.2.3: a subscriber without publisher rights may not retract
      assertError(await bob.ps('set', xml('retract', { node }, xml('item', { id: 'r1' }))), 'auth/forbidden', null,
        'retract by a non-publisher');
      // §7.2.3: the item does not exist
      assertError(await alice.ps('set', xml('retract', { node }, xml('item', { id: 'nope' }))), 'cancel/item-not-found', null,
        'retract of a missing item');

      await alice.psOk('set', xml('retract', { node, notify: 'true' }, xml('item', { id: 'r1' })));
      const msg = await bob.next((el) => isEvent(node, 'items')(el) &&
        !!el.getChild('event', NS_PS_EVENT).getChild('items', NS_PS_EVENT).getChild('retract', NS_PS_EVENT), 'retract notification');
      assert.equal(msg.attrs.from, SERVICE, show(msg));
      const items = msg.getChild('event', NS_PS_EVENT).getChild('items', NS_PS_EVENT);
      const rs = items.getChildren('retract', NS_PS_EVENT);
      assert.deepEqual(rs.map((r) => r.attrs.id), ['r1'], show(msg));
      assert.equal(items.getChildren('item', NS_PS_EVENT).length, 0, show(msg));

      assert.deepEqual(itemIds(await bob.psOk('get', xml('items', { node })), node), ['r2'], 'r1 retracted');
    });

    test('items retrieval: all (§6.5.2), by ItemID (§6.5.8), the most recent N with max_items (§6.5.7), missing node (§6.5.9, node does not exist)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'items'], ['ws', 'bob', 'items']);
      const node = nodeName('items');
      await createNode(alice, node);
      for (const id of ['i1', 'i2', 'i3', 'i4']) await alice.iqOk('set', SERVICE, publishReq(node, id, entry(`text of ${id}`)));

      const all = await bob.psOk('get', xml('items', { node }));
      assert.deepEqual([...itemIds(all, node)].sort(), ['i1', 'i2', 'i3', 'i4'], show(all));
      for (const i of all.getChild('pubsub', NS_PS).getChild('items', NS_PS).getChildren('item', NS_PS)) {
        assert.equal(i.getChild('entry', NS_PAYLOAD)?.getText(), `text of ${i.attrs.id}`, `payload of ${i.attrs.id}: ${show(all)}`);
      }

      const byId = await bob.psOk('get', xml('items', { node }, xml('item', { id: 'i2' })));
      assert.deepEqual(itemIds(byId, node), ['i2'], show(byId));
      const two = await bob.psOk('get', xml('items', { node }, xml('item', { id: 'i1' }), xml('item', { id: 'i3' })));
      assert.deepEqual([...itemIds(two, node)].sort(), ['i1', 'i3'], show(two));
      const i3 = two.getChild('pubsub', NS_PS).getChild('items', NS_PS).getChildren('item', NS_PS).find((i) => i.attrs.id === 'i3');
      assert.equal(i3.getChild('entry', NS_PAYLOAD)?.getText(), 'text of i3', show(two));

      const recent = await alice.psOk('get', xml('items', { node, max_items: '2' }));
      assert.deepEqual([...itemIds(recent, node)].sort(), ['i3', 'i4'], `max_items='2': the two most recent: ${show(recent)}`);

      assertError(await bob.ps('get', xml('items', { node: `${node}-missing` })), 'cancel/item-not-found', null, 'items of a missing node');
    });

    test('NodeIDs, ItemIDs and payloads with XML special and non-ASCII characters round-trip (NodeIDs are opaque strings; §7.1.2.1, §6.5.2)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'chars'], ['bosh', 'bob', 'chars']);
      const node = `${nodeName('chars')} <&> "q" 'a' \u00fc\u20ac\u{1F600}`;
      const id = `id <&> "q" 'a' \u00e9`;
      await createNode(alice, node, { 'pubsub#title': 'T\u00eftle & <more>' });
      await available(bob);
      await subscribe(bob, node);
      const payload = xml('entry', { xmlns: NS_PAYLOAD, 'xml:lang': 'en', note: 'a & b < c "d"' },
        xml('title', {}, '1 < 2 & 3 > 2 \u00fc\u{1F600}'),
        xml('link', { xmlns: 'urn:tern:test:other', href: 'http://example.org/?a=1&b=2' }));
      const res = await alice.iqOk('set', SERVICE, publishReq(node, id, payload));
      assert.equal(res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS)?.attrs.node, node, show(res));
      assert.equal(res.getChild('pubsub', NS_PS).getChild('publish', NS_PS).getChild('item', NS_PS)?.attrs.id, id, show(res));

      const check = (it, where) => {
        assert.equal(it.attrs.id, id, `${where}: ${show(it)}`);
        const e = it.getChild('entry', NS_PAYLOAD);
        assert.ok(e, `${where}: payload: ${show(it)}`);
        assert.equal(e.attrs.note, 'a & b < c "d"', `${where}: ${show(it)}`);
        assert.equal(e.attrs['xml:lang'], 'en', `${where}: ${show(it)}`);
        assert.equal(e.getChildText('title', NS_PAYLOAD), '1 < 2 & 3 > 2 \u00fc\u{1F600}', `${where}: ${show(it)}`);
        assert.equal(e.getChild('link', 'urn:tern:test:other')?.attrs.href, 'http://example.org/?a=1&b=2', `${where}: ${show(it)}`);
      };
      const msg = await bob.next(isEvent(node, 'items'), 'notification for the node with special characters');
      check(eventItem(msg, node, bob.jid), 'notification');
      const items = await alice.psOk('get', xml('items', { node }));
      assert.deepEqual(itemIds(items, node), [id], show(items));
      check(items.getChild('pubsub', NS_PS).getChild('items', NS_PS).getChild('item', NS_PS), 'items');
      const byId = await bob.psOk('get', xml('items', { node }, xml('item', { id })));
      assert.deepEqual(itemIds(byId, node), [id], show(byId));
      const disco = await bob.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_ITEMS }));
      const d = disco.getChild('query', DISCO_ITEMS).getChildren('item', DISCO_ITEMS).find((i) => i.attrs.node === node);
      assert.ok(d, `the node in disco#items: ${show(disco)}`);
      assert.equal(d.attrs.name, 'T\u00eftle & <more>', show(d));
      await alice.ownOk('set', xml('delete', { node }));
      const del = await bob.next(isEvent(node, 'delete'), 'delete notification');
      assert.equal(del.getChild('event', NS_PS_EVENT).getChild('delete', NS_PS_EVENT).attrs.node, node, show(del));
    });

    test('subscribe (§6.1) and unsubscribe (§6.2): no notifications after unsubscribing, not-subscribed on a second one (§6.2.3.2)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'subs'], ['bosh', 'bob', 'subs']);
      const node = nodeName('subs');
      await createNode(alice, node);
      await available(bob);

      // §6.1.3: the JIDs do not match
      assertError(await bob.ps('set', xml('subscribe', { node, jid: 'alice@localhost' })), 'modify/bad-request', 'invalid-jid',
        'subscribe of someone else');
      // §6.1.3: the node does not exist
      assertError(await bob.ps('set', xml('subscribe', { node: `${node}-missing`, jid: bob.jid })), 'cancel/item-not-found', null,
        'subscribe to a missing node');

      await subscribe(bob, node);
      await alice.iqOk('set', SERVICE, publishReq(node, 's1', entry('while subscribed')));
      await bob.next(isEvent(node, 'items'), 'notification while subscribed');

      const res = await bob.psOk('set', xml('unsubscribe', { node, jid: bob.jid }));
      assert.equal(res.attrs.from, SERVICE, show(res));
      await alice.iqOk('set', SERVICE, publishReq(node, 's2', entry('after unsubscribing')));
      await bob.none(isEvent(node), 'notification after unsubscribing');

      assertError(await bob.ps('set', xml('unsubscribe', { node, jid: bob.jid })), 'cancel/unexpected-request', 'not-subscribed',
        'second unsubscribe');
    });

    test('subscriptions and affiliations: own (§5.6, §5.7), the owner\'s view (§8.8.1, §8.9.1); a publisher affiliation lets another user publish (§8.9.2)', async () => {
      const [alice, bob, carol] = await parties(['bosh', 'alice', 'aff'], ['ws', 'bob', 'aff'], ['ws', 'carol', 'aff']);
      const node = nodeName('aff');
      await createNode(alice, node);
      await available(carol);
      await subscribe(bob, node);
      await subscribe(carol, node);

      // §5.6: the entity's own subscriptions
      const mySubs = await bob.psOk('get', xml('subscriptions'));
      const ms = mySubs.getChild('pubsub', NS_PS)?.getChild('subscriptions', NS_PS);
      assert.ok(ms, `<subscriptions/> in the result: ${show(mySubs)}`);
      const mine = ms.getChildren('subscription', NS_PS).filter((s) => s.attrs.node === node);
      assert.deepEqual(mine.map((s) => [s.attrs.jid, s.attrs.subscription]), [[bob.jid, 'subscribed']], show(mySubs));

      // §5.7: the entity's own affiliations
      const myAffs = await alice.psOk('get', xml('affiliations'));
      const ma = myAffs.getChild('pubsub', NS_PS)?.getChild('affiliations', NS_PS);
      assert.ok(ma, `<affiliations/> in the result: ${show(myAffs)}`);
      assert.ok(ma.getChildren('affiliation', NS_PS).some((a) => a.attrs.node === node && a.attrs.affiliation === 'owner'), show(myAffs));

      // §8.8.1: the owner retrieves the subscriptions (a non-owner is forbidden, §8.8.1 error cases)
      assertError(await bob.own('get', xml('subscriptions', { node })), 'auth/forbidden', null, 'subscriptions of the node by a non-owner');
      const subs = await alice.ownOk('get', xml('subscriptions', { node }));
      const se = subs.getChild('pubsub', NS_PS_OWNER)?.getChild('subscriptions', NS_PS_OWNER);
      assert.ok(se, `owner <subscriptions/>: ${show(subs)}`);
      assert.equal(se.attrs.node, node, show(subs));
      const got = se.getChildren('subscription', NS_PS_OWNER).map((s) => `${s.attrs.jid} ${s.attrs.subscription}`).sort();
      assert.deepEqual(got, [`${bob.jid} subscribed`, `${carol.jid} subscribed`].sort(), show(subs));

      // bob may not publish yet (§7.1.3.1)
      assertError(await bob.iq('set', SERVICE, publishReq(node, 'bob-1', entry('too early'))), 'auth/forbidden', null, 'publish by a non-publisher');

      // §8.9.2: the owner makes bob a publisher
      assertError(await bob.own('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'publisher' }))),
        'auth/forbidden', null, 'affiliation change by a non-owner');
      await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'publisher' })));
      const affs = await alice.ownOk('get', xml('affiliations', { node }));
      const ae = affs.getChild('pubsub', NS_PS_OWNER)?.getChild('affiliations', NS_PS_OWNER);
      assert.ok(ae, `owner <affiliations/>: ${show(affs)}`);
      assert.equal(ae.attrs.node, node, show(affs));
      const map = Object.fromEntries(ae.getChildren('affiliation', NS_PS_OWNER).map((a) => [a.attrs.jid, a.attrs.affiliation]));
      assert.deepEqual(map, { 'alice@localhost': 'owner', 'bob@localhost': 'publisher' }, show(affs));

      const res = await bob.iqOk('set', SERVICE, publishReq(node, 'bob-1', entry('by the publisher')));
      assert.equal(res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS)?.getChild('item', NS_PS)?.attrs.id, 'bob-1', show(res));
      const msg = await carol.next(isEvent(node, 'items'), "notification of bob's item at carol");
      const it0 = eventItem(msg, node, carol.jid);
      assert.equal(it0.attrs.id, 'bob-1', show(msg));
      assert.equal(it0.getChild('entry', NS_PAYLOAD)?.getText(), 'by the publisher', show(msg));

      // bob's own view of his affiliation (§5.7)
      const bobAffs = await bob.psOk('get', xml('affiliations'));
      assert.ok(bobAffs.getChild('pubsub', NS_PS).getChild('affiliations', NS_PS).getChildren('affiliation', NS_PS)
        .some((a) => a.attrs.node === node && a.attrs.affiliation === 'publisher'), show(bobAffs));
    });

    test('an outcast may not subscribe (§6.1.3, blocked); "none" removes an affiliation from the list (§8.9.3)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'outcast'], ['ws', 'bob', 'outcast']);
      const node = nodeName('outcast');
      await createNode(alice, node);
      await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'outcast' })));
      assertError(await bob.ps('set', xml('subscribe', { node, jid: bob.jid })), 'auth/forbidden', null, 'subscribe by an outcast');
      const affs = await alice.ownOk('get', xml('affiliations', { node }));
      const list = () => affs.getChild('pubsub', NS_PS_OWNER).getChild('affiliations', NS_PS_OWNER).getChildren('affiliation', NS_PS_OWNER);
      assert.ok(list().some((a) => a.attrs.jid === 'bob@localhost' && a.attrs.affiliation === 'outcast'), show(affs));

      await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'none' })));
      const after2 = await alice.ownOk('get', xml('affiliations', { node }));
      const jids = after2.getChild('pubsub', NS_PS_OWNER).getChild('affiliations', NS_PS_OWNER).getChildren('affiliation', NS_PS_OWNER)
        .map((a) => a.attrs.jid);
      assert.deepEqual(jids, ['alice@localhost'], `"none" is not listed (§8.9.1.2 "MUST NOT return entities whose affiliation is none"): ${show(after2)}`);
      await subscribe(bob, node);
    });

    // XEP-0060 §8.9.2.4: making the only owner
    // something other than "owner" is "an action which MUST NOT be allowed
    // if there is only one owner"; the service "MUST return an IQ error
    // (which SHOULD be <not-acceptable/>)".
    test('the only owner cannot give up ownership: IQ error, SHOULD be not-acceptable (§8.9.2.4)', async () => {
      const alice = await party('ws', 'alice', 'lastowner');
      const problems = [];
      for (const aff of ['publisher', 'none']) {
        const node = nodeName('lastowner');
        await createNode(alice, node);
        await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'publisher' })));
        const res = await alice.own('set', xml('affiliations', { node }, xml('affiliation', { jid: 'alice@localhost', affiliation: aff })));
        if (res.attrs.type !== 'error') {
          problems.push(`the only owner setting itself to '${aff}' got ${show(res)} (expected an IQ error, SHOULD be modify/not-acceptable)`);
        } else if (errorOf(res) !== 'modify/not-acceptable') {
          problems.push(`SHOULD be modify/not-acceptable: ${show(res)}`);
        }
        // whatever the answer, the node must still have alice as its owner
        const affs = await alice.own('get', xml('affiliations', { node }));
        if (affs.attrs.type !== 'result') {
          problems.push(`after '${aff}': the former owner can no longer manage the node: ${show(affs)}`);
          continue;
        }
        const map = Object.fromEntries(affs.getChild('pubsub', NS_PS_OWNER).getChild('affiliations', NS_PS_OWNER)
          .getChildren('affiliation', NS_PS_OWNER).map((a) => [a.attrs.jid, a.attrs.affiliation]));
        if (map['alice@localhost'] !== 'owner') problems.push(`after '${aff}': no owner left: ${show(affs)}`);
      }
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    // XEP-0060 §8.9.2.4: "The owner MUST NOT specify multiple <affiliation/> elements
    // for the same entity; otherwise the service MUST return a <bad-request/> error."
    test('two <affiliation/> elements for one entity in a request: bad-request (§8.9.2.4)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'dupaff'], ['ws', 'bob', 'dupaff']);
      const node = nodeName('dupaff');
      await createNode(alice, node);
      const res = await alice.own('set', xml('affiliations', { node },
        xml('affiliation', { jid: 'bob@localhost', affiliation: 'publisher' }),
        xml('affiliation', { jid: 'bob@localhost', affiliation: 'member' })));
      assertError(res, 'modify/bad-request', null, 'two affiliations for bob@localhost');
      // and nothing changed for bob
      assertError(await bob.iq('set', SERVICE, publishReq(node, 'b1', entry('x'))), 'auth/forbidden', null, 'publish by bob');
    });

    test('publish-options precondition not met -> <conflict/> + <precondition-not-met/> (§7.1.5)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'precond'], ['bosh', 'bob', 'precond']);
      const node = nodeName('precond');
      await createNode(alice, node, { 'pubsub#access_model': 'whitelist' });
      await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'member' })));
      await available(bob);
      await subscribe(bob, node);

      // met: published
      await alice.iqOk('set', SERVICE, publishReq(node, 'p1', entry('kept private'), { 'pubsub#access_model': 'whitelist' }));
      await bob.next(isEvent(node, 'items'), 'notification of the item published with a met precondition');

      // not met: "the pubsub service MUST return a <conflict/> error with a
      // pubsub-specific error condition of <precondition-not-met/>"
      const res = await alice.iq('set', SERVICE, publishReq(node, 'p2', entry('must not leak'), { 'pubsub#access_model': 'open' }));
      assertError(res, 'cancel/conflict', 'precondition-not-met', 'publish with a precondition not met');
      await bob.none(isEvent(node), 'notification of the rejected item');
      assert.deepEqual(itemIds(await alice.psOk('get', xml('items', { node })), node), ['p1'], 'the rejected item is not stored');
      assert.equal(value(await getConfig(alice, node), 'pubsub#access_model'), 'whitelist', 'the node configuration is unchanged');
    });

    test('purge: the subscriber gets <purge node/> (§8.5.2), the items are gone; non-owner forbidden (§8.5.3.2)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'purge'], ['ws', 'bob', 'purge']);
      const node = nodeName('purge');
      await createNode(alice, node);
      await available(bob);
      await subscribe(bob, node);
      for (const id of ['u1', 'u2']) {
        await alice.iqOk('set', SERVICE, publishReq(node, id, entry(id)));
        await bob.next(isEvent(node, 'items'), `notification of ${id}`);
      }

      assertError(await bob.own('set', xml('purge', { node })), 'auth/forbidden', null, 'purge by a non-owner');
      await alice.ownOk('set', xml('purge', { node }));
      const msg = await bob.next(isEvent(node, 'purge'), 'purge notification');
      assert.equal(msg.attrs.from, SERVICE, show(msg));
      assert.equal(msg.attrs.to, bob.jid, show(msg));
      const p = msg.getChild('event', NS_PS_EVENT).getChild('purge', NS_PS_EVENT);
      assert.equal(p.attrs.node, node, show(msg));
      assert.deepEqual(itemIds(await bob.psOk('get', xml('items', { node })), node), [], 'no items after the purge');
      assertError(await alice.own('set', xml('purge', { node: `${node}-missing` })), 'cancel/item-not-found', null, 'purge of a missing node');
    });

    test('delete node: the subscriber gets <delete node/> (§8.4.2), the node is gone; non-owner forbidden (§8.4.3.1)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'delete'], ['bosh', 'bob', 'delete']);
      const node = nodeName('delete');
      await createNode(alice, node);
      await available(bob);
      await subscribe(bob, node);
      await alice.iqOk('set', SERVICE, publishReq(node, 'd1', entry('d1')));
      await bob.next(isEvent(node, 'items'), 'notification of d1');

      assertError(await bob.own('set', xml('delete', { node })), 'auth/forbidden', null, 'delete by a non-owner');
      await alice.ownOk('set', xml('delete', { node }));
      const msg = await bob.next(isEvent(node, 'delete'), 'delete notification');
      assert.equal(msg.attrs.from, SERVICE, show(msg));
      assert.equal(msg.attrs.to, bob.jid, show(msg));
      assert.equal(msg.getChild('event', NS_PS_EVENT).getChild('delete', NS_PS_EVENT).attrs.node, node, show(msg));

      assertError(await bob.ps('get', xml('items', { node })), 'cancel/item-not-found', null, 'items of the deleted node');
      const info = await bob.iq('get', SERVICE, xml('query', { xmlns: DISCO_INFO, node }));
      assertError(info, 'cancel/item-not-found', null, 'disco#info of the deleted node');
      // §8.4.3.2: deleting it again
      assertError(await alice.own('set', xml('delete', { node })), 'cancel/item-not-found', null, 'delete of a missing node');
    });

    test('publish to a nonexistent node: auto-create when #auto-create is advertised (§7.1.4), else item-not-found (§7.1.3.3)', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'auto'], ['ws', 'bob', 'auto']);
      const node = nodeName('auto');
      const info = await alice.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_INFO }));
      const autoCreate = info.getChild('query', DISCO_INFO).getChildren('feature', DISCO_INFO)
        .some((f) => f.attrs.var === `${NS_PS}#auto-create`);

      const res = await alice.iq('set', SERVICE, publishReq(node, 'a1', entry('creates the node')));
      if (!autoCreate) {
        assertError(res, 'cancel/item-not-found', null, 'publish to a nonexistent node (no auto-create)');
        return;
      }
      assert.equal(res.attrs.type, 'result', `auto-create: the publish succeeds: ${show(res)}`);
      assert.equal(res.getChild('pubsub', NS_PS)?.getChild('publish', NS_PS)?.attrs.node, node, show(res));
      // the node exists, holds the item, and the publisher owns it
      const ni = await bob.iqOk('get', SERVICE, xml('query', { xmlns: DISCO_INFO, node }));
      assert.ok(ni.getChild('query', DISCO_INFO).getChildren('identity', DISCO_INFO).some((i) => i.attrs.type === 'leaf'), show(ni));
      assert.deepEqual(itemIds(await bob.psOk('get', xml('items', { node })), node), ['a1']);
      const affs = await alice.ownOk('get', xml('affiliations', { node }));
      const map = Object.fromEntries(affs.getChild('pubsub', NS_PS_OWNER).getChild('affiliations', NS_PS_OWNER)
        .getChildren('affiliation', NS_PS_OWNER).map((a) => [a.attrs.jid, a.attrs.affiliation]));
      assert.deepEqual(map, { 'alice@localhost': 'owner' }, `the auto-creator is the owner: ${show(affs)}`);
      // and others cannot publish to it (default publish model: publishers)
      assertError(await bob.iq('set', SERVICE, publishReq(node, 'b1', entry('not mine'))), 'auth/forbidden', null, 'publish by a non-publisher');
    });

    test('publishing without rights is forbidden (§7.1.3.1) and nothing is notified', async () => {
      const [alice, bob, carol] = await parties(['ws', 'alice', 'norights'], ['bosh', 'bob', 'norights'], ['ws', 'carol', 'norights']);
      const node = nodeName('norights');
      await createNode(alice, node);
      await available(carol);
      await subscribe(carol, node);
      await subscribe(bob, node); // a subscriber is not a publisher under publish_model=publishers

      const res = await bob.iq('set', SERVICE, publishReq(node, 'x1', entry('not allowed')));
      assertError(res, 'auth/forbidden', null, 'publish by a subscriber without publisher affiliation');
      await carol.none(isEvent(node), 'notification of the forbidden publish');
      assert.deepEqual(itemIds(await carol.psOk('get', xml('items', { node })), node), [], 'nothing stored');
    });

    test('whitelist node: a non-member gets not-allowed + closed-node for items (§6.5.9, not on the whitelist) and subscribe (§6.1.3, not on the whitelist); a member may', async () => {
      const [alice, bob] = await parties(['bosh', 'alice', 'white'], ['ws', 'bob', 'white']);
      const node = nodeName('white');
      await createNode(alice, node, { 'pubsub#access_model': 'whitelist' });
      await alice.iqOk('set', SERVICE, publishReq(node, 'w1', entry('members only')));

      assertError(await bob.ps('get', xml('items', { node })), 'cancel/not-allowed', 'closed-node', 'items by a non-member');
      assertError(await bob.ps('set', xml('subscribe', { node, jid: bob.jid })), 'cancel/not-allowed', 'closed-node', 'subscribe by a non-member');

      await alice.ownOk('set', xml('affiliations', { node }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'member' })));
      const res = await bob.psOk('get', xml('items', { node }));
      assert.deepEqual(itemIds(res, node), ['w1'], show(res));
      await subscribe(bob, node);
    });

    test('an invalid node configuration value is rejected with <not-acceptable/> (§8.2.5 failure; §8.1.3 at creation)', async () => {
      const [alice, bob] = await parties(['ws', 'alice', 'badconf'], ['bosh', 'bob', 'badconf']);
      const node = nodeName('badconf');
      await createNode(alice, node);

      // §8.2.5: "If the requested node configuration change cannot be
      // processed ..., the service MUST return a <not-acceptable/> error"
      // (example: <error type='modify'><not-acceptable/></error>)
      for (const [v, bad] of [['pubsub#access_model', 'bogus'], ['pubsub#max_items', 'lots'], ['pubsub#deliver_payloads', 'perhaps']]) {
        const res = await alice.own('set', xml('configure', { node }, submitForm(NS_NODE_CONFIG, { [v]: bad })));
        assertError(res, 'modify/not-acceptable', null, `configure ${v}=${bad}`);
      }
      const f = await getConfig(alice, node);
      assert.equal(value(f, 'pubsub#access_model'), 'open', 'the rejected change did not apply');

      // create-and-configure with an invalid value: the node is not created
      const other = nodeName('badconf-create');
      const res = await alice.ps('set', xml('create', { node: other }),
        xml('configure', {}, submitForm(NS_NODE_CONFIG, { 'pubsub#access_model': 'bogus' })));
      assert.equal(res.attrs.type, 'error', `create with an invalid configuration: ${show(res)}`);
      assert.ok(['modify/not-acceptable', 'modify/bad-request'].includes(errorOf(res)), show(res));
      const info = await bob.iq('get', SERVICE, xml('query', { xmlns: DISCO_INFO, node: other }));
      assertError(info, 'cancel/item-not-found', null, 'the node with the rejected configuration does not exist');
    });
  });
