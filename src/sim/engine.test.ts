import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../core/errors.js';
import { linkIdOf, vmId } from '../core/ids.js';
import type { MigrationOutcome, MigrationProgress, MigrationRequest } from '../migration/driver.js';
import { createSimDriver, SimScheduler, SimWorld, startSimMigration, type SimMigrationEvent } from '../migration/sim-driver.js';
import { simMigrationPolicy, simulate } from './engine.js';
import { parseScenario, SCENARIO_SCHEMA } from './scenario.js';
import { VirtualClock, VirtualTimers } from './virtual-clock.js';

type Raw = Record<string, unknown> & {
  cloud: { sites: Record<string, unknown>[]; vms: Record<string, unknown>[]; users: Record<string, unknown>[]; links: Record<string, unknown>[] };
  events: Record<string, unknown>[];
};

/** Two sites on one link; one sensitive desktop at `a` whose user sits next to `b`: greedy moves it at 0 s. */
const base = (vm: Record<string, unknown> = {}, link: Record<string, unknown> = {}): Raw => ({
  schema: SCENARIO_SCHEMA, durationS: 3600, roundIntervalS: 300,
  cloud: {
    sites: [
      { id: 'a', country: 'DE', lat: 50, lon: 8, capacity: { vcpu: 8, memoryMiB: 8192 } },
      { id: 'b', country: 'US', lat: 40, lon: -75, capacity: { vcpu: 8, memoryMiB: 8192 } },
    ],
    links: [{ a: 'a', b: 'b', rttMs: 90, bandwidthMbps: 1000, ...link }],
    users: [{ id: 'u', country: 'US', lat: 40, lon: -74, rttMs: [100, 10] }],
    vms: [{
      id: 'v', siteId: 'a', vcpu: 2, memoryMiB: 2048, diskGiB: 1, sensitivity: 0.9, activity: 'video-streaming',
      dirtyRateMiBps: 5, workingSetMiB: 256, users: [{ userId: 'u', share: 1 }], ...vm,
    }],
  },
  events: [],
});

