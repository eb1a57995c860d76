import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError } from '../../core/errors.js';
import { cleanupRun, findLeftoverRuns, isProcessAlive, isRoot, listNamespaces, nsPrefix, registryPath } from '../netns.js';
import { autoRmemMaxBytes, createWanTestbed, tcpTransfer, type WanTestbed } from './testbed.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const TESTBED_JS = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), 'testbed.js')).href;

/** Round-trip times of `count` pings from one endpoint to another (ms, in order). */
async function pingRtts(tb: WanTestbed, from: string, to: string, count: number, intervalS = 0.2): Promise<number[]> {
  const r = await tb.execIn(from, ['ping', '-n', '-c', String(count), '-i', String(intervalS), '-W', '2', tb.siteAddress(to)], { okCodes: [1], timeoutMs: 30_000 });
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** The best mean over `n` consecutive values. */
function bestWindowMbps(xs: number[], n: number): number {
  let best = 0;
  for (let i = 0; i + n <= xs.length; i++) best = Math.max(best, xs.slice(i, i + n).reduce((a, b) => a + b, 0) / n);
  return best;
}

function dir(s: Awaited<ReturnType<WanTestbed['stats']>>, from: string, to: string) {
  const d = s.directions.find((x) => x.from === from && x.to === to);
  assert.ok(d !== undefined);
  return d;
}

describe('a WAN testbed of 2 sites over the user-space relay (100 Mbit/s, 80 ms RTT)', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-wan-'));
  let tb: WanTestbed;

  before(async () => {
    tb = await createWanTestbed({ sites: [{ name: 'east' }, { name: 'west' }], links: [{ a: 'east', b: 'west', rttMs: 80, rateMbps: 100 }], stateDir });
    // ARP and the VXLAN tables learn on the first exchange; the measurements start after it.
    await pingRtts(tb, 'east', 'west', 1);
  });
  after(async () => {
    await tb?.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('ping across shows the configured RTT: median of 10 within 80 ± 2 ms', async (t: TestContext) => {
    // Up to 3 rounds: a busy 2-core machine sometimes deschedules the relay for milliseconds (see below).
    let rtts: number[] = [];
    for (let round = 0; round < 3; round++) {
      rtts = await pingRtts(tb, 'east', 'west', 10);
      t.diagnostic(`ping RTTs (ms): ${rtts.join(' ')}`);
      if (median(rtts) >= 78 && median(rtts) <= 82) break;
    }
    assert.equal(rtts.length, 10);
    assert.ok(Math.min(...rtts) >= 78, `min ${Math.min(...rtts)}: never faster than the configured delay`);
    assert.ok(median(rtts) >= 78 && median(rtts) <= 82, `median ${median(rtts)}`);
  });

  it('a bulk TCP transfer reaches ≥ 90 Mbit/s for a full second, never exceeds the link, and every byte arrives intact', async (t: TestContext) => {
    // Other processes on a 2-core machine (TCG guests) can stall the relay or the endpoints for
    // 100+ ms; a second attempt is allowed, and the relay's lateness says when that happened.
    let best = 0;
    for (let attempt = 1; attempt <= 2 && best < 90; attempt++) {
      const s0 = await tb.stats();
      const r = await tcpTransfer(tb, 'east', 'west', { seconds: 5, skipMs: 1000 });
      const s1 = await tb.stats();
      const cpuMs = s1.cpuUserMs + s1.cpuSystemMs - (s0.cpuUserMs + s0.cpuSystemMs);
      best = bestWindowMbps(r.intervalMbps, 10);
      t.diagnostic(
        `attempt ${attempt}: best 1 s ${best.toFixed(1)} Mbit/s, ${r.steadyMbps.toFixed(1)} after slow start, ${r.mbps.toFixed(1)} overall; ` +
          `relay CPU ${cpuMs} ms over ${r.seconds.toFixed(1)} s, lateness max ${dir(s1, 'east', 'west').lateness.maxMs} ms`,
      );
      t.diagnostic(`per 100 ms: ${r.intervalMbps.join(' ')}`);
      assert.ok(r.intact, 'sha256 of sent and received streams agree');
      // 100 Mbit/s of frames carry at most ~95.6 Mbit/s of TCP payload; 1 s windows may round up a little.
      assert.ok(r.steadyMbps <= 97, `steady ${r.steadyMbps} Mbit/s exceeds the link`);
      assert.ok(dir(s1, 'east', 'west').maxBacklogBytes <= 1_000_000);
    }
    assert.ok(best >= 90, `best 1 s window ${best} Mbit/s`);
  });

  it('a link change at run time (80 → 20 ms RTT) shows in ping within a second', async () => {
    await tb.setLink('east', 'west', { rttMs: 20 });
    // Five pings sent over the first second after the change.
    const rtts = await pingRtts(tb, 'east', 'west', 5);
    assert.equal(rtts.length, 5);
    assert.ok(median(rtts) >= 18 && median(rtts) <= 22, `median ${median(rtts)} (${rtts.join(' ')})`);
    assert.ok(Math.max(...rtts) < 60, `a ping still saw the old RTT: ${rtts.join(' ')}`);
    const s = await tb.stats();
    assert.equal(dir(s, 'east', 'west').params.delayMs, 10);
    assert.equal(dir(s, 'west', 'east').params.delayMs, 10);
  });

  it('with 1 % loss TCP still completes intact and the relay drops ≈ 1 % of the datagrams', async (t: TestContext) => {
    await tb.setLink('east', 'west', { rttMs: 20, lossPct: 1 });
    const s0 = await tb.stats();
    const r = await tcpTransfer(tb, 'east', 'west', { bytes: 4_000_000, timeoutMs: 40_000 });
    const s1 = await tb.stats();
    await tb.setLink('east', 'west', { lossPct: 0 });
    let rx = 0;
    let lost = 0;
    for (const [a, b] of [['east', 'west'], ['west', 'east']] as const) {
      rx += dir(s1, a, b).rxPackets - dir(s0, a, b).rxPackets;
      lost += dir(s1, a, b).drops.loss - dir(s0, a, b).drops.loss;
    }
    t.diagnostic(`1 % loss: ${r.mbps.toFixed(1)} Mbit/s, relay dropped ${lost} of ${rx} datagrams (${((100 * lost) / rx).toFixed(2)} %)`);
    assert.ok(r.intact);
    assert.equal(r.bytes, 4_000_000);
    const sd = Math.sqrt(rx * 0.01 * 0.99);
    assert.ok(Math.abs(lost - rx * 0.01) <= 4 * sd, `dropped ${lost} of ${rx}`);
  });

  it('addTap() puts a tap on the site bridge', async () => {
    await tb.addTap('east', 'tap-vm1');
    const r = await tb.execIn('east', ['ip', '-o', 'link', 'show', 'tap-vm1']);
    assert.match(r.stdout, /master br0/);
  });

  it('destroy() leaves no namespace with the run prefix, no relay process and no registry', async () => {
    const relayPid = tb.relay.pid;
    const runId = tb.runId;
    assert.ok(isProcessAlive(relayPid, null));
    const report = await tb.destroy();
    assert.deepEqual(report.errors, []);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(runId))), []);
    assert.ok(!isProcessAlive(relayPid, null), 'relay process is gone');
    assert.ok(!existsSync(registryPath(stateDir, runId)));
    assert.ok(!existsSync(tb.relay.controlSocket));
  });
});

