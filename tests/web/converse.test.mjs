// A real web client that nobody on the team wrote: converse.js (its
// unmodified dist build from npm, loaded by tests/web/page-converse) in
// Debian's Chromium, driven by playwright-core, against Tern's PEP
// (XEP-0163, pep.c) and MUC (XEP-0045, conference.localhost) over WebSocket.
//
//  1. converse logs in as alice and joins a room that bob (@xmpp/client)
//     created. Converse bookmarks every room it enters, with autojoin; then
//     alice renames the bookmark in converse's bookmark form. Converse keeps
//     bookmarks in PEP: XEP-0402 (urn:xmpp:bookmarks:1) when the account
//     advertises urn:xmpp:bookmarks:1#compat, else XEP-0048 in PEP
//     (storage:bookmarks, one item 'current', with XEP-0223 publish-options:
//     the path it takes against Tern, which has no #compat). Both publishes
//     must be accepted; another alice session (@xmpp/client) reads the item
//     back from alice's PEP node, and bob may not read it (whitelist).
//  2. A fresh browser context (nothing cached) logs in as alice again:
//     converse fetches the bookmarks from PEP and joins the room by itself.
//     bob, in the room, receives alice's join presence from the new
//     resource, and the page shows the room with both occupants.
//
// The page logs every WebSocket frame (window.tern.frames): the XML converse
// sent is asserted on from there. On failure the error carries converse's
// events, frames and log, and out/converse-RESOURCE.log has all of them.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';
import { logOnFailure, startServer, stopServer, killAllChildren, WEB_DIR, makeTempDir, IS_TERN } from './harness.mjs';
import { closeHttpAgents, xml } from './clients.mjs';
import { Party, show, mucUser as mucX, statuses, isPres as isPresence, NS_MUC, NS_PS as NS_PUBSUB, RUN } from './parties.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1200, height: 800 };
const OUT_DIR = path.join(WEB_DIR, 'out');
const PAGE_DIR = path.join(WEB_DIR, 'page-converse');
const DIST_DIR = path.join(WEB_DIR, 'node_modules', 'converse.js', 'dist');

const SERVICE = 'conference.localhost';
const NS_MUC_OWNER = `${NS_MUC}#owner`;
const NS_BOOKMARKS_PEP = 'storage:bookmarks'; // XEP-0048 in PEP (XEP-0223)
const NS_BOOKMARKS2 = 'urn:xmpp:bookmarks:1'; // XEP-0402
const WAIT = 15000;
const ROOM_TITLE = 'Tern and converse';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
  '.map': 'application/json',
};

/** Serves the page and converse's dist directory on 127.0.0.1 (another origin than Tern). */
async function servePage() {
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let file = null;
    if (p === '/' || p === '/index.html') file = path.join(PAGE_DIR, 'index.html');
    else if (p === '/app.js') file = path.join(PAGE_DIR, 'app.js');
    else if (p.startsWith('/dist/')) {
      const f = path.resolve(DIST_DIR, '.' + p.slice('/dist'.length));
      if (f.startsWith(DIST_DIR + path.sep)) file = f;
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      server.notFound.push(p);
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store',
    });
    res.end(fs.readFileSync(file));
  });
  server.notFound = [];
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

// ------------------------------------------------------------ an @xmpp/client peer

/** bob's and alice's sessions outside the browser: parties.mjs's Party on @xmpp/client. */
const openPeer = (srv, jid) => Party.open(srv, 'ws', jid, { iqPrefix: 'conv-iq', wait: WAIT, tail: 10 });

// ------------------------------------------------------------ converse in a browser context

/**
 * A new browser context (empty storage) with converse logging in as jid;
 * resolves once converse reports 'connected'. Keeps converse's console log
 * and every WebSocket frame, both ways.
 */
