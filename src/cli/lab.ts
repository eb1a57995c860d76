// `vmshadow lab up | status | down`: thin over src/lab/lab.ts.
//
// `lab up` builds the lab in a detached worker (the same CLI with a hidden --worker flag, in its own session):
// the relay, softflowd and QEMU it starts are then no longer in the terminal's process group, so they keep
// running after `up` returns, and a later Ctrl-C in that terminal cannot reach them. A Ctrl-C during `up`
// is forwarded to the worker, which removes what it built.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AppError, InputError } from '../core/errors.js';
import { aptInstall, GUEST_BUILD_PACKAGES, LAB_PACKAGES } from '../lab/apt.js';
import { parseFlowCollectorFlag, parseLabConfig, type LabConfig } from '../lab/config.js';
import { repoRoot } from '../lab/guest.js';
import { DEFAULT_LAB_STATE_DIR, labDown, labStatus, labUp, readLabState, type Lab, type LabState, type LabStatus } from '../lab/lab.js';
import { assertRoot, cleanupOnSignals } from '../lab/netns.js';
import { latencyData } from './data.js';
import { table } from './format.js';

export interface LabIo {
  out: (s: string) => void;
  err: { write(s: string): unknown };
}

const CLI_MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

export const LAB_USAGE = `Usage:
  vmshadow lab up [--config FILE] [--sites N] [--flow-collector PORT|IP:PORT] [--state-dir DIR] [--json]
  vmshadow lab status [--state-dir DIR] [--json] [--no-echo]
  vmshadow lab down [--state-dir DIR] [--json]
A multi-site cloud on this machine (needs root): sites in network namespaces joined by emulated WAN links
with real RTTs, users near chosen sites, desktop VMs running real QEMU guests. See docs/lab.md.
Exit codes: 0 ok, 1 failure (status: unhealthy), 2 bad input, 3 (status) no lab is up.
`;

type Flags = Record<string, string | boolean | (string | boolean)[] | undefined>;

function flags(argv: string[], options: NonNullable<Parameters<typeof parseArgs>[0]>['options']): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new InputError('arguments', argv.join(' '), `${(e as Error).message}\n\n${LAB_USAGE}`);
  }
}

function stateDirOf(v: Flags): string {
  return typeof v['state-dir'] === 'string' ? v['state-dir'] : DEFAULT_LAB_STATE_DIR;
}


/** The config from --config (or the defaults), with --sites and --flow-collector applied. */
export function labConfigFromFlags(v: Flags): LabConfig {
  let raw: unknown;
  if (typeof v.config === 'string') {
    let text: string;
    try {
      text = readFileSync(v.config, 'utf8');
    } catch (e) {
      throw new InputError('--config', v.config, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new InputError('--config', v.config, `is not valid JSON: ${(e as Error).message}`);
    }
  }
  let sites: number | undefined;
  if (v.sites !== undefined) {
    sites = Number(v.sites);
    if (typeof v.sites !== 'string' || !/^\d+$/.test(v.sites)) throw new InputError('--sites', v.sites, 'must be a whole number');
  }
  const flowCollector = typeof v['flow-collector'] === 'string' ? parseFlowCollectorFlag(v['flow-collector']) : undefined;
  return parseLabConfig(raw, latencyData(v['data-dir']), {
    ...(sites === undefined ? {} : { sites }),
    ...(flowCollector === undefined ? {} : { flowCollector }),
  });
}

export async function cmdLab(argv: string[], io: LabIo): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'up': return labUpCmd(rest, io);
    case 'status': return labStatusCmd(rest, io);
    case 'down': return labDownCmd(rest, io);
    case undefined: case 'help': case '--help': case '-h':
      io.out(LAB_USAGE);
      return verb === undefined ? 2 : 0;
    default:
      throw new InputError('lab', verb, `must be up, status or down\n\n${LAB_USAGE}`);
  }
}

// ---------------------------------------------------------------------------------------------
// up

