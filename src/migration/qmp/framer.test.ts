import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineFramer } from './framer.js';

const enc = new TextEncoder();

/** Cuts `bytes` at the given positions (taken modulo its length). */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

const lineArb = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ''));

describe('LineFramer', () => {
  it('gives back the same lines however the stream is cut into chunks (multi-byte characters split too)', () => {
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), (lines, cuts, crlf) => {
        const framer = new LineFramer(1024);
        const bytes = enc.encode(lines.map((l) => l + (crlf ? '\r\n' : '\n')).join(''));
        const got: string[] = [];
        for (const chunk of cut(bytes, cuts)) {
          const r = framer.push(chunk);
          assert.equal(r.ok, true);
          got.push(...r.lines);
        }
        assert.deepEqual(got, lines);
        assert.equal(framer.bufferedBytes, 0);
      }),
    );
  });

  it('never holds more than maxLineBytes, whatever arrives', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 30 }), fc.integer({ min: 1, max: 64 }), (chunks, max) => {
        const framer = new LineFramer(max);
        for (const c of chunks) {
          const r = framer.push(c);
          assert.ok(framer.bufferedBytes <= max, `buffered ${framer.bufferedBytes} > ${max}`);
          // Each input byte decodes to at most one UTF-16 unit (U+FFFD for invalid UTF-8).
          for (const l of r.lines) assert.ok(l.length <= max);
          if (!r.ok) return;
        }
      }),
    );
  });

  it('delivers the lines before an oversize one, then refuses all further input', () => {
    const framer = new LineFramer(10);
    const r = framer.push(enc.encode('short\n0123456789ABC\nlater\n'));
    assert.equal(r.ok, false);
    assert.deepEqual(r.lines, ['short']);
    if (!r.ok) assert.equal(r.overLimitBytes, 13);
    const again = framer.push(enc.encode('ok\n'));
    assert.equal(again.ok, false);
    assert.deepEqual(again.lines, []);
  });

  it('fails as soon as an unterminated line passes the cap, before its newline arrives', () => {
    const framer = new LineFramer(8);
    assert.equal(framer.push(enc.encode('12345')).ok, true);
    assert.equal(framer.bufferedBytes, 5);
    const r = framer.push(enc.encode('6789'));
    assert.equal(r.ok, false);
    assert.equal(framer.bufferedBytes, 0);
  });

  it('accepts a line of exactly maxLineBytes', () => {
    const framer = new LineFramer(4);
    assert.deepEqual(framer.push(enc.encode('abcd\n')), { ok: true, lines: ['abcd'] });
  });
});
