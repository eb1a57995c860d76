import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { untilOutput } from '../core/child-output.js';
import { systemClock } from '../core/clock.js';
import { siteId, vmId, type SiteId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { Move, Plan } from '../placement/plan.js';
import { FakeClock } from '../testing/fake-clock.js';
import type { MigrationPolicy, MigrationRequest, Placement, VmShape } from './driver.js';
import { createExecutor, type Executor, type ExecutorEvent, type SubmitContext } from './executor.js';
import { isTerminal, type JobRecord } from './job.js';
import type { QueueLimits } from './queue.js';
import { CRASH_VMS, worldFile } from './executor.crash-child.js';
import { createSimDriver, realTimers, SimScheduler, SimWorld, type SimWorldState } from './sim-driver.js';
import { createMemoryJobStore, openFileJobStore, type JobStore } from './store.js';

const EU = siteId('eu-west');
const US = siteId('us-east');
const AP = siteId('ap-south');
const at = (s: SiteId): Placement => ({ siteId: s, hostId: null });

const POLICY: MigrationPolicy = {
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: true, stallTimeoutMs: 5000,
  onStall: ['raise-downtime', 'post-copy', 'abort'], tls: true, deadlineMs: 600_000,
};

interface VmSpec { readonly shape?: Partial<VmShape>; readonly policy?: Partial<MigrationPolicy> }

/** A world with VMs at eu-west, and a request builder for moves. */
function cloud(sched: SimScheduler, specs: Record<string, VmSpec>): { world: SimWorld; ctx: (o?: Partial<SubmitContext>) => SubmitContext } {
  const world = new SimWorld({ timers: sched });
  const shapes = new Map<string, VmShape>();
  for (const [name, spec] of Object.entries(specs)) {
    const shape: VmShape = { memoryMiB: 128, dirtyRateMiBps: 1, workingSetMiB: 16, diskGiB: 0, ...spec.shape };
    shapes.set(name, shape);
    world.addVm(vmId(name), at(EU), shape.memoryMiB);
  }
  const ctx = (o: Partial<SubmitContext> = {}): SubmitContext => ({
    request: (move: Move, jobId: string): MigrationRequest => ({
      jobId, vm: move.vm, from: at(move.from), to: at(move.to),
      link: { rttMs: 80, bandwidthMbps: 100, foregroundShare: 0.2, lossPct: 0 },
      shape: shapes.get(move.vm)!, storage: 'shared', policy: { ...POLICY, ...specs[move.vm]?.policy },
    }),
    ...o,
  });
  return { world, ctx };
}

const move = (vm: string, o: Partial<Move> = {}): Move => ({
  vm: vmId(vm), from: EU, to: US, kind: 'closer-to-users', benefit: 10, savingMs: 60, costS: 20, bytes: 1e8, postCopy: false, after: [], ...o,
});
const plan = (moves: Move[], atMs = 0): Plan => ({ atMs, planner: 'greedy', moves, rejected: [], totalBenefit: 0 });
const LIMITS: QueueLimits = { maxConcurrent: 4, maxPerLink: 2, linkBandwidthShare: 0.5 };

function executor(o: { sched: SimScheduler; world: SimWorld; store?: JobStore; limits?: Partial<QueueLimits>; clock?: FakeClock; recheck?: Parameters<typeof createExecutor>[0]['recheck'] }): Executor {
  let n = 0;
  return createExecutor({
    driver: createSimDriver(o.world), store: o.store ?? createMemoryJobStore(), clock: o.sched, log: silentLogger,
    limits: { ...LIMITS, ...o.limits }, newId: () => `job-${++n}`, ...(o.recheck !== undefined ? { recheck: o.recheck } : {}),
  });
}

/** Resolves once every job the executor knows is terminal (bounded in real time by the test's timeout). */
function allDone(ex: Executor): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (ex.list().every((j) => isTerminal(j.state))) {
        off();
        resolve();
      }
    };
    const off = ex.events.on(check);
    check();
  });
}

