import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createKeyedSerial } from './serial.js';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('createKeyedSerial()', () => {
  it('runs one key\'s tasks in the order given, even when an earlier one is slower or fails', async () => {
    const serial = createKeyedSerial();
    const seen: string[] = [];
    const a = serial('k', async () => {
      await tick(20);
      seen.push('a');
      throw new Error('a failed');
    });
    const b = serial('k', () => {
      seen.push('b');
      return Promise.resolve(2);
    });
    await assert.rejects(a, /a failed/);
    assert.equal(await b, 2);
    assert.deepEqual(seen, ['a', 'b']);
  });

  it('lets different keys run side by side', async () => {
    const serial = createKeyedSerial();
    const seen: string[] = [];
    const slow = serial('x', async () => {
      await tick(30);
      seen.push('x');
    });
    await serial('y', () => {
      seen.push('y');
      return Promise.resolve();
    });
    await slow;
    assert.deepEqual(seen, ['y', 'x']);
  });
});
