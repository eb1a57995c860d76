// Features of one VM's traffic in one window, from flow records only (no payloads).
//
// Records are grouped into conversations with remote peers: same remote address, protocol and the
// two ports, both directions paired. "Out" is always VM → remote, "in" remote → VM.
// Pure: no I/O, and the same records in any order give the same features.

import type { FlowRecord } from '../telemetry/flow.js';
import {
  DEFAULT_SIGNATURES, portPrior, WEB_PORTS, type ConversationMetric, type FeatureParams, type PortPrior,
} from './signatures.js';

export type VmRole = 'client' | 'server' | 'peer';

/** Volumes each way, from the VM's side ("out" = sent by the VM). */
export interface Volumes {
  readonly records: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly packetsIn: number;
  readonly meanPacketOutBytes: number;
  readonly meanPacketInBytes: number;
}

export interface ConversationFeatures extends Volumes {
  /** `remote|protocol|vmPort|remotePort`, stable across windows. */
  readonly key: string;
  readonly remoteAddr: string;
  readonly protocol: number;
  readonly vmPort: number;
  readonly remotePort: number;
  /** Which end listens: inferred from the ports (flow exporters stamp both directions alike). */
  readonly vmRole: VmRole;
  /** The listening side's port (the remote's when the roles are unknown). */
  readonly servicePort: number;
  readonly firstMs: number;
  readonly lastMs: number;
  readonly durationMs: number;
  /** Rates over max(durationMs, minRateSpanMs). */
  readonly packetsPerSecOut: number;
  readonly packetsPerSecIn: number;
  readonly bitsPerSecOut: number;
  readonly bitsPerSecIn: number;
  /** bytesOut / (bytesOut + bytesIn): 0 = pure download, 1 = pure upload. */
  readonly uploadShare: number;
  /** bytesOut / bytesIn (upload/download ratio); Infinity when nothing came in. */
  readonly uploadDownloadRatio: number;
  /** Packets of the quieter direction / packets of the busier one, 0..1. */
  readonly twoWayRatio: number;
  /** 0..1: both directions active with small packets at a steady rate. */
  readonly interactivity: number;
  /** The port prior row matching the service port, if any. */
  readonly portPrior: PortPrior | undefined;
}

export interface VmFeatures extends Volumes {
  readonly vmIp: string;
  readonly windowStartMs: number;
  readonly windowEndMs: number;
  readonly windowMs: number;
  /** Conversations, busiest (by packets, then bytes) first. */
  readonly conversations: readonly ConversationFeatures[];
  /** Over the window. */
  readonly bitsPerSecOut: number;
  readonly bitsPerSecIn: number;
  readonly packetsPerSecOut: number;
  readonly packetsPerSecIn: number;
  readonly uploadShare: number;
  readonly distinctPeers: number;
  /** Share of the VM's bytes carried over UDP. */
  readonly udpByteShare: number;
  /** Packet-weighted mean interactivity of the conversations. */
  readonly interactivity: number;
  /** Fraction of the window with at least one conversation active (1 = continuous). */
  readonly activeFraction: number;
  /**
   * Burstiness as far as flow records allow: 1 − activeFraction, i.e. how much of the window the VM
   * is silent between bursts (0 = steady, → 1 = short bursts in a long silence).
   */
  readonly burstiness: number;
  /** Coefficient of variation of the gaps between conversation starts (0 = periodic polling). */
  readonly startGapCv: number;
}

export const DEFAULT_FEATURE_PARAMS: FeatureParams = DEFAULT_SIGNATURES;

/** 0 at `lo`, 1 at `hi`, linear between; reversed when lo > hi. */
export function ramp(x: number, r: { readonly lo: number; readonly hi: number }): number {
  if (Number.isNaN(x)) return 0;
  if (r.lo === r.hi) return x >= r.hi ? 1 : 0;
  const t = (x - r.lo) / (r.hi - r.lo);
  return t <= 0 ? 0 : t >= 1 ? 1 : t;
}

