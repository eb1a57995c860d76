import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { UserRecord } from '../../store/records.js';
import {
  fmtAgo, fmtDuration, fmtMiB, fmtMs, mapFrame, nextRoundAtMs, progressPercent, rttClass, sparklinePoints, usersRttFrom, vmRttView,
} from './format.js';
import type { SiteId, UserId } from '../../core/ids.js';

function user(id: string, rtt: Record<string, number>): UserRecord {
  return {
    id: id as UserId, name: id, endpoint: '10.0.0.1', country: 'US', lat: 0, lon: 0, network: 'n', vms: [], lastSeenAtMs: 0,
    rtt: Object.fromEntries(Object.entries(rtt).map(([s, rttMs]) => [s, { rttMs, source: 'probe' as const, atMs: 0, stale: false }])),
  };
}
const share = (userId: string, s: number): { userId: UserId; share: number } => ({ userId: userId as UserId, share: s });

describe('rttClass()', () => {
  it('is green below 40 ms, amber below 100 ms and red from 100 ms', () => {
    assert.deepEqual([0, 39.9, 40, 99.9, 100, 900].map(rttClass), ['good', 'good', 'fair', 'fair', 'poor', 'poor']);
  });

  it('says unknown for no RTT, a negative or a non-finite one', () => {
    assert.deepEqual([null, undefined, -1, Number.NaN, Infinity].map(rttClass), ['unknown', 'unknown', 'unknown', 'unknown', 'unknown']);
  });

  it('never ranks a higher RTT better than a lower one', () => {
    const rank = { good: 0, fair: 1, poor: 2, unknown: 3 } as const;
    fc.assert(fc.property(fc.double({ min: 0, max: 1e4, noNaN: true }), fc.double({ min: 0, max: 1e4, noNaN: true }), (a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      return rank[rttClass(lo)] <= rank[rttClass(hi)];
    }));
  });
});

describe('the formatters', () => {
  it('write durations, sizes and times a person reads at a glance', () => {
    assert.equal(fmtMs(7.25), '7.3 ms');
    assert.equal(fmtMs(72.4), '72.4 ms');
    assert.equal(fmtMs(33), '33 ms');
    assert.equal(fmtMs(99.96), '99.9 ms');
    assert.equal(fmtMs(99.5), '99.5 ms');
    assert.equal(fmtMs(149.4), '149 ms');
    assert.equal(fmtMs(1500), '1.5 s');
    assert.equal(fmtMs(null), '—');
    assert.equal(fmtMiB(128 * 1024 * 1024), '128 MiB');
    assert.equal(fmtMiB(32 * 1024 * 1024), '32.0 MiB');
    assert.equal(fmtMiB(20 * 1024 ** 3), '20.0 GiB');
    assert.equal(fmtDuration(42), '42 s');
    assert.equal(fmtDuration(200), '3 min 20 s');
    assert.equal(fmtDuration(3900), '1 h 05 min');
    assert.equal(fmtDuration(null), '—');
    assert.equal(fmtAgo(1000, 1500), 'just now');
    assert.equal(fmtAgo(0, 42_000), '42 s ago');
    assert.equal(fmtAgo(60_000, 0), 'in 1 min');
  });

  it('never show an RTT below 100 ms as 100 ms or more (the red band)', () => {
    fc.assert(fc.property(fc.double({ min: 0, max: 99.999999, noNaN: true }), (x) => parseFloat(fmtMs(x)) < 100));
  });

  it('never answer an empty string or NaN for any number', () => {
    fc.assert(fc.property(fc.double(), (x) => {
      for (const s of [fmtMs(x), fmtMiB(x), fmtDuration(x), fmtAgo(x, 0)]) {
        if (s === '' || s.includes('NaN')) return false;
      }
      return true;
    }));
  });
});

describe('progressPercent()', () => {
  it('is the share of the bytes that no longer remain, as the API computes it', () => {
    assert.equal(progressPercent(200, 150), 25);
    assert.equal(progressPercent(3, 2), 33.3);
    assert.equal(progressPercent(0, 0), 0);
  });

  it('stays within 0..100 whatever the driver reports', () => {
    fc.assert(fc.property(fc.double({ noNaN: true }), fc.double(), (total, remaining) => {
      const p = progressPercent(total, remaining);
      return p >= 0 && p <= 100;
    }));
  });
});

