// Accuracy of the engine, and of a ports-only rule as the floor, on labelled captures.
//
// Flows come from a function the caller passes (committed fixtures in the tests; the project's own
// collector fed by softflowd in the lead's run), so this module stays pure. Every capture is one
// window: all of its records for the VM.

import type { FlowRecord } from '../telemetry/flow.js';
import { classify } from './classify.js';
import { extractFeatures } from './features.js';
import { splitCaptures, type SplitSide } from './split.js';
import {
  ACTIVITY_CLASSES, DEFAULT_SIGNATURES, SENSITIVE_CLASSES, type ActivityClass, type Signatures,
} from './signatures.js';

export interface LabelledCapture {
  readonly file: string;
  readonly vmIp: string;
  readonly activity: ActivityClass;
  readonly sensitive: boolean;
}

export interface Prediction {
  readonly activity: ActivityClass;
  readonly sensitive: boolean;
  readonly score: number;
  readonly reasons: readonly string[];
}

export interface EvaluationRow {
  readonly file: string;
  readonly vmIp: string;
  readonly side: SplitSide;
  readonly expected: { readonly activity: ActivityClass; readonly sensitive: boolean };
  readonly engine: Prediction;
  readonly portsOnly: Prediction;
  readonly records: number;
}

export interface Scores {
  readonly captures: number;
  /** Mean of the recall on sensitive and on insensitive captures. */
  readonly balancedAccuracy: number;
  readonly activityAccuracy: number;
  readonly truePositives: number;
  readonly trueNegatives: number;
  readonly falsePositives: number;
  readonly falseNegatives: number;
  /** confusion[expected][predicted] = captures. */
  readonly confusion: Record<ActivityClass, Record<ActivityClass, number>>;
}

export interface Evaluation {
  readonly rows: readonly EvaluationRow[];
  readonly heldOut: { readonly engine: Scores; readonly portsOnly: Scores };
  readonly tune: { readonly engine: Scores; readonly portsOnly: Scores };
  readonly all: { readonly engine: Scores; readonly portsOnly: Scores };
}

export interface EvaluateOptions {
  readonly signatures?: Signatures;
  /** Which side each file is on; defaults to the fixed split of split.ts. */
  readonly sideOf?: (file: string) => SplitSide;
}

/**
 * The floor: each of the VM's conversations whose service port is in the prior table votes for the
 * port's class with its bytes; the class with most bytes wins; no known port at all → background.
 */
export function portsOnly(flows: readonly FlowRecord[], vmIp: string, sig: Signatures = DEFAULT_SIGNATURES): Prediction {
  const f = extractFeatures(flows, vmIp, { params: sig });
  const votes = new Map<ActivityClass, number>();
  for (const c of f.conversations) {
    if (c.portPrior === undefined) continue;
    votes.set(c.portPrior.activity, (votes.get(c.portPrior.activity) ?? 0) + c.bytesIn + c.bytesOut);
  }
  let activity: ActivityClass = 'background';
  let best = 0;
  for (const k of ACTIVITY_CLASSES) {
    const v = votes.get(k) ?? 0;
    if (v > best) { best = v; activity = k; }
  }
  const sensitive = SENSITIVE_CLASSES.has(activity);
  const reasons = best > 0
    ? [`ports only: ${activity} carries the most bytes on well-known ports (${best} B)`]
    : ['ports only: no well-known port, background by default'];
  return { activity, sensitive, score: sensitive ? 1 : 0, reasons };
}

