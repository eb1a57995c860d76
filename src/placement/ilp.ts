import type { Snapshot, Vm } from '../core/model.js';
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
  if (Math.abs(x) >= 1e21) return String(x); // toFixed switches to exponent notation there
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

/** Solve-and-cut rounds before planMovesIlp gives up on proving the plan optimal. */
const MAX_CUTS = 50;
/** States the search for a runnable order may visit before it stops looking. */
const ORDER_SEARCH_NODES = 20_000;

/**
 * An order in which every move finds room at its destination when it starts (room is taken at the
 * destination when a move starts and freed at its source when it ends), or null when there is none.
 * `proven` is false when the search stopped at its node limit without an answer.
 */
export function runnableOrder(p: Problem, moves: readonly Candidate[]): { order: Candidate[] | null; proven: boolean } {
  const s = p.snapshot;
  const freeV = Float64Array.from(p.freeVcpu);
  const freeM = Float64Array.from(p.freeMemoryMiB);
  const done = new Uint8Array(moves.length);
  const order: Candidate[] = [];
  const dead = new Set<string>();
  let nodes = 0;
  const vmOf = (c: Candidate): Vm => s.vms[c.vmIdx]!;
  const fits = (c: Candidate): boolean =>
    vmOf(c).vcpu <= freeV[c.to]! + 1e-9 && vmOf(c).memoryMiB <= freeM[c.to]! + 1e-9;
  // Room still wanted at each site by the moves not yet started.
  const wantV = new Float64Array(freeV.length);
  const wantM = new Float64Array(freeM.length);
  for (const c of moves) {
    wantV[c.to]! += vmOf(c).vcpu;
    wantM[c.to]! += vmOf(c).memoryMiB;
  }
  // A move is safe to start first when its destination has room for every move still to come into it:
  // starting it early can then hold no other move up, so the search need not try the alternatives.
  const safe = (c: Candidate): boolean => wantV[c.to]! <= freeV[c.to]! + 1e-9 && wantM[c.to]! <= freeM[c.to]! + 1e-9;
  const apply = (c: Candidate, sign: 1 | -1): void => {
    const vm = vmOf(c);
    freeV[c.to]! -= sign * vm.vcpu;
    freeM[c.to]! -= sign * vm.memoryMiB;
    wantV[c.to]! -= sign * vm.vcpu;
    wantM[c.to]! -= sign * vm.memoryMiB;
    freeV[c.from]! += sign * vm.vcpu;
    freeM[c.from]! += sign * vm.memoryMiB;
  };
  const search = (): boolean | null => {
    if (order.length === moves.length) return true;
    const key = done.join('');
    if (dead.has(key)) return false;
    if (++nodes > ORDER_SEARCH_NODES) return null;
    const ready = moves.map((_, k) => k).filter((k) => done[k] === 0 && fits(moves[k]!));
    const sure = ready.find((k) => safe(moves[k]!));
    for (const k of sure === undefined ? ready : [sure]) {
      done[k] = 1;
      apply(moves[k]!, 1);
      order.push(moves[k]!);
      const r = search();
      if (r !== false) return r;
      order.pop();
      apply(moves[k]!, -1);
      done[k] = 0;
    }
    dead.add(key);
    return false;
  };
  const r = search();
  return { order: r === true ? order : null, proven: r !== null };
}

/**
 * The exact planner: the same problem as planMoves, solved to optimality by an ILP solver. The reference
 * the greedy planner is measured against, and a planner for small clouds.
 *
 * The 0-1 program only checks capacity at the end of the round, so its optimum may swap VMs between two
 * full sites (or close a longer cycle) that no order of migrations can carry out. Such a choice is cut
 * off (deadlockCut) and the program solved again; the cuts remove no plan that has a runnable order,
 * so every plan the greedy planner can make stays feasible and the ILP stays an upper bound on it.
 */
