// A hand-made WebSocket client (RFC 6455) for protocol checks that a
// library would not let us do: no subprotocol, unmasked frames, fragments.

import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

export function acceptFor(key) {
  return crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
}

/** Encodes one frame; mask: true (random key), false, or a 4-byte Buffer. */
export function frame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const len = data.length;
  let hdr;
  if (len < 126) {
    hdr = Buffer.alloc(2);
    hdr[1] = len;
  } else if (len < 65536) {
    hdr = Buffer.alloc(4);
    hdr[1] = 126;
    hdr.writeUInt16BE(len, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[1] = 127;
    hdr.writeBigUInt64BE(BigInt(len), 2);
  }
  hdr[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([hdr, data]);
  hdr[1] |= 0x80;
  const key = Buffer.isBuffer(mask) ? mask : crypto.randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([hdr, key, masked]);
}

/**
 * Opens a TCP (or TLS) connection and sends an upgrade request. Resolves
 * {status, headers, conn} once the response head is in; conn reads frames.
 */
export function wsUpgrade({ host = '127.0.0.1', port, path = '/xmpp-websocket', protocol = 'xmpp', origin,
  useTls = false, extraHeaders = {}, key = crypto.randomBytes(16).toString('base64'), timeout = 10000 }) {
  return new Promise((resolve, reject) => {
    const sock = useTls
      ? tls.connect({ host, port, rejectUnauthorized: false, servername: 'localhost' })
      : net.connect(port, host);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`WebSocket upgrade: no response within ${timeout} ms`)); }, timeout);
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      sock.off('data', onData);
      const head = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(head[0].split(' ')[1]);
      const headers = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) {
          const k = line.slice(0, i).trim().toLowerCase();
          headers[k] = headers[k] ? `${headers[k]}, ${line.slice(i + 1).trim()}` : line.slice(i + 1).trim();
        }
      }
      resolve({ status, statusLine: head[0], headers, key, conn: new RawWs(sock, buf.subarray(end + 4)) });
    };
    sock.on('data', onData);
    sock.once('error', (e) => { clearTimeout(timer); reject(e); });
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: ${host}:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
    ];
    if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    if (origin) lines.push(`Origin: ${origin}`);
    for (const [k, v] of Object.entries(extraHeaders)) lines.push(`${k}: ${v}`);
    sock.write(lines.join('\r\n') + '\r\n\r\n');
  });
}

/** Frame reader over an upgraded socket. */
export class RawWs {
  constructor(sock, initial) {
    this.sock = sock;
    this.buf = initial;
    this.closed = false;
    this.waiters = [];
    this.frames = [];
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this._parse(); });
    sock.on('close', () => { this.closed = true; this._wake(); });
    sock.on('error', () => {});
    this._parse();
  }

  _parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10; }
      const masked = (b[1] & 0x80) !== 0;
      if (masked) off += 4;
      if (b.length < off + len) break;
      let payload = b.subarray(off, off + len);
      if (masked) {
        const key = b.subarray(off - 4, off);
        payload = Buffer.from(payload.map((x, i) => x ^ key[i & 3]));
      }
      this.frames.push({ fin: (b[0] & 0x80) !== 0, opcode: b[0] & 0x0f, masked, payload: Buffer.from(payload) });
      this.buf = b.subarray(off + len);
    }
    this._wake();
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  send(buf) { this.sock.write(buf); }
  sendText(text) { this.send(frame(OP.TEXT, text)); }

  /** The next frame (or null once the connection closed without one). */
  async next(timeout = 10000, what = 'frame') {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (this.frames.length) return this.frames.shift();
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw WebSocket: no ${what} within ${timeout} ms`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  /** The next text message (answering pings is not done: none expected). */
  async nextText(timeout = 10000, what = 'text message') {
    const f = await this.next(timeout, what);
    if (!f) throw new Error(`raw WebSocket: connection closed instead of ${what}`);
    if (f.opcode === OP.CLOSE) throw new Error(`raw WebSocket: close frame (${closeCode(f)}) instead of ${what}: ${f.payload.subarray(2)}`);
    if (f.opcode !== OP.TEXT) throw new Error(`raw WebSocket: opcode ${f.opcode} instead of ${what}`);
    return f.payload.toString('utf8');
  }

  /** Resolves when the TCP connection is closed (or rejects after timeout). */
  async waitClosed(timeout = 10000) {
    const deadline = Date.now() + timeout;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw WebSocket: connection still open after ${timeout} ms`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  destroy() { this.sock.destroy(); }
}

export function closeCode(f) {
  return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
}
