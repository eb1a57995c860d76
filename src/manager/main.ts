// `vmshadow manager`: the only place that wires the parts together — the store, tokens, the inventory, the
// migration driver and executor, the latency prober, the flow collector, the loop, leader election and the
// REST API with the dashboard. Everything it starts it stops again on close().
import { mkdirSync, readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { AppError, InputError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { VmId } from '../core/ids.js';
import { systemClock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { createLabDriver, LAB_MIGRATION_POLICY, readLabState, type LabState } from '../lab/lab.js';
import { createGeo, openCountryDb } from '../latency/geo.js';
import { createLatencyService, type LatencyService } from '../latency/service.js';
import { createLocalProber, createNamespaceProber, type SiteProber } from '../latency/site-prober.js';
import { DEFAULT_DATA_DIR, latencyData } from '../cli/data.js';
import type { MigrationDriver } from '../migration/driver.js';
import { createExecutor, type Executor } from '../migration/executor.js';
import { createQemuDriver } from '../migration/qemu-driver.js';
import { createSimDriver, realTimers, SimWorld, type SimWorldState } from '../migration/sim-driver.js';
import { loadHighs } from '../solver/highs.js';
import { createLeaderElector, type LeaderElector } from '../store/leader.js';
import { openStore } from '../store/open.js';
import { getSettings, jobStoreOf, listAll, putSettings } from '../store/repos.js';
import type { HostRecord, SiteRecord, UserRecord, VmRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import { buildApi } from './api/server.js';
import type { Api } from './api/context.js';
import { ensureTokens, type GeneratedTokens } from './auth.js';
import { describeConfig, formatHostPort, initialSettings, type ManagerConfig } from './config.js';
import { createEventBus, type EventBus } from './events.js';
import { startFlowIngest, type FlowIngest } from './flows.js';
import { importInventory, inventoryFromLab, parseManagerInventory, telemetryInventory, type ManagerInventory } from './inventory.js';
import { createManagerLogger, fromPino } from './logging.js';
import { createManagerLoop, type LatencySource, type ManagerLoop, type UserLatency } from './loop.js';
import { createMetrics, type Metrics } from './metrics.js';
import { DEFAULT_MIGRATION_POLICY, requestForMove } from './requests.js';

export interface StartManagerOptions {
  /** Where the one-time token lines and the "listening" line go (stdout in the CLI). */
  readonly out: (line: string) => void;
  readonly clock?: Clock;
  /** Our Logger; default: pino JSON lines on stderr at the configured level. */
  readonly log?: Logger;
  /** Use this driver instead of building one (the demo passes its lab's driver, which keeps lab.json current). */
  readonly driver?: MigrationDriver;
  /** Extra addresses per VM name, beyond the inventory's (a lab desktop's display address). */
  readonly extraAddresses?: Readonly<Record<string, readonly string[]>>;
  /** The dashboard's built files (default: none, '/' answers a JSON index). */
  readonly dashboardDir?: string | null;
  /** Who is behind a remote end the flows show (a connection proxy's sessions): see ManagerLoopOptions. */
  readonly resolveEndpoint?: (vm: VmId, endpoint: string) => string;
}

export interface RunningManager {
  readonly url: string;
  readonly replica: string;
  readonly store: Store;
  readonly events: EventBus;
  readonly loop: ManagerLoop;
  readonly executor: Executor;
  readonly api: Api;
  readonly tokens: GeneratedTokens;
  readonly flows: FlowIngest | null;
  readonly metrics: Metrics;
  isLeader(): boolean;
  /** Resolves when this replica leads (or rejects after timeoutMs). */
  untilLeader(timeoutMs: number): Promise<void>;
  /** Stops everything it started; migrations in flight keep running in QEMU and are reconciled at the next start. */
  close(): Promise<void>;
  /** Resolves when the manager stopped by itself (it lost the leadership it held). */
  readonly stopped: Promise<string>;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function readInventory(cfg: ManagerConfig, extra: Readonly<Record<string, readonly string[]>>): { inv: ManagerInventory | null; lab: LabState | null } {
  if (cfg.labStateDir !== null) {
    const lab = readLabState(cfg.labStateDir);
    if (lab === null) throw new InputError('labStateDir', cfg.labStateDir, 'holds no lab (lab.json): run `vmshadow lab up` first');
    return { inv: inventoryFromLab(lab, extra), lab };
  }
  if (cfg.inventoryFile !== null) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(cfg.inventoryFile, 'utf8'));
    } catch (e) {
      throw new InputError('inventory', cfg.inventoryFile, `cannot be read as JSON: ${message(e)}`);
    }
    try {
      return { inv: parseManagerInventory(raw), lab: null };
    } catch (e) {
      if (e instanceof InputError) throw new InputError(`inventory ${cfg.inventoryFile}: ${e.field}`, e.value, e.problem, { cause: e });
      throw e;
    }
  }
  return { inv: null, lab: null };
}

/** A simulated world that outlives the process: its state is saved beside the store on every change. */
function persistentSimWorld(dir: string, vms: readonly VmRecord[]): SimWorld {
  const file = join(dir, 'sim-world.json');
  let pending = false;
  const save = (w: SimWorld): void => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, JSON.stringify(w.exportState()));
      renameSync(tmp, file);
    });
  };
  const opts = { timers: realTimers(), onChange: save };
  const world = existsSync(file) ? SimWorld.restore(opts, JSON.parse(readFileSync(file, 'utf8')) as SimWorldState) : new SimWorld(opts);
  for (const v of vms) if (world.instances(v.id).length === 0) world.addVm(v.id, { siteId: v.siteId, hostId: v.hostId }, v.memoryMiB);
  return world;
}

