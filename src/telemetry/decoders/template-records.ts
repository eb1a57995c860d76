// Data records described by templates, shared by IPFIX (RFC 7011) and NetFlow v9 (RFC 3954): the two
// number their common information elements alike (1–127), so one mapping serves both.

import type { DecodeContext, Template, TemplateField, TemplateStore } from '../flow.js';
import { TEXT_ADDRESS, type FlowRows } from '../flow-rows.js';
import { ErrorList, ipv6, MAX_SAFE, readUint, scaled } from './wire.js';

/** Values that options data records announce for an exporter and domain rather than per flow. */
export interface ExporterOptions {
  /** systemInitTimeMilliseconds (IE 160): the base of flowStart/EndSysUpTime. */
  readonly systemInitMs?: number;
  /** samplingInterval / samplerRandomInterval / samplingPacketInterval: 1 in N packets. */
  readonly samplingRate?: number;
}

/**
 * A TemplateStore that also keeps ExporterOptions. Options records arrive in one datagram and apply to
 * the data of later ones, so they need the same per-exporter state as templates. The decoders use these
 * two methods when the store has them and otherwise apply options only within the datagram that
 * carried them.
 */
export interface ExporterOptionsStore extends TemplateStore {
  getOptions(exporter: string, domain: number): ExporterOptions | undefined;
  setOptions(exporter: string, domain: number, options: ExporterOptions, nowMs: number): void;
}

export function optionsStoreOf(store: TemplateStore): ExporterOptionsStore | null {
  const s = store as Partial<ExporterOptionsStore>;
  return typeof s.getOptions === 'function' && typeof s.setOptions === 'function' ? (store as ExporterOptionsStore) : null;
}

/** Longest template accepted: every IANA element once, and then some. Longer is hostile. */
export const MAX_TEMPLATE_FIELDS = 1024;
export const VARIABLE_LENGTH = 65535;

// What a field means to a FlowRecord. Anything else is skipped by its length.
const enum Role {
  Skip,
  Src4, Dst4, Src6, Dst6, SrcPort, DstPort, Protocol, TcpFlags,
  OctetDelta, PacketDelta, OctetTotal, PacketTotal, PostOctetDelta, PostPacketDelta,
  StartS, EndS, StartMs, EndMs, StartUs, EndUs, StartNs, EndNs,
  StartSysUp, EndSysUp, SysInitMs, StartDeltaUs, EndDeltaUs,
  SamplingInterval, SamplingPacketInterval, SamplingPacketSpace, IcmpTypeCode,
  Count,
}

// IANA element id → role and the lengths it may have (reduced-size encoding allows fewer bytes).
const ROLES: ReadonlyMap<number, readonly [Role, number, number]> = new Map<number, readonly [Role, number, number]>([
  [8, [Role.Src4, 4, 4]], [12, [Role.Dst4, 4, 4]], [27, [Role.Src6, 16, 16]], [28, [Role.Dst6, 16, 16]],
  [7, [Role.SrcPort, 1, 2]], [11, [Role.DstPort, 1, 2]], [4, [Role.Protocol, 1, 1]], [6, [Role.TcpFlags, 1, 2]],
  [1, [Role.OctetDelta, 1, 8]], [2, [Role.PacketDelta, 1, 8]], [85, [Role.OctetTotal, 1, 8]], [86, [Role.PacketTotal, 1, 8]],
  [23, [Role.PostOctetDelta, 1, 8]], [24, [Role.PostPacketDelta, 1, 8]],
  [150, [Role.StartS, 4, 4]], [151, [Role.EndS, 4, 4]], [152, [Role.StartMs, 8, 8]], [153, [Role.EndMs, 8, 8]],
  [154, [Role.StartUs, 8, 8]], [155, [Role.EndUs, 8, 8]], [156, [Role.StartNs, 8, 8]], [157, [Role.EndNs, 8, 8]],
  [22, [Role.StartSysUp, 1, 8]], [21, [Role.EndSysUp, 1, 8]], [160, [Role.SysInitMs, 8, 8]],
  [158, [Role.StartDeltaUs, 1, 4]], [159, [Role.EndDeltaUs, 1, 4]],
  [34, [Role.SamplingInterval, 1, 4]], [50, [Role.SamplingInterval, 1, 4]],
  [305, [Role.SamplingPacketInterval, 1, 4]], [306, [Role.SamplingPacketSpace, 1, 4]],
  // icmpTypeCodeIPv4/IPv6: type << 8 | code, which NetFlow puts in the destination port.
  [32, [Role.IcmpTypeCode, 2, 2]], [139, [Role.IcmpTypeCode, 2, 2]],
]);

