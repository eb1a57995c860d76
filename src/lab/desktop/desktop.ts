// A lab "desktop": a real VNC server (TigerVNC's Xvnc) with an editor and a video player on its
// display (activity.ts), in its own network namespace `vms-<runId>-desk-<name>`. The lab's QEMU
// guests are too small for an X server, so the desktop stands beside its VM: a veth pair joins the
// desktop's namespace to the bridge of the site where the VM runs, on the stretched L2 segment, so
// its display traffic takes the VM's network path; when the VM migrates, moveDesktop() re-homes the
// veth's outer end onto the new site's bridge (README.md in this folder).
import { performance } from 'node:perf_hooks';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { AppError, InputError } from '../../core/errors.js';
import { isProcessAlive, processStartTicks, runIp, type NetnsRun, type SpawnedProcess } from '../netns.js';
import { ActivityGenerator, isActivity, type Activity, type ActivityStatus, type EditorLayout, type VideoLayout } from './activity.js';
import { ensureDesktopTools, type DesktopTools } from './tools.js';

export interface DesktopOptions {
  /** the lab run (for a WAN testbed: testbed.run) — the desktop's namespace and processes are recorded in it */
  run: NetnsRun;
  /** 1–11 lowercase letters or digits, starting with a letter */
  name: string;
  /**
   * Run in this existing namespace of the run (e.g. a site's) instead of a new `desk-<name>` one.
   * Such a desktop is reached at that namespace's addresses and cannot be attached or moved; stop()
   * leaves the namespace.
   */
  ns?: string;
  /** its address (CIDR) on the network it joins, like '10.77.0.50/24'; needed by attachDesktop */
  address?: string;
  width?: number;
  height?: number;
  /** RFB port inside the desktop's namespace (default 5900) */
  rfbPort?: number;
  /** default 320×240 at 25 frames/s in the bottom-right corner */
  video?: Partial<VideoLayout>;
  /** default 80×24 characters at the top left */
  editor?: Partial<EditorLayout>;
  typingCharsPerS?: number;
  initialActivity?: Activity;
  tools?: DesktopTools;
  startTimeoutMs?: number;
}

export interface DesktopSite {
  ns: string;
  bridge: string;
}

export interface AttachResult {
  siteNs: string;
  bridge: string;
  /** the `ip` commands that (re)attached the veth, ms */
  reattachMs: number;
  /** until the desktop got an answer from `checkAddress` (null when not asked) */
  reachableMs: number | null;
}

export interface DesktopInfo {
  name: string;
  ns: string;
  display: string;
  rfbPort: number;
  address: string | null;
  site: DesktopSite | null;
  xvncPid: number;
  width: number;
  height: number;
  video: VideoLayout;
  activity: Activity;
}

const NAME_RE = /^[a-z][a-z0-9]{0,10}$/;
const INNER_DEV = 'eth0';

export class Desktop {
  private siteNow: DesktopSite | null = null;
  private stopping: Promise<void> | null = null;

  /** @internal — use startDesktop() */
  constructor(
    readonly run: NetnsRun,
    readonly name: string,
    readonly ns: string,
    readonly address: string | null,
    readonly display: string,
    readonly rfbPort: number,
    readonly width: number,
    readonly height: number,
    readonly video: VideoLayout,
    private readonly xvnc: SpawnedProcess,
    private readonly xvncStartTicks: number | null,
    private readonly lockFiles: string[],
    readonly activity: ActivityGenerator,
    /** the namespace was made for this desktop (and goes with it) */
    readonly ownsNs: boolean,
  ) {}

  /** The outer end of the desktop's veth (in the site namespace it is attached to). */
  get hostDevice(): string {
    return `dk${this.name}`;
  }

  get site(): DesktopSite | null {
    return this.siteNow ? { ...this.siteNow } : null;
  }

  /** @internal */
  setSite(s: DesktopSite | null): void {
    this.siteNow = s;
  }

  get xvncPid(): number {
    return this.xvnc.pid;
  }

  /** The video window's top-left pixel, where its frame marker sits (for a viewer's probe). */
  get probe(): { x: number; y: number } {
    return { x: this.video.x, y: this.video.y };
  }

  setActivity(a: Activity): Promise<void> {
    return this.activity.set(a);
  }

  activityStatus(): Promise<ActivityStatus> {
    return this.activity.status();
  }

  info(): DesktopInfo {
    return {
      name: this.name,
      ns: this.ns,
      display: this.display,
      rfbPort: this.rfbPort,
      address: this.address?.split('/')[0] ?? null,
      site: this.site,
      xvncPid: this.xvnc.pid,
      width: this.width,
      height: this.height,
      video: { ...this.video },
      activity: this.activity.activity,
    };
  }

