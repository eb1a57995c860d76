// bench/telemetry: decoding throughput of the project's collector vs nfcapd (nfdump), side by side in one
// run, on a recorded softflowd export (IPFIX and NetFlow v9) replayed at full speed over loopback; and the
// collector's memory with 100,000 new flows a minute.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/core/logger.js';
import type { VmId } from '../src/core/ids.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS } from '../src/telemetry/collector.js';
import { createInventory } from '../src/telemetry/inventory.js';
import { listenUdp } from '../src/telemetry/udp.js';
import { systemClock } from '../src/core/clock.js';
import { manyFlows, writePcap } from '../src/testing/pcap-writer.js';
import { quiet, runSoftflowd, startNfcapd, startRelay } from '../src/testing/flow-reference.js';

export interface TelemetryBenchOptions {
  quick: boolean;
  json: boolean;
  out: (s: string) => void;
}

const self = fileURLToPath(import.meta.url);
const f0 = (x: number): string => Math.round(x).toLocaleString('en-US');

/** Records a real exporter's datagrams: softflowd reading a synthetic capture of `flows` flows. */
async function recordExport(version: 9 | 10, flows: number): Promise<Uint8Array[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-bench-'));
  const pcap = join(dir, 'flows.pcap');
  writeFileSync(pcap, writePcap(manyFlows(flows, { startMs: Date.UTC(2026, 0, 1), durationMs: 60_000 })));
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

/**
 * Sends the recording `times` times over, paced (a pause every 64 datagrams) so that neither receiver
 * drops datagrams in the kernel: the comparison is of CPU spent per record, not of who loses less.
 */
async function blast(datagrams: readonly Uint8Array[], port: number, times: number): Promise<number> {
  const sock = createSocket({ type: 'udp4', sendBufferSize: 16 * 1024 * 1024 });
  let sent = 0;
  for (let t = 0; t < times; t++) {
    for (const d of datagrams) {
      sock.send(d, port, '127.0.0.1');
      if (++sent % 64 === 0) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await new Promise((r) => setTimeout(r, 100));
  sock.close();
  return sent;
}

interface Rate { records: number; cpuS: number; recordsPerCpuS: number }

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSecondsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Our collector in its own process, receiving what blast() sends; reports records and CPU used. */
async function oursReceive(datagrams: readonly Uint8Array[], times: number): Promise<Rate> {
  const child = spawn(process.execPath, [self, '--receive'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`receiver exited ${code} before listening`)));
    const onData = (): void => {
      const m = /^port (\d+)$/m.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
  });
  await blast(datagrams, port, times);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`receiver exited ${code}`);
  const m = /^result (.*)$/m.exec(out);
  if (m === null) throw new Error(`receiver printed no result: ${out}`);
  const r = JSON.parse(m[1]!) as { records: number; cpuS: number };
  return { ...r, recordsPerCpuS: r.records / r.cpuS };
}

async function nfcapdReceive(datagrams: readonly Uint8Array[], times: number): Promise<Rate> {
  const nf = await startNfcapd();
  let cpuS = 0;
  try {
    const cpu0 = cpuSecondsOf(nf.pid);
    await blast(datagrams, nf.port, times);
    await new Promise((r) => setTimeout(r, 1000));
    cpuS = Math.max(0.01, cpuSecondsOf(nf.pid) - cpu0);
  } finally {
    // stopAndCount below stops it; on an error above, stop it here so nothing is left running.
    if (cpuS === 0) await nf.stop().catch(() => undefined);
  }
  const records = await nf.stopAndCount();
  return { records, cpuS, recordsPerCpuS: records / cpuS };
}

