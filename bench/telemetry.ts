// bench/telemetry: decoding throughput of the project's collector vs nfcapd (nfdump), side by side in one
// run, on one recorded softflowd export (IPFIX and NetFlow v9) replayed over loopback to each in turn, at
// full speed and paced; and the collector's memory with 100,000 new flows a minute.
//
// Fairness: both receivers get the same datagrams, the same socket receive buffer, and are measured the
// same way from /proc: CPU seconds of the whole process (user + system, every thread), wall time until
// their socket's queue is empty, and the kernel's drop counter for their socket. nfcapd also writes its
// records to files; that is its way of keeping them, as windows of rows are ours, and both count.
// Our receiver uses the native recvmmsg path (native/udp_recv.c), with the receive buffer capped by
// net.core.rmem_max as nfcapd's is (no SO_RCVBUFFORCE here); an informational line measures the same
// receiver forced to Node's dgram in the same run.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/core/logger.js';
import type { VmId } from '../src/core/ids.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS } from '../src/telemetry/collector.js';
import { pickDecoder } from '../src/telemetry/decoders/index.js';
import { createInventory, type Inventory } from '../src/telemetry/inventory.js';
import { listenUdp, type UdpReceive } from '../src/telemetry/udp.js';
import { systemClock } from '../src/core/clock.js';
import { writePcap, type SyntheticPacket } from '../src/testing/pcap-writer.js';
import { MapTemplateStore } from '../src/testing/flow-templates.js';
import { quiet, runSoftflowd, startNfcapd, startRelay } from '../src/testing/flow-reference.js';
import { loopbackUdpSocket } from '../src/testing/ports.js';

export interface TelemetryBenchOptions {
  quick: boolean;
  json: boolean;
  out: (s: string) => void;
}

const self = fileURLToPath(import.meta.url);
const f0 = (x: number): string => Math.round(x).toLocaleString('en-US');

/** VMs in the bench's cloud; 9 flows in 10 have one of them at one end, the rest are nobody's. */
const VMS = 10_000;
/** Both receivers ask for this socket receive buffer; the kernel caps it at net.core.rmem_max (and doubles it). */
const RECV_BUFFER_BYTES = 64 * 1024 * 1024;

const vmAddr = (k: number): [number, number, number, number] => [10, 0, (k >>> 8) & 255, k & 255];

export function benchInventory(): Inventory {
  return createInventory(Array.from({ length: VMS }, (_, k) => ({ vm: `vm-${k}` as VmId, ips: [vmAddr(k).join('.')] })));
}

/** n short flows between the cloud's VMs and their users over durationMs: what a hypervisor's exporter sees. */
export function* cloudFlows(n: number, startMs: number, durationMs: number): Generator<SyntheticPacket> {
  for (let i = 0; i < n; i++) {
    const user: [number, number, number, number] = [172, 16 + ((i >>> 16) & 15), (i >>> 8) & 255, i & 255];
    const vm = i % 10 === 9 ? [10, 1, (i >>> 8) & 255, i & 255] as const : vmAddr(i % VMS);
    const out = i % 4 !== 0;
    yield {
      tsMs: startMs + Math.floor((i / n) * durationMs),
      src: out ? vm : user,
      dst: out ? user : vm,
      sport: out ? (i % 2 === 0 ? 443 : 5900) : 1024 + (i % 60000),
      dport: out ? 1024 + (i % 60000) : (i % 2 === 0 ? 443 : 5900),
      proto: i % 3 === 0 ? 17 : 6,
      payloadBytes: 64 + (i % 1000),
    };
  }
}

/**
 * Records a real exporter's datagrams: softflowd reading a synthetic capture of `flows` flows over the
 * minute from startMs. By default dated now, as a live exporter's records are: a receiver then windows
 * them as it would in production (records dated months back would all be late, a path no live exporter takes).
 */
