import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { FlowRecord } from './flow.js';
import { FlowRows, ipv4Number, ipv4Text, TEXT_ADDRESS } from './flow-rows.js';

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const address = fc.oneof(v4, fc.constantFrom('2001:db8::1', '::ffff:192.0.2.1', 'fe80::', '010.0.0.1', '10.0.0'));
const record: fc.Arbitrary<FlowRecord> = fc.record({
  exporter: fc.constantFrom('127.0.0.1:9995', '[::1]:4739', 'e:1'),
  domain: fc.nat(2 ** 32 - 1),
  srcAddr: address,
  dstAddr: address,
  srcPort: fc.nat(65535),
  dstPort: fc.nat(65535),
  protocol: fc.nat(255),
  bytes: fc.maxSafeNat(),
  packets: fc.maxSafeNat(),
  firstMs: fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  lastMs: fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  tcpFlags: fc.nat(255),
  samplingRate: fc.oneof(fc.constant(1), fc.double({ min: 1, max: 1e6, noNaN: true })),
}).map((r) => ({ ...r })); // plain objects, as the decoders make

describe('FlowRows', () => {
  it('gives back every record it was given, field for field, across chunk boundaries and tables', () => {
    fc.assert(fc.property(fc.array(record, { maxLength: 40 }), fc.integer({ min: 0, max: 4 }), (records, bits) => {
      const rows = new FlowRows(bits);
      for (const r of records) rows.pushRecord(r);
      assert.deepEqual(rows.records(), records);
      // Copied row by row into a table with other exporters already in it.
      const other = new FlowRows(bits + 1);
      other.pushRecord({ ...records[0] ?? { exporter: '', domain: 0, srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 0, dstPort: 0, protocol: 0, bytes: 0, packets: 0, firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1 }, exporter: 'someone else' });
      for (let i = 0; i < rows.length; i++) other.pushRow(rows, i);
      assert.deepEqual(other.records(1), records);
    }));
  });

  it('copies rows into a table packed around another time (as a window does), every record exact and every tag kept', () => {
    const centre = 1_767_225_600_000;
    const near = fc.integer({ min: centre - 2 ** 32, max: centre + 2 ** 32 });
    const timed = fc.tuple(record, near, fc.nat(2 ** 33), fc.nat(2 ** 33), fc.nat(2 ** 32 - 1)).map(([r, lastMs, span, bytes, tag]) => ({
      r: { ...r, lastMs, firstMs: lastMs - span, bytes, packets: bytes % 1000 }, tag,
    }));
    fc.assert(fc.property(fc.array(timed, { maxLength: 40 }), fc.integer({ min: 0, max: 3 }), (rows, bits) => {
      const batch = new FlowRows(bits);
      for (const { r } of rows) batch.pushRecord(r);
      const kept = new FlowRows(bits + 1, centre);
      rows.forEach(({ tag }, i) => kept.pushRow(batch, i, tag));
      assert.deepEqual(kept.records(), rows.map(({ r }) => r));
      rows.forEach(({ tag }, i) => assert.equal(kept.tag(i), tag));
      rows.forEach(({ r }, i) => assert.equal(kept.lastMs(i), r.lastMs));
    }));
  });

  it('keeps a record whose ports, protocol, flags or domain do not fit their slots as it is', () => {
    const rows = new FlowRows();
    const odd = { exporter: 'e', domain: -1, srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', srcPort: 70_000, dstPort: 1.5, protocol: 300, bytes: 1, packets: 1, firstMs: 0, lastMs: 0, tcpFlags: 256, samplingRate: 1 };
    rows.pushRecord(odd);
    rows.pushRecord({ ...odd, domain: 0, srcPort: 1, dstPort: 2, protocol: 6, tcpFlags: 2 });
    const copy = new FlowRows();
    copy.pushRow(rows, 0);
    assert.deepEqual(rows.records(), [odd, { ...odd, domain: 0, srcPort: 1, dstPort: 2, protocol: 6, tcpFlags: 2 }]);
    assert.deepEqual(copy.records(), [odd]);
  });

  it('keeps canonical IPv4 addresses as numbers and anything else as text', () => {
    const rows = new FlowRows();
    const base = { exporter: 'e', domain: 0, srcPort: 1, dstPort: 2, protocol: 6, bytes: 1, packets: 1, firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1 };
    rows.pushRecord({ ...base, srcAddr: '192.0.2.1', dstAddr: '10.0.0.255' });
    rows.pushRecord({ ...base, srcAddr: '2001:db8::1', dstAddr: '10.0.0.1' });
    assert.equal(rows.src(0), 0xc0000201);
    assert.equal(rows.dst(0), 0x0a0000ff);
    assert.equal(rows.src(1), TEXT_ADDRESS);
    assert.equal(rows.dst(1), TEXT_ADDRESS);
    assert.equal(rows.dstText(1), '10.0.0.1');
  });

  it('takes back rows past a length, and starts over on clear()', () => {
    const rows = new FlowRows(1);
    const base = { exporter: 'e', domain: 0, srcPort: 1, dstPort: 2, protocol: 6, bytes: 1, packets: 1, firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1 };
    for (let i = 0; i < 5; i++) rows.pushRecord({ ...base, srcAddr: i % 2 === 0 ? `10.0.0.${i}` : `2001:db8::${i}`, dstAddr: '10.0.0.9' });
    rows.truncate(2);
    assert.equal(rows.length, 2);
    rows.pushRecord({ ...base, srcAddr: '10.9.9.9', dstAddr: '10.0.0.9' });
    assert.deepEqual(rows.records().map((r) => r.srcAddr), ['10.0.0.0', '2001:db8::1', '10.9.9.9']);
    rows.clear();
    assert.equal(rows.length, 0);
    assert.deepEqual(rows.records(), []);
  });
});

describe('ipv4Number() and ipv4Text()', () => {
  it('are each other\'s inverse on every address', () => {
    fc.assert(fc.property(fc.nat(2 ** 32 - 1), (n) => ipv4Number(ipv4Text(n)) === n));
  });

  it('refuse what is not canonical dotted IPv4', () => {
    for (const s of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1..2.3', '1.2.3.4 ', 'a.b.c.d', '::1', '1.2.3.-4']) {
      assert.equal(ipv4Number(s), -1, s);
    }
    assert.equal(ipv4Number('0.0.0.0'), 0);
    assert.equal(ipv4Number('255.255.255.255'), 2 ** 32 - 1);
  });
});
