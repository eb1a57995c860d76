import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { siteId, vmId } from '../core/ids.js';
import type { InstanceState, MigrationPhase, MigrationRequest, Presence } from './driver.js';
import {
  applyEvent, decideReconcile, destinationUsable, isTerminal, label, newJobRecord, owner, sourceUsable, step,
  type Effect, type JobEvent, type JobState, type StepResult,
} from './job.js';

const FC = { numRuns: 500, seed: 4242 };
const VM = vmId('vm-1');
const INSTANCE_STATES: readonly InstanceState[] = ['running', 'paused', 'incoming', 'postmigrate', 'absent'];
const PHASES: readonly MigrationPhase[] = [
  'preparing', 'mirroring-disk', 'precopy', 'postcopy', 'switching-over', 'completed', 'aborting', 'aborted', 'failed',
];
const presence = (source: InstanceState, destination: InstanceState, migrationCompleted = false): Presence =>
  ({ vm: VM, source, destination, migrationCompleted });

/** Runs events from a state, asserting each is accepted; returns the last result and all effects. */
function run(state: JobState, events: JobEvent[]): { state: JobState; effects: Effect[] } {
  const effects: Effect[] = [];
  let s = state;
  for (const e of events) {
    const r = step(s, e);
    assert.ok(r.ok, `${e.type} from ${label(s)} was rejected: ${r.ok ? '' : r.rejection.message}`);
    effects.push(...r.effects);
    s = r.state;
  }
  return { state: s, effects };
}

const types = (effects: readonly Effect[]): string[] => effects.map((e) => e.type);

