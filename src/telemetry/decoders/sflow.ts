// sFlow version 5 datagram decoder (sflow_version_5.txt): flow samples with raw packet headers become
// one FlowRecord each, scaled by the sampling rate; generic interface counters become InterfaceCounters.
// Samples and records of other formats are skipped by their length.

import type { DecodeContext, DecodeSummary, FlowDecoder } from '../flow.js';
import type { FlowRows } from '../flow-rows.js';
import { parseEthernet, parseIpv4, parseIpv6, type PacketSummary } from './packet.js';
import { emptyParts, finish, makeDecoder, readUint, type ResultParts, scaled, u32 } from './wire.js';

const FLOW_SAMPLE = 1;
const COUNTERS_SAMPLE = 2;
const EXPANDED_FLOW_SAMPLE = 3;
const EXPANDED_COUNTERS_SAMPLE = 4;
const RAW_PACKET_HEADER = 1;
const GENERIC_INTERFACE_COUNTERS = 1;
const GENERIC_INTERFACE_COUNTERS_LENGTH = 88;
const HEADER_ETHERNET = 1;
const HEADER_IPV4 = 11;
const HEADER_IPV6 = 12;

export const sflowDecoder: FlowDecoder = makeDecoder('sflow5', (d) => d.length >= 4 && u32(d, 0) === 5, decodeSflow);

/** XDR pads opaque data to 4 bytes. */
function padded(n: number): number {
  return (n + 3) & ~3;
}

interface Datagram {
  readonly ctx: DecodeContext;
  readonly domain: number;
  readonly p: ResultParts;
}

