// `node dist/src/lab/wan/relay-main.js --config FILE --control SOCKET`: the WAN relay as a process
// (started inside the lab's `…-wan` namespace by startRelayProcess). Prints {"ready":true,…} on
// stdout once bound; stops on SIGTERM, SIGINT or a 'shutdown' control request.
import { readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { parseRelayConfig, serveRelayControl, WanRelay } from './relay.js';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) {
    process.stderr.write(`relay-main: missing ${name} (usage: relay-main --config FILE --control SOCKET)\n`);
    process.exit(2);
  }
  return v;
}

async function main(): Promise<void> {
  const configFile = arg('--config');
  const controlSocket = arg('--control');
  const config = parseRelayConfig(JSON.parse(readFileSync(configFile, 'utf8')) as unknown, 'relay');
  const relay = await WanRelay.start(config);
  let server: Server | null = null;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server?.close();
    rmSync(controlSocket, { force: true });
    void relay.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  server = await serveRelayControl(relay, controlSocket, stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, links: config.links.length }) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`relay-main: ${(e as Error).message}\n`);
  process.exit(1);
});
