// PURE: the lab's configuration — which cloud sites (AWS regions), hosts, users and desktop VMs to build, and
// the WAN links between them — read from untrusted JSON with defaults filled in. Link RTTs come from the real
// latency data: between sites the measured AWS inter-region RTT, between a user and a site the same formula
// the scenario generator uses (country access RTT to the user's home region + that region's RTT to the site).
// docs/lab.md documents the format; examples/lab.json is an example.
import { InputError } from '../core/errors.js';
import { arr, checkNum, isObj, obj, onlyKeys, type Obj } from '../core/validate.js';
import { regionRttMs, userSiteRttMs } from '../sim/generate.js';
import { AWS_REGIONS, COUNTRY_CENTRES, type RegionInfo } from '../sim/geo.js';
import type { LatencyData } from '../sim/latency-data.js';

export interface LabSiteConfig {
  /** the site's id everywhere (placement, TLS names, the state file); defaults to the region */
  readonly id: string;
  readonly region: string;
  readonly city: string;
  readonly country: string;
  readonly lat: number;
  readonly lon: number;
  /** QEMU hosts at the site (they share the site's namespace) */
  readonly hosts: number;
  /** the site's address on the stretched L2 subnet (CIDR) */
  readonly address: string;
}

export interface LabUserConfig {
  readonly name: string;
  /** ISO 3166 alpha-2 */
  readonly country: string;
  /** the site (id) whose region is the user's home */
  readonly near: string;
  readonly lat: number;
  readonly lon: number;
  /** the user's namespace address on the stretched subnet (CIDR) */
  readonly address: string;
  /** the user's RTT to each site (by id), as the user↔site links carry it */
  readonly rttMs: Readonly<Record<string, number>>;
}

export interface LabVmConfig {
  readonly name: string;
  /** the site (id) it starts at */
  readonly site: string;
  /** the user (name) whose desktop it is, if any */
  readonly user: string | null;
  readonly memoryMiB: number;
  readonly vcpu: number;
  /** a qcow2 disk of this size, mirrored when the VM migrates; 0: no disk */
  readonly diskMiB: number;
  /** A.B.C.D/NN on the stretched subnet; it keeps it wherever it runs */
  readonly ipCidr: string;
  /** the in-guest memory tester's working set, rewritten at rateMiBps (workingSetMiB 0: no tester) */
  readonly dirty: { readonly workingSetMiB: number; readonly rateMiBps: number };
}

export interface LabLinkConfig {
  /** a site id */
  readonly a: string;
  /** a site id (site-site) or a user name (user-site) */
  readonly b: string;
  readonly kind: 'site-site' | 'user-site';
  readonly rttMs: number;
  /** 0: unlimited */
  readonly rateMbps: number;
  readonly lossPct: number;
  readonly jitterMs: number;
}

export interface FlowExportConfig {
  /** null: the collector listens in the root namespace (the manager's), reached over a management link */
  readonly collectorHost: string | null;
  readonly collectorPort: number;
  readonly version: 5 | 9 | 10;
  /** softflowd's maxlife: a long flow is exported at least this often */
  readonly activeTimeoutS: number;
  /** softflowd's general/tcp/udp/icmp timeouts: a quiet flow is exported after this long */
  readonly idleTimeoutS: number;
}

export interface LabConfig {
  /** the stretched L2 subnet every site, user and VM is on */
  readonly subnet: string;
  readonly sites: readonly LabSiteConfig[];
  readonly users: readonly LabUserConfig[];
  readonly vms: readonly LabVmConfig[];
  /** every pair of sites, and every user with every site */
  readonly links: readonly LabLinkConfig[];
  /** softflowd on each site's bridge exporting flow records; null: none */
  readonly flowExport: FlowExportConfig | null;
}

export interface ParseLabOptions {
  /** `--sites N`: the first N default regions (only when the file lists no sites) */
  readonly sites?: number;
  /** `--flow-collector`: overrides the file's flowExport collector */
  readonly flowCollector?: { host: string | null; port: number };
}

