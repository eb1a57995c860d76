// The MigrationDriver for QEMU: live migration over QMP between hosts at different sites, with the disk
// mirrored to an NBD export at the destination when the sites share no storage, TLS between sites,
// settings chosen for the link (tuning.ts), stall handling per policy, and an abort that always leaves the
// VM running at the source. QEMU processes are daemonized and described by a record file next to them, so
// a restarted manager can inspect, finish or roll back what a dead one started.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Clock } from '../core/clock.js';
import { AppError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type {
  InstanceState, MigrationDriver, MigrationHandle, MigrationOutcome, MigrationPhase, MigrationProgress,
  MigrationRequest, Placement, Presence, SettingChoice, StallAction,
} from './driver.js';
import { findQemu, isAlive, killQemu, launchQemu, type QemuVmSpec } from './qemu/process.js';
import { QmpClient } from './qmp/client.js';
import { QemuMonitor, nbdBlockdev, type MigrationInfo, type RunState } from './qmp/commands.js';
import type { SiteCredentials } from './tls.js';
import { chooseSettings, raisedDowntimeMs, type MigrationSettings } from './tuning.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** A host QEMU runs on: where its files live, its network namespace, and the address other sites reach. */
export interface QemuHost {
  readonly placement: Placement;
  /** Run QEMU in this network namespace (the lab's site namespaces); null: the caller's. */
  readonly netns: string | null;
  /** The address this host's QEMU listens on for incoming migrations and NBD, reachable from other sites. */
  readonly migrationAddress: string;
  /** Holds each VM's QMP socket, pid file, console log, disk and record (keep it short: socket paths ≤ 107 bytes). */
  readonly workDir: string;
}

export interface QemuDriverOptions {
  hostFor(p: Placement): QemuHost;
  /** Host-side set-up before QEMU starts there, e.g. the VM's tap on the site's bridge. */
  prepareHost?(host: QemuHost, spec: QemuVmSpec): Promise<void>;
  /** Undo prepareHost once the VM has left the host. */
  releaseHost?(host: QemuHost, spec: QemuVmSpec): Promise<void>;
  /** Per-site TLS credentials; null runs the streams in the clear (only on a trusted network). */
  tls: ((siteId: string) => SiteCredentials) | null;
  clock: Clock;
  log: Logger;
  /** How often query-migrate is read (default 250 ms). */
  pollMs?: number;
  /** Cores the source host can spare for compression (default: 1). */
  cpuFreeCores?: () => number;
  /** Base TCP port for migration and NBD listeners (default 49152); each job takes two from a hashed slot. */
  basePort?: number;
  /**
   * Called the moment the destination runs, before the source is released: where the proxy's path is re-pointed,
   * so that the guest's first packets from its new site already find it. Not awaited; a throw is only logged.
   */
  onActivated?(info: { vm: VmId; jobId: string; to: Placement }): void | Promise<void>;
  /** No bytes crossing the link for this long (outside post-copy) means it is cut: fail and roll back (default 20 s). */
  noTrafficTimeoutMs?: number;
  /**
   * Called at switch-over with both copies paused (the source stopped, the destination not yet started): a
   * check that throws rolls the move back to the source, which has not diverged yet. Tests compare disks here.
   */
  verifySwitchOver?(ctx: { vm: VmId; source: QemuVmSpec; destination: QemuVmSpec }): Promise<void>;
}

/** What the driver records beside a running QEMU, so a restarted manager finds it again. */
interface InstanceRecord {
  readonly vm: string;
  readonly spec: QemuVmSpec;
  readonly pid: number;
  /** 'active': the VM's one live copy; 'incoming': a destination a migration (jobId) is filling. */
  readonly role: 'active' | 'incoming';
  readonly jobId: string | null;
}

export interface QemuDriver extends MigrationDriver {
  /** Starts a VM at a placement (the lab and tests; production VMs come from the cloud's own tooling). */
  launchVm(spec: Omit<QemuVmSpec, 'qmpPath' | 'serialLogPath' | 'netns'>, at: Placement): Promise<QemuVmSpec>;
  /** The spec of the VM's running copy at a placement, if any. */
  instanceAt(vm: VmId, at: Placement): QemuVmSpec | null;
  /** Stops and forgets a VM's copy at a placement (its disk is kept unless `removeDisk`). */
  destroyVm(vm: VmId, at: Placement, opts?: { removeDisk?: boolean }): Promise<void>;
  /**
   * Lets go of every migration in flight without touching QEMU (a manager shutting down, or a test standing in
   * for a crash): their handles settle as failed, and a restarted manager reconciles them with inspect().
   */
  detach(): Promise<void>;
}

class DetachedError extends Error {}

function recordPath(host: QemuHost, vm: string): string {
  return join(host.workDir, `${vm}.vm.json`);
}

function readRecord(host: QemuHost, vm: string): InstanceRecord | null {
  const p = recordPath(host, vm);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as InstanceRecord;
  } catch (e) {
    throw new AppError('QEMU_RECORD_CORRUPT', `Cannot read the record of ${vm} at ${p}: ${(e as Error).message}`, { cause: e });
  }
}

async function writeRecord(host: QemuHost, rec: InstanceRecord): Promise<void> {
  const p = recordPath(host, rec.vm);
  await writeFile(`${p}.tmp`, JSON.stringify(rec, null, 2));
  await rename(`${p}.tmp`, p);
}

/** The same VM's files placed on another host. */
/**
 * QEMU serves one client per monitor: the driver holds the main one while it migrates, so every VM gets a
 * second monitor for observers (inspect, lab status), which never blocks behind a running migration.
 */
