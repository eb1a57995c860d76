import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeNetflow9, type TemplateSpec, type V9Set, type Value } from '../../testing/flow-encoders.js';
import { fixturesOf } from '../../testing/flow-fixtures.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import type { DecodeContext, FlowRecord } from '../flow.js';
import { runDecoderContract } from './decoders.contract.js';
import { netflow9Decoder } from './netflow9.js';

const EXPORTER = '192.0.2.98:2055';
const NOW = 1_700_000_100_000;
const UNIX_S = 1_700_000_000;
const UPTIME_MS = 3_600_000;
const SOURCE_ID = 42;
const T0 = UNIX_S * 1000;

const pkt = (sets: V9Set[], over: { count?: number; version?: number; uptimeMs?: number } = {}): Uint8Array =>
  encodeNetflow9({ uptimeMs: UPTIME_MS, unixS: UNIX_S, sequence: 77, sourceId: SOURCE_ID, sets, ...over });

const rec = (p: Partial<FlowRecord> & Pick<FlowRecord, 'srcAddr' | 'dstAddr'>): FlowRecord => ({
  exporter: EXPORTER, domain: SOURCE_ID, srcPort: 0, dstPort: 0, protocol: 0, bytes: 0, packets: 0,
  firstMs: T0, lastMs: T0, tcpFlags: 0, samplingRate: 1, ...p,
});

const F = (id: number, length: number): { id: number; length: number } => ({ id, length });

