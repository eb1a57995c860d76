// `ip netns exec <ns> node probe-agent.js`: times TCP connects from inside a site's network namespace for
// the namespace prober (site-prober.ts). Prints {"ready":true,"pid":…}, then answers one request per stdin
// line, {"id":1,"host":"10.77.0.4","port":9,"timeoutMs":1000[,"localAddress":"…"]}, with
// {"id":1,"ok":true,"result":{"rttMs":…,"how":"refused"}} or {"id":1,"ok":false,"code":"PROBE_TIMEOUT","error":"…"}.
// Requests run concurrently (at most MAX_IN_FLIGHT). End of stdin (the manager went away) ends the agent.
import net from 'node:net';
import { isAppError } from '../core/errors.js';
import { jsonLineReader } from '../core/json-lines.js';
import { probeRtt } from './prober.js';

const MAX_IN_FLIGHT = 512;
const MAX_TIMEOUT_MS = 60_000;
let inFlight = 0;

const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};

function handle(msg: Record<string, unknown>): void {
  const id = typeof msg.id === 'number' ? msg.id : null;
  const { host, port, timeoutMs, localAddress } = msg;
  const bad = (problem: string): void => out({ id, ok: false, code: 'AGENT_BAD_REQUEST', error: `Probe request ${JSON.stringify(msg).slice(0, 200)}: ${problem}` });
  if (id === null) return bad('needs a numeric id');
  if (typeof host !== 'string' || net.isIP(host) === 0) return bad('host must be an IP address');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) return bad('port must be a whole number from 1 to 65535');
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) return bad(`timeoutMs must be a number in (0, ${MAX_TIMEOUT_MS}]`);
  if (localAddress !== undefined && (typeof localAddress !== 'string' || net.isIP(localAddress) === 0)) return bad('localAddress must be an IP address');
  if (inFlight >= MAX_IN_FLIGHT) {
    out({ id, ok: false, code: 'AGENT_BUSY', error: `Probe agent (pid ${process.pid}) refused ${host}:${port}: ${inFlight} probes already in flight` });
    return;
  }
  inFlight++;
  probeRtt(host, port, { timeoutMs, ...(localAddress === undefined ? {} : { localAddress }) }).then(
    (r) => out({ id, ok: true, result: r }),
    (e: unknown) => out({ id, ok: false, code: isAppError(e) ? e.code : 'PROBE_FAILED', error: (e as Error).message }),
  ).finally(() => {
    inFlight--;
  });
}

process.stdout.on('error', () => process.exit(0)); // the reader went away
process.stdin.setEncoding('utf8');
process.stdin.on('data', jsonLineReader({
  onMessage: handle,
  onBadLine: (line, problem) => out({ id: null, ok: false, code: 'AGENT_BAD_REQUEST', error: `Unreadable probe request ${JSON.stringify(line.slice(0, 100))}: ${problem}` }),
  maxLineChars: 4096,
}));
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
out({ ready: true, pid: process.pid });
