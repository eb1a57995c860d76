// The WAN relay: carries VXLAN UDP datagrams between lab endpoints (sites, users) through emulated
// links. Endpoint A reaches endpoint B by sending to the relay address "A→B"; the relay schedules the
// datagram on the A→B link (link.ts: delay, rate, bounded queue, loss, jitter) and sends it to B from
// the relay address "B→A" — so B's VXLAN device learns that A's MACs live behind "B→A".
//
// Hot path: one 'message' handler per socket, an O(1) scheduler decision, a per-direction FIFO of
// (departure time, datagram) and ONE timer for the whole relay that flushes every due datagram of
// every direction at once (no per-packet setTimeout).
import dgram from 'node:dgram';
import { jsonLineReader } from '../../core/json-lines.js';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { AppError, InputError } from '../../core/errors.js';
import { arr, checkNum, isObj, num, obj, onlyKeys, str } from '../../core/validate.js';
import type { NetnsRun } from '../netns.js';
import { LinkScheduler, parseLinkParams, type LinkParams } from './link.js';

export interface UdpAddress {
  address: string;
  port: number;
}

export interface RelayLinkConfig {
  a: string;
  b: string;
  /** where a's datagrams for b arrive (the relay binds it); b→a traffic leaves from here too */
  aListen: UdpAddress;
  bListen: UdpAddress;
  /** a's VXLAN socket (destination of b→a traffic) */
  aEndpoint: UdpAddress;
  bEndpoint: UdpAddress;
  aToB: LinkParams;
  bToA: LinkParams;
}

export interface RelayConfig {
  links: RelayLinkConfig[];
  /** seeds each direction's loss/jitter PRNG (direction k uses seed + k) */
  seed: number;
  /** per socket; the kernel caps it at net.core.rmem_max / wmem_max */
  socketBufferBytes: number;
  /** datagrams waiting in one direction before further ones are dropped ('inflight'): a memory bound */
  maxInFlightPackets: number;
}

export type LinkDirection = 'both' | 'forward' | 'reverse';

export interface DirectionStats {
  from: string;
  to: string;
  params: LinkParams;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  drops: { loss: number; queue: number; inflight: number; send: number };
  inFlightPackets: number;
  backlogBytes: number;
  maxBacklogBytes: number;
  /** departure accuracy of datagrams that waited in the relay (timer and scheduling lateness) */
  lateness: { meanMs: number; maxMs: number; over1MsPackets: number };
}

export interface RelayStats {
  uptimeMs: number;
  /** CPU time of the process the relay runs in */
  cpuUserMs: number;
  cpuSystemMs: number;
  directions: DirectionStats[];
}

/** What the lab and tests use, whether the relay runs in this process or in a child. */
export interface RelayControl {
  /** Changes a link at run time: 'forward' is a→b, 'reverse' b→a. Unset fields keep their value. */
  setLink(a: string, b: string, params: Partial<LinkParams>, direction?: LinkDirection): Promise<void>;
  stats(): Promise<RelayStats>;
}

export const VXLAN_PORT = 4789;
/**
 * A datagram may leave up to this much before its departure time. Node timers count whole
 * milliseconds of a cached loop clock; a timer that fires just short of a departure would cost a
 * re-arm (≥ 1 ms late). With 1 ms, departures measured here land at −0.4 ms on average, within ±1 ms.
 */
const EARLY_MS = 1;

// ---------------------------------------------------------------------------------------------
// Config

