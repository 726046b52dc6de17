// A small PNG decoder (8-bit greyscale/RGB/RGBA, not interlaced: what
// Chromium's screenshots are) for pixel checks without extra packages.

import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Returns {width, height, channels, data (rows of width*channels bytes)}. */
export function decodePng(buf) {
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG (signature)');
  let off = 8;
  let ihdr = null;
  const idat = [];
  let sawEnd = false;
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (data.length !== len) throw new Error(`PNG chunk ${type} truncated`);
    const crc = buf.readUInt32BE(off + 8 + len);
    if (zlib.crc32 && zlib.crc32(buf.subarray(off + 4, off + 8 + len)) >>> 0 !== crc) {
      throw new Error(`PNG chunk ${type}: bad CRC`);
    }
    if (type === 'IHDR') {
      ihdr = {
        width: data.readUInt32BE(0), height: data.readUInt32BE(4), bitDepth: data[8],
        colorType: data[9], interlace: data[12],
      };
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      sawEnd = true;
      break;
    }
    off += 12 + len;
  }
  if (!ihdr) throw new Error('PNG without IHDR');
  if (!sawEnd) throw new Error('PNG without IEND');
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[ihdr.colorType];
  if (ihdr.bitDepth !== 8 || !channels || ihdr.interlace !== 0) {
    throw new Error(`unsupported PNG (bit depth ${ihdr.bitDepth}, colour type ${ihdr.colorType}, interlace ${ihdr.interlace})`);
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = ihdr.width * channels;
  if (raw.length !== (stride + 1) * ihdr.height) throw new Error('PNG image data has the wrong size');
  const out = Buffer.alloc(stride * ihdr.height);
  for (let y = 0; y < ihdr.height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = out.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? out.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? row[x - channels] : 0;
      const b = prev ? prev[x] : 0;
      const c = prev && x >= channels ? prev[x - channels] : 0;
      let v;
      switch (filter) {
        case 0: v = src[x]; break;
        case 1: v = src[x] + a; break;
        case 2: v = src[x] + b; break;
        case 3: v = src[x] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = src[x] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`PNG filter ${filter}`);
      }
      row[x] = v & 0xff;
    }
  }
  return { width: ihdr.width, height: ihdr.height, channels, data: out };
}

/** [r, g, b] of pixel (x, y). */
export function pixel(img, x, y) {
  const i = (y * img.width + x) * img.channels;
  if (img.channels < 3) return [img.data[i], img.data[i], img.data[i]];
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

/** Number of distinct colours in a region (capped at `cap`). */
export function distinctColours(img, { x = 0, y = 0, width = img.width, height = img.height } = {}, cap = 1000) {
  const seen = new Set();
  for (let j = y; j < y + height; j++) {
    for (let i = x; i < x + width; i++) {
      seen.add(pixel(img, i, j).join(','));
      if (seen.size >= cap) return seen.size;
    }
  }
  return seen.size;
}

/** Pixels that differ between two images of the same size, inside a region. */
export function differingPixels(a, b, { x = 0, y = 0, width = a.width, height = a.height } = {}) {
  if (a.width !== b.width || a.height !== b.height) throw new Error('images of different sizes');
  let n = 0;
  for (let j = y; j < y + height; j++) {
    for (let i = x; i < x + width; i++) {
      const p = pixel(a, i, j);
      const q = pixel(b, i, j);
      if (p[0] !== q[0] || p[1] !== q[1] || p[2] !== q[2]) n++;
    }
  }
  return n;
}
