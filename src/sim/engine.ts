import { AppError } from '../core/errors.js';
import { BinaryHeap } from '../core/heap.js';
import type { SiteId, VmId } from '../core/ids.js';
import { linkIdOf } from '../core/ids.js';
import { createSnapshot, type Snapshot } from '../core/model.js';
import { planNearest } from '../placement/baselines.js';
import { spareMbps } from '../placement/cost.js';
import { planMoves } from '../placement/greedy.js';
import { planMovesIlp, type LpSolver } from '../placement/ilp.js';
import type { Move, Plan } from '../placement/plan.js';
import type { Scenario, ScenarioEvent } from './scenario.js';
import { VirtualClock } from './virtual-clock.js';

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

export interface MigrationRecord {
  readonly vm: VmId;
  readonly from: SiteId;
  readonly to: SiteId;
  readonly kind: Move['kind'];
  readonly startS: number;
  readonly endS: number;
  readonly outcome: 'completed' | 'aborted';
  readonly bytes: number;
  readonly downtimeMs: number;
  readonly postCopy: boolean;
  readonly rounds: number;
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
    readonly aborted: number; readonly postCopy: number; readonly superseded: number;
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

interface Migration {
  readonly move: Move;
  readonly vm: VmJson;
  readonly linkKey: string;
  readonly startMs: number;
  phase: 'disk' | 'precopy' | 'switch' | 'postcopy';
  remaining: number;
  round: number;
  dirtied: number;
  sent: number;
  downtimeMs: number;
  switched: boolean;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const EPS = 1e-6;

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

/**
 * Runs a scenario on a virtual clock under one policy. Planning rounds call the production planner;
 * migrations follow the pre-copy model round by round, with concurrent migrations sharing their link's
 * spare bandwidth. Nothing here reads a real clock or draws a random number: same scenario, same result.
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

  // Mutable world state, kept in the snapshot's JSON form so each round re-validates it.
  const vms = new Map<string, VmJson>();
  for (const v of cloud.vms) vms.set(v.id, { ...v, hostId: v.hostId ?? undefined });
  const users = new Map<string, UserJson>(cloud.users.map((u) => [u.id, { ...u, rttMs: [...u.rttMs] }]));
  const migrating = new Map<string, Migration>();
  const linkLoad = new Map<string, number>();
  const spare = new Map<string, number>(cloud.links.map((l) => [l.id as string, (spareMbps(l) * 1e6) / 8]));
  let pending: Move[] = [];
  const done = new Set<string>();
  const failed = new Set<string>();

  const agenda = new Agenda<Tick>();
  // Events first: at the same instant they come before the round, so a round sees what just happened.
  for (const e of sc.events) agenda.push(e.atS * 1000, { kind: 'event', e });
  agenda.push(0, { kind: 'round' }); // each round schedules the next

  const log: MigrationRecord[] = [];
  const counts = { planned: 0, started: 0, completed: 0, aborted: 0, postCopy: 0, superseded: 0, dropped: 0 };
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
    return createSnapshot({ atMs: nowMs, sites, hosts: cloud.hosts, links: cloud.links.map(({ id: _id, ...l }) => l), users: [...users.values()], vms: [...vms.values()] });
  };

  const rate = (m: Migration): number => (spare.get(m.linkKey) ?? 0) / Math.max(1, linkLoad.get(m.linkKey) ?? 1);

  const finish = (m: Migration, nowMs: number, outcome: 'completed' | 'aborted'): void => {
    migrating.delete(m.vm.id);
    linkLoad.set(m.linkKey, (linkLoad.get(m.linkKey) ?? 1) - 1);
    const to = siteIdx.get(m.move.to)!;
    reservedV[to]! -= m.vm.vcpu;
    reservedM[to]! -= m.vm.memoryMiB;
    if (outcome === 'completed') {
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
      counts.completed++;
      done.add(m.vm.id);
    } else {
      counts.aborted++;
      failed.add(m.vm.id);
    }
    log.push({
      vm: m.move.vm, from: m.move.from, to: m.move.to, kind: m.move.kind, startS: m.startMs / 1000, endS: nowMs / 1000, outcome,
      bytes: m.sent, downtimeMs: m.downtimeMs, postCopy: m.phase === 'postcopy', rounds: m.round,
    });
  };

  const start = (move: Move, nowMs: number): 'started' | 'wait' | 'drop' => {
    const vm = vms.get(move.vm);
    if (vm === undefined || migrating.has(move.vm) || vm.siteId !== move.from) return 'drop';
    if (move.after.some((id) => failed.has(id))) return 'drop';
    if (!move.after.every((id) => done.has(id))) return 'wait';
    // Re-checked against fresh state, as a plan is a proposal.
    const to = siteIdx.get(move.to)!;
    if (!fits(to, vm.vcpu, vm.memoryMiB)) return 'drop';
    const linkKey = linkIdOf(move.from, move.to);
    // The executor keeps to the per-link limit on migrations in flight; "nearest at once" by definition does not.
    if (opts.policy !== 'nearest' && (linkLoad.get(linkKey) ?? 0) >= params.maxMovesPerLink) return 'wait';
    reservedV[to]! += vm.vcpu;
    reservedM[to]! += vm.memoryMiB;
    linkLoad.set(linkKey, (linkLoad.get(linkKey) ?? 0) + 1);
    const deltas = vm.diskDeltaGiB as Record<string, number>;
    const diskBytes = (deltas[move.to] ?? deltas['*'] ?? (vm.diskGiB as number)) * GiB;
    migrating.set(vm.id, {
      move, vm, linkKey, startMs: nowMs,
      phase: diskBytes > 0 ? 'disk' : 'precopy', remaining: diskBytes > 0 ? diskBytes : vm.memoryMiB * MiB,
      round: diskBytes > 0 ? 0 : 1, dirtied: 0, sent: 0, downtimeMs: 0, switched: false,
    });
    counts.started++;
    return 'started';
  };

  const startPending = (nowMs: number): void => {
    const keep: Move[] = [];
    for (const mv of pending) {
      const r = start(mv, nowMs);
      if (r === 'wait') keep.push(mv);
      else if (r === 'drop') counts.dropped++;
    }
    pending = keep;
  };

  /** Moves every migration's transfer forward by dtMs at the current shares of bandwidth. */
  const advance = (dtMs: number): void => {
    if (dtMs <= 0) return;
    for (const m of migrating.values()) {
      const bytes = (rate(m) * dtMs) / 1000;
      const step = Math.min(bytes, m.remaining);
      m.remaining -= step;
      m.sent += step;
      if (m.phase === 'precopy') {
        const ws = ((m.vm.workingSetMiB as number | undefined) ?? m.vm.memoryMiB) * MiB;
        m.dirtied = Math.min(ws, m.dirtied + ((m.vm.dirtyRateMiBps as number) * MiB * dtMs) / 1000);
      }
    }
  };

