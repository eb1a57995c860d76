import { createSocket, type Socket } from 'node:dgram';
import { InputError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { CollectorCore } from './collector.js';

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

export interface UdpCollector {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

/** Puts a CollectorCore on a UDP socket; ticks it every tickMs so windows close on time. */
export async function listenUdp(core: CollectorCore, at: ListenAddress, clock: Clock, opts: { tickMs?: number; recvBufferBytes?: number; onError?: (e: unknown) => void } = {}): Promise<UdpCollector> {
  const sock: Socket = createSocket({ type: at.host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: opts.recvBufferBytes ?? 32 * 1024 * 1024 });
  // The exporter's name, "address:port", made once per exporter rather than once per datagram: the
  // same string object then makes the collector's per-exporter lookups cheap.
  const names = new Map<number, { address: string; name: string }>();
  sock.on('message', (msg, rinfo) => {
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
    throw new InputError('--listen', `${at.host}:${at.port}`, `cannot be bound: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // After bind, a socket error (rare: ICMP errors, resource limits) is reported, not fatal.
  sock.on('error', (e) => opts.onError?.(e));
  const timer = setInterval(() => {
    try {
      core.tick(clock.nowMs());
    } catch (e) {
      opts.onError?.(e);
    }
  }, opts.tickMs ?? 1000);
  timer.unref();
  const a = sock.address();
  return {
    address: { host: a.address, port: a.port },
    close: () => new Promise<void>((resolve) => {
      clearInterval(timer);
      sock.close(() => resolve());
    }),
  };
}
