// The control loop on a real SQLite store, the real executor and the simulated driver (moves take
// milliseconds of real time): what a round records, what each mode does, and operator control.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { SiteId, VmId } from '../core/ids.js';
import { linkIdOf } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { systemClock } from '../core/clock.js';
import { createExecutor, type Executor, type ExecutorEvent } from '../migration/executor.js';
import { isTerminal, newJobRecord } from '../migration/job.js';
import { createSimDriver, realTimers, SimWorld } from '../migration/sim-driver.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { jobStoreOf } from '../store/repos.js';
import { openStore } from '../store/open.js';
import type { AuditEvent, FingerprintPoint, PlanRecord, RoundRecord, Settings, UserRecord, VmRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import type { WindowObservation } from './decide.js';
import { createEventBus, type ManagerEvent } from './events.js';
import { importInventory, newVmRecord } from './inventory.js';
import { createManagerLoop, type LatencySource, type ManagerLoop, type UserLatency } from './loop.js';
import { requestForMove } from './requests.js';

const EAST = 'east' as SiteId;
const WEST = 'west' as SiteId;
const ALICE = '10.9.0.21';

const inventory = {
  sites: [EAST, WEST].map((id, i) => ({ id, name: id, region: id, country: 'US', lat: 40, lon: -75 - 45 * i, capacity: { vcpu: 64, memoryMiB: 65_536 } })),
  hosts: [{ id: 'e1' as never, siteId: EAST, capacity: { vcpu: 64, memoryMiB: 65_536 }, endpoint: null }, { id: 'w1' as never, siteId: WEST, capacity: { vcpu: 64, memoryMiB: 65_536 }, endpoint: null }],
  // A fast link so simulated moves end in well under a second of real time.
  links: [{ id: linkIdOf(EAST, WEST), a: EAST, b: WEST, rttMs: 70, bandwidthMbps: 100_000, foregroundShare: 0.2 }],
  vms: ['desk1', 'bulk1'].map((id, i) => newVmRecord({
    id: id as VmId, name: id, siteId: EAST, hostId: 'e1' as never, vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1,
    workingSetMiB: 8, addresses: [`10.77.0.${10 + i}`], pinned: false, excluded: false, diskDeltaGiB: {},
  })),
  users: [] as UserRecord[],
};

/** Alice sits next to west: 75 ms from east, 5 ms from west. */
function latency(rtt: Record<string, number> = { east: 75, west: 5 }, changed = false): LatencySource & { calls: number; rtt: Record<string, number>; changed: boolean } {
  const src = {
    calls: 0, rtt, changed,
    probeRound(users: readonly UserRecord[]) {
      src.calls++;
      const out = new Map<string, UserLatency>();
      for (const e of users) {
        out.set(e.id, {
          rtt: Object.fromEntries(Object.entries(src.rtt).map(([s, ms]) => [s, { rttMs: ms, source: 'probe' as const, atMs: Date.now(), stale: false }])),
          networkChanged: src.changed, country: null,
        });
      }
      src.changed = false;
      return Promise.resolve(out as ReadonlyMap<string, UserLatency>);
    },
  };
  return src;
}

const video = (vm: string, users = [{ endpoint: ALICE, share: 1 }]): WindowObservation => ({
  vm: vm as VmId, endMs: Date.now(), score: 0.9, activity: 'video-streaming', users, reasons: ['5900/tcp, 18 Mbit/s to the user'], bytes: 2e7,
});
const typing = (vm: string): WindowObservation => ({
  vm: vm as VmId, endMs: Date.now(), score: 0.3, activity: 'remote-desktop', users: [{ endpoint: ALICE, share: 1 }], reasons: ['5900/tcp, 40 kbit/s'], bytes: 3e5,
});
const bulk = (vm: string): WindowObservation => ({
  vm: vm as VmId, endMs: Date.now(), score: 0.05, activity: 'bulk-transfer', users: [], reasons: ['443/tcp, 80 Mbit/s from one server'], bytes: 6e8,
});

interface Rig {
  store: Store;
  loop: ManagerLoop;
  executor: Executor;
  world: SimWorld;
  events: ManagerEvent[];
  leader: { is: boolean };
  lat: ReturnType<typeof latency>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.loop.stop();
    await r.executor.settled();
    r.executor.halt();
    await r.store.close();
  }
});

