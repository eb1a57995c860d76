import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { distribution, formatSummary, quantile, summarize, type UpdateSample } from './update-stats.js';

const sample = (updateMs: number, frameAgeMs: number | null = null): UpdateSample => ({ doneAtMs: 0, updateMs, bytes: 1000, rects: 2, frameAgeMs });

describe('update statistics', () => {
  it('quantile() is a nearest-rank quantile: an element, between min and max, monotone in q', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 50 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (xs, a, b) => {
        const s = [...xs].sort((x, y) => x - y);
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        assert.ok(s.includes(quantile(s, lo)));
        assert.ok(quantile(s, lo) <= quantile(s, hi));
        assert.ok(quantile(s, 0) === s[0] && quantile(s, 1) === s.at(-1));
      }),
    );
    assert.equal(quantile([10, 20, 30, 40], 0.5), 20);
    assert.ok(Number.isNaN(quantile([], 0.5)));
  });

  it('summarize() turns a window of updates into updates/s, bytes/s and update-time percentiles', () => {
    const samples = Array.from({ length: 20 }, (_, i) => sample(i < 19 ? 40 : 200, i % 2 === 0 ? 12 : null));
    const s = summarize(samples, 2000, 500_000);
    assert.equal(s.updates, 20);
    assert.equal(s.updatesPerS, 10);
    assert.equal(s.bytesPerS, 250_000);
    assert.equal(s.updateMs?.p50, 40);
    assert.equal(s.updateMs?.p95, 40);
    assert.equal(s.updateMs?.max, 200);
    assert.equal(s.frameAgeMs?.p50, 12);
    assert.equal(s.rectsPerUpdate, 2);
    assert.match(formatSummary(s), /^10\.0 updates\/s, 0\.25 MB\/s, update time p50 40\.0 p95 40\.0 ms, frame age p50 12\.0/);
  });

  it('an idle window has no update-time distribution and zero rates', () => {
    const s = summarize([], 3000, 0);
    assert.equal(s.updateMs, null);
    assert.equal(s.updatesPerS, 0);
    assert.equal(distribution([]), null);
  });
});