function decodeSflow(b: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary {
  const p = emptyParts('datagram', rows);
  if (b.length < 8) {
    p.errors.add('truncated', `${b.length} bytes is shorter than an sFlow header`);
    return finish(p);
  }
  const version = u32(b, 0);
  if (version !== 5) {
    p.errors.add('bad-version', `version ${version} is not sFlow 5`);
    return finish(p);
  }
  const addressType = u32(b, 4);
  const addressLength = addressType === 1 ? 4 : addressType === 2 ? 16 : -1;
  if (addressLength < 0) {
    p.errors.add('unsupported', `agent address type ${addressType} is neither IPv4 (1) nor IPv6 (2)`);
    return finish(p);
  }
  let o = 8 + addressLength;
  if (b.length < o + 16) {
    p.errors.add('truncated', `${b.length} bytes is shorter than the sFlow header`);
    return finish(p);
  }
  const domain = u32(b, o);
  p.domain = domain;
  p.sequence = u32(b, o + 4);
  // o + 8: agent uptime, which cannot place samples on the wall clock: they get the arrival time.
  const samples = u32(b, o + 12);
  p.recordsInDatagram = samples;
  o += 16;
  const dg: Datagram = { ctx, domain, p };

  let seen = 0;
  const end = b.length;
  while (seen < samples && o < end) {
    if (end - o < 8) {
      p.errors.add('truncated', `sample ${seen} of ${samples} ends in its header`);
      return finish(p);
    }
    const format = u32(b, o);
    const length = u32(b, o + 4);
    const body = o + 8;
    if (length > end - body) {
      p.errors.add('truncated', `sample ${seen} of ${length} bytes runs past the end of the datagram`);
      return finish(p);
    }
    const sampleEnd = body + length;
    if (format >>> 12 === 0) {
      switch (format & 0xfff) {
        case FLOW_SAMPLE: flowSample(b, body, sampleEnd, false, dg); break;
        case EXPANDED_FLOW_SAMPLE: flowSample(b, body, sampleEnd, true, dg); break;
        case COUNTERS_SAMPLE: countersSample(b, body, sampleEnd, false, dg); break;
        case EXPANDED_COUNTERS_SAMPLE: countersSample(b, body, sampleEnd, true, dg); break;
        default: break;
      }
    }
    o = body + padded(length);
    seen++;
  }
  if (seen < samples) {
    p.errors.add('truncated', `header counts ${samples} samples, the datagram holds ${seen}`);
  } else if (o < end) {
    p.errors.add('bad-length', `${end - o} bytes after the last of ${samples} samples`);
  }
  return finish(p);
}

function flowSample(b: Uint8Array, start: number, end: number, expanded: boolean, dg: Datagram): void {
  const fixed = expanded ? 44 : 32;
  if (end - start < fixed) {
    dg.p.errors.add('bad-length', `flow sample of ${end - start} bytes, shorter than its ${fixed}-byte header`);
    return;
  }
  const rate = u32(b, start + (expanded ? 12 : 8)) || 1;
  // One record per sample becomes a flow: stop at the raw header that made it.
  eachRecord(b, start, fixed, end, 'flow', dg, (format, body, length) => format === RAW_PACKET_HEADER && rawHeader(b, body, body + length, rate, dg));
}

/**
 * Walks a sample's records (format, length, body), each framed by its own length: those that fit are
 * handed to `visit` (which returns true to stop), the rest counted as errors.
 */
function eachRecord(b: Uint8Array, start: number, fixed: number, end: number, kind: 'flow' | 'counter', dg: Datagram,
  visit: (format: number, body: number, length: number) => boolean): void {
  let records = u32(b, start + fixed - 4);
  let o = start + fixed;
  if (records * 8 > end - o) {
    // Records frame themselves: decode those that fit.
    dg.p.errors.add('bad-field-count', `${records} records cannot fit in a sample of ${end - start} bytes`);
    records = Math.floor((end - o) / 8);
  }
  for (let i = 0; i < records; i++) {
    if (end - o < 8) {
      dg.p.errors.add('bad-length', `${kind} record ${i} of ${records} runs past the end of its sample`);
      return;
    }
    const format = u32(b, o);
    const length = u32(b, o + 4);
    const body = o + 8;
    if (length > end - body) {
      dg.p.errors.add('bad-length', `${kind} record ${i} of ${length} bytes runs past the end of its sample`);
      return;
    }
    if (visit(format, body, length)) return;
    o = body + padded(length);
  }
}

/** One record per sample: true once the sample's packet has become a FlowRecord. */
function rawHeader(b: Uint8Array, start: number, end: number, rate: number, dg: Datagram): boolean {
  if (end - start < 16) {
    dg.p.errors.add('bad-length', 'raw packet header record shorter than 16 bytes');
    return false;
  }
  const protocol = u32(b, start);
  const frameLength = u32(b, start + 4);
  const headerLength = u32(b, start + 12);
  const h = start + 16;
  if (headerLength > end - h) {
    dg.p.errors.add('bad-length', `sampled header of ${headerLength} bytes in a record of ${end - start}`);
    return false;
  }
  let pkt: PacketSummary | null = null;
  if (protocol === HEADER_ETHERNET) pkt = parseEthernet(b, h, h + headerLength);
  else if (protocol === HEADER_IPV4) pkt = parseIpv4(b, h, h + headerLength);
  else if (protocol === HEADER_IPV6) pkt = parseIpv6(b, h, h + headerLength);
  if (pkt === null) return false;
  const nowMs = dg.ctx.nowMs;
  dg.p.rows.pushRecord({
    exporter: dg.ctx.exporter,
    domain: dg.domain,
    srcAddr: pkt.srcAddr,
    dstAddr: pkt.dstAddr,
    srcPort: pkt.srcPort,
    dstPort: pkt.dstPort,
    protocol: pkt.protocol,
    bytes: scaled(frameLength, rate),
    packets: rate,
    firstMs: nowMs,
    lastMs: nowMs,
    tcpFlags: pkt.tcpFlags,
    samplingRate: rate,
  });
  return true;
}

function countersSample(b: Uint8Array, start: number, end: number, expanded: boolean, dg: Datagram): void {
  const fixed = expanded ? 16 : 12;
  if (end - start < fixed) {
    dg.p.errors.add('bad-length', `counters sample of ${end - start} bytes, shorter than its ${fixed}-byte header`);
    return;
  }
  eachRecord(b, start, fixed, end, 'counter', dg, (format, body, length) => {
    if (format !== GENERIC_INTERFACE_COUNTERS) return false;
    if (length < GENERIC_INTERFACE_COUNTERS_LENGTH) {
      dg.p.errors.add('bad-length', `generic interface counters of ${length} bytes, not ${GENERIC_INTERFACE_COUNTERS_LENGTH}`);
      return false;
    }
    dg.p.counters.push({
      exporter: dg.ctx.exporter,
      ifIndex: u32(b, body),
      inOctets: readUint(b, body + 24, 8),
      inPackets: u32(b, body + 32) + u32(b, body + 36) + u32(b, body + 40),
      outOctets: readUint(b, body + 56, 8),
      outPackets: u32(b, body + 64) + u32(b, body + 68) + u32(b, body + 72),
      atMs: dg.ctx.nowMs,
    });
    return false;
  });
}
