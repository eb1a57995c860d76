// PURE: admission of queued migrations under global and per-link limits, with each link's migration
// bandwidth split between the migrations that cross it.
import type { LinkId, VmId } from '../core/ids.js';

export interface QueueLimits {
  /** Migrations in flight at once, over all links. */
  readonly maxConcurrent: number;
  /** Migrations in flight at once on one WAN link. */
  readonly maxPerLink: number;
  /** Fraction (0..1] of each link's spare bandwidth that migrations may use, split between the link's migrations. */
  readonly linkBandwidthShare: number;
  /** A migration is not started with less than this (Mbps); default 1. */
  readonly minCapMbps?: number;
}

export interface QueuedJob {
  readonly id: string;
  readonly vm: VmId;
  readonly planId: string;
  /** Submission order, the last tie-break. */
  readonly seq: number;
  readonly linkId: LinkId;
  readonly benefit: number;
  readonly costS: number;
  readonly bytes: number;
  /** VMs whose moves in the same plan must complete first. */
  readonly after: readonly VmId[];
}

export interface RunningJob {
  readonly id: string;
  readonly vm: VmId;
  readonly planId: string;
  readonly linkId: LinkId;
  readonly capMbps: number;
  /** Its driver can change the cap while it runs; if not, its cap is fixed until it ends. */
  readonly recappable: boolean;
}

/** A job of some plan that has ended; `ok` when it completed. */
export interface FinishedJob {
  readonly planId: string;
  readonly vm: VmId;
  readonly ok: boolean;
}

export interface AdmissionInput {
  readonly queued: readonly QueuedJob[];
  readonly running: readonly RunningJob[];
  readonly finished: readonly FinishedJob[];
  /** Spare bandwidth of each link (bandwidth less the foreground share), Mbps. A link not listed has none. */
  readonly spareMbps: ReadonlyMap<LinkId, number>;
  readonly limits: QueueLimits;
}

export type WaitReason = 'dependency' | 'global-limit' | 'link-limit' | 'vm-busy' | 'no-bandwidth';

export interface Admission {
  /** Start these now, in this order, each with its cap. */
  readonly start: readonly { readonly id: string; readonly capMbps: number }[];
  /** New caps for running, re-cappable jobs (their link's share re-split). Only those that change. */
  readonly recap: readonly { readonly id: string; readonly capMbps: number }[];
  readonly waiting: readonly { readonly id: string; readonly reason: WaitReason }[];
  /** Queued jobs that can never start: a dependency failed or is not part of their plan. */
  readonly drop: readonly { readonly id: string; readonly dependsOn: VmId; readonly reason: string }[];
}

/** Benefit per second of migration; a free move ranks by the sign of its benefit. */
export function ratio(benefit: number, costS: number): number {
  if (Number.isNaN(benefit) || Number.isNaN(costS)) return -Infinity;
  if (costS > 0) return benefit / costS;
  return benefit > 0 ? Infinity : benefit < 0 ? -Infinity : 0;
}

/**
 * Each queued job's priority: its own benefit/cost ratio, raised to that of the best job that waits for it
 * (directly or not) in the same plan — a make-room move has a negative benefit of its own, yet it must run
 * before the move it makes room for.
 */
export function effectiveRatios(queued: readonly QueuedJob[]): Map<string, number> {
  const byPlanVm = new Map<string, QueuedJob>();
  for (const q of queued) byPlanVm.set(`${q.planId}\u0000${q.vm}`, q);
  const eff = new Map<string, number>(queued.map((q) => [q.id, ratio(q.benefit, q.costS)]));
  // Relax along `after` edges; a chain is at most |queued| long, so |queued| passes settle it even with cycles.
  for (let pass = 0; pass < queued.length; pass++) {
    let moved = false;
    for (const q of queued) {
      const mine = eff.get(q.id)!;
      for (const dep of q.after) {
        const d = byPlanVm.get(`${q.planId}\u0000${dep}`);
        if (d !== undefined && eff.get(d.id)! < mine) {
          eff.set(d.id, mine);
          moved = true;
        }
      }
    }
    if (!moved) break;
  }
  return eff;
}

/** The queued jobs a newer plan supersedes: every one proposed by another plan. */
export function supersededBy(queued: readonly QueuedJob[], planId: string): string[] {
  return queued.filter((q) => q.planId !== planId).map((q) => q.id);
}

