import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ByteQueue,
  chooseVersion,
  concat,
  decodeMarker,
  decodePixels,
  encodeBell,
  encodeColourMapEntries,
  encodeFramebufferUpdate,
  encodePixelFormat,
  decodePixelFormat,
  encodeServerCutText,
  encodeSetEncodings,
  encodeUpdateRequest,
  ENCODING,
  MARKER_MAGIC,
  parseServerInitHead,
  encodeServerInit,
  parseVersion,
  PF_RGB888,
  rgb888Pixels,
  RfbProtocolError,
  ServerMessageParser,
  type ServerEvent,
  type ServerRect,
} from './rfb-proto.js';

const W = 40;
const H = 30;
const ALL = [ENCODING.raw, ENCODING.copyRect, ENCODING.desktopSize, ENCODING.lastRect];

function parser(extra: Partial<ConstructorParameters<typeof ServerMessageParser>[0]> = {}): ServerMessageParser {
  return new ServerMessageParser({ width: W, height: H, pixelFormat: PF_RGB888, encodings: ALL, ...extra });
}

function feed(p: ServerMessageParser, bytes: Uint8Array, cuts: number[]): ServerEvent[] {
  const out: ServerEvent[] = [];
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length)].sort((a, b) => a - b)) {
    out.push(...p.push(bytes.subarray(at, c)));
    at = c;
  }
  out.push(...p.push(bytes.subarray(at)));
  return out;
}

const rectArb = fc
  .record({ x: fc.integer({ min: 0, max: W - 1 }), y: fc.integer({ min: 0, max: H - 1 }), w: fc.integer({ min: 0, max: W }), h: fc.integer({ min: 0, max: H }) })
  .map((r) => ({ x: r.x, y: r.y, w: Math.min(r.w, W - r.x), h: Math.min(r.h, H - r.y) }));

const serverRectArb: fc.Arbitrary<ServerRect> = fc.oneof(
  rectArb.map((rect) => ({ encoding: 'raw' as const, rect, pixels: rgb888Pixels(rect.w, rect.h, (x, y) => (x * 7 + y * 13) & 0xffffff) })),
  fc.tuple(rectArb, fc.nat()).map(([rect, s]) => ({ encoding: 'copyRect' as const, rect, srcX: s % (W - rect.w + 1), srcY: s % (H - rect.h + 1) })),
);

type Msg = { kind: 'update'; rects: ServerRect[]; last: boolean } | { kind: 'bell' } | { kind: 'cut'; text: string } | { kind: 'colours'; n: number };

const msgArb: fc.Arbitrary<Msg> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('update' as const), rects: fc.array(serverRectArb, { maxLength: 5 }), last: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'bell' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), text: fc.string({ maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('colours' as const), n: fc.integer({ min: 0, max: 4 }) }) },
);

function encodeMsg(m: Msg): Uint8Array {
  switch (m.kind) {
    case 'update':
      return encodeFramebufferUpdate(m.last ? [...m.rects, { encoding: 'lastRect' }] : m.rects);
    case 'bell':
      return encodeBell();
    case 'cut':
      return encodeServerCutText(m.text);
    case 'colours':
      return encodeColourMapEntries(0, Array.from({ length: m.n }, () => [1, 2, 3] as [number, number, number]));
  }
}

