// PURE: one migration job as a state union, stepped by events into a new state and a list of effects
// (data the executor performs). Nothing here does I/O or reads a clock: the caller passes the time.
import type { VmId } from '../core/ids.js';
import type { Move } from '../placement/plan.js';
import type {
  InstanceState, MigrationOutcome, MigrationPhase, MigrationProgress, MigrationRequest, Presence, StallAction,
} from './driver.js';

/** The two ends of a migration. */
export type Side = 'source' | 'destination';

/** Driver phases a live job can be in (the terminal ones end the job through `driver-done`). */
export type ActivePhase = Exclude<MigrationPhase, 'completed' | 'aborted' | 'failed'>;

export type CancelCause = 'superseded' | 'recheck' | 'dependency' | 'user';

export type JobState =
  /** Waiting for admission; nothing has been started anywhere. */
  | { readonly kind: 'queued' }
  /** Admitted; `driver.start` called (persisted before the call), no handle yet. */
  | { readonly kind: 'starting'; readonly capMbps: number }
  | { readonly kind: 'running'; readonly phase: ActivePhase }
  /** Abort requested; the driver is bringing the VM back to the source. */
  | { readonly kind: 'aborting'; readonly phase: ActivePhase; readonly reason: string }
  /** The driver reported a failure: the executor asks it where the VM's instances stand. */
  | { readonly kind: 'verifying'; readonly phase: ActivePhase; readonly reason: string }
  /** Reconciliation decided the destination keeps the VM: the source is being released. */
  | { readonly kind: 'finishing'; readonly reason: string }
  /** Reconciliation decided the source keeps the VM: the destination is being stopped. */
  | { readonly kind: 'rolling-back'; readonly reason: string }
  | { readonly kind: 'completed' }
  | { readonly kind: 'aborted'; readonly reason: string }
  | { readonly kind: 'rolled-back'; readonly reason: string }
  /** Never started: superseded by a newer plan, refused on re-check, a dependency failed, or cancelled. */
  | { readonly kind: 'cancelled'; readonly cause: CancelCause; readonly reason: string }
  /** Ended badly. `lost`: no instance holds the VM any more, an operator must act. */
  | { readonly kind: 'failed'; readonly reason: string; readonly at: Side; readonly lost: boolean };

export type JobKind = JobState['kind'];

export const TERMINAL_KINDS: readonly JobKind[] = ['completed', 'aborted', 'rolled-back', 'cancelled', 'failed'];

export function isTerminal(s: JobState): boolean {
  return TERMINAL_KINDS.includes(s.kind);
}

export type JobEvent =
  | { readonly type: 'admitted'; readonly capMbps: number }
  | { readonly type: 'driver-started' }
  | { readonly type: 'driver-start-failed'; readonly reason: string }
  | { readonly type: 'progress'; readonly phase: MigrationPhase }
  | { readonly type: 'stall-action'; readonly action: StallAction }
  | { readonly type: 'abort-requested'; readonly reason: string }
  | { readonly type: 'driver-done'; readonly status: MigrationOutcome['status']; readonly at: Side; readonly reason: string | null }
  /** After a restart: the job was found non-terminal in the store, and this is what the driver sees now. */
  | { readonly type: 'restart-found'; readonly presence: Presence }
  /** The answer to an `inspect` effect. */
  | { readonly type: 'inspected'; readonly presence: Presence }
  | { readonly type: 'reconcile-done' }
  | { readonly type: 'reconcile-failed'; readonly reason: string }
  | { readonly type: 'superseded'; readonly byPlan: string }
  | { readonly type: 'recheck-failed'; readonly reason: string }
  | { readonly type: 'dependency-failed'; readonly vm: VmId; readonly reason: string };

export type Effect =
  | { readonly type: 'persist' }
  | { readonly type: 'emit' }
  | { readonly type: 'start-driver'; readonly capMbps: number }
  | { readonly type: 'abort-driver'; readonly reason: string }
  | { readonly type: 'inspect' }
  | { readonly type: 'finish' }
  | { readonly type: 'roll-back' }
  /** Raise loudly: an operator must look (a VM lost, a reconciliation that failed). */
  | { readonly type: 'alert'; readonly message: string };

export type RejectionCode = 'illegal-transition' | 'post-copy-abort' | 'phase-regression';

export interface StepRejection {
  readonly code: RejectionCode;
  readonly message: string;
}

export type StepResult =
  | { readonly ok: true; readonly state: JobState; readonly effects: readonly Effect[]; readonly note?: string }
  | { readonly ok: false; readonly state: JobState; readonly rejection: StepRejection };

// ---------------------------------------------------------------------------------------------------------------
// Reconciliation: who keeps the VM when the job's fate is unknown (after a restart or a driver failure).

