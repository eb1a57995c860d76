// A measuring RFB viewer running as a child process (viewer-main.ts), typically inside a user's
// network namespace: `startViewer((argv, o) => run.spawnIn(userNs, argv, o), { host, port })`.
import type { SpawnOptions } from 'node:child_process';
import { jsonLineReader } from '../../core/json-lines.js';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../core/errors.js';
import type { SpawnedProcess } from '../netns.js';
import type { RfbLiveStats } from './rfb-client.js';
import type { UpdateSummary } from './update-stats.js';

export const VIEWER_MAIN = fileURLToPath(new URL('./viewer-main.js', import.meta.url));

export interface ViewerOptions {
  host: string;
  port: number;
  /** the video window's top-left pixel, to read its frame marker (frame age) */
  probe?: { x: number; y: number };
  connectTimeoutMs?: number;
  updateTimeoutMs?: number;
}

export interface Viewer {
  pid: number;
  width: number;
  height: number;
  desktopName: string;
  measure(durationMs: number): Promise<UpdateSummary>;
  stats(): Promise<RfbLiveStats>;
  /** null while connected; the reason once the connection ended by itself */
  readonly closedReason: string | null;
  close(): Promise<void>;
}

export async function startViewer(spawn: (argv: readonly string[], o: SpawnOptions) => SpawnedProcess, o: ViewerOptions): Promise<Viewer> {
  const argv = [process.execPath, VIEWER_MAIN, '--host', o.host, '--port', String(o.port)];
  if (o.probe !== undefined) argv.push('--probe-x', String(o.probe.x), '--probe-y', String(o.probe.y));
  if (o.connectTimeoutMs !== undefined) argv.push('--connect-timeout-ms', String(o.connectTimeoutMs));
  if (o.updateTimeoutMs !== undefined) argv.push('--update-timeout-ms', String(o.updateTimeoutMs));
  const { child, pid } = spawn(argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let stderr = '';
  let closedReason: string | null = null;
  let ready: ((v: Record<string, unknown>) => void) | null = null;
  const exitedP = new Promise<void>((r) => child.once('exit', () => r()));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  child.stdout?.setEncoding('utf8').on('data', jsonLineReader({
    onBadLine: (line, problem) => { stderr = (stderr + `\nviewer printed ${problem}: ${line}`).slice(-4096); },
    onMessage: (msg) => {
      if (msg['ready'] === true && ready !== null) {
        ready(msg);
        ready = null;
      } else if (msg['event'] === 'closed') {
        closedReason = String(msg['error']);
      } else if (typeof msg['id'] === 'number') {
        const p = pending.get(msg['id']);
        pending.delete(msg['id']);
        if (msg['ok'] === true) p?.resolve(msg['result']);
        else p?.reject(new AppError('VIEWER', `The viewer (pid ${pid}) failed: ${String(msg['error'])}`));
      }
    },
  }));
  void exitedP.then(() => {
    const e = new AppError('VIEWER', `The viewer (pid ${pid}) exited (code ${String(child.exitCode)}): ${closedReason ?? (stderr.trim() || 'no output')}`);
    closedReason ??= stderr.trim() || `exited with code ${String(child.exitCode)}`;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  });
  const timeoutMs = (o.connectTimeoutMs ?? 10_000) + 5000;
  let hello: Record<string, unknown>;
  try {
    hello = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new AppError('VIEWER', `The viewer (pid ${pid}) did not connect to ${o.host}:${o.port} within ${timeoutMs} ms; stderr: ${stderr.trim() || '(none)'}`)), timeoutMs);
      ready = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      void exitedP.then(() => {
        clearTimeout(timer);
        reject(new AppError('VIEWER', `The viewer could not connect to ${o.host}:${o.port}: ${stderr.trim() || `exited with code ${String(child.exitCode)}`}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const call = <T>(cmd: Record<string, unknown>, ms: number): Promise<T> => {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new AppError('VIEWER', `The viewer (pid ${pid}) has exited: ${closedReason ?? 'unknown reason'}`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new AppError('VIEWER', `The viewer (pid ${pid}) did not answer ${String(cmd['cmd'])} within ${ms} ms`));
      }, ms);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.stdin?.write(JSON.stringify({ id, ...cmd }) + '\n');
    });
  };
  let closing: Promise<void> | null = null;
  return {
    pid,
    width: Number(hello['width']),
    height: Number(hello['height']),
    desktopName: String(hello['name']),
    measure: (ms) => call<UpdateSummary>({ cmd: 'measure', ms }, ms + 10_000),
    stats: () => call<RfbLiveStats>({ cmd: 'stats' }, 5000),
    get closedReason() {
      return closedReason;
    },
    close: () => {
      closing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.stdin?.end();
          const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exitedP;
          clearTimeout(killer);
        }
      })();
      return closing;
    },
  };
}
