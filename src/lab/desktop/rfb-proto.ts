// PURE. The RFB (VNC) protocol, version 3.8 (RFC 6143), as far as a measuring viewer needs it:
// encoders for the client's messages, an incremental parser of the server's messages that streams
// Raw pixel data instead of buffering it, and the server-side encoders the fake server and the tests
// use. No I/O: bytes in, events out.
import { AppError } from '../../core/errors.js';

/** A violation of RFB by the peer (or a message this viewer did not ask for). */
export class RfbProtocolError extends AppError {
  constructor(message: string) {
    super('RFB_PROTOCOL', message);
    this.name = 'RfbProtocolError';
  }
}

export interface PixelFormat {
  bitsPerPixel: 8 | 16 | 32;
  depth: number;
  bigEndian: boolean;
  trueColour: boolean;
  redMax: number;
  greenMax: number;
  blueMax: number;
  redShift: number;
  greenShift: number;
  blueShift: number;
}

/** 32 bits per pixel, little-endian 0x00RRGGBB: what X servers hold at depth 24. */
export const PF_RGB888: PixelFormat = {
  bitsPerPixel: 32,
  depth: 24,
  bigEndian: false,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
};

export const ENCODING = {
  raw: 0,
  copyRect: 1,
  /** pseudo-encoding: the framebuffer changed size (rect w × h is the new size, no data) */
  desktopSize: -223,
  /** pseudo-encoding: the update ends here (the header's count was 0xffff) */
  lastRect: -224,
} as const;

export const SECURITY_NONE = 1;
export const MAX_FB_SIDE = 16384;
/** Longest server text (failure reasons, cut text, desktop name) this viewer accepts. */
export const MAX_TEXT_BYTES = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Bytes

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  get length(): number {
    return this.size;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.size + chunk.length > this.maxBytes) {
      throw new RfbProtocolError(`Cannot buffer ${chunk.length} more bytes from the server: ${this.size} are already waiting and the bound is ${this.maxBytes}`);
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** Exactly n bytes (n ≤ length), copied only when they span chunks. */
  take(n: number): Uint8Array {
    if (n > this.size) throw new RangeError(`take(${n}) with ${this.size} buffered`);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(n - filled, c.length - this.head);
      out.set(c.subarray(this.head, this.head + k), filled);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  /** Up to n bytes from the front chunk, without copying (for streaming pixel data). */
  takeSome(n: number): Uint8Array {
    const c = this.chunks[0];
    if (c === undefined || n <= 0) return new Uint8Array(0);
    const k = Math.min(n, c.length - this.head);
    const out = c.subarray(this.head, this.head + k);
    this.advance(k);
    return out;
  }

  private advance(n: number): void {
    this.head += n;
    this.size -= n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0]!.length) {
      this.head -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}

const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
const s32 = (b: Uint8Array, o: number): number => u32(b, o) | 0;

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 255;
  b[o + 1] = v & 255;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 255;
  b[o + 1] = (v >>> 16) & 255;
  b[o + 2] = (v >>> 8) & 255;
  b[o + 3] = v & 255;
}

