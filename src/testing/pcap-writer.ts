// Writes libpcap files of synthetic traffic, so real exporters (softflowd, pmacctd) can be fed any volume.

export interface SyntheticPacket {
  readonly tsMs: number;
  readonly src: readonly [number, number, number, number];
  readonly dst: readonly [number, number, number, number];
  readonly sport: number;
  readonly dport: number;
  /** 6 TCP or 17 UDP. */
  readonly proto: 6 | 17;
  readonly payloadBytes: number;
  readonly tcpFlags?: number;
}

function checksum(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) | (b[off + i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** A pcap (microsecond, Ethernet) file holding the packets, in order. */
export function writePcap(packets: Iterable<SyntheticPacket>): Uint8Array {
  const chunks: Uint8Array[] = [];
  const head = new Uint8Array(24);
  const hv = new DataView(head.buffer);
  hv.setUint32(0, 0xa1b2c3d4, true);
  hv.setUint16(4, 2, true);
  hv.setUint16(6, 4, true);
  hv.setUint32(16, 65535, true);
  hv.setUint32(20, 1, true); // LINKTYPE_ETHERNET
  chunks.push(head);
  let total = 24;
  for (const p of packets) {
    const l4 = p.proto === 6 ? 20 : 8;
    const ipLen = 20 + l4 + p.payloadBytes;
    const frame = new Uint8Array(14 + ipLen);
    const v = new DataView(frame.buffer);
    frame.set([0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1], 0);
    v.setUint16(12, 0x0800);
    const ip = 14;
    frame[ip] = 0x45;
    v.setUint16(ip + 2, ipLen);
    frame[ip + 8] = 64;
    frame[ip + 9] = p.proto;
    frame.set(p.src, ip + 12);
    frame.set(p.dst, ip + 16);
    v.setUint16(ip + 10, checksum(frame, ip, 20));
    const t = ip + 20;
    v.setUint16(t, p.sport);
    v.setUint16(t + 2, p.dport);
    if (p.proto === 6) {
      frame[t + 12] = 0x50;
      frame[t + 13] = p.tcpFlags ?? 0x18;
      v.setUint16(t + 14, 65535);
    } else {
      v.setUint16(t + 4, 8 + p.payloadBytes);
    }
    const rec = new Uint8Array(16);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, Math.floor(p.tsMs / 1000), true);
    rv.setUint32(4, Math.round((p.tsMs % 1000) * 1000), true);
    rv.setUint32(8, frame.length, true);
    rv.setUint32(12, frame.length, true);
    chunks.push(rec, frame);
    total += 16 + frame.length;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** n distinct short UDP/TCP flows (a few packets each) spread over durationMs: what a busy cloud exports. */
export function* manyFlows(n: number, opts: { startMs: number; durationMs: number; packetsPerFlow?: number }): Generator<SyntheticPacket> {
  const per = opts.packetsPerFlow ?? 1;
  for (let i = 0; i < n; i++) {
    const t = opts.startMs + Math.floor((i / n) * opts.durationMs);
    for (let k = 0; k < per; k++) {
      yield {
        tsMs: t + k,
        src: [10, (i >>> 16) & 255, (i >>> 8) & 255, i & 255],
        dst: [172, 16, (i * 7) & 255, (i * 13) & 255],
        sport: 1024 + (i % 60000),
        dport: i % 2 === 0 ? 443 : 5900,
        proto: i % 3 === 0 ? 17 : 6,
        payloadBytes: 64 + (i % 1000),
      };
    }
  }
}
