import type { VmId } from '../core/ids.js';
import type { Snapshot } from '../core/model.js';
import { buildProblem, ratio, type Candidate, type Problem } from './candidates.js';
import type { PlanParams } from './params.js';
import type { Move, Plan, Rejection } from './plan.js';

type Order = 'ratio' | 'benefit';

export interface Picked {
  readonly c: Candidate;
  readonly kind: Move['kind'];
  readonly after: readonly VmId[];
}

/**
 * The round's bookkeeping: capacity, budgets, what is already chosen. Capacity is counted at the end of
 * the round; a move that needs room another move frees waits for it (`after`).
 */
export class Round {
  readonly staticVcpu: Float64Array;
  readonly staticMem: Float64Array;
  readonly freedVcpu: Float64Array;
  readonly freedMem: Float64Array;
  readonly freedBy: VmId[][];
  readonly linkUse = new Map<number, number>();
  readonly chosen: Int32Array;
  readonly picked: Picked[] = [];
  total = 0;

  constructor(readonly p: Problem) {
    const n = p.snapshot.sites.length;
    this.staticVcpu = Float64Array.from(p.freeVcpu);
    this.staticMem = Float64Array.from(p.freeMemoryMiB);
    this.freedVcpu = new Float64Array(n);
    this.freedMem = new Float64Array(n);
    this.freedBy = Array.from({ length: n }, () => []);
    this.chosen = new Int32Array(p.snapshot.vms.length).fill(-1);
  }

  private linkKey(a: number, b: number): number {
    const n = this.p.snapshot.sites.length;
    return a < b ? a * n + b : b * n + a;
  }

  budgetLeft(): number {
    return this.p.params.maxMovesPerRound - this.picked.length;
  }

  linkLeft(a: number, b: number, extra = 0): boolean {
    return (this.linkUse.get(this.linkKey(a, b)) ?? 0) + extra < this.p.params.maxMovesPerLink;
  }

  fits(vmIdx: number, to: number, extraVcpu = 0, extraMem = 0): boolean {
    const vm = this.p.snapshot.vms[vmIdx]!;
    return vm.vcpu <= this.staticVcpu[to]! + this.freedVcpu[to]! + extraVcpu + 1e-9
      && vm.memoryMiB <= this.staticMem[to]! + this.freedMem[to]! + extraMem + 1e-9;
  }

  take(c: Candidate, kind: Move['kind'], extraAfter: readonly VmId[] = []): void {
    const s = this.p.snapshot;
    const vm = s.vms[c.vmIdx]!;
    let after: VmId[] = [...extraAfter];
    const needV = vm.vcpu - this.staticVcpu[c.to]!;
    const needM = vm.memoryMiB - this.staticMem[c.to]!;
    if (needV > 1e-9 || needM > 1e-9) {
      // Uses room freed by moves out of the destination: start after them.
      after = [...new Set([...after, ...this.freedBy[c.to]!])];
      const fromStaticV = Math.max(0, Math.min(vm.vcpu, this.staticVcpu[c.to]!));
      const fromStaticM = Math.max(0, Math.min(vm.memoryMiB, this.staticMem[c.to]!));
      this.staticVcpu[c.to]! -= fromStaticV;
      this.staticMem[c.to]! -= fromStaticM;
      this.freedVcpu[c.to]! -= vm.vcpu - fromStaticV;
      this.freedMem[c.to]! -= vm.memoryMiB - fromStaticM;
    } else {
      this.staticVcpu[c.to]! -= vm.vcpu;
      this.staticMem[c.to]! -= vm.memoryMiB;
    }
    this.freedVcpu[c.from]! += vm.vcpu;
    this.freedMem[c.from]! += vm.memoryMiB;
    this.freedBy[c.from]!.push(vm.id);
    const k = this.linkKey(c.from, c.to);
    this.linkUse.set(k, (this.linkUse.get(k) ?? 0) + 1);
    this.chosen[c.vmIdx] = c.to;
    this.picked.push({ c, kind, after });
    this.total += c.benefit;
  }
}

