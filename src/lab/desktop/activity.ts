// What the user of a lab desktop is doing, on the desktop's X display, switchable at run time:
//   idle          nothing on the screen changes
//   text-editing  a few characters a second typed (real key events via XTEST, by xdotool) into an
//                 xterm: small updates
//   video         a region (default 320×240) repainted at ~25 frames/s with new content every frame
//                 by desktop-video (video.c, Xlib): large updates, like video playback
// Both windows stay on the screen in every activity; only what changes differs. The generator's
// processes are started through `spawn` (the desktop passes its namespace's spawner, so they are
// recorded for cleanup) and stopped by pid.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { AppError, InputError } from '../../core/errors.js';
import type { SpawnedProcess } from '../netns.js';
import type { DesktopTools } from './tools.js';

export const ACTIVITIES = ['idle', 'text-editing', 'video'] as const;
export type Activity = (typeof ACTIVITIES)[number];

export type Spawner = (argv: readonly string[], opts: SpawnOptions) => SpawnedProcess;

export interface VideoLayout {
  x: number;
  y: number;
  width: number;
  height: number;
  fps: number;
}

export interface EditorLayout {
  x: number;
  y: number;
  cols: number;
  rows: number;
}

export interface ActivityOptions {
  /** X display, like ':41' */
  display: string;
  spawn: Spawner;
  tools: Pick<DesktopTools, 'xterm' | 'xdotool' | 'video'>;
  video: VideoLayout;
  editor: EditorLayout;
  /** typing speed in text-editing (default 5 characters per second) */
  typingCharsPerS?: number;
  /** what is typed, over and over */
  text?: string;
  /** each window must appear within this (default 15 s) */
  startTimeoutMs?: number;
  initial?: Activity;
}

export interface ActivityStatus {
  activity: Activity;
  /** wall-clock ms of the last switch */
  sinceMs: number;
  switches: number;
  charsTyped: number;
  /** frames the video has drawn since it started (as it last reported) */
  framesDrawn: number;
  editorPid: number;
  videoPid: number;
}

const DEFAULT_TEXT =
  'Dear team, the quarterly numbers are attached. Revenue grew in every region except the north, ' +
  'where two large customers renewed late. Please review the forecast before Thursday and send ' +
  'me your comments. Best regards, and thanks for the hard work this quarter.';

export function isActivity(s: unknown): s is Activity {
  return typeof s === 'string' && (ACTIVITIES as readonly string[]).includes(s);
}

/** The text cut into chunks of whole words (a newline every ~60 characters), each typed by one xdotool. */
export function typingChunks(text: string, lineChars = 60): string[] {
  const out: string[] = [];
  let col = 0;
  for (const w of text.split(/\s+/).filter((x) => x.length > 0)) {
    const word = w.slice(0, lineChars);
    if (col > 0 && col + word.length + 1 > lineChars) {
      out.push('\n');
      col = 0;
    }
    out.push(col === 0 ? word : ` ${word}`);
    col += word.length + (col === 0 ? 0 : 1);
  }
  out.push('\n');
  return out;
}

interface Lines {
  next(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  tail(): string;
}

function lineReader(child: ChildProcess, name: string): Lines {
  const lines: string[] = [];
  let err = '';
  let waiter: { match: (l: string) => boolean; resolve: (l: string) => void } | null = null;
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (waiter !== null && waiter.match(line)) {
        const w = waiter;
        waiter = null;
        w.resolve(line);
      } else {
        lines.push(line);
        if (lines.length > 100) lines.shift();
      }
    }
    if (buf.length > 4096) buf = buf.slice(-4096);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err = (err + d).slice(-2048);
  });
  return {
    next: (match, timeoutMs, what) =>
      new Promise<string>((resolve, reject) => {
        const i = lines.findIndex(match);
        if (i >= 0) {
          resolve(lines.splice(i, 1)[0]!);
          return;
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          reject(new AppError('DESKTOP_ACTIVITY', `${name} has exited (code ${String(child.exitCode)}) while waiting for ${what}; stderr: ${err.trim() || '(none)'}`));
          return;
        }
        const onExit = (): void => {
          clearTimeout(timer);
          waiter = null;
          reject(new AppError('DESKTOP_ACTIVITY', `${name} exited (code ${String(child.exitCode)}) while waiting for ${what}; stderr: ${err.trim() || '(none)'}`));
        };
        const timer = setTimeout(() => {
          child.off('exit', onExit);
          waiter = null;
          reject(new AppError('DESKTOP_ACTIVITY', `${name} did not report ${what} within ${timeoutMs} ms; stderr: ${err.trim() || '(none)'}`));
        }, timeoutMs);
        child.once('exit', onExit);
        waiter = {
          match,
          resolve: (l) => {
            clearTimeout(timer);
            child.off('exit', onExit);
            resolve(l);
          },
        };
      }),
    tail: () => err.trim(),
  };
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (exited(child)) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, graceMs))) {
    child.kill('SIGKILL');
    await waitExit(child, 2000);
  }
}

