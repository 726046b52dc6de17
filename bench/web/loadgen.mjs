#!/usr/bin/env node
// Web transport load generator for bench/run's `web` scenario: N users log
// in over XMPP-over-WebSocket (RFC 7395, half of them) and BOSH (XEP-0124 /
// XEP-0206, the other half) with SASL PLAIN, bind and send initial
// presence; the sessions are then held idle while the server's memory is
// read, and finally every WebSocket user exchanges M messages with a BOSH
// partner (both directions) at a fixed total rate.
//
//   node bench/web/loadgen.mjs --port P [--users 300] [--messages 20]
//        [--rate 500] [--server-pid PID] [--json FILE] ...
//
// Node built-ins only, plus the `ws` package of tests/web/node_modules
// (scripts/web-deps.sh installs it). The XML parser below is deliberately
// minimal: it handles what XMPP servers send (elements, attributes, text,
// the five entities and character references, CDATA, comments, the XML
// declaration) and nothing else. See bench/README.md, "web".

import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../../tests/web/package.json', import.meta.url));
let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  console.error('web loadgen: the `ws` package is missing from tests/web/node_modules: run scripts/web-deps.sh');
  process.exit(2);
}

// ------------------------------------------------------------------ options

const USAGE = `usage: loadgen.mjs --port P [options]
  --host H            server address (127.0.0.1)
  --port P            plain HTTP port serving BOSH and WebSocket (required)
  --bosh-path PATH    BOSH endpoint (/http-bind)
  --ws-path PATH      WebSocket endpoint (/xmpp-websocket)
  --domain D          XMPP domain (localhost)
  --users N           users user0..userN-1; even ones use WebSocket, odd ones BOSH (300)
  --password PW       password of every user (pw)
  --mech M            plain (default) or scram-sha-1
  --concurrency C     logins in flight (50)
  --timeout S         a login not bound after S seconds fails (30)
  --settle S          seconds between the last login and the memory reading (5)
  --messages M        messages each user sends to its partner (20)
  --rate R            total messages per second offered (500)
  --drain S           after sending, wait at most S seconds for messages in flight (5)
  --wait S            BOSH wait attribute (60)
  --server-pid PID    read server memory and CPU from /proc/PID
  --json FILE         write the figures as JSON`;

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1', port: 0, boshPath: '/http-bind', wsPath: '/xmpp-websocket', domain: 'localhost',
    users: 300, password: 'pw', mech: 'plain', concurrency: 50, timeout: 30, settle: 5, messages: 20, rate: 500,
    drain: 5, wait: 60, serverPid: 0, json: null,
  };
  const num = new Set(['port', 'users', 'concurrency', 'timeout', 'settle', 'messages', 'rate', 'drain',
    'wait', 'serverPid']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    if (!a.startsWith('--') || i + 1 >= argv.length) { console.error(USAGE); process.exit(2); }
    const key = a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in o)) { console.error(`unknown option ${a}\n${USAGE}`); process.exit(2); }
    const v = argv[++i];
    o[key] = num.has(key) ? Number(v) : v;
    if (num.has(key) && !Number.isFinite(o[key])) { console.error(`bad number for ${a}: ${v}`); process.exit(2); }
  }
  o.mech = o.mech.toLowerCase();
  if (!['plain', 'scram-sha-1'].includes(o.mech)) { console.error(`unsupported --mech ${o.mech}\n${USAGE}`); process.exit(2); }
  if (!o.port || o.users < 2 || o.messages < 0 || o.rate <= 0 || o.concurrency < 1) {
    console.error(USAGE);
    process.exit(2);
  }
  return o;
}

const opt = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------ XML

const ENT = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
function unescapeXml(s) {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENT[e] ?? m;
  });
}

class El {
  constructor(name, attrs) {
    this.name = name;
    const c = name.indexOf(':');
    this.local = c < 0 ? name : name.slice(c + 1);
    this.attrs = attrs;
    this.children = [];
    this.text = '';
  }
  child(local) { return this.children.find((c) => c.local === local) || null; }
}