  /** Phase changes of migrations whose current transfer is done. */
  const settle = (nowMs: number): void => {
    for (const m of [...migrating.values()]) {
      if (m.remaining > EPS) continue;
      const r = rate(m);
      if (m.phase === 'disk') {
        m.phase = 'precopy';
        m.round = 1;
        m.remaining = m.vm.memoryMiB * MiB;
        m.dirtied = 0;
      } else if (m.phase === 'precopy') {
        const volume = m.dirtied;
        m.dirtied = 0;
        if (volume <= (r * params.maxDowntimeMs) / 1000) {
          m.phase = 'switch';
          m.remaining = volume;
          m.downtimeMs = r > 0 ? (volume / r) * 1000 : 0;
          if (volume <= EPS) finish(m, nowMs, 'completed');
        } else if (m.round >= params.maxPrecopyRounds || m.move.postCopy) {
          // Planned as post-copy (cheaper than many rounds), or pre-copy ran out of rounds.
          if (params.postCopy === 'allow') {
            m.phase = 'postcopy';
            m.remaining = volume;
            m.switched = true; // the guest runs at the destination from here on
            counts.postCopy++;
          } else {
            finish(m, nowMs, 'aborted');
          }
        } else {
          m.round++;
          m.remaining = volume;
        }
      } else {
        finish(m, nowMs, 'completed');
      }
    }
  };