/** Far apart, trans-continental first: us-east-1↔us-west-2 ≈ 64 ms, us-east-1↔eu-west-1 ≈ 70 ms, us-west-2↔eu-west-1 ≈ 119 ms. */
export const DEFAULT_REGIONS: readonly string[] = [
  'us-east-1', 'us-west-2', 'eu-west-1', 'ap-northeast-1', 'eu-central-1', 'ap-southeast-2', 'sa-east-1', 'ap-south-1',
];
export const DEFAULT_SUBNET = '10.77.0.0/24';
export const DEFAULT_SITE_RATE_MBPS = 100;
export const DEFAULT_USER_RATE_MBPS = 50;
export const DEFAULT_VM_MEMORY_MIB = 128;
export const DEFAULT_VM_DISK_MIB = 32;
export const DEFAULT_DIRTY = { workingSetMiB: 8, rateMiBps: 1 } as const;
const DEFAULT_USER_NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
/** VMs get host numbers from here up (sites and users from 1). */
const FIRST_VM_HOST = 100;

export const LIMITS = { sites: 16, hostsPerSite: 8, users: 32, vms: 32 } as const;
const SITE_ID_RE = /^[a-z][a-z0-9-]{0,29}$/;
/** Users: short, so that other lab parts can derive interface names from them. */
const USER_RE = /^[a-z][a-z0-9]{0,15}$/;
/** VMs: at most 11 letters or digits, so `tap-<name>` fits Linux's 15-character interface names. */
const VM_RE = /^[a-z][a-z0-9]{0,10}$/;
const COUNTRY_RE = /^[A-Z]{2}$/;

const round1 = (x: number): number => Math.round(x * 10) / 10;

// ---------------------------------------------------------------------------------------------
// IPv4 (no node:net here: this module is pure)

export function parseIpv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return null;
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) return null;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

interface Subnet {
  net: number;
  prefix: number;
  size: number;
}

function parseSubnet(v: unknown, field: string): Subnet {
  const s = typeof v === 'string' ? v : '';
  const [ip, pre] = s.split('/');
  const n = parseIpv4(ip ?? '');
  const prefix = Number(pre);
  if (n === null || !/^\d+$/.test(pre ?? '') || prefix < 8 || prefix > 24) {
    throw new InputError(field, v, 'must be an IPv4 subnet with a prefix length of 8–24, like 10.77.0.0/24');
  }
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  if (((n & mask) >>> 0) !== n) throw new InputError(field, v, `must name the network address (${formatIpv4((n & mask) >>> 0)}/${prefix})`);
  return { net: n, prefix, size: 2 ** (32 - prefix) };
}

// ---------------------------------------------------------------------------------------------
// Parsing

function regionInfo(region: string): RegionInfo | undefined {
  return AWS_REGIONS.find((r) => r.region === region);
}

function knownRegions(data: LatencyData): string[] {
  return AWS_REGIONS.filter((r) => data.regionRttMs.has(r.region)).map((r) => r.region);
}

function int(o: Obj, key: string, path: string, dflt: number, min: number, max: number): number {
  if (o[key] === undefined) return dflt;
  return checkNum(o[key], `${path}.${key}`, { min, max, integer: true });
}

function number(o: Obj, key: string, path: string, dflt: number, min: number, max: number): number {
  if (o[key] === undefined) return dflt;
  return checkNum(o[key], `${path}.${key}`, { min, max });
}

function name(o: Obj, key: string, path: string, re: RegExp, what: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !re.test(v)) throw new InputError(`${path}.${key}`, v, what);
  return v;
}

interface SiteDraft {
  id: string;
  info: RegionInfo;
  hosts: number;
}