interface Compiled {
  readonly roles: Uint8Array;
  readonly lengths: Uint16Array;
  /** The shortest record: fixed lengths plus one length byte per variable-length field. */
  readonly minLength: number;
  /** Every field has a fixed length: each field sits at one offset in every record, and no walk is needed. */
  readonly fixed: boolean;
  /** The fields that mean something (role not Skip), in template order: role, offset in a fixed-length record, length. */
  readonly useRoles: Uint8Array;
  readonly useOffsets: Int32Array;
  readonly useLengths: Uint16Array;
  /** Records decoded with this template so far, until it gets a generated reader. */
  decoded: number;
  /** The generated reader (see readerFor), null when the layout does not qualify, undefined until tried. */
  reader: SetReader | null | undefined;
  /** Options templates: the last data set decoded with this one, and what it did (see decodeOptionsSet). */
  lastOptions: OptionsMemo | null;
}

interface OptionsMemo {
  readonly exporter: string;
  readonly domain: number;
  /** A copy of the set's bytes (never a view of the datagram, which may be reused; a Buffer's slice() is a view). */
  readonly bytes: Uint8Array;
  readonly records: number;
  /** The exporter's options after the set, and whether the set changed them (then they were stored). */
  readonly options: ExporterOptions;
  readonly stored: boolean;
}

// Compiled once per template object: a refreshed template keeps its object (learnTemplate), so its
// compiled form is built when the template first arrives and reused for every data set after.
const compiledCache = new WeakMap<Template, Compiled>();

function compile(t: Template, variableLength: boolean): Compiled {
  return compiledCache.get(t) ?? compileNew(t, variableLength);
}

// Apart from compile(), which the decoding loop inlines: this runs once per template, as it is learned.
function compileNew(t: Template, variableLength: boolean): Compiled {
  const n = t.fields.length;
  const roles = new Uint8Array(n);
  const lengths = new Uint16Array(n);
  const use: [Role, number, number][] = [];
  let minLength = 0;
  let fixed = true;
  for (let i = 0; i < n; i++) {
    const f = t.fields[i]!;
    lengths[i] = f.length;
    const varlen = variableLength && f.length === VARIABLE_LENGTH;
    const r = f.enterprise === 0 && !varlen ? ROLES.get(f.id) : undefined;
    const role = r !== undefined && f.length >= r[1] && f.length <= r[2] ? r[0] : Role.Skip;
    roles[i] = role;
    if (role !== Role.Skip) use.push([role, minLength, f.length]);
    if (varlen) fixed = false;
    minLength += varlen ? 1 : f.length;
  }
  const c: Compiled = {
    roles, lengths, minLength, fixed,
    useRoles: Uint8Array.from(use, (u) => u[0]),
    useOffsets: Int32Array.from(use, (u) => u[1]),
    useLengths: Uint16Array.from(use, (u) => u[2]),
    decoded: 0,
    reader: undefined,
    lastOptions: null,
  };
  // A layout that already has a reader (every exporter of one make sends the same templates) uses it at
  // once; a new one waits for GENERATE_AFTER_RECORDS records (see decodeDataSet).
  if (!t.isOptions && (fixed || !variableLength)) c.reader = readers.get(layoutKey(c));
  compiledCache.set(t, c);
  return c;
}

/** Whether records of this template take at least one byte (a zero-length record would never end). */
export function templateRecordLength(fields: readonly TemplateField[], variableLength: boolean): number {
  let n = 0;
  for (const f of fields) n += variableLength && f.length === VARIABLE_LENGTH ? 1 : f.length;
  return n;
}

export function sameLayout(a: Template, b: Template): boolean {
  return a.isOptions === b.isOptions && a.scopeCount === b.scopeCount && a.fields.length === b.fields.length
    && a.fields.every((f, i) => {
      const g = b.fields[i]!;
      return f.id === g.id && f.length === g.length && f.enterprise === g.enterprise;
    });
}

/** How times in a record relate to the wall clock, per datagram. */
export interface TimeBase {
  /** Export time of the datagram (header), Unix ms. */
  readonly exportMs: number;
  /** NetFlow v9: the header's sysUptime; FIRST/LAST_SWITCHED are uptimes on the same clock. */
  readonly uptimeMs: number | null;
}

