// `node viewer-main.js --host H --port P [--probe-x X --probe-y Y] [--update-timeout-ms N]`: the
// measuring RFB viewer as a process, so that it can run inside a user's network namespace
// (startViewer in viewer.ts). Prints {"ready":true,…} once the first frame arrived, then answers one
// JSON request per stdin line: {"id":1,"cmd":"measure","ms":3000} | {"id":2,"cmd":"stats"} |
// {"id":3,"cmd":"close"}, each with {"id":…,"ok":true,"result":…} or {"id":…,"ok":false,"error":"…"}.
// If the connection ends by itself it prints {"event":"closed","error":"…"} and exits 1; end of stdin
// closes the viewer.
import { createInterface } from 'node:readline';
import { RfbClient } from './rfb-client.js';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`viewer-main: missing ${name} (usage: viewer-main --host H --port P [--probe-x X --probe-y Y])\n`);
    process.exit(2);
  }
  return v;
}

const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};

async function main(): Promise<void> {
  const probeX = arg('--probe-x', '');
  const probeY = arg('--probe-y', '');
  const client = await RfbClient.connect({
    host: arg('--host'),
    port: Number(arg('--port')),
    updateTimeoutMs: Number(arg('--update-timeout-ms', '10000')),
    connectTimeoutMs: Number(arg('--connect-timeout-ms', '10000')),
    ...(probeX !== '' && probeY !== '' ? { probe: { x: Number(probeX), y: Number(probeY) } } : {}),
  });
  let closing = false;
  void client.closed.then((e) => {
    if (closing) return;
    out({ event: 'closed', error: e?.message ?? 'closed' });
    process.exit(1);
  });
  out({ ready: true, pid: process.pid, width: client.width, height: client.height, name: client.desktopName, version: `${client.serverVersion.major}.${client.serverVersion.minor}` });
  const shutdown = async (): Promise<void> => {
    closing = true;
    await client.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  const rl = createInterface({ input: process.stdin });
  rl.on('close', () => void shutdown());
  rl.on('line', (line) => {
    let req: { id?: unknown; cmd?: unknown; ms?: unknown };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      out({ ok: false, error: `unreadable request ${JSON.stringify(line.slice(0, 100))}` });
      return;
    }
    const id = req.id;
    if (req.cmd === 'measure') {
      client.measure(Number(req.ms)).then(
        (result) => out({ id, ok: true, result }),
        (e: unknown) => out({ id, ok: false, error: (e as Error).message }),
      );
    } else if (req.cmd === 'stats') {
      out({ id, ok: true, result: client.stats() });
    } else if (req.cmd === 'close') {
      out({ id, ok: true, result: null });
      void shutdown();
    } else {
      out({ id, ok: false, error: `unknown cmd ${JSON.stringify(req.cmd)} (measure, stats, close)` });
    }
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`viewer-main: ${(e as Error).message}\n`);
  process.exit(1);
});
