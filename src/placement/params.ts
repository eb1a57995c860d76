import type { VmId } from '../core/ids.js';
import { InputError } from '../core/errors.js';
import { isObj, oneOf, onlyKeys, optNum, type Obj } from '../core/validate.js';

export type PostCopyPolicy = 'allow' | 'reject';

export interface PlanParams {
  /** A move must cut its users' (share-weighted) RTT by at least this much. */
  readonly minSavingMs: number;
  /** VMs less sensitive than this are not moved for their own sake. */
  readonly minSensitivity: number;
  /** VMs at most this sensitive may be moved out of a full site to make room ("make room"). */
  readonly evictableMaxSensitivity: number;
  /** Migrations started per round across the cloud. */
  readonly maxMovesPerRound: number;
  /** Migrations started per round over any one WAN link. */
  readonly maxMovesPerLink: number;
  /** Cooldown after a VM's first move; doubles with each further move in a streak (back-off). */
  readonly baseCooldownMs: number;
  readonly maxCooldownMs: number;
  /** What to do with a move whose pre-copy would not converge over the link's spare bandwidth. */
  readonly postCopy: PostCopyPolicy;
  /** Pre-copy stops and copies the rest once it fits in this pause. */
  readonly maxDowntimeMs: number;
  readonly maxPrecopyRounds: number;
  /** Moves estimated to take longer than this are not started. */
  readonly maxCostS: number;
  /** A move must gain at least this much benefit per second of migration it costs. */
  readonly minBenefitPerCostS: number;
  /** Every make-room move costs this much benefit (> 0), so nothing is evicted for nothing. */
  readonly evictionPenalty: number;
  /** A make-room move's RTT loss is weighed as if the VM were at least this sensitive. */
  readonly evictionRttWeight: number;
  readonly pinned: readonly VmId[];
  readonly excluded: readonly VmId[];
}

export const DEFAULT_PLAN_PARAMS: PlanParams = Object.freeze({
  minSavingMs: 10,
  minSensitivity: 0.5,
  evictableMaxSensitivity: 0.2,
  maxMovesPerRound: 20,
  maxMovesPerLink: 4,
  baseCooldownMs: 30 * 60_000,
  maxCooldownMs: 24 * 3_600_000,
  postCopy: 'allow',
  maxDowntimeMs: 300,
  maxPrecopyRounds: 30,
  maxCostS: 3_600,
  minBenefitPerCostS: 0,
  evictionPenalty: 0.01,
  evictionRttWeight: 1,
  pinned: [],
  excluded: [],
});

const KEYS = [
  'minSavingMs', 'minSensitivity', 'evictableMaxSensitivity', 'maxMovesPerRound', 'maxMovesPerLink',
  'baseCooldownMs', 'maxCooldownMs', 'postCopy', 'maxDowntimeMs', 'maxPrecopyRounds', 'maxCostS', 'minBenefitPerCostS',
  'evictionPenalty', 'evictionRttWeight', 'pinned', 'excluded',
];

/** Reads planner settings from JSON; unset keys take the defaults. */
export function parsePlanParams(raw: unknown, path = 'params'): PlanParams {
  if (raw === undefined) return DEFAULT_PLAN_PARAMS;
  if (!isObj(raw)) throw new InputError(path, raw, 'must be an object');
  const o: Obj = raw;
  onlyKeys(o, path, KEYS);
  const d = DEFAULT_PLAN_PARAMS;
  const ids = (key: string): VmId[] => {
    const v = o[key];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new InputError(`${path}.${key}`, v, 'must be an array of VM ids');
    }
    return v as VmId[];
  };
  const p: PlanParams = {
    minSavingMs: optNum(o, 'minSavingMs', path, d.minSavingMs, { min: 0 }),
    minSensitivity: optNum(o, 'minSensitivity', path, d.minSensitivity, { min: 0, max: 1 }),
    evictableMaxSensitivity: optNum(o, 'evictableMaxSensitivity', path, d.evictableMaxSensitivity, { min: 0, max: 1 }),
    maxMovesPerRound: optNum(o, 'maxMovesPerRound', path, d.maxMovesPerRound, { min: 0, integer: true }),
    maxMovesPerLink: optNum(o, 'maxMovesPerLink', path, d.maxMovesPerLink, { min: 0, integer: true }),
    baseCooldownMs: optNum(o, 'baseCooldownMs', path, d.baseCooldownMs, { min: 0 }),
    maxCooldownMs: optNum(o, 'maxCooldownMs', path, d.maxCooldownMs, { min: 0 }),
    postCopy: o.postCopy === undefined ? d.postCopy : oneOf(o, 'postCopy', path, ['allow', 'reject'] as const),
    maxDowntimeMs: optNum(o, 'maxDowntimeMs', path, d.maxDowntimeMs, { above: 0 }),
    maxPrecopyRounds: optNum(o, 'maxPrecopyRounds', path, d.maxPrecopyRounds, { min: 1, max: 1000, integer: true }),
    maxCostS: optNum(o, 'maxCostS', path, d.maxCostS, { above: 0 }),
    minBenefitPerCostS: optNum(o, 'minBenefitPerCostS', path, d.minBenefitPerCostS, { min: 0 }),
    evictionPenalty: optNum(o, 'evictionPenalty', path, d.evictionPenalty, { above: 0 }),
    evictionRttWeight: optNum(o, 'evictionRttWeight', path, d.evictionRttWeight, { min: 0, max: 1 }),
    pinned: ids('pinned'),
    excluded: ids('excluded'),
  };
  if (p.maxCooldownMs < p.baseCooldownMs) {
    throw new InputError(`${path}.maxCooldownMs`, p.maxCooldownMs, `must be at least baseCooldownMs (${p.baseCooldownMs})`);
  }
  if (p.evictableMaxSensitivity >= p.minSensitivity) {
    throw new InputError(`${path}.evictableMaxSensitivity`, p.evictableMaxSensitivity,
      `must be below minSensitivity (${p.minSensitivity}), or a VM could be both moved for its users and evicted`);
  }
  return Object.freeze(p);
}

/** Cooldown after a VM's n-th move in a streak: base × 2^(n−1), capped. */
export function cooldownMs(params: PlanParams, recentMoves: number): number {
  if (recentMoves <= 0) return 0;
  return Math.min(params.maxCooldownMs, params.baseCooldownMs * 2 ** Math.min(recentMoves - 1, 30));
}