describe('job step() on examples', () => {
  it('takes a job from queued through the driver phases to completed, persisting each phase before it acts', () => {
    let r: StepResult = step({ kind: 'queued' }, { type: 'admitted', capMbps: 40 });
    assert.ok(r.ok);
    assert.deepEqual(r.state, { kind: 'starting', capMbps: 40 });
    assert.deepEqual(types(r.effects), ['persist', 'emit', 'start-driver']);
    const { state, effects } = run(r.state, [
      { type: 'driver-started' },
      { type: 'progress', phase: 'mirroring-disk' },
      { type: 'progress', phase: 'precopy' },
      { type: 'progress', phase: 'precopy' },
      { type: 'progress', phase: 'switching-over' },
      { type: 'driver-done', status: 'completed', at: 'destination', reason: null },
    ]);
    assert.deepEqual(state, { kind: 'completed' });
    assert.equal(types(effects).filter((t) => t === 'persist').length, 5, 'started, disk, precopy, switch-over, completed');
    r = step(state, { type: 'abort-requested', reason: 'late' });
    assert.ok(r.ok);
    assert.equal(r.state, state, 'abort after completion is a no-op');
    assert.deepEqual(r.effects, []);
  });

  it('delivers an abort asked for while starting once the driver hands back its handle', () => {
    const a = run({ kind: 'starting', capMbps: 10 }, [{ type: 'abort-requested', reason: 'operator' }]);
    assert.equal(a.state.kind, 'aborting');
    assert.deepEqual(types(a.effects), ['persist', 'emit', 'abort-driver']);
    const b = run(a.state, [{ type: 'driver-started' }]);
    assert.deepEqual(types(b.effects), ['abort-driver']);
    const c = run(b.state, [{ type: 'driver-done', status: 'aborted', at: 'source', reason: null }]);
    assert.deepEqual(c.state, { kind: 'aborted', reason: 'operator' });
  });

  it('refuses to abort a job in post-copy with a typed rejection, leaving it running', () => {
    const s: JobState = { kind: 'running', phase: 'postcopy' };
    const r = step(s, { type: 'abort-requested', reason: 'operator' });
    assert.equal(r.ok, false);
    assert.equal(r.state, s);
    assert.equal(r.ok ? '' : r.rejection.code, 'post-copy-abort');
  });

  it('refuses a progress report that takes a post-copy job back to pre-copy', () => {
    const r = step({ kind: 'running', phase: 'postcopy' }, { type: 'progress', phase: 'precopy' });
    assert.equal(r.ok ? '' : r.rejection.code, 'phase-regression');
  });

  it('does not believe a failed outcome: it inspects, then rolls back when the destination holds nothing', () => {
    const a = run({ kind: 'running', phase: 'precopy' }, [{ type: 'driver-done', status: 'failed', at: 'source', reason: 'link cut' }]);
    assert.deepEqual(a.state, { kind: 'verifying', phase: 'precopy', reason: 'link cut' });
    assert.deepEqual(types(a.effects), ['persist', 'emit', 'inspect']);
    const b = run(a.state, [{ type: 'inspected', presence: presence('running', 'absent') }]);
    assert.equal(b.state.kind, 'rolling-back');
    assert.deepEqual(types(b.effects), ['persist', 'emit', 'roll-back']);
    const c = run(b.state, [{ type: 'reconcile-done' }]);
    assert.equal(c.state.kind, 'rolled-back');
  });

  it('raises an alert and marks the job failed-lost when a restart finds no copy anywhere', () => {
    const a = run({ kind: 'running', phase: 'postcopy' }, [{ type: 'restart-found', presence: presence('postmigrate', 'absent') }]);
    assert.equal(a.state.kind, 'failed');
    assert.ok(a.state.kind === 'failed' && a.state.lost);
    const alert = a.effects.find((e) => e.type === 'alert');
    assert.match(alert?.type === 'alert' ? alert.message : '', /vm-1 lost: no instance holds a runnable guest .*post-copy/);
  });

  it('leaves a queued job queued when a restart finds it: nothing had been started', () => {
    const r = step({ kind: 'queued' }, { type: 'restart-found', presence: presence('running', 'absent') });
    assert.ok(r.ok);
    assert.deepEqual(r.state, { kind: 'queued' });
    assert.deepEqual(r.effects, []);
  });

  it('cancels a queued job that a newer plan supersedes, and refuses to supersede a running one', () => {
    assert.deepEqual(run({ kind: 'queued' }, [{ type: 'superseded', byPlan: 'p2' }]).state,
      { kind: 'cancelled', cause: 'superseded', reason: 'superseded by plan p2' });
    assert.equal(step({ kind: 'running', phase: 'precopy' }, { type: 'superseded', byPlan: 'p2' }).ok, false);
  });

  it('records transitions and audit entries in the history, but not a progress report in the same phase', () => {
    const move = { vm: VM, from: siteId('a'), to: siteId('b'), kind: 'closer-to-users' as const, benefit: 1, savingMs: 10, costS: 1, bytes: 1, postCopy: false, after: [] };
    let rec = newJobRecord({ id: 'j1', planId: 'p1', move, request: {} as MigrationRequest, atMs: 0 });
    const events: JobEvent[] = [
      { type: 'admitted', capMbps: 25 }, { type: 'driver-started' }, { type: 'progress', phase: 'precopy' },
      { type: 'progress', phase: 'precopy' }, { type: 'stall-action', action: 'raise-downtime' },
    ];
    events.forEach((e, i) => {
      const r = applyEvent(rec, e, (i + 1) * 1000);
      assert.ok(r.ok);
      rec = r.record;
    });
    assert.deepEqual(rec.history.map((h) => [h.event, h.to]), [
      ['created', 'queued'], ['admitted', 'starting'], ['driver-started', 'running:preparing'],
      ['progress', 'running:precopy'], ['stall-action', 'running:precopy'],
    ]);
    assert.equal(rec.capMbps, 25);
    assert.equal(rec.history.at(-1)?.note, 'stall: raise-downtime');
    const bad = applyEvent(rec, { type: 'admitted', capMbps: 1 }, 9000);
    assert.equal(bad.ok, false);
    assert.equal(bad.record, rec);
  });
});

