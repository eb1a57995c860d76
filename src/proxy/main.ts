// The proxy as a process (for the lab, tests that run it inside a namespace, and the bench):
//
//   node dist/src/proxy/main.js [--routes FILE.json] [--control /run/x.sock | --control-tcp HOST:PORT]
//        [--nft-table NAME] [--idle-timeout-ms N] [--connect-timeout-ms N] [--drain-ms N] [--log-level L]
//
// FILE.json holds an array of route updates (routes.ts) applied at start. With --nft-table the proxy owns
// that nftables table in its namespace and re-points backends' paths (case b, nat.ts). Prints one line
// {"event":"ready",...} on stdout once every listener is open; logs JSON lines on stderr. SIGTERM/SIGINT:
// stop accepting, let sessions finish for --drain-ms (default 0), reset the rest, exit 0.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createJsonLogger, type LogLevel } from '../core/logger.js';
import { InputError } from '../core/errors.js';
import { startControlServer, type ControlAddress } from './control.js';
import { createNftPathRewriter } from './nat.js';
import { parseRouteUpdate, type RouteUpdate } from './routes.js';
import { startProxy } from './server.js';

function int(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InputError(flag, v, 'must be a whole number ≥ 0');
  return n;
}

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      routes: { type: 'string' },
      control: { type: 'string' },
      'control-tcp': { type: 'string' },
      'nft-table': { type: 'string' },
      'idle-timeout-ms': { type: 'string' },
      'connect-timeout-ms': { type: 'string' },
      'drain-ms': { type: 'string' },
      'log-level': { type: 'string', default: 'warn' },
    },
  });
  const log = createJsonLogger({ write: (l) => process.stderr.write(l), level: v['log-level'] as LogLevel, base: { component: 'proxy', pid: process.pid } });
  let updates: RouteUpdate[] = [];
  if (v.routes !== undefined) {
    const raw: unknown = JSON.parse(readFileSync(v.routes, 'utf8'));
    if (!Array.isArray(raw)) throw new InputError('--routes', v.routes, 'must hold a JSON array of route updates');
    updates = raw.map((u, i) => parseRouteUpdate(u, `routes[${i}]`));
  }
  const paths = v['nft-table'] === undefined ? null : await createNftPathRewriter({ table: v['nft-table'] });
  const proxy = await startProxy(updates, {
    log, paths,
    idleTimeoutMs: int(v['idle-timeout-ms'], '--idle-timeout-ms', 3_600_000),
    connectTimeoutMs: int(v['connect-timeout-ms'], '--connect-timeout-ms', 5000),
  });
  let controlAt: ControlAddress | null = null;
  if (v.control !== undefined) controlAt = { path: v.control };
  else if (v['control-tcp'] !== undefined) {
    const m = /^(.+):(\d+)$/.exec(v['control-tcp']);
    if (m === null) throw new InputError('--control-tcp', v['control-tcp'], 'must be HOST:PORT');
    controlAt = { host: m[1]!, port: Number(m[2]) };
  }
  const control = controlAt === null ? null : await startControlServer(proxy, controlAt);
  const drainMs = int(v['drain-ms'], '--drain-ms', 0);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      await control?.close();
      await proxy.close({ drainMs });
      process.exit(0);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const ports = Object.fromEntries(proxy.routes().map((r) => [r.service, proxy.boundPort(r.service)]));
  process.stdout.write(JSON.stringify({ event: 'ready', pid: process.pid, ports, control: control?.address ?? null }) + '\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`vmshadow proxy: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