/** Per-datagram state of a data set decode. */
export interface DataContext {
  readonly ctx: DecodeContext;
  readonly domain: number;
  readonly time: TimeBase;
  readonly variableLength: boolean;
  readonly rows: FlowRows;
  readonly errors: ErrorList;
  /** Options announced so far (from the store, then from this datagram's options records). */
  options: ExporterOptions;
  readonly optionsStore: ExporterOptionsStore | null;
}

const NTP_UNIX_OFFSET_S = 2208988800;
const TWO_32 = 4294967296;

// NTP timestamps (dateTimeMicroseconds/Nanoseconds, RFC 7011 §6.1.9): seconds since 1900 and a fraction.
function ntpMs(b: Uint8Array, o: number): number {
  const s = readUint(b, o, 4);
  const frac = readUint(b, o + 4, 4);
  return (s - NTP_UNIX_OFFSET_S) * 1000 + Math.floor((frac * 1000) / TWO_32);
}

// The values of one record by role, NaN when absent; IPv4 addresses as numbers, IPv6 ones as their
// offset in the datagram. Shared by every decode: decoding never re-enters itself.
const raw = new Float64Array(Role.Count);

/**
 * Reads one field into `raw` (lengths were checked against the role when the template was compiled).
 * Small on purpose: the record loop calls it once per field, and it must be inlined there.
 */
function readField(role: Role, b: Uint8Array, p: number, len: number): void {
  let v: number;
  if (len === 4) v = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  else if (len === 2) v = (b[p]! << 8) | b[p + 1]!;
  else if (len === 1) v = b[p]!;
  else if (role === Role.Src6 || role === Role.Dst6) v = p;
  else if (role >= Role.StartUs && role <= Role.EndNs) v = ntpMs(b, p);
  else v = readUint(b, p, len);
  // A template may carry TCP flags twice (one byte and two): they add up.
  raw[role] = role === Role.TcpFlags ? raw[role]! | (v & 0xff) : v;
}

/**
 * A data-set reader generated for one layout: straight-line code that reads each field at its offset
 * with its width and writes n records to `rows`, with no per-field dispatch. Per-set values come in as
 * arguments (NaN for none): what decodeDataSet would take from the header and the exporter's options.
 */
export type SetReader = (b: Uint8Array, o: number, n: number, rows: FlowRows, exporter: string, domain: number,
  exportMs: number, uptimeMs: number, initMs: number, samplingRate: number) => void;

/** Records a template decodes the general way before it gets a reader: layouts seen once or twice (fuzzing, hostile input) never cost a compile. */
export const GENERATE_AFTER_RECORDS = 64;
/** Readers are shared by layout (every exporter of one make sends the same ones), and bounded. */
const MAX_READERS = 256;
const readers = new Map<string, SetReader | null>();

const SAFE = String(MAX_SAFE);

/** JavaScript for the unsigned big-endian integer of `len` bytes at record offset p (readUint's value). */
function uintCode(p: number, len: number): string {
  const at = (k: number): string => `b[o + ${p + k}]`;
  switch (len) {
    case 1: return at(0);
    case 2: return `((${at(0)} << 8) | ${at(1)})`;
    case 3: return `((${at(0)} << 16) | (${at(1)} << 8) | ${at(2)})`;
    // >>> 0: an unsigned 32-bit integer the compiler keeps as one (a multiplication would make a float).
    case 4: return `((${at(0)} << 24 | ${at(1)} << 16 | ${at(2)} << 8 | ${at(3)}) >>> 0)`;
    // Above 2^53 - 1 it clamps, as readUint does (t is a scratch variable of the reader).
    case 8: return `((t = ${uintCode(p, 4)} * 4294967296 + ${uintCode(p + 4, 4)}) > ${SAFE} ? ${SAFE} : t)`;
    default: return `readUint(b, o + ${p}, ${len})`;
  }
}

/**
 * The generated reader for a compiled template, or null when its layout does not qualify: it must be a
 * flow template of fixed-length fields, with both addresses of one family and no field that sets
 * exporter options or a per-record sampling rate (those take the general path). The code reproduces
 * decodeDataSet's general path exactly; the tests compare the two on random layouts.
 */
