// The operator CLI against a fake of the manager's API: a tiny HTTP server in this process that answers the
// contract's routes with canned records and plays scripted event streams. The CLI runs as the built binary.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { InputError } from '../core/errors.js';
import type { MigrationView } from '../manager/views.js';
import type { MigrationProgress } from '../migration/driver.js';
import type { LinkRecord, PlanRecord, RoundRecord, Settings, SiteRecord, UserRecord, VmRecord } from '../store/records.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { ApiClient, createSseParser, resolveApiTarget, type SseMessage } from './api-client.js';
import { parseSettingsAssignments, watchLine, watchMigrations } from './manage.js';

const binPath = fileURLToPath(new URL('./main.js', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'vmshadow-manage-'));
const ADMIN = 'admin-token-1';
const READ = 'read-token-1';
const MiB = 1024 * 1024;

// ------------------------------------------------------------------------------------------------------------
// Canned records

const sites: SiteRecord[] = [
  { id: 'eu-west-1' as SiteRecord['id'], name: 'Ireland', region: 'eu-west-1', country: 'IE', lat: 53, lon: -8, capacity: { vcpu: 64, memoryMiB: 262_144 } },
  { id: 'us-east-1' as SiteRecord['id'], name: 'Virginia', region: 'us-east-1', country: 'US', lat: 38, lon: -77, capacity: { vcpu: 32, memoryMiB: 131_072 } },
];
const links: LinkRecord[] = [{ id: 'eu-west-1~us-east-1' as LinkRecord['id'], a: sites[0]!.id, b: sites[1]!.id, rttMs: 68, bandwidthMbps: 1000, foregroundShare: 0.5 }];

function vm(id: string, over: Partial<VmRecord> = {}): VmRecord {
  return {
    id: id as VmRecord['id'], name: `desk-${id}`, siteId: sites[0]!.id, hostId: 'eu-h1' as VmRecord['hostId'], vcpu: 2, memoryMiB: 4096,
    diskGiB: 20, dirtyRateMiBps: 12, workingSetMiB: 512, addresses: ['10.0.0.7'], pinned: false, excluded: false,
    lastMovedAtMs: null, recentMoves: 0, diskDeltaGiB: {}, sensitivity: 0.91, sensitive: true, activity: 'remote-desktop',
    reasons: ['interactive RFB traffic'], users: [{ userId: 'u-ana' as VmRecord['users'][number]['userId'], share: 1 }],
    fingerprintAtMs: 1_700_000_000_000, migratingJobId: null, ...over,
  };
}
const vms: VmRecord[] = [vm('vm-1'), vm('vm-2', { siteId: sites[1]!.id, sensitivity: 0.1, sensitive: false, activity: 'background', pinned: true })];
const users: UserRecord[] = [{
  id: 'u-ana' as UserRecord['id'], name: 'ana', endpoint: '198.51.100.7', country: 'US', lat: 40, lon: -74, network: 'home',
  rtt: { 'eu-west-1': { rttMs: 80.2, source: 'probe', atMs: 1_700_000_000_000, stale: false }, 'us-east-1': { rttMs: 9.4, source: 'probe', atMs: 1_700_000_000_000, stale: false } },
  vms: [vms[0]!.id], lastSeenAtMs: 1_700_000_000_000,
}];

function plan(id: string, status: PlanRecord['status']): PlanRecord {
  return {
    id, roundId: 'r-7', atMs: 1_700_000_000_000, mode: 'approve', status, planner: 'greedy',
    moves: [{ vm: vms[0]!.id, from: sites[0]!.id, to: sites[1]!.id, kind: 'closer-to-users', benefit: 64.3, savingMs: 70.8, costS: 41, bytes: 4096 * MiB, postCopy: false, after: [] }],
    rejected: [{ vm: vms[1]!.id, reason: 'insensitive', detail: 'sensitivity 0.10 < 0.5' }],
    totalBenefit: 64.3, inputs: { vms: [], links: [], params: DEFAULT_PLAN_PARAMS },
    jobs: status === 'approved' ? [{ jobId: 'm-1', vm: vms[0]!.id, state: 'queued' }] : [],
    decidedBy: status === 'approved' ? 'admin' : null, decidedAtMs: status === 'approved' ? 1_700_000_060_000 : null, note: null,
  };
}

const rounds: RoundRecord[] = [{
  id: 'r-7', seq: 7, startedAtMs: 1_700_000_000_000, finishedAtMs: 1_700_000_000_420, durationMs: 420, mode: 'approve', leader: 'mgr-a',
  vmsObserved: 2, usersProbed: 1, planId: 'p-1', moves: 1, rejections: 1, stageMs: { placement: 3 }, error: null,
}];
const settings: Settings = { mode: 'approve', roundIntervalS: 60, planner: 'greedy', params: DEFAULT_PLAN_PARAMS };