function observerQmpPath(spec: { qmpPath: string }): string {
  return `${spec.qmpPath}i`;
}

function withObserverMonitor(extra: readonly string[] | undefined, qmpPath: string): string[] {
  const out: string[] = [];
  const list = extra ?? [];
  for (let i = 0; i < list.length; i++) {
    const a = list[i] ?? '';
    const v = list[i + 1] ?? '';
    if ((a === '-chardev' && v.startsWith('socket,id=qmpobs,')) || (a === '-mon' && v.startsWith('chardev=qmpobs,'))) {
      i++;
      continue;
    }
    out.push(a);
  }
  out.push('-chardev', `socket,id=qmpobs,path=${observerQmpPath({ qmpPath }).replaceAll(',', ',,')},server=on,wait=off`, '-mon', 'chardev=qmpobs,mode=control');
  return out;
}

function specOn(host: QemuHost, spec: Omit<QemuVmSpec, 'qmpPath' | 'serialLogPath' | 'netns'>, opts: { sharedDisk?: boolean } = {}): QemuVmSpec {
  const { disk } = spec;
  const qmpPath = join(host.workDir, `${spec.name}.qmp`);
  const base: QemuVmSpec = {
    ...spec,
    extraArgs: withObserverMonitor(spec.extraArgs, qmpPath),
    qmpPath,
    serialLogPath: join(host.workDir, `${spec.name}.console.log`),
    ...(host.netns === null ? {} : { netns: host.netns }),
  };
  // A shared disk stays where both sites see it; a mirrored one gets its own copy on the host.
  if (disk === undefined || opts.sharedDisk === true) return base;
  return { ...base, disk: { ...disk, path: join(host.workDir, `${spec.name}.${disk.format}`) } };
}

async function monitorOf(spec: QemuVmSpec, log: Logger, which: 'main' | 'observer' = 'main'): Promise<{ client: QmpClient; mon: QemuMonitor }> {
  const path = which === 'main' ? spec.qmpPath : observerQmpPath(spec);
  const client = await QmpClient.connect({ path }, { connectTimeoutMs: 5000, defaultTimeoutMs: 10_000, retryRefused: true, log });
  return { client, mon: new QemuMonitor(client, `${spec.name} (${path})`) };
}

function stateOf(status: RunState): InstanceState {
  switch (status) {
    case 'running': return 'running';
    case 'inmigrate': return 'incoming';
    case 'postmigrate': return 'postmigrate';
    default: return 'paused';
  }
}

function portsFor(jobId: string, base: number): { migration: number; nbd: number } {
  let h = 0x811c9dc5;
  for (let i = 0; i < jobId.length; i++) h = Math.imul(h ^ jobId.charCodeAt(i), 0x01000193) >>> 0;
  const slot = h % 4000;
  return { migration: base + slot * 2, nbd: base + slot * 2 + 1 };
}

/** A broadcast of progress snapshots to any number of async iterators; the last one is replayed to late subscribers. */
class ProgressFeed {
  private readonly subscribers = new Set<{ queue: MigrationProgress[]; wake: (() => void) | null }>();
  private last: MigrationProgress | null = null;
  private ended = false;

  push(p: MigrationProgress): void {
    this.last = p;
    for (const s of this.subscribers) {
      // A slow reader loses the oldest snapshots, never the newest (the terminal one must arrive).
      if (s.queue.length >= 1000) s.queue.shift();
      s.queue.push(p);
      s.wake?.();
    }
  }

  end(): void {
    this.ended = true;
    for (const s of this.subscribers) s.wake?.();
  }

