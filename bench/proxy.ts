// bench/proxy: the proxy's added latency per round trip and its throughput on loopback, side by side in one
// run with HAProxy in TCP mode (Debian's haproxy, started here with a generated config, killed after).
//
// Latency: a 64-byte ping-pong to an echo server, direct and through each proxy, interleaved in blocks so
// drift hits all three alike; added = through − direct (median and p99). Throughput: one stream, then
// several, of bulk data into a sink, for a byte budget or a time budget, whichever ends first. Each proxy's
// CPU use (from /proc) says how many cores it used. Targets: ≥ 0.8× HAProxy's throughput, ≤ 2× its added
// latency.
//
//   node dist/bench/proxy.js [--quick] [--json]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const PROXY_MAIN = fileURLToPath(new URL('../src/proxy/main.js', import.meta.url));

export interface ProxyBenchOptions {
  quick: boolean;
  json: boolean;
  out: (s: string) => void;
  err?: (s: string) => void;
}

interface Side {
  throughputMbit: number;
  throughputMBps: number;
  throughputMultiMBps: number;
  addedLatencyUs: number;
  addedLatencyP99Us: number;
  /** the proxy process's CPU time per echo round trip (both directions) */
  cpuUsPerRoundTrip: number;
  cpuCoresSingle: number;
  cpuCoresMulti: number;
}

export interface ProxyBenchResult {
  ours: Side;
  haproxy: Side;
  direct: { latencyMedianUs: number; latencyP99Us: number; throughputMBps: number; throughputMultiMBps: number };
  streams: number;
  threads: number;
  cores: number;
  haproxyVersion: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return typeof a === 'object' && a !== null ? a.port : 0;
}

