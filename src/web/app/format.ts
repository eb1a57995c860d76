// PURE: what the dashboard computes from records before drawing them — RTT classes, the share-weighted RTT
// of a VM's users from each site, percentages, durations, sparkline geometry. No DOM here, so node:test and
// fast-check run it directly; the browser loads the same compiled file.
import type { SiteRecord, UserRecord, VmRecord } from '../../store/records.js';

/** RTT bands of the map and the VM table: green below 40 ms, amber below 100 ms, red from 100 ms. */
export const RTT_GOOD_MS = 40;
export const RTT_FAIR_MS = 100;

export type RttClass = 'good' | 'fair' | 'poor' | 'unknown';

export function rttClass(rttMs: number | null | undefined): RttClass {
  if (typeof rttMs !== 'number' || !Number.isFinite(rttMs) || rttMs < 0) return 'unknown';
  if (rttMs < RTT_GOOD_MS) return 'good';
  if (rttMs < RTT_FAIR_MS) return 'fair';
  return 'poor';
}

export function fmtMs(ms: number | null | undefined): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(0)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  // Below 100 ms a tenth is kept (cut, not rounded) where there is one, so 99.96 ms never shows as the red band's "100 ms".
  if (ms >= 10) {
    const tenths = Math.floor(ms * 10) / 10;
    return `${Number.isInteger(tenths) ? tenths : tenths.toFixed(1)} ms`;
  }
  return `${ms.toFixed(1)} ms`;
}

const MIB = 1024 * 1024;

/** Bytes as MiB (the unit the VM shapes use); GiB from 10 GiB on. */
export function fmtMiB(bytes: number): string {
  if (!Number.isFinite(bytes)) return '—';
  const mib = bytes / MIB;
  if (mib >= 10 * 1024) return `${(mib / 1024).toFixed(1)} GiB`;
  return mib >= 100 ? `${Math.round(mib)} MiB` : `${mib.toFixed(1)} MiB`;
}

