// A small cloud's worth of records in a store, for API, CLI and dashboard tests: three sites, their links and
// hosts, VMs (sensitive and not), users with RTTs, plans in several states, jobs queued/running/ended,
// rounds, audit entries and settings. Plus dumpStore(): everything a Store holds, to compare before/after.
import { hostId, linkIdOf, siteId, userId, vmId, type SiteId } from '../core/ids.js';
import { applyEvent, newJobRecord, type JobRecord } from '../migration/job.js';
import type { MigrationProgress, MigrationRequest } from '../migration/driver.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import type { Move } from '../placement/plan.js';
import type {
  AuditEvent, FingerprintPoint, HostRecord, LinkRecord, PlanRecord, RoundRecord, RttPoint, Settings, SiteRecord,
  UserRecord, VmRecord,
} from '../store/records.js';
import type { Collection, LogName, Store } from '../store/store.js';

export const T0 = 1_750_000_000_000;

const COLLECTIONS: readonly Collection[] = ['sites', 'hosts', 'links', 'vms', 'users', 'plans', 'rounds', 'jobs', 'settings', 'tokens'];
const LOGS: readonly LogName[] = ['audit', 'fingerprints', 'rtts'];

/** Every document (with rev) and log entry, in a stable order. */
export async function dumpStore(store: Store): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const c of COLLECTIONS) {
    out[c] = (await store.list(c, { limit: 100_000 })).map((d) => ({ id: d.id, rev: d.rev, group: d.group, status: d.status, value: d.value }));
  }
  for (const l of LOGS) out[`log:${l}`] = await store.read(l, { limit: 100_000 });
  return JSON.stringify(out);
}

export function site(id: string, lat: number, lon: number): SiteRecord {
  return { id: siteId(id), name: id, region: id, country: 'DE', lat, lon, capacity: { vcpu: 256, memoryMiB: 1_048_576 } };
}

export function vmRecord(id: string, site: string, o: Partial<VmRecord> = {}): VmRecord {
  return {
    id: vmId(id), name: id, siteId: siteId(site), hostId: hostId(`${site}-h1`), vcpu: 2, memoryMiB: 4096, diskGiB: 20,
    dirtyRateMiBps: 5, workingSetMiB: 512, addresses: ['10.0.0.1'], pinned: false, excluded: false, lastMovedAtMs: null,
    recentMoves: 0, diskDeltaGiB: {}, sensitivity: 0.1, sensitive: false, activity: 'background', reasons: [],
    users: [], fingerprintAtMs: null, migratingJobId: null, ...o,
  };
}

export function move(vm: string, from: string, to: string): Move {
  return {
    vm: vmId(vm), from: siteId(from), to: siteId(to), kind: 'closer-to-users', benefit: 40, savingMs: 50, costS: 30,
    bytes: 4 * 1024 ** 3, postCopy: false, after: [],
  };
}

export function request(jobId: string, m: Move): MigrationRequest {
  return {
    jobId, vm: m.vm, from: { siteId: m.from, hostId: null }, to: { siteId: m.to, hostId: null },
    link: { rttMs: 80, bandwidthMbps: 1000, foregroundShare: 0.5, lossPct: 0 },
    shape: { memoryMiB: 4096, dirtyRateMiBps: 5, workingSetMiB: 512, diskGiB: 0 }, storage: 'shared',
    policy: {
      maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000,
      onStall: ['abort'], tls: true, deadlineMs: 3_600_000,
    },
  };
}

export function progress(jobId: string, atMs: number, transferred: number, remaining: number, total: number): MigrationProgress {
  return {
    jobId, phase: 'precopy', atMs, elapsedMs: atMs - T0, transferredBytes: transferred, remainingBytes: remaining,
    totalBytes: total, diskRemainingBytes: 0, dirtyRateBytesPerS: 1e6, throughputMbps: 400, expectedDowntimeMs: 120,
    etaS: 12, downtimeLimitMs: 300, stallActions: [],
  };
}

