import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { vmId, siteId } from '../core/ids.js';
import { applyEvent, isTerminal, label, newJobRecord, type JobRecord, type JobState } from '../migration/job.js';
import type { MigrationPhase } from '../migration/driver.js';
import { job, move, request, T0 } from '../testing/api-fixtures.js';
import { migrationView } from './views.js';

const ACTIVE_PHASES = ['preparing', 'mirroring-disk', 'precopy', 'postcopy', 'switching-over'] as const;

const stateArb: fc.Arbitrary<JobState> = fc.oneof(
  fc.constant<JobState>({ kind: 'queued' }),
  fc.integer({ min: 1, max: 10_000 }).map((capMbps): JobState => ({ kind: 'starting', capMbps })),
  fc.constantFrom(...ACTIVE_PHASES).map((phase): JobState => ({ kind: 'running', phase })),
  fc.constantFrom(...ACTIVE_PHASES).map((phase): JobState => ({ kind: 'aborting', phase, reason: 'operator' })),
  fc.constant<JobState>({ kind: 'finishing', reason: 'r' }),
  fc.constant<JobState>({ kind: 'completed' }),
  fc.constant<JobState>({ kind: 'aborted', reason: 'stalled' }),
  fc.constant<JobState>({ kind: 'rolled-back', reason: 'r' }),
  fc.constant<JobState>({ kind: 'cancelled', cause: 'user', reason: 'cancelled by api:admin' }),
  fc.constant<JobState>({ kind: 'failed', reason: 'lost', at: 'source', lost: true }),
);

const bytes = fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(0));

const jobArb: fc.Arbitrary<JobRecord> = fc.record({
  state: stateArb,
  progress: fc.option(fc.record({
    transferred: bytes, remaining: bytes, total: bytes, throughput: fc.double({ min: 0, max: 1e5, noNaN: true }),
    eta: fc.option(fc.integer({ min: 0, max: 1e6 })),
  })),
  outcome: fc.option(fc.record({ transferred: bytes, durationMs: fc.integer({ min: 0, max: 1e8 }), downtimeMs: fc.option(fc.integer({ min: 0, max: 1e5 })) })),
  created: fc.integer({ min: 0, max: 1e12 }),
  later: fc.integer({ min: 0, max: 1e9 }),
}).map(({ state, progress, outcome, created, later }) => {
  const m = move('vm-1', 'a', 'b');
  const base = newJobRecord({ id: 'job-1', planId: 'plan-1', move: m, request: request('job-1', m), atMs: created });
  const phase: MigrationPhase = 'precopy';
  return {
    ...base,
    state,
    history: [...base.history, { atMs: created + later, event: 'progress', from: 'queued', to: label(state) }],
    updatedAtMs: created + later,
    progress: progress === null ? null : {
      jobId: 'job-1', phase, atMs: created, elapsedMs: 0, transferredBytes: progress.transferred, remainingBytes: progress.remaining,
      totalBytes: progress.total, diskRemainingBytes: 0, dirtyRateBytesPerS: 0, throughputMbps: progress.throughput,
      expectedDowntimeMs: null, etaS: progress.eta, downtimeLimitMs: 300, stallActions: [],
    },
    outcome: outcome === null ? null : {
      jobId: 'job-1', status: state.kind === 'completed' ? 'completed' : 'aborted', runningAt: { siteId: siteId('a'), hostId: null },
      durationMs: outcome.durationMs, downtimeMs: outcome.downtimeMs, transferredBytes: outcome.transferred, settings: [],
      stallActions: [], reason: state.kind === 'completed' ? null : 'stalled',
    },
  } satisfies JobRecord;
});

describe('migrationView()', () => {
  it('keeps percent within 0..100 and byte counts non-negative for any job', () => {
    fc.assert(fc.property(jobArb, (j) => {
      const v = migrationView(j);
      assert.ok(Number.isFinite(v.percent) && v.percent >= 0 && v.percent <= 100, `percent ${v.percent}`);
      assert.ok(v.remainingBytes >= 0 && v.transferredBytes >= 0 && v.totalBytes >= 0);
      assert.ok(Number.isFinite(v.throughputMbps) && v.throughputMbps >= 0);
    }), { numRuns: 300 });
  });

  it('marks a job ended exactly when its state is terminal, with a finish time and no phase or ETA', () => {
    fc.assert(fc.property(jobArb, (j) => {
      const v = migrationView(j);
      assert.equal(v.ended, isTerminal(j.state));
      assert.equal(v.state, label(j.state));
      if (v.ended) {
        assert.equal(v.phase, null);
        assert.equal(v.etaS, null);
        assert.notEqual(v.finishedAtMs, null);
      } else {
        assert.equal(v.finishedAtMs, null);
      }
      if (j.state.kind === 'completed') {
        assert.equal(v.percent, 100);
        assert.equal(v.remainingBytes, 0);
      }
    }), { numRuns: 300 });
  });

  it('is plain JSON: it survives a JSON round trip unchanged', () => {
    fc.assert(fc.property(jobArb, (j) => {
      const v = migrationView(j);
      assert.deepEqual(JSON.parse(JSON.stringify(v)), v);
    }), { numRuns: 100 });
  });

  it('shows a running pre-copy half done with its rate and ETA', () => {
    const v = migrationView(job('job-1', 'vm-1', 'us-east', 'eu-central', 'running', T0));
    assert.equal(v.state, 'running:precopy');
    assert.equal(v.phase, 'precopy');
    assert.equal(v.percent, 50);
    assert.equal(v.throughputMbps, 400);
    assert.equal(v.etaS, 12);
    assert.equal(v.vm, vmId('vm-1'));
    assert.equal(v.from, 'us-east');
    assert.equal(v.to, 'eu-central');
    assert.equal(v.outcome, null);
  });

  it('shows a completed job at 100 % with its average rate, downtime and the time it ended', () => {
    const j = job('job-2', 'vm-1', 'us-east', 'eu-central', 'completed', T0);
    const v = migrationView(j);
    assert.equal(v.percent, 100);
    assert.equal(v.downtimeMs, 180);
    assert.equal(v.finishedAtMs, T0 + 60_000);
    const expected = Math.round(((4 * 1024 ** 3 * 1.1 * 8) / 1e6 / 59) * 10) / 10;
    assert.equal(v.throughputMbps, expected);
    assert.equal(v.reason, null);
    assert.equal(v.outcome?.status, 'completed');
  });

  it('gives the reason of a cancelled job and the time it was cancelled', () => {
    const q = job('job-3', 'vm-1', 'us-east', 'eu-central', 'queued', T0);
    const r = applyEvent(q, { type: 'recheck-failed', reason: 'vm-1 was pinned' }, T0 + 5000);
    assert.ok(r.ok);
    const v = migrationView(r.record);
    assert.equal(v.state, 'cancelled');
    assert.equal(v.reason, 'vm-1 was pinned');
    assert.equal(v.finishedAtMs, T0 + 5000);
    assert.equal(v.percent, 0);
  });
});
