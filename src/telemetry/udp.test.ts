import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { AppError, InputError } from '../core/errors.js';
import { systemClock } from '../core/clock.js';
import { createJsonLogger } from '../core/logger.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS } from './collector.js';
import type { FlowRecord } from './flow.js';
import { createInventory } from './inventory.js';
import { silentLogger } from '../core/logger.js';
import { encodeIpfix, encodeNetflow9, type TemplateSpec, type Value } from '../testing/flow-encoders.js';
import { listenUdp, parseUdpReceive, type UdpCollector } from './udp.js';
import { DEFAULT_NATIVE_UDP_PATH, loadNativeUdp, META } from './udp-native.js';

const native = loadNativeUdp();
const skipNative = (path: 'native' | 'dgram'): string | false => (path === 'native' && !native.ok ? `native addon unavailable: ${native.reason}` : false);
/** IPv6 loopback, where the machine has it (a container may not): the IPv6 cases say so and skip. */
const v6 = await new Promise<string | false>((resolve) => {
  const s = createSocket('udp6');
  s.once('error', (e) => {
    s.close();
    resolve(`no IPv6 loopback here: ${e.message}`);
  });
  s.bind(0, '::1', () => s.close(() => resolve(false)));
});
const skipFor = (path: 'native' | 'dgram', host: string): string | false => skipNative(path) || (host === '::1' ? v6 : false);
const paths = ['native', 'dgram'] as const;

interface Got { bytes: Uint8Array; exporter: string }

/** A stand-in for CollectorCore that keeps a copy of every datagram (the real one may not keep the view). */
function fakeCore(onIngest?: (g: Got) => void): { core: CollectorCore; got: Got[]; ticks: number[] } {
  const got: Got[] = [];
  const ticks: number[] = [];
  const core = {
    ingest: (d: Uint8Array, exporter: string) => {
      const g = { bytes: new Uint8Array(d), exporter }; // a copy, as a plain Uint8Array
      got.push(g);
      onIngest?.(g);
    },
    tick: (nowMs: number) => ticks.push(nowMs),
  } as unknown as CollectorCore;
  return { core, got, ticks };
}

/** Datagram k: its index in the first 4 bytes, then a pattern of a length that varies with k (1..1400 more bytes). */
function payload(k: number): Uint8Array {
  const n = 4 + 1 + ((k * 7919) % 1400);
  const b = new Uint8Array(n);
  new DataView(b.buffer).setUint32(0, k);
  for (let i = 4; i < n; i++) b[i] = (k + i * 31) & 255;
  return b;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (!cond() && Date.now() < end) await sleep(5);
}

async function sender(type: 'udp4' | 'udp6', host: string): Promise<{ sock: Socket; port: number }> {
  const sock = createSocket(type);
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return { sock, port: sock.address().port };
}

/** Sends payload(0..n-1), yielding to the event loop every `every` datagrams (so a same-process receiver keeps up). */
async function sendAll(sock: Socket, port: number, host: string, n: number, every: number, stop = (): boolean => false): Promise<number> {
  let sent = 0;
  for (; sent < n && !stop(); sent++) {
    sock.send(payload(sent), port, host);
    if (sent % every === every - 1) await new Promise((r) => setImmediate(r));
  }
  await new Promise<void>((r) => sock.send(new Uint8Array(0), port, host, () => r())); // flushes the queue; an empty datagram
  return sent;
}

const fdCount = (): number => readdirSync('/proc/self/fd').length;

