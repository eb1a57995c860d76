import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createSnapshot } from '../core/model.js';
import { loadHighs } from '../solver/highs.js';
import { arbCase, describePlan, paramsWith, planViolations, snapshotOf, type CloudSpec } from '../testing/snapshots.js';
import { buildProblem, ratio } from './candidates.js';
import { planMoves } from './greedy.js';
import { buildIlp, planMovesIlp, type LpSolver } from './ilp.js';
import type { PlanParams } from './params.js';

// Seeded, so CI sees the same clouds every run; change the seed locally to explore.
const FC = { numRuns: 60, seed: 20251125 };

let solver: LpSolver;
before(async () => {
  solver = await loadHighs();
});

const close = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual}, expected ${expected}`);
};

/** Both planners find exactly `expected` total benefit on this cloud, with sound plans. */
function bothFind(spec: CloudSpec, params: PlanParams, expected: number): void {
  const s = snapshotOf(spec);
  const greedy = planMoves(s, params);
  const ilp = planMovesIlp(s, params, solver);
  close(ilp.totalBenefit, expected, `ILP total\n${describePlan(ilp)}`);
  close(greedy.totalBenefit, expected, `greedy total\n${describePlan(greedy)}`);
  assert.equal(ilp.optimal, true);
  assert.deepEqual(planViolations(s, ilp, params), []);
  assert.deepEqual(planViolations(s, greedy, params), []);
}

const site = (id: string, vcpu: number, memoryMiB: number) => ({ id, vcpu, memoryMiB });

describe('planMovesIlp() against planMoves() on clouds with a known best plan', () => {
  it('takes both independent moves: 0.8 × 80 ms + 0.5 × 60 ms = 94', () => {
    bothFind({
      sites: [site('a', 8, 16384), site('b', 8, 16384)],
      users: { u1: [100, 20], u2: [10, 70] },
      vms: [
        { id: 'v1', site: 'a', users: ['u1'], sensitivity: 0.8 },
        { id: 'v2', site: 'b', users: ['u2'], sensitivity: 0.5 },
      ],
    }, paramsWith(), 94);
  });

  it('gives the only free slot to the more sensitive of two VMs: 0.8 × 80 ms = 64', () => {
    bothFind({
      sites: [site('a', 8, 16384), site('b', 2, 4096)],
      users: { u: [100, 20] },
      vms: [
        { id: 'v1', site: 'a', users: ['u'], sensitivity: 0.8 },
        { id: 'v2', site: 'a', users: ['u'], sensitivity: 0.5 },
      ],
    }, paramsWith(), 64);
  });

  it('evicts an idle VM from a full site for a sensitive one: 0.9 × 90 ms − 0.01 penalty = 80.99', () => {
    bothFind({
      sites: [site('a', 4, 8192), site('b', 2, 4096), site('c', 8, 16384)],
      users: { u: [100, 10, 80] },
      vms: [
        { id: 'v', site: 'a', users: ['u'], sensitivity: 0.9 },
        { id: 'idle', site: 'b', sensitivity: 0.1 },
      ],
    }, paramsWith({ evictionPenalty: 0.01 }), 0.9 * 90 - 0.01);
  });

  it('spends a budget of one move on the larger gain even though the cheap move has the better ratio: 90', () => {
    const spec: CloudSpec = {
      sites: [site('a', 32, 65536), site('b', 32, 65536)],
      users: { u1: [60, 10], u2: [110, 10] },
      vms: [
        // 0.6 × 50 ms = 30 for 1 GiB of copying …
        { id: 'cheap', site: 'a', users: ['u1'], sensitivity: 0.6, memoryMiB: 1024 },
        // … against 0.9 × 100 ms = 90 for 16 GiB.
        { id: 'big', site: 'a', users: ['u2'], sensitivity: 0.9, memoryMiB: 16384 },
      ],
    };
    const params = paramsWith({ maxMovesPerRound: 1 });
    const p = buildProblem(snapshotOf(spec), params);
    const [cheap, big] = [p.moves[0]![0]!, p.moves[1]![0]!];
    assert.ok(ratio(cheap) > ratio(big), 'ordered by benefit per second alone, the planner would take `cheap`');
    bothFind(spec, params, 90);
    assert.deepEqual(planMoves(snapshotOf(spec), params).moves.map((m) => m.vm), ['big']);
  });

  it('moves nothing when the only gain is a swap between two full sites, which no migration order can carry out', () => {
    const spec: CloudSpec = {
      sites: [site('a', 2, 4096), site('b', 2, 4096)],
      users: { ua: [10, 100], ub: [100, 10] },
      vms: [{ id: 'v', site: 'a', users: ['ub'] }, { id: 'w', site: 'b', users: ['ua'] }],
    };
    // At the end of the round the swap would fit; the plain 0-1 program chooses it.
    const p = buildProblem(snapshotOf(spec), paramsWith());
    const relaxed = solver.solve(buildIlp(p).lp, { timeLimitS: 10 });
    assert.equal([...relaxed.values.values()].filter((x) => x > 0.5).length, 2);
    bothFind(spec, paramsWith(), 0);
  });

  it('chains moves through a site with room: w leaves b for c, then v takes its place: 81 + 48 = 129', () => {
    const spec: CloudSpec = {
      sites: [site('a', 2, 4096), site('b', 2, 4096), site('c', 4, 8192)],
      users: { uv: [100, 10, 100], uw: [100, 100, 20] },
      vms: [
        { id: 'v', site: 'a', users: ['uv'], sensitivity: 0.9 },
        { id: 'w', site: 'b', users: ['uw'], sensitivity: 0.6 },
      ],
    };
    const s = snapshotOf(spec);
    const ilp = planMovesIlp(s, paramsWith(), solver);
    close(ilp.totalBenefit, 129, 'ILP total');
    assert.deepEqual(ilp.moves.find((m) => m.vm === 'v')?.after, ['w']);
    assert.deepEqual(planViolations(s, ilp, paramsWith()), []);
  });

  it('planMoves() also finds the chain, re-trying v once w frees room at b: 129', () => {
    const s = snapshotOf({
      sites: [site('a', 2, 4096), site('b', 2, 4096), site('c', 4, 8192)],
      users: { uv: [100, 10, 100], uw: [100, 100, 20] },
      vms: [
        { id: 'v', site: 'a', users: ['uv'], sensitivity: 0.9 },
        { id: 'w', site: 'b', users: ['uw'], sensitivity: 0.6 },
      ],
    });
    close(planMoves(s, paramsWith()).totalBenefit, 129, 'greedy total');
  });
});

describe('planMovesIlp() against planMoves() on random small clouds (property, 60 seeded clouds)', () => {
  it('is never worse than greedy, keeps every plan invariant, and greedy stays within 0.9 of it', (t) => {
    let run = 0;
    fc.assert(fc.property(arbCase({ maxSites: 4, maxVms: 12, maxUsers: 8 }), ({ input, params }) => {
      run++;
      const s = createSnapshot(input);
      const greedy = planMoves(s, params);
      const ilp = planMovesIlp(s, params, solver);
      assert.equal(ilp.optimal, true);
      assert.ok(ilp.totalBenefit >= greedy.totalBenefit - 1e-6,
        `ILP ${ilp.totalBenefit} < greedy ${greedy.totalBenefit}\nILP:\n${describePlan(ilp)}\ngreedy:\n${describePlan(greedy)}`);
      assert.deepEqual(planViolations(s, ilp, params), [], describePlan(ilp));
      const share = ilp.totalBenefit > 1e-9 ? greedy.totalBenefit / ilp.totalBenefit : 1;
      if (share < 0.98) {
        // Reported, so the planner can be improved; the instance is reproducible from the seed and run.
        t.diagnostic(`greedy ${greedy.totalBenefit.toFixed(2)} = ${share.toFixed(3)} of ILP ${ilp.totalBenefit.toFixed(2)} `
          + `(seed ${FC.seed}, run ${run}): ${JSON.stringify({ input, params })}`);
      }
      assert.ok(share >= 0.9, `greedy reaches only ${share.toFixed(3)} of the optimum\nILP:\n${describePlan(ilp)}\ngreedy:\n${describePlan(greedy)}`);
    }), FC);
  });
});