describe("vmRttView() (the VM table's 'now vs best site')", () => {
  const users = { a: user('a', { x: 80, y: 20, z: 50 }), b: user('b', { x: 10, y: 60, z: 30 }) };
  const sites = [{ id: 'x' as SiteId }, { id: 'y' as SiteId }, { id: 'z' as SiteId }];

  it('weights each user by their share of the traffic', () => {
    assert.equal(usersRttFrom({ users: [share('a', 0.75), share('b', 0.25)] }, users, 'x'), 62.5);
    const v = vmRttView({ siteId: 'x' as SiteId, users: [share('a', 0.75), share('b', 0.25)] }, users, sites);
    assert.deepEqual(v, { nowMs: 62.5, best: { siteId: 'y', rttMs: 30 } });
  });

  it('knows no RTT from a site for which any of its users has none, nor for a VM without users', () => {
    const partial = { a: user('a', { x: 80 }), b: user('b', { x: 10, y: 5 }) };
    assert.equal(usersRttFrom({ users: [share('a', 0.5), share('b', 0.5)] }, partial, 'y'), null);
    assert.deepEqual(vmRttView({ siteId: 'x' as SiteId, users: [] }, users, sites), { nowMs: null, best: null });
  });

  it('keeps the current site on a tie', () => {
    const tie = { a: user('a', { x: 20, y: 20 }) };
    assert.equal(vmRttView({ siteId: 'y' as SiteId, users: [share('a', 1)] }, tie, sites).best?.siteId, 'y');
  });

  it('never names a best site worse than the current one', () => {
    const rtts = fc.dictionary(fc.constantFrom('x', 'y', 'z'), fc.integer({ min: 1, max: 400 }), { minKeys: 3 });
    fc.assert(fc.property(rtts, rtts, fc.constantFrom('x', 'y', 'z'), fc.double({ min: 0, max: 1, noNaN: true }), (ra, rb, at, s) => {
      const us = { a: user('a', ra), b: user('b', rb) };
      const v = vmRttView({ siteId: at as SiteId, users: [share('a', s), share('b', 1 - s)] }, us, sites);
      return v.nowMs !== null && v.best !== null && v.best.rttMs <= v.nowMs + 1e-9;
    }));
  });
});

describe('sparklinePoints()', () => {
  it('draws oldest to newest left to right, high sensitivity at the top', () => {
    assert.equal(sparklinePoints([0, 1], 80, 20), '1,19 79,1');
    assert.equal(sparklinePoints([0.5], 80, 20), '1,10 79,10');
    assert.equal(sparklinePoints([], 80, 20), '');
  });

  it('keeps every point inside the box, one per finite value', () => {
    fc.assert(fc.property(fc.array(fc.double()), fc.integer({ min: 2, max: 400 }), fc.integer({ min: 2, max: 100 }), (vs, w, h) => {
      const pts = sparklinePoints(vs, w, h);
      const finite = vs.filter(Number.isFinite).length;
      if (finite === 0) return pts === '';
      const xy = pts.split(' ').map((p) => p.split(',').map(Number));
      return xy.length === Math.max(2, finite) && xy.every(([x, y]) => x! >= 0 && x! <= w && y! >= 0 && y! <= h);
    }));
  });
});

describe('nextRoundAtMs()', () => {
  it('is the latest start plus the interval, unknown before the first round', () => {
    assert.equal(nextRoundAtMs(1000, 60), 61_000);
    assert.equal(nextRoundAtMs(null, 60), null);
    assert.equal(nextRoundAtMs(1000, 0), null);
  });
});

describe('mapFrame()', () => {
  it('frames the lab (Virginia, Oregon, Dublin) with a margin, and a single site with its continent', () => {
    const lab = mapFrame([[-77.45, 38.95], [-122.68, 45.52], [-6.26, 53.35]])!;
    assert.deepEqual(Object.values(lab).map((x) => Math.round(x * 100) / 100), [-142.68, 13.74, 21.15, 71.15]);
    assert.deepEqual(mapFrame([[10, 50]]), { lon0: -40, lon1: 60, lat0: 25, lat1: 75 });
    assert.equal(mapFrame([]), null);
    assert.equal(mapFrame([[Number.NaN, 3]]), null);
  });

  it('holds every point, spans at least 100° × 50° (or the whole range), and stays inside the world', () => {
    const pt = fc.tuple(fc.double({ min: -180, max: 180, noNaN: true }), fc.double({ min: -58, max: 80, noNaN: true }));
    fc.assert(fc.property(fc.array(pt, { minLength: 1, maxLength: 20 }), (pts) => {
      const f = mapFrame(pts)!;
      return f.lon0 >= -180 && f.lon1 <= 180 && f.lat0 >= -58 && f.lat1 <= 80
        && f.lon1 - f.lon0 >= 100 - 1e-9 && f.lat1 - f.lat0 >= 50 - 1e-9
        && pts.every(([lon, lat]) => lon >= f.lon0 && lon <= f.lon1 && lat >= f.lat0 && lat <= f.lat1);
    }));
  });
});