function generateReader(fields: readonly { role: Role; offset: number; length: number }[], recordLength: number): SetReader | null {
  const last = new Map<Role, { offset: number; length: number }>();
  const flags: string[] = [];
  for (const f of fields) {
    if (f.role === Role.Skip) continue;
    last.set(f.role, f);
    if (f.role === Role.TcpFlags) flags.push(`(${uintCode(f.offset, f.length)} & 255)`);
  }
  const has = (r: Role): boolean => last.has(r);
  for (const r of [Role.SysInitMs, Role.SamplingInterval, Role.SamplingPacketInterval, Role.SamplingPacketSpace]) if (has(r)) return null;
  const v4 = has(Role.Src4) && has(Role.Dst4);
  if (!v4 && !(has(Role.Src6) && has(Role.Dst6))) return null;
  const at = (r: Role): { offset: number; length: number } => last.get(r)!;
  const val = (r: Role, otherwise = 'NaN'): string => (has(r) ? uintCode(at(r).offset, at(r).length) : otherwise);
  const ntp = (r: Role): string => (has(r) ? `ntpMs(b, o + ${at(r).offset})` : 'NaN');
  const firstOf = (rs: Role[]): string => {
    const r = rs.find(has);
    return r === undefined ? '0' : val(r);
  };

  // Times, most precise first, as decodeDataSet chooses them (a field present always has a value).
  let times: string;
  if (has(Role.StartMs) || has(Role.EndMs)) {
    times = `first = ${val(Role.StartMs)}; last = ${val(Role.EndMs)};`;
  } else if (has(Role.StartUs) || has(Role.EndUs)) {
    times = `first = ${ntp(Role.StartUs)}; last = ${ntp(Role.EndUs)};`;
  } else if (has(Role.StartNs) || has(Role.EndNs)) {
    times = `first = ${ntp(Role.StartNs)}; last = ${ntp(Role.EndNs)};`;
  } else if (has(Role.StartS) || has(Role.EndS)) {
    times = `first = ${val(Role.StartS)} * 1000; last = ${val(Role.EndS)} * 1000;`;
  } else if (has(Role.StartSysUp) || has(Role.EndSysUp)) {
    // uptimeAgoMs, inline: the 32-bit counter difference, up to an hour ahead read as clock skew.
    const up = (r: Role): string => (has(r)
      ? `(d = uptimeMs - ${val(r)}, d = d < 0 && d >= -${UPTIME_WRAP} ? d + ${UPTIME_WRAP} : d >= 0 && d < ${UPTIME_WRAP} ? d : ((d % ${UPTIME_WRAP}) + ${UPTIME_WRAP}) % ${UPTIME_WRAP},`
        + ` exportMs - (d > ${UPTIME_WRAP - FUTURE_TOLERANCE_MS} ? d - ${UPTIME_WRAP} : d))`
      : 'NaN');
    times = `if (uptimeMs === uptimeMs) { first = ${up(Role.StartSysUp)}; last = ${up(Role.EndSysUp)}; }`
      + ` else { first = initMs + ${val(Role.StartSysUp)}; last = initMs + ${val(Role.EndSysUp)}; }`;
  } else if (has(Role.StartDeltaUs) || has(Role.EndDeltaUs)) {
    const d = (r: Role): string => (has(r) ? `exportMs - Math.floor(${val(r)} / 1000)` : 'NaN');
    times = `first = ${d(Role.StartDeltaUs)}; last = ${d(Role.EndDeltaUs)};`;
  } else {
    times = 'first = NaN; last = NaN;';
  }
  const protocol = has(Role.Protocol) ? val(Role.Protocol) : '0';
  const dstPort = has(Role.IcmpTypeCode)
    ? `(dstPort === 0 && (protocol === 1 || protocol === 58) ? ${val(Role.IcmpTypeCode)} : dstPort)`
    : 'dstPort';
  const addresses = v4
    ? `${val(Role.Src4)}, ${val(Role.Dst4)}, '', ''`
    : `TEXT, TEXT, ipv6(b, o + ${at(Role.Src6).offset}), ipv6(b, o + ${at(Role.Dst6).offset})`;
  const body = `"use strict";
return function read(b, o, n, rows, exporter, domain, exportMs, uptimeMs, initMs, samplingRate) {
  let t, d;
  for (let k = 0; k < n; k++, o += ${recordLength}) {
    const protocol = ${protocol};
    const dstPort = ${val(Role.DstPort, '0')};
    let first, last;
    ${times}
    if (last !== last) last = first !== first ? exportMs : first;
    if (first !== first) first = last;
    // Unsampled (the usual case), a counter is already a whole number within range: scaled() would return it.
    const bytes = samplingRate === 1 ? ${firstOf([Role.OctetDelta, Role.OctetTotal, Role.PostOctetDelta])} : scaled(${firstOf([Role.OctetDelta, Role.OctetTotal, Role.PostOctetDelta])}, samplingRate);
    const packets = samplingRate === 1 ? ${firstOf([Role.PacketDelta, Role.PacketTotal, Role.PostPacketDelta])} : scaled(${firstOf([Role.PacketDelta, Role.PacketTotal, Role.PostPacketDelta])}, samplingRate);
    rows.push(exporter, domain, ${addresses}, ${val(Role.SrcPort, '0')}, ${dstPort}, protocol,
      ${flags.length > 0 ? `protocol === 6 ? ${flags.join(' | ')} : 0` : '0'},
      bytes, packets,
      first > ${SAFE} ? ${SAFE} : first < -${SAFE} ? -${SAFE} : first, last > ${SAFE} ? ${SAFE} : last < -${SAFE} ? -${SAFE} : last,
      samplingRate);
  }
};`;
  // The source is made of numbers and fixed text only (offsets and lengths from the template), never of
  // bytes from the wire: this is compiling a layout, not evaluating input.
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const make = new Function('readUint', 'ntpMs', 'ipv6', 'scaled', 'TEXT', body) as (...deps: unknown[]) => SetReader;
  return make(readUint, ntpMs, ipv6, scaled, TEXT_ADDRESS);
}

