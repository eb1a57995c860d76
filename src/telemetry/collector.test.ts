import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { encodeIpfix, encodeNetflow5, type TemplateSpec, type V5Record } from '../testing/flow-encoders.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS, type CollectorOptions, type VmWindow } from './collector.js';
import type { FlowRecord } from './flow.js';
import { createInventory, parseInventory } from './inventory.js';
import { parseListen } from './udp.js';

const rec = (i: number, src = '10.0.0.5'): V5Record => ({
  src, dst: `203.0.113.${i % 250}`, srcPort: 5900, dstPort: 40000 + i, protocol: 6, packets: 10, bytes: 1000,
  firstUptimeMs: 1000, lastUptimeMs: 2000,
});
const v5 = (sequence: number, n = 10): Uint8Array => encodeNetflow5({ uptimeMs: 10_000, unixS: 1_700_000_000, sequence, records: Array.from({ length: n }, (_, i) => rec(i)) });

function core(over: Partial<CollectorOptions> = {}): { c: CollectorCore; windows: VmWindow[] } {
  const windows: VmWindow[] = [];
  const c = new CollectorCore({
    ...DEFAULT_COLLECTOR_OPTIONS, inventory: createInventory([{ vm: 'vm-1' as VmId, ips: ['10.0.0.5'] }]),
    onWindow: (w) => windows.push(w), log: silentLogger, ...over,
  });
  return { c, windows };
}

const flow = (lastMs: number, i = 0): FlowRecord => ({
  exporter: 'x', domain: 0, srcAddr: '10.0.0.5', dstAddr: `198.51.100.${i % 250}`, srcPort: 1000 + i, dstPort: 443, protocol: 6,
  bytes: 100, packets: 1, firstMs: lastMs, lastMs, tcpFlags: 0, samplingRate: 1,
});

