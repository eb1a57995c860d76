import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runStreamCheck, startEchoServer, type EchoServer } from '../testing/stream-check.js';
import { untilOutput } from '../core/child-output.js';
import { controlClient, startControlServer } from './control.js';
import type { RouteUpdate } from './routes.js';
import { startProxy, type PathRewriter, type ProxyServer } from './server.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const setRoute = (generation: number, ...ports: number[]): Extract<RouteUpdate, { kind: 'set' }> => ({
  kind: 'set', service: 'desk', generation, listen: { host: '127.0.0.1', port: 0 }, backends: ports.map((port) => ({ host: '127.0.0.1', port })),
});

function portOf(p: ProxyServer): number {
  const port = p.boundPort('desk');
  assert.ok(port !== null, 'the proxy listens');
  return port;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

/** Resolves with what the socket received and how it ended. */
function collect(sock: Socket): Promise<{ data: Buffer; end: 'fin' | 'reset' | 'error'; code: string | null }> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    let settled = false;
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => {
      if (!settled) resolve({ data: Buffer.concat(chunks), end: 'fin', code: null });
      settled = true;
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!settled) resolve({ data: Buffer.concat(chunks), end: e.code === 'ECONNRESET' ? 'reset' : 'error', code: e.code ?? null });
      settled = true;
    });
  });
}

