// PURE. Flow records as rows of numbers: what decoders write and windows keep, so a datagram's records
// cost no object and no address string each. FlowRecord objects are made only when someone reads them
// (a closing window, onRecord, the decoders' record API).

import type { FlowRecord } from './flow.js';

// A row is ten unsigned 32-bit numbers (40 bytes). Every record a collector keeps costs its row in
// fresh memory (page faults, cache misses, garbage collection of the buffers), which was most of the
// collector's cost per record; so rows are packed: IPv4 addresses as numbers, times as milliseconds
// from the table's base, and exporter, domain and sampling rate (which seldom change from row to row)
// as one index into the table's sources. Other addresses (IPv6, or text that is not canonical dotted
// IPv4) are text beside the row; a record with a value that does not fit its slot (a count of 2^32 or
// more, a time further than about 24 days from the base, a port above 65535 …) is kept whole beside it.
const SRC = 0;
const DST = 1;
/** srcPort · 2^16 + dstPort. */
const PORTS = 2;
/** protocol · 2^8 + tcpFlags, and the TEXT and WHOLE flags. */
const MISC = 3;
/** Index of (exporter, domain, sampling rate) in the table's sources. */
const SOURCE = 4;
const BYTES = 5;
const PACKETS = 6;
/** lastMs − the table's base. */
const LAST = 7;
/** lastMs − firstMs. */
const SPAN = 8;
/** A number the table's owner keeps with the row (see pushRow). */
const TAG = 9;
export const ROW_STRIDE = 10;
/** The most chunks one slab holds. */
const SLAB_CHUNKS = 16;
/** In MISC: the addresses are text, beside the row (the address slots are 0). */
const TEXT = 1 << 16;
/** In MISC: the record is kept whole, beside the row; only the address slots and TEXT are meaningful. */
const WHOLE = 1 << 17;
/** A row's last time lies within this of its table's centre (about 24 days). */
export const ROW_TIME_RANGE_MS = 2 ** 31;
const TWO_8 = 2 ** 8;
const TWO_16 = 2 ** 16;
const TWO_32 = 2 ** 32;

const isU = (x: number, below: number): boolean => Number.isInteger(x) && x >= 0 && x < below;
/** Whether x is a whole number in [0, 2^32): `>>> 0` changes every other number (but makes -0 a 0). */
const isU32 = (x: number): boolean => x >>> 0 === x;

/** The address slot value meaning "the address is in the row's text". */
export const TEXT_ADDRESS = -1;

// Decimal text of every byte: formatting addresses is the hottest work in materialising records.
const DECIMAL: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

/** Dotted text of an IPv4 address held as an unsigned 32-bit number. */
export function ipv4Text(n: number): string {
  return DECIMAL[n >>> 24]! + '.' + DECIMAL[(n >>> 16) & 255]! + '.' + DECIMAL[(n >>> 8) & 255]! + '.' + DECIMAL[n & 255]!;
}

/** The number of a canonical dotted IPv4 text ("10.0.0.1", no leading zeros), or -1 for anything else. */
export function ipv4Number(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + part;
}

interface Source {
  readonly exporter: string;
  readonly domain: number;
  readonly samplingRate: number;
}

/**
 * A growable table of flow records, one packed row each, in fixed-size chunks (growing never copies).
 * A FlowRecord is made from a row only on demand.
 */
export class FlowRows {
  private readonly chunks: Uint32Array[] = [];
  /** The slab chunks are cut from (see grow()), how much of it is used, and how many slabs were made. */
  private slab: Uint32Array | null = null;
  private slabUsed = 0;
  private slabs = 0;
  private readonly bits: number;
  private readonly mask: number;
  /** Times are kept relative to this: given, or taken from the first row after each clear(). */
  private baseMs = Number.NaN; // a double from the start: a field that changes representation costs optimised code
  private readonly fixedBase: boolean;
  private sources: Source[] = [];
  private sourceIndex = new Map<string, number>();
  // The source of the last row pushed, and of the last row copied from another table.
  private lastSource: Source | null = null;
  private lastSourceIndex = -1;
  private lastForeign: Source | null = null;
  private lastForeignIndex = -1;
  /** Text addresses [src, dst] of the rows flagged TEXT. */
  private text: Map<number, readonly [string, string]> | null = null;
  /** Records kept whole (flagged WHOLE). */
  private whole: Map<number, FlowRecord> | null = null;
  private n = 0;

