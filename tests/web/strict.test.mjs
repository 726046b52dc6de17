// Raw protocol checks, without an XMPP library, that the BOSH (XEP-0124,
// XEP-0206) and WebSocket (RFC 6455, RFC 7395) endpoints are strict.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { logOnFailure, startServer, stopServer, killAllChildren, IS_TERN } from './harness.mjs';
import {
  closeHttpAgents, boshCreateSession, boshPost, httpRequest, parseXml, NS_HTTPBIND, NS_XBOSH,
} from './clients.mjs';
import { wsUpgrade, frame, OP, acceptFor, closeCode } from './rawws.mjs';

const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

function assertTerminate(r, condition, { allow404 = false } = {}) {
  const ok = allow404 ? [200, 404] : [200];
  assert.ok(ok.includes(r.status), `HTTP status ${r.status} (want ${ok.join(' or ')}); body: ${r.body}`);
  const body = parseXml(r.body);
  assert.equal(body.localName, 'body', `a <body/>: ${r.body}`);
  assert.equal(body.namespaceURI, NS_HTTPBIND, `in the httpbind namespace: ${r.body}`);
  assert.equal(body.getAttribute('type'), 'terminate', `type='terminate': ${r.body}`);
  assert.equal(body.getAttribute('condition'), condition, `condition='${condition}': ${r.body}`);
}

function mechanisms(root) {
  return Array.from(root.getElementsByTagNameNS(NS_SASL, 'mechanism')).map((m) => m.textContent.trim());
}

/**
 * Sends <close/> (RFC 7395 §3.6) and expects the server's <close/>, then
 * its close frame (RFC 6455 §5.5.1), then the end of the TCP connection.
 */
async function expectClose(ws) {
  ws.sendText(`<close xmlns='${NS_FRAMING}'/>`);
  const f = await ws.next(10000, '<close/>');
  assert.ok(f, 'an answer to <close/> before the connection closes');
  assert.equal(f.opcode, OP.TEXT, `a text message answers <close/>, got opcode ${f.opcode} ${f.opcode === OP.CLOSE ? `(close frame ${closeCode(f)})` : f.payload}`);
  const close = parseXml(f.payload.toString('utf8'));
  assert.equal(close.localName, 'close', `<close/> answers <close/>: ${f.payload}`);
  assert.equal(close.namespaceURI, NS_FRAMING);
  const cf = await ws.next(5000, 'close frame');
  assert.ok(cf, 'a close frame before the connection closes');
  assert.equal(cf.opcode, OP.CLOSE, 'close frame');
  assert.ok([null, 1000].includes(closeCode(cf)), `close code ${closeCode(cf)}`);
  ws.send(frame(OP.CLOSE, Buffer.from([0x03, 0xe8])));
  await ws.waitClosed(5000);
}

