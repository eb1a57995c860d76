import type { VmId } from '../core/ids.js';
import { diskToCopyGiB, type Snapshot, type Vm } from '../core/model.js';
import { estimateMigration, spareMbps, type CostEstimate } from './cost.js';
import { cooldownMs, type PlanParams } from './params.js';
import type { RejectReason } from './plan.js';

/** One way a VM could move: where, what it gains, what it costs. */
export interface Candidate {
  readonly vmIdx: number;
  readonly from: number;
  readonly to: number;
  readonly benefit: number;
  readonly savingMs: number;
  readonly costS: number;
  readonly bytes: number;
  readonly postCopy: boolean;
}

/**
 * What the planners work from: per VM either its candidate moves (best benefit/cost first) or why it
 * has none; the VMs that may be moved out to make room, with where they could go; and the free capacity
 * and budgets. Both the greedy planner and the ILP build on this, so they solve the same problem.
 */
export interface Problem {
  readonly snapshot: Snapshot;
  readonly params: PlanParams;
  /** Per VM: candidate moves for its users' sake, sorted by benefit/cost, best first. */
  readonly moves: readonly (readonly Candidate[])[];
  /** Per site: the VMs there that may be moved out to make room. */
  readonly evictableAt: readonly (readonly number[])[];
  /** Make-room moves of an evictable VM, least harm to its users first (computed on first use). */
  evictions(vmIdx: number): readonly Candidate[];
  /** Per VM: its candidate moves, largest benefit first (computed on first use). */
  byBenefit(vmIdx: number): readonly Candidate[];
  /** Per VM without candidates: why. */
  readonly why: readonly (Why | null)[];
  readonly freeVcpu: Float64Array;
  readonly freeMemoryMiB: Float64Array;
}

export interface Why {
  readonly reason: RejectReason;
  readonly detail: string;
}

const fmt = (n: number): string => (Math.round(n * 10) / 10).toString();

/** Share-weighted RTT of a VM's users to site j, or null if any user's RTT there is unknown. */
export function usersRttMs(s: Snapshot, vm: Vm, j: number): number | null {
  let total = 0;
  for (const u of vm.users) {
    const r = s.users[s.userIndex.get(u.userId)!]!.rttMs[j];
    if (r === null || r === undefined) return null;
    total += u.share * r;
  }
  return total;
}

