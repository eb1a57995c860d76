import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { InputError } from '../core/errors.js';
import { comparePolicies } from './compare.js';
import { simulate } from './engine.js';
import { generateScenario } from './generate.js';
import { loadLatencyData } from './latency-data.js';
import { parseScenario, SCENARIO_SCHEMA } from './scenario.js';

const data = loadLatencyData(fileURLToPath(new URL('../../../data/', import.meta.url)));
const small = (seed: number): Record<string, unknown> => generateScenario(data, { sites: 4, vms: 40, seed, durationS: 6 * 3600 });

function withoutTimings<T extends { planMs: number }>(r: T): Omit<T, 'planMs'> {
  const { planMs: _p, ...rest } = r;
  return rest;
}

describe('generateScenario()', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    assert.deepEqual(small(3), small(3));
    assert.notDeepEqual(small(3), small(4));
  });

  it('builds sites from real AWS regions with the measured inter-region RTT on each link', () => {
    const sc = parseScenario(small(5));
    for (const l of sc.cloud.links) {
      const a = sc.cloud.sites.find((s) => s.id === l.a)!.region;
      const b = sc.cloud.sites.find((s) => s.id === l.b)!.region;
      const ab = data.regionRttMs.get(a)!.get(b)!;
      const ba = data.regionRttMs.get(b)!.get(a)!;
      assert.ok(Math.abs(l.rttMs - (ab + ba) / 2) <= 0.05, `${l.id}: ${l.rttMs} vs ${ab}/${ba}`);
    }
  });

  it("gives each user the lowest RTT at a site in their home region's country or nearest to it", () => {
    const sc = parseScenario(generateScenario(data, { sites: 6, vms: 60, seed: 9, withEvents: false }));
    for (const u of sc.cloud.users) {
      const best = Math.min(...u.rttMs.map((x) => x ?? Infinity));
      assert.ok(best > 0 && best < 400, `${u.id}: best RTT ${best}`);
    }
  });

  it('adds more sites as zones of the same regions beyond the 21 regions', () => {
    const sc = parseScenario(generateScenario(data, { sites: 30, vms: 30, seed: 1, withEvents: false }));
    assert.equal(sc.cloud.sites.length, 30);
    assert.ok(sc.cloud.sites.some((s) => s.id.endsWith('-z2')));
  });

  it('refuses a site count it cannot build, naming the flag', () => {
    assert.throws(() => generateScenario(data, { sites: 0, vms: 5, seed: 1 }), (e: unknown) => e instanceof InputError && e.field === '--sites');
  });
});

describe('parseScenario()', () => {
  it('refuses a schema version it does not know', () => {
    assert.throws(() => parseScenario({ ...small(1), schema: 'vmshadow.scenario/v9' }),
      (e: unknown) => e instanceof InputError && e.field === 'schema' && e.message.includes('vmshadow.scenario/v9') && e.message.includes(SCENARIO_SCHEMA));
  });

  it('names the field of a VM placed at an unknown site', () => {
    const raw = small(1) as { cloud: { vms: Record<string, unknown>[] } };
    raw.cloud.vms[2]!.siteId = 'mars-1';
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && e.field === 'cloud.vms[2].siteId' && e.message.includes('"mars-1"'));
  });

  it('names the field of a negative memory size', () => {
    const raw = small(1) as { cloud: { vms: Record<string, unknown>[] } };
    raw.cloud.vms[0]!.memoryMiB = -4;
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && e.field === 'cloud.vms[0].memoryMiB');
  });

  it('refuses a placement that already exceeds a site\'s capacity', () => {
    const raw = small(1) as { cloud: { sites: { capacity: { memoryMiB: number } }[]; vms: { siteId: string }[] } };
    raw.cloud.sites.forEach((s) => { s.capacity.memoryMiB = 1; });
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && /^cloud\.sites\[\d+\]\.capacity\.memoryMiB$/.test(e.field) && e.message.includes('exceeds capacity'));
  });

  it('refuses an event for a VM that does not exist at that time', () => {
    const raw = small(1) as { events: Record<string, unknown>[] };
    raw.events.push({ atS: 10, type: 'activity', vm: 'vm-404', activity: 'video' });
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && /^events\[\d+\]\.vm$/.test(e.field) && e.message.includes('vm-404'));
  });

  it('refuses an unknown top-level key instead of ignoring it', () => {
    assert.throws(() => parseScenario({ ...small(1), durationSeconds: 5 }), (e: unknown) => e instanceof InputError && e.field === 'scenario.durationSeconds');
  });
});

