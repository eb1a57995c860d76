import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { linkId, vmId, type LinkId } from '../core/ids.js';
import {
  admit, effectiveRatios, ratio, supersededBy,
  type AdmissionInput, type FinishedJob, type QueueLimits, type QueuedJob, type RunningJob,
} from './queue.js';

const FC = { numRuns: 400, seed: 7 };
const L1 = linkId('a~b');
const L2 = linkId('a~c');

const q = (id: string, o: Partial<QueuedJob> = {}): QueuedJob => ({
  id, vm: vmId(id), planId: 'p1', seq: 0, linkId: L1, benefit: 10, costS: 10, bytes: 1e9, after: [], ...o,
});
const limits = (o: Partial<QueueLimits> = {}): QueueLimits => ({ maxConcurrent: 4, maxPerLink: 2, linkBandwidthShare: 0.5, ...o });
const spare = new Map<LinkId, number>([[L1, 100], [L2, 200]]);

describe('admit() on examples', () => {
  it('starts the best benefit/cost first and stops at the global limit', () => {
    const a = admit({
      queued: [q('v1', { benefit: 1 }), q('v2', { benefit: 50, linkId: L2 }), q('v3', { benefit: 20 })],
      running: [], finished: [], spareMbps: spare, limits: limits({ maxConcurrent: 2 }),
    });
    assert.deepEqual(a.start.map((s) => s.id), ['v2', 'v3']);
    assert.deepEqual(a.waiting, [{ id: 'v1', reason: 'global-limit' }]);
  });

  it('lets a job on another link pass one held by its own link limit', () => {
    const a = admit({
      queued: [q('v1', { benefit: 100 }), q('v2', { benefit: 1, linkId: L2 })],
      running: [{ id: 'r1', vm: vmId('r1'), planId: 'p0', linkId: L1, capMbps: 50, recappable: false }],
      finished: [], spareMbps: spare, limits: limits({ maxPerLink: 1 }),
    });
    assert.deepEqual(a.start.map((s) => s.id), ['v2']);
    assert.deepEqual(a.waiting, [{ id: 'v1', reason: 'link-limit' }]);
  });

  it('splits a link’s share evenly and re-caps the re-cappable migrations already on it', () => {
    const a = admit({
      queued: [q('v1')],
      running: [
        { id: 'r1', vm: vmId('r1'), planId: 'p0', linkId: L1, capMbps: 20, recappable: false },
        { id: 'r2', vm: vmId('r2'), planId: 'p0', linkId: L1, capMbps: 30, recappable: true },
      ],
      finished: [], spareMbps: spare, limits: limits({ maxPerLink: 3 }),
    });
    // Share 100 × 0.5 = 50; 20 fixed; 30 split between r2 and v1.
    assert.deepEqual(a.start, [{ id: 'v1', capMbps: 15 }]);
    assert.deepEqual(a.recap, [{ id: 'r2', capMbps: 15 }]);
  });

  it('keeps a move waiting until the VMs it comes after have completed, then drops it if one failed', () => {
    const job = q('v2', { after: [vmId('v1')] });
    const base = { queued: [job], spareMbps: spare, limits: limits() };
    const running: RunningJob[] = [{ id: 'v1', vm: vmId('v1'), planId: 'p1', linkId: L2, capMbps: 10, recappable: true }];
    assert.deepEqual(admit({ ...base, running, finished: [] }).waiting, [{ id: 'v2', reason: 'dependency' }]);
    assert.deepEqual(admit({ ...base, running: [], finished: [{ planId: 'p1', vm: vmId('v1'), ok: true }] }).start.map((s) => s.id), ['v2']);
    const failed = admit({ ...base, running: [], finished: [{ planId: 'p1', vm: vmId('v1'), ok: false }] });
    assert.equal(failed.start.length, 0);
    assert.match(failed.drop[0]?.reason ?? '', /v1 it waits for did not complete/);
    // Completion under another plan does not count.
    assert.equal(admit({ ...base, running: [], finished: [{ planId: 'p0', vm: vmId('v1'), ok: true }] }).drop.length, 1);
  });

  it('ranks a make-room move with a negative benefit as high as the move waiting for it', () => {
    const eff = effectiveRatios([q('room', { benefit: -5 }), q('want', { benefit: 90, after: [vmId('room')] }), q('other', { benefit: 30 })]);
    assert.equal(eff.get('room'), 9);
    const a = admit({
      queued: [q('room', { benefit: -5, linkId: L2 }), q('want', { benefit: 90, after: [vmId('room')] }), q('other', { benefit: 30 })],
      running: [], finished: [], spareMbps: spare, limits: limits({ maxConcurrent: 1 }),
    });
    assert.deepEqual(a.start.map((s) => s.id), ['room']);
  });

  it('does not start a job whose share would fall below the minimum cap, nor one for a VM already moving', () => {
    const a = admit({
      queued: [q('v1'), q('v9', { vm: vmId('r1'), linkId: L2 })],
      running: [{ id: 'r1', vm: vmId('r1'), planId: 'p0', linkId: L1, capMbps: 49.5, recappable: false }],
      finished: [], spareMbps: spare, limits: limits({ minCapMbps: 1 }),
    });
    assert.deepEqual(a.waiting, [{ id: 'v1', reason: 'no-bandwidth' }, { id: 'v9', reason: 'vm-busy' }].sort((x, y) => (x.id < y.id ? -1 : 1)));
  });

  it('ranks a free move with a benefit above every costly one', () => {
    assert.equal(ratio(1, 0), Infinity);
    assert.equal(ratio(-1, 0), -Infinity);
    assert.equal(ratio(Number.NaN, 3), -Infinity);
  });

  it('supersedes every queued job of an older plan', () => {
    assert.deepEqual(supersededBy([q('v1', { planId: 'p1' }), q('v2', { planId: 'p2' })], 'p2'), ['v1']);
  });
});

