// The contract every MigrationDriver keeps. Each driver's test file calls runDriverContract with a harness;
// the simulated driver runs it on virtual time, the QEMU driver with real guests.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isAppError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import type {
  MigrationDriver, MigrationPolicy, MigrationProgress, MigrationRequest, Placement,
} from './driver.js';
import { TERMINAL_PHASES } from './driver.js';
import { decideReconcile } from './job.js';

export interface DriverHarness {
  readonly driver: MigrationDriver;
  /**
   * A request to move a fresh VM that the harness has started at `from`. `workload`: 'idle' converges quickly;
   * 'stalling' dirties memory faster than the link carries it, so pre-copy never converges on its own.
   */
  request(opts?: { workload?: 'idle' | 'stalling'; policy?: Partial<MigrationPolicy> }): Promise<MigrationRequest>;
  /** Where the VM's instances are running now (the contract expects exactly one). */
  where(vm: VmId): Promise<readonly Placement[]>;
  /** Cuts the WAN link the request crosses (fault injection), when the harness can. */
  cutLink?(req: MigrationRequest): Promise<void>;
  /** A fresh driver over the same hypervisors, as after the manager's process died and restarted. */
  reopen?(): Promise<MigrationDriver>;
  cleanup(): Promise<void>;
}

export interface DriverContractOptions {
  /** Per-test timeout (real time). Default 60 s. */
  readonly timeoutMs?: number;
  /** Remaining bytes not falling for this long is a stall, in the stall test. Default 2000 ms. */
  readonly stallTimeoutMs?: number;
  /** The deadline in the deadline test. Default 4000 ms. */
  readonly deadlineMs?: number;
}

const same = (a: Placement, b: Placement): boolean => a.siteId === b.siteId && (a.hostId ?? null) === (b.hostId ?? null);

async function collect(it: AsyncIterable<MigrationProgress>, until?: (p: MigrationProgress) => boolean): Promise<MigrationProgress[]> {
  const out: MigrationProgress[] = [];
  for await (const p of it) {
    out.push(p);
    if (until?.(p) === true) break;
  }
  return out;
}

