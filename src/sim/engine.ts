import { AppError } from '../core/errors.js';
import { BinaryHeap } from '../core/heap.js';
import type { LinkId, SiteId, VmId } from '../core/ids.js';
import { linkIdOf } from '../core/ids.js';
import { createSnapshot, type Link, type Snapshot } from '../core/model.js';
import type { MigrationOutcome, MigrationPolicy, MigrationRequest, StallAction } from '../migration/driver.js';
import { admit, supersededBy, type FinishedJob, type QueueLimits, type QueuedJob } from '../migration/queue.js';
import { createSimDriver, SimWorld, startSimMigration, type SimMigrationEvent, type SimMigrationHandle } from '../migration/sim-driver.js';
import { planNearest } from '../placement/baselines.js';
import { spareMbps } from '../placement/cost.js';
import { planMoves } from '../placement/greedy.js';
import { planMovesIlp, type LpSolver } from '../placement/ilp.js';
import type { Move, Plan } from '../placement/plan.js';
import type { Scenario, ScenarioEvent } from './scenario.js';
import { VirtualClock, VirtualTimers } from './virtual-clock.js';

export const POLICIES = ['never', 'nearest', 'greedy', 'ilp'] as const;
export type PolicyName = (typeof POLICIES)[number];

export interface SimOptions {
  readonly policy: PolicyName;
  /** Needed for the 'ilp' policy. */
  readonly solver?: LpSolver;
  /** Keep every VM's users' RTT at every round (for plots and --timeline). */
  readonly recordSeries?: boolean;
  readonly onProgress?: (fraction: number) => void;
  /** A real clock to time the planner with (benchmarks); without it planMs is 0 and runs repeat exactly. */
  readonly timer?: () => number;
}

/** One migration as the simulated driver ran it: every field comes from the driver's outcome. */
export interface MigrationRecord {
  readonly vm: VmId;
  readonly from: SiteId;
  readonly to: SiteId;
  readonly kind: Move['kind'];
  readonly startS: number;
  readonly endS: number;
  /** The driver's status: 'aborted' (by its policy: a stall, the deadline) or 'failed' (a link cut, a VM gone). */
  readonly outcome: 'completed' | 'aborted' | 'failed';
  readonly bytes: number;
  readonly downtimeMs: number;
  readonly postCopy: boolean;
  /** Pre-copy passes before the stop-and-copy. */
  readonly rounds: number;
  /** Why a migration did not complete, as the driver said it. */
  readonly reason?: string;
  /** Stall actions the driver took, in order (absent when none). */
  readonly stallActions?: readonly StallAction[];
}

export interface PolicyResult {
  readonly policy: PolicyName;
  readonly rounds: number;
  /** Mean over every (VM with users, round) of its users' share-weighted RTT to the VM's site. */
  readonly meanUserRttMs: number;
  /** The same, weighted by each VM's sensitivity at the time: the latency users actually feel. */
  readonly sensitiveUserRttMs: number;
  readonly p95SensitiveUserRttMs: number;
  /** What sensitiveUserRttMs would be if every VM always sat at its users' nearest site. */
  readonly idealSensitiveUserRttMs: number;
  readonly migrations: {
    readonly planned: number; readonly started: number; readonly completed: number;
    /** Started and ended without moving the VM (driver status aborted or failed). */
    readonly aborted: number;
    /** Of the aborted: those the driver reported failed (a link cut, the VM gone). */
    readonly failed: number;
    readonly postCopy: number; readonly superseded: number;
    /** Planned moves found no longer possible when their turn came (re-checked against fresh state). */
    readonly dropped: number;
  };
  readonly bytesMoved: number;
  readonly migrationSeconds: number;
  readonly meanDowntimeMs: number;
  readonly maxDowntimeMs: number;
  readonly arrivals: { readonly placed: number; readonly redirected: number; readonly refused: number };
  readonly planMs: number;
  readonly log: readonly MigrationRecord[];
  readonly series?: Readonly<Record<string, readonly number[]>>;
}

