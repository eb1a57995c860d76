import type { VmId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { pickDecoder } from './decoders/index.js';
import type { DecodeErrorKind, FlowDecoder, FlowRecord, InterfaceCounters } from './flow.js';
import { FlowRows, TEXT_ADDRESS } from './flow-rows.js';
import type { Inventory } from './inventory.js';
import { TemplateCache } from './templates.js';

/** One VM's flows over one time window: what the fingerprint engine reads. */
export interface VmWindow {
  readonly vm: VmId;
  readonly startMs: number;
  readonly endMs: number;
  /**
   * Made on first read: until a consumer asks, the records stay rows of numbers, shared by the windows
   * that closed together (a window kept unread keeps those rows in memory).
   */
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

/** What a window period keeps for one VM beyond its record cap. */
interface Overflow {
  readonly byConversation: Map<string, FlowRecord>;
  count: number;
}

/**
 * The records of every VM for one window period, in one table of rows with the VM of each row beside
 * it: a record costs no allocation and touches little memory; the rows are grouped by VM once, when the
 * period closes. Its windows are handed out together; each makes its FlowRecords when first read.
 */
class Period {
  /**
   * Every VM's rows, in arrival order. A row's tag links it to the VM's row before it (index + 1, 0 for
   * none), so a window's rows are found without grouping the table when the period closes.
   */
  readonly rows: FlowRows;
  /** Rows kept per VM (up to the cap), grown to the highest VM index seen. */
  private counts = new Int32Array(64);
  /** The index + 1 of each VM's last row (0: none), grown with counts. */
  private lastRow = new Int32Array(64);
  /** VMs in the order of their first record here. */
  readonly vms: number[] = [];
  overflow: Map<number, Overflow> | null = null;
  /** Rows plus records kept past the cap, for the collector's bound. */
  buffered = 0;

  constructor(readonly startMs: number) {
    // Large chunks (160 KiB): a period takes up to a minute of records; times packed around its start.
    this.rows = new FlowRows(12, startMs);
  }

  /** Rows kept for VM vm. */
  count(vm: number): number {
    return vm < this.counts.length ? this.counts[vm]! : 0;
  }

  /** Appends row i of `from` as VM vm's. */
  add(vm: number, from: FlowRows, i: number): void {
    if (vm >= this.counts.length) {
      let n = this.counts.length * 2;
      while (n <= vm) n *= 2;
      const counts = new Int32Array(n);
      counts.set(this.counts);
      this.counts = counts;
      const lastRow = new Int32Array(n);
      lastRow.set(this.lastRow);
      this.lastRow = lastRow;
    }
    this.rows.pushRow(from, i, this.lastRow[vm]);
    this.lastRow[vm] = this.rows.length;
    if (this.counts[vm]!++ === 0) this.vms.push(vm);
    this.buffered++;
  }

  /** VM vm's records, in arrival order, as FlowRecords. */
  records(vm: number): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let r = vm < this.lastRow.length ? this.lastRow[vm]! : 0; r !== 0; r = this.rows.tag(r - 1)) out.push(this.rows.record(r - 1));
    out.reverse();
    const extra = this.overflow?.get(vm);
    if (extra !== undefined) for (const f of extra.byConversation.values()) out.push(f);
    return out;
  }
}

/** A closed window; its FlowRecords are made from the period's rows when first read, and only then. */
class ClosedWindow implements VmWindow {
  private period: Period | null;
  private made: FlowRecord[] | null = null;

  constructor(readonly vm: VmId, readonly startMs: number, readonly endMs: number, period: Period, private readonly vmIndex: number, readonly merged: number) {
    this.period = period;
  }

  get flows(): readonly FlowRecord[] {
    if (this.made === null) {
      this.made = this.period!.records(this.vmIndex);
      this.period = null;
    }
    return this.made;
  }
}