const EPHEMERAL_FROM = 32768;

/**
 * Which end of a conversation listens. Exporters give both directions of a flow the same timestamps,
 * so the ports decide: a registered service port (the prior table or a web port) first, then a privileged port
 * (< 1024), then the one outside the ephemeral range; otherwise neither ('peer').
 */
export function inferRole(vmPort: number, remotePort: number, protocol: number, ports: readonly PortPrior[]): VmRole {
  if (protocol !== 6 && protocol !== 17) return 'peer';
  const known = (port: number): boolean => WEB_PORTS.includes(port) || portPrior(ports, port, protocol) !== undefined;
  const vmKnown = known(vmPort);
  const remoteKnown = known(remotePort);
  if (vmKnown !== remoteKnown) return vmKnown ? 'server' : 'client';
  const vmLow = vmPort < 1024;
  const remoteLow = remotePort < 1024;
  if (vmLow !== remoteLow) return vmLow ? 'server' : 'client';
  const vmEphemeral = vmPort >= EPHEMERAL_FROM;
  const remoteEphemeral = remotePort >= EPHEMERAL_FROM;
  if (vmEphemeral !== remoteEphemeral) return vmEphemeral ? 'client' : 'server';
  return 'peer';
}

interface Accumulator {
  remoteAddr: string;
  protocol: number;
  vmPort: number;
  remotePort: number;
  records: number;
  bytesOut: number;
  bytesIn: number;
  packetsOut: number;
  packetsIn: number;
  firstMs: number;
  lastMs: number;
}

const div = (a: number, b: number): number => (b > 0 ? a / b : 0);

function interactivityOf(c: Omit<ConversationFeatures, 'interactivity' | 'portPrior'>, p: FeatureParams['interactive']): number {
  if (c.packetsIn === 0 || c.packetsOut === 0) return 0;
  const smaller = Math.min(c.meanPacketInBytes, c.meanPacketOutBytes);
  const twoWay = ramp(c.twoWayRatio, p.twoWayRatio);
  const small = ramp(smaller, p.smallPacketBytes);
  const sustained = ramp(c.durationMs, p.sustainedMs);
  const steady = ramp(Math.min(c.packetsPerSecIn, c.packetsPerSecOut), p.steadyPacketsPerSec);
  // A download's acknowledgements are small and steady too; an exchange is not one-way in bytes.
  const balanced = ramp(Math.max(c.uploadShare, 1 - c.uploadShare), p.heavyByteShare);
  return twoWay * small * sustained * steady * balanced;
}

/**
 * Features of the VM at `vmIp` from the flow records of one window. Records not involving the VM are
 * ignored. The window defaults to the span of the VM's records.
 */
