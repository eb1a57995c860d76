// `vmshadow fingerprint` and `vmshadow collect`: thin over telemetry/ and fingerprint/.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError, InputError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import { systemClock } from '../core/clock.js';
import { createJsonLogger } from '../core/logger.js';
import { classify } from '../fingerprint/classify.js';
import { evaluate, formatEvaluation, type Evaluation, type LabelledCapture } from '../fingerprint/evaluate.js';
import type { SplitSide } from '../fingerprint/split.js';
import { initialState, step, type HysteresisState } from '../fingerprint/hysteresis.js';
import { flowsFromCapture } from '../telemetry/capture.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS, type VmWindow } from '../telemetry/collector.js';
import type { FlowRecord } from '../telemetry/flow.js';
import { createInventory, normaliseIp, parseInventory, type Inventory } from '../telemetry/inventory.js';
import { listenUdp, parseListen, parseUdpReceive } from '../telemetry/udp.js';

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

/** Where the committed labels and flow-record fixtures live (resolved from dist/src/cli/ back to src/). */
export const FP_FIXTURES = fileURLToPath(new URL('../../../src/fingerprint/fixtures/', import.meta.url));

/** One labelled set, scored: its name, where its flow records came from, the evaluation. */
export interface EvaluatedSet {
  readonly name: string;
  readonly source: string;
  readonly evaluation: Evaluation;
  /** Captures whose export lost records on loopback three times: scored on their committed records instead. */
  readonly fellBack: readonly string[];
}

interface SetLabel extends LabelledCapture { readonly side?: SplitSide }

function readLabels(file: string): SetLabel[] {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SetLabel[];
  } catch (e) {
    throw new AppError('LABELS_UNREADABLE', `cannot read the labels ${file}: ${(e as Error).message}`, { retryable: false, cause: e });
  }
}

/**
 * Scores one labelled set. Flow records come from the captures in `pcapDir` through softflowd and the
 * project's collector (as in production), or, with `fixtures`, from the committed records in
 * `fixtureDir`/flows (made by softflowd → nfcapd → nfdump; fast, no tools needed). The side of each
 * capture is the label file's `side` when it has one, else split.ts's rule.
 */
export async function evaluateSet(o: {
  name: string; labelsFile: string; pcapDir: string; fixtureDir: string; fixtures: boolean; flag: string;
}): Promise<EvaluatedSet> {
  const labels = readLabels(o.labelsFile);
  const flows = new Map<string, readonly FlowRecord[]>();
  const fellBack: string[] = [];
  const committed = (file: string): FlowRecord[] =>
    JSON.parse(readFileSync(join(o.fixtureDir, 'flows', `${file}.json`), 'utf8')) as FlowRecord[];
  for (const c of labels) {
    if (o.fixtures) {
      flows.set(c.file, committed(c.file));
      continue;
    }
    const path = join(o.pcapDir, c.file);
    if (!existsSync(path)) throw new InputError(o.flag, o.pcapDir, `has no ${c.file} (pass --fixtures to use the committed flow records)`);
    const live = await flowsWithRetry(path);
    if (live === undefined) fellBack.push(c.file);
    flows.set(c.file, live ?? committed(c.file));
  }
  const sides = new Map(labels.flatMap((l) => (l.side === undefined ? [] : [[l.file, l.side] as const])));
  const evaluation = evaluate(labels, (f) => flows.get(f) ?? [], sides.size > 0 ? { sideOf: (f) => sides.get(f) ?? 'held-out' } : {});
  return { name: o.name, source: o.fixtures ? `committed flow records (${o.fixtureDir}flows)` : `softflowd + our collector on ${o.pcapDir}`, evaluation, fellBack };
}

/**
 * A capture's records through softflowd and our collector. A loopback loss (retryable) is tried again;
 * after 3 losses, undefined: the caller scores the committed records and says so.
 */
async function flowsWithRetry(path: string): Promise<FlowRecord[] | undefined> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return (await flowsFromCapture(path)).records;
    } catch (e) {
      if (!(e instanceof AppError) || e.code !== 'EXPORT_LOST') throw e;
    }
  }
  return undefined;
}

/** Both labelled sets: the 50 shared captures and the nDPI 4.2 set. */
export async function evaluateCaptures(o: { trafficDir: string; ndpiDir: string; fixtures: boolean }): Promise<EvaluatedSet[]> {
  return [
    await evaluateSet({
      name: 'shared 50 (nDPI test captures, labelled by hand; held-out read after the first run)',
      labelsFile: join(FP_FIXTURES, 'labels.json'), pcapDir: o.trafficDir, fixtureDir: FP_FIXTURES, fixtures: o.fixtures, flag: '--traffic-dir',
    }),
    await evaluateSet({
      name: 'nDPI 4.2 set (148 captures, labelled mechanically from nDPI\'s verdicts; held-out scored once at the end)',
      labelsFile: join(FP_FIXTURES, 'ndpi42', 'labels.json'), pcapDir: o.ndpiDir, fixtureDir: join(FP_FIXTURES, 'ndpi42/'), fixtures: o.fixtures, flag: '--ndpi-dir',
    }),
  ];
}

/** The plain-text report of several sets, one after the other. */
export function formatSets(sets: readonly EvaluatedSet[]): string {
  return sets.map((s) => `== ${s.name}\n   flow records: ${s.source}\n`
    + (s.fellBack.length > 0 ? `   export lost records on loopback 3 times, committed records used instead: ${s.fellBack.join(', ')}\n` : '')
    + formatEvaluation(s.evaluation)).join('\n\n');
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
    receive: parseUdpReceive(process.env.VMSHADOW_UDP_RECEIVE),
    log,
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
