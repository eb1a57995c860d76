import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { siteId, vmId, type VmId } from '../core/ids.js';
import { estimateMigration, spareMbps } from '../placement/cost.js';
import { VirtualClock } from '../sim/virtual-clock.js';
import { FakeClock } from '../testing/fake-clock.js';
import type { MigrationPolicy, MigrationProgress, MigrationRequest, Placement, VmShape } from './driver.js';
import { runDriverContract, type DriverHarness } from './driver.contract.js';
import { createSimDriver, realTimers, SimScheduler, SimWorld, type SimTimers } from './sim-driver.js';

const A: Placement = { siteId: siteId('eu-west'), hostId: null };
const B: Placement = { siteId: siteId('us-east'), hostId: null };
const MiB = 1024 * 1024;

const policy = (o: Partial<MigrationPolicy> = {}): MigrationPolicy => ({
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 10_000,
  onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 600_000, ...o,
});

/** A world of two sites on a 100 Mbit/s, 80 ms link, and a request builder for fresh VMs in it. */
function makeWorld(timers: SimTimers, siteMemoryMiB?: Record<string, number>): {
  world: SimWorld;
  request: (o?: { shape?: Partial<VmShape>; policy?: Partial<MigrationPolicy>; storage?: 'shared' | 'mirror'; bandwidthCapMbps?: number }) => MigrationRequest;
} {
  const world = new SimWorld({ timers, siteMemoryMiB });
  let n = 0;
  return {
    world,
    request: (o = {}) => {
      n++;
      const vm = vmId(`vm-${n}`);
      const shape: VmShape = { memoryMiB: 256, dirtyRateMiBps: 1, workingSetMiB: 16, diskGiB: 0, ...o.shape };
      world.addVm(vm, A, shape.memoryMiB);
      return {
        jobId: `job-${n}`, vm, from: A, to: B,
        link: { rttMs: 80, bandwidthMbps: 100, foregroundShare: 0.2, lossPct: 0 },
        shape, storage: o.storage ?? 'shared', policy: policy(o.policy),
        ...(o.bandwidthCapMbps !== undefined ? { bandwidthCapMbps: o.bandwidthCapMbps } : {}),
      };
    },
  };
}

async function simHarness(): Promise<DriverHarness> {
  const sched = new SimScheduler({ auto: true });
  const { world, request } = makeWorld(sched);
  return Promise.resolve({
    driver: createSimDriver(world),
    request: (o = {}) => Promise.resolve(request({
      shape: o.workload === 'stalling' ? { memoryMiB: 64, dirtyRateMiBps: 64, workingSetMiB: 48 } : { memoryMiB: 64, dirtyRateMiBps: 0.5, workingSetMiB: 8 },
      ...(o.policy !== undefined ? { policy: o.policy } : {}),
    })),
    where: (vm: VmId) => Promise.resolve(world.runningAt(vm)),
    cutLink: (req) => Promise.resolve(world.cutLink(req.from.siteId, req.to.siteId)),
    reopen: () => Promise.resolve(createSimDriver(world)),
    cleanup: () => Promise.resolve(),
  });
}

runDriverContract('sim driver', simHarness, { timeoutMs: 20_000 });

async function collect(it: AsyncIterable<MigrationProgress>): Promise<MigrationProgress[]> {
  const out: MigrationProgress[] = [];
  for await (const p of it) out.push(p);
  return out;
}