describe('CollectorCore', () => {
  it('counts a gap in NetFlow v5 sequence numbers as lost records', () => {
    const { c } = core();
    c.ingest(v5(0), 'e:1', 0);
    c.ingest(v5(30), 'e:1', 0); // 20 records never arrived
    assert.equal(c.stats.lostRecords, 20);
    assert.equal(c.stats.records, 20);
  });

  it('counts a late datagram once, as out of order, not as loss twice', () => {
    const { c } = core();
    for (const s of [0, 20, 10, 30]) c.ingest(v5(s), 'e:1', 0);
    assert.equal(c.stats.outOfOrder, 1);
    assert.equal(c.stats.lostRecords, 10, 'only the gap 10..20 before the late one arrived');
  });

  it('keeps sequence numbers apart per exporter', () => {
    const { c } = core();
    c.ingest(v5(0), 'e:1', 0);
    c.ingest(v5(0), 'e:2', 0);
    c.ingest(v5(10), 'e:1', 0);
    assert.equal(c.stats.lostRecords + c.stats.outOfOrder, 0);
  });

  it('forgets the exporter heard least recently beyond maxExporters, and starts it over when it comes back', () => {
    const { c } = core({ maxExporters: 2 });
    c.ingest(v5(0), 'e:1', 0);
    c.ingest(v5(0), 'e:2', 0);
    c.ingest(v5(10), 'e:1', 0); // e:1 is now the most recent
    c.ingest(v5(0), 'e:3', 0); // e:2 is forgotten
    assert.equal(c.stats.exporters, 2);
    c.ingest(v5(500), 'e:2', 0); // new again: no loss counted; e:1 is forgotten in turn
    c.ingest(v5(20), 'e:1', 0); // new again too: no loss counted
    c.ingest(v5(30), 'e:1', 0);
    assert.equal(c.stats.lostRecords + c.stats.outOfOrder, 0);
    c.ingest(v5(60), 'e:1', 0); // 20 records missing, counted: e:1 is tracked again
    assert.equal(c.stats.lostRecords, 20);
  });

  it('keeps sequence numbers apart per observation domain (NetFlow v5 engine) of one exporter', () => {
    const { c } = core();
    const at = (sequence: number, engineId: number): Uint8Array => encodeNetflow5({ uptimeMs: 10_000, unixS: 1_700_000_000, sequence, engineId, records: [rec(1)] });
    c.ingest(at(0, 1), 'e:1', 0);
    c.ingest(at(500, 2), 'e:1', 0);
    c.ingest(at(1, 1), 'e:1', 0);
    c.ingest(at(501, 2), 'e:1', 0);
    assert.equal(c.stats.lostRecords + c.stats.outOfOrder, 0);
  });

  it('learns whether an IPFIX exporter counts options records and its own records in its sequence numbers, then counts real gaps', () => {
    const flowT: TemplateSpec = { id: 256, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 1, length: 4 }, { id: 2, length: 4 }] };
    const optT: TemplateSpec = { id: 300, scopeCount: 1, fields: [{ id: 149, length: 4 }, { id: 160, length: 8 }] };
    const rows = (n: number): (string | number)[][] => Array.from({ length: n }, (_, i) => ['10.0.0.5', `203.0.113.${i}`, 100, 1]);
    // Every other datagram resends the templates with one options record, as softflowd does every 16.
    const datagram = (sequence: number, k: number, flows: number): Uint8Array => encodeIpfix({ exportS: 1_700_000_000, sequence, domain: 1, sets: k % 2 === 0
      ? [{ templates: [flowT] }, { optionsTemplates: [optT] }, { data: optT, records: [[1, 1_699_999_000_000]] }, { data: flowT, records: rows(flows) }]
      : [{ data: flowT, records: rows(flows) }] });
    const run = (numbering: (before: { all: number; flows: number }, now: { all: number; flows: number }) => number, gapAt = -1): { lost: number; late: number } => {
      const { c } = core();
      const before = { all: 0, flows: 0 };
      for (let k = 0; k < 8; k++) {
        const flows = 3 + (k % 3);
        const now = { all: flows + (k % 2 === 0 ? 1 : 0), flows };
        if (k === gapAt) {
          // 7 flow records lost on the way
          before.all += 7;
          before.flows += 7;
        }
        c.ingest(datagram(numbering(before, now), k, flows), 'e:1', 0);
        before.all += now.all;
        before.flows += now.flows;
      }
      return { lost: c.stats.lostRecords, late: c.stats.outOfOrder };
    };
    const rfc = (b: { all: number }): number => b.all; // RFC 7011: data records sent before, options records included
    const softflowd = (b: { flows: number }, now: { flows: number }): number => b.flows + now.flows; // flows up to and including this datagram
    const exclusiveFlowsOnly = (b: { flows: number }): number => b.flows;
    for (const numbering of [rfc, softflowd, exclusiveFlowsOnly]) {
      assert.deepEqual(run(numbering), { lost: 0, late: 0 }, numbering.name);
      assert.deepEqual(run(numbering, 5), { lost: 7, late: 0 }, `${numbering.name}: a real gap after the convention is learned`);
    }
  });

  it('does not take a real loss for another numbering convention, nor learn from a datagram it could not count', () => {
    const t: TemplateSpec = { id: 256, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 1, length: 4 }, { id: 2, length: 4 }] };
    const rows = (n: number): (string | number)[][] => Array.from({ length: n }, (_, i) => ['10.0.0.5', `203.0.113.${i}`, 100, 1]);
    const withT = (sequence: number, n: number): Uint8Array => encodeIpfix({ exportS: 1_700_000_000, sequence, domain: 1, sets: [{ templates: [t] }, { data: t, records: rows(n) }] });
    const dataOnly = (sequence: number, n: number): Uint8Array => encodeIpfix({ exportS: 1_700_000_000, sequence, domain: 1, sets: [{ data: t, records: rows(n) }] });
    const onlyT = (sequence: number): Uint8Array => encodeIpfix({ exportS: 1_700_000_000, sequence, domain: 1, sets: [{ templates: [t] }] });
    {
      // RFC numbering: a templates-only datagram, then a datagram of 5 lost, then datagrams of 5: the first
      // of them fits "inclusive" numbering by chance; the next ones do not, so the 5 are counted lost.
      const { c } = core();
      c.ingest(withT(0, 5), 'e:1', 0);
      c.ingest(onlyT(5), 'e:1', 0);
      // (seq 5, 5 records: lost)
      for (const sq of [10, 15, 20]) c.ingest(dataOnly(sq, 5), 'e:1', 0);
      c.ingest(dataOnly(25, 3), 'e:1', 0);
      c.ingest(dataOnly(28, 4), 'e:1', 0);
      assert.equal(c.stats.lostRecords, 5);
      assert.equal(c.stats.outOfOrder, 0);
    }
    {
      // A collector started mid-stream: data before its template cannot be counted; nothing is learned from it.
      const { c } = core();
      c.ingest(dataOnly(100, 5), 'e:1', 0); // template unknown yet
      c.ingest(withT(105, 5), 'e:1', 0);
      for (const [sq, n] of [[110, 3], [113, 4], [117, 5]] as const) c.ingest(dataOnly(sq, n), 'e:1', 0);
      assert.equal(c.stats.lostRecords, 0);
      assert.equal(c.stats.outOfOrder, 0);
      assert.equal(c.stats.decodeErrors['unknown-template'], 1);
    }
  });

  it('attributes records to the inventory\'s VM and counts the rest, dropping none silently', () => {
    const { c, windows } = core();
    c.ingest(encodeNetflow5({ uptimeMs: 10_000, unixS: 1_700_000_000, sequence: 0, records: [rec(1), rec(2, '10.9.9.9')] }), 'e:1', 0);
    c.tick(0, true);
    assert.equal(c.stats.attributed, 1);
    assert.equal(c.stats.unattributed, 1);
    assert.equal(windows.length, 1);
    assert.equal(windows[0]!.vm, 'vm-1');
  });

  it('counts and drops a datagram of no known format, and keeps decoding the next good one', () => {
    const { c } = core();
    c.ingest(new Uint8Array([0, 42, 1, 2, 3]), 'e:1', 0);
    c.ingest(v5(0), 'e:1', 0);
    assert.equal(c.stats.unknownFormat, 1);
    assert.equal(c.stats.records, 10);
  });

  it('emits a window once its grace has passed, and puts a record for a closed window into the current one, counted', () => {
    const { c, windows } = core({ windowMs: 1000, graceMs: 1000 });
    c.addRecord(flow(500), 0);
    c.tick(2000);
    assert.equal(windows.length, 1);
    c.addRecord(flow(600), 2000);
    assert.equal(c.stats.late, 1);
    c.tick(10_000, true);
    assert.equal(windows.length, 2);
    assert.equal(windows[1]!.startMs, 2000);
  });

  it('does not let a record from the future hold a window open', () => {
    const { c, windows } = core({ windowMs: 1000, graceMs: 1000 });
    c.tick(5000);
    c.addRecord(flow(1e12), 5000);
    assert.equal(c.stats.badTime, 1);
    c.tick(8000);
    assert.equal(windows.length, 1);
  });

  it('stays bounded under a flood of distinct conversations, keeping the totals', () => {
    const { c, windows } = core({ windowMs: 1000, graceMs: 1000, maxFlowsPerWindow: 100 });
    for (let i = 0; i < 10_000; i++) c.addRecord(flow(500, i), 0);
    assert.ok(c.bufferedFlows <= 201, String(c.bufferedFlows));
    c.tick(0, true);
    const w = windows[0]!;
    assert.ok(w.flows.length <= 201);
    assert.equal(w.flows.reduce((t, f) => t + f.bytes, 0), 10_000 * 100);
    assert.equal(w.merged, 9_900);
  });

  it('emits windows early rather than grow past maxBufferedFlows', () => {
    const { c, windows } = core({ windowMs: 1000, graceMs: 1_000_000, maxBufferedFlows: 500 });
    for (let i = 0; i < 5000; i++) c.addRecord(flow(i * 10, i), 0);
    assert.ok(c.bufferedFlows <= 500);
    assert.ok(c.stats.earlyFlushes > 0 && windows.length > 0);
  });
});