export function buildProblem(s: Snapshot, params: PlanParams): Problem {
  const nSites = s.sites.length;
  const pinned = new Set<VmId>(params.pinned);
  const excluded = new Set<VmId>(params.excluded);
  const freeVcpu = new Float64Array(nSites);
  const freeMemoryMiB = new Float64Array(nSites);
  s.sites.forEach((site, j) => {
    freeVcpu[j] = site.capacity.vcpu;
    freeMemoryMiB[j] = site.capacity.memoryMiB;
  });
  for (const vm of s.vms) {
    const j = s.siteIndex.get(vm.siteId)!;
    freeVcpu[j]! -= vm.vcpu;
    freeMemoryMiB[j]! -= vm.memoryMiB;
  }
  // Links by site index pair, so the hot loop does no string work.
  const spare = new Float64Array(nSites * nSites).fill(-1);
  for (const l of s.links) {
    const a = s.siteIndex.get(l.a)!;
    const b = s.siteIndex.get(l.b)!;
    spare[a * nSites + b] = spareMbps(l);
    spare[b * nSites + a] = spareMbps(l);
  }
  const limits = { maxDowntimeMs: params.maxDowntimeMs, maxRounds: params.maxPrecopyRounds, postCopyAllowed: params.postCopy === 'allow' };
  const userRtt = new Float64Array(nSites);

  const moves: Candidate[][] = [];
  const evictableAt: number[][] = s.sites.map(() => []);
  const evictionCache = new Map<number, Candidate[]>();
  const why: (Why | null)[] = [];

  // Most destinations of one VM share a link speed and a disk delta: remember the last estimate.
  let memo: { vm: Vm; mbps: number; diskGiB: number; cost: CostEstimate } | null = null;
  const estimate = (vm: Vm, from: number, to: number): CostEstimate | null => {
    const mbps = spare[from * nSites + to]!;
    if (mbps < 0) return null;
    const diskGiB = diskToCopyGiB(vm, s.sites[to]!.id);
    if (memo !== null && memo.vm === vm && memo.mbps === mbps && memo.diskGiB === diskGiB) return memo.cost;
    const cost = estimateMigration(
      { memoryMiB: vm.memoryMiB, workingSetMiB: vm.workingSetMiB, dirtyRateMiBps: vm.dirtyRateMiBps, diskGiB },
      mbps, limits,
    );
    memo = { vm, mbps, diskGiB, cost };
    return cost;
  };

  const evictions = (i: number): readonly Candidate[] => {
    const cached = evictionCache.get(i);
    if (cached !== undefined) return cached;
    const vm = s.vms[i]!;
    const from = s.siteIndex.get(vm.siteId)!;
    const here = usersRttMs(s, vm, from);
    const list: Candidate[] = [];
    for (let j = 0; j < nSites; j++) {
      if (j === from) continue;
      const cost = estimate(vm, from, j);
      if (cost === null || cost.seconds > params.maxCostS) continue;
      if (!cost.converges && params.postCopy === 'reject') continue;
      const there = usersRttMs(s, vm, j);
      const saving = here !== null && there !== null ? here - there : 0;
      // A make-room move never counts a gain (it is not made for one), only its users' loss and a toll.
      // The loss is weighed as if the VM were at least evictionRttWeight sensitive: an idle desktop is
      // idle only for now, and throwing it across the world would cost its user later.
      const benefit = -Math.max(vm.sensitivity, params.evictionRttWeight) * Math.max(0, -saving) - params.evictionPenalty;
      list.push({ vmIdx: i, from, to: j, benefit, savingMs: saving, costS: cost.seconds, bytes: cost.bytes, postCopy: cost.postCopy });
    }
    // Least harm to its users first, then the cheapest move.
    list.sort((x, y) => y.benefit - x.benefit || x.costS - y.costS || x.to - y.to);
    evictionCache.set(i, list);
    return list;
  };

  for (let i = 0; i < s.vms.length; i++) {
    const vm = s.vms[i]!;
    const from = s.siteIndex.get(vm.siteId)!;
    const list: Candidate[] = [];
    moves.push(list);
    const blocked = staticReason(s, vm, params, pinned, excluded);
    if (blocked !== null) {
      why.push(blocked);
      continue;
    }
    if (vm.sensitivity <= params.evictableMaxSensitivity) evictableAt[from]!.push(i);
    if (vm.users.length === 0) {
      why.push({ reason: 'no-users', detail: 'no users seen' });
      continue;
    }
    if (vm.sensitivity < params.minSensitivity) {
      why.push({ reason: 'insensitive', detail: `sensitivity ${fmt(vm.sensitivity)} is below ${params.minSensitivity}` });
      continue;
    }
    // Users' share-weighted RTT to every site, once (NaN where any user's RTT is unknown).
    userRtt.fill(0);
    for (const u of vm.users) {
      const row = s.users[s.userIndex.get(u.userId)!]!.rttMs;
      for (let j = 0; j < nSites; j++) {
        const r = row[j];
        userRtt[j] = r === null || r === undefined ? NaN : userRtt[j]! + u.share * r;
      }
    }
    if (Number.isNaN(userRtt[from]!)) {
      why.push({ reason: 'rtt-unknown', detail: `no RTT from its users to its current site ${vm.siteId}` });
      continue;
    }
    let bestSaving = -Infinity;
    let bestSite = from;
    let lastCostReason: Why | null = null;
    for (let j = 0; j < nSites; j++) {
      if (j === from) continue;
      const r = userRtt[j]!;
      if (Number.isNaN(r)) continue;
      const saving = userRtt[from]! - r;
      if (saving > bestSaving) {
        bestSaving = saving;
        bestSite = j;
      }
      // A move must gain something even when minSavingMs is 0: a tie is not worth a migration.
      if (saving < params.minSavingMs || saving <= 0) continue;
      const cost = estimate(vm, from, j);
      if (cost === null) {
        lastCostReason = { reason: 'no-link', detail: `no WAN link from ${vm.siteId} to ${s.sites[j]!.id}` };
        continue;
      }
      if (!cost.converges && params.postCopy === 'reject') {
        lastCostReason = {
          reason: 'does-not-converge',
          detail: `pre-copy to ${s.sites[j]!.id} would not converge: dirties ${fmt(vm.dirtyRateMiBps)} MiB/s over ${fmt(spare[from * nSites + j]!)} Mbit/s spare, and post-copy is not allowed`,
        };
        continue;
      }
      if (cost.seconds > params.maxCostS) {
        lastCostReason = {
          reason: 'too-costly',
          detail: `moving to ${s.sites[j]!.id} would take ${fmt(cost.seconds)} s, over the ${params.maxCostS} s limit`,
        };
        continue;
      }
      if (vm.sensitivity * saving < params.minBenefitPerCostS * cost.seconds) {
        lastCostReason = {
          reason: 'too-costly',
          detail: `moving to ${s.sites[j]!.id} gains ${fmt(vm.sensitivity * saving)} for ${fmt(cost.seconds)} s of migration, below ${params.minBenefitPerCostS} per second`,
        };
        continue;
      }
      list.push({
        vmIdx: i, from, to: j, benefit: vm.sensitivity * saving, savingMs: saving,
        costS: cost.seconds, bytes: cost.bytes, postCopy: cost.postCopy,
      });
    }
    if (list.length > 0) {
      list.sort(byRatio);
      why.push(null);
    } else if (lastCostReason !== null) {
      why.push(lastCostReason);
    } else if (bestSaving <= 0) {
      why.push({ reason: 'already-best', detail: `already at the site nearest its users (${vm.siteId}, ${fmt(userRtt[from]!)} ms)` });
    } else {
      why.push({
        reason: 'below-min-saving',
        detail: `best site ${s.sites[bestSite]!.id} saves ${fmt(bestSaving)} ms, below the ${params.minSavingMs} ms minimum`,
      });
    }
  }
  const benefitCache = new Map<number, readonly Candidate[]>();
  const byBenefit = (i: number): readonly Candidate[] => {
    const list = moves[i]!;
    if (list.length < 2) return list;
    let sorted = benefitCache.get(i);
    if (sorted === undefined) {
      sorted = [...list].sort((x, y) => y.benefit - x.benefit || x.to - y.to);
      benefitCache.set(i, sorted);
    }
    return sorted;
  };
  return { snapshot: s, params, moves, evictableAt, evictions, byBenefit, why, freeVcpu, freeMemoryMiB };
}

