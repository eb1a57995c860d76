// PURE: the dashboard's picture of the manager — loaded once from the REST API, then kept current by the SSE
// stream's events. applyEvent() returns a new state and the page sections that must be drawn again, so the
// browser redraws only what changed (a 'progress' event touches the migrations panel, not the map).
import type { ManagerEvent } from '../../manager/events.js';
import type { MigrationView } from '../../manager/views.js';
import type {
  AuditEvent, LinkRecord, PlanRecord, RoundRecord, Settings, SiteRecord, UserRecord, VmRecord,
} from '../../store/records.js';
import type { LogEntry } from '../../store/store.js';
import { progressPercent } from './format.js';

export type { MigrationView };

/** GET /healthz. */
export interface Health {
  readonly ok: boolean;
  readonly replica: string;
  readonly leader: boolean;
  readonly store: string;
  readonly schemaVersion: number;
}

/** What the SSE stream sends: the manager's events, except that a job arrives as the API's MigrationView. */
export type StreamEvent =
  | Exclude<ManagerEvent, { readonly type: 'migration' }>
  | { readonly type: 'migration'; readonly migration: MigrationView };

export const STREAM_EVENT_TYPES = [
  'round', 'plan', 'migration', 'progress', 'fingerprint', 'vm', 'user', 'audit', 'settings',
] as const satisfies readonly StreamEvent['type'][];

export type Section = 'header' | 'map' | 'vms' | 'migrations' | 'plans' | 'audit';

export interface SparkPoint {
  readonly atMs: number;
  readonly score: number;
}

export interface DashState {
  readonly health: Health | null;
  readonly settings: Settings | null;
  readonly sites: readonly SiteRecord[];
  readonly links: readonly LinkRecord[];
  readonly users: Readonly<Record<string, UserRecord>>;
  readonly vms: Readonly<Record<string, VmRecord>>;
  /** Per VM, oldest first, at most SPARK_POINTS. */
  readonly fingerprints: Readonly<Record<string, readonly SparkPoint[]>>;
  readonly plans: Readonly<Record<string, PlanRecord>>;
  readonly migrations: Readonly<Record<string, MigrationView>>;
  /** Newest first, at most KEEP_ROUNDS. */
  readonly rounds: readonly RoundRecord[];
  /** Newest first, at most KEEP_AUDIT. */
  readonly audit: readonly LogEntry<AuditEvent>[];
}

export const SPARK_POINTS = 40;
export const KEEP_ROUNDS = 30;
export const KEEP_AUDIT = 60;
export const KEEP_ENDED_MIGRATIONS = 6;

export const EMPTY_STATE: DashState = {
  health: null, settings: null, sites: [], links: [], users: {}, vms: {}, fingerprints: {}, plans: {},
  migrations: {}, rounds: [], audit: [],
};

export interface Snapshot {
  readonly health: Health | null;
  readonly settings: Settings | null;
  readonly sites: readonly SiteRecord[];
  readonly links: readonly LinkRecord[];
  readonly users: readonly UserRecord[];
  readonly vms: readonly VmRecord[];
  /** Per VM, the API's fingerprint log entries (newest first, as GET /v1/vms/:id returns them). */
  readonly fingerprints: Readonly<Record<string, readonly LogEntry<{ readonly score: number }>[]>>;
  readonly plans: readonly PlanRecord[];
  readonly migrations: readonly MigrationView[];
  readonly rounds: readonly RoundRecord[];
  readonly audit: readonly LogEntry<AuditEvent>[];
}

const byId = <T extends { readonly id: string }>(xs: readonly T[]): Record<string, T> => {
  const out: Record<string, T> = {};
  for (const x of xs) out[x.id] = x;
  return out;
};

export function fromSnapshot(s: Snapshot): DashState {
  const fingerprints: Record<string, SparkPoint[]> = {};
  for (const [vm, entries] of Object.entries(s.fingerprints)) {
    fingerprints[vm] = sparkMerge([], entries.map((e) => ({ atMs: e.atMs, score: e.value.score })));
  }
  return {
    health: s.health,
    settings: s.settings,
    sites: [...s.sites].sort((a, b) => a.id.localeCompare(b.id)),
    links: s.links,
    users: byId(s.users),
    vms: byId(s.vms),
    fingerprints,
    plans: byId(s.plans),
    migrations: byId(s.migrations),
    rounds: newestRounds(s.rounds),
    audit: newestAudit(s.audit),
  };
}

/** Oldest first, unique by time, the newest SPARK_POINTS kept. */
function sparkMerge(have: readonly SparkPoint[], more: readonly SparkPoint[]): SparkPoint[] {
  const m = new Map<number, SparkPoint>();
  for (const p of [...have, ...more]) if (Number.isFinite(p.atMs) && Number.isFinite(p.score)) m.set(p.atMs, p);
  return [...m.values()].sort((a, b) => a.atMs - b.atMs).slice(-SPARK_POINTS);
}

function newestRounds(rs: readonly RoundRecord[]): RoundRecord[] {
  const m = new Map<string, RoundRecord>();
  for (const r of rs) m.set(r.id, r);
  return [...m.values()].sort((a, b) => b.seq - a.seq || b.startedAtMs - a.startedAtMs).slice(0, KEEP_ROUNDS);
}

