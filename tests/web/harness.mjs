// Test harness for the web transport tests: starts real Tern servers on
// loopback (like tests/e2e/conftest.py), drives slixmpp TCP peers
// (tcp_peer.py) and keeps track of every child process so that all of them
// are killed at the end, even when a test fails or the runner is interrupted.
//
//   TERN_BUILD          build directory with tern and ternctl (default: repo/build-asan)
//   TERN_TEST_WORKERS   the server's `workers` option (default 1)
//   TERN_WEB_SERVER     "tern" (default) or "prosody": a Prosody 0.12 with
//                       mod_bosh/mod_websocket instead, to check the tests
//                       themselves (Tern-specific checks skip)
//   TERN_WEB_KEEP       keep the temporary directories

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(WEB_DIR, '..', '..');
export const PYTHON = '/usr/bin/python3';
export const SERVER_KIND = process.env.TERN_WEB_SERVER || 'tern';
export const IS_TERN = SERVER_KIND === 'tern';

const READY_TIMEOUT = 20000;
const STOP_TIMEOUT = 10000;
export const SANITIZER_PATTERNS = ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer'];

export const USERS = {
  'alice@localhost': 'alice-secret',
  'bob@localhost': 'bob-secret',
  'carol@localhost': 'carol-secret',
  'dave@localhost': 'dave-secret',
  'zoe@localhost': 'p\u00e4ssw\u00f6rd-\u00df\u20ac',
};

export const DEFAULT_HOSTS = {
  localhost: { registration: 'no' },
  'example.org': {},
};

// The same test-friendly defaults as tests/e2e/conftest.py.
export const DEFAULT_OPTIONS = {
  log_level: 'debug',
  listen: '127.0.0.1',
  require_encryption: 'yes',
  max_stanza_size: '262144',
  max_output_buffer: '1M',
  handshake_timeout: '60',
  idle_timeout: '600',
  sasl_iterations: '4096',
  auth_max_attempts: '3',
  auth_ip_limit: '0',
  auth_account_limit: '0',
  auth_window: '300',
  hide_version: 'no',
  workers: process.env.TERN_TEST_WORKERS || '1',
  // the web listener: plain HTTP on a free loopback port (set by start()),
  // no HTTPS unless a test asks for it
  http_listen: '127.0.0.1',
  https_port: '0',
};

// ------------------------------------------------------------ children

const CHILDREN = new Set();

export function track(child) {
  CHILDREN.add(child);
  child.once('exit', () => CHILDREN.delete(child));
  return child;
}

export function killAllChildren() {
  for (const c of CHILDREN) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  CHILDREN.clear();
}

process.once('exit', killAllChildren);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAllChildren(); process.exit(128 + os.constants.signals[sig]); });
}

