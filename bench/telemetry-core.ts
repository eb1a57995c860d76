// bench/telemetry-core: the collector's core alone (CollectorCore.ingest: decoding, attribution to the
// bench cloud's 10,000 VMs, windowing), in process, with no socket: records per CPU-second on the same
// recorded softflowd export as bench/telemetry (IPFIX and NetFlow v9), replayed `passes` times through a
// fresh collector after a warm-up collector, windows closed at the end. One line per format.
//
// The first measured round is what a restarted collector does in its first seconds (optimising compiler
// still at work, fresh memory for the rows it keeps); the best of the rounds is its steady state.
// Needs softflowd (Debian package softflowd) to record the export.
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/core/logger.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS } from '../src/telemetry/collector.js';
import type { Inventory } from '../src/telemetry/inventory.js';
import { benchInventory, recordExport } from './telemetry.js';

export interface TelemetryCoreBenchOptions {
  quick: boolean;
  json: boolean;
  out: (s: string) => void;
}

export interface CoreRun {
  format: 'ipfix' | 'netflow9';
  datagrams: number;
  recordsPerPass: number;
  passes: number;
  /** Records per CPU-second of the first measured round, and of the best round. */
  firstRecordsPerCpuS: number;
  bestRecordsPerCpuS: number;
  /** CPU microseconds per datagram in the best round. */
  bestUsPerDatagram: number;
}

const f0 = (x: number): string => Math.round(x).toLocaleString('en-US');

/** CPU milliseconds (user + system, every thread: the optimising compiler and the collector's GC count) for `passes` passes through a new collector. */
function round(datagrams: readonly Uint8Array[], inventory: Inventory, passes: number): { cpuMs: number; records: number } {
  const core = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, inventory, onWindow: () => undefined, log: silentLogger });
  const startMs = Date.UTC(2026, 0, 1);
  const t0 = process.cpuUsage();
  for (let k = 0; k < passes; k++) for (const d of datagrams) core.ingest(d, '127.0.0.1:5000', startMs + k);
  core.tick(Date.now(), true);
  const used = process.cpuUsage(t0);
  return { cpuMs: (used.user + used.system) / 1000, records: core.stats.records };
}

export async function runTelemetryCoreBench(o: TelemetryCoreBenchOptions): Promise<CoreRun[]> {
  const flows = o.quick ? 20_000 : 100_000;
  const passes = o.quick ? 5 : 20;
  const rounds = o.quick ? 2 : 5;
  const inventory = benchInventory();
  const runs: CoreRun[] = [];
  if (!o.json) {
    o.out(`# collector core alone (CollectorCore.ingest, in process): records per CPU-second on softflowd's export of ${f0(flows)} flows, `
      + `${passes} passes through a fresh collector after a warm-up one, windows closed at the end; first round and best of ${rounds}\n`);
  }
  for (const [format, version] of [['ipfix', 10], ['netflow9', 9]] as const) {
    // Dated at the collector's clock in round() below.
    const datagrams = await recordExport(version, flows, Date.UTC(2026, 0, 1));
    round(datagrams, inventory, 2); // warm-up: the JIT's start is not the collector's throughput
    const measured = Array.from({ length: rounds }, () => round(datagrams, inventory, passes));
    const rate = (r: { cpuMs: number; records: number }): number => r.records / (r.cpuMs / 1000);
    const best = measured.reduce((a, b) => (rate(b) > rate(a) ? b : a));
    const run: CoreRun = {
      format,
      datagrams: datagrams.length,
      recordsPerPass: measured[0]!.records / passes,
      passes,
      firstRecordsPerCpuS: rate(measured[0]!),
      bestRecordsPerCpuS: rate(best),
      bestUsPerDatagram: (best.cpuMs * 1000) / (datagrams.length * passes),
    };
    runs.push(run);
    if (!o.json) {
      o.out(`core-${format}: ${f0(run.firstRecordsPerCpuS)} records per CPU-second in the first round, ${f0(run.bestRecordsPerCpuS)} at best `
        + `(${run.bestUsPerDatagram.toFixed(2)} µs CPU per datagram of ${(run.recordsPerPass / run.datagrams).toFixed(1)} records; `
        + `${f0(run.datagrams)} datagrams a pass)\n`);
    }
  }
  if (o.json) o.out(JSON.stringify(runs) + '\n');
  return runs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await runTelemetryCoreBench({ quick: process.argv.includes('--quick'), json: process.argv.includes('--json'), out: (s) => process.stdout.write(s) });
}