describe('simulate()', () => {
  it('gives the same result for the same scenario, run twice', () => {
    const sc = parseScenario(small(2));
    assert.deepEqual(withoutTimings(simulate(sc, { policy: 'greedy', recordSeries: true })), withoutTimings(simulate(sc, { policy: 'greedy', recordSeries: true })));
  });

  it('never moves anything under the "never" policy', () => {
    const r = simulate(parseScenario(small(2)), { policy: 'never' });
    assert.equal(r.migrations.started, 0);
    assert.equal(r.bytesMoved, 0);
  });

  it('brings the latency users feel down from "never", towards the ideal', () => {
    const sc = parseScenario(generateScenario(data, { sites: 5, vms: 80, seed: 12, durationS: 8 * 3600 }));
    const [never, greedy] = comparePolicies(sc, ['never', 'greedy']).policies;
    assert.ok(greedy!.sensitiveUserRttMs < never!.sensitiveUserRttMs, `${greedy!.sensitiveUserRttMs} vs ${never!.sensitiveUserRttMs}`);
    assert.ok(greedy!.sensitiveUserRttMs >= greedy!.idealSensitiveUserRttMs - 1e-9);
    assert.ok(greedy!.migrations.completed > 0);
  });

  it('takes at least bytes ÷ spare bandwidth for every migration (concurrent ones share the link)', () => {
    const sc = parseScenario(small(6));
    const r = simulate(sc, { policy: 'greedy' });
    for (const m of r.log) {
      const link = sc.cloud.links.find((l) => (l.a === m.from && l.b === m.to) || (l.a === m.to && l.b === m.from))!;
      const spareBytesPerS = (link.bandwidthMbps * (1 - link.foregroundShare) * 1e6) / 8;
      assert.ok(m.endS - m.startS >= m.bytes / spareBytesPerS - 1e-6, `${m.vm}: ${m.endS - m.startS} s for ${m.bytes} B`);
    }
  });

  it('keeps every site within capacity at every completed move', () => {
    const sc = parseScenario(small(8));
    const r = simulate(sc, { policy: 'nearest' });
    assert.ok(r.migrations.completed > 0);
    // Replaying the log over the initial placement never exceeds a site's memory.
    const at = new Map(sc.cloud.vms.map((v) => [v.id as string, v.siteId as string]));
    const mem = new Map(sc.cloud.vms.map((v) => [v.id as string, v.memoryMiB]));
    for (const e of sc.events) if (e.type === 'vm-arrive') mem.set(e.vm.id as string, e.vm.memoryMiB as number);
    for (const m of r.log.filter((l) => l.outcome === 'completed')) {
      at.set(m.vm, m.to);
      const used = [...at.entries()].filter(([, s]) => s === m.to).reduce((t, [v]) => t + mem.get(v)!, 0);
      const cap = sc.cloud.sites.find((s) => s.id === m.to)!.capacity.memoryMiB;
      assert.ok(used <= cap + 1e-6 || [...at.keys()].some((v) => !sc.cloud.vms.some((x) => x.id === v)), `${m.to}: ${used} > ${cap}`);
    }
  });
});