function parseSites(raw: unknown, data: LatencyData, hostsPerSite: number, opts: ParseLabOptions): SiteDraft[] {
  const regions = knownRegions(data);
  const byRegion = (r: unknown, field: string): RegionInfo => {
    const info = typeof r === 'string' && regions.includes(r) ? regionInfo(r) : undefined;
    if (info === undefined) throw new InputError(field, r, `must be an AWS region of the latency data (${regions.join(', ')})`);
    return info;
  };
  if (raw === undefined) {
    const n = opts.sites ?? 3;
    const usable = DEFAULT_REGIONS.filter((r) => regions.includes(r));
    if (!Number.isInteger(n) || n < 1 || n > usable.length) throw new InputError('--sites', n, `must be a whole number from 1 to ${usable.length} (the default regions: ${usable.join(', ')})`);
    return usable.slice(0, n).map((r, i) => ({ id: r, info: byRegion(r, `sites[${i}]`), hosts: hostsPerSite }));
  }
  if (opts.sites !== undefined) throw new InputError('--sites', opts.sites, 'cannot be used with a config file that lists its sites');
  const list = arr(raw, 'sites');
  if (list.length < 1 || list.length > LIMITS.sites) throw new InputError('sites', raw, `must list 1–${LIMITS.sites} sites`);
  return list.map((s, i) => {
    const path = `sites[${i}]`;
    if (typeof s === 'string') return { id: s, info: byRegion(s, path), hosts: hostsPerSite };
    const o = obj(s, path);
    onlyKeys(o, path, ['region', 'id', 'hosts']);
    const info = byRegion(o.region, `${path}.region`);
    const id = o.id === undefined ? info.region : name(o, 'id', path, SITE_ID_RE, 'must be 1–30 lowercase letters, digits or "-", starting with a letter');
    return { id, info, hosts: int(o, 'hosts', path, hostsPerSite, 1, LIMITS.hostsPerSite) };
  });
}

interface UserDraft {
  name: string;
  country: string;
  near: SiteDraft;
}

function parseUsers(raw: unknown, sites: readonly SiteDraft[], data: LatencyData): UserDraft[] {
  if (raw === undefined) {
    // alice near the second site, bob near the third: both far from the first, where their desktops start.
    const homes = sites.length >= 3 ? [sites[1]!, sites[2]!] : [sites[1 % sites.length]!];
    return homes.map((near, i) => ({ name: DEFAULT_USER_NAMES[i]!, country: near.info.country, near }));
  }
  const list = arr(raw, 'users');
  if (list.length > LIMITS.users) throw new InputError('users', raw, `must list at most ${LIMITS.users} users`);
  return list.map((u, i) => {
    const path = `users[${i}]`;
    const o = obj(u, path);
    onlyKeys(o, path, ['name', 'near', 'country']);
    const nm = name(o, 'name', path, USER_RE, 'must be 1–16 lowercase letters or digits, starting with a letter');
    const nearId = o.near;
    const near = sites.find((s) => s.id === nearId);
    if (near === undefined) throw new InputError(`${path}.near`, nearId, `must name a site (${sites.map((s) => s.id).join(', ')})`);
    let country = near.info.country;
    if (o.country !== undefined) {
      if (typeof o.country !== 'string' || !COUNTRY_RE.test(o.country)) throw new InputError(`${path}.country`, o.country, 'must be an ISO 3166 alpha-2 code in capitals, like "US"');
      country = o.country;
    }
    const home = near.info;
    if (country !== home.country && data.countryRttMs.get(`${country}|${home.country}`) === undefined) {
      throw new InputError(`${path}.country`, country, `has no RTT to ${home.country} (where ${near.id} stands) in the RIPE Atlas country data`);
    }
    return { name: nm, country, near };
  });
}

function parseDirty(v: unknown, path: string, memoryMiB: number): { workingSetMiB: number; rateMiBps: number } {
  if (v === undefined) return { workingSetMiB: Math.min(DEFAULT_DIRTY.workingSetMiB, Math.floor(memoryMiB / 4)), rateMiBps: DEFAULT_DIRTY.rateMiBps };
  const o = obj(v, path);
  onlyKeys(o, path, ['workingSetMiB', 'rateMiBps']);
  return {
    workingSetMiB: int(o, 'workingSetMiB', path, DEFAULT_DIRTY.workingSetMiB, 0, Math.floor(memoryMiB / 2)),
    rateMiBps: int(o, 'rateMiBps', path, DEFAULT_DIRTY.rateMiBps, 0, 256),
  };
}

/**
 * Reads a lab configuration (a parsed JSON value; undefined = all defaults) against the latency data.
 * Throws InputError naming the field (a JSON path such as `vms[0].site`).
 */
