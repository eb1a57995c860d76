// The dashboard tests' cloud: the lab of examples/lab.json (three sites, alice and bob, desk1 and desk2) as
// the manager would have recorded it after a few rounds — desk1 migrating towards alice at us-west-2, a plan
// waiting to bring desk2 to bob at eu-west-1, rounds and audit entries with their reasons.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { latencyData } from '../cli/data.js';
import { hostId, linkIdOf, siteId, userId, vmId, type SiteId, type UserId } from '../core/ids.js';
import { parseLabConfig, type LabConfig } from '../lab/config.js';
import type { MigrationProgress, MigrationRequest } from '../migration/driver.js';
import { applyEvent, newJobRecord, type JobEvent, type JobRecord } from '../migration/job.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import type { Move } from '../placement/plan.js';
import type {
  AuditEvent, FingerprintPoint, HostRecord, LinkRecord, PlanRecord, RoundRecord, Settings, SiteRecord, UserRecord,
  VmRecord,
} from '../store/records.js';
import type { Store } from '../store/store.js';

export const LAB_CONFIG_FILE = fileURLToPath(new URL('../../../examples/lab.json', import.meta.url));

export function labConfig(): LabConfig {
  return parseLabConfig(JSON.parse(readFileSync(LAB_CONFIG_FILE, 'utf8')) as unknown, latencyData(undefined));
}

export interface LabSeed {
  readonly config: LabConfig;
  readonly sites: readonly SiteRecord[];
  readonly vms: readonly VmRecord[];
  readonly users: readonly UserRecord[];
  /** desk1's migration to us-west-2, running (pre-copy, 25 %). */
  readonly runningJob: JobRecord;
  /** The plan waiting for approval: desk2 to eu-west-1. */
  readonly pendingPlan: PlanRecord;
  readonly settings: Settings;
}

const MIB = 1024 * 1024;

export function migrationRequest(jobId: string, m: Move, vm: VmRecord, link: LinkRecord): MigrationRequest {
  return {
    jobId, vm: m.vm, from: { siteId: m.from, hostId: null }, to: { siteId: m.to, hostId: null },
    link: { rttMs: link.rttMs, bandwidthMbps: link.bandwidthMbps, foregroundShare: link.foregroundShare, lossPct: 0 },
    shape: { memoryMiB: vm.memoryMiB, dirtyRateMiBps: vm.dirtyRateMiBps, workingSetMiB: vm.workingSetMiB, diskGiB: vm.diskGiB },
    storage: 'mirror',
    policy: {
      maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000,
      onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 3_600_000,
    },
  };
}

export function progressOf(jobId: string, atMs: number, startedAtMs: number, totalBytes: number, remainingBytes: number): MigrationProgress {
  const transferredBytes = totalBytes - remainingBytes;
  const elapsedMs = Math.max(1, atMs - startedAtMs);
  const throughputMbps = Math.round((transferredBytes * 8) / 1e6 / (elapsedMs / 1000) * 10) / 10;
  return {
    jobId, phase: 'precopy', atMs, elapsedMs, transferredBytes, remainingBytes, totalBytes, diskRemainingBytes: 0,
    dirtyRateBytesPerS: MIB, throughputMbps, expectedDowntimeMs: 120,
    etaS: throughputMbps > 0 ? Math.round((remainingBytes * 8) / 1e6 / throughputMbps) : null,
    downtimeLimitMs: 300, stallActions: [],
  };
}

function step(r: JobRecord, e: JobEvent, atMs: number): JobRecord {
  const a = applyEvent(r, e, atMs);
  if (!a.ok) throw new Error(`fixture job ${r.id}: ${a.rejection.message}`);
  return a.record;
}

