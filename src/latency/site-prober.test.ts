import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { untilOutput } from '../core/child-output.js';
import { systemClock } from '../core/clock.js';
import { siteId, userId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { createLatencyService, DEFAULT_LATENCY_PARAMS } from './service.js';
import { createLocalProber, createNamespaceProber, type NamespaceProber } from './site-prober.js';

const isRoot = process.getuid?.() === 0;
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('local prober', () => {
  let server: net.Server;
  let port = 0;
  before(async () => {
    server = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('times a connect to a loopback listener, and a refused one, then refuses to probe once closed', async () => {
    const p = createLocalProber();
    const r = await p.probe('127.0.0.1', port, 1000);
    assert.equal(r.how, 'connected');
    assert.ok(r.rttMs >= 0 && r.rttMs < 1000);
    assert.equal((await p.probe('127.0.0.1', 9, 1000)).how, 'refused');
    await p.close();
    await assert.rejects(p.probe('127.0.0.1', port, 1000), /local prober is closed/);
  });
});

describe('namespace prober with a stand-in agent (no namespace)', () => {
  it('kills an agent that misses its own timeout and starts a new one for the next probe', async () => {
    // Says it is ready, then never answers (and prints a line that is not JSON, which is only logged).
    const silent = [process.execPath, '-e', "console.log(JSON.stringify({ready:true}));console.log('garbage');process.stdin.resume()"];
    const p = createNamespaceProber({ ns: 'none', command: silent, graceMs: 100 });
    try {
      await assert.rejects(p.probe('127.0.0.1', 9, 50), (e: Error & { code?: string }) => e.code === 'PROBE_AGENT_HUNG' && /no answer within 150 ms; it is restarted/.test(e.message));
      const pid1 = p.agentPid();
      await until('the hung agent is gone', () => p.agentPid() === null || p.agentPid() !== pid1, 5000);
      await assert.rejects(p.probe('127.0.0.1', 9, 50), /PROBE_AGENT_HUNG|no answer/);
      assert.equal(p.starts(), 2);
    } finally {
      await p.close();
    }
  });
});

describe('namespace prober', { skip: isRoot ? false : 'needs root (ip netns)' }, () => {
  // Our own namespace: lo with 10.253.0.1 and .2 (two "users" answering RST), and a veth pair whose far
  // end has no address, so a SYN to 10.253.1.2 waits on ARP for ~3 s (a probe that hangs).
  const ns = `vmshadow-lt-${randomBytes(3).toString('hex')}`;
  const probers: NamespaceProber[] = [];
  let listener: ChildProcess | null = null;
  let listenerPort = 0;
  let rootServer: net.Server;
  let rootPort = 0;
  const prober = (): NamespaceProber => {
    const p = createNamespaceProber({ ns, log: silentLogger });
    probers.push(p);
    return p;
  };

  before(async () => {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', '10.253.0.1/32', 'dev', 'lo');
    ip('-n', ns, 'addr', 'add', '10.253.0.2/32', 'dev', 'lo');
    ip('-n', ns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
    ip('-n', ns, 'addr', 'add', '10.253.1.1/24', 'dev', 'va');
    ip('-n', ns, 'link', 'set', 'va', 'up');
    ip('-n', ns, 'link', 'set', 'vb', 'up');
    listener = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e',
      "const s=require('net').createServer(c=>c.destroy()).listen(0,'10.253.0.1',()=>console.log('port '+s.address().port));process.stdin.on('end',()=>process.exit(0));process.stdin.resume()"],
    { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = await untilOutput(listener, /port \d+\n/, 15_000, 'listener in the test namespace');
    listenerPort = Number(/port (\d+)/.exec(out)![1]);
    rootServer = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => rootServer.listen(0, '127.0.0.1', r));
    rootPort = (rootServer.address() as net.AddressInfo).port;
  });

  after(async () => {
    await Promise.all(probers.map((p) => p.close()));
    if (listener?.pid !== undefined) {
      listener.kill('SIGKILL');
    }
    await new Promise<void>((r) => rootServer.close(() => r()));
    // Anything of ours still inside goes with it, by pid.
    for (const pid of ip('netns', 'pids', ns).split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    ip('netns', 'del', ns);
    assert.ok(!ip('netns', 'list').includes(ns), `namespace ${ns} is left`);
  });

  it('probes from inside the namespace: its listener answers, its closed ports refuse, and its loopback is not ours', async () => {
    const p = prober();
    const r = await p.probe('10.253.0.1', listenerPort, 2000);
    assert.equal(r.how, 'connected');
    assert.ok(r.rttMs >= 0 && r.rttMs < 2000, `${r.rttMs}`);
    assert.equal((await p.probe('10.253.0.2', 9, 2000)).how, 'refused');
    // A listener on the root namespace's loopback: connected from here, refused from inside.
    assert.equal((await createLocalProber().probe('127.0.0.1', rootPort, 2000)).how, 'connected');
    assert.equal((await p.probe('127.0.0.1', rootPort, 2000)).how, 'refused');
    assert.equal(p.starts(), 1, 'one agent answers every probe');
  });

  it('passes the probe\'s own failures through with their code', async () => {
    const p = prober();
    await assert.rejects(p.probe('10.253.1.2', 9, 300), (e: Error & { code?: string }) =>
      e.code === 'PROBE_TIMEOUT' && /RTT probe to 10\.253\.1\.2:9 got no answer within 300 ms/.test(e.message));
    await assert.rejects(p.probe('desk1', 9, 2000), (e: Error & { code?: string }) => e.code === 'AGENT_BAD_REQUEST' && /host must be an IP address/.test(e.message));
    assert.equal((await p.probe('10.253.0.2', 9, 2000)).how, 'refused', 'the agent goes on after a bad request');
  });

  it('restarts the agent after it is killed, and fails the probes it had in flight', async () => {
    const p = prober();
    await p.probe('10.253.0.2', 9, 2000);
    const pid1 = p.agentPid()!;
    assert.ok(pid1 > 0 && alive(pid1));
    const inFlight = p.probe('10.253.1.2', 9, 5000); // waits on ARP for seconds
    await new Promise((r) => setTimeout(r, 200));
    process.kill(pid1, 'SIGKILL');
    await assert.rejects(inFlight, (e: Error & { code?: string }) => e.code === 'PROBE_AGENT_DIED' && e.message.includes(ns) && /1 probes were in flight/.test(e.message));
    await until('the agent is seen dead', () => p.agentPid() === null);
    const r = await p.probe('10.253.0.2', 9, 2000);
    assert.equal(r.how, 'refused');
    const pid2 = p.agentPid()!;
    assert.notEqual(pid2, pid1);
    assert.equal(p.starts(), 2);
  });

  it('close() stops the agent; probes after it are refused', async () => {
    const p = prober();
    await p.probe('10.253.0.2', 9, 2000);
    const pid = p.agentPid()!;
    await p.close();
    await until('the agent is gone', () => !alive(pid), 5000);
    await assert.rejects(p.probe('10.253.0.2', 9, 2000), /prober of namespace .* is closed/);
  });

  it('names a namespace that does not exist, and backs off instead of restarting in a loop', async () => {
    const missing = `${ns}-none`;
    const p = createNamespaceProber({ ns: missing, restartBackoffMs: 10_000 });
    probers.push(p);
    await assert.rejects(p.probe('10.253.0.2', 9, 1000), (e: Error & { code?: string }) =>
      e.code === 'PROBE_AGENT_START' && e.message.includes(missing) && /Cannot open network namespace/.test(e.message));
    await assert.rejects(p.probe('10.253.0.2', 9, 1000), /PROBE_AGENT_START|exited/);
    await assert.rejects(p.probe('10.253.0.2', 9, 1000), (e: Error & { code?: string }) => e.code === 'PROBE_AGENT_DOWN' && /next start in \d+ ms/.test(e.message));
    assert.equal(p.starts(), 2);
  });

  it('runs a probe round of 3 sites × 2 users through namespace agents', async (t) => {
    const sites = ['s0', 's1', 's2'].map((s) => ({ id: siteId(s), country: 'US' }));
    const svc = createLatencyService({ sites, probeFrom: () => prober(), geo: null, clock: systemClock, log: silentLogger });
    const users = [{ userId: userId('alice'), endpoint: '10.253.0.1' }, { userId: userId('bob'), endpoint: '10.253.0.2' }];
    const first = await svc.probeRound(users); // includes starting the three agents
    const second = await svc.probeRound(users);
    for (const r of [first, second]) {
      assert.equal(r.probesSent, 3 * 2 * DEFAULT_LATENCY_PARAMS.probesPerPair);
      assert.equal(r.probesFailed, 0);
      for (const row of r.rows) for (const s of sites) assert.equal(row.rtt[s.id]?.source, 'probe', `${row.userId} @ ${s.id}`);
    }
    t.diagnostic(`round of 3 sites × 2 users × ${DEFAULT_LATENCY_PARAMS.probesPerPair} probes: ${first.durationMs} ms with agent start-up, ${second.durationMs} ms after`);
    await svc.close();
  });
});
