import type { VmId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { pickDecoder } from './decoders/index.js';
import type { DecodeErrorKind, FlowRecord, InterfaceCounters } from './flow.js';
import type { Inventory } from './inventory.js';
import { TemplateCache } from './templates.js';

/** One VM's flows over one time window: what the fingerprint engine reads. */
export interface VmWindow {
  readonly vm: VmId;
  readonly startMs: number;
  readonly endMs: number;
  readonly flows: readonly FlowRecord[];
  /** Records folded into per-conversation totals because the window hit its record cap. */
  readonly merged: number;
}

export interface CollectorOptions {
  readonly inventory: Inventory;
  readonly windowMs: number;
  /** A window is closed (and emitted) this long after its end, to take late records. */
  readonly graceMs: number;
  /** Records kept as they are per VM and window; beyond it, records are merged per conversation. */
  readonly maxFlowsPerWindow: number;
  /** Records buffered across all open windows; beyond it the oldest windows are emitted early. */
  readonly maxBufferedFlows: number;
  readonly templateTtlMs: number;
  readonly maxTemplates: number;
  /** Exporters whose sequence numbers are tracked; beyond it the least recently heard is forgotten. */
  readonly maxExporters: number;
  readonly onWindow: (w: VmWindow) => void;
  readonly onCounters?: (c: InterfaceCounters) => void;
  /** Also hand every decoded record over, before attribution (for tools that want them all). */
  readonly onRecord?: (r: FlowRecord) => void;
  readonly log: Logger;
  /** At most one log line per kind of problem per this many ms. */
  readonly logEveryMs?: number;
}

export const DEFAULT_COLLECTOR_OPTIONS = {
  windowMs: 60_000,
  graceMs: 60_000,
  maxFlowsPerWindow: 20_000,
  maxBufferedFlows: 2_000_000,
  templateTtlMs: 30 * 60_000,
  maxTemplates: 10_000,
  maxExporters: 10_000,
} as const;

export interface CollectorStats {
  datagrams: number;
  bytes: number;
  records: number;
  /** Datagrams no decoder accepts (unknown version). */
  unknownFormat: number;
  decodeErrors: Partial<Record<DecodeErrorKind, number>>;
  /** Gaps in export sequence numbers: records (IPFIX, NetFlow v5) and datagrams (NetFlow v9, sFlow) lost on the way. */
  lostRecords: number;
  lostDatagrams: number;
  outOfOrder: number;
  attributed: number;
  /** Records with neither end in the inventory: counted, with the busiest unknown addresses kept. */
  unattributed: number;
  late: number;
  /** Records whose end time lies in the future beyond a window and its grace, or is not a time at all. */
  badTime: number;
  merged: number;
  windowsEmitted: number;
  earlyFlushes: number;
  templates: number;
  exporters: number;
}

interface SeqState {
  /** The next sequence number RFC 7011 / 3954 promise: previous + what the previous datagram carried. */
  next: number;
  prev: number;
  /** This exporter numbers a datagram by the records up to and including it (softflowd does). */
  inclusive: boolean;
}

interface OpenWindow {
  readonly vm: VmId;
  readonly startMs: number;
  flows: FlowRecord[];
  merged: Map<string, FlowRecord> | null;
  mergedCount: number;
}

const U32 = 2 ** 32;

/** The key of the one record a window folds conversations into once every merge slot is taken. */
const OVERFLOW = 'overflow';

function convKey(r: FlowRecord): string {
  return `${r.srcAddr}|${r.dstAddr}|${r.srcPort}|${r.dstPort}|${r.protocol}`;
}

function mergeInto(a: FlowRecord, b: FlowRecord): FlowRecord {
  return {
    ...a,
    bytes: a.bytes + b.bytes,
    packets: a.packets + b.packets,
    firstMs: Math.min(a.firstMs, b.firstMs),
    lastMs: Math.max(a.lastMs, b.lastMs),
    tcpFlags: a.tcpFlags | b.tcpFlags,
  };
}

/**
 * The collector without its socket: datagrams in, per-VM windows out. Templates are kept per exporter
 * and observation domain with expiry; sequence gaps are counted as loss; every record is attributed to
 * the VMs at its ends or counted as unattributed; memory stays bounded whatever arrives.
 */
export class CollectorCore {
  readonly templates: TemplateCache;
  readonly stats: CollectorStats = {
    datagrams: 0, bytes: 0, records: 0, unknownFormat: 0, decodeErrors: {}, lostRecords: 0, lostDatagrams: 0,
    outOfOrder: 0, attributed: 0, unattributed: 0, late: 0, badTime: 0, merged: 0, windowsEmitted: 0, earlyFlushes: 0,
    templates: 0, exporters: 0,
  };
  /** The busiest addresses seen with no VM, bounded. */
  readonly unknownAddrs = new Map<string, number>();
  private readonly seq = new Map<string, SeqState>();
  private readonly open = new Map<string, OpenWindow>();
  private buffered = 0;
  private readonly lastLog = new Map<string, { atMs: number; suppressed: number }>();
  private watermarkMs = 0;

  constructor(private readonly o: CollectorOptions) {
    this.templates = new TemplateCache({ ttlMs: o.templateTtlMs, maxTemplates: o.maxTemplates });
  }

  /** Rate-limited warning: the first of a kind now, then at most one per logEveryMs with the count in between. */
  private warn(kind: string, msg: string, fields: Record<string, unknown>, nowMs: number): void {
    const every = this.o.logEveryMs ?? 10_000;
    const s = this.lastLog.get(kind);
    if (s !== undefined && nowMs - s.atMs < every) {
      s.suppressed++;
      return;
    }
    this.o.log.warn(msg, { kind, ...fields, suppressedSinceLast: s?.suppressed ?? 0 });
    this.lastLog.set(kind, { atMs: nowMs, suppressed: 0 });
  }

  ingest(datagram: Uint8Array, exporter: string, nowMs: number): void {
    this.stats.datagrams++;
    this.stats.bytes += datagram.length;
    const decoder = pickDecoder(datagram);
    if (decoder === undefined) {
      this.stats.unknownFormat++;
      const version = datagram.length >= 2 ? (datagram[0]! << 8) | datagram[1]! : -1;
      this.warn('unknown-format', 'dropped a datagram of no known flow format', { exporter, bytes: datagram.length, version }, nowMs);
      return;
    }
    const res = decoder.decode(datagram, { exporter, nowMs, templates: this.templates });
    for (const e of res.errors) {
      this.stats.decodeErrors[e.kind] = (this.stats.decodeErrors[e.kind] ?? 0) + 1;
      this.warn(`${decoder.name}:${e.kind}`, `could not decode part of a ${decoder.name} datagram: ${e.detail}`, { exporter }, nowMs);
    }
    // Sequence numbers run per observation domain, taken from the header: a datagram with no records
    // (templates only) still advances the same counter.
    if (res.sequence !== null && res.sequenceUnit !== null) this.track(`${decoder.name}|${exporter}|${res.domain}`, res.sequence, res.sequenceUnit === 'record' ? res.recordsInDatagram : 1, res.sequenceUnit);
    for (const c of res.counters) this.o.onCounters?.(c);
    for (const r of res.records) this.addRecord(r, nowMs);
    this.stats.templates = this.templates.size;
    this.stats.exporters = this.seq.size;
  }

  private track(key: string, seq: number, advance: number, unit: 'record' | 'datagram'): void {
    const s = this.seq.get(key);
    this.seq.delete(key); // re-insert: the map's order is recency, for the bound below
    let inclusive = s?.inclusive ?? false;
    if (s !== undefined) {
      // Some exporters count the records of the datagram itself in its sequence number; learn which.
      if (unit === 'record' && !inclusive && seq !== s.next && seq === (s.prev + advance) % U32) inclusive = true;
      const expected = inclusive ? (s.prev + advance) % U32 : s.next;
      const diff = (seq - expected + U32) % U32;
      if (diff !== 0) {
        if (diff < U32 / 2) {
          if (unit === 'record') this.stats.lostRecords += diff;
          else this.stats.lostDatagrams += diff;
        } else {
          // A late datagram: counted, and the counter stays where the newest one left it.
          this.stats.outOfOrder++;
          this.seq.set(key, { ...s, inclusive });
          return;
        }
      }
    }
    this.seq.set(key, { next: (seq + advance) % U32, prev: seq, inclusive });
    while (this.seq.size > this.o.maxExporters) this.seq.delete(this.seq.keys().next().value as string);
  }

  /** Attributes and windows one decoded record (also the entry for sources that are not datagrams). */
  addRecord(r: FlowRecord, nowMs: number): void {
    this.stats.records++;
    this.o.onRecord?.(r);
    const a = this.o.inventory.vmOfIp(r.srcAddr);
    const b = this.o.inventory.vmOfIp(r.dstAddr);
    if (a === undefined && b === undefined) {
      // Counted every time; the busiest unknown sources are sampled (1 in 16) into a bounded table.
      if ((this.stats.unattributed++ & 15) === 0) {
        const addr = r.srcAddr;
        const n = this.unknownAddrs.get(addr);
        if (n !== undefined) this.unknownAddrs.set(addr, n + 16);
        else if (this.unknownAddrs.size < 1000) this.unknownAddrs.set(addr, 16);
      }
      return;
    }
    this.stats.attributed++;
    if (a !== undefined) this.place(a, r, nowMs);
    if (b !== undefined && b !== a) this.place(b, r, nowMs);
  }

  private place(vm: VmId, r: FlowRecord, nowMs: number): void {
    const w = this.o.windowMs;
    let start = Math.floor(r.lastMs / w) * w;
    if (!Number.isFinite(start) || (this.watermarkMs > 0 && start > this.watermarkMs + w + this.o.graceMs)) {
      // A time in the future (or none): it would hold a window open forever; it goes into the current one.
      this.stats.badTime++;
      start = Math.floor(Math.max(nowMs, this.watermarkMs) / w) * w;
    } else if (start + w + this.o.graceMs <= this.watermarkMs) {
      // Its window has closed: it goes into the VM's current window, counted.
      this.stats.late++;
      start = Math.floor(Math.max(nowMs, this.watermarkMs) / w) * w;
    }
    const key = `${vm}|${start}`;
    let win = this.open.get(key);
    if (win === undefined) {
      win = { vm, startMs: start, flows: [], merged: null, mergedCount: 0 };
      this.open.set(key, win);
    }
    if (win.flows.length < this.o.maxFlowsPerWindow) {
      win.flows.push(r);
      this.buffered++;
    } else {
      // Past the cap: one record per conversation, so a flood costs at most its number of conversations.
      win.merged ??= new Map();
      const k = convKey(r);
      const prev = win.merged.get(k);
      if (prev !== undefined) {
        win.merged.set(k, mergeInto(prev, r));
      } else if (win.merged.size < this.o.maxFlowsPerWindow) {
        win.merged.set(k, r);
        this.buffered++;
      } else {
        // Every slot taken by a distinct conversation: one overflow record per window keeps the totals.
        const prev = win.merged.get(OVERFLOW);
        win.merged.set(OVERFLOW, prev === undefined
          ? { ...r, srcAddr: '0.0.0.0', dstAddr: '0.0.0.0', srcPort: 0, dstPort: 0, protocol: 0 }
          : mergeInto(prev, r));
        if (prev === undefined) this.buffered++;
      }
      win.mergedCount++;
      this.stats.merged++;
    }
    if (this.buffered > this.o.maxBufferedFlows) this.flushOldest(nowMs);
  }

  private emit(key: string, win: OpenWindow): void {
    this.open.delete(key);
    const flows = win.merged === null ? win.flows : [...win.flows, ...win.merged.values()];
    this.buffered -= flows.length;
    this.stats.windowsEmitted++;
    this.o.onWindow({ vm: win.vm, startMs: win.startMs, endMs: win.startMs + this.o.windowMs, flows, merged: win.mergedCount });
  }

  private flushOldest(nowMs: number): void {
    const oldest = [...this.open.entries()].sort((x, y) => x[1].startMs - y[1].startMs);
    for (const [k, win] of oldest) {
      if (this.buffered <= this.o.maxBufferedFlows * 0.9) break;
      this.emit(k, win);
      this.stats.earlyFlushes++;
    }
    this.warn('early-flush', 'emitted windows early to keep buffered records bounded', { buffered: this.buffered, max: this.o.maxBufferedFlows }, nowMs);
  }

  /**
   * Advances the collector's clock: windows that ended more than graceMs ago are emitted, templates past
   * their lifetime are forgotten. With `all`, every open window is emitted (shutdown, end of a capture).
   */
  tick(nowMs: number, all = false): void {
    this.watermarkMs = Math.max(this.watermarkMs, nowMs);
    for (const [k, win] of [...this.open.entries()].sort((x, y) => x[1].startMs - y[1].startMs)) {
      if (all || win.startMs + this.o.windowMs + this.o.graceMs <= nowMs) this.emit(k, win);
    }
    this.templates.expire(nowMs);
    this.stats.templates = this.templates.size;
  }

  get bufferedFlows(): number {
    return this.buffered;
  }
}