/** A job in the given state: 'queued', 'running' (pre-copy, 50 %) or 'completed'. */
export function job(id: string, vm: string, from: string, to: string, state: 'queued' | 'running' | 'completed', atMs: number, planId = 'plan-a'): JobRecord {
  const m = move(vm, from, to);
  let r = newJobRecord({ id, planId, move: m, request: request(id, m), atMs });
  if (state === 'queued') return r;
  const ev = (e: Parameters<typeof applyEvent>[1], t: number): void => {
    const a = applyEvent(r, e, t);
    if (!a.ok) throw new Error(a.rejection.message);
    r = a.record;
  };
  ev({ type: 'admitted', capMbps: 500 }, atMs + 1000);
  ev({ type: 'driver-started' }, atMs + 2000);
  ev({ type: 'progress', phase: 'precopy' }, atMs + 3000);
  const total = 4 * 1024 ** 3;
  r = { ...r, progress: progress(id, atMs + 3000, total / 2, total / 2, total) };
  if (state === 'running') return r;
  ev({ type: 'driver-done', status: 'completed', at: 'destination', reason: null }, atMs + 60_000);
  return {
    ...r,
    outcome: {
      jobId: id, status: 'completed', runningAt: { siteId: siteId(to), hostId: null }, durationMs: 59_000,
      downtimeMs: 180, transferredBytes: total * 1.1, settings: [], stallActions: [], reason: null,
    },
  };
}

export function plan(id: string, status: PlanRecord['status'], atMs: number, moves: Move[] = []): PlanRecord {
  return {
    id, roundId: `round-${id}`, atMs, mode: 'approve', status, planner: 'greedy', moves, rejected: [],
    totalBenefit: moves.reduce((s, m) => s + m.benefit, 0),
    inputs: { vms: [], links: [], params: DEFAULT_PLAN_PARAMS }, jobs: [],
    decidedBy: status === 'rejected' ? 'api:admin' : null, decidedAtMs: status === 'rejected' ? atMs + 1 : null, note: null,
  };
}

export function round(id: string, seq: number, atMs: number): RoundRecord {
  return {
    id, seq, startedAtMs: atMs, finishedAtMs: atMs + 1500, durationMs: 1500, mode: 'approve', leader: 'replica-a',
    vmsObserved: 4, usersProbed: 2, planId: null, moves: 0, rejections: 0,
    stageMs: { telemetry: 100, fingerprint: 200, latency: 300, placement: 400, migration: 500 }, error: null,
  };
}

export const SETTINGS: Settings = { mode: 'approve', roundIntervalS: 60, planner: 'greedy', params: DEFAULT_PLAN_PARAMS };

export interface Seeded {
  readonly sites: readonly SiteId[];
  readonly vms: { readonly sensitive: string; readonly plain: string; readonly other: string };
  readonly users: readonly string[];
  readonly plans: { readonly recommended: string; readonly rejected: string; readonly older: string };
  readonly jobs: { readonly queued: string; readonly running: string; readonly completed: string };
}