async function rig(mode: Settings['mode'], lat = latency()): Promise<Rig> {
  const store = await openStore(':memory:');
  await importInventory(store, inventory);
  const world = new SimWorld({ timers: realTimers(), progressIntervalMs: 20 });
  for (const v of inventory.vms) world.addVm(v.id, { siteId: v.siteId, hostId: v.hostId }, v.memoryMiB);
  const bus = createEventBus();
  const events: ManagerEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const leader = { is: true };
  let loopRef: ManagerLoop | null = null;
  const executor = createExecutor({
    driver: createSimDriver(world), store: jobStoreOf(store), clock: systemClock, log: silentLogger,
    limits: { maxConcurrent: 4, maxPerLink: 2, linkBandwidthShare: 1 },
    recheck: (m) => loopRef!.recheck(m),
  });
  const loop = createManagerLoop({
    store, events: bus, clock: systemClock, log: silentLogger, replica: 'test-replica', executor, latency: lat,
    requestFor: requestForMove({ maxDowntimeMs: 300, maxDowntimeCeilingMs: 1000, postCopyAllowed: false, stallTimeoutMs: 10_000, onStall: ['abort'], tls: false, deadlineMs: 60_000 }),
    isLeader: () => leader.is, leader: () => Promise.resolve(leader.is ? 'test-replica' : 'other-replica'),
  }, { mode, roundIntervalS: 3600, planner: 'greedy', params: { ...DEFAULT_PLAN_PARAMS, baseCooldownMs: 60_000 } });
  loopRef = loop;
  const r = { store, loop, executor, world, events, leader, lat };
  rigs.push(r);
  return r;
}

async function vm(store: Store, id: string): Promise<VmRecord> {
  const d = await store.get<VmRecord>('vms', id);
  assert.ok(d !== null, `VM ${id} is in the store`);
  return d.value;
}

async function untilJobsEnd(r: Rig, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    await r.executor.settled();
    if (r.executor.list().every((j) => isTerminal(j.state))) {
      await new Promise((res) => setTimeout(res, 50));
      return;
    }
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`jobs still running after ${timeoutMs} ms: ${r.executor.list().map((j) => `${j.vm} ${j.state.kind}`).join(', ')}`);
}

async function auditOf(store: Store): Promise<AuditEvent[]> {
  return (await store.read<AuditEvent>('audit', { limit: 1000 })).map((e) => e.value);
}

