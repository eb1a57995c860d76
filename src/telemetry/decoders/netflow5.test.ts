import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeNetflow5, type V5Packet, type V5Record } from '../../testing/flow-encoders.js';
import { fixturesOf } from '../../testing/flow-fixtures.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import type { DecodeContext, FlowRecord } from '../flow.js';
import { runDecoderContract } from './decoders.contract.js';
import { netflow5Decoder } from './netflow5.js';

const EXPORTER = '192.0.2.97:2055';
const NOW = 1_700_000_100_000;
const UNIX_S = 1_700_000_000;
const UNIX_NS = 250_000_000;
const UPTIME_MS = 86_400_000;
const T0 = UNIX_S * 1000 + 250;

const packet = (records: V5Record[], over: Partial<V5Packet> = {}): Uint8Array =>
  encodeNetflow5({ uptimeMs: UPTIME_MS, unixS: UNIX_S, unixNs: UNIX_NS, sequence: 5000, engineType: 1, engineId: 2, records, ...over });

const v5 = (i: number, p: Partial<V5Record> = {}): V5Record => ({
  src: `10.0.${i}.1`, dst: `10.1.${i}.2`, srcPort: 1000 + i, dstPort: 5900, protocol: 6, tcpFlags: 0x18,
  packets: 10 + i, bytes: 1000 * (i + 1), firstUptimeMs: UPTIME_MS - 60_000 + i, lastUptimeMs: UPTIME_MS - 1000 + i, ...p,
});

const rec = (i: number, p: Partial<FlowRecord> = {}): FlowRecord => ({
  exporter: EXPORTER, domain: (1 << 8) | 2, srcAddr: `10.0.${i}.1`, dstAddr: `10.1.${i}.2`, srcPort: 1000 + i, dstPort: 5900,
  protocol: 6, tcpFlags: 0x18, packets: 10 + i, bytes: 1000 * (i + 1), firstMs: T0 - 60_000 + i, lastMs: T0 - 1000 + i, samplingRate: 1, ...p,
});

const thirty = Array.from({ length: 30 }, (_, i) => i);

runDecoderContract(netflow5Decoder, {
  exporter: EXPORTER,
  nowMs: NOW,
  valid: [
    { name: 'one record', datagrams: [packet([v5(0)])], records: [rec(0)] },
    { name: 'thirty records, the most a datagram carries', datagrams: [packet(thirty.map((i) => v5(i)))], records: thirty.map((i) => rec(i)) },
    {
      name: 'a 1-in-64 sampled export, counts scaled, UDP without flags',
      datagrams: [packet([v5(3, { protocol: 17, tcpFlags: 0x10 })], { samplingMode: 1, samplingInterval: 64 })],
      records: [rec(3, { protocol: 17, tcpFlags: 0, packets: 13 * 64, bytes: 4000 * 64, samplingRate: 64 })],
    },
  ],
  recorded: fixturesOf('netflow5'),
  minRecordBytes: 48,
  wrongVersion: packet([v5(0)], { version: 7 }),
  lengthTooLarge: { datagram: packet([v5(0), v5(1)], { count: 3 }), kind: 'truncated' },
  lengthTooSmall: { datagram: packet([v5(0), v5(1)], { count: 1 }), kind: 'bad-length' },
  zeroLength: { datagram: packet([], { count: 0 }), kind: 'bad-field-count' },
  hugeCount: { datagram: packet([v5(0)], { count: 65535 }), kind: 'bad-field-count' },
  lengthFields: () => [[2, 2]],
  fuzz: { seed: 5, chunks: 10, perChunk: 25_000 },
});

describe('netflow5Decoder specifics', () => {
  const ctx = (): DecodeContext => ({ exporter: EXPORTER, nowMs: NOW, templates: new MapTemplateStore() });

  it('advances its sequence per record and reports the header\'s count', () => {
    const r = netflow5Decoder.decode(packet([v5(0), v5(1)]), ctx());
    assert.deepEqual([r.sequence, r.sequenceUnit, r.recordsInDatagram], [5000, 'record', 2]);
  });

  it('keeps the records that fit when the count says more, up to thirty', () => {
    const r = netflow5Decoder.decode(packet(thirty.map((i) => v5(i)).concat([v5(30)]), { count: 31 }), ctx());
    assert.equal(r.records.length, 30);
    assert.deepEqual(r.errors.map((e) => e.kind), ['bad-field-count']);
  });

  it('times switched uptimes from before the 32-bit uptime counter wrapped', () => {
    const r = netflow5Decoder.decode(packet([v5(0, { firstUptimeMs: 2 ** 32 - 1000, lastUptimeMs: 500 })], { uptimeMs: 1000 }), ctx());
    assert.deepEqual([r.records[0]!.firstMs, r.records[0]!.lastMs], [T0 - 2000, T0 - 500]);
  });
});
