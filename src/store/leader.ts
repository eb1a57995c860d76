// Leader election over a Store lease: of several manager replicas on one PostgreSQL database exactly one
// acts, the others serve reads and take over within ttl + renew interval when the leader dies.
//
// Safety rests on one rule: a replica counts itself leader only until `ttlMs` after it SENT its last
// successful renewal. The database set the lease's expiry at least that late (it received the request
// after it was sent), so no other replica can take the lease while this one still believes it leads.
// Any doubt (a failed renewal, a lease held by another, an answer that came back too late) steps down at once.
import { systemClock, type Clock } from '../core/clock.js';
import { InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Store } from './store.js';

export interface LeaderElectorOptions {
  readonly store: Pick<Store, 'acquireLease' | 'releaseLease'>;
  /** The lease's name ('manager'). */
  readonly name: string;
  /** This replica's name, unique among replicas. */
  readonly holder: string;
  readonly ttlMs: number;
  /** Less than ttlMs (a third of it is usual): a follower tries as often, a leader renews as often. */
  readonly renewEveryMs: number;
  readonly clock?: Clock;
  readonly log: Logger;
  /** Called on every change: true when this replica starts leading, false when it stops. */
  readonly onChange: (leading: boolean, leader: string | null) => void;
}

export interface LeaderElector {
  /** Asks for the lease now and then every renewEveryMs. */
  start(): void;
  /**
   * Stops asking, steps down, and (unless `release: false`) gives the lease up so another replica takes over
   * at its next try instead of after the ttl.
   */
  stop(opts?: { release?: boolean }): Promise<void>;
  /** True only while the last successful renewal was sent less than ttlMs ago. */
  isLeader(): boolean;
  /** The holder the last answer named (this replica or another), null before any answer. */
  leader(): string | null;
  /** One renewal now (start() calls it on a timer); resolves to isLeader() afterwards. */
  tick(): Promise<boolean>;
}

export function createLeaderElector(o: LeaderElectorOptions): LeaderElector {
  if (!Number.isSafeInteger(o.ttlMs) || o.ttlMs < 1) throw new InputError('ttlMs', o.ttlMs, 'must be a whole number of milliseconds above 0');
  if (!Number.isSafeInteger(o.renewEveryMs) || o.renewEveryMs < 1 || o.renewEveryMs >= o.ttlMs) {
    throw new InputError('renewEveryMs', o.renewEveryMs, `must be a whole number of milliseconds above 0 and below ttlMs (${o.ttlMs})`);
  }
  const clock = o.clock ?? systemClock;
  const log = o.log.child({ lease: o.name, holder: o.holder });
  let leading = false;
  /** When the last renewal that came back ours was sent. */
  let lastOkSentAtMs = Number.NEGATIVE_INFINITY;
  let known: string | null = null;
  let inFlight: Promise<boolean> | null = null;
  let timer: NodeJS.Timeout | null = null;
  /** Fires when the lease this replica last renewed runs out, so onChange(false) comes on time even if no tick does. */
  let deadline: NodeJS.Timeout | null = null;
  let stopped = false;

  const fresh = (): boolean => clock.nowMs() - lastOkSentAtMs < o.ttlMs;

  const set = (next: boolean, why: string): void => {
    if (next === leading) return;
    leading = next;
    if (next) log.info('leading', { why });
    else log.warn('stepped down', { why });
    try {
      o.onChange(next, known);
    } catch (e) {
      log.error('the leadership change handler failed', { error: (e as Error).message });
    }
  };

  /** Steps down once the last successful renewal is too old, even while a renewal hangs. */
  const checkFresh = (): void => {
    if (leading && !fresh()) set(false, `no successful renewal for ${clock.nowMs() - lastOkSentAtMs} ms (ttl ${o.ttlMs} ms)`);
  };

  const tick = (): Promise<boolean> => {
    checkFresh();
    if (stopped) return Promise.resolve(false);
    if (inFlight !== null) return inFlight;
    const sentAtMs = clock.nowMs();
    const p = o.store.acquireLease(o.name, o.holder, o.ttlMs).then(
      (lease) => {
        if (stopped) return false;
        known = lease.holder;
        if (lease.holder !== o.holder) {
          set(false, `the lease is held by ${lease.holder}`);
        } else if (clock.nowMs() - sentAtMs >= o.ttlMs) {
          // The answer is older than the lease it granted: another replica may already hold it.
          set(false, `the renewal took ${clock.nowMs() - sentAtMs} ms, ttl ${o.ttlMs} ms`);
        } else {
          lastOkSentAtMs = Math.max(lastOkSentAtMs, sentAtMs);
          set(true, leading ? 'renewed' : 'acquired the lease');
          if (deadline !== null) clearTimeout(deadline);
          deadline = setTimeout(checkFresh, Math.max(0, lastOkSentAtMs + o.ttlMs - clock.nowMs()) + 1);
          deadline.unref();
        }
        return leading && fresh();
      },
      (e: unknown) => {
        if (!stopped) {
          log.warn('lease renewal failed', { error: (e as Error).message });
          set(false, `renewal failed: ${(e as Error).message}`);
        }
        return false;
      },
    ).finally(() => {
      if (inFlight === p) inFlight = null;
    });
    inFlight = p;
    return p;
  };

  return {
    start() {
      if (timer !== null || stopped) return;
      void tick();
      timer = setInterval(() => void tick(), o.renewEveryMs);
    },
    async stop(opts = {}) {
      if (stopped) return;
      stopped = true;
      if (timer !== null) clearInterval(timer);
      if (deadline !== null) clearTimeout(deadline);
      timer = null;
      deadline = null;
      set(false, 'stopping');
      const pending = inFlight;
      if (pending !== null) {
        // A renewal in flight may still grant us the lease: wait for it (bounded) before releasing.
        let t: NodeJS.Timeout | undefined;
        await Promise.race([pending, new Promise((r) => (t = setTimeout(r, o.ttlMs)))]);
        clearTimeout(t);
      }
      // releaseLease gives it up only if this replica holds it: safe to ask whatever the last answer was.
      if (opts.release !== false) {
        await o.store.releaseLease(o.name, o.holder).catch((e: unknown) => {
          log.warn('releasing the lease failed; it expires on its own', { error: (e as Error).message, ttlMs: o.ttlMs });
        });
      }
    },
    isLeader: () => leading && !stopped && fresh(),
    leader: () => known,
    tick,
  };
}