  /**
   * Rows are kept in chunks of 2^chunkBits. With centreMs, rows are packed best for last times within
   * ROW_TIME_RANGE_MS of it (a collector's window); without, around the first row's.
   */
  constructor(chunkBits = 6, centreMs?: number) {
    this.bits = chunkBits;
    this.mask = (1 << chunkBits) - 1;
    this.fixedBase = centreMs !== undefined;
    if (centreMs !== undefined) this.baseMs = centreMs - ROW_TIME_RANGE_MS;
  }

  get length(): number {
    return this.n;
  }

  /** Forgets every row, keeping the storage (and, up to a bound, the sources). */
  clear(): void {
    this.n = 0;
    this.text = null;
    this.whole = null;
    if (this.sourceIndex.size > 1024) {
      this.sources = [];
      this.sourceIndex = new Map();
      this.lastSource = null;
      this.lastForeign = null;
    }
  }

  /** Drops the rows from `length` on (a decode that failed half-way). */
  truncate(length: number): void {
    if (length >= this.n) return;
    this.n = length;
    if (this.text !== null) for (const k of [...this.text.keys()]) if (k >= length) this.text.delete(k);
    if (this.whole !== null) for (const k of [...this.whole.keys()]) if (k >= length) this.whole.delete(k);
  }

  private sourceOf(exporter: string, domain: number, samplingRate: number): number {
    const l = this.lastSource;
    if (l !== null && exporter === l.exporter && domain === l.domain && samplingRate === l.samplingRate) return this.lastSourceIndex;
    return this.findSource(exporter, domain, samplingRate);
  }

  private findSource(exporter: string, domain: number, samplingRate: number): number {
    const key = `${domain}|${samplingRate}|${exporter}`;
    let i = this.sourceIndex.get(key);
    if (i === undefined) {
      i = this.sources.length;
      this.sources.push({ exporter, domain, samplingRate });
      this.sourceIndex.set(key, i);
    }
    this.lastSource = this.sources[i]!;
    this.lastSourceIndex = i;
    return i;
  }

  /** Makes room for row i (the next) and returns its chunk. */
  private chunkFor(i: number): Uint32Array {
    const c = i >>> this.bits;
    return this.chunks[c] ?? this.grow(c);
  }

  private grow(c: number): Uint32Array {
    // Chunks are cut from slabs that double in size up to SLAB_CHUNKS chunks: a table of millions of rows
    // makes tens of buffers, not hundreds (each buffer costs an allocation, and the collector's sweeps).
    const size = (this.mask + 1) * ROW_STRIDE;
    if (this.slab === null || this.slabUsed === this.slab.length) {
      this.slab = new Uint32Array(size * Math.min(2 ** this.slabs, SLAB_CHUNKS));
      this.slabs++;
      this.slabUsed = 0;
    }
    const chunk = this.slab.subarray(this.slabUsed, this.slabUsed + size);
    this.slabUsed += size;
    this.chunks[c] = chunk;
    return chunk;
  }

  /**
   * Appends a whole record: what the decoders write, in one call. Addresses are numbers, or TEXT_ADDRESS
   * and text; ports, protocol, flags and domain fit their slots (the decoders read them so).
   */
  push(exporter: string, domain: number, src: number, dst: number, srcText: string, dstText: string, srcPort: number, dstPort: number,
    protocol: number, tcpFlags: number, bytes: number, packets: number, firstMs: number, lastMs: number, samplingRate: number): void {
    // Kept short, with the rare cases in pushOther, so that the decoders' record loops can inline it.
    const i = this.n;
    if (i === 0 && !this.fixedBase && Number.isFinite(lastMs)) this.baseMs = Math.floor(lastMs) - ROW_TIME_RANGE_MS;
    const last = lastMs - this.baseMs;
    const span = lastMs - firstMs;
    // Each value must come back exactly: the last two comparisons catch times that are not whole
    // numbers or would lose precision far from the base.
    if (src === TEXT_ADDRESS || dst === TEXT_ADDRESS || !(isU32(last) && isU32(span) && isU32(bytes) && isU32(packets)
      && this.baseMs + last === lastMs && lastMs - span === firstMs)) {
      this.pushOther(exporter, domain, src, dst, srcText, dstText, srcPort, dstPort, protocol, tcpFlags, bytes, packets, firstMs, lastMs, samplingRate);
      return;
    }
    const u = this.chunkFor(i);
    const o = (i & this.mask) * ROW_STRIDE;
    u[o + SRC] = src;
    u[o + DST] = dst;
    u[o + PORTS] = srcPort * TWO_16 + dstPort;
    u[o + MISC] = protocol * TWO_8 + tcpFlags;
    u[o + SOURCE] = this.sourceOf(exporter, domain, samplingRate);
    u[o + BYTES] = bytes;
    u[o + PACKETS] = packets;
    u[o + LAST] = last;
    u[o + SPAN] = span;
    u[o + TAG] = 0;
    this.n = i + 1;
  }

