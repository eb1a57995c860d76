import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jsonLineReader } from './json-lines.js';

describe('jsonLineReader()', () => {
  it('yields the same objects however the text is cut into chunks', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ n: fc.integer(), s: fc.string({ maxLength: 12 }), b: fc.boolean() }), { maxLength: 8 }),
      fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 20 }),
      (objs, cuts) => {
        const text = objs.map((o) => JSON.stringify(o) + '\n').join('');
        const got: unknown[] = [];
        const feed = jsonLineReader({ onMessage: (m) => got.push(m), onBadLine: (l, p) => assert.fail(`${p}: ${l}`) });
        let i = 0;
        for (let k = 0; i < text.length; k++) {
          const n = cuts[k % cuts.length] ?? 1;
          feed(text.slice(i, i + n));
          i += n;
        }
        assert.deepEqual(got.map((o) => JSON.stringify(o)), objs.map((o) => JSON.stringify(o)));
      },
    ));
  });

  it('reports lines that are not JSON objects, and over-long lines, and goes on with the next line', () => {
    const got: unknown[] = [];
    const bad: string[] = [];
    const feed = jsonLineReader({ onMessage: (m) => got.push(m), onBadLine: (_l, p) => bad.push(p), maxLineChars: 16 });
    feed('{"a":1}\nnope\n[1]\n');
    feed('{"long":"xxxxxxxxxxxxxxxxxxxx');
    feed('xxxx"}\n{"b":2}\n');
    assert.deepEqual(got, [{ a: 1 }, { b: 2 }]);
    assert.equal(bad.length, 3);
    assert.match(bad[0] ?? '', /not JSON/);
    assert.match(bad[1] ?? '', /not a JSON object/);
    assert.match(bad[2] ?? '', /longer than 16/);
  });
});