/** The shared reader for a compiled template's layout, or null (general path) when it does not qualify or the cache is full. */
function readerFor(c: Compiled, variableLength: boolean): SetReader | null {
  if (!(c.fixed || !variableLength)) return null;
  const hit = readers.get(layoutKey(c));
  if (hit !== undefined) return hit;
  if (readers.size >= MAX_READERS) return null;
  const r = generateReader(usedFields(c), c.minLength);
  readers.set(layoutKey(c), r);
  return r;
}

function usedFields(c: Compiled): { role: Role; offset: number; length: number }[] {
  return Array.from(c.useRoles, (role, k) => ({ role: role, offset: c.useOffsets[k]!, length: c.useLengths[k]! }));
}

/** What a generated reader depends on: the record length and each used field's role, offset and length. */
function layoutKey(c: Compiled): string {
  return `${c.minLength}|${usedFields(c).map((f) => `${f.role}@${f.offset}/${f.length}`).join(',')}`;
}

/**
 * Decodes the records of one data set [start, end) with its template. Flow records (with both
 * addresses) are appended to dc.rows; options records update dc.options. Returns how many data
 * records the set held. A record that runs past the end stops the set with a 'truncated' error;
 * fewer bytes than the shortest record are padding.
 */
export function decodeDataSet(b: Uint8Array, start: number, end: number, t: Template, dc: DataContext): number {
  const c = compile(t, dc.variableLength);
  if (c.minLength === 0) {
    dc.errors.add('bad-template', `template ${t.id} describes zero-length records`);
    return 0;
  }
  if (t.isOptions && (c.fixed || !dc.variableLength)) return decodeOptionsSet(b, start, end, t, c, dc);
  if (c.reader === undefined && c.decoded >= GENERATE_AFTER_RECORDS && !t.isOptions) c.reader = readerFor(c, dc.variableLength);
  if (c.reader) {
    const records = Math.floor((end - start) / c.minLength);
    const o = dc.options;
    c.reader(b, start, records, dc.rows, dc.ctx.exporter, dc.domain, dc.time.exportMs, dc.time.uptimeMs ?? NaN, o.systemInitMs ?? NaN, o.samplingRate ?? 1);
    return records;
  }
  return decodeGeneral(b, start, end, t, c, dc);
}

/**
 * An options data set of fixed-length records. Exporters resend their options (system init time,
 * sampling) with every template refresh, almost always unchanged: when the set's bytes are those of the
 * last one and the exporter's options are still what that one left, decoding it again would store equal
 * options again, so they are only stored again (refreshed) and the general path is not run.
 */
/** Options sets up to this size are remembered to skip decoding them again when resent unchanged. */
const MAX_REMEMBERED_OPTIONS_BYTES = 512;