const kinds = (ex: Executor): Record<string, string> => Object.fromEntries(ex.list().map((j) => [j.vm, j.state.kind]));

describe('executor with the sim driver', () => {
  it('runs a plan to completion, persisting every phase in the job history before acting on it', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, ctx } = cloud(sched, { 'vm-1': {}, 'vm-2': {} });
    const store = createMemoryJobStore();
    const ex = executor({ sched, world, store });
    const saved: string[] = [];
    const save = store.save.bind(store);
    store.save = (r) => {
      saved.push(`${r.id}:${r.state.kind === 'running' ? `running:${r.state.phase}` : r.state.kind}`);
      return save(r);
    };
    const res = await ex.submit(plan([move('vm-1'), move('vm-2')]), ctx());
    assert.equal(res.jobs.length, 2);
    await allDone(ex);
    assert.deepEqual(kinds(ex), { 'vm-1': 'completed', 'vm-2': 'completed' });
    assert.deepEqual(world.runningAt(vmId('vm-1')), [at(US)]);
    const j1 = (await store.get('job-1'))!;
    assert.deepEqual(j1.history.map((h) => h.to), ['queued', 'starting', 'running:preparing', 'running:precopy', 'running:switching-over', 'completed']);
    assert.equal(j1.outcome?.status, 'completed');
    assert.deepEqual(saved.filter((s) => s.startsWith('job-1:')),
      ['job-1:queued', 'job-1:starting', 'job-1:running:preparing', 'job-1:running:precopy', 'job-1:running:switching-over', 'job-1:completed']);
    // Both on one link: the link's share (80 × 0.5 Mbit/s) was split between them.
    assert.equal(j1.capMbps, 20);
  });

  it('forwards progress snapshots as events, and keeps only keepFinished ended jobs in memory (the store keeps all)', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, ctx } = cloud(sched, { 'vm-1': {}, 'vm-2': {}, 'vm-3': {} });
    const store = createMemoryJobStore();
    let n = 0;
    const ex = createExecutor({
      driver: createSimDriver(world), store, clock: sched, log: silentLogger, limits: { ...LIMITS, maxConcurrent: 1 },
      newId: () => `job-${++n}`, keepFinished: 1,
    });
    const progress: number[] = [];
    ex.events.on((e) => e.type === 'progress' && e.job.id === 'job-1' && progress.push(e.progress.transferredBytes));
    await ex.submit(plan([move('vm-1', { benefit: 3 }), move('vm-2', { benefit: 2 }), move('vm-3', { benefit: 1 })]), ctx());
    await new Promise<void>((resolve) => {
      const off = ex.events.on(() => {
        if (ex.get('job-3')?.state.kind === 'completed') {
          off();
          resolve();
        }
      });
    });
    await ex.settled();
    assert.ok(progress.length > 5, `${progress.length} snapshots`);
    assert.ok(progress.every((b, i) => i === 0 || b >= progress[i - 1]!));
    assert.deepEqual(ex.list().map((j) => j.id), ['job-3']);
    assert.equal((await store.get('job-1'))?.state.kind, 'completed');
  });

  it('keeps to the per-link and global limits while it works through a queue', async () => {
    const sched = new SimScheduler({ auto: true });
    const names = ['vm-1', 'vm-2', 'vm-3', 'vm-4', 'vm-5', 'vm-6'];
    const { world, ctx } = cloud(sched, Object.fromEntries(names.map((n) => [n, { shape: { memoryMiB: 32 } }])));
    const ex = executor({ sched, world, limits: { maxConcurrent: 3, maxPerLink: 2 } });
    let maxUs = 0;
    let maxAp = 0;
    let maxAll = 0;
    ex.events.on(() => {
      const live = ex.list().filter((j) => !isTerminal(j.state) && j.state.kind !== 'queued');
      maxAll = Math.max(maxAll, live.length);
      maxUs = Math.max(maxUs, live.filter((j) => j.move.to === US).length);
      maxAp = Math.max(maxAp, live.filter((j) => j.move.to === AP).length);
    });
    // Four to us-east, two to ap-south: the us-east link's limit binds.
    await ex.submit(plan(names.map((n, i) => move(n, { to: i < 4 ? US : AP, benefit: 20 - i }))), ctx());
    await allDone(ex);
    assert.ok(ex.list().every((j) => j.state.kind === 'completed'));
    assert.equal(maxAll, 3, 'the global limit is used, never exceeded');
    assert.equal(maxUs, 2, 'the per-link limit is used, never exceeded');
    assert.ok(maxAp <= 2);
  });

  it('starts a move only after the moves it comes after have completed', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, ctx } = cloud(sched, { room: { shape: { memoryMiB: 256 } }, want: { shape: { memoryMiB: 32 } } });
    const ex = executor({ sched, world });
    await ex.submit(plan([move('want', { benefit: 90, to: AP, after: [vmId('room')] }), move('room', { benefit: -5, kind: 'make-room' })]), ctx());
    await allDone(ex);
    const [want, room] = [ex.list().find((j) => j.vm === 'want')!, ex.list().find((j) => j.vm === 'room')!];
    const startOf = (j: JobRecord): number => j.history.find((h) => h.to === 'starting')!.atMs;
    const doneOf = (j: JobRecord): number => j.history.find((h) => h.to === 'completed')!.atMs;
    assert.ok(startOf(want) >= doneOf(room), `want started at ${startOf(want)}, room completed at ${doneOf(room)}`);
  });

  it('lets a newer plan supersede the queued moves of an older one, leaving the running one alone', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': {}, 'vm-2': {}, 'vm-3': {}, 'vm-4': {} });
    const ex = executor({ sched, world, limits: { maxConcurrent: 1 } });
    await ex.submit(plan([move('vm-1', { benefit: 50 }), move('vm-2'), move('vm-3')]), ctx({ planId: 'p1' }));
    await ex.settled();
    const res = await ex.submit(plan([move('vm-4')], 1000), ctx({ planId: 'p2' }));
    assert.deepEqual([...res.superseded].sort(), ['job-2', 'job-3']);
    assert.deepEqual(kinds(ex), { 'vm-1': 'running', 'vm-2': 'cancelled', 'vm-3': 'cancelled', 'vm-4': 'queued' });
    assert.match(JSON.stringify(ex.get('job-2')?.state), /superseded by plan p2/);
    await sched.runAll();
    await ex.settled();
    await sched.runAll();
    await ex.settled();
    assert.deepEqual(kinds(ex), { 'vm-1': 'completed', 'vm-2': 'cancelled', 'vm-3': 'cancelled', 'vm-4': 'completed' });
  });

  it('re-checks each move against fresh state before starting it, and cancels the ones that no longer hold', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, ctx } = cloud(sched, { 'vm-1': {}, 'vm-2': {} });
    const checked: string[] = [];
    const ex = executor({
      sched, world,
      recheck: (m) => {
        checked.push(m.vm);
        return m.vm === 'vm-2' ? { ok: false, reason: 'us-east has 512 MiB free, needs 4096 MiB' } : { ok: true };
      },
    });
    await ex.submit(plan([move('vm-1'), move('vm-2')]), ctx());
    await allDone(ex);
    assert.deepEqual(checked.sort(), ['vm-1', 'vm-2']);
    assert.deepEqual(ex.get('job-2')?.state, { kind: 'cancelled', cause: 'recheck', reason: 'us-east has 512 MiB free, needs 4096 MiB' });
    assert.deepEqual(world.runningAt(vmId('vm-2')), [at(EU)]);
  });

  it('rejects a move for a VM already being moved, and a request that does not carry the job id', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': {} });
    const ex = executor({ sched, world });
    await ex.submit(plan([move('vm-1')]), ctx({ planId: 'p1' }));
    await ex.settled();
    const res = await ex.submit(plan([move('vm-1', { to: AP })]), ctx({ planId: 'p2' }));
    assert.equal(res.jobs.length, 0);
    assert.match(res.rejected[0]?.reason ?? '', /already being moved by job job-1 \(running:preparing\)/);
    const bad = ctx();
    await assert.rejects(ex.submit(plan([move('vm-9')]), { request: (m, id) => ({ ...bad.request({ ...m, vm: vmId('vm-1') }, id), jobId: 'other' }) }),
      /must carry jobId/);
  });

  it('cancel() aborts a running migration, leaving the VM at the source; a second cancel is a no-op', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': { shape: { memoryMiB: 1024 } } });
    const ex = executor({ sched, world });
    await ex.submit(plan([move('vm-1')]), ctx());
    await ex.settled();
    await sched.advance(3000);
    await ex.settled();
    assert.equal(ex.get('job-1')?.state.kind, 'running');
    const first = await ex.cancel('job-1', 'operator changed their mind');
    assert.equal(first.refused, null);
    assert.equal(first.job.state.kind, 'aborting');
    const second = await ex.cancel('job-1');
    assert.equal(second.refused, null);
    assert.equal(second.job.state.kind, 'aborting');
    await sched.runAll();
    await ex.settled();
    assert.deepEqual(ex.get('job-1')?.state, { kind: 'aborted', reason: 'operator changed their mind; the VM runs at the source eu-west' });
    assert.deepEqual(world.runningAt(vmId('vm-1')), [at(EU)]);
    await assert.rejects(ex.cancel('job-none'), /no such job/);
  });

  it('refuses to cancel a job in post-copy, saying why', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': { shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 }, policy: { onStall: ['post-copy'], stallTimeoutMs: 2000 } } });
    const ex = executor({ sched, world });
    await ex.submit(plan([move('vm-1')]), ctx());
    for (let i = 0; i < 100 && JSON.stringify(ex.get('job-1')?.state) !== '{"kind":"running","phase":"postcopy"}'; i++) {
      await sched.advance(500);
      await ex.settled();
    }
    const r = await ex.cancel('job-1');
    assert.match(r.refused ?? '', /post-copy/);
    await sched.runAll();
    await ex.settled();
    assert.equal(ex.get('job-1')?.state.kind, 'completed');
    assert.ok(ex.get('job-1')?.history.some((h) => h.note === 'stall: post-copy'));
  });

  it('verifies a driver failure with inspect and rolls the job back when the link is cut mid-transfer', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': { shape: { memoryMiB: 512 } } });
    const ex = executor({ sched, world });
    const alerts: ExecutorEvent[] = [];
    ex.events.on((e) => e.type === 'alert' && alerts.push(e));
    await ex.submit(plan([move('vm-1')]), ctx());
    await ex.settled();
    await sched.advance(5000);
    await ex.settled();
    world.cutLink(EU, US);
    await ex.settled();
    const job = ex.get('job-1')!;
    assert.equal(job.state.kind, 'rolled-back');
    assert.deepEqual(job.history.slice(-3).map((h) => h.to), ['verifying', 'rolling-back', 'rolled-back']);
    assert.match(job.state.kind === 'rolled-back' ? job.state.reason : '', /destination holds no runnable guest/);
    assert.match(job.outcome?.reason ?? '', /link eu-west~us-east was cut during precopy/);
    assert.deepEqual(world.runningAt(vmId('vm-1')), [at(EU)]);
    assert.equal(alerts.length, 0);
  });

  it('raises an alert and marks the job lost when the destination dies during post-copy', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, ctx } = cloud(sched, { 'vm-1': { shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 }, policy: { onStall: ['post-copy'], stallTimeoutMs: 2000 } } });
    const ex = executor({ sched, world });
    const alerts: string[] = [];
    ex.events.on((e) => e.type === 'alert' && alerts.push(e.message));
    await ex.submit(plan([move('vm-1')]), ctx());
    for (let i = 0; i < 100 && !world.instances(vmId('vm-1')).some((x) => x.state === 'postmigrate'); i++) {
      await sched.advance(500);
      await ex.settled();
    }
    world.killInstance(vmId('vm-1'), at(US));
    await ex.settled();
    const s = ex.get('job-1')!.state;
    assert.ok(s.kind === 'failed' && s.lost, JSON.stringify(s));
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]!, /vm-1 lost/);
  });

  it('records a failed driver start as a failed job with the VM untouched', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, ctx } = cloud(sched, { 'vm-1': {} });
    const ex = executor({ sched, world });
    world.killInstance(vmId('vm-1'), at(EU));
    world.addVm(vmId('vm-1'), at(AP), 128);
    await ex.submit(plan([move('vm-1')]), ctx());
    await allDone(ex);
    const s = ex.get('job-1')!.state;
    assert.equal(s.kind, 'failed');
    assert.match(s.kind === 'failed' ? s.reason : '', /does not run at the source/);
  });
});

