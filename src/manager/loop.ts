// The control loop: each round, telemetry → fingerprint → latency → placement → migration, every step
// recorded in the store with its inputs and outcome. The decisions are pure (decide.ts, placement/); this
// file reads and writes the store, calls the latency prober and the executor, and announces what happened.
import { randomBytes } from 'node:crypto';
import { AppError } from '../core/errors.js';
import { createKeyedSerial } from '../core/serial.js';
import type { UserId, VmId } from '../core/ids.js';
import { userId as toUserId } from '../core/ids.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { createSnapshot } from '../core/model.js';
import { initialState, DEFAULT_HYSTERESIS, type HysteresisParams, type HysteresisState } from '../fingerprint/hysteresis.js';
import type { MigrationRequest } from '../migration/driver.js';
import type { Executor, ExecutorEvent, RecheckResult } from '../migration/executor.js';
import { isTerminal, label, owner, type JobRecord } from '../migration/job.js';
import { planMoves } from '../placement/greedy.js';
import { planMovesIlp, type LpSolver } from '../placement/ilp.js';
import { parsePlanParams, type PlanParams } from '../placement/params.js';
import type { Move, Plan } from '../placement/plan.js';
import type {
  AuditEvent, FingerprintPoint, HostRecord, LinkRecord, PlanJobOutcome, PlanRecord, RoundRecord, RoundStage, RttPoint,
  Settings, SiteRecord, UserRecord, UserSiteRtt, VmRecord,
} from '../store/records.js';
import { getSettings, listAll, putSettings } from '../store/repos.js';
import type { Doc, Store } from '../store/store.js';
import type { ManagerControl, SettingsPatch } from './control.js';
import {
  countedRejections, describeMove, fingerprintVm, initialPlanStatus, linkBetween, planInputs, planStatusAfterJobs,
  snapshotInput, type WindowObservation,
} from './decide.js';
import type { EventBus } from './events.js';

/** What the latency component answers for one round of probes. */
export interface UserLatency {
  readonly rtt: Readonly<Record<string, UserSiteRtt>>;
  /** The RTTs shifted (a new network): the loop relabels the user's network. */
  readonly networkChanged: boolean;
  readonly country: string | null;
}

export interface LatencySource {
  /** Probes every site to each user's endpoint; answers by user id. */
  probeRound(users: readonly UserRecord[]): Promise<ReadonlyMap<string, UserLatency>>;
}

/** Hooks for the Prometheus metrics (all optional). */
export interface LoopMetrics {
  observeVm?(vm: VmRecord): void;
  observeUser?(user: UserRecord): void;
  roundFinished?(round: RoundRecord, planDurationS: number | null): void;
  migrationEnded?(job: JobRecord): void;
}

export interface ManagerLoopOptions {
  readonly store: Store;
  readonly events: EventBus;
  readonly clock: Clock;
  readonly log: Logger;
  /** This replica's name (recorded on rounds and as the actor of automatic decisions). */
  readonly replica: string;
  readonly executor: Executor;
  readonly latency: LatencySource;
  /** The driver's request for a move (placement, link measure, shape, policy). */
  readonly requestFor: (move: Move, jobId: string, vm: VmRecord, link: LinkRecord, hosts: readonly HostRecord[]) => MigrationRequest;
  readonly isLeader: () => boolean;
  readonly leader: () => Promise<string | null>;
  readonly solver?: LpSolver;
  readonly metrics?: LoopMetrics;
  readonly hysteresis?: HysteresisParams;
  /** Windows kept per VM between rounds (the oldest are dropped beyond it, and counted). Default 64. */
  readonly maxWindowsPerVm?: number;
  /** Fingerprint and RTT history kept (default 7 days). */
  readonly historyMs?: number;
  /**
   * Who is behind a remote end the flows show: a connection proxy in front of the VM hides its users, and
   * it knows them (its sessions). Returns the user's address, or the endpoint itself.
   */
  readonly resolveEndpoint?: (vm: VmId, endpoint: string) => string;
}

