// PURE: one direction of an emulated WAN link. Given each packet's arrival time and size it decides
// when the packet leaves the far end, or why it was dropped. No I/O and no clock: the relay passes
// times in, so the same inputs and seed give the same departures (property tests, simulator).
import { InputError } from '../../core/errors.js';
import { createRng, type Rng } from '../../core/random.js';
import { checkNum, isObj, onlyKeys } from '../../core/validate.js';

export interface LinkParams {
  /** one-way propagation delay */
  delayMs: number;
  /** bottleneck rate; 0 means unlimited (no serialisation, no queue) */
  rateMbps: number;
  /** bytes that may wait for (or be in) serialisation; a packet that does not fit is tail-dropped */
  queueBytes: number;
  /** random loss, 0..100, drawn from the seeded PRNG */
  lossPct: number;
  /** each packet's delay is delayMs ± a uniform draw in [0, jitterMs]; 0 keeps packets in order */
  jitterMs: number;
}

export type DropReason = 'loss' | 'queue';

export type LinkOutcome =
  | { kind: 'send'; /** when the last bit left the bottleneck */ serialisedMs: number; /** when it arrives at the far end */ departMs: number }
  | { kind: 'drop'; reason: DropReason };

export interface LinkCounters {
  offeredPackets: number;
  offeredBytes: number;
  sentPackets: number;
  sentBytes: number;
  dropLossPackets: number;
  dropQueuePackets: number;
  /** largest backlog seen right after accepting a packet */
  maxBacklogBytes: number;
}

export const DEFAULT_LINK: LinkParams = { delayMs: 0, rateMbps: 0, queueBytes: 1_000_000, lossPct: 0, jitterMs: 0 };

/** A queue of one bandwidth-delay product (never below 64 KiB): what a single TCP flow needs to fill the link. */
export function defaultQueueBytes(rateMbps: number, rttMs: number): number {
  const bdpBytes = (rateMbps * 1e6 * (rttMs / 1000)) / 8;
  return Math.max(64 * 1024, Math.ceil(bdpBytes));
}

const KEYS = ['delayMs', 'rateMbps', 'queueBytes', 'lossPct', 'jitterMs'] as const;

/** Reads link parameters from untrusted JSON; missing fields keep `base`. */
export function parseLinkParams(v: unknown, path: string, base: LinkParams = DEFAULT_LINK): LinkParams {
  if (!isObj(v)) throw new InputError(path, v, 'must be an object');
  onlyKeys(v, path, KEYS);
  const get = (k: (typeof KEYS)[number], opts: { min: number; max: number; integer?: boolean }): number =>
    v[k] === undefined ? base[k] : checkNum(v[k], `${path}.${k}`, opts);
  return {
    delayMs: get('delayMs', { min: 0, max: 60_000 }),
    rateMbps: get('rateMbps', { min: 0, max: 1_000_000 }),
    queueBytes: get('queueBytes', { min: 1, max: 1 << 30, integer: true }),
    lossPct: get('lossPct', { min: 0, max: 100 }),
    jitterMs: get('jitterMs', { min: 0, max: 60_000 }),
  };
}

/**
 * One direction of a link. The bottleneck is a fluid backlog drained at the rate: O(1) per packet.
 * Arrival times must not go backwards (an earlier time is treated as the latest one seen).
 */
export class LinkScheduler {
  private p: LinkParams;
  private readonly rng: Rng;
  private backlogBytes = 0;
  private lastMs = Number.NEGATIVE_INFINITY;
  private lastDepartMs = Number.NEGATIVE_INFINITY;
  readonly counters: LinkCounters = {
    offeredPackets: 0,
    offeredBytes: 0,
    sentPackets: 0,
    sentBytes: 0,
    dropLossPackets: 0,
    dropQueuePackets: 0,
    maxBacklogBytes: 0,
  };

  constructor(params: LinkParams, seed: number) {
    this.p = { ...params };
    this.rng = createRng(seed);
  }

  get params(): LinkParams {
    return { ...this.p };
  }

  /** New parameters from `nowMs` on: what is already queued drains at the old rate up to now. */
  setParams(params: LinkParams, nowMs: number): void {
    this.advance(nowMs);
    this.p = { ...params };
    if (this.p.rateMbps <= 0) this.backlogBytes = 0;
  }

  /** Bytes waiting for or in serialisation at `nowMs` (no state change). */
  backlogAt(nowMs: number): number {
    if (this.p.rateMbps <= 0) return 0;
    const t = Math.max(nowMs, this.lastMs);
    return Math.max(0, this.backlogBytes - (t - this.lastMs) * this.bytesPerMs());
  }

  offer(arrivalMs: number, sizeBytes: number): LinkOutcome {
    const t = this.advance(arrivalMs);
    const c = this.counters;
    c.offeredPackets++;
    c.offeredBytes += sizeBytes;
    const p = this.p;
    if (p.lossPct > 0 && this.rng.next() * 100 < p.lossPct) {
      c.dropLossPackets++;
      return { kind: 'drop', reason: 'loss' };
    }
    let serialisedMs = t;
    if (p.rateMbps > 0) {
      if (this.backlogBytes + sizeBytes > p.queueBytes) {
        c.dropQueuePackets++;
        return { kind: 'drop', reason: 'queue' };
      }
      this.backlogBytes += sizeBytes;
      if (this.backlogBytes > c.maxBacklogBytes) c.maxBacklogBytes = this.backlogBytes;
      serialisedMs = t + this.backlogBytes / this.bytesPerMs();
    }
    let departMs: number;
    if (p.jitterMs > 0) {
      const delay = Math.max(0, p.delayMs + (this.rng.next() * 2 - 1) * p.jitterMs);
      departMs = serialisedMs + delay;
    } else {
      // A delay lowered at run time must not let new packets overtake queued ones.
      departMs = Math.max(serialisedMs + p.delayMs, this.lastDepartMs);
    }
    this.lastDepartMs = Math.max(this.lastDepartMs, departMs);
    c.sentPackets++;
    c.sentBytes += sizeBytes;
    return { kind: 'send', serialisedMs, departMs };
  }

  private bytesPerMs(): number {
    return (this.p.rateMbps * 1e6) / 8 / 1000;
  }

  private advance(nowMs: number): number {
    const t = Math.max(nowMs, this.lastMs);
    if (this.p.rateMbps > 0 && this.lastMs !== Number.NEGATIVE_INFINITY) {
      this.backlogBytes = Math.max(0, this.backlogBytes - (t - this.lastMs) * this.bytesPerMs());
    }
    this.lastMs = t;
    return t;
  }
}

export interface SimPacket {
  arrivalMs: number;
  sizeBytes: number;
}

/** Runs packets (in arrival order) through a fresh scheduler: the outcomes, index by index. */
export function simulateLink(params: LinkParams, packets: readonly SimPacket[], seed = 1): LinkOutcome[] {
  const s = new LinkScheduler(params, seed);
  return packets.map((pk) => s.offer(pk.arrivalMs, pk.sizeBytes));
}