describe('executor restart and reconciliation', () => {
  /**
   * Four migrations of different kinds run under one executor over a file store; at `crashAtMs` the executor
   * is dropped (the hypervisors keep going), and a new executor over the same store reconciles.
   */
  async function crashAndRestart(crashAtMs: number, downMs: number): Promise<{ report: string[]; jobs: JobRecord[]; where: Record<string, number> }> {
    const dir = await mkdtemp(join(tmpdir(), 'vmshadow-exec-'));
    try {
      const clock = new FakeClock(0);
      const sched = new SimScheduler({ clock });
      const specs: Record<string, VmSpec> = {
        small: { shape: { memoryMiB: 64 } },
        big: { shape: { memoryMiB: 512, dirtyRateMiBps: 4, workingSetMiB: 64 } },
        busy: { shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 }, policy: { onStall: ['post-copy'], stallTimeoutMs: 3000 } },
        later: { shape: { memoryMiB: 64 } },
      };
      const { world, ctx } = cloud(sched, specs);
      const ex1 = executor({ sched, world, store: await openFileJobStore(dir), limits: { maxConcurrent: 3, maxPerLink: 3 } });
      await ex1.submit(plan([
        move('small', { benefit: 40 }), move('big', { benefit: 30, to: AP }), move('busy', { benefit: 20 }), move('later', { benefit: 1 }),
      ]), ctx());
      for (let t = 0; t < crashAtMs; t += 250) {
        await sched.advance(Math.min(250, crashAtMs - t));
        await ex1.settled();
      }
      ex1.halt();
      await sched.advance(downMs); // migrations go on while no manager watches
      const ex2 = executor({ sched, world, store: await openFileJobStore(dir), limits: { maxConcurrent: 3, maxPerLink: 3 } });
      let finished = false;
      const reconciling = ex2.reconcile().finally(() => {
        finished = true;
      });
      // Virtual time moves only while reconciliation waits on the hypervisors (an abort, a post-copy's end),
      // not while it reads and writes the store: a few real milliseconds for its I/O between steps.
      for (let i = 0; i < 2000 && !finished; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (!finished) await sched.advance(i < 20 ? 50 : 1000);
      }
      const report = (await reconciling).map((r) => `${r.vm}:${r.found}->${r.now}`);
      for (let i = 0; i < 100 && !ex2.list().every((j) => isTerminal(j.state)); i++) {
        await sched.advance(5000);
        await ex2.settled();
      }
      const where = Object.fromEntries(Object.keys(specs).map((vm) => [vm, world.runningAt(vmId(vm)).length]));
      const store = await openFileJobStore(dir);
      const jobs = await Promise.all(Object.keys(specs).map(async (vm) => (await store.listByVm(vmId(vm)))[0]!));
      return { report, jobs, where };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('completes or rolls back every job after a crash at any moment: never two running copies, never none', async () => {
    const seen = new Set<string>();
    for (const crashAtMs of [0, 150, 400, 3000, 8000, 15_000, 30_000, 60_000, 90_000]) {
      for (const downMs of [0, 20_000]) {
        const { report, jobs, where } = await crashAndRestart(crashAtMs, downMs);
        const ctxt = `crash at ${crashAtMs} ms, down ${downMs} ms: ${report.join(', ')}`;
        for (const [vm, n] of Object.entries(where)) assert.equal(n, 1, `${vm} runs in ${n} places; ${ctxt}`);
        for (const j of jobs) {
          assert.ok(['completed', 'rolled-back', 'aborted'].includes(j.state.kind), `${j.vm} ended ${JSON.stringify(j.state)}; ${ctxt}`);
          seen.add(j.state.kind);
          if (report.some((r) => r.startsWith(`${j.vm}:`) && !r.includes(':queued->'))) {
            assert.ok(j.history.some((h) => h.event === 'restart-found'), `${j.vm}'s history records the reconciliation; ${ctxt}`);
          }
        }
      }
    }
    // The sweep exercised both outcomes of reconciliation.
    assert.ok(seen.has('completed') && seen.has('rolled-back'), [...seen].join(', '));
  });

  it('reports what it found and decided for each job, and re-queues a job that had not started', async () => {
    const { report, jobs } = await crashAndRestart(3000, 0);
    assert.ok(report.includes('later:queued->queued'), report.join(', '));
    assert.ok(report.some((r) => /^big:running:precopy->rolled-back$/.test(r)), report.join(', '));
    assert.equal(jobs.find((j) => j.vm === 'later')?.state.kind, 'completed');
  });
});

describe('executor after a real kill -9', () => {
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  it('a manager process killed -9 mid-migration and restarted over the same files completes or rolls back every job, one copy each', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmshadow-kill-'));
    try {
      const child = spawn(process.execPath, [fileURLToPath(new URL('./executor.crash-child.js', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await untilOutput(child, /running:precopy/, 10_000, 'the manager child');
        await sleep(300);
        child.kill('SIGKILL');
        await once(child, 'exit');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      assert.equal(child.signalCode, 'SIGKILL');

      // The hypervisors outlived the manager: their state carries on in this process.
      const state = JSON.parse(await readFile(worldFile(dir), 'utf8')) as SimWorldState;
      const world = SimWorld.restore({ timers: realTimers(), progressIntervalMs: 50 }, state);
      const store = await openFileJobStore(join(dir, 'jobs'));
      const found = await store.loadActive();
      assert.ok(found.some((j) => j.state.kind !== 'queued'), `killed with a migration in flight: ${found.map((j) => `${j.vm}:${j.state.kind}`).join(', ')}`);
      const ex = createExecutor({
        driver: createSimDriver(world), store, clock: systemClock, log: silentLogger,
        limits: { maxConcurrent: 2, maxPerLink: 2, linkBandwidthShare: 0.5 },
      });
      const report = await ex.reconcile();
      assert.equal(report.length, found.length);
      for (let i = 0; i < 400 && !ex.list().every((j) => isTerminal(j.state)); i++) await sleep(25);
      for (const vm of Object.keys(CRASH_VMS)) {
        assert.equal(world.runningAt(vmId(vm)).length, 1, `${vm} runs in ${world.runningAt(vmId(vm)).length} places`);
        const jobs = await store.listByVm(vmId(vm));
        assert.equal(jobs.length, 1);
        assert.ok(['completed', 'rolled-back', 'aborted'].includes(jobs[0]!.state.kind), `${vm}: ${JSON.stringify(jobs[0]!.state)}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
