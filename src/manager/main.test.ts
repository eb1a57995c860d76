// The whole manager in one process: a real SQLite file, the UDP collector fed real IPFIX datagrams on
// loopback, the loop, the simulated driver, the REST API and metrics over HTTP.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../core/logger.js';
import { conversation } from '../testing/fp-fixtures.js';
import { createIpfixSender } from '../testing/ipfix-export.js';
import type { AuditEvent, PlanRecord, VmRecord } from '../store/records.js';
import type { LogEntry } from '../store/store.js';
import { loadManagerConfig } from './config.js';
import { startManager, type RunningManager } from './main.js';

const TOKEN = 'test-admin-token-0123456789';
const DESK = '10.77.0.10';
const BULK = '10.77.0.11';
const ALICE = '10.9.0.21';
const SERVER = '10.200.0.5';

export const TWO_SITE_INVENTORY = {
  sites: [
    { id: 'us-east-1', country: 'US', lat: 38.9, lon: -77.4, capacity: { vcpu: 64, memoryMiB: 65536 } },
    { id: 'us-west-2', country: 'US', lat: 45.8, lon: -119.7, capacity: { vcpu: 64, memoryMiB: 65536 } },
  ],
  hosts: [
    { id: 'east-1', siteId: 'us-east-1', capacity: { vcpu: 64, memoryMiB: 65536 } },
    { id: 'west-1', siteId: 'us-west-2', capacity: { vcpu: 64, memoryMiB: 65536 } },
  ],
  links: [{ a: 'us-east-1', b: 'us-west-2', rttMs: 66, bandwidthMbps: 10000, foregroundShare: 0.2 }],
  vms: [
    { id: 'desk1', siteId: 'us-east-1', hostId: 'east-1', vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1, workingSetMiB: 8, addresses: [DESK] },
    { id: 'bulk1', siteId: 'us-east-1', hostId: 'east-1', vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1, workingSetMiB: 8, addresses: [BULK] },
  ],
  users: [{ id: 'alice', endpoint: ALICE, country: 'US', rttMs: { 'us-east-1': 70, 'us-west-2': 4 } }],
};

/** Ten seconds of a desktop playing video to alice over VNC, and of a bulk download, ending now. */
export function trafficNow(desk = DESK, bulk = BULK): ReturnType<typeof conversation> {
  const startMs = Date.now() - 10_000;
  return [
    ...conversation({ vm: desk, remote: ALICE, vmPort: 5900, remotePort: 52000, seconds: 10, ppsOut: 1600, ppsIn: 140, sizeOut: 1400, sizeIn: 60, startMs }),
    ...conversation({ vm: bulk, remote: SERVER, vmPort: 40000, remotePort: 443, seconds: 10, ppsOut: 400, ppsIn: 7000, sizeOut: 52, sizeIn: 1448, startMs }),
  ];
}

