import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AppError, InputError } from '../core/errors.js';
import {
  CommandError,
  NetnsRun,
  cleanupRun,
  execIn,
  findLeftoverRuns,
  isProcessAlive,
  isRoot,
  listNamespaces,
  nsPrefix,
  processStartTicks,
  registryPath,
  runIp,
} from './netns.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const NETNS_JS = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), 'netns.js')).href;

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return cond();
}

describe('netns: commands', { skip }, () => {
  it('runIp() failure names the command, its exit code and its stderr', async () => {
    await assert.rejects(runIp(['link', 'show', 'dev', 'vms-nonexist0']), (e: unknown) => {
      assert.ok(e instanceof CommandError);
      assert.equal(e.code, 'COMMAND_FAILED');
      assert.equal(e.exitCode, 1);
      assert.match(e.message, /^ip link show dev vms-nonexist0 failed \(exit code 1\): .*does not exist/);
      return true;
    });
  });

  it('execIn() of a program that is not installed says so and how to install known ones', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vms-netns-'));
    const run = NetnsRun.create({ stateDir: dir });
    try {
      const ns = await run.addNamespace('x');
      await assert.rejects(execIn(ns, ['vms-no-such-program']), (e: unknown) => e instanceof AppError && e.code === 'COMMAND_MISSING' && /not installed/.test(e.message));
    } finally {
      await run.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('NetnsRun', { skip }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vms-netns-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names namespaces vms-<runId>-<role> and refuses names that could collide or not fit', async () => {
    const run = NetnsRun.create({ stateDir: dir });
    try {
      assert.match(run.runId, /^[0-9a-f]{6}$/);
      assert.equal(run.nsName('east'), `vms-${run.runId}-east`);
      assert.throws(() => run.nsName('East side'), InputError);
      assert.equal(run.rootIfName('tap1'), `vm${run.runId}tap1`);
      assert.throws(() => run.rootIfName('toolong1'), /15 characters/);
      await assert.rejects(run.addBridge('vms-000000-other', 'br0'), /is not a namespace of run/);
      await assert.rejects(run.addBridge(null, 'br-root'), /must be named by rootIfName/);
      assert.throws(() => NetnsRun.create({ stateDir: dir, runId: run.runId }), (e: unknown) => e instanceof AppError && e.code === 'RUN_EXISTS');
    } finally {
      await run.destroy();
    }
  });

  it('builds linked namespaces that reach each other, and destroy() removes namespaces, devices, processes and the registry', async () => {
    const run = NetnsRun.create({ stateDir: dir });
    let pid = 0;
    let startTicks: number | null = null;
    try {
      const a = await run.addNamespace('a');
      const b = await run.addNamespace('b');
      await run.addVeth({ ns: a, name: 'eth0' }, { ns: b, name: 'eth0' });
      await run.addAddress(a, 'eth0', '10.99.0.1/24');
      await run.addAddress(b, 'eth0', '10.99.0.2/24');
      await run.linkUp(a, 'eth0');
      await run.linkUp(b, 'eth0');
      const rootEnd = run.rootIfName('h');
      await run.addVeth({ ns: null, name: rootEnd }, { ns: a, name: 'up0' });
      const ping = await run.execIn(a, ['ping', '-c', '1', '-W', '2', '10.99.0.2']);
      assert.match(ping.stdout, /1 received/);
      const sleeper = run.spawnIn(b, ['sleep', '600']);
      pid = sleeper.pid;
      startTicks = processStartTicks(pid);
      const rec = run.record;
      assert.deepEqual(rec.namespaces, [a, b]);
      assert.deepEqual(rec.rootDevices, [rootEnd]);
      assert.equal(rec.processes[0]?.pid, pid);
      assert.equal(rec.owner.pid, process.pid);
      assert.ok(existsSync(registryPath(dir, run.runId)));
    } finally {
      const report = await run.destroy();
      assert.deepEqual(report.errors, []);
    }
    assert.ok(await waitFor(() => !isProcessAlive(pid, startTicks), 3000), 'the process in the namespace was stopped');
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(run.runId))), []);
    await assert.rejects(runIp(['link', 'show', 'dev', run.rootIfName('h')]), /does not exist/);
    assert.ok(!existsSync(registryPath(dir, run.runId)));
  });

  it('findLeftoverRuns() lists a run whose owner was killed -9 (not a live one), and cleanupRun() removes its namespaces and processes', async () => {
    const live = NetnsRun.create({ stateDir: dir });
    const script = `
      import { NetnsRun } from ${JSON.stringify(NETNS_JS)};
      const run = NetnsRun.create({ stateDir: ${JSON.stringify(dir)} });
      const ns = await run.addNamespace('crash');
      const p = run.spawnIn(ns, ['sleep', '600']);
      p.child.unref();
      process.stdout.write(JSON.stringify({ runId: run.runId, ns, pid: p.pid }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const info = await new Promise<{ runId: string; ns: string; pid: number }>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve(JSON.parse(out) as { runId: string; ns: string; pid: number });
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
        child.once('exit', (code) => reject(new Error(`child exited ${String(code)}: ${err}`)));
      });
      const sleeperTicks = processStartTicks(info.pid);
      assert.ok(!findLeftoverRuns({ stateDir: dir }).some((r) => r.runId === info.runId), 'a run with a live owner is not a leftover');
      child.kill('SIGKILL');
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, 3000);
      const leftovers = findLeftoverRuns({ stateDir: dir }).map((r) => r.runId);
      assert.ok(leftovers.includes(info.runId));
      assert.ok(!leftovers.includes(live.runId));
      assert.ok(isProcessAlive(info.pid, sleeperTicks), 'the orphan is still running before cleanup');
      const report = await cleanupRun(info.runId, { stateDir: dir });
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.namespacesDeleted, [info.ns]);
      assert.ok(report.processesStopped.includes(info.pid));
      assert.ok(!isProcessAlive(info.pid, sleeperTicks));
      assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(info.runId))), []);
      assert.ok(!findLeftoverRuns({ stateDir: dir }).some((r) => r.runId === info.runId));
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await live.destroy();
    }
  });

  it('cleanupOnSignals() removes the run when its owner gets Ctrl-C (SIGINT), and exits 130', async () => {
    const script = `
      import { NetnsRun, cleanupOnSignals } from ${JSON.stringify(NETNS_JS)};
      const run = NetnsRun.create({ stateDir: ${JSON.stringify(dir)} });
      const ns = await run.addNamespace('ctrlc');
      run.spawnIn(ns, ['sleep', '600']);
      cleanupOnSignals(() => run.destroy());
      process.stdout.write(JSON.stringify({ runId: run.runId }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const { runId } = await new Promise<{ runId: string }>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve(JSON.parse(out) as { runId: string });
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
        child.once('exit', (code) => reject(new Error(`child exited ${String(code)}: ${err}`)));
      });
      assert.equal((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(runId))).length, 1);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGINT');
      assert.equal(await exited, 130);
      assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(runId))), []);
      assert.ok(!existsSync(registryPath(dir, runId)));
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('refuses clearly when not root', () => {
    const script = `
      import { NetnsRun } from ${JSON.stringify(NETNS_JS)};
      try { NetnsRun.create({ stateDir: '/nonexistent/vms' }); } catch (e) { process.stdout.write(e.code + ': ' + e.message); }
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20_000 });
    assert.match(r.stdout, /^NOT_ROOT: Cannot build a lab run: network namespaces need root, and this process runs as uid 65534/);
  });
});
