import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { conversation, flow, flowsFor, loadLabels } from '../testing/fp-fixtures.js';
import { classify, formatBitRate } from './classify.js';
import { ACTIVITY_CLASSES, DEFAULT_SIGNATURES, SENSITIVE_CLASSES } from './signatures.js';

const VM = '10.0.0.5';
const USER = '198.51.100.20';
const FC = { numRuns: 200, seed: 20251125 };

describe('classify() on examples', () => {
  it('calls a VM serving a VNC session at 18 Mbit/s and 140 packets/s both ways a sensitive remote desktop, in numbers', () => {
    const v = classify(conversation({
      vm: VM, remote: USER, vmPort: 5900, remotePort: 52000, seconds: 60, ppsOut: 1600, ppsIn: 140, sizeOut: 1400, sizeIn: 60,
    }), VM);
    assert.equal(v.activity, 'remote-desktop');
    assert.equal(v.sensitive, true);
    assert.ok(v.score >= 0.6, `score ${v.score}`);
    const text = v.reasons.join('\n');
    assert.match(text, /tcp\/5900 served to 198\.51\.100\.20: 18 Mbit\/s to the user/);
    assert.match(text, /1600\/140 packets\/s out\/in/);
    assert.deepEqual(v.users.map((u) => [u.addr, u.share]), [[USER, 1]]);
  });

  it('finds a remote display on an unregistered port from behaviour alone', () => {
    const v = classify(conversation({
      vm: VM, remote: USER, vmPort: 6900, remotePort: 59791, seconds: 16, ppsOut: 64, ppsIn: 150, sizeOut: 40, sizeIn: 66,
    }), VM);
    assert.equal(v.activity, 'remote-desktop');
    assert.equal(v.sensitive, true);
    assert.equal(v.conversations[0]?.conversation.portPrior, undefined);
  });

  it('calls two-way UDP video at 30 packets/s of 600-900 bytes for a minute conferencing, with the relay as the user', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.50', protocol: 17, vmPort: 50500, remotePort: 50600, seconds: 60, ppsOut: 30, ppsIn: 30, sizeOut: 900, sizeIn: 600,
    }), VM);
    assert.equal(v.activity, 'conferencing');
    assert.equal(v.sensitive, true);
    assert.equal(v.users[0]?.addr, '203.0.113.50');
  });

  it('calls small UDP packets both ways at a low bit rate gaming', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.60', protocol: 17, vmPort: 51000, remotePort: 27015, seconds: 30, ppsOut: 20, ppsIn: 30, sizeOut: 80, sizeIn: 200,
    }), VM);
    assert.equal(v.activity, 'gaming');
    assert.equal(v.sensitive, true);
  });

  it('calls a QUIC download of full-size packets at 4 Mbit/s video-streaming', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.70', protocol: 17, vmPort: 55000, remotePort: 443, seconds: 20, ppsOut: 40, ppsIn: 370, sizeOut: 70, sizeIn: 1350,
    }), VM);
    assert.equal(v.activity, 'video-streaming');
    assert.equal(v.sensitive, true);
  });

  it('calls a 50 MB TCP download bulk-transfer and not sensitive', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.80', vmPort: 40000, remotePort: 80, seconds: 40, ppsOut: 450, ppsIn: 900, sizeOut: 52, sizeIn: 1400,
    }), VM);
    assert.equal(v.activity, 'bulk-transfer');
    assert.equal(v.sensitive, false);
  });

  it('calls a mail client\'s short IMAP exchange background', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.90', vmPort: 46045, remotePort: 143, seconds: 4, ppsOut: 5, ppsIn: 3, sizeOut: 60, sizeIn: 160,
    }), VM);
    assert.equal(v.activity, 'background');
    assert.equal(v.sensitive, false);
    assert.match(v.reasons.join('\n'), /IMAP/);
  });

  it('falls back to background with score 0 when the VM has no records, and says so', () => {
    const v = classify([flow({ srcAddr: '192.0.2.1', dstAddr: '192.0.2.2', packets: 10, bytes: 1000 })], VM);
    assert.equal(v.activity, 'background');
    assert.equal(v.score, 0);
    assert.equal(v.sensitive, false);
    assert.match(v.reasons.join('\n'), /no flow records/);
  });

  it('keeps a desktop sensitive while a download 20 times its size runs beside the display session', () => {
    const v = classify([
      ...conversation({ vm: VM, remote: USER, vmPort: 3389, remotePort: 50001, seconds: 60, ppsOut: 60, ppsIn: 30, sizeOut: 400, sizeIn: 80 }),
      ...conversation({ vm: VM, remote: '203.0.113.80', vmPort: 40000, remotePort: 80, seconds: 60, ppsOut: 600, ppsIn: 1200, sizeOut: 52, sizeIn: 1400 }),
    ], VM);
    assert.equal(v.sensitive, true);
    assert.equal(v.activity, 'remote-desktop');
    assert.equal(v.users[0]?.addr, USER);
  });

  it('lists each user of a shared desktop with its share of the interactive traffic', () => {
    const v = classify([
      ...conversation({ vm: VM, remote: '198.51.100.1', vmPort: 3389, remotePort: 50001, seconds: 30, ppsOut: 60, ppsIn: 30, sizeOut: 300, sizeIn: 80 }),
      ...conversation({ vm: VM, remote: '198.51.100.2', vmPort: 3389, remotePort: 50002, seconds: 30, ppsOut: 20, ppsIn: 10, sizeOut: 300, sizeIn: 80 }),
    ], VM);
    assert.deepEqual(v.users.map((u) => [u.addr, u.share, u.services]), [
      ['198.51.100.1', 0.75, ['tcp/3389']], ['198.51.100.2', 0.25, ['tcp/3389']],
    ]);
  });

  it('does not let a port outweigh the traffic: a bulk download from a game port stays bulk-transfer', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.81', vmPort: 40001, remotePort: 3724, seconds: 40, ppsOut: 450, ppsIn: 900, sizeOut: 52, sizeIn: 1400,
    }), VM);
    assert.equal(v.activity, 'bulk-transfer');
    assert.match(v.reasons.join('\n'), /port prior tcp\/3724 is Blizzard games \(gaming\), against/);
  });
});