export function extractFeatures(
  flows: readonly FlowRecord[],
  vmIp: string,
  opts: { windowStartMs?: number; windowEndMs?: number; params?: FeatureParams } = {},
): VmFeatures {
  const params = opts.params ?? DEFAULT_FEATURE_PARAMS;
  const acc = new Map<string, Accumulator>();
  let records = 0;
  for (const f of flows) {
    const out = f.srcAddr === vmIp;
    const inbound = f.dstAddr === vmIp;
    if (out === inbound) continue; // not the VM's, or the VM talking to itself
    records++;
    const remoteAddr = out ? f.dstAddr : f.srcAddr;
    const vmPort = out ? f.srcPort : f.dstPort;
    const remotePort = out ? f.dstPort : f.srcPort;
    const key = `${remoteAddr}|${f.protocol}|${vmPort}|${remotePort}`;
    let a = acc.get(key);
    if (a === undefined) {
      a = { remoteAddr, protocol: f.protocol, vmPort, remotePort, records: 0, bytesOut: 0, bytesIn: 0, packetsOut: 0, packetsIn: 0, firstMs: f.firstMs, lastMs: f.lastMs };
      acc.set(key, a);
    }
    a.records++;
    if (out) { a.bytesOut += f.bytes; a.packetsOut += f.packets; } else { a.bytesIn += f.bytes; a.packetsIn += f.packets; }
    a.firstMs = Math.min(a.firstMs, f.firstMs);
    a.lastMs = Math.max(a.lastMs, f.lastMs);
  }

  const conversations: ConversationFeatures[] = [];
  for (const [key, a] of acc) {
    const durationMs = Math.max(0, a.lastMs - a.firstMs);
    const spanS = Math.max(durationMs, params.minRateSpanMs) / 1000;
    const vmRole = inferRole(a.vmPort, a.remotePort, a.protocol, params.ports);
    const servicePort = vmRole === 'server' ? a.vmPort : a.remotePort;
    const base = {
      key, remoteAddr: a.remoteAddr, protocol: a.protocol, vmPort: a.vmPort, remotePort: a.remotePort,
      vmRole, servicePort, records: a.records,
      bytesOut: a.bytesOut, bytesIn: a.bytesIn, packetsOut: a.packetsOut, packetsIn: a.packetsIn,
      meanPacketOutBytes: div(a.bytesOut, a.packetsOut), meanPacketInBytes: div(a.bytesIn, a.packetsIn),
      firstMs: a.firstMs, lastMs: a.lastMs, durationMs,
      packetsPerSecOut: a.packetsOut / spanS, packetsPerSecIn: a.packetsIn / spanS,
      bitsPerSecOut: (a.bytesOut * 8) / spanS, bitsPerSecIn: (a.bytesIn * 8) / spanS,
      uploadShare: div(a.bytesOut, a.bytesOut + a.bytesIn),
      uploadDownloadRatio: a.bytesIn > 0 ? a.bytesOut / a.bytesIn : a.bytesOut > 0 ? Infinity : 0,
      twoWayRatio: div(Math.min(a.packetsIn, a.packetsOut), Math.max(a.packetsIn, a.packetsOut)),
    };
    conversations.push({
      ...base,
      interactivity: interactivityOf(base, params.interactive),
      portPrior: portPrior(params.ports, servicePort, a.protocol, vmRole),
    });
  }
  conversations.sort((x, y) =>
    (y.packetsIn + y.packetsOut) - (x.packetsIn + x.packetsOut)
    || (y.bytesIn + y.bytesOut) - (x.bytesIn + x.bytesOut)
    || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));

  const sum = (f: (c: ConversationFeatures) => number): number => conversations.reduce((t, c) => t + f(c), 0);
  const bytesOut = sum((c) => c.bytesOut);
  const bytesIn = sum((c) => c.bytesIn);
  const packetsOut = sum((c) => c.packetsOut);
  const packetsIn = sum((c) => c.packetsIn);
  const firstMs = conversations.length > 0 ? Math.min(...conversations.map((c) => c.firstMs)) : 0;
  const lastMs = conversations.length > 0 ? Math.max(...conversations.map((c) => c.lastMs)) : 0;
  const windowStartMs = opts.windowStartMs ?? firstMs;
  const windowEndMs = opts.windowEndMs ?? lastMs;
  const windowMs = Math.max(0, windowEndMs - windowStartMs);
  const spanS = Math.max(windowMs, params.minRateSpanMs) / 1000;
  const activeFraction = activeFractionOf(conversations, windowStartMs, windowEndMs);
  const packets = packetsIn + packetsOut;

  return {
    vmIp, windowStartMs, windowEndMs, windowMs, conversations, records,
    bytesOut, bytesIn, packetsOut, packetsIn,
    meanPacketOutBytes: div(bytesOut, packetsOut), meanPacketInBytes: div(bytesIn, packetsIn),
    bitsPerSecOut: (bytesOut * 8) / spanS, bitsPerSecIn: (bytesIn * 8) / spanS,
    packetsPerSecOut: packetsOut / spanS, packetsPerSecIn: packetsIn / spanS,
    uploadShare: div(bytesOut, bytesOut + bytesIn),
    distinctPeers: new Set(conversations.map((c) => c.remoteAddr)).size,
    udpByteShare: div(sum((c) => (c.protocol === 17 ? c.bytesIn + c.bytesOut : 0)), bytesIn + bytesOut),
    interactivity: div(sum((c) => c.interactivity * (c.packetsIn + c.packetsOut)), packets),
    activeFraction,
    burstiness: 1 - activeFraction,
    startGapCv: startGapCv(conversations),
  };
}

