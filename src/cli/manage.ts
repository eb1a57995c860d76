// `vmshadow vm|plan|migration|site|user|link|round|settings …`: the operator's commands, thin over the
// manager's REST API. Human tables by default; `--json` prints the API's JSON as it came.
import { parseArgs } from 'node:util';
import { AppError, InputError } from '../core/errors.js';
import type { SettingsPatch } from '../manager/control.js';
import type { MigrationView } from '../manager/views.js';
import type { MigrationProgress } from '../migration/driver.js';
import type { PlanRecord, PlanStatus, RoundRecord, Settings, VmRecord } from '../store/records.js';
import { ApiClient, ApiRequestError, resolveApiTarget, type StreamEvent } from './api-client.js';
import { fmtBytes, fmtNum, table } from './format.js';

export interface ManageIo {
  out: (s: string) => void;
  err: { write(s: string): unknown };
}

export interface ManageOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Draw `migration watch` in place (a terminal); default: whether stdout is a terminal. */
  readonly tty?: boolean;
  /** Terminal width, to keep redrawn lines from wrapping. */
  readonly columns?: number;
}

export const MANAGE_USAGE = `Usage (commands talk to a running manager over its REST API):
  vmshadow vm list [--site S] [--sensitive true|false] [--limit N] [--after ID]
  vmshadow vm show ID [--history N]
  vmshadow vm pin|unpin|exclude|include ID
  vmshadow plan list [--status S] [--limit N]
  vmshadow plan show ID
  vmshadow plan approve ID
  vmshadow plan reject ID [--reason TEXT]
  vmshadow migration list [--active true|false] [--limit N]
  vmshadow migration show ID
  vmshadow migration watch [ID] [--timeout-s N]   live progress; exits 0 if completed, 1 otherwise
  vmshadow migration cancel ID
  vmshadow site list | user list | user show ID | link list
  vmshadow round list [--limit N] | round run
  vmshadow settings show | settings set KEY=VALUE… (mode, roundIntervalS, planner, params.NAME)
Every command takes --json (the API's JSON), --api URL and --token TOKEN.
The manager's URL and token also come from VMSHADOW_API / VMSHADOW_TOKEN or ~/.config/vmshadow/cli.json
({"api": "http://127.0.0.1:8080", "token": "…"}); default http://127.0.0.1:8080.
`;

const VERBS: Readonly<Record<string, readonly string[]>> = {
  vm: ['list', 'show', 'pin', 'unpin', 'exclude', 'include'],
  plan: ['list', 'show', 'approve', 'reject'],
  migration: ['list', 'show', 'watch', 'cancel'],
  site: ['list'],
  user: ['list', 'show'],
  link: ['list'],
  round: ['list', 'run'],
  settings: ['show', 'set'],
};

export const MANAGE_NOUNS = Object.keys(VERBS);

/** Whether `vmshadow <noun> <verb>` is one of these commands (`plan --scenario …` is not). */
export function isManageCommand(noun: string | undefined, verb: string | undefined): boolean {
  if (noun === undefined || VERBS[noun] === undefined) return false;
  if (noun === 'plan') return verb !== undefined && VERBS.plan!.includes(verb);
  return true;
}

type Flags = Record<string, string | boolean | (string | boolean)[] | undefined>;
type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

const COMMON: OptionSpec = { api: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } };

function parse(argv: readonly string[], extra: OptionSpec, usage: string): { v: Flags; pos: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options: { ...COMMON, ...extra }, strict: true, allowPositionals: true });
    return { v: r.values, pos: r.positionals };
  } catch (e) {
    throw new InputError('arguments', argv.join(' '), `${(e as Error).message}\n\n${usage}`);
  }
}

function str(v: Flags, k: string): string | undefined {
  const x = v[k];
  return typeof x === 'string' ? x : undefined;
}

function intOpt(v: Flags, k: string, min: number, max: number): number | undefined {
  const x = str(v, k);
  if (x === undefined) return undefined;
  const n = Number(x);
  if (!/^\d+$/.test(x) || n < min || n > max) throw new InputError(`--${k}`, x, `must be a whole number from ${min} to ${max}`);
  return n;
}

