// kill -9 the `vmshadow manager` process while it live-migrates two real QEMU guests (that it chose to move
// from the flows it collected), start it again: every migration is reconciled, each VM runs in exactly one
// place and the store says where, and the audit trail from before the crash is whole.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { freePort } from '../testing/ports.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { Placement } from '../migration/driver.js';
import { isTerminal } from '../migration/job.js';
import { createQemuDriver } from '../migration/qemu-driver.js';
import { waitForConsole } from '../migration/qemu/process.js';
import { openStore } from '../store/open.js';
import { jobStoreOf } from '../store/repos.js';
import type { AuditEvent, VmRecord } from '../store/records.js';
import { ensureGuest, guestReadyRegex } from '../testing/guest.js';
import { createIpfixSender } from '../testing/ipfix-export.js';
import { conversation } from '../testing/fp-fixtures.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const TOKEN = 'recovery-admin-token-0123456789';
const A: Placement = { siteId: siteId('site-a'), hostId: hostId('a1') };
const B: Placement = { siteId: siteId('site-b'), hostId: hostId('b1') };
const VMS = [{ name: 'rc-one', ip: '10.77.0.31' }, { name: 'rc-two', ip: '10.77.0.32' }];
const ALICE = '10.9.0.21';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function video(ip: string): ReturnType<typeof conversation> {
  return conversation({ vm: ip, remote: ALICE, vmPort: 5900, remotePort: 52000, seconds: 10, ppsOut: 1600, ppsIn: 140, sizeOut: 1400, sizeIn: 60, startMs: Date.now() - 10_000 });
}