export function runDriverContract(name: string, make: () => Promise<DriverHarness>, opts: DriverContractOptions = {}): void {
  const timeout = opts.timeoutMs ?? 60_000;
  const stallTimeoutMs = opts.stallTimeoutMs ?? 2000;
  const deadlineMs = opts.deadlineMs ?? 4000;

  const test = (title: string, fn: (h: DriverHarness) => Promise<void>): void => {
    it(title, { timeout }, async () => {
      const h = await make();
      try {
        await fn(h);
      } finally {
        await h.cleanup();
      }
    });
  };

  const onlyAt = async (h: DriverHarness, vm: VmId, at: Placement, what: string): Promise<void> => {
    const w = await h.where(vm);
    assert.equal(w.length, 1, `${what}: ${vm} runs at ${w.map((p) => p.siteId).join(', ') || 'nowhere'}`);
    assert.ok(same(w[0]!, at), `${what}: ${vm} runs at ${w[0]!.siteId}, expected ${at.siteId}`);
  };

  describe(`${name}: the MigrationDriver contract`, () => {
    test('a migration completes and the VM then runs only at the destination', async (h) => {
      const req = await h.request({ workload: 'idle' });
      const handle = await h.driver.start(req);
      assert.equal(handle.jobId, req.jobId);
      const out = await handle.done;
      assert.equal(out.status, 'completed', out.reason ?? '');
      assert.ok(same(out.runningAt, req.to));
      assert.ok(out.transferredBytes > 0);
      assert.ok(out.downtimeMs !== null && out.downtimeMs >= 0 && out.downtimeMs <= req.policy.maxDowntimeCeilingMs);
      assert.ok(out.settings.length > 0, 'every setting chosen is reported with its reason');
      await onlyAt(h, req.vm, req.to, 'after completion');
    });

    test('progress snapshots grow monotonically in transferred bytes and end with a terminal phase', async (h) => {
      const req = await h.request({ workload: 'idle' });
      const handle = await h.driver.start(req);
      const snaps = await collect(handle.progress());
      const out = await handle.done;
      assert.ok(snaps.length >= 2, `${snaps.length} snapshots`);
      for (let i = 1; i < snaps.length; i++) {
        assert.ok(snaps[i]!.transferredBytes >= snaps[i - 1]!.transferredBytes, `snapshot ${i} went back`);
        assert.ok(snaps[i]!.atMs >= snaps[i - 1]!.atMs);
      }
      for (const s of snaps) {
        assert.equal(s.jobId, req.jobId);
        assert.ok(s.remainingBytes >= 0 && s.transferredBytes >= 0);
      }
      assert.ok(TERMINAL_PHASES.includes(snaps.at(-1)!.phase), `last phase ${snaps.at(-1)!.phase}`);
      assert.equal(snaps.at(-1)!.phase, out.status);
    });

    test('abort mid-way leaves the VM running at the source only, and aborting twice is fine', async (h) => {
      const req = await h.request({ workload: 'stalling', policy: { stallTimeoutMs: 3_600_000, deadlineMs: 3_600_000 } });
      const handle = await h.driver.start(req);
      await collect(handle.progress(), (p) => p.phase === 'precopy' && p.transferredBytes > 0);
      const first = handle.abort('operator asked');
      const second = handle.abort('operator asked again');
      await Promise.all([first, second]);
      await onlyAt(h, req.vm, req.from, 'as soon as abort resolves');
      const out = await handle.done;
      assert.equal(out.status, 'aborted');
      assert.ok(same(out.runningAt, req.from));
      await handle.abort('a third time, after the end');
      await onlyAt(h, req.vm, req.from, 'after a third abort');
    });

    test('abort after completion is a no-op: the VM stays at the destination', async (h) => {
      const req = await h.request({ workload: 'idle' });
      const handle = await h.driver.start(req);
      const out = await handle.done;
      assert.equal(out.status, 'completed');
      await handle.abort('too late');
      await onlyAt(h, req.vm, req.to, 'after a late abort');
    });

    test("a stalled migration follows the policy's stall actions in order, then ends at the source", async (h) => {
      const req = await h.request({
        workload: 'stalling',
        policy: {
          maxDowntimeMs: 50, maxDowntimeCeilingMs: 100, postCopyAllowed: false, stallTimeoutMs,
          onStall: ['raise-downtime', 'abort'], deadlineMs: 3_600_000,
        },
      });
      const handle = await h.driver.start(req);
      const snaps = await collect(handle.progress());
      const out = await handle.done;
      assert.equal(out.status, 'aborted', out.reason ?? '');
      assert.deepEqual(out.stallActions, ['raise-downtime', 'abort']);
      assert.match(out.reason ?? '', /stall/);
      assert.ok(snaps.some((s) => s.downtimeLimitMs === 100), 'the raised downtime limit shows in progress');
      // Progress lists the actions as they were taken: each list extends the one before.
      for (let i = 1; i < snaps.length; i++) {
        const a = snaps[i - 1]!.stallActions;
        assert.deepEqual(snaps[i]!.stallActions.slice(0, a.length), [...a]);
      }
      await onlyAt(h, req.vm, req.from, 'after the stall abort');
    });

    test('a migration past its deadline is aborted with the VM at the source', async (h) => {
      const req = await h.request({ workload: 'stalling', policy: { stallTimeoutMs: 3_600_000, deadlineMs, postCopyAllowed: false } });
      const handle = await h.driver.start(req);
      const out = await handle.done;
      assert.equal(out.status, 'aborted');
      assert.match(out.reason ?? '', /deadline/);
      assert.ok(out.durationMs >= deadlineMs);
      await onlyAt(h, req.vm, req.from, 'after the deadline');
    });

    test('start refuses a VM that is already moving, and the first migration is unharmed', async (h) => {
      const req = await h.request({ workload: 'idle' });
      const handle = await h.driver.start(req);
      await assert.rejects(h.driver.start({ ...req, jobId: `${req.jobId}-again` }), (e: unknown) => {
        assert.ok(isAppError(e), 'an AppError with a code');
        assert.match(e.message, /already|in progress|moving/i);
        return true;
      });
      const out = await handle.done;
      assert.equal(out.status, 'completed');
      await onlyAt(h, req.vm, req.to, 'after the refused second start');
    });

    test('done never rejects: a link cut mid-way fails the migration and leaves the VM at the source', async (h) => {
      if (h.cutLink === undefined) return;
      const req = await h.request({ workload: 'stalling', policy: { stallTimeoutMs: 3_600_000, deadlineMs: 3_600_000 } });
      const handle = await h.driver.start(req);
      await collect(handle.progress(), (p) => p.phase === 'precopy' && p.transferredBytes > 0);
      await h.cutLink(req);
      const out = await handle.done;
      assert.equal(out.status, 'failed');
      assert.ok(out.reason !== null && out.reason.length > 0);
      await onlyAt(h, req.vm, req.from, 'after the link cut');
      await handle.abort('after the failure'); // still a no-op, still resolves
    });

    test('after a crash mid-way, a new driver finds the source running and rolls the migration back', async (h) => {
      if (h.reopen === undefined) return;
      const req = await h.request({ workload: 'stalling', policy: { stallTimeoutMs: 3_600_000, deadlineMs: 3_600_000 } });
      const handle = await h.driver.start(req);
      await collect(handle.progress(), (p) => p.phase === 'precopy' && p.transferredBytes > 0);
      const fresh = await h.reopen();
      const presence = await fresh.inspect(req);
      assert.equal(presence.source, 'running');
      assert.equal(presence.migrationCompleted, false);
      const d = decideReconcile(presence, 'precopy');
      assert.equal(d.action, 'roll-back', d.reason);
      await fresh.rollBack(req);
      await fresh.rollBack(req); // idempotent
      await onlyAt(h, req.vm, req.from, 'after the roll-back');
      const out = await handle.done; // the old handle still settles, and does not reject
      assert.notEqual(out.status, 'completed');
      const after = await fresh.inspect(req);
      assert.equal(after.destination, 'absent');
    });

    test('after a crash past the switch-over, a new driver finds the destination running and finishes', async (h) => {
      if (h.reopen === undefined) return;
      const req = await h.request({ workload: 'idle' });
      const handle = await h.driver.start(req);
      assert.equal((await handle.done).status, 'completed');
      const fresh = await h.reopen();
      const presence = await fresh.inspect(req);
      assert.equal(presence.destination, 'running');
      assert.equal(presence.migrationCompleted, true);
      const d = decideReconcile(presence, 'switching-over');
      assert.equal(d.action, 'finish', d.reason);
      await fresh.finish(req);
      await fresh.finish(req); // idempotent
      await onlyAt(h, req.vm, req.to, 'after finishing');
    });
  });
}
