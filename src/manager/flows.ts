// The manager's telemetry input: flow records from the sites' exporters, collected on UDP, attributed to
// VMs by address, cut into windows, and each closed window classified (fingerprint/) into an observation
// the next round's hysteresis takes.
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { classify } from '../fingerprint/classify.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS, type CollectorStats, type VmWindow } from '../telemetry/collector.js';
import type { FlowRecord } from '../telemetry/flow.js';
import type { Inventory } from '../telemetry/inventory.js';
import { listenUdp, type ListenAddress, type UdpReceive } from '../telemetry/udp.js';
import type { WindowObservation } from './decide.js';

/**
 * The VM's own address in a window: of its addresses seen in the flows, the one carrying the most bytes
 * (a desktop VM may own the guest's address and the display's).
 */
export function vmAddress(inv: Inventory, w: Pick<VmWindow, 'vm' | 'flows'>): string | undefined {
  const bytes = new Map<string, number>();
  for (const f of w.flows) {
    if (inv.vmOfIp(f.srcAddr) === w.vm) bytes.set(f.srcAddr, (bytes.get(f.srcAddr) ?? 0) + f.bytes);
    if (inv.vmOfIp(f.dstAddr) === w.vm) bytes.set(f.dstAddr, (bytes.get(f.dstAddr) ?? 0) + f.bytes);
  }
  let best: string | undefined;
  for (const [a, b] of bytes) if (best === undefined || b > bytes.get(best)!) best = a;
  return best;
}

/** Classifies one closed window; null when none of its flows carries one of the VM's IP addresses. */
export function observeWindow(inv: Inventory, w: Pick<VmWindow, 'vm' | 'flows' | 'startMs' | 'endMs'>): WindowObservation | null {
  const ip = w.flows.length > 0 ? vmAddress(inv, w) : undefined;
  if (ip === undefined) return null;
  const flows: readonly FlowRecord[] = w.flows;
  const v = classify(flows, ip, { windowStartMs: w.startMs, windowEndMs: w.endMs });
  let bytes = 0;
  for (const f of flows) bytes += f.bytes;
  return {
    vm: w.vm, endMs: w.endMs, score: v.score, activity: v.activity,
    users: v.users.map((u) => ({ endpoint: u.addr, share: u.share })), reasons: v.reasons, bytes,
  };
}

export interface FlowIngest {
  readonly stats: CollectorStats;
  readonly address: ListenAddress | null;
  /** Windows judged, and windows with no flow of the VM's own addresses. */
  readonly windows: { observed: number; unattributable: number; failed: number };
  /** Hands a datagram over directly (tests and the benchmark's replay without a socket). */
  ingest(datagram: Uint8Array, exporter: string): void;
  /** Closes the windows due now (the UDP listener ticks every second by itself). */
  tick(all?: boolean): void;
  close(): Promise<void>;
}

export async function startFlowIngest(o: {
  inventory: Inventory;
  /** UDP address to listen on; null: no socket (datagrams come through ingest()). */
  listen: ListenAddress | null;
  /** The UDP receive path (default 'auto': native recvmmsg when its addon loads, else Node's dgram). */
  receive?: UdpReceive;
  windowMs: number;
  observe: (w: WindowObservation) => void;
  clock: Clock;
  log: Logger;
}): Promise<FlowIngest> {
  const windows = { observed: 0, unattributable: 0, failed: 0 };
  const core = new CollectorCore({
    ...DEFAULT_COLLECTOR_OPTIONS,
    windowMs: o.windowMs,
    graceMs: Math.min(o.windowMs, DEFAULT_COLLECTOR_OPTIONS.graceMs),
    inventory: o.inventory,
    log: o.log,
    onWindow: (w) => {
      try {
        const obs = observeWindow(o.inventory, w);
        if (obs === null) windows.unattributable++;
        else {
          windows.observed++;
          o.observe(obs);
        }
      } catch (e) {
        windows.failed++;
        o.log.error('classifying a window failed; the collector goes on', { vm: w.vm, error: (e as Error).message });
      }
    },
  });
  const udp = o.listen === null ? null : await listenUdp(core, o.listen, o.clock, {
    receive: o.receive ?? 'auto',
    log: o.log,
    onError: (e) => o.log.error('collector error; collection goes on', { error: (e as Error).message ?? String(e) }),
  });
  return {
    stats: core.stats,
    address: udp?.address ?? null,
    windows,
    ingest: (d, exporter) => core.ingest(d, exporter, o.clock.nowMs()),
    tick: (all = false) => core.tick(o.clock.nowMs(), all),
    close: async () => {
      core.tick(o.clock.nowMs(), true);
      await udp?.close();
    },
  };
}
