import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { chooseSettings, raisedDowntimeMs } from './tuning.js';
import type { LinkMeasure, MigrationPolicy, StallAction, VmShape } from './driver.js';

const policy = (o: Partial<MigrationPolicy> = {}): MigrationPolicy => ({
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: true, stallTimeoutMs: 10_000,
  onStall: ['raise-downtime', 'post-copy', 'abort'], tls: true, deadlineMs: 600_000, ...o,
});
const link = (o: Partial<LinkMeasure> = {}): LinkMeasure => ({ rttMs: 80, bandwidthMbps: 100, foregroundShare: 0.2, lossPct: 0, ...o });
const shape = (o: Partial<VmShape> = {}): VmShape => ({ memoryMiB: 256, dirtyRateMiBps: 1, workingSetMiB: 16, diskGiB: 0, ...o });
const choice = (s: ReturnType<typeof chooseSettings>, name: string) => s.choices.find((c) => c.name === name);

describe('chooseSettings()', () => {
  it('caps the stream to the link less the foreground share and says so', () => {
    const s = chooseSettings(link({ bandwidthMbps: 100, foregroundShare: 0.2 }), shape(), policy(), { cpuFreeCores: 1 });
    assert.equal(s.maxBandwidthBytesPerS, 10_000_000);
    assert.match(choice(s, 'max-bandwidth')?.reason ?? '', /80 Mbit\/s.*20 %/);
  });

  it('compresses with zstd over multifd when a slow link is the bottleneck, pre-copy converges and CPU is free', () => {
    const s = chooseSettings(link({ bandwidthMbps: 50 }), shape({ dirtyRateMiBps: 0.5 }), policy(), { cpuFreeCores: 1 });
    assert.equal(s.multifd, true);
    assert.equal(s.compression, 'zstd');
    assert.equal(s.postCopyCapable, false);
    assert.ok(!s.stallActions.includes('post-copy'), 'post-copy cannot be a stall action once multifd is on');
  });

  it('does not compress without a free core', () => {
    const s = chooseSettings(link({ bandwidthMbps: 50, rttMs: 10 }), shape(), policy(), { cpuFreeCores: 0 });
    assert.equal(s.compression, 'none');
    assert.match(choice(s, 'multifd-compression')?.reason ?? '', /no CPU free/);
  });

  it('switches to post-copy after the first pass when the guest dirties memory faster than the link carries', () => {
    const s = chooseSettings(link({ bandwidthMbps: 50 }), shape({ dirtyRateMiBps: 20, workingSetMiB: 32 }), policy(), { cpuFreeCores: 1 });
    assert.equal(s.postCopyCapable, true);
    assert.equal(s.postCopyAfterFirstPass, true);
    assert.equal(s.multifd, false);
    assert.equal(s.xbzrle, true);
  });

  it('throttles with auto-converge when pre-copy cannot converge and post-copy is forbidden', () => {
    const s = chooseSettings(link({ bandwidthMbps: 50 }), shape({ dirtyRateMiBps: 20, workingSetMiB: 32 }), policy({ postCopyAllowed: false }), { cpuFreeCores: 0 });
    assert.equal(s.autoConverge, true);
    assert.equal(s.postCopyCapable, false);
    assert.deepEqual(s.stallActions, ['raise-downtime', 'abort']);
  });

  it('keeps its invariants for any link, guest and policy', () => {
    const action = fc.constantFrom<StallAction>('raise-downtime', 'post-copy', 'abort');
    fc.assert(fc.property(
      fc.record({ rttMs: fc.double({ min: 0, max: 400, noNaN: true }), bandwidthMbps: fc.double({ min: 0.1, max: 100_000, noNaN: true }), foregroundShare: fc.double({ min: 0, max: 0.95, noNaN: true }), lossPct: fc.constant(0) }),
      fc.record({ memoryMiB: fc.integer({ min: 64, max: 65536 }), dirtyRateMiBps: fc.double({ min: 0, max: 2000, noNaN: true }), workingSetMiB: fc.integer({ min: 0, max: 65536 }), diskGiB: fc.constant(0) }),
      fc.boolean(), fc.array(action, { maxLength: 4 }), fc.integer({ min: 0, max: 8 }),
      (l, sh, allowed, onStall, cores) => {
        const s = chooseSettings(l, sh, policy({ postCopyAllowed: allowed, onStall }), { cpuFreeCores: cores });
        assert.ok(s.maxBandwidthBytesPerS * 8 <= Math.max(0.1, l.bandwidthMbps * (1 - l.foregroundShare)) * 1e6 + 8);
        if (!allowed) assert.equal(s.postCopyCapable, false);
        assert.ok(!(s.multifd && s.postCopyCapable), 'multifd and post-copy never together');
        assert.ok(!(s.multifd && s.xbzrle), 'xbzrle only on the single stream');
        if (s.compression !== 'none') assert.equal(s.multifd, true);
        if (s.multifd) assert.ok(s.multifdChannels >= 2 && s.multifdChannels <= 8);
        if (s.postCopyAfterFirstPass) assert.equal(s.postCopyCapable, true);
        assert.ok(s.stallActions.length > 0);
        for (const a of s.stallActions) assert.ok(a === 'abort' || onStall.includes(a));
        for (const c of s.choices) assert.ok(c.reason.length > 0, `${c.name} has a reason`);
      },
    ), { numRuns: 500 });
  });
});

describe('raisedDowntimeMs()', () => {
  it('doubles up to the ceiling, then stops', () => {
    assert.equal(raisedDowntimeMs(300, 2000), 600);
    assert.equal(raisedDowntimeMs(1500, 2000), 2000);
    assert.equal(raisedDowntimeMs(2000, 2000), null);
  });
});
