// `vmshadow demo`: the whole system, live. A lab of three sites from the real RTTs (us-east-1, us-west-2,
// eu-west-1), two desktop VMs running real QEMU guests at us-east-1, the manager with its dashboard, and the
// research system's scenario: alice, next to us-west-2, edits text on desk1 — nothing moves; she starts a
// video — the fingerprint turns sensitive, the planner moves desk1 across the continent, her desktop session
// follows through the proxy and her frame update time drops. bob's desk2 only runs a bulk download and is
// left where it is. Every decision is narrated; Ctrl-C stops everything it started.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AppError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { parseLabConfig } from '../lab/config.js';
import { attachDesktop, startDesktop, type Desktop } from '../lab/desktop/desktop.js';
import type { UpdateSummary } from '../lab/desktop/update-stats.js';
import { ensureGuest } from '../lab/guest.js';
import { DEFAULT_LAB_STATE_DIR, labUp, type Lab } from '../lab/lab.js';
import type { SpawnedProcess } from '../lab/netns.js';
import { openDesktopSession, within, type DesktopSession } from '../lab/scenario.js';
import { loadManagerConfig } from '../manager/config.js';
import type { ManagerEvent } from '../manager/events.js';
import { startManager, type RunningManager } from '../manager/main.js';
import { isTerminal, label, type JobRecord } from '../migration/job.js';
import type { LatencyData } from '../sim/latency-data.js';
import { builtDashboardDir } from '../web/build.js';

export interface LiveDemoOptions {
  readonly data: LatencyData;
  /** How long the scenario runs once the lab is up (the lab's build is not counted). */
  readonly durationS: number;
  /** Seconds of text editing before the video starts. */
  readonly textS: number;
  /** The manager's API and dashboard. */
  readonly listen: string;
  readonly stateDir?: string;
  /** One line per step and decision, for a human. */
  readonly narrate: (line: string) => void;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
}

/** What `vmshadow demo --json` prints. */
export interface LiveDemoSummary {
  moved: string[];
  leftAlone: string[];
  frameTimeBeforeMs: number | null;
  frameTimeAfterMs: number | null;
  refreshRateGainPct: number | null;
  migrationS: number | null;
  updatesPerSBefore: number | null;
  updatesPerSAfter: number | null;
  downtimeMs: number | null;
  /** The display path's RTT (user → proxy → desktop) the move saved, as configured on the lab's links. */
  rttSavedMs: number;
  sessionDropped: boolean;
  dashboard: string;
}

const FAR = 'us-east-1';
const NEAR = 'us-west-2';
const OTHER = 'eu-west-1';
const DESK = 'desk1';
const BULK_VM = 'desk2';
const DESK_ADDR = '10.77.0.150';
const BULK_ADDR = '10.77.0.151';
const BULK_PORT = 8088;

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve) => {
  if (signal?.aborted === true) {
    resolve();
    return;
  }
  const t = setTimeout(done, ms);
  function done(): void {
    clearTimeout(t);
    signal?.removeEventListener('abort', done);
    resolve();
  }
  signal?.addEventListener('abort', done, { once: true });
});

/** A download server at another site: a capped stream of bytes to whoever connects (the internet, for bob). */
const BULK_SOURCE = (host: string, port: number): string =>
  `const net=require('net');const chunk=Buffer.alloc(65536,7);` +
  `net.createServer(s=>{s.on('error',()=>{});const t=setInterval(()=>{if(s.writableLength<1<<20)s.write(chunk)},50);s.on('close',()=>clearInterval(t))})` +
  `.listen(${port},${JSON.stringify(host)},()=>console.log('ready'))`;

/** bob's download: reads and discards; reconnects if the connection drops. */
const BULK_SINK = (host: string, port: number): string =>
  `const net=require('net');let n=0;const go=()=>{const s=net.connect(${port},${JSON.stringify(host)});` +
  `s.on('data',d=>{n+=d.length});s.on('error',()=>{});s.on('close',()=>setTimeout(go,1000))};go();` +
  `setInterval(()=>console.log(JSON.stringify({bytes:n})),5000)`;

