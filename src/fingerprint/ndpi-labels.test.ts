import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NDPI_CLASSES, ndpiClassOf } from './ndpi-classes.js';
import { EXCLUDED_NAME, isPrivate, isUnicastHost, labelCapture, parseNdpiOut } from './ndpi-labels.js';
import { ACTIVITY_CLASSES } from './signatures.js';

/** One flow line as ndpiReader 4.2 prints it. */
const line = (n: number, proto: string, a: string, b: string, name: string, pa: number, ba: number, pb: number, bb: number, extra = ''): string =>
  `\t${n}\t${proto} ${a} <-> ${b} ${extra}[proto: 91.1/${name}][Encrypted][Confidence: DPI][cat: Web/5][${pa} pkts/${ba} bytes <-> ${pb} pkts/${bb} bytes][Goodput ratio: 1/2]`;

describe('ndpiClassOf()', () => {
  it('classes an application by what it is, through its master protocol', () => {
    assert.equal(ndpiClassOf('TLS.Zoom'), 'conferencing');
    assert.equal(ndpiClassOf('STUN.WhatsAppCall'), 'conferencing');
    assert.equal(ndpiClassOf('HTTP.NetFlix'), 'video-streaming');
    assert.equal(ndpiClassOf('TLS.AnyDesk'), 'remote-desktop');
    assert.equal(ndpiClassOf('NetBIOS.SMBv23'), 'bulk-transfer');
    assert.equal(ndpiClassOf('Steam'), 'gaming');
    assert.equal(ndpiClassOf('WhatsApp'), 'background');
  });

  it('calls a name look-up for an application background, and Unknown no class at all', () => {
    assert.equal(ndpiClassOf('DNS.NetFlix'), 'background');
    assert.equal(ndpiClassOf('DNS.Zoom'), 'background');
    assert.equal(ndpiClassOf('Unknown'), undefined);
  });

  it('gives every name some class of the six (unknown names are background)', () => {
    fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 20 }).filter((s) => s !== 'Unknown'), (name) => {
      const k = ndpiClassOf(name);
      assert.ok(k !== undefined && (ACTIVITY_CLASSES as readonly string[]).includes(k));
    }));
    for (const k of Object.values(NDPI_CLASSES)) assert.ok((ACTIVITY_CLASSES as readonly string[]).includes(k));
  });
});

describe('parseNdpiOut()', () => {
  it('reads IPv4 and IPv6 endpoints, VLAN-tagged lines, and both directions\' packets and bytes', () => {
    const flows = parseNdpiOut([
      'Guessed flow protos:\t1', '',
      line(1, 'UDP', '192.168.1.117:58327', '109.94.160.99:8801', 'Zoom', 10, 7806, 175, 184434),
      line(2, 'TCP', '[2001:db8::1]:60205', '[2604:a880::b001]:443', 'TLS', 14, 2312, 14, 13085),
      line(3, 'TCP', '10.10.10.16:51358', '10.10.10.17:27017', 'MongoDB', 3, 491, 1, 78, '[VLAN: 100]'),
      '\t1\t 192.168.5.16             \t 2      ',
    ].join('\n'));
    assert.deepEqual(flows.map((f) => [f.initiator, f.initiatorPort, f.responder, f.responderPort, f.protocol, f.packets, f.bytes]), [
      ['192.168.1.117', 58327, '109.94.160.99', 8801, 'Zoom', 185, 192240],
      ['2001:db8::1', 60205, '2604:a880::b001', 443, 'TLS', 28, 15397],
      ['10.10.10.16', 51358, '10.10.10.17', 27017, 'MongoDB', 4, 569],
    ]);
  });
});

describe('address classes', () => {
  it('knows private, multicast, broadcast and loopback addresses', () => {
    for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.1', '192.168.0.1', '100.64.1.1', 'fd00::1', 'fe80::1']) assert.ok(isPrivate(a), a);
    for (const a of ['8.8.8.8', '172.32.0.1', '2001:db8::1', '100.128.0.1']) assert.ok(!isPrivate(a), a);
    for (const a of ['224.0.0.251', '255.255.255.255', '127.0.0.1', '0.0.0.0', '::1', 'ff02::c']) assert.ok(!isUnicastHost(a), a);
  });
});

