import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../testing/fake-clock.js';
import { VirtualClock } from '../sim/virtual-clock.js';
import { AppError, InputError } from './errors.js';
import { linkIdOf, siteId } from './ids.js';
import { createJsonLogger } from './logger.js';
import { createRng } from './random.js';

describe('createJsonLogger()', () => {
  it('writes one JSON object per line at or above its level, with the clock\'s time and child fields', () => {
    const lines: string[] = [];
    const clock = new FakeClock(1234);
    const log = createJsonLogger({ write: (l) => lines.push(l), level: 'info', clock }).child({ vm: 'vm-7' });
    log.debug('hidden');
    log.warn('migration slow', { remainingMiB: 12 });
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.endsWith('\n'));
    assert.deepEqual(JSON.parse(lines[0]!), { time: 1234, level: 'warn', msg: 'migration slow', vm: 'vm-7', remainingMiB: 12 });
  });
});

describe('errors', () => {
  it('InputError names the field and the value', () => {
    const e = new InputError('vms[2].memoryMiB', -4, 'must be at least 0');
    assert.equal(e.message, 'vms[2].memoryMiB: must be at least 0 (got -4)');
    assert.equal(e.code, 'INPUT_INVALID');
    assert.ok(e instanceof AppError);
  });

  it('AppError keeps its code, retryable flag and cause', () => {
    const cause = new Error('ECONNRESET');
    const e = new AppError('QMP_CLOSED', 'QMP socket closed while migrating vm-3; vm-3 still runs at eu-west-1', { retryable: true, cause });
    assert.equal(e.retryable, true);
    assert.equal(e.cause, cause);
  });
});

describe('ids', () => {
  it('gives an undirected link one id whichever end is named first', () => {
    assert.equal(linkIdOf(siteId('b'), siteId('a')), linkIdOf(siteId('a'), siteId('b')));
  });
});

describe('clocks', () => {
  it('VirtualClock only moves forward', () => {
    const c = new VirtualClock(10);
    c.advanceTo(20);
    assert.equal(c.nowMs(), 20);
    assert.throws(() => c.advanceTo(5), /cannot go back/);
  });
});

describe('createRng()', () => {
  it('repeats its sequence for a seed and draws within bounds', () => {
    const a = createRng(42);
    const b = createRng(42);
    const xs = Array.from({ length: 100 }, () => a.int(3, 7));
    assert.deepEqual(xs, Array.from({ length: 100 }, () => b.int(3, 7)));
    assert.ok(xs.every((x) => x >= 3 && x <= 7));
    assert.ok(new Set(xs).size === 5);
  });
});

describe('InputError.withField()', () => {
  it('keeps the problem and value, and names the new field', () => {
    const e = new InputError('vms[0].siteId', 'mars', 'is not a known site').withField('cloud.vms[0].siteId');
    assert.equal(e.message, 'cloud.vms[0].siteId: is not a known site (got "mars")');
    assert.equal(e.field, 'cloud.vms[0].siteId');
  });
});