async function get<T>(m: RunningManager, path: string): Promise<T> {
  const r = await fetch(`${m.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, `GET ${path}: ${r.status} ${await r.clone().text()}`);
  return (await r.json()) as T;
}

describe('vmshadow manager (in one process, simulated driver)', { timeout: 120_000 }, () => {
  const dir = mkdtempSync('/tmp/vmsm-');
  after(() => rm(dir, { recursive: true, force: true }));

  it('follows a video desktop to its user through flows, rounds and a move, visible over the API and in the metrics', async () => {
    const inv = join(dir, 'inventory.json');
    writeFileSync(inv, JSON.stringify(TWO_SITE_INVENTORY));
    const cfg = loadManagerConfig({
      argv: ['--data-dir', join(dir, 'data'), '--listen', '127.0.0.1:0', '--inventory', inv, '--collector', '127.0.0.1:0',
        '--driver', 'sim', '--probe', 'off', '--mode', 'auto', '--round-interval-s', '2', '--window-s', '3', '--replica', 'm1'],
      env: { VMSHADOW_ADMIN_TOKEN: TOKEN },
    });
    const out: string[] = [];
    const m = await startManager(cfg, { out: (l) => out.push(l), log: silentLogger });
    const sender = createIpfixSender(m.flows!.address!.port);
    try {
      await m.untilLeader(15_000);
      assert.deepEqual(out, [], 'a token given in the environment is not printed');
      const health = await (await fetch(`${m.url}/healthz`)).json() as { leader: boolean; store: string };
      assert.equal(health.leader, true);
      assert.equal(health.store, 'sqlite');

      let desk: VmRecord | null = null;
      const t0 = Date.now();
      while (Date.now() - t0 < 60_000) {
        await sender.send(trafficNow());
        await new Promise((r) => setTimeout(r, 1000));
        desk = (await get<{ vm: VmRecord }>(m, '/v1/vms/desk1')).vm;
        if (desk.siteId === 'us-west-2') break;
      }
      assert.equal(desk?.siteId, 'us-west-2', `desk1 moved to alice's site: ${JSON.stringify(desk)}`);
      assert.equal(desk.sensitive, true);
      const bulk = (await get<{ vm: VmRecord }>(m, '/v1/vms/bulk1')).vm;
      assert.equal(bulk.siteId, 'us-east-1', 'the bulk download stays');
      assert.equal(bulk.activity, 'bulk-transfer');

      const plans = await get<{ items: PlanRecord[] }>(m, '/v1/plans?limit=100');
      const moved = plans.items.find((p) => p.moves.some((x) => x.vm === 'desk1'));
      assert.ok(moved !== undefined, 'the plan that moved it is kept');
      assert.deepEqual(moved.inputs.vms.find((v) => v.vm === 'desk1')?.usersRttMs, { 'us-east-1': 70, 'us-west-2': 4 });
      const audit = await get<{ items: LogEntry<AuditEvent>[] }>(m, '/v1/audit?limit=500');
      const kinds = audit.items.map((e) => e.value.kind);
      for (const k of ['leader', 'vm-sensitive', 'move-planned', 'migration-completed']) assert.ok(kinds.includes(k), `audit has ${k}: ${kinds.join(', ')}`);

      const metrics = await (await fetch(`${m.url}/metrics`)).text();
      assert.match(metrics, /vmshadow_migrations_total\{outcome="completed"\} 1/);
      assert.match(metrics, /vmshadow_vm_sensitivity\{vm="desk1"\} 0\.\d+/);
      assert.match(metrics, /vmshadow_leader 1/);
      assert.match(metrics, /vmshadow_collector_datagrams_total \d+/);
    } finally {
      sender.close();
      await m.close();
    }
  });

  it('refuses a bad configuration before starting anything, naming the key and its source', () => {
    assert.throws(() => loadManagerConfig({ argv: ['--mode', 'yolo'], env: {} }), /--mode: must be one of auto, approve, dry-run/);
    assert.throws(() => loadManagerConfig({ argv: [], env: { VMSHADOW_WINDOW_S: 'soon' } }), /env VMSHADOW_WINDOW_S: must be a number/);
  });

  it('names the bad field of a broken inventory file', async () => {
    const inv = join(dir, 'bad-inventory.json');
    writeFileSync(inv, JSON.stringify({ ...TWO_SITE_INVENTORY, vms: [{ ...TWO_SITE_INVENTORY.vms[0], addresses: ['not-an-ip'] }] }));
    const cfg = loadManagerConfig({ argv: ['--data-dir', join(dir, 'data2'), '--listen', '127.0.0.1:0', '--inventory', inv, '--driver', 'sim'], env: { VMSHADOW_ADMIN_TOKEN: TOKEN } });
    await assert.rejects(startManager(cfg, { out: () => undefined, log: silentLogger }), /vms\[0\]\.addresses\[0\]: must be an IPv4, IPv6 or MAC/);
  });
});