function migration(over: Partial<MigrationView> = {}): MigrationView {
  return {
    id: 'm-1', vm: vms[0]!.id, planId: 'p-1', from: sites[0]!.id, to: sites[1]!.id, state: 'running:precopy', phase: 'precopy',
    percent: 10, transferredBytes: 410 * MiB, totalBytes: 4096 * MiB, remainingBytes: 3686 * MiB, throughputMbps: 200, etaS: 150,
    downtimeMs: null, createdAtMs: 1000, updatedAtMs: 1000, finishedAtMs: null, ended: false, outcome: null, reason: null, history: [], ...over,
  };
}

function completed(over: Partial<MigrationView> = {}): MigrationView {
  return migration({
    state: 'completed', phase: null, percent: 100, transferredBytes: 4300 * MiB, remainingBytes: 0, throughputMbps: 180, etaS: null,
    downtimeMs: 120, updatedAtMs: 9000, finishedAtMs: 9000, ended: true,
    outcome: { jobId: 'm-1', status: 'completed', runningAt: { siteId: sites[1]!.id, hostId: null }, durationMs: 192_000, downtimeMs: 120, transferredBytes: 4300 * MiB, settings: [], stallActions: [], reason: null },
    ...over,
  });
}

function progress(atMs: number, remainingMiB: number): { type: 'progress'; jobId: string; vm: string; progress: MigrationProgress } {
  return {
    type: 'progress', jobId: 'm-1', vm: 'vm-1', progress: {
      jobId: 'm-1', phase: 'precopy', atMs, elapsedMs: atMs - 1000, transferredBytes: (4096 - remainingMiB) * MiB, remainingBytes: remainingMiB * MiB,
      totalBytes: 4096 * MiB, diskRemainingBytes: 0, dirtyRateBytesPerS: 0, throughputMbps: 250, expectedDowntimeMs: null, etaS: remainingMiB / 30,
      downtimeLimitMs: 300, stallActions: [],
    },
  };
}

// ------------------------------------------------------------------------------------------------------------
// The fake API

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  body: string;
}

const seen: Seen[] = [];
/** What GET /v1/migrations… answers; the event scripts change it as they go. */
let migrations: MigrationView[] = [];
/** Plays one event stream; `n` counts the connections so far (1 = the first). */
let sseScript: (res: ServerResponse, n: number) => void = () => undefined;
let sseConnections = 0;
const openStreams = new Set<ServerResponse>();
const bodies = new Map<string, string>();

function send(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(text);
}

function apiError(res: ServerResponse, status: number, code: string, message: string, field?: string): void {
  send(res, status, { error: { code, message, ...(field !== undefined ? { field } : {}) } });
}

export function sseEvent(res: ServerResponse, type: string, data: unknown): void {
  res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
}

