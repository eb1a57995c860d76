// PURE. Flow records as rows of numbers: what decoders write and windows keep, so a datagram's records
// cost no object and no address string each. FlowRecord objects are made only when someone reads them
// (a closing window, onRecord, the decoders' record API).

import type { FlowRecord } from './flow.js';

// Slots of a row. IPv4 addresses are kept as unsigned 32-bit numbers; other addresses (IPv6, or text
// that is not canonical dotted IPv4) as text beside the row, with TEXT_ADDRESS in the address slots.
const SRC = 0;
const DST = 1;
const SRC_PORT = 2;
const DST_PORT = 3;
const PROTOCOL = 4;
const TCP_FLAGS = 5;
const BYTES = 6;
const PACKETS = 7;
const FIRST_MS = 8;
const LAST_MS = 9;
const SAMPLING_RATE = 10;
const DOMAIN = 11;
/** Index of the exporter's name in the table's list of names. */
const EXPORTER = 12;
export const ROW_STRIDE = 13;

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

/**
 * A growable table of flow records, one row of numbers each, in fixed-size chunks (growing never copies).
 * A FlowRecord is made from a row only on demand.
 */
export class FlowRows {
  private readonly chunks: Float64Array[] = [];
  private readonly bits: number;
  private readonly mask: number;
  /** Exporter names; rows hold an index into it. */
  private readonly names: string[] = [];
  private readonly nameIndex = new Map<string, number>();
  private lastName = '';
  private lastNameIndex = -1;
  /** Text addresses [src, dst] of the rows whose address slots say TEXT_ADDRESS. */
  private texts: Map<number, readonly [string, string]> | null = null;
  private n = 0;

  /** Rows are kept in chunks of 2^chunkBits. */
  constructor(chunkBits = 6) {
    this.bits = chunkBits;
    this.mask = (1 << chunkBits) - 1;
  }

  get length(): number {
    return this.n;
  }

  /** Forgets every row, keeping the storage (and, up to a bound, the exporter names). */
  clear(): void {
    this.n = 0;
    this.texts = null;
    if (this.names.length > 1024) {
      this.names.length = 0;
      this.nameIndex.clear();
      this.lastNameIndex = -1;
      this.lastName = '';
    }
  }

  /** Drops the rows from `length` on (a decode that failed half-way). */
  truncate(length: number): void {
    if (length >= this.n) return;
    this.n = length;
    if (this.texts !== null) for (const k of [...this.texts.keys()]) if (k >= length) this.texts.delete(k);
  }

