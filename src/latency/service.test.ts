import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AppError } from '../core/errors.js';
import { siteId, userId, type SiteId } from '../core/ids.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { FakeClock } from '../testing/fake-clock.js';
import { DEFAULT_RTT_PARAMS } from './estimate.js';
import type { GeoSite } from './geo.js';
import { createLatencyService, DEFAULT_LATENCY_PARAMS, type LatencyEndpoint, type LatencyGeo, type LatencyServiceOptions, type LatencySite } from './service.js';
import type { ProbeResult, SiteProber } from './site-prober.js';

const SITES: LatencySite[] = [
  { id: siteId('us-east-1'), country: 'US', region: 'us-east-1' },
  { id: siteId('us-west-2'), country: 'US', region: 'us-west-2' },
  { id: siteId('eu-west-1'), country: 'IE', region: 'eu-west-1' },
];
const [EAST, WEST, EU] = SITES.map((s) => s.id) as [SiteId, SiteId, SiteId];
const STALE_MS = DEFAULT_RTT_PARAMS.staleAfterMs;

/** What each (site, host) answers: an RTT, or 'fail'; a function gets the probe's index within its pair's round. */
type Answer = number | 'fail' | 'hang' | ((n: number) => number | 'fail');

class FakeNet {
  readonly answers = new Map<string, Answer>();
  readonly calls: { site: SiteId; host: string; port: number; timeoutMs: number }[] = [];
  readonly closed = new Set<SiteId>();
  inFlight = 0;
  maxInFlight = 0;
  private readonly perPair = new Map<string, number>();

  set(site: SiteId, host: string, a: Answer): void {
    this.answers.set(`${site}|${host}`, a);
  }

  setAll(host: string, a: Answer): void {
    for (const s of SITES) this.set(s.id, host, a);
  }

  newRound(): void {
    this.perPair.clear();
  }

  prober(site: SiteId): SiteProber {
    return {
      probe: async (host, port, timeoutMs): Promise<ProbeResult> => {
        this.calls.push({ site, host, port, timeoutMs });
        const key = `${site}|${host}`;
        const n = this.perPair.get(key) ?? 0;
        this.perPair.set(key, n + 1);
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
          await new Promise((r) => setImmediate(r));
          let a = this.answers.get(key) ?? 'fail';
          if (a === 'hang') return await new Promise<never>(() => undefined);
          if (typeof a === 'function') a = a(n);
          if (a === 'fail') throw new AppError('PROBE_TIMEOUT', `RTT probe to ${host}:${port} got no answer within ${timeoutMs} ms`);
          return { rttMs: a, how: 'refused' };
        } finally {
          this.inFlight--;
        }
      },
      close: () => {
        this.closed.add(site);
        return Promise.resolve();
      },
    };
  }
}

/** GeoIP stand-in: countries by address, RTT by country and site from a table. */
function fakeGeo(countries: Record<string, string>, rtt: Record<string, number>): LatencyGeo & { lookups: string[] } {
  const lookups: string[] = [];
  return {
    lookups,
    countryOf(ip) {
      lookups.push(ip);
      return countries[ip] ?? null;
    },
    geoRttMs(country: string, site: GeoSite) {
      const v = rtt[`${country}|${site.id}`];
      if (v === undefined) throw new AppError('GEO_RTT_UNKNOWN', `No RTT estimate from country ${country} to site ${site.id}`);
      return v;
    },
  };
}

function setup(over: Partial<LatencyServiceOptions> = {}): { net: FakeNet; clock: FakeClock; svc: ReturnType<typeof createLatencyService>; round: (eps: LatencyEndpoint[], advanceMs?: number) => ReturnType<ReturnType<typeof createLatencyService>['probeRound']> } {
  const net = new FakeNet();
  const clock = new FakeClock(1_000_000);
  const svc = createLatencyService({ sites: SITES, probeFrom: (s) => net.prober(s), geo: null, clock, log: silentLogger, ...over });
  return {
    net, clock, svc,
    round: (eps, advanceMs = 60_000) => {
      clock.advance(advanceMs);
      net.newRound();
      return svc.probeRound(eps);
    },
  };
}

