// The typed shapes the manager keeps in the store (as document values and log entries), read back by the
// API, the CLI and the dashboard. Plain JSON.
import type { ActivityClass, Link, Site, Vm, VmUser } from '../core/model.js';
import type { HostId, SiteId, UserId, VmId } from '../core/ids.js';
import type { PlanParams } from '../placement/params.js';
import type { Move, Rejection } from '../placement/plan.js';

export type SiteRecord = Site;

export interface HostRecord {
  readonly id: HostId;
  readonly siteId: SiteId;
  readonly capacity: { readonly vcpu: number; readonly memoryMiB: number };
  /** Where the host's hypervisor is reached (a QMP directory, an address); informational. */
  readonly endpoint: string | null;
}

export type LinkRecord = Link;

/** A user of a VM and their share of its interactive traffic (the model's own). */
export type VmUserShare = VmUser;

/**
 * A VM as the manager keeps it: the planner's view (core/model.ts Vm: placement, size, the latest
 * fingerprint's sensitivity and activity, users, flags, moves) plus what the manager learns and shows.
 */
export interface VmRecord extends Vm {
  readonly name: string;
  /** The addresses (IPv4/IPv6, MAC) its flows are attributed by. */
  readonly addresses: readonly string[];
  /** The latest fingerprint's verdict after hysteresis (sensitivity 0, 'background', no users until one exists). */
  readonly sensitive: boolean;
  readonly reasons: readonly string[];
  readonly fingerprintAtMs: number | null;
  /** The job moving it now, if any. */
  readonly migratingJobId: string | null;
}

/** One fingerprint of a VM (log 'fingerprints', key = VM id). */
export interface FingerprintPoint {
  readonly score: number;
  readonly sensitive: boolean;
  readonly activity: ActivityClass;
  readonly reasons: readonly string[];
  /** The remote ends judged to be its users, with their share of the interactive traffic. */
  readonly users: readonly { readonly endpoint: string; readonly share: number }[];
  readonly bytes: number;
}

export type RttSource = 'probe' | 'geoip' | 'config';

export interface UserSiteRtt {
  readonly rttMs: number;
  readonly source: RttSource;
  readonly atMs: number;
  readonly stale: boolean;
}

export interface UserRecord {
  readonly id: UserId;
  readonly name: string;
  /** The address the user's sessions come from (what the fingerprint saw). */
  readonly endpoint: string;
  /** ISO 3166 alpha-2, from configuration or GeoIP; null if unknown. */
  readonly country: string | null;
  readonly lat: number | null;
  readonly lon: number | null;
  /** A label for the network the user is on; changes when the RTTs shift (a level shift). */
  readonly network: string;
  /** Per site id. */
  readonly rtt: Readonly<Record<string, UserSiteRtt>>;
  readonly vms: readonly VmId[];
  readonly lastSeenAtMs: number;
}

/** One RTT observation (log 'rtts', key = user id). */
export interface RttPoint {
  readonly siteId: SiteId;
  readonly rttMs: number;
  readonly source: RttSource;
}

export type ManagerMode = 'auto' | 'approve' | 'dry-run';

/**
 * recommended: waits for an operator (approve mode) · approved: an operator approved it, moves submitted ·
 * rejected: an operator rejected it · superseded: a newer plan replaced it before it started ·
 * dry-run: recorded only · submitted: moves handed to the executor (auto) · done: every job ended ·
 * empty: nothing to move.
 */
export type PlanStatus = 'recommended' | 'approved' | 'rejected' | 'superseded' | 'dry-run' | 'submitted' | 'done' | 'empty';

/** What the planner saw for one VM it considered. */
export interface PlanVmInput {
  readonly vm: VmId;
  readonly siteId: SiteId;
  readonly sensitivity: number;
  readonly activity: ActivityClass;
  /** Share-weighted RTT of its users from each site (null where unknown). */
  readonly usersRttMs: Readonly<Record<string, number | null>>;
}

export interface PlanInputs {
  readonly vms: readonly PlanVmInput[];
  readonly links: readonly { readonly id: string; readonly rttMs: number; readonly bandwidthMbps: number; readonly spareMbps: number }[];
  readonly params: PlanParams;
}

export interface PlanJobOutcome {
  readonly jobId: string;
  readonly vm: VmId;
  /** The job's state label ('queued', 'running', 'completed', 'aborted', …). */
  readonly state: string;
}

export interface PlanRecord {
  readonly id: string;
  readonly roundId: string;
  readonly atMs: number;
  readonly mode: ManagerMode;
  readonly status: PlanStatus;
  readonly planner: 'greedy' | 'ilp' | 'nearest';
  readonly moves: readonly Move[];
  readonly rejected: readonly Rejection[];
  readonly totalBenefit: number;
  readonly inputs: PlanInputs;
  readonly jobs: readonly PlanJobOutcome[];
  /** Who approved, rejected or superseded it, and when. */
  readonly decidedBy: string | null;
  readonly decidedAtMs: number | null;
  readonly note: string | null;
}

export type RoundStage = 'telemetry' | 'fingerprint' | 'latency' | 'placement' | 'migration';

export interface RoundRecord {
  readonly id: string;
  readonly seq: number;
  readonly startedAtMs: number;
  readonly finishedAtMs: number | null;
  readonly durationMs: number | null;
  readonly mode: ManagerMode;
  /** The replica that ran it. */
  readonly leader: string;
  readonly vmsObserved: number;
  readonly usersProbed: number;
  readonly planId: string | null;
  readonly moves: number;
  readonly rejections: number;
  readonly stageMs: Readonly<Partial<Record<RoundStage, number>>>;
  readonly error: string | null;
}

/** One entry of the audit trail (log 'audit', key = the subject: a VM, plan, job id or 'manager'). */
export interface AuditEvent {
  readonly kind: string;
  readonly actor: string;
  readonly message: string;
  readonly data?: unknown;
}

export type TokenRole = 'admin' | 'read';

export interface TokenRecord {
  readonly id: string;
  readonly role: TokenRole;
  /** SHA-256 of the token, hex. The token itself is shown once and never stored. */
  readonly sha256: string;
  readonly label: string;
  readonly createdAtMs: number;
}

export interface Settings {
  readonly mode: ManagerMode;
  readonly roundIntervalS: number;
  readonly planner: 'greedy' | 'ilp';
  readonly params: PlanParams;
}
