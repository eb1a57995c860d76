// The pre-copy model: what a live migration costs over a link, in bytes and seconds.

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export interface MigrationShape {
  readonly memoryMiB: number;
  readonly workingSetMiB: number;
  readonly dirtyRateMiBps: number;
  /** Disk still to copy to the destination. */
  readonly diskGiB: number;
}

export interface CostEstimate {
  /** Bytes that must cross the WAN: disk + every pre-copy round (+ post-copy's pages). */
  readonly bytes: number;
  readonly seconds: number;
  /** Pre-copy rounds including the final stop-and-copy. */
  readonly rounds: number;
  /** Pre-copy alone reaches a pause within the downtime limit. */
  readonly converges: boolean;
  /** The estimate switches to post-copy after the first pass (pre-copy does not converge, or is dearer). */
  readonly postCopy: boolean;
  /** Expected pause: stop-and-copy of the last round (or one RTT-ish pause for post-copy). */
  readonly downtimeMs: number;
}

/**
 * Round 0 sends all memory; each later round sends what was re-dirtied while the previous one ran
 * (dirty rate × round time, never more than the working set). Pre-copy stops once a round fits in the
 * downtime limit; if that takes more than `maxRounds`, it does not converge, and post-copy (one pass of
 * memory, then the pages dirtied meanwhile fetched on demand) is the estimate instead. Where post-copy is
 * allowed it is also chosen when a converging pre-copy would move more than PRECOPY_OVERHEAD_LIMIT times
 * its bytes (many rounds): post-copy always moves the fewest bytes, but a guest faulting pages across the
 * WAN runs slowly and dies with the link, so pre-copy stays the default while it is not much dearer.
 * More bandwidth therefore never makes a move look more than that factor dearer.
 */
/** A converging pre-copy moving more than this many times post-copy's bytes is planned as post-copy (where allowed). */
export const PRECOPY_OVERHEAD_LIMIT = 1.5;

export function estimateMigration(
  shape: MigrationShape,
  spareMbps: number,
  limits: { maxDowntimeMs: number; maxRounds: number; postCopyAllowed?: boolean },
): CostEstimate {
  const bytesPerS = (spareMbps * 1e6) / 8;
  const diskBytes = shape.diskGiB * GiB;
  const memBytes = shape.memoryMiB * MiB;
  const wsBytes = Math.min(shape.workingSetMiB, shape.memoryMiB) * MiB;
  const dirtyBytesPerS = shape.dirtyRateMiBps * MiB;
  if (!(bytesPerS > 0)) {
    return { bytes: diskBytes + memBytes, seconds: Infinity, rounds: 0, converges: false, postCopy: false, downtimeMs: Infinity };
  }
  // Post-copy: one full pass, then the pages dirtied during it, fetched once each.
  const postBytes = diskBytes + memBytes + Math.min(wsBytes, dirtyBytesPerS * (memBytes / bytesPerS));
  const post = (converges: boolean): CostEstimate =>
    ({ bytes: postBytes, seconds: postBytes / bytesPerS, rounds: 1, converges, postCopy: true, downtimeMs: 0 });
  const stopBytes = (bytesPerS * limits.maxDowntimeMs) / 1000;
  let round = memBytes;
  let sent = 0;
  for (let i = 1; i <= limits.maxRounds; i++) {
    if (round <= stopBytes) {
      sent += round;
      const bytes = diskBytes + sent;
      if (limits.postCopyAllowed === true && bytes > PRECOPY_OVERHEAD_LIMIT * postBytes) return post(true);
      return { bytes, seconds: bytes / bytesPerS, rounds: i, converges: true, postCopy: false, downtimeMs: (round / bytesPerS) * 1000 };
    }
    sent += round;
    round = Math.min(wsBytes, dirtyBytesPerS * (round / bytesPerS));
  }
  return post(false);
}

export function spareMbps(link: { bandwidthMbps: number; foregroundShare: number }): number {
  return link.bandwidthMbps * (1 - link.foregroundShare);
}
