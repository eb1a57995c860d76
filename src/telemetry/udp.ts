import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { AppError, InputError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { CollectorCore } from './collector.js';
import { loadNativeUdp, META, type NativeUdp, type NativeUdpError, type NativeUdpHandle } from './udp-native.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses "HOST:PORT" or "[V6]:PORT". */
export function parseListen(s: string, field = '--listen'): ListenAddress {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (m === null) throw new InputError(field, s, 'must be HOST:PORT, e.g. 127.0.0.1:4739 or [::1]:4739');
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InputError(field, s, 'port must be 0–65535');
  return { host: m[1]!, port };
}

/** Resolves once `count` (datagrams received so far) has not changed for quietMs: the sender is done. */
export async function untilQuiet(count: () => number, quietMs: number): Promise<void> {
  let seen = -1;
  while (seen !== count()) {
    seen = count();
    await new Promise((r) => setTimeout(r, quietMs));
  }
}

/** How datagrams are received: the native recvmmsg addon, Node's dgram, or the addon when it loads. */
export type UdpReceive = 'auto' | 'native' | 'dgram';

/** Reads a receive mode (VMSHADOW_UDP_RECEIVE, read by the callers): unset or empty is 'auto'. */
export function parseUdpReceive(s: string | undefined, field = 'VMSHADOW_UDP_RECEIVE'): UdpReceive {
  if (s === undefined || s === '') return 'auto';
  if (s === 'auto' || s === 'native' || s === 'dgram') return s;
  throw new InputError(field, s, "must be 'auto', 'native' or 'dgram'");
}

export interface UdpStats {
  /** Datagrams received, truncated ones included. */
  datagrams: number;
  /** Datagrams longer than a receive slot: counted and dropped, never ingested. */
  truncated: number;
  /** JavaScript calls that delivered datagrams: one per recvmmsg batch natively, one per datagram on dgram. */
  batches: number;
}

export interface UdpCollector {
  readonly address: ListenAddress;
  /** Which receive path this socket uses. */
  readonly path: 'native' | 'dgram';
  /** The socket's receive buffer as the kernel reports it (Linux: double what it granted, for its bookkeeping). */
  readonly recvBufferBytes: number;
  stats(): UdpStats;
  /** Stops receiving and ticking; safe to call more than once. */
  close(): Promise<void>;
}

export interface ListenUdpOptions {
  tickMs?: number;
  recvBufferBytes?: number;
  /**
   * Native path, as root: set the receive buffer past net.core.rmem_max (SO_RCVBUFFORCE; default true).
   * dgram cannot: its buffer is always capped by rmem_max.
   */
  forceRecvBuffer?: boolean;
  onError?: (e: unknown) => void;
  /** Default 'auto': the native path when its addon loads, else dgram (logged once, with the reason). */
  receive?: UdpReceive;
  log?: Logger;
  /** Where the addon is (tests); default dist/native/udp_recv.node. */
  nativePath?: string;
  /** Native receive slot size (tests; default 65,536, which no UDP datagram exceeds). */
  nativeSlotBytes?: number;
}

const DEFAULT_RECV_BUFFER_BYTES = 32 * 1024 * 1024;
/** Truncation warnings: the first, then at most one per this many ms with the count in between. */
const TRUNCATED_LOG_EVERY_MS = 10_000;

const listenText = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * Puts a CollectorCore on a UDP socket; ticks it every tickMs so windows close on time. The datagrams
 * come through the native recvmmsg path (a batch per JavaScript call) or Node's dgram (a call per
 * datagram); the core sees the same ingest(datagram, "address:port", nowMs) either way.
 */