const U32 = 2 ** 32;
/** Window periods open at once; beyond, the oldest are emitted early. Normally two or three are. */
const MAX_OPEN_PERIODS = 64;

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
  /** Open window periods by start time. */
  private readonly open = new Map<number, Period>();
  /** The period that took the last record: most records land in the one before them. */
  private current: Period | null = null;
  private buffered = 0;
  private readonly lastLog = new Map<string, { atMs: number; suppressed: number }>();
  private watermarkMs = 0;
  /** The rows of the datagram being ingested, reused: decoding a datagram allocates no record. */
  private readonly batch = new FlowRows(8);
  /** addRecord's one-row batch. */
  private readonly single = new FlowRows(2);
  private readonly ctx: { exporter: string; nowMs: number; templates: TemplateCache };
  // The last sequence key, and what it was made of: most datagrams come from the exporter before.
  private seqKey = '';
  private seqDecoder: FlowDecoder | null = null;
  private seqExporter = '';
  private seqDomain = -1;
  /** The key last made the newest in `seq`. */
  private seqNewest = '';

  constructor(private readonly o: CollectorOptions) {
    this.templates = new TemplateCache({ ttlMs: o.templateTtlMs, maxTemplates: o.maxTemplates });
    this.ctx = { exporter: '', nowMs: 0, templates: this.templates };
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
    const batch = this.batch;
    batch.clear();
    this.ctx.exporter = exporter;
    this.ctx.nowMs = nowMs;
    const res = decoder.decodeInto(datagram, this.ctx, batch);
    for (const e of res.errors) {
      this.stats.decodeErrors[e.kind] = (this.stats.decodeErrors[e.kind] ?? 0) + 1;
      this.warn(`${decoder.name}:${e.kind}`, `could not decode part of a ${decoder.name} datagram: ${e.detail}`, { exporter }, nowMs);
    }
    // Sequence numbers run per observation domain, taken from the header: a datagram with no records
    // (templates only) still advances the same counter.
    if (res.sequence !== null && res.sequenceUnit !== null) {
      if (decoder !== this.seqDecoder || exporter !== this.seqExporter || res.domain !== this.seqDomain) {
        this.seqKey = `${decoder.name}|${exporter}|${res.domain}`;
        this.seqDecoder = decoder;
        this.seqExporter = exporter;
        this.seqDomain = res.domain;
      }
      this.track(this.seqKey, res.sequence, res.sequenceUnit === 'record' ? res.recordsInDatagram : 1, res.sequenceUnit);
    }
    for (const c of res.counters) this.o.onCounters?.(c);
    this.addRows(batch, nowMs);
    this.stats.templates = this.templates.size;
    this.stats.exporters = this.seq.size;
  }

  private track(key: string, seq: number, advance: number, unit: 'record' | 'datagram'): void {
    const s = this.seq.get(key);
    if (s === undefined) {
      this.seq.set(key, { next: (seq + advance) % U32, prev: seq, inclusive: false });
      this.seqNewest = key;
      while (this.seq.size > this.o.maxExporters) this.seq.delete(this.seq.keys().next().value as string);
      return;
    }
    // The map's order is recency, for the bound above: re-insert unless it is the newest already.
    if (this.seqNewest !== key) {
      this.seq.delete(key);
      this.seq.set(key, s);
      this.seqNewest = key;
    }
    // Some exporters count the records of the datagram itself in its sequence number; learn which.
    if (unit === 'record' && !s.inclusive && seq !== s.next && seq === (s.prev + advance) % U32) s.inclusive = true;
    const expected = s.inclusive ? (s.prev + advance) % U32 : s.next;
    const diff = (seq - expected + U32) % U32;
    if (diff !== 0) {
      if (diff < U32 / 2) {
        if (unit === 'record') this.stats.lostRecords += diff;
        else this.stats.lostDatagrams += diff;
      } else {
        // A late datagram: counted, and the counter stays where the newest one left it.
        this.stats.outOfOrder++;
        return;
      }
    }
    s.next = (seq + advance) % U32;
    s.prev = seq;
  }

  /** Attributes and windows one decoded record (also the entry for sources that are not datagrams). */
  addRecord(r: FlowRecord, nowMs: number): void {
    const one = this.single;
    one.clear();
    one.pushRecord(r);
    this.addRows(one, nowMs);
  }

  /** Attributes and windows every row of a batch. */
  private addRows(rows: FlowRows, nowMs: number): void {
    const n = rows.length;
    this.stats.records += n;
    const inv = this.o.inventory;
    const onRecord = this.o.onRecord;
    for (let i = 0; i < n; i++) {
      if (onRecord !== undefined) onRecord(rows.record(i));
      const s = rows.src(i);
      const d = rows.dst(i);
      const a = s === TEXT_ADDRESS ? inv.indexOfIp(rows.srcText(i)) : inv.indexOfIpv4(s);
      const b = d === TEXT_ADDRESS ? inv.indexOfIp(rows.dstText(i)) : inv.indexOfIpv4(d);
      if (a < 0 && b < 0) {
        // Counted every time; the busiest unknown sources are sampled (1 in 16) into a bounded table.
        if ((this.stats.unattributed++ & 15) === 0) {
          const addr = rows.srcText(i);
          const k = this.unknownAddrs.get(addr);
          if (k !== undefined) this.unknownAddrs.set(addr, k + 16);
          else if (this.unknownAddrs.size < 1000) this.unknownAddrs.set(addr, 16);
        }
        continue;
      }
      this.stats.attributed++;
      if (a >= 0) this.place(a, rows, i, nowMs);
      if (b >= 0 && b !== a) this.place(b, rows, i, nowMs);
    }
  }

  private place(vm: number, rows: FlowRows, i: number, nowMs: number): void {
    const w = this.o.windowMs;
    let start = Math.floor(rows.lastMs(i) / w) * w;
    if (!Number.isFinite(start) || (this.watermarkMs > 0 && start > this.watermarkMs + w + this.o.graceMs)) {
      // A time in the future (or none): it would hold a window open forever; it goes into the current one.
      this.stats.badTime++;
      start = Math.floor(Math.max(nowMs, this.watermarkMs) / w) * w;
    } else if (start + w + this.o.graceMs <= this.watermarkMs) {
      // Its window has closed: it goes into the VM's current window, counted.
      this.stats.late++;
      start = Math.floor(Math.max(nowMs, this.watermarkMs) / w) * w;
    }
    let p = this.current;
    if (p === null || p.startMs !== start) {
      p = this.open.get(start) ?? null;
      if (p === null) {
        // Hostile times could open a period per record: the oldest go early instead.
        if (this.open.size >= MAX_OPEN_PERIODS) this.flushOldest(nowMs, MAX_OPEN_PERIODS - 1);
        p = new Period(start);
        this.open.set(start, p);
      }
      this.current = p;
    }
    if (p.count(vm) < this.o.maxFlowsPerWindow) {
      p.add(vm, rows, i);
      this.buffered++;
    } else {
      // Past the cap: one record per conversation, so a flood costs at most its number of conversations.
      const r = rows.record(i);
      p.overflow ??= new Map();
      let o = p.overflow.get(vm);
      if (o === undefined) {
        o = { byConversation: new Map(), count: 0 };
        p.overflow.set(vm, o);
        if (p.count(vm) === 0) p.vms.push(vm); // a cap of 0: the VM's window still closes
      }
      const merged = o.byConversation;
      const k = convKey(r);
      const prev = merged.get(k);
      if (prev !== undefined) {
        merged.set(k, mergeInto(prev, r));
      } else if (merged.size < this.o.maxFlowsPerWindow) {
        merged.set(k, r);
        this.buffered++;
        p.buffered++;
      } else {
        // Every slot taken by a distinct conversation: one overflow record per window keeps the totals.
        const prev = merged.get(OVERFLOW);
        merged.set(OVERFLOW, prev === undefined
          ? { ...r, srcAddr: '0.0.0.0', dstAddr: '0.0.0.0', srcPort: 0, dstPort: 0, protocol: 0 }
          : mergeInto(prev, r));
        if (prev === undefined) {
          this.buffered++;
          p.buffered++;
        }
      }
      o.count++;
      this.stats.merged++;
    }
    if (this.buffered > this.o.maxBufferedFlows) this.flushOldest(nowMs);
  }

  /** Hands out a period's windows, one per VM, and forgets it. Returns how many. */
  private emit(p: Period): number {
    this.open.delete(p.startMs);
    if (this.current === p) this.current = null;
    this.buffered -= p.buffered;
    const vms = this.o.inventory.vms;
    const endMs = p.startMs + this.o.windowMs;
    for (const vm of p.vms) {
      this.stats.windowsEmitted++;
      this.o.onWindow(new ClosedWindow(vms[vm]!, p.startMs, endMs, p, vm, p.overflow?.get(vm)?.count ?? 0));
    }
    return p.vms.length;
  }

  /** Emits the oldest periods until the buffered records are under 90 % of the bound and at most maxPeriods stay open. */
  private flushOldest(nowMs: number, maxPeriods = MAX_OPEN_PERIODS): void {
    for (const p of [...this.open.values()].sort((x, y) => x.startMs - y.startMs)) {
      if (this.buffered <= this.o.maxBufferedFlows * 0.9 && this.open.size <= maxPeriods) break;
      this.stats.earlyFlushes += this.emit(p);
    }
    this.warn('early-flush', 'emitted windows early to keep buffered records and open windows bounded', { buffered: this.buffered, max: this.o.maxBufferedFlows, openPeriods: this.open.size }, nowMs);
  }

  /**
   * Advances the collector's clock: windows that ended more than graceMs ago are emitted, templates past
   * their lifetime are forgotten. With `all`, every open window is emitted (shutdown, end of a capture).
   */
  tick(nowMs: number, all = false): void {
    this.watermarkMs = Math.max(this.watermarkMs, nowMs);
    for (const p of [...this.open.values()].sort((x, y) => x.startMs - y.startMs)) {
      if (all || p.startMs + this.o.windowMs + this.o.graceMs <= nowMs) this.emit(p);
    }
    this.templates.expire(nowMs);
    this.stats.templates = this.templates.size;
  }

  get bufferedFlows(): number {
    return this.buffered;
  }
}