  /** push() for a record with text addresses, or one that does not fit a row. */
  private pushOther(exporter: string, domain: number, src: number, dst: number, srcText: string, dstText: string, srcPort: number, dstPort: number,
    protocol: number, tcpFlags: number, bytes: number, packets: number, firstMs: number, lastMs: number, samplingRate: number): void {
    const i = this.n;
    const u = this.chunkFor(i);
    const o = (i & this.mask) * ROW_STRIDE;
    this.n = i + 1;
    const text = src === TEXT_ADDRESS || dst === TEXT_ADDRESS;
    if (text) (this.text ??= new Map()).set(i, [srcText, dstText]);
    u[o + SRC] = text ? 0 : src;
    u[o + DST] = text ? 0 : dst;
    u[o + TAG] = 0;
    const last = lastMs - this.baseMs;
    const span = lastMs - firstMs;
    if (isU32(last) && isU32(span) && isU32(bytes) && isU32(packets) && this.baseMs + last === lastMs && lastMs - span === firstMs) {
      u[o + PORTS] = srcPort * TWO_16 + dstPort;
      u[o + MISC] = protocol * TWO_8 + tcpFlags + (text ? TEXT : 0);
      u[o + SOURCE] = this.sourceOf(exporter, domain, samplingRate);
      u[o + BYTES] = bytes;
      u[o + PACKETS] = packets;
      u[o + LAST] = last;
      u[o + SPAN] = span;
    } else {
      u[o + MISC] = WHOLE + (text ? TEXT : 0);
      (this.whole ??= new Map()).set(i, {
        exporter, domain, srcAddr: text ? srcText : ipv4Text(src), dstAddr: text ? dstText : ipv4Text(dst), srcPort, dstPort, protocol,
        bytes, packets, firstMs, lastMs, tcpFlags, samplingRate,
      });
    }
  }

  /** Appends a FlowRecord, keeping canonical IPv4 addresses as numbers. */
  pushRecord(r: FlowRecord): void {
    const s = ipv4Number(r.srcAddr);
    const d = ipv4Number(r.dstAddr);
    const text = s < 0 || d < 0;
    const fits = isU(r.srcPort, TWO_16) && isU(r.dstPort, TWO_16) && isU(r.protocol, TWO_8) && isU(r.tcpFlags, TWO_8) && isU(r.domain, TWO_32);
    this.push(r.exporter, fits ? r.domain : 0, text ? TEXT_ADDRESS : s, text ? TEXT_ADDRESS : d, r.srcAddr, r.dstAddr,
      fits ? r.srcPort : 0, fits ? r.dstPort : 0, fits ? r.protocol : 0, fits ? r.tcpFlags : 0, r.bytes, r.packets, r.firstMs, r.lastMs, r.samplingRate);
    const i = this.n - 1;
    if (!fits || this.whole?.has(i) === true) {
      // Kept as given (the same object), whatever push made of it.
      const u = this.chunks[i >>> this.bits]!;
      u[(i & this.mask) * ROW_STRIDE + MISC] = WHOLE + (text ? TEXT : 0);
      (this.whole ??= new Map()).set(i, r);
    }
  }

  /** Appends row i of another table, with `tag` (see tag()). */
  pushRow(from: FlowRows, i: number, tag = 0): void {
    // Kept short (the rare rows in pushRowOther): this is the copy every record a collector keeps takes.
    const f = from.chunks[i >>> from.bits]!;
    const k = (i & from.mask) * ROW_STRIDE;
    const misc = f[k + MISC]!;
    // The same last time, from this table's base.
    const lastMs = from.baseMs + f[k + LAST]!;
    const last = lastMs - this.baseMs;
    if ((misc & (TEXT | WHOLE)) !== 0 || !(isU32(last) && this.baseMs + last === lastMs)) {
      this.pushRowOther(from, i, tag);
      return;
    }
    const j = this.n;
    const u = this.chunkFor(j);
    const o = (j & this.mask) * ROW_STRIDE;
    u[o + SRC] = f[k + SRC]!;
    u[o + DST] = f[k + DST]!;
    u[o + PORTS] = f[k + PORTS]!;
    u[o + MISC] = misc;
    u[o + SOURCE] = this.foreignSource(from.sources[f[k + SOURCE]!]!);
    u[o + BYTES] = f[k + BYTES]!;
    u[o + PACKETS] = f[k + PACKETS]!;
    u[o + LAST] = last;
    u[o + SPAN] = f[k + SPAN]!;
    u[o + TAG] = tag;
    this.n = j + 1;
  }

