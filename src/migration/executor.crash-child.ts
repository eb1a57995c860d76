// Test helper for executor.test.ts, run as its own process so that the test can kill it with SIGKILL mid-
// migration: an executor over a file store, and a simulated world that writes itself to `<dir>/world.json`
// after every change (the "hypervisors", which outlive the manager). Prints `job <vm> <state>` lines.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { siteId, vmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { Move } from '../placement/plan.js';
import type { VmShape } from './driver.js';
import { createExecutor } from './executor.js';
import { label } from './job.js';
import { createSimDriver, realTimers, SimWorld } from './sim-driver.js';
import { openFileJobStore } from './store.js';

export const CRASH_VMS: Readonly<Record<string, VmShape>> = {
  a: { memoryMiB: 16, dirtyRateMiBps: 1, workingSetMiB: 4, diskGiB: 0 },
  b: { memoryMiB: 64, dirtyRateMiBps: 2, workingSetMiB: 8, diskGiB: 0 },
  c: { memoryMiB: 16, dirtyRateMiBps: 1, workingSetMiB: 4, diskGiB: 0 },
};
export const CRASH_FROM = siteId('eu-west');
export const CRASH_TO = siteId('us-east');

export function worldFile(dir: string): string {
  return join(dir, 'world.json');
}

async function main(dir: string): Promise<void> {
  let seq = 0;
  const world = new SimWorld({
    timers: realTimers(),
    progressIntervalMs: 50,
    onChange: (w) => {
      const tmp = `${worldFile(dir)}.${++seq}.tmp`;
      writeFileSync(tmp, JSON.stringify(w.exportState()));
      renameSync(tmp, worldFile(dir));
    },
  });
  for (const [vm, shape] of Object.entries(CRASH_VMS)) world.addVm(vmId(vm), { siteId: CRASH_FROM, hostId: null }, shape.memoryMiB);
  const ex = createExecutor({
    driver: createSimDriver(world), store: await openFileJobStore(join(dir, 'jobs')), clock: systemClock, log: silentLogger,
    limits: { maxConcurrent: 2, maxPerLink: 2, linkBandwidthShare: 0.5 }, newId: () => `job-${++seq}`,
  });
  ex.events.on((e) => {
    if (e.type === 'job') process.stdout.write(`job ${e.job.vm} ${label(e.job.state)}\n`);
  });
  const moves: Move[] = Object.keys(CRASH_VMS).map((vm, i) => ({
    vm: vmId(vm), from: CRASH_FROM, to: CRASH_TO, kind: 'closer-to-users', benefit: 10 - i, savingMs: 50, costS: 1, bytes: 1, postCopy: false, after: [],
  }));
  await ex.submit({ atMs: 0, planner: 'greedy', moves, rejected: [], totalBenefit: 0 }, {
    planId: 'crash-plan',
    request: (m, jobId) => ({
      jobId, vm: m.vm, from: { siteId: m.from, hostId: null }, to: { siteId: m.to, hostId: null },
      link: { rttMs: 10, bandwidthMbps: 1000, foregroundShare: 0.2, lossPct: 0 }, shape: CRASH_VMS[m.vm]!, storage: 'shared',
      policy: {
        maxDowntimeMs: 300, maxDowntimeCeilingMs: 1000, postCopyAllowed: false, stallTimeoutMs: 5000,
        onStall: ['raise-downtime', 'abort'], tls: false, deadlineMs: 60_000,
      },
    }),
  });
  // Stays alive until killed; bounded in case the test never does.
  setTimeout(() => process.exit(3), 60_000);
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void main(process.argv[2] ?? '.');
}
