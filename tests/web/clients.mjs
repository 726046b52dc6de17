// XMPP clients for the web tests: strophe.js over BOSH (with a small
// XMLHttpRequest for Node), @xmpp/client over WebSocket (with the `ws`
// package as Node 20's missing global WebSocket), and raw HTTP/BOSH helpers.

import http from 'node:http';
import { WebSocket as WS } from 'ws';
import { Inbox, withTimeout, waitFor, bare } from './harness.mjs';

// @xmpp/websocket uses the global WebSocket, which Node only has from 22 on
// (strophe.js's Node build sets it to `ws` too, when it is imported).
globalThis.WebSocket ??= WS;

// ------------------------------------------------------------ XMLHttpRequest for Node

const xhrAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** Closes the keep-alive connections of the XMLHttpRequest shim. */
export function closeHttpAgents() { xhrAgent.destroy(); }

/**
 * The part of XMLHttpRequest that strophe.js's BOSH code uses: open, send,
 * setRequestHeader, abort, readyState/status/responseText/responseXML,
 * onreadystatechange, getAllResponseHeaders. Requests go through node:http.
 */
export class NodeXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.responseText = '';
    this.onreadystatechange = null;
    this.withCredentials = false;
    this.timeout = 0;
    this._headers = {};
    this._resHeaders = {};
    this._req = null;
    this._aborted = false;
  }

  overrideMimeType() {}

  open(method, url, async = true) {
    this._method = method;
    this._url = new URL(url);
    this._async = async;
    this._setState(1);
  }

  setRequestHeader(k, v) { this._headers[k] = v; }

  getAllResponseHeaders() {
    return Object.entries(this._resHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  }

  getResponseHeader(k) { return this._resHeaders[k.toLowerCase()] ?? null; }

  get responseXML() {
    if (!this.responseText) return null;
    const ct = this._resHeaders['content-type'] || '';
    if (ct && !/xml/i.test(ct)) return null;
    return new globalThis.DOMParser().parseFromString(this.responseText, 'text/xml');
  }

  _setState(s) {
    this.readyState = s;
    if (this.onreadystatechange) this.onreadystatechange();
  }

  send(body) {
    const data = body == null ? null : Buffer.from(String(body), 'utf8');
    const headers = { ...this._headers };
    if (data) headers['Content-Length'] = data.length;
    NodeXMLHttpRequest.active.add(this);
    const req = http.request(this._url, { method: this._method, headers, agent: xhrAgent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (this._aborted) return;
        this.status = res.statusCode;
        this._resHeaders = res.headers;
        this.responseText = Buffer.concat(chunks).toString('utf8');
        this._done();
      });
      res.on('error', () => this._fail());
    });
    req.on('error', () => this._fail());
    this._req = req;
    req.end(data);
  }

  _fail() {
    if (this._aborted || this.readyState === 4) return;
    this.status = 0;
    this.responseText = '';
    this._done();
  }

  _done() {
    NodeXMLHttpRequest.active.delete(this);
    this._setState(4);
  }

  abort() {
    this._aborted = true;
    NodeXMLHttpRequest.active.delete(this);
    if (this._req) this._req.destroy();
  }
}
NodeXMLHttpRequest.active = new Set();

globalThis.XMLHttpRequest ??= NodeXMLHttpRequest;

// strophe.js's Node build installs its DOM shims (xmldom) when imported.
const { Strophe, $msg, $pres } = await import('strophe.js');
export { Strophe, $msg, $pres };
Strophe.setLogLevel(process.env.STROPHE_DEBUG ? Strophe.LogLevel.DEBUG : Strophe.LogLevel.ERROR);

const S = Strophe.Status;
const STATUS_NAMES = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));

// ------------------------------------------------------------ strophe.js (BOSH)

/** A strophe.js connection with message and presence inboxes. */
export class StropheClient {
  constructor(service, jid, password, { name } = {}) {
    this.service = service;
    this.jidWanted = jid;
    this.password = password;
    this.name = name || `strophe:${jid}`;
    this.messages = new Inbox(`${this.name} messages`);
    this.presences = new Inbox(`${this.name} presences`);
    this.statuses = [];
    this.xmlOut = [];
    this.xmlIn = [];
    this.conn = this._newConnection();
  }

  _newConnection() {
    const conn = new Strophe.Connection(this.service, { protocol: this.service.startsWith('ws') ? 'ws' : undefined });
    conn.xmlOutput = (el) => this.xmlOut.push(Strophe.serialize(el));
    conn.xmlInput = (el) => this.xmlIn.push(Strophe.serialize(el));
    return conn;
  }