type VmJson = Record<string, unknown> & { id: string; siteId: string; vcpu: number; memoryMiB: number };
type UserJson = Record<string, unknown> & { id: string; rttMs: (number | null)[] };

/** A planned move waiting for admission: a queued job of its plan. */
interface Pending {
  readonly id: string;
  readonly planId: string;
  readonly seq: number;
  readonly linkId: LinkId;
  readonly move: Move;
}

/** A move the simulated driver is running. */
interface Migration {
  readonly id: string;
  readonly planId: string;
  readonly move: Move;
  readonly vm: VmJson;
  readonly linkId: LinkId;
  readonly req: MigrationRequest;
  readonly handle: SimMigrationHandle;
  capMbps: number;
  /** The driver reported post-copy: the guest runs at the destination from then on. */
  switched: boolean;
}

/** How often the simulated driver reports progress; phase changes are reported whenever they happen. */
const PROGRESS_INTERVAL_MS = 10_000;
const DEFAULT_STALL_TIMEOUT_S = 30;

/** Timed events, earliest first; ties keep insertion order so runs are deterministic. */
class Agenda<T> {
  private readonly heap = new BinaryHeap<{ t: number; seq: number; v: T }>((x, y) => x.t < y.t || (x.t === y.t && x.seq < y.seq));
  private seq = 0;

  get size(): number {
    return this.heap.size;
  }

  peekTime(): number {
    return this.heap.peek()?.t ?? Infinity;
  }

  push(t: number, v: T): void {
    this.heap.push({ t, seq: this.seq++, v });
  }

  pop(): T | undefined {
    return this.heap.pop()?.v;
  }
}

type Tick = { kind: 'round' } | { kind: 'event'; e: ScenarioEvent };

/** Weighted RTT samples kept as running sums and a 0.1 ms histogram: memory does not grow with the run. */
class RttStats {
  private static readonly BIN_MS = 0.1;
  private static readonly BINS = 30_001; // up to 3 s; beyond lands in the last bin
  private readonly hist = new Float64Array(RttStats.BINS);
  n = 0;
  sumRtt = 0;
  sumSens = 0;
  sumSensRtt = 0;
  sumSensIdeal = 0;

  add(rtt: number, sens: number, ideal: number): void {
    this.n++;
    this.sumRtt += rtt;
    this.sumSens += sens;
    this.sumSensRtt += sens * rtt;
    this.sumSensIdeal += sens * ideal;
    if (sens > 0) this.hist[Math.min(RttStats.BINS - 1, Math.floor(rtt / RttStats.BIN_MS))]! += sens;
  }

  /** The sensitivity-weighted q-quantile, to the histogram's resolution. */
  quantile(q: number): number {
    let acc = 0;
    for (let i = 0; i < RttStats.BINS; i++) {
      acc += this.hist[i]!;
      if (acc > 0 && acc >= q * this.sumSens - 1e-9) return Math.round(i * RttStats.BIN_MS * 10) / 10;
    }
    return 0;
  }
}

/** The policy every migration of a scenario runs under: its `migration` settings over the planner's params. */
export function simMigrationPolicy(sc: Pick<Scenario, 'params' | 'migration'>): MigrationPolicy {
  const { params } = sc;
  const mig = sc.migration ?? {};
  return {
    maxDowntimeMs: params.maxDowntimeMs,
    maxDowntimeCeilingMs: Math.max(params.maxDowntimeMs, mig.maxDowntimeCeilingMs ?? params.maxDowntimeMs),
    postCopyAllowed: params.postCopy === 'allow',
    stallTimeoutMs: (mig.stallTimeoutS ?? DEFAULT_STALL_TIMEOUT_S) * 1000,
    onStall: mig.onStall ?? ['post-copy', 'abort'],
    tls: true,
    deadlineMs: (mig.deadlineS ?? 2 * params.maxCostS) * 1000,
  };
}