/**
 * Which queued jobs start now, and the bandwidth cap each gets. Highest effective benefit/cost first among
 * those whose dependencies have completed; a job blocked by its own link (or VM) does not hold up jobs on other
 * links, but once the global limit is reached nothing more starts. Each link's share (spare × linkBandwidthShare)
 * is split evenly between its re-cappable migrations after the fixed caps are taken off, so the caps on a link
 * never sum to more than its share.
 */
export function admit(input: AdmissionInput): Admission {
  const { limits } = input;
  const minCap = limits.minCapMbps ?? 1;
  const share = (link: LinkId): number => Math.max(0, (input.spareMbps.get(link) ?? 0) * clamp01(limits.linkBandwidthShare));

  const finished = new Map<string, boolean>();
  for (const f of input.finished) {
    const k = `${f.planId}\u0000${f.vm}`;
    // A VM that failed once in a plan and completed later (re-submitted under the same id) counts as completed.
    finished.set(k, (finished.get(k) ?? false) || f.ok);
  }
  const inPlan = new Set<string>();
  for (const j of [...input.queued, ...input.running]) inPlan.add(`${j.planId}\u0000${j.vm}`);

  const busyVms = new Set<VmId>(input.running.map((r) => r.vm));
  const perLink = new Map<LinkId, { count: number; fixed: number; flexible: string[] }>();
  const linkOf = (id: LinkId): { count: number; fixed: number; flexible: string[] } => {
    let l = perLink.get(id);
    if (l === undefined) perLink.set(id, (l = { count: 0, fixed: 0, flexible: [] }));
    return l;
  };
  for (const r of input.running) {
    const l = linkOf(r.linkId);
    l.count++;
    if (r.recappable) l.flexible.push(r.id);
    else l.fixed += Math.max(0, r.capMbps);
  }
  let inFlight = input.running.length;

  const eff = effectiveRatios(input.queued);
  const drop: { id: string; dependsOn: VmId; reason: string }[] = [];
  const waiting: { id: string; reason: WaitReason }[] = [];
  const eligible: QueuedJob[] = [];
  for (const q of input.queued) {
    let blocked = false;
    let dropped: { dependsOn: VmId; reason: string } | null = null;
    for (const dep of q.after) {
      const k = `${q.planId}\u0000${dep}`;
      const f = finished.get(k);
      if (f === true) continue;
      if (f === false && !inPlan.has(k)) dropped = { dependsOn: dep, reason: `the move of ${dep} it waits for did not complete` };
      else if (f === undefined && !inPlan.has(k)) dropped = { dependsOn: dep, reason: `it waits for ${dep}, which plan ${q.planId} does not move` };
      else blocked = true;
      if (dropped !== null) break;
    }
    if (dropped !== null) drop.push({ id: q.id, ...dropped });
    else if (blocked) waiting.push({ id: q.id, reason: 'dependency' });
    else eligible.push(q);
  }
  eligible.sort((a, b) => eff.get(b.id)! - eff.get(a.id)! || a.seq - b.seq || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  const started: { id: string; link: LinkId }[] = [];
  let full = false;
  for (const q of eligible) {
    if (full || inFlight >= limits.maxConcurrent) {
      full = true;
      waiting.push({ id: q.id, reason: 'global-limit' });
      continue;
    }
    if (busyVms.has(q.vm)) {
      waiting.push({ id: q.id, reason: 'vm-busy' });
      continue;
    }
    const l = linkOf(q.linkId);
    if (l.count >= limits.maxPerLink) {
      waiting.push({ id: q.id, reason: 'link-limit' });
      continue;
    }
    if ((share(q.linkId) - l.fixed) / (l.flexible.length + 1) < minCap) {
      waiting.push({ id: q.id, reason: 'no-bandwidth' });
      continue;
    }
    l.count++;
    l.flexible.push(q.id);
    busyVms.add(q.vm);
    inFlight++;
    started.push({ id: q.id, link: q.linkId });
  }

  const capOf = new Map<string, number>();
  for (const [link, l] of perLink) {
    if (l.flexible.length === 0) continue;
    const each = Math.max(0, share(link) - l.fixed) / l.flexible.length;
    for (const id of l.flexible) capOf.set(id, each);
  }
  const recap = input.running
    .filter((r) => r.recappable && Math.abs((capOf.get(r.id) ?? r.capMbps) - r.capMbps) > 1e-9)
    .map((r) => ({ id: r.id, capMbps: capOf.get(r.id)! }));
  return { start: started.map((s) => ({ id: s.id, capMbps: capOf.get(s.id)! })), recap, waiting, drop };
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}