  /** Stops the activity and Xvnc (by pid) and deletes the desktop's namespace (and so its veth). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const errors: string[] = [];
      await this.activity.stop().catch((e: unknown) => errors.push(`activity: ${(e as Error).message}`));
      if (isProcessAlive(this.xvnc.pid, this.xvncStartTicks)) {
        kill(this.xvnc.pid, 'SIGTERM');
        const until = Date.now() + 3000;
        while (isProcessAlive(this.xvnc.pid, this.xvncStartTicks) && Date.now() < until) await sleep(25);
        if (isProcessAlive(this.xvnc.pid, this.xvncStartTicks)) kill(this.xvnc.pid, 'SIGKILL');
      }
      // A killed Xvnc leaves its lock and socket behind; they were recorded only once they were ours.
      for (const f of this.lockFiles) rmSync(f, { force: true });
      if (this.ownsNs) await this.run.deleteNamespace(this.ns).catch((e: unknown) => errors.push(`namespace ${this.ns}: ${(e as Error).message}`));
      this.siteNow = null;
      if (errors.length > 0) throw new AppError('DESKTOP_STOP', `Stopping desktop ${this.name} left problems: ${errors.join('; ')}`);
    })();
    return this.stopping;
  }
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* exited meanwhile */
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function positiveInt(v: number, field: string, max: number): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new InputError(field, v, `must be a whole number 1–${max}`);
  return v;
}

interface XvncStarted {
  xvnc: SpawnedProcess;
  displayNo: number;
  startTicks: number | null;
  lockFiles: string[];
}

const lockOf = (n: number): string => `/tmp/.X${n}-lock`;
const socketOf = (n: number): string => `/tmp/.X11-unix/X${n}`;

/**
 * Starts Xvnc on a free display. Not -displayfd: that skips the lock file, and an X server in a
 * namespace would then pick :0 and replace the socket file of any :0 on the machine. Instead a random
 * display in 100–999 with neither lock nor socket file; the lock (which Xvnc takes with O_EXCL)
 * settles races with other servers, and a lost race is retried on another number.
 */