const UP_OPTIONS = {
  config: { type: 'string' }, sites: { type: 'string' }, 'flow-collector': { type: 'string' }, 'state-dir': { type: 'string' },
  'data-dir': { type: 'string' }, json: { type: 'boolean', default: false }, worker: { type: 'boolean', default: false },
} as const;

async function labUpCmd(argv: string[], io: LabIo): Promise<number> {
  const v = flags(argv, UP_OPTIONS);
  const config = labConfigFromFlags(v);
  assertRoot('bring up the lab');
  const stateDir = stateDirOf(v);
  if (v.worker === true) return upWorker(config, stateDir, io);

  const existing = readLabState(stateDir);
  if (existing !== null) {
    throw new AppError('LAB_EXISTS', `A lab is already up in ${stateDir} (run ${existing.runId}, built ${new Date(existing.createdAtMs).toISOString()}): 'vmshadow lab status' shows it, 'vmshadow lab down' removes it`);
  }
  // gcc builds the tiny guest once, and softflowd's capture shim when flows are exported.
  const needGcc = !existsSync(join(repoRoot(), '.cache', 'guest', 'initrd.img')) || config.flowExport !== null;
  const installed = await aptInstall([...LAB_PACKAGES, ...(needGcc ? GUEST_BUILD_PACKAGES : [])], { log: (l) => io.err.write(`vmshadow: ${l}\n`) });
  if (installed.length > 0) io.err.write(`vmshadow: installed ${installed.join(', ')}\n`);

  const child = spawn(process.execPath, [CLI_MAIN, 'lab', 'up', ...argv, '--worker'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let errBuf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    out += d;
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    errBuf += d;
    let nl: number;
    while ((nl = errBuf.indexOf('\n')) >= 0) {
      io.err.write(`  ${errBuf.slice(0, nl)}\n`);
      errBuf = errBuf.slice(nl + 1);
    }
  });
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted !== null) return;
    interrupted = sig;
    io.err.write(`vmshadow: ${sig}: stopping; removing what was built…\n`);
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    } catch {
      /* it has exited */
    }
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, onSignal);
  let code: number | null;
  try {
    code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', (e) => reject(new AppError('LAB_WORKER', `Cannot start the lab worker: ${e.message}`, { cause: e })));
      child.once('close', (c) => resolve(c));
    });
  } finally {
    for (const s of sigs) process.off(s, onSignal);
  }
  if (errBuf.length > 0) io.err.write(`  ${errBuf}\n`);
  if (interrupted !== null) {
    io.err.write(`vmshadow: interrupted (${String(interrupted)}); the lab was not built and what was started is removed\n`);
    return 130;
  }
  const last = out.trim().split('\n').pop() ?? '';
  let result: { ok: boolean; state?: LabState; error?: { code: string; message: string; input: boolean } };
  try {
    result = JSON.parse(last) as typeof result;
  } catch {
    throw new AppError('LAB_WORKER', `The lab worker exited with code ${String(code)} without a result (run 'vmshadow lab down' to remove anything it left)`);
  }
  if (!result.ok || result.state === undefined) {
    io.err.write(`vmshadow: ${result.error?.message ?? 'lab up failed'}${result.error?.input === true ? '' : ` [${result.error?.code ?? 'LAB_UP_FAILED'}]`}\n`);
    return result.error?.input === true ? 2 : 1;
  }
  io.out(v.json === true ? JSON.stringify(upJson(result.state)) + '\n' : formatUp(result.state));
  return 0;
}

