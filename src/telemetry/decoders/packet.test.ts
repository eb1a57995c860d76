import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBytes, ethernetHeader } from '../../testing/flow-encoders.js';
import { parseEthernet, parseIpv6 } from './packet.js';

const concat = (...parts: (Uint8Array | number[])[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

describe('parseEthernet()', () => {
  it('reads addresses, ports and TCP flags through two VLAN tags', () => {
    const inner = ethernetHeader({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 6, srcPort: 1, dstPort: 2, tcpFlags: 0x12 });
    const qinq = concat(inner.subarray(0, 12), [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20], inner.subarray(12));
    assert.deepEqual(parseEthernet(qinq, 0, qinq.length), { srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', protocol: 6, srcPort: 1, dstPort: 2, tcpFlags: 0x12 });
  });

  it('keeps the ports of a TCP header cut before its flags, and drops ports of later fragments', () => {
    const h = ethernetHeader({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 6, srcPort: 1, dstPort: 2, tcpFlags: 0x12 });
    assert.deepEqual(parseEthernet(h, 0, 14 + 20 + 4), { srcAddr: '10.0.0.1', dstAddr: '10.0.0.2', protocol: 6, srcPort: 1, dstPort: 2, tcpFlags: 0 });
    const frag = h.slice();
    frag[14 + 7] = 0x10; // fragment offset 16
    assert.equal(parseEthernet(frag, 0, frag.length)?.srcPort, 0);
  });

  it('returns null for frames that are not IP or too short to tell', () => {
    const h = ethernetHeader({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17 });
    assert.equal(parseEthernet(h, 0, 20), null);
    assert.equal(parseEthernet(concat(h.subarray(0, 12), [0x08, 0x06], new Array<number>(28).fill(0)), 0, 42), null);
  });
});

describe('parseIpv6()', () => {
  it('skips hop-by-hop and destination options headers to reach UDP', () => {
    const fixed = concat([0x60, 0, 0, 0, 0, 40, 0, 64], addressBytes('2001:db8::1'), addressBytes('2001:db8::2'));
    const hopByHop = [60, 0, 1, 4, 0, 0, 0, 0];
    const destOpts = [17, 1, ...new Array<number>(14).fill(0)];
    const udp = [0x14, 0xe9, 0x00, 0x35, 0, 8, 0, 0];
    const p = concat(fixed, hopByHop, destOpts, udp);
    assert.deepEqual(parseIpv6(p, 0, p.length), { srcAddr: '2001:db8::1', dstAddr: '2001:db8::2', protocol: 17, srcPort: 5353, dstPort: 53, tcpFlags: 0 });
  });
});
