import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeIpfix, type IpfixSet, type TemplateSpec, type Value } from '../../testing/flow-encoders.js';
import { fixturesOf } from '../../testing/flow-fixtures.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import type { DecodeContext, FlowRecord, TemplateStore } from '../flow.js';
import { runDecoderContract } from './decoders.contract.js';
import { ipfixDecoder } from './ipfix.js';

const EXPORTER = '192.0.2.99:4739';
const NOW = 1_700_000_100_000;
const EXPORT_S = 1_700_000_000;
const DOMAIN = 7;

const msg = (sets: IpfixSet[], over: { length?: number; version?: number; exportS?: number } = {}): Uint8Array =>
  encodeIpfix({ exportS: over.exportS ?? EXPORT_S, sequence: 1000, domain: DOMAIN, sets, ...over });

const rec = (p: Partial<FlowRecord> & Pick<FlowRecord, 'srcAddr' | 'dstAddr'>): FlowRecord => ({
  exporter: EXPORTER, domain: DOMAIN, srcPort: 0, dstPort: 0, protocol: 0, bytes: 0, packets: 0,
  firstMs: EXPORT_S * 1000, lastMs: EXPORT_S * 1000, tcpFlags: 0, samplingRate: 1, ...p,
});

const F = (id: number, length: number, enterprise?: number): { id: number; length: number; enterprise?: number } =>
  enterprise === undefined ? { id, length } : { id, length, enterprise };