  async *iterate(): AsyncGenerator<MigrationProgress> {
    const sub: { queue: MigrationProgress[]; wake: (() => void) | null } = { queue: this.last === null ? [] : [this.last], wake: null };
    this.subscribers.add(sub);
    try {
      for (;;) {
        const next = sub.queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((r) => { sub.wake = r; });
        sub.wake = null;
      }
    } finally {
      this.subscribers.delete(sub);
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function createQemuDriver(opts: QemuDriverOptions): QemuDriver {
  const log = opts.log;
  const pollMs = opts.pollMs ?? 250;
  const basePort = opts.basePort ?? 49152;
  const active = new Map<string, MigrationHandle>();
  const detachers = new Set<() => void>();
  const noTrafficTimeoutMs = opts.noTrafficTimeoutMs ?? 20_000;

  async function launchOn(host: QemuHost, spec: QemuVmSpec, role: InstanceRecord['role'], jobId: string | null): Promise<number> {
    await opts.prepareHost?.(host, spec);
    let proc;
    try {
      proc = await launchQemu(spec, { workDir: host.workDir, log });
    } catch (e) {
      await opts.releaseHost?.(host, spec).catch(() => undefined);
      throw e;
    }
    await writeRecord(host, { vm: spec.name, spec, pid: proc.pid, role, jobId });
    return proc.pid;
  }

  /** Stops a copy and removes its files; `removeDisk` for a destination that never took over or a released source. */
  async function destroyOn(host: QemuHost, vm: string, removeDisk: boolean): Promise<void> {
    const rec = readRecord(host, vm);
    const pidfile = join(host.workDir, `${vm}.pid`);
    const pid = rec?.pid ?? (await findQemu(pidfile));
    if (pid !== undefined && isAlive(pid)) await killQemu(pid, { log });
    const spec = rec?.spec;
    await rm(pidfile, { force: true });
    if (spec !== undefined) {
      await rm(spec.qmpPath, { force: true });
      await rm(observerQmpPath(spec), { force: true });
      if (removeDisk && spec.disk !== undefined) await rm(spec.disk.path, { force: true });
      await opts.releaseHost?.(host, spec);
    }
    await rm(recordPath(host, vm), { force: true });
  }

  async function presenceOf(host: QemuHost, vm: string): Promise<{ state: InstanceState; migration: MigrationInfo | null }> {
    const rec = readRecord(host, vm);
    if (rec === null || !isAlive(rec.pid)) return { state: 'absent', migration: null };
    let c: { client: QmpClient; mon: QemuMonitor } | null = null;
    try {
      c = await monitorOf(rec.spec, log, 'observer');
      const st = await c.mon.queryStatus();
      const mig = await c.mon.queryMigrate().catch(() => null);
      return { state: stateOf(st.status), migration: mig };
    } catch (e) {
      // Alive but its monitor does not answer: treat as paused so nobody counts it as a running copy.
      log.warn('qemu monitor not answering', { vm, pid: rec.pid, error: (e as Error).message });
      return { state: 'paused', migration: null };
    } finally {
      await c?.client.close();
    }
  }

  /** Brings the source back to running and cancels whatever migration or mirror it has in flight. */
  async function restoreSource(src: QemuHost, vm: string, jobId: string, open: QemuMonitor | null = null): Promise<void> {
    const rec = readRecord(src, vm);
    if (rec === null || !isAlive(rec.pid)) {
      throw new AppError('QEMU_SOURCE_LOST', `Cannot restore ${vm} at ${src.placement.siteId}: its QEMU is not running (record ${rec === null ? 'missing' : `pid ${rec.pid} dead`})`);
    }
    // QEMU serves one client per monitor socket: reuse the caller's connection when it has one.
    const own = open === null ? await monitorOf(rec.spec, log) : null;
    const mon = open ?? own?.mon;
    if (mon === undefined) throw new AppError('QEMU_SOURCE_LOST', `Cannot reach the monitor of ${vm} at ${src.placement.siteId}`);
    try {
      const mig = await mon.queryMigrate();
      if (mig.status !== undefined && mig.status.startsWith('postcopy')) {
        throw new AppError('MIGRATION_IN_POSTCOPY', `Cannot restore ${vm} at ${src.placement.siteId}: the migration is in ${mig.status}, so the newest memory is at the destination`);
      }
      if (mig.status === 'active' || mig.status === 'setup' || mig.status === 'pre-switchover' || mig.status === 'device') {
        await mon.migrateCancel();
        for (let i = 0; i < 100; i++) {
          const s = (await mon.queryMigrate()).status;
          if (s !== 'active' && s !== 'setup' && s !== 'cancelling' && s !== 'device' && s !== 'pre-switchover') break;
          await sleep(100);
        }
      }
      for (const job of await mon.queryBlockJobs()) {
        if (job.device !== mirrorJobId(jobId)) continue;
        await mon.blockJobCancel(job.device, { force: true }).catch(() => undefined);
        for (let i = 0; i < 100 && (await mon.queryBlockJobs()).some((j) => j.device === job.device); i++) await sleep(100);
      }
      await mon.blockdevDel(mirrorNode(jobId)).catch(() => undefined);
      await mon.setMigrationParameters({ 'tls-creds': '', 'tls-hostname': '' }).catch(() => undefined);
      await mon.objectDel(tlsId(jobId)).catch(() => undefined);
      const st = await mon.queryStatus();
      if (!st.running) await mon.cont();
    } finally {
      await own?.client.close();
    }
  }

  /** Makes the destination the VM's live copy: its NBD export closed, CPUs running, its record 'active'. */
  async function activateDestination(dst: QemuHost, vm: string): Promise<void> {
    const rec = readRecord(dst, vm);
    if (rec === null || !isAlive(rec.pid)) {
      throw new AppError('QEMU_DESTINATION_LOST', `Cannot activate ${vm} at ${dst.placement.siteId}: its QEMU is not running`);
    }
    const { client, mon } = await monitorOf(rec.spec, log);
    try {
      if (rec.spec.disk !== undefined) {
        await mon.blockExportDel(exportId(rec.jobId ?? ''), { mode: 'hard' }).catch(() => undefined);
        await mon.nbdServerStop().catch(() => undefined);
      }
      // The source reports 'completed' once it has sent the last bytes; the destination may still be loading
      // them. `cont` during 'inmigrate' would only arm autostart, so wait for the load to finish first.
      let st = await mon.queryStatus();
      for (let i = 0; i < 600 && st.status === 'inmigrate'; i++) {
        await sleep(50);
        st = await mon.queryStatus();
      }
      if (st.status === 'inmigrate') {
        throw new AppError('MIGRATION_DESTINATION_STUCK', `Cannot activate ${vm} at ${dst.placement.siteId}: it is still loading the incoming migration after 30 s`);
      }
      if (!st.running) await mon.cont();
    } finally {
      await client.close();
    }
    await writeRecord(dst, { ...rec, role: 'active', jobId: null });
  }

  function start(req: MigrationRequest): Promise<MigrationHandle> {
    const key = `${req.vm}`;
    if (active.has(key)) {
      return Promise.reject(new AppError('MIGRATION_IN_PROGRESS', `Cannot migrate ${req.vm}: job ${active.get(key)?.jobId ?? '?'} is already moving it`));
    }
    const src = opts.hostFor(req.from);
    const dst = opts.hostFor(req.to);
    const rec = readRecord(src, req.vm);
    if (rec === null || !isAlive(rec.pid) || rec.role !== 'active') {
      return Promise.reject(new AppError('MIGRATION_NO_SOURCE', `Cannot migrate ${req.vm} from ${req.from.siteId}: no running copy there (record ${rec === null ? 'missing' : `${rec.role}, pid ${rec.pid}${isAlive(rec.pid) ? '' : ' dead'}`})`));
    }
    if (readRecord(dst, req.vm) !== null) {
      return Promise.reject(new AppError('MIGRATION_DESTINATION_BUSY', `Cannot migrate ${req.vm} to ${req.to.siteId}: a copy is already recorded there`));
    }
    if (req.storage === 'mirror' && rec.spec.disk === undefined) {
      return Promise.reject(new AppError('MIGRATION_NO_DISK', `Cannot mirror the disk of ${req.vm}: it has none (use storage "shared")`));
    }
    const handle = runMigration(req, src, dst, rec);
    active.set(key, handle);
    void handle.done.finally(() => active.delete(key));
    return Promise.resolve(handle);
  }

  function runMigration(req: MigrationRequest, src: QemuHost, dst: QemuHost, srcRec: InstanceRecord): MigrationHandle {
    const feed = new ProgressFeed();
    const startedMs = opts.clock.nowMs();
    const tuned = chooseSettings(req.link, req.shape, req.policy, { cpuFreeCores: opts.cpuFreeCores?.() ?? 1 });
    const choices: SettingChoice[] = [...tuned.choices];
    const capBytesPerS = (mbps: number): number => Math.max(1, Math.floor((mbps * 1e6) / 8));
    let settings = tuned;
    if (req.bandwidthCapMbps !== undefined && capBytesPerS(req.bandwidthCapMbps) < tuned.maxBandwidthBytesPerS) {
      settings = { ...tuned, maxBandwidthBytesPerS: capBytesPerS(req.bandwidthCapMbps) };
      choices.push({ name: 'max-bandwidth', value: settings.maxBandwidthBytesPerS, reason: `admission's share of the link for this migration: ${req.bandwidthCapMbps} Mbit/s` });
    }
    let liveMon: QemuMonitor | null = null;
    const stallTaken: StallAction[] = [];
    let phase: MigrationPhase = 'preparing';
    const currentPhase = (): MigrationPhase => phase;
    let abortReason: string | null = null;
    let abortWake: (() => void) | null = null;
    let downtimeLimitMs = settings.downtimeLimitMs;
    let lastTransferred = 0;
    const ports = portsFor(req.jobId, basePort);
    const mirror = req.storage === 'mirror';
    const diskTotal = { bytes: 0 };

    const snapshot = (p: Partial<MigrationProgress>): void => {
      const now = opts.clock.nowMs();
      feed.push({
        jobId: req.jobId, phase, atMs: now, elapsedMs: now - startedMs,
        transferredBytes: lastTransferred, remainingBytes: 0, totalBytes: 0, diskRemainingBytes: 0,
        dirtyRateBytesPerS: 0, throughputMbps: 0, expectedDowntimeMs: null, etaS: null,
        downtimeLimitMs, stallActions: [...stallTaken], ...p,
      });
    };

    let detached = false;
    const detach = (): void => {
      detached = true;
      abortWake?.();
    };
    detachers.add(detach);
    const aborted = (): boolean => {
      if (detached) throw new DetachedError();
      return abortReason !== null;
    };
    const waitOrAbort = (ms: number): Promise<void> => new Promise((r) => {
      const t = setTimeout(() => { abortWake = null; r(); }, ms);
      abortWake = () => { clearTimeout(t); abortWake = null; r(); };
    });

    const done = (async (): Promise<MigrationOutcome> => {
      let s: { client: QmpClient; mon: QemuMonitor } | null = null;
      let d: { client: QmpClient; mon: QemuMonitor } | null = null;
      let destStarted = false;
      // Always -S: the destination never runs until the driver has decided the move is done, so a roll-back
      // before that point can never leave two running copies.
      const dstSpec = specOn(dst, { ...srcRec.spec, incoming: 'defer', startPaused: true }, { sharedDisk: !mirror });
      let committed = false;
      const outcome = (status: MigrationOutcome['status'], reason: string | null, downtimeMs: number | null): MigrationOutcome => ({
        jobId: req.jobId, status, runningAt: status === 'completed' ? req.to : req.from,
        durationMs: opts.clock.nowMs() - startedMs, downtimeMs, transferredBytes: lastTransferred,
        settings: choices, stallActions: [...stallTaken], reason,
      });
      const rollBackLive = async (status: 'aborted' | 'failed', reason: string): Promise<MigrationOutcome> => {
        phase = 'aborting';
        snapshot({});
        // The destination goes first: it may hold the disk's lock, and it has never run (-S).
        if (d !== null) await d.client.close().catch(() => undefined);
        d = null;
        if (destStarted) await destroyOn(dst, req.vm, mirror).catch((e: Error) => log.warn('destination cleanup failed', { vm: req.vm, error: e.message }));
        try {
          await restoreSource(src, req.vm, req.jobId, s !== null && s.client.isConnected ? s.mon : null);
        } catch (e) {
          log.error('restoring the source failed', { vm: req.vm, job: req.jobId, error: (e as Error).message });
          reason = `${reason}; then restoring the source failed: ${(e as Error).message}`;
          status = 'failed';
        }
        phase = status;
        snapshot({});
        return outcome(status, reason, null);
      };

      try {
        s = await monitorOf(srcRec.spec, log);
        liveMon = s.mon;
        const st = await s.mon.queryStatus();
        if (st.status !== 'running') throw new AppError('MIGRATION_SOURCE_NOT_RUNNING', `${req.vm} at ${req.from.siteId} is ${st.status}, not running`);
        snapshot({});

        // Destination: same machine, waiting for the stream (paused when its disk is being filled over NBD).
        if (mirror && dstSpec.disk !== undefined && srcRec.spec.disk !== undefined) {
          const info = await run('qemu-img', ['info', '--force-share', '--output=json', srcRec.spec.disk.path]);
          const virtualSize = (JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'];
          diskTotal.bytes = virtualSize;
          await mkdir(dst.workDir, { recursive: true });
          await run('qemu-img', ['create', '-q', '-f', dstSpec.disk.format, dstSpec.disk.path, String(virtualSize)]);
        }
        destStarted = true;
        await launchOn(dst, dstSpec, 'incoming', req.jobId);
        d = await monitorOf(dstSpec, log);
        if (aborted()) return await rollBackLive('aborted', abortReason ?? 'aborted');

        await configure(s.mon, d.mon, settings, req);
        if (mirror) {
          phase = 'mirroring-disk';
          snapshot({});
          const r = await mirrorDisk(s.mon, d.mon, dstSpec);
          if (r !== null) return await rollBackLive(r.status, r.reason);
        }

        phase = 'precopy';
        await d.mon.migrateIncoming(`tcp:${dst.migrationAddress}:${ports.migration}`);
        await s.mon.migrate(`tcp:${dst.migrationAddress}:${ports.migration}`);
        const r = await followMigration(s.mon);
        if (r.status !== 'completed') return await rollBackLive(r.status, r.reason);

        phase = 'switching-over';
        snapshot({});
        if (mirror) {
          // A READY mirror cancelled after the guest stopped completes with the target in sync; its
          // BLOCK_JOB_COMPLETED event says whether it did (offset = len, no error).
          const cursor = s.client.eventCursor();
          await s.mon.blockJobCancel(mirrorJobId(req.jobId));
          const ev = await s.client.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data['device'] === mirrorJobId(req.jobId), 60_000, { since: cursor });
          const evError = ev.data['error'];
          if (typeof evError === 'string' || ev.data['offset'] !== ev.data['len']) {
            return await rollBackLive('failed', `the disk mirror did not finish cleanly (${typeof evError === 'string' ? evError : `${String(ev.data['offset'])} of ${String(ev.data['len'])} bytes`}), so the VM stays at ${req.from.siteId}`);
          }
        }
        if (aborted()) return await rollBackLive('aborted', abortReason ?? 'aborted');
        if (opts.verifySwitchOver !== undefined) {
          try {
            await opts.verifySwitchOver({ vm: req.vm, source: srcRec.spec, destination: dstSpec });
          } catch (e) {
            return await rollBackLive('failed', `the switch-over check failed, so the VM stays at ${req.from.siteId}: ${(e as Error).message}`);
          }
        }
        await d.client.close();
        d = null;
        // From here the destination may run: never roll back past this point.
        committed = true;
        await activateDestination(dst, req.vm);
        try {
          void Promise.resolve(opts.onActivated?.({ vm: req.vm, jobId: req.jobId, to: req.to })).catch((e: Error) => log.warn('onActivated failed', { vm: req.vm, error: e.message }));
        } catch (e) {
          log.warn('onActivated failed', { vm: req.vm, error: (e as Error).message });
        }
        const noInfo: MigrationInfo = {};
        let info: MigrationInfo = await s.mon.queryMigrate().catch(() => noInfo);
        for (let i = 0; i < 20 && (info.downtime ?? 0) === 0; i++) {
          await sleep(20);
          info = await s.mon.queryMigrate().catch(() => noInfo);
        }
        liveMon = null;
        await s.client.close();
        s = null;
        // The source copy is stale from here on: release it (its disk too when the destination has its own).
        await destroyOn(src, req.vm, mirror).catch((e: Error) => log.error('releasing the source failed; the VM runs at the destination', { vm: req.vm, job: req.jobId, error: e.message }));
        phase = 'completed';
        snapshot({ remainingBytes: 0, etaS: 0 });
        return outcome('completed', null, info.downtime ?? null);
      } catch (e) {
        const err = e as Error;
        if (detached || e instanceof DetachedError) {
          log.warn('migration detached; QEMU carries on and a restarted manager reconciles it', { vm: req.vm, job: req.jobId, phase });
          return outcome('failed', `the driver let go of this migration in phase ${phase} (manager stopping); QEMU carries on and the job is reconciled on restart`, null);
        }
        log.error('migration failed', { vm: req.vm, job: req.jobId, phase, error: err.message });
        if (committed) {
          // The destination may already run: find out rather than roll back onto the stale source.
          const there = await presenceOf(dst, req.vm).catch(() => ({ state: 'absent' as InstanceState, migration: null }));
          if (there.state === 'running') {
            phase = 'completed';
            snapshot({ remainingBytes: 0, etaS: 0 });
            return { ...outcome('completed', `switched over, then: ${err.message}`, null) };
          }
        }
        if (currentPhase() === 'postcopy') {
          phase = 'failed';
          snapshot({});
          return outcome('failed', `post-copy failed, the guest's memory is split between sites: ${err.message}`, null);
        }
        return await rollBackLive(aborted() ? 'aborted' : 'failed', aborted() ? (abortReason ?? err.message) : `${err.message} (in phase ${phase})`);
      } finally {
        detachers.delete(detach);
        await s?.client.close().catch(() => undefined);
        await d?.client.close().catch(() => undefined);
        feed.end();
      }
    })();

    async function configure(smon: QemuMonitor, dmon: QemuMonitor, st: MigrationSettings, r: MigrationRequest): Promise<void> {
      const caps = {
        multifd: st.multifd, xbzrle: st.xbzrle, 'auto-converge': st.autoConverge, 'postcopy-ram': st.postCopyCapable,
      };
      await smon.setMigrationCapabilities(caps);
      // multifd and post-copy must be set on both sides (the note's trap: a mismatch kills the destination).
      await dmon.setMigrationCapabilities({ multifd: st.multifd, 'postcopy-ram': st.postCopyCapable });
      const common = st.multifd ? { 'multifd-channels': st.multifdChannels, 'multifd-compression': st.compression } as const : {};
      const tls = r.policy.tls && opts.tls !== null;
      if (tls && opts.tls !== null) {
        const sc = opts.tls(r.from.siteId);
        const dc = opts.tls(r.to.siteId);
        await smon.addTlsCredsX509({ id: tlsId(r.jobId), dir: sc.dir, endpoint: 'client', 'verify-peer': true });
        await dmon.addTlsCredsX509({ id: tlsId(r.jobId), dir: dc.dir, endpoint: 'server', 'verify-peer': true });
        await smon.setMigrationParameters({ 'tls-creds': tlsId(r.jobId), 'tls-hostname': dc.hostname });
        await dmon.setMigrationParameters({ 'tls-creds': tlsId(r.jobId) });
        choices.push({ name: 'tls', value: true, reason: `migration and NBD streams encrypted and both ends verified (server ${dc.hostname})` });
      } else {
        await smon.setMigrationParameters({ 'tls-creds': '', 'tls-hostname': '' });
        choices.push({ name: 'tls', value: false, reason: r.policy.tls ? 'no credentials configured for the sites' : 'the policy runs these streams in the clear' });
      }
      await smon.setMigrationParameters({
        'max-bandwidth': st.maxBandwidthBytesPerS,
        // After a switch to post-copy QEMU uses this cap instead (0 would be unlimited).
        'max-postcopy-bandwidth': st.maxBandwidthBytesPerS,
        'downtime-limit': st.downtimeLimitMs,
        ...(st.xbzrle ? { 'xbzrle-cache-size': st.xbzrleCacheBytes } : {}),
        ...(st.compression === 'zstd' ? { 'multifd-zstd-level': st.compressionLevel } : {}),
        ...common,
      });
      if (st.multifd) await dmon.setMigrationParameters({ ...common });
    }

    /** Copies the disk to the destination's NBD export until the mirror is READY (in sync). */
    async function mirrorDisk(smon: QemuMonitor, dmon: QemuMonitor, dstSpec: QemuVmSpec): Promise<{ status: 'aborted' | 'failed'; reason: string } | null> {
      const disk = dstSpec.disk;
      const srcDisk = srcRec.spec.disk;
      if (disk === undefined || srcDisk === undefined) return null;
      const tls = req.policy.tls && opts.tls !== null;
      await dmon.nbdServerStart({
        addr: { type: 'inet', data: { host: dst.migrationAddress, port: String(ports.nbd) } },
        ...(tls ? { 'tls-creds': tlsId(req.jobId) } : {}),
      });
      await dmon.blockExportAddNbd({ id: exportId(req.jobId), 'node-name': disk.nodeName, name: disk.nodeName, writable: true });
      await smon.blockdevAdd(nbdBlockdev({
        nodeName: mirrorNode(req.jobId),
        server: { type: 'inet', host: dst.migrationAddress, port: String(ports.nbd) },
        exportName: disk.nodeName,
        ...(tls && opts.tls !== null ? { tlsCreds: tlsId(req.jobId), tlsHostname: opts.tls(req.to.siteId).hostname } : {}),
      }));
      await smon.blockdevMirror({
        'job-id': mirrorJobId(req.jobId), device: srcDisk.nodeName, target: mirrorNode(req.jobId), sync: 'full',
        speed: settings.maxBandwidthBytesPerS, 'auto-dismiss': true,
      });
      const stall = stallWatch();
      const quiet = quietWatch();
      for (;;) {
        if (aborted()) return { status: 'aborted', reason: abortReason ?? 'aborted' };
        const jobs = await smon.queryBlockJobs();
        const job = jobs.find((j) => j.device === mirrorJobId(req.jobId));
        if (job === undefined) return { status: 'failed', reason: `the disk mirror to ${req.to.siteId} ended before it was in sync` };
        if (job['io-status'] !== 'ok' || job.error !== undefined) return { status: 'failed', reason: `the disk mirror to ${req.to.siteId} failed: ${job.error ?? job['io-status']}` };
        diskTotal.bytes = Math.max(diskTotal.bytes, job.len);
        const remaining = job.len - job.offset;
        const elapsedS = (opts.clock.nowMs() - startedMs) / 1000;
        lastTransferred = job.offset;
        const rate = elapsedS > 0 ? job.offset / elapsedS : 0;
        snapshot({
          transferredBytes: job.offset, remainingBytes: remaining + req.shape.memoryMiB * MiB,
          totalBytes: job.len + req.shape.memoryMiB * MiB, diskRemainingBytes: remaining,
          throughputMbps: (rate * 8) / 1e6, etaS: rate > 0 ? (remaining + req.shape.memoryMiB * MiB) / rate : null,
        });
        if (job.ready) return null;
        if (quiet(job.offset)) return { status: 'failed', reason: `no disk bytes reached ${req.to.siteId} for ${noTrafficTimeoutMs} ms: the link looks cut` };
        const action = stall(remaining);
        if (action === 'abort' || action === 'deadline') {
          return { status: 'aborted', reason: action === 'deadline' ? `deadline of ${req.policy.deadlineMs} ms passed while mirroring the disk` : `the disk mirror stalled for ${req.policy.stallTimeoutMs} ms` };
        }
        await waitOrAbort(pollMs);
      }
    }

    /** Returns a function that, fed a byte counter, says whether it has stood still for noTrafficTimeoutMs. */
    function quietWatch(): (counter: number) => boolean {
      let last = -1;
      let since = opts.clock.nowMs();
      return (counter) => {
        const now = opts.clock.nowMs();
        if (counter !== last) {
          last = counter;
          since = now;
          return false;
        }
        return now - since >= noTrafficTimeoutMs;
      };
    }

    /** Returns a function that, fed the remaining bytes, says when a stall (or the deadline) calls for action. */
    function stallWatch(): (remaining: number) => StallAction | 'deadline' | null {
      let best = Infinity;
      let bestAt = opts.clock.nowMs();
      let next = 0;
      return (remaining) => {
        const now = opts.clock.nowMs();
        if (now - startedMs > req.policy.deadlineMs) return 'deadline';
        if (remaining < best * 0.99) {
          best = remaining;
          bestAt = now;
          return null;
        }
        if (now - bestAt < req.policy.stallTimeoutMs) return null;
        bestAt = now;
        best = remaining;
        const list = settings.stallActions;
        const action = list[Math.min(next, list.length - 1)] ?? 'abort';
        next++;
        return action;
      };
    }

    /** Polls query-migrate until the migration ends, applying stall actions and post-copy as planned. */
    async function followMigration(smon: QemuMonitor): Promise<{ status: 'completed' | 'aborted' | 'failed'; reason: string }> {
      const stall = stallWatch();
      const quiet = quietWatch();
      let postcopyStarted = false;
      let lastMs = opts.clock.nowMs();
      let lastBytes = 0;
      for (;;) {
        if (aborted()) {
          if (phase === 'postcopy') {
            log.warn('abort refused during post-copy: the guest already runs at the destination', { vm: req.vm, job: req.jobId });
          } else {
            return { status: 'aborted', reason: abortReason ?? 'aborted' };
          }
        }
        const info = await smon.queryMigrate();
        const status = info.status ?? 'none';
        if (status === 'completed') {
          lastTransferred = diskTotal.bytes + (info.ram?.transferred ?? 0);
          return { status: 'completed', reason: '' };
        }
        if (status === 'failed' || status === 'cancelled') {
          return { status: 'failed', reason: `QEMU reports the migration ${status}${info['error-desc'] === undefined ? '' : `: ${info['error-desc']}`}` };
        }
        if (status === 'postcopy-active') phase = 'postcopy';
        if (status === 'postcopy-paused') throw new AppError('MIGRATION_POSTCOPY_PAUSED', `post-copy of ${req.vm} paused: the link to ${req.to.siteId} broke`);
        const ram = info.ram;
        const now = opts.clock.nowMs();
        if (ram === undefined) {
          // Still in setup (a TLS handshake, a connect over a dead link): the deadline and the quiet timer hold.
          if (now - startedMs > req.policy.deadlineMs) return { status: 'aborted', reason: `deadline of ${req.policy.deadlineMs} ms passed before the migration got going (${status})` };
          if (quiet(0)) return { status: 'failed', reason: `the migration to ${req.to.siteId} moved no bytes for ${noTrafficTimeoutMs} ms (${status}): the link looks cut` };
        } else {
          const transferred = diskTotal.bytes + ram.transferred;
          const dt = (now - lastMs) / 1000;
          const rate = dt > 0 ? Math.max(0, (transferred - lastBytes) / dt) : 0;
          lastMs = now;
          lastBytes = transferred;
          lastTransferred = transferred;
          const dirty = ram['dirty-pages-rate'] * (ram['page-size'] || 4096);
          const net = rate - dirty;
          snapshot({
            transferredBytes: transferred, remainingBytes: ram.remaining, totalBytes: diskTotal.bytes + ram.total,
            dirtyRateBytesPerS: dirty, throughputMbps: ram.mbps, expectedDowntimeMs: info['expected-downtime'] ?? null,
            etaS: net > 0 ? ram.remaining / net : null,
          });
          if (settings.postCopyAfterFirstPass && !postcopyStarted && ram['dirty-sync-count'] >= 2 && status === 'active') {
            postcopyStarted = true;
            phase = 'postcopy';
            await smon.migrateStartPostcopy();
            log.info('switched to post-copy after the first pass', { vm: req.vm, job: req.jobId });
          }
          if (phase !== 'postcopy') {
            if (quiet(ram.transferred)) {
              return { status: 'failed', reason: `no bytes reached ${req.to.siteId} for ${noTrafficTimeoutMs} ms with ${ram.remaining} bytes of memory left: the link looks cut` };
            }
            const action = stall(ram.remaining);
            if (action === 'deadline') return { status: 'aborted', reason: `deadline of ${req.policy.deadlineMs} ms passed with ${ram.remaining} bytes of memory left` };
            if (action !== null) {
              stallTaken.push(action);
              log.warn('migration stalled', { vm: req.vm, job: req.jobId, action, remainingBytes: ram.remaining, downtimeLimitMs });
              if (action === 'abort') return { status: 'aborted', reason: `stalled: no progress for ${req.policy.stallTimeoutMs} ms with ${ram.remaining} bytes left; the policy says abort` };
              if (action === 'post-copy' && !postcopyStarted) {
                postcopyStarted = true;
                phase = 'postcopy';
                await smon.migrateStartPostcopy();
              } else if (action === 'raise-downtime') {
                const raised = raisedDowntimeMs(downtimeLimitMs, req.policy.maxDowntimeCeilingMs);
                if (raised !== null) {
                  downtimeLimitMs = raised;
                  await smon.setMigrationParameters({ 'downtime-limit': raised });
                }
              }
            }
          }
        }
        await waitOrAbort(pollMs);
      }
    }

    let abortPromise: Promise<void> | null = null;
    const handle: MigrationHandle = {
      jobId: req.jobId,
      progress: () => feed.iterate(),
      done,
      abort(reason: string): Promise<void> {
        if (abortPromise !== null) return abortPromise;
        abortReason = reason;
        abortWake?.();
        abortPromise = done.then(() => undefined);
        return abortPromise;
      },
      async setBandwidthCap(capMbps: number): Promise<void> {
        const bytes = Math.min(tuned.maxBandwidthBytesPerS, capBytesPerS(capMbps));
        settings = { ...settings, maxBandwidthBytesPerS: bytes };
        choices.push({ name: 'max-bandwidth', value: bytes, reason: `admission re-split the link: ${capMbps} Mbit/s for this migration` });
        // Applied to the running stream (the mirror keeps its start speed); a finished one has nothing to cap.
        if (liveMon !== null) await liveMon.setMigrationParameters({ 'max-bandwidth': bytes, 'max-postcopy-bandwidth': bytes }).catch((e: Error) => log.warn('could not change the bandwidth cap', { job: req.jobId, error: e.message }));
      },
    };
    return handle;
  }

  async function inspect(req: MigrationRequest): Promise<Presence> {
    const src = await presenceOf(opts.hostFor(req.from), req.vm);
    const dst = await presenceOf(opts.hostFor(req.to), req.vm);
    const dstRec = readRecord(opts.hostFor(req.to), req.vm);
    // A source resumed after a rolled-back switch-over still says 'completed' until its next migrate: only a
    // source that is not running counts.
    const completed = (src.migration?.status === 'completed' && src.state !== 'running') || (src.state === 'absent' && dstRec?.role === 'active');
    return { vm: req.vm, source: src.state, destination: dst.state, migrationCompleted: completed };
  }

  async function finish(req: MigrationRequest): Promise<void> {
    const src = opts.hostFor(req.from);
    const dst = opts.hostFor(req.to);
    const p = await inspect(req);
    if (!p.migrationCompleted) {
      throw new AppError('MIGRATION_NOT_COMPLETE', `Cannot finish the move of ${req.vm}: the switch-over did not complete (source ${p.source}, destination ${p.destination})`);
    }
    if (p.destination === 'absent') {
      throw new AppError('MIGRATION_DESTINATION_LOST', `Cannot finish the move of ${req.vm}: no copy runs at ${req.to.siteId} (source ${p.source}); the source is kept`);
    }
    {
      const srcRec = readRecord(src, req.vm);
      if (srcRec?.spec.disk !== undefined && p.source !== 'absent') {
        // The mirror may still be open at the source: close it so the destination's disk is final.
        const { client, mon } = await monitorOf(srcRec.spec, log);
        try {
          await mon.blockJobCancel(mirrorJobId(req.jobId)).catch(() => undefined);
          for (let i = 0; i < 100 && (await mon.queryBlockJobs()).some((j) => j.device === mirrorJobId(req.jobId)); i++) await sleep(50);
        } finally {
          await client.close();
        }
      }
      await activateDestination(dst, req.vm);
    }
    if (p.source !== 'absent' || readRecord(src, req.vm) !== null) await destroyOn(src, req.vm, req.storage === 'mirror');
  }

  async function rollBack(req: MigrationRequest): Promise<void> {
    const src = opts.hostFor(req.from);
    const dst = opts.hostFor(req.to);
    const p = await inspect(req);
    if (p.migrationCompleted) {
      throw new AppError('MIGRATION_ALREADY_SWITCHED', `Cannot roll back the move of ${req.vm}: the switch-over completed (source ${p.source}, destination ${p.destination}); finish it instead`);
    }
    await restoreSource(src, req.vm, req.jobId);
    await destroyOn(dst, req.vm, req.storage === 'mirror');
  }

  return {
    kind: 'qemu',
    start,
    inspect,
    finish,
    rollBack,
    async launchVm(spec, at) {
      const host = opts.hostFor(at);
      const full = specOn(host, spec);
      if (readRecord(host, full.name) !== null) {
        throw new AppError('QEMU_VM_EXISTS', `Cannot launch ${full.name} at ${at.siteId}: a copy is already recorded in ${host.workDir}`);
      }
      await launchOn(host, full, 'active', null);
      return full;
    },
    instanceAt(vm, at) {
      const rec = readRecord(opts.hostFor(at), vm);
      return rec !== null && isAlive(rec.pid) ? rec.spec : null;
    },
    async destroyVm(vm, at, o) {
      await destroyOn(opts.hostFor(at), vm, o?.removeDisk === true);
    },
    async detach() {
      const pending = [...active.values()].map((h) => h.done);
      for (const d of detachers) d();
      await Promise.all(pending);
    },
  };
}

const tlsId = (jobId: string): string => `tls-${safe(jobId)}`;
const exportId = (jobId: string): string => `exp-${safe(jobId)}`;
const mirrorNode = (jobId: string): string => `mt-${safe(jobId)}`.slice(0, 27);
const mirrorJobId = (jobId: string): string => `mirror-${safe(jobId)}`;
function safe(id: string): string {
  return id.replace(/[^A-Za-z0-9_-]/g, '_');
}
