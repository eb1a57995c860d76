// `vmshadow fingerprint` and `vmshadow collect`: thin over telemetry/ and fingerprint/.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError, InputError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import { systemClock } from '../core/clock.js';
import { createJsonLogger } from '../core/logger.js';
import { classify } from '../fingerprint/classify.js';
import { evaluate, type LabelledCapture } from '../fingerprint/evaluate.js';
import { initialState, step, type HysteresisState } from '../fingerprint/hysteresis.js';
import { flowsFromCapture } from '../telemetry/capture.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS, type VmWindow } from '../telemetry/collector.js';
import type { FlowRecord } from '../telemetry/flow.js';
import { createInventory, normaliseIp, parseInventory, type Inventory } from '../telemetry/inventory.js';
import { listenUdp, parseListen } from '../telemetry/udp.js';

export interface CliIo {
  out: (s: string) => void;
  err: NodeJS.WriteStream;
}

/** The verdict for one VM in one capture, from flow records only, produced as in production. */
export async function fingerprintCapture(pcap: string, vmIp: string): Promise<{ vm: string; sensitive: boolean; score: number; activity: string; reasons: string[] }> {
  if (!existsSync(pcap)) throw new InputError('--pcap', pcap, 'no such file');
  const ip = normaliseIp(vmIp);
  if (ip === null) throw new InputError('--vm', vmIp, 'must be the VM\'s IPv4 or IPv6 address');
  let records: FlowRecord[];
  try {
    records = (await flowsFromCapture(pcap)).records;
  } catch (e) {
    if (e instanceof AppError && e.code === 'SOFTFLOWD_FAILED') throw new InputError('--pcap', pcap, `is not a capture softflowd can read: ${e.message}`);
    throw e;
  }
  const v = classify(records, ip);
  return { vm: vmIp, sensitive: v.sensitive, score: v.score, activity: v.activity, reasons: [...v.reasons] };
}

/** Runs every labelled capture through softflowd and the project's collector, and scores the verdicts. */
export async function evaluateCaptures(trafficDir: string, labelsFile: string): Promise<ReturnType<typeof evaluate>> {
  const labels = JSON.parse(readFileSync(labelsFile, 'utf8')) as LabelledCapture[];
  const flows = new Map<string, FlowRecord[]>();
  for (const c of labels) {
    const path = join(trafficDir, c.file);
    if (!existsSync(path)) throw new InputError('--traffic-dir', trafficDir, `has no ${c.file}`);
    flows.set(c.file, (await flowsFromCapture(path)).records);
  }
  return evaluate(labels, (f) => flows.get(f) ?? []);
}


/** The live collector: per-VM verdicts as windows close, until the signal or the duration ends. */
export async function runCollect(opts: {
  listen: string; inventoryFile?: string; windowS: number; durationS?: number; json: boolean; io: CliIo;
}): Promise<void> {
  const at = parseListen(opts.listen);
  let inventory: Inventory = createInventory([]);
  if (opts.inventoryFile !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(opts.inventoryFile, 'utf8'));
    } catch (e) {
      throw new InputError('--inventory', opts.inventoryFile, `cannot be read as JSON: ${(e as Error).message}`);
    }
    inventory = parseInventory(raw);
  }
  const { io } = opts;
  const log = createJsonLogger({ write: (l) => io.err.write(l), level: 'warn' });
  const states = new Map<VmId, HysteresisState>();
  const onWindow = (w: VmWindow): void => {
    const ip = w.flows.length > 0 ? vmAddr(inventory, w) : undefined;
    if (ip === undefined) return;
    const v = classify(w.flows, ip, { windowStartMs: w.startMs, windowEndMs: w.endMs });
    const s = step(states.get(w.vm) ?? initialState(), { score: v.score, activity: v.activity });
    states.set(w.vm, s);
    const row = {
      vm: w.vm, windowStart: new Date(w.startMs).toISOString(), flows: w.flows.length,
      window: { activity: v.activity, score: round(v.score) },
      sensitive: s.sensitive, score: round(s.score), activity: s.activity,
      users: v.users.map((u) => ({ addr: u.addr, share: round(u.share) })), reasons: v.reasons,
    };
    io.out(opts.json ? JSON.stringify(row) + '\n'
      : `${row.windowStart}  ${w.vm.padEnd(12)} ${s.sensitive ? 'SENSITIVE' : 'insensitive'}  score ${row.score.toFixed(2)}  ${s.activity.padEnd(15)} ${v.reasons[0] ?? ''}\n`);
  };
  const core = new CollectorCore({
    ...DEFAULT_COLLECTOR_OPTIONS, windowMs: opts.windowS * 1000, graceMs: opts.windowS * 1000, inventory, onWindow, log,
  });
  let failures = 0;
  const udp = await listenUdp(core, at, systemClock, {
    onError: (e) => {
      failures++;
      log.error('collector error; collection goes on', { error: (e as Error).message ?? String(e), failures });
    },
  });
  io.err.write(`collecting on ${udp.address.host}:${udp.address.port} (${inventory.size} VMs in the inventory, ${opts.windowS} s windows); Ctrl-C stops\n`);
  if (inventory.size === 0) io.err.write('no --inventory: records are counted but attributed to no VM\n');
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (opts.durationS !== undefined) setTimeout(stop, opts.durationS * 1000).unref();
  });
  core.tick(systemClock.nowMs(), true);
  await udp.close();
  const st = core.stats;
  io.err.write(`stopped: ${st.datagrams} datagrams, ${st.records} records (${st.attributed} attributed, ${st.unattributed} to no known VM), ` +
    `${st.lostRecords} records and ${st.lostDatagrams} datagrams lost in transit, ${Object.values(st.decodeErrors).reduce((a, b) => a + (b ?? 0), 0)} decode errors, ${st.unknownFormat} datagrams of no known format\n`);
}

function vmAddr(inv: Inventory, w: VmWindow): string | undefined {
  for (const f of w.flows) {
    if (inv.vmOfIp(f.srcAddr) === w.vm) return f.srcAddr;
    if (inv.vmOfIp(f.dstAddr) === w.vm) return f.dstAddr;
  }
  return undefined;
}

const round = (x: number): number => Math.round(x * 1000) / 1000;