export async function listenUdp(core: CollectorCore, at: ListenAddress, clock: Clock, opts: ListenUdpOptions = {}): Promise<UdpCollector> {
  const log = opts.log ?? silentLogger;
  const receive = opts.receive ?? 'auto';
  let udp: UdpCollector;
  let why = 'asked for';
  const native = receive === 'dgram' ? null : loadNativeUdp(opts.nativePath);
  if (native?.ok === true) {
    if (receive === 'auto') why = `the addon loaded (${native.path})`;
    udp = await listenNative(native.addon, core, at, clock, opts, log);
  } else {
    if (native !== null && !native.ok) {
      if (receive === 'native') {
        throw new AppError('UDP_NATIVE_UNAVAILABLE', `Cannot receive UDP on the native path as asked: ${native.reason}; the dgram path works without it (receive 'auto' or 'dgram')`);
      }
      why = `native addon unavailable: ${native.reason}`;
    }
    udp = await listenDgram(core, at, clock, opts);
  }
  const listen = listenText(udp.address.host, udp.address.port);
  log.info(`UDP receive path: ${udp.path === 'native' ? 'native recvmmsg' : 'Node dgram'}`, { path: udp.path, why, listen, recvBufferBytes: udp.recvBufferBytes });
  const asked = opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER_BYTES;
  if (udp.recvBufferBytes < asked) {
    log.warn('the UDP receive buffer is smaller than asked: a burst may be dropped', {
      listen, askedBytes: asked, reportedBytes: udp.recvBufferBytes, fix: 'raise net.core.rmem_max (sysctl), or run the native path as root',
    });
  }
  return udp;
}

/** Ticks the core every tickMs; errors are reported, not fatal. */
function startTicking(core: CollectorCore, clock: Clock, opts: ListenUdpOptions): NodeJS.Timeout {
  const timer = setInterval(() => {
    try {
      core.tick(clock.nowMs());
    } catch (e) {
      opts.onError?.(e);
    }
  }, opts.tickMs ?? 1000);
  timer.unref();
  return timer;
}

interface NameEntry {
  family: number;
  port: number;
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  name: string;
}

/**
 * Exporter names ("address:port", "[v6]:port") by source, made once per exporter rather than once per
 * datagram: the same string object then makes the collector's per-exporter lookups cheap.
 */
class ExporterNames {
  private readonly byKey = new Map<number, NameEntry>();
  private last: NameEntry | null = null;

  constructor(private readonly format: (family: number, w0: number, w1: number, w2: number, w3: number) => string) {}

  get(family: number, port: number, w0: number, w1: number, w2: number, w3: number): string {
    const l = this.last;
    if (l !== null && l.port === port && l.w0 === w0 && l.w1 === w1 && l.w2 === w2 && l.w3 === w3 && l.family === family) return l.name;
    // An IPv4 source and port make an exact key; an IPv6 one a hash, checked against the entry.
    const key = family === 4
      ? (w0 >>> 0) * 65536 + port
      : 2 ** 48 + ((Math.imul(w0, 0x9e3779b1) ^ Math.imul(w1, 0x85ebca6b) ^ Math.imul(w2, 0xc2b2ae35) ^ w3) >>> 0) * 65536 + port;
    let e = this.byKey.get(key);
    if (e === undefined || e.port !== port || e.w0 !== w0 || e.w1 !== w1 || e.w2 !== w2 || e.w3 !== w3 || e.family !== family) {
      const address = family === 4 || family === 6 ? this.format(family, w0, w1, w2, w3) : 'unknown';
      e = { family, port, w0, w1, w2, w3, name: family === 6 ? `[${address}]:${port}` : `${address}:${port}` };
      if (this.byKey.size >= 4096) this.byKey.clear();
      this.byKey.set(key, e);
    }
    this.last = e;
    return e.name;
  }
}