  _installHandlers() {
    this.conn.addHandler((m) => {
      const body = m.getElementsByTagName('body')[0];
      this.messages.push({
        from: m.getAttribute('from'), to: m.getAttribute('to'), type: m.getAttribute('type'),
        body: body ? Strophe.getText(body) : null,
        delay: m.getElementsByTagName('delay').length > 0,
      });
      return true;
    }, null, 'message');
    this.conn.addHandler((p) => {
      const status = p.getElementsByTagName('status')[0];
      this.presences.push({
        from: p.getAttribute('from'), type: p.getAttribute('type'),
        status: status ? Strophe.getText(status) : null,
      });
      return true;
    }, null, 'presence');
  }

  _statusCallback(resolve, reject, okStatuses) {
    return (status, condition) => {
      this.statuses.push([STATUS_NAMES[status], condition]);
      if (okStatuses.includes(status)) {
        resolve(status);
      } else if ([S.CONNFAIL, S.AUTHFAIL, S.ERROR, S.CONNTIMEOUT, S.BINDREQUIRED].includes(status) ||
                 (status === S.DISCONNECTED && !this.online)) {
        reject(new Error(`${this.name}: ${STATUS_NAMES[status]} ${condition || ''} ` +
          `(statuses ${JSON.stringify(this.statuses)}; last in: ${this.xmlIn.slice(-3).join(' ')})`));
      }
      if (status === S.DISCONNECTED) this.online = false;
    };
  }

  /** Connects and logs in; resolves once the session is established. */
  async connect(timeout = 30000) {
    this._installHandlers();
    await withTimeout(new Promise((resolve, reject) => {
      this.conn.connect(this.jidWanted, this.password, this._statusCallback(resolve, reject, [S.CONNECTED]));
    }), timeout, `${this.name} login`);
    this.online = true;
    this.jid = this.conn.jid;
    return this;
  }

  /**
   * Takes over an existing, authenticated BOSH session (strophe's attach()):
   * rid is the next request id to use.
   */
  async attach(jid, sid, rid, timeout = 10000) {
    this._installHandlers();
    await withTimeout(new Promise((resolve, reject) => {
      this.conn.attach(jid, sid, rid, this._statusCallback(resolve, reject, [S.ATTACHED]));
    }), timeout, `${this.name} attach`);
    this.online = true;
    this.jid = this.conn.jid;
    return this;
  }

  /** The BOSH session creation response (the first <body/> received). */
  get sessionCreationResponse() {
    return this.xmlIn.length ? this.xmlIn[0] : null;
  }

  /** The SASL mechanism strophe used (from its <auth/>). */
  get saslMechanism() {
    for (const x of this.xmlOut) {
      const m = x.match(/<auth [^>]*mechanism=["']([^"']+)["']/);
      if (m) return m[1];
    }
    return null;
  }

  sendPresence(attrs = {}, status) {
    const p = $pres(attrs);
    if (status) p.c('status').t(status);
    this.conn.send(p.tree());
  }

  sendMessage(to, body, type = 'chat') {
    this.conn.send($msg({ to, type }).c('body').t(body).tree());
  }

