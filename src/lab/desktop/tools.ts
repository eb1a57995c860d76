// The programs a lab desktop runs: Xvnc (tigervnc-standalone-server), xterm, xdotool from Debian,
// and desktop-video, built from video.c by scripts/build-desktop-tools.sh into .cache/desktop.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../core/errors.js';

export interface DesktopTools {
  xvnc: string;
  xterm: string;
  xdotool: string;
  video: string;
}

/** Debian packages behind each tool (for messages and set-up). */
export const DESKTOP_APT_PACKAGES = ['tigervnc-standalone-server', 'xterm', 'xdotool', 'libx11-dev', 'gcc', 'libc6-dev'] as const;

const BUILD_SCRIPT = join('scripts', 'build-desktop-tools.sh');

/** The repository root: the nearest folder above this file holding scripts/build-desktop-tools.sh. */
export function desktopRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, BUILD_SCRIPT))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new AppError('DESKTOP_NO_REPO', `Cannot find ${BUILD_SCRIPT} above ${fileURLToPath(import.meta.url)}`);
}

export function findInPath(name: string): string | null {
  for (const d of (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

function need(name: string, pkg: string): string {
  const p = findInPath(name);
  if (p === null) throw new AppError('COMMAND_MISSING', `Cannot run a lab desktop: ${name} is not installed (apt-get install -y --no-install-recommends ${pkg})`);
  return p;
}

/** The missing tools as a reason to skip a test, or null when all are there (the video is built on demand). */
export function missingDesktopTools(): string | null {
  const missing = [
    ['Xvnc', 'tigervnc-standalone-server'],
    ['xterm', 'xterm'],
    ['xdotool', 'xdotool'],
    ['gcc', 'gcc'],
  ].filter(([n]) => findInPath(n!) === null);
  if (!existsSync('/usr/include/X11/Xlib.h')) missing.push(['Xlib.h', 'libx11-dev']);
  return missing.length === 0 ? null : `needs ${missing.map(([n, p]) => `${n} (${p})`).join(', ')}`;
}

const builds = new Map<string, Promise<DesktopTools>>();

/** Finds the Debian tools and builds desktop-video (once per process; the script skips an up-to-date build). */
export function ensureDesktopTools(opts: { outDir?: string; timeoutMs?: number } = {}): Promise<DesktopTools> {
  const root = desktopRepoRoot();
  const outDir = resolve(opts.outDir ?? join(root, '.cache', 'desktop'));
  let p = builds.get(outDir);
  if (p === undefined) {
    p = (async () => {
      const tools = {
        xvnc: need('Xvnc', 'tigervnc-standalone-server'),
        xterm: need('xterm', 'xterm'),
        xdotool: need('xdotool', 'xdotool'),
      };
      await build(join(root, BUILD_SCRIPT), outDir, opts.timeoutMs ?? 120_000);
      return { ...tools, video: join(outDir, 'desktop-video') };
    })();
    builds.set(outDir, p);
    p.catch(() => builds.delete(outDir));
  }
  return p;
}

async function build(script: string, outDir: string, timeoutMs: number): Promise<void> {
  const child = spawn('bash', [script, outDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d: Buffer): void => {
    output = (output + d.toString()).slice(-4096);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const code = await new Promise<number | null>((done, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new AppError('DESKTOP_BUILD', `${script} ${outDir} did not finish within ${timeoutMs} ms; killed it. Output: ${output.trim()}`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new AppError('DESKTOP_BUILD', `Cannot run bash ${script}: ${e.message}`, { cause: e }));
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      done(c);
    });
  });
  if (code !== 0) throw new AppError('DESKTOP_BUILD', `Building the desktop tools failed (${script} ${outDir} exited with ${String(code)}): ${output.trim()}`);
}
