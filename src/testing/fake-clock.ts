import type { Clock } from '../core/clock.js';

/** A clock tests set by hand. */
export class FakeClock implements Clock {
  constructor(private t = 0) {}

  nowMs(): number {
    return this.t;
  }

  set(ms: number): void {
    this.t = ms;
  }

  advance(ms: number): void {
    this.t += ms;
  }
}
