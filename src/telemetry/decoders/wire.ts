// Byte-level helpers every decoder shares. Callers check bounds before reading: these never do,
// so a read past the end is a bug in the caller, which the fuzz tests exist to find.

import type { DecodeContext, DecodeError, DecodeErrorKind, DecodeSummary, FlowDecoder, InterfaceCounters } from '../flow.js';
import { FlowRows } from '../flow-rows.js';

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export function u8(b: Uint8Array, o: number): number {
  return b[o]!;
}

export function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function u32(b: Uint8Array, o: number): number {
  return b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}

/**
 * An unsigned big-endian integer of 1 to 8 bytes (IPFIX reduced-size encoding, RFC 7011 §6.2).
 * Values above 2^53 - 1 clamp to it: no counter that large is real, and a Number must stay exact.
 */
export function readUint(b: Uint8Array, o: number, len: number): number {
  let v = 0;
  for (let i = 0; i < len; i++) v = v * 256 + b[o + i]!;
  return v > MAX_SAFE ? MAX_SAFE : v;
}

// Decimal text of every byte: formatting addresses is the hottest work in decoding.
const DECIMAL: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

export function ipv4(b: Uint8Array, o: number): string {
  return DECIMAL[b[o]!]! + '.' + DECIMAL[b[o + 1]!]! + '.' + DECIMAL[b[o + 2]!]! + '.' + DECIMAL[b[o + 3]!]!;
}

/** RFC 5952 text: lower-case hex, no leading zeros, the longest run of two or more zero groups as "::". */
export function ipv6(b: Uint8Array, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!);
  // IPv4-mapped addresses keep their dotted tail (RFC 5952 §5), as inet_ntop prints them.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${ipv4(b, o + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** Scales a counter by a sampling rate, staying a safe integer. */
export function scaled(count: number, rate: number): number {
  const v = count * rate;
  return v > MAX_SAFE ? MAX_SAFE : Math.round(v);
}

/** Errors for one datagram, capped so a datagram of a thousand bad sets cannot make a thousand errors. */
export class ErrorList {
  static readonly MAX = 16;
  readonly items: DecodeError[] = [];

  add(kind: DecodeErrorKind, detail: string): void {
    if (this.items.length < ErrorList.MAX) this.items.push({ kind, detail });
  }

  get length(): number {
    return this.items.length;
  }
}

export interface ResultParts {
  rows: FlowRows;
  errors: ErrorList;
  domain: number;
  sequence: number | null;
  sequenceUnit: 'datagram' | 'record' | null;
  recordsInDatagram: number;
  optionRecordsInDatagram: number;
  templatesLearned: number;
  counters: InterfaceCounters[];
}

export function emptyParts(sequenceUnit: 'datagram' | 'record', rows: FlowRows): ResultParts {
  return {
    rows,
    errors: new ErrorList(),
    domain: 0,
    sequence: null,
    sequenceUnit,
    recordsInDatagram: 0,
    optionRecordsInDatagram: 0,
    templatesLearned: 0,
    counters: [],
  };
}

export function finish(p: ResultParts): DecodeSummary {
  return {
    errors: p.errors.items,
    domain: p.domain,
    // Without a readable header there is no sequence to account loss with.
    sequence: p.sequence,
    sequenceUnit: p.sequence === null ? null : p.sequenceUnit,
    recordsInDatagram: p.recordsInDatagram,
    optionRecordsInDatagram: p.optionRecordsInDatagram,
    templatesLearned: p.templatesLearned,
    counters: p.counters,
  };
}

/**
 * A FlowDecoder from its row-writing decode. The last line of defence is here: a decoder bug becomes a
 * DecodeError, never an exception in the collector, and the rows it appended are taken back.
 */
export function makeDecoder(
  name: FlowDecoder['name'],
  accepts: (d: Uint8Array) => boolean,
  decodeInto: (d: Uint8Array, ctx: DecodeContext, rows: FlowRows) => DecodeSummary,
): FlowDecoder {
  const into = (d: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary => {
    const start = rows.length;
    try {
      return decodeInto(d, ctx, rows);
    } catch (e) {
      rows.truncate(start);
      return {
        errors: [{ kind: 'unsupported', detail: `${name} decoder failed: ${e instanceof Error ? e.message : String(e)}` }],
        domain: 0,
        sequence: null,
        sequenceUnit: null,
        recordsInDatagram: 0,
        optionRecordsInDatagram: 0,
        templatesLearned: 0,
        counters: [],
      };
    }
  };
  return {
    name,
    accepts,
    decodeInto: into,
    decode: (d, ctx) => {
      const rows = new FlowRows();
      const summary = into(d, ctx, rows);
      return { ...summary, records: rows.records() };
    },
  };
}