// ------------------------------------------------------------------------------------------------------------------

const LINKS = [L1, L2, linkId('b~c')];
const arbInput: fc.Arbitrary<AdmissionInput> = fc.record({
  maxConcurrent: fc.integer({ min: 0, max: 8 }),
  maxPerLink: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: fc.integer({ min: 1, max: 3 }) }),
  linkBandwidthShare: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: fc.double({ min: 0.2, max: 1, noNaN: true }) }),
  minCapMbps: fc.constantFrom(0.5, 1, 5),
  spare: fc.array(fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: fc.integer({ min: 50, max: 1000 }) }), { minLength: 3, maxLength: 3 }),
  queued: fc.array(fc.record({
    vm: fc.integer({ min: 0, max: 8 }),
    plan: fc.constantFrom(1, 1, 1, 2),
    link: fc.integer({ min: 0, max: 2 }),
    benefit: fc.integer({ min: -50, max: 100 }),
    costS: fc.integer({ min: 0, max: 600 }),
    after: fc.oneof({ weight: 2, arbitrary: fc.constant<number[]>([]) }, { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 8 }), { maxLength: 2 }) }),
  }), { maxLength: 14 }),
  running: fc.array(fc.record({
    vm: fc.integer({ min: 13, max: 20 }), link: fc.integer({ min: 0, max: 2 }), recappable: fc.boolean(), capFrac: fc.double({ min: 0, max: 1, noNaN: true }),
  }), { maxLength: 3 }),
  finished: fc.array(fc.record({ vm: fc.integer({ min: 0, max: 8 }), plan: fc.constantFrom(1, 1, 1, 2), ok: fc.constantFrom(true, true, false) }), { maxLength: 10 }),
}).map((g) => {
  const limits: QueueLimits = { maxConcurrent: g.maxConcurrent, maxPerLink: g.maxPerLink, linkBandwidthShare: g.linkBandwidthShare, minCapMbps: g.minCapMbps };
  const spareMbps = new Map<LinkId, number>(LINKS.map((l, i) => [l, g.spare[i]!]));
  // One queued job per (plan, VM), as plans propose; a plan does not move a VM it finished.
  const seen = new Set<string>();
  const finished: FinishedJob[] = g.finished.map((f) => ({ planId: `p${f.plan}`, vm: vmId(`v${f.vm}`), ok: f.ok }));
  const doneKeys = new Set(finished.map((f) => `${f.planId}/${f.vm}`));
  const queued: QueuedJob[] = [];
  g.queued.forEach((x, i) => {
    const k = `p${x.plan}/v${x.vm}`;
    if (seen.has(k) || doneKeys.has(k)) return;
    seen.add(k);
    queued.push({
      id: `q${i}`, vm: vmId(`v${x.vm}`), planId: `p${x.plan}`, seq: i, linkId: LINKS[x.link]!, benefit: x.benefit, costS: x.costS,
      bytes: 1, after: x.after.filter((a) => a !== x.vm).map((a) => vmId(`v${a}`)),
    });
  });
  // Running jobs within the limits, their fixed caps within their link's share.
  const running: RunningJob[] = [];
  const count = new Map<LinkId, number>();
  const fixed = new Map<LinkId, number>();
  for (const [i, r] of g.running.entries()) {
    const link = LINKS[r.link]!;
    if (running.length >= limits.maxConcurrent || (count.get(link) ?? 0) >= limits.maxPerLink) continue;
    if (running.some((o) => o.vm === vmId(`v${r.vm}`))) continue;
    const room = spareMbps.get(link)! * limits.linkBandwidthShare - (fixed.get(link) ?? 0);
    const capMbps = r.capFrac * room / 2;
    count.set(link, (count.get(link) ?? 0) + 1);
    if (!r.recappable) fixed.set(link, (fixed.get(link) ?? 0) + capMbps);
    running.push({ id: `r${i}`, vm: vmId(`v${r.vm}`), planId: 'p0', linkId: link, capMbps, recappable: r.recappable });
  }
  return { queued, running, finished, spareMbps, limits };
});

