// A real browser: Debian's Chromium, driven by playwright-core, loads a
// small strophe.js chat page (tests/web/page) from another origin than
// Tern's HTTP port (so CORS and the WebSocket Origin check are exercised),
// logs in over BOSH and then over WebSocket, chats with a slixmpp TCP
// client and shows the reply; the screenshot is checked for the reply.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';
import { logOnFailure, startServer, stopServer, TcpPeer, killAllChildren, WEB_DIR, makeTempDir, IS_TERN } from './harness.mjs';
import { closeHttpAgents } from './clients.mjs';
import { decodePng, distinctColours, differingPixels } from './png.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1000, height: 720 };
const OUT_DIR = path.join(WEB_DIR, 'out');

const STATIC = {
  '/index.html': [path.join(WEB_DIR, 'page', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(WEB_DIR, 'page', 'app.js'), 'text/javascript; charset=utf-8'],
  '/style.css': [path.join(WEB_DIR, 'page', 'style.css'), 'text/css; charset=utf-8'],
  '/lib/strophe.umd.min.js': [path.join(WEB_DIR, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js'),
    'text/javascript; charset=utf-8'],
};

/** Serves the page on 127.0.0.1 (a free port): a different origin than Tern. */
async function servePage() {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const entry = STATIC[p === '/' ? '/index.html' : p];
    if (!entry) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': entry[1], 'Cache-Control': 'no-store' });
    res.end(fs.readFileSync(entry[0]));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

describe('Chromium with a strophe.js page', { skip: !fs.existsSync(CHROMIUM) && `${CHROMIUM} missing (scripts/web-deps.sh)` }, () => {
  let srv;
  let pageServer;
  let browser;
  let tmp;
  const peers = [];

  before(async () => {
    tmp = makeTempDir('browser');
    srv = await startServer({ name: 'browser', subscriptions: [['alice@localhost', 'bob@localhost']] });
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
    for (const p of peers) await p.quit().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (pageServer) pageServer.close();
    closeHttpAgents();
    if (srv) await srv.stop();
    killAllChildren();
    if (tmp && !process.env.TERN_WEB_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function chat(t, transport) {
    const service = transport === 'bosh' ? srv.boshUrl : srv.wsUrl;
    const resource = `browser-${transport}`;
    const bob = await TcpPeer.start(srv, `bob@localhost/${transport}`);
    peers.push(bob);

    const context = await browser.newContext({ viewport: VIEWPORT });
    const page = await context.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    try {
      const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
      const q = new URLSearchParams({ service, jid: `alice@localhost/${resource}`, to: bob.jid });
      await page.goto(`${pageOrigin}/index.html?${q}`, { timeout: 20000 });
      assert.notEqual(new URL(service).origin, pageOrigin, 'the page and Tern are different origins');

      await page.fill('#password', srv.password('alice@localhost'));
      await page.click('#connect');
      try {
        await page.locator('#status').filter({ hasText: /^online$/ }).waitFor({ timeout: 30000 });
      } catch (e) {
        const status = await page.textContent('#status');
        throw new Error(`page did not get online over ${transport}: status '${status}'; console:\n${consoleLines.join('\n')}`);
      }
      const me = await page.textContent('#me');
      assert.equal(me, `alice@localhost/${resource}`);

      // presence both ways: bob sees the browser, the page lists bob
      await bob.nextPresence((p) => p.from === me && !p.type, 10000, 'the browser user available');
      await page.locator('#presence li', { hasText: `${bob.jid}: available` }).waitFor({ timeout: 10000 });

      // browser -> TCP
      const hello = `Hello from Chromium over ${transport}`;
      await page.fill('#text', hello);
      await page.click('#send');
      const got = await bob.nextMessage((m) => m.body === hello, 10000, 'the message from the browser');
      assert.equal(got.from, me);

      // TCP -> browser
      const reply = `Reply over ${transport}: ${Math.random().toString(36).slice(2, 10)}`;
      await bob.send(me, reply);
      const li = page.locator('#messages li.in', { hasText: reply });
      await li.waitFor({ state: 'visible', timeout: 10000 });
      assert.equal(await li.locator('.from').textContent(), `${bob.jid}:`);
      const replyText = li.locator('.body');
      assert.equal(await replyText.textContent(), reply);

      // the screenshot shows the page with the reply
      const shotPath = path.join(tmp, `browser-${transport}.png`);
      const shot = await page.screenshot({ path: shotPath });
      fs.mkdirSync(OUT_DIR, { recursive: true });
      fs.copyFileSync(shotPath, path.join(OUT_DIR, transport === 'bosh' ? 'browser.png' : `browser-${transport}.png`));
      const img = decodePng(shot);
      assert.equal(img.width, VIEWPORT.width, 'screenshot width');
      assert.equal(img.height, VIEWPORT.height, 'screenshot height');
      assert.ok(distinctColours(img) > 16, 'the screenshot is not blank');

      assert.ok(await replyText.isVisible(), 'the reply is visible');
      const box = await replyText.boundingBox();
      assert.ok(box && box.width > 10 && box.height > 5, `reply box ${JSON.stringify(box)}`);
      assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= img.width && box.y + box.height <= img.height,
        `the reply (${JSON.stringify(box)}) lies inside the screenshot`);
      const region = {
        x: Math.floor(box.x), y: Math.floor(box.y),
        width: Math.min(Math.ceil(box.width), img.width - Math.floor(box.x)),
        height: Math.min(Math.ceil(box.height), img.height - Math.floor(box.y)),
      };
      assert.ok(distinctColours(img, region) > 2, 'the reply region has glyphs (anti-aliased text)');

      // the same page with the reply's text hidden (its box kept) must
      // differ inside that box: the pixels there are the rendered text
      await replyText.evaluate((el) => { el.style.visibility = 'hidden'; });
      const blank = decodePng(await page.screenshot());
      await replyText.evaluate((el) => { el.style.visibility = ''; });
      const diff = differingPixels(img, blank, region);
      assert.ok(diff > 100, `the reply's text changes ${diff} pixels of its ${region.width}x${region.height} box`);
      const outside = differingPixels(img, blank) - diff;
      assert.equal(outside, 0, 'hiding the reply changes nothing outside its box');
      await replyText.screenshot({ path: path.join(tmp, `reply-${transport}.png`) });

      assert.deepEqual(consoleLines.filter((l) => l.startsWith('pageerror')), [], 'no page errors');
    } finally {
      await context.close();
      await bob.quit();
    }
  }

  it('logs in over BOSH, sends to a TCP user and shows the reply', logOnFailure(() => srv, async (t) => {
    await chat(t, 'bosh');
  }));

  it('logs in over WebSocket, sends to a TCP user and shows the reply', logOnFailure(() => srv, async (t) => {
    await chat(t, 'websocket');
  }));

  it('server exits cleanly (SIGTERM, exit 0, no sanitizer report)', { skip: !IS_TERN && 'Tern only' }, async () => {
    closeHttpAgents();
    const s = srv;
    srv = null;
    await stopServer(s);
  });
});
