import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isActivity, typingChunks } from './activity.js';

describe('typingChunks()', () => {
  it('types every word once, in order, with lines of at most 60 characters', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-z]{1,12}$/), { minLength: 1, maxLength: 60 }), (words) => {
        const chunks = typingChunks(words.join(' '));
        const typed = chunks.join('');
        assert.deepEqual(typed.split(/\s+/).filter((w) => w.length > 0), words);
        assert.ok(typed.endsWith('\n'));
        for (const line of typed.split('\n')) assert.ok(line.length <= 60, `line of ${line.length}: ${line}`);
        // One word per chunk: stopping between chunks never leaves a word half-typed.
        assert.ok(chunks.every((c) => c === '\n' || c.trim().split(' ').length === 1));
      }),
    );
  });
});

describe('isActivity()', () => {
  it('accepts idle, text-editing and video only', () => {
    assert.ok(isActivity('idle') && isActivity('text-editing') && isActivity('video'));
    assert.ok(!isActivity('gaming') && !isActivity(undefined));
  });
});
