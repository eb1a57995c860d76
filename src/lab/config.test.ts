import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { InputError } from '../core/errors.js';
import { accessRttMs, regionRttMs } from '../sim/generate.js';
import { AWS_REGIONS, COUNTRY_CENTRES } from '../sim/geo.js';
import { loadLatencyData } from '../sim/latency-data.js';
import { findLink, parseFlowCollectorFlag, parseIpv4, parseLabConfig, type LabConfig } from './config.js';

const data = loadLatencyData(fileURLToPath(new URL('../../../data/', import.meta.url)));
const REGIONS = AWS_REGIONS.filter((r) => data.regionRttMs.has(r.region)).map((r) => r.region);

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof InputError, `an InputError, got ${String(e)}`);
    return e.field;
  }
  assert.fail('no error');
}

describe('parseLabConfig() defaults', () => {
  const c = parseLabConfig(undefined, data);

  it('builds three far-apart AWS regions, trans-continental US first', () => {
    assert.deepEqual(c.sites.map((s) => s.id), ['us-east-1', 'us-west-2', 'eu-west-1']);
    assert.deepEqual(c.sites.map((s) => s.hosts), [1, 1, 1]);
    const l = findLink(c, 'us-west-2', 'us-east-1');
    assert.equal(l?.rttMs, 63.5, 'the mean of the measured 64 and 63 ms');
    assert.ok(l.rttMs >= 60 && l.rttMs <= 70);
    assert.equal(l?.rateMbps, 100);
    assert.equal(findLink(c, 'us-west-2', 'eu-west-1')?.rttMs, 119);
  });

  it('places alice near us-west-2 and bob near eu-west-1, their desktops at us-east-1 (far from both)', () => {
    assert.deepEqual(c.users.map((u) => [u.name, u.near, u.country]), [['alice', 'us-west-2', 'US'], ['bob', 'eu-west-1', 'IE']]);
    assert.deepEqual(c.vms.map((v) => [v.name, v.site, v.user, v.memoryMiB, v.ipCidr]), [
      ['desk1', 'us-east-1', 'alice', 128, '10.77.0.100/24'],
      ['desk2', 'us-east-1', 'bob', 128, '10.77.0.101/24'],
    ]);
    assert.ok(c.vms.every((v) => v.dirty.workingSetMiB > 0 && v.dirty.rateMiBps > 0), 'memtest dirties a little memory');
  });

  it('gives user RTTs as the generator does: access to the home region plus its RTT to the site', () => {
    const usw2 = AWS_REGIONS.find((r) => r.region === 'us-west-2')!;
    const alice = c.users[0]!;
    const expected = Math.round(((accessRttMs(data, 'US', usw2) ?? NaN) + regionRttMs(data, 'us-west-2', 'us-east-1')) * 10) / 10;
    assert.equal(alice.rttMs['us-east-1'], expected);
    assert.equal(findLink(c, 'alice', 'us-east-1')?.rttMs, expected);
    assert.equal(findLink(c, 'alice', 'us-east-1')?.rateMbps, 50);
    assert.ok(alice.rttMs['us-west-2']! < alice.rttMs['us-east-1'], 'near its home, far from its desktop');
  });

  it('links every pair of sites and every user with every site, with distinct addresses on one subnet', () => {
    assert.equal(c.links.filter((l) => l.kind === 'site-site').length, 3);
    assert.equal(c.links.filter((l) => l.kind === 'user-site').length, 6);
    const addrs = [...c.sites.map((s) => s.address), ...c.users.map((u) => u.address), ...c.vms.map((v) => v.ipCidr)];
    assert.equal(new Set(addrs).size, addrs.length);
    assert.ok(addrs.every((a) => a.startsWith('10.77.0.') && a.endsWith('/24')));
    assert.equal(c.flowExport, null);
  });

  it('--sites N takes the first N default regions; with a file that lists sites it is refused', () => {
    assert.deepEqual(parseLabConfig(undefined, data, { sites: 2 }).sites.map((s) => s.id), ['us-east-1', 'us-west-2']);
    const one = parseLabConfig(undefined, data, { sites: 1 });
    assert.equal(one.links.filter((l) => l.kind === 'site-site').length, 0);
    assert.equal(one.users[0]?.near, 'us-east-1');
    assert.equal(fieldOf(() => parseLabConfig({ sites: ['us-east-1'] }, data, { sites: 2 })), '--sites');
    assert.equal(fieldOf(() => parseLabConfig(undefined, data, { sites: 0 })), '--sites');
  });
});

