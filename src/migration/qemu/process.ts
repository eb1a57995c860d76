// The one place that starts QEMU. qemuArgs()/launchCommand()/guestAppend() are pure; the rest
// starts, finds, watches and stops daemonized QEMU processes by pid.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, InputError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';

/** What the test guest's /init reads from the kernel command line (see guest/init). */
export interface GuestSettings {
  /** vm.name; defaults to the VM's name. */
  readonly name?: string;
  /** vm.ip: eth0's address, `A.B.C.D/NN`. */
  readonly ipCidr?: string;
  /** vm.gw: the default route. */
  readonly gateway?: string;
  /** vm.dirty: memtest's working set, rewritten at rateMiBps (0: written once, then only verified). */
  readonly dirty?: { readonly workingSetMiB: number; readonly rateMiBps: number };
  /** vm.check-ms: how often memtest verifies every page. */
  readonly checkIntervalMs?: number;
  /** vm.mkfs=1: format /dev/vda as ext2 when it holds no file system. */
  readonly mkfs?: boolean;
  /** vm.diskwrite: 4 KiB blocks written (and fsynced) to the disk each second. */
  readonly diskWriteBlocksPerS?: number;
}

export interface QemuDisk {
  readonly path: string;
  readonly format: 'qcow2' | 'raw';
  /** The format node's name, by which QMP addresses the disk (its file node is `<nodeName>-file`). */
  readonly nodeName: string;
  readonly readOnly?: boolean;
}

/** A NIC on a tap device (created beforehand, `script=no`), or on any other `-netdev` backend. */
export type QemuNic =
  | { readonly mac: string; readonly tap: string }
  | { readonly mac: string; readonly netdev: string };

