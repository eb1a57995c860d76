// The lab: a multi-site cloud on this machine. labUp() builds it from a LabConfig — the WAN testbed (one
// namespace per site and per user on a stretched L2 subnet, VXLAN through the user-space relay with each
// link's RTT and rate), a QEMU driver whose hosts are the site namespaces, TLS credentials for the sites,
// the desktop VMs (real TCG guests on their site's bridge), and optionally softflowd on every site's bridge
// exporting flow records — and writes <stateDir>/lab.json, which labStatus(), labDown(), the manager, the
// dashboard and the tests read. Everything is recorded in the run's registry (netns.ts) as it is created,
// so labDown() removes it all, also after the process that built it died.
//
// Names: sites are testbed endpoints s0, s1…, users u0, u1…, so namespaces are `vms-<runId>-s0`: QEMU
// runs inside them with `ip netns exec`, which the launcher limits to 15-character names.
import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { systemClock, type Clock } from '../core/clock.js';
import { AppError, InputError } from '../core/errors.js';
import { hostId as toHostId, siteId as toSiteId, vmId as toVmId } from '../core/ids.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { MigrationPolicy, MigrationRequest, Placement } from '../migration/driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from '../migration/qemu-driver.js';
import { findQemu, isAlive, killQemu, macForName, pidfileFor, waitForConsole, type QemuVmSpec } from '../migration/qemu/process.js';
import { QemuMonitor, QmpClient } from '../migration/qmp/index.js';
import { ensureSiteCredentials, siteTlsName, type SiteCredentials } from '../migration/tls.js';
import type { FlowExportConfig, LabConfig, LabLinkConfig } from './config.js';
import { ensureGuest, guestReadyRegex, type GuestImage } from './guest.js';
import {
  assertRoot, cleanupRun, execIn, isProcessAlive, listNamespaces, listRuns, NetnsRun, processStartTicks, runIp,
  type CleanupReport,
} from './netns.js';
import { ensurePcapImmediateShim, softflowdArgv } from './softflowd.js';
import { connectRelayControl, type LinkDirection, type RelayStats } from './wan/relay.js';
import { BRIDGE, createWanTestbed, type TestbedLinkChange, type WanTestbed } from './wan/testbed.js';

const run = promisify(execFile);

export const DEFAULT_LAB_STATE_DIR = '/run/vmshadow/lab';
export const LAB_STATE_FILE = 'lab.json';
/** A unix socket path holds at most 107 bytes; the longest the lab makes is `<stateDir>/<runId>/<site><host>/<vm>.qmp?`. */
const MAX_STATE_DIR_BYTES = 107 - '/abcdef/15h/abcdefghijk.qmpx'.length;
const FLOW_DEV = 'flow0';

// ---------------------------------------------------------------------------------------------
// The state file

export interface LabStateHost {
  id: string;
  workDir: string;
}

export interface LabStateSite {
  id: string;
  region: string;
  city: string;
  country: string;
  lat: number;
  lon: number;
  /** the testbed's name for it (relay links, namespace role) */
  endpoint: string;
  ns: string;
  /** on the stretched subnet; also where its hosts' QEMUs take incoming migrations */
  address: string;
  cidr: string;
  hosts: LabStateHost[];
  /** softflowd on the site's br0, when flow export is on */
  flowExporter: {
    pid: number;
    startTicks: number | null;
    argv: string[];
    /** the source address of its datagrams (on the link to the root namespace), null when the collector is in the lab */
    exporterAddress: string | null;
    collector: string;
    logFile: string;
  } | null;
}

export interface LabStateUser {
  name: string;
  country: string;
  near: string;
  lat: number;
  lon: number;
  endpoint: string;
  ns: string;
  address: string;
  cidr: string;
  rttMs: Record<string, number>;
}

export interface LabStateVm {
  name: string;
  user: string | null;
  memoryMiB: number;
  vcpu: number;
  diskMiB: number;
  ip: string;
  cidr: string;
  mac: string;
  tap: string;
  /** the in-guest memory tester's working set and rewrite rate (the migration's dirty rate) */
  dirty: { workingSetMiB: number; rateMiBps: number };
  /** where it runs now (updated when a migration through the lab's driver completes) */
  site: string;
  host: string;
  qmpPath: string;
  serialLogPath: string;
  pidFile: string;
}

export interface LabState {
  version: 1;
  runId: string;
  stateDir: string;
  createdAtMs: number;
  /** the process that built it (`lab up` exits once it is up) */
  builtBy: number;
  subnet: string;
  bridge: string;
  relay: { ns: string; pid: number; controlSocket: string };
  tlsDir: string;
  sites: LabStateSite[];
  users: LabStateUser[];
  vms: LabStateVm[];
  links: LabLinkConfig[];
  flowExport: FlowExportConfig | null;
  config: LabConfig;
}

export function labStatePath(stateDir: string): string {
  return join(stateDir, LAB_STATE_FILE);
}