describe('admit() properties', () => {
  it('never exceeds the global or per-link limits, and never starts a VM twice', () => {
    fc.assert(fc.property(arbInput, (input) => {
      const a = admit(input);
      assert.ok(input.running.length + a.start.length <= input.limits.maxConcurrent);
      const byId = new Map(input.queued.map((j) => [j.id, j]));
      for (const link of LINKS) {
        const n = input.running.filter((r) => r.linkId === link).length + a.start.filter((s) => byId.get(s.id)!.linkId === link).length;
        assert.ok(n <= input.limits.maxPerLink, `${n} on ${link}`);
      }
      const vms = [...input.running.map((r) => r.vm), ...a.start.map((s) => byId.get(s.id)!.vm)];
      assert.equal(new Set(vms).size, vms.length);
    }), FC);
  });

  it('starts no job before the VMs it comes after have completed in its plan', () => {
    let withDeps = 0;
    fc.assert(fc.property(arbInput, (input) => {
      const ok = new Set(input.finished.filter((f) => f.ok).map((f) => `${f.planId}/${f.vm}`));
      for (const s of admit(input).start) {
        const j = input.queued.find((x) => x.id === s.id)!;
        if (j.after.length > 0) withDeps++;
        for (const d of j.after) assert.ok(ok.has(`${j.planId}/${d}`), `${j.id} started before ${d}`);
      }
    }), FC);
    assert.ok(withDeps > 5, `only ${withDeps} started jobs had dependencies`);
  });

  it('gives every queued job exactly one answer: start, wait or drop', () => {
    fc.assert(fc.property(arbInput, (input) => {
      const a = admit(input);
      const ids = [...a.start.map((x) => x.id), ...a.waiting.map((x) => x.id), ...a.drop.map((x) => x.id)].sort();
      assert.deepEqual(ids, input.queued.map((x) => x.id).sort());
    }), FC);
  });

  it('starts higher ratios first: a job left waiting on the global limit ranks no higher than any job started', () => {
    let contested = 0;
    fc.assert(fc.property(arbInput, (input) => {
      const a = admit(input);
      if (a.start.length > 0 && a.waiting.some((w) => w.reason === 'global-limit')) contested++;
      const eff = effectiveRatios(input.queued);
      const lowestStarted = Math.min(...a.start.map((s) => eff.get(s.id)!));
      for (const w of a.waiting.filter((x) => x.reason === 'global-limit')) {
        assert.ok(eff.get(w.id)! <= lowestStarted, `${w.id} (${eff.get(w.id)}) waited while one at ${lowestStarted} started`);
      }
    }), FC);
    assert.ok(contested > 20, `only ${contested} runs had both started and waiting jobs`);
  });

  it('keeps the caps on each link within its share, and every new cap at least the minimum', () => {
    fc.assert(fc.property(arbInput, (input) => {
      const a = admit(input);
      const cap = new Map<string, number>(input.running.map((r) => [r.id, r.capMbps]));
      for (const r of a.recap) cap.set(r.id, r.capMbps);
      for (const s of a.start) {
        cap.set(s.id, s.capMbps);
        assert.ok(s.capMbps >= (input.limits.minCapMbps ?? 1) - 1e-9);
      }
      const linkOf = new Map<string, LinkId>([...input.running.map((r) => [r.id, r.linkId] as const), ...input.queued.map((x) => [x.id, x.linkId] as const)]);
      for (const link of LINKS) {
        let sum = 0;
        for (const [id, c] of cap) if (linkOf.get(id) === link) sum += c;
        const share = input.spareMbps.get(link)! * input.limits.linkBandwidthShare;
        assert.ok(sum <= share + 1e-6, `${sum} > ${share} on ${link}`);
      }
    }), FC);
  });
});
