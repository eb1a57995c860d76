// Active RTT probes without raw sockets: the time a TCP connect takes is one round trip (SYN → SYN-ACK). A
// refused connect measures it too (SYN → RST), so a user endpoint with no open port is still measurable.
import net from 'node:net';
import { AppError } from '../core/errors.js';

export interface ProbeResult {
  readonly rttMs: number;
  /** 'connected': SYN-ACK; 'refused': RST — both are one round trip. */
  readonly how: 'connected' | 'refused';
}

export interface ProbeOptions {
  readonly timeoutMs?: number;
  /** Bind the probe's source address (the site's address, when probing from a site's namespace or interface). */
  readonly localAddress?: string;
}

/** One probe to host:port. Rejects with PROBE_TIMEOUT or PROBE_FAILED (unreachable, …), naming the target. */
export function probeRtt(host: string, port: number, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const elapsedMs = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
    const sock = net.connect({ host, port, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new AppError('PROBE_TIMEOUT', `RTT probe to ${host}:${port} got no answer within ${timeoutMs} ms`, { retryable: true }));
    }, timeoutMs);
    sock.once('connect', () => {
      const rttMs = elapsedMs();
      clearTimeout(timer);
      sock.destroy();
      resolve({ rttMs, how: 'connected' });
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      const rttMs = elapsedMs();
      clearTimeout(timer);
      sock.destroy();
      if (e.code === 'ECONNREFUSED') resolve({ rttMs, how: 'refused' });
      else reject(new AppError('PROBE_FAILED', `RTT probe to ${host}:${port} failed: ${e.code ?? e.message}`, { retryable: true, cause: e }));
    });
  });
}
