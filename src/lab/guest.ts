// The tiny guest (Debian cloud kernel + busybox initramfs, see guest/ and scripts/build-guest.sh) that the
// lab's desktop VMs, tests and benches boot under QEMU, and parsers for what it prints on its serial console.
// (src/testing/guest.ts re-exports this module for the tests.)
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../core/errors.js';

export interface GuestManifest {
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly busyboxVersion: string;
  readonly builtAt: string;
  readonly buildMs: number;
}

export interface GuestImage {
  readonly dir: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The in-guest memory verifier, built static: it runs on the host too. */
  readonly memtest: string;
  readonly manifest: GuestManifest;
}

/** The repository root: the nearest folder above this file holding scripts/build-guest.sh. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, 'scripts', 'build-guest.sh'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new AppError('GUEST_NO_REPO', `Cannot find scripts/build-guest.sh above ${fileURLToPath(import.meta.url)}`);
}

const builds = new Map<string, Promise<GuestImage>>();

/**
 * The built guest's paths. Builds it with scripts/build-guest.sh on first use (once per process and
 * output folder; the script itself skips an up-to-date build and locks against concurrent ones).
 */
export function ensureGuest(opts: { outDir?: string; timeoutMs?: number } = {}): Promise<GuestImage> {
  const root = repoRoot();
  const outDir = resolve(opts.outDir ?? join(root, '.cache', 'guest'));
  let p = builds.get(outDir);
  if (p === undefined) {
    p = buildGuest(root, outDir, opts.timeoutMs ?? 300_000);
    builds.set(outDir, p);
    // A failed build may succeed later (apt lock, network): do not cache the failure.
    p.catch(() => builds.delete(outDir));
  }
  return p;
}

async function buildGuest(root: string, outDir: string, timeoutMs: number): Promise<GuestImage> {
  const script = join(root, 'scripts', 'build-guest.sh');
  const child = spawn('bash', [script, outDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d: Buffer): void => { output = (output + d.toString()).slice(-8_192); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const code = await new Promise<number | null>((done, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new AppError('GUEST_BUILD_TIMEOUT', `${script} ${outDir} did not finish within ${timeoutMs} ms; killed it. Output: ${tail(output)}`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new AppError('GUEST_BUILD_FAILED', `Cannot run bash ${script}: ${e.message}`, { cause: e }));
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      done(c);
    });
  });
  if (code !== 0) {
    throw new AppError('GUEST_BUILD_FAILED', `Building the test guest failed (${script} ${outDir} exited with ${code}): ${tail(output)}`);
  }
  const image: GuestImage = {
    dir: outDir,
    kernel: join(outDir, 'vmlinuz'),
    initrd: join(outDir, 'initrd.img'),
    memtest: join(outDir, 'memtest'),
    manifest: JSON.parse(readFileSync(join(outDir, 'manifest.json'), 'utf8')) as GuestManifest,
  };
  for (const f of [image.kernel, image.initrd, image.memtest]) {
    if (!existsSync(f)) throw new AppError('GUEST_BUILD_FAILED', `${script} succeeded but ${f} is missing`);
  }
  return image;
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-5).join(' / ') || 'no output';
}

// ---------------------------------------------------------------------------------------------
// What the guest prints (PURE helpers)

/** `VMSHADOW-GUEST READY name=<name> ip=<address or none>` */
export const GUEST_READY_RE = /VMSHADOW-GUEST READY name=(\S+) ip=(\S+)/;

export function guestReadyRegex(name: string): RegExp {
  return new RegExp(`VMSHADOW-GUEST READY name=${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ip=(\\S+)`);
}

export type MemtestLine =
  | { kind: 'start'; pages: number; setMiB: number; rateMiBps: number }
  | { kind: 'ok'; check: number; gen: number; pages: number; rateMiBps: number; staleTotal: number }
  | { kind: 'fail'; check: number; gen: number; stale: number; staleTotal: number }
  | { kind: 'stale'; page: number; expectedGen: number; found: string }
  | { kind: 'inject'; page: number }
  | { kind: 'error'; message: string };

const MEMTEST_PATTERNS: readonly [RegExp, (m: RegExpExecArray) => MemtestLine][] = [
  [/MEMTEST start pages=(\d+) set-mib=(\d+) rate=(\d+)/, (m) => ({ kind: 'start', pages: num(m[1]), setMiB: num(m[2]), rateMiBps: num(m[3]) })],
  [/MEMTEST ok check=(\d+) gen=(\d+) pages=(\d+) rate=([\d.]+) stale-total=(\d+)/, (m) => ({
    kind: 'ok', check: num(m[1]), gen: num(m[2]), pages: num(m[3]), rateMiBps: num(m[4]), staleTotal: num(m[5]),
  })],
  [/MEMTEST FAIL check=(\d+) gen=(\d+) stale=(\d+) stale-total=(\d+)/, (m) => ({
    kind: 'fail', check: num(m[1]), gen: num(m[2]), stale: num(m[3]), staleTotal: num(m[4]),
  })],
  [/MEMTEST STALE page=(\d+) expected-gen=(\d+) found=(.*)$/, (m) => ({ kind: 'stale', page: num(m[1]), expectedGen: num(m[2]), found: m[3] ?? '' })],
  [/MEMTEST inject page=(\d+)/, (m) => ({ kind: 'inject', page: num(m[1]) })],
  [/MEMTEST ERROR (.*)$/, (m) => ({ kind: 'error', message: m[1] ?? '' })],
];

function num(s: string | undefined): number {
  return Number(s);
}

export function parseMemtestLine(line: string): MemtestLine | undefined {
  for (const [re, build] of MEMTEST_PATTERNS) {
    const m = re.exec(line);
    if (m !== null) return build(m);
  }
  return undefined;
}

export interface MemtestSummary {
  /** Clean checks (every page held what was last written). */
  readonly okChecks: number;
  readonly failedChecks: number;
  readonly stalePages: number;
  readonly errors: readonly string[];
  readonly lastOk?: Extract<MemtestLine, { kind: 'ok' }>;
}

/** Memory verified = at least one clean check, no failed check, no stale page, no error. */
export function summarizeMemtest(lines: readonly string[]): MemtestSummary & { readonly verified: boolean } {
  let okChecks = 0;
  let failedChecks = 0;
  let stalePages = 0;
  const errors: string[] = [];
  let lastOk: Extract<MemtestLine, { kind: 'ok' }> | undefined;
  for (const line of lines) {
    const m = parseMemtestLine(line);
    if (m === undefined) continue;
    if (m.kind === 'ok') {
      okChecks++;
      lastOk = m;
    } else if (m.kind === 'fail') {
      failedChecks++;
      stalePages += m.stale;
    } else if (m.kind === 'error') {
      errors.push(m.message);
    }
  }
  const verified = okChecks > 0 && failedChecks === 0 && stalePages === 0 && errors.length === 0;
  return lastOk === undefined
    ? { okChecks, failedChecks, stalePages, errors, verified }
    : { okChecks, failedChecks, stalePages, errors, lastOk, verified };
}