describe('CollectorCore windows', () => {
  const two = (): { c: CollectorCore; windows: VmWindow[] } => {
    const windows: VmWindow[] = [];
    const c = new CollectorCore({
      ...DEFAULT_COLLECTOR_OPTIONS, windowMs: 1000, graceMs: 1000, log: silentLogger, onWindow: (w) => windows.push(w),
      inventory: createInventory([{ vm: 'vm-a' as VmId, ips: ['10.0.0.1'] }, { vm: 'vm-b' as VmId, ips: ['10.0.0.2', '2001:db8::2'] }]),
    });
    return { c, windows };
  };
  const between = (src: string, dst: string, lastMs: number, srcPort: number): FlowRecord => ({ ...flow(lastMs), srcAddr: src, dstAddr: dst, srcPort });

  it('gives each VM its own records in arrival order when they interleave, and a record between two VMs to both', () => {
    const { c, windows } = two();
    const sent = [
      between('10.0.0.1', '198.51.100.1', 100, 1), between('2001:db8::2', '2001:db8::99', 200, 2), between('10.0.0.1', '198.51.100.1', 300, 3),
      between('10.0.0.1', '10.0.0.2', 400, 4), between('198.51.100.7', '10.0.0.2', 500, 5), between('198.51.100.7', '198.51.100.8', 600, 6),
    ];
    for (const r of sent) c.addRecord(r, 0);
    c.tick(0, true);
    assert.deepEqual(windows.map((w) => [w.vm, w.startMs, w.endMs, w.merged]), [['vm-a', 0, 1000, 0], ['vm-b', 0, 1000, 0]]);
    assert.deepEqual(windows[0]!.flows, [sent[0], sent[2], sent[3]]);
    assert.deepEqual(windows[1]!.flows, [sent[1], sent[3], sent[4]]);
    assert.equal(windows[1]!.flows, windows[1]!.flows, 'made once, then the same array');
    assert.equal(c.stats.unattributed, 1);
  });

  it('keeps windows of different periods apart, oldest emitted first', () => {
    const { c, windows } = two();
    c.addRecord(between('10.0.0.1', '198.51.100.1', 2500, 1), 0);
    c.addRecord(between('10.0.0.1', '198.51.100.1', 500, 2), 0);
    c.addRecord(between('10.0.0.2', '198.51.100.1', 2600, 3), 0);
    c.tick(3000);
    assert.deepEqual(windows.map((w) => [w.vm, w.startMs, w.flows.map((f) => f.srcPort)]), [['vm-a', 0, [2]]]);
    c.tick(5000);
    assert.deepEqual(windows.slice(1).map((w) => [w.vm, w.startMs, w.flows.map((f) => f.srcPort)]), [['vm-a', 2000, [1]], ['vm-b', 2000, [3]]]);
  });

  it('keeps at most 64 window periods open whatever times records carry, losing no record', () => {
    const { c, windows } = two();
    for (let i = 0; i < 500; i++) c.addRecord(between('10.0.0.1', '198.51.100.1', i * 7919 * 1000, i), 0);
    assert.ok(c.stats.earlyFlushes > 0);
    assert.ok(windows.length >= 500 - 64);
    c.tick(0, true);
    assert.equal(windows.reduce((n, w) => n + w.flows.length, 0), 500);
  });

  it('still emits the window of a VM when a cap of 0 sends every record to the per-conversation totals', () => {
    const { c, windows } = core({ maxFlowsPerWindow: 0 });
    c.addRecord(flow(100, 1), 0);
    c.addRecord(flow(100, 1), 0);
    c.tick(0, true);
    assert.equal(windows.length, 1);
    assert.equal(windows[0]!.merged, 2);
  });

  it('decodes a long IPFIX export the same before and after its template gets a generated reader', () => {
    const { c, windows } = core({ windowMs: 60_000, graceMs: 60_000 });
    const t: TemplateSpec = { id: 300, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 }, { id: 6, length: 1 }, { id: 1, length: 8 }, { id: 2, length: 4 }, { id: 152, length: 8 }, { id: 153, length: 8 }] };
    const expected: FlowRecord[] = [];
    for (let d = 0; d < 20; d++) {
      const records = Array.from({ length: 10 }, (_, k) => {
        const i = d * 10 + k;
        expected.push({ exporter: 'e:1', domain: 3, srcAddr: '10.0.0.5', dstAddr: `203.0.113.${i % 250}`, srcPort: 5900, dstPort: 40000 + i, protocol: 6, bytes: 1000 + i, packets: 1 + i, firstMs: 1_700_000_000_000 + i, lastMs: 1_700_000_000_500 + i, tcpFlags: 0x18, samplingRate: 1 });
        return ['10.0.0.5', `203.0.113.${i % 250}`, 5900, 40000 + i, 6, 0x18, 1000 + i, 1 + i, 1_700_000_000_000 + i, 1_700_000_000_500 + i];
      });
      c.ingest(encodeIpfix({ exportS: 1_700_000_001, sequence: d * 10, domain: 3, sets: [...(d === 0 ? [{ templates: [t] }] : []), { data: t, records }] }), 'e:1', 1_700_000_001_000);
    }
    c.tick(1_700_000_001_000, true);
    assert.deepEqual(c.stats.decodeErrors, {});
    assert.equal(c.stats.lostRecords, 0);
    assert.deepEqual(windows.flatMap((w) => w.flows), expected);
  });
});