/** The receiving side of oursReceive: decodes until a quiet spell, then reports records and CPU time. */
async function receiver(): Promise<void> {
  const core = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, inventory: createInventory([{ vm: 'vm-1' as VmId, ips: ['10.0.0.1'] }]), onWindow: () => undefined, log: silentLogger });
  const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { recvBufferBytes: 64 * 1024 * 1024 });
  const cpu0 = process.cpuUsage();
  process.stdout.write(`port ${udp.address.port}\n`);
  let seen = -1;
  const giveUp = Date.now() + 60_000; // a sender that never sends does not hang the bench
  while ((core.stats.datagrams === 0 && Date.now() < giveUp) || (core.stats.datagrams > 0 && seen !== core.stats.datagrams)) {
    seen = core.stats.datagrams;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const cpu = process.cpuUsage(cpu0);
  await udp.close();
  process.stdout.write(`result ${JSON.stringify({ records: core.stats.records, cpuS: (cpu.user + cpu.system) / 1e6 })}\n`);
}

/** Heap with 100,000 new flows a minute through the collector core for `minutes` simulated minutes. */
function memoryUnderLoad(minutes: number): { heapMiBByMinute: number[]; windowsEmitted: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  const inventory = createInventory(Array.from({ length: 10_000 }, (_, i) => ({ vm: `vm-${i}` as VmId, ips: [`10.${(i >> 8) & 255}.${i & 255}.1`] })));
  const core = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, windowMs: 10_000, graceMs: 10_000, inventory, onWindow: () => undefined, log: silentLogger });
  const heap: number[] = [];
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
    heap.push(process.memoryUsage().heapUsed / 2 ** 20);
  }
  return { heapMiBByMinute: heap, windowsEmitted: core.stats.windowsEmitted };
}

export async function runTelemetryBench(o: TelemetryBenchOptions): Promise<void> {
  const results: Record<string, unknown>[] = [];
  const line = (s: string): void => {
    if (!o.json) o.out(s + '\n');
  };
  line('# decoding throughput: records per CPU-second (one core), same recorded softflowd export replayed to each (target ≥ 1.0× nfcapd and ≥ 1,000,000 records/s)');
  for (const [format, version] of [['ipfix', 10], ['netflow9', 9]] as const) {
    const rec = await recordExport(version, o.quick ? 20_000 : 100_000);
    const times = o.quick ? 2 : 10;
    const ours = await oursReceive(rec, times);
    const ref = await nfcapdReceive(rec, times);
    const ratio = ours.recordsPerCpuS / ref.recordsPerCpuS;
    results.push({ case: `decode-${format}`, datagrams: rec.length * times, ours, nfcapd: ref, ratio });
    line(`decode-${format}: ours ${f0(ours.recordsPerCpuS)} records per CPU-second (${f0(ours.records)} records, ${ours.cpuS.toFixed(2)} s CPU) vs nfcapd ${f0(ref.recordsPerCpuS)} (${f0(ref.records)} records, ${ref.cpuS.toFixed(2)} s CPU) → ${ratio.toFixed(2)}×`);
  }
  const child = spawnSync(process.execPath, ['--expose-gc', self, '--memory', o.quick ? '4' : '10'], { encoding: 'utf8' });
  const mem = JSON.parse(child.stdout) as { heapMiBByMinute: number[]; windowsEmitted: number };
  const h = mem.heapMiBByMinute;
  results.push({ case: 'memory-100k-flows-per-minute', ...mem });
  line(`memory: heap after each simulated minute of 100,000 new flows: ${h.map((x) => x.toFixed(0)).join(', ')} MiB (bounded: ${Math.max(...h.slice(1)) <= 1.5 * (h[1] ?? h[0]!) ? 'yes' : 'NO'})`);
  if (o.json) o.out(JSON.stringify(results) + '\n');
}

if (process.argv[2] === '--receive') {
  await receiver();
} else if (process.argv[2] === '--memory') {
  process.stdout.write(JSON.stringify(memoryUnderLoad(Number(process.argv[3]))) + '\n');
} else if (process.argv[1] === self) {
  await runTelemetryBench({ quick: process.argv.includes('--quick'), json: process.argv.includes('--json'), out: (s) => process.stdout.write(s) });
}