async function listenNative(addon: NativeUdp, core: CollectorCore, at: ListenAddress, clock: Clock, opts: ListenUdpOptions, log: Logger): Promise<UdpCollector> {
  let host = at.host;
  if (isIP(host) === 0) {
    try {
      host = (await lookup(host, { family: 4 })).address;
    } catch (e) {
      throw new InputError('--listen', listenText(at.host, at.port), `cannot be bound: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }
  const stats: UdpStats = { datagrams: 0, truncated: 0, batches: 0 };
  const names = new ExporterNames(addon.formatAddress);
  const M = addon.metaInts;
  let truncatedLog = { atMs: -Infinity, suppressed: 0 };
  // Set once open() returns; onBatch cannot run before (it runs from the event loop).
  let bytes = new Uint8Array(0);
  let meta = new Int32Array(0);
  let slotBytes = 0;
  /** onError must not throw into the addon (that would end the batch); a throwing handler is logged instead. */
  const report = (e: unknown): void => {
    try {
      opts.onError?.(e);
    } catch (e2) {
      log.error('the collector\'s error handler threw; collection goes on', { error: (e2 as Error).message ?? String(e2) });
    }
  };
  const onBatch = (count: number): void => {
    stats.batches++;
    const nowMs = clock.nowMs();
    for (let i = 0; i < count; i++) {
      const o = i * M;
      stats.datagrams++;
      // Each datagram on its own: whatever throws (the name, a log line, the core) costs that datagram
      // only, counted and reported; the rest of the batch goes on.
      try {
        if (meta[o + META.truncated] !== 0) {
          stats.truncated++;
          if (nowMs - truncatedLog.atMs >= TRUNCATED_LOG_EVERY_MS) {
            log.warn('dropped a UDP datagram longer than a receive slot', { slotBytes, truncated: stats.truncated, suppressedSinceLast: truncatedLog.suppressed });
            truncatedLog = { atMs: nowMs, suppressed: 0 };
          } else {
            truncatedLog.suppressed++;
          }
          continue;
        }
        const a = o + META.addr0;
        const name = names.get(meta[o + META.family]!, meta[o + META.port]!, meta[a]!, meta[a + 1]!, meta[a + 2]!, meta[a + 3]!);
        const start = i * slotBytes;
        core.ingest(bytes.subarray(start, start + meta[o + META.length]!), name, nowMs);
      } catch (e) {
        report(e);
      }
    }
  };
  let h: NativeUdpHandle;
  try {
    h = addon.open({ host, port: at.port, recvBufferBytes: opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER_BYTES, forceRecvBuffer: opts.forceRecvBuffer === false ? 0 : 1, ...(opts.nativeSlotBytes === undefined ? {} : { slotBytes: opts.nativeSlotBytes }) }, onBatch,
      (e: NativeUdpError) => report(e));
  } catch (e) {
    throw new InputError('--listen', listenText(at.host, at.port), `cannot be bound: ${(e as NativeUdpError).code ?? (e as Error).message}`, { cause: e });
  }
  bytes = new Uint8Array(h.buffer);
  meta = new Int32Array(h.meta);
  slotBytes = h.slotBytes;
  const timer = startTicking(core, clock, opts);
  let closing: Promise<void> | null = null;
  return {
    address: { host: h.address, port: h.port },
    path: 'native',
    recvBufferBytes: h.recvBufferBytes,
    stats: () => ({ ...stats }),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(timer);
        // The fd is closed at once (the port is free when this returns); libuv frees the poll handle
        // in a later close callback, which nothing here waits for.
        addon.close(h);
        setImmediate(resolve);
      });
      return closing;
    },
  };
}

async function listenDgram(core: CollectorCore, at: ListenAddress, clock: Clock, opts: ListenUdpOptions): Promise<UdpCollector> {
  const sock: Socket = createSocket({ type: at.host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER_BYTES });
  const stats: UdpStats = { datagrams: 0, truncated: 0, batches: 0 };
  // The exporter's name, "address:port", made once per exporter rather than once per datagram: the
  // same string object then makes the collector's per-exporter lookups cheap.
  const names = new Map<number, { address: string; name: string }>();
  sock.on('message', (msg, rinfo) => {
    stats.datagrams++;
    stats.batches++;
    let known = names.get(rinfo.port);
    if (known === undefined || known.address !== rinfo.address) {
      known = { address: rinfo.address, name: rinfo.family === 'IPv6' ? `[${rinfo.address}]:${rinfo.port}` : `${rinfo.address}:${rinfo.port}` };
      if (names.size >= 4096) names.clear();
      names.set(rinfo.port, known);
    }
    try {
      core.ingest(msg, known.name, clock.nowMs());
    } catch (e) {
      // A bug downstream must not stop collection: counted and reported, the next datagram goes on.
      opts.onError?.(e);
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(at.port, at.host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    sock.close();
    throw new InputError('--listen', listenText(at.host, at.port), `cannot be bound: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  // After bind, a socket error (rare: ICMP errors, resource limits) is reported, not fatal.
  sock.on('error', (e) => opts.onError?.(e));
  const timer = startTicking(core, clock, opts);
  const a = sock.address();
  let closing: Promise<void> | null = null;
  return {
    address: { host: a.address, port: a.port },
    path: 'dgram',
    recvBufferBytes: sock.getRecvBufferSize(),
    stats: () => ({ ...stats }),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(timer);
        sock.close(() => resolve());
      });
      return closing;
    },
  };
}