/** Length of the union of the conversations' [first, last] intervals, clipped to the window, over the window. */
function activeFractionOf(cs: readonly ConversationFeatures[], startMs: number, endMs: number): number {
  if (endMs <= startMs) return cs.length > 0 ? 1 : 0;
  const spans = cs
    .map((c) => [Math.max(startMs, c.firstMs), Math.min(endMs, c.lastMs)] as const)
    .filter(([a, b]) => b >= a)
    .sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let covered = 0;
  let curA = -Infinity;
  let curB = -Infinity;
  for (const [a, b] of spans) {
    if (a > curB) {
      if (curB > curA) covered += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) {
      curB = b;
    }
  }
  if (curB > curA) covered += curB - curA;
  return Math.min(1, covered / (endMs - startMs));
}

function startGapCv(cs: readonly ConversationFeatures[]): number {
  const starts = cs.map((c) => c.firstMs).sort((a, b) => a - b);
  if (starts.length < 3) return 0;
  const gaps: number[] = [];
  for (let i = 1; i < starts.length; i++) gaps.push(starts[i]! - starts[i - 1]!);
  const mean = gaps.reduce((t, g) => t + g, 0) / gaps.length;
  if (mean <= 0) return 0;
  const variance = gaps.reduce((t, g) => t + (g - mean) ** 2, 0) / gaps.length;
  return Math.sqrt(variance) / mean;
}

/** The quantities rules test, by name (signatures.ts: ConversationMetric). */
export function metric(c: ConversationFeatures, m: ConversationMetric): number {
  switch (m) {
    case 'packetsIn': return c.packetsIn;
    case 'packetsOut': return c.packetsOut;
    case 'packets': return c.packetsIn + c.packetsOut;
    case 'bytesIn': return c.bytesIn;
    case 'bytesOut': return c.bytesOut;
    case 'bytes': return c.bytesIn + c.bytesOut;
    case 'heavyBytes': return Math.max(c.bytesIn, c.bytesOut);
    case 'packetsPerSecIn': return c.packetsPerSecIn;
    case 'packetsPerSecOut': return c.packetsPerSecOut;
    case 'packetsPerSecMax': return Math.max(c.packetsPerSecIn, c.packetsPerSecOut);
    case 'packetsPerSecMin': return Math.min(c.packetsPerSecIn, c.packetsPerSecOut);
    case 'bitsPerSecIn': return c.bitsPerSecIn;
    case 'bitsPerSecOut': return c.bitsPerSecOut;
    case 'bitsPerSec': return c.bitsPerSecIn + c.bitsPerSecOut;
    case 'meanPacketInBytes': return c.meanPacketInBytes;
    case 'meanPacketOutBytes': return c.meanPacketOutBytes;
    case 'meanPacketBytes': return div(c.bytesIn + c.bytesOut, c.packetsIn + c.packetsOut);
    case 'meanPacketHeavyBytes': return c.bytesOut >= c.bytesIn ? c.meanPacketOutBytes : c.meanPacketInBytes;
    case 'uploadShare': return c.uploadShare;
    case 'downloadShare': return c.bytesIn + c.bytesOut > 0 ? 1 - c.uploadShare : 0;
    case 'heavyShare': return Math.max(c.uploadShare, c.bytesIn + c.bytesOut > 0 ? 1 - c.uploadShare : 0);
    case 'twoWayRatio': return c.twoWayRatio;
    case 'durationMs': return c.durationMs;
    case 'interactivity': return c.interactivity;
  }
}