export function parseRelayConfig(v: unknown, path = 'relay'): RelayConfig {
  const o = obj(v, path);
  onlyKeys(o, path, ['links', 'seed', 'socketBufferBytes', 'maxInFlightPackets']);
  const addr = (x: unknown, p: string): UdpAddress => {
    const a = obj(x, p);
    onlyKeys(a, p, ['address', 'port']);
    const address = str(a, 'address', p);
    if (net.isIP(address) === 0) throw new InputError(`${p}.address`, address, 'must be an IP address');
    // Port 0 (any free port) is for tests on loopback; see WanRelay.listenAddresses().
    return { address, port: num(a, 'port', p, { min: 0, max: 65535, integer: true }) };
  };
  const links = arr(o.links, `${path}.links`).map((x, i): RelayLinkConfig => {
    const p = `${path}.links[${i}]`;
    const l = obj(x, p);
    onlyKeys(l, p, ['a', 'b', 'aListen', 'bListen', 'aEndpoint', 'bEndpoint', 'aToB', 'bToA']);
    const a = str(l, 'a', p);
    const b = str(l, 'b', p);
    if (a === b) throw new InputError(`${p}.b`, b, 'must differ from a');
    return {
      a,
      b,
      aListen: addr(l.aListen, `${p}.aListen`),
      bListen: addr(l.bListen, `${p}.bListen`),
      aEndpoint: addr(l.aEndpoint, `${p}.aEndpoint`),
      bEndpoint: addr(l.bEndpoint, `${p}.bEndpoint`),
      aToB: parseLinkParams(l.aToB, `${p}.aToB`),
      bToA: parseLinkParams(l.bToA, `${p}.bToA`),
    };
  });
  const seen = new Set<string>();
  links.forEach((l, i) => {
    const k = [l.a, l.b].sort().join('|');
    if (seen.has(k)) throw new InputError(`${path}.links[${i}]`, `${l.a}-${l.b}`, 'links the same pair twice');
    seen.add(k);
  });
  const opt = (k: string, dflt: number, min: number, max: number): number =>
    o[k] === undefined ? dflt : checkNum(o[k], `${path}.${k}`, { min, max, integer: true });
  return {
    links,
    seed: opt('seed', 1, 0, 2 ** 31),
    socketBufferBytes: opt('socketBufferBytes', 4 * 1024 * 1024, 65536, 1 << 30),
    maxInFlightPackets: opt('maxInFlightPackets', 32768, 16, 1 << 22),
  };
}

// ---------------------------------------------------------------------------------------------
// The relay

class Direction {
  readonly sched: LinkScheduler;
  // FIFO of datagrams waiting for their departure, as parallel arrays from `head` on.
  times: number[] = [];
  bufs: Buffer[] = [];
  head = 0;
  txPackets = 0;
  txBytes = 0;
  dropInflight = 0;
  dropSend = 0;
  // How late (or, negative, early) queued datagrams left compared with their departure time.
  lateSumMs = 0;
  lateCount = 0;
  lateMaxMs = 0;
  lateOver1Ms = 0;

  constructor(
    readonly from: string,
    readonly to: string,
    params: LinkParams,
    seed: number,
    readonly out: dgram.Socket,
  ) {
    this.sched = new LinkScheduler(params, seed);
    // Without a send callback Node tries a synchronous send first; failures arrive here instead.
    out.on('error', () => {
      this.dropSend++;
    });
  }

  get pending(): number {
    return this.times.length - this.head;
  }

  enqueue(atMs: number, buf: Buffer): void {
    const t = this.times;
    if (t.length === this.head || t[t.length - 1]! <= atMs) {
      t.push(atMs);
      this.bufs.push(buf);
      return;
    }
    // Only with jitter: insert in order (binary search over the pending part).
    let lo = this.head;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid]! <= atMs) lo = mid + 1;
      else hi = mid;
    }
    t.splice(lo, 0, atMs);
    this.bufs.splice(lo, 0, buf);
  }

  send(buf: Buffer): void {
    this.txPackets++;
    this.txBytes += buf.length;
    this.out.send(buf);
  }

  /** Sends every datagram due by `limitMs`; returns the next departure time or Infinity. */
  flush(nowMs: number, limitMs: number): number {
    const t = this.times;
    const b = this.bufs;
    let h = this.head;
    while (h < t.length && t[h]! <= limitMs) {
      const late = nowMs - t[h]!;
      this.lateSumMs += late;
      this.lateCount++;
      if (late > this.lateMaxMs) this.lateMaxMs = late;
      if (late > 1) this.lateOver1Ms++;
      this.send(b[h]!);
      b[h] = EMPTY;
      h++;
    }
    if (h === t.length) {
      this.times = [];
      this.bufs = [];
      this.head = 0;
      return Infinity;
    }
    if (h > 4096 && h * 2 > t.length) {
      this.times = t.slice(h);
      this.bufs = b.slice(h);
      h = 0;
    }
    this.head = h;
    return this.times[h]!;
  }

  stats(nowMs: number): DirectionStats {
    const c = this.sched.counters;
    return {
      from: this.from,
      to: this.to,
      params: this.sched.params,
      rxPackets: c.offeredPackets + this.dropInflight,
      rxBytes: c.offeredBytes,
      txPackets: this.txPackets,
      txBytes: this.txBytes,
      drops: { loss: c.dropLossPackets, queue: c.dropQueuePackets, inflight: this.dropInflight, send: this.dropSend },
      inFlightPackets: this.pending,
      backlogBytes: Math.round(this.sched.backlogAt(nowMs)),
      maxBacklogBytes: Math.round(c.maxBacklogBytes),
      lateness: {
        meanMs: this.lateCount === 0 ? 0 : Math.round((this.lateSumMs / this.lateCount) * 1000) / 1000,
        maxMs: Math.round(this.lateMaxMs * 1000) / 1000,
        over1MsPackets: this.lateOver1Ms,
      },
    };
  }
}