async function openConverse(browser, pageServer, srv, jid) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  const s = { context, page, jid, console: [], frames: [], errors: [] };
  page.on('console', (m) => s.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => s.errors.push(`pageerror: ${e.message}`));
  s.diag = (n = 60) => `\n--- converse ${jid}: events ${JSON.stringify(s.events)}\n` +
    `not found on the page server: ${JSON.stringify(pageServer.notFound)}\n` +
    `${s.errors.join('\n')}\n--- last WebSocket frames:\n${s.frames.slice(-n).join('\n')}\n` +
    `--- converse log (last lines):\n${s.console.slice(-n).join('\n')}`;
  s.eventsNow = async () => {
    const st = await page.evaluate(() => window.tern && { events: window.tern.events, frames: window.tern.frames }).catch(() => null);
    if (st) ({ events: s.events, frames: s.frames } = st);
    return s.events;
  };
  s.framesNow = async (since = 0) => (await page.evaluate((n) => window.tern.frames.slice(n), since));
  const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
  const q = new URLSearchParams({ websocket_url: srv.wsUrl, jid, password: srv.password(jid) });
  await page.goto(`${pageOrigin}/index.html?${q}`, { timeout: 20000 });
  try {
    await page.waitForFunction(() => window.tern?.events.includes('connected'), null, { timeout: 30000 });
  } catch (e) {
    await s.eventsNow();
    throw new Error(`converse did not connect as ${jid}: ${e.message}${s.diag()}`);
  }
  return s;
}

/** Runs fn; on failure, the error gets converse's log and frames of the sessions in sessions(). */
async function withDiag(sessions, fn) {
  try {
    return await fn();
  } catch (e) {
    let extra = '';
    for (const s of sessions()) {
      if (!s) continue;
      await s.eventsNow();
      extra += s.diag();
      // everything, for reading at leisure
      const file = path.join(OUT_DIR, `converse-${s.jid.split('/')[1]}.log`);
      try {
        fs.mkdirSync(OUT_DIR, { recursive: true });
        fs.writeFileSync(file, `events ${JSON.stringify(s.events)}\n${s.errors.join('\n')}\n--- WebSocket frames:\n` +
          `${s.frames.join('\n')}\n--- console:\n${s.console.join('\n')}\n`);
        extra += `\n(all frames and the whole converse log: ${file})`;
      } catch { /* best effort */ }
    }
    if (extra && e && typeof e === 'object') {
      try { e.message += extra; } catch { /* read-only */ }
    }
    throw e;
  }
}

