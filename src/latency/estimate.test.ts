import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_RTT_PARAMS, estimateRtt, observeRtt, type RttState } from './estimate.js';

const feed = (xs: readonly number[], from: RttState | null = null, t0 = 0): RttState => {
  let s = from;
  xs.forEach((x, i) => { s = observeRtt(s, x, t0 + i * 1000); });
  if (s === null) throw new Error('no samples');
  return s;
};

describe('RTT estimate', () => {
  it('stays within the range of the samples it saw, and its percentiles are samples', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0, max: 2000, noNaN: true }), { minLength: 1, maxLength: 200 }), (xs) => {
      const e = estimateRtt(feed(xs), xs.length * 1000);
      const lo = Math.min(...xs);
      const hi = Math.max(...xs);
      assert.ok(e.rttMs >= lo - 1e-9 && e.rttMs <= hi + 1e-9, `${e.rttMs} outside [${lo}, ${hi}]`);
      assert.ok(xs.includes(e.p50Ms) && xs.includes(e.p95Ms));
      assert.ok(e.p50Ms <= e.p95Ms);
      assert.equal(e.samples, xs.length);
    }), { seed: 7 });
  });

  it('converges on a steady RTT', () => {
    const e = estimateRtt(feed(Array.from({ length: 50 }, (_, i) => 80 + (i % 3) - 1)), 50_000);
    assert.ok(Math.abs(e.rttMs - 80) < 1, `${e.rttMs}`);
  });

  it('picks up a change of network within three probes, not over dozens of rounds of smoothing', () => {
    const wifi = feed(Array.from({ length: 20 }, () => 30));
    const after = feed([95, 96, 94], wifi, 20_000);
    const e = estimateRtt(after, 23_000);
    assert.equal(e.shifts, 1);
    assert.ok(Math.abs(e.rttMs - 95) < 2, `${e.rttMs}`);
  });

  it('ignores a lone spike and mixed noise', () => {
    const base = feed(Array.from({ length: 20 }, () => 50));
    const e = estimateRtt(feed([400, 50, 51, 10, 300, 49], base, 20_000), 30_000);
    assert.equal(e.shifts, 0);
    assert.ok(Math.abs(e.rttMs - 50) < 3, `${e.rttMs}`);
  });

  it('says when the estimate is stale', () => {
    const s = feed([20]);
    assert.equal(estimateRtt(s, DEFAULT_RTT_PARAMS.staleAfterMs).stale, false);
    assert.equal(estimateRtt(s, DEFAULT_RTT_PARAMS.staleAfterMs + 1).stale, true);
  });

  it('refuses a sample that is not a finite RTT, naming it', () => {
    assert.throws(() => observeRtt(null, -1, 0), /rttMs must be a finite number ≥ 0 \(got -1\)/);
    assert.throws(() => observeRtt(null, NaN, 0), /got NaN/);
  });
});