/** The lab's state file, or null when there is none. A file that cannot be read is an AppError. */
export function readLabState(stateDir: string): LabState | null {
  const file = labStatePath(stateDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AppError('LAB_STATE_UNREADABLE', `Cannot read the lab's state ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const s = JSON.parse(text) as LabState;
    if (s.version !== 1 || typeof s.runId !== 'string' || !Array.isArray(s.sites)) throw new Error('not a lab state (version 1)');
    return s;
  } catch (e) {
    throw new AppError('LAB_STATE_UNREADABLE', `Cannot read the lab's state ${file}: ${(e as Error).message} (vmshadow lab down still removes the lab's runs)`, { cause: e });
  }
}

function writeLabState(state: LabState): void {
  const file = labStatePath(state.stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, file);
}

// ---------------------------------------------------------------------------------------------
// Hosts and the driver (shared by the in-process lab and by other processes that read the state file)

export function placementOf(site: string, host: string | null): Placement {
  return { siteId: toSiteId(site), hostId: host === null ? null : toHostId(host) };
}

/** The QEMU host a placement names (hostId null: the site's first host). */
export function labHostFor(state: Pick<LabState, 'sites'>, p: Placement): QemuHost {
  const site = state.sites.find((s) => s.id === p.siteId);
  if (site === undefined) throw new AppError('LAB_NO_SITE', `The lab has no site ${p.siteId} (sites: ${state.sites.map((s) => s.id).join(', ')})`);
  const host = p.hostId === null ? site.hosts[0] : site.hosts.find((h) => h.id === p.hostId);
  if (host === undefined) throw new AppError('LAB_NO_HOST', `Site ${site.id} has no host ${String(p.hostId)} (hosts: ${site.hosts.map((h) => h.id).join(', ')})`);
  return { placement: placementOf(site.id, host.id), netns: site.ns, migrationAddress: site.address, workDir: host.workDir };
}

/** TLS credentials of the lab's sites (already made by labUp; ensureSiteCredentials keeps what exists). */
export function labTls(state: Pick<LabState, 'tlsDir' | 'sites'>): (site: string) => SiteCredentials {
  return (site) => {
    if (!state.sites.some((s) => s.id === site)) throw new AppError('LAB_NO_SITE', `No TLS credentials for ${site}: not a site of the lab`);
    return { dir: join(state.tlsDir, site), hostname: siteTlsName(site) };
  };
}

/**
 * A QEMU driver over the lab's hosts: a VM's tap is created on the site's bridge before its QEMU starts
 * there and removed after it left. Hosts of one site share the site's namespace, so a VM moves between
 * sites, not between two hosts of one site (their taps would collide).
 */
export function createLabDriver(state: Pick<LabState, 'sites' | 'tlsDir'>, opts: { log?: Logger; clock?: Clock; tls?: boolean } = {}): QemuDriver {
  const log = opts.log ?? silentLogger;
  return createQemuDriver({
    hostFor: (p) => labHostFor(state, p),
    async prepareHost(host, spec) {
      const ns = host.netns ?? '';
      for (const nic of spec.nics ?? []) {
        if (!('tap' in nic)) continue;
        const exists = await runIp(['link', 'show', nic.tap], ns).then(() => true, () => false);
        if (exists) {
          throw new AppError('LAB_TAP_BUSY', `Cannot start ${spec.name} on ${host.placement.hostId ?? host.placement.siteId}: tap ${nic.tap} already exists in ${ns} (hosts of one lab site share its namespace, so a VM cannot run twice at one site)`);
        }
        await runIp(['tuntap', 'add', 'dev', nic.tap, 'mode', 'tap'], ns);
        await runIp(['link', 'set', nic.tap, 'master', BRIDGE], ns);
        await runIp(['link', 'set', nic.tap, 'up'], ns);
      }
    },
    async releaseHost(host, spec) {
      for (const nic of spec.nics ?? []) {
        if ('tap' in nic) await runIp(['link', 'del', nic.tap], host.netns ?? '').catch(() => undefined);
      }
    },
    tls: opts.tls === false ? null : labTls(state),
    clock: opts.clock ?? systemClock,
    log,
    cpuFreeCores: () => 0,
  });
}

/** The default migration policy in the lab: the WAN test's, which a TCG guest meets over a 100 Mbit/s link. */
export const LAB_MIGRATION_POLICY: MigrationPolicy = {
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 30_000,
  onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 600_000,
};

/** A migration request for moving `vm` to `toSite` across the lab's configured link. */
export function labMigrationRequest(
  state: Pick<LabState, 'vms' | 'links' | 'sites'>,
  vm: string,
  toSite: string,
  o: { jobId?: string; policy?: Partial<MigrationPolicy>; foregroundShare?: number; toHost?: string } = {},
): MigrationRequest {
  const v = state.vms.find((x) => x.name === vm);
  if (v === undefined) throw new InputError('vm', vm, `must name a VM of the lab (${state.vms.map((x) => x.name).join(', ')})`);
  const link = state.links.find((l) => (l.a === v.site && l.b === toSite) || (l.a === toSite && l.b === v.site));
  if (link === undefined || v.site === toSite) throw new InputError('to', toSite, `must be another site of the lab than ${v.site} (${state.sites.map((s) => s.id).join(', ')})`);
  const dst = labHostFor(state, placementOf(toSite, o.toHost ?? null));
  return {
    jobId: o.jobId ?? `lab-${vm}-${Date.now().toString(36)}`,
    vm: toVmId(vm),
    from: placementOf(v.site, v.host),
    to: dst.placement,
    link: { rttMs: link.rttMs, bandwidthMbps: link.rateMbps > 0 ? link.rateMbps : 10_000, foregroundShare: o.foregroundShare ?? 0.2, lossPct: link.lossPct },
    shape: { memoryMiB: v.memoryMiB, dirtyRateMiBps: v.dirty.rateMiBps, workingSetMiB: v.dirty.workingSetMiB, diskGiB: v.diskMiB / 1024 },
    storage: v.diskMiB > 0 ? 'mirror' : 'shared',
    policy: { ...LAB_MIGRATION_POLICY, ...o.policy },
  };
}

// ---------------------------------------------------------------------------------------------
// Small effects

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const ECHO_SCRIPT = (ip: string): string =>
  `const s=require('net').connect(7,${JSON.stringify(ip)},()=>s.write('vmshadow-echo\\n'));let b='';` +
  `s.setTimeout(3000,()=>{console.error('timeout');process.exit(2)});` +
  `s.on('data',d=>{b+=d;if(b.includes('vmshadow-echo')){console.log('ok');process.exit(0)}});` +
  `s.on('error',e=>{console.error(e.message);process.exit(1)})`;

/** True when the address answers on TCP port 7 (the guest's echo service) from inside `ns`. */
export async function echoAnswers(ns: string, ip: string): Promise<boolean> {
  try {
    const r = await execIn(ns, [process.execPath, '-e', ECHO_SCRIPT(ip)], { timeoutMs: 10_000, okCodes: [1, 2] });
    return r.code === 0 && r.stdout.includes('ok');
  } catch {
    return false;
  }
}

/** The first 10.254.k.0/24 (k from the run id on) with no address in the root namespace. */
async function freeFlowPrefix(runId: string): Promise<string> {
  const { stdout } = await runIp(['-4', '-o', 'addr', 'show']);
  const used = new Set([...stdout.matchAll(/inet 10\.254\.(\d+)\./g)].map((m) => Number(m[1])));
  const start = parseInt(runId, 16) % 250;
  for (let i = 0; i < 250; i++) {
    const k = ((start + i) % 250) + 1;
    if (!used.has(k)) return `10.254.${k}`;
  }
  throw new AppError('LAB_NO_ADDRESSES', 'Cannot link the sites to the flow collector: every 10.254.k.0/24 (k 1–250) is in use in the root namespace');
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AppError('LAB_ABORTED', 'Bringing the lab up was interrupted; removing what was built');
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  return new Promise<T>((res, rej) => {
    const onAbort = (): void => rej(new AppError('LAB_ABORTED', 'Bringing the lab up was interrupted; removing what was built'));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(res, rej).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

// ---------------------------------------------------------------------------------------------
// Up

export interface LabUpOptions {
  /** default /run/vmshadow/lab; holds lab.json, the run registry, the relay's files and the run's folder */
  stateDir?: string;
  log?: Logger;
  /** one line per step, for a human */
  progress?: (line: string) => void;
  /** stops the build at the next step (Ctrl-C); what was built is removed and labUp rejects */
  signal?: AbortSignal;
  /** default: ensureGuest() (builds the tiny guest the first time) */
  guest?: GuestImage;
  /** how long each guest may take to boot under TCG (default 180 s) */
  bootTimeoutMs?: number;
  clock?: Clock;
}

export interface Lab {
  readonly config: LabConfig;
  readonly runId: string;
  readonly stateDir: string;
  readonly run: NetnsRun;
  readonly testbed: WanTestbed;
  /** The QEMU driver over the lab's hosts; completed migrations through it update vmPlacement() and lab.json. */
  readonly driver: QemuDriver;
  /** The state file's content as it is now. */
  state(): LabState;
  /** Where the VM runs now. */
  vmPlacement(vm: string): Placement;
  siteNs(site: string): string;
  userNs(user: string): string;
  hostFor(p: Placement): QemuHost;
  /** Changes a link at run time; a and b are site ids or user names ('forward' is a→b). */
  setLink(a: string, b: string, change: TestbedLinkChange, direction?: LinkDirection): Promise<void>;
  /** A migration request for moving a VM to another site across the configured link. */
  migrationRequest(vm: string, toSite: string, o?: { jobId?: string; policy?: Partial<MigrationPolicy>; foregroundShare?: number }): MigrationRequest;
  /** Removes the whole lab (the run, its files and lab.json). Idempotent. */
  down(): Promise<LabDownReport>;
}

/**
 * Builds the lab. Refuses when a lab is already up in stateDir; removes leftovers of crashed runs there
 * first. On failure (or an abort) removes what it built and rejects.
 */
export async function labUp(config: LabConfig, opts: LabUpOptions = {}): Promise<Lab> {
  assertRoot('bring up the lab');
  const stateDir = resolve(opts.stateDir ?? DEFAULT_LAB_STATE_DIR);
  if (Buffer.byteLength(stateDir) > MAX_STATE_DIR_BYTES) {
    throw new InputError('stateDir', stateDir, `must be at most ${MAX_STATE_DIR_BYTES} bytes long: QEMU's monitor sockets live below it and a unix socket path holds at most 107 bytes`);
  }
  const log = opts.log ?? silentLogger;
  const progress = opts.progress ?? (() => undefined);
  const signal = opts.signal;
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const existing = readLabState(stateDir);
  if (existing !== null) {
    throw new AppError('LAB_EXISTS', `Cannot bring up a lab in ${stateDir}: lab ${existing.runId} is recorded there (built ${new Date(existing.createdAtMs).toISOString()}); run 'vmshadow lab down' first`);
  }
  for (const r of listRuns({ stateDir })) {
    if (r.ownerAlive) {
      throw new AppError('LAB_BUSY', `Cannot bring up a lab in ${stateDir}: pid ${r.record.owner.pid} is building lab run ${r.runId} there now`);
    }
    progress(`removing leftovers of crashed run ${r.runId}`);
    const rep = await cleanupRun(r.runId, { stateDir });
    if (rep.errors.length > 0) throw new AppError('LAB_LEFTOVERS', `Cannot remove leftovers of run ${r.runId}: ${rep.errors.join('; ')}`);
  }

  let guest = opts.guest;
  if (guest === undefined) {
    progress('preparing the guest image (built once, ~10 s)');
    guest = await untilAborted(ensureGuest(), signal);
  }
  const image = guest;
  aborted(signal);

  const labRun = NetnsRun.create({ stateDir, meta: { lab: true } });
  const runId = labRun.runId;
  progress(`run ${runId}: building ${config.sites.length} sites, ${config.users.length} users and ${config.links.length} WAN links`);
  let testbed: WanTestbed | null = null;
  // What a failed or interrupted build must stop: QEMU daemonizes, so it outlives its namespace unless killed.
  let hostDirs: string[] = [];
  const launches: Promise<unknown>[] = [];
  try {
    const runDir = labRun.recordFile(join(stateDir, runId));
    mkdirSync(runDir, { recursive: true, mode: 0o755 });
    const siteEp = (i: number): string => `s${i}`;
    const userEp = (j: number): string => `u${j}`;
    const epOf = new Map<string, string>([...config.sites.map((s, i) => [s.id, siteEp(i)] as const), ...config.users.map((u, j) => [u.name, userEp(j)] as const)]);
    testbed = await untilAborted(
      createWanTestbed({
        sites: config.sites.map((s, i) => ({ name: siteEp(i), address: s.address })),
        users: config.users.map((u, j) => ({ name: userEp(j), address: u.address })),
        links: config.links.map((l) => ({ a: epOf.get(l.a)!, b: epOf.get(l.b)!, rttMs: l.rttMs, rateMbps: l.rateMbps, lossPct: l.lossPct, jitterMs: l.jitterMs })),
        subnet: config.subnet,
        stateDir,
        run: labRun,
      }),
      signal,
    );
    const tb = testbed;
    aborted(signal);

    progress('making TLS credentials for the sites');
    const tlsDir = join(runDir, 'tls');
    await untilAborted(ensureSiteCredentials(tlsDir, config.sites.map((s) => s.id)), signal);
    aborted(signal);

    const sites: LabStateSite[] = config.sites.map((s, i) => ({
      id: s.id, region: s.region, city: s.city, country: s.country, lat: s.lat, lon: s.lon,
      endpoint: siteEp(i), ns: tb.siteNs(siteEp(i)), address: tb.siteAddress(siteEp(i)), cidr: s.address,
      hosts: Array.from({ length: s.hosts }, (_, k) => ({ id: `${s.id}-h${k + 1}`, workDir: join(runDir, `${i}${String.fromCharCode(97 + k)}`) })),
      flowExporter: null,
    }));
    hostDirs = sites.flatMap((s) => s.hosts.map((h) => h.workDir));
    const users: LabStateUser[] = config.users.map((u, j) => ({
      name: u.name, country: u.country, near: u.near, lat: u.lat, lon: u.lon,
      endpoint: userEp(j), ns: tb.siteNs(userEp(j)), address: tb.siteAddress(userEp(j)), cidr: u.address, rttMs: { ...u.rttMs },
    }));
    for (const s of sites) for (const h of s.hosts) mkdirSync(h.workDir, { recursive: true, mode: 0o755 });

    if (config.flowExport !== null) {
      progress(`starting softflowd on each site's ${BRIDGE} (NetFlow/IPFIX v${config.flowExport.version})`);
      await startFlowExport(labRun, sites, config.flowExport, runDir);
      aborted(signal);
    }

    const driver = createLabDriver({ sites, tlsDir }, { log, ...(opts.clock === undefined ? {} : { clock: opts.clock }) });
    const vms: LabStateVm[] = [];
    const bootTimeoutMs = opts.bootTimeoutMs ?? 180_000;
    await untilAborted(
      Promise.all(
        config.vms.map(async (v) => {
          const host = labHostFor({ sites }, placementOf(v.site, null));
          progress(`starting VM ${v.name} at ${v.site} (${v.memoryMiB} MiB, ${v.ipCidr})`);
          const disk = v.diskMiB > 0 ? { path: join(host.workDir, `${v.name}.qcow2`), format: 'qcow2' as const, nodeName: 'disk0' } : undefined;
          if (disk !== undefined) await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk.path, `${v.diskMiB}M`], { timeout: 30_000 });
          aborted(signal);
          const tap = `tap-${v.name}`;
          const launching = driver.launchVm({
            name: v.name, memoryMiB: v.memoryMiB, vcpu: v.vcpu, kernel: image.kernel, initrd: image.initrd, tcgTbSizeMiB: 32,
            guest: {
              ipCidr: v.ipCidr, checkIntervalMs: 1000,
              ...(v.dirty.workingSetMiB > 0 ? { dirty: v.dirty } : {}),
              ...(disk !== undefined ? { mkfs: true } : {}),
            },
            ...(disk !== undefined ? { disk } : {}),
            nics: [{ mac: macForName(v.name), tap }],
          }, host.placement);
          launches.push(launching.catch(() => undefined));
          const spec = await launching;
          const pidFile = pidfileFor(host.workDir, v.name);
          const pid = await findQemu(pidFile);
          vms.push({
            name: v.name, user: v.user, memoryMiB: v.memoryMiB, vcpu: v.vcpu, diskMiB: v.diskMiB,
            ip: v.ipCidr.split('/')[0]!, cidr: v.ipCidr, mac: macForName(v.name), tap, dirty: { ...v.dirty },
            site: v.site, host: host.placement.hostId!, qmpPath: spec.qmpPath, serialLogPath: spec.serialLogPath, pidFile,
          });
          await waitForConsole(spec.serialLogPath, guestReadyRegex(v.name), bootTimeoutMs, pid === undefined ? {} : { pid });
          const site = sites.find((s) => s.id === v.site)!;
          let ok = false;
          for (let i = 0; i < 10 && !ok; i++) {
            aborted(signal);
            ok = await echoAnswers(site.ns, v.ipCidr.split('/')[0]!);
            if (!ok) await sleep(500);
          }
          if (!ok) throw new AppError('LAB_VM_UNREACHABLE', `VM ${v.name} booted at ${v.site} but does not answer on ${v.ipCidr.split('/')[0]!}:7 from ${site.ns}`);
          progress(`VM ${v.name} is up at ${v.site} and answers on ${v.ipCidr.split('/')[0]!}`);
        }),
      ),
      signal,
    );
    aborted(signal);
    vms.sort((a, b) => config.vms.findIndex((v) => v.name === a.name) - config.vms.findIndex((v) => v.name === b.name));

    const state: LabState = {
      version: 1, runId, stateDir, createdAtMs: Date.now(), builtBy: process.pid,
      subnet: config.subnet, bridge: BRIDGE,
      relay: { ns: tb.relayNs, pid: tb.relay.pid, controlSocket: tb.relay.controlSocket },
      tlsDir, sites, users, vms, links: config.links.map((l) => ({ ...l })), flowExport: config.flowExport, config,
    };
    labRun.recordFile(labStatePath(stateDir));
    writeLabState(state);
    labRun.setMeta({ labState: labStatePath(stateDir) });
    progress(`lab ${runId} is up`);
    return makeLab(config, state, labRun, tb, driver, epOf);
  } catch (e) {
    progress(`removing what was built (${(e as Error).message})`);
    // A launch in flight when the build was interrupted daemonizes a moment later: let it finish (bounded), then
    // stop every QEMU by its pid file before the namespaces go.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(launches), new Promise((r) => { timer = setTimeout(r, 40_000); })]);
    clearTimeout(timer);
    await stopQemusIn(hostDirs).catch((err: unknown) => log.error('stopping QEMU failed', { runId, error: (err as Error).message }));
    await testbed?.relay.stop().catch(() => undefined);
    await labRun.destroy().catch((err: unknown) => log.error('lab cleanup failed', { runId, error: (err as Error).message }));
    rmSync(labStatePath(stateDir), { force: true });
    throw e;
  }
}

