import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { AppError } from '../core/errors.js';

/** The real latency tables the generators build clouds from (see data/LATENCY-README.md). */
export interface LatencyData {
  /** AWS region → AWS region RTT in ms (row = from). The diagonal is the intra-region RTT. */
  readonly regionRttMs: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** Country pair ("DE|FR", both orders) → RIPE Atlas mean RTT in ms. */
  readonly countryRttMs: ReadonlyMap<string, number>;
}

export function parseRegionCsv(text: string, source: string): Map<string, Map<string, number>> {
  const lines = text.trim().split(/\r?\n/);
  const head = lines[0]?.split(',') ?? [];
  if (head[0] !== 'from' || head.length < 2) throw new AppError('DATA_INVALID', `${source}: header must start with "from,<region>…", got "${lines[0] ?? ''}"`);
  const cols = head.slice(1);
  const m = new Map<string, Map<string, number>>();
  lines.slice(1).forEach((line, i) => {
    const cells = line.split(',');
    const row = new Map<string, number>();
    cols.forEach((c, j) => {
      const v = Number(cells[j + 1]);
      if (!Number.isFinite(v) || v < 0) throw new AppError('DATA_INVALID', `${source}: line ${i + 2}, column ${c}: "${cells[j + 1] ?? ''}" is not an RTT in ms`);
      row.set(c, v);
    });
    m.set(cells[0]!, row);
  });
  return m;
}

export function parseCountryCsv(text: string, source: string): Map<string, number> {
  const m = new Map<string, number>();
  const lines = text.trim().split(/\r?\n/);
  if (!lines[0]?.startsWith('cty1,cty2,rtt_cnt,rtt_avg')) throw new AppError('DATA_INVALID', `${source}: unexpected header "${lines[0] ?? ''}"`);
  for (let i = 1; i < lines.length; i++) {
    const [a, b, , avg] = lines[i]!.split(',');
    const v = Number(avg);
    if (a === undefined || b === undefined || !Number.isFinite(v)) continue; // "None" rows carry no country
    m.set(`${a}|${b}`, v);
    m.set(`${b}|${a}`, v);
  }
  return m;
}

/** Reads the two tables from `dir` (the repository's data/ folder by default). */
export function loadLatencyData(dir: string): LatencyData {
  const read = (name: string): Buffer => {
    try {
      return readFileSync(join(dir, name));
    } catch (e) {
      throw new AppError('DATA_MISSING', `Cannot read latency data ${join(dir, name)}: ${(e as Error).message}`, { cause: e });
    }
  };
  return {
    regionRttMs: parseRegionCsv(read('aws_region_rtt_ms.csv').toString('utf8'), 'aws_region_rtt_ms.csv'),
    countryRttMs: parseCountryCsv(gunzipSync(read('country_rtt_stat.csv.gz')).toString('utf8'), 'country_rtt_stat.csv.gz'),
  };
}