/** Fills an empty store. Ids sort in time order like the manager's. */
export async function seedStore(store: Store): Promise<Seeded> {
  const sites = [site('eu-central', 50.1, 8.7), site('us-east', 39, -77.5), site('ap-south', 19, 72.8)];
  await store.putMany('sites', sites.map((s) => ({ id: s.id, value: s })));
  const hosts: HostRecord[] = sites.map((s) => ({ id: hostId(`${s.id}-h1`), siteId: s.id, capacity: { vcpu: 64, memoryMiB: 262_144 }, endpoint: null }));
  await store.putMany('hosts', hosts.map((h) => ({ id: h.id, value: h })));
  const links: LinkRecord[] = [
    ['eu-central', 'us-east', 90], ['eu-central', 'ap-south', 120], ['us-east', 'ap-south', 200],
  ].map(([a, b, rtt]) => ({ id: linkIdOf(siteId(String(a)), siteId(String(b))), a: siteId(String(a)), b: siteId(String(b)), rttMs: Number(rtt), bandwidthMbps: 1000, foregroundShare: 0.5 }));
  await store.putMany('links', links.map((l) => ({ id: l.id, value: l })));

  const u1 = userId('u-10.77.0.21');
  const u2 = userId('u-10.77.0.22');
  const vms = [
    vmRecord('vm-desk-1', 'us-east', { sensitivity: 0.9, sensitive: true, activity: 'remote-desktop', users: [{ userId: u1, share: 1 }], fingerprintAtMs: T0 }),
    vmRecord('vm-batch-1', 'us-east'),
    vmRecord('vm-desk-2', 'eu-central', { sensitivity: 0.8, sensitive: true, activity: 'remote-desktop', users: [{ userId: u2, share: 1 }] }),
  ];
  await store.putMany('vms', vms.map((v) => ({ id: v.id, value: v })));

  const users: UserRecord[] = [u1, u2].map((id, i) => ({
    id, name: `user ${i + 1}`, endpoint: id.slice(2), country: 'DE', lat: 52.5, lon: 13.4, network: 'network-1',
    rtt: {
      'eu-central': { rttMs: 15 + i, source: 'probe', atMs: T0, stale: false },
      'us-east': { rttMs: 95 + i, source: 'probe', atMs: T0, stale: false },
    },
    vms: [vmId(i === 0 ? 'vm-desk-1' : 'vm-desk-2')], lastSeenAtMs: T0,
  }));
  await store.putMany('users', users.map((u) => ({ id: u.id, value: u })));

  const p = {
    older: 'plan-0001-a', rejected: 'plan-0002-b', recommended: 'plan-0003-c',
  };
  for (const [id, status, at] of [[p.older, 'done', T0], [p.rejected, 'rejected', T0 + 60_000], [p.recommended, 'recommended', T0 + 120_000]] as const) {
    const pr = plan(id, status, at, [move('vm-desk-1', 'us-east', 'eu-central')]);
    await store.put('plans', id, pr, { status, group: pr.roundId });
  }
  const j = { completed: 'job-0001-a', running: 'job-0002-b', queued: 'job-0003-c' };
  for (const [id, state, at] of [[j.completed, 'completed', T0], [j.running, 'running', T0 + 10_000], [j.queued, 'queued', T0 + 20_000]] as const) {
    const r = job(id, 'vm-desk-1', 'us-east', 'eu-central', state, at, p.older);
    await store.put('jobs', id, r, { group: r.vm, status: state === 'completed' ? 'ended' : 'active' });
  }
  for (let i = 1; i <= 3; i++) await store.put('rounds', `round-000${i}`, round(`round-000${i}`, i, T0 + i * 60_000), { status: 'ok' });
  await store.put('settings', 'manager', SETTINGS);

  await store.append<AuditEvent>('audit', [
    { key: 'manager', atMs: T0, value: { kind: 'started', actor: 'replica-a', message: 'manager started' } },
    { key: p.rejected, atMs: T0 + 61_000, value: { kind: 'plan-rejected', actor: 'api:admin', message: 'rejected' } },
    { key: 'vm-desk-1', atMs: T0 + 62_000, value: { kind: 'vm-flags', actor: 'api:admin', message: 'pinned' } },
  ]);
  const fp = (score: number): FingerprintPoint => ({
    score, sensitive: score > 0.5, activity: 'remote-desktop', reasons: ['interactive'], users: [{ endpoint: '10.77.0.21', share: 1 }], bytes: 1e6,
  });
  await store.append<FingerprintPoint>('fingerprints', [0.2, 0.6, 0.9].map((s, i) => ({ key: 'vm-desk-1', atMs: T0 + i * 1000, value: fp(s) })));
  await store.append<RttPoint>('rtts', [15, 16, 14].map((r, i) => ({ key: u1, atMs: T0 + i * 1000, value: { siteId: siteId('eu-central'), rttMs: r, source: 'probe' as const } })));

  return {
    sites: sites.map((s) => s.id),
    vms: { sensitive: 'vm-desk-1', plain: 'vm-batch-1', other: 'vm-desk-2' },
    users: [u1, u2],
    plans: p,
    jobs: j,
  };
}