export async function recordExport(version: 9 | 10, flows: number, startMs = Date.now() - 60_000): Promise<Uint8Array[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-bench-'));
  const pcap = join(dir, 'flows.pcap');
  writeFileSync(pcap, writePcap(cloudFlows(flows, startMs, 60_000)));
  const got: Uint8Array[] = [];
  const relay = await startRelay((d) => got.push(d.slice()), null);
  try {
    await runSoftflowd(pcap, relay.port, version);
    await quiet(() => got.length);
  } finally {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return got;
}

/** Flow records in one pass over the recording, by the project's decoders (nfcapd must find as many). */
function recordsIn(datagrams: readonly Uint8Array[]): number {
  const templates = new MapTemplateStore();
  let n = 0;
  for (const d of datagrams) n += pickDecoder(d)?.decode(d, { exporter: 'x', nowMs: 0, templates }).records.length ?? 0;
  return n;
}

/**
 * Sends the recording `times` times over one connected socket. Full speed (perMs null): as fast as the
 * sender can, yielding to the event loop only so its queue does not grow; paced: perMs datagrams per
 * millisecond timer. Resolves once the last datagram has left.
 */
async function replay(datagrams: readonly Uint8Array[], port: number, times: number, perMs: number | null): Promise<void> {
  const sock = createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 });
  await new Promise<void>((r) => sock.connect(port, '127.0.0.1', () => r()));
  try {
    const total = datagrams.length * times;
    let left: Promise<void> = Promise.resolve();
    for (let sent = 0; sent < total;) {
      const d = datagrams[sent % datagrams.length]!;
      if (++sent === total) left = new Promise<void>((r) => sock.send(d, () => r()));
      else sock.send(d);
      if (perMs !== null && sent % perMs === 0) await new Promise((r) => setTimeout(r, 1));
      else if (perMs === null && sent % 512 === 0) await new Promise((r) => setImmediate(r));
    }
    await left;
  } finally {
    sock.close();
  }
}

/** CPU seconds (user + system, all threads) a process has used, from /proc. */
function cpuSecondsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function until(cond: () => boolean, stepMs: number, maxMs: number): Promise<void> {
  const end = performance.now() + maxMs;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, stepMs));
}

/** Waits until a process has stopped using CPU (two readings stepMs apart agree), at most maxMs. */
async function idle(pid: number, stepMs = 150, maxMs = 5000): Promise<void> {
  let last = -1;
  await until(() => {
    const now = cpuSecondsOf(pid);
    const same = now === last;
    last = now;
    return same;
  }, stepMs, maxMs);
}

interface Run {
  records: number;
  cpuS: number;
  wallS: number;
  drops: number;
  recordsPerCpuS: number;
  recordsPerWallS: number;
}

interface Receiver {
  readonly pid: number;
  readonly port: number;
  /** Stops it; returns the records it kept and the CPU seconds it used in all. */
  finish(): Promise<{ records: number; cpuS: number }>;
}

/**
 * Replays to a receiver and measures it the same way whichever it is: first one warm-up pass (a
 * collector runs for days; the JIT's start is not its throughput), then `times` passes measured.
 */
async function measure(rx: Receiver, datagrams: readonly Uint8Array[], recordsPerPass: number, times: number, perMs: number | null): Promise<Run> {
  const drained = (): Promise<void> => until(() => (loopbackUdpSocket(rx.port)?.queuedBytes ?? 0) === 0, 2, 30_000);
  await replay(datagrams, rx.port, 1, perMs);
  await drained();
  await idle(rx.pid);
  const warmDrops = loopbackUdpSocket(rx.port)?.drops ?? 0;
  const cpu0 = cpuSecondsOf(rx.pid);
  const t0 = performance.now();
  await replay(datagrams, rx.port, times, perMs);
  await drained();
  const wallS = (performance.now() - t0) / 1000;
  await idle(rx.pid);
  const drops = (loopbackUdpSocket(rx.port)?.drops ?? 0) - warmDrops;
  const { records: all, cpuS: total } = await rx.finish();
  // The warm-up pass's records, unless it lost some (then the whole run is off by them, and says so).
  const records = all - recordsPerPass;
  const cpuS = Math.max(0.01, total - cpu0);
  return { records, cpuS, wallS, drops: drops + warmDrops, recordsPerCpuS: records / cpuS, recordsPerWallS: records / wallS };
}

/** Our collector in its own process (see receiver()), as systemd would run `vmshadow collect`. */
async function startOurs(receive: 'native' | 'dgram'): Promise<Receiver> {
  const child: ChildProcess = fork(self, ['--receive', receive], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const reply = <T>(): Promise<T> => new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`receiver exited ${code}`));
    child.once('exit', onExit);
    child.once('message', (m) => {
      child.off('exit', onExit);
      resolve(m as T);
    });
  });
  const { port } = await reply<{ port: number }>();
  return {
    pid: child.pid!,
    port,
    finish: async () => {
      const done = reply<{ records: number }>();
      child.send('finish');
      const { records } = await done;
      const cpuS = cpuSecondsOf(child.pid!);
      child.kill();
      await new Promise((r) => child.once('exit', r));
      return { records, cpuS };
    },
  };
}

