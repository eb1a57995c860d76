import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { SiteId, UserId, VmId } from '../../core/ids.js';
import type { MigrationProgress } from '../../migration/driver.js';
import type { AuditEvent, PlanRecord, UserRecord, VmRecord } from '../../store/records.js';
import type { LogEntry } from '../../store/store.js';
import { DEFAULT_PLAN_PARAMS } from '../../placement/params.js';
import {
  applyEvent, EMPTY_STATE, fromSnapshot, KEEP_AUDIT, KEEP_ENDED_MIGRATIONS, pendingPlans, serveLines, SPARK_POINTS,
  visibleMigrations, type DashState, type MigrationView, type Snapshot,
} from './state.js';

const MIB = 1024 * 1024;

function view(id: string, o: Partial<MigrationView> = {}): MigrationView {
  return {
    id, vm: 'desk1' as VmId, planId: 'p1', from: 'a' as SiteId, to: 'b' as SiteId, state: 'running:precopy', phase: 'precopy',
    percent: 25, transferredBytes: 32 * MIB, totalBytes: 128 * MIB, remainingBytes: 96 * MIB, throughputMbps: 50, etaS: 16,
    downtimeMs: null, createdAtMs: 1000, updatedAtMs: 1000, finishedAtMs: null, ended: false, outcome: null, reason: null,
    history: [], ...o,
  };
}

function progress(jobId: string, remaining: number, o: Partial<MigrationProgress> = {}): MigrationProgress {
  return {
    jobId, phase: 'precopy', atMs: 5000, elapsedMs: 4000, transferredBytes: 128 * MIB - remaining, remainingBytes: remaining,
    totalBytes: 128 * MIB, diskRemainingBytes: 0, dirtyRateBytesPerS: MIB, throughputMbps: 80, expectedDowntimeMs: 100,
    etaS: 9, downtimeLimitMs: 300, stallActions: [], ...o,
  };
}

function plan(id: string, status: PlanRecord['status'], atMs: number): PlanRecord {
  return {
    id, roundId: `r-${id}`, atMs, mode: 'approve', status, planner: 'greedy', moves: [], rejected: [], totalBenefit: 0,
    inputs: { vms: [], links: [], params: DEFAULT_PLAN_PARAMS }, jobs: [], decidedBy: null, decidedAtMs: null, note: null,
  };
}

function vm(id: string, siteId: string, users: string[]): VmRecord {
  return {
    id: id as VmId, name: id, siteId: siteId as SiteId, hostId: null, vcpu: 1, memoryMiB: 128, diskGiB: 0, dirtyRateMiBps: 1,
    workingSetMiB: 8, addresses: [], pinned: false, excluded: false, lastMovedAtMs: null, recentMoves: 0, diskDeltaGiB: {},
    sensitivity: 0.5, sensitive: true, activity: 'remote-desktop', reasons: [], users: users.map((u) => ({ userId: u as UserId, share: 1 / users.length })),
    fingerprintAtMs: null, migratingJobId: null,
  };
}

function user(id: string, vms: string[], rtt: Record<string, number>): UserRecord {
  return {
    id: id as UserId, name: id, endpoint: '10.0.0.1', country: null, lat: 1, lon: 2, network: 'n', vms: vms as VmId[], lastSeenAtMs: 0,
    rtt: Object.fromEntries(Object.entries(rtt).map(([s, rttMs]) => [s, { rttMs, source: 'probe' as const, atMs: 0, stale: false }])),
  };
}

const audit = (seq: number): LogEntry<AuditEvent> => ({ seq, key: 'manager', atMs: seq * 10, value: { kind: 'k', actor: 'a', message: `m${seq}` } });

const snapshot = (o: Partial<Snapshot> = {}): Snapshot => ({
  health: null, settings: null, sites: [], links: [], users: [], vms: [], fingerprints: {}, plans: [], migrations: [], rounds: [], audit: [], ...o,
});

describe("applyEvent(): a 'progress' event", () => {
  const s0 = fromSnapshot(snapshot({ migrations: [view('j1')] }));

  it('moves the migration on (percent, bytes, rate, ETA) and redraws only the migrations panel', () => {
    const r = applyEvent(s0, { type: 'progress', jobId: 'j1', vm: 'desk1' as VmId, progress: progress('j1', 32 * MIB) });
    const m = r.state.migrations.j1!;
    assert.deepEqual([m.percent, m.remainingBytes, m.transferredBytes, m.throughputMbps, m.etaS, m.updatedAtMs], [75, 32 * MIB, 96 * MIB, 80, 9, 5000]);
    assert.deepEqual(r.changed, ['migrations']);
    assert.equal(s0.migrations.j1!.percent, 25, 'the old state is left as it was');
  });

  it('for a job the page has not seen asks for it to be fetched', () => {
    const r = applyEvent(s0, { type: 'progress', jobId: 'j9', vm: 'desk1' as VmId, progress: progress('j9', 0) });
    assert.equal(r.fetchMigration, 'j9');
    assert.equal(r.state, s0);
  });

  it('after the job ended changes nothing, and neither does a late live view of it', () => {
    const ended = applyEvent(s0, { type: 'migration', migration: view('j1', { ended: true, state: 'completed', phase: null, percent: 100, downtimeMs: 90 }) }).state;
    const r1 = applyEvent(ended, { type: 'progress', jobId: 'j1', vm: 'desk1' as VmId, progress: progress('j1', 64 * MIB) });
    const r2 = applyEvent(ended, { type: 'migration', migration: view('j1') });
    assert.equal(r1.state, ended);
    assert.equal(r2.state, ended);
    assert.equal(ended.migrations.j1!.percent, 100);
  });

  it('with a terminal phase keeps the last live phase (the migration event says how it ended)', () => {
    const r = applyEvent(s0, { type: 'progress', jobId: 'j1', vm: 'desk1' as VmId, progress: progress('j1', 0, { phase: 'completed' }) });
    assert.equal(r.state.migrations.j1!.phase, 'precopy');
    assert.equal(r.state.migrations.j1!.percent, 100);
  });
});