/** The worker: builds the lab, prints one JSON line, and exits (its children stay: they are the lab). */
async function upWorker(config: LabConfig, stateDir: string, io: LabIo): Promise<number> {
  // If `lab up` that started this worker is killed, finish anyway: a closed pipe must not end the build.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const ac = new AbortController();
  let building: Promise<Lab> | null = null;
  const removeHandlers = cleanupOnSignals(async () => {
    ac.abort();
    await building?.catch(() => undefined);
    await labDown(stateDir).catch(() => undefined);
  }, { timeoutMs: 120_000 });
  const t0 = Date.now();
  io.err.write(`building the lab in ${stateDir} (pid ${process.pid})\n`);
  try {
    building = labUp(config, { stateDir, signal: ac.signal, progress: (l) => io.err.write(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${l}\n`) });
    const lab = await building;
    removeHandlers();
    io.out(JSON.stringify({ ok: true, state: lab.state() }) + '\n');
    process.exit(0);
  } catch (e) {
    if (ac.signal.aborted) return new Promise<number>(() => undefined); // the signal handler exits
    removeHandlers();
    const input = e instanceof InputError;
    io.out(JSON.stringify({ ok: false, error: { code: e instanceof AppError ? e.code : 'INTERNAL', message: (e as Error).message, input } }) + '\n');
    process.exit(input ? 2 : 1);
  }
}

function upJson(s: LabState): Record<string, unknown> {
  const { config: _config, ...rest } = s;
  return rest;
}

function siteRttTable(s: LabState): string {
  const ids = s.sites.map((x) => x.id);
  const rtt = (a: string, b: string): string => {
    if (a === b) return '-';
    const l = s.links.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a));
    return l === undefined ? '?' : String(l.rttMs);
  };
  return table(['RTT ms', ...ids], ids.map((a) => [a, ...ids.map((b) => rtt(a, b))]));
}

function formatUp(s: LabState): string {
  const lines: string[] = [`Lab ${s.runId} is up (state: ${join(s.stateDir, 'lab.json')}).`, ''];
  lines.push(table(['site', 'region', 'city', 'namespace', 'address', 'hosts', 'flow export'], s.sites.map((x) => [
    x.id, x.region, x.city, x.ns, x.address, x.hosts.map((h) => h.id).join(','),
    x.flowExporter === null ? '-' : `softflowd ${x.flowExporter.pid} → ${x.flowExporter.collector}`,
  ])), '');
  if (s.sites.length > 1) lines.push(siteRttTable(s), '');
  if (s.users.length > 0) {
    lines.push(table(['user', 'country', 'near', 'namespace', 'address', ...s.sites.map((x) => `RTT ${x.id}`)], s.users.map((u) => [
      u.name, u.country, u.near, u.ns, u.address, ...s.sites.map((x) => u.rttMs[x.id] ?? NaN),
    ])), '');
  }
  if (s.vms.length > 0) {
    lines.push(table(['vm', 'site', 'host', 'user', 'address', 'MiB', 'disk MiB', 'QMP'], s.vms.map((v) => [
      v.name, v.site, v.host, v.user ?? '-', v.ip, v.memoryMiB, v.diskMiB, v.qmpPath,
    ])), '');
  }
  const rates = [...new Set(s.links.map((l) => `${l.kind} ${l.rateMbps > 0 ? `${l.rateMbps} Mbit/s` : 'unlimited'}${l.lossPct > 0 ? `, ${l.lossPct} % loss` : ''}`))];
  lines.push(`Links: ${rates.join('; ')} (relay pid ${s.relay.pid}).`);
  lines.push(`Run a command in a site or user: ip netns exec ${s.sites[0]?.ns ?? '<ns>'} ping ${s.vms[0]?.ip ?? s.sites[0]?.address ?? ''}`);
  lines.push(`Status: vmshadow lab status${s.stateDir === DEFAULT_LAB_STATE_DIR ? '' : ` --state-dir ${s.stateDir}`}`);
  lines.push(`Tear down: vmshadow lab down${s.stateDir === DEFAULT_LAB_STATE_DIR ? '' : ` --state-dir ${s.stateDir}`}`);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// status

async function labStatusCmd(argv: string[], io: LabIo): Promise<number> {
  const v = flags(argv, { 'state-dir': { type: 'string' }, json: { type: 'boolean', default: false }, 'no-echo': { type: 'boolean', default: false } });
  assertRoot('check the lab');
  const st = await labStatus(stateDirOf(v), { checkEcho: v['no-echo'] !== true });
  if (v.json === true) {
    io.out(JSON.stringify(statusJson(st)) + '\n');
  } else {
    io.out(formatStatus(st));
  }
  if (!st.up) return 3;
  return st.healthy ? 0 : 1;
}

function statusJson(st: LabStatus): Record<string, unknown> {
  return {
    up: st.up, healthy: st.healthy, runId: st.runId, stateDir: st.stateDir,
    sites: st.sites, users: st.users, vms: st.vms, links: st.links,
    relay: st.relay === null ? null : {
      pid: st.relay.pid, ns: st.relay.ns, alive: st.relay.alive, error: st.relay.error,
      directions: st.relay.stats?.directions.map((d) => ({ from: d.from, to: d.to, delayMs: d.params.delayMs, rateMbps: d.params.rateMbps, lossPct: d.params.lossPct, txPackets: d.txPackets, txBytes: d.txBytes, drops: d.drops })) ?? [],
    },
    problems: st.problems, building: st.building, leftovers: st.leftovers,
  };
}

function formatStatus(st: LabStatus): string {
  const tail: string[] = [];
  if (st.building.length > 0) tail.push(`Being built now: ${st.building.map((b) => `run ${b.runId} (pid ${b.pid})`).join(', ')}.`);
  if (st.leftovers.length > 0) tail.push(`Leftovers of crashed runs: ${st.leftovers.join(', ')} — 'vmshadow lab down' removes them.`);
  if (!st.up) {
    return [`No lab is up in ${st.stateDir} ('vmshadow lab up' builds one).`, ...tail].join('\n') + '\n';
  }
  const yes = (b: boolean | null): string => (b === null ? '-' : b ? 'yes' : 'NO');
  const lines = [`Lab ${st.runId ?? '?'} in ${st.stateDir}: ${st.healthy ? 'healthy' : 'UNHEALTHY'}`, ''];
  lines.push(table(['site', 'namespace', 'address', 'alive', 'softflowd'], st.sites.map((s) => [s.id, s.ns, s.address, yes(s.nsAlive), yes(s.flowExporterAlive)])), '');
  if (st.users.length > 0) lines.push(table(['user', 'near', 'namespace', 'address', 'alive'], st.users.map((u) => [u.name, u.near, u.ns, u.address, yes(u.nsAlive)])), '');
  if (st.vms.length > 0) {
    lines.push(table(['vm', 'site', 'running at', 'pid', 'qemu', 'echo :7'], st.vms.map((v) => [
      v.name, v.site, v.runningAt === null ? '-' : v.runningAt.host, v.pid === null ? '-' : String(v.pid), v.qemuStatus ?? 'NOT RUNNING', yes(v.echo),
    ])), '');
  }
  const r = st.relay;
  if (r !== null) {
    lines.push(`WAN relay pid ${r.pid}: ${r.stats !== null ? `answering, ${r.stats.directions.length} link directions, ${r.stats.directions.reduce((a, d) => a + d.txPackets, 0)} packets carried` : `NOT answering (${r.error ?? '?'})`}`);
  }
  for (const p of st.problems) lines.push(`problem: ${p}`);
  return [...lines, ...tail].join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// down

async function labDownCmd(argv: string[], io: LabIo): Promise<number> {
  const v = flags(argv, { 'state-dir': { type: 'string' }, json: { type: 'boolean', default: false } });
  assertRoot('take the lab down');
  const stateDir = stateDirOf(v);
  const rep = await labDown(stateDir);
  if (v.json === true) {
    io.out(JSON.stringify(rep) + '\n');
  } else if (rep.runs.length === 0 && rep.labRunId === null) {
    io.out(`Nothing to remove: no lab and no leftovers in ${stateDir}.\n`);
  } else {
    if (rep.qemuStopped.length > 0) io.out(`Stopped ${rep.qemuStopped.length} QEMU guests (pids ${rep.qemuStopped.join(', ')}).\n`);
    for (const r of rep.runs) {
      io.out(`${r.leftover ? 'Leftovers of crashed run' : 'Lab'} ${r.runId}: removed ${r.namespacesDeleted.length} namespaces, stopped ${r.processesStopped.length} processes, removed ${r.filesRemoved.length} files.\n`);
    }
    for (const e of rep.errors) io.out(`could not remove: ${e}\n`);
  }
  return rep.errors.length === 0 ? 0 : 1;
}
