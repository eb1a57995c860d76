import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InputError } from '../../core/errors.js';
import { LinkScheduler, defaultQueueBytes, parseLinkParams, simulateLink, type LinkParams, type SimPacket } from './link.js';

const EPS = 1e-6;

const arbParams = (jitter: boolean): fc.Arbitrary<LinkParams> =>
  fc.record({
    delayMs: fc.double({ min: 0, max: 200, noNaN: true }),
    rateMbps: fc.oneof(fc.constant(0), fc.double({ min: 0.5, max: 1000, noNaN: true })),
    queueBytes: fc.integer({ min: 1500, max: 2_000_000 }),
    lossPct: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 50, noNaN: true })),
    jitterMs: jitter ? fc.double({ min: 0, max: 20, noNaN: true }) : fc.constant(0),
  });

/** Packets in arrival order: gaps and sizes drawn, times accumulated. */
const arbPackets: fc.Arbitrary<SimPacket[]> = fc
  .array(fc.record({ gapMs: fc.double({ min: 0, max: 5, noNaN: true }), sizeBytes: fc.integer({ min: 60, max: 1550 }) }), {
    minLength: 1,
    maxLength: 400,
  })
  .map((xs) => {
    let t = 0;
    return xs.map((x) => ({ arrivalMs: (t += x.gapMs), sizeBytes: x.sizeBytes }));
  });

