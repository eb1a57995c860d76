// kill -9 the manager while it live-migrates real QEMU guests, start it again, reconcile: every VM ends with
// exactly one running copy, every job ends, and each job's history records what reconcile decided.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { untilOutput } from '../core/child-output.js';
import { systemClock } from '../core/clock.js';
import { vmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { ensureGuest } from '../testing/guest.js';
import type { MigrationRequest } from './driver.js';
import { createExecutor } from './executor.js';
import { crashDriver, QC_FROM, QC_TO, QC_VMS } from './executor.qemu-crash-child.js';
import { isTerminal } from './job.js';
import { guestReadyRegex } from '../testing/guest.js';
import { waitForConsole } from './qemu/process.js';
import { openFileJobStore } from './store.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('executor over the QEMU driver, killed -9 mid-migration', { timeout: 600_000 }, () => {
  it('a restarted executor reconciles every job: one running copy per VM, never two, never none', async () => {
    const dir = mkdtempSync('/tmp/vmsx-');
    const basePort = 30000 + (randomBytes(2).readUInt16BE(0) % 10000);
    const driver = crashDriver(dir, basePort);
    try {
      const guest = await ensureGuest();
      for (const name of QC_VMS) {
        const spec = await driver.launchVm({
          name, memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
          guest: { dirty: { workingSetMiB: 8, rateMiBps: 2 }, checkIntervalMs: 1000 },
        }, QC_FROM);
        await waitForConsole(spec.serialLogPath, guestReadyRegex(name), 90_000);
      }
      const child = spawn(process.execPath, [fileURLToPath(new URL('./executor.qemu-crash-child.js', import.meta.url)), dir, String(basePort)], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await untilOutput(child, /running:precopy/, 60_000, 'the manager child');
        await sleep(1500);
        child.kill('SIGKILL');
        await once(child, 'exit');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      assert.equal(child.signalCode, 'SIGKILL');

      const store = await openFileJobStore(join(dir, 'jobs'));
      const found = await store.loadActive();
      assert.ok(found.some((j) => j.state.kind !== 'queued'), `killed with a migration in flight: ${found.map((j) => `${j.vm}:${j.state.kind}`).join(', ')}`);
      const ex = createExecutor({ driver, store, clock: systemClock, log: silentLogger, limits: { maxConcurrent: 2, maxPerLink: 2, linkBandwidthShare: 1 } });
      const report = await ex.reconcile();
      assert.equal(report.length, found.length);
      for (let i = 0; i < 2400 && !ex.list().every((j) => isTerminal(j.state)); i++) await sleep(50);
      for (const vm of QC_VMS) {
        const jobs = await store.listByVm(vmId(vm));
        assert.equal(jobs.length, 1);
        const job = jobs[0]!;
        assert.ok(isTerminal(job.state), `${vm}: ${JSON.stringify(job.state)}`);
        const req: MigrationRequest = job.request;
        const p = await driver.inspect(req);
        const running = [p.source, p.destination].filter((s) => s === 'running').length;
        assert.equal(running, 1, `${vm} runs in ${running} places (source ${p.source}, destination ${p.destination})`);
        const where = p.source === 'running' ? QC_FROM : QC_TO;
        assert.equal(job.state.kind === 'completed', where === QC_TO, `${vm}: job ${job.state.kind} but the VM runs at ${where.siteId}`);
        if (found.some((f) => f.id === job.id && f.state.kind !== 'queued')) {
          assert.ok(job.history.some((h) => h.event === 'restart-found'), `${vm}: reconcile's decision is in the audit trail: ${job.history.map((h) => h.event).join(', ')}`);
        }
        assert.equal(job.history[0]?.event, 'created', `${vm}: the history from before the crash is kept`);
      }
    } finally {
      for (const vm of QC_VMS) for (const at of [QC_FROM, QC_TO]) await driver.destroyVm(vmId(vm), at, { removeDisk: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
