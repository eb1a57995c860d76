// The contract every JobStore keeps (memory, files, and later SQLite and PostgreSQL): each store's test calls
// runJobStoreContract with a factory.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { siteId, vmId } from '../core/ids.js';
import type { MigrationRequest } from './driver.js';
import { newJobRecord, type JobRecord, type JobState } from './job.js';
import type { JobStore } from './store.js';

export interface JobStoreHarness {
  readonly store: JobStore;
  /** A fresh store over the same data, as after a restart (omit for stores that cannot). */
  reopen?(): Promise<JobStore>;
  cleanup(): Promise<void>;
}

/** A job record for store tests. */
export function sampleJob(id: string, o: { vm?: string; atMs?: number; state?: JobState } = {}): JobRecord {
  const vm = vmId(o.vm ?? 'vm-1');
  const from = siteId('eu-west');
  const to = siteId('us-east');
  const request: MigrationRequest = {
    jobId: id, vm, from: { siteId: from, hostId: null }, to: { siteId: to, hostId: null },
    link: { rttMs: 80, bandwidthMbps: 100, foregroundShare: 0.2, lossPct: 0 },
    shape: { memoryMiB: 512, dirtyRateMiBps: 2, workingSetMiB: 32, diskGiB: 0 },
    storage: 'shared',
    policy: {
      maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 10_000,
      onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 600_000,
    },
  };
  const rec = newJobRecord({
    id, planId: 'plan-1', request, atMs: o.atMs ?? 0,
    move: { vm, from, to, kind: 'closer-to-users', benefit: 3, savingMs: 70, costS: 50, bytes: 6e8, postCopy: false, after: [] },
  });
  return o.state === undefined ? rec : { ...rec, state: o.state };
}

export function runJobStoreContract(name: string, make: () => Promise<JobStoreHarness>): void {
  describe(`${name}: the JobStore contract`, () => {
    const withStore = async (fn: (h: JobStoreHarness) => Promise<void>): Promise<void> => {
      const h = await make();
      try {
        await fn(h);
      } finally {
        await h.cleanup();
      }
    };

    it('gives back a saved record whole, and a copy: changing what was saved or read changes nothing stored', () => withStore(async ({ store }) => {
      const rec = sampleJob('job-1', { state: { kind: 'running', phase: 'precopy' } }) as { -readonly [K in keyof JobRecord]: JobRecord[K] };
      await store.save(rec);
      rec.capMbps = 999;
      const got = await store.get('job-1');
      assert.deepEqual(got, { ...rec, capMbps: null });
      (got as { capMbps: number | null }).capMbps = 5;
      assert.equal((await store.get('job-1'))?.capMbps, null);
      assert.equal(await store.get('job-unknown'), null);
    }));

    it('replaces a record saved again under the same id, keeping the last save', () => withStore(async ({ store }) => {
      await store.save(sampleJob('job-1'));
      const saves = [];
      for (let i = 1; i <= 5; i++) saves.push(store.save({ ...sampleJob('job-1'), updatedAtMs: i }));
      await Promise.all(saves);
      assert.equal((await store.get('job-1'))?.updatedAtMs, 5);
      assert.equal((await store.listByVm(vmId('vm-1'))).length, 1);
    }));

    it('loads only the jobs a restart must reconcile (not terminal), oldest first', () => withStore(async ({ store }) => {
      await store.save(sampleJob('c', { atMs: 30, state: { kind: 'aborting', phase: 'precopy', reason: 'x' } }));
      await store.save(sampleJob('a', { atMs: 10, state: { kind: 'running', phase: 'postcopy' } }));
      await store.save(sampleJob('b', { atMs: 20, state: { kind: 'completed' } }));
      await store.save(sampleJob('d', { atMs: 5, state: { kind: 'queued' } }));
      await store.save(sampleJob('e', { atMs: 1, state: { kind: 'failed', reason: 'x', at: 'source', lost: true } }));
      assert.deepEqual((await store.loadActive()).map((r) => r.id), ['d', 'a', 'c']);
    }));

    it('lists every job of a VM, whatever its state, oldest first', () => withStore(async ({ store }) => {
      await store.save(sampleJob('j2', { vm: 'vm-7', atMs: 20, state: { kind: 'completed' } }));
      await store.save(sampleJob('j1', { vm: 'vm-7', atMs: 10, state: { kind: 'rolled-back', reason: 'x' } }));
      await store.save(sampleJob('j3', { vm: 'vm-8', atMs: 5 }));
      assert.deepEqual((await store.listByVm(vmId('vm-7'))).map((r) => r.id), ['j1', 'j2']);
      assert.deepEqual(await store.listByVm(vmId('vm-none')), []);
    }));

    it('refuses an id that could not be a key or a file name', () => withStore(async ({ store }) => {
      await assert.rejects(store.save(sampleJob('../escape')), /id: must be 1-200 letters/);
    }));

    it('keeps what was saved across a reopen', () => withStore(async (h) => {
      if (h.reopen === undefined) return;
      await h.store.save(sampleJob('job-1', { state: { kind: 'running', phase: 'precopy' } }));
      const again = await h.reopen();
      assert.deepEqual(await again.get('job-1'), sampleJob('job-1', { state: { kind: 'running', phase: 'precopy' } }));
      assert.equal((await again.loadActive()).length, 1);
    }));
  });
}
