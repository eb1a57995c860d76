import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeSflow, ethernetHeader, type SflowDatagram, type SflowSample } from '../../testing/flow-encoders.js';
import { fixturesOf } from '../../testing/flow-fixtures.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import type { DecodeContext, FlowRecord } from '../flow.js';
import { runDecoderContract } from './decoders.contract.js';
import { sflowDecoder } from './sflow.js';

const EXPORTER = '192.0.2.96:6343';
const NOW = 1_700_000_100_000;
const SUB_AGENT = 4;

const datagram = (samples: SflowSample[], over: Partial<SflowDatagram> = {}): Uint8Array =>
  encodeSflow({ agent: '192.0.2.1', subAgentId: SUB_AGENT, sequence: 10, uptimeMs: 123_000, samples, ...over });

const rec = (p: Partial<FlowRecord> & Pick<FlowRecord, 'srcAddr' | 'dstAddr'>): FlowRecord => ({
  exporter: EXPORTER, domain: SUB_AGENT, srcPort: 0, dstPort: 0, protocol: 0, bytes: 0, packets: 0,
  firstMs: NOW, lastMs: NOW, tcpFlags: 0, samplingRate: 1, ...p,
});

const tcp = ethernetHeader({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 6, srcPort: 40000, dstPort: 5900, tcpFlags: 0x18 });
const udp6 = ethernetHeader({ src: '2001:db8::1', dst: 'ff02::fb', protocol: 17, srcPort: 5353, dstPort: 5353, vlan: 100 });
const arp = Uint8Array.from([...tcp.subarray(0, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
const icmp = (() => {
  const h = ethernetHeader({ src: '10.7.7.7', dst: '10.8.8.8', protocol: 1 }).slice(14);
  return Uint8Array.from([...h, 8, 0, 0, 0, 0, 1, 0, 1]); // echo request
})();

const generic = { ifIndex: 3, inOctets: 2n ** 33n, inUcast: 1000, inMulticast: 10, inBroadcast: 1, outOctets: 5000, outUcast: 40, outMulticast: 2 };

/** Offsets of the sample count, each sample's length and record count, each record's length. */
function lengthFields(d: Uint8Array): [number, 2 | 4][] {
  const u32 = (o: number): number => ((d[o]! << 24) | (d[o + 1]! << 16) | (d[o + 2]! << 8) | d[o + 3]!) >>> 0;
  if (d.length < 8) return [];
  const agent = u32(4) === 2 ? 16 : 4;
  const out: [number, 2 | 4][] = [[8 + agent + 12, 4]];
  let o = 8 + agent + 16;
  while (o + 8 <= d.length) {
    const format = u32(o);
    const len = u32(o + 4);
    out.push([o + 4, 4]);
    const body = o + 8;
    const fixed = format === 1 ? 32 : format === 3 ? 44 : format === 2 ? 12 : format === 4 ? 16 : 0;
    if (fixed > 0 && body + fixed <= d.length) {
      out.push([body + fixed - 4, 4]);
      let r = body + fixed;
      while (r + 8 <= Math.min(d.length, body + len)) {
        out.push([r + 4, 4]);
        if (u32(r) === 1 && format !== 2 && format !== 4) out.push([r + 8 + 12, 4]);
        r += 8 + Math.ceil(u32(r + 4) / 4) * 4;
      }
    }
    o = body + Math.ceil(len / 4) * 4;
  }
  return out;
}

runDecoderContract(sflowDecoder, {
  exporter: EXPORTER,
  nowMs: NOW,
  valid: [
    {
      name: 'flow and expanded flow samples (VLAN, IPv6) among counter samples and unknown formats',
      datagrams: [datagram([
        { flow: { rate: 512, records: [{ header: tcp, frameLength: 1514 }] } },
        { counters: { records: [{ generic }] } },
        { flow: { rate: 1000, expanded: true, records: [{ raw: 1001, body: new Uint8Array(16) }, { header: udp6, frameLength: 200 }] } },
        { raw: (4413 << 12) | 5, body: new Uint8Array(12) },
        { counters: { expanded: true, records: [{ raw: 2, body: new Uint8Array(20) }, { generic: { ...generic, ifIndex: 4 } }] } },
      ])],
      records: [
        rec({ srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', srcPort: 40000, dstPort: 5900, protocol: 6, tcpFlags: 0x18, bytes: 1514 * 512, packets: 512, samplingRate: 512 }),
        rec({ srcAddr: '2001:db8::1', dstAddr: 'ff02::fb', srcPort: 5353, dstPort: 5353, protocol: 17, bytes: 200_000, packets: 1000, samplingRate: 1000 }),
      ],
    },
    {
      name: 'an IPv6 agent, a raw IPv4 header (ICMP) and a non-IP frame',
      datagrams: [datagram([
        { flow: { rate: 10, records: [{ header: icmp, frameLength: 84, headerProtocol: 11 }] } },
        { flow: { rate: 10, records: [{ header: arp, frameLength: 64 }] } },
      ], { agent: '2001:db8::99' })],
      records: [rec({ srcAddr: '10.7.7.7', dstAddr: '10.8.8.8', protocol: 1, dstPort: 0x0800, bytes: 840, packets: 10, samplingRate: 10 })],
    },
  ],
  recorded: fixturesOf('sflow5'),
  // Sample, flow sample, record and raw header headers, and a bare IPv4 header.
  minRecordBytes: 8 + 32 + 8 + 16 + 20,
  wrongVersion: datagram([], { version: 4 }),
  lengthTooLarge: { datagram: datagram([{ flow: { rate: 1, records: [{ header: tcp, frameLength: 60 }] } }], { sampleCount: 5 }), kind: 'truncated' },
  lengthTooSmall: { datagram: datagram([{ flow: { rate: 1, records: [{ header: tcp, frameLength: 60 }] } }], { sampleCount: 0 }), kind: 'bad-length' },
  zeroLength: { datagram: datagram([{ raw: 1, body: new Uint8Array(0) }]), kind: 'bad-length' },
  hugeCount: { datagram: datagram([{ flow: { rate: 1, recordCount: 0xffffffff, records: [{ header: tcp, frameLength: 60 }] } }]), kind: 'bad-field-count' },
  lengthFields,
  fuzz: { seed: 6343, chunks: 10, perChunk: 25_000 },
});

describe('sflowDecoder specifics', () => {
  const ctx = (): DecodeContext => ({ exporter: EXPORTER, nowMs: NOW, templates: new MapTemplateStore() });

  it('reports generic interface counters of counter and expanded counter samples', () => {
    const r = sflowDecoder.decode(datagram([
      { counters: { records: [{ generic }] } },
      { counters: { expanded: true, records: [{ raw: 2, body: new Uint8Array(20) }, { generic: { ...generic, ifIndex: 4 } }] } },
    ]), ctx());
    const c = { exporter: EXPORTER, inOctets: 2 ** 33, inPackets: 1011, outOctets: 5000, outPackets: 42, atMs: NOW };
    assert.deepEqual(r.counters, [{ ...c, ifIndex: 3 }, { ...c, ifIndex: 4 }]);
    assert.deepEqual(r.records, []);
  });

  it('advances its sequence per datagram and reports the sample count', () => {
    const r = sflowDecoder.decode(datagram([{ counters: { records: [{ generic }] } }]), ctx());
    assert.deepEqual([r.sequence, r.sequenceUnit, r.recordsInDatagram], [10, 'datagram', 1]);
  });

  it('still decodes the samples after one whose records are malformed', () => {
    const r = sflowDecoder.decode(datagram([
      { flow: { rate: 1, recordCount: 0xffffffff, records: [{ header: tcp, frameLength: 60 }] } },
      { flow: { rate: 2, records: [{ raw: 1, body: new Uint8Array(8) }] } },
      { flow: { rate: 3, records: [{ header: tcp, frameLength: 60 }] } },
    ]), ctx());
    assert.deepEqual(r.records.map((x) => x.samplingRate), [1, 3]);
    assert.deepEqual(r.errors.map((e) => e.kind), ['bad-field-count', 'bad-length']);
  });

  it('rejects an agent address type that is neither IPv4 nor IPv6', () => {
    const d = datagram([]);
    d[7] = 3;
    assert.deepEqual(sflowDecoder.decode(d, ctx()).errors.map((e) => e.kind), ['unsupported']);
  });
});