describe('converse.js in Chromium: PEP bookmarks and MUC autojoin', { skip: !fs.existsSync(CHROMIUM) && `${CHROMIUM} missing (scripts/web-deps.sh)` }, () => {
  let srv;
  let pageServer;
  let browser;
  let tmp;
  let bob;
  let probe;
  let first;
  let second;
  const room = `tern-converse-${RUN}@${SERVICE}`;
  let bookmarkNode = null;

  before(async () => {
    tmp = makeTempDir('converse');
    srv = await startServer({ name: 'converse' });
    pageServer = await servePage();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    for (const s of [first, second]) if (s) await s.context.close().catch(() => {});
    for (const p of [bob, probe]) if (p) await p.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (pageServer) pageServer.close();
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
    if (tmp && !process.env.TERN_WEB_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('converse joins a room and bookmarks it with autojoin in alice\'s PEP', logOnFailure(() => srv, async () => {
    // bob creates the room (instant room, XEP-0045 §10.1.2) and stays in it
    bob = await openPeer(srv, 'bob@localhost/muc');
    await bob.send(xml('presence', { to: `${room}/bob` }, xml('x', { xmlns: NS_MUC })));
    const created = await bob.next(isPresence(`${room}/bob`, null), 'bob\'s self-presence (room created)');
    assert.ok(statuses(created).has('110') && statuses(created).has('201'), `new room: 110 and 201 in ${show(created)}`);
    const conf = await bob.iq('set', room, xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' })));
    assert.equal(conf.attrs.type, 'result', `instant room: ${show(conf)}`);

    first = await openConverse(browser, pageServer, srv, 'alice@localhost/converse-1');
    await withDiag(() => [first], async () => {
      const { page } = first;
      const beforeJoin = (await first.framesNow()).length;
      // converse joins (api.rooms.open is what its "add groupchat" form calls)
      await page.evaluate(([jid]) => window.tern.api.rooms.open(jid, { nick: 'alice' }, true), [room]);
      const joined = await bob.next(isPresence(`${room}/alice`, null), 'alice\'s join presence (converse, first session)');
      // bob is the room's owner (a moderator): he sees the occupant's real JID (§7.2.4)
      assert.equal(mucX(joined)?.getChild('item')?.attrs.jid, 'alice@localhost/converse-1', `occupant jid: ${show(joined)}`);
      await roomShown(page, room);

      // converse bookmarks every room it enters, with autojoin (its
      // 'enteredNewRoom' handler): the publish it sent and Tern's answer
      const pub1 = await bookmarkPublish(first, beforeJoin, 'converse\'s own bookmark of the room it entered');
      bookmarkNode = pub1.node;
      assert.match(pub1.publish, /autojoin=["']true["']/, 'converse published autojoin="true"');

      // then converse's bookmark form (the modal of its MUC view): it shows
      // the bookmark (autojoin on), alice renames it and saves; converse
      // publishes again, the same item
      await page.evaluate(([jid]) => window.tern.api.modal.show('converse-bookmark-form-modal', { jid }), [room]);
      const form = page.locator('converse-muc-bookmark-form form');
      await form.waitFor({ state: 'visible', timeout: WAIT });
      assert.equal(await form.locator('input[name="nick"]').inputValue(), 'alice', 'the form shows the bookmark\'s nick');
      assert.equal(await form.locator('#converse_muc_bookmark_autojoin').isChecked(), true, 'the form shows autojoin on');
      await form.locator('input[name="name"]').fill(ROOM_TITLE);
      await form.locator('#converse_muc_bookmark_autojoin').check();
      const beforeSave = (await first.framesNow()).length;
      await form.locator('input[type="submit"]').click();
      const pub2 = await bookmarkPublish(first, beforeSave, 'the bookmark saved with converse\'s form');
      assert.equal(pub2.node, bookmarkNode, 'the same node');
      assert.match(pub2.publish, new RegExp(`name=["']${ROOM_TITLE}["']`), 'the new name');
      assert.match(pub2.publish, /autojoin=["']true["']/, 'autojoin="true"');
      console.log(`converse publishes its bookmarks to PEP node ${bookmarkNode}:\n${pub2.publish}\nTern answers:\n${pub2.answer}`);
    });

    // alice's PEP node, read by another of her sessions (XEP-0060 §6.5.2)
    probe = await openPeer(srv, 'alice@localhost/probe');
    const items = await probe.iq('get', 'alice@localhost', xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node: bookmarkNode })));
    assert.equal(items.attrs.type, 'result', `items of ${bookmarkNode}: ${show(items)}`);
    const list = items.getChild('pubsub', NS_PUBSUB)?.getChild('items');
    assert.equal(list?.attrs.node, bookmarkNode, `items node: ${show(items)}`);
    let conference;
    if (bookmarkNode === NS_BOOKMARKS2) {
      const it = list.getChildren('item').find((i) => i.attrs.id === room);
      assert.ok(it, `an item with id ${room}: ${show(items)}`);
      conference = it.getChild('conference', NS_BOOKMARKS2);
    } else {
      const its = list.getChildren('item');
      assert.equal(its.length, 1, `one item (id 'current') in ${bookmarkNode}: ${show(items)}`);
      assert.equal(its[0].attrs.id, 'current', `item id: ${show(items)}`);
      conference = its[0].getChild('storage', NS_BOOKMARKS_PEP)?.getChildren('conference').find((c) => c.attrs.jid === room);
    }
    assert.ok(conference, `a <conference/> for ${room}: ${show(items)}`);
    assert.ok(['true', '1'].includes(conference.attrs.autojoin), `autojoin='true': ${show(conference)}`);
    assert.equal(conference.getChildText('nick'), 'alice', `nick: ${show(conference)}`);
    assert.equal(conference.attrs.name, ROOM_TITLE, `the name saved last: ${show(conference)}`);

    // converse asked for access_model whitelist: bookmarks are not for others to read
    const foreign = await bob.iq('get', 'alice@localhost', xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node: bookmarkNode })));
    assert.equal(foreign.attrs.type, 'error', `bob must not read alice's bookmarks: ${show(foreign)}`);
    // XEP-0060 §6.5.9: a whitelist node answers others <not-allowed/> + <closed-node/>
    const err = foreign.getChild('error');
    assert.ok(err?.getChild('not-allowed', 'urn:ietf:params:xml:ns:xmpp-stanzas') &&
      err.getChild('closed-node', 'http://jabber.org/protocol/pubsub#errors'), `not-allowed, closed-node: ${show(foreign)}`);

    // converse logs out: alice leaves the room
    await withDiag(() => [first], async () => {
      await first.page.evaluate(() => window.tern.api.user.logout());
      await bob.next(isPresence(`${room}/alice`, 'unavailable'), 'alice leaving the room (converse logged out)');
    });
    // whatever else bob got from alice in the room is from the first session
    bob.stanzas.items = bob.stanzas.items.filter((el) => !(el.name === 'presence' && el.attrs.from === `${room}/alice`));
    await first.context.close();
    first = null;
  }));

  it('a fresh converse session auto-joins the bookmarked room from PEP', logOnFailure(() => srv, async () => {
    assert.ok(bob && bookmarkNode, 'the room and the bookmark of the previous test');
    second = await openConverse(browser, pageServer, srv, 'alice@localhost/converse-2');
    await withDiag(() => [second], async () => {
      const { page } = second;
      // nothing but converse's own startup: it fetches the bookmarks and joins
      const joined = await bob.next(isPresence(`${room}/alice`, null),
        'alice\'s join presence from the bookmark\'s autojoin (second converse session)', 25000);
      assert.equal(mucX(joined)?.getChild('item')?.attrs.jid, 'alice@localhost/converse-2', `the new session joined: ${show(joined)}`);
      const fetch = (await second.framesNow()).find((f) => /^> <iq[^>]*type=["']get["'][\s\S]*<items node=["'](storage:bookmarks|urn:xmpp:bookmarks:1)["']/.test(f));
      assert.ok(fetch, 'converse fetched its bookmarks from PEP');
      assert.ok(fetch.includes(`node="${bookmarkNode}"`) || fetch.includes(`node='${bookmarkNode}'`), `the same node: ${fetch}`);

      await roomShown(page, room);
      const bookmarked = await page.evaluate(async (jid) => {
        const b = await window.tern.api.bookmarks.get(jid);
        return b ? { autojoin: b.get('autojoin'), nick: b.get('nick') } : null;
      }, room);
      assert.deepEqual(bookmarked, { autojoin: true, nick: 'alice' }, 'converse has the bookmark from the server');

      const shotPath = path.join(tmp, 'converse.png');
      await page.screenshot({ path: shotPath });
      fs.mkdirSync(OUT_DIR, { recursive: true });
      fs.copyFileSync(shotPath, path.join(OUT_DIR, 'converse.png'));
      assert.deepEqual(second.errors, [], 'no page errors');
    });
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    for (const s of [first, second]) if (s) await s.context.close().catch(() => {});
    first = second = null;
    for (const p of [bob, probe]) if (p) await p.close().catch(() => {});
    bob = probe = null;
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});

/**
 * Waits for converse's next bookmark publish (XEP-0223: XEP-0048 in PEP, or
 * XEP-0402) after frame index `since`, and for Tern's answer, which must be
 * a result. Returns { node, publish, answer } (the XML as sent/received).
 */
async function bookmarkPublish(s, since, what) {
  const publish = (await waitForFrame(s, since,
    /^> <iq[^>]*type=["']set["'][\s\S]*<publish node=["'](storage:bookmarks|urn:xmpp:bookmarks:1)["']/, what)).slice(2);
  const node = publish.match(/<publish node=["']([^"']+)["']/)[1];
  const id = publish.match(/<iq[^>]* id=["']([^"']+)["']/)[1];
  const answer = (await waitForFrame(s, since, new RegExp(`^< <iq[^>]* id=["']${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']`),
    `Tern's answer to ${what} (iq ${id})`)).slice(2);
  assert.match(answer, /type=["']result["']/, `Tern accepted ${what}: ${publish}\n-> ${answer}`);
  return { node, publish, answer };
}

/** The first WebSocket frame (as the page logged it) after index `since` matching re. */
async function waitForFrame(s, since, re, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const f = (await s.framesNow(since)).find((x) => re.test(x));
    if (f) return f;
    if (Date.now() > deadline) throw new Error(`no WebSocket frame within ${timeout} ms: ${what} (${re})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The room's view is open in the page: its title (the room's name) is
 * visible, and its occupant list shows bob and alice.
 */
async function roomShown(page, room) {
  const view = page.locator(`converse-muc[jid="${room}"]`);
  const title = view.locator('.chatbox-title__text');
  await title.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal((await title.textContent()).trim(), room.split('@')[0], 'the room view\'s title');
  for (const nick of ['bob', 'alice']) {
    await view.locator('.occupant-nick', { hasText: new RegExp(`^\\s*${nick}\\s*$`) })
      .waitFor({ state: 'visible', timeout: WAIT });
  }
}

