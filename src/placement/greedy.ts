import { BinaryHeap } from '../core/heap.js';
import type { VmId } from '../core/ids.js';
import type { Snapshot } from '../core/model.js';
import { buildProblem, ratio, type Candidate, type Problem } from './candidates.js';
import type { PlanParams } from './params.js';
import type { Move, Plan, Rejection } from './plan.js';

type Order = 'ratio' | 'benefit';

export interface Mode {
  readonly order: Order;
  readonly patient: boolean;
}

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

interface Entry {
  readonly key: number;
  readonly vm: number;
  /** Position in the VM's candidate list. */
  readonly pos: number;
  /** This entry takes the candidate with make-room moves; its key is the net benefit's score. */
  readonly roomy: boolean;
}

/** Candidate entries come out best first; ties go to the lower VM index, then the earlier candidate. */
function before(x: Entry, y: Entry): boolean {
  return x.key > y.key || (x.key === y.key && (x.vm < y.vm || (x.vm === y.vm && (x.pos < y.pos || (x.pos === y.pos && !x.roomy && y.roomy)))));
}

const score = (order: Order, c: Candidate, benefit = c.benefit): number =>
  (order === 'ratio' ? ratio(c, benefit) : benefit);

function ordered(p: Problem, order: Order, vmIdx: number): readonly Candidate[] {
  return order === 'ratio' ? p.moves[vmIdx]! : p.byBenefit(vmIdx); // p.moves is sorted by ratio already
}

interface Pass {
  readonly round: Round;
  readonly failed: Map<number, Rejection['reason']>;
  readonly mode?: Mode;
}

interface RoomPlan {
  readonly evictions: readonly Candidate[];
  /** The candidate's benefit less the evicted VMs' losses. */
  readonly net: number;
}

/**
 * How room could be made at c's destination by moving insensitive VMs out: which, to where, and what
 * is left of c's benefit after their losses. Null if it cannot be done within capacity and budgets,
 * or would leave nothing. Changes nothing.
 */
function planRoom(r: Round, c: Candidate): RoomPlan | null {
  const p = r.p;
  const s = p.snapshot;
  const vm = s.vms[c.vmIdx]!;
  const to = c.to;
  let lackV = vm.vcpu - (r.staticVcpu[to]! + r.freedVcpu[to]!);
  let lackM = vm.memoryMiB - (r.staticMem[to]! + r.freedMem[to]!);
  const evictions: Candidate[] = [];
  let net = c.benefit;
  const siteUse = new Map<number, { v: number; m: number }>();
  const linkExtra = new Map<number, number>();
  // Least harm first: evictable VMs ordered by the loss of their best way out, larger ones first on ties.
  const order: { e: number; loss: number }[] = [];
  for (const e of p.evictableAt[to]!) {
    if (r.chosen[e] !== -1) continue;
    const opt = p.evictions(e).find((o) => r.fits(e, o.to));
    if (opt !== undefined) order.push({ e, loss: opt.benefit });
  }
  order.sort((a, b) => b.loss - a.loss || s.vms[b.e]!.memoryMiB - s.vms[a.e]!.memoryMiB || a.e - b.e);
  for (const { e } of order) {
    if (lackV <= 1e-9 && lackM <= 1e-9) break;
    const ev = s.vms[e]!;
    if (evictions.length + 2 > r.budgetLeft()) break; // this eviction and the move it makes room for
    for (const opt of p.evictions(e)) {
      if (net + opt.benefit <= 0) break; // options are sorted by benefit: the rest lose more
      const used = siteUse.get(opt.to) ?? { v: 0, m: 0 };
      // Evictions leave over links from `to`; one to c.from shares c's own link.
      if (!r.linkLeft(to, opt.to, (linkExtra.get(opt.to) ?? 0) + (opt.to === c.from ? 1 : 0))) continue;
      if (!r.fits(e, opt.to, -used.v, -used.m)) continue;
      evictions.push(opt);
      net += opt.benefit;
      used.v += ev.vcpu;
      used.m += ev.memoryMiB;
      siteUse.set(opt.to, used);
      linkExtra.set(opt.to, (linkExtra.get(opt.to) ?? 0) + 1);
      lackV -= ev.vcpu;
      lackM -= ev.memoryMiB;
      break;
    }
  }
  if (lackV > 1e-9 || lackM > 1e-9 || net <= 0 || evictions.length + 1 > r.budgetLeft()) return null;
  return { evictions, net };
}