describe('a WAN mesh of 3 sites and a user', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-wan-'));
  let tb: WanTestbed;

  before(async () => {
    tb = await createWanTestbed({
      sites: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      users: [{ name: 'u' }],
      links: [
        { a: 'a', b: 'b', rttMs: 20 },
        { a: 'a', b: 'c', rttMs: 60 },
        { a: 'b', b: 'c', rttMs: 40 },
        { a: 'u', b: 'a', rttMs: 10 },
        { a: 'u', b: 'b', rttMs: 30 },
      ],
      stateDir,
    });
  });
  after(async () => {
    await tb?.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('gives each pair its own RTT (median of 8 within ± 2 ms), and a user reaches only the sites it is linked to', async () => {
    const pairs: [string, string, number][] = [['a', 'b', 20], ['a', 'c', 60], ['b', 'c', 40], ['u', 'a', 10], ['u', 'b', 30]];
    // One warm-up ping per pair (ARP, VXLAN learning), then the measured ones, all pairs at once.
    await Promise.all(pairs.map(([x, y]) => pingRtts(tb, x, y, 1)));
    // A pair whose median misses is measured again (up to 3 rounds): on a 2-core machine running QEMU guests
    // beside this test, the relay is sometimes descheduled for milliseconds; a wrong delay misses every time.
    let pending = pairs;
    const misses: string[] = [];
    for (let round = 0; round < 3 && pending.length > 0; round++) {
      const results = await Promise.all(pending.map(([x, y]) => pingRtts(tb, x, y, 8)));
      misses.length = 0;
      pending = pending.filter(([x, y, rtt], k) => {
        const m = median(results[k]!);
        const ok = m >= rtt - 2 && m <= rtt + 2;
        if (!ok) misses.push(`${x}→${y}: median ${m} ms, configured ${rtt}`);
        return !ok;
      });
    }
    assert.deepEqual(misses, []);
    assert.deepEqual(await pingRtts(tb, 'u', 'c', 2, 0.2), []);
    assert.equal(tb.endpoints.find((e) => e.name === 'u')?.kind, 'user');
    assert.equal(tb.siteAddress('c'), '10.77.0.3');
  });

  it('refuses a link to an endpoint it does not know, naming the field', async () => {
    await assert.rejects(
      createWanTestbed({ sites: [{ name: 'a' }], links: [{ a: 'a', b: 'x', rttMs: 1 }], stateDir }),
      (e: unknown) => e instanceof InputError && e.field === 'links[0].b',
    );
  });
});

describe('leftovers of a testbed whose owner was killed -9', { skip }, () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'vms-wan-'));
  after(() => rmSync(stateDir, { recursive: true, force: true }));

  it('findLeftoverRuns() finds the run and cleanupRun() removes its namespaces and relay process', async () => {
    const script = `
      import { createWanTestbed } from ${JSON.stringify(TESTBED_JS)};
      const tb = await createWanTestbed({ sites: [{ name: 'x' }, { name: 'y' }], links: [{ a: 'x', b: 'y', rttMs: 10 }], stateDir: ${JSON.stringify(stateDir)} });
      process.stdout.write(JSON.stringify({ runId: tb.runId, relayPid: tb.relay.pid }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let info: { runId: string; relayPid: number } | null = null;
    try {
      info = await new Promise<{ runId: string; relayPid: number }>((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no testbed within 30 s: ${err}`)), 30_000);
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) {
            clearTimeout(timer);
            resolve(JSON.parse(out) as { runId: string; relayPid: number });
          }
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
        child.once('exit', (code) => reject(new Error(`child exited ${String(code)}: ${err}`)));
      });
      child.kill('SIGKILL');
      await new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
      assert.ok(isProcessAlive(info.relayPid, null), 'the relay outlives its killed owner');
      assert.equal((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(info!.runId))).length, 3);
      const left = findLeftoverRuns({ stateDir });
      assert.deepEqual(left.map((r) => r.runId), [info.runId]);
      const report = await cleanupRun(info.runId, { stateDir });
      assert.deepEqual(report.errors, []);
      assert.ok(report.processesStopped.includes(info.relayPid));
      assert.ok(!isProcessAlive(info.relayPid, null));
      assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(info!.runId))), []);
      assert.deepEqual(findLeftoverRuns({ stateDir }), []);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (info !== null) await cleanupRun(info.runId, { stateDir });
    }
  });
});

describe('autoRmemMaxBytes()', () => {
  it('is twice the largest bandwidth-delay product, at least 256 KiB, and large when a link is unlimited', () => {
    assert.equal(autoRmemMaxBytes([{ rttMs: 80, rateMbps: 100 }, { rttMs: 10, rateMbps: 100 }]), 2_000_000);
    assert.equal(autoRmemMaxBytes([{ rttMs: 1, rateMbps: 10 }]), 256 * 1024);
    assert.equal(autoRmemMaxBytes([{ rttMs: 80, rateMbps: 0 }]), 32 * 1024 * 1024);
  });
});
