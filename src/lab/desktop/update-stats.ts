// PURE. Summaries of what a remote-desktop viewer measured: update time (request sent → update fully
// received), updates per second, bytes per second, and — when the video's frame marker was seen —
// how old a frame was when it reached the viewer.

export interface UpdateSample {
  /** when the update was fully received (the client's monotonic clock, ms) */
  doneAtMs: number;
  /** FramebufferUpdateRequest sent → FramebufferUpdate fully received */
  updateMs: number;
  /** bytes of the FramebufferUpdate message */
  bytes: number;
  rects: number;
  /** wall-clock age of the video frame it carried (receive time − draw time), when it carried one */
  frameAgeMs: number | null;
}

export interface Distribution {
  p50: number;
  p95: number;
  mean: number;
  min: number;
  max: number;
}

export interface UpdateSummary {
  windowMs: number;
  updates: number;
  updatesPerS: number;
  /** every byte received from the server in the window, per second */
  bytesPerS: number;
  /** null when no update completed in the window (an idle desktop) */
  updateMs: Distribution | null;
  frameAgeMs: Distribution | null;
  /** mean rectangles per update */
  rectsPerUpdate: number;
}

/** The q-quantile (0 ≤ q ≤ 1) of ascending `sorted` by the nearest-rank method; NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

export function distribution(xs: readonly number[]): Distribution | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return {
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0]!,
    max: s[s.length - 1]!,
  };
}

/** Summary of the updates that completed in a window of `windowMs` during which `bytes` arrived. */
export function summarize(samples: readonly UpdateSample[], windowMs: number, bytes: number): UpdateSummary {
  const w = Math.max(1, windowMs);
  const ages = samples.map((s) => s.frameAgeMs).filter((a): a is number => a !== null);
  return {
    windowMs: w,
    updates: samples.length,
    updatesPerS: (samples.length * 1000) / w,
    bytesPerS: (bytes * 1000) / w,
    updateMs: distribution(samples.map((s) => s.updateMs)),
    frameAgeMs: distribution(ages),
    rectsPerUpdate: samples.length === 0 ? 0 : samples.reduce((a, s) => a + s.rects, 0) / samples.length,
  };
}

/** One line for logs and test diagnostics. */
export function formatSummary(s: UpdateSummary): string {
  const ms = (d: Distribution | null): string => (d === null ? 'none' : `p50 ${d.p50.toFixed(1)} p95 ${d.p95.toFixed(1)} ms`);
  const age = s.frameAgeMs === null ? '' : `, frame age ${ms(s.frameAgeMs)}`;
  return `${s.updatesPerS.toFixed(1)} updates/s, ${(s.bytesPerS / 1e6).toFixed(2)} MB/s, update time ${ms(s.updateMs)}${age} (${s.updates} updates in ${(s.windowMs / 1000).toFixed(1)} s)`;
}