// ------------------------------------------------------------ utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects with Error(`timeout: what`) unless p settles within ms. */
export function withTimeout(p, ms, what = 'operation') {
  let timer;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls fn() until it returns a truthy value; returns it. */
export async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/** n distinct free TCP ports on 127.0.0.1 (held open together, then released). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export function makeTempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tern-web-${prefix.replace(/[^A-Za-z0-9_]+/g, '_').slice(-40)}-`));
}

/**
 * A queue of events that tests wait on with a predicate: next(pred) returns
 * (and removes) the oldest matching event, waiting up to timeout ms for one.
 * Non-matching events stay queued for other waiters.
 */
export class Inbox {
  constructor(name = 'inbox') {
    this.name = name;
    this.items = [];
    this.all = [];
    this.waiters = [];
  }

  push(item) {
    this.all.push(item);
    for (const w of this.waiters) {
      if (w.pred(item)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(item);
        return;
      }
    }
    this.items.push(item);
  }

  next(pred = () => true, timeout = 10000, what = 'event') {
    const i = this.items.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no ${what} within ${timeout} ms; have: ${JSON.stringify(this.items.slice(-10))}`));
      }, timeout);
      this.waiters.push(w);
    });
  }

  /** Asserts that no matching event arrives within ms. */
  async none(pred, ms = 1000, what = 'event') {
    try {
      const got = await this.next(pred, ms, what);
      throw new Error(`${this.name}: unexpected ${what}: ${JSON.stringify(got)}`);
    } catch (e) {
      if (!/^.*: no .* within/.test(e.message)) throw e;
    }
  }
}

export const bare = (jid) => String(jid).split('/')[0];

// ------------------------------------------------------------ Tern

function childEnv() {
  const env = { ...process.env };
  env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=16';
  env.UBSAN_OPTIONS ??= 'print_stacktrace=1:halt_on_error=1';
  return env;
}

export function ternBuildDir() {
  if (process.env.TERN_BUILD) return path.resolve(process.env.TERN_BUILD);
  for (const cand of ['build-asan', 'build']) {
    if (fs.existsSync(path.join(REPO, cand, 'tern'))) return path.join(REPO, cand);
  }
  return path.join(REPO, 'build-asan');
}

export function sanitizerFindings(text) {
  return SANITIZER_PATTERNS.filter((p) => text.includes(p));
}

export class TernServer {
  constructor({ name = 'tern', hosts = DEFAULT_HOSTS, options = {} } = {}) {
    this.kind = 'tern';
    this.tcpMech = 'SCRAM-SHA-256';
    this.build = ternBuildDir();
    this.binary = path.join(this.build, 'tern');
    this.ctl = path.join(this.build, 'ternctl');
    this.dir = makeTempDir(name);
    this.dataDir = path.join(this.dir, 'data');
    this.cfgPath = path.join(this.dir, 'tern.conf');
    this.logPath = path.join(this.dir, 'tern.log');
    this.hosts = hosts;
    this.options = { ...DEFAULT_OPTIONS };
    for (const [k, v] of Object.entries(options)) this.options[k] = String(v);
    this.host = '127.0.0.1';
    this.users = {};
    this.problems = [];
    this.proc = null;
    this.logFd = null;
  }

  get httpBase() { return `http://127.0.0.1:${this.httpPort}`; }
  get httpsBase() { return `https://127.0.0.1:${this.httpsPort}`; }
  get boshPath() { return this.options.bosh_path || '/http-bind'; }
  get wsPath() { return this.options.websocket_path || '/xmpp-websocket'; }
  get boshUrl() { return this.httpBase + this.boshPath; }
  get wsUrl() { return `ws://127.0.0.1:${this.httpPort}${this.wsPath}`; }

  writeConfig() {
    const opts = { ...this.options };
    opts.data_dir = this.dataDir;
    opts.c2s_port = String(this.c2sPort);
    opts.c2s_tls_port = String(this.tlsPort);
    opts.http_port = String(this.httpPort);
    if (this.wantHttps) opts.https_port = String(this.httpsPort);
    const lines = ['# written by tests/web/harness.mjs', '[server]'];
    for (const [k, v] of Object.entries(opts)) lines.push(`${k} = ${v}`);
    for (const [domain, hopts] of Object.entries(this.hosts)) {
      lines.push('', `[host ${domain}]`);
      for (const [k, v] of Object.entries(hopts)) lines.push(`${k} = ${v}`);
    }
    fs.writeFileSync(this.cfgPath, lines.join('\n') + '\n');
  }

  async start() {
    if (!fs.existsSync(this.binary) || !fs.existsSync(this.ctl)) {
      throw new Error(`Tern binaries not found in ${this.build} (set TERN_BUILD)`);
    }
    this.wantHttps = this.options.https_port !== '0';
    for (let attempt = 1; attempt <= 3; attempt++) {
      [this.c2sPort, this.tlsPort, this.httpPort, this.httpsPort] = await freePorts(4);
      this.writeConfig();
      fs.appendFileSync(this.logPath, `---- start attempt ${attempt}, ports ${this.c2sPort}/${this.tlsPort}/http ${this.httpPort}` +
        `${this.wantHttps ? `/https ${this.httpsPort}` : ''}\n`);
      this.logFd = fs.openSync(this.logPath, 'a');
      this.proc = track(spawn(this.binary, ['-c', this.cfgPath], {
        stdio: ['ignore', this.logFd, this.logFd], env: childEnv(), cwd: this.dir,
      }));
      this.exited = new Promise((r) => this.proc.once('exit', (code, sig) => r({ code, sig })));
      this.exitStatus = null;
      this.exited.then((s) => { this.exitStatus = s; });
      if (await this.waitReady()) return this;
      const log = this.logText();
      const died = this.exitStatus;
      if (!died) { this.proc.kill('SIGKILL'); await this.exited; }
      fs.closeSync(this.logFd);
      this.logFd = null;
      if (died && /address already in use|EADDRINUSE/i.test(log)) continue;
      throw new Error(`tern did not become ready within ${READY_TIMEOUT / 1000}s ` +
        `(exit ${died ? JSON.stringify(died) : 'none'}); log:\n${log.slice(-8000)}`);
    }
    throw new Error('tern could not bind its ports after 3 attempts');
  }

  async waitReady() {
    const deadline = Date.now() + READY_TIMEOUT;
    while (Date.now() < deadline) {
      const tail = this.logText().split('---- start attempt').pop();
      if (/\bready\b/i.test(tail)) return true;
      if (this.exitStatus) return false;
      await sleep(50);
    }
    return false;
  }

  logText() {
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  logTail(n = 80) {
    return this.logText().split('\n').slice(-n).join('\n');
  }

  /** Current log length: pass it to waitForLog to look only at later lines. */
  logMark() { return this.logText().length; }

  async waitForLog(re, { since = 0, timeout = 10000 } = {}) {
    return waitFor(() => {
      const m = this.logText().slice(since).match(re);
      return m ? m[0] : null;
    }, { timeout, what: `log line matching ${re}` });
  }

  ternctl(args, input) {
    const r = spawnSync(this.ctl, ['-c', this.cfgPath, ...args], {
      input, encoding: 'utf8', env: childEnv(), cwd: this.dir, timeout: 60000,
    });
    const found = sanitizerFindings(r.stderr || '');
    if (found.length) this.problems.push(`sanitizer report from ternctl ${args.join(' ')}:\n${r.stderr}`);
    return r;
  }

  async addUser(jid, password) {
    const r = this.ternctl(['user', 'add', jid], password + '\n');
    if (r.status !== 0) throw new Error(`ternctl user add ${jid}: exit ${r.status}: ${r.stderr}`);
    this.users[jid] = password;
  }

  password(jid) { return this.users[bare(jid)]; }

  /** SIGTERM, wait, kill; returns a list of problems (empty = clean). */
  async stop() {
    const problems = [];
    if (!this.proc) return problems;
    if (this.exitStatus) {
      problems.push(`tern died during the test (${JSON.stringify(this.exitStatus)})`);
    } else {
      this.proc.kill('SIGTERM');
      let st;
      try {
        st = await withTimeout(this.exited, STOP_TIMEOUT, 'tern exit after SIGTERM');
      } catch {
        this.proc.kill('SIGKILL');
        await this.exited;
        problems.push(`tern did not exit within ${STOP_TIMEOUT / 1000}s of SIGTERM (killed)`);
      }
      if (st && st.code !== 0) problems.push(`tern exited with ${JSON.stringify(st)} after SIGTERM`);
    }
    if (this.logFd !== null) { fs.closeSync(this.logFd); this.logFd = null; }
    const found = sanitizerFindings(this.logText());
    if (found.length) problems.push(`sanitizer report in the tern log (${found.join(', ')})`);
    problems.push(...this.problems);
    if (problems.length) problems.push(`log (${this.logPath}), last lines:\n${this.logTail(150)}`);
    this.proc = null;
    if (!problems.length && !this.keep && !process.env.TERN_WEB_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
    else if (this.keep) console.log(`tern directory kept: ${this.dir}`);
    return problems;
  }
}

// ------------------------------------------------------------ Prosody (checking the tests)

export class ProsodyServer {
  constructor({ name = 'prosody', options = {} } = {}) {
    this.kind = 'prosody';
    this.inactivity = parseInt(options.bosh_max_inactivity || '60', 10);
    this.tcpMech = 'SCRAM-SHA-1'; // Prosody 0.12 has no SCRAM-SHA-256
    this.dir = makeTempDir(name);
    this.dataDir = path.join(this.dir, 'data');
    this.cfgPath = path.join(this.dir, 'prosody.cfg.lua');
    this.logPath = path.join(this.dir, 'prosody.log');
    this.host = '127.0.0.1';
    this.users = {};
    this.problems = [];
    this.proc = null;
    this.options = { ...options };
  }

  get httpBase() { return `http://127.0.0.1:${this.httpPort}`; }
  get boshPath() { return '/http-bind'; }
  get wsPath() { return '/xmpp-websocket'; }
  get boshUrl() { return this.httpBase + this.boshPath; }
  get wsUrl() { return `ws://127.0.0.1:${this.httpPort}${this.wsPath}`; }

  async start() {
    fs.mkdirSync(this.dataDir, { recursive: true, mode: 0o750 });
    const key = path.join(this.dir, 'localhost.key');
    const crt = path.join(this.dir, 'localhost.crt');
    spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-keyout', key, '-out', crt], { stdio: 'ignore' });
    [this.c2sPort, this.httpPort] = await freePorts(2);
    const q = (s) => JSON.stringify(s);
    fs.writeFileSync(this.cfgPath, `
run_as_root = true
pidfile = ${q(path.join(this.dir, 'prosody.pid'))}
data_path = ${q(this.dataDir)}
plugin_paths = {}
log = { { levels = { min = "debug" }, to = "file", filename = ${q(this.logPath)} } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${this.c2sPort} }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { ${this.httpPort} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "posix", "bosh", "websocket", "smacks", "http" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
c2s_require_encryption = true
consider_bosh_secure = true
consider_websocket_secure = true
cross_domain_bosh = true
cross_domain_websocket = true
http_cors_override = { bosh = { enabled = true }, websocket = { enabled = true } }
smacks_hibernation_time = 60
bosh_max_inactivity = ${this.inactivity}
ssl = { key = ${q(key)}, certificate = ${q(crt)} }
VirtualHost "localhost"
`);
    fs.writeFileSync(this.logPath, '');
    this.logFd = fs.openSync(path.join(this.dir, 'prosody.out'), 'a');
    this.proc = track(spawn('prosody', ['--config', this.cfgPath, '-F'], {
      stdio: ['ignore', this.logFd, this.logFd], cwd: this.dir,
    }));
    this.exited = new Promise((r) => this.proc.once('exit', (code, sig) => r({ code, sig })));
    await waitFor(() => this.tcpOpen(this.httpPort), { timeout: READY_TIMEOUT, what: 'prosody http port' });
    await waitFor(() => this.tcpOpen(this.c2sPort), { timeout: READY_TIMEOUT, what: 'prosody c2s port' });
    return this;
  }

  tcpOpen(port) {
    return new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
  }

  logText() { try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; } }
  logTail(n = 80) { return this.logText().split('\n').slice(-n).join('\n'); }
  logMark() { return this.logText().length; }
  async waitForLog(re, { since = 0, timeout = 10000 } = {}) {
    return waitFor(() => { const m = this.logText().slice(since).match(re); return m ? m[0] : null; },
      { timeout, what: `log line matching ${re}` });
  }

  async addUser(jid, password) {
    const [user, host] = bare(jid).split('@');
    const r = spawnSync('prosodyctl', ['--config', this.cfgPath, 'register', user, host, password],
      { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`prosodyctl register ${jid}: exit ${r.status}: ${r.stdout} ${r.stderr}`);
    this.users[bare(jid)] = password;
  }

  password(jid) { return this.users[bare(jid)]; }

  async stop() {
    if (!this.proc) return [];
    this.proc.kill('SIGTERM');
    try { await withTimeout(this.exited, STOP_TIMEOUT, 'prosody exit'); } catch { this.proc.kill('SIGKILL'); await this.exited; }
    fs.closeSync(this.logFd);
    this.proc = null;
    if (!this.keep && !process.env.TERN_WEB_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
    return [];
  }
}

/**
 * Starts a server (Tern, or Prosody with TERN_WEB_SERVER=prosody), creates
 * the accounts and, for each [a, b] of subscriptions, a mutual presence
 * subscription between a and b.
 */
export async function startServer({ name = 'web', users = USERS, hosts = DEFAULT_HOSTS, options = {},
  subscriptions = [] } = {}) {
  const srv = IS_TERN ? new TernServer({ name, hosts, options }) : new ProsodyServer({ name, options });
  try {
    await srv.start();
    for (const [jid, pw] of Object.entries(users)) await srv.addUser(jid, pw);
    if (subscriptions.length) await subscribeAll(srv, subscriptions);
  } catch (e) {
    const problems = await srv.stop();
    if (problems.length) e.message += '\n' + problems.join('\n');
    throw e;
  }
  return srv;
}

/**
 * Wraps a test function: when it fails, the error gets the tail of the
 * server's log and the server's directory is kept (its path is printed).
 */
export function logOnFailure(getServer, fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (e) {
      const srv = getServer();
      if (srv) {
        srv.keep = true;
        const extra = `\n--- ${srv.kind} log ${srv.logPath}, last lines:\n${srv.logTail(60)}`;
        if (e && typeof e === 'object') {
          try {
            const orig = String(e.message);
            e.message = orig + extra;
            if (typeof e.stack === 'string') {
              e.stack = e.stack.includes(orig) ? e.stack.replace(orig, orig + extra) : e.stack + extra;
            }
          } catch { /* read-only */ }
        }
      }
      throw e;
    }
  };
}

/** Stops the server; throws with the problems (exit status, sanitizer reports). */
export async function stopServer(srv) {
  if (!srv) return;
  const problems = await srv.stop();
  if (problems.length) throw new Error(`server problems:\n${problems.join('\n')}`);
}

async function subscribeAll(srv, pairs) {
  const accounts = {};
  for (const [a, b] of pairs) {
    accounts[bare(a)] = srv.password(a);
    accounts[bare(b)] = srv.password(b);
  }
  const cfg = { port: srv.c2sPort, mech: srv.tcpMech, accounts, pairs: pairs.map(([a, b]) => [bare(a), bare(b)]) };
  const child = track(spawn(PYTHON, [path.join(WEB_DIR, 'tcp_peer.py'), '--subscribe', JSON.stringify(cfg)],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const [code] = await withTimeout(once(child, 'exit'), 70000, 'subscription setup').catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
  if (code !== 0 || !out.includes('"subscribed"')) throw new Error(`subscription setup failed (exit ${code}): ${out}`);
}

// ------------------------------------------------------------ slixmpp TCP peer

export class TcpPeer {
  /** Starts tcp_peer.py for jid (with a resource) and waits for its session. */
  static async start(srv, jid, { timeout = 30000, mech } = {}) {
    const p = new TcpPeer(srv, jid, mech);
    await p.ready(timeout);
    return p;
  }

  constructor(srv, jid, mech) {
    this.name = `tcp:${jid}`;
    this.events = new Inbox(this.name);
    this.stderr = '';
    this.seq = 0;
    const cfg = { jid, password: srv.password(jid), port: srv.c2sPort, host: '127.0.0.1' };
    cfg.mech = mech || srv.tcpMech;
    this.child = track(spawn(PYTHON, [path.join(WEB_DIR, 'tcp_peer.py'), JSON.stringify(cfg)],
      { stdio: ['pipe', 'pipe', 'pipe'] }));
    this.exited = new Promise((r) => this.child.once('exit', (code, sig) => r({ code, sig })));
    let buf = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        try { this.events.push(JSON.parse(line)); } catch { this.events.push({ event: 'junk', line }); }
      }
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    this.child.stdin.on('error', () => {});
  }

  async ready(timeout) {
    const ev = await Promise.race([
      this.events.next((e) => e.event === 'ready' || e.event === 'error', timeout, 'ready'),
      this.exited.then((s) => ({ event: 'error', message: `tcp_peer exited ${JSON.stringify(s)}` })),
    ]).catch((e) => ({ event: 'error', message: e.message }));
    if (ev.event !== 'ready') {
      this.child.kill('SIGKILL');
      throw new Error(`${this.name}: login failed: ${ev.message}\n${this.stderr}`);
    }
    this.jid = ev.jid;
    return this;
  }

  command(obj) {
    const id = `c${++this.seq}`;
    this.child.stdin.write(JSON.stringify({ ...obj, id }) + '\n');
    return this.events.next((e) => (e.event === 'ok' && e.id === id) || e.event === 'error', 10000, `ack of ${obj.cmd}`)
      .then((e) => {
        if (e.event === 'error') throw new Error(`${this.name}: ${e.message}`);
        return e;
      });
  }

  send(to, body, type = 'chat') { return this.command({ cmd: 'send', to, body, type }); }

  presence(opts = {}) { return this.command({ cmd: 'presence', ...opts }); }

  nextMessage(pred = () => true, timeout = 10000, what = 'message') {
    return this.events.next((e) => e.event === 'message' && pred(e), timeout, what);
  }

  nextPresence(pred = () => true, timeout = 10000, what = 'presence') {
    return this.events.next((e) => e.event === 'presence' && pred(e), timeout, what);
  }

  async quit() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      this.child.stdin.end(JSON.stringify({ cmd: 'quit' }) + '\n');
      await withTimeout(this.exited, 8000, `${this.name} quit`);
    } catch {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}