/** Fills an empty store with the lab's cloud; `nowMs` is "now" for the page (rounds a minute apart before it). */
export async function seedLab(store: Store, nowMs: number): Promise<LabSeed> {
  const config = labConfig();
  const sites: SiteRecord[] = config.sites.map((s) => ({
    id: siteId(s.id), name: s.id, region: s.region, country: s.country, lat: s.lat, lon: s.lon,
    capacity: { vcpu: 4 * s.hosts, memoryMiB: 2048 * s.hosts },
  }));
  const hosts: HostRecord[] = sites.map((s) => ({
    id: hostId(`${s.id}-h1`), siteId: s.id, capacity: { vcpu: 4, memoryMiB: 2048 }, endpoint: null,
  }));
  const links: LinkRecord[] = config.links.filter((l) => l.kind === 'site-site').map((l) => ({
    id: linkIdOf(siteId(l.a), siteId(l.b)), a: siteId(l.a), b: siteId(l.b), rttMs: l.rttMs,
    bandwidthMbps: l.rateMbps, foregroundShare: 0.5,
  }));

  const userIdOf = (name: string): UserId => {
    const u = config.users.find((x) => x.name === name);
    if (u === undefined) throw new Error(`examples/lab.json has no user ${name}`);
    return userId(`u-${u.address.split('/')[0]!}`);
  };
  const vms: VmRecord[] = config.vms.map((v, i) => ({
    id: vmId(v.name), name: v.name, siteId: siteId(v.site), hostId: hostId(`${v.site}-h1`), vcpu: v.vcpu,
    memoryMiB: v.memoryMiB, diskGiB: v.diskMiB / 1024, dirtyRateMiBps: v.dirty.rateMiBps, workingSetMiB: v.dirty.workingSetMiB,
    addresses: [v.ipCidr.split('/')[0]!], pinned: false, excluded: false, lastMovedAtMs: null, recentMoves: 0,
    diskDeltaGiB: {}, sensitivity: i === 0 ? 0.86 : 0.72, sensitive: true, activity: 'remote-desktop',
    reasons: ['interactive frames both ways', 'small upstream packets at human pace'],
    users: v.user === null ? [] : [{ userId: userIdOf(v.user), share: 1 }], fingerprintAtMs: nowMs - 30_000,
    migratingJobId: null,
  }));
  const users: UserRecord[] = config.users.map((u) => ({
    id: userIdOf(u.name), name: u.name, endpoint: u.address.split('/')[0]!, country: u.country, lat: u.lat, lon: u.lon,
    network: 'lab', vms: vms.filter((v) => v.users.some((x) => x.userId === userIdOf(u.name))).map((v) => v.id),
    rtt: Object.fromEntries(Object.entries(u.rttMs).map(([sid, rttMs]) => [sid, { rttMs, source: 'probe' as const, atMs: nowMs - 10_000, stale: false }])),
    lastSeenAtMs: nowMs - 10_000,
  }));

  const [desk1, desk2] = vms;
  if (desk1 === undefined || desk2 === undefined) throw new Error('examples/lab.json must list desk1 and desk2');
  const linkOf = (a: SiteId, b: SiteId): LinkRecord => {
    const l = links.find((x) => x.id === linkIdOf(a, b));
    if (l === undefined) throw new Error(`no link ${a}~${b} in the lab config`);
    return l;
  };
  const moveOf = (vm: VmRecord, to: string, savingMs: number): Move => {
    const bytes = (vm.memoryMiB + vm.diskGiB * 1024) * MIB;
    const l = linkOf(vm.siteId, siteId(to));
    return {
      vm: vm.id, from: vm.siteId, to: siteId(to), kind: 'closer-to-users', benefit: Math.round(vm.sensitivity * savingMs * 10) / 10,
      savingMs, costS: Math.round((bytes * 8) / 1e6 / (l.bandwidthMbps * (1 - l.foregroundShare)) * 10) / 10, bytes,
      postCopy: false, after: [],
    };
  };
  const rtt = (u: UserRecord, s: string): number => u.rtt[s]?.rttMs ?? 0;
  const alice = users.find((u) => u.name === 'alice')!;
  const bob = users.find((u) => u.name === 'bob')!;

  // Round 1 planned desk1's move (approved by an operator); round 2 proposes desk2's, waiting now.
  const t1 = nowMs - 90_000;
  const t2 = nowMs - 30_000;
  const m1 = moveOf(desk1, 'us-west-2', Math.round(rtt(alice, 'us-east-1') - rtt(alice, 'us-west-2')));
  const m2 = moveOf(desk2, 'eu-west-1', Math.round(rtt(bob, 'us-east-1') - rtt(bob, 'eu-west-1')));
  const plan = (id: string, roundId: string, atMs: number, status: PlanRecord['status'], moves: Move[], extra: Partial<PlanRecord> = {}): PlanRecord => ({
    id, roundId, atMs, mode: 'approve', status, planner: 'greedy', moves, rejected: [],
    totalBenefit: moves.reduce((s, m) => s + m.benefit, 0), inputs: { vms: [], links: [], params: DEFAULT_PLAN_PARAMS },
    jobs: [], decidedBy: null, decidedAtMs: null, note: null, ...extra,
  });
  const jobId = 'job-0001-desk1';
  const plan1 = plan('plan-0001', 'round-0001', t1, 'approved', [m1], {
    rejected: [{ vm: desk2.id, reason: 'link-budget', detail: 'us-east-1~eu-west-1 carries desk1 this round; one migration per link' }],
    decidedBy: 'api:admin', decidedAtMs: t1 + 5000, jobs: [{ jobId, vm: desk1.id, state: 'running:precopy' }],
  });
  const plan2 = plan('plan-0002', 'round-0002', t2, 'recommended', [m2], {
    rejected: [{ vm: desk1.id, reason: 'cooling-down', detail: 'desk1 is migrating now' }],
  });

  let job = newJobRecord({ id: jobId, planId: plan1.id, move: m1, request: migrationRequest(jobId, m1, desk1, linkOf(desk1.siteId, m1.to)), atMs: t1 + 5000 });
  job = step(job, { type: 'admitted', capMbps: 100 }, t1 + 5100);
  job = step(job, { type: 'driver-started' }, t1 + 5200);
  job = step(job, { type: 'progress', phase: 'precopy' }, t1 + 6000);
  const started = t1 + 5200;
  job = { ...job, capMbps: 100, progress: progressOf(jobId, nowMs - 2000, started, m1.bytes, Math.round(m1.bytes * 0.75)) };
  const desk1Moving: VmRecord = { ...desk1, migratingJobId: jobId };

  const rounds: RoundRecord[] = [
    { id: 'round-0001', seq: 1, startedAtMs: t1, finishedAtMs: t1 + 820, durationMs: 820, mode: 'approve', leader: 'lab-manager',
      vmsObserved: 2, usersProbed: 2, planId: plan1.id, moves: 1, rejections: 1, stageMs: { telemetry: 120, fingerprint: 80, latency: 500, placement: 20, migration: 100 }, error: null },
    { id: 'round-0002', seq: 2, startedAtMs: t2, finishedAtMs: t2 + 640, durationMs: 640, mode: 'approve', leader: 'lab-manager',
      vmsObserved: 2, usersProbed: 2, planId: plan2.id, moves: 1, rejections: 1, stageMs: { telemetry: 110, fingerprint: 70, latency: 430, placement: 18 }, error: null },
  ];
  const settings: Settings = { mode: 'approve', roundIntervalS: 60, planner: 'greedy', params: DEFAULT_PLAN_PARAMS };

  await store.putMany('sites', sites.map((s) => ({ id: s.id, value: s })));
  await store.putMany('hosts', hosts.map((h) => ({ id: h.id, value: h })));
  await store.putMany('links', links.map((l) => ({ id: l.id, value: l })));
  await store.putMany('vms', [desk1Moving, desk2].map((v) => ({ id: v.id, value: v })));
  await store.putMany('users', users.map((u) => ({ id: u.id, value: u })));
  await store.put('plans', plan1.id, plan1, { status: plan1.status, group: plan1.roundId });
  await store.put('plans', plan2.id, plan2, { status: plan2.status, group: plan2.roundId });
  await store.put('jobs', job.id, job, { group: job.vm, status: 'active' });
  for (const r of rounds) await store.put('rounds', r.id, r, { status: 'ok' });
  await store.put('settings', 'manager', settings);
  await store.append<AuditEvent>('audit', [
    { key: 'manager', atMs: t1 - 60_000, value: { kind: 'started', actor: 'lab-manager', message: 'manager started in approve mode' } },
    { key: plan1.id, atMs: t1 + 5000, value: { kind: 'plan-approved', actor: 'api:admin', message: `approved: desk1 us-east-1 → us-west-2 saves alice ${m1.savingMs} ms` } },
    { key: plan2.id, atMs: t2 + 640, value: { kind: 'plan-recommended', actor: 'lab-manager', message: `waiting for approval: desk2 us-east-1 → eu-west-1 saves bob ${m2.savingMs} ms` } },
  ]);
  const fp = (vm: VmRecord, score: number): FingerprintPoint => ({
    score, sensitive: score >= 0.5, activity: 'remote-desktop', reasons: vm.reasons,
    users: vm.users.map((u) => ({ endpoint: users.find((x) => x.id === u.userId)?.endpoint ?? '', share: u.share })), bytes: 2e6,
  });
  const curve = (peak: number): number[] => Array.from({ length: 12 }, (_, i) => Math.round((0.1 + (peak - 0.1) * Math.min(1, i / 6)) * 100) / 100);
  await store.append<FingerprintPoint>('fingerprints', [
    ...curve(desk1.sensitivity).map((score, i) => ({ key: desk1.id, atMs: nowMs - (12 - i) * 10_000, value: fp(desk1, score) })),
    ...curve(desk2.sensitivity).map((score, i) => ({ key: desk2.id, atMs: nowMs - (12 - i) * 10_000 + 1, value: fp(desk2, score) })),
  ]);
  return { config, sites, vms: [desk1Moving, desk2], users, runningJob: job, pendingPlan: plan2, settings };
}