// IN_BYTES, IN_PKTS, FIRST_SWITCHED and LAST_SWITCHED as uptimes on the header's clock.
const FLOW4: TemplateSpec = { id: 256, fields: [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(6, 1), F(1, 4), F(2, 4), F(22, 4), F(21, 4)] };
const flow4Values: Value[][] = [
  ['10.0.0.1', '10.0.0.2', 40000, 3389, 6, 0x1b, 123456, 789, UPTIME_MS - 10_000, UPTIME_MS - 1_000],
  ['10.0.0.2', '10.0.0.1', 3389, 40000, 6, 0x12, 999, 12, UPTIME_MS - 9_000, UPTIME_MS],
];
const flow4Records = [
  rec({ srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', srcPort: 40000, dstPort: 3389, protocol: 6, tcpFlags: 0x1b, bytes: 123456, packets: 789, firstMs: T0 - 10_000, lastMs: T0 - 1_000 }),
  rec({ srcAddr: '10.0.0.2', dstAddr: '10.0.0.1', srcPort: 3389, dstPort: 40000, protocol: 6, tcpFlags: 0x12, bytes: 999, packets: 12, firstMs: T0 - 9_000, lastMs: T0 }),
];

// IPv6 with only OUT_BYTES / OUT_PKTS, and 8-byte counters.
const FLOW6: TemplateSpec = { id: 257, fields: [F(27, 16), F(28, 16), F(7, 2), F(11, 2), F(4, 1), F(23, 8), F(24, 8), F(22, 4), F(21, 4)] };

// An options template (scope: system) carrying SAMPLING_INTERVAL and SAMPLING_ALGORITHM.
const OPTIONS: TemplateSpec = { id: 258, scopeCount: 1, fields: [F(1, 4), F(34, 4), F(35, 1)] };
const SAMPLED: TemplateSpec = { id: 259, fields: [F(8, 4), F(12, 4), F(4, 1), F(1, 4), F(2, 4), F(22, 4), F(21, 4)] };

const SWAPPED: TemplateSpec = { id: 256, fields: [F(12, 4), F(8, 4), F(11, 2), F(7, 2), F(4, 1), F(2, 4), F(1, 4)] };

/** Offsets of the record count, each flowset length and the first template's field counts. */
function lengthFields(d: Uint8Array): [number, 2 | 4][] {
  const out: [number, 2 | 4][] = [[2, 2]];
  let o = 20;
  while (o + 4 <= d.length) {
    const id = (d[o]! << 8) | d[o + 1]!;
    const len = (d[o + 2]! << 8) | d[o + 3]!;
    out.push([o + 2, 2]);
    if (id === 0 || id === 1) out.push([o + 6, 2]);
    if (id === 1) out.push([o + 8, 2]);
    if (len < 4) break;
    o += len;
  }
  return out;
}

/** Whether length ends a flowset: softflowd counts only flow records in the header, pmacctd flowsets too. */
function atFlowsetBoundary(d: Uint8Array, length: number): boolean {
  let o = 20;
  while (o < length && o + 4 <= d.length) {
    const len = (d[o + 2]! << 8) | d[o + 3]!;
    if (len < 4) return false;
    o += len;
  }
  return o === length;
}

runDecoderContract(netflow9Decoder, {
  exporter: EXPORTER,
  nowMs: NOW,
  valid: [
    {
      name: 'a template flowset and a padded data flowset',
      datagrams: [pkt([{ templates: [FLOW4] }, { data: FLOW4, records: flow4Values, padding: 2 }])],
      records: flow4Records,
    },
    {
      name: 'IPv6 flows counted in OUT_BYTES/OUT_PKTS, template and data in separate datagrams',
      datagrams: [
        pkt([{ templates: [FLOW6] }]),
        pkt([{ data: FLOW6, records: [['2001:db8::10', '2001:db8:0:1::20', 5900, 50000, 6, 2n ** 40n, 1000, UPTIME_MS - 500, UPTIME_MS - 100]] }]),
      ],
      records: [rec({ srcAddr: '2001:db8::10', dstAddr: '2001:db8:0:1::20', srcPort: 5900, dstPort: 50000, protocol: 6, bytes: 2 ** 40, packets: 1000, firstMs: T0 - 500, lastMs: T0 - 100 })],
    },
    {
      name: 'flows scaled by an options record\'s SAMPLING_INTERVAL from an earlier datagram',
      datagrams: [
        pkt([{ optionsTemplates: [OPTIONS] }, { templates: [SAMPLED] }, { data: OPTIONS, records: [[0, 50, 2]] }]),
        pkt([{ data: SAMPLED, records: [['10.5.5.5', '10.6.6.6', 17, 1000, 2, UPTIME_MS - 2000, UPTIME_MS - 2000]] }]),
      ],
      records: [rec({ srcAddr: '10.5.5.5', dstAddr: '10.6.6.6', protocol: 17, bytes: 50_000, packets: 100, samplingRate: 50, firstMs: T0 - 2000, lastMs: T0 - 2000 })],
    },
    {
      name: 'switched times from before the 32-bit uptime counter wrapped',
      datagrams: [pkt([{ templates: [SAMPLED] }, { data: SAMPLED, records: [['10.5.5.5', '10.6.6.6', 17, 1000, 2, 2 ** 32 - 5000, 1000]] }], { uptimeMs: 3000 })],
      records: [rec({ srcAddr: '10.5.5.5', dstAddr: '10.6.6.6', protocol: 17, bytes: 1000, packets: 2, firstMs: T0 - 8000, lastMs: T0 - 2000 })],
    },
  ],
  recorded: fixturesOf('netflow9'),
  minRecordBytes: 8,
  wrongVersion: pkt([{ templates: [FLOW4] }], { version: 8 }),
  // NetFlow v9 has no length in its header; its record count is what can disagree with the datagram.
  lengthTooLarge: { datagram: pkt([{ templates: [FLOW4] }], { count: 10 }), kind: 'truncated' },
  // A template flowset whose length ends inside its template.
  lengthTooSmall: { datagram: pkt([{ raw: 0, body: pkt([{ templates: [FLOW4] }]).subarray(24), length: 12 }]), kind: 'bad-field-count' },
  zeroLength: { datagram: pkt([{ raw: 256, body: new Uint8Array(16), length: 0 }]), kind: 'bad-length' },
  hugeCount: { datagram: pkt([{ raw: 0, body: Uint8Array.from([1, 0, 0xff, 0xff, 0, 8, 0, 4]) }]), kind: 'bad-field-count' },
  templates: {
    orphanData: pkt([{ data: { id: 300, fields: FLOW4.fields }, records: flow4Values }]),
    first: { template: pkt([{ templates: [FLOW4] }]), data: pkt([{ data: FLOW4, records: flow4Values.slice(0, 1) }]), records: flow4Records.slice(0, 1) },
    second: {
      template: pkt([{ templates: [SWAPPED] }]),
      data: pkt([{ data: SWAPPED, records: [['10.9.9.9', '10.8.8.8', 80, 12345, 6, 4, 400]] }]),
      // No time fields: the export time.
      records: [rec({ srcAddr: '10.8.8.8', dstAddr: '10.9.9.9', srcPort: 12345, dstPort: 80, protocol: 6, bytes: 400, packets: 4 })],
    },
  },
  undetectableCut: atFlowsetBoundary,
  lengthFields,
  fuzz: { seed: 9, chunks: 10, perChunk: 25_000 },
});

describe('netflow9Decoder specifics', () => {
  const ctx = (): DecodeContext => ({ exporter: EXPORTER, nowMs: NOW, templates: new MapTemplateStore() });

  it('advances its sequence per datagram and reports the header\'s record count', () => {
    const r = netflow9Decoder.decode(pkt([{ templates: [FLOW4] }, { data: FLOW4, records: flow4Values }]), ctx());
    assert.equal(r.sequence, 77);
    assert.equal(r.sequenceUnit, 'datagram');
    assert.equal(r.recordsInDatagram, 3);
    assert.equal(r.templatesLearned, 1);
  });

  it('accepts a header count below the records it holds (exporters that count flowsets)', () => {
    const r = netflow9Decoder.decode(pkt([{ templates: [FLOW4] }, { data: FLOW4, records: flow4Values }], { count: 2 }), ctx());
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.records, flow4Records);
  });

  it('rejects an options template whose scope or option length is not a whole number of fields', () => {
    const body = Uint8Array.from([1, 2, 0, 3, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4]);
    const r = netflow9Decoder.decode(pkt([{ raw: 1, body }], { count: 1 }), ctx());
    assert.deepEqual(r.errors.map((e) => e.kind), ['bad-field-count']);
  });

  it('reads a field of length 65535 as fixed-length, not variable-length as in IPFIX', () => {
    const t: TemplateSpec = { id: 260, fields: [F(8, 4), F(12, 4), F(82, 65535)] };
    const r = netflow9Decoder.decode(pkt([{ templates: [t] }, { raw: 260, body: Uint8Array.from([10, 0, 0, 1, 10, 0, 0, 2, 3, 0x61, 0x62, 0x63]) }], { count: 1 }), ctx());
    assert.deepEqual(r.records, []);
  });
});
