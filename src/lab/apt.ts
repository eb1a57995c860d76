// Installs the Debian packages the lab needs when they are missing: `apt-get update` + `apt-get install
// --no-install-recommends`, retried while another apt holds the dpkg lock (a fresh machine often runs
// unattended upgrades) — the same loop as scripts/setup.sh's apt_install.
import { execFile } from 'node:child_process';
import { AppError } from '../core/errors.js';

/** What `vmshadow lab up` runs: namespaces and links, QEMU, the WAN trap fix, flow export, ping, sysctl, TLS. */
export const LAB_PACKAGES: readonly string[] = ['iproute2', 'qemu-system-x86', 'qemu-utils', 'ethtool', 'softflowd', 'iputils-ping', 'procps', 'openssl'];
/** What scripts/build-guest.sh needs to build the tiny guest the first time. */
export const GUEST_BUILD_PACKAGES: readonly string[] = ['gcc', 'libc6-dev', 'cpio'];

export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (no shell) and resolves with its exit code; rejects only when it cannot start (ENOENT…). */
export type Runner = (argv: readonly string[], opts: { timeoutMs: number; env?: Record<string, string> }) => Promise<CommandRun>;

export const defaultRunner: Runner = (argv, opts) =>
  new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) {
      reject(new AppError('APT_FAILED', 'no command to run'));
      return;
    }
    execFile(file, args, { timeout: opts.timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8', env: { ...process.env, ...opts.env } }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ code: 0, stdout, stderr });
        return;
      }
      const e = err as Error & { code?: number | string };
      if (typeof e.code === 'number') resolve({ code: e.code, stdout, stderr });
      else if (e.code === 'ENOENT') reject(e);
      else resolve({ code: -1, stdout, stderr: `${stderr}\n${e.message}` });
    });
  });

export interface AptOptions {
  run?: Runner;
  /** attempts of update + install (default 30, as scripts/setup.sh) */
  attempts?: number;
  /** between attempts (default 10 s) */
  delayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** progress lines for a human */
  log?: (line: string) => void;
}

/** The packages of `packages` that dpkg does not report as installed. */
export async function missingPackages(packages: readonly string[], opts: { run?: Runner } = {}): Promise<string[]> {
  const run = opts.run ?? defaultRunner;
  const missing: string[] = [];
  for (const p of packages) {
    let r: CommandRun;
    try {
      r = await run(['dpkg-query', '-W', '-f=${Status}', p], { timeoutMs: 30_000 });
    } catch (e) {
      throw new AppError('APT_UNAVAILABLE', `Cannot check whether ${p} is installed: dpkg-query is missing (${(e as Error).message}); this machine is not Debian-like, so install ${packages.join(', ')} by hand`, { cause: e });
    }
    if (!(r.code === 0 && /\binstall ok installed\b/.test(r.stdout))) missing.push(p);
  }
  return missing;
}

/**
 * Installs whichever of `packages` are missing; resolves with the ones it installed (empty when all were
 * there). Each attempt runs `apt-get update` then `apt-get install -y --no-install-recommends`.
 */
export async function aptInstall(packages: readonly string[], opts: AptOptions = {}): Promise<string[]> {
  const run = opts.run ?? defaultRunner;
  const attempts = opts.attempts ?? 30;
  const delayMs = opts.delayMs ?? 10_000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const log = opts.log ?? (() => undefined);
  const missing = await missingPackages(packages, { run });
  if (missing.length === 0) return [];
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  let last = '';
  for (let i = 1; i <= attempts; i++) {
    log(`installing ${missing.join(' ')} (apt-get, attempt ${i} of ${attempts})`);
    try {
      const up = await run(['apt-get', 'update', '-q'], { timeoutMs: 300_000, env });
      const inst = up.code === 0 ? await run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...missing], { timeoutMs: 900_000, env }) : up;
      if (inst.code === 0) {
        const still = await missingPackages(missing, { run });
        if (still.length === 0) return missing;
        last = `apt-get succeeded but ${still.join(', ')} is still not installed`;
      } else {
        last = `exit code ${inst.code}: ${lastLines(inst.stderr || inst.stdout)}`;
      }
    } catch (e) {
      throw new AppError('APT_UNAVAILABLE', `Cannot install ${missing.join(', ')}: apt-get cannot run (${(e as Error).message}); install them by hand`, { cause: e });
    }
    if (i < attempts) {
      log(`apt-get failed (${last}); another apt may hold the lock, retrying in ${Math.round(delayMs / 1000)} s`);
      await sleep(delayMs);
    }
  }
  throw new AppError('APT_FAILED', `Cannot install ${missing.join(', ')}: apt-get failed ${attempts} times; last: ${last}`, { retryable: true });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' / ') || '(no output)';
}
