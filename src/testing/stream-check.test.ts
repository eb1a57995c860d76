import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { encodeFrame, runStreamCheck, startEchoServer, StreamVerifier } from './stream-check.js';

const frames = (seqs: number[], id = 7, bytes = 50): Buffer => Buffer.concat(seqs.map((s) => encodeFrame(id, s, bytes)));

/** A relay to `port` that passes the return direction through `mangle` (per chunk). */
async function faultyRelay(port: number, mangle: (chunk: Buffer, client: Socket) => Buffer | null): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const up = createConnection({ port, host: '127.0.0.1', allowHalfOpen: true });
    client.pipe(up);
    up.on('data', (d: Buffer) => {
      const out = mangle(d, client);
      if (out !== null && !client.destroyed) client.write(out);
    });
    up.on('end', () => client.end());
    for (const s of [client, up]) s.on('error', () => { client.destroy(); up.destroy(); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return { port: typeof a === 'object' && a !== null ? a.port : 0, server };
}

describe('stream check', () => {
  it('StreamVerifier passes a stream cut into any chunks, and counts every frame', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 20 }), (n, cuts) => {
      const bytes = frames(Array.from({ length: n }, (_, i) => i));
      const v = new StreamVerifier(7);
      let off = 0;
      for (let k = 0; off < bytes.length; k++) {
        const len = cuts[k % cuts.length]!;
        v.push(bytes.subarray(off, off + len));
        off += len;
      }
      assert.ok(v.clean);
      assert.equal(v.counts.framesVerified, n);
      assert.equal(v.counts.bytesVerified, bytes.length);
      assert.equal(v.partialBytes, 0);
    }));
  });

  it('StreamVerifier tells a lost frame, a duplicated one, a late one and flipped bits apart', () => {
    const lost = new StreamVerifier(7);
    lost.push(frames([0, 1, 3, 4]));
    assert.equal(lost.counts.framesLost, 1);
    assert.equal(lost.clean, false);

    const dup = new StreamVerifier(7);
    dup.push(frames([0, 1, 1, 2]));
    assert.deepEqual([dup.counts.framesDuplicated, dup.counts.framesLost], [1, 0]);

    const late = new StreamVerifier(7);
    late.push(frames([0, 2, 1, 3]));
    assert.deepEqual([late.counts.framesReordered, late.counts.framesLost, late.counts.framesDuplicated], [1, 0, 0]);
    assert.equal(late.clean, false);

    const flipped = frames([0, 1, 2]);
    flipped[20 + 70 + 30]! ^= 0x10;
    const bad = new StreamVerifier(7);
    bad.push(flipped);
    assert.equal(bad.counts.corruptions, 1);
    assert.equal(bad.counts.framesVerified, 2, 'frames around the damage still verify');

    const foreign = new StreamVerifier(7);
    foreign.push(Buffer.concat([encodeFrame(7, 0, 10), encodeFrame(8, 1, 10)]));
    assert.equal(foreign.counts.corruptions, 1, "another stream's frame is not ours");
  });

  it('runStreamCheck() through an echo server completes with every byte verified (paced and bulk)', async () => {
    const echo = await startEchoServer();
    try {
      const paced = await runStreamCheck({ host: '127.0.0.1', port: echo.port, durationMs: 300, intervalMs: 10, frameBytes: 200 });
      assert.equal(paced.end, 'completed');
      assert.ok(paced.intact && paced.framesVerified === paced.framesSent && paced.framesSent >= 20, JSON.stringify(paced));
      assert.ok(paced.rttMedianMs !== null && paced.rttMedianMs < 50);
      const bulk = await runStreamCheck({ host: '127.0.0.1', port: echo.port, durationMs: 300, frameBytes: 16_000, windowBytes: 1 << 20 });
      assert.equal(bulk.end, 'completed');
      assert.ok(bulk.intact && bulk.bytesVerified === bulk.bytesSent && bulk.bytesSent > 1 << 20, JSON.stringify(bulk));
      assert.equal(echo.bytes(), paced.bytesSent + bulk.bytesSent);
    } finally {
      await echo.close();
    }
  });

  it('runStreamCheck() reports damage done on the way back, an early FIN as closed and an RST as reset', async () => {
    const echo = await startEchoServer();
    const relays: Server[] = [];
    try {
      let n = 0;
      const flip = await faultyRelay(echo.port, (d) => {
        if (++n === 5) d[Math.floor(d.length / 2)]! ^= 1;
        return d;
      });
      relays.push(flip.server);
      const r1 = await runStreamCheck({ host: '127.0.0.1', port: flip.port, durationMs: 300, intervalMs: 5 });
      assert.equal(r1.intact, false);
      assert.ok(r1.corruptions >= 1);

      let m = 0;
      const drop = await faultyRelay(echo.port, (d) => (++m === 5 ? null : d));
      relays.push(drop.server);
      const r2 = await runStreamCheck({ host: '127.0.0.1', port: drop.port, durationMs: 300, intervalMs: 5 });
      assert.equal(r2.intact, false);

      let k = 0;
      const fin = await faultyRelay(echo.port, (d, c) => {
        if (++k === 5) c.end();
        return k >= 5 ? null : d;
      });
      relays.push(fin.server);
      const r3 = await runStreamCheck({ host: '127.0.0.1', port: fin.port, durationMs: 1000, intervalMs: 5 });
      assert.equal(r3.end, 'closed');
      assert.ok(r3.intact && r3.framesVerified < r3.framesSent);

      let j = 0;
      const rst = await faultyRelay(echo.port, (d, c) => {
        if (++j === 5) c.resetAndDestroy();
        return j >= 5 ? null : d;
      });
      relays.push(rst.server);
      const r4 = await runStreamCheck({ host: '127.0.0.1', port: rst.port, durationMs: 1000, intervalMs: 5 });
      assert.equal(r4.end, 'reset');
      assert.ok(r4.intact);

      const refused = await runStreamCheck({ host: '127.0.0.1', port: 1, durationMs: 100 });
      assert.equal(refused.end, 'connect-failed');
    } finally {
      for (const s of relays) s.close();
      await echo.close();
    }
  });
});