function route(req: IncomingMessage, res: ServerResponse, body: string): void {
  const u = new URL(req.url ?? '/', 'http://x');
  const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (token !== ADMIN && token !== READ) {
    apiError(res, 401, 'UNAUTHORIZED', token === undefined ? 'no token: send Authorization: Bearer <token>' : 'unknown token');
    return;
  }
  if (req.method !== 'GET' && token !== ADMIN) {
    apiError(res, 403, 'FORBIDDEN', 'a read-only token cannot change anything');
    return;
  }
  const p = u.pathname;
  const m = req.method;
  let m2: RegExpExecArray | null;
  if (m === 'GET' && p === '/v1/events') {
    sseConnections++;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' });
    res.write('retry: 3000\n: connected to fake\n\n');
    openStreams.add(res);
    res.on('close', () => openStreams.delete(res));
    sseScript(res, sseConnections);
    return;
  }
  let answer: unknown;
  if (m === 'GET' && p === '/v1/sites') answer = { items: sites };
  else if (m === 'GET' && p === '/v1/links') answer = { items: links };
  else if (m === 'GET' && p === '/v1/users') answer = { items: users };
  else if (m === 'GET' && p === '/v1/vms') {
    const site = u.searchParams.get('site');
    answer = { items: vms.filter((v) => site === null || v.siteId === site), next: null };
  } else if (m === 'GET' && (m2 = /^\/v1\/vms\/([^/]+)$/.exec(p)) !== null) {
    const v = vms.find((x) => x.id === decodeURIComponent(m2![1]!));
    if (v === undefined) return apiError(res, 404, 'NOT_FOUND', `vm "${m2[1]}" does not exist`);
    answer = { vm: v, fingerprints: [{ seq: 3, key: v.id, atMs: 1_700_000_000_000, value: { score: 0.91, sensitive: true, activity: 'remote-desktop', reasons: [], users: [], bytes: 5_000_000 } }] };
  } else if (m === 'PATCH' && (m2 = /^\/v1\/vms\/([^/]+)$/.exec(p)) !== null) {
    answer = { ...vms[0]!, ...(JSON.parse(body) as object) };
  } else if (m === 'GET' && p === '/v1/plans') answer = { items: [plan('p-1', 'recommended'), plan('p-0', 'superseded')] };
  else if (m === 'GET' && p === '/v1/plans/p-1') answer = plan('p-1', 'recommended');
  else if (m === 'POST' && p === '/v1/plans/p-1/approve') answer = plan('p-1', 'approved');
  else if (m === 'POST' && p === '/v1/plans/p-1/reject') answer = { ...plan('p-1', 'rejected'), decidedBy: 'admin', note: (JSON.parse(body) as { reason?: string }).reason ?? null };
  else if ((m2 = /^\/v1\/plans\/([^/]+)/.exec(p)) !== null) return apiError(res, 404, 'NOT_FOUND', `plan "${decodeURIComponent(m2[1]!)}" does not exist`);
  else if (m === 'GET' && p === '/v1/migrations') {
    const active = u.searchParams.get('active');
    answer = { items: migrations.filter((x) => active === null || String(!x.ended) === active) };
  } else if (m === 'GET' && (m2 = /^\/v1\/migrations\/([^/]+)$/.exec(p)) !== null) {
    const x = migrations.find((y) => y.id === m2![1]);
    if (x === undefined) return apiError(res, 404, 'NOT_FOUND', `migration "${m2[1]}" does not exist`);
    answer = x;
  } else if (m === 'POST' && p === '/v1/migrations/m-1/cancel') answer = migration({ state: 'aborting', reason: 'cancelled by admin' });
  else if (m === 'GET' && p === '/v1/rounds') answer = { items: rounds };
  else if (m === 'POST' && p === '/v1/rounds') answer = rounds[0];
  else if (m === 'GET' && p === '/v1/settings') answer = settings;
  else if (m === 'PATCH' && p === '/v1/settings') {
    const patch = JSON.parse(body) as Partial<Settings>;
    if (patch.mode !== undefined && !['auto', 'approve', 'dry-run'].includes(patch.mode)) {
      return apiError(res, 400, 'INPUT_INVALID', `body.mode: must be one of "auto", "approve", "dry-run" (got ${JSON.stringify(patch.mode)})`, 'body.mode');
    }
    answer = { ...settings, ...patch, params: { ...settings.params, ...patch.params } };
  } else return apiError(res, 404, 'NOT_FOUND', `no route ${m} ${p}`);
  const text = JSON.stringify(answer);
  bodies.set(`${m} ${p}`, text);
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(text);
}

let server: Server;
let api = '';

type Run = { code: number | null; out: string; err: string };

/** The built binary, as an operator runs it (each run loads the whole CLI: ~1 CPU-second, so used sparingly). */
function bin(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, VMSHADOW_API: api, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const CLI_ENV = ['VMSHADOW_API', 'VMSHADOW_TOKEN', 'VMSHADOW_CLI_CONFIG', 'XDG_CONFIG_HOME', 'HOME'];

/** The CLI's main() in this process, with the binary's exit codes and output, and its environment set for the run. */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const { main } = await import('./main.js');
  const saved = CLI_ENV.map((k) => [k, process.env[k]] as const);
  for (const k of CLI_ENV) delete process.env[k];
  Object.assign(process.env, { HOME: home, VMSHADOW_API: api, ...env });
  let out = '';
  let err = '';
  try {
    const code = await main([...args], { out: (s) => (out += s), err: { write: (s: string) => (err += s, true) } as unknown as NodeJS.WriteStream });
    return { code, out, err };
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const admin = ['--token', ADMIN];

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, body });
      route(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const s of openStreams) s.destroy();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(home, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
  migrations = [];
  sseConnections = 0;
  sseScript = () => undefined;
});

/** Runs `steps` one after another, `gapMs` apart, while the stream is open. */
function script(res: ServerResponse, steps: (() => void)[], gapMs = 40): void {
  let i = 0;
  const t = setInterval(() => {
    if (res.destroyed || i >= steps.length) {
      clearInterval(t);
      return;
    }
    steps[i++]!();
  }, gapMs);
  res.on('close', () => clearInterval(t));
}

// ------------------------------------------------------------------------------------------------------------

