import type { Snapshot } from '../core/model.js';
import { buildProblem, usersRttMs } from './candidates.js';
import { Round, toPlan } from './greedy.js';
import type { PlanParams } from './params.js';
import type { Plan } from './plan.js';

/**
 * The naive policy the planner is compared with: every sensitive VM goes to the site nearest its users
 * at once — no budgets, no cost, no minimum saving, no cooldown; only capacity stops it.
 */
export function planNearest(snapshot: Snapshot, params: PlanParams): Plan {
  const loose: PlanParams = {
    ...params,
    minSavingMs: 1e-9,
    maxMovesPerRound: Number.MAX_SAFE_INTEGER,
    maxMovesPerLink: Number.MAX_SAFE_INTEGER,
    baseCooldownMs: 0,
    maxCostS: Number.MAX_VALUE,
    postCopy: 'allow',
  };
  const p = buildProblem(snapshot, loose);
  const round = new Round(p);
  for (let i = 0; i < p.moves.length; i++) {
    const vm = snapshot.vms[i]!;
    // Nearest first: order this VM's candidates by its users' RTT at the destination.
    const byRtt = [...p.moves[i]!].sort((x, y) => (usersRttMs(snapshot, vm, x.to) ?? Infinity) - (usersRttMs(snapshot, vm, y.to) ?? Infinity) || x.to - y.to);
    const c = byRtt.find((cand) => round.fits(i, cand.to));
    if (c !== undefined) round.take(c, 'closer-to-users');
  }
  return toPlan(p, 'nearest', round.picked, new Map());
}
