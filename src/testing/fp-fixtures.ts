// Fingerprint fixtures for tests: the labelled captures' flow records, committed as JSON by
// src/fingerprint/fixtures/make-fixtures.sh (softflowd → nfcapd → nfdump), so tests need none of the tools.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { LabelledCapture } from '../fingerprint/evaluate.js';
import type { FlowRecord } from '../telemetry/flow.js';

/** Resolved from dist/src/testing/ back to the source tree, where the fixtures live. */
export const FP_FIXTURE_DIR = fileURLToPath(new URL('../../../src/fingerprint/fixtures/', import.meta.url));

export function loadLabels(): LabelledCapture[] {
  return JSON.parse(readFileSync(`${FP_FIXTURE_DIR}labels.json`, 'utf8')) as LabelledCapture[];
}

const cache = new Map<string, FlowRecord[]>();

/** The capture's flow records (cached: tests call it for the same file many times). */
export function flowsFor(file: string): FlowRecord[] {
  let flows = cache.get(file);
  if (flows === undefined) {
    flows = JSON.parse(readFileSync(`${FP_FIXTURE_DIR}flows/${file}.json`, 'utf8')) as FlowRecord[];
    cache.set(file, flows);
  }
  return flows;
}

/** A flow record with defaults, for hand-written examples. */
export function flow(r: Partial<FlowRecord> & Pick<FlowRecord, 'srcAddr' | 'dstAddr'>): FlowRecord {
  return {
    exporter: '127.0.0.1:0', domain: 0, srcPort: 0, dstPort: 0, protocol: 6, bytes: 0, packets: 0,
    firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1, ...r,
  };
}

/**
 * Both directions of one conversation, as an exporter reports them: `out` is VM → remote.
 * Sizes are mean packet sizes in bytes, rates packets per second, over `seconds`.
 */
export function conversation(o: {
  vm: string; remote: string; protocol?: number; vmPort: number; remotePort: number;
  seconds: number; ppsOut: number; ppsIn: number; sizeOut: number; sizeIn: number; startMs?: number;
}): FlowRecord[] {
  const firstMs = o.startMs ?? 1_700_000_000_000;
  const lastMs = firstMs + Math.round(o.seconds * 1000);
  const protocol = o.protocol ?? 6;
  const packetsOut = Math.round(o.ppsOut * o.seconds);
  const packetsIn = Math.round(o.ppsIn * o.seconds);
  const tcpFlags = protocol === 6 ? 0x1b : 0;
  const out: FlowRecord[] = [];
  if (packetsOut > 0) {
    out.push(flow({ srcAddr: o.vm, dstAddr: o.remote, srcPort: o.vmPort, dstPort: o.remotePort, protocol,
      packets: packetsOut, bytes: packetsOut * o.sizeOut, firstMs, lastMs, tcpFlags }));
  }
  if (packetsIn > 0) {
    out.push(flow({ srcAddr: o.remote, dstAddr: o.vm, srcPort: o.remotePort, dstPort: o.vmPort, protocol,
      packets: packetsIn, bytes: packetsIn * o.sizeIn, firstMs, lastMs, tcpFlags }));
  }
  return out;
}
