import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { conversation, flow, flowsFor, loadLabels } from '../testing/fp-fixtures.js';
import { extractFeatures, inferRole, metric, ramp } from './features.js';
import { DEFAULT_PORTS } from './signatures.js';

const FC = { numRuns: 200, seed: 20251125 };
const VM = '10.0.0.5';

describe('extractFeatures()', () => {
  it('pairs both directions of a conversation and names "out" as VM → remote', () => {
    const f = extractFeatures(conversation({
      vm: VM, remote: '198.51.100.7', vmPort: 3389, remotePort: 51000, seconds: 10, ppsOut: 100, ppsIn: 40, sizeOut: 900, sizeIn: 80,
    }), VM);
    assert.equal(f.conversations.length, 1);
    const c = f.conversations[0]!;
    assert.equal(c.packetsOut, 1000);
    assert.equal(c.packetsIn, 400);
    assert.equal(c.meanPacketOutBytes, 900);
    assert.equal(c.meanPacketInBytes, 80);
    assert.equal(c.packetsPerSecOut, 100);
    assert.equal(c.bitsPerSecOut, 720_000);
    assert.equal(c.vmRole, 'server');
    assert.equal(c.servicePort, 3389);
    assert.equal(c.portPrior?.service, 'RDP');
    assert.ok(Math.abs(c.uploadShare - 900_000 / 932_000) < 1e-12);
    assert.equal(c.twoWayRatio, 0.4);
  });

  it('ignores records that do not involve the VM, and the VM talking to itself', () => {
    const f = extractFeatures([
      flow({ srcAddr: '192.0.2.1', dstAddr: '192.0.2.2', packets: 5, bytes: 500 }),
      flow({ srcAddr: VM, dstAddr: VM, packets: 5, bytes: 500 }),
    ], VM);
    assert.equal(f.conversations.length, 0);
    assert.equal(f.records, 0);
  });

  it('measures rates over at least a second, so a 50 ms burst is not 1,000 packets/s', () => {
    const f = extractFeatures([flow({ srcAddr: '203.0.113.9', dstAddr: VM, srcPort: 443, dstPort: 50000, protocol: 17, packets: 50, bytes: 60_000, firstMs: 0, lastMs: 50 })], VM);
    assert.equal(f.conversations[0]!.packetsPerSecIn, 50);
  });

  it('rates a steady two-way small-packet session as interactive and a one-way download as not', () => {
    const session = extractFeatures(conversation({
      vm: VM, remote: '198.51.100.7', vmPort: 5901, remotePort: 50123, seconds: 30, ppsOut: 60, ppsIn: 50, sizeOut: 120, sizeIn: 70,
    }), VM);
    const download = extractFeatures(conversation({
      vm: VM, remote: '198.51.100.8', vmPort: 50124, remotePort: 443, seconds: 30, ppsOut: 2, ppsIn: 300, sizeOut: 60, sizeIn: 1400,
    }), VM);
    assert.equal(session.conversations[0]!.interactivity, 1);
    assert.equal(download.conversations[0]!.interactivity, 0);
  });

  it('measures burstiness as the silent part of the window', () => {
    const f = extractFeatures([
      ...conversation({ vm: VM, remote: '198.51.100.1', vmPort: 40000, remotePort: 443, seconds: 10, ppsOut: 5, ppsIn: 5, sizeOut: 100, sizeIn: 100, startMs: 0 }),
    ], VM, { windowStartMs: 0, windowEndMs: 40_000 });
    assert.equal(f.activeFraction, 0.25);
    assert.equal(f.burstiness, 0.75);
  });

  it('gives the same features whatever order the records arrive in (property)', () => {
    const labels = loadLabels();
    fc.assert(fc.property(fc.constantFrom(...labels), fc.integer(), (c, seed) => {
      const flows = flowsFor(c.file);
      const shuffled = [...flows].sort((a, b) => hash(a, seed) - hash(b, seed));
      assert.deepEqual(extractFeatures(shuffled, c.vmIp), extractFeatures(flows, c.vmIp));
    }), { numRuns: 100, seed: FC.seed });
  });

  it('keeps every per-conversation quantity finite and every share in [0, 1] on any records (property)', () => {
    const arbFlow = fc.record({
      remote: fc.constantFrom('192.0.2.1', '192.0.2.2', '2001:db8::1'),
      out: fc.boolean(),
      srcPort: fc.integer({ min: 0, max: 65535 }),
      dstPort: fc.integer({ min: 0, max: 65535 }),
      protocol: fc.constantFrom(1, 6, 17, 50),
      packets: fc.integer({ min: 0, max: 10_000 }),
      size: fc.integer({ min: 0, max: 9000 }),
      firstMs: fc.integer({ min: 0, max: 100_000 }),
      durMs: fc.integer({ min: 0, max: 100_000 }),
    }).map((r) => flow({
      srcAddr: r.out ? VM : r.remote, dstAddr: r.out ? r.remote : VM, srcPort: r.srcPort, dstPort: r.dstPort,
      protocol: r.protocol, packets: r.packets, bytes: r.packets * r.size, firstMs: r.firstMs, lastMs: r.firstMs + r.durMs,
    }));
    fc.assert(fc.property(fc.array(arbFlow, { maxLength: 30 }), (flows) => {
      const f = extractFeatures(flows, VM);
      for (const share of [f.uploadShare, f.udpByteShare, f.interactivity, f.activeFraction, f.burstiness]) {
        assert.ok(share >= 0 && share <= 1, `share ${share}`);
      }
      for (const c of f.conversations) {
        for (const m of ['twoWayRatio', 'uploadShare', 'downloadShare', 'heavyShare', 'interactivity'] as const) {
          const v = metric(c, m);
          assert.ok(v >= 0 && v <= 1, `${m} = ${v}`);
        }
        for (const m of ['packetsPerSecIn', 'bitsPerSec', 'meanPacketBytes', 'meanPacketHeavyBytes', 'durationMs'] as const) {
          assert.ok(Number.isFinite(metric(c, m)), `${m} = ${metric(c, m)}`);
        }
      }
    }), FC);
  });
});

describe('inferRole()', () => {
  it('says the VM serves when its port is a registered service and the peer\'s is not', () => {
    assert.equal(inferRole(3389, 51652, 17, DEFAULT_PORTS), 'server');
  });
  it('says the VM is the client of a web server even from a registered source port', () => {
    assert.equal(inferRole(6112, 443, 6, DEFAULT_PORTS), 'client');
  });
  it('lets a registered service port beat a privileged source port (an NFS client on 1022)', () => {
    assert.equal(inferRole(1022, 2049, 17, DEFAULT_PORTS), 'client');
  });
  it('calls two ephemeral ports peers, and ICMP always a peer', () => {
    assert.equal(inferRole(46757, 39065, 17, DEFAULT_PORTS), 'peer');
    assert.equal(inferRole(0, 0, 1, DEFAULT_PORTS), 'peer');
  });
});

describe('ramp()', () => {
  it('rises from lo to hi, falls when lo > hi, and treats NaN as no evidence', () => {
    assert.equal(ramp(5, { lo: 0, hi: 10 }), 0.5);
    assert.equal(ramp(300, { lo: 400, hi: 200 }), 0.5);
    assert.equal(ramp(100, { lo: 400, hi: 200 }), 1);
    assert.equal(ramp(Number.NaN, { lo: 0, hi: 1 }), 0);
  });
});

function hash(r: object, seed: number): number {
  let h = seed | 0;
  for (const ch of JSON.stringify(r)) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h;
}
