// strophe.js over BOSH (XEP-0124/XEP-0206): login with SCRAM, presence and
// messages with a slixmpp TCP client and an @xmpp/client WebSocket client,
// ordering under load, and session pause/resume (XEP-0124 §10).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  logOnFailure, startServer, stopServer, TcpPeer, killAllChildren, sleep, waitFor, bare, IS_TERN,
} from './harness.mjs';
import {
  StropheClient, XmppJsClient, closeHttpAgents, boshCreateSession, boshPost, parseXml, NS_HTTPBIND,
} from './clients.mjs';

const INACTIVITY = 3; // seconds: bosh_max_inactivity of this server

describe('strophe.js over BOSH', () => {
  let srv;
  const open = []; // clients to close at the end

  before(async () => {
    srv = await startServer({
      name: 'bosh',
      options: { bosh_max_inactivity: `${INACTIVITY}s` },
      subscriptions: [
        ['alice@localhost', 'bob@localhost'],
        ['alice@localhost', 'carol@localhost'],
        ['bob@localhost', 'carol@localhost'],
      ],
    });
  });

  after(async () => {
    for (const c of open.reverse()) {
      try {
        if (c.quit) await c.quit(); else if (c.stop) await c.stop(); else c.abandon();
      } catch { /* best effort */ }
    }
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
  });

  const avail = (jid) => (p) => p.from === jid && !p.type;
  const unavail = (jid) => (p) => p.from === jid && p.type === 'unavailable';

  it('logs in with SCRAM, binds, and exchanges presence and messages with TCP and WebSocket clients', logOnFailure(() => srv, async () => {
    const bob = await TcpPeer.start(srv, 'bob@localhost/tcp');
    open.push(bob);

    const alice = new StropheClient(srv.boshUrl, 'alice@localhost/bosh', srv.password('alice@localhost'));
    open.push(alice);
    await alice.connect();
    assert.match(alice.saslMechanism || '', /^SCRAM-SHA-(1|256|512)$/, `SASL mechanism used: ${alice.saslMechanism}`);
    assert.equal(bare(alice.jid), 'alice@localhost');
    assert.ok(alice.jid.includes('/'), `bound a full JID: ${alice.jid}`);
    const created = parseXml(alice.sessionCreationResponse);
    assert.equal(created.namespaceURI, NS_HTTPBIND);
    assert.ok(created.getAttribute('sid'), 'session creation response has a sid');

    // initial presence: bob hears alice, alice gets bob's current presence
    alice.sendPresence({}, 'on BOSH');
    const p1 = await bob.nextPresence(avail(alice.jid), 10000, 'alice available');
    assert.equal(p1.status, 'on BOSH');
    await alice.presences.next(avail(bob.jid), 10000, 'bob available');

    // a WebSocket client joins
    const carol = new XmppJsClient(srv.wsUrl, 'carol@localhost/ws', srv.password('carol@localhost'));
    open.push(carol);
    await carol.connect();
    await carol.sendPresence({}, 'on WebSocket');
    await alice.presences.next(avail(carol.jid), 10000, 'carol available (at alice)');
    await bob.nextPresence(avail(carol.jid), 10000, 'carol available (at bob)');
    await carol.presences.next(avail(alice.jid), 10000, 'alice available (at carol)');
    await carol.presences.next(avail(bob.jid), 10000, 'bob available (at carol)');

    // TCP -> BOSH (full and bare JID), BOSH -> TCP
    await bob.send(alice.jid, 'tcp to bosh, full jid');
    let m = await alice.messages.next((x) => x.body === 'tcp to bosh, full jid', 10000, 'message from bob');
    assert.equal(m.from, bob.jid);
    assert.equal(m.type, 'chat');
    await bob.send('alice@localhost', 'tcp to bosh, bare jid');
    m = await alice.messages.next((x) => x.body === 'tcp to bosh, bare jid', 10000, 'message from bob to the bare JID');
    assert.equal(m.from, bob.jid);
    alice.sendMessage(bob.jid, 'bosh to tcp \u00e4\u00f6\u00fc <&> \u20ac');
    const b = await bob.nextMessage((x) => x.body.startsWith('bosh to tcp'), 10000, 'message from alice');
    assert.equal(b.body, 'bosh to tcp \u00e4\u00f6\u00fc <&> \u20ac');
    assert.equal(b.from, alice.jid);

    // WebSocket <-> BOSH
    await carol.sendMessage(alice.jid, 'ws to bosh');
    m = await alice.messages.next((x) => x.body === 'ws to bosh', 10000, 'message from carol');
    assert.equal(m.from, carol.jid);
    alice.sendMessage('carol@localhost', 'bosh to ws');
    m = await carol.messages.next((x) => x.body === 'bosh to ws', 10000, 'message from alice at carol');
    assert.equal(m.from, alice.jid);

    // leaving: the others hear alice go
    await alice.disconnect();
    await bob.nextPresence(unavail(alice.jid), 10000, 'alice unavailable (at bob)');
    await carol.presences.next(unavail(alice.jid), 10000, 'alice unavailable (at carol)');
    await carol.stop();
    await bob.nextPresence(unavail(carol.jid), 10000, 'carol unavailable (at bob)');
    await bob.quit();
  }));

  it('keeps message order in both directions under a burst', logOnFailure(() => srv, async () => {
    const N = 30;
    const bob = await TcpPeer.start(srv, 'bob@localhost/burst');
    open.push(bob);
    const alice = new StropheClient(srv.boshUrl, 'alice@localhost/burst', srv.password('alice@localhost'));
    open.push(alice);
    await alice.connect();
    alice.sendPresence();
    await bob.nextPresence(avail(alice.jid), 10000, 'alice available');

    for (let i = 0; i < N; i++) alice.sendMessage(bob.jid, `a2b ${i}`);
    for (let i = 0; i < N; i++) {
      const m = await bob.nextMessage((x) => x.body.startsWith('a2b '), 15000, `a2b ${i}`);
      assert.equal(m.body, `a2b ${i}`, 'BOSH -> TCP order');
    }
    await Promise.all(Array.from({ length: N }, (_, i) => bob.send(alice.jid, `b2a ${i}`)));
    for (let i = 0; i < N; i++) {
      const m = await alice.messages.next((x) => x.body?.startsWith('b2a '), 15000, `b2a ${i}`);
      assert.equal(m.body, `b2a ${i}`, 'TCP -> BOSH order');
    }
    await alice.disconnect();
    await bob.quit();
  }));

  it('pauses a session (XEP-0124 §10): it outlives the inactivity limit and gets what arrived meanwhile', logOnFailure(() => srv, async () => {
    const bob = await TcpPeer.start(srv, 'bob@localhost/pause');
    open.push(bob);
    const alice1 = new StropheClient(srv.boshUrl, 'alice@localhost/pause', srv.password('alice@localhost'));
    open.push(alice1);
    await alice1.connect();
    alice1.sendPresence();
    await bob.nextPresence(avail(alice1.jid), 10000, 'alice available');
    const jid = alice1.jid;

    const created = parseXml(alice1.sessionCreationResponse);
    const maxpause = Number(created.getAttribute('maxpause'));
    assert.ok(maxpause >= 10, `session creation response advertises maxpause >= 10 (got ${created.getAttribute('maxpause')})`);
    assert.equal(Number(created.getAttribute('inactivity')), INACTIVITY, 'inactivity is the server maximum');

    // a session that just stops sending requests, for comparison
    const idle = await boshCreateSession(srv, { wait: 2 });

    // strophe stops sending; the test sends the pause request itself with
    // the next rid, as a page does before it unloads
    alice1.conn.pause();
    await alice1.flushed();
    const sid = alice1.conn._proto.sid;
    const rid = alice1.conn._proto.rid;
    const t0 = Date.now();
    const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='${rid}' sid='${sid}' pause='10'/>`);
    assert.equal(r.status, 200, `pause request: HTTP ${r.status} ${r.body}`);
    const pauseBody = parseXml(r.body);
    assert.notEqual(pauseBody.getAttribute('type'), 'terminate', `pause request answered with ${r.body}`);
    assert.ok(Date.now() - t0 < 3000, 'the pause request is answered at once');
    // "the connection manager SHOULD respond immediately to all pending requests"
    await waitFor(() => alice1.conn._proto._requests.length === 0,
      { timeout: 3000, what: "the answer to strophe's held request after the pause" });
    alice1.abandon(); // the page is gone; no terminate

    await bob.send(jid, 'sent during the pause');
    await sleep((INACTIVITY + 2) * 1000);

    // the idle session is gone ...
    const ri = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='${idle.rid}' sid='${idle.sid}'/>`);
    const ib = parseXml(ri.body);
    assert.equal(ib.getAttribute('type'), 'terminate', `idle session after ${INACTIVITY + 2}s: HTTP ${ri.status} ${ri.body}`);
    assert.equal(ib.getAttribute('condition'), 'item-not-found');

    // ... the paused one is resumed by its next request
    const alice2 = new StropheClient(srv.boshUrl, jid, null, { name: 'strophe:alice (attached)' });
    open.push(alice2);
    await alice2.attach(jid, sid, rid + 1);
    const m = await alice2.messages.next((x) => x.body === 'sent during the pause', 10000, 'the message sent during the pause');
    assert.equal(m.from, bob.jid);
    alice2.sendMessage(bob.jid, 'back from the pause');
    const b = await bob.nextMessage((x) => x.body === 'back from the pause', 10000, 'message after resuming');
    assert.equal(b.from, jid, 'the same full JID after the pause');
    await bob.events.none((e) => e.event === 'presence' && e.from === jid && e.type === 'unavailable', 200,
      'unavailable presence of the paused session');
    await alice2.disconnect();
    await bob.nextPresence(unavail(jid), 10000, 'alice unavailable after terminate');
    await bob.quit();
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});
