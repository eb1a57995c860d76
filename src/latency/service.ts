// The manager's latency component: each round it probes every user endpoint from every site, keeps a
// smoothed estimate per (endpoint, site) with estimate.ts, and answers for each user and site with the
// best it knows — a fresh probe, else a configured RTT, else the GeoIP country estimate from the real
// data, else a stale probe; nothing at all when none exists (the planner then rejects as rtt-unknown).
//
// A change of network is picked up within ONE round: estimate.ts restarts an estimate after `shiftAfter`
// samples in a row on one side of its band, so each pair is probed `probesPerPair` (> shiftAfter) times a
// round, and every sample is fed in but those far slower than the round's fastest (an ARP wait, a
// retransmitted SYN, a stalled event loop). When any site sees the shift, or the user's endpoint changed, the
// row says networkChanged and every site's estimate for that endpoint restarts from this round's samples.
import net from 'node:net';
import type { Clock } from '../core/clock.js';
import { AppError, InputError } from '../core/errors.js';
import type { SiteId, UserId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { RttSource, UserSiteRtt } from '../store/records.js';
import { DEFAULT_RTT_PARAMS, estimateRtt, observeRtt, type RttEstimatorParams, type RttState } from './estimate.js';
import type { GeoSite } from './geo.js';
import type { SiteProber } from './site-prober.js';

export interface LatencySite extends GeoSite {
  readonly id: SiteId;
}

/** What the service needs of geo.ts (createGeo()); null in the options: no GeoIP fallback. */
export interface LatencyGeo {
  countryOf(ip: string): string | null;
  /** Throws when the data has no estimate (the service then leaves the site out). */
  geoRttMs(country: string, site: GeoSite): number;
}

export interface LatencyServiceParams {
  readonly estimator: RttEstimatorParams;
  /**
   * Probes per (endpoint, site) per round, back to back; at least estimator.shiftAfter so a shift shows in one
   * round. The default is one more, so that a change is still seen in a round one of whose samples was dropped.
   */
  readonly probesPerPair: number;
  /**
   * A sample more than this share above the fastest of its pair's round (plus 2 ms) is dropped: a SYN that
   * waited on ARP (the lab's first contact costs a second round trip), a retransmission or a stalled event
   * loop measures the prober, not the path. Infinity keeps every sample.
   */
  readonly roundOutlierShare: number;
  /** Per probe. Linux retransmits an unanswered SYN after 1 s: a longer probe would time a retransmission. */
  readonly probeTimeoutMs: number;
  /** (endpoint, site) pairs probed at once. */
  readonly concurrency: number;
  /** TCP port probed when the endpoint names none: 9 (discard); a closed port answers with an RST, which counts. */
  readonly defaultPort: number;
  /** An endpoint (and a user) not in this many consecutive rounds is forgotten. */
  readonly forgetAfterRounds: number;
}

export const DEFAULT_LATENCY_PARAMS: LatencyServiceParams = Object.freeze({
  estimator: DEFAULT_RTT_PARAMS,
  probesPerPair: DEFAULT_RTT_PARAMS.shiftAfter + 1,
  roundOutlierShare: 0.5,
  probeTimeoutMs: 1000,
  concurrency: 16,
  defaultPort: 9,
  forgetAfterRounds: 10,
});

export interface LatencyEndpoint {
  readonly userId: UserId;
  /** The IP address the user's sessions come from. */
  readonly endpoint: string;
  /** TCP port to probe (default params.defaultPort). */
  readonly port?: number;
  /** ISO 3166 alpha-2 from configuration; else the GeoIP database is asked. */
  readonly country?: string;
  /** RTTs configured by the operator, per site id: used where no fresh probe exists (source 'config'). */
  readonly configuredRttMs?: Readonly<Record<string, number>>;
}

export interface LatencyRow {
  readonly userId: UserId;
  readonly endpoint: string;
  readonly country: string | null;
  /** Where `country` came from. */
  readonly countrySource: 'config' | 'geoip' | null;
  /** Per site id; a site is absent when nothing is known. */
  readonly rtt: Readonly<Record<string, UserSiteRtt>>;
  /** The user's network changed this round (a level shift, or a new endpoint): relabel it. */
  readonly networkChanged: boolean;
  /** Sites whose estimate shifted level this round. */
  readonly shiftedSites: readonly SiteId[];
  /** Sites whose probes all failed this round, with the last error. */
  readonly probeErrors: Readonly<Record<string, string>>;
}

export interface LatencyRound {
  readonly seq: number;
  readonly atMs: number;
  readonly durationMs: number;
  readonly rows: readonly LatencyRow[];
  /** Distinct endpoints probed, (endpoint, site) pairs, probes sent and failed. */
  readonly endpoints: number;
  readonly pairs: number;
  readonly probesSent: number;
  readonly probesFailed: number;
  /** Answers dropped as far slower than their pair's fastest this round (see roundOutlierShare). */
  readonly samplesDropped: number;
}

export interface LatencyService {
  probeRound(endpoints: readonly LatencyEndpoint[]): Promise<LatencyRound>;
  /** Endpoints with state kept (bounded by forgetAfterRounds). */
  trackedEndpoints(): number;
  /** Closes the probers it opened. */
  close(): Promise<void>;
}

export interface LatencyServiceOptions {
  readonly sites: readonly LatencySite[];
  /** Called once per site, on its first probe; the service closes what it returns. */
  readonly probeFrom: (siteId: SiteId) => SiteProber;
  readonly geo: LatencyGeo | null;
  readonly clock: Clock;
  readonly log: Logger;
  readonly params?: Partial<LatencyServiceParams>;
}

interface EndpointState {
  readonly sites: Map<SiteId, RttState>;
  geoCountry: string | null | undefined;
  lastSeenRound: number;
}

interface PairOutcome {
  readonly samples: readonly { readonly rttMs: number; readonly atMs: number }[];
  readonly error: string | null;
  readonly sent: number;
  readonly dropped: number;
}

const OUTLIER_SLACK_MS = 2;

function checkParams(p: LatencyServiceParams): LatencyServiceParams {
  const whole = (v: number, field: string, min: number, max: number): void => {
    if (!Number.isInteger(v) || v < min || v > max) throw new InputError(`params.${field}`, v, `must be a whole number from ${min} to ${max}`);
  };
  whole(p.probesPerPair, 'probesPerPair', p.estimator.shiftAfter, 20);
  whole(p.probeTimeoutMs, 'probeTimeoutMs', 1, 60_000);
  if (!(p.roundOutlierShare >= 0)) throw new InputError('params.roundOutlierShare', p.roundOutlierShare, 'must be a number ≥ 0 (Infinity: keep every sample)');
  whole(p.concurrency, 'concurrency', 1, 4096);
  whole(p.defaultPort, 'defaultPort', 1, 65_535);
  whole(p.forgetAfterRounds, 'forgetAfterRounds', 1, 1_000_000);
  return p;
}

const fold = (samples: PairOutcome['samples'], from: RttState | null, p: RttEstimatorParams): RttState | null =>
  samples.reduce<RttState | null>((s, x) => observeRtt(s, x.rttMs, x.atMs, p), from);

export function createLatencyService(opts: LatencyServiceOptions): LatencyService {
  const params = checkParams({ ...DEFAULT_LATENCY_PARAMS, ...opts.params });
  const est = params.estimator;
  const log = opts.log.child({ component: 'latency' });
  const sites = [...opts.sites];
  if (new Set(sites.map((s) => s.id)).size !== sites.length) throw new InputError('sites', sites.map((s) => s.id), 'must not name a site twice');
  const endpoints = new Map<string, EndpointState>();
  const users = new Map<UserId, { endpoint: string; lastSeenRound: number }>();
  const probers = new Map<SiteId, SiteProber>();
  let seq = 0;
  let running = false;
  let closed = false;

  // A site whose prober cannot be opened is tried again next round, not on every pair of this one.
  const proberErrors = new Map<SiteId, { round: number; error: Error }>();
  const proberOf = (site: SiteId): SiteProber | Error => {
    const open = probers.get(site);
    if (open !== undefined) return open;
    const failed = proberErrors.get(site);
    if (failed !== undefined && failed.round === seq) return failed.error;
    try {
      const p = opts.probeFrom(site);
      probers.set(site, p);
      proberErrors.delete(site);
      return p;
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      proberErrors.set(site, { round: seq, error });
      log.warn('cannot open a prober for the site', { site, error: error.message });
      return error;
    }
  };

  /** One probe, bounded in time even if a prober never answers. */
  const probeOnce = async (prober: SiteProber, host: string, port: number): Promise<number> => {
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AppError('PROBE_TIMEOUT', `RTT probe to ${host}:${port}: the prober gave no answer within ${params.probeTimeoutMs + 1000} ms`, { retryable: true })), params.probeTimeoutMs + 1000);
    });
    try {
      const r = await Promise.race([prober.probe(host, port, params.probeTimeoutMs), guard]);
      if (!(Number.isFinite(r.rttMs) && r.rttMs >= 0)) throw new AppError('PROBE_FAILED', `RTT probe to ${host}:${port} returned ${r.rttMs} ms`);
      return r.rttMs;
    } finally {
      clearTimeout(timer);
    }
  };

  const probePair = async (site: SiteId, host: string, port: number): Promise<PairOutcome> => {
    const prober = proberOf(site);
    if (prober instanceof Error) return { samples: [], error: `no prober at site ${site}: ${prober.message}`, sent: 0, dropped: 0 };
    const samples: { rttMs: number; atMs: number }[] = [];
    let error: string | null = null;
    let sent = 0;
    for (let i = 0; i < params.probesPerPair; i++) {
      sent++;
      try {
        const rttMs = await probeOnce(prober, host, port);
        samples.push({ rttMs, atMs: opts.clock.nowMs() });
      } catch (e) {
        // Not again this round: a dead endpoint then costs one timeout per site, not probesPerPair of them.
        error = (e as Error).message;
        break;
      }
    }
    const floorMs = Math.min(...samples.map((x) => x.rttMs)) * (1 + params.roundOutlierShare) + OUTLIER_SLACK_MS;
    const kept = samples.filter((x) => x.rttMs <= floorMs);
    return { samples: kept, dropped: samples.length - kept.length, error: samples.length === 0 ? error : null, sent };
  };

  /** Runs `tasks` with at most `limit` at once. */
  const pool = async <T>(tasks: readonly (() => Promise<T>)[], limit: number): Promise<T[]> => {
    const results = new Array<T>(tasks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]!();
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
    return results;
  };

  const validate = (list: readonly LatencyEndpoint[]): void => {
    list.forEach((e, i) => {
      const f = `endpoints[${i}]`;
      if (typeof e.userId !== 'string' || e.userId === '') throw new InputError(`${f}.userId`, e.userId, 'must be a user id');
      if (typeof e.endpoint !== 'string' || e.endpoint.trim() === '') throw new InputError(`${f}.endpoint`, e.endpoint, 'must be an address');
      if (e.port !== undefined && (!Number.isInteger(e.port) || e.port < 1 || e.port > 65_535)) throw new InputError(`${f}.port`, e.port, 'must be a whole number from 1 to 65535');
      if (e.country !== undefined && !/^[A-Za-z]{2}$/.test(e.country)) throw new InputError(`${f}.country`, e.country, 'must be an ISO 3166 alpha-2 country code');
      for (const [s, v] of Object.entries(e.configuredRttMs ?? {})) {
        if (!(Number.isFinite(v) && v >= 0)) throw new InputError(`${f}.configuredRttMs.${s}`, v, 'must be an RTT in ms (a finite number ≥ 0)');
      }
    });
  };

  const probeRound = async (list: readonly LatencyEndpoint[]): Promise<LatencyRound> => {
    if (closed) throw new AppError('LATENCY_CLOSED', 'Cannot run a probe round: the latency service is closed');
    if (running) throw new AppError('LATENCY_ROUND_RUNNING', `Cannot start probe round ${seq + 1}: round ${seq} is still probing`, { retryable: true });
    validate(list);
    running = true;
    try {
      const round = ++seq;
      const atMs = opts.clock.nowMs();

      // One state per distinct endpoint: users behind one address (NAT) share its paths.
      const ports = new Map<string, number>();
      for (const e of list) {
        const ep = e.endpoint.trim();
        if (!ports.has(ep)) ports.set(ep, e.port ?? params.defaultPort);
        let st = endpoints.get(ep);
        if (st === undefined) endpoints.set(ep, st = { sites: new Map(), geoCountry: undefined, lastSeenRound: round });
        st.lastSeenRound = round;
      }
      const probeable = [...ports].filter(([ep]) => net.isIP(ep) !== 0);
      const pairs = probeable.flatMap(([ep, port]) => sites.map((s) => ({ ep, port, site: s.id })));
      const outcomes = await pool(pairs.map((p) => () => probePair(p.site, p.ep, p.port)), params.concurrency);

      // Feed the samples; note which pairs shifted level.
      const shifted = new Map<string, SiteId[]>();
      const byEndpoint = new Map<string, Map<SiteId, PairOutcome>>();
      let probesSent = 0;
      let probesFailed = 0;
      let samplesDropped = 0;
      pairs.forEach((p, i) => {
        const o = outcomes[i]!;
        probesSent += o.sent;
        probesFailed += o.sent - o.samples.length - o.dropped;
        samplesDropped += o.dropped;
        const st = endpoints.get(p.ep)!;
        let m = byEndpoint.get(p.ep);
        if (m === undefined) byEndpoint.set(p.ep, m = new Map<SiteId, PairOutcome>());
        m.set(p.site, o);
        if (o.samples.length === 0) return;
        const before = st.sites.get(p.site) ?? null;
        const after = fold(o.samples, before, est)!;
        st.sites.set(p.site, after);
        if (before !== null && after.shifts > before.shifts) shifted.set(p.ep, [...(shifted.get(p.ep) ?? []), p.site]);
      });
      // A new network changes every path: restart every site's estimate from this round's samples, and drop
      // those with none (the old network's RTT is no estimate of the new one's).
      for (const [ep, list] of shifted) {
        const st = endpoints.get(ep)!;
        for (const s of sites) {
          if (list.includes(s.id)) continue;
          const o = byEndpoint.get(ep)?.get(s.id);
          const fresh = o === undefined ? null : fold(o.samples, null, est);
          if (fresh === null) st.sites.delete(s.id);
          else st.sites.set(s.id, { ...fresh, shifts: (st.sites.get(s.id)?.shifts ?? 0) + 1 });
        }
      }

      const nowMs = opts.clock.nowMs();
      const rows = list.map((e): LatencyRow => {
        const ep = e.endpoint.trim();
        const st = endpoints.get(ep)!;
        const prev = users.get(e.userId);
        const endpointChanged = prev !== undefined && prev.endpoint !== ep;
        users.set(e.userId, { endpoint: ep, lastSeenRound: round });
        let country: string | null = null;
        let countrySource: LatencyRow['countrySource'] = null;
        if (e.country !== undefined) {
          country = e.country.toUpperCase();
          countrySource = 'config';
        } else if (opts.geo !== null) {
          if (st.geoCountry === undefined) st.geoCountry = opts.geo.countryOf(ep);
          country = st.geoCountry;
          countrySource = country === null ? null : 'geoip';
        }
        const rtt: Record<string, UserSiteRtt> = {};
        const probeErrors: Record<string, string> = {};
        for (const s of sites) {
          const o = byEndpoint.get(ep)?.get(s.id);
          if (o?.error !== undefined && o.error !== null) probeErrors[s.id] = o.error;
          else if (!net.isIP(ep)) probeErrors[s.id] = `${ep} is not an IP address: not probed`;
          const state = st.sites.get(s.id);
          const estimate = state === undefined ? null : estimateRtt(state, nowMs, est);
          const pick = (rttMs: number, source: RttSource, at: number, stale: boolean): void => {
            rtt[s.id] = { rttMs: Math.round(rttMs * 100) / 100, source, atMs: at, stale };
          };
          if (estimate !== null && !estimate.stale) {
            pick(estimate.rttMs, 'probe', state!.lastAtMs, false);
            continue;
          }
          const configured = e.configuredRttMs?.[s.id];
          if (configured !== undefined) {
            pick(configured, 'config', nowMs, false);
            continue;
          }
          if (country !== null && opts.geo !== null) {
            try {
              pick(opts.geo.geoRttMs(country, s), 'geoip', nowMs, false);
              continue;
            } catch (err) {
              log.debug('no GeoIP estimate', { user: e.userId, country, site: s.id, error: (err as Error).message });
            }
          }
          if (estimate !== null) pick(estimate.rttMs, 'probe', state!.lastAtMs, true);
        }
        const shiftedSites = shifted.get(ep) ?? [];
        const networkChanged = endpointChanged || shiftedSites.length > 0;
        if (networkChanged) {
          log.info('user changed network', { user: e.userId, endpoint: ep, ...(endpointChanged ? { previousEndpoint: prev.endpoint } : {}), shiftedSites });
        }
        return { userId: e.userId, endpoint: ep, country, countrySource, rtt, networkChanged, shiftedSites, probeErrors };
      });

      // Bounded memory: forget what has not been seen for forgetAfterRounds rounds.
      for (const [ep, st] of endpoints) if (round - st.lastSeenRound >= params.forgetAfterRounds) endpoints.delete(ep);
      for (const [u, v] of users) if (round - v.lastSeenRound >= params.forgetAfterRounds) users.delete(u);

      if (probesFailed > 0) log.warn('probes failed', { round, probesSent, probesFailed });
      return {
        seq: round, atMs, durationMs: opts.clock.nowMs() - atMs, rows,
        endpoints: probeable.length, pairs: pairs.length, probesSent, probesFailed, samplesDropped,
      };
    } finally {
      running = false;
    }
  };

  return {
    probeRound,
    trackedEndpoints: () => endpoints.size,
    async close() {
      closed = true;
      const open = [...probers.values()];
      probers.clear();
      await Promise.all(open.map((p) => p.close().catch((e: unknown) => log.warn('closing a prober failed', { error: (e as Error).message }))));
    },
  };
}
