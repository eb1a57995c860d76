import { InputError } from '../core/errors.js';
import { createRng, type Rng } from '../core/random.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { AWS_REGIONS, COUNTRY_CENTRES, type RegionInfo } from './geo.js';
import type { LatencyData } from './latency-data.js';
import { DEFAULT_ACTIVITIES, SCENARIO_SCHEMA, type SimActivity } from './scenario.js';

export interface GenerateOptions {
  readonly sites: number;
  readonly vms: number;
  readonly seed: number;
  /** Defaults to one user per VM. */
  readonly users?: number;
  readonly durationS?: number;
  readonly roundIntervalS?: number;
  /** Leave out the day's events (activity changes, travel, arrivals): for planner benchmarks. */
  readonly withEvents?: boolean;
}

// Modelling choices (not measurements): where the data has no number, these are the generator's.
/** WAN capacity between sites in different regions, and between zones of one region. */
const INTER_REGION_MBPS = 1000;
const INTRA_REGION_MBPS = 10_000;
/** Extra round trip on a mobile network compared with the user's fixed line. */
const MOBILE_EXTRA_MS = 25;
/** A fixed-line user's access RTT within their own country is the RIPE mean, clamped to this range. */
const ACCESS_MIN_MS = 2;
const ACCESS_MAX_MS = 30;

const GOLDEN_IMAGE_SHARE = 0.8;

interface SiteDraft {
  id: string;
  info: RegionInfo;
}

/** How activities follow one another on a desktop over a day. */
const NEXT_ACTIVITY: Readonly<Record<SimActivity, readonly (readonly [SimActivity, number])[]>> = {
  'text-editing': [['video', 3], ['idle', 3], ['conferencing', 2], ['bulk-download', 1], ['gaming', 1]],
  video: [['text-editing', 5], ['idle', 3], ['gaming', 1]],
  gaming: [['idle', 3], ['text-editing', 2], ['video', 1]],
  conferencing: [['text-editing', 5], ['idle', 2]],
  'bulk-download': [['text-editing', 3], ['idle', 3]],
  idle: [['text-editing', 5], ['video', 2], ['conferencing', 1], ['bulk-download', 1]],
};

const round1 = (x: number): number => Math.round(x * 10) / 10;

/** The RTT between two AWS regions: the mean of the two directions of the (slightly asymmetric) measured matrix. */
export function regionRttMs(data: LatencyData, a: string, b: string): number {
  const x = data.regionRttMs.get(a)?.get(b);
  const y = data.regionRttMs.get(b)?.get(a);
  return ((x ?? y ?? 0) + (y ?? x ?? 0)) / 2;
}

/**
 * A fixed-line user's access RTT from their country to the country a region stands in: the RIPE Atlas
 * country-pair mean; within one country the intra-country mean clamped to [2, 30] ms. Undefined when the
 * data has no such pair.
 */
export function accessRttMs(data: LatencyData, country: string, region: RegionInfo): number | undefined {
  if (country === region.country) {
    const intra = data.countryRttMs.get(`${country}|${country}`);
    return Math.min(ACCESS_MAX_MS, Math.max(ACCESS_MIN_MS, intra ?? ACCESS_MIN_MS));
  }
  return data.countryRttMs.get(`${country}|${region.country}`);
}

/**
 * A user's RTT to a site (ms, one decimal): access from their country to their home region, plus that
 * region's measured RTT to the site's region, plus `extraMs` (e.g. a mobile network). The generator and
 * the lab both place users this way.
 */
export function userSiteRttMs(data: LatencyData, country: string, home: RegionInfo, siteRegion: string, extraMs = 0): number {
  return round1((accessRttMs(data, country, home) ?? 0) + extraMs + regionRttMs(data, home.region, siteRegion));
}

