import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DEFAULT_HYSTERESIS as P, checkHysteresisParams, initialState, run, step, type HysteresisState, type WindowVerdict,
} from './hysteresis.js';
import type { ActivityClass } from './signatures.js';

const FC = { numRuns: 300, seed: 20251125 };

const w = (score: number, activity: ActivityClass = score >= P.onAt ? 'video-streaming' : 'background'): WindowVerdict => ({ score, activity });
const hot = fc.double({ min: P.onAt, max: 1, noNaN: true }).map((s) => w(s));
const cold = fc.double({ min: 0, max: P.offAt, maxExcluded: true, noNaN: true }).map((s) => w(s));
const notHot = fc.double({ min: 0, max: P.onAt, maxExcluded: true, noNaN: true }).map((s) => w(s));
const notCold = fc.double({ min: P.offAt, max: 1, noNaN: true }).map((s) => w(s));
const anyWindow = fc.oneof(
  fc.double({ noNaN: false }).map((s) => w(s, 'background')),
  fc.double({ min: 0, max: 1, noNaN: true }).map((s) => w(s)),
);

const stepAll = (s: HysteresisState, ws: readonly WindowVerdict[]): HysteresisState => ws.reduce<HysteresisState>((st, x) => step(st, x, P), s);
/** A VM that has been insensitive for a while. */
const settledOff = (): HysteresisState => stepAll(initialState(), [w(0.1), w(0.1), w(0.1), w(0.1)]);
/** A VM that has been sensitive for a while. */
const settledOn = (): HysteresisState => stepAll(initialState(), [w(0.9), w(0.9), w(0.9), w(0.9)]);

describe('hysteresis step() as sentences', () => {
  it('makes a desktop that switches from text editing to video sensitive at the second video window', () => {
    const states = run([w(0.3, 'remote-desktop'), w(0.25, 'remote-desktop'), w(0.3, 'remote-desktop'), w(0.9), w(0.9)]);
    assert.deepEqual(states.map((s) => s.sensitive), [false, false, false, false, true]);
    assert.equal(states[4]!.activity, 'video-streaming');
    assert.ok(states[4]!.score >= P.onAt, `the score follows the change at once: ${states[4]!.score}`);
    assert.match(states[4]!.reason, /2 of the last 3 windows scored ≥ 0\.50/);
  });

  it('keeps a desktop that goes idle sensitive through the cool-down, then lets it go', () => {
    const states = run([w(0.9), w(0.9), w(0.9), ...Array.from({ length: P.cooldownWindows }, () => w(0.05))]);
    const sensitive = states.map((s) => s.sensitive);
    assert.deepEqual(sensitive, [false, true, true, true, true, true, true, false]);
    assert.equal(states[5]!.activity, 'video-streaming', 'the activity is kept through the cool-down');
    assert.match(states[5]!.reason, /cooling down: 3 of 5 quiet windows/);
    assert.equal(states[7]!.activity, 'background');
    assert.ok(states[7]!.score < P.offAt);
  });

  it('does not move a VM that plays one short video', () => {
    const states = run([w(0.1), w(0.1), w(0.95), w(0.1), w(0.1), w(0.1)]);
    assert.ok(states.every((s) => !s.sensitive));
    assert.equal(states[2]!.activity, 'background', 'an outlier does not change the activity either');
  });

  it('restarts the cool-down when the user comes back', () => {
    const states = run([w(0.9), w(0.9), w(0.1), w(0.1), w(0.1), w(0.1), w(0.8), w(0.1), w(0.1), w(0.1), w(0.1)]);
    assert.ok(states.slice(1).every((s) => s.sensitive));
  });

  it('rejects parameters that would let one window switch a VM', () => {
    assert.deepEqual(checkHysteresisParams(P), []);
    assert.equal(checkHysteresisParams({ ...P, k: 1 }).length, 1);
    assert.equal(checkHysteresisParams({ ...P, cooldownWindows: 1 }).length, 1);
    assert.equal(checkHysteresisParams({ ...P, offAt: 0.9 }).length, 1);
  });
});

describe('hysteresis step() properties (fast-check)', () => {
  it('never switches an insensitive VM on for isolated outlier windows', () => {
    // Each hot window is followed by at least n-1 windows that are not hot.
    const episode = fc.tuple(hot, fc.array(notHot, { minLength: P.n - 1, maxLength: P.n + 3 }))
      .map(([h, rest]) => [h, ...rest]);
    fc.assert(fc.property(fc.array(notHot, { maxLength: 5 }), fc.array(episode, { maxLength: 8 }), (lead, episodes) => {
      let s = settledOff();
      for (const x of [...lead, ...episodes.flat()]) {
        s = step(s, x, P);
        assert.equal(s.sensitive, false);
      }
    }), FC);
  });

  it('never switches a sensitive VM off for a single quiet window', () => {
    fc.assert(fc.property(cold, fc.array(notCold, { maxLength: 10 }), (quiet, after) => {
      let s = step(settledOn(), quiet, P);
      assert.equal(s.sensitive, true);
      for (const x of after) {
        s = step(s, x, P);
        assert.equal(s.sensitive, true);
      }
    }), FC);
  });

  it('makes any VM sensitive within 2 windows of a sustained change', () => {
    fc.assert(fc.property(fc.array(anyWindow, { maxLength: 20 }), hot, hot, (history, a, b) => {
      const s = stepAll(stepAll(initialState(), history), [a, b]);
      assert.equal(s.sensitive, true);
    }), FC);
  });

  it('keeps a sensitive VM sensitive through the cool-down, whatever the windows say', () => {
    fc.assert(fc.property(
      fc.array(anyWindow, { maxLength: 10 }),
      fc.array(anyWindow, { maxLength: P.cooldownWindows - 1 }),
      (history, during) => {
        // Whatever came before, two hot windows make it sensitive with a fresh cool-down ahead.
        let s = stepAll(stepAll(initialState(), history), [w(0.9), w(0.9)]);
        assert.equal(s.sensitive, true);
        assert.equal(s.coldStreak, 0);
        for (const x of during) {
          s = step(s, x, P);
          assert.equal(s.sensitive, true);
        }
      },
    ), FC);
  });

  it('lets a VM go after exactly cooldownWindows quiet windows', () => {
    fc.assert(fc.property(fc.array(cold, { minLength: P.cooldownWindows, maxLength: P.cooldownWindows }), (quiet) => {
      const states = quiet.reduce<HysteresisState[]>((acc, x) => [...acc, step(acc[acc.length - 1] ?? settledOn(), x, P)], []);
      assert.deepEqual(states.map((s) => s.sensitive), [...Array.from({ length: P.cooldownWindows - 1 }, () => true), false]);
    }), FC);
  });

  it('keeps the score in [0, 1] for any windows, NaN and out-of-range scores included', () => {
    fc.assert(fc.property(fc.array(anyWindow, { maxLength: 40 }), (ws) => {
      for (const s of run(ws, P)) assert.ok(s.score >= 0 && s.score <= 1, `score ${s.score}`);
    }), FC);
  });

  it('is deterministic and never mutates its input', () => {
    fc.assert(fc.property(fc.array(anyWindow, { maxLength: 30 }), (ws) => {
      const a = run(ws, P);
      const b = run(ws, P);
      assert.deepEqual(a, b);
      const before = JSON.stringify(a[a.length - 1] ?? initialState());
      if (a.length > 0) step(a[a.length - 1]!, w(0.9), P);
      assert.equal(JSON.stringify(a[a.length - 1] ?? initialState()), before);
    }), FC);
  });
});