/** A max-heap of VMs keyed by the score of the candidate each is looking at now. */
class Heap {
  private readonly keys: number[] = [];
  private readonly vals: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(key: number, val: number): void {
    this.keys.push(key);
    this.vals.push(val);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): number | undefined {
    if (this.keys.length === 0) return undefined;
    const top = this.vals[0]!;
    const lastK = this.keys.pop()!;
    const lastV = this.vals.pop()!;
    if (this.keys.length > 0) {
      this.keys[0] = lastK;
      this.vals[0] = lastV;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.keys.length && this.before(l, m)) m = l;
        if (r < this.keys.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  // Higher key first; on equal keys the lower value (VM index) first, so plans are deterministic.
  private before(a: number, b: number): boolean {
    const ka = this.keys[a]!;
    const kb = this.keys[b]!;
    return ka > kb || (ka === kb && this.vals[a]! < this.vals[b]!);
  }

  private swap(a: number, b: number): void {
    [this.keys[a], this.keys[b]] = [this.keys[b]!, this.keys[a]!];
    [this.vals[a], this.vals[b]] = [this.vals[b]!, this.vals[a]!];
  }
}

const score = (order: Order, c: Candidate): number => (order === 'ratio' ? ratio(c) : c.benefit);

function ordered(p: Problem, order: Order, vmIdx: number): readonly Candidate[] {
  const list = p.moves[vmIdx]!;
  if (order === 'ratio') return list; // buildProblem sorts by ratio already
  return [...list].sort((x, y) => y.benefit - x.benefit || x.to - y.to);
}

/**
 * Make room at `to` for candidate c by moving insensitive VMs out, if that is worth it: the evictions
 * must fit the budgets and the benefit left after their losses must stay positive.
 */
function makeRoom(r: Round, c: Candidate): boolean {
  const p = r.p;
  const s = p.snapshot;
  const vm = s.vms[c.vmIdx]!;
  const to = c.to;
  let lackV = vm.vcpu - (r.staticVcpu[to]! + r.freedVcpu[to]!);
  let lackM = vm.memoryMiB - (r.staticMem[to]! + r.freedMem[to]!);
  const plan: Candidate[] = [];
  let loss = 0;
  const siteUse = new Map<number, { v: number; m: number }>();
  const linkExtra = new Map<number, number>();
  for (const e of p.evictableAt[to]!) {
    if (lackV <= 1e-9 && lackM <= 1e-9) break;
    if (r.chosen[e] !== -1) continue;
    const ev = s.vms[e]!;
    if (plan.length + 2 > r.budgetLeft()) break; // this eviction and the move it makes room for
    for (const opt of p.evictions(e)) {
      const used = siteUse.get(opt.to) ?? { v: 0, m: 0 };
      // Evictions leave over links from `to`; one to c.from shares c's own link.
      const lk = opt.to;
      if (!r.linkLeft(to, opt.to, (linkExtra.get(lk) ?? 0) + (opt.to === c.from ? 1 : 0))) continue;
      if (!r.fits(e, opt.to, -used.v, -used.m)) continue;
      plan.push(opt);
      loss += opt.benefit;
      used.v += ev.vcpu;
      used.m += ev.memoryMiB;
      siteUse.set(opt.to, used);
      linkExtra.set(lk, (linkExtra.get(lk) ?? 0) + 1);
      lackV -= ev.vcpu;
      lackM -= ev.memoryMiB;
      break;
    }
  }
  if (lackV > 1e-9 || lackM > 1e-9) return false;
  if (c.benefit + loss <= 0) return false;
  if (plan.length + 1 > r.budgetLeft()) return false;
  const ids: VmId[] = [];
  for (const e of plan) {
    r.take(e, 'make-room');
    ids.push(s.vms[e.vmIdx]!.id);
  }
  r.take(c, 'closer-to-users', ids);
  return true;
}

function run(p: Problem, order: Order): { round: Round; failed: Map<number, Rejection['reason']> } {
  const r = new Round(p);
  const lists: (readonly Candidate[])[] = [];
  const pos = new Int32Array(p.snapshot.vms.length);
  const failed = new Map<number, Rejection['reason']>();
  const heap = new Heap();
  for (let i = 0; i < p.moves.length; i++) {
    lists.push(p.moves[i]!.length > 1 ? ordered(p, order, i) : p.moves[i]!);
    const first = lists[i]![0];
    if (first !== undefined) heap.push(score(order, first), i);
  }
  while (heap.size > 0 && r.budgetLeft() > 0) {
    const i = heap.pop()!;
    if (r.chosen[i] !== -1) continue; // moved out to make room meanwhile
    const c = lists[i]![pos[i]!]!;
    let ok = false;
    if (!r.linkLeft(c.from, c.to)) {
      failed.set(i, 'link-budget');
    } else if (r.fits(i, c.to)) {
      r.take(c, 'closer-to-users');
      ok = true;
    } else if (makeRoom(r, c)) {
      ok = true;
    } else {
      failed.set(i, 'no-capacity');
    }
    if (!ok) {
      pos[i] = pos[i]! + 1;
      const next = lists[i]![pos[i]];
      if (next !== undefined) heap.push(score(order, next), i);
    }
  }
  return { round: r, failed };
}

const fmt = (n: number): string => (Math.round(n * 10) / 10).toString();

export function toPlan(p: Problem, planner: Plan['planner'], picked: readonly Picked[],
  failed: ReadonlyMap<number, Rejection['reason']>, extra: { optimal?: boolean } = {}): Plan {
  const s = p.snapshot;
  const moved = new Set<number>();
  const moves: Move[] = picked.map(({ c, kind, after }) => {
    moved.add(c.vmIdx);
    const vm = s.vms[c.vmIdx]!;
    return {
      vm: vm.id, from: s.sites[c.from]!.id, to: s.sites[c.to]!.id, kind,
      benefit: c.benefit, savingMs: c.savingMs, costS: c.costS, bytes: c.bytes, postCopy: c.postCopy, after,
    };
  });
  const rejected: Rejection[] = [];
  for (let i = 0; i < s.vms.length; i++) {
    if (moved.has(i)) continue;
    const vm = s.vms[i]!;
    const why = p.why[i];
    if (why) {
      rejected.push({ vm: vm.id, reason: why.reason, detail: why.detail });
      continue;
    }
    const best = p.moves[i]![0]!;
    const reason = failed.get(i) ?? (moves.length >= p.params.maxMovesPerRound ? 'global-budget' : 'not-selected');
    const to = s.sites[best.to]!.id;
    const detail = {
      'no-capacity': `no site that would save ≥ ${p.params.minSavingMs} ms has room for ${vm.vcpu} vCPU / ${vm.memoryMiB} MiB (best: ${to})`,
      'link-budget': `the WAN link to ${to} already carries ${p.params.maxMovesPerLink} migrations this round`,
      'global-budget': `this round's ${p.params.maxMovesPerRound} migrations are taken by moves with more benefit (it would save ${fmt(best.savingMs)} ms at ${to})`,
    }[reason as string] ?? `moves with more benefit were chosen instead (it would save ${fmt(best.savingMs)} ms at ${to})`;
    rejected.push({ vm: vm.id, reason, detail });
  }
  const totalBenefit = moves.reduce((t, m) => t + m.benefit, 0);
  return { atMs: s.atMs, planner, moves, rejected, totalBenefit, ...extra };
}

/**
 * One planning round: moves taken by benefit per second of migration, under capacity, budgets,
 * cooldowns and thresholds; a second pass ordered by benefit alone guards against cheap moves using
 * up a count budget that fewer, larger gains would use better. The better of the two is the plan.
 * Pure: the same snapshot and params give the same plan.
 */
export function planMoves(snapshot: Snapshot, params: PlanParams): Plan {
  const p = buildProblem(snapshot, params);
  const a = run(p, 'ratio');
  const b = run(p, 'benefit');
  const best = b.round.total > a.round.total + 1e-9 ? b : a;
  return toPlan(p, 'greedy', best.round.picked, best.failed);
}