describe('sim driver follows the pre-copy model of placement/cost.ts', () => {
  it('moves the bytes estimateMigration predicts, in its time plus the preparation, with its downtime', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const req = request({ shape: { memoryMiB: 512, dirtyRateMiBps: 4, workingSetMiB: 64 } });
    const h = await createSimDriver(world).start(req);
    const out = await h.done;
    const est = estimateMigration(req.shape, spareMbps(req.link), { maxDowntimeMs: 300, maxRounds: 30 });
    assert.equal(out.status, 'completed');
    assert.ok(Math.abs(out.transferredBytes - est.bytes) < 1, `${out.transferredBytes} vs ${est.bytes}`);
    const prepareMs = 2 * req.link.rttMs + 20;
    assert.ok(Math.abs(out.durationMs - (est.seconds * 1000 + prepareMs + 1)) < 1, `${out.durationMs} ms vs ${est.seconds * 1000 + prepareMs} ms`);
    assert.ok(Math.abs((out.downtimeMs ?? -1) - est.downtimeMs) < 1e-6, `${out.downtimeMs} vs ${est.downtimeMs}`);
    // 512 MiB over 80 Mbit/s is 54 s; the working set's rounds add about 11 s of virtual time.
    assert.ok(out.durationMs > 60_000 && out.durationMs < 70_000, `${out.durationMs}`);
  });

  it('mirrors the disk first, then RAM, counting both in the bytes', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const req = request({ shape: { memoryMiB: 64, diskGiB: 0.25, dirtyRateMiBps: 0 }, storage: 'mirror' });
    const h = await createSimDriver(world).start(req);
    const phases = (await collect(h.progress())).map((p) => p.phase);
    const out = await h.done;
    assert.deepEqual([...new Set(phases)], ['preparing', 'mirroring-disk', 'precopy', 'completed']);
    assert.equal(out.transferredBytes, 0.25 * 1024 * MiB + 64 * MiB);
  });

  it('switches to post-copy on a stall where the policy allows it, and completes at the destination', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const req = request({
      shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 },
      policy: { postCopyAllowed: true, onStall: ['post-copy', 'abort'], stallTimeoutMs: 5000 },
    });
    const h = await createSimDriver(world).start(req);
    const snaps = await collect(h.progress());
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.deepEqual(out.stallActions, ['post-copy']);
    assert.ok(snaps.some((s) => s.phase === 'postcopy'));
    assert.equal(out.downtimeMs, req.link.rttMs);
    assert.deepEqual(world.runningAt(req.vm), [B]);
  });

  it('refuses to abort a migration in post-copy: abort waits for it to finish at the destination', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const req = request({
      shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 },
      policy: { postCopyAllowed: true, onStall: ['post-copy'], stallTimeoutMs: 2000 },
    });
    const h = await createSimDriver(world).start(req);
    for await (const p of h.progress()) if (p.phase === 'postcopy') break;
    await h.abort('too late');
    assert.equal((await h.done).status, 'completed');
    assert.deepEqual(world.runningAt(req.vm), [B]);
  });

  it('runs slower after setBandwidthCap halves its cap', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const driver = createSimDriver(world);
    const fast = await (await driver.start(request({ shape: { memoryMiB: 128, dirtyRateMiBps: 0 }, bandwidthCapMbps: 40 }))).done;
    const h = await driver.start(request({ shape: { memoryMiB: 128, dirtyRateMiBps: 0 }, bandwidthCapMbps: 40 }));
    await h.setBandwidthCap?.(20);
    const slow = await h.done;
    assert.ok(slow.durationMs > 1.9 * (fast.durationMs - 200), `${slow.durationMs} vs ${fast.durationMs}`);
    assert.equal(slow.transferredBytes, fast.transferredBytes);
  });
});