  const nextMigrationMs = (): number => {
    let best = Infinity;
    for (const m of migrating.values()) {
      const r = rate(m);
      if (r > 0) best = Math.min(best, (m.remaining / r) * 1000);
    }
    return best;
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

  const applyEvent = (e: ScenarioEvent, nowMs: number): void => {
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
        }
        break;
      }
      case 'vm-depart': {
        const m = migrating.get(e.vm);
        if (m !== undefined) finish(m, nowMs, 'aborted');
        const gone = vms.get(e.vm);
        if (gone !== undefined) place(gone, -1);
        vms.delete(e.vm);
        break;
      }
    }
  };

  const planRound = (nowMs: number): void => {
    rounds++;
    counts.superseded += pending.length; // a newer plan supersedes moves not yet started
    pending = [];
    // `after` names moves of the same plan: what finished under an older plan does not count.
    done.clear();
    failed.clear();
    if (opts.policy === 'never') return;
    const snap = snapshotNow(nowMs);
    const p = { ...params, excluded: [...params.excluded, ...(migrating.keys() as Iterable<VmId>)] };
    const t0 = opts.timer?.() ?? 0;
    let plan: Plan;
    if (opts.policy === 'nearest') plan = planNearest(snap, p);
    else if (opts.policy === 'ilp') plan = planMovesIlp(snap, p, opts.solver!);
    else plan = planMoves(snap, p);
    planMs += (opts.timer?.() ?? 0) - t0;
    counts.planned += plan.moves.length;
    pending = [...plan.moves];
  };

  // Time jumps from one happening to the next: a scenario event, a planning round, or the moment a
  // migration finishes its current transfer at the present shares of bandwidth.
  const clock = new VirtualClock(0);
  while (agenda.size > 0) {
    const nextTick = agenda.peekTime();
    if (nextTick > durationMs) break;
    const dMig = nextMigrationMs();
    if (clock.nowMs() + dMig < nextTick - EPS) {
      advance(dMig);
      clock.advanceTo(clock.nowMs() + dMig);
      settle(clock.nowMs());
      startPending(clock.nowMs());
      continue;
    }
    advance(nextTick - clock.nowMs());
    clock.advanceTo(nextTick);
    const now = nextTick;
    settle(now);
    const tick = agenda.pop()!;
    if (tick.kind === 'event') {
      applyEvent(tick.e, now);
    } else {
      sample();
      planRound(now);
      if (now + roundMs <= durationMs) agenda.push(now + roundMs, { kind: 'round' });
      opts.onProgress?.(Math.min(1, now / durationMs));
    }
    startPending(now);
  }
  // Migrations still running at the end are reported as they stand, not counted as moved.
  const completed = log.filter((l) => l.outcome === 'completed');
  return {
    policy: opts.policy,
    rounds,
    meanUserRttMs: stats.n > 0 ? stats.sumRtt / stats.n : 0,
    sensitiveUserRttMs: stats.sumSens > 0 ? stats.sumSensRtt / stats.sumSens : 0,
    p95SensitiveUserRttMs: stats.quantile(0.95),
    idealSensitiveUserRttMs: stats.sumSens > 0 ? stats.sumSensIdeal / stats.sumSens : 0,
    migrations: counts,
    bytesMoved: log.reduce((t, l) => t + l.bytes, 0) + [...migrating.values()].reduce((t, m) => t + m.sent, 0),
    migrationSeconds: log.reduce((t, l) => t + (l.endS - l.startS), 0),
    meanDowntimeMs: completed.length > 0 ? completed.reduce((t, l) => t + l.downtimeMs, 0) / completed.length : 0,
    maxDowntimeMs: completed.reduce((t, l) => Math.max(t, l.downtimeMs), 0),
    arrivals,
    planMs,
    log,
    ...(series !== undefined ? { series } : {}),
  };
}
