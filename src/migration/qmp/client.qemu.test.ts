// The client and the command helpers against real QEMU (qemu-system-x86_64 -M none: no guest needed).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { QmpClient, type QmpExecutor } from './client.js';
import { QemuMonitor, nbdBlockdev } from './commands.js';
import { QmpClosedError, QmpError, QmpTimeoutError } from './errors.js';

const QEMU = 'qemu-system-x86_64';
const haveQemu = spawnSync(QEMU, ['--version']).status === 0;
const skip = haveQemu ? false : `${QEMU} is not installed`;

const dir = mkdtempSync(join(tmpdir(), 'qmp-qemu-'));
const procs: ChildProcess[] = [];
const clients: QmpClient[] = [];

interface Qemu {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly qmpPath: string;
  readonly exited: Promise<number | null>;
}

let counter = 0;

/** Starts QEMU with a QMP unix socket and waits (bounded) for the socket to appear. */
async function startQemu(extra: string[] = []): Promise<Qemu> {
  const qmpPath = join(dir, `q${++counter}.qmp`);
  const proc = spawn(QEMU, ['-M', 'none', '-accel', 'tcg', '-display', 'none', '-nodefaults', '-no-user-config',
    '-qmp', `unix:${qmpPath},server=on,wait=off`, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(proc);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`${QEMU} did not start`);
  for (let i = 0; i < 250 && !existsSync(qmpPath); i++) {
    if (proc.exitCode !== null) throw new Error(`${QEMU} exited with ${proc.exitCode}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!existsSync(qmpPath)) throw new Error(`${QEMU} (pid ${pid}) made no QMP socket at ${qmpPath} within 5 s: ${stderr}`);
  return { proc, pid, qmpPath, exited };
}

async function connect(q: Qemu, opts: Parameters<typeof QmpClient.connect>[1] = {}): Promise<QmpClient> {
  const c = await QmpClient.connect({ path: q.qmpPath }, { connectTimeoutMs: 5000, defaultTimeoutMs: 5000, retryRefused: true, ...opts });
  clients.push(c);
  return c;
}

after(async () => {
  for (const c of clients) await c.close();
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
      const gone = new Promise((r) => p.once('exit', r));
      process.kill(p.pid, 'SIGCONT');
      process.kill(p.pid, 'SIGKILL');
      await gone;
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('QmpClient against real QEMU', { skip }, () => {
  it('reads QEMU\'s greeting and version, offers oob, and answers query-status', async () => {
    const q = await startQemu();
    const qmp = await connect(q, { oob: true });
    const v = spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout;
    assert.match(v, new RegExp(`version ${qmp.version.major}\\.${qmp.version.minor}\\.${qmp.version.micro}\\b`));
    assert.ok(qmp.greeting.capabilities.includes('oob'));
    assert.equal(qmp.oobEnabled, true);
    const status = await new QemuMonitor(qmp).queryStatus();
    assert.deepEqual([status.status, status.running], ['running', true]);
    // query-status may not run out of band: QEMU says so with a GenericError, routed by id.
    const oob = await qmp.execute('query-status', undefined, { oob: true }).catch((e: unknown) => e);
    assert.ok(oob instanceof QmpError);
    assert.match(oob.desc, /does not support OOB/);
  });

  it('surfaces QEMU\'s error classes: CommandNotFound, and GenericError for a bad argument', async () => {
    const q = await startQemu();
    const qmp = await connect(q);
    const missing = await qmp.execute('no-such-command').catch((e: unknown) => e);
    assert.ok(missing instanceof QmpError);
    assert.equal(missing.errorClass, 'CommandNotFound');
    assert.equal(missing.message, `QMP no-such-command on ${q.qmpPath} failed: CommandNotFound: The command no-such-command has not been found (client connected, 0 other calls pending)`);
    const bad = await qmp.execute('migrate-set-parameters', { 'no-such-parameter': 1 }).catch((e: unknown) => e);
    assert.ok(bad instanceof QmpError);
    assert.equal(bad.errorClass, 'GenericError');
    assert.match(bad.desc, /no-such-parameter/);
    assert.equal(qmp.isConnected, true);
  });

  it('sees STOP and RESUME, which QEMU sends before the replies of stop and cont', async () => {
    const q = await startQemu();
    const qmp = await connect(q);
    const mon = new QemuMonitor(qmp);
    await mon.stop();
    const stop = await qmp.waitForEvent('STOP', null, 2000);
    assert.equal((await mon.queryStatus()).status, 'paused');
    await mon.cont();
    const resume = await qmp.waitForEvent('RESUME', null, 2000);
    assert.ok(resume.timestampMs >= stop.timestampMs);
    assert.ok(Math.abs(resume.timestampMs - Date.now()) < 60_000, 'QEMU\'s event time stamps are wall-clock ms');
  });

  it('times out on a frozen QEMU, and is usable again (late reply dropped) once it thaws', async () => {
    const q = await startQemu();
    const qmp = await connect(q);
    process.kill(q.pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      await assert.rejects(qmp.execute('query-status', undefined, { timeoutMs: 300 }), QmpTimeoutError);
      assert.ok(Date.now() - t0 < 1500);
    } finally {
      process.kill(q.pid, 'SIGCONT');
    }
    assert.equal((await new QemuMonitor(qmp).queryStatus()).status, 'running');
  });

  it('names the likely cause when another client holds the monitor', async () => {
    const q = await startQemu();
    await connect(q);
    await assert.rejects(QmpClient.connect({ path: q.qmpPath }, { connectTimeoutMs: 300 }), /waiting for the greeting; another client may hold the monitor/);
  });

  it('rejects a pending call with QmpClosedError promptly when QEMU is killed -9 mid-call', async () => {
    const q = await startQemu();
    const qmp = await connect(q);
    process.kill(q.pid, 'SIGSTOP'); // holds the call pending until the kill
    const pending = qmp.execute('query-status', undefined, { timeoutMs: 10_000 });
    const outcome = pending.then(
      () => assert.fail('the call should not succeed'),
      (e: unknown) => ({ err: e, atMs: Date.now() }),
    );
    await new Promise((r) => setTimeout(r, 50));
    const killedAtMs = Date.now();
    process.kill(q.pid, 'SIGKILL');
    const { err, atMs } = await outcome;
    assert.ok(err instanceof QmpClosedError);
    assert.equal(err.reason, 'eof');
    assert.ok(atMs - killedAtMs < 1000, `rejected ${atMs - killedAtMs} ms after the kill`);
    await q.exited;
  });

  it('quit: the SHUTDOWN event, then EOF handled as a clean close, and QEMU exits 0', async () => {
    const q = await startQemu();
    const qmp = await connect(q);
    const cursor = qmp.eventCursor();
    await new QemuMonitor(qmp).quit();
    const shutdown = await qmp.waitForEvent('SHUTDOWN', null, 2000, { since: cursor }).catch(() => qmp.recentEvents().find((e) => e.event === 'SHUTDOWN'));
    assert.equal(shutdown?.data['reason'], 'host-qmp-quit');
    assert.equal((await qmp.closed).reason, 'eof');
    assert.equal(await q.exited, 0);
    await assert.rejects(qmp.execute('query-status'), QmpClosedError);
  });
});

// ---- the helpers' arguments, checked against QEMU's own schema ----

interface SchemaEntry {
  readonly name: string;
  readonly 'meta-type': string;
  readonly 'arg-type'?: string;
  readonly members?: ReadonlyArray<{ name: string; type?: string; default?: null }>;
  readonly tag?: string;
  readonly variants?: ReadonlyArray<{ case: string; type: string }>;
  readonly 'element-type'?: string;
  readonly 'json-type'?: string;
}

/** Problems with `value` as an instance of schema type `type` (empty when it conforms). */
function conform(schema: Map<string, SchemaEntry>, type: string, value: unknown, path: string): string[] {
  const t = schema.get(type);
  if (t === undefined) return [`${path}: unknown schema type ${type}`];
  switch (t['meta-type']) {
    case 'builtin': {
      const j = t['json-type'];
      const ok =
        j === 'value' ||
        (j === 'string' && typeof value === 'string') ||
        (j === 'int' && Number.isInteger(value)) ||
        (j === 'number' && typeof value === 'number') ||
        (j === 'boolean' && typeof value === 'boolean') ||
        (j === 'null' && value === null);
      return ok ? [] : [`${path}: ${JSON.stringify(value)} is not a ${j}`];
    }
    case 'enum':
      return (t.members ?? []).some((m) => m.name === value) ? [] : [`${path}: ${JSON.stringify(value)} is not one of ${(t.members ?? []).map((m) => m.name).join('|')}`];
    case 'array':
      return Array.isArray(value) ? value.flatMap((v, i) => conform(schema, t['element-type'] ?? '', v, `${path}[${i}]`)) : [`${path}: not an array`];
    case 'alternate': {
      const tries = (t.members ?? []).map((m) => conform(schema, m.type ?? '', value, path));
      return tries.some((p) => p.length === 0) ? [] : [`${path}: matches no alternative (${tries.map((p) => p[0]).join('; ')})`];
    }
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${path}: not an object`];
      const v = value as Record<string, unknown>;
      let members = [...(t.members ?? [])];
      if (t.tag !== undefined) {
        const variant = t.variants?.find((x) => x.case === v[t.tag ?? '']);
        const vt = variant === undefined ? undefined : schema.get(variant.type);
        if (vt !== undefined) members = members.concat(vt.members ?? []);
      }
      const problems: string[] = [];
      for (const m of members) if (!('default' in m) && !(m.name in v)) problems.push(`${path}: missing ${m.name}`);
      for (const [k, x] of Object.entries(v)) {
        const m = members.find((mm) => mm.name === k);
        if (m === undefined) problems.push(`${path}: QEMU has no argument ${k}`);
        else problems.push(...conform(schema, m.type ?? '', x, `${path}.${k}`));
      }
      return problems;
    }
    default:
      return [`${path}: cannot check meta-type ${t['meta-type']}`];
  }
}