describe('applyEvent(): plans', () => {
  it('a decided plan leaves the pending list, a new recommended one joins it at the top', () => {
    let s: DashState = fromSnapshot(snapshot({ plans: [plan('p1', 'recommended', 1), plan('p0', 'done', 0)] }));
    assert.deepEqual(pendingPlans(s).map((p) => p.id), ['p1']);
    s = applyEvent(s, { type: 'plan', plan: plan('p2', 'recommended', 2) }).state;
    assert.deepEqual(pendingPlans(s).map((p) => p.id), ['p2', 'p1']);
    const r = applyEvent(s, { type: 'plan', plan: { ...plan('p1', 'approved', 1), decidedBy: 'api:admin' } });
    assert.deepEqual(pendingPlans(r.state).map((p) => p.id), ['p2']);
    assert.deepEqual(r.changed, ['plans', 'audit']);
  });
});

describe('applyEvent(): fingerprints and the audit trail', () => {
  it(`keeps the newest ${SPARK_POINTS} sensitivity points of a VM, oldest first, one per time`, () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 500 }), fc.double({ min: 0, max: 1, noNaN: true })), { maxLength: 120 }), (pts) => {
      let s = EMPTY_STATE;
      for (const [atMs, score] of pts) {
        s = applyEvent(s, {
          type: 'fingerprint', vm: 'v' as VmId, atMs,
          point: { score, sensitive: score > 0.5, activity: 'remote-desktop', reasons: [], users: [], bytes: 0 },
        }).state;
      }
      const got = s.fingerprints.v ?? [];
      const times = [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b).slice(-SPARK_POINTS);
      assert.deepEqual(got.map((p) => p.atMs), times);
    }));
  });

  it(`shows the newest ${KEEP_AUDIT} audit entries newest first, each once, whatever order they arrive in`, () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 150 }), (seqs) => {
      let s = fromSnapshot(snapshot({ audit: seqs.slice(0, 10).map(audit) }));
      for (const q of seqs.slice(10)) s = applyEvent(s, { type: 'audit', entry: audit(q) }).state;
      const want = [...new Set(seqs)].sort((a, b) => b - a).slice(0, KEEP_AUDIT);
      assert.deepEqual(s.audit.map((e) => e.seq), want);
    }));
  });
});

describe('visibleMigrations()', () => {
  it(`lists running ones newest first, then at most ${KEEP_ENDED_MIGRATIONS} that ended, latest end first`, () => {
    const ended = Array.from({ length: 9 }, (_, i) => view(`e${i}`, { ended: true, state: 'completed', finishedAtMs: 100 + i, createdAtMs: i }));
    const s = fromSnapshot(snapshot({ migrations: [view('old', { createdAtMs: 1 }), ...ended, view('new', { createdAtMs: 50 })] }));
    assert.deepEqual(visibleMigrations(s).map((m) => m.id), ['new', 'old', 'e8', 'e7', 'e6', 'e5', 'e4', 'e3']);
  });
});

describe('serveLines()', () => {
  it('joins each user to the site of every VM serving them, once, with that RTT', () => {
    const s = fromSnapshot(snapshot({
      sites: [{ id: 'a' as SiteId, name: 'a', region: 'a', country: 'US', lat: 0, lon: 0, capacity: { vcpu: 1, memoryMiB: 1 } }],
      vms: [vm('d1', 'a', ['u1']), vm('d2', 'a', []), vm('d3', 'nowhere', ['u1'])],
      // u1 names d1 (also in d1's users) and d2 (whose record does not list u1 yet): both are drawn, d1 once.
      users: [user('u1', ['d1', 'd2'], { a: 42 }), user('u2', [], { a: 10 })],
    }));
    assert.deepEqual(serveLines(s), [
      { userId: 'u1', vmId: 'd1', siteId: 'a', rttMs: 42 },
      { userId: 'u1', vmId: 'd2', siteId: 'a', rttMs: 42 },
    ]);
  });
});