/** Seconds as "45 s", "3 min 20 s", "1 h 05 min"; '—' while unknown. */
export function fmtDuration(s: number | null | undefined): string {
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) return '—';
  const t = Math.round(s);
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${String(t % 60).padStart(2, '0')} s`;
  return `${Math.floor(t / 3600)} h ${String(Math.floor((t % 3600) / 60)).padStart(2, '0')} min`;
}

/** How long ago, coarse: "just now", "12 s ago", "4 min ago", "2 h ago", "3 d ago"; future times say "in …". */
export function fmtAgo(atMs: number, nowMs: number): string {
  if (!Number.isFinite(atMs) || !Number.isFinite(nowMs)) return '—';
  const d = Math.round((nowMs - atMs) / 1000);
  const a = Math.abs(d);
  let s: string;
  if (a < 2) return 'just now';
  else if (a < 60) s = `${a} s`;
  else if (a < 3600) s = `${Math.floor(a / 60)} min`;
  else if (a < 86_400) s = `${Math.floor(a / 3600)} h`;
  else s = `${Math.floor(a / 86_400)} d`;
  return d >= 0 ? `${s} ago` : `in ${s}`;
}

/** Clock time of day in the viewer's time zone, for the audit trail ("14:03:27"). */
export function fmtClock(atMs: number): string {
  if (!Number.isFinite(atMs)) return '—';
  const d = new Date(atMs);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** Percent of a migration from a progress snapshot, computed as the API's migrationView does. */
export function progressPercent(totalBytes: number, remainingBytes: number): number {
  if (!(totalBytes > 0) || !Number.isFinite(remainingBytes)) return 0;
  const p = Math.round((1 - Math.max(0, remainingBytes) / totalBytes) * 1000) / 10;
  return Math.min(100, Math.max(0, p));
}

export interface SiteRtt {
  readonly siteId: string;
  readonly rttMs: number;
}

/**
 * Share-weighted RTT of a VM's users from one site: null if the VM has no users or any of them has no RTT
 * to that site (a partial mean would flatter the site). Shares are renormalised over the VM's users.
 */
export function usersRttFrom(vm: Pick<VmRecord, 'users'>, users: Readonly<Record<string, UserRecord>>, siteId: string): number | null {
  let weight = 0;
  let sum = 0;
  for (const u of vm.users) {
    const rec = users[u.userId];
    const rtt = rec?.rtt[siteId];
    if (rtt === undefined || !Number.isFinite(rtt.rttMs)) return null;
    const w = Number.isFinite(u.share) && u.share > 0 ? u.share : 0;
    weight += w;
    sum += w * rtt.rttMs;
  }
  if (vm.users.length === 0) return null;
  if (weight === 0) {
    // Shares all zero: an unweighted mean is the honest reading.
    let s = 0;
    for (const u of vm.users) s += users[u.userId]!.rtt[siteId]!.rttMs;
    return s / vm.users.length;
  }
  return sum / weight;
}

export interface VmRttView {
  /** From the site it runs at now. */
  readonly nowMs: number | null;
  /** The site with the lowest share-weighted RTT, if any is known. */
  readonly best: SiteRtt | null;
}

export function vmRttView(
  vm: Pick<VmRecord, 'users' | 'siteId'>,
  users: Readonly<Record<string, UserRecord>>,
  sites: readonly Pick<SiteRecord, 'id'>[],
): VmRttView {
  const nowMs = usersRttFrom(vm, users, vm.siteId);
  let best: SiteRtt | null = null;
  for (const s of sites) {
    const r = usersRttFrom(vm, users, s.id);
    // Ties keep the current site (moving gains nothing), then the first listed.
    if (r !== null && (best === null || r < best.rttMs || (r === best.rttMs && s.id === vm.siteId))) {
      best = { siteId: s.id, rttMs: r };
    }
  }
  return { nowMs, best };
}

/**
 * SVG polyline points for a sparkline of values in [0, 1] (oldest first), inside a w×h box with 1 px of
 * padding; values outside [0, 1] are clamped. One value draws a flat line.
 */
export function sparklinePoints(values: readonly number[], w: number, h: number): string {
  const vs = values.filter((v) => Number.isFinite(v)).map((v) => Math.min(1, Math.max(0, v)));
  if (vs.length === 0) return '';
  const pad = 1;
  const ih = Math.max(0, h - 2 * pad);
  const iw = Math.max(0, w - 2 * pad);
  const y = (v: number): number => round2(pad + (1 - v) * ih);
  if (vs.length === 1) return `${pad},${y(vs[0]!)} ${pad + iw},${y(vs[0]!)}`;
  return vs.map((v, i) => `${round2(pad + (i * iw) / (vs.length - 1))},${y(v)}`).join(' ');
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

/** When the next round is due: the latest round's start plus the interval; null if none ran yet. */
export function nextRoundAtMs(latestStartedAtMs: number | null, roundIntervalS: number | null): number | null {
  if (latestStartedAtMs === null || roundIntervalS === null || !(roundIntervalS > 0)) return null;
  return latestStartedAtMs + roundIntervalS * 1000;
}

export interface MapFrame {
  readonly lon0: number;
  readonly lon1: number;
  readonly lat0: number;
  readonly lat1: number;
}

/**
 * The part of the world the map frames: every site and user with a margin, at least 100° × 50° (so a lab in
 * one country still shows its continent), within ±180° and 58°S..80°N; null with nothing to place.
 */
export function mapFrame(points: readonly (readonly [number, number])[]): MapFrame | null {
  const ok = points.filter(([lon, lat]) => Number.isFinite(lon) && Number.isFinite(lat) && Math.abs(lon) <= 180 && Math.abs(lat) <= 90);
  if (ok.length === 0) return null;
  const lons = ok.map((p) => p[0]);
  const lats = ok.map((p) => p[1]);
  const span = (lo: number, hi: number, margin: number, min: number, floor: number, ceil: number): [number, number] => {
    let a = lo - margin;
    let b = hi + margin;
    if (b - a < min) {
      const grow = (min - (b - a)) / 2;
      a -= grow;
      b += grow;
    }
    // Slide back inside the world before clipping, so the frame keeps its size near an edge.
    if (a < floor) [a, b] = [floor, b + (floor - a)];
    if (b > ceil) [a, b] = [a - (b - ceil), ceil];
    return [Math.max(floor, a), Math.min(ceil, b)];
  };
  const [lon0, lon1] = span(Math.min(...lons), Math.max(...lons), 20, 100, -180, 180);
  const [lat0, lat1] = span(Math.min(...lats), Math.max(...lats), 12, 50, -58, 80);
  return { lon0, lon1, lat0, lat1 };
}