  /** pushRow() for a row with text addresses, kept whole, or whose time does not fit this table's base. */
  private pushRowOther(from: FlowRows, i: number, tag: number): void {
    const j = this.n;
    const u = this.chunkFor(j);
    const o = (j & this.mask) * ROW_STRIDE;
    const f = from.chunks[i >>> from.bits]!;
    const k = (i & from.mask) * ROW_STRIDE;
    this.n = j + 1;
    const misc = f[k + MISC]!;
    u[o + SRC] = f[k + SRC]!;
    u[o + DST] = f[k + DST]!;
    u[o + TAG] = tag;
    if ((misc & TEXT) !== 0) (this.text ??= new Map()).set(j, from.text!.get(i)!);
    if ((misc & WHOLE) === 0) {
      const lastMs = from.baseMs + f[k + LAST]!;
      const last = lastMs - this.baseMs;
      if (isU32(last) && this.baseMs + last === lastMs) {
        u[o + PORTS] = f[k + PORTS]!;
        u[o + MISC] = misc;
        u[o + SOURCE] = this.foreignSource(from.sources[f[k + SOURCE]!]!);
        u[o + BYTES] = f[k + BYTES]!;
        u[o + PACKETS] = f[k + PACKETS]!;
        u[o + LAST] = last;
        u[o + SPAN] = f[k + SPAN]!;
        return;
      }
    }
    u[o + MISC] = WHOLE + (misc & TEXT);
    (this.whole ??= new Map()).set(j, from.record(i));
  }

  /** This table's index of another table's source. */
  private foreignSource(s: Source): number {
    return s === this.lastForeign ? this.lastForeignIndex : this.newForeignSource(s);
  }

  private newForeignSource(s: Source): number {
    const i = this.sourceOf(s.exporter, s.domain, s.samplingRate);
    this.lastForeign = s;
    this.lastForeignIndex = i;
    return i;
  }

  private slot(i: number, s: number): number {
    return this.chunks[i >>> this.bits]![(i & this.mask) * ROW_STRIDE + s]!;
  }

  /** The source address as a number, or TEXT_ADDRESS when it is text (srcText). */
  src(i: number): number {
    return (this.slot(i, MISC) & TEXT) !== 0 ? TEXT_ADDRESS : this.slot(i, SRC);
  }

  dst(i: number): number {
    return (this.slot(i, MISC) & TEXT) !== 0 ? TEXT_ADDRESS : this.slot(i, DST);
  }

  srcText(i: number): string {
    return (this.slot(i, MISC) & TEXT) !== 0 ? this.text!.get(i)![0] : ipv4Text(this.slot(i, SRC));
  }

  dstText(i: number): string {
    return (this.slot(i, MISC) & TEXT) !== 0 ? this.text!.get(i)![1] : ipv4Text(this.slot(i, DST));
  }

  lastMs(i: number): number {
    return (this.slot(i, MISC) & WHOLE) !== 0 ? this.whole!.get(i)!.lastMs : this.baseMs + this.slot(i, LAST);
  }

  /** The number given with the row to pushRow (0 for rows pushed otherwise). */
  tag(i: number): number {
    return this.slot(i, TAG);
  }

  /** Row i as a FlowRecord. */
  record(i: number): FlowRecord {
    const u = this.chunks[i >>> this.bits]!;
    const o = (i & this.mask) * ROW_STRIDE;
    const misc = u[o + MISC]!;
    if ((misc & WHOLE) !== 0) return this.whole!.get(i)!;
    const text = (misc & TEXT) !== 0 ? this.text!.get(i)! : null;
    const ports = u[o + PORTS]!;
    const source = this.sources[u[o + SOURCE]!]!;
    const lastMs = this.baseMs + u[o + LAST]!;
    return {
      exporter: source.exporter,
      domain: source.domain,
      srcAddr: text !== null ? text[0] : ipv4Text(u[o + SRC]!),
      dstAddr: text !== null ? text[1] : ipv4Text(u[o + DST]!),
      srcPort: ports >>> 16,
      dstPort: ports & 0xffff,
      protocol: (misc >>> 8) & 255,
      bytes: u[o + BYTES]!,
      packets: u[o + PACKETS]!,
      firstMs: lastMs - u[o + SPAN]!,
      lastMs,
      tcpFlags: misc & 255,
      samplingRate: source.samplingRate,
    };
  }

  /** Every row as FlowRecords, from row `from` on. */
  records(from = 0): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let i = from; i < this.n; i++) out.push(this.record(i));
    return out;
  }
}