export function parseLabConfig(raw: unknown, data: LatencyData, opts: ParseLabOptions = {}): LabConfig {
  const o: Obj = raw === undefined ? {} : obj(raw, 'config');
  onlyKeys(o, 'config', ['subnet', 'hostsPerSite', 'sites', 'users', 'vms', 'links', 'flowExport']);
  const subnetField = o.subnet === undefined ? DEFAULT_SUBNET : o.subnet;
  const subnet = parseSubnet(subnetField, 'subnet');
  const hostsPerSite = int(o, 'hostsPerSite', 'config', 1, 1, LIMITS.hostsPerSite);
  const sites = parseSites(o.sites, data, hostsPerSite, opts);
  const ids = new Set<string>();
  sites.forEach((s, i) => {
    const field = isObj(Array.isArray(o.sites) ? o.sites[i] : undefined) ? `sites[${i}].id` : `sites[${i}]`;
    if (ids.has(s.id)) throw new InputError(field, s.id, 'names a site twice (give each site of one region its own "id")');
    ids.add(s.id);
  });
  const users = parseUsers(o.users, sites, data);
  users.forEach((u, i) => {
    if (ids.has(u.name)) throw new InputError(`users[${i}].name`, u.name, 'is already the name of a site or another user');
    ids.add(u.name);
  });

  // Addresses: sites from host 1, users after them, VMs from host 100.
  const hostAddr = (n: number, field: string): string => {
    if (n < 1 || n >= subnet.size - 1) throw new InputError(field, subnetField, `is too small: host number ${n} does not fit`);
    return `${formatIpv4(subnet.net + n)}/${subnet.prefix}`;
  };
  const siteOut: LabSiteConfig[] = sites.map((s, i) => ({
    id: s.id, region: s.info.region, city: s.info.city, country: s.info.country, lat: s.info.lat, lon: s.info.lon,
    hosts: s.hosts, address: hostAddr(i + 1, 'subnet'),
  }));
  const userOut: LabUserConfig[] = users.map((u, j) => {
    const centre = COUNTRY_CENTRES.find((c) => c[0] === u.country);
    const rttMs: Record<string, number> = {};
    for (const s of sites) rttMs[s.id] = userSiteRttMs(data, u.country, u.near.info, s.info.region);
    return {
      name: u.name, country: u.country, near: u.near.id,
      lat: centre?.[1] ?? u.near.info.lat, lon: centre?.[2] ?? u.near.info.lon,
      address: hostAddr(sites.length + j + 1, 'subnet'), rttMs,
    };
  });
  const used = new Map<number, string>();
  for (const a of [...siteOut.map((s) => s.address), ...userOut.map((u) => u.address)]) used.set(parseIpv4(a.split('/')[0]!)!, a);

  const vmOut = parseVms(o.vms, siteOut, userOut, subnet, used);
  const links = parseLinks(o.links, siteOut, userOut, data);
  // A user's RTTs are what its links carry (overrides included).
  const usersFinal = userOut.map((u) => ({
    ...u,
    rttMs: Object.fromEntries(siteOut.map((s) => [s.id, links.find((l) => l.a === s.id && l.b === u.name)!.rttMs])),
  }));
  const flowExport = parseFlowExport(o.flowExport, opts.flowCollector);
  return { subnet: `${formatIpv4(subnet.net)}/${subnet.prefix}`, sites: siteOut, users: usersFinal, vms: vmOut, links, flowExport };
}