describe('simulate() with hand-written scenarios', () => {
  const base = (): Record<string, unknown> & { cloud: { sites: Record<string, unknown>[]; vms: Record<string, unknown>[]; users: Record<string, unknown>[]; links: Record<string, unknown>[]; hosts?: unknown[] }; events: Record<string, unknown>[] } => ({
    schema: SCENARIO_SCHEMA, durationS: 3600, roundIntervalS: 300,
    cloud: {
      sites: [
        { id: 'a', country: 'DE', lat: 50, lon: 8, capacity: { vcpu: 8, memoryMiB: 8192 } },
        { id: 'b', country: 'US', lat: 40, lon: -75, capacity: { vcpu: 8, memoryMiB: 8192 } },
      ],
      links: [{ a: 'a', b: 'b', rttMs: 90, bandwidthMbps: 1000 }],
      users: [{ id: 'u', country: 'US', lat: 40, lon: -74, rttMs: [100, 10] }],
      vms: [{ id: 'v', siteId: 'a', vcpu: 2, memoryMiB: 2048, sensitivity: 0.9, activity: 'video-streaming', dirtyRateMiBps: 5, users: [{ userId: 'u', share: 1 }] }],
    },
    events: [],
  });

  it('weighs a VM by its own sensitivity when no activity event names it', () => {
    const r = simulate(parseScenario(base()), { policy: 'never' });
    assert.ok(r.sensitiveUserRttMs > 99 && r.sensitiveUserRttMs < 101, String(r.sensitiveUserRttMs));
    assert.equal(r.p95SensitiveUserRttMs, 100);
  });

  it('moves the sensitive VM to its user\'s site, and the felt RTT falls', () => {
    const sc = parseScenario(base());
    const [never, greedy] = [simulate(sc, { policy: 'never' }), simulate(sc, { policy: 'greedy' })];
    assert.equal(greedy.migrations.completed, 1);
    assert.ok(greedy.sensitiveUserRttMs < never.sensitiveUserRttMs);
  });

  it('fills in an arriving VM\'s optional fields, and can move it', () => {
    const raw = base();
    raw.events.push({ atS: 0, type: 'vm-arrive', vm: { id: 'n', siteId: 'a', vcpu: 1, memoryMiB: 1024, sensitivity: 0.9 } });
    raw.events.push({ atS: 0, type: 'vm-arrive', vm: { id: 'm', siteId: 'a', vcpu: 1, memoryMiB: 1024, sensitivity: 0.9, users: [{ userId: 'u', share: 1 }] } });
    const r = simulate(parseScenario(raw), { policy: 'greedy' });
    assert.equal(r.arrivals.placed, 2);
    assert.ok(r.log.some((l) => l.vm === 'm' && l.outcome === 'completed'));
  });

  it('drops the host of an arrival redirected to another site', () => {
    const raw = base();
    raw.cloud.sites[0]!.capacity = { vcpu: 2, memoryMiB: 2048 };
    raw.cloud.hosts = [{ id: 'h-a', siteId: 'a', capacity: { vcpu: 8, memoryMiB: 8192 } }];
    raw.events.push({ atS: 10, type: 'vm-arrive', vm: { id: 'n', siteId: 'a', hostId: 'h-a', vcpu: 1, memoryMiB: 1024, users: [{ userId: 'u', share: 1 }] } });
    const r = simulate(parseScenario({ ...raw, params: { maxMovesPerRound: 0 } }), { policy: 'greedy' });
    assert.equal(r.arrivals.redirected, 1);
    assert.equal(r.rounds, 13);
  });

  it('refuses a link faster than 10 Tbit/s and more rounds than it simulates, naming the field', () => {
    const raw = base();
    raw.cloud.links[0]!.bandwidthMbps = 1e300;
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && e.field === 'cloud.links[0].bandwidthMbps');
    assert.throws(() => parseScenario({ ...base(), durationS: 366 * 86_400, roundIntervalS: 1 }), (e: unknown) => e instanceof InputError && e.field === 'roundIntervalS');
  });

  it('refuses a pinned VM that does not exist, and a host over its capacity', () => {
    assert.throws(() => parseScenario({ ...base(), params: { pinned: ['nope'] } }), (e: unknown) => e instanceof InputError && e.field === 'params.pinned[0]');
    const raw = base();
    raw.cloud.hosts = [{ id: 'h', siteId: 'a', capacity: { vcpu: 1, memoryMiB: 8192 } }];
    raw.cloud.vms[0]!.hostId = 'h';
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && e.field === 'cloud.hosts[0].capacity.vcpu');
  });

  it('starts a move that waits for an eviction only after that eviction of the same plan', () => {
    const sc = parseScenario(generateScenario(data, { sites: 6, vms: 120, seed: 3, durationS: 4 * 3600 }));
    const r = simulate(sc, { policy: 'greedy' });
    assert.equal(r.migrations.dropped, 0, 'no planned move is lost to a stale dependency');
  });
});