export interface ManagerLoop {
  readonly control: ManagerControl;
  /** A closed window of a VM's flows, classified; consumed by the next round. */
  observe(w: WindowObservation): void;
  /** Runs one round now (waits for a round in progress first). */
  round(actor: string): Promise<RoundRecord>;
  /** Re-checks a move just before it starts (the executor's recheck). */
  recheck(move: Move, job?: JobRecord): Promise<RecheckResult>;
  /** Rounds every settings.roundIntervalS while this replica leads. */
  start(): void;
  /** Stops the timer and waits for a round in progress. */
  stop(): Promise<void>;
  readonly stats: { windowsDropped: number; windowsPending: number; rounds: number };
}


function newId(prefix: string, atMs: number): string {
  return `${prefix}-${atMs.toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** A user's id from the address their sessions come from ("u-10.77.0.21"). */
export function userIdForEndpoint(endpoint: string): UserId {
  return toUserId(`u-${endpoint.replace(/[^A-Za-z0-9._-]/g, '-')}`);
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Async sections that must not interleave (VM records are written by rounds and by job events). */
function createMutex(): <T>(f: () => Promise<T>) => Promise<T> {
  const serial = createKeyedSerial();
  return <T>(f: () => Promise<T>): Promise<T> => serial('vms', f);
}

export function createManagerLoop(o: ManagerLoopOptions, defaults: Settings): ManagerLoop {
  const { store, events, clock, log, executor } = o;
  const hyst = o.hysteresis ?? DEFAULT_HYSTERESIS;
  const maxWindows = o.maxWindowsPerVm ?? 64;
  const historyMs = o.historyMs ?? 7 * 86_400_000;
  const exclusive = createMutex();
  const pending = new Map<VmId, WindowObservation[]>();
  const hstates = new Map<VmId, HysteresisState>();
  const stats = { windowsDropped: 0, windowsPending: 0, rounds: 0 };
  let roundSeq: number | null = null;
  let current: Promise<RoundRecord> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let stopped = true;
  let lastTrimMs = 0;

  const notLeader = async (what: string): Promise<never> => {
    const leader = await o.leader().catch(() => null);
    throw new AppError('NOT_LEADER', `Cannot ${what}: replica ${o.replica} is not the leader (leader: ${leader ?? 'unknown'}); send it to the leader`, { retryable: true });
  };

  async function audit(key: string, kind: string, msg: string, actor: string, data?: unknown): Promise<void> {
    const value: AuditEvent = data === undefined ? { kind, actor, message: msg } : { kind, actor, message: msg, data };
    const atMs = clock.nowMs();
    const [seq] = await store.append<AuditEvent>('audit', [{ key, atMs, value }]);
    events.publish({ type: 'audit', entry: { seq: seq!, key, atMs, value } });
  }

  const settings = (): Promise<Settings> => getSettings(store, defaults);

  const values = <T>(docs: readonly Doc<T>[]): T[] => docs.map((d) => d.value);

  // ---------------------------------------------------------------------------------------------
  // Job events: the executor reports, the loop records.

  async function onJob(job: JobRecord): Promise<void> {
    await exclusive(async () => {
      const d = await store.get<VmRecord>('vms', job.vm);
      if (d !== null && isTerminal(job.state)) {
        const vm = d.value;
        // Where the VM runs now: at the destination after a completed job, and also when reconciliation after a
        // failure or a restart left it there (the outcome may then be missing or say 'failed').
        const atDestination = owner(job.state) === 'destination' && !(job.state.kind === 'failed' && job.state.lost);
        const at = atDestination
          ? (job.outcome !== null && job.outcome.runningAt.siteId === job.move.to ? job.outcome.runningAt : job.request.to)
          : null;
        const nowMs = clock.nowMs();
        const st = await settings();
        // A streak of moves closer together than the longest cooldown backs off; a move after a long quiet starts afresh.
        const streak = vm.lastMovedAtMs !== null && nowMs - vm.lastMovedAtMs < st.params.maxCooldownMs ? vm.recentMoves + 1 : 1;
        const next: VmRecord = at !== null
          ? { ...vm, siteId: at.siteId, hostId: at.hostId, lastMovedAtMs: nowMs, recentMoves: streak, migratingJobId: null }
          : { ...vm, migratingJobId: vm.migratingJobId === job.id ? null : vm.migratingJobId };
        const saved = await store.put<VmRecord>('vms', vm.id, next);
        events.publish({ type: 'vm', vm: saved.value });
      }
      // The plan records each job's end (live states are the migrations' own): one rewrite per job, not per phase.
      const p = isTerminal(job.state) ? await store.get<PlanRecord>('plans', job.planId) : null;
      if (p !== null) {
        const jobs = p.value.jobs.some((j) => j.jobId === job.id)
          ? p.value.jobs.map((j) => (j.jobId === job.id ? { ...j, state: label(job.state) } : j))
          : [...p.value.jobs, { jobId: job.id, vm: job.vm, state: label(job.state) }];
        const plan: PlanRecord = { ...p.value, jobs, status: planStatusAfterJobs(p.value.status, jobs) };
        await store.put<PlanRecord>('plans', plan.id, plan, { status: plan.status });
        events.publish({ type: 'plan', plan });
      }
    });
    if (isTerminal(job.state)) {
      const out = job.outcome;
      const how = out === null ? label(job.state)
        : out.status === 'completed'
          ? `completed in ${(out.durationMs / 1000).toFixed(1)} s, ${(out.transferredBytes / 2 ** 20).toFixed(0)} MiB moved, downtime ${out.downtimeMs ?? '?'} ms`
          : `${out.status}: ${out.reason ?? 'no reason given'}; the VM runs at ${out.runningAt.siteId}`;
      await audit(job.vm, `migration-${job.state.kind}`, `migration ${job.id} of ${job.vm} ${job.move.from} → ${job.move.to} ${how}`, o.replica, { jobId: job.id, planId: job.planId });
      o.metrics?.migrationEnded?.(job);
    }
  }

  const unsubscribe = executor.events.on((e: ExecutorEvent) => {
    if (e.type === 'job') {
      events.publish({ type: 'migration', job: e.job });
      onJob(e.job).catch((err) => log.error('recording a migration event failed; the job goes on', { job: e.job.id, error: message(err) }));
    } else if (e.type === 'progress') {
      events.publish({ type: 'progress', jobId: e.job.id, vm: e.job.vm, progress: e.progress });
    } else {
      audit(e.job.vm, 'migration-alert', e.message, o.replica, { jobId: e.job.id }).catch((err) => log.error('recording an alert failed', { error: message(err) }));
    }
  });
  void unsubscribe;

  // ---------------------------------------------------------------------------------------------
  // Submitting a plan's moves

  async function submitPlan(plan: PlanRecord, actor: string): Promise<PlanRecord> {
    const [hosts, links] = await Promise.all([listAll<HostRecord>(store, 'hosts'), listAll<LinkRecord>(store, 'links')]);
    const vmDocs = await Promise.all(plan.moves.map((m) => store.get<VmRecord>('vms', m.vm)));
    const vmOf = new Map<VmId, VmRecord>();
    for (const d of vmDocs) if (d !== null) vmOf.set(d.value.id, d.value);
    const asPlan: Plan = { atMs: plan.atMs, planner: plan.planner, moves: plan.moves, rejected: [], totalBenefit: plan.totalBenefit };
    const res = await executor.submit(asPlan, {
      planId: plan.id,
      request: (move, jobId) => {
        const vm = vmOf.get(move.vm);
        const link = linkBetween(values(links), move.from, move.to);
        if (vm === undefined || link === undefined) {
          throw new AppError('PLAN_STALE', `Cannot request the move of ${move.vm} ${move.from} → ${move.to}: ${vm === undefined ? 'the VM is no longer in the inventory' : 'no link joins the sites'}`);
        }
        return o.requestFor(move, jobId, vm, link, values(hosts));
      },
      recheck: (move, job) => loop.recheck(move, job),
    });
    for (const r of res.rejected) await audit(r.vm, 'move-not-started', `plan ${plan.id}: ${r.vm} not moved: ${r.reason}`, actor);
    if (res.superseded.length > 0) {
      await audit(plan.id, 'plan-superseded-jobs', `plan ${plan.id} superseded ${res.superseded.length} queued job(s) of older plans: ${res.superseded.join(', ')}`, actor);
    }
    return exclusive(async () => {
      for (const j of res.jobs) {
        const d = await store.get<VmRecord>('vms', j.vm);
        const now = executor.get(j.id) ?? j;
        if (d !== null && !isTerminal(now.state)) await store.put<VmRecord>('vms', j.vm, { ...d.value, migratingJobId: j.id });
      }
      // Job events may have been recorded meanwhile: the stored plan's job states win over the submit's.
      const stored = (await store.get<PlanRecord>('plans', plan.id))?.value.jobs ?? [];
      const known = new Map(stored.map((j) => [j.jobId, j]));
      const jobs: PlanJobOutcome[] = res.jobs.map((j) => known.get(j.id) ?? { jobId: j.id, vm: j.vm, state: label((executor.get(j.id) ?? j).state) });
      const merged = [...stored.filter((x) => !jobs.some((j) => j.jobId === x.jobId)), ...jobs];
      const next: PlanRecord = merged.length === 0
        ? { ...plan, jobs: [], status: 'done', note: `no move started: ${res.rejected.map((r) => `${r.vm}: ${r.reason}`).join('; ') || 'nothing to start'}` }
        : { ...plan, jobs: merged, status: planStatusAfterJobs(plan.status, merged) };
      const saved = await store.put<PlanRecord>('plans', plan.id, next, { status: next.status, group: plan.roundId });
      return saved.value;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // One round

  async function runRound(): Promise<RoundRecord> {
    const startedAtMs = clock.nowMs();
    const t0 = performance.now();
    roundSeq ??= await store.count('rounds');
    const seq = ++roundSeq;
    const id = newId('round', startedAtMs);
    const st = await settings();
    const stageMs: Partial<Record<RoundStage, number>> = {};
    let mark = performance.now();
    const lap = (s: RoundStage): void => {
      const now = performance.now();
      stageMs[s] = Math.round((now - mark) * 10) / 10;
      mark = now;
    };
    let record: RoundRecord = {
      id, seq, startedAtMs, finishedAtMs: null, durationMs: null, mode: st.mode, leader: o.replica,
      vmsObserved: 0, usersProbed: 0, planId: null, moves: 0, rejections: 0, stageMs, error: null,
    };
    let planDurationS: number | null = null;
    try {
      // Telemetry: the windows that closed since the last round.
      const windows = new Map(pending);
      pending.clear();
      stats.windowsPending = 0;
      lap('telemetry');

      // Fingerprint: hysteresis over each VM's windows; users named by the address their sessions come from.
      const users = new Map<string, UserRecord>(values(await listAll<UserRecord>(store, 'users')).map((u) => [u.endpoint, u]));
      const newUsers = new Map<string, UserRecord>();
      const userIdOf = (endpoint: string): UserId => {
        const known = users.get(endpoint) ?? newUsers.get(endpoint);
        if (known !== undefined) return known.id;
        const u: UserRecord = {
          id: userIdForEndpoint(endpoint), name: endpoint, endpoint, country: null, lat: null, lon: null, network: 'network-1',
          rtt: {}, vms: [], lastSeenAtMs: startedAtMs,
        };
        newUsers.set(endpoint, u);
        return u.id;
      };
      const switched: { vm: VmRecord; point: FingerprintPoint }[] = [];
      if (!o.isLeader()) throw new AppError('NOT_LEADER', `round ${seq} stopped: ${o.replica} no longer leads`);
      let vmsNow: VmRecord[] = [];
      await exclusive(async () => {
        const changed: VmRecord[] = [];
        const points: { key: string; atMs: number; value: FingerprintPoint }[] = [];
        vmsNow = values(await listAll<VmRecord>(store, 'vms'));
        const byId = new Map(vmsNow.map((v, i) => [v.id, i]));
        for (const [vmId, ws] of windows) {
          const i = byId.get(vmId);
          if (i === undefined) continue;
          const cur = vmsNow[i]!;
          const prev = hstates.get(vmId) ?? seedState(cur);
          const up = fingerprintVm(cur, prev, ws, userIdOf, startedAtMs, hyst);
          vmsNow[i] = up.vm;
          hstates.set(vmId, up.state);
          changed.push(up.vm);
          points.push({ key: vmId, atMs: startedAtMs, value: up.point });
          if (up.switched) switched.push({ vm: up.vm, point: up.point });
        }
        if (changed.length > 0) await store.putMany('vms', changed.map((v) => ({ id: v.id, value: v })));
        if (points.length > 0) await store.append('fingerprints', points);
        for (let i = 0; i < changed.length; i++) {
          const vm = changed[i]!;
          o.metrics?.observeVm?.(vm);
          events.publish({ type: 'fingerprint', vm: vm.id, atMs: startedAtMs, point: points[i]!.value });
          events.publish({ type: 'vm', vm });
        }
        record = { ...record, vmsObserved: changed.length };
      });
      for (const s of switched) {
        await audit(s.vm.id, s.vm.sensitive ? 'vm-sensitive' : 'vm-insensitive',
          `${s.vm.id} is ${s.vm.sensitive ? 'now location-sensitive' : 'no longer location-sensitive'} (${s.point.activity}, score ${s.point.score.toFixed(2)}): ${s.point.reasons.slice(0, 2).join('; ')}`, o.replica);
      }
      lap('fingerprint');

      // Latency: probe every user of a VM from every site (users as the fingerprint stage just left them).
      const vms = vmsNow;
      const byUser = new Map<UserId, VmId[]>();
      for (const v of vms) for (const u of v.users) byUser.set(u.userId, [...(byUser.get(u.userId) ?? []), v.id]);
      const allUsers = [...users.values(), ...newUsers.values()];
      const active = allUsers.filter((u) => byUser.has(u.id));
      const probed = active.length === 0 ? new Map<string, UserLatency>() : await o.latency.probeRound(active);
      const updatedUsers: UserRecord[] = [];
      const rttPoints: { key: string; atMs: number; value: RttPoint }[] = [];
      const networkChanges: UserRecord[] = [];
      for (const u of allUsers) {
        const r = probed.get(u.id);
        const vmsOf = byUser.get(u.id) ?? [];
        if (r === undefined && !newUsers.has(u.endpoint) && sameList(vmsOf, u.vms)) continue;
        let next: UserRecord = { ...u, vms: vmsOf, lastSeenAtMs: vmsOf.length > 0 ? startedAtMs : u.lastSeenAtMs };
        if (r !== undefined) {
          next = { ...next, rtt: { ...u.rtt, ...r.rtt }, country: u.country ?? r.country };
          if (r.networkChanged) {
            next = { ...next, network: nextNetwork(u.network) };
            networkChanges.push(next);
          }
          for (const [siteId, x] of Object.entries(r.rtt)) {
            // History keeps changes: a fresh probe that moved the estimate by a millisecond or more.
            const prev = u.rtt[siteId];
            const changed = prev === undefined || prev.source !== x.source || Math.abs(prev.rttMs - x.rttMs) >= 1;
            if (x.source === 'probe' && x.atMs >= startedAtMs - 1 && changed) rttPoints.push({ key: u.id, atMs: x.atMs, value: { siteId: siteId as RttPoint['siteId'], rttMs: x.rttMs, source: x.source } });
          }
        }
        updatedUsers.push(next);
      }
      if (updatedUsers.length > 0) await store.putMany('users', updatedUsers.map((u) => ({ id: u.id, value: u })));
      if (rttPoints.length > 0) await store.append('rtts', rttPoints);
      for (const u of updatedUsers) {
        o.metrics?.observeUser?.(u);
        events.publish({ type: 'user', user: u });
      }
      for (const u of networkChanges) {
        await audit(u.id, 'user-network-changed', `${u.name}'s RTTs shifted: now on ${u.network} (${rttSummary(u)})`, o.replica);
      }
      record = { ...record, usersProbed: probed.size };
      lap('latency');

      // Placement.
      const [sites, hosts, links, freshVms, freshUsers] = await Promise.all([
        listAll<SiteRecord>(store, 'sites'), listAll<HostRecord>(store, 'hosts'),
        listAll<LinkRecord>(store, 'links'), listAll<VmRecord>(store, 'vms'),
        listAll<UserRecord>(store, 'users'),
      ]);
      const vmById = new Map(values(freshVms).map((v) => [v.id, v]));
      const params: PlanParams = { ...st.params, pinned: [], excluded: [] };
      const pt0 = performance.now();
      const snapshot = createSnapshot(snapshotInput(startedAtMs, {
        sites: values(sites), hosts: values(hosts), links: values(links), vms: values(freshVms), users: values(freshUsers),
      }, params));
      const plan = st.planner === 'ilp' && o.solver !== undefined ? planMovesIlp(snapshot, params, o.solver, { timeLimitS: 30 }) : planMoves(snapshot, params);
      planDurationS = (performance.now() - pt0) / 1000;
      lap('placement');

      // Record the plan, then act by mode.
      const planId = newId('plan', startedAtMs);
      const counted = countedRejections(plan);
      let planRecord: PlanRecord = {
        id: planId, roundId: id, atMs: startedAtMs, mode: st.mode, status: initialPlanStatus(st.mode, plan.moves.length),
        planner: plan.planner, moves: plan.moves, rejected: plan.rejected.filter((r) => !(r.reason in counted)),
        totalBenefit: plan.totalBenefit, inputs: planInputs(snapshot, plan, params), jobs: [],
        decidedBy: st.mode === 'auto' && plan.moves.length > 0 ? o.replica : null,
        decidedAtMs: st.mode === 'auto' && plan.moves.length > 0 ? startedAtMs : null,
        note: Object.keys(counted).length === 0 ? null : `also not moved: ${Object.entries(counted).map(([k, n]) => `${n} ${k}`).join(', ')}`,
      };
      await store.put<PlanRecord>('plans', planId, planRecord, { status: planRecord.status, group: id });
      if (plan.moves.length > 0 && st.mode !== 'dry-run') {
        // A newer plan supersedes recommendations not acted on (OpenStack Watcher's action plans).
        for (const old of await listAll<PlanRecord>(store, 'plans', { status: 'recommended' })) {
          if (old.id === planId) continue;
          const sup: PlanRecord = { ...old.value, status: 'superseded', decidedBy: o.replica, decidedAtMs: startedAtMs, note: `superseded by ${planId}` };
          // An operator may approve it meanwhile: then it is no longer ours to supersede.
          const ok = await store.put<PlanRecord>('plans', old.id, sup, { status: sup.status, group: old.group, expectRev: old.rev }).then(() => true, (e: unknown) => {
            if (e instanceof AppError && e.code === 'STORE_CONFLICT') return false;
            throw e;
          });
          if (!ok) continue;
          events.publish({ type: 'plan', plan: sup });
          await audit(old.id, 'plan-superseded', `plan ${old.id} superseded by ${planId} before it was approved`, o.replica);
        }
      }
      for (const m of plan.moves) {
        const verb = st.mode === 'auto' ? 'will' : st.mode === 'approve' ? 'recommends to' : 'would';
        await audit(m.vm, 'move-planned', `plan ${planId} ${verb} ${describeMove(m, vmById.get(m.vm))}`, o.replica, { planId });
      }
      for (const r of planRecord.rejected) {
        if (r.reason === 'already-best' || r.reason === 'not-selected') continue;
        await audit(r.vm, 'move-rejected', `plan ${planId} does not move ${r.vm}: ${r.reason} (${r.detail})`, o.replica, { planId });
      }
      if (st.mode === 'auto' && plan.moves.length > 0) {
        if (!o.isLeader()) throw new AppError('NOT_LEADER', `round ${seq} stopped before acting: ${o.replica} no longer leads`);
        planRecord = await submitPlan(planRecord, o.replica).catch(async (e: unknown) => {
          // Recorded as ended, not left 'submitted' for ever.
          const failed: PlanRecord = { ...planRecord, status: 'done', note: `not submitted: ${message(e)}` };
          await store.put<PlanRecord>('plans', planId, failed, { status: failed.status, group: id });
          throw e;
        });
      }
      events.publish({ type: 'plan', plan: planRecord });
      lap('migration');
      record = { ...record, planId, moves: plan.moves.length, rejections: plan.rejected.length };
    } catch (e) {
      record = { ...record, error: message(e) };
      log.error('round failed; the next round starts afresh', { round: id, error: message(e) });
      await audit('manager', 'round-failed', `round ${seq} failed: ${message(e)}`, o.replica).catch(() => undefined);
    }
    const finishedAtMs = clock.nowMs();
    record = { ...record, finishedAtMs, durationMs: Math.round((performance.now() - t0) * 10) / 10 };
    await store.put<RoundRecord>('rounds', id, record, { status: record.error === null ? 'ok' : 'failed' });
    stats.rounds++;
    o.metrics?.roundFinished?.(record, planDurationS);
    events.publish({ type: 'round', round: record });
    if (finishedAtMs - lastTrimMs > 3_600_000) {
      lastTrimMs = finishedAtMs;
      await store.trim('fingerprints', finishedAtMs - historyMs).catch((e: unknown) => log.warn('trimming fingerprint history failed', { error: message(e) }));
      await store.trim('rtts', finishedAtMs - historyMs).catch((e: unknown) => log.warn('trimming RTT history failed', { error: message(e) }));
    }
    return record;
  }

  function seedState(vm: VmRecord): HysteresisState {
    // After a restart the hysteresis picks up where the store says the VM was, not from scratch.
    if (vm.fingerprintAtMs === null) return initialState();
    return { ...initialState(), sensitive: vm.sensitive, score: vm.sensitivity, activity: vm.activity, windows: 1, reason: 'restored from the store' };
  }

  const round = (actor: string): Promise<RoundRecord> => {
    const asked = actor === o.replica ? Promise.resolve() : audit('manager', 'round-requested', `${actor} asked for a round now`, actor);
    const run = Promise.all([current?.catch(() => null), asked]).then(() => runRound());
    current = run;
    void run.finally(() => {
      if (current === run) current = null;
    }).catch(() => undefined);
    return run;
  };

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      void (async () => {
        let next = defaults.roundIntervalS;
        try {
          next = (await settings()).roundIntervalS;
          if (o.isLeader()) await round(o.replica);
        } catch (e) {
          log.error('scheduled round failed', { error: message(e) });
        }
        schedule(next * 1000);
      })();
    }, delayMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Operator control

  async function getPlan(id: string): Promise<Doc<PlanRecord>> {
    const d = await store.get<PlanRecord>('plans', id);
    if (d === null) throw new AppError('NOT_FOUND', `No plan ${id}`);
    return d;
  }

  const control: ManagerControl = {
    replica: o.replica,
    isLeader: () => o.isLeader(),
    leader: () => o.leader(),
    async approvePlan(id, actor) {
      if (!o.isLeader()) return notLeader(`approve plan ${id}`);
      const d = await getPlan(id);
      if (d.value.status !== 'recommended') {
        throw new AppError('PLAN_NOT_PENDING', `Cannot approve plan ${id}: it is ${d.value.status}, only a recommended plan can be approved`);
      }
      let plan: PlanRecord = { ...d.value, status: 'approved', decidedBy: actor, decidedAtMs: clock.nowMs() };
      await store.put<PlanRecord>('plans', id, plan, { expectRev: d.rev, status: plan.status, group: d.group });
      await audit(id, 'plan-approved', `${actor} approved plan ${id} (${plan.moves.length} move(s))`, actor);
      plan = await submitPlan(plan, actor).catch(async (e: unknown) => {
        const failed: PlanRecord = { ...plan, status: 'done', note: `approved, but not submitted: ${message(e)}` };
        await store.put<PlanRecord>('plans', id, failed, { status: failed.status, group: d.group });
        throw e;
      });
      events.publish({ type: 'plan', plan });
      return plan;
    },
    async rejectPlan(id, actor, reason) {
      if (!o.isLeader()) return notLeader(`reject plan ${id}`);
      const d = await getPlan(id);
      if (d.value.status !== 'recommended') {
        throw new AppError('PLAN_NOT_PENDING', `Cannot reject plan ${id}: it is ${d.value.status}, only a recommended plan can be rejected`);
      }
      const plan: PlanRecord = { ...d.value, status: 'rejected', decidedBy: actor, decidedAtMs: clock.nowMs(), note: reason };
      const saved = await store.put<PlanRecord>('plans', id, plan, { expectRev: d.rev, status: plan.status, group: d.group });
      await audit(id, 'plan-rejected', `${actor} rejected plan ${id}${reason === null ? '' : `: ${reason}`}`, actor);
      events.publish({ type: 'plan', plan: saved.value });
      return saved.value;
    },
    async cancelMigration(jobId, actor) {
      if (!o.isLeader()) return notLeader(`cancel migration ${jobId}`);
      const known = executor.get(jobId) ?? (await store.get<JobRecord>('jobs', jobId))?.value;
      if (known === undefined) throw new AppError('NOT_FOUND', `No migration ${jobId}`);
      if (isTerminal(known.state)) throw new AppError('JOB_ENDED', `Cannot cancel migration ${jobId}: it already ended (${label(known.state)})`);
      const r = await executor.cancel(jobId, `cancelled by ${actor}`);
      await audit(known.vm, 'migration-cancel', r.refused === null
        ? `${actor} cancelled migration ${jobId} of ${known.vm}`
        : `${actor} asked to cancel migration ${jobId} of ${known.vm}; refused: ${r.refused}`, actor);
      if (r.refused !== null) throw new AppError('JOB_NOT_CANCELLABLE', `Cannot cancel migration ${jobId}: ${r.refused} (state ${label(r.job.state)})`);
      return r.job;
    },
    async updateSettings(patch: SettingsPatch, actor) {
      if (!o.isLeader()) return notLeader('change the settings');
      const cur = await settings();
      const params = patch.params === undefined ? cur.params : parsePlanParams({ ...cur.params, ...patch.params }, 'params');
      const next: Settings = {
        mode: patch.mode ?? cur.mode, roundIntervalS: patch.roundIntervalS ?? cur.roundIntervalS, planner: patch.planner ?? cur.planner, params,
      };
      await putSettings(store, next);
      await audit('manager', 'settings-changed', `${actor} changed the settings: ${JSON.stringify(patch)}`, actor);
      events.publish({ type: 'settings', settings: next });
      // A round running now schedules the next one from the new settings itself; otherwise re-arm the timer.
      if (patch.roundIntervalS !== undefined && !stopped && timer !== null) {
        clearTimeout(timer);
        schedule(next.roundIntervalS * 1000);
      }
      return next;
    },
    async setVmFlags(id, flags, actor) {
      if (!o.isLeader()) return notLeader(`change VM ${id}`);
      return exclusive(async () => {
        const d = await store.get<VmRecord>('vms', id);
        if (d === null) throw new AppError('NOT_FOUND', `No VM ${id}`);
        const next: VmRecord = { ...d.value, ...(flags.pinned === undefined ? {} : { pinned: flags.pinned }), ...(flags.excluded === undefined ? {} : { excluded: flags.excluded }) };
        const saved = await store.put<VmRecord>('vms', id, next);
        await audit(id, 'vm-flags', `${actor} set ${id}: ${JSON.stringify(flags)}`, actor);
        events.publish({ type: 'vm', vm: saved.value });
        return saved.value;
      });
    },
    async runRound(actor) {
      if (!o.isLeader()) return notLeader('run a round');
      return round(actor);
    },
  };

  const loop: ManagerLoop = {
    control,
    observe(raw) {
      const resolve = o.resolveEndpoint;
      const w = resolve === undefined || raw.users.length === 0 ? raw : { ...raw, users: raw.users.map((u) => ({ ...u, endpoint: resolve(raw.vm, u.endpoint) })) };
      let list = pending.get(w.vm);
      if (list === undefined) pending.set(w.vm, (list = []));
      list.push(w);
      stats.windowsPending++;
      if (list.length > maxWindows) {
        list.shift();
        stats.windowsDropped++;
        stats.windowsPending--;
      }
    },
    round,
    async recheck(move, job) {
      const d = await store.get<VmRecord>('vms', move.vm);
      if (d === null) return { ok: false, reason: `${move.vm} is no longer in the inventory` };
      if (d.value.siteId !== move.from) return { ok: false, reason: `${move.vm} is at ${d.value.siteId} now, not at ${move.from}` };
      if (d.value.pinned) return { ok: false, reason: `${move.vm} was pinned to ${d.value.siteId}` };
      if (d.value.excluded) return { ok: false, reason: `${move.vm} was excluded from moves` };
      if (job !== undefined && d.value.migratingJobId !== null && d.value.migratingJobId !== job.id) {
        return { ok: false, reason: `${move.vm} is being moved by job ${d.value.migratingJobId}` };
      }
      return { ok: true };
    },
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await current?.catch(() => undefined);
    },
    stats,
  };
  return loop;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function nextNetwork(label: string): string {
  const m = /^network-(\d+)$/.exec(label);
  return m === null ? `${label}-2` : `network-${Number(m[1]) + 1}`;
}

function rttSummary(u: UserRecord): string {
  return Object.entries(u.rtt).map(([s, r]) => `${s} ${r.rttMs.toFixed(0)} ms (${r.source})`).join(', ');
}