  /** Waits until strophe has no queued data (everything was posted). */
  async flushed(timeout = 5000) {
    const deadline = Date.now() + timeout;
    while (this.conn._data.length > 0) {
      if (Date.now() > deadline) throw new Error(`${this.name}: data not flushed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async disconnect(timeout = 10000) {
    if (!this.online) { this.abandon(); return; }
    await withTimeout(new Promise((resolve) => {
      this.conn.connect_callback = (status) => { if (status === S.DISCONNECTED) resolve(); };
      this.conn.disconnect('test over');
    }), timeout, `${this.name} disconnect`).catch(() => this.abandon());
    this.online = false;
  }

  /** Drops the connection without telling the server (as a closed tab does). */
  abandon() {
    try {
      if (this.conn._proto._abortAllRequests) this.conn._proto._abortAllRequests();
      this.conn._doDisconnect();
    } catch { /* already gone */ }
    this.online = false;
  }
}

// ------------------------------------------------------------ @xmpp/client (WebSocket)

const { client: xmppClient, xml } = await import('@xmpp/client');
export { xml };

/** An @xmpp/client connection with message and presence inboxes. */
export class XmppJsClient {
  constructor(service, jid, password, { name, resource, reconnect = false } = {}) {
    const [local, domain] = bare(jid).split('@');
    this.name = name || `xmpp.js:${jid}`;
    this.messages = new Inbox(`${this.name} messages`);
    this.presences = new Inbox(`${this.name} presences`);
    this.events = new Inbox(`${this.name} events`);
    this.errors = [];
    this.xmpp = xmppClient({
      service, domain, username: local, password,
      resource: resource || jid.split('/')[1] || 'ws',
    });
    this.xmpp.timeout = 10000;
    if (!reconnect) this.xmpp.reconnect.stop();
    this.xmpp.on('error', (e) => { this.errors.push(e); this.events.push({ event: 'error', error: String(e) }); });
    this.xmpp.on('status', (s) => this.events.push({ event: 'status', status: s }));
    this.xmpp.on('online', (a) => this.events.push({ event: 'online', jid: String(a) }));
    this.xmpp.streamManagement.on('resumed', () => this.events.push({ event: 'resumed' }));
    this.xmpp.reconnect.on('reconnected', () => this.events.push({ event: 'reconnected' }));
    this.sent = [];
    this.received = [];
    this.xmpp.on('element', (el) => this.received.push(el.toString()));
    this.xmpp.on('send', (el) => this.sent.push(el.toString()));
    this.xmpp.on('stanza', (st) => {
      if (st.is('message')) {
        this.messages.push({
          from: st.attrs.from, to: st.attrs.to, type: st.attrs.type,
          body: st.getChildText('body'), delay: !!st.getChild('delay', 'urn:xmpp:delay'),
        });
      } else if (st.is('presence')) {
        this.presences.push({ from: st.attrs.from, type: st.attrs.type, status: st.getChildText('status') });
      }
    });
  }

  async connect(timeout = 30000) {
    const addr = await withTimeout(this.xmpp.start(), timeout, `${this.name} login`);
    this.jid = String(addr);
    // @xmpp/client 0.14 resets its inbound count when it processes
    // <enabled/>, after any stanza that came in with it: let stream
    // management settle before anything is sent that causes stanzas to come in.
    if (this.received.some((x) => x.includes('urn:xmpp:sm:3'))) {
      await waitFor(() => this.xmpp.streamManagement.enabled || this.received.some((x) => /^<failed[^>]*urn:xmpp:sm:3/.test(x)),
        { timeout: 10000, what: `${this.name} stream management <enabled/>` });
    }
    return this;
  }

  /** The SASL mechanism used (from the <auth/> sent). */
  get saslMechanism() {
    for (const x of this.sent) {
      const m = x.match(/<auth [^>]*mechanism=["']([^"']+)["']/);
      if (m) return m[1];
    }
    return null;
  }

  sendPresence(attrs = {}, status) {
    return this.xmpp.send(xml('presence', attrs, status ? xml('status', {}, status) : null));
  }

  sendMessage(to, body, type = 'chat') {
    return this.xmpp.send(xml('message', { to, type }, xml('body', {}, body)));
  }

  /** The `ws` WebSocket under the connection. */
  get rawSocket() { return this.xmpp.socket?.socket; }

  async stop(timeout = 10000) {
    this.xmpp.reconnect.stop();
    try {
      await withTimeout(this.xmpp.stop(), timeout, `${this.name} stop`);
    } catch {
      try { this.rawSocket?.terminate(); } catch { /* gone */ }
    }
  }
}

// ------------------------------------------------------------ raw HTTP

/** One HTTP request on its own connection; resolves {status, headers, body}. */
export function httpRequest(url, { method = 'GET', headers = {}, body = null, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body == null ? null : Buffer.from(body, 'utf8');
    const h = { Connection: 'close', ...headers };
    if (data) h['Content-Length'] = data.length;
    const req = http.request(url, { method, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`HTTP ${method} ${url}: no answer within ${timeout} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

export const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
export const NS_XBOSH = 'urn:xmpp:xbosh';

/** Parses XML text with the DOMParser strophe.js installed. */
export function parseXml(text) {
  const doc = new globalThis.DOMParser().parseFromString(text, 'text/xml');
  const root = doc.documentElement;
  if (!root || root.tagName === 'parsererror') throw new Error(`not XML: ${text}`);
  return root;
}

export function boshPost(srv, body, opts = {}) {
  return httpRequest(srv.boshUrl, {
    method: 'POST', body, headers: { 'Content-Type': 'text/xml; charset=utf-8', ...(opts.headers || {}) }, ...opts,
  });
}

/** Creates a BOSH session with raw HTTP; returns {sid, rid (the next one), root}. */
export async function boshCreateSession(srv, { rid = 1000 + Math.floor(Math.random() * 1e6), wait = 5, hold = 1, extra = '' } = {}) {
  const r = await boshPost(srv, `<body xmlns='${NS_HTTPBIND}' xmlns:xmpp='${NS_XBOSH}' content='text/xml; charset=utf-8' ` +
    `hold='${hold}' rid='${rid}' to='localhost' ver='1.11' wait='${wait}' xml:lang='en' xmpp:version='1.0'${extra}/>`);
  if (r.status !== 200) throw new Error(`session creation: HTTP ${r.status}: ${r.body}`);
  const root = parseXml(r.body);
  const sid = root.getAttribute('sid');
  if (!sid) throw new Error(`session creation: no sid: ${r.body}`);
  return { sid, rid: rid + 1, root, response: r };
}