async function startFlowExport(labRun: NetnsRun, sites: LabStateSite[], fe: FlowExportConfig, runDir: string): Promise<void> {
  const shim = await ensurePcapImmediateShim();
  const prefix = fe.collectorHost === null ? await freeFlowPrefix(labRun.runId) : null;
  await Promise.all(
    sites.map(async (s, i) => {
      let collectorHost = fe.collectorHost ?? '';
      let exporterAddress: string | null = null;
      if (prefix !== null) {
        // A veth from the root namespace into the site: the collector (the manager's) listens in the root namespace.
        const rootDev = labRun.rootIfName(`f${i}`);
        await labRun.addVeth({ ns: null, name: rootDev }, { ns: s.ns, name: FLOW_DEV });
        const rootAddr = `${prefix}.${4 * i + 1}`;
        exporterAddress = `${prefix}.${4 * i + 2}`;
        await labRun.addAddress(null, rootDev, `${rootAddr}/30`);
        await labRun.addAddress(s.ns, FLOW_DEV, `${exporterAddress}/30`);
        await labRun.linkUp(null, rootDev);
        await labRun.linkUp(s.ns, FLOW_DEV);
        collectorHost = rootAddr;
      }
      const collector = `${collectorHost}:${fe.collectorPort}`;
      const argv = softflowdArgv({
        iface: BRIDGE, collector, version: fe.version, activeTimeoutS: fe.activeTimeoutS, idleTimeoutS: fe.idleTimeoutS,
        pidFile: join(runDir, `sf${i}.pid`), ctlSocket: join(runDir, `sf${i}.ctl`),
      });
      const logFile = join(runDir, `sf${i}.log`);
      const fd = openSync(logFile, 'a');
      let pid: number;
      try {
        // Detached, output to a file: it outlives `lab up` and no closed pipe can kill it.
        pid = labRun.spawnIn(s.ns, argv, { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, LD_PRELOAD: shim } }).pid;
      } finally {
        closeSync(fd);
      }
      const startTicks = processStartTicks(pid);
      await sleep(300);
      if (!isProcessAlive(pid, startTicks)) {
        const out = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' / ') : '';
        throw new AppError('LAB_FLOW_EXPORT', `softflowd on ${s.id}'s ${BRIDGE} exited at once: ${out || '(no output)'}`);
      }
      s.flowExporter = { pid, startTicks, argv, exporterAddress, collector, logFile };
    }),
  );
}