describe('simulate() runs every move through the simulated MigrationDriver', () => {
  it('reports for a move exactly the outcome the driver gives the same request on its own', async () => {
    const sc = parseScenario(base());
    const r = simulate(sc, { policy: 'greedy' });
    assert.equal(r.log.length, 1);
    const rec = r.log[0]!;
    assert.equal(rec.outcome, 'completed');

    // The same request, run by the driver alone on its own virtual time.
    const v = sc.cloud.vms[0]!;
    const l = sc.cloud.links[0]!;
    const world = new SimWorld({ timers: new SimScheduler({ auto: true }) });
    const from = { siteId: v.siteId, hostId: null };
    const to = { siteId: sc.cloud.sites[1]!.id, hostId: null };
    world.addVm(v.id, from, v.memoryMiB);
    const diskGiB = v.diskDeltaGiB[to.siteId] ?? v.diskDeltaGiB['*'] ?? v.diskGiB;
    const req: MigrationRequest = {
      jobId: 'alone', vm: v.id, from, to,
      link: { rttMs: l.rttMs, bandwidthMbps: l.bandwidthMbps, foregroundShare: l.foregroundShare, lossPct: 0 },
      shape: { memoryMiB: v.memoryMiB, dirtyRateMiBps: v.dirtyRateMiBps, workingSetMiB: v.workingSetMiB, diskGiB },
      storage: 'mirror', policy: simMigrationPolicy(sc),
    };
    const out = await (await createSimDriver(world).start(req)).done;

    assert.equal(out.status, 'completed');
    assert.ok(Math.abs((rec.endS - rec.startS) * 1000 - out.durationMs) < 1e-6, `${(rec.endS - rec.startS) * 1000} ms vs the driver's ${out.durationMs} ms`);
    // Equal but for float rounding: the two worlds wake at different instants (their progress intervals differ).
    assert.ok(Math.abs(rec.bytes - out.transferredBytes) < 1, `${rec.bytes} B vs the driver's ${out.transferredBytes} B`);
    assert.ok(Math.abs(rec.downtimeMs - (out.downtimeMs ?? NaN)) < 1e-6, `${rec.downtimeMs} ms vs the driver's ${out.downtimeMs} ms`);
    assert.equal(rec.rounds > 1, true);
    // The driver's preparation (2 RTTs + 20 ms) and release (1 ms) are part of the move's time.
    const spareBytesPerS = (l.bandwidthMbps * (1 - l.foregroundShare) * 1e6) / 8;
    assert.ok(rec.endS - rec.startS >= rec.bytes / spareBytesPerS + (2 * l.rttMs + 21) / 1000 - 1e-6);
  });

  it('fails a move whose link is cut mid-transfer, with the driver\'s reason; the VM stays at the source and moves once the link is back', () => {
    const raw = base();
    raw.events.push({ atS: 10, type: 'link-down', a: 'a', b: 'b' }, { atS: 900, type: 'link-up', a: 'b', b: 'a' });
    const r = simulate(parseScenario(raw), { policy: 'greedy', recordSeries: true });
    assert.deepEqual(r.log.map((l) => [l.outcome, l.startS]), [['failed', 0], ['completed', 900]]);
    const failed = r.log[0]!;
    assert.ok(failed.endS > 10 - 1e-9 && failed.endS < 10 + 1e-6, String(failed.endS));
    assert.match(failed.reason ?? '', /the WAN link a~b was cut during (mirroring-disk|precopy).*the VM runs at the source a/);
    assert.ok(failed.bytes > 0);
    assert.deepEqual([r.migrations.started, r.migrations.completed, r.migrations.aborted, r.migrations.failed], [2, 1, 1, 1]);
    // While the link was down the planner did not see it: no move was tried, the users kept 100 ms.
    assert.deepEqual(r.series!.v!.slice(0, 4), [100, 100, 100, 100]);
    assert.equal(r.series!.v![4], 10);
  });

  it('aborts a stalling move under a scenario\'s abort-on-stall policy, where the default policy completes it in post-copy', () => {
    // 40 MiB/s of writes over 50 Mbit/s of spare bandwidth: pre-copy never converges.
    const raw = base({ dirtyRateMiBps: 40, workingSetMiB: 512, diskGiB: 0 }, { bandwidthMbps: 100 });
    const defaults = simulate(parseScenario(raw), { policy: 'greedy' });
    assert.equal(defaults.log[0]?.outcome, 'completed');
    assert.equal(defaults.log[0]?.postCopy, true);
    assert.deepEqual(defaults.log[0]?.stallActions, ['post-copy']);
    assert.equal(defaults.migrations.postCopy, 1);

    const strict = simulate(parseScenario({ ...raw, migration: { onStall: ['abort'], stallTimeoutS: 20 } }), { policy: 'greedy' });
    const first = strict.log[0]!;
    assert.equal(first.outcome, 'aborted');
    assert.deepEqual(first.stallActions, ['abort']);
    assert.match(first.reason ?? '', /^stalled: remaining .* has not fallen for 20\.0 s.*the VM runs at the source a$/);
    assert.equal(strict.migrations.completed, 0);
    assert.ok(strict.migrations.aborted >= 1);
    assert.equal(strict.migrations.postCopy, 0);
  });

  it('ends the migration of a VM that departs mid-transfer, as the driver reports it', () => {
    const raw = base();
    raw.events.push({ atS: 5, type: 'vm-depart', vm: 'v' });
    const r = simulate(parseScenario(raw), { policy: 'greedy' });
    assert.equal(r.log.length, 1);
    assert.equal(r.log[0]!.outcome, 'failed');
    assert.match(r.log[0]!.reason ?? '', /source instance at a died/);
    assert.equal(r.log[0]!.endS, 5);
  });

  it('splits a link between concurrent migrations as admission does, and re-caps the survivor when one ends', () => {
    const raw = base();
    raw.cloud.vms.push({ ...raw.cloud.vms[0]!, id: 'w', memoryMiB: 512, diskGiB: 0 });
    const r = simulate(parseScenario(raw), { policy: 'greedy' });
    const byVm = new Map(r.log.map((l) => [l.vm as string, l]));
    const big = byVm.get('v')!;
    const small = byVm.get('w')!;
    assert.equal(big.startS, 0);
    assert.equal(small.startS, 0);
    // Alone, the big one would take its bytes over the whole spare bandwidth; shared for a while, it takes longer.
    const spareBytesPerS = (1000 * 0.5 * 1e6) / 8;
    const alone = big.bytes / spareBytesPerS + 0.201;
    assert.ok(big.endS - big.startS > alone + 1, `${big.endS - big.startS} s vs ${alone} s alone`);
    // ... but less than at half the bandwidth throughout: its cap rose once the small one ended.
    assert.ok(big.endS - big.startS < 2 * (big.bytes / spareBytesPerS), `${big.endS - big.startS} s`);
  });
});

