/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// Browser-only: the dashboard page. Loads the picture from the REST API, keeps it current from the SSE stream,
// and redraws only the sections an event touched. Mutations (approve/reject a plan, cancel a migration, pin a
// VM) POST with the admin token the operator typed once.
import type { FeatureCollection } from 'geojson';
import type {
  AuditEvent, LinkRecord, PlanRecord, RoundRecord, Settings, SiteRecord, UserRecord, VmRecord,
} from '../../store/records.js';
import type { LogEntry } from '../../store/store.js';
import { api, ApiError, connectStream, getToken, setToken, type StreamStatus } from './api.js';
import { byId, h, s } from './dom.js';
import {
  fmtAgo, fmtClock, fmtDuration, fmtMiB, fmtMs, nextRoundAtMs, rttClass, sparklinePoints, vmRttView,
} from './format.js';
import { createMap, type MapView } from './map.js';
import {
  applyEvent, EMPTY_STATE, fromSnapshot, pendingPlans, sortedVms, visibleMigrations,
  type DashState, type Health, type MigrationView, type Section, type Snapshot, type StreamEvent,
} from './state.js';

const ALL_SECTIONS: readonly Section[] = ['header', 'map', 'vms', 'migrations', 'plans', 'audit'];
/** Sparklines are fetched for this many VMs at load; the rest fill in from live 'fingerprint' events. */
const SPARK_VMS = 60;
const SPARK_HISTORY = 40;

let state: DashState = EMPTY_STATE;
let loaded = false;
let queued: StreamEvent[] = [];
let streamStatus: StreamStatus = 'connecting';
let map: MapView | null = null;
let stream: { close(): void } | null = null;
/** What to do once the operator has given a token (the action that asked for it). */
let afterToken: (() => void) | null = null;

// ---------------------------------------------------------------------------------------------------------------
// Loading

interface Items<T> {
  readonly items: T[];
  readonly next?: string | null;
}

async function allVms(): Promise<VmRecord[]> {
  const out: VmRecord[] = [];
  let after: string | null = null;
  // A dashboard draws at most a few thousand rows; the rest is the CLI's job.
  for (let page = 0; page < 5; page++) {
    const q: string = after === null ? '' : `&after=${encodeURIComponent(after)}`;
    const r: Items<VmRecord> = await api<Items<VmRecord>>(`/v1/vms?limit=1000${q}`);
    out.push(...r.items);
    after = r.next ?? null;
    if (after === null) break;
  }
  return out;
}

async function pool<T, R>(xs: readonly T[], width: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(xs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await f(xs[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, xs.length) }, worker));
  return out;
}

async function loadSnapshot(): Promise<Snapshot> {
  const [health, settings, sites, links, users, vms, recent, pending, migrations, rounds, audit] = await Promise.all([
    api<Health>('/healthz').catch(() => null),
    api<Settings>('/v1/settings'),
    api<Items<SiteRecord>>('/v1/sites'),
    api<Items<LinkRecord>>('/v1/links'),
    api<Items<UserRecord>>('/v1/users'),
    allVms(),
    api<Items<PlanRecord>>('/v1/plans?limit=100'),
    api<Items<PlanRecord>>('/v1/plans?status=recommended&limit=100'),
    api<Items<MigrationView>>('/v1/migrations?limit=50'),
    api<Items<RoundRecord>>('/v1/rounds?limit=30'),
    api<Items<LogEntry<AuditEvent>>>('/v1/audit?limit=60'),
  ]);
  const sparkFor = [...vms].sort((a, b) => b.sensitivity - a.sensitivity).slice(0, SPARK_VMS);
  type Fp = LogEntry<{ score: number }>;
  const fps = await pool(sparkFor, 4, (vm): Promise<[string, Fp[]]> =>
    api<{ fingerprints: Fp[] }>(`/v1/vms/${encodeURIComponent(vm.id)}?history=${SPARK_HISTORY}`)
      .then((r): [string, Fp[]] => [vm.id, r.fingerprints])
      .catch((): [string, Fp[]] => [vm.id, []]));
  return {
    health, settings, sites: sites.items, links: links.items, users: users.items, vms,
    fingerprints: Object.fromEntries(fps),
    plans: [...recent.items, ...pending.items],
    migrations: migrations.items,
    rounds: rounds.items,
    audit: audit.items,
  };
}