const EMPTY = Buffer.alloc(0);

export class WanRelay implements RelayControl {
  private readonly dirs: Direction[] = [];
  private readonly byPair = new Map<string, Direction>();
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Infinity;
  private closed = false;
  private readonly startedMs = performance.now();
  private readonly cpuAtStart = process.cpuUsage();

  private readonly bound: { a: string; b: string; aListen: UdpAddress; bListen: UdpAddress }[] = [];

  private constructor(
    private readonly config: RelayConfig,
    private readonly sockets: dgram.Socket[],
  ) {}

  /** The addresses actually bound per link (differs from the config where it asked for port 0). */
  listenAddresses(): { a: string; b: string; aListen: UdpAddress; bListen: UdpAddress }[] {
    return this.bound.map((x) => ({ ...x }));
  }

  /** Binds every listen address; fails (closing what it bound) if one cannot be bound. */
  static async start(config: RelayConfig): Promise<WanRelay> {
    const sockets: dgram.Socket[] = [];
    const open = async (a: UdpAddress, connectTo?: UdpAddress): Promise<dgram.Socket> => {
      const s = dgram.createSocket({ type: net.isIPv6(a.address) ? 'udp6' : 'udp4', recvBufferSize: config.socketBufferBytes, sendBufferSize: config.socketBufferBytes });
      sockets.push(s);
      const what = connectTo === undefined ? `bind the WAN relay to ${a.address}:${a.port}` : `connect the WAN relay from ${a.address} to ${connectTo.address}:${connectTo.port}`;
      await new Promise<void>((resolve, reject) => {
        const onErr = (e: Error): void => reject(new AppError('RELAY_BIND', `Cannot ${what}: ${e.message}`, { cause: e }));
        s.once('error', onErr);
        s.bind(a.port, a.address, () => {
          if (connectTo === undefined) {
            s.off('error', onErr);
            resolve();
            return;
          }
          s.connect(connectTo.port, connectTo.address, () => {
            s.off('error', onErr);
            resolve();
          });
        });
      });
      return s;
    };
    try {
      const relay = new WanRelay(config, sockets);
      let k = 0;
      for (const l of config.links) {
        const sa = await open(l.aListen);
        const sb = await open(l.bListen);
        // Sending sockets: from the listen address the receiver knows its peer by (VXLAN learns
        // the source address, not the port), connected so that each send skips address handling.
        const toB = await open({ address: l.bListen.address, port: 0 }, l.bEndpoint);
        const toA = await open({ address: l.aListen.address, port: 0 }, l.aEndpoint);
        const ab = new Direction(l.a, l.b, l.aToB, config.seed + k++, toB);
        const ba = new Direction(l.b, l.a, l.bToA, config.seed + k++, toA);
        relay.attach(sa, ab);
        relay.attach(sb, ba);
        relay.bound.push({ a: l.a, b: l.b, aListen: sa.address(), bListen: sb.address() });
      }
      return relay;
    } catch (e) {
      for (const s of sockets) s.close();
      throw e;
    }
  }

  private attach(sock: dgram.Socket, dir: Direction): void {
    this.dirs.push(dir);
    this.byPair.set(`${dir.from}\u0000${dir.to}`, dir);
    const max = this.config.maxInFlightPackets;
    sock.on('message', (msg: Buffer) => {
      if (this.closed) return;
      const now = performance.now();
      if (dir.pending >= max) {
        dir.dropInflight++;
        return;
      }
      const o = dir.sched.offer(now, msg.length);
      if (o.kind === 'drop') return;
      if (dir.pending === 0 && o.departMs <= now + EARLY_MS) {
        dir.send(msg);
        return;
      }
      dir.enqueue(o.departMs, msg);
      if (this.timerAtMs <= now + EARLY_MS) {
        // Busy: datagrams arrive faster than timers get their turn. Send what is due from here;
        // the pending timer (due now) re-arms for the rest when it fires, so no timer churn.
        this.sendDue(now, now + EARLY_MS);
      } else {
        this.wake(o.departMs);
      }
    });
    sock.on('error', () => {
      // Receive-side errors (none expected on an unconnected UDP socket) must not crash the relay.
    });
  }

