/** Time as the rest of the code sees it: tests pass a fake, the simulator its virtual clock. */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };
