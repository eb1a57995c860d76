// "A desktop follows its user, and the user feels it" (issue 5, deliverable 4) as a library, for the
// end-to-end test and the main job: a desktop VM (a real QEMU guest) runs at a far site; its user, in a
// user namespace near another site, watches a video on the desktop through the connection proxy's stable
// address and keeps a checksummed stream open through the proxy to the guest's echo port; the VM is
// live-migrated (lab.driver) to the user's site, the desktop's network attachment follows it at
// switch-over, and what the user's viewer measured before and after is reported.
//
//   user ns ──access link── proxy (in the user's home site ns) ══site link══ far site br0 ─ tap (guest)
//                           stable address :5900 → desktop:5900                      └ dk<vm> ─ desktop ns (Xvnc)
//                                          :7007 → guest:7
//
// The proxy stands at the user's home site, the cloud's edge nearest the user, so the stable address
// is where the user connects wherever the VM runs. The lab is one stretched L2 segment (docs/proxy.md
// case a): the guest and the desktop keep their addresses, so the proxy's backend connections carry on
// across the move without a route update. Before the move the display travels access link + site link;
// after it, the access link alone: the RTT saved is the site link's.
//
// The pieces are exported for the main job, which lets the planner decide when to move:
// openDesktopSession() (desktop, proxy, viewer, stream), followMigration() (the desktop re-attached at
// the VM's switch-over), and runFollowTheUser() which plays the whole scenario.
import { writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError, InputError } from '../core/errors.js';
import type { MigrationOutcome, MigrationProgress, MigrationRequest } from '../migration/driver.js';
import { untilOutput } from '../core/child-output.js';
import { controlClient, type ControlClient } from '../proxy/control.js';
import type { RouteUpdate } from '../proxy/routes.js';
import type { SessionInfo } from '../proxy/server.js';
import { STREAM_CHECK, watchStreamClient, type StreamCheckResult, type StreamClientWatch } from '../testing/stream-check.js';
import { formatIpv4, parseIpv4 } from './config.js';
import { attachDesktop, moveDesktop, startDesktop, type AttachResult, type Desktop } from './desktop/desktop.js';
import type { UpdateSummary } from './desktop/update-stats.js';
import { startViewer, type Viewer } from './desktop/viewer.js';
import type { Lab, LabState } from './lab.js';
import { isProcessAlive, type SpawnedProcess } from './netns.js';

const PROXY_MAIN = fileURLToPath(new URL('../proxy/main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Rejects with an AppError naming the step when `p` takes longer than `ms`; `onTimeout` runs first. */
export async function within<T>(p: Promise<T>, ms: number, step: string, onTimeout?: () => unknown): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        onTimeout?.();
      } finally {
        reject(new AppError('SCENARIO_TIMEOUT', `${step} did not finish within ${(ms / 1000).toFixed(0)} s`));
      }
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function stopProcess(p: SpawnedProcess, graceMs: number): Promise<void> {
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------------------------------------
// The proxy at a site

export interface LabProxy {
  readonly site: string;
  /** the stable address users connect to (the site's address on the lab's subnet) */
  readonly address: string;
  readonly pid: number;
  readonly control: ControlClient;
  /** SIGTERM (open sessions are reset), SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the connection proxy (src/proxy/main.ts) as a process in a site's namespace with the given
 * routes; its routes file and control socket live in the run's folder. Resolves once it listens.
 */
export async function startLabProxy(lab: Lab, o: { site: string; name: string; routes: readonly RouteUpdate[]; timeoutMs?: number }): Promise<LabProxy> {
  const site = lab.state().sites.find((s) => s.id === o.site);
  if (site === undefined) throw new InputError('site', o.site, `must name a site of the lab (${lab.state().sites.map((s) => s.id).join(', ')})`);
  const dir = join(lab.stateDir, lab.runId);
  const routesFile = lab.run.recordFile(join(dir, `px-${o.name}.json`));
  const socket = lab.run.recordFile(join(dir, `px-${o.name}.sock`));
  writeFileSync(routesFile, JSON.stringify(o.routes));
  const proc = lab.run.spawnIn(site.ns, [process.execPath, PROXY_MAIN, '--routes', routesFile, '--control', socket]);
  try {
    await untilOutput(proc.child, /"event":"ready"/, o.timeoutMs ?? 15_000, `the proxy at ${o.site}`);
  } catch (e) {
    proc.child.kill('SIGKILL');
    throw e;
  }
  let stopping: Promise<void> | null = null;
  return {
    site: o.site,
    address: site.address,
    pid: proc.pid,
    control: controlClient({ path: socket }),
    stop: () => (stopping ??= stopProcess(proc, 5000)),
  };
}

// ---------------------------------------------------------------------------------------------
// A user's desktop session through the proxy

export interface DesktopSessionOptions {
  vm: string;
  user: string;
  /** where the proxy runs (default: the user's home site) */
  proxySite?: string;
  /** the desktop's address on the lab's subnet, CIDR like 10.77.0.150/24 (default: a free one from host number 150 up) */
  desktopAddress?: string;
  /** the proxy's stable ports: the desktop's RFB (default 5900) and the guest's echo (default 7007) */
  rfbPort?: number;
  echoPort?: number;
  /**
   * Queue of the user's access links (both directions). Default 1 MB: an access link with a generous
   * buffer, as DSL and cable links have. With the lab's one-BDP queue (64 KiB on a few-ms link) every
   * ~300 KB screen update overflows it and TCP's loss recovery, not the path, sets the update time.
   * null: leave the links as configured.
   */
  userQueueBytes?: number | null;
  /** stream frames of this many payload bytes every intervalMs (default 1000 B every 20 ms) */
  streamFrameBytes?: number;
  streamIntervalMs?: number;
  /** the stream ends after this long at the latest (default 900 s; stopStream() ends it earlier) */
  streamMaxSeconds?: number;
  /** each set-up step (default 30 s) */
  stepTimeoutMs?: number;
  /**
   * Scheduling priority (nice) of the desktop's Xvnc and video player, the proxy and the viewer (default -5;
   * null: leave them at 0). In the lab every site and user shares this machine's cores with whatever else
   * runs; in the world each has its own. On a loaded machine run-queue waits add to every update, and more
   * of them near the user, where updates come twice as often (seen at load 12: the near update time up by
   * 10–15 ms, the far one by 3–8). The WAN relay runs at -10 for the same reason.
   */
  priority?: number | null;
}

export interface PathRtt {
  /** user → proxy (ping), ms */
  accessMs: number;
  /** proxy → desktop (ping from the proxy's site), ms */
  backendMs: number;
  totalMs: number;
}

export interface DesktopSession {
  readonly vm: string;
  readonly user: string;
  readonly desktop: Desktop;
  readonly proxy: LabProxy;
  readonly viewer: Viewer;
  readonly stream: StreamClientWatch;
  readonly streamPid: number;
  readonly rfbService: string;
  readonly echoService: string;
  /** The desktop's address (no prefix). */
  readonly desktopAddress: string;
  /** The proxy's session(s) of this viewer's RFB connection: the TCP connection the user holds. */
  rfbSessions(): Promise<SessionInfo[]>;
  /** Median of 5 pings on each leg of the display path: user → proxy, proxy → desktop. */
  pathRtt(): Promise<PathRtt>;
  /** Re-attaches the desktop to a site's bridge (where its VM now runs). */
  moveTo(site: string): Promise<AttachResult>;
  /** The site whose bridge the desktop is on. */
  desktopSite(): string | null;
  /** Stops the checksummed stream (it takes back what is in flight) and returns its verdict. */
  stopStream(timeoutMs?: number): Promise<StreamCheckResult>;
  /** Stops the stream, the viewer, the proxy and the desktop (each by pid); idempotent, never throws. */
  close(): Promise<string[]>;
}

function freeAddress(state: LabState): string {
  const [net, pre] = state.subnet.split('/');
  const base = parseIpv4(net ?? '');
  const prefix = Number(pre);
  if (base === null || !(prefix >= 8 && prefix <= 24)) throw new AppError('SCENARIO_SUBNET', `Cannot pick a desktop address: the lab's subnet ${state.subnet} is not an IPv4 /8–/24`);
  const used = new Set([...state.sites, ...state.users, ...state.vms].map((x) => ('ip' in x ? x.ip : x.address)));
  const size = 2 ** (32 - prefix);
  for (let i = 0; i < size - 2; i++) {
    const host = ((150 - 1 + i) % (size - 2)) + 1;
    const a = formatIpv4(base + host);
    if (!used.has(a)) return `${a}/${prefix}`;
  }
  throw new AppError('SCENARIO_SUBNET', `Cannot pick a desktop address: every address of ${state.subnet} is taken`);
}

async function pingMedianMs(lab: Lab, ns: string, ip: string): Promise<number> {
  // The first ping may wait for ARP and VXLAN learning: 6 sent, the first dropped.
  const r = await lab.run.execIn(ns, ['ping', '-n', '-c', '6', '-i', '0.2', '-W', '2', ip], { okCodes: [1], timeoutMs: 20_000 });
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).slice(1);
  if (rtts.length === 0) throw new AppError('SCENARIO_PING', `No answer to ping from ${ns} to ${ip}: ${r.stdout.trim().split('\n').slice(-2).join(' / ')}`);
  return median(rtts);
}

/**
 * The user's session with their desktop VM, end to end: the desktop (Xvnc, idle) attached to the bridge
 * of the VM's site, the proxy at the user's home site with two services (the desktop's RFB and the guest's
 * echo), the measuring viewer and a checksummed stream client in the user's namespace, both through the
 * proxy. On failure removes what it started.
 */
export async function openDesktopSession(lab: Lab, o: DesktopSessionOptions): Promise<DesktopSession> {
  const state = lab.state();
  const vm = state.vms.find((v) => v.name === o.vm);
  if (vm === undefined) throw new InputError('vm', o.vm, `must name a VM of the lab (${state.vms.map((v) => v.name).join(', ')})`);
  const user = state.users.find((u) => u.name === o.user);
  if (user === undefined) throw new InputError('user', o.user, `must name a user of the lab (${state.users.map((u) => u.name).join(', ') || 'none'})`);
  const proxySite = o.proxySite ?? user.near;
  const stepMs = o.stepTimeoutMs ?? 30_000;
  const rfbPort = o.rfbPort ?? 5900;
  const echoPort = o.echoPort ?? 7007;
  const cidr = o.desktopAddress ?? freeAddress(state);
  const desktopAddress = cidr.split('/')[0]!;
  const rfbService = `${vm.name}-rfb`;
  const echoService = `${vm.name}-echo`;

  if (o.userQueueBytes !== null) {
    for (const s of state.sites) await lab.setLink(s.id, user.name, { queueBytes: o.userQueueBytes ?? 1_000_000 });
  }
  let desktop: Desktop | null = null;
  let proxy: LabProxy | null = null;
  let viewer: Viewer | null = null;
  let streamProc: SpawnedProcess | null = null;
  const closeAll = async (): Promise<string[]> => {
    const errors: string[] = [];
    const step = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await within(f(), 15_000, what);
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    if (streamProc !== null) { const p = streamProc; await step('stopping the stream client', () => stopProcess(p, 5000)); }
    if (viewer !== null) { const v = viewer; await step('closing the viewer', () => v.close()); }
    if (proxy !== null) { const p = proxy; await step('stopping the proxy', () => p.stop()); }
    if (desktop !== null) { const d = desktop; await step('stopping the desktop', () => d.stop()); }
    return errors;
  };
  try {
    desktop = await within(startDesktop({ run: lab.run, name: vm.name, address: cidr, initialActivity: 'idle' }), stepMs, `starting desktop ${vm.name}`);
    const d = desktop;
    const proxyAddr = state.sites.find((s) => s.id === proxySite)?.address;
    if (proxyAddr === undefined) throw new InputError('proxySite', proxySite, `must name a site of the lab (${state.sites.map((s) => s.id).join(', ')})`);
    await within(attachDesktop(d, lab.siteNs(vm.site), state.bridge, { checkAddress: proxyAddr }), stepMs, `attaching desktop ${vm.name} at ${vm.site}`);
    proxy = await startLabProxy(lab, {
      site: proxySite, name: vm.name, timeoutMs: stepMs,
      routes: [
        { kind: 'set', service: rfbService, generation: 1, listen: { host: proxyAddr, port: rfbPort }, backends: [{ host: desktopAddress, port: d.rfbPort }] },
        { kind: 'set', service: echoService, generation: 1, listen: { host: proxyAddr, port: echoPort }, backends: [{ host: vm.ip, port: 7 }] },
      ],
    });
    const px = proxy;
    const userNs = lab.userNs(user.name);
    viewer = await within(
      startViewer((argv, so) => lab.run.spawnIn(userNs, argv, so), { host: px.address, port: rfbPort, probe: d.probe, updateTimeoutMs: 30_000, connectTimeoutMs: stepMs }),
      stepMs + 10_000, `connecting ${user.name}'s viewer through the proxy`,
    );
    if (o.priority !== null) {
      const { videoPid } = await within(d.activityStatus(), stepMs, `reading desktop ${vm.name}'s activity`);
      for (const pid of [d.xvncPid, videoPid, px.pid, viewer.pid]) setPriority(pid, o.priority ?? -5);
    }
    const seconds = o.streamMaxSeconds ?? 900;
    streamProc = lab.run.spawnIn(userNs, [
      process.execPath, STREAM_CHECK, 'client', '--host', px.address, '--port', String(echoPort), '--seconds', String(seconds),
      '--interval-ms', String(o.streamIntervalMs ?? 20), '--frame-bytes', String(o.streamFrameBytes ?? 1000), '--stall-timeout-ms', '60000',
    ]);
    const sp = streamProc;
    const stream = watchStreamClient(sp.child, (seconds + 90) * 1000);
    stream.result.catch(() => undefined);
    await within(stream.connected, stepMs, `connecting ${user.name}'s checksummed stream to ${vm.name}:7 through the proxy`);
    const v = viewer;
    let closing: Promise<string[]> | null = null;
    return {
      vm: vm.name, user: user.name, desktop: d, proxy: px, viewer: v, stream, streamPid: sp.pid, rfbService, echoService, desktopAddress,
      rfbSessions: async () => (await px.control.sessions()).filter((s) => s.service === rfbService),
      async pathRtt() {
        const [accessMs, backendMs] = await Promise.all([pingMedianMs(lab, userNs, px.address), pingMedianMs(lab, lab.siteNs(proxySite), desktopAddress)]);
        return { accessMs, backendMs, totalMs: accessMs + backendMs };
      },
      moveTo: (site) => within(moveDesktop(d, lab.siteNs(site), { checkAddress: px.address }), stepMs, `re-attaching desktop ${vm.name} at ${site}`),
      desktopSite: () => {
        const ns = d.site?.ns;
        return ns === undefined ? null : (lab.state().sites.find((s) => s.ns === ns)?.id ?? null);
      },
      async stopStream(timeoutMs = 30_000) {
        sp.child.kill('SIGTERM');
        return within(stream.result, timeoutMs, `the checksummed stream's verdict`, () => sp.child.kill('SIGKILL'));
      },
      close: () => (closing ??= closeAll()),
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Following a migration

export interface FollowResult {
  outcome: MigrationOutcome;
  /** the desktop's re-attachment, null when it did not move (or moved back after a failed switch-over) */
  move: AttachResult | null;
  /** what told the scenario to move the desktop: the driver's switch-over progress, or its completed outcome */
  movedOn: 'switching-over' | 'completed' | null;
  /** ms from the migration's start until the desktop was on the destination's bridge */
  movedAtMs: number | null;
}

export type FollowEvent =
  | { kind: 'session-ready'; vm: string; user: string; desktopAddress: string; proxy: { site: string; address: string }; desktopSite: string }
  | { kind: 'rtt'; when: 'before' | 'after'; rtt: PathRtt }
  | { kind: 'measured'; when: 'before' | 'after'; summary: UpdateSummary }
  | { kind: 'migration-started'; jobId: string; from: string; to: string }
  | { kind: 'migration-progress'; progress: MigrationProgress }
  | { kind: 'viewer-sample'; elapsedMs: number; recent: UpdateSummary }
  | { kind: 'desktop-moved'; toSite: string; reattachMs: number; on: 'switching-over' | 'completed' | 'rolled-back' }
  | { kind: 'migration-done'; outcome: MigrationOutcome };

/**
 * Runs a migration through lab.driver and moves the session's desktop with the VM: at the driver's
 * 'switching-over' progress (QEMU has sent the last pages; the guest resumes at the destination next),
 * or at the latest when the outcome says completed. A switch-over that fails after the desktop moved
 * moves it back. Aborts the migration after `timeoutMs`.
 */
export async function followMigration(
  lab: Lab,
  session: DesktopSession,
  req: MigrationRequest,
  o: { timeoutMs?: number; sampleEveryMs?: number; onEvent?: (e: FollowEvent) => void } = {},
): Promise<FollowResult> {
  const emit = (e: FollowEvent): void => {
    try {
      o.onEvent?.(e);
    } catch {
      /* a listener's error is not the scenario's */
    }
  };
  const from = req.from.siteId as string;
  const to = req.to.siteId as string;
  const t0 = performance.now();
  const h = await within(lab.driver.start(req), 60_000, `starting the migration of ${req.vm} to ${to}`);
  emit({ kind: 'migration-started', jobId: h.jobId, from, to });
  let move: Promise<AttachResult> | null = null;
  let movedOn: FollowResult['movedOn'] = null;
  let movedAtMs: number | null = null;
  const moveNow = (on: 'switching-over' | 'completed'): Promise<AttachResult> => {
    move ??= session.moveTo(to).then((r) => {
      movedOn = on;
      movedAtMs = performance.now() - t0;
      emit({ kind: 'desktop-moved', toSite: to, reattachMs: r.reattachMs, on });
      return r;
    });
    return move;
  };
  let ended = false;
  const watching = (async () => {
    for await (const p of h.progress()) {
      emit({ kind: 'migration-progress', progress: p });
      if (p.phase === 'switching-over') void moveNow('switching-over').catch(() => undefined);
    }
  })();
  const sampling = (async () => {
    const every = o.sampleEveryMs ?? 1000;
    if (every <= 0) return;
    for (let i = 0; !ended && i < 3600; i++) {
      await sleep(every);
      if (ended) break;
      const s = await session.viewer.stats().catch(() => null);
      if (s !== null) emit({ kind: 'viewer-sample', elapsedMs: performance.now() - t0, recent: s.recent });
    }
  })();
  let outcome: MigrationOutcome;
  try {
    const timeoutMs = o.timeoutMs ?? 300_000;
    outcome = await within(h.done, timeoutMs, `the migration of ${req.vm} to ${to}`, () => void h.abort(`the scenario's bound of ${timeoutMs} ms passed`)).catch(
      // Past the bound the migration is aborted, which leaves the VM running at the source: an outcome like any other.
      () => within(h.done, 60_000, `aborting the migration of ${req.vm} after its bound`),
    );
  } finally {
    ended = true;
  }
  await within(watching, 10_000, 'reading the migration progress to its end').catch(() => undefined);
  await sampling;
  emit({ kind: 'migration-done', outcome });
  let moved: AttachResult | null = null;
  if (outcome.status === 'completed') {
    moved = await moveNow('completed');
  } else if (move !== null) {
    // The desktop went ahead at switch-over but the VM stayed: take the desktop back to it.
    await (move as Promise<AttachResult>).catch(() => undefined);
    if (session.desktopSite() !== from) {
      const back = await session.moveTo(from);
      emit({ kind: 'desktop-moved', toSite: from, reattachMs: back.reattachMs, on: 'rolled-back' });
    }
    movedOn = null;
    movedAtMs = null;
  }
  return { outcome, move: moved, movedOn, movedAtMs };
}

// ---------------------------------------------------------------------------------------------
// The whole scenario

export interface FollowTheUserOptions {
  desktopVm: string;
  user: string;
  /** where the VM runs now (checked) */
  farSite: string;
  /** where it moves: the user's site */
  nearSite: string;
  onEvent?: (e: FollowEvent) => void;
  /** each measuring window (default 4 s) */
  measureMs?: number;
  /** before each window, after the video starts or the path changed: past TCP's slow start (default 1.5 s) */
  settleMs?: number;
  /** share of the site link left to the user's traffic while the VM migrates (default 0.5: the video takes about half) */
  foregroundShare?: number;
  migrationTimeoutMs?: number;
  session?: Omit<DesktopSessionOptions, 'vm' | 'user'>;
}

export interface FollowTheUserReport {
  vm: string;
  user: string;
  farSite: string;
  nearSite: string;
  proxySite: string;
  desktopAddress: string;
  /** RTT of the display path (access link + proxy → desktop): configured on the lab's links, and pinged */
  rttMs: {
    configured: { far: number; near: number; saved: number };
    measured: { far: PathRtt; near: PathRtt; saved: number };
  };
  before: UpdateSummary;
  after: UpdateSummary;
  /** update time p50 before and after the move, and the drop */
  frameTimeBeforeMs: number | null;
  frameTimeAfterMs: number | null;
  frameTimeSavedMs: number | null;
  updatesPerSBefore: number;
  updatesPerSAfter: number;
  refreshRateGainPct: number | null;
  /** frames per second the desktop's video drew around each window (25 unless the machine starved it) */
  videoFps: { before: number | null; after: number | null };
  migration: FollowResult;
  migrated: boolean;
  /** the proxy's RFB session (one TCP connection from the user) before and after the move */
  rfb: { before: SessionInfo[]; after: SessionInfo[]; sameConnection: boolean; viewerClosedReason: string | null; updatesAcross: number };
  stream: StreamCheckResult;
  streamBytesLost: number;
  sessionDropped: boolean;
  /** what the scenario started, all stopped when it returns */
  started: { desktopNs: string; pids: number[] };
  cleanupErrors: string[];
}

/** The display path's RTT as the lab's links are configured now: user ↔ proxy site, proxy site ↔ desktop's site. */
function configuredPathRtt(lab: Lab, user: string, proxySite: string, desktopSite: string): number {
  const links = lab.state().links;
  const rtt = (a: string, b: string): number => links.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a))?.rttMs ?? NaN;
  return rtt(user, proxySite) + (proxySite === desktopSite ? 0 : rtt(proxySite, desktopSite));
}

/**
 * Plays the scenario on a lab that is up: opens the user's desktop session through the proxy (desktop at
 * farSite), plays video, measures, migrates the VM to nearSite with the desktop following at switch-over,
 * measures again, and checks the RFB connection and the checksummed stream. Every step is bounded in time;
 * whatever the outcome, what it started is stopped before it returns or throws (the lab stays up).
 */
export async function runFollowTheUser(lab: Lab, o: FollowTheUserOptions): Promise<FollowTheUserReport> {
  const at = lab.vmPlacement(o.desktopVm).siteId as string;
  if (at !== o.farSite) throw new InputError('farSite', o.farSite, `must be where ${o.desktopVm} runs now (${at})`);
  if (o.nearSite === o.farSite) throw new InputError('nearSite', o.nearSite, `must be another site than ${o.farSite}`);
  if (!lab.state().sites.some((s) => s.id === o.nearSite)) throw new InputError('nearSite', o.nearSite, `must name a site of the lab (${lab.state().sites.map((s) => s.id).join(', ')})`);
  const emit = (e: FollowEvent): void => {
    try {
      o.onEvent?.(e);
    } catch {
      /* a listener's error is not the scenario's */
    }
  };
  const measureMs = o.measureMs ?? 4000;
  const settleMs = o.settleMs ?? 1500;
  const session = await openDesktopSession(lab, { ...o.session, vm: o.desktopVm, user: o.user });
  const proxySite = session.proxy.site;
  const started = { desktopNs: session.desktop.ns, pids: [session.proxy.pid, session.viewer.pid, session.streamPid, session.desktop.xvncPid] };
  emit({ kind: 'session-ready', vm: session.vm, user: session.user, desktopAddress: session.desktopAddress, proxy: { site: proxySite, address: session.proxy.address }, desktopSite: o.farSite });
  let closed = false;
  try {
    const videoFps: { before: number | null; after: number | null } = { before: null, after: null };
    const measure = async (when: 'before' | 'after'): Promise<UpdateSummary> => {
      await sleep(settleMs);
      const f0 = await session.desktop.activityStatus().catch(() => null);
      const t0 = performance.now();
      const s = await within(session.viewer.measure(measureMs), measureMs + 20_000, `measuring the viewer ${when} the move`);
      const f1 = await session.desktop.activityStatus().catch(() => null);
      // Frames the video drew meanwhile: a starved player would leave updates waiting for content.
      if (f0 !== null && f1 !== null) videoFps[when] = ((f1.framesDrawn - f0.framesDrawn) * 1000) / (performance.now() - t0);
      emit({ kind: 'measured', when, summary: s });
      return s;
    };
    const configuredFar = configuredPathRtt(lab, o.user, proxySite, o.farSite);
    // Pinged while the desktop is idle: a video's bursts would queue the pings behind them.
    const rttFar = await within(session.pathRtt(), 30_000, 'pinging the display path at the far site');
    emit({ kind: 'rtt', when: 'before', rtt: rttFar });
    await within(session.desktop.setActivity('video'), 15_000, 'starting the video');
    const before = await measure('before');
    const rfbBefore = await session.rfbSessions();
    const updatesBefore = (await session.viewer.stats()).updates;

    const req = lab.migrationRequest(o.desktopVm, o.nearSite, { jobId: `e2e-${o.desktopVm}-${Date.now().toString(36)}`, foregroundShare: o.foregroundShare ?? 0.5 });
    const migration = await followMigration(lab, session, req, { ...(o.migrationTimeoutMs === undefined ? {} : { timeoutMs: o.migrationTimeoutMs }), onEvent: emit });
    const migrated = migration.outcome.status === 'completed';
    const after = await measure('after');
    const rfbAfter = await session.rfbSessions();
    const updatesAfter = (await session.viewer.stats()).updates;
    await within(session.desktop.setActivity('idle'), 15_000, 'pausing the video');
    const rttNear = await within(session.pathRtt(), 30_000, 'pinging the display path after the move');
    emit({ kind: 'rtt', when: 'after', rtt: rttNear });
    const configuredNear = configuredPathRtt(lab, o.user, proxySite, session.desktopSite() ?? o.farSite);
    const stream = await session.stopStream();
    const viewerClosedReason = session.viewer.closedReason;
    const cleanupErrors = await session.close();
    closed = true;

    const b = before.updateMs?.p50 ?? null;
    const a = after.updateMs?.p50 ?? null;
    const sameConnection = rfbBefore.length === 1 && rfbAfter.length === 1 && rfbBefore[0]!.id === rfbAfter[0]!.id && rfbBefore[0]!.user === rfbAfter[0]!.user;
    const streamBytesLost = stream.bytesSent - stream.bytesVerified;
    return {
      vm: o.desktopVm, user: o.user, farSite: o.farSite, nearSite: o.nearSite, proxySite, desktopAddress: session.desktopAddress,
      rttMs: {
        configured: { far: configuredFar, near: configuredNear, saved: configuredFar - configuredNear },
        measured: { far: rttFar, near: rttNear, saved: rttFar.totalMs - rttNear.totalMs },
      },
      before, after,
      frameTimeBeforeMs: b, frameTimeAfterMs: a, frameTimeSavedMs: b !== null && a !== null ? b - a : null,
      updatesPerSBefore: before.updatesPerS, updatesPerSAfter: after.updatesPerS,
      refreshRateGainPct: before.updatesPerS > 0 ? (100 * (after.updatesPerS - before.updatesPerS)) / before.updatesPerS : null,
      videoFps,
      migration, migrated,
      rfb: { before: rfbBefore, after: rfbAfter, sameConnection, viewerClosedReason, updatesAcross: updatesAfter - updatesBefore },
      stream, streamBytesLost,
      sessionDropped: !sameConnection || viewerClosedReason !== null || stream.end !== 'completed',
      started, cleanupErrors,
    };
  } finally {
    if (!closed) await session.close();
  }
}

/** The end-to-end verdict in the shape `vmshadow lab e2e --json` prints (issue 5). */
export interface FollowTheUserSummary {
  migrated: boolean;
  sessionDropped: boolean;
  bytesLost: number;
  frameTimeBeforeMs: number | null;
  frameTimeAfterMs: number | null;
  rttSavedMs: number;
  updatesPerSBefore: number;
  updatesPerSAfter: number;
  refreshRateGainPct: number | null;
  migrationS: number;
  downtimeMs: number | null;
  longestStreamStallMs: number;
}

export function summarizeFollowTheUser(r: FollowTheUserReport): FollowTheUserSummary {
  return {
    migrated: r.migrated, sessionDropped: r.sessionDropped, bytesLost: r.streamBytesLost,
    frameTimeBeforeMs: r.frameTimeBeforeMs, frameTimeAfterMs: r.frameTimeAfterMs, rttSavedMs: r.rttMs.configured.saved,
    updatesPerSBefore: r.updatesPerSBefore, updatesPerSAfter: r.updatesPerSAfter, refreshRateGainPct: r.refreshRateGainPct,
    migrationS: r.migration.outcome.durationMs / 1000, downtimeMs: r.migration.outcome.downtimeMs, longestStreamStallMs: r.stream.longestStallMs,
  };
}

/** True when none of the processes the scenario started is alive (for checks after it returned). */
export function scenarioStopped(r: Pick<FollowTheUserReport, 'started'>): boolean {
  return r.started.pids.every((pid) => !isProcessAlive(pid, null));
}
