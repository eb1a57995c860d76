// A ManagerControl for API tests: records every call and carries it out on the store in the simplest way
// (status flips, flag changes), so a test sees both that the API called it and what a client gets back.
import { AppError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { applyEvent, isTerminal, type JobRecord } from '../migration/job.js';
import type { ManagerControl, SettingsPatch } from '../manager/control.js';
import type { PlanRecord, RoundRecord, Settings, VmRecord } from '../store/records.js';
import type { Store } from '../store/store.js';

export interface ControlCall {
  readonly method: keyof ManagerControl;
  readonly args: readonly unknown[];
}

export interface FakeControl extends ManagerControl {
  readonly calls: ControlCall[];
  leading: boolean;
  leaderName: string | null;
  /** Makes the next call throw this (once). */
  failNext: Error | null;
}

export const DEFAULT_SETTINGS: Settings = {
  mode: 'approve', roundIntervalS: 60, planner: 'greedy', params: DEFAULT_PLAN_PARAMS,
};

export function createFakeControl(store: Store, opts: { replica?: string; nowMs?: () => number } = {}): FakeControl {
  const now = opts.nowMs ?? (() => Date.now());
  let roundSeq = 0;
  const self: FakeControl = {
    replica: opts.replica ?? 'replica-a',
    calls: [],
    leading: true,
    leaderName: opts.replica ?? 'replica-a',
    failNext: null,
    isLeader: () => self.leading,
    leader: () => Promise.resolve(self.leaderName),
    async approvePlan(id, actor) {
      record('approvePlan', [id, actor]);
      return decide(id, actor, 'approved', null);
    },
    async rejectPlan(id, actor, reason) {
      record('rejectPlan', [id, actor, reason]);
      return decide(id, actor, 'rejected', reason);
    },
    async cancelMigration(jobId, actor) {
      record('cancelMigration', [jobId, actor]);
      const d = await store.get<JobRecord>('jobs', jobId);
      if (d === null) throw new AppError('NOT_FOUND', `migration ${jobId} does not exist`);
      if (isTerminal(d.value.state)) throw new AppError('JOB_ENDED', `migration ${jobId} already ended`);
      const r = applyEvent(d.value, d.value.state.kind === 'queued'
        ? { type: 'recheck-failed', reason: `cancelled by ${actor}` }
        : { type: 'abort-requested', reason: `cancelled by ${actor}` }, now());
      await store.put('jobs', jobId, r.record, { group: r.record.vm, status: isTerminal(r.record.state) ? 'ended' : 'active' });
      return r.record;
    },
    async updateSettings(patch: SettingsPatch, actor) {
      record('updateSettings', [patch, actor]);
      const docs = await store.list<Settings>('settings', { limit: 1 });
      const cur = docs[0]?.value ?? DEFAULT_SETTINGS;
      const next: Settings = { ...cur, ...patch, params: { ...cur.params, ...patch.params } };
      await store.put('settings', docs[0]?.id ?? 'current', next);
      return next;
    },
    async setVmFlags(id: VmId, flags, actor) {
      record('setVmFlags', [id, flags, actor]);
      const d = await store.get<VmRecord>('vms', id);
      if (d === null) throw new AppError('NOT_FOUND', `VM ${id} does not exist`);
      const next = { ...d.value, ...flags };
      await store.put('vms', id, next);
      return next;
    },
    async runRound(actor) {
      record('runRound', [actor]);
      roundSeq += 1;
      const t = now();
      const round: RoundRecord = {
        id: `round-${t.toString(36)}-fake${roundSeq}`, seq: 1_000_000 + roundSeq, startedAtMs: t, finishedAtMs: t, durationMs: 0, mode: 'approve',
        leader: self.replica, vmsObserved: 0, usersProbed: 0, planId: null, moves: 0, rejections: 0, stageMs: {}, error: null,
      };
      await store.put('rounds', round.id, round);
      return round;
    },
  };

  function record(method: keyof ManagerControl, args: unknown[]): void {
    self.calls.push({ method, args });
    if (!self.leading) throw new AppError('NOT_LEADER', `${self.replica} does not lead; ${String(self.leaderName)} does`);
    const f = self.failNext;
    if (f !== null) {
      self.failNext = null;
      throw f;
    }
  }

  async function decide(id: string, actor: string, status: 'approved' | 'rejected', note: string | null): Promise<PlanRecord> {
    const d = await store.get<PlanRecord>('plans', id);
    if (d === null) throw new AppError('NOT_FOUND', `plan ${id} does not exist`);
    if (d.value.status !== 'recommended') throw new AppError('PLAN_NOT_PENDING', `plan ${id} is ${d.value.status}`);
    const next: PlanRecord = { ...d.value, status, decidedBy: actor, decidedAtMs: now(), note };
    await store.put('plans', id, next);
    return next;
  }

  return self;
}