function parseVms(raw: unknown, sites: readonly LabSiteConfig[], users: readonly LabUserConfig[], subnet: Subnet, used: Map<number, string>): LabVmConfig[] {
  let list: unknown[];
  if (raw === undefined) {
    // One desktop per user, all at the first site.
    list = users.map((u, i) => ({ name: `desk${i + 1}`, site: sites[0]!.id, user: u.name }));
  } else {
    list = arr(raw, 'vms');
    if (list.length > LIMITS.vms) throw new InputError('vms', raw, `must list at most ${LIMITS.vms} VMs`);
  }
  const names = new Set<string>();
  let nextHost = FIRST_VM_HOST;
  return list.map((v, i) => {
    const path = `vms[${i}]`;
    const o = obj(v, path);
    onlyKeys(o, path, ['name', 'site', 'user', 'memoryMiB', 'vcpu', 'diskMiB', 'ip', 'dirty']);
    const nm = name(o, 'name', path, VM_RE, 'must be 1–11 lowercase letters or digits, starting with a letter');
    if (names.has(nm)) throw new InputError(`${path}.name`, nm, 'names a VM twice');
    names.add(nm);
    const site = sites.find((s) => s.id === o.site);
    if (site === undefined) throw new InputError(`${path}.site`, o.site, `must name a site (${sites.map((s) => s.id).join(', ')})`);
    let user: string | null = null;
    if (o.user !== undefined && o.user !== null) {
      const u = users.find((x) => x.name === o.user);
      if (u === undefined) throw new InputError(`${path}.user`, o.user, users.length === 0 ? 'names a user, but the lab has none' : `must name a user (${users.map((x) => x.name).join(', ')})`);
      user = u.name;
    }
    const memoryMiB = int(o, 'memoryMiB', path, DEFAULT_VM_MEMORY_MIB, 64, 4096);
    let host: number;
    if (o.ip !== undefined) {
      const ip = typeof o.ip === 'string' ? parseIpv4(o.ip) : null;
      const mask = (0xffffffff << (32 - subnet.prefix)) >>> 0;
      if (ip === null || ((ip & mask) >>> 0) !== subnet.net) throw new InputError(`${path}.ip`, o.ip, `must be an IPv4 address in the lab's subnet ${formatIpv4(subnet.net)}/${subnet.prefix}`);
      host = ip - subnet.net;
      if (host < 1 || host >= subnet.size - 1) throw new InputError(`${path}.ip`, o.ip, 'must not be the network or broadcast address');
    } else {
      while (used.has(subnet.net + nextHost)) nextHost++;
      host = nextHost++;
      if (host >= subnet.size - 1) throw new InputError('subnet', `${formatIpv4(subnet.net)}/${subnet.prefix}`, `is too small for ${list.length} VMs from host number ${FIRST_VM_HOST}`);
    }
    const addr = subnet.net + host;
    const clash = used.get(addr);
    if (clash !== undefined) throw new InputError(`${path}.ip`, formatIpv4(addr), `is already taken (${clash})`);
    used.set(addr, `VM ${nm}`);
    return {
      name: nm, site: site.id, user, memoryMiB,
      vcpu: int(o, 'vcpu', path, 1, 1, 4),
      diskMiB: int(o, 'diskMiB', path, DEFAULT_VM_DISK_MIB, 0, 4096),
      ipCidr: `${formatIpv4(addr)}/${subnet.prefix}`,
      dirty: parseDirty(o.dirty, `${path}.dirty`, memoryMiB),
    };
  });
}