export function evaluate(
  captures: readonly LabelledCapture[],
  flowsFor: (file: string) => readonly FlowRecord[],
  opts: EvaluateOptions = {},
): Evaluation {
  const sig = opts.signatures ?? DEFAULT_SIGNATURES;
  const split = splitCaptures(captures);
  const sideOf = opts.sideOf ?? ((file: string): SplitSide => split.get(file) ?? 'held-out');
  const rows: EvaluationRow[] = captures.map((c) => {
    const flows = flowsFor(c.file);
    const v = classify(flows, c.vmIp, { signatures: sig });
    return {
      file: c.file, vmIp: c.vmIp, side: sideOf(c.file),
      expected: { activity: c.activity, sensitive: c.sensitive },
      engine: { activity: v.activity, sensitive: v.sensitive, score: v.score, reasons: v.reasons },
      portsOnly: portsOnly(flows, c.vmIp, sig),
      records: v.features.records,
    };
  });
  const on = (rs: readonly EvaluationRow[]) => ({
    engine: scoresOf(rs, (r) => r.engine),
    portsOnly: scoresOf(rs, (r) => r.portsOnly),
  });
  return {
    rows,
    heldOut: on(rows.filter((r) => r.side === 'held-out')),
    tune: on(rows.filter((r) => r.side === 'tune')),
    all: on(rows),
  };
}

export function scoresOf(rows: readonly EvaluationRow[], pick: (r: EvaluationRow) => Prediction): Scores {
  let tp = 0, tn = 0, fp = 0, fn = 0, activityHits = 0;
  const confusion = Object.fromEntries(ACTIVITY_CLASSES.map((k) =>
    [k, Object.fromEntries(ACTIVITY_CLASSES.map((j) => [j, 0]))])) as Record<ActivityClass, Record<ActivityClass, number>>;
  for (const r of rows) {
    const p = pick(r);
    if (r.expected.sensitive) { if (p.sensitive) tp++; else fn++; } else if (p.sensitive) fp++; else tn++;
    if (p.activity === r.expected.activity) activityHits++;
    confusion[r.expected.activity][p.activity]++;
  }
  const recalls: number[] = [];
  if (tp + fn > 0) recalls.push(tp / (tp + fn));
  if (tn + fp > 0) recalls.push(tn / (tn + fp));
  return {
    captures: rows.length,
    balancedAccuracy: recalls.length > 0 ? recalls.reduce((a, b) => a + b, 0) / recalls.length : 0,
    activityAccuracy: rows.length > 0 ? activityHits / rows.length : 0,
    truePositives: tp, trueNegatives: tn, falsePositives: fp, falseNegatives: fn,
    confusion,
  };
}

/** A plain-text report: headline (held-out), beside it tune and all, then the per-capture table. */
export function formatEvaluation(e: Evaluation): string {
  const pct = (x: number): string => x.toFixed(2);
  const line = (name: string, s: { engine: Scores; portsOnly: Scores }): string =>
    `${name.padEnd(9)} n=${String(s.engine.captures).padStart(2)}  engine: balanced ${pct(s.engine.balancedAccuracy)}, activity ${pct(s.engine.activityAccuracy)}`
    + `  |  ports-only: balanced ${pct(s.portsOnly.balancedAccuracy)}, activity ${pct(s.portsOnly.activityAccuracy)}`;
  const out = [
    line('held-out', e.heldOut), line('tune', e.tune), line('all', e.all), '',
    `${'capture'.padEnd(30)} ${'side'.padEnd(8)} ${'expected'.padEnd(20)} ${'engine'.padEnd(27)} ports-only`,
  ];
  const mark = (ok: boolean): string => (ok ? ' ' : '✗');
  for (const r of e.rows) {
    const exp = `${r.expected.activity}${r.expected.sensitive ? '*' : ''}`;
    const eng = `${r.engine.activity}${r.engine.sensitive ? '*' : ''} ${r.engine.score.toFixed(2)}`;
    const po = `${r.portsOnly.activity}${r.portsOnly.sensitive ? '*' : ''}`;
    out.push(
      `${r.file.padEnd(30)} ${r.side.padEnd(8)} ${exp.padEnd(20)} `
      + `${mark(r.engine.sensitive === r.expected.sensitive)}${mark(r.engine.activity === r.expected.activity)}${eng.padEnd(25)} `
      + `${mark(r.portsOnly.sensitive === r.expected.sensitive)}${mark(r.portsOnly.activity === r.expected.activity)}${po}`,
    );
  }
  out.push('', '* = sensitive; ✗ in the first column: wrong sensitive verdict, second: wrong activity');
  return out.join('\n');
}
