import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { AppError } from '../../core/errors.js';
import { FakeRfbServer, type FakeRfbOptions } from '../../testing/fake-rfb.js';
import { RfbClient, type RfbClientOptions } from './rfb-client.js';
import { encodeFramebufferUpdate, ENCODING, MARKER_MAGIC, PF_RGB888, rgb888Pixels, type Rect } from './rfb-proto.js';

const servers: FakeRfbServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function server(o: FakeRfbOptions): Promise<FakeRfbServer> {
  const s = await FakeRfbServer.start(o);
  servers.push(s);
  return s;
}

const full = (w: number, h: number): Uint8Array => encodeFramebufferUpdate([{ encoding: 'raw', rect: { x: 0, y: 0, w, h }, pixels: rgb888Pixels(w, h, () => 0x202020) }]);
const frame = (r: Rect, fill = 0x808080): Uint8Array => encodeFramebufferUpdate([{ encoding: 'raw', rect: r, pixels: rgb888Pixels(r.w, r.h, () => fill) }]);

async function connect(s: FakeRfbServer, o: Partial<RfbClientOptions> = {}): Promise<RfbClient> {
  return RfbClient.connect({ host: '127.0.0.1', port: s.port, connectTimeoutMs: 3000, ...o });
}

function code(c: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof AppError, `expected an AppError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

describe('RfbClient against a fake RFB 3.8 server', () => {
  it('completes the handshake, asks for RGB888 and Raw, and resolves after the first full-screen update', async () => {
    const s = await server({ width: 64, height: 48, name: 'desk', respond: (_r, n) => (n === 0 ? full(64, 48) : null) });
    const c = await connect(s);
    try {
      assert.equal(c.width, 64);
      assert.equal(c.height, 48);
      assert.equal(c.desktopName, 'desk');
      const conn = s.connections[0]!;
      assert.equal(conn.clientVersion, 'RFB 003.008\n');
      assert.equal(conn.securityChoice, 1);
      assert.equal(conn.shared, true);
      const [pf, enc, first] = conn.messages;
      assert.deepEqual(pf, { type: 'setPixelFormat', pixelFormat: PF_RGB888 });
      assert.ok(enc?.type === 'setEncodings' && enc.encodings.includes(ENCODING.raw));
      assert.deepEqual(first, { type: 'updateRequest', incremental: false, rect: { x: 0, y: 0, w: 64, h: 48 }, outstanding: 1 });
      assert.equal(c.initialBytes, full(64, 48).length);
      assert.equal(c.stats().bytes, 0, 'the first frame is not counted');
    } finally {
      await c.close();
    }
  });

  it('keeps exactly one incremental request outstanding and times each update from request to last byte', async () => {
    const rect = { x: 0, y: 0, w: 32, h: 24 };
    const s = await server({ width: 64, height: 48, delayMs: 30, respond: (_r, n) => (n === 0 ? full(64, 48) : frame(rect, n)) });
    const c = await connect(s);
    try {
      const m = await c.measure(1000);
      assert.ok(m.updates >= 10 && m.updates <= 34, `${m.updates} updates in 1 s with 30 ms per update`);
      assert.ok(m.updateMs !== null && m.updateMs.p50 >= 29 && m.updateMs.p50 < 80, `p50 ${m.updateMs?.p50}`);
      const perUpdate = frame(rect).length;
      assert.ok(Math.abs(m.bytesPerS - m.updatesPerS * perUpdate) <= perUpdate * 1.01, `bytes/s ${m.bytesPerS} vs ${m.updatesPerS} × ${perUpdate}`);
      const conn = s.connections[0]!;
      assert.equal(conn.maxOutstanding, 1);
      const reqs = conn.messages.filter((x) => x.type === 'updateRequest');
      assert.ok(reqs.slice(1).every((r) => r.type === 'updateRequest' && r.incremental));
    } finally {
      await c.close();
    }
  });

  it('parses updates that arrive a few bytes at a time, across several rects and a CopyRect', async () => {
    const update = encodeFramebufferUpdate([
      { encoding: 'raw', rect: { x: 0, y: 0, w: 5, h: 3 }, pixels: rgb888Pixels(5, 3, () => 1) },
      { encoding: 'copyRect', rect: { x: 10, y: 10, w: 8, h: 8 }, srcX: 0, srcY: 0 },
      { encoding: 'raw', rect: { x: 20, y: 20, w: 7, h: 2 }, pixels: rgb888Pixels(7, 2, () => 2) },
    ]);
    const s = await server({ chunkBytes: 3, respond: (_r, n) => (n === 0 ? full(64, 48) : n <= 5 ? update : null) });
    const c = await connect(s);
    try {
      const m = await c.measure(600);
      assert.equal(m.updates, 5);
      assert.equal(m.rectsPerUpdate, 3);
      assert.equal(Math.round(m.bytesPerS * (m.windowMs / 1000)), 5 * update.length);
    } finally {
      await c.close();
    }
  });

  it('an idle desktop (requests held) gives no updates, and the live stats show the request waiting', async () => {
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : null) });
    const c = await connect(s);
    try {
      const m = await c.measure(300);
      assert.equal(m.updates, 0);
      assert.equal(m.updateMs, null);
      const st = c.stats();
      assert.equal(st.state, 'running');
      assert.ok(st.waitingMs !== null && st.waitingMs >= 250, `waiting ${st.waitingMs}`);
    } finally {
      await c.close();
    }
  });

  it('reads the frame marker under the probe and reports how old each frame is', async () => {
    const drawnAt = 1_000_000;
    const marker = [MARKER_MAGIC, Math.floor(drawnAt / 2 ** 24), drawnAt % 2 ** 24, 7];
    const r = { x: 8, y: 4, w: 16, h: 8 };
    const video = encodeFramebufferUpdate([{ encoding: 'raw', rect: r, pixels: rgb888Pixels(16, 8, (x, y) => (y === 0 && x < 4 ? marker[x]! : 5)) }]);
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : n <= 3 ? video : null) });
    const c = await connect(s, { probe: { x: 8, y: 4 }, wallNow: () => drawnAt + 42 });
    try {
      const m = await c.measure(300);
      assert.equal(m.updates, 3);
      assert.deepEqual(m.frameAgeMs && [m.frameAgeMs.p50, m.frameAgeMs.max], [42, 42]);
    } finally {
      await c.close();
    }
  });

  it('speaks RFB 3.3 to a 3.3 server (security type chosen by the server)', async () => {
    const s = await server({ greeting: 'RFB 003.003\n', respond: (_r, n) => (n === 0 ? full(64, 48) : null) });
    const c = await connect(s);
    try {
      assert.deepEqual(c.serverVersion, { major: 3, minor: 3 });
      assert.equal(s.connections[0]!.clientVersion, 'RFB 003.003\n');
    } finally {
      await c.close();
    }
  });

  it('close() ends the connection with a FIN, resolves closed with null, and is idempotent', async () => {
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : null) });
    const c = await connect(s);
    await c.close();
    await c.close();
    assert.equal(await c.closed, null);
    await s.connections[0]!.closed;
    assert.equal(s.connections[0]!.endedCleanly, true);
    assert.equal(c.stats().state, 'closed');
  });
});

describe('RfbClient refuses what it cannot or must not accept', () => {
  it('a server without security type None: RFB_SECURITY naming the offered types', async () => {
    const s = await server({ securityTypes: [2, 16] });
    await assert.rejects(connect(s), (e: unknown) => code('RFB_SECURITY')(e) && /offers security types 2, 16/.test((e as Error).message));
  });

  it('a refusal with a reason: RFB_REFUSED quoting it', async () => {
    const s = await server({ securityTypes: [], refuseReason: 'too many viewers' });
    await assert.rejects(connect(s), (e: unknown) => code('RFB_REFUSED')(e) && /too many viewers/.test((e as Error).message));
  });

  it('a failed SecurityResult: RFB_REFUSED quoting the reason', async () => {
    const s = await server({ securityResult: 1, failReason: 'denied' });
    await assert.rejects(connect(s), (e: unknown) => code('RFB_REFUSED')(e) && /denied/.test((e as Error).message));
  });

  it('a greeting that is not RFB: RFB_PROTOCOL', async () => {
    const s = await server({ greeting: 'HTTP/1.1 400' });
    await assert.rejects(connect(s), code('RFB_PROTOCOL'));
  });

  it('a server that never speaks: RFB_TIMEOUT within the connect timeout', async () => {
    const s = await server({ silent: true });
    const t0 = Date.now();
    await assert.rejects(connect(s, { connectTimeoutMs: 300 }), code('RFB_TIMEOUT'));
    assert.ok(Date.now() - t0 < 2000);
  });

  it('nothing listening: RFB_CONNECT, retryable', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await assert.rejects(RfbClient.connect({ host: '127.0.0.1', port }), (e: unknown) => code('RFB_CONNECT')(e) && (e as AppError).retryable);
  });

  it('a rectangle in an encoding it did not ask for mid-session: the client fails with RFB_PROTOCOL and closes', async () => {
    const bad = new Uint8Array(encodeFramebufferUpdate([{ encoding: 'raw', rect: { x: 0, y: 0, w: 1, h: 1 }, pixels: new Uint8Array(4) }]));
    bad[15] = 7; // encoding 7 (Tight), never requested
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : n === 1 ? bad : null) });
    const c = await connect(s);
    const err = await c.closed;
    assert.ok(err instanceof AppError && err.code === 'RFB_PROTOCOL' && /encoding 7/.test(err.message), String(err));
    assert.equal(c.stats().state, 'failed');
    await assert.rejects(c.measure(100), code('RFB_PROTOCOL'));
  });

  it('an update that stalls half-way: RFB_TIMEOUT after updateTimeoutMs, and a running measurement rejects', async () => {
    const half = frame({ x: 0, y: 0, w: 32, h: 32 }).subarray(0, 500);
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : n === 1 ? half : null), delayMs: 50 });
    const c = await connect(s, { updateTimeoutMs: 300 });
    const t0 = Date.now();
    await assert.rejects(c.measure(5000), (e: unknown) => code('RFB_TIMEOUT')(e) && /stalled/.test((e as Error).message));
    assert.ok(Date.now() - t0 < 2000);
  });

  it('the server closing mid-session: RFB_CLOSED naming the updates so far', async () => {
    const s = await server({ respond: (_r, n) => (n === 0 ? full(64, 48) : n <= 2 ? frame({ x: 0, y: 0, w: 4, h: 4 }) : null) });
    const c = await connect(s);
    await new Promise((r) => setTimeout(r, 100));
    await s.close();
    const err = await c.closed;
    assert.ok(err instanceof AppError && err.code === 'RFB_CLOSED' && /after 2 updates/.test(err.message), String(err));
  });
});
