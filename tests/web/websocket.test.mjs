// @xmpp/client over WebSocket (RFC 7395): login, presence and messages with
// a slixmpp TCP client and a strophe.js BOSH client, and stream management
// (XEP-0198) resumption after the socket is cut.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  logOnFailure, startServer, stopServer, TcpPeer, killAllChildren, sleep, waitFor, bare, IS_TERN,
} from './harness.mjs';
import { StropheClient, XmppJsClient, closeHttpAgents } from './clients.mjs';

describe('@xmpp/client over WebSocket', () => {
  let srv;
  const open = [];

  before(async () => {
    srv = await startServer({
      name: 'websocket',
      options: { sm_resume_timeout: '60s' },
      subscriptions: [
        ['carol@localhost', 'bob@localhost'],
        ['carol@localhost', 'alice@localhost'],
        ['alice@localhost', 'bob@localhost'],
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

  it('logs in with SCRAM, binds, and exchanges presence and messages with TCP and BOSH clients', logOnFailure(() => srv, async () => {
    const bob = await TcpPeer.start(srv, 'bob@localhost/tcp');
    open.push(bob);
    const carol = new XmppJsClient(srv.wsUrl, 'carol@localhost/ws', srv.password('carol@localhost'));
    open.push(carol);
    await carol.connect();
    assert.match(carol.saslMechanism || '', /^SCRAM-SHA-1$/, `SASL mechanism used: ${carol.saslMechanism}`);
    assert.equal(carol.jid, 'carol@localhost/ws');

    await carol.sendPresence({}, 'on WebSocket');
    const p = await bob.nextPresence(avail(carol.jid), 10000, 'carol available');
    assert.equal(p.status, 'on WebSocket');
    await carol.presences.next(avail(bob.jid), 10000, 'bob available');

    const alice = new StropheClient(srv.boshUrl, 'alice@localhost/bosh', srv.password('alice@localhost'));
    open.push(alice);
    await alice.connect();
    alice.sendPresence();
    await carol.presences.next(avail(alice.jid), 10000, 'alice available (at carol)');
    await bob.nextPresence(avail(alice.jid), 10000, 'alice available (at bob)');
    await alice.presences.next(avail(carol.jid), 10000, 'carol available (at alice)');
    await alice.presences.next(avail(bob.jid), 10000, 'bob available (at alice)');

    // TCP <-> WebSocket
    await bob.send(carol.jid, 'tcp to ws');
    let m = await carol.messages.next((x) => x.body === 'tcp to ws', 10000, 'message from bob');
    assert.equal(m.from, bob.jid);
    await carol.sendMessage('bob@localhost', 'ws to tcp \u{1F600} <&>');
    const b = await bob.nextMessage((x) => x.body.startsWith('ws to tcp'), 10000, 'message from carol');
    assert.equal(b.body, 'ws to tcp \u{1F600} <&>');
    assert.equal(b.from, carol.jid);

    // BOSH <-> WebSocket
    alice.sendMessage(carol.jid, 'bosh to ws');
    m = await carol.messages.next((x) => x.body === 'bosh to ws', 10000, 'message from alice');
    assert.equal(m.from, alice.jid);
    await carol.sendMessage(alice.jid, 'ws to bosh');
    m = await alice.messages.next((x) => x.body === 'ws to bosh', 10000, 'message from carol at alice');
    assert.equal(m.from, carol.jid);

    // a large stanza in one frame
    const big = 'x'.repeat(60000);
    await carol.sendMessage(bob.jid, big);
    const bb = await bob.nextMessage((x) => x.body.length === big.length, 10000, 'a 60 kB message');
    assert.equal(bb.body, big);

    await carol.stop();
    await bob.nextPresence(unavail(carol.jid), 10000, 'carol unavailable (at bob)');
    await alice.presences.next(unavail(carol.jid), 10000, 'carol unavailable (at alice)');
    await alice.disconnect();
    await bob.quit();
  }));

  it('resumes the session (XEP-0198) after the WebSocket is cut, with what was sent meanwhile', logOnFailure(() => srv, async () => {
    const bob = await TcpPeer.start(srv, 'bob@localhost/sm');
    open.push(bob);
    const carol = new XmppJsClient(srv.wsUrl, 'carol@localhost/sm', srv.password('carol@localhost'), { reconnect: true });
    open.push(carol);
    await carol.connect();
    const sm = carol.xmpp.streamManagement;
    assert.ok(sm.enabled && sm.id, 'stream management enabled with resumption (an id)');
    await carol.sendPresence();
    await bob.nextPresence(avail(carol.jid), 10000, 'carol available');
    await bob.send(carol.jid, 'before the cut');
    await carol.messages.next((x) => x.body === 'before the cut', 10000, 'message before the cut');

    // cut the TCP connection under the WebSocket; reconnect in 3 s
    carol.xmpp.reconnect.delay = 3000;
    const mark = srv.logMark();
    const ws = carol.rawSocket;
    assert.ok(ws && typeof ws.terminate === 'function', 'the client runs on a ws WebSocket');
    ws.terminate();
    await carol.events.next((e) => e.event === 'status' && e.status === 'disconnect', 5000, 'disconnect');
    await sleep(1000); // let the server notice
    await bob.send(carol.jid, 'while you were away');

    await carol.events.next((e) => e.event === 'resumed', 20000, 'stream management resumed');
    const m = await carol.messages.next((x) => x.body === 'while you were away', 10000, 'the message sent during the cut');
    assert.equal(m.from, bob.jid);
    if (IS_TERN) await srv.waitForLog(/resumed/, { since: mark, timeout: 5000 });
    assert.equal(String(carol.xmpp.jid), carol.jid, 'same full JID after resumption');

    // the session never ended: no unavailable presence, and it works on
    await bob.events.none((e) => e.event === 'presence' && e.from === carol.jid && e.type === 'unavailable', 200,
      'unavailable presence of the resumed session');
    await carol.sendMessage(bob.jid, 'after resumption');
    const b = await bob.nextMessage((x) => x.body === 'after resumption', 10000, 'message after resumption');
    assert.equal(b.from, carol.jid);
    await bob.send(carol.jid, 'after resumption too');
    await carol.messages.next((x) => x.body === 'after resumption too', 10000, 'message to the resumed session');
    // each message exactly once
    await sleep(300);
    assert.equal(carol.messages.all.filter((x) => x.body === 'while you were away').length, 1, 'no duplicate');

    await carol.stop();
    await bob.nextPresence(unavail(carol.jid), 10000, 'carol unavailable');
    await bob.quit();
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});
