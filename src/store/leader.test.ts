import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { InputError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { FakeClock } from '../testing/fake-clock.js';
import { createLeaderElector, type LeaderElector } from './leader.js';
import type { Lease } from './store.js';

interface Request {
  readonly holder: string;
  readonly ttlMs: number;
  answer: Lease | null;
  resolve(l: Lease): void;
  reject(e: Error): void;
}

/**
 * One lease with the stores' rules (free, expired or already yours → yours for ttl) on a fake clock, whose
 * requests wait until the test processes them (the database applies one) and delivers the answer.
 */
class ScriptedLeaseStore {
  lease: Lease | null = null;
  readonly queue: Request[] = [];
  auto = false;
  releases = 0;

  constructor(private readonly clock: FakeClock) {}

  acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    return new Promise((resolve, reject) => {
      const r: Request = { holder, ttlMs, answer: null, resolve, reject };
      this.queue.push(r);
      if (this.auto) {
        this.process(holder);
        this.deliver(holder);
      }
    });
  }

  releaseLease(_name: string, holder: string): Promise<void> {
    this.releases++;
    if (this.lease?.holder === holder) this.lease = null;
    return Promise.resolve();
  }

  /** The database applies the oldest waiting request of `holder` now. */
  process(holder: string): void {
    const r = this.queue.find((q) => q.holder === holder && q.answer === null);
    if (r === undefined) return;
    const now = this.clock.nowMs();
    if (this.lease === null || this.lease.holder === holder || this.lease.expiresAtMs <= now) {
      this.lease = { name: 'manager', holder, expiresAtMs: now + r.ttlMs };
    }
    r.answer = this.lease;
  }

  /** The oldest processed answer of `holder` reaches it. */
  deliver(holder: string): void {
    const i = this.queue.findIndex((q) => q.holder === holder && q.answer !== null);
    const r = this.queue[i];
    if (r === undefined || r.answer === null) return;
    this.queue.splice(i, 1);
    r.resolve(r.answer);
  }

  /** The oldest request of `holder` fails (processed or not: a lost answer looks the same). */
  fail(holder: string): void {
    const i = this.queue.findIndex((q) => q.holder === holder);
    const r = this.queue[i];
    if (r === undefined) return;
    this.queue.splice(i, 1);
    r.reject(new Error('connection reset'));
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(o: { ttlMs?: number; renewEveryMs?: number; holders?: string[] } = {}) {
  const clock = new FakeClock(1_000_000);
  const store = new ScriptedLeaseStore(clock);
  const changes: [string, boolean][] = [];
  const electors = (o.holders ?? ['a']).map((holder) => createLeaderElector({
    store, name: 'manager', holder, ttlMs: o.ttlMs ?? 1000, renewEveryMs: o.renewEveryMs ?? 300, clock, log: silentLogger,
    onChange: (leading) => changes.push([holder, leading]),
  }));
  return { clock, store, changes, electors, a: electors[0] as LeaderElector };
}

describe('createLeaderElector()', () => {
  it('leads once a renewal comes back with its own name, and tells onChange once', async () => {
    const { store, changes, a } = setup();
    store.auto = true;
    assert.equal(a.isLeader(), false);
    assert.equal(await a.tick(), true);
    assert.equal(await a.tick(), true);
    assert.equal(a.isLeader(), true);
    assert.equal(a.leader(), 'a');
    assert.deepEqual(changes, [['a', true]]);
  });

  it('steps down at once when a renewal fails, and leads again when the next one succeeds', async () => {
    const { store, changes, a } = setup();
    store.auto = true;
    await a.tick();
    store.auto = false;
    const p = a.tick();
    store.fail('a');
    assert.equal(await p, false);
    assert.equal(a.isLeader(), false);
    store.auto = true;
    assert.equal(await a.tick(), true);
    assert.deepEqual(changes, [['a', true], ['a', false], ['a', true]]);
  });

  it('steps down at once when a renewal names another holder', async () => {
    const { store, clock, electors: [a, b], changes } = setup({ holders: ['a', 'b'] });
    store.auto = true;
    await a!.tick();
    // a is partitioned away; its lease expires and b takes it; a's next answer names b.
    clock.advance(1000);
    assert.equal(a!.isLeader(), false);
    assert.equal(await b!.tick(), true);
    assert.equal(await a!.tick(), false);
    assert.equal(a!.isLeader(), false);
    assert.equal(a!.leader(), 'b');
    assert.deepEqual(changes.filter(([h]) => h === 'a'), [['a', true], ['a', false]]);
  });

  it('tells onChange it stepped down when its lease runs out, without waiting for the next tick', async () => {
    const clock = { nowMs: () => Date.now() };
    const changes: boolean[] = [];
    let answer = true;
    const e = createLeaderElector({
      store: {
        acquireLease: (name, holder, ttlMs) => (answer ? Promise.resolve({ name, holder, expiresAtMs: Date.now() + ttlMs }) : new Promise<Lease>(() => undefined)),
        releaseLease: () => Promise.resolve(),
      },
      name: 'm', holder: 'a', ttlMs: 80, renewEveryMs: 40, clock, log: silentLogger, onChange: (l) => changes.push(l),
    });
    assert.equal(await e.tick(), true);
    answer = false;
    void e.tick();
    await sleep(40);
    assert.deepEqual(changes, [true]);
    await sleep(120);
    assert.deepEqual(changes, [true, false]);
    assert.equal(e.isLeader(), false);
    await e.stop({ release: false });
  });

  it('stops counting itself leader ttlMs after its last successful renewal was sent, even while a renewal hangs', async () => {
    const { store, clock, a, changes } = setup({ ttlMs: 1000 });
    store.auto = true;
    await a.tick();
    store.auto = false;
    clock.advance(500);
    void a.tick(); // hangs: never processed
    clock.advance(499);
    assert.equal(a.isLeader(), true);
    clock.advance(1);
    assert.equal(a.isLeader(), false);
    assert.deepEqual(changes, [['a', true]]);
    void a.tick(); // the timer's next tick notices and tells onChange, though the renewal still hangs
    assert.deepEqual(changes, [['a', true], ['a', false]]);
    store.fail('a');
    await flush();
  });

  it('does not lead on an answer that came back ttlMs or more after it was asked', async () => {
    const { store, clock, a, changes } = setup({ ttlMs: 1000 });
    const p = a.tick();
    store.process('a');
    clock.advance(1000);
    store.deliver('a');
    assert.equal(await p, false);
    assert.equal(a.isLeader(), false);
    assert.deepEqual(changes, []);
  });

  it('stop() steps down and releases the lease; stop({ release: false }) leaves it to expire', async () => {
    const one = setup();
    one.store.auto = true;
    await one.a.tick();
    await one.a.stop();
    assert.equal(one.a.isLeader(), false);
    assert.equal(one.store.lease, null);
    assert.deepEqual(one.changes, [['a', true], ['a', false]]);
    assert.equal(await one.a.tick(), false);

    const two = setup();
    two.store.auto = true;
    await two.a.tick();
    await two.a.stop({ release: false });
    assert.equal(two.a.isLeader(), false);
    assert.equal(two.store.lease?.holder, 'a');
    assert.equal(two.store.releases, 0);
  });

  it('refuses a renew interval that is not below the ttl, naming the field', () => {
    const { store, clock } = setup();
    assert.throws(() => createLeaderElector({ store, name: 'm', holder: 'a', ttlMs: 1000, renewEveryMs: 1000, clock, log: silentLogger, onChange: () => undefined }),
      (e: unknown) => e instanceof InputError && e.field === 'renewEveryMs');
    assert.throws(() => createLeaderElector({ store, name: 'm', holder: 'a', ttlMs: 0, renewEveryMs: 1, clock, log: silentLogger, onChange: () => undefined }),
      (e: unknown) => e instanceof InputError && e.field === 'ttlMs');
  });

  it('start() asks at once and then every renewEveryMs', async () => {
    const clock = new FakeClock(0);
    let asks = 0;
    const e = createLeaderElector({
      store: {
        acquireLease: (name, holder, ttlMs) => {
          asks++;
          return Promise.resolve({ name, holder, expiresAtMs: ttlMs });
        },
        releaseLease: () => Promise.resolve(),
      },
      name: 'm', holder: 'a', ttlMs: 10_000, renewEveryMs: 20, clock, log: silentLogger, onChange: () => undefined,
    });
    e.start();
    await flush();
    assert.equal(asks, 1);
    assert.equal(e.isLeader(), true);
    await sleep(130);
    await e.stop();
    assert.ok(asks >= 4 && asks <= 8, `${asks} asks in 130 ms at 20 ms`);
    const after = asks;
    await sleep(60);
    assert.equal(asks, after);
  });

  it('never lets two electors lead at once, and a leader always holds the lease, whatever the delays, failures and clock steps', async () => {
    const who = fc.constantFrom('a', 'b');
    const command = fc.oneof(
      fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 700 }) }),
      fc.record({ t: fc.constantFrom('tick' as const, 'process' as const, 'deliver' as const, 'fail' as const, 'halt' as const), who }),
    );
    await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60, size: 'max' }), async (cmds) => {
      const { store, clock, electors } = setup({ ttlMs: 1000, holders: ['a', 'b'] });
      const byName = new Map(electors.map((e, i) => [i === 0 ? 'a' : 'b', e]));
      for (const c of cmds) {
        if (c.t === 'advance') clock.advance(c.ms);
        else if (c.t === 'tick') void byName.get(c.who)?.tick();
        else if (c.t === 'process') store.process(c.who);
        else if (c.t === 'deliver') store.deliver(c.who);
        else if (c.t === 'fail') store.fail(c.who);
        else void byName.get(c.who)?.stop({ release: false });
        await flush();
        const leaders = [...byName].filter(([, e]) => e.isLeader()).map(([n]) => n);
        assert.ok(leaders.length <= 1, `both lead after ${JSON.stringify(c)}`);
        for (const l of leaders) {
          assert.equal(store.lease?.holder, l);
          assert.ok((store.lease?.expiresAtMs ?? 0) > clock.nowMs());
        }
      }
      for (const r of store.queue.splice(0)) r.reject(new Error('test over'));
    }), { numRuns: 300 });
  });
});
