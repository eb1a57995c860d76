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

describe('U32Table at the scale of a cloud', () => {
  it('answers as a Map would when a /16 fills up and its keys move to a direct table, before and after', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.array(fc.nat(2 ** 32 - 1), { maxLength: 200 }), (hi, other, extra) => {
      const t = new U32Table(16);
      const m = new Map<number, number>();
      const put = (k: number, v: number): void => {
        t.set(k, v);
        m.set(k, v);
      };
      // 5,000 keys of one /16 (past the 4,096 that make it direct), some of another, some anywhere.
      for (let i = 0; i < 5000; i++) put(hi * 65536 + ((i * 7919) & 0xffff), i);
      for (let i = 0; i < 300; i++) put(other * 65536 + i * 13, 100_000 + i);
      extra.forEach((k, i) => put(k, 200_000 + i));
      for (let i = 0; i < 100; i++) put(hi * 65536 + ((i * 7919) & 0xffff), 300_000 + i); // overwrites after the move
      assert.equal(t.size, m.size);
      for (const [k, v] of m) assert.equal(t.get(k), v);
      for (let i = 0; i < 2000; i++) {
        const k = (hi * 65536 + i * 31 + 5) % 2 ** 32;
        assert.equal(t.get(k), m.get(k) ?? -1);
      }
    }), { numRuns: 20 });
  });

  it('finds keys that differ only in their upper bits in a few probes (10.x.y.1 for 10,000 VMs)', () => {
    const t = new U32Table(10_000);
    const keys = Array.from({ length: 10_000 }, (_, i) => ((10 << 24) | ((i >> 8) << 16) | ((i & 255) << 8) | 1) >>> 0);
    keys.forEach((k, i) => t.set(k, i));
    keys.forEach((k, i) => assert.equal(t.get(k), i));
    const worst = Math.max(...keys.map((k) => t.probes(k)));
    assert.ok(worst <= 40, `a lookup reads ${worst} slots`);
    const mean = keys.reduce((a, k) => a + t.probes(k), 0) / keys.length;
    assert.ok(mean < 3, `lookups read ${mean.toFixed(2)} slots on average`);
  });
});
