import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { U32Table } from './u32-table.js';

const key = fc.oneof(fc.nat(2 ** 32 - 1), fc.constantFrom(0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1), fc.integer({ min: 0x0a000000, max: 0x0a0000ff }));

describe('U32Table', () => {
  it('answers every lookup as a Map would, through growth, for keys on both sides of 2^31', () => {
    fc.assert(fc.property(fc.array(fc.tuple(key, fc.nat(2 ** 31 - 1)), { maxLength: 300 }), fc.array(key, { maxLength: 50 }), (sets, probes) => {
      const t = new U32Table(2);
      const m = new Map<number, number>();
      for (const [k, v] of sets) {
        t.set(k, v);
        m.set(k, v);
      }
      assert.equal(t.size, m.size);
      for (const k of [...m.keys(), ...probes]) assert.equal(t.get(k), m.get(k) ?? -1);
    }));
  });

  it('refuses keys and values it cannot hold', () => {
    const t = new U32Table();
    assert.throws(() => t.set(-1, 0), RangeError);
    assert.throws(() => t.set(2 ** 32, 0), RangeError);
    assert.throws(() => t.set(1.5, 0), RangeError);
    assert.throws(() => t.set(1, -1), RangeError);
    assert.equal(t.get(-1), -1);
  });
});
