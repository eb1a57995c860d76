// A simulated MigrationDriver: instances and migrations live in a SimWorld (the "hypervisors"), moved by the
// same pre-copy model as placement/cost.ts, on an injected clock. Used by the simulator, by tests, and by
// anything that wants the executor's behaviour without QEMU.
//
// The model, per migration: preparing (2 RTTs + 20 ms), the disk when storage is mirrored, then pre-copy
// rounds at the bandwidth cap — round 1 sends all memory, each later round what the guest dirtied meanwhile
// (dirty rate × round time, at most the working set) — until a round fits the downtime limit, which is sent
// with the guest paused (the downtime). A stall is remaining bytes not falling for stallTimeoutMs, watched
// from round 2 on (the first pass always advances); the policy's stall actions are taken in order, the last
// repeating; one that cannot apply (a raise at the ceiling, post-copy not allowed) passes to the next, and if
// the last cannot, the migration is aborted. Post-copy moves the guest to the destination after a pause of
// one RTT and pulls the rest; from then on abort cannot bring it back (abort() then waits for the end). The
// deadline aborts anything not yet in post-copy. Aborts take one RTT and leave the VM running at the source.
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { AppError } from '../core/errors.js';
import { BinaryHeap } from '../core/heap.js';
import { linkIdOf, type LinkId, type SiteId, type VmId } from '../core/ids.js';
import { spareMbps } from '../placement/cost.js';
import type {
  InstanceState, MigrationDriver, MigrationHandle, MigrationOutcome, MigrationPhase, MigrationProgress,
  MigrationRequest, Placement, Presence, SettingChoice, StallAction,
} from './driver.js';
import { raisedDowntimeMs } from './tuning.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// ---------------------------------------------------------------------------------------------------------------
// Time.

/** A clock that can also call back: the world schedules every happening through it. */
export interface SimTimers extends Clock {
  /** Calls `fn` once the clock reaches `atMs` (soon, if it already has). Returns a cancel function. */
  at(atMs: number, fn: () => void): () => void;
}

/** Real time (setTimeout), for a simulated driver in a live process. */
export function realTimers(clock: Clock = systemClock): SimTimers {
  return {
    nowMs: () => clock.nowMs(),
    at(atMs, fn) {
      const t = setTimeout(fn, Math.max(0, atMs - clock.nowMs()));
      return () => clearTimeout(t);
    },
  };
}

/** A clock the scheduler may move: the tests' FakeClock (`set`) or the simulator's VirtualClock (`advanceTo`). */
export type SettableClock = Clock & ({ set(ms: number): void } | { advanceTo(ms: number): void });

interface Timer {
  readonly atMs: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * Virtual time. Callbacks run in time order (ties in the order they were set), the clock jumping to each;
 * between two callbacks pending promise reactions run, so code awaiting a driver sees each moment as it
 * happens. `auto`: time runs by itself as fast as the event loop allows (contract tests). Otherwise a test
 * or the simulator's engine moves it with `runUntil` / `advance`, and can ask `nextDueMs` to fit the
 * world's happenings into its own agenda.
 */
export class SimScheduler implements SimTimers {
  private readonly heap = new BinaryHeap<Timer>((a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq));
  private seq = 0;
  private draining = false;
  private ownMs: number;
  private readonly clock: SettableClock | null;
  private readonly auto: boolean;

  constructor(opts: { clock?: SettableClock; auto?: boolean; startMs?: number } = {}) {
    this.clock = opts.clock ?? null;
    this.auto = opts.auto ?? false;
    this.ownMs = opts.startMs ?? this.clock?.nowMs() ?? 0;
  }

  nowMs(): number {
    return this.clock !== null ? this.clock.nowMs() : this.ownMs;
  }

  at(atMs: number, fn: () => void): () => void {
    const t: Timer = { atMs: Math.max(atMs, this.nowMs()), seq: this.seq++, fn, cancelled: false };
    this.heap.push(t);
    if (this.auto) this.kick();
    return () => {
      t.cancelled = true;
    };
  }

  /** When the next callback is due; null when none is pending. */
  nextDueMs(): number | null {
    this.dropCancelled();
    return this.heap.peek()?.atMs ?? null;
  }

  /** Runs every callback due up to `ms` (including those they schedule), then leaves the clock at `ms`. */
  async runUntil(ms: number, maxSteps = 1_000_000): Promise<void> {
    for (let i = 0; i < maxSteps; i++) {
      const due = this.nextDueMs();
      if (due === null || due > ms) break;
      this.runOne();
      await settle();
    }
    if (ms > this.nowMs()) this.setNow(ms);
    await settle();
  }

  advance(ms: number): Promise<void> {
    return this.runUntil(this.nowMs() + ms);
  }

  /** Runs until nothing is pending (bounded by steps). */
  async runAll(maxSteps = 1_000_000): Promise<void> {
    for (let i = 0; i < maxSteps; i++) {
      if (this.nextDueMs() === null) return;
      this.runOne();
      await settle();
    }
    throw new AppError('SIM_RUNAWAY', `The simulated clock ran ${maxSteps} steps and callbacks are still pending at ${this.nowMs()} ms`);
  }

  private kick(): void {
    if (this.draining) return;
    this.draining = true;
    setImmediate(() => {
      this.draining = false;
      if (this.nextDueMs() === null) return;
      this.runOne();
      if (this.nextDueMs() !== null) this.kick();
    });
  }

