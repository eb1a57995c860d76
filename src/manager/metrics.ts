// Prometheus metrics of the manager, in a registry of its own (never prom-client's global one, so two
// managers in one test process do not share counters). The loop calls the small typed update functions;
// GET /metrics renders the registry.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { isTerminal, type JobRecord } from '../migration/job.js';
import type { CollectorStats } from '../telemetry/collector.js';
import type { RoundRecord, UserRecord, VmRecord } from '../store/records.js';

export interface Metrics {
  readonly registry: Registry;
  /** The text GET /metrics answers, and its content type. */
  render(): Promise<string>;
  readonly contentType: string;
  observeVm(vm: VmRecord): void;
  removeVm(id: string): void;
  observeUser(user: UserRecord): void;
  removeUser(id: string): void;
  /** Counts an ended job once (by id), however often it is reported; a job still running is ignored. */
  migrationEnded(job: JobRecord): void;
  /** A round's duration and result (the planner's own time comes through planComputed). */
  roundFinished(round: RoundRecord): void;
  /** Seconds the planner took to compute one plan. */
  planComputed(seconds: number): void;
  /** The collector's cumulative counters; the metrics advance by the difference since the last call. */
  setCollector(stats: Pick<CollectorStats, 'datagrams' | 'lostRecords' | 'lostDatagrams' | 'decodeErrors' | 'records'>): void;
  setLeader(leader: boolean): void;
  apiRequest(route: string, status: number): void;
  sseClients(n: number): void;
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const MIGRATION_BUCKETS = [10, 30, 60, 120, 240, 480, 900, 1800, 3600, 7200];
/** Ended job ids remembered so a re-reported job is not counted twice. */
const SEEN_JOBS_MAX = 10_000;

export function createMetrics(opts: { defaultMetrics?: boolean; prefix?: string } = {}): Metrics {
  const registry = new Registry();
  const p = opts.prefix ?? 'vmshadow_';
  const registers = [registry];
  if (opts.defaultMetrics === true) collectDefaultMetrics({ register: registry, prefix: p });

  const vmSensitivity = new Gauge({
    name: `${p}vm_sensitivity`, help: 'Location sensitivity of a VM from its latest fingerprint (0..1)',
    labelNames: ['vm'] as const, registers,
  });
  const vmSensitive = new Gauge({
    name: `${p}vm_sensitive`, help: 'Whether the VM is judged location-sensitive (1) or not (0)',
    labelNames: ['vm'] as const, registers,
  });
  const userRtt = new Gauge({
    name: `${p}user_rtt_ms`, help: 'Smoothed round-trip time from a user to a site, milliseconds',
    labelNames: ['user', 'site'] as const, registers,
  });
  const migrations = new Counter({
    name: `${p}migrations_total`, help: 'Migrations ended, by outcome (completed, aborted, rolled-back, cancelled, failed)',
    labelNames: ['outcome'] as const, registers,
  });
  const migrationBytes = new Counter({
    name: `${p}migration_bytes_total`, help: 'Bytes sent over WAN links by ended migrations', registers,
  });
  const migrationDuration = new Histogram({
    name: `${p}migration_duration_seconds`, help: 'Duration of ended migrations that started', buckets: MIGRATION_BUCKETS, registers,
  });
  const planDuration = new Histogram({
    name: `${p}plan_duration_seconds`, help: 'Time the planner took per round', buckets: SECONDS_BUCKETS, registers,
  });
  const roundDuration = new Histogram({
    name: `${p}round_duration_seconds`, help: 'Duration of a whole control round', buckets: SECONDS_BUCKETS, registers,
  });
  const rounds = new Counter({
    name: `${p}rounds_total`, help: 'Control rounds finished, by result', labelNames: ['result'] as const, registers,
  });
  const collectorLost = new Counter({
    name: `${p}collector_lost_total`, help: 'Flow records or datagrams lost on the way, from export sequence gaps',
    labelNames: ['unit'] as const, registers,
  });
  const collectorDatagrams = new Counter({
    name: `${p}collector_datagrams_total`, help: 'Flow export datagrams received', registers,
  });
  const collectorRecords = new Counter({
    name: `${p}collector_records_total`, help: 'Flow records decoded', registers,
  });
  const collectorDecodeErrors = new Counter({
    name: `${p}collector_decode_errors_total`, help: 'Datagrams the decoders rejected, by kind',
    labelNames: ['kind'] as const, registers,
  });
  const leader = new Gauge({ name: `${p}leader`, help: '1 if this replica leads (acts), 0 if it only serves reads', registers });
  const apiRequests = new Counter({
    name: `${p}api_requests_total`, help: 'API requests answered, by route pattern and status code',
    labelNames: ['route', 'status'] as const, registers,
  });
  const sse = new Gauge({ name: `${p}sse_clients`, help: 'Open event-stream connections', registers });

  const userSites = new Map<string, Set<string>>();
  const seenJobs = new Set<string>();
  let lastCollector: { datagrams: number; records: number; lostRecords: number; lostDatagrams: number; decode: Map<string, number> } | null = null;
  const delta = (now: number, before: number | undefined): number =>
    // A collector restarted counts from zero again: its whole count is new.
    before === undefined || now < before ? now : now - before;
  const fin = (n: number): boolean => Number.isFinite(n) && n >= 0;

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    observeVm(vm) {
      if (Number.isFinite(vm.sensitivity)) vmSensitivity.set({ vm: vm.id }, vm.sensitivity);
      vmSensitive.set({ vm: vm.id }, vm.sensitive ? 1 : 0);
    },
    removeVm(id) {
      vmSensitivity.remove({ vm: id });
      vmSensitive.remove({ vm: id });
    },
    observeUser(user) {
      const before = userSites.get(user.id) ?? new Set<string>();
      const now = new Set<string>();
      for (const [site, r] of Object.entries(user.rtt)) {
        if (!Number.isFinite(r.rttMs)) continue;
        userRtt.set({ user: user.id, site }, r.rttMs);
        now.add(site);
      }
      for (const site of before) if (!now.has(site)) userRtt.remove({ user: user.id, site });
      userSites.set(user.id, now);
    },
    removeUser(id) {
      for (const site of userSites.get(id) ?? []) userRtt.remove({ user: id, site });
      userSites.delete(id);
    },
    migrationEnded(job) {
      if (!isTerminal(job.state) || seenJobs.has(job.id)) return;
      seenJobs.add(job.id);
      if (seenJobs.size > SEEN_JOBS_MAX) {
        const oldest = seenJobs.values().next();
        if (oldest.done !== true) seenJobs.delete(oldest.value);
      }
      migrations.inc({ outcome: job.state.kind });
      const o = job.outcome;
      if (o !== null) {
        if (fin(o.transferredBytes)) migrationBytes.inc(o.transferredBytes);
        if (fin(o.durationMs)) migrationDuration.observe(o.durationMs / 1000);
      }
    },
    roundFinished(round) {
      rounds.inc({ result: round.error === null ? 'ok' : 'error' });
      if (round.durationMs !== null && fin(round.durationMs)) roundDuration.observe(round.durationMs / 1000);
    },
    planComputed(seconds) {
      if (fin(seconds)) planDuration.observe(seconds);
    },
    setCollector(stats) {
      const decode = new Map<string, number>();
      for (const [k, v] of Object.entries(stats.decodeErrors)) if (typeof v === 'number' && fin(v)) decode.set(k, v);
      const prev = lastCollector;
      const inc = (c: Counter, now: number, before: number | undefined): void => {
        if (!fin(now)) return;
        const d = delta(now, before);
        if (d > 0) c.inc(d);
      };
      inc(collectorDatagrams, stats.datagrams, prev?.datagrams);
      inc(collectorRecords, stats.records, prev?.records);
      for (const [unit, now, before] of [
        ['record', stats.lostRecords, prev?.lostRecords], ['datagram', stats.lostDatagrams, prev?.lostDatagrams],
      ] as const) {
        if (!fin(now)) continue;
        const d = delta(now, before);
        if (d > 0) collectorLost.inc({ unit }, d);
      }
      for (const [kind, now] of decode) {
        const d = delta(now, prev?.decode.get(kind));
        if (d > 0) collectorDecodeErrors.inc({ kind }, d);
      }
      lastCollector = {
        datagrams: stats.datagrams, records: stats.records, lostRecords: stats.lostRecords,
        lostDatagrams: stats.lostDatagrams, decode,
      };
    },
    setLeader(isLeader) {
      leader.set(isLeader ? 1 : 0);
    },
    apiRequest(route, status) {
      apiRequests.inc({ route, status: String(status) });
    },
    sseClients(n) {
      sse.set(n);
    },
  };
}