const FLOW4: TemplateSpec = { id: 256, fields: [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(6, 1), F(1, 8), F(2, 8), F(152, 8), F(153, 8)] };
const flow4Values: Value[][] = [
  ['10.0.0.1', '10.0.0.2', 40000, 5900, 6, 0x1b, 123456, 789, 1_699_999_990_000, 1_699_999_999_000],
  ['10.0.0.2', '10.0.0.1', 5900, 40000, 6, 0x12, 2_000_000, 1500, 1_699_999_990_001, 1_699_999_999_001],
  ['192.0.2.1', '198.51.100.7', 53, 3333, 17, 0x02, 90, 1, 1_699_999_995_000, 1_699_999_995_000],
];
const flow4Records = [
  rec({ srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', srcPort: 40000, dstPort: 5900, protocol: 6, tcpFlags: 0x1b, bytes: 123456, packets: 789, firstMs: 1_699_999_990_000, lastMs: 1_699_999_999_000 }),
  rec({ srcAddr: '10.0.0.2', dstAddr: '10.0.0.1', srcPort: 5900, dstPort: 40000, protocol: 6, tcpFlags: 0x12, bytes: 2_000_000, packets: 1500, firstMs: 1_699_999_990_001, lastMs: 1_699_999_999_001 }),
  // tcpControlBits mean nothing outside TCP.
  rec({ srcAddr: '192.0.2.1', dstAddr: '198.51.100.7', srcPort: 53, dstPort: 3333, protocol: 17, bytes: 90, packets: 1, firstMs: 1_699_999_995_000, lastMs: 1_699_999_995_000 }),
];

// IPv6, reduced-size counters, variable-length fields (short and long form), enterprise-specific fields
// whose ids collide with IANA ones (octetDeltaCount, sourceIPv4Address) and must be skipped.
const FLOW6: TemplateSpec = {
  id: 257,
  fields: [F(27, 16), F(28, 16), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4), F(100, 65535, 29305), F(82, 65535), F(1, 4, 9), F(8, 4, 9), F(150, 4), F(151, 4)],
};
const flow6Values: Value[][] = [
  ['2001:db8::1', '2001:db8::2', 443, 51000, 6, 5000, 10, Uint8Array.from([1, 2, 3]), 'eth0', 999999, '6.6.6.6', EXPORT_S - 60, EXPORT_S - 1],
  ['fe80::1:2', 'ff02::fb', 5353, 5353, 17, 300, 2, new Uint8Array(300).fill(7), '', 999999, '6.6.6.6', EXPORT_S - 5, EXPORT_S - 5],
];
const flow6Records = [
  rec({ srcAddr: '2001:db8::1', dstAddr: '2001:db8::2', srcPort: 443, dstPort: 51000, protocol: 6, bytes: 5000, packets: 10, firstMs: (EXPORT_S - 60) * 1000, lastMs: (EXPORT_S - 1) * 1000 }),
  rec({ srcAddr: 'fe80::1:2', dstAddr: 'ff02::fb', srcPort: 5353, dstPort: 5353, protocol: 17, bytes: 300, packets: 2, firstMs: (EXPORT_S - 5) * 1000, lastMs: (EXPORT_S - 5) * 1000 }),
];

// An options record announces the system init time and a sampling interval; sysUpTime flows use both.
const INIT_MS = 1_699_990_000_000;
const OPTIONS: TemplateSpec = { id: 258, scopeCount: 1, fields: [F(149, 4), F(160, 8), F(34, 4)] };
const UPTIME: TemplateSpec = { id: 259, fields: [F(8, 4), F(12, 4), F(7, 2), F(11, 2), F(4, 1), F(1, 4), F(2, 4), F(22, 4), F(21, 4)] };

// Deltas before the export time, total counts only, and ICMP type/code as the destination port.
const DELTA: TemplateSpec = { id: 260, fields: [F(8, 4), F(12, 4), F(4, 1), F(32, 2), F(85, 8), F(86, 8), F(158, 4), F(159, 4)] };

// NTP-format micro- and nanosecond times (RFC 7011 §6.1.9–10).
const ntp = (unixMs: number): bigint => {
  const s = BigInt(Math.floor(unixMs / 1000) + 2208988800);
  const frac = BigInt(Math.round(((unixMs % 1000) / 1000) * 2 ** 32));
  return (s << 32n) | frac;
};
const MICRO: TemplateSpec = { id: 261, fields: [F(8, 4), F(12, 4), F(4, 1), F(1, 2), F(2, 1), F(154, 8), F(155, 8)] };
const NANO: TemplateSpec = { id: 262, fields: [F(8, 4), F(12, 4), F(4, 1), F(1, 3), F(2, 1), F(156, 8), F(157, 8)] };

const SWAPPED: TemplateSpec = { id: 256, fields: [F(12, 4), F(8, 4), F(11, 2), F(7, 2), F(4, 1), F(2, 4), F(1, 4)] };

/** Offsets of the message length, each set length and each template set's first field count. */
function lengthFields(d: Uint8Array): [number, 2 | 4][] {
  const out: [number, 2 | 4][] = [[2, 2]];
  let o = 16;
  while (o + 4 <= d.length) {
    const id = (d[o]! << 8) | d[o + 1]!;
    const len = (d[o + 2]! << 8) | d[o + 3]!;
    out.push([o + 2, 2]);
    if (id === 2 || id === 3) out.push([o + 6, 2]);
    if (id === 3) out.push([o + 8, 2]);
    if (len < 4) break;
    o += len;
  }
  return out;
}

runDecoderContract(ipfixDecoder, {
  exporter: EXPORTER,
  nowMs: NOW,
  valid: [
    {
      name: 'a template and two data sets in one message',
      datagrams: [msg([{ templates: [FLOW4] }, { data: FLOW4, records: flow4Values.slice(0, 2) }, { data: FLOW4, records: flow4Values.slice(2) }])],
      records: flow4Records,
    },
    {
      name: 'IPv6 flows with variable-length and enterprise-specific fields and set padding',
      datagrams: [msg([{ templates: [FLOW6], padding: 2 }]), msg([{ data: FLOW6, records: flow6Values, padding: 3 }])],
      records: flow6Records,
    },
    {
      name: 'sysUpTime flows timed by an earlier options record\'s systemInitTimeMilliseconds and scaled by its samplingInterval',
      datagrams: [
        msg([{ optionsTemplates: [OPTIONS] }, { templates: [UPTIME] }, { data: OPTIONS, records: [[DOMAIN, INIT_MS, 100]] }]),
        msg([{ data: UPTIME, records: [['10.1.1.1', '10.2.2.2', 1000, 2000, 17, 1500, 3, 5000, 9000]] }]),
      ],
      records: [rec({ srcAddr: '10.1.1.1', dstAddr: '10.2.2.2', srcPort: 1000, dstPort: 2000, protocol: 17, bytes: 150000, packets: 300, firstMs: INIT_MS + 5000, lastMs: INIT_MS + 9000, samplingRate: 100 })],
    },
    {
      name: 'delta-microsecond times, total counts and an ICMP type/code',
      datagrams: [msg([{ templates: [DELTA] }, { data: DELTA, records: [['10.0.0.9', '10.0.0.10', 1, 0x0800, 640, 8, 5_000_000, 250_000]] }])],
      records: [rec({ srcAddr: '10.0.0.9', dstAddr: '10.0.0.10', protocol: 1, dstPort: 0x0800, bytes: 640, packets: 8, firstMs: EXPORT_S * 1000 - 5000, lastMs: EXPORT_S * 1000 - 250 })],
    },
    {
      name: 'NTP micro- and nanosecond times with 1-, 2- and 3-byte counters',
      datagrams: [msg([
        { templates: [MICRO, NANO] },
        { data: MICRO, records: [['10.0.0.1', '10.0.0.2', 17, 1200, 3, ntp(1_700_000_000_250), ntp(1_700_000_001_500)]] },
        { data: NANO, records: [['10.0.0.3', '10.0.0.4', 17, 70000, 255, ntp(1_699_999_999_125), ntp(1_700_000_000_000)]] },
      ])],
      records: [
        rec({ srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', protocol: 17, bytes: 1200, packets: 3, firstMs: 1_700_000_000_250, lastMs: 1_700_000_001_500 }),
        rec({ srcAddr: '10.0.0.3', dstAddr: '10.0.0.4', protocol: 17, bytes: 70000, packets: 255, firstMs: 1_699_999_999_125, lastMs: 1_700_000_000_000 }),
      ],
    },
  ],
  recorded: fixturesOf('ipfix'),
  // Two IPv4 addresses are the least a flow record carries.
  minRecordBytes: 8,
  wrongVersion: msg([{ templates: [FLOW4] }], { version: 11 }),
  lengthTooLarge: { datagram: msg([{ templates: [FLOW4] }], { length: 200 }), kind: 'truncated' },
  lengthTooSmall: { datagram: msg([{ templates: [FLOW4] }], { length: 20 }), kind: 'bad-length' },
  zeroLength: { datagram: msg([{ raw: 256, body: new Uint8Array(12), length: 0 }]), kind: 'bad-length' },
  hugeCount: { datagram: msg([{ raw: 2, body: Uint8Array.from([1, 0, 0xff, 0xff, 0, 8, 0, 4]) }]), kind: 'bad-field-count' },
  templates: {
    orphanData: msg([{ data: { id: 300, fields: FLOW4.fields }, records: flow4Values }]),
    first: { template: msg([{ templates: [FLOW4] }]), data: msg([{ data: FLOW4, records: flow4Values.slice(0, 1) }]), records: flow4Records.slice(0, 1) },
    second: {
      template: msg([{ templates: [SWAPPED] }]),
      data: msg([{ data: SWAPPED, records: [['10.9.9.9', '10.8.8.8', 80, 12345, 6, 4, 400]] }]),
      records: [rec({ srcAddr: '10.8.8.8', dstAddr: '10.9.9.9', srcPort: 12345, dstPort: 80, protocol: 6, bytes: 400, packets: 4 })],
    },
  },
  lengthFields,
  fuzz: { seed: 10, chunks: 10, perChunk: 25_000 },
});

describe('ipfixDecoder specifics', () => {
  const ctx = (templates: TemplateStore = new MapTemplateStore()): DecodeContext => ({ exporter: EXPORTER, nowMs: NOW, templates });

  it('withdraws a template whose field count is 0, so later data for it is unknown', () => {
    const c = ctx();
    ipfixDecoder.decode(msg([{ templates: [FLOW4] }]), c);
    const w = ipfixDecoder.decode(msg([{ withdraw: [256] }]), c);
    assert.equal(w.templatesLearned, 1);
    assert.deepEqual(w.errors, []);
    const r = ipfixDecoder.decode(msg([{ data: FLOW4, records: flow4Values }]), c);
    assert.deepEqual(r.errors.map((e) => e.kind), ['unknown-template']);
  });

  it('clamps counters above 2^53 - 1 instead of losing precision', () => {
    const t: TemplateSpec = { id: 270, fields: [F(8, 4), F(12, 4), F(1, 8), F(2, 8)] };
    const r = ipfixDecoder.decode(msg([{ templates: [t] }, { data: t, records: [['10.0.0.1', '10.0.0.2', 2n ** 64n - 1n, 2n ** 53n + 5n]] }]), ctx());
    assert.equal(r.records[0]!.bytes, Number.MAX_SAFE_INTEGER);
    assert.equal(r.records[0]!.packets, Number.MAX_SAFE_INTEGER);
  });

  it('reads reduced-size counters of every length from 1 to 8 bytes', () => {
    for (let len = 1; len <= 8; len++) {
      const t: TemplateSpec = { id: 271, fields: [F(8, 4), F(12, 4), F(1, len), F(2, len)] };
      const value = 2 ** (8 * Math.min(len, 6)) - 1;
      const r = ipfixDecoder.decode(msg([{ templates: [t] }, { data: t, records: [['10.0.0.1', '10.0.0.2', value, 1]] }]), ctx());
      assert.equal(r.records[0]!.bytes, value, `octetDeltaCount in ${len} bytes`);
    }
  });

  it('applies an options record to later records of the same message even when the store keeps no options', () => {
    const inner = new MapTemplateStore();
    const plain: TemplateStore = { get: (...a) => inner.get(...a), set: (...a) => inner.set(...a), delete: (...a) => inner.delete(...a) };
    const r = ipfixDecoder.decode(msg([
      { optionsTemplates: [OPTIONS] }, { templates: [UPTIME] }, { data: OPTIONS, records: [[DOMAIN, INIT_MS, 10]] },
      { data: UPTIME, records: [['10.1.1.1', '10.2.2.2', 1000, 2000, 17, 1500, 3, 5000, 9000]] },
    ]), ctx(plain));
    assert.deepEqual(r.records.map((x) => [x.firstMs, x.bytes, x.samplingRate]), [[INIT_MS + 5000, 15000, 10]]);
  });

  it('counts every data record for sequence accounting, flows or not, and emits only flows', () => {
    const noAddr: TemplateSpec = { id: 272, fields: [F(1, 8), F(2, 8)] };
    const r = ipfixDecoder.decode(msg([
      { templates: [FLOW4, noAddr] }, { data: FLOW4, records: flow4Values }, { data: noAddr, records: [[1, 1], [2, 2]] },
    ]), ctx());
    assert.equal(r.recordsInDatagram, 5);
    assert.equal(r.records.length, 3);
    assert.equal(r.sequence, 1000);
    assert.equal(r.sequenceUnit, 'record');
    assert.equal(r.templatesLearned, 2);
  });

  it('rejects an options template whose scope count is 0 or larger than its field count', () => {
    for (const scopeCount of [0, 4]) {
      const r = ipfixDecoder.decode(msg([{ optionsTemplates: [{ ...OPTIONS, scopeCount }] }]), ctx());
      assert.deepEqual(r.errors.map((e) => e.kind), ['bad-template']);
      assert.equal(r.templatesLearned, 0);
    }
  });

  it('rejects template ids below 256 and templates of zero-length records, and keeps reading the set', () => {
    const r = ipfixDecoder.decode(msg([{ templates: [{ id: 255, fields: [F(8, 4)] }, { id: 280, fields: [F(8, 0)] }, FLOW4] }]), ctx());
    assert.deepEqual(r.errors.map((e) => e.kind), ['bad-template', 'bad-template']);
    assert.equal(r.templatesLearned, 1);
  });

  it('keeps a template learned from one exporter or domain away from another\'s data', () => {
    const store = new MapTemplateStore();
    ipfixDecoder.decode(msg([{ templates: [FLOW4] }]), ctx(store));
    const other = ipfixDecoder.decode(msg([{ data: FLOW4, records: flow4Values }]), { exporter: '192.0.2.100:4739', nowMs: NOW, templates: store });
    assert.deepEqual(other.errors.map((e) => e.kind), ['unknown-template']);
    const otherDomain = ipfixDecoder.decode(encodeIpfix({ exportS: EXPORT_S, sequence: 1, domain: 8, sets: [{ data: FLOW4, records: flow4Values }] }), ctx(store));
    assert.deepEqual(otherDomain.errors.map((e) => e.kind), ['unknown-template']);
  });

  it('decodes the sets after one with an unknown template or a reserved set id', () => {
    const store = new MapTemplateStore();
    ipfixDecoder.decode(msg([{ templates: [FLOW4] }]), ctx(store));
    const r = ipfixDecoder.decode(msg([
      { data: { id: 999, fields: FLOW4.fields }, records: flow4Values }, { raw: 7, body: new Uint8Array(8) }, { data: FLOW4, records: flow4Values },
    ]), ctx(store));
    assert.deepEqual(r.errors.map((e) => e.kind), ['unknown-template', 'unsupported']);
    assert.deepEqual(r.records, flow4Records);
  });

  it('keeps the complete records of a set cut short, then reports it truncated', () => {
    const store = new MapTemplateStore();
    ipfixDecoder.decode(msg([{ templates: [FLOW4] }]), ctx(store));
    const whole = msg([{ data: FLOW4, records: flow4Values }]);
    const r = ipfixDecoder.decode(whole.subarray(0, whole.length - 10), ctx(store));
    assert.deepEqual(r.records, flow4Records.slice(0, 2));
    assert.ok(r.errors.some((e) => e.kind === 'truncated'));
  });
});
