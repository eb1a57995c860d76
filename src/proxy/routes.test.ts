import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InputError } from '../core/errors.js';
import {
  applyAll, applyUpdate, emptyTable, parseRouteUpdate, pathChanges, resolve, wantedListeners,
  type Backend, type RouteTable, type RouteUpdate,
} from './routes.js';

const svc = fc.constantFrom('desk-1', 'desk-2', 'desk-3');
const ip = fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 })).map(([a, b]) => `10.${a}.0.${b}`);
const backend: fc.Arbitrary<Backend> = fc.record({ host: ip, port: fc.constantFrom(7, 80, 5900) }, { requiredKeys: ['host', 'port'] })
  .chain((b) => fc.option(fc.constantFrom('192.0.2.1', '192.0.2.2'), { nil: undefined }).map((via) => (via === undefined ? b : { ...b, via })));
const listen = fc.record({ host: fc.constantFrom('127.0.0.1', '127.0.0.2'), port: fc.integer({ min: 7000, max: 7003 }) });
const gen = fc.integer({ min: 0, max: 50 });
const update: fc.Arbitrary<RouteUpdate> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), service: svc, generation: gen, listen, backends: fc.array(backend, { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('switching' as const), service: svc, generation: gen, holdMs: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drain' as const), service: svc, generation: gen }) },
);

const setU = (service: string, generation: number, host: string, extra: Partial<Backend> = {}): RouteUpdate => ({
  kind: 'set', service, generation, listen: { host: '127.0.0.1', port: 7000 }, backends: [{ host, port: 7, ...extra }],
});

describe('route table (pure)', () => {
  it('applyUpdate() applies a newer generation and ignores an older one', () => {
    let t: RouteTable = emptyTable;
    t = applyUpdate(t, setU('d', 5, '10.0.0.1'), 0).table;
    const newer = applyUpdate(t, setU('d', 6, '10.0.0.2'), 0);
    assert.equal(newer.outcome.status, 'applied');
    assert.equal(newer.table.routes.get('d')?.backends[0]?.host, '10.0.0.2');
    const stale = applyUpdate(newer.table, setU('d', 4, '10.0.0.3'), 0);
    assert.equal(stale.outcome.status, 'stale');
    assert.equal(stale.table, newer.table);
  });

  it('the generation of every route never decreases, whatever the order of updates', () => {
    fc.assert(fc.property(fc.array(update, { maxLength: 40 }), (us) => {
      let t: RouteTable = emptyTable;
      for (const u of us) {
        const next = applyUpdate(t, u, 0).table;
        for (const [s, r] of t.routes) assert.ok((next.routes.get(s)?.generation ?? -1) >= r.generation);
        t = next;
      }
    }));
  });

  it('an update that is not applied leaves the table itself unchanged (same object)', () => {
    fc.assert(fc.property(fc.array(update, { maxLength: 30 }), update, (us, u) => {
      const t = applyAll(emptyTable, us, 0).table;
      const r = applyUpdate(t, u, 0);
      if (r.outcome.status !== 'applied') assert.equal(r.table, t);
    }));
  });

  it('set updates with distinct generations end in the newest one, in any arrival order', () => {
    const gens = fc.uniqueArray(gen, { minLength: 1, maxLength: 12 });
    fc.assert(fc.property(gens, fc.array(backend, { minLength: 12, maxLength: 12 }), fc.infiniteStream(fc.nat()), (gs, bs, rnd) => {
      const us = gs.map((g, i): RouteUpdate => ({ kind: 'set', service: 's', generation: g, listen: { host: '127.0.0.1', port: 7000 }, backends: [bs[i]!] }));
      const shuffled = [...us];
      const it = rnd[Symbol.iterator]();
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = (it.next().value as number) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const newest = us.reduce((a, b) => (b.generation > a.generation ? b : a));
      const r = applyAll(emptyTable, shuffled, 0).table.routes.get('s');
      assert.equal(r?.generation, newest.generation);
      assert.deepEqual(r?.backends, (newest as Extract<RouteUpdate, { kind: 'set' }>).backends);
    }));
  });

  it('replaying the updates that were applied (duplicates, retries) changes nothing', () => {
    fc.assert(fc.property(fc.array(update, { maxLength: 30 }), (us) => {
      const first = applyAll(emptyTable, us, 0);
      const once = first.table;
      const again = applyAll(once, us.filter((_, i) => first.outcomes[i]?.status === 'applied'), 0);
      assert.equal(again.table, once);
      assert.ok(again.outcomes.every((o) => o.status !== 'applied'));
    }));
  });

  it('the same generation with other content is rejected and keeps what was applied', () => {
    const t = applyUpdate(emptyTable, setU('d', 3, '10.0.0.1'), 0).table;
    const r = applyUpdate(t, setU('d', 3, '10.0.0.9'), 0);
    assert.equal(r.outcome.status, 'rejected');
    assert.equal(r.table.routes.get('d')?.backends[0]?.host, '10.0.0.1');
  });

  it('no two services that accept sessions ever share a listen address', () => {
    fc.assert(fc.property(fc.array(update, { maxLength: 40 }), (us) => {
      const t = applyAll(emptyTable, us, 0).table;
      const live = [...t.routes.values()].filter((r) => r.state.kind !== 'draining');
      const keys = live.map((r) => `${r.listen.host}:${r.listen.port}`);
      assert.equal(new Set(keys).size, keys.length);
      assert.equal(wantedListeners(t).size, live.length);
    }));
  });

  it('resolve() gives only the route\'s own backends, each in turn (round robin)', () => {
    fc.assert(fc.property(fc.array(backend, { minLength: 1, maxLength: 5 }), fc.nat(1000), (bs, start) => {
      const t = applyUpdate(emptyTable, { kind: 'set', service: 's', generation: 1, listen: { host: '127.0.0.1', port: 1 }, backends: bs }, 0).table;
      const counts = new Map<number, number>();
      for (let k = 0; k < bs.length * 3; k++) {
        const r = resolve(t, 's', 0, start + k);
        assert.equal(r.kind, 'connect');
        if (r.kind !== 'connect') return;
        const i = bs.indexOf(r.backend);
        assert.ok(i >= 0);
        counts.set(i, (counts.get(i) ?? 0) + 1);
      }
      for (let i = 0; i < bs.length; i++) assert.equal(counts.get(i), 3);
    }));
  });

  it('a switching route holds new sessions until its hold ends, then sends them to the current backends', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 20_000 }), (holdMs, atMs) => {
      let t = applyUpdate(emptyTable, setU('d', 1, '10.0.0.1'), 0).table;
      t = applyUpdate(t, { kind: 'switching', service: 'd', generation: 2, holdMs }, 1000).table;
      const r = resolve(t, 'd', 1000 + atMs, 0);
      if (atMs < holdMs) assert.deepEqual(r, { kind: 'hold', untilMs: 1000 + holdMs, generation: 2 });
      else assert.equal(r.kind === 'connect' && r.backend.host, '10.0.0.1');
    }));
  });

  it('a newer set ends the switch at once; a stale set from before the switch does not', () => {
    let t = applyUpdate(emptyTable, setU('d', 1, '10.0.0.1'), 0).table;
    t = applyUpdate(t, { kind: 'switching', service: 'd', generation: 2, holdMs: 5000 }, 0).table;
    assert.equal(applyUpdate(t, setU('d', 1, '10.0.0.7'), 10).outcome.status, 'stale');
    assert.equal(resolve(t, 'd', 10, 0).kind, 'hold');
    t = applyUpdate(t, setU('d', 3, '10.0.0.2'), 10).table;
    const r = resolve(t, 'd', 10, 0);
    assert.equal(r.kind === 'connect' && r.backend.host, '10.0.0.2');
  });

  it('a draining route refuses new sessions and frees its listen address for another service', () => {
    let t = applyUpdate(emptyTable, setU('a', 1, '10.0.0.1'), 0).table;
    assert.equal(applyUpdate(t, setU('b', 1, '10.0.0.2'), 0).outcome.status, 'rejected');
    t = applyUpdate(t, { kind: 'drain', service: 'a', generation: 2 }, 0).table;
    assert.deepEqual(resolve(t, 'a', 0, 0), { kind: 'refuse', reason: 'draining' });
    assert.equal(applyUpdate(t, setU('b', 1, '10.0.0.2'), 0).outcome.status, 'applied');
    assert.deepEqual(resolve(emptyTable, 'zz', 0, 0), { kind: 'refuse', reason: 'unknown-service' });
  });

  it('pathChanges() lists each backend whose site address (via) is new or moved, and nothing else', () => {
    const a = applyUpdate(emptyTable, setU('d', 1, '172.30.0.50', { via: '10.1.1.50' }), 0);
    assert.ok(a.outcome.status === 'applied');
    if (a.outcome.status !== 'applied') return;
    assert.deepEqual(pathChanges(null, a.outcome.route), [{ host: '172.30.0.50', via: '10.1.1.50' }]);
    const b = applyUpdate(a.table, setU('d', 2, '172.30.0.50', { via: '10.2.1.50' }), 0);
    const c = applyUpdate(b.table, setU('d', 3, '172.30.0.50', { via: '10.2.1.50' }), 0);
    if (b.outcome.status !== 'applied' || c.outcome.status !== 'applied') return assert.fail('both apply');
    assert.deepEqual(pathChanges(b.outcome.previous, b.outcome.route), [{ host: '172.30.0.50', via: '10.2.1.50' }]);
    assert.deepEqual(pathChanges(c.outcome.previous, c.outcome.route), []);
  });

  it('parseRouteUpdate() accepts what it produces and names the bad field otherwise', () => {
    fc.assert(fc.property(update, (u) => {
      const plain: unknown = JSON.parse(JSON.stringify(u));
      assert.deepEqual(parseRouteUpdate(plain), plain);
    }));
    const bad: [unknown, string][] = [
      [{ kind: 'set', service: 'd', generation: 1, listen: { host: 'example.com', port: 1 }, backends: [] }, 'update.listen.host'],
      [{ kind: 'set', service: 'd', generation: -1, listen: { host: '127.0.0.1', port: 1 }, backends: [] }, 'update.generation'],
      [{ kind: 'set', service: 'd', generation: 1, listen: { host: '127.0.0.1', port: 1 }, backends: [{ host: '10.0.0.1', port: 0 }] }, 'update.backends[0].port'],
      [{ kind: 'switching', service: 'd', generation: 1, holdMs: 1e9 }, 'update.holdMs'],
      [{ kind: 'move', service: 'd', generation: 1 }, 'update.kind'],
      [{ kind: 'drain', service: '../x', generation: 1 }, 'update.service'],
    ];
    for (const [v, field] of bad) {
      assert.throws(() => parseRouteUpdate(v), (e: unknown) => e instanceof InputError && e.field === field);
    }
  });
});
