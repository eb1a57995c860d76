// PURE. Flow records as rows of numbers: what decoders write and windows keep, so a datagram's records
// cost no object and no address string each. FlowRecord objects are made only when someone reads them
// (a closing window, onRecord, the decoders' record API).

import type { FlowRecord } from './flow.js';

// Slots of a row. IPv4 addresses are kept as unsigned 32-bit numbers; other addresses (IPv6, or text
// that is not canonical dotted IPv4) as text beside the row, with TEXT_ADDRESS in the address slots.
// Small integers share a slot, exactly (below 2^53): ports, protocol and TCP flags in one; the
// observation domain and the exporter's index in the table's names in another.
const SRC = 0;
const DST = 1;
/** srcPort · 2^32 + dstPort · 2^16 + protocol · 2^8 + tcpFlags. */
const PORTS = 2;
const BYTES = 3;
const PACKETS = 4;
const FIRST_MS = 5;
const LAST_MS = 6;
const SAMPLING_RATE = 7;
/** domain · 2^21 + index of the exporter's name. */
const SOURCE = 8;
export const ROW_STRIDE = 9;
const TWO_8 = 2 ** 8;
const TWO_16 = 2 ** 16;
const TWO_21 = 2 ** 21;
const TWO_32 = 2 ** 32;

const isU = (x: number, below: number): boolean => Number.isInteger(x) && x >= 0 && x < below;

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
  /** Records given whole (pushRecord) whose small fields do not fit their slots: kept as they are. */
  private odd: Map<number, FlowRecord> | null = null;
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
    this.odd = null;
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
    if (this.odd !== null) for (const k of [...this.odd.keys()]) if (k >= length) this.odd.delete(k);
  }

  private nameOf(exporter: string): number {
    if (exporter === this.lastName && this.lastNameIndex >= 0) return this.lastNameIndex;
    let i = this.nameIndex.get(exporter);
    if (i === undefined) {
      // The index shares a slot with the domain: past 2^21 names (never, in practice) start over.
      if (this.names.length >= TWO_21) throw new RangeError(`a FlowRows table holds at most ${TWO_21} exporter names`);
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
    v[o + PORTS] = srcPort * TWO_32 + dstPort * TWO_16 + protocol * TWO_8 + tcpFlags;
    v[o + BYTES] = bytes;
    v[o + PACKETS] = packets;
    v[o + FIRST_MS] = firstMs;
    v[o + LAST_MS] = lastMs;
    v[o + SAMPLING_RATE] = samplingRate;
    v[o + SOURCE] = domain * TWO_21 + this.nameOf(exporter);
    this.n = i + 1;
  }

  /** Appends a FlowRecord, keeping canonical IPv4 addresses as numbers. */
  pushRecord(r: FlowRecord): void {
    const s = ipv4Number(r.srcAddr);
    const d = ipv4Number(r.dstAddr);
    const text = s < 0 || d < 0;
    const fits = isU(r.srcPort, TWO_16) && isU(r.dstPort, TWO_16) && isU(r.protocol, TWO_8) && isU(r.tcpFlags, TWO_8) && isU(r.domain, TWO_32);
    this.push(r.exporter, fits ? r.domain : 0, text ? TEXT_ADDRESS : s, text ? TEXT_ADDRESS : d, r.srcAddr, r.dstAddr,
      fits ? r.srcPort : 0, fits ? r.dstPort : 0, fits ? r.protocol : 0, fits ? r.tcpFlags : 0, r.bytes, r.packets, r.firstMs, r.lastMs, r.samplingRate);
    if (!fits) (this.odd ??= new Map()).set(this.n - 1, r);
  }

  /** Appends row i of another table. */
  pushRow(from: FlowRows, i: number): void {
    const j = this.n;
    const v = this.chunkFor(j);
    const o = (j & this.mask) * ROW_STRIDE;
    const f = from.chunks[i >>> from.bits]!;
    const k = (i & from.mask) * ROW_STRIDE;
    for (let s = 0; s < SOURCE; s++) v[o + s] = f[k + s]!;
    const source = f[k + SOURCE]!;
    const domainPart = Math.floor(source / TWO_21) * TWO_21; // not %, a floating-point remainder
    v[o + SOURCE] = domainPart + this.nameOf(from.names[source - domainPart]!);
    if (from.texts !== null) {
      const t = from.texts.get(i);
      if (t !== undefined) (this.texts ??= new Map()).set(j, t);
    }
    if (from.odd !== null) {
      const r = from.odd.get(i);
      if (r !== undefined) (this.odd ??= new Map()).set(j, r);
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
    const ports = v[o + PORTS]!;
    const high = Math.floor(ports / TWO_16); // srcPort · 2^16 + dstPort
    const low = ports - high * TWO_16; // protocol · 2^8 + tcpFlags
    const source = v[o + SOURCE]!;
    const domain = Math.floor(source / TWO_21);
    const r: FlowRecord = {
      exporter: this.names[source - domain * TWO_21]!,
      domain,
      srcAddr: this.srcText(i),
      dstAddr: this.dstText(i),
      srcPort: high >>> 16,
      dstPort: high & 0xffff,
      protocol: low >>> 8,
      bytes: v[o + BYTES]!,
      packets: v[o + PACKETS]!,
      firstMs: v[o + FIRST_MS]!,
      lastMs: v[o + LAST_MS]!,
      tcpFlags: low & 255,
      samplingRate: v[o + SAMPLING_RATE]!,
    };
    return this.odd?.get(i) ?? r;
  }

  /** Every row as FlowRecords, from row `from` on. */
  records(from = 0): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let i = from; i < this.n; i++) out.push(this.record(i));
    return out;
  }
}