export async function startManager(cfg: ManagerConfig, o: StartManagerOptions): Promise<RunningManager> {
  const clock = o.clock ?? systemClock;
  mkdirSync(cfg.dataDir, { recursive: true });
  const log = o.log ?? fromPino(createManagerLogger({ level: cfg.logLevel, base: { replica: cfg.replica } }));
  log.info('manager starting', describeConfig(cfg));
  for (const w of cfg.warnings) log.warn(w);
  const { inv, lab } = readInventory(cfg, o.extraAddresses ?? {});

  const store = await openStore(cfg.store.url, { clock, log });
  const cleanups: (() => Promise<unknown>)[] = [() => store.close()];
  let closing = false;
  const closeAll = async (): Promise<void> => {
    closing = true;
    for (const c of cleanups.splice(0).reverse()) await c().catch((e: unknown) => log.warn('closing failed', { error: message(e) }));
  };
  try {
    const tokens = await ensureTokens(store, {
      ...(cfg.adminToken === null ? {} : { adminToken: cfg.adminToken }),
      ...(cfg.readToken === null ? {} : { readToken: cfg.readToken }),
    });
    if (tokens.admin !== undefined) o.out(`admin token (shown once, stored only as a hash): ${tokens.admin}\n`);
    if (tokens.read !== undefined) o.out(`read-only token (shown once): ${tokens.read}\n`);

    const stored = await store.get<never>('settings', 'manager');
    const defaults = initialSettings(cfg, stored === null ? null : await getSettings(store));
    await putSettings(store, defaults);

    // The first replica to start imports the inventory so that reads work at once; the leader re-imports.
    if (inv !== null && (await store.count('sites')) === 0) await importInventory(store, inv);
    const vmsNow = (await listAll<VmRecord>(store, 'vms')).map((d) => d.value);

    const events = createEventBus((e) => log.error('an event listener failed', { error: message(e) }));
    const metrics = createMetrics();

    // The migration driver.
    const driver: MigrationDriver = o.driver ?? (cfg.driver === 'sim'
      ? createSimDriver(persistentSimWorld(cfg.dataDir, vmsNow))
      : lab !== null
        ? createLabDriver(lab, { log, clock })
        : await localQemuDriver(store, cfg, log, clock));
    // The lab's sites hold TLS credentials; QEMU on one machine and the simulator need none.
    const policy = lab !== null ? LAB_MIGRATION_POLICY : { ...DEFAULT_MIGRATION_POLICY, tls: false };
    let loopRef: ManagerLoop | null = null;
    const executor = createExecutor({
      driver, store: jobStoreOf(store), clock, log: log.child({ component: 'executor' }),
      limits: { maxConcurrent: 4, maxPerLink: 2, linkBandwidthShare: 1 },
      recheck: (m) => (loopRef === null ? { ok: false, reason: 'the manager is starting' } : loopRef.recheck(m)),
    });
    cleanups.push(async () => {
      await executor.settled().catch(() => undefined);
      executor.halt();
      if ('detach' in driver && typeof driver.detach === 'function') await (driver as { detach(): Promise<void> }).detach();
    });

    // Latency: probes from every site (in the lab, from inside each site's namespace).
    const sites = (await listAll<SiteRecord>(store, 'sites')).map((d) => d.value);
    const latency = await latencySource(cfg, sites, lab, clock, log);
    cleanups.push(() => latency.close());

    // Leadership.
    // Elected: the lease is ours. Ready: the inventory is imported and what was in flight reconciled; only then
    // does this replica act (or accept changes).
    let elected = false;
    let ready = false;
    const leading = (): boolean => elected && ready;
    let stoppedWith: (why: string) => void = () => undefined;
    const stopped = new Promise<string>((r) => {
      stoppedWith = r;
    });
    const leaderWaiters: (() => void)[] = [];
    let elector: LeaderElector | null = null;
    const loop = createManagerLoop({
      store, events, clock, log: log.child({ component: 'loop' }), replica: cfg.replica, executor, latency,
      requestFor: requestForMove(policy),
      ...(o.resolveEndpoint === undefined ? {} : { resolveEndpoint: o.resolveEndpoint }),
      isLeader: leading,
      leader: async () => (await store.getLease('manager'))?.holder ?? null,
      solver: cfg.planner === 'ilp' ? await loadHighs() : undefined,
      metrics: {
        observeVm: (v) => metrics.observeVm(v),
        observeUser: (u) => metrics.observeUser(u),
        roundFinished: (r, planS) => {
          metrics.roundFinished(r);
          if (planS !== null) metrics.planComputed(planS);
        },
        migrationEnded: (j) => metrics.migrationEnded(j),
      },
    }, defaults);
    loopRef = loop;
    cleanups.push(() => loop.stop());

    // Flows.
    let flows: FlowIngest | null = null;
    if (cfg.collector !== null) {
      flows = await startFlowIngest({
        inventory: telemetryInventory(vmsNow), listen: cfg.collector, receive: cfg.collectorReceive, windowMs: cfg.windowS * 1000,
        observe: (w) => loop.observe(w), clock, log: log.child({ component: 'collector' }),
      });
      const f = flows;
      const t = setInterval(() => metrics.setCollector(f.stats), 5000);
      t.unref();
      cleanups.push(async () => {
        clearInterval(t);
        await f.close();
      });
      log.info('collecting flows', { listen: `${f.address?.host}:${f.address?.port}`, vms: vmsNow.length, windowS: cfg.windowS });
    }

    const becomeLeader = async (): Promise<void> => {
      if (inv !== null) {
        const r = await importInventory(store, inv);
        log.info('inventory imported', { ...r });
      }
      const reconciled = await executor.reconcile();
      for (const e of reconciled) {
        await store.append('audit', [{ key: e.vm, atMs: clock.nowMs(), value: { kind: 'migration-reconciled', actor: cfg.replica, message: `after a restart, migration ${e.id} of ${e.vm} was ${e.found}; now ${e.now}: ${e.note}` } }]);
      }
      await store.append('audit', [{ key: 'manager', atMs: clock.nowMs(), value: { kind: 'leader', actor: cfg.replica, message: `${cfg.replica} leads (${reconciled.length} migration(s) reconciled)` } }]);
      if (!elected) return;
      ready = true;
      loop.start();
      for (const w of leaderWaiters.splice(0)) w();
    };
    elector = createLeaderElector({
      store, name: 'manager', holder: cfg.replica, ttlMs: Math.round(cfg.leaseTtlS * 1000), renewEveryMs: Math.max(500, Math.round((cfg.leaseTtlS * 1000) / 3)),
      clock, log: log.child({ component: 'leader' }),
      onChange: (isLeader: boolean) => {
        metrics.setLeader(isLeader);
        if (isLeader && !elected) {
          elected = true;
          log.info('this replica leads now', { replica: cfg.replica });
          becomeLeader().catch((e: unknown) => {
            log.error('taking the lead failed; stepping down', { error: message(e) });
            stoppedWith(`taking the lead failed: ${message(e)}`);
          });
        } else if (!isLeader && elected && closing) {
          elected = false;
          ready = false;
          log.info('stepped down: stopping', { replica: cfg.replica });
        } else if (!isLeader && elected) {
          // Another replica may act now: stop at once; a supervisor restarts this one as a follower.
          elected = false;
          ready = false;
          log.error('lost the leadership; stopping so that only one replica acts', { replica: cfg.replica });
          void loop.stop();
          executor.halt();
          stoppedWith('lost the leadership');
        }
      },
    });
    const el = elector;
    // Released only after the loop and the executor stopped (cleanups run last-in first-out): a follower
    // that takes the lease must not meet a migration this replica is still starting.
    cleanups.splice(1, 0, () => el.stop());
    el.start();

    const api = await buildApi({
      store, control: loop.control, events, metrics, log, openReads: cfg.openReads, dashboardDir: o.dashboardDir ?? null,
      settingsDefaults: defaults,
    });
    cleanups.push(() => api.close());
    await api.listen({ host: cfg.listen.host, port: cfg.listen.port });
    const addr = api.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : cfg.listen.port;
    const url = `http://${cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host}:${port}`;
    log.info('manager ready', { url, listen: formatHostPort({ host: cfg.listen.host, port }), store: store.location });

    return {
      url, replica: cfg.replica, store, events, loop, executor, api, tokens, flows, metrics,
      isLeader: leading,
      untilLeader: (timeoutMs) => new Promise<void>((resolve, reject) => {
        if (leading()) {
          resolve();
          return;
        }
        const t = setTimeout(() => reject(new AppError('NOT_LEADER', `${cfg.replica} did not become the leader within ${timeoutMs} ms`)), timeoutMs);
        leaderWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      }),
      close: closeAll,
      stopped,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** QEMU on this machine: each host's work directory is its inventory endpoint (or one under the data dir). */
async function localQemuDriver(store: Store, cfg: ManagerConfig, log: Logger, clock: Clock): Promise<MigrationDriver> {
  const hosts = new Map((await listAll<HostRecord>(store, 'hosts')).map((d) => [d.value.id, d.value]));
  return createQemuDriver({
    hostFor: (p) => {
      const h = p.hostId === null ? [...hosts.values()].find((x) => x.siteId === p.siteId) : hosts.get(p.hostId);
      if (h === undefined) throw new AppError('NO_HOST', `No host ${String(p.hostId)} at site ${p.siteId} in the inventory`);
      return {
        placement: { siteId: h.siteId, hostId: h.id }, netns: null, migrationAddress: '127.0.0.1',
        workDir: h.endpoint ?? join(cfg.dataDir, 'hosts', h.id),
      };
    },
    tls: null, clock, log: log.child({ component: 'qemu' }),
  });
}

async function latencySource(cfg: ManagerConfig, sites: readonly SiteRecord[], lab: LabState | null, clock: Clock, log: Logger): Promise<LatencySource & { close(): Promise<void> }> {
  const configured = (u: UserRecord): Record<string, number> =>
    Object.fromEntries(Object.entries(u.rtt).filter(([, r]) => r.source === 'config').map(([s, r]) => [s, r.rttMs]));
  const countryDb = await openCountryDb().catch((e: unknown) => {
    log.warn('no GeoIP database: the country fallback only uses configured countries', { error: message(e) });
    return null;
  });
  const off: SiteProber = {
    probe: (host, port) => Promise.reject(new AppError('PROBE_OFF', `Not probing ${host}:${port}: probing is off (--probe off)`)),
    close: () => Promise.resolve(),
  };
  const service: LatencyService = createLatencyService({
    sites: sites.map((s) => ({ id: s.id, country: s.country, region: s.region })),
    probeFrom: (siteId): SiteProber => {
      if (!cfg.probe) return off;
      const s = lab?.sites.find((x) => x.id === siteId);
      if (lab !== null && s !== undefined) return createNamespaceProber({ ns: s.ns, log, localAddress: s.address });
      return createLocalProber();
    },
    geo: createGeo({ countryDb, data: latencyData(DEFAULT_DATA_DIR) }),
    clock, log,
    params: { probeTimeoutMs: cfg.probeTimeoutMs, defaultPort: cfg.probePort },
  });
  const svc = service;
  // Probes run at most every probeIntervalS (rounds may come faster); a user not probed yet is probed at once.
  let lastProbeAtMs = Number.NEGATIVE_INFINITY;
  const lastRows = new Map<string, UserLatency>();
  return {
    async probeRound(users) {
      const nowMs = clock.nowMs();
      const due = nowMs - lastProbeAtMs >= cfg.probeIntervalS * 1000;
      const toProbe = due ? users : users.filter((u) => !lastRows.has(u.id));
      const out = new Map<string, UserLatency>();
      if (toProbe.length > 0) {
        const round = await svc.probeRound(toProbe.map((u) => ({
          userId: u.id, endpoint: u.endpoint, ...(u.country === null ? {} : { country: u.country }), configuredRttMs: configured(u),
        })));
        if (due) lastProbeAtMs = nowMs;
        for (const r of round.rows) {
          const row: UserLatency = { rtt: r.rtt, networkChanged: r.networkChanged, country: r.country };
          out.set(r.userId, row);
          lastRows.set(r.userId, { ...row, networkChanged: false });
        }
      }
      for (const u of users) {
        const cached = lastRows.get(u.id);
        if (!out.has(u.id) && cached !== undefined) out.set(u.id, cached);
      }
      if (due) {
        const present = new Set<string>(users.map((u) => u.id));
        for (const id of [...lastRows.keys()]) if (!present.has(id)) lastRows.delete(id);
      }
      return out;
    },
    close: () => svc.close(),
  };
}

