import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Template } from './flow.js';
import { RecencyMap, TemplateCache } from './templates.js';

const template = (id: number, length: number): Template => ({ id, fields: [{ id: 8, length, enterprise: 0 }], scopeCount: 0, isOptions: false });

/** What TemplateCache promises, written the plain way: one Map in refresh order (a refresh re-inserts). */
class Model {
  readonly map = new Map<string, { t: Template; atMs: number }>();
  constructor(private readonly ttlMs: number, private readonly max: number) {}
  get(e: string, d: number, id: number): Template | undefined {
    return this.map.get(`${e}|${d}|${id}`)?.t;
  }
  set(e: string, d: number, t: Template, nowMs: number): 'new' | 'same' | 'changed' {
    const k = `${e}|${d}|${t.id}`;
    const old = this.map.get(k);
    this.map.delete(k);
    this.map.set(k, { t, atMs: nowMs });
    if (old === undefined) {
      while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
      return 'new';
    }
    return old.t.fields[0]!.length === t.fields[0]!.length ? 'same' : 'changed';
  }
  delete(e: string, d: number, id: number): void {
    this.map.delete(`${e}|${d}|${id}`);
  }
  expire(nowMs: number): number {
    let n = 0;
    for (const [k, v] of this.map) {
      if (nowMs - v.atMs <= this.ttlMs) break;
      this.map.delete(k);
      n++;
    }
    return n;
  }
}

const op = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), e: fc.constantFrom('a:1', 'b:2'), d: fc.nat(2), id: fc.integer({ min: 256, max: 259 }), len: fc.constantFrom(4, 16), dtMs: fc.nat(50) }),
  fc.record({ kind: fc.constant('get' as const), e: fc.constantFrom('a:1', 'b:2'), d: fc.nat(2), id: fc.integer({ min: 256, max: 259 }) }),
  fc.record({ kind: fc.constant('delete' as const), e: fc.constantFrom('a:1', 'b:2'), d: fc.nat(2), id: fc.integer({ min: 256, max: 259 }) }),
  fc.record({ kind: fc.constant('expire' as const), dtMs: fc.nat(200) }),
);

describe('TemplateCache', () => {
  it('keeps, refreshes, evicts and expires templates exactly as a map in refresh order would', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 120 }), fc.integer({ min: 1, max: 6 }), (ops, max) => {
      const cache = new TemplateCache({ ttlMs: 100, maxTemplates: max });
      const model = new Model(100, max);
      let nowMs = 0;
      for (const o of ops) {
        if (o.kind === 'set') {
          nowMs += o.dtMs;
          const t = template(o.id, o.len);
          assert.equal(cache.set(o.e, o.d, t, nowMs), model.set(o.e, o.d, t, nowMs));
        } else if (o.kind === 'get') {
          assert.equal(cache.get(o.e, o.d, o.id), model.get(o.e, o.d, o.id));
        } else if (o.kind === 'delete') {
          cache.delete(o.e, o.d, o.id);
          model.delete(o.e, o.d, o.id);
        } else {
          nowMs += o.dtMs;
          assert.equal(cache.expire(nowMs), model.expire(nowMs));
        }
        assert.equal(cache.size, model.map.size);
      }
      for (const e of ['a:1', 'b:2']) for (let d = 0; d < 3; d++) for (let id = 256; id < 260; id++) assert.equal(cache.get(e, d, id), model.get(e, d, id));
    }));
  });

  it('keeps options per exporter and domain, with the same lifetime', () => {
    const cache = new TemplateCache({ ttlMs: 100, maxTemplates: 10 });
    cache.setOptions('a:1', 0, { samplingRate: 10 }, 0);
    cache.setOptions('a:1', 1, { samplingRate: 20 }, 50);
    assert.deepEqual(cache.getOptions('a:1', 0), { samplingRate: 10 });
    assert.equal(cache.getOptions('b:2', 0), undefined);
    cache.expire(120);
    assert.equal(cache.getOptions('a:1', 0), undefined);
    assert.deepEqual(cache.getOptions('a:1', 1), { samplingRate: 20 });
  });
});

describe('RecencyMap', () => {
  it('finds what was added, orders by refresh, and forgets what was deleted (also the entry it found last)', () => {
    const m = new RecencyMap<string | undefined>(undefined);
    const a = m.add('x', 1, 'a', 0);
    m.add('x', 2, 'b', 1);
    m.add('y', 1, 'c', 2);
    assert.equal(m.get('x', 1)?.value, 'a');
    m.refresh(a, 3);
    assert.equal(m.first?.value, 'b');
    m.delete(a);
    assert.equal(m.get('x', 1), undefined);
    assert.equal(m.size, 2);
    m.delete(m.first);
    m.delete(m.first);
    assert.equal(m.first, undefined);
    assert.equal(m.size, 0);
  });
});