  private runOne(): void {
    const t = this.heap.pop();
    if (t === undefined || t.cancelled) return;
    if (t.atMs > this.nowMs()) this.setNow(t.atMs);
    t.fn();
  }

  private dropCancelled(): void {
    while (this.heap.peek()?.cancelled === true) this.heap.pop();
  }

  private setNow(ms: number): void {
    if (this.clock === null) this.ownMs = ms;
    else if ('set' in this.clock) this.clock.set(ms);
    else this.clock.advanceTo(ms);
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------------------------------
// The world: instances on sites, links that can be cut, and the migrations in flight.

export interface SimWorldOptions {
  readonly timers: SimTimers;
  /** A progress snapshot at least this often. Default 1000 ms. */
  readonly progressIntervalMs?: number;
  /** Memory each site can hold (MiB); a site not listed is unbounded. */
  readonly siteMemoryMiB?: Readonly<Record<string, number>>;
  /** How long the destination takes to be started and wired up. Default: 2 RTTs + 20 ms. */
  readonly prepareMs?: (req: MigrationRequest) => number;
  /** Between the switch-over and the source being released. Default 1 ms. */
  readonly releaseMs?: number;
  /**
   * Called after every change to instances or migrations, with the world: a test that kills the manager's
   * process writes `exportState()` to a file here, so that the "hypervisors" outlive it (see `restore`).
   */
  readonly onChange?: (world: SimWorld) => void;
}

/** One migration's model state, as plain JSON. */
export interface SimMigrationState {
  readonly req: MigrationRequest;
  readonly startMs: number;
  readonly lastMs: number;
  readonly phase: MigrationPhase;
  readonly capMbps: number;
  readonly prepRemainingMs: number;
  readonly diskRemaining: number;
  readonly roundRemaining: number;
  readonly dirtied: number;
  readonly round: number;
  readonly switchRemaining: number;
  readonly postRemaining: number;
  readonly transferred: number;
  readonly downtimeLimitMs: number;
  readonly downtimeMs: number | null;
  readonly switchStartMs: number;
  /** null for "none yet" (Infinity does not survive JSON). */
  readonly bestRemaining: number | null;
  readonly bestAtMs: number;
  readonly stallIdx: number;
  readonly stallActions: readonly StallAction[];
  readonly settings: readonly SettingChoice[];
  readonly lastEmitMs: number;
  readonly switched: boolean;
  readonly abortReason: string | null;
  /** When the pending release (phase completed) or abort (phase aborting) is due. */
  readonly dueMs: number | null;
}

/** The world as plain JSON: instances, links cut, and the migrations in flight with their model state. */
export interface SimWorldState {
  readonly vms: readonly { readonly vm: VmId; readonly instances: readonly SimInstance[] }[];
  readonly switched: readonly string[];
  readonly jobsSeen: readonly string[];
  readonly cut: readonly LinkId[];
  readonly migrations: readonly SimMigrationState[];
}

export interface SimInstance {
  readonly placement: Placement;
  state: InstanceState;
  readonly memoryMiB: number;
}

/**
 * What a simulated migration reports, delivered synchronously as it happens: the same progress snapshots its
 * handle's progress() stream carries, then the outcome its `done` resolves to. For the simulator's engine,
 * which runs without an event loop; `precopyRounds` is the model's own count (QEMU's drivers have no such field).
 */
export type SimMigrationEvent =
  | { readonly type: 'progress'; readonly progress: MigrationProgress }
  | { readonly type: 'done'; readonly outcome: MigrationOutcome; readonly precopyRounds: number };

/** The sim driver's handle: the contract's, plus synchronous observation for the simulator. */
export interface SimMigrationHandle extends MigrationHandle {
  /** Calls `fn` synchronously with each event from now on (until the migration ends). Returns a stop function. */
  observe(fn: (e: SimMigrationEvent) => void): () => void;
  /** Where the migration stands at the clock's current time (the model moved forward to it first). */
  progressNow(): MigrationProgress;
  setBandwidthCap(capMbps: number): Promise<void>;
}

interface Subscriber {
  readonly queue: MigrationProgress[];
  wake: (() => void) | null;
  closed: boolean;
}

interface Migration {
  readonly req: MigrationRequest;
  readonly link: LinkId;
  readonly startMs: number;
  lastMs: number;
  phase: MigrationPhase;
  rateBpms: number;
  capMbps: number;
  prepRemainingMs: number;
  diskRemaining: number;
  roundRemaining: number;
  dirtied: number;
  round: number;
  switchRemaining: number;
  postRemaining: number;
  transferred: number;
  readonly totalBytes: number;
  downtimeLimitMs: number;
  downtimeMs: number | null;
  switchStartMs: number;
  bestRemaining: number;
  bestAtMs: number;
  stallIdx: number;
  readonly stallActions: StallAction[];
  readonly settings: SettingChoice[];
  lastEmitMs: number;
  lastTickMs: number;
  sameTimeTicks: number;
  ended: boolean;
  abortReason: string | null;
  dueMs: number | null;
  /** Set once the guest runs at the destination (post-copy or switch-over done): abort can no longer help. */
  switched: boolean;
  cancelTimer: (() => void) | null;
  readonly subscribers: Set<Subscriber>;
  readonly observers: Set<(e: SimMigrationEvent) => void>;
  readonly done: Promise<MigrationOutcome>;
  resolveDone: (o: MigrationOutcome) => void;
}

/** Reads the phase afresh (methods called in between change it; TypeScript's narrowing does not know). */
const phaseOf = (m: Migration): MigrationPhase => m.phase;
const key = (p: Placement): string => `${p.siteId}/${p.hostId ?? '*'}`;
const samePlace = (a: Placement, b: Placement): boolean => key(a) === key(b);
const fmtS = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const fmtMiB = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

export class SimWorld {
  readonly timers: SimTimers;
  private readonly vms = new Map<VmId, SimInstance[]>();
  private readonly active = new Map<VmId, Migration>();
  /** Jobs whose switch-over completed (what QEMU's query-migrate at the source would say). */
  private readonly switched = new Set<string>();
  private readonly jobsSeen = new Set<string>();
  private readonly cut = new Set<LinkId>();
  private readonly progressIntervalMs: number;
  private readonly siteMemoryMiB: Readonly<Record<string, number>>;
  private readonly prepareMs: (req: MigrationRequest) => number;
  private readonly releaseMs: number;
  private readonly onChange: ((world: SimWorld) => void) | undefined;

  constructor(opts: SimWorldOptions) {
    this.timers = opts.timers;
    this.onChange = opts.onChange;
    this.progressIntervalMs = opts.progressIntervalMs ?? 1000;
    this.siteMemoryMiB = opts.siteMemoryMiB ?? {};
    this.prepareMs = opts.prepareMs ?? ((req) => 2 * req.link.rttMs + 20);
    this.releaseMs = opts.releaseMs ?? 1;
  }

  /** A VM running at `at`. */
  addVm(vm: VmId, at: Placement, memoryMiB: number): void {
    if (this.vms.has(vm)) throw new AppError('SIM_VM_EXISTS', `Cannot add ${vm}: the simulated world already has it`);
    this.vms.set(vm, [{ placement: at, state: 'running', memoryMiB }]);
    this.changed();
  }

  /** Everything, as plain JSON. Migrations in flight bring their model state along. */
  exportState(): SimWorldState {
    return {
      vms: [...this.vms].map(([vm, instances]) => ({ vm, instances: instances.map((i) => ({ ...i })) })),
      switched: [...this.switched],
      jobsSeen: [...this.jobsSeen],
      cut: [...this.cut],
      migrations: [...this.active.values()].filter((m) => !m.ended).map((m) => ({
        req: m.req, startMs: m.startMs, lastMs: m.lastMs, phase: m.phase, capMbps: m.capMbps, prepRemainingMs: m.prepRemainingMs,
        diskRemaining: m.diskRemaining, roundRemaining: m.roundRemaining, dirtied: m.dirtied, round: m.round,
        switchRemaining: m.switchRemaining, postRemaining: m.postRemaining, transferred: m.transferred,
        downtimeLimitMs: m.downtimeLimitMs, downtimeMs: m.downtimeMs, switchStartMs: m.switchStartMs,
        bestRemaining: Number.isFinite(m.bestRemaining) ? m.bestRemaining : null, bestAtMs: m.bestAtMs, stallIdx: m.stallIdx,
        stallActions: [...m.stallActions], settings: [...m.settings], lastEmitMs: m.lastEmitMs, switched: m.switched,
        abortReason: m.abortReason, dueMs: m.dueMs,
      })),
    };
  }

  /**
   * A world from `exportState()`: the hypervisors as they stood, their migrations carrying on from where the
   * state left them (the time in between is made up at the next wake-up, as QEMU would have kept going).
   */
  static restore(opts: SimWorldOptions, state: SimWorldState): SimWorld {
    const w = new SimWorld(opts);
    for (const v of state.vms) w.vms.set(v.vm, v.instances.map((i) => ({ ...i })));
    for (const j of state.switched) w.switched.add(j);
    for (const j of state.jobsSeen) w.jobsSeen.add(j);
    for (const l of state.cut) w.cut.add(l);
    for (const s of state.migrations) {
      let resolveDone!: (o: MigrationOutcome) => void;
      const done = new Promise<MigrationOutcome>((r) => {
        resolveDone = r;
      });
      const m: Migration = {
        ...s, stallActions: [...s.stallActions], settings: [...s.settings],
        link: linkIdOf(s.req.from.siteId, s.req.to.siteId), rateBpms: (s.capMbps * 1e6) / 8 / 1000,
        totalBytes: (s.req.storage === 'mirror' ? s.req.shape.diskGiB * GiB : 0) + s.req.shape.memoryMiB * MiB,
        bestRemaining: s.bestRemaining ?? Infinity, lastTickMs: -1, sameTimeTicks: 0, ended: false, cancelTimer: null,
        subscribers: new Set(), observers: new Set(), done, resolveDone,
      };
      w.active.set(m.req.vm, m);
      const due = s.dueMs ?? w.timers.nowMs();
      if (m.phase === 'completed') w.armRelease(m, due);
      else if (m.phase === 'aborting') w.armAbortEnd(m, due, s.abortReason ?? 'aborted');
      else w.schedule(m);
    }
    return w;
  }

  private changed(): void {
    this.onChange?.(this);
  }

  /** Every instance of a VM with its state (absent ones are not listed). */
  instances(vm: VmId): readonly { placement: Placement; state: InstanceState }[] {
    return (this.vms.get(vm) ?? []).map((i) => ({ placement: i.placement, state: i.state }));
  }

  /** Where the VM runs: one placement, unless something is badly wrong. */
  runningAt(vm: VmId): Placement[] {
    return (this.vms.get(vm) ?? []).filter((i) => i.state === 'running').map((i) => i.placement);
  }

  /** Memory held at a site by every instance that is not absent. */
  usedMemoryMiB(site: SiteId): number {
    let m = 0;
    for (const list of this.vms.values()) for (const i of list) if (i.placement.siteId === site) m += i.memoryMiB;
    return m;
  }

  isMigrating(vm: VmId): boolean {
    return this.active.has(vm);
  }

  /** Cuts the WAN link between two sites: every migration crossing it fails as it would. */
  cutLink(a: SiteId, b: SiteId): void {
    const id = linkIdOf(a, b);
    this.cut.add(id);
    for (const m of [...this.active.values()]) {
      if (m.link !== id || m.ended) continue;
      this.advance(m, this.timers.nowMs());
      if (m.ended) continue;
      if (m.phase === 'aborting') continue; // the abort is local to the source and goes on
      this.fail(m, `the WAN link ${id} was cut during ${m.phase} at ${fmtS(this.timers.nowMs() - m.startMs)}`);
    }
  }

  restoreLink(a: SiteId, b: SiteId): void {
    this.cut.delete(linkIdOf(a, b));
  }

  /** The instance of `vm` at `at` dies (its QEMU killed); a migration using it fails. */
  killInstance(vm: VmId, at: Placement): void {
    const list = this.vms.get(vm) ?? [];
    const inst = list.find((i) => samePlace(i.placement, at));
    if (inst === undefined) return;
    const m = this.active.get(vm);
    if (m !== undefined && !m.ended) {
      this.advance(m, this.timers.nowMs());
      if (!m.ended) {
        const side = samePlace(at, m.req.to) ? 'destination' : 'source';
        this.remove(vm, at);
        this.fail(m, `the ${side} instance at ${at.siteId} died during ${m.phase}`);
        return;
      }
    }
    this.remove(vm, at);
  }

  // ---- driver-facing -------------------------------------------------------------------------------------------

  /** @internal */
  start(req: MigrationRequest): Migration {
    const src = this.instanceAt(req.vm, req.from);
    const label = `Cannot start migration ${req.jobId} of ${req.vm} from ${req.from.siteId} to ${req.to.siteId}`;
    if (this.jobsSeen.has(req.jobId)) throw new AppError('MIGRATION_JOB_EXISTS', `${label}: job ${req.jobId} was started before`);
    const busy = this.active.get(req.vm);
    if (busy !== undefined) {
      throw new AppError('MIGRATION_IN_PROGRESS', `${label}: job ${busy.req.jobId} is already moving it (${busy.phase})`);
    }
    if (src === undefined || src.state !== 'running') {
      const where = this.instances(req.vm).map((i) => `${i.state} at ${i.placement.siteId}`).join(', ') || 'no instance';
      throw new AppError('MIGRATION_NOT_AT_SOURCE', `${label}: it does not run at the source (${where})`);
    }
    if (samePlace(req.from, req.to)) throw new AppError('MIGRATION_SAME_PLACE', `${label}: source and destination are the same`);
    const capacity = this.siteMemoryMiB[req.to.siteId];
    const need = req.shape.memoryMiB;
    if (capacity !== undefined && capacity - this.usedMemoryMiB(req.to.siteId) < need) {
      throw new AppError('MIGRATION_NO_ROOM',
        `${label}: site ${req.to.siteId} has ${capacity - this.usedMemoryMiB(req.to.siteId)} MiB free, needs ${need} MiB`);
    }
    const spare = spareMbps(req.link);
    const capMbps = Math.max(0, Math.min(req.bandwidthCapMbps ?? spare, spare));
    const memBytes = req.shape.memoryMiB * MiB;
    const diskBytes = req.storage === 'mirror' ? req.shape.diskGiB * GiB : 0;
    let resolveDone!: (o: MigrationOutcome) => void;
    const done = new Promise<MigrationOutcome>((r) => {
      resolveDone = r;
    });
    const now = this.timers.nowMs();
    const m: Migration = {
      req, link: linkIdOf(req.from.siteId, req.to.siteId), startMs: now, lastMs: now, phase: 'preparing',
      rateBpms: (capMbps * 1e6) / 8 / 1000, capMbps, prepRemainingMs: Math.max(0, this.prepareMs(req)),
      diskRemaining: diskBytes, roundRemaining: 0, dirtied: 0, round: 0, switchRemaining: 0, postRemaining: 0,
      transferred: 0, totalBytes: diskBytes + memBytes, downtimeLimitMs: req.policy.maxDowntimeMs, downtimeMs: null,
      switchStartMs: 0, bestRemaining: Infinity, bestAtMs: now, stallIdx: 0, stallActions: [],
      settings: [
        { name: 'max-bandwidth', value: Math.round(capMbps * 10) / 10, reason: req.bandwidthCapMbps !== undefined ? 'admission cap (the link share split between its migrations)' : `the link's spare bandwidth, ${Math.round(spare)} Mbit/s` },
        { name: 'downtime-limit', value: req.policy.maxDowntimeMs, reason: 'the policy\'s pause limit' },
        { name: 'post-copy', value: req.policy.postCopyAllowed, reason: req.policy.postCopyAllowed ? 'allowed by policy, used only on a stall' : 'not allowed by policy' },
        { name: 'storage', value: req.storage, reason: req.storage === 'mirror' ? `${fmtMiB(diskBytes)} of disk copied first` : 'shared storage' },
      ],
      lastEmitMs: now, lastTickMs: -1, sameTimeTicks: 0, ended: false, abortReason: null, dueMs: null, switched: false, cancelTimer: null, subscribers: new Set(), observers: new Set(), done, resolveDone,
    };
    this.jobsSeen.add(req.jobId);
    this.active.set(req.vm, m);
    this.place(req.vm, req.to, 'incoming', req.shape.memoryMiB);
    this.schedule(m);
    return m;
  }

  /** @internal */
  handle(m: Migration): SimMigrationHandle {
    return {
      observe: (fn) => {
        if (m.ended) return () => undefined;
        m.observers.add(fn);
        return () => {
          m.observers.delete(fn);
        };
      },
      progressNow: () => {
        if (!m.ended) this.advance(m, this.timers.nowMs());
        return this.snapshot(m);
      },
      jobId: m.req.jobId,
      done: m.done,
      progress: () => this.subscribe(m),
      abort: (reason) => this.abort(m, reason),
      setBandwidthCap: (capMbps) => {
        if (!m.ended) {
          this.advance(m, this.timers.nowMs());
          const capped = Math.max(0, Math.min(capMbps, spareMbps(m.req.link)));
          m.capMbps = capped;
          m.rateBpms = (capped * 1e6) / 8 / 1000;
          if (!m.ended && m.phase !== 'aborting' && m.phase !== 'completed') this.schedule(m);
        }
        return Promise.resolve();
      },
    };
  }

  /** @internal */
  presence(req: MigrationRequest): Presence {
    return {
      vm: req.vm,
      source: this.instanceAt(req.vm, req.from)?.state ?? 'absent',
      destination: this.instanceAt(req.vm, req.to)?.state ?? 'absent',
      migrationCompleted: this.switched.has(req.jobId),
    };
  }

  /** @internal Resolves once the VM runs at the destination only. */
  async finish(req: MigrationRequest): Promise<void> {
    const what = `Cannot finish migration ${req.jobId} of ${req.vm}`;
    const m = this.active.get(req.vm);
    if (m !== undefined && m.req.jobId === req.jobId && !m.ended) {
      if (!m.switched) {
        throw new AppError('MIGRATION_FINISH_IMPOSSIBLE', `${what}: it is still in ${m.phase}, the destination holds no whole guest; roll back instead`);
      }
      await m.done;
    }
    const dst = this.instanceAt(req.vm, req.to);
    if (dst === undefined || (dst.state !== 'running' && dst.state !== 'paused')) {
      // The migration may have moved on since it was inspected (aborted on its deadline): decide again.
      const src = this.instanceAt(req.vm, req.from);
      const retryable = src !== undefined && (src.state === 'running' || src.state === 'paused');
      throw new AppError('MIGRATION_FINISH_IMPOSSIBLE', `${what}: the destination is ${dst?.state ?? 'absent'} (source ${src?.state ?? 'absent'})`, { retryable });
    }
    if (dst.state === 'paused' && this.cut.has(linkIdOf(req.from.siteId, req.to.siteId))) {
      // A post-copy that lost its link waits for the pages still at the source.
      throw new AppError('MIGRATION_LINK_DOWN', `${what}: the destination is paused waiting for pages and the link is cut`, { retryable: true });
    }
    dst.state = 'running';
    this.remove(req.vm, req.from);
  }

  /** @internal Resolves once the VM runs at the source only. */
  async rollBack(req: MigrationRequest): Promise<void> {
    const what = `Cannot roll back migration ${req.jobId} of ${req.vm}`;
    const m = this.active.get(req.vm);
    if (m !== undefined && m.req.jobId === req.jobId && !m.ended) {
      if (m.switched) {
        throw new AppError('MIGRATION_ROLLBACK_IMPOSSIBLE', `${what}: the guest already runs at the destination (${m.phase})`, { retryable: true });
      }
      await this.abort(m, 'rolled back by reconciliation');
    }
    const src = this.instanceAt(req.vm, req.from);
    if (src === undefined || src.state === 'incoming') {
      // The migration may have completed since it was inspected: decide again.
      const dst = this.instanceAt(req.vm, req.to);
      const retryable = dst !== undefined && (dst.state === 'running' || dst.state === 'paused');
      throw new AppError('MIGRATION_ROLLBACK_IMPOSSIBLE', `${what}: the source is ${src?.state ?? 'absent'} (destination ${dst?.state ?? 'absent'})`, { retryable });
    }
    src.state = 'running';
    this.remove(req.vm, req.to);
  }

  // ---- the model -----------------------------------------------------------------------------------------------

  private instanceAt(vm: VmId, at: Placement): SimInstance | undefined {
    return (this.vms.get(vm) ?? []).find((i) => samePlace(i.placement, at));
  }

  private place(vm: VmId, at: Placement, state: InstanceState, memoryMiB: number): void {
    const list = this.vms.get(vm) ?? [];
    const i = list.find((x) => samePlace(x.placement, at));
    if (i !== undefined) i.state = state;
    else list.push({ placement: at, state, memoryMiB });
    this.vms.set(vm, list);
    this.changed();
  }

  private setState(vm: VmId, at: Placement, state: InstanceState): void {
    const i = this.instanceAt(vm, at);
    if (i !== undefined) i.state = state;
    this.changed();
  }

  private remove(vm: VmId, at: Placement): void {
    const list = this.vms.get(vm);
    if (list === undefined) return;
    const rest = list.filter((i) => !samePlace(i.placement, at));
    if (rest.length > 0) this.vms.set(vm, rest);
    else this.vms.delete(vm);
    this.changed();
  }

  private remainingBytes(m: Migration): number {
    const mem = m.req.shape.memoryMiB * MiB;
    switch (m.phase) {
      case 'preparing':
      case 'mirroring-disk':
        return m.diskRemaining + mem;
      case 'precopy':
        return m.roundRemaining + m.dirtied;
      case 'switching-over':
        return m.switchRemaining;
      case 'postcopy':
        return m.postRemaining;
      default:
        return 0;
    }
  }

  /** Moves the migration's transfer forward to `now` at its rate, crossing phase boundaries on the way. */
  private advance(m: Migration, now: number): void {
    const ws = Math.min(m.req.shape.workingSetMiB, m.req.shape.memoryMiB) * MiB;
    const dirtyBpms = (m.req.shape.dirtyRateMiBps * MiB) / 1000;
    let t = m.lastMs;
    for (let guard = 0; !m.ended && guard < 100_000; guard++) {
      if (m.phase === 'preparing') {
        const dt = Math.max(0, Math.min(m.prepRemainingMs, now - t));
        m.prepRemainingMs -= dt;
        t += dt;
        if (m.prepRemainingMs <= 1e-9) this.afterPrepare(m, t);
        else break;
        continue;
      }
      const left = this.pieceLeft(m);
      if (left === null || m.rateBpms <= 0) break; // nothing moves (aborting, completed, or no bandwidth)
      const piece = Math.max(0, left);
      const need = piece / m.rateBpms;
      const avail = Math.max(0, now - t);
      // A piece due within a nanosecond is done: float residue must not leave a tick due at `now` forever.
      const whole = need <= avail + 1e-6;
      if (!whole && avail <= 0) break;
      const dt = whole ? Math.min(need, avail) : avail;
      const sent = whole ? piece : m.rateBpms * dt;
      if (m.phase === 'mirroring-disk') m.diskRemaining -= sent;
      else if (m.phase === 'precopy') m.roundRemaining -= sent;
      else if (m.phase === 'switching-over') m.switchRemaining -= sent;
      else m.postRemaining -= sent;
      m.transferred += sent;
      if (m.phase === 'precopy') m.dirtied = Math.min(ws, m.dirtied + dirtyBpms * dt);
      t += dt;
      if (whole) this.boundary(m, t);
    }
    m.lastMs = Math.max(m.lastMs, now);
  }

  /** Bytes left in the transfer under way (null when none is: preparing, aborting, ended). */
  private pieceLeft(m: Migration): number | null {
    switch (m.phase) {
      case 'mirroring-disk':
        return m.diskRemaining;
      case 'precopy':
        return m.roundRemaining;
      case 'switching-over':
        return m.switchRemaining;
      case 'postcopy':
        return m.postRemaining;
      default:
        return null;
    }
  }

  private afterPrepare(m: Migration, t: number): void {
    if (this.cut.has(m.link)) {
      this.fail(m, `the destination at ${m.req.to.siteId} cannot be reached: the WAN link ${m.link} is cut`);
      return;
    }
    if (m.diskRemaining > 0) {
      m.phase = 'mirroring-disk';
      return;
    }
    this.startPrecopy(m, t);
  }

  private startPrecopy(m: Migration, t: number): void {
    m.phase = 'precopy';
    m.bestRemaining = Infinity;
    m.bestAtMs = t;
    this.nextRound(m, m.req.shape.memoryMiB * MiB, t);
  }

  /** Pre-copy's decision at a round's end, as in estimateMigration: stop-and-copy once a round fits the pause. */
  private nextRound(m: Migration, volume: number, t: number): void {
    const stopBytes = m.rateBpms * m.downtimeLimitMs;
    m.dirtied = 0;
    if (volume <= stopBytes) {
      m.phase = 'switching-over';
      m.switchRemaining = volume;
      m.switchStartMs = t;
      this.setState(m.req.vm, m.req.from, 'paused');
      if (volume <= 0) this.switchedOver(m, t);
      return;
    }
    m.round++;
    m.roundRemaining = volume;
    if (m.round === 2) {
      m.bestRemaining = volume;
      m.bestAtMs = t;
    }
  }

  private boundary(m: Migration, t: number): void {
    switch (m.phase) {
      case 'mirroring-disk':
        this.startPrecopy(m, t);
        break;
      case 'precopy':
        this.nextRound(m, m.dirtied, t);
        break;
      case 'switching-over':
        m.downtimeMs = t - m.switchStartMs;
        this.switchedOver(m, t);
        break;
      case 'postcopy':
        this.switchedOver(m, t);
        break;
      default:
        break;
    }
  }

  /** The guest runs at the destination with all its memory; the source is released a moment later. */
  private switchedOver(m: Migration, t: number): void {
    m.phase = 'completed';
    m.switched = true;
    this.switched.add(m.req.jobId);
    this.setState(m.req.vm, m.req.from, 'postmigrate');
    this.setState(m.req.vm, m.req.to, 'running');
    this.armRelease(m, t + this.releaseMs);
  }

  private armRelease(m: Migration, atMs: number): void {
    m.cancelTimer?.();
    m.dueMs = atMs;
    m.cancelTimer = this.timers.at(atMs, () => {
      this.remove(m.req.vm, m.req.from);
      this.end(m, 'completed', null);
    });
  }

  private armAbortEnd(m: Migration, atMs: number, reason: string): void {
    m.cancelTimer?.();
    m.abortReason = reason;
    m.dueMs = atMs;
    m.cancelTimer = this.timers.at(atMs, () => {
      m.cancelTimer = null;
      this.setState(m.req.vm, m.req.from, 'running');
      this.remove(m.req.vm, m.req.to);
      this.end(m, 'aborted', `${reason}; the VM runs at the source ${m.req.from.siteId}`);
    });
  }

  private enterPostcopy(m: Migration, t: number): void {
    m.phase = 'postcopy';
    m.switched = true;
    m.postRemaining = m.roundRemaining + m.dirtied;
    m.roundRemaining = 0;
    m.dirtied = 0;
    // The pause while the CPU state crosses; pages then come on demand.
    m.downtimeMs = m.req.link.rttMs;
    this.setState(m.req.vm, m.req.from, 'postmigrate');
    this.setState(m.req.vm, m.req.to, 'running');
    if (m.postRemaining <= 0) this.switchedOver(m, t);
  }

  private stallAction(m: Migration, t: number): void {
    const list = m.req.policy.onStall;
    const stuck = `remaining ${fmtMiB(this.remainingBytes(m))} has not fallen for ${fmtS(t - m.bestAtMs)}`;
    if (list.length === 0) {
      m.bestAtMs = t; // no action named: the deadline will decide
      return;
    }
    for (;;) {
      const i = Math.min(m.stallIdx, list.length - 1);
      const action = list[i]!;
      const last = i === list.length - 1;
      let applied = false;
      if (action === 'raise-downtime') {
        const raised = raisedDowntimeMs(m.downtimeLimitMs, m.req.policy.maxDowntimeCeilingMs);
        if (raised !== null) {
          m.downtimeLimitMs = raised;
          applied = true;
        }
      } else if (action === 'post-copy') {
        applied = m.req.policy.postCopyAllowed;
      } else {
        applied = true;
      }
      if (!last) m.stallIdx++;
      if (applied) {
        m.stallActions.push(action);
        m.bestAtMs = t;
        m.bestRemaining = this.remainingBytes(m);
        if (action === 'post-copy') this.enterPostcopy(m, t);
        else if (action === 'abort') void this.beginAbort(m, `stalled: ${stuck}; stall actions taken: ${m.stallActions.join(', ')}`);
        else if (this.remainingBytes(m) <= m.rateBpms * m.downtimeLimitMs) {
          // The raised limit already covers what is left: switch over now, as QEMU would.
          const volume = this.remainingBytes(m);
          m.roundRemaining = 0;
          this.nextRound(m, volume, t);
        }
        return;
      }
      if (last) {
        m.stallActions.push('abort');
        void this.beginAbort(m, `stalled: ${stuck}; no stall action left that applies (${action} cannot)`);
        return;
      }
    }
  }

  /** Runs at each wake-up: move bytes, then deadline, stall, progress; then sleep until the next happening. */
  private tick(m: Migration): void {
    m.cancelTimer = null;
    const now = this.timers.nowMs();
    const before = m.phase;
    this.advance(m, now);
    if (m.ended || phaseOf(m) === 'completed') return;
    // Same-instant wake-ups are bounded: a model bug must end the migration, not spin the event loop.
    m.sameTimeTicks = now === m.lastTickMs ? m.sameTimeTicks + 1 : 0;
    m.lastTickMs = now;
    if (m.sameTimeTicks > 1000) {
      this.fail(m, `the simulation made no progress at ${now} ms in ${m.phase} (internal error)`);
      return;
    }
    if (m.phase !== 'postcopy' && m.phase !== 'aborting' && now >= m.startMs + m.req.policy.deadlineMs) {
      void this.beginAbort(m, `the deadline of ${fmtS(m.req.policy.deadlineMs)} passed in ${m.phase} with ${fmtMiB(this.remainingBytes(m))} left`);
      return;
    }
    // Stalls are watched from the second round: the first pass over memory always moves forward.
    if (m.phase === 'precopy' && m.round >= 2) {
      const rem = this.remainingBytes(m);
      if (rem < m.bestRemaining) {
        m.bestRemaining = rem;
        m.bestAtMs = now;
      } else if (now >= m.bestAtMs + m.req.policy.stallTimeoutMs) {
        this.stallAction(m, now);
        if (m.ended || phaseOf(m) === 'aborting') return;
      }
    }
    // Compared as `now >= due` with the same sum schedule() used, so float rounding cannot skip a due snapshot.
    if (phaseOf(m) !== before || now >= m.lastEmitMs + this.progressIntervalMs) this.emit(m);
    if (phaseOf(m) !== 'completed') this.schedule(m);
    this.changed();
  }

  private schedule(m: Migration): void {
    m.cancelTimer?.();
    const now = this.timers.nowMs();
    let next = m.lastEmitMs + this.progressIntervalMs;
    if (m.phase === 'preparing') next = Math.min(next, now + m.prepRemainingMs);
    else if (m.rateBpms > 0) {
      const left = this.pieceLeft(m);
      if (left !== null) next = Math.min(next, now + Math.max(0, left) / m.rateBpms);
    }
    if (m.phase !== 'postcopy') next = Math.min(next, m.startMs + m.req.policy.deadlineMs);
    if (m.phase === 'precopy' && m.round >= 2) next = Math.min(next, m.bestAtMs + m.req.policy.stallTimeoutMs);
    m.cancelTimer = this.timers.at(Math.max(next, now), () => this.tick(m));
  }

  private beginAbort(m: Migration, reason: string): Promise<void> {
    if (m.ended || m.phase === 'aborting' || m.switched) return m.done.then(() => undefined);
    m.cancelTimer?.();
    m.phase = 'aborting';
    this.emit(m);
    // Cancelling at the source and stopping the destination take about one round trip.
    this.armAbortEnd(m, this.timers.nowMs() + Math.max(1, m.req.link.rttMs), reason);
    this.changed();
    return m.done.then(() => undefined);
  }

  private abort(m: Migration, reason: string): Promise<void> {
    if (!m.ended) this.advance(m, this.timers.nowMs());
    return this.beginAbort(m, reason);
  }

  private fail(m: Migration, why: string): void {
    m.cancelTimer?.();
    m.cancelTimer = null;
    if (m.switched) {
      // Post-copy: the guest runs at the destination but part of its memory is still at the source.
      const dst = this.instanceAt(m.req.vm, m.req.to);
      if (dst !== undefined) dst.state = 'paused';
      this.end(m, 'failed', dst !== undefined
        ? `${why}; post-copy had begun: the guest is paused at ${m.req.to.siteId} waiting for pages the source still holds`
        : `${why}; post-copy had begun, so the source's memory is stale: the guest is lost`);
      return;
    }
    const src = this.instanceAt(m.req.vm, m.req.from);
    if (src !== undefined && src.state === 'paused') src.state = 'running';
    this.remove(m.req.vm, m.req.to);
    this.end(m, 'failed', src !== undefined ? `${why}; the VM runs at the source ${m.req.from.siteId}` : `${why}; no instance is left at the source`);
  }

  private end(m: Migration, status: MigrationOutcome['status'], reason: string | null): void {
    if (m.ended) return;
    const now = this.timers.nowMs();
    m.ended = true;
    m.phase = status;
    m.cancelTimer?.();
    m.cancelTimer = null;
    if (this.active.get(m.req.vm) === m) this.active.delete(m.req.vm);
    this.changed();
    this.emit(m);
    for (const s of m.subscribers) {
      s.closed = true;
      s.wake?.();
    }
    m.subscribers.clear();
    const atDestination = status === 'completed' || (status === 'failed' && m.switched);
    const outcome: MigrationOutcome = {
      jobId: m.req.jobId,
      status,
      runningAt: atDestination ? m.req.to : m.req.from,
      durationMs: now - m.startMs,
      downtimeMs: m.downtimeMs,
      transferredBytes: m.transferred,
      settings: m.settings,
      stallActions: [...m.stallActions],
      reason,
    };
    const observers = [...m.observers];
    m.observers.clear();
    for (const fn of observers) fn({ type: 'done', outcome, precopyRounds: m.round });
    m.resolveDone(outcome);
  }

  private snapshot(m: Migration): MigrationProgress {
    const now = this.timers.nowMs();
    const remaining = this.remainingBytes(m);
    const moving = !m.ended && m.phase !== 'aborting' && m.phase !== 'preparing' && m.phase !== 'completed' && m.rateBpms > 0;
    return {
      jobId: m.req.jobId,
      phase: m.phase,
      atMs: now,
      elapsedMs: now - m.startMs,
      transferredBytes: m.transferred,
      remainingBytes: remaining,
      totalBytes: m.totalBytes,
      diskRemainingBytes: m.diskRemaining,
      dirtyRateBytesPerS: m.phase === 'precopy' || m.phase === 'mirroring-disk' ? m.req.shape.dirtyRateMiBps * MiB : 0,
      throughputMbps: moving ? m.capMbps : 0,
      expectedDowntimeMs: m.phase === 'precopy' && m.rateBpms > 0 ? m.dirtied / m.rateBpms : m.downtimeMs,
      etaS: moving ? remaining / m.rateBpms / 1000 : null,
      downtimeLimitMs: m.downtimeLimitMs,
      stallActions: [...m.stallActions],
    };
  }

  private emit(m: Migration): void {
    m.lastEmitMs = this.timers.nowMs();
    if (m.subscribers.size === 0 && m.observers.size === 0) return;
    const p = this.snapshot(m);
    for (const fn of m.observers) fn({ type: 'progress', progress: p });
    for (const s of m.subscribers) {
      s.queue.push(p);
      s.wake?.();
    }
  }

  private subscribe(m: Migration): AsyncIterable<MigrationProgress> {
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<MigrationProgress> => {
        // A new subscriber starts with where the migration stands now.
        const s: Subscriber = { queue: m.ended ? [] : [this.snapshot(m)], wake: null, closed: m.ended };
        if (!m.ended) m.subscribers.add(s);
        return {
          next: async (): Promise<IteratorResult<MigrationProgress>> => {
            for (;;) {
              const p = s.queue.shift();
              if (p !== undefined) return { value: p, done: false };
              if (s.closed) return { value: undefined, done: true };
              await new Promise<void>((resolve) => {
                s.wake = resolve;
              });
              s.wake = null;
            }
          },
          return: (): Promise<IteratorResult<MigrationProgress>> => {
            s.closed = true;
            m.subscribers.delete(s);
            return Promise.resolve({ value: undefined, done: true });
          },
        };
      },
    };
  }
}

/**
 * The driver's start, synchronously: the simulator's engine runs on a virtual clock without an event loop.
 * Throws what the driver's start() rejects with.
 */
export function startSimMigration(world: SimWorld, req: MigrationRequest): SimMigrationHandle {
  return world.handle(world.start(req));
}

/** The driver over a world. Several drivers may share one world: that is a manager restarting. */
export function createSimDriver(world: SimWorld): MigrationDriver {
  return {
    kind: 'sim',
    start(req) {
      try {
        return Promise.resolve(startSimMigration(world, req));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    inspect: (req) => Promise.resolve(world.presence(req)),
    finish: (req) => world.finish(req),
    rollBack: (req) => world.rollBack(req),
  };
}