async function startXvnc(run: NetnsRun, ns: string, args: readonly string[], xvncPath: string, timeoutMs: number): Promise<XvncStarted> {
  const tried: string[] = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    let n = 100 + Math.floor(Math.random() * 900);
    for (let k = 0; k < 50 && (existsSync(lockOf(n)) || existsSync(socketOf(n))); k++) n = 100 + Math.floor(Math.random() * 900);
    const xvnc = run.spawnIn(ns, [xvncPath, `:${n}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    xvnc.child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4096);
    });
    const closed = new Promise<void>((r) => xvnc.child.once('close', () => r()));
    // Later output must not fill a pipe and block Xvnc.
    xvnc.child.stdout?.resume();
    const until = Date.now() + timeoutMs;
    let owned = false;
    while (Date.now() < until && xvnc.child.exitCode === null && xvnc.child.signalCode === null) {
      try {
        owned = Number(readFileSync(lockOf(n), 'utf8').trim()) === xvnc.pid && existsSync(socketOf(n));
      } catch {
        owned = false;
      }
      if (owned) break;
      await sleep(25);
    }
    if (owned) {
      const lockFiles = [lockOf(n), socketOf(n)];
      for (const f of lockFiles) run.recordFile(f);
      return { xvnc, displayNo: n, startTicks: processStartTicks(xvnc.pid), lockFiles };
    }
    if (xvnc.child.exitCode === null && xvnc.child.signalCode === null) {
      xvnc.child.kill('SIGKILL');
      throw new AppError('DESKTOP_START', `Xvnc :${n} in ${ns} did not take its display within ${timeoutMs} ms; stderr: ${stderr.trim() || '(none)'}`);
    }
    // Its last words (why it exited) arrive with 'close'.
    await Promise.race([closed, sleep(2000)]);
    if (!/already active|Cannot establish any listening sockets|lock/i.test(stderr)) {
      throw new AppError('DESKTOP_START', `Xvnc :${n} in ${ns} exited (code ${String(xvnc.child.exitCode)}) while starting: ${stderr.trim().split('\n').slice(-5).join(' | ') || '(no output)'}`);
    }
    tried.push(`:${n}`);
  }
  throw new AppError('DESKTOP_START', `Cannot find a free X display for Xvnc in ${ns}: ${tried.join(', ')} were taken meanwhile`);
}

/** Starts Xvnc and the activity generator in a new namespace of `run`; on failure removes what it made. */
export async function startDesktop(o: DesktopOptions): Promise<Desktop> {
  if (!NAME_RE.test(o.name)) throw new InputError('name', o.name, 'must be 1–11 lowercase letters or digits, starting with a letter');
  const width = positiveInt(o.width ?? 800, 'width', 4096);
  const height = positiveInt(o.height ?? 600, 'height', 4096);
  const rfbPort = positiveInt(o.rfbPort ?? 5900, 'rfbPort', 65535);
  const vw = positiveInt(o.video?.width ?? 320, 'video.width', width);
  const vh = positiveInt(o.video?.height ?? 240, 'video.height', height);
  const video: VideoLayout = { width: vw, height: vh, x: o.video?.x ?? width - vw, y: o.video?.y ?? height - vh, fps: o.video?.fps ?? 25 };
  if (video.x + vw > width || video.y + vh > height || video.x < 0 || video.y < 0) throw new InputError('video', video, `must lie within the ${width}×${height} screen`);
  const editor: EditorLayout = { x: 0, y: 0, cols: 80, rows: 24, ...o.editor };
  if (o.address !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(o.address)) throw new InputError('address', o.address, "must be an IPv4 CIDR like '10.77.0.50/24'");
  if (o.initialActivity !== undefined && !isActivity(o.initialActivity)) throw new InputError('initialActivity', o.initialActivity, 'must be idle, text-editing or video');
  const tools = o.tools ?? (await ensureDesktopTools());
  const timeoutMs = o.startTimeoutMs ?? 15_000;
  const run = o.run;
  const ownsNs = o.ns === undefined;
  if (o.ns !== undefined && !o.ns.startsWith(`vms-${run.runId}-`)) throw new InputError('ns', o.ns, `must be a namespace of run ${run.runId}`);
  const ns = o.ns ?? (await run.addNamespace(`desk-${o.name}`));
  let xvnc: SpawnedProcess | null = null;
  const lockFiles: string[] = [];
  try {
    if (ownsNs) {
      await run.sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
      await run.sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1');
    }
    const started = await startXvnc(
      run,
      ns,
      ['-geometry', `${width}x${height}`, '-depth', '24', '-SecurityTypes', 'None', '-rfbport', String(rfbPort), '-nolisten', 'tcp', '-AlwaysShared', '-desktop', `vmshadow-${o.name}`],
      tools.xvnc,
      timeoutMs,
    );
    xvnc = started.xvnc;
    lockFiles.push(...started.lockFiles);
    const { displayNo, startTicks } = started;
    let stderr = '';
    xvnc.child.stderr?.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4096);
    });
    await waitListening(ns, rfbPort, timeoutMs, () => stderr.trim());
    const activity = await ActivityGenerator.start({
      display: `:${displayNo}`,
      spawn: (argv, so) => run.spawnIn(ns, argv, so),
      tools,
      video,
      editor,
      startTimeoutMs: timeoutMs,
      ...(o.typingCharsPerS === undefined ? {} : { typingCharsPerS: o.typingCharsPerS }),
      ...(o.initialActivity === undefined ? {} : { initial: o.initialActivity }),
    });
    return new Desktop(run, o.name, ns, o.address ?? null, `:${displayNo}`, rfbPort, width, height, video, xvnc, startTicks, lockFiles, activity, ownsNs);
  } catch (e) {
    if (xvnc !== null && xvnc.child.exitCode === null) xvnc.child.kill('SIGKILL');
    if (ownsNs) await run.deleteNamespace(ns).catch(() => undefined);
    for (const f of lockFiles) if (existsSync(f)) rmSync(f, { force: true });
    throw e;
  }
}

async function waitListening(ns: string, port: number, timeoutMs: number, stderr: () => string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (let i = 0; Date.now() < until && i < 1000; i++) {
    const r = await runIpNetnsExec(ns, ['ss', '-Hltn', `sport = :${port}`]);
    if (r.trim().length > 0) return;
    await sleep(50);
  }
  throw new AppError('DESKTOP_START', `Xvnc in ${ns} is not listening on port ${port} after ${timeoutMs} ms; stderr: ${stderr() || '(none)'}`);
}

async function runIpNetnsExec(ns: string, argv: string[]): Promise<string> {
  const r = await runIp(['netns', 'exec', ns, ...argv]);
  return r.stdout;
}

/**
 * Joins the desktop to the bridge of a site: a veth pair, `eth0` (with the desktop's address) in the
 * desktop's namespace and `dk<name>` on `bridge` in `siteNs`. A desktop already attached elsewhere
 * is moved (moveDesktop). `siteNs` must belong to the desktop's run.
 */
export async function attachDesktop(d: Desktop, siteNs: string, bridge = 'br0', opts: { checkAddress?: string; timeoutMs?: number } = {}): Promise<AttachResult> {
  if (!d.ownsNs) throw new AppError('DESKTOP_SHARED_NS', `Cannot attach desktop ${d.name}: it runs in ${d.ns}, not in a namespace of its own`);
  const cur = d.site;
  if (cur !== null) return moveDesktop(d, siteNs, { bridge, ...opts });
  if (d.address === null) throw new InputError('address', null, `desktop ${d.name} has no address to use on ${siteNs}'s bridge (start it with an address)`);
  const t0 = performance.now();
  await d.run.addVeth({ ns: d.ns, name: INNER_DEV }, { ns: siteNs, name: d.hostDevice });
  await runIp(['link', 'set', d.hostDevice, 'master', bridge, 'up'], siteNs);
  // Announce the desktop (gratuitous ARP) whenever its link comes up again: after every move.
  await d.run.sysctl(d.ns, `net.ipv4.conf.${INNER_DEV}.arp_notify`, '1');
  await runIp(['addr', 'add', d.address, 'dev', INNER_DEV], d.ns);
  await runIp(['link', 'set', INNER_DEV, 'up'], d.ns);
  const reattachMs = performance.now() - t0;
  d.setSite({ ns: siteNs, bridge });
  const reachableMs = opts.checkAddress === undefined ? null : (await waitReachable(d, opts.checkAddress, opts.timeoutMs ?? 10_000)) + reattachMs;
  return { siteNs, bridge, reattachMs, reachableMs };
}

/**
 * Re-homes an attached desktop onto `toSiteNs`'s bridge: `ip link set dk<name> netns <to>`, then
 * `master <bridge> up` there. The desktop keeps its address and MAC (the stretched segment); its
 * carrier coming back makes it announce itself (arp_notify), which re-teaches the bridges and VXLAN
 * tables on the way to its users. Open TCP sessions to it continue.
 */
export async function moveDesktop(d: Desktop, toSiteNs: string, opts: { bridge?: string; checkAddress?: string; timeoutMs?: number } = {}): Promise<AttachResult> {
  const cur = d.site;
  if (cur === null) throw new AppError('DESKTOP_NOT_ATTACHED', `Cannot move desktop ${d.name} to ${toSiteNs}: it is not attached to any site (attachDesktop first)`);
  const bridge = opts.bridge ?? cur.bridge;
  if (cur.ns === toSiteNs) return { siteNs: toSiteNs, bridge, reattachMs: 0, reachableMs: null };
  if (!toSiteNs.startsWith(`vms-${d.run.runId}-`)) throw new InputError('toSiteNs', toSiteNs, `must be a namespace of run ${d.run.runId}`);
  const t0 = performance.now();
  await runIp(['link', 'set', d.hostDevice, 'netns', toSiteNs], cur.ns);
  d.setSite(null);
  try {
    await runIp(['link', 'set', d.hostDevice, 'master', bridge, 'up'], toSiteNs);
  } catch (e) {
    throw new AppError('DESKTOP_MOVE', `Moved ${d.hostDevice} of desktop ${d.name} into ${toSiteNs} but cannot put it on bridge ${bridge} there: ${(e as Error).message}`, { cause: e });
  }
  const reattachMs = performance.now() - t0;
  d.setSite({ ns: toSiteNs, bridge });
  const reachableMs = opts.checkAddress === undefined ? null : (await waitReachable(d, opts.checkAddress, opts.timeoutMs ?? 10_000)) + reattachMs;
  return { siteNs: toSiteNs, bridge, reattachMs, reachableMs };
}

/** ms until one ping from the desktop to `address` is answered (bounded by timeoutMs). */
async function waitReachable(d: Desktop, address: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  const until = Date.now() + timeoutMs;
  for (let i = 0; Date.now() < until && i < 200; i++) {
    const r = await d.run.execIn(d.ns, ['ping', '-n', '-c', '1', '-W', '1', address], { okCodes: [1, 2], timeoutMs: 5000 });
    if (r.code === 0) return performance.now() - t0;
  }
  throw new AppError('DESKTOP_UNREACHABLE', `Desktop ${d.name} (${d.ns}) gets no answer from ${address} within ${timeoutMs} ms of joining ${d.site?.ns ?? 'its site'}`);
}