function parseLinks(raw: unknown, sites: readonly LabSiteConfig[], users: readonly LabUserConfig[], data: LatencyData): LabLinkConfig[] {
  const o: Obj = raw === undefined ? {} : obj(raw, 'links');
  onlyKeys(o, 'links', ['siteRateMbps', 'userRateMbps', 'lossPct', 'jitterMs', 'overrides']);
  const siteRate = number(o, 'siteRateMbps', 'links', DEFAULT_SITE_RATE_MBPS, 0, 10_000);
  const userRate = number(o, 'userRateMbps', 'links', DEFAULT_USER_RATE_MBPS, 0, 10_000);
  const lossPct = number(o, 'lossPct', 'links', 0, 0, 100);
  const jitterMs = number(o, 'jitterMs', 'links', 0, 0, 1000);
  const links: LabLinkConfig[] = [];
  for (let i = 0; i < sites.length; i++) {
    for (let j = i + 1; j < sites.length; j++) {
      const a = sites[i]!;
      const b = sites[j]!;
      links.push({ a: a.id, b: b.id, kind: 'site-site', rttMs: round1(regionRttMs(data, a.region, b.region)), rateMbps: siteRate, lossPct, jitterMs });
    }
  }
  for (const u of users) {
    for (const s of sites) links.push({ a: s.id, b: u.name, kind: 'user-site', rttMs: u.rttMs[s.id]!, rateMbps: userRate, lossPct, jitterMs });
  }
  if (o.overrides === undefined) return links;
  const seen = new Set<number>();
  arr(o.overrides, 'links.overrides').forEach((x, k) => {
    const path = `links.overrides[${k}]`;
    const ov = obj(x, path);
    onlyKeys(ov, path, ['a', 'b', 'rttMs', 'rateMbps', 'lossPct', 'jitterMs']);
    const idx = links.findIndex((l) => (l.a === ov.a && l.b === ov.b) || (l.a === ov.b && l.b === ov.a));
    if (idx < 0) {
      const names = [...sites.map((s) => s.id), ...users.map((u) => u.name)];
      const bad = names.includes(ov.a as string) ? 'b' : 'a';
      throw new InputError(`${path}.${bad}`, ov[bad], `must name a linked pair: two sites, or a site and a user (${names.join(', ')})`);
    }
    if (seen.has(idx)) throw new InputError(path, `${String(ov.a)}-${String(ov.b)}`, 'overrides the same link twice');
    seen.add(idx);
    const l = links[idx]!;
    links[idx] = {
      ...l,
      rttMs: number(ov, 'rttMs', path, l.rttMs, 0, 5000),
      rateMbps: number(ov, 'rateMbps', path, l.rateMbps, 0, 10_000),
      lossPct: number(ov, 'lossPct', path, l.lossPct, 0, 100),
      jitterMs: number(ov, 'jitterMs', path, l.jitterMs, 0, 1000),
    };
  });
  return links;
}

function parseFlowExport(raw: unknown, cli: ParseLabOptions['flowCollector']): FlowExportConfig | null {
  if ((raw === undefined || raw === null) && cli === undefined) return null;
  const o: Obj = raw === undefined || raw === null ? {} : obj(raw, 'flowExport');
  onlyKeys(o, 'flowExport', ['collectorHost', 'collectorPort', 'version', 'activeTimeoutS', 'idleTimeoutS']);
  let host: string | null = null;
  if (o.collectorHost !== undefined && o.collectorHost !== null) {
    if (typeof o.collectorHost !== 'string' || parseIpv4(o.collectorHost) === null) throw new InputError('flowExport.collectorHost', o.collectorHost, 'must be an IPv4 address reachable from the site namespaces (leave it out for the root namespace)');
    host = o.collectorHost;
  }
  let port: number;
  if (cli !== undefined) {
    host = cli.host;
    port = cli.port;
  } else {
    if (o.collectorPort === undefined) throw new InputError('flowExport.collectorPort', undefined, 'is required: the UDP port the flow collector listens on');
    port = checkNum(o.collectorPort, 'flowExport.collectorPort', { min: 1, max: 65535, integer: true });
  }
  const version = o.version === undefined ? 10 : o.version;
  if (version !== 5 && version !== 9 && version !== 10) throw new InputError('flowExport.version', version, 'must be 5, 9 or 10 (IPFIX)');
  return {
    collectorHost: host, collectorPort: port, version,
    activeTimeoutS: int(o, 'activeTimeoutS', 'flowExport', 30, 1, 3600),
    idleTimeoutS: int(o, 'idleTimeoutS', 'flowExport', 15, 1, 3600),
  };
}

/** `--flow-collector PORT` (root namespace) or `HOST:PORT`. */
export function parseFlowCollectorFlag(v: string): { host: string | null; port: number } {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})$/.exec(v);
  const port = Number(m?.[2]);
  if (m === null || port < 1 || port > 65535 || (m[1] !== undefined && parseIpv4(m[1]) === null)) {
    throw new InputError('--flow-collector', v, 'must be PORT (a collector in the root namespace) or IPV4:PORT');
  }
  return { host: m[1] ?? null, port };
}

/** The link between two endpoints (site ids or user names), whichever order they are named in. */
export function findLink(config: LabConfig, a: string, b: string): LabLinkConfig | undefined {
  return config.links.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
}