describe('listenUdp', () => {
  const open: UdpCollector[] = [];
  const sockets: Socket[] = [];
  after(async () => {
    for (const u of open) await u.close();
    for (const s of sockets) s.close();
  });

  for (const path of paths) {
    describe(`on the ${path} path`, () => {
      for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
        it(`delivers 10,000 datagrams from a sender on ${host} byte-exact, in order, named ${type === 'udp6' ? '[::1]:port' : '127.0.0.1:port'}`, { skip: skipFor(path, host) }, async () => {
          const { core, got } = fakeCore();
          const udp = await listenUdp(core, { host, port: 0 }, systemClock, { receive: path });
          open.push(udp);
          assert.equal(udp.path, path);
          const s = await sender(type, host);
          sockets.push(s.sock);
          await sendAll(s.sock, udp.address.port, host, 10_000, 32);
          await until(() => got.length >= 10_001, 20_000);
          assert.equal(got.length, 10_001, 'every datagram arrives, the closing empty one too');
          const name = type === 'udp6' ? `[::1]:${s.port}` : `127.0.0.1:${s.port}`;
          for (let k = 0; k < 10_000; k++) {
            const g = got[k]!;
            if (g.exporter !== name) assert.fail(`datagram ${k} is named ${g.exporter}, not ${name}`);
            assert.deepEqual(g.bytes, payload(k), `datagram ${k} differs`);
          }
          assert.equal(got[10_000]!.bytes.length, 0);
          assert.equal(udp.stats().datagrams, 10_001);
          assert.equal(udp.stats().truncated, 0);
          await udp.close();
        });
      }

      it('takes a burst of 1,000 queued datagrams (more than one batch) whole, and names two senders apart', { skip: skipNative(path) }, async () => {
        const { core, got } = fakeCore();
        const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: path });
        open.push(udp);
        const a = await sender('udp4', '127.0.0.1');
        const b = await sender('udp4', '127.0.0.1');
        sockets.push(a.sock, b.sock);
        // No yielding: the kernel queues the lot before the receiver's first wakeup.
        for (let k = 0; k < 500; k++) {
          a.sock.send(payload(k), udp.address.port, '127.0.0.1');
          b.sock.send(payload(k), udp.address.port, '127.0.0.1');
        }
        await until(() => got.length >= 1000, 10_000);
        assert.equal(got.length, 1000);
        const from = (p: number): Got[] => got.filter((g) => g.exporter === `127.0.0.1:${p}`);
        assert.equal(from(a.port).length, 500);
        assert.equal(from(b.port).length, 500);
        from(a.port).forEach((g, k) => assert.deepEqual(g.bytes, payload(k)));
        const st = udp.stats();
        if (path === 'native') assert.ok(st.batches <= st.datagrams / 4, `a burst arrives in batches: ${st.batches} calls for ${st.datagrams} datagrams`);
        else assert.equal(st.batches, st.datagrams);
        await udp.close();
      });

      it('closes while a sender is still sending: nothing arrives after, and close is safe twice (and at once)', { skip: skipNative(path) }, async () => {
        const { core, got } = fakeCore();
        const errors: unknown[] = [];
        const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: path, onError: (e) => errors.push(e) });
        const s = await sender('udp4', '127.0.0.1');
        sockets.push(s.sock);
        let stop = false;
        const sending = sendAll(s.sock, udp.address.port, '127.0.0.1', 200_000, 16, () => stop);
        await until(() => got.length >= 200, 10_000);
        const closings = [udp.close(), udp.close()];
        await Promise.all(closings);
        await udp.close();
        const atClose = got.length;
        assert.ok(atClose >= 200);
        await sleep(50);
        stop = true;
        const sent = await sending;
        await sleep(20);
        assert.equal(got.length, atClose, 'no datagram after close');
        assert.ok(sent > atClose, `the sender went on after the close (${sent} sent)`);
        assert.deepEqual(errors, []);
      });

      it('closes from inside ingest: the rest of that batch is delivered, nothing later', { skip: skipNative(path) }, async () => {
        let udp: UdpCollector | null = null;
        const { core, got } = fakeCore(() => {
          void udp?.close();
        });
        udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: path });
        open.push(udp);
        const s = await sender('udp4', '127.0.0.1');
        sockets.push(s.sock);
        for (let k = 0; k < 100; k++) s.sock.send(payload(k), udp.address.port, '127.0.0.1');
        await until(() => got.length > 0, 5000);
        await sleep(50);
        const n = got.length;
        assert.ok(n >= 1 && n <= 100);
        for (let k = 0; k < 20; k++) s.sock.send(payload(k), udp.address.port, '127.0.0.1');
        await sleep(50);
        assert.equal(got.length, n);
        got.forEach((g, k) => assert.deepEqual(g.bytes, payload(k)));
      });

      for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
        it(`refuses a port in use on ${host} with an InputError naming the address`, { skip: skipFor(path, host) }, async () => {
          const taken = await sender(type, host);
          sockets.push(taken.sock);
          const { core } = fakeCore();
          const at = type === 'udp6' ? `[::1]:${taken.port}` : `127.0.0.1:${taken.port}`;
          await assert.rejects(listenUdp(core, { host, port: taken.port }, systemClock, { receive: path }), (e: unknown) => {
            assert.ok(e instanceof InputError);
            assert.equal(e.field, '--listen');
            assert.equal(e.value, at);
            assert.match(e.message, /EADDRINUSE/);
            assert.ok(e.message.includes(at), e.message);
            return true;
          });
        });
      }

      it('reports an exception from ingest through onError and goes on with the next datagram', { skip: skipNative(path) }, async () => {
        const errors: unknown[] = [];
        const { core, got } = fakeCore((g) => {
          if (g.bytes.length > 0 && g.bytes[3] === 1) throw new Error('bad datagram 1');
        });
        const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: path, onError: (e) => errors.push(e) });
        open.push(udp);
        const s = await sender('udp4', '127.0.0.1');
        sockets.push(s.sock);
        for (let k = 0; k < 3; k++) s.sock.send(payload(k), udp.address.port, '127.0.0.1');
        await until(() => got.length >= 3, 5000);
        assert.equal(got.length, 3);
        assert.equal(errors.length, 1);
        assert.match((errors[0] as Error).message, /bad datagram 1/);
        await udp.close();
      });

      it('opens and closes 200 times without leaking file descriptors', { skip: skipNative(path) }, async () => {
        const { core } = fakeCore();
        const cycle = async (): Promise<void> => {
          const u = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: path });
          await u.close();
          await u.close();
        };
        for (let i = 0; i < 5; i++) await cycle();
        const before = fdCount();
        for (let i = 0; i < 200; i++) await cycle();
        (globalThis as { gc?: () => void }).gc?.();
        assert.ok(fdCount() <= before + 1, `fds ${before} → ${fdCount()}`);
      });
    });
  }

  it('counts a datagram longer than a native slot as truncated, logs it once per interval, and does not ingest it', { skip: skipNative('native') }, async () => {
    const lines: string[] = [];
    const log = createJsonLogger({ write: (l) => lines.push(l) });
    const { core, got } = fakeCore();
    const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: 'native', nativeSlotBytes: 256, log });
    open.push(udp);
    const s = await sender('udp4', '127.0.0.1');
    sockets.push(s.sock);
    s.sock.send(new Uint8Array(255).fill(1), udp.address.port, '127.0.0.1');
    s.sock.send(new Uint8Array(256).fill(2), udp.address.port, '127.0.0.1');
    for (let k = 0; k < 3; k++) s.sock.send(new Uint8Array(257 + k).fill(3), udp.address.port, '127.0.0.1');
    await until(() => udp.stats().datagrams >= 5, 5000);
    assert.deepEqual(udp.stats(), { datagrams: 5, truncated: 3, batches: udp.stats().batches });
    assert.deepEqual(got.map((g) => g.bytes.length), [255, 256]);
    assert.equal(lines.filter((l) => l.includes('longer than a receive slot')).length, 1);
    await udp.close();
  });

  it('uses dgram when asked, or when the addon is missing, and says why in one log line', async () => {
    const lines: string[] = [];
    const log = createJsonLogger({ write: (l) => lines.push(l) });
    const { core } = fakeCore();
    const asked = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: 'dgram', log });
    await asked.close();
    assert.equal(asked.path, 'dgram');
    const missing = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { log, nativePath: '/nonexistent/udp_recv.node' });
    await missing.close();
    assert.equal(missing.path, 'dgram');
    const entries = lines.map((l) => JSON.parse(l) as { msg: string; path: string; why: string; recvBufferBytes: number }).filter((e) => e.msg.startsWith('UDP receive path'));
    assert.ok(entries.every((e) => e.recvBufferBytes > 0));
    assert.equal(entries.length, 2);
    assert.deepEqual(entries.map((e) => e.path), ['dgram', 'dgram']);
    assert.equal(entries[0]!.why, 'asked for');
    assert.match(entries[1]!.why, /nonexistent\/udp_recv\.node not found/);
    await assert.rejects(listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: 'native', nativePath: '/nonexistent/udp_recv.node' }),
      (e: unknown) => e instanceof AppError && e.code === 'UDP_NATIVE_UNAVAILABLE' && /not found/.test(e.message));
  });

  it('warns when the kernel gives a smaller receive buffer than asked, with the fix', async () => {
    const lines: string[] = [];
    const log = createJsonLogger({ write: (l) => lines.push(l) });
    const { core } = fakeCore();
    // 1 GiB: more than net.core.rmem_max allows without SO_RCVBUFFORCE.
    const u = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock, { receive: 'dgram', recvBufferBytes: 2 ** 30, log });
    await u.close();
    const warned = lines.map((l) => JSON.parse(l) as { level: string; msg: string; askedBytes?: number; fix?: string }).filter((e) => e.level === 'warn');
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.askedBytes, 2 ** 30);
    assert.match(warned[0]!.fix ?? '', /net\.core\.rmem_max/);
    assert.ok(u.recvBufferBytes < 2 ** 30);
  });

  it('uses the native path on auto when the addon loads', { skip: skipNative('native') }, async () => {
    const { core } = fakeCore();
    const u = await listenUdp(core, { host: 'localhost', port: 0 }, systemClock);
    await u.close();
    assert.equal(u.path, 'native');
    assert.equal(u.address.host, '127.0.0.1');
  });

  it('reads the receive mode: unset is auto, a bad one names the variable', () => {
    assert.equal(parseUdpReceive(undefined), 'auto');
    assert.equal(parseUdpReceive(''), 'auto');
    assert.equal(parseUdpReceive('native'), 'native');
    assert.equal(parseUdpReceive('dgram'), 'dgram');
    assert.throws(() => parseUdpReceive('fast'), (e: unknown) => e instanceof InputError && e.field === 'VMSHADOW_UDP_RECEIVE');
  });
});

