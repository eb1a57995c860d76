// Recorded exports from real exporters (src/telemetry/decoders/fixtures/), for the decoder tests.
// Each fixture is a pcap of the UDP datagrams an exporter sent (raw IPv4 link type, so tshark can
// dissect it) and a JSON file of what a reference decoder made of the same datagrams.

import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** src/telemetry/decoders/fixtures, found from dist/src/testing/ (tests run from dist/, data stays in src/). */
export const FIXTURE_DIR = fileURLToPath(new URL('../../../src/telemetry/decoders/fixtures/', import.meta.url));

export interface CapturedDatagram {
  readonly atMs: number;
  readonly payload: Uint8Array;
}

/** One reference record, in the reference decoder's own words reduced to the fields compared. */
export interface ReferenceRecord {
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly proto: number;
  readonly bytes: number;
  readonly packets: number;
  /** Unix ms; absent for sFlow, which has no flow times. */
  readonly firstMs?: number;
  readonly lastMs?: number;
}

export interface ReferenceFile {
  readonly format: 'ipfix' | 'netflow9' | 'netflow5' | 'sflow5';
  /** The exporter command that produced the datagrams. */
  readonly exporter: string;
  /** The reference decoder and how it was run. */
  readonly reference: string;
  /** Sampling the exporter applied, which nfdump reports but does not scale counts by. */
  readonly samplingRate: number;
  readonly records: readonly ReferenceRecord[];
  /** Records the reference printed but does not decode (reason per record), left out of the comparison. */
  readonly excluded?: readonly { readonly record: unknown; readonly reason: string }[];
}

export interface Fixture {
  readonly name: string;
  readonly datagrams: readonly CapturedDatagram[];
  readonly reference: ReferenceFile;
}

/** The UDP payloads of a pcap whose packets are raw IPv4 (link type 101) or Ethernet (1). */
export function readPcapPayloads(file: Uint8Array): CapturedDatagram[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const magic = v.getUint32(0, true);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nano = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const link = v.getUint32(20, le);
  const out: CapturedDatagram[] = [];
  let o = 24;
  while (o + 16 <= file.length) {
    const sec = v.getUint32(o, le);
    const frac = v.getUint32(o + 4, le);
    const caplen = v.getUint32(o + 8, le);
    const pkt = file.subarray(o + 16, o + 16 + caplen);
    o += 16 + caplen;
    const ip = link === 1 ? pkt.subarray(14) : pkt;
    const ihl = (ip[0]! & 0x0f) * 4;
    // A copy, not a view: Buffer#slice (readFileSync gives a Buffer) would share the file's memory.
    out.push({ atMs: sec * 1000 + Math.floor(nano ? frac / 1e6 : frac / 1e3), payload: new Uint8Array(ip.subarray(ihl + 8)) });
  }
  return out;
}

export function loadFixture(name: string): Fixture {
  return {
    name,
    datagrams: readPcapPayloads(readFileSync(`${FIXTURE_DIR}${name}.pcap`)),
    reference: JSON.parse(readFileSync(`${FIXTURE_DIR}${name}.expected.json`, 'utf8')) as ReferenceFile,
  };
}

/** Every recorded fixture of a format. */
export function fixturesOf(format: ReferenceFile['format']): Fixture[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.expected.json'))
    .map((f) => loadFixture(f.slice(0, -'.expected.json'.length)))
    .filter((f) => f.reference.format === format)
    .sort((a, b) => a.name.localeCompare(b.name));
}
