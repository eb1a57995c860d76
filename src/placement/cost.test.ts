import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { estimateMigration, PRECOPY_OVERHEAD_LIMIT, spareMbps, type MigrationShape } from './cost.js';

const FC = { numRuns: 200, seed: 20251125 };
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const LIMITS = { maxDowntimeMs: 300, maxRounds: 30 };
const bytesPerS = (mbps: number): number => (mbps * 1e6) / 8;

const arbShape: fc.Arbitrary<MigrationShape> = fc.record({
  memoryMiB: fc.integer({ min: 256, max: 65536 }),
  wsPct: fc.integer({ min: 0, max: 100 }),
  dirtyRateMiBps: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2000 })),
  diskGiB: fc.integer({ min: 0, max: 200 }),
}).map((x) => ({
  memoryMiB: x.memoryMiB,
  workingSetMiB: Math.round((x.memoryMiB * x.wsPct) / 100),
  dirtyRateMiBps: x.dirtyRateMiBps,
  diskGiB: x.diskGiB,
}));
const arbMbps = fc.integer({ min: 10, max: 100_000 });
const arbLimits = fc.record({
  maxDowntimeMs: fc.constantFrom(50, 300, 1000),
  maxRounds: fc.constantFrom(1, 5, 30),
});

describe('estimateMigration()', () => {
  it('moves an idle VM with memory + disk bytes, in two rounds (the copy, then an empty stop-and-copy)', () => {
    const e = estimateMigration({ memoryMiB: 4096, workingSetMiB: 4096, dirtyRateMiBps: 0, diskGiB: 10 }, 1000, LIMITS);
    assert.ok(Math.abs(e.bytes - (4096 * MiB + 10 * GiB)) < 1, `bytes ${e.bytes}`);
    assert.equal(e.converges, true);
    assert.equal(e.rounds, 2);
    assert.equal(e.downtimeMs, 0);
  });

  it('copies a VM small enough for the downtime limit in a single stop-and-copy round', () => {
    // 10 Gbit/s × 300 ms = 375 MB: a 256 MiB guest fits in one pause.
    const e = estimateMigration({ memoryMiB: 256, workingSetMiB: 256, dirtyRateMiBps: 50, diskGiB: 0 }, 10_000, LIMITS);
    assert.equal(e.rounds, 1);
    assert.equal(e.bytes, 256 * MiB);
    assert.ok(e.downtimeMs <= LIMITS.maxDowntimeMs);
  });

  it('takes bytes / spare bandwidth seconds (property)', () => {
    fc.assert(fc.property(arbShape, arbMbps, arbLimits, (shape, mbps, limits) => {
      const e = estimateMigration(shape, mbps, limits);
      assert.ok(Math.abs(e.seconds - e.bytes / bytesPerS(mbps)) <= 1e-9 * e.seconds);
      assert.ok(e.bytes >= shape.memoryMiB * MiB + shape.diskGiB * GiB - 1, 'never less than one pass of memory plus the disk');
    }), FC);
  });

  it('needs more than one round, and more bytes than memory, for a dirtying VM that still converges', () => {
    // 1 Gbit/s spare ≈ 119 MiB/s against 20 MiB/s of dirtying over a 1 GiB working set.
    const e = estimateMigration({ memoryMiB: 4096, workingSetMiB: 1024, dirtyRateMiBps: 20, diskGiB: 0 }, 1000, LIMITS);
    assert.equal(e.converges, true);
    assert.ok(e.rounds > 2, `rounds ${e.rounds}`);
    assert.ok(e.bytes > 4096 * MiB);
    assert.ok(e.downtimeMs <= LIMITS.maxDowntimeMs, `downtime ${e.downtimeMs} ms`);
  });

  it('does not converge when the guest dirties memory at least as fast as the link copies it, over a large working set', () => {
    // 500 Mbit/s ≈ 59.6 MiB/s spare, 100 MiB/s of dirtying over the whole 8 GiB.
    const shape = { memoryMiB: 8192, workingSetMiB: 8192, dirtyRateMiBps: 100, diskGiB: 0 };
    const e = estimateMigration(shape, 500, LIMITS);
    assert.equal(e.converges, false);
    assert.ok(Number.isFinite(e.seconds));
    // The post-copy estimate: one pass, then the working set fetched on demand.
    assert.ok(Math.abs(e.bytes - 2 * 8192 * MiB) < 1, `bytes ${e.bytes}`);
    // The same guest with a small working set does converge: a round never re-sends more than it.
    assert.equal(estimateMigration({ ...shape, workingSetMiB: 8 }, 500, LIMITS).converges, true);
  });

  it('never finishes over a link with no spare bandwidth', () => {
    const e = estimateMigration({ memoryMiB: 1024, workingSetMiB: 1024, dirtyRateMiBps: 0, diskGiB: 0 }, 0, LIMITS);
    assert.equal(e.seconds, Infinity);
    assert.equal(e.converges, false);
  });

  it('never takes longer with more bandwidth, as long as the extra bandwidth does not change whether pre-copy converges (property)', () => {
    fc.assert(fc.property(arbShape, arbMbps, arbMbps, arbLimits, (shape, a, b, limits) => {
      const slow = estimateMigration(shape, Math.min(a, b), limits);
      const fast = estimateMigration(shape, Math.max(a, b), limits);
      fc.pre(slow.converges === fast.converges);
      assert.ok(fast.seconds <= slow.seconds * (1 + 1e-12), `${fast.seconds} s at ${Math.max(a, b)} Mbit/s > ${slow.seconds} s at ${Math.min(a, b)}`);
      assert.ok(fast.bytes <= slow.bytes * (1 + 1e-12));
    }), FC);
  });

  it('never converges with less bandwidth where it does not converge with more (property)', () => {
    fc.assert(fc.property(arbShape, arbMbps, arbMbps, arbLimits, (shape, a, b, limits) => {
      const slow = estimateMigration(shape, Math.min(a, b), limits);
      const fast = estimateMigration(shape, Math.max(a, b), limits);
      assert.ok(!slow.converges || fast.converges);
    }), FC);
  });

  it('with post-copy allowed, more bandwidth never makes a move more than PRECOPY_OVERHEAD_LIMIT dearer, even where it makes pre-copy converge', () => {
    // At the threshold pre-copy alone jumps: a 17.2 s post-copy at 3770 Mbit/s, a 78.7 s 30-round pre-copy at 3780.
    const shape = { memoryMiB: 4096, workingSetMiB: 4096, dirtyRateMiBps: 400, diskGiB: 0 };
    const allowed = { ...LIMITS, postCopyAllowed: true };
    const slow = estimateMigration(shape, 3770, allowed);
    const fast = estimateMigration(shape, 3780, allowed);
    assert.ok(fast.seconds <= slow.seconds, `${fast.seconds} s with more bandwidth > ${slow.seconds} s`);
    assert.equal(fast.converges, true);
    assert.equal(fast.postCopy, true, '30 rounds of pre-copy move far more than 1.5× post-copy\'s bytes');
    fc.assert(fc.property(arbShape, arbMbps, arbMbps, arbLimits, (sh, a, b, limits) => {
      const lim = { ...limits, postCopyAllowed: true };
      const s1 = estimateMigration(sh, Math.min(a, b), lim);
      const s2 = estimateMigration(sh, Math.max(a, b), lim);
      assert.ok(s2.seconds <= s1.seconds * PRECOPY_OVERHEAD_LIMIT * (1 + 1e-12), `${s2.seconds} s at ${Math.max(a, b)} Mbit/s > ${s1.seconds} s at ${Math.min(a, b)}`);
    }), FC);
  });

  it('does not choose post-copy for a converging pre-copy unless it is allowed', () => {
    const shape = { memoryMiB: 4096, workingSetMiB: 4096, dirtyRateMiBps: 400, diskGiB: 0 };
    const e = estimateMigration(shape, 3780, LIMITS);
    assert.equal(e.converges, true);
    assert.equal(e.postCopy, false);
  });
});

describe('spareMbps()', () => {
  it('leaves migrations what foreground traffic does not keep', () => {
    assert.equal(spareMbps({ bandwidthMbps: 1000, foregroundShare: 0.25 }), 750);
  });
});
