// Flow records as an IPv4 exporter sends them over IPFIX (the fields softflowd exports), for tests that
// feed the manager's collector over UDP.
import { createSocket } from 'node:dgram';
import type { FlowRecord } from '../telemetry/flow.js';
import { encodeIpfix, type TemplateSpec, type Value } from './flow-encoders.js';

/** Addresses, ports, protocol, TCP flags, octet and packet deltas, start and end in milliseconds. */
export const IPFIX_FLOW_TEMPLATE: TemplateSpec = {
  id: 256,
  fields: [
    { id: 8, length: 4 }, { id: 12, length: 4 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 },
    { id: 6, length: 1 }, { id: 1, length: 8 }, { id: 2, length: 8 }, { id: 152, length: 8 }, { id: 153, length: 8 },
  ],
};

/** One template-led datagram per chunk of records; `sequence` counts records sent before (RFC 7011). */
export function ipfixDatagrams(flows: readonly FlowRecord[], o: { sequence: number; domain?: number; perDatagram?: number; exportS?: number }): Uint8Array[] {
  const per = o.perDatagram ?? 28;
  const out: Uint8Array[] = [];
  let seq = o.sequence;
  for (let i = 0; i < flows.length; i += per) {
    const chunk = flows.slice(i, i + per);
    const records: Value[][] = chunk.map((f) => [
      f.srcAddr, f.dstAddr, f.srcPort, f.dstPort, f.protocol, f.tcpFlags, BigInt(f.bytes), BigInt(f.packets), BigInt(f.firstMs), BigInt(f.lastMs),
    ]);
    out.push(encodeIpfix({
      exportS: o.exportS ?? Math.floor(Date.now() / 1000), sequence: seq, domain: o.domain ?? 1,
      sets: [{ templates: [IPFIX_FLOW_TEMPLATE] }, { data: IPFIX_FLOW_TEMPLATE, records }],
    }));
    seq += chunk.length;
  }
  return out;
}

/** A UDP exporter on loopback that keeps its sequence number across sends. */
export function createIpfixSender(port: number, host = '127.0.0.1'): { send(flows: readonly FlowRecord[]): Promise<number>; close(): void } {
  const sock = createSocket('udp4');
  let sequence = 0;
  return {
    async send(flows) {
      const ds = ipfixDatagrams(flows, { sequence });
      sequence += flows.length;
      for (const d of ds) await new Promise<void>((res, rej) => sock.send(d, port, host, (e) => (e ? rej(e) : res())));
      return ds.length;
    },
    close: () => sock.close(),
  };
}
