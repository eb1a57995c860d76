import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadLatencyData, type LatencyData } from '../sim/latency-data.js';
import { createGeo, geoRttMsFromData, isNonPublicAddress, openCountryDb, type CountryDb } from './geo.js';

const DATA_DIR = fileURLToPath(new URL('../../../data/', import.meta.url));

describe('GeoIP country lookup (DB-IP country mmdb)', () => {
  let db: CountryDb;
  before(async () => {
    db = await openCountryDb();
  });

  it('places well-known public IPv4 and IPv6 addresses in their countries', () => {
    assert.equal(db.countryOf('8.8.8.8'), 'US'); // Google Public DNS
    assert.equal(db.countryOf('193.0.6.139'), 'NL'); // RIPE NCC, Amsterdam
    assert.equal(db.countryOf('200.160.2.3'), 'BR'); // registro.br
    assert.equal(db.countryOf('2001:67c:2e8:22::c100:68b'), 'NL'); // RIPE NCC over IPv6
    assert.equal(db.countryOf('::ffff:193.0.6.139'), 'NL'); // IPv4-mapped IPv6 is looked up as IPv4
  });

  it('answers null for private, loopback, link-local, CGNAT and documentation addresses, and for non-addresses', () => {
    for (const ip of ['10.77.0.4', '172.16.5.4', '192.168.1.1', '127.0.0.1', '169.254.1.1', '100.64.0.1', '192.0.2.10', '::1', 'fe80::1', 'fd00::1', '2001:db8::1', '::ffff:10.0.0.1', 'desk1', '']) {
      assert.equal(db.countryOf(ip), null, ip);
      assert.equal(isNonPublicAddress(ip), true, ip);
    }
    assert.equal(isNonPublicAddress('8.8.8.8'), false);
    assert.equal(isNonPublicAddress('100.128.0.1'), false, 'just past CGNAT 100.64/10');
    assert.equal(isNonPublicAddress('2001:67c:2e8:22::c100:68b'), false);
  });

  it('names the file it cannot open', async () => {
    await assert.rejects(openCountryDb('/nonexistent/country.mmdb'), (e: Error & { code?: string }) =>
      e.code === 'GEO_DB_UNREADABLE' && /\/nonexistent\/country\.mmdb/.test(e.message));
  });
});

describe('geoRttMs() from the real latency data', () => {
  let data: LatencyData;
  before(() => {
    data = loadLatencyData(DATA_DIR);
  });
  const site = (id: string, country: string, region?: string): { id: string; country: string; region?: string } =>
    region === undefined ? { id, country } : { id, country, region };

  it('for a site outside the AWS table is the RIPE Atlas mean RTT (rtt_avg) between the two countries', () => {
    const ripe = data.countryRttMs.get('US|DE');
    assert.ok(ripe !== undefined && ripe > 50);
    assert.equal(geoRttMsFromData(data, 'US', site('fra', 'DE')), Math.round(ripe * 10) / 10);
    assert.equal(geoRttMsFromData(data, 'us', site('fra', 'de')), Math.round(ripe * 10) / 10, 'case does not matter');
  });

  it('for a site in an AWS region ranks the regions as geography does', () => {
    const useast = site('us-east-1', 'US', 'us-east-1');
    const frankfurt = site('eu-central-1', 'DE', 'eu-central-1');
    const tokyo = site('ap-northeast-1', 'JP', 'ap-northeast-1');
    const g = (c: string, s: typeof useast): number => geoRttMsFromData(data, c, s);
    assert.ok(g('DE', frankfurt) < g('DE', useast) && g('DE', useast) < g('DE', tokyo), `DE: ${g('DE', frankfurt)} ${g('DE', useast)} ${g('DE', tokyo)}`);
    assert.ok(g('US', useast) < g('US', frankfurt), `US: ${g('US', useast)} ${g('US', frankfurt)}`);
    assert.ok(g('JP', tokyo) < g('JP', useast) && g('JP', tokyo) < g('JP', frankfurt));
    // The raw national mean of a large country (US|US ≈ 108 ms) is no estimate for a user near a US region.
    assert.ok(g('US', useast) <= 30 + data.regionRttMs.get('us-east-1')!.get('us-east-1')! + 0.05, `${g('US', useast)}`);
  });

  it('errors name the country and the site the data lacks', () => {
    assert.throws(() => geoRttMsFromData(data, 'XX', site('s1', 'DE', 'eu-central-1')), (e: Error & { code?: string }) =>
      e.code === 'GEO_RTT_UNKNOWN' && /from country XX to site s1 \(region eu-central-1, country DE\)/.test(e.message));
    assert.throws(() => geoRttMsFromData(data, 'DE', site('moon-base', 'QQ', 'moon-1')), /site moon-base \(region moon-1, country QQ\).*moon-1 is not in the AWS region RTT table/);
    assert.throws(() => geoRttMsFromData(data, 'Germany', site('s1', 'DE')), /country: must be an ISO 3166 alpha-2 country code/);
  });

  it('createGeo() memoises estimates and, without a database, knows no country', () => {
    const geo = createGeo({ countryDb: null, data });
    const s = site('eu-central-1', 'DE', 'eu-central-1');
    assert.equal(geo.geoRttMs('FR', s), geoRttMsFromData(data, 'FR', s));
    assert.equal(geo.geoRttMs('FR', s), geoRttMsFromData(data, 'FR', s));
    assert.equal(geo.countryOf('8.8.8.8'), null);
  });
});
