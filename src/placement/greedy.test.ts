import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createSnapshot } from '../core/model.js';
import {
  accountingViolations, arbCase, blockedMoveViolations, budgetViolations, capacityViolations, describePlan,
  orderViolations, paramsWith, snapshotOf, thresholdViolations, transientViolations, type CloudSpec,
} from '../testing/snapshots.js';
import { planMoves } from './greedy.js';
import { cooldownMs } from './params.js';
import type { Plan } from './plan.js';

// Seeded, so CI sees the same 200 clouds every run; change the seed locally to explore.
const FC = { numRuns: 200, seed: 20251125 };
const MIN = 60_000;

/** Runs the planner on a generated cloud and hands the check the snapshot, params and plan. */
function forEveryPlan(check: (ctx: { s: ReturnType<typeof createSnapshot>; params: ReturnType<typeof paramsWith>; plan: Plan }) => void): void {
  fc.assert(fc.property(arbCase(), ({ input, params }) => {
    const s = createSnapshot(input);
    check({ s, params, plan: planMoves(s, params) });
  }), FC);
}

const noViolations = (found: string[], plan: Plan): void => {
  assert.deepEqual(found, [], `plan:\n${describePlan(plan)}`);
};

const rejectionOf = (plan: Plan, vm: string) => plan.rejected.find((r) => r.vm === vm);

/** Two sites; one user near `b`; one sensitive 2 vCPU / 4 GiB desktop at `a`. */
const twoSites = (vm: Partial<CloudSpec['vms'][number]> = {}, rttMs: [number, number] = [100, 10]): CloudSpec => ({
  atMs: 1_000_000_000,
  sites: [{ id: 'a', vcpu: 8, memoryMiB: 16384 }, { id: 'b', vcpu: 8, memoryMiB: 16384 }],
  users: { u: rttMs },
  vms: [{ id: 'v', site: 'a', users: ['u'], ...vm }],
});

describe('planMoves() invariants (property, 200 seeded clouds each)', () => {
  it('never leaves a site over its vCPU or memory capacity at the end of the round', () => {
    forEveryPlan(({ s, plan }) => noViolations(capacityViolations(s, plan), plan));
  });

  it('moves each VM at most once, and lists every other VM in `rejected` exactly once with a detail', () => {
    forEveryPlan(({ s, plan }) => noViolations(accountingViolations(s, plan), plan));
  });

  it('keeps to the global budget (maxMovesPerRound) and the per-link budget (maxMovesPerLink)', () => {
    forEveryPlan(({ params, plan }) => noViolations(budgetViolations(plan, params), plan));
  });

  it('gives the same plan for the same input', () => {
    fc.assert(fc.property(arbCase(), ({ input, params }) => {
      const first = planMoves(createSnapshot(input), params);
      const second = planMoves(createSnapshot(input), params);
      assert.deepEqual(second, first);
    }), FC);
  });

  it('makes no closer-to-users move that saves less than minSavingMs (or nothing at all)', () => {
    forEveryPlan(({ s, params, plan }) => noViolations(thresholdViolations(s, plan, params)
      .filter((v) => v.includes('moves to save')), plan));
  });

  it('never moves a pinned, excluded or cooling-down VM', () => {
    forEveryPlan(({ s, params, plan }) => noViolations(blockedMoveViolations(s, plan, params), plan));
  });

  it('only names VMs moved in the same plan in `after`, with no cycle', () => {
    forEveryPlan(({ plan }) => noViolations(orderViolations(plan), plan));
  });

  it('can run its moves as `after` orders them without a site going over capacity on the way', () => {
    forEveryPlan(({ s, plan }) => noViolations(transientViolations(s, plan), plan));
  });

  it('only evicts (make-room) VMs with sensitivity ≤ evictableMaxSensitivity', () => {
    forEveryPlan(({ s, params, plan }) => noViolations(thresholdViolations(s, plan, params)
      .filter((v) => v.includes('evicted')), plan));
  });

  it('evicts a VM only for a move that waits for it, and gains more than the evictions cost', () => {
    forEveryPlan(({ plan }) => {
      for (const m of plan.moves.filter((x) => x.kind === 'make-room')) {
        const beneficiaries = plan.moves.filter((x) => x.kind === 'closer-to-users' && x.after.includes(m.vm));
        assert.ok(beneficiaries.length > 0, `${m.vm} is evicted for nothing:\n${describePlan(plan)}`);
      }
      assert.ok(Math.abs(plan.totalBenefit - plan.moves.reduce((t, m) => t + m.benefit, 0)) < 1e-9);
      if (plan.moves.length > 0) assert.ok(plan.totalBenefit > 0, describePlan(plan));
    });
  });
});

