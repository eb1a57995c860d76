import type { VmId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { pickDecoder } from './decoders/index.js';
import type { DecodeContext, DecodeErrorKind, FlowDecoder, FlowRecord, InterfaceCounters } from './flow.js';
import { FlowRows, TEXT_ADDRESS } from './flow-rows.js';
import type { Inventory } from './inventory.js';
import { RecencyMap, TemplateCache } from './templates.js';

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

// The collector's own small objects are classes, not object literals: V8 makes every object of a literal
// from the first one it made, and when a field of that first one changed kind (a count that became a
// large number), each new collector (a restart, a test, a benchmark round) would throw away the optimised
// decoding code and make it again.
class SeqState {
  /** This exporter numbers a datagram by the records up to and including it (softflowd does). */
  inclusive = false;
  /** This exporter leaves options data records out of its count (softflowd does; RFC 7011 counts them). */
  skipsOptions = false;
  /**
   * A convention that explained one number the adopted one did not: adopted when it explains another that
   * the adopted one does not; if instead the adopted one explains the next telling number, the gap was a
   * real loss of `pendingLoss` records, counted then.
   */
  pending: { inclusive: boolean; skipsOptions: boolean } | null = null;
  pendingLoss = 0;
  /** The previous datagram had records that could not be counted (a template not yet known, a bad set). */
  prevUncounted = false;

  constructor(
    /** The previous datagram's sequence number. */
    public prev: number,
    /** What the previous datagram carried: all its records, and its options records. */
    public prevAll: number,
    public prevOptions: number,
  ) {}

  /** This datagram is the newest: the next is numbered after it. */
  moveTo(seq: number, all: number, options: number, uncounted: boolean): void {
    this.prev = seq;
    this.prevAll = all;
    this.prevOptions = options;
    this.prevUncounted = uncounted;
  }

  /** The sequence number the next datagram should carry, if it carries `all` records, `options` of them options records. */
  expected(all: number, options: number, inclusive = this.inclusive, skipsOptions = this.skipsOptions): number {
    const advance = inclusive ? all - (skipsOptions ? options : 0) : this.prevAll - (skipsOptions ? this.prevOptions : 0);
    return (this.prev + advance) % U32;
  }
}

/** The context handed to the decoders, reused for every datagram. */
class IngestContext implements DecodeContext {
  exporter = '';
  nowMs = -0; // -0: see watermarkMs

  constructor(readonly templates: TemplateCache) {}
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
  /**
   * Per VM, side by side (one cache line per record): at 2·vm the rows kept (up to the cap), at 2·vm + 1
   * the index + 1 of its last row (0: none). Sized to the inventory (8 bytes a VM, at most 64 periods
   * open), grown if a VM index lies beyond.
   */
  private perVm: Int32Array;
  /** VMs in the order of their first record here. */
  readonly vms: number[] = [];
  overflow: Map<number, Overflow> | null = null;
  /** Rows plus records kept past the cap, for the collector's bound. */
  buffered = 0;

  constructor(readonly startMs: number, vmSlots: number) {
    this.perVm = new Int32Array(2 * vmSlots);
    // Large chunks (160 KiB): a period takes up to a minute of records; times packed around its start.
    this.rows = new FlowRows(12, startMs);
  }

  /** Rows kept for VM vm. */
  count(vm: number): number {
    return 2 * vm < this.perVm.length ? this.perVm[2 * vm]! : 0;
  }

  /** Appends row i of `from` as VM vm's. */
  add(vm: number, from: FlowRows, i: number): void {
    if (2 * vm >= this.perVm.length) this.grow(vm);
    const per = this.perVm;
    this.rows.pushRow(from, i, per[2 * vm + 1]);
    per[2 * vm + 1] = this.rows.length;
    if (per[2 * vm]!++ === 0) this.vms.push(vm);
    this.buffered++;
  }

  private grow(vm: number): void {
    let n = this.perVm.length;
    while (n <= 2 * vm) n *= 2;
    const perVm = new Int32Array(n);
    perVm.set(this.perVm);
    this.perVm = perVm;
  }

  /** VM vm's records, in arrival order, as FlowRecords. */
  records(vm: number): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let r = 2 * vm < this.perVm.length ? this.perVm[2 * vm + 1]! : 0; r !== 0; r = this.rows.tag(r - 1)) out.push(this.rows.record(r - 1));
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

const DECODER_NUMBER: Readonly<Record<FlowDecoder['name'], number>> = { ipfix: 0, netflow9: 1, netflow5: 2, sflow5: 3 };

/** The number an exporter's sequence state is kept under: its decoder and observation domain (32 bits), exactly. */
function seqKey(decoder: FlowDecoder, domain: number): number {
  return DECODER_NUMBER[decoder.name] * U32 + domain;
}
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
  /** Sequence state per exporter, decoder and observation domain (see seqKey), in order of use, bounded. */
  private readonly seq = new RecencyMap<SeqState | undefined>(undefined);
  /** Open window periods by start time. */
  private readonly open = new Map<number, Period>();
  /** The period that took the last record: most records land in the one before them. */
  private current: Period | null = null;
  private buffered = 0;
  private readonly lastLog = new Map<string, { atMs: number; suppressed: number }>();
  // -0, not 0: V8 keeps a number field that starts as a small integer in another object layout than one
  // holding a time; the first tick() would change the layout and throw away the optimised code of every
  // function that uses the collector. -0 behaves as 0 in every comparison and Math.max here.
  private watermarkMs = -0;
  /** The rows of the datagram being ingested, reused: decoding a datagram allocates no record. */
  private readonly batch = new FlowRows(8);
  /** addRecord's one-row batch. */
  private readonly single = new FlowRows(2);
  private readonly ctx: IngestContext;

  // The options the record path reads, as the collector's own fields: reading them from the caller's
  // options object would tie the optimised code to that object's shape, which differs from caller to caller.
  private readonly inventory: Inventory;
  private readonly windowMs: number;
  private readonly graceMs: number;
  private readonly maxFlowsPerWindow: number;
  private readonly maxBufferedFlows: number;
  private readonly maxExporters: number;
  private readonly onWindow: (w: VmWindow) => void;
  private readonly onRecord: ((r: FlowRecord) => void) | undefined;
  private readonly onCounters: ((c: InterfaceCounters) => void) | undefined;

  constructor(private readonly o: CollectorOptions) {
    this.inventory = o.inventory;
    this.windowMs = o.windowMs;
    this.graceMs = o.graceMs;
    this.maxFlowsPerWindow = o.maxFlowsPerWindow;
    this.maxBufferedFlows = o.maxBufferedFlows;
    this.maxExporters = o.maxExporters;
    this.onWindow = o.onWindow;
    this.onRecord = o.onRecord;
    this.onCounters = o.onCounters;
    this.templates = new TemplateCache({ ttlMs: o.templateTtlMs, maxTemplates: o.maxTemplates });
    this.ctx = new IngestContext(this.templates);
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
      const perRecord = res.sequenceUnit === 'record';
      this.track(exporter, seqKey(decoder, res.domain), res.sequence, perRecord ? res.recordsInDatagram : 1, perRecord ? res.optionRecordsInDatagram : 0, res.sequenceUnit, res.errors.length > 0, nowMs);
    }
    for (const c of res.counters) this.onCounters?.(c);
    this.addRows(batch, nowMs);
    this.stats.templates = this.templates.size;
    this.stats.exporters = this.seq.size;
  }

  /**
   * Sequence accounting for one datagram carrying `all` records (1 for per-datagram counters), `options` of
   * them options records. Exporters differ in two ways the RFCs leave room for in practice: whether a
   * datagram's number already includes its own records, and whether options records are counted. The
   * other convention is adopted once it explains two numbers that the adopted one does not (one could be a
   * loss that happens to fit it); datagrams with records that could not be counted only resynchronise.
   */
  private track(exporter: string, key: number, seq: number, all: number, options: number, unit: 'record' | 'datagram', uncounted: boolean, nowMs: number): void {
    const e = this.seq.get(exporter, key);
    if (e === undefined) {
      const s = new SeqState(seq, all, options);
      s.prevUncounted = uncounted;
      this.seq.add(exporter, key, s, nowMs);
      while (this.seq.size > this.maxExporters) this.seq.delete(this.seq.first!);
      return;
    }
    // The map's order is recency, for the bound above.
    this.seq.refresh(e, nowMs);
    const s = e.value!;
    // A datagram whose records could not all be counted says nothing about loss, nor the one after it.
    if (unit === 'record' && (uncounted || s.prevUncounted)) return s.moveTo(seq, all, options, uncounted);
    const expected = s.expected(all, options);
    let alt: { inclusive: boolean; skipsOptions: boolean } | null = null;
    if (unit === 'record' && seq !== expected) {
      // The conventions not yet adopted; the first that explains this number, if any (only looked for
      // when ours does not: most datagrams need none of this).
      for (const [inclusive, skips] of [[true, s.skipsOptions], [s.inclusive, true], [true, true]] as const) {
        const c = { inclusive: inclusive || s.inclusive, skipsOptions: skips || s.skipsOptions };
        if ((c.inclusive !== s.inclusive || c.skipsOptions !== s.skipsOptions) && s.expected(all, options, c.inclusive, c.skipsOptions) === seq) {
          alt = c;
          break;
        }
      }
    }
    const p = s.pending;
    if (p !== null) {
      const byPending = s.expected(all, options, p.inclusive, p.skipsOptions) === seq;
      if (byPending && seq !== expected) {
        // Explained twice by the other convention and not by ours: it is the exporter's.
        s.inclusive = p.inclusive;
        s.skipsOptions = p.skipsOptions;
        s.pending = null;
        return s.moveTo(seq, all, options, uncounted);
      }
      if (seq === expected && !byPending) {
        // Ours explains this one and the other does not: the gap that suggested it was a real loss.
        this.stats.lostRecords += s.pendingLoss;
        s.pending = null;
      }
      // Both or neither explain it: nothing learned yet.
    }
    if (seq === expected) return s.moveTo(seq, all, options, uncounted);
    if (alt !== null && s.pending === null) {
      // One number only: the other convention is pending; the loss it would hide is kept until it is decided.
      s.pending = alt;
      s.pendingLoss = (seq - expected + U32) % U32 < U32 / 2 ? ((seq - expected + U32) % U32) | 0 : 0;
      return s.moveTo(seq, all, options, uncounted);
    }
    const diff = (seq - expected + U32) % U32;
    if (diff < U32 / 2) {
      // diff | 0 (exact: below 2^31) keeps the counts small integers.
      if (unit === 'record') this.stats.lostRecords += diff | 0;
      else this.stats.lostDatagrams += diff | 0;
      return s.moveTo(seq, all, options, uncounted);
    }
    // A late datagram: counted, and the counter stays where the newest one left it.
    this.stats.outOfOrder++;
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
    const inv = this.inventory;
    const onRecord = this.onRecord;
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

  // place() is every attributed record's path: it is kept small, with the rare cases (a time out of
  // place, a new period, a VM past its cap) in functions of their own, so the record loop inlines it.
  private place(vm: number, rows: FlowRows, i: number, nowMs: number): void {
    const w = this.windowMs;
    let start = Math.floor(rows.lastMs(i) / w) * w;
    const wm = this.watermarkMs;
    if (!Number.isFinite(start) || (wm > 0 && start > wm + w + this.graceMs) || start + w + this.graceMs <= wm) start = this.misplaced(start, nowMs);
    let p = this.current;
    if (p === null || p.startMs !== start) p = this.periodAt(start, nowMs);
    if (p.count(vm) < this.maxFlowsPerWindow) {
      p.add(vm, rows, i);
      this.buffered++;
    } else {
      this.placeOverCap(p, vm, rows.record(i));
    }
    if (this.buffered > this.maxBufferedFlows) this.flushOldest(nowMs);
  }

  /** The period for a record whose window start is in the future, none, or closed: the current one, counted. */
  private misplaced(start: number, nowMs: number): number {
    if (!Number.isFinite(start) || (this.watermarkMs > 0 && start > this.watermarkMs + this.windowMs + this.graceMs)) {
      // A time in the future (or none): it would hold a window open forever; it goes into the current one.
      this.stats.badTime++;
    } else {
      // Its window has closed: it goes into the VM's current window, counted.
      this.stats.late++;
    }
    return Math.floor(Math.max(nowMs, this.watermarkMs) / this.windowMs) * this.windowMs;
  }

  /** The open period starting at `start`, opened if need be; it becomes the current one. */
  private periodAt(start: number, nowMs: number): Period {
    let p = this.open.get(start);
    if (p === undefined) {
      // Hostile times could open a period per record: the oldest go early instead.
      if (this.open.size >= MAX_OPEN_PERIODS) this.flushOldest(nowMs, MAX_OPEN_PERIODS - 1);
      p = new Period(start, Math.max(this.inventory.vms.length, 1));
      this.open.set(start, p);
    }
    this.current = p;
    return p;
  }

  /** Past the cap: one record per conversation, so a flood costs at most its number of conversations. */
  private placeOverCap(p: Period, vm: number, r: FlowRecord): void {
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
    } else if (merged.size < this.maxFlowsPerWindow) {
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

  /** Hands out a period's windows, one per VM, and forgets it. Returns how many. */
  private emit(p: Period): number {
    this.open.delete(p.startMs);
    if (this.current === p) this.current = null;
    this.buffered -= p.buffered;
    const vms = this.inventory.vms;
    const endMs = p.startMs + this.windowMs;
    for (const vm of p.vms) {
      this.stats.windowsEmitted++;
      this.onWindow(new ClosedWindow(vms[vm]!, p.startMs, endMs, p, vm, p.overflow?.get(vm)?.count ?? 0));
    }
    return p.vms.length;
  }

  /** Emits the oldest periods until the buffered records are under 90 % of the bound and at most maxPeriods stay open. */
  private flushOldest(nowMs: number, maxPeriods = MAX_OPEN_PERIODS): void {
    for (const p of [...this.open.values()].sort((x, y) => x.startMs - y.startMs)) {
      if (this.buffered <= this.maxBufferedFlows * 0.9 && this.open.size <= maxPeriods) break;
      this.stats.earlyFlushes += this.emit(p);
    }
    this.warn('early-flush', 'emitted windows early to keep buffered records and open windows bounded', { buffered: this.buffered, max: this.maxBufferedFlows, openPeriods: this.open.size }, nowMs);
  }

  /**
   * Advances the collector's clock: windows that ended more than graceMs ago are emitted, templates past
   * their lifetime are forgotten. With `all`, every open window is emitted (shutdown, end of a capture).
   */
  tick(nowMs: number, all = false): void {
    this.watermarkMs = Math.max(this.watermarkMs, nowMs);
    for (const p of [...this.open.values()].sort((x, y) => x.startMs - y.startMs)) {
      if (all || p.startMs + this.windowMs + this.graceMs <= nowMs) this.emit(p);
    }
    this.templates.expire(nowMs);
    this.stats.templates = this.templates.size;
  }

  get bufferedFlows(): number {
    return this.buffered;
  }
}
