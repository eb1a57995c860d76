// Network namespaces, links and processes for one lab run, with a registry file that lists everything
// the run created so that `cleanupRun()` can remove it all — also after the owner crashed.
//
// Names: every namespace of a run is `vms-<runId>-<role>` (runId: 6 random hex digits), so two runs,
// or a run and anything else on the machine, cannot collide. Devices inside a run's namespaces die
// with the namespace; devices in the root namespace (rare) are named `vm<runId><role>` (≤ 15 chars)
// and recorded one by one. The registry is written BEFORE each thing is created: a crash between the
// two leaves a record of something that may not exist, which cleanup tolerates, never the reverse.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AppError, InputError } from '../core/errors.js';

export const DEFAULT_STATE_DIR = '/run/vmshadow';
export const NS_PREFIX = 'vms-';
/** Linux IFNAMSIZ is 16 including the terminating NUL. */
export const MAX_IFNAME_CHARS = 15;

const RUN_ID_RE = /^[0-9a-f]{6}$/;
const ROLE_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

// ---------------------------------------------------------------------------------------------
// Commands

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  timeoutMs?: number;
  /** exit codes that are not an error (0 always is) */
  okCodes?: readonly number[];
}

/** Runs argv (no shell); a failure names the command, its exit code or signal, and its stderr. */
export function runCommand(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult & { code: number }> {
  const [file, ...args] = argv;
  if (file === undefined) throw new InputError('argv', argv, 'must name a command');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ stdout, stderr, code: 0 });
        return;
      }
      const e = err as Error & { code?: number | string; signal?: string | null; killed?: boolean };
      const cmd = argv.join(' ');
      if (e.code === 'ENOENT') {
        reject(new AppError('COMMAND_MISSING', `Cannot run ${cmd}: ${file} is not installed (${hintFor(file)})`, { cause: err }));
        return;
      }
      if (typeof e.code === 'number' && opts.okCodes?.includes(e.code) === true) {
        resolve({ stdout, stderr, code: e.code });
        return;
      }
      const how =
        e.killed === true && e.signal !== null
          ? `timed out after ${timeoutMs} ms`
          : typeof e.code === 'number'
            ? `exit code ${e.code}`
            : `signal ${String(e.signal)}`;
      const detail = stderr.trim() || stdout.trim() || '(no output)';
      reject(new CommandError(cmd, typeof e.code === 'number' ? e.code : null, stderr, `${cmd} failed (${how}): ${detail}`, err));
    });
  });
}

export class CommandError extends AppError {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    message: string,
    cause: unknown,
  ) {
    super('COMMAND_FAILED', message, { cause });
    this.name = 'CommandError';
  }
}

function hintFor(file: string): string {
  const pkg: Record<string, string> = { ip: 'iproute2', bridge: 'iproute2', ethtool: 'ethtool', ping: 'iputils-ping', sysctl: 'procps' };
  const p = pkg[path.basename(file)];
  return p === undefined ? 'install it' : `apt-get install -y --no-install-recommends ${p}`;
}

/** `ip [-n ns] args…`; ns null is the root namespace. */
export function runIp(args: readonly string[], ns: string | null = null, opts: CommandOptions = {}): Promise<CommandResult> {
  return runCommand(['ip', ...(ns === null ? [] : ['-n', ns]), ...args], opts);
}