describe('proxy server on loopback', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });
  const echo = async (): Promise<EchoServer> => {
    const e = await startEchoServer();
    cleanup.push(() => e.close());
    return e;
  };
  const proxy = async (us: RouteUpdate[], o: Parameters<typeof startProxy>[1] = {}): Promise<ProxyServer> => {
    const p = await startProxy(us, o);
    cleanup.push(() => p.close());
    return p;
  };

  it('splices a session both ways with every byte verified, and its counters add up', async () => {
    const e = await echo();
    const p = await proxy([setRoute(1, e.port)]);
    const r = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 400, frameBytes: 4000, windowBytes: 1 << 20 });
    assert.equal(r.end, 'completed');
    assert.ok(r.intact && r.bytesVerified === r.bytesSent && r.bytesSent > 1e6, JSON.stringify(r));
    await sleep(50);
    const s = p.stats();
    assert.equal(s.sessionsTotal, 1);
    assert.equal(s.sessionsActive, 0);
    assert.equal(s.bytesUserToBackend, r.bytesSent);
    assert.equal(s.bytesBackendToUser, r.bytesSent);
    assert.ok(Object.values(s.errors).every((n) => n === 0), JSON.stringify(s.errors));
  });

  it('after a re-point new sessions go to the new backend at once, and the established session keeps flowing with nothing lost', async () => {
    const a = await echo();
    const b = await echo();
    const p = await proxy([setRoute(1, a.port)]);
    const port = portOf(p);
    const long = runStreamCheck({ host: '127.0.0.1', port, durationMs: 1500, frameBytes: 2000, windowBytes: 256 * 1024 });
    await sleep(300);
    assert.equal(p.apply(setRoute(2, b.port)).status, 'applied');
    const short = await runStreamCheck({ host: '127.0.0.1', port, durationMs: 200, intervalMs: 10 });
    assert.equal(short.end, 'completed');
    assert.equal(b.connections(), 1, 'the session after the re-point went to the new backend');
    assert.equal(b.bytes(), short.bytesSent);
    const r = await long;
    assert.equal(r.end, 'completed');
    assert.ok(r.intact && r.bytesVerified === r.bytesSent, JSON.stringify(r));
    assert.equal(a.connections(), 1);
    assert.equal(a.bytes(), r.bytesSent, 'the established session stayed on its backend throughout');
    assert.ok(r.longestStallMs < 1500, `no stall at the re-point (${r.longestStallMs.toFixed(0)} ms)`);
  });

  it("passes a half-close through: the user's FIN reaches the backend, and the backend's later reply still reaches the user", async () => {
    const backend = createServer({ allowHalfOpen: true }, (s) => {
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => {
        // The user has finished sending; the answer comes after, then our FIN.
        setTimeout(() => s.end(`got ${Buffer.concat(got).toString()}; bye`), 100);
      });
    });
    const bport = await listen(backend);
    cleanup.push(() => new Promise<void>((r) => backend.close(() => r())));
    const p = await proxy([setRoute(1, bport)]);
    const c = createConnection({ host: '127.0.0.1', port: portOf(p), allowHalfOpen: true });
    const res = collect(c);
    c.end('hello');
    const out = await res;
    assert.equal(out.end, 'fin');
    assert.equal(out.data.toString(), 'got hello; bye');
  });

  it('bounds what it buffers: a user that does not read stops the backend, and everything arrives once the user reads', async () => {
    const totalBytes = 256 * 1024 * 1024;
    let offered = 0;
    let backendSock: Socket | null = null;
    const chunk = Buffer.alloc(1 << 20, 7);
    const backend = createServer((s) => {
      backendSock = s;
      const push = (): void => {
        while (offered < totalBytes) {
          offered += chunk.length;
          if (!s.write(chunk)) {
            s.once('drain', push);
            return;
          }
        }
        s.end();
      };
      push();
    });
    const bport = await listen(backend);
    cleanup.push(() => new Promise<void>((r) => backend.close(() => r())));
    const p = await proxy([setRoute(1, bport)]);
    const before = process.memoryUsage().arrayBuffers;
    const c = createConnection({ host: '127.0.0.1', port: portOf(p) });
    c.pause();
    await sleep(1500);
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(offered < 96 * 1024 * 1024, `the backend was held back (it got ${(offered / 2 ** 20).toFixed(0)} MiB out of ${totalBytes / 2 ** 20} into the path)`);
    assert.ok(grown < 24 * 1024 * 1024, `buffers grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(backendSock !== null && (backendSock as Socket).writableLength > 0, 'the backend is waiting for drain');
    const sess = p.sessions()[0];
    assert.ok(sess !== undefined && sess.bytesBackendToUser < 64 * 1024 * 1024, `the proxy read ${sess?.bytesBackendToUser} bytes`);
    let got = 0;
    c.on('data', (d: Buffer) => {
      got += d.length;
    });
    c.resume();
    await new Promise<void>((r) => c.once('end', () => r()));
    assert.equal(got, totalBytes);
  });

  it('resets the user when the backend resets (never a clean end that could pass for a complete stream)', async () => {
    const backend = createServer((s) => {
      s.once('data', () => s.resetAndDestroy());
    });
    const bport = await listen(backend);
    cleanup.push(() => new Promise<void>((r) => backend.close(() => r())));
    const p = await proxy([setRoute(1, bport)]);
    const r = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 1000, intervalMs: 10 });
    assert.equal(r.end, 'reset');
    assert.ok(r.intact);
    await sleep(50);
    assert.equal(p.stats().errors['backend-reset'], 1);
  });

  it('resets a session idle for longer than the idle timeout, on both sides', async () => {
    const e = await echo();
    const p = await proxy([setRoute(1, e.port)], { idleTimeoutMs: 300 });
    const c = createConnection({ host: '127.0.0.1', port: portOf(p) });
    const res = collect(c);
    c.write('x');
    const t0 = Date.now();
    const out = await res;
    assert.equal(out.end, 'reset');
    assert.equal(out.data.toString(), 'x');
    assert.ok(Date.now() - t0 >= 250 && Date.now() - t0 < 3000);
    await sleep(50);
    assert.equal(p.stats().errors['idle-timeout'], 1);
    assert.equal(e.sockets().size, 0, 'the backend side is closed too');
  });

  it('holds a session that arrives mid switch-over and sends it to the new backend the moment the route arrives', async () => {
    const a = await echo();
    const b = await echo();
    const p = await proxy([setRoute(1, a.port)]);
    p.apply({ kind: 'switching', service: 'desk', generation: 2, holdMs: 5000 });
    const t0 = performance.now();
    const run = runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 600, intervalMs: 10 });
    await sleep(300);
    assert.equal(p.stats().sessionsHeld, 1);
    assert.equal(a.connections() + b.connections(), 0, 'nothing was sent into the pause');
    p.apply(setRoute(3, b.port));
    const r = await run;
    assert.equal(r.end, 'completed');
    assert.ok(r.intact && r.framesVerified === r.framesSent);
    assert.deepEqual([a.connections(), b.connections()], [0, 1]);
    assert.ok(r.longestStallMs >= 250 && r.longestStallMs < 2500, `the first frames waited for the route (not for the 5 s hold) (${r.longestStallMs.toFixed(0)} ms)`);
    assert.ok(performance.now() - t0 < 4000);

    // A hold that ends without news goes to the route's current backends.
    p.apply({ kind: 'switching', service: 'desk', generation: 4, holdMs: 200 });
    const r2 = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 300, intervalMs: 10 });
    assert.equal(r2.end, 'completed');
    assert.equal(b.connections(), 2);
  });

  it('tries the next backend when one refuses, and resets the user when none answers', async () => {
    const dead = createServer();
    const deadPort = await listen(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const e = await echo();
    const p = await proxy([setRoute(1, deadPort, e.port)]);
    for (let i = 0; i < 2; i++) {
      const r = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 100, intervalMs: 10 });
      assert.equal(r.end, 'completed');
    }
    p.apply(setRoute(2, deadPort));
    const r = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 100, intervalMs: 10 });
    assert.equal(r.end, 'reset');
    assert.equal(p.stats().errors['connect-refused'], 1);
  });

  it('never makes the data path wait on a slow path re-point', async () => {
    const e = await echo();
    let release: () => void = () => undefined;
    const slow: PathRewriter = {
      repoint: () => new Promise<void>((r) => {
        release = r;
        setTimeout(r, 10_000);
      }),
      close: () => Promise.resolve(),
    };
    const p = await proxy([setRoute(1, e.port)], { paths: slow });
    const port = portOf(p);
    const long = runStreamCheck({ host: '127.0.0.1', port, durationMs: 1200, intervalMs: 5 });
    await sleep(200);
    const t0 = performance.now();
    const via: RouteUpdate = { kind: 'set', service: 'desk', generation: 2, listen: { host: '127.0.0.1', port: 0 }, backends: [{ host: '127.0.0.1', port: e.port, via: '10.9.9.9' }] };
    assert.equal(p.apply(via).status, 'applied');
    assert.ok(performance.now() - t0 < 20, 'apply() returns at once');
    const fresh = await runStreamCheck({ host: '127.0.0.1', port, durationMs: 100, intervalMs: 10 });
    assert.equal(fresh.end, 'completed');
    assert.ok(performance.now() - t0 < 2500, 'a new session was served while the re-point was still running');
    const r = await long;
    assert.equal(r.end, 'completed');
    assert.ok(r.longestStallMs < 1500, `the established session never waited for the slow re-point (${r.longestStallMs.toFixed(0)} ms)`);
    assert.equal(p.stats().repoints.applied, 0, 'the re-point was still running');
    release();
    await p.settled();
    assert.equal(p.stats().repoints.applied, 1);
  });

  it('takes route updates on its control socket: applied, stale, and bad input named by field', async () => {
    const a = await echo();
    const b = await echo();
    const p = await proxy([setRoute(1, a.port)]);
    const dir = mkdtempSync(join(tmpdir(), 'vmsproxy-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const ctl = await startControlServer(p, { path: join(dir, 'control.sock') });
    cleanup.push(() => ctl.close());
    const client = controlClient(ctl.address);
    const set = (g: number, port: number): RouteUpdate => ({ ...setRoute(g, port), listen: { host: '127.0.0.1', port: portOf(p) } });
    // Listen port 0 is for tests only (the control endpoint wants a real one): the bound port, re-opened at once.
    assert.deepEqual(await client.apply(set(5, b.port)), [{ status: 'applied', generation: 5 }]);
    assert.deepEqual((await client.apply([set(4, a.port)])).map((o) => o.status), ['stale']);
    await assert.rejects(client.apply({ ...set(6, a.port), backends: [{ host: 'somewhere', port: 1 }] } as RouteUpdate), /body\.backends\[0\]\.host/);
    const routes = await client.routes();
    assert.equal(routes[0]?.generation, 5);
    await p.settled();
    const r = await runStreamCheck({ host: '127.0.0.1', port: portOf(p), durationMs: 100, intervalMs: 10 });
    assert.equal(r.end, 'completed');
    assert.equal(b.connections(), 1);
    const st = await client.stats();
    assert.equal(st.updates.applied, 2);
    assert.equal(st.updates.stale, 1);
  });

  it('close() lets sessions drain for drainMs and then resets the rest', async () => {
    const e = await echo();
    const p = await startProxy([setRoute(1, e.port)]);
    const port = portOf(p);
    const shortOne = runStreamCheck({ host: '127.0.0.1', port, durationMs: 200, intervalMs: 10 });
    const longOne = runStreamCheck({ host: '127.0.0.1', port, durationMs: 5000, intervalMs: 10 });
    await sleep(100);
    await p.close({ drainMs: 600 });
    const [s, l] = await Promise.all([shortOne, longOne]);
    assert.equal(s.end, 'completed');
    assert.equal(l.end, 'reset');
    assert.ok(l.intact);
    assert.equal(p.stats().errors['proxy-closed'], 1);
  });

  describe('a restarted proxy process', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmsproxy-'));
    const children: ChildProcess[] = [];
    after(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });

    async function startMain(routesFile: string): Promise<ChildProcess> {
      const child = spawn(process.execPath, [MAIN, '--routes', routesFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      await untilOutput(child, /"event":"ready"/, 30_000, 'the proxy');
      return child;
    }

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      it(`gives open sessions a reset or a clean close when it stops (${signal}); the user reconnects to the new process; no byte is corrupted`, async () => {
        const e = await echo();
        const probe = createServer();
        const port = await listen(probe);
        await new Promise<void>((r) => probe.close(() => r()));
        const routesFile = join(dir, `routes-${signal}.json`);
        writeFileSync(routesFile, JSON.stringify([{ ...setRoute(1, e.port), listen: { host: '127.0.0.1', port } }]));
        const first = await startMain(routesFile);
        const run = runStreamCheck({ host: '127.0.0.1', port, durationMs: 10_000, frameBytes: 3000, windowBytes: 512 * 1024 });
        await sleep(500);
        first.kill(signal);
        const r = await run;
        assert.ok(r.end === 'reset' || r.end === 'closed', `ended ${r.end}`);
        assert.ok(r.intact, `nothing corrupted, lost or duplicated before the end: ${JSON.stringify(r)}`);
        assert.ok(r.bytesVerified > 0 && r.bytesVerified < r.bytesSent);
        await startMain(routesFile);
        const again = await runStreamCheck({ host: '127.0.0.1', port, durationMs: 300, frameBytes: 3000, windowBytes: 512 * 1024 });
        assert.equal(again.end, 'completed');
        assert.ok(again.intact && again.bytesVerified === again.bytesSent);
      });
    }
  });
});
