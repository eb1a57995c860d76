// PURE: the manager's decisions between its effects — a VM's fingerprint after a round's windows, the
// cloud snapshot the planner sees, what a plan records as its inputs, and how a plan's status follows the
// mode and its jobs. The loop (loop.ts) reads the store, calls these, and writes back.
import type { SiteId, UserId, VmId } from '../core/ids.js';
import { linkIdOf } from '../core/ids.js';
import type { ActivityClass, SnapshotInput, Snapshot } from '../core/model.js';
import { step as hysteresisStep, type HysteresisParams, type HysteresisState, DEFAULT_HYSTERESIS } from '../fingerprint/hysteresis.js';
import type { PlanParams } from '../placement/params.js';
import { spareMbps } from '../placement/cost.js';
import type { Plan, RejectReason } from '../placement/plan.js';
import type {
  FingerprintPoint, HostRecord, LinkRecord, ManagerMode, PlanInputs, PlanJobOutcome, PlanStatus, SiteRecord,
  UserRecord, VmRecord, VmUserShare,
} from '../store/records.js';

/** One closed window of a VM's flows, as classify() judged it (before hysteresis). */
export interface WindowObservation {
  readonly vm: VmId;
  readonly endMs: number;
  readonly score: number;
  readonly activity: ActivityClass;
  /** Remote ends judged to be users, with their share of the VM's interactive traffic. */
  readonly users: readonly { readonly endpoint: string; readonly share: number }[];
  readonly reasons: readonly string[];
  readonly bytes: number;
}

export interface FingerprintUpdate {
  readonly state: HysteresisState;
  readonly point: FingerprintPoint;
  /** The VM with its new fingerprint (users still as endpoints: the loop maps them to user ids). */
  readonly vm: VmRecord;
  /** Whether the VM switched between sensitive and not in this round. */
  readonly switched: boolean;
}

/** A window with less traffic than this names no users. */
export const MIN_USER_WINDOW_BYTES = 10_000;

/**
 * Runs a VM's windows of one round (oldest first) through the hysteresis. The users are those of the
 * latest window that saw any (an idle window names none, and the VM keeps serving the same people).
 */
export function fingerprintVm(
  vm: VmRecord,
  state: HysteresisState,
  windows: readonly WindowObservation[],
  userIdOf: (endpoint: string) => UserId,
  atMs: number,
  params: HysteresisParams = DEFAULT_HYSTERESIS,
): FingerprintUpdate {
  let s = state;
  let users: WindowObservation['users'] | null = null;
  let reasons: readonly string[] = [];
  let bytes = 0;
  for (const w of windows) {
    s = hysteresisStep(s, { score: w.score, activity: w.activity }, params);
    // A handful of packets (a health check, a port scan) does not make a user.
    if (w.users.length > 0 && w.bytes >= MIN_USER_WINDOW_BYTES) users = w.users;
    if (w.reasons.length > 0) reasons = w.reasons;
    bytes += w.bytes;
  }
  const shares = normaliseShares(users === null ? vm.users : users.map((u) => ({ userId: userIdOf(u.endpoint), share: u.share })));
  const allReasons = [s.reason, ...reasons];
  const point: FingerprintPoint = {
    score: s.score, sensitive: s.sensitive, activity: s.activity, reasons: allReasons,
    users: users === null ? [] : users.map((u) => ({ endpoint: u.endpoint, share: u.share })), bytes,
  };
  return {
    state: s,
    point,
    switched: s.sensitive !== vm.sensitive,
    vm: {
      ...vm,
      sensitivity: s.score, sensitive: s.sensitive, activity: s.activity, reasons: allReasons, users: shares,
      fingerprintAtMs: atMs,
    },
  };
}

/** Shares scaled to sum to 1, one entry per user (merged), in a stable order; empty stays empty. */
export function normaliseShares(users: readonly VmUserShare[]): VmUserShare[] {
  const by = new Map<UserId, number>();
  for (const u of users) if (u.share > 0 && Number.isFinite(u.share)) by.set(u.userId, (by.get(u.userId) ?? 0) + u.share);
  const total = [...by.values()].reduce((a, b) => a + b, 0);
  if (total <= 0) return [];
  const out = [...by.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([userId, share]) => ({ userId, share: share / total }));
  // Rounding: make the sum exactly 1 (createSnapshot checks it to 1e-6).
  const rest = 1 - out.slice(1).reduce((a, u) => a + u.share, 0);
  out[0] = { userId: out[0]!.userId, share: rest };
  return out;
}

/**
 * The planner's sensitivity for a VM: its smoothed score while the hysteresis says sensitive; below the
 * planner's threshold otherwise, so a VM is moved for its own sake only once the fingerprint has settled.
 */
export function plannerSensitivity(vm: Pick<VmRecord, 'sensitive' | 'sensitivity'>, params: Pick<PlanParams, 'minSensitivity'>): number {
  const s = Math.min(1, Math.max(0, Number.isFinite(vm.sensitivity) ? vm.sensitivity : 0));
  return vm.sensitive ? Math.max(s, params.minSensitivity) : Math.min(s, params.minSensitivity * 0.99);
}