function boolOpt(v: Flags, k: string): boolean | undefined {
  const x = str(v, k);
  if (x === undefined) return undefined;
  if (x !== 'true' && x !== 'false') throw new InputError(`--${k}`, x, 'must be true or false');
  return x === 'true';
}

function oneId(pos: readonly string[], cmd: string): string {
  if (pos.length === 0) throw new InputError('ID', undefined, `is required: vmshadow ${cmd} ID`);
  if (pos.length > 1) throw new InputError('arguments', pos.join(' '), `vmshadow ${cmd} takes one ID`);
  return pos[0]!;
}

function noPositionals(pos: readonly string[], cmd: string): void {
  if (pos.length > 0) throw new InputError('arguments', pos.join(' '), `vmshadow ${cmd} takes no arguments`);
}

// ------------------------------------------------------------------------------------------------------------
// Formatting

export function fmtTime(ms: number | null): string {
  if (ms === null) return '-';
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

export function fmtDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '-';
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
}

const MiB = 1024 * 1024;
const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

function kv(rows: readonly (readonly [string, string])[]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

function vmFlags(vm: VmRecord): string {
  const f = [vm.pinned ? 'pinned' : '', vm.excluded ? 'excluded' : '', vm.migratingJobId !== null ? `moving (${vm.migratingJobId})` : ''].filter((x) => x !== '');
  return f.length > 0 ? f.join(',') : '-';
}

function vmTable(vms: readonly VmRecord[]): string {
  if (vms.length === 0) return '(no VMs)';
  return table(['id', 'name', 'site', 'host', 'vcpu', 'memory MiB', 'sensitivity', 'activity', 'users', 'flags'],
    vms.map((v) => [v.id, v.name, v.siteId, v.hostId ?? '-', v.vcpu, v.memoryMiB, Number(v.sensitivity.toFixed(2)),
      v.sensitive ? `${v.activity} *` : v.activity, v.users.length, vmFlags(v)]));
}

function planSummary(p: PlanRecord): string {
  return `plan ${p.id} (${fmtTime(p.atMs)}, round ${p.roundId}, ${p.planner}, ${p.mode} mode): ${p.status}, `
    + `${p.moves.length} move${p.moves.length === 1 ? '' : 's'}, total benefit ${fmtNum(p.totalBenefit)}`
    + (p.decidedBy !== null ? `; decided by ${p.decidedBy} at ${fmtTime(p.decidedAtMs)}` : '')
    + (p.note !== null && p.note !== '' ? ` (${p.note})` : '');
}

function planText(p: PlanRecord): string {
  const lines = [planSummary(p), ''];
  if (p.moves.length > 0) {
    lines.push(table(['vm', 'from', 'to', 'kind', 'saves ms', 'benefit', 'cost s', 'moves', 'after'],
      p.moves.map((m) => [m.vm, m.from, m.to, m.kind, m.savingMs, m.benefit, m.costS, fmtBytes(m.bytes), m.after.join(',') || '-'])), '');
  }
  if (p.jobs.length > 0) {
    lines.push('Migrations:', table(['job', 'vm', 'state'], p.jobs.map((j) => [j.jobId, j.vm, j.state])), '');
  }
  const byReason = new Map<string, number>();
  for (const r of p.rejected) byReason.set(r.reason, (byReason.get(r.reason) ?? 0) + 1);
  lines.push(`Not moved (${p.rejected.length}):`);
  for (const [reason, n] of [...byReason].sort((a, b) => b[1] - a[1])) {
    const ex = p.rejected.find((r) => r.reason === reason)!;
    lines.push(`  ${String(n).padStart(6)}  ${reason.padEnd(18)} e.g. ${ex.vm}: ${ex.detail}`);
  }
  return lines.join('\n');
}

function migrationRow(m: MigrationView): (string | number)[] {
  return [m.id, m.vm, `${m.from}→${m.to}`, m.state, `${m.percent.toFixed(0)}%`,
    `${fmtNum(Math.round(m.transferredBytes / MiB))}/${fmtNum(Math.round(m.totalBytes / MiB))}`,
    m.ended ? '-' : m.throughputMbps.toFixed(0), m.ended ? '-' : fmtDuration(m.etaS), fmtTime(m.createdAtMs)];
}

function migrationText(m: MigrationView): string {
  const rows: [string, string][] = [
    ['vm', m.vm], ['move', `${m.from} → ${m.to} (plan ${m.planId})`], ['state', m.state + (m.reason !== null ? ` — ${m.reason}` : '')],
    ['progress', `${m.percent.toFixed(1)}%, ${fmtBytes(m.transferredBytes)} sent of ${fmtBytes(m.totalBytes)}, ${fmtBytes(m.remainingBytes)} left`],
  ];
  if (!m.ended) rows.push(['rate', `${m.throughputMbps.toFixed(1)} Mbit/s, ETA ${fmtDuration(m.etaS)}`]);
  else rows.push(['average rate', `${m.throughputMbps.toFixed(1)} Mbit/s`]);
  if (m.downtimeMs !== null) rows.push(['downtime', `${fmtNum(m.downtimeMs)} ms`]);
  rows.push(['created', fmtTime(m.createdAtMs)], ['finished', fmtTime(m.finishedAtMs)]);
  if (m.outcome !== null && m.outcome.settings.length > 0) {
    rows.push(['settings', m.outcome.settings.map((s) => `${s.name}=${String(s.value)}`).join(', ')]);
  }
  const hist = m.history.map((h) => [fmtTime(h.atMs), h.event, `${h.from} → ${h.to}`, h.note ?? ''] as (string | number)[]);
  return [`migration ${m.id}`, kv(rows), '', 'History:', table(['time', 'event', 'state', 'note'], hist)].join('\n');
}

function settingsText(s: Settings): string {
  const rows: [string, string][] = [['mode', s.mode], ['roundIntervalS', String(s.roundIntervalS)], ['planner', s.planner]];
  for (const [k, v] of Object.entries(s.params)) rows.push([`params.${k}`, Array.isArray(v) ? (v.length > 0 ? v.join(',') : '[]') : String(v)]);
  return kv(rows);
}

function roundLine(r: RoundRecord): string {
  return `round ${r.seq} (${r.id}) by ${r.leader}, ${r.mode} mode: ${r.vmsObserved} VMs observed, ${r.usersProbed} users probed, `
    + `${r.moves} moves, ${r.rejections} not moved${r.planId !== null ? `, plan ${r.planId}` : ''}`
    + (r.durationMs !== null ? `, took ${fmtNum(r.durationMs)} ms` : '') + (r.error !== null ? `; error: ${r.error}` : '');
}

/** `KEY=VALUE` arguments of `settings set` as a patch; a value is JSON if it parses as JSON, else a string. */
export function parseSettingsAssignments(args: readonly string[]): SettingsPatch {
  if (args.length === 0) throw new InputError('KEY=VALUE', undefined, 'is required: e.g. vmshadow settings set mode=approve params.minSavingMs=5');
  const patch: { mode?: unknown; roundIntervalS?: unknown; planner?: unknown; params?: Record<string, unknown> } = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new InputError('KEY=VALUE', a, 'must be KEY=VALUE (mode, roundIntervalS, planner or params.NAME)');
    const key = a.slice(0, eq);
    const raw = a.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a plain word: the string itself
    }
    if (key === 'mode' || key === 'roundIntervalS' || key === 'planner') patch[key] = value;
    else if (key.startsWith('params.') && key.length > 'params.'.length) (patch.params ??= {})[key.slice('params.'.length)] = value;
    else throw new InputError(key, raw, 'is not a setting (mode, roundIntervalS, planner, params.NAME)');
  }
  return patch as SettingsPatch;
}