describe('planMoves()', () => {
  it('moves a sensitive VM to the site nearest its users, and says what it saves and costs', () => {
    const plan = planMoves(snapshotOf(twoSites()), paramsWith());
    assert.equal(plan.moves.length, 1);
    const m = plan.moves[0]!;
    assert.deepEqual([m.vm, m.from, m.to, m.kind, m.savingMs, m.after], ['v', 'a', 'b', 'closer-to-users', 90, []]);
    assert.ok(Math.abs(m.benefit - 0.9 * 90) < 1e-9);
    // An idle 4 GiB guest over 500 Mbit/s spare: 4 GiB / 62.5 MB/s.
    assert.ok(Math.abs(m.costS - (4096 * 2 ** 20) / 62.5e6) < 1e-6);
    assert.equal(plan.rejected.length, 0);
  });

  it('rejects a VM whose best site saves less than minSavingMs as below-min-saving', () => {
    const plan = planMoves(snapshotOf(twoSites({}, [50, 45])), paramsWith({ minSavingMs: 10 }));
    assert.deepEqual(plan.moves, []);
    const r = rejectionOf(plan, 'v');
    assert.equal(r?.reason, 'below-min-saving');
    assert.match(r.detail, /best site b saves 5 ms, below the 10 ms minimum/);
  });

  it('rejects a move that gains less than minBenefitPerCostS per second of migration as too-costly', () => {
    // 0.9 × 90 ms = 81 of benefit for ~68.7 s of migration: 1.18 per second.
    const ok = planMoves(snapshotOf(twoSites()), paramsWith({ minBenefitPerCostS: 1 }));
    assert.equal(ok.moves.length, 1);
    const plan = planMoves(snapshotOf(twoSites()), paramsWith({ minBenefitPerCostS: 1.5 }));
    assert.deepEqual(plan.moves, []);
    const r = rejectionOf(plan, 'v');
    assert.equal(r?.reason, 'too-costly');
    assert.match(r.detail, /below 1\.5 per second/);
  });

  it('does not move a VM for a saving of 0 ms, even when minSavingMs is 0', () => {
    const plan = planMoves(snapshotOf(twoSites({}, [30, 30])), paramsWith({ minSavingMs: 0 }));
    assert.deepEqual(plan.moves, []);
    assert.equal(rejectionOf(plan, 'v')?.reason, 'already-best');
  });

  it('rejects a pinned VM as pinned, whether the VM or the params pin it', () => {
    const byVm = planMoves(snapshotOf(twoSites({ pinned: true })), paramsWith());
    assert.deepEqual(byVm.moves, []);
    assert.equal(rejectionOf(byVm, 'v')?.reason, 'pinned');
    const byParams = planMoves(snapshotOf(twoSites()), paramsWith({ pinned: ['v'] }));
    assert.deepEqual(byParams.moves, []);
    assert.equal(rejectionOf(byParams, 'v')?.reason, 'pinned');
  });

  it('rejects an excluded VM as excluded', () => {
    const plan = planMoves(snapshotOf(twoSites({ excluded: true })), paramsWith());
    assert.equal(rejectionOf(plan, 'v')?.reason, 'excluded');
  });

  it('backs off: after the 3rd move of a streak the cooldown is 4× the base, then the VM may move again', () => {
    const params = paramsWith({ baseCooldownMs: 30 * MIN, maxCooldownMs: 24 * 60 * MIN });
    assert.equal(cooldownMs(params, 3), 120 * MIN);
    const at = 1_000_000_000;
    const cooling = planMoves(snapshotOf(twoSites({ recentMoves: 3, lastMovedAtMs: at - 119 * MIN })), params);
    assert.deepEqual(cooling.moves, []);
    const r = rejectionOf(cooling, 'v');
    assert.equal(r?.reason, 'cooling-down');
    assert.match(r.detail, /move 3 of its streak/);
    assert.match(r.detail, /may move again in 60 s/);
    const cooled = planMoves(snapshotOf(twoSites({ recentMoves: 3, lastMovedAtMs: at - 120 * MIN })), params);
    assert.deepEqual(cooled.moves.map((m) => m.vm), ['v']);
    // The first move of a streak only waits the base cooldown.
    const first = planMoves(snapshotOf(twoSites({ recentMoves: 1, lastMovedAtMs: at - 31 * MIN })), params);
    assert.deepEqual(first.moves.map((m) => m.vm), ['v']);
  });

  it('caps the back-off at maxCooldownMs', () => {
    const params = paramsWith({ baseCooldownMs: 30 * MIN, maxCooldownMs: 60 * MIN });
    assert.equal(cooldownMs(params, 10), 60 * MIN);
    const plan = planMoves(snapshotOf(twoSites({ recentMoves: 10, lastMovedAtMs: 1_000_000_000 - 61 * MIN })), params);
    assert.deepEqual(plan.moves.map((m) => m.vm), ['v']);
  });

  it('makes room: moves an insensitive VM out of a full site, then the sensitive one in, after it', () => {
    const s = snapshotOf({
      sites: [{ id: 'a', vcpu: 4, memoryMiB: 8192 }, { id: 'b', vcpu: 2, memoryMiB: 4096 }, { id: 'c', vcpu: 8, memoryMiB: 16384 }],
      users: { u: [100, 10, 80] },
      vms: [
        { id: 'v', site: 'a', users: ['u'], sensitivity: 0.9 },
        { id: 'idle', site: 'b', sensitivity: 0.1 }, // fills b; nobody uses it
      ],
    });
    const params = paramsWith({ evictionPenalty: 0.01 });
    const plan = planMoves(s, params);
    const evict = plan.moves.find((m) => m.vm === 'idle');
    const move = plan.moves.find((m) => m.vm === 'v');
    assert.equal(evict?.kind, 'make-room');
    assert.equal(evict.from, 'b');
    assert.equal(move?.kind, 'closer-to-users');
    assert.equal(move.to, 'b');
    assert.deepEqual(move.after, ['idle']);
    assert.ok(Math.abs(plan.totalBenefit - (0.9 * 90 - 0.01)) < 1e-9);
    assert.deepEqual(capacityViolations(s, plan), []);
    assert.deepEqual(transientViolations(s, plan), []);
  });

  it('does not make room by evicting a VM more sensitive than evictableMaxSensitivity', () => {
    const s = snapshotOf({
      sites: [{ id: 'a', vcpu: 4, memoryMiB: 8192 }, { id: 'b', vcpu: 2, memoryMiB: 4096 }, { id: 'c', vcpu: 8, memoryMiB: 16384 }],
      users: { u: [100, 10, 80] },
      vms: [{ id: 'v', site: 'a', users: ['u'] }, { id: 'busy', site: 'b', sensitivity: 0.3 }],
    });
    const plan = planMoves(s, paramsWith({ evictableMaxSensitivity: 0.2 }));
    // b stays full, so v takes the second-best site.
    assert.deepEqual(plan.moves.map((m) => [m.vm, m.to, m.kind]), [['v', 'c', 'closer-to-users']]);
  });

  it('rejects a VM that dirties memory faster than the spare bandwidth as does-not-converge when post-copy is not allowed', () => {
    // 200 MiB/s of dirtying against 500 Mbit/s (≈ 60 MiB/s) spare, over all of its 4 GiB.
    const s = snapshotOf(twoSites({ dirtyRateMiBps: 200 }));
    const rejected = planMoves(s, paramsWith({ postCopy: 'reject' }));
    assert.deepEqual(rejected.moves, []);
    const r = rejectionOf(rejected, 'v');
    assert.equal(r?.reason, 'does-not-converge');
    assert.match(r.detail, /would not converge/);

    const allowed = planMoves(s, paramsWith({ postCopy: 'allow' }));
    assert.equal(allowed.moves.length, 1);
    assert.equal(allowed.moves[0]!.postCopy, true);
    assert.equal(allowed.moves[0]!.to, 'b');
  });

  it('keeps to maxMovesPerRound, taking the larger gain and rejecting the other as global-budget', () => {
    const s = snapshotOf({
      sites: [{ id: 'a', vcpu: 8, memoryMiB: 16384 }, { id: 'b', vcpu: 8, memoryMiB: 16384 }],
      users: { near: [100, 10], far: [60, 30] },
      vms: [{ id: 'small', site: 'a', users: ['far'] }, { id: 'big', site: 'a', users: ['near'] }],
    });
    const plan = planMoves(s, paramsWith({ maxMovesPerRound: 1 }));
    assert.deepEqual(plan.moves.map((m) => m.vm), ['big']);
    assert.equal(rejectionOf(plan, 'small')?.reason, 'global-budget');
  });

  it('keeps to maxMovesPerLink, rejecting the extra move over the same link as link-budget', () => {
    const s = snapshotOf({
      sites: [{ id: 'a', vcpu: 8, memoryMiB: 16384 }, { id: 'b', vcpu: 8, memoryMiB: 16384 }],
      users: { near: [100, 10], far: [60, 30] },
      vms: [{ id: 'small', site: 'a', users: ['far'] }, { id: 'big', site: 'a', users: ['near'] }],
    });
    const plan = planMoves(s, paramsWith({ maxMovesPerLink: 1 }));
    assert.deepEqual(plan.moves.map((m) => m.vm), ['big']);
    assert.equal(rejectionOf(plan, 'small')?.reason, 'link-budget');
  });
});
