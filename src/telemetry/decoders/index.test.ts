import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeIpfix, encodeNetflow5, encodeNetflow9, encodeSflow } from '../../testing/flow-encoders.js';
import { decoders, ipfixDecoder, netflow5Decoder, netflow9Decoder, pickDecoder, sflowDecoder } from './index.js';
import { addressBytes } from '../../testing/flow-encoders.js';
import { FlowRows } from '../flow-rows.js';
import { makeDecoder, ipv6, readUint } from './wire.js';

describe('pickDecoder()', () => {
  it('picks each format by its version field', () => {
    assert.equal(pickDecoder(encodeIpfix({ exportS: 1, sequence: 0, domain: 0, sets: [] })), ipfixDecoder);
    assert.equal(pickDecoder(encodeNetflow9({ uptimeMs: 1, unixS: 1, sequence: 0, sourceId: 0, sets: [] })), netflow9Decoder);
    assert.equal(pickDecoder(encodeNetflow5({ uptimeMs: 1, unixS: 1, sequence: 0, records: [] })), netflow5Decoder);
    assert.equal(pickDecoder(encodeSflow({ agent: '192.0.2.1', subAgentId: 0, sequence: 0, uptimeMs: 0, samples: [] })), sflowDecoder);
  });

  it('picks none for other versions, a zero u16 that is not sFlow 5, or too few bytes', () => {
    for (const d of [[0, 7, 0, 0], [0, 0, 0, 4], [0, 0, 0], [0x0a], []]) assert.equal(pickDecoder(Uint8Array.from(d)), undefined);
  });

  it('lists every decoder once, each accepting only what pickDecoder gives it', () => {
    assert.deepEqual(decoders.map((d) => d.name), ['ipfix', 'netflow9', 'netflow5', 'sflow5']);
    const d = encodeNetflow5({ uptimeMs: 1, unixS: 1, sequence: 0, records: [] });
    assert.deepEqual(decoders.filter((x) => x.accepts(d)).map((x) => x.name), ['netflow5']);
  });
});

describe('wire helpers', () => {
  it('prints IPv6 addresses as RFC 5952 says', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['0000:0000:0000:0000:0000:0000:0000:0000', '::'],
      ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
      ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'],
      ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
      ['fe80:0000:0000:0000:0000:0000:0000:0000', 'fe80::'],
      ['0000:0000:0000:0000:0000:ffff:c000:0201', '::ffff:192.0.2.1'],
    ];
    for (const [full, text] of cases) {
      const bytes = Uint8Array.from(full.split(':').flatMap((g) => [parseInt(g.slice(0, 2), 16), parseInt(g.slice(2), 16)]));
      assert.equal(ipv6(bytes, 0), text);
      assert.deepEqual(addressBytes(text), bytes);
    }
  });

  it('reads unsigned integers of 1 to 8 bytes, clamping above 2^53 - 1', () => {
    const b = Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
    assert.equal(readUint(b, 0, 1), 1);
    assert.equal(readUint(b, 0, 3), 0x010203);
    assert.equal(readUint(b, 0, 7), 0x01020304050607);
    assert.equal(readUint(Uint8Array.from([0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0, 8), Number.MAX_SAFE_INTEGER);
    assert.equal(readUint(Uint8Array.from([0, 0x20, 0, 0, 0, 0, 0, 0]), 0, 8), Number.MAX_SAFE_INTEGER);
    assert.equal(readUint(new Uint8Array(8).fill(0xff), 0, 8), Number.MAX_SAFE_INTEGER);
  });

  it('turns a decoder bug into an error result instead of an exception, taking back the rows it appended', () => {
    const buggy = makeDecoder('ipfix', () => true, (_d, ctx, rows) => {
      rows.pushRecord({ exporter: ctx.exporter, domain: 0, srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', srcPort: 1, dstPort: 2, protocol: 6, bytes: 1, packets: 1, firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1 });
      throw new RangeError('offset out of bounds');
    });
    const ctx = { exporter: 'x', nowMs: 0, templates: { get: () => undefined, set: () => 'new' as const, delete: () => undefined } };
    const r = buggy.decode(new Uint8Array(4), ctx);
    assert.deepEqual(r.errors, [{ kind: 'unsupported', detail: 'ipfix decoder failed: offset out of bounds' }]);
    assert.deepEqual(r.records, []);
    const rows = new FlowRows();
    rows.pushRecord({ exporter: 'x', domain: 0, srcAddr: '2001:db8::1', dstAddr: '10.0.0.2', srcPort: 1, dstPort: 2, protocol: 6, bytes: 1, packets: 1, firstMs: 0, lastMs: 0, tcpFlags: 0, samplingRate: 1 });
    assert.equal(buggy.decodeInto(new Uint8Array(4), ctx, rows).errors.length, 1);
    assert.equal(rows.length, 1);
    assert.equal(rows.record(0).srcAddr, '2001:db8::1');
  });
});