function decodeOptionsSet(b: Uint8Array, start: number, end: number, t: Template, c: Compiled, dc: DataContext): number {
  const m = c.lastOptions;
  if (m !== null && dc.options === m.options && m.exporter === dc.ctx.exporter && m.domain === dc.domain && sameBytes(b, start, end, m.bytes)) {
    if (m.stored) dc.optionsStore?.setOptions(dc.ctx.exporter, dc.domain, dc.options, dc.ctx.nowMs);
    c.decoded += m.records;
    return m.records;
  }
  const before = dc.options;
  const records = decodeGeneral(b, start, end, t, c, dc);
  // Real options sets are tens of bytes; a big one is not remembered, so templates (bounded in number)
  // cannot pin a copy of up to 64 KiB each.
  c.lastOptions = end - start > MAX_REMEMBERED_OPTIONS_BYTES ? null
    : { exporter: dc.ctx.exporter, domain: dc.domain, bytes: new Uint8Array(b.subarray(start, end)), records, options: dc.options, stored: dc.options !== before };
  return records;
}

function sameBytes(b: Uint8Array, start: number, end: number, kept: Uint8Array): boolean {
  if (end - start !== kept.length) return false;
  for (let i = 0; i < kept.length; i++) if (b[start + i] !== kept[i]) return false;
  return true;
}

/**
 * For tests: decodes a data set by one path only, the general one or a reader generated for the layout
 * on the spot (outside the shared cache). Null when the layout does not qualify for a reader.
 */
export function decodeDataSetBy(path: 'general' | 'generated', b: Uint8Array, start: number, end: number, t: Template, dc: DataContext): number | null {
  const c = compile(t, dc.variableLength);
  if (path === 'general') return decodeGeneral(b, start, end, t, c, dc);
  if (t.isOptions || c.minLength === 0 || !(c.fixed || !dc.variableLength)) return null;
  const reader = generateReader(Array.from(c.useRoles, (role, k) => ({ role: role, offset: c.useOffsets[k]!, length: c.useLengths[k]! })), c.minLength);
  if (reader === null) return null;
  const records = Math.floor((end - start) / c.minLength);
  const o = dc.options;
  reader(b, start, records, dc.rows, dc.ctx.exporter, dc.domain, dc.time.exportMs, dc.time.uptimeMs ?? NaN, o.systemInitMs ?? NaN, o.samplingRate ?? 1);
  return records;
}

