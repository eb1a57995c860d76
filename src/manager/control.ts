// What an operator can change through the API (and so the CLI and the dashboard). The manager's loop
// implements it; on a replica that is not the leader every call throws AppError NOT_LEADER (the API answers
// 503 naming the leader). Reads do not come here: the API reads the store.
import type { VmId } from '../core/ids.js';
import type { JobRecord } from '../migration/job.js';
import type { PlanRecord, RoundRecord, Settings, VmRecord } from '../store/records.js';
import type { PlanParams } from '../placement/params.js';

export interface SettingsPatch {
  readonly mode?: Settings['mode'];
  readonly roundIntervalS?: number;
  readonly planner?: Settings['planner'];
  readonly params?: Partial<PlanParams>;
}

export interface ManagerControl {
  /** This replica's name, and whether it leads (acts) or only serves reads. */
  readonly replica: string;
  isLeader(): boolean;
  /** The current leader's name, if known. */
  leader(): Promise<string | null>;
  /** approve mode: submits a recommended plan's moves. NOT_FOUND / PLAN_NOT_PENDING (409) otherwise. */
  approvePlan(id: string, actor: string): Promise<PlanRecord>;
  rejectPlan(id: string, actor: string, reason: string | null): Promise<PlanRecord>;
  /** Aborts a running migration (cancels a queued one). NOT_FOUND; JOB_ENDED (409) if it already ended. */
  cancelMigration(jobId: string, actor: string): Promise<JobRecord>;
  updateSettings(patch: SettingsPatch, actor: string): Promise<Settings>;
  setVmFlags(id: VmId, flags: { pinned?: boolean; excluded?: boolean }, actor: string): Promise<VmRecord>;
  /** Runs a round now instead of waiting for the interval; resolves when it has been recorded. */
  runRound(actor: string): Promise<RoundRecord>;
}
