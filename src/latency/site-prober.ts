// Where a site's probes leave from. A manager running at the site probes from its own process (local); in
// the lab each site is a network namespace, so a long-lived agent runs inside it (`ip netns exec <ns> node
// probe-agent.js`) and answers probe requests as JSON lines — one process per site, not one per probe.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AppError } from '../core/errors.js';
import { jsonLineReader } from '../core/json-lines.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { probeRtt, type ProbeResult } from './prober.js';

export type { ProbeResult } from './prober.js';

export interface SiteProber {
  /** One TCP-connect probe; rejects with PROBE_TIMEOUT / PROBE_FAILED (the target's fault) or a prober error. */
  probe(host: string, port: number, timeoutMs: number): Promise<ProbeResult>;
  /** Idempotent; probes after it reject with PROBER_CLOSED. */
  close(): Promise<void>;
}

export const PROBE_AGENT_MAIN = fileURLToPath(new URL('./probe-agent.js', import.meta.url));

/** Probes from this process: for a manager that runs at the site, and for tests on loopback. */
export function createLocalProber(opts: { readonly localAddress?: string } = {}): SiteProber {
  let closed = false;
  return {
    probe(host, port, timeoutMs) {
      if (closed) return Promise.reject(new AppError('PROBER_CLOSED', `Cannot probe ${host}:${port}: the local prober is closed`));
      return probeRtt(host, port, { timeoutMs, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) });
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}

export interface NamespaceProberOptions {
  /** The network namespace (`ip netns` name) the probes leave from. */
  readonly ns: string;
  readonly log?: Logger;
  /** Bind each probe's source address (the site's address in the namespace). */
  readonly localAddress?: string;
  /** Time the agent may take to print its ready line. Default 15 s (node starting on a busy machine). */
  readonly startTimeoutMs?: number;
  /** An answer may come this long after the probe's own timeout before the agent is taken to hang. Default 2 s. */
  readonly graceMs?: number;
  /** After repeated deaths, wait this long (doubling, at most 30 s) before starting the agent again. Default 1 s. */
  readonly restartBackoffMs?: number;
  /** For tests: the command that starts the agent. Default `ip netns exec <ns> <node> probe-agent.js`. */
  readonly command?: readonly string[];
}

export interface NamespaceProber extends SiteProber {
  readonly ns: string;
  /** The running agent's pid, or null when none runs. */
  agentPid(): number | null;
  /** Times an agent was started. */
  starts(): number;
}

interface Pending {
  readonly resolve: (r: ProbeResult) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly what: string;
}

interface Agent {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  stderrTail: string;
}

const MAX_BACKOFF_MS = 30_000;

/** Probes from inside network namespace `ns` through a long-lived agent, restarted if it dies. */
export function createNamespaceProber(opts: NamespaceProberOptions): NamespaceProber {
  const log = (opts.log ?? silentLogger).child({ component: 'probe-agent', ns: opts.ns });
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  const graceMs = opts.graceMs ?? 2000;
  const backoffMs = opts.restartBackoffMs ?? 1000;
  const argv = opts.command ?? ['ip', 'netns', 'exec', opts.ns, process.execPath, PROBE_AGENT_MAIN];
  const pending = new Map<number, Pending>();
  let agent: Agent | null = null;
  let nextId = 1;
  let closed = false;
  let starts = 0;
  /** Exits since the last answered probe: the first restart is immediate, later ones back off. */
  let deaths = 0;
  let lastExitAtMs = 0;
  let lastExit = '';

  const failAll = (e: Error): void => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      pending.delete(id);
      p.reject(e);
    }
  };

  const start = (): Agent => {
    starts++;
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let onReady: () => void = () => undefined;
    let onStartFail: (e: Error) => void = () => undefined;
    const ready = new Promise<void>((res, rej) => {
      onReady = res;
      onStartFail = rej;
    });
    ready.catch(() => undefined); // observed by every probe that awaits it
    let isReady = false;
    const a: Agent = {
      child, ready, stderrTail: '',
      exited: new Promise<void>((res) => {
        child.once('close', () => res());
        child.once('error', () => res());
      }),
    };
    const startTimer = setTimeout(() => {
      onStartFail(new AppError('PROBE_AGENT_START', `Probe agent in namespace ${opts.ns} printed no ready line within ${startTimeoutMs} ms; stderr: ${a.stderrTail.trim().slice(-300) || '(none)'}`, { retryable: true }));
      child.kill('SIGKILL');
    }, startTimeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      a.stderrTail = (a.stderrTail + d).slice(-2000);
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', jsonLineReader({
      onMessage(msg) {
        if (msg.ready === true) {
          isReady = true;
          clearTimeout(startTimer);
          log.debug('probe agent ready', { pid: child.pid });
          onReady();
          return;
        }
        if (typeof msg.id !== 'number') {
          log.warn('probe agent said something without an id', { msg });
          return;
        }
        const p = pending.get(msg.id);
        if (p === undefined) return; // answered after our own deadline: dropped
        pending.delete(msg.id);
        clearTimeout(p.timer);
        const r = msg.result as { rttMs?: unknown; how?: unknown } | undefined;
        if (msg.ok === true && typeof r?.rttMs === 'number' && (r.how === 'connected' || r.how === 'refused')) {
          deaths = 0;
          p.resolve({ rttMs: r.rttMs, how: r.how });
        } else {
          const code = typeof msg.code === 'string' ? msg.code : 'PROBE_FAILED';
          p.reject(new AppError(code, typeof msg.error === 'string' ? msg.error : `${p.what} failed in namespace ${opts.ns}: the agent said ${JSON.stringify(msg).slice(0, 200)}`, { retryable: true }));
        }
      },
      onBadLine(line, problem) {
        log.warn('probe agent printed a bad line', { line, problem });
      },
    }));
    child.stdin.on('error', () => undefined); // EPIPE when it died; the exit handler reports it
    let finished = false;
    const finish = (how: string, cause?: Error): void => {
      if (finished) return;
      finished = true;
      clearTimeout(startTimer);
      deaths++;
      lastExitAtMs = Date.now();
      lastExit = `${how}${a.stderrTail.trim() === '' ? '' : `; stderr: ${a.stderrTail.trim().slice(-300)}`}`;
      if (agent === a) agent = null;
      const err = new AppError(isReady ? 'PROBE_AGENT_DIED' : 'PROBE_AGENT_START',
        `Probe agent in namespace ${opts.ns} (pid ${child.pid ?? 'none'}) ${cause === undefined ? 'exited' : 'could not run'} (${lastExit})${isReady ? '' : ' before it was ready'}; ${pending.size} probes were in flight`,
        { retryable: true, ...(cause === undefined ? {} : { cause }) });
      onStartFail(err);
      if (!closed) log.warn('probe agent exited', { pid: child.pid, exit: lastExit, inFlight: pending.size });
      failAll(err);
    };
    // A spawn that fails emits 'error' and perhaps no 'close'; one that ran emits 'close' once its pipes are done.
    child.once('error', (e) => finish(`${argv.join(' ')}: ${e.message}`, e));
    child.once('close', (code, signal) => finish(String(code ?? signal)));
    return a;
  };

  const running = (what: string): Agent => {
    if (agent !== null) return agent;
    const waitMs = deaths <= 1 ? 0 : Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (deaths - 2));
    const left = lastExitAtMs + waitMs - Date.now();
    if (left > 0) {
      throw new AppError('PROBE_AGENT_DOWN', `Cannot ${what} from namespace ${opts.ns}: its probe agent exited ${deaths} times in a row (last: ${lastExit}); next start in ${Math.ceil(left)} ms`, { retryable: true });
    }
    agent = start();
    return agent;
  };

  return {
    ns: opts.ns,
    agentPid: () => agent?.child.pid ?? null,
    starts: () => starts,
    async probe(host, port, timeoutMs) {
      const what = `probe ${host}:${port}`;
      if (closed) throw new AppError('PROBER_CLOSED', `Cannot ${what}: the prober of namespace ${opts.ns} is closed`);
      const a = running(what);
      await a.ready;
      if (closed) throw new AppError('PROBER_CLOSED', `Cannot ${what}: the prober of namespace ${opts.ns} is closed`);
      if (agent !== a) throw new AppError('PROBE_AGENT_DIED', `Cannot ${what} from namespace ${opts.ns}: its probe agent exited (${lastExit}) just after it started`, { retryable: true });
      const id = nextId++;
      return new Promise<ProbeResult>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new AppError('PROBE_AGENT_HUNG', `RTT probe to ${host}:${port} from namespace ${opts.ns}: the agent (pid ${a.child.pid ?? 'none'}) gave no answer within ${timeoutMs + graceMs} ms; it is restarted`, { retryable: true }));
          // An agent that misses its own timeout is stuck: the next probe starts a new one.
          log.warn('probe agent hung; killing it', { pid: a.child.pid });
          a.child.kill('SIGKILL');
        }, timeoutMs + graceMs);
        pending.set(id, { resolve, reject, timer, what });
        const req = { id, host, port, timeoutMs, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) };
        a.child.stdin!.write(JSON.stringify(req) + '\n');
      });
    },
    async close() {
      closed = true;
      failAll(new AppError('PROBER_CLOSED', `The prober of namespace ${opts.ns} was closed with probes in flight`));
      const a = agent;
      if (a === null) return;
      a.child.stdin!.end();
      a.child.kill('SIGTERM');
      const killTimer = setTimeout(() => a.child.kill('SIGKILL'), 2000);
      let giveUp: NodeJS.Timeout | undefined;
      await Promise.race([a.exited, new Promise<void>((res) => { giveUp = setTimeout(res, 5000); })]);
      clearTimeout(killTimer);
      clearTimeout(giveUp);
    },
  };
}