describe('vmshadow manager killed -9 mid-migration', { timeout: 900_000 }, () => {
  it('reconciles both migrations after a restart: one running copy per VM, where the store says, and the audit trail whole', async () => {
    const dir = mkdtempSync('/tmp/vmsr-');
    const hostDir = (p: Placement): string => join(dir, p.siteId === A.siteId ? 'a' : 'b');
    const driver = createQemuDriver({
      hostFor: (p) => ({ placement: p.siteId === A.siteId ? A : B, netns: null, migrationAddress: '127.0.0.1', workDir: hostDir(p) }),
      tls: null, clock: systemClock, log: silentLogger,
    });
    const apiPort = await freePort();
    const collectorPort = await freePort();
    const url = `http://127.0.0.1:${apiPort}`;
    const inventory = join(dir, 'inventory.json');
    writeFileSync(inventory, JSON.stringify({
      sites: ['site-a', 'site-b'].map((id, i) => ({ id, country: 'US', lat: 40, lon: -75 - 40 * i, capacity: { vcpu: 8, memoryMiB: 8192 } })),
      hosts: [
        { id: 'a1', siteId: 'site-a', capacity: { vcpu: 8, memoryMiB: 8192 }, endpoint: hostDir(A) },
        { id: 'b1', siteId: 'site-b', capacity: { vcpu: 8, memoryMiB: 8192 }, endpoint: hostDir(B) },
      ],
      // 20 Mbit/s with a fifth kept for users: a 128 MiB guest takes tens of seconds, so the kill lands mid-way.
      links: [{ a: 'site-a', b: 'site-b', rttMs: 60, bandwidthMbps: 20, foregroundShare: 0.2 }],
      vms: VMS.map((v) => ({ id: v.name, siteId: 'site-a', hostId: 'a1', vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 2, workingSetMiB: 8, addresses: [v.ip] })),
      users: [{ id: 'alice', endpoint: ALICE, country: 'US', rttMs: { 'site-a': 70, 'site-b': 4 } }],
    }));
    const args = (mode: string): string[] => [CLI, 'manager', '--data-dir', join(dir, 'data'), '--listen', `127.0.0.1:${apiPort}`, '--inventory', inventory,
      '--collector', `127.0.0.1:${collectorPort}`, '--driver', 'qemu', '--probe', 'off', '--mode', mode, '--round-interval-s', '2', '--window-s', '3',
      '--replica', 'rc-manager', '--log-level', 'warn', '--params', JSON.stringify({ maxCostS: 100_000 })];
    const children: ChildProcess[] = [];
    const startManager = async (mode: string): Promise<ChildProcess> => {
      const c = spawn(process.execPath, args(mode), { env: { ...process.env, VMSHADOW_ADMIN_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(c);
      let errText = '';
      c.stderr.on('data', (d: Buffer) => {
        errText = (errText + d.toString()).slice(-4000);
      });
      for (let i = 0; i < 300; i++) {
        const h = await fetch(`${url}/healthz`).then((r) => r.json() as Promise<{ leader: boolean }>).catch(() => null);
        if (h?.leader === true) return c;
        if (c.exitCode !== null) throw new Error(`the manager exited with ${c.exitCode}: ${errText}`);
        await sleep(200);
      }
      throw new Error(`the manager did not lead within 60 s: ${errText}`);
    };
    const api = async <T>(path: string): Promise<T> => (await (await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;
    try {
      const guest = await ensureGuest();
      for (const v of VMS) {
        const spec = await driver.launchVm({
          name: v.name, memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
          guest: { dirty: { workingSetMiB: 8, rateMiBps: 2 }, checkIntervalMs: 1000 },
        }, A);
        await waitForConsole(spec.serialLogPath, guestReadyRegex(v.name), 120_000);
      }

      const first = await startManager('auto');
      const sender = createIpfixSender(collectorPort);
      let inFlight = false;
      try {
        for (let i = 0; i < 120 && !inFlight; i++) {
          await sender.send(VMS.flatMap((v) => video(v.ip)));
          await sleep(1000);
          const active = await api<{ items: { phase: string | null; transferredBytes: number }[] }>('/v1/migrations?active=true');
          inFlight = active.items.some((m) => m.phase === 'precopy' && m.transferredBytes > 0);
        }
      } finally {
        sender.close();
      }
      assert.ok(inFlight, 'the manager started migrating the desktops it found sensitive');
      await sleep(1500);
      first.kill('SIGKILL');
      await once(first, 'exit');
      assert.equal(first.signalCode, 'SIGKILL');

      // What the crashed manager left in its store.
      const before = await openStore(`sqlite:${join(dir, 'data', 'vmshadow.db')}`);
      const auditBefore = await before.read<AuditEvent>('audit', { limit: 10_000 });
      const activeBefore = await jobStoreOf(before).loadActive();
      await before.close();
      assert.ok(activeBefore.some((j) => j.state.kind !== 'queued'), `killed with a migration in flight: ${activeBefore.map((j) => `${j.vm}:${j.state.kind}`).join(', ')}`);
      assert.ok(auditBefore.some((e) => e.value.kind === 'move-planned'));

      // Restarted in dry-run: it reconciles what was in flight and starts nothing new.
      const second = await startManager('dry-run');
      for (let i = 0; i < 600; i++) {
        const active = await api<{ items: unknown[] }>('/v1/migrations?active=true');
        if (active.items.length === 0) break;
        await sleep(500);
      }
      second.kill('SIGTERM');
      await once(second, 'exit');
      assert.equal(second.exitCode, 0, 'a clean stop exits 0');

      const store = await openStore(`sqlite:${join(dir, 'data', 'vmshadow.db')}`);
      try {
        const jobs = jobStoreOf(store);
        for (const v of VMS) {
          const list = await jobs.listByVm(vmId(v.name));
          assert.equal(list.length, 1, `${v.name}: one job, not a second attempt`);
          const job = list[0]!;
          assert.ok(isTerminal(job.state), `${v.name}: ${JSON.stringify(job.state)}`);
          const p = await driver.inspect(job.request);
          const running = [p.source, p.destination].filter((s) => s === 'running').length;
          assert.equal(running, 1, `${v.name} runs in ${running} places (source ${p.source}, destination ${p.destination})`);
          const where = p.source === 'running' ? A : B;
          const rec = (await store.get<VmRecord>('vms', v.name))!.value;
          assert.equal(rec.siteId, where.siteId, `${v.name}: the store says ${rec.siteId}, QEMU runs it at ${where.siteId}`);
          assert.equal(rec.migratingJobId, null);
          assert.equal(job.state.kind === 'completed', where === B);
          if (activeBefore.some((f) => f.id === job.id && f.state.kind !== 'queued')) {
            assert.ok(job.history.some((h) => h.event === 'restart-found'), `${v.name}: the job's history records the reconcile`);
          }
        }
        const auditAfter = await store.read<AuditEvent>('audit', { limit: 10_000 });
        const after = new Map(auditAfter.map((e) => [e.seq, e]));
        for (const e of auditBefore) assert.deepEqual(after.get(e.seq), e, `audit entry ${e.seq} survived the crash unchanged`);
        const kinds = auditAfter.map((e) => e.value.kind);
        assert.ok(kinds.filter((k) => k === 'migration-reconciled').length >= 1, kinds.join(', '));
        assert.equal(kinds.filter((k) => k === 'leader').length, 2, 'both starts are in the trail');
      } finally {
        await store.close();
      }
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const v of VMS) for (const at of [A, B]) await driver.destroyVm(vmId(v.name), at, { removeDisk: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
