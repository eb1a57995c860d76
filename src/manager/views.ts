// PURE: what the API, the CLI and the dashboard show of a migration job — one flat view computed from the
// persisted JobRecord, so every client shows the same percent, ETA and outcome.
import type { VmId, SiteId } from '../core/ids.js';
import type { MigrationOutcome, MigrationPhase } from '../migration/driver.js';
import { isTerminal, label, lastPhase, type HistoryEntry, type JobRecord } from '../migration/job.js';

export interface MigrationView {
  readonly id: string;
  readonly vm: VmId;
  readonly planId: string;
  readonly from: SiteId;
  readonly to: SiteId;
  /** The job's state label: 'queued', 'running:precopy', 'completed', … */
  readonly state: string;
  /** The driver phase of a live job; null while queued and once ended. */
  readonly phase: MigrationPhase | null;
  /** 0..100: share of the bytes to send that no longer remain; 100 once completed. */
  readonly percent: number;
  readonly transferredBytes: number;
  readonly totalBytes: number;
  readonly remainingBytes: number;
  /** Current rate while it runs; the average over the whole migration once ended (0 if unknown). */
  readonly throughputMbps: number;
  readonly etaS: number | null;
  readonly downtimeMs: number | null;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly finishedAtMs: number | null;
  readonly ended: boolean;
  readonly outcome: MigrationOutcome | null;
  /** Why it ended other than completed (aborted, rolled back, cancelled, failed), or why it is aborting; else null. */
  readonly reason: string | null;
  readonly history: readonly HistoryEntry[];
}

const finite = (n: number | null | undefined, dflt: number): number =>
  typeof n === 'number' && Number.isFinite(n) ? n : dflt;
const nonNeg = (n: number | null | undefined, dflt = 0): number => Math.max(0, finite(n, dflt));
const round1 = (n: number): number => Math.round(n * 10) / 10;

export function migrationView(job: JobRecord): MigrationView {
  const s = job.state;
  const ended = isTerminal(s);
  const completed = s.kind === 'completed';
  const p = job.progress;
  const o = job.outcome;

  const totalBytes = nonNeg(p?.totalBytes ?? job.move.bytes);
  const transferredBytes = nonNeg(o?.transferredBytes ?? p?.transferredBytes);
  const remainingBytes = completed ? 0 : nonNeg(p?.remainingBytes ?? totalBytes);
  let percent = 0;
  if (completed) percent = 100;
  else if (totalBytes > 0) percent = Math.min(100, Math.max(0, round1((1 - remainingBytes / totalBytes) * 100)));

  let throughputMbps = 0;
  if (!ended) throughputMbps = nonNeg(p?.throughputMbps);
  else if (o !== null && finite(o.durationMs, 0) > 0) {
    throughputMbps = round1((transferredBytes * 8) / 1e6 / (o.durationMs / 1000));
  }

  let finishedAtMs: number | null = null;
  if (ended) {
    const to = label(s);
    const last = [...job.history].reverse().find((h) => h.to === to);
    finishedAtMs = last?.atMs ?? job.updatedAtMs;
  }

  let reason: string | null = null;
  if ('reason' in s) reason = s.reason;
  else if (o?.reason !== undefined && o.reason !== null && !completed) reason = o.reason;

  return {
    id: job.id,
    vm: job.vm,
    planId: job.planId,
    from: job.move.from,
    to: job.move.to,
    state: label(s),
    phase: ended ? null : lastPhase(s),
    percent,
    transferredBytes,
    totalBytes,
    remainingBytes,
    throughputMbps,
    etaS: ended ? null : p?.etaS === undefined || p.etaS === null ? null : nonNeg(p.etaS),
    downtimeMs: o?.downtimeMs ?? null,
    createdAtMs: job.createdAtMs,
    updatedAtMs: job.updatedAtMs,
    finishedAtMs,
    ended,
    outcome: o,
    reason,
    history: job.history,
  };
}
