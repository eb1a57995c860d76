// The executor: turns a plan's moves into migration jobs, admits them under the limits, drives each through
// job.ts's state machine with a MigrationDriver, persists every phase before acting on it, and after a
// restart reconciles what the store says was in flight with what the hypervisors say.
import type { Clock } from '../core/clock.js';
import { AppError, InputError, isAppError } from '../core/errors.js';
import { linkIdOf, type LinkId, type VmId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { spareMbps } from '../placement/cost.js';
import type { Move, Plan } from '../placement/plan.js';
import type { MigrationDriver, MigrationHandle, MigrationProgress, MigrationRequest } from './driver.js';
import {
  applyEvent, isTerminal, label, newJobRecord, type Effect, type JobEvent, type JobRecord,
} from './job.js';
import { admit, supersededBy, type FinishedJob, type QueueLimits, type QueuedJob, type RunningJob } from './queue.js';
import type { JobStore } from './store.js';

export type RecheckResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Checks a move against fresh state just before it starts (a plan is a proposal; Nomad's plan applier). */
export type Recheck = (move: Move, job: JobRecord) => RecheckResult | Promise<RecheckResult>;

export interface SubmitContext {
  /** Names the plan; `after` dependencies are matched within it. Default: `plan-<atMs>-<n>`. */
  readonly planId?: string;
  /** The driver's request for a move: measured link, VM shape, storage, policy. Its jobId must be `jobId`. */
  request(move: Move, jobId: string): MigrationRequest;
  /** Overrides the executor's recheck for this plan's moves. */
  readonly recheck?: Recheck;
}

export interface SubmitResult {
  readonly planId: string;
  readonly jobs: readonly JobRecord[];
  /** Queued jobs of older plans this plan superseded. */
  readonly superseded: readonly string[];
  /** Moves not turned into jobs, and why (a VM already being moved). */
  readonly rejected: readonly { readonly vm: VmId; readonly reason: string }[];
}

/** 'job': a job changed state (a new phase included); 'progress': a snapshot arrived; 'alert': an operator must look. */
export type ExecutorEvent =
  | { readonly type: 'job'; readonly job: JobRecord }
  | { readonly type: 'progress'; readonly job: JobRecord; readonly progress: MigrationProgress }
  | { readonly type: 'alert'; readonly job: JobRecord; readonly message: string };

export interface ReconcileEntry {
  readonly id: string;
  readonly vm: VmId;
  /** The state found in the store. */
  readonly found: string;
  /** The state after reconciling ('queued' for a job that had not started; unchanged if the driver did not answer). */
  readonly now: string;
  readonly note: string;
}

export interface ExecutorOptions {
  readonly driver: MigrationDriver;
  readonly store: JobStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly limits: QueueLimits;
  /** Default recheck for every move (and for queued jobs found after a restart). */
  readonly recheck?: Recheck;
  /** Job ids; default crypto.randomUUID-based. */
  readonly newId?: () => string;
  /** How many times a finish or roll-back that failed retryably is re-decided from a fresh inspect. Default 3. */
  readonly reconcileAttempts?: number;
  /** Ended jobs kept in memory for list()/get() (the store keeps them all). Default 1000. */
  readonly keepFinished?: number;
}

export interface Executor {
  submit(plan: Plan, ctx: SubmitContext): Promise<SubmitResult>;
  /** Aborts a job (or cancels it if still queued). `refused` says why not, e.g. a job already in post-copy. */
  cancel(jobId: string, reason?: string): Promise<{ readonly job: JobRecord; readonly refused: string | null }>;
  list(): JobRecord[];
  get(jobId: string): JobRecord | undefined;
  readonly events: { on(listener: (e: ExecutorEvent) => void): () => void };
  /** At start: every non-terminal job in the store is finished or rolled back (queued ones re-queued). */
  reconcile(): Promise<ReconcileEntry[]>;
  /** Resolves once no work is pending (no event being applied, no driver call outstanding). */
  settled(): Promise<void>;
  /** Stops reacting to anything, without touching drivers or the store: what a crash or shutdown does. */
  halt(): void;
}

interface Live {
  record: JobRecord;
  handle: MigrationHandle | null;
  chain: Promise<unknown>;
  readonly inflight: Set<Promise<unknown>>;
  recheck: Recheck | undefined;
  seq: number;
  stallSeen: number;
  attempts: number;
}

const ACTIVE_KINDS = new Set(['starting', 'running', 'aborting', 'verifying', 'finishing', 'rolling-back']);

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function createExecutor(opts: ExecutorOptions): Executor {
  const { driver, store, clock, log } = opts;
  const newId = opts.newId ?? (() => `mig-${globalThis.crypto.randomUUID()}`);
  const maxAttempts = opts.reconcileAttempts ?? 3;
  const jobs = new Map<string, Live>();
  let finished: FinishedJob[] = [];
  const listeners = new Set<(e: ExecutorEvent) => void>();
  const inflight = new Set<Promise<unknown>>();
  let halted = false;
  let seq = 0;
  let planSeq = 0;
  let pumping = false;
  let pumpAgain = false;

  /**
   * Work the executor waits for in `settled()`: events being applied and short driver calls. A migration's
   * own course (its progress, its `done`, an abort's wait for the source) is not tracked, so that `settled()`
   * never waits for a simulated clock that only the caller can move.
   */
  const track = <T>(p: Promise<T>, live?: Live): Promise<T> => {
    inflight.add(p);
    live?.inflight.add(p);
    const drop = (): void => {
      inflight.delete(p);
      live?.inflight.delete(p);
    };
    void p.then(drop, drop);
    return p;
  };

  /** Resolves once a job has no event and no driver call outstanding. */
  const jobSettled = async (live: Live): Promise<void> => {
    for (let i = 0; i < 10_000 && live.inflight.size > 0; i++) await Promise.allSettled([...live.inflight]);
  };

  /** Changes fields of a record in order with its events (no transition, nothing persisted). */
  const patchRecord = (live: Live, fields: Partial<JobRecord>): void => {
    live.chain = live.chain.then(() => {
      live.record = { ...live.record, ...fields };
    });
  };

  const emit = (e: ExecutorEvent): void => {
    for (const l of listeners) {
      try {
        l(e);
      } catch (err) {
        log.error('executor event listener threw', { error: message(err) });
      }
    }
  };

  /** Applies one event to a job, in order with the job's other events, then performs its effects. */
  const dispatch = (live: Live, event: JobEvent, patch?: Partial<JobRecord>, progress?: MigrationProgress): Promise<boolean> => {
    const run = live.chain.then(() => apply(live, event, patch, progress));
    live.chain = run.catch(() => undefined);
    return track(run, live);
  };

  const apply = async (live: Live, event: JobEvent, patch?: Partial<JobRecord>, progress?: MigrationProgress): Promise<boolean> => {
    if (halted) return false;
    const before = live.record;
    const base = patch === undefined ? before : { ...before, ...patch };
    const r = applyEvent(base, event, clock.nowMs());
    if (!r.ok) {
      log.warn('job event refused', { job: before.id, vm: before.vm, event: event.type, state: label(before.state), why: r.rejection.message });
      return false;
    }
    live.record = r.record;
    for (const eff of r.effects) {
      if (!(await perform(live, eff, before, progress))) return false;
    }
    if (isTerminal(live.record.state) && !isTerminal(before.state)) {
      finished.push({ planId: live.record.planId, vm: live.record.vm, ok: live.record.state.kind === 'completed' });
      const s = live.record.state;
      const fields = { job: live.record.id, vm: live.record.vm, state: s.kind, ...('reason' in s ? { reason: s.reason } : {}) };
      if (s.kind === 'completed') log.info('migration completed', { ...fields, to: live.record.move.to });
      else if (s.kind === 'failed' || s.kind === 'rolled-back') log.error('migration ended without moving the VM', fields);
      else log.info('migration ended', fields);
      prune();
      schedulePump();
    }
    return true;
  };

  const perform = async (live: Live, eff: Effect, before: JobRecord, progress?: MigrationProgress): Promise<boolean> => {
    const rec = live.record;
    switch (eff.type) {
      case 'persist':
        try {
          await store.save(rec);
        } catch (e) {
          // Not recorded, so not acted on: the job stays as it was.
          live.record = before;
          log.error('could not persist a job phase; not acting on it', { job: rec.id, vm: rec.vm, state: label(rec.state), error: message(e) });
          emit({ type: 'alert', job: before, message: `Cannot record job ${rec.id} as ${label(rec.state)}: ${message(e)}` });
          return false;
        }
        return true;
      case 'emit':
        if (progress !== undefined) emit({ type: 'progress', job: rec, progress });
        if (progress === undefined || label(before.state) !== label(rec.state)) emit({ type: 'job', job: rec });
        return true;
      case 'start-driver':
        startDriver(live, eff.capMbps);
        return true;
      case 'abort-driver':
        // The abort's outcome arrives through the handle's `done`.
        if (live.handle !== null) void live.handle.abort(eff.reason).catch((e: unknown) => log.error('driver abort failed', { job: rec.id, error: message(e) }));
        return true;
      case 'inspect':
        void track(driver.inspect(rec.request).then(
          (presence) => dispatch(live, { type: 'inspected', presence }),
          (e: unknown) => dispatch(live, { type: 'reconcile-failed', reason: `the driver could not say where the VM is: ${message(e)}` }),
        ), live);
        return true;
      case 'finish':
      case 'roll-back':
        settleSides(live, eff.type);
        return true;
      case 'alert':
        log.error(eff.message, { job: rec.id, vm: rec.vm });
        emit({ type: 'alert', job: rec, message: eff.message });
        return true;
    }
  };

  /** Bounds memory in a long-lived manager: old ended jobs leave, and outcomes no queued job waits on. */
  const prune = (): void => {
    const ended = [...jobs.values()].filter((l) => isTerminal(l.record.state));
    const excess = ended.length - (opts.keepFinished ?? 1000);
    if (excess > 0) {
      ended.sort((a, b) => a.record.updatedAtMs - b.record.updatedAtMs);
      for (const l of ended.slice(0, excess)) jobs.delete(l.record.id);
    }
    const waiting = new Set([...jobs.values()].filter((l) => l.record.state.kind === 'queued').map((l) => l.record.planId));
    if (finished.length > 100) finished = finished.filter((f) => waiting.has(f.planId));
  };

  const settleSides = (live: Live, action: 'finish' | 'roll-back'): void => {
    const req = live.record.request;
    const act = action === 'finish' ? driver.finish(req) : driver.rollBack(req);
    void track(act.then(
      () => dispatch(live, { type: 'reconcile-done' }),
      async (e: unknown) => {
        live.attempts++;
        if (isAppError(e) && e.retryable && live.attempts < maxAttempts) {
          log.warn(`${action} failed, deciding again from a fresh inspect`, { job: live.record.id, error: message(e), attempt: live.attempts });
          try {
            const presence = await driver.inspect(req);
            return dispatch(live, { type: 'inspected', presence });
          } catch (e2) {
            return dispatch(live, { type: 'reconcile-failed', reason: `${action} failed (${message(e)}), then inspect failed: ${message(e2)}` });
          }
        }
        return dispatch(live, { type: 'reconcile-failed', reason: `${action} failed: ${message(e)}` });
      },
    ), live);
  };

  const startDriver = (live: Live, capMbps: number): void => {
    const req: MigrationRequest = { ...live.record.request, bandwidthCapMbps: capMbps };
    void track(driver.start(req).then(
      (h) => {
        if (halted) return;
        live.handle = h;
        attach(live, h);
        return dispatch(live, { type: 'driver-started' });
      },
      (e: unknown) => dispatch(live, { type: 'driver-start-failed', reason: message(e) }),
    ), live);
  };

  const noteStalls = (live: Live, actions: readonly string[]): void => {
    while (live.stallSeen < actions.length) {
      const action = actions[live.stallSeen++] as 'raise-downtime' | 'post-copy' | 'abort';
      void dispatch(live, { type: 'stall-action', action });
    }
  };

  const attach = (live: Live, h: MigrationHandle): void => {
    // The progress stream must be open before the first snapshot, so it is taken at once.
    const stream = h.progress();
    void (async () => {
      try {
        for await (const p of stream) {
          if (halted) break;
          noteStalls(live, p.stallActions);
          void dispatch(live, { type: 'progress', phase: p.phase }, { progress: p }, p);
        }
      } catch (e) {
        log.warn('progress stream broke; waiting for the outcome', { job: live.record.id, error: message(e) });
      }
    })();
    void h.done.then((outcome) => {
      if (halted) return;
      noteStalls(live, outcome.stallActions);
      const at = outcome.runningAt.siteId === live.record.request.to.siteId
        && (outcome.runningAt.hostId ?? null) === (live.record.request.to.hostId ?? null) ? 'destination' : 'source';
      return dispatch(live, { type: 'driver-done', status: outcome.status, at, reason: outcome.reason }, { outcome });
    });
  };

  // ---- admission -------------------------------------------------------------------------------------------------

  const schedulePump = (): void => {
    if (halted) return;
    if (pumping) {
      pumpAgain = true;
      return;
    }
    pumping = true;
    void track((async () => {
      try {
        for (let i = 0; i < 1000; i++) {
          pumpAgain = false;
          await pumpOnce();
          if (!pumpAgain || halted) break;
        }
      } catch (e) {
        log.error('admission failed', { error: message(e) });
      } finally {
        pumping = false;
      }
    })());
  };

  const pumpOnce = async (): Promise<void> => {
    const lives = [...jobs.values()];
    const linkOf = (r: JobRecord): LinkId => linkIdOf(r.move.from, r.move.to);
    const queued: QueuedJob[] = [];
    const running: RunningJob[] = [];
    const spare = new Map<LinkId, { atMs: number; mbps: number }>();
    for (const l of lives) {
      const r = l.record;
      const link = linkOf(r);
      const s = spare.get(link);
      if (s === undefined || r.createdAtMs >= s.atMs) spare.set(link, { atMs: r.createdAtMs, mbps: spareMbps(r.request.link) });
      if (r.state.kind === 'queued') {
        queued.push({
          id: r.id, vm: r.vm, planId: r.planId, seq: l.seq, linkId: link, benefit: r.move.benefit, costS: r.move.costS,
          bytes: r.move.bytes, after: r.move.after,
        });
      } else if (ACTIVE_KINDS.has(r.state.kind)) {
        running.push({
          id: r.id, vm: r.vm, planId: r.planId, linkId: link, capMbps: r.capMbps ?? 0,
          recappable: r.state.kind === 'running' && l.handle?.setBandwidthCap !== undefined,
        });
      }
    }
    if (queued.length === 0 && running.length === 0) return;
    const a = admit({
      queued, running, finished, limits: opts.limits,
      spareMbps: new Map([...spare].map(([k, v]) => [k, v.mbps])),
    });
    for (const d of a.drop) {
      const l = jobs.get(d.id)!;
      await dispatch(l, { type: 'dependency-failed', vm: d.dependsOn, reason: d.reason });
    }
    for (const r of a.recap) {
      const l = jobs.get(r.id)!;
      patchRecord(l, { capMbps: r.capMbps });
      const h = l.handle;
      if (h?.setBandwidthCap !== undefined) {
        void track(h.setBandwidthCap(r.capMbps).catch((e: unknown) => log.warn('could not change a bandwidth cap', { job: r.id, error: message(e) })));
      }
    }
    for (const s of a.start) {
      if (halted) return;
      const l = jobs.get(s.id)!;
      const check = l.recheck ?? opts.recheck;
      if (check !== undefined) {
        let res: RecheckResult;
        try {
          res = await check(l.record.move, l.record);
        } catch (e) {
          res = { ok: false, reason: `the re-check failed: ${message(e)}` };
        }
        if (!res.ok) {
          log.info('move refused on re-check', { job: l.record.id, vm: l.record.vm, reason: res.reason });
          await dispatch(l, { type: 'recheck-failed', reason: res.reason });
          pumpAgain = true; // its slot is free for the next one
          continue;
        }
      }
      await dispatch(l, { type: 'admitted', capMbps: s.capMbps });
    }
  };

  // ---- the public face ---------------------------------------------------------------------------------------------

  const notHalted = (what: string): void => {
    if (halted) throw new AppError('EXECUTOR_HALTED', `Cannot ${what}: the executor was halted`);
  };

  return {
    async submit(plan, ctx) {
      notHalted('submit a plan');
      const planId = ctx.planId ?? `plan-${plan.atMs}-${++planSeq}`;
      const queuedNow = [...jobs.values()].filter((l) => l.record.state.kind === 'queued');
      const superseded = supersededBy(queuedNow.map((l) => ({
        id: l.record.id, vm: l.record.vm, planId: l.record.planId, seq: l.seq, linkId: linkIdOf(l.record.move.from, l.record.move.to),
        benefit: 0, costS: 0, bytes: 0, after: [],
      })), planId);
      for (const id of superseded) await dispatch(jobs.get(id)!, { type: 'superseded', byPlan: planId });

      const created: JobRecord[] = [];
      const rejected: { vm: VmId; reason: string }[] = [];
      const seen = new Set<VmId>();
      for (const move of plan.moves) {
        const busy = [...jobs.values()].find((l) => l.record.vm === move.vm && !isTerminal(l.record.state));
        if (busy !== undefined || seen.has(move.vm)) {
          rejected.push({
            vm: move.vm,
            reason: busy !== undefined ? `already being moved by job ${busy.record.id} (${label(busy.record.state)})` : 'moved twice in one plan',
          });
          continue;
        }
        seen.add(move.vm);
        const id = newId();
        const request = ctx.request(move, id);
        if (request.jobId !== id || request.vm !== move.vm) {
          throw new InputError('request', { jobId: request.jobId, vm: request.vm }, `must carry jobId ${id} and vm ${move.vm}`);
        }
        const record = newJobRecord({ id, planId, move, request, atMs: clock.nowMs() });
        await store.save(record);
        const live: Live = { record, handle: null, chain: Promise.resolve(), inflight: new Set(), recheck: ctx.recheck, seq: seq++, stallSeen: 0, attempts: 0 };
        jobs.set(id, live);
        created.push(record);
        emit({ type: 'job', job: record });
      }
      log.info('plan submitted', { plan: planId, jobs: created.length, superseded: superseded.length, rejected: rejected.length });
      schedulePump();
      return { planId, jobs: created, superseded, rejected };
    },

    async cancel(jobId, reason = 'cancelled by an operator') {
      notHalted('cancel a job');
      const live = jobs.get(jobId);
      if (live === undefined) throw new AppError('JOB_NOT_FOUND', `Cannot cancel job ${jobId}: this executor has no such job`);
      await live.chain;
      const r = applyEvent(live.record, { type: 'abort-requested', reason }, clock.nowMs());
      if (!r.ok) return { job: live.record, refused: r.rejection.message };
      await dispatch(live, { type: 'abort-requested', reason });
      return { job: live.record, refused: null };
    },

    list: () => [...jobs.values()].map((l) => l.record),
    get: (jobId) => jobs.get(jobId)?.record,

    events: {
      on(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },

    async reconcile() {
      notHalted('reconcile');
      const found = await store.loadActive();
      const report: ReconcileEntry[] = [];
      const pending: { live: Live; found: string }[] = [];
      for (const rec of found) {
        if (jobs.has(rec.id)) continue;
        const live: Live = {
          record: rec, handle: null, chain: Promise.resolve(), inflight: new Set(), recheck: undefined, seq: seq++,
          stallSeen: rec.progress?.stallActions.length ?? 0, attempts: 0,
        };
        jobs.set(rec.id, live);
        if (rec.state.kind === 'queued') {
          // Its plan's finished moves are in the store: `after` needs them.
          for (const dep of rec.move.after) {
            for (const d of await store.listByVm(dep)) {
              if (d.planId === rec.planId && isTerminal(d.state)) finished.push({ planId: d.planId, vm: d.vm, ok: d.state.kind === 'completed' });
            }
          }
          report.push({ id: rec.id, vm: rec.vm, found: 'queued', now: 'queued', note: 'never started; queued again' });
          continue;
        }
        let presence;
        try {
          presence = await driver.inspect(rec.request);
        } catch (e) {
          log.error('cannot reconcile a job: the driver did not say where the VM is', { job: rec.id, vm: rec.vm, error: message(e) });
          report.push({ id: rec.id, vm: rec.vm, found: label(rec.state), now: label(rec.state), note: `inspect failed: ${message(e)}; left as it was` });
          continue;
        }
        log.warn('reconciling a job left in flight', { job: rec.id, vm: rec.vm, state: label(rec.state), source: presence.source, destination: presence.destination, migrationCompleted: presence.migrationCompleted });
        await dispatch(live, { type: 'restart-found', presence });
        pending.push({ live, found: label(rec.state) });
      }
      for (const { live } of pending) await jobSettled(live);
      for (const { live, found: was } of pending) {
        const note = live.record.history.findLast((h) => h.event === 'restart-found')?.note ?? '';
        report.push({ id: live.record.id, vm: live.record.vm, found: was, now: label(live.record.state), note });
      }
      schedulePump();
      return report;
    },

    async settled() {
      // A turn of the event loop first: reactions to what just happened (a driver's `done`) get to start.
      for (let i = 0; i < 10_000; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        if (inflight.size === 0) return;
        await Promise.allSettled([...inflight]);
      }
    },

    halt() {
      halted = true;
    },
  };
}
