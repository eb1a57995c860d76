// Data records described by templates, shared by IPFIX (RFC 7011) and NetFlow v9 (RFC 3954): the two
// number their common information elements alike (1–127), so one mapping serves both.

import type { DecodeContext, FlowRecord, Template, TemplateField, TemplateStore } from '../flow.js';
import { ErrorList, ipv4, ipv6, MAX_SAFE, readUint, scaled } from './wire.js';

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
}

const compiledCache = new WeakMap<Template, Compiled>();

function compile(t: Template, variableLength: boolean): Compiled {
  const hit = compiledCache.get(t);
  if (hit !== undefined) return hit;
  const n = t.fields.length;
  const roles = new Uint8Array(n);
  const lengths = new Uint16Array(n);
  let minLength = 0;
  for (let i = 0; i < n; i++) {
    const f = t.fields[i]!;
    lengths[i] = f.length;
    const varlen = variableLength && f.length === VARIABLE_LENGTH;
    minLength += varlen ? 1 : f.length;
    const r = f.enterprise === 0 && !varlen ? ROLES.get(f.id) : undefined;
    roles[i] = r !== undefined && f.length >= r[1] && f.length <= r[2] ? r[0] : Role.Skip;
  }
  const c: Compiled = { roles, lengths, minLength };
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
  readonly records: FlowRecord[];
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

/**
 * Decodes the records of one data set [start, end) with its template. Flow records (with both
 * addresses) are appended to dc.records; options records update dc.options. Returns how many data
 * records the set held. A record that runs past the end stops the set with a 'truncated' error;
 * fewer bytes than the shortest record are padding.
 */
export function decodeDataSet(b: Uint8Array, start: number, end: number, t: Template, dc: DataContext): number {
  const c = compile(t, dc.variableLength);
  if (c.minLength === 0) {
    dc.errors.add('bad-template', `template ${t.id} describes zero-length records`);
    return 0;
  }
  const n = c.roles.length;
  let o = start;
  let count = 0;
  while (end - o >= c.minLength) {
    // Per-record values, NaN when absent.
    let src = '';
    let dst = '';
    let src6 = '';
    let dst6 = '';
    let srcPort = 0;
    let dstPort = 0;
    let protocol = 0;
    let tcpFlags = 0;
    let octets = NaN;
    let packets = NaN;
    let octetsTotal = NaN;
    let packetsTotal = NaN;
    let postOctets = NaN;
    let postPackets = NaN;
    let firstMs = NaN;
    let lastMs = NaN;
    let firstUs = NaN;
    let lastUs = NaN;
    let firstNs = NaN;
    let lastNs = NaN;
    let firstS = NaN;
    let lastS = NaN;
    let firstUp = NaN;
    let lastUp = NaN;
    let sysInit = NaN;
    let firstDelta = NaN;
    let lastDelta = NaN;
    let sampling = NaN;
    let pktInterval = NaN;
    let pktSpace = NaN;
    let icmp = NaN;
    let broken = false;
    for (let i = 0; i < n; i++) {
      let len = c.lengths[i]!;
      if (dc.variableLength && len === VARIABLE_LENGTH) {
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
      switch (c.roles[i]! as Role) {
        case Role.Skip: break;
        case Role.Src4: src = ipv4(b, o); break;
        case Role.Dst4: dst = ipv4(b, o); break;
        case Role.Src6: src6 = ipv6(b, o); break;
        case Role.Dst6: dst6 = ipv6(b, o); break;
        case Role.SrcPort: srcPort = readUint(b, o, len); break;
        case Role.DstPort: dstPort = readUint(b, o, len); break;
        case Role.Protocol: protocol = b[o]!; break;
        case Role.TcpFlags: tcpFlags |= readUint(b, o, len) & 0xff; break;
        case Role.OctetDelta: octets = readUint(b, o, len); break;
        case Role.PacketDelta: packets = readUint(b, o, len); break;
        case Role.OctetTotal: octetsTotal = readUint(b, o, len); break;
        case Role.PacketTotal: packetsTotal = readUint(b, o, len); break;
        case Role.PostOctetDelta: postOctets = readUint(b, o, len); break;
        case Role.PostPacketDelta: postPackets = readUint(b, o, len); break;
        case Role.StartS: firstS = readUint(b, o, 4); break;
        case Role.EndS: lastS = readUint(b, o, 4); break;
        case Role.StartMs: firstMs = readUint(b, o, 8); break;
        case Role.EndMs: lastMs = readUint(b, o, 8); break;
        case Role.StartUs: firstUs = ntpMs(b, o); break;
        case Role.EndUs: lastUs = ntpMs(b, o); break;
        case Role.StartNs: firstNs = ntpMs(b, o); break;
        case Role.EndNs: lastNs = ntpMs(b, o); break;
        case Role.StartSysUp: firstUp = readUint(b, o, len); break;
        case Role.EndSysUp: lastUp = readUint(b, o, len); break;
        case Role.SysInitMs: sysInit = readUint(b, o, 8); break;
        case Role.StartDeltaUs: firstDelta = readUint(b, o, len); break;
        case Role.EndDeltaUs: lastDelta = readUint(b, o, len); break;
        case Role.SamplingInterval: sampling = readUint(b, o, len); break;
        case Role.SamplingPacketInterval: pktInterval = readUint(b, o, len); break;
        case Role.SamplingPacketSpace: pktSpace = readUint(b, o, len); break;
        case Role.IcmpTypeCode: icmp = readUint(b, o, 2); break;
      }
      o += len;
    }
    if (broken) {
      dc.errors.add('truncated', `a record of template ${t.id} runs past the end of its set`);
      break;
    }
    count++;

    // Sampling: samplingPacketInterval selects N packets out of every N + samplingPacketSpace.
    let rate = sampling;
    if (!(rate > 0) && pktInterval > 0) rate = pktSpace > 0 ? (pktInterval + pktSpace) / pktInterval : pktInterval;
    const hasRate = rate > 0;

    // A flow needs both ends in one family.
    const useV4 = src !== '' && dst !== '';
    if (t.isOptions || (!useV4 && (src6 === '' || dst6 === ''))) {
      // Not a flow. Options records (and data records that carry them) set exporter-wide values.
      if (sysInit >= 0 || hasRate) {
        const next: ExporterOptions = {
          ...dc.options,
          ...(sysInit >= 0 ? { systemInitMs: sysInit } : {}),
          ...(hasRate ? { samplingRate: rate } : {}),
        };
        dc.options = next;
        dc.optionsStore?.setOptions(dc.ctx.exporter, dc.domain, next, dc.ctx.nowMs);
      }
      continue;
    }

    const samplingRate = hasRate ? rate : (dc.options.samplingRate ?? 1);
    const bytes = !Number.isNaN(octets) ? octets : !Number.isNaN(octetsTotal) ? octetsTotal : !Number.isNaN(postOctets) ? postOctets : 0;
    const pkts = !Number.isNaN(packets) ? packets : !Number.isNaN(packetsTotal) ? packetsTotal : !Number.isNaN(postPackets) ? postPackets : 0;

    // Times, most precise first.
    let first = NaN;
    let last = NaN;
    const exportMs = dc.time.exportMs;
    if (!Number.isNaN(firstMs) || !Number.isNaN(lastMs)) {
      first = firstMs;
      last = lastMs;
    } else if (!Number.isNaN(firstUs) || !Number.isNaN(lastUs)) {
      first = firstUs;
      last = lastUs;
    } else if (!Number.isNaN(firstNs) || !Number.isNaN(lastNs)) {
      first = firstNs;
      last = lastNs;
    } else if (!Number.isNaN(firstS) || !Number.isNaN(lastS)) {
      first = firstS * 1000;
      last = lastS * 1000;
    } else if (!Number.isNaN(firstUp) || !Number.isNaN(lastUp)) {
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
    } else if (!Number.isNaN(firstDelta) || !Number.isNaN(lastDelta)) {
      first = exportMs - Math.floor(firstDelta / 1000);
      last = exportMs - Math.floor(lastDelta / 1000);
    }
    if (Number.isNaN(last)) last = Number.isNaN(first) ? exportMs : first;
    if (Number.isNaN(first)) first = last;

    dc.records.push({
      exporter: dc.ctx.exporter,
      domain: dc.domain,
      srcAddr: useV4 ? src : src6,
      dstAddr: useV4 ? dst : dst6,
      srcPort,
      dstPort: dstPort === 0 && icmp >= 0 && (protocol === 1 || protocol === 58) ? icmp : dstPort,
      protocol,
      bytes: scaled(bytes, samplingRate),
      packets: scaled(pkts, samplingRate),
      firstMs: clampTime(first),
      lastMs: clampTime(last),
      tcpFlags: protocol === 6 ? tcpFlags : 0,
      samplingRate,
    });
  }
  return count;
}

const UPTIME_WRAP = 4294967296;
const FUTURE_TOLERANCE_MS = 3_600_000;

/**
 * How long before the header's uptime another uptime was (NetFlow v5/v9 FIRST/LAST_SWITCHED), on the
 * 32-bit millisecond counter: modulo 2^32, so a counter that wrapped (every 49.7 days) still gives the
 * right answer, except that up to an hour "after" the header is read as clock skew, not 49 days ago.
 */
export function uptimeAgoMs(headerUptimeMs: number, uptimeMs: number): number {
  const d = (((headerUptimeMs - uptimeMs) % UPTIME_WRAP) + UPTIME_WRAP) % UPTIME_WRAP;
  return d > UPTIME_WRAP - FUTURE_TOLERANCE_MS ? d - UPTIME_WRAP : d;
}

function clampTime(ms: number): number {
  return ms > MAX_SAFE ? MAX_SAFE : ms < -MAX_SAFE ? -MAX_SAFE : ms;
}

/** Stores a learned template, reporting a reused id with a new layout. Returns 1 (learned). */
export function learnTemplate(dc: { ctx: DecodeContext; domain: number; errors: ErrorList }, t: Template): number {
  // A refreshed template keeps its object, so its compiled form stays cached.
  const old = dc.ctx.templates.get(dc.ctx.exporter, dc.domain, t.id);
  const r = dc.ctx.templates.set(dc.ctx.exporter, dc.domain, old !== undefined && sameLayout(old, t) ? old : t, dc.ctx.nowMs);
  if (r === 'changed') dc.errors.add('template-changed', `template ${t.id} of domain ${dc.domain} now has a new layout`);
  return 1;
}