describe('classify() on what the nDPI 4.2 tune half taught (examples and properties)', () => {
  it('does not call an SSH client a remote desktop: port 22 says "desktop" only when the VM serves it', () => {
    const client = classify(conversation({
      vm: VM, remote: '203.0.113.22', vmPort: 58395, remotePort: 22, seconds: 240, ppsOut: 0.6, ppsIn: 0.4, sizeOut: 84, sizeIn: 187,
    }), VM);
    assert.equal(client.sensitive, false);
    assert.notEqual(client.activity, 'remote-desktop');
    const server = classify(conversation({
      vm: VM, remote: USER, vmPort: 22, remotePort: 50000, seconds: 60, ppsOut: 20, ppsIn: 20, sizeOut: 120, sizeIn: 90,
    }), VM);
    assert.equal(server.conversations[0]?.conversation.portPrior?.service, 'SSH');
  });

  it('does not call a VM serving HTTPS a display server, however busy its users are', () => {
    const v = classify(conversation({
      vm: VM, remote: USER, vmPort: 443, remotePort: 49836, seconds: 30, ppsOut: 40, ppsIn: 30, sizeOut: 900, sizeIn: 300, protocol: 17,
    }), VM);
    assert.equal(v.conversations[0]?.rules['remote-desktop'], undefined);
    assert.notEqual(v.activity, 'remote-desktop');
  });

  it('calls UDP keep-alives every ten seconds background, not game state', () => {
    const flows = [0, 1, 2, 3].flatMap((i) => conversation({
      vm: VM, remote: '203.0.113.60', vmPort: 48890 + i, remotePort: 6000, seconds: 86, ppsOut: 0.06, ppsIn: 0.06, sizeOut: 44, sizeIn: 44, protocol: 17,
    }));
    const v = classify(flows, VM);
    assert.equal(v.sensitive, false);
    assert.equal(v.activity, 'background');
  });

  it('calls a 1 MB page load over HTTPS browsing (background), not a file transfer', () => {
    const v = classify(conversation({
      vm: VM, remote: '203.0.113.80', vmPort: 64411, remotePort: 443, seconds: 6, ppsOut: 80, ppsIn: 125, sizeOut: 64, sizeIn: 1430,
    }), VM);
    assert.equal(v.activity, 'background');
    assert.equal(v.sensitive, false);
    assert.match(v.reasons.join('\n'), /web download/);
  });

  it('never applies a remote-desktop port prior to a conversation the VM opened (property)', () => {
    const rdPorts = DEFAULT_SIGNATURES.ports.filter((p) => p.activity === 'remote-desktop').map((p) => p.from);
    fc.assert(fc.property(fc.constantFrom(...rdPorts), fc.integer({ min: 32768, max: 65535 }), fc.constantFrom(6, 17),
      fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), (port, ephemeral, protocol, ppsOut, ppsIn) => {
        const v = classify(conversation({
          vm: VM, remote: USER, vmPort: ephemeral, remotePort: port, seconds: 10, ppsOut, ppsIn, sizeOut: 100, sizeIn: 100, protocol,
        }), VM);
        for (const cv of v.conversations) {
          if (cv.conversation.vmRole !== 'server') assert.notEqual(cv.conversation.portPrior?.activity, 'remote-desktop');
        }
      }), FC);
  });
});

