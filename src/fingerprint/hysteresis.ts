// Location-sensitivity over consecutive windows: k of n to switch on, a cool-down to switch off,
// an EWMA-smoothed score, and change detection that lets the score follow a sustained change at once.
//
// A VM that plays one short video must not ping-pong across the WAN; one whose user starts a video
// call must be sensitive within two windows; one that goes idle stays sensitive through a cool-down.
// Pure: `step(state, window, params)` returns a new state and never mutates its input.

import type { ActivityClass } from './signatures.js';
import { SENSITIVE_CLASSES } from './signatures.js';

/** What one window's classification contributes (classify.ts's Verdict has these fields). */
export interface WindowVerdict {
  /** Raw location-sensitivity of the window, 0..1 (out-of-range and NaN are clamped). */
  readonly score: number;
  readonly activity: ActivityClass;
}

export interface HysteresisParams {
  /** EWMA weight of the newest window, (0, 1]. */
  readonly alpha: number;
  /** A window is "hot" when its score is at least this. */
  readonly onAt: number;
  /** A window is "cold" when its score is below this (≤ onAt; between the two a window is neither). */
  readonly offAt: number;
  /** Switch on when at least `k` of the last `n` windows were hot. */
  readonly k: number;
  readonly n: number;
  /** Switch off only after this many consecutive cold windows. */
  readonly cooldownWindows: number;
}

export const DEFAULT_HYSTERESIS: HysteresisParams = {
  alpha: 0.3,
  onAt: 0.5,
  offAt: 0.35,
  k: 2,
  n: 3,
  cooldownWindows: 5,
};

export interface HysteresisState {
  readonly sensitive: boolean;
  /** Smoothed score in [0, 1]. */
  readonly score: number;
  /** The activity behind the current state (kept through a cool-down). */
  readonly activity: ActivityClass;
  /** Raw scores of the last n windows, oldest first. */
  readonly recent: readonly number[];
  /** Consecutive cold windows while sensitive (the cool-down's progress). */
  readonly coldStreak: number;
  readonly windows: number;
  /** Windows since the state last switched. */
  readonly stableFor: number;
  /** Why the state is what it is, with numbers. */
  readonly reason: string;
}

export function initialState(): HysteresisState {
  return {
    sensitive: false, score: 0, activity: 'background', recent: [], coldStreak: 0, windows: 0, stableFor: 0,
    reason: 'no windows yet',
  };
}

const clamp01 = (x: number): number => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);
const mean = (xs: readonly number[]): number => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Rejects parameters under which the guarantees cannot hold. */
export function checkHysteresisParams(p: HysteresisParams): string[] {
  const problems: string[] = [];
  if (!(p.alpha > 0 && p.alpha <= 1)) problems.push(`alpha must be in (0, 1], got ${p.alpha}`);
  if (!(p.offAt <= p.onAt)) problems.push(`offAt (${p.offAt}) must not exceed onAt (${p.onAt})`);
  if (!(Number.isInteger(p.k) && Number.isInteger(p.n) && p.k >= 2 && p.k <= p.n)) {
    problems.push(`need integers 2 ≤ k ≤ n (a single window must never switch a VM on), got k=${p.k}, n=${p.n}`);
  }
  if (!(Number.isInteger(p.cooldownWindows) && p.cooldownWindows >= 2)) {
    problems.push(`cooldownWindows must be an integer ≥ 2, got ${p.cooldownWindows}`);
  }
  return problems;
}

export function step(state: HysteresisState, window: WindowVerdict, params: HysteresisParams = DEFAULT_HYSTERESIS): HysteresisState {
  const raw = clamp01(window.score);
  const recent = [...state.recent, raw].slice(-params.n);
  const hot = recent.filter((s) => s >= params.onAt);
  const isCold = raw < params.offAt;
  const isHot = raw >= params.onAt;
  const ewma = clamp01(state.windows === 0 ? raw : params.alpha * raw + (1 - params.alpha) * state.score);
  const windows = state.windows + 1;

  if (!state.sensitive) {
    if (hot.length >= params.k) {
      // Change detected: k hot windows. The score jumps to their level instead of crawling up.
      return {
        sensitive: true, score: clamp01(Math.max(ewma, mean(hot))), activity: sensitiveActivity(window, state),
        recent, coldStreak: 0, windows, stableFor: 0,
        reason: `sensitive: ${hot.length} of the last ${recent.length} windows scored ≥ ${params.onAt.toFixed(2)} `
          + `(latest ${raw.toFixed(2)}, ${window.activity})`,
      };
    }
    return {
      sensitive: false, score: ewma, activity: SENSITIVE_CLASSES.has(window.activity) ? state.activity : window.activity,
      recent, coldStreak: 0, windows, stableFor: state.stableFor + 1,
      reason: isHot
        ? `not sensitive yet: ${hot.length} of the last ${recent.length} windows scored ≥ ${params.onAt.toFixed(2)}, need ${params.k}`
        : `not sensitive: latest window scored ${raw.toFixed(2)} < ${params.onAt.toFixed(2)}`,
    };
  }

  const coldStreak = isCold ? state.coldStreak + 1 : 0;
  if (coldStreak >= params.cooldownWindows) {
    // Cool-down over: the score drops to the level of the cold windows.
    const cold = recent.filter((s) => s < params.offAt);
    return {
      sensitive: false, score: clamp01(Math.min(ewma, mean(cold))), activity: window.activity,
      recent, coldStreak: 0, windows, stableFor: 0,
      reason: `not sensitive: ${coldStreak} consecutive windows scored < ${params.offAt.toFixed(2)} (cool-down over)`,
    };
  }
  return {
    sensitive: true, score: ewma,
    activity: SENSITIVE_CLASSES.has(window.activity) && isHot ? window.activity : state.activity,
    recent, coldStreak, windows, stableFor: state.stableFor + 1,
    reason: coldStreak > 0
      ? `sensitive, cooling down: ${coldStreak} of ${params.cooldownWindows} quiet windows (latest ${raw.toFixed(2)} < ${params.offAt.toFixed(2)})`
      : `sensitive: latest window scored ${raw.toFixed(2)} (${window.activity})`,
  };
}

function sensitiveActivity(window: WindowVerdict, state: HysteresisState): ActivityClass {
  if (SENSITIVE_CLASSES.has(window.activity)) return window.activity;
  return SENSITIVE_CLASSES.has(state.activity) ? state.activity : window.activity;
}

/** Runs `step` over a sequence of windows from the initial state; returns every state. */
export function run(windows: readonly WindowVerdict[], params: HysteresisParams = DEFAULT_HYSTERESIS): HysteresisState[] {
  const states: HysteresisState[] = [];
  let s = initialState();
  for (const w of windows) {
    s = step(s, w, params);
    states.push(s);
  }
  return states;
}
