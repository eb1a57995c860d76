// The lab end to end on this machine: a 2-site cloud (us-east-1, us-west-2: 63.5 ms apart) with one user near
// us-west-2 and one real TCG guest at us-east-1, built in-process through labUp(); then the CLI: a crashed
// `lab up` (kill -9) cleaned by `lab down`, `lab status` without a lab, a bad config.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vmId } from '../core/ids.js';
import { isAlive } from '../migration/qemu/process.js';
import { loadLatencyData } from '../sim/latency-data.js';
import { findLink, parseLabConfig, type LabConfig } from './config.js';
import { ensureGuest } from './guest.js';
import { labDown, labStatus, labUp, readLabState, type Lab } from './lab.js';
import { findLeftoverRuns, isProcessAlive, isRoot, listNamespaces, nsPrefix, readRecord, runIp } from './netns.js';

const skip = isRoot() ? false : 'needs root (network namespaces, QEMU)';
const data = loadLatencyData(fileURLToPath(new URL('../../../data/', import.meta.url)));
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Round-trip times (ms) of `count` pings from inside a namespace. */
async function pingRtts(lab: Lab, fromNs: string, ip: string, count: number): Promise<number[]> {
  const r = await lab.run.execIn(fromNs, ['ping', '-n', '-c', String(count), '-i', '0.2', '-W', '2', ip], { okCodes: [1], timeoutMs: 30_000 });
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

/** utime + stime of a process, in seconds (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

function cli(args: string[], timeoutMs = 120_000): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the lab: 2 sites, a user near one, a real guest at the other', { skip, timeout: 600_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'vms-lab-'));
  const collector = dgram.createSocket('udp4');
  const datagrams: { from: string; version: number }[] = [];
  let config: LabConfig;
  let lab: Lab;

  before(async () => {
    await new Promise<void>((r) => collector.bind(0, '0.0.0.0', r));
    collector.on('message', (msg, rinfo) => datagrams.push({ from: rinfo.address, version: msg.readUInt16BE(0) }));
    config = parseLabConfig({
      sites: ['us-east-1', 'us-west-2'],
      users: [{ name: 'alice', near: 'us-west-2' }],
      vms: [{ name: 'desk1', site: 'us-east-1', user: 'alice', diskMiB: 0, dirty: { workingSetMiB: 4, rateMiBps: 1 } }],
      flowExport: { collectorPort: (collector.address()).port, idleTimeoutS: 2, activeTimeoutS: 5 },
    }, data);
    lab = await labUp(config, { stateDir, guest: await ensureGuest() });
  });

  after(async () => {
    await lab?.down();
    collector.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('status shows the namespaces, the relay, softflowd and the guest alive, and the guest answers its echo port from its site', async () => {
    const st = await labStatus(stateDir);
    assert.equal(st.up, true);
    assert.deepEqual(st.problems, []);
    assert.equal(st.healthy, true);
    assert.equal(st.runId, lab.runId);
    assert.ok(st.sites.every((s) => s.nsAlive && s.flowExporterAlive === true));
    assert.ok(st.users.every((u) => u.nsAlive));
    const vm = st.vms[0]!;
    assert.deepEqual([vm.name, vm.site, vm.qemuStatus, vm.echo], ['desk1', 'us-east-1', 'running', true]);
    assert.ok(vm.pid !== null && isAlive(vm.pid));
    assert.ok(st.relay?.stats !== null && st.relay!.stats.directions.length === 6, 'three links, both directions, named by site and user');
    assert.ok(st.relay!.stats.directions.some((d) => d.from === 'alice' && d.to === 'us-west-2'));
  });

  it('ping from the user namespace to each site shows the link RTT from the data (± a few ms)', async (t: TestContext) => {
    const alice = lab.userNs('alice');
    const st = lab.state();
    for (const s of st.sites) {
      const want = findLink(config, 'alice', s.id)!.rttMs;
      await pingRtts(lab, alice, s.address, 1); // ARP and VXLAN learning first
      const rtts = await pingRtts(lab, alice, s.address, 10);
      t.diagnostic(`alice → ${s.id}: configured ${want} ms, ping ${rtts.join(' ')}`);
      assert.equal(rtts.length, 10);
      assert.ok(Math.min(...rtts) >= want - 2.5, `min ${Math.min(...rtts)} ms < ${want} ms`);
      assert.ok(median(rtts) <= want + 4, `median ${median(rtts)} ms > ${want} + 4 ms`);
    }
  });

  it('softflowd on each site bridge exports IPFIX to the collector in the root namespace', async () => {
    const st = lab.state();
    const exporters = st.sites.map((s) => s.flowExporter?.exporterAddress);
    // Traffic through us-east-1's bridge: the guest's echo service from alice.
    await pingRtts(lab, lab.userNs('alice'), st.vms[0]!.ip, 3);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !datagrams.some((d) => d.from === exporters[0])) await new Promise((r) => setTimeout(r, 250));
    const fromEast = datagrams.filter((d) => d.from === exporters[0]);
    assert.ok(fromEast.length > 0, `a datagram from us-east-1's exporter ${String(exporters[0])} (got from: ${[...new Set(datagrams.map((d) => d.from))].join(', ') || 'none'})`);
    assert.ok(fromEast.every((d) => d.version === 10), 'IPFIX');
  });

  it('a link changed at run time: ping shows the new RTT, and lab.json records it', async () => {
    await lab.setLink('alice', 'us-west-2', { rttMs: 60 });
    const rtts = await pingRtts(lab, lab.userNs('alice'), lab.state().sites[1]!.address, 5);
    assert.ok(Math.min(...rtts) >= 58.5 && median(rtts) <= 64, `ping ${rtts.join(' ')}`);
    const saved = readLabState(stateDir)!;
    assert.equal(saved.links.find((l) => l.a === 'us-west-2' && l.b === 'alice')?.rttMs, 60);
    assert.equal(saved.users[0]?.rttMs['us-west-2'], 60);
  });

  it("migrates the guest through lab.driver to the user's site: vmPlacement and lab.json follow, and it answers there", async (t: TestContext) => {
    const req = lab.migrationRequest('desk1', 'us-west-2', { jobId: 'lab-test-1' });
    assert.equal(req.link.rttMs, 63.5);
    assert.equal(req.storage, 'shared');
    const h = await lab.driver.start(req);
    const out = await h.done;
    t.diagnostic(`migration: ${out.status} in ${(out.durationMs / 1000).toFixed(1)} s, ${(out.transferredBytes / 2 ** 20).toFixed(1)} MiB, downtime ${String(out.downtimeMs)} ms`);
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.equal(lab.vmPlacement('desk1').siteId, 'us-west-2');
    assert.equal(readLabState(stateDir)?.vms[0]?.site, 'us-west-2');
    assert.ok(lab.driver.instanceAt(vmId('desk1'), lab.vmPlacement('desk1')) !== null);
    const st = await labStatus(stateDir);
    assert.deepEqual([st.vms[0]?.runningAt?.site, st.vms[0]?.qemuStatus, st.vms[0]?.echo], ['us-west-2', 'running', true]);
  });

  it('down removes every namespace of the run, every process (QEMU, relay, softflowd), every tap and the state files', async (t: TestContext) => {
    const st = await labStatus(stateDir, { checkEcho: false });
    const pids = [st.relay!.pid, ...st.vms.map((v) => v.pid!), ...st.sites.map((s) => s.flowExporter!.pid)];
    assert.ok(pids.every((p) => isAlive(p)), 'all running before');
    t.diagnostic(`CPU seconds of the lab's daemons: ${pids.map((p) => `${p}: ${cpuSeconds(p).toFixed(1)}`).join(', ')} (relay, QEMU, softflowd)`);
    const rep = await lab.down();
    assert.deepEqual(rep.errors, []);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(lab.runId))), []);
    assert.deepEqual(pids.filter((p) => isAlive(p)), []);
    const { stdout } = await runIp(['-o', 'link', 'show']);
    assert.ok(!stdout.includes(`vm${lab.runId}`), 'no root-namespace device of the run');
    assert.ok(!existsSync(stateDir), `${stateDir} is removed with everything in it`);
  });
});

describe('vmshadow lab (CLI)', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'vms-labcli-'));
  after(async () => {
    // A failed assertion must not leave a lab behind.
    for (const sd of ['int', 'crash'].map((d) => join(dir, d))) if (existsSync(sd)) await labDown(sd).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('lab status with no lab says so and exits 3', { skip }, () => {
    const r = cli(['lab', 'status', '--state-dir', join(dir, 'none')]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.out, /No lab is up in .*none/);
    const j = cli(['lab', 'status', '--state-dir', join(dir, 'none'), '--json']);
    assert.equal(j.code, 3);
    assert.equal((JSON.parse(j.out) as { up: boolean }).up, false);
  });

  it('a bad config exits 2 naming the field', () => {
    const f = join(dir, 'bad.json');
    writeFileSync(f, JSON.stringify({ sites: ['us-east-1'], vms: [{ name: 'desk1', site: 'mars-1' }] }));
    const r = cli(['lab', 'up', '--config', f, '--state-dir', join(dir, 'bad')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^vmshadow: vms\[0\]\.site: must name a site \(us-east-1\)/);
    const s = cli(['lab', 'up', '--sites', 'many', '--state-dir', join(dir, 'bad')]);
    assert.equal(s.code, 2);
    assert.match(s.err, /^vmshadow: --sites:/);
    assert.ok(!existsSync(join(dir, 'bad')), 'nothing was built');
  });

  it('refuses clearly when not root', { skip }, () => {
    const r = spawnSync(process.execPath, [CLI, 'lab', 'up', '--state-dir', join(dir, 'nobody')], { encoding: 'utf8', timeout: 60_000, uid: 65534, gid: 65534 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^vmshadow: Cannot bring up the lab: network namespaces need root, and this process runs as uid 65534/);
    assert.ok(!existsSync(join(dir, 'nobody')));
  });

  it('Ctrl-C during lab up removes what was built: exit 130, no namespace, process or file left', { skip }, async () => {
    const stateDir = join(dir, 'int');
    const f = join(dir, 'int.json');
    writeFileSync(f, JSON.stringify({ sites: ['us-east-1', 'us-west-2'], users: [{ name: 'alice', near: 'us-west-2' }], vms: [{ name: 'vm1', site: 'us-east-1', diskMiB: 0 }] }));
    await ensureGuest();
    const child = spawn(process.execPath, [CLI, 'lab', 'up', '--config', f, '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    let runId = '';
    let relayPid: number | undefined;
    try {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline && !/starting VM vm1/.test(err)) await new Promise((r) => setTimeout(r, 100));
      runId = /run ([0-9a-f]{6}):/.exec(err)?.[1] ?? '';
      relayPid = (readRecord(stateDir, runId)?.meta.wanTestbed as { relayPid?: number } | undefined)?.relayPid;
      assert.ok(runId !== '' && relayPid !== undefined, `the worker got as far as the guest; its output: ${err}`);
      child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 90_000))]);
      assert.equal(code, 130, err);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    assert.match(err, /interrupted \(SIGINT\); the lab was not built and what was started is removed/);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(runId))), []);
    const left = spawnSync('pgrep', ['-f', stateDir], { encoding: 'utf8' }).stdout.trim();
    assert.equal(left, '', `no process of the interrupted lab is left (QEMU daemonizes outside its namespace): ${left}`);
    assert.equal(isAlive(relayPid), false, 'relay stopped');
    assert.ok(!existsSync(stateDir), 'state directory removed');
  });

  it('lab up killed -9 while starting its guest leaves a run that lab down removes: no namespace, process or file', { skip }, async (t: TestContext) => {
    const stateDir = join(dir, 'crash');
    const f = join(dir, 'crash.json');
    writeFileSync(f, JSON.stringify({ sites: ['us-east-1', 'us-west-2'], users: [], vms: [{ name: 'vm1', site: 'us-east-1', diskMiB: 0 }] }));
    await ensureGuest();
    const child = spawn(process.execPath, [CLI, 'lab', 'up', '--config', f, '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
    });
    let workerPid = 0;
    let qemuPid: number | undefined;
    let runId = '';
    try {
      // Wait (bounded) until the worker's QEMU runs.
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline && qemuPid === undefined) {
        await new Promise((r) => setTimeout(r, 200));
        workerPid = Number(/\(pid (\d+)\)/.exec(err)?.[1] ?? 0);
        runId = /run ([0-9a-f]{6}):/.exec(err)?.[1] ?? '';
        if (runId === '') continue;
        const pidFile = join(stateDir, runId, '0a', 'vm1.pid');
        const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
        if (/^\d+$/.test(text) && isAlive(Number(text))) qemuPid = Number(text);
      }
      assert.ok(workerPid > 0 && runId !== '' && qemuPid !== undefined, `the worker started QEMU; its output: ${err}`);
    } finally {
      if (workerPid > 0) process.kill(workerPid, 'SIGKILL');
      child.kill('SIGKILL');
    }
    for (let i = 0; i < 100 && isAlive(workerPid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(workerPid), false, 'the worker is dead');
    const rec = readRecord(stateDir, runId);
    const relayPid = (rec?.meta.wanTestbed as { relayPid?: number } | undefined)?.relayPid;
    assert.ok(relayPid !== undefined && isProcessAlive(relayPid, null), 'the relay outlived the crash');
    assert.ok(findLeftoverRuns({ stateDir }).some((r) => r.runId === runId), 'the crashed run is a leftover');
    const st = cli(['lab', 'status', '--state-dir', stateDir]);
    assert.equal(st.code, 3);
    assert.match(st.out, new RegExp(`Leftovers of crashed runs: ${runId}`));

    const down = cli(['lab', 'down', '--state-dir', stateDir]);
    t.diagnostic(down.out.trim());
    assert.equal(down.code, 0, down.out + down.err);
    assert.match(down.out, new RegExp(`Leftovers of crashed run ${runId}: removed [1-9]\\d* namespaces`));
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(runId))), []);
    assert.equal(isAlive(qemuPid), false, 'QEMU stopped');
    assert.equal(isAlive(relayPid), false, 'relay stopped');
    assert.ok(!existsSync(stateDir), 'state directory removed');
  });
});