describe('classify() on the labelled captures', () => {
  const labels = loadLabels();

  it('explains every verdict with reasons that carry numbers', () => {
    for (const c of labels) {
      const v = classify(flowsFor(c.file), c.vmIp);
      assert.ok(v.reasons.length >= 2, `${c.file}: ${v.reasons.join(' | ')}`);
      assert.match(v.reasons[0]!, /score \d\.\d\d/, c.file);
      assert.ok(v.reasons.slice(1).some((r) => /\d+(\.\d+)? (k|M)?bit\/s|\d+ (k|M)?B/.test(r)), `${c.file}: ${v.reasons.join(' | ')}`);
    }
  });

  it('keeps the score in [0, 1] and the activity on the same side of the line as the score', () => {
    for (const c of labels) {
      const v = classify(flowsFor(c.file), c.vmIp);
      assert.ok(v.score >= 0 && v.score <= 1, `${c.file}: ${v.score}`);
      assert.equal(v.sensitive, v.score >= DEFAULT_SIGNATURES.sensitiveAt);
      assert.equal(SENSITIVE_CLASSES.has(v.activity), v.sensitive, c.file);
      assert.ok(ACTIVITY_CLASSES.includes(v.activity));
      const shares = v.users.reduce((t, u) => t + u.share, 0);
      assert.ok(shares <= 1 + 1e-9, `${c.file}: user shares add to ${shares}`);
    }
  });

  it('gives the same verdict for the same records in any order (property)', () => {
    fc.assert(fc.property(fc.constantFrom(...labels), fc.array(fc.nat(), { minLength: 1, maxLength: 200 }), (c, keys) => {
      const flows = flowsFor(c.file);
      const shuffled = flows.map((f, i) => ({ f, k: keys[i % keys.length]! * 1000 + i })).sort((a, b) => a.k - b.k).map((x) => x.f);
      assert.deepEqual(classify(shuffled, c.vmIp), classify(flows, c.vmIp));
    }), { numRuns: 100, seed: FC.seed });
  });
});

describe('classify() on arbitrary records (property)', () => {
  it('never throws, keeps the score in [0, 1] and always gives reasons', () => {
    const arbFlow = fc.record({
      out: fc.boolean(),
      remote: fc.constantFrom('192.0.2.1', '192.0.2.2', '192.0.2.3'),
      srcPort: fc.integer({ min: 0, max: 65535 }),
      dstPort: fc.constantFrom(22, 53, 80, 443, 3389, 3478, 5900, 8801, 27015, 40000, 55555),
      protocol: fc.constantFrom(1, 6, 17),
      packets: fc.integer({ min: 0, max: 100_000 }),
      size: fc.integer({ min: 0, max: 1500 }),
      firstMs: fc.integer({ min: 0, max: 60_000 }),
      durMs: fc.integer({ min: 0, max: 60_000 }),
    }).map((r) => flow({
      srcAddr: r.out ? VM : r.remote, dstAddr: r.out ? r.remote : VM, srcPort: r.srcPort, dstPort: r.dstPort,
      protocol: r.protocol, packets: r.packets, bytes: r.packets * r.size, firstMs: r.firstMs, lastMs: r.firstMs + r.durMs,
    }));
    fc.assert(fc.property(fc.array(arbFlow, { maxLength: 40 }), (flows) => {
      const v = classify(flows, VM);
      assert.ok(v.score >= 0 && v.score <= 1);
      assert.ok(v.reasons.length >= 1);
      assert.deepEqual(classify(flows, VM), v);
    }), FC);
  });
});

describe('formatBitRate()', () => {
  it('writes rates the way an operator reads them', () => {
    assert.equal(formatBitRate(18_200_000), '18 Mbit/s');
    assert.equal(formatBitRate(1_250_000), '1.3 Mbit/s');
    assert.equal(formatBitRate(80_400), '80 kbit/s');
    assert.equal(formatBitRate(933), '933 bit/s');
  });
});