export interface QemuVmSpec {
  /** Also the basis of file names: letters, digits, `.`, `_`, `-`. */
  readonly name: string;
  readonly memoryMiB: number;
  readonly vcpu: number;
  readonly kernel: string;
  readonly initrd: string;
  readonly guest?: GuestSettings;
  /** More kernel arguments (no spaces inside one). */
  readonly kernelArgs?: readonly string[];
  readonly disk?: QemuDisk;
  readonly nics?: readonly QemuNic[];
  /** The guest's serial console, written by QEMU (truncated at start). */
  readonly serialLogPath: string;
  /** QMP's unix socket (QEMU listens; at most 107 bytes). */
  readonly qmpPath: string;
  /** `-incoming <uri>`; `defer` for a destination that waits for `migrate-incoming`. */
  readonly incoming?: string;
  /** `-S`: the CPUs stay stopped until QMP `cont`. */
  readonly startPaused?: boolean;
  /** TCG's translation cache, MiB (QEMU's default is large; smaller saves host memory). */
  readonly tcgTbSizeMiB?: number;
  readonly extraArgs?: readonly string[];
  /** Run QEMU inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
}

/** Always on the kernel command line: serial console, no reboot loop, and `pti=on` (see below). */
export const BASE_KERNEL_ARGS: readonly string[] = ['console=ttyS0', 'panic=-1', 'pti=on'];
// pti=on: under TCG, QEMU 7.2 loses re-dirtied pages whose TLB entries stay hot, so a migration
// "completes" with stale pages at the destination; a TLB flush on every kernel exit avoids it.

export const QEMU_BINARY = 'qemu-system-x86_64';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NODE_RE = /^[A-Za-z][A-Za-z0-9_-]{0,26}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IPV4 = '(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4_RE = new RegExp(`^${IPV4}$`);
const CIDR_RE = new RegExp(`^${IPV4}/(?:3[0-2]|[12]?\\d)$`);
/** sun_path holds 108 bytes with the terminating NUL. */
const MAX_UNIX_PATH_BYTES = 107;

function check(ok: boolean, field: string, value: unknown, problem: string): void {
  if (!ok) throw new InputError(field, value, problem);
}

function checkInt(value: number, field: string, min: number, max: number): void {
  check(Number.isInteger(value) && value >= min && value <= max, field, value, `must be an integer from ${min} to ${max}`);
}

function checkPath(value: string, field: string): void {
  check(typeof value === 'string' && value.length > 0 && !value.includes('\0'), field, value, 'must be a non-empty path');
}

/** QEMU's option syntax ends a value at a comma; a doubled comma is a literal one. */
export function escapeOptValue(v: string): string {
  return v.replaceAll(',', ',,');
}

/** The kernel command line: the base arguments, the guest's settings, then kernelArgs. PURE. */
export function guestAppend(spec: Pick<QemuVmSpec, 'name' | 'guest' | 'kernelArgs'>): string {
  const g = spec.guest ?? {};
  const out = [...BASE_KERNEL_ARGS];
  const name = g.name ?? spec.name;
  check(NAME_RE.test(name), 'guest.name', name, 'must be letters, digits, ".", "_" or "-" (at most 63)');
  out.push(`vm.name=${name}`);
  if (g.ipCidr !== undefined) {
    check(CIDR_RE.test(g.ipCidr), 'guest.ipCidr', g.ipCidr, 'must be an IPv4 address with a prefix length, A.B.C.D/NN');
    out.push(`vm.ip=${g.ipCidr}`);
  }
  if (g.gateway !== undefined) {
    check(IPV4_RE.test(g.gateway), 'guest.gateway', g.gateway, 'must be an IPv4 address');
    out.push(`vm.gw=${g.gateway}`);
  }
  if (g.dirty !== undefined) {
    checkInt(g.dirty.workingSetMiB, 'guest.dirty.workingSetMiB', 1, 1 << 20);
    checkInt(g.dirty.rateMiBps, 'guest.dirty.rateMiBps', 0, 1 << 20);
    out.push(`vm.dirty=${g.dirty.workingSetMiB}:${g.dirty.rateMiBps}`);
  }
  if (g.checkIntervalMs !== undefined) {
    checkInt(g.checkIntervalMs, 'guest.checkIntervalMs', 10, 3_600_000);
    out.push(`vm.check-ms=${g.checkIntervalMs}`);
  }
  if (g.mkfs === true) out.push('vm.mkfs=1');
  if (g.diskWriteBlocksPerS !== undefined) {
    checkInt(g.diskWriteBlocksPerS, 'guest.diskWriteBlocksPerS', 0, 100_000);
    out.push(`vm.diskwrite=${g.diskWriteBlocksPerS}`);
  }
  (spec.kernelArgs ?? []).forEach((a, i) => {
    check(a.length > 0 && !/[\s"]/.test(a), `kernelArgs[${i}]`, a, 'must be one word without spaces or quotes');
    out.push(a);
  });
  return out.join(' ');
}

/** QEMU's arguments for the VM (without the binary, -daemonize or -pidfile). PURE; throws InputError. */
export function qemuArgs(spec: QemuVmSpec): string[] {
  check(NAME_RE.test(spec.name), 'name', spec.name, 'must be letters, digits, ".", "_" or "-" (at most 63)');
  checkInt(spec.memoryMiB, 'memoryMiB', 16, 1 << 20);
  checkInt(spec.vcpu, 'vcpu', 1, 64);
  checkPath(spec.kernel, 'kernel');
  checkPath(spec.initrd, 'initrd');
  checkPath(spec.serialLogPath, 'serialLogPath');
  checkPath(spec.qmpPath, 'qmpPath');
  check(new TextEncoder().encode(spec.qmpPath).length <= MAX_UNIX_PATH_BYTES, 'qmpPath', spec.qmpPath,
    `must be at most ${MAX_UNIX_PATH_BYTES} bytes (a unix socket path)`);

  const accel = spec.tcgTbSizeMiB === undefined ? 'tcg' : `tcg,tb-size=${spec.tcgTbSizeMiB}`;
  if (spec.tcgTbSizeMiB !== undefined) checkInt(spec.tcgTbSizeMiB, 'tcgTbSizeMiB', 1, 4096);
  const args = [
    '-name', `guest=${spec.name}`,
    '-accel', accel, '-M', 'pc', '-cpu', 'qemu64',
    '-m', `${spec.memoryMiB}M`, '-smp', String(spec.vcpu),
    '-display', 'none', '-nodefaults', '-no-user-config', '-no-reboot',
    '-kernel', spec.kernel, '-initrd', spec.initrd, '-append', guestAppend(spec),
    '-chardev', `file,id=serial0,path=${escapeOptValue(spec.serialLogPath)}`, '-serial', 'chardev:serial0',
    '-chardev', `socket,id=qmp0,path=${escapeOptValue(spec.qmpPath)},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
  ];

  if (spec.disk !== undefined) {
    const d = spec.disk;
    checkPath(d.path, 'disk.path');
    check(d.format === 'qcow2' || d.format === 'raw', 'disk.format', d.format, 'must be "qcow2" or "raw"');
    check(NODE_RE.test(d.nodeName), 'disk.nodeName', d.nodeName,
      'must start with a letter, then letters, digits, "_" or "-" (at most 27)');
    const ro = d.readOnly === true;
    // JSON -blockdev needs no escaping of the path; explicit node names let QMP address both nodes.
    args.push('-blockdev', JSON.stringify({ driver: 'file', filename: d.path, 'node-name': `${d.nodeName}-file`, 'read-only': ro }));
    args.push('-blockdev', JSON.stringify({ driver: d.format, file: `${d.nodeName}-file`, 'node-name': d.nodeName, 'read-only': ro }));
    args.push('-device', `virtio-blk-pci,drive=${d.nodeName},id=${d.nodeName}-dev`);
  }

  (spec.nics ?? []).forEach((nic, i) => {
    check(MAC_RE.test(nic.mac), `nics[${i}].mac`, nic.mac, 'must be a MAC address, xx:xx:xx:xx:xx:xx');
    check((parseInt(nic.mac.slice(0, 2), 16) & 1) === 0, `nics[${i}].mac`, nic.mac, 'must be unicast (first octet even)');
    const id = `net${i}`;
    if ('tap' in nic) {
      check(IFNAME_RE.test(nic.tap), `nics[${i}].tap`, nic.tap, 'must be an interface name (1-15 letters, digits, "_", "." or "-")');
      args.push('-netdev', `tap,id=${id},ifname=${nic.tap},script=no,downscript=no`);
    } else {
      const m = /^([a-z-]+)(,.*)?$/.exec(nic.netdev);
      check(m !== null && !/(^|,)id=/.test(nic.netdev), `nics[${i}].netdev`, nic.netdev,
        'must be a -netdev value "TYPE[,OPTIONS]" without id=');
      args.push('-netdev', `${m?.[1] ?? ''},id=${id}${m?.[2] ?? ''}`);
    }
    args.push('-device', `virtio-net-pci,netdev=${id},mac=${nic.mac.toLowerCase()},id=${id}-dev,romfile=`);
  });

  if (spec.incoming !== undefined) {
    check(spec.incoming.length > 0, 'incoming', spec.incoming, 'must be "defer" or a migration URI');
    args.push('-incoming', spec.incoming);
  }
  if (spec.startPaused === true) args.push('-S');
  args.push(...(spec.extraArgs ?? []));
  return args;
}

/** The full command: QEMU (inside `ip netns exec` when asked), daemonized, with its pid file. PURE. */
export function launchCommand(spec: QemuVmSpec, pidfile: string, qemuBinary = QEMU_BINARY): { file: string; args: string[] } {
  const qemu = [...qemuArgs(spec), '-daemonize', '-pidfile', pidfile];
  if (spec.netns === undefined) return { file: qemuBinary, args: qemu };
  check(IFNAME_RE.test(spec.netns), 'netns', spec.netns, 'must be a namespace name (1-15 letters, digits, "_", "." or "-")');
  return { file: 'ip', args: ['netns', 'exec', spec.netns, qemuBinary, ...qemu] };
}

/** A locally administered unicast MAC derived from a name (stable across runs). PURE. */
export function macForName(name: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const b = [0x52, 0x54, 0x00, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

// ---------------------------------------------------------------------------------------------
// Effects

export interface QemuProcess {
  readonly name: string;
  readonly pid: number;
  readonly pidfile: string;
  readonly qmpPath: string;
  readonly consolePath: string;
}

export interface LaunchOptions {
  /** Holds the pid file `<name>.pid`. */
  readonly workDir: string;
  readonly log: Logger;
  readonly qemuBinary?: string;
  /** How long QEMU may take to initialise and daemonize. */
  readonly startTimeoutMs?: number;
}

/** Where launchQemu() keeps the pid file of the VM with this name. */
export function pidfileFor(workDir: string, name: string): string {
  return join(resolve(workDir), `${name}.pid`);
}

/**
 * Starts QEMU daemonized, so the VM outlives the process that started it: a manager killed -9 finds
 * it again with findQemu(pidfile). Resolves once QEMU has initialised (its QMP socket listens).
 */
export async function launchQemu(spec: QemuVmSpec, opts: LaunchOptions): Promise<QemuProcess> {
  const workDir = resolve(opts.workDir);
  const pidfile = pidfileFor(workDir, spec.name);
  const cmd = launchCommand(spec, pidfile, opts.qemuBinary);
  const running = await findQemu(pidfile);
  if (running !== undefined) {
    throw new AppError('QEMU_ALREADY_RUNNING', `Cannot start QEMU for ${spec.name}: pid ${running} from ${pidfile} is still running`);
  }
  await mkdir(workDir, { recursive: true });
  await mkdir(dirname(resolve(spec.serialLogPath)), { recursive: true });
  await mkdir(dirname(resolve(spec.qmpPath)), { recursive: true });
  await rm(pidfile, { force: true });
  await rm(spec.qmpPath, { force: true });

  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const started = Date.now();
  const child = spawn(cmd.file, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d: Buffer): void => { if (output.length < 16_384) output += d.toString(); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const code = await new Promise<number | null>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new AppError('QEMU_START_TIMEOUT', `QEMU for ${spec.name} did not daemonize within ${timeoutMs} ms; killed the launcher (pid ${child.pid ?? '?'})`, { retryable: true }));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new AppError('QEMU_MISSING', `Cannot run ${cmd.file}: ${e.message} (install qemu-system-x86 and iproute2)`, { cause: e }));
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolvePromise(c);
    });
  });
  // The daemon's own stdio went to /dev/null; stop listening to whatever is left of the pipes.
  child.stdout.destroy();
  child.stderr.destroy();
  if (code !== 0) {
    const pid = await findQemu(pidfile);
    if (pid !== undefined) await killQemu(pid);
    throw new AppError('QEMU_START_FAILED', `QEMU for ${spec.name} exited with code ${code} while starting: ${output.trim().split('\n').slice(-3).join(' / ') || 'no output'}`);
  }
  const pid = await readPidfile(pidfile);
  if (pid === undefined || !isAlive(pid)) {
    throw new AppError('QEMU_START_FAILED', `QEMU for ${spec.name} reported success but ${pidfile} holds ${pid ?? 'no pid'} and no such process runs`);
  }
  opts.log.info('qemu started', { vm: spec.name, pid, netns: spec.netns, qmp: spec.qmpPath, console: spec.serialLogPath, startMs: Date.now() - started });
  return { name: spec.name, pid, pidfile, qmpPath: spec.qmpPath, consolePath: spec.serialLogPath };
}

async function readPidfile(pidfile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(pidfile, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/** The pid of the QEMU that wrote this pid file, if that QEMU still runs (not a reused pid). */
export async function findQemu(pidfile: string): Promise<number | undefined> {
  const pid = await readPidfile(pidfile);
  if (pid === undefined || !isAlive(pid)) return undefined;
  let cmdline: string[];
  try {
    cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  } catch {
    return undefined;
  }
  const isQemu = cmdline.some((a) => a.includes('qemu-system'));
  const pidfileAt = cmdline.indexOf('-pidfile');
  const samePidfile = pidfileAt >= 0 && resolve(cmdline[pidfileAt + 1] ?? '') === resolve(pidfile);
  return isQemu && samePidfile ? pid : undefined;
}

/** True while the process exists and is not a zombie (daemonized QEMU's parent may never reap it). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  // The state follows the command name, which is in parentheses and may itself hold ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X' && state !== '';
}

export type KillOutcome = 'not-running' | 'terminated' | 'killed';

/** SIGTERM, then SIGKILL once graceMs has passed; resolves when the process is gone. */
export async function killQemu(pid: number, opts: { graceMs?: number; log?: Logger } = {}): Promise<KillOutcome> {
  if (!isAlive(pid)) return 'not-running';
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  };
  signal('SIGTERM');
  const graceMs = opts.graceMs ?? 5_000;
  if (await waitGone(pid, graceMs)) {
    opts.log?.info('qemu terminated', { pid });
    return 'terminated';
  }
  opts.log?.warn('qemu ignored SIGTERM, killing it', { pid, graceMs });
  signal('SIGKILL');
  if (await waitGone(pid, 5_000)) return 'killed';
  throw new AppError('QEMU_KILL_FAILED', `QEMU pid ${pid} still runs 5 s after SIGKILL (state in /proc/${pid}/stat)`);
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await sleep(25);
  }
  return !isAlive(pid);
}

export interface ConsoleMatch {
  readonly line: string;
  readonly match: RegExpExecArray;
  /** Byte offset just after the matching line: pass it as fromOffset to wait for a later line. */
  readonly offset: number;
}

export interface WaitConsoleOptions {
  /** Start reading here (bytes); 0 by default. */
  readonly fromOffset?: number;
  /** Fail early when this process dies. */
  readonly pid?: number;
  readonly pollMs?: number;
}

/** Lines as written to the serial console: CR LF endings and stray NULs removed. */
export function splitConsole(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/[\r\0]/g, ''));
}

/** All lines of a serial log so far (empty when the file does not exist yet). */
export async function readConsole(path: string): Promise<string[]> {
  try {
    const lines = splitConsole(await readFile(path, 'latin1'));
    if (lines[lines.length - 1] === '') lines.pop();
    return lines;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/**
 * Tails a serial log until a complete line matches. The error names the file and the last lines seen.
 */
export async function waitForConsole(path: string, regex: RegExp, timeoutMs: number, opts: WaitConsoleOptions = {}): Promise<ConsoleMatch> {
  const started = Date.now();
  const pollMs = opts.pollMs ?? 100;
  let pos = opts.fromOffset ?? 0; // the next byte to read
  let pending = ''; // an unfinished line, ending at pos
  const recent: string[] = [];
  const buf = Buffer.alloc(64 * 1024);
  const lastLines = (): string => (recent.length === 0 ? '(none)' : recent.slice(-8).map((l) => JSON.stringify(l.slice(0, 160))).join(' | '));
  for (;;) {
    let file: FileHandle | undefined;
    try {
      file = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (file !== undefined) {
      try {
        for (;;) {
          const { bytesRead } = await file.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          // latin1 maps each byte to one char, so string lengths are byte counts.
          let lineStart = pos - pending.length;
          const parts = (pending + buf.toString('latin1', 0, bytesRead)).split('\n');
          pos += bytesRead;
          pending = parts.pop() ?? '';
          if (pending.length > 65_536) {
            lineStart += pending.length;
            pending = '';
          }
          for (const raw of parts) {
            const lineEnd = lineStart + raw.length + 1;
            lineStart = lineEnd;
            const line = raw.replace(/[\r\0]/g, '');
            if (line === '') continue;
            recent.push(line);
            if (recent.length > 50) recent.shift();
            regex.lastIndex = 0;
            const match = regex.exec(line);
            if (match !== null) return { line, match, offset: lineEnd };
          }
        }
      } finally {
        await file.close();
      }
    }
    const elapsed = Date.now() - started;
    if (elapsed >= timeoutMs) {
      throw new AppError('QEMU_CONSOLE_TIMEOUT', `No line matching ${String(regex)} in ${path} after ${timeoutMs} ms; last lines: ${lastLines()}`, { retryable: true });
    }
    if (opts.pid !== undefined && !isAlive(opts.pid)) {
      throw new AppError('QEMU_EXITED', `QEMU pid ${opts.pid} exited while waiting for ${String(regex)} in ${path}; last lines: ${lastLines()}`);
    }
    await sleep(Math.min(pollMs, timeoutMs - elapsed));
  }
}
