import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { SiteId, UserId, VmId } from '../core/ids.js';
import { ACTIVITY_CLASSES, createSnapshot } from '../core/model.js';
import { initialState } from '../fingerprint/hysteresis.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { planMoves } from '../placement/greedy.js';
import type { SiteRecord, UserRecord, VmRecord } from '../store/records.js';
import {
  fingerprintVm, initialPlanStatus, normaliseShares, planInputs, planStatusAfterJobs, plannerSensitivity, snapshotInput,
  type WindowObservation,
} from './decide.js';
import { newVmRecord } from './inventory.js';
import { userIdForEndpoint } from './loop.js';

const site = (id: string, lon: number): SiteRecord => ({
  id: id as SiteId, name: id, region: id, country: 'US', lat: 40, lon, capacity: { vcpu: 100, memoryMiB: 100_000 },
});

const vm = (over: Partial<VmRecord> = {}): VmRecord => ({
  ...newVmRecord({
    id: 'desk1' as VmId, name: 'desk1', siteId: 'east' as SiteId, hostId: null, vcpu: 1, memoryMiB: 1024, diskGiB: 0,
    dirtyRateMiBps: 1, workingSetMiB: 64, addresses: ['10.0.0.5'], pinned: false, excluded: false, diskDeltaGiB: {},
  }),
  ...over,
});

const win = (score: number, activity: WindowObservation['activity'] = 'video-streaming', users = [{ endpoint: '10.9.0.1', share: 1 }]): WindowObservation => ({
  vm: 'desk1' as VmId, endMs: 0, score, activity, users, reasons: [`window ${score}`], bytes: 1_000_000,
});

describe('fingerprintVm()', () => {
  it('makes a VM sensitive within two hot windows of one round, names its user, and says why', () => {
    const up = fingerprintVm(vm(), initialState(), [win(0.1, 'remote-desktop'), win(0.9), win(0.9)], userIdForEndpoint, 1000);
    assert.equal(up.vm.sensitive, true);
    assert.equal(up.switched, true);
    assert.equal(up.vm.activity, 'video-streaming');
    assert.deepEqual(up.vm.users, [{ userId: 'u-10.9.0.1', share: 1 }]);
    assert.match(up.point.reasons[0]!, /sensitive: 2 of the last 3 windows/);
    assert.equal(up.vm.fingerprintAtMs, 1000);
  });

  it('keeps the users it had when a round brings only idle windows that name none', () => {
    const before = vm({ users: [{ userId: 'alice' as UserId, share: 1 }] });
    const up = fingerprintVm(before, initialState(), [win(0.05, 'background', [])], userIdForEndpoint, 1);
    assert.deepEqual(up.vm.users, before.users);
    assert.deepEqual(up.point.users, []);
  });

  it('takes no users from a window of a few packets (a health check)', () => {
    const probe = { ...win(0.2, 'background', [{ endpoint: '10.0.0.1', share: 1 }]), bytes: 600 };
    const up = fingerprintVm(vm(), initialState(), [probe], userIdForEndpoint, 1);
    assert.deepEqual(up.vm.users, []);
  });

  it('never mutates its inputs, and the result is the same for the same windows (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ score: fc.double({ min: -1, max: 2, noNaN: true }), activity: fc.constantFrom(...ACTIVITY_CLASSES) }), { maxLength: 12 }),
      (ws) => {
        const v = vm();
        const frozen = JSON.stringify(v);
        const windows = ws.map((w) => win(w.score, w.activity));
        const a = fingerprintVm(v, initialState(), windows, userIdForEndpoint, 5);
        const b = fingerprintVm(v, initialState(), windows, userIdForEndpoint, 5);
        assert.equal(JSON.stringify(v), frozen);
        assert.deepEqual(a, b);
        assert.ok(a.vm.sensitivity >= 0 && a.vm.sensitivity <= 1);
      },
    ));
  });
});

describe('normaliseShares()', () => {
  it('merges a user named twice and scales the shares to sum to exactly 1 (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ u: fc.constantFrom('a', 'b', 'c'), share: fc.double({ min: 0, max: 5, noNaN: true }) }), { maxLength: 8 }),
      (xs) => {
        const out = normaliseShares(xs.map((x) => ({ userId: x.u as UserId, share: x.share })));
        if (out.length === 0) return;
        assert.ok(Math.abs(out.reduce((t, u) => t + u.share, 0) - 1) < 1e-9);
        assert.equal(new Set(out.map((u) => u.userId)).size, out.length);
      },
    ));
  });
});