describe('the sim driver\'s synchronous observation (what the engine reads)', () => {
  it('delivers, as they happen, the snapshots the progress stream carries and then the outcome done resolves to', async () => {
    const clock = new VirtualClock(0);
    const timers = new VirtualTimers(clock);
    const world = new SimWorld({ timers, progressIntervalMs: 2000 });
    const a = { siteId: 'a' as never, hostId: null };
    const b = { siteId: 'b' as never, hostId: null };
    world.addVm(vmId('x'), a, 64);
    const h = startSimMigration(world, {
      jobId: 'j', vm: vmId('x'), from: a, to: b, link: { rttMs: 50, bandwidthMbps: 100, foregroundShare: 0.5, lossPct: 0 },
      shape: { memoryMiB: 64, dirtyRateMiBps: 1, workingSetMiB: 16, diskGiB: 0 }, storage: 'shared',
      policy: simMigrationPolicy(parseScenario(base())),
    });
    const seen: SimMigrationEvent[] = [];
    h.observe((e) => seen.push(e));
    const streamed: MigrationProgress[] = [];
    const reading = (async () => {
      for await (const p of h.progress()) streamed.push(p);
    })();
    // Half-way, progressNow() moves the model to the clock without waiting for a wake-up.
    timers.runUntil(5000);
    const mid = h.progressNow();
    assert.equal(mid.atMs, 5000);
    assert.ok(mid.transferredBytes > 0 && mid.transferredBytes < 64 * 1024 * 1024);
    for (let i = 0; i < 1000 && timers.runNext(); i++);
    const outcome: MigrationOutcome = await h.done;
    await reading;
    const progress = seen.filter((e) => e.type === 'progress').map((e) => e.progress);
    const done = seen.at(-1);
    assert.equal(done?.type, 'done');
    assert.deepEqual(done.type === 'done' ? done.outcome : null, outcome);
    // 64 MiB at 6.25 MB/s, then the ~10.7 MiB dirtied meanwhile, then ~1.8 MiB: just over the 300 ms pause.
    assert.equal(done.type === 'done' ? done.precopyRounds : 0, 3);
    // The stream starts with where the migration stood when it was opened; after that the two agree.
    assert.deepEqual(streamed.slice(1), progress);
    assert.deepEqual(progress.map((p) => p.phase).filter((p, i, xs) => p !== xs[i - 1]), ['precopy', 'switching-over', 'completed']);
    assert.equal(outcome.durationMs, clock.nowMs());
  });
});

describe('scenario migration settings and link events', () => {
  it('refuses a stall action it does not know, naming its place', () => {
    assert.throws(() => parseScenario({ ...base(), migration: { onStall: ['post-copy', 'reboot'] } }),
      (e: unknown) => e instanceof InputError && e.field === 'migration.onStall[1]' && e.message.includes('reboot'));
    assert.throws(() => parseScenario({ ...base(), migration: { stallTimeout: 5 } }),
      (e: unknown) => e instanceof InputError && e.field === 'migration.stallTimeout');
  });

  it('refuses a link event between sites no link joins', () => {
    const raw = base();
    raw.events.push({ atS: 1, type: 'link-down', a: 'a', b: 'a' });
    assert.throws(() => parseScenario(raw), (e: unknown) => e instanceof InputError && e.field === 'events[0].b');
    const raw2 = base();
    raw2.events.push({ atS: 1, type: 'link-up', a: 'a', b: 'mars' });
    assert.throws(() => parseScenario(raw2), (e: unknown) => e instanceof InputError && e.field === 'events[0].b' && e.message.includes('mars'));
  });

  it('maps the scenario onto the driver\'s policy, following the planner\'s params where unset', () => {
    const sc = parseScenario({ ...base(), params: { maxDowntimeMs: 200, postCopy: 'reject', maxCostS: 600 } });
    assert.deepEqual(simMigrationPolicy(sc), {
      maxDowntimeMs: 200, maxDowntimeCeilingMs: 200, postCopyAllowed: false, stallTimeoutMs: 30_000,
      onStall: ['post-copy', 'abort'], tls: true, deadlineMs: 1_200_000,
    });
    assert.equal(linkIdOf(sc.cloud.sites[0]!.id, sc.cloud.sites[1]!.id), sc.cloud.links[0]!.id);
  });
});

describe('VirtualTimers', () => {
  it('runs timers in time order (ties in the order set), skips cancelled ones, and moves the clock to each', () => {
    const clock = new VirtualClock(100);
    const t = new VirtualTimers(clock);
    const seen: string[] = [];
    t.at(300, () => seen.push(`c@${clock.nowMs()}`));
    t.at(200, () => {
      seen.push(`a@${clock.nowMs()}`);
      t.at(200, () => seen.push(`a2@${clock.nowMs()}`));
    });
    t.at(200, () => seen.push(`b@${clock.nowMs()}`));
    const cancel = t.at(250, () => seen.push('never'));
    cancel();
    t.at(50, () => seen.push(`late@${clock.nowMs()}`)); // already past: runs at once
    assert.equal(t.nextDueMs(), 100);
    t.runUntil(260);
    assert.deepEqual(seen, ['late@100', 'a@200', 'b@200', 'a2@200']);
    assert.equal(clock.nowMs(), 260);
    assert.equal(t.nextDueMs(), 300);
    assert.equal(t.runNext(), true);
    assert.equal(t.runNext(), false);
    assert.deepEqual(seen.at(-1), 'c@300');
    assert.equal(t.nextDueMs(), Infinity);
  });
});