/** decodeDataSet the general way: any layout, one field at a time. */
function decodeGeneral(b: Uint8Array, start: number, end: number, t: Template, c: Compiled, dc: DataContext): number {
  const n = c.roles.length;
  const fixed = c.fixed || !dc.variableLength;
  const { useRoles, useOffsets, useLengths, minLength } = c;
  const nUse = useRoles.length;
  const exporter = dc.ctx.exporter;
  const exportMs = dc.time.exportMs;
  const rows = dc.rows;
  let o = start;
  let count = 0;
  // Every record of a template sets the same roles: the others stay NaN for the whole set.
  raw.fill(NaN);
  while (end - o >= minLength) {
    raw[Role.TcpFlags] = 0;
    if (fixed) {
      for (let k = 0; k < nUse; k++) readField(useRoles[k]!, b, o + useOffsets[k]!, useLengths[k]!);
      o += minLength;
    } else {
      let broken = false;
      for (let i = 0; i < n; i++) {
        let len = c.lengths[i]!;
        if (len === VARIABLE_LENGTH) {
          // RFC 7011 §7: one length byte, or 255 and two more.
          if (o + 1 > end) {
            broken = true;
            break;
          }
          len = b[o]!;
          o += 1;
          if (len === 255) {
            if (o + 2 > end) {
              broken = true;
              break;
            }
            len = (b[o]! << 8) | b[o + 1]!;
            o += 2;
          }
        }
        if (o + len > end) {
          broken = true;
          break;
        }
        const role = c.roles[i]! as Role;
        if (role !== Role.Skip) readField(role, b, o, len);
        o += len;
      }
      if (broken) {
        dc.errors.add('truncated', `a record of template ${t.id} runs past the end of its set`);
        break;
      }
    }
    const src4 = raw[Role.Src4]!, dst4 = raw[Role.Dst4]!, src6 = raw[Role.Src6]!, dst6 = raw[Role.Dst6]!;
    const srcPort = raw[Role.SrcPort]!, tcpFlags = raw[Role.TcpFlags], icmp = raw[Role.IcmpTypeCode]!;
    let dstPort = raw[Role.DstPort]!, protocol = raw[Role.Protocol]!;
    const octets = raw[Role.OctetDelta]!, packets = raw[Role.PacketDelta]!, octetsTotal = raw[Role.OctetTotal]!, packetsTotal = raw[Role.PacketTotal]!;
    const postOctets = raw[Role.PostOctetDelta]!, postPackets = raw[Role.PostPacketDelta]!;
    const firstMs = raw[Role.StartMs]!, lastMs = raw[Role.EndMs]!, sysInit = raw[Role.SysInitMs]!;
    const sampling = raw[Role.SamplingInterval]!, pktInterval = raw[Role.SamplingPacketInterval]!, pktSpace = raw[Role.SamplingPacketSpace]!;
    count++;

    // Sampling: samplingPacketInterval selects N packets out of every N + samplingPacketSpace.
    let rate = sampling;
    if (!(rate > 0) && pktInterval > 0) rate = pktSpace > 0 ? (pktInterval + pktSpace) / pktInterval : pktInterval;
    const hasRate = rate > 0;

    // A flow needs both ends in one family.
    const useV4 = src4 >= 0 && dst4 >= 0;
    if (t.isOptions || (!useV4 && !(src6 >= 0 && dst6 >= 0))) {
      // Not a flow. Options records (and data records that carry them) set exporter-wide values.
      if (sysInit >= 0 || hasRate) {
        const next: ExporterOptions = {
          ...dc.options,
          ...(sysInit >= 0 ? { systemInitMs: sysInit } : {}),
          ...(hasRate ? { samplingRate: rate } : {}),
        };
        dc.options = next;
        dc.optionsStore?.setOptions(exporter, dc.domain, next, dc.ctx.nowMs);
      }
      continue;
    }

    const samplingRate = hasRate ? rate : (dc.options.samplingRate ?? 1);
    const bytes = octets >= 0 ? octets : octetsTotal >= 0 ? octetsTotal : postOctets >= 0 ? postOctets : 0;
    const pkts = packets >= 0 ? packets : packetsTotal >= 0 ? packetsTotal : postPackets >= 0 ? postPackets : 0;

    // Times, most precise first.
    let first = NaN;
    let last = NaN;
    if (firstMs >= 0 || lastMs >= 0) {
      first = firstMs;
      last = lastMs;
    } else {
      otherTimes(dc, sysInit);
      first = times[0]!;
      last = times[1]!;
    }
    if (Number.isNaN(last)) last = Number.isNaN(first) ? exportMs : first;
    if (Number.isNaN(first)) first = last;

    if (!(protocol >= 0)) protocol = 0;
    if (!(dstPort >= 0)) dstPort = 0;
    rows.push(
      exporter, dc.domain,
      useV4 ? src4 : TEXT_ADDRESS, useV4 ? dst4 : TEXT_ADDRESS,
      useV4 ? '' : ipv6(b, src6), useV4 ? '' : ipv6(b, dst6),
      srcPort >= 0 ? srcPort : 0,
      dstPort === 0 && icmp >= 0 && (protocol === 1 || protocol === 58) ? icmp : dstPort,
      protocol,
      protocol === 6 ? tcpFlags : 0,
      scaled(bytes, samplingRate), scaled(pkts, samplingRate),
      clampTime(first), clampTime(last), samplingRate,
    );
  }
  c.decoded += count;
  return count;
}

const times = new Float64Array(2);