// ------------------------------------------------------------------------------------------------------------
// migration watch

interface WatchRow {
  view: MigrationView;
  progress: MigrationProgress | null;
  printedPct: number;
  printedState: string;
}

/** Percent of the bytes to send that no longer remain (as the API computes it). */
export function progressPercent(p: Pick<MigrationProgress, 'totalBytes' | 'remainingBytes'>): number {
  if (p.totalBytes <= 0) return 0;
  return Math.min(100, Math.max(0, (1 - p.remainingBytes / p.totalBytes) * 100));
}

export function bar(percent: number, width = 24): string {
  const fill = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}]`;
}

/** One migration as a watch line: vm, from→to, bar, percent, MiB moved/total, Mbit/s, ETA; or how it ended. */
export function watchLine(view: MigrationView, progress: MigrationProgress | null, widths: { vm: number; route: number } = { vm: 0, route: 0 }): string {
  const head = `${view.vm.padEnd(widths.vm)}  ${`${view.from}→${view.to}`.padEnd(widths.route)}`;
  if (view.ended) {
    const tookS = view.outcome !== null ? view.outcome.durationMs / 1000 : view.finishedAtMs !== null ? (view.finishedAtMs - view.createdAtMs) / 1000 : null;
    const moved = `${fmtNum(Math.round(view.transferredBytes / MiB))} MiB moved`;
    if (view.state === 'completed') {
      return `${head}  ${bar(100)} 100%  completed in ${fmtDuration(tookS)}, ${moved}`
        + (view.downtimeMs !== null ? `, downtime ${fmtNum(view.downtimeMs)} ms` : '');
    }
    return `${head}  ${view.state}${view.reason !== null ? `: ${view.reason}` : ''} (after ${fmtDuration(tookS)}, ${moved})`;
  }
  const useProgress = progress !== null && progress.atMs >= view.updatedAtMs;
  const pct = useProgress ? progressPercent(progress) : view.percent;
  const sent = useProgress ? progress.transferredBytes : view.transferredBytes;
  const total = useProgress ? progress.totalBytes : view.totalBytes;
  const mbps = useProgress ? progress.throughputMbps : view.throughputMbps;
  const eta = useProgress ? progress.etaS : view.etaS;
  const state = useProgress ? `running:${progress.phase}` : view.state;
  return `${head}  ${bar(pct)} ${pct.toFixed(0).padStart(3)}%  ${fmtNum(Math.round(sent / MiB))}/${fmtNum(Math.round(total / MiB))} MiB`
    + `  ${mbps.toFixed(0)} Mbit/s  ETA ${fmtDuration(eta)}  ${state}`;
}

interface WatchOptions {
  readonly json: boolean;
  readonly tty: boolean;
  readonly columns: number;
  readonly timeoutS: number | null;
  /** Re-read the watched migrations when the stream has been quiet this long (a missed event cannot hang us). */
  readonly quietRefreshMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Follows migrations on the event stream until the watched ones have ended: `id`, or every migration active
 * at the start (and any that starts meanwhile). Exit code 0 if all completed, 1 otherwise.
 */
export async function watchMigrations(client: ApiClient, id: string | undefined, io: ManageIo, opts: WatchOptions): Promise<number> {
  const rows = new Map<string, WatchRow>();
  const watched = new Set<string>();
  const followNew = id === undefined;
  const deadline = opts.timeoutS === null ? null : Date.now() + opts.timeoutS * 1000;
  const quietMs = opts.quietRefreshMs ?? 20_000;
  let drawn = 0;
  let lastDraw = 0;

  const upsertView = (v: MigrationView): WatchRow | null => {
    const row = rows.get(v.id);
    if (row === undefined) {
      if (!watched.has(v.id)) {
        if (!followNew || v.ended) return null;
        watched.add(v.id);
      }
      const r: WatchRow = { view: v, progress: null, printedPct: -100, printedState: '' };
      rows.set(v.id, r);
      return r;
    }
    if (v.updatedAtMs >= row.view.updatedAtMs || v.ended) row.view = v;
    return row;
  };

  const allEnded = (): boolean => [...watched].every((w) => rows.get(w)?.view.ended === true);

  const widths = (): { vm: number; route: number } => ({
    vm: Math.max(0, ...[...rows.values()].map((r) => r.view.vm.length)),
    route: Math.max(0, ...[...rows.values()].map((r) => r.view.from.length + r.view.to.length + 1)),
  });

  const draw = (force: boolean): void => {
    if (opts.json) return;
    const w = widths();
    if (opts.tty) {
      const now = Date.now();
      if (!force && now - lastDraw < 100) return;
      lastDraw = now;
      const max = Math.max(20, opts.columns - 1);
      let s = drawn > 0 ? `\x1b[${drawn}F` : '';
      for (const r of rows.values()) s += `\x1b[2K${watchLine(r.view, r.progress, w).slice(0, max)}\n`;
      drawn = rows.size;
      io.out(s);
      return;
    }
    // Plain lines: one when a migration appears, changes state, passes another 10 %, or ends.
    for (const r of rows.values()) {
      const useProgress = r.progress !== null && r.progress.atMs >= r.view.updatedAtMs && !r.view.ended;
      const pct = useProgress ? progressPercent(r.progress!) : r.view.percent;
      const state = r.view.ended ? r.view.state : useProgress ? `running:${r.progress!.phase}` : r.view.state;
      if (state !== r.printedState || Math.floor(pct / 10) > Math.floor(r.printedPct / 10)) {
        r.printedState = state;
        r.printedPct = pct;
        io.out(`${watchLine(r.view, r.progress, w)}\n`);
      }
    }
  };

  const emitJson = (raw: string): void => {
    if (opts.json) io.out(`${raw}\n`);
  };

  /** Reads the watched migrations (or the active ones) from the API. */
  const refresh = async (first: boolean): Promise<void> => {
    if (id !== undefined) {
      const v = await client.migration(id);
      if (first) watched.add(v.id);
      const before = rows.get(v.id)?.view;
      upsertView(v);
      if (before === undefined || before.updatedAtMs !== v.updatedAtMs || before.ended !== v.ended) emitJson(JSON.stringify({ type: 'migration', migration: v }));
      return;
    }
    const active = (await client.migrations({ active: true, limit: 1000 })).items;
    for (const v of active) {
      if (first) watched.add(v.id);
      const before = rows.get(v.id)?.view;
      if (upsertView(v) !== null && (before === undefined || before.updatedAtMs !== v.updatedAtMs)) emitJson(JSON.stringify({ type: 'migration', migration: v }));
    }
    // Watched ones no longer active have ended: read how.
    for (const w of watched) {
      if (rows.get(w)?.view.ended === true || active.some((v) => v.id === w)) continue;
      const v = await client.migration(w);
      upsertView(v);
      emitJson(JSON.stringify({ type: 'migration', migration: v }));
    }
  };

  const handle = (e: StreamEvent): void => {
    if (e.type === 'migration') {
      const v = (e.data as { migration?: MigrationView }).migration;
      if (v === undefined) return;
      if (upsertView(v) !== null) emitJson(e.raw);
    } else if (e.type === 'progress') {
      const d = e.data as { jobId: string; progress: MigrationProgress };
      const row = rows.get(d.jobId);
      if (row === undefined || row.view.ended) return;
      if (row.progress === null || d.progress.atMs >= row.progress.atMs) row.progress = d.progress;
      emitJson(e.raw);
    }
  };

  const outcome = (): number => {
    draw(true);
    return [...watched].every((w) => rows.get(w)?.view.state === 'completed') ? 0 : 1;
  };

  const ac = new AbortController();
  try {
    for (let attempt = 0; ; attempt++) {
      let stream: AsyncGenerator<StreamEvent>;
      try {
        // Open the stream first, then read the state: nothing that happens in between is missed.
        stream = await client.openEvents({ types: ['migration', 'progress'], signal: ac.signal });
      } catch (e) {
        if (attempt === 0 || !(e instanceof AppError) || !e.retryable || attempt >= 5) throw e;
        await sleep(1000);
        continue;
      }
      await refresh(attempt === 0);
      if (attempt === 0 && watched.size === 0) {
        if (!opts.json) io.out('no migrations are running\n');
        return 0;
      }
      draw(true);
      if (allEnded()) return outcome();
      let next = stream.next();
      let broken: unknown = null;
      for (;;) {
        const left = deadline === null ? quietMs : Math.min(quietMs, deadline - Date.now());
        if (left <= 0) {
          draw(true);
          const running = [...watched].filter((w) => rows.get(w)?.view.ended !== true);
          throw new AppError('WATCH_TIMEOUT', `stopped watching after ${opts.timeoutS ?? 0} s: ${running.join(', ')} still running`);
        }
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([
          next.then((x) => ({ kind: 'event' as const, x }), (err: unknown) => ({ kind: 'error' as const, err })),
          new Promise<{ kind: 'quiet' }>((res) => {
            timer = setTimeout(() => res({ kind: 'quiet' }), left);
          }),
        ]);
        clearTimeout(timer);
        if (r.kind === 'quiet') {
          await refresh(false);
        } else if (r.kind === 'error') {
          broken = r.err;
          break;
        } else if (r.x.done === true) {
          break;
        } else {
          handle(r.x.value);
          next = stream.next();
        }
        draw(allEnded());
        if (allEnded()) return outcome();
      }
      // The stream ended or broke: reconnect (bounded), then re-read the state.
      if (broken !== null && !(broken instanceof AppError && broken.retryable)) throw broken instanceof Error ? broken : new AppError('API_STREAM_BROKEN', `the event stream from ${client.baseUrl} broke`, { cause: broken });
      if (attempt >= 5) {
        throw new AppError('API_STREAM_BROKEN', `the event stream from ${client.baseUrl} ended ${attempt + 1} times while ${[...watched].filter((w) => rows.get(w)?.view.ended !== true).join(', ')} still ran`, { cause: broken });
      }
      await sleep(500);
    }
  } finally {
    ac.abort();
  }
}

// ------------------------------------------------------------------------------------------------------------
// Commands

async function run(noun: string, verb: string, args: readonly string[], io: ManageIo, opts: ManageOptions): Promise<number> {
  const usage = MANAGE_USAGE;
  const extra: OptionSpec = {};
  const cmd = `${noun} ${verb}`;
  switch (cmd) {
    case 'vm list': Object.assign(extra, { site: { type: 'string' }, sensitive: { type: 'string' }, limit: { type: 'string' }, after: { type: 'string' } }); break;
    case 'vm show': extra.history = { type: 'string' }; break;
    case 'plan list': Object.assign(extra, { status: { type: 'string' }, limit: { type: 'string' } }); break;
    case 'plan reject': extra.reason = { type: 'string' }; break;
    case 'migration list': Object.assign(extra, { active: { type: 'string' }, limit: { type: 'string' } }); break;
    case 'migration watch': extra['timeout-s'] = { type: 'string' }; break;
    case 'round list': extra.limit = { type: 'string' }; break;
    default: break;
  }
  const { v, pos } = parse(args, extra, usage);
  const env = opts.env ?? process.env;
  const client = new ApiClient(resolveApiTarget({ flags: { api: str(v, 'api'), token: str(v, 'token') }, env }));
  const json = v.json === true;
  const print = (data: unknown, text: () => string): void => io.out(json ? `${JSON.stringify(data)}\n` : `${text()}\n`);

  switch (cmd) {
    case 'vm list': {
      noPositionals(pos, cmd);
      const r = await client.vms({
        site: str(v, 'site'), sensitive: boolOpt(v, 'sensitive'), limit: intOpt(v, 'limit', 1, 1000), after: str(v, 'after'),
      });
      print(r, () => vmTable(r.items) + (r.next !== null ? `\n(more: vmshadow vm list --after ${r.next})` : ''));
      return 0;
    }
    case 'vm show': {
      const r = await client.vm(oneId(pos, cmd), { history: intOpt(v, 'history', 0, 1000) });
      print(r, () => {
        const m = r.vm;
        const rows: [string, string][] = [
          ['site', `${m.siteId}${m.hostId !== null ? ` (host ${m.hostId})` : ''}`],
          ['size', `${m.vcpu} vCPU, ${fmtNum(m.memoryMiB)} MiB memory, ${fmtNum(m.diskGiB)} GiB disk; dirties ${fmtNum(m.dirtyRateMiBps)} MiB/s, working set ${fmtNum(m.workingSetMiB)} MiB`],
          ['addresses', m.addresses.join(', ') || '-'],
          ['sensitive', `${yesNo(m.sensitive)} (score ${m.sensitivity.toFixed(2)}), ${m.activity}${m.fingerprintAtMs !== null ? ` at ${fmtTime(m.fingerprintAtMs)}` : ''}`],
          ['users', m.users.map((u) => `${u.userId} (${Math.round(u.share * 100)} %)`).join(', ') || '-'],
          ['pinned', yesNo(m.pinned)], ['excluded', yesNo(m.excluded)],
          ['last moved', `${fmtTime(m.lastMovedAtMs)} (${m.recentMoves} recent move${m.recentMoves === 1 ? '' : 's'})`],
          ['migrating', m.migratingJobId ?? '-'],
        ];
        const lines = [`vm ${m.id} (${m.name})`, kv(rows)];
        if (m.reasons.length > 0) lines.push('', 'Why:', ...m.reasons.map((x) => `  - ${x}`));
        if (r.fingerprints.length > 0) {
          lines.push('', 'Fingerprints (newest first):', table(['time', 'score', 'sensitive', 'activity', 'bytes', 'users'],
            r.fingerprints.map((f) => [fmtTime(f.atMs), Number(f.value.score.toFixed(2)), yesNo(f.value.sensitive), f.value.activity, fmtBytes(f.value.bytes), f.value.users.length])));
        }
        return lines.join('\n');
      });
      return 0;
    }
    case 'vm pin': case 'vm unpin': case 'vm exclude': case 'vm include': {
      const flags = verb === 'pin' || verb === 'unpin' ? { pinned: verb === 'pin' } : { excluded: verb === 'exclude' };
      const r = await client.setVmFlags(oneId(pos, cmd), flags);
      print(r, () => `vm ${r.id}: pinned ${yesNo(r.pinned)}, excluded ${yesNo(r.excluded)}`);
      return 0;
    }
    case 'plan list': {
      noPositionals(pos, cmd);
      const r = await client.plans({ status: str(v, 'status') as PlanStatus | undefined, limit: intOpt(v, 'limit', 1, 1000) });
      print(r, () => (r.items.length === 0 ? '(no plans)' : table(['id', 'time', 'mode', 'status', 'planner', 'moves', 'not moved', 'benefit', 'decided by'],
        r.items.map((p) => [p.id, fmtTime(p.atMs), p.mode, p.status, p.planner, p.moves.length, p.rejected.length, p.totalBenefit, p.decidedBy ?? '-']))));
      return 0;
    }
    case 'plan show': {
      const r = await client.plan(oneId(pos, cmd));
      print(r, () => planText(r));
      return 0;
    }
    case 'plan approve': {
      const r = await client.approvePlan(oneId(pos, cmd));
      print(r, () => `${planSummary(r)}${r.jobs.length > 0 ? `\n${table(['job', 'vm', 'state'], r.jobs.map((j) => [j.jobId, j.vm, j.state]))}` : ''}`);
      return 0;
    }
    case 'plan reject': {
      const r = await client.rejectPlan(oneId(pos, cmd), str(v, 'reason'));
      print(r, () => planSummary(r));
      return 0;
    }
    case 'migration list': {
      noPositionals(pos, cmd);
      const r = await client.migrations({ active: boolOpt(v, 'active'), limit: intOpt(v, 'limit', 1, 1000) });
      print(r, () => (r.items.length === 0 ? '(no migrations)' : table(['id', 'vm', 'move', 'state', 'done', 'MiB sent/total', 'Mbit/s', 'ETA', 'created'], r.items.map(migrationRow))));
      return 0;
    }
    case 'migration show': {
      const r = await client.migration(oneId(pos, cmd));
      print(r, () => migrationText(r));
      return 0;
    }
    case 'migration cancel': {
      const r = await client.cancelMigration(oneId(pos, cmd));
      print(r, () => `migration ${r.id} (${r.vm}, ${r.from}→${r.to}): ${r.state}${r.reason !== null ? ` — ${r.reason}` : ''}`);
      return 0;
    }
    case 'migration watch': {
      if (pos.length > 1) throw new InputError('arguments', pos.join(' '), 'vmshadow migration watch takes at most one ID');
      const timeoutS = intOpt(v, 'timeout-s', 1, 7 * 86_400) ?? null;
      return watchMigrations(client, pos[0], io, {
        json, tty: opts.tty ?? process.stdout.isTTY === true, columns: opts.columns ?? process.stdout.columns ?? 120, timeoutS,
      });
    }
    case 'site list': {
      noPositionals(pos, cmd);
      const r = await client.sites();
      print(r, () => (r.items.length === 0 ? '(no sites)' : table(['id', 'name', 'region', 'country', 'vcpu', 'memory MiB'],
        r.items.map((s) => [s.id, s.name, s.region, s.country, s.capacity.vcpu, s.capacity.memoryMiB]))));
      return 0;
    }
    case 'user list': {
      noPositionals(pos, cmd);
      const r = await client.users();
      print(r, () => (r.items.length === 0 ? '(no users)' : table(['id', 'name', 'endpoint', 'country', 'network', 'vms', 'nearest site', 'rtt ms', 'last seen'],
        r.items.map((u) => {
          const best = Object.entries(u.rtt).sort((a, b) => a[1].rttMs - b[1].rttMs)[0];
          return [u.id, u.name, u.endpoint, u.country ?? '-', u.network, u.vms.length, best?.[0] ?? '-', best !== undefined ? Number(best[1].rttMs.toFixed(1)) : '-', fmtTime(u.lastSeenAtMs)];
        }))));
      return 0;
    }
    case 'user show': {
      const r = await client.user(oneId(pos, cmd));
      print(r, () => {
        const u = r.user;
        const lines = [`user ${u.id} (${u.name})`, kv([
          ['endpoint', u.endpoint], ['country', u.country ?? '-'], ['network', u.network],
          ['vms', u.vms.join(', ') || '-'], ['last seen', fmtTime(u.lastSeenAtMs)],
        ])];
        const rtts = Object.entries(u.rtt).sort((a, b) => a[1].rttMs - b[1].rttMs);
        if (rtts.length > 0) {
          lines.push('', 'RTT to each site:', table(['site', 'rtt ms', 'source', 'at', 'stale'],
            rtts.map(([site, x]) => [site, Number(x.rttMs.toFixed(1)), x.source, fmtTime(x.atMs), yesNo(x.stale)])));
        }
        return lines.join('\n');
      });
      return 0;
    }
    case 'link list': {
      noPositionals(pos, cmd);
      const r = await client.links();
      print(r, () => (r.items.length === 0 ? '(no links)' : table(['id', 'a', 'b', 'rtt ms', 'Mbit/s', 'foreground share'],
        r.items.map((l) => [l.id, l.a, l.b, l.rttMs, l.bandwidthMbps, l.foregroundShare]))));
      return 0;
    }
    case 'round list': {
      noPositionals(pos, cmd);
      const r = await client.rounds({ limit: intOpt(v, 'limit', 1, 1000) });
      print(r, () => (r.items.length === 0 ? '(no rounds)' : table(['seq', 'id', 'started', 'ms', 'mode', 'leader', 'vms', 'users', 'moves', 'not moved', 'plan', 'error'],
        r.items.map((x) => [x.seq, x.id, fmtTime(x.startedAtMs), x.durationMs ?? '-', x.mode, x.leader, x.vmsObserved, x.usersProbed, x.moves, x.rejections, x.planId ?? '-', x.error ?? '-']))));
      return 0;
    }
    case 'round run': {
      noPositionals(pos, cmd);
      const r = await client.runRound();
      print(r, () => roundLine(r));
      return r.error === null ? 0 : 1;
    }
    case 'settings show': {
      noPositionals(pos, cmd);
      const r = await client.settings();
      print(r, () => settingsText(r));
      return 0;
    }
    case 'settings set': {
      const r = await client.updateSettings(parseSettingsAssignments(pos));
      print(r, () => settingsText(r));
      return 0;
    }
    default:
      throw new InputError(noun, verb, `is not a verb of "vmshadow ${noun}" (known: ${VERBS[noun]?.join(', ') ?? ''})\n\n${usage}`);
  }
}

/**
 * Runs `vmshadow <noun> <verb> …` and returns the exit code. Bad input (here or a 400 from the API) exits 2;
 * other failures are thrown for the CLI's one error printer (exit 1).
 */
export async function runManage(noun: string, argv: readonly string[], io: ManageIo, opts: ManageOptions = {}): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === 'help' || verb === '--help' || verb === '-h') {
    io.out(MANAGE_USAGE);
    return verb === undefined ? 2 : 0;
  }
  if (VERBS[noun] === undefined) throw new InputError('command', noun, `is not a manager command (known: ${MANAGE_NOUNS.join(', ')})`);
  try {
    return await run(noun, verb, rest, io, opts);
  } catch (e) {
    if (e instanceof ApiRequestError && e.status === 400) {
      io.err.write(`vmshadow: ${e.message} [${e.code}]\n`);
      return 2;
    }
    throw e;
  }
}