export type ReconcileAction = 'finish' | 'roll-back' | 'lost';

export interface ReconcileDecision {
  readonly action: ReconcileAction;
  readonly reason: string;
}

/** A destination instance in one of these states holds a whole guest that can run. */
export function destinationUsable(s: InstanceState): boolean {
  return s === 'running' || s === 'paused';
}

/**
 * A source instance that can be resumed with a consistent guest: running or paused, or stopped after a
 * pre-copy switch-over (postmigrate; its memory is the guest as of the switch). After post-copy began the
 * source's memory is stale, so a postmigrate source is not usable then.
 */
export function sourceUsable(s: InstanceState, lastPhase: MigrationPhase | null): boolean {
  return s === 'running' || s === 'paused' || (s === 'postmigrate' && lastPhase !== 'postcopy');
}

/**
 * Decides, from what the hypervisors report, which side keeps a VM whose migration's end is unknown, so that
 * afterwards exactly one copy runs. `lastPhase` is the last phase the job recorded (post-copy matters: once
 * the guest ran at the destination the source's memory is stale). 'finish' is only chosen when the
 * destination holds a runnable guest, 'roll-back' only when the source does; 'lost' when neither does.
 */
export function decideReconcile(p: Presence, lastPhase: MigrationPhase | null): ReconcileDecision {
  const S = p.source;
  const D = p.destination;
  const src = sourceUsable(S, lastPhase);
  if (D === 'running' && S === 'running') {
    return p.migrationCompleted
      ? { action: 'finish', reason: 'both copies run and the driver reports the switch-over completed: stop the source' }
      : { action: 'roll-back', reason: 'both copies run but the switch-over never completed: stop the destination' };
  }
  if (D === 'running') {
    return { action: 'finish', reason: `the guest runs at the destination (source ${S}): release the source` };
  }
  if (D === 'paused') {
    if (S === 'running') {
      return { action: 'roll-back', reason: 'the source kept running; the paused destination never took over: stop it' };
    }
    if (p.migrationCompleted || lastPhase === 'postcopy') {
      return {
        action: 'finish',
        reason: p.migrationCompleted
          ? `the switch-over completed and the destination is paused (source ${S}): resume it, release the source`
          : `post-copy had begun, the destination holds the newest guest (source ${S}): resume it`,
      };
    }
    if (src) {
      return { action: 'roll-back', reason: `the switch-over never completed (source ${S}, destination paused): resume the source` };
    }
    return { action: 'finish', reason: `the paused destination is the only copy left (source ${S}): resume it` };
  }
  if (src) {
    const why = S === 'postmigrate'
      ? 'the destination is gone after the switch-over; the source holds the guest as of the switch: resume it'
      : `the destination holds no runnable guest (${D}): stop it, keep the source`;
    return { action: 'roll-back', reason: why };
  }
  return {
    action: 'lost',
    reason: `no instance holds a runnable guest (source ${S}, destination ${D}${lastPhase === 'postcopy' ? ', post-copy had begun' : ''})`,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The step function.

/** Which side holds the authoritative VM in this state. Exactly one, always. */
export function owner(s: JobState): Side {
  switch (s.kind) {
    case 'running':
    case 'aborting':
    case 'verifying':
      return s.phase === 'postcopy' ? 'destination' : 'source';
    case 'finishing':
    case 'completed':
      return 'destination';
    case 'failed':
      return s.at;
    default:
      return 'source';
  }
}

/** The phase the job last recorded, for reconciliation (null before the driver started). */
export function lastPhase(s: JobState): MigrationPhase | null {
  switch (s.kind) {
    case 'starting':
      return 'preparing';
    case 'running':
    case 'aborting':
    case 'verifying':
      return s.phase;
    default:
      return null;
  }
}

/** A short label for history and logs: `running:precopy`, `completed`. */
export function label(s: JobState): string {
  return s.kind === 'running' ? `running:${s.phase}` : s.kind;
}

const TERMINAL_PHASES_SET: ReadonlySet<MigrationPhase> = new Set(['completed', 'aborted', 'failed']);

type Accepted = Extract<StepResult, { ok: true }>;

const ok = (state: JobState, effects: readonly Effect[], note?: string): Accepted =>
  note === undefined ? { ok: true, state, effects } : { ok: true, state, effects, note };

const changed = (state: JobState, ...more: Effect[]): Accepted => ok(state, [{ type: 'persist' }, { type: 'emit' }, ...more]);

function reject(state: JobState, event: JobEvent, code: RejectionCode = 'illegal-transition', why?: string): StepResult {
  return {
    ok: false,
    state,
    rejection: { code, message: why ?? `A job cannot take '${event.type}' while ${label(state)}` },
  };
}

function decide(state: JobState, presence: Presence): StepResult {
  const d = decideReconcile(presence, lastPhase(state));
  const note = `${d.action}: ${d.reason}`;
  switch (d.action) {
    case 'finish':
      return { ...changed({ kind: 'finishing', reason: d.reason }, { type: 'finish' }), note };
    case 'roll-back':
      return { ...changed({ kind: 'rolling-back', reason: d.reason }, { type: 'roll-back' }), note };
    case 'lost': {
      const prior = state.kind === 'verifying' || state.kind === 'aborting' ? `${state.reason}; ` : '';
      const reason = `${prior}VM ${presence.vm} lost: ${d.reason}`;
      return { ...changed({ kind: 'failed', reason, at: 'source', lost: true }, { type: 'alert', message: reason }), note };
    }
  }
}

/**
 * One transition. Illegal events come back as `ok: false` with the state unchanged (never a throw); events
 * that are legal but change nothing (a second abort, anything after the end) return no effects. When the
 * state changes, `persist` comes first among the effects, so the executor records a phase before it acts.
 */
export function step(state: JobState, event: JobEvent): StepResult {
  if (isTerminal(state)) {
    // Terminal states absorb everything: late driver events, repeated aborts, a restart.
    return ok(state, []);
  }
  switch (event.type) {
    case 'admitted':
      return state.kind === 'queued'
        ? changed({ kind: 'starting', capMbps: event.capMbps }, { type: 'start-driver', capMbps: event.capMbps })
        : reject(state, event);

    case 'driver-started':
      if (state.kind === 'starting') return changed({ kind: 'running', phase: 'preparing' });
      // Abort was asked for before the driver handed back its handle: now it can be delivered.
      if (state.kind === 'aborting') return ok(state, [{ type: 'abort-driver', reason: state.reason }]);
      return reject(state, event);

    case 'driver-start-failed':
      if (state.kind === 'starting') return changed({ kind: 'failed', reason: event.reason, at: 'source', lost: false });
      if (state.kind === 'aborting') return changed({ kind: 'aborted', reason: `${state.reason}; the driver never started: ${event.reason}` });
      return reject(state, event);

    case 'progress': {
      if (TERMINAL_PHASES_SET.has(event.phase)) {
        // The end comes through driver-done, with the outcome.
        return state.kind === 'running' || state.kind === 'aborting' || state.kind === 'starting' ? ok(state, []) : reject(state, event);
      }
      const phase = event.phase as ActivePhase;
      if (state.kind === 'starting') return changed({ kind: 'running', phase });
      if (state.kind === 'running' || state.kind === 'aborting') {
        if (state.phase === 'postcopy' && phase !== 'postcopy') {
          return reject(state, event, 'phase-regression', `A job in post-copy cannot go back to ${phase}: the guest already runs at the destination`);
        }
        if (phase === state.phase) return ok(state, [{ type: 'emit' }]);
        return state.kind === 'running' ? changed({ kind: 'running', phase }) : changed({ ...state, phase });
      }
      return reject(state, event);
    }

    case 'stall-action':
      return state.kind === 'running' || state.kind === 'aborting'
        ? { ...changed(state), note: `stall: ${event.action}` }
        : reject(state, event);

    case 'abort-requested':
      switch (state.kind) {
        case 'queued':
          return changed({ kind: 'cancelled', cause: 'user', reason: event.reason });
        case 'starting':
          // Persisted first; the executor delivers the abort once the driver hands back its handle.
          return changed({ kind: 'aborting', phase: 'preparing', reason: event.reason }, { type: 'abort-driver', reason: event.reason });
        case 'running':
          if (state.phase === 'postcopy') {
            return reject(state, event, 'post-copy-abort',
              'Cannot abort: the migration is in post-copy, the guest already runs at the destination; it can only finish');
          }
          return changed({ kind: 'aborting', phase: state.phase, reason: event.reason }, { type: 'abort-driver', reason: event.reason });
        default:
          // Already aborting, or reconciliation is in charge: a repeated abort changes nothing.
          return ok(state, []);
      }

    case 'driver-done':
      if (state.kind !== 'starting' && state.kind !== 'running' && state.kind !== 'aborting') {
        // A late outcome from a handle reconciliation took over from: reconciliation decides.
        return state.kind === 'queued' ? reject(state, event) : ok(state, []);
      }
      if (event.status === 'completed' && event.at === 'destination') return changed({ kind: 'completed' });
      if (event.status === 'aborted' && event.at === 'source') {
        const reason = event.reason ?? (state.kind === 'aborting' ? state.reason : 'aborted by the driver');
        return changed({ kind: 'aborted', reason });
      }
      {
        // A failure, or an outcome that contradicts itself: ask the hypervisors before believing anything.
        const phase = state.kind === 'starting' ? 'preparing' : state.phase;
        const reason = event.reason ?? `the driver reported ${event.status} with the VM at the ${event.at}`;
        return changed({ kind: 'verifying', phase, reason }, { type: 'inspect' });
      }

    case 'restart-found':
    case 'inspected':
      if (state.kind === 'queued') {
        // Nothing was started for a queued job ('starting' is persisted before the driver is called).
        return event.type === 'restart-found' ? ok(state, []) : reject(state, event);
      }
      return decide(state, event.presence);

    case 'reconcile-done':
      if (state.kind === 'finishing') return changed({ kind: 'completed' });
      if (state.kind === 'rolling-back') return changed({ kind: 'rolled-back', reason: state.reason });
      return reject(state, event);

    case 'reconcile-failed':
      if (state.kind === 'finishing' || state.kind === 'rolling-back' || state.kind === 'verifying') {
        const at = owner(state);
        const reason = `${state.reason}; reconciliation failed: ${event.reason}`;
        return changed({ kind: 'failed', reason, at, lost: false }, { type: 'alert', message: reason });
      }
      return reject(state, event);

    case 'superseded':
      return state.kind === 'queued'
        ? changed({ kind: 'cancelled', cause: 'superseded', reason: `superseded by plan ${event.byPlan}` })
        : reject(state, event);

    case 'recheck-failed':
      return state.kind === 'queued'
        ? changed({ kind: 'cancelled', cause: 'recheck', reason: event.reason })
        : reject(state, event);

    case 'dependency-failed':
      return state.kind === 'queued'
        ? changed({ kind: 'cancelled', cause: 'dependency', reason: `waited for ${event.vm}: ${event.reason}` })
        : reject(state, event);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The persisted record: the state plus its history.

export interface HistoryEntry {
  readonly atMs: number;
  /** The event that caused it; 'created' for the first entry. */
  readonly event: JobEvent['type'] | 'created';
  readonly from: string;
  readonly to: string;
  readonly note?: string;
}

/** Everything the executor keeps about a job: what a store saves and loads. Plain JSON. */
export interface JobRecord {
  readonly id: string;
  readonly vm: VmId;
  /** The plan that proposed the move; `after` dependencies name VMs of the same plan. */
  readonly planId: string;
  readonly move: Move;
  readonly request: MigrationRequest;
  readonly state: JobState;
  /** Every transition and audit entry (stall actions, reconciliation decisions), oldest first. */
  readonly history: readonly HistoryEntry[];
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  /** The bandwidth cap admission gave it (Mbps); null while queued. */
  readonly capMbps: number | null;
  readonly progress: MigrationProgress | null;
  readonly outcome: MigrationOutcome | null;
}

/** Events recorded in history even when the state label stays the same. */
const AUDITED: ReadonlySet<JobEvent['type']> = new Set(['stall-action', 'restart-found', 'inspected', 'abort-requested']);

export type ApplyResult =
  | { readonly ok: true; readonly record: JobRecord; readonly effects: readonly Effect[] }
  | { readonly ok: false; readonly record: JobRecord; readonly rejection: StepRejection };

/** `step` on a record: the new state, a history entry when the label changes (or for audited events). */
export function applyEvent(record: JobRecord, event: JobEvent, atMs: number): ApplyResult {
  const r = step(record.state, event);
  if (!r.ok) return { ok: false, record, rejection: r.rejection };
  const from = label(record.state);
  const to = label(r.state);
  if (r.state === record.state && r.effects.length === 0) return { ok: true, record, effects: r.effects };
  const entryNeeded = from !== to || r.note !== undefined || (AUDITED.has(event.type) && r.effects.length > 0);
  const history = entryNeeded
    ? [...record.history, { atMs, event: event.type, from, to, ...(r.note !== undefined ? { note: r.note } : {}) }]
    : record.history;
  const admitted = event.type === 'admitted' && r.state !== record.state ? { capMbps: event.capMbps } : {};
  return { ok: true, record: { ...record, ...admitted, state: r.state, history, updatedAtMs: atMs }, effects: r.effects };
}

/** A fresh queued job. */
export function newJobRecord(init: {
  id: string; planId: string; move: Move; request: MigrationRequest; atMs: number;
}): JobRecord {
  return {
    id: init.id,
    vm: init.move.vm,
    planId: init.planId,
    move: init.move,
    request: init.request,
    state: { kind: 'queued' },
    history: [{ atMs: init.atMs, event: 'created', from: 'new', to: 'queued', note: `planned ${init.move.from} → ${init.move.to}` }],
    createdAtMs: init.atMs,
    updatedAtMs: init.atMs,
    capMbps: null,
    progress: null,
    outcome: null,
  };
}
