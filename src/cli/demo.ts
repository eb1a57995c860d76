import { createSnapshot } from '../core/model.js';
import { planMoves } from '../placement/greedy.js';
import { comparePolicies } from '../sim/compare.js';
import { generateScenario } from '../sim/generate.js';
import type { LatencyData } from '../sim/latency-data.js';
import { parseScenario } from '../sim/scenario.js';
import { fmtBytes, fmtNum, table } from './format.js';
import { progressBar } from './progress.js';
import { simulationReport } from './report.js';

const hhmm = (s: number): string => `${String(Math.floor(s / 3600)).padStart(2, '0')}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}`;

/**
 * The main job for now: a day in a multi-region desktop cloud built from real RTT data, run under three
 * policies, with one desktop's story told the way the research system tells it.
 */
export function runDemo(opts: {
  sites: number; vms: number; seed: number; data: LatencyData; out: (s: string) => void; err: NodeJS.WriteStream;
}): void {
  const raw = generateScenario(opts.data, { sites: opts.sites, vms: opts.vms, seed: opts.seed });
  const sc = parseScenario(raw);
  const say = (s = ''): void => opts.out(s + '\n');
  say(`VMShadow demo — a simulated day of a desktop cloud built from real latency data`);
  say(`(sites in AWS regions with measured inter-region RTTs; users in real countries, RIPE Atlas RTTs)`);
  say();
  const count = new Map<string, number>();
  for (const v of sc.cloud.vms) count.set(v.siteId, (count.get(v.siteId) ?? 0) + 1);
  say(table(['site', 'where', 'vCPU', 'memory', 'VMs'], sc.cloud.sites.map((s) => [s.id, `${s.name}, ${s.country}`, s.capacity.vcpu, fmtBytes(s.capacity.memoryMiB * 1024 * 1024), count.get(s.id) ?? 0])));
  say();

  const first = planMoves(createSnapshot({ ...sc.cloudInput, atMs: 0 }), sc.params);
  say(`First planning round (before anyone's activity changes): ${first.moves.length} moves, benefit ${fmtNum(first.totalBenefit)}`);
  for (const m of first.moves.slice(0, 5)) {
    say(`  move ${m.vm} ${m.from} → ${m.to}: its users save ${fmtNum(m.savingMs)} ms; ~${fmtNum(m.costS)} s to move ${fmtBytes(m.bytes)}${m.kind === 'make-room' ? ' (makes room)' : ''}`);
  }
  const reasons = new Map<string, string>();
  for (const r of first.rejected) if (!reasons.has(r.reason)) reasons.set(r.reason, `${r.vm}: ${r.detail}`);
  for (const [reason, ex] of reasons) say(`  left alone (${reason}), e.g. ${ex}`);
  say();

  let bar: ReturnType<typeof progressBar> | null = null;
  let current = '';
  const cmp = comparePolicies(sc, ['never', 'nearest', 'greedy'], {
    recordSeries: true,
    onProgress: (p, f) => {
      if (p !== current) {
        bar?.done();
        bar = progressBar(opts.err, p);
        current = p;
      }
      bar?.update(f);
    },
  });
  (bar as ReturnType<typeof progressBar> | null)?.done();
  say(simulationReport(cmp));
  say();

  // One desktop's day, as in the research system's example: text editing, then video, then a move.
  const greedy = cmp.policies.find((p) => p.policy === 'greedy')!;
  const story = greedy.log.find((l) => {
    if (l.outcome !== 'completed') return false;
    const before = sc.events.filter((e) => e.type === 'activity' && e.vm === l.vm && e.atS <= l.startS);
    const last = before[before.length - 1];
    return last?.type === 'activity' && last.activity === 'video' && before.some((e) => e.type === 'activity' && e.activity === 'text-editing');
  }) ?? greedy.log.find((l) => l.outcome === 'completed');
  if (story !== undefined) {
    const series = greedy.series?.[story.vm] ?? [];
    const roundOf = (s: number): number => Math.floor(s / sc.roundIntervalS);
    say(`One desktop's day (${story.vm}):`);
    for (const e of sc.events) {
      if (e.type === 'activity' && e.vm === story.vm && e.atS <= story.endS + 3600) say(`  ${hhmm(e.atS)}  user starts ${e.activity}`);
    }
    say(`  ${hhmm(story.startS)}  planner moves it ${story.from} → ${story.to}; migration took ${fmtNum(story.endS - story.startS)} s, ${fmtBytes(story.bytes)}, pause ${fmtNum(story.downtimeMs)} ms${story.postCopy ? ' (post-copy)' : ''}`);
    const before = series[Math.max(0, roundOf(story.startS))];
    const after = series[Math.min(series.length - 1, roundOf(story.endS) + 1)];
    if (before !== undefined && after !== undefined) say(`  its user's RTT: ${fmtNum(before)} ms before, ${fmtNum(after)} ms after`);
    say();
  }
  const never = cmp.policies.find((p) => p.policy === 'never')!;
  const nearest = cmp.policies.find((p) => p.policy === 'nearest')!;
  say(`Greedy cut the latency users feel from ${fmtNum(never.sensitiveUserRttMs)} ms to ${fmtNum(greedy.sensitiveUserRttMs)} ms ` +
    `with ${greedy.migrations.completed} migrations (${fmtBytes(greedy.bytesMoved)}); moving every sensitive desktop at once took ` +
    `${nearest.migrations.completed} migrations (${fmtBytes(nearest.bytesMoved)}) for ${fmtNum(nearest.sensitiveUserRttMs)} ms.`);
}