  private nameOf(exporter: string): number {
    if (exporter === this.lastName && this.lastNameIndex >= 0) return this.lastNameIndex;
    let i = this.nameIndex.get(exporter);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(exporter);
      this.nameIndex.set(exporter, i);
    }
    this.lastName = exporter;
    this.lastNameIndex = i;
    return i;
  }

  /** Makes room for row i (the next) and returns its chunk. */
  private chunkFor(i: number): Float64Array {
    const c = i >>> this.bits;
    return this.chunks[c] ?? this.grow(c);
  }

  private grow(c: number): Float64Array {
    const chunk = new Float64Array((this.mask + 1) * ROW_STRIDE);
    this.chunks[c] = chunk;
    return chunk;
  }

  /** Appends a whole record: what the decoders write, in one call. Addresses are numbers, or TEXT_ADDRESS and text. */
  push(exporter: string, domain: number, src: number, dst: number, srcText: string, dstText: string, srcPort: number, dstPort: number,
    protocol: number, tcpFlags: number, bytes: number, packets: number, firstMs: number, lastMs: number, samplingRate: number): void {
    const i = this.n;
    const v = this.chunkFor(i);
    const o = (i & this.mask) * ROW_STRIDE;
    v[o + SRC] = src;
    v[o + DST] = dst;
    if (src === TEXT_ADDRESS || dst === TEXT_ADDRESS) (this.texts ??= new Map()).set(i, [srcText, dstText]);
    v[o + SRC_PORT] = srcPort;
    v[o + DST_PORT] = dstPort;
    v[o + PROTOCOL] = protocol;
    v[o + TCP_FLAGS] = tcpFlags;
    v[o + BYTES] = bytes;
    v[o + PACKETS] = packets;
    v[o + FIRST_MS] = firstMs;
    v[o + LAST_MS] = lastMs;
    v[o + SAMPLING_RATE] = samplingRate;
    v[o + DOMAIN] = domain;
    v[o + EXPORTER] = this.nameOf(exporter);
    this.n = i + 1;
  }

  /** Appends a FlowRecord, keeping canonical IPv4 addresses as numbers. */
  pushRecord(r: FlowRecord): void {
    const s = ipv4Number(r.srcAddr);
    const d = ipv4Number(r.dstAddr);
    const text = s < 0 || d < 0;
    this.push(r.exporter, r.domain, text ? TEXT_ADDRESS : s, text ? TEXT_ADDRESS : d, r.srcAddr, r.dstAddr, r.srcPort, r.dstPort,
      r.protocol, r.tcpFlags, r.bytes, r.packets, r.firstMs, r.lastMs, r.samplingRate);
  }

  /** Appends row i of another table. */
  pushRow(from: FlowRows, i: number): void {
    const j = this.n;
    const v = this.chunkFor(j);
    const o = (j & this.mask) * ROW_STRIDE;
    const f = from.chunks[i >>> from.bits]!;
    const k = (i & from.mask) * ROW_STRIDE;
    for (let s = 0; s < EXPORTER; s++) v[o + s] = f[k + s]!;
    v[o + EXPORTER] = from.names === this.names ? f[k + EXPORTER]! : this.nameOf(from.names[f[k + EXPORTER]!]!);
    if (from.texts !== null) {
      const t = from.texts.get(i);
      if (t !== undefined) (this.texts ??= new Map()).set(j, t);
    }
    this.n = j + 1;
  }

  /** Slot s of row i. */
  private at(i: number, s: number): number {
    return this.chunks[i >>> this.bits]![(i & this.mask) * ROW_STRIDE + s]!;
  }

  /** The source address as a number, or TEXT_ADDRESS when it is text (srcText). */
  src(i: number): number {
    return this.at(i, SRC);
  }

  dst(i: number): number {
    return this.at(i, DST);
  }

  srcText(i: number): string {
    const n = this.at(i, SRC);
    return n === TEXT_ADDRESS ? this.texts!.get(i)![0] : ipv4Text(n);
  }

  dstText(i: number): string {
    const n = this.at(i, DST);
    return n === TEXT_ADDRESS ? this.texts!.get(i)![1] : ipv4Text(n);
  }

  lastMs(i: number): number {
    return this.at(i, LAST_MS);
  }

  /** Row i as a FlowRecord. */
  record(i: number): FlowRecord {
    const v = this.chunks[i >>> this.bits]!;
    const o = (i & this.mask) * ROW_STRIDE;
    return {
      exporter: this.names[v[o + EXPORTER]!]!,
      domain: v[o + DOMAIN]!,
      srcAddr: this.srcText(i),
      dstAddr: this.dstText(i),
      srcPort: v[o + SRC_PORT]!,
      dstPort: v[o + DST_PORT]!,
      protocol: v[o + PROTOCOL]!,
      bytes: v[o + BYTES]!,
      packets: v[o + PACKETS]!,
      firstMs: v[o + FIRST_MS]!,
      lastMs: v[o + LAST_MS]!,
      tcpFlags: v[o + TCP_FLAGS]!,
      samplingRate: v[o + SAMPLING_RATE]!,
    };
  }

  /** Every row as FlowRecords, from row `from` on. */
  records(from = 0): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let i = from; i < this.n; i++) out.push(this.record(i));
    return out;
  }
}