describe('listenUdp with the real collector core', () => {
  it('decodes the same records from the shared receive buffer as from copies: the core keeps no view of a datagram', { skip: skipNative('native') }, async () => {
    // Templates come in datagrams of their own, first and then every 25 data datagrams; the slots they
    // arrived in are overwritten by the data that follows, so a core that kept a view of template bytes
    // would decode garbage.
    const t: TemplateSpec = { id: 300, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 }, { id: 6, length: 1 }, { id: 1, length: 8 }, { id: 2, length: 4 }, { id: 152, length: 8 }, { id: 153, length: 8 }] };
    const t9: TemplateSpec = { id: 260, fields: [{ id: 8, length: 4 }, { id: 12, length: 4 }, { id: 7, length: 2 }, { id: 11, length: 2 }, { id: 4, length: 1 }, { id: 1, length: 4 }, { id: 2, length: 4 }, { id: 22, length: 4 }, { id: 21, length: 4 }] };
    const ipfix: Uint8Array[] = [encodeIpfix({ exportS: 1_700_000_001, sequence: 0, domain: 3, sets: [{ templates: [t] }] })];
    const v9: Uint8Array[] = [];
    const v9Packet = (sets: Parameters<typeof encodeNetflow9>[0]['sets']): void => {
      v9.push(encodeNetflow9({ uptimeMs: 10_000_000, unixS: 1_700_000_001, sequence: v9.length, sourceId: 7, sets }));
    };
    v9Packet([{ templates: [t9] }]);
    for (let d = 0; d < 300; d++) {
      const recs: Value[][] = Array.from({ length: 12 }, (_, k) => {
        const i = d * 12 + k;
        return [`10.0.${(i >> 8) & 255}.${i & 255}`, `203.0.113.${i % 250}`, 5900, 1024 + i, 6, 0x18, 1000 + i, 1 + (i % 50), 1_700_000_000_000 + i, 1_700_000_000_500 + i];
      });
      ipfix.push(encodeIpfix({ exportS: 1_700_000_001, sequence: d * 12, domain: 3, sets: [{ data: t, records: recs }] }));
      const recs9: Value[][] = recs.map((r) => [r[1]!, r[0]!, 443, r[3]!, 17, r[6]!, r[7]!, 9_000_000 + d, 9_000_500 + d]);
      v9Packet([{ data: t9, records: recs9 }]);
      if (d % 25 === 24) {
        // Sent again, as exporters do: a refresh of what the core holds.
        ipfix.push(encodeIpfix({ exportS: 1_700_000_001, sequence: (d + 1) * 12, domain: 3, sets: [{ templates: [t] }] }));
        v9Packet([{ templates: [t9] }]);
      }
    }
    const coreWith = (records: FlowRecord[]): CollectorCore => new CollectorCore({
      ...DEFAULT_COLLECTOR_OPTIONS, inventory: createInventory([]), onWindow: () => undefined, onRecord: (r) => records.push(r), log: silentLogger,
    });
    const viaSocket: FlowRecord[] = [];
    const core = coreWith(viaSocket);
    const fixedClock = { nowMs: () => 1_700_000_001_000 };
    const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, fixedClock, { receive: 'native' });
    const a = await sender('udp4', '127.0.0.1');
    const b = await sender('udp4', '127.0.0.1');
    try {
      for (let k = 0; k < ipfix.length; k++) {
        a.sock.send(ipfix[k]!, udp.address.port, '127.0.0.1');
        b.sock.send(v9[k]!, udp.address.port, '127.0.0.1');
        if (k % 100 === 99) await new Promise((r) => setImmediate(r));
      }
      await until(() => udp.stats().datagrams >= ipfix.length + v9.length, 10_000);
    } finally {
      await udp.close();
      a.sock.close();
      b.sock.close();
    }
    assert.equal(udp.stats().datagrams, ipfix.length + v9.length);
    assert.ok(udp.stats().batches < udp.stats().datagrams, 'datagrams shared the buffer in batches');
    assert.deepEqual(core.stats.decodeErrors, {});
    assert.equal(core.stats.lostRecords + core.stats.lostDatagrams + core.stats.outOfOrder, 0);
    // The same datagrams, each in memory of its own, in the order the socket gave them (per exporter).
    const direct: FlowRecord[] = [];
    const ref = coreWith(direct);
    for (let k = 0; k < ipfix.length; k++) {
      ref.ingest(ipfix[k]!.slice(), `127.0.0.1:${a.port}`, 1_700_000_001_000);
      ref.ingest(v9[k]!.slice(), `127.0.0.1:${b.port}`, 1_700_000_001_000);
    }
    const byExporter = (rs: FlowRecord[], e: string): FlowRecord[] => rs.filter((r) => r.exporter === e);
    for (const p of [a.port, b.port]) {
      const e = `127.0.0.1:${p}`;
      assert.equal(byExporter(viaSocket, e).length, 3600);
      assert.deepEqual(byExporter(viaSocket, e), byExporter(direct, e));
    }
  });
});

