import type { Clock } from '../core/clock.js';
import { AppError } from '../core/errors.js';
import { BinaryHeap } from '../core/heap.js';
import type { SimTimers } from '../migration/sim-driver.js';

/** The simulator's clock: time moves only when the engine moves it, and never backwards. */
export class VirtualClock implements Clock {
  private t: number;

  constructor(startMs = 0) {
    this.t = startMs;
  }

  nowMs(): number {
    return this.t;
  }

  advanceTo(ms: number): void {
    if (ms < this.t) throw new RangeError(`virtual clock cannot go back from ${this.t} ms to ${ms} ms`);
    this.t = ms;
  }
}

interface Timer {
  readonly atMs: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * Timers on a VirtualClock that the engine runs one at a time, synchronously: the simulated driver's world
 * schedules its happenings here, and the engine fits them into its own agenda. Ties run in the order set.
 */
export class VirtualTimers implements SimTimers {
  private readonly heap = new BinaryHeap<Timer>((a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq));
  private seq = 0;

  constructor(readonly clock: VirtualClock) {}

  nowMs(): number {
    return this.clock.nowMs();
  }

  at(atMs: number, fn: () => void): () => void {
    const t: Timer = { atMs: Math.max(atMs, this.clock.nowMs()), seq: this.seq++, fn, cancelled: false };
    this.heap.push(t);
    return () => {
      t.cancelled = true;
    };
  }

  /** When the next live timer is due; Infinity when none is. */
  nextDueMs(): number {
    while (this.heap.peek()?.cancelled === true) this.heap.pop();
    return this.heap.peek()?.atMs ?? Infinity;
  }

  /** Moves the clock to the next timer and runs it. False when none is pending. */
  runNext(): boolean {
    if (this.nextDueMs() === Infinity) return false;
    const t = this.heap.pop()!;
    if (t.atMs > this.clock.nowMs()) this.clock.advanceTo(t.atMs);
    t.fn();
    return true;
  }

  /** Runs every timer due up to `ms` (those they set included), bounded in steps, then leaves the clock at `ms`. */
  runUntil(ms: number, maxSteps = 10_000_000): void {
    for (let i = 0; this.nextDueMs() <= ms; i++) {
      if (i >= maxSteps) throw new AppError('SIM_RUNAWAY', `The virtual timers ran ${maxSteps} callbacks before ${ms} ms and more are due (now ${this.clock.nowMs()} ms)`);
      this.runNext();
    }
    if (ms > this.clock.nowMs()) this.clock.advanceTo(ms);
  }
}