describe('decideReconcile()', () => {
  const all: { p: Presence; phase: MigrationPhase | null }[] = [];
  for (const s of INSTANCE_STATES) {
    for (const d of INSTANCE_STATES) {
      for (const c of [false, true]) for (const phase of [null, ...PHASES]) all.push({ p: presence(s, d, c), phase });
    }
  }

  it('never leaves two running copies or none: over every presence and phase, the kept side can run and the other is stopped', () => {
    for (const { p, phase } of all) {
      const d = decideReconcile(p, phase);
      const dest = destinationUsable(p.destination);
      const src = sourceUsable(p.source, phase);
      const where = `${p.source}/${p.destination}/${p.migrationCompleted}/${phase}`;
      if (d.action === 'finish') assert.ok(dest, `finish needs a runnable destination: ${where}`);
      if (d.action === 'roll-back') assert.ok(src, `roll-back needs a runnable source: ${where}`);
      assert.equal(d.action === 'lost', !dest && !src, `lost exactly when neither side can run: ${where}`);
      // Applying the decision leaves one running copy: finish runs the destination and stops the source,
      // roll-back the reverse.
      if (d.action !== 'lost') {
        const after = d.action === 'finish' ? ['absent', 'running'] : ['running', 'absent'];
        assert.equal(after.filter((x) => x === 'running').length, 1);
      }
    }
  });

  it('stops the destination when both run, unless the driver reports the switch-over completed', () => {
    assert.equal(decideReconcile(presence('running', 'running', false), 'precopy').action, 'roll-back');
    assert.equal(decideReconcile(presence('running', 'running', true), 'switching-over').action, 'finish');
  });

  it('finishes when the destination runs and the source is postmigrate or gone', () => {
    assert.equal(decideReconcile(presence('postmigrate', 'running'), 'switching-over').action, 'finish');
    assert.equal(decideReconcile(presence('absent', 'running'), null).action, 'finish');
  });

  it('rolls back when the destination is still incoming or absent, resuming a paused source', () => {
    assert.equal(decideReconcile(presence('running', 'incoming'), 'precopy').action, 'roll-back');
    assert.equal(decideReconcile(presence('paused', 'absent'), 'switching-over').action, 'roll-back');
  });

  it('does not resume a postmigrate source once post-copy began: its memory is stale', () => {
    assert.equal(decideReconcile(presence('postmigrate', 'absent'), 'postcopy').action, 'lost');
    assert.equal(decideReconcile(presence('postmigrate', 'paused'), 'postcopy').action, 'finish');
    assert.equal(decideReconcile(presence('postmigrate', 'absent', true), 'switching-over').action, 'roll-back');
  });
});

// ------------------------------------------------------------------------------------------------------------------
// Properties over arbitrary event sequences.

const arbPresence = fc.record({
  vm: fc.constant(VM),
  source: fc.constantFrom(...INSTANCE_STATES),
  destination: fc.constantFrom(...INSTANCE_STATES),
  migrationCompleted: fc.boolean(),
});
const arbReason = fc.constantFrom('r1', 'r2');
const arbEvent: fc.Arbitrary<JobEvent> = fc.oneof(
  fc.record({ type: fc.constant('admitted' as const), capMbps: fc.integer({ min: 1, max: 1000 }) }),
  fc.constant({ type: 'driver-started' as const }),
  fc.record({ type: fc.constant('driver-start-failed' as const), reason: arbReason }),
  fc.record({ type: fc.constant('progress' as const), phase: fc.constantFrom(...PHASES) }),
  fc.record({ type: fc.constant('stall-action' as const), action: fc.constantFrom('raise-downtime' as const, 'post-copy' as const, 'abort' as const) }),
  fc.record({ type: fc.constant('abort-requested' as const), reason: arbReason }),
  fc.record({
    type: fc.constant('driver-done' as const),
    status: fc.constantFrom('completed' as const, 'aborted' as const, 'failed' as const),
    at: fc.constantFrom('source' as const, 'destination' as const),
    reason: fc.option(arbReason, { nil: null }),
  }),
  fc.record({ type: fc.constant('restart-found' as const), presence: arbPresence }),
  fc.record({ type: fc.constant('inspected' as const), presence: arbPresence }),
  fc.constant({ type: 'reconcile-done' as const }),
  fc.record({ type: fc.constant('reconcile-failed' as const), reason: arbReason }),
  fc.record({ type: fc.constant('superseded' as const), byPlan: fc.constant('p9') }),
  fc.record({ type: fc.constant('recheck-failed' as const), reason: arbReason }),
  fc.record({ type: fc.constant('dependency-failed' as const), vm: fc.constant(vmId('vm-0')), reason: arbReason }),
);
// Sequences biased towards the happy path so that deep states are reached often.
const arbSequence = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: arbEvent },
    { weight: 1, arbitrary: fc.constantFrom<JobEvent>({ type: 'admitted', capMbps: 50 }, { type: 'driver-started' }, { type: 'progress', phase: 'precopy' }) },
  ),
  { maxLength: 30 },
);

const ACTS = new Set(['start-driver', 'abort-driver', 'inspect', 'finish', 'roll-back']);