/** Flow times into `times` from the fields other than flowStart/EndMilliseconds, most precise first; NaN when none. */
function otherTimes(dc: DataContext, sysInit: number): void {
  const exportMs = dc.time.exportMs;
  const firstUs = raw[Role.StartUs]!, lastUs = raw[Role.EndUs]!, firstNs = raw[Role.StartNs]!, lastNs = raw[Role.EndNs]!;
  const firstS = raw[Role.StartS]!, lastS = raw[Role.EndS]!, firstUp = raw[Role.StartSysUp]!, lastUp = raw[Role.EndSysUp]!;
  const firstDelta = raw[Role.StartDeltaUs]!, lastDelta = raw[Role.EndDeltaUs]!;
  let first = NaN;
  let last = NaN;
  if (!Number.isNaN(firstUs) || !Number.isNaN(lastUs)) {
    first = firstUs;
    last = lastUs;
  } else if (!Number.isNaN(firstNs) || !Number.isNaN(lastNs)) {
    first = firstNs;
    last = lastNs;
  } else if (firstS >= 0 || lastS >= 0) {
    first = firstS * 1000;
    last = lastS * 1000;
  } else if (firstUp >= 0 || lastUp >= 0) {
    const up = dc.time.uptimeMs;
    if (up !== null) {
      first = exportMs - uptimeAgoMs(up, firstUp);
      last = exportMs - uptimeAgoMs(up, lastUp);
    } else {
      const init = sysInit >= 0 ? sysInit : dc.options.systemInitMs;
      if (init !== undefined) {
        first = init + firstUp;
        last = init + lastUp;
      }
    }
  } else if (firstDelta >= 0 || lastDelta >= 0) {
    first = exportMs - Math.floor(firstDelta / 1000);
    last = exportMs - Math.floor(lastDelta / 1000);
  }
  times[0] = first;
  times[1] = last;
}

const UPTIME_WRAP = 4294967296;
const FUTURE_TOLERANCE_MS = 3_600_000;

/**
 * How long before the header's uptime another uptime was (NetFlow v5/v9 FIRST/LAST_SWITCHED), on the
 * 32-bit millisecond counter: modulo 2^32, so a counter that wrapped (every 49.7 days) still gives the
 * right answer, except that up to an hour "after" the header is read as clock skew, not 49 days ago.
 */
export function uptimeAgoMs(headerUptimeMs: number, uptimeMs: number): number {
  let d = headerUptimeMs - uptimeMs;
  // Both are 32-bit counters almost always: one addition instead of two floating-point remainders.
  if (d < 0 && d >= -UPTIME_WRAP) d += UPTIME_WRAP;
  else if (!(d >= 0 && d < UPTIME_WRAP)) d = ((d % UPTIME_WRAP) + UPTIME_WRAP) % UPTIME_WRAP;
  return d > UPTIME_WRAP - FUTURE_TOLERANCE_MS ? d - UPTIME_WRAP : d;
}

function clampTime(ms: number): number {
  return ms > MAX_SAFE ? MAX_SAFE : ms < -MAX_SAFE ? -MAX_SAFE : ms;
}

/**
 * Where the field specifiers of a template record end, when they describe exactly `held` (the template
 * already kept under the record's id), or -1. Exporters resend every template every few seconds, almost
 * always unchanged: comparing the bytes spares building and storing a new template each time (and keeps
 * the work of parsing one out of the hot path). The specifiers start at `o`; `end` bounds them; IPFIX
 * specifiers may carry an enterprise number (variableLength), NetFlow v9 ones never.
 */
export function sameTemplateAt(b: Uint8Array, o: number, end: number, held: Template, fieldCount: number, scopeCount: number,
  isOptions: boolean, variableLength: boolean): number {
  if (held.fields.length !== fieldCount || held.scopeCount !== scopeCount || held.isOptions !== isOptions) return -1;
  for (let i = 0; i < fieldCount; i++) {
    const f = held.fields[i]!;
    if (end - o < 4) return -1;
    const raw = (b[o]! << 8) | b[o + 1]!;
    if (((b[o + 2]! << 8) | b[o + 3]!) !== f.length) return -1;
    o += 4;
    if (variableLength && (raw & 0x8000) !== 0) {
      if (end - o < 4 || (raw & 0x7fff) !== f.id || f.enterprise !== b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!)) return -1;
      o += 4;
    } else if (raw !== f.id || f.enterprise !== 0) {
      return -1;
    }
  }
  return o;
}

/** Stores a learned template, reporting a reused id with a new layout. Returns 1 (learned). */
export function learnTemplate(dc: { ctx: DecodeContext; domain: number; errors: ErrorList; variableLength: boolean }, t: Template): number {
  // A refreshed template keeps its object, so its compiled form stays cached.
  const old = dc.ctx.templates.get(dc.ctx.exporter, dc.domain, t.id);
  const kept = old !== undefined && sameLayout(old, t) ? old : t;
  // Compiled now, while learning: the data path then always finds it (see compile()).
  compile(kept, dc.variableLength);
  const r = dc.ctx.templates.set(dc.ctx.exporter, dc.domain, kept, dc.ctx.nowMs);
  if (r === 'changed') dc.errors.add('template-changed', `template ${t.id} of domain ${dc.domain} now has a new layout`);
  return 1;
}
