// XMPP sessions for the stanza-level tests (muc, pubsub, pep, converse):
// a Party is one login on @xmpp/client over WebSocket ('ws') or strophe.js
// over BOSH ('bosh') that keeps every stanza it receives as an ltx element
// (strophe's DOM elements are serialized and parsed), so that a test waits
// for and asserts on stanzas the same way on both libraries. partySuite()
// is the server and the per-test logins of a describe() block. Also the
// stanza, data form and pubsub helpers those tests share.

import { it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseLtx, clone as cloneLtx } from 'ltx';
import { Inbox, bare, startServer, killAllChildren, logOnFailure } from './harness.mjs';
import { StropheClient, XmppJsClient, closeHttpAgents, Strophe, xml } from './clients.mjs';

export const NS_CLIENT = 'jabber:client';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_DATA = 'jabber:x:data';
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = `${NS_MUC}#user`;
export const NS_PS = 'http://jabber.org/protocol/pubsub';
export const NS_PS_ERRORS = `${NS_PS}#errors`;
export const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

/** A tag of this test process, for names (rooms, nodes) no other run uses. */
export const RUN = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

// ------------------------------------------------------------ stanza helpers

export const show = (el) => (el ? el.toString() : String(el));
export const typeOf = (el) => el.attrs.type ?? null;

/** "type/condition" of a stanza's <error/>, or null. */
export function errorOf(el) {
  const e = el.getChild('error');
  if (!e) return null;
  const cond = e.children.find((c) => typeof c === 'object' && c.getNS() === NS_STANZAS && c.name !== 'text');
  return `${e.attrs.type}/${cond ? cond.name : '?'}`;
}

/** var -> {type, values, el} of a data form. */
export function formFields(x) {
  const out = {};
  for (const f of x.getChildren('field')) {
    out[f.attrs.var] = { type: f.attrs.type, values: f.getChildren('value').map((v) => v.getText()), el: f };
  }
  return out;
}
export const value = (fields, v) => fields[v]?.values[0];

export const dataField = (v, ...values) => xml('field', { var: v }, ...values.map((x) => xml('value', {}, String(x))));

/** A submitted data form of FORM_TYPE formType (hidden: the FORM_TYPE field has type='hidden'). */
export const dataForm = (formType, fields, { hidden = false } = {}) => xml('x', { xmlns: NS_DATA, type: 'submit' },
  hidden ? xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, formType)) : dataField('FORM_TYPE', formType),
  ...Object.entries(fields).map(([k, v]) => dataField(k, v)));

// MUC (XEP-0045)

/** The <x xmlns='muc#user'/> of a stanza, or undefined. */
export const mucUser = (el) => el.getChild('x', NS_MUC_USER);
/** The muc#user status codes of a stanza. */
export const statuses = (el) => new Set((mucUser(el)?.getChildren('status') ?? []).map((s) => s.attrs.code));
/** A presence from `from` of type `type` (null: available). */
export const isPres = (from, type = null) => (el) => el.name === 'presence' && el.attrs.from === from && typeOf(el) === type;

// pubsub (XEP-0060)

export const pubsub = (...children) => xml('pubsub', { xmlns: NS_PS }, ...children);

/** <publish node><item id?>payload</item></publish> (+ publish-options, XEP-0060 §7.1.5; form as in dataForm). */
export function publishReq(node, id, payload, options, formOpts) {
  const item = xml('item', id ? { id } : {}, payload);
  const children = [xml('publish', { node }, item)];
  if (options) children.push(xml('publish-options', {}, dataForm(`${NS_PS}#publish-options`, options, formOpts)));
  return pubsub(...children);
}

/** The pubsub#errors application condition of a stanza's <error/>, or null. */
export function appErrorOf(el) {
  const e = el.getChild('error');
  const c = e?.children.find((x) => typeof x === 'object' && x.getNS() === NS_PS_ERRORS);
  return c ? c.name : null;
}

/** Asserts an error reply: "type/condition" and, if given, the pubsub#errors condition. */
export function assertError(res, want, app, what) {
  assert.equal(res.attrs.type, 'error', `${what}: expected an error, got ${show(res)}`);
  assert.equal(errorOf(res), want, `${what}: ${show(res)}`);
  if (app) assert.equal(appErrorOf(res), app, `${what}: <${app} xmlns='${NS_PS_ERRORS}'/> in the error: ${show(res)}`);
}

// ------------------------------------------------------------ clients

/**
 * harness.mjs's Inbox for ltx elements (which JSON cannot show): next(pred)
 * takes the oldest matching stanza, waiting for one; none(pred) asserts that
 * none comes. `all` keeps everything in the order received; a timeout shows
 * the last `tail` of them.
 */
export class StanzaInbox extends Inbox {
  constructor(name, { tail = 8 } = {}) {
    super(name);
    this.tail = tail;
  }

  next(pred, timeout, what) {
    const i = this.items.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const err = new Error(`${this.name}: no ${what} within ${timeout} ms; last stanzas received:\n` +
          this.all.slice(-this.tail).map(show).join('\n'));
        err.noStanza = true;
        reject(err);
      }, timeout);
      this.waiters.push(w);
    });
  }

  async none(pred, ms, what) {
    let got;
    try {
      got = await this.next(pred, ms, what);
    } catch (e) {
      if (e.noStanza) return;
      throw e;
    }
    throw new Error(`${this.name}: unexpected ${what}: ${show(got)}`);
  }
}

let iqSeq = 0;