function ascii(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += String.fromCharCode(c);
  return s;
}
export function asciiBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}
/** UTF-8 decoding where available; RFB text is Latin-1 or UTF-8 in practice. */
export function text(b: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return ascii(b);
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake

export interface RfbVersion {
  major: number;
  minor: number;
}

/** The 12-byte ProtocolVersion message ("RFB 003.008\n"). */
export function parseVersion(b: Uint8Array): RfbVersion {
  const s = ascii(b);
  const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(s);
  if (m === null) throw new RfbProtocolError(`The server's greeting is not an RFB ProtocolVersion: ${JSON.stringify(s)} (is this port a VNC server?)`);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

export function encodeVersion(v: RfbVersion): Uint8Array {
  return asciiBytes(`RFB ${String(v.major).padStart(3, '0')}.${String(v.minor).padStart(3, '0')}\n`);
}

/**
 * The version this viewer speaks with a server offering `server`: 3.8 for ≥ 3.8, 3.7, or 3.3 for
 * anything else of major version 3 (RFC 6143 §7.1.1: unknown minors are treated as 3.3).
 */
export function chooseVersion(server: RfbVersion): RfbVersion {
  if (server.major !== 3) throw new RfbProtocolError(`The server speaks RFB ${server.major}.${server.minor}; this viewer speaks 3.3, 3.7 and 3.8`);
  if (server.minor >= 8) return { major: 3, minor: 8 };
  if (server.minor === 7) return { major: 3, minor: 7 };
  return { major: 3, minor: 3 };
}

export function encodePixelFormat(pf: PixelFormat): Uint8Array {
  const b = new Uint8Array(16);
  b[0] = pf.bitsPerPixel;
  b[1] = pf.depth;
  b[2] = pf.bigEndian ? 1 : 0;
  b[3] = pf.trueColour ? 1 : 0;
  put16(b, 4, pf.redMax);
  put16(b, 6, pf.greenMax);
  put16(b, 8, pf.blueMax);
  b[10] = pf.redShift;
  b[11] = pf.greenShift;
  b[12] = pf.blueShift;
  return b;
}

export function decodePixelFormat(b: Uint8Array, o = 0): PixelFormat {
  const bpp = b[o]!;
  if (bpp !== 8 && bpp !== 16 && bpp !== 32) throw new RfbProtocolError(`Pixel format has ${bpp} bits per pixel; RFB allows 8, 16 or 32`);
  return {
    bitsPerPixel: bpp,
    depth: b[o + 1]!,
    bigEndian: b[o + 2]! !== 0,
    trueColour: b[o + 3]! !== 0,
    redMax: u16(b, o + 4),
    greenMax: u16(b, o + 6),
    blueMax: u16(b, o + 8),
    redShift: b[o + 10]!,
    greenShift: b[o + 11]!,
    blueShift: b[o + 12]!,
  };
}

export interface ServerInit {
  width: number;
  height: number;
  pixelFormat: PixelFormat;
  name: string;
}

/** ServerInit's fixed part: width, height, pixel format, and the length of the name that follows. */
export function parseServerInitHead(b: Uint8Array): { width: number; height: number; pixelFormat: PixelFormat; nameLength: number } {
  const width = u16(b, 0);
  const height = u16(b, 2);
  if (width === 0 || height === 0 || width > MAX_FB_SIDE || height > MAX_FB_SIDE) {
    throw new RfbProtocolError(`ServerInit announces a ${width}×${height} framebuffer; this viewer accepts 1–${MAX_FB_SIDE} pixels a side`);
  }
  const nameLength = u32(b, 20);
  if (nameLength > MAX_TEXT_BYTES) throw new RfbProtocolError(`ServerInit announces a ${nameLength}-byte desktop name (bound ${MAX_TEXT_BYTES})`);
  return { width, height, pixelFormat: decodePixelFormat(b, 4), nameLength };
}

export const SERVER_INIT_HEAD_BYTES = 24;

// ---------------------------------------------------------------------------------------------
// Client → server

export function encodeSetPixelFormat(pf: PixelFormat): Uint8Array {
  const b = new Uint8Array(20);
  b[0] = 0;
  b.set(encodePixelFormat(pf), 4);
  return b;
}

export function encodeSetEncodings(encodings: readonly number[]): Uint8Array {
  const b = new Uint8Array(4 + 4 * encodings.length);
  b[0] = 2;
  put16(b, 2, encodings.length);
  encodings.forEach((e, i) => put32(b, 4 + 4 * i, e >>> 0));
  return b;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export function encodeUpdateRequest(incremental: boolean, r: Rect): Uint8Array {
  const b = new Uint8Array(10);
  b[0] = 3;
  b[1] = incremental ? 1 : 0;
  put16(b, 2, r.x);
  put16(b, 4, r.y);
  put16(b, 6, r.w);
  put16(b, 8, r.h);
  return b;
}

export function encodeKeyEvent(down: boolean, keysym: number): Uint8Array {
  const b = new Uint8Array(8);
  b[0] = 4;
  b[1] = down ? 1 : 0;
  put32(b, 4, keysym);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Server → client: an incremental parser

export type ServerEvent =
  | { kind: 'updateStart'; rectCount: number | null }
  | { kind: 'rect'; rect: Rect; encoding: number; dataBytes: number }
  | { kind: 'desktopSize'; width: number; height: number }
  /** `count` pixels of row probe.y from probe.x, as 0xRRGGBB, when a Raw rect covered them */
  | { kind: 'probe'; pixels: number[] }
  | { kind: 'updateEnd'; rects: number; bytes: number }
  | { kind: 'colourMap'; firstColour: number; colours: number }
  | { kind: 'bell' }
  | { kind: 'cutText'; bytes: number };

export interface ParserOptions {
  width: number;
  height: number;
  pixelFormat: PixelFormat;
  /** encodings the viewer asked for; anything else the server sends is a protocol violation */
  encodings: readonly number[];
  /** a run of pixels to decode whenever a Raw rect covers it (the video's frame marker) */
  probe?: { x: number; y: number; count: number };
  /** bound on bytes left waiting for a complete header after a push (default 64 KiB) */
  maxBufferedBytes?: number;
}

type State =
  | { s: 'type' }
  | { s: 'fbuHead' }
  | { s: 'rectHead' }
  | { s: 'raw'; left: number; rect: Rect; probeFrom: number; probeTo: number; at: number; total: number }
  | { s: 'copyRect'; rect: Rect }
  | { s: 'colourMapHead' }
  | { s: 'cutTextHead' }
  | { s: 'skip'; left: number; then: 'cutText' | 'colourMap' };

export class ServerMessageParser {
  private readonly q: ByteQueue;
  private state: State = { s: 'type' };
  private width: number;
  private height: number;
  private readonly bytesPerPixel: number;
  private rectsLeft: number | null = 0;
  private rectsSeen = 0;
  private updateBytes = 0;
  private skipEvent: ServerEvent | null = null;
  private probeBuf: Uint8Array | null = null;
  private readonly maxBuffered: number;

  constructor(private readonly o: ParserOptions) {
    // Chunks of any size go in; what stays buffered after parsing is what is bounded (see push).
    this.q = new ByteQueue(Number.POSITIVE_INFINITY);
    this.maxBuffered = o.maxBufferedBytes ?? 65536;
    this.width = o.width;
    this.height = o.height;
    this.bytesPerPixel = o.pixelFormat.bitsPerPixel / 8;
    if (o.probe !== undefined && (o.probe.count < 1 || o.probe.count > 64)) throw new RangeError('probe.count must be 1–64');
  }

  get framebuffer(): { width: number; height: number } {
    return { width: this.width, height: this.height };
  }

  /** True between an update's first byte and its last. */
  get inUpdate(): boolean {
    return this.state.s !== 'type' && this.state.s !== 'colourMapHead' && this.state.s !== 'cutTextHead' && this.state.s !== 'skip';
  }

  /** Feeds bytes; returns what they completed, in order. Throws RfbProtocolError on a violation. */
  push(chunk: Uint8Array): ServerEvent[] {
    this.q.push(chunk);
    const out: ServerEvent[] = [];
    // Every step that returns true consumed bytes, so this ends.
    while (this.step(out));
    if (this.q.length > this.maxBuffered) {
      throw new RfbProtocolError(`${this.q.length} bytes from the server wait for a message header to complete (bound ${this.maxBuffered})`);
    }
    return out;
  }

  private step(out: ServerEvent[]): boolean {
    const st = this.state;
    const q = this.q;
    switch (st.s) {
      case 'type': {
        if (q.length < 1) return false;
        const t = q.take(1)[0]!;
        if (t === 0) this.state = { s: 'fbuHead' };
        else if (t === 1) this.state = { s: 'colourMapHead' };
        else if (t === 2) out.push({ kind: 'bell' });
        else if (t === 3) this.state = { s: 'cutTextHead' };
        else throw new RfbProtocolError(`The server sent message type ${t}, which RFB 3.8 does not define for this viewer (known: 0 FramebufferUpdate, 1 SetColourMapEntries, 2 Bell, 3 ServerCutText)`);
        if (t === 0) this.updateBytes = 1;
        return true;
      }
      case 'fbuHead': {
        if (q.length < 3) return false;
        const b = q.take(3);
        const n = u16(b, 1);
        this.updateBytes += 3;
        this.rectsLeft = n === 0xffff ? null : n;
        this.rectsSeen = 0;
        out.push({ kind: 'updateStart', rectCount: this.rectsLeft });
        this.afterRect(out);
        return true;
      }
      case 'rectHead': {
        if (q.length < 12) return false;
        const b = q.take(12);
        this.updateBytes += 12;
        const rect = { x: u16(b, 0), y: u16(b, 2), w: u16(b, 4), h: u16(b, 6) };
        const enc = s32(b, 8);
        if (!this.o.encodings.includes(enc)) {
          throw new RfbProtocolError(`The server sent a rectangle in encoding ${enc}, which this viewer did not ask for (asked: ${this.o.encodings.join(', ')})`);
        }
        if (enc === ENCODING.lastRect) {
          this.finishUpdate(out);
          return true;
        }
        this.rectsSeen++;
        if (this.rectsLeft !== null) this.rectsLeft--;
        if (enc === ENCODING.desktopSize) {
          if (rect.w === 0 || rect.h === 0 || rect.w > MAX_FB_SIDE || rect.h > MAX_FB_SIDE) {
            throw new RfbProtocolError(`The server resized the desktop to ${rect.w}×${rect.h}; this viewer accepts 1–${MAX_FB_SIDE} pixels a side`);
          }
          this.width = rect.w;
          this.height = rect.h;
          out.push({ kind: 'desktopSize', width: rect.w, height: rect.h });
          out.push({ kind: 'rect', rect, encoding: enc, dataBytes: 0 });
          this.afterRect(out);
          return true;
        }
        if (rect.x + rect.w > this.width || rect.y + rect.h > this.height) {
          throw new RfbProtocolError(`The server sent rectangle ${rect.w}×${rect.h} at (${rect.x},${rect.y}), outside the ${this.width}×${this.height} framebuffer`);
        }
        if (enc === ENCODING.copyRect) {
          this.state = { s: 'copyRect', rect };
          return true;
        }
        // Raw
        const total = rect.w * rect.h * this.bytesPerPixel;
        let probeFrom = -1;
        let probeTo = -1;
        const p = this.o.probe;
        if (p !== undefined && p.y >= rect.y && p.y < rect.y + rect.h && p.x >= rect.x && p.x + p.count <= rect.x + rect.w) {
          probeFrom = ((p.y - rect.y) * rect.w + (p.x - rect.x)) * this.bytesPerPixel;
          probeTo = probeFrom + p.count * this.bytesPerPixel;
          this.probeBuf = new Uint8Array(probeTo - probeFrom);
        }
        this.state = { s: 'raw', left: total, rect, probeFrom, probeTo, at: 0, total };
        if (total === 0) this.endRaw(out, this.state);
        return true;
      }
      case 'raw': {
        if (q.length === 0) return false;
        const piece = q.takeSome(st.left);
        this.updateBytes += piece.length;
        if (st.probeFrom >= 0 && this.probeBuf !== null) {
          const from = Math.max(st.at, st.probeFrom);
          const to = Math.min(st.at + piece.length, st.probeTo);
          if (from < to) this.probeBuf.set(piece.subarray(from - st.at, to - st.at), from - st.probeFrom);
        }
        st.at += piece.length;
        st.left -= piece.length;
        if (st.left === 0) this.endRaw(out, st);
        return true;
      }
      case 'copyRect': {
        if (q.length < 4) return false;
        const b = q.take(4);
        this.updateBytes += 4;
        const sx = u16(b, 0);
        const sy = u16(b, 2);
        if (sx + st.rect.w > this.width || sy + st.rect.h > this.height) {
          throw new RfbProtocolError(`The server sent a CopyRect from (${sx},${sy}) of ${st.rect.w}×${st.rect.h}, outside the ${this.width}×${this.height} framebuffer`);
        }
        out.push({ kind: 'rect', rect: st.rect, encoding: ENCODING.copyRect, dataBytes: 4 });
        this.afterRect(out);
        return true;
      }
      case 'colourMapHead': {
        if (q.length < 5) return false;
        const b = q.take(5);
        const first = u16(b, 1);
        const n = u16(b, 3);
        this.skipEvent = { kind: 'colourMap', firstColour: first, colours: n };
        this.state = { s: 'skip', left: n * 6, then: 'colourMap' };
        if (n === 0) this.endSkip(out);
        return true;
      }
      case 'cutTextHead': {
        if (q.length < 7) return false;
        const b = q.take(7);
        const n = u32(b, 3);
        if (n > MAX_TEXT_BYTES) throw new RfbProtocolError(`The server sent ${n} bytes of cut text; this viewer accepts at most ${MAX_TEXT_BYTES}`);
        this.skipEvent = { kind: 'cutText', bytes: n };
        this.state = { s: 'skip', left: n, then: 'cutText' };
        if (n === 0) this.endSkip(out);
        return true;
      }
      case 'skip': {
        if (q.length === 0) return false;
        st.left -= q.takeSome(st.left).length;
        if (st.left === 0) this.endSkip(out);
        return true;
      }
    }
  }

  private endRaw(out: ServerEvent[], st: Extract<State, { s: 'raw' }>): void {
    if (this.probeBuf !== null && st.probeFrom >= 0) {
      out.push({ kind: 'probe', pixels: decodePixels(this.probeBuf, this.o.pixelFormat) });
      this.probeBuf = null;
    }
    out.push({ kind: 'rect', rect: st.rect, encoding: ENCODING.raw, dataBytes: st.total });
    this.afterRect(out);
  }

  private endSkip(out: ServerEvent[]): void {
    if (this.skipEvent !== null) out.push(this.skipEvent);
    this.skipEvent = null;
    this.state = { s: 'type' };
  }

  private afterRect(out: ServerEvent[]): void {
    if (this.rectsLeft === 0) this.finishUpdate(out);
    else this.state = { s: 'rectHead' };
  }

  private finishUpdate(out: ServerEvent[]): void {
    out.push({ kind: 'updateEnd', rects: this.rectsSeen, bytes: this.updateBytes });
    this.state = { s: 'type' };
    this.rectsLeft = 0;
  }
}

/** Pixels in `pf` (true colour) as 0xRRGGBB, each channel scaled to 8 bits. */
export function decodePixels(b: Uint8Array, pf: PixelFormat): number[] {
  const bpp = pf.bitsPerPixel / 8;
  const out: number[] = [];
  for (let o = 0; o + bpp <= b.length; o += bpp) {
    let v = 0;
    for (let i = 0; i < bpp; i++) {
      const byte = b[o + (pf.bigEndian ? i : bpp - 1 - i)]!;
      v = v * 256 + byte;
    }
    const ch = (shift: number, max: number): number => (max === 0 ? 0 : Math.round(((Math.floor(v / 2 ** shift) & max) * 255) / max));
    out.push((ch(pf.redShift, pf.redMax) << 16) | (ch(pf.greenShift, pf.greenMax) << 8) | ch(pf.blueShift, pf.blueMax));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The video's frame marker (see video.c): pixel 0 = 0x564d53, pixels 1–2 = draw time in ms (24+24
// bits), pixel 3 = frame number mod 2^24.

export const MARKER_MAGIC = 0x564d53;
export const MARKER_PIXELS = 4;

export function decodeMarker(pixels: readonly number[]): { drawnAtMs: number; frame: number } | null {
  if (pixels.length < MARKER_PIXELS || pixels[0] !== MARKER_MAGIC) return null;
  return { drawnAtMs: pixels[1]! * 2 ** 24 + pixels[2]!, frame: pixels[3]! };
}

// ---------------------------------------------------------------------------------------------
// Server side (for the fake server and tests)

export function encodeServerInit(si: ServerInit): Uint8Array {
  const name = asciiBytes(si.name);
  const b = new Uint8Array(SERVER_INIT_HEAD_BYTES + name.length);
  put16(b, 0, si.width);
  put16(b, 2, si.height);
  b.set(encodePixelFormat(si.pixelFormat), 4);
  put32(b, 20, name.length);
  b.set(name, 24);
  return b;
}

export function encodeSecurityTypes(types: readonly number[]): Uint8Array {
  return Uint8Array.from([types.length, ...types]);
}

export function encodeReason(reason: string): Uint8Array {
  const r = asciiBytes(reason);
  const b = new Uint8Array(4 + r.length);
  put32(b, 0, r.length);
  b.set(r, 4);
  return b;
}

export function encodeU32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  put32(b, 0, v);
  return b;
}

export type ServerRect =
  | { encoding: 'raw'; rect: Rect; pixels: Uint8Array }
  | { encoding: 'copyRect'; rect: Rect; srcX: number; srcY: number }
  | { encoding: 'desktopSize'; width: number; height: number }
  | { encoding: 'lastRect' };

/** A FramebufferUpdate; with a lastRect entry the header count is 0xffff, as RFB requires. */
export function encodeFramebufferUpdate(rects: readonly ServerRect[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(4);
  head[0] = 0;
  put16(head, 2, rects.some((r) => r.encoding === 'lastRect') ? 0xffff : rects.length);
  parts.push(head);
  for (const r of rects) {
    const h = new Uint8Array(12);
    if (r.encoding === 'raw' || r.encoding === 'copyRect') {
      put16(h, 0, r.rect.x);
      put16(h, 2, r.rect.y);
      put16(h, 4, r.rect.w);
      put16(h, 6, r.rect.h);
    } else if (r.encoding === 'desktopSize') {
      put16(h, 4, r.width);
      put16(h, 6, r.height);
    }
    put32(h, 8, ENCODING[r.encoding] >>> 0);
    parts.push(h);
    if (r.encoding === 'raw') parts.push(r.pixels);
    if (r.encoding === 'copyRect') {
      const c = new Uint8Array(4);
      put16(c, 0, r.srcX);
      put16(c, 2, r.srcY);
      parts.push(c);
    }
  }
  return concat(parts);
}

export function encodeBell(): Uint8Array {
  return Uint8Array.of(2);
}

export function encodeServerCutText(s: string): Uint8Array {
  const t = asciiBytes(s);
  const b = new Uint8Array(8 + t.length);
  b[0] = 3;
  put32(b, 4, t.length);
  b.set(t, 8);
  return b;
}

export function encodeColourMapEntries(first: number, colours: readonly [number, number, number][]): Uint8Array {
  const b = new Uint8Array(6 + 6 * colours.length);
  b[0] = 1;
  put16(b, 2, first);
  put16(b, 4, colours.length);
  colours.forEach(([r, g, bl], i) => {
    put16(b, 6 + 6 * i, r);
    put16(b, 8 + 6 * i, g);
    put16(b, 10 + 6 * i, bl);
  });
  return b;
}

/** Raw pixel bytes of w×h pixels of one colour 0xRRGGBB in PF_RGB888, marker optional in row 0. */
export function rgb888Pixels(w: number, h: number, fill: (x: number, y: number) => number): Uint8Array {
  const b = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = fill(x, y);
      const o = (y * w + x) * 4;
      b[o] = v & 255;
      b[o + 1] = (v >>> 8) & 255;
      b[o + 2] = (v >>> 16) & 255;
    }
  }
  return b;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
