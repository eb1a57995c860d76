import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AppError, InputError } from '../../core/errors.js';
import { DEFAULT_LINK, type LinkParams } from './link.js';
import { connectRelayControl, parseRelayConfig, serveRelayControl, WanRelay, type RelayConfig, type UdpAddress } from './relay.js';

interface Endpoint {
  name: string;
  sock: dgram.Socket;
  addr: UdpAddress;
  /** arrival time and source of each datagram received, by its first 4 bytes (sequence number) */
  got: { seq: number; atMs: number; from: string; len: number }[];
}

async function endpoint(name: string): Promise<Endpoint> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const ep: Endpoint = { name, sock, addr: { address: '127.0.0.1', port: sock.address().port }, got: [] };
  sock.on('message', (m: Buffer, rinfo) => ep.got.push({ seq: m.readUInt32BE(0), atMs: performance.now(), from: rinfo.address, len: m.length }));
  return ep;
}

const link = (p: Partial<LinkParams>): LinkParams => ({ ...DEFAULT_LINK, ...p });
const any: UdpAddress = { address: '127.0.0.1', port: 0 };

/** Each (from, to) gets its own loopback address, as each gets its own address in the lab. */
function meshConfig(eps: Endpoint[], pairs: [number, number, Partial<LinkParams>][]): RelayConfig {
  return parseRelayConfig({
    links: pairs.map(([i, j, p]) => ({
      a: eps[i]!.name,
      b: eps[j]!.name,
      aListen: { address: `127.0.${i + 1}.${j + 1}`, port: 0 },
      bListen: { address: `127.0.${j + 1}.${i + 1}`, port: 0 },
      aEndpoint: eps[i]!.addr,
      bEndpoint: eps[j]!.addr,
      aToB: link(p),
      bToA: link(p),
    })),
  });
}

function listen(relay: WanRelay, a: string, b: string): UdpAddress {
  for (const l of relay.listenAddresses()) {
    if (l.a === a && l.b === b) return l.aListen;
    if (l.b === a && l.a === b) return l.bListen;
  }
  throw new Error(`no link ${a}-${b}`);
}

function send(from: Endpoint, to: UdpAddress, seq: number, size = 100): number {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(seq, 0);
  from.sock.send(b, to.port, to.address);
  return performance.now();
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
};