async function startReference(): Promise<Receiver> {
  const nf = await startNfcapd({ recvBufferBytes: RECV_BUFFER_BYTES });
  return {
    pid: nf.pid,
    port: nf.port,
    finish: async () => {
      const cpuS = cpuSecondsOf(nf.pid);
      return { records: await nf.stopAndCount(), cpuS };
    },
  };
}

/**
 * The receiving side of startOurs: the collector on a UDP socket with the bench's inventory, until told
 * to finish; then every window is closed (as at shutdown) and the records counted.
 */
async function receiver(receive: UdpReceive): Promise<void> {
  const core = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, inventory: benchInventory(), onWindow: () => undefined, log: silentLogger });
  const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { recvBufferBytes: RECV_BUFFER_BYTES, forceRecvBuffer: false, receive });
  process.send!({ port: udp.address.port });
  const giveUp = setTimeout(() => process.exit(3), 10 * 60_000); // an orphan does not linger
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  core.tick(systemClock.nowMs(), true);
  await udp.close();
  clearTimeout(giveUp);
  process.send!({ records: core.stats.records });
  await new Promise(() => undefined); // the parent reads our CPU time, then kills us
}

interface Memory { heapMiBByMinute: number[]; rssMiBByMinute: number[]; windowsEmitted: number }

/** Heap and RSS with 100,000 new flows a minute through the collector core for `minutes` simulated minutes. */
function memoryUnderLoad(minutes: number): Memory {
  const gc = (globalThis as { gc?: () => void }).gc;
  const inventory = createInventory(Array.from({ length: 10_000 }, (_, i) => ({ vm: `vm-${i}` as VmId, ips: [`10.${(i >> 8) & 255}.${i & 255}.1`] })));
  const core = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, windowMs: 10_000, graceMs: 10_000, inventory, onWindow: () => undefined, log: silentLogger });
  const heap: number[] = [];
  const rss: number[] = [];
  const t0 = Date.UTC(2026, 0, 1);
  let flowId = 0;
  // Records go straight to attribution and windowing: the decoders are measured above; the question
  // here is what the collector keeps.
  const add = core.addRecord.bind(core);
  for (let m = 0; m < minutes; m++) {
    for (let k = 0; k < 100_000; k++) {
      const i = flowId++ % 10_000;
      const now = t0 + m * 60_000 + Math.floor((k / 100_000) * 60_000);
      add({ exporter: 'x', domain: 0, srcAddr: `10.${(i >> 8) & 255}.${i & 255}.1`, dstAddr: `203.0.113.${k & 255}`, srcPort: 1024 + (flowId % 60000), dstPort: 443, protocol: 6, bytes: 1000, packets: 3, firstMs: now - 500, lastMs: now, tcpFlags: 0, samplingRate: 1 }, now);
      if (k % 10_000 === 0) core.tick(now);
    }
    gc?.();
    const u = process.memoryUsage();
    heap.push(u.heapUsed / 2 ** 20);
    rss.push(u.rss / 2 ** 20);
  }
  return { heapMiBByMinute: heap, rssMiBByMinute: rss, windowsEmitted: core.stats.windowsEmitted };
}

const bounded = (xs: readonly number[]): boolean => Math.max(...xs.slice(1)) <= 1.5 * (xs[1] ?? xs[0]!);