function staticReason(s: Snapshot, vm: Vm, params: PlanParams, pinned: Set<VmId>, excluded: Set<VmId>): Why | null {
  if (vm.pinned || pinned.has(vm.id)) return { reason: 'pinned', detail: `pinned to ${vm.siteId}` };
  if (vm.excluded || excluded.has(vm.id)) return { reason: 'excluded', detail: 'excluded from placement' };
  if (vm.lastMovedAtMs !== null) {
    const until = vm.lastMovedAtMs + cooldownMs(params, vm.recentMoves);
    if (s.atMs < until) {
      return {
        reason: 'cooling-down',
        detail: `moved ${fmt((s.atMs - vm.lastMovedAtMs) / 1000)} s ago (move ${vm.recentMoves} of its streak); may move again in ${fmt((until - s.atMs) / 1000)} s`,
      };
    }
  }
  return null;
}

/** Best benefit per second of migration first; ties by benefit, then by site index for determinism. */
export function byRatio(x: Candidate, y: Candidate): number {
  return ratio(y) - ratio(x) || y.benefit - x.benefit || x.to - y.to;
}

/** Benefit per second of migration; `benefit` overrides the candidate's own (a make-room move's net). */
export function ratio(c: Candidate, benefit = c.benefit): number {
  return benefit / Math.max(c.costS, 1e-3);
}
