// Test helper for executor.qemu-crash.test.ts, run as its own process so the test can kill it with SIGKILL while
// it live-migrates real QEMU guests: an executor over a file store and the QEMU driver, on hosts whose work
// directories the test owns. Prints `job <vm> <state>` lines.
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { Move } from '../placement/plan.js';
import type { Placement } from './driver.js';
import { createExecutor } from './executor.js';
import { label } from './job.js';
import { createQemuDriver, type QemuDriver } from './qemu-driver.js';
import { openFileJobStore } from './store.js';

export const QC_FROM: Placement = { siteId: siteId('site-a'), hostId: hostId('a1') };
export const QC_TO: Placement = { siteId: siteId('site-b'), hostId: hostId('b1') };
export const QC_VMS = ['qc-one', 'qc-two'] as const;

/** The driver both the child and the restarted test use: loopback, one work directory per site. */
export function crashDriver(dir: string, basePort: number): QemuDriver {
  return createQemuDriver({
    hostFor: (p) => ({ placement: p, netns: null, migrationAddress: '127.0.0.1', workDir: join(dir, p.siteId === QC_FROM.siteId ? 'a' : 'b') }),
    tls: null,
    clock: systemClock,
    log: silentLogger,
    basePort,
  });
}

async function main(dir: string, basePort: number): Promise<void> {
  const ex = createExecutor({
    driver: crashDriver(dir, basePort), store: await openFileJobStore(join(dir, 'jobs')), clock: systemClock, log: silentLogger,
    limits: { maxConcurrent: 2, maxPerLink: 2, linkBandwidthShare: 1 },
  });
  ex.events.on((e) => {
    if (e.type === 'job') process.stdout.write(`job ${e.job.vm} ${label(e.job.state)}\n`);
  });
  const moves: Move[] = QC_VMS.map((vm, i) => ({
    vm: vmId(vm), from: QC_FROM.siteId, to: QC_TO.siteId, kind: 'closer-to-users', benefit: 10 - i, savingMs: 50, costS: 30, bytes: 1, postCopy: false, after: [],
  }));
  await ex.submit({ atMs: 0, planner: 'greedy', moves, rejected: [], totalBenefit: 0 }, {
    planId: 'qemu-crash-plan',
    request: (m, jobId) => ({
      jobId, vm: m.vm, from: QC_FROM, to: QC_TO,
      // 16 Mbit/s: a 128 MiB guest's non-zero pages take many seconds, so the kill lands mid-way.
      link: { rttMs: 1, bandwidthMbps: 20, foregroundShare: 0.2, lossPct: 0 },
      shape: { memoryMiB: 128, dirtyRateMiBps: 2, workingSetMiB: 8, diskGiB: 0 }, storage: 'shared',
      policy: {
        maxDowntimeMs: 300, maxDowntimeCeilingMs: 1000, postCopyAllowed: false, stallTimeoutMs: 60_000,
        onStall: ['raise-downtime', 'abort'], tls: false, deadlineMs: 300_000,
      },
    }),
  });
  // Stays alive until killed; bounded in case the test never does.
  setTimeout(() => process.exit(3), 120_000);
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void main(process.argv[2] ?? '.', Number(process.argv[3] ?? '30000'));
}
