import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (for servers a test starts as child processes). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The kernel's view of a UDP socket bound to 127.0.0.1:port, from /proc/net/udp: bytes waiting in its
 * receive queue and datagrams it dropped (a full queue). Null while nothing is bound there.
 */
export function loopbackUdpSocket(port: number): { queuedBytes: number; drops: number } | null {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local) return { queuedBytes: parseInt(f[4]!.split(':')[1]!, 16), drops: Number(f[f.length - 1]) };
  }
  return null;
}
