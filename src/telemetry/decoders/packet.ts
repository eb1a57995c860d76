// The leading bytes of a sampled packet (sFlow raw packet header): Ethernet with up to two VLAN tags,
// IPv4 or IPv6 (with the common extension headers), then TCP or UDP ports and TCP flags.

import { ipv4, ipv6, u16 } from './wire.js';

export interface PacketSummary {
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly protocol: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly tcpFlags: number;
}

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;

/** Parses an Ethernet frame's first bytes [start, end); null when it is not IP or too short to tell. */
export function parseEthernet(b: Uint8Array, start: number, end: number): PacketSummary | null {
  let o = start + 12;
  if (end - o < 2) return null;
  let type = u16(b, o);
  o += 2;
  for (let tags = 0; (type === ETH_VLAN || type === ETH_QINQ) && tags < 2; tags++) {
    if (end - o < 4) return null;
    type = u16(b, o + 2);
    o += 4;
  }
  if (type === ETH_IPV4) return parseIpv4(b, o, end);
  if (type === ETH_IPV6) return parseIpv6(b, o, end);
  return null;
}

export function parseIpv4(b: Uint8Array, o: number, end: number): PacketSummary | null {
  if (end - o < 20 || b[o]! >> 4 !== 4) return null;
  const ihl = (b[o]! & 0x0f) * 4;
  if (ihl < 20) return null;
  const protocol = b[o + 9]!;
  // Only the first fragment carries the transport header.
  const fragmentOffset = u16(b, o + 6) & 0x1fff;
  return transport(b, o + ihl, end, protocol, fragmentOffset === 0, ipv4(b, o + 12), ipv4(b, o + 16));
}

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const DEST_OPTS = 60;

export function parseIpv6(b: Uint8Array, o: number, end: number): PacketSummary | null {
  if (end - o < 40 || b[o]! >> 4 !== 6) return null;
  const src = ipv6(b, o + 8);
  const dst = ipv6(b, o + 24);
  let next = b[o + 6]!;
  let p = o + 40;
  let firstFragment = true;
  for (let hops = 0; hops < 8; hops++) {
    if (next === HOP_BY_HOP || next === ROUTING || next === DEST_OPTS) {
      if (end - p < 2) return summary(src, dst, next, 0, 0, 0);
      const len = (b[p + 1]! + 1) * 8;
      next = b[p]!;
      p += len;
    } else if (next === FRAGMENT) {
      if (end - p < 8) return summary(src, dst, next, 0, 0, 0);
      firstFragment = (u16(b, p + 2) & 0xfff8) === 0;
      next = b[p]!;
      p += 8;
    } else {
      break;
    }
  }
  return transport(b, p, end, next, firstFragment, src, dst);
}

function transport(b: Uint8Array, o: number, end: number, protocol: number, hasPorts: boolean, src: string, dst: string): PacketSummary {
  if (!hasPorts || end - o < 4) return summary(src, dst, protocol, 0, 0, 0);
  if (protocol === 6 || protocol === 17 || protocol === 132) {
    return summary(src, dst, protocol, u16(b, o), u16(b, o + 2), protocol === 6 && end - o >= 14 ? b[o + 13]! : 0);
  }
  // ICMP type and code go in the destination port, as NetFlow exporters put them.
  if (protocol === 1 || protocol === 58) return summary(src, dst, protocol, 0, (b[o]! << 8) | b[o + 1]!, 0);
  return summary(src, dst, protocol, 0, 0, 0);
}

function summary(srcAddr: string, dstAddr: string, protocol: number, srcPort: number, dstPort: number, tcpFlags: number): PacketSummary {
  return { srcAddr, dstAddr, protocol, srcPort, dstPort, tcpFlags };
}