let loading = false;
async function load(): Promise<void> {
  if (loading) return;
  loading = true;
  try {
    const snap = await loadSnapshot();
    state = fromSnapshot(snap);
    const q = queued;
    queued = [];
    loaded = true;
    for (const ev of q) apply(ev);
    markAll();
    clearNotice('load');
  } catch (e) {
    if (e instanceof ApiError && e.needsToken) {
      askToken(`Reading needs a token: ${e.message}`, () => void load());
    } else {
      notice(`Could not load the dashboard: ${errorText(e)}; retrying in 5 s`, 'error', 'load');
      setTimeout(() => void load(), 5000);
    }
  } finally {
    loading = false;
  }
}

function apply(ev: StreamEvent): void {
  if (!loaded) {
    queued.push(ev);
    return;
  }
  const r = applyEvent(state, ev);
  state = r.state;
  mark(r.changed);
  if (r.fetchMigration !== undefined) {
    const id = r.fetchMigration;
    api<MigrationView>(`/v1/migrations/${encodeURIComponent(id)}`)
      .then((m) => apply({ type: 'migration', migration: m }))
      .catch(() => undefined);
  }
}

function startStream(): void {
  stream?.close();
  stream = connectStream({
    onEvent: apply,
    onStatus(st) {
      streamStatus = st;
      mark(['header']);
    },
    onReopen() {
      void load();
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Drawing: each section is rebuilt from the state when marked dirty, once per animation frame.

const dirty = new Set<Section>();
let frameQueued = false;

function mark(sections: readonly Section[]): void {
  for (const x of sections) dirty.add(x);
  if (frameQueued || dirty.size === 0) return;
  frameQueued = true;
  requestAnimationFrame(() => {
    frameQueued = false;
    const todo = [...dirty];
    dirty.clear();
    for (const sec of todo) {
      try {
        RENDER[sec]();
      } catch (e) {
        notice(`Drawing the ${sec} failed: ${errorText(e)}`, 'error');
      }
    }
  });
}

const markAll = (): void => mark(ALL_SECTIONS);

const RENDER: Record<Section, () => void> = {
  header: renderHeader,
  map: () => map?.draw(state),
  vms: renderVms,
  migrations: renderMigrations,
  plans: renderPlans,
  audit: renderAudit,
};

const siteName = (id: string): string => state.sites.find((x) => x.id === id)?.name ?? id;
const vmName = (id: string): string => state.vms[id]?.name ?? id;

function fact(label: string, value: Node | string, cls = ''): HTMLElement {
  return h('div', { class: `fact ${cls}` }, h('dt', {}, label), h('dd', {}, value));
}

function renderHeader(): void {
  const now = Date.now();
  const hl = state.health;
  const latest = state.rounds[0] ?? null;
  const next = nextRoundAtMs(latest?.startedAtMs ?? null, state.settings?.roundIntervalS ?? null);
  let nextText = '—';
  if (next !== null) nextText = next <= now ? 'due now' : fmtAgo(next, now);
  const leader = hl === null ? '—' : hl.leader ? `${hl.replica} (this replica)` : `${latest?.leader ?? 'unknown'}`;
  const live = { live: 'live', connecting: 'connecting…', down: 'reconnecting…' }[streamStatus];
  byId('facts').replaceChildren(
    fact('Replica', hl?.replica ?? '—', 'f-replica'),
    fact('Leader', leader, 'f-leader'),
    fact('Mode', state.settings?.mode ?? '—', 'f-mode'),
    fact('Next round', nextText, 'f-next'),
    fact('Stream', h('span', { class: `stream stream-${streamStatus}` }, live), 'f-stream'),
  );
  byId('token-button').textContent = getToken() === null ? 'Admin token' : 'Token ✓';
}

function rttSpan(ms: number | null): HTMLElement {
  return h('span', { class: `rtt rtt-${rttClass(ms)}` }, fmtMs(ms));
}

function renderVms(): void {
  const rows = sortedVms(state).map((vm) => {
    const pts = state.fingerprints[vm.id] ?? [];
    const values = pts.length > 0 ? pts.map((p) => p.score) : [vm.sensitivity];
    const spark = s('svg', { class: 'spark', viewBox: '0 0 80 20', width: 80, height: 20, 'aria-hidden': 'true' },
      s('polyline', { points: sparklinePoints(values, 80, 20) }));
    const rv = vmRttView(vm, state.users, state.sites);
    const better = rv.best !== null && rv.nowMs !== null && rv.best.siteId !== vm.siteId && rv.best.rttMs < rv.nowMs;
    const pin = h('button', {
      class: 'pin', type: 'button', 'aria-pressed': vm.pinned ? 'true' : 'false',
      title: vm.pinned ? 'Pinned: the planner never moves it. Click to unpin.' : 'Click to pin it where it is.',
    }, vm.pinned ? 'pinned' : 'pin');
    pin.addEventListener('click', () => void mutate(`/v1/vms/${encodeURIComponent(vm.id)}`, 'PATCH', { pinned: !vm.pinned }, (v: VmRecord) => {
      apply({ type: 'vm', vm: v });
    }, pin));
    return h('tr', { 'data-vm': vm.id },
      h('td', { 'data-label': 'VM' }, h('span', { class: 'vm-name' }, vm.name),
        vm.name !== vm.id ? h('small', { class: 'muted' }, ` ${vm.id}`) : null,
        vm.migratingJobId !== null ? h('span', { class: 'chip moving' }, 'moving') : null,
        vm.excluded ? h('span', { class: 'chip' }, 'excluded') : null),
      h('td', { 'data-label': 'Site', class: 'vm-site' }, siteName(vm.siteId)),
      h('td', { 'data-label': 'Activity' }, h('span', { class: `act act-${vm.activity}` }, vm.activity),
        vm.sensitive ? h('span', { class: 'chip sensitive', title: vm.reasons.join('; ') }, 'sensitive') : null),
      h('td', { 'data-label': 'Sensitivity', class: 'sens' }, spark, h('span', { class: 'num' }, vm.sensitivity.toFixed(2))),
      h('td', { 'data-label': "Users' RTT" }, h('span', { class: 'rtt-cell' },
        rttSpan(rv.nowMs), ' now',
        rv.best === null ? null : h('span', { class: better ? 'best better' : 'best' },
          ' · best ', rttSpan(rv.best.rttMs), ' at ', h('span', { class: 'nowrap' }, siteName(rv.best.siteId))))),
      h('td', { 'data-label': 'Pinned' }, pin),
    );
  });
  const body = byId('vm-rows');
  body.replaceChildren(...rows);
  byId('vm-empty').hidden = rows.length > 0;
  byId('vm-count').textContent = String(rows.length);
}

function migrationCard(m: MigrationView): HTMLElement {
  const pct = Math.max(0, Math.min(100, m.percent));
  const stateLabel = m.ended ? m.state : m.phase ?? m.state;
  const stats: string[] = [`${pct.toFixed(1)} %`, `${fmtMiB(m.totalBytes - m.remainingBytes)} of ${fmtMiB(m.totalBytes)}`];
  if (m.transferredBytes > 0) stats.push(`${fmtMiB(m.transferredBytes)} sent`);
  stats.push(`${m.throughputMbps.toFixed(1)} Mbit/s`);
  if (!m.ended) stats.push(`ETA ${fmtDuration(m.etaS)}`);
  const end: (string | HTMLElement)[] = [];
  if (m.ended) {
    if (m.downtimeMs !== null) end.push(h('span', { class: 'downtime' }, `downtime ${fmtMs(m.downtimeMs)}`));
    if (m.outcome !== null) end.push(`took ${fmtDuration(m.outcome.durationMs / 1000)}`);
    if (m.finishedAtMs !== null) end.push(`ended ${fmtAgo(m.finishedAtMs, Date.now())}`);
    if (m.reason !== null) end.push(h('span', { class: 'reason' }, m.reason));
  }
  const cancel = m.ended ? null : h('button', { class: 'cancel', type: 'button' }, 'Cancel');
  cancel?.addEventListener('click', () => void mutate(`/v1/migrations/${encodeURIComponent(m.id)}/cancel`, 'POST', {},
    (v: MigrationView) => apply({ type: 'migration', migration: v }), cancel));
  return h('article', { class: `mig ${m.ended ? 'ended' : 'live'} st-${m.state.replace(/[^a-z-]/g, '-')}`, 'data-job': m.id },
    h('div', { class: 'mig-head' },
      h('b', {}, vmName(m.vm)), ` ${siteName(m.from)} → ${siteName(m.to)} `,
      h('span', { class: 'chip phase' }, stateLabel), cancel),
    h('div', {
      class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
      'aria-label': `Migration of ${vmName(m.vm)}`,
    }, h('div', { class: 'fill', style: `width:${pct}%` })),
    h('div', { class: 'mig-stats' }, stats.join(' · ')),
    end.length > 0 ? h('div', { class: 'mig-end' }, ...end.flatMap((x, i) => (i === 0 ? [x] : [' · ', x]))) : null,
  );
}

function renderMigrations(): void {
  const ms = visibleMigrations(state);
  byId('migrations').replaceChildren(...(ms.length > 0 ? ms.map(migrationCard) : [h('p', { class: 'muted' }, 'No migrations.')]));
  byId('mig-count').textContent = String(ms.filter((m) => !m.ended).length);
}

function renderPlans(): void {
  const box = byId('plans');
  // Keep what an operator was typing when an event redraws the list.
  const typed = new Map<string, string>();
  for (const el of box.querySelectorAll<HTMLInputElement>('input[data-reason-for]')) typed.set(el.dataset.reasonFor ?? '', el.value);
  const plans = pendingPlans(state);
  const cards = plans.map((p) => {
    const round = state.rounds.find((r) => r.id === p.roundId);
    const reason = h('input', { type: 'text', class: 'reason', placeholder: 'reason (optional)', 'data-reason-for': p.id, 'aria-label': 'Reason' });
    reason.value = typed.get(p.id) ?? '';
    const approve = h('button', { class: 'approve', type: 'button' }, 'Approve');
    const reject = h('button', { class: 'reject', type: 'button' }, 'Reject');
    const decide = (action: 'approve' | 'reject'): void => {
      const body = action === 'reject' && reason.value.trim() !== '' ? { reason: reason.value.trim() } : {};
      void mutate(`/v1/plans/${encodeURIComponent(p.id)}/${action}`, 'POST', body, (rec: PlanRecord) => {
        apply({ type: 'plan', plan: rec });
        notice(`Plan ${rec.id} ${rec.status}${rec.jobs.length > 0 ? `: ${rec.jobs.length} migration(s) started` : ''}`, 'info');
      }, approve, reject);
    };
    approve.addEventListener('click', () => decide('approve'));
    reject.addEventListener('click', () => decide('reject'));
    const moves = h('table', { class: 'moves' },
      h('thead', {}, h('tr', {}, ...['VM', 'Move', 'Saves', 'Benefit', 'Cost', 'Data'].map((x) => h('th', {}, x)))),
      h('tbody', {}, ...p.moves.map((mv) => h('tr', {},
        h('td', { 'data-label': 'VM' }, vmName(mv.vm)),
        h('td', { 'data-label': 'Move' }, `${siteName(mv.from)} → ${siteName(mv.to)}`, mv.postCopy ? ' (post-copy)' : '',
          mv.after.length > 0 ? h('small', { class: 'muted' }, ` after ${mv.after.map(vmName).join(', ')}`) : null),
        h('td', { 'data-label': 'Saves' }, fmtMs(mv.savingMs)),
        h('td', { 'data-label': 'Benefit' }, mv.benefit.toFixed(1)),
        h('td', { 'data-label': 'Cost' }, fmtDuration(mv.costS)),
        h('td', { 'data-label': 'Data' }, fmtMiB(mv.bytes)),
      ))));
    return h('article', { class: 'plan', 'data-plan': p.id },
      h('div', { class: 'plan-head' }, h('b', {}, `Plan ${p.id}`),
        h('span', { class: 'muted' }, ` · ${round !== undefined ? `round #${round.seq} · ` : ''}${fmtAgo(p.atMs, Date.now())} · ${p.planner} · total benefit ${p.totalBenefit.toFixed(1)}`)),
      moves,
      p.rejected.length > 0 ? h('details', { class: 'rejected' }, h('summary', {}, `${p.rejected.length} VM(s) left where they are`),
        h('ul', {}, ...p.rejected.map((r) => h('li', {}, h('b', {}, vmName(r.vm)), `: ${r.reason} — ${r.detail}`)))) : null,
      h('div', { class: 'actions' }, reason, approve, reject),
    );
  });
  box.replaceChildren(...(cards.length > 0 ? cards : [h('p', { class: 'muted' }, 'No plan is waiting for approval.')]));
  byId('plan-count').textContent = String(cards.length);
}

function renderAudit(): void {
  const roundsBox = byId('rounds');
  const open = new Set<string>();
  for (const d of roundsBox.querySelectorAll<HTMLDetailsElement>('details[data-round]')) if (d.open) open.add(d.dataset.round ?? '');
  const rounds = state.rounds.slice(0, 12).map((r) => {
    const plan = r.planId === null ? undefined : state.plans[r.planId];
    const summary = [
      `#${r.seq}`, fmtClock(r.startedAtMs), r.mode,
      `${r.moves} move${r.moves === 1 ? '' : 's'}`, `${r.rejections} left`,
      r.durationMs === null ? 'running' : fmtMs(r.durationMs),
    ].join(' · ');
    const body: HTMLElement[] = [];
    if (r.error !== null) body.push(h('p', { class: 'error' }, r.error));
    if (plan !== undefined) {
      body.push(h('p', { class: 'muted' }, `plan ${plan.id}: ${plan.status}${plan.decidedBy !== null ? ` by ${plan.decidedBy}` : ''}${plan.note !== null ? ` — ${plan.note}` : ''}`));
      body.push(h('ul', { class: 'reasons' },
        ...plan.moves.map((m) => h('li', { class: 'move' }, h('b', {}, vmName(m.vm)),
          ` ${siteName(m.from)} → ${siteName(m.to)}: saves ${fmtMs(m.savingMs)}, benefit ${m.benefit.toFixed(1)}, ~${fmtDuration(m.costS)} to move`)),
        ...plan.rejected.map((x) => h('li', { class: 'left' }, h('b', {}, vmName(x.vm)), ` stays: ${x.reason} — ${x.detail}`))));
    } else if (r.planId !== null) {
      body.push(h('p', { class: 'muted' }, `plan ${r.planId}`));
    }
    body.push(h('p', { class: 'muted' }, `leader ${r.leader} · ${r.vmsObserved} VMs observed · ${r.usersProbed} users probed`));
    const d = h('details', { 'data-round': r.id }, h('summary', { class: r.error !== null ? 'error' : '' }, summary), ...body);
    d.open = open.has(r.id);
    return h('li', { class: 'round' }, d);
  });
  roundsBox.replaceChildren(...(rounds.length > 0 ? rounds : [h('li', { class: 'muted' }, 'No rounds yet.')]));
  const events = state.audit.slice(0, 40).map((e) => h('li', { 'data-seq': e.seq },
    h('time', { datetime: new Date(e.atMs).toISOString(), title: new Date(e.atMs).toLocaleString() }, fmtClock(e.atMs)), ' ',
    h('b', {}, e.value.kind), h('span', { class: 'muted' }, ` ${e.value.actor} · ${e.key} `), e.value.message));
  byId('audit').replaceChildren(...(events.length > 0 ? events : [h('li', { class: 'muted' }, 'Nothing recorded yet.')]));
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations, the token form, notices

async function mutate<T>(path: string, method: string, body: unknown, done: (r: T) => void, ...buttons: HTMLButtonElement[]): Promise<void> {
  if (getToken() === null) {
    askToken('Changes need the admin token.', () => void mutate(path, method, body, done));
    return;
  }
  for (const b of buttons) b.disabled = true;
  try {
    done(await api<T>(path, { method, body }));
  } catch (e) {
    if (e instanceof ApiError && e.needsToken) askToken(e.message, () => void mutate(path, method, body, done));
    else notice(errorText(e), 'error');
    if (e instanceof ApiError && e.status === 409) void load();
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function askToken(why: string, then: (() => void) | null): void {
  afterToken = then;
  const form = byId<HTMLFormElement>('token-form');
  byId('token-why').textContent = why;
  form.hidden = false;
  byId<HTMLInputElement>('token-input').focus();
}

function setupTokenForm(): void {
  const form = byId<HTMLFormElement>('token-form');
  const input = byId<HTMLInputElement>('token-input');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (input.value.trim() === '') return;
    setToken(input.value);
    input.value = '';
    form.hidden = true;
    startStream();
    mark(['header']);
    const then = afterToken;
    afterToken = null;
    then?.();
  });
  byId('token-forget').addEventListener('click', () => {
    setToken(null);
    input.value = '';
    form.hidden = true;
    afterToken = null;
    startStream();
    mark(['header']);
  });
  byId('token-button').addEventListener('click', () => {
    if (form.hidden) askToken(getToken() === null ? 'Paste the admin token.' : 'Replace or forget the stored token.', null);
    else form.hidden = true;
  });
}

let noticeKey: string | null = null;
let noticeTimer: ReturnType<typeof setTimeout> | null = null;

function notice(text: string, kind: 'info' | 'error', key: string | null = null): void {
  const el = byId('notice');
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = false;
  noticeKey = key;
  if (noticeTimer !== null) clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    el.hidden = true;
  }, kind === 'error' ? 15_000 : 6000);
}

function clearNotice(key: string): void {
  if (noticeKey === key) byId('notice').hidden = true;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------------------------

async function start(): Promise<void> {
  setupTokenForm();
  window.addEventListener('unhandledrejection', (ev) => notice(`Unexpected: ${errorText(ev.reason)}`, 'error'));
  const world = fetch('world.json')
    .then((r) => (r.ok ? (r.json() as Promise<FeatureCollection>) : null))
    .catch(() => null);
  startStream();
  const loadDone = load();
  map = createMap(byId('map') as unknown as SVGSVGElement, byId('tooltip'), await world);
  await loadDone;
  markAll();
  // The header counts down to the next round.
  setInterval(() => mark(['header']), 1000);
  document.documentElement.dataset.ready = 'true';
}

void start();