describe('WanRelay (in-process, on loopback)', () => {
  let a: Endpoint, b: Endpoint, c: Endpoint;
  let relay: WanRelay;

  before(async () => {
    [a, b, c] = await Promise.all([endpoint('a'), endpoint('b'), endpoint('c')]);
    relay = await WanRelay.start(meshConfig([a, b, c], [[0, 1, { delayMs: 30 }], [0, 2, { delayMs: 5 }]]));
  });
  after(async () => {
    await relay.close();
    for (const e of [a, b, c]) e.sock.close();
  });

  it('delivers each datagram unchanged after the link delay, from the address the receiver uses for the sender', async () => {
    // Sender, relay and receiver share this one thread (and CI's 2 cores run other tests beside it): a
    // median missed under load is measured again, up to 3 rounds; the early bound holds in every round.
    let medianMs = Infinity;
    for (let round = 0; round < 3 && medianMs > 32.5; round++) {
      b.got = [];
      const sent: number[] = [];
      for (let i = 0; i < 15; i++) {
        sent.push(send(a, listen(relay, 'a', 'b'), i));
        await new Promise((r) => setTimeout(r, 7));
      }
      await until(() => b.got.length >= 15, 2000);
      assert.equal(b.got.length, 15);
      assert.deepEqual(b.got.map((g) => g.seq), [...Array(15).keys()]);
      const delays = b.got.map((g) => g.atMs - sent[g.seq]!);
      // The relay may send up to 1 ms early (timer granularity), never more.
      assert.ok(Math.min(...delays) >= 28.9, `delays ${delays.map((d) => d.toFixed(2)).join(' ')}`);
      medianMs = median(delays);
    }
    assert.ok(medianMs <= 32.5, `median ${medianMs}`);
    assert.ok(b.got.every((g) => g.from === listen(relay, 'b', 'a').address));
    assert.equal(listen(relay, 'b', 'a').address, '127.0.2.1');
  });

  it('keeps the links of a mesh apart: a→c has its own delay', async () => {
    c.got = [];
    b.got = [];
    const sent: number[] = [];
    for (let i = 0; i < 5; i++) {
      sent.push(send(a, listen(relay, 'a', 'c'), i));
      await new Promise((r) => setTimeout(r, 7));
    }
    await until(() => c.got.length === 5, 1000);
    assert.equal(b.got.length, 0);
    const delays = c.got.map((g) => g.atMs - sent[g.seq]!);
    assert.ok(Math.min(...delays) >= 3.9 && median(delays) < 8, `a→c took ${delays.join(' ')} ms`);
  });

  it('serialises a burst at the link rate and tail-drops what does not fit in the queue', async () => {
    // 20 Mbit/s = 2500 bytes/ms: 400 datagrams of 1250 bytes (500 kB) need 200 ms; queue 250 kB holds half.
    await relay.setLink('a', 'b', { delayMs: 0, rateMbps: 20, queueBytes: 250_000 });
    const before = (await relay.stats()).directions.find((d) => d.from === 'a' && d.to === 'b')!;
    b.got = [];
    const t0 = performance.now();
    for (let i = 0; i < 400; i++) send(a, listen(relay, 'a', 'b'), i, 1250);
    await until(() => performance.now() - t0 > 400, 1000);
    const after = (await relay.stats()).directions.find((d) => d.from === 'a' && d.to === 'b')!;
    const rx = after.rxPackets - before.rxPackets;
    const dropped = after.drops.queue - before.drops.queue;
    assert.equal(rx, 400);
    assert.equal(b.got.length, 400 - dropped);
    // Half would fit if all 400 arrived at once; some drain while the burst is still arriving.
    assert.ok(dropped >= 100 && dropped <= 250, `dropped ${dropped}`);
    assert.ok(after.maxBacklogBytes <= 250_000);
    const span = b.got[b.got.length - 1]!.atMs - b.got[0]!.atMs;
    const mbps = ((b.got.length - 1) * 1250 * 8) / (span * 1000);
    assert.ok(mbps > 17 && mbps < 23, `carried ${mbps.toFixed(1)} Mbit/s`);
  });

  it('drops about lossPct of the datagrams and counts them as loss', async () => {
    await relay.setLink('a', 'c', { delayMs: 0, rateMbps: 0, lossPct: 10 }, 'forward');
    const before = (await relay.stats()).directions.find((d) => d.from === 'a' && d.to === 'c')!;
    c.got = [];
    for (let i = 0; i < 3000; i++) {
      send(a, listen(relay, 'a', 'c'), i);
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 2));
    }
    const after0 = () => relay.statsNow().directions.find((d) => d.from === 'a' && d.to === 'c')!;
    await until(() => after0().rxPackets - before.rxPackets === 3000, 2000);
    const after = after0();
    const lost = after.drops.loss - before.drops.loss;
    assert.equal(after.rxPackets - before.rxPackets, 3000);
    assert.ok(lost > 3000 * 0.1 - 4 * Math.sqrt(3000 * 0.09) && lost < 3000 * 0.1 + 4 * Math.sqrt(3000 * 0.09), `lost ${lost}`);
    await until(() => c.got.length === 3000 - lost, 1000);
    assert.equal(c.got.length, 3000 - lost);
    const rev = (await relay.stats()).directions.find((d) => d.from === 'c' && d.to === 'a')!;
    assert.equal(rev.params.lossPct, 0, "'forward' leaves c→a alone");
  });

  it('applies a new delay at run time to the next datagram', async () => {
    await relay.setLink('a', 'b', { delayMs: 40, rateMbps: 0, lossPct: 0 });
    b.got = [];
    let t0 = send(a, listen(relay, 'a', 'b'), 1);
    await until(() => b.got.length === 1, 1000);
    assert.ok(b.got[0]!.atMs - t0 >= 38.9);
    await relay.setLink('a', 'b', { delayMs: 10 });
    t0 = send(a, listen(relay, 'a', 'b'), 2);
    await until(() => b.got.length === 2, 1000);
    const d = b.got[1]!.atMs - t0;
    assert.ok(d >= 8.9 && d < 20, `after the change: ${d} ms`);
  });

  it('with jitter spreads the delays over delay ± jitter (and may reorder), delivering every datagram', async () => {
    await relay.setLink('a', 'b', { delayMs: 20, jitterMs: 5, rateMbps: 0, lossPct: 0 }, 'forward');
    b.got = [];
    const sent: number[] = [];
    for (let i = 0; i < 40; i++) {
      sent.push(send(a, listen(relay, 'a', 'b'), i));
      await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => b.got.length === 40, 2000);
    await relay.setLink('a', 'b', { jitterMs: 0 }, 'forward');
    assert.equal(b.got.length, 40);
    const delays = b.got.map((g) => g.atMs - sent[g.seq]!);
    assert.ok(Math.min(...delays) >= 14, `min ${Math.min(...delays)}`);
    assert.ok(Math.max(...delays) - Math.min(...delays) > 4, `spread ${Math.max(...delays) - Math.min(...delays)}`);
    assert.deepEqual([...b.got.map((g) => g.seq)].sort((x, y) => x - y), [...Array(40).keys()]);
  });

  it('drops datagrams beyond maxInFlightPackets per direction and counts them', async () => {
    const x = await endpoint('x');
    const y = await endpoint('y');
    const cfg = meshConfig([x, y], [[0, 1, { delayMs: 50 }]]);
    const small = await WanRelay.start({ ...cfg, maxInFlightPackets: 16 });
    try {
      for (let i = 0; i < 100; i++) send(x, listen(small, 'x', 'y'), i);
      await until(() => y.got.length >= 16 && small.statsNow().directions[0]!.rxPackets === 100, 2000);
      await new Promise((r) => setTimeout(r, 60));
      const d = small.statsNow().directions.find((s) => s.from === 'x')!;
      assert.equal(d.rxPackets, 100);
      assert.equal(d.drops.inflight + d.txPackets, 100);
      assert.ok(d.drops.inflight >= 50, `inflight drops ${d.drops.inflight}`);
      assert.equal(y.got.length, d.txPackets);
    } finally {
      await small.close();
      x.sock.close();
      y.sock.close();
    }
  });

  it('refuses an unknown link or a bad parameter and changes nothing', async () => {
    await assert.rejects(relay.setLink('a', 'zz', { delayMs: 1 }), (e: unknown) => e instanceof AppError && e.code === 'LINK_UNKNOWN' && /links: a-b, a-c/.test(e.message));
    await assert.rejects(relay.setLink('b', 'c', { delayMs: 1 }), /no such link/);
    const before = (await relay.stats()).directions.map((d) => d.params);
    await assert.rejects(relay.setLink('a', 'b', { delayMs: 5, lossPct: 200 }), InputError);
    assert.deepEqual((await relay.stats()).directions.map((d) => d.params), before);
  });

  it('is steered and read over its control socket by another client', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vms-relay-'));
    const sock = path.join(dir, 'ctl.sock');
    let shutdownAsked = false;
    const server = await serveRelayControl(relay, sock, () => {
      shutdownAsked = true;
    });
    const client = await connectRelayControl(sock);
    try {
      await client.setLink('a', 'b', { delayMs: 12, jitterMs: 1 }, 'reverse');
      const s = await client.stats();
      const ba = s.directions.find((d) => d.from === 'b' && d.to === 'a')!;
      assert.equal(ba.params.delayMs, 12);
      assert.equal(ba.params.jitterMs, 1);
      assert.ok(s.directions.find((d) => d.from === 'a' && d.to === 'b')!.params.delayMs !== 12);
      await assert.rejects(client.setLink('a', 'nope', {}), (e: unknown) => e instanceof AppError && e.code === 'LINK_UNKNOWN');
      await client.shutdown();
      await until(() => shutdownAsked, 1000);
      assert.ok(shutdownAsked);
    } finally {
      client.disconnect();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseRelayConfig()', () => {
  it('names the field it rejects', () => {
    const ok = { a: 'x', b: 'y', aListen: any, bListen: any, aEndpoint: any, bEndpoint: any, aToB: {}, bToA: {} };
    assert.equal(parseRelayConfig({ links: [ok] }).links[0]!.aToB.rateMbps, 0);
    assert.throws(() => parseRelayConfig({ links: [{ ...ok, aListen: { address: 'nohost', port: 1 } }] }), /relay\.links\[0\]\.aListen\.address/);
    assert.throws(() => parseRelayConfig({ links: [ok, { ...ok, a: 'y', b: 'x' }] }), /links the same pair twice/);
    assert.throws(() => parseRelayConfig({ links: [{ ...ok, b: 'x' }] }), /must differ from a/);
  });
});