function waitLine(child: ChildProcess, re: RegExp, what: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what}: not ready within ${timeoutMs} ms; stderr: ${err.slice(-500)}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = re.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${String(code)}: ${err.slice(-500)}`));
    });
  });
}

async function waitListening(port: number, child: ChildProcess, stderr: () => string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${String(child.spawnfile)} exited with ${child.exitCode}: ${stderr().slice(-500)}`);
    const ok = await new Promise<boolean>((r) => {
      const c = createConnection({ port, host: '127.0.0.1' }, () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** CPU seconds (user + system) a process and its threads have used. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

// ---- helpers run as child processes -------------------------------------------------------------

function serveEcho(port: number): void {
  const srv = createServer({ noDelay: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  srv.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
}

function serveSink(port: number): void {
  const srv = createServer((s) => {
    s.on('error', () => undefined);
    s.resume();
  });
  srv.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
}

/** Sends `bytes` (or for `seconds`) over `streams` connections to the port; prints MB/s. */
async function clientThroughput(port: number, streams: number, bytes: number, seconds: number): Promise<void> {
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const perStream = Math.floor(bytes / streams);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const sent = await Promise.all(Array.from({ length: streams }, () => new Promise<number>((resolve, reject) => {
    let n = 0;
    const s: Socket = createConnection({ port, host: '127.0.0.1' });
    s.on('error', reject);
    const pump = (): void => {
      while (n < perStream && performance.now() < deadline) {
        n += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    s.once('connect', pump);
    s.once('close', () => resolve(n));
  })));
  const total = sent.reduce((a, b) => a + b, 0);
  const secs = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ bytes: total, seconds: secs, MBps: total / secs / 1e6 }) + '\n');
}

// ---- measurements --------------------------------------------------------------------------------

/** One connection for ping-pong round trips of a 64-byte message; `run(n)` gives each round trip in µs. */
async function pinger(port: number): Promise<{ run(n: number): Promise<number[]>; close(): void }> {
  const s = createConnection({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((r, j) => {
    s.once('connect', () => r());
    s.once('error', j);
  });
  const msg = Buffer.alloc(64, 1);
  let got = 0;
  let wake: (() => void) | null = null;
  const state: { failed: Error | null } = { failed: null };
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= msg.length && wake !== null) wake();
  });
  s.on('error', (e) => {
    state.failed = e;
    wake?.();
  });
  return {
    run: async (n) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        got = 0;
        const t0 = process.hrtime.bigint();
        await new Promise<void>((resolve) => {
          wake = resolve;
          s.write(msg);
        });
        wake = null;
        if (state.failed !== null) throw state.failed;
        out.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      return out;
    },
    close: () => s.destroy(),
  };
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function throughput(port: number, streams: number, bytes: number, seconds: number, pids: number[]): Promise<{ MBps: number; cores: number }> {
  const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const t0 = performance.now();
  const child = spawn(process.execPath, [self, '--client-throughput', String(port), String(streams), String(bytes), String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const line = await waitLine(child, /\{.*\}\n/, 'throughput client', (seconds + 30) * 1000);
  const wall = (performance.now() - t0) / 1000;
  const cpu = pids.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0;
  const r = JSON.parse(line) as { MBps: number };
  return { MBps: r.MBps, cores: pids.length === 0 ? 0 : cpu / wall };
}

export async function runProxyBench(o: ProxyBenchOptions): Promise<ProxyBenchResult> {
  const err = o.err ?? ((s: string) => process.stderr.write(s));
  // Like with like: HAProxy with one thread, ours one Node process (one event loop).
  const threads = 1;
  const hv = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (hv.error !== undefined || hv.status !== 0) {
    throw new Error('bench proxy needs HAProxy: apt-get install -y --no-install-recommends haproxy');
  }
  const haproxyVersion = (/version (\S+)/.exec(hv.stdout) ?? [])[1] ?? 'unknown';
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-bench-proxy-'));
  const children: ChildProcess[] = [];
  const start = (argv: string[]): ChildProcess => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    return c;
  };
  try {
    const [echoPort, sinkPort, oursEcho, oursSink, haEcho, haSink] = await Promise.all([0, 0, 0, 0, 0, 0].map(() => freePort())) as [number, number, number, number, number, number];
    const echo = start([process.execPath, self, '--serve-echo', String(echoPort)]);
    const sink = start([process.execPath, self, '--serve-sink', String(sinkPort)]);
    await Promise.all([waitLine(echo, /ready/, 'echo server'), waitLine(sink, /ready/, 'sink server')]);

    const route = (service: string, listen: number, to: number): unknown => ({ kind: 'set', service, generation: 1, listen: { host: '127.0.0.1', port: listen }, backends: [{ host: '127.0.0.1', port: to }] });
    const routesFile = join(dir, 'routes.json');
    writeFileSync(routesFile, JSON.stringify([route('echo', oursEcho, echoPort), route('sink', oursSink, sinkPort)]));
    const ours = start([process.execPath, PROXY_MAIN, '--routes', routesFile]);
    await waitLine(ours, /"event":"ready"/, 'our proxy');

    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, [
      'global',
      `  nbthread ${threads}`,
      '  maxconn 4000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1h',
      '  timeout server 1h',
      `listen echo`,
      `  bind 127.0.0.1:${haEcho}`,
      `  server s1 127.0.0.1:${echoPort}`,
      `listen sink`,
      `  bind 127.0.0.1:${haSink}`,
      `  server s1 127.0.0.1:${sinkPort}`,
      '',
    ].join('\n'));
    const ha = start(['haproxy', '-db', '-f', cfg]);
    let haErr = '';
    ha.stderr?.on('data', (d: Buffer) => {
      haErr = (haErr + d.toString()).slice(-2000);
    });
    await Promise.all([waitListening(haEcho, ha, () => haErr), waitListening(haSink, ha, () => haErr)]);

    // Latency: blocks of each path in turn.
    // Added latency per block (block median through a proxy − the block's direct median), then the median over
    // blocks: other load on the machine drifts, and each block compares like with like.
    const blocks = o.quick ? 10 : 40;
    const perBlock = 50;
    const lat = { direct: [] as number[], ours: [] as number[], haproxy: [] as number[] };
    const added = { ours: [] as number[], haproxy: [] as number[] };
    // Warm-up: JIT tiers and buffers settle before anything is measured.
    const pingers = { direct: await pinger(echoPort), ours: await pinger(oursEcho), haproxy: await pinger(haEcho) };
    for (const p of Object.values(pingers)) await p.run(2000);
    for (const port of [oursSink, haSink]) await throughput(port, 2, 256 * 2 ** 20, 1, []);
    // One connection per path throughout: round trips, not connection set-ups, are measured (CPU included).
    const cpuLat0 = { ours: cpuSeconds(ours.pid ?? 0), haproxy: cpuSeconds(ha.pid ?? 0) };
    for (let b = 0; b < blocks; b++) {
      const d = await pingers.direct.run(perBlock);
      const x = await pingers.ours.run(perBlock);
      const h = await pingers.haproxy.run(perBlock);
      lat.direct.push(...d);
      lat.ours.push(...x);
      lat.haproxy.push(...h);
      added.ours.push(quantile(x, 0.5) - quantile(d, 0.5));
      added.haproxy.push(quantile(h, 0.5) - quantile(d, 0.5));
    }
    for (const p of Object.values(pingers)) p.close();
    const roundTrips = blocks * perBlock;
    const cpuPerRtUs = {
      ours: ((cpuSeconds(ours.pid ?? 0) - cpuLat0.ours) / roundTrips) * 1e6,
      haproxy: ((cpuSeconds(ha.pid ?? 0) - cpuLat0.haproxy) / roundTrips) * 1e6,
    };
    const dMed = quantile(lat.direct, 0.5);
    const dP99 = quantile(lat.direct, 0.99);

    // Throughput: one stream, then several; rounds alternate the three paths and the median of each is kept,
    // so load from elsewhere on the machine falls on all of them alike.
    const streams = 4;
    const rounds = o.quick ? 1 : 3;
    const bytes = o.quick ? 512 * 2 ** 20 : 2 * 2 ** 30;
    const seconds = o.quick ? 2 : 5;
    const pidOf = (c: ChildProcess): number[] => (c.pid === undefined ? [] : [c.pid]);
    type Tp = { MBps: number; cores: number };
    const runs: Record<'direct1' | 'ours1' | 'ha1' | 'directN' | 'oursN' | 'haN', Tp[]> = { direct1: [], ours1: [], ha1: [], directN: [], oursN: [], haN: [] };
    for (let r = 0; r < rounds; r++) {
      runs.direct1.push(await throughput(sinkPort, 1, bytes, seconds, []));
      runs.ours1.push(await throughput(oursSink, 1, bytes, seconds, pidOf(ours)));
      runs.ha1.push(await throughput(haSink, 1, bytes, seconds, pidOf(ha)));
      runs.directN.push(await throughput(sinkPort, streams, bytes, seconds, []));
      runs.oursN.push(await throughput(oursSink, streams, bytes, seconds, pidOf(ours)));
      runs.haN.push(await throughput(haSink, streams, bytes, seconds, pidOf(ha)));
    }
    const med = (xs: Tp[]): Tp => ({ MBps: quantile(xs.map((x) => x.MBps), 0.5), cores: quantile(xs.map((x) => x.cores), 0.5) });
    const tp = {
      direct1: med(runs.direct1), ours1: med(runs.ours1), ha1: med(runs.ha1),
      directN: med(runs.directN), oursN: med(runs.oursN), haN: med(runs.haN),
    };
    const side = (l: number[], add: number[], cpuUs: number, one: { MBps: number; cores: number }, many: { MBps: number; cores: number }): Side => ({
      throughputMbit: Math.round(one.MBps * 8),
      throughputMBps: Math.round(one.MBps),
      throughputMultiMBps: Math.round(many.MBps),
      addedLatencyUs: Math.round(quantile(add, 0.5)),
      cpuUsPerRoundTrip: Math.round(cpuUs * 10) / 10,
      addedLatencyP99Us: Math.round(quantile(l, 0.99) - dP99),
      cpuCoresSingle: Math.round(one.cores * 100) / 100,
      cpuCoresMulti: Math.round(many.cores * 100) / 100,
    });
    const result: ProxyBenchResult = {
      ours: side(lat.ours, added.ours, cpuPerRtUs.ours, tp.ours1, tp.oursN),
      haproxy: side(lat.haproxy, added.haproxy, cpuPerRtUs.haproxy, tp.ha1, tp.haN),
      direct: { latencyMedianUs: Math.round(dMed), latencyP99Us: Math.round(dP99), throughputMBps: Math.round(tp.direct1.MBps), throughputMultiMBps: Math.round(tp.directN.MBps) },
      streams, threads, cores: cpus().length, haproxyVersion,
    };
    if (o.json) {
      o.out(JSON.stringify(result) + '\n');
    } else {
      const r = result;
      const ratio = (a: number, b: number): string => (b === 0 ? '∞' : (a / b).toFixed(2));
      o.out(`# loopback, ${r.cores} cores; HAProxy ${haproxyVersion} nbthread ${threads}, ours 1 Node process; direct echo RTT median ${r.direct.latencyMedianUs} µs, p99 ${r.direct.latencyP99Us} µs; direct throughput ${r.direct.throughputMBps} MB/s (1 stream), ${r.direct.throughputMultiMBps} MB/s (${streams} streams)\n`);
      o.out(`proxy latency: ours +${r.ours.addedLatencyUs} µs vs haproxy +${r.haproxy.addedLatencyUs} µs (ratio ${ratio(r.ours.addedLatencyUs, r.haproxy.addedLatencyUs)}, target ≤ 2.0)\n`);
      o.out(`proxy CPU per round trip: ours ${r.ours.cpuUsPerRoundTrip} µs vs haproxy ${r.haproxy.cpuUsPerRoundTrip} µs (ratio ${ratio(r.ours.cpuUsPerRoundTrip, r.haproxy.cpuUsPerRoundTrip)})\n`);
      o.out(`proxy latency p99 (informative: the machine's other load dominates it): ours +${r.ours.addedLatencyP99Us} µs vs haproxy +${r.haproxy.addedLatencyP99Us} µs (ratio ${ratio(r.ours.addedLatencyP99Us, r.haproxy.addedLatencyP99Us)})\n`);
      o.out(`proxy throughput: ours ${r.ours.throughputMBps} MB/s vs haproxy ${r.haproxy.throughputMBps} MB/s (ratio ${ratio(r.ours.throughputMBps, r.haproxy.throughputMBps)}, target ≥ 0.8; 1 stream; CPU cores used: ours ${r.ours.cpuCoresSingle}, haproxy ${r.haproxy.cpuCoresSingle})\n`);
      o.out(`proxy throughput ${streams} streams: ours ${r.ours.throughputMultiMBps} MB/s vs haproxy ${r.haproxy.throughputMultiMBps} MB/s (ratio ${ratio(r.ours.throughputMultiMBps, r.haproxy.throughputMultiMBps)}, target ≥ 0.8; CPU cores used: ours ${r.ours.cpuCoresMulti}, haproxy ${r.haproxy.cpuCoresMulti})\n`);
    }
    return result;
  } catch (e) {
    err(`bench proxy failed: ${(e as Error).message}\n`);
    throw e;
  } finally {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

const arg = (i: number): string => process.argv[i] ?? '';
if (arg(2) === '--serve-echo') serveEcho(Number(arg(3)));
else if (arg(2) === '--serve-sink') serveSink(Number(arg(3)));
else if (arg(2) === '--client-throughput') await clientThroughput(Number(arg(3)), Number(arg(4)), Number(arg(5)), Number(arg(6)));
else if (process.argv[1] === self) {
  await runProxyBench({
    quick: process.argv.includes('--quick'),
    json: process.argv.includes('--json'),
    out: (s) => process.stdout.write(s),
  });
}