describe('the udp_recv addon', () => {
  it('formats source addresses as Node does', { skip: skipNative('native') }, () => {
    assert.ok(native.ok);
    const words = (bytes: number[]): [number, number, number, number] => {
      const v = new DataView(new Uint8Array([...bytes, ...new Array<number>(16 - bytes.length).fill(0)]).buffer);
      return [0, 4, 8, 12].map((o) => v.getInt32(o, true)) as [number, number, number, number];
    };
    assert.equal(native.addon.formatAddress(4, ...words([192, 0, 2, 250])), '192.0.2.250');
    assert.equal(native.addon.formatAddress(6, ...words([...new Array<number>(15).fill(0), 1])), '::1');
    assert.equal(native.addon.formatAddress(6, ...words([...new Array<number>(10).fill(0), 255, 255, 10, 0, 0, 7])), '::ffff:10.0.0.7');
    assert.equal(native.addon.formatAddress(6, ...words([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])), '2001:db8::9');
    assert.equal(META.addr0 + 4, native.addon.metaInts);
  });

  it('surfaces an exception thrown by the batch callback as an uncaught exception', { skip: skipNative('native') }, () => {
    const script = `
      const { createRequire } = require('node:module');
      const dgram = require('node:dgram');
      const a = require(${JSON.stringify(DEFAULT_NATIVE_UDP_PATH)});
      const h = a.open({ host: '127.0.0.1', port: 0 }, () => { throw new Error('thrown in onBatch'); }, () => {});
      process.on('uncaughtException', (e) => { console.log('caught: ' + e.message); a.close(h); s.close(); });
      const s = dgram.createSocket('udp4');
      s.send(Buffer.from('x'), h.port, '127.0.0.1');
      setTimeout(() => { console.log('timeout'); process.exit(3); }, 5000).unref();
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.stdout.trim(), 'caught: thrown in onBatch', r.stderr);
    assert.equal(r.status, 0);
  });

  it('does not load a file that is not the addon, and says so', () => {
    const r = loadNativeUdp('/nonexistent/dir/udp_recv.node');
    assert.equal(r.ok, false);
    assert.ok(!r.ok && /not found/.test(r.reason));
  });
});