const TOKEN = /<!\[CDATA\[([\s\S]*?)\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<\/([^\s>]+)\s*>|<([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/g;
const ATTR = /([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

/** Parses a complete XML document or fragment; returns the top-level elements. */
function parseXml(str) {
  const top = [];
  const stack = [];
  TOKEN.lastIndex = 0;
  let m;
  while ((m = TOKEN.exec(str)) !== null) {
    if (m[3] !== undefined) {
      const attrs = {};
      if (m[4]) {
        ATTR.lastIndex = 0;
        let a;
        while ((a = ATTR.exec(m[4])) !== null) attrs[a[1]] = unescapeXml(a[2] ?? a[3]);
      }
      const el = new El(m[3], attrs);
      if (stack.length) stack[stack.length - 1].children.push(el); else top.push(el);
      if (!m[5]) stack.push(el);
    } else if (m[2] !== undefined) {
      const el = stack.pop();
      if (!el || el.name !== m[2]) throw new Error(`XML: unexpected </${m[2]}>`);
    } else if (m[1] !== undefined) {
      if (stack.length) stack[stack.length - 1].text += m[1];
    } else if (m[6] !== undefined) {
      if (stack.length) stack[stack.length - 1].text += unescapeXml(m[6]);
    }
  }
  if (stack.length) throw new Error(`XML: <${stack[stack.length - 1].name}> not closed`);
  return top;
}

const esc = (s) => String(s).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);

// ------------------------------------------------------------------ SASL

const b64 = (s) => Buffer.from(s).toString('base64');
const hmac = (key, data) => crypto.createHmac('sha1', key).update(data).digest();
const saltedCache = new Map(); // PBKDF2 once per (salt, iterations), as the C loadgen does

/** SCRAM-SHA-1 (RFC 5802) client, no channel binding. */
class Scram {
  constructor(user, password) {
    this.password = password;
    this.nonce = crypto.randomBytes(18).toString('base64');
    this.bare = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.nonce}`;
  }
  first() { return b64(`n,,${this.bare}`); }
  /** The client-final message for a server-first challenge, or throws. */
  final(challengeB64) {
    const serverFirst = Buffer.from(challengeB64, 'base64').toString();
    const f = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    if (!f.r || !f.r.startsWith(this.nonce) || !f.s || !(Number(f.i) > 0)) throw new Error(`bad server-first ${serverFirst}`);
    const key = `${f.s}/${f.i}`;
    let salted = saltedCache.get(key);
    if (!salted) {
      salted = crypto.pbkdf2Sync(this.password, Buffer.from(f.s, 'base64'), Number(f.i), 20, 'sha1');
      saltedCache.set(key, salted);
    }
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = crypto.createHash('sha1').update(clientKey).digest();
    const withoutProof = `c=biws,r=${f.r}`;
    const authMessage = `${this.bare},${serverFirst},${withoutProof}`;
    const sig = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i] ^ sig[i];
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64');
    return b64(`${withoutProof},p=${proof.toString('base64')}`);
  }
  /** True when the server's final message (in <success/>) proves the key. */
  verify(successB64) {
    const m = Buffer.from(successB64 || '', 'base64').toString().match(/(?:^|,)v=([^,]+)/);
    return !!m && m[1] === this.serverSignature;
  }
}

// ------------------------------------------------------------------ /proc

let clkTck = 100;
try { clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100; } catch { /* 100 */ }

/** Server utime+stime in seconds (all threads), or null. */
function serverCpu() {
  if (!opt.serverPid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${opt.serverPid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5); f[0] is field 3.
    return (Number(f[11]) + Number(f[12])) / clkTck;
  } catch { return null; }
}

/** Server {rss_kb, pss_kb} or null. */
function serverMem() {
  if (!opt.serverPid) return null;
  const read = (file, key) => {
    try {
      const m = fs.readFileSync(`/proc/${opt.serverPid}/${file}`, 'utf8').match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : null;
    } catch { return null; }
  };
  return { rss_kb: read('status', 'VmRSS'), pss_kb: read('smaps_rollup', 'Pss') };
}

// ------------------------------------------------------------------ figures

const now = () => performance.now(); // ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
function summary(values) {
  const s = Float64Array.from(values).sort();
  if (!s.length) return { n: 0 };
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, min: s[0], p50: pct(s, 50), p99: pct(s, 99), p999: pct(s, 99.9), max: s[s.length - 1], mean: sum / s.length };
}

const errors = {
  login_failed: 0, login_timeout: 0, auth_failed: 0, stream_error: 0, http_error: 0, bosh_terminate: 0,
  ws_closed: 0, xml_error: 0, unexpected_close: 0,
};
const errorSamples = [];
function noteError(kind, detail) {
  errors[kind] = (errors[kind] || 0) + 1;
  if (errorSamples.length < 10) errorSamples.push(`${kind}: ${detail}`);
}

// ------------------------------------------------------------------ messages

let boshRequests = 0; // HTTP requests made by all BOSH sessions
const stats = { sent: 0, delivered: 0, msgErrors: 0, lat: { ws_to_bosh: [], bosh_to_ws: [] } };
let seen = null; // Uint8Array by message seq, against duplicates

// ------------------------------------------------------------------ session

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';
const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
const NS_XBOSH = 'urn:xmpp:xbosh';

/** One user: the XMPP login state machine over a transport. */
class Session {
  constructor(index, kind) {
    this.index = index;
    this.kind = kind; // 'ws' | 'bosh'
    this.user = `user${index}`;
    this.state = 'new';
    this.jid = null;
    this.closing = false;
    this.transport = kind === 'ws' ? new WsTransport(this) : new BoshTransport(this);
  }

  get online() { return this.state === 'online' && !this.transport.dead; }

  /** Resolves with the login time in ms at bind (and session, if required). */
  login() {
    return new Promise((resolve, reject) => {
      this.t0 = now();
      this._resolve = resolve;
      this._reject = reject;
      this.timer = setTimeout(() => this.fail('login_timeout', `${this.user}: not bound after ${opt.timeout} s in state ${this.state}`), opt.timeout * 1000);
      this.state = 'features1';
      this.transport.start();
    });
  }

  fail(kind, detail) {
    const wasOnline = this.state === 'online';
    this.state = 'failed';
    this.transport.abort();
    if (this._reject) {
      clearTimeout(this.timer);
      const rej = this._reject;
      this._resolve = this._reject = null;
      noteError(kind, detail);
      rej(new Error(detail));
    } else if (!this.closing) {
      noteError(wasOnline ? 'unexpected_close' : kind, detail);
    }
  }

  send(xml) { this.transport.send(xml); }

  onStanza(el) {
    switch (el.local) {
      case 'open':
        return;
      case 'close':
        if (!this.closing) this.fail('unexpected_close', `${this.user}: server closed the stream`);
        return;
      case 'error':
        if (el.name === 'stream:error' || el.attrs.xmlns === 'http://etherx.jabber.org/streams' || this.state !== 'online') {
          this.fail('stream_error', `${this.user}: stream error ${el.children.map((c) => c.local).join(',')}`);
          return;
        }
        return;
      case 'features':
        if (this.state === 'features1') {
          const mechs = el.child('mechanisms');
          const offered = mechs ? mechs.children.map((c) => c.text.trim()) : [];
          const mech = opt.mech.toUpperCase();
          if (!offered.includes(mech)) {
            this.fail('auth_failed', `${this.user}: ${mech} not offered (mechanisms: ${offered.join(' ') || 'none'})`);
            return;
          }
          let initial;
          if (mech === 'PLAIN') {
            initial = b64(`\0${this.user}\0${opt.password}`);
          } else {
            this.scram = new Scram(this.user, opt.password);
            initial = this.scram.first();
          }
          this.state = 'auth';
          this.send(`<auth xmlns='${NS_SASL}' mechanism='${mech}'>${initial}</auth>`);
        } else if (this.state === 'features2') {
          const sess = el.child('session');
          this.needSession = !!sess && !sess.child('optional');
          this.state = 'bind';
          this.send(`<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='${NS_BIND}'><resource>web${this.index}</resource></bind></iq>`);
        }
        return;
      case 'challenge':
        if (this.state === 'auth' && this.scram && !this.scramSent) {
          let reply;
          try { reply = this.scram.final(el.text.trim()); } catch (e) { this.fail('auth_failed', `${this.user}: ${e.message}`); return; }
          this.scramSent = true;
          this.send(`<response xmlns='${NS_SASL}'>${reply}</response>`);
        } else {
          this.fail('auth_failed', `${this.user}: unexpected SASL challenge`);
        }
        return;
      case 'success':
        if (this.scram && !this.scram.verify(el.text.trim())) {
          this.fail('auth_failed', `${this.user}: SCRAM server signature does not verify`);
          return;
        }
        if (this.state === 'auth') {
          this.state = 'features2';
          this.transport.restart();
        }
        return;
      case 'failure':
        this.fail('auth_failed', `${this.user}: SASL failure ${el.children.map((c) => c.local).join(',')}`);
        return;
      case 'iq':
        return this.onIq(el);
      case 'message':
        return this.onMessage(el);
      default:
    }
  }

  onIq(el) {
    const type = el.attrs.type;
    if (this.state === 'bind' && el.attrs.id === 'bind1') {
      if (type !== 'result') { this.fail('login_failed', `${this.user}: bind ${type}`); return; }
      const jid = el.child('bind')?.child('jid');
      this.jid = jid ? jid.text.trim() : `${this.user}@${opt.domain}/web${this.index}`;
      if (this.needSession) {
        this.state = 'session';
        this.send(`<iq xmlns='jabber:client' type='set' id='sess1'><session xmlns='${NS_SESSION}'/></iq>`);
      } else {
        this.bound();
      }
      return;
    }
    if (this.state === 'session' && el.attrs.id === 'sess1') {
      if (type !== 'result') { this.fail('login_failed', `${this.user}: session ${type}`); return; }
      this.bound();
      return;
    }
    if (type === 'get' || type === 'set') {
      // XEP-0199 pings, roster pushes and the like: an empty result.
      const to = el.attrs.from ? ` to='${esc(el.attrs.from)}'` : '';
      this.send(`<iq xmlns='jabber:client' type='result' id='${esc(el.attrs.id || '')}'${to}/>`);
    }
  }

  bound() {
    this.state = 'online';
    clearTimeout(this.timer);
    const dt = now() - this.t0;
    this.send(`<presence xmlns='jabber:client'/>`);
    const res = this._resolve;
    this._resolve = this._reject = null;
    res(dt);
  }

  onMessage(el) {
    if (el.attrs.type === 'error') { stats.msgErrors++; return; }
    const body = el.child('body');
    if (!body) return;
    const parts = body.text.split(' ');
    if (parts[0] !== 'lg' || parts.length < 3) return;
    const stamp = Number(parts[1]);
    const seq = Number(parts[2]);
    if (!seen || seq >= seen.length || seen[seq]) return;
    seen[seq] = 1;
    stats.delivered++;
    (this.kind === 'bosh' ? stats.lat.ws_to_bosh : stats.lat.bosh_to_ws).push(now() * 1000 - stamp);
  }

  sendMessage(to, seq) {
    const stamp = Math.round(now() * 1000);
    this.send(`<message xmlns='jabber:client' type='chat' to='${esc(to)}' id='m${seq}'><body>lg ${stamp} ${seq}</body></message>`);
    stats.sent++;
  }

  /** Ends the session politely; resolves when done or after a bound. */
  close() {
    this.closing = true;
    return this.transport.close();
  }
}

/** XMPP over WebSocket (RFC 7395), one `ws` connection. */
class WsTransport {
  constructor(sess) { this.sess = sess; this.dead = false; this.ws = null; }

  url() { return `ws://${opt.host}:${opt.port}${opt.wsPath}`; }

  start() {
    const ws = new WebSocket(this.url(), 'xmpp', { perMessageDeflate: false, handshakeTimeout: opt.timeout * 1000 });
    this.ws = ws;
    ws.on('open', () => {
      if (ws.protocol !== 'xmpp') { this.sess.fail('login_failed', `${this.sess.user}: WebSocket subprotocol '${ws.protocol}'`); return; }
      this.sendOpen();
    });
    ws.on('message', (data) => {
      let els;
      try { els = parseXml(data.toString('utf8')); } catch (e) { noteError('xml_error', `${e.message}: ${data.toString().slice(0, 200)}`); return; }
      for (const el of els) this.sess.onStanza(el);
    });
    ws.on('error', (e) => { if (!this.dead) this.sess.fail('login_failed', `${this.sess.user}: WebSocket ${e.message}`); });
    ws.on('close', (code) => {
      const was = this.dead;
      this.dead = true;
      if (!was && !this.sess.closing) {
        if (this.sess.state === 'online') noteError('ws_closed', `${this.sess.user}: WebSocket closed (${code})`);
        else this.sess.fail('login_failed', `${this.sess.user}: WebSocket closed (${code}) in state ${this.sess.state}`);
      }
      if (this._closed) this._closed();
    });
  }

  sendOpen() { this.send(`<open xmlns='${NS_FRAMING}' to='${esc(opt.domain)}' version='1.0'/>`); }

  send(xml) { if (!this.dead && this.ws.readyState === WebSocket.OPEN) this.ws.send(xml); }

  restart() { this.sendOpen(); }

  abort() { this.dead = true; if (this.ws) this.ws.terminate(); }

  close() {
    if (this.dead || !this.ws) return Promise.resolve();
    return new Promise((resolve) => {
      this._closed = resolve;
      this.send(`<close xmlns='${NS_FRAMING}'/>`);
      setTimeout(() => { this.ws.close(1000); }, 200);
      setTimeout(() => { this.abort(); resolve(); }, 2000);
    });
  }
}

/** BOSH (XEP-0124/0206): at most `requests` (2) HTTP requests in flight on
 * a private keep-alive agent, one always held by the server as the long
 * poll, stanzas queued while both are out. */
class BoshTransport {
  constructor(sess) {
    this.sess = sess;
    this.dead = false;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    this.rid = 1000000 + Math.floor(Math.random() * 1e9);
    this.sid = null;
    this.requests = 2;
    this.inflight = 0;
    this.queue = [];
    this.restartPending = false;
  }

  start() {
    this.post(`<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' hold='1'`
      + ` rid='${this.rid++}' to='${esc(opt.domain)}' ver='1.6' wait='${opt.wait}' xml:lang='en' xmpp:version='1.0'/>`);
  }

  post(body, retried = false) {
    this.inflight++;
    boshRequests++;
    const data = Buffer.from(body, 'utf8');
    const req = http.request({
      host: opt.host, port: opt.port, path: opt.boshPath, method: 'POST', agent: this.agent,
      headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': data.length },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        this.inflight--;
        if (this.dead) return;
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          noteError('http_error', `${this.sess.user}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
          this.sess.fail('login_failed', `${this.sess.user}: BOSH HTTP ${res.statusCode}`);
          return;
        }
        this.onBody(text);
      });
      res.on('error', (e) => this.onRequestError(body, retried, e));
    });
    req.setTimeout((opt.wait + 30) * 1000, () => req.destroy(new Error('request timeout')));
    req.on('error', (e) => this.onRequestError(body, retried, e));
    req.end(data);
  }

  onRequestError(body, retried, e) {
    if (this.dead) return;
    this.inflight--;
    // A keep-alive socket the server had just closed: the same rid again
    // is what XEP-0124 §14.3 allows.
    if (!retried && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) { this.post(body, true); return; }
    noteError('http_error', `${this.sess.user}: ${e.message}`);
    this.sess.fail('login_failed', `${this.sess.user}: BOSH request failed: ${e.message}`);
  }

  onBody(text) {
    let els;
    try { els = parseXml(text); } catch (e) { noteError('xml_error', `${e.message}: ${text.slice(0, 200)}`); return; }
    const body = els.find((e) => e.local === 'body');
    if (!body) { noteError('xml_error', `no <body/>: ${text.slice(0, 200)}`); return; }
    if (!this.sid) {
      this.sid = body.attrs.sid;
      if (!this.sid) { this.sess.fail('login_failed', `${this.sess.user}: BOSH: no sid in ${text.slice(0, 200)}`); return; }
      const r = Number(body.attrs.requests);
      if (r >= 1) this.requests = Math.min(2, r);
    }
    if (body.attrs.type === 'terminate') {
      this.dead = true;
      if (!this.sess.closing) {
        if (this.sess.state === 'online') noteError('bosh_terminate', `${this.sess.user}: terminate ${body.attrs.condition || ''}`);
        else this.sess.fail('login_failed', `${this.sess.user}: BOSH terminate ${body.attrs.condition || ''} in state ${this.sess.state}`);
      }
      this.agent.destroy();
      return;
    }
    for (const el of body.children) {
      this.sess.onStanza(el);
      if (this.dead) return;
    }
    this.pump();
  }

  head(extra = '') {
    return `<body xmlns='${NS_HTTPBIND}' rid='${this.rid++}' sid='${esc(this.sid)}'${extra}`;
  }

  pump() {
    if (this.dead || !this.sid || this.closingNow) return;
    if (this.restartPending && this.inflight < this.requests) {
      this.restartPending = false;
      this.post(this.head(` to='${esc(opt.domain)}' xml:lang='en' xmpp:restart='true' xmlns:xmpp='${NS_XBOSH}'`) + '/>');
    } else if (this.queue.length && this.inflight < this.requests) {
      const payload = this.queue.join('');
      this.queue.length = 0;
      this.post(this.head() + '>' + payload + '</body>');
    } else if (this.inflight === 0) {
      this.post(this.head() + '/>');
    }
  }

  send(xml) { if (!this.dead) { this.queue.push(xml); this.pump(); } }

  restart() { this.restartPending = true; this.pump(); }

  abort() { this.dead = true; this.agent.destroy(); }

  close() {
    if (this.dead || !this.sid) { this.abort(); return Promise.resolve(); }
    this.closingNow = true;
    return new Promise((resolve) => {
      const data = Buffer.from(this.head(" type='terminate'") + `><presence xmlns='jabber:client' type='unavailable'/></body>`);
      const done = () => { this.abort(); resolve(); };
      const req = http.request({
        host: opt.host, port: opt.port, path: opt.boshPath, method: 'POST', agent: this.agent,
        headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': data.length },
      }, (res) => { res.resume(); res.on('end', done); res.on('error', done); });
      req.on('error', done);
      req.setTimeout(2000, () => req.destroy());
      req.end(data);
    });
  }
}

// ------------------------------------------------------------------ phases

async function loginAll(sessions) {
  const times = { ws: [], bosh: [] };
  let next = 0;
  let lastOk = null;
  const start = now();
  async function loop() {
    while (next < sessions.length) {
      const s = sessions[next++];
      try {
        const dt = await s.login();
        times[s.kind].push(dt);
        lastOk = now();
      } catch { /* counted in errors */ }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opt.concurrency, sessions.length) }, loop));
  return { times, start, lastOk };
}

async function messageRound(pairs) {
  // Sequence j: round j / (2P), pair (j mod 2P) / 2, even: WebSocket -> BOSH,
  // odd: BOSH -> WebSocket. Every sender sends one message per round.
  const total = pairs.length * 2 * opt.messages;
  seen = new Uint8Array(total);
  let j = 0;
  const t0 = now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((opt.rate * (now() - t0)) / 1000));
      for (; j < due; j++) {
        const r = j % (2 * pairs.length);
        const [ws, bosh] = pairs[r >> 1];
        const [from, to] = r & 1 ? [bosh, ws] : [ws, bosh];
        if (from.online && to.jid) from.sendMessage(to.jid, j);
      }
      if (j >= total) { clearInterval(timer); resolve(); }
    };
    const timer = setInterval(tick, 1);
  });
  const sendEnd = now();
  const deadline = sendEnd + opt.drain * 1000;
  while (stats.delivered + stats.msgErrors < stats.sent && now() < deadline) await sleep(5);
  return { total, t0, sendEnd, end: now() };
}

// ------------------------------------------------------------------ main

async function main() {
  const wallStart = now();
  const cpuStart = process.cpuUsage();
  const sessions = Array.from({ length: opt.users }, (_, i) => new Session(i, i % 2 === 0 ? 'ws' : 'bosh'));
  const pairs = [];
  for (let i = 0; i + 1 < opt.users; i += 2) pairs.push([sessions[i], sessions[i + 1]]);
  const out = {
    scenario: 'web', transport: 'plain HTTP', mech: opt.mech.toUpperCase(), users: opt.users,
    ws_users: sessions.filter((s) => s.kind === 'ws').length,
    bosh_users: sessions.filter((s) => s.kind === 'bosh').length,
    options: { ...opt },
  };

  // (a) logins
  const memBefore = serverMem();
  const cpuLogin0 = serverCpu();
  const lgLogin0 = process.cpuUsage();
  const login = await loginAll(sessions);
  const loginEnd = now();
  const lgLogin = process.cpuUsage(lgLogin0);
  const boshLogin = boshRequests;
  // Let the initial presences be processed before the CPU reading.
  await sleep(500);
  const cpuLogin1 = serverCpu();
  const ok = login.times.ws.length + login.times.bosh.length;
  out.logins_ok = ok;
  out.logins_failed = opt.users - ok;
  out.login_phase_s = (loginEnd - login.start) / 1000;
  out.logins_per_s = ok && login.lastOk ? ok / ((login.lastOk - login.start) / 1000) : 0;
  // Near 100 % the loadgen, not the server, bounds the login figures.
  out.loadgen_cpu_login_pct = (100 * (lgLogin.user + lgLogin.system) / 1e3) / (loginEnd - login.start);
  out.login_ms = { all: summary([...login.times.ws, ...login.times.bosh]), ws: summary(login.times.ws), bosh: summary(login.times.bosh) };
  if (cpuLogin0 !== null && cpuLogin1 !== null && ok) {
    out.server_cpu_login_s = cpuLogin1 - cpuLogin0;
    out.server_cpu_us_per_login = (1e6 * (cpuLogin1 - cpuLogin0)) / ok;
  }
  console.log(`logins: ${ok}/${opt.users} ok in ${out.login_phase_s.toFixed(2)} s (${out.logins_per_s.toFixed(1)}/s); `
    + `WebSocket p50 ${out.login_ms.ws.p50?.toFixed(2)} ms p99 ${out.login_ms.ws.p99?.toFixed(2)} ms; `
    + `BOSH p50 ${out.login_ms.bosh.p50?.toFixed(2)} ms p99 ${out.login_ms.bosh.p99?.toFixed(2)} ms; `
    + `server CPU/login ${out.server_cpu_us_per_login?.toFixed(0)} µs; loadgen CPU ${out.loadgen_cpu_login_pct.toFixed(0)} % of a core`);

  // (b) idle memory
  await sleep(Math.max(0, opt.settle * 1000 - 500));
  const memAfter = serverMem();
  const held = sessions.filter((s) => s.online);
  out.sessions_held = held.length;
  out.sessions_held_ws = held.filter((s) => s.kind === 'ws').length;
  out.sessions_held_bosh = held.filter((s) => s.kind === 'bosh').length;
  if (memBefore && memAfter) {
    out.server_mem = { before: memBefore, after: memAfter };
    if (held.length && memBefore.rss_kb !== null && memAfter.rss_kb !== null) {
      out.rss_per_session_kb = (memAfter.rss_kb - memBefore.rss_kb) / held.length;
      out.server_mem.rss_bytes_per_session = out.rss_per_session_kb * 1024;
    }
    if (held.length && memBefore.pss_kb !== null && memAfter.pss_kb !== null) {
      out.pss_per_session_kb = (memAfter.pss_kb - memBefore.pss_kb) / held.length;
      out.server_mem.pss_bytes_per_session = out.pss_per_session_kb * 1024;
    }
    console.log(`idle: ${held.length} sessions held; server RSS ${memBefore.rss_kb} -> ${memAfter.rss_kb} kB `
      + `(${out.rss_per_session_kb?.toFixed(2)} KB/session), PSS ${out.pss_per_session_kb?.toFixed(2)} KB/session`);
  }

  // (c) message round
  const boshIdle = boshRequests;
  const cpuMsg0 = serverCpu();
  const round = await messageRound(pairs);
  const cpuMsg1 = serverCpu();
  const sendS = (round.sendEnd - round.t0) / 1000;
  const all = [...stats.lat.ws_to_bosh, ...stats.lat.bosh_to_ws];
  out.messages_per_user = opt.messages;
  out.rate = opt.rate;
  out.msgs_planned = round.total;
  out.msgs_sent = stats.sent;
  out.msgs_delivered = stats.delivered;
  out.msg_errors = stats.msgErrors;
  out.send_s = sendS;
  out.offered_msgs_per_s = sendS > 0 ? stats.sent / sendS : null;
  out.delivered_msgs_per_s = sendS > 0 ? stats.delivered / sendS : null;
  out.bosh_requests = { login: boshLogin, idle: boshIdle - boshLogin, messages: boshRequests - boshIdle };
  out.latency_us = summary(all);
  out.latency_us_ws_to_bosh = summary(stats.lat.ws_to_bosh);
  out.latency_us_bosh_to_ws = summary(stats.lat.bosh_to_ws);
  if (cpuMsg0 !== null && cpuMsg1 !== null && stats.delivered) {
    out.server_cpu_msg_s = cpuMsg1 - cpuMsg0;
    out.server_cpu_us_per_msg = (1e6 * (cpuMsg1 - cpuMsg0)) / stats.delivered;
  }
  const ms = (v) => (v === undefined || v === null ? '-' : (v / 1000).toFixed(2));
  console.log(`messages: ${stats.sent} sent in ${sendS.toFixed(2)} s, ${stats.delivered} delivered, ${stats.msgErrors} errors; `
    + `latency p50 ${ms(out.latency_us.p50)} ms p99 ${ms(out.latency_us.p99)} ms `
    + `(WebSocket->BOSH p99 ${ms(out.latency_us_ws_to_bosh.p99)}, BOSH->WebSocket p99 ${ms(out.latency_us_bosh_to_ws.p99)}); `
    + `server CPU/msg ${out.server_cpu_us_per_msg?.toFixed(1)} µs; BOSH requests ${JSON.stringify(out.bosh_requests)}`);

  out.errors = errors;
  out.error_samples = errorSamples;
  const cpu = process.cpuUsage(cpuStart);
  out.wall_s = (now() - wallStart) / 1000;
  out.loadgen_cpu_s = (cpu.user + cpu.system) / 1e6;
  if (errorSamples.length) console.log(`errors: ${JSON.stringify(errors)}\n  ${errorSamples.join('\n  ')}`);
  if (opt.json) fs.writeFileSync(opt.json, JSON.stringify(out, null, 2) + '\n');

  await Promise.race([Promise.all(sessions.map((s) => s.close())), sleep(3000)]);
  return ok > 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => { console.error(`web loadgen: ${e.stack || e}`); process.exit(1); });
