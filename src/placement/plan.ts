import type { SiteId, VmId } from '../core/ids.js';

export type MoveKind = 'closer-to-users' | 'make-room';

export interface Move {
  readonly vm: VmId;
  readonly from: SiteId;
  readonly to: SiteId;
  readonly kind: MoveKind;
  /** sensitivity × the share-weighted RTT its users save (negative for a make-room move that costs them). */
  readonly benefit: number;
  readonly savingMs: number;
  /** Estimated seconds of migration over the link's spare bandwidth. */
  readonly costS: number;
  readonly bytes: number;
  readonly postCopy: boolean;
  /** Moves that must finish first: they free the capacity this one uses. */
  readonly after: readonly VmId[];
}

export type RejectReason =
  | 'pinned' | 'excluded' | 'cooling-down' | 'insensitive' | 'no-users' | 'rtt-unknown' | 'already-best'
  | 'below-min-saving' | 'no-link' | 'does-not-converge' | 'too-costly' | 'no-capacity' | 'link-budget'
  | 'global-budget' | 'not-selected';

export interface Rejection {
  readonly vm: VmId;
  readonly reason: RejectReason;
  readonly detail: string;
}

export interface Plan {
  readonly atMs: number;
  readonly planner: 'greedy' | 'ilp' | 'nearest';
  readonly moves: readonly Move[];
  readonly rejected: readonly Rejection[];
  readonly totalBenefit: number;
  /** For the ILP: whether the solver proved the plan optimal. */
  readonly optimal?: boolean;
}