describe('job step() properties', () => {
  it('never throws; a rejection leaves the state as it was; a change is persisted before anything is acted on', () => {
    fc.assert(fc.property(arbSequence, (events) => {
      let s: JobState = { kind: 'queued' };
      for (const e of events) {
        const r = step(s, e);
        if (!r.ok) {
          assert.equal(r.state, s);
          continue;
        }
        if (JSON.stringify(r.state) !== JSON.stringify(s)) {
          assert.equal(r.effects[0]?.type, 'persist', `${label(s)} --${e.type}--> ${label(r.state)} must persist first`);
        }
        const firstAct = r.effects.findIndex((x) => ACTS.has(x.type));
        if (firstAct >= 0 && r.state !== s) assert.ok(r.effects.slice(0, firstAct).some((x) => x.type === 'persist'));
        s = r.state;
      }
    }), FC);
  });

  it('keeps terminal states absorbing: once ended, no event changes the state or asks for an effect', () => {
    fc.assert(fc.property(arbSequence, arbSequence, (a, b) => {
      let s: JobState = { kind: 'queued' };
      for (const e of a) s = step(s, e).state;
      if (!isTerminal(s)) return;
      for (const e of b) {
        const r = step(s, e);
        assert.ok(r.ok);
        assert.equal(r.state, s);
        assert.deepEqual(r.effects, []);
      }
    }), FC);
  });

  it('makes abort idempotent: a second abort right after the first changes nothing and asks for nothing', () => {
    fc.assert(fc.property(arbSequence, arbReason, (events, reason) => {
      let s: JobState = { kind: 'queued' };
      for (const e of events) s = step(s, e).state;
      const first = step(s, { type: 'abort-requested', reason });
      if (!first.ok) return;
      const second = step(first.state, { type: 'abort-requested', reason });
      assert.ok(second.ok);
      assert.equal(second.state, first.state);
      assert.deepEqual(second.effects, []);
    }), FC);
  });

  it('keeps exactly one owning side, handing it over only at a switch (post-copy, completion, finish) and back only by a reconciliation decision', () => {
    fc.assert(fc.property(arbSequence, (events) => {
      let s: JobState = { kind: 'queued' };
      for (const e of events) {
        const r = step(s, e);
        const before = owner(s);
        const after = owner(r.state);
        assert.ok(after === 'source' || after === 'destination');
        if (before === 'source' && after === 'destination') {
          const switched = (e.type === 'progress' && e.phase === 'postcopy')
            || (e.type === 'driver-done' && e.status === 'completed')
            || ((e.type === 'restart-found' || e.type === 'inspected') && r.state.kind === 'finishing');
          assert.ok(switched, `${label(s)} --${e.type}--> ${label(r.state)} moved the VM to the destination`);
        }
        if (before === 'destination' && after === 'source') {
          assert.ok(e.type === 'restart-found' || e.type === 'inspected',
            `${label(s)} --${e.type}--> ${label(r.state)} moved the VM back to the source without a reconciliation decision`);
          assert.notEqual(s.kind, 'completed');
        }
        s = r.state;
      }
    }), FC);
  });

  it('decides a restart the same way from every non-queued live state: the action follows decideReconcile', () => {
    const live = fc.constantFrom<JobState>(
      { kind: 'starting', capMbps: 1 }, { kind: 'running', phase: 'precopy' }, { kind: 'running', phase: 'postcopy' },
      { kind: 'aborting', phase: 'precopy', reason: 'x' }, { kind: 'verifying', phase: 'switching-over', reason: 'x' },
      { kind: 'finishing', reason: 'x' }, { kind: 'rolling-back', reason: 'x' },
    );
    fc.assert(fc.property(live, arbPresence, (s, p) => {
      const r = step(s, { type: 'restart-found', presence: p });
      assert.ok(r.ok);
      const phase = s.kind === 'running' || s.kind === 'aborting' || s.kind === 'verifying' ? s.phase : s.kind === 'starting' ? 'preparing' : null;
      const want = decideReconcile(p, phase).action;
      const got = r.state.kind === 'finishing' ? 'finish' : r.state.kind === 'rolling-back' ? 'roll-back' : 'lost';
      assert.equal(got, want);
      if (got === 'lost') assert.ok(r.effects.some((e) => e.type === 'alert'));
    }), FC);
  });
});