/**
 * One XMPP session on either library, with every stanza it receives in a
 * StanzaInbox of ltx elements. Options: iqPrefix (of the ids of iq()), wait
 * (ms next() waits by default), noneMs (ms none() waits by default), tail
 * (stanzas shown when next() times out). Subclasses see every stanza
 * received over BOSH in received(st), after it is queued; over BOSH this
 * handles everything, so strophe's fallback answer to unhandled iq get/set
 * (service-unavailable) never fires.
 */
export class Party {
  static async open(srv, kind, jid, opts = {}) {
    const p = new this(srv, kind, jid, opts);
    await p.connect();
    return p;
  }

  constructor(srv, kind, jid, { iqPrefix = 'iq', wait = 10000, noneMs = 700, tail = 8 } = {}) {
    this.kind = kind;
    this.iqPrefix = iqPrefix;
    this.wait = wait;
    this.noneMs = noneMs;
    this.stanzas = new StanzaInbox(`${kind}:${jid}`, { tail });
    if (kind === 'ws') {
      this.client = new XmppJsClient(srv.wsUrl, jid, srv.password(jid));
      this.client.xmpp.on('stanza', (el) => this.stanzas.push(el));
    } else {
      this.client = new StropheClient(srv.boshUrl, jid, srv.password(jid));
    }
  }

  async connect() {
    await this.client.connect();
    if (this.kind === 'bosh') {
      this.client.conn.addHandler((el) => {
        let st;
        try {
          st = parseLtx(Strophe.serialize(el));
        } catch (e) {
          this.stanzas.push({ name: 'unparsable', error: String(e), attrs: {} });
          return true;
        }
        this.stanzas.push(st);
        this.received(st);
        return true;
      });
    }
    this.jid = this.client.jid;
    this.bare = bare(this.jid);
  }

  /** Called with every stanza received over BOSH (see the class comment). */
  received(st) {}

  /** Sends an ltx element (stanza) on either library. */
  send(el) {
    if (this.kind === 'ws') return this.client.xmpp.send(el);
    const s = cloneLtx(el);
    s.attrs.xmlns = NS_CLIENT;
    const dom = new globalThis.DOMParser().parseFromString(s.toString(), 'text/xml').documentElement;
    this.client.conn.send(dom);
    return Promise.resolve();
  }

  next(pred, what, timeout = this.wait) { return this.stanzas.next(pred, timeout, what); }

  none(pred, what, ms = this.noneMs) { return this.stanzas.none(pred, ms, what); }

  /** Sends an iq (to = null: no 'to', the own account) and resolves with the answer (result or error). */
  async iq(type, to, payload) {
    const id = `${this.iqPrefix}-${++iqSeq}`;
    await this.send(xml('iq', to ? { type, to, id } : { type, id }, payload));
    const first = payload?.children?.find((c) => typeof c === 'object');
    return this.next((el) => el.name === 'iq' && el.attrs.id === id && ['result', 'error'].includes(el.attrs.type),
      `answer to iq ${id} (${payload?.name} ${payload?.attrs?.xmlns} ${first?.name ?? ''})`);
  }

  async iqOk(type, to, payload) {
    const r = await this.iq(type, to, payload);
    assert.equal(r.attrs.type, 'result', `iq ${type} ${payload?.attrs?.xmlns} to ${to}: ${show(r)}`);
    return r;
  }

  async close() {
    if (this.kind === 'ws') await this.client.stop();
    else await this.client.disconnect();
  }
}

// ------------------------------------------------------------ a describe() block of parties

/**
 * Call inside describe(): starts a server (startServer(server)) before the
 * tests, closes every party a test opened after it, and stops the server
 * (no problems allowed) and every child process at the end. Returns
 *  - party(kind, user, resource): logs in user@domain/resource (ws =
 *    @xmpp/client, bosh = strophe.js) as a PartyClass with partyOptions;
 *  - parties(...[kind, user, resource]): several at once, the @xmpp/client
 *    ones in parallel, the strophe.js ones one after the other (they share
 *    one pool of keep-alive HTTP connections); waits for all before failing;
 *  - forget(p): p is no longer closed after the test (the test closed it);
 *  - test(name, fn): it() with the server's log tail on failure;
 *  - srv(): the server.
 */
export function partySuite({ server, domain = 'localhost', PartyClass = Party, partyOptions = {} }) {
  let srv;
  let open = [];

  before(async () => {
    srv = await startServer(server);
  });

  afterEach(async () => {
    const ps = open.reverse();
    open = [];
    await Promise.all(ps.map((p) => p.close().catch(() => {})));
  });

  after(async () => {
    closeHttpAgents();
    try {
      if (srv) {
        const problems = await srv.stop();
        if (problems.length) throw new Error(`server problems:\n${problems.join('\n')}`);
      }
    } finally {
      killAllChildren();
    }
  });

  async function party(kind, user, resource) {
    const p = await PartyClass.open(srv, kind, `${user}@${domain}/${resource}`, partyOptions);
    open.push(p);
    return p;
  }

  async function parties(...specs) {
    let chain = Promise.resolve();
    const all = specs.map(([kind, user, resource]) => {
      if (kind === 'ws') return party(kind, user, resource);
      chain = chain.catch(() => {}).then(() => party(kind, user, resource));
      return chain;
    });
    const settled = await Promise.allSettled(all);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((r) => r.value);
  }

  const forget = (p) => { open.splice(open.indexOf(p), 1); };

  const test = (name, fn) => it(name, logOnFailure(() => srv, fn));

  return { party, parties, forget, test, srv: () => srv };
}