describe('parseLabConfig() reads a file', () => {
  it('takes sites as regions or objects, hosts, users with a country, VMs, link rates, overrides and flow export', () => {
    const c = parseLabConfig({
      subnet: '10.88.0.0/24',
      hostsPerSite: 2,
      sites: ['us-east-1', { region: 'eu-west-1', id: 'dublin', hosts: 1 }],
      users: [{ name: 'carol', near: 'dublin', country: 'GB' }],
      vms: [{ name: 'vdi7', site: 'dublin', user: 'carol', memoryMiB: 192, diskMiB: 0, ip: '10.88.0.50', dirty: { workingSetMiB: 4, rateMiBps: 2 } }],
      links: { siteRateMbps: 200, userRateMbps: 20, overrides: [{ a: 'dublin', b: 'carol', rttMs: 12, lossPct: 1 }] },
      flowExport: { collectorPort: 9995 },
    }, data);
    assert.deepEqual(c.sites.map((s) => [s.id, s.region, s.hosts, s.address]), [['us-east-1', 'us-east-1', 2, '10.88.0.1/24'], ['dublin', 'eu-west-1', 1, '10.88.0.2/24']]);
    assert.equal(c.users[0]?.address, '10.88.0.3/24');
    assert.deepEqual(c.vms[0], { name: 'vdi7', site: 'dublin', user: 'carol', memoryMiB: 192, vcpu: 1, diskMiB: 0, ipCidr: '10.88.0.50/24', dirty: { workingSetMiB: 4, rateMiBps: 2 } });
    assert.equal(findLink(c, 'us-east-1', 'dublin')?.rateMbps, 200);
    assert.deepEqual(findLink(c, 'carol', 'dublin'), { a: 'dublin', b: 'carol', kind: 'user-site', rttMs: 12, rateMbps: 20, lossPct: 1, jitterMs: 0 });
    assert.equal(c.users[0]?.rttMs.dublin, 12, "the user's RTTs follow the overridden link");
    assert.deepEqual(c.flowExport, { collectorHost: null, collectorPort: 9995, version: 10, activeTimeoutS: 30, idleTimeoutS: 15 });
  });

  it('names the field of each mistake', () => {
    const cases: [unknown, string][] = [
      [{ sites: ['us-east-1', 'mars-1'] }, 'sites[1]'],
      [{ sites: [{ region: 'nowhere' }] }, 'sites[0].region'],
      [{ sites: ['us-east-1', 'us-east-1'] }, 'sites[1]'],
      [{ sites: [{ region: 'us-east-1', hosts: 0 }] }, 'sites[0].hosts'],
      [{ sites: [] }, 'sites'],
      [{ users: [{ name: 'Alice', near: 'us-east-1' }] }, 'users[0].name'],
      [{ users: [{ name: 'al', near: 'tokyo' }] }, 'users[0].near'],
      [{ users: [{ name: 'al', near: 'us-east-1', country: 'usa' }] }, 'users[0].country'],
      [{ users: [{ name: 'al', near: 'us-east-1', country: 'XX' }] }, 'users[0].country'],
      [{ vms: [{ name: 'desk-1', site: 'us-east-1' }] }, 'vms[0].name'],
      [{ vms: [{ name: 'd', site: 'nowhere' }] }, 'vms[0].site'],
      [{ vms: [{ name: 'd', site: 'us-east-1', user: 'zed' }] }, 'vms[0].user'],
      [{ vms: [{ name: 'd', site: 'us-east-1', memoryMiB: 16 }] }, 'vms[0].memoryMiB'],
      [{ vms: [{ name: 'd', site: 'us-east-1', ip: '10.77.0.1' }] }, 'vms[0].ip'],
      [{ vms: [{ name: 'd', site: 'us-east-1', ip: '192.168.1.1' }] }, 'vms[0].ip'],
      [{ vms: [{ name: 'd', site: 'us-east-1' }, { name: 'd', site: 'us-east-1' }] }, 'vms[1].name'],
      [{ vms: [{ name: 'd', site: 'us-east-1', dirty: { workingSetMiB: 100 } }] }, 'vms[0].dirty.workingSetMiB'],
      [{ links: { siteRateMbps: -1 } }, 'links.siteRateMbps'],
      [{ links: { overrides: [{ a: 'us-east-1', b: 'pluto', rttMs: 5 }] } }, 'links.overrides[0].b'],
      [{ links: { overrides: [{ a: 'alice', b: 'bob' }] } }, 'links.overrides[0].b'],
      [{ links: { overrides: [{ a: 'pluto', b: 'alice' }] } }, 'links.overrides[0].a'],
      [{ flowExport: { version: 10 } }, 'flowExport.collectorPort'],
      [{ flowExport: { collectorPort: 9995, version: 7 } }, 'flowExport.version'],
      [{ subnet: '10.77.0.1/24' }, 'subnet'],
      [{ subnet: '10.77.0.0/28' }, 'subnet'],
      [{ colour: 'red' }, 'config.colour'],
      [[1, 2], 'config'],
    ];
    for (const [raw, field] of cases) assert.equal(fieldOf(() => parseLabConfig(raw, data)), field, JSON.stringify(raw));
  });

  it('reads examples/lab.json (the documented example)', () => {
    const file = fileURLToPath(new URL('../../../examples/lab.json', import.meta.url));
    const c = parseLabConfig(JSON.parse(readFileSync(file, 'utf8')), data);
    assert.deepEqual(c.sites.map((s) => s.id), ['us-east-1', 'us-west-2', 'eu-west-1']);
    assert.equal(findLink(c, 'us-east-1', 'us-west-2')?.rateMbps, 200);
    assert.equal(c.flowExport?.collectorPort, 9995);
  });

  it('reads --flow-collector as PORT or IPV4:PORT', () => {
    assert.deepEqual(parseFlowCollectorFlag('9995'), { host: null, port: 9995 });
    assert.deepEqual(parseFlowCollectorFlag('10.77.0.200:2055'), { host: '10.77.0.200', port: 2055 });
    assert.equal(fieldOf(() => parseFlowCollectorFlag('localhost:1')), '--flow-collector');
    assert.equal(fieldOf(() => parseFlowCollectorFlag('70000')), '--flow-collector');
    assert.deepEqual(parseLabConfig(undefined, data, { flowCollector: { host: null, port: 4739 } }).flowExport?.collectorPort, 4739);
  });
});

