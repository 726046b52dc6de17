// The HTTP side around BOSH and WebSocket: XEP-0156 discovery
// (host-meta, host-meta.json), CORS for browsers, the WebSocket Origin
// check, and the HTTPS port.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { logOnFailure, startServer, stopServer, killAllChildren, IS_TERN } from './harness.mjs';
import {
  closeHttpAgents, httpRequest, parseXml, NS_HTTPBIND, NS_XBOSH, XmppJsClient,
} from './clients.mjs';
import { wsUpgrade } from './rawws.mjs';

const NS_XRD = 'http://docs.oasis-open.org/ns/xri/xrd-1.0';
const REL_BOSH = 'urn:xmpp:alt-connections:xbosh';
const REL_WS = 'urn:xmpp:alt-connections:websocket';
const ORIGIN = 'http://page.example:8080';

function header(r, name) {
  return r.headers[name.toLowerCase()];
}

function listTokens(v) {
  return (v || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/** Checks that an advertised URL points at a listener this server has. */
function assertServedUrl(srv, href, kind) {
  const u = new URL(href);
  const want = kind === 'bosh' ? srv.boshPath : srv.wsPath;
  assert.equal(u.pathname, want, `${kind} URL path: ${href}`);
  const plain = kind === 'bosh' ? 'http:' : 'ws:';
  const secure = kind === 'bosh' ? 'https:' : 'wss:';
  const port = Number(u.port || (u.protocol === plain ? 80 : 443));
  const ok = (u.protocol === plain && port === srv.httpPort) ||
    (u.protocol === secure && srv.options.https_port !== '0' && port === srv.httpsPort);
  assert.ok(ok, `${kind} URL ${href} is not served by this server (http ${srv.httpPort}, https ${srv.options.https_port !== '0' ? srv.httpsPort : 'off'})`);
  return u;
}

function httpsRequest(url, { method = 'GET', headers = {}, body = null, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body == null ? null : Buffer.from(body, 'utf8');
    const h = { Connection: 'close', ...headers };
    if (data) h['Content-Length'] = data.length;
    const req = https.request(url, { method, headers: h, agent: false, rejectUnauthorized: false, servername: 'localhost' }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'),
        cert: res.socket.getPeerCertificate ? res.socket.getPeerCertificate() : null,
      }));
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`HTTPS ${method} ${url}: no answer within ${timeout} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

describe('XEP-0156 discovery and CORS', () => {
  let srv;

  before(async () => {
    srv = await startServer({ name: 'http', users: { 'carol@localhost': 'carol-secret' } });
  });

  after(async () => {
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
  });

  it('/.well-known/host-meta (XRD) lists the BOSH and WebSocket URLs, with CORS', logOnFailure(() => srv, async () => {
    const r = await httpRequest(`${srv.httpBase}/.well-known/host-meta`, { headers: { Origin: ORIGIN } });
    assert.equal(r.status, 200, r.body);
    assert.match(header(r, 'content-type') || '', /^application\/xrd\+xml/, 'Content-Type');
    const acao = header(r, 'access-control-allow-origin');
    assert.ok(acao === '*' || acao === ORIGIN, `Access-Control-Allow-Origin: ${acao}`);
    const xrd = parseXml(r.body);
    assert.equal(xrd.localName, 'XRD');
    assert.equal(xrd.namespaceURI, NS_XRD);
    const links = Array.from(xrd.getElementsByTagNameNS(NS_XRD, 'Link'))
      .map((l) => ({ rel: l.getAttribute('rel'), href: l.getAttribute('href') }));
    const bosh = links.filter((l) => l.rel === REL_BOSH);
    const ws = links.filter((l) => l.rel === REL_WS);
    assert.ok(bosh.length >= 1, `a BOSH link: ${JSON.stringify(links)}`);
    assert.ok(ws.length >= 1, `a WebSocket link: ${JSON.stringify(links)}`);
    for (const l of bosh) assertServedUrl(srv, l.href, 'bosh');
    for (const l of ws) assertServedUrl(srv, l.href, 'ws');
  }));

  it('/.well-known/host-meta.json lists the same URLs, and they work', logOnFailure(() => srv, async () => {
    const r = await httpRequest(`${srv.httpBase}/.well-known/host-meta.json`, { headers: { Origin: ORIGIN } });
    assert.equal(r.status, 200, r.body);
    assert.match(header(r, 'content-type') || '', /^application\/(jrd\+)?json/, 'Content-Type');
    const acao = header(r, 'access-control-allow-origin');
    assert.ok(acao === '*' || acao === ORIGIN, `Access-Control-Allow-Origin: ${acao}`);
    const j = JSON.parse(r.body);
    assert.ok(Array.isArray(j.links), `links: ${r.body}`);
    const bosh = j.links.find((l) => l.rel === REL_BOSH);
    const ws = j.links.find((l) => l.rel === REL_WS);
    assert.ok(bosh, `a BOSH link: ${r.body}`);
    assert.ok(ws, `a WebSocket link: ${r.body}`);
    const bu = assertServedUrl(srv, bosh.href, 'bosh');
    const wu = assertServedUrl(srv, ws.href, 'ws');

    // the advertised BOSH URL takes a session creation request
    const u = new URL(bu);
    u.hostname = '127.0.0.1';
    const cr = await httpRequest(u.href, {
      method: 'POST', headers: { 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' hold='1' ` +
        `rid='1' to='localhost' ver='1.11' wait='5' xml:lang='en' xmpp:version='1.0'/>`,
    });
    assert.equal(cr.status, 200, cr.body);
    assert.ok(parseXml(cr.body).getAttribute('sid'), `a session: ${cr.body}`);

    // and a client logs in at the advertised WebSocket URL
    const w = new URL(wu);
    w.hostname = '127.0.0.1';
    const carol = new XmppJsClient(w.href, 'carol@localhost/discovered', 'carol-secret');
    try {
      await carol.connect();
      assert.equal(carol.jid, 'carol@localhost/discovered');
    } finally {
      await carol.stop();
    }
  }));

  it('CORS preflight (OPTIONS) on the BOSH path allows POST with Content-Type', logOnFailure(() => srv, async () => {
    const r = await httpRequest(srv.boshUrl, {
      method: 'OPTIONS',
      headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.ok([200, 204].includes(r.status), `preflight status ${r.status}`);
    const acao = header(r, 'access-control-allow-origin');
    assert.ok(acao === '*' || acao === ORIGIN, `Access-Control-Allow-Origin: ${acao}`);
    assert.ok(listTokens(header(r, 'access-control-allow-methods')).includes('post'),
      `Access-Control-Allow-Methods: ${header(r, 'access-control-allow-methods')}`);
    const allowHeaders = listTokens(header(r, 'access-control-allow-headers'));
    assert.ok(allowHeaders.includes('content-type') || allowHeaders.includes('*'),
      `Access-Control-Allow-Headers: ${header(r, 'access-control-allow-headers')}`);
  }));

  it('BOSH responses carry Access-Control-Allow-Origin for a cross-origin request', logOnFailure(() => srv, async () => {
    const r = await httpRequest(srv.boshUrl, {
      method: 'POST',
      headers: { Origin: ORIGIN, 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' hold='1' ` +
        `rid='1' to='localhost' ver='1.11' wait='5' xml:lang='en' xmpp:version='1.0'/>`,
    });
    assert.equal(r.status, 200, r.body);
    const acao = header(r, 'access-control-allow-origin');
    assert.ok(acao === '*' || acao === ORIGIN, `Access-Control-Allow-Origin: ${acao}`);
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});

describe('cors_origins restricted to one origin', { skip: !IS_TERN && 'Tern options' }, () => {
  const GOOD = 'https://chat.example.org';
  const EVIL = 'https://evil.example.net';
  let srv;

  before(async () => {
    srv = await startServer({ name: 'cors', users: { 'carol@localhost': 'carol-secret' }, options: { cors_origins: GOOD } });
  });

  after(async () => {
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
  });

  const preflight = (origin) => httpRequest(srv.boshUrl, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });

  it('the listed origin gets CORS headers naming it', logOnFailure(() => srv, async () => {
    const r = await preflight(GOOD);
    assert.ok([200, 204].includes(r.status), `preflight status ${r.status}`);
    assert.equal(header(r, 'access-control-allow-origin'), GOOD);
    assert.ok(listTokens(header(r, 'vary')).includes('origin'), `Vary: Origin (got ${header(r, 'vary')})`);
  }));

  it('another origin gets no Access-Control-Allow-Origin that admits it', logOnFailure(() => srv, async () => {
    const r = await preflight(EVIL);
    const acao = header(r, 'access-control-allow-origin');
    assert.ok(acao !== '*' && acao !== EVIL, `Access-Control-Allow-Origin: ${acao} for ${EVIL}`);
    const post = await httpRequest(srv.boshUrl, {
      method: 'POST', headers: { Origin: EVIL, 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' hold='1' rid='1' to='localhost' ver='1.11' wait='5' xmpp:version='1.0'/>`,
    });
    const acao2 = header(post, 'access-control-allow-origin');
    assert.ok(acao2 !== '*' && acao2 !== EVIL, `BOSH POST: Access-Control-Allow-Origin: ${acao2} for ${EVIL}`);
  }));

  it('WebSocket Origin check: the listed origin is upgraded, another is refused', logOnFailure(() => srv, async () => {
    const good = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath, origin: GOOD });
    good.conn.destroy();
    assert.equal(good.status, 101, `origin ${GOOD}: ${good.statusLine}`);
    const evil = await wsUpgrade({ port: srv.httpPort, path: srv.wsPath, origin: EVIL });
    evil.conn.destroy();
    assert.notEqual(evil.status, 101, `origin ${EVIL} was upgraded`);
    assert.ok(evil.status >= 400 && evil.status < 500, `origin ${EVIL}: ${evil.statusLine}`);
  }));

  it('a non-browser client (no Origin header) still logs in over WebSocket', logOnFailure(() => srv, async () => {
    const carol = new XmppJsClient(srv.wsUrl, 'carol@localhost/nobrowser', 'carol-secret');
    try {
      await carol.connect();
    } finally {
      await carol.stop();
    }
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});

describe('HTTPS port', { skip: !IS_TERN && 'Tern options' }, () => {
  let srv;

  before(async () => {
    srv = await startServer({ name: 'https', users: { 'carol@localhost': 'carol-secret' }, options: { https_port: 'auto' } });
  });

  after(async () => {
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
  });

  it('serves host-meta and BOSH over TLS with a self-signed certificate', logOnFailure(() => srv, async () => {
    const r = await httpsRequest(`${srv.httpsBase}/.well-known/host-meta.json`);
    assert.equal(r.status, 200, r.body);
    assert.ok(r.cert && r.cert.subject, 'a server certificate');
    const j = JSON.parse(r.body);
    const bosh = j.links.filter((l) => l.rel === REL_BOSH);
    assert.ok(bosh.length >= 1, r.body);
    for (const l of bosh) assertServedUrl(srv, l.href, 'bosh');
    for (const l of j.links.filter((x) => x.rel === REL_WS)) assertServedUrl(srv, l.href, 'ws');

    const cr = await httpsRequest(srv.httpsBase + srv.boshPath, {
      method: 'POST', headers: { 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' hold='1' ` +
        `rid='7' to='localhost' ver='1.11' wait='5' xml:lang='en' xmpp:version='1.0'/>`,
    });
    assert.equal(cr.status, 200, cr.body);
    const root = parseXml(cr.body);
    assert.ok(root.getAttribute('sid'), cr.body);
    const mechs = Array.from(root.getElementsByTagNameNS('urn:ietf:params:xml:ns:xmpp-sasl', 'mechanism')).map((m) => m.textContent);
    assert.ok(mechs.includes('SCRAM-SHA-256'), `SCRAM-SHA-256 over HTTPS: ${mechs}`);
  }));

  it('upgrades a WebSocket over TLS (wss)', logOnFailure(() => srv, async () => {
    const r = await wsUpgrade({ port: srv.httpsPort, path: srv.wsPath, useTls: true });
    try {
      assert.equal(r.status, 101, r.statusLine);
      r.conn.sendText("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
      const open = parseXml(await r.conn.nextText(10000, '<open/>'));
      assert.equal(open.localName, 'open');
    } finally {
      r.conn.destroy();
    }
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});