const alice = (endpoint = '10.77.0.4', extra: Partial<LatencyEndpoint> = {}): LatencyEndpoint => ({ userId: userId('alice'), endpoint, ...extra });
const bob = (endpoint = '10.77.0.5', extra: Partial<LatencyEndpoint> = {}): LatencyEndpoint => ({ userId: userId('bob'), endpoint, ...extra });

describe('createLatencyService()', () => {
  it('probes every site × endpoint probesPerPair times on the given port (default 9), with the per-probe timeout, at most `concurrency` pairs at once', async () => {
    const { net, round } = setup({ params: { concurrency: 2, probeTimeoutMs: 700 } });
    const users = Array.from({ length: 4 }, (_, i) => ({ userId: userId(`u${i}`), endpoint: `10.0.0.${i + 1}`, ...(i === 0 ? { port: 22 } : {}) }));
    for (const u of users) net.setAll(u.endpoint, 30);
    const r = await round(users);
    const k = DEFAULT_LATENCY_PARAMS.probesPerPair;
    assert.equal(k, DEFAULT_RTT_PARAMS.shiftAfter + 1);
    assert.equal(net.calls.length, 3 * 4 * k);
    assert.equal(r.probesSent, 3 * 4 * k);
    assert.equal(r.pairs, 12);
    assert.ok(net.maxInFlight <= 2 && net.maxInFlight >= 1, `${net.maxInFlight}`);
    assert.ok(net.calls.every((c) => c.timeoutMs === 700));
    assert.deepEqual(new Set(net.calls.filter((c) => c.host === '10.0.0.1').map((c) => c.port)), new Set([22]));
    assert.deepEqual(new Set(net.calls.filter((c) => c.host !== '10.0.0.1').map((c) => c.port)), new Set([9]));
  });

  it('smooths each (endpoint, site) RTT and answers with source probe and the time of the last sample', async () => {
    const { net, clock, round } = setup();
    net.set(EAST, '10.77.0.4', (n) => [50, 52, 48][n % 3]!);
    net.set(WEST, '10.77.0.4', 20);
    net.set(EU, '10.77.0.4', 140);
    let r = await round([alice()]);
    for (let i = 0; i < 5; i++) r = await round([alice()]);
    const row = r.rows[0]!;
    assert.equal(row.networkChanged, false);
    assert.ok(Math.abs(row.rtt[EAST]!.rttMs - 50) < 2, `${row.rtt[EAST]!.rttMs}`);
    assert.deepEqual(row.rtt[WEST], { rttMs: 20, source: 'probe', atMs: clock.nowMs(), stale: false });
    assert.equal(row.rtt[EU]!.rttMs, 140);
    assert.deepEqual(row.probeErrors, {});
  });

  it('keeps the last estimate while probes fail, then falls back to GeoIP once it is stale', async () => {
    const geo = fakeGeo({}, { 'US|us-east-1': 33, 'US|us-west-2': 34, 'US|eu-west-1': 99.5 });
    const { net, clock, round } = setup({ geo });
    net.setAll('10.77.0.4', 40);
    await round([alice('10.77.0.4', { country: 'US' })]);
    const probedAt = clock.nowMs();
    net.setAll('10.77.0.4', 'fail');
    let row = (await round([alice('10.77.0.4', { country: 'US' })], STALE_MS - 60_000)).rows[0]!;
    assert.deepEqual(row.rtt[EAST], { rttMs: 40, source: 'probe', atMs: probedAt, stale: false });
    assert.match(row.probeErrors[EAST] ?? '', /RTT probe to 10\.77\.0\.4:9 got no answer/);
    row = (await round([alice('10.77.0.4', { country: 'US' })], 60_001)).rows[0]!;
    assert.deepEqual(row.rtt[EAST], { rttMs: 33, source: 'geoip', atMs: clock.nowMs(), stale: false });
    assert.equal(row.rtt[EU]!.rttMs, 99.5);
    assert.equal(row.country, 'US');
    assert.equal(row.countrySource, 'config');
  });

  it('answers a stale probe, marked stale, when no fallback exists; a failed probe leaves the estimate as it was', async () => {
    const { net, round } = setup();
    net.setAll('10.77.0.4', 40);
    await round([alice()]);
    net.setAll('10.77.0.4', 'fail');
    const r = await round([alice()], STALE_MS + 1);
    assert.deepEqual([r.probesSent, r.probesFailed], [3, 3], 'a pair is not probed again after a failure in the round');
    assert.deepEqual({ ...r.rows[0]!.rtt[WEST]!, atMs: 0 }, { rttMs: 40, source: 'probe', atMs: 0, stale: true });
  });

  it('for an endpoint never probed uses the configured country, else the GeoIP database, and knows nothing of a private address without a country', async () => {
    const geo = fakeGeo({ '81.2.69.142': 'GB' }, { 'DE|eu-west-1': 30, 'GB|eu-west-1': 12, 'GB|us-east-1': 75 });
    const { round } = setup({ geo });
    const r = await round([
      { userId: userId('dora'), endpoint: '10.9.9.9', country: 'de' },
      { userId: userId('gus'), endpoint: '81.2.69.142' },
      { userId: userId('pat'), endpoint: '10.9.9.10' },
    ]);
    const [dora, gus, pat] = r.rows as [typeof r.rows[0], typeof r.rows[0], typeof r.rows[0]];
    assert.deepEqual(Object.keys(dora.rtt), [EU], 'no estimate for DE → US sites in the stand-in table: absent');
    assert.equal(dora.rtt[EU]!.source, 'geoip');
    assert.equal(dora.country, 'DE');
    assert.deepEqual({ country: gus.country, src: gus.countrySource, eu: gus.rtt[EU]!.rttMs, east: gus.rtt[EAST]!.rttMs }, { country: 'GB', src: 'geoip', eu: 12, east: 75 });
    assert.deepEqual(pat.rtt, {});
    assert.equal(pat.country, null);
    assert.ok(!geo.lookups.includes('10.9.9.9'), 'a configured country needs no lookup');
  });

  it('prefers configured RTTs to GeoIP where no fresh probe exists, and a fresh probe to both', async () => {
    const geo = fakeGeo({}, { 'US|us-east-1': 33, 'US|us-west-2': 34, 'US|eu-west-1': 99 });
    const { net, round } = setup({ geo });
    net.set(WEST, '10.77.0.4', 31);
    const r = await round([alice('10.77.0.4', { country: 'US', configuredRttMs: { [EAST]: 93.5 } })]);
    const row = r.rows[0]!;
    assert.deepEqual([row.rtt[EAST]!.source, row.rtt[EAST]!.rttMs], ['config', 93.5]);
    assert.deepEqual([row.rtt[WEST]!.source, row.rtt[WEST]!.rttMs], ['probe', 31]);
    assert.deepEqual([row.rtt[EU]!.source, row.rtt[EU]!.rttMs], ['geoip', 99]);
  });

  it('picks up a change of network within one round at every site, even one whose RTT moved less than the band', async () => {
    const lines: string[] = [];
    const log: Logger = { ...silentLogger, info: (m, f) => lines.push(`${m} ${JSON.stringify(f)}`), child: () => log };
    const { net, round } = setup({ log });
    const wifi: Record<string, number> = { [EAST]: 30, [WEST]: 90, [EU]: 100 };
    const lte: Record<string, number> = { [EAST]: 95, [WEST]: 150, [EU]: 108 }; // EU moves 8 %: inside the band
    const noisy = (base: number) => (n: number): number => base + [0, 1, -1][n % 3]!;
    for (const s of SITES) net.set(s.id, '10.77.0.4', noisy(wifi[s.id]!));
    for (let i = 0; i < 20; i++) assert.equal((await round([alice()])).rows[0]!.networkChanged, false);
    for (const s of SITES) net.set(s.id, '10.77.0.4', noisy(lte[s.id]!));
    let row = (await round([alice()])).rows[0]!;
    assert.equal(row.networkChanged, true);
    assert.deepEqual(new Set(row.shiftedSites), new Set([EAST, WEST]));
    for (const s of SITES) assert.ok(Math.abs(row.rtt[s.id]!.rttMs - lte[s.id]!) < 2, `${s.id}: ${row.rtt[s.id]!.rttMs} ≠ ${lte[s.id]}`);
    assert.ok(lines.some((l) => l.startsWith('user changed network') && l.includes('"user":"alice"')), lines.join('\n'));
    row = (await round([alice()])).rows[0]!;
    assert.equal(row.networkChanged, false, 'the next round on the new network is no change');
  });

  it('drops a first probe slowed by ARP (twice the RTT): it neither poisons the estimate nor hides a change of network', async () => {
    const { net, round } = setup();
    const arpFirst = (rttMs: number) => (n: number): number => (n === 0 ? 2 * rttMs : rttMs + (n % 2));
    net.setAll('10.77.0.4', arpFirst(94));
    let r = await round([alice()]);
    assert.ok(Math.abs(r.rows[0]!.rtt[EAST]!.rttMs - 94.5) < 1, `${r.rows[0]!.rtt[EAST]!.rttMs}`);
    assert.equal(r.samplesDropped, 3);
    assert.equal(r.probesFailed, 0);
    for (let i = 0; i < 3; i++) await round([alice()]);
    net.setAll('10.77.0.4', arpFirst(40)); // a new network whose first contact waits on ARP too
    r = await round([alice()]);
    assert.equal(r.rows[0]!.networkChanged, true);
    assert.ok(Math.abs(r.rows[0]!.rtt[WEST]!.rttMs - 40.5) < 1, `${r.rows[0]!.rtt[WEST]!.rttMs}`);
  });

  it('takes a new endpoint for a user as a change of network, its RTTs counting at once', async () => {
    const { net, round } = setup();
    net.setAll('10.77.0.4', 30);
    net.setAll('10.77.0.99', 120);
    for (let i = 0; i < 5; i++) await round([alice('10.77.0.4'), bob('10.77.0.5')]);
    const r = await round([alice('10.77.0.99'), bob('10.77.0.5')]);
    const a = r.rows.find((x) => x.userId === 'alice')!;
    assert.equal(a.networkChanged, true);
    assert.equal(a.rtt[EAST]!.rttMs, 120);
    assert.equal(r.rows.find((x) => x.userId === 'bob')!.networkChanged, false);
  });

  it('does not take a lone spike or a round of mixed noise for a change of network', async () => {
    const { net, round } = setup();
    net.setAll('10.77.0.4', 50);
    for (let i = 0; i < 10; i++) await round([alice()]);
    net.setAll('10.77.0.4', (n) => [50, 400, 51][n % 3]!);
    let row = (await round([alice()])).rows[0]!;
    assert.equal(row.networkChanged, false);
    net.setAll('10.77.0.4', (n) => [200, 10, 300, 12][n % 4]!);
    row = (await round([alice()])).rows[0]!;
    assert.equal(row.networkChanged, false);
    assert.ok(Math.abs(row.rtt[EAST]!.rttMs - 50) < 5, `${row.rtt[EAST]!.rttMs}`);
  });

  it('forgets endpoints not seen for forgetAfterRounds rounds: tracked = distinct endpoints of the last N rounds', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.uniqueArray(fc.integer({ min: 1, max: 12 }), { maxLength: 5 }), { minLength: 1, maxLength: 15 }),
      async (n, rounds) => {
        const { net, svc, round } = setup({ params: { forgetAfterRounds: n } });
        for (let i = 1; i <= 12; i++) net.setAll(`10.1.0.${i}`, 20 + i);
        for (let k = 0; k < rounds.length; k++) {
          await round(rounds[k]!.map((i) => ({ userId: userId(`u${i}`), endpoint: `10.1.0.${i}` })));
          const recent = new Set(rounds.slice(Math.max(0, k - n + 1), k + 1).flat());
          assert.equal(svc.trackedEndpoints(), recent.size, `round ${k}, N ${n}`);
        }
      }), { seed: 11, numRuns: 60 });
  });

  it('always answers a known source with an RTT ≥ 0 in the range seen; a fresh probe is never stale (property)', async () => {
    const step = fc.record({
      ok: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
      rttMs: fc.array(fc.double({ min: 0, max: 500, noNaN: true }), { minLength: 3, maxLength: 3 }),
      advanceMs: fc.integer({ min: 0, max: 2 * STALE_MS }),
    });
    await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
      const geo = fakeGeo({}, { 'US|us-east-1': 33, 'US|eu-west-1': 99 });
      const { net, clock, round } = setup({ geo });
      const seen: number[] = [33, 99];
      for (const s of steps) {
        SITES.forEach((site, j) => net.set(site.id, '10.77.0.4', s.ok[j]! ? s.rttMs[j]! : 'fail'));
        SITES.forEach((_, j) => s.ok[j]! && seen.push(s.rttMs[j]!));
        const row = (await round([alice('10.77.0.4', { country: 'US' })], s.advanceMs)).rows[0]!;
        for (const [site, v] of Object.entries(row.rtt)) {
          assert.ok(['probe', 'geoip', 'config'].includes(v.source));
          assert.ok(Number.isFinite(v.rttMs) && v.rttMs >= Math.min(...seen) - 0.01 && v.rttMs <= Math.max(...seen) + 0.01, `${site}: ${v.rttMs}`);
          assert.ok(v.atMs <= clock.nowMs());
          if (v.source === 'probe' && !v.stale) assert.ok(clock.nowMs() - v.atMs <= STALE_MS);
          if (v.stale) assert.ok(clock.nowMs() - v.atMs > STALE_MS);
        }
        // GeoIP knows US → us-east-1 and eu-west-1: those two are never absent.
        assert.ok(row.rtt[EAST] !== undefined && row.rtt[EU] !== undefined);
      }
    }), { seed: 5, numRuns: 80 });
  });

  it('cuts off a prober that never answers at the probe timeout (plus 1 s of grace)', async () => {
    const { net, round } = setup({ params: { probeTimeoutMs: 20, probesPerPair: 3 } });
    net.set(EAST, '10.77.0.4', 'hang');
    net.set(WEST, '10.77.0.4', 25);
    const t0 = Date.now();
    const r = await round([alice()]);
    const took = Date.now() - t0;
    assert.ok(took < 6000, `${took} ms`);
    assert.match(r.rows[0]!.probeErrors[EAST] ?? '', /gave no answer within 1020 ms/);
    assert.equal(r.rows[0]!.rtt[WEST]!.rttMs, 25);
  });

  it('falls back at a site whose prober cannot be opened, and close() closes the probers it opened', async () => {
    const net = new FakeNet();
    net.setAll('10.77.0.4', 40);
    const opened: SiteId[] = [];
    let euUp = false;
    const svc = createLatencyService({
      sites: SITES, geo: null, clock: new FakeClock(0), log: silentLogger,
      probeFrom: (s) => {
        opened.push(s);
        if (s === EU && !euUp) throw new AppError('LAB_NO_SITE', 'The lab has no site eu-west-1');
        return net.prober(s);
      },
    });
    const row = (await svc.probeRound([alice(), bob()])).rows[0]!;
    assert.deepEqual(Object.keys(row.rtt).sort(), [EAST, WEST].sort());
    assert.match(row.probeErrors[EU] ?? '', /no prober at site eu-west-1: The lab has no site eu-west-1/);
    euUp = true;
    const again = (await svc.probeRound([alice()])).rows[0]!;
    assert.equal(again.rtt[EU]?.rttMs, 40, 'tried again the next round');
    assert.deepEqual(opened, [EAST, WEST, EU, EU], 'opened once per round at most, and kept once open');
    await svc.close();
    assert.deepEqual(net.closed, new Set([EAST, WEST, EU]));
    await assert.rejects(svc.probeRound([alice()]), /latency service is closed/);
  });

  it('refuses a round while one runs, and bad input naming the field', async () => {
    const { net, svc } = setup();
    net.setAll('10.77.0.4', 40);
    const first = svc.probeRound([alice()]);
    await assert.rejects(svc.probeRound([alice()]), (e: AppError) => e.code === 'LATENCY_ROUND_RUNNING' && e.retryable);
    await first;
    await assert.rejects(svc.probeRound([alice(), bob('10.77.0.5', { port: 70_000 })]), /endpoints\[1\]\.port: must be a whole number from 1 to 65535 \(got 70000\)/);
    await assert.rejects(svc.probeRound([alice('10.77.0.4', { country: 'USA' })]), /endpoints\[0\]\.country/);
    assert.throws(() => createLatencyService({ sites: SITES, probeFrom: (s) => net.prober(s), geo: null, clock: new FakeClock(), log: silentLogger, params: { probesPerPair: 1 } }),
      /params\.probesPerPair: must be a whole number from 3 to 20/);
  });
});