describe('ServerMessageParser', () => {
  it('yields the same events however the byte stream is cut, and each update ends with its exact size', () => {
    fc.assert(
      fc.property(fc.array(msgArb, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, cutSeeds) => {
        const parts = msgs.map(encodeMsg);
        const bytes = concat(parts);
        const whole = parser().push(bytes);
        const cuts = cutSeeds.map((s) => (bytes.length === 0 ? 0 : s % bytes.length));
        assert.deepEqual(feed(parser(), bytes, cuts), whole);
        const ends = whole.filter((e) => e.kind === 'updateEnd');
        const updates = msgs.map((m, i) => ({ m, len: parts[i]!.length })).filter((x) => x.m.kind === 'update');
        assert.equal(ends.length, updates.length);
        ends.forEach((e, i) => {
          const u = updates[i]!;
          assert.equal(e.kind === 'updateEnd' && e.bytes, u.len);
          assert.equal(e.kind === 'updateEnd' && e.rects, u.m.kind === 'update' ? u.m.rects.length : -1);
        });
        assert.equal(whole.filter((e) => e.kind === 'bell').length, msgs.filter((m) => m.kind === 'bell').length);
      }),
      { numRuns: 300 },
    );
  });

  it('reads the video marker of a Raw rect, also when it arrives a byte at a time', () => {
    const t = 1_795_000_000_123;
    const marker = [MARKER_MAGIC, Math.floor(t / 2 ** 24), t % 2 ** 24, 4242];
    const rect = { x: 10, y: 5, w: 20, h: 6 };
    const pixels = rgb888Pixels(rect.w, rect.h, (x, y) => (y === 2 && x >= 3 && x < 7 ? marker[x - 3]! : 0x123456));
    const bytes = encodeFramebufferUpdate([{ encoding: 'raw', rect, pixels }]);
    const p = parser({ probe: { x: 13, y: 7, count: 4 } });
    const events = feed(p, bytes, Array.from({ length: bytes.length }, (_, i) => i));
    const probe = events.find((e) => e.kind === 'probe');
    assert.ok(probe !== undefined && probe.kind === 'probe');
    assert.deepEqual(decodeMarker(probe.pixels), { drawnAtMs: t, frame: 4242 });
  });

  it('reports no probe when the rect covers only part of the marker', () => {
    const rect = { x: 0, y: 0, w: 12, h: 2 };
    const bytes = encodeFramebufferUpdate([{ encoding: 'raw', rect, pixels: rgb888Pixels(12, 2, () => MARKER_MAGIC) }]);
    assert.equal(parser({ probe: { x: 10, y: 1, count: 4 } }).push(bytes).filter((e) => e.kind === 'probe').length, 0);
  });

  it('follows a DesktopSize pseudo-rect: later rects are checked against the new size', () => {
    const p = parser();
    const ev = p.push(encodeFramebufferUpdate([{ encoding: 'desktopSize', width: 100, height: 80 }]));
    assert.deepEqual(ev.find((e) => e.kind === 'desktopSize'), { kind: 'desktopSize', width: 100, height: 80 });
    assert.deepEqual(p.framebuffer, { width: 100, height: 80 });
    const big = { x: 50, y: 40, w: 50, h: 40 };
    assert.equal(p.push(encodeFramebufferUpdate([{ encoding: 'raw', rect: big, pixels: rgb888Pixels(50, 40, () => 0) }])).at(-1)?.kind, 'updateEnd');
  });

  it('rejects an unknown message type, naming it', () => {
    assert.throws(() => parser().push(Uint8Array.of(9)), (e: unknown) => e instanceof RfbProtocolError && /message type 9/.test(e.message));
  });

  it('rejects an encoding the viewer did not ask for', () => {
    const p = new ServerMessageParser({ width: W, height: H, pixelFormat: PF_RGB888, encodings: [ENCODING.raw] });
    const bytes = encodeFramebufferUpdate([{ encoding: 'copyRect', rect: { x: 0, y: 0, w: 1, h: 1 }, srcX: 0, srcY: 0 }]);
    assert.throws(() => p.push(bytes), /encoding 1, which this viewer did not ask for/);
  });

  it('rejects a rectangle outside the framebuffer and a CopyRect from outside it', () => {
    const raw = encodeFramebufferUpdate([{ encoding: 'raw', rect: { x: W - 1, y: 0, w: 2, h: 1 }, pixels: new Uint8Array(8) }]);
    assert.throws(() => parser().push(raw), /outside the 40×30 framebuffer/);
    const copy = encodeFramebufferUpdate([{ encoding: 'copyRect', rect: { x: 0, y: 0, w: 10, h: 10 }, srcX: 35, srcY: 0 }]);
    assert.throws(() => parser().push(copy), /CopyRect from \(35,0\)/);
  });

  it('rejects cut text beyond its bound without buffering it', () => {
    const b = encodeServerCutText('');
    new DataView(b.buffer).setUint32(4, 64 * 1024 * 1024);
    assert.throws(() => parser().push(b), /bytes of cut text/);
  });

  it('streams a large Raw rect: bytes left buffered never exceed a small bound', () => {
    const p = new ServerMessageParser({ width: 512, height: 512, pixelFormat: PF_RGB888, encodings: ALL, maxBufferedBytes: 16 });
    const bytes = encodeFramebufferUpdate([{ encoding: 'raw', rect: { x: 0, y: 0, w: 512, h: 512 }, pixels: new Uint8Array(512 * 512 * 4) }]);
    const ev = feed(p, bytes, Array.from({ length: 200 }, (_, i) => i * 5000 + 7));
    assert.deepEqual(ev.at(-1), { kind: 'updateEnd', rects: 1, bytes: bytes.length });
  });
});

