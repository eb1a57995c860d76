// The contract every migration driver keeps (QEMU over QMP, and the simulated one). PURE types only.
import type { HostId, SiteId, VmId } from '../core/ids.js';

/** Where a VM instance lives: a site and, optionally, a host in it. */
export interface Placement {
  readonly siteId: SiteId;
  readonly hostId: HostId | null;
}

/** The WAN link a migration crosses, as measured (not as configured). */
export interface LinkMeasure {
  readonly rttMs: number;
  readonly bandwidthMbps: number;
  /** Share of the link kept for foreground (user) traffic; the migration is capped to the rest. */
  readonly foregroundShare: number;
  /** Packet loss on the link, in percent. */
  readonly lossPct: number;
}

/** What the migration must carry. */
export interface VmShape {
  readonly memoryMiB: number;
  readonly dirtyRateMiBps: number;
  readonly workingSetMiB: number;
  /** Disk still to copy; 0 when the sites share storage. */
  readonly diskGiB: number;
}

export type StallAction = 'raise-downtime' | 'post-copy' | 'abort';

export interface MigrationPolicy {
  /** The pause the user may notice at switch-over. */
  readonly maxDowntimeMs: number;
  /** The stepwise raise on a stall never goes beyond this. */
  readonly maxDowntimeCeilingMs: number;
  readonly postCopyAllowed: boolean;
  /** Remaining bytes not falling for this long is a stall. */
  readonly stallTimeoutMs: number;
  /** What to do on a stall, in order: e.g. ['raise-downtime', 'post-copy', 'abort']. The last one repeats. */
  readonly onStall: readonly StallAction[];
  /** Encrypt the migration and disk streams between sites. */
  readonly tls: boolean;
  /** The whole migration is aborted (VM left at the source) after this long. */
  readonly deadlineMs: number;
}

export interface MigrationRequest {
  /** Unique per attempt; the executor's job id. */
  readonly jobId: string;
  readonly vm: VmId;
  readonly from: Placement;
  readonly to: Placement;
  readonly link: LinkMeasure;
  readonly shape: VmShape;
  /** 'shared': both sites see the disk; 'mirror': copy it to the destination first (NBD). */
  readonly storage: 'shared' | 'mirror';
  readonly policy: MigrationPolicy;
  /**
   * The executor's admission cap for this migration (its split of the link's migration share), Mbps.
   * Absent: the link's spare bandwidth, bandwidthMbps × (1 − foregroundShare). A driver never exceeds either.
   */
  readonly bandwidthCapMbps?: number;
}

export type MigrationPhase =
  | 'preparing'       // destination being started and wired up
  | 'mirroring-disk'  // disk copied to the destination, RAM not yet
  | 'precopy'         // RAM rounds while the guest runs at the source
  | 'postcopy'        // guest runs at the destination, pages pulled on demand
  | 'switching-over'  // guest paused, last pages and the disk's tail in flight
  | 'completed'
  | 'aborting'
  | 'aborted'
  | 'failed';

export const TERMINAL_PHASES: readonly MigrationPhase[] = ['completed', 'aborted', 'failed'];

/** One snapshot of a running migration. Byte counts are RAM and disk together. */
export interface MigrationProgress {
  readonly jobId: string;
  readonly phase: MigrationPhase;
  readonly atMs: number;
  readonly elapsedMs: number;
  readonly transferredBytes: number;
  readonly remainingBytes: number;
  readonly totalBytes: number;
  readonly diskRemainingBytes: number;
  readonly dirtyRateBytesPerS: number;
  readonly throughputMbps: number;
  readonly expectedDowntimeMs: number | null;
  /** Seconds to completion at the current rate; null while unknown. */
  readonly etaS: number | null;
  readonly downtimeLimitMs: number;
  /** Stall actions taken so far, in order. */
  readonly stallActions: readonly StallAction[];
}

/** A setting the driver chose, and why: every choice is explained. */
export interface SettingChoice {
  readonly name: string;
  readonly value: string | number | boolean;
  readonly reason: string;
}

export interface MigrationOutcome {
  readonly jobId: string;
  readonly status: 'completed' | 'aborted' | 'failed';
  /** Where the VM runs now: the destination if completed, otherwise the source. */
  readonly runningAt: Placement;
  readonly durationMs: number;
  readonly downtimeMs: number | null;
  readonly transferredBytes: number;
  readonly settings: readonly SettingChoice[];
  readonly stallActions: readonly StallAction[];
  /** For aborted and failed: what happened, then the state it left. */
  readonly reason: string | null;
}

export interface MigrationHandle {
  readonly jobId: string;
  /** Every progress snapshot from now until the migration ends (then the iterator finishes). */
  progress(): AsyncIterable<MigrationProgress>;
  /** Resolves once the migration has ended, however it ended. Never rejects. */
  readonly done: Promise<MigrationOutcome>;
  /** Stop, leaving the VM running at the source. Idempotent; resolves once the source runs again. */
  abort(reason: string): Promise<void>;
  /**
   * Changes the bandwidth cap while it runs (admission re-splits a link's share when migrations start or end).
   * Optional: a driver without it keeps the cap it started with.
   */
  setBandwidthCap?(capMbps: number): Promise<void>;
}

/** What the hypervisors say about a VM's instances, for reconciling after a restart. */
export type InstanceState = 'running' | 'paused' | 'incoming' | 'postmigrate' | 'absent';

export interface Presence {
  readonly vm: VmId;
  readonly source: InstanceState;
  readonly destination: InstanceState;
  /** The driver's own record says the switch-over completed (e.g. QEMU's query-migrate at the source). */
  readonly migrationCompleted: boolean;
}

export interface MigrationDriver {
  readonly kind: string;
  /** Starts a migration. Rejects (with nothing started) only if the request cannot be attempted at all. */
  start(req: MigrationRequest): Promise<MigrationHandle>;
  /** Where a job's instances stand now, even after the process that started it died. */
  inspect(req: MigrationRequest): Promise<Presence>;
  /** Finish a switch-over found complete on restart: release the source, run the destination. */
  finish(req: MigrationRequest): Promise<void>;
  /** Undo a migration found half-way on restart: stop the destination, keep (or resume) the source. */
  rollBack(req: MigrationRequest): Promise<void>;
}