/** Runs every helper, recording what it would send. */
async function recordHelperCalls(): Promise<Array<{ command: string; args: Record<string, unknown> }>> {
  const calls: Array<{ command: string; args: Record<string, unknown> }> = [];
  const rec: QmpExecutor = {
    execute<T>(command: string, args?: Readonly<Record<string, unknown>>): Promise<T> {
      calls.push({ command, args: { ...(args ?? {}) } });
      const arrays = ['query-block-jobs', 'query-migrate-capabilities'];
      const r = command === 'query-status' ? { status: 'running', running: true } : arrays.includes(command) ? [] : {};
      return Promise.resolve(r as T);
    },
  };
  const m = new QemuMonitor(rec);
  await m.queryStatus();
  await m.queryMigrate();
  await m.queryMigrateParameters();
  await m.queryMigrateCapabilities();
  await m.setMigrationCapabilities({ multifd: true, xbzrle: true, 'auto-converge': true, 'postcopy-ram': false, 'postcopy-preempt': false, 'release-ram': false, events: true });
  await m.setMigrationParameters({
    'max-bandwidth': 12_500_000, 'downtime-limit': 300, 'multifd-channels': 4, 'multifd-compression': 'zstd',
    'multifd-zstd-level': 1, 'xbzrle-cache-size': 67_108_864, 'cpu-throttle-initial': 20, 'cpu-throttle-increment': 10,
    'max-cpu-throttle': 99, 'max-postcopy-bandwidth': 0, 'tls-creds': 'tls0', 'tls-hostname': 'dst.example', 'tls-authz': '',
  });
  await m.migrate('tcp:10.0.0.2:4444');
  await m.migrate('tcp:10.0.0.2:4444', { resume: true });
  await m.migrateIncoming('tcp:0.0.0.0:4444');
  await m.migrateCancel();
  await m.migrateStartPostcopy();
  await m.migrateContinue('pre-switchover');
  await m.cont();
  await m.stop();
  await m.quit();
  await m.nbdServerStart({ addr: { type: 'inet', data: { host: '0.0.0.0', port: '10809' } }, 'tls-creds': 'tls0' });
  await m.nbdServerStart({ addr: { type: 'unix', data: { path: '/run/nbd.sock' } } });
  await m.nbdServerStop();
  await m.blockExportAddNbd({ id: 'exp0', 'node-name': 'disk0', writable: true, name: 'disk0' });
  await m.blockExportDel('exp0');
  await m.blockExportDel('exp0', { mode: 'hard' });
  await m.blockdevAdd(nbdBlockdev({ nodeName: 'target0', server: { type: 'inet', host: '10.0.0.2', port: '10809' }, exportName: 'disk0', tlsCreds: 'tls0', tlsHostname: 'dst' }));
  await m.blockdevAdd({ driver: 'null-co', 'node-name': 'null0', size: 1048576, 'read-zeroes': true });
  await m.blockdevDel('target0');
  await m.blockdevMirror({ 'job-id': 'mirror0', device: 'disk0', target: 'target0', sync: 'full', speed: 0, 'copy-mode': 'background', 'on-target-error': 'stop', 'auto-finalize': true, 'auto-dismiss': true });
  await m.blockJobCancel('mirror0');
  await m.blockJobCancel('mirror0', { force: true });
  await m.blockJobComplete('mirror0');
  await m.queryBlockJobs();
  await m.addTlsCredsX509({ id: 'tls0', dir: '/etc/vmshadow/tls', endpoint: 'server', 'verify-peer': true });
  await m.objectDel('tls0');
  return calls;
}