describe('the manager loop', () => {
  it('moves a desktop whose user plays video to the user\'s site in auto mode, and records why', async () => {
    const r = await rig('auto');
    r.loop.observe(typing('desk1'));
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    r.loop.observe(bulk('bulk1'));
    r.loop.observe(bulk('bulk1'));
    const round = await r.loop.round('test');
    assert.equal(round.error, null);
    assert.equal(round.vmsObserved, 2);
    assert.equal(round.moves, 1);
    const plan = (await r.store.get<PlanRecord>('plans', round.planId!))!.value;
    assert.equal(plan.moves[0]!.vm, 'desk1');
    assert.equal(plan.moves[0]!.to, 'west');
    assert.deepEqual(plan.inputs.vms.find((v) => v.vm === 'desk1')!.usersRttMs, { east: 75, west: 5 });
    assert.match(plan.note ?? '', /also not moved: 1 no-users/, 'the bulk VM (no interactive users) is counted as not moved');
    await untilJobsEnd(r);
    const d = await vm(r.store, 'desk1');
    assert.equal(d.siteId, 'west');
    assert.equal(d.migratingJobId, null);
    assert.equal(d.recentMoves, 1);
    assert.equal((await vm(r.store, 'bulk1')).siteId, 'east', 'the bulk download is left where it is');
    assert.equal(r.world.runningAt('desk1' as VmId)[0]!.siteId, 'west');
    const donePlan = (await r.store.get<PlanRecord>('plans', round.planId!))!.value;
    assert.equal(donePlan.status, 'done');
    assert.equal(donePlan.jobs[0]!.state, 'completed');
    const audit = await auditOf(r.store);
    const kinds = audit.map((a) => a.kind);
    for (const k of ['vm-sensitive', 'move-planned', 'migration-completed']) assert.ok(kinds.includes(k), `audit has ${k}: ${kinds.join(', ')}`);
    assert.match(audit.find((a) => a.kind === 'move-planned')!.message, /desk1 east → west: its users save 70 ms/);
    const fps = await r.store.read<FingerprintPoint>('fingerprints', { key: 'desk1', limit: 10 });
    assert.equal(fps.length, 1);
    assert.equal(fps[0]!.value.sensitive, true);
    const users = await r.store.list<UserRecord>('users');
    assert.equal(users.length, 1);
    assert.equal(users[0]!.value.endpoint, ALICE);
    assert.deepEqual(users[0]!.value.vms, ['desk1']);
    assert.ok(r.events.some((e) => e.type === 'progress'), 'migration progress was announced');
    assert.ok(r.events.some((e) => e.type === 'round'));
  });

  it('moves nothing while the user only types: the desktop is not sensitive', async () => {
    const r = await rig('auto');
    for (let i = 0; i < 4; i++) r.loop.observe(typing('desk1'));
    const round = await r.loop.round('test');
    assert.equal(round.moves, 0);
    assert.equal((await vm(r.store, 'desk1')).sensitive, false);
    assert.equal(r.executor.list().length, 0);
  });

  it('in approve mode waits for an operator; approval starts the move, a newer plan supersedes an unapproved one', async () => {
    const r = await rig('approve');
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    const first = await r.loop.round('test');
    const p1 = (await r.store.get<PlanRecord>('plans', first.planId!))!.value;
    assert.equal(p1.status, 'recommended');
    assert.equal(r.executor.list().length, 0, 'nothing starts before approval');
    const second = await r.loop.round('test');
    assert.equal((await r.store.get<PlanRecord>('plans', first.planId!))!.value.status, 'superseded');
    await assert.rejects(r.loop.control.approvePlan(first.planId!, 'op'), /superseded, only a recommended plan can be approved/);
    const approved = await r.loop.control.approvePlan(second.planId!, 'op');
    assert.equal(approved.status, 'approved');
    assert.equal(approved.decidedBy, 'op');
    assert.equal(approved.jobs.length, 1);
    await untilJobsEnd(r);
    assert.equal((await vm(r.store, 'desk1')).siteId, 'west');
    const kinds = (await auditOf(r.store)).map((a) => a.kind);
    assert.ok(kinds.includes('plan-approved') && kinds.includes('plan-superseded'), kinds.join(', '));
  });

  it('a rejected plan starts nothing and cannot be approved afterwards', async () => {
    const r = await rig('approve');
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    const round = await r.loop.round('test');
    const rejected = await r.loop.control.rejectPlan(round.planId!, 'op', 'maintenance window');
    assert.equal(rejected.status, 'rejected');
    assert.equal(rejected.note, 'maintenance window');
    await assert.rejects(r.loop.control.approvePlan(round.planId!, 'op'), (e: Error & { code?: string }) => e.code === 'PLAN_NOT_PENDING');
    assert.equal(r.executor.list().length, 0);
  });

  it('in dry-run mode records the plan and moves nothing', async () => {
    const r = await rig('dry-run');
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    const round = await r.loop.round('test');
    assert.equal(round.moves, 1);
    assert.equal((await r.store.get<PlanRecord>('plans', round.planId!))!.value.status, 'dry-run');
    assert.equal(r.executor.list().length, 0);
    assert.equal((await vm(r.store, 'desk1')).siteId, 'east');
  });

  it('does not move a pinned VM, and says so', async () => {
    const r = await rig('auto');
    await r.loop.control.setVmFlags('desk1' as VmId, { pinned: true }, 'op');
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    const round = await r.loop.round('test');
    assert.equal(round.moves, 0);
    const plan = (await r.store.get<PlanRecord>('plans', round.planId!))!.value;
    assert.equal(plan.rejected.find((x) => x.vm === 'desk1')?.reason, 'pinned');
  });

  it('picks up a user who changed network within one round and plans from the new RTTs', async () => {
    const lat = latency({ east: 5, west: 75 });
    const r = await rig('auto', lat);
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    assert.equal((await r.loop.round('test')).moves, 0, 'alice is next to east at first');
    lat.rtt = { east: 80, west: 6 };
    lat.changed = true;
    r.loop.observe(video('desk1'));
    const round = await r.loop.round('test');
    assert.equal(round.moves, 1, 'the move follows the new network in the same round');
    const u = (await r.store.list<UserRecord>('users'))[0]!.value;
    assert.equal(u.network, 'network-2');
    assert.ok((await auditOf(r.store)).some((a) => a.kind === 'user-network-changed'));
  });

  it('refuses operator changes on a replica that is not the leader, naming the leader', async () => {
    const r = await rig('approve');
    r.leader.is = false;
    await assert.rejects(r.loop.control.runRound('op'), /not the leader \(leader: other-replica\)/);
    await assert.rejects(r.loop.control.updateSettings({ mode: 'auto' }, 'op'), (e: Error & { code?: string }) => e.code === 'NOT_LEADER');
  });

  it('changes settings with validation, and the next round runs in the new mode', async () => {
    const r = await rig('dry-run');
    await assert.rejects(r.loop.control.updateSettings({ params: { minSavingMs: -5 } }, 'op'), /minSavingMs/);
    const s = await r.loop.control.updateSettings({ mode: 'auto', params: { minSavingMs: 20 } }, 'op');
    assert.equal(s.mode, 'auto');
    assert.equal(s.params.minSavingMs, 20);
    r.loop.observe(video('desk1'));
    r.loop.observe(video('desk1'));
    const round: RoundRecord = await r.loop.round('test');
    assert.equal(round.mode, 'auto');
    assert.equal((await r.store.get<PlanRecord>('plans', round.planId!))!.value.status, 'submitted');
  });

  it('bounds the windows it keeps per VM between rounds and counts what it dropped', async () => {
    const r = await rig('dry-run');
    for (let i = 0; i < 70; i++) r.loop.observe(bulk('bulk1'));
    assert.equal(r.loop.stats.windowsDropped, 6);
    assert.equal(r.loop.stats.windowsPending, 64);
  });

  it('puts a VM where reconciliation left it: a job that failed with the VM at the destination moves the record there', async () => {
    const store = await openStore(':memory:');
    await importInventory(store, inventory);
    const listeners: ((e: ExecutorEvent) => void)[] = [];
    const fake = {
      events: { on: (l: (e: ExecutorEvent) => void) => { listeners.push(l); return () => undefined; } },
      submit: () => Promise.resolve({ planId: 'p', jobs: [], superseded: [], rejected: [{ vm: 'desk1' as VmId, reason: 'already being moved' }] }),
      get: () => undefined, list: () => [], settled: () => Promise.resolve(), halt: () => undefined,
    } as unknown as Executor;
    const loop = createManagerLoop({
      store, events: createEventBus(), clock: systemClock, log: silentLogger, replica: 'r', executor: fake, latency: latency(),
      requestFor: requestForMove(), isLeader: () => true, leader: () => Promise.resolve('r'),
    }, { mode: 'auto', roundIntervalS: 3600, planner: 'greedy', params: DEFAULT_PLAN_PARAMS });
    try {
      const move = { vm: 'desk1' as VmId, from: EAST, to: WEST, kind: 'closer-to-users' as const, benefit: 1, savingMs: 70, costS: 1, bytes: 1, postCopy: false, after: [] };
      const job = {
        ...newJobRecord({ id: 'j-1', planId: 'p-none', move, atMs: 1, request: requestForMove()(move, 'j-1', inventory.vms[0]!, inventory.links[0]!, inventory.hosts) }),
        state: { kind: 'failed' as const, reason: 'switch-over reported an error; the destination runs it', at: 'destination' as const, lost: false },
      };
      for (const l of listeners) l({ type: 'job', job });
      for (let i = 0; i < 100 && (await vm(store, 'desk1')).siteId !== 'west'; i++) await new Promise((r) => setTimeout(r, 10));
      const d = await vm(store, 'desk1');
      assert.equal(d.siteId, 'west');
      assert.equal(d.hostId, 'w1');
      assert.equal(d.recentMoves, 1);

      // A plan none of whose moves could start ends as done, saying why, instead of staying submitted.
      loop.observe(video('bulk1'));
      loop.observe(video('bulk1'));
      const round = await loop.round('test');
      const plan = (await store.get<PlanRecord>('plans', round.planId!))!.value;
      assert.equal(plan.status, 'done');
      assert.match(plan.note ?? '', /no move started: desk1: already being moved/);
    } finally {
      await loop.stop();
      await store.close();
    }
  });
});