export function planMovesIlp(snapshot: Snapshot, params: PlanParams, solver: LpSolver, opts: { timeLimitS?: number } = {}): Plan {
  const p = buildProblem(snapshot, params);
  const model = buildIlp(p);
  const cuts: string[] = [];
  let exact = true;
  for (;;) {
    const lp = cuts.length === 0 ? model.lp : model.lp.replace('\nBounds\n', `\n${cuts.join('\n')}\nBounds\n`);
    const res = solver.solve(lp, { timeLimitS: opts.timeLimitS ?? 60 });
    if (res.status === 'infeasible' || res.status === 'error') {
      throw new AppError('ILP_FAILED', `ILP planner failed for ${snapshot.vms.length} VMs over ${snapshot.sites.length} sites: ${res.detail}`);
    }
    if (res.status === 'time-limit' && res.values.size === 0) {
      throw new AppError('ILP_TIMEOUT', `ILP planner found no plan for ${snapshot.vms.length} VMs over ${snapshot.sites.length} sites within ${opts.timeLimitS ?? 60} s; use the greedy planner for a cloud this size`, { retryable: true });
    }
    const chosen = model.vars.filter((v) => (res.values.get(v.name) ?? 0) > 0.5);
    const found = runnableOrder(p, chosen.map((v) => v.c));
    let runnable = found.order;
    if (runnable === null && cuts.length < MAX_CUTS) {
      exact &&= found.proven;
      cuts.push(` run_${cuts.length}: ${deadlockCut(p, model, chosen)}`);
      continue;
    }
    if (runnable === null) {
      // Out of rounds: keep the moves that can start one after another, which leaves capacity intact.
      exact = false;
      runnable = runnablePrefix(p, chosen.map((v) => v.c));
    }
    const kindOf = new Map(chosen.map((v) => [v.c, v.kind]));
    // Replay in the runnable order: a move that uses room another move frees waits for it (`after`).
    const round = new Round(p);
    for (const c of runnable) round.take(c, kindOf.get(c)!);
    const failed = new Map<number, 'not-selected'>();
    return toPlan(p, 'ilp', round.picked, failed, { optimal: res.status === 'optimal' && exact });
  }
}

/**
 * A cut that the chosen moves C violate and that removes no runnable plan.
 *
 * First try a blocked core: moves K ⊆ C none of which could be the first of K to start, because even
 * if every other move of C out of its destination had finished, the room there would be too small.
 * Any plan holding K whose moves out of K's destinations all come from C is then stuck the same way:
 *   Σ_{k∈K} x_k − Σ_{y∉C, y leaves a destination of K} x_y ≤ |K| − 1.
 * Failing that (moves competing for the same room), shrink C to a set K with no runnable order such
 * that no move of C outside K leaves one of K's destinations; adding moves that free none of K's
 * destinations cannot make K runnable:
 *   Σ_{k∈K} x_k − Σ_{y∉K, y leaves a destination of K} x_y ≤ |K| − 1.
 */
function deadlockCut(p: Problem, model: IlpModel, chosen: IlpModel['vars']): string {
  const core = blockedCore(p, chosen);
  let k: IlpModel['vars'];
  let outside: Set<string>;
  if (core !== null) {
    k = core;
    outside = new Set(chosen.map((v) => v.name));
  } else {
    k = [...chosen];
    for (const v of chosen) {
      const without = k.filter((x) => x !== v);
      const dests = new Set(without.map((x) => x.c.to));
      if (chosen.some((x) => !without.includes(x) && dests.has(x.c.from))) continue;
      const r = runnableOrder(p, without.map((x) => x.c));
      if (r.order === null && r.proven) k = without;
    }
    outside = new Set(k.map((v) => v.name));
  }
  const dests = new Set(k.map((v) => v.c.to));
  const freeing = model.vars.filter((v) => !outside.has(v.name) && dests.has(v.c.from));
  return `${terms([...k.map((v): [number, string] => [1, v.name]), ...freeing.map((v): [number, string] => [-1, v.name])])} <= ${k.length - 1}`;
}

/** The smallest-found blocked core of the chosen moves (see deadlockCut), or null if there is none. */
function blockedCore(p: Problem, chosen: IlpModel['vars']): IlpModel['vars'] | null {
  const s = p.snapshot;
  const inK = new Set(chosen);
  // Could v start before every other move of K, with all of C outside K done?
  const unblocked = (v: IlpModel['vars'][number]): boolean => {
    let roomV = p.freeVcpu[v.c.to]!;
    let roomM = p.freeMemoryMiB[v.c.to]!;
    for (const y of chosen) {
      if (inK.has(y) || y.c.from !== v.c.to) continue;
      roomV += s.vms[y.c.vmIdx]!.vcpu;
      roomM += s.vms[y.c.vmIdx]!.memoryMiB;
    }
    const vm = s.vms[v.c.vmIdx]!;
    return vm.vcpu <= roomV + 1e-9 && vm.memoryMiB <= roomM + 1e-9;
  };
  for (let changed = true; changed;) {
    changed = false;
    for (const v of inK) {
      if (unblocked(v)) {
        inK.delete(v);
        changed = true;
      }
    }
  }
  if (inK.size === 0) return null;
  for (const v of [...inK]) {
    inK.delete(v);
    if (inK.size === 0 || [...inK].some(unblocked)) inK.add(v);
  }
  return chosen.filter((v) => inK.has(v));
}

/** The moves that can start one after another in list order, skipping any that never find room. */
function runnablePrefix(p: Problem, moves: readonly Candidate[]): Candidate[] {
  const round = new Round(p);
  const out: Candidate[] = [];
  const pending = [...moves];
  for (;;) {
    const k = pending.findIndex((c) => round.fits(c.vmIdx, c.to));
    if (k === -1) return out;
    const [c] = pending.splice(k, 1);
    round.take(c!, 'closer-to-users');
    out.push(c!);
  }
}