async function waitForJob(qmp: QmpClient, mon: QemuMonitor, device: string, pred: (status: string) => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const jobs = await mon.queryBlockJobs();
    const j = jobs.find((x) => x.device === device);
    if (j !== undefined && pred(j.status)) return;
    if (j === undefined && pred('gone')) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`block job ${device} did not reach the expected state on ${qmp.socketName}`);
}

describe('QemuMonitor against real QEMU', { skip }, () => {
  it('every helper sends what QEMU 7.2\'s own schema (query-qmp-schema) accepts', async () => {
    const q = await startQemu();
    const qmp = await connect(q, { maxLineBytes: 4 * 1024 * 1024 });
    const entries = await qmp.execute<SchemaEntry[]>('query-qmp-schema');
    const schema = new Map(entries.map((e) => [e.name, e]));
    const calls = await recordHelperCalls();
    assert.ok(calls.length >= 30);
    const problems: string[] = [];
    for (const c of calls) {
      const cmd = schema.get(c.command);
      if (cmd === undefined || cmd['meta-type'] !== 'command') {
        problems.push(`${c.command}: not a QEMU command`);
        continue;
      }
      problems.push(...conform(schema, cmd['arg-type'] ?? '', c.args, c.command));
    }
    assert.deepEqual(problems, []);
  });

  it('sets migration capabilities and parameters and reads them back', async () => {
    const q = await startQemu();
    const mon = new QemuMonitor(await connect(q));
    await mon.setMigrationCapabilities({ multifd: true, 'auto-converge': true, xbzrle: false });
    await mon.setMigrationParameters({ 'max-bandwidth': 12_500_000, 'downtime-limit': 250, 'multifd-channels': 4, 'multifd-compression': 'zstd' });
    const caps = new Map((await mon.queryMigrateCapabilities()).map((c) => [c.capability, c.state]));
    assert.deepEqual([caps.get('multifd'), caps.get('auto-converge'), caps.get('xbzrle')], [true, true, false]);
    const p = await mon.queryMigrateParameters();
    assert.deepEqual([p['max-bandwidth'], p['downtime-limit'], p['multifd-channels'], p['multifd-compression']], [12_500_000, 250, 4, 'zstd']);
    assert.equal((await mon.queryMigrate()).status, undefined, 'no migration yet: query-migrate has no status');
  });

  it('migrates between two QEMUs: migrate-incoming, migrate, MIGRATION events, query-migrate completed', async () => {
    const src = await startQemu();
    const dst = await startQemu(['-incoming', 'defer']);
    const s = await connect(src);
    const d = await connect(dst);
    const sm = new QemuMonitor(s, 'source');
    const dm = new QemuMonitor(d, 'destination');
    assert.equal((await dm.queryStatus()).status, 'inmigrate');
    await sm.setMigrationCapabilities({ events: true });
    await dm.setMigrationCapabilities({ events: true });
    const uri = `unix:${join(dir, 'mig.sock')}`;
    await dm.migrateIncoming(uri);
    const cursor = s.eventCursor();
    await sm.migrate(uri);
    await s.waitForEvent('MIGRATION', (e) => e.data['status'] === 'completed', 10_000, { since: cursor });
    const info = await sm.queryMigrate();
    assert.equal(info.status, 'completed');
    assert.equal(info.ram?.['page-size'], 4096);
    await d.waitForEvent('RESUME', null, 5000, { since: 0 });
    assert.equal((await dm.queryStatus()).status, 'running');
    assert.equal((await sm.queryStatus()).status, 'postmigrate');
    const again = await sm.migrate(uri).catch((e: unknown) => e);
    assert.ok(again instanceof QmpError, 'a second migrate to a destination that is gone fails');
  });

  it('mirrors a block node to an NBD export on another QEMU, reaches READY, and completes on cancel', async () => {
    const src = await startQemu();
    const dst = await startQemu();
    const s = await connect(src);
    const d = await connect(dst);
    const sm = new QemuMonitor(s, 'source');
    const dm = new QemuMonitor(d, 'destination');
    const nbdPath = join(dir, 'nbd.sock');
    const size = 4 * 1024 * 1024;
    await dm.blockdevAdd({ driver: 'null-co', 'node-name': 'disk0', size, 'read-zeroes': true });
    await dm.nbdServerStart({ addr: { type: 'unix', data: { path: nbdPath } } });
    await dm.blockExportAddNbd({ id: 'exp0', 'node-name': 'disk0', writable: true });
    await sm.blockdevAdd({ driver: 'null-co', 'node-name': 'disk0', size, 'read-zeroes': true });
    await sm.blockdevAdd(nbdBlockdev({ nodeName: 'target0', server: { type: 'unix', path: nbdPath }, exportName: 'disk0' }));
    const cursor = s.eventCursor();
    await sm.blockdevMirror({ 'job-id': 'mirror0', device: 'disk0', target: 'target0', sync: 'full' });
    const ready = await s.waitForEvent('BLOCK_JOB_READY', (e) => e.data['device'] === 'mirror0', 10_000, { since: cursor });
    assert.equal(ready.data['len'], size);
    const jobs = await sm.queryBlockJobs();
    assert.deepEqual(jobs.map((j) => [j.device, j.type, j.ready]), [['mirror0', 'mirror', true]]);
    await sm.blockJobCancel('mirror0');
    const done = await s.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data['device'] === 'mirror0', 10_000, { since: cursor });
    assert.equal(done.data['error'], undefined);
    await waitForJob(s, sm, 'mirror0', (st) => st === 'gone');
    await sm.blockdevDel('target0');
    await dm.blockExportDel('exp0');
    await d.waitForEvent('BLOCK_EXPORT_DELETED', (e) => e.data['id'] === 'exp0', 5000, { since: 0 });
    await dm.nbdServerStop();
    const dup = await dm.blockExportDel('exp0').catch((e: unknown) => e);
    assert.ok(dup instanceof QmpError);
  });

  it('object-add tls-creds-x509 reaches QEMU\'s loader (a missing directory is reported by QEMU, not refused as an argument)', async () => {
    const q = await startQemu();
    const mon = new QemuMonitor(await connect(q));
    const err = await mon.addTlsCredsX509({ id: 'tls0', dir: join(dir, 'no-certs'), endpoint: 'server', 'verify-peer': true }).catch((e: unknown) => e);
    assert.ok(err instanceof QmpError);
    assert.equal(err.errorClass, 'GenericError');
    assert.match(err.desc, /ca-cert\.pem/);
  });
});