function newestAudit(es: readonly LogEntry<AuditEvent>[]): LogEntry<AuditEvent>[] {
  const m = new Map<number, LogEntry<AuditEvent>>();
  for (const e of es) m.set(e.seq, e);
  return [...m.values()].sort((a, b) => b.seq - a.seq).slice(0, KEEP_AUDIT);
}

export interface Applied {
  readonly state: DashState;
  readonly changed: readonly Section[];
  /** A progress event for a job this page has not seen: the caller fetches GET /v1/migrations/:id. */
  readonly fetchMigration?: string;
}

export function applyEvent(state: DashState, ev: StreamEvent): Applied {
  switch (ev.type) {
    case 'round':
      return { state: { ...state, rounds: newestRounds([ev.round, ...state.rounds]) }, changed: ['header', 'audit'] };
    case 'plan':
      return { state: { ...state, plans: { ...state.plans, [ev.plan.id]: ev.plan } }, changed: ['plans', 'audit'] };
    case 'migration': {
      const m = ev.migration;
      const old = state.migrations[m.id];
      // An ended job never comes back to life through a late, reordered event.
      if (old !== undefined && old.ended && !m.ended) return { state, changed: [] };
      return { state: { ...state, migrations: { ...state.migrations, [m.id]: m } }, changed: ['migrations'] };
    }
    case 'progress': {
      const old = state.migrations[ev.jobId];
      if (old === undefined) return { state, changed: [], fetchMigration: ev.jobId };
      if (old.ended) return { state, changed: [] };
      const p = ev.progress;
      const terminal = p.phase === 'completed' || p.phase === 'aborted' || p.phase === 'failed';
      const next: MigrationView = {
        ...old,
        phase: terminal ? old.phase : p.phase,
        transferredBytes: p.transferredBytes,
        totalBytes: p.totalBytes,
        remainingBytes: p.remainingBytes,
        percent: progressPercent(p.totalBytes, p.remainingBytes),
        throughputMbps: p.throughputMbps,
        etaS: p.etaS,
        updatedAtMs: Math.max(old.updatedAtMs, p.atMs),
      };
      return { state: { ...state, migrations: { ...state.migrations, [old.id]: next } }, changed: ['migrations'] };
    }
    case 'fingerprint': {
      const pts = sparkMerge(state.fingerprints[ev.vm] ?? [], [{ atMs: ev.atMs, score: ev.point.score }]);
      return { state: { ...state, fingerprints: { ...state.fingerprints, [ev.vm]: pts } }, changed: ['vms'] };
    }
    case 'vm':
      return { state: { ...state, vms: { ...state.vms, [ev.vm.id]: ev.vm } }, changed: ['vms', 'map'] };
    case 'user':
      return { state: { ...state, users: { ...state.users, [ev.user.id]: ev.user } }, changed: ['vms', 'map'] };
    case 'audit':
      return { state: { ...state, audit: newestAudit([ev.entry, ...state.audit]) }, changed: ['audit'] };
    case 'settings':
      return { state: { ...state, settings: ev.settings }, changed: ['header'] };
  }
}

/** Plans waiting for an operator, newest first. */
export function pendingPlans(s: DashState): PlanRecord[] {
  return Object.values(s.plans).filter((p) => p.status === 'recommended').sort((a, b) => b.atMs - a.atMs);
}

/** Running and queued migrations (newest first), then the latest few that ended (newest end first). */
export function visibleMigrations(s: DashState): MigrationView[] {
  const all = Object.values(s.migrations);
  const live = all.filter((m) => !m.ended).sort((a, b) => b.createdAtMs - a.createdAtMs);
  const ended = all
    .filter((m) => m.ended)
    .sort((a, b) => (b.finishedAtMs ?? b.updatedAtMs) - (a.finishedAtMs ?? a.updatedAtMs))
    .slice(0, KEEP_ENDED_MIGRATIONS);
  return [...live, ...ended];
}

export function sortedVms(s: DashState): VmRecord[] {
  return Object.values(s.vms).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

/** The user → serving-site lines of the map: one per (user, VM) pair whose both ends are known. */
export interface ServeLine {
  readonly userId: string;
  readonly vmId: string;
  readonly siteId: string;
  readonly rttMs: number | null;
}

export function serveLines(s: DashState): ServeLine[] {
  const sites = new Set(s.sites.map((x) => x.id));
  const out: ServeLine[] = [];
  const seen = new Set<string>();
  for (const vm of sortedVms(s)) {
    for (const u of vm.users) {
      const user = s.users[u.userId];
      if (user === undefined || !sites.has(vm.siteId)) continue;
      const key = `${user.id}\u0000${vm.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ userId: user.id, vmId: vm.id, siteId: vm.siteId, rttMs: user.rtt[vm.siteId]?.rttMs ?? null });
    }
  }
  // A user record may name VMs whose record does not list the user yet (fingerprints lag): draw those too.
  for (const user of Object.values(s.users)) {
    for (const vmId of user.vms) {
      const vm = s.vms[vmId];
      if (vm === undefined || !sites.has(vm.siteId) || seen.has(`${user.id}\u0000${vm.id}`)) continue;
      seen.add(`${user.id}\u0000${vm.id}`);
      out.push({ userId: user.id, vmId: vm.id, siteId: vm.siteId, rttMs: user.rtt[vm.siteId]?.rttMs ?? null });
    }
  }
  return out;
}
