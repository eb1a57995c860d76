#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AppError, InputError } from '../core/errors.js';
import { createSnapshot } from '../core/model.js';
import { planMoves } from '../placement/greedy.js';
import { planMovesIlp } from '../placement/ilp.js';
import type { Plan } from '../placement/plan.js';
import { comparePolicies } from '../sim/compare.js';
import { POLICIES, type PolicyName } from '../sim/engine.js';
import { generateScenario } from '../sim/generate.js';
import { DEFAULT_DATA_DIR, latencyData } from './data.js';
import { parseScenario, type Scenario } from '../sim/scenario.js';
import { loadHighs } from '../solver/highs.js';
import { fmtBytes, fmtNum, table } from './format.js';
import { simulationReport } from './report.js';
import { progressBar } from './progress.js';
import { runDemo } from './demo.js';
import { evaluateCaptures, fingerprintCapture, formatSets, runCollect } from './telemetry.js';
import { cmdLab } from './lab.js';
import { isManageCommand, runManage } from './manage.js';

const USAGE = `vmshadow — keeps latency-sensitive VMs at the cloud site nearest their users

Usage:
  vmshadow demo [--duration-s N] [--text-s N] [--listen HOST:PORT] [--json]
                                                         the whole system live on a lab (root): a desktop follows its user
  vmshadow demo --simulated [--sites N] [--vms M] [--seed S]   simulate a day of a real-world cloud; print a report
  vmshadow scenario generate --sites N --vms M --seed S [--users U] [--duration-s D] [--out FILE]
  vmshadow plan --scenario FILE [--planner greedy|ilp] [--json]
  vmshadow simulate --scenario FILE [--policies never,nearest,greedy] [--timeline FILE] [--json]
  vmshadow bench placement|telemetry|telemetry-core|proxy|manager [--quick] [--json] [--out FILE]
  vmshadow fingerprint --pcap FILE --vm IP [--json]       verdict from flow records (softflowd → our collector)
  vmshadow fingerprint --evaluate [--traffic-dir DIR] [--ndpi-dir DIR] [--fixtures]
                                                          accuracy on both labelled sets (shared 50, nDPI 4.2)
  vmshadow collect --listen ADDR:PORT [--inventory FILE] [--window-s N] [--duration-s N] [--json]
  vmshadow lab up [--config FILE] [--sites N] [--flow-collector PORT] [--state-dir DIR] [--json]
  vmshadow lab status [--json] | vmshadow lab down       a multi-site cloud of QEMU guests on this machine (root)
  vmshadow manager [--data-dir DIR] [--listen HOST:PORT] [--store URL] [--lab-state-dir DIR | --inventory FILE] …
                                                         the control loop, REST API, dashboard and metrics (--help)
  vmshadow vm|plan|migration|site|user|link|round|settings …   operate a running manager over its API (e.g. vmshadow vm --help)

Errors in input exit with code 2 and name the field; other failures exit 1.
`;

/** The labelled captures live in ../shared beside the checkout; their labels are kept with the fixtures. */
const DEFAULT_TRAFFIC_DIR = fileURLToPath(new URL('../../../../shared/data/traffic/pcap/', import.meta.url));
const DEFAULT_NDPI_DIR = '/work/cache/nDPI-4.2/tests/pcap';

interface Io {
  out: (s: string) => void;
  err: NodeJS.WriteStream;
}

type Options = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>;