function takeWithRoom(r: Round, c: Candidate, room: RoomPlan): void {
  const ids: VmId[] = [];
  for (const e of room.evictions) {
    r.take(e, 'make-room');
    ids.push(r.p.snapshot.vms[e.vmIdx]!.id);
  }
  r.take(c, 'closer-to-users', ids);
}

/**
 * One greedy pass. Each VM offers its candidates best first; a candidate that does not fit is offered
 * again with make-room moves at its net benefit, and again as it is whenever a chosen move frees room at
 * its destination, while the VM's next candidate competes too.
 */
/**
 * A patient pass lets a VM that could reach its site by making room wait for that (after every move that
 * needs no eviction, which may free the room anyway) instead of settling for its next site at once.
 */
const PATIENCE = 1e9;

export function run(p: Problem, mode: Mode, forced: readonly Candidate[] = [], defer: ReadonlySet<number> = new Set()): Pass {
  const { order, patient } = mode;
  const r = new Round(p);
  const lists: (readonly Candidate[])[] = [];
  const failed = new Map<number, Rejection['reason']>();
  const parked: { vm: number; pos: number }[][] = p.snapshot.sites.map(() => []);
  const heap = new BinaryHeap<Entry>(before);
  // A deferred VM evicts others only after the moves that might free room for it without evictions.
  const roomyKey = (vm: number, c: Candidate, net: number): number =>
    score(order, c, net) * (defer.has(vm) ? 0.25 : 1) - (patient ? PATIENCE : 0);
  const offer = (vm: number, pos: number): void => {
    const c = lists[vm]![pos];
    if (c !== undefined) heap.push({ key: score(order, c), vm, pos, roomy: false });
  };
  const take = (fn: () => void): void => {
    const before = r.picked.length;
    fn();
    // Room freed at the sources of what was just taken: offer the candidates parked there again.
    for (const { c } of r.picked.slice(before)) {
      const waiting = parked[c.from]!;
      parked[c.from] = [];
      for (const w of waiting) if (r.chosen[w.vm] === -1) offer(w.vm, w.pos);
    }
  };
  for (let i = 0; i < p.moves.length; i++) lists.push(ordered(p, order, i));
  // Moves the improvement search wants tried first.
  for (const c of forced) {
    if (r.chosen[c.vmIdx] !== -1 || r.budgetLeft() <= 0 || !r.linkLeft(c.from, c.to)) continue;
    if (r.fits(c.vmIdx, c.to)) {
      take(() => r.take(c, 'closer-to-users'));
    } else {
      const room = planRoom(r, c);
      if (room !== null) take(() => takeWithRoom(r, c, room));
    }
  }
  for (let i = 0; i < p.moves.length; i++) if (r.chosen[i] === -1) offer(i, 0);
  while (heap.size > 0 && r.budgetLeft() > 0) {
    const e = heap.pop()!;
    if (r.chosen[e.vm] !== -1) continue; // moved already, or moved out to make room
    const c = lists[e.vm]![e.pos]!;
    if (!r.linkLeft(c.from, c.to)) {
      failed.set(e.vm, 'link-budget');
      if (!e.roomy) offer(e.vm, e.pos + 1);
      continue;
    }
    if (r.fits(e.vm, c.to)) {
      take(() => r.take(c, 'closer-to-users'));
      continue;
    }
    const room = planRoom(r, c);
    if (e.roomy) {
      if (room !== null) {
        // Still as good as when it was offered: take it; if worse now, offer it at its new worth.
        const key = roomyKey(e.vm, c, room.net);
        if (key >= e.key - 1e-9) take(() => takeWithRoom(r, c, room));
        else heap.push({ key, vm: e.vm, pos: e.pos, roomy: true });
      } else if (patient) {
        offer(e.vm, e.pos + 1); // waited in vain: the next site after all
      }
      continue;
    }
    failed.set(e.vm, 'no-capacity');
    if (room !== null) heap.push({ key: roomyKey(e.vm, c, room.net), vm: e.vm, pos: e.pos, roomy: true });
    parked[c.to]!.push({ vm: e.vm, pos: e.pos });
    // Patience only while making room here would still beat the VM's next site.
    const next = lists[e.vm]![e.pos + 1];
    const worthWaiting = patient && room !== null && (next === undefined || score(order, c, room.net) >= score(order, next));
    if (!worthWaiting) offer(e.vm, e.pos + 1);
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
  const modes: Mode[] = [
    { order: 'ratio', patient: false }, { order: 'benefit', patient: false },
    { order: 'ratio', patient: true }, { order: 'benefit', patient: true },
  ];
  const best = improve(p, modes.map((m) => ({ ...run(p, m), mode: m })));
  return toPlan(p, 'greedy', best.round.picked, best.failed);
}

/**
 * Bounds of the improvement search per plan: at most this many trial passes, and at most this many
 * candidate moves looked at over all trials together, so a large cloud gets few trials and stays fast.
 */
const IMPROVE_TRIALS = 48;
const IMPROVE_WORK = 400_000;

/**
 * Local improvement: a greedy pass can spend room or budget early on a move that blocks a better
 * combination. For the VMs that did not get their best site, or got it only by evicting others, try a
 * pass that takes that VM's best move first; keep any pass that raises the total. Bounded in trials.
 */
function improve(p: Problem, passes: Pass[]): Pass {
  let best = passes.reduce((a, b) => (b.round.total > a.round.total + 1e-9 ? b : a));
  const bestOf = (i: number): Candidate | undefined => {
    let top: Candidate | undefined;
    for (const c of p.moves[i]!) if (top === undefined || c.benefit > top.benefit) top = c;
    return top;
  };
  let forced: Candidate[] = [];
  let deferred: ReadonlySet<number> = new Set();
  let trials = 0;
  const candidates = p.moves.reduce((t, l) => t + l.length, 0);
  const maxTrials = Math.min(IMPROVE_TRIALS, Math.floor(IMPROVE_WORK / Math.max(1, candidates)));
  for (let sweep = 0; sweep < 2 && trials < maxTrials; sweep++) {
    const got = new Map<number, Picked>(best.round.picked.map((x) => [x.c.vmIdx, x]));
    const targets: { c: Candidate; gap: number }[] = [];
    for (let i = 0; i < p.moves.length; i++) {
      const top = bestOf(i);
      if (top === undefined) continue;
      const mine = got.get(i);
      const gap = top.benefit - (mine?.c.benefit ?? 0);
      if (gap > 1e-9 || (mine !== undefined && mine.after.length > 0)) targets.push(gap > 1e-9 ? { c: top, gap } : { c: mine!.c, gap: top.benefit * 1e-3 });
    }
    targets.sort((a, b) => b.gap - a.gap || a.c.vmIdx - b.c.vmIdx);
    let improved = false;
    for (const { c } of targets) {
      if (trials >= maxTrials) break;
      const evicts = (got.get(c.vmIdx)?.after.length ?? 0) > 0;
      for (const order of ['benefit', 'ratio'] as const) {
        trials++;
        const mode: Mode = { order, patient: best.mode?.patient ?? false };
        // A VM that evicted others: try letting it wait for room instead. Otherwise: try it first.
        const nextDefer = evicts ? new Set([...deferred, c.vmIdx]) : deferred;
        const t = { ...(evicts ? run(p, mode, forced, nextDefer) : run(p, mode, [...forced, c], deferred)), mode };
        if (t.round.total > best.round.total + 1e-9) {
          best = t;
          if (evicts) deferred = nextDefer;
          else forced = [...forced, c];
          improved = true;
          break;
        }
      }
    }
    if (!improved) break;
  }
  return best;
}