describe('labelCapture()', () => {
  it('labels a capture by its dominant class by bytes and picks the local end of that class\'s flows', () => {
    const l = labelCapture('call.pcap', [
      line(1, 'UDP', '192.168.1.5:50000', '203.0.113.9:3478', 'STUN.WhatsAppCall', 400, 80_000, 400, 80_000),
      line(2, 'TCP', '192.168.1.5:50001', '198.51.100.7:443', 'TLS.Google', 30, 3_000, 30, 60_000),
      line(3, 'TCP', '192.168.1.99:50001', '198.51.100.8:443', 'Unknown', 3000, 3_000_000, 30, 60_000),
    ].join('\n'));
    assert.deepEqual(l.kept && [l.vmIp, l.activity, l.sensitive], ['192.168.1.5', 'conferencing', true]);
  });

  it('makes the VM of a remote desktop the side that serves it, or the local client of a public relay', () => {
    const served = labelCapture('rdp.pcap', line(1, 'TCP', '192.168.1.20:50000', '192.168.1.30:3389', 'RDP', 400, 40_000, 600, 600_000));
    assert.deepEqual(served.kept && [served.vmIp, served.activity], ['192.168.1.30', 'remote-desktop']);
    const relayed = labelCapture('anydesk.pcap', line(1, 'TCP', '192.168.1.20:50000', '51.83.238.219:80', 'TLS.AnyDesk', 400, 40_000, 600, 600_000));
    assert.deepEqual(relayed.kept && [relayed.vmIp, relayed.activity], ['192.168.1.20', 'remote-desktop']);
  });

  it('excludes by rule written in advance: test-of-nDPI names, nothing recognised, no flow of >= 3 packets', () => {
    assert.equal(labelCapture('fuzz-2021.pcap', line(1, 'UDP', '10.0.0.1:1', '10.0.0.2:2', 'DNS', 5, 500, 5, 500)).kept, false);
    assert.equal(labelCapture('x.pcap', line(1, 'UDP', '10.0.0.1:1', '10.0.0.2:2', 'Unknown', 5, 500, 5, 500)).kept, false);
    assert.equal(labelCapture('y.pcap', line(1, 'UDP', '10.0.0.1:1', '8.8.8.8:53', 'DNS', 1, 80, 1, 120)).kept, false);
    assert.equal(labelCapture('z.pcap', line(1, 'TCP', '127.0.0.1:1', '127.0.0.1:2', 'AMQP', 50, 5000, 50, 5000)).kept, false);
    for (const n of ['malformed_dns.pcap', 'WebattackXSS.pcap', 'synscan.pcap', 'quic-mvfst-22_decryption_error.pcap']) assert.ok(EXCLUDED_NAME.test(n), n);
    for (const n of ['zoom.pcap', 'netflix.pcap', 'teams.pcap']) assert.ok(!EXCLUDED_NAME.test(n), n);
  });

  it('is a function of the flows alone: their order in the file does not change the label', () => {
    const ip = fc.tuple(fc.constantFrom(10, 192, 203), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 4 }))
      .map(([a, b, c]) => (a === 192 ? `192.168.${b}.${c}` : `${a}.0.${b}.${c}`));
    const flowLine = fc.record({
      a: ip, b: ip, name: fc.constantFrom('TLS.Zoom', 'HTTP.NetFlix', 'TLS', 'DNS', 'BitTorrent', 'RDP', 'Steam', 'Unknown'),
      pa: fc.integer({ min: 0, max: 50 }), ba: fc.integer({ min: 0, max: 99_999 }),
      pb: fc.integer({ min: 0, max: 50 }), bb: fc.integer({ min: 0, max: 99_999 }),
    });
    fc.assert(fc.property(fc.array(flowLine, { minLength: 1, maxLength: 8 }), fc.integer(), (rows, seed) => {
      const lines = rows.map((r, i) => line(i + 1, 'TCP', `${r.a}:${1000 + i}`, `${r.b}:${2000 + i}`, r.name, r.pa, r.ba, r.pb, r.bb));
      const shuffled = [...lines].sort((x, y) => ((x.length * 31 + seed) % 7) - ((y.length * 31 + seed) % 7) || (x < y ? -1 : 1));
      const l1 = labelCapture('p.pcap', lines.join('\n'));
      const l2 = labelCapture('p.pcap', shuffled.join('\n'));
      assert.deepEqual(l1.kept && [l1.vmIp, l1.activity], l2.kept && [l2.vmIp, l2.activity]);
      assert.equal(l1.kept, l2.kept);
      if (l1.kept) assert.ok(rows.some((r) => r.a === l1.vmIp || r.b === l1.vmIp));
    }), { numRuns: 200 });
  });
});