const countries = COUNTRY_CENTRES.map((c) => c[0]);

const arbConfig = fc
  .record({
    regions: fc.uniqueArray(fc.constantFrom(...REGIONS), { minLength: 1, maxLength: 6 }),
    users: fc.array(fc.record({ near: fc.nat(), country: fc.option(fc.constantFrom(...countries), { nil: undefined }) }), { maxLength: 4 }),
    vms: fc.array(fc.record({ site: fc.nat(), user: fc.nat(), memoryMiB: fc.integer({ min: 64, max: 256 }) }), { maxLength: 5 }),
  })
  .map(({ regions, users, vms }) => ({
    sites: regions,
    users: users.map((u, i) => ({ name: `u${i}`, near: regions[u.near % regions.length]!, ...(u.country === undefined ? {} : { country: u.country }) })),
    vms: vms.map((v, i) => ({ name: `vm${i}`, site: regions[v.site % regions.length]!, ...(users.length > 0 ? { user: `u${v.user % users.length}` } : {}), memoryMiB: v.memoryMiB })),
  }));

/** Some countries have no RIPE pair with some regions' countries: those configs are input errors. */
function tryParse(raw: unknown): LabConfig | null {
  try {
    return parseLabConfig(raw, data);
  } catch (e) {
    if (e instanceof InputError && /^users\[\d+\]\.country$/.test(e.field)) return null;
    throw e;
  }
}

describe('parseLabConfig() on any valid config (property)', () => {
  it('links each site pair and each user-site pair exactly once, with finite RTTs ≥ 0', () => {
    fc.assert(fc.property(arbConfig, (raw) => {
      const c = tryParse(raw);
      if (c === null) return;
      const S = c.sites.length;
      const U = c.users.length;
      assert.equal(c.links.length, (S * (S - 1)) / 2 + U * S);
      const keys = c.links.map((l) => [l.a, l.b].sort().join('|'));
      assert.equal(new Set(keys).size, keys.length);
      assert.ok(c.links.every((l) => Number.isFinite(l.rttMs) && l.rttMs >= 0));
      for (const u of c.users) for (const s of c.sites) assert.equal(findLink(c, u.name, s.id)?.rttMs, u.rttMs[s.id]);
    }), { numRuns: 200 });
  });

  it("puts a user's lowest RTT at the site it was placed near", () => {
    fc.assert(fc.property(arbConfig, (raw) => {
      const c = tryParse(raw);
      if (c === null) return;
      for (const u of c.users) {
        const best = Math.min(...Object.values(u.rttMs));
        assert.equal(u.rttMs[u.near], best, `${u.name} (${u.country}) near ${u.near}: ${JSON.stringify(u.rttMs)}`);
      }
    }), { numRuns: 200 });
  });

  it('gives every site, user and VM its own address inside the subnet, never the network or broadcast address', () => {
    fc.assert(fc.property(arbConfig, (raw) => {
      const c = tryParse(raw);
      if (c === null) return;
      const addrs = [...c.sites.map((s) => s.address), ...c.users.map((u) => u.address), ...c.vms.map((v) => v.ipCidr)].map((a) => parseIpv4(a.split('/')[0]!)!);
      assert.equal(new Set(addrs).size, addrs.length);
      const net = parseIpv4('10.77.0.0')!;
      assert.ok(addrs.every((a) => a > net && a < net + 255));
    }), { numRuns: 200 });
  });

  it('is deterministic: the same input gives the same config', () => {
    fc.assert(fc.property(arbConfig, (raw) => {
      const a = tryParse(raw);
      const b = tryParse(structuredClone(raw));
      assert.deepEqual(a, b);
    }), { numRuns: 50 });
  });
});