function args(argv: string[], options: Options): Record<string, string | boolean | (string | boolean)[] | undefined> {
  // "--seed -1": a negative number is a value, not an option.
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const name = a.startsWith('--') ? a.slice(2) : '';
    if (name !== '' && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${a}=${next}`);
      i++;
    } else {
      joined.push(a);
    }
  }
  try {
    return parseArgs({ args: joined, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new InputError('arguments', argv.join(' '), (e as Error).message);
  }
}

function intFlag(v: unknown, name: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt !== undefined) return dflt;
    throw new InputError(name, v, 'is required');
  }
  const n = Number(v);
  if (typeof v !== 'string' || !/^-?\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InputError(name, v, 'must be a whole number');
  return n;
}


/** Fails now, not after a long run, if `file` cannot be written. */
function writable(file: unknown, flag: string): void {
  if (typeof file !== 'string') return;
  try {
    writeFileSync(file, '', { flag: 'a' });
  } catch (e) {
    throw new InputError(flag, file, `cannot be written: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function readScenario(file: unknown): Scenario {
  if (typeof file !== 'string') throw new InputError('--scenario', file, 'is required: a scenario JSON file');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError('--scenario', file, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError('--scenario', file, `is not valid JSON: ${(e as Error).message}`);
  }
  return parseScenario(json);
}

function planJson(plan: Plan): unknown {
  return {
    planner: plan.planner,
    atMs: plan.atMs,
    totalBenefit: plan.totalBenefit,
    ...(plan.optimal !== undefined ? { optimal: plan.optimal } : {}),
    moves: plan.moves.map((m) => ({
      vm: m.vm, from: m.from, to: m.to, benefit: m.benefit, costS: m.costS, savingMs: m.savingMs,
      kind: m.kind, bytes: m.bytes, postCopy: m.postCopy, after: m.after,
    })),
    rejected: plan.rejected,
  };
}

function planText(plan: Plan): string {
  const lines = [`${plan.planner} plan: ${plan.moves.length} moves, total benefit ${fmtNum(plan.totalBenefit)}`, ''];
  if (plan.moves.length > 0) {
    lines.push(table(['vm', 'from', 'to', 'kind', 'saves ms', 'benefit', 'cost s', 'moves', 'after'],
      plan.moves.map((m) => [m.vm, m.from, m.to, m.kind, m.savingMs, m.benefit, m.costS, fmtBytes(m.bytes), m.after.join(',') || '-'])), '');
  }
  const byReason = new Map<string, number>();
  for (const r of plan.rejected) byReason.set(r.reason, (byReason.get(r.reason) ?? 0) + 1);
  lines.push(`Not moved (${plan.rejected.length}):`);
  for (const [reason, n] of [...byReason].sort((a, b) => b[1] - a[1])) {
    const ex = plan.rejected.find((r) => r.reason === reason)!;
    lines.push(`  ${String(n).padStart(6)}  ${reason.padEnd(18)} e.g. ${ex.vm}: ${ex.detail}`);
  }
  return lines.join('\n');
}

async function cmdPlan(argv: string[], io: Io): Promise<void> {
  const v = args(argv, { scenario: { type: 'string' }, planner: { type: 'string', default: 'greedy' }, json: { type: 'boolean', default: false } });
  const sc = readScenario(v.scenario);
  if (v.planner !== 'greedy' && v.planner !== 'ilp') throw new InputError('--planner', v.planner, 'must be greedy or ilp');
  const snap = createSnapshot({ ...sc.cloudInput, atMs: 0 });
  const plan = v.planner === 'ilp' ? planMovesIlp(snap, sc.params, await loadHighs()) : planMoves(snap, sc.params);
  io.out(v.json === true ? JSON.stringify(planJson(plan)) + '\n' : planText(plan) + '\n');
}

async function cmdSimulate(argv: string[], io: Io): Promise<void> {
  const v = args(argv, {
    scenario: { type: 'string' }, policies: { type: 'string', default: 'never,nearest,greedy' },
    timeline: { type: 'string' }, json: { type: 'boolean', default: false },
  });
  const sc = readScenario(v.scenario);
  writable(v.timeline, '--timeline');
  const policies = String(v.policies).split(',').map((p) => p.trim());
  for (const p of policies) {
    if (!(POLICIES as readonly string[]).includes(p)) throw new InputError('--policies', p, `is not a policy (${POLICIES.join(', ')})`);
  }
  const solver = policies.includes('ilp') ? await loadHighs() : undefined;
  let bar: ReturnType<typeof progressBar> | null = null;
  let current = '';
  const cmp = comparePolicies(sc, policies as PolicyName[], {
    ...(solver !== undefined ? { solver } : {}),
    recordSeries: v.timeline !== undefined,
    onProgress: (policy, f) => {
      if (policy !== current) {
        bar?.done();
        bar = progressBar(io.err, policy);
        current = policy;
      }
      bar?.update(f);
    },
  });
  (bar as ReturnType<typeof progressBar> | null)?.done();
  if (typeof v.timeline === 'string') writeTimeline(v.timeline, cmp.policies);
  if (v.json === true) {
    io.out(JSON.stringify({ ...cmp, policies: cmp.policies.map(({ series: _s, ...p }) => p) }) + '\n');
    return;
  }
  io.out(simulationReport(cmp) + '\n');
}

function writeTimeline(file: string, results: ReturnType<typeof comparePolicies>['policies']): void {
  const rows = ['policy,vm,round,userRttMs'];
  for (const r of results) {
    for (const [vm, xs] of Object.entries(r.series ?? {})) xs.forEach((x, i) => rows.push(`${r.policy},${vm},${i},${x}`));
  }
  try {
    writeFileSync(file, rows.join('\n') + '\n');
  } catch (e) {
    throw new InputError('--timeline', file, `cannot be written: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function cmdScenario(argv: string[], io: Io): void {
  const [verb, ...rest] = argv;
  if (verb !== 'generate') throw new InputError('scenario', verb, 'the only verb is "generate"');
  const v = args(rest, {
    sites: { type: 'string' }, vms: { type: 'string' }, seed: { type: 'string' }, users: { type: 'string' },
    'duration-s': { type: 'string' }, 'round-s': { type: 'string' }, out: { type: 'string' }, 'data-dir': { type: 'string' },
  });
  writable(v.out, '--out');
  const data = latencyData(v['data-dir']);
  const sc = generateScenario(data, {
    sites: intFlag(v.sites, '--sites'), vms: intFlag(v.vms, '--vms'), seed: intFlag(v.seed, '--seed'),
    ...(v.users !== undefined ? { users: intFlag(v.users, '--users') } : {}),
    ...(v['duration-s'] !== undefined ? { durationS: intFlag(v['duration-s'], '--duration-s') } : {}),
    ...(v['round-s'] !== undefined ? { roundIntervalS: intFlag(v['round-s'], '--round-s') } : {}),
  });
  parseScenario(sc); // what we write, we can read back
  const text = JSON.stringify(sc, null, 1) + '\n';
  if (typeof v.out === 'string') {
    try {
      writeFileSync(v.out, text);
    } catch (e) {
      throw new InputError('--out', v.out, `cannot be written: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    io.err.write(`wrote ${v.out}\n`);
  } else {
    io.out(text);
  }
}

async function cmdBench(argv: string[], io: Io): Promise<void> {
  const [what, ...rest] = argv;
  if (what !== 'placement' && what !== 'telemetry' && what !== 'telemetry-core' && what !== 'proxy' && what !== 'manager') throw new InputError('bench', what, 'known benchmarks: placement, telemetry, telemetry-core, proxy, manager');
  const v = args(rest, { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, 'data-dir': { type: 'string' }, out: { type: 'string' } });
  if (what === 'manager') {
    const { runManagerBench } = await import('../../bench/manager.js');
    await runManagerBench({
      quick: v.quick === true, json: v.json === true, out: io.out, outFile: typeof v.out === 'string' ? v.out : null,
      dataDir: typeof v['data-dir'] === 'string' ? v['data-dir'] : DEFAULT_DATA_DIR,
    });
    return;
  }
  if (what === 'proxy') {
    const { runProxyBench } = await import('../../bench/proxy.js');
    await runProxyBench({ quick: v.quick === true, json: v.json === true, out: io.out });
    return;
  }
  if (what === 'telemetry-core') {
    const { runTelemetryCoreBench } = await import('../../bench/telemetry-core.js');
    await runTelemetryCoreBench({ quick: v.quick === true, json: v.json === true, out: io.out });
    return;
  }
  if (what === 'telemetry') {
    const { runTelemetryBench } = await import('../../bench/telemetry.js');
    await runTelemetryBench({ quick: v.quick === true, json: v.json === true, out: io.out });
    return;
  }
  const { runPlacementBench } = await import('../../bench/placement.js');
  await runPlacementBench({
    quick: v.quick === true, json: v.json === true,
    dataDir: typeof v['data-dir'] === 'string' ? v['data-dir'] : DEFAULT_DATA_DIR,
    out: io.out, err: (s: string) => io.err.write(s),
  });
}

async function cmdDemo(argv: string[], io: Io): Promise<number> {
  const v = args(argv, {
    sites: { type: 'string' }, vms: { type: 'string' }, seed: { type: 'string' }, 'data-dir': { type: 'string' },
    simulated: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, 'duration-s': { type: 'string' },
    'text-s': { type: 'string' }, listen: { type: 'string' }, 'state-dir': { type: 'string' },
  });
  if (v.simulated === true) {
    runDemo({
      sites: intFlag(v.sites, '--sites', 8), vms: intFlag(v.vms, '--vms', 400), seed: intFlag(v.seed, '--seed', 1),
      data: latencyData(v['data-dir']),
      out: io.out, err: io.err,
    });
    return 0;
  }
  const durationS = intFlag(v['duration-s'], '--duration-s', 240);
  const textS = intFlag(v['text-s'], '--text-s', 30);
  if (durationS < 30 || durationS > 86_400) throw new InputError('--duration-s', durationS, 'must be 30–86400 seconds');
  if (textS < 10 || textS >= durationS) throw new InputError('--text-s', textS, `must be at least 10 s and less than --duration-s (${durationS})`);
  const { runLiveDemo } = await import('./live-demo.js');
  const ac = new AbortController();
  const stop = (): void => {
    if (ac.signal.aborted) {
      io.err.write('vmshadow demo: still removing what it started; `vmshadow lab down` also does\n');
      return;
    }
    io.err.write('vmshadow demo: stopping (Ctrl-C); removing what it started\n');
    ac.abort();
  };
  // Kept through the clean-up: a second Ctrl-C must not kill the process with the lab still up.
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const json = v.json === true;
    const summary = await runLiveDemo({
      data: latencyData(v['data-dir']), durationS, textS, listen: typeof v.listen === 'string' ? v.listen : '127.0.0.1:8080',
      ...(typeof v['state-dir'] === 'string' ? { stateDir: v['state-dir'] } : {}),
      // With --json the narration goes to stderr so that stdout holds the one summary object.
      narrate: (l) => (json ? io.err.write(`${l}\n`) : io.out(`${l}\n`)),
      signal: ac.signal,
    });
    if (json) io.out(JSON.stringify(summary) + '\n');
    else {
      io.out(`\nSummary: moved ${summary.moved.join(', ') || 'nothing'}; left alone ${summary.leftAlone.join(', ') || 'nothing'}.\n`);
      io.out(`alice's frame update time ${summary.frameTimeBeforeMs ?? '?'} → ${summary.frameTimeAfterMs ?? '?'} ms (p50), refresh rate ${summary.updatesPerSBefore ?? '?'} → ${summary.updatesPerSAfter ?? '?'} updates/s (${summary.refreshRateGainPct === null ? '?' : `${summary.refreshRateGainPct >= 0 ? '+' : ''}${summary.refreshRateGainPct} %`}); migration ${summary.migrationS ?? '?'} s, downtime ${summary.downtimeMs ?? '?'} ms.\n`);
    }
    return summary.moved.length > 0 ? 0 : 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

async function cmdFingerprint(argv: string[], io: Io): Promise<void> {
  const v = args(argv, {
    pcap: { type: 'string' }, vm: { type: 'string' }, json: { type: 'boolean', default: false },
    evaluate: { type: 'boolean', default: false }, 'traffic-dir': { type: 'string' }, 'ndpi-dir': { type: 'string' },
    fixtures: { type: 'boolean', default: false },
  });
  if (v.evaluate === true) {
    const sets = await evaluateCaptures({
      trafficDir: typeof v['traffic-dir'] === 'string' ? v['traffic-dir'] : DEFAULT_TRAFFIC_DIR,
      ndpiDir: typeof v['ndpi-dir'] === 'string' ? v['ndpi-dir'] : DEFAULT_NDPI_DIR,
      fixtures: v.fixtures === true,
    });
    io.out(v.json === true
      ? JSON.stringify({ sets: sets.map((s) => ({ name: s.name, source: s.source, fellBack: s.fellBack, heldOut: s.evaluation.heldOut, tune: s.evaluation.tune, all: s.evaluation.all, rows: s.evaluation.rows })) }) + '\n'
      : formatSets(sets) + '\n');
    return;
  }
  if (typeof v.pcap !== 'string') throw new InputError('--pcap', v.pcap, 'is required: a packet capture');
  if (typeof v.vm !== 'string') throw new InputError('--vm', v.vm, 'is required: the VM\'s IP address');
  const r = await fingerprintCapture(v.pcap, v.vm);
  io.out(v.json === true ? JSON.stringify(r) + '\n'
    : `${r.vm}: ${r.sensitive ? 'location-sensitive' : 'not location-sensitive'} (score ${r.score.toFixed(2)}), ${r.activity}\n${r.reasons.map((x) => `  - ${x}`).join('\n')}\n`);
}

async function cmdCollect(argv: string[], io: Io): Promise<void> {
  const v = args(argv, {
    listen: { type: 'string' }, inventory: { type: 'string' }, 'window-s': { type: 'string' },
    'duration-s': { type: 'string' }, json: { type: 'boolean', default: false },
  });
  if (typeof v.listen !== 'string') throw new InputError('--listen', v.listen, 'is required: HOST:PORT to receive IPFIX, NetFlow or sFlow on');
  const windowS = intFlag(v['window-s'], '--window-s', 60);
  if (windowS < 1 || windowS > 3600) throw new InputError('--window-s', windowS, 'must be 1–3600 seconds');
  await runCollect({
    listen: v.listen, windowS, json: v.json === true, io,
    ...(typeof v.inventory === 'string' ? { inventoryFile: v.inventory } : {}),
    ...(v['duration-s'] !== undefined ? { durationS: intFlag(v['duration-s'], '--duration-s') } : {}),
  });
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'vm': case 'migration': case 'site': case 'user': case 'link': case 'round': case 'settings':
        return await runManage(cmd, rest, io);
      case 'plan': if (isManageCommand(cmd, rest[0])) return await runManage(cmd, rest, io); await cmdPlan(rest, io); break;
      case 'simulate': await cmdSimulate(rest, io); break;
      case 'scenario': cmdScenario(rest, io); break;
      case 'bench': await cmdBench(rest, io); break;
      case 'demo': return await cmdDemo(rest, io);
      case 'fingerprint': await cmdFingerprint(rest, io); break;
      case 'collect': await cmdCollect(rest, io); break;
      case 'lab': return await cmdLab(rest, io);
      // Loaded on demand: the manager pulls in Fastify and the rest, which other commands need not pay for.
      case 'manager': return await (await import('./manager.js')).cmdManager(rest, io);
      case undefined: case 'help': case '--help': case '-h':
        io.out(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new InputError('command', cmd, `is not a vmshadow command\n\n${USAGE}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof InputError) {
      io.err.write(`vmshadow: ${e.message}\n`);
      return 2;
    }
    if (e instanceof AppError) {
      io.err.write(`vmshadow: ${e.message} [${e.code}]\n`);
      return 1;
    }
    io.err.write(`vmshadow: unexpected failure: ${(e as Error).message ?? String(e)}\n`);
    if (process.env.VMSHADOW_DEBUG === '1') io.err.write(`${(e as Error).stack ?? ''}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1])) {
  const code = await main(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: process.stderr });
  process.exitCode = code;
}