function makeLab(config: LabConfig, state: LabState, labRun: NetnsRun, tb: WanTestbed, inner: QemuDriver, epOf: Map<string, string>): Lab {
  const setPlacement = (vm: string, p: Placement): void => {
    const v = state.vms.find((x) => x.name === vm);
    if (v === undefined) return;
    const host = labHostFor(state, p);
    v.site = host.placement.siteId;
    v.host = host.placement.hostId!;
    v.qmpPath = join(host.workDir, `${vm}.qmp`);
    v.serialLogPath = join(host.workDir, `${vm}.console.log`);
    v.pidFile = pidfileFor(host.workDir, vm);
    if (!closed) writeLabState(state);
  };
  let closed = false;
  const driver: QemuDriver = {
    ...inner,
    async start(req) {
      const h = await inner.start(req);
      const done = h.done.then((o) => {
        if (o.status === 'completed') setPlacement(req.vm, o.runningAt);
        return o;
      });
      return { ...h, done, progress: () => h.progress(), abort: (r) => h.abort(r), ...(h.setBandwidthCap === undefined ? {} : { setBandwidthCap: (c: number) => h.setBandwidthCap!(c) }) };
    },
    async finish(req) {
      await inner.finish(req);
      setPlacement(req.vm, req.to);
    },
    async rollBack(req) {
      await inner.rollBack(req);
      setPlacement(req.vm, req.from);
    },
  };
  const ep = (name: string): string => {
    const e = epOf.get(name);
    if (e === undefined) throw new InputError('endpoint', name, `must name a site or user of the lab (${[...epOf.keys()].join(', ')})`);
    return e;
  };
  let downing: Promise<LabDownReport> | null = null;
  return {
    config,
    runId: state.runId,
    stateDir: state.stateDir,
    run: labRun,
    testbed: tb,
    driver,
    state: () => structuredClone(state),
    vmPlacement(vm) {
      const v = state.vms.find((x) => x.name === vm);
      if (v === undefined) throw new InputError('vm', vm, `must name a VM of the lab (${state.vms.map((x) => x.name).join(', ')})`);
      return placementOf(v.site, v.host);
    },
    siteNs: (site) => tb.siteNs(ep(site)),
    userNs: (user) => tb.siteNs(ep(user)),
    hostFor: (p) => labHostFor(state, p),
    async setLink(a, b, change, direction) {
      await tb.setLink(ep(a), ep(b), change, direction);
      if (direction === undefined || direction === 'both') {
        const i = state.links.findIndex((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
        const l = state.links[i];
        if (l !== undefined) {
          state.links[i] = { ...l, ...Object.fromEntries(Object.entries(change).filter(([k, v]) => v !== undefined && k in l)) };
          const u = state.users.find((x) => x.name === l.b);
          if (u !== undefined && change.rttMs !== undefined) u.rttMs[l.a] = change.rttMs;
          if (!closed) writeLabState(state);
        }
      }
    },
    migrationRequest: (vm, toSite, o) => labMigrationRequest(state, vm, toSite, o),
    down() {
      downing ??= (async () => {
        closed = true;
        await tb.relay.stop().catch(() => undefined);
        // Through the run object, so that exit handlers of its children no longer rewrite its registry.
        const own = await labRun.destroy();
        const rest = await labDown(state.stateDir);
        return { ...rest, labRunId: state.runId, runs: [{ ...own, leftover: false }, ...rest.runs], errors: [...own.errors, ...rest.errors] };
      })();
      return downing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Down

export interface LabDownReport {
  stateDir: string;
  /** the run lab.json named, if any */
  labRunId: string | null;
  runs: (CleanupReport & { leftover: boolean })[];
  qemuStopped: number[];
  errors: string[];
}


/** Stops every QEMU whose pid file lies in one of these host work directories. */
async function stopQemusIn(workDirs: readonly string[]): Promise<{ pids: number[]; errors: string[] }> {
  const out = { pids: [] as number[], errors: [] as string[] };
  for (const dir of workDirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((f) => f.endsWith('.pid'));
    } catch {
      continue;
    }
    for (const f of names) {
      const pid = await findQemu(join(dir, f));
      if (pid === undefined) continue;
      try {
        await killQemu(pid, { graceMs: 2000 });
        out.pids.push(pid);
      } catch (e) {
        out.errors.push((e as Error).message);
      }
    }
  }
  return out;
}

/**
 * Removes the lab of stateDir and every other run recorded there (leftovers of crashed `up`s): QEMU
 * guests, relay, softflowd, namespaces with their taps, root devices and files, then lab.json.
 */
export async function labDown(stateDir: string = DEFAULT_LAB_STATE_DIR, opts: { log?: Logger } = {}): Promise<LabDownReport> {
  assertRoot('take the lab down');
  const dir = resolve(stateDir);
  const report: LabDownReport = { stateDir: dir, labRunId: null, runs: [], qemuStopped: [], errors: [] };
  let state: LabState | null = null;
  try {
    state = readLabState(dir);
  } catch (e) {
    report.errors.push((e as Error).message);
  }
  report.labRunId = state?.runId ?? null;
  // QEMU first, by its pid files: cleanup also stops every process in the namespaces, but a guest whose
  // namespace is already gone would otherwise be missed.
  const stopped = await stopQemusIn((state?.sites ?? []).flatMap((s) => s.hosts.map((h) => h.workDir)));
  report.qemuStopped.push(...stopped.pids);
  report.errors.push(...stopped.errors);
  const runIds = new Set(listRuns({ stateDir: dir }).map((r) => r.runId));
  if (state !== null) runIds.add(state.runId);
  for (const runId of runIds) {
    try {
      const rep = await cleanupRun(runId, { stateDir: dir });
      report.runs.push({ ...rep, leftover: runId !== state?.runId });
      report.errors.push(...rep.errors);
    } catch (e) {
      report.errors.push(`run ${runId}: ${(e as Error).message}`);
    }
  }
  if (state !== null) {
    // Files the registry may not list (a registry lost in a crash): the run's folder and the relay's files.
    for (const f of [join(dir, state.runId), join(dir, `${state.runId}-relay.json`), join(dir, `${state.runId}-relay.sock`)]) rmSync(f, { recursive: true, force: true });
    for (const s of state.sites) {
      const fe = s.flowExporter;
      if (fe !== null && isProcessAlive(fe.pid, fe.startTicks)) report.errors.push(`softflowd pid ${fe.pid} at ${s.id} is still running`);
    }
  }
  if (report.errors.length === 0) {
    rmSync(labStatePath(dir), { force: true });
    try {
      if (readdirSync(dir).length === 0) rmdirSync(dir);
    } catch {
      /* gone already, or not ours to remove */
    }
  }
  opts.log?.info('lab down', { stateDir: dir, runs: report.runs.map((r) => r.runId), errors: report.errors.length });
  return report;
}

// ---------------------------------------------------------------------------------------------
// Status

export interface LabVmStatus extends LabStateVm {
  /** where a running copy was found (null: none); differs from `site` while or after a migration by another process */
  runningAt: { site: string; host: string } | null;
  pid: number | null;
  /** QEMU's run state from query-status, 'monitor-busy' when another client holds QMP */
  qemuStatus: string | null;
  /** answers on TCP port 7 from its site's namespace (null: not checked) */
  echo: boolean | null;
}

export interface LabStatus {
  stateDir: string;
  /** lab.json is present */
  up: boolean;
  /** every namespace, process and guest of the lab answers */
  healthy: boolean;
  runId: string | null;
  /** runs being built now (owner alive, no lab.json yet) */
  building: { runId: string; pid: number }[];
  /** runs whose builder died before finishing: `vmshadow lab down` removes them */
  leftovers: string[];
  sites: (LabStateSite & { nsAlive: boolean; flowExporterAlive: boolean | null })[];
  users: (LabStateUser & { nsAlive: boolean })[];
  vms: LabVmStatus[];
  links: LabLinkConfig[];
  relay: (LabState['relay'] & { alive: boolean; stats: RelayStats | null; error: string | null }) | null;
  problems: string[];
}

/** What is recorded in stateDir and what of it is alive. Reads only; needs root for the guests' monitors. */
export async function labStatus(stateDir: string = DEFAULT_LAB_STATE_DIR, opts: { checkEcho?: boolean } = {}): Promise<LabStatus> {
  const dir = resolve(stateDir);
  const state = readLabState(dir);
  const runs = listRuns({ stateDir: dir });
  const building = runs.filter((r) => r.ownerAlive && r.runId !== state?.runId).map((r) => ({ runId: r.runId, pid: r.record.owner.pid }));
  const leftovers = runs.filter((r) => !r.ownerAlive && r.runId !== state?.runId).map((r) => r.runId);
  const empty: LabStatus = { stateDir: dir, up: false, healthy: false, runId: null, building, leftovers, sites: [], users: [], vms: [], links: [], relay: null, problems: [] };
  if (state === null) return empty;
  const problems: string[] = [];
  const namespaces = new Set(await listNamespaces());
  const sites = state.sites.map((s) => {
    const nsAlive = namespaces.has(s.ns);
    if (!nsAlive) problems.push(`site ${s.id}: namespace ${s.ns} is gone`);
    const fe = s.flowExporter;
    const flowExporterAlive = fe === null ? null : isProcessAlive(fe.pid, fe.startTicks);
    if (flowExporterAlive === false) problems.push(`site ${s.id}: softflowd (pid ${fe?.pid ?? '?'}) is not running`);
    return { ...s, nsAlive, flowExporterAlive };
  });
  const users = state.users.map((u) => {
    const nsAlive = namespaces.has(u.ns);
    if (!nsAlive) problems.push(`user ${u.name}: namespace ${u.ns} is gone`);
    return { ...u, nsAlive };
  });

  let relay: LabStatus['relay'] = { ...state.relay, alive: isAlive(state.relay.pid), stats: null, error: null };
  try {
    const c = await connectRelayControl(state.relay.controlSocket, { timeoutMs: 3000 });
    try {
      const stats = await c.stats();
      const name = (ep: string): string => state.sites.find((s) => s.endpoint === ep)?.id ?? state.users.find((u) => u.endpoint === ep)?.name ?? ep;
      stats.directions = stats.directions.map((d) => ({ ...d, from: name(d.from), to: name(d.to) }));
      relay = { ...relay, stats };
    } finally {
      c.disconnect();
    }
  } catch (e) {
    relay = { ...relay, error: (e as Error).message };
    problems.push(`WAN relay (pid ${state.relay.pid}): ${(e as Error).message}`);
  }

  const driver = createLabDriver(state, { tls: false });
  const vms: LabVmStatus[] = [];
  for (const v of state.vms) {
    let runningAt: LabVmStatus['runningAt'] = null;
    let spec: QemuVmSpec | null = null;
    // The recorded placement first: during a migration both copies exist, and the recorded one is live.
    const hosts = state.sites.flatMap((s) => s.hosts.map((h) => ({ site: s.id, host: h.id })));
    hosts.sort((a, b) => Number(b.host === v.host) - Number(a.host === v.host));
    for (const h of hosts) {
      spec = driver.instanceAt(toVmId(v.name), placementOf(h.site, h.host));
      if (spec !== null) {
        runningAt = h;
        break;
      }
    }
    let pid: number | null = null;
    let qemuStatus: string | null = null;
    if (spec !== null && runningAt !== null) {
      const host = labHostFor(state, placementOf(runningAt.site, runningAt.host));
      pid = (await findQemu(pidfileFor(host.workDir, v.name))) ?? null;
      let client: QmpClient | null = null;
      try {
        client = await QmpClient.connect({ path: spec.qmpPath }, { connectTimeoutMs: 2000, defaultTimeoutMs: 3000 });
        qemuStatus = (await new QemuMonitor(client, v.name).queryStatus()).status;
      } catch (e) {
        qemuStatus = /greeting/.test((e as Error).message) ? 'monitor-busy' : null;
        if (qemuStatus === null) problems.push(`VM ${v.name}: its monitor does not answer (${(e as Error).message})`);
      } finally {
        await client?.close();
      }
    } else {
      problems.push(`VM ${v.name}: no running QEMU at any host`);
    }
    let echo: boolean | null = null;
    if (opts.checkEcho !== false && runningAt !== null) {
      const ns = state.sites.find((s) => s.id === runningAt?.site)?.ns;
      echo = ns !== undefined && namespaces.has(ns) ? await echoAnswers(ns, v.ip) : false;
      if (!echo) problems.push(`VM ${v.name}: no answer on ${v.ip}:7 from ${runningAt.site}`);
    }
    if (qemuStatus !== null && qemuStatus !== 'running' && qemuStatus !== 'monitor-busy') problems.push(`VM ${v.name}: QEMU is ${qemuStatus}`);
    vms.push({ ...v, runningAt, pid, qemuStatus, echo });
  }
  return {
    stateDir: dir, up: true, healthy: problems.length === 0, runId: state.runId, building, leftovers,
    sites, users, vms, links: state.links, relay, problems,
  };
}