/**
 * Runs a scenario on a virtual clock under one policy. Planning rounds call the production planner; each
 * round's plan is admitted as the executor admits jobs (queue.ts: per-link limits, the link's bandwidth split
 * between its migrations, priority by benefit/cost, `after` dependencies, a newer plan superseding queued
 * moves), re-checked against fresh state, and run by the simulated MigrationDriver on the same virtual clock:
 * what the engine knows of a migration is what the driver reports (its progress snapshots and its outcome).
 * The executor itself is not used: it is asynchronous throughout (a persisted store, promise chains), and
 * simulate() is synchronous; its pure admission is. Nothing here reads a real clock or draws a random number:
 * same scenario, same result.
 */
export function simulate(sc: Scenario, opts: SimOptions): PolicyResult {
  if (opts.policy === 'ilp' && opts.solver === undefined) {
    throw new AppError('SIM_CONFIG', 'The ilp policy needs an LP solver; none was given');
  }
  const params = sc.params;
  const durationMs = sc.durationS * 1000;
  const roundMs = sc.roundIntervalS * 1000;
  const cloud = sc.cloud;
  const nSites = cloud.sites.length;
  const siteIdx = new Map<string, number>(cloud.sites.map((s, i) => [s.id, i]));
  const reservedV = new Float64Array(nSites);
  const reservedM = new Float64Array(nSites);
  const linkById = new Map<LinkId, Link>(cloud.links.map((l) => [l.id, l]));
  const spareByLink = new Map<LinkId, number>(cloud.links.map((l) => [l.id, spareMbps(l)]));
  const cut = new Set<LinkId>();

  // Mutable world state, kept in the snapshot's JSON form so each round re-validates it.
  const vms = new Map<string, VmJson>();
  for (const v of cloud.vms) vms.set(v.id, { ...v, hostId: v.hostId ?? undefined });
  const users = new Map<string, UserJson>(cloud.users.map((u) => [u.id, { ...u, rttMs: [...u.rttMs] }]));

  // The hypervisors: the simulated driver's world, on the engine's virtual clock.
  const clock = new VirtualClock(0);
  const timers = new VirtualTimers(clock);
  const world = new SimWorld({ timers, progressIntervalMs: PROGRESS_INTERVAL_MS });
  const driver = createSimDriver(world);
  const placementAt = (site: string): { siteId: SiteId; hostId: null } => ({ siteId: site as SiteId, hostId: null });
  for (const vm of vms.values()) world.addVm(vm.id as VmId, placementAt(vm.siteId), vm.memoryMiB);

  const policy = simMigrationPolicy(sc);
  // The executor's limits: 'nearest at once' by definition keeps to none.
  const limits: QueueLimits = {
    maxConcurrent: Infinity,
    maxPerLink: opts.policy === 'nearest' ? Infinity : params.maxMovesPerLink,
    linkBandwidthShare: 1,
  };

  const migrating = new Map<string, Migration>();
  /** VMs whose post-copy lost its link: paused at the destination until the link returns. */
  const stranded = new Map<string, MigrationRequest>();
  let pending: Pending[] = [];
  let finished: FinishedJob[] = [];
  let planId = '';
  let jobSeq = 0;
  let admitDue = false;
  const inbox: { m: Migration; e: SimMigrationEvent }[] = [];

  const agenda = new Agenda<Tick>();
  // Events first: at the same instant they come before the round, so a round sees what just happened.
  for (const e of sc.events) agenda.push(e.atS * 1000, { kind: 'event', e });
  agenda.push(0, { kind: 'round' }); // each round schedules the next

  const log: MigrationRecord[] = [];
  const counts = { planned: 0, started: 0, completed: 0, aborted: 0, failed: 0, postCopy: 0, superseded: 0, dropped: 0 };
  const arrivals = { placed: 0, redirected: 0, refused: 0 };
  let planMs = 0;
  let rounds = 0;
  const series: Record<string, number[]> | undefined = opts.recordSeries === true ? {} : undefined;
  const stats = new RttStats();

  // What the VMs placed at each site hold, kept up to date as VMs arrive, leave and move.
  const placedV = new Float64Array(nSites);
  const placedM = new Float64Array(nSites);
  const place = (vm: VmJson, sign: 1 | -1): void => {
    const j = siteIdx.get(vm.siteId)!;
    placedV[j]! += sign * vm.vcpu;
    placedM[j]! += sign * vm.memoryMiB;
  };
  for (const vm of vms.values()) place(vm, 1);
  const used = (j: number): { v: number; m: number } => ({ v: reservedV[j]! + placedV[j]!, m: reservedM[j]! + placedM[j]! });
  const fits = (j: number, vcpu: number, mem: number): boolean => {
    const u = used(j);
    const cap = cloud.sites[j]!.capacity;
    return u.v + vcpu <= cap.vcpu + 1e-9 && u.m + mem <= cap.memoryMiB + 1e-9;
  };
  const usersRtt = (vm: VmJson, j: number): number | null => {
    let t = 0;
    for (const u of vm.users as { userId: string; share: number }[]) {
      const r = users.get(u.userId)!.rttMs[j];
      if (r === null || r === undefined) return null;
      t += u.share * r;
    }
    return t;
  };

  const snapshotNow = (nowMs: number): Snapshot => {
    // Capacity that in-flight migrations hold at their destinations is not the planner's to give away.
    const sites = cloud.sites.map((s, j) => ({
      ...s, capacity: { vcpu: s.capacity.vcpu - reservedV[j]!, memoryMiB: s.capacity.memoryMiB - reservedM[j]! },
    }));
    // A link that is down is not offered to the planner (as a link monitor would report it).
    const links = cloud.links.filter((l) => !cut.has(l.id)).map(({ id: _id, ...l }) => l);
    return createSnapshot({ atMs: nowMs, sites, hosts: cloud.hosts, links, users: [...users.values()], vms: [...vms.values()] });
  };

  /** The driver's request for a move: the link as configured, the VM's shape now, the scenario's policy. */
  const requestFor = (move: Move, vm: VmJson, link: Link, jobId: string, capMbps: number): MigrationRequest => {
    const deltas = vm.diskDeltaGiB as Record<string, number>;
    const diskGiB = deltas[move.to] ?? deltas['*'] ?? (vm.diskGiB as number);
    return {
      jobId, vm: move.vm, from: placementAt(move.from), to: placementAt(move.to),
      link: { rttMs: link.rttMs, bandwidthMbps: link.bandwidthMbps, foregroundShare: link.foregroundShare, lossPct: 0 },
      shape: {
        memoryMiB: vm.memoryMiB, dirtyRateMiBps: vm.dirtyRateMiBps as number,
        workingSetMiB: (vm.workingSetMiB as number | undefined) ?? vm.memoryMiB, diskGiB,
      },
      storage: diskGiB > 0 ? 'mirror' : 'shared',
      policy,
      bandwidthCapMbps: capMbps,
    };
  };

  /** The driver's outcome, applied: the VM is where the driver says it runs. */
  const finish = (m: Migration, outcome: MigrationOutcome, precopyRounds: number): void => {
    const nowMs = clock.nowMs();
    migrating.delete(m.vm.id);
    const to = siteIdx.get(m.move.to)!;
    reservedV[to]! -= m.vm.vcpu;
    reservedM[to]! -= m.vm.memoryMiB;
    const atDestination = outcome.runningAt.siteId === m.move.to;
    if (atDestination && vms.get(m.vm.id) === m.vm) {
      const prev = m.vm.lastMovedAtMs as number | null | undefined;
      const streak = prev !== null && prev !== undefined && nowMs - prev < params.maxCooldownMs ? (m.vm.recentMoves as number) + 1 : 1;
      const delta = { ...(m.vm.diskDeltaGiB as Record<string, number>) };
      // The source keeps a copy that is as far behind as the destination's was.
      const keep = delta[m.move.to] ?? delta['*'];
      delete delta[m.move.to];
      delta[m.move.from] = keep ?? (m.vm.diskGiB as number);
      place(m.vm, -1);
      Object.assign(m.vm, { siteId: m.move.to, lastMovedAtMs: nowMs, recentMoves: streak, diskDeltaGiB: delta, hostId: undefined });
      place(m.vm, 1);
      // Post-copy cut from its link: the guest waits at the destination for pages the source still holds.
      if (outcome.status === 'failed') stranded.set(m.vm.id, m.req);
    }
    if (outcome.status === 'completed') {
      counts.completed++;
    } else {
      counts.aborted++;
      if (outcome.status === 'failed') counts.failed++;
    }
    finished.push({ planId: m.planId, vm: m.move.vm, ok: outcome.status === 'completed' });
    const postCopy = m.switched || outcome.stallActions.includes('post-copy');
    log.push({
      vm: m.move.vm, from: m.move.from, to: m.move.to, kind: m.move.kind,
      startS: (nowMs - outcome.durationMs) / 1000, endS: nowMs / 1000, outcome: outcome.status,
      bytes: outcome.transferredBytes, downtimeMs: outcome.downtimeMs ?? 0, postCopy, rounds: precopyRounds,
      ...(outcome.reason !== null ? { reason: outcome.reason } : {}),
      ...(outcome.stallActions.length > 0 ? { stallActions: outcome.stallActions } : {}),
    });
    admitDue = true;
  };

  /** What the driver reported since the last look, in order. */
  const drain = (): void => {
    for (let i = 0; i < inbox.length; i++) {
      const { m, e } = inbox[i]!;
      if (e.type === 'done') {
        finish(m, e.outcome, e.precopyRounds);
      } else if (e.progress.phase === 'postcopy' && !m.switched) {
        m.switched = true;
        counts.postCopy++;
      }
    }
    inbox.length = 0;
  };

  /** A move the admission picked, re-checked against fresh state (a plan is a proposal) and started. */
  const start = (p: Pending, capMbps: number): boolean => {
    const vm = vms.get(p.move.vm);
    const to = siteIdx.get(p.move.to)!;
    const link = linkById.get(p.linkId);
    if (vm === undefined || migrating.has(vm.id) || stranded.has(vm.id) || vm.siteId !== p.move.from) return false;
    if (link === undefined || !fits(to, vm.vcpu, vm.memoryMiB)) return false;
    const req = requestFor(p.move, vm, link, p.id, capMbps);
    let handle: SimMigrationHandle;
    try {
      handle = startSimMigration(world, req);
    } catch {
      return false; // the driver refused it (what the executor records as a failed start): nothing started
    }
    reservedV[to]! += vm.vcpu;
    reservedM[to]! += vm.memoryMiB;
    const m: Migration = { id: p.id, planId: p.planId, move: p.move, vm, linkId: p.linkId, req, handle, capMbps, switched: false };
    migrating.set(vm.id, m);
    handle.observe((e) => inbox.push({ m, e }));
    counts.started++;
    return true;
  };

  /** The executor's admission (queue.ts), run until it has nothing more to start, drop or re-cap. */
  const admitNow = (): void => {
    admitDue = false;
    for (let pass = 0; pass < 1000; pass++) {
      if (pending.length === 0 && migrating.size === 0) return;
      const queued: QueuedJob[] = pending.map((p) => ({
        id: p.id, vm: p.move.vm, planId: p.planId, seq: p.seq, linkId: p.linkId,
        benefit: p.move.benefit, costS: p.move.costS, bytes: p.move.bytes, after: p.move.after,
      }));
      const byJob = new Map([...migrating.values()].map((m) => [m.id, m]));
      const running = [...byJob.values()].map((m) => ({ id: m.id, vm: m.move.vm, planId: m.planId, linkId: m.linkId, capMbps: m.capMbps, recappable: true }));
      const a = admit({ queued, running, finished, spareMbps: spareByLink, limits });
      const gone = new Set<string>();
      for (const d of a.drop) gone.add(d.id);
      for (const r of a.recap) {
        const m = byJob.get(r.id)!;
        m.capMbps = r.capMbps;
        void m.handle.setBandwidthCap(r.capMbps); // takes effect at once in the simulated world
      }
      let again = a.drop.length > 0;
      const byId = new Map(pending.map((p) => [p.id, p]));
      for (const s of a.start) {
        const p = byId.get(s.id)!;
        gone.add(p.id);
        if (!start(p, s.capMbps)) {
          counts.dropped++;
          finished.push({ planId: p.planId, vm: p.move.vm, ok: false });
          again = true; // its slot and share are free for the next one
        }
      }
      for (const d of a.drop) {
        const p = byId.get(d.id)!;
        counts.dropped++;
        finished.push({ planId: p.planId, vm: p.move.vm, ok: false });
      }
      if (gone.size > 0) pending = pending.filter((p) => !gone.has(p.id));
      if (!again) return;
    }
  };

  const sample = (): void => {
    for (const vm of vms.values()) {
      if ((vm.users as unknown[]).length === 0) continue;
      const mig = migrating.get(vm.id);
      const at = mig?.switched === true ? siteIdx.get(mig.move.to)! : siteIdx.get(vm.siteId)!;
      const rtt = usersRtt(vm, at);
      if (rtt === null) continue;
      let ideal = rtt;
      for (let j = 0; j < nSites; j++) {
        const r = usersRtt(vm, j);
        if (r !== null && r < ideal) ideal = r;
      }
      stats.add(rtt, vm.sensitivity as number, ideal);
      if (series !== undefined) (series[vm.id] ??= []).push(Math.round(rtt * 10) / 10);
    }
  };

  /** Stranded post-copies whose link is back are finished by the driver, as the executor's reconcile would. */
  const unstrand = (): void => {
    for (const [id, req] of stranded) {
      if (cut.has(linkIdOf(req.from.siteId, req.to.siteId))) continue;
      // The world finishes an ended migration at once; the promise only reports it.
      void driver.finish(req).catch(() => undefined);
      const running = world.runningAt(req.vm);
      if (running.length === 1 && running[0]!.siteId === req.to.siteId) stranded.delete(id);
    }
  };

  const applyEvent = (e: ScenarioEvent): void => {
    switch (e.type) {
      case 'activity': {
        const vm = vms.get(e.vm);
        if (vm !== undefined) {
          const p = sc.activities[e.activity];
          Object.assign(vm, { activity: p.class, sensitivity: p.sensitivity, dirtyRateMiBps: p.dirtyRateMiBps });
        }
        break;
      }
      case 'user-move': {
        const u = users.get(e.user)!;
        Object.assign(u, { country: e.country, lat: e.lat, lon: e.lon, network: e.network, rttMs: [...e.rttMs] });
        break;
      }
      case 'vm-arrive': {
        const vm = { ...e.vm } as VmJson;
        const want = siteIdx.get(vm.siteId)!;
        let at = fits(want, vm.vcpu, vm.memoryMiB) ? want : -1;
        if (at === -1) {
          // Admission places it at the nearest site with room, as a scheduler would.
          const order = [...Array(nSites).keys()].sort((a, b) => (usersRtt(vm, a) ?? Infinity) - (usersRtt(vm, b) ?? Infinity) || a - b);
          at = order.find((j) => fits(j, vm.vcpu, vm.memoryMiB)) ?? -1;
          if (at !== -1) {
            arrivals.redirected++;
            vm.hostId = undefined; // its host was at the site it did not get
          }
        } else {
          arrivals.placed++;
        }
        if (at === -1) {
          arrivals.refused++;
        } else {
          vm.siteId = cloud.sites[at]!.id;
          vms.set(vm.id, vm);
          place(vm, 1);
          world.addVm(vm.id as VmId, placementAt(vm.siteId), vm.memoryMiB);
        }
        break;
      }
      case 'vm-depart': {
        // Its instances stop; a migration using them fails in the driver, and that outcome is applied first.
        for (const i of world.instances(e.vm)) world.killInstance(e.vm, i.placement);
        drain();
        stranded.delete(e.vm);
        const gone = vms.get(e.vm);
        if (gone !== undefined) place(gone, -1);
        vms.delete(e.vm);
        break;
      }
      case 'link-down':
        cut.add(linkIdOf(e.a, e.b));
        world.cutLink(e.a, e.b);
        break;
      case 'link-up':
        cut.delete(linkIdOf(e.a, e.b));
        world.restoreLink(e.a, e.b);
        drain();
        unstrand();
        break;
    }
    admitDue = true;
  };

  const planRound = (nowMs: number): void => {
    rounds++;
    planId = `round-${rounds}`;
    // A newer plan supersedes moves not yet started; `after` names moves of the same plan only.
    const superseded = new Set(supersededBy(pending.map((p) => ({
      id: p.id, vm: p.move.vm, planId: p.planId, seq: p.seq, linkId: p.linkId, benefit: 0, costS: 0, bytes: 0, after: [],
    })), planId));
    counts.superseded += superseded.size;
    pending = pending.filter((p) => !superseded.has(p.id));
    finished = [];
    if (opts.policy === 'never') return;
    const snap = snapshotNow(nowMs);
    const p = { ...params, excluded: [...params.excluded, ...(migrating.keys() as Iterable<VmId>), ...(stranded.keys() as Iterable<VmId>)] };
    const t0 = opts.timer?.() ?? 0;
    let plan: Plan;
    if (opts.policy === 'nearest') plan = planNearest(snap, p);
    else if (opts.policy === 'ilp') plan = planMovesIlp(snap, p, opts.solver!);
    else plan = planMoves(snap, p);
    planMs += (opts.timer?.() ?? 0) - t0;
    counts.planned += plan.moves.length;
    for (const move of plan.moves) {
      pending.push({ id: `${planId}/${move.vm}`, planId, seq: jobSeq++, linkId: linkIdOf(move.from, move.to), move });
    }
    admitDue = true;
  };

  // Time jumps from one happening to the next: a scenario event, a planning round, or a wake-up of the
  // simulated driver (a transfer's end, a progress report, a stall check, a deadline). At the same instant the
  // driver's happenings come first, so a round sees a migration that just ended.
  for (let steps = 0; ; steps++) {
    if (steps > 100_000_000) throw new AppError('SIM_RUNAWAY', `The simulation took ${steps} steps and reached only ${clock.nowMs()} ms of ${durationMs} ms`);
    const nextTick = agenda.peekTime();
    const nextWake = timers.nextDueMs();
    if (Math.min(nextTick, nextWake) > durationMs) break;
    if (nextWake <= nextTick) {
      timers.runNext();
      drain();
    } else {
      clock.advanceTo(nextTick);
      const tick = agenda.pop()!;
      if (tick.kind === 'event') {
        applyEvent(tick.e);
        drain();
      } else {
        sample();
        planRound(nextTick);
        if (nextTick + roundMs <= durationMs) agenda.push(nextTick + roundMs, { kind: 'round' });
        opts.onProgress?.(Math.min(1, nextTick / durationMs));
      }
    }
    if (admitDue) {
      admitNow();
      drain(); // a start can end at once (a cut link)
    }
  }
  // Migrations still running at the end are reported as they stand, not counted as moved.
  if (clock.nowMs() < durationMs) clock.advanceTo(durationMs);
  const inFlightBytes = [...migrating.values()].reduce((t, m) => t + m.handle.progressNow().transferredBytes, 0);
  const completed = log.filter((l) => l.outcome === 'completed');
  return {
    policy: opts.policy,
    rounds,
    meanUserRttMs: stats.n > 0 ? stats.sumRtt / stats.n : 0,
    sensitiveUserRttMs: stats.sumSens > 0 ? stats.sumSensRtt / stats.sumSens : 0,
    p95SensitiveUserRttMs: stats.quantile(0.95),
    idealSensitiveUserRttMs: stats.sumSens > 0 ? stats.sumSensIdeal / stats.sumSens : 0,
    migrations: counts,
    bytesMoved: log.reduce((t, l) => t + l.bytes, 0) + inFlightBytes,
    migrationSeconds: log.reduce((t, l) => t + (l.endS - l.startS), 0),
    meanDowntimeMs: completed.length > 0 ? completed.reduce((t, l) => t + l.downtimeMs, 0) / completed.length : 0,
    maxDowntimeMs: completed.reduce((t, l) => Math.max(t, l.downtimeMs), 0),
    arrivals,
    planMs,
    log,
    ...(series !== undefined ? { series } : {}),
  };
}