describe('plannerSensitivity()', () => {
  it('holds an insensitive VM below the planner threshold and a sensitive one at or above it (property)', () => {
    fc.assert(fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), fc.double({ min: 0.01, max: 1, noNaN: true }), (s, sensitive, min) => {
      const x = plannerSensitivity({ sensitive, sensitivity: s }, { minSensitivity: min });
      if (sensitive) assert.ok(x >= min);
      else assert.ok(x < min);
    }));
  });
});

describe('snapshotInput() and planInputs()', () => {
  const sites = [site('east', -75), site('west', -120)];
  const links = [{ id: 'east~west' as never, a: 'east' as SiteId, b: 'west' as SiteId, rttMs: 70, bandwidthMbps: 1000, foregroundShare: 0.5 }];
  const user: UserRecord = {
    id: 'alice' as UserId, name: 'alice', endpoint: '10.9.0.1', country: 'US', lat: 37, lon: -122, network: 'network-1',
    rtt: { east: { rttMs: 75, source: 'probe', atMs: 0, stale: false }, west: { rttMs: 5, source: 'probe', atMs: 0, stale: false } },
    vms: [], lastSeenAtMs: 0,
  };

  it('lets the greedy planner move a sensitive desktop next to its user, and records what it saw', () => {
    const v = vm({ sensitive: true, sensitivity: 0.9, activity: 'video-streaming', users: [{ userId: 'alice' as UserId, share: 1 }] });
    const snap = createSnapshot(snapshotInput(1, { sites, hosts: [], links, vms: [v], users: [user] }, DEFAULT_PLAN_PARAMS));
    const plan = planMoves(snap, DEFAULT_PLAN_PARAMS);
    assert.equal(plan.moves.length, 1);
    assert.equal(plan.moves[0]!.to, 'west');
    const inputs = planInputs(snap, plan, DEFAULT_PLAN_PARAMS);
    assert.deepEqual(inputs.vms[0]!.usersRttMs, { east: 75, west: 5 });
    assert.equal(inputs.links[0]!.spareMbps, 500);
  });

  it('leaves a VM alone while it migrates, and treats a stale RTT as unknown', () => {
    const moving = vm({ sensitive: true, sensitivity: 0.9, users: [{ userId: 'alice' as UserId, share: 1 }], migratingJobId: 'j1' });
    const plan = planMoves(createSnapshot(snapshotInput(1, { sites, hosts: [], links, vms: [moving], users: [user] }, DEFAULT_PLAN_PARAMS)), DEFAULT_PLAN_PARAMS);
    assert.equal(plan.moves.length, 0);
    assert.equal(plan.rejected[0]!.reason, 'excluded');
    const stale: UserRecord = { ...user, rtt: { ...user.rtt, west: { ...user.rtt.west!, stale: true } } };
    const v = vm({ sensitive: true, sensitivity: 0.9, users: [{ userId: 'alice' as UserId, share: 1 }] });
    const p2 = planMoves(createSnapshot(snapshotInput(1, { sites, hosts: [], links, vms: [v], users: [stale] }, DEFAULT_PLAN_PARAMS)), DEFAULT_PLAN_PARAMS);
    assert.equal(p2.moves.length, 0);
  });

  it('drops users it does not know from a VM rather than failing the whole snapshot', () => {
    const v = vm({ users: [{ userId: 'ghost' as UserId, share: 0.5 }, { userId: 'alice' as UserId, share: 0.5 }] });
    const snap = createSnapshot(snapshotInput(1, { sites, hosts: [], links, vms: [v], users: [user] }, DEFAULT_PLAN_PARAMS));
    assert.deepEqual(snap.vms[0]!.users, [{ userId: 'alice', share: 1 }]);
  });
});

describe('plan status', () => {
  it('starts by mode and ends when every job has ended', () => {
    assert.equal(initialPlanStatus('auto', 0), 'empty');
    assert.equal(initialPlanStatus('auto', 2), 'submitted');
    assert.equal(initialPlanStatus('approve', 1), 'recommended');
    assert.equal(initialPlanStatus('dry-run', 1), 'dry-run');
    assert.equal(planStatusAfterJobs('submitted', [{ jobId: 'a', vm: 'v' as VmId, state: 'running' }]), 'submitted');
    assert.equal(planStatusAfterJobs('approved', [{ jobId: 'a', vm: 'v' as VmId, state: 'completed' }, { jobId: 'b', vm: 'w' as VmId, state: 'rolled-back' }]), 'done');
    assert.equal(planStatusAfterJobs('recommended', [{ jobId: 'a', vm: 'v' as VmId, state: 'completed' }]), 'recommended');
  });
});