export class ActivityGenerator {
  private current: Activity = 'idle';
  private sinceMs = Date.now();
  private switches = 0;
  private charsTyped = 0;
  private framesDrawn = 0;
  private chunkIndex = 0;
  private typing: Promise<void> | null = null;
  private typist: ChildProcess | null = null;
  private stopped = false;
  private failure: Error | null = null;
  private switching: Promise<void> = Promise.resolve();

  private constructor(
    private readonly o: ActivityOptions,
    private readonly editor: SpawnedProcess,
    private readonly editorWindow: string,
    private readonly video: SpawnedProcess,
    private readonly videoLines: Lines,
    private readonly chunks: string[],
  ) {
    const onExit = (what: string, p: SpawnedProcess) => () => {
      if (!this.stopped) this.failure ??= new AppError('DESKTOP_ACTIVITY', `The desktop's ${what} (pid ${p.pid}) exited (code ${String(p.child.exitCode)}, signal ${String(p.child.signalCode)}) while the activity was ${this.current}`);
    };
    editor.child.once('exit', onExit('editor (xterm)', editor));
    video.child.once('exit', onExit('video player', video));
  }

  /** Opens the editor and the (paused) video on the display, then switches to `initial` (default idle). */
  static async start(o: ActivityOptions): Promise<ActivityGenerator> {
    const cps = o.typingCharsPerS ?? 5;
    if (!(cps > 0 && cps <= 100)) throw new InputError('typingCharsPerS', cps, 'must be > 0 and ≤ 100');
    const v = o.video;
    if (!(v.width >= 4 && v.height >= 1 && v.fps >= 1 && v.fps <= 240)) throw new InputError('video', v, 'needs width ≥ 4, height ≥ 1 and 1–240 fps');
    const timeoutMs = o.startTimeoutMs ?? 15_000;
    const env = { ...process.env, DISPLAY: o.display };
    const title = `vms-editor-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
    const e = o.editor;
    const editor = o.spawn(
      [o.tools.xterm, '-T', title, '-geometry', `${e.cols}x${e.rows}+${e.x}+${e.y}`, '-fn', 'fixed', '+sb', '-e', 'sh', '-c', 'exec cat > /dev/null'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // Nobody reads the editor's output (a font warning at most): drain it so xterm never blocks on a full pipe.
    editor.child.stdout?.resume();
    editor.child.stderr?.resume();
    let video: SpawnedProcess | null = null;
    try {
      // --onlyvisible: wait until the window is mapped; focusing a window that exists but is not yet viewable
      // fails with BadMatch (seen in CI on a busy machine).
      const found = await runTool(o.spawn, env, [o.tools.xdotool, 'search', '--sync', '--onlyvisible', '--name', `^${title}$`], timeoutMs, 'the editor window');
      const editorWindow = found.trim().split('\n')[0] ?? '';
      if (!/^\d+$/.test(editorWindow)) throw new AppError('DESKTOP_ACTIVITY', `xdotool found no editor window named ${title} (output ${JSON.stringify(found.slice(0, 200))})`);
      for (let attempt = 1; ; attempt++) {
        try {
          await runTool(o.spawn, env, [o.tools.xdotool, 'windowfocus', editorWindow], timeoutMs, 'focus on the editor');
          break;
        } catch (e) {
          if (attempt >= 10) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      video = o.spawn(
        [o.tools.video, '--x', String(v.x), '--y', String(v.y), '--width', String(v.width), '--height', String(v.height), '--fps', String(v.fps), '--title', `vms-video-${process.pid}`],
        { env, stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const lines = lineReader(video.child, 'desktop-video');
      await lines.next((l) => l.startsWith('ready '), timeoutMs, 'its window');
      const gen = new ActivityGenerator(o, editor, editorWindow, video, lines, typingChunks(o.text ?? DEFAULT_TEXT));
      if (o.initial !== undefined && o.initial !== 'idle') await gen.set(o.initial);
      return gen;
    } catch (err) {
      await stopChild(editor.child, 1000);
      if (video !== null) await stopChild(video.child, 1000);
      throw err;
    }
  }

  get activity(): Activity {
    return this.current;
  }

  get editorWindowId(): string {
    return this.editorWindow;
  }

  /** Switches to `a`; resolves when only `a` is going on (≤ one typed word of overlap, ~2 s). */
  set(a: Activity): Promise<void> {
    if (!isActivity(a)) return Promise.reject(new InputError('activity', a, `must be one of ${ACTIVITIES.join(', ')}`));
    const next = this.switching.then(() => this.doSet(a));
    this.switching = next.catch(() => undefined);
    return next;
  }

  private async doSet(a: Activity): Promise<void> {
    if (this.stopped) throw new AppError('DESKTOP_ACTIVITY', `Cannot switch to ${a}: the activity generator is stopped`);
    if (this.failure !== null) throw this.failure;
    if (a === this.current) return;
    this.current = a;
    this.sinceMs = Date.now();
    this.switches++;
    if (a !== 'text-editing' && this.typing !== null) await this.typing;
    await this.videoCommand(a === 'video' ? 'play' : 'pause');
    if (a === 'text-editing' && this.typing === null) {
      this.typing = this.typeLoop().finally(() => {
        this.typing = null;
      });
    }
  }

  private async videoCommand(cmd: 'play' | 'pause' | 'status'): Promise<void> {
    const stdin = this.video.child.stdin;
    if (stdin === null || exited(this.video.child)) throw this.failure ?? new AppError('DESKTOP_ACTIVITY', `The video player (pid ${this.video.pid}) is not running`);
    stdin.write(`${cmd}\n`);
    const line = await this.videoLines.next((l) => l.startsWith('state ') || l.startsWith('error '), 5000, `the answer to '${cmd}'`);
    if (line.startsWith('error ')) throw new AppError('DESKTOP_ACTIVITY', `The video player refused '${cmd}': ${line.slice(6)}`);
    const m = /frames=(\d+)/.exec(line);
    if (m !== null) this.framesDrawn = Number(m[1]);
  }

  private async typeLoop(): Promise<void> {
    const delayMs = Math.round(1000 / (this.o.typingCharsPerS ?? 5));
    const env = { ...process.env, DISPLAY: this.o.display };
    while (this.current === 'text-editing' && !this.stopped && this.failure === null) {
      const chunk = this.chunks[this.chunkIndex % this.chunks.length]!;
      this.chunkIndex++;
      // Whole words per xdotool: stopping one mid-word could leave a key pressed (and auto-repeating).
      try {
        await runTool(this.o.spawn, env, [this.o.tools.xdotool, 'type', '--delay', String(delayMs), '--', chunk], 30_000, 'typing', (c) => (this.typist = c));
      } catch (e) {
        if (!this.stopped) this.failure ??= e as Error;
        return;
      } finally {
        this.typist = null;
      }
      this.charsTyped += chunk.length;
    }
  }

  async status(): Promise<ActivityStatus> {
    if (this.failure !== null) throw this.failure;
    await this.switching;
    await this.videoCommand('status');
    return {
      activity: this.current,
      sinceMs: this.sinceMs,
      switches: this.switches,
      charsTyped: this.charsTyped,
      framesDrawn: this.framesDrawn,
      editorPid: this.editor.pid,
      videoPid: this.video.pid,
    };
  }

  /** The error that stopped a process of the generator, if any. */
  get error(): Error | null {
    return this.failure;
  }

  /** Stops typing, closes the video and the editor (by pid); idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.typing !== null) {
      const done = await Promise.race([this.typing.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      if (!done && this.typist !== null) await stopChild(this.typist, 500);
    }
    if (!exited(this.video.child)) {
      this.video.child.stdin?.end('quit\n');
      if (!(await waitExit(this.video.child, 2000))) await stopChild(this.video.child, 1000);
    }
    await stopChild(this.editor.child, 2000);
  }
}

/** Runs a short tool to completion (killed after timeoutMs) and returns its stdout. */
async function runTool(spawnFn: Spawner, env: NodeJS.ProcessEnv, argv: readonly string[], timeoutMs: number, what: string, onChild?: (c: ChildProcess) => void): Promise<string> {
  const p = spawnFn(argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  onChild?.(p.child);
  let out = '';
  let err = '';
  p.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    if (out.length < 65536) out += d;
  });
  p.child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err = (err + d).slice(-2048);
  });
  // 'close', not 'exit': stdout may still hold the answer when the process has exited.
  const closed = new Promise<void>((r) => p.child.once('close', () => r()));
  const ok = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
  if (!ok) {
    await stopChild(p.child, 500);
    throw new AppError('DESKTOP_ACTIVITY', `${argv.join(' ')} (${what}) did not finish within ${timeoutMs} ms; killed it`);
  }
  if (p.child.exitCode !== 0) {
    throw new AppError('DESKTOP_ACTIVITY', `${argv.join(' ')} (${what}) failed with exit code ${String(p.child.exitCode)}: ${err.trim() || '(no output)'}`);
  }
  return out;
}