describe('CollectorCore and the memory it is handed', () => {
  it('takes each datagram as a view into one receive buffer that is overwritten at once, and its windows are unchanged', () => {
    const inventory = createInventory([{ vm: 'vm-1' as VmId, ips: ['10.0.0.5', '2001:db8::5'] }]);
    const windows: VmWindow[] = [];
    const c = new CollectorCore({ ...DEFAULT_COLLECTOR_OPTIONS, inventory, onWindow: (w) => windows.push(w), log: silentLogger });
    const v4: TemplateSpec = { id: 300, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 }, { id: 1, length: 8 }, { id: 2, length: 4 }, { id: 152, length: 8 }, { id: 153, length: 8 }] };
    const v6: TemplateSpec = { id: 301, fields: [{ id: 27, length: 16 }, { id: 28, length: 16 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 }, { id: 1, length: 8 }, { id: 2, length: 4 }, { id: 152, length: 8 }, { id: 153, length: 8 }] };
    // An options record (sampling 1 in 1), resent with the templates in every datagram, as softflowd does.
    const options: TemplateSpec = { id: 302, scopeCount: 1, fields: [{ id: 149, length: 4 }, { id: 34, length: 4 }] };
    const receive = new Uint8Array(64 * 1024);
    const expected: FlowRecord[] = [];
    for (let d = 0; d < 100; d++) {
      const row = (i: number, v6: boolean): (string | number)[] => {
        const [src, dst] = v6 ? ['2001:db8::5', `2001:db8:1::${i}`] : ['10.0.0.5', `203.0.113.${i % 250}`];
        expected.push({ exporter: 'e:1', domain: 3, srcAddr: src, dstAddr: dst, srcPort: 5900, dstPort: 40000 + i, protocol: 6, bytes: 1000 + i, packets: 1 + i, firstMs: 1_700_000_000_000 + i, lastMs: 1_700_000_000_500 + i, tcpFlags: 0, samplingRate: 1 });
        return [src, dst, 5900, 40000 + i, 6, 1000 + i, 1 + i, 1_700_000_000_000 + i, 1_700_000_000_500 + i];
      };
      const datagram = encodeIpfix({ exportS: 1_700_000_001, sequence: d * 30, domain: 3, sets: [
        { templates: [v4, v6] }, { optionsTemplates: [options] }, { data: options, records: [[3, 1]] },
        { data: v4, records: Array.from({ length: 20 }, (_, k) => row(d * 30 + k, false)) },
        { data: v6, records: Array.from({ length: 10 }, (_, k) => row(d * 30 + 20 + k, true)) },
      ] });
      const at = (d * 977) % (receive.length - datagram.length);
      receive.set(datagram, at);
      c.ingest(receive.subarray(at, at + datagram.length), 'e:1', 1_700_000_001_000);
      receive.fill(0xab); // the next receive overwrites the buffer
    }
    c.tick(1_700_000_001_000, true);
    assert.deepEqual(c.stats.decodeErrors, {});
    assert.equal(c.stats.templates, 3);
    assert.equal(c.stats.records, 3000);
    assert.deepEqual(windows.flatMap((w) => w.flows), expected);
  });
});

describe('inventory and listen address', () => {
  it('names the field of a bad address and of an address given to two VMs', () => {
    assert.throws(() => parseInventory({ vms: [{ id: 'a', ips: ['10.0.0.1'] }, { id: 'b', ips: ['10.0.0.1'] }] }), /inventory\.vms\[1\]\.ips\[0\].*already the address of a/);
    assert.throws(() => parseInventory({ vms: [{ id: 'a', macs: ['zz'] }] }), /inventory\.vms\[0\]\.macs\[0\]/);
    assert.equal(parseInventory({ vms: [{ id: 'a', ips: ['2001:DB8:0:0:0:0:0:1'] }] }).vmOfIp('2001:db8::1'), 'a');
  });

  it('parses host:port and [v6]:port, and refuses anything else naming --listen', () => {
    assert.deepEqual(parseListen('127.0.0.1:4739'), { host: '127.0.0.1', port: 4739 });
    assert.deepEqual(parseListen('[::1]:2055'), { host: '::1', port: 2055 });
    assert.throws(() => parseListen('4739'), /--listen/);
    assert.throws(() => parseListen('h:99999'), /--listen/);
  });
});