  private wake(atMs: number): void {
    if (atMs >= this.timerAtMs || this.closed) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, atMs - EARLY_MS - performance.now()));
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAtMs = Infinity;
    const now = performance.now();
    const next = this.sendDue(now, now + EARLY_MS);
    if (next !== Infinity) this.wake(next);
  };

  /** Sends every datagram due by limitMs; returns the next departure time (Infinity: none). */
  private sendDue(now: number, limit: number): number {
    let next = Infinity;
    for (const d of this.dirs) {
      if (d.pending === 0) continue;
      const n = d.flush(now, limit);
      if (n < next) next = n;
    }
    return next;
  }

  private find(a: string, b: string): Direction {
    const d = this.byPair.get(`${a}\u0000${b}`);
    if (d === undefined) {
      const known = this.config.links.map((l) => `${l.a}-${l.b}`).join(', ');
      throw new AppError('LINK_UNKNOWN', `Cannot change link ${a}-${b}: the relay has no such link (links: ${known || 'none'})`);
    }
    return d;
  }

  setLink(a: string, b: string, params: Partial<LinkParams>, direction: LinkDirection = 'both'): Promise<void> {
    try {
      this.setLinkNow(a, b, params, direction);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** setLink() without the promise: throws at once on an unknown link or a bad parameter. */
  setLinkNow(a: string, b: string, params: Partial<LinkParams>, direction: LinkDirection = 'both'): void {
    const fwd = this.find(a, b);
    const rev = this.find(b, a);
    const targets = direction === 'both' ? [fwd, rev] : direction === 'forward' ? [fwd] : [rev];
    // Validate against every target before changing any.
    const next = targets.map((d) => parseLinkParams(params, 'params', d.sched.params));
    const now = performance.now();
    targets.forEach((d, i) => d.sched.setParams(next[i]!, now));
  }

  statsNow(): RelayStats {
    const now = performance.now();
    const cpu = process.cpuUsage(this.cpuAtStart);
    return {
      uptimeMs: Math.round(now - this.startedMs),
      cpuUserMs: Math.round(cpu.user / 1000),
      cpuSystemMs: Math.round(cpu.system / 1000),
      directions: this.dirs.map((d) => d.stats(now)),
    };
  }

  stats(): Promise<RelayStats> {
    return Promise.resolve(this.statsNow());
  }

  /** Stops: closes the sockets; datagrams still in flight are dropped (as a cut link would). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

// ---------------------------------------------------------------------------------------------
// Control over a unix socket: newline-delimited JSON, one request → one reply with the same id.

interface ControlRequest {
  id: number;
  op: 'setLink' | 'stats' | 'shutdown';
  a?: string;
  b?: string;
  params?: Partial<LinkParams>;
  direction?: LinkDirection;
}

/** Serves `relay` on socketPath; `onShutdown` runs after a 'shutdown' request was answered. */
export async function serveRelayControl(relay: WanRelay, socketPath: string, onShutdown: () => void): Promise<net.Server> {
  rmSync(socketPath, { force: true });
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 1 << 20) {
        conn.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        conn.write(JSON.stringify(answer(line)) + '\n');
      }
    });
  });
  const answer = (line: string): Record<string, unknown> => {
    let id: unknown = null;
    try {
      const req = JSON.parse(line) as ControlRequest;
      id = req.id;
      switch (req.op) {
        case 'setLink':
          if (typeof req.a !== 'string' || typeof req.b !== 'string') throw new InputError('a/b', req, 'setLink needs endpoint names a and b');
          relay.setLinkNow(req.a, req.b, req.params ?? {}, req.direction ?? 'both');
          return { id, ok: true };
        case 'stats':
          return { id, ok: true, stats: relay.statsNow() };
        case 'shutdown':
          setImmediate(onShutdown);
          return { id, ok: true };
        default:
          throw new InputError('op', (req as { op?: unknown }).op, 'must be setLink, stats or shutdown');
      }
    } catch (e) {
      const code = e instanceof AppError ? e.code : 'INTERNAL';
      return { id, ok: false, error: { code, message: (e as Error).message } };
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export interface RelayClient extends RelayControl {
  /** Asks the relay process to stop. */
  shutdown(): Promise<void>;
  /** Closes this connection only. */
  disconnect(): void;
}

/** A client for a relay's control socket (from the lab, or from another process such as `lab status`). */
export function connectRelayControl(socketPath: string, opts: { timeoutMs?: number } = {}): Promise<RelayClient> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    const pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
    let nextId = 1;
    let connected = false;
    const failAll = (e: Error): void => {
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(e);
      }
      pending.clear();
    };
    conn.setEncoding('utf8');
    conn.on('data', jsonLineReader({
      onBadLine: (line, problem) => failAll(new AppError('RELAY_PROTOCOL', `The WAN relay's control socket ${socketPath} sent ${problem}: ${line}`)),
      onMessage: (msg) => {
        const p = typeof msg.id === 'number' ? pending.get(msg.id) : undefined;
        if (p === undefined) return;
        pending.delete(msg.id as number);
        clearTimeout(p.timer);
        p.resolve(msg);
      },
    }));
    conn.on('error', (e) => {
      if (!connected) reject(new AppError('RELAY_UNREACHABLE', `Cannot reach the WAN relay's control socket ${socketPath}: ${e.message}`, { cause: e, retryable: true }));
      failAll(new AppError('RELAY_UNREACHABLE', `WAN relay control connection failed: ${e.message}`, { cause: e }));
    });
    conn.on('close', () => failAll(new AppError('RELAY_UNREACHABLE', `WAN relay control socket ${socketPath} closed`)));
    const call = (req: Omit<ControlRequest, 'id'>): Promise<Record<string, unknown>> =>
      new Promise<Record<string, unknown>>((res, rej) => {
        if (conn.destroyed) {
          rej(new AppError('RELAY_UNREACHABLE', `WAN relay control socket ${socketPath} is closed`));
          return;
        }
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          rej(new AppError('RELAY_TIMEOUT', `WAN relay did not answer ${req.op} within ${timeoutMs} ms`, { retryable: true }));
        }, timeoutMs);
        pending.set(id, { resolve: res, reject: rej, timer });
        conn.write(JSON.stringify({ ...req, id }) + '\n');
      }).then((reply) => {
        if (reply.ok !== true) {
          const err = isObj(reply.error) ? reply.error : {};
          throw new AppError(typeof err.code === 'string' ? err.code : 'RELAY_ERROR', `WAN relay refused ${req.op}: ${String(err.message)}`);
        }
        return reply;
      });
    conn.once('connect', () => {
      connected = true;
      resolve({
        setLink: async (a, b, params, direction = 'both') => {
          await call({ op: 'setLink', a, b, params, direction });
        },
        stats: async () => (await call({ op: 'stats' })).stats as RelayStats,
        shutdown: async () => {
          await call({ op: 'shutdown' });
        },
        disconnect: () => conn.destroy(),
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The relay as a child process inside a namespace

export const RELAY_MAIN = fileURLToPath(new URL('./relay-main.js', import.meta.url));

export interface RelayProcess extends RelayControl {
  pid: number;
  controlSocket: string;
  configFile: string;
  /** Stops the relay process (shutdown request, then SIGKILL after a grace period). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `node relay-main.js` in namespace `ns` of `run`, recorded in the run's registry (pid, config
 * file, control socket) so cleanup stops it even if this process dies. Resolves once it is bound.
 */
export async function startRelayProcess(
  run: NetnsRun,
  ns: string,
  config: RelayConfig,
  opts: { dir?: string; readyTimeoutMs?: number; /** default -10: the emulated network must not starve behind TCG guests */ niceness?: number } = {},
): Promise<RelayProcess> {
  const dir = opts.dir ?? run.stateDir;
  const configFile = run.recordFile(path.join(dir, `${run.runId}-relay.json`));
  const controlSocket = run.recordFile(path.join(dir, `${run.runId}-relay.sock`));
  writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  const { child, pid } = run.spawnIn(ns, [process.execPath, RELAY_MAIN, '--config', configFile, '--control', controlSocket]);
  try {
    os.setPriority(pid, opts.niceness ?? -10);
  } catch {
    // Not permitted or already gone: the relay still works, only less steadily under CPU contention.
  }
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    if (stderr.length < 8192) stderr += d;
  });
  let exited = false;
  const exitedP = new Promise<void>((r) => child.once('exit', () => {
    exited = true;
    r();
  }));
  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new AppError('RELAY_START', `WAN relay (pid ${pid}) did not report ready within ${timeoutMs} ms; stderr: ${stderr.trim() || '(none)'}`)), timeoutMs);
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (d: string) => {
        out += d;
        if (out.includes('"ready":true')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exitedP.then(() => {
        clearTimeout(timer);
        reject(new AppError('RELAY_START', `WAN relay exited before it was ready (exit code ${String(child.exitCode)}); stderr: ${stderr.trim() || '(none)'}`));
      });
    });
  } catch (e) {
    if (!exited) child.kill('SIGKILL');
    throw e;
  }
  const client = await connectRelayControl(controlSocket);
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        await client.shutdown().catch(() => undefined);
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exitedP;
        clearTimeout(killer);
      }
      client.disconnect();
    })();
    return stopping;
  };
  return {
    pid,
    controlSocket,
    configFile,
    setLink: (a, b, params, direction) => client.setLink(a, b, params, direction),
    stats: () => client.stats(),
    stop,
  };
}