describe('sim driver faults', () => {
  it('fails a migration whose destination dies mid-transfer, with the VM running at the source', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, request } = makeWorld(sched);
    const req = request();
    const h = await createSimDriver(world).start(req);
    await sched.advance(5000);
    world.killInstance(req.vm, req.to);
    const out = await h.done;
    assert.equal(out.status, 'failed');
    assert.match(out.reason ?? '', /destination instance at us-east died during precopy; the VM runs at the source eu-west/);
    assert.deepEqual(world.runningAt(req.vm), [A]);
    assert.deepEqual(world.instances(req.vm).map((i) => i.state), ['running']);
  });

  it('refuses to start towards a site without room, with nothing started', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched, { 'us-east': 200 });
    const req = request({ shape: { memoryMiB: 256 } });
    await assert.rejects(createSimDriver(world).start(req), /site us-east has 200 MiB free, needs 256 MiB/);
    assert.deepEqual(world.instances(req.vm).map((i) => i.placement.siteId), ['eu-west']);
  });

  it('refuses a VM that does not run at the source', async () => {
    const sched = new SimScheduler({ auto: true });
    const { world, request } = makeWorld(sched);
    const req = request();
    await assert.rejects(createSimDriver(world).start({ ...req, from: B, to: A }), (e: Error & { code?: string }) => e.code === 'MIGRATION_NOT_AT_SOURCE');
  });

  it('leaves a post-copy cut from its link paused at the destination; finish waits for the link, then runs it there', async () => {
    const sched = new SimScheduler({ auto: false });
    const { world, request } = makeWorld(sched);
    const req = request({
      shape: { memoryMiB: 128, dirtyRateMiBps: 40, workingSetMiB: 64 },
      policy: { postCopyAllowed: true, onStall: ['post-copy'], stallTimeoutMs: 2000 },
    });
    const driver = createSimDriver(world);
    const h = await driver.start(req);
    for (let i = 0; i < 200 && !world.instances(req.vm).some((x) => x.state === 'postmigrate'); i++) await sched.advance(500);
    world.cutLink(A.siteId, B.siteId);
    const out = await h.done;
    assert.equal(out.status, 'failed');
    assert.match(out.reason ?? '', /paused at us-east waiting for pages/);
    const p = await driver.inspect(req);
    assert.deepEqual([p.source, p.destination, p.migrationCompleted], ['postmigrate', 'paused', false]);
    assert.deepEqual(world.runningAt(req.vm), []);
    await assert.rejects(driver.finish(req), (e: Error & { retryable?: boolean }) => e.retryable === true);
    world.restoreLink(A.siteId, B.siteId);
    await driver.finish(req);
    assert.deepEqual(world.runningAt(req.vm), [B]);
  });
});

describe('SimScheduler', () => {
  it('runs callbacks in time order on a FakeClock and leaves the clock at the target', async () => {
    const clock = new FakeClock(1000);
    const s = new SimScheduler({ clock });
    const seen: number[] = [];
    s.at(1300, () => seen.push(clock.nowMs()));
    s.at(1100, () => {
      seen.push(clock.nowMs());
      s.at(1200, () => seen.push(clock.nowMs()));
    });
    const cancel = s.at(1250, () => seen.push(-1));
    cancel();
    assert.equal(s.nextDueMs(), 1100);
    await s.runUntil(1250);
    assert.deepEqual(seen, [1100, 1200]);
    assert.equal(clock.nowMs(), 1250);
    await s.runAll();
    assert.deepEqual(seen, [1100, 1200, 1300]);
  });

  it('drives the simulator’s VirtualClock forward', async () => {
    const clock = new VirtualClock(0);
    const s = new SimScheduler({ clock });
    const { world, request } = makeWorld(s);
    const h = await createSimDriver(world).start(request({ shape: { memoryMiB: 32, dirtyRateMiBps: 0 } }));
    await s.runAll();
    const out = await h.done;
    assert.equal(out.status, 'completed');
    assert.equal(clock.nowMs(), out.durationMs);
  });

  it('works on real timers too', async () => {
    const { world, request } = makeWorld(realTimers());
    const req = request({ shape: { memoryMiB: 1, dirtyRateMiBps: 0 } });
    const h = await createSimDriver(world).start({ ...req, link: { ...req.link, rttMs: 1, bandwidthMbps: 10_000 } });
    const out = await h.done;
    assert.equal(out.status, 'completed');
    assert.ok(out.durationMs < 1000);
  });
});