describe('raw BOSH and WebSocket protocol checks', () => {
  let srv;

  before(async () => {
    srv = await startServer({ name: 'strict', users: { 'alice@localhost': 'alice-secret' } });
  });

  after(async () => {
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
  });

  // ---------------------------------------------------------------- BOSH

  it('BOSH session creation: XEP-0124 attributes, stream features with SCRAM and PLAIN (http_plain_secure)', logOnFailure(() => srv, async () => {
    const { root, sid, response } = await boshCreateSession(srv, { wait: 10, hold: 1 });
    assert.match(response.headers['content-type'] || '', /^text\/xml/, 'Content-Type');
    assert.equal(root.namespaceURI, NS_HTTPBIND);
    assert.ok(sid.length >= 16, `an unguessable sid: ${sid}`);
    assert.ok(Number(root.getAttribute('wait')) <= 10 && Number(root.getAttribute('wait')) >= 1, `wait: ${root.getAttribute('wait')}`);
    assert.ok(Number(root.getAttribute('requests')) >= 2, `requests: ${root.getAttribute('requests')}`);
    assert.ok(Number(root.getAttribute('inactivity')) > 0, 'inactivity');
    assert.equal(root.getAttribute('hold'), '1', 'hold');
    assert.ok(root.getAttribute('ver'), 'ver');
    assert.equal(root.getAttribute('from'), 'localhost', 'from');
    assert.equal(root.getAttributeNS(NS_XBOSH, 'version'), '1.0', 'xmpp:version (XEP-0206)');
    const mechs = mechanisms(root);
    for (const m of ['SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN']) {
      assert.ok(mechs.includes(m), `${m} offered on the plain HTTP port; offered: ${mechs}`);
    }
    assert.ok(!mechs.some((m) => m.endsWith('-PLUS')), `no channel binding without TLS; offered: ${mechs}`);
  }));

  it('BOSH request with an unknown sid: terminate, item-not-found', logOnFailure(() => srv, async () => {
    const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='4711' sid='no-such-session-0123456789'/>`);
    // XEP-0124 §17: a terminal binding condition in a <body type='terminate'/>;
    // HTTP 404 is the legacy form of the same condition.
    assertTerminate(r, 'item-not-found', { allow404: true });
  }));

  it('BOSH request with a rid beyond the window terminates the session with item-not-found', logOnFailure(() => srv, async () => {
    const s = await boshCreateSession(srv, { wait: 2 });
    const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='${s.rid + 1000}' sid='${s.sid}'/>`);
    assertTerminate(r, 'item-not-found');
    // the session is gone: even the right rid gets item-not-found now
    const r2 = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='${s.rid}' sid='${s.sid}'/>`);
    assertTerminate(r2, 'item-not-found', { allow404: true });
  }));

  it('BOSH session creation for an unknown domain: terminate, host-unknown', logOnFailure(() => srv, async () => {
    const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' ` +
      `hold='1' rid='100' to='no-such-domain.example' ver='1.11' wait='5' xml:lang='en' xmpp:version='1.0'/>`);
    assertTerminate(r, 'host-unknown');
  }));

  it('BOSH request that is not a <body/>: bad-request', logOnFailure(() => srv, async () => {
    const r = await boshPost(srv, `<iq xmlns='jabber:client' type='get' id='x'/>`);
    if (r.status === 400) return; // the legacy form
    assertTerminate(r, 'bad-request');
  }));

  it('BOSH request with malformed XML: bad-request', logOnFailure(() => srv, async () => {
    const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' rid='1' to='localhost' wait='5' hold='1'><unclosed></body>`);
    if (r.status === 400) return;
    assertTerminate(r, 'bad-request');
  }));

  it('unknown HTTP path: 404', logOnFailure(() => srv, async () => {
    const r = await httpRequest(`${srv.httpBase}/no-such-path`);
    assert.equal(r.status, 404);
  }));

  // ---------------------------------------------------------------- WebSocket

  it('WebSocket upgrade without the xmpp subprotocol is refused (RFC 7395 §3.2)', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath, protocol: null });
    r.conn.destroy();
    assert.notEqual(r.status, 101, `upgraded without a subprotocol: ${r.statusLine} ${JSON.stringify(r.headers)}`);
    assert.equal(r.status, 400, r.statusLine);
  }));

  it('WebSocket upgrade offering only other subprotocols is refused', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath, protocol: 'chat, mqtt' });
    r.conn.destroy();
    assert.notEqual(r.status, 101, `upgraded: ${r.statusLine} ${JSON.stringify(r.headers)}`);
    assert.equal(r.status, 400, r.statusLine);
  }));

  it('WebSocket: handshake, <open/>, stream features, ping, fragmented message, restart, <close/>', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath, protocol: 'foo, xmpp' });
    const ws = r.conn;
    try {
      assert.equal(r.status, 101, r.statusLine);
      assert.equal((r.headers['sec-websocket-protocol'] || '').toLowerCase(), 'xmpp', 'Sec-WebSocket-Protocol: xmpp');
      assert.equal(r.headers['sec-websocket-accept'], acceptFor(r.key), 'Sec-WebSocket-Accept');
      assert.match(r.headers.upgrade || '', /^websocket$/i);

      ws.sendText(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
      const open = parseXml(await ws.nextText(10000, '<open/>'));
      assert.equal(open.localName, 'open');
      assert.equal(open.namespaceURI, NS_FRAMING);
      assert.equal(open.getAttribute('from'), 'localhost');
      assert.equal(open.getAttribute('version'), '1.0');
      assert.ok(open.getAttribute('id'), 'stream id');
      const features = parseXml(await ws.nextText(10000, '<stream:features/>'));
      assert.equal(features.localName, 'features');
      const mechs = mechanisms(features);
      for (const m of ['SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN']) {
        assert.ok(mechs.includes(m), `${m} offered; offered: ${mechs}`);
      }

      // a ping is answered with a pong carrying the same data
      ws.send(frame(OP.PING, 'are you there'));
      const pong = await ws.next(5000, 'pong');
      assert.ok(pong, 'pong');
      assert.equal(pong.opcode, OP.PONG);
      assert.equal(pong.payload.toString(), 'are you there');
      assert.equal(pong.masked, false, 'server frames are not masked');

      // a message in two fragments counts as one: a SASL PLAIN auth
      const auth = `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0alice-secret').toString('base64')}</auth>`;
      ws.send(frame(OP.TEXT, auth.slice(0, 20), { fin: false }));
      ws.send(frame(OP.CONT, auth.slice(20), { fin: true }));
      const success = parseXml(await ws.nextText(10000, '<success/>'));
      assert.equal(success.localName, 'success', `SASL answer: ${success.localName}`);

      // stream restart: a new <open/>, features with resource binding
      ws.sendText(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
      const open2 = parseXml(await ws.nextText(10000, '<open/> after the restart'));
      assert.equal(open2.localName, 'open');
      const features2 = parseXml(await ws.nextText(10000, 'features after the restart'));
      assert.ok(features2.getElementsByTagNameNS('urn:ietf:params:xml:ns:xmpp-bind', 'bind').length, 'bind offered');

      await expectClose(ws);
    } finally {
      ws.destroy();
    }
  }));

  it('WebSocket: <close/> right after SASL success (instead of the restart) is answered with <close/>', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath });
    const ws = r.conn;
    try {
      assert.equal(r.status, 101, r.statusLine);
      ws.sendText(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
      await ws.nextText(10000, '<open/>');
      await ws.nextText(10000, 'features');
      ws.sendText(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0alice-secret').toString('base64')}</auth>`);
      const success = parseXml(await ws.nextText(10000, '<success/>'));
      assert.equal(success.localName, 'success');
      // RFC 7395 §3.6: either side may close the stream at any time
      await expectClose(ws);
    } finally {
      ws.destroy();
    }
  }));

  it('WebSocket: an unmasked client frame gets close code 1002 (RFC 6455 §5.1)', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath });
    const ws = r.conn;
    try {
      assert.equal(r.status, 101, r.statusLine);
      ws.send(frame(OP.TEXT, `<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`, { mask: false }));
      let f;
      for (;;) {
        f = await ws.next(10000, 'close frame');
        assert.ok(f, 'a close frame before the connection closes');
        if (f.opcode === OP.CLOSE) break;
        assert.notEqual(f.opcode, OP.TEXT, `the unmasked frame was processed: ${f.payload}`);
      }
      assert.equal(closeCode(f), 1002, `close code ${closeCode(f)}`);
      await ws.waitClosed(5000);
    } finally {
      ws.destroy();
    }
  }));

  // last: an oversized request is the most hostile input here
  it('BOSH request larger than http_max_body: HTTP 413', logOnFailure(() => srv, async () => {
    const big = `<body xmlns='${NS_HTTPBIND}' rid='1' sid='x'><message xmlns='jabber:client'><body>${'x'.repeat(300 * 1024)}</body></message></body>`;
    let r;
    try {
      r = await boshPost(srv, big);
    } catch (e) {
      assert.fail(`no HTTP answer to an oversized body (${e.message})`);
    }
    assert.equal(r.status, 413, `HTTP ${r.status}: ${r.body.slice(0, 200)}`);
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});