/** Picks n regions spread over the world: farthest-first from a seeded start. */
function pickRegions(data: LatencyData, n: number, rng: Rng): RegionInfo[] {
  const regions = AWS_REGIONS.filter((r) => data.regionRttMs.has(r.region));
  if (n >= regions.length) return [...regions];
  const chosen: RegionInfo[] = [rng.pick(regions)];
  while (chosen.length < n) {
    let best: RegionInfo | null = null;
    let bestD = -1;
    for (const r of regions) {
      if (chosen.includes(r)) continue;
      const d = Math.min(...chosen.map((c) => data.regionRttMs.get(c.region)!.get(r.region)!)) + rng.next();
      if (d > bestD) {
        bestD = d;
        best = r;
      }
    }
    chosen.push(best!);
  }
  return chosen;
}

/**
 * Builds a scenario from the real latency data: sites in AWS regions with the measured inter-region
 * RTTs; users in real countries whose RTT to a site is the RIPE Atlas country-to-country RTT to the
 * nearest region's country, plus that region's measured RTT to the site. Deterministic for a seed.
 */
export function generateScenario(data: LatencyData, opts: GenerateOptions): Record<string, unknown> {
  if (!Number.isInteger(opts.sites) || opts.sites < 1 || opts.sites > 200) throw new InputError('--sites', opts.sites, 'must be a whole number from 1 to 200');
  if (!Number.isInteger(opts.vms) || opts.vms < 0 || opts.vms > 200_000) throw new InputError('--vms', opts.vms, 'must be a whole number from 0 to 200000');
  if (opts.users !== undefined && (!Number.isInteger(opts.users) || opts.users < 1 || opts.users > 200_000)) throw new InputError('--users', opts.users, 'must be a whole number from 1 to 200000');
  if (opts.durationS !== undefined && (!Number.isInteger(opts.durationS) || opts.durationS < 1 || opts.durationS > 7 * 86_400)) throw new InputError('--duration-s', opts.durationS, 'must be a whole number of seconds from 1 to 604800 (a week)');
  if (opts.roundIntervalS !== undefined && (!Number.isInteger(opts.roundIntervalS) || opts.roundIntervalS < 1 || opts.roundIntervalS > 86_400)) throw new InputError('--round-s', opts.roundIntervalS, 'must be a whole number of seconds from 1 to 86400');
  if (!Number.isInteger(opts.seed)) throw new InputError('--seed', opts.seed, 'must be a whole number');
  const rng = createRng(opts.seed);
  const durationS = opts.durationS ?? 86_400;
  const withEvents = opts.withEvents ?? true;
  const nUsers = Math.max(1, opts.users ?? opts.vms);

  // Sites: one per region, then further zones in the same regions.
  const regions = pickRegions(data, Math.min(opts.sites, AWS_REGIONS.length), rng);
  const sites: SiteDraft[] = [];
  for (let k = 0; sites.length < opts.sites; k++) {
    for (const info of regions) {
      if (sites.length >= opts.sites) break;
      sites.push({ id: k === 0 ? info.region : `${info.region}-z${k + 1}`, info });
    }
  }
  const regionRtt = (a: string, b: string): number => regionRttMs(data, a, b);
  const siteRegions = [...new Set(sites.map((s) => s.info.region))];

  // Access RTT from a country to the country a region stands in.
  const access = (cty: string, region: RegionInfo): number | undefined => accessRttMs(data, cty, region);
  // Each country's home region among the cloud's regions: the one it reaches fastest.
  const countriesByHome = new Map<string, (readonly [string, number, number])[]>();
  for (const c of COUNTRY_CENTRES) {
    let best: string | null = null;
    let bestMs = Infinity;
    for (const r of siteRegions) {
      const ms = access(c[0], AWS_REGIONS.find((x) => x.region === r)!);
      if (ms !== undefined && ms < bestMs) {
        bestMs = ms;
        best = r;
      }
    }
    if (best !== null) countriesByHome.set(best, [...(countriesByHome.get(best) ?? []), c]);
  }
  const regionInfo = (r: string): RegionInfo => AWS_REGIONS.find((x) => x.region === r)!;
  const userRtt = (cty: string, home: string, extraMs: number): number[] =>
    sites.map((s) => userSiteRttMs(data, cty, regionInfo(home), s.info.region, extraMs));

  interface UserDraft { id: string; name: string; country: string; lat: number; lon: number; network: string; rttMs: number[]; home: string }
  const placeUser = (id: string, home: string): UserDraft => {
    const options = countriesByHome.get(home) ?? [];
    const info = regionInfo(home);
    const [country, lat, lon] = options.length > 0 ? rng.pick(options) : [info.country, info.lat, info.lon];
    return {
      id, name: id, country,
      lat: round1(Math.max(-89, Math.min(89, lat + (rng.next() - 0.5) * 2))),
      lon: round1(Math.max(-179, Math.min(179, lon + (rng.next() - 0.5) * 2))),
      network: 'fixed', rttMs: userRtt(country, home, 0), home,
    };
  };
  const users: UserDraft[] = [];
  for (let i = 0; i < nUsers; i++) users.push(placeUser(`user-${i + 1}`, rng.pick(siteRegions)));

  // VMs: most start at a site in their user's home region, the rest wherever there was room.
  const sitesInRegion = (r: string): SiteDraft[] => sites.filter((s) => s.info.region === r);
  const vms: Record<string, unknown>[] = [];
  const initial: SimActivity[] = [];
  const used = new Map<string, { vcpu: number; memoryMiB: number }>(sites.map((s) => [s.id, { vcpu: 0, memoryMiB: 0 }]));
  const makeVm = (id: string, primary: UserDraft, second: UserDraft | null, site: SiteDraft, activity: SimActivity): Record<string, unknown> => {
    const vcpu = rng.weighted([[2, 5], [4, 4], [8, 1]] as const);
    const memoryMiB = rng.weighted([[2048, 3], [4096, 5], [8192, 2]] as const);
    const diskGiB = rng.weighted([[20, 2], [40, 5], [80, 3]] as const);
    const prof = DEFAULT_ACTIVITIES[activity];
    // Desktops cloned from a golden image replicated to every site only carry their own delta.
    const delta: Record<string, number> = {};
    if (rng.next() < GOLDEN_IMAGE_SHARE) {
      delta['*'] = round1(1 + rng.next() * 7);
    }
    return {
      id, siteId: site.id, vcpu, memoryMiB, diskGiB,
      dirtyRateMiBps: prof.dirtyRateMiBps, workingSetMiB: Math.min(memoryMiB, 512),
      sensitivity: prof.sensitivity, activity: prof.class,
      users: second === null ? [{ userId: primary.id, share: 1 }] : [{ userId: primary.id, share: 0.7 }, { userId: second.id, share: 0.3 }],
      diskDeltaGiB: delta,
    };
  };
  const initialMix: readonly (readonly [SimActivity, number])[] = [
    ['text-editing', 45], ['video', 15], ['gaming', 5], ['conferencing', 10], ['bulk-download', 10], ['idle', 15],
  ];
  for (let i = 0; i < opts.vms; i++) {
    const primary = users[i % users.length]!;
    const second = users.length > 1 && rng.next() < 0.15 ? users[(i + 1 + rng.int(0, users.length - 2)) % users.length]! : null;
    const site = rng.next() < 0.7 ? rng.pick(sitesInRegion(primary.home)) : rng.pick(sites);
    const activity = rng.weighted(initialMix);
    const vm = makeVm(`vm-${i + 1}`, primary, second === primary ? null : second, site, activity);
    vms.push(vm);
    initial.push(activity);
    const u = used.get(site.id)!;
    u.vcpu += vm.vcpu as number;
    u.memoryMiB += vm.memoryMiB as number;
  }

  // Capacity: what is placed plus 5–60 % headroom, so some sites are nearly full.
  const avg = { vcpu: Math.max(16, (opts.vms * 3.5) / sites.length), memoryMiB: Math.max(32_768, (opts.vms * 4500) / sites.length) };
  const siteJson = sites.map((s) => {
    const u = used.get(s.id)!;
    const head = 1.05 + rng.next() * 0.55;
    return {
      id: s.id, name: `${s.info.city}${s.id === s.info.region ? '' : ` (${s.id.slice(s.info.region.length + 1)})`}`,
      region: s.info.region, country: s.info.country, lat: s.info.lat, lon: s.info.lon,
      capacity: {
        vcpu: Math.ceil(Math.max(u.vcpu * head, u.vcpu === 0 ? avg.vcpu : 0)),
        memoryMiB: Math.ceil(Math.max(u.memoryMiB * head, u.memoryMiB === 0 ? avg.memoryMiB : 0)),
      },
    };
  });
  const links: Record<string, unknown>[] = [];
  for (let a = 0; a < sites.length; a++) {
    for (let b = a + 1; b < sites.length; b++) {
      const sa = sites[a]!;
      const sb = sites[b]!;
      const same = sa.info.region === sb.info.region;
      links.push({
        a: sa.id, b: sb.id, rttMs: round1(regionRtt(sa.info.region, sb.info.region)),
        bandwidthMbps: same ? INTRA_REGION_MBPS : INTER_REGION_MBPS, foregroundShare: 0.5,
      });
    }
  }

  const events: Record<string, unknown>[] = [];
  if (withEvents) {
    // Activity over the day: each desktop switches every ~90 minutes on average.
    vms.forEach((vm, i) => {
      let t = 0;
      let act = initial[i]!;
      events.push({ atS: 0, type: 'activity', vm: vm.id, activity: act });
      for (;;) {
        t += Math.max(60, rng.exp(90 * 60));
        if (t >= durationS) break;
        act = rng.weighted(NEXT_ACTIVITY[act]);
        events.push({ atS: Math.round(t), type: 'activity', vm: vm.id, activity: act });
      }
    });
    // Mobile users: some travel to another region for the rest of the day; some go onto 4G for a while.
    for (const u of users) {
      const r = rng.next();
      if (r < 0.08 && siteRegions.length > 1) {
        const home = rng.pick(siteRegions.filter((x) => x !== u.home));
        const moved = placeUser(u.id, home);
        events.push({ atS: Math.round(rng.next() * durationS * 0.8), type: 'user-move', user: u.id, country: moved.country, lat: moved.lat, lon: moved.lon, network: 'fixed', rttMs: moved.rttMs });
      } else if (r < 0.18) {
        const at = Math.round(rng.next() * durationS * 0.8);
        events.push({ atS: at, type: 'user-move', user: u.id, country: u.country, lat: u.lat, lon: u.lon, network: '4g', rttMs: userRtt(u.country, u.home, MOBILE_EXTRA_MS) });
        events.push({ atS: Math.min(durationS, at + Math.round(1800 + rng.next() * 7200)), type: 'user-move', user: u.id, country: u.country, lat: u.lat, lon: u.lon, network: 'fixed', rttMs: u.rttMs });
      }
    }
    // A site fills up: new desktops arrive at the busiest site through the middle of the day.
    if (opts.vms > 0) {
      const busiest = [...used.entries()].sort((x, y) => y[1].memoryMiB - x[1].memoryMiB || (x[0] < y[0] ? -1 : 1))[0]![0];
      const site = sites.find((s) => s.id === busiest)!;
      const localUsers = users.filter((u) => u.home === site.info.region);
      const arrivals = Math.ceil(opts.vms * 0.05);
      for (let k = 0; k < arrivals; k++) {
        const user = localUsers.length > 0 ? rng.pick(localUsers) : rng.pick(users);
        const act = rng.weighted(initialMix);
        const vm = makeVm(`vm-new-${k + 1}`, user, null, site, act);
        events.push({ atS: Math.round(durationS * (0.3 + 0.3 * rng.next())), type: 'vm-arrive', vm });
      }
    }
  }
  events.sort((a, b) => (a.atS as number) - (b.atS as number));

  return {
    schema: SCENARIO_SCHEMA,
    name: `generated-${opts.sites}s-${opts.vms}v-seed${opts.seed}`,
    description: 'Sites in AWS regions with measured inter-region RTTs; users in real countries (RIPE Atlas country RTTs).',
    seed: opts.seed,
    durationS,
    roundIntervalS: opts.roundIntervalS ?? 300,
    params: { ...DEFAULT_PLAN_PARAMS, pinned: undefined, excluded: undefined },
    cloud: {
      sites: siteJson,
      links,
      users: users.map(({ home: _home, ...u }) => u),
      vms,
    },
    events,
  };
}