describe('LinkScheduler (one direction of an emulated WAN link)', () => {
  it('never reorders packets when there is no jitter', () => {
    fc.assert(
      fc.property(arbParams(false), arbPackets, fc.integer(), (p, pkts, seed) => {
        let last = Number.NEGATIVE_INFINITY;
        for (const o of simulateLink(p, pkts, seed)) {
          if (o.kind !== 'send') continue;
          assert.ok(o.departMs >= last, `departure ${o.departMs} before previous ${last}`);
          last = o.departMs;
        }
      }),
    );
  });

  it('delays every packet by at least the configured delay plus its own serialisation', () => {
    fc.assert(
      fc.property(arbParams(false), arbPackets, fc.integer(), (p, pkts, seed) => {
        simulateLink(p, pkts, seed).forEach((o, i) => {
          if (o.kind !== 'send') return;
          const pk = pkts[i]!;
          const serMs = p.rateMbps > 0 ? (pk.sizeBytes * 8) / (p.rateMbps * 1000) : 0;
          assert.ok(o.departMs + EPS >= pk.arrivalMs + p.delayMs + serMs);
        });
      }),
    );
  });

  it('serialises accepted packets back to back no faster than the rate', () => {
    fc.assert(
      fc.property(arbParams(true), arbPackets, fc.integer(), (p, pkts, seed) => {
        fc.pre(p.rateMbps > 0);
        let prevEnd = Number.NEGATIVE_INFINITY;
        simulateLink(p, pkts, seed).forEach((o, i) => {
          if (o.kind !== 'send') return;
          const serMs = (pkts[i]!.sizeBytes * 8) / (p.rateMbps * 1000);
          assert.ok(o.serialisedMs + EPS >= prevEnd + serMs, `packet ${i} finished serialising too early`);
          prevEnd = o.serialisedMs;
        });
      }),
    );
  });

  it('never holds more than queueBytes in its backlog and drops only by tail drop or loss', () => {
    fc.assert(
      fc.property(arbParams(true), arbPackets, fc.integer(), (p, pkts, seed) => {
        const s = new LinkScheduler(p, seed);
        for (const pk of pkts) {
          const o = s.offer(pk.arrivalMs, pk.sizeBytes);
          assert.ok(s.backlogAt(pk.arrivalMs) <= p.queueBytes + EPS);
          if (o.kind === 'drop' && o.reason === 'queue') assert.ok(p.rateMbps > 0);
          if (o.kind === 'drop' && o.reason === 'loss') assert.ok(p.lossPct > 0);
        }
        const c = s.counters;
        assert.ok(c.maxBacklogBytes <= p.queueBytes);
        assert.equal(c.sentPackets + c.dropLossPackets + c.dropQueuePackets, pkts.length);
      }),
    );
  });

  it('drops about lossPct of many packets (within 4 standard deviations)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.5, max: 30, noNaN: true }), fc.integer(), (lossPct, seed) => {
        const n = 20_000;
        const s = new LinkScheduler({ delayMs: 10, rateMbps: 0, queueBytes: 1, lossPct, jitterMs: 0 }, seed);
        for (let i = 0; i < n; i++) s.offer(i * 0.01, 1000);
        const p = lossPct / 100;
        const sd = Math.sqrt((p * (1 - p)) / n);
        assert.ok(Math.abs(s.counters.dropLossPackets / n - p) <= 4 * sd, `saw ${s.counters.dropLossPackets} of ${n} at ${lossPct}%`);
      }),
      { numRuns: 30 },
    );
  });

  it('gives the same outcomes for the same seed', () => {
    fc.assert(
      fc.property(arbParams(true), arbPackets, fc.integer(), (p, pkts, seed) => {
        assert.deepEqual(simulateLink(p, pkts, seed), simulateLink(p, pkts, seed));
      }),
      { numRuns: 50 },
    );
  });

  it('carries a saturating flow at the configured rate and tail-drops the excess', () => {
    // 200 Mbit/s offered into a 100 Mbit/s link for one second.
    const p: LinkParams = { delayMs: 40, rateMbps: 100, queueBytes: 100_000, lossPct: 0, jitterMs: 0 };
    const pkts: SimPacket[] = [];
    for (let i = 0; i < 16_667; i++) pkts.push({ arrivalMs: i * 0.06, sizeBytes: 1500 });
    const out = simulateLink(p, pkts);
    const sent = out.filter((o) => o.kind === 'send');
    const lastDepart = Math.max(...sent.map((o) => o.departMs));
    const mbps = (sent.length * 1500 * 8) / ((lastDepart - 40) * 1000);
    assert.ok(Math.abs(mbps - 100) < 1, `carried ${mbps} Mbit/s`);
    assert.ok(out.some((o) => o.kind === 'drop' && o.reason === 'queue'));
  });

  it('applies a lowered delay to new packets without letting them overtake queued ones', () => {
    const s = new LinkScheduler({ delayMs: 40, rateMbps: 0, queueBytes: 1, lossPct: 0, jitterMs: 0 }, 1);
    const a = s.offer(0, 100);
    s.setParams({ delayMs: 10, rateMbps: 0, queueBytes: 1, lossPct: 0, jitterMs: 0 }, 5);
    const b = s.offer(5, 100);
    const c = s.offer(100, 100);
    assert.deepEqual([a, b, c].map((o) => (o.kind === 'send' ? o.departMs : -1)), [40, 40, 110]);
  });

  it('drains the backlog at the old rate up to a rate change, then at the new one', () => {
    const s = new LinkScheduler({ delayMs: 0, rateMbps: 8, queueBytes: 1_000_000, lossPct: 0, jitterMs: 0 }, 1);
    s.offer(0, 10_000); // 8 Mbit/s = 1000 bytes/ms: 10 ms of work
    s.setParams({ delayMs: 0, rateMbps: 80, queueBytes: 1_000_000, lossPct: 0, jitterMs: 0 }, 5);
    assert.equal(s.backlogAt(5), 5000);
    assert.equal(s.backlogAt(5.5), 0);
  });

  it('defaultQueueBytes() is one bandwidth-delay product, at least 64 KiB', () => {
    assert.equal(defaultQueueBytes(100, 80), 1_000_000);
    assert.equal(defaultQueueBytes(1, 1), 65536);
  });

  it('parseLinkParams() keeps unspecified fields and names the bad one', () => {
    const base: LinkParams = { delayMs: 40, rateMbps: 100, queueBytes: 1e6, lossPct: 0, jitterMs: 0 };
    assert.deepEqual(parseLinkParams({ delayMs: 10 }, 'link', base), { ...base, delayMs: 10 });
    assert.throws(() => parseLinkParams({ lossPct: 101 }, 'link', base), (e: unknown) => e instanceof InputError && e.field === 'link.lossPct');
    assert.throws(() => parseLinkParams({ delay: 1 }, 'link', base), /link\.delay: is not a known field/);
  });
});