/** `ip netns exec ns argv…` and waits for it. */
export async function execIn(ns: string, argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult & { code: number }> {
  try {
    return await runCommand(['ip', 'netns', 'exec', ns, ...argv], opts);
  } catch (e) {
    const file = argv[0] ?? '';
    if (e instanceof CommandError && e.stderr.includes(`exec of "${file}" failed: No such file`)) {
      throw new AppError('COMMAND_MISSING', `Cannot run ${argv.join(' ')} in namespace ${ns}: ${file} is not installed (${hintFor(file)})`, { cause: e });
    }
    throw e;
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Refuses clearly when not root: namespaces and links need CAP_NET_ADMIN / CAP_SYS_ADMIN. */
export function assertRoot(what: string): void {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new AppError('NOT_ROOT', `Cannot ${what}: network namespaces need root, and this process runs as uid ${String(uid)} (run it as root, e.g. with sudo)`);
  }
}

export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await runIp(['netns', 'list']);
  // Lines look like "name" or "name (id: 3)".
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export async function namespacePids(ns: string): Promise<number[]> {
  try {
    const { stdout } = await runIp(['netns', 'pids', ns]);
    return stdout
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
  } catch (e) {
    if (e instanceof CommandError && /No such file|does not exist|Invalid/.test(e.stderr)) return [];
    throw e;
  }
}

export function checkIfName(name: string, field = 'interface name'): string {
  if (name.length === 0 || name.length > MAX_IFNAME_CHARS || !IFNAME_RE.test(name)) {
    throw new InputError(field, name, `must be 1–${MAX_IFNAME_CHARS} characters of letters, digits, '_', '.', '-' (Linux interface names)`);
  }
  return name;
}

// ---------------------------------------------------------------------------------------------
// Processes (by pid and start time, so a reused pid is never killed)

export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) " the fields start at field 3 (state); starttime is field 22.
    if (rest[0] === 'Z' || rest[0] === 'X') return null;
    const ticks = Number(rest[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

export function isProcessAlive(pid: number, startTicks: number | null): boolean {
  const now = processStartTicks(pid);
  if (now === null) return false;
  return startTicks === null || now === startTicks;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM, up to graceMs to exit, then SIGKILL; returns the pids that were alive and are now gone. */
async function stopProcesses(procs: readonly { pid: number; startTicks: number | null }[], graceMs: number): Promise<number[]> {
  const alive = procs.filter((p) => p.pid !== process.pid && isProcessAlive(p.pid, p.startTicks));
  const signal = (sig: NodeJS.Signals): void => {
    for (const p of alive) {
      if (!isProcessAlive(p.pid, p.startTicks)) continue;
      try {
        process.kill(p.pid, sig);
      } catch {
        /* exited meanwhile */
      }
    }
  };
  const waitGone = async (ms: number): Promise<boolean> => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (alive.every((p) => !isProcessAlive(p.pid, p.startTicks))) return true;
      await sleep(25);
    }
    return alive.every((p) => !isProcessAlive(p.pid, p.startTicks));
  };
  if (alive.length === 0) return [];
  signal('SIGTERM');
  if (!(await waitGone(graceMs))) {
    signal('SIGKILL');
    await waitGone(2000);
  }
  return alive.filter((p) => !isProcessAlive(p.pid, p.startTicks)).map((p) => p.pid);
}

// ---------------------------------------------------------------------------------------------
// The registry of one run

export interface ProcessRecord {
  pid: number;
  startTicks: number | null;
  argv: string[];
  ns: string | null;
}

export interface RunRecord {
  version: 1;
  runId: string;
  owner: { pid: number; startTicks: number | null };
  createdAtMs: number;
  namespaces: string[];
  /** devices in the root namespace (those inside a run's namespaces go with it) */
  rootDevices: string[];
  processes: ProcessRecord[];
  files: string[];
  /** free-form notes of whoever built the run (e.g. the lab's config) */
  meta: Record<string, unknown>;
}

export function registryPath(stateDir: string, runId: string): string {
  return path.join(stateDir, `${runId}.json`);
}

function writeRecord(stateDir: string, rec: RunRecord): void {
  const file = registryPath(stateDir, rec.runId);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export function readRecord(stateDir: string, runId: string): RunRecord | null {
  let text: string;
  try {
    text = readFileSync(registryPath(stateDir, runId), 'utf8');
  } catch {
    return null;
  }
  try {
    const r = JSON.parse(text) as Partial<RunRecord>;
    return {
      version: 1,
      runId,
      owner: r.owner ?? { pid: 0, startTicks: null },
      createdAtMs: r.createdAtMs ?? 0,
      namespaces: Array.isArray(r.namespaces) ? r.namespaces : [],
      rootDevices: Array.isArray(r.rootDevices) ? r.rootDevices : [],
      processes: Array.isArray(r.processes) ? r.processes : [],
      files: Array.isArray(r.files) ? r.files : [],
      meta: r.meta ?? {},
    };
  } catch {
    // A torn or hand-edited file: cleanup still finds the run's namespaces by prefix.
    return { version: 1, runId, owner: { pid: 0, startTicks: null }, createdAtMs: 0, namespaces: [], rootDevices: [], processes: [], files: [], meta: {} };
  }
}

/** Names of the namespaces `ip netns` manages (the files in /run/netns). */
function existingNamespaceNames(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

export function newRunId(): string {
  return randomBytes(3).toString('hex');
}

export function nsPrefix(runId: string): string {
  return `${NS_PREFIX}${runId}-`;
}

export interface VxlanOptions {
  name: string;
  vni: number;
  /** underlay source address */
  local: string;
  /** underlay device */
  dev?: string;
  dstPort?: number;
  learning?: boolean;
  mtu?: number;
}

export interface SpawnedProcess {
  child: ChildProcess;
  pid: number;
}

/**
 * One run: creates namespaces, links and processes and records each in the run's registry file.
 * `destroy()` (= `cleanupRun(runId)`) removes everything recorded.
 */
export class NetnsRun {
  private closed = false;

  private constructor(
    readonly stateDir: string,
    private readonly rec: RunRecord,
  ) {}

  static create(opts: { stateDir?: string; runId?: string; meta?: Record<string, unknown> } = {}): NetnsRun {
    assertRoot('build a lab run');
    const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const taken = (id: string): string | null => {
      if (readRecord(stateDir, id) !== null) return `${registryPath(stateDir, id)} already exists`;
      const ns = existingNamespaceNames().find((n) => n.startsWith(nsPrefix(id)));
      return ns === undefined ? null : `namespace ${ns} already exists`;
    };
    let runId = opts.runId ?? newRunId();
    if (!RUN_ID_RE.test(runId)) throw new InputError('runId', runId, 'must be 6 lowercase hex digits');
    for (let i = 0; opts.runId === undefined && i < 10 && taken(runId) !== null; i++) runId = newRunId();
    const why = taken(runId);
    if (why !== null) throw new AppError('RUN_EXISTS', `Cannot start run ${runId}: ${why} (clean it up first)`);
    const rec: RunRecord = {
      version: 1,
      runId,
      owner: { pid: process.pid, startTicks: processStartTicks(process.pid) },
      createdAtMs: Date.now(),
      namespaces: [],
      rootDevices: [],
      processes: [],
      files: [],
      meta: opts.meta ?? {},
    };
    writeRecord(stateDir, rec);
    return new NetnsRun(stateDir, rec);
  }

  get runId(): string {
    return this.rec.runId;
  }

  get record(): RunRecord {
    return structuredClone(this.rec);
  }

  setMeta(meta: Record<string, unknown>): void {
    this.rec.meta = { ...this.rec.meta, ...meta };
    this.save();
  }

  /** `vms-<runId>-<role>`: the name of this run's namespace for `role`. */
  nsName(role: string): string {
    if (!ROLE_RE.test(role)) throw new InputError('role', role, 'must be 1–40 lowercase letters, digits or "-", starting with a letter or digit');
    return `${nsPrefix(this.runId)}${role}`;
  }

  /** A root-namespace device name for `role`: `vm<runId><role>`, at most 15 characters. */
  rootIfName(role: string): string {
    return checkIfName(`vm${this.runId}${role}`, 'root interface name');
  }

  async addNamespace(role: string): Promise<string> {
    const ns = this.nsName(role);
    if (!this.rec.namespaces.includes(ns)) this.rec.namespaces.push(ns);
    this.save();
    await runIp(['netns', 'add', ns]);
    await runIp(['link', 'set', 'lo', 'up'], ns);
    return ns;
  }

  async deleteNamespace(ns: string): Promise<void> {
    this.ownNs(ns);
    await stopProcesses(
      (await namespacePids(ns)).map((pid) => ({ pid, startTicks: processStartTicks(pid) })),
      2000,
    );
    await deleteNs(ns);
    this.rec.namespaces = this.rec.namespaces.filter((n) => n !== ns);
    this.save();
  }

  /** A veth pair between two namespaces (null = root namespace); both ends get `mtu` if given. */
  async addVeth(a: { ns: string | null; name: string }, b: { ns: string | null; name: string }, opts: { mtu?: number } = {}): Promise<void> {
    checkIfName(a.name);
    checkIfName(b.name);
    for (const end of [a, b]) {
      if (end.ns === null) this.recordRootDevice(end.name);
      else this.ownNs(end.ns);
    }
    const mtu = opts.mtu === undefined ? [] : ['mtu', String(opts.mtu)];
    if (a.ns === null && b.ns === null) {
      await runIp(['link', 'add', a.name, ...mtu, 'type', 'veth', 'peer', 'name', b.name, ...mtu]);
    } else if (a.ns === null || b.ns === null) {
      // Created in the root namespace, the other end moved into its namespace.
      const [root, inner] = a.ns === null ? [a, b] : [b, a];
      await runIp(['link', 'add', root.name, ...mtu, 'type', 'veth', 'peer', 'name', inner.name, ...mtu, 'netns', inner.ns ?? '']);
    } else {
      const peerNs = b.ns !== a.ns ? ['netns', b.ns] : [];
      await runIp(['link', 'add', a.name, ...mtu, 'type', 'veth', 'peer', 'name', b.name, ...mtu, ...peerNs], a.ns);
    }
  }

  async addBridge(ns: string | null, name: string): Promise<void> {
    this.place(ns, name);
    await runIp(['link', 'add', name, 'type', 'bridge'], ns);
  }

  async addVxlan(ns: string | null, o: VxlanOptions): Promise<void> {
    this.place(ns, o.name);
    const args = ['link', 'add', o.name];
    if (o.mtu !== undefined) args.push('mtu', String(o.mtu));
    args.push('type', 'vxlan', 'id', String(o.vni), 'local', o.local, 'dstport', String(o.dstPort ?? 4789));
    if (o.dev !== undefined) args.push('dev', o.dev);
    if (o.learning === false) args.push('nolearning');
    await runIp(args, ns);
  }

  /** Head-end replication: frames with no learned location also go to `dst`. */
  async vxlanFlood(ns: string | null, dev: string, dst: string): Promise<void> {
    await runCommand(['bridge', ...(ns === null ? [] : ['-n', ns]), 'fdb', 'append', '00:00:00:00:00:00', 'dev', dev, 'dst', dst]);
  }

  async addTap(ns: string | null, name: string, opts: { bridge?: string; mtu?: number } = {}): Promise<void> {
    this.place(ns, name);
    await runIp(['tuntap', 'add', 'dev', name, 'mode', 'tap'], ns);
    if (opts.mtu !== undefined) await runIp(['link', 'set', name, 'mtu', String(opts.mtu)], ns);
    if (opts.bridge !== undefined) await this.setMaster(ns, name, opts.bridge);
    await this.linkUp(ns, name);
  }

  async deleteLink(ns: string | null, name: string): Promise<void> {
    await runIp(['link', 'del', name], ns);
    if (ns === null) {
      this.rec.rootDevices = this.rec.rootDevices.filter((d) => d !== name);
      this.save();
    }
  }

  async setMaster(ns: string | null, dev: string, master: string): Promise<void> {
    await runIp(['link', 'set', dev, 'master', master], ns);
  }

  async linkUp(ns: string | null, dev: string): Promise<void> {
    await runIp(['link', 'set', dev, 'up'], ns);
  }

  async setMtu(ns: string | null, dev: string, mtu: number): Promise<void> {
    await runIp(['link', 'set', dev, 'mtu', String(mtu)], ns);
  }

  async addAddress(ns: string | null, dev: string, cidr: string): Promise<void> {
    await runIp(['addr', 'add', cidr, 'dev', dev], ns);
  }

  async addRoute(ns: string | null, dest: string, via: { gateway?: string; dev?: string }): Promise<void> {
    const args = ['route', 'add', dest];
    if (via.gateway !== undefined) args.push('via', via.gateway);
    if (via.dev !== undefined) args.push('dev', via.dev);
    await runIp(args, ns);
  }

  /** A per-namespace sysctl (net.ipv4.*, net.core.somaxconn, …). */
  async sysctl(ns: string, key: string, value: string): Promise<void> {
    this.ownNs(ns);
    await execIn(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  async ethtool(ns: string, args: readonly string[]): Promise<void> {
    this.ownNs(ns);
    await execIn(ns, ['ethtool', ...args]);
  }

  execIn(ns: string, argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult & { code: number }> {
    this.ownNs(ns);
    return execIn(ns, argv, opts);
  }

  /**
   * Starts argv inside ns (`ip netns exec` execs the command, so the pid is the command's own) and
   * records it; cleanup stops it. The record is dropped when the process exits by itself.
   */
  spawnIn(ns: string | null, argv: readonly string[], opts: SpawnOptions = {}): SpawnedProcess {
    if (ns !== null) this.ownNs(ns);
    const full = ns === null ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
    const [file, ...args] = full;
    if (file === undefined) throw new InputError('argv', argv, 'must name a command');
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const pid = child.pid;
    if (pid === undefined) {
      throw new AppError('SPAWN_FAILED', `Cannot start ${full.join(' ')}: no pid (is ${file} installed?)`);
    }
    const rec: ProcessRecord = { pid, startTicks: processStartTicks(pid), argv: [...argv], ns };
    this.rec.processes.push(rec);
    this.save();
    child.once('exit', () => {
      this.rec.processes = this.rec.processes.filter((p) => p !== rec);
      this.save();
    });
    return { child, pid };
  }

  /** Records a process this run owns that was started some other way. */
  recordProcess(pid: number, argv: readonly string[], ns: string | null): void {
    this.rec.processes.push({ pid, startTicks: processStartTicks(pid), argv: [...argv], ns });
    this.save();
  }

  /** Records a file or directory that cleanup removes. */
  recordFile(file: string): string {
    const abs = path.resolve(file);
    if (abs === '/' || abs.split('/').length < 3) throw new InputError('file', file, 'must be a path at least two levels below /');
    if (!this.rec.files.includes(abs)) this.rec.files.push(abs);
    this.save();
    return abs;
  }

  /** Removes everything the run recorded (processes, namespaces, devices, files) and its registry. */
  destroy(opts: { graceMs?: number } = {}): Promise<CleanupReport> {
    // From here on the registry file belongs to cleanup: late exit handlers must not rewrite it.
    this.closed = true;
    return cleanupRun(this.runId, { stateDir: this.stateDir, ...opts });
  }

  private place(ns: string | null, name: string): void {
    checkIfName(name);
    if (ns === null) this.recordRootDevice(name);
    else this.ownNs(ns);
  }

  private recordRootDevice(name: string): void {
    if (!name.startsWith(`vm${this.runId}`)) {
      throw new InputError('device', name, `must be named by rootIfName() (vm${this.runId}…) in the root namespace so that it cannot collide`);
    }
    if (!this.rec.rootDevices.includes(name)) this.rec.rootDevices.push(name);
    this.save();
  }

  private ownNs(ns: string): void {
    if (!ns.startsWith(nsPrefix(this.runId))) {
      throw new InputError('ns', ns, `is not a namespace of run ${this.runId} (names start with ${nsPrefix(this.runId)})`);
    }
  }

  private save(): void {
    if (this.closed) return;
    writeRecord(this.stateDir, this.rec);
  }
}

async function deleteNs(ns: string): Promise<boolean> {
  try {
    await runIp(['netns', 'del', ns]);
    return true;
  } catch (e) {
    if (e instanceof CommandError && /No such file|not found|does not exist/i.test(e.stderr)) return false;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup

export interface CleanupReport {
  runId: string;
  processesStopped: number[];
  namespacesDeleted: string[];
  devicesDeleted: string[];
  filesRemoved: string[];
  /** what could not be removed, each naming the thing and why */
  errors: string[];
}

/**
 * Removes everything of run `runId`: its recorded processes, every process inside its namespaces,
 * its namespaces (recorded ones and any `vms-<runId>-*` found), root devices, files, then the
 * registry. Idempotent; safe when the owner is dead. Refuses when not root.
 */
export async function cleanupRun(runId: string, opts: { stateDir?: string; graceMs?: number } = {}): Promise<CleanupReport> {
  assertRoot(`clean up lab run ${runId}`);
  if (!RUN_ID_RE.test(runId)) throw new InputError('runId', runId, 'must be 6 lowercase hex digits');
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  const rec = readRecord(stateDir, runId);
  const report: CleanupReport = { runId, processesStopped: [], namespacesDeleted: [], devicesDeleted: [], filesRemoved: [], errors: [] };

  const prefix = nsPrefix(runId);
  const present = (await listNamespaces()).filter((n) => n.startsWith(prefix));
  const namespaces = [...new Set([...(rec?.namespaces ?? []), ...present])];

  // Processes first: a namespace with a live process in it outlives `ip netns del`.
  const procs: { pid: number; startTicks: number | null }[] = [...(rec?.processes ?? [])];
  for (const ns of namespaces) {
    for (const pid of await namespacePids(ns)) procs.push({ pid, startTicks: processStartTicks(pid) });
  }
  report.processesStopped = await stopProcesses(procs, opts.graceMs ?? 2000);
  for (const p of procs) {
    if (isProcessAlive(p.pid, p.startTicks) && p.pid !== process.pid) report.errors.push(`process ${p.pid} still alive after SIGKILL`);
  }

  for (const ns of namespaces) {
    try {
      if (await deleteNs(ns)) report.namespacesDeleted.push(ns);
    } catch (e) {
      report.errors.push(`namespace ${ns}: ${(e as Error).message}`);
    }
  }
  for (const dev of rec?.rootDevices ?? []) {
    try {
      await runIp(['link', 'del', dev]);
      report.devicesDeleted.push(dev);
    } catch (e) {
      if (!(e instanceof CommandError && /Cannot find device|does not exist/.test(e.stderr))) report.errors.push(`device ${dev}: ${(e as Error).message}`);
    }
  }
  for (const f of rec?.files ?? []) {
    if (f === '/' || !path.isAbsolute(f) || f.split('/').length < 3) {
      report.errors.push(`file ${f}: refused to remove (not a deep absolute path)`);
      continue;
    }
    try {
      rmSync(f, { force: true, recursive: true });
      report.filesRemoved.push(f);
    } catch (e) {
      report.errors.push(`file ${f}: ${(e as Error).message}`);
    }
  }
  if (report.errors.length === 0) rmSync(registryPath(stateDir, runId), { force: true });
  return report;
}

export interface LeftoverRun {
  runId: string;
  record: RunRecord;
  ownerAlive: boolean;
}

/** Runs in stateDir whose owner process is gone (pid dead, or reused by another process). */
export function findLeftoverRuns(opts: { stateDir?: string } = {}): LeftoverRun[] {
  return listRuns(opts).filter((r) => !r.ownerAlive);
}

/** Every run in stateDir, live or not (for `lab status`). */
export function listRuns(opts: { stateDir?: string } = {}): LeftoverRun[] {
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^([0-9a-f]{6})\.json$/.exec(n)?.[1])
    .filter((id): id is string => id !== undefined)
    .map((id) => readRecord(stateDir, id))
    .filter((r): r is RunRecord => r !== null)
    .map((record) => ({ runId: record.runId, record, ownerAlive: record.owner.pid > 0 && isProcessAlive(record.owner.pid, record.owner.startTicks) }));
}

/**
 * On SIGINT, SIGTERM or SIGHUP runs `cleanup` once (e.g. `() => run.destroy()`), then exits with
 * 128 + the signal number. A second signal while cleaning up is ignored; SIGKILL is what
 * findLeftoverRuns() is for. Returns a function that removes the handlers.
 */
export function cleanupOnSignals(cleanup: () => Promise<unknown>, opts: { timeoutMs?: number } = {}): () => void {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  let running = false;
  const handler = (sig: NodeJS.Signals): void => {
    if (running) return;
    running = true;
    const code = 128 + (numbers[sig] ?? 0);
    const timer = setTimeout(() => process.exit(code), opts.timeoutMs ?? 15_000);
    cleanup()
      .catch((e: unknown) => process.stderr.write(`cleanup after ${sig} failed: ${(e as Error).message}\n`))
      .finally(() => {
        clearTimeout(timer);
        process.exit(code);
      });
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, handler);
  return () => {
    for (const s of sigs) process.off(s, handler);
  };
}