describe('handshake pieces', () => {
  it('parseVersion() reads "RFB 003.008\\n" and refuses anything else clearly', () => {
    assert.deepEqual(parseVersion(new TextEncoder().encode('RFB 003.008\n')), { major: 3, minor: 8 });
    assert.throws(() => parseVersion(new TextEncoder().encode('SSH-2.0-Open')), /not an RFB ProtocolVersion/);
  });

  it('chooseVersion() speaks 3.8 to newer servers, 3.7 to 3.7 and 3.3 to the rest', () => {
    assert.deepEqual(chooseVersion({ major: 3, minor: 889 }), { major: 3, minor: 8 });
    assert.deepEqual(chooseVersion({ major: 3, minor: 7 }), { major: 3, minor: 7 });
    assert.deepEqual(chooseVersion({ major: 3, minor: 5 }), { major: 3, minor: 3 });
    assert.throws(() => chooseVersion({ major: 4, minor: 0 }), /speaks RFB 4.0/);
  });

  it('pixel formats and ServerInit survive a round trip; a zero-sized framebuffer is refused', () => {
    assert.deepEqual(decodePixelFormat(encodePixelFormat(PF_RGB888)), PF_RGB888);
    const head = parseServerInitHead(encodeServerInit({ width: 800, height: 600, pixelFormat: PF_RGB888, name: 'x' }));
    assert.deepEqual(head, { width: 800, height: 600, pixelFormat: PF_RGB888, nameLength: 1 });
    assert.throws(() => parseServerInitHead(encodeServerInit({ width: 0, height: 600, pixelFormat: PF_RGB888, name: '' })), /0×600/);
  });

  it('client messages have RFB 3.8 layouts', () => {
    assert.deepEqual([...encodeUpdateRequest(true, { x: 1, y: 2, w: 800, h: 600 })], [3, 1, 0, 1, 0, 2, 3, 32, 2, 88]);
    assert.deepEqual([...encodeSetEncodings([0, -223])], [2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
  });

  it('decodePixels() scales channels of a 16-bit big-endian format to 8 bits', () => {
    const pf = { ...PF_RGB888, bitsPerPixel: 16 as const, depth: 16, bigEndian: true, redMax: 31, greenMax: 63, blueMax: 31, redShift: 11, greenShift: 5, blueShift: 0 };
    assert.deepEqual(decodePixels(Uint8Array.of(0xf8, 0x00, 0x07, 0xe0), pf), [0xff0000, 0x00ff00]);
  });
});

describe('ByteQueue', () => {
  it('refuses more than its bound and takes across chunks', () => {
    const q = new ByteQueue(8);
    q.push(Uint8Array.of(1, 2, 3));
    q.push(Uint8Array.of(4, 5));
    assert.deepEqual([...q.take(4)], [1, 2, 3, 4]);
    assert.equal(q.length, 1);
    assert.throws(() => q.push(new Uint8Array(8)), /bound is 8/);
  });
});
