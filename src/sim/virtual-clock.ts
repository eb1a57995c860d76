import type { Clock } from '../core/clock.js';

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