/** What the planner sees: the store's records as a snapshot input (createSnapshot validates it). */
export function snapshotInput(
  atMs: number,
  w: {
    sites: readonly SiteRecord[]; hosts: readonly HostRecord[]; links: readonly LinkRecord[];
    vms: readonly VmRecord[]; users: readonly UserRecord[];
  },
  params: PlanParams,
): SnapshotInput {
  const known = new Set<string>(w.users.map((u) => u.id));
  return {
    atMs,
    sites: w.sites,
    hosts: w.hosts.map((h) => ({ id: h.id, siteId: h.siteId, capacity: h.capacity })),
    links: w.links.map((l) => ({ a: l.a, b: l.b, rttMs: l.rttMs, bandwidthMbps: l.bandwidthMbps, foregroundShare: l.foregroundShare })),
    users: w.users.map((u) => ({
      id: u.id, name: u.name, country: u.country ?? 'ZZ', lat: u.lat ?? 0, lon: u.lon ?? 0, network: u.network,
      rttMs: w.sites.map((s) => {
        const r = u.rtt[s.id];
        return r === undefined || r.stale ? null : r.rttMs;
      }),
    })),
    vms: w.vms.map((v) => ({
      // Placed by site: the planner checks site capacity, the driver picks the host within the site.
      id: v.id, siteId: v.siteId, hostId: null, vcpu: v.vcpu, memoryMiB: v.memoryMiB, diskGiB: v.diskGiB,
      dirtyRateMiBps: v.dirtyRateMiBps, workingSetMiB: v.workingSetMiB, sensitivity: plannerSensitivity(v, params),
      activity: v.activity, users: normaliseShares(v.users.filter((u) => known.has(u.userId))), pinned: v.pinned,
      excluded: v.excluded || v.migratingJobId !== null, lastMovedAtMs: v.lastMovedAtMs, recentMoves: v.recentMoves,
      diskDeltaGiB: v.diskDeltaGiB,
    })),
  };
}

/** Rejections too common to keep one by one (every idle VM, every VM already at its best site, each round): counted instead. */
export const COUNTED_REJECTIONS: ReadonlySet<RejectReason> = new Set<RejectReason>(['insensitive', 'no-users', 'already-best']);

/**
 * A plan's inputs, for the audit trail: the VMs it moved or considered (not the thousands of idle ones),
 * with the RTT their users would see from each site, the links with their spare bandwidth, and the params.
 */
export function planInputs(snapshot: Snapshot, plan: Plan, params: PlanParams): PlanInputs {
  const considered = new Set<VmId>([...plan.moves.map((m) => m.vm), ...plan.rejected.filter((r) => !COUNTED_REJECTIONS.has(r.reason)).map((r) => r.vm)]);
  const vms = snapshot.vms.filter((v) => considered.has(v.id)).map((v) => {
    const usersRttMs: Record<string, number | null> = {};
    snapshot.sites.forEach((s, j) => {
      let total = 0;
      let known = v.users.length > 0;
      for (const u of v.users) {
        const r = snapshot.users[snapshot.userIndex.get(u.userId) ?? -1]?.rttMs[j];
        if (r === null || r === undefined) known = false;
        else total += r * u.share;
      }
      usersRttMs[s.id] = known ? Math.round(total * 10) / 10 : null;
    });
    return { vm: v.id, siteId: v.siteId, sensitivity: v.sensitivity, activity: v.activity, usersRttMs };
  });
  return {
    vms,
    links: snapshot.links.map((l) => ({ id: l.id, rttMs: l.rttMs, bandwidthMbps: l.bandwidthMbps, spareMbps: spareMbps(l) })),
    params,
  };
}

/** How many VMs each counted rejection covered. */
export function countedRejections(plan: Plan): Partial<Record<RejectReason, number>> {
  const out: Partial<Record<RejectReason, number>> = {};
  for (const r of plan.rejected) if (COUNTED_REJECTIONS.has(r.reason)) out[r.reason] = (out[r.reason] ?? 0) + 1;
  return out;
}

/** The status a new plan starts in. */
export function initialPlanStatus(mode: ManagerMode, moves: number): PlanStatus {
  if (moves === 0) return 'empty';
  return mode === 'auto' ? 'submitted' : mode === 'approve' ? 'recommended' : 'dry-run';
}

const ENDED_JOB_STATES = new Set(['completed', 'aborted', 'rolled-back', 'cancelled', 'failed']);

/** A submitted or approved plan is done once every job it made has ended. */
export function planStatusAfterJobs(status: PlanStatus, jobs: readonly PlanJobOutcome[]): PlanStatus {
  if ((status === 'submitted' || status === 'approved') && jobs.length > 0 && jobs.every((j) => ENDED_JOB_STATES.has(j.state))) return 'done';
  return status;
}

/** The link record between two sites, whichever end is named first. */
export function linkBetween(links: readonly LinkRecord[], a: SiteId, b: SiteId): LinkRecord | undefined {
  const id = linkIdOf(a, b);
  return links.find((l) => l.id === id);
}

/** One sentence per move for the audit trail and the demo's narration. */
export function describeMove(m: Plan['moves'][number], vm: Pick<VmRecord, 'activity' | 'sensitivity'> | undefined): string {
  const why = m.kind === 'make-room'
    ? `to make room (its users lose ${Math.round(-m.savingMs)} ms)`
    : `its users save ${Math.round(m.savingMs)} ms of RTT`;
  const fp = vm === undefined ? '' : `; ${vm.activity}, sensitivity ${vm.sensitivity.toFixed(2)}`;
  return `move ${m.vm} ${m.from} → ${m.to}: ${why}${fp}; about ${Math.round(m.costS)} s and ${(m.bytes / 2 ** 20).toFixed(0)} MiB over the link`;
}