export async function runLiveDemo(o: LiveDemoOptions): Promise<LiveDemoSummary> {
  const say = o.narrate;
  const stateDir = o.stateDir ?? DEFAULT_LAB_STATE_DIR;
  const config = parseLabConfig({
    sites: [FAR, NEAR, OTHER],
    users: [{ name: 'alice', near: NEAR }, { name: 'bob', near: OTHER }],
    vms: [
      { name: DESK, site: FAR, user: 'alice', memoryMiB: 128, diskMiB: 32, dirty: { workingSetMiB: 4, rateMiBps: 1 } },
      { name: BULK_VM, site: FAR, user: 'bob', memoryMiB: 128, diskMiB: 0 },
    ],
    // 25 Mbit/s access links, as in the end-to-end test: the video fits and the viewer keeps up on 2 cores.
    links: { userRateMbps: 25 },
    // Long connections are exported every 10 s (softflowd's maxlife): the manager judges 10 s windows.
    flowExport: { collectorPort: 9995, version: 10, activeTimeoutS: 10, idleTimeoutS: 10 },
  }, o.data);

  say(`Building the lab: sites ${FAR} (Virginia), ${NEAR} (Oregon), ${OTHER} (Ireland), RTTs from AWS's inter-region measurements;`);
  say(`alice near ${NEAR}, bob near ${OTHER}; desktops ${DESK} (alice's) and ${BULK_VM} (bob's) run as QEMU guests at ${FAR}.`);
  const lab: Lab = await labUp(config, {
    stateDir, guest: await ensureGuest(), bootTimeoutMs: 180_000, progress: (l) => say(`  lab: ${l}`),
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  });
  const started: { manager: RunningManager | null; session: DesktopSession | null; bulkDesk: Desktop | null; procs: SpawnedProcess[]; stops: (() => void)[] } = {
    manager: null, session: null, bulkDesk: null, procs: [], stops: [],
  };
  const cleanup = async (): Promise<void> => {
    say('Stopping: the desktop session, the download, the manager and the lab.');
    for (const stop of started.stops.splice(0)) stop();
    if (started.session !== null) await started.session.close().catch(() => undefined);
    for (const p of started.procs) p.child.kill('SIGKILL');
    if (started.bulkDesk !== null) await started.bulkDesk.stop().catch(() => undefined);
    if (started.manager !== null) await started.manager.close().catch(() => undefined);
    await lab.down().catch((e: unknown) => say(`  lab down failed: ${(e as Error).message}`));
  };
  try {
    const aborted = (): boolean => o.signal?.aborted === true;
    const checkpoint = (): void => {
      if (aborted()) throw new AppError('DEMO_STOPPED', 'The demo was stopped (Ctrl-C) while it was setting up; everything it started is removed');
    };
    const state = lab.state();
    const site = (id: string): string => state.sites.find((s) => s.id === id)!.address;
    const linkRtt = (a: string, b: string): number => state.links.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a))?.rttMs ?? NaN;

    // The proxy at alice's site hides her address from the flows at the desktop's site; it knows who is behind
    // each session, and tells the manager.
    const behindProxy = new Map<string, string>();
    const cfg = loadManagerConfig({
      argv: [
        '--data-dir', join(stateDir, 'manager'), '--listen', o.listen, '--lab-state-dir', stateDir,
        '--collector', `0.0.0.0:${config.flowExport!.collectorPort}`, '--mode', 'auto', '--round-interval-s', '5', '--window-s', '10',
        '--open-reads', '--replica', 'demo', '--log-level', 'warn', '--probe-port', '9',
      ],
      env: {},
    });
    mkdirSync(cfg.dataDir, { recursive: true });
    const m = await startManager(cfg, {
      out: (l) => say(l.trimEnd()), log: o.log ?? silentLogger, driver: lab.driver, dashboardDir: builtDashboardDir(),
      extraAddresses: { [DESK]: [DESK_ADDR], [BULK_VM]: [BULK_ADDR] },
      resolveEndpoint: (vm, endpoint) => (vm === DESK ? behindProxy.get(endpoint) ?? endpoint : endpoint),
    });
    started.manager = m;
    await m.untilLeader(30_000);
    checkpoint();
    say(`Manager up: dashboard ${m.url}/ (open it in a browser), API ${m.url}/v1, docs ${m.url}/docs, metrics ${m.url}/metrics`);

    // alice's desktop session through the proxy at her site; bob's download on his desktop.
    say(`alice opens her desktop ${DESK} through the proxy at ${NEAR}; she edits text.`);
    const session = await openDesktopSession(lab, { vm: DESK, user: 'alice', desktopAddress: `${DESK_ADDR}/24` });
    started.session = session;
    checkpoint();
    await session.desktop.setActivity('text-editing');
    const pollProxy = setInterval(() => {
      session.proxy.control.sessions().then((list) => {
        for (const s of list) if (s.state === 'open') behindProxy.set(session.proxy.address, s.user.replace(/:\d+$/, ''));
      }).catch(() => undefined);
    }, 1000);
    pollProxy.unref();
    started.stops.push(() => clearInterval(pollProxy));
    const bulkDesk = await startDesktop({ run: lab.run, name: BULK_VM, address: `${BULK_ADDR}/24`, initialActivity: 'idle' });
    started.bulkDesk = bulkDesk;
    await attachDesktop(bulkDesk, lab.siteNs(FAR), state.bridge, { checkAddress: site(OTHER) });
    const src = lab.run.spawnIn(lab.siteNs(OTHER), [process.execPath, '-e', BULK_SOURCE(site(OTHER), BULK_PORT)]);
    started.procs.push(src);
    await sleep(1000);
    started.procs.push(lab.run.spawnIn(bulkDesk.ns, [process.execPath, '-e', BULK_SINK(site(OTHER), BULK_PORT)]));
    checkpoint();
    say(`bob's ${BULK_VM} downloads a large file from a server at ${OTHER} (about 10 Mbit/s), and does nothing else.`);

    // Narrate the manager's decisions.
    // Written by the event handler, read by the timeline below.
    const track: { job: JobRecord | null; moving: Promise<unknown> | null; movedTo: string | null } = { job: null, moving: null, movedTo: null };
    const lastVerdict = new Map<string, string>();
    const onEvent = (e: ManagerEvent): void => {
      if (e.type === 'vm') {
        const v = e.vm;
        const line = `${v.sensitive ? 'location-sensitive' : 'not sensitive'} (${v.activity}, score ${v.sensitivity.toFixed(2)})`;
        if (lastVerdict.get(v.id) !== line && v.fingerprintAtMs !== null) {
          lastVerdict.set(v.id, line);
          say(`  fingerprint: ${v.id} is ${line}${v.reasons[1] !== undefined ? ` — ${v.reasons[1]}` : ''}`);
        }
      } else if (e.type === 'round') {
        if (e.round.moves > 0 || e.round.error !== null) say(`  round ${e.round.seq}: ${e.round.error ?? `${e.round.moves} move(s) planned`}`);
      } else if (e.type === 'audit') {
        const k = e.entry.value.kind;
        if (['move-planned', 'migration-completed', 'migration-aborted', 'migration-failed', 'migration-rolled-back', 'user-network-changed'].includes(k)) say(`  decision: ${e.entry.value.message}`);
      } else if (e.type === 'migration' && e.job.vm === DESK) {
        track.job = e.job;
        if (isTerminal(e.job.state) && e.job.state.kind === 'completed' && track.movedTo === null && track.moving === null) track.moving = follow(e.job.move.to);
      } else if (e.type === 'progress' && e.vm === DESK) {
        const p = e.progress;
        const to = track.job?.move.to;
        if (p.phase === 'switching-over' && track.movedTo === null && track.moving === null && to !== undefined) track.moving = follow(to);
      }
    };
    const follow = (to: string): Promise<unknown> => session.moveTo(to).then((r) => {
      track.movedTo = to;
      say(`  the desktop's display followed the VM to ${to} (re-attached in ${r.reattachMs.toFixed(0)} ms); alice's connection to the proxy stays open`);
    }).catch((err: unknown) => say(`  moving the display failed: ${(err as Error).message}`));
    started.stops.push(m.events.subscribe(onEvent));

    const t0 = Date.now();
    const left = (): number => o.durationS * 1000 - (Date.now() - t0);
    say(`alice types for ${o.textS} s: the manager watches her desktop's flows every round.`);
    await sleep(Math.min(o.textS * 1000, left()), o.signal);

    let before: UpdateSummary | null = null;
    let after: UpdateSummary | null = null;
    if (!aborted() && left() > 0) {
      say('alice starts a video on her desktop.');
      await session.desktop.setActivity('video');
      await sleep(1500, o.signal);
      before = await within(session.viewer.measure(4000), 30_000, 'measuring frame updates before the move');
      say(`  at ${FAR}: frame update time p50 ${before.updateMs?.p50.toFixed(0) ?? '?'} ms, ${before.updatesPerS.toFixed(1)} updates/s`);
    }
    const settled = (): boolean => track.job !== null && isTerminal(track.job.state) && (track.movedTo !== null || track.job.state.kind !== 'completed');
    while (!aborted() && left() > 0 && !settled()) await sleep(500, o.signal);
    if (track.moving !== null) await track.moving;
    const job = track.job;
    const movedTo = track.movedTo;
    if (!aborted() && movedTo !== null) {
      await sleep(1500, o.signal);
      after = await within(session.viewer.measure(4000), 30_000, 'measuring frame updates after the move');
      say(`  at ${movedTo}: frame update time p50 ${after.updateMs?.p50.toFixed(0) ?? '?'} ms, ${after.updatesPerS.toFixed(1)} updates/s`);
    } else if (job === null) {
      say(`  the manager did not move ${DESK} within the ${o.durationS} s the demo runs`);
    } else {
      say(`  the migration of ${DESK} ended ${label(job.state)}`);
    }
    if (!aborted() && left() > 0) {
      say(`The dashboard stays live for the rest of the ${o.durationS} s (${Math.round(left() / 1000)} s): ${m.url}/`);
      await sleep(left(), o.signal);
    }
    if (aborted()) throw new AppError('DEMO_STOPPED', 'The demo was stopped (Ctrl-C); everything it started is removed');
    const vms = (await m.store.list<{ id: string; siteId: string }>('vms')).map((d) => d.value);
    const moved = vms.filter((v) => v.siteId !== FAR).map((v) => v.id);
    const b = before?.updateMs?.p50 ?? null;
    const a = after?.updateMs?.p50 ?? null;
    const summary: LiveDemoSummary = {
      moved, leftAlone: vms.filter((v) => v.siteId === FAR).map((v) => v.id),
      frameTimeBeforeMs: b === null ? null : Math.round(b * 10) / 10,
      frameTimeAfterMs: a === null ? null : Math.round(a * 10) / 10,
      refreshRateGainPct: before !== null && after !== null && before.updatesPerS > 0 ? Math.round((1000 * (after.updatesPerS - before.updatesPerS)) / before.updatesPerS) / 10 : null,
      migrationS: job?.outcome === null || job?.outcome === undefined ? null : Math.round(job.outcome.durationMs / 100) / 10,
      updatesPerSBefore: before === null ? null : Math.round(before.updatesPerS * 10) / 10,
      updatesPerSAfter: after === null ? null : Math.round(after.updatesPerS * 10) / 10,
      downtimeMs: job?.outcome?.downtimeMs ?? null,
      rttSavedMs: linkRtt(NEAR, FAR),
      sessionDropped: session.viewer.closedReason !== null,
      dashboard: `${m.url}/`,
    };
    return summary;
  } catch (e) {
    if (o.signal?.aborted === true) throw new AppError('DEMO_STOPPED', 'The demo was stopped (Ctrl-C); everything it started is removed', { cause: e });
    throw e;
  } finally {
    await cleanup();
  }
}

