import type { Snapshot } from '../core/model.js';
import { AppError } from '../core/errors.js';
import { buildProblem, type Candidate, type Problem } from './candidates.js';
import { Round, toPlan, type Picked } from './greedy.js';
import type { PlanParams } from './params.js';
import type { Plan } from './plan.js';

/** An LP/MIP solver that reads CPLEX LP text (HiGHS in production; see src/solver/highs.ts). */
export interface LpSolver {
  solve(lp: string, opts: { timeLimitS: number }): LpResult;
}

export interface LpResult {
  /** 'optimal', 'time-limit' (with the best integer solution found), or 'infeasible'/'error'. */
  readonly status: 'optimal' | 'time-limit' | 'infeasible' | 'error';
  readonly detail: string;
  /** Value of each column by name. */
  readonly values: ReadonlyMap<string, number>;
}

export interface IlpModel {
  readonly lp: string;
  readonly vars: readonly { readonly name: string; readonly c: Candidate; readonly kind: Picked['kind'] }[];
}

const num = (x: number): string => {
  const s = x.toFixed(9).replace(/\.?0+$/, '');
  return s === '-0' ? '0' : s;
};

function terms(parts: readonly [number, string][]): string {
  if (parts.length === 0) return '0 x_none';
  const out: string[] = [];
  parts.forEach(([coef, name], k) => {
    const sign = coef < 0 ? '-' : '+';
    out.push(`${k === 0 && sign === '+' ? '' : `${sign} `}${num(Math.abs(coef))} ${name}`);
  });
  // Short lines: LP readers are happier, and diffs of the text stay readable.
  const lines: string[] = [];
  for (let i = 0; i < out.length; i += 12) lines.push(out.slice(i, i + 12).join(' '));
  return lines.join('\n   ');
}

/**
 * The planner's problem as a 0-1 program: one binary per candidate move (for the users' sake or to make
 * room); maximise total benefit; each VM moves at most once; every site's vCPU and memory hold at the end
 * of the round; at most maxMovesPerRound moves, and maxMovesPerLink on any link. Pure text.
 */
export function buildIlp(p: Problem): IlpModel {
  const s = p.snapshot;
  const vars: { name: string; c: Candidate; kind: Picked['kind'] }[] = [];
  const byVm = new Map<number, string[]>();
  const add = (c: Candidate, kind: Picked['kind']): void => {
    const name = `x${vars.length}`;
    vars.push({ name, c, kind });
    const l = byVm.get(c.vmIdx) ?? [];
    l.push(name);
    byVm.set(c.vmIdx, l);
  };
  p.moves.forEach((list) => list.forEach((c) => add(c, 'closer-to-users')));
  for (const site of p.evictableAt) for (const e of site) for (const c of p.evictions(e)) add(c, 'make-room');

  const rows: string[] = [];
  for (const [i, names] of byVm) if (names.length > 1) rows.push(` once_${i}: ${terms(names.map((n) => [1, n]))} <= 1`);
  const nSites = s.sites.length;
  const capV: [number, string][][] = Array.from({ length: nSites }, () => []);
  const capM: [number, string][][] = Array.from({ length: nSites }, () => []);
  const links = new Map<string, string[]>();
  for (const v of vars) {
    const vm = s.vms[v.c.vmIdx]!;
    capV[v.c.to]!.push([vm.vcpu, v.name]);
    capV[v.c.from]!.push([-vm.vcpu, v.name]);
    capM[v.c.to]!.push([vm.memoryMiB, v.name]);
    capM[v.c.from]!.push([-vm.memoryMiB, v.name]);
    const key = v.c.from < v.c.to ? `${v.c.from}_${v.c.to}` : `${v.c.to}_${v.c.from}`;
    const l = links.get(key) ?? [];
    l.push(v.name);
    links.set(key, l);
  }
  for (let j = 0; j < nSites; j++) {
    if (capV[j]!.length > 0) rows.push(` cpu_${j}: ${terms(capV[j]!)} <= ${num(Math.max(0, p.freeVcpu[j]!))}`);
    if (capM[j]!.length > 0) rows.push(` mem_${j}: ${terms(capM[j]!)} <= ${num(Math.max(0, p.freeMemoryMiB[j]!))}`);
  }
  if (vars.length > 0) rows.push(` budget: ${terms(vars.map((v) => [1, v.name]))} <= ${p.params.maxMovesPerRound}`);
  for (const [key, names] of links) {
    if (names.length > p.params.maxMovesPerLink) rows.push(` link_${key}: ${terms(names.map((n) => [1, n]))} <= ${p.params.maxMovesPerLink}`);
  }
  const lp = [
    'Maximize',
    ` obj: ${terms(vars.map((v) => [v.c.benefit, v.name]))}`,
    'Subject To',
    ...(rows.length > 0 ? rows : [' none: 0 x_none <= 0']),
    'Bounds',
    ' x_none = 0',
    'Binary',
    ...vars.map((v) => ` ${v.name}`),
    'End',
    '',
  ].join('\n');
  return { lp, vars };
}

/**
 * The exact planner: the same problem as planMoves, solved to optimality by an ILP solver. The reference
 * the greedy planner is measured against, and a planner for small clouds.
 */
export function planMovesIlp(snapshot: Snapshot, params: PlanParams, solver: LpSolver, opts: { timeLimitS?: number } = {}): Plan {
  const p = buildProblem(snapshot, params);
  const model = buildIlp(p);
  const res = solver.solve(model.lp, { timeLimitS: opts.timeLimitS ?? 60 });
  if (res.status === 'infeasible' || res.status === 'error') {
    throw new AppError('ILP_FAILED', `ILP planner failed for ${snapshot.vms.length} VMs over ${snapshot.sites.length} sites: ${res.detail}`);
  }
  const chosen = model.vars.filter((v) => (res.values.get(v.name) ?? 0) > 0.5);
  // Replay in an order that can run: a move waits for the moves that free its room.
  const round = new Round(p);
  const pending = [...chosen].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'make-room' ? -1 : 1));
  while (pending.length > 0) {
    const k = pending.findIndex((v) => round.fits(v.c.vmIdx, v.c.to));
    const [v] = pending.splice(k === -1 ? 0 : k, 1);
    round.take(v!.c, v!.kind);
  }
  const failed = new Map<number, 'not-selected'>();
  return toPlan(p, 'ilp', round.picked, failed, { optimal: res.status === 'optimal' });
}