describe('vmshadow vm|plan|site|user|link|round|settings over the API', () => {
  it('vm list prints a table of the VMs with their site, sensitivity and flags', async () => {
    const r = await bin(['vm', 'list', ...admin]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.match(lines[0]!, /^id\s+name\s+site\s+host\s+vcpu\s+memory MiB\s+sensitivity\s+activity/);
    assert.match(r.out, /vm-1\s+desk-vm-1\s+eu-west-1\s+eu-h1\s+2\s+4,096\s+0\.91\s+remote-desktop \*/);
    assert.match(r.out, /vm-2 .*us-east-1.*0\.10\s+background.*pinned/);
    assert.equal(seen[0]!.url, '/v1/vms');
    assert.equal(seen[0]!.auth, `Bearer ${ADMIN}`);
  });

  it('vm list --json prints exactly the JSON the API answered; --site and --sensitive become query parameters', async () => {
    const r = await cli(['vm', 'list', '--json', '--site', 'eu-west-1', '--sensitive', 'true', ...admin]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${bodies.get('GET /v1/vms')}\n`);
    assert.equal((JSON.parse(r.out) as { items: unknown[] }).items.length, 1);
    assert.equal(seen[0]!.url, '/v1/vms?site=eu-west-1&sensitive=true');
  });

  it('vm show prints the VM and its fingerprints; an unknown VM is a 404 that names it', async () => {
    const r = await cli(['vm', 'show', 'vm-1', '--history', '5', ...admin]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^vm vm-1 \(desk-vm-1\)/);
    assert.match(r.out, /sensitive\s+yes \(score 0\.91\), remote-desktop/);
    assert.match(r.out, /Fingerprints \(newest first\):/);
    assert.equal(seen[0]!.url, '/v1/vms/vm-1?history=5');
    const nf = await cli(['vm', 'show', 'vm-404', ...admin]);
    assert.equal(nf.code, 1);
    assert.match(nf.err, /^vmshadow: GET \/v1\/vms\/vm-404 \(http:\/\/127\.0\.0\.1:\d+\) failed with 404: vm "vm-404" does not exist \[NOT_FOUND\]\n$/);
  });

  it('vm pin and vm include send a PATCH of the one flag', async () => {
    const r = await cli(['vm', 'pin', 'vm-1', ...admin]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual([seen[0]!.method, seen[0]!.url, JSON.parse(seen[0]!.body)], ['PATCH', '/v1/vms/vm-1', { pinned: true }]);
    assert.equal(r.out, 'vm vm-1: pinned yes, excluded no\n');
    await cli(['vm', 'include', 'vm-1', ...admin]);
    assert.deepEqual(JSON.parse(seen[1]!.body), { excluded: false });
  });

  it('plan approve sends POST /v1/plans/ID/approve with the bearer token and prints the plan now approved', async () => {
    const r = await cli(['plan', 'approve', 'p-1', '--token', ADMIN]);
    assert.equal(r.code, 0, r.err);
    assert.equal(seen.length, 1);
    assert.deepEqual({ method: seen[0]!.method, url: seen[0]!.url, auth: seen[0]!.auth }, { method: 'POST', url: '/v1/plans/p-1/approve', auth: `Bearer ${ADMIN}` });
    assert.deepEqual(JSON.parse(seen[0]!.body), {});
    assert.match(r.out, /^plan p-1 .*: approved, 1 move, .*decided by admin/);
    assert.match(r.out, /m-1\s+vm-1\s+queued/);
  });

  it('plan reject sends the reason; plan list and plan show print the plans and their moves', async () => {
    const rej = await cli(['plan', 'reject', 'p-1', '--reason', 'change freeze', ...admin]);
    assert.equal(rej.code, 0, rej.err);
    assert.deepEqual(JSON.parse(seen[0]!.body), { reason: 'change freeze' });
    assert.match(rej.out, /rejected.*\(change freeze\)/);
    const list = await cli(['plan', 'list', '--status', 'recommended', ...admin]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /p-1\s+2023-11-14 22:13:20Z\s+approve\s+recommended\s+greedy\s+1\s+1\s+64\.3/);
    assert.equal(seen[1]!.url, '/v1/plans?status=recommended');
    const show = await cli(['plan', 'show', 'p-1', ...admin]);
    assert.match(show.out, /vm-1\s+eu-west-1\s+us-east-1\s+closer-to-users\s+70\.8/);
    assert.match(show.out, /Not moved \(1\):\n\s+1\s+insensitive\s+e\.g\. vm-2/);
  });

  it('plan with a scenario still runs the offline planner, not the API', async () => {
    const r = await cli(['plan', '--scenario', join(home, 'missing.json')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--scenario/);
    assert.equal(seen.length, 0);
  });

  it('the token comes from VMSHADOW_TOKEN, else ~/.config/vmshadow/cli.json; --api beats VMSHADOW_API', async () => {
    await cli(['site', 'list'], { VMSHADOW_TOKEN: READ });
    assert.equal(seen.at(-1)!.auth, `Bearer ${READ}`);
    mkdirSync(join(home, '.config', 'vmshadow'), { recursive: true });
    writeFileSync(join(home, '.config', 'vmshadow', 'cli.json'), JSON.stringify({ api: 'http://127.0.0.1:9', token: ADMIN }));
    const r = await cli(['link', 'list', '--api', api]);
    rmSync(join(home, '.config'), { recursive: true, force: true });
    assert.equal(r.code, 0, r.err);
    assert.equal(seen.at(-1)!.auth, `Bearer ${ADMIN}`);
    assert.match(r.out, /eu-west-1~us-east-1\s+eu-west-1\s+us-east-1\s+68\s+1,000\s+0\.50/);
  });

  it('site, user, link and round lists print one row each; round run and settings show print the answer', async () => {
    const s = await cli(['site', 'list', ...admin]);
    assert.match(s.out, /eu-west-1\s+Ireland\s+eu-west-1\s+IE\s+64\s+262,144/);
    const u = await cli(['user', 'list', ...admin]);
    assert.match(u.out, /u-ana\s+ana\s+198\.51\.100\.7\s+US\s+home\s+1\s+us-east-1\s+9\.4/);
    const rl = await cli(['round', 'list', '--limit', '5', ...admin]);
    assert.match(rl.out, /7\s+r-7\s+2023-11-14 22:13:20Z\s+420\s+approve\s+mgr-a/);
    assert.equal(seen.at(-1)!.url, '/v1/rounds?limit=5');
    const rr = await cli(['round', 'run', ...admin]);
    assert.equal(rr.code, 0, rr.err);
    assert.equal(seen.at(-1)!.method, 'POST');
    assert.match(rr.out, /^round 7 \(r-7\) by mgr-a, approve mode: 2 VMs observed, 1 users probed, 1 moves/);
    const ss = await cli(['settings', 'show', ...admin]);
    assert.match(ss.out, /mode\s+approve\n\s+roundIntervalS\s+60\n\s+planner\s+greedy/);
    assert.match(ss.out, /params\.minSavingMs\s+10/);
  });

  it('settings set sends a PATCH built from KEY=VALUE arguments', async () => {
    const r = await cli(['settings', 'set', 'mode=dry-run', 'roundIntervalS=30', 'params.minSavingMs=5', 'params.pinned=["vm-1"]', '--json', ...admin]);
    assert.equal(r.code, 0, r.err);
    assert.equal(seen[0]!.method, 'PATCH');
    assert.deepEqual(JSON.parse(seen[0]!.body), { mode: 'dry-run', roundIntervalS: 30, params: { minSavingMs: 5, pinned: ['vm-1'] } });
    assert.equal((JSON.parse(r.out) as Settings).mode, 'dry-run');
  });

  it('a 400 from the API exits 2 and names the field', async () => {
    const r = await cli(['settings', 'set', 'mode=fast', ...admin]);
    assert.equal(r.code, 2);
    assert.match(r.err, /PATCH \/v1\/settings .* failed with 400: body\.mode: must be one of "auto", "approve", "dry-run" \(got "fast"\) \[INPUT_INVALID\]/);
  });

  it('a refused connection exits 1 and says the manager cannot be reached at its URL', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const r = await bin(['vm', 'list', '--api', `http://127.0.0.1:${port}`, ...admin]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `vmshadow: cannot reach the manager at http://127.0.0.1:${port}: connection refused [API_UNREACHABLE]\n`);
  });

  it('401 names the call and says no token was sent; a read-only token on a change gets 403 that says it needs the admin token', async () => {
    const r = await cli(['plan', 'list']);
    assert.equal(r.code, 1);
    assert.match(r.err, /GET \/v1\/plans .* failed with 401: no token: send Authorization: Bearer <token>; no token was sent: give one with --token, VMSHADOW_TOKEN or ~\/\.config\/vmshadow\/cli\.json \[UNAUTHORIZED\]/);
    const bad = await cli(['plan', 'list', '--token', 'nope-nope']);
    assert.match(bad.err, /401: unknown token; the manager does not know the token sent/);
    const ro = await cli(['plan', 'approve', 'p-1', '--token', READ]);
    assert.equal(ro.code, 1);
    assert.match(ro.err, /POST \/v1\/plans\/p-1\/approve .* failed with 403: .*; this needs the admin token \[FORBIDDEN\]/);
  });

  it('404 names the plan that does not exist', async () => {
    const r = await cli(['plan', 'show', 'p-404', ...admin]);
    assert.equal(r.code, 1);
    assert.match(r.err, /GET \/v1\/plans\/p-404 .*404: plan "p-404" does not exist \[NOT_FOUND\]/);
  });

  it('bad arguments exit 2 naming them: an unknown verb, a missing ID, a bad --limit, an unknown flag', async () => {
    for (const args of [['vm', 'frob'], ['plan', 'approve'], ['vm', 'list', '--limit', 'lots'], ['site', 'list', '--bogus'], ['settings', 'set', 'colour=red']]) {
      const r = await cli([...args, ...admin]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, /^vmshadow: /);
      assert.equal(seen.length, 0, 'nothing sent');
    }
  });
});

describe('vmshadow migration list|show|cancel|watch', () => {
  it('migration list and cancel print the migrations; cancel is a POST with the admin token', async () => {
    migrations = [migration()];
    const l = await cli(['migration', 'list', '--active', 'true', ...admin]);
    assert.equal(l.code, 0, l.err);
    assert.match(l.out, /m-1\s+vm-1\s+eu-west-1→us-east-1\s+running:precopy\s+10%\s+410\/4,096\s+200\s+2m30s/);
    assert.equal(seen[0]!.url, '/v1/migrations?active=true');
    const c = await cli(['migration', 'cancel', 'm-1', ...admin]);
    assert.equal(c.code, 0, c.err);
    assert.deepEqual([seen[1]!.method, seen[1]!.url, seen[1]!.auth], ['POST', '/v1/migrations/m-1/cancel', `Bearer ${ADMIN}`]);
    assert.match(c.out, /migration m-1 \(vm-1, eu-west-1→us-east-1\): aborting — cancelled by admin/);
  });

  it('migration watch ID draws progress from the event stream and exits 0 when the migration completes', async () => {
    migrations = [migration()];
    sseScript = (res) => script(res, [
      () => sseEvent(res, 'progress', progress(2000, 2800)),
      () => sseEvent(res, 'progress', progress(3000, 1200)),
      () => sseEvent(res, 'progress', progress(4000, 100)),
      () => {
        migrations = [completed()];
        sseEvent(res, 'migration', { type: 'migration', migration: completed() });
      },
    ]);
    const r = await bin(['migration', 'watch', 'm-1', ...admin]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.match(lines[0]!, /^vm-1\s+eu-west-1→us-east-1\s+\[##\.+\]\s+10%\s+410\/4,096 MiB\s+200 Mbit\/s\s+ETA 2m30s\s+running:precopy$/);
    assert.ok(lines.some((l) => /\s32%\s+1,296\/4,096 MiB\s+250 Mbit\/s\s+ETA 1m33s/.test(l)), r.out);
    assert.ok(lines.some((l) => /\s98%\s+3,996\/4,096 MiB/.test(l)), r.out);
    assert.match(lines.at(-1)!, /^vm-1\s+eu-west-1→us-east-1\s+\[#{24}\] 100%\s+completed in 3m12s, 4,300 MiB moved, downtime 120 ms$/);
    assert.equal(seen.find((s) => s.url.startsWith('/v1/events'))!.url, '/v1/events?types=migration%2Cprogress');
  });

  it('migration watch exits 1 when the watched migration is aborted, saying why', async () => {
    migrations = [migration()];
    const aborted = migration({ state: 'aborted', phase: null, ended: true, updatedAtMs: 5000, finishedAtMs: 5000, reason: 'the link to us-east-1 looks cut' });
    sseScript = (res) => script(res, [() => sseEvent(res, 'migration', { type: 'migration', migration: aborted })]);
    const r = await bin(['migration', 'watch', 'm-1', ...admin]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.out.trim().split('\n').at(-1)!, /^vm-1\s+eu-west-1→us-east-1\s+aborted: the link to us-east-1 looks cut \(after 4s/);
  });

  it('migration watch without an ID follows every active migration until all have ended; --json prints the API\'s events', async () => {
    migrations = [migration(), migration({ id: 'm-2', vm: 'vm-2' as MigrationView['vm'] })];
    sseScript = (res) => script(res, [
      () => sseEvent(res, 'progress', progress(2000, 2000)),
      () => sseEvent(res, 'migration', { type: 'migration', migration: completed() }),
      () => sseEvent(res, 'migration', { type: 'migration', migration: completed({ id: 'm-2', vm: 'vm-2' as MigrationView['vm'], state: 'failed', reason: 'destination crashed' }) }),
    ]);
    const r = await cli(['migration', 'watch', '--json', ...admin]);
    assert.equal(r.code, 1, 'one of them failed');
    const events = r.out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; migration?: MigrationView });
    assert.deepEqual(events.map((e) => e.type), ['migration', 'migration', 'progress', 'migration', 'migration']);
    assert.deepEqual(events.slice(-2).map((e) => e.migration!.state), ['completed', 'failed']);
  });

  it('migration watch reconnects when the stream closes early and reads the state again', async () => {
    migrations = [migration()];
    sseScript = (res, n) => {
      if (n === 1) {
        script(res, [() => sseEvent(res, 'progress', progress(2000, 2000)), () => {
          migrations = [completed()]; // it ends while the client is disconnected
          res.end();
        }]);
      }
    };
    const r = await bin(['migration', 'watch', 'm-1', ...admin]);
    assert.equal(r.code, 0, r.err);
    // After the early close it reads the state again: seen as ended, it may stop before it reconnects.
    assert.ok(sseConnections >= 1 && sseConnections <= 2, `${sseConnections} stream connections`);
    assert.match(r.out, /completed in 3m12s/);
  });

  it('migration watch of an ended migration prints how it ended at once; with nothing running it says so', async () => {
    migrations = [completed()];
    const r = await cli(['migration', 'watch', 'm-1', ...admin]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /completed in 3m12s/);
    const none = await cli(['migration', 'watch', ...admin]);
    assert.equal(none.code, 0, none.err);
    assert.equal(none.out, 'no migrations are running\n');
  });

  it('migration watch --timeout-s gives up with exit 1 naming what still runs', async () => {
    migrations = [migration()];
    const r = await cli(['migration', 'watch', '--timeout-s', '1', ...admin]);
    assert.equal(r.code, 1);
    assert.match(r.err, /stopped watching after 1 s: m-1 still running \[WATCH_TIMEOUT\]/);
  });

  it('on a terminal, watch redraws its lines in place', async () => {
    migrations = [migration(), migration({ id: 'm-2', vm: 'vm-22' as MigrationView['vm'] })];
    sseScript = (res) => script(res, [
      () => sseEvent(res, 'progress', progress(2000, 2000)),
      () => sseEvent(res, 'migration', { type: 'migration', migration: completed() }),
      () => sseEvent(res, 'migration', { type: 'migration', migration: completed({ id: 'm-2', vm: 'vm-22' as MigrationView['vm'] }) }),
    ], 150);
    let out = '';
    const code = await watchMigrations(new ApiClient({ baseUrl: api, token: ADMIN }), undefined, { out: (s) => (out += s), err: { write: () => true } },
      { json: false, tty: true, columns: 200, timeoutS: 10 });
    assert.equal(code, 0);
    const frames = out.split('\x1b[2F');
    assert.ok(frames.length >= 3, `redrawn in place: ${JSON.stringify(out)}`);
    assert.equal(frames[0]!.split('\x1b[2K').length - 1, 2, 'two lines, each cleared first');
    assert.match(frames[0]!, /vm-1 .*10%/);
    assert.match(frames[0]!, /vm-22 .*10%/);
    assert.match(frames.at(-1)!, /vm-1 .*completed.*\n.*vm-22 .*completed/);
  });
});

describe('createSseParser()', () => {
  const stream = 'retry: 3000\r\n: comment\r\n\r\nevent: progress\r\ndata: {"a":1}\r\n\r\nevent: migration\ndata:{"b":\ndata: 2}\n\ndata: plain\rid: 7\r\r';
  const want: SseMessage[] = [
    { event: 'progress', data: '{"a":1}', id: null },
    { event: 'migration', data: '{"b":\n2}', id: null },
    { event: 'message', data: 'plain', id: '7' },
  ];

  it('reads events, multi-line data, comments and all three line endings', () => {
    const got: SseMessage[] = [];
    createSseParser((m) => got.push(m)).push(stream);
    assert.deepEqual(got, want);
  });

  it('gives the same events however the stream is cut into chunks (a \\r\\n split across two included)', () => {
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
      const at = [0, ...cuts.sort((a, b) => a - b), stream.length];
      const got: SseMessage[] = [];
      const p = createSseParser((m) => got.push(m));
      for (let i = 0; i < at.length - 1; i++) p.push(stream.slice(at[i], at[i + 1]));
      assert.deepEqual(got, want);
    }), { numRuns: 300 });
  });
});

describe('resolveApiTarget()', () => {
  const cfg = join(home, 'cli-test.json');

  it('takes flags over the environment over the config file over the default', () => {
    writeFileSync(cfg, JSON.stringify({ api: 'http://file:1', token: 'file-token' }));
    assert.deepEqual(resolveApiTarget({ flags: {}, env: {}, configPath: join(home, 'none.json') }),
      { baseUrl: 'http://127.0.0.1:8080', token: null, sources: { api: 'default', token: 'none' } });
    assert.equal(resolveApiTarget({ flags: {}, env: {}, configPath: cfg }).baseUrl, 'http://file:1');
    const e = resolveApiTarget({ flags: {}, env: { VMSHADOW_API: 'http://env:2/', VMSHADOW_TOKEN: 'env-token' }, configPath: cfg });
    assert.deepEqual([e.baseUrl, e.token, e.sources.api], ['http://env:2', 'env-token', 'env VMSHADOW_API']);
    const f = resolveApiTarget({ flags: { api: 'https://flag:3/prefix/', token: 'flag-token' }, env: { VMSHADOW_API: 'http://env:2' }, configPath: cfg });
    assert.deepEqual([f.baseUrl, f.token], ['https://flag:3/prefix', 'flag-token']);
  });

  it('names the source of a bad URL and an unknown key in the config file', () => {
    const err = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        assert.ok(e instanceof InputError);
        return e.message;
      }
      return assert.fail('accepted');
    };
    assert.match(err(() => resolveApiTarget({ flags: { api: 'ftp://x' }, env: {}, configPath: cfg })), /^--api: must be an http:\/\/ or https:\/\/ URL/);
    assert.match(err(() => resolveApiTarget({ flags: {}, env: { VMSHADOW_API: 'manager' }, configPath: cfg })), /^env VMSHADOW_API: must be the manager's URL/);
    writeFileSync(cfg, JSON.stringify({ url: 'http://x' }));
    assert.match(err(() => resolveApiTarget({ flags: {}, env: {}, configPath: cfg })), new RegExp(`^config ${cfg}: url: is not a known key \\(known: api, token\\)`));
  });
});

describe('watchLine() and parseSettingsAssignments()', () => {
  it('a running migration shows vm, from→to, bar, percent, MiB moved/total, Mbit/s and ETA; newer progress wins over the view', () => {
    assert.equal(watchLine(migration(), null), 'vm-1  eu-west-1→us-east-1  [##......................]  10%  410/4,096 MiB  200 Mbit/s  ETA 2m30s  running:precopy');
    assert.match(watchLine(migration(), progress(2000, 1024).progress), /\[##################\.+\]\s+75%\s+3,072\/4,096 MiB\s+250 Mbit\/s\s+ETA 34s/);
    assert.match(watchLine(migration({ updatedAtMs: 5000 }), progress(2000, 1024).progress), /\s10%/, 'an older progress report is ignored');
  });

  it('settings assignments: numbers and JSON values parse, words stay strings, unknown keys are refused', () => {
    assert.deepEqual(parseSettingsAssignments(['planner=ilp', 'params.postCopy=reject', 'params.maxMovesPerRound=3']),
      { planner: 'ilp', params: { postCopy: 'reject', maxMovesPerRound: 3 } });
    assert.throws(() => parseSettingsAssignments(['params=5']), /is not a setting/);
    assert.throws(() => parseSettingsAssignments(['mode']), /must be KEY=VALUE/);
  });
});

describe('against the real API (testing/api-harness: the routes over a seeded in-memory store)', () => {
  it('lists, shows, errors and watch read what the API answers', async () => {
    const { startTestApi } = await import('../testing/api-harness.js');
    const t = await startTestApi({ sseHeartbeatMs: 100 });
    try {
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      const url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
      const tok = ['--api', url, '--token', t.adminToken];
      const vmsOut = await cli(['vm', 'list', '--json', ...tok]);
      assert.equal(vmsOut.code, 0, vmsOut.err);
      const ids = (JSON.parse(vmsOut.out) as { items: VmRecord[] }).items.map((v) => v.id);
      assert.ok(ids.includes(t.seeded.vms.sensitive as VmRecord['id']));
      const planOut = await cli(['plan', 'show', t.seeded.plans.recommended, ...tok]);
      assert.equal(planOut.code, 0, planOut.err);
      assert.match(planOut.out, new RegExp(`^plan ${t.seeded.plans.recommended} .*: recommended, 1 move`));
      const migOut = await cli(['migration', 'list', ...tok]);
      assert.match(migOut.out, new RegExp(`${t.seeded.jobs.running}\\s+\\S+\\s+\\S+→\\S+\\s+running:`));
      const nf = await cli(['migration', 'show', 'job-nope', ...tok]);
      assert.equal(nf.code, 1);
      assert.match(nf.err, /404: .*job-nope.* \[NOT_FOUND\]/);

      // watch: the stream carries what the API publishes; the migration ends completed.
      const running = (await t.store.get<import('../migration/job.js').JobRecord>('jobs', t.seeded.jobs.running))!.value;
      const done = (await t.store.get<import('../migration/job.js').JobRecord>('jobs', t.seeded.jobs.completed))!.value;
      const watching = cli(['migration', 'watch', running.id, ...tok]);
      for (let i = 0; i < 100 && t.bus.listeners === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(t.bus.listeners > 0, 'the CLI subscribed');
      await new Promise((r) => setTimeout(r, 300));
      t.bus.publish({ type: 'progress', jobId: running.id, vm: running.vm, progress: { ...running.progress!, atMs: running.updatedAtMs + 1000, remainingBytes: 0.2 * running.progress!.totalBytes } });
      await new Promise((r) => setTimeout(r, 300));
      const finished = { ...done, id: running.id, updatedAtMs: running.updatedAtMs + 10_000 };
      await t.store.put('jobs', running.id, finished, { status: 'ended' });
      t.bus.publish({ type: 'migration', job: finished });
      const w = await watching;
      assert.equal(w.code, 0, w.err);
      assert.match(w.out, /\s80%\s/);
      assert.match(w.out, /100%\s+completed in/);
    } finally {
      await t.close();
    }
  });
});
