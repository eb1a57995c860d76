// PURE: a smoothed round-trip-time estimate per (site, user endpoint) from active probes, with percentiles,
// staleness and level-shift detection (a user who moves from Wi-Fi to 4G is picked up at once, not over
// many rounds of smoothing).

export interface RttEstimatorParams {
  /** Weight of a new sample in the smoothed RTT (RFC 6298's alpha). */
  readonly alpha: number;
  /** Weight of a new deviation in the RTT variation (RFC 6298's beta). */
  readonly beta: number;
  /** Samples kept for percentiles. */
  readonly window: number;
  /** An estimate older than this is stale. */
  readonly staleAfterMs: number;
  /** This many samples in a row outside the band (see shiftBand) mean the level shifted: restart from them. */
  readonly shiftAfter: number;
  /** A sample is outside the band when it differs from the smoothed RTT by more than max(4 × rttvar, this share of it). */
  readonly shiftShare: number;
}

export const DEFAULT_RTT_PARAMS: RttEstimatorParams = Object.freeze({
  alpha: 1 / 8, beta: 1 / 4, window: 32, staleAfterMs: 15 * 60_000, shiftAfter: 3, shiftShare: 0.25,
});

export interface RttState {
  readonly srttMs: number;
  readonly rttvarMs: number;
  /** The latest samples of the current level (percentiles come from these). */
  readonly samples: readonly number[];
  /** Every sample ever observed. */
  readonly count: number;
  readonly lastAtMs: number;
  /** Consecutive samples outside the band, oldest first. */
  readonly outliers: readonly number[];
  /** Times the level shifted (a change of network, a route change). */
  readonly shifts: number;
}

export interface RttEstimate {
  readonly rttMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly rttvarMs: number;
  readonly samples: number;
  readonly ageMs: number;
  readonly stale: boolean;
  readonly shifts: number;
}

function start(rttMs: number, atMs: number, shifts: number, window: number, history: readonly number[] = [rttMs], count = history.length): RttState {
  const samples = history.slice(-window);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const dev = samples.reduce((a, b) => a + Math.abs(b - mean), 0) / samples.length;
  return { srttMs: mean, rttvarMs: Math.max(dev, rttMs / 2 / samples.length), samples, count, lastAtMs: atMs, outliers: [], shifts };
}

/** Adds one probe's RTT. Samples that are not finite and ≥ 0 are refused by the caller's validation. */
export function observeRtt(state: RttState | null, rttMs: number, atMs: number, p: RttEstimatorParams = DEFAULT_RTT_PARAMS): RttState {
  if (!(Number.isFinite(rttMs) && rttMs >= 0)) throw new RangeError(`rttMs must be a finite number ≥ 0 (got ${rttMs})`);
  if (state === null) return start(rttMs, atMs, 0, p.window);
  const band = Math.max(4 * state.rttvarMs, p.shiftShare * state.srttMs);
  const outside = Math.abs(rttMs - state.srttMs) > band;
  if (outside) {
    const run = [...state.outliers, rttMs];
    // Only a run on one side of the estimate is a shift; a mix is noise.
    const sameSide = run.every((x) => x > state.srttMs) || run.every((x) => x < state.srttMs);
    if (sameSide && run.length >= p.shiftAfter) return start(rttMs, atMs, state.shifts + 1, p.window, run, state.count + 1);
    return { ...state, outliers: sameSide ? run : [rttMs], lastAtMs: atMs, count: state.count + 1, samples: [...state.samples, rttMs].slice(-p.window) };
  }
  const rttvarMs = (1 - p.beta) * state.rttvarMs + p.beta * Math.abs(state.srttMs - rttMs);
  const srttMs = (1 - p.alpha) * state.srttMs + p.alpha * rttMs;
  return { srttMs, rttvarMs, samples: [...state.samples, rttMs].slice(-p.window), count: state.count + 1, lastAtMs: atMs, outliers: [], shifts: state.shifts };
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export function estimateRtt(state: RttState, nowMs: number, p: RttEstimatorParams = DEFAULT_RTT_PARAMS): RttEstimate {
  const sorted = [...state.samples].sort((a, b) => a - b);
  const ageMs = Math.max(0, nowMs - state.lastAtMs);
  return {
    rttMs: state.srttMs, p50Ms: percentile(sorted, 0.5), p95Ms: percentile(sorted, 0.95), rttvarMs: state.rttvarMs,
    samples: state.count, ageMs, stale: ageMs > p.staleAfterMs, shifts: state.shifts,
  };
}
