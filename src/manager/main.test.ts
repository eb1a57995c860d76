// The whole manager in one process: a real SQLite file, the UDP collector fed real IPFIX datagrams on
// loopback, the loop, the simulated driver, the REST API and metrics over HTTP.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../core/logger.js';
import { TWO_SITE_INVENTORY, trafficNow } from '../testing/manager-fixtures.js';
import { createIpfixSender } from '../testing/ipfix-export.js';
import type { AuditEvent, PlanRecord, VmRecord } from '../store/records.js';
import type { LogEntry } from '../store/store.js';
import { loadManagerConfig } from './config.js';
import { startManager, type RunningManager } from './main.js';

const TOKEN = 'test-admin-token-0123456789';
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