export async function runTelemetryBench(o: TelemetryBenchOptions): Promise<void> {
  const results: Record<string, unknown>[] = [];
  const line = (s: string): void => {
    if (!o.json) o.out(s + '\n');
  };
  const flows = o.quick ? 20_000 : 100_000;
  const times = o.quick ? 3 : 20;
  const pacedPerMs = 16;
  const rounds = o.quick ? 1 : 3;
  line(`# decoding throughput: records per CPU-second (one core) of each receiver, the same recorded softflowd export (${f0(flows)} flows, ${VMS} VMs, 9 in 10 flows attributed) replayed ${times} times to each after a warm-up pass; full speed, then paced at ${pacedPerMs} datagrams per ms; best of ${rounds} alternating rounds (target ≥ 1.0× nfcapd and ≥ 1,000,000 records/s)${o.quick ? '; --quick is a smoke run, too short to compare' : ''}`);
  const verdicts: boolean[] = [];
  for (const [format, version] of [['ipfix', 10], ['netflow9', 9]] as const) {
    const rec = await recordExport(version, flows);
    const perPass = recordsIn(rec);
    const expected = perPass * times;
    const run = async (start: () => Promise<Receiver>, perMs: number | null): Promise<Run> => measure(await start(), rec, perPass, times, perMs);
    // Rounds alternate the receivers, and each keeps its best: a busy machine slows either at random.
    const best = (a: Run | null, b: Run): Run => (a === null || b.recordsPerCpuS > a.recordsPerCpuS ? b : a);
    let ours: Run | null = null;
    let ref: Run | null = null;
    let oursPaced: Run | null = null;
    let refPaced: Run | null = null;
    let oursDgram: Run | null = null;
    const native = (): Promise<Receiver> => startOurs('native');
    for (let round = 0; round < rounds; round++) {
      ours = best(ours, await run(native, null));
      ref = best(ref, await run(startReference, null));
      oursPaced = best(oursPaced, await run(native, pacedPerMs));
      refPaced = best(refPaced, await run(startReference, pacedPerMs));
      oursDgram = best(oursDgram, await run(() => startOurs('dgram'), null));
    }
    if (ours === null || ref === null || oursPaced === null || refPaced === null || oursDgram === null) throw new Error('no rounds ran');
    const ratio = ours.recordsPerCpuS / ref.recordsPerCpuS;
    const pacedRatio = oursPaced.recordsPerCpuS / refPaced.recordsPerCpuS;
    // Where a receiver dropped at full speed, the paced run (where neither should) is the fair one.
    const fair = ours.drops + ref.drops === 0 ? ratio : pacedRatio;
    const fastest = Math.max(ours.recordsPerCpuS, oursPaced.recordsPerCpuS);
    verdicts.push(fair >= 1 && fastest >= 1_000_000);
    results.push({ case: `decode-${format}`, datagrams: rec.length * times, expectedRecords: expected, ours, nfcapd: ref, ratio, paced: { perMs: pacedPerMs, ours: oursPaced, nfcapd: refPaced, ratio: pacedRatio }, oursOnDgram: oursDgram });
    const side = (r: Run): string => `${f0(r.recordsPerCpuS)} records per CPU-second (${f0(r.records)} of ${f0(expected)} records, ${r.cpuS.toFixed(2)} s CPU, ${f0(r.recordsPerWallS)} records/s wall, ${f0(r.drops)} dropped)`;
    line(`decode-${format}: ours (native recvmmsg) ${side(ours)} vs nfcapd ${side(ref)} → ${ratio.toFixed(2)}× at full speed; paced: ours ${f0(oursPaced.recordsPerCpuS)} (${f0(oursPaced.drops)} dropped) vs nfcapd ${f0(refPaced.recordsPerCpuS)} (${f0(refPaced.drops)} dropped) → ${pacedRatio.toFixed(2)}×`);
    line(`decode-${format} (informational): ours on Node's dgram ${side(oursDgram)} → ${(oursDgram.recordsPerCpuS / ref.recordsPerCpuS).toFixed(2)}× nfcapd; the native path does ${(ours.recordsPerCpuS / oursDgram.recordsPerCpuS).toFixed(2)}× its records per CPU-second`);
  }
  line(`targets (≥ 1.0× nfcapd without drops, ≥ 1,000,000 records per CPU-second): ${verdicts.every((v) => v) ? 'met' : 'NOT met'} (${verdicts.map((v, i) => `${i === 0 ? 'ipfix' : 'netflow9'} ${v ? 'yes' : 'no'}`).join(', ')})`);
  const child = spawnSync(process.execPath, ['--expose-gc', self, '--memory', o.quick ? '4' : '10'], { encoding: 'utf8' });
  const mem = JSON.parse(child.stdout) as Memory;
  results.push({ case: 'memory-100k-flows-per-minute', ...mem });
  const h = mem.heapMiBByMinute;
  const r = mem.rssMiBByMinute;
  line(`memory: after each simulated minute of 100,000 new flows: heap ${h.map((x) => x.toFixed(0)).join(', ')} MiB; RSS ${r.map((x) => x.toFixed(0)).join(', ')} MiB (bounded: ${bounded(h) && bounded(r) ? 'yes' : 'NO'})`);
  if (o.json) o.out(JSON.stringify(results) + '\n');
}

if (process.argv[2] === '--receive') {
  await receiver(process.argv[3] === 'dgram' ? 'dgram' : 'native');
} else if (process.argv[2] === '--memory') {
  process.stdout.write(JSON.stringify(memoryUnderLoad(Number(process.argv[3]))) + '\n');
} else if (process.argv[1] === self) {
  await runTelemetryBench({ quick: process.argv.includes('--quick'), json: process.argv.includes('--json'), out: (s) => process.stdout.write(s) });
}
